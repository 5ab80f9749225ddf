/* model.h — the MiniMax-M1 forward pass over a batch of sequence segments.
 *
 *   mr_model *m;  MR_CHECK(mr_model_create(ck, &params, &m));
 *   mr_seq *s;    MR_CHECK(mr_model_seq_open(m, max_tokens, &s));
 *   mr_step_seq in = {.seq = s, .tokens = ids, .n_tokens = n, .want_logits = 1};
 *   MR_CHECK(mr_model_step(m, &in, 1, logits));        // logits: [n_want][vocab] float32
 *
 * A step runs every layer once over all tokens of the batch (prefill chunks and decode tokens
 * mixed); the per-layer maths is spec §3 with the postnorm residuals. Experts run through a
 * provider: by default the experts loaded into this process (single-process engine); a cluster
 * coordinator installs a provider that dispatches to workers. Each step's scratch comes from an
 * arena sized at creation for `max_batch_tokens`: a step never allocates. The layers may be split
 * over several backends (GPUs), a pipeline of stages run in order by the step thread
 * (mr_model_params.n_stages).
 * Owned by one thread (the step thread). */
#ifndef MR_MODEL_H
#define MR_MODEL_H

#include <stdint.h>

#include "common/checkpoint.h"
#include "coordinator/model_stages.h"
#include "coordinator/seq_state.h"
#include "kernels/backend.h"

typedef struct mr_model mr_model;

typedef struct mr_model_params {
    const char *backend;  /* "ref" or "cpu" */
    int n_threads;        /* <= 0: all CPUs */
    int max_batch_tokens; /* tokens per step (prefill chunk budget) */
    int max_seqs;         /* lightning-state slots */
    int64_t max_context;  /* tokens per sequence */
    int kv_block_tokens;  /* positions per KV block */
    int kv_blocks;        /* 0: max_seqs * ceil(max_context / kv_block_tokens) */
    int load_experts;     /* 1: hold every expert in this process */
    int micro_batches;    /* 1 or 2: split a step to overlap attention with experts */
    int no_segments;      /* 1: decode steps not bracketed as segments (no padded rows, no graphs):
                             for comparisons; 0 (default) where the backend offers them */
    /* Layer stages (model_stages.h): the layers split over n_stages backends of `backend`, stage
     * s created with device stage_devices[s] (cuda-gpu: the GPU; cpu-resident and the host
     * backends ignore it: a test vehicle); its layers' weights, local experts, states and KV
     * cache live there, and the residual stream is copied to the next stage between layers.
     * Default: 1 stage on device 0. */
    int n_stages;
    int stage_devices[MR_MAX_STAGES];
} mr_model_params;

void mr_model_params_default(mr_model_params *p);

/* Expert computation for one layer of one micro-batch, in two halves so that a remote provider
 * can overlap the round trip with the other micro-batch's attention:
 *   dispatch(layer, mb, x, n, k, ids, wts)  starts out[t] = Σ_j wts[t][j] · E_{ids[t][j]}(x[t]);
 *                                           x, ids, wts stay valid until the matching combine
 *   combine(layer, mb, out)                 waits and writes out [n][hidden]
 * Calls alternate: dispatch(l, 0), dispatch(l, 1), combine(l, 0), dispatch(l+1, 0), combine(l,
 * 1)... A failed call fails the step (the provider logs why). */
typedef struct mr_moe_provider {
    mr_status (*dispatch)(void *ctx, int layer, int mb, const float *x, int n, int k,
                          const int32_t *ids, const float *wts);
    mr_status (*combine)(void *ctx, int layer, int mb, float *out);
    void *ctx;
} mr_moe_provider;

#define MR_MAX_MICRO_BATCHES 2

typedef struct mr_step_seq {
    mr_seq *seq;
    const int32_t *tokens;
    int n_tokens;
    int want_logits; /* 1: write the logits after this segment's last token */
} mr_step_seq;

mr_status mr_model_create(mr_ckpt *ck, const mr_model_params *p, mr_model **out);
void mr_model_destroy(mr_model *m);

const mr_model_config *mr_model_config_of(const mr_model *m);
const mr_model_params *mr_model_params_of(const mr_model *m);
mr_backend *mr_model_backend(mr_model *m); /* stage 0's */
/* The layer split, and stage s's backend (s < plan->n_stages). */
const mr_stage_plan *mr_model_stage_plan(const mr_model *m);
mr_backend *mr_model_stage_backend(mr_model *m, int s);
mr_state_pool *mr_model_states(mr_model *m);
void mr_model_set_moe_provider(mr_model *m, mr_moe_provider p);
/* Bytes of weights held: non-expert and expert. */
size_t mr_model_weight_bytes(const mr_model *m, size_t *expert_bytes);
/* Bytes of weights one decode token reads (non-expert matrices + top-k experts per layer). */
size_t mr_model_decode_bytes_per_token(const mr_model *m);

mr_status mr_model_seq_open(mr_model *m, int64_t max_tokens, mr_seq **out);
void mr_model_seq_close(mr_model *m, mr_seq *s);

/* Runs one step. Fails with MR_ERR_INVALID for a token id outside the vocabulary, MR_ERR_FULL if
 * a sequence has no room, before anything is changed. `logits` receives one row of vocab_size
 * floats per segment with want_logits, in order. With a device-resident backend `logits` may be
 * NULL: the rows then stay in device memory until the next step, for mr_model_sample and
 * mr_model_logits_row (a failure of the step is reported by those). */
mr_status mr_model_step(mr_model *m, const mr_step_seq *seqs, int n_seqs, float *logits);

/* Sampling on the device (kernels/sample.h):
 *   if (mr_model_samples_on_device(m)) {
 *       MR_CHECK(mr_model_step(m, seqs, n, NULL));                 // logits stay on the device
 *       MR_CHECK(mr_model_sample(m, rows, n_rows, tokens, results)); // rows[i].row: logits row
 *       // tokens[i] == MR_SAMPLE_ON_HOST: fetch the row and use the host sampler, same u
 *       MR_CHECK(mr_model_logits_row(m, rows[i].row, host_row));
 *   } */
int mr_model_samples_on_device(const mr_model *m);
/* The backend's sample op over the last step's rows left on the device. */
mr_status mr_model_sample(mr_model *m, const mr_sample_row *rows, int n, int32_t *tokens,
                          mr_sample_result *out);
/* host[0..vocab) = logits row `row` of the last step left on the device. */
mr_status mr_model_logits_row(mr_model *m, int row, float *host);

#endif
