#include "common/log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static mr_log_level g_level = MR_LOG_LEVEL_INFO;
static unsigned g_mask = MR_LOG_ALL;
static int g_short = 0;
static mr_log_sink_fn g_sink = NULL;
static void *g_sink_user = NULL;

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};
static const char level_letters[] = "EWIDT";

void mr_log_set_level(mr_log_level level) {
    g_level = level;
}
void mr_log_set_mask(unsigned mask) {
    g_mask = mask;
}
void mr_log_set_short(int short_style) {
    g_short = short_style;
}
void mr_log_set_sink(mr_log_sink_fn fn, void *user) {
    g_sink = fn;
    g_sink_user = user;
}

int mr_log_enabled(mr_log_level level, unsigned subsys) {
    return level <= g_level && (level == MR_LOG_LEVEL_ERROR || (subsys & g_mask));
}

int mr_log_level_parse(const char *s) {
    for (int i = 0; i < 5; i++)
        if (strcasecmp(s, level_names[i]) == 0) return i;
    return -1;
}

static const char *subsys_name(unsigned subsys) {
    static const char *const names[] = {"core", "ckpt", "model", "kern", "net", "sched",
                                        "gpu",  "http", "conf",  "cli",  "text"};
    for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (subsys & (1u << i)) return names[i];
    return "-";
}

void mr_log_write(mr_log_level level, unsigned subsys, const char *fmt, ...) {
    char line[2048];
    size_t n = 0;
    if (g_short) {
        n = (size_t)snprintf(line, sizeof line, "%s: ", level_names[level]);
    } else {
        struct timeval tv;
        struct tm tm;
        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof line - n, ".%03dZ %c %s: ", (int)(tv.tv_usec / 1000),
                              level_letters[level], subsys_name(subsys));
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    n += (size_t)m;
    if (n > sizeof line - 2) n = sizeof line - 2;
    line[n++] = '\n';
    line[n] = '\0';
    if (g_sink) {
        line[n - 1] = '\0';
        g_sink(g_sink_user, level, subsys, line);
        return;
    }
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

const char *mr_human_bytes(size_t bytes, char out[16]) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 5) v /= 1024, u++;
    if (u == 0)
        snprintf(out, 16, "%zu B", bytes);
    else
        snprintf(out, 16, "%.1f %s", v, units[u]);
    return out;
}
