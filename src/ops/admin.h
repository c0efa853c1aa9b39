/* admin.h - the admin listener's request handler (control thread only).
 * Serves GET /metrics (Prometheus text 0.0.4), GET /health and the run-time API under
 * /api/ (services and their servers: list, add, drain; JSON; bearer token when
 * admin.token_env is set; see docs/api.md). Never runs on a worker loop. Needs no
 * per-exchange state (handler_size 0): request bodies are collected in admin.c. */
#ifndef SL_ADMIN_H
#define SL_ADMIN_H

#include "../http/conn.h"

void sl_admin_handle(sl_exchange_t *x);

#endif
