/* moe.c — SwiGLU experts on CPU.
 *
 * The (token, slot) pairs routed to experts this process holds are grouped by expert (a counting
 * sort), each expert runs as three GEMMs over its gathered tokens, and the per-slot outputs are
 * summed per token in slot order — the same order whatever else is in the batch and whichever
 * process holds which expert. */
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

static int held(const mr_expert_set *set, int e) {
    return e >= 0 && e < set->n_experts && set->experts[e].w1.data != NULL;
}

typedef struct swiglu_job {
    float *g;
    const float *u;
    size_t n;
    size_t per_task;
} swiglu_job;

static void swiglu_task(void *ctx, int task, int thread) {
    const swiglu_job *j = ctx;
    size_t i0 = (size_t)task * j->per_task, i1 = i0 + j->per_task < j->n ? i0 + j->per_task : j->n;
    for (size_t i = i0; i < i1; i++) j->g[i] = cpu_silu(j->g[i]) * j->u[i];
}

void cpu_moe(cpu_impl *c, const mr_expert_set *set, const float *x, int n, int k,
             const int32_t *ids, const float *wts, float *out) {
    const int Hd = set->hidden, I = set->inter, E = set->n_experts;
    int32_t *count = c->moe_count, *offset = c->moe_offset, *rows = c->moe_rows;
    memset(count, 0, (size_t)(E + 1) * sizeof *count);
    for (int s = 0; s < n * k; s++)
        if (held(set, ids[s])) count[ids[s]]++;
    offset[0] = 0;
    for (int e = 0; e < E; e++) offset[e + 1] = offset[e] + count[e];
    memset(count, 0, (size_t)E * sizeof *count);
    for (int s = 0; s < n * k; s++) {
        if (!held(set, ids[s])) continue;
        int pos = offset[ids[s]] + count[ids[s]]++;
        rows[pos] = s;
        memcpy(c->moe_x + (size_t)pos * Hd, x + (size_t)(s / k) * Hd, (size_t)Hd * sizeof(float));
    }
    for (int e = 0; e < E; e++) {
        int cnt = offset[e + 1] - offset[e];
        if (cnt == 0) continue;
        const mr_expert *ex = &set->experts[e];
        const float *xe = c->moe_x + (size_t)offset[e] * Hd;
        float *g = c->moe_g + (size_t)offset[e] * I, *u = c->moe_u + (size_t)offset[e] * I;
        cpu_linear(c, &ex->w1, xe, cnt, g);
        cpu_linear(c, &ex->w3, xe, cnt, u);
        swiglu_job sj = {g, u, (size_t)cnt * I, 0};
        int tasks = c->n_threads;
        sj.per_task = (sj.n + (size_t)tasks - 1) / (size_t)tasks;
        mr_pool_run(c->pool, swiglu_task, &sj, tasks);
        cpu_linear(c, &ex->w2, g, cnt, c->moe_y + (size_t)offset[e] * Hd);
    }
    /* per-token sum in slot order: out[t] = Σ_j w[t][j] · y[slot(t, j)] */
    int total = offset[E];
    for (int t = 0; t < n; t++) memset(out + (size_t)t * Hd, 0, (size_t)Hd * sizeof(float));
    /* inverse of rows[]: slot -> grouped position, -1 where the expert is not held here */
    int32_t *inv = c->moe_rows + (size_t)c->p.max_tokens * c->p.top_k;
    for (int s = 0; s < n * k; s++) inv[s] = -1;
    for (int pos = 0; pos < total; pos++) inv[rows[pos]] = pos;
    for (int t = 0; t < n; t++) {
        float *ot = out + (size_t)t * Hd;
        for (int j = 0; j < k; j++) {
            int pos = inv[t * k + j];
            if (pos < 0) continue;
            const float w = wts[t * k + j];
            const float *y = c->moe_y + (size_t)pos * Hd;
            for (int i = 0; i < Hd; i++) ot[i] += w * y[i];
        }
    }
}
