/* admin.h - the admin listener's request handler (control thread only).
 * Serves GET /metrics (Prometheus text 0.0.4) and GET /health; later issues add the
 * runtime API, alerts and the status page here. Never runs on a worker loop. */
#ifndef SL_ADMIN_H
#define SL_ADMIN_H

#include "../http/conn.h"

void sl_admin_handle(sl_exchange_t *x);

#endif
