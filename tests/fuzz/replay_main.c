/* replay_main — runs a fuzz target's LLVMFuzzerTestOneInput without libFuzzer, so ctest
 * exercises it in every build (the ASan/UBSan one included):
 *   replay_TARGET [--random N] [--seed S] [--dict FILE] CORPUS_DIR_OR_FILE...
 * Every corpus file is run as is, then N generated inputs: random bytes, splices of dictionary
 * entries (markers, JSON and UTF-8 fragments) and mutations of the corpus files. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/rng.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct blob {
    uint8_t *p;
    size_t n;
} blob;

static blob *g_corpus;
static size_t g_n_corpus;
static blob g_dict[256];
static size_t g_n_dict;

static int read_all(const char *path, blob *b) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b->p = malloc((size_t)n + 1);
    b->n = fread(b->p, 1, (size_t)n, f);
    fclose(f);
    return 0;
}

static void add_path(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "replay: %s: not found\n", path);
        exit(2);
    }
    if (S_ISDIR(sb.st_mode)) {
        struct dirent **ents;
        int n = scandir(path, &ents, NULL, alphasort);
        for (int i = 0; i < n; i++) {
            if (ents[i]->d_name[0] != '.') {
                char p[4096];
                snprintf(p, sizeof p, "%s/%s", path, ents[i]->d_name);
                add_path(p);
            }
            free(ents[i]);
        }
        free(ents);
        return;
    }
    g_corpus = realloc(g_corpus, (g_n_corpus + 1) * sizeof *g_corpus);
    if (read_all(path, &g_corpus[g_n_corpus]) == 0) g_n_corpus++;
}

/* libFuzzer dictionary format: one "quoted string" per line, \xNN and \" escapes. */
static void load_dict(const char *path) {
    FILE *f = fopen(path, "r");
    char line[1024];
    if (!f) {
        fprintf(stderr, "replay: %s: not found\n", path);
        exit(2);
    }
    while (fgets(line, sizeof line, f) && g_n_dict < 256) {
        char *q = strchr(line, '"');
        if (!q || line[0] == '#') continue;
        blob *b = &g_dict[g_n_dict];
        b->p = malloc(strlen(q));
        b->n = 0;
        for (char *c = q + 1; *c && *c != '"'; c++) {
            if (*c == '\\' && c[1] == 'x' && c[2] && c[3]) {
                char h[3] = {c[2], c[3], 0};
                b->p[b->n++] = (uint8_t)strtoul(h, NULL, 16);
                c += 3;
            } else if (*c == '\\' && c[1]) {
                b->p[b->n++] = (uint8_t)(c[1] == 'n' ? '\n' : c[1]);
                c++;
            } else {
                b->p[b->n++] = (uint8_t)*c;
            }
        }
        g_n_dict++;
    }
    fclose(f);
}

static size_t generate(uint64_t *rng, uint8_t *out, size_t cap) {
    size_t n = 0;
    int mode = (int)(mr_splitmix64(rng) % 3);
    if (mode == 2 && g_n_corpus) { /* mutate a corpus entry */
        blob *b = &g_corpus[mr_splitmix64(rng) % g_n_corpus];
        n = b->n < cap ? b->n : cap;
        memcpy(out, b->p, n);
        int muts = 1 + (int)(mr_splitmix64(rng) % 8);
        for (int m = 0; m < muts && n > 0; m++) {
            size_t at = mr_splitmix64(rng) % n;
            switch (mr_splitmix64(rng) % 4) {
            case 0:
                out[at] ^= (uint8_t)(1u << (mr_splitmix64(rng) % 8));
                break;
            case 1:
                out[at] = (uint8_t)mr_splitmix64(rng);
                break;
            case 2: /* truncate */
                n = at;
                break;
            case 3: /* duplicate a slice */
                if (n < cap / 2) {
                    size_t len = (n - at) / 2;
                    memmove(out + at + len, out + at, n - at);
                    n += len;
                }
                break;
            }
        }
        return n;
    }
    size_t target = (size_t)(mr_splitmix64(rng) % 600);
    while (n < target && n + 64 < cap) {
        if (mode == 1 && g_n_dict && mr_splitmix64(rng) % 2) {
            blob *d = &g_dict[mr_splitmix64(rng) % g_n_dict];
            if (n + d->n < cap) {
                memcpy(out + n, d->p, d->n);
                n += d->n;
            }
        } else {
            uint64_t r = mr_splitmix64(rng);
            out[n++] = (uint8_t)(r % 4 ? 0x20 + (r >> 8) % 0x5f : r >> 8); /* mostly ASCII */
        }
    }
    if (n && mr_splitmix64(rng) % 2) out[0] = (uint8_t)(mr_splitmix64(rng) % 7); /* the modes */
    return n;
}

int main(int argc, char **argv) {
    long n_random = 0;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--random") == 0 && i + 1 < argc) {
            n_random = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--dict") == 0 && i + 1 < argc) {
            load_dict(argv[++i]);
        } else {
            add_path(argv[i]);
        }
    }
    for (size_t i = 0; i < g_n_corpus; i++) LLVMFuzzerTestOneInput(g_corpus[i].p, g_corpus[i].n);
    static uint8_t buf[1 << 16];
    for (long i = 0; i < n_random; i++) {
        size_t n = generate(&seed, buf, sizeof buf);
        uint8_t *copy = malloc(n ? n : 1); /* exact size, so ASan sees overreads */
        memcpy(copy, buf, n);
        LLVMFuzzerTestOneInput(copy, n);
        free(copy);
    }
    printf("replayed %zu corpus files and %ld generated inputs\n", g_n_corpus, n_random);
    return 0;
}
