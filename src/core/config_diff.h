/* config_diff.h - what changed between two loaded configurations, for a reload.
 * Owns: the equality rules that decide what a reload carries over from the running
 * gateway (a service's servers and health, the cache store, the rate-limit table) and
 * which keys only a restart can change. Pure functions of two sl_config_t: no I/O,
 * any thread. */
#ifndef SL_CONFIG_DIFF_H
#define SL_CONFIG_DIFF_H

#include "config.h"

/* 1 when a and b describe the same service: same name, balancing, timeouts, retries,
 * servers (in order), read servers, health checks and autoscale. Only then are its
 * run-time state (health, passive fails, servers added through the API) carried over. */
int sl_config_service_equal(const sl_service_conf_t *a, const sl_service_conf_t *b);

/* 1 when the cache store can be kept: the `cache:` section is the same and, when it uses
 * the Redis tier, so is the redis connection it was built with. */
int sl_config_cache_equal(const sl_config_t *a, const sl_config_t *b);

/* 1 when the rate-limit table can be kept: the same limits (global then each route's,
 * in order, so each keeps its id) and the same table bound. */
int sl_config_ratelimits_equal(const sl_config_t *a, const sl_config_t *b);

/* Keys a reload cannot change (the running value stays): writes their names, comma
 * separated, into out (cap bytes) and returns how many differ. */
int sl_config_restart_keys(const sl_config_t *a, const sl_config_t *b, char *out, size_t cap);

#endif
