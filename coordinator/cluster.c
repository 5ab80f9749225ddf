#include "coordinator/cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/config_table.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "proto/sock.h"

#define HELLO_TIMEOUT_S 5.0
#define TICK_MS         100

/* One control connection. Owned by the event loop; an engine job holds a reference while it
 * prepares a reply. `fd` and `closed` change under `wlock`. */
typedef struct mr_conn {
    int fd;
    int refs; /* under the cluster mutex */
    int closed;
    pthread_mutex_t wlock;
    mr_frame_reader rd;
    int role;   /* Moerack__Role; 0 until Hello */
    int worker; /* worker index for ROLE_WORKER, else -1 */
    double opened;
    char peer[96];
    struct mr_conn *next;
} mr_conn;

struct mr_cluster {
    const mr_cluster_config *cc;
    const mr_model_config *mc;
    const mr_placement *pl;
    const mr_xport_ops *xport;
    pthread_mutex_t mu;
    mr_worker_slot *workers;
    mr_conn **worker_conn; /* control connection of each worker, or NULL */
    uint32_t next_epoch;
    uint64_t requests;
    int listen_fd, epfd, stop_fd;
    volatile int stopping;
    mr_conn *conns; /* all live connections */
    mr_job_fn job_fn;
    void *job_user;
    char model_path[1100]; /* what Assign tells workers to open (may be synthetic:SEED:DIR) */
};

const char *mr_worker_state_name(mr_worker_state s) {
    switch (s) {
    case MR_WS_DOWN:
        return "down";
    case MR_WS_JOINING:
        return "joining";
    case MR_WS_LOADING:
        return "loading";
    case MR_WS_READY:
        return "ready";
    case MR_WS_DRAINING:
        return "draining";
    }
    return "?";
}

/* ---- connections ----------------------------------------------------------------------------- */

static void conn_release(mr_cluster *c, mr_conn *k) {
    pthread_mutex_lock(&c->mu);
    int last = --k->refs == 0;
    pthread_mutex_unlock(&c->mu);
    if (!last) return;
    mr_frame_reader_fini(&k->rd);
    pthread_mutex_destroy(&k->wlock);
    free(k);
}

static void conn_close(mr_cluster *c, mr_conn *k, const char *why) {
    pthread_mutex_lock(&k->wlock);
    if (k->closed) {
        pthread_mutex_unlock(&k->wlock);
        return;
    }
    k->closed = 1;
    epoll_ctl(c->epfd, EPOLL_CTL_DEL, k->fd, NULL);
    close(k->fd);
    k->fd = -1;
    pthread_mutex_unlock(&k->wlock);
    pthread_mutex_lock(&c->mu);
    for (mr_conn **p = &c->conns; *p; p = &(*p)->next)
        if (*p == k) {
            *p = k->next;
            break;
        }
    if (k->worker >= 0 && c->worker_conn[k->worker] == k) {
        mr_worker_slot *w = &c->workers[k->worker];
        c->worker_conn[k->worker] = NULL;
        if (w->state != MR_WS_DOWN)
            MR_LOG_WARN(MR_LOG_NET, "worker %s (%s) is down: %s", w->conf->name, k->peer, why);
        w->state = MR_WS_DOWN;
    }
    pthread_mutex_unlock(&c->mu);
    conn_release(c, k);
}

static mr_status conn_send(mr_conn *k, const Moerack__Envelope *env) {
    pthread_mutex_lock(&k->wlock);
    mr_status st = k->closed ? MR_ERR_CLOSED : mr_frame_send(k->fd, env, 5000);
    pthread_mutex_unlock(&k->wlock);
    return st;
}

/* Logs a protocol violation, tells the peer why, and closes the connection. */
static void conn_violation(mr_cluster *c, mr_conn *k, const char *why) {
    MR_LOG_ERROR(MR_LOG_NET, "control connection from %s: protocol error: %s; closing", k->peer,
                 why);
    pthread_mutex_lock(&k->wlock);
    if (!k->closed) mr_frame_send_error(k->fd, MR_ERR_PROTO, "%s", why);
    pthread_mutex_unlock(&k->wlock);
    conn_close(c, k, why);
}

/* ---- worker lifecycle ------------------------------------------------------------------------ */

static mr_status send_assign(mr_cluster *c, mr_conn *k, int wi) {
    const mr_placement *pl = c->pl;
    int n = mr_placement_count(pl, wi);
    Moerack__ExpertRef *refs = calloc((size_t)n, sizeof *refs);
    Moerack__ExpertRef **ptrs = calloc((size_t)n, sizeof *ptrs);
    if (!refs || !ptrs) {
        free(refs);
        free(ptrs);
        return MR_ERR_NOMEM;
    }
    int i = 0;
    for (int l = 0; l < pl->n_layers; l++)
        for (int e = 0; e < pl->n_experts; e++)
            if (mr_placement_holds(pl, wi, l, e)) {
                moerack__expert_ref__init(&refs[i]);
                refs[i].layer = (uint32_t)l;
                refs[i].expert = (uint32_t)e;
                ptrs[i] = &refs[i];
                i++;
            }
    pthread_mutex_lock(&c->mu);
    uint32_t epoch = ++c->next_epoch;
    c->workers[wi].epoch = epoch;
    c->workers[wi].state = MR_WS_LOADING;
    c->workers[wi].experts_total = (uint32_t)n;
    c->workers[wi].experts_loaded = 0;
    c->workers[wi].load_phase = MOERACK__LOAD_PHASE__LOAD_PHASE_READING;
    pthread_mutex_unlock(&c->mu);
    Moerack__Assign a = MOERACK__ASSIGN__INIT;
    a.model_path = c->model_path;
    a.n_experts = (size_t)n;
    a.experts = ptrs;
    a.weight_format = MOERACK__WEIGHT_FORMAT__WEIGHT_FORMAT_BF16;
    a.max_tokens = (uint32_t)c->cc->coord.max_batch_tokens;
    a.transport = (char *)c->cc->cluster.transport;
    a.epoch = epoch;
    Moerack__Envelope env = MOERACK__ENVELOPE__INIT;
    env.msg_case = MOERACK__ENVELOPE__MSG_ASSIGN;
    env.assign = &a;
    mr_status st = conn_send(k, &env);
    free(refs);
    free(ptrs);
    MR_LOG_INFO(MR_LOG_CORE, "assigned %d experts to worker %s (epoch %u)", n,
                c->workers[wi].conf->name, epoch);
    return st;
}

/* Opens the data connection to a Ready worker and publishes it for the dispatcher. */
static void connect_data(mr_cluster *c, mr_conn *k, int wi) {
    mr_worker_slot *w = &c->workers[wi];
    char host[128];
    int port;
    if (mr_parse_endpoint(w->data_endpoint, host, sizeof host, &port) != MR_OK) {
        conn_violation(c, k, "data endpoint is not host:port");
        return;
    }
    mr_xport_params xp = {
        .max_message =
            mr_dp_max_payload((uint32_t)c->cc->coord.max_batch_tokens,
                              (uint32_t)c->mc->num_experts_per_tok, (uint32_t)c->mc->hidden_size),
        .busy_poll = c->cc->cluster.rdma_busy_poll,
        .device = c->cc->coord.rdma_device[0] ? c->cc->coord.rdma_device : NULL,
        .sock_buffer = c->cc->cluster.tcp_buffer_kb * 1024,
        /* a worker that stops reading a batch is down like one that does not answer it */
        .send_timeout_ms = c->cc->coord.expert_timeout_ms,
    };
    mr_xport_conn *dc;
    mr_status st = c->xport->connect(&xp, host, port, 3000, &dc);
    if (st == MR_OK) {
        mr_dp_header h;
        mr_dp_header_init(&h, MR_DP_HELLO);
        h.seq = w->epoch;
        st = c->xport->send(dc, &h, NULL);
        if (st != MR_OK) c->xport->close(dc);
    }
    if (st != MR_OK) {
        MR_LOG_ERROR(MR_LOG_NET, "worker %s: cannot open the data connection to %s (%s)",
                     w->conf->name, w->data_endpoint, mr_status_str(st));
        conn_close(c, k, "data plane unreachable");
        return;
    }
    pthread_mutex_lock(&c->mu);
    if (w->pending) c->xport->close(w->pending);
    w->pending = dc;
    w->failed = 0;
    w->state = MR_WS_READY;
    snprintf(w->transport, sizeof w->transport, "%s",
             c->xport->conn_label ? c->xport->conn_label(dc, 1) : c->xport->label);
    pthread_mutex_unlock(&c->mu);
    MR_LOG_INFO(MR_LOG_CORE, "worker %s ready: %llu bytes of experts, data plane %s via %s",
                w->conf->name, (unsigned long long)w->bytes_held, w->data_endpoint, w->transport);
}

static void handle_worker_hello(mr_cluster *c, mr_conn *k, const Moerack__Hello *h) {
    int wi = mr_cluster_config_worker_index(c->cc, h->node_name);
    if (wi < 0) {
        char why[160];
        snprintf(why, sizeof why, "no worker named \"%.64s\" in the cluster config", h->node_name);
        conn_violation(c, k, why);
        return;
    }
    char host[128];
    int port;
    if (mr_parse_endpoint(h->data_endpoint, host, sizeof host, &port) != MR_OK || port == 0) {
        conn_violation(c, k, "hello.data_endpoint is not host:port");
        return;
    }
    pthread_mutex_lock(&c->mu);
    mr_conn *old = c->worker_conn[wi];
    pthread_mutex_unlock(&c->mu);
    if (old) conn_close(c, old, "replaced by a new connection of the same worker");
    pthread_mutex_lock(&c->mu);
    mr_worker_slot *w = &c->workers[wi];
    c->worker_conn[wi] = k;
    k->worker = wi;
    w->state = MR_WS_JOINING;
    snprintf(w->data_endpoint, sizeof w->data_endpoint, "%s", h->data_endpoint);
    snprintf(w->host, sizeof w->host, "%s", k->peer);
    w->last_heard = mr_now_s();
    pthread_mutex_unlock(&c->mu);
    Moerack__Welcome wel = MOERACK__WELCOME__INIT;
    wel.proto_major = MR_PROTO_MAJOR;
    wel.proto_minor = MR_PROTO_MINOR;
    wel.worker_id = (uint32_t)wi;
    wel.coordinator_name = (char *)c->cc->cluster.name;
    wel.heartbeat_interval_ms = (uint32_t)c->cc->coord.heartbeat_interval_ms;
    Moerack__Envelope env = MOERACK__ENVELOPE__INIT;
    env.msg_case = MOERACK__ENVELOPE__MSG_WELCOME;
    env.welcome = &wel;
    MR_LOG_INFO(MR_LOG_CORE, "worker %s joined from %s", h->node_name, k->peer);
    if (conn_send(k, &env) != MR_OK || send_assign(c, k, wi) != MR_OK)
        conn_close(c, k, "cannot send welcome/assign");
}

static void handle_hello(mr_cluster *c, mr_conn *k, const Moerack__Hello *h) {
    if (h->proto_major != MR_PROTO_MAJOR) {
        char why[160];
        snprintf(why, sizeof why,
                 "protocol version %u.%u is not supported; this coordinator speaks %d.%d",
                 h->proto_major, h->proto_minor, MR_PROTO_MAJOR, MR_PROTO_MINOR);
        conn_violation(c, k, why);
        return;
    }
    k->role = h->role;
    switch (h->role) {
    case MOERACK__ROLE__ROLE_WORKER:
        handle_worker_hello(c, k, h);
        return;
    case MOERACK__ROLE__ROLE_STATUS:
    case MOERACK__ROLE__ROLE_CLIENT: {
        Moerack__Welcome wel = MOERACK__WELCOME__INIT;
        wel.proto_major = MR_PROTO_MAJOR;
        wel.proto_minor = MR_PROTO_MINOR;
        wel.coordinator_name = (char *)c->cc->cluster.name;
        Moerack__Envelope env = MOERACK__ENVELOPE__INIT;
        env.msg_case = MOERACK__ENVELOPE__MSG_WELCOME;
        env.welcome = &wel;
        if (conn_send(k, &env) != MR_OK) conn_close(c, k, "send failed");
        return;
    }
    default:
        conn_violation(c, k, "hello with an unknown role");
        return;
    }
}

/* ---- status ---------------------------------------------------------------------------------- */

/* Display name of a worker's load phase; "" for a value this build does not know. */
static const char *load_phase_name(int phase) {
    switch (phase) {
    case MOERACK__LOAD_PHASE__LOAD_PHASE_READING:
        return "reading";
    case MOERACK__LOAD_PHASE__LOAD_PHASE_UPLOADING:
        return "uploading";
    case MOERACK__LOAD_PHASE__LOAD_PHASE_GENERATING:
        return "generating";
    default:
        return "";
    }
}

static double percentile(const double *v, int n, double q) {
    if (n == 0) return 0;
    double *s = malloc((size_t)n * sizeof *s);
    if (!s) return 0;
    memcpy(s, v, (size_t)n * sizeof *s);
    for (int i = 1; i < n; i++) { /* insertion sort: n <= 1024 */
        double x = s[i];
        int j = i - 1;
        while (j >= 0 && s[j] > x) s[j + 1] = s[j], j--;
        s[j + 1] = x;
    }
    double r = s[(int)(q * (n - 1) + 0.5)];
    free(s);
    return r;
}

static void send_status(mr_cluster *c, mr_conn *k) {
    const int W = c->cc->n_workers, L = c->pl->n_layers, E = c->pl->n_experts;
    Moerack__StatusReply rep = MOERACK__STATUS_REPLY__INIT;
    Moerack__WorkerStatus *ws = calloc((size_t)W, sizeof *ws);
    Moerack__WorkerStatus **wp = calloc((size_t)W, sizeof *wp);
    Moerack__ExpertRef *un = calloc((size_t)L * E, sizeof *un);
    Moerack__ExpertRef **up = calloc((size_t)L * E, sizeof *up);
    char(*transport)[96] = calloc((size_t)W, 96); /* copies: the reply is sent unlocked */
    if (!ws || !wp || !un || !up || !transport) goto out;
    double now = mr_now_s();
    pthread_mutex_lock(&c->mu);
    int ready = 0;
    for (int i = 0; i < W; i++) {
        mr_worker_slot *w = &c->workers[i];
        moerack__worker_status__init(&ws[i]);
        ws[i].id = (uint32_t)i;
        ws[i].name = (char *)w->conf->name;
        ws[i].host = w->host[0] ? w->host : (char *)"-";
        /* before its first data connection a worker has offered nothing: the transport's name */
        snprintf(transport[i], 96, "%s", w->transport[0] ? w->transport : c->xport->name);
        ws[i].transport = transport[i];
        ws[i].state = (char *)mr_worker_state_name(w->state);
        ws[i].experts_held = (uint32_t)mr_placement_count(c->pl, i);
        ws[i].experts_loaded = w->experts_loaded;
        ws[i].load_phase = w->state == MR_WS_LOADING ? (char *)load_phase_name(w->load_phase) : "";
        ws[i].memory_used = w->memory_used;
        ws[i].batches_served = w->batches_served;
        ws[i].tokens_served = w->tokens_served;
        ws[i].busy_ns = w->busy_ns;
        ws[i].rtt_p50_us = percentile(w->rtt_us, w->rtt_n, 0.50);
        ws[i].rtt_p99_us = percentile(w->rtt_us, w->rtt_n, 0.99);
        ws[i].heartbeat_age_s = w->last_heard > 0 ? now - w->last_heard : -1;
        wp[i] = &ws[i];
        ready += w->state == MR_WS_READY;
    }
    size_t n_un = 0;
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++) {
            int live = 0;
            for (int i = 0; i < W && !live; i++)
                live = mr_placement_holds(c->pl, i, l, e) && c->workers[i].state == MR_WS_READY;
            if (!live) {
                moerack__expert_ref__init(&un[n_un]);
                un[n_un].layer = (uint32_t)l;
                un[n_un].expert = (uint32_t)e;
                up[n_un] = &un[n_un];
                n_un++;
            }
        }
    rep.requests_served = c->requests;
    pthread_mutex_unlock(&c->mu);
    rep.verdict = n_un ? "DOWN" : ready == W ? "HEALTHY" : "DEGRADED";
    rep.model = (char *)c->cc->cluster.model;
    rep.n_workers = (size_t)W;
    rep.workers = wp;
    rep.n_uncovered = n_un;
    rep.uncovered = up;
    rep.n_layers = (uint32_t)L;
    rep.n_experts = (uint32_t)E;
    Moerack__Envelope env = MOERACK__ENVELOPE__INIT;
    env.msg_case = MOERACK__ENVELOPE__MSG_STATUS_REPLY;
    env.status_reply = &rep;
    if (conn_send(k, &env) != MR_OK) conn_close(c, k, "send failed");
out:
    free(ws);
    free(wp);
    free(un);
    free(up);
    free(transport);
}

/* ---- message dispatch ------------------------------------------------------------------------ */

/* Handles one decoded message; takes ownership of env. */
static void handle_message(mr_cluster *c, mr_conn *k, Moerack__Envelope *env) {
    char why[160];
    if (!k->role) {
        if (env->msg_case != MOERACK__ENVELOPE__MSG_HELLO) {
            snprintf(why, sizeof why, "first message must be hello, got %s",
                     mr_frame_msg_name(env));
            conn_violation(c, k, why);
        } else {
            handle_hello(c, k, env->hello);
        }
        mr_frame_free(env);
        return;
    }
    if (k->role == MOERACK__ROLE__ROLE_WORKER && k->worker >= 0) {
        mr_worker_slot *w = &c->workers[k->worker];
        pthread_mutex_lock(&c->mu);
        w->last_heard = mr_now_s();
        mr_worker_state state = w->state;
        pthread_mutex_unlock(&c->mu);
        switch (env->msg_case) {
        case MOERACK__ENVELOPE__MSG_LOAD_PROGRESS:
            pthread_mutex_lock(&c->mu);
            w->experts_loaded = env->load_progress->experts_loaded;
            w->bytes_held = env->load_progress->bytes_loaded;
            w->load_phase = (int)env->load_progress->phase; /* shown only if known */
            pthread_mutex_unlock(&c->mu);
            break;
        case MOERACK__ENVELOPE__MSG_READY:
            if (state != MR_WS_LOADING) {
                conn_violation(c, k, "ready without an assignment in progress");
                break;
            }
            pthread_mutex_lock(&c->mu);
            w->bytes_held = env->ready->bytes_held;
            w->memory_used = env->ready->memory_used;
            w->experts_loaded = w->experts_total;
            pthread_mutex_unlock(&c->mu);
            connect_data(c, k, k->worker);
            break;
        case MOERACK__ENVELOPE__MSG_HEARTBEAT:
            pthread_mutex_lock(&c->mu);
            w->batches_served = env->heartbeat->batches_served;
            w->tokens_served = env->heartbeat->tokens_served;
            w->busy_ns = env->heartbeat->busy_ns;
            if (env->heartbeat->memory_used) w->memory_used = env->heartbeat->memory_used;
            pthread_mutex_unlock(&c->mu);
            break;
        case MOERACK__ENVELOPE__MSG_ERROR:
            MR_LOG_ERROR(MR_LOG_CORE, "worker %s reports: %s", w->conf->name, env->error->message);
            if (state == MR_WS_LOADING) conn_close(c, k, "it could not load its assignment");
            break;
        default:
            snprintf(why, sizeof why, "a worker may not send %s", mr_frame_msg_name(env));
            conn_violation(c, k, why);
            break;
        }
        mr_frame_free(env);
        return;
    }
    if (k->role == MOERACK__ROLE__ROLE_STATUS &&
        env->msg_case == MOERACK__ENVELOPE__MSG_STATUS_REQUEST) {
        send_status(c, k);
        mr_frame_free(env);
        return;
    }
    if (k->role == MOERACK__ROLE__ROLE_CLIENT &&
        env->msg_case == MOERACK__ENVELOPE__MSG_GENERATE_REQUEST && c->job_fn) {
        mr_client_job *job = malloc(sizeof *job);
        if (!job) {
            mr_frame_free(env);
            conn_close(c, k, "out of memory");
            return;
        }
        pthread_mutex_lock(&c->mu);
        k->refs++;
        pthread_mutex_unlock(&c->mu);
        job->conn = k;
        job->env = env;
        c->job_fn(c->job_user, job);
        return;
    }
    snprintf(why, sizeof why, "%s is not accepted from this connection", mr_frame_msg_name(env));
    conn_violation(c, k, why);
    mr_frame_free(env);
}

void mr_cluster_reply(mr_cluster *c, mr_client_job *job, const Moerack__Envelope *reply) {
    (void)conn_send(job->conn, reply);
    mr_frame_free(job->env);
    conn_release(c, job->conn);
    free(job);
}

static void on_readable(mr_cluster *c, mr_conn *k) {
    /* hold a reference: handling a message may close (and otherwise free) the connection */
    pthread_mutex_lock(&c->mu);
    k->refs++;
    pthread_mutex_unlock(&c->mu);
    mr_status st = mr_frame_reader_fill(&k->rd, k->fd);
    for (;;) {
        Moerack__Envelope *env = NULL;
        mr_status nx = mr_frame_reader_next(&k->rd, &env);
        if (nx == MR_ERR_NOT_FOUND) break;
        if (nx != MR_OK) {
            conn_violation(c, k, "malformed frame (bad length or undecodable protobuf)");
            break;
        }
        handle_message(c, k, env);
        if (k->closed) break;
    }
    if (!k->closed && st == MR_ERR_CLOSED)
        conn_close(c, k, "connection closed by peer");
    else if (!k->closed && st != MR_OK)
        conn_close(c, k, "read error");
    conn_release(c, k);
}

static void on_accept(mr_cluster *c) {
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(c->listen_fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) return;
        mr_conn *k = calloc(1, sizeof *k);
        if (!k) {
            close(fd);
            return;
        }
        k->fd = fd;
        k->refs = 1;
        k->worker = -1;
        k->opened = mr_now_s();
        pthread_mutex_init(&k->wlock, NULL);
        mr_frame_reader_init(&k->rd, (size_t)c->cc->coord.max_frame_mb << 20);
        char host[64] = "?";
        int port = 0;
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
        snprintf(k->peer, sizeof k->peer, "%s:%d", host, port);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = k};
        epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev);
        pthread_mutex_lock(&c->mu);
        k->next = c->conns;
        c->conns = k;
        pthread_mutex_unlock(&c->mu);
    }
}

/* Timers: hello deadlines for new connections, heartbeat deadlines for workers. */
static void on_tick(mr_cluster *c) {
    double now = mr_now_s();
    double limit = c->cc->coord.worker_timeout_ms / 1000.0;
    for (;;) {
        mr_conn *victim = NULL;
        const char *why = NULL;
        pthread_mutex_lock(&c->mu);
        for (mr_conn *k = c->conns; k && !victim; k = k->next) {
            if (!k->role && now - k->opened > HELLO_TIMEOUT_S) {
                victim = k;
                why = "no hello within 5 s";
            } else if (k->worker >= 0 && now - c->workers[k->worker].last_heard > limit) {
                victim = k;
                why = "heartbeat timeout";
            }
        }
        /* a worker the dispatcher gave up on: drop its control connection so it rejoins */
        for (int i = 0; i < c->cc->n_workers && !victim; i++)
            if (c->workers[i].failed && c->worker_conn[i]) {
                victim = c->worker_conn[i];
                why = "it failed an expert batch";
                c->workers[i].failed = 0;
            }
        pthread_mutex_unlock(&c->mu);
        if (!victim) break;
        if (!victim->role)
            MR_LOG_WARN(MR_LOG_NET, "connection from %s: %s; closing", victim->peer, why);
        conn_close(c, victim, why);
    }
}

mr_status mr_cluster_run(mr_cluster *c) {
    struct epoll_event evs[64];
    while (!c->stopping) {
        int n = epoll_wait(c->epfd, evs, 64, TICK_MS);
        if (n < 0 && errno != EINTR) return MR_ERR_IO;
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &c->listen_fd)
                on_accept(c);
            else if (p == &c->stop_fd)
                c->stopping = 1;
            else
                on_readable(c, p);
        }
        on_tick(c);
    }
    return MR_OK;
}

void mr_cluster_stop(mr_cluster *c) {
    c->stopping = 1;
    uint64_t one = 1;
    ssize_t w = write(c->stop_fd, &one, sizeof one);
    (void)w;
}

mr_status mr_cluster_create(const mr_cluster_config *cc, const mr_model_config *mc,
                            const mr_placement *pl, mr_cluster **out) {
    mr_cluster *c = calloc(1, sizeof *c);
    if (!c) return MR_ERR_NOMEM;
    c->cc = cc;
    c->mc = mc;
    mr_cluster_config_model_path(cc, c->model_path, sizeof c->model_path);
    c->pl = pl;
    c->listen_fd = c->epfd = c->stop_fd = -1;
    pthread_mutex_init(&c->mu, NULL);
    c->xport = mr_xport_find(cc->cluster.transport);
    c->workers = calloc((size_t)cc->n_workers, sizeof *c->workers);
    c->worker_conn = calloc((size_t)cc->n_workers, sizeof *c->worker_conn);
    if (!c->xport || !c->workers || !c->worker_conn) {
        if (!c->xport)
            MR_LOG_ERROR(MR_LOG_CONF, "%s: transport \"%s\" is not built into this binary",
                         cc->path, cc->cluster.transport);
        mr_cluster_destroy(c);
        return c->xport ? MR_ERR_NOMEM : MR_ERR_UNSUPPORTED;
    }
    for (int i = 0; i < cc->n_workers; i++) c->workers[i].conf = &cc->workers[i];
    char host[128];
    int port;
    mr_parse_endpoint(cc->coord.listen, host, sizeof host, &port);
    c->listen_fd = mr_sock_listen(host, port, NULL);
    if (c->listen_fd < 0) {
        MR_LOG_ERROR(MR_LOG_NET, "cannot listen on %s: %s", cc->coord.listen, strerror(errno));
        mr_cluster_destroy(c);
        return MR_ERR_IO;
    }
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    c->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &c->listen_fd};
    epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->listen_fd, &ev);
    ev.data.ptr = &c->stop_fd;
    epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->stop_fd, &ev);
    *out = c;
    return MR_OK;
}

void mr_cluster_destroy(mr_cluster *c) {
    if (!c) return;
    while (c->conns) conn_close(c, c->conns, "coordinator shutting down");
    for (int i = 0; c->workers && i < c->cc->n_workers; i++)
        if (c->workers[i].pending) c->xport->close(c->workers[i].pending);
    if (c->listen_fd >= 0) close(c->listen_fd);
    if (c->epfd >= 0) close(c->epfd);
    if (c->stop_fd >= 0) close(c->stop_fd);
    free(c->workers);
    free(c->worker_conn);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void mr_cluster_set_job_handler(mr_cluster *c, mr_job_fn fn, void *user) {
    c->job_fn = fn;
    c->job_user = user;
}

int mr_cluster_n_workers(const mr_cluster *c) {
    return c->cc->n_workers;
}
const mr_xport_ops *mr_cluster_xport(const mr_cluster *c) {
    return c->xport;
}

mr_xport_conn *mr_cluster_take_pending(mr_cluster *c, int w) {
    pthread_mutex_lock(&c->mu);
    mr_xport_conn *p = c->workers[w].pending;
    c->workers[w].pending = NULL;
    pthread_mutex_unlock(&c->mu);
    return p;
}

int mr_cluster_worker_ready(mr_cluster *c, int w) {
    pthread_mutex_lock(&c->mu);
    int r = c->workers[w].state == MR_WS_READY;
    pthread_mutex_unlock(&c->mu);
    return r;
}

void mr_cluster_worker_failed(mr_cluster *c, int w, const char *why) {
    pthread_mutex_lock(&c->mu);
    mr_worker_slot *s = &c->workers[w];
    if (s->state != MR_WS_DOWN)
        MR_LOG_WARN(MR_LOG_NET, "worker %s is down: %s", s->conf->name, why);
    s->state = MR_WS_DOWN;
    s->failed = 1;
    pthread_mutex_unlock(&c->mu);
}

void mr_cluster_record_rtt(mr_cluster *c, int w, double us) {
    pthread_mutex_lock(&c->mu);
    mr_worker_slot *s = &c->workers[w];
    s->rtt_us[s->rtt_next] = us;
    s->rtt_next = (s->rtt_next + 1) % MR_RTT_SAMPLES;
    if (s->rtt_n < MR_RTT_SAMPLES) s->rtt_n++;
    pthread_mutex_unlock(&c->mu);
}

void mr_cluster_count_request(mr_cluster *c) {
    pthread_mutex_lock(&c->mu);
    c->requests++;
    pthread_mutex_unlock(&c->mu);
}

int mr_cluster_uncovered(mr_cluster *c) {
    int n = 0;
    pthread_mutex_lock(&c->mu);
    for (int l = 0; l < c->pl->n_layers; l++)
        for (int e = 0; e < c->pl->n_experts; e++) {
            int live = 0;
            for (int w = 0; w < c->cc->n_workers && !live; w++)
                live = mr_placement_holds(c->pl, w, l, e) && c->workers[w].state == MR_WS_READY;
            n += !live;
        }
    pthread_mutex_unlock(&c->mu);
    return n;
}

static void append(char **text, size_t *len, const char *s) {
    size_t n = strlen(s);
    char *t = realloc(*text, *len + n + 1);
    if (!t) return;
    memcpy(t + *len, s, n + 1);
    *text = t;
    *len += n;
}

void mr_cluster_metrics(mr_cluster *c, char **text, size_t *len) {
    char line[512];
    append(text, len,
           "# HELP moerack_worker_up 1 if the worker is ready\n# TYPE moerack_worker_up gauge\n");
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->cc->n_workers; i++) {
        snprintf(line, sizeof line, "moerack_worker_up{worker=\"%s\"} %d\n",
                 c->workers[i].conf->name, c->workers[i].state == MR_WS_READY);
        append(text, len, line);
    }
    append(
        text, len,
        "# HELP moerack_worker_round_trip_seconds Per-layer expert round trip (last 1024 batches)\n"
        "# TYPE moerack_worker_round_trip_seconds gauge\n");
    for (int i = 0; i < c->cc->n_workers; i++) {
        mr_worker_slot *w = &c->workers[i];
        snprintf(line, sizeof line,
                 "moerack_worker_round_trip_seconds{worker=\"%s\",quantile=\"0.5\"} %.9g\n"
                 "moerack_worker_round_trip_seconds{worker=\"%s\",quantile=\"0.99\"} %.9g\n",
                 w->conf->name, percentile(w->rtt_us, w->rtt_n, 0.5) * 1e-6, w->conf->name,
                 percentile(w->rtt_us, w->rtt_n, 0.99) * 1e-6);
        append(text, len, line);
    }
    append(text, len,
           "# HELP moerack_worker_batches_total Expert batches served\n"
           "# TYPE moerack_worker_batches_total counter\n");
    for (int i = 0; i < c->cc->n_workers; i++) {
        snprintf(line, sizeof line, "moerack_worker_batches_total{worker=\"%s\"} %llu\n",
                 c->workers[i].conf->name, (unsigned long long)c->workers[i].batches_served);
        append(text, len, line);
    }
    pthread_mutex_unlock(&c->mu);
}
