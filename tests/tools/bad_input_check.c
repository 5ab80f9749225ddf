/* bad_input_check — corrupts copies of a valid checkpoint in each way a user's files can be wrong
 * and requires `moerack run` to fail cleanly: exit status 1 (no signal, no sanitizer report) and
 * exactly one "error:" line on stderr that names the file and the tensor or key at fault.
 *
 *   bad_input_check --moerack BIN --model VALID_DIR --work SCRATCH_DIR */
#include <dirent.h>
#include <getopt.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *g_bin, *g_model, *g_work;

static void copy_dir(const char *src, const char *dst) {
    char cmd[3 * 4096 + 64];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dst, src, dst);
    if (system(cmd) != 0) {
        fprintf(stderr, "bad_input_check: cannot copy %s\n", src);
        exit(2);
    }
}

/* Reads a safetensors file into header JSON + data bytes. */
static json_t *read_st(const char *path, unsigned char **data, size_t *data_len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char lenb[8];
    if (fread(lenb, 1, 8, f) != 8) return NULL;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | lenb[i];
    char *hdr = malloc(hl + 1);
    if (fread(hdr, 1, hl, f) != hl) return NULL;
    hdr[hl] = '\0';
    fseek(f, 0, SEEK_END);
    long end = ftell(f);
    *data_len = (size_t)end - 8 - hl;
    *data = malloc(*data_len + 1);
    fseek(f, (long)(8 + hl), SEEK_SET);
    if (fread(*data, 1, *data_len, f) != *data_len) return NULL;
    fclose(f);
    json_t *j = json_loads(hdr, 0, NULL);
    free(hdr);
    return j;
}

static void write_st(const char *path, json_t *hdr, const unsigned char *data, size_t data_len) {
    char *h = json_dumps(hdr, JSON_COMPACT);
    uint64_t hl = strlen(h);
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(hl >> (8 * i));
    FILE *f = fopen(path, "wb");
    fwrite(lenb, 1, 8, f);
    fwrite(h, 1, hl, f);
    fwrite(data, 1, data_len, f);
    fclose(f);
    free(h);
}

/* Shard file (inside dir) that holds `tensor`, per the index. */
static const char *shard_of(const char *dir, const char *tensor, char *out, size_t cap) {
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    json_t *ix = json_load_file(p, 0, NULL);
    snprintf(out, cap, "%s",
             json_string_value(json_object_get(json_object_get(ix, "weight_map"), tensor)));
    json_decref(ix);
    return out;
}

typedef void (*corrupt_fn)(const char *dir);

#define TENSOR_A "model.layers.0.self_attn.qkv_proj.weight"
#define ROUTER   "model.layers.0.block_sparse_moe.gate.weight"
#define TENSOR_B "model.layers.1.self_attn.out_proj.weight"
#define TENSOR_C "model.layers.3.post_attention_layernorm.weight"

static void edit_header(const char *dir, const char *tensor,
                        void (*edit)(json_t *hdr, json_t *entry)) {
    char shard[512], p[4096];
    shard_of(dir, tensor, shard, sizeof shard);
    snprintf(p, sizeof p, "%s/%s", dir, shard);
    unsigned char *data = NULL;
    size_t n = 0;
    json_t *h = read_st(p, &data, &n);
    if (!h) {
        fprintf(stderr, "bad_input_check: cannot read %s\n", p);
        exit(2);
    }
    edit(h, json_object_get(h, tensor));
    write_st(p, h, data, n);
    json_decref(h);
    free(data);
}

static void edit_past_end(json_t *h, json_t *e) {
    (void)h;
    json_t *o = json_object_get(e, "data_offsets");
    json_int_t b = json_integer_value(json_array_get(o, 0)),
               en = json_integer_value(json_array_get(o, 1));
    json_array_set_new(o, 0, json_integer(b + 100000000));
    json_array_set_new(o, 1, json_integer(en + 100000000));
}
static void edit_dtype(json_t *h, json_t *e) {
    (void)h;
    json_object_set_new(e, "dtype", json_string("I32"));
}
static void edit_shape(json_t *h, json_t *e) {
    (void)h;
    json_t *s = json_object_get(e, "shape");
    json_t *a = json_incref(json_array_get(s, 0)), *b = json_incref(json_array_get(s, 1));
    json_array_set_new(s, 0, b);
    json_array_set_new(s, 1, a);
}
static void edit_remove(json_t *h, json_t *e) {
    (void)e;
    json_object_del(h, TENSOR_C);
}

static void c_truncated(const char *dir) {
    char shard[512], p[4096];
    shard_of(dir, TENSOR_B, shard, sizeof shard);
    snprintf(p, sizeof p, "%s/%s", dir, shard);
    struct stat sb;
    stat(p, &sb);
    if (truncate(p, sb.st_size * 6 / 10) != 0) exit(2);
}
static void c_past_end(const char *dir) {
    edit_header(dir, TENSOR_A, edit_past_end);
}
static void c_dtype(const char *dir) {
    edit_header(dir, ROUTER, edit_dtype);
}
static void c_shape(const char *dir) {
    edit_header(dir, TENSOR_B, edit_shape);
}
static void c_not_in_shard(const char *dir) {
    edit_header(dir, TENSOR_C, edit_remove);
}
static void c_missing_shard(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/model-00003-of-00004.safetensors", dir);
    unlink(p);
}
static void c_index_missing_tensor(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    json_t *ix = json_load_file(p, 0, NULL);
    json_object_del(json_object_get(ix, "weight_map"), TENSOR_C);
    json_dump_file(ix, p, JSON_INDENT(2));
    json_decref(ix);
}
static void c_index_bad_shard_name(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    json_t *ix = json_load_file(p, 0, NULL);
    json_object_set_new(json_object_get(ix, "weight_map"), TENSOR_C,
                        json_string("../../etc/passwd"));
    json_dump_file(ix, p, JSON_INDENT(2));
    json_decref(ix);
}
static void edit_config(const char *dir, const char *key, json_t *value) {
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_t *c = json_load_file(p, 0, NULL);
    json_object_set_new(c, key, value);
    json_dump_file(c, p, JSON_INDENT(2));
    json_decref(c);
}
static void c_config_rotary(const char *dir) {
    edit_config(dir, "rotary_dim", json_integer(33));
}
static void c_config_type(const char *dir) {
    edit_config(dir, "num_attention_heads", json_string("four"));
}
static void c_config_layers(const char *dir) {
    edit_config(dir, "num_hidden_layers", json_integer(9));
}
static void c_config_not_json(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    fputs("{\"hidden_size\": 64,,}", f);
    fclose(f);
}

typedef struct bad_case {
    const char *name;
    corrupt_fn corrupt;
    const char *mention[3]; /* substrings the error line must contain */
} bad_case;

static const bad_case cases[] = {
    {"truncated shard", c_truncated, {"model-00001-of-00004.safetensors", "truncated", NULL}},
    {"offset past end of file",
     c_past_end,
     {"model-00001-of-00004.safetensors", TENSOR_A, "past the end"}},
    {"wrong dtype", c_dtype, {"model-00001-of-00004.safetensors", ROUTER, "dtype I32"}},
    {"wrong shape", c_shape, {"model-00001-of-00004.safetensors", TENSOR_B, "shape [128, 64]"}},
    {"tensor missing from its shard",
     c_not_in_shard,
     {"model-00002-of-00004.safetensors", TENSOR_C, "not in this shard"}},
    {"tensor missing from the index",
     c_index_missing_tensor,
     {"model.safetensors.index.json", TENSOR_C, "not in the index"}},
    {"missing shard", c_missing_shard, {"model-00003-of-00004.safetensors", "cannot open", NULL}},
    {"shard name escaping the directory",
     c_index_bad_shard_name,
     {"model.safetensors.index.json", TENSOR_C, "weight_map"}},
    {"bad config value", c_config_rotary, {"config.json", "'rotary_dim'", NULL}},
    {"config value of the wrong type",
     c_config_type,
     {"config.json", "'num_attention_heads' must be an integer", NULL}},
    {"config inconsistent with attn_type_list",
     c_config_layers,
     {"config.json", "'attn_type_list' has 8 entries", NULL}},
    {"config not JSON", c_config_not_json, {"config.json", "invalid JSON", NULL}},
};

static int run_case(const bad_case *c, int idx) {
    char dir[4096], cmd[3 * 4096];
    snprintf(dir, sizeof dir, "%s/bad%02d", g_work, idx);
    copy_dir(g_model, dir);
    c->corrupt(dir);
    snprintf(cmd, sizeof cmd, "'%s' run --model '%s' --ids 1,2,3 --greedy 2 2>&1 >/dev/null", g_bin,
             dir);
    FILE *pp = popen(cmd, "r");
    char out[65536];
    size_t n = fread(out, 1, sizeof out - 1, pp);
    out[n] = '\0';
    int status = pclose(pp);
    int errors = 0, ok = 1;
    const char *line_with_error = "";
    for (char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, "error:", 6) == 0) {
            errors++;
            line_with_error = l;
        }
    char first[2048];
    snprintf(first, sizeof first, "%.*s", (int)strcspn(line_with_error, "\n"), line_with_error);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 1) ok = 0;
    if (errors != 1) ok = 0;
    if (strstr(out, "Sanitizer") || strstr(out, "runtime error")) ok = 0;
    for (int i = 0; i < 3 && c->mention[i]; i++)
        if (!strstr(first, c->mention[i])) ok = 0;
    printf("%s %-36s exit %d, %d error line(s): %s\n", ok ? "PASS" : "FAIL", c->name,
           WIFEXITED(status) ? WEXITSTATUS(status) : -1, errors, first);
    if (!ok) printf("---- full output ----\n%s---------------------\n", out);
    return ok;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {{"moerack", required_argument, 0, 'x'},
                                         {"model", required_argument, 0, 'm'},
                                         {"work", required_argument, 0, 'w'},
                                         {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'x')
            g_bin = optarg;
        else if (o == 'm')
            g_model = optarg;
        else if (o == 'w')
            g_work = optarg;
        else
            return 2;
    }
    if (!g_bin || !g_model || !g_work) {
        fprintf(stderr, "usage: bad_input_check --moerack BIN --model DIR --work DIR\n");
        return 2;
    }
    mkdir(g_work, 0755);
    int failed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        failed += !run_case(&cases[i], (int)i);
    return failed ? 1 : 0;
}
