/* cmd_model.c — `moerack model gen-tiny` and `moerack model inspect`. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/gen_tiny.h"
#include "common/checkpoint.h"
#include "common/log.h"

static int gen_tiny(int argc, char **argv) {
    static const struct option opts[] = {{"preset", required_argument, 0, 'p'},
                                         {"seed", required_argument, 0, 's'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *preset = "tiny";
    long long seed = 1;
    optind = 1;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'p':
            preset = optarg;
            break;
        case 's':
            if ((seed = mr_cli_parse_int("--seed", optarg, 0, LLONG_MAX)) < 0) return 2;
            break;
        case 'h':
            printf("usage: moerack model gen-tiny OUT_DIR [--preset NAME] [--seed N]\npresets:\n");
            mr_tiny_preset_list(stdout);
            return 0;
        default:
            return 2;
        }
    }
    if (optind != argc - 1) {
        MR_LOG_ERROR(MR_LOG_CLI, "gen-tiny: expected one output directory");
        return 2;
    }
    const mr_tiny_preset *p = mr_tiny_preset_find(preset);
    if (!p) {
        MR_LOG_ERROR(MR_LOG_CLI, "gen-tiny: unknown preset '%s'; known presets:", preset);
        mr_tiny_preset_list(stderr);
        return 2;
    }
    if (mr_gen_tiny(argv[optind], p, (uint64_t)seed) != MR_OK) return 1;
    printf("wrote preset %s (seed %lld) to %s\n", p->name, seed, argv[optind]);
    return 0;
}

static void print_config(const mr_model_config *c) {
    printf("model_type %s: %d layers (%d lightning, %d softmax), hidden %d, heads %d x %d "
           "(kv %d, rotary %d, theta %g), experts %d (top-%d, ffn %d), vocab %d, postnorm %s\n",
           c->model_type, c->num_hidden_layers, mr_model_config_n_lightning(c),
           mr_model_config_n_softmax(c), c->hidden_size, c->num_attention_heads, c->head_dim,
           c->num_key_value_heads, c->rotary_dim, c->rope_theta, c->num_local_experts,
           c->num_experts_per_tok, c->intermediate_size, c->vocab_size, c->postnorm ? "yes" : "no");
}

/* Bytes per part from the layout with the release dtypes (F32 routers, BF16 otherwise). */
static uint64_t print_parts(const mr_model_config *c) {
    int n = mr_layout_count(c);
    mr_tensor_spec *specs = malloc((size_t)n * sizeof *specs);
    if (!specs) return 0;
    mr_layout_build(c, specs);
    uint64_t part[MR_PART_COUNT] = {0}, total = 0, params = 0;
    for (int i = 0; i < n; i++) {
        uint64_t b = mr_tensor_spec_bytes(&specs[i]);
        part[specs[i].part] += b;
        total += b;
        params += b / mr_dtype_size(specs[i].dtype);
    }
    free(specs);
    printf("tensors %d, parameters %llu, bytes %llu\n", n, (unsigned long long)params,
           (unsigned long long)total);
    for (int p = 0; p < MR_PART_COUNT; p++)
        printf("  %-10s %16llu bytes (%5.1f%%)\n", mr_part_name((mr_part)p),
               (unsigned long long)part[p], total ? 100.0 * (double)part[p] / (double)total : 0.0);
    return total;
}

static int inspect(int argc, char **argv) {
    if (argc != 2 || strcmp(argv[1], "--help") == 0) {
        printf("usage: moerack model inspect DIR\n"
               "  prints the config and bytes per part and checks the checkpoint is complete and\n"
               "  consistent; a directory with config.json and the index but no shards is checked\n"
               "  as far as the index goes\n");
        return argc == 2 ? 0 : 2;
    }
    const char *dir = argv[1];
    char path[PATH_MAX + 64];
    mr_model_config c;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (mr_model_config_load(path, &c) != MR_OK) return 1;
    print_config(&c);
    uint64_t layout_bytes = print_parts(&c);

    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    struct stat sb;
    if (stat(path, &sb) == 0) {
        mr_ckpt_index *ix;
        if (mr_ckpt_index_load(path, &ix) != MR_OK) return 1;
        int ok = mr_ckpt_index_check_layout(ix, path, &c) == MR_OK;
        printf("index: %d tensors in %d shards numbered from %d, total_size %llu\n",
               mr_ckpt_index_n_tensors(ix), mr_ckpt_index_n_shards(ix),
               mr_ckpt_index_first_shard(ix), (unsigned long long)mr_ckpt_index_total_size(ix));
        if (ok && mr_ckpt_index_total_size(ix) && mr_ckpt_index_total_size(ix) != layout_bytes) {
            MR_LOG_ERROR(MR_LOG_CKPT, "%s: total_size %llu differs from the layout's %llu bytes",
                         path, (unsigned long long)mr_ckpt_index_total_size(ix),
                         (unsigned long long)layout_bytes);
            ok = 0;
        }
        int present = 0, first = mr_ckpt_index_first_shard(ix), n = mr_ckpt_index_n_shards(ix);
        for (int i = 0; i < n; i++) {
            char sp[PATH_MAX + 64];
            snprintf(sp, sizeof sp, "%s/model-%05d-of-%05d.safetensors", dir, first + i, n);
            present += stat(sp, &sb) == 0;
        }
        mr_ckpt_index_free(ix);
        if (!ok) return 1;
        if (present == 0) {
            printf("shards: none present; index and config are consistent\n");
            return 0;
        }
        printf("shards: %d of %d present\n", present, n);
    }
    mr_ckpt *ck;
    if (mr_ckpt_open(dir, &ck) != MR_OK) return 1;
    mr_status st = mr_ckpt_verify(ck);
    mr_ckpt_close(ck);
    if (st != MR_OK) return 1;
    printf("checkpoint OK: every tensor present with the right shape and dtype\n");
    return 0;
}

int mr_cmd_model(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "gen-tiny") == 0) return gen_tiny(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "inspect") == 0) return inspect(argc - 1, argv + 1);
    fprintf(stderr, "usage: moerack model gen-tiny OUT [--preset NAME] [--seed N]\n"
                    "       moerack model inspect DIR\n");
    return 2;
}
