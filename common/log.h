/* log.h — one logging family for the whole project.
 *
 *   MR_LOG_ERROR(MR_LOG_CKPT, "%s: tensor '%s' missing", file, name);
 *
 * Levels are checked before formatting, so disabled DEBUG lines cost one branch. Output goes to
 * stderr unless redirected with mr_log_set_sink() (tests capture it that way). Each message is
 * written with a single write so lines from different threads never interleave. */
#ifndef MR_LOG_H
#define MR_LOG_H

#include <stddef.h>

#include <stdarg.h>

typedef enum mr_log_level {
    MR_LOG_LEVEL_ERROR = 0,
    MR_LOG_LEVEL_WARN,
    MR_LOG_LEVEL_INFO,
    MR_LOG_LEVEL_DEBUG,
    MR_LOG_LEVEL_TRACE,
} mr_log_level;

/* Subsystems, a bit each, so a mask can select them. */
enum {
    MR_LOG_CORE = 1u << 0,
    MR_LOG_CKPT = 1u << 1,
    MR_LOG_MODEL = 1u << 2,
    MR_LOG_KERN = 1u << 3,
    MR_LOG_NET = 1u << 4,
    MR_LOG_SCHED = 1u << 5,
    MR_LOG_GPU = 1u << 6,
    MR_LOG_HTTP = 1u << 7,
    MR_LOG_CONF = 1u << 8,
    MR_LOG_CLI = 1u << 9,
    MR_LOG_TEXT = 1u << 10, /* tokenizer, chat template, output parser */
    MR_LOG_ALL = 0xffffffffu,
};

typedef void (*mr_log_sink_fn)(void *user, mr_log_level level, unsigned subsys, const char *line);

/* Global logging settings are the one piece of process-wide state: they are set at start-up by
 * main() (or a test) before threads start, and only read afterwards. */
void mr_log_set_level(mr_log_level level);
void mr_log_set_mask(unsigned mask);
/* short=1: "error: msg" (CLI); short=0: "2026-11-21T10:00:00.123Z E ckpt: msg" (daemons). */
void mr_log_set_short(int short_style);
void mr_log_set_sink(mr_log_sink_fn fn, void *user); /* NULL restores stderr */
int mr_log_enabled(mr_log_level level, unsigned subsys);
/* Parse "error|warn|info|debug|trace"; returns -1 if unknown. */
int mr_log_level_parse(const char *s);

void mr_log_write(mr_log_level level, unsigned subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define MR_LOG_AT(level, subsys, ...)                                                              \
    do {                                                                                           \
        if (mr_log_enabled((level), (subsys))) mr_log_write((level), (subsys), __VA_ARGS__);       \
    } while (0)
#define MR_LOG_ERROR(subsys, ...) MR_LOG_AT(MR_LOG_LEVEL_ERROR, subsys, __VA_ARGS__)
#define MR_LOG_WARN(subsys, ...)  MR_LOG_AT(MR_LOG_LEVEL_WARN, subsys, __VA_ARGS__)
#define MR_LOG_INFO(subsys, ...)  MR_LOG_AT(MR_LOG_LEVEL_INFO, subsys, __VA_ARGS__)
#define MR_LOG_DEBUG(subsys, ...) MR_LOG_AT(MR_LOG_LEVEL_DEBUG, subsys, __VA_ARGS__)

/* "12 B", "968.0 KiB", "6.4 GiB": a byte count for humans, written into out (16 bytes). */
const char *mr_human_bytes(size_t bytes, char out[16]);

#endif
