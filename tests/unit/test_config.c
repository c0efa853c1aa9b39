/* test_config.c - unit tests for the configuration loader (src/core/config.c).
 * Every error test checks the exact message and its line:col, because both are the
 * public contract of `sluice -t`. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/core/config.h"

/* ---- helpers ------------------------------------------------------------------------- */

static sl_config_t *load(const char *yaml, sl_config_errors_t *errs)
{
    return sl_config_load_mem("test.yaml", yaml, strlen(yaml), errs);
}

/* Loads yaml, which must succeed. */
static sl_config_t *load_ok(const char *yaml)
{
    sl_config_errors_t errs;
    sl_config_t *cfg = load(yaml, &errs);
    for (int i = 0; i < errs.n; i++)
        print_error("unexpected error %d:%d: %s\n", errs.e[i].line, errs.e[i].col, errs.e[i].msg);
    assert_non_null(cfg);
    assert_int_equal(errs.n, 0);
    return cfg;
}

/* Loads yaml, which must fail with exactly one error: msg at line:col. */
static void expect_error(const char *yaml, int line, int col, const char *msg)
{
    sl_config_errors_t errs;
    sl_config_t *cfg = load(yaml, &errs);
    bool same = errs.n == 1 && errs.e[0].line == line && errs.e[0].col == col &&
                strcmp(errs.e[0].msg, msg) == 0;
    for (int i = 0; !same && i < errs.n; i++)
        print_error("got %d:%d: %s\n", errs.e[i].line, errs.e[i].col, errs.e[i].msg);
    sl_config_free(cfg);
    assert_null(cfg);
    assert_int_equal(errs.n, 1);
    assert_int_equal(errs.dropped, 0);
    assert_string_equal(errs.e[0].msg, msg);
    assert_int_equal(errs.e[0].line, line);
    assert_int_equal(errs.e[0].col, col);
}

/* A valid service block, to put in front of route tests. */
#define SVC "services:\n  blog:\n    servers: [{address: 127.0.0.1:8000}]\n"

static const char *addr_ip(const sl_addr_t *a, char *buf, size_t size)
{
    if (a->ss.ss_family == AF_INET)
        return inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->ss)->sin_addr, buf,
                         (socklen_t)size);
    return inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, buf,
                     (socklen_t)size);
}

static unsigned addr_port(const sl_addr_t *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

static void assert_addr(const sl_addr_t *a, int family, const char *ip, unsigned port,
                        const char *text)
{
    char buf[INET6_ADDRSTRLEN];
    assert_int_equal(a->ss.ss_family, family);
    assert_int_equal(a->len,
                     family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
    assert_string_equal(addr_ip(a, buf, sizeof(buf)), ip);
    assert_int_equal(addr_port(a), port);
    assert_string_equal(a->text, text);
}

/* ---- valid configurations ------------------------------------------------------------ */

static const char full_yaml[] =
    "# every key this build accepts\n"
    "listen:\n"
    "  - 127.0.0.1:8080\n"
    "  - \"[::1]:8443\"\n"
    "  - { address: \"*:9000\" }\n"
    "workers: 4\n"
    "admin: { listen: 127.0.0.1:9911, token_env: SLUICE_ADMIN_TOKEN }\n"
    "limits:\n"
    "  max_connections: 2000\n"
    "  header_timeout: 5s\n"
    "  idle_timeout: 2m\n"
    "  max_header_bytes: 32k\n"
    "  max_body_bytes: 1g\n"
    "  shutdown_timeout: 0\n"
    "access_log: /var/log/sluice/access.log\n"
    "services:\n"
    "  blog:\n"
    "    balance: round_robin\n"
    "    keepalive: 0\n"
    "    timeouts: { connect: 500ms, send: 30s, read: 1h }\n"
    "    retries: 2\n"
    "    servers:\n"
    "      - { address: 127.0.0.1:8000, weight: 3, max_fails: 0, fail_timeout: 30s }\n"
    "      - { address: \"[::1]:8001\" }\n"
    "  shop_v2-eu:\n"
    "    servers:\n"
    "      - address: 10.0.0.7:80\n"
    "        weight: \"1000\"\n"
    "routes:\n"
    "  - match: { path_prefix: /api/blog/customer-review, methods: [POST, PUT] }\n"
    "    service: blog\n"
    "  - match:\n"
    "      path_prefix: /shop\n"
    "      host: Shop.Example.com\n"
    "      methods: [GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, CONNECT, TRACE]\n"
    "    service: shop_v2-eu\n"
    "  - match: { path_prefix: / }\n"
    "    service: blog\n";

static void test_full_config(void **state)
{
    (void)state;
    sl_config_t *cfg = load_ok(full_yaml);

    assert_string_equal(cfg->path, "test.yaml");
    assert_int_equal(cfg->nlisten, 3);
    assert_addr(&cfg->listen[0], AF_INET, "127.0.0.1", 8080, "127.0.0.1:8080");
    assert_addr(&cfg->listen[1], AF_INET6, "::1", 8443, "[::1]:8443");
    assert_addr(&cfg->listen[2], AF_INET, "0.0.0.0", 9000, "*:9000");
    assert_int_equal(cfg->workers, 4);
    assert_addr(&cfg->admin_listen, AF_INET, "127.0.0.1", 9911, "127.0.0.1:9911");
    assert_int_equal(cfg->admin_enabled, 1);
    assert_string_equal(cfg->admin_token_env, "SLUICE_ADMIN_TOKEN");

    assert_int_equal(cfg->limits.max_connections, 2000);
    assert_int_equal(cfg->limits.header_timeout_ms, 5000);
    assert_int_equal(cfg->limits.idle_timeout_ms, 120000);
    assert_int_equal(cfg->limits.max_header_bytes, 32 * 1024);
    assert_int_equal(cfg->limits.max_body_bytes, 1024ull * 1024 * 1024);
    assert_int_equal(cfg->limits.shutdown_timeout_ms, 0);
    assert_string_equal(cfg->access_log, "/var/log/sluice/access.log");

    assert_int_equal(cfg->nservices, 2);
    sl_service_conf_t *blog = &cfg->services[0];
    assert_string_equal(blog->name, "blog");
    assert_int_equal(blog->balance, SL_BALANCE_ROUND_ROBIN);
    assert_int_equal(blog->keepalive, 0);
    assert_int_equal(blog->connect_ms, 500);
    assert_int_equal(blog->send_ms, 30000);
    assert_int_equal(blog->read_ms, 3600000);
    assert_int_equal(blog->retries, 2);
    assert_int_equal(blog->line, 17);
    assert_int_equal(blog->col, 3);
    assert_int_equal(blog->nservers, 2);
    assert_addr(&blog->servers[0].addr, AF_INET, "127.0.0.1", 8000, "127.0.0.1:8000");
    assert_int_equal(blog->servers[0].weight, 3);
    assert_int_equal(blog->servers[0].max_fails, 0);
    assert_int_equal(blog->servers[0].fail_timeout_ms, 30000);
    assert_addr(&blog->servers[1].addr, AF_INET6, "::1", 8001, "[::1]:8001");
    assert_int_equal(blog->servers[1].weight, 1);
    assert_int_equal(blog->servers[1].max_fails, 1);
    assert_int_equal(blog->servers[1].fail_timeout_ms, 10000);

    sl_service_conf_t *shop = &cfg->services[1];
    assert_string_equal(shop->name, "shop_v2-eu");
    assert_int_equal(shop->line, 25);
    assert_int_equal(shop->keepalive, 32);
    assert_int_equal(shop->nservers, 1);
    assert_addr(&shop->servers[0].addr, AF_INET, "10.0.0.7", 80, "10.0.0.7:80");
    assert_int_equal(shop->servers[0].weight, 1000);

    assert_int_equal(cfg->nroutes, 3);
    sl_route_conf_t *r = cfg->routes;
    assert_string_equal(r[0].path_prefix, "/api/blog/customer-review");
    assert_int_equal(r[0].path_prefix_len, strlen("/api/blog/customer-review"));
    assert_null(r[0].host);
    assert_int_equal(r[0].methods, SL_METHOD_BIT(SL_M_POST) | SL_METHOD_BIT(SL_M_PUT));
    assert_string_equal(r[0].service, "blog");
    assert_int_equal(r[0].service_index, 0);
    assert_int_equal(r[0].line, 30);
    assert_int_equal(r[0].col, 5);

    assert_string_equal(r[1].path_prefix, "/shop");
    assert_string_equal(r[1].host, "Shop.Example.com");
    uint32_t all = 0;
    for (int m = SL_M_GET; m < SL_M__COUNT; m++)
        all |= SL_METHOD_BIT(m);
    assert_int_equal(r[1].methods, all);
    assert_string_equal(r[1].service, "shop_v2-eu");
    assert_int_equal(r[1].service_index, 1);
    assert_int_equal(r[1].line, 32);

    assert_string_equal(r[2].path_prefix, "/");
    assert_int_equal(r[2].path_prefix_len, 1);
    assert_int_equal(r[2].methods, 0);
    assert_int_equal(r[2].service_index, 0);
    assert_int_equal(r[2].line, 37);
    sl_config_free(cfg);
}

static void check_defaults(const sl_config_t *cfg)
{
    assert_int_equal(cfg->nlisten, 1);
    assert_addr(&cfg->listen[0], AF_INET, "127.0.0.1", 8080, "127.0.0.1:8080");
    assert_int_equal(cfg->workers, 0);
    assert_addr(&cfg->admin_listen, AF_INET, "127.0.0.1", 9901, "127.0.0.1:9901");
    assert_int_equal(cfg->admin_enabled, 1);
    assert_null(cfg->admin_token_env);
    assert_int_equal(cfg->limits.max_connections, 10000);
    assert_int_equal(cfg->limits.header_timeout_ms, 10000);
    assert_int_equal(cfg->limits.idle_timeout_ms, 60000);
    assert_int_equal(cfg->limits.max_header_bytes, 16384);
    assert_int_equal(cfg->limits.max_body_bytes, 10 * 1024 * 1024);
    assert_int_equal(cfg->limits.shutdown_timeout_ms, 30000);
    assert_null(cfg->access_log);
}

static void test_defaults(void **state)
{
    (void)state;
    /* An empty mapping is a valid configuration: no routes, everything answers 404. */
    sl_config_t *cfg = load_ok("{}\n");
    check_defaults(cfg);
    assert_int_equal(cfg->nservices, 0);
    assert_int_equal(cfg->nroutes, 0);
    assert_null(cfg->services);
    assert_null(cfg->routes);
    sl_config_free(cfg);

    /* Service, server and route defaults; empty nested mappings keep the defaults. */
    cfg = load_ok(SVC "admin: {}\nlimits: {}\nroutes:\n  - match: {path_prefix: /}\n"
                      "    service: blog\n");
    check_defaults(cfg);
    assert_int_equal(cfg->nservices, 1);
    const sl_service_conf_t *s = &cfg->services[0];
    assert_int_equal(s->balance, SL_BALANCE_ROUND_ROBIN);
    assert_int_equal(s->keepalive, 32);
    assert_int_equal(s->connect_ms, 5000);
    assert_int_equal(s->send_ms, 60000);
    assert_int_equal(s->read_ms, 60000);
    assert_int_equal(s->retries, 0);
    assert_int_equal(s->servers[0].weight, 1);
    assert_int_equal(s->servers[0].max_fails, 1);
    assert_int_equal(s->servers[0].fail_timeout_ms, 10000);
    assert_int_equal(cfg->routes[0].methods, 0);
    assert_null(cfg->routes[0].host);
    assert_int_equal(cfg->routes[0].service_index, 0);
    sl_config_free(cfg);

    /* Services without routes are fine too. */
    cfg = load_ok(SVC);
    assert_int_equal(cfg->nroutes, 0);
    sl_config_free(cfg);
}

static void test_listen_forms(void **state)
{
    (void)state;
    sl_config_t *cfg = load_ok("listen: 0.0.0.0:80\n");
    assert_int_equal(cfg->nlisten, 1);
    assert_addr(&cfg->listen[0], AF_INET, "0.0.0.0", 80, "0.0.0.0:80");
    sl_config_free(cfg);

    cfg = load_ok("listen: \":8080\"\n");
    assert_addr(&cfg->listen[0], AF_INET, "0.0.0.0", 8080, ":8080");
    sl_config_free(cfg);

    cfg = load_ok("listen: {address: \"[::]:443\"}\n");
    assert_int_equal(cfg->nlisten, 1);
    assert_addr(&cfg->listen[0], AF_INET6, "::", 443, "[::]:443");
    sl_config_free(cfg);

    cfg = load_ok("listen:\n  - address: 10.1.2.3:81\n  - 10.1.2.3:82\n");
    assert_int_equal(cfg->nlisten, 2);
    assert_addr(&cfg->listen[0], AF_INET, "10.1.2.3", 81, "10.1.2.3:81");
    assert_addr(&cfg->listen[1], AF_INET, "10.1.2.3", 82, "10.1.2.3:82");
    sl_config_free(cfg);
}

static void test_scalar_forms(void **state)
{
    (void)state;
    /* Integers bare or quoted; "auto"; the access_log words; anchors and aliases. */
    sl_config_t *cfg = load_ok("workers: auto\naccess_log: stderr\n"
                               "limits: {max_connections: '7', max_body_bytes: 0}\n");
    assert_int_equal(cfg->workers, 0);
    assert_string_equal(cfg->access_log, "stderr");
    assert_int_equal(cfg->limits.max_connections, 7);
    assert_int_equal(cfg->limits.max_body_bytes, 0);
    sl_config_free(cfg);

    cfg = load_ok("workers: \"256\"\naccess_log: \"off\"\n");
    assert_int_equal(cfg->workers, 256);
    assert_null(cfg->access_log);
    sl_config_free(cfg);

    cfg = load_ok(SVC "routes:\n  - &r\n    match: {path_prefix: /a, host: h}\n"
                      "    service: blog\n  - *r\n");
    assert_int_equal(cfg->nroutes, 2);
    assert_string_equal(cfg->routes[1].path_prefix, "/a");
    assert_string_equal(cfg->routes[1].host, "h");
    assert_int_equal(cfg->routes[1].service_index, 0);
    assert_ptr_not_equal(cfg->routes[0].host, cfg->routes[1].host);
    sl_config_free(cfg);

    cfg = load_ok(SVC "routes:\n  - match: {path_prefix: /, host: \"[2001:db8::1]\"}\n"
                      "    service: blog\n");
    assert_string_equal(cfg->routes[0].host, "[2001:db8::1]");
    sl_config_free(cfg);
}

/* ---- unit parsers -------------------------------------------------------------------- */

static int dur(const char *s, uint64_t *out)
{
    return sl_parse_duration(s, strlen(s), out);
}

static void test_parse_duration(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        uint64_t ms;
    } ok[] = {
        {"0", 0},
        {"30", 30000},
        {"500ms", 500},
        {"0ms", 0},
        {"10s", 10000},
        {"5m", 300000},
        {"1h", 3600000},
        {"1d", 86400000},
        {"007s", 7000},
        {"18446744073709551615ms", UINT64_MAX},
        {"213503982334d", 213503982334ull * 86400000ull},
    };
    static const char *const bad[] = {
        "",
        "s",
        "ms",
        "-1s",
        "+1s",
        "1.5s",
        "1 s",
        " 1s",
        "1s ",
        "1S",
        "1sec",
        "1x",
        "1hm",
        "1h30m",
        "0x10",
        "1e3",
        "18446744073709551616ms",
        "18446744073709552s",
        "213503982335d",
        "1mss",
    };
    uint64_t v;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        v = 12345;
        assert_int_equal(dur(ok[i].in, &v), 0);
        assert_int_equal(v, ok[i].ms);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 12345;
        if (dur(bad[i], &v) != SL_EINVAL)
            fail_msg("duration \"%s\" accepted", bad[i]);
        assert_int_equal(v, 12345); /* untouched on failure */
    }
    /* Length-bounded: bytes after len are not read. */
    assert_int_equal(sl_parse_duration("10sXYZ", 3, &v), 0);
    assert_int_equal(v, 10000);
    assert_int_equal(sl_parse_duration("10s", 0, &v), SL_EINVAL);
    assert_int_equal(sl_parse_duration("1\0s", 3, &v), SL_EINVAL);
}

static void test_parse_size(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        uint64_t bytes;
    } ok[] = {
        {"0", 0},
        {"512", 512},
        {"512b", 512},
        {"512B", 512},
        {"16k", 16384},
        {"16K", 16384},
        {"16kb", 16384},
        {"16KB", 16384},
        {"16Kb", 16384},
        {"10m", 10485760},
        {"10M", 10485760},
        {"1g", 1073741824},
        {"1GB", 1073741824},
        {"17179869183g", 17179869183ull << 30},
        {"18446744073709551615", UINT64_MAX},
    };
    static const char *const bad[] = {
        "",          "k",   "b",    "kb",   "-1",           "+1",
        "1.5k",      "1 k", " 1k",  "1k ",  "1t",           "1kk",
        "1bb",       "1bk", "1kbb", "0x10", "17179869184g", "18446744073709551616",
        "16777216t", "1e3",
    };
    uint64_t v;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        v = 12345;
        if (sl_parse_size(ok[i].in, strlen(ok[i].in), &v) != 0)
            fail_msg("size \"%s\" rejected", ok[i].in);
        assert_int_equal(v, ok[i].bytes);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 12345;
        if (sl_parse_size(bad[i], strlen(bad[i]), &v) != SL_EINVAL)
            fail_msg("size \"%s\" accepted", bad[i]);
        assert_int_equal(v, 12345);
    }
    assert_int_equal(sl_parse_size("16kXYZ", 3, &v), 0);
    assert_int_equal(v, 16384);
}

static void test_parse_addr(void **state)
{
    (void)state;
    sl_addr_t a;
    static const struct {
        const char *in;
        int family;
        const char *ip;
        unsigned port;
    } ok[] = {
        {"127.0.0.1:80", AF_INET, "127.0.0.1", 80},
        {"0.0.0.0:65535", AF_INET, "0.0.0.0", 65535},
        {"255.255.255.255:1", AF_INET, "255.255.255.255", 1},
        {"*:8080", AF_INET, "0.0.0.0", 8080},
        {":8080", AF_INET, "0.0.0.0", 8080},
        {"[::1]:443", AF_INET6, "::1", 443},
        {"[::]:80", AF_INET6, "::", 80},
        {"[2001:db8::1]:8443", AF_INET6, "2001:db8::1", 8443},
        {"[::ffff:10.0.0.1]:80", AF_INET6, "::ffff:10.0.0.1", 80},
    };
    static const char *const bad[] = {
        "",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:99999",
        "127.0.0.1:+80",
        "127.0.0.1:-80",
        "127.0.0.1:080",
        "127.0.0.1:80x",
        "127.0.0.1:8 0",
        "127.0.0.1: 80",
        " 127.0.0.1:80",
        "127.0.0.1:80 ",
        "127.0.0.1:80:81",
        "127.0.0:80",
        "127.0.0.256:80",
        "1.2.3.4.5:80",
        "localhost:80",
        "example.com:443",
        "::1:80",
        "[::1]",
        "[::1]:",
        "[::1]80",
        "[::1:80",
        "::1]:80",
        "[127.0.0.1]:80",
        "[fe80::1%eth0]:80",
        "[::1]:0",
        "[]:80",
        "**:80",
        "1234567890123456789012345678901234567890123456789012345678901234:80",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        memset(&a, 0xAA, sizeof(a));
        if (sl_parse_addr(ok[i].in, strlen(ok[i].in), &a) != 0)
            fail_msg("address \"%s\" rejected", ok[i].in);
        assert_addr(&a, ok[i].family, ok[i].ip, ok[i].port, ok[i].in);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&a, 0xAA, sizeof(a));
        if (sl_parse_addr(bad[i], strlen(bad[i]), &a) != SL_EINVAL)
            fail_msg("address \"%s\" accepted", bad[i]);
        assert_int_equal(a.len, 0xAAAAAAAAu); /* untouched on failure */
    }
    /* Length-bounded and NUL-safe. */
    assert_int_equal(sl_parse_addr("1.2.3.4:80999", 10, &a), 0);
    assert_string_equal(a.text, "1.2.3.4:80");
    assert_int_equal(sl_parse_addr("1.2.3.4:8\0", 10, &a), SL_EINVAL);
    /* The longest text that fits: 63 bytes. */
    const char *longest = "[0000:0000:0000:0000:0000:0000:0000:0001]:65535";
    assert_int_equal(sl_parse_addr(longest, strlen(longest), &a), 0);
    assert_string_equal(a.text, longest);
}

/* ---- errors -------------------------------------------------------------------------- */

static void test_unknown_key(void **state)
{
    (void)state;
    expect_error("listn: 127.0.0.1:8080\n", 1, 1, "unknown key \"listn\" in top level");
    expect_error("limits:\n  max_conections: 5\n", 2, 3,
                 "unknown key \"max_conections\" in limits");
    expect_error("services:\n  blog:\n    servers: [{address: 1.2.3.4:80, wieght: 2}]\n", 3, 37,
                 "unknown key \"wieght\" in services.blog.servers[0]");
    expect_error(SVC "routes:\n  - match: {path_prefix: /, method: [GET]}\n    service: blog\n", 5,
                 29, "unknown key \"method\" in routes[0].match");
    expect_error("admin: {listen: 127.0.0.1:1, token: X}\n", 1, 30,
                 "unknown key \"token\" in admin");
    expect_error("\"a\\nb\": 1\n", 1, 1, "unknown key \"a\\x0ab\" in top level");
    expect_error("? [a]\n: 1\n", 1, 3, "keys in top level must be plain names, got a list");
}

static void test_wrong_types(void **state)
{
    (void)state;
    expect_error("- a\n- b\n", 1, 1, "top level: expected a mapping, got a list");
    expect_error("just a string\n", 1, 1, "top level: expected a mapping, got \"just a string\"");
    expect_error("admin: [1]\n", 1, 8, "admin: expected a mapping, got a list");
    expect_error("limits:\n", 1, 8, "limits: expected a mapping, got an empty value");
    expect_error("services: [blog]\n", 1, 11, "services: expected a mapping, got a list");
    expect_error("services:\n  blog: 1.2.3.4:80\n", 2, 9,
                 "services.blog: expected a mapping, got \"1.2.3.4:80\"");
    expect_error("routes: {a: 1}\n", 1, 9, "routes: expected a list, got a mapping");
    expect_error(SVC "routes: [blog]\n", 4, 10, "routes[0]: expected a mapping, got \"blog\"");
    expect_error("workers: [1]\n", 1, 10, "workers: expected an integer, got a list");
    expect_error("access_log: {a: 1}\n", 1, 13, "access_log: expected a string, got a mapping");
    expect_error("access_log: ~\n", 1, 13, "access_log: expected a string, got an empty value");
    expect_error("limits: {idle_timeout: [1s]}\n", 1, 24,
                 "limits.idle_timeout: expected a duration, got a list");
    expect_error("listen: [[1.2.3.4:80]]\n", 1, 10, "listen[0]: expected an address, got a list");
    expect_error(SVC "routes:\n  - match: {path_prefix: /, methods: GET}\n    service: blog\n", 5,
                 38, "routes[0].match.methods: expected a list, got \"GET\"");
    expect_error(SVC "routes:\n  - match: /\n    service: blog\n", 5, 12,
                 "routes[0].match: expected a mapping, got \"/\"");
}

static void test_bad_values(void **state)
{
    (void)state;
    expect_error("services:\n  blog:\n    timeouts: {connect: 5x}\n"
                 "    servers: [{address: 1.2.3.4:80}]\n",
                 3, 25,
                 "services.blog.timeouts.connect: bad duration \"5x\" "
                 "(expected e.g. 500ms, 10s, 5m)");
    expect_error("services:\n  blog:\n    timeouts: {read: 0s}\n"
                 "    servers: [{address: 1.2.3.4:80}]\n",
                 3, 22, "services.blog.timeouts.read: must be greater than 0");
    expect_error("limits: {header_timeout: 366d}\n", 1, 26,
                 "limits.header_timeout: must be at most 365d");
    expect_error("workers: 0\n", 1, 10, "workers: 0 is out of range (1..256 or auto)");
    expect_error("workers: 257\n", 1, 10, "workers: 257 is out of range (1..256 or auto)");
    expect_error("workers: four\n", 1, 10,
                 "workers: bad number \"four\" (expected an integer 1..256 or auto)");
    expect_error("limits: {max_connections: 10000001}\n", 1, 27,
                 "limits.max_connections: 10000001 is out of range (1..10000000)");
    expect_error("limits: {max_connections: 1e6}\n", 1, 27,
                 "limits.max_connections: bad number \"1e6\" (expected an integer 1..10000000)");
    expect_error("limits: {max_header_bytes: 512}\n", 1, 28,
                 "limits.max_header_bytes: \"512\" is out of range (1k..1m)");
    expect_error("limits: {max_header_bytes: 2m}\n", 1, 28,
                 "limits.max_header_bytes: \"2m\" is out of range (1k..1m)");
    expect_error("limits: {max_body_bytes: 10 MB}\n", 1, 26,
                 "limits.max_body_bytes: bad size \"10 MB\" (expected e.g. 512, 16k, 10m, 1g)");
    expect_error("listen: localhost:80\n", 1, 9,
                 "listen: bad address \"localhost:80\": host names are not accepted (resolving "
                 "would block); use an IP address");
    expect_error("admin: {listen: 127.0.0.1:0}\n", 1, 17,
                 "admin.listen: bad address \"127.0.0.1:0\" (expected IPv4:port, [IPv6]:port or "
                 "*:port)");
    expect_error("admin: {token_env: 1TOKEN}\n", 1, 20,
                 "admin.token_env: \"1TOKEN\" is not a valid environment variable name");
    expect_error("services:\n  blog:\n    keepalive: 10001\n"
                 "    servers: [{address: 1.2.3.4:80}]\n",
                 3, 16, "services.blog.keepalive: 10001 is out of range (0..10000)");
    expect_error("services:\n  blog:\n    retries: 11\n"
                 "    servers: [{address: 1.2.3.4:80}]\n",
                 3, 14, "services.blog.retries: 11 is out of range (0..10)");
    expect_error("services:\n  blog:\n    servers: [{address: 1.2.3.4:80, weight: 0}]\n", 3, 45,
                 "services.blog.servers[0].weight: 0 is out of range (1..1000)");
    expect_error("services:\n  blog:\n    servers: [{address: 1.2.3.4:80, max_fails: 1001}]\n", 3,
                 48, "services.blog.servers[0].max_fails: 1001 is out of range (0..1000)");
    expect_error("services:\n  blog:\n    balance: fastest\n"
                 "    servers: [{address: 1.2.3.4:80}]\n",
                 3, 14,
                 "services.blog.balance: unknown value \"fastest\" (expected round_robin, "
                 "least_conn, random_two, hash)");
    expect_error("services:\n  blog:\n    servers: []\n", 3, 14,
                 "services.blog.servers: must not be empty");
    expect_error("services:\n  blog:\n    retries: 1\n", 2, 3,
                 "services.blog: missing required key \"servers\"");
    expect_error("services:\n  blog:\n    servers: [{weight: 2}]\n", 3, 15,
                 "services.blog.servers[0]: missing required key \"address\"");
    expect_error("services:\n  blog.v2:\n    servers: [{address: 1.2.3.4:80}]\n", 2, 3,
                 "services: \"blog.v2\" is not a valid service name (use letters, digits, '_' "
                 "and '-')");
    expect_error("access_log: \"\"\n", 1, 13, "access_log: \"\" must not be empty");
    expect_error("access_log: \"a\\tb\"\n", 1, 13,
                 "access_log: \"a\\x09b\" contains a control "
                 "character");
    expect_error("listen: [1.2.3.4:80, 1.2.3.4:80]\n", 1, 22,
                 "listen[1]: 1.2.3.4:80 is already listed");
    expect_error("listen: []\n", 1, 9, "listen: expected 1 to 16 addresses, got 0");
    expect_error("listen: 127.0.0.1:9901\n", 1, 1,
                 "admin.listen: 127.0.0.1:9901 is also a proxy listen address");
    expect_error("listen: 127.0.0.1:7\nadmin: {listen: 127.0.0.1:7}\n", 2, 17,
                 "admin.listen: 127.0.0.1:7 is also a proxy listen address");
}

static void test_route_errors(void **state)
{
    (void)state;
    expect_error(SVC "routes:\n  - match: {path_prefix: /}\n    service: blgo\n", 6, 14,
                 "routes[0]: service \"blgo\" is not defined");
    expect_error(SVC "routes:\n  - match: {path_prefix: /a}\n    service: blog\n"
                     "  - match: {path_prefix: /b}\n    service: shop\n",
                 8, 14, "routes[1]: service \"shop\" is not defined");
    /* A missing service is reported at the route (its first key). */
    expect_error(SVC "routes:\n  - match: {path_prefix: /}\n", 5, 5,
                 "routes[0]: needs a target: service or static");
    expect_error(SVC "routes:\n  - {service: blog}\n", 5, 5,
                 "routes[0]: missing required key \"match\"");
    expect_error(SVC "routes:\n  - match: {host: a.com}\n    service: blog\n", 5, 5,
                 "routes[0].match: missing required key \"path_prefix\"");
    expect_error(SVC "routes:\n  - service: blog\n    match:\n      host: a.com\n", 6, 5,
                 "routes[0].match: missing required key \"path_prefix\"");
    expect_error(SVC "routes:\n  - match: {path_prefix: api}\n    service: blog\n", 5, 26,
                 "routes[0].match.path_prefix: \"api\" must start with '/'");
    expect_error(SVC "routes:\n  - match: {path_prefix: \"/a?b\"}\n    service: blog\n", 5, 26,
                 "routes[0].match.path_prefix: \"/a?b\" must be a plain path (no spaces, '?' or "
                 "'#')");
    expect_error(SVC "routes:\n  - match: {path_prefix: /, host: \"a.com:80\"}\n"
                     "    service: blog\n",
                 5, 35,
                 "routes[0].match.host: \"a.com:80\" must not include a port (ports are "
                 "ignored when matching)");
    expect_error(SVC "routes:\n  - match: {path_prefix: /, host: \"[::g]\"}\n    service: blog\n",
                 5, 35, "routes[0].match.host: \"[::g]\" is not a valid IPv6 literal");
    expect_error(SVC "routes:\n  - match: {path_prefix: /, host: \"*.a.com\"}\n"
                     "    service: blog\n",
                 5, 35, "routes[0].match.host: \"*.a.com\" is not a valid host name");
    expect_error(SVC "routes:\n  - match: {path_prefix: /, methods: [GET, get]}\n"
                     "    service: blog\n",
                 5, 44,
                 "routes[0].match.methods[1]: unknown method \"get\" (expected GET, HEAD, "
                 "POST, PUT, DELETE, PATCH, OPTIONS, CONNECT, TRACE)");
    expect_error(SVC "routes:\n  - match: {path_prefix: /, methods: []}\n    service: blog\n", 5,
                 38, "routes[0].match.methods: expected 1 to 16 method names, got 0");
    expect_error(SVC "routes:\n  - match: {path_prefix: /}\n    service: \"my blog\"\n", 6, 14,
                 "routes[0].service: \"my blog\" is not a valid service name (use letters, "
                 "digits, '_' and '-')");
    /* Routes need services; one error, not one per route. */
    expect_error("routes:\n  - match: {path_prefix: /}\n    service: blog\n"
                 "  - match: {path_prefix: /x}\n    service: blog\n",
                 1, 1, "routes: at least one service must be defined under \"services\"");
    expect_error("services: {}\nroutes:\n  - match: {path_prefix: /}\n    service: blog\n", 2, 1,
                 "routes: at least one service must be defined under \"services\"");
    /* A broken services value is reported once, without a cascade over the routes. */
    expect_error("services: [x]\nroutes:\n  - match: {path_prefix: /}\n    service: blog\n", 1, 11,
                 "services: expected a mapping, got a list");
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    expect_error("workers: 2\nworkers: 3\n", 2, 1,
                 "duplicate key \"workers\" in top level (first at line 1)");
    expect_error("limits:\n  idle_timeout: 1s\n  header_timeout: 1s\n  idle_timeout: 2s\n", 4, 3,
                 "duplicate key \"idle_timeout\" in limits (first at line 2)");
    expect_error("services:\n  blog:\n    servers: [{address: 1.2.3.4:80}]\n"
                 "  blog:\n    servers: [{address: 1.2.3.4:81}]\n",
                 4, 3, "duplicate key \"blog\" in services (first at line 2)");
}

/* A route's static: target (docs/static.md): defaults, every key, and the errors. */
static void test_static_keys(void **state)
{
    (void)state;
    char yaml[1024];
    snprintf(yaml, sizeof(yaml), "routes:\n  - match: {path_prefix: /s/}\n    static: {root: /tmp}\n");
    sl_config_t *cfg = load_ok(yaml); /* no services needed */
    const sl_static_conf_t *st = &cfg->routes[0].stat;
    assert_int_equal(st->enabled, 1);
    assert_string_equal(st->root, "/tmp");
    assert_string_equal(st->index, "index.html");
    assert_int_equal(st->compress, 6); /* br and gzip bits */
    assert_int_equal(st->compress_min, 1024);
    assert_int_equal(st->compress_max, 1u << 20);
    assert_null(st->immutable_pattern);
    assert_int_equal(st->max_age_ms, 0);
    assert_int_equal(st->dotfiles, 0);
    assert_int_equal(st->symlinks, 1);
    assert_int_equal(st->file_cache, 16u << 20);
    assert_int_equal(st->file_cache_valid_ms, 1000);
    assert_null(cfg->routes[0].service);
    sl_config_free(cfg);

    cfg = load_ok(SVC "routes:\n  - match: {path_prefix: /s/}\n"
                  "    static: {root: /tmp, index: home.htm, compress: [gzip], compress_min: 0,\n"
                  "             compress_max: 2m, immutable_pattern: \"assets/*\", max_age: 10m,\n"
                  "             dotfiles: true, symlinks: false, file_cache: 0,\n"
                  "             file_cache_valid: 250ms}\n"
                  "    rate_limits: [{key: ip, rate: 5/second}]\n"
                  "  - match: {path_prefix: /}\n    service: blog\n");
    st = &cfg->routes[0].stat;
    assert_string_equal(st->index, "home.htm");
    assert_int_equal(st->compress, 2);
    assert_int_equal(st->compress_min, 0);
    assert_int_equal(st->compress_max, 2u << 20);
    assert_string_equal(st->immutable_pattern, "assets/*");
    assert_int_equal(st->max_age_ms, 600000);
    assert_int_equal(st->dotfiles, 1);
    assert_int_equal(st->symlinks, 0);
    assert_int_equal(st->file_cache, 0);
    assert_int_equal(st->file_cache_valid_ms, 250);
    assert_int_equal(cfg->routes[0].nrate_limits, 1);
    assert_int_equal(cfg->routes[1].stat.enabled, 0);
    sl_config_free(cfg);
    cfg = load_ok("routes:\n  - match: {path_prefix: /}\n    static: {root: /tmp, compress: []}\n");
    assert_int_equal(cfg->routes[0].stat.compress, 0);
    sl_config_free(cfg);

    expect_error("routes:\n  - match: {path_prefix: /}\n    static: {index: a.html}\n", 3, 5,
                 "routes[0].static: missing required key \"root\"");
    expect_error("routes:\n  - match: {path_prefix: /}\n    static: {root: /nonexistent-dir}\n", 2, 5,
                 "routes[0].static.root: /nonexistent-dir: No such file or directory");
    expect_error("routes:\n  - match: {path_prefix: /}\n    static: {root: /etc/hostname}\n", 2, 5,
                 "routes[0].static.root: /etc/hostname: not a directory");
    expect_error("routes:\n  - match: {path_prefix: /}\n    static: {root: /tmp, compress: [gzip, zstd]}\n",
                 3, 43, "routes[0].static.compress[1]: unknown coding \"zstd\" (expected br, gzip)");
    expect_error("routes:\n  - match: {path_prefix: /}\n    static: {root: /tmp, index: a/b}\n", 3, 33,
                 "routes[0].static.index: \"a/b\" must be one file name (no '/', '\\', control "
                 "bytes, \".\" or \"..\")");
    expect_error("routes:\n  - match: {path_prefix: /}\n    static: {root: /tmp, compress_min: 2m}\n", 2, 5,
                 "routes[0].static: compress_max is below compress_min");
    expect_error(SVC "routes:\n  - match: {path_prefix: /}\n    service: blog\n    static: {root: /tmp}\n",
                 5, 5, "routes[0]: has both service and static; a route has one target");
    expect_error("routes:\n  - match: {path_prefix: /}\n    static: {root: /tmp}\n    dedupe: true\n", 2, 5,
                 "routes[0]: cache and dedupe are for service routes (static answers are read from "
                 "files and carry their own validators)");
}

/* cache: the store's bounds and switches; a route's cache options; dedupe. */
static void test_cache_keys(void **state)
{
    (void)state;
    sl_config_t *cfg = load_ok(SVC "routes:\n  - match: {path_prefix: /}\n    service: blog\n");
    assert_int_equal(cfg->cache.memory, 256u << 20); /* defaults */
    assert_int_equal(cfg->cache.max_object, 8u << 20);
    assert_int_equal(cfg->cache.coalesce, 1);
    assert_int_equal(cfg->cache.lock_timeout_ms, 5000);
    assert_int_equal(cfg->cache.hit_for_pass_ms, 5000);
    assert_int_equal(cfg->cache.max_waiters, 10000);
    assert_int_equal(cfg->routes[0].cache.enabled, 0);
    assert_int_equal(cfg->routes[0].dedupe, 0);
    sl_config_free(cfg);

    cfg = load_ok("cache: {memory: 64m, max_object: 1m, coalesce: false, lock_timeout: 2s,\n"
                  "        hit_for_pass: 0s, max_waiters: 50}\n" SVC
                  "routes:\n"
                  "  - match: {path_prefix: /a}\n    service: blog\n"
                  "    cache: {ttl: 5m, stale_while_revalidate: 30s, stale_if_error: 1h,\n"
                  "            override: yes, allow_set_cookie: true}\n"
                  "  - match: {path_prefix: /b}\n    service: blog\n    cache: {}\n"
                  "  - match: {path_prefix: /c}\n    service: blog\n    cache: {enabled: off}\n"
                  "  - match: {path_prefix: /d}\n    service: blog\n    dedupe: true\n");
    assert_int_equal(cfg->cache.memory, 64u << 20);
    assert_int_equal(cfg->cache.max_object, 1u << 20);
    assert_int_equal(cfg->cache.coalesce, 0);
    assert_int_equal(cfg->cache.lock_timeout_ms, 2000);
    assert_int_equal(cfg->cache.hit_for_pass_ms, 0);
    assert_int_equal(cfg->cache.max_waiters, 50);
    const sl_route_cache_conf_t *a = &cfg->routes[0].cache;
    assert_int_equal(a->enabled, 1);
    assert_int_equal(a->ttl_ms, 300000);
    assert_int_equal(a->swr_ms, 30000);
    assert_int_equal(a->sie_ms, 3600000);
    assert_int_equal(a->override, 1);
    assert_int_equal(a->allow_set_cookie, 1);
    assert_int_equal(cfg->routes[1].cache.enabled, 1);
    assert_int_equal(cfg->routes[1].cache.ttl_ms, 0);
    assert_int_equal(cfg->routes[2].cache.enabled, 0);
    assert_int_equal(cfg->routes[3].dedupe, 1);
    sl_config_free(cfg);

    expect_error("workers: 1\ncache: {redis: true}\n", 2, 1,
                 "cache.redis: needs a top-level redis: {address: ...}");
    cfg = load_ok("redis: {address: 127.0.0.1:6379}\ncache: {redis: true}\n");
    assert_int_equal(cfg->cache.redis, 1);
    sl_config_free(cfg);
    expect_error("cache: {memory: 1k}\n", 1, 17, "cache.memory: \"1k\" is out of range (64k..1024g)");
    expect_error("cache: {coalesce: maybe}\n", 1, 19,
                 "cache.coalesce: expected true or false, got \"maybe\"");
    expect_error("cache: {max_waiters: 0}\n", 1, 22, "cache.max_waiters: 0 is out of range (1..1000000)");
    expect_error(SVC "routes:\n  - match: {path_prefix: /}\n    service: blog\n"
                     "    cache: {ttl: soon}\n",
                 7, 18, "routes[0].cache.ttl: bad duration \"soon\" (expected e.g. 500ms, 10s, 5m)");
    expect_error(SVC "routes:\n  - match: {path_prefix: /}\n    service: blog\n"
                     "    cache: {tll: 5s}\n",
                 7, 13, "unknown key \"tll\" in routes[0].cache");
    expect_error(SVC "routes:\n  - match: {path_prefix: /}\n    service: blog\n"
                     "    cache: {}\n    dedupe: true\n",
                 5, 5,
                 "routes[0]: dedupe is for routes without cache (a caching route already "
                 "coalesces its misses)");
}

/* alerts: a list of rules, or {defaults, webhook, rules}; expressions checked with their
 * column; selectors name routes (by name or prefix) and services that exist. */
static void test_alerts(void **state)
{
    (void)state;
    sl_config_t *cfg = load_ok(SVC "routes:\n  - name: api\n    match: {path_prefix: /api}\n"
                                   "    service: blog\n  - match: {path_prefix: /}\n"
                                   "    service: blog\n"
                                   "alerts:\n"
                                   "  - {name: ApiErrors, expr: 'error_rate{route=\"api\"} >= 0.05',"
                                   " for: 30s, window: 2m, severity: critical}\n"
                                   "  - {name: RootSlow, expr: 'latency_p99{route=\"/\"}<1.5e0'}\n"
                                   "  - {name: Pool, expr: 'upstream_pool_utilization{service="
                                   "\"blog\"} > 0.5'}\n"
                                   "  - {name: HighCPU, enabled: false}\n"
                                   "  - {name: HighErrorRate, for: 5m}\n");
    assert_int_equal(cfg->alerts.defaults, 1);
    assert_null(cfg->alerts.webhook);
    assert_int_equal(cfg->alerts.nrules, 5);
    const sl_alert_rule_conf_t *r = cfg->alerts.rules;
    assert_string_equal(r[0].name, "ApiErrors");
    assert_int_equal(r[0].e.signal, SL_SIG_ERROR_RATE);
    assert_int_equal(r[0].e.op, SL_OP_GE);
    assert_true(r[0].e.threshold == 0.05);
    assert_int_equal(r[0].e.selector, SL_SEL_ROUTE);
    assert_string_equal(r[0].e.sel, "api");
    assert_int_equal(r[0].for_ms, 30000);
    assert_int_equal(r[0].window_ms, 120000);
    assert_string_equal(r[0].severity, "critical");
    assert_int_equal(r[1].e.signal, SL_SIG_LATENCY_P99);
    assert_int_equal(r[1].e.op, SL_OP_LT);
    assert_true(r[1].e.threshold == 1.5);
    assert_int_equal(r[1].for_ms, SL_ALERT_UNSET);
    assert_int_equal(r[2].e.selector, SL_SEL_SERVICE);
    assert_int_equal(r[3].enabled, 0);
    assert_null(r[4].expr);
    assert_int_equal(r[4].for_ms, 300000);
    assert_string_equal(cfg->routes[0].name, "api");
    assert_null(cfg->routes[1].name);
    sl_config_free(cfg);

    cfg = load_ok("alerts:\n  defaults: false\n  webhook: http://127.0.0.1:9093/api/hook\n"
                  "  rules:\n    - {name: Busy, expr: request_rate > 100}\n");
    assert_int_equal(cfg->alerts.defaults, 0);
    assert_string_equal(cfg->alerts.webhook, "http://127.0.0.1:9093/api/hook");
    assert_int_equal(cfg->alerts.nrules, 1);
    sl_config_free(cfg);

    /* the column points into the expression, past its opening quote */
    expect_error("alerts:\n  - {name: A, expr: 'error_rat > 1'}\n", 2, 22,
                 "alerts[0].expr: unknown signal (error_rate, request_rate, "
                 "latency_p50|p95|p99, ratelimited_ratio, cache_hit_ratio, cpu_utilization, "
                 "memory_utilization, upstream_pool_utilization)");
    expect_error("alerts:\n  - {name: A, expr: error_rate >> 1}\n", 2, 33,
                 "alerts[0].expr: expected a number");
    expect_error("alerts:\n  - {name: A, expr: 'cpu_utilization{route=\"x\"} > 1'}\n", 2, 38,
                 "alerts[0].expr: this signal takes no selector");
    expect_error("alerts:\n  - {name: A, expr: error_rate > 0.01 and}\n", 2, 39,
                 "alerts[0].expr: unexpected text after the number");
    expect_error("alerts:\n  - {name: A, expr: error_rate = 1}\n", 2, 32,
                 "alerts[0].expr: expected a comparison: >, >=, < or <=");
    expect_error(SVC "alerts:\n  - {name: A, expr: 'error_rate{route=\"nope\"} > 1'}\n", 5, 5,
                 "alert A: no route named \"nope\"");
    expect_error(SVC "alerts:\n  - {name: A, expr: 'upstream_pool_utilization{service=\"x\"} > "
                     "1'}\n",
                 5, 5, "alert A: no service named \"x\"");
    expect_error("alerts:\n  - {name: Mine}\n", 2, 5,
                 "alert Mine: needs expr (only a built-in rule's name may leave it out)");
    expect_error("alerts:\n  - {name: A, expr: error_rate > 1}\n  - {name: A, expr: error_rate "
                 "> 2}\n",
                 3, 5, "alert name A is used twice");
    expect_error("alerts:\n  - {name: A, expr: error_rate > 1, window: 16m}\n", 2, 5,
                 "alert A: window is at most 15m");
    expect_error("alerts:\n  webhook: https://alerts.example/x\n", 2, 12,
                 "alerts.webhook: \"https://alerts.example/x\" must be an http:// URL "
                 "(http://HOST:PORT/PATH)");
    expect_error(SVC "routes:\n  - {name: a, match: {path_prefix: /x}, service: blog}\n"
                     "  - {name: a, match: {path_prefix: /}, service: blog}\n",
                 6, 5, "route name a is used twice");
}

/* autoscale: servers become optional, every key parses, bounds agree, health checks get
 * defaults; errors name the key. */
static void test_autoscale(void **state)
{
    (void)state;
    sl_config_t *cfg = load_ok("services:\n  app:\n    autoscale:\n"
                               "      command: ./app --port {port}\n"
                               "      ports: 9000-9009\n      min: 2\n      max: 5\n"
                               "      target_cpu: 70\n      sync_period: 5s\n"
                               "      tolerance_percent: 5\n"
                               "      env: {MODE: prod, LEVEL: '3'}\n      workdir: /tmp\n"
                               "      scale_up: {stabilization_window: 10s, policies: [{type: "
                               "pods, value: 2, period: 30s}], select: min}\n"
                               "      scale_down: {stabilization_window: 1m}\n"
                               "      drain_timeout: 5s\n      stop_grace: 2s\n");
    const sl_service_conf_t *s = &cfg->services[0];
    const sl_autoscale_conf_t *a = &s->autoscale;
    assert_int_equal(s->nservers, 0);
    assert_int_equal(a->enabled, 1);
    assert_string_equal(a->command, "./app --port {port}");
    assert_int_equal(a->port_lo, 9000);
    assert_int_equal(a->port_hi, 9009);
    assert_int_equal(a->min, 2);
    assert_int_equal(a->max, 5);
    assert_int_equal(a->initial, 2); /* defaults to min */
    assert_int_equal(a->metric, SL_AS_CPU);
    assert_true(a->target == 70);
    assert_int_equal(a->sync_period_ms, 5000);
    assert_int_equal(a->tolerance_pct, 5);
    assert_int_equal(a->nenv, 2);
    assert_string_equal(a->env[0], "MODE=prod");
    assert_string_equal(a->env[1], "LEVEL=3");
    assert_int_equal(a->up.window_ms, 10000);
    assert_int_equal(a->up.npolicies, 1);
    assert_int_equal(a->up.policies[0].type, SL_AS_PODS);
    assert_int_equal(a->up.policies[0].value, 2);
    assert_int_equal(a->up.policies[0].period_ms, 30000);
    assert_int_equal(a->up.select, SL_AS_SELECT_MIN);
    assert_int_equal(a->down.window_ms, 60000);
    assert_null(a->down.policies);
    assert_int_equal(a->drain_timeout_ms, 5000);
    assert_int_equal(a->stop_grace_ms, 2000);
    assert_int_equal(s->health.enabled, 1); /* readiness: defaults added */
    assert_int_equal(s->health.passes, 1);
    sl_config_free(cfg);

    cfg = load_ok("services:\n  app:\n    autoscale: {command: x, ports: 1-2, max: 2, "
                  "target_inflight: 4, initial: 2}\n");
    assert_int_equal(cfg->services[0].autoscale.metric, SL_AS_INFLIGHT);
    assert_int_equal(cfg->services[0].autoscale.initial, 2);
    sl_config_free(cfg);

    expect_error("services:\n  app:\n    autoscale: {command: x, ports: 9000-9001, max: 2}\n", 3, 5,
                 "services.app.autoscale: one of target_cpu, target_inflight, target_rps is "
                 "required");
    expect_error("services:\n  app:\n    autoscale: {command: x, ports: 9001-9000, "
                 "target_rps: 5}\n",
                 3, 36,
                 "services.app.autoscale.ports: \"9001-9000\" is not a port range LOW-HIGH "
                 "(1..65535, at most 1024 ports)");
    expect_error("services:\n  app:\n    autoscale: {command: x, ports: 9000-9001, max: 3, "
                 "target_rps: 5}\n",
                 3, 5, "services.app.autoscale: max 3 instances need at least 3 ports");
    expect_error("services:\n  app:\n    autoscale: {command: x, ports: 9000-9009, min: 4, max: "
                 "3, target_rps: 5}\n",
                 3, 5, "services.app.autoscale: min 4 is above max 3");
    expect_error("services:\n  app:\n    autoscale: {command: x, ports: 9000-9009, initial: 9, "
                 "max: 3, target_rps: 5}\n",
                 3, 5, "services.app.autoscale: initial 9 is outside min..max (1..3)");
    expect_error("services:\n  app:\n    autoscale: {command: x, ports: 9000-9009, target_cpu: "
                 "70, target_rps: 5}\n",
                 3, 75, "services.app.autoscale.target_rps: give one of target_cpu, "
                 "target_inflight, target_rps");
    expect_error("services:\n  app:\n    autoscale: {ports: 9000-9009, target_cpu: 70}\n", 3, 5,
                 "services.app.autoscale: missing required key \"command\"");
}

/* The expression parser alone: every operator, spacing, numbers, bounds. */
static void test_alert_expr(void **state)
{
    (void)state;
    sl_alert_expr_t e;
    char err[200];
    size_t at;
    assert_int_equal(sl_alert_expr_parse("  latency_p95 <= 2.5 ", 21, &e, err, sizeof(err), &at),
                     0);
    assert_int_equal(e.op, SL_OP_LE);
    assert_true(e.threshold == 2.5);
    assert_true(sl_alert_compare(&e, 2.5) && !sl_alert_compare(&e, 2.6));
    assert_int_equal(sl_alert_expr_parse("error_rate>1e-2", 15, &e, err, sizeof(err), &at), 0);
    assert_true(e.threshold == 0.01);
    assert_true(sl_alert_compare(&e, 0.02) && !sl_alert_compare(&e, 0.01));
    static const char *bad[] = {"",
                                "error_rate",
                                "error_rate >",
                                "error_rate > .",
                                "error_rate > 1e",
                                "error_rate > 1e999",
                                "error_rate{route=\"a\" > 1",
                                "error_rate{route=a} > 1",
                                "error_rate{route=\"\"} > 1",
                                "error_rate{host=\"a\"} > 1",
                                "error_rate > 1 2",
                                "error_rate{route=\"a\\\"\"} > 1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        at = 999;
        assert_int_equal(sl_alert_expr_parse(bad[i], strlen(bad[i]), &e, err, sizeof(err), &at),
                         -1);
        assert_true(at <= strlen(bad[i]));
        assert_true(err[0] != 0);
    }
    /* a selector value of 127 bytes is the longest */
    char buf[300];
    memset(buf, 0, sizeof(buf));
    int n = snprintf(buf, sizeof(buf), "error_rate{route=\"%0127d\"} > 1", 0);
    assert_int_equal(sl_alert_expr_parse(buf, (size_t)n, &e, err, sizeof(err), &at), 0);
    n = snprintf(buf, sizeof(buf), "error_rate{route=\"%0128d\"} > 1", 0);
    assert_int_equal(sl_alert_expr_parse(buf, (size_t)n, &e, err, sizeof(err), &at), -1);
    /* every built-in rule parses */
    for (size_t i = 0; i < sl_alert_nbuiltins; i++)
        assert_int_equal(sl_alert_expr_parse(sl_alert_builtins[i].expr,
                                             strlen(sl_alert_builtins[i].expr), &e, err,
                                             sizeof(err), &at),
                         0);
}

static void test_rate_limit_keys(void **state)
{
    (void)state;
    uint32_t n;
    uint64_t ms;
    assert_int_equal(sl_parse_rate("100/minute", 10, &n, &ms), 0);
    assert_int_equal(n, 100);
    assert_int_equal(ms, 60000);
    assert_int_equal(sl_parse_rate("1/second", 8, &n, &ms), 0);
    assert_int_equal(ms, 1000);
    assert_int_equal(sl_parse_rate("1000000000/day", 14, &n, &ms), 0);
    assert_int_equal(n, 1000000000);
    assert_int_equal(ms, 86400000);
    static const char *const bad[] = {"",         "/minute",     "0/minute", "-1/minute",
                                      "5/min",    "5/Minute",    "5 /hour",  "5/hour ",
                                      "5",        "1000000001/s", "5//hour", "5/hours",
                                      "+5/hour",  "5/"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++)
        assert_int_equal(sl_parse_rate(bad[i], strlen(bad[i]), &n, &ms), SL_EINVAL);

    setenv("T_JWT", "s", 1);
    sl_config_t *cfg = load_ok(
        "trusted_proxies: [10.0.0.0/8, 127.0.0.1, \"::1/128\"]\n"
        "auth:\n  jwt: {secret_env: T_JWT, algorithms: [HS256, ES256], leeway: 5s}\n"
        "limits: {rate_limit_keys: 5000}\n"
        "rate_limits:\n"
        "  - {key: ip, rate: 100/minute, burst: 20}\n"
        "  - {key: user, rate: 1000/hour, dry_run: true, name: users}\n" SVC
        "routes:\n"
        "  - match: {path_prefix: /}\n    service: blog\n    require_auth: true\n"
        "    rate_limits: [{key: \"header:X-Key\", rate: 5/second}]\n");
    assert_int_equal(cfg->ntrusted_proxies, 3);
    assert_int_equal(cfg->trusted_proxies[0].prefix, 8);
    assert_int_equal(cfg->trusted_proxies[1].prefix, 32);
    assert_int_equal(cfg->trusted_proxies[2].prefix, 128);
    assert_true(cfg->auth.jwt);
    assert_int_equal(cfg->auth.algorithms, SL_ALG_HS256 | SL_ALG_ES256);
    assert_int_equal(cfg->auth.leeway_ms, 5000);
    assert_int_equal(cfg->limits.rate_limit_keys, 5000);
    assert_int_equal(cfg->nrate_limits, 2);
    assert_string_equal(cfg->rate_limits[0].name, "minute");
    assert_true(cfg->rate_limits[0].has_burst);
    assert_int_equal(cfg->rate_limits[0].burst, 20);
    assert_string_equal(cfg->rate_limits[1].name, "users");
    assert_true(cfg->rate_limits[1].dry_run);
    assert_int_equal(cfg->rate_limits[1].key, SL_RLKEY_USER);
    assert_true(cfg->routes[0].require_auth);
    assert_int_equal(cfg->routes[0].rate_limits[0].key, SL_RLKEY_HEADER);
    assert_string_equal(cfg->routes[0].rate_limits[0].key_name, "X-Key");
    assert_string_equal(cfg->routes[0].rate_limits[0].name, "route_second");
    sl_config_free(cfg);

    cfg = load_ok("redis: {address: 127.0.0.1:6380, on_failure: fail_closed, timeout: 50ms,"
                  " key_prefix: edge1}\n");
    assert_true(cfg->redis.enabled);
    assert_int_equal(cfg->redis.on_failure, SL_FAIL_CLOSED);
    assert_int_equal(cfg->redis.timeout_ms, 50);
    assert_string_equal(cfg->redis.key_prefix, "edge1");
    assert_string_equal(cfg->redis.addr.text, "127.0.0.1:6380");
    sl_config_free(cfg);
    cfg = load_ok("workers: 1\n");
    assert_false(cfg->redis.enabled);
    assert_int_equal(cfg->redis.timeout_ms, 20);
    sl_config_free(cfg);
    cfg = load_ok("redis: {address: 127.0.0.1:6379, key_prefix: 'sluice:rl:'}\n");
    assert_string_equal(cfg->redis.key_prefix, "sluice:rl:"); /* ':' as Redis keys use it */
    sl_config_free(cfg);
    expect_error("redis: {address: 127.0.0.1:6379, key_prefix: 'a b'}\n", 1, 46,
                 "redis.key_prefix: \"a b\" may not contain spaces, quotes, backslashes or "
                 "control characters");
    expect_error("redis: {address: 127.0.0.1:6379, on_failure: maybe}\n", 1, 46,
                 "redis.on_failure: unknown value \"maybe\" (expected fail_open, fail_closed)");
    expect_error("rate_limits:\n  - {key: ip, rate: 5/hr}\n", 2, 21,
                 "rate_limits[0].rate: bad rate \"5/hr\" (expected N/second, N/minute, N/hour "
                 "or N/day)");
    expect_error("rate_limits:\n  - {key: user, rate: 5/hour}\n", 2, 5,
                 "rate limit with key user needs auth.jwt");
    expect_error("rate_limits:\n  - {key: ip, rate: 5/hour}\n  - {key: ip, rate: 6/hour}\n", 3, 5,
                 "rate limit name \"hour\" is used twice: give one a name:");
    expect_error("rate_limits:\n  - {key: cookie, rate: 5/hour}\n", 2, 11,
                 "rate_limits[0].key: unknown value \"cookie\" (expected ip, user, route or "
                 "header:NAME)");
    expect_error("rate_limits:\n  - {rate: 5/hour}\n", 2, 5,
                 "rate_limits[0]: missing required key \"key\"");
    expect_error("rate_limits:\n  - {key: ip, rate: 5/hour, dry_run: maybe}\n", 2, 38,
                 "rate_limits[0].dry_run: expected true or false, got \"maybe\"");
    expect_error("trusted_proxies: [10.0.0.0/33]\n", 1, 19,
                 "trusted_proxies: bad address or CIDR \"10.0.0.0/33\"");
    expect_error("auth:\n  jwt: {algorithms: [HS256]}\n", 2, 8,
                 "auth.jwt: needs secret_env (HS256) or public_key (RS256, ES256)");
    expect_error("auth:\n  jwt: {secret_env: X, algorithms: [none]}\n", 2, 37,
                 "auth.jwt.algorithms: unknown algorithm \"none\" (expected HS256, RS256 or "
                 "ES256)");
}

/* The load-balancing keys: balancers, hash_key, retries and their budget, passive
 * health statuses, read replicas, read_your_writes, active health checks. */
static void test_balancing_keys(void **state)
{
    (void)state;
    sl_config_t *cfg = load_ok("services:\n"
                               "  blog:\n"
                               "    balance: hash\n"
                               "    hash_key: cookie:session_id\n"
                               "    retries: 2\n"
                               "    retry_methods: [GET, PUT, DELETE]\n"
                               "    retry_budget: {percent: 50, min_concurrency: 5}\n"
                               "    fail_on_status: [500, 503]\n"
                               "    servers: [{address: 127.0.0.1:8000}]\n"
                               "    read_servers: [{address: 127.0.0.1:8100, weight: 2}]\n"
                               "    read_your_writes: 5s\n"
                               "    health_check: {path: /ping, interval: 200ms, timeout: 100ms,"
                               " fails: 2, passes: 3, expect_status: [200, 204]}\n");
    const sl_service_conf_t *s = &cfg->services[0];
    assert_int_equal(s->balance, SL_BALANCE_HASH);
    assert_int_equal(s->hash_key, SL_HASH_COOKIE);
    assert_string_equal(s->hash_key_name, "session_id");
    assert_int_equal(s->retry_methods, SL_METHOD_BIT(SL_M_GET) | SL_METHOD_BIT(SL_M_PUT) |
                                           SL_METHOD_BIT(SL_M_DELETE));
    assert_int_equal(s->retry_budget_percent, 50);
    assert_int_equal(s->retry_budget_min, 5);
    assert_int_equal(s->nfail_status, 2);
    assert_int_equal(s->fail_status[1], 503);
    assert_int_equal(s->nread_servers, 1);
    assert_int_equal(s->read_servers[0].weight, 2);
    assert_int_equal(s->read_your_writes_ms, 5000);
    assert_true(s->health.enabled);
    assert_string_equal(s->health.path, "/ping");
    assert_int_equal(s->health.interval_ms, 200);
    assert_int_equal(s->health.timeout_ms, 100);
    assert_int_equal(s->health.fails, 2);
    assert_int_equal(s->health.passes, 3);
    assert_int_equal(s->health.nexpect, 2);
    assert_int_equal(s->health.expect_status[1], 204);
    sl_config_free(cfg);

    /* defaults */
    cfg = load_ok("services:\n  b:\n    balance: least_conn\n"
                  "    servers: [{address: 127.0.0.1:8000}]\n");
    s = &cfg->services[0];
    assert_int_equal(s->balance, SL_BALANCE_LEAST_CONN);
    assert_int_equal(s->hash_key, SL_HASH_IP);
    assert_false(s->health.enabled);
    assert_int_equal(s->health.interval_ms, 10000);
    assert_int_equal(s->health.fails, 3);
    assert_int_equal(s->health.passes, 2);
    assert_int_equal(s->nfail_status, 3);
    assert_int_equal(s->retry_budget_percent, 20);
    assert_int_equal(s->retry_methods, SL_METHOD_BIT(SL_M_GET) | SL_METHOD_BIT(SL_M_HEAD) |
                                           SL_METHOD_BIT(SL_M_OPTIONS));
    sl_config_free(cfg);

    cfg = load_ok("services:\n  b:\n    fail_on_status: []\n    health_check: {}\n"
                  "    servers: [{address: 127.0.0.1:8000}]\n");
    assert_int_equal(cfg->services[0].nfail_status, 0);
    assert_true(cfg->services[0].health.enabled);
    sl_config_free(cfg);

#define B "services:\n  b:\n    servers: [{address: 127.0.0.1:8000}]\n"
    expect_error(B "    hash_key: shoe\n", 4, 15,
                 "services.b.hash_key: unknown value \"shoe\" (expected ip, path, header:NAME or "
                 "cookie:NAME)");
    expect_error(B "    hash_key: \"header:a b\"\n", 4, 15, "services.b.hash_key: bad name \"a b\"");
    expect_error(B "    fail_on_status: [200, 99]\n", 4, 27,
                 "services.b.fail_on_status: bad status code \"99\" (expected 100..599)");
    expect_error(B "    health_check: {path: ping}\n", 4, 26,
                 "services.b.health_check.path: \"ping\" must start with '/'");
    expect_error(B "    health_check: {fails: 0}\n", 4, 27,
                 "services.b.health_check.fails: 0 is out of range (1..100)");
    expect_error(B "    health_check: {intervl: 1s}\n", 4, 20,
                 "unknown key \"intervl\" in services.b.health_check");
    expect_error(B "    read_servers: []\n", 4, 19, "services.b.read_servers: must not be empty");
    expect_error(B "    retry_budget: {percent: 101}\n", 4, 29,
                 "services.b.retry_budget.percent: 101 is out of range (0..100)");
    /* Server addresses may be names, resolved off the worker loops. */
    cfg = load_ok("services:\n  b:\n    servers:\n"
                  "      - {address: backend.default.svc.cluster.local:8080, resolve: 10s}\n"
                  "      - {address: 127.0.0.1:81}\n");
    assert_string_equal(cfg->services[0].servers[0].host, "backend.default.svc.cluster.local");
    assert_int_equal(cfg->services[0].servers[0].port, 8080);
    assert_int_equal(cfg->services[0].servers[0].resolve_ms, 10000);
    assert_int_equal(cfg->services[0].servers[0].addr.len, 0);
    assert_null(cfg->services[0].servers[1].host);
    sl_config_free(cfg);
    expect_error(B "    read_servers: [{address: \"bad name:80\"}]\n", 4, 30,
                 "services.b.read_servers[0].address: bad address \"bad name:80\" (expected "
                 "IPv4:port, [IPv6]:port or name:port)");
    expect_error(B "    read_servers: [{address: name:0}]\n", 4, 30,
                 "services.b.read_servers[0].address: bad address \"name:0\" (expected "
                 "IPv4:port, [IPv6]:port or name:port)");
#undef B
}

static void test_yaml_syntax_errors(void **state)
{
    (void)state;
    expect_error("listen: [127.0.0.1:80\nworkers: 2\n", 2, 8,
                 "YAML syntax error: did not find expected ',' or ']' (while parsing a flow "
                 "sequence at line 1, column 9)");
    expect_error("a: b\n  c: d\n", 2, 4,
                 "YAML syntax error: mapping values are not allowed in this context");
    expect_error("a: *nowhere\n", 1, 4, "YAML syntax error: found undefined alias");
    expect_error("a: \"x\xff\"\n", 1, 6, "YAML error: invalid leading UTF-8 octet (byte 0xff)");
    expect_error("a: 1\n---\nb: 2\n", 2, 1, "a second YAML document (---): only one is allowed");
    expect_error("", 0, 0, "configuration is empty");
    expect_error("# only a comment\n\n", 0, 0, "configuration is empty");
    expect_error("---\n", 0, 0, "configuration is empty");
    expect_error("~\n", 0, 0, "configuration is empty");

    char deep[300];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    memcpy(deep + 200, "\n", 2);
    expect_error(deep, 1, 65, "nesting deeper than 64 levels");
}

static void test_several_errors(void **state)
{
    (void)state;
    static const char yaml[] = "listn: 1.2.3.4:80\n"                      /* 1 */
                               "workers: 0\n"                             /* 2 */
                               "cache: {redis: true}\n"                   /* 3 */
                               "services:\n"                              /* 4 */
                               "  blog:\n"                                /* 5 */
                               "    timeouts: {connect: 5x}\n"            /* 6 */
                               "    servers: [{address: local_host:80}]\n" /* 7 */
                               "routes:\n"                                /* 8 */
                               "  - match: {path_prefix: /}\n"            /* 9 */
                               "    service: blgo\n"                      /* 10 */
                               "  - match: {path_prefix: /x}\n";          /* 11 */
    sl_config_errors_t errs;
    assert_null(load(yaml, &errs));
    assert_int_equal(errs.n, 7);
    static const struct {
        int line, col;
        const char *msg;
    } want[] = {
        {1, 1, "unknown key \"listn\" in top level"},
        {2, 10, "workers: 0 is out of range (1..256 or auto)"},
        {3, 1, "cache.redis: needs a top-level redis: {address: ...}"},
        {6, 25,
         "services.blog.timeouts.connect: bad duration \"5x\" (expected e.g. 500ms, "
         "10s, 5m)"},
        {7, 25,
         "services.blog.servers[0].address: bad address \"local_host:80\" (expected "
         "IPv4:port, [IPv6]:port or name:port)"},
        {10, 14, "routes[0]: service \"blgo\" is not defined"},
        {11, 5, "routes[1]: needs a target: service or static"},
    };
    for (int i = 0; i < 7; i++) {
        assert_int_equal(errs.e[i].line, want[i].line);
        assert_int_equal(errs.e[i].col, want[i].col);
        assert_string_equal(errs.e[i].msg, want[i].msg);
    }

    /* Printing: FILE:LINE:COL: message, one per line. */
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    assert_non_null(f);
    sl_config_errors_print(f, "gw.yaml", &errs);
    fclose(f);
    assert_non_null(strstr(out, "gw.yaml:1:1: unknown key \"listn\" in top level\n"
                                "gw.yaml:2:10: workers: 0 is out of range (1..256 or auto)\n"));
    assert_non_null(strstr(out, "gw.yaml:11:5: routes[1]: needs a target: service or static\n"));
    int lines = 0;
    for (char *p = out; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 7);
    free(out);
}

static void test_error_overflow(void **state)
{
    (void)state;
    /* 100 routes, each with an unknown key: 64 kept, the rest counted. */
    size_t cap = 100 * 64 + 256, o = 0;
    char *yaml = malloc(cap);
    assert_non_null(yaml);
    o += (size_t)snprintf(yaml + o, cap - o, SVC "routes:\n");
    for (int i = 0; i < 100; i++)
        o += (size_t)snprintf(yaml + o, cap - o,
                              "  - {match: {path_prefix: /}, service: blog, x%d: 1}\n", i);
    sl_config_errors_t errs;
    assert_null(load(yaml, &errs));
    assert_int_equal(errs.n, SL_CONF_MAX_ERRORS);
    assert_int_equal(errs.dropped, 100 - SL_CONF_MAX_ERRORS);
    assert_string_equal(errs.e[0].msg, "unknown key \"x0\" in routes[0]");
    assert_int_equal(errs.e[0].line, 5);

    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    sl_config_errors_print(f, "c.yaml", &errs);
    fclose(f);
    assert_non_null(strstr(out, "c.yaml: 36 more errors not shown\n"));
    free(out);
    free(yaml);
}

static void test_bounds(void **state)
{
    (void)state;
    sl_config_errors_t errs;

    /* File size. */
    size_t big = (4u << 20) + 1;
    char *buf = malloc(big);
    assert_non_null(buf);
    memset(buf, '#', big);
    assert_null(sl_config_load_mem("big.yaml", buf, big, &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.e[0].msg, "file is larger than 4194304 bytes (4 MiB)");
    assert_int_equal(errs.e[0].line, 0);
    free(buf);

    /* String length: 4096 is fine, 4097 is not. */
    size_t n = 4200;
    buf = malloc(n);
    assert_non_null(buf);
    memcpy(buf, "access_log: /", 13);
    memset(buf + 13, 'a', 4095);
    memcpy(buf + 13 + 4095, "\n", 2);
    sl_config_t *cfg = load_ok(buf);
    assert_int_equal(strlen(cfg->access_log), 4096);
    sl_config_free(cfg);
    memcpy(buf + 13 + 4095, "a\n", 3);
    expect_error(buf, 1, 13, "access_log: value too long (4097 bytes, max 4096)");
    free(buf);

    /* Servers over all services are bounded even when aliases repeat one list. */
    n = 4096 * 24 + 1024;
    buf = malloc(n);
    assert_non_null(buf);
    size_t o = (size_t)snprintf(buf, n, "services:\n  a:\n    servers: &s [");
    for (int i = 0; i < 4096; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s{address: 1.1.1.1:%d}", i ? "," : "", i + 1);
    o += (size_t)snprintf(buf + o, n - o,
                          "]\n  b: {servers: *s}\n  c: {servers: *s}\n  d: {servers: *s}\n"
                          "  e: {servers: *s}\n");
    assert_null(load(buf, &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.e[0].msg,
                        "services.e.servers: too many entries in all (max 16384 over the file)");
    buf[o - strlen("  e: {servers: *s}\n")] = '\0';
    cfg = load_ok(buf);
    assert_int_equal(cfg->nservices, 4);
    assert_int_equal(cfg->services[3].nservers, 4096);
    sl_config_free(cfg);
    free(buf);

    /* Too many keys in one mapping. */
    n = 70 * 16 + 64;
    buf = malloc(n);
    assert_non_null(buf);
    o = (size_t)snprintf(buf, n, "limits:\n");
    for (int i = 0; i < 70; i++)
        o += (size_t)snprintf(buf + o, n - o, "  k%d: 1\n", i);
    expect_error(buf, 2, 3, "limits: too many keys (70, max 64)");
    free(buf);

    /* Control characters smuggled in through escapes. */
    expect_error("admin: {token_env: \"A\\0B\"}\n", 1, 20,
                 "admin.token_env: \"A\\x00B\" contains a control character");
}

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/test_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static const char yaml[] = "workers: 3\n";
    assert_int_equal(write(fd, yaml, sizeof(yaml) - 1), (ssize_t)(sizeof(yaml) - 1));
    close(fd);

    sl_config_errors_t errs;
    sl_config_t *cfg = sl_config_load(path, &errs);
    assert_non_null(cfg);
    assert_int_equal(errs.n, 0);
    assert_int_equal(cfg->workers, 3);
    assert_string_equal(cfg->path, path);
    sl_config_free(cfg);
    unlink(path);

    assert_null(sl_config_load(path, &errs));
    assert_int_equal(errs.n, 1);
    assert_int_equal(errs.e[0].line, 0);
    assert_string_equal(errs.e[0].msg, "cannot open: No such file or directory");

    assert_null(sl_config_load("/", &errs));
    assert_string_equal(errs.e[0].msg, "cannot read: is a directory");

    /* NULL errs and NULL cfg are accepted. */
    assert_null(sl_config_load_mem("x", "workers: 0\n", 11, NULL));
    sl_config_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_listen_forms),
        cmocka_unit_test(test_scalar_forms),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_addr),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_route_errors),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_static_keys),
        cmocka_unit_test(test_cache_keys),
        cmocka_unit_test(test_alerts),
        cmocka_unit_test(test_autoscale),
        cmocka_unit_test(test_alert_expr),
        cmocka_unit_test(test_balancing_keys),
        cmocka_unit_test(test_rate_limit_keys),
        cmocka_unit_test(test_yaml_syntax_errors),
        cmocka_unit_test(test_several_errors),
        cmocka_unit_test(test_error_overflow),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
