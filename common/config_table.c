#include "common/config_table.h"

#include <libconfig.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

static const mr_opt *find_opt(const mr_opt_table *t, const char *name) {
    for (int i = 0; i < t->n_opts; i++)
        if (strcmp(t->opts[i].name, name) == 0) return &t->opts[i];
    return NULL;
}

static int set_text(const mr_opt *o, const char *text, void *target) {
    char *dst = (char *)target + o->offset;
    switch (o->type) {
    case MR_OPT_INT:
        *(int *)dst = (int)strtol(text, NULL, 10);
        return 0;
    case MR_OPT_INT64:
        *(long long *)dst = strtoll(text, NULL, 10);
        return 0;
    case MR_OPT_DOUBLE:
        *(double *)dst = strtod(text, NULL);
        return 0;
    case MR_OPT_BOOL:
        *(int *)dst = strcmp(text, "true") == 0;
        return 0;
    case MR_OPT_STRING:
    case MR_OPT_ENUM:
        snprintf(dst, o->size, "%s", text);
        return 0;
    case MR_OPT_INTS: { /* "[a, b, ...]": defaults are written by us, well formed */
        mr_opt_ints *l = (mr_opt_ints *)dst;
        l->n = 0;
        for (const char *p = text; *p && l->n < MR_OPT_INTS_MAX;) {
            while (*p == '[' || *p == ',' || *p == ' ') p++;
            if (*p == ']' || !*p) break;
            char *end;
            l->v[l->n++] = (int)strtol(p, &end, 10);
            p = end;
        }
        return 0;
    }
    }
    return -1;
}

void mr_opt_defaults(const mr_opt_table *t, void *target) {
    for (int i = 0; i < t->n_opts; i++) {
        const mr_opt *o = &t->opts[i];
        memset((char *)target + o->offset, 0, o->size);
        if (o->dflt) set_text(o, o->dflt, target);
    }
}

static const char *type_name(mr_opt_type t) {
    switch (t) {
    case MR_OPT_INT:
    case MR_OPT_INT64:
        return "integer";
    case MR_OPT_DOUBLE:
        return "number";
    case MR_OPT_BOOL:
        return "boolean";
    case MR_OPT_STRING:
        return "string";
    case MR_OPT_ENUM:
        return "string";
    case MR_OPT_INTS:
        return "list of integers";
    }
    return "?";
}

/* Applies one setting; logs and returns -1 on error. */
static int apply_one(const mr_opt *o, const config_setting_t *s, const char *file,
                     const char *where, void *target) {
    char *dst = (char *)target + o->offset;
    int line = config_setting_source_line(s);
    int ty = config_setting_type(s);
    switch (o->type) {
    case MR_OPT_INT:
    case MR_OPT_INT64:
    case MR_OPT_DOUBLE: {
        double v;
        if (ty == CONFIG_TYPE_INT || ty == CONFIG_TYPE_INT64)
            v = (double)config_setting_get_int64(s);
        else if (ty == CONFIG_TYPE_FLOAT && o->type == MR_OPT_DOUBLE)
            v = config_setting_get_float(s);
        else
            goto wrong_type;
        if (!(v >= o->min && v <= o->max)) {
            MR_LOG_ERROR(MR_LOG_CONF, "%s:%d: %s.%s = %g is out of range [%g, %g]", file, line,
                         where, o->name, v, o->min, o->max);
            return -1;
        }
        if (o->type == MR_OPT_INT)
            *(int *)dst = (int)v;
        else if (o->type == MR_OPT_INT64)
            *(long long *)dst = config_setting_get_int64(s);
        else
            *(double *)dst = v;
        return 0;
    }
    case MR_OPT_BOOL:
        if (ty != CONFIG_TYPE_BOOL) goto wrong_type;
        *(int *)dst = config_setting_get_bool(s);
        return 0;
    case MR_OPT_STRING:
    case MR_OPT_ENUM: {
        if (ty != CONFIG_TYPE_STRING) goto wrong_type;
        const char *v = config_setting_get_string(s);
        if (strlen(v) >= o->size) {
            MR_LOG_ERROR(MR_LOG_CONF, "%s:%d: %s.%s is longer than %zu characters", file, line,
                         where, o->name, o->size - 1);
            return -1;
        }
        if (o->type == MR_OPT_ENUM) {
            int ok = 0;
            for (const char *const *c = o->choices; *c; c++) ok |= strcmp(*c, v) == 0;
            if (!ok) {
                char list[256] = "";
                size_t n = 0;
                for (const char *const *c = o->choices; *c; c++)
                    n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", *c);
                MR_LOG_ERROR(MR_LOG_CONF, "%s:%d: %s.%s = \"%s\" is not one of: %s", file, line,
                             where, o->name, v, list);
                return -1;
            }
        }
        snprintf(dst, o->size, "%s", v);
        return 0;
    }
    case MR_OPT_INTS: {
        if (ty != CONFIG_TYPE_ARRAY && ty != CONFIG_TYPE_LIST) goto wrong_type;
        const int n = config_setting_length(s);
        if (n < 1 || n > MR_OPT_INTS_MAX) {
            MR_LOG_ERROR(MR_LOG_CONF, "%s:%d: %s.%s has %d entries (1 to %d)", file, line, where,
                         o->name, n, MR_OPT_INTS_MAX);
            return -1;
        }
        mr_opt_ints l = {0};
        for (int i = 0; i < n; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            const int et = config_setting_type(e);
            if (et != CONFIG_TYPE_INT && et != CONFIG_TYPE_INT64) {
                MR_LOG_ERROR(MR_LOG_CONF, "%s:%d: %s.%s[%d] must be an integer", file, line, where,
                             o->name, i);
                return -1;
            }
            const long long v = config_setting_get_int64(e);
            if (!((double)v >= o->min && (double)v <= o->max)) {
                MR_LOG_ERROR(MR_LOG_CONF, "%s:%d: %s.%s[%d] = %lld is out of range [%g, %g]", file,
                             line, where, o->name, i, v, o->min, o->max);
                return -1;
            }
            for (int j = 0; j < i; j++)
                if (l.v[j] == (int)v) {
                    MR_LOG_ERROR(MR_LOG_CONF, "%s:%d: %s.%s lists %lld twice", file, line, where,
                                 o->name, v);
                    return -1;
                }
            l.v[l.n++] = (int)v;
        }
        memcpy(dst, &l, sizeof l);
        return 0;
    }
    }
wrong_type:
    MR_LOG_ERROR(MR_LOG_CONF, "%s:%d: %s.%s must be a %s", file, line, where, o->name,
                 type_name(o->type));
    return -1;
}

mr_status mr_opt_apply(const mr_opt_table *t, const config_setting_t *group, const char *file,
                       const char *where, void *target) {
    mr_opt_defaults(t, target);
    int errors = 0;
    if (group && !config_setting_is_group(group)) {
        MR_LOG_ERROR(MR_LOG_CONF, "%s:%d: %s must be a group { ... }", file,
                     config_setting_source_line(group), where);
        return MR_ERR_INVALID;
    }
    int n = group ? config_setting_length(group) : 0;
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
        const char *name = config_setting_name(s);
        const mr_opt *o = find_opt(t, name);
        if (!o) {
            MR_LOG_ERROR(MR_LOG_CONF, "%s:%d: unknown key '%s' in %s", file,
                         config_setting_source_line(s), name, where);
            errors++;
            continue;
        }
        errors += apply_one(o, s, file, where, target) != 0;
    }
    for (int i = 0; i < t->n_opts; i++) {
        const mr_opt *o = &t->opts[i];
        if (o->dflt) continue;
        if (!group || !config_setting_get_member(group, o->name)) {
            MR_LOG_ERROR(MR_LOG_CONF, "%s:%d: %s.%s is required", file,
                         group ? config_setting_source_line(group) : 0, where, o->name);
            errors++;
        }
    }
    return errors ? MR_ERR_INVALID : MR_OK;
}

void mr_opt_dump(const mr_opt_table *t, const void *target, FILE *out, int indent) {
    for (int i = 0; i < t->n_opts; i++) {
        const mr_opt *o = &t->opts[i];
        const char *src = (const char *)target + o->offset;
        fprintf(out, "%*s%s = ", indent, "", o->name);
        switch (o->type) {
        case MR_OPT_INT:
            fprintf(out, "%d", *(const int *)src);
            break;
        case MR_OPT_INT64:
            fprintf(out, "%lldL", *(const long long *)src);
            break;
        case MR_OPT_DOUBLE:
            fprintf(out, "%.17g", *(const double *)src);
            break;
        case MR_OPT_BOOL:
            fprintf(out, "%s", *(const int *)src ? "true" : "false");
            break;
        case MR_OPT_STRING:
        case MR_OPT_ENUM:
            fprintf(out, "\"%s\"", src);
            break;
        case MR_OPT_INTS: {
            const mr_opt_ints *l = (const mr_opt_ints *)(const void *)src;
            fprintf(out, "[");
            for (int k = 0; k < l->n; k++) fprintf(out, "%s%d", k ? ", " : "", l->v[k]);
            fprintf(out, "]");
            break;
        }
        }
        fprintf(out, ";\n");
    }
}

void mr_opt_markdown(const mr_opt_table *t, FILE *out) {
    fprintf(out,
            "### `%s`\n\n%s\n\n| key | type | default | range | meaning |\n|---|---|---|---|---|\n",
            t->group, t->doc);
    for (int i = 0; i < t->n_opts; i++) {
        const mr_opt *o = &t->opts[i];
        char range[160] = "";
        if (o->type == MR_OPT_INT || o->type == MR_OPT_INT64 || o->type == MR_OPT_DOUBLE)
            snprintf(range, sizeof range, "%g … %g", o->min, o->max);
        else if (o->type == MR_OPT_INTS)
            snprintf(range, sizeof range, "1 … %d distinct of %g … %g", MR_OPT_INTS_MAX, o->min,
                     o->max);
        else if (o->type == MR_OPT_ENUM) {
            size_t n = 0;
            for (const char *const *c = o->choices; *c; c++)
                n += (size_t)snprintf(range + n, sizeof range - n, "%s`%s`", n ? ", " : "", *c);
        }
        fprintf(out, "| `%s` | %s | %s | %s | %s |\n", o->name, type_name(o->type),
                o->dflt ? (o->dflt[0] ? o->dflt : "\"\"") : "**required**", range, o->doc);
    }
    fprintf(out, "\n");
}

mr_status mr_parse_endpoint(const char *s, char *host, size_t cap, int *port) {
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= cap) return MR_ERR_INVALID;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535 || end == colon + 1) return MR_ERR_INVALID;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') { /* [::1]:port */
        h++;
        hl -= 2;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return MR_OK;
}
