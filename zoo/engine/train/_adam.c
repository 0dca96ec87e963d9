/* The Adam update with the gradient's clip factor and L2 term folded in: one pass over each parameter.
 * Need: opt-in train.fused_update, optimizer.step() 3x faster than paddle's four passes (reference NeXtVLAD,
 * training step ~1.3x). Fallback: paddle's clip, L2 and adam kernels (FUSED_ADAM None; tests/test_optim.py).
 *
 * adam(param, grad, moment1, moment2, beta1_pow, beta2_pow, lr, beta1, beta2, epsilon, scale, decay, threads)
 *   param, grad, moment1, moment2: float32 buffers of one length; beta1_pow, beta2_pow: one float32 each.
 *   Per element, in float32 and in paddle's order (clip, then L2, then paddle's CPU adam kernel):
 *     g  = grad * scale                      (the clip factor: ClipGradByGlobalNorm's g * factor)
 *     g  = g + param * decay                 (when decay != 0: L2Decay's scale, then the sum)
 *     m1 = fma(beta1, m1, (1 - beta1) * g)
 *     m2 = fma(beta2, m2, (1 - beta2) * (g * g))
 *     param = fma(m1 / (sqrt(m2) + eps_t), -lr_t, param)
 *   with lr_t = lr * (sqrt(1 - beta2_pow) / (1 - beta1_pow)) and eps_t = epsilon * sqrt(1 - beta2_pow), then
 *   beta1_pow *= beta1 and beta2_pow *= beta2. The expressions and the fused multiply-adds are those of
 *   paddle's AVX-512 adam kernel, so where paddle runs that kernel the result is the same bit for bit; the
 *   gradient itself is left as it was. The elements are split over `threads` threads with the GIL released.
 *
 * Built with -ffp-contract=off (the only fused multiply-adds are the explicit fmaf calls) and -fno-math-errno
 * (sqrtf vectorizes; its argument is never negative).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>

#define MAX_THREADS 64
#define MIN_PER_THREAD 65536 /* below this many elements a thread costs more than it saves */

typedef struct {
    float *param, *m1, *m2;
    const float *grad;
    float beta1, beta2, one_minus_beta1, one_minus_beta2, neg_lr, eps, scale, decay;
    Py_ssize_t lo, hi;
} Part;

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx512f", "arch=haswell", "default")))
#endif
static void update(const Part *p) {
    float *restrict param = p->param, *restrict m1 = p->m1, *restrict m2 = p->m2;
    const float *restrict grad = p->grad;
    const float b1 = p->beta1, b2 = p->beta2, c1 = p->one_minus_beta1, c2 = p->one_minus_beta2;
    const float neg_lr = p->neg_lr, eps = p->eps, scale = p->scale, decay = p->decay;
    if (decay != 0.0f) {
        for (Py_ssize_t i = p->lo; i < p->hi; i++) {
            const float w = param[i];
            const float g = grad[i] * scale + w * decay;
            const float a = fmaf(b1, m1[i], c1 * g);
            const float b = fmaf(b2, m2[i], c2 * (g * g));
            m1[i] = a;
            m2[i] = b;
            param[i] = fmaf(a / (sqrtf(b) + eps), neg_lr, w);
        }
    } else {
        for (Py_ssize_t i = p->lo; i < p->hi; i++) {
            const float g = grad[i] * scale;
            const float a = fmaf(b1, m1[i], c1 * g);
            const float b = fmaf(b2, m2[i], c2 * (g * g));
            m1[i] = a;
            m2[i] = b;
            param[i] = fmaf(a / (sqrtf(b) + eps), neg_lr, param[i]);
        }
    }
}

static void *run_part(void *arg) {
    update((const Part *)arg);
    return NULL;
}

/* parts[0] on the calling thread, the others on new threads (a thread that cannot start runs here) */
static void run_parts(Part *parts, Py_ssize_t n) {
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (Py_ssize_t i = 1; i < n; i++) started[i] = pthread_create(&ids[i], NULL, run_part, &parts[i]) == 0;
    update(&parts[0]);
    for (Py_ssize_t i = 1; i < n; i++) {
        if (started[i])
            pthread_join(ids[i], NULL);
        else
            update(&parts[i]);
    }
}

/* a float32 buffer of `items` values (items < 0: any length, returned through items) */
static int float_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t *items, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    const char *f = view->format;
    if (f != NULL && (f[0] == '<' || f[0] == '=' || f[0] == '@')) f++;
    const Py_ssize_t n = view->len / (Py_ssize_t)sizeof(float);
    if (f == NULL || f[0] != 'f' || f[1] != '\0' || (*items >= 0 && n != *items)) {
        if (*items >= 0)
            PyErr_Format(PyExc_ValueError, "adam: %s must be %zd float32 values in one contiguous buffer",
                         name, *items);
        else
            PyErr_Format(PyExc_ValueError, "adam: %s must be float32 values in one contiguous buffer", name);
        PyBuffer_Release(view);
        return -1;
    }
    *items = n;
    return 0;
}

static PyObject *adam(PyObject *self, PyObject *args) {
    PyObject *obj[6];
    float lr, beta1, beta2, epsilon, scale, decay;
    Py_ssize_t threads;
    if (!PyArg_ParseTuple(args, "OOOOOOffffffn", &obj[0], &obj[1], &obj[2], &obj[3], &obj[4], &obj[5], &lr,
                          &beta1, &beta2, &epsilon, &scale, &decay, &threads))
        return NULL;
    static const char *names[6] = {"param", "grad", "moment1", "moment2", "beta1_pow", "beta2_pow"};
    Py_buffer views[6];
    Py_ssize_t n = -1;
    int held = 0;
    for (; held < 6; held++) {
        Py_ssize_t items = held < 4 ? n : 1;
        if (float_buffer(obj[held], &views[held], held != 1, &items, names[held]) < 0) break;
        if (held == 0) n = items;
    }
    if (held == 6) {
        float *b1p = views[4].buf, *b2p = views[5].buf;
        /* paddle's adam kernel: the bias corrections in float32 */
        const float lr_t = lr * (sqrtf(1.0f - *b2p) / (1.0f - *b1p));
        const float eps_t = epsilon * sqrtf(1.0f - *b2p);
        Py_ssize_t parts = threads < 1 ? 1 : threads;
        if (parts > MAX_THREADS) parts = MAX_THREADS;
        if (parts > n / MIN_PER_THREAD) parts = n / MIN_PER_THREAD > 0 ? n / MIN_PER_THREAD : 1;
        Part part[MAX_THREADS];
        for (Py_ssize_t i = 0; i < parts; i++) {
            const Part one = {views[0].buf, views[2].buf, views[3].buf, views[1].buf, beta1, beta2,
                              1.0f - beta1, 1.0f - beta2, -lr_t, eps_t, scale, decay,
                              n * i / parts, n * (i + 1) / parts};
            part[i] = one;
        }
        Py_BEGIN_ALLOW_THREADS
        run_parts(part, parts);
        Py_END_ALLOW_THREADS
        *b1p = beta1 * *b1p;
        *b2p = beta2 * *b2p;
    }
    while (held-- > 0) PyBuffer_Release(&views[held]);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"adam", adam, METH_VARARGS, "One Adam step of a float32 parameter with the clip factor and L2 term."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_adam", NULL, -1, methods};

PyMODINIT_FUNC PyInit__adam(void) { return PyModule_Create(&module); }
