/* test_tls.c - unit tests for src/http/tls.c and the loader's listen[].tls (config.c):
 * SNI name matching, the tls: configuration (good and bad, with exact FILE:LINE:COL
 * messages), and a handshake through the memory-BIO connection API against an OpenSSL
 * client in the same process (SNI choice, ALPN, data both ways). No sockets: the
 * certificates are made here with OpenSSL into a temporary directory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "../../src/core/config.h"
#include "../../src/http/tls.h"

static char dir[64];

/* A self-signed P-256 certificate for cn with the given DNS SAN (NULL: none), written
 * to dir/name.crt and dir/name.key. */
static void make_cert(const char *name, const char *cn, const char *san)
{
    char path[256];
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(k);
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 30);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    if (san) {
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
        assert_non_null(ext);
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    snprintf(path, sizeof(path), "%s/%s.crt", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    snprintf(path, sizeof(path), "%s/%s.key", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sluice-test-tls-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    make_cert("d", "default.test", "DNS:default.test");
    make_cert("a", "a.test", "DNS:a.test,DNS:www.a.test");
    make_cert("w", "wild", "DNS:*.b.test");
    make_cert("cn", "cn-only.test", NULL);
    char path[128];
    snprintf(path, sizeof(path), "%s/garbage.pem", dir);
    FILE *f = fopen(path, "w");
    fputs("not PEM at all\n", f);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- SNI matching ---- */

static int match(const char *pattern, const char *host)
{
    return sl_tls_name_match(pattern, host, strlen(host));
}

static void test_name_match(void **state)
{
    (void)state;
    assert_true(match("example.com", "example.com"));
    assert_true(match("example.com", "EXAMPLE.Com"));
    assert_false(match("example.com", "www.example.com"));
    assert_false(match("example.com", "example.co"));
    assert_false(match("example.com", "example.comx"));
    assert_true(match("*.example.com", "www.example.com"));
    assert_true(match("*.example.com", "WWW.EXAMPLE.COM"));
    assert_false(match("*.example.com", "example.com"));     /* one label is required */
    assert_false(match("*.example.com", ".example.com"));    /* ... and not empty */
    assert_false(match("*.example.com", "a.b.example.com")); /* ... and only one */
    assert_false(match("*.example.com", "wwwexample.com"));
    assert_false(match("*.example.com", "www.example.org"));
    assert_false(match("", "example.com"));
    assert_false(match("example.com", ""));
    assert_false(match("*.", "a."));
}

static void test_pick(void **state)
{
    (void)state;
    sl_tls_name_t names[] = {
        {(char *)"*.a.test", 1}, {(char *)"www.a.test", 2}, {(char *)"b.test", 3}};
#define PICK(n, host) sl_tls_pick(names, n, host, strlen(host))
    assert_int_equal(PICK(3, "www.a.test"), 2); /* exact wins */
    assert_int_equal(PICK(3, "api.a.test"), 1);
    assert_int_equal(PICK(3, "B.TEST"), 3);
    assert_int_equal(PICK(3, "b.test."), 3); /* trailing dot */
    assert_int_equal(PICK(3, "x.y.a.test"), 0);
    assert_int_equal(PICK(3, "other.test"), 0); /* default */
    assert_int_equal(PICK(0, "b.test"), 0);
#undef PICK
}

/* ---- configuration ---- */

#define SVC "services:\n  o:\n    servers: [{address: 127.0.0.1:1}]\n"

static sl_config_t *load(const char *yaml, sl_config_errors_t *errs)
{
    return sl_config_load_mem("test.yaml", yaml, strlen(yaml), errs);
}

static sl_config_t *load_ok(const char *yaml)
{
    sl_config_errors_t errs;
    sl_config_t *cfg = load(yaml, &errs);
    for (int i = 0; i < errs.n; i++)
        print_error("unexpected error %d:%d: %s\n", errs.e[i].line, errs.e[i].col, errs.e[i].msg);
    assert_non_null(cfg);
    return cfg;
}

static void expect_error(const char *yaml, int line, int col, const char *msg)
{
    sl_config_errors_t errs;
    sl_config_t *cfg = load(yaml, &errs);
    for (int i = 0; i < errs.n; i++)
        print_message("got %d:%d: %s\n", errs.e[i].line, errs.e[i].col, errs.e[i].msg);
    sl_config_free(cfg);
    assert_null(cfg);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.e[0].msg, msg);
    assert_int_equal(errs.e[0].line, line);
    assert_int_equal(errs.e[0].col, col);
}

static void test_config_good(void **state)
{
    (void)state;
    char y[1024];
    snprintf(y, sizeof(y),
             "listen:\n  - 127.0.0.1:80\n  - {address: 127.0.0.1:443, tls: {cert: %s/a.crt, key: "
             "%s/a.key}}\n" SVC,
             dir, dir);
    sl_config_t *cfg = load_ok(y);
    assert_int_equal(cfg->nlisten, 2);
    assert_null(cfg->listen_tls[0]);
    const sl_tls_conf_t *t = cfg->listen_tls[1];
    assert_non_null(t);
    assert_int_equal(t->ncerts, 1);
    assert_true(strstr(t->certs[0].cert.path, "/a.crt") != NULL);
    assert_true(strstr(t->certs[0].key.path, "/a.key") != NULL);
    assert_null(t->cert.path); /* folded into certs[0] */
    assert_int_equal(t->nalpn, 2); /* default: h2 preferred, then http/1.1 */
    assert_int_equal(t->alpn[0], SL_ALPN_H2);
    assert_int_equal(t->alpn[1], SL_ALPN_HTTP11);
    sl_config_free(cfg);

    snprintf(y, sizeof(y),
             "listen:\n  - address: 127.0.0.1:443\n    tls:\n      alpn: [http/1.1]\n"
             "      certificates:\n        - {cert: %s/d.crt, key: %s/d.key}\n"
             "        - {cert: %s/w.crt, key: %s/w.key}\n" SVC,
             dir, dir, dir, dir);
    cfg = load_ok(y);
    t = cfg->listen_tls[0];
    assert_int_equal(t->ncerts, 2);
    assert_true(strstr(t->certs[1].cert.path, "/w.crt") != NULL);
    assert_int_equal(t->certs[1].key.line, 7);
    sl_config_free(cfg);
}

static void test_config_bad(void **state)
{
    (void)state;
    char y[1024], m[512];

    /* Shape errors, before any file is read. */
    expect_error("listen:\n  - {address: 127.0.0.1:1, tls: {}}\n" SVC, 2, 33,
                 "listen[0].tls: needs cert and key, or certificates");
    expect_error("listen:\n  - {address: 127.0.0.1:1, tls: {cert: x}}\n" SVC, 2, 33,
                 "listen[0].tls: cert without key");
    expect_error("listen:\n  - {address: 127.0.0.1:1, tls: {cert: x, key: y, certificates: "
                 "[{cert: x, key: y}]}}\n" SVC,
                 2, 33, "listen[0].tls: give either cert and key or certificates, not both");
    expect_error("listen:\n  - {address: 127.0.0.1:1, tls: {certificates: []}}\n" SVC, 2, 48,
                 "listen[0].tls.certificates: must not be empty");
    expect_error("listen:\n  - {address: 127.0.0.1:1, tls: {certificates: [{cert: x}]}}\n" SVC, 2,
                 49, "listen[0].tls.certificates[0]: missing required key \"key\"");
    expect_error("listen:\n  - {address: 127.0.0.1:1, tls: {cert: x, key: y, alpn: [spdy]}}\n" SVC,
                 2, 58, "listen[0].tls.alpn[0]: unknown value \"spdy\" (expected http/1.1, h2)");
    expect_error("listen:\n  - {address: 127.0.0.1:1, tls: {cert: x, key: y, alpn: [http/1.1, "
                 "http/1.1]}}\n" SVC,
                 2, 68, "listen[0].tls.alpn[1]: listed twice");
    expect_error("listen:\n  - {address: 127.0.0.1:1, tls: {cert: x, key: y, ciphers: z}}\n" SVC, 2,
                 51, "unknown key \"ciphers\" in listen[0].tls");

    /* Files: missing, not PEM, key of another certificate. */
    snprintf(y, sizeof(y),
             "listen:\n  - address: 127.0.0.1:1\n    tls:\n      cert: %s/a.crt\n"
             "      key: %s/none.key\n" SVC,
             dir, dir);
    snprintf(m, sizeof(m), "listen[0].tls.key: cannot read %s/none.key: No such file or directory",
             dir);
    expect_error(y, 5, 12, m);
    snprintf(y, sizeof(y),
             "listen:\n  - address: 127.0.0.1:1\n    tls:\n      cert: %s/garbage.pem\n"
             "      key: %s/a.key\n" SVC,
             dir, dir);
    snprintf(m, sizeof(m), "listen[0].tls.cert: %s/garbage.pem holds no PEM certificate", dir);
    expect_error(y, 4, 13, m);
    snprintf(y, sizeof(y),
             "listen:\n  - address: 127.0.0.1:1\n    tls:\n      cert: %s/a.crt\n"
             "      key: %s/garbage.pem\n" SVC,
             dir, dir);
    snprintf(m, sizeof(m),
             "listen[0].tls.key: %s/garbage.pem holds no PEM private key (or the key is encrypted)",
             dir);
    expect_error(y, 5, 12, m);
    snprintf(y, sizeof(y),
             "listen:\n  - address: 127.0.0.1:1\n    tls:\n      certificates:\n"
             "        - cert: %s/a.crt\n          key: %s/a.key\n"
             "        - cert: %s/a.crt\n          key: %s/d.key\n" SVC,
             dir, dir, dir, dir);
    snprintf(m, sizeof(m),
             "listen[0].tls.certificates[1].key: %s/d.key does not match the certificate in "
             "%s/a.crt",
             dir, dir);
    expect_error(y, 8, 16, m);
    snprintf(y, sizeof(y),
             "listen:\n  - {address: 127.0.0.1:1, tls: {cert: /dev/zero, key: %s/a.key}}\n" SVC,
             dir);
    expect_error(y, 2, 40, "listen[0].tls.cert: /dev/zero is not a regular file of at most 1 MiB");
}

/* ---- a handshake through the memory-BIO API ---- */

/* Moves bytes between the client's BIOs and the server session until neither side
 * makes progress; returns the server's last sl_tls_read result. */
static long pump(SSL *cl, BIO *c_in, BIO *c_out, sl_tls_conn_t *srv, char *out, size_t cap)
{
    char buf[16384];
    long last = SL_AGAIN;
    for (int round = 0; round < 20; round++) {
        int moved = 0, n;
        SSL_do_handshake(cl);
        while ((n = BIO_read(c_out, buf, sizeof(buf))) > 0) {
            assert_int_equal(sl_tls_feed(srv, buf, (size_t)n), 0);
            moved = 1;
        }
        last = sl_tls_read(srv, out, cap);
        if (last > 0)
            return last;
        size_t k;
        while ((k = sl_tls_out_take(srv, buf, sizeof(buf))) > 0) {
            BIO_write(c_in, buf, (int)k);
            moved = 1;
        }
        if (!moved)
            break;
    }
    return last;
}

static void handshake(sl_tls_listener_t *l, const char *sni, const char *want_cn)
{
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    SSL *cl = SSL_new(cctx);
    BIO *c_in = BIO_new(BIO_s_mem()), *c_out = BIO_new(BIO_s_mem());
    SSL_set_bio(cl, c_in, c_out);
    SSL_set_connect_state(cl);
    if (sni)
        SSL_set_tlsext_host_name(cl, sni);
    static const unsigned char alpn[] = "\x02h2\x08http/1.1";
    SSL_set_alpn_protos(cl, alpn, sizeof(alpn) - 1);
    sl_tls_conn_t *srv = sl_tls_conn_new(l);
    assert_non_null(srv);
    char out[64];
    long r = pump(cl, c_in, c_out, srv, out, sizeof(out));
    assert_int_equal(r, SL_AGAIN);
    assert_true(sl_tls_established(srv));
    assert_int_equal(SSL_is_init_finished(cl), 1);
    X509 *peer = SSL_get1_peer_certificate(cl);
    char cn[64] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof(cn));
    X509_free(peer);
    assert_string_equal(cn, want_cn);
    const unsigned char *sel;
    unsigned len;
    SSL_get0_alpn_selected(cl, &sel, &len);
    assert_int_equal(len, 2);
    assert_memory_equal(sel, "h2", 2); /* the default alpn prefers h2 */
    /* Application data both ways. */
    assert_int_equal(SSL_write(cl, "GET / HTTP/1.1\r\n", 16), 16);
    r = pump(cl, c_in, c_out, srv, out, sizeof(out));
    assert_int_equal(r, 16);
    assert_memory_equal(out, "GET / HTTP/1.1\r\n", 16);
    assert_int_equal(sl_tls_write(srv, "HTTP/1.1 200 OK\r\n", 17), 0);
    char buf[16384], got[32];
    size_t k;
    while ((k = sl_tls_out_take(srv, buf, sizeof(buf))) > 0)
        BIO_write(c_in, buf, (int)k);
    assert_int_equal(SSL_read(cl, got, sizeof(got)), 17);
    assert_memory_equal(got, "HTTP/1.1 200 OK\r\n", 17);
    /* A large response, then the buffers are trimmed (new BIOs): the session goes on. */
    static char big[300 * 1024];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)('a' + i % 26);
    assert_int_equal(sl_tls_write(srv, big, sizeof(big)), 0);
    size_t got_big = 0;
    while ((k = sl_tls_out_take(srv, buf, sizeof(buf))) > 0) {
        BIO_write(c_in, buf, (int)k);
        int n;
        while ((n = SSL_read(cl, buf, sizeof(buf))) > 0) {
            assert_memory_equal(buf, big + got_big, (size_t)n);
            got_big += (size_t)n;
        }
    }
    assert_int_equal(got_big, sizeof(big));
    sl_tls_trim(srv);
    assert_int_equal(SSL_write(cl, "GET /2 HTTP/1.1\r\n", 18), 18);
    r = pump(cl, c_in, c_out, srv, out, sizeof(out));
    assert_int_equal(r, 18);
    assert_memory_equal(out, "GET /2 HTTP/1.1\r\n", 18);
    /* close_notify from the client reads as EOF on the server. */
    SSL_shutdown(cl);
    r = pump(cl, c_in, c_out, srv, out, sizeof(out));
    assert_int_equal(r, SL_TLS_EOF);
    sl_tls_conn_free(srv);
    SSL_free(cl);
    SSL_CTX_free(cctx);
}

static void test_handshake_sni_alpn(void **state)
{
    (void)state;
    char y[1024], err[256];
    snprintf(y, sizeof(y),
             "listen:\n  - address: 127.0.0.1:443\n    tls:\n      certificates:\n"
             "        - {cert: %s/d.crt, key: %s/d.key}\n"
             "        - {cert: %s/a.crt, key: %s/a.key}\n"
             "        - {cert: %s/w.crt, key: %s/w.key}\n"
             "        - {cert: %s/cn.crt, key: %s/cn.key}\n" SVC,
             dir, dir, dir, dir, dir, dir, dir, dir);
    sl_config_t *cfg = load_ok(y);
    sl_tls_listener_t *l = sl_tls_listener_new("test", cfg->listen_tls[0], err, sizeof(err));
    assert_non_null(l);
    handshake(l, "www.a.test", "a.test");
    handshake(l, "x.b.test", "wild");
    handshake(l, "cn-only.test", "cn-only.test"); /* no SAN: the CN is the name */
    handshake(l, "nothing.test", "default.test");
    handshake(l, NULL, "default.test");
    sl_tls_listener_free(l);
    sl_config_free(cfg);
}

/* A TLS 1.2 client asking to renegotiate is refused: its new handshake never completes.
 * (OpenSSL 3 refuses client-initiated renegotiation by default too; tls.c also sets
 * SSL_OP_NO_RENEGOTIATION, so this holds whatever the library's default becomes.) */
static void test_no_renegotiation(void **state)
{
    (void)state;
    char y[512], err[256], out[64];
    snprintf(y, sizeof(y),
             "listen:\n  - {address: 127.0.0.1:1, tls: {cert: %s/a.crt, key: %s/a.key}}\n" SVC,
             dir, dir);
    sl_config_t *cfg = load_ok(y);
    sl_tls_listener_t *l = sl_tls_listener_new("test", cfg->listen_tls[0], err, sizeof(err));
    assert_non_null(l);
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION);
    SSL *cl = SSL_new(cctx);
    BIO *c_in = BIO_new(BIO_s_mem()), *c_out = BIO_new(BIO_s_mem());
    SSL_set_bio(cl, c_in, c_out);
    SSL_set_connect_state(cl);
    sl_tls_conn_t *srv = sl_tls_conn_new(l);
    assert_int_equal(pump(cl, c_in, c_out, srv, out, sizeof(out)), SL_AGAIN);
    assert_true(sl_tls_established(srv));
    assert_int_equal(SSL_version(cl), TLS1_2_VERSION);
    assert_int_equal(SSL_renegotiate(cl), 1);
    long r = pump(cl, c_in, c_out, srv, out, sizeof(out));
    assert_true(r == SL_AGAIN || r == SL_TLS_ERROR);
    /* The server answered with an alert, not a new handshake. */
    char got[16];
    int n = SSL_read(cl, got, sizeof(got));
    assert_true(n <= 0);
    assert_int_equal(SSL_get_error(cl, n) == SSL_ERROR_SSL || SSL_renegotiate_pending(cl), 1);
    sl_tls_conn_free(srv);
    SSL_free(cl);
    SSL_CTX_free(cctx);
    sl_tls_listener_free(l);
    sl_config_free(cfg);
}

/* A plain HTTP request where a ClientHello belongs is recognised as such. */
static void test_plain_http_detected(void **state)
{
    (void)state;
    char y[512], err[256], out[16];
    snprintf(y, sizeof(y),
             "listen:\n  - {address: 127.0.0.1:1, tls: {cert: %s/a.crt, key: %s/a.key}}\n" SVC, dir,
             dir);
    sl_config_t *cfg = load_ok(y);
    sl_tls_listener_t *l = sl_tls_listener_new("test", cfg->listen_tls[0], err, sizeof(err));
    assert_non_null(l);
    sl_tls_conn_t *t = sl_tls_conn_new(l);
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(sl_tls_feed(t, req, strlen(req)), 0);
    assert_int_equal(sl_tls_read(t, out, sizeof(out)), SL_TLS_NOT_TLS);
    assert_int_equal(sl_tls_out_pending(t), 0); /* nothing is answered */
    sl_tls_conn_free(t);
    sl_tls_listener_free(l);
    sl_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_match),
        cmocka_unit_test(test_pick),
        cmocka_unit_test(test_config_good),
        cmocka_unit_test(test_config_bad),
        cmocka_unit_test(test_handshake_sni_alpn),
        cmocka_unit_test(test_no_renegotiation),
        cmocka_unit_test(test_plain_http_detected),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
