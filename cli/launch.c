#include "cli/launch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cluster_client.h"
#include "common/log.h"
#include "common/timeutil.h"

void mr_launch_self_dir(char *out, size_t cap) {
    ssize_t n = readlink("/proc/self/exe", out, cap - 1);
    if (n <= 0) {
        snprintf(out, cap, ".");
        return;
    }
    out[n] = '\0';
    char *slash = strrchr(out, '/');
    if (slash) *slash = '\0';
}

/* A loopback port nobody listens on right now. */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static pid_t spawn(const char *bin, char *const argv[], const char *log_path) {
    fflush(stdout); /* or the child's freopen would write our buffered output a second time */
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = freopen(log_path, "a", stderr);
        (void)f;
        if (!freopen("/dev/null", "w", stdout)) _exit(127);
        execv(bin, argv);
        fprintf(stderr, "cannot exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    return pid;
}

mr_status mr_launch_worker(mr_launch *l, int i) {
    char bin[PATH_MAX], name[16], log[PATH_MAX];
    snprintf(bin, sizeof bin, "%s/../worker/moerack-worker", l->p.bin_dir);
    if (access(bin, X_OK) != 0) snprintf(bin, sizeof bin, "%s/moerack-worker", l->p.bin_dir);
    snprintf(name, sizeof name, "w%d", i);
    snprintf(log, sizeof log, "%s/%s.log", l->p.work_dir, name);
    char *argv[] = {bin,
                    "--config",
                    l->config,
                    "--name",
                    name,
                    "--log-level",
                    (char *)(l->p.log_level ? l->p.log_level : "info"),
                    NULL};
    l->workers[i] = spawn(bin, argv, log);
    return l->workers[i] > 0 ? MR_OK : MR_ERR_IO;
}

mr_status mr_launch_start(const mr_launch_params *p, mr_launch *out) {
    memset(out, 0, sizeof *out);
    out->p = *p;
    snprintf(out->work_dir, sizeof out->work_dir, "%s", p->work_dir);
    out->p.work_dir = out->work_dir;
    if (p->n_workers < 1 || p->n_workers > MR_LAUNCH_MAX_WORKERS) return MR_ERR_INVALID;
    snprintf(out->config, sizeof out->config, "%s/cluster.cfg", p->work_dir);
    snprintf(out->host, sizeof out->host, "127.0.0.1");
    out->port = free_port();
    FILE *f = fopen(out->config, "w");
    if (!f || out->port < 0) {
        MR_LOG_ERROR(MR_LOG_CLI, "%s: cannot write the cluster config", out->config);
        if (f) fclose(f);
        return MR_ERR_IO;
    }
    fprintf(f,
            "cluster = { name = \"launch\"; model = \"%s\"; transport = \"tcp\"; %s};\n"
            "coordinator = {\n  listen = \"127.0.0.1:%d\";\n  threads = %d;\n"
            "  max_batch_tokens = %d;\n  max_seqs = 8;\n  max_context = 16384;\n"
            "  micro_batches = %d;\n  replicas = %d;\n  expert_timeout_ms = %d;\n"
            "  heartbeat_interval_ms = 200;\n  worker_timeout_ms = 5000;\n%s};\nworkers = (\n",
            p->model, p->extra_cluster ? p->extra_cluster : "", out->port, p->coord_threads,
            p->max_batch_tokens ? p->max_batch_tokens : 512,
            p->micro_batches ? p->micro_batches : 2, p->replicas ? p->replicas : 1,
            p->expert_timeout_ms ? p->expert_timeout_ms : 10000,
            p->extra_coordinator ? p->extra_coordinator : "");
    for (int i = 0; i < p->n_workers; i++) {
        fprintf(f, "  { name = \"w%d\"; data_listen = \"127.0.0.1:%d\"; threads = %d; ", i,
                free_port(), p->worker_threads);
        if (p->worker_backend) fprintf(f, "backend = \"%s\"; ", p->worker_backend);
        fprintf(f, "}%s\n", i + 1 < p->n_workers ? "," : "");
    }
    fprintf(f, ");\n");
    fclose(f);
    char bin[PATH_MAX], log[PATH_MAX];
    snprintf(bin, sizeof bin, "%s/../coordinator/moerack-coordinator", p->bin_dir);
    if (access(bin, X_OK) != 0) snprintf(bin, sizeof bin, "%s/moerack-coordinator", p->bin_dir);
    snprintf(log, sizeof log, "%s/coordinator.log", p->work_dir);
    char *argv[] = {
        bin, "--config", out->config, "--log-level", (char *)(p->log_level ? p->log_level : "info"),
        NULL};
    out->coord = spawn(bin, argv, log);
    if (out->coord <= 0) return MR_ERR_IO;
    for (int i = 0; i < p->n_workers; i++)
        if (mr_launch_worker(out, i) != MR_OK) return MR_ERR_IO;
    return MR_OK;
}

mr_status mr_launch_wait(mr_launch *l, const char *verdict, int timeout_ms) {
    double deadline = mr_now_s() + timeout_ms / 1000.0;
    while (mr_now_s() < deadline) {
        Moerack__Envelope *env;
        if (mr_client_status(l->host, l->port, &env) == MR_OK) {
            int ok = strcmp(env->status_reply->verdict, verdict) == 0;
            mr_frame_free(env);
            if (ok) return MR_OK;
        }
        int st;
        if (l->coord > 0 && waitpid(l->coord, &st, WNOHANG) == l->coord) {
            MR_LOG_ERROR(MR_LOG_CLI, "the coordinator exited (see %s/coordinator.log)",
                         l->p.work_dir);
            l->coord = 0;
            return MR_ERR_CLOSED;
        }
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
    return MR_ERR_TIMEOUT;
}

void mr_launch_signal_worker(mr_launch *l, int i, int sig) {
    if (l->workers[i] <= 0) return;
    kill(l->workers[i], sig);
    if (sig == SIGKILL) {
        waitpid(l->workers[i], NULL, 0);
        l->workers[i] = 0;
    }
}

static void stop_pid(pid_t *pid) {
    if (*pid <= 0) return;
    kill(*pid, SIGCONT);
    kill(*pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(*pid, NULL, WNOHANG) == *pid) {
            *pid = 0;
            return;
        }
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    kill(*pid, SIGKILL);
    waitpid(*pid, NULL, 0);
    *pid = 0;
}

void mr_launch_stop(mr_launch *l) {
    stop_pid(&l->coord);
    for (int i = 0; i < l->p.n_workers; i++) stop_pid(&l->workers[i]);
}
