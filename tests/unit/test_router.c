/* test_router.c - first-match routing on path prefix, host (port ignored) and methods. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "../../src/proxy/router.h"

static const char yaml[] = "services:\n"
                           "  a: { servers: [ { address: 127.0.0.1:9001 } ] }\n"
                           "  b: { servers: [ { address: 127.0.0.1:9002 } ] }\n"
                           "routes:\n"
                           "  - match: { path_prefix: /api/blog/review, methods: [POST] }\n"
                           "    service: b\n"
                           "  - match: { path_prefix: /api, host: Api.Example.com }\n"
                           "    service: b\n"
                           "  - match: { path_prefix: /api }\n"
                           "    service: a\n";

static int route_of(const sl_gateway_t *g, const char *req)
{
    sl_http_request_t r;
    size_t scan = 0;
    int rc = sl_http1_parse_request(req, strlen(req), 16384, &scan, &r);
    assert_true(rc > 0);
    const sl_route_t *rt = sl_router_match(g, &r);
    return rt ? (int)rt->index : -1;
}

static void test_match(void **state)
{
    (void)state;
    static sl_config_errors_t errs;
    sl_config_t *cfg = sl_config_load_mem("t.yaml", yaml, sizeof(yaml) - 1, &errs);
    assert_non_null(cfg);
    sl_gateway_t g;
    assert_int_equal(sl_gateway_build(&g, cfg, 1), 0);
    assert_int_equal(route_of(&g, "POST /api/blog/review HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    /* methods filter: GET skips the POST-only route */
    assert_int_equal(route_of(&g, "GET /api/blog/review HTTP/1.1\r\nHost: x\r\n\r\n"), 2);
    /* host match is case-insensitive and ignores the port */
    assert_int_equal(route_of(&g, "GET /api/x HTTP/1.1\r\nHost: api.example.COM:8080\r\n\r\n"),
                     1);
    assert_int_equal(route_of(&g, "GET /api/x HTTP/1.1\r\nHost: api.example.com.evil\r\n\r\n"),
                     2);
    /* prefix is a byte prefix of the path; the query is not part of it */
    assert_int_equal(route_of(&g, "GET /apix HTTP/1.1\r\nHost: x\r\n\r\n"), 2);
    assert_int_equal(route_of(&g, "GET /other?/api HTTP/1.1\r\nHost: x\r\n\r\n"), -1);
    assert_int_equal(route_of(&g, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"), -1);
    assert_ptr_equal(g.routes[0].service, &g.up.services[1]);
    assert_ptr_equal(g.routes[2].service, &g.up.services[0]);
    sl_gateway_free(&g);
    sl_metrics_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_match)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
