#include "coordinator/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

/* A control-plane GenerateRequest (greedy, optional logits rows) on its way through the
 * scheduler. Owned by the scheduler's callbacks until the final event, which replies and frees. */
typedef struct gen_job {
    mr_engine *e;
    mr_client_job *job;
    int32_t *tokens;
    float *logits; /* [max_tokens + 1][vocab] when requested */
    int n, vocab, want_logits;
} gen_job;

struct mr_engine {
    mr_model *m;
    mr_cluster *cl;
    mr_scheduler *sched;
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

static void on_event(void *user, const mr_gen_event *ev) {
    gen_job *g = user;
    if (ev->token >= 0) {
        g->tokens[g->n] = ev->token;
        if (g->want_logits && ev->logits)
            memcpy(g->logits + (size_t)g->n * g->vocab, ev->logits,
                   (size_t)g->vocab * sizeof(float));
        g->n++;
    }
    if (ev->finish == MR_FINISH_NONE) return;
    if (ev->finish == MR_FINISH_ERROR || ev->finish == MR_FINISH_CANCELLED) {
        char msg[600];
        snprintf(msg, sizeof msg, "generation failed: %s",
                 ev->error ? ev->error : mr_finish_reason_name(ev->finish));
        reply_error(g->e, g->job, MR_ERR_CLOSED, msg);
    } else {
        Moerack__GenerateReply rep = MOERACK__GENERATE_REPLY__INIT;
        /* with logits: one extra step was run, so its row exists; its token is not returned */
        rep.n_tokens = (size_t)(g->n - (g->want_logits && g->n > 0 ? 1 : 0));
        rep.tokens = g->tokens;
        rep.vocab_size = (uint32_t)g->vocab;
        if (g->want_logits) {
            rep.logits.data = (uint8_t *)g->logits;
            rep.logits.len = (size_t)g->n * g->vocab * sizeof(float);
        }
        Moerack__Envelope env = MOERACK__ENVELOPE__INIT;
        env.msg_case = MOERACK__ENVELOPE__MSG_GENERATE_REPLY;
        env.generate_reply = &rep;
        mr_cluster_count_request(g->e->cl);
        mr_cluster_reply(g->e->cl, g->job, &env);
    }
    free(g->tokens);
    free(g->logits);
    free(g);
}

void mr_engine_submit(void *engine, mr_client_job *job) {
    mr_engine *e = engine;
    const Moerack__GenerateRequest *rq = job->env->generate_request;
    const mr_model_config *c = mr_model_config_of(e->m);
    const mr_model_params *mp = mr_model_params_of(e->m);
    char msg[300];
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
    if (rq->max_tokens > (1u << 24) ||
        (int64_t)rq->n_prompt + rq->max_tokens + 2 > mp->max_context) {
        snprintf(msg, sizeof msg,
                 "prompt of %zu tokens + %u new tokens exceeds the context limit of %lld",
                 rq->n_prompt, rq->max_tokens, (long long)mp->max_context);
        reply_error(e, job, MR_ERR_INVALID, msg);
        return;
    }
    gen_job *g = calloc(1, sizeof *g);
    /* The client contract (moerack run) is max_tokens ids and max_tokens + 1 logits rows: one
     * more step than ids, so ask the scheduler for one token more and drop it from the ids. */
    int steps = (int)rq->max_tokens + (rq->want_logits ? 1 : 0);
    if (g) {
        g->e = e;
        g->job = job;
        g->vocab = c->vocab_size;
        g->want_logits = rq->want_logits;
        g->tokens = malloc(((size_t)steps + 1) * sizeof(int32_t));
        if (rq->want_logits)
            g->logits = malloc(((size_t)steps + 1) * (size_t)g->vocab * sizeof(float));
    }
    if (!g || !g->tokens || (rq->want_logits && !g->logits)) {
        if (g) {
            free(g->tokens);
            free(g->logits);
            free(g);
        }
        reply_error(e, job, MR_ERR_NOMEM, "out of memory");
        return;
    }
    mr_gen_request r = {.prompt = rq->prompt,
                        .n_prompt = (int)rq->n_prompt,
                        .max_tokens = steps,
                        .n_top_logprobs = -1,
                        .want_logits = rq->want_logits};
    mr_sampling_params_default(&r.sampling);
    r.sampling.temperature = 0; /* greedy: the control-plane request is the reference path */
    uint64_t id;
    mr_status st = mr_scheduler_submit(e->sched, &r, on_event, g, &id);
    if (st != MR_OK) {
        free(g->tokens);
        free(g->logits);
        free(g);
        reply_error(e, job, st,
                    st == MR_ERR_FULL ? "too many queued requests" : "request does not fit");
    }
}

mr_status mr_engine_create(mr_model *m, mr_cluster *cl, mr_scheduler *sched, mr_engine **out) {
    mr_engine *e = calloc(1, sizeof *e);
    if (!e) return MR_ERR_NOMEM;
    e->m = m;
    e->cl = cl;
    e->sched = sched;
    *out = e;
    return MR_OK;
}

void mr_engine_destroy(mr_engine *e) {
    free(e);
}
