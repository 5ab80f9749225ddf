/* config_table.h — declarative option tables over libconfig groups.
 *
 * One table per config group lists every option: name, type, where it goes in the target struct,
 * default, bounds, doc string. The same table drives parsing (unknown keys, wrong types and
 * out-of-range values are rejected with file:line), defaults, `--dump-config` (libconfig syntax)
 * and the reference in docs/config.md (markdown). Strings are copied into fixed-size char arrays
 * inside the target struct, so a parsed config owns no heap memory.
 *
 *   static const mr_opt coordinator_opts[] = {
 *       MR_OPT_INT_(mr_coord_conf, max_seqs, 1, 1 << 16, "8", "sequence state slots"), ...};
 */
#ifndef MR_CONFIG_TABLE_H
#define MR_CONFIG_TABLE_H

#include <stddef.h>
#include <stdio.h>

#include "common/status.h"

struct config_setting_t;

typedef enum mr_opt_type {
    MR_OPT_INT,    /* int */
    MR_OPT_INT64,  /* long long */
    MR_OPT_DOUBLE, /* double */
    MR_OPT_BOOL,   /* int 0/1 */
    MR_OPT_STRING, /* char[size] */
    MR_OPT_ENUM,   /* char[size], one of `choices` */
    MR_OPT_INTS,   /* mr_opt_ints: a list of 1 .. MR_OPT_INTS_MAX distinct integers */
} mr_opt_type;

#define MR_OPT_INTS_MAX 16
/* A list option's value: n entries, each in the option's bounds, no two equal. */
typedef struct mr_opt_ints {
    int n;
    int v[MR_OPT_INTS_MAX];
} mr_opt_ints;

typedef struct mr_opt {
    const char *name;
    mr_opt_type type;
    size_t offset;
    size_t size;                /* strings: capacity of the char array */
    const char *dflt;           /* default as text; NULL means required */
    double min, max;            /* numbers: inclusive bounds */
    const char *const *choices; /* enums: NULL-terminated */
    const char *doc;
} mr_opt;

#define MR_OPT_INT_(T, f, lo, hi, d, doc)                                                          \
    { #f, MR_OPT_INT, offsetof(T, f), sizeof(((T *)0)->f), d, lo, hi, NULL, doc }
#define MR_OPT_INT64_(T, f, lo, hi, d, doc)                                                        \
    { #f, MR_OPT_INT64, offsetof(T, f), sizeof(((T *)0)->f), d, lo, hi, NULL, doc }
#define MR_OPT_DOUBLE_(T, f, lo, hi, d, doc)                                                       \
    { #f, MR_OPT_DOUBLE, offsetof(T, f), sizeof(((T *)0)->f), d, lo, hi, NULL, doc }
#define MR_OPT_BOOL_(T, f, d, doc)                                                                 \
    { #f, MR_OPT_BOOL, offsetof(T, f), sizeof(int), d, 0, 1, NULL, doc }
#define MR_OPT_STRING_(T, f, d, doc)                                                               \
    { #f, MR_OPT_STRING, offsetof(T, f), sizeof(((T *)0)->f), d, 0, 0, NULL, doc }
/* d: the default as libconfig text, e.g. "[0]" */
#define MR_OPT_INTS_(T, f, lo, hi, d, doc)                                                         \
    { #f, MR_OPT_INTS, offsetof(T, f), sizeof(mr_opt_ints), d, lo, hi, NULL, doc }
#define MR_OPT_ENUM_(T, f, choices, d, doc)                                                        \
    { #f, MR_OPT_ENUM, offsetof(T, f), sizeof(((T *)0)->f), d, 0, 0, choices, doc }

typedef struct mr_opt_table {
    const char *group; /* "coordinator", "workers[]", ... (for messages and docs) */
    const mr_opt *opts;
    int n_opts;
    const char *doc;
} mr_opt_table;

/* Sets every option to its default (required ones to zero / empty). */
void mr_opt_defaults(const mr_opt_table *t, void *target);
/* Applies a libconfig group (may be NULL: defaults only, then required options fail).
 * `file` names the config file in messages; `where` names the group instance ("workers[1]").
 * Logs one error per problem with file:line and returns MR_ERR_INVALID if any. */
mr_status mr_opt_apply(const mr_opt_table *t, const struct config_setting_t *group,
                       const char *file, const char *where, void *target);
/* Writes the values as a libconfig group body, indented. */
void mr_opt_dump(const mr_opt_table *t, const void *target, FILE *out, int indent);
/* Writes the table as a markdown section. */
void mr_opt_markdown(const mr_opt_table *t, FILE *out);

/* "host:port" -> host (cap bytes) and port; logs with file/line context on error. */
mr_status mr_parse_endpoint(const char *s, char *host, size_t cap, int *port);

#endif
