/* jwt.h - JSON Web Token verification (RFC 7519 over compact JWS, RFC 7515) for HS256,
 * RS256 and ES256: signature, time claims, and the identity claim per-user limits key on.
 * Owns: the verification keys, read-only after sl_jwt_new and shared by every worker.
 * Never blocks, never trusts a claim before the signature over it is verified, never
 * accepts "alg":"none", and never uses a key with an algorithm of another family. */
#ifndef SL_JWT_H
#define SL_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "../core/common.h"

/* Algorithms, as a bit set in sl_jwt_conf_t.algorithms. */
#define SL_JWT_HS256 0x1u /* HMAC-SHA256 with conf.secret */
#define SL_JWT_RS256 0x2u /* RSASSA-PKCS1-v1_5 SHA-256, RSA public key of 2048 bits or more */
#define SL_JWT_ES256 0x4u /* ECDSA P-256 SHA-256, signature as raw R||S (64 bytes) */
#define SL_JWT_ALL (SL_JWT_HS256 | SL_JWT_RS256 | SL_JWT_ES256)

#define SL_JWT_MAX_TOKEN 8192      /* longer tokens are rejected unread (SL_EBADMSG) */
#define SL_JWT_DEFAULT_LEEWAY_S 30 /* clock skew allowed on exp and nbf */

/* The configuration. Nothing here is kept: sl_jwt_new copies what it needs. */
typedef struct sl_jwt_conf {
    const char *secret;         /* HS256 key bytes (need not be text), or NULL */
    size_t secret_len;          /* RFC 7518 asks for 32 bytes or more; 1 is accepted */
    const char *public_key_pem; /* RS256 (RSA) or ES256 (EC P-256) public key, PEM text
                                 * (SubjectPublicKeyInfo, or PKCS#1 "RSA PUBLIC KEY"), or NULL */
    unsigned algorithms;        /* SL_JWT_* bit set; each needs its key (above) */
    const char *user_claim;     /* the identity claim; NULL or "" means "sub" */
    uint64_t leeway_s;          /* clock skew allowed on exp/nbf; see has_leeway */
    int has_leeway;             /* 0: leeway_s is ignored and 30 s is used */
} sl_jwt_conf_t;

typedef struct sl_jwt sl_jwt_t;

/* A verifier for conf c. Every algorithm in c->algorithms must have its key: HS256 a
 * non-empty secret, RS256 an RSA key of >= 2048 bits, ES256 an EC P-256 key (so one
 * verifier takes RS256 or ES256, not both). A secret that is itself a PEM block is
 * refused (the key-confusion mistake). Returns NULL with a one-line message in err
 * (when err is not NULL) on a bad key or conf, or when out of memory.
 * Call at configuration time; the result is immutable and shared by every thread. */
sl_jwt_t *sl_jwt_new(const sl_jwt_conf_t *c, char *err, size_t errlen);

/* Frees j (NULL is fine) once no thread can still call sl_jwt_verify with it. */
void sl_jwt_free(sl_jwt_t *j);

/* Verify the compact JWS token[0..len) (the bytes after "Bearer "; need not be
 * NUL-terminated) at wall-clock time now_s (Unix seconds).
 * Order: strict base64url of the three parts, header JSON ("alg" allowed and matching a
 * key; "typ" if present is "JWT" in any case; no "crit"), signature over the
 * "header.payload" bytes, and only then the claims: "exp" (a number) > now - leeway,
 * "nbf" (a number) <= now + leeway, and the user claim, a non-empty string without NUL
 * bytes or an integral number (rendered in decimal).
 * Returns the user claim's length and copies it, NUL-terminated, into out; or, with out
 * NULL and outcap 0, only its length. Errors: SL_EBADMSG malformed (size over
 * SL_JWT_MAX_TOKEN, not three parts, bad base64url, '=' padding, bad JSON, duplicate
 * keys, header without a string "alg"); SL_EINVAL not acceptable (bad signature, alg
 * not allowed or "none", expired, not yet valid, claim missing or of the wrong type);
 * SL_ETOOBIG the claim does not fit in outcap - 1 bytes (never truncated: a cut identity
 * could merge two users); SL_ENOMEM. Thread-safe: any number of threads at once on one j.
 */
int sl_jwt_verify(const sl_jwt_t *j, const char *token, size_t len, uint64_t now_s, char *out,
                  size_t outcap);

/* The token in an Authorization field value value[0..len): "Bearer" in any case, one
 * space or more, then a non-empty token68 (RFC 9110 §11.4: A-Z a-z 0-9 - . _ ~ + /
 * then '=' only at the end); surrounding spaces and tabs are ignored. Returns a pointer
 * into value and sets *toklen, or NULL when the value is not a Bearer credential. */
const char *sl_jwt_bearer(const char *value, size_t len, size_t *toklen);

/* base64url without padding of in[0..n) into out (room for 4 * ceil(n / 3) bytes; not
 * NUL-terminated); returns the length. For building tokens (tests, fuzzing). */
size_t sl_jwt_b64url(const void *in, size_t n, char *out);

/* The SL_JWT_* bit for an algorithm name ("HS256", exact case as in JWS), or 0. For the
 * configuration loader's "algorithms" list. */
unsigned sl_jwt_alg_from_name(const char *name, size_t len);

#endif
