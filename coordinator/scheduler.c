#include "coordinator/scheduler.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/log.h"
#include "common/timeutil.h"

typedef struct req {
    uint64_t id;
    mr_gen_request r;
    int32_t *tokens; /* prompt then generated: [n_prompt + max_tokens] */
    int32_t *forced; /* test mode: forced output tokens, or NULL */
    int n_generated;
    int prefilled; /* prompt tokens already in the model */
    mr_seq *seq;
    mr_sampler sampler;
    mr_gen_cb cb;
    void *user;
    int cancelled;
    double t_arrival, t_last;
    struct req *next;
} req;

struct mr_scheduler {
    mr_model *m;
    mr_scheduler_params p;
    int vocab;
    int block; /* lightning block size: prefill chunks end on its multiples */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    uint64_t next_id;
    req *waiting, *waiting_tail; /* FIFO, under mu */
    req *running;                /* admission order; owned by the thread */
    int n_waiting, n_running;
    /* step buffers, sized once */
    mr_step_seq *batch;
    req **batch_req;
    float *logits; /* [max_num_seqs][vocab] */
    float *work;   /* sampling scratch */
    /* Sampling on the device (the model's backend has the sample op): the logits stay there and
     * only tokens and logprobs come down; rows that need the full row (want_logits, a
     * repetition penalty, or handed back by the device) come down into `logits` and are
     * sampled here with the same uniform number. [max_num_seqs] each, indexed by logits row. */
    int on_device;
    double *u;     /* the row's draw */
    int *dev_slot; /* index into dev_rows, or -1: sampled on the host */
    mr_sample_row *dev_rows;
    int32_t *dev_tok;
    mr_sample_result *dev_res;
    /* metrics */
    mr_gauge *g_running, *g_waiting, *g_slots, *g_kv;
    mr_counter *c_prompt, *c_gen, *c_finished[5];
    mr_histogram *h_ttft, *h_itl, *h_e2e, *h_step, *h_batch;
};

const char *mr_finish_reason_name(mr_finish_reason r) {
    switch (r) {
    case MR_FINISH_STOP:
        return "stop";
    case MR_FINISH_LENGTH:
        return "length";
    case MR_FINISH_CANCELLED:
        return "cancelled";
    case MR_FINISH_ERROR:
        return "error";
    default:
        return "none";
    }
}

static void req_free(mr_scheduler *s, req *q) {
    if (q->seq) mr_model_seq_close(s->m, q->seq);
    free(q->tokens);
    free(q->forced);
    free(q);
}

/* Emits the final event and frees the request. */
static void finish(mr_scheduler *s, req *q, mr_finish_reason why, const char *error) {
    mr_gen_event ev = {.id = q->id,
                       .token = -1,
                       .index = q->n_generated,
                       .finish = why,
                       .error = error,
                       .n_prompt = q->r.n_prompt,
                       .n_generated = q->n_generated,
                       .vocab = s->vocab};
    q->cb(q->user, &ev);
    mr_counter_add(s->c_finished[why], 1);
    mr_histogram_observe(s->h_e2e, mr_now_s() - q->t_arrival);
    req_free(s, q);
}

mr_status mr_scheduler_submit(mr_scheduler *s, const mr_gen_request *r, mr_gen_cb cb, void *user,
                              uint64_t *id) {
    const mr_model_params *mp = mr_model_params_of(s->m);
    if (r->n_prompt < 1 || r->max_tokens < 0 || r->n_stop_ids < 0 ||
        r->n_stop_ids > MR_MAX_STOP_IDS ||
        (int64_t)r->n_prompt + r->max_tokens + 1 > mp->max_context)
        return MR_ERR_INVALID;
    req *q = calloc(1, sizeof *q);
    if (!q) return MR_ERR_NOMEM;
    q->r = *r;
    q->tokens = malloc(((size_t)r->n_prompt + (size_t)r->max_tokens + 1) * sizeof(int32_t));
    if (!q->tokens) {
        free(q);
        return MR_ERR_NOMEM;
    }
    memcpy(q->tokens, r->prompt, (size_t)r->n_prompt * sizeof(int32_t));
    q->r.prompt = q->tokens;
    if (r->n_forced > 0) {
        q->forced = malloc((size_t)r->n_forced * sizeof(int32_t));
        if (!q->forced) {
            free(q->tokens);
            free(q);
            return MR_ERR_NOMEM;
        }
        memcpy(q->forced, r->forced, (size_t)r->n_forced * sizeof(int32_t));
        q->r.forced = q->forced;
    }
    q->cb = cb;
    q->user = user;
    q->t_arrival = mr_now_s();
    mr_sampler_init(&q->sampler, &r->sampling, r->vocab_limit);
    pthread_mutex_lock(&s->mu);
    /* the queue holds max_waiting requests beyond the free slots (admission happens on the
     * scheduler thread, so a burst may briefly wait even while slots are free) */
    if (s->n_waiting >= s->p.max_waiting + (s->p.max_num_seqs - s->n_running) || s->stop) {
        pthread_mutex_unlock(&s->mu);
        free(q->tokens);
        free(q);
        return MR_ERR_FULL;
    }
    q->id = ++s->next_id;
    if (s->waiting_tail)
        s->waiting_tail->next = q;
    else
        s->waiting = q;
    s->waiting_tail = q;
    s->n_waiting++;
    mr_gauge_set(s->g_waiting, s->n_waiting);
    *id = q->id;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return MR_OK;
}

void mr_scheduler_cancel(mr_scheduler *s, uint64_t id) {
    pthread_mutex_lock(&s->mu);
    for (req *q = s->waiting; q; q = q->next)
        if (q->id == id) q->cancelled = 1;
    for (req *q = s->running; q; q = q->next)
        if (q->id == id) q->cancelled = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void mr_scheduler_counts(mr_scheduler *s, int *running, int *waiting) {
    pthread_mutex_lock(&s->mu);
    *running = s->n_running;
    *waiting = s->n_waiting;
    pthread_mutex_unlock(&s->mu);
}

/* Under mu: drops cancelled requests into `dead`, admits waiting ones while slots last. */
static void admit(mr_scheduler *s, req **dead) {
    for (req **pp = &s->running; *pp;) {
        req *q = *pp;
        if (q->cancelled) {
            *pp = q->next;
            q->next = *dead;
            *dead = q;
            s->n_running--;
        } else {
            pp = &q->next;
        }
    }
    for (req **pp = &s->waiting; *pp;) {
        req *q = *pp;
        if (q->cancelled) {
            *pp = q->next;
            q->next = *dead;
            *dead = q;
            s->n_waiting--;
        } else {
            pp = &q->next;
        }
    }
    s->waiting_tail = NULL;
    for (req *q = s->waiting; q; q = q->next) s->waiting_tail = q;
    while (s->waiting && s->n_running < s->p.max_num_seqs) {
        req *q = s->waiting;
        if (mr_model_seq_open(s->m, (int64_t)q->r.n_prompt + q->r.max_tokens + 1, &q->seq) != MR_OK)
            break; /* no state slot: wait for one to free */
        s->waiting = q->next;
        if (!s->waiting) s->waiting_tail = NULL;
        s->n_waiting--;
        q->next = NULL;
        req **tail = &s->running;
        while (*tail) tail = &(*tail)->next;
        *tail = q;
        s->n_running++;
    }
    mr_gauge_set(s->g_running, s->n_running);
    mr_gauge_set(s->g_waiting, s->n_waiting);
    mr_gauge_set(s->g_slots, s->n_running);
    const mr_state_pool *sp = mr_model_states(s->m);
    mr_gauge_set(s->g_kv, sp->n_blocks - sp->n_free_blocks);
}

static void remove_running(mr_scheduler *s, req *q) {
    pthread_mutex_lock(&s->mu);
    for (req **pp = &s->running; *pp; pp = &(*pp)->next)
        if (*pp == q) {
            *pp = q->next;
            s->n_running--;
            break;
        }
    mr_gauge_set(s->g_running, s->n_running);
    mr_gauge_set(s->g_slots, s->n_running);
    pthread_mutex_unlock(&s->mu);
}

/* After a step whose logits stayed on the device: draws every row's uniform number, samples the
 * rows it can on the device, and brings down the rows the host samples. */
static mr_status sample_on_device(mr_scheduler *s, int nb) {
    int n_dev = 0;
    for (int i = 0, row = 0; i < nb; i++) {
        if (!s->batch[i].want_logits) continue;
        req *q = s->batch_req[i];
        const int r = row++;
        s->dev_slot[r] = -1;
        if (q->r.max_tokens == 0) continue; /* finishes without a token */
        s->u[r] = mr_sampler_draw(&q->sampler);
        if (q->r.want_logits || !mr_sampler_on_device_ok(&q->sampler)) continue;
        mr_sampler_row(&q->sampler, s->u[r], q->r.n_top_logprobs, &s->dev_rows[n_dev]);
        s->dev_rows[n_dev].row = r;
        s->dev_slot[r] = n_dev++;
    }
    if (n_dev > 0) MR_CHECK(mr_model_sample(s->m, s->dev_rows, n_dev, s->dev_tok, s->dev_res));
    for (int i = 0, row = 0; i < nb; i++) {
        if (!s->batch[i].want_logits) continue;
        const int r = row++, slot = s->dev_slot[r];
        if (s->batch_req[i]->r.max_tokens == 0) continue;
        if (slot < 0 || s->dev_tok[slot] == MR_SAMPLE_ON_HOST)
            MR_CHECK(mr_model_logits_row(s->m, r, s->logits + (size_t)r * s->vocab));
    }
    return MR_OK;
}

/* One step over the running requests; returns 0 if there was nothing to do. */
static int step(mr_scheduler *s) {
    req *dead = NULL;
    pthread_mutex_lock(&s->mu);
    admit(s, &dead);
    int have = s->running != NULL;
    pthread_mutex_unlock(&s->mu);
    while (dead) {
        req *q = dead;
        dead = q->next;
        finish(s, q, MR_FINISH_CANCELLED, NULL);
    }
    if (!have) return 0;
    char why[512] = "";
    if (s->p.pre_step && s->p.pre_step(s->p.pre_step_user, why, sizeof why) != MR_OK) {
        for (req *q = s->running, *n; q; q = n) {
            n = q->next;
            remove_running(s, q);
            finish(s, q, MR_FINISH_ERROR, why);
        }
        return 1;
    }
    /* decodes first, then prefill chunks in admission order within the token budget */
    int nb = 0, budget = s->p.max_batched_tokens;
    for (req *q = s->running; q && budget > 0; q = q->next) {
        if (q->prefilled < q->r.n_prompt) continue;
        int32_t *last = &q->tokens[q->r.n_prompt + q->n_generated - 1];
        s->batch[nb] = (mr_step_seq){q->seq, last, 1, 1};
        s->batch_req[nb++] = q;
        budget--;
    }
    for (req *q = s->running; q && budget > 0; q = q->next) {
        int left = q->r.n_prompt - q->prefilled;
        if (left <= 0) continue;
        int chunk = left < budget ? left : budget;
        if (chunk < left) {
            /* end a partial prefill on a lightning block boundary: then however the prompt is
             * cut into steps (which depends on what else is running), every block is the same
             * and so are the results, bit for bit */
            int end = q->prefilled + chunk;
            end -= end % s->block;
            if (end > q->prefilled)
                chunk = end - q->prefilled;
            else if (nb > 0)
                continue; /* wait for a step with room for a whole block */
        }
        s->batch[nb] = (mr_step_seq){q->seq, q->tokens + q->prefilled, chunk, chunk == left};
        s->batch_req[nb++] = q;
        budget -= chunk;
    }
    double t0 = mr_now_s();
    mr_status st = mr_model_step(s->m, s->batch, nb, s->on_device ? NULL : s->logits);
    if (st == MR_OK && s->on_device) st = sample_on_device(s, nb);
    mr_histogram_observe(s->h_step, mr_now_s() - t0);
    mr_histogram_observe(s->h_batch, s->p.max_batched_tokens - budget);
    if (st != MR_OK) {
        snprintf(why, sizeof why, "model step failed: %s", mr_status_str(st));
        if (s->p.pre_step) s->p.pre_step(s->p.pre_step_user, why, sizeof why); /* refresh why */
        for (int i = 0; i < nb; i++) {
            remove_running(s, s->batch_req[i]);
            finish(s, s->batch_req[i], MR_FINISH_ERROR, why);
        }
        return 1;
    }
    int row = 0;
    double now = mr_now_s();
    for (int i = 0; i < nb; i++) {
        req *q = s->batch_req[i];
        const mr_step_seq *b = &s->batch[i];
        int was_prefill = q->prefilled < q->r.n_prompt;
        if (was_prefill) {
            q->prefilled += b->n_tokens;
            mr_counter_add(s->c_prompt, b->n_tokens);
        }
        if (!b->want_logits) continue;
        const float *lg = s->logits + (size_t)row++ * s->vocab;
        if (q->r.max_tokens == 0) {
            remove_running(s, q);
            finish(s, q, MR_FINISH_LENGTH, NULL);
            continue;
        }
        mr_sample_result lp;
        int32_t tok;
        const int slot = s->on_device ? s->dev_slot[row - 1] : -1;
        if (slot >= 0 && s->dev_tok[slot] != MR_SAMPLE_ON_HOST) {
            tok = s->dev_tok[slot];
            lp = s->dev_res[slot];
        } else if (s->on_device) { /* the row came down: the host sampler, same draw */
            tok = mr_sampler_next_u(&q->sampler, s->u[row - 1], lg, s->vocab, q->tokens,
                                    q->r.n_prompt + q->n_generated, q->r.n_top_logprobs, s->work,
                                    q->r.n_top_logprobs >= 0 ? &lp : NULL);
        } else {
            tok = mr_sampler_next(&q->sampler, lg, s->vocab, q->tokens,
                                  q->r.n_prompt + q->n_generated, q->r.n_top_logprobs, s->work,
                                  q->r.n_top_logprobs >= 0 ? &lp : NULL);
        }
        q->tokens[q->r.n_prompt + q->n_generated] = tok;
        q->n_generated++;
        mr_counter_add(s->c_gen, 1);
        if (q->n_generated == 1)
            mr_histogram_observe(s->h_ttft, now - q->t_arrival);
        else
            mr_histogram_observe(s->h_itl, now - q->t_last);
        q->t_last = now;
        int is_stop = 0, forced_end = 0;
        if (q->forced) { /* test mode: replace the sample, end after the last forced token */
            tok = q->forced[q->n_generated - 1];
            q->tokens[q->r.n_prompt + q->n_generated - 1] = tok;
            forced_end = q->n_generated == q->r.n_forced;
        }
        for (int j = 0; j < q->r.n_stop_ids; j++) is_stop |= tok == q->r.stop_ids[j];
        mr_finish_reason fin = is_stop || forced_end               ? MR_FINISH_STOP
                               : q->n_generated >= q->r.max_tokens ? MR_FINISH_LENGTH
                                                                   : MR_FINISH_NONE;
        mr_gen_event ev = {.id = q->id,
                           .token = tok,
                           .is_stop_token = is_stop,
                           .index = q->n_generated - 1,
                           .lp = q->r.n_top_logprobs >= 0 ? &lp : NULL,
                           .logits = q->r.want_logits ? lg : NULL,
                           .vocab = s->vocab,
                           .finish = fin,
                           .n_prompt = q->r.n_prompt,
                           .n_generated = q->n_generated};
        q->cb(q->user, &ev);
        if (fin != MR_FINISH_NONE) {
            remove_running(s, q);
            mr_counter_add(s->c_finished[fin], 1);
            mr_histogram_observe(s->h_e2e, now - q->t_arrival);
            req_free(s, q);
        }
    }
    return 1;
}

static void *sched_main(void *arg) {
    mr_scheduler *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stop && !s->waiting && !s->running) pthread_cond_wait(&s->cv, &s->mu);
        int stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop) break;
        if (!step(s)) {
            /* waiting requests but no slot could be opened: wait for a change */
            pthread_mutex_lock(&s->mu);
            if (!s->stop && !s->running) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 10 * 1000000;
                if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
                pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            }
            pthread_mutex_unlock(&s->mu);
        }
    }
    /* cancel everything left */
    for (req *q = s->running, *n; q; q = n) {
        n = q->next;
        finish(s, q, MR_FINISH_CANCELLED, NULL);
    }
    for (req *q = s->waiting, *n; q; q = n) {
        n = q->next;
        finish(s, q, MR_FINISH_CANCELLED, NULL);
    }
    s->running = s->waiting = NULL;
    return NULL;
}

static void free_buffers(mr_scheduler *s) {
    free(s->batch);
    free(s->batch_req);
    free(s->logits);
    free(s->work);
    free(s->u);
    free(s->dev_slot);
    free(s->dev_rows);
    free(s->dev_tok);
    free(s->dev_res);
}

mr_status mr_scheduler_create(mr_model *m, const mr_scheduler_params *p, mr_scheduler **out) {
    const mr_model_params *mp = mr_model_params_of(m);
    const mr_model_config *c = mr_model_config_of(m);
    if (p->max_num_seqs < 1 || p->max_num_seqs > mp->max_seqs || p->max_batched_tokens < 1 ||
        p->max_batched_tokens > mp->max_batch_tokens || p->max_waiting < 0) {
        MR_LOG_ERROR(
            MR_LOG_SCHED,
            "scheduler: max_num_seqs %d / max_batched_tokens %d exceed the model's %d / %d",
            p->max_num_seqs, p->max_batched_tokens, mp->max_seqs, mp->max_batch_tokens);
        return MR_ERR_INVALID;
    }
    mr_scheduler *s = calloc(1, sizeof *s);
    if (!s) return MR_ERR_NOMEM;
    s->m = m;
    s->p = *p;
    s->vocab = c->vocab_size;
    s->block = c->block_size;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->batch = calloc((size_t)p->max_num_seqs, sizeof *s->batch);
    s->batch_req = calloc((size_t)p->max_num_seqs, sizeof *s->batch_req);
    s->logits = malloc((size_t)p->max_num_seqs * s->vocab * sizeof(float));
    s->work = malloc((size_t)s->vocab * 3 * sizeof(float));
    const size_t n = (size_t)p->max_num_seqs;
    s->on_device = !p->host_sampling && mr_model_samples_on_device(m);
    s->u = calloc(n, sizeof *s->u);
    s->dev_slot = calloc(n, sizeof *s->dev_slot);
    s->dev_rows = calloc(n, sizeof *s->dev_rows);
    s->dev_tok = calloc(n, sizeof *s->dev_tok);
    s->dev_res = calloc(n, sizeof *s->dev_res);
    if (!s->batch || !s->batch_req || !s->logits || !s->work || !s->u || !s->dev_slot ||
        !s->dev_rows || !s->dev_tok || !s->dev_res) {
        free_buffers(s);
        free(s);
        return MR_ERR_NOMEM;
    }
    MR_LOG_INFO(MR_LOG_SCHED, "scheduler: sampling on the %s", s->on_device ? "device" : "host");
    mr_metrics *mt = p->metrics;
    if (mt) {
        s->g_running = mr_metrics_gauge(mt, "moerack_num_requests_running",
                                        "Requests holding a sequence slot", NULL);
        s->g_waiting = mr_metrics_gauge(mt, "moerack_num_requests_waiting",
                                        "Requests queued for a slot", NULL);
        s->g_slots =
            mr_metrics_gauge(mt, "moerack_state_slots_used", "Lightning-state slots in use", NULL);
        s->g_kv =
            mr_metrics_gauge(mt, "moerack_kv_blocks_used", "Paged KV-cache blocks in use", NULL);
        mr_gauge_set(mr_metrics_gauge(mt, "moerack_kv_blocks_total", "Paged KV-cache blocks", NULL),
                     mr_model_states(m)->n_blocks);
        s->c_prompt =
            mr_metrics_counter(mt, "moerack_prompt_tokens_total", "Prompt tokens prefilled", NULL);
        s->c_gen =
            mr_metrics_counter(mt, "moerack_generation_tokens_total", "Tokens generated", NULL);
        static const char *const reasons[] = {NULL, "reason=\"stop\"", "reason=\"length\"",
                                              "reason=\"cancelled\"", "reason=\"error\""};
        for (int i = 1; i < 5; i++)
            s->c_finished[i] = mr_metrics_counter(mt, "moerack_request_success_total",
                                                  "Requests finished, by reason", reasons[i]);
        s->h_ttft =
            mr_metrics_histogram(mt, "moerack_time_to_first_token_seconds", "Time to first token",
                                 NULL, mr_buckets_latency, MR_BUCKETS_LATENCY_N);
        s->h_itl =
            mr_metrics_histogram(mt, "moerack_inter_token_latency_seconds", "Time between tokens",
                                 NULL, mr_buckets_latency, MR_BUCKETS_LATENCY_N);
        s->h_e2e =
            mr_metrics_histogram(mt, "moerack_e2e_request_latency_seconds", "Arrival to last token",
                                 NULL, mr_buckets_latency, MR_BUCKETS_LATENCY_N);
        s->h_step = mr_metrics_histogram(mt, "moerack_step_seconds", "Time of one forward step",
                                         NULL, mr_buckets_latency, MR_BUCKETS_LATENCY_N);
        s->h_batch = mr_metrics_histogram(mt, "moerack_step_tokens", "Tokens per step (batch size)",
                                          NULL, mr_buckets_batch, MR_BUCKETS_BATCH_N);
    }
    if (pthread_create(&s->thread, NULL, sched_main, s) != 0) {
        free_buffers(s);
        free(s);
        return MR_ERR_NOMEM;
    }
    *out = s;
    return MR_OK;
}

void mr_scheduler_destroy(mr_scheduler *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free_buffers(s);
    free(s);
}
