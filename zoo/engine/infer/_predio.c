/* Prediction files at C speed: parse the Kaggle CSV and JSON lines formats into flat arrays, format them back.
 *
 * parse_kaggle(buf, pos, line_no, rank) / parse_jsonl(buf, pos, line_no, rank)
 *   Parse the lines of buf[pos:] (buf ends at a line break, or is the end of the file). Returns
 *   (pos, line_no, stopped, ids, id_lengths, counts, lines, classes, scores):
 *     pos, line_no  where parsing stopped: the end of buf, or the start of a line it does not take
 *     stopped       1 when it stopped at such a line: the caller parses that one line with the Python
 *                   reader, which either accepts it (a spelling the fast path leaves alone: non-ASCII text,
 *                   underscores in numbers, JSON escapes...) or raises the error naming the line
 *     ids           bytes: the ids, concatenated; id_lengths int32 per row
 *     counts        int32 per row: pairs in the row; lines int64 per row: the row's line number
 *     classes       int32, scores float64: the pairs, flat, row after row (ranked best first when rank:
 *                   score descending, then class ascending, as the Python readers rank)
 *   Lines break at \n, \r\n and \r (as Python's universal newlines); blank lines are skipped. Numbers are
 *   converted exactly (see parse_number), so values equal float(token). The GIL is released while parsing
 *   (and formatting), so files are read (and written) in parallel threads; it is taken back only for the
 *   rare number that needs CPython's own conversion.
 *
 * format_kaggle(ids, width, classes, scores, rows, k) / format_jsonl(ids, width, classes, scores, rows, k, names)
 *   The text of rows [rows] of padded arrays (ids: fixed-width, NUL-padded; classes int32 [rows, k], -1 is
 *   padding; scores float32 [rows, k]), byte for byte as the Python writers: "%.9g" scores for the CSV,
 *   repr() scores and json.dumps separators for JSON lines. names: None or a list of JSON string literals
 *   (bytes) indexed by class. Ids must already be safe for the format (the caller checks or escapes them).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ the GIL, released during the work */

/* The thread state of a call that released the GIL (NULL: this thread holds it). Fallbacks that call the
 * C API take it back for the call. */
static _Thread_local PyThreadState *released = NULL;

static void gil_take(void) {
    if (released != NULL) PyEval_RestoreThread(released);
}

static void gil_give(void) {
    if (released != NULL) released = PyEval_SaveThread();
}

static void release_gil(void) { released = PyEval_SaveThread(); }

static void reacquire_gil(void) {
    PyEval_RestoreThread(released);
    released = NULL;
}

/* ------------------------------------------------------------------ growable output buffers
 * (raw allocations, usable without the GIL; a failed one leaves the error to the caller) */

typedef struct {
    char *data;
    Py_ssize_t size, cap;
} Buf;

static int buf_reserve(Buf *b, Py_ssize_t extra) {
    if (b->size + extra <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->size + extra) cap *= 2;
    char *data = PyMem_RawRealloc(b->data, cap);
    if (data == NULL) return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

static int buf_put(Buf *b, const void *src, Py_ssize_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->size, src, n);
    b->size += n;
    return 0;
}

static PyObject *buf_bytes(Buf *b) { return PyBytes_FromStringAndSize(b->data ? b->data : "", b->size); }

/* ------------------------------------------------------------------ parsing */

typedef struct {
    Buf ids, id_len, counts, lines, classes, scores;
} Out;

/* Python's str.strip()/split() whitespace within ASCII (the fast path defers any non-ASCII byte). */
static int py_space(unsigned char c) { return c == ' ' || (c >= 9 && c <= 13) || (c >= 28 && c <= 31); }

#define MAX_TOKEN 63

static const double EXACT_POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                       1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A decimal number as float() reads it, without underscores, inf or nan (those lines go to Python).
 * Numbers of at most 2^53 in their significant digits and a decimal exponent within +-22 (the writers'
 * "%.9g" and most of repr's) are one exact integer times or divided by an exact power of ten: a single
 * correctly rounded operation (Clinger's fast path). The rest take PyOS_string_to_double. Both equal float(). */
static int parse_number(const char *s, Py_ssize_t n, double *out) {
    Py_ssize_t i = 0, digits = 0;
    uint64_t mant = 0;
    int sig = 0, exp10 = 0, neg = 0, exact = 1;
    char tmp[MAX_TOKEN + 1];
    if (n == 0 || n > MAX_TOKEN) return -1;
    if (s[i] == '+' || s[i] == '-') neg = s[i++] == '-';
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
        if (mant || s[i] != '0') {
            if (++sig > 19) exact = 0; else mant = mant * 10 + (uint64_t)(s[i] - '0');
        }
    }
    if (i < n && s[i] == '.') {
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
            if (mant || s[i] != '0') {
                if (++sig > 19) exact = 0; else mant = mant * 10 + (uint64_t)(s[i] - '0');
            }
            exp10--;
        }
    }
    if (digits == 0) return -1;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        Py_ssize_t e = 0;
        int eneg = 0, ev = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, e++) {
            if (ev < 100000) ev = ev * 10 + (s[i] - '0');
        }
        if (e == 0) return -1;
        exp10 += eneg ? -ev : ev;
    }
    if (i != n) return -1;
    if (exact && mant <= (1ULL << 53) && exp10 >= -22 && exp10 <= 22) {
        double v = (double)mant;
        v = exp10 < 0 ? v / EXACT_POW10[-exp10] : v * EXACT_POW10[exp10];
        *out = neg ? -v : v;
        return 0;
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    gil_take();
    double v = PyOS_string_to_double(tmp, NULL, NULL);
    int failed = v == -1.0 && PyErr_Occurred();
    if (failed) PyErr_Clear();
    gil_give();
    if (failed || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* A class index: ASCII digits, at most 9 of them (larger values go to Python, which names the error). */
static int parse_label(const char *s, Py_ssize_t n, int32_t *out) {
    if (n == 0 || n > 9) return -1;
    int32_t v = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Rank one row: score descending, class ascending; -1 when a class is listed twice (Python names it). */
static int rank_row(int32_t *c, double *s, Py_ssize_t n, int rank) {
    for (Py_ssize_t i = 1; i < n; i++) {
        int32_t ci = c[i];
        double si = s[i];
        Py_ssize_t j = i;
        for (Py_ssize_t q = 0; q < i; q++)
            if (c[q] == ci) return -1;
        if (rank)
            while (j > 0 && (s[j - 1] < si || (s[j - 1] == si && c[j - 1] > ci))) {
                c[j] = c[j - 1];
                s[j] = s[j - 1];
                j--;
            }
        c[j] = ci;
        s[j] = si;
    }
    return 0;
}

/* Start of the next line after the line ending at `end` (a \r, \n or the buffer's end). */
static Py_ssize_t next_line(const char *b, Py_ssize_t end, Py_ssize_t n) {
    if (end >= n) return n;
    if (b[end] == '\r' && end + 1 < n && b[end + 1] == '\n') return end + 2;
    return end + 1;
}

static Py_ssize_t line_end(const char *b, Py_ssize_t pos, Py_ssize_t n) {
    while (pos < n && b[pos] != '\n' && b[pos] != '\r') pos++;
    return pos;
}

/* Take back the pairs a row appended from index first on (it goes to the Python parser instead). */
static int drop_row(Out *o, Py_ssize_t first) {
    o->classes.size = first * 4;
    o->scores.size = first * 8;
    return -1;
}

/* The end of a row whose pairs were appended from index first on: rank them, record the count and the id
 * (b[id_lo:id_hi]). 0 ok; -1 not for the fast path, with the row's pairs taken back; -2 no memory. */
static int finish_row(Out *o, Py_ssize_t first, int rank, const char *b, Py_ssize_t id_lo, Py_ssize_t id_hi) {
    Py_ssize_t pairs = o->classes.size / 4 - first;
    int32_t count = (int32_t)pairs, len = (int32_t)(id_hi - id_lo);
    if (rank_row((int32_t *)o->classes.data + first, (double *)o->scores.data + first, pairs, rank) < 0) {
        drop_row(o, first);
        return -1;
    }
    if (buf_put(&o->counts, &count, 4) < 0 || buf_put(&o->ids, b + id_lo, id_hi - id_lo) < 0 ||
        buf_put(&o->id_len, &len, 4) < 0)
        return -2;
    return 0;
}

/* One Kaggle row `id,label score label score ...` in b[lo:hi] (no line break): 0, -1 (Python), -2 (error). */
static int kaggle_row(Out *o, const char *b, Py_ssize_t lo, Py_ssize_t hi, int rank) {
    Py_ssize_t comma = -1;
    for (Py_ssize_t i = lo; i < hi; i++) {
        unsigned char c = (unsigned char)b[i];
        if (c >= 0x80 || (c < 0x20 && !py_space(c)) || c == 0x7f) return -1;
        if (c == ',') {
            if (comma >= 0) return -1;
            comma = i;
        }
    }
    if (comma < 0) return -1;
    Py_ssize_t a = lo, z = comma;
    while (a < z && py_space(b[a])) a++;
    while (z > a && py_space(b[z - 1])) z--;
    if (z == a) return -1;
    Py_ssize_t first = o->classes.size / 4;
    Py_ssize_t p = comma + 1;
    for (;;) {
        while (p < hi && py_space(b[p])) p++;
        if (p >= hi) break;
        Py_ssize_t t = p;
        while (p < hi && !py_space(b[p])) p++;
        int32_t label;
        if (parse_label(b + t, p - t, &label) < 0) goto undo;
        while (p < hi && py_space(b[p])) p++;
        if (p >= hi) goto undo;
        t = p;
        while (p < hi && !py_space(b[p])) p++;
        double score;
        if (parse_number(b + t, p - t, &score) < 0) goto undo;
        if (buf_put(&o->classes, &label, 4) < 0 || buf_put(&o->scores, &score, 8) < 0) return -2;
    }
    return finish_row(o, first, rank, b, a, z);
undo:
    return drop_row(o, first);
}

/* --- JSON: one flat object; anything beyond the plain spelling the writer uses goes to Python */

static Py_ssize_t json_ws(const char *b, Py_ssize_t p, Py_ssize_t hi) {
    while (p < hi && (b[p] == ' ' || b[p] == '\t')) p++;
    return p;
}

/* A plain string (printable ASCII, no escapes) at b[p] == '"'; returns the index after the closing quote. */
static Py_ssize_t json_plain_string(const char *b, Py_ssize_t p, Py_ssize_t hi) {
    if (p >= hi || b[p] != '"') return -1;
    for (p++; p < hi; p++) {
        unsigned char c = (unsigned char)b[p];
        if (c == '"') return p + 1;
        if (c == '\\' || c < 0x20 || c >= 0x7f) return -1;
    }
    return -1;
}

/* A JSON number token at b[p]: its end, or -1. `integer`: digits only, no sign, no leading zero. */
static Py_ssize_t json_number(const char *b, Py_ssize_t p, Py_ssize_t hi, int integer) {
    Py_ssize_t s = p;
    if (!integer && p < hi && b[p] == '-') p++;
    if (p >= hi || b[p] < '0' || b[p] > '9') return -1;
    if (b[p] == '0') {
        p++;
    } else {
        while (p < hi && b[p] >= '0' && b[p] <= '9') p++;
    }
    if (integer) return (p < hi && (b[p] == '.' || b[p] == 'e' || b[p] == 'E')) ? -1 : p;
    if (p < hi && b[p] == '.') {
        p++;
        if (p >= hi || b[p] < '0' || b[p] > '9') return -1;
        while (p < hi && b[p] >= '0' && b[p] <= '9') p++;
    }
    if (p < hi && (b[p] == 'e' || b[p] == 'E')) {
        p++;
        if (p < hi && (b[p] == '+' || b[p] == '-')) p++;
        if (p >= hi || b[p] < '0' || b[p] > '9') return -1;
        while (p < hi && b[p] >= '0' && b[p] <= '9') p++;
    }
    return p - s > MAX_TOKEN ? -1 : p;
}

/* One element of a JSON array at b[p]: the position after it, -1 when the fast path does not take it (the
 * row goes to the Python parser), -2 when memory ran out. */
typedef Py_ssize_t (*JsonItem)(Out *, const char *, Py_ssize_t, Py_ssize_t);

static Py_ssize_t json_label(Out *o, const char *b, Py_ssize_t p, Py_ssize_t hi) {
    Py_ssize_t e = json_number(b, p, hi, 1);
    int32_t label;
    if (e < 0 || parse_label(b + p, e - p, &label) < 0) return -1;
    return buf_put(&o->classes, &label, 4) < 0 ? -2 : e;
}

static Py_ssize_t json_score(Out *o, const char *b, Py_ssize_t p, Py_ssize_t hi) {
    Py_ssize_t e = json_number(b, p, hi, 0);
    double v;
    if (e < 0 || parse_number(b + p, e - p, &v) < 0) return -1;
    return buf_put(&o->scores, &v, 8) < 0 ? -2 : e;
}

static Py_ssize_t json_name(Out *o, const char *b, Py_ssize_t p, Py_ssize_t hi) {
    (void)o;
    return json_plain_string(b, p, hi);
}

/* A JSON array at b[p] ('[' ... ']'), each element read by item; *n counts them. The position after ']',
 * or item's -1 / -2. */
static Py_ssize_t json_array(Out *o, const char *b, Py_ssize_t p, Py_ssize_t hi, JsonItem item, Py_ssize_t *n) {
    if (p >= hi || b[p] != '[') return -1;
    *n = 0;
    p = json_ws(b, p + 1, hi);
    if (p < hi && b[p] == ']') return p + 1;
    for (;;) {
        Py_ssize_t e = item(o, b, p, hi);
        if (e < 0) return e;
        (*n)++;
        p = json_ws(b, e, hi);
        if (p < hi && b[p] == ',') {
            p = json_ws(b, p + 1, hi);
            continue;
        }
        if (p < hi && b[p] == ']') return p + 1;
        return -1;
    }
}

static int jsonl_row(Out *o, const char *b, Py_ssize_t lo, Py_ssize_t hi, int rank) {
    Py_ssize_t first = o->classes.size / 4, p = lo, id_lo = -1, id_hi = -1;
    Py_ssize_t n_classes = -1, n_scores = -1;
    int seen_names = 0;
    p = json_ws(b, p, hi);
    if (p >= hi || b[p] != '{') return -1;
    p = json_ws(b, p + 1, hi);
    for (;;) {
        Py_ssize_t k = p, ke = json_plain_string(b, p, hi);
        if (ke < 0) goto undo;
        p = json_ws(b, ke, hi);
        if (p >= hi || b[p] != ':') goto undo;
        p = json_ws(b, p + 1, hi);
        Py_ssize_t klen = ke - k - 2;
        const char *key = b + k + 1;
        if (klen == 2 && memcmp(key, "id", 2) == 0 && id_lo < 0) {
            Py_ssize_t e = json_plain_string(b, p, hi);
            if (e < 0 || e - p == 2) goto undo;
            id_lo = p + 1;
            id_hi = e - 1;
            p = e;
        } else if (klen == 7 && memcmp(key, "classes", 7) == 0 && n_classes < 0 && n_scores < 0) {
            p = json_array(o, b, p, hi, json_label, &n_classes);
        } else if (klen == 6 && memcmp(key, "scores", 6) == 0 && n_scores < 0 && n_classes >= 0) {
            p = json_array(o, b, p, hi, json_score, &n_scores);
        } else if (klen == 5 && memcmp(key, "names", 5) == 0 && !seen_names) {
            Py_ssize_t n_names; /* a list of plain strings, skipped */
            seen_names = 1;
            p = json_array(o, b, p, hi, json_name, &n_names);
        } else {
            goto undo;
        }
        if (p == -2) return -2;
        if (p < 0) goto undo;
        p = json_ws(b, p, hi);
        if (p < hi && b[p] == ',') {
            p = json_ws(b, p + 1, hi);
            continue;
        }
        if (p < hi && b[p] == '}') {
            p++;
            break;
        }
        goto undo;
    }
    p = json_ws(b, p, hi);
    if (p != hi || id_lo < 0 || n_classes < 0 || n_scores < 0 || n_classes != n_scores) goto undo;
    return finish_row(o, first, rank, b, id_lo, id_hi);
undo:
    return drop_row(o, first);
}

typedef int (*RowParser)(Out *, const char *, Py_ssize_t, Py_ssize_t, int);

static PyObject *parse(PyObject *args, RowParser row) {
    Py_buffer view;
    Py_ssize_t pos;
    long long line_no;
    int rank;
    if (!PyArg_ParseTuple(args, "y*nLp", &view, &pos, &line_no, &rank)) return NULL;
    const char *b = (const char *)view.buf;
    Py_ssize_t n = view.len;
    Out o;
    memset(&o, 0, sizeof o);
    int stopped = 0, failed = 0;
    release_gil();
    while (pos < n) {
        Py_ssize_t end = line_end(b, pos, n), lo = pos, hi = end;
        line_no++;
        while (lo < hi && py_space(b[lo])) lo++;
        if (lo < hi) {
            int r = row(&o, b, pos, end, rank);
            if (r == -2) {
                failed = 1;
                break;
            }
            if (r == -1) {
                line_no--;
                stopped = 1;
                break;
            }
            if (buf_put(&o.lines, &line_no, 8) < 0) {
                failed = 1;
                break;
            }
        }
        pos = next_line(b, end, n);
    }
    reacquire_gil();
    PyObject *result = NULL;
    if (failed) {
        PyErr_NoMemory();
    } else {
        result = Py_BuildValue("nLiNNNNNN", pos, line_no, stopped, buf_bytes(&o.ids), buf_bytes(&o.id_len),
                               buf_bytes(&o.counts), buf_bytes(&o.lines), buf_bytes(&o.classes),
                               buf_bytes(&o.scores));
    }
    PyMem_RawFree(o.ids.data);
    PyMem_RawFree(o.id_len.data);
    PyMem_RawFree(o.counts.data);
    PyMem_RawFree(o.lines.data);
    PyMem_RawFree(o.classes.data);
    PyMem_RawFree(o.scores.data);
    PyBuffer_Release(&view);
    return result;
}

static PyObject *parse_kaggle(PyObject *self, PyObject *args) { return parse(args, kaggle_row); }
static PyObject *parse_jsonl(PyObject *self, PyObject *args) { return parse(args, jsonl_row); }

/* ------------------------------------------------------------------ exact decimal digits of float32 values
 *
 * The writers print float32 scores (as doubles) with "%.9g" (CSV) and repr() (JSON). Both are correctly
 * rounded decimal conversions; printf and PyOS_double_to_string do them with multi-precision arithmetic, at
 * ~0.5-1 us a number. A float32 is m * 2^-s with m < 2^24, so for values in [1e-15, 1e16) the scaled value
 * X = m * 10^(16-E) (E = floor(log10 v)) fits 128 bits and X / 2^s is a shift: the digits, their exact
 * rounding (half to even, as both references) and the round-trip test are integer operations. Other values
 * (0, subnormals, very small or large) take the reference functions. */

#if defined(__SIZEOF_INT128__)
typedef unsigned __int128 u128;

static const uint64_t POW10[20] = {1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL,
                                   10000000ULL, 100000000ULL, 1000000000ULL, 10000000000ULL,
                                   100000000000ULL, 1000000000000ULL, 10000000000000ULL,
                                   100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
                                   100000000000000000ULL, 1000000000000000000ULL,
                                   10000000000000000000ULL};

static u128 POW10_128[39];

static void init_pow10(void) {
    POW10_128[0] = 1;
    for (int i = 1; i < 39; i++) POW10_128[i] = POW10_128[i - 1] * 10;
}

static u128 pow10_128(int n) { return POW10_128[n]; } /* n <= 38 */

typedef struct {
    uint64_t q;  /* floor(v * 10^(16-E)): 17 digits, in [10^16, 10^17) */
    u128 rem;    /* the fraction's numerator over 2^s */
    u128 x;      /* m * 10^(16-E) */
    int s, e;    /* shift and decimal exponent E */
    uint32_t m;  /* float32 mantissa with the hidden bit */
} Decimal17;

/* 0 when v (positive, normal float32) is in the exact range; -1 otherwise. */
static int decimal17(float v, Decimal17 *d) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    int biased = (int)(bits >> 23) & 0xff;
    if (biased == 0 || biased == 0xff) return -1;
    d->m = (bits & 0x7fffff) | 0x800000;
    d->s = 150 - biased; /* v = m * 2^-s */
    if (d->s < 0 || d->s > 100) return -1;
    int e = (int)floor(log10((double)v));
    for (int tries = 0; tries < 3; tries++) {
        if (e < -15 || e > 15) return -1;
        u128 x = (u128)d->m * pow10_128(16 - e);
        u128 q = x >> d->s;
        if (q < POW10[16]) {
            e--;
            continue;
        }
        if (q >= POW10[17]) {
            e++;
            continue;
        }
        d->q = (uint64_t)q;
        d->rem = x & (((u128)1 << d->s) - 1);
        d->x = x;
        d->e = e;
        return 0;
    }
    return -1;
}

/* The value rounded (half to even) to 17 - t digits: the digits (may be 10^(17-t) after a carry). */
static uint64_t round_digits(const Decimal17 *d, int t) {
    if (t == 0) {
        u128 half = d->s ? ((u128)1 << (d->s - 1)) : 0;
        if (d->s == 0) return d->q;
        return d->q + (d->rem > half || (d->rem == half && (d->q & 1)));
    }
    uint64_t p = POW10[t], qd = d->q / p, r = d->q % p, h = p / 2;
    return qd + (r > h || (r == h && (d->rem > 0 || (qd & 1))));
}

/* Whether digits `w` (17 - t digits at exponent E) read back as the same double: within half an ulp. */
static int round_trips(const Decimal17 *d, uint64_t w, int t) {
    u128 x = d->x;
    u128 y = (u128)w * POW10[t];
    if (y >> (127 - d->s)) return 0;
    y <<= d->s;
    u128 diff = y > x ? y - x : x - y;
    /* the double's half ulp is 2^(-s-30) (2^(-s-31) below a power of two), in units of 10^(E-16) */
    int below = y < x && d->m == 0x800000;
    if (diff >> (97 - below)) return 0;
    return (diff << (30 + below)) <= pow10_128(16 - d->e);
}

static int put_digits(char *out, uint64_t digits) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + digits % 10);
        digits /= 10;
    } while (digits);
    for (int i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

/* digits (no trailing zeros, n of them) with decimal exponent e of the first digit, printed fixed or with
 * an exponent; add_dot_0: "1.0" rather than "1" (repr). Returns the length. */
static int layout(char *out, const char *dig, int n, int e, int exponent, int add_dot_0) {
    int len = 0;
    if (exponent) {
        out[len++] = dig[0];
        if (n > 1) {
            out[len++] = '.';
            memcpy(out + len, dig + 1, n - 1);
            len += n - 1;
        }
        len += snprintf(out + len, 8, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
        return len;
    }
    if (e < 0) {
        out[len++] = '0';
        out[len++] = '.';
        for (int i = 0; i < -e - 1; i++) out[len++] = '0';
        memcpy(out + len, dig, n);
        return len + n;
    }
    for (int i = 0; i <= e; i++) out[len++] = i < n ? dig[i] : '0';
    if (n > e + 1) {
        out[len++] = '.';
        memcpy(out + len, dig + e + 1, n - e - 1);
        len += n - e - 1;
    } else if (add_dot_0) {
        out[len++] = '.';
        out[len++] = '0';
    }
    return len;
}

static int strip(char *dig, int n) {
    while (n > 1 && dig[n - 1] == '0') n--;
    return n;
}

/* "%.9g" of (double)v; -1 when v is outside the exact range. */
static int fast_g9(float v, char *out) {
    int neg = signbit(v), len = 0;
    Decimal17 d;
    if (decimal17(neg ? -v : v, &d) < 0) return -1;
    uint64_t w = round_digits(&d, 8);
    int e = d.e;
    if (w == POW10[9]) {
        w = POW10[8];
        e++;
    }
    char dig[24];
    int n = strip(dig, put_digits(dig, w));
    if (neg) out[len++] = '-';
    return len + layout(out + len, dig, n, e, !(e >= -4 && e < 9), 0);
}

/* repr((double)v); -1 when v is outside the exact range. */
static int fast_repr(float v, char *out) {
    int neg = signbit(v), len = 0;
    Decimal17 d;
    if (decimal17(neg ? -v : v, &d) < 0) return -1;
    int lo = 1, hi = 17; /* the shortest digit count that reads back: round-tripping is monotone in it */
    uint64_t best = round_digits(&d, 0);
    uint64_t w16 = round_digits(&d, 1), w9 = round_digits(&d, 8);
    if (!round_trips(&d, w16, 1)) {
        lo = 17; /* most float32 values need 16 or 17 digits; short ones (0.5, 0.25) 9 or fewer */
    } else if (!round_trips(&d, w9, 8)) {
        lo = 10;
        hi = 16;
        best = w16;
    } else {
        hi = 9;
        best = w9;
    }
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        uint64_t w = round_digits(&d, 17 - mid);
        if (round_trips(&d, w, 17 - mid)) {
            hi = mid;
            best = w;
        } else {
            lo = mid + 1;
        }
    }
    if (hi == 17) best = round_digits(&d, 0);
    int e = d.e;
    if (best == POW10[hi]) {
        best = POW10[hi - 1];
        e++;
    }
    char dig[24];
    int n = strip(dig, put_digits(dig, best));
    if (neg) out[len++] = '-';
    return len + layout(out + len, dig, n, e, e < -4 || e >= 16, 1);
}
#else
static int fast_g9(float v, char *out) { return -1; }
static int fast_repr(float v, char *out) { return -1; }
#endif

/* "%.9g" of (double)v into dst (size bytes), as the CSV writer prints scores: the exact fast path where it
 * applies, else the C library's. */
static int format_g9(float v, char *dst, size_t size) {
    const int n = fast_g9(v, dst);
    return n >= 0 ? n : snprintf(dst, size, "%.9g", (double)v);
}

/* ------------------------------------------------------------------ formatting */

typedef struct {
    Py_buffer ids, classes, scores;
    Py_ssize_t width, rows, k;
} Table;

static int open_table(PyObject *args, Table *t, PyObject **names) {
    memset(t, 0, sizeof *t);
    if (!PyArg_ParseTuple(args, "y*ny*y*nn|O", &t->ids, &t->width, &t->classes, &t->scores, &t->rows, &t->k,
                          names))
        return -1;
    if (t->ids.len < t->rows * t->width || t->classes.len < t->rows * t->k * 4 ||
        t->scores.len < t->rows * t->k * 4) {
        PyErr_SetString(PyExc_ValueError, "format: buffers smaller than rows x width / k");
        return -1;
    }
    return 0;
}

static void close_table(Table *t) {
    if (t->ids.obj) PyBuffer_Release(&t->ids);
    if (t->classes.obj) PyBuffer_Release(&t->classes);
    if (t->scores.obj) PyBuffer_Release(&t->scores);
}

/* A fixed-width id without numpy's NUL padding (trailing NULs only, as numpy strips them). */
static Py_ssize_t id_length(const char *id, Py_ssize_t width) {
    while (width > 0 && id[width - 1] == '\0') width--;
    return width;
}

/* The CSV rows of t into out (GIL released); -1 when out of memory. */
static int kaggle_rows(const Table *t, Buf *out) {
    const char *ids = t->ids.buf;
    const int32_t *classes = t->classes.buf;
    const float *scores = t->scores.buf;
    char num[64];
    for (Py_ssize_t r = 0; r < t->rows; r++) {
        const char *id = ids + r * t->width;
        if (buf_put(out, id, id_length(id, t->width)) < 0 || buf_put(out, ",", 1) < 0) return -1;
        int firstpair = 1;
        for (Py_ssize_t j = 0; j < t->k; j++) {
            int32_t c = classes[r * t->k + j];
            if (c < 0) continue;
            int len = snprintf(num, sizeof num, firstpair ? "%d " : " %d ", (int)c);
            len += format_g9(scores[r * t->k + j], num + len, sizeof num - len);
            if (buf_put(out, num, len) < 0) return -1;
            firstpair = 0;
        }
        if (buf_put(out, "\n", 1) < 0) return -1;
    }
    return 0;
}

static PyObject *format_kaggle(PyObject *self, PyObject *args) {
    Table t;
    PyObject *names = NULL;
    Buf out = {0};
    PyObject *result = NULL;
    if (open_table(args, &t, &names) == 0) {
        release_gil();
        int r = kaggle_rows(&t, &out);
        reacquire_gil();
        result = r < 0 ? PyErr_NoMemory() : buf_bytes(&out);
    }
    PyMem_RawFree(out.data);
    close_table(&t);
    return result;
}

/* repr((double)v) appended to out; -1 when out of memory (or CPython's conversion failed: error set). */
static int put_repr(Buf *out, float v) {
    char fast[40];
    int n = fast_repr(v, fast);
    if (n >= 0) return buf_put(out, fast, n);
    gil_take();
    char *s = PyOS_double_to_string((double)v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    int r = s == NULL ? -1 : buf_put(out, s, (Py_ssize_t)strlen(s));
    if (s != NULL) PyMem_Free(s);
    gil_give();
    return r;
}

typedef struct {
    const char **text;
    Py_ssize_t *len;
    Py_ssize_t count;
} Names;

/* The JSON lines of t into out (GIL released): 0, -1 out of memory, or 1 + the class without a name. */
static long long jsonl_rows(const Table *t, const Names *names, Buf *out) {
    const char *ids = t->ids.buf;
    const int32_t *classes = t->classes.buf;
    const float *scores = t->scores.buf;
    char num[16];
    for (Py_ssize_t r = 0; r < t->rows; r++) {
        const char *id = ids + r * t->width;
        const int32_t *c = classes + r * t->k;
        const float *s = scores + r * t->k;
        if (buf_put(out, "{\"id\": \"", 8) < 0 || buf_put(out, id, id_length(id, t->width)) < 0 ||
            buf_put(out, "\", \"classes\": [", 15) < 0)
            return -1;
        int firstone = 1;
        for (Py_ssize_t j = 0; j < t->k; j++) {
            if (c[j] < 0) continue;
            int len = snprintf(num, sizeof num, firstone ? "%d" : ", %d", (int)c[j]);
            if (buf_put(out, num, len) < 0) return -1;
            firstone = 0;
        }
        if (buf_put(out, "], \"scores\": [", 14) < 0) return -1;
        firstone = 1;
        for (Py_ssize_t j = 0; j < t->k; j++) {
            if (c[j] < 0) continue;
            if ((!firstone && buf_put(out, ", ", 2) < 0) || put_repr(out, s[j]) < 0) return -1;
            firstone = 0;
        }
        if (buf_put(out, "]", 1) < 0) return -1;
        if (names != NULL) {
            if (buf_put(out, ", \"names\": [", 12) < 0) return -1;
            firstone = 1;
            for (Py_ssize_t j = 0; j < t->k; j++) {
                if (c[j] < 0) continue;
                if (c[j] >= names->count || names->text[c[j]] == NULL) return 1 + (long long)c[j];
                if ((!firstone && buf_put(out, ", ", 2) < 0) ||
                    buf_put(out, names->text[c[j]], names->len[c[j]]) < 0)
                    return -1;
                firstone = 0;
            }
            if (buf_put(out, "]", 1) < 0) return -1;
        }
        if (buf_put(out, "}\n", 2) < 0) return -1;
    }
    return 0;
}

static PyObject *format_jsonl(PyObject *self, PyObject *args) {
    Table t;
    PyObject *list = NULL;
    Buf out = {0};
    PyObject *result = NULL;
    Names names = {NULL, NULL, 0};
    if (open_table(args, &t, &list) < 0) goto done;
    if (list == Py_None) list = NULL;
    if (list != NULL) {
        if (!PyList_Check(list)) {
            PyErr_SetString(PyExc_TypeError, "format_jsonl: names must be a list of bytes or None");
            goto done;
        }
        /* the texts of the list's bytes (the list, held by the arguments, keeps them alive) */
        names.count = PyList_GET_SIZE(list);
        names.text = PyMem_Calloc(names.count + 1, sizeof(char *));
        names.len = PyMem_Calloc(names.count + 1, sizeof(Py_ssize_t));
        if (names.text == NULL || names.len == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t i = 0; i < names.count; i++) {
            PyObject *item = PyList_GET_ITEM(list, i);
            if (PyBytes_Check(item)) {
                names.text[i] = PyBytes_AS_STRING(item);
                names.len[i] = PyBytes_GET_SIZE(item);
            }
        }
    }
    release_gil();
    long long r = jsonl_rows(&t, list != NULL ? &names : NULL, &out);
    reacquire_gil();
    if (r > 0) {
        PyErr_Format(PyExc_ValueError, "format_jsonl: no JSON name for class %lld", r - 1);
    } else if (r < 0) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
    } else {
        result = buf_bytes(&out);
    }
done:
    PyMem_Free(names.text);
    PyMem_Free(names.len);
    PyMem_RawFree(out.data);
    close_table(&t);
    return result;
}

/* Each float32 of a buffer printed as the writers print it ("%.9g", or repr with `repr`), one a line: tests
 * compare it with Python's formatting over many values. */
static PyObject *format_floats(PyObject *self, PyObject *args) {
    Py_buffer view;
    int repr;
    Buf out = {0};
    PyObject *result = NULL;
    char num[64];
    if (!PyArg_ParseTuple(args, "y*p", &view, &repr)) return NULL;
    const float *v = view.buf;
    for (Py_ssize_t i = 0; i < view.len / 4; i++) {
        if (repr) {
            if (put_repr(&out, v[i]) < 0) goto done;
        } else {
            if (buf_put(&out, num, format_g9(v[i], num, sizeof num)) < 0) goto done;
        }
        if (buf_put(&out, "\n", 1) < 0) goto done;
    }
    result = buf_bytes(&out);
done:
    if (result == NULL && !PyErr_Occurred()) PyErr_NoMemory();
    PyMem_RawFree(out.data);
    PyBuffer_Release(&view);
    return result;
}

/* Each whitespace-separated token parsed as the readers parse scores: float64 bytes, NaN for a token the fast
 * path does not take. Tests compare it with float() over many spellings. */
static PyObject *parse_numbers(PyObject *self, PyObject *args) {
    Py_buffer view;
    Buf out = {0};
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "y*", &view)) return NULL;
    const char *b = view.buf;
    Py_ssize_t p = 0, n = view.len;
    for (;;) {
        while (p < n && py_space(b[p])) p++;
        if (p >= n) break;
        Py_ssize_t t = p;
        while (p < n && !py_space(b[p])) p++;
        double v;
        if (parse_number(b + t, p - t, &v) < 0) v = NAN;
        if (buf_put(&out, &v, 8) < 0) goto done;
    }
    result = buf_bytes(&out);
done:
    if (result == NULL && !PyErr_Occurred()) PyErr_NoMemory();
    PyMem_RawFree(out.data);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"parse_kaggle", parse_kaggle, METH_VARARGS, "parse_kaggle(buf, pos, line_no, rank): see the source."},
    {"parse_jsonl", parse_jsonl, METH_VARARGS, "parse_jsonl(buf, pos, line_no, rank): see the source."},
    {"format_kaggle", format_kaggle, METH_VARARGS, "format_kaggle(ids, width, classes, scores, rows, k)."},
    {"format_jsonl", format_jsonl, METH_VARARGS, "format_jsonl(ids, width, classes, scores, rows, k, names)."},
    {"format_floats", format_floats, METH_VARARGS, "format_floats(float32 buffer, repr): the numbers, one a line."},
    {"parse_numbers", parse_numbers, METH_VARARGS, "parse_numbers(tokens): float64 bytes, NaN where not taken."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_predio",
                                    "Prediction files (Kaggle CSV, JSON lines) parsed and formatted in C.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__predio(void) {
#if defined(__SIZEOF_INT128__)
    init_pow10();
#endif
    return PyModule_Create(&module);
}
