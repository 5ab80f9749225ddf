/* check.h — the few check macros of the project.
 *
 * MR_CHECK(expr)            evaluate an mr_status expression, return it if not MR_OK
 * MR_CHECK_GOTO(expr, lbl)  same, but store into a local `st` and jump to an unwind label
 * MR_SYSCHECK(call)         run a syscall, retrying on EINTR; evaluates to its result
 * Log once where an error is first detected; these macros do not log. */
#ifndef MR_CHECK_H
#define MR_CHECK_H

#include <errno.h>

#include "common/status.h"

#define MR_CHECK(expr)                                                                             \
    do {                                                                                           \
        mr_status mr_check_st_ = (expr);                                                           \
        if (mr_check_st_ != MR_OK) return mr_check_st_;                                            \
    } while (0)

#define MR_CHECK_GOTO(expr, label)                                                                 \
    do {                                                                                           \
        st = (expr);                                                                               \
        if (st != MR_OK) goto label;                                                               \
    } while (0)

#define MR_SYSCHECK(call)                                                                          \
    ({                                                                                             \
        __typeof__(call) mr_sys_rc_;                                                               \
        do {                                                                                       \
            mr_sys_rc_ = (call);                                                                   \
        } while (mr_sys_rc_ == -1 && errno == EINTR);                                              \
        mr_sys_rc_;                                                                                \
    })

#define MR_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MR_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define MR_MAX(a, b)    ((a) > (b) ? (a) : (b))

#endif
