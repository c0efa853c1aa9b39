/* jwt.c - JWS compact-serialisation verification (HS256, RS256, ES256) and JWT claims.
 * Owns: the keys, made once in sl_jwt_new and only read afterwards; every call works on
 * its own stack buffers and its own short-lived OpenSSL contexts, so any number of
 * workers verify at once without a lock. Never looks at a claim before the signature. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem; the build passes it too */
#endif
#include "jwt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#define HS256_LEN 32
#define ES256_LEN 64 /* R || S, 32 bytes each (RFC 7518 §3.4) */
#define RSA_MIN_BITS 2048
#define KNOWN_ENC_MAX 48 /* base64url of the longest form: 36 characters */

/* The header forms libraries write (jose, jsonwebtoken, PyJWT, golang-jwt): a token whose
 * encoded header is byte-for-byte one of these, for an allowed alg, skips the header
 * parse, the largest cost after the claims parse. Any other header is parsed in full. */
static const struct {
    const char *json;
    unsigned alg;
} header_forms[] = {
    {"{\"alg\":\"HS256\",\"typ\":\"JWT\"}", SL_JWT_HS256},
    {"{\"typ\":\"JWT\",\"alg\":\"HS256\"}", SL_JWT_HS256},
    {"{\"alg\":\"HS256\"}", SL_JWT_HS256},
    {"{\"alg\":\"RS256\",\"typ\":\"JWT\"}", SL_JWT_RS256},
    {"{\"typ\":\"JWT\",\"alg\":\"RS256\"}", SL_JWT_RS256},
    {"{\"alg\":\"RS256\"}", SL_JWT_RS256},
    {"{\"alg\":\"ES256\",\"typ\":\"JWT\"}", SL_JWT_ES256},
    {"{\"typ\":\"JWT\",\"alg\":\"ES256\"}", SL_JWT_ES256},
    {"{\"alg\":\"ES256\"}", SL_JWT_ES256},
};

typedef struct known_header {
    char enc[KNOWN_ENC_MAX]; /* base64url, unpadded */
    size_t len;
    unsigned alg;
} known_header_t;

struct sl_jwt {
    unsigned algorithms; /* allowed, each with its key below */
    EVP_MAC_CTX *hmac;   /* keyed with the secret, never updated: the per-call template */
    EVP_PKEY *pkey;      /* RSA or EC P-256 public key, or NULL */
    unsigned pkey_alg;   /* SL_JWT_RS256 or SL_JWT_ES256: the only algorithm pkey serves */
    uint64_t leeway_s;
    known_header_t known[SL_ARRAY_LEN(header_forms)];
    size_t nknown;
    char user_claim[]; /* NUL-terminated */
};

static const struct {
    const char *name;
    unsigned bit;
} algs[] = {
    {"HS256", SL_JWT_HS256},
    {"RS256", SL_JWT_RS256},
    {"ES256", SL_JWT_ES256},
};

unsigned sl_jwt_alg_from_name(const char *name, size_t len)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(algs); i++)
        if (strlen(algs[i].name) == len && memcmp(algs[i].name, name, len) == 0)
            return algs[i].bit;
    return 0;
}

/* ASCII case-insensitive equality of a[0..n) and b[0..n), whatever the locale. */
static int ascii_caseeq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x |= 0x20;
        if (y >= 'A' && y <= 'Z')
            y |= 0x20;
        if (x != y)
            return 0;
    }
    return 1;
}

/* ---- configuration ---------------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "jwt: %s", msg);
}

size_t sl_jwt_b64url(const void *in, size_t n, char *out)
{
    const uint8_t *p = in;
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
        out[o++] = a[v & 63];
    }
    if (n - i == 1) {
        out[o++] = a[p[i] >> 2];
        out[o++] = a[(p[i] & 3) << 4];
    } else if (n - i == 2) {
        out[o++] = a[p[i] >> 2];
        out[o++] = a[(p[i] & 3) << 4 | p[i + 1] >> 4];
        out[o++] = a[(p[i + 1] & 15) << 2];
    }
    return o;
}

/* The encoded header forms for every allowed algorithm (each has its key by now). */
static void fill_known_headers(sl_jwt_t *j)
{
    for (size_t f = 0; f < SL_ARRAY_LEN(header_forms); f++) {
        if (!(j->algorithms & header_forms[f].alg))
            continue;
        known_header_t *k = &j->known[j->nknown++];
        const char *json = header_forms[f].json;
        k->len = sl_jwt_b64url(json, strlen(json), k->enc);
        k->alg = header_forms[f].alg;
    }
}

/* A public key from PEM text: SubjectPublicKeyInfo or the type-specific (PKCS#1) form. */
static EVP_PKEY *load_public_key(const char *pem)
{
    EVP_PKEY *pkey = NULL;
    OSSL_DECODER_CTX *dc =
        OSSL_DECODER_CTX_new_for_pkey(&pkey, "PEM", NULL, NULL, EVP_PKEY_PUBLIC_KEY, NULL, NULL);
    if (dc == NULL)
        return NULL;
    const unsigned char *p = (const unsigned char *)pem;
    size_t n = strlen(pem);
    if (!OSSL_DECODER_from_data(dc, &p, &n)) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    OSSL_DECODER_CTX_free(dc);
    return pkey;
}

static int is_p256(EVP_PKEY *pkey)
{
    char group[64];
    if (!EVP_PKEY_get_group_name(pkey, group, sizeof group, NULL))
        return 0;
    return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0 ||
           strcmp(group, "secp256r1") == 0;
}

/* Check and adopt the public key for the RS256 or ES256 bit in algorithms. 0, or -1
 * with err set. */
static int setup_pkey(sl_jwt_t *j, const char *pem, char *err, size_t errlen)
{
    unsigned want = j->algorithms & (SL_JWT_RS256 | SL_JWT_ES256);
    if (pem == NULL) {
        if (want == 0)
            return 0;
        set_err(err, errlen, "RS256/ES256 allowed but no public key given");
        return -1;
    }
    if (want == (SL_JWT_RS256 | SL_JWT_ES256)) {
        set_err(err, errlen, "one public key serves RS256 or ES256, not both");
        return -1;
    }
    if (want == 0) {
        set_err(err, errlen, "a public key is given but neither RS256 nor ES256 is allowed");
        return -1;
    }
    j->pkey = load_public_key(pem);
    if (j->pkey == NULL) {
        set_err(err, errlen, "cannot read the public key PEM");
        return -1;
    }
    if (want == SL_JWT_RS256) {
        if (!EVP_PKEY_is_a(j->pkey, "RSA")) {
            set_err(err, errlen, "RS256 needs an RSA public key");
            return -1;
        }
        if (EVP_PKEY_get_bits(j->pkey) < RSA_MIN_BITS) {
            set_err(err, errlen, "RSA key shorter than 2048 bits");
            return -1;
        }
    } else if (!EVP_PKEY_is_a(j->pkey, "EC") || !is_p256(j->pkey)) {
        set_err(err, errlen, "ES256 needs an EC P-256 public key");
        return -1;
    }
    j->pkey_alg = want;
    return 0;
}

static int setup_hmac(sl_jwt_t *j, const sl_jwt_conf_t *c, char *err, size_t errlen)
{
    if (!(j->algorithms & SL_JWT_HS256))
        return 0;
    if (c->secret == NULL || c->secret_len == 0) {
        set_err(err, errlen, "HS256 allowed but the secret is empty");
        return -1;
    }
    /* The classic confusion: an RS256 public key used as the HMAC secret lets anyone
     * holding the (public) key forge HS256 tokens. */
    if (memmem(c->secret, c->secret_len, "-----BEGIN", 10) != NULL) {
        set_err(err, errlen, "the HS256 secret is a PEM key");
        return -1;
    }
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) {
        set_err(err, errlen, "HMAC unavailable in OpenSSL");
        return -1;
    }
    j->hmac = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac); /* the context holds its own reference */
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (j->hmac == NULL ||
        !EVP_MAC_init(j->hmac, (const unsigned char *)c->secret, c->secret_len, params)) {
        set_err(err, errlen, "cannot set up HMAC-SHA256");
        return -1;
    }
    return 0;
}

sl_jwt_t *sl_jwt_new(const sl_jwt_conf_t *c, char *err, size_t errlen)
{
    if (c == NULL || c->algorithms == 0 || (c->algorithms & ~SL_JWT_ALL) != 0) {
        set_err(err, errlen, "algorithms must be a non-empty set of HS256, RS256, ES256");
        return NULL;
    }
    const char *claim = c->user_claim != NULL && c->user_claim[0] != '\0' ? c->user_claim : "sub";
    size_t claim_len = strlen(claim);
    sl_jwt_t *j = calloc(1, sizeof *j + claim_len + 1);
    if (j == NULL) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    memcpy(j->user_claim, claim, claim_len + 1);
    j->algorithms = c->algorithms;
    j->leeway_s = c->has_leeway ? c->leeway_s : SL_JWT_DEFAULT_LEEWAY_S;
    /* jansson seeds its hash function on first use; do it here, on one thread. */
    json_object_seed(0);

    ERR_set_mark();
    int rc = setup_hmac(j, c, err, errlen);
    if (rc == 0)
        rc = setup_pkey(j, c->public_key_pem, err, errlen);
    ERR_pop_to_mark(); /* leave no OpenSSL errors behind for the caller's next TLS call */
    if (rc != 0) {
        sl_jwt_free(j);
        return NULL;
    }
    fill_known_headers(j);
    return j;
}

void sl_jwt_free(sl_jwt_t *j)
{
    if (j == NULL)
        return;
    EVP_MAC_CTX_free(j->hmac);
    EVP_PKEY_free(j->pkey);
    free(j);
}

/* ---- verification ----------------------------------------------------------------- */

/* base64url alphabet (RFC 4648 §5) -> 6-bit value + 1; 0 for every other byte, '=' too. */
static const uint8_t b64url[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
    ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['-'] = 63, ['_'] = 64,
};

/* Strict unpadded base64url s[0..n) into out (room for n * 3 / 4 bytes). Rejects '=',
 * the standard alphabet's '+' and '/', whitespace, a length of 4k+1, and non-zero unused
 * bits in the last character, so each byte string has exactly one accepted encoding.
 * Returns the decoded length, or -1. */
static long b64url_decode(const char *s, size_t n, uint8_t *out)
{
    const uint8_t *in = (const uint8_t *)s;
    size_t o = 0, i = 0;
    if (n % 4 == 1)
        return -1;
    for (; i + 4 <= n; i += 4) {
        unsigned a = b64url[in[i]], b = b64url[in[i + 1]], c = b64url[in[i + 2]],
                 d = b64url[in[i + 3]];
        if (a == 0 || b == 0 || c == 0 || d == 0)
            return -1;
        a--, b--, c--, d--;
        uint32_t v = a << 18 | b << 12 | c << 6 | d;
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
    }
    size_t rest = n - i;
    if (rest >= 2) {
        unsigned a = b64url[in[i]], b = b64url[in[i + 1]];
        unsigned c = rest == 3 ? b64url[in[i + 2]] : 1;
        if (a == 0 || b == 0 || c == 0)
            return -1;
        a--, b--, c--;
        if (rest == 2 && (b & 0x0f) != 0)
            return -1;
        if (rest == 3 && (c & 0x03) != 0)
            return -1;
        out[o++] = (uint8_t)(a << 2 | b >> 4);
        if (rest == 3)
            out[o++] = (uint8_t)((b & 0x0f) << 4 | c >> 2);
    }
    return (long)o;
}

static int verify_hs256(const sl_jwt_t *j, const char *msg, size_t n, const uint8_t *sig,
                        size_t siglen)
{
    if (j->hmac == NULL || siglen != HS256_LEN)
        return SL_EINVAL;
    /* A copy of the keyed template: the key schedule (ipad/opad) is computed once in
     * sl_jwt_new, and the template itself is never written, so threads share it. */
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(j->hmac);
    if (ctx == NULL)
        return SL_ENOMEM;
    uint8_t mac[EVP_MAX_MD_SIZE];
    size_t maclen = 0;
    int ok = EVP_MAC_update(ctx, (const unsigned char *)msg, n) &&
             EVP_MAC_final(ctx, mac, &maclen, sizeof mac) && maclen == HS256_LEN;
    EVP_MAC_CTX_free(ctx);
    if (!ok)
        return SL_ENOMEM; /* only an allocation inside OpenSSL can fail here */
    return CRYPTO_memcmp(mac, sig, HS256_LEN) == 0 ? SL_OK : SL_EINVAL;
}

/* One DER INTEGER for a 32-byte unsigned big-endian value; returns bytes written. */
static size_t der_uint(uint8_t *out, const uint8_t *v, size_t n)
{
    while (n > 1 && v[0] == 0) {
        v++;
        n--;
    }
    size_t o = 0;
    out[o++] = 0x02;
    out[o++] = (uint8_t)(n + (v[0] & 0x80 ? 1 : 0));
    if (v[0] & 0x80)
        out[o++] = 0;
    memcpy(out + o, v, n);
    return o + n;
}

static int verify_pkey(const sl_jwt_t *j, unsigned alg, const char *msg, size_t n,
                       const uint8_t *sig, size_t siglen)
{
    uint8_t der[2 + 2 * (2 + 1 + 32)];
    if (j->pkey == NULL || alg != j->pkey_alg)
        return SL_EINVAL; /* never an RSA key for ES256 or the reverse */
    if (alg == SL_JWT_ES256) {
        /* JWS carries R||S; OpenSSL wants ECDSA-Sig-Value ::= SEQUENCE { r, s } in DER.
         * The body is at most 70 bytes, so the length fits in one short-form byte. */
        if (siglen != ES256_LEN)
            return SL_EINVAL;
        size_t body = der_uint(der + 2, sig, 32);
        body += der_uint(der + 2 + body, sig + 32, 32);
        der[0] = 0x30;
        der[1] = (uint8_t)body;
        sig = der;
        siglen = body + 2;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL)
        return SL_ENOMEM;
    EVP_PKEY_CTX *pctx = NULL;
    ERR_set_mark();
    int ok = EVP_DigestVerifyInit_ex(md, &pctx, "SHA256", NULL, NULL, j->pkey, NULL) == 1;
    if (ok && alg == SL_JWT_RS256)
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0;
    if (ok)
        ok = EVP_DigestVerify(md, sig, siglen, (const unsigned char *)msg, n) == 1;
    /* A failed verification queues errors on this thread; a worker's next TLS call
     * would read them as its own (SSL_get_error), so drop them. */
    ERR_pop_to_mark();
    EVP_MD_CTX_free(md);
    return ok ? SL_OK : SL_EINVAL;
}

/* Header checks. SL_OK and *alg set, SL_EBADMSG or SL_EINVAL. */
static int check_header(const sl_jwt_t *j, json_t *h, unsigned *alg)
{
    if (!json_is_object(h))
        return SL_EBADMSG;
    json_t *a = json_object_get(h, "alg");
    if (!json_is_string(a))
        return SL_EBADMSG;
    *alg = sl_jwt_alg_from_name(json_string_value(a), json_string_length(a));
    /* "none" and unknown names map to 0, never in the set. Each allowed algorithm has
     * exactly one key (sl_jwt_new), so an allowed alg cannot pick another family's key. */
    if ((*alg & j->algorithms) == 0)
        return SL_EINVAL;
    json_t *typ = json_object_get(h, "typ");
    if (typ != NULL && (!json_is_string(typ) || json_string_length(typ) != 3 ||
                        !ascii_caseeq(json_string_value(typ), "JWT", 3)))
        return SL_EINVAL;
    /* RFC 7515 §4.1.11: extensions we do not understand (we understand none) must be
     * refused; this also refuses unencoded payloads (RFC 7797 "b64": false). */
    if (json_object_get(h, "crit") != NULL)
        return SL_EINVAL;
    return SL_OK;
}

/* A NumericDate claim: absent (1), an integer or real number (0, in *v), else -1. */
static int numeric_date(json_t *claims, const char *name, double *v, int64_t *iv, int *is_int)
{
    json_t *x = json_object_get(claims, name);
    if (x == NULL)
        return 1;
    if (json_is_integer(x)) {
        *iv = json_integer_value(x);
        *is_int = 1;
        return 0;
    }
    if (json_is_real(x)) {
        *v = json_real_value(x);
        *is_int = 0;
        return 0;
    }
    return -1;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a + b < a ? UINT64_MAX : a + b;
}

/* exp > now - leeway and nbf <= now + leeway, in exact integer arithmetic when the
 * claims are integers (the common case). SL_OK or SL_EINVAL. */
static int check_times(const sl_jwt_t *j, json_t *claims, uint64_t now)
{
    double d = 0;
    int64_t i = 0;
    int is_int = 0;
    int r = numeric_date(claims, "exp", &d, &i, &is_int);
    if (r < 0)
        return SL_EINVAL;
    if (r == 0) {
        /* now < exp + leeway */
        int alive = is_int ? i > 0 && now < sat_add((uint64_t)i, j->leeway_s)
                           : (double)now < d + (double)j->leeway_s;
        if (!alive)
            return SL_EINVAL;
    }
    r = numeric_date(claims, "nbf", &d, &i, &is_int);
    if (r < 0)
        return SL_EINVAL;
    if (r == 0) {
        uint64_t limit = sat_add(now, j->leeway_s);
        int valid = is_int ? i <= 0 || (uint64_t)i <= limit : d <= (double)limit;
        if (!valid)
            return SL_EINVAL;
    }
    return SL_OK;
}

/* The user claim into out. Length, SL_EINVAL or SL_ETOOBIG. */
static int copy_user(const sl_jwt_t *j, json_t *claims, char *out, size_t outcap)
{
    json_t *u = json_object_get(claims, j->user_claim);
    char num[32];
    const char *s;
    size_t n;
    if (json_is_string(u)) {
        s = json_string_value(u);
        n = json_string_length(u);
        if (n == 0 || memchr(s, '\0', n) != NULL)
            return SL_EINVAL;
    } else if (json_is_integer(u)) {
        n = (size_t)snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(u));
        s = num;
    } else if (json_is_real(u)) {
        /* Only integral values that a double holds exactly: 42.0 is user "42". */
        double d = json_real_value(u);
        if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0) || d != (double)(int64_t)d)
            return SL_EINVAL;
        n = (size_t)snprintf(num, sizeof num, "%lld", (long long)d);
        s = num;
    } else {
        return SL_EINVAL;
    }
    /* n < SL_JWT_MAX_TOKEN: the int return cannot overflow. */
    if (out != NULL || outcap != 0) {
        if (out == NULL || n >= outcap)
            return SL_ETOOBIG;
        memcpy(out, s, n);
        out[n] = '\0';
    }
    return (int)n;
}

int sl_jwt_verify(const sl_jwt_t *j, const char *token, size_t len, uint64_t now_s, char *out,
                  size_t outcap)
{
    if (j == NULL || token == NULL || len == 0 || len > SL_JWT_MAX_TOKEN)
        return SL_EBADMSG;
    const char *dot1 = memchr(token, '.', len);
    if (dot1 == NULL)
        return SL_EBADMSG;
    const char *dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
    if (dot2 == NULL)
        return SL_EBADMSG;
    const char *end = token + len;
    if (memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)) != NULL)
        return SL_EBADMSG; /* a JWE has five parts; we take only JWS */

    size_t henc = (size_t)(dot1 - token);
    unsigned alg = 0;
    for (size_t k = 0; k < j->nknown; k++)
        if (j->known[k].len == henc && memcmp(j->known[k].enc, token, henc) == 0) {
            alg = j->known[k].alg;
            break;
        }

    /* All three parts decode into one buffer; the token bound keeps it on the stack. */
    uint8_t buf[SL_JWT_MAX_TOKEN / 4 * 3 + 4];
    uint8_t *hdr = buf;
    long hlen = alg != 0 ? 0 : b64url_decode(token, henc, hdr);
    if (hlen < 0 || (alg == 0 && hlen == 0))
        return SL_EBADMSG;
    uint8_t *pay = hdr + hlen;
    long plen = b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), pay);
    if (plen <= 0)
        return SL_EBADMSG;
    uint8_t *sig = pay + plen;
    long slen = b64url_decode(dot2 + 1, (size_t)(end - dot2 - 1), sig);
    if (slen < 0)
        return SL_EBADMSG;

    int rc;
    if (alg == 0) {
        /* Duplicate keys are refused: {"alg":"HS256","alg":"none"} must not mean
         * different things to different parsers. */
        json_t *h = json_loadb((const char *)hdr, (size_t)hlen, JSON_REJECT_DUPLICATES, NULL);
        if (h == NULL)
            return SL_EBADMSG;
        rc = check_header(j, h, &alg);
        json_decref(h);
        if (rc != SL_OK)
            return rc;
    }

    const char *signed_part = token;
    size_t signed_len = (size_t)(dot2 - token);
    rc = alg == SL_JWT_HS256 ? verify_hs256(j, signed_part, signed_len, sig, (size_t)slen)
                             : verify_pkey(j, alg, signed_part, signed_len, sig, (size_t)slen);
    if (rc != SL_OK)
        return rc;

    json_t *claims = json_loadb((const char *)pay, (size_t)plen, JSON_REJECT_DUPLICATES, NULL);
    if (claims == NULL)
        return SL_EBADMSG;
    if (!json_is_object(claims)) {
        json_decref(claims);
        return SL_EBADMSG;
    }
    rc = check_times(j, claims, now_s);
    if (rc == SL_OK)
        rc = copy_user(j, claims, out, outcap);
    json_decref(claims);
    return rc;
}

/* ---- Authorization header --------------------------------------------------------- */

static int is_token68_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

const char *sl_jwt_bearer(const char *value, size_t len, size_t *toklen)
{
    if (value == NULL)
        return NULL;
    const char *p = value, *end = value + len;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (end - p < 7 || !ascii_caseeq(p, "Bearer", 6) || p[6] != ' ')
        return NULL;
    p += 7;
    while (p < end && *p == ' ')
        p++;
    const char *t = p;
    while (p < end && is_token68_char((unsigned char)*p))
        p++;
    if (p == t)
        return NULL;
    while (p < end && *p == '=')
        p++;
    if (p != end)
        return NULL;
    if (toklen != NULL)
        *toklen = (size_t)(end - t);
    return t;
}
