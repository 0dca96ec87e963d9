/* NeXtVLAD's weighted cluster assignments in one pass each, the GIL released: at inference from the logits
 * (assign), and in training around the pooling op (weight, weight_grad; zoo_nextvlad.ops._PoolExpand).
 * Need: NeXtVLAD's evaluation, prediction and training steps (docs/nextvlad.md); paddle's ops take four
 * single-threaded passes. Fallback: those ops (FUSED_ASSIGN None; tests/test_nextvlad_formulation.py).
 *
 * assign(out, logits, mask, bias, groups, clusters, threads)
 *
 *   logits   float32 C-contiguous [R, G*K + G]: per frame (row), the assignment logits (group-major,
 *            g*K + k) followed by the G group-attention logits, as one matmul of the frame with the joined
 *            product matrices gives them (zoo_nextvlad.model.NeXtVLADLayer)
 *   mask     float32 [R]: 1 for a real frame, 0 for padding
 *   bias     float32 [G*K + G]: added to every row of logits
 *   out      float32 C-contiguous [R, K*G], written cluster-major:
 *              out[r, k*G + g] = softmax_k(l[r, g, :])[k] * (sigmoid(l[r, G*K + g]) * mask[r])
 *            with l = logits + bias; rows whose mask is 0 are zeros (their logits are not read)
 *   threads  rows are split into this many contiguous ranges, one thread each
 *
 * weight(out, soft, frame_weight, groups, clusters, threads)             (training forward)
 *   soft [R, G*K] (group-major softmax output), frame_weight [R, G] -> out [R, K*G] cluster-major:
 *   out[r, k*G + g] = soft[r, g*K + k] * frame_weight[r, g]
 *
 * weight_grad(grad_soft, grad_weight, grad, grad_sums, soft, frame_weight, frames, groups, clusters, threads)
 *   The backward of weight() followed by the assignment sums (training backward): with
 *   v[r, k*G + g] = grad[r, k*G + g] + grad_sums[r / frames, k*G + g] (grad cluster-major [R, K*G], the sums'
 *   gradient [R / frames, K*G] broadcast over each video's frames),
 *   grad_soft[r, g*K + k] = v * frame_weight[r, g] and grad_weight[r, g] = sum_k v * soft[r, g*K + k].
 *
 * assign's kernel lives in assign_kernel.h, shared with the Paddle custom operator (assign_op.cc) that exports
 * made with `zoo export --custom-ops` call.
 *
 * The same values as paddle's ops in that order (softmax, sigmoid, multiply by the mask, multiply, transpose
 * to cluster-major) up to float32 rounding (closer to the exact values than those ops: the sum is in double); four passes over [R, G*K] become one, which at NeXtVLAD's sizes
 * is about a fifth of an inference forward. The exponential is evaluated by exp_ps below (a polynomial,
 * within a few ulp of expf) so the compiler vectorizes the loops; the row loop is compiled for AVX-512, AVX2
 * and the baseline, chosen when the module loads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "assign_kernel.h"

typedef struct {
    float *out, *out2;
    const float *a, *b, *c, *d;
    Py_ssize_t groups, clusters, frames;
    int kind; /* 1: weight, 2: weight_grad */
} Rows;

static void weight_rows(const Rows *j, Py_ssize_t lo, Py_ssize_t hi) {
    const Py_ssize_t g_count = j->groups, k_count = j->clusters, width = g_count * k_count;
    for (Py_ssize_t r = lo; r < hi; r++) {
        const float *soft = j->a + r * width, *w = j->b + r * g_count;
        float *out = j->out + r * width;
        for (Py_ssize_t g = 0; g < g_count; g++) {
            const float wg = w[g];
            for (Py_ssize_t k = 0; k < k_count; k++) out[k * g_count + g] = soft[g * k_count + k] * wg;
        }
    }
}

static void weight_grad_rows(const Rows *j, Py_ssize_t lo, Py_ssize_t hi) {
    const Py_ssize_t g_count = j->groups, k_count = j->clusters, width = g_count * k_count;
    for (Py_ssize_t r = lo; r < hi; r++) {
        const float *grad = j->a + r * width, *sums = j->b + (r / j->frames) * width;
        const float *soft = j->c + r * width, *w = j->d + r * g_count;
        float *grad_soft = j->out + r * width, *grad_weight = j->out2 + r * g_count;
        for (Py_ssize_t g = 0; g < g_count; g++) {
            const float wg = w[g];
            double total = 0.0;
            for (Py_ssize_t k = 0; k < k_count; k++) {
                const float v = grad[k * g_count + g] + sums[k * g_count + g];
                grad_soft[g * k_count + k] = v * wg;
                total += (double)(v * soft[g * k_count + k]);
            }
            grad_weight[g] = (float)total;
        }
    }
}

static void rows_range(const void *job, int64_t lo, int64_t hi) {
    const Rows *j = (const Rows *)job;
    if (j->kind == 1)
        weight_rows(j, lo, hi);
    else
        weight_grad_rows(j, lo, hi);
}

/* rows [0, rows) of job split over threads (assign_kernel.h's zoo_split_rows), the GIL released */
static void split_rows(Rows *job, Py_ssize_t rows, Py_ssize_t threads) {
    Py_BEGIN_ALLOW_THREADS
    zoo_split_rows(rows, threads, rows_range, job);
    Py_END_ALLOW_THREADS
}

static int get_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t items, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    const char *f = view->format;
    if (f != NULL && (f[0] == '<' || f[0] == '=' || f[0] == '@')) f++;
    if (f == NULL || f[0] != 'f' || f[1] != '\0' || view->len != items * (Py_ssize_t)sizeof(float)) {
        PyErr_Format(PyExc_ValueError, "assign: %s must be %zd float32 values in one contiguous buffer", name,
                     items);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *assign(PyObject *self, PyObject *args) {
    PyObject *out_obj, *logits_obj, *mask_obj, *bias_obj;
    Py_ssize_t groups, clusters, threads;
    if (!PyArg_ParseTuple(args, "OOOOnnn", &out_obj, &logits_obj, &mask_obj, &bias_obj, &groups, &clusters,
                          &threads))
        return NULL;
    if (groups < 1 || clusters < 1 || clusters > ZOO_ASSIGN_MAX_CLUSTERS || threads < 1) {
        PyErr_SetString(PyExc_ValueError, "assign: groups >= 1, 1 <= clusters <= 1024 and threads >= 1");
        return NULL;
    }
    Py_buffer mask;
    if (PyObject_GetBuffer(mask_obj, &mask, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    const Py_ssize_t rows = mask.len / (Py_ssize_t)sizeof(float), width = groups * clusters + groups;
    PyBuffer_Release(&mask);
    Py_buffer views[4];
    if (get_buffer(out_obj, &views[0], 1, rows * groups * clusters, "out") < 0) return NULL;
    if (get_buffer(logits_obj, &views[1], 0, rows * width, "logits") < 0) goto fail1;
    if (get_buffer(mask_obj, &views[2], 0, rows, "mask") < 0) goto fail2;
    if (get_buffer(bias_obj, &views[3], 0, width, "bias") < 0) goto fail3;

    Py_BEGIN_ALLOW_THREADS
    zoo_assign(views[0].buf, views[1].buf, views[2].buf, views[3].buf, rows, groups, clusters, threads);
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&views[3]);
    PyBuffer_Release(&views[2]);
    PyBuffer_Release(&views[1]);
    PyBuffer_Release(&views[0]);
    Py_RETURN_NONE;
fail3:
    PyBuffer_Release(&views[2]);
fail2:
    PyBuffer_Release(&views[1]);
fail1:
    PyBuffer_Release(&views[0]);
    return NULL;
}

static PyObject *weight(PyObject *self, PyObject *args) {
    PyObject *out_obj, *soft_obj, *w_obj;
    Py_ssize_t groups, clusters, threads;
    if (!PyArg_ParseTuple(args, "OOOnnn", &out_obj, &soft_obj, &w_obj, &groups, &clusters, &threads)) return NULL;
    if (groups < 1 || clusters < 1 || threads < 1) {
        PyErr_SetString(PyExc_ValueError, "weight: groups, clusters and threads must be at least 1");
        return NULL;
    }
    Py_buffer w;
    if (PyObject_GetBuffer(w_obj, &w, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    const Py_ssize_t rows = w.len / (Py_ssize_t)sizeof(float) / groups;
    PyBuffer_Release(&w);
    Py_buffer v[3];
    if (get_buffer(out_obj, &v[0], 1, rows * groups * clusters, "out") < 0) return NULL;
    if (get_buffer(soft_obj, &v[1], 0, rows * groups * clusters, "soft") < 0) goto f1;
    if (get_buffer(w_obj, &v[2], 0, rows * groups, "frame_weight") < 0) goto f2;
    Rows job = {v[0].buf, NULL, v[1].buf, v[2].buf, NULL, NULL, groups, clusters, 1, 1};
    split_rows(&job, rows, threads);
    PyBuffer_Release(&v[2]);
f2:
    PyBuffer_Release(&v[1]);
f1:
    PyBuffer_Release(&v[0]);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyObject *weight_grad(PyObject *self, PyObject *args) {
    PyObject *o[6];
    Py_ssize_t frames, groups, clusters, threads;
    if (!PyArg_ParseTuple(args, "OOOOOOnnnn", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &frames, &groups,
                          &clusters, &threads))
        return NULL;
    if (frames < 1 || groups < 1 || clusters < 1 || threads < 1) {
        PyErr_SetString(PyExc_ValueError, "weight_grad: frames, groups, clusters and threads must be at least 1");
        return NULL;
    }
    Py_buffer w;
    if (PyObject_GetBuffer(o[5], &w, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    const Py_ssize_t rows = w.len / (Py_ssize_t)sizeof(float) / groups, width = groups * clusters;
    PyBuffer_Release(&w);
    if (rows % frames) {
        PyErr_SetString(PyExc_ValueError, "weight_grad: the rows are not a whole number of videos");
        return NULL;
    }
    static const char *names[6] = {"grad_soft", "grad_weight", "grad", "grad_sums", "soft", "frame_weight"};
    const Py_ssize_t items[6] = {rows * width, rows * groups, rows * width, rows / frames * width, rows * width,
                                 rows * groups};
    Py_buffer v[6];
    int got = 0;
    for (; got < 6; got++)
        if (get_buffer(o[got], &v[got], got < 2, items[got], names[got]) < 0) break;
    if (got == 6) {
        Rows job = {v[0].buf, v[1].buf, v[2].buf, v[3].buf, v[4].buf, v[5].buf, groups, clusters, frames, 2};
        split_rows(&job, rows, threads);
    }
    while (got-- > 0) PyBuffer_Release(&v[got]);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"weight", weight, METH_VARARGS, "Weighted cluster-major assignments from the softmax (training forward)."},
    {"weight_grad", weight_grad, METH_VARARGS, "The backward of weight() and the assignment sums (see the header)."},
    {"assign", assign, METH_VARARGS, "NeXtVLAD's weighted cluster-major assignments (see the file's header)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_assign", NULL, -1, methods};

PyMODINIT_FUNC PyInit__assign(void) { return PyModule_Create(&module); }
