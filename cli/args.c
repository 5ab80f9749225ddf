#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/log.h"

long long mr_cli_parse_int(const char *opt, const char *s, long long lo, long long hi) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        MR_LOG_ERROR(MR_LOG_CLI, "%s: '%s' is not an integer in [%lld, %lld]", opt, s, lo, hi);
        return -1;
    }
    return v;
}

int mr_cli_parse_ids(const char *s, int vocab, int32_t **out) {
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return -1;
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || (*end && *end != ',') || v < 0 || v >= vocab) {
            MR_LOG_ERROR(MR_LOG_CLI, "--ids: entry %d is not a token id in [0, %d)", n + 1, vocab);
            free(ids);
            return -1;
        }
        ids[n++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (n == 0) {
        MR_LOG_ERROR(MR_LOG_CLI, "--ids: empty list");
        free(ids);
        return -1;
    }
    *out = ids;
    return n;
}

int mr_cli_parse_gpus(const char *s, int *devs, int max) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || (*end && *end != ',') || v < 0 || v > 1023) {
            MR_LOG_ERROR(MR_LOG_CLI, "--gpus: entry %d of '%s' is not a GPU number in [0, 1023]",
                         n + 1, s);
            return -1;
        }
        if (n == max) {
            MR_LOG_ERROR(MR_LOG_CLI, "--gpus: more than %d GPUs", max);
            return -1;
        }
        for (int i = 0; i < n; i++)
            if (devs[i] == (int)v) {
                MR_LOG_ERROR(MR_LOG_CLI, "--gpus: GPU %ld is listed twice", v);
                return -1;
            }
        devs[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (n == 0) {
        MR_LOG_ERROR(MR_LOG_CLI, "--gpus: empty list");
        return -1;
    }
    return n;
}
