/* static_route.c - files for a route's static: target (see static_route.h).
 *
 * Why a threadpool job per request rather than open() and sendfile() on the loop, as
 * nginx does: a cold open or read stalls the whole loop (every connection of the worker)
 * for a disk seek; nginx accepts that by default and offers `aio threads` for large
 * files. Here the loop never touches the file system, and the same bytes go out through
 * TLS and HTTP/2, which sendfile cannot serve. The cost is one threadpool round trip per
 * request and one copy (file -> memory -> socket): measured in docs/benchmarks.md. */
#include "static_route.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/hash.h"
#include "../core/lex.h"
#include "../core/log.h"
#include "../core/metrics.h"
#include "../core/out.h"
#include "../http/compress.h"
#include "../http/encoder.h"
#include "../http/static.h"

enum { IMM_AUTO = 0, IMM_NONE, IMM_GLOB };
enum { SRC_FILE = 0, SRC_SIBLING, SRC_ON_THE_FLY };

#define COND_MAX 8       /* conditional/Range field lines copied per request */
#define COND_BYTES 2048  /* and their bytes: more is not a real client */

/* What the head says about a representation (a job's answer or a kept file). */
typedef struct meta {
    int coding, source, vary, immutable;
    const char *ctype;
    char etag[SL_STATIC_ETAG_MAX + SL_COMPRESS_ETAG_EXTRA];
    size_t etag_len;
    char lastmod[29];
    size_t lastmod_len;
    int64_t mtime_s;          /* Last-Modified, for the conditional decision */
} meta_t;

/* A file kept in memory (the route's file_cache): one representation of one name for
 * one pair of wanted codings, immutable once made, shared by every worker by reference
 * count; replaced when a job reads the file again. */
typedef struct fent {
    struct fent *next;        /* hash chain */
    uint64_t hash;
    int refs;                 /* atomic: the table's one and each answer in flight */
    uint64_t checked_ms;      /* uv_now() when the file was read */
    uint64_t cost;            /* bytes charged to the table */
    meta_t m;
    char *body;
    size_t size;
    uint8_t want[2];          /* the codings the request wanted: part of the key */
    uint16_t rel_len;
    char rel[];
} fent_t;

#define FCACHE_SLOTS 4096u     /* hash chains; entries are bounded by memory, not count */
#define FCACHE_FILE_MAX (256u * 1024) /* larger files are always read per request */

typedef struct fcache {
    pthread_mutex_t mu;
    fent_t *slot[FCACHE_SLOTS];
    uint64_t bytes;           /* under mu */
} fcache_t;

typedef struct job {
    uv_work_t work;
    sl_exchange_t *x;         /* NULL once the client went away */
    const sl_static_route_t *sr;
    sl_worker_t *w;
    int busy;                 /* queued on the threadpool */
    /* request */
    int method;
    int slash;                /* the path named a directory ("/", "docs/") */
    int codings[2];           /* acceptable codings in preference order, IDENTITY ends */
    int64_t now_s;
    unsigned ncond;
    /* answer */
    int rc;                   /* 0, or a sl_static_open code */
    int whole;                /* chunk holds the whole representation, nothing decided */
    meta_t m;
    sl_static_reply_t reply;
    int fd;                   /* the file the body is read from, -1 when done */
    uint64_t off, left;       /* next body byte to read, and how many remain */
    char *chunk;              /* body bytes read (or coded) by the last job */
    size_t chunk_len;
    int waiting;              /* output congested: the next chunk waits for drained */
    /* (not cleared on creation: filled as far as used) */
    sl_http_header_t cond[COND_MAX];
    char condbuf[COND_BYTES];
    char rel[SL_STATIC_PATH_MAX];
} job_t;

static sl_counter_t *m_responses; /* static_responses_total{coding,source} */
static sl_counter_t *m_errors;    /* static_file_errors_total */
static sl_counter_t *m_fcache;    /* static_file_cache_total{result} */
enum { FC_HIT = 0, FC_MISS, FC_FULL, FC__COUNT };

static size_t fcache_labels(uint64_t key, char *out, size_t cap, void *arg)
{
    (void)arg;
    static const char *names[] = {"hit", "miss", "full"};
    int n = snprintf(out, cap, "result=\"%s\"", key < FC__COUNT ? names[key] : "other");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static size_t response_labels(uint64_t key, char *out, size_t cap, void *arg)
{
    (void)arg;
    static const char *src[] = {"file", "precompressed", "on_the_fly"};
    int n = snprintf(out, cap, "coding=\"%s\",source=\"%s\"",
                     (key & 3) ? sl_compress_token((int)(key & 3)) : "identity",
                     (key >> 2) < 3 ? src[key >> 2] : "other");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

void sl_static_metrics_init(void)
{
    if (m_responses)
        return; /* once per process, however many gateways are built */
    m_fcache = sl_metrics_counter("static_file_cache_total",
                                  "Static answers by the route's in-memory file table: hit "
                                  "(answered from memory), miss (read on the thread pool), "
                                  "full (read, but not kept: the table is at file_cache bytes).",
                                  fcache_labels, NULL);
    m_responses = sl_metrics_counter("static_responses_total",
                                     "Answers from static routes, by content coding and by "
                                     "where the bytes came from.",
                                     response_labels, NULL);
    m_errors = sl_metrics_counter("static_file_errors_total",
                                  "Static files that could not be opened or read for a reason "
                                  "other than not existing (answered 500).",
                                  NULL, NULL);
}

int sl_static_route_init(sl_static_route_t *sr, const sl_static_conf_t *conf)
{
    sr->conf = conf;
    sr->open_flags = conf->symlinks ? 0 : SL_STATIC_OPEN_NO_SYMLINKS;
    sr->path_flags = conf->dotfiles ? SL_STATIC_PATH_DOTFILES : 0;
    const char *p = conf->immutable_pattern;
    sr->immutable = !p || strcmp(p, "auto") == 0 ? IMM_AUTO
                    : strcmp(p, "none") == 0     ? IMM_NONE
                                                 : IMM_GLOB;
    sr->files = NULL;
    if (conf->file_cache) {
        sr->files = calloc(1, sizeof(*sr->files));
        if (!sr->files)
            return SL_ENOMEM;
        pthread_mutex_init(&sr->files->mu, NULL);
    }
    sr->root_fd = sl_static_root_open(conf->root);
    if (sr->root_fd < 0) {
        sl_log_error("static root %s: %s", conf->root, strerror(-sr->root_fd));
        return sr->root_fd;
    }
    return 0;
}

static void fent_unref(void *arg);

void sl_static_route_free(sl_static_route_t *sr)
{
    if (sr->files) {
        for (unsigned i = 0; i < FCACHE_SLOTS; i++) {
            fent_t *e = sr->files->slot[i], *next;
            for (; e; e = next) {
                next = e->next;
                fent_unref(e);
            }
        }
        pthread_mutex_destroy(&sr->files->mu);
        free(sr->files);
        sr->files = NULL;
    }
    if (sr->root_fd >= 0)
        close(sr->root_fd);
    sr->root_fd = -1;
}

static void job_free(job_t *j)
{
    if (j->fd >= 0)
        close(j->fd);
    free(j->chunk);
    free(j);
}

/* ---- threadpool side: no loop state, no metrics (their slots are per loop thread) ---- */

static int is_immutable(const sl_static_route_t *sr, const char *rel)
{
    if (sr->immutable == IMM_AUTO)
        return sl_static_fingerprinted(rel, strlen(rel), SL_STATIC_FINGERPRINT_MIN_HEX);
    if (sr->immutable == IMM_GLOB)
        return fnmatch(sr->conf->immutable_pattern, rel, 0) == 0;
    return 0;
}

/* Read up to SL_STATIC_CHUNK bytes of the body into j->chunk. */
static void read_chunk(job_t *j)
{
    size_t want = j->left < SL_STATIC_CHUNK ? (size_t)j->left : SL_STATIC_CHUNK;
    free(j->chunk);
    j->chunk = malloc(want ? want : 1);
    j->chunk_len = 0;
    if (!j->chunk) {
        j->rc = SL_EIO;
        return;
    }
    while (j->chunk_len < want) {
        ssize_t r = pread(j->fd, j->chunk + j->chunk_len, want - j->chunk_len,
                          (off_t)(j->off + j->chunk_len));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) { /* an error, or the file shrank under us: the answer is cut short */
            j->rc = SL_EIO;
            return;
        }
        j->chunk_len += (size_t)r;
    }
    j->off += want;
    j->left -= want;
}

/* A precompressed sibling of the file, usable when it is a regular file no older than
 * the original (a stale .gz left behind by an old build must not be served). */
static int open_sibling(job_t *j, int coding, const sl_static_file_t *orig, sl_static_file_t *out)
{
    char name[SL_STATIC_PATH_MAX];
    if (sl_static_sibling(j->rel, strlen(j->rel), sl_compress_suffix(coding), name,
                          sizeof(name)) < 0)
        return 0;
    if (sl_static_open(j->sr->root_fd, name, j->sr->open_flags, out) != 0)
        return 0;
    if (out->mtime_s < orig->mtime_s ||
        (out->mtime_s == orig->mtime_s && out->mtime_ns < orig->mtime_ns)) {
        close(out->fd);
        return 0;
    }
    return 1;
}

/* Code the whole file f (compress_min <= size <= compress_max) into j->chunk. */
static int compress_file(job_t *j, int coding, const sl_static_file_t *f)
{
    size_t n = (size_t)f->size, got = 0;
    char *in = malloc(n ? n : 1);
    if (!in)
        return 0;
    while (got < n) {
        ssize_t r = pread(f->fd, in + got, n - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) { /* an error, or the file shrank while we read it */
            free(in);
            return 0;
        }
        got += (size_t)r;
    }
    size_t cap = sl_encode_bound(coding, n);
    char *out = malloc(cap ? cap : 1);
    size_t len = out ? sl_encode_all(coding, in, n, out, cap) : 0;
    free(in);
    if (len == 0) {
        free(out);
        return 0;
    }
    free(j->chunk);
    j->chunk = out;
    j->chunk_len = len;
    j->left = 0;
    return 1;
}

static void open_work(uv_work_t *req)
{
    job_t *j = req->data;
    const sl_static_route_t *sr = j->sr;
    const sl_static_conf_t *conf = sr->conf;
    sl_static_file_t f;

    j->rc = sl_static_open(sr->root_fd, j->rel, sr->open_flags, &f);
    if (j->rc == SL_STATIC_EISDIR && !j->slash)
        return; /* the caller redirects to "path/" */
    if (j->rc != 0)
        return;
    size_t rlen = strlen(j->rel);
    j->m.ctype = sl_static_content_type(j->rel, rlen);
    j->m.immutable = is_immutable(sr, j->rel);
    j->m.etag_len = sl_static_etag(f.size, f.mtime_s, f.mtime_ns, f.ino, j->m.etag);
    j->m.lastmod_len = sl_static_last_modified(f.mtime_s, j->m.lastmod);
    j->m.mtime_s = j->m.lastmod_len ? f.mtime_s : -1;

    /* Which representation: a precompressed sibling in the client's order of preference,
     * else the file compressed here, else the file. */
    j->m.coding = SL_COMPRESS_IDENTITY;
    j->m.source = SRC_FILE;
    j->m.vary = conf->compress && sl_compress_type_ok(j->m.ctype, strlen(j->m.ctype));
    sl_static_file_t use = f;
    if (j->m.vary) {
        for (int i = 0; i < 2 && j->codings[i] != SL_COMPRESS_IDENTITY; i++) {
            sl_static_file_t sib;
            if (open_sibling(j, j->codings[i], &f, &sib)) {
                j->m.coding = j->codings[i];
                j->m.source = SRC_SIBLING;
                use = sib;
                break;
            }
        }
        if (j->m.source == SRC_FILE && j->codings[0] != SL_COMPRESS_IDENTITY &&
            f.size >= conf->compress_min && f.size <= conf->compress_max && f.size > 0) {
            j->m.coding = j->codings[0];
            j->m.source = SRC_ON_THE_FLY;
        }
    }
    if (j->m.coding != SL_COMPRESS_IDENTITY) {
        char tag[sizeof(j->m.etag)];
        int64_t n = sl_compress_etag(j->m.etag, j->m.etag_len, j->m.coding, tag, sizeof(tag));
        if (n > 0) {
            memcpy(j->m.etag, tag, (size_t)n);
            j->m.etag_len = (size_t)n;
        } else {
            j->m.etag_len = 0;
        }
    }
    if (sr->files && use.size <= FCACHE_FILE_MAX) { /* keep it (file_cache) */
        /* Small enough to keep: read (or code) the whole representation; the loop decides
         * the answer from memory, as for every later request until file_cache_valid. */
        int ok;
        if (j->m.source == SRC_ON_THE_FLY) {
            ok = compress_file(j, j->m.coding, &f);
        } else {
            j->fd = use.fd;
            j->off = 0;
            j->left = use.size;
            read_chunk(j);
            j->fd = -1;
            ok = j->rc == 0;
        }
        if (use.fd != f.fd)
            close(use.fd);
        close(f.fd);
        if (!ok)
            j->rc = SL_EIO;
        j->whole = ok;
        return;
    }
    if (j->m.source == SRC_ON_THE_FLY) {
        /* The coded length is known only after coding: decide on the validators first
         * (a 304 costs no compression), then code the whole file. */
        sl_static_decide(j->cond, j->ncond, j->method, f.size, j->m.etag, j->m.etag_len,
                         j->m.lastmod_len ? f.mtime_s : -1, j->now_s, &j->reply);
        if (j->reply.status == 200 || j->reply.status == 206) {
            if (!compress_file(j, j->m.coding, &f)) {
                j->rc = SL_EIO;
                close(f.fd);
                return;
            }
            j->reply.status = 200; /* ranges were excluded when the codings were chosen */
            j->reply.first = 0;
            j->reply.len = j->reply.size = j->chunk_len;
        }
        close(f.fd);
        return;
    }
    if (use.fd != f.fd)
        close(f.fd);
    j->fd = use.fd;
    sl_static_decide(j->cond, j->ncond, j->method, use.size, j->m.etag, j->m.etag_len,
                     j->m.lastmod_len ? f.mtime_s : -1, j->now_s, &j->reply);
    if (j->method == SL_M_HEAD || (j->reply.status != 200 && j->reply.status != 206)) {
        close(j->fd);
        j->fd = -1;
        return;
    }
    j->off = j->reply.first;
    j->left = j->reply.len;
    read_chunk(j);
    if (j->left == 0 || j->rc) {
        close(j->fd);
        j->fd = -1;
    }
}

static void chunk_work(uv_work_t *req)
{
    job_t *j = req->data;
    read_chunk(j);
    if (j->left == 0 || j->rc) {
        close(j->fd);
        j->fd = -1;
    }
}

/* ---- the in-memory file table (loop side; any worker, under its mutex) ---- */

static void fent_unref(void *arg)
{
    fent_t *e = arg;
    if (__atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        free(e->body);
        free(e);
    }
}

static uint64_t fkey(const char *rel, size_t n, const uint8_t want[2])
{
    return sl_hash_bytes(rel, n) ^ ((uint64_t)(want[0] * 3 + want[1] + 1) * 0x9E3779B97F4A7C15ull);
}

static int fent_is(const fent_t *e, uint64_t h, const char *rel, size_t n, const uint8_t want[2])
{
    return e->hash == h && e->rel_len == n && e->want[0] == want[0] && e->want[1] == want[1] &&
           memcmp(e->rel, rel, n) == 0;
}

/* The kept representation for (rel, want), with a reference for the caller, when it was
 * read less than file_cache_valid ago; else NULL. */
static fent_t *fcache_get(const sl_static_route_t *sr, const char *rel, size_t n,
                          const uint8_t want[2], uint64_t now)
{
    fcache_t *fc = sr->files;
    uint64_t h = fkey(rel, n, want);
    fent_t *found = NULL;
    pthread_mutex_lock(&fc->mu);
    for (fent_t *e = fc->slot[h & (FCACHE_SLOTS - 1)]; e; e = e->next) {
        if (fent_is(e, h, rel, n, want)) {
            if (now - e->checked_ms < sr->conf->file_cache_valid_ms) {
                __atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED);
                found = e;
            }
            break;
        }
    }
    pthread_mutex_unlock(&fc->mu);
    return found;
}

/* Take (rel, want) out of the table (the file is gone). */
static void fcache_drop(const sl_static_route_t *sr, const char *rel, size_t n,
                        const uint8_t want[2])
{
    fcache_t *fc = sr->files;
    uint64_t h = fkey(rel, n, want);
    fent_t *gone = NULL;
    pthread_mutex_lock(&fc->mu);
    for (fent_t **pp = &fc->slot[h & (FCACHE_SLOTS - 1)]; *pp; pp = &(*pp)->next) {
        if (fent_is(*pp, h, rel, n, want)) {
            gone = *pp;
            *pp = gone->next;
            fc->bytes -= gone->cost;
            break;
        }
    }
    pthread_mutex_unlock(&fc->mu);
    if (gone)
        fent_unref(gone);
}

/* Make an entry of what job j read whole (its chunk becomes the entry's body) and keep it
 * in the table when there is room, replacing an older one. Returns it with a reference for
 * the caller (an entry that could not be kept lives as long as that reference), or NULL
 * when out of memory. */
static fent_t *fcache_put(const sl_static_route_t *sr, job_t *j, uint64_t now)
{
    size_t n = strlen(j->rel);
    fent_t *e = malloc(sizeof(*e) + n + 1);
    if (!e)
        return NULL;
    e->next = NULL;
    e->want[0] = (uint8_t)j->codings[0];
    e->want[1] = (uint8_t)j->codings[1];
    e->hash = fkey(j->rel, n, e->want);
    e->refs = 1;
    e->checked_ms = now;
    e->m = j->m;
    e->body = j->chunk;
    e->size = j->chunk_len;
    j->chunk = NULL;
    e->rel_len = (uint16_t)n;
    memcpy(e->rel, j->rel, n + 1);
    e->cost = sizeof(*e) + n + e->size;
    fcache_t *fc = sr->files;
    if (!fc)
        return e;
    fent_t *old = NULL;
    int kept = 0;
    pthread_mutex_lock(&fc->mu);
    for (fent_t **pp = &fc->slot[e->hash & (FCACHE_SLOTS - 1)]; *pp; pp = &(*pp)->next) {
        if (fent_is(*pp, e->hash, e->rel, n, e->want)) {
            old = *pp;
            *pp = old->next;
            fc->bytes -= old->cost;
            break;
        }
    }
    if (fc->bytes + e->cost <= sr->conf->file_cache) {
        e->refs = 2;
        e->next = fc->slot[e->hash & (FCACHE_SLOTS - 1)];
        fc->slot[e->hash & (FCACHE_SLOTS - 1)] = e;
        fc->bytes += e->cost;
        kept = 1;
    }
    pthread_mutex_unlock(&fc->mu);
    if (old)
        fent_unref(old);
    if (!kept)
        sl_counter_add(m_fcache, FC_FULL, 1);
    return e;
}

/* ---- loop side ---- */

static void send_chunk(job_t *j);

static void release_chunk(void *p)
{
    free(p);
}

static void job_abort(sl_exchange_t *x);
static void job_drained(sl_exchange_t *x);
static const sl_exchange_ops_t job_ops = {.abort = job_abort, .drained = job_drained};

static size_t state_offset;

void sl_static_set_offset(size_t off)
{
    state_offset = off;
}

size_t sl_static_state_size(void)
{
    return sizeof(job_t *);
}

/* The job rides in the exchange's handler state, past the router's, proxy's and cache's. */
static job_t **job_slot(sl_exchange_t *x)
{
    return (job_t **)(void *)(x->hdata + state_offset);
}

static void finish(job_t *j)
{
    sl_exchange_t *x = j->x;
    x->ops = NULL;
    int ka = sl_conn_keepalive(x);
    job_free(j);
    sl_conn_end(x, ka);
}

static void chunk_done(uv_work_t *req, int status)
{
    job_t *j = req->data;
    j->busy = 0;
    if (!j->x) {
        job_free(j);
        return;
    }
    if (status < 0 || j->rc) {
        /* The head is out: all we can do is cut the answer short by closing. */
        sl_counter_inc(m_errors);
        sl_exchange_t *x = j->x;
        x->ops = NULL;
        job_free(j);
        sl_conn_end(x, 0);
        return;
    }
    send_chunk(j);
}

static void next_chunk(job_t *j)
{
    if (j->left == 0) {
        finish(j);
        return;
    }
    j->busy = 1;
    j->work.data = j;
    if (uv_queue_work(&j->w->loop, &j->work, chunk_work, chunk_done) != 0) {
        j->busy = 0;
        j->rc = SL_EIO;
        chunk_done(&j->work, -1);
    }
}

/* Send what the last job read, then read on unless the output is congested. */
static void send_chunk(job_t *j)
{
    uv_buf_t b = uv_buf_init(j->chunk, (unsigned)j->chunk_len);
    char *p = j->chunk;
    j->chunk = NULL;
    int congested = sl_conn_send_ref(j->x, &b, 1, NULL, 0, release_chunk, p);
    if (congested) {
        j->waiting = 1;
        return;
    }
    next_chunk(j);
}

static void job_drained(sl_exchange_t *x)
{
    job_t *j = *job_slot(x);
    if (!j->waiting)
        return;
    j->waiting = 0;
    next_chunk(j);
}

static void job_abort(sl_exchange_t *x)
{
    job_t *j = *job_slot(x);
    j->x = NULL;
    if (!j->busy)
        job_free(j);
}

static void redirect(sl_exchange_t *x)
{
    /* "/static/docs" names a directory: send the client to "/static/docs/" so the page's
     * relative links resolve under it (nginx and Apache do the same). */
    const sl_http_request_t *r = &x->req;
    char extra[SL_STATIC_PATH_MAX + 64];
    sl_out_t o = {extra, extra + sizeof(extra) - 1, 0};
    sl_out_put(&o, "Location: ", 10);
    sl_out_put(&o, r->path.p, r->path.len);
    sl_out_put(&o, "/", 1);
    if (r->query.len) {
        sl_out_put(&o, "?", 1);
        sl_out_put(&o, r->query.p, r->query.len);
    }
    sl_out_put(&o, "\r\n", 2);
    if (o.overflow) {
        sl_conn_error(x, 414, "URI too long");
        return;
    }
    *o.p = 0;
    sl_conn_respond(x, 301, NULL, NULL, 0, extra);
}

/* The answer's head for representation m and decision rp, into a pooled buffer; NULL
 * when out of buffers or the head does not fit (the caller ends x without an answer). */
static sl_buf_t *build_head(sl_exchange_t *x, const sl_static_route_t *sr, const meta_t *m,
                            const sl_static_reply_t *rp, int ka)
{
    sl_conn_t *c = x->conn;
    sl_buf_t *b = sl_buf_get(&c->w->bufs);
    if (!b)
        return NULL;
    x->status = rp->status;
    sl_out_t o = {b->data, b->data + b->size, 0};
    sl_out_put(&o, "HTTP/1.1 ", 9);
    sl_out_u64(&o, (uint64_t)rp->status);
    sl_out_put(&o, " ", 1);
    sl_out_str(&o, sl_http1_reason(rp->status));
    sl_out_put(&o, "\r\nServer: sluice\r\n", 18);
    sl_out_put(&o, c->w->date, c->w->date_len);
    sl_out_put(&o, "\r\n", 2);
    if (rp->status == 200 || rp->status == 206) {
        sl_out_put(&o, "Content-Type: ", 14);
        sl_out_str(&o, m->ctype);
        sl_out_put(&o, "\r\n", 2);
    }
    if (rp->status != 304) { /* a 304 carries no Content-Length unless it equals the 200's */
        sl_out_put(&o, "Content-Length: ", 16);
        sl_out_u64(&o, rp->len);
        sl_out_put(&o, "\r\n", 2);
    }
    if (rp->status == 206 || rp->status == 416) {
        char cr[SL_STATIC_CONTENT_RANGE_MAX];
        int n = sl_static_content_range(rp, cr, sizeof(cr));
        if (n > 0) {
            sl_out_put(&o, "Content-Range: ", 15);
            sl_out_put(&o, cr, (size_t)n);
            sl_out_put(&o, "\r\n", 2);
        }
    }
    if (m->etag_len) {
        sl_out_put(&o, "ETag: ", 6);
        sl_out_put(&o, m->etag, m->etag_len);
        sl_out_put(&o, "\r\n", 2);
    }
    if (m->lastmod_len) {
        sl_out_put(&o, "Last-Modified: ", 15);
        sl_out_put(&o, m->lastmod, m->lastmod_len);
        sl_out_put(&o, "\r\n", 2);
    }
    if (m->coding != SL_COMPRESS_IDENTITY) {
        sl_out_put(&o, "Content-Encoding: ", 18);
        sl_out_str(&o, sl_compress_token(m->coding));
        sl_out_put(&o, "\r\n", 2);
    } else if (rp->status == 200 || rp->status == 206) {
        sl_out_put(&o, "Accept-Ranges: bytes\r\n", 22);
    }
    if (m->vary)
        sl_out_put(&o, "Vary: Accept-Encoding\r\n", 23);
    if (rp->status == 200 || rp->status == 206 || rp->status == 304) {
        if (m->immutable) {
            sl_out_put(&o, "Cache-Control: " SL_STATIC_CC_IMMUTABLE "\r\n",
                sizeof("Cache-Control: " SL_STATIC_CC_IMMUTABLE "\r\n") - 1);
        } else if (sr->conf->max_age_ms) {
            sl_out_put(&o, "Cache-Control: public, max-age=", 31);
            sl_out_u64(&o, sr->conf->max_age_ms / 1000);
            sl_out_put(&o, "\r\n", 2);
        }
    }
    if (!ka)
        sl_out_put(&o, "Connection: close\r\n", 19);
    sl_out_put(&o, x->resp_extra, x->resp_extra_len);
    sl_out_put(&o, "\r\n", 2);
    if (o.overflow) {
        sl_buf_put(&c->w->bufs, b);
        return NULL;
    }
    b->len = (uint32_t)(o.p - b->data);
    return b;
}

/* Answer x from a representation in memory: decide (conditionals, Range) here, send the
 * head and the bytes by reference; e's reference is the caller's and is given up. */
static void serve_entry(sl_exchange_t *x, const sl_static_route_t *sr, fent_t *e)
{
    sl_static_reply_t rp;
    sl_worker_t *w = x->conn->w;
    sl_static_decide(x->req.headers, x->req.nheaders, x->req.method_id, e->size, e->m.etag,
                     e->m.etag_len, e->m.mtime_s, (int64_t)(sl_worker_wall_ms(w) / 1000), &rp);
    sl_counter_add(m_responses, (uint64_t)e->m.coding | (uint64_t)e->m.source << 2, 1);
    int ka = sl_conn_keepalive(x);
    sl_buf_t *b = build_head(x, sr, &e->m, &rp, ka);
    if (!b) {
        fent_unref(e);
        sl_conn_end(x, 0);
        return;
    }
    uv_buf_t bufs[2] = {uv_buf_init(b->data, b->len)};
    unsigned n = 1;
    if (x->req.method_id == SL_M_GET && rp.len)
        bufs[n++] = uv_buf_init(e->body + rp.first, (unsigned)rp.len);
    sl_conn_send_ref(x, bufs, n, &b, 1, fent_unref, e);
    sl_conn_end(x, ka);
}

static void open_done(uv_work_t *req, int status)
{
    job_t *j = req->data;
    j->busy = 0;
    sl_exchange_t *x = j->x;
    if (!x) {
        job_free(j);
        return;
    }
    const sl_static_route_t *sr = j->sr;
    if (status < 0)
        j->rc = SL_EIO;
    if (j->rc) {
        int rc = j->rc, st = sl_static_status(rc), slash = j->slash;
        if (sr->files && st == 404) {
            uint8_t want[2] = {(uint8_t)j->codings[0], (uint8_t)j->codings[1]};
            fcache_drop(sr, j->rel, strlen(j->rel), want);
        }
        x->ops = NULL;
        job_free(j);
        if (rc == SL_STATIC_EISDIR && !slash) {
            redirect(x);
            return;
        }
        if (st >= 500)
            sl_counter_inc(m_errors);
        sl_conn_error(x, st, st == 404 ? "not found" : st == 400 ? "bad request" : "file error");
        return;
    }
    if (j->whole) {
        fent_t *e = fcache_put(sr, j, uv_now(&j->w->loop));
        x->ops = NULL;
        job_free(j);
        if (!e) {
            sl_conn_error(x, 503, "out of memory");
            return;
        }
        serve_entry(x, sr, e);
        return;
    }
    sl_counter_add(m_responses, (uint64_t)j->m.coding | (uint64_t)j->m.source << 2, 1);
    int ka = sl_conn_keepalive(x);
    sl_buf_t *b = build_head(x, sr, &j->m, &j->reply, ka);
    if (!b) {
        x->ops = NULL;
        job_free(j);
        sl_conn_end(x, 0);
        return;
    }
    uv_buf_t ub = uv_buf_init(b->data, b->len);
    int has_body = j->method != SL_M_HEAD && j->chunk && j->chunk_len;
    if (!has_body) {
        sl_conn_send(x, &ub, 1, &b, 1);
        finish(j);
        return;
    }
    /* Head and first chunk in one write. */
    uv_buf_t two[2] = {ub, uv_buf_init(j->chunk, (unsigned)j->chunk_len)};
    char *p = j->chunk;
    j->chunk = NULL;
    if (sl_conn_send_ref(x, two, 2, &b, 1, release_chunk, p)) {
        j->waiting = 1;
        return;
    }
    next_chunk(j);
}

/* Copy the fields the conditional and Range decision reads: the job runs on another
 * thread, and the request's bytes belong to the connection. */
static void copy_conditions(job_t *j, const sl_http_request_t *r)
{
    static const char *names[] = {"if-match",      "if-none-match", "if-modified-since",
                                  "if-unmodified-since", "range",   "if-range"};
    size_t used = 0;
    for (unsigned i = 0; i < r->nheaders && j->ncond < COND_MAX; i++) {
        const sl_http_header_t *h = &r->headers[i];
        if (h->name_len < 5 || h->name_len > 19)
            continue;
        int want = 0;
        for (size_t k = 0; k < SL_ARRAY_LEN(names) && !want; k++)
            want = sl_ieq_lit(h->name, h->name_len, names[k], strlen(names[k]));
        if (!want || used + h->name_len + h->value_len > COND_BYTES)
            continue;
        sl_http_header_t *c = &j->cond[j->ncond++];
        *c = *h;
        memcpy(j->condbuf + used, h->name, h->name_len);
        c->name = j->condbuf + used;
        used += h->name_len;
        memcpy(j->condbuf + used, h->value, h->value_len);
        c->value = j->condbuf + used;
        used += h->value_len;
    }
}

static int has_range(const sl_http_request_t *r)
{
    for (unsigned i = 0; i < r->nheaders; i++)
        if (sl_ieq_lit(r->headers[i].name, r->headers[i].name_len, "range", 5))
            return 1;
    return 0;
}

void sl_static_route_serve(sl_exchange_t *x, const sl_static_route_t *sr, size_t prefix_len)
{
    const sl_http_request_t *r = &x->req;
    if (r->method_id != SL_M_GET && r->method_id != SL_M_HEAD) {
        sl_conn_respond(x, 405, "application/json",
                        "{\"error\":\"static files answer GET and HEAD\",\"status\":405}\n", 58,
                        "Allow: GET, HEAD\r\n");
        return;
    }
    if (sr->root_fd < 0) {
        sl_counter_inc(m_errors);
        sl_conn_error(x, 500, "static root unavailable");
        return;
    }
    char rel[SL_STATIC_PATH_MAX];
    const char *p = r->path.p + prefix_len;
    size_t n = r->path.len > prefix_len ? r->path.len - prefix_len : 0;
    int slash = n == 0 || p[n - 1] == '/';
    int len = sl_static_resolve(p, n, sr->conf->index, sr->path_flags, rel, sizeof(rel));
    if (len < 0) {
        int st = sl_static_status(len);
        sl_conn_error(x, st, st == 404 ? "not found" : st == 414 ? "URI too long" : "bad request");
        return;
    }
    /* The codings worth trying, best first; none for a Range request (ranges are of the
     * identity bytes: a client resuming a download must get the bytes it asked for). */
    int codings[2] = {SL_COMPRESS_IDENTITY, SL_COMPRESS_IDENTITY};
    if (sr->conf->compress && !has_range(r)) {
        sl_compress_accept_t a;
        sl_compress_accept_from(r->headers, r->nheaders, &a);
        int c1 = sl_compress_choose(&a, sr->conf->compress);
        if (c1 == SL_COMPRESS_GZIP || c1 == SL_COMPRESS_BR) {
            codings[0] = c1;
            int c2 = sl_compress_choose(&a, sr->conf->compress & ~(1u << c1));
            if (c2 == SL_COMPRESS_GZIP || c2 == SL_COMPRESS_BR)
                codings[1] = c2;
        }
    }
    sl_worker_t *w = x->conn->w;
    if (sr->files) {
        uint8_t want[2] = {(uint8_t)codings[0], (uint8_t)codings[1]};
        fent_t *e = fcache_get(sr, rel, (size_t)len, want, uv_now(&w->loop));
        if (e) {
            sl_counter_add(m_fcache, FC_HIT, 1);
            serve_entry(x, sr, e);
            return;
        }
        sl_counter_add(m_fcache, FC_MISS, 1);
    }
    job_t *j = malloc(sizeof(*j));
    if (!j) {
        sl_conn_error(x, 503, "out of memory");
        return;
    }
    memset(j, 0, offsetof(job_t, cond));
    j->x = x;
    j->sr = sr;
    j->w = w;
    j->method = r->method_id;
    j->slash = slash;
    j->codings[0] = codings[0];
    j->codings[1] = codings[1];
    j->fd = -1;
    j->chunk = NULL;
    j->m.ctype = SL_STATIC_TYPE_DEFAULT;
    memset(&j->reply, 0, sizeof(j->reply));
    memcpy(j->rel, rel, (size_t)len + 1);
    copy_conditions(j, r);
    j->now_s = (int64_t)(sl_worker_wall_ms(w) / 1000);
    *job_slot(x) = j;
    x->ops = &job_ops;
    j->busy = 1;
    j->work.data = j;
    if (uv_queue_work(&w->loop, &j->work, open_work, open_done) != 0) {
        j->busy = 0;
        x->ops = NULL;
        free(j);
        sl_conn_error(x, 503, "cannot queue file work");
    }
}
