/* cmd_bench.c — `moerack bench membw`, `forward` and `cluster` (`transport`: bench_transport.c).
 *
 * membw: read bandwidth of this machine, all threads streaming through a buffer far larger than
 * the caches (the same access pattern as decode streaming weights).
 * forward: prefill and decode tokens/s of the single-process engine, printed beside the measured
 * bandwidth and the decode ceiling it implies (bandwidth / bytes read per decode token). With a
 * device-resident backend (cuda-gpu) the host bandwidth says nothing: it prints the bandwidth
 * the decode achieved instead (bytes per token · tokens/s), to hold against the GPU's HBM.
 * With --gpus A,B,... the layers are split over those GPUs (stages): it prints the split, each
 * GPU's memory in use after the run, and times the stage copy (the residual stream of one decode
 * token and of one prefill chunk from stage 0 to stage 1). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <limits.h>

#include "cli/cli.h"
#include "cli/cluster_client.h"
#include "cli/launch.h"
#include "common/arena.h"
#include "common/checkpoint.h"
#include "common/log.h"
#include "common/rng.h"
#include "common/threadpool.h"
#include "common/timeutil.h"
#include "coordinator/model.h"
#include "coordinator/model_mem.h"
#include "kernels/cpu/cpu_backend.h"

typedef struct membw_job {
    const float *buf;
    size_t per_task; /* floats */
    float *sums;     /* [tasks] keeps the reads alive */
} membw_job;

__attribute__((target_clones("avx512f", "avx2", "default"))) static float
sum_floats(const float *restrict p, size_t n) {
    /* 64 partial sums: four independent vector chains, so the adds never limit the stream */
    float acc[64] = {0};
    for (size_t i = 0; i + 64 <= n; i += 64)
        for (int j = 0; j < 64; j++) acc[j] += p[i + j];
    float s = 0;
    for (int j = 0; j < 64; j++) s += acc[j];
    return s;
}

static void membw_task(void *ctx, int task, int thread) {
    membw_job *j = ctx;
    j->sums[task] = sum_floats(j->buf + (size_t)task * j->per_task, j->per_task);
}

/* Best-of-`reps` read bandwidth in bytes/s over a `bytes` buffer with `threads` threads. */
static double measure_read_bw(size_t bytes, int threads, int reps) {
    mr_pool *pool;
    if (mr_pool_create(threads, &pool) != MR_OK) return 0;
    int tasks = mr_pool_size(pool) * 16;
    size_t per = bytes / sizeof(float) / (size_t)tasks;
    per &= ~(size_t)63;
    float *buf = mr_alloc_aligned(per * (size_t)tasks * sizeof(float));
    float *sums = calloc((size_t)tasks, sizeof *sums);
    double best = 0;
    if (buf && sums) {
        for (size_t i = 0; i < per * (size_t)tasks; i++) buf[i] = (float)(i & 1023);
        membw_job j = {buf, per, sums};
        for (int r = 0; r < reps + 1; r++) { /* first pass warms the pages */
            double t0 = mr_now_s();
            mr_pool_run(pool, membw_task, &j, tasks);
            double dt = mr_now_s() - t0;
            double bw = (double)(per * (size_t)tasks * sizeof(float)) / dt;
            if (r > 0 && bw > best) best = bw;
        }
    }
    mr_free_aligned(buf);
    free(sums);
    mr_pool_destroy(pool);
    return best;
}

static int bench_membw(int argc, char **argv) {
    long long threads = 0, mib = 1024;
    if (argc >= 2) threads = mr_cli_parse_int("threads", argv[1], 0, 1024);
    if (threads < 0) return 2;
    double bw = measure_read_bw((size_t)mib << 20, (int)threads, 5);
    printf("read bandwidth: %.2f GB/s (%lld MiB buffer, best of 5)\n", bw / 1e9, mib);
    return bw > 0 ? 0 : 1;
}

/* Seconds per copy of `bytes` from stage 0 to stage 1: one copy waited for (latency), or `reps`
 * copies then one wait (throughput); -1 on failure. Buffers allocated here, outside any step. */
static double time_stage_copy(mr_backend *b0, mr_backend *b1, size_t bytes, int reps,
                              int wait_each) {
    void *src = NULL, *dst = NULL;
    double dt = -1;
    if (mr_mem_alloc(b0, bytes, &src) == MR_OK && mr_mem_alloc(b1, bytes, &dst) == MR_OK &&
        mr_mem_zero(b0, src, bytes) == MR_OK &&
        mr_mem_copy_across(b1, dst, b0, src, bytes) == MR_OK &&
        mr_mem_to_host(b1, NULL, NULL, 0) == MR_OK) {
        int ok = 1;
        const double t0 = mr_now_s();
        for (int r = 0; ok && r < reps; r++) {
            ok = mr_mem_copy_across(b1, dst, b0, src, bytes) == MR_OK;
            if (ok && (wait_each || r == reps - 1)) ok = mr_mem_to_host(b1, NULL, NULL, 0) == MR_OK;
        }
        if (ok) dt = (mr_now_s() - t0) / reps;
    }
    mr_mem_free(b1, dst);
    mr_mem_free(b0, src);
    return dt;
}

/* The stages: layers, planned bytes, memory in use on each GPU; the cost of a stage copy. */
static void print_stages(mr_model *m, int chunk) {
    const mr_stage_plan *plan = mr_model_stage_plan(m);
    const mr_model_params *mp = mr_model_params_of(m);
    for (int s = 0; s < plan->n_stages; s++) {
        mr_backend *be = mr_model_stage_backend(m, s);
        size_t free_b = 0, total_b = 0;
        const int known = be->ops->mem_info && be->ops->mem_info(be, &free_b, &total_b) == MR_OK;
        printf("stage %d        device %d: layers %d-%d, planned %.2f GB", s, mp->stage_devices[s],
               plan->first_layer[s], plan->first_layer[s + 1] - 1, (double)plan->bytes[s] / 1e9);
        if (known)
            printf(", %.2f GB of %.2f GB in use now", (double)(total_b - free_b) / 1e9,
                   (double)total_b / 1e9);
        printf("\n");
    }
    if (plan->n_stages < 2) return;
    mr_backend *b0 = mr_model_stage_backend(m, 0), *b1 = mr_model_stage_backend(m, 1);
    const size_t row = (size_t)mr_model_config_of(m)->hidden_size * sizeof(float);
    const size_t sizes[2] = {row, row * (size_t)chunk};
    for (int i = 0; i < 2; i++) {
        const double lat = time_stage_copy(b0, b1, sizes[i], 200, 1);
        const double thr = time_stage_copy(b0, b1, sizes[i], 200, 0);
        printf(
            "stage copy     %d token%s (%.1f KB): %.1f us waited for, %.1f us each of 200 in a row "
            "(%.1f GB/s)\n",
            i ? chunk : 1, i && chunk > 1 ? "s" : "", (double)sizes[i] / 1e3, lat * 1e6, thr * 1e6,
            thr > 0 ? (double)sizes[i] / thr / 1e9 : 0.0);
    }
}

static int bench_forward(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"backend", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 't'}, {"prompt-len", required_argument, 0, 'p'},
        {"decode", required_argument, 0, 'd'},  {"chunk", required_argument, 0, 'c'},
        {"gpus", required_argument, 0, 'G'},    {"batch", required_argument, 0, 'B'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    int n_gpus = 1, gpus[MR_MAX_STAGES] = {0};
    const char *model_dir = NULL, *backend = "cpu";
    long long threads = 0, plen = 512, ndec = 64, chunk = 512, batch = 1;
    optind = 1;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'm':
            model_dir = optarg;
            break;
        case 'b':
            backend = optarg;
            break;
        case 't':
            if ((threads = mr_cli_parse_int("--threads", optarg, 0, 1024)) < 0) return 2;
            break;
        case 'p':
            if ((plen = mr_cli_parse_int("--prompt-len", optarg, 1, 1 << 20)) < 0) return 2;
            break;
        case 'd':
            if ((ndec = mr_cli_parse_int("--decode", optarg, 1, 1 << 20)) < 0) return 2;
            break;
        case 'c':
            if ((chunk = mr_cli_parse_int("--chunk", optarg, 1, 1 << 20)) < 0) return 2;
            break;
        case 'G':
            if ((n_gpus = mr_cli_parse_gpus(optarg, gpus, MR_MAX_STAGES)) < 0) return 2;
            break;
        case 'B':
            if ((batch = mr_cli_parse_int("--batch", optarg, 1, 4096)) < 0) return 2;
            break;
        case 'h':
            printf("usage: moerack bench forward --model DIR [--backend cpu|cuda-gpu|...]\n"
                   "       [--threads N] [--prompt-len 512] [--decode 64] [--chunk 512]\n"
                   "       [--gpus 0,1]  (layers split over these GPUs)\n"
                   "       [--batch 1]   (sequences decoded together, each its own prompt)\n");
            return 0;
        default:
            return 2;
        }
    }
    if (!model_dir) {
        MR_LOG_ERROR(MR_LOG_CLI, "bench forward: --model is required");
        return 2;
    }
    mr_log_set_level(MR_LOG_LEVEL_WARN);
    mr_ckpt *ck = NULL;
    mr_model *m = NULL;
    mr_seq **seqs = NULL;
    int32_t *ids = NULL, *next = NULL;
    float *logits = NULL;
    mr_step_seq *in = NULL;
    const size_t B = (size_t)batch;
    int rc = 1;
    if (mr_ckpt_open(model_dir, &ck) != MR_OK) goto out;
    const mr_model_config *c = mr_ckpt_config(ck);
    mr_model_params mp;
    mr_model_params_default(&mp);
    mp.backend = backend;
    mp.n_threads = (int)threads;
    mp.max_batch_tokens = (int)(chunk > batch ? chunk : batch);
    mp.max_seqs = (int)batch;
    mp.max_context = plen + 3 * ndec + 1;
    mp.n_stages = n_gpus;
    memcpy(mp.stage_devices, gpus, sizeof gpus);
    const double t_load0 = mr_now_s();
    if (mr_model_create(ck, &mp, &m) != MR_OK) goto out;
    const double t_load = mr_now_s() - t_load0;
    if (!(ids = malloc(B * (size_t)plen * sizeof *ids)) || !(seqs = calloc(B, sizeof *seqs)) ||
        !(next = malloc(B * sizeof *next)) || !(in = malloc(B * sizeof *in)) ||
        !(logits = malloc(B * (size_t)c->vocab_size * sizeof *logits)))
        goto out;
    uint64_t rs = 42; /* sequence b's prompt: ids[b · plen ..] */
    for (size_t i = 0; i < B * (size_t)plen; i++)
        ids[i] = (int32_t)(mr_splitmix64(&rs) % (uint64_t)c->vocab_size);

    size_t expert_bytes, nonexpert = mr_model_weight_bytes(m, &expert_bytes);
    size_t per_token = mr_model_decode_bytes_per_token(m);
    size_t state_bytes = (size_t)mr_model_config_n_lightning(c) * c->num_attention_heads *
                         c->head_dim * c->head_dim * sizeof(float) * 2; /* read + write */
    int nthreads = threads > 0 ? (int)threads : 0;
    const int on_device = mr_model_backend(m)->ops->device_resident;
    /* The machine is shared (a VM): take the best of many passes before and after the run. */
    double bw = on_device ? 0 : measure_read_bw((size_t)1 << 30, nthreads, 10);

    /* prefill: sequence 0 twice, report the second (warm caches, pages faulted in); then the
     * other sequences of the batch, untimed */
    double t_prefill = 0;
    for (int rep = 0; rep < 2 + (int)B - 1; rep++) {
        const size_t b = rep < 2 ? 0 : (size_t)rep - 1;
        if (seqs[b]) mr_model_seq_close(m, seqs[b]);
        seqs[b] = NULL;
        if (mr_model_seq_open(m, mp.max_context, &seqs[b]) != MR_OK) goto out;
        double t0 = mr_now_s();
        for (long long i = 0; i < plen; i += chunk) {
            int len = (int)(plen - i < chunk ? plen - i : chunk);
            mr_step_seq one = {seqs[b], ids + b * (size_t)plen + i, len, i + len == plen};
            if (mr_model_step(m, &one, 1, logits + b * (size_t)c->vocab_size) != MR_OK) goto out;
        }
        if (rep < 2) t_prefill = mr_now_s() - t0;
    }
    /* decode: three rounds of ndec steps continuing the same sequences (a step is one token of
     * every sequence); report the best and the median round (the first warms caches) */
    double rounds[3];
    for (int r = 0; r < 3; r++) {
        double t0 = mr_now_s();
        for (long long g = 0; g < ndec; g++) {
            for (size_t b = 0; b < B; b++) {
                const float *row = logits + b * (size_t)c->vocab_size;
                next[b] = 0;
                for (int v = 1; v < c->vocab_size; v++)
                    if (row[v] > row[next[b]]) next[b] = v;
                in[b] = (mr_step_seq){seqs[b], &next[b], 1, 1};
            }
            if (mr_model_step(m, in, (int)B, logits) != MR_OK) goto out;
        }
        rounds[r] = mr_now_s() - t0;
    }
    double bw_after = on_device ? 0 : measure_read_bw((size_t)1 << 30, nthreads, 10);
    if (bw_after > bw) bw = bw_after;
    double sorted[3] = {rounds[0], rounds[1], rounds[2]};
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (sorted[j] < sorted[i]) {
                double t = sorted[i];
                sorted[i] = sorted[j];
                sorted[j] = t;
            }
    double t_decode = sorted[0];
    double dec_tps = (double)ndec / t_decode; /* steps per second */
    double ceiling = bw / (double)(per_token + state_bytes);
    printf("model          %s (%d layers, hidden %d, %d experts x %d)\n", model_dir,
           c->num_hidden_layers, c->hidden_size, c->num_local_experts, c->intermediate_size);
    if (on_device)
        printf("backend        %s (activations, states and KV cache on the GPU)\n", backend);
    else
        printf("backend        %s, %d threads, %s kernels\n", backend,
               nthreads ? nthreads : (int)sysconf(_SC_NPROCESSORS_ONLN), mr_cpu_backend_isa());
    printf(
        "weights        %.3f GB (%.3f GB non-expert + %.3f GB experts); model created in %.1f s\n",
        (double)(nonexpert + expert_bytes) / 1e9, (double)nonexpert / 1e9,
        (double)expert_bytes / 1e9, t_load);
    print_stages(m, (int)chunk);
    if (!on_device)
        printf("read bandwidth %.2f GB/s (best pass before/after the run, same threads)\n",
               bw / 1e9);
    printf("decode bytes   %.1f MB/token (weights %.1f MB + lightning state r/w %.1f MB)\n",
           (double)(per_token + state_bytes) / 1e6, (double)per_token / 1e6,
           (double)state_bytes / 1e6);
    printf("prefill        %lld tokens in %.3f s = %.1f tokens/s\n", plen, t_prefill,
           (double)plen / t_prefill);
    if (B == 1)
        printf("decode         %lld tokens in %.3f s = %.2f tokens/s (best of 3 rounds; median "
               "%.2f)\n",
               ndec, t_decode, dec_tps, (double)ndec / sorted[1]);
    else
        printf("decode         batch %zu: %lld steps in %.3f s = %.2f tokens/s, %.2f per sequence "
               "(best of 3 rounds; median %.2f tokens/s)\n",
               B, ndec, t_decode, dec_tps * (double)B, dec_tps,
               (double)B * (double)ndec / sorted[1]);
    if (on_device) /* a step reads the weights once for the whole batch */
        printf("decode reads   %.1f GB/s achieved (bytes per step x steps/s; compare with HBM)\n",
               dec_tps * (double)(per_token + B * state_bytes) / 1e9);
    else
        printf("decode ceiling %.2f tokens/s (bandwidth / bytes per token); achieved %.0f%%\n",
               ceiling, 100.0 * dec_tps / ceiling);
    rc = 0;
out:
    for (size_t b = 0; seqs && b < B; b++)
        if (seqs[b]) mr_model_seq_close(m, seqs[b]);
    mr_model_destroy(m);
    mr_ckpt_close(ck);
    free(ids);
    free(next);
    free(in);
    free(seqs);
    free(logits);
    return rc;
}

/* ---- bench cluster --------------------------------------------------------------------------- */

/* One generation through the cluster; returns seconds or -1. */
static double best_of(double a, double b) {
    return a < 0 ? b : (b < 0 ? a : (a < b ? a : b));
}

static int bench_cluster(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"workers", required_argument, 0, 'w'},
                                         {"prompt-len", required_argument, 0, 'p'},
                                         {"decode", required_argument, 0, 'd'},
                                         {"work", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *model = NULL, *work = "/tmp/moerack-bench-cluster", *workers_arg = "1,2,4";
    long long plen = 512, ndec = 32;
    optind = 1;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'm':
            model = optarg;
            break;
        case 'w':
            workers_arg = optarg;
            break;
        case 'o':
            work = optarg;
            break;
        case 'p':
            if ((plen = mr_cli_parse_int("--prompt-len", optarg, 1, 1 << 16)) < 0) return 2;
            break;
        case 'd':
            if ((ndec = mr_cli_parse_int("--decode", optarg, 1, 1 << 16)) < 0) return 2;
            break;
        case 'h':
            printf("usage: moerack bench cluster --model DIR [--workers 1,2,4] [--prompt-len 512] "
                   "[--decode 32] [--work DIR]\n");
            return 0;
        default:
            return 2;
        }
    }
    if (!model) {
        MR_LOG_ERROR(MR_LOG_CLI, "bench cluster: --model is required");
        return 2;
    }
    char model_abs[4096], bin[4096];
    if (!realpath(model, model_abs)) {
        MR_LOG_ERROR(MR_LOG_CLI, "%s: no such model directory", model);
        return 2;
    }
    mr_launch_self_dir(bin, sizeof bin);
    mr_log_set_level(MR_LOG_LEVEL_WARN);
    mr_ckpt *ck;
    if (mr_ckpt_open(model_abs, &ck) != MR_OK) return 1;
    const mr_model_config c = *mr_ckpt_config(ck);
    int32_t *ids = malloc((size_t)plen * sizeof *ids);
    uint64_t rs = 7;
    for (long long i = 0; i < plen; i++)
        ids[i] = (int32_t)(mr_splitmix64(&rs) % (uint64_t)c.vocab_size);

    /* single process, same thread budget as the cluster's coordinator + workers together */
    mr_model_params mp;
    mr_model_params_default(&mp);
    mp.max_batch_tokens = (int)plen;
    mp.max_context = plen + ndec + 2;
    mp.max_seqs = 1;
    mr_model *m;
    if (mr_model_create(ck, &mp, &m) != MR_OK) {
        mr_ckpt_close(ck);
        return 1;
    }
    float *logits = malloc((size_t)c.vocab_size * sizeof(float));
    double sp_prefill = -1, sp_decode = -1;
    for (int rep = 0; rep < 3; rep++) {
        mr_seq *seq;
        mr_model_seq_open(m, mp.max_context, &seq);
        double t0 = mr_now_s();
        mr_step_seq in = {seq, ids, (int)plen, 1};
        mr_model_step(m, &in, 1, logits);
        sp_prefill = best_of(sp_prefill, mr_now_s() - t0);
        t0 = mr_now_s();
        for (long long g = 0; g < ndec; g++) {
            int32_t t = (int32_t)(g % c.vocab_size);
            mr_step_seq d = {seq, &t, 1, 1};
            mr_model_step(m, &d, 1, logits);
        }
        sp_decode = best_of(sp_decode, mr_now_s() - t0);
        mr_model_seq_close(m, seq);
    }
    mr_model_destroy(m);
    mr_ckpt_close(ck);
    free(logits);
    printf(
        "model %s: %d layers, hidden %d, %d experts x %d; prompt %lld tokens, decode %lld tokens\n",
        model, c.num_hidden_layers, c.hidden_size, c.num_local_experts, c.intermediate_size, plen,
        ndec);
    printf("%-16s %14s %14s %14s %14s\n", "setup", "prefill tok/s", "decode tok/s", "rtt p50 us",
           "rtt p99 us");
    printf("%-16s %14.1f %14.2f %14s %14s\n", "single process", (double)plen / sp_prefill,
           (double)ndec / sp_decode, "-", "-");
    int rc = 0;
    for (const char *p = workers_arg; *p;) {
        int W = atoi(p);
        p = strchr(p, ',') ? strchr(p, ',') + 1 : p + strlen(p);
        if (W < 1 || W > MR_LAUNCH_MAX_WORKERS) continue;
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%dw", work, W);
        mkdir(work, 0755);
        mkdir(dir, 0755);
        mr_launch_params lp = {.bin_dir = bin,
                               .model = model_abs,
                               .work_dir = dir,
                               .n_workers = W,
                               .coord_threads = 1,
                               .worker_threads = 1,
                               .max_batch_tokens = (int)plen,
                               .log_level = "warn"};
        mr_launch l;
        if (mr_launch_start(&lp, &l) != MR_OK || mr_launch_wait(&l, "HEALTHY", 120000) != MR_OK) {
            MR_LOG_ERROR(MR_LOG_CLI, "cluster with %d workers did not start (logs in %s)", W, dir);
            mr_launch_stop(&l);
            rc = 1;
            continue;
        }
        double t_pre = -1, t_dec = -1;
        for (int rep = 0; rep < 3; rep++) {
            double a = mr_client_generate(l.host, l.port, ids, (int)plen, 1);
            double b = mr_client_generate(l.host, l.port, ids, 1, (int)ndec);
            t_pre = best_of(t_pre, a);
            t_dec = best_of(t_dec, b);
        }
        double p50 = 0, p99 = 0;
        Moerack__Envelope *env;
        if (mr_client_status(l.host, l.port, &env) == MR_OK) {
            for (size_t i = 0; i < env->status_reply->n_workers; i++) {
                if (env->status_reply->workers[i]->rtt_p50_us > p50)
                    p50 = env->status_reply->workers[i]->rtt_p50_us;
                if (env->status_reply->workers[i]->rtt_p99_us > p99)
                    p99 = env->status_reply->workers[i]->rtt_p99_us;
            }
            mr_frame_free(env);
        }
        char label[32];
        snprintf(label, sizeof label, "%d worker%s", W, W > 1 ? "s" : "");
        printf("%-16s %14.1f %14.2f %14.0f %14.0f\n", label, t_pre > 0 ? (double)plen / t_pre : 0,
               t_dec > 0 ? (double)ndec / t_dec : 0, p50, p99);
        fflush(stdout);
        mr_launch_stop(&l);
    }
    printf(
        "(rtt: per-layer expert round trip, send to reply, slowest worker; decode measured with a "
        "1-token prompt, prefill with 1 generated token)\n");
    free(ids);
    return rc;
}

int mr_cmd_bench(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "forward") == 0) return bench_forward(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "membw") == 0) return bench_membw(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "cluster") == 0) return bench_cluster(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "transport") == 0)
        return mr_bench_transport(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "load") == 0) return mr_bench_load(argc - 1, argv + 1);
    fprintf(stderr, "usage: moerack bench forward --model DIR [...]\n"
                    "       moerack bench load (--coordinator H:P | --config F) [...]\n"
                    "       moerack bench membw [THREADS]\n"
                    "       moerack bench cluster --model DIR [...]\n"
                    "       moerack bench transport [--transport tcp|rdma] [...]\n");
    return 2;
}
