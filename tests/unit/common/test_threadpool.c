/* Thread pool: every task runs exactly once per run, runs back to back and after idle sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/threadpool.h"

typedef struct counts {
    atomic_int hits[257];
    int n_threads;
    atomic_int bad_thread;
} counts;

static void count_task(void *ctx, int task, int thread) {
    counts *c = ctx;
    atomic_fetch_add(&c->hits[task], 1);
    if (thread < 0 || thread >= c->n_threads) atomic_store(&c->bad_thread, 1);
}

static void test_runs(void **state) {
    (void)state;
    for (int threads = 1; threads <= 4; threads++) {
        mr_pool *p;
        assert_int_equal(mr_pool_create(threads, &p), MR_OK);
        assert_int_equal(mr_pool_size(p), threads);
        static counts c;
        c.n_threads = threads;
        for (int round = 0; round < 300; round++) {
            int n = 1 + round % 257;
            for (int i = 0; i < 257; i++) atomic_store(&c.hits[i], 0);
            if (round % 100 == 99) usleep(5000); /* workers fall asleep, must wake */
            mr_pool_run(p, count_task, &c, n);
            for (int i = 0; i < 257; i++) assert_int_equal(atomic_load(&c.hits[i]), i < n ? 1 : 0);
        }
        assert_int_equal(atomic_load(&c.bad_thread), 0);
        mr_pool_destroy(p);
    }
}

static void test_run_right_after_create(void **state) {
    (void)state;
    /* a run issued before the workers have started must still complete (regression) */
    for (int i = 0; i < 200; i++) {
        mr_pool *p;
        assert_int_equal(mr_pool_create(3, &p), MR_OK);
        static counts c;
        c.n_threads = 3;
        for (int t = 0; t < 8; t++) atomic_store(&c.hits[t], 0);
        mr_pool_run(p, count_task, &c, 8);
        for (int t = 0; t < 8; t++) assert_int_equal(atomic_load(&c.hits[t]), 1);
        mr_pool_destroy(p);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs),
        cmocka_unit_test(test_run_right_after_create),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
