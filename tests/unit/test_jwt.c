/* test_jwt.c - JWT verification: tokens are signed here with OpenSSL (HMAC, a fresh RSA
 * 2048 key and a fresh EC P-256 key), then checked against sl_jwt_verify: the three
 * algorithms, tampering, alg confusion, time claims, the user claim, malformed input,
 * concurrent use, and the Authorization header parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/ecdsa.h>
#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "../../src/policy/jwt.h"

#define NOW 1700000000ull
#define SECRET "0123456789abcdef0123456789abcdef"

/* Header JSON for each algorithm, as most libraries write it. */
#define H_HS "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define H_RS "{\"alg\":\"RS256\",\"typ\":\"JWT\"}"
#define H_ES "{\"alg\":\"ES256\",\"typ\":\"JWT\"}"
#define C_ALICE "{\"sub\":\"alice\",\"exp\":1700000600}"

enum sign_kind { S_HMAC, S_PKEY, S_NONE, S_ES_DER };

static EVP_PKEY *g_rsa, *g_ec;
static char *g_rsa_pem, *g_ec_pem, *g_rsa_pkcs1_pem;

/* ---- token construction ------------------------------------------------------------ */

static size_t b64url(const void *in, size_t n, char *out)
{
    size_t o = sl_jwt_b64url(in, n, out);
    out[o] = '\0';
    return o;
}

static size_t sign_pkey(EVP_PKEY *k, const char *msg, size_t n, uint8_t *sig, size_t cap)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_non_null(md);
    assert_int_equal(EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, k, NULL), 1);
    size_t len = cap;
    assert_int_equal(EVP_DigestSign(md, sig, &len, (const unsigned char *)msg, n), 1);
    EVP_MD_CTX_free(md);
    return len;
}

/* ECDSA-Sig-Value (DER) to the JWS form, R||S with each half left-padded to 32 bytes. */
static void der_to_raw(const uint8_t *der, size_t n, uint8_t raw[64])
{
    const unsigned char *p = der;
    ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)n);
    assert_non_null(s);
    const BIGNUM *r, *ss;
    ECDSA_SIG_get0(s, &r, &ss);
    assert_int_equal(BN_bn2binpad(r, raw, 32), 32);
    assert_int_equal(BN_bn2binpad(ss, raw + 32, 32), 32);
    ECDSA_SIG_free(s);
}

/* header.payload.signature into out (a static buffer, valid until the next call). */
static const char *token_with(const char *hdr, const char *claims, enum sign_kind kind,
                              const void *key, size_t keylen)
{
    static char out[16384];
    size_t o = b64url(hdr, strlen(hdr), out);
    out[o++] = '.';
    o += b64url(claims, strlen(claims), out + o);
    uint8_t sig[1024], raw[64];
    size_t slen = 0;
    unsigned int hl = 0;
    switch (kind) {
    case S_HMAC:
        assert_non_null(
            HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)out, o, sig, &hl));
        slen = hl;
        break;
    case S_PKEY:
    case S_ES_DER:
        slen = sign_pkey((EVP_PKEY *)key, out, o, sig, sizeof sig);
        if (kind == S_PKEY && EVP_PKEY_is_a((EVP_PKEY *)key, "EC")) {
            der_to_raw(sig, slen, raw);
            memcpy(sig, raw, 64);
            slen = 64;
        }
        break;
    case S_NONE:
        break;
    }
    out[o++] = '.';
    b64url(sig, slen, out + o);
    return out;
}

static const char *hs(const char *hdr, const char *claims)
{
    return token_with(hdr, claims, S_HMAC, SECRET, strlen(SECRET));
}

static char *pem_of(EVP_PKEY *k, const char *structure)
{
    OSSL_ENCODER_CTX *e =
        OSSL_ENCODER_CTX_new_for_pkey(k, EVP_PKEY_PUBLIC_KEY, "PEM", structure, NULL);
    assert_non_null(e);
    unsigned char *data = NULL;
    size_t n = 0;
    assert_int_equal(OSSL_ENCODER_to_data(e, &data, &n), 1);
    OSSL_ENCODER_CTX_free(e);
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, data, n);
    s[n] = '\0';
    OPENSSL_free(data);
    return s;
}

/* ---- verifiers ---------------------------------------------------------------------- */

static sl_jwt_t *mk(unsigned algs, const char *secret, const char *pem, const char *claim,
                    int has_leeway, uint64_t leeway)
{
    sl_jwt_conf_t c = {
        .secret = secret,
        .secret_len = secret ? strlen(secret) : 0,
        .public_key_pem = pem,
        .algorithms = algs,
        .user_claim = claim,
        .leeway_s = leeway,
        .has_leeway = has_leeway,
    };
    char err[160] = "";
    sl_jwt_t *j = sl_jwt_new(&c, err, sizeof err);
    if (j == NULL)
        print_error("sl_jwt_new: %s\n", err);
    assert_non_null(j);
    return j;
}

static sl_jwt_t *hs_verifier(void)
{
    return mk(SL_JWT_HS256, SECRET, NULL, NULL, 0, 0);
}

static int verify(const sl_jwt_t *j, const char *tok, char *out, size_t cap)
{
    return sl_jwt_verify(j, tok, strlen(tok), NOW, out, cap);
}

static int setup_keys(void **state)
{
    (void)state;
    g_rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    g_ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (g_rsa == NULL || g_ec == NULL)
        return -1;
    g_rsa_pem = pem_of(g_rsa, "SubjectPublicKeyInfo");
    g_rsa_pkcs1_pem = pem_of(g_rsa, "type-specific");
    g_ec_pem = pem_of(g_ec, "SubjectPublicKeyInfo");
    return 0;
}

static int teardown_keys(void **state)
{
    (void)state;
    EVP_PKEY_free(g_rsa);
    EVP_PKEY_free(g_ec);
    free(g_rsa_pem);
    free(g_rsa_pkcs1_pem);
    free(g_ec_pem);
    return 0;
}

/* ---- valid tokens ------------------------------------------------------------------- */

static void test_hs256_valid(void **state)
{
    (void)state;
    sl_jwt_t *j = hs_verifier();
    char out[64];
    assert_int_equal(verify(j, hs(H_HS, C_ALICE), out, sizeof out), 5);
    assert_string_equal(out, "alice");
    /* no typ, no exp, other claims and whitespace are fine */
    assert_int_equal(
        verify(j, hs("{\"alg\":\"HS256\"}", " {\"iss\":\"x\", \"sub\":\"bob\"} "), out, sizeof out),
        3);
    assert_string_equal(out, "bob");
    assert_int_equal(verify(j, hs("{\"typ\":\"jwt\",\"alg\":\"HS256\"}", C_ALICE), out, sizeof out),
                     5);
    /* out NULL: only the length */
    assert_int_equal(verify(j, hs(H_HS, C_ALICE), NULL, 0), 5);
    /* escapes and UTF-8 in the claim come out decoded */
    assert_int_equal(verify(j, hs(H_HS, "{\"sub\":\"caf\\u00e9/\\\"x\\\"\"}"), out, sizeof out), 9);
    assert_string_equal(out, "caf\xc3\xa9/\"x\"");
    sl_jwt_free(j);
}

static void test_rs256_valid(void **state)
{
    (void)state;
    char out[64];
    sl_jwt_t *j = mk(SL_JWT_RS256, NULL, g_rsa_pem, NULL, 0, 0);
    const char *t = token_with(H_RS, C_ALICE, S_PKEY, g_rsa, 0);
    assert_int_equal(verify(j, t, out, sizeof out), 5);
    assert_string_equal(out, "alice");
    sl_jwt_free(j);
    /* the PKCS#1 "RSA PUBLIC KEY" PEM form is read too */
    j = mk(SL_JWT_RS256, NULL, g_rsa_pkcs1_pem, NULL, 0, 0);
    assert_int_equal(verify(j, t, out, sizeof out), 5);
    sl_jwt_free(j);
}

static void test_es256_valid(void **state)
{
    (void)state;
    char out[64];
    sl_jwt_t *j = mk(SL_JWT_ES256, NULL, g_ec_pem, NULL, 0, 0);
    /* several signatures: R or S with a high bit or leading zero bytes exercise the DER
     * conversion's padding both ways */
    for (int i = 0; i < 32; i++) {
        char claims[96], want[16];
        snprintf(want, sizeof want, "u%d", i);
        snprintf(claims, sizeof claims, "{\"sub\":\"%s\",\"exp\":1700000600}", want);
        const char *t = token_with(H_ES, claims, S_PKEY, g_ec, 0);
        assert_int_equal(verify(j, t, out, sizeof out), (int)strlen(want));
        assert_string_equal(out, want);
    }
    sl_jwt_free(j);
}

static void test_mixed_verifier(void **state)
{
    (void)state;
    char out[64];
    sl_jwt_t *j = mk(SL_JWT_HS256 | SL_JWT_ES256, SECRET, g_ec_pem, NULL, 0, 0);
    assert_int_equal(verify(j, hs(H_HS, C_ALICE), out, sizeof out), 5);
    assert_int_equal(verify(j, token_with(H_ES, C_ALICE, S_PKEY, g_ec, 0), out, sizeof out), 5);
    assert_int_equal(verify(j, token_with(H_RS, C_ALICE, S_PKEY, g_rsa, 0), out, sizeof out),
                     SL_EINVAL);
    sl_jwt_free(j);
}

/* The common header forms are matched byte-for-byte (no parse); every other spelling is
 * parsed. Both must agree, and the match must not let a disallowed alg through. */
static void test_header_forms(void **state)
{
    (void)state;
    char out[64];
    sl_jwt_t *j = hs_verifier();
    static const char *const ok[] = {
        H_HS,
        "{\"typ\":\"JWT\",\"alg\":\"HS256\"}",
        "{\"alg\":\"HS256\"}",
        "{\"alg\": \"HS256\", \"typ\": \"JWT\"}",
        "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"k1\"}",
        "{\"alg\":\"HS\\u0032\\u0035\\u0036\"}",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(ok); i++) {
        assert_int_equal(verify(j, hs(ok[i], C_ALICE), out, sizeof out), 5);
        assert_int_equal(verify(j, token_with(ok[i], C_ALICE, S_HMAC, "x", 1), out, sizeof out),
                         SL_EINVAL);
    }
    /* the RS256 and ES256 forms, HMAC-signed, against an HS256 verifier */
    assert_int_equal(verify(j, hs("{\"typ\":\"JWT\",\"alg\":\"RS256\"}", C_ALICE), out, sizeof out),
                     SL_EINVAL);
    assert_int_equal(verify(j, hs("{\"alg\":\"ES256\"}", C_ALICE), out, sizeof out), SL_EINVAL);
    sl_jwt_free(j);
    /* and each HS256 form against an RS256 verifier */
    j = mk(SL_JWT_RS256, NULL, g_rsa_pem, NULL, 0, 0);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(verify(j, hs(ok[i], C_ALICE), out, sizeof out), SL_EINVAL);
    const char *rs = token_with("{\"alg\":\"RS256\"}", C_ALICE, S_PKEY, g_rsa, 0);
    assert_int_equal(verify(j, rs, out, sizeof out), 5);
    sl_jwt_free(j);
}

/* ---- tampering ---------------------------------------------------------------------- */

/* Replace the character at i with another base64url character (decoding stays valid
 * when i is not the part's last character). */
static void flip(char *t, size_t i)
{
    t[i] = t[i] == 'A' ? 'B' : 'A';
}

static void test_tampered(void **state)
{
    (void)state;
    char out[64], t[4096];
    sl_jwt_t *j = hs_verifier();
    assert_int_equal(
        verify(j, token_with(H_HS, C_ALICE, S_HMAC, "wrong-secret", 12), out, sizeof out),
        SL_EINVAL);

    strcpy(t, hs(H_HS, C_ALICE));
    flip(t, strlen(t) - 5); /* signature */
    assert_int_equal(verify(j, t, out, sizeof out), SL_EINVAL);

    strcpy(t, hs(H_HS, C_ALICE));
    flip(t, (size_t)(strchr(t, '.') - t) + 3); /* payload */
    assert_int_equal(verify(j, t, out, sizeof out), SL_EINVAL);

    strcpy(t, hs(H_HS, C_ALICE));
    t[strlen(t) - 43] = '\0'; /* signature cut to 0 bytes, then a truncated one */
    assert_int_equal(verify(j, t, out, sizeof out), SL_EINVAL);
    strcpy(t, hs(H_HS, C_ALICE));
    t[strlen(t) - 3] = '\0';
    assert_int_equal(verify(j, t, out, sizeof out), SL_EINVAL);
    sl_jwt_free(j);

    j = mk(SL_JWT_RS256, NULL, g_rsa_pem, NULL, 0, 0);
    strcpy(t, token_with(H_RS, C_ALICE, S_PKEY, g_rsa, 0));
    flip(t, strlen(t) - 10);
    assert_int_equal(verify(j, t, out, sizeof out), SL_EINVAL);
    strcpy(t, token_with(H_RS, C_ALICE, S_PKEY, g_rsa, 0));
    flip(t, (size_t)(strchr(t, '.') - t) + 3);
    assert_int_equal(verify(j, t, out, sizeof out), SL_EINVAL);
    sl_jwt_free(j);

    j = mk(SL_JWT_ES256, NULL, g_ec_pem, NULL, 0, 0);
    strcpy(t, token_with(H_ES, C_ALICE, S_PKEY, g_ec, 0));
    flip(t, strlen(t) - 10);
    assert_int_equal(verify(j, t, out, sizeof out), SL_EINVAL);
    strcpy(t, token_with(H_ES, C_ALICE, S_PKEY, g_ec, 0));
    flip(t, (size_t)(strchr(t, '.') - t) + 3);
    assert_int_equal(verify(j, t, out, sizeof out), SL_EINVAL);
    /* ES256 signature in DER instead of R||S */
    assert_int_equal(verify(j, token_with(H_ES, C_ALICE, S_ES_DER, g_ec, 0), out, sizeof out),
                     SL_EINVAL);
    /* R = S = 0 */
    strcpy(t, token_with(H_ES, C_ALICE, S_NONE, NULL, 0));
    strcat(
        t,
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_int_equal(verify(j, t, out, sizeof out), SL_EINVAL);
    sl_jwt_free(j);
}

/* ---- algorithm rules ---------------------------------------------------------------- */

static void test_alg_none_and_unknown(void **state)
{
    (void)state;
    char out[64];
    sl_jwt_t *j = hs_verifier();
    static const char *const hdrs[] = {
        "{\"alg\":\"none\"}",  "{\"alg\":\"None\"}",   "{\"alg\":\"NONE\"}", "{\"alg\":\"HS384\"}",
        "{\"alg\":\"hs256\"}", "{\"alg\":\"HS256 \"}", "{\"alg\":\"\"}",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(hdrs); i++) {
        assert_int_equal(verify(j, token_with(hdrs[i], C_ALICE, S_NONE, NULL, 0), out, sizeof out),
                         SL_EINVAL);
        assert_int_equal(verify(j, hs(hdrs[i], C_ALICE), out, sizeof out), SL_EINVAL);
    }
    /* "alg" missing or not a string: malformed */
    assert_int_equal(verify(j, hs("{\"typ\":\"JWT\"}", C_ALICE), out, sizeof out), SL_EBADMSG);
    assert_int_equal(verify(j, hs("{\"alg\":null}", C_ALICE), out, sizeof out), SL_EBADMSG);
    assert_int_equal(verify(j, hs("{\"alg\":[\"HS256\"]}", C_ALICE), out, sizeof out), SL_EBADMSG);
    /* a duplicate "alg" (one parser sees HS256, another none) */
    assert_int_equal(
        verify(j, hs("{\"alg\":\"HS256\",\"alg\":\"none\"}", C_ALICE), out, sizeof out),
        SL_EBADMSG);
    /* typ other than JWT, and crit */
    assert_int_equal(verify(j, hs("{\"alg\":\"HS256\",\"typ\":\"JWE\"}", C_ALICE), out, sizeof out),
                     SL_EINVAL);
    assert_int_equal(verify(j, hs("{\"alg\":\"HS256\",\"typ\":1}", C_ALICE), out, sizeof out),
                     SL_EINVAL);
    assert_int_equal(verify(j, hs("{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}", C_ALICE),
                            out, sizeof out),
                     SL_EINVAL);
    /* an RS256 or ES256 token against an HS256-only verifier */
    assert_int_equal(verify(j, token_with(H_RS, C_ALICE, S_PKEY, g_rsa, 0), out, sizeof out),
                     SL_EINVAL);
    assert_int_equal(verify(j, token_with(H_ES, C_ALICE, S_PKEY, g_ec, 0), out, sizeof out),
                     SL_EINVAL);
    sl_jwt_free(j);
}

static void test_key_confusion(void **state)
{
    (void)state;
    char out[64];
    /* HS256 token against an RS256-only verifier, signed with a plain secret and with
     * the verifier's own public key PEM as the HMAC secret (the classic attack) */
    sl_jwt_t *j = mk(SL_JWT_RS256, NULL, g_rsa_pem, NULL, 0, 0);
    assert_int_equal(verify(j, hs(H_HS, C_ALICE), out, sizeof out), SL_EINVAL);
    const char *forged = token_with(H_HS, C_ALICE, S_HMAC, g_rsa_pem, strlen(g_rsa_pem));
    assert_int_equal(verify(j, forged, out, sizeof out), SL_EINVAL);
    /* ES256 header on an RSA verifier, RS256 header on an EC verifier */
    assert_int_equal(verify(j, token_with(H_ES, C_ALICE, S_PKEY, g_ec, 0), out, sizeof out),
                     SL_EINVAL);
    sl_jwt_free(j);
    j = mk(SL_JWT_ES256, NULL, g_ec_pem, NULL, 0, 0);
    assert_int_equal(verify(j, token_with(H_RS, C_ALICE, S_PKEY, g_rsa, 0), out, sizeof out),
                     SL_EINVAL);
    forged = token_with(H_HS, C_ALICE, S_HMAC, g_ec_pem, strlen(g_ec_pem));
    assert_int_equal(verify(j, forged, out, sizeof out), SL_EINVAL);
    sl_jwt_free(j);
    /* a verifier allowing HS256 and RS256: the PEM is never the HMAC key */
    j = mk(SL_JWT_HS256 | SL_JWT_RS256, SECRET, g_rsa_pem, NULL, 0, 0);
    forged = token_with(H_HS, C_ALICE, S_HMAC, g_rsa_pem, strlen(g_rsa_pem));
    assert_int_equal(verify(j, forged, out, sizeof out), SL_EINVAL);
    assert_int_equal(verify(j, hs(H_HS, C_ALICE), out, sizeof out), 5);
    sl_jwt_free(j);
}

static void test_bad_conf(void **state)
{
    (void)state;
    char err[160];
    sl_jwt_conf_t c = {.algorithms = 0};
    assert_null(sl_jwt_new(&c, err, sizeof err));
    assert_null(sl_jwt_new(NULL, err, sizeof err));
    c.algorithms = 0x8;
    assert_null(sl_jwt_new(&c, err, sizeof err));
    c.algorithms = SL_JWT_HS256; /* no secret */
    assert_null(sl_jwt_new(&c, err, sizeof err));
    assert_non_null(strstr(err, "secret"));
    c.secret = g_rsa_pem; /* a PEM as the HMAC secret */
    c.secret_len = strlen(g_rsa_pem);
    assert_null(sl_jwt_new(&c, err, sizeof err));
    c = (sl_jwt_conf_t){.algorithms = SL_JWT_RS256}; /* no key */
    assert_null(sl_jwt_new(&c, err, sizeof err));
    c.public_key_pem = "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n";
    assert_null(sl_jwt_new(&c, err, sizeof err));
    c.public_key_pem = g_ec_pem; /* RS256 with an EC key */
    assert_null(sl_jwt_new(&c, err, sizeof err));
    c = (sl_jwt_conf_t){.algorithms = SL_JWT_ES256, .public_key_pem = g_rsa_pem};
    assert_null(sl_jwt_new(&c, err, sizeof err));
    c = (sl_jwt_conf_t){.algorithms = SL_JWT_RS256 | SL_JWT_ES256, .public_key_pem = g_rsa_pem};
    assert_null(sl_jwt_new(&c, err, sizeof err));
    c = (sl_jwt_conf_t){.algorithms = SL_JWT_HS256,
                        .secret = SECRET,
                        .secret_len = 32,
                        .public_key_pem = g_rsa_pem}; /* a key no allowed alg uses */
    assert_null(sl_jwt_new(&c, 0, 0));

    /* RSA under 2048 bits, EC on another curve */
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    assert_non_null(small);
    assert_non_null(p384);
    char *small_pem = pem_of(small, "SubjectPublicKeyInfo");
    char *p384_pem = pem_of(p384, "SubjectPublicKeyInfo");
    c = (sl_jwt_conf_t){.algorithms = SL_JWT_RS256, .public_key_pem = small_pem};
    assert_null(sl_jwt_new(&c, err, sizeof err));
    assert_non_null(strstr(err, "2048"));
    c = (sl_jwt_conf_t){.algorithms = SL_JWT_ES256, .public_key_pem = p384_pem};
    assert_null(sl_jwt_new(&c, err, sizeof err));
    free(small_pem);
    free(p384_pem);
    EVP_PKEY_free(small);
    EVP_PKEY_free(p384);

    assert_int_equal(sl_jwt_alg_from_name("HS256", 5), SL_JWT_HS256);
    assert_int_equal(sl_jwt_alg_from_name("RS256", 5), SL_JWT_RS256);
    assert_int_equal(sl_jwt_alg_from_name("ES256", 5), SL_JWT_ES256);
    assert_int_equal(sl_jwt_alg_from_name("none", 4), 0);
    assert_int_equal(sl_jwt_alg_from_name("HS2560", 6), 0);
    assert_int_equal(sl_jwt_alg_from_name("HS25", 4), 0);
    sl_jwt_free(NULL);
}

/* ---- time claims -------------------------------------------------------------------- */

/* {"sub":"a","<name>":v} */
static const char *claims_at(const char *name, long long v)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "{\"sub\":\"a\",\"%s\":%lld}", name, v);
    return buf;
}

static void test_exp_nbf(void **state)
{
    (void)state;
    char out[64];
    long long now = (long long)NOW;
    sl_jwt_t *dflt = hs_verifier();                              /* leeway 30 */
    sl_jwt_t *none = mk(SL_JWT_HS256, SECRET, NULL, NULL, 1, 0); /* leeway 0 */
    const char *e = "exp", *n = "nbf";

    assert_int_equal(verify(dflt, hs(H_HS, claims_at(e, now - 100)), out, sizeof out), SL_EINVAL);
    assert_int_equal(verify(none, hs(H_HS, claims_at(e, now - 100)), out, sizeof out), SL_EINVAL);
    /* expired 10 s ago: inside the default leeway, outside none */
    assert_int_equal(verify(dflt, hs(H_HS, claims_at(e, now - 10)), out, sizeof out), 1);
    assert_int_equal(verify(none, hs(H_HS, claims_at(e, now - 10)), out, sizeof out), SL_EINVAL);
    /* the edges: exp must be > now - leeway */
    assert_int_equal(verify(dflt, hs(H_HS, claims_at(e, now - 30)), out, sizeof out), SL_EINVAL);
    assert_int_equal(verify(dflt, hs(H_HS, claims_at(e, now - 29)), out, sizeof out), 1);
    assert_int_equal(verify(none, hs(H_HS, claims_at(e, now)), out, sizeof out), SL_EINVAL);
    assert_int_equal(verify(none, hs(H_HS, claims_at(e, now + 1)), out, sizeof out), 1);
    assert_int_equal(verify(none, hs(H_HS, claims_at(e, 0)), out, sizeof out), SL_EINVAL);
    assert_int_equal(verify(none, hs(H_HS, claims_at(e, -5)), out, sizeof out), SL_EINVAL);
    /* real-valued NumericDate */
    assert_int_equal(
        verify(none, hs(H_HS, "{\"sub\":\"a\",\"exp\":1700000000.5}"), out, sizeof out), 1);
    assert_int_equal(
        verify(none, hs(H_HS, "{\"sub\":\"a\",\"exp\":1699999999.5}"), out, sizeof out), SL_EINVAL);
    assert_int_equal(verify(none, hs(H_HS, "{\"sub\":\"a\",\"exp\":1e300}"), out, sizeof out), 1);
    /* not a number */
    assert_int_equal(
        verify(dflt, hs(H_HS, "{\"sub\":\"a\",\"exp\":\"1800000000\"}"), out, sizeof out),
        SL_EINVAL);
    assert_int_equal(verify(dflt, hs(H_HS, "{\"sub\":\"a\",\"exp\":null}"), out, sizeof out),
                     SL_EINVAL);

    /* nbf: must be <= now + leeway */
    assert_int_equal(verify(dflt, hs(H_HS, claims_at(n, now + 100)), out, sizeof out), SL_EINVAL);
    assert_int_equal(verify(dflt, hs(H_HS, claims_at(n, now + 30)), out, sizeof out), 1);
    assert_int_equal(verify(dflt, hs(H_HS, claims_at(n, now + 31)), out, sizeof out), SL_EINVAL);
    assert_int_equal(verify(none, hs(H_HS, claims_at(n, now + 1)), out, sizeof out), SL_EINVAL);
    assert_int_equal(verify(none, hs(H_HS, claims_at(n, now)), out, sizeof out), 1);
    assert_int_equal(verify(none, hs(H_HS, claims_at(n, -1)), out, sizeof out), 1);
    assert_int_equal(
        verify(none, hs(H_HS, "{\"sub\":\"a\",\"nbf\":1700000000.5}"), out, sizeof out), SL_EINVAL);
    assert_int_equal(verify(dflt, hs(H_HS, "{\"sub\":\"a\",\"nbf\":true}"), out, sizeof out),
                     SL_EINVAL);
    /* both, and a huge leeway that must not wrap */
    assert_int_equal(verify(none, hs(H_HS, "{\"sub\":\"a\",\"nbf\":1699999000,\"exp\":1700000600}"),
                            out, sizeof out),
                     1);
    sl_jwt_t *huge = mk(SL_JWT_HS256, SECRET, NULL, NULL, 1, UINT64_MAX);
    assert_int_equal(verify(huge, hs(H_HS, claims_at(e, 1)), out, sizeof out), 1);
    assert_int_equal(verify(huge, hs(H_HS, claims_at(n, INT64_MAX)), out, sizeof out), 1);
    sl_jwt_free(huge);
    /* the clock at 0 with leeway: nothing negative, nothing wraps */
    const char *early = hs(H_HS, "{\"sub\":\"a\",\"exp\":5}");
    assert_int_equal(sl_jwt_verify(dflt, early, strlen(early), 0, out, sizeof out), 1);
    sl_jwt_free(dflt);
    sl_jwt_free(none);
}

/* ---- the user claim ----------------------------------------------------------------- */

static void test_user_claim(void **state)
{
    (void)state;
    char out[64];
    sl_jwt_t *j = hs_verifier();
    assert_int_equal(verify(j, hs(H_HS, "{\"exp\":1700000600}"), out, sizeof out), SL_EINVAL);
    assert_int_equal(verify(j, hs(H_HS, "{\"sub\":\"\"}"), out, sizeof out), SL_EINVAL);
    assert_int_equal(verify(j, hs(H_HS, "{\"sub\":null}"), out, sizeof out), SL_EINVAL);
    assert_int_equal(verify(j, hs(H_HS, "{\"sub\":true}"), out, sizeof out), SL_EINVAL);
    assert_int_equal(verify(j, hs(H_HS, "{\"sub\":{\"id\":1}}"), out, sizeof out), SL_EINVAL);
    /* jansson refuses \u0000 at parse time (no JSON_ALLOW_NUL): malformed */
    assert_int_equal(verify(j, hs(H_HS, "{\"sub\":\"a\\u0000b\"}"), out, sizeof out), SL_EBADMSG);
    /* numbers */
    assert_int_equal(verify(j, hs(H_HS, "{\"sub\":12345}"), out, sizeof out), 5);
    assert_string_equal(out, "12345");
    assert_int_equal(verify(j, hs(H_HS, "{\"sub\":-7}"), out, sizeof out), 2);
    assert_string_equal(out, "-7");
    assert_int_equal(verify(j, hs(H_HS, "{\"sub\":9223372036854775807}"), out, sizeof out), 19);
    assert_string_equal(out, "9223372036854775807");
    assert_int_equal(verify(j, hs(H_HS, "{\"sub\":42.0}"), out, sizeof out), 2);
    assert_string_equal(out, "42");
    assert_int_equal(verify(j, hs(H_HS, "{\"sub\":1.5}"), out, sizeof out), SL_EINVAL);
    assert_int_equal(verify(j, hs(H_HS, "{\"sub\":1e300}"), out, sizeof out), SL_EINVAL);
    /* a number too big for jansson's integer is malformed */
    assert_int_equal(verify(j, hs(H_HS, "{\"sub\":99999999999999999999}"), out, sizeof out),
                     SL_EBADMSG);
    /* out: exact fit, one short (never truncated) */
    assert_int_equal(verify(j, hs(H_HS, C_ALICE), out, 6), 5);
    assert_int_equal(verify(j, hs(H_HS, C_ALICE), out, 5), SL_ETOOBIG);
    assert_int_equal(verify(j, hs(H_HS, C_ALICE), NULL, 6), SL_ETOOBIG);
    sl_jwt_free(j);

    j = mk(SL_JWT_HS256, SECRET, NULL, "email", 0, 0);
    assert_int_equal(verify(j, hs(H_HS, C_ALICE), out, sizeof out), SL_EINVAL);
    assert_int_equal(verify(j, hs(H_HS, "{\"sub\":\"x\",\"email\":\"a@b.c\"}"), out, sizeof out),
                     5);
    assert_string_equal(out, "a@b.c");
    sl_jwt_free(j);
    j = mk(SL_JWT_HS256, SECRET, NULL, "", 0, 0); /* "" means sub */
    assert_int_equal(verify(j, hs(H_HS, C_ALICE), out, sizeof out), 5);
    sl_jwt_free(j);
}

/* ---- malformed tokens --------------------------------------------------------------- */

static void test_malformed(void **state)
{
    (void)state;
    char out[64], t[10000];
    sl_jwt_t *j = hs_verifier();
    const char *good = hs(H_HS, C_ALICE);
    size_t glen = strlen(good);
    const char *dot1 = strchr(good, '.');
    size_t d1 = (size_t)(dot1 - good), d2 = (size_t)(strchr(dot1 + 1, '.') - good);

    assert_int_equal(sl_jwt_verify(j, good, 0, NOW, out, sizeof out), SL_EBADMSG);
    assert_int_equal(sl_jwt_verify(j, NULL, 5, NOW, out, sizeof out), SL_EBADMSG);
    assert_int_equal(sl_jwt_verify(NULL, good, glen, NOW, out, sizeof out), SL_EBADMSG);
    /* two parts, four parts, five (JWE), empty parts */
    assert_int_equal(sl_jwt_verify(j, good, d2, NOW, out, sizeof out), SL_EBADMSG);
    snprintf(t, sizeof t, "%s.AAAA", good);
    assert_int_equal(verify(j, t, out, sizeof out), SL_EBADMSG);
    snprintf(t, sizeof t, "%s.AAAA.AAAA", good);
    assert_int_equal(verify(j, t, out, sizeof out), SL_EBADMSG);
    assert_int_equal(verify(j, "..", out, sizeof out), SL_EBADMSG);
    snprintf(t, sizeof t, "%.*s", (int)(d1 + 1), good);
    strcat(t, good + d2); /* header..sig */
    assert_int_equal(verify(j, t, out, sizeof out), SL_EBADMSG);
    snprintf(t, sizeof t, "%s", good + d1); /* .payload.sig */
    assert_int_equal(verify(j, t, out, sizeof out), SL_EBADMSG);
    assert_int_equal(verify(j, "abc", out, sizeof out), SL_EBADMSG);

    /* characters outside base64url, in each part */
    static const char bad[] = {'=', '+', '/', ' ', '*', '\0', '\n', (char)0xc3};
    for (size_t k = 0; k < sizeof bad; k++) {
        size_t at[] = {2, d1 + 2, d2 + 2};
        for (size_t p = 0; p < 3; p++) {
            memcpy(t, good, glen + 1);
            t[at[p]] = bad[k];
            assert_int_equal(sl_jwt_verify(j, t, glen, NOW, out, sizeof out), SL_EBADMSG);
        }
    }
    /* padding: a signature of 32 bytes is 43 chars; with '=' it is 44 */
    snprintf(t, sizeof t, "%s=", good);
    assert_int_equal(verify(j, t, out, sizeof out), SL_EBADMSG);
    /* a part of length 4k+1, and non-zero unused bits in the last character */
    snprintf(t, sizeof t, "%sAA", good); /* 45 characters */
    assert_int_equal(verify(j, t, out, sizeof out), SL_EBADMSG);
    snprintf(t, sizeof t, "%sA", good); /* 44: valid base64url, 33 bytes: a bad signature */
    assert_int_equal(verify(j, t, out, sizeof out), SL_EINVAL);
    memcpy(t, good, glen + 1);
    t[glen - 1] =
        t[glen - 1] == 'B' ? 'C' : 'B'; /* 43 chars: the last holds 4 bits + 2 zero bits */
    assert_int_equal(verify(j, t, out, sizeof out), SL_EBADMSG);

    /* bad JSON: header, then payload (valid signature over it) */
    assert_int_equal(verify(j, hs("{\"alg\":\"HS256\"", C_ALICE), out, sizeof out), SL_EBADMSG);
    assert_int_equal(verify(j, hs("[\"HS256\"]", C_ALICE), out, sizeof out), SL_EBADMSG);
    assert_int_equal(verify(j, hs("\"HS256\"", C_ALICE), out, sizeof out), SL_EBADMSG);
    assert_int_equal(verify(j, hs("{\"alg\":\"HS256\"} x", C_ALICE), out, sizeof out), SL_EBADMSG);
    assert_int_equal(verify(j, hs(H_HS, "{\"sub\":\"alice\""), out, sizeof out), SL_EBADMSG);
    assert_int_equal(verify(j, hs(H_HS, "[1,2]"), out, sizeof out), SL_EBADMSG);
    assert_int_equal(verify(j, hs(H_HS, "{\"sub\":\"a\",\"sub\":\"b\"}"), out, sizeof out),
                     SL_EBADMSG);
    assert_int_equal(verify(j, hs(H_HS, "{\"sub\":\"\xff\"}"), out, sizeof out), SL_EBADMSG);

    /* size bound: a valid token just under 8 KiB passes, one over is refused */
    char claims[8192];
    int pad = 5000;
    snprintf(claims, sizeof claims, "{\"sub\":\"alice\",\"pad\":\"%0*d\"}", pad, 0);
    const char *big = hs(H_HS, claims);
    assert_true(strlen(big) <= SL_JWT_MAX_TOKEN);
    assert_int_equal(verify(j, big, out, sizeof out), 5);
    snprintf(claims, sizeof claims, "{\"sub\":\"alice\",\"pad\":\"%0*d\"}", 6200, 0);
    big = hs(H_HS, claims);
    assert_true(strlen(big) > SL_JWT_MAX_TOKEN);
    assert_int_equal(verify(j, big, out, sizeof out), SL_EBADMSG);
    sl_jwt_free(j);
}

/* ---- many threads on one verifier ---------------------------------------------------- */

typedef struct {
    const sl_jwt_t *j;
    const char *hs_tok, *es_tok, *bad_tok;
    int failures;
} thread_arg_t;

static void *hammer(void *p)
{
    thread_arg_t *a = p;
    char out[64];
    for (int i = 0; i < 300; i++) {
        if (verify(a->j, a->hs_tok, out, sizeof out) != 5 || strcmp(out, "alice") != 0)
            a->failures++;
        if (i % 10 == 0 && verify(a->j, a->es_tok, out, sizeof out) != 5)
            a->failures++;
        if (verify(a->j, a->bad_tok, out, sizeof out) != SL_EINVAL)
            a->failures++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    sl_jwt_t *j = mk(SL_JWT_HS256 | SL_JWT_ES256, SECRET, g_ec_pem, NULL, 0, 0);
    char *hs_tok = strdup(hs(H_HS, C_ALICE));
    char *es_tok = strdup(token_with(H_ES, C_ALICE, S_PKEY, g_ec, 0));
    char *bad_tok = strdup(token_with(H_HS, C_ALICE, S_HMAC, "nope", 4));
    pthread_t th[6];
    thread_arg_t args[6];
    for (int i = 0; i < 6; i++) {
        args[i] = (thread_arg_t){j, hs_tok, es_tok, bad_tok, 0};
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &args[i]), 0);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
    free(hs_tok);
    free(es_tok);
    free(bad_tok);
    sl_jwt_free(j);
}

/* ---- Authorization: Bearer ---------------------------------------------------------- */

static void expect_bearer(const char *v, const char *want)
{
    size_t n = 99;
    const char *t = sl_jwt_bearer(v, strlen(v), &n);
    if (want == NULL) {
        assert_null(t);
        return;
    }
    assert_non_null(t);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(t, want, n);
}

static void test_bearer(void **state)
{
    (void)state;
    expect_bearer("Bearer abc.def.ghi", "abc.def.ghi");
    expect_bearer("bearer abc", "abc");
    expect_bearer("BEARER abc", "abc");
    expect_bearer("bEaReR    abc", "abc");
    expect_bearer("  Bearer abc  ", "abc");
    expect_bearer("Bearer abc\t", "abc");
    expect_bearer("Bearer a-b_c~d+e/f.g==", "a-b_c~d+e/f.g==");
    expect_bearer("Bearer", NULL);
    expect_bearer("Bearer ", NULL);
    expect_bearer("Bearer    ", NULL);
    expect_bearer("Bearerabc", NULL);
    expect_bearer("Bearer\tabc", NULL); /* SP only between scheme and token */
    expect_bearer("Bearer abc def", NULL);
    expect_bearer("Bearer abc=def", NULL);
    expect_bearer("Bearer =abc", NULL);
    expect_bearer("Bearer ab\"c", NULL);
    expect_bearer("Bearer ab,c", NULL);
    expect_bearer("Basic dXNlcjpwYXNz", NULL);
    expect_bearer("Bearers abc", NULL);
    expect_bearer("Beare abc", NULL);
    expect_bearer("", NULL);
    assert_null(sl_jwt_bearer(NULL, 0, NULL));
    /* length bounds the read; no NUL needed, toklen may be NULL */
    const char v[] = "Bearer abcdef";
    size_t n = 0;
    const char *t = sl_jwt_bearer(v, 10, &n);
    assert_ptr_equal(t, v + 7);
    assert_int_equal(n, 3);
    assert_non_null(sl_jwt_bearer(v, sizeof v - 1, NULL));
    assert_null(sl_jwt_bearer("Bearer abc\0def", 14, &n));

    /* end to end: a header value to a verified user */
    sl_jwt_t *j = hs_verifier();
    char hv[1024], out[64];
    snprintf(hv, sizeof hv, "Bearer %s", hs(H_HS, C_ALICE));
    t = sl_jwt_bearer(hv, strlen(hv), &n);
    assert_non_null(t);
    assert_int_equal(sl_jwt_verify(j, t, n, NOW, out, sizeof out), 5);
    sl_jwt_free(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hs256_valid),
        cmocka_unit_test(test_rs256_valid),
        cmocka_unit_test(test_es256_valid),
        cmocka_unit_test(test_mixed_verifier),
        cmocka_unit_test(test_header_forms),
        cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_alg_none_and_unknown),
        cmocka_unit_test(test_key_confusion),
        cmocka_unit_test(test_bad_conf),
        cmocka_unit_test(test_exp_nbf),
        cmocka_unit_test(test_user_claim),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_bearer),
    };
    return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
