/* static.h - the building blocks of serving static files from a route's `static:` target.
 * Owns: mapping a request path to a relative file name that cannot leave the root, opening
 * it beneath the root's directory fd (openat2 RESOLVE_BENEATH), the built-in Content-Type
 * table and which types compress, precompressed sibling names, validators (ETag,
 * Last-Modified), the conditional / Range decision (RFC 9110 §13, §14) and the
 * "fingerprinted name" rule behind `Cache-Control: immutable`.
 * Everything here is pure (no I/O, no allocation, no clock, any thread) EXCEPT
 * sl_static_root_open and sl_static_open, which do blocking file-system calls and must
 * never run on a worker loop: call them from libuv's threadpool (uv_queue_work) or the
 * control thread. Nothing here sends bytes; the caller sends with sendfile(2). */
#ifndef SL_STATIC_H
#define SL_STATIC_H

#include <stddef.h>
#include <stdint.h>

#include "../core/common.h"
#include "http1.h"

/* Module return codes beside core/common.h's (SL_EBADMSG 400, SL_ETOOBIG 414). */
#define SL_STATIC_ENOTFOUND (-30) /* answer 404 */
#define SL_STATIC_EISDIR (-31)    /* the name is a directory: see sl_static_open */

/* The HTTP status for a code returned by sl_static_resolve / sl_static_open:
 * SL_EBADMSG 400, SL_STATIC_ENOTFOUND and SL_STATIC_EISDIR 404, SL_ETOOBIG 414, any other
 * negative code 500; 0 for a non-negative rc. */
int sl_static_status(int rc);

/* ---------------------------------------------------------------------------------------
 * Request path -> relative file name
 * ------------------------------------------------------------------------------------- */

#define SL_STATIC_PATH_MAX 4096 /* a good out buffer size for sl_static_resolve (PATH_MAX) */
#define SL_STATIC_NAME_MAX 255  /* longest file name (one segment) on Linux file systems */

enum sl_static_path_flag {
    SL_STATIC_PATH_DOTFILES = 1u << 0, /* serve segments that start with '.' (see below) */
};

/* Map the request path p[0..n) - the bytes left after the route's path_prefix is stripped,
 * as sent (still percent-encoded), without the query; with or without a leading '/' - to
 * a relative file name under the root, written NUL-terminated into out[0..cap). index is
 * the route's index file name (a single segment, sl_static_index_valid), or NULL for none.
 *
 * Rules (a 400 anywhere in the path beats a 404, which beats a 414):
 *  - percent-decoding is done exactly once: "%XX" with two hex digits (either case) is
 *    the byte XX; '%' followed by anything else is 400. "%252e" is the name "%2e".
 *  - 400 (SL_EBADMSG) for a byte that no file name we serve contains: NUL (raw or %00),
 *    other control bytes (0x01-0x1f, 0x7f, raw or encoded: they would only serve log
 *    injection), and backslash (raw or %5c): harmless to Linux, but WHATWG URL parsers
 *    (browsers, many proxies) turn '\' into '/', so "..\" means "../" to them; one answer
 *    for every reading is safer than a file name nobody needs.
 *  - 404 (SL_STATIC_ENOTFOUND) for "%2f" (an encoded '/', either case): a '/' inside a
 *    segment cannot name a file, and decoding it into a separator would give two URLs for
 *    one file (Apache's AllowEncodedSlashes Off answers 404 too).
 *  - segments are split at '/'; empty segments (repeated slashes) and "." segments are
 *    dropped. ".." after decoding (also "%2e%2e", ".%2E", ...) is 404, wherever it is:
 *    no normalisation - a client following RFC 3986 §5.2.4 removes dot-segments before
 *    sending, so only crafted requests carry them, and refusing them leaves no
 *    walk-above-the-root case to get wrong (nginx answers 400 for a walk above its root
 *    and resolves the others; a 404 tells a prober nothing).
 *  - a segment starting with '.' (".git", ".env", ".htpasswd") is 404 unless flags has
 *    SL_STATIC_PATH_DOTFILES; ".well-known" (RFC 8615) is always served.
 *  - a segment longer than SL_STATIC_NAME_MAX bytes (decoded) is 404: no such file can
 *    exist. A result (with the index name) that needs more than cap bytes with its NUL is
 *    414 (SL_ETOOBIG): the target is longer than we are willing to interpret.
 *  - an empty path, "/", or a path whose last segment was followed by '/' or was "." names
 *    a directory: the index name is appended ("docs/" -> "docs/index.html", "" ->
 *    "index.html"); 404 when index is NULL or not sl_static_index_valid (never a directory
 *    listing). The index name is the operator's: appended as is, even if it starts with
 *    '.'.
 * The result has no leading or trailing '/', no empty, "." or ".." segment, no NUL, and
 * is at most cap - 1 bytes. Returns its length (> 0), or SL_EBADMSG / SL_STATIC_ENOTFOUND
 * / SL_ETOOBIG; out is then unspecified. p may be NULL when n is 0; never reads past n. */
int sl_static_resolve(const char *p, size_t n, const char *index, unsigned flags, char *out,
                      size_t cap);

/* 1 when name is usable as an index file name: one segment of 1..SL_STATIC_NAME_MAX
 * bytes, not "." or "..", without '/', '\\' or control bytes. For the config validator. */
int sl_static_index_valid(const char *name);

/* Append "/" index to the relative name rel[0..len) in place (rel has room for cap bytes):
 * what a caller does when sl_static_open answers SL_STATIC_EISDIR for a path that did not
 * end in '/' and the route serves the directory's index rather than redirecting to
 * "path/" (a redirect keeps the page's relative links right: prefer it for HTML). Returns
 * the new length, SL_STATIC_ENOTFOUND when index is NULL or invalid, or SL_ETOOBIG. */
int sl_static_index_path(char *rel, size_t len, size_t cap, const char *index);

/* ---------------------------------------------------------------------------------------
 * Opening beneath the root (blocking: threadpool only)
 * ------------------------------------------------------------------------------------- */

/* An opened regular file and what the validators are made of. */
typedef struct sl_static_file {
    int fd;           /* O_RDONLY | O_CLOEXEC (| O_NONBLOCK: no effect on regular files);
                       * owned by the caller, who closes it when the response is done */
    uint64_t size;    /* st_size at open time */
    int64_t mtime_s;  /* st_mtim: seconds ... */
    int32_t mtime_ns; /* ... and nanoseconds */
    uint64_t ino;     /* st_ino */
    uint64_t dev;     /* st_dev */
} sl_static_file_t;

enum sl_static_open_flag {
    SL_STATIC_OPEN_NO_SYMLINKS = 1u << 0, /* follow no symlink at all, even inside the root */
    SL_STATIC_OPEN_NO_OPENAT2 = 1u << 1,  /* use the component walk (tests, old kernels) */
};

/* Open the root directory of a static route: O_PATH | O_DIRECTORY | O_CLOEXEC (search
 * permission is all it needs). Returns the fd (the route owns it and closes it on reload)
 * or a negative errno. Blocking: call it where configuration is loaded, not on a loop. */
int sl_static_root_open(const char *root);

/* Open rel (from sl_static_resolve; checked again here: an absolute name, or one with a
 * ".." segment, is SL_STATIC_ENOTFOUND) beneath the directory root_fd, read-only, and
 * describe it in *out.
 *
 * How: openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS (| RESOLVE_NO_SYMLINKS with
 * SL_STATIC_OPEN_NO_SYMLINKS), called through syscall(2) (Debian 12's glibc has no
 * wrapper). The kernel resolves the whole name and fails any step that would leave the
 * root: a symlink (at any depth, also the last component) that stays inside the root is
 * followed; one that escapes - "../../etc", or any absolute target, even one pointing back
 * inside the root - fails, as do /proc magic links and loops. When the kernel lacks
 * openat2 (ENOSYS; also EPERM, which an old container seccomp profile answers for unknown
 * system calls) or with SL_STATIC_OPEN_NO_OPENAT2, each component is opened in turn with
 * openat(O_NOFOLLOW): that walk follows NO symlink, even one inside the root (stricter, so
 * a tree must not rely on symlinks to be served on such kernels). openat2's absence is
 * remembered process-wide after the first ENOSYS; EPERM falls back for that call only (a
 * security module may answer it for one file). A trailing '/' requires a directory.
 * The file is opened with O_NONBLOCK | O_NOCTTY so that a FIFO or a terminal cannot hold
 * the thread; then fstat: a regular file is returned; a directory is SL_STATIC_EISDIR (try
 * its index, sl_static_index_path, or redirect to "path/"); anything else (FIFO, socket,
 * device node) is SL_STATIC_ENOTFOUND. A device node inside the root is opened (without
 * reading) before it is refused: keep device nodes out of static roots.
 * Returns 0 (out->fd is open) or a code, with no fd left open: SL_STATIC_ENOTFOUND (no
 * such file, escape attempt, symlink loop, ENOTDIR, ENAMETOOLONG, and EACCES - a 403
 * would confirm that the file exists), SL_STATIC_EISDIR, SL_EIO for anything else (EMFILE,
 * EIO...; answer 500 or 503 and count it). Blocking: never on a loop thread. */
int sl_static_open(int root_fd, const char *rel, unsigned flags, sl_static_file_t *out);

/* ---------------------------------------------------------------------------------------
 * Content types
 * ------------------------------------------------------------------------------------- */

#define SL_STATIC_TYPE_DEFAULT "application/octet-stream"

/* The Content-Type for a file name (name[0..n), the last segment or a whole path) from its
 * extension - the bytes after the last '.' of the last segment, compared case-insensitively
 * - in a built-in table: html/htm/css/js/mjs/txt/csv/md/xml and the other text types carry
 * "; charset=utf-8"; json, map and svg are UTF-8 by definition and carry none.
 * SL_STATIC_TYPE_DEFAULT for an unknown or missing extension (a name starting with '.'
 * has no extension: ".gz" is not a gzip file). Returns a static string. For a precompressed
 * sibling ("app.js.br" served for "app.js" with Content-Encoding: br) ask for the original
 * name; a request for "x.tar.gz" itself gets application/gzip. */
const char *sl_static_content_type(const char *name, size_t n);

/* Entry i of the built-in table: returns its extension (lower case) and sets *type (when
 * type is not NULL); NULL past the end. The table is sorted by extension (strcmp order).
 * For tests and documentation. */
const char *sl_static_type_at(size_t i, const char **type);

/* Whether a type is worth compressing, and the codings' names and file suffixes, are
 * compress's (sl_compress_type_ok, sl_compress_token, sl_compress_suffix). */

/* Write the precompressed sibling of rel[0..len) with suffix (".br", ".gz":
 * sl_compress_suffix) into out[0..cap) NUL-terminated ("app.js" -> "app.js.br"; out may
 * be rel). Returns the length, SL_EINVAL for an empty suffix, or SL_ETOOBIG. The sibling is
 * opened with sl_static_open like any file; serve it only when it is a regular file, and
 * with Vary: Accept-Encoding and the type of rel. */
int sl_static_sibling(const char *rel, size_t len, const char *suffix, char *out, size_t cap);

/* ---------------------------------------------------------------------------------------
 * Validators (RFC 9110 §8.8)
 * ------------------------------------------------------------------------------------- */

#define SL_STATIC_ETAG_MAX 56 /* 2 quotes + 3 x 16 hex digits + 2 dashes + NUL = 53 */

/* Write a strong entity-tag for the file (size, mtime, inode) into out, NUL-terminated:
 * "\"<ino>-<mtime in ns>-<size>\"" in lower-case hex, opaque to clients. Any change of
 * content through a write (mtime) or an atomic rename deploy (inode, even with the same
 * size and mtime) changes it. Limits, as with nginx's and Apache's tags: two writes with
 * the same size within the file system's timestamp granularity keep the tag; and the
 * inode differs between machines, so servers behind a balancer that serve copies of one
 * tree give different tags (pass ino 0 for tags that agree across copies with equal
 * mtimes). Returns the length (without the NUL). */
size_t sl_static_etag(uint64_t size, int64_t mtime_s, int32_t mtime_ns, uint64_t ino,
                      char out[SL_STATIC_ETAG_MAX]);

/* The Last-Modified value for mtime_s (IMF-fixdate, into out[0..29), not NUL-terminated).
 * Returns 29, or 0 when mtime_s is out of range (before 1970 or after 9999: send none). */
size_t sl_static_last_modified(int64_t mtime_s, char out[29]);

/* ---------------------------------------------------------------------------------------
 * Range (RFC 9110 §14) and the conditional decision (§13.2.2)
 * ------------------------------------------------------------------------------------- */

enum sl_static_range_result {
    SL_STATIC_RANGE_NONE = 0, /* no usable Range: send the whole representation (200) */
    SL_STATIC_RANGE_OK,       /* one satisfiable range: 206 with [*first, *first + *len) */
    SL_STATIC_RANGE_UNSAT,    /* unsatisfiable: 416, Content-Range "bytes *" "/" SIZE */
    SL_STATIC_RANGE_MULTI,    /* several ranges: we send the whole 200 (see below) */
};

/* Evaluate one Range field value v[0..n) against a representation of size bytes.
 *  - ranges-specifier = range-unit "=" range-set; the unit "bytes" in any case; another
 *    unit is ignored (NONE, §14.2 "MUST ignore"). No space around '='.
 *  - range-set: comma-separated, OWS around elements and empty elements tolerated (the
 *    #list rule); no space inside an element ("0 - 5" is malformed). int-range
 *    "first-last" or "first-", suffix-range "-N"; numbers are 1*DIGIT of any length (no
 *    sign): a number too large for 64 bits still compares right ("first > last" is decided
 *    on the digits) and then means "beyond any file".
 *  - malformed (bad syntax, no element, last < first in any element): NONE - §14.2 lets a
 *    server ignore an invalid Range, and the whole 200 is always a correct answer.
 *  - two or more elements (valid): MULTI, whatever they are - sluice never builds
 *    multipart/byteranges; §14.2 lets a server ignore Range, and the whole 200 is correct.
 *  - one element: int-range with first < size: OK, last clamped to size - 1; suffix-range
 *    N > 0: OK, the last min(N, size) bytes; first >= size, or "-0": UNSAT. An empty file
 *    (size 0) has no byte to send: every single range is UNSAT.
 * *first and *len are set for OK only. v may be NULL when n is 0; never reads past n. */
int sl_static_range_parse(const char *v, size_t n, uint64_t size, uint64_t *first, uint64_t *len);

/* What to answer for a GET or HEAD of a file. */
typedef struct sl_static_reply {
    int status;     /* 200, 206, 304, 412 or 416 */
    uint64_t first; /* first byte to send (206; 0 otherwise) */
    uint64_t len;   /* body bytes to send: size (200), the span (206), 0 (304, 412, 416).
                     * For HEAD send none, but announce this Content-Length */
    uint64_t size;  /* complete length, for Content-Range (206, 416) */
} sl_static_reply_t;

/* The decision for a request (method SL_M_GET or SL_M_HEAD; other methods are answered as
 * RFC 9110 says - never 304, a matching If-None-Match is 412 - but are not expected here)
 * with header fields h[0..n) for a file of size bytes whose validators are etag[0..elen)
 * (as sl_static_etag wrote it; elen 0 when the response has no ETag) and mtime_s (the
 * Last-Modified second; < 0 when the response has no Last-Modified). now_s is the current
 * unix time (<= 0: unknown), for Last-Modified strength and RFC 850 years. §13.2.2 order:
 *  1. If-Match (every line; strong comparison, "*" matches): false -> 412; a malformed
 *     list is false.
 *  2. without If-Match, If-Unmodified-Since (one valid date; else ignored): mtime later
 *     than it, or no Last-Modified -> 412.
 *  3. If-None-Match (every line; weak comparison, "*" matches): a match -> 304 (GET, HEAD)
 *     or 412 (other methods); a malformed list is "no match".
 *  4. without If-None-Match, GET/HEAD, If-Modified-Since (one valid date; else ignored):
 *     mtime at or before it -> 304.
 *  5. GET only (§14.2: range handling is defined for GET; HEAD gets the 200's fields),
 *     with exactly one Range line: when If-Range is present it must be exactly one line
 *     and true, else the Range is ignored (200): an entity-tag If-Range is true when it is
 *     strong and equals etag (strong comparison; a weak tag never is); a date If-Range is
 *     true when it equals mtime_s exactly AND Last-Modified is strong (§8.8.2.2: mtime_s
 *     at least one second before now_s; with now_s unknown, a date is never strong
 *     enough). Then sl_static_range_parse: OK -> 206, UNSAT -> 416, NONE/MULTI -> 200.
 *     Two Range lines are a malformed field: 200.
 *  6. otherwise 200 with the whole file.
 * Header names are compared case-insensitively by name (the parser's ids are not used).
 * Returns out->status. */
int sl_static_decide(const sl_http_header_t *h, unsigned n, int method, uint64_t size,
                     const char *etag, size_t elen, int64_t mtime_s, int64_t now_s,
                     sl_static_reply_t *out);

#define SL_STATIC_CONTENT_RANGE_MAX 72 /* "bytes " + 3 x 20 digits + '-' + '/' + NUL = 69 */

/* Write the Content-Range value of r (206: "bytes FIRST-LAST/SIZE"; 416: "bytes *" "/SIZE")
 * into out[0..cap) NUL-terminated. Returns its length, SL_EINVAL for another status (or a
 * 206 with len 0), or SL_ETOOBIG when cap is too small (SL_STATIC_CONTENT_RANGE_MAX is
 * always enough). */
int sl_static_content_range(const sl_static_reply_t *r, char *out, size_t cap);

/* ---------------------------------------------------------------------------------------
 * Fingerprinted names -> Cache-Control: immutable
 * ------------------------------------------------------------------------------------- */

#define SL_STATIC_CC_IMMUTABLE "public, max-age=31536000, immutable"
#define SL_STATIC_FINGERPRINT_MIN_HEX 8 /* the default rule's shortest hash */

/* 1 when the last segment of name[0..n) looks fingerprinted, i.e. its content is named by
 * a hash, so it never changes and may be served with SL_STATIC_CC_IMMUTABLE. The rule:
 * split the file name at '.' and '-'; some part other than the last '.'-part (the
 * extension, which must exist) is min_hex or more hexadecimal digits (either case), with
 * at least one digit 0-9 and at least one letter a-f. Examples with min_hex 8:
 * "app.0123abcd.css", "app-0123abcdef.js", "main.3f2a1b9c.chunk.js", "3f2a1b9c4d.js" are
 * fingerprinted; "app.css", "app.0123abc.css" (7), "report-20240101.pdf" (digits only: a
 * date), "deadbeef.js" (letters only: a word), "app.0123abcd" (the hash is the extension)
 * and "v0123abcd.css" (not a whole part) are not. Requiring both kinds of digit costs a
 * real hash little (8 hex digits are all decimal with p = 2.3%, all letters 0.04%: the
 * file is then merely not marked immutable) and keeps dates and words out: a wrong
 * "immutable" would pin stale content in caches for a year, a missed one costs a
 * revalidation. Directories are not looked at ("/v/0123abcd/app.js" is not). min_hex 0
 * disables the rule (always 0). A route's immutable_pattern may later replace it. */
int sl_static_fingerprinted(const char *name, size_t n, unsigned min_hex);

#endif
