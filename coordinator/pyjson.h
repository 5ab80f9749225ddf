/* pyjson.h — JSON text exactly as Python's json.dumps(value, ensure_ascii=False) writes it.
 *
 * The chat template's `tojson` filter (Hugging Face overrides Jinja's with this json.dumps call)
 * and the tool-call arguments handed back to clients must match Python byte for byte: separators
 * ", " and ": ", keys in the order given, non-ASCII kept, control characters as \uXXXX in lower
 * case hex, and floats as Python's repr (1.0, 1e-05, 1e+16). */
#ifndef MR_PYJSON_H
#define MR_PYJSON_H

#include <jansson.h>
#include <stddef.h>

#include "common/status.h"

/* A growable byte buffer; `oom` is set (and further appends ignored) when memory runs out. */
typedef struct mr_sbuf {
    char *p;
    size_t n, cap;
    int oom;
} mr_sbuf;

void mr_sbuf_add(mr_sbuf *b, const char *s, size_t n);
void mr_sbuf_adds(mr_sbuf *b, const char *s);
/* Takes the NUL-terminated contents (the buffer is emptied); MR_ERR_NOMEM if oom was set. */
mr_status mr_sbuf_take(mr_sbuf *b, char **out, size_t *len);
void mr_sbuf_free(mr_sbuf *b);

/* Appends the Python json.dumps(ensure_ascii=False) text of V. Reals that are not finite cannot
 * come from jansson. */
void mr_pyjson_dump(mr_sbuf *b, const json_t *v);
/* Python's repr() of a finite double, e.g. "0.1", "1e-05", "100.0". */
void mr_pyjson_float_repr(double d, char out[32]);

#endif
