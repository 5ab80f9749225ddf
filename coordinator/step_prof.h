/* step_prof.h — where a forward step's wall time goes, for `--log-level debug` (model.c).
 *
 *   mr_step_prof p;  mr_prof_begin(&p);           // on iff the model logs at debug
 *   mr_prof_mark(&p); ...attention...; mr_prof_add(&p, MR_PROF_LIGHTNING);
 *   mr_prof_end(&p, tokens, seqs, micro_batches, max_pos);   // one debug line
 *
 * Off, every call is one branch: nothing is timed and nothing logged. On, each phase costs two
 * clock reads (a few per layer and micro-batch). A phase runs from the last mark or add to its
 * add; the step's other time (embedding, copies between stages, final norm, LM head, logits
 * down) is reported as the rest. Times are host wall time: on a device-resident backend an
 * attention phase is the time to enqueue its kernels, and the device's time shows in the next
 * phase that waits for it (the MoE input staged down, for remote experts). */
#ifndef MR_STEP_PROF_H
#define MR_STEP_PROF_H

#include <string.h>

#include "common/log.h"
#include "common/timeutil.h"

typedef enum mr_prof_phase {
    MR_PROF_LIGHTNING,  /* norm + lightning attention + residual + norm + router */
    MR_PROF_SOFTMAX,    /* the same with softmax attention */
    MR_PROF_STAGE_DOWN, /* MoE input to host memory for remote experts */
    MR_PROF_DISPATCH,   /* the provider's dispatch: local experts, or building and sending */
    MR_PROF_COMBINE,    /* the provider's combine: waiting for and adding the experts' results */
    MR_PROF_STAGE_UP,   /* MoE output back to the device, and the residual */
    MR_PROF_N
} mr_prof_phase;

typedef struct mr_step_prof {
    int on;
    double t0, mark, sum[MR_PROF_N];
} mr_step_prof;

static inline void mr_prof_begin(mr_step_prof *p) {
    p->on = mr_log_enabled(MR_LOG_LEVEL_DEBUG, MR_LOG_MODEL);
    if (!p->on) return;
    memset(p->sum, 0, sizeof p->sum);
    p->t0 = p->mark = mr_now_s();
}

static inline void mr_prof_mark(mr_step_prof *p) {
    if (p->on) p->mark = mr_now_s();
}

static inline void mr_prof_add(mr_step_prof *p, mr_prof_phase ph) {
    if (!p->on) return;
    const double now = mr_now_s();
    p->sum[ph] += now - p->mark;
    p->mark = now;
}

static inline void mr_prof_end(const mr_step_prof *p, int tokens, int n_seqs, int micro_batches,
                               long long held) {
    if (!p->on) return;
    const double total = mr_now_s() - p->t0;
    double rest = total;
    for (int i = 0; i < MR_PROF_N; i++) rest -= p->sum[i];
    MR_LOG_DEBUG(MR_LOG_MODEL,
                 "step: %d tokens of %d sequences in %d micro-batches, longest now %lld: "
                 "%.4f s = attention %.4f (lightning %.4f, softmax %.4f) + MoE input down %.4f "
                 "+ dispatch %.4f + combine %.4f + MoE output up %.4f + rest %.4f",
                 tokens, n_seqs, micro_batches, held, total,
                 p->sum[MR_PROF_LIGHTNING] + p->sum[MR_PROF_SOFTMAX], p->sum[MR_PROF_LIGHTNING],
                 p->sum[MR_PROF_SOFTMAX], p->sum[MR_PROF_STAGE_DOWN], p->sum[MR_PROF_DISPATCH],
                 p->sum[MR_PROF_COMBINE], p->sum[MR_PROF_STAGE_UP], rest);
}

#endif
