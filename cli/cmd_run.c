/* cmd_run.c — `moerack run`: greedy generation from token ids in one process.
 *
 * Prints the generated ids as one comma-separated line on stdout; with --prompt (text, encoded by
 * the model directory's tokenizer or --tokenizer) a second line follows with the generated ids
 * decoded. --dump-logits writes float32 little-endian rows of vocab_size logits: row 0 after the
 * prompt, then one row after each generated token is fed back (N + 1 rows for --greedy N). */
#include <getopt.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cluster_client.h"
#include "common/checkpoint.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "coordinator/chat_template.h"
#include "coordinator/model.h"
#include "coordinator/tokenizer.h"
#include "coordinator/utf8.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: moerack run --model DIR (--ids 1,2,3 | --prompt TEXT) [--greedy N] [options]\n"
            "  --model DIR          checkpoint directory (config.json + safetensors)\n"
            "  --synthetic-weights SEED  no shards: weights generated from SEED and DIR's\n"
            "                       config.json (the numbers `model gen-tiny --seed` writes)\n"
            "  --ids LIST           prompt token ids, comma-separated\n"
            "  --prompt TEXT        prompt text, encoded with DIR's tokenizer.json (or\n"
            "                       vocab.json + merges.txt); the output gets a decoded line\n"
            "  --tokenizer PATH     tokenizer for --prompt instead of the model directory's\n"
            "  --chat               with --prompt: send TEXT as a user message through the\n"
            "                       chat template (with the assistant header at the end)\n"
            "  --greedy N           generate N tokens by argmax (default 8)\n"
            "  --dump-logits FILE   write float32 logits rows (prompt, then each fed-back token)\n"
            "  --backend NAME       compute backend (default cpu): ref, cpu, or with CUDA\n"
            "                       cuda[-int8|-int4][-fast], cuda-full, cuda-gpu\n"
            "  --threads N          cpu threads (default: all CPUs)\n"
            "  --prefill-chunk N    prompt tokens per forward step (default 512)\n"
            "  --micro-batches 1|2  split long prefill steps in two (as the cluster does)\n"
            "  --gpus LIST          split the layers over these GPUs, e.g. 0,1 (cuda-gpu; for\n"
            "                       cpu-resident each entry is one more stage: a test vehicle)\n"
            "  --log-level LEVEL    error|warn|info|debug (default warn)\n"
            "  --coordinator H:P    run on a cluster instead (or --config CLUSTER.cfg)\n");
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* --coordinator / --config: the same generation, run by a cluster. */
static int run_remote(const char *endpoint, const char *config, const char *ids_arg, int greedy,
                      const char *dump) {
    char host[128];
    int port;
    if (mr_client_endpoint(endpoint, config, host, sizeof host, &port) != MR_OK) return 2;
    int32_t *ids = NULL;
    int n_ids = mr_cli_parse_ids(ids_arg, INT32_MAX, &ids);
    if (n_ids < 0) return 2;
    int fd = mr_client_open(host, port, MOERACK__ROLE__ROLE_CLIENT, 5000);
    if (fd < 0) {
        MR_LOG_ERROR(MR_LOG_CLI, "coordinator %s:%d is unreachable", host, port);
        free(ids);
        return 1;
    }
    Moerack__GenerateRequest rq = MOERACK__GENERATE_REQUEST__INIT;
    rq.n_prompt = (size_t)n_ids;
    rq.prompt = ids;
    rq.max_tokens = (uint32_t)greedy;
    rq.want_logits = dump != NULL;
    Moerack__Envelope env = MOERACK__ENVELOPE__INIT;
    env.msg_case = MOERACK__ENVELOPE__MSG_GENERATE_REQUEST;
    env.generate_request = &rq;
    Moerack__Envelope *rep = NULL;
    int rc = 1;
    if (mr_frame_send(fd, &env, 10000) != MR_OK || mr_frame_recv(fd, 1u << 30, -1, &rep) != MR_OK ||
        rep->msg_case != MOERACK__ENVELOPE__MSG_GENERATE_REPLY) {
        MR_LOG_ERROR(MR_LOG_CLI, "coordinator %s:%d closed the connection without a reply", host,
                     port);
        goto out;
    }
    const Moerack__GenerateReply *r = rep->generate_reply;
    if (r->error) {
        MR_LOG_ERROR(MR_LOG_CLI, "cluster: %s", r->error->message);
        goto out;
    }
    for (size_t i = 0; i < r->n_tokens; i++) printf("%s%d", i ? "," : "", r->tokens[i]);
    printf("\n");
    if (dump) {
        FILE *f = fopen(dump, "wb");
        if (!f || fwrite(r->logits.data, 1, r->logits.len, f) != r->logits.len) {
            MR_LOG_ERROR(MR_LOG_CLI, "%s: cannot write logits", dump);
            if (f) fclose(f);
            goto out;
        }
        fclose(f);
    }
    rc = 0;
out:
    mr_frame_free(rep);
    close(fd);
    free(ids);
    return rc;
}

/* Encodes the prompt (through the chat template with --chat); returns the id count, -1 on a
 * failure already logged, -2 on bad input. */
static int encode_prompt(const char *tok_path, const char *prompt, int chat, int vocab,
                         mr_tokenizer **tok, int32_t **ids) {
    if (mr_tokenizer_load(tok_path, tok) != MR_OK) return -1;
    char *text = NULL;
    size_t len = strlen(prompt), n = 0;
    if (chat) {
        json_t *msgs = json_pack("[{s:s, s:s}]", "role", "user", "content", prompt);
        mr_status st = msgs ? mr_chat_template_render(msgs, NULL, 1, &text, &len) : MR_ERR_NOMEM;
        json_decref(msgs);
        if (st != MR_OK) return -2;
    }
    mr_status st = mr_tokenizer_encode(*tok, text ? text : prompt, len, 0, ids, &n);
    free(text);
    if (st != MR_OK) return -2;
    if (n == 0 || n > INT32_MAX / 2) {
        MR_LOG_ERROR(MR_LOG_CLI, "--prompt: encodes to %zu tokens", n);
        return -2;
    }
    for (size_t i = 0; i < n; i++) {
        if ((*ids)[i] >= vocab) {
            MR_LOG_ERROR(MR_LOG_CLI,
                         "--prompt: token id %d is outside the model's vocabulary "
                         "(%d): the tokenizer does not belong to this model",
                         (*ids)[i], vocab);
            return -2;
        }
    }
    return (int)n;
}

/* The generated ids as text, on one more stdout line (invalid UTF-8 shown as U+FFFD). */
static int print_decoded(const mr_tokenizer *tok, const int32_t *gen, size_t n) {
    char *raw, *text;
    size_t rl, tl;
    if (mr_tokenizer_decode(tok, gen, n, 0, &raw, &rl) != MR_OK) return -1;
    mr_status st = mr_utf8_lossy(raw, rl, &text, &tl);
    free(raw);
    if (st != MR_OK) return -1;
    int ok = fwrite(text, 1, tl, stdout) == tl && putchar('\n') != EOF;
    free(text);
    return ok ? 0 : -1;
}

int mr_cmd_run(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"ids", required_argument, 0, 'i'},
                                         {"greedy", required_argument, 0, 'g'},
                                         {"dump-logits", required_argument, 0, 'd'},
                                         {"backend", required_argument, 0, 'b'},
                                         {"threads", required_argument, 0, 't'},
                                         {"prefill-chunk", required_argument, 0, 'c'},
                                         {"log-level", required_argument, 0, 'l'},
                                         {"prompt", required_argument, 0, 'p'},
                                         {"micro-batches", required_argument, 0, 'M'},
                                         {"coordinator", required_argument, 0, 'K'},
                                         {"config", required_argument, 0, 'F'},
                                         {"tokenizer", required_argument, 0, 'T'},
                                         {"chat", no_argument, 0, 'C'},
                                         {"synthetic-weights", required_argument, 0, 'S'},
                                         {"gpus", required_argument, 0, 'G'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *model_dir = NULL, *ids_arg = NULL, *dump = NULL, *backend = "cpu";
    const char *coordinator = NULL, *cluster_config = NULL;
    const char *prompt = NULL, *tok_path = NULL;
    int chat = 0, n_gpus = 1, gpus[MR_MAX_STAGES] = {0};
    long long greedy = 8, threads = 0, chunk = 512, micro = 1, synthetic = -1;
    mr_log_set_level(MR_LOG_LEVEL_WARN);
    optind = 1;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'm':
            model_dir = optarg;
            break;
        case 'i':
            ids_arg = optarg;
            break;
        case 'd':
            dump = optarg;
            break;
        case 'b':
            backend = optarg;
            break;
        case 'g':
            if ((greedy = mr_cli_parse_int("--greedy", optarg, 0, 1 << 20)) < 0) return 2;
            break;
        case 't':
            if ((threads = mr_cli_parse_int("--threads", optarg, 0, 1024)) < 0) return 2;
            break;
        case 'c':
            if ((chunk = mr_cli_parse_int("--prefill-chunk", optarg, 1, 1 << 20)) < 0) return 2;
            break;
        case 'l': {
            int lv = mr_log_level_parse(optarg);
            if (lv < 0) {
                MR_LOG_ERROR(MR_LOG_CLI, "--log-level: unknown level '%s'", optarg);
                return 2;
            }
            mr_log_set_level((mr_log_level)lv);
            break;
        }
        case 'p':
            prompt = optarg;
            break;
        case 'T':
            tok_path = optarg;
            break;
        case 'C':
            chat = 1;
            break;
        case 'K':
            coordinator = optarg;
            break;
        case 'S':
            if ((synthetic = mr_cli_parse_int("--synthetic-weights", optarg, 0, 1ll << 62)) < 0)
                return 2;
            break;
        case 'F':
            cluster_config = optarg;
            break;
        case 'M':
            if ((micro = mr_cli_parse_int("--micro-batches", optarg, 1, MR_MAX_MICRO_BATCHES)) < 0)
                return 2;
            break;
        case 'G':
            if ((n_gpus = mr_cli_parse_gpus(optarg, gpus, MR_MAX_STAGES)) < 0) return 2;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (ids_arg && (coordinator || cluster_config))
        return run_remote(coordinator, cluster_config, ids_arg, (int)greedy, dump);
    if (!model_dir || !ids_arg == !prompt) {
        MR_LOG_ERROR(MR_LOG_CLI, "run: --model and one of --ids, --prompt are required");
        usage(stderr);
        return 2;
    }
    if ((tok_path || chat) && !prompt) {
        MR_LOG_ERROR(MR_LOG_CLI, "run: --tokenizer and --chat go with --prompt");
        return 2;
    }
    int rc = 1;
    mr_ckpt *ck = NULL;
    mr_model *m = NULL;
    mr_seq *seq = NULL;
    int32_t *ids = NULL, *gen = NULL;
    float *logits = NULL;
    FILE *df = NULL;
    mr_tokenizer *tok = NULL;
    char model_path[4200];
    if (synthetic >= 0) /* the weights of `gen-tiny --seed`, generated from DIR/config.json */
        snprintf(model_path, sizeof model_path, "synthetic:%lld:%s", synthetic, model_dir);
    else
        snprintf(model_path, sizeof model_path, "%s", model_dir);
    if (mr_ckpt_open(model_path, &ck) != MR_OK) goto out;
    const mr_model_config *c = mr_ckpt_config(ck);
    int n_ids;
    if (prompt) {
        n_ids =
            encode_prompt(tok_path ? tok_path : model_dir, prompt, chat, c->vocab_size, &tok, &ids);
        if (n_ids < 0) {
            rc = n_ids == -2 ? 2 : 1;
            goto out;
        }
    } else if ((n_ids = mr_cli_parse_ids(ids_arg, c->vocab_size, &ids)) < 0) {
        rc = 2;
        goto out;
    }
    if (prompt && !(gen = malloc((size_t)(greedy ? greedy : 1) * sizeof *gen))) goto out;
    mr_model_params mp;
    mr_model_params_default(&mp);
    mp.backend = backend;
    mp.n_threads = (int)threads;
    mp.max_batch_tokens = (int)chunk;
    mp.max_seqs = 1;
    mp.max_context = n_ids + greedy + 1;
    mp.micro_batches = (int)micro;
    mp.n_stages = n_gpus;
    memcpy(mp.stage_devices, gpus, sizeof gpus);
    double t0 = mr_now_s();
    if (mr_model_create(ck, &mp, &m) != MR_OK) goto out;
    double t_load = mr_now_s() - t0;
    if (mr_model_seq_open(m, mp.max_context, &seq) != MR_OK) goto out;
    if (!(logits = malloc((size_t)c->vocab_size * sizeof *logits))) goto out;
    if (dump && !(df = fopen(dump, "wb"))) {
        MR_LOG_ERROR(MR_LOG_CLI, "%s: cannot create logits file", dump);
        goto out;
    }
    t0 = mr_now_s();
    for (int i = 0; i < n_ids; i += (int)chunk) {
        int len = n_ids - i < chunk ? n_ids - i : (int)chunk;
        mr_step_seq in = {seq, ids + i, len, i + len == n_ids};
        if (mr_model_step(m, &in, 1, logits) != MR_OK) goto out;
    }
    double t_prefill = mr_now_s() - t0;
    t0 = mr_now_s();
    for (long long g = 0; g <= greedy; g++) {
        if (df &&
            fwrite(logits, sizeof *logits, (size_t)c->vocab_size, df) != (size_t)c->vocab_size) {
            MR_LOG_ERROR(MR_LOG_CLI, "%s: write failed", dump);
            goto out;
        }
        if (g == greedy) break;
        int32_t next = argmax(logits, c->vocab_size);
        printf("%s%d", g ? "," : "", next);
        if (gen) gen[g] = next;
        mr_step_seq in = {seq, &next, 1, 1};
        if (mr_model_step(m, &in, 1, logits) != MR_OK) goto out;
    }
    printf("\n");
    double t_decode = mr_now_s() - t0;
    if (gen && print_decoded(tok, gen, (size_t)greedy) != 0) goto out;
    MR_LOG_INFO(MR_LOG_CLI,
                "backend %s: load %.3f s, prefill %d tokens %.3f s, decode %lld tokens %.3f s",
                backend, t_load, n_ids, t_prefill, greedy, t_decode);
    rc = 0;
out:
    if (df && fclose(df) != 0 && rc == 0) {
        MR_LOG_ERROR(MR_LOG_CLI, "%s: write failed", dump);
        rc = 1;
    }
    if (seq) mr_model_seq_close(m, seq);
    mr_model_destroy(m);
    mr_ckpt_close(ck);
    free(ids);
    free(gen);
    free(logits);
    mr_tokenizer_destroy(tok);
    return rc;
}
