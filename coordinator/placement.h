/* placement.h — which worker holds which (layer, expert).
 *
 * Default: every worker holds a balanced slice of the experts of every layer, so each layer's
 * work spreads over all workers: expert e of every layer goes to workers (e + r) mod W for
 * r < replicas. An explicit `placement` list in the config replaces the default. Every expert must
 * have at least one holder, or building the placement fails naming the config line. */
#ifndef MR_PLACEMENT_H
#define MR_PLACEMENT_H

#include "common/cluster_config.h"
#include "common/model_config.h"

typedef struct mr_placement {
    int n_workers, n_layers, n_experts;
    unsigned char *holds; /* [n_workers][n_layers][n_experts] */
} mr_placement;

mr_status mr_placement_build(const mr_cluster_config *cc, const mr_model_config *mc,
                             mr_placement *out);
void mr_placement_free(mr_placement *p);

static inline int mr_placement_holds(const mr_placement *p, int w, int l, int e) {
    return p->holds[((size_t)w * p->n_layers + (size_t)l) * p->n_experts + (size_t)e];
}
/* Number of (layer, expert) pairs worker w holds. */
int mr_placement_count(const mr_placement *p, int w);

#endif
