/* main.c — the `moerack` command: dispatches to subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/log.h"

static void usage(FILE *out) {
    fprintf(out, "usage: moerack <command> [options]\n"
                 "commands:\n"
                 "  run      run the model on token ids (greedy), single process\n"
                 "  model    gen-tiny | inspect: make or check a checkpoint\n"
                 "  bench    forward | membw | cluster: measure speed\n"
                 "  status   health of a running cluster (exit 0 healthy, 1 degraded, 2 down, 3 "
                 "unreachable)\n"
                 "  config-doc  print the configuration reference (docs/config.md)\n"
                 "  tokenize text <-> token ids (--decode), tokenizer.json export\n"
                 "  chat-template  render a conversation with the MiniMax-M1 template\n"
                 "run `moerack <command> --help` for a command's options\n");
}

int main(int argc, char **argv) {
    mr_log_set_short(1);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0) return mr_cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "model") == 0) return mr_cmd_model(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0) return mr_cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "status") == 0) return mr_cmd_status(argc - 1, argv + 1);
    if (strcmp(cmd, "config-doc") == 0) return mr_cmd_config_doc(argc - 1, argv + 1);
    if (strcmp(cmd, "tokenize") == 0) return mr_cmd_tokenize(argc - 1, argv + 1);
    if (strcmp(cmd, "chat-template") == 0) return mr_cmd_chat_template(argc - 1, argv + 1);
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    MR_LOG_ERROR(MR_LOG_CLI, "unknown command '%s'", cmd);
    usage(stderr);
    return 2;
}
