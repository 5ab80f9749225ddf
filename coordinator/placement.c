#include "coordinator/placement.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"

void mr_placement_free(mr_placement *p) {
    free(p->holds);
    p->holds = NULL;
}

int mr_placement_count(const mr_placement *p, int w) {
    int n = 0;
    size_t per = (size_t)p->n_layers * p->n_experts;
    for (size_t i = 0; i < per; i++) n += p->holds[(size_t)w * per + i];
    return n;
}

mr_status mr_placement_build(const mr_cluster_config *cc, const mr_model_config *mc,
                             mr_placement *out) {
    const int W = cc->n_workers, L = mc->num_hidden_layers, E = mc->num_local_experts;
    memset(out, 0, sizeof *out);
    out->n_workers = W;
    out->n_layers = L;
    out->n_experts = E;
    out->holds = calloc((size_t)W * L * E, 1);
    unsigned char *lmask = malloc((size_t)L), *emask = malloc((size_t)E);
    if (!out->holds || !lmask || !emask) {
        free(lmask);
        free(emask);
        mr_placement_free(out);
        return MR_ERR_NOMEM;
    }
    mr_status st = MR_OK;
    if (cc->n_placement == 0) {
        for (int l = 0; l < L; l++)
            for (int e = 0; e < E; e++)
                for (int r = 0; r < cc->coord.replicas; r++)
                    out->holds[((size_t)((e + r) % W) * L + l) * E + e] = 1;
    }
    for (int i = 0; i < cc->n_placement; i++) {
        const mr_placement_conf *pc = &cc->placement[i];
        if (mr_parse_ranges(pc->layers, L, lmask) != 0) {
            MR_LOG_ERROR(
                MR_LOG_CONF,
                "%s:%d: placement[%d].layers \"%s\" is not \"all\" or ranges within [0, %d)",
                cc->path, pc->line, i, pc->layers, L);
            st = MR_ERR_INVALID;
            continue;
        }
        if (mr_parse_ranges(pc->experts, E, emask) != 0) {
            MR_LOG_ERROR(
                MR_LOG_CONF,
                "%s:%d: placement[%d].experts \"%s\" is not \"all\" or ranges within [0, %d)",
                cc->path, pc->line, i, pc->experts, E);
            st = MR_ERR_INVALID;
            continue;
        }
        int w = mr_cluster_config_worker_index(cc, pc->worker);
        for (int l = 0; l < L; l++)
            for (int e = 0; e < E; e++)
                if (lmask[l] && emask[e]) out->holds[((size_t)w * L + l) * E + e] = 1;
    }
    if (st == MR_OK) {
        int uncovered = 0, first_l = -1, first_e = -1;
        for (int l = 0; l < L; l++)
            for (int e = 0; e < E; e++) {
                int any = 0;
                for (int w = 0; w < W; w++) any |= mr_placement_holds(out, w, l, e);
                if (!any && uncovered++ == 0) first_l = l, first_e = e;
            }
        if (uncovered) {
            MR_LOG_ERROR(MR_LOG_CONF,
                         "%s:%d: placement leaves %d experts without a holder (first: layer %d "
                         "expert %d); every expert of every layer needs one",
                         cc->path, cc->placement[0].line, uncovered, first_l, first_e);
            st = MR_ERR_INVALID;
        }
    }
    free(lmask);
    free(emask);
    if (st != MR_OK) mr_placement_free(out);
    return st;
}
