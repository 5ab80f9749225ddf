/* sample_path_check — the scheduler's device sampling path against its host path, on one model.
 *
 *   sample_path_check --model DIR --backend B [--tol T]
 *
 * Loads DIR on backend B (a device-resident backend with the sample op: cpu-resident in CI,
 * cuda-gpu on a GPU machine), runs the same seeded requests through a scheduler that samples on
 * the host (host_sampling = 1: every logits row comes down) and through one that samples on the
 * device (only tokens and logprobs come down; rows with want_logits, a repetition penalty, or
 * that the device hands back are sampled on the host with the same draw), all requests batched
 * together, and requires identical tokens and logprobs (to T, default 0: cpu-resident runs the
 * host's own code) for greedy, temperature, top-k, top-p (alone and with top-k; on a vocabulary of
 * 1024 or less top-p alone is handed back), top-k above 1024 (handed back), a vocab_limit, a
 * repetition penalty and want_logits. Exit 0 on success, 1 on a difference, 2 on a setup error.
 *   --dump FILE writes both runs' tokens and logprobs (raw), to compare runs of one backend under
 *   different settings bit for bit (e.g. cuda-gpu with and without MOERACK_CUDA_GRAPHS=0);
 *   --no-segments runs decode steps without segments (no rows padded to the graphs' sizes). */
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/checkpoint.h"
#include "common/log.h"
#include "coordinator/model.h"
#include "coordinator/scheduler.h"

enum { N_REQ = 10, MAX_GEN = 12, N_TOP = 5 };

typedef struct outcome {
    int32_t tok[MAX_GEN];
    float lp[MAX_GEN];
    int32_t top_ids[MAX_GEN][N_TOP];
    float top_lp[MAX_GEN][N_TOP];
    int n, logits_rows, finished;
} outcome;

typedef struct run_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    outcome out[N_REQ];
} run_state;

typedef struct cb_ctx {
    run_state *rs;
    int i;
} cb_ctx;

static void on_event(void *user, const mr_gen_event *ev) {
    cb_ctx *c = user;
    outcome *o = &c->rs->out[c->i];
    if (ev->token >= 0 && o->n < MAX_GEN) {
        o->tok[o->n] = ev->token;
        if (ev->lp) {
            o->lp[o->n] = ev->lp->logprob;
            for (int k = 0; k < ev->lp->n_top && k < N_TOP; k++) {
                o->top_ids[o->n][k] = ev->lp->top_ids[k];
                o->top_lp[o->n][k] = ev->lp->top_logprobs[k];
            }
        }
        o->logits_rows += ev->logits != NULL;
        o->n++;
    }
    if (ev->finish != MR_FINISH_NONE) {
        pthread_mutex_lock(&c->rs->mu);
        o->finished = ev->finish;
        c->rs->done++;
        pthread_cond_signal(&c->rs->cv);
        pthread_mutex_unlock(&c->rs->mu);
    }
}

/* The requests: seeded, each with another sampling setting. */
static void make_request(int i, int vocab, const int32_t *prompt, int n_prompt, mr_gen_request *r) {
    memset(r, 0, sizeof *r);
    r->prompt = prompt;
    r->n_prompt = n_prompt - i % 3; /* prompts of several lengths */
    r->max_tokens = MAX_GEN;
    r->n_top_logprobs = N_TOP;
    mr_sampling_params_default(&r->sampling);
    r->sampling.has_seed = 1;
    r->sampling.seed = 1000 + (uint64_t)i;
    mr_sampling_params *p = &r->sampling;
    switch (i) {
    case 0:
        p->temperature = 0.0f;
        break; /* greedy */
    case 1:
        p->temperature = 1.0f;
        break; /* every id */
    case 2:
        p->temperature = 0.8f, p->top_k = 5;
        break; /* top-k */
    case 3:
        p->temperature = 1.0f, p->top_p = 0.9f;
        break; /* top-p alone */
    case 4:
        p->temperature = 0.7f, p->top_k = 40, p->top_p = 0.8f;
        break;
    case 5:
        p->temperature = 1.2f, p->top_k = 1500;
        break; /* > 1024 candidates */
    case 6:
        p->temperature = 1.0f, r->vocab_limit = vocab / 2;
        break;
    case 7:
        p->temperature = 0.9f, p->repetition_penalty = 1.3f;
        break; /* host */
    case 8:
        p->temperature = 1.0f, r->want_logits = 1;
        break; /* host */
    default:
        p->temperature = 1.5f, p->top_p = 0.5f, r->n_top_logprobs = 0;
        break;
    }
}

static int run(mr_model *m, int host_sampling, run_state *rs) {
    const mr_model_config *c = mr_model_config_of(m);
    mr_scheduler_params sp = {.max_num_seqs = N_REQ,
                              .max_batched_tokens = mr_model_params_of(m)->max_batch_tokens,
                              .max_waiting = N_REQ,
                              .host_sampling = host_sampling};
    mr_scheduler *s;
    if (mr_scheduler_create(m, &sp, &s) != MR_OK) return -1;
    memset(rs->out, 0, sizeof rs->out);
    rs->done = 0;
    int32_t prompt[24];
    for (int i = 0; i < 24; i++) prompt[i] = (int32_t)((i * 37 + 11) % c->vocab_size);
    cb_ctx ctx[N_REQ];
    for (int i = 0; i < N_REQ; i++) {
        mr_gen_request r;
        make_request(i, c->vocab_size, prompt, 24, &r);
        ctx[i] = (cb_ctx){rs, i};
        uint64_t id;
        if (mr_scheduler_submit(s, &r, on_event, &ctx[i], &id) != MR_OK) {
            mr_scheduler_destroy(s);
            return -1;
        }
    }
    pthread_mutex_lock(&rs->mu);
    while (rs->done < N_REQ) pthread_cond_wait(&rs->cv, &rs->mu);
    pthread_mutex_unlock(&rs->mu);
    mr_scheduler_destroy(s);
    return 0;
}

static int close_enough(float a, float b, double tol) {
    return tol == 0 ? a == b : fabs((double)a - (double)b) <= tol * fmax(1.0, fabs((double)b));
}

int main(int argc, char **argv) {
    const char *model_dir = NULL, *backend = "cpu-resident", *dump = NULL;
    double tol = 0;
    int no_segments = 0;
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"backend", required_argument, 0, 'b'},
        {"tol", required_argument, 0, 't'},   {"dump", required_argument, 0, 'd'},
        {"no-segments", no_argument, 0, 'n'}, {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) switch (o) {
        case 'm':
            model_dir = optarg;
            break;
        case 'b':
            backend = optarg;
            break;
        case 't':
            tol = atof(optarg);
            break;
        case 'd':
            dump = optarg;
            break;
        case 'n':
            no_segments = 1;
            break;
        default:
            return 2;
        }
    if (!model_dir) {
        fprintf(stderr, "usage: sample_path_check --model DIR --backend B [--tol T]\n");
        return 2;
    }
    mr_ckpt *ck;
    if (mr_ckpt_open(model_dir, &ck) != MR_OK) return 2;
    mr_model_params mp;
    mr_model_params_default(&mp);
    mp.backend = backend;
    mp.max_seqs = N_REQ;
    mp.max_batch_tokens = 256;
    mp.max_context = 64;
    mp.no_segments = no_segments;
    mr_model *m;
    if (mr_model_create(ck, &mp, &m) != MR_OK) return 2;
    if (!mr_model_samples_on_device(m)) {
        fprintf(stderr, "backend %s does not sample on the device\n", backend);
        return 2;
    }
    static run_state host, dev;
    pthread_mutex_init(&host.mu, NULL);
    pthread_cond_init(&host.cv, NULL);
    pthread_mutex_init(&dev.mu, NULL);
    pthread_cond_init(&dev.cv, NULL);
    if (run(m, 1, &host) != 0 || run(m, 0, &dev) != 0) return 2;
    if (dump) {
        FILE *f = fopen(dump, "wb");
        if (!f || fwrite(host.out, sizeof host.out, 1, f) != 1 ||
            fwrite(dev.out, sizeof dev.out, 1, f) != 1 || fclose(f) != 0) {
            perror(dump);
            return 2;
        }
    }
    int bad = 0;
    for (int i = 0; i < N_REQ; i++) {
        const outcome *h = &host.out[i], *d = &dev.out[i];
        int ok = h->n == d->n && h->n == MAX_GEN && h->finished == d->finished &&
                 h->logits_rows == d->logits_rows;
        for (int t = 0; ok && t < h->n; t++) {
            ok = h->tok[t] == d->tok[t] && close_enough(d->lp[t], h->lp[t], tol);
            for (int k = 0; ok && k < N_TOP; k++)
                ok = h->top_ids[t][k] == d->top_ids[t][k] &&
                     close_enough(d->top_lp[t][k], h->top_lp[t][k], tol);
        }
        printf("%s request %d: %d tokens", ok ? "PASS" : "FAIL", i, d->n);
        for (int t = 0; t < d->n; t++) printf("%s%d", t ? "," : " ", d->tok[t]);
        if (!ok) {
            printf(" (host path:");
            for (int t = 0; t < h->n; t++) printf("%s%d", t ? "," : " ", h->tok[t]);
            printf(")");
        }
        printf("\n");
        bad += !ok;
    }
    /* the draws differ between requests: a sampler that ignores them would give equal streams */
    if (memcmp(dev.out[1].tok, dev.out[6].tok, sizeof dev.out[1].tok) == 0 &&
        memcmp(dev.out[1].tok, dev.out[8].tok, sizeof dev.out[1].tok) == 0) {
        printf("FAIL: requests with other seeds gave the same tokens\n");
        bad++;
    }
    mr_model_destroy(m);
    mr_ckpt_close(ck);
    printf("%s: backend %s, %d of %d requests differ between the device and the host path\n",
           bad ? "FAIL" : "PASS", backend, bad, N_REQ);
    return bad ? 1 : 0;
}
