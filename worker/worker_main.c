/* worker_main.c — `moerack-worker --config FILE --name NAME`. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "common/cluster_config.h"
#include "common/log.h"
#include "worker/worker.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: moerack-worker --config FILE --name NAME [--log-level LEVEL] [--dump-config]\n"
            "  serves the experts the coordinator assigns to worker NAME of the cluster config\n");
}

int main(int argc, char **argv) {
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"name", required_argument, 0, 'n'},
                                         {"log-level", required_argument, 0, 'l'},
                                         {"dump-config", no_argument, 0, 'd'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *config = NULL, *name = NULL;
    int dump = 0, o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'c':
            config = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'd':
            dump = 1;
            break;
        case 'l': {
            int lv = mr_log_level_parse(optarg);
            if (lv < 0) {
                fprintf(stderr, "error: --log-level: unknown level '%s'\n", optarg);
                return 2;
            }
            mr_log_set_level((mr_log_level)lv);
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!config || (!name && !dump)) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    mr_cluster_config cc;
    if (mr_cluster_config_load(config, &cc) != MR_OK) return 1;
    if (dump) {
        mr_cluster_config_dump(&cc, stdout);
        mr_cluster_config_free(&cc);
        return 0;
    }
    if (mr_cluster_config_check_paths(&cc) != MR_OK) {
        mr_cluster_config_free(&cc);
        return 1;
    }
    mr_worker *w;
    mr_status st = mr_worker_create(&cc, name, &w);
    if (st == MR_OK) {
        st = mr_worker_run(w);
        mr_worker_destroy(w);
    }
    mr_cluster_config_free(&cc);
    return st == MR_OK ? 0 : 1;
}
