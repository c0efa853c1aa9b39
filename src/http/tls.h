/* tls.h - TLS termination for client connections (OpenSSL 3, memory BIOs).
 * Owns: each TLS listener's certificates (one SSL_CTX per certificate, SNI picks one),
 * ALPN, session resumption, certificate reload, the TLS metrics, and the per-connection
 * TLS state. It only ever moves bytes between memory buffers: the socket, the buffers and
 * the timeouts stay in conn.c. Never blocks and never touches a socket.
 * Threads: listeners are built and reloaded on the control thread; connections live on
 * their worker's loop. The SSL_CTX of a listener is shared by every worker (OpenSSL
 * locks its session cache), so session tickets and cached sessions work across workers. */
#ifndef SL_TLS_H
#define SL_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "../core/config.h"

typedef struct sl_conn sl_conn_t;
typedef struct sl_tls_listener sl_tls_listener_t;
typedef struct sl_tls_conn sl_tls_conn_t;

/* Register the TLS metric families (they live until sl_metrics_reset). Call once per
 * server run, before worker threads start (server.c does, whether or not a listener uses
 * TLS yet: a reload may add one); a reload must not call it again. */
void sl_tls_metrics_init(void);

/* Build a listener (name: its address, for logs and metrics) from conf (checked by the config
 * loader, but files may have changed since): NULL on failure with the reason in err. conf must
 * outlive the listener only during this call (everything needed later is copied). A
 * configuration reload builds new listeners (server.c: one set per worker generation).
 */
sl_tls_listener_t *sl_tls_listener_new(const char *name, const sl_tls_conf_t *conf, char *err,
                                       size_t errlen);
/* Drop the listener; connections that still use its certificates keep them alive. */
/* l stays in use for its connections, but a newer listener (a reload) now reports the
 * certificates of its address: leave it out of tls_certificate_expiry_seconds. */
void sl_tls_listener_retire(sl_tls_listener_t *l);
void sl_tls_listener_free(sl_tls_listener_t *l);


/* ---- one connection (its worker's loop only) ---- */

/* A TLS session for a new connection on l, in the server role. NULL when out of memory. */
sl_tls_conn_t *sl_tls_conn_new(sl_tls_listener_t *l);
void sl_tls_conn_free(sl_tls_conn_t *t);

/* Ciphertext received from the peer. Returns 0, or SL_ENOMEM. */
int sl_tls_feed(sl_tls_conn_t *t, const char *p, size_t n);

/* Results of sl_tls_read beyond a byte count. */
#define SL_TLS_EOF 0          /* the peer sent close_notify */
#define SL_TLS_ERROR (-100)   /* fatal: handshake failure, bad record; close */
#define SL_TLS_NOT_TLS (-101) /* the first bytes were a plain HTTP request; close silently */

/* Advance the handshake if needed, then decrypt into out[0, cap). Returns bytes (> 0),
 * SL_AGAIN (needs more ciphertext), or one of SL_TLS_EOF / SL_TLS_ERROR / SL_TLS_NOT_TLS.
 * Handshake results are counted here. Output it produces waits in sl_tls_out_pending. */
long sl_tls_read(sl_tls_conn_t *t, char *out, size_t cap);
/* Ciphertext received but not yet decrypted, or decrypted bytes not yet read. */
int sl_tls_has_input(const sl_tls_conn_t *t);
/* 1 once the handshake is complete. */
int sl_tls_established(const sl_tls_conn_t *t);

/* Encrypt n plaintext bytes (copied: the caller may release p at once). 0 or
 * SL_TLS_ERROR. Only after the handshake. */
int sl_tls_write(sl_tls_conn_t *t, const void *p, size_t n);
/* Queue close_notify (once). */
void sl_tls_shutdown(sl_tls_conn_t *t);
/* Ciphertext waiting to be sent, and taking it: copies up to cap bytes into out. */
size_t sl_tls_out_pending(const sl_tls_conn_t *t);
size_t sl_tls_out_take(sl_tls_conn_t *t, char *out, size_t cap);

/* Give back buffer memory a large transfer left behind (the connection is going idle).
 * Cheap when there is none. */
void sl_tls_trim(sl_tls_conn_t *t);

/* 1 when ALPN chose "h2" on c's TLS session (0 for plain connections and http/1.1), for
 * the HTTP/2 layer to take the connection over after the handshake. */
int sl_tls_alpn_h2(const sl_conn_t *c);

/* ---- SNI name matching (pure; unit-tested) ---- */

/* Does host (a server name from SNI, hostlen bytes, no trailing dot) match pattern (a
 * certificate's DNS name, NUL-terminated)? Case-insensitive; "*.example.com" matches
 * exactly one label in front of example.com (not example.com, not a.b.example.com). */
int sl_tls_name_match(const char *pattern, const char *host, size_t hostlen);

/* The certificate for host among n (pattern, certificate index) pairs: an exact name
 * first, then a wildcard, else 0 (the default certificate). */
typedef struct sl_tls_name {
    char *pattern;
    uint32_t cert;
} sl_tls_name_t;
uint32_t sl_tls_pick(const sl_tls_name_t *names, uint32_t n, const char *host, size_t hostlen);

#endif
