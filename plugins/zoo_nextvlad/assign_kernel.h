/* NeXtVLAD's inference assignments (assign() of _assign.c, see its header), free of Python: included by the
 * Python extension (_assign.c) and by the Paddle custom operator (assign_op.cc), so an exported program runs
 * the same kernel as the dygraph model.
 *
 * zoo_assign(out, logits, mask, bias, rows, groups, clusters, threads): out [rows, K*G] cluster-major from
 * logits [rows, G*K + G], mask [rows], bias [G*K + G]; rows split over `threads` threads (zoo_split_rows,
 * which _assign.c's training kernels use too). clusters <= 1024.
 */
#ifndef ZOO_NEXTVLAD_ASSIGN_KERNEL_H
#define ZOO_NEXTVLAD_ASSIGN_KERNEL_H

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MAX_THREADS 64
#define ZOO_ASSIGN_MAX_CLUSTERS 1024
#define ZOO_LANES 16

typedef struct {
    float *out;
    const float *logits, *mask, *bias;
    int64_t groups, clusters;
} Job;

/* One thread's share of a row loop: run(ctx, lo, hi). */
typedef struct {
    void (*run)(const void *ctx, int64_t lo, int64_t hi);
    const void *ctx;
    int64_t lo, hi;
} ZooRange;

static void *zoo_run_range(void *arg) {
    const ZooRange *range = (const ZooRange *)arg;
    range->run(range->ctx, range->lo, range->hi);
    return NULL;
}

/* run(ctx, lo, hi) over rows [0, rows) split into `threads` contiguous ranges (at most MAX_THREADS, at most
 * one per row): the first on the calling thread, the others on new threads; a thread that cannot start has
 * its range run on the calling thread. */
static void zoo_split_rows(int64_t rows, int64_t threads, void (*run)(const void *, int64_t, int64_t),
                           const void *ctx) {
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads > rows) threads = rows > 0 ? rows : 1;
    if (threads < 1) threads = 1;
    ZooRange ranges[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int64_t i = 0; i < threads; i++) {
        const ZooRange range = {run, ctx, rows * i / threads, rows * (i + 1) / threads};
        ranges[i] = range;
        if (i > 0 && pthread_create(&ids[i], NULL, zoo_run_range, &ranges[i]) == 0) started[i] = 1;
    }
    zoo_run_range(&ranges[0]);
    for (int64_t i = 1; i < threads; i++) {
        if (started[i])
            pthread_join(ids[i], NULL);
        else
            zoo_run_range(&ranges[i]);
    }
}

/* exp(x) for x <= 0 (a softmax argument after subtracting the maximum): x = n*ln2 + r, |r| <= ln2/2,
 * exp(r) by its degree-7 Taylor polynomial (truncation error below 1e-8 relative), times 2^n built in
 * the exponent bits. Arguments below -87.3 give 0, as their true values are below the smallest normal float.
 * Branch-free plain arithmetic, so that the loop over a group's clusters vectorizes. */
static inline float exp_neg(float x) {
    const float low = -87.33654f;
    const float xc = x < low ? low : x; /* branch-free, so loops over it vectorize; the select below zeroes */
    /* n = x / ln2 rounded to the nearest integer by the 1.5 * 2^23 trick (exact for |x / ln2| < 2^22, and
     * plain arithmetic, where floorf would be a call the loops around it could not vectorize) */
    const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f; /* ln2 split: exact high part */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23; /* 2^n, n >= -126 after the clamp */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < low ? 0.0f : p * scale;
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void assign_rows(const Job *job, int64_t lo, int64_t hi) {
    const int64_t g_count = job->groups, k_count = job->clusters, width = g_count * k_count + g_count;
    float e[ZOO_ASSIGN_MAX_CLUSTERS];
    for (int64_t r = lo; r < hi; r++) {
        float *out = job->out + r * k_count * g_count;
        const float m = job->mask[r];
        if (m == 0.0f) {
            memset(out, 0, sizeof(float) * (size_t)(k_count * g_count));
            continue;
        }
        const float *row = job->logits + r * width;
        for (int64_t g = 0; g < g_count; g++) {
            const float *l = row + g * k_count, *b = job->bias + g * k_count;
            /* the maximum and the sum in independent lanes, so the compiler vectorizes both loops (a single
             * running maximum or sum is a chain it may not reorder) */
            float lane_top[ZOO_LANES];
            for (int j = 0; j < ZOO_LANES; j++) lane_top[j] = -INFINITY;
            int64_t k = 0;
            for (; k + ZOO_LANES <= k_count; k += ZOO_LANES)
                for (int j = 0; j < ZOO_LANES; j++) {
                    const float v = l[k + j] + b[k + j];
                    e[k + j] = v;
                    lane_top[j] = v > lane_top[j] ? v : lane_top[j];
                }
            float top = -INFINITY;
            for (; k < k_count; k++) {
                e[k] = l[k] + b[k];
                top = e[k] > top ? e[k] : top;
            }
            for (int j = 0; j < ZOO_LANES; j++) top = lane_top[j] > top ? lane_top[j] : top;
            for (k = 0; k < k_count; k++) e[k] = exp_neg(e[k] - top);
            /* positive terms, K / 16 per lane in float (relative error below K / 16 ulp), lanes added in
             * double: closer than one float running sum over all K terms */
            float lane_sum[ZOO_LANES] = {0.0f};
            for (k = 0; k + ZOO_LANES <= k_count; k += ZOO_LANES)
                for (int j = 0; j < ZOO_LANES; j++) lane_sum[j] += e[k + j];
            double sum = 0.0;
            for (; k < k_count; k++) sum += e[k];
            for (int j = 0; j < ZOO_LANES; j++) sum += lane_sum[j];
            const float z = row[g_count * k_count + g] + job->bias[g_count * k_count + g];
            const double scale = (double)((1.0f / (1.0f + expf(-z))) * m) / sum;
            for (k = 0; k < k_count; k++) out[k * g_count + g] = (float)(e[k] * scale);
        }
    }
}

static void assign_range(const void *job, int64_t lo, int64_t hi) { assign_rows((const Job *)job, lo, hi); }

static void zoo_assign(float *out, const float *logits, const float *mask, const float *bias, int64_t rows,
                       int64_t groups, int64_t clusters, int64_t threads) {
    const Job job = {out, logits, mask, bias, groups, clusters};
    zoo_split_rows(rows, threads, assign_range, &job);
}

#endif
