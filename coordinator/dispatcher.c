#include "coordinator/dispatcher.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/arena.h"
#include "common/check.h"
#include "common/dtype.h"
#include "common/log.h"
#include "common/threadpool.h"
#include "common/timeutil.h"

/* What was sent to one worker for one micro-batch. At most one of active and got is set. */
typedef struct sent {
    int active;      /* a request is in flight: its reply is not read yet */
    int got;         /* its reply is read into wconn.reply[mb], not yet added by combine */
    int n;           /* tokens in it */
    int32_t *tokens; /* [max_tokens] token index (within the micro-batch) of each row */
    uint32_t seq;
    int layer;
    uint64_t t_sent;
} sent;

/* One worker's data connection. Invariant (see settle): a request goes to the worker only when
 * none of its replies is unread — or, where the transport reads ahead while sending (TCP), none
 * of the same micro-batch — so at most one request per micro-batch is ever in flight. */
typedef struct wconn {
    mr_xport_conn *conn;
    void *req;                          /* request payload buffer */
    float *reply[MR_MAX_MICRO_BATCHES]; /* [max_tokens][hidden] per micro-batch */
    sent mb[MR_MAX_MICRO_BATCHES];
} wconn;

/* The arguments of a micro-batch between dispatch and combine. */
typedef struct mb_call {
    int layer, n, k;
    const float *x;
    const int32_t *ids;
    const float *wts;
    int32_t *holder; /* [n][k] worker serving each slot, -1 if none */
} mb_call;

struct mr_dispatcher {
    mr_cluster *cl;
    const mr_placement *pl;
    const mr_xport_ops *x;
    int W, hidden, top_k, max_tokens, timeout_ms;
    mr_dp_dtype wire; /* activations out and replies back: f32, or bf16 (half the bytes) */
    wconn *w;
    mb_call calls[MR_MAX_MICRO_BATCHES];
    _Atomic uint32_t next_seq;
    /* Several workers' connections are served at once: a send (with its settle) or a receive per
     * worker runs as one task of `io` (NULL with one worker); each task touches only its worker's
     * wconn, and what follows from the results (drop, adding replies in worker order) is done
     * afterwards on the calling thread, so results do not depend on the interleaving. */
    mr_pool *io;
    mr_status *io_st;    /* [W] each task's result */
    char (*io_why)[200]; /* [W] its reason on failure */
    int io_mbi;          /* the micro-batch of the current run */
    const mb_call *io_call;
    float *io_out; /* combine: the sum being built */
    char last_error[512];
    _Atomic uint64_t *expert_tokens; /* [layers][experts] slots routed, read by /metrics */
};

static int live(mr_dispatcher *d, int w) {
    return d->w[w].conn != NULL && mr_cluster_worker_ready(d->cl, w);
}

static void forget(wconn *wc) {
    for (int i = 0; i < MR_MAX_MICRO_BATCHES; i++) wc->mb[i].active = wc->mb[i].got = 0;
}

static void drop(mr_dispatcher *d, int w, const char *why) {
    if (d->w[w].conn) d->x->close(d->w[w].conn);
    d->w[w].conn = NULL;
    forget(&d->w[w]);
    mr_cluster_worker_failed(d->cl, w, why);
}

int mr_dispatcher_refresh(mr_dispatcher *d) {
    d->last_error[0] = '\0';
    for (int w = 0; w < d->W; w++) {
        mr_xport_conn *p = mr_cluster_take_pending(d->cl, w);
        if (p) {
            if (d->w[w].conn) d->x->close(d->w[w].conn);
            d->w[w].conn = p;
            forget(&d->w[w]);
        }
    }
    int uncovered = 0;
    for (int l = 0; l < d->pl->n_layers; l++)
        for (int e = 0; e < d->pl->n_experts; e++) {
            int ok = 0;
            for (int w = 0; w < d->W && !ok; w++)
                ok = mr_placement_holds(d->pl, w, l, e) && live(d, w);
            uncovered += !ok;
        }
    return uncovered;
}

/* Chooses a live holder for (layer, expert), skipping `exclude`; -1 if none. */
static int pick_holder(mr_dispatcher *d, int layer, int e, int exclude) {
    for (int w = 0; w < d->W; w++)
        if (w != exclude && mr_placement_holds(d->pl, w, layer, e) && live(d, w)) return w;
    return -1;
}

/* Reads worker w's reply to its request for micro-batch mbi (active) into wc->reply[mbi]
 * (got). */
static mr_status recv_from(mr_dispatcher *d, int w, int mbi, char *why, size_t cap) {
    wconn *wc = &d->w[w];
    sent *s = &wc->mb[mbi];
    mr_dp_header h;
    mr_status st = d->x->recv(wc->conn, &h, wc->reply[mbi], (size_t)d->max_tokens * d->hidden * 4,
                              d->timeout_ms);
    if (st != MR_OK) {
        snprintf(why, cap, "%s",
                 st == MR_ERR_TIMEOUT ? "no answer within expert_timeout_ms"
                 : st == MR_ERR_PROTO ? "malformed reply"
                                      : "connection lost");
        return st;
    }
    if (h.kind == MR_DP_ERROR) {
        snprintf(why, cap, "worker reported an error");
        return MR_ERR_PROTO;
    }
    mr_dp_limits lim = {(uint32_t)d->pl->n_layers, (uint32_t)d->max_tokens, (uint32_t)d->top_k,
                        (uint32_t)d->hidden, (uint64_t)d->max_tokens * d->hidden * 4};
    char hwhy[120] = "fields differ";
    if (mr_dp_header_check(&h, &lim, 1u << MR_DP_REPLY, hwhy, sizeof hwhy) != MR_OK ||
        h.seq != s->seq || h.micro_batch != mbi || h.layer != s->layer || (int)h.n_tokens != s->n ||
        h.dtype != d->wire) {
        snprintf(why, cap, "reply does not match its request (%.120s)", hwhy);
        return MR_ERR_PROTO;
    }
    mr_cluster_record_rtt(d->cl, w, (double)(mr_now_ns() - s->t_sent) / 1000.0);
    s->active = 0;
    s->got = 1;
    return MR_OK;
}

/* Reads the replies worker w still owes before micro-batch mbi's request goes out: a worker
 * answers its requests in order and does not read the next one while its reply is still being
 * written, so a request sent while a reply is unread can wait on that reply, and the reply on
 * this thread, for ever, once both are larger than what the transport buffers (TCP's kernel
 * socket buffers are a few MB; prefill chunks of thousands of tokens are tens of MB) — unless the
 * transport reads the peer's message while its send waits (`buffered`: TCP's read-ahead holds one
 * whole message). Then only mbi's own reply, if any, is read first (none in the step's order), and
 * the other micro-batch's reply may still be on its way: at most one request per micro-batch in
 * flight, and the worker's next request crosses its reply instead of waiting for it. */
static mr_status settle(mr_dispatcher *d, int w, int mbi, char *why, size_t cap) {
    const int reads_ahead = d->x->buffered != NULL;
    for (int i = 0; i < MR_MAX_MICRO_BATCHES; i++)
        if (d->w[w].mb[i].active && (!reads_ahead || i == mbi))
            MR_CHECK(recv_from(d, w, i, why, cap));
    return MR_OK;
}

/* Sends worker w the slots of `call` whose holder is w, once w owes no reply (settle). */
static mr_status send_to(mr_dispatcher *d, int w, int mbi, const mb_call *call, char *why,
                         size_t cap) {
    wconn *wc = &d->w[w];
    sent *s = &wc->mb[mbi];
    const int k = call->k, H = d->hidden;
    MR_CHECK(settle(d, w, mbi, why, cap));
    /* a reply of this micro-batch that was never combined (its step failed midway) is stale */
    s->got = 0;
    int n = 0;
    for (int t = 0; t < call->n; t++) {
        int any = 0;
        for (int j = 0; j < k; j++) any |= call->holder[t * k + j] == w;
        if (any) s->tokens[n++] = t;
    }
    if (n == 0) return MR_OK;
    int32_t *ids = wc->req;
    float *wts = (float *)(ids + (size_t)n * k), *x = wts + (size_t)n * k;
    uint16_t *xb = (uint16_t *)(void *)x;
    for (int i = 0; i < n; i++) {
        int t = s->tokens[i];
        for (int j = 0; j < k; j++) {
            int mine = call->holder[t * k + j] == w;
            ids[i * k + j] = mine ? call->ids[t * k + j] : -1;
            wts[i * k + j] = mine ? call->wts[t * k + j] : 0.0f;
        }
        const float *row = call->x + (size_t)t * H;
        if (d->wire == MR_DP_BF16)
            mr_convert_f32_to_bf16(row, xb + (size_t)i * H, (size_t)H);
        else
            memcpy(x + (size_t)i * H, row, (size_t)H * sizeof(float));
    }
    mr_dp_header h;
    mr_dp_header_init(&h, MR_DP_REQUEST);
    h.layer = (uint16_t)call->layer;
    h.micro_batch = (uint16_t)mbi;
    h.seq = s->seq = atomic_fetch_add(&d->next_seq, 1) + 1;
    s->layer = call->layer;
    h.n_tokens = (uint32_t)n;
    h.top_k = (uint16_t)k;
    h.dtype = (uint16_t)d->wire;
    h.hidden = (uint32_t)H;
    h.payload_bytes = mr_dp_request_bytes((uint32_t)n, (uint32_t)k, (uint32_t)H, d->wire);
    s->t_sent = mr_now_ns();
    mr_status st = d->x->send(wc->conn, &h, wc->req);
    if (st != MR_OK) {
        snprintf(why, cap, "sending an expert batch failed");
        return st;
    }
    s->active = 1;
    s->n = n;
    return MR_OK;
}

/* Adds the rows of worker w's reply for micro-batch mbi (got) whose tokens lie in [t0, t1) into
 * out. A reply's rows are in token order (send_to collects them so), so the range is found by
 * bisection. */
static void add_reply_range(const mr_dispatcher *d, int w, int mbi, int t0, int t1, float *out) {
    const sent *s = &d->w[w].mb[mbi];
    const int H = d->hidden;
    int lo = 0, hi = s->n;
    while (lo < hi) { /* first row with token >= t0 */
        const int mid = (lo + hi) / 2;
        if (s->tokens[mid] < t0)
            lo = mid + 1;
        else
            hi = mid;
    }
    const float *rf = d->w[w].reply[mbi];
    const uint16_t *rb = (const uint16_t *)(const void *)rf;
    for (int i = lo; i < s->n && s->tokens[i] < t1; i++) {
        float *o = out + (size_t)s->tokens[i] * H;
        if (d->wire == MR_DP_BF16)
            for (int c = 0; c < H; c++) o[c] += mr_bf16_to_f32(rb[(size_t)i * H + c]);
        else
            for (int c = 0; c < H; c++) o[c] += rf[(size_t)i * H + c];
    }
}

enum {
    SUM_CHUNK_TOKENS = 64
}; /* tokens per task of the reply sum: 64 rows x 6144 floats, 1.5 MB */

/* One task of the reply sum: the tokens of chunk `task`, each worker's rows added in worker
 * order — the order (and so every bit) of a single-threaded sum, whatever the chunking. */
static void sum_task(void *ctx, int task, int thread) {
    (void)thread;
    mr_dispatcher *d = ctx;
    const mb_call *call = d->io_call;
    const int t0 = task * SUM_CHUNK_TOKENS,
              t1 = t0 + SUM_CHUNK_TOKENS < call->n ? t0 + SUM_CHUNK_TOKENS : call->n;
    for (int w = 0; w < d->W; w++)
        if (d->w[w].mb[d->io_mbi].got) add_reply_range(d, w, d->io_mbi, t0, t1, d->io_out);
}

/* Adds every reply read for micro-batch mbi (got) into out, over the io pool for large batches;
 * the replies are then consumed. */
static void add_replies(mr_dispatcher *d, int mbi, const mb_call *call, float *out) {
    d->io_mbi = mbi;
    d->io_call = call;
    d->io_out = out;
    const int tasks = (call->n + SUM_CHUNK_TOKENS - 1) / SUM_CHUNK_TOKENS;
    if (d->io && tasks > 1)
        mr_pool_run(d->io, sum_task, d, tasks);
    else
        for (int t = 0; t < tasks; t++) sum_task(d, t, 0);
    for (int w = 0; w < d->W; w++) d->w[w].mb[mbi].got = 0;
}

#define SLOT_DONE (-2) /* holder value of a slot whose contribution is already in `out` */

/* Gives every pending slot whose holder is gone a live holder; fails if one has none. */
static mr_status assign_pending(mr_dispatcher *d, mb_call *call) {
    for (int i = 0; i < call->n * call->k; i++) {
        int h = call->holder[i];
        if (h == SLOT_DONE || (h >= 0 && live(d, h))) continue;
        int w = pick_holder(d, call->layer, call->ids[i], -1);
        if (w < 0) {
            snprintf(d->last_error, sizeof d->last_error,
                     "layer %d expert %d has no live holder (its workers are down)", call->layer,
                     call->ids[i]);
            MR_LOG_ERROR(MR_LOG_SCHED, "%s", d->last_error);
            return MR_ERR_CLOSED;
        }
        call->holder[i] = w;
    }
    return MR_OK;
}

/* Runs fn(d, w) for every worker, concurrently over the io pool where there is one. */
static void io_each(mr_dispatcher *d, mr_pool_fn fn) {
    if (d->io)
        mr_pool_run(d->io, fn, d, d->W);
    else
        for (int w = 0; w < d->W; w++) fn(d, w, 0);
}

static void send_task(void *ctx, int w, int thread) {
    (void)thread;
    mr_dispatcher *d = ctx;
    d->io_st[w] = MR_OK;
    d->io_why[w][0] = '\0';
    if (d->w[w].conn)
        d->io_st[w] = send_to(d, w, d->io_mbi, d->io_call, d->io_why[w], sizeof d->io_why[w]);
}

/* Sends each live worker its pending slots (the workers at once); a worker whose send fails is
 * dropped and its slots stay pending (assign_pending moves them). */
static void send_round(mr_dispatcher *d, int mbi, const mb_call *call) {
    d->io_mbi = mbi;
    d->io_call = call;
    io_each(d, send_task);
    for (int w = 0; w < d->W; w++) {
        if (d->io_st[w] == MR_OK) continue;
        char msg[300];
        snprintf(msg, sizeof msg, "expert batch for layer %d: %s", call->layer, d->io_why[w]);
        drop(d, w, msg);
    }
}

static void recv_task(void *ctx, int w, int thread) {
    (void)thread;
    mr_dispatcher *d = ctx;
    sent *s = &d->w[w].mb[d->io_mbi];
    d->io_st[w] = MR_OK;
    d->io_why[w][0] = '\0';
    if (s->active && d->w[w].conn)
        d->io_st[w] = recv_from(d, w, d->io_mbi, d->io_why[w], sizeof d->io_why[w]);
}

static mr_status do_dispatch(void *ctx, int layer, int mbi, const float *x, int n, int k,
                             const int32_t *ids, const float *wts) {
    mr_dispatcher *d = ctx;
    mb_call *call = &d->calls[mbi];
    *call = (mb_call){layer, n, k, x, ids, wts, call->holder};
    for (int i = 0; i < n * k; i++) {
        call->holder[i] = -1;
        if (ids[i] >= 0 && ids[i] < d->pl->n_experts)
            atomic_fetch_add_explicit(&d->expert_tokens[(size_t)layer * d->pl->n_experts + ids[i]],
                                      1, memory_order_relaxed);
    }
    MR_CHECK(assign_pending(d, call));
    send_round(d, mbi, call);
    return MR_OK;
}

/* Collects the replies; slots of a worker that failed are redone on other holders, in rounds,
 * until every slot is in `out` or one has no live holder left. */
static mr_status do_combine(void *ctx, int layer, int mbi, float *out) {
    mr_dispatcher *d = ctx;
    mb_call *call = &d->calls[mbi];
    const int k = call->k;
    memset(out, 0, (size_t)call->n * d->hidden * sizeof(float));
    for (int round = 0; round <= d->W; round++) {
        d->io_mbi = mbi;
        io_each(d, recv_task); /* the workers' replies read at once; added below in worker order */
        for (int w = 0; w < d->W; w++) {
            sent *s = &d->w[w].mb[mbi];
            if (!s->active && !s->got) continue;
            if (!d->w[w].conn || d->io_st[w] != MR_OK) {
                char msg[300];
                snprintf(msg, sizeof msg, "expert batch for layer %d: %s", layer,
                         d->io_why[w][0] ? d->io_why[w] : "connection lost");
                drop(d, w, msg); /* forgets its reply: not added */
                continue;
            }
            for (int i = 0; i < s->n; i++)
                for (int j = 0; j < k; j++)
                    if (call->holder[s->tokens[i] * k + j] == w)
                        call->holder[s->tokens[i] * k + j] = SLOT_DONE;
        }
        add_replies(d, mbi, call, out);
        int pending = 0;
        for (int i = 0; i < call->n * k; i++) pending += call->holder[i] != SLOT_DONE;
        if (!pending) return MR_OK;
        MR_CHECK(assign_pending(d, call));
        MR_LOG_WARN(MR_LOG_SCHED, "layer %d: redoing %d expert slots on other holders", layer,
                    pending);
        send_round(d, mbi, call);
    }
    snprintf(d->last_error, sizeof d->last_error, "layer %d: expert batch failed on every holder",
             layer);
    return MR_ERR_CLOSED;
}

const char *mr_dispatcher_last_error(const mr_dispatcher *d) {
    return d->last_error;
}

mr_moe_provider mr_dispatcher_provider(mr_dispatcher *d) {
    return (mr_moe_provider){do_dispatch, do_combine, d};
}

void mr_dispatcher_destroy(mr_dispatcher *d) {
    if (!d) return;
    for (int w = 0; d->w && w < d->W; w++) {
        if (d->w[w].conn) d->x->close(d->w[w].conn);
        mr_free_aligned(d->w[w].req);
        for (int i = 0; i < MR_MAX_MICRO_BATCHES; i++) {
            mr_free_aligned(d->w[w].reply[i]);
            free(d->w[w].mb[i].tokens);
        }
    }
    for (int i = 0; i < MR_MAX_MICRO_BATCHES; i++) free(d->calls[i].holder);
    mr_pool_destroy(d->io);
    free(d->io_st);
    free(d->io_why);
    free(d->w);
    free((void *)d->expert_tokens);
    free(d);
}

mr_status mr_dispatcher_create(mr_cluster *cl, const mr_placement *pl, const mr_model_config *mc,
                               int max_tokens, int expert_timeout_ms, mr_dp_dtype wire,
                               mr_dispatcher **out) {
    mr_dispatcher *d = calloc(1, sizeof *d);
    if (!d) return MR_ERR_NOMEM;
    d->cl = cl;
    d->pl = pl;
    d->x = mr_cluster_xport(cl);
    d->W = mr_cluster_n_workers(cl);
    d->hidden = mc->hidden_size;
    d->top_k = mc->num_experts_per_tok;
    d->max_tokens = max_tokens;
    d->timeout_ms = expert_timeout_ms;
    d->wire = wire;
    int ok =
        (d->w = calloc((size_t)d->W, sizeof *d->w)) != NULL &&
        (d->expert_tokens = calloc((size_t)pl->n_layers * pl->n_experts, sizeof(uint64_t))) != NULL;
    size_t req = (size_t)mr_dp_request_bytes((uint32_t)max_tokens, (uint32_t)d->top_k,
                                             (uint32_t)d->hidden, MR_DP_F32);
    for (int w = 0; ok && w < d->W; w++) {
        ok = (d->w[w].req = mr_alloc_aligned(req)) != NULL;
        for (int i = 0; ok && i < MR_MAX_MICRO_BATCHES; i++)
            ok = (d->w[w].reply[i] = mr_alloc_aligned((size_t)max_tokens * d->hidden * 4)) &&
                 (d->w[w].mb[i].tokens = malloc((size_t)max_tokens * sizeof(int32_t))) != NULL;
    }
    for (int i = 0; ok && i < MR_MAX_MICRO_BATCHES; i++)
        ok = (d->calls[i].holder = malloc((size_t)max_tokens * d->top_k * sizeof(int32_t))) != NULL;
    ok = ok && (d->io_st = calloc((size_t)d->W, sizeof *d->io_st)) != NULL &&
         (d->io_why = calloc((size_t)d->W, sizeof *d->io_why)) != NULL;
    /* one thread per worker connection (the caller is one of them), at most 8 */
    if (ok && d->W > 1) ok = mr_pool_create(d->W < 8 ? d->W : 8, &d->io) == MR_OK;
    if (!ok) {
        mr_dispatcher_destroy(d);
        return MR_ERR_NOMEM;
    }
    *out = d;
    return MR_OK;
}

void mr_dispatcher_metrics(mr_dispatcher *d, char **text, size_t *len) {
    size_t n = (size_t)d->pl->n_layers * d->pl->n_experts;
    size_t cap = *len + 128 + n * 72;
    char *t = realloc(*text, cap);
    if (!t) return;
    *text = t;
    *len +=
        (size_t)snprintf(t + *len, cap - *len,
                         "# HELP moerack_expert_tokens_total Token slots routed to each expert\n"
                         "# TYPE moerack_expert_tokens_total counter\n");
    for (int l = 0; l < d->pl->n_layers; l++)
        for (int e = 0; e < d->pl->n_experts; e++)
            *len += (size_t)snprintf(
                t + *len, cap - *len,
                "moerack_expert_tokens_total{layer=\"%d\",expert=\"%d\"} %llu\n", l, e,
                (unsigned long long)atomic_load_explicit(
                    &d->expert_tokens[(size_t)l * d->pl->n_experts + e], memory_order_relaxed));
}
