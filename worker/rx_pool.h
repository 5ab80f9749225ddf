/* rx_pool.h — a worker's receive regions for the RDMA data plane (zero-copy receive, xport.h).
 *
 * Each data connection gets a region that the coordinator writes request payloads into: on a
 * CUDA expert backend, GPU memory exported as a dma-buf (the NIC writes the activations straight
 * into device memory), with device scratch for the experts' output behind it; otherwise
 * page-aligned host memory. Regions are made when a connection is accepted and freed when it
 * closes.
 *
 *   mr_rx_pool *rx;  mr_rx_pool_create(&rx);
 *   params.region_get = mr_rx_pool_get; params.region_put = mr_rx_pool_put;
 *   params.region_user = rx;                                  // the data listener's params
 *   mr_rx_pool_set_backend(rx, be, max_tokens, hidden);       // at each assignment
 *   ... x->recv_zc(c, &m, 0); const mr_rx_piece *pc = mr_rx_pool_find(rx, m.payload, bytes);
 *   if (mr_rx_piece_on_device(pc)) mr_rx_piece_read(pc, m.payload, host, meta_bytes); ...
 *   mr_rx_pool_destroy(rx);                                   // after every connection closed
 *
 * Thread-safe: get/put/find run on the data thread, set_backend on the control thread. */
#ifndef MR_RX_POOL_H
#define MR_RX_POOL_H

#include <stddef.h>

#include "common/status.h"
#include "kernels/backend.h"
#include "proto/xport.h"

typedef struct mr_rx_pool mr_rx_pool;
typedef struct mr_rx_piece mr_rx_piece;

mr_status mr_rx_pool_create(mr_rx_pool **out);
void mr_rx_pool_destroy(mr_rx_pool *p);

/* Regions made from now on, for the backend an assignment is served on: device memory of the
 * backend's GPU (a CUDA expert backend: cuda, cuda-int8, cuda-int4 and their -fast variants),
 * with output scratch for max_tokens x hidden f32 behind each, falling back to host memory
 * (logged once) where the device cannot export dma-bufs; host memory for any other backend. */
void mr_rx_pool_set_backend(mr_rx_pool *p, const mr_backend *be, int max_tokens, int hidden);

/* The mr_xport_params.region_get / region_put callbacks (user = the pool). */
int mr_rx_pool_get(void *user, size_t need, mr_xport_region *r);
void mr_rx_pool_put(void *user, const mr_xport_region *r);

/* The region holding [p, p + n), or NULL. Valid while its connection is open. */
const mr_rx_piece *mr_rx_pool_find(mr_rx_pool *pool, const void *p, size_t n);

/* 1 if the piece is device memory (payloads in it are device pointers). */
int mr_rx_piece_on_device(const mr_rx_piece *pc);
/* Copies `bytes` at src to host dst: from device memory (a flush, then a device-to-host copy)
 * when the piece is on the device, else a memcpy (pc may be NULL: host memory). */
mr_status mr_rx_piece_read(const mr_rx_piece *pc, const void *src, void *dst, size_t bytes);
/* The moe op of a CUDA expert backend on activations x_dev f32 [n][hidden] in the piece (16-byte
 * aligned), into host out [n][hidden]; the piece's scratch holds the device result. */
mr_status mr_rx_piece_moe(const mr_rx_piece *pc, mr_backend *be, const mr_expert_set *set,
                          const float *x_dev, int n, int k, const int32_t *ids, const float *wts,
                          float *out);

#endif
