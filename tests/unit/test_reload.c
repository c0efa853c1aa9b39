/* test_reload.c - the pure logic of reload and upgrade: what a reload carries over
 * (config_diff), the SLUICE_INHERIT string (inherit), stable metric label ids, and the
 * carry-over of a service's run-time state between two gateways. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../src/core/config_diff.h"
#include "../../src/core/inherit.h"
#include "../../src/core/metrics.h"
#include "../../src/proxy/router.h"
#include "../../src/proxy/upstream.h"

static const char base[] =
    "services:\n"
    "  a: { servers: [ { address: 127.0.0.1:9001 }, { address: 127.0.0.1:9002 } ],\n"
    "       health_check: { path: /h, interval: 1s } }\n"
    "  b: { servers: [ { address: 127.0.0.1:9003 } ] }\n"
    "cache: { memory: 16m }\n"
    "rate_limits: [ { rate: 10/second, key: ip } ]\n"
    "routes:\n"
    "  - match: { path_prefix: /a }\n"
    "    service: a\n"
    "    cache: {}\n"
    "  - match: { path_prefix: /b }\n"
    "    service: b\n"
    "    rate_limits: [ { rate: 5/minute, key: ip } ]\n";

static sl_config_t *load(const char *text)
{
    static sl_config_errors_t errs;
    memset(&errs, 0, sizeof(errs));
    sl_config_t *cfg = sl_config_load_mem("t.yaml", text, strlen(text), &errs);
    if (!cfg)
        for (int i = 0; i < errs.n; i++)
            fprintf(stderr, "%d:%d: %s\n", errs.e[i].line, errs.e[i].col, errs.e[i].msg);
    assert_non_null(cfg);
    return cfg;
}

/* base with one substring replaced. */
static sl_config_t *load_with(const char *from, const char *to)
{
    char buf[4096];
    const char *p = strstr(base, from);
    assert_non_null(p);
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(p - base), base, to, p + strlen(from));
    return load(buf);
}

static void test_service_equal(void **state)
{
    (void)state;
    sl_config_t *x = load(base), *y = load(base);
    assert_true(sl_config_service_equal(&x->services[0], &y->services[0]));
    assert_true(sl_config_service_equal(&x->services[1], &y->services[1]));
    assert_false(sl_config_service_equal(&x->services[0], &y->services[1]));
    sl_config_t *z = load_with("127.0.0.1:9002", "127.0.0.1:9009");
    assert_false(sl_config_service_equal(&x->services[0], &z->services[0]));
    assert_true(sl_config_service_equal(&x->services[1], &z->services[1]));
    sl_config_t *h = load_with("interval: 1s", "interval: 2s");
    assert_false(sl_config_service_equal(&x->services[0], &h->services[0]));
    sl_config_t *k = load_with("b: { servers", "b: { keepalive: 3, servers");
    assert_false(sl_config_service_equal(&x->services[1], &k->services[1]));
    sl_config_free(x);
    sl_config_free(y);
    sl_config_free(z);
    sl_config_free(h);
    sl_config_free(k);
}

static void test_cache_and_limits_equal(void **state)
{
    (void)state;
    sl_config_t *x = load(base), *y = load(base);
    assert_true(sl_config_cache_equal(x, y));
    assert_true(sl_config_ratelimits_equal(x, y));
    sl_config_t *c = load_with("memory: 16m", "memory: 8m");
    assert_false(sl_config_cache_equal(x, c));
    assert_true(sl_config_ratelimits_equal(x, c));
    sl_config_t *r = load_with("5/minute", "6/minute");
    assert_true(sl_config_cache_equal(x, r));
    assert_false(sl_config_ratelimits_equal(x, r));
    /* The same limits moved to another route change their ids: not equal. */
    sl_config_t *m = load_with("    service: b\n    rate_limits: [ { rate: 5/minute, key: ip } ]\n",
                               "    service: b\n");
    assert_false(sl_config_ratelimits_equal(x, m));
    sl_config_free(x);
    sl_config_free(y);
    sl_config_free(c);
    sl_config_free(r);
    sl_config_free(m);
}

static void test_restart_keys(void **state)
{
    (void)state;
    sl_config_t *x = load(base);
    char which[200];
    sl_config_t *y = load(base);
    assert_int_equal(sl_config_restart_keys(x, y, which, sizeof(which)), 0);
    assert_string_equal(which, "");
    sl_config_t *z = load_with("services:", "admin: { listen: 127.0.0.1:9999 }\n"
                                            "access_log: stderr\npid_file: /tmp/p\nservices:");
    assert_int_equal(sl_config_restart_keys(x, z, which, sizeof(which)), 3);
    assert_string_equal(which, "admin.listen, access_log, pid_file");
    /* A small buffer truncates the list, never the count. */
    char tiny[8];
    assert_int_equal(sl_config_restart_keys(x, z, tiny, sizeof(tiny)), 3);
    assert_true(strlen(tiny) < sizeof(tiny));
    sl_config_free(x);
    sl_config_free(y);
    sl_config_free(z);
}

static void test_inherit_parse(void **state)
{
    (void)state;
    sl_inherit_t in;
    const char *ok = "5:127.0.0.1:8080;6:127.0.0.1:8080;7:[::1]:9901;";
    assert_int_equal(sl_inherit_parse(ok, strlen(ok), &in), 0);
    assert_int_equal(in.n, 3);
    assert_int_equal(in.e[2].fd, 7);
    assert_string_equal(in.e[2].addr, "[::1]:9901");
    assert_int_equal(sl_inherit_take(&in, "127.0.0.1:8080"), 5);
    assert_int_equal(sl_inherit_take(&in, "127.0.0.1:8080"), 6);
    assert_int_equal(sl_inherit_take(&in, "127.0.0.1:8080"), -1);
    assert_int_equal(sl_inherit_take(&in, "[::1]:9901"), 7);
    assert_int_equal(sl_inherit_parse("", 0, &in), 0);
    assert_int_equal(in.n, 0);
    assert_int_equal(sl_inherit_parse(";;", 2, &in), 0);
    assert_int_equal(in.n, 0);
    static const char *bad[] = {
        "x:1.2.3.4:5",
        ":1.2.3.4:5",
        "5",
        "5:",
        "-5:a",
        "99999999:a",
        "5:a b",
        "1234567:a",
        "5:0123456789012345678901234567890123456789012345678901234567890123"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sl_inherit_parse(bad[i], strlen(bad[i]), &in), SL_EINVAL);
        assert_int_equal(in.n, 0);
    }
    /* Not NUL-terminated: the length bounds it. */
    assert_int_equal(sl_inherit_parse("5:a;6:bXXX", 7, &in), 0);
    assert_int_equal(in.n, 2);
    assert_string_equal(in.e[1].addr, "b");
}

static void test_inherit_roundtrip_and_close(void **state)
{
    (void)state;
    char out[128];
    size_t off = 0;
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(sl_inherit_append(out, sizeof(out), &off, p[0], "127.0.0.1:80"), 0);
    assert_int_equal(sl_inherit_append(out, sizeof(out), &off, p[1], "[::1]:81"), 0);
    assert_int_equal(sl_inherit_append(out, sizeof(out), &off, 3, "a;b"), SL_EINVAL);
    assert_int_equal(sl_inherit_append(out, sizeof(out), &off, -1, "a"), SL_EINVAL);
    char small[8];
    size_t so = 0;
    assert_int_equal(sl_inherit_append(small, sizeof(small), &so, 1, "127.0.0.1:80"), SL_EINVAL);
    assert_int_equal(so, 0);
    sl_inherit_t in;
    assert_int_equal(sl_inherit_parse(out, off, &in), 0);
    assert_int_equal(in.n, 2);
    assert_int_equal(sl_inherit_take(&in, "[::1]:81"), p[1]);
    sl_inherit_close_rest(&in); /* closes p[0], the one not taken */
    assert_int_equal(fcntl(p[0], F_GETFD), -1);
    assert_int_not_equal(fcntl(p[1], F_GETFD), -1);
    close(p[1]);
}

static void test_label_ids_stable(void **state)
{
    (void)state;
    uint32_t a = sl_label_id(SL_LABELS_ROUTE, "/a"), b = sl_label_id(SL_LABELS_ROUTE, "/b");
    assert_true(a > 0 && b > 0 && a != b);
    assert_int_equal(sl_label_id(SL_LABELS_ROUTE, "/a"), a);
    assert_int_equal(sl_label_id(SL_LABELS_LIMIT, "/a"), 1); /* per kind */
    assert_string_equal(sl_label_text(SL_LABELS_ROUTE, b), "/b");
    assert_null(sl_label_text(SL_LABELS_ROUTE, 0));
    assert_null(sl_label_text(SL_LABELS_ROUTE, 999));
    /* A family registered again is the same family, its counts kept. */
    sl_counter_t *c1 = sl_metrics_counter("t_total", "h", NULL, NULL);
    assert_int_equal(sl_metrics_thread_init(), 0);
    sl_counter_add(c1, 0, 5);
    sl_counter_t *c2 = sl_metrics_counter("t_total", "h", NULL, NULL);
    assert_ptr_equal(c1, c2);
    assert_int_equal(sl_counter_total(c2), 5);
    sl_metrics_reset();
}

static sl_server_t *find(sl_service_t *svc, const char *addr)
{
    return sl_upstreams_find_server(svc, addr, strlen(addr));
}

static void test_service_state_carried(void **state)
{
    (void)state;
    sl_gateway_t g1, g2, g3;
    assert_int_equal(sl_gateway_build(&g1, load(base), 4), 0);
    sl_service_t *a1 = &g1.up.services[0];
    sl_server_set_state(find(a1, "127.0.0.1:9001"), SL_SRV_UP, "test");
    find(a1, "127.0.0.1:9001")->requests = 42;
    sl_server_conf_t added = a1->primary.slots[0].conf;
    snprintf(added.addr.text, sizeof(added.addr.text), "127.0.0.1:9100");
    assert_int_equal(sl_upstreams_add(&g1.up, a1, 0, &added, NULL), 0);
    /* Unchanged service: state, counters and the added server carried; cache and the
     * rate-limit table shared. */
    assert_int_equal(sl_gateway_rebuild(&g2, load_with("/b }", "/bb }"), 4, &g1), 0);
    assert_int_equal(sl_upstreams_carry(&g2.up, &g1.up), 2);
    sl_service_t *a2 = &g2.up.services[0];
    assert_int_equal(find(a2, "127.0.0.1:9001")->state, SL_SRV_UP);
    assert_int_equal(find(a2, "127.0.0.1:9001")->requests, 42);
    assert_int_equal(find(a2, "127.0.0.1:9002")->state, SL_SRV_CHECKING);
    assert_non_null(find(a2, "127.0.0.1:9100"));
    assert_ptr_equal(g2.cache, g1.cache);
    assert_ptr_equal(g2.rl, g1.rl);
    assert_int_equal(g2.routes[0].mid, g1.routes[0].mid); /* "/a" keeps its series */
    assert_int_not_equal(g2.routes[1].mid, g1.routes[1].mid);
    /* What g1's workers count while they drain is folded in once they are gone. */
    find(a1, "127.0.0.1:9001")->requests += 5;
    sl_upstreams_fold(&g2.up, &g1.up);
    assert_int_equal(find(a2, "127.0.0.1:9001")->requests, 47);
    /* Changed service: counters carried, health state and added servers not. */
    assert_int_equal(sl_gateway_rebuild(&g3, load_with("interval: 1s", "interval: 3s"), 4, &g2), 0);
    assert_int_equal(sl_upstreams_carry(&g3.up, &g2.up), 1);
    sl_service_t *a3 = &g3.up.services[0];
    assert_int_equal(find(a3, "127.0.0.1:9001")->state, SL_SRV_CHECKING);
    assert_int_equal(find(a3, "127.0.0.1:9001")->requests, 47);
    assert_null(find(a3, "127.0.0.1:9100"));
    /* Freed in any order: the shared parts go with their last holder (ASan checks). */
    sl_gateway_free(&g2);
    sl_gateway_free(&g1);
    sl_gateway_free(&g3);
    sl_metrics_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_service_equal),
        cmocka_unit_test(test_cache_and_limits_equal),
        cmocka_unit_test(test_restart_keys),
        cmocka_unit_test(test_inherit_parse),
        cmocka_unit_test(test_inherit_roundtrip_and_close),
        cmocka_unit_test(test_label_ids_stable),
        cmocka_unit_test(test_service_state_carried),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
