/* server.h - the wiring: worker threads, listeners, accept, connection limits, the
 * control thread's loop (admin listener, signals, access-log writer) and graceful drain.
 * Everything here runs on the control (main) thread except the worker loops it starts. */
#ifndef SL_SERVER_H
#define SL_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

/* Run the gateway with cfg (ownership passes) until SIGTERM/SIGINT and a drain.
 * Returns the process exit code (0 after a clean drain). */
int sl_server_run(sl_config_t *cfg);

/* The binary a SIGUSR2 upgrade runs (resolved at start: /proc/self/exe's target, so a
 * new file installed at that path is what runs) and its arguments (argv, kept by the
 * caller). Before sl_server_run. */
void sl_server_set_exec(const char *exe, char **argv);

/* Reload the configuration from the file it was loaded from (SIGHUP, POST /api/reload):
 * load and validate it here on the control thread; if valid, start a new generation of
 * workers on a new gateway (carrying over what is unchanged) on the same listening
 * sockets and let the old generation drain. Returns the new generation (> 0), or a
 * negative SL_E* code with a one-line reason in err, every error logged and the running
 * configuration kept. server is the running server (the control worker's `server`).
 * Control thread only. */
int64_t sl_server_reload(void *server, const char *why, char *err, size_t cap);

#endif
