/* cuda_gpu_graphs.h — decode segments of the cuda-gpu backend as CUDA graphs (internal).
 *
 * A decode step runs, per layer, the segment "RMSNorm … attention … router" whose end the host
 * must wait for (the experts are planned on the host from the router's ids). The model brackets
 * each segment with the backend's segment_begin / segment_end ops (kernels/backend.h); for a key
 * (layer, rows, position bucket) the backend runs the segment's ops eagerly the first time (the
 * weights are uploaded, cuBLAS settles its workspace), captures them into a graph the second
 * time and replays the graph from then on:
 *
 *   mode = gpu_segs_begin(s, stream, key);      SEG_EAGER, SEG_CAPTURE or SEG_REPLAY (or SEG_OFF)
 *   ... every op of the segment: gpu_segs_note(s, args); in REPLAY it enqueues nothing; the
 *       lightning and attention ops write their per-row metadata into the host staging
 *       (slots, positions, block tables) and the captured kernels read it from the device copy;
 *       the router's ids and weights come down through a fixed page-locked buffer ...
 *   MR_CHECK(gpu_segs_end(s, stream, &ran));   uploads the metadata, launches, waits, copies the
 *                                              router's outputs to the host
 * Invariants: the arguments of a key's ops are the same at every step (the model's activation
 * buffers are at fixed offsets for a given row count; weights, states and the KV cache are fixed):
 * the signature of all arguments noted during a replay must equal the captured one, else the
 * graph is dropped and ran = 0 — nothing was enqueued and the caller runs the segment again,
 * eagerly. A failed capture does the same (and the key stays eager). Only the metadata changes
 * between steps, and it lives in one device buffer whose address the graphs hold: when that
 * buffer (or any scratch a graph reads) must grow, every graph is dropped first.
 * Owned by the backend's thread. */
#ifndef MR_CUDA_GPU_GRAPHS_H
#define MR_CUDA_GPU_GRAPHS_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "common/status.h"
#include "kernels/backend.h"

typedef struct gpu_segs gpu_segs;

enum { SEG_OFF = 0, SEG_EAGER, SEG_CAPTURE, SEG_REPLAY };

/* enabled = 0: every segment runs eagerly (MOERACK_CUDA_GRAPHS=0). route_bytes: the router's
 * largest output (ids + weights) of one segment. */
mr_status gpu_segs_create(int enabled, int max_rows, size_t route_bytes, gpu_segs **out);
void gpu_segs_destroy(gpu_segs *s);

int gpu_segs_begin(gpu_segs *s, cudaStream_t st, const mr_segment_key *key);
mr_status gpu_segs_end(gpu_segs *s, cudaStream_t st, int *ran);
int gpu_segs_mode(const gpu_segs *s);
/* 1 in SEG_CAPTURE or SEG_REPLAY: the ops take the graph path. */
static inline int gpu_segs_graphed(int mode) {
    return mode == SEG_CAPTURE || mode == SEG_REPLAY;
}

/* Adds bytes of an op's arguments to the segment's signature (CAPTURE and REPLAY). */
void gpu_segs_note(gpu_segs *s, const void *p, size_t bytes);
/* An op of a graphed segment could not take part: the segment will be run again eagerly. */
void gpu_segs_fail(gpu_segs *s, const char *why);
/* Drops every graph (scratch they read is about to move). */
void gpu_segs_invalidate(gpu_segs *s);

/* The segment's shape: rows (the key's), the position bucket (keys of the attention kernels;
 * 0 for a lightning layer), block tokens and the block-table stride it implies. */
int gpu_segs_rows(const gpu_segs *s);
int gpu_segs_pos_bucket(const gpu_segs *s);
int gpu_segs_block_tokens(const gpu_segs *s);
int gpu_segs_stride(const gpu_segs *s);
/* Host staging of the metadata ([rows] slots, [rows] positions, [rows][stride] table; rows of no
 * sequence: slot and position −1) and its device copy (what the captured kernels read). */
int32_t *gpu_segs_host_slots(gpu_segs *s);
int32_t *gpu_segs_host_pos(gpu_segs *s);
int32_t *gpu_segs_host_table(gpu_segs *s);
const int32_t *gpu_segs_dev_slots(const gpu_segs *s);
const int32_t *gpu_segs_dev_pos(const gpu_segs *s);
const int32_t *gpu_segs_dev_table(const gpu_segs *s);
/* The router's outputs: the device bytes [ids | wts] go to this page-locked buffer inside the
 * graph; gpu_segs_end copies them to ids / wts (nk entries each). */
void *gpu_segs_route_pin(gpu_segs *s);
void gpu_segs_route_out(gpu_segs *s, int32_t *ids, float *wts, int nk);

#endif
