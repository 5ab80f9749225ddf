#include "common/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/check.h"
#include "common/log.h"

struct mr_st_file {
    char *path;
    int fd;
    uint8_t *map; /* whole file, or NULL for a header-only object */
    uint64_t file_size;
    uint64_t data_start;   /* 8 + header length */
    mr_st_tensor *tensors; /* sorted by name for lookup */
    int n_tensors;
    json_t *root;     /* owns the strings that tensor names point to */
    json_t *metadata; /* borrowed from root */
};

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const mr_st_tensor *)a)->name, ((const mr_st_tensor *)b)->name);
}

static int cmp_tensor_begin(const void *a, const void *b) {
    const mr_st_tensor *x = *(const mr_st_tensor *const *)a, *y = *(const mr_st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

uint64_t mr_st_nelems(const mr_st_tensor *t) {
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (uint64_t)t->shape[i];
    return n;
}

/* Reads one tensor entry of the header into *t. */
static mr_status parse_entry(const char *origin, const char *name, json_t *v, uint64_t data_size,
                             mr_st_tensor *t) {
    if (!json_is_object(v)) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: tensor '%s': header entry is not an object", origin, name);
        return MR_ERR_FORMAT;
    }
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) ||
        json_array_size(jo) != 2) {
        MR_LOG_ERROR(MR_LOG_CKPT,
                     "%s: tensor '%s': header entry needs string dtype, array shape and "
                     "data_offsets [begin, end]",
                     origin, name);
        return MR_ERR_FORMAT;
    }
    int dt = mr_dtype_parse(json_string_value(jd));
    if (dt < 0) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: tensor '%s': unsupported dtype '%s'", origin, name,
                     json_string_value(jd));
        return MR_ERR_FORMAT;
    }
    size_t ndim = json_array_size(js);
    if (ndim > MR_ST_MAX_DIMS) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: tensor '%s': %zu dims (max %d)", origin, name, ndim,
                     MR_ST_MAX_DIMS);
        return MR_ERR_FORMAT;
    }
    memset(t, 0, sizeof *t);
    t->name = name;
    t->dtype = (mr_dtype)dt;
    t->ndim = (int)ndim;
    uint64_t nel = 1;
    for (size_t i = 0; i < ndim; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 ||
            json_integer_value(d) > (json_int_t)(1ll << 40)) {
            MR_LOG_ERROR(MR_LOG_CKPT, "%s: tensor '%s': shape[%zu] is not a valid dimension",
                         origin, name, i);
            return MR_ERR_FORMAT;
        }
        t->shape[i] = json_integer_value(d);
        if (t->shape[i] != 0 && nel > UINT64_MAX / 16 / (uint64_t)t->shape[i]) {
            MR_LOG_ERROR(MR_LOG_CKPT, "%s: tensor '%s': shape too large", origin, name);
            return MR_ERR_FORMAT;
        }
        nel *= (uint64_t)t->shape[i];
    }
    json_t *b = json_array_get(jo, 0), *e = json_array_get(jo, 1);
    if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
        json_integer_value(e) < json_integer_value(b)) {
        MR_LOG_ERROR(MR_LOG_CKPT,
                     "%s: tensor '%s': data_offsets must be integers 0 <= begin <= end", origin,
                     name);
        return MR_ERR_FORMAT;
    }
    t->begin = (uint64_t)json_integer_value(b);
    t->end = (uint64_t)json_integer_value(e);
    uint64_t want = nel * mr_dtype_size(t->dtype);
    if (t->end - t->begin != want) {
        MR_LOG_ERROR(
            MR_LOG_CKPT,
            "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but dtype %s shape "
            "needs %llu",
            origin, name, (unsigned long long)t->begin, (unsigned long long)t->end,
            (unsigned long long)(t->end - t->begin), mr_dtype_name(t->dtype),
            (unsigned long long)want);
        return MR_ERR_FORMAT;
    }
    if (t->end > data_size) {
        MR_LOG_ERROR(MR_LOG_CKPT,
                     "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the data "
                     "(%llu bytes; file truncated?)",
                     origin, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                     (unsigned long long)data_size);
        return MR_ERR_FORMAT;
    }
    return MR_OK;
}

mr_status mr_st_parse_header(const char *origin, const char *json, size_t len, uint64_t data_size,
                             mr_st_file **out) {
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_DISABLE_EOF_CHECK, &jerr);
    if (!root) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: header is not valid JSON: %s (at byte %d)", origin,
                     jerr.text, jerr.position);
        return MR_ERR_FORMAT;
    }
    mr_status st = MR_ERR_FORMAT;
    mr_st_file *f = calloc(1, sizeof *f);
    mr_st_tensor **by_begin = NULL;
    if (!f) {
        st = MR_ERR_NOMEM;
        goto err_free;
    }
    f->fd = -1;
    f->root = root;
    if (!json_is_object(root)) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: header is not a JSON object", origin);
        goto err_free;
    }
    size_t n = json_object_size(root);
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->tensors) {
        st = MR_ERR_NOMEM;
        goto err_free;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            const char *mk;
            json_t *mv;
            if (!json_is_object(val)) {
                MR_LOG_ERROR(MR_LOG_CKPT, "%s: __metadata__ is not an object", origin);
                goto err_free;
            }
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) {
                    MR_LOG_ERROR(MR_LOG_CKPT, "%s: __metadata__ value '%s' is not a string", origin,
                                 mk);
                    goto err_free;
                }
            }
            f->metadata = val;
            continue;
        }
        st = parse_entry(origin, key, val, data_size, &f->tensors[f->n_tensors]);
        if (st != MR_OK) goto err_free;
        f->n_tensors++;
    }
    /* No two tensors may share bytes. */
    by_begin = malloc((size_t)(f->n_tensors ? f->n_tensors : 1) * sizeof *by_begin);
    if (!by_begin) {
        st = MR_ERR_NOMEM;
        goto err_free;
    }
    for (int i = 0; i < f->n_tensors; i++) by_begin[i] = &f->tensors[i];
    qsort(by_begin, (size_t)f->n_tensors, sizeof *by_begin, cmp_tensor_begin);
    const mr_st_tensor *furthest = NULL; /* non-empty tensor reaching furthest so far */
    for (int i = 0; i < f->n_tensors; i++) {
        const mr_st_tensor *t = by_begin[i];
        if (t->end == t->begin) continue;
        if (furthest && t->begin < furthest->end) {
            MR_LOG_ERROR(MR_LOG_CKPT, "%s: tensors '%s' and '%s' overlap in the data section",
                         origin, furthest->name, t->name);
            st = MR_ERR_FORMAT;
            goto err_free;
        }
        if (!furthest || t->end > furthest->end) furthest = t;
    }
    free(by_begin);
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_tensor_name);
    *out = f;
    return MR_OK;

err_free:
    free(by_begin);
    mr_st_close(f);
    if (!f) json_decref(root);
    return st;
}

mr_status mr_st_open(const char *path, mr_st_file **out) {
    int fd = MR_SYSCHECK(open(path, O_RDONLY | O_CLOEXEC));
    if (fd < 0) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: cannot open: %s", path, strerror(errno));
        return errno == ENOENT ? MR_ERR_NOT_FOUND : MR_ERR_IO;
    }
    mr_status st = MR_ERR_FORMAT;
    uint8_t *map = NULL;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: not a regular file", path);
        st = MR_ERR_IO;
        goto err_close;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: file of %llu bytes is too short for a safetensors header",
                     path, (unsigned long long)size);
        goto err_close;
    }
    map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: mmap failed: %s", path, strerror(errno));
        map = NULL;
        st = MR_ERR_IO;
        goto err_close;
    }
    /* No readahead around faults: a process reads exactly the tensors it loads (a worker holding
     * a few experts must not pull its neighbours' bytes off a shared disk). mr_st_prefetch()
     * asks for a tensor's whole range at once. */
    madvise(map, size, MADV_RANDOM);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | map[i];
    if (hlen > MR_ST_MAX_HEADER || hlen > size - 8) {
        MR_LOG_ERROR(MR_LOG_CKPT,
                     "%s: header length %llu exceeds the file (%llu bytes) or the 100 MB limit; "
                     "file truncated or not safetensors",
                     path, (unsigned long long)hlen, (unsigned long long)size);
        goto err_unmap;
    }
    mr_st_file *f;
    st = mr_st_parse_header(path, (const char *)map + 8, (size_t)hlen, size - 8 - hlen, &f);
    if (st != MR_OK) goto err_unmap;
    f->path = strdup(path);
    if (!f->path) {
        mr_st_close(f);
        st = MR_ERR_NOMEM;
        goto err_unmap;
    }
    f->fd = fd;
    f->map = map;
    f->file_size = size;
    f->data_start = 8 + hlen;
    *out = f;
    return MR_OK;

err_unmap:
    munmap(map, size);
err_close:
    close(fd);
    return st;
}

void mr_st_close(mr_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->file_size);
    if (f->fd >= 0) close(f->fd);
    json_decref(f->root);
    free(f->tensors);
    free(f->path);
    free(f);
}

const char *mr_st_path(const mr_st_file *f) {
    return f->path ? f->path : "(memory)";
}
uint64_t mr_st_file_size(const mr_st_file *f) {
    return f->file_size;
}
int mr_st_count(const mr_st_file *f) {
    return f->n_tensors;
}
const mr_st_tensor *mr_st_at(const mr_st_file *f, int i) {
    return i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const mr_st_tensor *mr_st_find(const mr_st_file *f, const char *name) {
    mr_st_tensor key = {.name = name};
    return bsearch(&key, f->tensors, (size_t)f->n_tensors, sizeof key, cmp_tensor_name);
}

const void *mr_st_data(const mr_st_file *f, const mr_st_tensor *t) {
    return f->map ? f->map + f->data_start + t->begin : NULL;
}

const char *mr_st_metadata(const mr_st_file *f, const char *key) {
    return f->metadata ? json_string_value(json_object_get(f->metadata, key)) : NULL;
}

/* ---- writing --------------------------------------------------------------------------------- */

static mr_status write_all(FILE *fp, const void *buf, size_t n, const char *path) {
    if (fwrite(buf, 1, n, fp) != n) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: write failed: %s", path, strerror(errno));
        return MR_ERR_IO;
    }
    return MR_OK;
}

mr_status mr_st_write(const char *path, const mr_st_write_item *items, int n_items,
                      const char *const *metadata_kv, int n_metadata_pairs) {
    json_t *root = json_object();
    if (!root) return MR_ERR_NOMEM;
    mr_status st = MR_OK;
    char *hdr = NULL;
    void *buf = NULL;
    FILE *fp = NULL;
    if (n_metadata_pairs > 0) {
        json_t *md = json_object();
        for (int i = 0; i < n_metadata_pairs; i++)
            json_object_set_new(md, metadata_kv[2 * i], json_string(metadata_kv[2 * i + 1]));
        json_object_set_new(root, "__metadata__", md);
    }
    uint64_t off = 0, max_bytes = 0;
    for (int i = 0; i < n_items; i++) {
        const mr_st_write_item *it = &items[i];
        json_t *shape = json_array();
        uint64_t nel = 1;
        for (int d = 0; d < it->ndim; d++) {
            json_array_append_new(shape, json_integer(it->shape[d]));
            nel *= (uint64_t)it->shape[d];
        }
        uint64_t nbytes = nel * mr_dtype_size(it->dtype);
        json_t *offs = json_pack("[I,I]", (json_int_t)off, (json_int_t)(off + nbytes));
        json_object_set_new(root, it->name,
                            json_pack("{s:s,s:o,s:o}", "dtype", mr_dtype_name(it->dtype), "shape",
                                      shape, "data_offsets", offs));
        off += nbytes;
        if (nbytes > max_bytes) max_bytes = nbytes;
    }
    hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!hdr) {
        st = MR_ERR_NOMEM;
        goto out;
    }
    size_t hlen = strlen(hdr);
    size_t padded = (hlen + 7) & ~(size_t)7; /* align the data section to 8 bytes, as HF does */
    fp = fopen(path, "wb");
    if (!fp) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: cannot create: %s", path, strerror(errno));
        st = MR_ERR_IO;
        goto out;
    }
    uint8_t lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    MR_CHECK_GOTO(write_all(fp, lenbuf, 8, path), out);
    MR_CHECK_GOTO(write_all(fp, hdr, hlen, path), out);
    for (size_t i = hlen; i < padded; i++) MR_CHECK_GOTO(write_all(fp, " ", 1, path), out);
    buf = malloc(max_bytes ? max_bytes : 1);
    if (!buf) {
        st = MR_ERR_NOMEM;
        goto out;
    }
    for (int i = 0; i < n_items; i++) {
        const mr_st_write_item *it = &items[i];
        uint64_t nel = 1;
        for (int d = 0; d < it->ndim; d++) nel *= (uint64_t)it->shape[d];
        size_t nbytes = (size_t)(nel * mr_dtype_size(it->dtype));
        MR_CHECK_GOTO(it->fill(it->user, it->name, buf, nbytes), out);
        MR_CHECK_GOTO(write_all(fp, buf, nbytes, path), out);
    }
out:
    if (fp && fclose(fp) != 0 && st == MR_OK) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: close failed: %s", path, strerror(errno));
        st = MR_ERR_IO;
    }
    free(buf);
    free(hdr);
    json_decref(root);
    return st;
}

void mr_st_prefetch(const mr_st_file *f, const mr_st_tensor *t) {
    if (!f->map || t->end == t->begin) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)(f->map + f->data_start + t->begin) & ~(page - 1);
    uintptr_t b = (uintptr_t)(f->map + f->data_start + t->end);
    madvise((void *)a, b - a, MADV_WILLNEED);
}
