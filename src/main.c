/* main.c - command line and start-up: parse arguments, load the configuration, run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "server.h"


static void usage(FILE *out)
{
    fprintf(out, "usage: sluice -c FILE        run in the foreground (logs to stderr)\n"
                 "       sluice -t -c FILE     check a configuration and exit (0 ok, 1 errors)\n"
                 "       sluice -h | --help    this text\n"
                 "       sluice --version\n"
                 "signals: SIGTERM/SIGINT drain gracefully (limits.shutdown_timeout), then exit 0\n");
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    int test = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-c") && i + 1 < argc) {
            file = argv[++i];
        } else if (!strcmp(a, "-t")) {
            test = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--version") || !strcmp(a, "-v")) {
            printf("sluice %s\n", SL_VERSION);
            return 0;
        } else {
            fprintf(stderr, "sluice: unknown argument \"%s\"\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!file) {
        fprintf(stderr, "sluice: no configuration file (-c FILE)\n");
        usage(stderr);
        return 2;
    }
    sl_config_errors_t *errs = calloc(1, sizeof(*errs));
    if (!errs)
        return 1;
    sl_config_t *cfg = sl_config_load(file, errs);
    if (!cfg) {
        sl_config_errors_print(stderr, file, errs);
        free(errs);
        return 1;
    }
    free(errs);
    if (test) {
        printf("%s: ok\n", file);
        sl_config_free(cfg);
        return 0;
    }
    return sl_server_run(cfg);
}
