#include "common/checkpoint.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/check.h"
#include "common/log.h"
#include "common/synthetic.h"

typedef struct index_entry {
    char *tensor;
    int shard;
} index_entry;

struct mr_ckpt_index {
    index_entry *entries; /* sorted by tensor name */
    int n_entries;
    char **shards; /* distinct shard file names, sorted */
    int n_shards;
    int first_shard;
    uint64_t total_size;
};

struct mr_ckpt {
    char dir[PATH_MAX]; /* as opened: a directory or "synthetic:SEED:DIR" */
    mr_model_config config;
    mr_ckpt_index *index;
    mr_st_file **files; /* per shard, NULL until first use */
    uint64_t bytes_read;
    /* synthetic weights (synthetic.h): no index, no files; the layout, sorted by name */
    int synthetic;
    uint64_t seed;
    mr_tensor_spec *specs;
    int n_specs;
};

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const index_entry *)a)->tensor, ((const index_entry *)b)->tensor);
}
static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void mr_ckpt_index_free(mr_ckpt_index *ix) {
    if (!ix) return;
    for (int i = 0; i < ix->n_entries; i++) free(ix->entries[i].tensor);
    for (int i = 0; i < ix->n_shards; i++) free(ix->shards[i]);
    free(ix->entries);
    free(ix->shards);
    free(ix);
}

/* A shard name must be a plain file name in the model directory. */
static int shard_name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 200 || s[0] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return n > 12 && strcmp(s + n - 12, ".safetensors") == 0;
}

/* Checks the model-XXXXX-of-YYYYY naming: one total, numbers contiguous from 0 (the MiniMax
 * release) or from 1 (the usual Hugging Face convention). Other naming is accepted as is. */
static mr_status check_shard_numbering(mr_ckpt_index *ix, const char *origin) {
    int total = -1, lo = INT_MAX, hi = -1, numbered = 0;
    for (int i = 0; i < ix->n_shards; i++) {
        int a, b;
        char tail[16];
        if (sscanf(ix->shards[i], "model-%5d-of-%5d%15s", &a, &b, tail) != 3 ||
            strcmp(tail, ".safetensors") != 0)
            continue;
        numbered++;
        if (total >= 0 && b != total) {
            MR_LOG_ERROR(MR_LOG_CKPT, "%s: shard '%s' says %d shards but others say %d", origin,
                         ix->shards[i], b, total);
            return MR_ERR_FORMAT;
        }
        total = b;
        lo = MR_MIN(lo, a);
        hi = MR_MAX(hi, a);
    }
    if (numbered == 0) {
        ix->first_shard = 0;
        return MR_OK;
    }
    if (numbered != ix->n_shards) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: shard names mix numbered and unnumbered files", origin);
        return MR_ERR_FORMAT;
    }
    int zero_based = lo == 0 && hi == total - 1, one_based = lo == 1 && hi == total;
    if ((!zero_based && !one_based) || ix->n_shards != total) {
        MR_LOG_ERROR(MR_LOG_CKPT,
                     "%s: shards numbered %d..%d of %d: %d distinct files referenced; expected all "
                     "of 0..%d (or 1..%d)",
                     origin, lo, hi, total, ix->n_shards, total - 1, total);
        return MR_ERR_FORMAT;
    }
    ix->first_shard = lo;
    return MR_OK;
}

static mr_status index_from_json(json_t *root, const char *origin, mr_ckpt_index **out) {
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: 'weight_map' must be a non-empty object", origin);
        return MR_ERR_FORMAT;
    }
    mr_ckpt_index *ix = calloc(1, sizeof *ix);
    size_t n = json_object_size(wm);
    if (!ix || !(ix->entries = calloc(n, sizeof *ix->entries)) ||
        !(ix->shards = calloc(n, sizeof *ix->shards))) {
        mr_ckpt_index_free(ix);
        return MR_ERR_NOMEM;
    }
    mr_status st = MR_ERR_FORMAT;
    json_t *md = json_object_get(root, "metadata");
    if (md) {
        json_t *ts = json_object_get(md, "total_size");
        if (ts && (!json_is_integer(ts) || json_integer_value(ts) < 0)) {
            MR_LOG_ERROR(MR_LOG_CKPT, "%s: metadata.total_size must be a non-negative integer",
                         origin);
            goto err;
        }
        ix->total_size = ts ? (uint64_t)json_integer_value(ts) : 0;
    }
    const char *key;
    json_t *val;
    char **names = calloc(n, sizeof *names);
    if (!names) {
        st = MR_ERR_NOMEM;
        goto err;
    }
    size_t k = 0;
    json_object_foreach(wm, key, val) {
        if (!json_is_string(val) || !shard_name_ok(json_string_value(val))) {
            MR_LOG_ERROR(MR_LOG_CKPT,
                         "%s: weight_map['%s'] must name a .safetensors file in the model "
                         "directory (letters, digits, '-', '_', '.')",
                         origin, key);
            free(names);
            goto err;
        }
        names[k++] = (char *)json_string_value(val);
    }
    /* distinct shard names */
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(names[i], names[i - 1]) == 0) continue;
        if (!(ix->shards[ix->n_shards++] = strdup(names[i]))) {
            free(names);
            st = MR_ERR_NOMEM;
            goto err;
        }
    }
    free(names);
    json_object_foreach(wm, key, val) {
        index_entry *e = &ix->entries[ix->n_entries];
        const char *sname = json_string_value(val);
        char **hit = bsearch(&sname, ix->shards, (size_t)ix->n_shards, sizeof *ix->shards, cmp_str);
        if (!(e->tensor = strdup(key))) {
            st = MR_ERR_NOMEM;
            goto err;
        }
        e->shard = (int)(hit - ix->shards);
        ix->n_entries++;
    }
    qsort(ix->entries, (size_t)ix->n_entries, sizeof *ix->entries, cmp_entry);
    MR_CHECK_GOTO(check_shard_numbering(ix, origin), err);
    *out = ix;
    return MR_OK;
err:
    mr_ckpt_index_free(ix);
    return st;
}

mr_status mr_ckpt_index_load(const char *path, mr_ckpt_index **out) {
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        struct stat sb;
        if (stat(path, &sb) != 0) {
            MR_LOG_ERROR(MR_LOG_CKPT, "%s: cannot open checkpoint index", path);
            return MR_ERR_NOT_FOUND;
        }
        MR_LOG_ERROR(MR_LOG_CKPT, "%s:%d: invalid JSON: %s", path, jerr.line, jerr.text);
        return MR_ERR_FORMAT;
    }
    mr_status st = index_from_json(root, path, out);
    json_decref(root);
    return st;
}

int mr_ckpt_index_n_tensors(const mr_ckpt_index *ix) {
    return ix->n_entries;
}
int mr_ckpt_index_n_shards(const mr_ckpt_index *ix) {
    return ix->n_shards;
}
int mr_ckpt_index_first_shard(const mr_ckpt_index *ix) {
    return ix->first_shard;
}
uint64_t mr_ckpt_index_total_size(const mr_ckpt_index *ix) {
    return ix->total_size;
}

static const index_entry *index_lookup(const mr_ckpt_index *ix, const char *tensor) {
    index_entry key = {.tensor = (char *)tensor};
    return bsearch(&key, ix->entries, (size_t)ix->n_entries, sizeof key, cmp_entry);
}

const char *mr_ckpt_index_shard_of(const mr_ckpt_index *ix, const char *tensor) {
    const index_entry *e = index_lookup(ix, tensor);
    return e ? ix->shards[e->shard] : NULL;
}

mr_status mr_ckpt_index_check_layout(const mr_ckpt_index *ix, const char *origin,
                                     const mr_model_config *c) {
    int n = mr_layout_count(c);
    mr_tensor_spec *specs = malloc((size_t)n * sizeof *specs);
    if (!specs) return MR_ERR_NOMEM;
    mr_layout_build(c, specs);
    int missing = 0;
    for (int i = 0; i < n; i++) {
        if (!index_lookup(ix, specs[i].name)) {
            if (missing++ < 5)
                MR_LOG_ERROR(MR_LOG_CKPT,
                             "%s: tensor '%s' required by the config is not in the index", origin,
                             specs[i].name);
        }
    }
    free(specs);
    if (missing) {
        if (missing > 5)
            MR_LOG_ERROR(MR_LOG_CKPT, "%s: %d tensors missing in all", origin, missing);
        return MR_ERR_NOT_FOUND;
    }
    if (ix->n_entries != n) {
        /* every required name is present, so the extra ones are unknown to the layout */
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: index lists %d tensors; the config's layout has %d", origin,
                     ix->n_entries, n);
        return MR_ERR_FORMAT;
    }
    return MR_OK;
}

/* ---- checkpoint directory -------------------------------------------------------------------- */

void mr_ckpt_close(mr_ckpt *ck) {
    if (!ck) return;
    free(ck->specs);
    if (ck->files)
        for (int i = 0; i < ck->index->n_shards; i++) mr_st_close(ck->files[i]);
    free(ck->files);
    mr_ckpt_index_free(ck->index);
    free(ck);
}

/* A directory without an index holds one file, model.safetensors: build a one-shard index. */
static mr_status index_single_file(mr_ckpt *ck, const char *path) {
    mr_st_file *f;
    MR_CHECK(mr_st_open(path, &f));
    json_t *wm = json_object();
    for (int i = 0; i < mr_st_count(f); i++)
        json_object_set_new(wm, mr_st_at(f, i)->name, json_string("model.safetensors"));
    json_t *root = json_pack("{s:o}", "weight_map", wm);
    mr_status st = index_from_json(root, path, &ck->index);
    json_decref(root);
    mr_st_close(f);
    return st;
}

static int cmp_spec(const void *a, const void *b) {
    return strcmp(((const mr_tensor_spec *)a)->name, ((const mr_tensor_spec *)b)->name);
}

static const mr_tensor_spec *synthetic_spec(const mr_ckpt *ck, const char *name) {
    mr_tensor_spec key;
    snprintf(key.name, sizeof key.name, "%s", name);
    return bsearch(&key, ck->specs, (size_t)ck->n_specs, sizeof key, cmp_spec);
}

/* "synthetic:SEED:DIR": DIR/config.json with the weights of synthetic.h. */
static mr_status open_synthetic(mr_ckpt *ck, uint64_t seed, const char *dir) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/config.json", dir);
    MR_CHECK(mr_model_config_load(path, &ck->config));
    ck->synthetic = 1;
    ck->seed = seed;
    ck->n_specs = mr_layout_count(&ck->config);
    if (!(ck->specs = malloc((size_t)ck->n_specs * sizeof *ck->specs))) return MR_ERR_NOMEM;
    mr_layout_build(&ck->config, ck->specs);
    qsort(ck->specs, (size_t)ck->n_specs, sizeof *ck->specs, cmp_spec);
    MR_LOG_INFO(MR_LOG_CKPT, "%s: synthetic weights, seed %llu, %d tensors", dir,
                (unsigned long long)seed, ck->n_specs);
    return MR_OK;
}

mr_status mr_ckpt_open(const char *dir, mr_ckpt **out) {
    mr_ckpt *ck = calloc(1, sizeof *ck);
    if (!ck) return MR_ERR_NOMEM;
    mr_status st;
    char path[PATH_MAX + 64];
    if (strlen(dir) >= sizeof ck->dir) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: model path too long", dir);
        st = MR_ERR_INVALID;
        goto err;
    }
    snprintf(ck->dir, sizeof ck->dir, "%s", dir);
    uint64_t seed;
    char synth_dir[PATH_MAX];
    int synth = mr_synth_parse_path(dir, &seed, synth_dir, sizeof synth_dir);
    if (synth != 0) {
        st = synth < 0 ? MR_ERR_INVALID : open_synthetic(ck, seed, synth_dir);
        if (st != MR_OK) goto err;
        *out = ck;
        return MR_OK;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: model directory does not exist", dir);
        st = MR_ERR_NOT_FOUND;
        goto err;
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    MR_CHECK_GOTO(mr_model_config_load(path, &ck->config), err);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (stat(path, &sb) == 0) {
        MR_CHECK_GOTO(mr_ckpt_index_load(path, &ck->index), err);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (stat(path, &sb) != 0) {
            MR_LOG_ERROR(MR_LOG_CKPT,
                         "%s: neither model.safetensors.index.json nor model.safetensors exists",
                         dir);
            st = MR_ERR_NOT_FOUND;
            goto err;
        }
        MR_CHECK_GOTO(index_single_file(ck, path), err);
    }
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    MR_CHECK_GOTO(mr_ckpt_index_check_layout(ck->index, path, &ck->config), err);
    ck->files = calloc((size_t)ck->index->n_shards, sizeof *ck->files);
    if (!ck->files) {
        st = MR_ERR_NOMEM;
        goto err;
    }
    *out = ck;
    return MR_OK;
err:
    mr_ckpt_close(ck);
    return st;
}

const mr_model_config *mr_ckpt_config(const mr_ckpt *ck) {
    return &ck->config;
}
const char *mr_ckpt_dir(const mr_ckpt *ck) {
    return ck->dir;
}
uint64_t mr_ckpt_bytes_read(const mr_ckpt *ck) {
    return ck->bytes_read;
}

static mr_status open_shard(mr_ckpt *ck, int shard) {
    if (ck->files[shard]) return MR_OK;
    char path[PATH_MAX + 256];
    snprintf(path, sizeof path, "%s/%s", ck->dir, ck->index->shards[shard]);
    return mr_st_open(path, &ck->files[shard]);
}

mr_status mr_ckpt_find(mr_ckpt *ck, const char *name, mr_st_file **file,
                       const mr_st_tensor **tensor) {
    if (ck->synthetic) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: synthetic weights: no file holds '%s'", ck->dir, name);
        return MR_ERR_UNSUPPORTED;
    }
    const index_entry *e = index_lookup(ck->index, name);
    if (!e) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: tensor '%s' is not in the checkpoint index", ck->dir, name);
        return MR_ERR_NOT_FOUND;
    }
    MR_CHECK(open_shard(ck, e->shard));
    const mr_st_tensor *t = mr_st_find(ck->files[e->shard], name);
    if (!t) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: tensor '%s' is not in this shard although the index says so",
                     mr_st_path(ck->files[e->shard]), name);
        return MR_ERR_NOT_FOUND;
    }
    *file = ck->files[e->shard];
    *tensor = t;
    return MR_OK;
}

static mr_status check_tensor(const mr_st_file *f, const mr_st_tensor *t,
                              const mr_tensor_spec *spec) {
    int same = t->ndim == spec->ndim;
    for (int i = 0; same && i < t->ndim; i++) same = t->shape[i] == spec->shape[i];
    if (!same) {
        char got[128] = "", want[128] = "";
        size_t g = 0, w = 0;
        for (int i = 0; i < t->ndim; i++)
            g += (size_t)snprintf(got + g, sizeof got - g, "%s%lld", i ? ", " : "",
                                  (long long)t->shape[i]);
        for (int i = 0; i < spec->ndim; i++)
            w += (size_t)snprintf(want + w, sizeof want - w, "%s%lld", i ? ", " : "",
                                  (long long)spec->shape[i]);
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: tensor '%s' has shape [%s]; the config requires [%s]",
                     mr_st_path(f), t->name, got, want);
        return MR_ERR_FORMAT;
    }
    if (t->dtype != MR_DTYPE_F32 && t->dtype != MR_DTYPE_BF16 && t->dtype != MR_DTYPE_F16) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: tensor '%s' has dtype %s; expected F32, BF16 or F16",
                     mr_st_path(f), t->name, mr_dtype_name(t->dtype));
        return MR_ERR_FORMAT;
    }
    return MR_OK;
}

mr_status mr_ckpt_stored_dtype(mr_ckpt *ck, const char *name, mr_dtype *out) {
    if (ck->synthetic) {
        const mr_tensor_spec *s = synthetic_spec(ck, name);
        if (!s) {
            MR_LOG_ERROR(MR_LOG_CKPT, "%s: tensor '%s' is not in the layout", ck->dir, name);
            return MR_ERR_NOT_FOUND;
        }
        *out = s->dtype;
        return MR_OK;
    }
    mr_st_file *f;
    const mr_st_tensor *t;
    MR_CHECK(mr_ckpt_find(ck, name, &f, &t));
    *out = t->dtype;
    return MR_OK;
}

int mr_ckpt_is_synthetic(const mr_ckpt *ck) {
    return ck->synthetic;
}

int mr_ckpt_synthetic_stream(const mr_ckpt *ck, const char *name, mr_synth_stream *out) {
    if (!ck->synthetic) return 0;
    const mr_tensor_spec *s = synthetic_spec(ck, name);
    if (!s) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: synthetic weights: the layout has no tensor '%s'", ck->dir,
                     name);
        return -1;
    }
    mr_synth_stream_of(s, &ck->config, ck->seed, out);
    return 1;
}

/* Generates the tensor `spec` names, after checking its shape against the layout's. */
static mr_status load_synthetic(mr_ckpt *ck, const mr_tensor_spec *spec, void *dst,
                                mr_dtype dst_dtype) {
    const mr_tensor_spec *s = synthetic_spec(ck, spec->name);
    int same = s && s->ndim == spec->ndim;
    for (int i = 0; same && i < s->ndim; i++) same = s->shape[i] == spec->shape[i];
    if (!same) {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: tensor '%s' is not in the layout with that shape", ck->dir,
                     spec->name);
        return MR_ERR_NOT_FOUND;
    }
    if (dst_dtype != MR_DTYPE_F32 && dst_dtype != MR_DTYPE_BF16) return MR_ERR_UNSUPPORTED;
    mr_synth_fill(s, &ck->config, ck->seed, dst, dst_dtype, 0);
    ck->bytes_read += mr_tensor_spec_bytes(s);
    return MR_OK;
}

mr_status mr_ckpt_load(mr_ckpt *ck, const mr_tensor_spec *spec, void *dst, mr_dtype dst_dtype) {
    if (ck->synthetic) return load_synthetic(ck, spec, dst, dst_dtype);
    mr_st_file *f;
    const mr_st_tensor *t;
    MR_CHECK(mr_ckpt_find(ck, spec->name, &f, &t));
    MR_CHECK(check_tensor(f, t, spec));
    mr_st_prefetch(f, t);
    const void *src = mr_st_data(f, t);
    uint64_t n = mr_st_nelems(t);
    if (dst_dtype == t->dtype) {
        memcpy(dst, src, (size_t)(t->end - t->begin));
    } else if (dst_dtype == MR_DTYPE_F32) {
        mr_convert_to_f32(t->dtype, src, dst, (size_t)n);
    } else if (dst_dtype == MR_DTYPE_BF16 && t->dtype == MR_DTYPE_F32) {
        mr_convert_f32_to_bf16(src, dst, (size_t)n);
    } else {
        MR_LOG_ERROR(MR_LOG_CKPT, "%s: tensor '%s': cannot load %s data as %s", mr_st_path(f),
                     t->name, mr_dtype_name(t->dtype), mr_dtype_name(dst_dtype));
        return MR_ERR_UNSUPPORTED;
    }
    ck->bytes_read += t->end - t->begin;
    return MR_OK;
}

mr_status mr_ckpt_verify(mr_ckpt *ck) {
    if (ck->synthetic) return MR_OK; /* generated from the layout itself */
    const mr_model_config *c = &ck->config;
    int n = mr_layout_count(c);
    mr_tensor_spec *specs = malloc((size_t)n * sizeof *specs);
    if (!specs) return MR_ERR_NOMEM;
    mr_layout_build(c, specs);
    mr_status st = MR_OK;
    int bad = 0;
    for (int i = 0; i < n && bad < 10; i++) {
        mr_st_file *f;
        const mr_st_tensor *t;
        mr_status s = mr_ckpt_find(ck, specs[i].name, &f, &t);
        if (s == MR_OK) s = check_tensor(f, t, &specs[i]);
        if (s != MR_OK) {
            st = s;
            bad++;
        }
    }
    free(specs);
    if (st != MR_OK) return st;
    uint64_t total = 0;
    for (int s = 0; s < ck->index->n_shards; s++)
        for (int i = 0; ck->files[s] && i < mr_st_count(ck->files[s]); i++)
            total += mr_st_at(ck->files[s], i)->end - mr_st_at(ck->files[s], i)->begin;
    if (ck->index->total_size && total != ck->index->total_size) {
        MR_LOG_ERROR(MR_LOG_CKPT,
                     "%s/model.safetensors.index.json: metadata.total_size is %llu but the shards "
                     "hold %llu bytes of tensors",
                     ck->dir, (unsigned long long)ck->index->total_size, (unsigned long long)total);
        return MR_ERR_FORMAT;
    }
    return MR_OK;
}
