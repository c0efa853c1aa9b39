/* main.c - command line and start-up: parse arguments, load the configuration, run. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "server.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice -c FILE        run in the foreground (logs to stderr)\n"
            "       sluice -t -c FILE     check a configuration and exit (0 ok, 1 errors)\n"
            "       sluice -s SIGNAL -c FILE  signal the sluice running FILE (its pid_file):\n"
            "                             reload, upgrade (the binary), stop\n"
            "       sluice -h | --help    this text\n"
            "       sluice --version\n"
            "signals: SIGTERM/SIGINT drain gracefully (limits.shutdown_timeout), then exit 0;\n"
            "         SIGHUP reloads the configuration; SIGUSR2 upgrades to the binary on disk\n");
}

/* `sluice -s NAME -c FILE`: check FILE (the running process reads it again itself, but
 * an error is better seen here), then signal the PID in its pid_file. */
static int send_signal(const char *name, const char *file, const sl_config_t *cfg)
{
    static const struct {
        const char *name;
        int sig;
    } sigs[] = {{"reload", SIGHUP}, {"upgrade", SIGUSR2}, {"stop", SIGTERM}};
    int sig = 0;
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (!strcmp(name, sigs[i].name))
            sig = sigs[i].sig;
    if (!sig) {
        fprintf(stderr, "sluice: -s %s: unknown (reload, upgrade or stop)\n", name);
        return 2;
    }
    if (!cfg->pid_file) {
        fprintf(stderr,
                "sluice: -s %s: %s has no pid_file, so the running process cannot be "
                "found; add `pid_file: PATH` (and restart), or send the signal yourself\n",
                name, file);
        return 1;
    }
    FILE *f = fopen(cfg->pid_file, "r");
    long pid = 0;
    if (!f || fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
        fprintf(stderr, "sluice: -s %s: pid_file %s: %s\n", name, cfg->pid_file,
                f ? "no process id in it" : strerror(errno));
        if (f)
            fclose(f);
        return 1;
    }
    fclose(f);
    if (kill((pid_t)pid, sig) != 0) {
        fprintf(stderr, "sluice: -s %s: process %ld (pid_file %s): %s\n", name, pid, cfg->pid_file,
                strerror(errno));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *file = NULL, *sig = NULL;
    int test = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-c") && i + 1 < argc) {
            file = argv[++i];
        } else if (!strcmp(a, "-s") && i + 1 < argc) {
            sig = argv[++i];
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
    if (sig) {
        int rc = send_signal(sig, file, cfg);
        sl_config_free(cfg);
        return rc;
    }
    if (test) {
        printf("%s: ok\n", file);
        sl_config_free(cfg);
        return 0;
    }
    /* The path of this binary, for a SIGUSR2 upgrade to run what is installed there then. */
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0 && (size_t)n < sizeof(exe) - 1) {
        exe[n] = 0;
        /* A binary replaced on disk shows as "PATH (deleted)": the path is what we want. */
        const char *del = " (deleted)";
        size_t dl = strlen(del);
        if ((size_t)n > dl && strcmp(exe + n - dl, del) == 0)
            exe[n - dl] = 0;
    } else {
        snprintf(exe, sizeof(exe), "%s", argv[0]);
    }
    sl_server_set_exec(exe, argv);
    return sl_server_run(cfg);
}
