/* tls.c - TLS termination; see tls.h.
 *
 * Certificates. A listener's certificates form a "set": one SSL_CTX per certificate, all
 * configured alike; ctx[0] is the default and every connection's SSL starts from it. The
 * SNI callback moves a connection to another ctx (SSL_set_SSL_CTX) when its server name
 * matches that certificate. The set itself (names, ALPN list, expiry) hangs off ctx[0]'s
 * ex_data and holds a reference on ctx[1..]: it is freed when the last reference to
 * ctx[0] goes. Every SSL holds one on ctx[0] (its session ctx), so a reload that swaps the
 * listener's ctx[0] never frees anything an open connection or a half-done handshake
 * still uses, with no reference counting of our own.
 *
 * Resumption. Session tickets and the server-side session cache both belong to the
 * session ctx, ctx[0] of the set, shared by all workers; a reload starts a new set and so
 * new ticket keys and an empty cache (old sessions fall back to a full handshake). */
#include "tls.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "../core/log.h"
#include "../core/metrics.h"
#include "conn.h"

/* Mozilla "intermediate" TLS 1.2 suites, forward-secret AEAD only (no DHE: it needs
 * parameters and costs more than ECDHE). TLS 1.3 uses OpenSSL's defaults, all good. */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define SESSION_CACHE_SIZE 20480 /* sessions per listener: ~ 20 MB at worst */
#define SESSION_TIMEOUT_S 3600

typedef struct cert_set {
    SSL_CTX *ctx[SL_TLS_MAX_CERTS];
    uint32_t nctx;
    sl_tls_name_t *names; /* every certificate's DNS names, for SNI */
    uint32_t nnames;
    unsigned char alpn[32]; /* ALPN wire format: length-prefixed names */
    unsigned alpn_len;
    int64_t not_after[SL_TLS_MAX_CERTS]; /* unix time, for the expiry gauge */
    char *cert_path[SL_TLS_MAX_CERTS];
} cert_set_t;

struct sl_tls_listener {
    pthread_mutex_t mu; /* guards current against a reload while a worker takes a ref */
    SSL_CTX *current;   /* ctx[0] of the current set; the listener holds one reference */
    char *name;         /* the listen address, for logs */
    char **cert, **key; /* file names, re-read by a reload */
    uint32_t ncerts;
    uint8_t alpn[SL_TLS_MAX_ALPN];
    uint32_t nalpn;
    struct sl_tls_listener *next; /* registry, for the expiry gauge */
    int retired;                  /* a newer generation's listener serves its address */
};

struct sl_tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    uint64_t start_ns;
    uint8_t established, shut, failed;
};

/* ---- metrics and the registry of listeners ---- */

enum { HS_OK = 0, HS_FAILED };
static sl_counter_t *m_handshakes, *m_reused;
static sl_hist_t *m_hs_time;
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static sl_tls_listener_t *registry;
static int set_index = -1;
static pthread_once_t set_index_once = PTHREAD_ONCE_INIT;

static size_t hs_labels(uint64_t key, char *out, size_t cap, void *arg)
{
    (void)arg;
    int n = snprintf(out, cap, "result=\"%s\"", key == HS_OK ? "ok" : "failed");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* Escapes a label value (Prometheus text format: backslash, quote, newline). */
static void put_label(sl_textbuf_t *t, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            sl_text_append(t, "\\", 1);
        if (*s == '\n')
            sl_text_append(t, "\\n", 2);
        else
            sl_text_append(t, s, 1);
    }
}

static void collect_expiry(sl_textbuf_t *t, void *arg)
{
    (void)arg;
    sl_text_printf(t, "# HELP tls_certificate_expiry_seconds When each served certificate "
                      "expires (notAfter), seconds since the epoch; alert on it minus time().\n"
                      "# TYPE tls_certificate_expiry_seconds gauge\n");
    pthread_mutex_lock(&reg_mu);
    for (sl_tls_listener_t *l = registry; l; l = l->next) {
        if (l->retired)
            continue; /* its series is the newer listener's: never two of one name */
        pthread_mutex_lock(&l->mu);
        const cert_set_t *set = SSL_CTX_get_ex_data(l->current, set_index);
        for (uint32_t i = 0; set && i < set->nctx; i++) {
            sl_text_printf(t, "tls_certificate_expiry_seconds{listen=\"");
            put_label(t, l->name);
            sl_text_printf(t, "\",cert=\"");
            put_label(t, set->cert_path[i]);
            sl_text_printf(t, "\"} %lld\n", (long long)set->not_after[i]);
        }
        pthread_mutex_unlock(&l->mu);
    }
    pthread_mutex_unlock(&reg_mu);
}

void sl_tls_metrics_init(void)
{
    m_handshakes = sl_metrics_counter("tls_handshakes_total",
                                      "TLS handshakes with clients, by result (failed: bad "
                                      "protocol version, no shared cipher, plain HTTP...).",
                                      hs_labels, NULL);
    m_reused =
        sl_metrics_counter("tls_session_reused_total",
                           "TLS handshakes that resumed a session (ticket or cache).", NULL, NULL);
    m_hs_time = sl_metrics_hist("tls_handshake_duration_seconds",
                                "From the first byte of the ClientHello to a complete "
                                "handshake.",
                                1, NULL, NULL);
    sl_metrics_collector(collect_expiry, NULL);
}

/* Called from worker threads: metrics registered only when a TLS listener exists. */
static void count_handshake(sl_tls_conn_t *t, int ok)
{
    if (!m_handshakes)
        return;
    sl_counter_add(m_handshakes, ok ? HS_OK : HS_FAILED, 1);
    if (ok) {
        if (SSL_session_reused(t->ssl))
            sl_counter_inc(m_reused);
        if (t->start_ns)
            sl_hist_observe(m_hs_time, 0, (uv_hrtime() - t->start_ns) / 1000);
    }
}

/* ---- SNI names ---- */

int sl_tls_name_match(const char *pattern, const char *host, size_t hostlen)
{
    size_t plen = strlen(pattern);
    if (plen == 0 || hostlen == 0)
        return 0;
    if (pattern[0] == '*' && plen > 2 && pattern[1] == '.') {
        /* "*.example.com": host is "label.example.com" with a non-empty label. */
        const char *dot = memchr(host, '.', hostlen);
        if (!dot || dot == host)
            return 0;
        size_t rest = hostlen - (size_t)(dot - host);
        return rest == plen - 1 && strncasecmp(dot, pattern + 1, rest) == 0;
    }
    return plen == hostlen && strncasecmp(pattern, host, hostlen) == 0;
}

uint32_t sl_tls_pick(const sl_tls_name_t *names, uint32_t n, const char *host, size_t hostlen)
{
    if (hostlen && host[hostlen - 1] == '.')
        hostlen--; /* "example.com." is the same name */
    for (int wild = 0; wild < 2; wild++) {
        for (uint32_t i = 0; i < n; i++) {
            if ((names[i].pattern[0] == '*') != wild)
                continue;
            if (sl_tls_name_match(names[i].pattern, host, hostlen))
                return names[i].cert;
        }
    }
    return 0;
}

/* ---- building a certificate set ---- */

static void set_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    cert_set_t *set = ptr;
    if (!set)
        return;
    for (uint32_t i = 1; i < set->nctx; i++)
        SSL_CTX_free(set->ctx[i]);
    for (uint32_t i = 0; i < set->nnames; i++)
        free(set->names[i].pattern);
    for (uint32_t i = 0; i < set->nctx; i++)
        free(set->cert_path[i]);
    free(set->names);
    free(set);
}

static void make_set_index(void)
{
    set_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, set_free_cb);
}

static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0; /* an encrypted key cannot be used unattended: fail, never prompt */
}

static int sni_cb(SSL *ssl, int *al, void *arg)
{
    (void)al;
    cert_set_t *set = arg;
    const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!host || set->nctx == 1)
        return SSL_TLSEXT_ERR_OK;
    uint32_t i = sl_tls_pick(set->names, set->nnames, host, strlen(host));
    if (i && SSL_set_SSL_CTX(ssl, set->ctx[i]) == NULL)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    return SSL_TLSEXT_ERR_OK;
}

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned inlen, void *arg)
{
    (void)ssl;
    cert_set_t *set = arg;
    unsigned char *sel = NULL;
    /* Server preference: the first of our protocols the client offers. A client that
     * offers none of ours gets no ALPN answer (as nginx does) rather than an alert. */
    if (SSL_select_next_proto(&sel, outlen, set->alpn, set->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static void add_name(cert_set_t *set, uint32_t *cap, const char *s, size_t len, uint32_t cert,
                     int *oom)
{
    if (len == 0 || memchr(s, '\0', len))
        return;
    if (set->nnames == *cap) {
        uint32_t nc = *cap ? *cap * 2 : 8;
        sl_tls_name_t *nn = realloc(set->names, nc * sizeof(*nn));
        if (!nn) {
            *oom = 1;
            return;
        }
        set->names = nn;
        *cap = nc;
    }
    char *p = strndup(s, len);
    if (!p) {
        *oom = 1;
        return;
    }
    set->names[set->nnames].pattern = p;
    set->names[set->nnames].cert = cert;
    set->nnames++;
}

/* The DNS names of x (subjectAltName; the subject CN only when there is none, as
 * RFC 6125 says) into set->names for certificate index cert. */
static int collect_names(cert_set_t *set, uint32_t *cap, X509 *x, uint32_t cert)
{
    int oom = 0;
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int ndns = 0;
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_DNS)
            continue;
        ndns++;
        add_name(set, cap, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
                 (size_t)ASN1_STRING_length(g->d.dNSName), cert, &oom);
    }
    GENERAL_NAMES_free(gens);
    if (ndns == 0) {
        char cn[256];
        int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
        if (n > 0)
            add_name(set, cap, cn, (size_t)n, cert, &oom);
    }
    return oom ? -1 : 0;
}

static void ssl_error(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_get_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    char code[128];
    if (!why && e) {
        ERR_error_string_n(e, code, sizeof(code));
        why = code;
    }
    snprintf(err, errlen, "%s %s: %s", what, file, why ? why : "failed");
    ERR_clear_error();
}

/* The common failure, a file that is missing or unreadable, said plainly. */
static int readable(const char *file, char *err, size_t errlen)
{
    if (access(file, R_OK) == 0)
        return 1;
    snprintf(err, errlen, "cannot read %s: %s", file, strerror(errno));
    return 0;
}

static SSL_CTX *new_ctx(cert_set_t *set, const char *cert, const char *key, char *err,
                        size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    /* Renegotiation is a DoS lever and nothing here needs it; compression is CRIME. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Idle keep-alive connections give their record buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(ctx, no_password);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"sluice", 6);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, SESSION_CACHE_SIZE);
    SSL_CTX_set_timeout(ctx, SESSION_TIMEOUT_S);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, set);
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
        ssl_error(err, errlen, "cipher list", "");
        goto fail;
    }
    if (!readable(cert, err, errlen) || !readable(key, err, errlen))
        goto fail;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        ssl_error(err, errlen, "cannot load certificate", cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        ssl_error(err, errlen, "cannot load key", key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "key %s does not match certificate %s", key, cert);
        ERR_clear_error();
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static int64_t not_after(X509 *x)
{
    struct tm tm;
    const ASN1_TIME *t = X509_get0_notAfter(x);
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

/* A new set from l's files: its ctx[0] (with one reference, for the caller), or NULL
 * with the reason in err. */
static SSL_CTX *build_set(const sl_tls_listener_t *l, char *err, size_t errlen)
{
    pthread_once(&set_index_once, make_set_index);
    cert_set_t *set = calloc(1, sizeof(*set));
    if (!set || set_index < 0) {
        free(set);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (uint32_t i = 0; i < l->nalpn; i++) {
        const char *p = l->alpn[i] == SL_ALPN_H2 ? "h2" : "http/1.1";
        size_t n = strlen(p);
        set->alpn[set->alpn_len++] = (unsigned char)n;
        memcpy(set->alpn + set->alpn_len, p, n);
        set->alpn_len += (unsigned)n;
    }
    uint32_t cap = 0;
    SSL_CTX *ctx0 = NULL;
    for (uint32_t i = 0; i < l->ncerts; i++) {
        SSL_CTX *ctx = new_ctx(set, l->cert[i], l->key[i], err, errlen);
        if (!ctx)
            goto fail;
        set->ctx[set->nctx++] = ctx;
        if (i == 0) {
            ctx0 = ctx;
            SSL_CTX_set_ex_data(ctx0, set_index, set); /* from now on ctx0 owns set */
            SSL_CTX_set_tlsext_servername_callback(ctx0, sni_cb);
            SSL_CTX_set_tlsext_servername_arg(ctx0, set);
        }
        X509 *x = SSL_CTX_get0_certificate(ctx);
        set->not_after[i] = x ? not_after(x) : 0;
        set->cert_path[i] = strdup(l->cert[i]);
        if (!set->cert_path[i] || (x && collect_names(set, &cap, x, i) != 0)) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    return ctx0;
fail:
    if (ctx0)
        SSL_CTX_free(ctx0); /* frees set and ctx[1..] */
    else
        set_free_cb(NULL, set, NULL, 0, 0, NULL);
    return NULL;
}

sl_tls_listener_t *sl_tls_listener_new(const char *name, const sl_tls_conf_t *conf, char *err,
                                       size_t errlen)
{
    sl_tls_listener_t *l = calloc(1, sizeof(*l));
    if (!l)
        goto oom;
    pthread_mutex_init(&l->mu, NULL);
    l->name = strdup(name);
    l->cert = calloc(conf->ncerts, sizeof(char *));
    l->key = calloc(conf->ncerts, sizeof(char *));
    if (!l->name || !l->cert || !l->key)
        goto oom;
    for (uint32_t i = 0; i < conf->ncerts; i++) {
        l->ncerts = i + 1;
        l->cert[i] = strdup(conf->certs[i].cert.path);
        l->key[i] = strdup(conf->certs[i].key.path);
        if (!l->cert[i] || !l->key[i])
            goto oom;
    }
    memcpy(l->alpn, conf->alpn, sizeof(l->alpn));
    l->nalpn = conf->nalpn;
    if (!(l->current = build_set(l, err, errlen))) {
        sl_tls_listener_free(l);
        return NULL;
    }
    pthread_mutex_lock(&reg_mu);
    l->next = registry;
    registry = l;
    pthread_mutex_unlock(&reg_mu);
    return l;
oom:
    snprintf(err, errlen, "out of memory");
    sl_tls_listener_free(l);
    return NULL;
}

void sl_tls_listener_retire(sl_tls_listener_t *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&reg_mu);
    l->retired = 1;
    pthread_mutex_unlock(&reg_mu);
}

void sl_tls_listener_free(sl_tls_listener_t *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&reg_mu);
    for (sl_tls_listener_t **p = &registry; *p; p = &(*p)->next) {
        if (*p == l) {
            *p = l->next;
            break;
        }
    }
    pthread_mutex_unlock(&reg_mu);
    SSL_CTX_free(l->current);
    for (uint32_t i = 0; i < l->ncerts; i++) {
        free(l->cert[i]);
        free(l->key[i]);
    }
    free(l->cert);
    free(l->key);
    free(l->name);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* ---- connections ---- */

sl_tls_conn_t *sl_tls_conn_new(sl_tls_listener_t *l)
{
    sl_tls_conn_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    pthread_mutex_lock(&l->mu);
    t->ssl = SSL_new(l->current); /* takes its own references on the ctx */
    pthread_mutex_unlock(&l->mu);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    /* An empty memory BIO reports "retry", not EOF, so SSL asks for more bytes. */
    BIO_set_mem_eof_return(t->rbio, -1);
    BIO_set_mem_eof_return(t->wbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_accept_state(t->ssl);
    return t;
}

void sl_tls_conn_free(sl_tls_conn_t *t)
{
    if (!t)
        return;
    if (!t->established && !t->failed && t->start_ns)
        count_handshake(t, 0); /* the client went away mid-handshake */
    SSL_free(t->ssl);          /* frees the BIOs */
    free(t);
}

int sl_tls_feed(sl_tls_conn_t *t, const char *p, size_t n)
{
    if (!t->start_ns)
        t->start_ns = uv_hrtime();
    while (n) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        int w = BIO_write(t->rbio, p, chunk);
        if (w <= 0)
            return SL_ENOMEM;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

long sl_tls_read(sl_tls_conn_t *t, char *out, size_t cap)
{
    if (t->failed)
        return SL_TLS_ERROR;
    if (!t->established) {
        ERR_clear_error();
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return SL_AGAIN;
            unsigned long err = ERR_peek_error();
            int reason = ERR_GET_REASON(err);
            ERR_clear_error();
            t->failed = 1;
            count_handshake(t, 0);
            if (reason == SSL_R_HTTP_REQUEST || reason == SSL_R_HTTPS_PROXY_REQUEST)
                return SL_TLS_NOT_TLS;
            return SL_TLS_ERROR;
        }
        t->established = 1;
        count_handshake(t, 1);
    }
    if (cap == 0)
        return SL_AGAIN;
    ERR_clear_error();
    int r = SSL_read(t->ssl, out, cap > INT_MAX ? INT_MAX : (int)cap);
    if (r > 0)
        return r;
    int e = SSL_get_error(t->ssl, r);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return SL_AGAIN;
    if (e == SSL_ERROR_ZERO_RETURN)
        return SL_TLS_EOF;
    t->failed = 1;
    return SL_TLS_ERROR;
}

int sl_tls_has_input(const sl_tls_conn_t *t)
{
    return BIO_ctrl_pending(t->rbio) > 0 || SSL_has_pending(t->ssl);
}

int sl_tls_established(const sl_tls_conn_t *t)
{
    return t->established;
}

int sl_tls_write(sl_tls_conn_t *t, const void *p, size_t n)
{
    if (!t->established || t->failed || t->shut)
        return SL_TLS_ERROR;
    const char *s = p;
    while (n) {
        int chunk = n > (1u << 30) ? 1 << 30 : (int)n;
        ERR_clear_error();
        int w = SSL_write(t->ssl, s, chunk);
        if (w <= 0) {
            ERR_clear_error();
            t->failed = 1;
            return SL_TLS_ERROR;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

void sl_tls_shutdown(sl_tls_conn_t *t)
{
    if (t->shut || !t->established || t->failed)
        return;
    t->shut = 1;
    ERR_clear_error();
    SSL_shutdown(t->ssl); /* writes close_notify to wbio; we do not wait for the peer's */
    ERR_clear_error();
}

size_t sl_tls_out_pending(const sl_tls_conn_t *t)
{
    return BIO_ctrl_pending(t->wbio);
}

size_t sl_tls_out_take(sl_tls_conn_t *t, char *out, size_t cap)
{
    int r = BIO_read(t->wbio, out, cap > INT_MAX ? INT_MAX : (int)cap);
    return r > 0 ? (size_t)r : 0;
}

/* A memory BIO keeps its largest size until freed, and a large response leaves a record
 * or two of capacity behind: an idle keep-alive connection should not hold that. */
#define BIO_KEEP (16 * 1024)

static BIO *trimmed(BIO *b)
{
    BUF_MEM *bm = NULL;
    if (BIO_ctrl_pending(b) || BIO_get_mem_ptr(b, &bm) != 1 || !bm || bm->max <= BIO_KEEP)
        return NULL;
    BIO *n = BIO_new(BIO_s_mem());
    if (n)
        BIO_set_mem_eof_return(n, -1);
    return n;
}

void sl_tls_trim(sl_tls_conn_t *t)
{
    BIO *n;
    if ((n = trimmed(t->rbio)) != NULL) {
        SSL_set0_rbio(t->ssl, n); /* frees the old one */
        t->rbio = n;
    }
    if ((n = trimmed(t->wbio)) != NULL) {
        SSL_set0_wbio(t->ssl, n);
        t->wbio = n;
    }
}

int sl_tls_alpn_h2(const sl_conn_t *c)
{
    if (!c->tls || !c->tls->established)
        return 0;
    const unsigned char *p = NULL;
    unsigned len = 0;
    SSL_get0_alpn_selected(c->tls->ssl, &p, &len);
    return len == 2 && p[0] == 'h' && p[1] == '2';
}
