/* cmd_tokenize.c — `moerack tokenize` (text <-> ids) and `moerack chat-template` (render a
 * conversation with the official MiniMax-M1 template), for inspection and scripting.
 *
 *   echo -n 'Hello' | moerack tokenize --tokenizer DIR           -> 9707
 *   echo 9707 | moerack tokenize --tokenizer DIR --decode         -> Hello
 *   moerack tokenize --minimax-merges merges.txt --write-tokenizer-json out/tokenizer.json
 *   moerack tokenize --tokenizer DIR --bench 5 < big.txt          -> MB/s and tokens/s
 *   moerack chat-template < conversation.json                     -> the prompt text */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "coordinator/chat_template.h"
#include "coordinator/tokenizer.h"

#define MAX_STDIN ((size_t)1 << 31)

static void tokenize_usage(FILE *out) {
    fprintf(out,
            "usage: moerack tokenize (--tokenizer PATH | --minimax-merges FILE |\n"
            "                         --vocab FILE --merges FILE) [options] < input\n"
            "  --tokenizer PATH        tokenizer.json, or a directory with it (or vocab.json +\n"
            "                          merges.txt)\n"
            "  --minimax-merges FILE   build the MiniMax-M1 tokenizer from its merges.txt\n"
            "  --vocab F --merges F    a GPT-2 style pair\n"
            "  --decode                read ids (separated by commas or white space), write text\n"
            "  --skip-special          with --decode: leave special tokens out\n"
            "  --special-as-text       encode special tokens' text as ordinary text\n"
            "  --write-tokenizer-json OUT  write the equivalent tokenizer.json (merges sources)\n"
            "  --bench N               encode stdin N times; report MB/s and tokens/s\n"
            "  --lines                 with --bench: encode each line (up to and with its \\n)\n"
            "                          on its own, as a batch of documents\n"
            "  --no-cache              do not use the pre-token cache\n"
            "Encoding prints the ids as one comma-separated line.\n");
}

/* Reads all of stdin (bounded); NUL-terminated. */
int mr_cli_read_stdin(char **out, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    if (!b) return -1;
    for (;;) {
        if (n + 1 >= cap) {
            if (cap >= MAX_STDIN) {
                MR_LOG_ERROR(MR_LOG_CLI, "stdin: more than %zu bytes", MAX_STDIN);
                free(b);
                return -1;
            }
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                return -1;
            }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n - 1, stdin);
        n += r;
        if (r == 0) break;
    }
    if (ferror(stdin)) {
        MR_LOG_ERROR(MR_LOG_CLI, "stdin: read failed");
        free(b);
        return -1;
    }
    b[n] = '\0';
    *out = b;
    *len = n;
    return 0;
}

/* Parses ids separated by commas and/or white space. */
static int parse_id_text(const char *s, int32_t n_ids, int32_t **out, size_t *n_out) {
    size_t cap = 64, n = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return -1;
    const char *p = s;
    for (;;) {
        while (*p == ',' || *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (!*p) break;
        char *end;
        long long x = strtoll(p, &end, 10);
        if (end == p || x < 0 || x >= n_ids) {
            MR_LOG_ERROR(MR_LOG_CLI, "ids: '%.20s' is not an id in [0, %d)", p, n_ids);
            free(v);
            return -1;
        }
        if (n == cap) {
            int32_t *nv = realloc(v, 2 * cap * sizeof *nv);
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
            cap *= 2;
        }
        v[n++] = (int32_t)x;
        p = end;
    }
    *out = v;
    *n_out = n;
    return 0;
}

static int print_ids(const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
    printf("\n");
    return fflush(stdout) == 0 ? 0 : 1;
}

/* Encodes text whole, or (lines) each line separately; returns the token count or -1. */
static long long encode_all(mr_tokenizer *t, const char *text, size_t len, int lines,
                            unsigned flags) {
    long long total = 0;
    for (size_t at = 0; at < len;) {
        const char *nl = lines ? memchr(text + at, '\n', len - at) : NULL;
        size_t end = nl ? (size_t)(nl - text) + 1 : len, n;
        int32_t *ids;
        if (mr_tokenizer_encode(t, text + at, end - at, flags, &ids, &n) != MR_OK) return -1;
        free(ids);
        total += (long long)n;
        at = end;
    }
    return total;
}

static int bench(mr_tokenizer *t, const char *text, size_t len, long long reps, int lines,
                 unsigned flags) {
    double best = 1e30, total = 0;
    long long n_tok = 0;
    for (long long r = 0; r < reps; r++) {
        double t0 = mr_now_s();
        if ((n_tok = encode_all(t, text, len, lines, flags)) < 0) return 1;
        double dt = mr_now_s() - t0;
        total += dt;
        if (dt < best) best = dt;
    }
    printf("bytes %zu tokens %lld reps %lld%s best %.4f s mean %.4f s: %.2f MB/s, %.0f tokens/s "
           "(best)\n",
           len, n_tok, reps, lines ? " (per line)" : "", best, total / (double)reps,
           (double)len / best / 1e6, (double)n_tok / best);
    return 0;
}

int mr_cmd_tokenize(int argc, char **argv) {
    static const struct option opts[] = {{"tokenizer", required_argument, 0, 't'},
                                         {"minimax-merges", required_argument, 0, 'M'},
                                         {"vocab", required_argument, 0, 'v'},
                                         {"merges", required_argument, 0, 'm'},
                                         {"decode", no_argument, 0, 'd'},
                                         {"skip-special", no_argument, 0, 's'},
                                         {"special-as-text", no_argument, 0, 'S'},
                                         {"write-tokenizer-json", required_argument, 0, 'w'},
                                         {"bench", required_argument, 0, 'b'},
                                         {"no-cache", no_argument, 0, 'n'},
                                         {"lines", no_argument, 0, 'L'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int lines = 0;
    const char *tok_path = NULL, *mm = NULL, *vocab = NULL, *merges = NULL, *write = NULL;
    int decode = 0;
    unsigned eflags = 0, dflags = 0;
    long long reps = 0;
    optind = 1;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 't':
            tok_path = optarg;
            break;
        case 'M':
            mm = optarg;
            break;
        case 'v':
            vocab = optarg;
            break;
        case 'm':
            merges = optarg;
            break;
        case 'd':
            decode = 1;
            break;
        case 's':
            dflags |= MR_TOK_DECODE_SKIP_SPECIAL;
            break;
        case 'S':
            eflags |= MR_TOK_ENCODE_SPECIAL_AS_TEXT;
            break;
        case 'n':
            eflags |= MR_TOK_ENCODE_NO_CACHE;
            break;
        case 'w':
            write = optarg;
            break;
        case 'L':
            lines = 1;
            break;
        case 'b':
            if ((reps = mr_cli_parse_int("--bench", optarg, 1, 1000)) < 0) return 2;
            break;
        case 'h':
            tokenize_usage(stdout);
            return 0;
        default:
            tokenize_usage(stderr);
            return 2;
        }
    }
    if (!!tok_path + !!mm + !!(vocab || merges) != 1 || (!vocab != !merges)) {
        MR_LOG_ERROR(MR_LOG_CLI, "tokenize: give exactly one of --tokenizer, --minimax-merges, "
                                 "--vocab + --merges");
        tokenize_usage(stderr);
        return 2;
    }
    if (write) {
        if (tok_path) {
            MR_LOG_ERROR(MR_LOG_CLI, "--write-tokenizer-json: needs --minimax-merges or --vocab "
                                     "+ --merges (a tokenizer.json is already one)");
            return 2;
        }
        mr_status st = mm ? mr_tokenizer_write_json_minimax(mm, write)
                          : mr_tokenizer_write_json_vocab_merges(vocab, merges, write);
        return st == MR_OK ? 0 : 1;
    }
    mr_tokenizer *t = NULL;
    mr_status st = tok_path ? mr_tokenizer_load(tok_path, &t)
                   : mm     ? mr_tokenizer_load_minimax_merges(mm, &t)
                            : mr_tokenizer_load_vocab_merges(vocab, merges, &t);
    if (st != MR_OK) return 1;
    char *in = NULL;
    size_t in_len;
    int rc = 1;
    if (mr_cli_read_stdin(&in, &in_len) != 0) goto out;
    if (reps) {
        rc = bench(t, in, in_len, reps, lines, eflags);
    } else if (decode) {
        int32_t *ids;
        size_t n;
        char *text;
        size_t tl;
        if (parse_id_text(in, mr_tokenizer_n_ids(t), &ids, &n) != 0) {
            rc = 2;
            goto out;
        }
        st = mr_tokenizer_decode(t, ids, n, dflags, &text, &tl);
        free(ids);
        if (st != MR_OK) goto out;
        rc = fwrite(text, 1, tl, stdout) == tl && fflush(stdout) == 0 ? 0 : 1;
        free(text);
    } else {
        int32_t *ids;
        size_t n;
        if (mr_tokenizer_encode(t, in, in_len, eflags, &ids, &n) != MR_OK) goto out;
        rc = print_ids(ids, n);
        free(ids);
    }
out:
    free(in);
    mr_tokenizer_destroy(t);
    return rc;
}

static void chat_usage(FILE *out) {
    fprintf(out,
            "usage: moerack chat-template [options] < request.json\n"
            "  input: {\"messages\": [...], \"tools\": [...], \"add_generation_prompt\": true}\n"
            "         or a bare list of messages\n"
            "  --no-generation-prompt  do not end with the assistant header\n"
            "  --tokenizer PATH        print the prompt's token ids instead of its text\n"
            "  --minimax-merges FILE   the same, with the tokenizer built from merges.txt\n");
}

int mr_cmd_chat_template(int argc, char **argv) {
    static const struct option opts[] = {{"no-generation-prompt", no_argument, 0, 'n'},
                                         {"tokenizer", required_argument, 0, 't'},
                                         {"minimax-merges", required_argument, 0, 'M'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int no_gen = 0;
    const char *tok_path = NULL, *mm = NULL;
    optind = 1;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'n':
            no_gen = 1;
            break;
        case 't':
            tok_path = optarg;
            break;
        case 'M':
            mm = optarg;
            break;
        case 'h':
            chat_usage(stdout);
            return 0;
        default:
            chat_usage(stderr);
            return 2;
        }
    }
    char *in = NULL, *prompt = NULL;
    size_t in_len, plen;
    int rc = 1;
    json_t *req = NULL;
    mr_tokenizer *t = NULL;
    if (tok_path && mm) {
        MR_LOG_ERROR(MR_LOG_CLI, "chat-template: --tokenizer and --minimax-merges exclude "
                                 "each other");
        return 2;
    }
    if ((tok_path && mr_tokenizer_load(tok_path, &t) != MR_OK) ||
        (mm && mr_tokenizer_load_minimax_merges(mm, &t) != MR_OK))
        return 1;
    if (mr_cli_read_stdin(&in, &in_len) != 0) goto out;
    json_error_t e;
    if (!(req = json_loadb(in, in_len, JSON_ALLOW_NUL, &e))) {
        MR_LOG_ERROR(MR_LOG_CLI, "stdin:%d:%d: invalid JSON: %s", e.line, e.column, e.text);
        goto out;
    }
    if (no_gen && json_is_object(req))
        json_object_set_new(req, "add_generation_prompt", json_false());
    mr_status st = json_is_array(req) && no_gen
                       ? mr_chat_template_render(req, NULL, 0, &prompt, &plen)
                       : mr_chat_template_render_request(req, &prompt, &plen);
    if (st != MR_OK) goto out;
    if (t) {
        int32_t *ids;
        size_t n;
        if (mr_tokenizer_encode(t, prompt, plen, 0, &ids, &n) != MR_OK) goto out;
        rc = print_ids(ids, n);
        free(ids);
    } else {
        rc = fwrite(prompt, 1, plen, stdout) == plen && fflush(stdout) == 0 ? 0 : 1;
    }
out:
    free(prompt);
    free(in);
    json_decref(req);
    mr_tokenizer_destroy(t);
    return rc;
}
