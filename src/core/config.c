/* config.c - the YAML configuration loader: declaration tables, unit parsers, errors.
 * Owns: turning bytes into a validated sl_config_t, or into FILE:LINE:COL errors.
 * Never half-succeeds: any error means NULL, with every allocation already freed.
 * Runs on the main/control thread only (it reads files and allocates freely). */

#include "config.h"

#include "../http/compress.h"
#include "../http/static.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <unistd.h>
#include <yaml.h>

/* Bounds. Everything a configuration can make the loader allocate or walk is capped, so
 * a hostile or broken file costs bounded memory and time. YAML aliases can make one node
 * appear many times; every walk below follows the fixed schema (never a generic recursive
 * walk), so the caps per list multiply into a fixed worst case. */
#define MAX_FILE_BYTES (4u << 20)
#define MAX_STRING 4096         /* bytes in any scalar we keep */
#define MAX_ENTRIES 4096        /* services, routes, servers of one service */
#define MAX_SERVERS_TOTAL 16384 /* servers over all services (aliases could multiply) */
#define MAX_KEYS 64             /* pairs in one mapping read through a table */
#define MAX_TABLE_FIELDS 32     /* entries in one declaration table */
#define MAX_DEPTH 64            /* nesting of YAML collections (libyaml's loader recurses) */
#define MAX_NODES (1u << 18)    /* YAML values in the file: at most ~45 MB of libyaml nodes */
#define MAX_METHODS 16          /* items in match.methods */
#define DURATION_MAX_MS (365ull * 24 * 3600 * 1000)
#define PATH_LEN 192     /* "services.blog.timeouts.connect" and the like */
#define QUOTE_SRC_MAX 40 /* source bytes of a value shown in a message */
#define MAX_PEM_BYTES (1u << 20) /* a certificate chain or key file */

#define NO_OFFSET SIZE_MAX

/* ---------------------------------------------------------------------------------------
 * Unit parsers (public). They read exactly len bytes (no NUL needed) and never write *out
 * on failure. */

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* Decimal digits only (no sign, no spaces), overflow-checked. Consumes the leading run of
 * digits of s[0..len) and returns how many, 0 when none or on overflow. */
static size_t scan_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < len && is_digit(s[i]); i++) {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *out = v;
    return i;
}

static bool bytes_eq(const char *s, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    return len == n && memcmp(s, lit, n) == 0;
}

int sl_parse_duration(const char *s, size_t len, uint64_t *out_ms)
{
    /* Units from the longest name down so "ms" is not read as "m" followed by garbage. */
    static const struct {
        const char *name;
        uint64_t ms;
    } units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"", 1000},
    };
    uint64_t v;
    size_t n;

    if (s == NULL || len == 0)
        return SL_EINVAL;
    n = scan_u64(s, len, &v);
    if (n == 0)
        return SL_EINVAL;
    for (size_t i = 0; i < SL_ARRAY_LEN(units); i++) {
        if (!bytes_eq(s + n, len - n, units[i].name))
            continue;
        if (v > UINT64_MAX / units[i].ms)
            return SL_EINVAL;
        *out_ms = v * units[i].ms;
        return 0;
    }
    return SL_EINVAL;
}

int sl_parse_size(const char *s, size_t len, uint64_t *out_bytes)
{
    uint64_t v;
    unsigned shift = 0;
    size_t n;

    if (s == NULL || len == 0)
        return SL_EINVAL;
    n = scan_u64(s, len, &v);
    if (n == 0)
        return SL_EINVAL;
    if (n < len) {
        switch (s[n]) {
        case 'k':
        case 'K':
            shift = 10;
            n++;
            break;
        case 'm':
        case 'M':
            shift = 20;
            n++;
            break;
        case 'g':
        case 'G':
            shift = 30;
            n++;
            break;
        default:
            break;
        }
    }
    if (n < len && (s[n] == 'b' || s[n] == 'B'))
        n++;
    if (n != len)
        return SL_EINVAL;
    if (v > (UINT64_MAX >> shift))
        return SL_EINVAL;
    *out_bytes = v << shift;
    return 0;
}

/* Port: 1..65535, digits only, no sign and no leading zero. */
static int parse_port(const char *s, size_t len, uint16_t *out)
{
    uint64_t v;
    if (len == 0 || len > 5 || s[0] == '0' || scan_u64(s, len, &v) != len)
        return SL_EINVAL;
    if (v < 1 || v > 65535)
        return SL_EINVAL;
    *out = (uint16_t)v;
    return 0;
}

int sl_parse_addr(const char *s, size_t len, sl_addr_t *out)
{
    sl_addr_t a;
    char host[INET6_ADDRSTRLEN + 1];
    const char *hs, *ps;
    size_t hlen, plen;
    uint16_t port;

    if (s == NULL || len == 0 || len >= sizeof(a.text) || memchr(s, '\0', len) != NULL)
        return SL_EINVAL;
    memset(&a, 0, sizeof(a));
    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL || (size_t)(close - s) + 1 >= len || close[1] != ':')
            return SL_EINVAL;
        hs = s + 1;
        hlen = (size_t)(close - hs);
        ps = close + 2;
    } else {
        /* Exactly one ':' : an unbracketed IPv6 address would be ambiguous. */
        const char *colon = memchr(s, ':', len);
        if (colon == NULL || memchr(colon + 1, ':', len - (size_t)(colon - s) - 1) != NULL)
            return SL_EINVAL;
        hs = s;
        hlen = (size_t)(colon - s);
        ps = colon + 1;
    }
    plen = len - (size_t)(ps - s);
    if (parse_port(ps, plen, &port) != 0 || hlen >= sizeof(host))
        return SL_EINVAL;
    memcpy(host, hs, hlen);
    host[hlen] = '\0';

    if (s[0] == '[') {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.ss;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return SL_EINVAL;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        a.len = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
        if (hlen == 0 || (hlen == 1 && host[0] == '*'))
            sin->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return SL_EINVAL;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        a.len = sizeof(*sin);
    }
    memcpy(a.text, s, len);
    a.text[len] = '\0';
    *out = a;
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Loader state and error reporting. */

struct field;
struct table;

/* Bounds shared by every list of one kind, wherever it appears. */
enum budget { B_NONE = 0, B_SERVERS, B__COUNT };
static const uint32_t budget_max[B__COUNT] = {[B_SERVERS] = MAX_SERVERS_TOTAL};

/* A route's `service:` seen while parsing; resolved once every service is known, because
 * routes may come before services in the file. route points into cfg->routes, which is
 * never reallocated. */
struct service_ref {
    sl_route_conf_t *route;
    yaml_mark_t mark;
};

typedef struct conf_ctx {
    sl_config_errors_t *errs;
    sl_config_t *cfg;
    yaml_document_t *doc;
    uint32_t budget[B__COUNT]; /* remaining allowance per shared bound */
    struct service_ref *refs;
    size_t nrefs, refcap;
    const yaml_node_t *key; /* the key whose value is being parsed */
    bool oom;               /* reported once */
} conf_ctx_t;

static int clamp_int(size_t v)
{
    return v >= (size_t)INT_MAX ? INT_MAX : (int)v;
}

__attribute__((format(printf, 4, 0))) static void vreport(conf_ctx_t *c, int line, int col,
                                                          const char *fmt, va_list ap)
{
    sl_config_errors_t *e = c->errs;
    sl_config_error_t *er;

    if (e->n >= SL_CONF_MAX_ERRORS) {
        e->dropped++;
        return;
    }
    er = &e->e[e->n++];
    er->line = line;
    er->col = col;
    vsnprintf(er->msg, sizeof(er->msg), fmt, ap);
}

/* An error at a recorded 1-based line and column. */
__attribute__((format(printf, 4, 5))) static void vreport_at(conf_ctx_t *c, int line, int col,
                                                             const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(c, line, col, fmt, ap);
    va_end(ap);
}

/* An error not tied to a position ("FILE: message"). */
__attribute__((format(printf, 2, 3))) static void report(conf_ctx_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(c, 0, 0, fmt, ap);
    va_end(ap);
}

/* An error at a libyaml mark (0-based there, 1-based in messages). */
__attribute__((format(printf, 3, 4))) static void report_mark(conf_ctx_t *c, yaml_mark_t m,
                                                              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(c, clamp_int(m.line + 1), clamp_int(m.column + 1), fmt, ap);
    va_end(ap);
}

/* An error at a 1-based line:col. */
__attribute__((format(printf, 4, 5))) static void report_at(conf_ctx_t *c, int line, int col,
                                                            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(c, line, col, fmt, ap);
    va_end(ap);
}

/* Errors are kept in file order: a reader fixes them top to bottom. Stable insertion sort
 * (at most SL_CONF_MAX_ERRORS entries); errors without a position come first. */
static void sort_errors(sl_config_errors_t *e)
{
    for (int i = 1; i < e->n; i++) {
        sl_config_error_t tmp = e->e[i];
        int j = i;
        while (j > 0 && (e->e[j - 1].line > tmp.line ||
                         (e->e[j - 1].line == tmp.line && e->e[j - 1].col > tmp.col))) {
            e->e[j] = e->e[j - 1];
            j--;
        }
        e->e[j] = tmp;
    }
}

static void report_oom(conf_ctx_t *c)
{
    if (!c->oom)
        report(c, "out of memory");
    c->oom = true;
}

/* A value shown in a message: quoted, at most QUOTE_SRC_MAX source bytes, every byte
 * outside printable ASCII escaped, so one error stays one line whatever the input. */
typedef struct quoted {
    char s[QUOTE_SRC_MAX * 4 + 8];
} quoted_t;

static const char *quote(quoted_t *q, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    q->s[o++] = '"';
    for (size_t i = 0; i < len && i < QUOTE_SRC_MAX; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            q->s[o++] = '\\';
            q->s[o++] = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            q->s[o++] = '\\';
            q->s[o++] = 'x';
            q->s[o++] = hex[ch >> 4];
            q->s[o++] = hex[ch & 15];
        } else {
            q->s[o++] = (char)ch;
        }
    }
    if (len > QUOTE_SRC_MAX) {
        memcpy(q->s + o, "...", 3);
        o += 3;
    }
    q->s[o++] = '"';
    q->s[o] = '\0';
    return q->s;
}

/* Paths name a value in messages: "services.blog.timeouts.connect", "routes[2].match".
 * Built with bounded appends; a name too long for PATH_LEN is cut, never overflowed. */
static void path_append(char *out, size_t *o, const char *s, size_t len)
{
    for (size_t i = 0; i < len && *o + 1 < PATH_LEN; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[(*o)++] = (ch < 0x20 || ch >= 0x7f) ? '?' : (char)ch;
    }
    out[*o] = '\0';
}

static void path_key(char *out, const char *path, const char *key, size_t klen)
{
    size_t o = 0;
    out[0] = '\0';
    path_append(out, &o, path, strlen(path));
    if (o > 0)
        path_append(out, &o, ".", 1);
    path_append(out, &o, key, klen);
}

static void path_index(char *out, const char *path, size_t i)
{
    char num[32];
    size_t o = 0;
    int n = snprintf(num, sizeof(num), "[%zu]", i);
    out[0] = '\0';
    path_append(out, &o, path, strlen(path));
    path_append(out, &o, num, n > 0 ? (size_t)n : 0);
}

/* The name of a mapping in "unknown key ... in X" messages. */
static const char *context_name(const char *path)
{
    return path[0] ? path : "top level";
}

/* ---------------------------------------------------------------------------------------
 * YAML node helpers. */

static yaml_node_t *node_at(conf_ctx_t *c, int index)
{
    return yaml_document_get_node(c->doc, index);
}

static const char *scalar_text(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* A plain empty, "~" or "null" scalar: YAML's null, e.g. `admin:` with nothing after it. */
static bool is_null(const yaml_node_t *n)
{
    const char *s;
    size_t len;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    s = scalar_text(n);
    len = n->data.scalar.length;
    return len == 0 || bytes_eq(s, len, "~") || bytes_eq(s, len, "null") ||
           bytes_eq(s, len, "Null") || bytes_eq(s, len, "NULL");
}

/* What a node is, for "expected X, got Y". */
static const char *describe(quoted_t *q, const yaml_node_t *n)
{
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (is_null(n))
        return "an empty value";
    return quote(q, scalar_text(n), n->data.scalar.length);
}

static bool expect_type(conf_ctx_t *c, yaml_node_t *n, yaml_node_type_t type, const char *path)
{
    quoted_t q;
    if (n->type == type)
        return true;
    report_mark(c, n->start_mark, "%s: expected %s, got %s", context_name(path),
                type == YAML_MAPPING_NODE ? "a mapping" : "a list", describe(&q, n));
    return false;
}

/* A non-null scalar of at most MAX_STRING bytes. what names the expected value. */
static bool get_scalar(conf_ctx_t *c, yaml_node_t *n, const char *path, const char *what,
                       const char **s, size_t *len)
{
    quoted_t q;
    if (n->type != YAML_SCALAR_NODE || is_null(n)) {
        report_mark(c, n->start_mark, "%s: expected %s, got %s", path, what, describe(&q, n));
        return false;
    }
    if (n->data.scalar.length > MAX_STRING) {
        report_mark(c, n->start_mark, "%s: value too long (%zu bytes, max %d)", path,
                    n->data.scalar.length, MAX_STRING);
        return false;
    }
    *s = scalar_text(n);
    *len = n->data.scalar.length;
    return true;
}

/* Strings we keep become C strings used in paths, logs and headers: no NUL or control
 * bytes (YAML escapes such as "\0" or "\n" could otherwise smuggle them in). */
static bool check_text(conf_ctx_t *c, yaml_node_t *n, const char *path, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f) {
            quoted_t q;
            report_mark(c, n->start_mark, "%s: %s contains a control character", path,
                        quote(&q, s, len));
            return false;
        }
    }
    return true;
}

static char *dup_bytes(conf_ctx_t *c, const char *s, size_t len)
{
    char *p = malloc(len + 1);
    if (p == NULL) {
        report_oom(c);
        return NULL;
    }
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

/* The value of key in a mapping node, or NULL (post-parse checks use it to find marks). */
static yaml_node_t *map_get(conf_ctx_t *c, yaml_node_t *map, const char *key, yaml_node_t **kn)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node_at(c, p->key);
        if (k && k->type == YAML_SCALAR_NODE &&
            bytes_eq(scalar_text(k), k->data.scalar.length, key)) {
            if (kn)
                *kn = k;
            return node_at(c, p->value);
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Declaration tables: the types. A table describes one mapping; each field says which key,
 * how its value is parsed, and where in the target struct the result goes. */

enum field_type {
    T_STRING,      /* char *, strdup'ed; check validates it */
    T_UINT,        /* uint32_t/uint64_t (width), min..max */
    T_DURATION,    /* uint64_t ms, min..max */
    T_SIZE,        /* uint64_t bytes, min..max */
    T_ADDR,        /* sl_addr_t */
    T_ENUM,        /* int, one of names */
    T_METHODS,     /* uint32_t SL_METHOD_BIT set from a list of method names */
    T_TABLE,       /* nested mapping parsed by sub into base + offset */
    T_LIST,        /* list of sub mappings: array pointer at offset, uint32_t count */
    T_MAP,         /* mapping name -> sub mapping: same storage as T_LIST */
    T_CUSTOM,      /* parse does it all */
    T_BOOL,        /* int 0/1 from true/false */
    T_UNSUPPORTED, /* a contract key a later change implements: clear error for now */
    T__COUNT
};

enum {
    F_REQUIRED = 1 << 0,  /* missing key is an error */
    F_NONEMPTY = 1 << 1,  /* T_LIST/T_MAP: at least one entry */
    F_AUTO_ZERO = 1 << 2, /* T_UINT: the word "auto" stores 0 */
    F_OFF_NULL = 1 << 3,  /* T_STRING: the word "off" stores NULL */
};

typedef void (*value_parser_fn)(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                                const char *path, void *base);
/* Returns NULL when s is acceptable, else the reason ("must start with '/'"). */
typedef const char *(*string_check_fn)(const char *s, size_t len);

struct enum_name {
    const char *name;
    int value;
    bool supported; /* false: known contract value a later change implements */
};

struct field {
    const char *key;
    enum field_type type;
    unsigned flags;
    size_t offset;       /* into the struct the table fills */
    size_t width;        /* T_UINT: sizeof the member */
    size_t count_offset; /* T_LIST/T_MAP: uint32_t count member */
    uint64_t min, max;
    const struct enum_name *names; /* T_ENUM, T_METHODS: ends with a NULL name */
    const char *what;              /* T_METHODS: what one name is, for messages */
    const struct table *sub;       /* T_TABLE, T_LIST, T_MAP */
    value_parser_fn parse;         /* T_CUSTOM */
    string_check_fn check;         /* T_STRING, T_MAP keys */
};

struct table {
    const struct field *fields;
    size_t nfields;
    size_t size;                    /* T_LIST/T_MAP item size */
    void (*init)(void *item);       /* defaults, before any key is read */
    size_t name_offset;             /* T_MAP: char * that receives the key */
    size_t line_offset, col_offset; /* int line, col of the item, or NO_OFFSET */
    enum budget budget;             /* shared bound the item count draws from */
};

/* Entry constructors: each takes the struct type and member so the offset and the
 * member's size are checked at compile time against what the type's parser writes. */
// clang-format off
#define MEMBER_SIZE(T, m) sizeof(((T *)0)->m)
/* offsetof(T, m), failing to compile unless the member's size satisfies ok. */
#define OFFSET_IF(T, m, ok) (offsetof(T, m) + 0 * sizeof(char[(ok) ? 1 : -1]))
#define OFFSET_SIZED(T, m, sz) OFFSET_IF(T, m, MEMBER_SIZE(T, m) == (sz))

#define FLD_STRING(k, T, m, fl, chk) \
    { .key = k, .type = T_STRING, .flags = fl, .offset = OFFSET_SIZED(T, m, sizeof(char *)), \
      .check = chk }
#define FLD_UINT(k, T, m, fl, lo, hi) \
    { .key = k, .type = T_UINT, .flags = fl, \
      .offset = OFFSET_IF(T, m, MEMBER_SIZE(T, m) == 4 || MEMBER_SIZE(T, m) == 8), \
      .width = MEMBER_SIZE(T, m), .min = lo, .max = hi }
#define FLD_DURATION(k, T, m, lo) \
    { .key = k, .type = T_DURATION, .offset = OFFSET_SIZED(T, m, 8), .min = lo, \
      .max = DURATION_MAX_MS }
#define FLD_SIZE(k, T, m, lo, hi) \
    { .key = k, .type = T_SIZE, .offset = OFFSET_SIZED(T, m, 8), .min = lo, .max = hi }
#define FLD_ADDR(k, T, m, fl) \
    { .key = k, .type = T_ADDR, .flags = fl, .offset = OFFSET_SIZED(T, m, sizeof(sl_addr_t)) }
#define FLD_ENUM(k, T, m, nm) \
    { .key = k, .type = T_ENUM, .offset = OFFSET_SIZED(T, m, sizeof(int)), .names = nm }
#define FLD_METHODS(k, T, m, nm) \
    { .key = k, .type = T_METHODS, .offset = OFFSET_SIZED(T, m, 4), .names = nm, \
      .what = "method", .min = 1 }
/* A nested mapping; off is where its struct starts inside this one (0: the same struct). */
#define FLD_TABLE(k, off, tbl, fl) \
    { .key = k, .type = T_TABLE, .flags = fl, .offset = off, .sub = tbl }
/* A list of tbl items: T.m is the array pointer, T.cnt its uint32_t count. */
#define FLD_LIST(k, T, m, cnt, tbl, fl, hi) \
    { .key = k, .type = T_LIST, .flags = fl, .offset = OFFSET_SIZED(T, m, sizeof(void *)), \
      .count_offset = OFFSET_SIZED(T, cnt, 4), .sub = tbl, .max = hi }
/* A mapping name -> tbl item, stored as FLD_LIST; chk validates the names. */
#define FLD_MAP(k, T, m, cnt, tbl, fl, hi, chk) \
    { .key = k, .type = T_MAP, .flags = fl, .offset = OFFSET_SIZED(T, m, sizeof(void *)), \
      .count_offset = OFFSET_SIZED(T, cnt, 4), .sub = tbl, .max = hi, .check = chk }
#define FLD_CUSTOM(k, fl, fn) { .key = k, .type = T_CUSTOM, .flags = fl, .parse = fn }
#define FLD_BOOL(k, T, m) { .key = k, .type = T_BOOL, .offset = OFFSET_SIZED(T, m, sizeof(int)) }
/* A key of the public contract that this build does not implement yet. The change that
 * implements it replaces this one line with the key's real declaration. */
#define FLD_LATER(k) { .key = k, .type = T_UNSUPPORTED }
// clang-format on

#define TABLE(arr) .fields = arr, .nfields = SL_ARRAY_LEN(arr)

static void parse_table(conf_ctx_t *c, yaml_node_t *node, const char *path, const struct table *t,
                        void *base, const yaml_mark_t *named_at);

/* ---------------------------------------------------------------------------------------
 * Value parsers, one per field type. base is the struct the table fills. */

static void *member(void *base, size_t offset)
{
    return (char *)base + offset;
}

static void store_uint(void *dst, size_t width, uint64_t v)
{
    if (width == sizeof(uint64_t)) {
        memcpy(dst, &v, sizeof(uint64_t));
    } else {
        uint32_t v32 = (uint32_t)v;
        memcpy(dst, &v32, sizeof(uint32_t));
    }
}

/* "10s", "5m": the largest unit that divides exactly (for range messages). */
static const char *fmt_duration(char *buf, size_t size, uint64_t ms)
{
    static const struct {
        uint64_t ms;
        const char *unit;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
    for (size_t i = 0; i < SL_ARRAY_LEN(units); i++) {
        if (ms % units[i].ms == 0 && (ms > 0 || units[i].ms == 1000)) {
            snprintf(buf, size, "%" PRIu64 "%s", ms / units[i].ms, units[i].unit);
            return buf;
        }
    }
    return buf;
}

static const char *fmt_size(char *buf, size_t size, uint64_t bytes)
{
    static const struct {
        unsigned shift;
        const char *unit;
    } units[] = {{30, "g"}, {20, "m"}, {10, "k"}};
    for (size_t i = 0; i < SL_ARRAY_LEN(units); i++) {
        uint64_t mask = (1ull << units[i].shift) - 1;
        if (bytes > 0 && (bytes & mask) == 0) {
            snprintf(buf, size, "%" PRIu64 "%s", bytes >> units[i].shift, units[i].unit);
            return buf;
        }
    }
    snprintf(buf, size, "%" PRIu64, bytes);
    return buf;
}

static void parse_string(conf_ctx_t *c, const struct field *f, yaml_node_t *val, const char *path,
                         void *base)
{
    char **dst = member(base, f->offset);
    const char *s, *why;
    size_t len;
    quoted_t q;

    if (!get_scalar(c, val, path, "a string", &s, &len) || !check_text(c, val, path, s, len))
        return;
    free(*dst);
    *dst = NULL;
    if ((f->flags & F_OFF_NULL) && bytes_eq(s, len, "off"))
        return;
    if (f->check && (why = f->check(s, len)) != NULL) {
        report_mark(c, val->start_mark, "%s: %s %s", path, quote(&q, s, len), why);
        return;
    }
    *dst = dup_bytes(c, s, len);
}

static void parse_uint(conf_ctx_t *c, const struct field *f, yaml_node_t *val, const char *path,
                       void *base)
{
    const char *s;
    size_t len;
    uint64_t v;
    quoted_t q;
    const char *or_auto = (f->flags & F_AUTO_ZERO) ? " or auto" : "";

    if (!get_scalar(c, val, path, "an integer", &s, &len))
        return;
    if ((f->flags & F_AUTO_ZERO) && bytes_eq(s, len, "auto")) {
        store_uint(member(base, f->offset), f->width, 0);
        return;
    }
    if (scan_u64(s, len, &v) != len) {
        report_mark(c, val->start_mark,
                    "%s: bad number %s (expected an integer %" PRIu64 "..%" PRIu64 "%s)", path,
                    quote(&q, s, len), f->min, f->max, or_auto);
        return;
    }
    if (v < f->min || v > f->max) {
        report_mark(c, val->start_mark,
                    "%s: %" PRIu64 " is out of range (%" PRIu64 "..%" PRIu64 "%s)", path, v, f->min,
                    f->max, or_auto);
        return;
    }
    store_uint(member(base, f->offset), f->width, v);
}

static void parse_duration(conf_ctx_t *c, const struct field *f, yaml_node_t *val, const char *path,
                           void *base)
{
    const char *s;
    size_t len;
    uint64_t v;
    quoted_t q;
    char lim[32];

    if (!get_scalar(c, val, path, "a duration", &s, &len))
        return;
    if (sl_parse_duration(s, len, &v) != 0) {
        report_mark(c, val->start_mark, "%s: bad duration %s (expected e.g. 500ms, 10s, 5m)", path,
                    quote(&q, s, len));
        return;
    }
    if (v < f->min) {
        if (f->min == 1)
            report_mark(c, val->start_mark, "%s: must be greater than 0", path);
        else
            report_mark(c, val->start_mark, "%s: must be at least %s", path,
                        fmt_duration(lim, sizeof(lim), f->min));
        return;
    }
    if (v > f->max) {
        report_mark(c, val->start_mark, "%s: must be at most %s", path,
                    fmt_duration(lim, sizeof(lim), f->max));
        return;
    }
    store_uint(member(base, f->offset), sizeof(uint64_t), v);
}

static void parse_size(conf_ctx_t *c, const struct field *f, yaml_node_t *val, const char *path,
                       void *base)
{
    const char *s;
    size_t len;
    uint64_t v;
    quoted_t q;
    char lo[32], hi[32];

    if (!get_scalar(c, val, path, "a size", &s, &len))
        return;
    if (sl_parse_size(s, len, &v) != 0) {
        report_mark(c, val->start_mark, "%s: bad size %s (expected e.g. 512, 16k, 10m, 1g)", path,
                    quote(&q, s, len));
        return;
    }
    if (v < f->min || v > f->max) {
        report_mark(c, val->start_mark, "%s: %s is out of range (%s..%s)", path, quote(&q, s, len),
                    fmt_size(lo, sizeof(lo), f->min), fmt_size(hi, sizeof(hi), f->max));
        return;
    }
    store_uint(member(base, f->offset), sizeof(uint64_t), v);
}

/* Parses an address value into *dst and explains a failure; shared by T_ADDR and listen. */
static bool addr_value(conf_ctx_t *c, yaml_node_t *val, const char *path, sl_addr_t *dst)
{
    const char *s;
    size_t len;
    quoted_t q;

    if (!get_scalar(c, val, path, "an address", &s, &len))
        return false;
    if (sl_parse_addr(s, len, dst) == 0)
        return true;
    /* A letter before the port in an unbracketed address is a host name, not a typo. */
    for (size_t i = 0; i < len && s[i] != ':' && s[0] != '['; i++) {
        if ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')) {
            report_mark(c, val->start_mark,
                        "%s: bad address %s: host names are not accepted (resolving would "
                        "block); use an IP address",
                        path, quote(&q, s, len));
            return false;
        }
    }
    report_mark(c, val->start_mark,
                "%s: bad address %s (expected IPv4:port, [IPv6]:port or *:port)", path,
                quote(&q, s, len));
    return false;
}

static void parse_addr(conf_ctx_t *c, const struct field *f, yaml_node_t *val, const char *path,
                       void *base)
{
    addr_value(c, val, path, member(base, f->offset));
}

/* "a, b, c" from an enum table, for "expected ..." messages. */
static const char *name_list(char *buf, size_t size, const struct enum_name *names)
{
    size_t o = 0;
    buf[0] = '\0';
    for (const struct enum_name *n = names; n->name && o < size; n++) {
        int w = snprintf(buf + o, size - o, "%s%s", n == names ? "" : ", ", n->name);
        if (w < 0)
            break;
        o += (size_t)w;
    }
    return buf;
}

static const struct enum_name *find_name(const struct enum_name *names, const char *s, size_t len)
{
    for (const struct enum_name *n = names; n->name; n++)
        if (bytes_eq(s, len, n->name))
            return n;
    return NULL;
}

static void parse_enum(conf_ctx_t *c, const struct field *f, yaml_node_t *val, const char *path,
                       void *base)
{
    const struct enum_name *n;
    const char *s;
    size_t len;
    quoted_t q;
    char list[160];

    if (!get_scalar(c, val, path, "a string", &s, &len))
        return;
    n = find_name(f->names, s, len);
    if (n == NULL) {
        report_mark(c, val->start_mark, "%s: unknown value %s (expected %s)", path,
                    quote(&q, s, len), name_list(list, sizeof(list), f->names));
        return;
    }
    if (!n->supported) {
        report_mark(c, val->start_mark, "%s: %s is not supported in this build yet", path, n->name);
        return;
    }
    memcpy(member(base, f->offset), &n->value, sizeof(int));
}

/* T_METHODS: a list of names from f->names, kept as a uint32_t of 1 << value bits.
 * f->what names one item in messages ("method"); f->min is the fewest items (0 lets []
 * mean none), MAX_METHODS the most. */
static void parse_methods(conf_ctx_t *c, const struct field *f, yaml_node_t *val, const char *path,
                          void *base)
{
    uint32_t bits = 0;
    size_t n, i = 0;
    char list[160], what[40];

    if (!expect_type(c, val, YAML_SEQUENCE_NODE, path))
        return;
    n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
    if (n < f->min || n > MAX_METHODS) {
        report_mark(c, val->start_mark, "%s: expected %d to %d %s names, got %zu", path,
                    (int)f->min, MAX_METHODS, f->what, n);
        return;
    }
    snprintf(what, sizeof(what), "a %s name", f->what);
    for (yaml_node_item_t *it = val->data.sequence.items.start; it < val->data.sequence.items.top;
         it++, i++) {
        yaml_node_t *item = node_at(c, *it);
        const struct enum_name *m;
        char ipath[PATH_LEN];
        const char *s;
        size_t len;
        quoted_t q;

        if (item == NULL)
            continue;
        path_index(ipath, path, i);
        if (!get_scalar(c, item, ipath, what, &s, &len))
            continue;
        m = find_name(f->names, s, len);
        if (m == NULL) {
            report_mark(c, item->start_mark, "%s: unknown %s %s (expected %s)", ipath, f->what,
                        quote(&q, s, len), name_list(list, sizeof(list), f->names));
            continue;
        }
        bits |= SL_METHOD_BIT((unsigned)m->value);
    }
    memcpy(member(base, f->offset), &bits, sizeof(bits));
}

static void parse_subtable(conf_ctx_t *c, const struct field *f, yaml_node_t *val, const char *path,
                           void *base)
{
    parse_table(c, val, path, f->sub, member(base, f->offset), &c->key->start_mark);
}

/* Shared by T_LIST and T_MAP: checks the entry count against the field's and the shared
 * bounds, allocates the zeroed array and publishes it (pointer and count) at once, so
 * sl_config_free releases it whatever happens to the items afterwards. */
static void *alloc_items(conf_ctx_t *c, const struct field *f, yaml_node_t *val, const char *path,
                         void *base, size_t n)
{
    const struct table *t = f->sub;
    void *arr;

    if (n == 0) {
        if (f->flags & F_NONEMPTY)
            report_mark(c, val->start_mark, "%s: must not be empty", path);
        return NULL;
    }
    if (n > f->max) {
        report_mark(c, val->start_mark, "%s: too many entries (%zu, max %" PRIu64 ")", path, n,
                    f->max);
        return NULL;
    }
    if (t->budget != B_NONE) {
        if (n > c->budget[t->budget]) {
            report_mark(c, val->start_mark,
                        "%s: too many entries in all (max %" PRIu32 " over the file)", path,
                        budget_max[t->budget]);
            return NULL;
        }
        c->budget[t->budget] -= (uint32_t)n;
    }
    arr = calloc(n, t->size);
    if (arr == NULL) {
        report_oom(c);
        return NULL;
    }
    memcpy(member(base, f->offset), &arr, sizeof(arr));
    store_uint(member(base, f->count_offset), sizeof(uint32_t), n);
    return arr;
}

static void *init_item(const struct table *t, void *arr, size_t i, yaml_mark_t at)
{
    void *item = (char *)arr + i * t->size;
    int line = clamp_int(at.line + 1), col = clamp_int(at.column + 1);
    if (t->init)
        t->init(item);
    if (t->line_offset != NO_OFFSET) {
        memcpy(member(item, t->line_offset), &line, sizeof(int));
        memcpy(member(item, t->col_offset), &col, sizeof(int));
    }
    return item;
}

static void parse_list(conf_ctx_t *c, const struct field *f, yaml_node_t *val, const char *path,
                       void *base)
{
    const struct table *t = f->sub;
    yaml_node_item_t *items;
    size_t n;
    void *arr;

    if (!expect_type(c, val, YAML_SEQUENCE_NODE, path))
        return;
    items = val->data.sequence.items.start;
    n = (size_t)(val->data.sequence.items.top - items);
    arr = alloc_items(c, f, val, path, base, n);
    if (arr == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = node_at(c, items[i]);
        char ipath[PATH_LEN];
        if (item == NULL)
            continue;
        path_index(ipath, path, i);
        parse_table(c, item, ipath, t, init_item(t, arr, i, item->start_mark), NULL);
    }
}

static void parse_map(conf_ctx_t *c, const struct field *f, yaml_node_t *val, const char *path,
                      void *base)
{
    const struct table *t = f->sub;
    yaml_node_pair_t *pairs;
    size_t n;
    void *arr;

    if (!expect_type(c, val, YAML_MAPPING_NODE, path))
        return;
    pairs = val->data.mapping.pairs.start;
    n = (size_t)(val->data.mapping.pairs.top - pairs);
    arr = alloc_items(c, f, val, path, base, n);
    if (arr == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *k = node_at(c, pairs[i].key), *v = node_at(c, pairs[i].value);
        char ipath[PATH_LEN];
        const char *s, *why;
        size_t len;
        void *item;
        quoted_t q;

        if (k == NULL || v == NULL)
            continue;
        item = init_item(t, arr, i, k->start_mark);
        if (!get_scalar(c, k, path, "a name", &s, &len))
            continue;
        path_key(ipath, path, s, len);
        if (f->check && (why = f->check(s, len)) != NULL) {
            report_mark(c, k->start_mark, "%s: %s %s", path, quote(&q, s, len), why);
        } else {
            /* Quadratic, but n <= MAX_ENTRIES and a T_MAP is read once per file. */
            for (size_t j = 0; j < i; j++) {
                yaml_node_t *pk = node_at(c, pairs[j].key);
                if (pk && pk->type == YAML_SCALAR_NODE && pk->data.scalar.length == len &&
                    memcmp(scalar_text(pk), s, len) == 0) {
                    report_mark(c, k->start_mark, "duplicate key %s in %s (first at line %d)",
                                quote(&q, s, len), path, clamp_int(pk->start_mark.line + 1));
                    break;
                }
            }
            if (t->name_offset != NO_OFFSET) {
                char *name = dup_bytes(c, s, len);
                memcpy(member(item, t->name_offset), &name, sizeof(name));
            }
        }
        parse_table(c, v, ipath, t, item, &k->start_mark);
    }
}

static void parse_custom(conf_ctx_t *c, const struct field *f, yaml_node_t *val, const char *path,
                         void *base)
{
    f->parse(c, f, val, path, base);
}

static void parse_bool_at(conf_ctx_t *c, yaml_node_t *val, const char *path, int *out);

static void parse_bool(conf_ctx_t *c, const struct field *f, yaml_node_t *val, const char *path,
                       void *base)
{
    parse_bool_at(c, val, path, member(base, f->offset));
}

/* Indexed by enum field_type; T_UNSUPPORTED is reported by parse_table at the key. */
static const value_parser_fn value_parsers[T__COUNT] = {
    [T_STRING] = parse_string,   [T_UINT] = parse_uint,      [T_DURATION] = parse_duration,
    [T_SIZE] = parse_size,       [T_ADDR] = parse_addr,      [T_ENUM] = parse_enum,
    [T_METHODS] = parse_methods, [T_TABLE] = parse_subtable, [T_LIST] = parse_list,
    [T_MAP] = parse_map,         [T_CUSTOM] = parse_custom,  [T_BOOL] = parse_bool,
};

/* Reads one mapping through its declaration table into base: unknown, duplicate and
 * missing required keys are reported; every other key goes to its type's parser.
 * named_at: where a missing key is reported, the key naming this mapping ("blog:",
 * "match:"); NULL for list items and the top level, reported at the mapping itself. */
static void parse_table(conf_ctx_t *c, yaml_node_t *node, const char *path, const struct table *t,
                        void *base, const yaml_mark_t *named_at)
{
    const yaml_node_t *seen[MAX_TABLE_FIELDS] = {0};
    size_t npairs;
    quoted_t q;

    if (!expect_type(c, node, YAML_MAPPING_NODE, path))
        return;
    npairs = (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
    if (npairs > MAX_KEYS) {
        report_mark(c, node->start_mark, "%s: too many keys (%zu, max %d)", context_name(path),
                    npairs, MAX_KEYS);
        return;
    }
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node_at(c, p->key), *v = node_at(c, p->value);
        const struct field *f = NULL;
        char kpath[PATH_LEN];
        const char *ks;
        size_t klen, i;

        if (k == NULL || v == NULL)
            continue;
        if (k->type != YAML_SCALAR_NODE) {
            report_mark(c, k->start_mark, "keys in %s must be plain names, got %s",
                        context_name(path), describe(&q, k));
            continue;
        }
        ks = scalar_text(k);
        klen = k->data.scalar.length;
        for (i = 0; i < t->nfields; i++) {
            if (bytes_eq(ks, klen, t->fields[i].key)) {
                f = &t->fields[i];
                break;
            }
        }
        if (f == NULL) {
            report_mark(c, k->start_mark, "unknown key %s in %s", quote(&q, ks, klen),
                        context_name(path));
            continue;
        }
        if (seen[i]) {
            report_mark(c, k->start_mark, "duplicate key %s in %s (first at line %d)",
                        quote(&q, ks, klen), context_name(path),
                        clamp_int(seen[i]->start_mark.line + 1));
            continue;
        }
        seen[i] = k;
        c->key = k;
        path_key(kpath, path, ks, klen);
        if (f->type == T_UNSUPPORTED) {
            report_mark(c, k->start_mark, "%s is not supported in this build yet", kpath);
            continue;
        }
        value_parsers[f->type](c, f, v, kpath, base);
    }
    for (size_t i = 0; i < t->nfields; i++) {
        if ((t->fields[i].flags & F_REQUIRED) && !seen[i])
            report_mark(c, named_at ? *named_at : node->start_mark,
                        "%s: missing required key \"%s\"", context_name(path), t->fields[i].key);
    }
}

/* ---------------------------------------------------------------------------------------
 * Checks and custom parsers for particular keys. */

static bool is_name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || is_digit(ch) || ch == '_' ||
           ch == '-';
}

/* Service names appear in routes, metric labels and admin URLs: [A-Za-z0-9_-]+. */
static const char *check_service_name(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!is_name_char(s[i]))
            return "is not a valid service name (use letters, digits, '_' and '-')";
    return len ? NULL : "is not a valid service name (use letters, digits, '_' and '-')";
}

static const char *check_env_name(const char *s, size_t len)
{
    static const char why[] = "is not a valid environment variable name";
    if (len == 0 || is_digit(s[0]))
        return why;
    for (size_t i = 0; i < len; i++)
        if (!is_name_char(s[i]) || s[i] == '-')
            return why;
    return NULL;
}

/* The prefix is compared with the request path: it must look like one. */
static const char *check_path_prefix(const char *s, size_t len)
{
    if (len == 0 || s[0] != '/')
        return "must start with '/'";
    for (size_t i = 0; i < len; i++)
        if (s[i] == ' ' || s[i] == '?' || s[i] == '#')
            return "must be a plain path (no spaces, '?' or '#')";
    return NULL;
}

/* A host name or IP literal as it appears in a Host header, without the port (ports are
 * ignored when matching, so one here could never mean anything). */
static const char *check_host(const char *s, size_t len)
{
    if (len == 0)
        return "must not be empty";
    if (s[0] == '[') {
        char ip[INET6_ADDRSTRLEN];
        struct in6_addr a6;
        if (len < 3 || len - 2 >= sizeof(ip) || s[len - 1] != ']')
            return "is not a valid IPv6 literal (write it as [::1], without a port)";
        memcpy(ip, s + 1, len - 2);
        ip[len - 2] = '\0';
        return inet_pton(AF_INET6, ip, &a6) == 1 ? NULL : "is not a valid IPv6 literal";
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ':')
            return "must not include a port (ports are ignored when matching)";
        if (!(is_name_char(s[i]) || s[i] == '.'))
            return "is not a valid host name";
    }
    return NULL;
}

static const char *check_nonempty(const char *s, size_t len)
{
    SL_UNUSED(s);
    return len ? NULL : "must not be empty";
}

/* listen: "addr", [ "addr", {address: addr, tls: ...}, ... ] or a single {address: ...}.
 * Replaces the default listener. */
static const struct table listen_item_table;

static void listen_item(conf_ctx_t *c, yaml_node_t *item, const char *path, sl_config_t *cfg)
{
    sl_addr_t *a = &cfg->listen[cfg->nlisten++];

    memset(a, 0, sizeof(*a));
    if (item->type == YAML_MAPPING_NODE)
        parse_table(c, item, path, &listen_item_table, a, NULL);
    else if (!addr_value(c, item, path, a))
        return;
    for (uint32_t i = 0; a->len && i + 1 < cfg->nlisten; i++) {
        if (cfg->listen[i].len == a->len && memcmp(&cfg->listen[i].ss, &a->ss, a->len) == 0) {
            report_mark(c, item->start_mark, "%s: %s is already listed", path, a->text);
            return;
        }
    }
}

static void parse_listen(conf_ctx_t *c, const struct field *f, yaml_node_t *val, const char *path,
                         void *base)
{
    sl_config_t *cfg = base;
    yaml_node_item_t *items;
    size_t n;

    SL_UNUSED(f);
    cfg->nlisten = 0;
    if (val->type != YAML_SEQUENCE_NODE) {
        listen_item(c, val, path, cfg);
        return;
    }
    items = val->data.sequence.items.start;
    n = (size_t)(val->data.sequence.items.top - items);
    if (n == 0 || n > SL_CONF_MAX_LISTEN) {
        report_mark(c, val->start_mark, "%s: expected 1 to %d addresses, got %zu", path,
                    SL_CONF_MAX_LISTEN, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = node_at(c, items[i]);
        char ipath[PATH_LEN];
        if (item == NULL)
            continue;
        path_index(ipath, path, i);
        listen_item(c, item, ipath, cfg);
    }
}

/* routes[i].service: kept by name now, resolved to service_index once all are read. */
static void parse_route_service(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                                const char *path, void *base)
{
    sl_route_conf_t *r = base;
    const char *s, *why;
    size_t len;
    quoted_t q;

    SL_UNUSED(f);
    r->service_index = -2; /* the key is there, even if its value is bad (check_targets) */
    if (!get_scalar(c, val, path, "a service name", &s, &len))
        return;
    if ((why = check_service_name(s, len)) != NULL) {
        report_mark(c, val->start_mark, "%s: %s %s", path, quote(&q, s, len), why);
        return;
    }
    free(r->service);
    r->service = dup_bytes(c, s, len);
    if (r->service == NULL)
        return;
    if (c->nrefs == c->refcap) {
        size_t cap = c->refcap ? c->refcap * 2 : 16;
        struct service_ref *nr = realloc(c->refs, cap * sizeof(*nr));
        if (nr == NULL) {
            report_oom(c);
            return;
        }
        c->refs = nr;
        c->refcap = cap;
    }
    c->refs[c->nrefs].route = r;
    c->refs[c->nrefs].mark = val->start_mark;
    c->nrefs++;
}

/* ---------------------------------------------------------------------------------------
 * The declaration tables. Defaults live in the init functions next to them. */

static const struct enum_name balance_names[] = {
    {"round_robin", SL_BALANCE_ROUND_ROBIN, true},
    {"least_conn", SL_BALANCE_LEAST_CONN, true},
    {"random_two", SL_BALANCE_RANDOM_TWO, true},
    {"hash", SL_BALANCE_HASH, true},
    {NULL, 0, false},
};

static const struct enum_name method_names[] = {
    {"GET", SL_M_GET, true},         {"HEAD", SL_M_HEAD, true},
    {"POST", SL_M_POST, true},       {"PUT", SL_M_PUT, true},
    {"DELETE", SL_M_DELETE, true},   {"PATCH", SL_M_PATCH, true},
    {"OPTIONS", SL_M_OPTIONS, true}, {"CONNECT", SL_M_CONNECT, true},
    {"TRACE", SL_M_TRACE, true},     {NULL, 0, false},
};

/* ---- listen[i].tls ---- */

/* cert:, key: - a file name, kept with where it was written. */
static void parse_conf_file(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                            const char *path, void *base)
{
    sl_conf_file_t *dst = member(base, f->offset);
    const char *s;
    size_t len;

    if (!get_scalar(c, val, path, "a file name", &s, &len) || !check_text(c, val, path, s, len))
        return;
    if (len == 0) {
        report_mark(c, val->start_mark, "%s: must not be empty", path);
        return;
    }
    free(dst->path);
    dst->path = dup_bytes(c, s, len);
    dst->line = clamp_int(val->start_mark.line + 1);
    dst->col = clamp_int(val->start_mark.column + 1);
}

// clang-format off
#define FLD_FILE(k, T, m, fl) \
    { .key = k, .type = T_CUSTOM, .flags = fl, \
      .offset = OFFSET_SIZED(T, m, sizeof(sl_conf_file_t)), .parse = parse_conf_file }
// clang-format on

/* A connection whose ALPN chose h2 sends the HTTP/2 preface first: conn.c starts the h2
 * session from it, as for h2c. */
static const struct enum_name alpn_names[] = {
    {"http/1.1", SL_ALPN_HTTP11, true},
    {"h2", SL_ALPN_H2, true},
    {NULL, 0, false},
};

/* alpn: [http/1.1, ...] - the server's protocols in preference order. */
static void parse_alpn(conf_ctx_t *c, const struct field *f, yaml_node_t *val, const char *path,
                       void *base)
{
    sl_tls_conf_t *t = base;
    const struct field ef = {.key = "alpn", .type = T_ENUM, .offset = 0, .names = alpn_names};
    yaml_node_item_t *items;
    size_t n;

    SL_UNUSED(f);
    if (!expect_type(c, val, YAML_SEQUENCE_NODE, path))
        return;
    items = val->data.sequence.items.start;
    n = (size_t)(val->data.sequence.items.top - items);
    if (n == 0 || n > SL_TLS_MAX_ALPN) {
        report_mark(c, val->start_mark, "%s: expected 1 to %d protocols, got %zu", path,
                    SL_TLS_MAX_ALPN, n);
        return;
    }
    t->nalpn = 0;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = node_at(c, items[i]);
        char ipath[PATH_LEN];
        int v = 0;
        if (item == NULL)
            continue;
        path_index(ipath, path, i);
        parse_enum(c, &ef, item, ipath, &v);
        if (v == 0)
            continue;
        for (uint32_t j = 0; j < t->nalpn; j++) {
            if (t->alpn[j] == v) {
                report_mark(c, item->start_mark, "%s: listed twice", ipath);
                v = 0;
                break;
            }
        }
        if (v)
            t->alpn[t->nalpn++] = (uint8_t)v;
    }
}

static const struct field tls_cert_fields[] = {
    FLD_FILE("cert", sl_tls_cert_conf_t, cert, F_REQUIRED),
    FLD_FILE("key", sl_tls_cert_conf_t, key, F_REQUIRED),
};
static const struct table tls_cert_table = {
    TABLE(tls_cert_fields), .size = sizeof(sl_tls_cert_conf_t),
    .line_offset = offsetof(sl_tls_cert_conf_t, line),
    .col_offset = offsetof(sl_tls_cert_conf_t, col)};

static const struct field tls_fields[] = {
    FLD_FILE("cert", sl_tls_conf_t, cert, 0),
    FLD_FILE("key", sl_tls_conf_t, key, 0),
    FLD_LIST("certificates", sl_tls_conf_t, certs, ncerts, &tls_cert_table, F_NONEMPTY,
             SL_TLS_MAX_CERTS),
    FLD_CUSTOM("alpn", 0, parse_alpn),
};
static const struct table tls_table = {TABLE(tls_fields), .line_offset = NO_OFFSET};

static void free_tls_conf(sl_tls_conf_t *t)
{
    if (t == NULL)
        return;
    free(t->cert.path);
    free(t->key.path);
    for (uint32_t i = 0; t->certs && i < t->ncerts; i++) {
        free(t->certs[i].cert.path);
        free(t->certs[i].key.path);
    }
    free(t->certs);
    free(t);
}

static int no_password(char *buf, int size, int rwflag, void *u)
{
    SL_UNUSED(buf);
    SL_UNUSED(size);
    SL_UNUSED(rwflag);
    SL_UNUSED(u);
    return 0; /* an encrypted key cannot be used unattended: fail instead of prompting */
}

/* Opens a PEM file named by the configuration, or reports why it cannot be used. Only
 * regular files of bounded size: a FIFO or /dev/zero would hang the loader. */
static FILE *open_pem(conf_ctx_t *c, const sl_conf_file_t *f, const char *path)
{
    struct stat st;
    FILE *fp;

    if (stat(f->path, &st) != 0) {
        report_at(c, f->line, f->col, "%s: cannot read %s: %s", path, f->path, strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > (off_t)MAX_PEM_BYTES) {
        report_at(c, f->line, f->col, "%s: %s is not a regular file of at most 1 MiB", path,
                  f->path);
        return NULL;
    }
    if ((fp = fopen(f->path, "r")) == NULL) {
        report_at(c, f->line, f->col, "%s: cannot read %s: %s", path, f->path, strerror(errno));
        return NULL;
    }
    return fp;
}

/* The files of one certificate: a PEM certificate, a PEM private key (not encrypted),
 * and the key belonging to the certificate, so `sluice -t` catches what would otherwise
 * fail at start-up or, worse, at a certificate reload. */
static void check_tls_cert(conf_ctx_t *c, const sl_tls_cert_conf_t *tc, const char *path)
{
    char cpath[PATH_LEN], kpath[PATH_LEN];
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    FILE *fp;

    if (tc->cert.path == NULL || tc->key.path == NULL)
        return; /* already reported */
    size_t co = 0, ko = 0;
    cpath[0] = kpath[0] = '\0';
    path_append(cpath, &co, path, strlen(path));
    path_append(cpath, &co, ".cert", 5);
    path_append(kpath, &ko, path, strlen(path));
    path_append(kpath, &ko, ".key", 4);
    if ((fp = open_pem(c, &tc->cert, cpath)) != NULL) {
        x = PEM_read_X509(fp, NULL, no_password, NULL);
        fclose(fp);
        if (x == NULL)
            report_at(c, tc->cert.line, tc->cert.col, "%s: %s holds no PEM certificate", cpath,
                      tc->cert.path);
    }
    if ((fp = open_pem(c, &tc->key, kpath)) != NULL) {
        k = PEM_read_PrivateKey(fp, NULL, no_password, NULL);
        fclose(fp);
        if (k == NULL)
            report_at(c, tc->key.line, tc->key.col,
                      "%s: %s holds no PEM private key (or the key is encrypted)", kpath,
                      tc->key.path);
    }
    if (x && k && X509_check_private_key(x, k) != 1)
        report_at(c, tc->key.line, tc->key.col, "%s: %s does not match the certificate in %s",
                  kpath, tc->key.path, tc->cert.path);
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(k);
}

/* listen[i].tls: base is listen[i] (the sl_addr_t); the TLS settings go to listen_tls[i]. */
static void parse_listen_tls(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                             const char *path, void *base)
{
    sl_config_t *cfg = c->cfg;
    uint32_t li = (uint32_t)((sl_addr_t *)base - cfg->listen);
    sl_tls_conf_t *t;

    SL_UNUSED(f);
    if (li >= SL_CONF_MAX_LISTEN)
        return;
    if ((t = calloc(1, sizeof(*t))) == NULL) {
        report_oom(c);
        return;
    }
    free_tls_conf(cfg->listen_tls[li]);
    cfg->listen_tls[li] = t;
    t->line = clamp_int(val->start_mark.line + 1);
    t->col = clamp_int(val->start_mark.column + 1);
    int before = c->errs->n + c->errs->dropped;
    parse_table(c, val, path, &tls_table, t, NULL);
    if (c->errs->n + c->errs->dropped != before)
        return;
    bool one = t->cert.path || t->key.path; /* the {cert, key} form */
    if (one) {
        if (t->ncerts) {
            report_mark(c, val->start_mark,
                        "%s: give either cert and key or certificates, not both", path);
            return;
        }
        if (!t->cert.path || !t->key.path) {
            report_mark(c, val->start_mark, "%s: %s without %s", path,
                        t->cert.path ? "cert" : "key", t->cert.path ? "key" : "cert");
            return;
        }
        if ((t->certs = calloc(1, sizeof(*t->certs))) == NULL) {
            report_oom(c);
            return;
        }
        t->certs[0].cert = t->cert;
        t->certs[0].key = t->key;
        t->certs[0].line = t->line;
        t->certs[0].col = t->col;
        t->ncerts = 1;
        memset(&t->cert, 0, sizeof(t->cert));
        memset(&t->key, 0, sizeof(t->key));
    } else if (t->ncerts == 0) {
        report_mark(c, val->start_mark, "%s: needs cert and key, or certificates", path);
        return;
    }
    if (t->nalpn == 0) { /* h2 preferred, as browsers and CDNs expect of an edge */
        t->alpn[0] = SL_ALPN_H2;
        t->alpn[1] = SL_ALPN_HTTP11;
        t->nalpn = 2;
    }
    for (uint32_t i = 0; i < t->ncerts; i++) {
        char cpath[PATH_LEN], lpath[PATH_LEN];
        size_t o = 0;
        if (one) {
            check_tls_cert(c, &t->certs[i], path);
            continue;
        }
        lpath[0] = '\0';
        path_append(lpath, &o, path, strlen(path));
        path_append(lpath, &o, ".certificates", 13);
        path_index(cpath, lpath, i);
        check_tls_cert(c, &t->certs[i], cpath);
    }
}

static const struct field listen_item_fields[] = {
    /* The item is the sl_addr_t itself. */
    {.key = "address", .type = T_ADDR, .flags = F_REQUIRED, .offset = 0},
    FLD_CUSTOM("tls", 0, parse_listen_tls),
};
static const struct table listen_item_table = {TABLE(listen_item_fields), .line_offset = NO_OFFSET};

static void server_defaults(void *item)
{
    sl_server_conf_t *s = item;
    s->weight = 1;
    s->max_fails = 1;
    s->fail_timeout_ms = 10000;
}

/* A server address: IP:port, or NAME:port (resolved off the worker loops: once at
 * start-up, or every `resolve` when set). */
static void parse_server_address(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                                 const char *path, void *base)
{
    SL_UNUSED(f);
    sl_server_conf_t *s = base;
    const char *v;
    size_t len;
    quoted_t q;
    if (!get_scalar(c, val, path, "an address", &v, &len))
        return;
    if (sl_parse_addr(v, len, &s->addr) == 0)
        return;
    const char *colon = memchr(v, ':', len);
    size_t hl = colon ? (size_t)(colon - v) : 0;
    int ok = colon && hl > 0 && hl <= 253 && v[0] != '[';
    for (size_t i = 0; ok && i < hl; i++)
        ok = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
             (v[i] >= '0' && v[i] <= '9') || v[i] == '-' || v[i] == '.';
    unsigned port = 0;
    size_t plen = colon ? len - hl - 1 : 0;
    for (size_t i = 0; ok && i < plen; i++) {
        ok = colon[1 + i] >= '0' && colon[1 + i] <= '9' && i < 5;
        port = port * 10 + (unsigned)(colon[1 + i] - '0');
    }
    if (!ok || plen == 0 || port == 0 || port > 65535) {
        report_mark(c, val->start_mark,
                    "%s: bad address %s (expected IPv4:port, [IPv6]:port or name:port)", path,
                    quote(&q, v, len));
        return;
    }
    memset(&s->addr, 0, sizeof(s->addr));
    free(s->host);
    s->host = dup_bytes(c, v, hl);
    s->port = (uint16_t)port;
}

static const struct field server_fields[] = {
    FLD_CUSTOM("address", F_REQUIRED, parse_server_address),
    FLD_DURATION("resolve", sl_server_conf_t, resolve_ms, 100),
    FLD_UINT("weight", sl_server_conf_t, weight, 0, 1, 1000),
    FLD_UINT("max_fails", sl_server_conf_t, max_fails, 0, 0, 1000),
    FLD_DURATION("fail_timeout", sl_server_conf_t, fail_timeout_ms, 1),
};
static const struct table server_table = {
    TABLE(server_fields),     .size = sizeof(sl_server_conf_t), .init = server_defaults,
    .name_offset = NO_OFFSET, .line_offset = NO_OFFSET,         .budget = B_SERVERS};

static const struct field timeouts_fields[] = {
    FLD_DURATION("connect", sl_service_conf_t, connect_ms, 1),
    FLD_DURATION("send", sl_service_conf_t, send_ms, 1),
    FLD_DURATION("read", sl_service_conf_t, read_ms, 1),
};
static const struct table timeouts_table = {TABLE(timeouts_fields), .line_offset = NO_OFFSET};

static void service_defaults(void *item)
{
    sl_service_conf_t *s = item;
    s->balance = SL_BALANCE_ROUND_ROBIN;
    s->keepalive = 32;
    s->connect_ms = 5000;
    s->send_ms = 60000;
    s->read_ms = 60000;
    s->retries = 0;
    s->retry_methods =
        SL_METHOD_BIT(SL_M_GET) | SL_METHOD_BIT(SL_M_HEAD) | SL_METHOD_BIT(SL_M_OPTIONS);
    s->retry_budget_percent = 20;
    s->retry_budget_min = 3;
    s->fail_status[0] = 502;
    s->fail_status[1] = 503;
    s->fail_status[2] = 504;
    s->nfail_status = 3;
    s->hash_key = SL_HASH_IP;
    s->health.interval_ms = 10000;
    s->health.timeout_ms = 2000;
    s->health.fails = 3;
    s->health.passes = 2;
}

/* A list of HTTP status codes (100..599), at most SL_CONF_MAX_STATUS; [] is allowed. */
static void parse_status_list(conf_ctx_t *c, yaml_node_t *val, const char *path, uint16_t *out,
                              uint32_t *nout)
{
    if (!expect_type(c, val, YAML_SEQUENCE_NODE, path))
        return;
    yaml_node_item_t *items = val->data.sequence.items.start;
    size_t n = (size_t)(val->data.sequence.items.top - items);
    if (n > SL_CONF_MAX_STATUS) {
        report_mark(c, val->start_mark, "%s: at most %d status codes", path, SL_CONF_MAX_STATUS);
        return;
    }
    *nout = 0;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = node_at(c, items[i]);
        const char *s;
        size_t len;
        quoted_t q;
        if (item == NULL || !get_scalar(c, item, path, "a status code", &s, &len))
            continue;
        unsigned v = 0;
        size_t k = 0;
        while (k < len && k < 3 && s[k] >= '0' && s[k] <= '9')
            v = v * 10 + (unsigned)(s[k++] - '0');
        if (k != len || len != 3 || v < 100 || v > 599) {
            report_mark(c, item->start_mark, "%s: bad status code %s (expected 100..599)", path,
                        quote(&q, s, len));
            continue;
        }
        out[(*nout)++] = (uint16_t)v;
    }
}

static void parse_fail_status(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                              const char *path, void *base)
{
    SL_UNUSED(f);
    sl_service_conf_t *s = base;
    parse_status_list(c, val, path, s->fail_status, &s->nfail_status);
}

static void parse_expect_status(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                                const char *path, void *base)
{
    SL_UNUSED(f);
    sl_health_conf_t *h = base;
    parse_status_list(c, val, path, h->expect_status, &h->nexpect);
}

/* hash_key: ip | path | header:NAME | cookie:NAME */
static void parse_hash_key(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                           const char *path, void *base)
{
    SL_UNUSED(f);
    sl_service_conf_t *s = base;
    const char *v;
    size_t len;
    quoted_t q;
    if (!get_scalar(c, val, path, "a hash key", &v, &len))
        return;
    const char *name = NULL;
    size_t nlen = 0;
    if (len == 2 && memcmp(v, "ip", 2) == 0) {
        s->hash_key = SL_HASH_IP;
    } else if (len == 4 && memcmp(v, "path", 4) == 0) {
        s->hash_key = SL_HASH_PATH;
    } else if (len > 7 && memcmp(v, "header:", 7) == 0) {
        s->hash_key = SL_HASH_HEADER;
        name = v + 7;
        nlen = len - 7;
    } else if (len > 7 && memcmp(v, "cookie:", 7) == 0) {
        s->hash_key = SL_HASH_COOKIE;
        name = v + 7;
        nlen = len - 7;
    } else {
        report_mark(c, val->start_mark,
                    "%s: unknown value %s (expected ip, path, header:NAME or cookie:NAME)", path,
                    quote(&q, v, len));
        return;
    }
    if (name) {
        for (size_t i = 0; i < nlen; i++)
            if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
                  (name[i] >= '0' && name[i] <= '9') || name[i] == '-' || name[i] == '_')) {
                report_mark(c, val->start_mark, "%s: bad name %s", path, quote(&q, name, nlen));
                return;
            }
        free(s->hash_key_name);
        s->hash_key_name = dup_bytes(c, name, nlen);
    }
}

static const char *check_health_path(const char *s, size_t len)
{
    if (len == 0 || s[0] != '/')
        return "must start with '/'";
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return "must not contain spaces or control bytes";
    return NULL;
}

static const struct field health_fields[] = {
    FLD_STRING("path", sl_health_conf_t, path, 0, check_health_path),
    FLD_DURATION("interval", sl_health_conf_t, interval_ms, 10),
    FLD_DURATION("timeout", sl_health_conf_t, timeout_ms, 1),
    FLD_UINT("fails", sl_health_conf_t, fails, 0, 1, 100),
    FLD_UINT("passes", sl_health_conf_t, passes, 0, 1, 100),
    FLD_CUSTOM("expect_status", 0, parse_expect_status),
};
static const struct table health_table = {TABLE(health_fields), .line_offset = NO_OFFSET};

static void parse_health_check(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                               const char *path, void *base)
{
    SL_UNUSED(f);
    sl_service_conf_t *s = base;
    s->health.enabled = 1;
    parse_table(c, val, path, &health_table, &s->health, &c->key->start_mark);
}

static const struct field retry_budget_fields[] = {
    FLD_UINT("percent", sl_service_conf_t, retry_budget_percent, 0, 0, 100),
    FLD_UINT("min_concurrency", sl_service_conf_t, retry_budget_min, 0, 0, 100000),
};
static const struct table retry_budget_table = {TABLE(retry_budget_fields),
                                                .line_offset = NO_OFFSET};

/* ---- autoscale ---- */

static void parse_as_ports(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                           const char *path, void *base)
{
    SL_UNUSED(f);
    sl_autoscale_conf_t *a = base;
    const char *s;
    size_t len;
    quoted_t q;
    if (!get_scalar(c, val, path, "a port range such as 8000-8099", &s, &len))
        return;
    const char *dash = memchr(s, '-', len);
    uint64_t lo = 0, hi = 0;
    int ok = dash && dash > s && dash < s + len - 1;
    for (const char *p = s; ok && p < dash; p++)
        ok = *p >= '0' && *p <= '9' && (lo = lo * 10 + (uint64_t)(*p - '0')) <= 65535;
    for (const char *p = dash ? dash + 1 : s; ok && p < s + len; p++)
        ok = *p >= '0' && *p <= '9' && (hi = hi * 10 + (uint64_t)(*p - '0')) <= 65535;
    if (!ok || lo == 0 || hi < lo || hi - lo >= 1024) {
        report_mark(c, val->start_mark,
                    "%s: %s is not a port range LOW-HIGH (1..65535, at most 1024 ports)", path,
                    quote(&q, s, len));
        return;
    }
    a->port_lo = (uint32_t)lo;
    a->port_hi = (uint32_t)hi;
}

static void parse_as_target(conf_ctx_t *c, yaml_node_t *val, const char *path,
                            sl_autoscale_conf_t *a, int metric, double lo, double hi)
{
    const char *s;
    size_t len;
    quoted_t q;
    if (!get_scalar(c, val, path, "a number", &s, &len))
        return;
    char buf[64];
    char *end = NULL;
    double v = -1;
    if (len < sizeof(buf)) {
        memcpy(buf, s, len);
        buf[len] = 0;
        v = strtod(buf, &end);
    }
    if (len >= sizeof(buf) || !end || *end || !(v >= lo && v <= hi)) {
        report_mark(c, val->start_mark, "%s: %s must be a number from %g to %g", path,
                    quote(&q, s, len), lo, hi);
        return;
    }
    if (a->metric >= 0 && a->metric != metric) {
        report_mark(c, val->start_mark,
                    "%s: give one of target_cpu, target_inflight, target_rps", path);
        return;
    }
    a->metric = metric;
    a->target = v;
}

static void parse_as_cpu(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                         const char *path, void *base)
{
    SL_UNUSED(f);
    parse_as_target(c, val, path, base, SL_AS_CPU, 1, 10000);
}

static void parse_as_inflight(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                              const char *path, void *base)
{
    SL_UNUSED(f);
    parse_as_target(c, val, path, base, SL_AS_INFLIGHT, 0.1, 1e6);
}

static void parse_as_rps(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                         const char *path, void *base)
{
    SL_UNUSED(f);
    parse_as_target(c, val, path, base, SL_AS_RPS, 0.1, 1e9);
}

/* env: {NAME: value, ...} -> "NAME=value" strings. */
static void parse_as_env(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                         const char *path, void *base)
{
    SL_UNUSED(f);
    sl_autoscale_conf_t *a = base;
    if (!expect_type(c, val, YAML_MAPPING_NODE, path))
        return;
    yaml_node_pair_t *pairs = val->data.mapping.pairs.start;
    size_t n = (size_t)(val->data.mapping.pairs.top - pairs);
    if (n > 64) {
        report_mark(c, val->start_mark, "%s: at most 64 variables", path);
        return;
    }
    a->env = calloc(n ? n : 1, sizeof(char *));
    if (!a->env) {
        report_oom(c);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *k = node_at(c, pairs[i].key), *v = node_at(c, pairs[i].value);
        const char *ks, *vs;
        size_t kl, vl;
        if (!get_scalar(c, k, path, "a variable name", &ks, &kl) ||
            !get_scalar(c, v, path, "a value", &vs, &vl) || !check_text(c, v, path, vs, vl))
            continue;
        const char *why = check_env_name(ks, kl);
        if (why) {
            quoted_t q;
            report_mark(c, k->start_mark, "%s: %s %s", path, quote(&q, ks, kl), why);
            continue;
        }
        char *e = malloc(kl + vl + 2);
        if (!e) {
            report_oom(c);
            return;
        }
        memcpy(e, ks, kl);
        e[kl] = '=';
        memcpy(e + kl + 1, vs, vl);
        e[kl + vl + 1] = 0;
        a->env[a->nenv++] = e;
    }
}

static const struct enum_name as_policy_names[] = {
    {"pods", SL_AS_PODS, true}, {"percent", SL_AS_PERCENT, true}, {NULL, 0, false}};
static const struct enum_name as_select_names[] = {{"max", SL_AS_SELECT_MAX, true},
                                                   {"min", SL_AS_SELECT_MIN, true},
                                                   {"disabled", SL_AS_SELECT_DISABLED, true},
                                                   {NULL, 0, false}};

static void as_policy_defaults(void *item)
{
    sl_as_policy_conf_t *p = item;
    p->period_ms = 15000;
}

static const struct field as_policy_fields[] = {
    FLD_ENUM("type", sl_as_policy_conf_t, type, as_policy_names),
    FLD_UINT("value", sl_as_policy_conf_t, value, F_REQUIRED, 1, 10000),
    FLD_DURATION("period", sl_as_policy_conf_t, period_ms, 1000),
};
static const struct table as_policy_table = {TABLE(as_policy_fields),
                                             .size = sizeof(sl_as_policy_conf_t),
                                             .init = as_policy_defaults,
                                             .name_offset = NO_OFFSET,
                                             .line_offset = offsetof(sl_as_policy_conf_t, line),
                                             .col_offset = offsetof(sl_as_policy_conf_t, col)};

static const struct field as_behavior_fields[] = {
    FLD_DURATION("stabilization_window", sl_as_behavior_conf_t, window_ms, 0),
    FLD_LIST("policies", sl_as_behavior_conf_t, policies, npolicies, &as_policy_table, F_NONEMPTY,
             SL_AS_MAX_POLICIES),
    FLD_ENUM("select", sl_as_behavior_conf_t, select, as_select_names),
};
static const struct table as_behavior_table = {TABLE(as_behavior_fields),
                                               .line_offset = NO_OFFSET};

static const struct field autoscale_fields[] = {
    FLD_STRING("command", sl_autoscale_conf_t, command, F_REQUIRED, check_nonempty),
    FLD_CUSTOM("ports", F_REQUIRED, parse_as_ports),
    /* at most 100: one machine's processes (and the HPA history stays exact below 128) */
    FLD_UINT("min", sl_autoscale_conf_t, min, 0, 0, 100),
    FLD_UINT("max", sl_autoscale_conf_t, max, 0, 1, 100),
    FLD_UINT("initial", sl_autoscale_conf_t, initial, 0, 0, 100),
    FLD_CUSTOM("env", 0, parse_as_env),
    FLD_STRING("workdir", sl_autoscale_conf_t, workdir, 0, check_nonempty),
    FLD_CUSTOM("target_cpu", 0, parse_as_cpu),
    FLD_CUSTOM("target_inflight", 0, parse_as_inflight),
    FLD_CUSTOM("target_rps", 0, parse_as_rps),
    FLD_DURATION("sync_period", sl_autoscale_conf_t, sync_period_ms, 1000),
    FLD_UINT("tolerance_percent", sl_autoscale_conf_t, tolerance_pct, 0, 0, 100),
    FLD_TABLE("scale_up", offsetof(sl_autoscale_conf_t, up), &as_behavior_table, 0),
    FLD_TABLE("scale_down", offsetof(sl_autoscale_conf_t, down), &as_behavior_table, 0),
    FLD_DURATION("drain_timeout", sl_autoscale_conf_t, drain_timeout_ms, 0),
    FLD_DURATION("stop_grace", sl_autoscale_conf_t, stop_grace_ms, 0),
};
static const struct table autoscale_table = {TABLE(autoscale_fields), .line_offset = NO_OFFSET};

static void parse_autoscale(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                            const char *path, void *base)
{
    SL_UNUSED(f);
    sl_service_conf_t *s = base;
    sl_autoscale_conf_t *a = &s->autoscale;
    a->enabled = 1;
    a->metric = -1;
    a->min = 1;
    a->max = 10;
    a->sync_period_ms = 15000;
    a->tolerance_pct = 10;
    a->up.window_ms = SL_ALERT_UNSET;
    a->down.window_ms = SL_ALERT_UNSET;
    a->drain_timeout_ms = 30000;
    a->stop_grace_ms = 10000;
    a->line = (int)c->key->start_mark.line + 1;
    a->col = (int)c->key->start_mark.column + 1;
    parse_table(c, val, path, &autoscale_table, a, &c->key->start_mark);
    a->has_initial = map_get(c, val, "initial", NULL) != NULL;
}

static const struct field service_fields[] = {
    FLD_ENUM("balance", sl_service_conf_t, balance, balance_names),
    FLD_UINT("keepalive", sl_service_conf_t, keepalive, 0, 0, 10000),
    FLD_TABLE("timeouts", 0, &timeouts_table, 0),
    FLD_UINT("retries", sl_service_conf_t, retries, 0, 0, 10),
    FLD_METHODS("retry_methods", sl_service_conf_t, retry_methods, method_names),
    FLD_TABLE("retry_budget", 0, &retry_budget_table, 0),
    FLD_CUSTOM("fail_on_status", 0, parse_fail_status),
    FLD_CUSTOM("hash_key", 0, parse_hash_key),
    /* required unless autoscale runs the servers: checked in finish_services */
    FLD_LIST("servers", sl_service_conf_t, servers, nservers, &server_table, F_NONEMPTY,
             MAX_ENTRIES),
    FLD_LIST("read_servers", sl_service_conf_t, read_servers, nread_servers, &server_table,
             F_NONEMPTY, MAX_ENTRIES),
    FLD_DURATION("read_your_writes", sl_service_conf_t, read_your_writes_ms, 0),
    FLD_CUSTOM("health_check", 0, parse_health_check),
    FLD_CUSTOM("autoscale", 0, parse_autoscale),
};
static const struct table service_table = {TABLE(service_fields),
                                           .size = sizeof(sl_service_conf_t),
                                           .init = service_defaults,
                                           .name_offset = offsetof(sl_service_conf_t, name),
                                           .line_offset = offsetof(sl_service_conf_t, line),
                                           .col_offset = offsetof(sl_service_conf_t, col)};

static const struct field match_fields[] = {
    FLD_STRING("path_prefix", sl_route_conf_t, path_prefix, F_REQUIRED, check_path_prefix),
    FLD_STRING("host", sl_route_conf_t, host, 0, check_host),
    FLD_METHODS("methods", sl_route_conf_t, methods, method_names),
};
static const struct table match_table = {TABLE(match_fields), .line_offset = NO_OFFSET};

/* An HTTP field name (a token). NULL when fine. */
static const char *check_header_name(const char *s, size_t len)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    if (len == 0 || len > 128)
        return "must be 1..128 characters";
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              memchr(tchar, ch, sizeof(tchar) - 1)))
            return "is not a valid header name";
    }
    return NULL;
}

/* A RateLimit policy name: it becomes an sf-string in the RateLimit fields. */
static const char *check_policy_name(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return "must be 1..64 characters";
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return "may only contain letters, digits, '_', '-' and '.'";
    return NULL;
}

/* A Redis key prefix: printable, no spaces (keys are sent as bulk strings, but a prefix
 * with spaces or quotes is a mistake waiting in redis-cli). ':' is Redis's usual
 * separator, as in the default "sluice:". */
static const char *check_key_prefix(const char *s, size_t len)
{
    if (len > 64)
        return "must be at most 64 characters";
    for (size_t i = 0; i < len; i++)
        if (s[i] <= ' ' || s[i] == 0x7f || s[i] == '"' || s[i] == '\\')
            return "may not contain spaces, quotes, backslashes or control characters";
    return NULL;
}

/* true/false (also yes/no, on/off as YAML 1.1 writers produce). */
static void parse_bool_at(conf_ctx_t *c, yaml_node_t *val, const char *path, int *out)
{
    const char *s;
    size_t len;
    quoted_t q;
    if (!get_scalar(c, val, path, "true or false", &s, &len))
        return;
    if (bytes_eq(s, len, "true") || bytes_eq(s, len, "yes") || bytes_eq(s, len, "on"))
        *out = 1;
    else if (bytes_eq(s, len, "false") || bytes_eq(s, len, "no") || bytes_eq(s, len, "off"))
        *out = 0;
    else
        report_mark(c, val->start_mark, "%s: expected true or false, got %s", path,
                    quote(&q, s, len));
}

static void parse_limit_key(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                            const char *path, void *base)
{
    SL_UNUSED(f);
    sl_limit_conf_t *l = base;
    const char *s;
    size_t len;
    quoted_t q;
    if (!get_scalar(c, val, path, "a key", &s, &len))
        return;
    if (bytes_eq(s, len, "ip"))
        l->key = SL_RLKEY_IP;
    else if (bytes_eq(s, len, "user"))
        l->key = SL_RLKEY_USER;
    else if (bytes_eq(s, len, "route"))
        l->key = SL_RLKEY_ROUTE;
    else if (len > 7 && memcmp(s, "header:", 7) == 0 && !check_header_name(s + 7, len - 7)) {
        l->key = SL_RLKEY_HEADER;
        free(l->key_name);
        l->key_name = dup_bytes(c, s + 7, len - 7);
    } else
        report_mark(c, val->start_mark,
                    "%s: unknown value %s (expected ip, user, route or header:NAME)", path,
                    quote(&q, s, len));
}

static void parse_limit_rate(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                             const char *path, void *base)
{
    SL_UNUSED(f);
    sl_limit_conf_t *l = base;
    const char *s;
    size_t len;
    quoted_t q;
    if (!get_scalar(c, val, path, "a rate", &s, &len))
        return;
    if (sl_parse_rate(s, len, &l->count, &l->period_ms))
        report_mark(c, val->start_mark,
                    "%s: bad rate %s (expected N/second, N/minute, N/hour or N/day)", path,
                    quote(&q, s, len));
}

static void parse_limit_burst(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                              const char *path, void *base)
{
    SL_UNUSED(f);
    sl_limit_conf_t *l = base;
    const char *s;
    size_t len;
    quoted_t q;
    if (!get_scalar(c, val, path, "an integer", &s, &len))
        return;
    uint64_t v = 0;
    size_t i = 0;
    for (; i < len && i < 10 && s[i] >= '0' && s[i] <= '9'; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    if (i == 0 || i != len || v > 1000000000) {
        report_mark(c, val->start_mark, "%s: bad burst %s (expected 0..1000000000)", path,
                    quote(&q, s, len));
        return;
    }
    l->burst = (uint32_t)v;
    l->has_burst = 1;
}

static void parse_limit_dry_run(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                                const char *path, void *base)
{
    SL_UNUSED(f);
    parse_bool_at(c, val, path, &((sl_limit_conf_t *)base)->dry_run);
}

static const struct field limit_fields[] = {
    FLD_CUSTOM("key", F_REQUIRED, parse_limit_key),
    FLD_CUSTOM("rate", F_REQUIRED, parse_limit_rate),
    FLD_CUSTOM("burst", 0, parse_limit_burst),
    FLD_CUSTOM("dry_run", 0, parse_limit_dry_run),
    FLD_STRING("name", sl_limit_conf_t, name, 0, check_policy_name),
};
static const struct table limit_table = {TABLE(limit_fields),
                                         .size = sizeof(sl_limit_conf_t),
                                         .name_offset = NO_OFFSET,
                                         .line_offset = offsetof(sl_limit_conf_t, line),
                                         .col_offset = offsetof(sl_limit_conf_t, col)};

static void parse_require_auth(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                               const char *path, void *base)
{
    SL_UNUSED(f);
    parse_bool_at(c, val, path, &((sl_route_conf_t *)base)->require_auth);
}

static void route_defaults(void *item)
{
    sl_route_conf_t *r = item;
    r->service_index = -1;
    r->compress_min = SL_COMPRESS_MIN_LENGTH;
}

static const char *check_label_name(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return "must be 1..64 characters";
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return "may only contain letters, digits, '_', '-' and '.'";
    return NULL;
}

/* A route's cache: options (RFC 9111 shared cache; see docs/cache.md). */
static const struct field route_cache_fields[] = {
    FLD_DURATION("ttl", sl_route_cache_conf_t, ttl_ms, 0),
    FLD_DURATION("stale_while_revalidate", sl_route_cache_conf_t, swr_ms, 0),
    FLD_DURATION("stale_if_error", sl_route_cache_conf_t, sie_ms, 0),
    FLD_BOOL("override", sl_route_cache_conf_t, override),
    FLD_BOOL("allow_set_cookie", sl_route_cache_conf_t, allow_set_cookie),
    FLD_BOOL("enabled", sl_route_cache_conf_t, enabled),
};
static const struct table route_cache_table = {TABLE(route_cache_fields),
                                               .line_offset = NO_OFFSET};

static void parse_route_cache(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                              const char *path, void *base)
{
    SL_UNUSED(f);
    sl_route_conf_t *r = base;
    r->cache.enabled = 1;
    parse_table(c, val, path, &route_cache_table, &r->cache, &c->key->start_mark);
}

/* compress: a list of coding names, kept as SL_COMPRESS_HAVE_* bits; [] is none. */
static const struct enum_name coding_names[] = {
    {"br", SL_COMPRESS_BR, true}, {"gzip", SL_COMPRESS_GZIP, true}, {NULL, 0, false}};
#define FLD_CODINGS(k, T, m) \
    { .key = k, .type = T_METHODS, .offset = OFFSET_SIZED(T, m, 4), .names = coding_names, \
      .what = "coding", .min = 0 }

static const char *check_index_name(const char *s, size_t len)
{
    char name[SL_STATIC_NAME_MAX + 1];
    if (len == 0 || len > SL_STATIC_NAME_MAX)
        return "must be one file name of 1..255 bytes";
    memcpy(name, s, len);
    name[len] = 0;
    return sl_static_index_valid(name) && strlen(name) == len
               ? NULL
               : "must be one file name (no '/', '\\', control bytes, \".\" or \"..\")";
}

static const char *check_pattern(const char *s, size_t len)
{
    SL_UNUSED(s);
    return len == 0 || len > 255 ? "must be auto, none or a glob of 1..255 bytes" : NULL;
}

/* A route's static: target (docs/static.md). */
static const struct field static_fields[] = {
    FLD_STRING("root", sl_static_conf_t, root, F_REQUIRED, NULL),
    FLD_STRING("index", sl_static_conf_t, index, 0, check_index_name),
    FLD_CODINGS("compress", sl_static_conf_t, compress),
    FLD_SIZE("compress_min", sl_static_conf_t, compress_min, 0, UINT64_MAX),
    FLD_SIZE("compress_max", sl_static_conf_t, compress_max, 0, 64u << 20),
    FLD_STRING("immutable_pattern", sl_static_conf_t, immutable_pattern, 0, check_pattern),
    FLD_DURATION("max_age", sl_static_conf_t, max_age_ms, 0),
    FLD_BOOL("dotfiles", sl_static_conf_t, dotfiles),
    FLD_BOOL("symlinks", sl_static_conf_t, symlinks),
    FLD_SIZE("file_cache", sl_static_conf_t, file_cache, 0, 64ull << 30),
    FLD_DURATION("file_cache_valid", sl_static_conf_t, file_cache_valid_ms, 0),
};
static const struct table static_table = {TABLE(static_fields), .line_offset = NO_OFFSET};

static void parse_route_static(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                               const char *path, void *base)
{
    SL_UNUSED(f);
    sl_static_conf_t *st = &((sl_route_conf_t *)base)->stat;
    st->enabled = 1;
    st->compress = SL_COMPRESS_HAVE_ALL;
    st->compress_min = SL_COMPRESS_MIN_LENGTH;
    st->compress_max = 1u << 20;
    st->symlinks = 1;
    st->file_cache = 16u << 20;
    st->file_cache_valid_ms = 1000;
    parse_table(c, val, path, &static_table, st, &c->key->start_mark);
}

static const struct field route_fields[] = {
    FLD_STRING("name", sl_route_conf_t, name, 0, check_label_name),
    FLD_TABLE("match", 0, &match_table, F_REQUIRED),
    FLD_CUSTOM("service", 0, parse_route_service),
    FLD_LIST("rate_limits", sl_route_conf_t, rate_limits, nrate_limits, &limit_table, 0, 64),
    FLD_CUSTOM("cache", 0, parse_route_cache),
    FLD_BOOL("dedupe", sl_route_conf_t, dedupe),
    FLD_CUSTOM("static", 0, parse_route_static),
    FLD_CODINGS("compress", sl_route_conf_t, compress),
    FLD_SIZE("compress_min", sl_route_conf_t, compress_min, 0, UINT64_MAX),
    FLD_CUSTOM("require_auth", 0, parse_require_auth),
};
static const struct table route_table = {TABLE(route_fields),
                                         .size = sizeof(sl_route_conf_t),
                                         .init = route_defaults,
                                         .name_offset = NO_OFFSET,
                                         .line_offset = offsetof(sl_route_conf_t, line),
                                         .col_offset = offsetof(sl_route_conf_t, col)};

static const struct field limits_fields[] = {
    FLD_UINT("max_connections", sl_limits_conf_t, max_connections, 0, 1, 10000000),
    FLD_DURATION("header_timeout", sl_limits_conf_t, header_timeout_ms, 1),
    FLD_DURATION("idle_timeout", sl_limits_conf_t, idle_timeout_ms, 1),
    FLD_SIZE("max_header_bytes", sl_limits_conf_t, max_header_bytes, 1024, 1024 * 1024),
    FLD_SIZE("max_body_bytes", sl_limits_conf_t, max_body_bytes, 0, UINT64_MAX),
    FLD_DURATION("shutdown_timeout", sl_limits_conf_t, shutdown_timeout_ms, 0),
    FLD_UINT("rate_limit_keys", sl_limits_conf_t, rate_limit_keys, 0, 1000, 100000000),
    FLD_UINT("h2_max_concurrent_streams", sl_limits_conf_t, h2_max_concurrent_streams, 0, 1, 10000),
};
static const struct table limits_table = {TABLE(limits_fields), .line_offset = NO_OFFSET};

static void parse_algorithms(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                             const char *path, void *base)
{
    SL_UNUSED(f);
    sl_auth_conf_t *a = base;
    if (!expect_type(c, val, YAML_SEQUENCE_NODE, path))
        return;
    yaml_node_item_t *items = val->data.sequence.items.start;
    size_t n = (size_t)(val->data.sequence.items.top - items);
    a->algorithms = 0;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = node_at(c, items[i]);
        const char *s;
        size_t len;
        quoted_t q;
        if (item == NULL || !get_scalar(c, item, path, "an algorithm", &s, &len))
            continue;
        if (bytes_eq(s, len, "HS256"))
            a->algorithms |= SL_ALG_HS256;
        else if (bytes_eq(s, len, "RS256"))
            a->algorithms |= SL_ALG_RS256;
        else if (bytes_eq(s, len, "ES256"))
            a->algorithms |= SL_ALG_ES256;
        else
            report_mark(c, item->start_mark,
                        "%s: unknown algorithm %s (expected HS256, RS256 or ES256)", path,
                        quote(&q, s, len));
    }
    if (n == 0)
        report_mark(c, val->start_mark, "%s: must not be empty", path);
}

static const struct field jwt_fields[] = {
    FLD_STRING("secret_env", sl_auth_conf_t, secret_env, 0, check_env_name),
    FLD_STRING("public_key", sl_auth_conf_t, public_key, 0, check_nonempty),
    FLD_CUSTOM("algorithms", 0, parse_algorithms),
    FLD_STRING("user_claim", sl_auth_conf_t, user_claim, 0, check_nonempty),
    FLD_DURATION("leeway", sl_auth_conf_t, leeway_ms, 0),
};
static const struct table jwt_table = {TABLE(jwt_fields), .line_offset = NO_OFFSET};

static void parse_jwt(conf_ctx_t *c, const struct field *f, yaml_node_t *val, const char *path,
                      void *base)
{
    SL_UNUSED(f);
    sl_auth_conf_t *a = base;
    a->jwt = 1;
    parse_table(c, val, path, &jwt_table, a, &c->key->start_mark);
    if (!a->secret_env && !a->public_key)
        report_mark(c, val->start_mark, "%s: needs secret_env (HS256) or public_key (RS256, ES256)",
                    path);
}

static const struct enum_name on_failure_names[] = {
    {"fail_open", SL_FAIL_OPEN, true},
    {"fail_closed", SL_FAIL_CLOSED, true},
    {NULL, 0, false},
};

static const struct field redis_fields[] = {
    FLD_ADDR("address", sl_redis_conf_t, addr, F_REQUIRED),
    FLD_ENUM("on_failure", sl_redis_conf_t, on_failure, on_failure_names),
    FLD_DURATION("timeout", sl_redis_conf_t, timeout_ms, 1),
    FLD_STRING("key_prefix", sl_redis_conf_t, key_prefix, 0, check_key_prefix),
};
static const struct table redis_table = {TABLE(redis_fields), .line_offset = NO_OFFSET};

static void parse_redis(conf_ctx_t *c, const struct field *f, yaml_node_t *val, const char *path,
                        void *base)
{
    SL_UNUSED(f);
    sl_config_t *cfg = base;
    cfg->redis.enabled = 1;
    parse_table(c, val, path, &redis_table, &cfg->redis, &c->key->start_mark);
}

static const struct field auth_fields[] = {
    FLD_CUSTOM("jwt", 0, parse_jwt),
};
static const struct table auth_table = {TABLE(auth_fields), .line_offset = NO_OFFSET};

/* trusted_proxies: [10.0.0.0/8, 127.0.0.1, "::1/128"] */
static void parse_trusted_proxies(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                                  const char *path, void *base)
{
    SL_UNUSED(f);
    sl_config_t *cfg = base;
    if (!expect_type(c, val, YAML_SEQUENCE_NODE, path))
        return;
    yaml_node_item_t *items = val->data.sequence.items.start;
    size_t n = (size_t)(val->data.sequence.items.top - items);
    if (n > 256) {
        report_mark(c, val->start_mark, "%s: at most 256 entries", path);
        return;
    }
    free(cfg->trusted_proxies);
    cfg->trusted_proxies = calloc(n ? n : 1, sizeof(sl_cidr_t));
    cfg->ntrusted_proxies = 0;
    if (!cfg->trusted_proxies) {
        report_oom(c);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = node_at(c, items[i]);
        const char *s;
        size_t len;
        quoted_t q;
        if (item == NULL || !get_scalar(c, item, path, "an address or CIDR", &s, &len))
            continue;
        char buf[64];
        sl_cidr_t *cd = &cfg->trusted_proxies[cfg->ntrusted_proxies];
        const char *slash = memchr(s, '/', len);
        size_t alen = slash ? (size_t)(slash - s) : len;
        int ok = alen < sizeof(buf);
        if (ok) {
            memcpy(buf, s, alen);
            buf[alen] = 0;
            if (inet_pton(AF_INET, buf, cd->addr) == 1) {
                cd->family = AF_INET;
                cd->prefix = 32;
            } else if (inet_pton(AF_INET6, buf, cd->addr) == 1) {
                cd->family = AF_INET6;
                cd->prefix = 128;
            } else
                ok = 0;
        }
        if (ok && slash) {
            uint32_t pfx = 0;
            size_t k = 1, plen = len - alen;
            for (; k < plen && k < 4 && slash[k] >= '0' && slash[k] <= '9'; k++)
                pfx = pfx * 10 + (uint32_t)(slash[k] - '0');
            ok = k == plen && plen > 1 && pfx <= cd->prefix;
            cd->prefix = pfx;
        }
        if (!ok) {
            report_mark(c, item->start_mark, "%s: bad address or CIDR %s", path,
                        quote(&q, s, len));
            continue;
        }
        cfg->ntrusted_proxies++;
    }
}

/* ---- alerts ---- */

static void parse_alert_expr(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                             const char *path, void *base)
{
    SL_UNUSED(f);
    sl_alert_rule_conf_t *r = base;
    const char *s;
    size_t len;
    if (!get_scalar(c, val, path, "an expression such as \"error_rate > 0.01\"", &s, &len) ||
        !check_text(c, val, path, s, len))
        return;
    char err[200];
    size_t at = 0;
    if (sl_alert_expr_parse(s, len, &r->e, err, sizeof(err), &at) != 0) {
        /* point at the offending byte: the scalar's column, past an opening quote */
        yaml_mark_t m = val->start_mark;
        int quoted = val->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                     val->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
        if (m.line == val->end_mark.line)
            m.column += at + (size_t)quoted;
        report_mark(c, m, "%s: %s", path, err);
        r->e.signal = -2; /* reported: finish_alerts says nothing more about it */
        return;
    }
    free(r->expr);
    r->expr = dup_bytes(c, s, len);
}

static void parse_alert_enabled(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                                const char *path, void *base)
{
    SL_UNUSED(f);
    parse_bool_at(c, val, path, &((sl_alert_rule_conf_t *)base)->enabled);
}

static void alert_rule_defaults(void *item)
{
    sl_alert_rule_conf_t *r = item;
    r->for_ms = SL_ALERT_UNSET;
    r->window_ms = SL_ALERT_UNSET;
    r->enabled = 1;
    r->e.signal = -1;
}

static const struct field alert_rule_fields[] = {
    FLD_STRING("name", sl_alert_rule_conf_t, name, F_REQUIRED, check_label_name),
    FLD_CUSTOM("expr", 0, parse_alert_expr),
    FLD_DURATION("for", sl_alert_rule_conf_t, for_ms, 0),
    FLD_DURATION("window", sl_alert_rule_conf_t, window_ms, 1000),
    FLD_STRING("severity", sl_alert_rule_conf_t, severity, 0, check_label_name),
    FLD_STRING("summary", sl_alert_rule_conf_t, summary, 0, check_nonempty),
    FLD_CUSTOM("enabled", 0, parse_alert_enabled),
};
static const struct table alert_rule_table = {TABLE(alert_rule_fields),
                                              .size = sizeof(sl_alert_rule_conf_t),
                                              .init = alert_rule_defaults,
                                              .name_offset = NO_OFFSET,
                                              .line_offset = offsetof(sl_alert_rule_conf_t, line),
                                              .col_offset = offsetof(sl_alert_rule_conf_t, col)};

/* http://host:port/path: the notifier speaks plain HTTP/1.1 to an address (no TLS, no DNS
 * at run time: put a local relay in front of anything else). */
static const char *check_webhook(const char *s, size_t len)
{
    if (len < 8 || memcmp(s, "http://", 7) != 0)
        return "must be an http:// URL (http://HOST:PORT/PATH)";
    const char *h = s + 7, *end = s + len, *slash = memchr(h, '/', (size_t)(end - h));
    sl_addr_t a;
    if (sl_parse_addr(h, (size_t)((slash ? slash : end) - h), &a) != 0)
        return "must name a numeric address and port: http://127.0.0.1:9093/path";
    return NULL;
}

static void parse_alerts_defaults(conf_ctx_t *c, const struct field *f, yaml_node_t *val,
                                  const char *path, void *base)
{
    SL_UNUSED(f);
    parse_bool_at(c, val, path, &((sl_alerts_conf_t *)base)->defaults);
}

static const struct field alerts_fields[] = {
    FLD_CUSTOM("defaults", 0, parse_alerts_defaults),
    FLD_STRING("webhook", sl_alerts_conf_t, webhook, 0, check_webhook),
    FLD_LIST("rules", sl_alerts_conf_t, rules, nrules, &alert_rule_table, 0, 256),
};
static const struct table alerts_table = {TABLE(alerts_fields), .line_offset = NO_OFFSET};

/* alerts: a list of rules, or {defaults, webhook, rules}. */
static void parse_alerts(conf_ctx_t *c, const struct field *f, yaml_node_t *val, const char *path,
                         void *base)
{
    SL_UNUSED(f);
    sl_config_t *cfg = base;
    if (val->type == YAML_SEQUENCE_NODE)
        parse_list(c, &alerts_fields[2], val, path, &cfg->alerts);
    else
        parse_table(c, val, path, &alerts_table, &cfg->alerts, &c->key->start_mark);
}

/* A service needs servers unless autoscale runs them; autoscale's bounds agree, and its
 * instances join only after passing health checks (defaults when none are configured). */
static void finish_services(conf_ctx_t *c, yaml_node_t *root)
{
    sl_config_t *cfg = c->cfg;
    yaml_node_t *services = map_get(c, root, "services", NULL);
    for (uint32_t i = 0; i < cfg->nservices; i++) {
        sl_service_conf_t *s = &cfg->services[i];
        sl_autoscale_conf_t *a = &s->autoscale;
        yaml_node_t *node = s->name ? map_get(c, services, s->name, NULL) : NULL;
        /* (a service that is not a mapping was reported already) */
        if (node && node->type == YAML_MAPPING_NODE && !map_get(c, node, "servers", NULL) &&
            !a->enabled)
            vreport_at(c, s->line, s->col, "services.%s: missing required key \"servers\"",
                       s->name);
        if (!a->enabled || !s->name)
            continue;
        if (a->min > a->max)
            vreport_at(c, a->line, a->col, "services.%s.autoscale: min %u is above max %u",
                       s->name, a->min, a->max);
        if (a->port_hi && a->max > a->port_hi - a->port_lo + 1)
            vreport_at(c, a->line, a->col,
                       "services.%s.autoscale: max %u instances need at least %u ports",
                       s->name, a->max, a->max);
        if (a->has_initial && (a->initial < a->min || a->initial > a->max))
            vreport_at(c, a->line, a->col,
                       "services.%s.autoscale: initial %u is outside min..max (%u..%u)",
                       s->name, a->initial, a->min, a->max);
        if (!a->has_initial)
            a->initial = a->min;
        if (a->metric < 0 && a->command)
            vreport_at(c, a->line, a->col,
                       "services.%s.autoscale: one of target_cpu, target_inflight, target_rps "
                       "is required",
                       s->name);
        if (!s->health.enabled) {
            /* readiness: an instance gets traffic after one good check of /health */
            s->health.enabled = 1;
            s->health.interval_ms = 1000;
            s->health.timeout_ms = 1000;
            s->health.fails = 3;
            s->health.passes = 1;
        }
    }
}

/* Every rule either has an expr or changes a built-in; selectors name a route (by name or
 * path prefix) or a service that exists; names are unique. */
static void finish_alerts(conf_ctx_t *c)
{
    sl_config_t *cfg = c->cfg;
    for (uint32_t i = 0; i < cfg->nroutes; i++)
        for (uint32_t j = 0; cfg->routes[i].name && j < i; j++)
            if (cfg->routes[j].name && strcmp(cfg->routes[j].name, cfg->routes[i].name) == 0)
                vreport_at(c, cfg->routes[i].line, cfg->routes[i].col,
                           "route name %s is used twice", cfg->routes[i].name);
    for (uint32_t i = 0; i < cfg->alerts.nrules; i++) {
        sl_alert_rule_conf_t *r = &cfg->alerts.rules[i];
        if (!r->name)
            continue;
        int builtin = 0;
        for (size_t k = 0; k < sl_alert_nbuiltins; k++)
            builtin |= strcmp(sl_alert_builtins[k].name, r->name) == 0;
        if (!r->expr && !builtin && r->e.signal == -1)
            vreport_at(c, r->line, r->col,
                       "alert %s: needs expr (only a built-in rule's name may leave it out)",
                       r->name);
        if (r->window_ms != SL_ALERT_UNSET && r->window_ms > SL_ALERT_WINDOW_MAX_MS)
            vreport_at(c, r->line, r->col, "alert %s: window is at most 15m", r->name);
        for (uint32_t j = 0; j < i; j++)
            if (cfg->alerts.rules[j].name && strcmp(cfg->alerts.rules[j].name, r->name) == 0)
                vreport_at(c, r->line, r->col, "alert name %s is used twice", r->name);
        if (!r->expr || r->e.selector == SL_SEL_NONE)
            continue;
        int found = 0;
        if (r->e.selector == SL_SEL_ROUTE) {
            for (uint32_t k = 0; k < cfg->nroutes && !found; k++) {
                const sl_route_conf_t *rt = &cfg->routes[k];
                found = (rt->name && strcmp(rt->name, r->e.sel) == 0) ||
                        (!rt->name && rt->path_prefix && strcmp(rt->path_prefix, r->e.sel) == 0);
            }
        } else {
            for (uint32_t k = 0; k < cfg->nservices && !found; k++)
                found = cfg->services[k].name && strcmp(cfg->services[k].name, r->e.sel) == 0;
        }
        if (!found)
            vreport_at(c, r->line, r->col, "alert %s: no %s named \"%s\"", r->name,
                       r->e.selector == SL_SEL_ROUTE ? "route" : "service", r->e.sel);
    }
}

static const struct field cache_fields[] = {
    FLD_SIZE("memory", sl_cache_conf_t, memory, 64 * 1024, 1ull << 40),
    FLD_SIZE("max_object", sl_cache_conf_t, max_object, 1, 1ull << 40),
    FLD_BOOL("coalesce", sl_cache_conf_t, coalesce),
    FLD_DURATION("lock_timeout", sl_cache_conf_t, lock_timeout_ms, 1),
    FLD_DURATION("hit_for_pass", sl_cache_conf_t, hit_for_pass_ms, 0),
    FLD_UINT("max_waiters", sl_cache_conf_t, max_waiters, 0, 1, 1000000),
    FLD_BOOL("redis", sl_cache_conf_t, redis),
};
static const struct table cache_table = {TABLE(cache_fields), .line_offset = NO_OFFSET};

static const struct field admin_fields[] = {
    FLD_ADDR("listen", sl_config_t, admin_listen, 0),
    FLD_STRING("token_env", sl_config_t, admin_token_env, 0, check_env_name),
};
static const struct table admin_table = {TABLE(admin_fields), .line_offset = NO_OFFSET};

static const struct field top_fields[] = {
    FLD_CUSTOM("listen", 0, parse_listen),
    FLD_UINT("workers", sl_config_t, workers, F_AUTO_ZERO, 1, 256),
    FLD_TABLE("admin", 0, &admin_table, 0),
    FLD_TABLE("limits", offsetof(sl_config_t, limits), &limits_table, 0),
    FLD_STRING("access_log", sl_config_t, access_log, F_OFF_NULL, check_nonempty),
    FLD_STRING("pid_file", sl_config_t, pid_file, 0, check_nonempty),
    FLD_MAP("services", sl_config_t, services, nservices, &service_table, 0, MAX_ENTRIES,
            check_service_name),
    FLD_LIST("routes", sl_config_t, routes, nroutes, &route_table, 0, MAX_ENTRIES),
    FLD_CUSTOM("redis", 0, parse_redis),
    FLD_TABLE("auth", offsetof(sl_config_t, auth), &auth_table, 0),
    FLD_LIST("rate_limits", sl_config_t, rate_limits, nrate_limits, &limit_table, 0, 64),
    FLD_CUSTOM("trusted_proxies", 0, parse_trusted_proxies),
    FLD_TABLE("cache", offsetof(sl_config_t, cache), &cache_table, 0),
    FLD_CUSTOM("alerts", 0, parse_alerts),
};
static const struct table top_table = {TABLE(top_fields), .line_offset = NO_OFFSET};

_Static_assert(SL_ARRAY_LEN(top_fields) <= MAX_TABLE_FIELDS, "raise MAX_TABLE_FIELDS");
_Static_assert(SL_ARRAY_LEN(service_fields) <= MAX_TABLE_FIELDS, "raise MAX_TABLE_FIELDS");
_Static_assert(SL_ARRAY_LEN(route_fields) <= MAX_TABLE_FIELDS, "raise MAX_TABLE_FIELDS");

static void config_defaults(sl_config_t *cfg)
{
    static const char listen_default[] = "127.0.0.1:8080";
    static const char admin_default[] = "127.0.0.1:9901";

    sl_parse_addr(listen_default, sizeof(listen_default) - 1, &cfg->listen[0]);
    cfg->nlisten = 1;
    cfg->workers = 0;
    sl_parse_addr(admin_default, sizeof(admin_default) - 1, &cfg->admin_listen);
    cfg->admin_enabled = 1;
    cfg->limits.max_connections = 10000;
    cfg->limits.header_timeout_ms = 10000;
    cfg->limits.idle_timeout_ms = 60000;
    cfg->limits.max_header_bytes = 16 * 1024;
    cfg->limits.max_body_bytes = 10 * 1024 * 1024;
    cfg->limits.shutdown_timeout_ms = 30000;
    cfg->limits.rate_limit_keys = 1000000;
    cfg->limits.h2_max_concurrent_streams = 128;
    cfg->auth.algorithms = SL_ALG_HS256;
    cfg->auth.leeway_ms = 30000;
    cfg->redis.timeout_ms = 20;
    cfg->alerts.defaults = 1;
    cfg->cache.memory = 256ull << 20;
    cfg->cache.max_object = 8ull << 20;
    cfg->cache.coalesce = 1;
    cfg->cache.lock_timeout_ms = 5000;
    cfg->cache.hit_for_pass_ms = 5000;
    cfg->cache.max_waiters = 10000;
}

/* ---------------------------------------------------------------------------------------
 * Checks across keys, once the whole file is read. */

/* Give limits their default policy names, and check what needs auth.jwt. Names must
 * differ within the global set and within each route's set plus the global one, since
 * the RateLimit fields name policies. */
static void finish_limit_set(conf_ctx_t *c, sl_limit_conf_t *l, uint32_t n, const char *prefix,
                             const sl_limit_conf_t *global, uint32_t nglobal)
{
    static const struct {
        uint64_t ms;
        const char *word;
    } words[] = {{1000, "second"}, {60000, "minute"}, {3600000, "hour"}, {86400000, "day"}};
    sl_config_t *cfg = c->cfg;
    for (uint32_t i = 0; i < n; i++) {
        if (!l[i].name) {
            const char *w = "limit";
            for (size_t k = 0; k < SL_ARRAY_LEN(words); k++)
                if (words[k].ms == l[i].period_ms)
                    w = words[k].word;
            char buf[80];
            snprintf(buf, sizeof(buf), "%s%s", prefix, w);
            l[i].name = dup_bytes(c, buf, strlen(buf));
            if (!l[i].name)
                return;
        }
        if (l[i].key == SL_RLKEY_USER && !cfg->auth.jwt)
            vreport_at(c, l[i].line, l[i].col, "rate limit with key user needs auth.jwt");
        for (uint32_t j = 0; j < i; j++)
            if (l[j].name && strcmp(l[j].name, l[i].name) == 0)
                vreport_at(c, l[i].line, l[i].col,
                           "rate limit name \"%s\" is used twice: give one a name:", l[i].name);
        for (uint32_t j = 0; global && j < nglobal; j++)
            if (global[j].name && strcmp(global[j].name, l[i].name) == 0)
                vreport_at(c, l[i].line, l[i].col,
                           "rate limit name \"%s\" is also a global limit's: give one a name:",
                           l[i].name);
    }
}

static void finish_limits(conf_ctx_t *c)
{
    sl_config_t *cfg = c->cfg;
    finish_limit_set(c, cfg->rate_limits, cfg->nrate_limits, "", NULL, 0);
    for (uint32_t r = 0; r < cfg->nroutes; r++) {
        sl_route_conf_t *rt = &cfg->routes[r];
        finish_limit_set(c, rt->rate_limits, rt->nrate_limits, "route_", cfg->rate_limits,
                         cfg->nrate_limits);
        if (rt->require_auth && !cfg->auth.jwt)
            vreport_at(c, rt->line, rt->col, "routes[%u]: require_auth needs auth.jwt", r);
    }
}

static void resolve_services(conf_ctx_t *c, yaml_node_t *root)
{
    sl_config_t *cfg = c->cfg;
    yaml_node_t *rkey = NULL, *services;

    if (cfg->nroutes == 0 || c->nrefs == 0)
        return; /* no route names a service (static routes only) */
    services = map_get(c, root, "services", NULL);
    if (services != NULL && services->type != YAML_MAPPING_NODE)
        return; /* already reported; every route would only repeat it */
    if (cfg->nservices == 0) {
        map_get(c, root, "routes", &rkey);
        if (rkey)
            report_mark(c, rkey->start_mark,
                        "routes: at least one service must be defined under \"services\"");
        return;
    }
    for (size_t i = 0; i < c->nrefs; i++) {
        sl_route_conf_t *r = c->refs[i].route;
        quoted_t q;
        int found = -1;
        for (uint32_t j = 0; j < cfg->nservices && found < 0; j++)
            if (cfg->services[j].name && strcmp(cfg->services[j].name, r->service) == 0)
                found = (int)j;
        if (found < 0)
            report_mark(c, c->refs[i].mark, "routes[%zu]: service %s is not defined",
                        (size_t)(r - cfg->routes), quote(&q, r->service, strlen(r->service)));
        r->service_index = found;
    }
}

/* The cache's cross-key rules: its Redis tier needs redis:, dedupe excludes cache:. */
static void check_cache(conf_ctx_t *c, yaml_node_t *root)
{
    sl_config_t *cfg = c->cfg;
    if (cfg->cache.redis && !cfg->redis.enabled) {
        yaml_node_t *ck = NULL;
        map_get(c, root, "cache", &ck);
        yaml_mark_t m = ck ? ck->start_mark : root->start_mark;
        report_mark(c, m, "cache.redis: needs a top-level redis: {address: ...}");
    }
    for (uint32_t i = 0; i < cfg->nroutes; i++)
        if (cfg->routes[i].cache.enabled && cfg->routes[i].dedupe)
            vreport_at(c, cfg->routes[i].line, cfg->routes[i].col,
                       "routes[%u]: dedupe is for routes without cache (a caching route "
                       "already coalesces its misses)",
                       i);
}

/* Each route has one target: a service or a static: directory, which must exist now
 * (a typo'd root is an error at -t, not a 404 for every request later). */
static void check_targets(conf_ctx_t *c)
{
    sl_config_t *cfg = c->cfg;
    for (uint32_t i = 0; i < cfg->nroutes; i++) {
        sl_route_conf_t *r = &cfg->routes[i];
        sl_static_conf_t *st = &r->stat;
        if (!r->path_prefix)
            continue; /* not a mapping, or no match: already reported */
        if (!r->service && r->service_index != -2 && !st->enabled) {
            vreport_at(c, r->line, r->col, "routes[%u]: needs a target: service or static", i);
            continue;
        }
        if (!st->enabled)
            continue;
        if (r->compress)
            vreport_at(c, r->line, r->col,
                       "routes[%u]: compress is for service routes (static: has its own)", i);
        if (r->service)
            vreport_at(c, r->line, r->col,
                       "routes[%u]: has both service and static; a route has one target", i);
        if (r->cache.enabled || r->dedupe)
            vreport_at(c, r->line, r->col,
                       "routes[%u]: cache and dedupe are for service routes (static answers "
                       "are read from files and carry their own validators)",
                       i);
        if (!st->index) {
            st->index = strdup("index.html");
            if (!st->index) {
                report_oom(c);
                return;
            }
        }
        if (st->compress_max < st->compress_min)
            vreport_at(c, r->line, r->col,
                       "routes[%u].static: compress_max is below compress_min", i);
        struct stat sb;
        if (st->root && stat(st->root, &sb) != 0)
            vreport_at(c, r->line, r->col, "routes[%u].static.root: %s: %s", i, st->root,
                       strerror(errno));
        else if (st->root && !S_ISDIR(sb.st_mode))
            vreport_at(c, r->line, r->col, "routes[%u].static.root: %s: not a directory", i,
                       st->root);
    }
}

static void check_admin_listen(conf_ctx_t *c, yaml_node_t *root)
{
    sl_config_t *cfg = c->cfg;
    yaml_node_t *at = map_get(c, map_get(c, root, "admin", NULL), "listen", NULL);

    for (uint32_t i = 0; i < cfg->nlisten; i++) {
        const sl_addr_t *a = &cfg->listen[i];
        if (a->len && a->len == cfg->admin_listen.len &&
            memcmp(&a->ss, &cfg->admin_listen.ss, a->len) == 0) {
            yaml_mark_t m = at ? at->start_mark : root->start_mark;
            report_mark(c, m, "admin.listen: %s is also a proxy listen address",
                        cfg->admin_listen.text);
            return;
        }
    }
}

static void finish_routes(sl_config_t *cfg)
{
    for (uint32_t i = 0; i < cfg->nroutes; i++)
        if (cfg->routes[i].path_prefix)
            cfg->routes[i].path_prefix_len = strlen(cfg->routes[i].path_prefix);
}

/* ---------------------------------------------------------------------------------------
 * Loading. */

/* libyaml's reader reports a byte offset only; turn it into line:col. */
static void offset_position(const char *data, size_t len, size_t off, int *line, int *col)
{
    size_t l = 1, lstart = 0;
    for (size_t i = 0; i < off && i < len; i++) {
        if (data[i] == '\n') {
            l++;
            lstart = i + 1;
        }
    }
    *line = clamp_int(l);
    *col = clamp_int(off - lstart + 1);
}

static void report_yaml_error(conf_ctx_t *c, const yaml_parser_t *p, const char *data, size_t len)
{
    const char *problem = p->problem ? p->problem : "unknown error";
    int line, col;

    switch (p->error) {
    case YAML_MEMORY_ERROR:
        report_oom(c);
        break;
    case YAML_READER_ERROR:
        /* Invalid UTF-8 and the like: libyaml gives a byte offset, not a mark. */
        offset_position(data, len, p->problem_offset, &line, &col);
        if (p->problem_value != -1)
            report_at(c, line, col, "YAML error: %s (byte 0x%02x)", problem,
                      (unsigned)p->problem_value & 0xffu);
        else
            report_at(c, line, col, "YAML error: %s", problem);
        break;
    default:
        if (p->context)
            report_mark(c, p->problem_mark, "YAML syntax error: %s (%s at line %zu, column %zu)",
                        problem, p->context, p->context_mark.line + 1, p->context_mark.column + 1);
        else
            report_mark(c, p->problem_mark, "YAML syntax error: %s", problem);
        break;
    }
}

/* A first pass over the event stream, before libyaml composes a document: its loader
 * recurses once per nesting level and keeps every node in memory, so depth and node count
 * are bounded here, where only one event is alive at a time. Also finds syntax errors,
 * an empty stream and a second document. Returns true when loading may go on. */
static bool prescan(conf_ctx_t *c, const char *data, size_t len)
{
    yaml_parser_t p;
    yaml_event_t ev;
    size_t depth = 0, nodes = 0, docs = 0;
    bool ok = true, done = false;

    if (!yaml_parser_initialize(&p)) {
        report_oom(c);
        return false;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)data, len);
    while (ok && !done) {
        yaml_event_type_t type;
        yaml_mark_t mark;

        if (!yaml_parser_parse(&p, &ev)) {
            report_yaml_error(c, &p, data, len);
            ok = false;
            break;
        }
        type = ev.type;
        mark = ev.start_mark;
        yaml_event_delete(&ev);
        switch (type) {
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (++depth > MAX_DEPTH) {
                report_mark(c, mark, "nesting deeper than %d levels", MAX_DEPTH);
                ok = false;
            }
            __attribute__((fallthrough)); /* a collection is a node too */
        case YAML_SCALAR_EVENT:
        case YAML_ALIAS_EVENT:
            if (ok && ++nodes > MAX_NODES) {
                report_mark(c, mark, "more than %u values in the file", MAX_NODES);
                ok = false;
            }
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) {
                report_mark(c, mark, "a second YAML document (---): only one is allowed");
                ok = false;
            }
            break;
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        default:
            break;
        }
    }
    yaml_parser_delete(&p);
    if (ok && docs == 0) {
        report(c, "configuration is empty");
        ok = false;
    }
    return ok;
}

/* Parses the (pre-scanned) document into c->cfg and runs the cross-key checks. */
static void load_document(conf_ctx_t *c, const char *data, size_t len)
{
    yaml_parser_t p;
    yaml_document_t doc;
    yaml_node_t *root;

    if (!yaml_parser_initialize(&p)) {
        report_oom(c);
        return;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)data, len);
    /* On failure yaml_parser_load has already deleted the document. */
    if (!yaml_parser_load(&p, &doc)) {
        report_yaml_error(c, &p, data, len);
        yaml_parser_delete(&p);
        return;
    }
    c->doc = &doc;
    root = yaml_document_get_root_node(&doc);
    if (root == NULL || is_null(root)) {
        report(c, "configuration is empty");
    } else {
        parse_table(c, root, "", &top_table, c->cfg, NULL);
        resolve_services(c, root);
        check_cache(c, root);
        check_targets(c);
        check_admin_listen(c, root);
        finish_routes(c->cfg);
        finish_limits(c);
        finish_services(c, root);
        finish_alerts(c);
    }
    c->doc = NULL;
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
}

sl_config_t *sl_config_load_mem(const char *name, const char *data, size_t len,
                                sl_config_errors_t *errs)
{
    sl_config_errors_t scratch;
    conf_ctx_t c;

    if (errs == NULL)
        errs = &scratch;
    memset(errs, 0, sizeof(*errs));
    memset(&c, 0, sizeof(c));
    c.errs = errs;
    memcpy(c.budget, budget_max, sizeof(c.budget));
    if (data == NULL)
        data = "";
    if (len > MAX_FILE_BYTES) {
        report(&c, "file is larger than %u bytes (4 MiB)", MAX_FILE_BYTES);
        return NULL;
    }
    if (!prescan(&c, data, len))
        return NULL;

    c.cfg = calloc(1, sizeof(*c.cfg));
    if (c.cfg == NULL) {
        report_oom(&c);
        return NULL;
    }
    config_defaults(c.cfg);
    c.cfg->path = dup_bytes(&c, name ? name : "<config>", strlen(name ? name : "<config>"));
    if (c.cfg->path != NULL)
        load_document(&c, data, len);
    free(c.refs);
    if (errs->n > 0 || errs->dropped > 0) {
        sort_errors(errs);
        sl_config_free(c.cfg);
        return NULL;
    }
    return c.cfg;
}

/* Reads at most MAX_FILE_BYTES + 1 bytes (one more tells "too large" from "exactly at the
 * bound"); works for pipes and /dev/stdin as well as regular files. */
static char *read_bounded(int fd, size_t *out_len, int *err)
{
    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap);

    if (buf == NULL) {
        *err = ENOMEM;
        return NULL;
    }
    for (;;) {
        ssize_t r;
        if (len == cap) {
            char *nb;
            if (cap > MAX_FILE_BYTES)
                break;
            cap = cap * 2 > (size_t)MAX_FILE_BYTES + 1 ? (size_t)MAX_FILE_BYTES + 1 : cap * 2;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                *err = ENOMEM;
                return NULL;
            }
            buf = nb;
        }
        r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            *err = errno;
            free(buf);
            return NULL;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    *out_len = len;
    return buf;
}

sl_config_t *sl_config_load(const char *path, sl_config_errors_t *errs)
{
    sl_config_errors_t scratch;
    sl_config_t *cfg;
    struct stat st;
    size_t len = 0;
    char *data;
    int fd, err = 0;

    if (errs == NULL)
        errs = &scratch;
    memset(errs, 0, sizeof(*errs));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err = errno;
        errs->n = 1;
        snprintf(errs->e[0].msg, sizeof(errs->e[0].msg), "cannot open: %s", strerror(err));
        return NULL;
    }
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        errs->n = 1;
        snprintf(errs->e[0].msg, sizeof(errs->e[0].msg), "cannot read: is a directory");
        return NULL;
    }
    data = read_bounded(fd, &len, &err);
    close(fd);
    if (data == NULL) {
        errs->n = 1;
        snprintf(errs->e[0].msg, sizeof(errs->e[0].msg), "cannot read: %s", strerror(err));
        return NULL;
    }
    cfg = sl_config_load_mem(path, data, len, errs);
    free(data);
    return cfg;
}

void sl_config_errors_print(FILE *out, const char *name, const sl_config_errors_t *errs)
{
    for (int i = 0; i < errs->n && i < SL_CONF_MAX_ERRORS; i++) {
        const sl_config_error_t *e = &errs->e[i];
        if (e->line > 0)
            fprintf(out, "%s:%d:%d: %s\n", name, e->line, e->col, e->msg);
        else
            fprintf(out, "%s: %s\n", name, e->msg);
    }
    if (errs->dropped > 0)
        fprintf(out, "%s: %d more errors not shown\n", name, errs->dropped);
}

static void free_limits(sl_limit_conf_t *l, uint32_t n)
{
    for (uint32_t i = 0; l && i < n; i++) {
        free(l[i].key_name);
        free(l[i].name);
    }
    free(l);
}

void sl_config_free(sl_config_t *cfg)
{
    if (cfg == NULL)
        return;
    for (uint32_t i = 0; i < SL_CONF_MAX_LISTEN; i++)
        free_tls_conf(cfg->listen_tls[i]);
    for (uint32_t i = 0; cfg->services && i < cfg->nservices; i++) {
        free(cfg->services[i].name);
        for (uint32_t j = 0; cfg->services[i].servers && j < cfg->services[i].nservers; j++)
            free(cfg->services[i].servers[j].host);
        for (uint32_t j = 0; cfg->services[i].read_servers && j < cfg->services[i].nread_servers;
             j++)
            free(cfg->services[i].read_servers[j].host);
        free(cfg->services[i].servers);
        free(cfg->services[i].read_servers);
        free(cfg->services[i].hash_key_name);
        free(cfg->services[i].health.path);
        sl_autoscale_conf_t *a = &cfg->services[i].autoscale;
        free(a->command);
        free(a->workdir);
        for (uint32_t k = 0; a->env && k < a->nenv; k++)
            free(a->env[k]);
        free(a->env);
        free(a->up.policies);
        free(a->down.policies);
    }
    free(cfg->services);
    for (uint32_t i = 0; cfg->routes && i < cfg->nroutes; i++) {
        free_limits(cfg->routes[i].rate_limits, cfg->routes[i].nrate_limits);
        free(cfg->routes[i].path_prefix);
        free(cfg->routes[i].name);
        free(cfg->routes[i].host);
        free(cfg->routes[i].service);
        free(cfg->routes[i].stat.root);
        free(cfg->routes[i].stat.index);
        free(cfg->routes[i].stat.immutable_pattern);
    }
    free(cfg->routes);
    free_limits(cfg->rate_limits, cfg->nrate_limits);
    free(cfg->trusted_proxies);
    for (uint32_t i = 0; cfg->alerts.rules && i < cfg->alerts.nrules; i++) {
        free(cfg->alerts.rules[i].name);
        free(cfg->alerts.rules[i].expr);
        free(cfg->alerts.rules[i].severity);
        free(cfg->alerts.rules[i].summary);
    }
    free(cfg->alerts.rules);
    free(cfg->alerts.webhook);
    free(cfg->auth.secret_env);
    free(cfg->auth.public_key);
    free(cfg->auth.user_claim);
    free(cfg->redis.key_prefix);
    free(cfg->admin_token_env);
    free(cfg->access_log);
    free(cfg->pid_file);
    free(cfg->path);
    free(cfg);
}

int sl_addr_from_sockaddr(sl_addr_t *out, const struct sockaddr *sa, uint16_t port)
{
    char ip[INET6_ADDRSTRLEN];
    memset(out, 0, sizeof(*out));
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
        *sin = *(const struct sockaddr_in *)sa;
        sin->sin_port = htons(port);
        out->len = sizeof(*sin);
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
        snprintf(out->text, sizeof(out->text), "%s:%u", ip, port);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
        *sin6 = *(const struct sockaddr_in6 *)sa;
        sin6->sin6_port = htons(port);
        out->len = sizeof(*sin6);
        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
        snprintf(out->text, sizeof(out->text), "[%s]:%u", ip, port);
        return 0;
    }
    return SL_EINVAL;
}

int sl_parse_rate(const char *s, size_t len, uint32_t *count, uint64_t *period_ms)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"second", 1000}, {"minute", 60000}, {"hour", 3600000}, {"day", 86400000}};
    uint64_t v = 0;
    size_t i = 0;
    for (; i < len && i < 11 && s[i] >= '0' && s[i] <= '9'; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    if (i == 0 || i >= len || s[i] != '/' || v == 0 || v > 1000000000)
        return SL_EINVAL;
    const char *u = s + i + 1;
    size_t ul = len - i - 1;
    for (size_t k = 0; k < SL_ARRAY_LEN(units); k++) {
        if (ul == strlen(units[k].unit) && memcmp(u, units[k].unit, ul) == 0) {
            *count = (uint32_t)v;
            *period_ms = units[k].ms;
            return 0;
        }
    }
    return SL_EINVAL;
}
