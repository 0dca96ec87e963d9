/* Filling padded batches from quantized (uint8) frames: one pass, the GIL released.
 * Need: every training and evaluation batch; numpy takes three passes, about half as fast (docs/data.md).
 * Fallback: numpy, the same bits (FAST_FILL None; tests/test_data_pipeline.py).
 *
 * fill(out, frames, lengths, lo, hi, table, scale, bias, affine)
 *
 *   out      writable C-contiguous buffer [B, T, D], float32 ("f") or uint8 ("B")
 *   frames   sequence of B objects: None (no frames) or a uint8 buffer [n_i, D] whose rows may be strided
 *            (element stride 1, any row stride), as the TFRecord reader's views are
 *   lengths  sequence of B ints: the rows of frames[i] to copy (<= n_i; the rest of out[i] is zeroed)
 *   lo, hi   the videos to fill: out[lo:hi]
 *   table    float32 buffer [256]: the value of each code (float32 out only)
 *   scale, bias, affine
 *            with affine true, values are computed as (float)code * scale, then + bias, in float32 with
 *            two roundings (built with -ffp-contract=off); the caller checks once that this equals table.
 *            Otherwise values are looked up in table.
 *
 * uint8 out copies the codes. The pipeline calls this from several threads on disjoint ranges of videos.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *data;
    Py_ssize_t stride; /* bytes between rows */
    Py_ssize_t rows;   /* rows to copy */
} Source;

static int is_format(const Py_buffer *view, char code) {
    const char *f = view->format;
    if (f == NULL) return code == 'B';
    if (f[0] == '<' || f[0] == '=' || f[0] == '@' || f[0] == '|') f++;
    return f[0] == code && f[1] == '\0';
}

#if defined(__x86_64__) || defined(_M_X64)
#include <emmintrin.h>
#define ZOO_SSE2 1
#endif

/* A batch (tens of MB) is far larger than the caches and is next read by a copy to the device, so the
 * values are written with non-temporal (streaming) stores: they go to memory without first reading the
 * old contents into the cache, which saves a third of the memory traffic. */

static void row_affine(float *dst, const uint8_t *src, Py_ssize_t d, float scale, float bias) {
    Py_ssize_t j = 0;
#ifdef ZOO_SSE2
    for (; j < d && ((uintptr_t)(dst + j) & 15); j++) {
        float v = (float)src[j] * scale;
        dst[j] = v + bias;
    }
    const __m128 s = _mm_set1_ps(scale), b = _mm_set1_ps(bias);
    const __m128i zero = _mm_setzero_si128();
    for (; j + 16 <= d; j += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(src + j));
        __m128i lo = _mm_unpacklo_epi8(x, zero), hi = _mm_unpackhi_epi8(x, zero);
        /* int -> float is exact for 0..255; then one rounding for the product and one for the sum */
        _mm_stream_ps(dst + j, _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(_mm_unpacklo_epi16(lo, zero)), s), b));
        _mm_stream_ps(dst + j + 4, _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(_mm_unpackhi_epi16(lo, zero)), s), b));
        _mm_stream_ps(dst + j + 8, _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(_mm_unpacklo_epi16(hi, zero)), s), b));
        _mm_stream_ps(dst + j + 12, _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(_mm_unpackhi_epi16(hi, zero)), s), b));
    }
#endif
    for (; j < d; j++) {
        float v = (float)src[j] * scale;
        dst[j] = v + bias;
    }
}

static void zero_floats(float *dst, Py_ssize_t count) {
    Py_ssize_t j = 0;
#ifdef ZOO_SSE2
    for (; j < count && ((uintptr_t)(dst + j) & 15); j++) dst[j] = 0.0f;
    const __m128 z = _mm_setzero_ps();
    for (; j + 4 <= count; j += 4) _mm_stream_ps(dst + j, z);
#endif
    if (j < count) memset(dst + j, 0, (size_t)(count - j) * sizeof(float));
}

static void fill_float(float *out, const Source *src, Py_ssize_t count, Py_ssize_t t, Py_ssize_t d,
                       const float *table, float scale, float bias, int affine) {
    for (Py_ssize_t i = 0; i < count; i++) {
        float *o = out + i * t * d;
        Py_ssize_t n = src[i].rows;
        for (Py_ssize_t r = 0; r < n; r++) {
            const uint8_t *s = src[i].data + r * src[i].stride;
            float *row = o + r * d;
            if (affine) {
                row_affine(row, s, d, scale, bias);
            } else {
                for (Py_ssize_t j = 0; j < d; j++) row[j] = table[s[j]];
            }
        }
        if (n < t) zero_floats(o + n * d, (t - n) * d);
    }
#ifdef ZOO_SSE2
    _mm_sfence(); /* the streaming stores are done before the batch is handed on */
#endif
}

static void fill_uint8(uint8_t *out, const Source *src, Py_ssize_t count, Py_ssize_t t, Py_ssize_t d) {
    for (Py_ssize_t i = 0; i < count; i++) {
        uint8_t *o = out + i * t * d;
        Py_ssize_t n = src[i].rows;
        if (n > 0 && src[i].stride == d) {
            memcpy(o, src[i].data, (size_t)(n * d));
        } else {
            for (Py_ssize_t r = 0; r < n; r++) memcpy(o + r * d, src[i].data + r * src[i].stride, (size_t)d);
        }
        if (n < t) memset(o + n * d, 0, (size_t)((t - n) * d));
    }
}

static PyObject *fill(PyObject *self, PyObject *args) {
    PyObject *out_obj, *frames, *lengths, *table_obj;
    Py_ssize_t lo, hi;
    float scale, bias;
    int affine;
    if (!PyArg_ParseTuple(args, "OOOnnOffp", &out_obj, &frames, &lengths, &lo, &hi, &table_obj, &scale, &bias,
                          &affine))
        return NULL;

    Py_buffer out, table;
    memset(&table, 0, sizeof(table));
    if (PyObject_GetBuffer(out_obj, &out, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | PyBUF_FORMAT) < 0) return NULL;
    PyObject *result = NULL;
    Py_buffer *views = NULL;
    Source *src = NULL;
    Py_ssize_t got = 0;
    int is_float = is_format(&out, 'f') && out.itemsize == 4;
    if (out.ndim != 3 || !(is_float || (is_format(&out, 'B') && out.itemsize == 1))) {
        PyErr_SetString(PyExc_ValueError, "out must be a C-contiguous [B, T, D] float32 or uint8 array");
        goto done;
    }
    Py_ssize_t b = out.shape[0], t = out.shape[1], d = out.shape[2];
    if (lo < 0 || hi > b || lo > hi) {
        PyErr_SetString(PyExc_ValueError, "lo:hi is outside the batch");
        goto done;
    }
    if (PySequence_Size(frames) != b || PySequence_Size(lengths) != b) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "frames and lengths need one entry per video");
        goto done;
    }
    if (is_float) {
        if (PyObject_GetBuffer(table_obj, &table, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
        if (!is_format(&table, 'f') || table.itemsize != 4 || table.len != 256 * 4) {
            PyErr_SetString(PyExc_ValueError, "table must be 256 float32 values");
            goto done;
        }
    }
    Py_ssize_t count = hi - lo;
    views = PyMem_Calloc((size_t)(count ? count : 1), sizeof(Py_buffer));
    src = PyMem_Calloc((size_t)(count ? count : 1), sizeof(Source));
    if (views == NULL || src == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *length = PySequence_GetItem(lengths, lo + i);
        if (length == NULL) goto done;
        Py_ssize_t n = PyNumber_AsSsize_t(length, PyExc_OverflowError);
        Py_DECREF(length);
        if (n == -1 && PyErr_Occurred()) goto done;
        if (n < 0 || n > t) {
            PyErr_Format(PyExc_ValueError, "video %zd: %zd frames do not fit the batch's %zd", lo + i, n, t);
            goto done;
        }
        src[i].rows = n;
        if (n == 0) continue;
        PyObject *item = PySequence_GetItem(frames, lo + i);
        if (item == NULL) goto done;
        int rc = PyObject_GetBuffer(item, &views[i], PyBUF_STRIDES | PyBUF_FORMAT);
        Py_DECREF(item);
        if (rc < 0) goto done;
        got = i + 1;
        Py_buffer *v = &views[i];
        if (v->ndim != 2 || !is_format(v, 'B') || v->itemsize != 1 || v->shape[1] != d || v->strides[1] != 1 ||
            v->shape[0] < n || v->strides[0] < d) {
            PyErr_Format(PyExc_ValueError, "video %zd: frames must be uint8 [>= %zd, %zd] with contiguous rows",
                         lo + i, n, d);
            goto done;
        }
        src[i].data = (const uint8_t *)v->buf;
        src[i].stride = v->strides[0];
    }
    got = count;
    Py_BEGIN_ALLOW_THREADS
    if (is_float) {
        fill_float((float *)out.buf + lo * t * d, src, count, t, d, (const float *)table.buf, scale, bias, affine);
    } else {
        fill_uint8((uint8_t *)out.buf + lo * t * d, src, count, t, d);
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);

done:
    for (Py_ssize_t i = 0; i < got; i++) {
        if (views[i].obj != NULL) PyBuffer_Release(&views[i]);
    }
    PyMem_Free(views);
    PyMem_Free(src);
    if (table.obj != NULL) PyBuffer_Release(&table);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"fill", fill, METH_VARARGS, "fill(out, frames, lengths, lo, hi, table, scale, bias, affine): see the source."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastfill",
                                    "Padded batches from uint8 frames in one pass, without the GIL.", -1, methods};

PyMODINIT_FUNC PyInit__fastfill(void) { return PyModule_Create(&module); }
