/* config.h - the YAML configuration: loading, validation and the resulting structs.
 * Owns: parsing a file into sl_config_t, every error reported as FILE:LINE:COL: message.
 * Keys are declared in tables (key, type, offset, validator); the loader never switches
 * on a feature's name. Runs on the main/control thread only; never on a worker loop. */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "alert_expr.h"
#include "common.h"

#define SL_CONF_MAX_LISTEN 16
#define SL_CONF_MAX_ERRORS 64

/* A parsed "host:port" (IPv4 "1.2.3.4:80", IPv6 "[::1]:80"; host names are rejected:
 * resolving them would block). text is the address as written, NUL-terminated. */
typedef struct sl_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64];
} sl_addr_t;

/* A file named in the configuration, with where it was named (for errors found later, at
 * certificate reload). */
typedef struct sl_conf_file {
    char *path;
    int line, col;
} sl_conf_file_t;

/* One certificate of a TLS listener: a PEM chain (leaf first) and its private key. */
typedef struct sl_tls_cert_conf {
    sl_conf_file_t cert, key;
    int line, col;
} sl_tls_cert_conf_t;

/* ALPN protocol ids, in tls.alpn. */
enum sl_alpn { SL_ALPN_HTTP11 = 1, SL_ALPN_H2 = 2 };
#define SL_TLS_MAX_CERTS 64
#define SL_TLS_MAX_ALPN 4

/* listen[i].tls. Either cert + key (one certificate) or certificates: [...]; the loader
 * folds the first form into the second, so users of the struct read certs[] only. The
 * loader has checked every file: readable PEM, key matching its certificate. */
typedef struct sl_tls_conf {
    sl_conf_file_t cert, key;         /* the one-certificate form (moved into certs[0]) */
    sl_tls_cert_conf_t *certs;        /* certs[0] is the default (no SNI match) */
    uint32_t ncerts;
    uint8_t alpn[SL_TLS_MAX_ALPN];    /* enum sl_alpn, server preference order */
    uint32_t nalpn;                   /* default: http/1.1 only */
    int line, col;
} sl_tls_conf_t;

typedef struct sl_server_conf {
    sl_addr_t addr;           /* unset (addr.len 0) when the address is a host name */
    char *host;               /* "backend.default.svc:8080" written as a name: the name */
    uint16_t port;            /* ... and its port */
    uint64_t resolve_ms;      /* resolve: re-resolve the name this often; 0 = once at start */
    uint32_t weight;          /* default 1, 1..1000 */
    uint32_t max_fails;       /* default 1 (nginx); 0 = never mark down */
    uint64_t fail_timeout_ms; /* default 10s */
} sl_server_conf_t;

enum sl_balance { SL_BALANCE_ROUND_ROBIN = 0, SL_BALANCE_LEAST_CONN, SL_BALANCE_RANDOM_TWO, SL_BALANCE_HASH };

/* hash_key: what `balance: hash` hashes. */
enum sl_hash_key { SL_HASH_IP = 0, SL_HASH_HEADER, SL_HASH_PATH, SL_HASH_COOKIE };

#define SL_CONF_MAX_STATUS 16

/* health_check: active checks from the control thread. enabled = 0 when absent. */
typedef struct sl_health_conf {
    int enabled;
    char *path;            /* default "/health" */
    uint64_t interval_ms;  /* default 10s */
    uint64_t timeout_ms;   /* default 2s */
    uint32_t fails;        /* consecutive failures that take a server out; default 3 */
    uint32_t passes;       /* consecutive successes that bring one (back) in; default 2 */
    uint16_t expect_status[SL_CONF_MAX_STATUS]; /* none listed: any 2xx or 3xx */
    uint32_t nexpect;
} sl_health_conf_t;

/* services.NAME.autoscale: sluice runs the service's backend processes (ops/autoscale.c)
 * and scales them as the Kubernetes HPA does (ops/hpa.c). */
enum sl_as_metric { SL_AS_CPU, SL_AS_INFLIGHT, SL_AS_RPS };
enum sl_as_policy_type { SL_AS_PODS, SL_AS_PERCENT };
enum sl_as_select { SL_AS_SELECT_MAX, SL_AS_SELECT_MIN, SL_AS_SELECT_DISABLED };
#define SL_AS_MAX_POLICIES 4

typedef struct sl_as_policy_conf {
    int type;        /* enum sl_as_policy_type */
    uint32_t value;
    uint64_t period_ms;
    int line, col;
} sl_as_policy_conf_t;

typedef struct sl_as_behavior_conf {
    uint64_t window_ms;          /* stabilization_window; SL_ALERT_UNSET: the default */
    sl_as_policy_conf_t *policies; /* NULL: the defaults */
    uint32_t npolicies;
    int select;                  /* enum sl_as_select */
} sl_as_behavior_conf_t;

typedef struct sl_autoscale_conf {
    int enabled;
    char *command;          /* run with /bin/sh -c; {port} is replaced by the instance's port */
    uint32_t port_lo, port_hi;
    uint32_t min, max, initial; /* initial: default min */
    int has_initial;
    char **env;             /* "NAME=value", nenv of them */
    uint32_t nenv;
    char *workdir;
    int metric;             /* enum sl_as_metric: which target_* was given */
    double target;          /* percent of a core (cpu), requests in flight or per second */
    uint64_t sync_period_ms;  /* default 15s */
    uint32_t tolerance_pct;   /* default 10 */
    sl_as_behavior_conf_t up, down;
    uint64_t drain_timeout_ms;  /* default 30s: in-flight requests may finish before SIGTERM */
    uint64_t stop_grace_ms;     /* default 10s: SIGTERM, then SIGKILL */
    int line, col;
} sl_autoscale_conf_t;

typedef struct sl_service_conf {
    char *name;                /* the key under services: */
    int balance;               /* enum sl_balance; default round_robin */
    uint32_t keepalive;        /* idle upstream connections kept per worker; default 32; 0 = none */
    uint64_t connect_ms;       /* timeouts.connect, default 5s */
    uint64_t send_ms;          /* timeouts.send, default 60s */
    uint64_t read_ms;          /* timeouts.read, default 60s */
    uint32_t retries;          /* default 0 */
    uint32_t retry_methods;    /* SL_METHOD_BIT set retried after bytes were sent;
                                * default GET, HEAD, OPTIONS (PUT, DELETE when listed) */
    uint32_t retry_budget_percent;  /* retry_budget.percent, default 20 */
    uint32_t retry_budget_min;      /* retry_budget.min_concurrency, default 3 */
    uint16_t fail_status[SL_CONF_MAX_STATUS]; /* fail_on_status: answers that count as a
                                               * failure for max_fails; default 502 503 504 */
    uint32_t nfail_status;
    int hash_key;              /* enum sl_hash_key; default ip */
    char *hash_key_name;       /* header or cookie name for SL_HASH_HEADER/COOKIE */
    sl_server_conf_t *servers; /* at least one */
    uint32_t nservers;
    sl_server_conf_t *read_servers; /* read replicas: GET/HEAD/OPTIONS go here */
    uint32_t nread_servers;
    uint64_t read_your_writes_ms;   /* 0 = off */
    sl_health_conf_t health;
    sl_autoscale_conf_t autoscale;
    int line, col;             /* where the service was declared (for later errors) */
} sl_service_conf_t;

/* A rate limit (rate_limits entries, global and per route). */
enum sl_rl_key { SL_RLKEY_IP = 0, SL_RLKEY_USER, SL_RLKEY_HEADER, SL_RLKEY_ROUTE };

typedef struct sl_limit_conf {
    int key;            /* enum sl_rl_key */
    char *key_name;     /* header name for SL_RLKEY_HEADER */
    uint32_t count;     /* rate: count / period */
    uint64_t period_ms;
    uint32_t burst;     /* burst: requests beyond the first at once */
    int has_burst;      /* 0: `count` at once (no burst given) */
    int dry_run;        /* count, never reject (shadow mode) */
    char *name;         /* policy name in the RateLimit fields; default: the period
                         * ("second", "minute", "hour", "day"), prefixed "route_" on routes */
    int line, col;
} sl_limit_conf_t;

/* trusted_proxies entries: client addresses whose X-Forwarded-For is believed. */
typedef struct sl_cidr {
    int family;         /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    uint32_t prefix;
} sl_cidr_t;

enum { SL_ALG_HS256 = 1, SL_ALG_RS256 = 2, SL_ALG_ES256 = 4 };

/* redis: the shared state. enabled = 0 when absent (everything in-process). */
enum { SL_FAIL_OPEN = 0, SL_FAIL_CLOSED };
typedef struct sl_redis_conf {
    int enabled;
    sl_addr_t addr;
    int on_failure;        /* SL_FAIL_OPEN: fall back to the local limiter; CLOSED: 503 */
    uint64_t timeout_ms;   /* deadline of one call, default 20ms */
    char *key_prefix;      /* default "sluice:" */
} sl_redis_conf_t;

typedef struct sl_auth_conf {
    int jwt;            /* auth.jwt present */
    char *secret_env;   /* env var with the HS256 secret */
    char *public_key;   /* PEM file with the RS256/ES256 public key */
    uint32_t algorithms;/* SL_ALG_* bits; default HS256 */
    char *user_claim;   /* default "sub" */
    uint64_t leeway_ms; /* exp/nbf leeway, default 30s */
} sl_auth_conf_t;

/* A route's `cache:` (RFC 9111 shared cache for its GET/HEAD answers). */
typedef struct sl_route_cache_conf {
    int enabled;          /* the key is present (and enabled: not false) */
    uint64_t ttl_ms;      /* lifetime when the origin gives none; 0: such answers not stored */
    uint64_t swr_ms;      /* stale_while_revalidate when the response has none */
    uint64_t sie_ms;      /* stale_if_error when the response has none */
    int override;         /* ttl replaces the origin's lifetime */
    int allow_set_cookie; /* store answers carrying Set-Cookie */
} sl_route_cache_conf_t;

/* A route's static: target (docs/static.md): files under root answer the route. */
typedef struct sl_static_conf {
    int enabled;
    char *root;               /* directory; checked at load (exists, is a directory) */
    char *index;              /* index file name for directory paths (default index.html) */
    uint32_t compress;        /* SL_COMPRESS_HAVE_* bits: codings offered (default br, gzip) */
    uint64_t compress_min;    /* smaller files are sent as they are (default 1k) */
    uint64_t compress_max;    /* larger ones only from precompressed siblings (default 1m) */
    char *immutable_pattern;  /* "auto" (fingerprinted names), "none", or an fnmatch glob
                                 matched against the path below root */
    uint64_t max_age_ms;      /* Cache-Control max-age for the rest; 0: none sent */
    int dotfiles;             /* serve names starting with '.' (default no) */
    int symlinks;             /* follow symlinks that stay inside root (default yes) */
    uint64_t file_cache;      /* bytes of small files kept in memory (default 16m; 0: off) */
    uint64_t file_cache_valid_ms; /* how long a kept file is served before it is read
                                     again (default 1s) */
} sl_static_conf_t;

typedef struct sl_route_conf {
    char *name;          /* optional; the route's label in metrics and alert selectors
                            (default: its path_prefix) */
    char *path_prefix;   /* match.path_prefix; required, must start with '/' */
    size_t path_prefix_len;
    char *host;          /* match.host; NULL = any; compared case-insensitively, port ignored */
    uint32_t methods;    /* match.methods as SL_METHOD_BIT(SL_M_*) bits; 0 = any method */
    char *service;       /* service name */
    int service_index;   /* index into sl_config_t.services, resolved by the loader */
    sl_limit_conf_t *rate_limits; /* the route's own limits, besides the global ones */
    uint32_t nrate_limits;
    int require_auth;    /* 401 without a valid JWT */
    sl_route_cache_conf_t cache;
    int dedupe;          /* identical concurrent GETs share one upstream answer */
    sl_static_conf_t stat; /* static: target; service is NULL then */
    uint32_t compress;     /* SL_COMPRESS_HAVE_* codings for proxied answers; 0: none */
    uint64_t compress_min; /* smaller answers (by Content-Length) pass as they are */
    int line, col;
} sl_route_conf_t;

/* The top-level `cache:` (the L1 store every caching route shares). */
typedef struct sl_cache_conf {
    uint64_t memory;          /* budget, bytes (default 256m) */
    uint64_t max_object;      /* larger bodies stream through uncached (default 8m) */
    int coalesce;             /* concurrent misses share one upstream request (default on) */
    uint64_t lock_timeout_ms; /* a waiter goes upstream itself after this (default 5s) */
    uint64_t hit_for_pass_ms; /* an unstorable answer stops coalescing its key this long */
    uint32_t max_waiters;     /* waiters per fill (default 10000) */
    int redis;                /* the L2 tier in the top-level redis (default off) */
} sl_cache_conf_t;

/* One alert rule (alerts: list, or alerts.rules). A rule named like a built-in one
 * changes it (a rule without expr keeps the built-in's); enabled: false turns it off. */
typedef struct sl_alert_rule_conf {
    char *name;
    char *expr;          /* as written; NULL: the built-in's */
    sl_alert_expr_t e;   /* parsed expr */
    uint64_t for_ms;     /* SL_ALERT_UNSET: the built-in's, or 0 */
    uint64_t window_ms;  /* SL_ALERT_UNSET: the built-in's, or the signal's default */
    char *severity;      /* NULL: the built-in's, or "warning" */
    char *summary;
    int enabled;         /* default 1 */
    int line, col;
} sl_alert_rule_conf_t;

#define SL_ALERT_UNSET UINT64_MAX
#define SL_ALERT_WINDOW_MAX_MS (15 * 60000ull) /* the sampler keeps 15 minutes */

typedef struct sl_alerts_conf {
    int defaults;        /* the built-in rules are on (default 1) */
    char *webhook;       /* http://host:port/path for Alertmanager-style notifications, or NULL */
    sl_alert_rule_conf_t *rules;
    uint32_t nrules;
} sl_alerts_conf_t;

typedef struct sl_limits_conf {
    uint32_t max_connections;   /* default 10000 (per process) */
    uint64_t header_timeout_ms; /* default 10s: whole request head must arrive within it */
    uint64_t idle_timeout_ms;   /* default 60s: keep-alive connection with no request */
    uint64_t max_header_bytes;  /* default 16k */
    uint64_t max_body_bytes;    /* default 10m; 0 = unlimited */
    uint64_t shutdown_timeout_ms; /* default 30s */
    uint64_t rate_limit_keys;     /* default 1000000: bound of the rate-limit table */
    uint32_t h2_max_concurrent_streams; /* default 128: SETTINGS_MAX_CONCURRENT_STREAMS */
} sl_limits_conf_t;

typedef struct sl_config {
    char *path;                        /* file it was loaded from */
    sl_addr_t listen[SL_CONF_MAX_LISTEN];
    uint32_t nlisten;                  /* default one: 127.0.0.1:8080 */
    sl_tls_conf_t *listen_tls[SL_CONF_MAX_LISTEN]; /* NULL: plain HTTP on listen[i] */
    uint32_t workers;                  /* 0 = auto (one per core) */
    sl_addr_t admin_listen;            /* default 127.0.0.1:9901 */
    int admin_enabled;                 /* 1 unless admin: {listen: off}? always 1 for now */
    char *admin_token_env;             /* NULL = no token required */
    sl_limits_conf_t limits;
    char *access_log;                  /* access_log: path, "stderr", or NULL = off */
    char *pid_file;                    /* pid_file: written at start, removed at exit;
                                        * `sluice -s reload` signals the PID in it */
    sl_service_conf_t *services;
    uint32_t nservices;
    sl_route_conf_t *routes;
    uint32_t nroutes;
    sl_limit_conf_t *rate_limits;      /* global: apply to every route */
    uint32_t nrate_limits;
    sl_cidr_t *trusted_proxies;
    uint32_t ntrusted_proxies;
    sl_auth_conf_t auth;
    sl_redis_conf_t redis;
    sl_alerts_conf_t alerts;
    sl_cache_conf_t cache;
} sl_config_t;

/* One problem found in a configuration. */
typedef struct sl_config_error {
    int line, col; /* 1-based; 0 when not tied to a position */
    char msg[400]; /* room for two file names (TLS errors) */
} sl_config_error_t;

typedef struct sl_config_errors {
    sl_config_error_t e[SL_CONF_MAX_ERRORS];
    int n;         /* errors recorded (at most SL_CONF_MAX_ERRORS; further ones are counted in dropped) */
    int dropped;
} sl_config_errors_t;

/* Load and validate the YAML file at path. On success returns a config the caller owns
 * (free with sl_config_free) and errs->n == 0. On any problem returns NULL with every
 * problem found in errs (the loader keeps going after the first error). */
sl_config_t *sl_config_load(const char *path, sl_config_errors_t *errs);

/* Same from a memory buffer; name is used as the path in messages (fuzzing, tests). */
sl_config_t *sl_config_load_mem(const char *name, const char *data, size_t len,
                                sl_config_errors_t *errs);

/* Print errors as "name:LINE:COL: message" lines (or "name: message" without a position). */
void sl_config_errors_print(FILE *out, const char *name, const sl_config_errors_t *errs);

void sl_config_free(sl_config_t *cfg);

/* The unit parsers, one way everywhere. Each returns 0 and sets *out, or SL_EINVAL.
 * Durations: "<digits><unit>" with unit ms|s|m|h|d, e.g. "500ms", "10s", "5m"; a bare
 *   integer is seconds ("30" = 30s). Result in milliseconds; overflow is SL_EINVAL.
 * Sizes: "<digits>[k|m|g]" (binary: 16k = 16384), case-insensitive unit, optional
 *   trailing "b"/"B" ("16kb"). Result in bytes.
 * Addresses: "IPv4:port" or "[IPv6]:port", port 1..65535. */
int sl_parse_duration(const char *s, size_t len, uint64_t *out_ms);
int sl_parse_size(const char *s, size_t len, uint64_t *out_bytes);
int sl_parse_addr(const char *s, size_t len, sl_addr_t *out);
/* Rates: "<count>/<period>" with period second|minute|hour|day, count 1..10^9 (no
 * spaces, no sign). 0, or SL_EINVAL. */
int sl_parse_rate(const char *s, size_t len, uint32_t *count, uint64_t *period_ms);
/* out = sa's IP with port (a resolver's answer); text "ip:port" or "[ip6]:port".
 * 0, or SL_EINVAL for a family other than IPv4/IPv6. */
int sl_addr_from_sockaddr(sl_addr_t *out, const struct sockaddr *sa, uint16_t port);

#endif
