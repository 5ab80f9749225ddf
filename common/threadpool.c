#include "common/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/log.h"

#define SPIN_ITERS 20000 /* ~100-200 us of polling before a worker sleeps */

struct mr_pool {
    int n_threads; /* including the caller */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* the current run; written by the caller before `generation` is bumped */
    mr_pool_fn fn;
    void *ctx;
    int n_tasks;
    atomic_int next_task;
    atomic_int busy_workers;
    atomic_uint generation;
    atomic_int stop;
};

typedef struct worker_arg {
    mr_pool *pool;
    int index;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void drain_tasks(mr_pool *p, int thread) {
    for (;;) {
        int t = atomic_fetch_add_explicit(&p->next_task, 1, memory_order_relaxed);
        if (t >= p->n_tasks) break;
        p->fn(p->ctx, t, thread);
    }
}

static void *worker_main(void *argp) {
    worker_arg *arg = argp;
    mr_pool *p = arg->pool;
    int index = arg->index;
    free(arg);
    /* Generation 0 is "no run yet": a run started before this thread got here must still be
     * seen, so `seen` starts at 0 rather than at the current value. */
    unsigned seen = 0;
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
               !atomic_load_explicit(&p->stop, memory_order_relaxed) && spins < SPIN_ITERS) {
            cpu_relax();
            spins++;
        }
        if (gen == seen) {
            pthread_mutex_lock(&p->mu);
            while ((gen = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
                   !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) break;
        seen = gen;
        drain_tasks(p, index);
        atomic_fetch_sub_explicit(&p->busy_workers, 1, memory_order_release);
    }
    return NULL;
}

mr_status mr_pool_create(int n_threads, mr_pool **out) {
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    mr_pool *p = calloc(1, sizeof *p);
    if (!p) return MR_ERR_NOMEM;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        mr_pool_destroy(p);
        return MR_ERR_NOMEM;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *a = malloc(sizeof *a);
        if (!a) {
            p->n_threads = i;
            mr_pool_destroy(p);
            return MR_ERR_NOMEM;
        }
        a->pool = p;
        a->index = i;
        if (pthread_create(&p->threads[i], NULL, worker_main, a) != 0) {
            free(a);
            MR_LOG_ERROR(MR_LOG_CORE, "thread pool: cannot start thread %d", i);
            p->n_threads = i;
            mr_pool_destroy(p);
            return MR_ERR_NOMEM;
        }
    }
    *out = p;
    return MR_OK;
}

void mr_pool_destroy(mr_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++)
        if (p->threads) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}

int mr_pool_size(const mr_pool *p) {
    return p ? p->n_threads : 1;
}

void mr_pool_run(mr_pool *p, mr_pool_fn fn, void *ctx, int n_tasks) {
    if (n_tasks <= 0) return;
    if (!p || p->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next_task, 0, memory_order_relaxed);
    atomic_store_explicit(&p->busy_workers, p->n_threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    drain_tasks(p, 0);
    while (atomic_load_explicit(&p->busy_workers, memory_order_acquire) > 0) cpu_relax();
}
