/* config_diff.c - equality of configuration sections for reload; see config_diff.h. */
#include "config_diff.h"

#include <stdio.h>
#include <string.h>

static int str_eq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static int addr_eq(const sl_addr_t *a, const sl_addr_t *b)
{
    return a->len == b->len && strcmp(a->text, b->text) == 0;
}

static int servers_eq(const sl_server_conf_t *a, uint32_t na, const sl_server_conf_t *b,
                      uint32_t nb)
{
    if (na != nb)
        return 0;
    for (uint32_t i = 0; i < na; i++) {
        const sl_server_conf_t *x = &a[i], *y = &b[i];
        if (!addr_eq(&x->addr, &y->addr) || !str_eq(x->host, y->host) || x->port != y->port ||
            x->resolve_ms != y->resolve_ms || x->weight != y->weight ||
            x->max_fails != y->max_fails || x->fail_timeout_ms != y->fail_timeout_ms)
            return 0;
    }
    return 1;
}

static int health_eq(const sl_health_conf_t *a, const sl_health_conf_t *b)
{
    if (a->enabled != b->enabled)
        return 0;
    if (!a->enabled)
        return 1;
    return str_eq(a->path, b->path) && a->interval_ms == b->interval_ms &&
           a->timeout_ms == b->timeout_ms && a->fails == b->fails && a->passes == b->passes &&
           a->nexpect == b->nexpect &&
           memcmp(a->expect_status, b->expect_status, a->nexpect * sizeof(uint16_t)) == 0;
}

static int behavior_eq(const sl_as_behavior_conf_t *a, const sl_as_behavior_conf_t *b)
{
    if (a->window_ms != b->window_ms || a->npolicies != b->npolicies || a->select != b->select)
        return 0;
    for (uint32_t i = 0; i < a->npolicies; i++)
        if (a->policies[i].type != b->policies[i].type ||
            a->policies[i].value != b->policies[i].value ||
            a->policies[i].period_ms != b->policies[i].period_ms)
            return 0;
    return 1;
}

static int autoscale_eq(const sl_autoscale_conf_t *a, const sl_autoscale_conf_t *b)
{
    if (a->enabled != b->enabled)
        return 0;
    if (!a->enabled)
        return 1;
    if (!str_eq(a->command, b->command) || a->port_lo != b->port_lo || a->port_hi != b->port_hi ||
        a->min != b->min || a->max != b->max || a->initial != b->initial ||
        a->has_initial != b->has_initial || a->nenv != b->nenv || !str_eq(a->workdir, b->workdir) ||
        a->metric != b->metric || a->target != b->target ||
        a->sync_period_ms != b->sync_period_ms || a->tolerance_pct != b->tolerance_pct ||
        !behavior_eq(&a->up, &b->up) || !behavior_eq(&a->down, &b->down) ||
        a->drain_timeout_ms != b->drain_timeout_ms || a->stop_grace_ms != b->stop_grace_ms)
        return 0;
    for (uint32_t i = 0; i < a->nenv; i++)
        if (!str_eq(a->env[i], b->env[i]))
            return 0;
    return 1;
}

int sl_config_service_equal(const sl_service_conf_t *a, const sl_service_conf_t *b)
{
    return str_eq(a->name, b->name) && a->balance == b->balance && a->keepalive == b->keepalive &&
           a->connect_ms == b->connect_ms && a->send_ms == b->send_ms && a->read_ms == b->read_ms &&
           a->retries == b->retries && a->retry_methods == b->retry_methods &&
           a->retry_budget_percent == b->retry_budget_percent &&
           a->retry_budget_min == b->retry_budget_min && a->nfail_status == b->nfail_status &&
           memcmp(a->fail_status, b->fail_status, a->nfail_status * sizeof(uint16_t)) == 0 &&
           a->hash_key == b->hash_key && str_eq(a->hash_key_name, b->hash_key_name) &&
           servers_eq(a->servers, a->nservers, b->servers, b->nservers) &&
           servers_eq(a->read_servers, a->nread_servers, b->read_servers, b->nread_servers) &&
           a->read_your_writes_ms == b->read_your_writes_ms && health_eq(&a->health, &b->health) &&
           autoscale_eq(&a->autoscale, &b->autoscale);
}

static int redis_eq(const sl_redis_conf_t *a, const sl_redis_conf_t *b)
{
    if (a->enabled != b->enabled)
        return 0;
    return !a->enabled || (addr_eq(&a->addr, &b->addr) && a->on_failure == b->on_failure &&
                           a->timeout_ms == b->timeout_ms && str_eq(a->key_prefix, b->key_prefix));
}

int sl_config_cache_equal(const sl_config_t *a, const sl_config_t *b)
{
    const sl_cache_conf_t *x = &a->cache, *y = &b->cache;
    if (x->memory != y->memory || x->max_object != y->max_object || x->coalesce != y->coalesce ||
        x->lock_timeout_ms != y->lock_timeout_ms || x->hit_for_pass_ms != y->hit_for_pass_ms ||
        x->max_waiters != y->max_waiters || x->redis != y->redis)
        return 0;
    return !x->redis || redis_eq(&a->redis, &b->redis);
}

static int limit_eq(const sl_limit_conf_t *a, const sl_limit_conf_t *b)
{
    return a->key == b->key && str_eq(a->key_name, b->key_name) && a->count == b->count &&
           a->period_ms == b->period_ms && a->burst == b->burst && a->has_burst == b->has_burst &&
           a->dry_run == b->dry_run && str_eq(a->name, b->name);
}

int sl_config_ratelimits_equal(const sl_config_t *a, const sl_config_t *b)
{
    if (a->limits.rate_limit_keys != b->limits.rate_limit_keys ||
        a->nrate_limits != b->nrate_limits)
        return 0;
    for (uint32_t i = 0; i < a->nrate_limits; i++)
        if (!limit_eq(&a->rate_limits[i], &b->rate_limits[i]))
            return 0;
    /* Route limits by their position in the flattened list (global, then route by route):
     * that position is the limit's id, which the table mixes into its keys. */
    uint32_t ra = 0, rb = 0, ia = 0, ib = 0;
    for (;;) {
        while (ra < a->nroutes && ia >= a->routes[ra].nrate_limits) {
            ra++;
            ia = 0;
        }
        while (rb < b->nroutes && ib >= b->routes[rb].nrate_limits) {
            rb++;
            ib = 0;
        }
        int ea = ra >= a->nroutes, eb = rb >= b->nroutes;
        if (ea || eb)
            return ea && eb;
        if (!limit_eq(&a->routes[ra].rate_limits[ia++], &b->routes[rb].rate_limits[ib++]))
            return 0;
    }
}

int sl_config_restart_keys(const sl_config_t *a, const sl_config_t *b, char *out, size_t cap)
{
    struct {
        const char *name;
        int differs;
    } keys[] = {
        {"admin.listen", !addr_eq(&a->admin_listen, &b->admin_listen)},
        {"admin.token_env", !str_eq(a->admin_token_env, b->admin_token_env)},
        {"access_log", !str_eq(a->access_log, b->access_log)},
        {"pid_file", !str_eq(a->pid_file, b->pid_file)},
    };
    int n = 0;
    size_t off = 0;
    if (cap)
        out[0] = 0;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (!keys[i].differs)
            continue;
        if (off < cap) {
            int w = snprintf(out + off, cap - off, "%s%s", n ? ", " : "", keys[i].name);
            off += w > 0 ? (size_t)w : 0;
        }
        n++;
    }
    return n;
}
