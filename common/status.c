#include "common/status.h"

const char *mr_status_str(mr_status s) {
    switch (s) {
    case MR_OK:
        return "ok";
    case MR_ERR_INVALID:
        return "invalid argument";
    case MR_ERR_NOMEM:
        return "out of memory";
    case MR_ERR_IO:
        return "I/O error";
    case MR_ERR_FORMAT:
        return "format error";
    case MR_ERR_NOT_FOUND:
        return "not found";
    case MR_ERR_UNSUPPORTED:
        return "unsupported";
    case MR_ERR_PROTO:
        return "protocol error";
    case MR_ERR_TIMEOUT:
        return "timed out";
    case MR_ERR_CLOSED:
        return "closed";
    case MR_ERR_FULL:
        return "resource exhausted";
    case MR_ERR_INTERNAL:
        return "internal error";
    }
    return "unknown status";
}
