/* fuzz_config.c - libFuzzer target for the configuration loader and its unit parsers.
 * Feeds the raw bytes to sl_config_load_mem (and to each unit parser), checks the
 * loader's contract on every input, and frees everything: LeakSanitizer sees any leak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every message is one printable line: `sluice -t` prints them as FILE:LINE:COL: message. */
static void check_errors(const sl_config_errors_t *errs)
{
    if (errs->n < 0 || errs->n > SL_CONF_MAX_ERRORS || errs->dropped < 0)
        abort();
    for (int i = 0; i < errs->n; i++) {
        const sl_config_error_t *e = &errs->e[i];
        size_t len = strnlen(e->msg, sizeof(e->msg));
        if (len == 0 || len == sizeof(e->msg) || e->line < 0 || e->col < 0)
            abort();
        for (size_t j = 0; j < len; j++)
            if ((unsigned char)e->msg[j] < 0x20)
                abort();
        if (i > 0 && (e->line < errs->e[i - 1].line ||
                      (e->line == errs->e[i - 1].line && e->col < errs->e[i - 1].col)))
            abort(); /* sorted by position */
    }
}

/* A loaded configuration honours the documented invariants. */
static void check_config(const sl_config_t *cfg)
{
    if (cfg->nlisten < 1 || cfg->nlisten > SL_CONF_MAX_LISTEN || cfg->workers > 256)
        abort();
    for (uint32_t i = 0; i < cfg->nservices; i++) {
        const sl_service_conf_t *s = &cfg->services[i];
        /* servers, unless autoscale runs them */
        if (s->name == NULL || (s->nservers == 0 && !s->autoscale.enabled) ||
            (s->nservers > 0 && s->servers == NULL) || s->balance < SL_BALANCE_ROUND_ROBIN ||
            s->balance > SL_BALANCE_HASH || s->connect_ms == 0)
            abort();
        const sl_autoscale_conf_t *a = &s->autoscale;
        if (a->enabled &&
            (a->command == NULL || a->port_lo == 0 || a->port_hi < a->port_lo ||
             a->min > a->max || a->initial < a->min || a->initial > a->max ||
             a->max > a->port_hi - a->port_lo + 1 || a->metric < SL_AS_CPU ||
             a->metric > SL_AS_RPS || !(a->target > 0) || a->sync_period_ms < 1000 ||
             !s->health.enabled))
            abort();
        /* A server is an address, or a host name with a port (resolved at start). */
        for (uint32_t j = 0; j < s->nservers; j++)
            if ((s->servers[j].addr.len == 0 &&
                 (s->servers[j].host == NULL || s->servers[j].port == 0)) ||
                s->servers[j].weight < 1)
                abort();

    }
    for (uint32_t i = 0; i < cfg->nrate_limits; i++) {
        const sl_limit_conf_t *l = &cfg->rate_limits[i];
        if (l->count == 0 || l->period_ms == 0 || l->name == NULL)
            abort();
    }
    for (uint32_t i = 0; i < cfg->nroutes; i++) {
        const sl_route_conf_t *r = &cfg->routes[i];
        if (r->path_prefix == NULL || r->path_prefix[0] != '/' ||
            r->path_prefix_len != strlen(r->path_prefix) || r->service == NULL ||
            r->service_index < 0 || (uint32_t)r->service_index >= cfg->nservices ||
            strcmp(cfg->services[r->service_index].name, r->service) != 0)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    sl_config_errors_t errs;
    sl_config_t *cfg;
    uint64_t v;
    sl_addr_t a;

    if (devnull == NULL)
        devnull = fopen("/dev/null", "w");

    cfg = sl_config_load_mem("fuzz.yaml", (const char *)data, size, &errs);
    check_errors(&errs);
    if (cfg != NULL) {
        if (errs.n != 0 || errs.dropped != 0)
            abort();
        check_config(cfg);
    } else if (errs.n == 0) {
        abort(); /* a failure always says why */
    }
    if (devnull)
        sl_config_errors_print(devnull, "fuzz.yaml", &errs);
    sl_config_free(cfg);

    /* The unit parsers take (pointer, length): they must never read past size. */
    sl_parse_duration((const char *)data, size, &v);
    sl_parse_size((const char *)data, size, &v);
    if (sl_parse_addr((const char *)data, size, &a) == 0) {
        if (strlen(a.text) != size || memcmp(a.text, data, size) != 0 || a.len == 0)
            abort();
    }
    return 0;
}
