/* server.h - the wiring: worker threads, listeners, accept, connection limits, the
 * control thread's loop (admin listener, signals, access-log writer) and graceful drain.
 * Everything here runs on the control (main) thread except the worker loops it starts. */
#ifndef SL_SERVER_H
#define SL_SERVER_H

#include "core/config.h"

/* Run the gateway with cfg (ownership passes) until SIGTERM/SIGINT and a drain.
 * Returns the process exit code (0 after a clean drain). */
int sl_server_run(sl_config_t *cfg);

#endif
