#include "coordinator/engine.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/timeutil.h"

typedef struct job_node {
    mr_client_job *job;
    struct job_node *next;
} job_node;

struct mr_engine {
    mr_model *m;
    mr_cluster *cl;
    mr_dispatcher *d;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job_node *head, *tail;
    int stop;
};

static void reply_error(mr_engine *e, mr_client_job *job, mr_status code, const char *msg) {
    Moerack__Error err = MOERACK__ERROR__INIT;
    err.code = (uint32_t)code;
    err.message = (char *)msg;
    Moerack__GenerateReply rep = MOERACK__GENERATE_REPLY__INIT;
    rep.error = &err;
    Moerack__Envelope env = MOERACK__ENVELOPE__INIT;
    env.msg_case = MOERACK__ENVELOPE__MSG_GENERATE_REPLY;
    env.generate_reply = &rep;
    MR_LOG_WARN(MR_LOG_SCHED, "request failed: %s", msg);
    mr_cluster_reply(e->cl, job, &env);
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* Greedy generation for one request: prefill in chunks, then max_tokens decode steps. */
static void run_job(mr_engine *e, mr_client_job *job) {
    const Moerack__GenerateRequest *rq = job->env->generate_request;
    const mr_model_config *c = mr_model_config_of(e->m);
    const mr_model_params *mp = mr_model_params_of(e->m);
    char msg[600];
    if (rq->n_prompt == 0) {
        reply_error(e, job, MR_ERR_INVALID, "empty prompt");
        return;
    }
    for (size_t i = 0; i < rq->n_prompt; i++)
        if (rq->prompt[i] < 0 || rq->prompt[i] >= c->vocab_size) {
            snprintf(msg, sizeof msg, "prompt token %zu = %d is outside the vocabulary [0, %d)", i,
                     rq->prompt[i], c->vocab_size);
            reply_error(e, job, MR_ERR_INVALID, msg);
            return;
        }
    int64_t total = (int64_t)rq->n_prompt + rq->max_tokens + 1;
    if (rq->max_tokens > (1u << 20) || total > mp->max_context) {
        snprintf(msg, sizeof msg,
                 "prompt of %zu tokens + %u new tokens exceeds the context limit of %lld",
                 rq->n_prompt, rq->max_tokens, (long long)mp->max_context);
        reply_error(e, job, MR_ERR_INVALID, msg);
        return;
    }
    int uncovered = mr_dispatcher_refresh(e->d);
    if (uncovered) {
        snprintf(msg, sizeof msg,
                 "%d experts have no live worker; the cluster cannot serve (see moerack status)",
                 uncovered);
        reply_error(e, job, MR_ERR_CLOSED, msg);
        return;
    }
    mr_seq *seq = NULL;
    if (mr_model_seq_open(e->m, total, &seq) != MR_OK) {
        reply_error(e, job, MR_ERR_FULL, "no free sequence slot");
        return;
    }
    size_t rows = rq->want_logits ? rq->max_tokens + 1 : 1;
    float *logits = malloc(rows * (size_t)c->vocab_size * sizeof(float));
    int32_t *out = malloc((rq->max_tokens + 1) * sizeof(int32_t));
    mr_status st = (logits && out) ? MR_OK : MR_ERR_NOMEM;
    const int chunk = mp->max_batch_tokens;
    double t0 = mr_now_s();
    for (size_t i = 0; st == MR_OK && i < rq->n_prompt; i += (size_t)chunk) {
        int len = (int)(rq->n_prompt - i < (size_t)chunk ? rq->n_prompt - i : (size_t)chunk);
        mr_step_seq in = {seq, rq->prompt + i, len, i + (size_t)len == rq->n_prompt};
        st = mr_model_step(e->m, &in, 1, logits);
    }
    for (uint32_t g = 0; st == MR_OK && g < rq->max_tokens; g++) {
        float *row = logits + (rq->want_logits ? (size_t)g * c->vocab_size : 0);
        out[g] = argmax(row, c->vocab_size);
        float *next = logits + (rq->want_logits ? (size_t)(g + 1) * c->vocab_size : 0);
        mr_step_seq in = {seq, &out[g], 1, 1};
        st = mr_model_step(e->m, &in, 1, next);
    }
    mr_model_seq_close(e->m, seq);
    if (st != MR_OK) {
        const char *why = mr_dispatcher_last_error(e->d);
        snprintf(msg, sizeof msg, "generation failed: %s", why[0] ? why : mr_status_str(st));
        reply_error(e, job, st, msg);
    } else {
        Moerack__GenerateReply rep = MOERACK__GENERATE_REPLY__INIT;
        rep.n_tokens = rq->max_tokens;
        rep.tokens = out;
        rep.vocab_size = (uint32_t)c->vocab_size;
        if (rq->want_logits) {
            rep.logits.data = (uint8_t *)logits;
            rep.logits.len = rows * (size_t)c->vocab_size * sizeof(float);
        }
        Moerack__Envelope env = MOERACK__ENVELOPE__INIT;
        env.msg_case = MOERACK__ENVELOPE__MSG_GENERATE_REPLY;
        env.generate_reply = &rep;
        MR_LOG_INFO(MR_LOG_SCHED, "request: %zu prompt tokens, %u generated in %.3f s",
                    rq->n_prompt, rq->max_tokens, mr_now_s() - t0);
        mr_cluster_count_request(e->cl);
        mr_cluster_reply(e->cl, job, &env);
    }
    free(logits);
    free(out);
}

static void *engine_main(void *arg) {
    mr_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->head && !e->stop) pthread_cond_wait(&e->cv, &e->mu);
        if (e->stop) {
            pthread_mutex_unlock(&e->mu);
            return NULL;
        }
        job_node *n = e->head;
        e->head = n->next;
        if (!e->head) e->tail = NULL;
        pthread_mutex_unlock(&e->mu);
        run_job(e, n->job);
        free(n);
    }
}

void mr_engine_submit(void *engine, mr_client_job *job) {
    mr_engine *e = engine;
    job_node *n = malloc(sizeof *n);
    if (!n) {
        reply_error(e, job, MR_ERR_NOMEM, "out of memory");
        return;
    }
    n->job = job;
    n->next = NULL;
    pthread_mutex_lock(&e->mu);
    if (e->tail)
        e->tail->next = n;
    else
        e->head = n;
    e->tail = n;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

mr_status mr_engine_create(mr_model *m, mr_cluster *cl, mr_dispatcher *d, mr_engine **out) {
    mr_engine *e = calloc(1, sizeof *e);
    if (!e) return MR_ERR_NOMEM;
    e->m = m;
    e->cl = cl;
    e->d = d;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        free(e);
        return MR_ERR_NOMEM;
    }
    *out = e;
    return MR_OK;
}

void mr_engine_destroy(mr_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    while (e->head) {
        job_node *n = e->head;
        e->head = n->next;
        reply_error(e, n->job, MR_ERR_CLOSED, "coordinator shutting down");
        free(n);
    }
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}
