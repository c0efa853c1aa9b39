/* autoscale.h - sluice runs and scales the backend processes of services with an
 * `autoscale:` block, on one machine, as Kubernetes' HPA scales pods (ops/hpa.c decides).
 * Owns: the instances (libuv process handles on the control thread), their ports, their
 * lifecycle (starting -> ready after health checks -> draining -> stopping -> gone), crash
 * replacement with backoff, the per-instance signals (CPU from /proc, in-flight and req/s
 * from the gateway's own counts), the decisions and their log lines, the metrics and the
 * JSON the API and the status page show. An instance gets traffic only once the service's
 * health checks pass; one scaled down is drained first, then sent SIGTERM, then SIGKILL
 * after stop_grace. Instances are started through `setpriv --pdeathsig SIGKILL` in their
 * own session, so none outlives sluice, even when sluice itself is killed. Control thread
 * only. */
#ifndef SL_AUTOSCALE_H
#define SL_AUTOSCALE_H

#include <jansson.h>
#include <uv.h>

#include "../core/metrics.h"
#include "../proxy/router.h"

typedef struct sl_autoscale sl_autoscale_t;

/* Start the configured instances of every autoscaled service of g. NULL when no service
 * autoscales (nothing to do) or out of memory (*err set). */
sl_autoscale_t *sl_autoscale_start(uv_loop_t *loop, sl_gateway_t *g, int nworkers, int *err);

/* Reload: 1 when as can go on with gateway g instead of the one it was started with: g
 * has the same autoscaled services, each with an unchanged configuration
 * (sl_config_service_equal), so its running instances stay as they are. */
int sl_autoscale_can_rebind(const sl_autoscale_t *as, const sl_gateway_t *g);
/* Move as to g (after sl_autoscale_can_rebind, and after sl_upstreams_carry carried the
 * instances' servers into g): its instances, their processes and the HPA's state stay;
 * from now on it reads and changes g's services. Control thread. */
void sl_autoscale_rebind(sl_autoscale_t *as, sl_gateway_t *g, int nworkers);

/* Stop every instance (SIGTERM, then SIGKILL after stop_grace) and free everything once
 * they are gone: the loop keeps running until then, since their process handles are open.
 * as must not be used after this call. Safe with NULL. */
void sl_autoscale_stop(sl_autoscale_t *as);

/* The state of service svc (NULL when it does not autoscale), for the API and status page. */
json_t *sl_autoscale_json(const sl_autoscale_t *as, const sl_service_t *svc);

/* autoscale_* metrics. */
void sl_autoscale_collect(sl_textbuf_t *t, void *arg);

#endif
