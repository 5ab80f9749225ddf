#include "worker/worker.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/arena.h"
#include "common/check.h"
#include "common/checkpoint.h"
#include "common/config_table.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "kernels/backend.h"
#include "proto/frame.h"
#include "proto/sock.h"
#include "proto/xport.h"
#include "worker/expert_store.h"
#include "worker/rx_pool.h"

#define DATA_POLL_MS 200

/* LoadProgress reporting on the control connection while an assignment loads. */
typedef struct progress_ctx {
    int fd;
    double last;
    Moerack__LoadPhase phase;
} progress_ctx;

/* The assignment being served. Replaced as a whole under `lock` (write) by the control thread;
 * read by the data thread under `lock` (read) for the length of one batch. */
typedef struct serving {
    mr_ckpt *ck;
    mr_expert_store *store;
    mr_backend *be;
    unsigned char *held; /* [layers][experts] */
    int n_layers, n_experts, hidden, inter, top_k, max_tokens;
    uint32_t epoch; /* the coordinator's data connection must present this */
    void *req_buf, *reply_buf;
    size_t req_cap, reply_cap;
    progress_ctx progress; /* the backend's progress_user: lives as long as the backend */
} serving;

struct mr_worker {
    const mr_cluster_config *cc;
    const mr_worker_conf *conf;
    char coord_host[128];
    int coord_port;
    const mr_xport_ops *xport;
    mr_xport_listener *listener;
    mr_rx_pool *rx; /* receive regions of the data connections (rdma) */
    char data_endpoint[160];
    pthread_t data_thread;
    int data_thread_started;
    int busy_poll; /* rdma with cluster.rdma_busy_poll: the data thread spins */
    atomic_int stop;
    pthread_rwlock_t lock;
    serving *cur; /* NULL until assigned */
    /* stats, written by the data thread */
    atomic_ullong batches, tokens, busy_ns;
};

static void serving_free(serving *s) {
    if (!s) return;
    mr_backend_destroy(s->be);
    mr_expert_store_free(s->store);
    mr_ckpt_close(s->ck);
    free(s->held);
    mr_free_aligned(s->req_buf);
    mr_free_aligned(s->reply_buf);
    free(s);
}

/* ---- data plane ------------------------------------------------------------------------------ */

static void send_dp_error(mr_worker *w, mr_xport_conn *c, const char *msg) {
    mr_dp_header h;
    mr_dp_header_init(&h, MR_DP_ERROR);
    h.payload_bytes = strlen(msg);
    (void)w->xport->send(c, &h, msg);
}

/* Validates one request's expert ids and weights against what this worker holds. */
static int check_routes(const serving *s, const mr_dp_header *h, const int32_t *ids,
                        const float *wts, char *why, size_t cap) {
    const size_t n = (size_t)h->n_tokens * h->top_k;
    for (size_t i = 0; i < n; i++) {
        int e = ids[i];
        if (e == -1) continue;
        if (e < 0 || e >= s->n_experts) {
            snprintf(why, cap, "expert id %d out of range [0, %d) at slot %zu", e, s->n_experts, i);
            return -1;
        }
        if (!s->held[(size_t)h->layer * s->n_experts + (size_t)e]) {
            snprintf(why, cap, "layer %u expert %d is not held by this worker", h->layer, e);
            return -1;
        }
        if (!isfinite(wts[i])) {
            snprintf(why, cap, "gate weight at slot %zu is not finite", i);
            return -1;
        }
    }
    return 0;
}

#define MAX_DATA_CONNS 8
#define HELLO_WAIT_MS  2000

/* A data connection: authenticated once its hello presented the current epoch. */
typedef struct data_conn {
    mr_xport_conn *c;
    uint32_t epoch; /* 0 until the hello */
    double opened;
} data_conn;

static void reject(mr_worker *w, data_conn *d, const char *why) {
    MR_LOG_ERROR(MR_LOG_NET, "data connection from %s: protocol error: %s; closing",
                 w->xport->peer(d->c), why);
    send_dp_error(w, d->c, why);
    w->xport->close(d->c);
    d->c = NULL;
}

/* The first message of a connection must be HELLO with the current assignment's epoch. */
static void serve_hello(mr_worker *w, data_conn *d) {
    mr_dp_header h;
    char why[256];
    mr_status st = w->xport->recv(d->c, &h, NULL, 0, 0);
    if (st == MR_ERR_TIMEOUT) return;
    if (st != MR_OK) {
        reject(w, d,
               st == MR_ERR_PROTO ? "bad header before hello" : "connection closed before hello");
        return;
    }
    mr_dp_limits lim = {1, 1, 1, 1, 0};
    if (mr_dp_header_check(&h, &lim, 1u << MR_DP_HELLO, why, sizeof why) != MR_OK) {
        reject(w, d, why);
        return;
    }
    pthread_rwlock_rdlock(&w->lock);
    uint32_t epoch = w->cur ? w->cur->epoch : 0;
    pthread_rwlock_unlock(&w->lock);
    if (!epoch || h.seq != epoch) {
        snprintf(why, sizeof why, "hello for assignment epoch %u, current is %u", h.seq, epoch);
        reject(w, d, why);
        return;
    }
    d->epoch = epoch;
    MR_LOG_INFO(MR_LOG_NET, "data connection from %s (epoch %u): requests land in %s",
                w->xport->peer(d->c), epoch,
                w->xport->conn_label ? w->xport->conn_label(d->c, 0) : w->xport->label);
}

/* Receives the next message: zero-copy where the transport can (the payload stays in the
 * connection's region or host slot until released), else copied into s->req_buf. */
static mr_status recv_request(mr_worker *w, data_conn *d, serving *s, mr_xport_msg *m) {
    if (w->xport->recv_zc) return w->xport->recv_zc(d->c, m, 0);
    mr_status st = w->xport->recv(d->c, &m->h, s->req_buf, s->req_cap, 0);
    m->payload = s->req_buf;
    m->in_region = 0;
    return st;
}

/* Runs the experts on a request whose routing (ids, wts) is already validated in host memory and
 * whose activations lie at xin: in s->req_buf, a host slot or host region of the transport, or
 * device memory (pc on the device: the NIC wrote them into the GPU). Writes the reply payload. */
static mr_status run_request(serving *s, const mr_dp_header *h, const mr_rx_piece *pc,
                             const void *xin, const int32_t *ids, const float *wts) {
    const size_t n = h->n_tokens,
                 xbytes = (size_t)mr_dp_request_bytes(h->n_tokens, h->top_k, h->hidden, h->dtype) -
                          n * h->top_k * 8;
    const mr_expert_set *set = mr_expert_store_layer(s->store, h->layer);
    if (mr_rx_piece_on_device(pc)) {
        if (h->dtype == MR_DP_F32 && (uintptr_t)xin % 16 == 0)
            return mr_rx_piece_moe(pc, s->be, set, xin, (int)n, (int)h->top_k, ids, wts,
                                   s->reply_buf);
        /* bf16 or misaligned activations: down to the host, then the host path */
        void *xh = (uint8_t *)s->req_buf + n * h->top_k * 8;
        MR_CHECK(mr_rx_piece_read(pc, xin, xh, xbytes));
        xin = xh;
    }
    if (h->dtype == MR_DP_BF16 && s->be->ops->moe_io) { /* converted where the experts run */
        s->be->ops->moe_io(s->be, set, xin, (int)n, (int)h->top_k, ids, wts, s->reply_buf,
                           MR_DTYPE_BF16);
        return MR_OK;
    }
    const float *x = xin;
    if (h->dtype == MR_DP_BF16) { /* widen into the second half of the reply buffer */
        float *xf = (float *)s->reply_buf + n * s->hidden;
        mr_convert_to_f32(MR_DTYPE_BF16, xin, xf, n * s->hidden);
        x = xf;
    }
    s->be->ops->moe(s->be, set, x, (int)n, (int)h->top_k, ids, wts, s->reply_buf);
    if (h->dtype == MR_DP_BF16) /* the reply in the request's dtype, narrowed in place */
        mr_convert_f32_to_bf16(s->reply_buf, s->reply_buf, n * s->hidden);
    return MR_OK;
}

/* One request on an authenticated connection: validate, compute, reply. */
static void serve_request(mr_worker *w, data_conn *d) {
    const char *peer = w->xport->peer(d->c);
    mr_xport_msg m;
    char why[256];
    pthread_rwlock_rdlock(&w->lock);
    serving *s = w->cur;
    if (!s || s->epoch != d->epoch) {
        pthread_rwlock_unlock(&w->lock);
        MR_LOG_INFO(MR_LOG_NET, "assignment changed; closing the data connection from %s", peer);
        w->xport->close(d->c);
        d->c = NULL;
        return;
    }
    mr_status st = recv_request(w, d, s, &m);
    if (st == MR_ERR_TIMEOUT) {
        pthread_rwlock_unlock(&w->lock);
        return;
    }
    if (st != MR_OK) {
        pthread_rwlock_unlock(&w->lock);
        if (st == MR_ERR_PROTO) {
            reject(w, d, "bad header, oversized or truncated payload");
        } else {
            MR_LOG_INFO(MR_LOG_NET, "data connection from %s ended (%s)", peer, mr_status_str(st));
            w->xport->close(d->c);
            d->c = NULL;
        }
        return;
    }
    const mr_dp_header h = m.h;
    mr_dp_limits lim = {(uint32_t)s->n_layers, (uint32_t)s->max_tokens, (uint32_t)s->top_k,
                        (uint32_t)s->hidden, s->req_cap};
    if (mr_dp_header_check(&h, &lim, 1u << MR_DP_REQUEST, why, sizeof why) != MR_OK) {
        pthread_rwlock_unlock(&w->lock);
        reject(w, d, why);
        return;
    }
    /* The routing is validated and used from this process's own copy: a payload received in
     * place can still be written by the peer (RDMA), so what is checked must not be read from
     * there again. The activations are used where they landed (bad values give bad numbers,
     * never a bad access). */
    const size_t meta = (size_t)h.n_tokens * h.top_k * 8;
    const mr_rx_piece *pc =
        m.in_region ? mr_rx_pool_find(w->rx, m.payload, (size_t)h.payload_bytes) : NULL;
    st = m.in_region && !pc ? MR_ERR_INTERNAL : MR_OK; /* a region the pool did not give */
    if (st == MR_OK && m.payload != s->req_buf)
        st = mr_rx_piece_read(pc, m.payload, s->req_buf, meta);
    const int32_t *ids = s->req_buf;
    const float *wts = (const float *)(ids + (size_t)h.n_tokens * h.top_k);
    if (st != MR_OK || check_routes(s, &h, ids, wts, why, sizeof why) != 0) {
        pthread_rwlock_unlock(&w->lock);
        reject(w, d, st != MR_OK ? "cannot read the request where it landed" : why);
        return;
    }
    uint64_t t0 = mr_now_ns();
    st = run_request(s, &h, pc, (const uint8_t *)m.payload + meta, ids, wts);
    atomic_fetch_add(&w->busy_ns, mr_now_ns() - t0);
    /* the payload is consumed: its slot goes back before the reply may wait for a credit */
    if (st == MR_OK && w->xport->release) st = w->xport->release(d->c, &m);
    if (st != MR_OK) {
        pthread_rwlock_unlock(&w->lock);
        MR_LOG_ERROR(MR_LOG_NET, "data connection from %s: request failed (%s); closing", peer,
                     mr_status_str(st));
        w->xport->close(d->c);
        d->c = NULL;
        return;
    }
    mr_dp_header r;
    mr_dp_header_init(&r, MR_DP_REPLY);
    r.layer = h.layer;
    r.micro_batch = h.micro_batch;
    r.seq = h.seq;
    r.n_tokens = h.n_tokens;
    r.top_k = h.top_k;
    r.hidden = h.hidden;
    r.dtype = h.dtype;
    r.payload_bytes = mr_dp_reply_bytes(h.n_tokens, h.hidden, (mr_dp_dtype)h.dtype);
    st = w->xport->send(d->c, &r, s->reply_buf);
    pthread_rwlock_unlock(&w->lock);
    if (st != MR_OK) {
        MR_LOG_INFO(MR_LOG_NET, "data connection from %s: reply failed (%s)", peer,
                    mr_status_str(st));
        w->xport->close(d->c);
        d->c = NULL;
        return;
    }
    atomic_fetch_add(&w->batches, 1);
    atomic_fetch_add(&w->tokens, h.n_tokens);
}

/* The data thread: accepts connections and serves whichever has a message, so a misbehaving
 * peer costs only its own connection (a hello must come within HELLO_WAIT_MS). */
static void *data_main(void *arg) {
    mr_worker *w = arg;
    data_conn conns[MAX_DATA_CONNS] = {{0}};
    while (!atomic_load(&w->stop)) {
        struct pollfd pf[MAX_DATA_CONNS + 1];
        int map[MAX_DATA_CONNS + 1], n = 0;
        pf[n] = (struct pollfd){w->xport->listener_fd(w->listener), POLLIN, 0};
        map[n++] = -1;
        double now = mr_now_s();
        for (int i = 0; i < MAX_DATA_CONNS; i++) {
            if (!conns[i].c) continue;
            if (!conns[i].epoch && now - conns[i].opened > HELLO_WAIT_MS / 1000.0) {
                reject(w, &conns[i], "no hello in time");
                continue;
            }
            pf[n] = (struct pollfd){w->xport->conn_fd(conns[i].c), POLLIN, 0};
            map[n++] = i;
        }
        /* a message the transport already read ahead (while sending), or one written straight
         * into busy-polled slots, is not on the fd */
        int ahead = 0;
        for (int j = 1; j < n; j++)
            ahead |= w->xport->buffered && w->xport->buffered(conns[map[j]].c);
        /* busy-polled rdma connections are spun on, not slept on (xport.h: buffered) */
        const int spin = w->busy_poll && n > 1;
        const int rc = poll(pf, (nfds_t)n, ahead || spin ? 0 : DATA_POLL_MS);
        if (rc < 0 || (rc == 0 && !ahead)) {
            if (spin) sched_yield();
            continue;
        }
        for (int j = 1; j < n; j++) {
            const int buffered = w->xport->buffered && w->xport->buffered(conns[map[j]].c);
            if (!buffered && !(pf[j].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            data_conn *d = &conns[map[j]];
            if (!d->epoch)
                serve_hello(w, d);
            else
                serve_request(w, d);
        }
        if (pf[0].revents & POLLIN) {
            mr_xport_conn *c;
            if (w->xport->accept(w->listener, 0, &c) != MR_OK) continue;
            int slot = -1;
            for (int i = 0; i < MAX_DATA_CONNS && slot < 0; i++)
                if (!conns[i].c) slot = i;
            if (slot < 0) { /* full: the oldest unauthenticated one goes, else the newcomer */
                for (int i = 0; i < MAX_DATA_CONNS && slot < 0; i++)
                    if (!conns[i].epoch) slot = i;
                if (slot >= 0) reject(w, &conns[slot], "too many data connections");
            }
            if (slot < 0) {
                MR_LOG_WARN(MR_LOG_NET, "data listener: too many connections; refusing %s",
                            w->xport->peer(c));
                w->xport->close(c);
                continue;
            }
            conns[slot] = (data_conn){c, 0, mr_now_s()};
        }
    }
    for (int i = 0; i < MAX_DATA_CONNS; i++)
        if (conns[i].c) w->xport->close(conns[i].c);
    return NULL;
}

/* ---- control plane --------------------------------------------------------------------------- */

static mr_status send_env(int fd, Moerack__Envelope *env) {
    return mr_frame_send(fd, env, 5000);
}

static mr_status send_hello(mr_worker *w, int fd) {
    Moerack__Capabilities caps = MOERACK__CAPABILITIES__INIT;
    char *backends[] = {"cpu", "ref"};
    char *transports[] = {"tcp"};
    char device[64];
    long threads = w->conf->threads > 0 ? w->conf->threads : sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(device, sizeof device, "cpu: %ld threads", threads);
    char *devices[] = {device};
    caps.n_backends = 2;
    caps.backends = backends;
    caps.n_devices = 1;
    caps.devices = devices;
    caps.n_transports = 1;
    caps.transports = transports;
    caps.memory_bytes = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
    if (w->conf->memory_limit_mb) caps.memory_bytes = (uint64_t)w->conf->memory_limit_mb << 20;
    Moerack__Hello hello = MOERACK__HELLO__INIT;
    hello.proto_major = MR_PROTO_MAJOR;
    hello.proto_minor = MR_PROTO_MINOR;
    hello.role = MOERACK__ROLE__ROLE_WORKER;
    hello.node_name = (char *)w->conf->name;
    hello.caps = &caps;
    hello.data_endpoint = w->data_endpoint;
    Moerack__Envelope env = MOERACK__ENVELOPE__INIT;
    env.msg_case = MOERACK__ENVELOPE__MSG_HELLO;
    env.hello = &hello;
    return send_env(fd, &env);
}

static void on_progress(void *user, int done, int total, size_t bytes) {
    progress_ctx *p = user;
    double now = mr_now_s();
    if (done != total && now - p->last < 0.2) return;
    p->last = now;
    Moerack__LoadProgress lp = MOERACK__LOAD_PROGRESS__INIT;
    lp.experts_loaded = (uint32_t)done;
    lp.experts_total = (uint32_t)total;
    lp.bytes_loaded = bytes;
    lp.phase = p->phase;
    Moerack__Envelope env = MOERACK__ENVELOPE__INIT;
    env.msg_case = MOERACK__ENVELOPE__MSG_LOAD_PROGRESS;
    env.load_progress = &lp;
    (void)send_env(p->fd, &env);
}

static size_t data_max_payload(const mr_cluster_config *cc);

/* Builds a serving object for an Assign: opens the checkpoint, checks the experts' memory need
 * against the limit, loads exactly the assigned experts, creates the backend and buffers. */
static mr_status build_serving(mr_worker *w, const Moerack__Assign *a, int fd, uint32_t epoch,
                               serving **out, char *why, size_t cap) {
    serving *s = calloc(1, sizeof *s);
    if (!s) return MR_ERR_NOMEM;
    mr_status st = mr_ckpt_open(a->model_path, &s->ck);
    if (st != MR_OK) {
        snprintf(why, cap, "cannot open model %s (%s)", a->model_path, mr_status_str(st));
        goto err;
    }
    const mr_model_config *mc = mr_ckpt_config(s->ck);
    s->n_layers = mc->num_hidden_layers;
    s->n_experts = mc->num_local_experts;
    s->hidden = mc->hidden_size;
    s->inter = mc->intermediate_size;
    s->top_k = mc->num_experts_per_tok;
    s->max_tokens = (int)a->max_tokens;
    s->epoch = epoch;
    if (a->max_tokens < 1 || a->max_tokens > (1u << 20) || a->n_experts == 0) {
        snprintf(why, cap, "assignment with %zu experts and max_tokens %u", a->n_experts,
                 a->max_tokens);
        st = MR_ERR_PROTO;
        goto err;
    }
    s->held = calloc((size_t)s->n_layers * s->n_experts, 1);
    if (!s->held) {
        st = MR_ERR_NOMEM;
        goto err;
    }
    for (size_t i = 0; i < a->n_experts; i++) {
        const Moerack__ExpertRef *r = a->experts[i];
        if (r->layer >= (uint32_t)s->n_layers || r->expert >= (uint32_t)s->n_experts) {
            snprintf(why, cap,
                     "assigned layer %u expert %u is outside the model (%d layers, %d experts)",
                     r->layer, r->expert, s->n_layers, s->n_experts);
            st = MR_ERR_PROTO;
            goto err;
        }
        s->held[(size_t)r->layer * s->n_experts + r->expert] = 1;
    }
    s->progress = (progress_ctx){fd, 0, MOERACK__LOAD_PHASE__LOAD_PHASE_READING};
    mr_backend_params bp = {.n_threads = w->conf->threads,
                            .max_tokens = s->max_tokens,
                            .hidden = s->hidden,
                            .inter = s->inter,
                            .n_heads = mc->num_attention_heads,
                            .head_dim = mc->head_dim,
                            .block_size = mc->block_size,
                            .max_experts = s->n_experts,
                            .top_k = s->top_k,
                            .progress = on_progress,
                            .progress_user = &s->progress};
    if ((st = mr_backend_create(w->conf->backend, &bp, &s->be)) != MR_OK) {
        snprintf(why, cap, "backend %s unavailable", w->conf->backend);
        goto err;
    }
    size_t count = 0;
    for (size_t i = 0; i < (size_t)s->n_layers * s->n_experts; i++) count += s->held[i];
    /* GPU backends generate synthetic weights in GPU memory: nothing of them on the host */
    const int on_gpu = s->be->ops->moe_prepare != NULL;
    const int defer = on_gpu && mr_ckpt_is_synthetic(s->ck);
    size_t need = defer ? 0 : count * 3 * (size_t)s->hidden * s->inter * 2; /* bf16 */
    size_t slots = (size_t)s->max_tokens * s->top_k;
    s->req_cap = (size_t)mr_dp_request_bytes((uint32_t)s->max_tokens, (uint32_t)s->top_k,
                                             (uint32_t)s->hidden, MR_DP_F32);
    s->reply_cap = 2 * (size_t)s->max_tokens * s->hidden * 4; /* reply + widened bf16 input */
    size_t buffers =
        s->req_cap + s->reply_cap + slots * (2 * (size_t)s->hidden + 2 * (size_t)s->inter) * 4;
    {
        char bn[16], bb[16], bs[16];
        /* per data connection: 4 send staging slots on the host, and a receive region of 4
         * slots (device memory on a CUDA expert backend where dma-buf registration works) */
        size_t slots_bytes =
            strcmp(w->xport->name, "rdma") == 0 ? 8 * (40 + (size_t)data_max_payload(w->cc)) : 0;
        MR_LOG_INFO(MR_LOG_CORE,
                    "memory plan: %zu experts %s (host, bf16%s), buffers %s, data-plane slots and "
                    "receive region %s per connection",
                    count, mr_human_bytes(need, bn),
                    defer    ? "; synthetic: generated on the GPU instead"
                    : on_gpu ? "; then uploaded to the GPU"
                             : "",
                    mr_human_bytes(buffers, bb), mr_human_bytes(slots_bytes, bs));
    }
    if (w->conf->memory_limit_mb && need + buffers > (size_t)w->conf->memory_limit_mb << 20) {
        snprintf(why, cap,
                 "assignment of %zu experts needs %zu MB (%zu MB weights + %zu MB buffers) but "
                 "memory_limit_mb is %lld",
                 count, (need + buffers) >> 20, need >> 20, buffers >> 20,
                 w->conf->memory_limit_mb);
        st = MR_ERR_FULL;
        goto err;
    }
    double t0 = mr_now_s();
    st = mr_expert_store_load(s->ck, s->held, defer, on_progress, &s->progress, &s->store);
    if (st != MR_OK) {
        snprintf(why, cap, "loading experts from %s failed (%s)", a->model_path, mr_status_str(st));
        goto err;
    }
    MR_LOG_INFO(MR_LOG_CKPT,
                "loaded %zu experts in %.2f s: %llu bytes of tensor data read from the checkpoint",
                count, mr_now_s() - t0, (unsigned long long)mr_ckpt_bytes_read(s->ck));
    if (s->be->ops->moe_prepare) { /* GPU backends: upload (and quantise) the experts now */
        const mr_expert_set **sets = malloc((size_t)s->n_layers * sizeof *sets);
        if (!sets) {
            st = MR_ERR_NOMEM;
            goto err;
        }
        for (int l = 0; l < s->n_layers; l++) sets[l] = mr_expert_store_layer(s->store, l);
        t0 = mr_now_s();
        s->progress.phase = defer ? MOERACK__LOAD_PHASE__LOAD_PHASE_GENERATING
                                  : MOERACK__LOAD_PHASE__LOAD_PHASE_UPLOADING;
        s->progress.last = 0;
        st = s->be->ops->moe_prepare(s->be, sets, s->n_layers);
        free(sets);
        if (st != MR_OK) {
            snprintf(why, cap, "backend %s cannot hold the %zu assigned experts (%s; see the log)",
                     w->conf->backend, count, mr_status_str(st));
            goto err;
        }
        MR_LOG_INFO(MR_LOG_GPU, "backend %s: %zu experts on the GPU in %.2f s", w->conf->backend,
                    count, mr_now_s() - t0);
    }
    if (!(s->req_buf = mr_alloc_aligned(s->req_cap)) ||
        !(s->reply_buf = mr_alloc_aligned(s->reply_cap))) {
        st = MR_ERR_NOMEM;
        snprintf(why, cap, "out of memory for buffers");
        goto err;
    }
    *out = s;
    return MR_OK;
err:
    serving_free(s);
    return st;
}

static mr_status handle_assign(mr_worker *w, int fd, const Moerack__Assign *a) {
    char why[512] = "";
    uint32_t epoch = a->epoch;
    serving *s = NULL;
    MR_LOG_INFO(MR_LOG_CORE, "assigned %zu experts of %s", a->n_experts, a->model_path);
    mr_status st = build_serving(w, a, fd, epoch, &s, why, sizeof why);
    if (st != MR_OK) {
        MR_LOG_ERROR(MR_LOG_CORE, "cannot serve the assignment: %s", why);
        mr_frame_send_error(fd, st, "worker %s: %s", w->conf->name, why);
        return MR_OK; /* the connection stays; the coordinator decides */
    }
    /* the coordinator connects once Ready is sent: its regions are made for this backend */
    mr_rx_pool_set_backend(w->rx, s->be, s->max_tokens, s->hidden);
    pthread_rwlock_wrlock(&w->lock);
    serving *old = w->cur;
    w->cur = s;
    pthread_rwlock_unlock(&w->lock);
    serving_free(old);
    Moerack__Ready r = MOERACK__READY__INIT;
    r.bytes_held = mr_expert_store_bytes(s->store);
    r.memory_used = r.bytes_held + s->req_cap + s->reply_cap;
    r.backend = (char *)w->conf->backend;
    Moerack__Envelope env = MOERACK__ENVELOPE__INIT;
    env.msg_case = MOERACK__ENVELOPE__MSG_READY;
    env.ready = &r;
    return send_env(fd, &env);
}

static void send_heartbeat(mr_worker *w, int fd) {
    Moerack__Heartbeat hb = MOERACK__HEARTBEAT__INIT;
    hb.batches_served = atomic_load(&w->batches);
    hb.tokens_served = atomic_load(&w->tokens);
    hb.busy_ns = atomic_load(&w->busy_ns);
    pthread_rwlock_rdlock(&w->lock);
    hb.memory_used = w->cur ? mr_expert_store_bytes(w->cur->store) : 0;
    pthread_rwlock_unlock(&w->lock);
    Moerack__Envelope env = MOERACK__ENVELOPE__INIT;
    env.msg_case = MOERACK__ENVELOPE__MSG_HEARTBEAT;
    env.heartbeat = &hb;
    (void)send_env(fd, &env);
}

/* One control session: Hello, Welcome, then messages until the connection ends.
 * Returns MR_OK on Shutdown, MR_ERR_CLOSED to reconnect, other errors are fatal. */
static mr_status control_session(mr_worker *w, int fd) {
    MR_CHECK(send_hello(w, fd));
    Moerack__Envelope *env = NULL;
    size_t max_frame = MR_FRAME_MAX_DEFAULT;
    mr_status st = mr_frame_recv(fd, max_frame, 10000, &env);
    if (st != MR_OK) return MR_ERR_CLOSED;
    if (env->msg_case == MOERACK__ENVELOPE__MSG_ERROR) {
        MR_LOG_ERROR(MR_LOG_NET, "coordinator refused this worker: %s", env->error->message);
        mr_frame_free(env);
        return MR_ERR_PROTO;
    }
    if (env->msg_case != MOERACK__ENVELOPE__MSG_WELCOME ||
        env->welcome->proto_major != MR_PROTO_MAJOR) {
        MR_LOG_ERROR(
            MR_LOG_NET, "coordinator answered %s with protocol %u.x; this worker speaks %d.%d",
            mr_frame_msg_name(env),
            env->msg_case == MOERACK__ENVELOPE__MSG_WELCOME ? env->welcome->proto_major : 0,
            MR_PROTO_MAJOR, MR_PROTO_MINOR);
        mr_frame_free(env);
        return MR_ERR_PROTO;
    }
    MR_LOG_INFO(MR_LOG_NET, "joined coordinator %s as worker %u", env->welcome->coordinator_name,
                env->welcome->worker_id);
    int hb_ms =
        env->welcome->heartbeat_interval_ms ? (int)env->welcome->heartbeat_interval_ms : 1000;
    mr_frame_free(env);
    double next_hb = mr_now_s();
    for (;;) {
        double now = mr_now_s();
        if (now >= next_hb) {
            send_heartbeat(w, fd);
            next_hb = now + hb_ms / 1000.0;
        }
        struct pollfd p = {fd, POLLIN, 0};
        int rc = poll(&p, 1, (int)((next_hb - now) * 1000) + 1);
        if (rc < 0 && errno != EINTR) return MR_ERR_CLOSED;
        if (rc <= 0) continue;
        st = mr_frame_recv(fd, max_frame, 10000, &env);
        if (st != MR_OK) {
            MR_LOG_WARN(MR_LOG_NET, "control connection to the coordinator ended (%s)",
                        mr_status_str(st));
            return MR_ERR_CLOSED;
        }
        switch (env->msg_case) {
        case MOERACK__ENVELOPE__MSG_ASSIGN:
            st = handle_assign(w, fd, env->assign);
            break;
        case MOERACK__ENVELOPE__MSG_HEARTBEAT:
            break;
        case MOERACK__ENVELOPE__MSG_DRAIN:
            MR_LOG_INFO(MR_LOG_CORE, "draining: finishing in-flight batches");
            break;
        case MOERACK__ENVELOPE__MSG_SHUTDOWN:
            MR_LOG_INFO(MR_LOG_CORE, "shutdown requested: %s", env->shutdown->reason);
            mr_frame_free(env);
            return MR_OK;
        case MOERACK__ENVELOPE__MSG_ERROR:
            MR_LOG_ERROR(MR_LOG_NET, "coordinator reports: %s", env->error->message);
            break;
        default:
            MR_LOG_ERROR(MR_LOG_NET,
                         "coordinator sent %s, which a worker does not accept; reconnecting",
                         mr_frame_msg_name(env));
            st = MR_ERR_CLOSED;
            break;
        }
        mr_frame_free(env);
        if (st != MR_OK) return st;
    }
}

mr_status mr_worker_run(mr_worker *w) {
    while (!atomic_load(&w->stop)) {
        int fd = mr_sock_connect(w->coord_host, w->coord_port, 2000);
        if (fd < 0) {
            usleep((useconds_t)w->conf->connect_retry_ms * 1000);
            continue;
        }
        mr_status st = control_session(w, fd);
        close(fd);
        if (st == MR_OK) return MR_OK;
        if (st != MR_ERR_CLOSED) return st;
        usleep((useconds_t)w->conf->connect_retry_ms * 1000);
    }
    return MR_OK;
}

/* Narrows CUDA_VISIBLE_DEVICES to the configured GPU, before anything in this process touches
 * CUDA (the backend is created at the first assignment). */
static mr_status select_gpu(const mr_cluster_config *cc, const mr_worker_conf *wc) {
    if (wc->gpu < 0) return MR_OK;
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    char pick[64];
    if (vis && *vis) {
        int i = 0;
        const char *p = vis;
        while (i < wc->gpu && (p = strchr(p, ','))) p++, i++;
        size_t n = p ? strcspn(p, ",") : 0;
        if (!p || n == 0 || n >= sizeof pick) {
            MR_LOG_ERROR(MR_LOG_CONF,
                         "%s: worker %s: gpu = %d, but CUDA_VISIBLE_DEVICES=\"%s\" "
                         "lists fewer GPUs",
                         cc->path, wc->name, wc->gpu, vis);
            return MR_ERR_INVALID;
        }
        memcpy(pick, p, n);
        pick[n] = 0;
    } else {
        snprintf(pick, sizeof pick, "%d", wc->gpu);
    }
    setenv("CUDA_VISIBLE_DEVICES", pick, 1);
    MR_LOG_INFO(MR_LOG_CORE, "worker %s: GPU %s (CUDA_VISIBLE_DEVICES)", wc->name, pick);
    return MR_OK;
}

/* The largest data-plane payload of this cluster (RDMA receive slots are sized by it): batches of
 * max_batch_tokens of the configured model. Its config.json is read here; the experts are loaded
 * only when an assignment names them. */
static size_t data_max_payload(const mr_cluster_config *cc) {
    char path[1100];
    mr_model_config mc;
    snprintf(path, sizeof path, "%s/config.json", cc->cluster.model);
    if (mr_model_config_load(path, &mc) != MR_OK) {
        MR_LOG_WARN(MR_LOG_CONF, "%s unreadable here; data-plane messages limited to 64 MiB", path);
        return 64u << 20;
    }
    return (size_t)mr_dp_max_payload((uint32_t)cc->coord.max_batch_tokens,
                                     (uint32_t)mc.num_experts_per_tok, (uint32_t)mc.hidden_size);
}

mr_status mr_worker_create(const mr_cluster_config *cc, const char *name, mr_worker **out) {
    int idx = mr_cluster_config_worker_index(cc, name);
    if (idx < 0) {
        MR_LOG_ERROR(MR_LOG_CONF, "%s: no worker named \"%s\" in workers", cc->path, name);
        return MR_ERR_INVALID;
    }
    mr_worker *w = calloc(1, sizeof *w);
    if (!w) return MR_ERR_NOMEM;
    w->cc = cc;
    w->conf = &cc->workers[idx];
    if (select_gpu(cc, w->conf) != MR_OK) {
        free(w);
        return MR_ERR_INVALID;
    }
    pthread_rwlock_init(&w->lock, NULL);
    const char *addr = cc->coord.address[0] ? cc->coord.address : cc->coord.listen;
    mr_parse_endpoint(addr, w->coord_host, sizeof w->coord_host, &w->coord_port);
    w->xport = mr_xport_find(cc->cluster.transport);
    if (!w->xport) {
        MR_LOG_ERROR(MR_LOG_CONF, "%s: transport \"%s\" is not built into this binary", cc->path,
                     cc->cluster.transport);
        free(w);
        return MR_ERR_UNSUPPORTED;
    }
    char host[128];
    int port, bound;
    mr_parse_endpoint(w->conf->data_listen, host, sizeof host, &port);
    mr_xport_params xp = {.max_message = data_max_payload(cc),
                          .busy_poll = cc->cluster.rdma_busy_poll,
                          .device = w->conf->rdma_device[0] ? w->conf->rdma_device : NULL,
                          .sock_buffer = cc->cluster.tcp_buffer_kb * 1024};
    mr_status st = mr_rx_pool_create(&w->rx);
    if (st != MR_OK) {
        free(w);
        return st;
    }
    if (w->xport->recv_zc) { /* requests land in a region of this worker's memory (rx_pool.h) */
        xp.region_get = mr_rx_pool_get;
        xp.region_put = mr_rx_pool_put;
        xp.region_user = w->rx;
    }
    w->busy_poll = xp.busy_poll && strcmp(w->xport->name, "rdma") == 0;
    st = w->xport->listen(&xp, host, port, &w->listener, &bound);
    if (st != MR_OK) {
        mr_rx_pool_destroy(w->rx);
        free(w);
        return st;
    }
    snprintf(w->data_endpoint, sizeof w->data_endpoint, "%s:%d", host, bound);
    if (pthread_create(&w->data_thread, NULL, data_main, w) != 0) {
        w->xport->listener_close(w->listener);
        mr_rx_pool_destroy(w->rx);
        free(w);
        return MR_ERR_NOMEM;
    }
    w->data_thread_started = 1;
    MR_LOG_INFO(MR_LOG_CORE, "worker %s: data plane on %s (%s), coordinator at %s", w->conf->name,
                w->data_endpoint, w->xport->name, addr);
    *out = w;
    return MR_OK;
}

void mr_worker_destroy(mr_worker *w) {
    if (!w) return;
    atomic_store(&w->stop, 1);
    if (w->data_thread_started) pthread_join(w->data_thread, NULL);
    w->xport->listener_close(w->listener);
    serving_free(w->cur);
    mr_rx_pool_destroy(w->rx); /* the data thread closed every connection: regions returned */
    pthread_rwlock_destroy(&w->lock);
    free(w);
}
