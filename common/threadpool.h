/* threadpool.h — a fixed set of threads for data-parallel loops.
 *
 *   mr_pool *p;  MR_CHECK(mr_pool_create(4, &p));     // 4 threads: the caller + 3 workers
 *   mr_pool_run(p, row_block_fn, &ctx, n_blocks);      // fn(ctx, task, thread) for each task
 *
 * Tasks are handed out dynamically (an atomic counter); the caller works too and mr_pool_run
 * returns when every task has finished. Workers spin briefly between runs (back-to-back kernel
 * launches in a forward step cost no syscall) and then sleep, so an idle server burns no CPU.
 * `thread` is in [0, mr_pool_size()) and indexes per-thread scratch. One run at a time: the pool
 * is owned by one thread (the engine's step thread). */
#ifndef MR_THREADPOOL_H
#define MR_THREADPOOL_H

#include "common/status.h"

typedef struct mr_pool mr_pool;
typedef void (*mr_pool_fn)(void *ctx, int task, int thread);

/* n_threads <= 0 means one per online CPU. */
mr_status mr_pool_create(int n_threads, mr_pool **out);
void mr_pool_destroy(mr_pool *p);
int mr_pool_size(const mr_pool *p);
void mr_pool_run(mr_pool *p, mr_pool_fn fn, void *ctx, int n_tasks);

#endif
