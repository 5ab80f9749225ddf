/* pyjson.c — Python json.dumps(ensure_ascii=False) (see pyjson.h). */
#include "coordinator/pyjson.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mr_sbuf_add(mr_sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void mr_sbuf_adds(mr_sbuf *b, const char *s) {
    mr_sbuf_add(b, s, strlen(s));
}

mr_status mr_sbuf_take(mr_sbuf *b, char **out, size_t *len) {
    if (!b->oom && !b->p) mr_sbuf_add(b, "", 0);
    if (b->oom) {
        mr_sbuf_free(b);
        return MR_ERR_NOMEM;
    }
    *out = b->p;
    *len = b->n;
    memset(b, 0, sizeof *b);
    return MR_OK;
}

void mr_sbuf_free(mr_sbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void dump_string(mr_sbuf *b, const char *s, size_t n) {
    mr_sbuf_add(b, "\"", 1);
    size_t run = 0; /* bytes copied verbatim in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[8];
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        default:
            if (c < 0x20) {
                snprintf(u, sizeof u, "\\u%04x", c);
                esc = u;
            }
        }
        if (!esc) continue;
        mr_sbuf_add(b, s + run, i - run);
        mr_sbuf_adds(b, esc);
        run = i + 1;
    }
    mr_sbuf_add(b, s + run, n - run);
    mr_sbuf_add(b, "\"", 1);
}

void mr_pyjson_float_repr(double d, char out[32]) {
    if (d == 0) {
        strcpy(out, signbit(d) ? "-0.0" : "0.0");
        return;
    }
    char e[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) { /* the shortest digits that read back the same */
        snprintf(e, sizeof e, "%.*e", prec - 1, d);
        if (strtod(e, NULL) == d) break;
    }
    /* e is "-d.ddde+XX": collect sign, digits and exponent */
    const char *p = e;
    int neg = *p == '-';
    if (neg) p++;
    char dig[24];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') dig[nd++] = *p;
    int ex = atoi(p + 1);
    while (nd > 1 && dig[nd - 1] == '0') nd--;
    int decpt = ex + 1;
    char *o = out;
    if (neg) *o++ = '-';
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -decpt; i++) *o++ = '0';
            for (int i = 0; i < nd; i++) *o++ = dig[i];
        } else if (decpt >= nd) {
            for (int i = 0; i < nd; i++) *o++ = dig[i];
            for (int i = nd; i < decpt; i++) *o++ = '0';
            *o++ = '.';
            *o++ = '0';
        } else {
            for (int i = 0; i < nd; i++) {
                if (i == decpt) *o++ = '.';
                *o++ = dig[i];
            }
        }
        *o = '\0';
    } else {
        *o++ = dig[0];
        if (nd > 1) {
            *o++ = '.';
            for (int i = 1; i < nd; i++) *o++ = dig[i];
        }
        snprintf(o, (size_t)(32 - (o - out)), "e%c%02d", ex < 0 ? '-' : '+', ex < 0 ? -ex : ex);
    }
}

void mr_pyjson_dump(mr_sbuf *b, const json_t *v) {
    char num[40];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        size_t kl;
        json_t *x;
        int first = 1;
        mr_sbuf_add(b, "{", 1);
        json_object_keylen_foreach((json_t *)v, k, kl, x) {
            if (!first) mr_sbuf_add(b, ", ", 2);
            first = 0;
            dump_string(b, k, kl);
            mr_sbuf_add(b, ": ", 2);
            mr_pyjson_dump(b, x);
        }
        mr_sbuf_add(b, "}", 1);
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *x;
        mr_sbuf_add(b, "[", 1);
        json_array_foreach(v, i, x) {
            if (i) mr_sbuf_add(b, ", ", 2);
            mr_pyjson_dump(b, x);
        }
        mr_sbuf_add(b, "]", 1);
        break;
    }
    case JSON_STRING:
        dump_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        mr_sbuf_adds(b, num);
        break;
    case JSON_REAL:
        mr_pyjson_float_repr(json_real_value(v), num);
        mr_sbuf_adds(b, num);
        break;
    case JSON_TRUE:
        mr_sbuf_adds(b, "true");
        break;
    case JSON_FALSE:
        mr_sbuf_adds(b, "false");
        break;
    case JSON_NULL:
        mr_sbuf_adds(b, "null");
        break;
    }
}
