/* model_stages.c — see model_stages.h.
 *
 * The split is the linear-partition problem, solved exactly by dynamic programming over (stage,
 * end layer): best[s][e] = the smallest largest-stage bytes of layers [0, e) in stages 0..s.
 * O(S · L²) with L ≤ MR_MAX_LAYERS and S ≤ MR_MAX_STAGES: microseconds, once at start-up. */
#include "coordinator/model_stages.h"

#include <stdint.h>
#include <stdlib.h>

#include "common/model_config.h"

mr_status mr_stage_plan_make(const size_t *layer_bytes, int n_layers, size_t first_extra,
                             size_t last_extra, int n_stages, mr_stage_plan *out) {
    const int L = n_layers, S = n_stages;
    if (L < 1 || L > MR_MAX_LAYERS || S < 1 || S > MR_MAX_STAGES || S > L) return MR_ERR_INVALID;
    size_t *prefix = malloc((size_t)(L + 1) * sizeof *prefix);
    size_t *best = malloc((size_t)S * (size_t)(L + 1) * sizeof *best);
    int *cut = malloc((size_t)S * (size_t)(L + 1) * sizeof *cut);
    if (!prefix || !best || !cut) {
        free(prefix);
        free(best);
        free(cut);
        return MR_ERR_NOMEM;
    }
    prefix[0] = 0;
    for (int l = 0; l < L; l++) prefix[l + 1] = prefix[l] + layer_bytes[l];
#define AT(a, s, e) (a)[(size_t)(s) * (size_t)(L + 1) + (size_t)(e)]
        /* stage s covers [b, e); its bytes include the extras of the first and the last stage */
#define COST(s, b, e)                                                                              \
    (prefix[e] - prefix[b] + ((s) == 0 ? first_extra : 0) + ((s) == S - 1 ? last_extra : 0))
    for (int e = 1; e <= L; e++) {
        AT(best, 0, e) = COST(0, 0, e);
        AT(cut, 0, e) = 0;
    }
    for (int s = 1; s < S; s++)
        for (int e = s + 1; e <= L; e++) { /* stages 0..s-1 hold at least s layers */
            size_t b_best = SIZE_MAX;
            int b_cut = s;
            for (int b = s; b < e; b++) {
                const size_t prev = AT(best, s - 1, b), here = COST(s, b, e);
                const size_t worst = prev > here ? prev : here;
                if (worst < b_best) { /* strict: ties keep the earliest cut */
                    b_best = worst;
                    b_cut = b;
                }
            }
            AT(best, s, e) = b_best;
            AT(cut, s, e) = b_cut;
        }
    mr_stage_plan p = {.n_stages = S};
    p.first_layer[S] = L;
    for (int s = S - 1, e = L; s >= 0; s--) {
        p.first_layer[s] = AT(cut, s, e);
        p.bytes[s] = COST(s, p.first_layer[s], e);
        e = p.first_layer[s];
    }
#undef COST
#undef AT
    free(prefix);
    free(best);
    free(cut);
    *out = p;
    return MR_OK;
}

int mr_stage_plan_stage_of(const mr_stage_plan *p, int layer) {
    int s = 0;
    while (s + 1 < p->n_stages && layer >= p->first_layer[s + 1]) s++;
    return s;
}
