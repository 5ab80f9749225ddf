/* Every op of the cpu backend against the ref backend (the oracle) on fresh random inputs over a
 * grid of shapes, with a normalised error ||cpu - ref|| / ||ref|| per op (ggml's test-backend-ops
 * idea); plus batch invariance (a segment's result does not depend on its batch-mates, bitwise)
 * and lightning recurrence vs chunked form against an independent double-precision loop. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/dtype.h"
#include "common/rng.h"
#include "kernels/backend.h"

static uint64_t g_rng = 0x5eed;

static float *rnd(size_t n, float scale) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = scale * mr_rng_uniform_pm1(&g_rng);
    return v;
}

static uint16_t *rnd_bf16(size_t n, float scale) {
    uint16_t *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = mr_f32_to_bf16(scale * mr_rng_uniform_pm1(&g_rng));
    return v;
}

static double nerr(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num) / (den > 0 ? sqrt(den) : 1.0);
}

#define MAX_T 640
static mr_backend *ref_be, *cpu_be;

static int setup(void **state) {
    (void)state;
    mr_backend_params p = {.n_threads = 3,
                           .max_tokens = MAX_T,
                           .hidden = 96,
                           .inter = 160,
                           .n_heads = 4,
                           .head_dim = 32,
                           .block_size = 16,
                           .max_experts = 8,
                           .top_k = 2};
    if (mr_backend_create("ref", &p, &ref_be) != MR_OK) return -1;
    if (mr_backend_create("cpu", &p, &cpu_be) != MR_OK) return -1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    mr_backend_destroy(ref_be);
    mr_backend_destroy(cpu_be);
    return 0;
}

static void test_linear(void **state) {
    (void)state;
    static const int ns[] = {1, 2, 3, 4, 5, 7, 17, 64};
    static const int rows[] = {1, 3, 4, 5, 16, 37, 67};
    static const int cols[] = {1, 15, 16, 17, 33, 100};
    for (int dt = 0; dt < 2; dt++)
        for (size_t a = 0; a < 8; a++)
            for (size_t b = 0; b < 7; b++)
                for (size_t c = 0; c < 6; c++) {
                    int n = ns[a], R = rows[b], K = cols[c];
                    void *w =
                        dt ? (void *)rnd_bf16((size_t)R * K, 1) : (void *)rnd((size_t)R * K, 1);
                    mr_matrix m = {w, dt ? MR_DTYPE_BF16 : MR_DTYPE_F32, R, K};
                    float *x = rnd((size_t)n * K, 1), *y0 = calloc((size_t)n * R, 4),
                          *y1 = calloc((size_t)n * R, 4);
                    ref_be->ops->linear(ref_be, &m, x, n, y0);
                    cpu_be->ops->linear(cpu_be, &m, x, n, y1);
                    double e = nerr(y1, y0, (size_t)n * R);
                    if (e > 1e-5)
                        fail_msg("linear %s n=%d rows=%d cols=%d: error %g", dt ? "bf16" : "f32", n,
                                 R, K, e);
                    /* batch invariance: each token alone gives the same bits */
                    for (int t = 0; t < n; t++) {
                        float *yt = calloc((size_t)R, 4);
                        cpu_be->ops->linear(cpu_be, &m, x + (size_t)t * K, 1, yt);
                        if (memcmp(yt, y1 + (size_t)t * R, (size_t)R * 4) != 0)
                            fail_msg(
                                "linear n=%d rows=%d cols=%d: token %d differs alone vs batched", n,
                                R, K, t);
                        free(yt);
                    }
                    free(w);
                    free(x);
                    free(y0);
                    free(y1);
                }
}

static void test_norms(void **state) {
    (void)state;
    const int n = 9, dim = 96;
    float *x = rnd((size_t)n * dim, 3), *w = rnd(dim, 1), *g = rnd((size_t)n * dim, 4);
    float *a = calloc((size_t)n * dim, 4), *b = calloc((size_t)n * dim, 4);
    ref_be->ops->rmsnorm(ref_be, x, w, n, dim, 1e-5f, a);
    cpu_be->ops->rmsnorm(cpu_be, x, w, n, dim, 1e-5f, b);
    assert_true(nerr(b, a, (size_t)n * dim) < 1e-6);
    ref_be->ops->norm_gate(ref_be, x, g, w, n, dim, 1e-6f, a);
    cpu_be->ops->norm_gate(cpu_be, x, g, w, n, dim, 1e-6f, b);
    assert_true(nerr(b, a, (size_t)n * dim) < 1e-6);
    ref_be->ops->scale_add(ref_be, x, g, 3.5f, 1.0f, (size_t)n * dim, a);
    cpu_be->ops->scale_add(cpu_be, x, g, 3.5f, 1.0f, (size_t)n * dim, b);
    assert_true(nerr(b, a, (size_t)n * dim) < 1e-7);
    uint16_t *table = rnd_bf16(50 * 96, 1);
    mr_matrix emb = {table, MR_DTYPE_BF16, 50, 96};
    int32_t ids[4] = {0, 49, 7, 7};
    ref_be->ops->embed(ref_be, &emb, ids, 4, a);
    cpu_be->ops->embed(cpu_be, &emb, ids, 4, b);
    assert_memory_equal(a, b, 4 * 96 * 4);
    free(x);
    free(w);
    free(g);
    free(a);
    free(b);
    free(table);
}

/* Independent double-precision recurrence for one segment, all heads. */
static void lightning_naive(const float *qkv, int len, int H, int d, const float *slope, double *S,
                            double *out) {
    for (int t = 0; t < len; t++)
        for (int h = 0; h < H; h++) {
            const float *base = qkv + ((size_t)t * H * 3 + (size_t)h * 3) * d;
            double lam = exp(-(double)slope[h]);
            double *Sh = S + (size_t)h * d * d;
            for (int c = 0; c < d; c++)
                for (int e = 0; e < d; e++) {
                    double k = base[d + c] / (1.0 + exp(-(double)base[d + c]));
                    double v = base[2 * d + e] / (1.0 + exp(-(double)base[2 * d + e]));
                    Sh[(size_t)c * d + e] = lam * Sh[(size_t)c * d + e] + k * v;
                }
            for (int e = 0; e < d; e++) {
                double o = 0;
                for (int c = 0; c < d; c++)
                    o += base[c] / (1.0 + exp(-(double)base[c])) * Sh[(size_t)c * d + e];
                out[((size_t)t * H + h) * d + e] = o;
            }
        }
}

static void test_lightning(void **state) {
    (void)state;
    const int H = 4, d = 32, B = 16; /* small block so lengths cross many block boundaries */
    static const int lens[] = {1, 15, 16, 17, 40, 1, 33};
    const int nseg = 7;
    int T = 0;
    mr_segment segs[7];
    for (int s = 0; s < nseg; s++) {
        segs[s] = (mr_segment){T, lens[s], 0};
        T += lens[s];
    }
    float slope[4] = {0.9f, 0.3f, 0.05f, 0.004f};
    float *qkv = rnd((size_t)T * H * 3 * d, 2);
    size_t sf = (size_t)H * d * d;
    float *st0 = rnd(sf * nseg, 0.5f); /* continuing sequences: non-zero initial states */
    float *sr = malloc(sf * nseg * 4), *sc = malloc(sf * nseg * 4);
    memcpy(sr, st0, sf * nseg * 4);
    memcpy(sc, st0, sf * nseg * 4);
    float *pr[7], *pc[7];
    for (int s = 0; s < nseg; s++) {
        pr[s] = sr + s * sf;
        pc[s] = sc + s * sf;
    }
    float *or_ = calloc((size_t)T * H * d, 4), *oc = calloc((size_t)T * H * d, 4);
    mr_lightning_args a = {H, d, B, slope, nseg, segs, pr, qkv, or_, NULL, 0};
    ref_be->ops->lightning(ref_be, &a);
    a.state = pc;
    a.out = oc;
    cpu_be->ops->lightning(cpu_be, &a);
    double eo = nerr(oc, or_, (size_t)T * H * d), es = nerr(sc, sr, sf * nseg);
    if (eo > 1e-5 || es > 1e-5) fail_msg("lightning cpu vs ref: out %g state %g", eo, es);
    /* both against the double-precision recurrence */
    for (int s = 0; s < nseg; s++) {
        double *S = malloc(sf * sizeof(double)),
               *o = malloc((size_t)lens[s] * H * d * sizeof(double));
        for (size_t i = 0; i < sf; i++) S[i] = st0[s * sf + i];
        lightning_naive(qkv + (size_t)segs[s].start * H * 3 * d, lens[s], H, d, slope, S, o);
        float *of = malloc((size_t)lens[s] * H * d * 4), *sfl = malloc(sf * 4);
        for (size_t i = 0; i < (size_t)lens[s] * H * d; i++) of[i] = (float)o[i];
        for (size_t i = 0; i < sf; i++) sfl[i] = (float)S[i];
        double e1 = nerr(or_ + (size_t)segs[s].start * H * d, of, (size_t)lens[s] * H * d);
        double e2 = nerr(pr[s], sfl, sf);
        if (e1 > 1e-5 || e2 > 1e-5)
            fail_msg("lightning ref vs recurrence, segment %d (len %d): %g %g", s, lens[s], e1, e2);
        free(S);
        free(o);
        free(of);
        free(sfl);
    }
    /* batch invariance and continuation: segment 4 (len 40) alone, then split 17 + 1 + 22 */
    float *s_alone = malloc(sf * 4), *o_alone = calloc((size_t)40 * H * d, 4);
    memcpy(s_alone, st0 + 4 * sf, sf * 4);
    mr_segment one = {0, 40, 0};
    float *ps = s_alone;
    mr_lightning_args b = {
        H, d, B, slope, 1, &one, &ps, qkv + (size_t)segs[4].start * H * 3 * d, o_alone, NULL, 0};
    cpu_be->ops->lightning(cpu_be, &b);
    assert_memory_equal(o_alone, oc + (size_t)segs[4].start * H * d, (size_t)40 * H * d * 4);
    assert_memory_equal(s_alone, pc[4], sf * 4);
    memcpy(s_alone, st0 + 4 * sf, sf * 4);
    float *o_split = calloc((size_t)40 * H * d, 4);
    int parts[3][2] = {{0, 17}, {17, 1}, {18, 22}};
    for (int i = 0; i < 3; i++) {
        mr_segment sg = {0, parts[i][1], 0};
        mr_lightning_args c = {H,
                               d,
                               B,
                               slope,
                               1,
                               &sg,
                               &ps,
                               qkv + (size_t)(segs[4].start + parts[i][0]) * H * 3 * d,
                               o_split + (size_t)parts[i][0] * H * d,
                               NULL,
                               0};
        cpu_be->ops->lightning(cpu_be, &c);
    }
    assert_true(nerr(o_split, o_alone, (size_t)40 * H * d) < 1e-5);
    assert_true(nerr(s_alone, pc[4], sf) < 1e-5);
    free(qkv);
    free(st0);
    free(sr);
    free(sc);
    free(or_);
    free(oc);
    free(s_alone);
    free(o_alone);
    free(o_split);
}

static void test_attention(void **state) {
    (void)state;
    const int H = 4, KV = 2, d = 32, rd = 16, bt = 4, nblocks = 64;
    float inv_freq[8];
    for (int i = 0; i < rd / 2; i++) inv_freq[i] = (float)(1.0 / pow(1e4, 2.0 * i / rd));
    /* three sequences: fresh prefill of 9, continuation of 6 after 5 cached, decode after 13 */
    static const int lens[] = {9, 6, 1}, past[] = {0, 5, 13};
    int32_t tables[3][8];
    int next = 0;
    for (int s = 0; s < 3; s++)
        for (int b = 0; b < 8; b++)
            tables[s][b] = (int32_t)((next++ * 37) % nblocks); /* scattered */
    const int32_t *tp[3] = {tables[0], tables[1], tables[2]};
    size_t cache_n = (size_t)nblocks * bt * KV * d;
    float *kc_r = rnd(cache_n, 1), *vc_r = rnd(cache_n, 1); /* garbage + earlier positions */
    float *kc_c = malloc(cache_n * 4), *vc_c = malloc(cache_n * 4);
    memcpy(kc_c, kc_r, cache_n * 4);
    memcpy(vc_c, vc_r, cache_n * 4);
    mr_segment segs[3];
    int T = 0;
    for (int s = 0; s < 3; s++) {
        segs[s] = (mr_segment){T, lens[s], past[s]};
        T += lens[s];
    }
    float *q = rnd((size_t)T * H * d, 1), *k = rnd((size_t)T * KV * d, 1),
          *v = rnd((size_t)T * KV * d, 1);
    float *q2 = malloc((size_t)T * H * d * 4), *k2 = malloc((size_t)T * KV * d * 4),
          *v2 = malloc((size_t)T * KV * d * 4);
    memcpy(q2, q, (size_t)T * H * d * 4);
    memcpy(k2, k, (size_t)T * KV * d * 4);
    memcpy(v2, v, (size_t)T * KV * d * 4);
    float *o_r = calloc((size_t)T * H * d, 4), *o_c = calloc((size_t)T * H * d, 4);
    mr_attention_args a = {H, KV, d, rd, inv_freq, 3, segs, tp, bt, kc_r, vc_r, q, k, v, o_r};
    ref_be->ops->attention(ref_be, &a);
    mr_attention_args c = {H, KV, d, rd, inv_freq, 3, segs, tp, bt, kc_c, vc_c, q2, k2, v2, o_c};
    cpu_be->ops->attention(cpu_be, &c);
    double e = nerr(o_c, o_r, (size_t)T * H * d);
    if (e > 1e-5) fail_msg("attention cpu vs ref: %g", e);
    assert_true(nerr(kc_c, kc_r, cache_n) < 1e-6);
    /* RoPE leaves dims >= rotary_dim alone and rotates the first rotary_dim */
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            for (int i = rd; i < d; i++)
                assert_true(q2[((size_t)t * H + h) * d + i] == q[((size_t)t * H + h) * d + i]);
    free(q);
    free(k);
    free(v);
    free(q2);
    free(k2);
    free(v2);
    free(o_r);
    free(o_c);
    free(kc_r);
    free(vc_r);
    free(kc_c);
    free(vc_c);
}

static void test_route_and_moe(void **state) {
    (void)state;
    const int E = 8, Hd = 96, I = 160, n = 37, k = 2;
    float *gate = rnd((size_t)E * Hd, 0.5f), *x = rnd((size_t)n * Hd, 1);
    mr_matrix g = {gate, MR_DTYPE_F32, E, Hd};
    int32_t ids_r[74], ids_c[74];
    float w_r[74], w_c[74];
    ref_be->ops->route(ref_be, &g, x, n, k, ids_r, w_r);
    cpu_be->ops->route(cpu_be, &g, x, n, k, ids_c, w_c);
    assert_memory_equal(ids_r, ids_c, sizeof ids_r);
    assert_true(nerr(w_c, w_r, (size_t)n * k) < 1e-6);
    for (int t = 0; t < n; t++) {
        assert_true(fabsf(w_r[t * k] + w_r[t * k + 1] - 1.0f) < 1e-6f); /* renormalised */
        assert_true(w_r[t * k] >= w_r[t * k + 1]);
    }
    mr_expert ex[8];
    void *mem[24];
    for (int e = 0; e < E; e++) {
        mem[3 * e] = rnd_bf16((size_t)I * Hd, 0.1f);
        mem[3 * e + 1] = rnd_bf16((size_t)I * Hd, 0.1f);
        mem[3 * e + 2] = rnd_bf16((size_t)Hd * I, 0.08f);
        ex[e].w1 = (mr_matrix){mem[3 * e], MR_DTYPE_BF16, I, Hd};
        ex[e].w3 = (mr_matrix){mem[3 * e + 1], MR_DTYPE_BF16, I, Hd};
        ex[e].w2 = (mr_matrix){mem[3 * e + 2], MR_DTYPE_BF16, Hd, I};
    }
    mr_expert_set all = {E, Hd, I, ex};
    float *o_r = calloc((size_t)n * Hd, 4), *o_c = calloc((size_t)n * Hd, 4);
    ref_be->ops->moe(ref_be, &all, x, n, k, ids_r, w_r, o_r);
    cpu_be->ops->moe(cpu_be, &all, x, n, k, ids_r, w_r, o_c);
    double e_all = nerr(o_c, o_r, (size_t)n * Hd);
    if (e_all > 1e-5) fail_msg("moe cpu vs ref: %g", e_all);
    /* two disjoint halves of the experts (two workers) sum to the whole, bitwise for top-2 */
    mr_expert even[8], odd[8];
    for (int e = 0; e < E; e++) {
        even[e] = ex[e];
        odd[e] = ex[e];
        if (e % 2)
            even[e].w1.data = NULL;
        else
            odd[e].w1.data = NULL;
    }
    mr_expert_set se = {E, Hd, I, even}, so = {E, Hd, I, odd};
    float *pa = calloc((size_t)n * Hd, 4), *pb = calloc((size_t)n * Hd, 4);
    cpu_be->ops->moe(cpu_be, &se, x, n, k, ids_r, w_r, pa);
    cpu_be->ops->moe(cpu_be, &so, x, n, k, ids_r, w_r, pb);
    for (size_t i = 0; i < (size_t)n * Hd; i++) pa[i] += pb[i];
    assert_memory_equal(pa, o_c, (size_t)n * Hd * 4);
    /* batch invariance: token 5 alone */
    float one[96];
    cpu_be->ops->moe(cpu_be, &all, x + 5 * Hd, 1, k, ids_r + 5 * k, w_r + 5 * k, one);
    assert_memory_equal(one, o_c + 5 * Hd, sizeof one);
    for (int i = 0; i < 24; i++) free(mem[i]);
    free(gate);
    free(x);
    free(o_r);
    free(o_c);
    free(pa);
    free(pb);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),        cmocka_unit_test(test_norms),
        cmocka_unit_test(test_lightning),     cmocka_unit_test(test_attention),
        cmocka_unit_test(test_route_and_moe),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
