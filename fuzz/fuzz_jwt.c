/* fuzz_jwt.c - libFuzzer driver for JWT verification (src/policy/jwt.c).
 * Every input is tried three ways: as a compact token against a fixed HS256 verifier and
 * a fixed ES256 one; as an Authorization field value (sl_jwt_bearer, then the token it
 * finds); and re-signed here, so the claim checks behind the signature are reached too:
 * the input split at its first NUL is header JSON and claims JSON (without a NUL, all of
 * it is claims under {"alg":"HS256"}), base64url-encoded and signed with the HS256 secret.
 * abort()s when a result breaks the contract: a code outside the documented set, a
 * length that disagrees with out, a token pointer outside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../src/policy/jwt.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

#define NOW 1700000000u
#define SECRET "fuzz-secret-fuzz-secret-fuzz-sec"

/* The public half of a P-256 key made for the seed corpus; its private half signed
 * fuzz/corpus/fuzz_jwt/es256_valid and is kept nowhere. */
static const char ec_pem[] = "-----BEGIN PUBLIC KEY-----\n"
                             "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEgL+1GijV/+xu/N6NxFT5Ha4wItXw\n"
                             "346ysC+ow0Q4EeETS5aMO3DmN7B/5bE94/fU649xSpnGHthwCQkCysHAQA==\n"
                             "-----END PUBLIC KEY-----\n";

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sl_jwt_t *g_hs, *g_es;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    sl_jwt_conf_t hs = {.secret = SECRET, .secret_len = strlen(SECRET), .algorithms = SL_JWT_HS256};
    sl_jwt_conf_t es = {.public_key_pem = ec_pem, .algorithms = SL_JWT_ES256};
    g_hs = sl_jwt_new(&hs, NULL, 0);
    g_es = sl_jwt_new(&es, NULL, 0);
    CHECK(g_hs != NULL && g_es != NULL);
    return 0;
}

/* One verification, checked against the contract; with a small out every few calls so
 * the SL_ETOOBIG path runs. */
static void verify(const sl_jwt_t *j, const char *tok, size_t len)
{
    char out[64];
    size_t cap = len % 3 == 0 ? 8 : sizeof out;
    memset(out, 'x', sizeof out);
    int r = sl_jwt_verify(j, tok, len, NOW, out, cap);
    if (r >= 0) {
        CHECK((size_t)r < cap);
        CHECK(out[r] == '\0');
        CHECK(strlen(out) == (size_t)r);
        CHECK(r > 0);
        CHECK(sl_jwt_verify(j, tok, len, NOW, NULL, 0) == r);
    } else {
        CHECK(r == SL_EBADMSG || r == SL_EINVAL || r == SL_ETOOBIG || r == SL_ENOMEM);
    }
}

static size_t b64url(const uint8_t *p, size_t n, char *out)
{
    return sl_jwt_b64url(p, n, out);
}

static void resigned(const uint8_t *data, size_t size)
{
    static const char fixed[] = "{\"alg\":\"HS256\"}";
    const uint8_t *hdr = (const uint8_t *)fixed, *claims = data;
    size_t hlen = sizeof fixed - 1, clen = size;
    const uint8_t *nul = memchr(data, '\0', size);
    if (nul != NULL) {
        hdr = data;
        hlen = (size_t)(nul - data);
        claims = nul + 1;
        clen = size - hlen - 1;
    }
    char tok[SL_JWT_MAX_TOKEN * 2];
    if ((hlen + clen) / 3 * 4 + 64 > sizeof tok)
        return;
    size_t o = b64url(hdr, hlen, tok);
    tok[o++] = '.';
    o += b64url(claims, clen, tok + o);
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    CHECK(HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)tok, o, mac,
               &maclen) != NULL);
    tok[o++] = '.';
    o += b64url(mac, maclen, tok + o);
    verify(g_hs, tok, o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    verify(g_hs, s, size);
    verify(g_es, s, size);

    size_t toklen = 0;
    const char *t = sl_jwt_bearer(s, size, &toklen);
    if (t != NULL) {
        CHECK(t > s && toklen > 0 && t + toklen <= s + size);
        CHECK(memchr(t, ' ', toklen) == NULL);
        verify(g_hs, t, toklen);
        verify(g_es, t, toklen);
    }

    resigned(data, size);
    return 0;
}
