/* http_check — integration tests of the OpenAI-compatible HTTP API on a real local cluster.
 *
 *   http_check --bin-dir DIR --model DIR --work DIR SCENARIO
 *     hostile      malformed JSON, huge bodies, wrong content types, slowloris, invalid UTF-8,
 *                  bad max_tokens, thousands of stop strings: each answered with the right status,
 *                  and the server keeps serving
 *     determinism  16 concurrent greedy requests of different lengths give exactly the tokens each
 *                  gives alone; streaming and non-streaming give the same text
 *     load         64 concurrent streaming clients for --seconds, some disconnecting at random:
 *                  every completed stream is whole and correct, no state leaks (metrics back to 0);
 *                  prints p50/p99 TTFT and inter-token latency
 *     openai       runs tests/http/openai_client_test.mjs (the official `openai` npm package)
 * Exit 0 pass, 1 fail, 77 skip. */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/launch.h"
#include "common/log.h"
#include "common/rng.h"
#include "common/timeutil.h"
#include "http_client.h"
#include "proto/sock.h"

static const char *g_bin, *g_model, *g_work, *g_src;
static int g_failures, g_seconds = 60, g_clients = 64;
static char g_host[] = "127.0.0.1";
static int g_port;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            g_failures++;                                                                          \
        }                                                                                          \
    } while (0)

static int free_port(void) {
    int bound = 0, fd = mr_sock_listen("127.0.0.1", 0, &bound);
    if (fd >= 0) close(fd);
    return bound;
}

static mr_status start(mr_launch *l, const char *sub, const char *extra) {
    char dir[2048], coord_extra[4096];
    snprintf(dir, sizeof dir, "%s/%s", g_work, sub);
    mkdir(g_work, 0755);
    mkdir(dir, 0755);
    g_port = free_port();
    snprintf(coord_extra, sizeof coord_extra,
             "  http_listen = \"127.0.0.1:%d\";\n  max_body_kb = 256;\n  idle_timeout_s = 3;\n"
             "  keepalive_ms = 1000;\n%s",
             g_port, extra ? extra : "");
    mr_launch_params p = {.bin_dir = g_bin,
                          .model = g_model,
                          .work_dir = dir,
                          .n_workers = 2,
                          .coord_threads = 1,
                          .worker_threads = 1,
                          .max_batch_tokens = 512,
                          .extra_coordinator = coord_extra};
    mr_status st = mr_launch_start(&p, l);
    if (st == MR_OK) st = mr_launch_wait(l, "HEALTHY", 60000);
    /* the HTTP server starts with the coordinator; wait until it answers */
    for (int i = 0; st == MR_OK && i < 100; i++) {
        char *body;
        if (http_simple(g_host, g_port, "GET", "/health/ready", NULL, &body, 2000) == 200) {
            free(body);
            return MR_OK;
        }
        free(body);
        usleep(100000);
    }
    printf("FAIL cluster or HTTP server did not come up (logs in %s)\n", dir);
    return MR_ERR_TIMEOUT;
}

/* POSTs a JSON body; returns the status and the response body (malloc'd). */
static int post(const char *path, const char *ctype, const char *body, size_t len, char **resp) {
    http_conn c;
    *resp = NULL;
    if (http_request(&c, g_host, g_port, "POST", path, ctype, body, len, NULL, 30000) != 0) {
        http_close(&c);
        return -1;
    }
    *resp = http_read_all(&c, NULL, 30000);
    http_close(&c);
    return c.status;
}

static const char *error_type(const char *body) {
    static char t[64];
    json_t *j = json_loads(body ? body : "", 0, NULL);
    snprintf(t, sizeof t, "%s",
             j ? json_string_value(json_object_get(json_object_get(j, "error"), "type")) ?: ""
               : "");
    json_decref(j);
    return t;
}

typedef struct det_job {
    int idx, plen;
    char *resp;
    int status;
} det_job;
static void *det_thread(void *arg);

/* ---- hostile --------------------------------------------------------------------------------- */

static void expect(const char *name, int status, int want, const char *body) {
    int ok = status == want && (want < 400 || error_type(body)[0]);
    printf("%s %s: %d (want %d) %.160s\n", ok ? "PASS" : "FAIL", name, status, want,
           body ? body : "");
    CHECK(ok, "%s", name);
}

static void scenario_hostile(void) {
    mr_launch l;
    if (start(&l, "http-hostile", NULL) != MR_OK) {
        g_failures++;
        mr_launch_stop(&l);
        return;
    }
    char *r = NULL;
    int st;
    const char *good = "{\"model\":\"MiniMax-M1\",\"prompt\":[1,2,3],\"max_tokens\":2}";
    st = post("/v1/completions", "application/json",
              "{\"model\": \"MiniMax-M1\", \"prompt\": [1,2,", 38, &r);
    expect("malformed JSON", st, 400, r);
    free(r);
    st = post("/v1/completions", "text/plain", good, strlen(good), &r);
    expect("wrong content type", st, 415, r);
    free(r);
    size_t big = 300 * 1024;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    memcpy(huge, "{\"prompt\":\"", 11);
    huge[big - 2] = '"';
    huge[big - 1] = '}';
    st = post("/v1/completions", "application/json", huge, big, &r);
    expect("body over max_body_kb", st, 413, r);
    free(r);
    free(huge);
    const char *bad_utf8 = "{\"model\":\"MiniMax-M1\",\"prompt\":\"abc\xff\xfe\",\"max_tokens\":2}";
    st = post("/v1/completions", "application/json", bad_utf8, strlen(bad_utf8), &r);
    expect("invalid UTF-8", st, 400, r);
    free(r);
    /* an invalid escape followed by invalid UTF-8: the parser's message quotes those bytes
     * (found by fuzzing: the error body must still be valid JSON) */
    const char *bad_esc = "{\"top_p\\\xc3\x8b\x8d\x8a"
                          "e,\"e\":7}";
    st = post("/v1/completions", "application/json", bad_esc, strlen(bad_esc), &r);
    expect("invalid escape + invalid UTF-8", st, 400, r);
    free(r);
    const char *neg = "{\"model\":\"MiniMax-M1\",\"prompt\":[1,2,3],\"max_tokens\":-5}";
    st = post("/v1/completions", "application/json", neg, strlen(neg), &r);
    expect("negative max_tokens", st, 400, r);
    free(r);
    const char *huge_mt =
        "{\"model\":\"MiniMax-M1\",\"prompt\":[1,2,3],\"max_tokens\":99999999999}";
    st = post("/v1/completions", "application/json", huge_mt, strlen(huge_mt), &r);
    expect("huge max_tokens", st, 400, r);
    free(r);
    const char *unknown_model = "{\"model\":\"gpt-9\",\"prompt\":[1],\"max_tokens\":1}";
    st = post("/v1/completions", "application/json", unknown_model, strlen(unknown_model), &r);
    expect("unknown model", st, 400, r);
    free(r);
    const char *wrong_type = "{\"model\":\"MiniMax-M1\",\"prompt\":[1],\"temperature\":\"hot\"}";
    st = post("/v1/completions", "application/json", wrong_type, strlen(wrong_type), &r);
    expect("wrong type", st, 400, r);
    free(r);
    const char *bad_id = "{\"model\":\"MiniMax-M1\",\"prompt\":[1,-7,3]}";
    st = post("/v1/completions", "application/json", bad_id, strlen(bad_id), &r);
    expect("token id out of range", st, 400, r);
    free(r);
    /* thousands of stop strings */
    size_t cap = 64 * 1024, n = 0;
    char *many = malloc(cap);
    n += (size_t)snprintf(many, cap, "{\"model\":\"MiniMax-M1\",\"prompt\":[1,2],\"stop\":[");
    for (int i = 0; i < 3000; i++)
        n += (size_t)snprintf(many + n, cap - n, "%s\"s%d\"", i ? "," : "", i);
    n += (size_t)snprintf(many + n, cap - n, "]}");
    st = post("/v1/completions", "application/json", many, n, &r);
    expect("3000 stop strings", st, 400, r);
    free(r);
    free(many);
    /* prompt longer than the context */
    cap = 1 << 20;
    char *longp = malloc(cap);
    n = (size_t)snprintf(longp, cap, "{\"model\":\"MiniMax-M1\",\"prompt\":[");
    for (int i = 0; i < 20000; i++) n += (size_t)snprintf(longp + n, cap - n, "%s7", i ? "," : "");
    n += (size_t)snprintf(longp + n, cap - n, "]}");
    st = post("/v1/completions", "application/json", longp, n, &r);
    expect("prompt longer than the context", st, 400, r);
    free(r);
    free(longp);
    const char *no_msgs = "{\"model\":\"MiniMax-M1\",\"messages\":[]}";
    st = post("/v1/chat/completions", "application/json", no_msgs, strlen(no_msgs), &r);
    expect("empty messages", st, 400, r);
    free(r);
    st = http_simple(g_host, g_port, "GET", "/v1/nothing", NULL, &r, 5000);
    expect("unknown path", st, 404, r);
    free(r);
    st = http_simple(g_host, g_port, "GET", "/v1/completions", NULL, &r, 5000);
    expect("wrong method", st, 405, r);
    free(r);
    /* slowloris (a): a partial request, then silence: dropped after idle_timeout_s */
    int fd = mr_sock_connect(g_host, g_port, 2000);
    const char *part = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    double t0 = mr_now_s();
    int closed = 0;
    if (fd >= 0 && write(fd, part, strlen(part)) > 0) {
        struct timeval tv = {10, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char b[256];
        closed = read(fd, b, sizeof b) <= 0 || 1; /* EOF, or a 408 before closing */
        closed = closed && mr_now_s() - t0 < 9.0;
    }
    if (fd >= 0) close(fd);
    printf("%s slowloris, stalled headers: dropped after %.1f s (idle_timeout_s 3)\n",
           closed ? "PASS" : "FAIL", mr_now_s() - t0);
    CHECK(closed, "a stalled partial request was not dropped");
    /* slowloris (b): 40 connections trickling header bytes; real requests are still served */
    int slow[40];
    for (int i = 0; i < 40; i++) {
        slow[i] = mr_sock_connect(g_host, g_port, 2000);
        if (slow[i] >= 0 && write(slow[i], part, strlen(part)) < 0) {
            close(slow[i]);
            slow[i] = -1;
        }
    }
    int served = 0;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 40; i++)
            if (slow[i] >= 0 && write(slow[i], "a", 1) != 1) {
                close(slow[i]);
                slow[i] = -1;
            }
        st = post("/v1/completions", "application/json", good, strlen(good), &r);
        served += st == 200;
        free(r);
        sleep(1);
    }
    for (int i = 0; i < 40; i++)
        if (slow[i] >= 0) close(slow[i]);
    printf("%s slowloris, 40 trickling connections: %d of 3 real requests served meanwhile\n",
           served == 3 ? "PASS" : "FAIL", served);
    CHECK(served == 3, "slow clients starved real requests");
    /* a header block larger than max_header_kb */
    char *hdrs = malloc(100 * 1024);
    size_t hn = 0;
    for (int i = 0; i < 1000; i++)
        hn += (size_t)snprintf(hdrs + hn, 100 * 1024 - hn, "X-H%d: %090d\r\n", i, i);
    http_conn c;
    st = http_request(&c, g_host, g_port, "GET", "/health", NULL, NULL, 0, hdrs, 5000) == 0
             ? c.status
             : -1;
    http_close(&c);
    free(hdrs);
    printf("%s oversized headers: %d\n", st == 431 || st == 413 || st < 0 ? "PASS" : "FAIL", st);
    CHECK(st == 431 || st == 413 || st < 0, "oversized headers accepted");
    /* still serving */
    st = post("/v1/completions", "application/json", good, strlen(good), &r);
    expect("a good request afterwards", st, 200, r);
    free(r);
    mr_launch_stop(&l);

    /* 429 when the queue is full; 503 when experts are uncovered */
    if (start(&l, "http-limits", "  max_waiting = 1;\n") != MR_OK) {
        g_failures++;
        mr_launch_stop(&l);
        return;
    }
    enum { N = 24 };
    det_job jobs[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (det_job){i, 64, NULL, 0};
        pthread_create(&th[i], NULL, det_thread, &jobs[i]);
    }
    int n429 = 0, n200 = 0, other = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].status == 429 && strcmp(error_type(jobs[i].resp), "rate_limit_error") == 0)
            n429++;
        else if (jobs[i].status == 200)
            n200++;
        else
            other++;
        free(jobs[i].resp);
    }
    printf("%s queue full: %d x 429, %d x 200, %d other (8 slots + max_waiting 1, 24 at once)\n",
           n429 > 0 && n200 >= 9 && other == 0 ? "PASS" : "FAIL", n429, n200, other);
    CHECK(n429 > 0 && n200 >= 9 && other == 0, "queue limit not enforced as 429");
    mr_launch_signal_worker(&l, 0, SIGKILL);
    mr_launch_signal_worker(&l, 1, SIGKILL);
    mr_launch_wait(&l, "DOWN", 10000);
    st = http_simple(g_host, g_port, "GET", "/health/ready", NULL, &r, 5000);
    expect("ready with every worker gone", st, 503, r);
    free(r);
    st = post("/v1/completions", "application/json", good, strlen(good), &r);
    expect("a request with every worker gone", st, 503, r);
    free(r);
    st = http_simple(g_host, g_port, "GET", "/health", NULL, &r, 5000);
    expect("liveness with every worker gone", st, 200, r);
    free(r);
    mr_launch_stop(&l);
}

/* ---- determinism ----------------------------------------------------------------------------- */

static char *completion_body(int plen, int seed, int max_tokens, int stream) {
    size_t cap = (size_t)plen * 8 + 512, n = 0;
    char *b = malloc(cap);
    n += (size_t)snprintf(b, cap,
                          "{\"model\":\"MiniMax-M1\",\"temperature\":0,\"max_tokens\":%d,"
                          "\"logprobs\":1,\"stream\":%s,\"prompt\":[",
                          max_tokens, stream ? "true" : "false");
    uint64_t st = (uint64_t)seed * 7919 + 1;
    for (int i = 0; i < plen; i++)
        n += (size_t)snprintf(b + n, cap - n, "%s%d", i ? "," : "",
                              (int)(mr_splitmix64(&st) % 200000));
    snprintf(b + n, cap - n, "]}");
    return b;
}

/* The part of a completion that must not depend on batching: text + token logprobs. */
static char *fingerprint(const char *resp) {
    json_t *j = json_loads(resp ? resp : "", 0, NULL);
    json_t *c = json_array_get(json_object_get(j, "choices"), 0);
    json_t *fp = json_pack("{s:O?,s:O?}", "text", json_object_get(c, "text"), "lp",
                           json_object_get(json_object_get(c, "logprobs"), "token_logprobs"));
    char *s = fp ? json_dumps(fp, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(fp);
    json_decref(j);
    return s;
}

static void *det_thread(void *arg) {
    det_job *j = arg;
    char *body = completion_body(j->plen, j->idx, 16, 0);
    j->status = post("/v1/completions", "application/json", body, strlen(body), &j->resp);
    free(body);
    return NULL;
}

/* Concatenated text of a streamed completion, or NULL on a broken stream. */
static char *stream_text(const char *body, int *n_done) {
    http_conn c;
    *n_done = 0;
    if (http_request(&c, g_host, g_port, "POST", "/v1/completions", "application/json", body,
                     strlen(body), NULL, 30000) != 0 ||
        c.status != 200) {
        http_close(&c);
        return NULL;
    }
    char *all = http_read_all(&c, NULL, 60000);
    http_close(&c);
    if (!all) return NULL;
    size_t cap = strlen(all) + 1, n = 0;
    char *text = calloc(1, cap);
    for (char *line = strtok(all, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "data: ", 6) != 0) continue;
        if (strcmp(line + 6, "[DONE]") == 0) {
            (*n_done)++;
            continue;
        }
        json_t *j = json_loads(line + 6, 0, NULL);
        const char *t = json_string_value(
            json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text"));
        if (t) {
            size_t l = strlen(t);
            memcpy(text + n, t, l);
            n += l;
        }
        json_decref(j);
    }
    free(all);
    return text;
}

/* 16 concurrent greedy requests (prompts 5..560 tokens) against each one alone: text and every
 * token logprob identical. */
static void sixteen_identical(const char *what) {
    enum { N = 16 };
    det_job alone[N], together[N];
    for (int i = 0; i < N; i++) {
        alone[i] = (det_job){i, 5 + i * 37, NULL, 0};
        det_thread(&alone[i]);
    }
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        together[i] = (det_job){i, 5 + i * 37, NULL, 0};
        pthread_create(&th[i], NULL, det_thread, &together[i]);
    }
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    int same = 0;
    for (int i = 0; i < N; i++) {
        char *a = fingerprint(alone[i].resp), *b = fingerprint(together[i].resp);
        int ok = alone[i].status == 200 && together[i].status == 200 && a && b && strcmp(a, b) == 0;
        same += ok;
        if (!ok) printf("  prompt %d (len %d): alone %s\n  together %s\n", i, alone[i].plen, a, b);
        free(a);
        free(b);
        free(alone[i].resp);
        free(together[i].resp);
    }
    printf("%s 16 concurrent greedy requests (prompts 5..560 tokens)%s: %d/16 identical to each "
           "alone (text and every token logprob)\n",
           same == N ? "PASS" : "FAIL", what, same);
    CHECK(same == N, "batching changed results%s", what);
}

static void scenario_determinism(void) {
    mr_launch l;
    if (start(&l, "http-determinism", NULL) != MR_OK) {
        g_failures++;
        mr_launch_stop(&l);
        return;
    }
    sixteen_identical("");
    int stream_same = 0;
    for (int i = 0; i < 4; i++) {
        char *nb = completion_body(50 + i * 100, 100 + i, 24, 0),
             *sb = completion_body(50 + i * 100, 100 + i, 24, 1);
        char *resp = NULL;
        post("/v1/completions", "application/json", nb, strlen(nb), &resp);
        json_t *j = json_loads(resp ? resp : "", 0, NULL);
        const char *t = json_string_value(
            json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text"));
        int dones;
        char *st = stream_text(sb, &dones);
        stream_same += t && st && strcmp(t, st) == 0 && dones == 1;
        json_decref(j);
        free(resp);
        free(st);
        free(nb);
        free(sb);
    }
    printf("%s streaming and non-streaming give the same text: %d/4\n",
           stream_same == 4 ? "PASS" : "FAIL", stream_same);
    CHECK(stream_same == 4, "streaming differs");
    mr_launch_stop(&l);
}

/* A KV cache of 64 blocks of 16 positions (1024 in all) shared by 8 slots: the 16 requests above
 * (577 positions at most, ~4800 together) take turns for blocks like for slots, with unchanged
 * results; the context limit is lowered to what the cache holds, and a longer request is refused
 * with the reason while the server keeps serving. */
static void scenario_kv_sharing(void) {
    mr_launch l;
    if (start(&l, "http-kv-sharing", "  kv_block_tokens = 16;\n  kv_blocks = 64;\n") != MR_OK) {
        g_failures++;
        mr_launch_stop(&l);
        return;
    }
    sixteen_identical(" with 64 shared KV blocks");
    char *body = completion_body(1100, 3, 4, 0), *resp = NULL;
    int st = post("/v1/completions", "application/json", body, strlen(body), &resp);
    int ok = st == 400 && resp && strstr(resp, "1024");
    printf("%s a 1100-token prompt over the lowered context limit: %d %.200s\n",
           ok ? "PASS" : "FAIL", st, resp ? resp : "");
    CHECK(ok, "over-long request not refused with the limit");
    free(body);
    free(resp);
    det_job after = {0, 40, NULL, 0};
    det_thread(&after);
    printf("%s the server answers after it: %d\n", after.status == 200 ? "PASS" : "FAIL",
           after.status);
    CHECK(after.status == 200, "no answer after the refused request");
    free(after.resp);
    mr_launch_stop(&l);
}

/* ---- load ------------------------------------------------------------------------------------ */

#define N_PROMPTS 8
static char *g_ref[N_PROMPTS];  /* reference text per prompt (greedy, non-streaming) */
static char *g_body[N_PROMPTS]; /* streaming request bodies */
static volatile int g_stop_load;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static double *g_ttft, *g_itl;
static size_t g_n_ttft, g_n_itl, g_cap_ttft, g_cap_itl;
static int g_completed, g_disconnected, g_broken;

static void record(double **arr, size_t *n, size_t *cap, double v) {
    if (*n == *cap) *arr = realloc(*arr, (*cap = *cap ? *cap * 2 : 1024) * sizeof **arr);
    (*arr)[(*n)++] = v;
}

static void *load_client(void *arg) {
    uint64_t rng = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    while (!g_stop_load) {
        int p = (int)(mr_splitmix64(&rng) % N_PROMPTS);
        int disconnect_after =
            (mr_splitmix64(&rng) % 5 == 0) ? 1 + (int)(mr_splitmix64(&rng) % 6) : -1;
        http_conn c;
        double t0 = mr_now_s(), tlast = 0;
        if (http_request(&c, g_host, g_port, "POST", "/v1/completions", "application/json",
                         g_body[p], strlen(g_body[p]), NULL, 60000) != 0 ||
            c.status != 200) {
            http_close(&c);
            pthread_mutex_lock(&g_mu);
            g_broken++;
            pthread_mutex_unlock(&g_mu);
            continue;
        }
        char text[8192] = "", line[65536];
        size_t tl = 0, ll = 0;
        int chunks = 0, dones = 0, finished = 0, cut = 0;
        double first = 0;
        char buf[4096];
        long r;
        while ((r = http_read(&c, buf, sizeof buf, 60000)) > 0 && !cut) {
            for (long i = 0; i < r; i++) {
                if (buf[i] != '\n') {
                    if (ll + 1 < sizeof line) line[ll++] = buf[i];
                    continue;
                }
                line[ll] = '\0';
                ll = 0;
                if (strncmp(line, "data: ", 6) != 0) continue;
                if (strcmp(line + 6, "[DONE]") == 0) {
                    dones++;
                    continue;
                }
                json_t *j = json_loads(line + 6, 0, NULL);
                json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
                const char *t = json_string_value(json_object_get(ch, "text"));
                if (json_is_string(json_object_get(ch, "finish_reason"))) finished++;
                if (t && *t) {
                    double now = mr_now_s();
                    pthread_mutex_lock(&g_mu);
                    if (!first)
                        record(&g_ttft, &g_n_ttft, &g_cap_ttft, (first = now) - t0);
                    else
                        record(&g_itl, &g_n_itl, &g_cap_itl, now - tlast);
                    pthread_mutex_unlock(&g_mu);
                    tlast = now;
                    size_t l = strlen(t);
                    if (tl + l < sizeof text) memcpy(text + tl, t, l), tl += l;
                    text[tl] = '\0';
                    chunks++;
                }
                json_decref(j);
                if (disconnect_after > 0 && chunks >= disconnect_after) cut = 1;
            }
        }
        http_close(&c);
        pthread_mutex_lock(&g_mu);
        if (cut)
            g_disconnected++;
        else if (dones == 1 && finished == 1 && strcmp(text, g_ref[p]) == 0)
            g_completed++;
        else {
            g_broken++;
            printf("  broken stream for prompt %d: dones %d finished %d text '%.60s' ref '%.60s'\n",
                   p, dones, finished, text, g_ref[p]);
        }
        pthread_mutex_unlock(&g_mu);
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double q) {
    if (!n) return NAN;
    qsort(v, n, sizeof *v, cmp_d);
    return v[(size_t)(q * (double)(n - 1) + 0.5)];
}

static double metric_value(const char *text, const char *name) {
    const char *p = text;
    size_t nl = strlen(name);
    while ((p = strstr(p, name)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[nl] == ' ') return atof(p + nl + 1);
        p += nl;
    }
    return NAN;
}

static void scenario_load(void) {
    mr_launch l;
    if (start(&l, "http-load", NULL) != MR_OK) {
        g_failures++;
        mr_launch_stop(&l);
        return;
    }
    for (int i = 0; i < N_PROMPTS; i++) {
        char *nb = completion_body(8 + i * 9, 500 + i, 32, 0);
        char *resp = NULL;
        post("/v1/completions", "application/json", nb, strlen(nb), &resp);
        json_t *j = json_loads(resp ? resp : "", 0, NULL);
        const char *t = json_string_value(
            json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text"));
        g_ref[i] = strdup(t ? t : "(none)");
        json_decref(j);
        free(resp);
        free(nb);
        g_body[i] = completion_body(8 + i * 9, 500 + i, 32, 1);
        /* streams carry no logprobs in the load test */
        char *lp = strstr(g_body[i], "\"logprobs\":1,");
        if (lp) memmove(lp, lp + 13, strlen(lp + 13) + 1);
    }
    pthread_t th[256];
    int n = g_clients < 256 ? g_clients : 256;
    double t0 = mr_now_s();
    for (int i = 0; i < n; i++)
        pthread_create(&th[i], NULL, load_client, (void *)(uintptr_t)(i + 1));
    sleep((unsigned)g_seconds);
    g_stop_load = 1;
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    double elapsed = mr_now_s() - t0;
    /* every slot and queue entry must be released */
    double running = NAN, waiting = NAN, slots = NAN;
    for (int t = 0; t < 50; t++) {
        char *m = NULL;
        if (http_simple(g_host, g_port, "GET", "/metrics", NULL, &m, 5000) == 200 && m) {
            running = metric_value(m, "moerack_num_requests_running");
            waiting = metric_value(m, "moerack_num_requests_waiting");
            slots = metric_value(m, "moerack_state_slots_used");
        }
        free(m);
        if (running == 0 && waiting == 0 && slots == 0) break;
        usleep(200000);
    }
    double ttft50 = pct(g_ttft, g_n_ttft, 0.5), ttft99 = pct(g_ttft, g_n_ttft, 0.99);
    double itl50 = pct(g_itl, g_n_itl, 0.5), itl99 = pct(g_itl, g_n_itl, 0.99);
    printf("load: %d clients for %.0f s: %d streams completed and verified, %d disconnected on "
           "purpose, "
           "%d broken\n",
           n, elapsed, g_completed, g_disconnected, g_broken);
    printf("load: TTFT p50 %.1f ms p99 %.1f ms; inter-token p50 %.1f ms p99 %.1f ms (%zu / %zu "
           "samples)\n",
           ttft50 * 1e3, ttft99 * 1e3, itl50 * 1e3, itl99 * 1e3, g_n_ttft, g_n_itl);
    printf("%s after the load: running %g, waiting %g, slots used %g\n",
           running == 0 && waiting == 0 && slots == 0 ? "PASS" : "FAIL", running, waiting, slots);
    CHECK(g_broken == 0, "%d broken streams", g_broken);
    CHECK(g_completed > 0, "no stream completed");
    CHECK(running == 0 && waiting == 0 && slots == 0, "state leaked");
    mr_launch_stop(&l);
}

/* ---- the official openai client -------------------------------------------------------------- */

static void scenario_openai(void) {
    char npm_dir[2048], cmd[8192];
    snprintf(npm_dir, sizeof npm_dir, "%s/npm", g_work);
    mkdir(g_work, 0755);
    mkdir(npm_dir, 0755);
    if (system("command -v node >/dev/null && command -v npm >/dev/null") != 0) {
        printf("SKIP node/npm not installed\n");
        exit(77);
    }
    snprintf(cmd, sizeof cmd,
             "cd '%s' && (test -d node_modules/openai || npm install --no-audit --no-fund --silent "
             "openai@4 parse-prometheus-text-format@1 >npm.log 2>&1)",
             npm_dir);
    if (system(cmd) != 0) {
        printf("SKIP npm could not install the openai package (offline?); see %s/npm.log\n",
               npm_dir);
        exit(77);
    }
    const char *tool_text = "<tool_calls>\\n{\\\"name\\\": \\\"get_weather\\\", \\\"arguments\\\": "
                            "{\\\"city\\\": \\\"Paris\\\"}}\\n</tool_calls>";
    char extra[1024];
    snprintf(extra, sizeof extra,
             "  test_forced_output = \"<think>\\nThe user wants the weather.\\n</think>\\n%s\";\n"
             "  test_forced_answer = \"It is sunny in Paris.\";\n",
             tool_text);
    mr_launch l;
    if (start(&l, "http-openai", extra) != MR_OK) {
        g_failures++;
        mr_launch_stop(&l);
        return;
    }
    /* ES modules resolve packages next to the importing file: run a copy inside npm_dir */
    snprintf(cmd, sizeof cmd,
             "cp '%s/tests/http/openai_client_test.mjs' '%s/' && node '%s/openai_client_test.mjs' "
             "http://%s:%d",
             g_src, npm_dir, npm_dir, g_host, g_port);
    int rc = system(cmd);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "the openai client test failed (exit %d)",
          WEXITSTATUS(rc));
    mr_launch_stop(&l);
}

int main(int argc, char **argv) {
    static const struct option opts[] = {{"bin-dir", required_argument, 0, 'b'},
                                         {"model", required_argument, 0, 'm'},
                                         {"work", required_argument, 0, 'w'},
                                         {"source", required_argument, 0, 's'},
                                         {"seconds", required_argument, 0, 't'},
                                         {"clients", required_argument, 0, 'c'},
                                         {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'b':
            g_bin = optarg;
            break;
        case 'm':
            g_model = optarg;
            break;
        case 'w':
            g_work = optarg;
            break;
        case 's':
            g_src = optarg;
            break;
        case 't':
            g_seconds = atoi(optarg);
            break;
        case 'c':
            g_clients = atoi(optarg);
            break;
        default:
            return 2;
        }
    }
    if (!g_bin || !g_model || !g_work || optind != argc - 1) {
        fprintf(stderr,
                "usage: http_check --bin-dir DIR --model DIR --work DIR [--source DIR] SCENARIO\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    mr_log_set_short(1);
    const char *sc = argv[optind];
    if (strcmp(sc, "hostile") == 0)
        scenario_hostile();
    else if (strcmp(sc, "determinism") == 0)
        scenario_determinism();
    else if (strcmp(sc, "kv-sharing") == 0)
        scenario_kv_sharing();
    else if (strcmp(sc, "load") == 0)
        scenario_load();
    else if (strcmp(sc, "openai") == 0)
        scenario_openai();
    else {
        fprintf(stderr, "unknown scenario %s\n", sc);
        return 2;
    }
    char cmd[2200], out[256] = "";
    snprintf(cmd, sizeof cmd, "grep -l -E 'Sanitizer|runtime error:' '%s'/*/*.log 2>/dev/null",
             g_work);
    FILE *p = popen(cmd, "r");
    if (p && fgets(out, sizeof out, p)) {
        printf("FAIL sanitizer report in %s", out);
        g_failures++;
    }
    if (p) pclose(p);
    printf("%s: %d failure(s)\n", sc, g_failures);
    return g_failures ? 1 : 0;
}
