/* cli.h — subcommands of the `moerack` command. Each returns the process exit code. */
#ifndef MR_CLI_H
#define MR_CLI_H

#include <stddef.h>
#include <stdint.h>

int mr_cmd_run(int argc, char **argv);
int mr_cmd_model(int argc, char **argv);
int mr_cmd_bench(int argc, char **argv);
int mr_bench_transport(int argc, char **argv); /* `moerack bench transport` */
int mr_bench_load(int argc, char **argv);      /* `moerack bench load` */
int mr_cmd_status(int argc, char **argv);
int mr_cmd_config_doc(int argc, char **argv);
int mr_cmd_tokenize(int argc, char **argv);
int mr_cmd_chat_template(int argc, char **argv);
/* Reads all of stdin into a new NUL-terminated buffer; logs and returns -1 on failure. */
int mr_cli_read_stdin(char **out, size_t *len);

/* Parses a non-negative integer option value; logs "--name: ..." and returns -1 if invalid. */
long long mr_cli_parse_int(const char *opt, const char *s, long long lo, long long hi);
/* Parses --gpus "0,1": 1 to max distinct device ordinals in [0, 1023] into devs; returns the
 * count, or logs and returns -1. */
int mr_cli_parse_gpus(const char *s, int *devs, int max);
/* Parses "1,2,3" into a new array (caller frees); logs and returns -1 on a bad list. */
int mr_cli_parse_ids(const char *s, int vocab, int32_t **out);

#endif
