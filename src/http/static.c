/* static.c - static-file building blocks; see static.h. Pure functions over (pointer,
 * length) pairs that never read past their length, except sl_static_root_open and
 * sl_static_open, which block in the file system (threadpool only). */
#include "static.h"

#include "../core/lex.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../core/httpdate.h"

#ifndef SYS_openat2
#define SYS_openat2 437 /* the same number on every architecture (unified table) */
#endif

/* ---------------------------------------------------------------------------------------
 * Bytes
 * ------------------------------------------------------------------------------------- */

static inline int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* The value of hex digit c, or -1. */
static int hexval(unsigned char c)
{
    if (is_digit(c))
        return c - '0';
    c = sl_lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* a[0..n) equals the lower-case literal lit, ignoring a's case. */
static int ieq(const char *a, size_t n, const char *lit)
{
    size_t k = strlen(lit);
    if (n != k)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (sl_lower((unsigned char)a[i]) != (unsigned char)lit[i])
            return 0;
    return 1;
}

/* A byte no served file name contains (static.h: 400). */
static inline int bad_byte(unsigned char c)
{
    return c < 0x20 || c == 0x7f || c == '\\';
}

int sl_static_status(int rc)
{
    switch (rc) {
    case SL_EBADMSG:
        return 400;
    case SL_STATIC_ENOTFOUND:
    case SL_STATIC_EISDIR:
        return 404;
    case SL_ETOOBIG:
        return 414;
    default:
        return rc < 0 ? 500 : 0;
    }
}

/* ---------------------------------------------------------------------------------------
 * Path resolution
 * ------------------------------------------------------------------------------------- */

int sl_static_index_valid(const char *name)
{
    if (!name)
        return 0;
    size_t n = strlen(name);
    if (n == 0 || n > SL_STATIC_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (name[i] == '/' || bad_byte((unsigned char)name[i]))
            return 0;
    return 1;
}

/* Append src[0..n) at out[*w], if it fits with a NUL after it; else mark *toolong. */
static void put(char *out, size_t cap, size_t *w, int *toolong, const char *src, size_t n)
{
    if (*toolong || n >= cap - *w) {
        *toolong = 1;
        return;
    }
    memcpy(out + *w, src, n);
    *w += n;
}

int sl_static_resolve(const char *p, size_t n, const char *index, unsigned flags, char *out,
                      size_t cap)
{
    if ((!p && n) || !out || cap == 0)
        return SL_EINVAL;
    if (cap > INT_MAX) /* the length is returned as an int */
        cap = INT_MAX;
    /* Pass 1, 400: every escape well-formed, no byte we refuse (raw or decoded). */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '%') {
            if (n - i < 3)
                return SL_EBADMSG;
            int hi = hexval((unsigned char)p[i + 1]), lo = hexval((unsigned char)p[i + 2]);
            if (hi < 0 || lo < 0)
                return SL_EBADMSG;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (bad_byte(c))
            return SL_EBADMSG;
    }
    /* Pass 2, segment by segment: 404s return at once (they beat 414, found at the end). */
    size_t w = 0;
    int toolong = 0, dir = 1; /* dir: the path so far names a directory */
    size_t i = 0;
    while (i < n) {
        if (p[i] == '/') {
            dir = 1;
            i++;
            continue;
        }
        char seg[SL_STATIC_NAME_MAX];
        size_t len = 0;
        for (; i < n && p[i] != '/'; i++) {
            unsigned char c = (unsigned char)p[i];
            if (c == '%') {
                c = (unsigned char)(hexval((unsigned char)p[i + 1]) << 4 |
                                    hexval((unsigned char)p[i + 2]));
                i += 2;
                if (c == '/')
                    return SL_STATIC_ENOTFOUND; /* %2f */
            }
            if (len == sizeof(seg))
                return SL_STATIC_ENOTFOUND; /* longer than any file name */
            seg[len++] = (char)c;
        }
        if (len == 0) /* cannot happen (a segment has a byte): for the compiler */
            continue;
        if (len == 1 && seg[0] == '.') {
            dir = 1;
            continue;
        }
        if (len == 2 && seg[0] == '.' && seg[1] == '.')
            return SL_STATIC_ENOTFOUND;
        if (seg[0] == '.' && !(flags & SL_STATIC_PATH_DOTFILES) &&
            !(len == 11 && memcmp(seg, ".well-known", 11) == 0))
            return SL_STATIC_ENOTFOUND;
        if (w)
            put(out, cap, &w, &toolong, "/", 1);
        put(out, cap, &w, &toolong, seg, len);
        dir = 0;
    }
    if (dir) {
        if (!sl_static_index_valid(index))
            return SL_STATIC_ENOTFOUND;
        if (w)
            put(out, cap, &w, &toolong, "/", 1);
        put(out, cap, &w, &toolong, index, strlen(index));
    }
    if (toolong)
        return SL_ETOOBIG;
    out[w] = '\0';
    return (int)w;
}

int sl_static_index_path(char *rel, size_t len, size_t cap, const char *index)
{
    if (!rel || !sl_static_index_valid(index))
        return SL_STATIC_ENOTFOUND;
    size_t k = strlen(index), need = len + (len ? 1 : 0) + k;
    if (len >= cap || need >= cap || need > INT_MAX)
        return SL_ETOOBIG;
    if (len)
        rel[len++] = '/';
    memcpy(rel + len, index, k);
    rel[need] = '\0';
    return (int)need;
}

/* ---------------------------------------------------------------------------------------
 * Opening beneath the root
 * ------------------------------------------------------------------------------------- */

/* Set once openat2 answered ENOSYS: every later open walks. */
static atomic_int no_openat2;

int sl_static_root_open(const char *root)
{
    if (!root || !*root)
        return -EINVAL;
    int fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* rel is relative and has no ".." segment. */
static int rel_ok(const char *rel)
{
    if (!rel || rel[0] == '/')
        return 0;
    for (const char *s = rel; *s;) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 2 && s[0] == '.' && s[1] == '.')
            return 0;
        s += len;
        if (*s == '/')
            s++;
    }
    return 1;
}

static int open_errno(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
    case ELOOP: /* a symlink where none may be followed, or a loop */
    case EXDEV: /* openat2: the resolution would leave the root */
    case ENAMETOOLONG:
    case EACCES:
    case EPERM:
    case ENXIO:  /* a UNIX socket, a FIFO opened for writing */
    case ENODEV: /* a device node without a driver */
        return SL_STATIC_ENOTFOUND;
    default:
        return SL_EIO;
    }
}

#define OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)

/* The walk: each component opened with O_NOFOLLOW beneath the previous one. Follows no
 * symlink. Returns an fd or -errno. */
static int open_walk(int root_fd, const char *rel)
{
    int dirfd = root_fd, own = -1, fd = -1;
    const char *s = rel;
    for (;;) {
        while (*s == '/')
            s++;
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        const char *rest = s + len;
        while (*rest == '/')
            rest++;
        int last = *rest == '\0';
        char comp[SL_STATIC_NAME_MAX + 1];
        if (len > SL_STATIC_NAME_MAX) {
            fd = -ENAMETOOLONG;
            break;
        }
        memcpy(comp, s, len);
        comp[len] = '\0';
        if (len == 0 || (len == 1 && comp[0] == '.')) {
            if (!last) {
                s = rest;
                continue;
            }
            comp[0] = '.', comp[1] = '\0'; /* the directory reached so far */
        }
        if (last) {
            /* "name/" must be a directory, as it must for openat2 */
            int dir_only = s[len] == '/' ? O_DIRECTORY : 0;
            fd = openat(dirfd, comp, OPEN_FLAGS | O_NOFOLLOW | dir_only);
            if (fd < 0)
                fd = -errno;
            break;
        }
        /* O_PATH: search permission is enough; on a symlink O_NOFOLLOW | O_DIRECTORY
         * fails with ENOTDIR rather than opening the link. */
        int next = openat(dirfd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            fd = -errno;
            break;
        }
        if (own >= 0)
            close(own);
        own = dirfd = next;
        s = rest;
    }
    if (own >= 0)
        close(own);
    return fd;
}

int sl_static_open(int root_fd, const char *rel, unsigned flags, sl_static_file_t *out)
{
    if (!out)
        return SL_EINVAL;
    out->fd = -1;
    if (root_fd < 0 || !rel_ok(rel))
        return SL_STATIC_ENOTFOUND;
    const char *name = *rel ? rel : ".";
    int fd = -ENOSYS;
    if (!(flags & SL_STATIC_OPEN_NO_OPENAT2) &&
        !atomic_load_explicit(&no_openat2, memory_order_relaxed)) {
        struct open_how how;
        memset(&how, 0, sizeof(how));
        how.flags = OPEN_FLAGS;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
        if (flags & SL_STATIC_OPEN_NO_SYMLINKS)
            how.resolve |= RESOLVE_NO_SYMLINKS;
        fd = (int)syscall(SYS_openat2, root_fd, name, &how, sizeof(how));
        if (fd < 0) {
            fd = -errno;
            if (fd == -ENOSYS)
                atomic_store_explicit(&no_openat2, 1, memory_order_relaxed);
        }
    }
    if (fd == -ENOSYS || fd == -EPERM)
        fd = open_walk(root_fd, name);
    if (fd < 0)
        return open_errno(-fd);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return SL_EIO;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return S_ISDIR(st.st_mode) ? SL_STATIC_EISDIR : SL_STATIC_ENOTFOUND;
    }
    out->fd = fd;
    out->size = (uint64_t)st.st_size;
    out->mtime_s = (int64_t)st.st_mtim.tv_sec;
    out->mtime_ns = (int32_t)st.st_mtim.tv_nsec;
    out->ino = (uint64_t)st.st_ino;
    out->dev = (uint64_t)st.st_dev;
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Content types
 * ------------------------------------------------------------------------------------- */

#define UTF8 "; charset=utf-8"

/* Sorted by extension (strcmp order): a binary search; the unit test checks the order. */
static const struct {
    const char *ext;
    const char *type;
} TYPES[] = {
    {"apng", "image/apng"},
    {"avif", "image/avif"},
    {"bmp", "image/bmp"},
    {"br", "application/x-brotli"}, /* no registered type; only when asked for by name */
    {"css", "text/css" UTF8},
    {"csv", "text/csv" UTF8},
    {"gif", "image/gif"},
    {"gz", "application/gzip"},
    {"htm", "text/html" UTF8},
    {"html", "text/html" UTF8},
    {"ico", "image/x-icon"},
    {"jpeg", "image/jpeg"},
    {"jpg", "image/jpeg"},
    {"js", "text/javascript" UTF8}, /* RFC 9239 */
    {"json", "application/json"},   /* RFC 8259 §11: no charset parameter */
    {"jsonld", "application/ld+json"},
    {"map", "application/json"}, /* source maps */
    {"md", "text/markdown" UTF8},
    {"mjs", "text/javascript" UTF8},
    {"mp3", "audio/mpeg"},
    {"mp4", "video/mp4"},
    {"oga", "audio/ogg"},
    {"ogg", "audio/ogg"},
    {"ogv", "video/ogg"},
    {"otf", "font/otf"},
    {"pdf", "application/pdf"},
    {"png", "image/png"},
    {"svg", "image/svg+xml"},
    {"tar", "application/x-tar"},
    {"ttf", "font/ttf"},
    {"txt", "text/plain" UTF8},
    {"wasm", "application/wasm"},
    {"wav", "audio/wav"},
    {"webm", "video/webm"},
    {"webmanifest", "application/manifest+json"},
    {"webp", "image/webp"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"xml", "text/xml" UTF8},
    {"zip", "application/zip"},
    {"zst", "application/zstd"},
};

const char *sl_static_type_at(size_t i, const char **type)
{
    if (i >= SL_ARRAY_LEN(TYPES))
        return NULL;
    if (type)
        *type = TYPES[i].type;
    return TYPES[i].ext;
}

/* The last segment of name[0..n) (after its last '/'), and in *dot its last '.' (NULL
 * when it has none): where a file name's extension starts. */
static const char *last_segment(const char *name, size_t n, const char **dot)
{
    const char *base = name, *e = name + n;
    for (const char *q = name; q < e; q++)
        if (*q == '/')
            base = q + 1;
    *dot = NULL;
    for (const char *q = base; q < e; q++)
        if (*q == '.')
            *dot = q;
    return base;
}

const char *sl_static_content_type(const char *name, size_t n)
{
    if (!name)
        return SL_STATIC_TYPE_DEFAULT;
    const char *e = name + n, *dot;
    const char *base = last_segment(name, n, &dot);
    if (!dot || dot == base)
        return SL_STATIC_TYPE_DEFAULT;
    char ext[16];
    size_t len = (size_t)(e - dot - 1);
    if (len == 0 || len >= sizeof(ext))
        return SL_STATIC_TYPE_DEFAULT;
    for (size_t i = 0; i < len; i++)
        ext[i] = (char)sl_lower((unsigned char)dot[1 + i]);
    ext[len] = '\0';
    size_t lo = 0, hi = SL_ARRAY_LEN(TYPES);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ext, TYPES[mid].ext);
        if (c == 0)
            return TYPES[mid].type;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return SL_STATIC_TYPE_DEFAULT;
}

int sl_static_sibling(const char *rel, size_t len, const char *suf, char *out, size_t cap)
{
    size_t k = suf ? strlen(suf) : 0;
    if (k == 0 || !rel || !out)
        return SL_EINVAL;
    if (len >= cap || k >= cap - len || len + k > INT_MAX)
        return SL_ETOOBIG;
    memmove(out, rel, len); /* out may be rel itself */
    memcpy(out + len, suf, k + 1);
    return (int)(len + k);
}

/* ---------------------------------------------------------------------------------------
 * Validators
 * ------------------------------------------------------------------------------------- */

/* v in lower-case hex without leading zeros at o; returns the digits written (1..16). */
static size_t hex64(char *o, uint64_t v)
{
    static const char H[] = "0123456789abcdef";
    char tmp[16];
    size_t k = 0;
    do {
        tmp[k++] = H[v & 15];
        v >>= 4;
    } while (v);
    for (size_t i = 0; i < k; i++)
        o[i] = tmp[k - 1 - i];
    return k;
}

size_t sl_static_etag(uint64_t size, int64_t mtime_s, int32_t mtime_ns, uint64_t ino,
                      char out[SL_STATIC_ETAG_MAX])
{
    /* unsigned arithmetic: wraps (opaque anyway) instead of overflowing past year 2262 */
    uint64_t ns = (uint64_t)mtime_s * 1000000000u + (uint64_t)(uint32_t)mtime_ns;
    size_t w = 0;
    out[w++] = '"';
    w += hex64(out + w, ino);
    out[w++] = '-';
    w += hex64(out + w, ns);
    out[w++] = '-';
    w += hex64(out + w, size);
    out[w++] = '"';
    out[w] = '\0';
    return w;
}

size_t sl_static_last_modified(int64_t mtime_s, char out[29])
{
    return sl_httpdate_format(mtime_s, out);
}

/* ---------------------------------------------------------------------------------------
 * Range
 * ------------------------------------------------------------------------------------- */

/* A decimal number as its significant digits [p, e) (leading zeros skipped). */
typedef struct num {
    const char *p, *e;
} num_t;

/* a < b for digit strings without leading zeros. */
static int num_lt(num_t a, num_t b)
{
    size_t la = (size_t)(a.e - a.p), lb = (size_t)(b.e - b.p);
    if (la != lb)
        return la < lb;
    return la && memcmp(a.p, b.p, la) < 0;
}

/* The value, saturated at UINT64_MAX (beyond any file size). */
static uint64_t num_val(num_t a)
{
    uint64_t v = 0;
    for (const char *q = a.p; q < a.e; q++) {
        unsigned d = (unsigned)(*q - '0');
        if (v > (UINT64_MAX - d) / 10)
            return UINT64_MAX;
        v = v * 10 + d;
    }
    return v;
}

/* 1*DIGIT at *pp (before e): its significant digits in *out; 0 when there is no digit. */
static int digits(const char **pp, const char *e, num_t *out)
{
    const char *p = *pp;
    if (p >= e || !is_digit((unsigned char)*p))
        return 0;
    while (p < e && *p == '0')
        p++;
    out->p = p;
    while (p < e && is_digit((unsigned char)*p))
        p++;
    out->e = p;
    *pp = p;
    return 1;
}

int sl_static_range_parse(const char *v, size_t n, uint64_t size, uint64_t *first, uint64_t *len)
{
    if (!v)
        return SL_STATIC_RANGE_NONE;
    const char *p = v, *e = v + n;
    sl_trim(&p, &e);
    const char *eq = memchr(p, '=', (size_t)(e - p));
    if (!eq || !ieq(p, (size_t)(eq - p), "bytes"))
        return SL_STATIC_RANGE_NONE; /* another unit, or not a ranges-specifier */
    unsigned count = 0;
    int suffix = 0, has_last = 0;
    num_t a = {0}, b = {0};
    for (p = eq + 1; p <= e;) {
        const char *c = memchr(p, ',', (size_t)(e - p));
        const char *s = p, *se = c ? c : e;
        p = se + 1;
        sl_trim(&s, &se);
        if (s == se) {
            if (!c)
                break;
            continue; /* empty list element */
        }
        num_t x, y = {0};
        int sfx = 0, hl = 0;
        if (*s == '-') { /* suffix-range */
            s++;
            if (!digits(&s, se, &x))
                return SL_STATIC_RANGE_NONE;
            sfx = 1;
        } else {
            if (!digits(&s, se, &x) || s >= se || *s != '-')
                return SL_STATIC_RANGE_NONE;
            s++;
            if (s < se) {
                if (!digits(&s, se, &y))
                    return SL_STATIC_RANGE_NONE;
                hl = 1;
                if (num_lt(y, x))
                    return SL_STATIC_RANGE_NONE; /* last-pos < first-pos: invalid */
            }
        }
        if (s != se)
            return SL_STATIC_RANGE_NONE;
        if (count++ == 0)
            a = x, b = y, suffix = sfx, has_last = hl;
        if (!c)
            break;
    }
    if (count == 0)
        return SL_STATIC_RANGE_NONE;
    if (count > 1)
        return SL_STATIC_RANGE_MULTI;
    if (size == 0)
        return SL_STATIC_RANGE_UNSAT;
    if (suffix) {
        uint64_t k = num_val(a);
        if (k == 0)
            return SL_STATIC_RANGE_UNSAT;
        if (k > size)
            k = size;
        *first = size - k;
        *len = k;
        return SL_STATIC_RANGE_OK;
    }
    uint64_t f = num_val(a);
    if (f >= size)
        return SL_STATIC_RANGE_UNSAT;
    uint64_t l = has_last ? num_val(b) : size - 1;
    if (l > size - 1)
        l = size - 1;
    *first = f;
    *len = l - f + 1;
    return SL_STATIC_RANGE_OK;
}

int sl_static_content_range(const sl_static_reply_t *r, char *out, size_t cap)
{
    if (!r || !out || (r->status != 206 && r->status != 416))
        return SL_EINVAL;
    char buf[SL_STATIC_CONTENT_RANGE_MAX];
    size_t w = 0;
    memcpy(buf, "bytes ", 6);
    w = 6;
    if (r->status == 206) {
        if (r->len == 0)
            return SL_EINVAL;
        w += sl_u64_dec(buf + w, r->first);
        buf[w++] = '-';
        w += sl_u64_dec(buf + w, r->first + r->len - 1);
    } else {
        buf[w++] = '*';
    }
    buf[w++] = '/';
    w += sl_u64_dec(buf + w, r->size);
    if (w >= cap)
        return SL_ETOOBIG;
    memcpy(out, buf, w);
    out[w] = '\0';
    return (int)w;
}

/* ---------------------------------------------------------------------------------------
 * Conditional requests (RFC 9110 §13)
 * ------------------------------------------------------------------------------------- */

typedef struct etag {
    const char *o; /* opaque-tag with its quotes */
    size_t len;
    int weak;
} etag_t;

/* entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE at *pp; etagc = %x21 / %x23-7E / obs-text. */
static int etag_parse(const char **pp, const char *e, etag_t *t)
{
    const char *p = *pp;
    t->weak = 0;
    if (e - p >= 2 && p[0] == 'W' && p[1] == '/') {
        t->weak = 1;
        p += 2;
    }
    if (p >= e || *p != '"')
        return 0;
    const char *o = p++;
    while (p < e && *p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x21 || c == 0x7f)
            return 0;
        p++;
    }
    if (p >= e)
        return 0;
    p++;
    t->o = o;
    t->len = (size_t)(p - o);
    *pp = p;
    return 1;
}

static int etag_eq(const etag_t *a, const etag_t *b, int strong)
{
    if (strong && (a->weak || b->weak))
        return 0;
    return a->len == b->len && memcmp(a->o, b->o, a->len) == 0;
}

/* One If-Match / If-None-Match line v[0..n) against ours (NULL: no ETag): 1 a member
 * matches ("*" matches any current representation), 0 none does, -1 malformed. */
static int list_match(const char *v, size_t n, const etag_t *ours, int strong)
{
    if (!v)
        return -1;
    const char *p = v, *e = v + n;
    sl_trim(&p, &e);
    if (e - p == 1 && *p == '*')
        return 1;
    int match = 0, members = 0;
    while (p < e) {
        if (*p == ',' || sl_is_ows((unsigned char)*p)) {
            p++;
            continue;
        }
        etag_t t;
        if (!etag_parse(&p, e, &t))
            return -1;
        members++;
        while (p < e && sl_is_ows((unsigned char)*p))
            p++;
        if (p < e && *p != ',')
            return -1;
        if (ours && etag_eq(&t, ours, strong))
            match = 1;
    }
    return members ? match : -1;
}

static int name_is(const sl_http_header_t *h, const char *lit)
{
    return h->name && ieq(h->name, h->name_len, lit);
}

/* How many lines are named lit; *last is the last one. */
static unsigned count_hdr(const sl_http_header_t *h, unsigned n, const char *lit,
                          const sl_http_header_t **last)
{
    unsigned k = 0;
    *last = NULL;
    for (unsigned i = 0; i < n; i++)
        if (name_is(&h[i], lit)) {
            k++;
            *last = &h[i];
        }
    return k;
}

/* Every line named lit evaluated as a list: 1 match, 0 none, -1 a line is malformed;
 * 2 when there is no such line. */
static int lists_match(const sl_http_header_t *h, unsigned n, const char *lit, const etag_t *ours,
                       int strong)
{
    int r = 2;
    for (unsigned i = 0; i < n; i++) {
        if (!name_is(&h[i], lit))
            continue;
        int m = list_match(h[i].value, h[i].value_len, ours, strong);
        if (m < 0)
            return -1;
        if (r == 2)
            r = 0;
        r |= m;
    }
    return r;
}

/* The single valid HTTP-date of the field named lit, or -1 (absent, repeated, invalid). */
static int64_t one_date(const sl_http_header_t *h, unsigned n, const char *lit, int64_t now_s)
{
    const sl_http_header_t *f;
    if (count_hdr(h, n, lit, &f) != 1 || !f->value)
        return -1;
    return sl_httpdate_parse(f->value, f->value_len, now_s);
}

static int if_range_true(const sl_http_header_t *ir, const etag_t *ours, int64_t mtime_s,
                         int64_t now_s)
{
    if (!ir->value)
        return 0;
    const char *p = ir->value, *e = p + ir->value_len;
    sl_trim(&p, &e);
    if (p < e && (*p == '"' || (e - p >= 2 && p[0] == 'W' && p[1] == '/'))) {
        etag_t t;
        if (!etag_parse(&p, e, &t) || p != e || !ours)
            return 0;
        return etag_eq(&t, ours, 1);
    }
    int64_t d = sl_httpdate_parse(p, (size_t)(e - p), now_s);
    /* §13.1.5 exact match, and §8.8.2.2: a Last-Modified is strong when it is at least one
     * second before the response's Date (now). */
    return d >= 0 && mtime_s >= 0 && d == mtime_s && now_s > 0 && mtime_s <= now_s - 1;
}

int sl_static_decide(const sl_http_header_t *h, unsigned n, int method, uint64_t size,
                     const char *etag, size_t elen, int64_t mtime_s, int64_t now_s,
                     sl_static_reply_t *out)
{
    etag_t ours, *op = NULL;
    if (etag && elen) {
        const char *p = etag, *e = etag + elen;
        if (etag_parse(&p, e, &ours) && p == e)
            op = &ours;
    }
    if (!h)
        n = 0;
    int get_head = method == SL_M_GET || method == SL_M_HEAD;
    out->first = 0;
    out->len = 0;
    out->size = size;

    /* 1. If-Match, strong comparison; 2. otherwise If-Unmodified-Since. */
    int m = lists_match(h, n, "if-match", op, 1);
    if (m != 2) {
        if (m != 1)
            return out->status = 412;
    } else {
        int64_t ius = one_date(h, n, "if-unmodified-since", now_s);
        if (ius >= 0 && (mtime_s < 0 || mtime_s > ius))
            return out->status = 412;
    }
    /* 3. If-None-Match, weak comparison; 4. otherwise If-Modified-Since. */
    m = lists_match(h, n, "if-none-match", op, 0);
    if (m != 2) {
        if (m == 1)
            return out->status = get_head ? 304 : 412;
    } else if (get_head) {
        int64_t ims = one_date(h, n, "if-modified-since", now_s);
        if (ims >= 0 && mtime_s >= 0 && mtime_s <= ims)
            return out->status = 304;
    }
    out->status = 200;
    out->len = size;
    /* 5. Range, GET only, gated by If-Range. */
    const sl_http_header_t *range, *ir;
    if (method != SL_M_GET || count_hdr(h, n, "range", &range) != 1)
        return out->status;
    unsigned nir = count_hdr(h, n, "if-range", &ir);
    if (nir > 1 || (nir == 1 && !if_range_true(ir, op, mtime_s, now_s)))
        return out->status;
    uint64_t f = 0, l = 0;
    switch (sl_static_range_parse(range->value, range->value_len, size, &f, &l)) {
    case SL_STATIC_RANGE_OK:
        out->status = 206;
        out->first = f;
        out->len = l;
        break;
    case SL_STATIC_RANGE_UNSAT:
        out->status = 416;
        out->len = 0;
        break;
    default:
        break;
    }
    return out->status;
}

/* ---------------------------------------------------------------------------------------
 * Fingerprinted names
 * ------------------------------------------------------------------------------------- */

/* part[0..n) is a hash: min_hex+ hex digits with at least one 0-9 and one a-f. */
static int hash_part(const char *part, size_t n, unsigned min_hex)
{
    if (n < min_hex)
        return 0;
    int digit = 0, letter = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)part[i];
        if (is_digit(c))
            digit = 1;
        else if (hexval(c) >= 0)
            letter = 1;
        else
            return 0;
    }
    return digit && letter;
}

int sl_static_fingerprinted(const char *name, size_t n, unsigned min_hex)
{
    if (!name || min_hex == 0)
        return 0;
    const char *e = name + n, *dot;
    const char *base = last_segment(name, n, &dot);
    if (!dot || dot + 1 == e)
        return 0; /* no extension */
    const char *s = base;
    for (const char *q = base; q <= dot; q++) {
        if (*q == '.' || *q == '-') {
            if (hash_part(s, (size_t)(q - s), min_hex))
                return 1;
            s = q + 1;
        }
    }
    return 0;
}
