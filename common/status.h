/* status.h — the one status enum of the project.
 *
 * Every fallible function returns an mr_status. Foreign error codes (errno, CUDA, verbs, jansson)
 * are translated at the boundary where they are first seen, and logged there once. */
#ifndef MR_STATUS_H
#define MR_STATUS_H

typedef enum mr_status {
    MR_OK = 0,
    MR_ERR_INVALID,     /* bad argument or bad input (config, checkpoint, request) */
    MR_ERR_NOMEM,       /* allocation failed */
    MR_ERR_IO,          /* read/write/open failed */
    MR_ERR_FORMAT,      /* a file or message does not follow its format */
    MR_ERR_NOT_FOUND,   /* a named thing (tensor, key, file) is missing */
    MR_ERR_UNSUPPORTED, /* valid but not implemented here (dtype, backend, feature) */
    MR_ERR_PROTO,       /* peer broke the wire protocol */
    MR_ERR_TIMEOUT,     /* a deadline passed */
    MR_ERR_CLOSED,      /* peer or resource closed */
    MR_ERR_FULL,        /* a pool or queue is exhausted */
    MR_ERR_INTERNAL,    /* a bug: an invariant did not hold */
} mr_status;

const char *mr_status_str(mr_status s);

#endif
