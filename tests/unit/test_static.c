/* test_static.c - static-file building blocks: request path resolution (decoding, dot
 * segments, traversal in every spelling, NUL, backslash, encoded slash, dot-files, bounds,
 * the index), opening beneath a real temporary tree (regular files, directories, symlinks
 * inside and out of the root - absolute, relative, through a directory, magic links,
 * loops - a FIFO, a socket, a device node) through openat2, the component walk and a
 * seccomp-forced ENOSYS fallback, the Content-Type table, compressibility, siblings,
 * validators and HTTP-dates, every Range form, the §13.2.2 conditional order, If-Range,
 * Content-Range, and the fingerprinted-name rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/core/httpdate.h"
#include "../../src/http/compress.h"
#include "../../src/http/static.h"

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

#define N(a) ((unsigned)SL_ARRAY_LEN(a))

static sl_http_header_t H(const char *name, const char *value)
{
    sl_http_header_t h;
    memset(&h, 0, sizeof(h));
    h.name = name;
    h.name_len = (uint16_t)strlen(name);
    h.value = value;
    h.value_len = (uint32_t)strlen(value);
    return h;
}

/* ---- path resolution ----------------------------------------------------------------- */

static int resolve(const char *p, const char *index, unsigned flags, char *out, size_t cap)
{
    return sl_static_resolve(p, strlen(p), index, flags, out, cap);
}

/* The invariants of every successful result (static.h). */
static void check_result(const char *out, int rc, size_t cap)
{
    assert_true(rc > 0 && (size_t)rc < cap);
    assert_int_equal(strlen(out), (size_t)rc);
    assert_true(out[0] != '/' && out[rc - 1] != '/');
    assert_null(strstr(out, "//"));
    char copy[SL_STATIC_PATH_MAX];
    memcpy(copy, out, (size_t)rc + 1);
    for (char *save = NULL, *s = strtok_r(copy, "/", &save); s; s = strtok_r(NULL, "/", &save))
        assert_true(strcmp(s, ".") != 0 && strcmp(s, "..") != 0);
}

static void test_resolve_ok(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"", "index.html"},
        {"/", "index.html"},
        {"//", "index.html"},
        {"/.", "index.html"},
        {"/./", "index.html"},
        {"/a.css", "a.css"},
        {"a.css", "a.css"}, /* a prefix stripped with its '/' */
        {"/sub/", "sub/index.html"},
        {"sub/", "sub/index.html"},
        {"/sub", "sub"}, /* a directory without '/': sl_static_open says EISDIR */
        {"/sub//x.js", "sub/x.js"},
        {"///sub///x.js", "sub/x.js"},
        {"/./sub/./x.js", "sub/x.js"},
        {"/sub/.", "sub/index.html"},
        {"/sub/./", "sub/index.html"},
        {"/sub/.//.", "sub/index.html"},
        {"/%2e/x", "x"},
        {"/%2E/x/%2e", "x/index.html"},
        {"/a%20b.txt", "a b.txt"},
        {"/%41%42.TXT", "AB.TXT"},
        {"/%4a%4A", "JJ"},
        {"/%c3%a9t%C3%A9.html", "\xc3\xa9t\xc3\xa9.html"},
        {"/\xc3\xa9.html", "\xc3\xa9.html"}, /* raw UTF-8 (if the parser lets it in) */
        {"/%252e%252e/x", "%2e%2e/x"},       /* decoded once only */
        {"/%25", "%"},
        {"/%2525", "%25"},
        {"/a+b", "a+b"}, /* '+' is not a space in a path */
        {"/a;b=c", "a;b=c"},
        {"/a..b", "a..b"},
        {"/a.", "a."},
        {"/a/b./c..", "a/b./c.."},
        {"/.well-known/acme-challenge/tok", ".well-known/acme-challenge/tok"},
        {"/.well-known/", ".well-known/index.html"},
        {"/%2ewell-known/x", ".well-known/x"},
        {"/a/b/c/d/e/f.txt", "a/b/c/d/e/f.txt"},
    };
    for (unsigned i = 0; i < N(cases); i++) {
        char out[SL_STATIC_PATH_MAX];
        memset(out, 'X', sizeof(out));
        int rc = resolve(cases[i].in, "index.html", 0, out, sizeof(out));
        if (rc < 0 || strcmp(out, cases[i].out) != 0)
            print_error("case %u: \"%s\" -> %d \"%s\"\n", i, cases[i].in, rc, rc >= 0 ? out : "");
        assert_int_equal(rc, (int)strlen(cases[i].out));
        assert_string_equal(out, cases[i].out);
        check_result(out, rc, sizeof(out));
    }
    /* NULL with length 0 is the empty path */
    char out[64];
    assert_int_equal(sl_static_resolve(NULL, 0, "i.htm", 0, out, sizeof(out)), 5);
    assert_string_equal(out, "i.htm");
    /* bytes after n are never read: "/a.css" cut to "/a" */
    assert_int_equal(sl_static_resolve("/a.css", 2, "index.html", 0, out, sizeof(out)), 1);
    assert_string_equal(out, "a");
}

static void test_resolve_errors(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
    } cases[] = {
        /* 404: ".." in every spelling, wherever it is */
        {"/..", SL_STATIC_ENOTFOUND},
        {"..", SL_STATIC_ENOTFOUND},
        {"../", SL_STATIC_ENOTFOUND},
        {"/../x", SL_STATIC_ENOTFOUND},
        {"/a/../b", SL_STATIC_ENOTFOUND}, /* even one that stays inside: no normalisation */
        {"/a/..", SL_STATIC_ENOTFOUND},
        {"/a/../", SL_STATIC_ENOTFOUND},
        {"/a/b/../../../etc/passwd", SL_STATIC_ENOTFOUND},
        {"/%2e%2e/x", SL_STATIC_ENOTFOUND},
        {"/%2E%2E/x", SL_STATIC_ENOTFOUND},
        {"/%2e%2E/x", SL_STATIC_ENOTFOUND},
        {"/.%2e/x", SL_STATIC_ENOTFOUND},
        {"/%2e./x", SL_STATIC_ENOTFOUND},
        {"/.%2E", SL_STATIC_ENOTFOUND},
        {"/a/%2e%2e", SL_STATIC_ENOTFOUND},
        {"//..//x", SL_STATIC_ENOTFOUND},
        {"/./../x", SL_STATIC_ENOTFOUND},
        /* 404: an encoded '/' */
        {"/a%2fb", SL_STATIC_ENOTFOUND},
        {"/a%2Fb", SL_STATIC_ENOTFOUND},
        {"/%2f", SL_STATIC_ENOTFOUND},
        {"/%2F..%2Fetc", SL_STATIC_ENOTFOUND},
        {"/..%2f..%2fetc%2fpasswd", SL_STATIC_ENOTFOUND},
        /* 404: dot-files */
        {"/.git/config", SL_STATIC_ENOTFOUND},
        {"/.env", SL_STATIC_ENOTFOUND},
        {"/a/.htpasswd", SL_STATIC_ENOTFOUND},
        {"/%2egit/HEAD", SL_STATIC_ENOTFOUND},
        {"/...", SL_STATIC_ENOTFOUND},
        {"/a/..b", SL_STATIC_ENOTFOUND},
        {"/.well-known2/x", SL_STATIC_ENOTFOUND},
        {"/.WELL-KNOWN/x", SL_STATIC_ENOTFOUND},
        /* 400: malformed escapes */
        {"/%", SL_EBADMSG},
        {"/%2", SL_EBADMSG},
        {"/a%", SL_EBADMSG},
        {"/%zz", SL_EBADMSG},
        {"/%2g", SL_EBADMSG},
        {"/%g2", SL_EBADMSG},
        {"/% 2", SL_EBADMSG},
        {"/%%32%65", SL_EBADMSG},
        {"/%-1", SL_EBADMSG},
        /* 400: NUL and control bytes, raw or encoded */
        {"/%00", SL_EBADMSG},
        {"/a.html%00.jpg", SL_EBADMSG},
        {"/%0a", SL_EBADMSG},
        {"/%0D%0Aset-cookie", SL_EBADMSG},
        {"/%1f", SL_EBADMSG},
        {"/%7f", SL_EBADMSG},
        {"/%7F", SL_EBADMSG},
        {"/a\tb", SL_EBADMSG},
        {"/a\x7f", SL_EBADMSG},
        {"/a\rb", SL_EBADMSG},
        /* 400: backslash, raw or encoded */
        {"/a\\b", SL_EBADMSG},
        {"/..\\x", SL_EBADMSG},
        {"/%5c", SL_EBADMSG},
        {"/%5C..%5Cx", SL_EBADMSG},
        /* 400 beats 404, wherever it is */
        {"/../%zz", SL_EBADMSG},
        {"/.git/%00", SL_EBADMSG},
        {"/a%2fb/%5c", SL_EBADMSG},
        {"/%2f%00", SL_EBADMSG},
    };
    for (unsigned i = 0; i < N(cases); i++) {
        char out[SL_STATIC_PATH_MAX];
        int rc = resolve(cases[i].in, "index.html", 0, out, sizeof(out));
        if (rc != cases[i].rc)
            print_error("case %u: \"%s\" -> %d, want %d\n", i, cases[i].in, rc, cases[i].rc);
        assert_int_equal(rc, cases[i].rc);
    }
    /* a raw NUL inside the given length */
    char out[64];
    assert_int_equal(sl_static_resolve("/a\0b", 4, "i", 0, out, sizeof(out)), SL_EBADMSG);
    assert_int_equal(sl_static_resolve("\0", 1, "i", 0, out, sizeof(out)), SL_EBADMSG);
    /* bad arguments */
    assert_int_equal(sl_static_resolve(NULL, 3, "i", 0, out, sizeof(out)), SL_EINVAL);
    assert_int_equal(sl_static_resolve("/a", 2, "i", 0, NULL, 10), SL_EINVAL);
    assert_int_equal(sl_static_resolve("/a", 2, "i", 0, out, 0), SL_EINVAL);
}

static void test_resolve_dotfiles_flag(void **state)
{
    (void)state;
    char out[256];
    const unsigned F = SL_STATIC_PATH_DOTFILES;
    assert_int_equal(resolve("/.git/config", "i", F, out, sizeof(out)), 11);
    assert_string_equal(out, ".git/config");
    assert_true(resolve("/...", "i", F, out, sizeof(out)) == 3 && strcmp(out, "...") == 0);
    assert_true(resolve("/a/..b", "i", F, out, sizeof(out)) == 5);
    assert_true(resolve("/%2eenv", "i", F, out, sizeof(out)) == 4 && strcmp(out, ".env") == 0);
    /* "." and ".." keep their meaning with the flag */
    assert_true(resolve("/./x", "i", F, out, sizeof(out)) == 1 && strcmp(out, "x") == 0);
    assert_int_equal(resolve("/../x", "i", F, out, sizeof(out)), SL_STATIC_ENOTFOUND);
    assert_int_equal(resolve("/.%2e", "i", F, out, sizeof(out)), SL_STATIC_ENOTFOUND);
}

static void test_resolve_index(void **state)
{
    (void)state;
    char out[256];
    /* no index: a directory form is 404 (no listing); a file still resolves */
    assert_int_equal(resolve("/", NULL, 0, out, sizeof(out)), SL_STATIC_ENOTFOUND);
    assert_int_equal(resolve("", NULL, 0, out, sizeof(out)), SL_STATIC_ENOTFOUND);
    assert_int_equal(resolve("/sub/", NULL, 0, out, sizeof(out)), SL_STATIC_ENOTFOUND);
    assert_int_equal(resolve("/sub/.", NULL, 0, out, sizeof(out)), SL_STATIC_ENOTFOUND);
    assert_int_equal(resolve("/a", NULL, 0, out, sizeof(out)), 1);
    assert_int_equal(resolve("/", "", 0, out, sizeof(out)), SL_STATIC_ENOTFOUND);
    /* an invalid index is never appended */
    assert_int_equal(resolve("/", "a/b", 0, out, sizeof(out)), SL_STATIC_ENOTFOUND);
    assert_int_equal(resolve("/", "..", 0, out, sizeof(out)), SL_STATIC_ENOTFOUND);
    assert_int_equal(resolve("/", ".", 0, out, sizeof(out)), SL_STATIC_ENOTFOUND);
    assert_int_equal(resolve("/", "a\\b", 0, out, sizeof(out)), SL_STATIC_ENOTFOUND);
    assert_int_equal(resolve("/x/", "default.htm", 0, out, sizeof(out)), 13);
    assert_string_equal(out, "x/default.htm");

    assert_true(sl_static_index_valid("index.html"));
    assert_true(sl_static_index_valid(".index")); /* the operator's choice */
    assert_false(sl_static_index_valid(NULL));
    assert_false(sl_static_index_valid(""));
    assert_false(sl_static_index_valid("."));
    assert_false(sl_static_index_valid(".."));
    assert_false(sl_static_index_valid("a/b"));
    assert_false(sl_static_index_valid("/index.html"));
    assert_false(sl_static_index_valid("a\\b"));
    assert_false(sl_static_index_valid("a\nb"));
    char long_name[300];
    memset(long_name, 'a', sizeof(long_name));
    long_name[SL_STATIC_NAME_MAX] = '\0';
    assert_true(sl_static_index_valid(long_name));
    long_name[SL_STATIC_NAME_MAX] = 'a';
    long_name[SL_STATIC_NAME_MAX + 1] = '\0';
    assert_false(sl_static_index_valid(long_name));

    /* sl_static_index_path */
    char rel[32] = "docs";
    assert_int_equal(sl_static_index_path(rel, 4, sizeof(rel), "index.html"), 15);
    assert_string_equal(rel, "docs/index.html");
    char empty[16] = "";
    assert_int_equal(sl_static_index_path(empty, 0, sizeof(empty), "index.html"), 10);
    assert_string_equal(empty, "index.html");
    char small[16] = "docs";
    assert_int_equal(sl_static_index_path(small, 4, 16, "index.html"), 15); /* 15 + NUL */
    char small2[16] = "docs";
    assert_int_equal(sl_static_index_path(small2, 4, 15, "index.html"), SL_ETOOBIG);
    assert_string_equal(small2, "docs"); /* untouched */
    assert_int_equal(sl_static_index_path(rel, 4, sizeof(rel), NULL), SL_STATIC_ENOTFOUND);
    assert_int_equal(sl_static_index_path(rel, 4, sizeof(rel), "a/b"), SL_STATIC_ENOTFOUND);
}

static void test_resolve_bounds(void **state)
{
    (void)state;
    char in[2048], out[1024];
    /* a 255-byte segment is fine, 256 is 404 - raw or encoded */
    in[0] = '/';
    memset(in + 1, 'a', 255);
    in[256] = '\0';
    assert_int_equal(resolve(in, "i", 0, out, sizeof(out)), 255);
    in[256] = 'a';
    in[257] = '\0';
    assert_int_equal(resolve(in, "i", 0, out, sizeof(out)), SL_STATIC_ENOTFOUND);
    size_t k = 1;
    for (int i = 0; i < 255; i++, k += 3)
        memcpy(in + k, "%61", 3);
    in[k] = '\0';
    assert_int_equal(resolve(in, "i", 0, out, sizeof(out)), 255); /* 766 raw bytes */
    memcpy(in + k, "%61", 4);
    assert_int_equal(resolve(in, "i", 0, out, sizeof(out)), SL_STATIC_ENOTFOUND);

    /* cap: the result and its NUL must fit */
    assert_int_equal(resolve("/abc", "i", 0, out, 4), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(resolve("/abc", "i", 0, out, 3), SL_ETOOBIG);
    assert_int_equal(resolve("/abc", "i", 0, out, 1), SL_ETOOBIG);
    assert_int_equal(resolve("/ab/c", "i", 0, out, 5), 4);
    assert_int_equal(resolve("/ab/c", "i", 0, out, 4), SL_ETOOBIG);
    /* the index counts */
    assert_int_equal(resolve("/ab/", "index.html", 0, out, 14), 13);
    assert_int_equal(resolve("/ab/", "index.html", 0, out, 13), SL_ETOOBIG);
    assert_int_equal(resolve("/", "index.html", 0, out, 10), SL_ETOOBIG);
    /* many segments, each fine, together too long: 414; a 404 after the overflow wins */
    k = 0;
    for (int i = 0; i < 300; i++, k += 4)
        memcpy(in + k, "/abc", 4);
    in[k] = '\0';
    assert_int_equal(resolve(in, "i", 0, out, sizeof(out)), SL_ETOOBIG);
    memcpy(in + k, "/../x", 6);
    assert_int_equal(resolve(in, "i", 0, out, sizeof(out)), SL_STATIC_ENOTFOUND);
    memcpy(in + k, "/%zz", 5);
    assert_int_equal(resolve(in, "i", 0, out, sizeof(out)), SL_EBADMSG);
    /* exactly at the bound: 255 x "/abc" is 1019 bytes of result */
    in[255 * 4] = '\0';
    assert_int_equal(resolve(in, "i", 0, out, sizeof(out)), 255 * 4 - 1);
    assert_int_equal(resolve(in, "i", 0, out, 255 * 4), 255 * 4 - 1);
    assert_int_equal(resolve(in, "i", 0, out, 255 * 4 - 1), SL_ETOOBIG);
}

static void test_status(void **state)
{
    (void)state;
    assert_int_equal(sl_static_status(SL_EBADMSG), 400);
    assert_int_equal(sl_static_status(SL_STATIC_ENOTFOUND), 404);
    assert_int_equal(sl_static_status(SL_STATIC_EISDIR), 404);
    assert_int_equal(sl_static_status(SL_ETOOBIG), 414);
    assert_int_equal(sl_static_status(SL_EIO), 500);
    assert_int_equal(sl_static_status(SL_EINVAL), 500);
    assert_int_equal(sl_static_status(0), 0);
    assert_int_equal(sl_static_status(12), 0);
}

/* ---- opening beneath the root ------------------------------------------------------- */

static char g_tmp[PATH_MAX], g_root[PATH_MAX + 8];
static int g_root_fd = -1, g_have_dev, g_have_openat2;

static void write_file(const char *rel, const char *content)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof(p), "%s/%s", g_tmp, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static void mk(const char *rel)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof(p), "%s/%s", g_tmp, rel);
    assert_int_equal(mkdir(p, 0755), 0);
}

static void ln(const char *target, const char *rel)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof(p), "%s/%s", g_tmp, rel);
    assert_int_equal(symlink(target, p), 0);
}

/* The tree (g_tmp/):
 *   outside/secret.txt            a file outside the root
 *   root/a.txt "hello", root/empty.txt, root/index.html
 *   root/sub/{b.css, index.html}, root/sub/deep/c.js
 *   root/link_in -> a.txt, root/link_sub -> sub, root/sub/link_up -> ../a.txt (all inside)
 *   root/link_abs_out -> TMP/outside/secret.txt, root/link_abs_in -> TMP/root/a.txt,
 *   root/link_rel_out -> ../outside/secret.txt, root/sub/link_rel_out2 ->
 *   ../../outside/secret.txt, root/link_dir_out -> ../outside, root/link_etc -> /etc/passwd,
 *   root/link_proc -> /proc/self/root, root/link_fd -> /proc/self/fd/0,
 *   root/link_loop1 <-> root/link_loop2, root/link_dangling -> nope,
 *   root/sub/link_chain -> ../link_in (a chain inside)
 *   root/fifo (FIFO), root/sock (UNIX socket), root/devnull (char device, if mknod works) */
static int tree_setup(void **state)
{
    (void)state;
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/test_static_XXXXXX");
    if (!mkdtemp(g_tmp))
        return -1;
    mk("outside");
    write_file("outside/secret.txt", "secret");
    mk("root");
    write_file("root/a.txt", "hello");
    write_file("root/empty.txt", "");
    write_file("root/index.html", "<p>root</p>");
    mk("root/sub");
    write_file("root/sub/b.css", "b{}");
    write_file("root/sub/index.html", "<p>sub</p>");
    mk("root/sub/deep");
    write_file("root/sub/deep/c.js", "c()");
    ln("a.txt", "root/link_in");
    ln("sub", "root/link_sub");
    ln("../a.txt", "root/sub/link_up");
    ln("../link_in", "root/sub/link_chain");
    char t[PATH_MAX * 2];
    snprintf(t, sizeof(t), "%s/outside/secret.txt", g_tmp);
    ln(t, "root/link_abs_out");
    snprintf(t, sizeof(t), "%s/root/a.txt", g_tmp);
    ln(t, "root/link_abs_in");
    ln("../outside/secret.txt", "root/link_rel_out");
    ln("../../outside/secret.txt", "root/sub/link_rel_out2");
    ln("../outside", "root/link_dir_out");
    ln("/etc/passwd", "root/link_etc");
    ln("/proc/self/root", "root/link_proc");
    ln("/proc/self/fd/0", "root/link_fd");
    ln("link_loop2", "root/link_loop1");
    ln("link_loop1", "root/link_loop2");
    ln("nope", "root/link_dangling");
    snprintf(t, sizeof(t), "%s/root/fifo", g_tmp);
    if (mkfifo(t, 0644) != 0)
        return -1;
    snprintf(t, sizeof(t), "%s/root/sock", g_tmp);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (s < 0 || strlen(t) >= sizeof(sa.sun_path))
        return -1;
    memcpy(sa.sun_path, t, strlen(t) + 1);
    if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        return -1;
    close(s);
    snprintf(t, sizeof(t), "%s/root/devnull", g_tmp);
    g_have_dev = mknod(t, S_IFCHR | 0666, makedev(1, 3)) == 0;

    snprintf(g_root, sizeof(g_root), "%s/root", g_tmp);
    g_root_fd = sl_static_root_open(g_root);
    if (g_root_fd < 0)
        return -1;
    /* openat2 present? (EBADF for a bad fd means the system call exists) */
    errno = 0;
    long r = syscall(SYS_openat2, -1, "x", NULL, (size_t)0);
    g_have_openat2 = !(r < 0 && errno == ENOSYS);
    return 0;
}

static int tree_teardown(void **state)
{
    (void)state;
    if (g_root_fd >= 0)
        close(g_root_fd);
    char cmd[PATH_MAX + 32];
    if (g_tmp[0] && strncmp(g_tmp, "/tmp/test_static_", 17) == 0) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_tmp);
        if (system(cmd) != 0)
            return -1;
    }
    return 0;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Open rel with flags; on success check the content and close. Returns the code. */
static int try_open(const char *rel, unsigned flags, const char *content)
{
    sl_static_file_t f;
    memset(&f, 0x5a, sizeof(f));
    int before = count_fds();
    int rc = sl_static_open(g_root_fd, rel, flags, &f);
    if (rc != 0) {
        assert_int_equal(f.fd, -1);
        assert_int_equal(count_fds(), before); /* nothing leaked */
        return rc;
    }
    assert_true(f.fd >= 0);
    assert_true(fcntl(f.fd, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(fcntl(f.fd, F_GETFL) & O_ACCMODE, O_RDONLY);
    struct stat st;
    assert_int_equal(fstat(f.fd, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(f.size, (uint64_t)st.st_size);
    assert_int_equal(f.mtime_s, (int64_t)st.st_mtim.tv_sec);
    assert_int_equal(f.mtime_ns, (int32_t)st.st_mtim.tv_nsec);
    assert_int_equal(f.ino, (uint64_t)st.st_ino);
    assert_int_equal(f.dev, (uint64_t)st.st_dev);
    if (content) {
        char buf[64] = {0};
        ssize_t n = pread(f.fd, buf, sizeof(buf) - 1, 0);
        assert_int_equal(n, (ssize_t)strlen(content));
        assert_string_equal(buf, content);
    }
    close(f.fd);
    return 0;
}

#define NF SL_STATIC_ENOTFOUND
#define DIR_ SL_STATIC_EISDIR

/* Expected results: [0] openat2, [1] openat2 + NO_SYMLINKS, [2] the walk. */
static const struct open_case {
    const char *rel;
    int rc[3];
    const char *content;
} OPEN_CASES[] = {
    {"a.txt", {0, 0, 0}, "hello"},
    {"empty.txt", {0, 0, 0}, ""},
    {"sub/b.css", {0, 0, 0}, "b{}"},
    {"sub/deep/c.js", {0, 0, 0}, "c()"},
    {"sub//deep/./c.js", {0, 0, 0}, "c()"},
    {"./a.txt", {0, 0, 0}, "hello"},
    {"sub/", {DIR_, DIR_, DIR_}, NULL},
    {"sub", {DIR_, DIR_, DIR_}, NULL},
    {"", {DIR_, DIR_, DIR_}, NULL},
    {".", {DIR_, DIR_, DIR_}, NULL},
    {"missing", {NF, NF, NF}, NULL},
    {"sub/missing/x", {NF, NF, NF}, NULL},
    {"a.txt/x", {NF, NF, NF}, NULL}, /* ENOTDIR */
    {"a.txt/", {NF, NF, NF}, NULL},
    {"sub/deep/c.js//", {NF, NF, NF}, NULL},
    {"sub/deep//", {DIR_, DIR_, DIR_}, NULL},
    {"sub/.", {DIR_, DIR_, DIR_}, NULL},
    /* symlinks inside the root: followed by openat2 only */
    {"link_in", {0, NF, NF}, "hello"},
    {"link_sub/b.css", {0, NF, NF}, "b{}"},
    {"link_sub", {DIR_, NF, NF}, NULL},
    {"sub/link_up", {0, NF, NF}, "hello"},
    {"sub/link_chain", {0, NF, NF}, "hello"},
    /* every escape fails, whatever the mode */
    {"link_abs_out", {NF, NF, NF}, NULL},
    {"link_abs_in", {NF, NF, NF}, NULL}, /* absolute, even pointing back inside */
    {"link_rel_out", {NF, NF, NF}, NULL},
    {"sub/link_rel_out2", {NF, NF, NF}, NULL},
    {"link_dir_out/secret.txt", {NF, NF, NF}, NULL},
    {"link_dir_out", {NF, NF, NF}, NULL},
    {"link_etc", {NF, NF, NF}, NULL},
    {"link_proc/etc/passwd", {NF, NF, NF}, NULL},
    {"link_fd", {NF, NF, NF}, NULL},
    {"link_loop1", {NF, NF, NF}, NULL},
    {"link_dangling", {NF, NF, NF}, NULL},
    /* names sl_static_resolve never produces are refused here too */
    {"../outside/secret.txt", {NF, NF, NF}, NULL},
    {"sub/../../outside/secret.txt", {NF, NF, NF}, NULL},
    {"sub/../a.txt", {NF, NF, NF}, NULL},
    {"..", {NF, NF, NF}, NULL},
    {"/etc/passwd", {NF, NF, NF}, NULL},
    {g_root, {NF, NF, NF}, NULL}, /* absolute, even the root itself */
    /* not regular files: refused without blocking (the FIFO has no writer) */
    {"fifo", {NF, NF, NF}, NULL},
    {"sock", {NF, NF, NF}, NULL},
};

static void run_open_cases(unsigned mode)
{
    static const unsigned flags[3] = {0, SL_STATIC_OPEN_NO_SYMLINKS, SL_STATIC_OPEN_NO_OPENAT2};
    for (unsigned i = 0; i < N(OPEN_CASES); i++) {
        const struct open_case *c = &OPEN_CASES[i];
        int rc = try_open(c->rel, flags[mode], c->content);
        if (rc != c->rc[mode])
            print_error("mode %u case %u \"%s\": %d, want %d\n", mode, i, c->rel, rc, c->rc[mode]);
        assert_int_equal(rc, c->rc[mode]);
    }
    if (g_have_dev)
        assert_int_equal(try_open("devnull", flags[mode], NULL), NF);
}

static void test_open_openat2(void **state)
{
    (void)state;
    if (!g_have_openat2) {
        print_message("openat2 unavailable: only the walk is tested\n");
        skip();
    }
    run_open_cases(0);
    run_open_cases(1);
}

static void test_open_walk(void **state)
{
    (void)state;
    run_open_cases(2);
    /* NO_SYMLINKS changes nothing for the walk */
    assert_int_equal(
        try_open("link_in", SL_STATIC_OPEN_NO_OPENAT2 | SL_STATIC_OPEN_NO_SYMLINKS, NULL), NF);
}

static void test_open_misc(void **state)
{
    (void)state;
    sl_static_file_t f;
    assert_int_equal(sl_static_open(g_root_fd, NULL, 0, &f), NF);
    assert_int_equal(f.fd, -1);
    assert_int_equal(sl_static_open(-1, "a.txt", 0, &f), NF);
    assert_int_equal(sl_static_open(g_root_fd, "a.txt", 0, NULL), SL_EINVAL);
    /* a component longer than any name */
    char longname[400];
    memset(longname, 'a', sizeof(longname));
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(try_open(longname, 0, NULL), NF);
    assert_int_equal(try_open(longname, SL_STATIC_OPEN_NO_OPENAT2, NULL), NF);
    /* the root itself must be a directory */
    assert_int_equal(sl_static_root_open(NULL), -EINVAL);
    assert_int_equal(sl_static_root_open(""), -EINVAL);
    assert_int_equal(sl_static_root_open("/nonexistent/sluice/root"), -ENOENT);
    char p[PATH_MAX * 2];
    snprintf(p, sizeof(p), "%s/a.txt", g_root);
    assert_int_equal(sl_static_root_open(p), -ENOTDIR);
    /* a root reached through a symlink works (the link is the operator's) */
    snprintf(p, sizeof(p), "%s/link_sub", g_root);
    int fd = sl_static_root_open(p);
    assert_true(fd >= 0);
    assert_int_equal(sl_static_open(fd, "b.css", 0, &f), 0);
    close(f.fd);
    assert_int_equal(sl_static_open(fd, "../a.txt", 0, &f), NF);
    assert_int_equal(sl_static_open(fd, "link_up", 0, &f), NF); /* ../a.txt: above this root */
    close(fd);
    /* resolve + open + index, the way the caller chains them */
    char rel[SL_STATIC_PATH_MAX];
    int n = sl_static_resolve("/sub", 4, "index.html", 0, rel, sizeof(rel));
    assert_int_equal(n, 3);
    assert_int_equal(sl_static_open(g_root_fd, rel, 0, &f), SL_STATIC_EISDIR);
    n = sl_static_index_path(rel, (size_t)n, sizeof(rel), "index.html");
    assert_int_equal(try_open(rel, 0, "<p>sub</p>"), 0);
    n = sl_static_resolve("/", 1, "index.html", 0, rel, sizeof(rel));
    assert_int_equal(try_open(rel, 0, "<p>root</p>"), 0);
}

/* In a child whose seccomp filter answers openat2 with err: the opens must fall back to the
 * walk (which follows no symlink) and stay inside the root. */
static void fallback_child(int err)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = (unsigned short)N(filter), .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
        _exit(2);
    errno = 0;
    if (syscall(SYS_openat2, g_root_fd, "a.txt", NULL, (size_t)0) != -1 || errno != err)
        _exit(3);                             /* the filter is not in force */
    for (int round = 0; round < 2; round++) { /* the second round: after ENOSYS was noted */
        sl_static_file_t f;
        if (sl_static_open(g_root_fd, "a.txt", 0, &f) != 0 || f.size != 5)
            _exit(4);
        close(f.fd);
        if (sl_static_open(g_root_fd, "sub/deep/c.js", 0, &f) != 0)
            _exit(5);
        close(f.fd);
        if (sl_static_open(g_root_fd, "link_in", 0, &f) != NF) /* the walk: no symlinks */
            _exit(6);
        if (sl_static_open(g_root_fd, "link_rel_out", 0, &f) != NF ||
            sl_static_open(g_root_fd, "link_dir_out/secret.txt", 0, &f) != NF ||
            sl_static_open(g_root_fd, "link_abs_out", 0, &f) != NF ||
            sl_static_open(g_root_fd, "fifo", 0, &f) != NF)
            _exit(7);
        if (sl_static_open(g_root_fd, "sub", 0, &f) != SL_STATIC_EISDIR)
            _exit(8);
    }
    _exit(0);
}

static void test_open_fallback(void **state)
{
    (void)state;
    const int errs[2] = {ENOSYS, EPERM};
    for (int i = 0; i < 2; i++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            fallback_child(errs[i]);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == 2) {
            print_message("seccomp unavailable: fallback not forced\n");
            continue;
        }
        assert_int_equal(WEXITSTATUS(status), 0);
    }
}

/* ---- content types ------------------------------------------------------------------ */

static const char *ctype(const char *name)
{
    return sl_static_content_type(name, strlen(name));
}

static void test_content_type(void **state)
{
    (void)state;
    /* the table is sorted (binary search) and every entry is found through the lookup */
    const char *prev = NULL, *type = NULL, *ext;
    size_t i = 0;
    for (; (ext = sl_static_type_at(i, &type)) != NULL; i++) {
        if (prev)
            assert_true(strcmp(prev, ext) < 0);
        prev = ext;
        char name[32];
        snprintf(name, sizeof(name), "f.%s", ext);
        assert_string_equal(ctype(name), type);
        for (const char *q = ext; *q; q++)
            assert_true(*q == (char)tolower((unsigned char)*q));
    }
    assert_true(i >= 33);
    assert_null(sl_static_type_at(i + 5, NULL));

    static const struct {
        const char *name, *type;
    } cases[] = {
        {"index.html", "text/html; charset=utf-8"},
        {"a.htm", "text/html; charset=utf-8"},
        {"a.css", "text/css; charset=utf-8"},
        {"a.js", "text/javascript; charset=utf-8"},
        {"a.mjs", "text/javascript; charset=utf-8"},
        {"a.json", "application/json"},
        {"a.js.map", "application/json"},
        {"a.txt", "text/plain; charset=utf-8"},
        {"a.xml", "text/xml; charset=utf-8"},
        {"a.svg", "image/svg+xml"},
        {"a.png", "image/png"},
        {"a.jpg", "image/jpeg"},
        {"a.jpeg", "image/jpeg"},
        {"a.gif", "image/gif"},
        {"a.webp", "image/webp"},
        {"a.avif", "image/avif"},
        {"favicon.ico", "image/x-icon"},
        {"a.woff", "font/woff"},
        {"a.woff2", "font/woff2"},
        {"a.ttf", "font/ttf"},
        {"a.otf", "font/otf"},
        {"a.wasm", "application/wasm"},
        {"a.pdf", "application/pdf"},
        {"a.mp4", "video/mp4"},
        {"a.webm", "video/webm"},
        {"a.mp3", "audio/mpeg"},
        {"a.ogg", "audio/ogg"},
        {"a.csv", "text/csv; charset=utf-8"},
        {"README.md", "text/markdown; charset=utf-8"},
        {"a.zip", "application/zip"},
        {"a.tar.gz", "application/gzip"},
        {"a.js.br", "application/x-brotli"},
        {"site.webmanifest", "application/manifest+json"},
        /* case-insensitive extension */
        {"INDEX.HTML", "text/html; charset=utf-8"},
        {"a.Css", "text/css; charset=utf-8"},
        {"a.WOFF2", "font/woff2"},
        {"a.JpEg", "image/jpeg"},
        /* paths: only the last segment counts */
        {"sub/dir/a.css", "text/css; charset=utf-8"},
        {"dir.html/readme", SL_STATIC_TYPE_DEFAULT},
        {"v1.2/app", SL_STATIC_TYPE_DEFAULT},
        /* unknown, missing, empty, dot-file, too long */
        {"a.exe", SL_STATIC_TYPE_DEFAULT},
        {"a.htmlx", SL_STATIC_TYPE_DEFAULT},
        {"a.htm l", SL_STATIC_TYPE_DEFAULT},
        {"Makefile", SL_STATIC_TYPE_DEFAULT},
        {"a.", SL_STATIC_TYPE_DEFAULT},
        {".html", SL_STATIC_TYPE_DEFAULT},
        {".gz", SL_STATIC_TYPE_DEFAULT},
        {"a/.css", SL_STATIC_TYPE_DEFAULT},
        {"..css", "text/css; charset=utf-8"},
        {"a.webmanifestwebmanifest", SL_STATIC_TYPE_DEFAULT},
        {"", SL_STATIC_TYPE_DEFAULT},
        {"a.js\xff", SL_STATIC_TYPE_DEFAULT},
    };
    for (unsigned k = 0; k < N(cases); k++) {
        if (strcmp(ctype(cases[k].name), cases[k].type) != 0)
            print_error("\"%s\" -> %s\n", cases[k].name, ctype(cases[k].name));
        assert_string_equal(ctype(cases[k].name), cases[k].type);
    }
    assert_string_equal(sl_static_content_type(NULL, 0), SL_STATIC_TYPE_DEFAULT);
    /* never read past n: "a.css" cut to "a.c" */
    assert_string_equal(sl_static_content_type("a.css", 3), SL_STATIC_TYPE_DEFAULT);
    assert_string_equal(sl_static_content_type("a.jsonx", 4), "text/javascript; charset=utf-8");
}

static int compressible(const char *t)
{
    return sl_compress_type_ok(t, strlen(t)); /* compress decides; the table must agree */
}

static void test_compressible(void **state)
{
    (void)state;
    const char *yes[] = {"text/html; charset=utf-8",
                         "text/plain",
                         "TEXT/CSS",
                         "text/csv",
                         "text/javascript; charset=utf-8",
                         "application/json",
                         "Application/JSON; charset=utf-8",
                         "application/javascript",
                         "application/xml",
                         "image/svg+xml",
                         "application/ld+json",
                         "application/manifest+json",
                         "application/atom+xml",
                         "application/wasm",
                         "font/ttf",
                         "font/otf",
                         "image/x-icon",
                         "image/vnd.microsoft.icon",
                         "image/bmp",
                         " text/html ",
                         "application/json ;q=1"};
    const char *no[] = {"image/png",
                        "image/jpeg",
                        "image/webp",
                        "image/avif",
                        "image/gif",
                        "font/woff",
                        "font/woff2",
                        "video/mp4",
                        "audio/mpeg",
                        "application/zip",
                        "application/gzip",
                        "application/x-brotli",
                        "application/pdf",
                        SL_STATIC_TYPE_DEFAULT,
                        "",
                        "text/",
                        "text",
                        "+json",
                        "application/jsonx",
                        "x/y",
                        "textual/html"};
    for (unsigned i = 0; i < N(yes); i++) {
        if (!compressible(yes[i]))
            print_error("%s\n", yes[i]);
        assert_true(compressible(yes[i]));
    }
    for (unsigned i = 0; i < N(no); i++) {
        if (compressible(no[i]))
            print_error("%s\n", no[i]);
        assert_false(compressible(no[i]));
    }
    assert_false(sl_compress_type_ok(NULL, 0));
    /* every table entry: the text ones compress, the compressed formats do not */
    const char *type;
    for (size_t i = 0; sl_static_type_at(i, &type); i++)
        if (strncmp(type, "text/", 5) == 0 || strstr(type, "json"))
            assert_true(compressible(type));
    assert_true(compressible(ctype("a.svg")) && compressible(ctype("a.wasm")));
    assert_false(compressible(ctype("a.woff2")) || compressible(ctype("a.gz")));
}

static void test_siblings(void **state)
{
    (void)state;
    const char *br = sl_compress_suffix(SL_COMPRESS_BR), *gz = sl_compress_suffix(SL_COMPRESS_GZIP);
    char out[16];
    assert_int_equal(sl_static_sibling("app.js", 6, br, out, sizeof(out)), 9);
    assert_string_equal(out, "app.js.br");
    /* the type of a sibling is the original's: ask with the original name */
    assert_string_equal(ctype("app.js"), "text/javascript; charset=utf-8");
    assert_int_equal(sl_static_sibling("app.js", 6, gz, out, 10), 9);
    assert_int_equal(sl_static_sibling("app.js", 6, gz, out, 9), SL_ETOOBIG);
    assert_int_equal(sl_static_sibling("app.js", 6, "", out, 16), SL_EINVAL);
    assert_int_equal(sl_static_sibling("app.js", 6, NULL, out, 16), SL_EINVAL);
    char inplace[16] = "a.css";
    assert_int_equal(sl_static_sibling(inplace, 5, gz, inplace, 16), 8);
    assert_string_equal(inplace, "a.css.gz");
}

/* ---- validators and dates ----------------------------------------------------------- */

static void test_etag(void **state)
{
    (void)state;
    char a[SL_STATIC_ETAG_MAX], b[SL_STATIC_ETAG_MAX];
    size_t n = sl_static_etag(0x10, 1, 2, 0xab, a);
    assert_string_equal(a, "\"ab-3b9aca02-10\"");
    assert_int_equal(n, strlen(a));
    /* each input changes the tag */
    sl_static_etag(1000, 1700000000, 5, 42, a);
    sl_static_etag(1001, 1700000000, 5, 42, b);
    assert_string_not_equal(a, b);
    sl_static_etag(1000, 1700000000, 6, 42, b);
    assert_string_not_equal(a, b);
    sl_static_etag(1000, 1700000001, 5, 42, b);
    assert_string_not_equal(a, b);
    sl_static_etag(1000, 1700000000, 5, 43, b);
    assert_string_not_equal(a, b);
    sl_static_etag(1000, 1700000000, 5, 42, b);
    assert_string_equal(a, b);
    /* the largest fits, and is a valid strong entity-tag */
    n = sl_static_etag(UINT64_MAX, -1, 999999999, UINT64_MAX, a);
    assert_true(n < SL_STATIC_ETAG_MAX && n == strlen(a));
    assert_true(a[0] == '"' && a[n - 1] == '"');
    for (size_t i = 1; i + 1 < n; i++)
        assert_true(a[i] > 0x20 && a[i] != '"' && a[i] < 0x7f);
    n = sl_static_etag(0, 0, 0, 0, a);
    assert_string_equal(a, "\"0-0-0\"");
}

static void test_dates(void **state)
{
    (void)state;
    char out[SL_HTTPDATE_LEN + 1] = {0};
    assert_int_equal(sl_httpdate_format(0, out), 29);
    assert_string_equal(out, "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_int_equal(sl_httpdate_format(784111777, out), 29);
    assert_string_equal(out, "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_int_equal(sl_httpdate_format(1709164800, out), 29);
    assert_string_equal(out, "Thu, 29 Feb 2024 00:00:00 GMT");
    assert_int_equal(sl_httpdate_format(SL_HTTPDATE_MAX, out), 29);
    assert_string_equal(out, "Fri, 31 Dec 9999 23:59:59 GMT");
    assert_int_equal(sl_httpdate_format(SL_HTTPDATE_MAX + 1, out), 0);
    assert_int_equal(sl_httpdate_format(-1, out), 0);
    assert_int_equal(sl_static_last_modified(784111777, out), 29);
    assert_string_equal(out, "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_int_equal(sl_static_last_modified(-5, out), 0);

#define P(s, now) sl_httpdate_parse((s), strlen(s), (now))
    assert_int_equal(P("Sun, 06 Nov 1994 08:49:37 GMT", 0), 784111777);
    assert_int_equal(P("Sunday, 06-Nov-94 08:49:37 GMT", 0), 784111777);
    assert_int_equal(P("Sun Nov  6 08:49:37 1994", 0), 784111777);
    assert_int_equal(P(" \tSun, 06 Nov 1994 08:49:37 GMT\t ", 0), 784111777);
    assert_int_equal(P("Sunday, 06-Nov-94 08:49:37 GMT", 1700000000LL), 784111777);
    /* seen from 2100, "94" is 2094: not more than 50 years ahead */
    assert_int_equal(P("Sunday, 06-Nov-94 08:49:37 GMT", 4102444800LL), 784111777 + 3155760000LL);
    assert_int_equal(P("Thursday, 01-Jan-70 00:00:00 GMT", 0), 0);
    assert_int_equal(P("Thu, 29 Feb 2024 00:00:00 GMT", 0), 1709164800);
    assert_int_equal(P("Thu, 01 Jan 1960 00:00:00 GMT", 0), 0); /* before 1970 */
    assert_int_equal(P("Tue, 29 Feb 2023 00:00:00 GMT", 0), -1);
    assert_int_equal(P("Sun, 06 Nov 1994 08:49:37 UTC", 0), -1);
    assert_int_equal(P("sun, 06 Nov 1994 08:49:37 GMT", 0), -1);
    assert_int_equal(P("Sun, 06 nov 1994 08:49:37 GMT", 0), -1);
    assert_int_equal(P("Sun, 06 Nov 1994 24:49:37 GMT", 0), -1);
    assert_int_equal(P("Sun, 32 Nov 1994 08:49:37 GMT", 0), -1);
    assert_int_equal(P("Sun Nov  0 08:49:37 1994", 0), -1);
    assert_int_equal(P("Sun, 06 Nov 1994 08:49:37 GMT, x", 0), -1);
    assert_int_equal(P("", 0), -1);
    assert_int_equal(P("0", 0), -1);
    assert_int_equal(sl_httpdate_parse(NULL, 0, 0), -1);
    /* round trip across the range */
    for (int64_t t = 0; t < SL_HTTPDATE_MAX; t += 86400LL * 7919 + 3671) {
        assert_int_equal(sl_httpdate_format(t, out), 29);
        assert_int_equal(sl_httpdate_parse(out, 29, 0), t);
    }
#undef P
}

/* ---- Range ---------------------------------------------------------------------------- */

enum {
    NONE = SL_STATIC_RANGE_NONE,
    OK = SL_STATIC_RANGE_OK,
    UNSAT = SL_STATIC_RANGE_UNSAT,
    MULTI = SL_STATIC_RANGE_MULTI
};

static void test_range_parse(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        uint64_t size;
        int rc;
        uint64_t first, len;
    } cases[] = {
        {"bytes=0-0", 1000, OK, 0, 1},
        {"bytes=0-", 1000, OK, 0, 1000},
        {"bytes=0-999", 1000, OK, 0, 1000},
        {"bytes=0-1000", 1000, OK, 0, 1000},
        {"bytes=0-99", 1000, OK, 0, 100},
        {"bytes=100-199", 1000, OK, 100, 100},
        {"bytes=999-999", 1000, OK, 999, 1},
        {"bytes=999-", 1000, OK, 999, 1},
        {"bytes=500-5000", 1000, OK, 500, 500},
        {"bytes=-1", 1000, OK, 999, 1},
        {"bytes=-500", 1000, OK, 500, 500},
        {"bytes=-1000", 1000, OK, 0, 1000},
        {"bytes=-1001", 1000, OK, 0, 1000}, /* -N over size: the whole */
        {"bytes=-99999999999999999999999999", 1000, OK, 0, 1000},
        {"bytes=-0", 1000, UNSAT, 0, 0},
        {"bytes=-000", 1000, UNSAT, 0, 0},
        {"bytes=1000-", 1000, UNSAT, 0, 0},
        {"bytes=1000-1000", 1000, UNSAT, 0, 0},
        {"bytes=1000-2000", 1000, UNSAT, 0, 0},
        {"bytes=5000-", 1000, UNSAT, 0, 0},
        {"bytes=5-4", 1000, NONE, 0, 0}, /* first > last: invalid, ignored */
        {"bytes=1-0", 1000, NONE, 0, 0},
        {"bytes=2000-1000", 1000, NONE, 0, 0},
        /* overflow */
        {"bytes=0-18446744073709551615", 1000, OK, 0, 1000},
        {"bytes=0-18446744073709551616", 1000, OK, 0, 1000},
        {"bytes=0-99999999999999999999999999", 1000, OK, 0, 1000},
        {"bytes=18446744073709551615-", 1000, UNSAT, 0, 0},
        {"bytes=99999999999999999999-", 1000, UNSAT, 0, 0},
        {"bytes=99999999999999999999-99999999999999999999", 1000, UNSAT, 0, 0},
        {"bytes=99999999999999999999-99999999999999999998", 1000, NONE, 0, 0},
        {"bytes=18446744073709551616-18446744073709551615", 1000, NONE, 0, 0},
        {"bytes=100000000000000000000-99999999999999999999", 1000, NONE, 0, 0},
        {"bytes=18446744073709551614-", UINT64_MAX, OK, UINT64_MAX - 1, 1},
        {"bytes=0-", UINT64_MAX, OK, 0, UINT64_MAX},
        {"bytes=-18446744073709551615", UINT64_MAX, OK, 0, UINT64_MAX},
        /* leading zeros */
        {"bytes=00000-00001", 1000, OK, 0, 2},
        {"bytes=0010-0009", 1000, NONE, 0, 0},
        {"bytes=0010-00010", 1000, OK, 10, 1},
        {"bytes=000000000000000000000000000001-2", 1000, OK, 1, 2},
        /* unit case, whitespace */
        {"BYTES=0-1", 1000, OK, 0, 2},
        {"Bytes=0-1", 1000, OK, 0, 2},
        {"bYtEs=-1", 1000, OK, 999, 1},
        {" bytes=0-1 ", 1000, OK, 0, 2},
        {"bytes= 0-1", 1000, OK, 0, 2},
        {"bytes=\t0-1\t", 1000, OK, 0, 2},
        {"bytes =0-1", 1000, NONE, 0, 0},
        {"bytes= 0 -1", 1000, NONE, 0, 0},
        {"bytes=0 -1", 1000, NONE, 0, 0},
        {"bytes=0- 1", 1000, NONE, 0, 0},
        {"bytes=- 1", 1000, NONE, 0, 0},
        /* empty list elements */
        {"bytes=0-1,", 1000, OK, 0, 2},
        {"bytes=,0-1", 1000, OK, 0, 2},
        {"bytes=, ,0-1,,\t,", 1000, OK, 0, 2},
        /* several ranges: the whole 200 */
        {"bytes=0-1,2-3", 1000, MULTI, 0, 0},
        {"bytes=0-1, 2-3", 1000, MULTI, 0, 0},
        {"bytes=0-0,-1", 1000, MULTI, 0, 0},
        {"bytes=0-1,0-1", 1000, MULTI, 0, 0},
        {"bytes=2000-,3000-", 1000, MULTI, 0, 0},
        {"bytes=0-1,5-4", 1000, NONE, 0, 0}, /* one invalid element: all ignored */
        {"bytes=0-1,x", 1000, NONE, 0, 0},
        {"bytes=0-1,2-3,", 1000, MULTI, 0, 0},
        /* malformed */
        {"", 1000, NONE, 0, 0},
        {"bytes", 1000, NONE, 0, 0},
        {"bytes=", 1000, NONE, 0, 0},
        {"bytes=,", 1000, NONE, 0, 0},
        {"bytes=-", 1000, NONE, 0, 0},
        {"bytes=--1", 1000, NONE, 0, 0},
        {"bytes=-1-", 1000, NONE, 0, 0},
        {"bytes=-1-2", 1000, NONE, 0, 0},
        {"bytes=1", 1000, NONE, 0, 0},
        {"bytes=+1-2", 1000, NONE, 0, 0},
        {"bytes=1-+2", 1000, NONE, 0, 0},
        {"bytes=1-2-3", 1000, NONE, 0, 0},
        {"bytes=0x10-", 1000, NONE, 0, 0},
        {"bytes=1.5-2", 1000, NONE, 0, 0},
        {"bytes==0-1", 1000, NONE, 0, 0},
        {"bytes=0-1;x", 1000, NONE, 0, 0},
        {"bytes=a-b", 1000, NONE, 0, 0},
        {"bytes=\xff", 1000, NONE, 0, 0},
        {"=0-1", 1000, NONE, 0, 0},
        {"byte=0-1", 1000, NONE, 0, 0},
        {"bytess=0-1", 1000, NONE, 0, 0},
        {"items=0-1", 1000, NONE, 0, 0}, /* another unit: ignored */
        {"0-1", 1000, NONE, 0, 0},
        /* an empty file: every single range is unsatisfiable */
        {"bytes=0-", 0, UNSAT, 0, 0},
        {"bytes=0-0", 0, UNSAT, 0, 0},
        {"bytes=-1", 0, UNSAT, 0, 0},
        {"bytes=-0", 0, UNSAT, 0, 0},
        {"bytes=0-0,1-1", 0, MULTI, 0, 0},
        {"bytes=1-0", 0, NONE, 0, 0},
        /* a one-byte file */
        {"bytes=0-0", 1, OK, 0, 1},
        {"bytes=0-", 1, OK, 0, 1},
        {"bytes=-5", 1, OK, 0, 1},
        {"bytes=1-", 1, UNSAT, 0, 0},
    };
    for (unsigned i = 0; i < N(cases); i++) {
        uint64_t f = 12345, l = 67890;
        int rc = sl_static_range_parse(cases[i].v, strlen(cases[i].v), cases[i].size, &f, &l);
        if (rc != cases[i].rc || (rc == OK && (f != cases[i].first || l != cases[i].len)))
            print_error("case %u \"%s\" size %llu: %d %llu+%llu\n", i, cases[i].v,
                        (unsigned long long)cases[i].size, rc, (unsigned long long)f,
                        (unsigned long long)l);
        assert_int_equal(rc, cases[i].rc);
        if (rc == OK) {
            assert_int_equal(f, cases[i].first);
            assert_int_equal(l, cases[i].len);
        } else { /* untouched */
            assert_int_equal(f, 12345);
            assert_int_equal(l, 67890);
        }
    }
    uint64_t f, l;
    assert_int_equal(sl_static_range_parse(NULL, 0, 10, &f, &l), NONE);
    /* never read past n: "bytes=0-1,2-3" cut after "0-1" */
    assert_int_equal(sl_static_range_parse("bytes=0-1,2-3", 9, 10, &f, &l), OK);
    assert_true(f == 0 && l == 2);
    assert_int_equal(sl_static_range_parse("bytes=0-12", 9, 10, &f, &l), OK);
    assert_true(f == 0 && l == 2);
}

/* ---- the decision --------------------------------------------------------------------- */

#define SIZE 1000
#define NOW 1700000000LL
#define MTIME (NOW - 100)
#define D_MTIME "Tue, 14 Nov 2023 22:11:40 GMT" /* MTIME */
#define D_BEFORE "Tue, 14 Nov 2023 22:11:39 GMT"
#define D_AFTER "Tue, 14 Nov 2023 22:11:41 GMT"
#define D_MTIME_850 "Tuesday, 14-Nov-23 22:11:40 GMT"
#define D_MTIME_ASC "Tue Nov 14 22:11:40 2023"

static char g_etag[SL_STATIC_ETAG_MAX];
static size_t g_elen;

static sl_static_reply_t dec(int method, const sl_http_header_t *h, unsigned n)
{
    sl_static_reply_t r;
    memset(&r, 0x5a, sizeof(r));
    int s = sl_static_decide(h, n, method, SIZE, g_etag, g_elen, MTIME, NOW, &r);
    assert_int_equal(s, r.status);
    assert_int_equal(r.size, SIZE);
    switch (r.status) {
    case 200:
        assert_true(r.first == 0 && r.len == SIZE);
        break;
    case 206:
        assert_true(r.len > 0 && r.first + r.len <= SIZE);
        break;
    default:
        assert_true(r.first == 0 && r.len == 0);
    }
    return r;
}

static int st(int method, const sl_http_header_t *h, unsigned n)
{
    return dec(method, h, n).status;
}

#define ST1(m, a, b) st((m), (sl_http_header_t[]){H(a, b)}, 1)
#define ST2(m, a, b, c, d) st((m), (sl_http_header_t[]){H(a, b), H(c, d)}, 2)
#define ST3(m, a, b, c, d, e, f) st((m), (sl_http_header_t[]){H(a, b), H(c, d), H(e, f)}, 3)
#define GET SL_M_GET
#define HEAD SL_M_HEAD
#define POST SL_M_POST

static void test_decide_if_none_match(void **state)
{
    (void)state;
    g_elen = sl_static_etag(SIZE, MTIME, 0, 42, g_etag);
    char weak[64], list[128], spaced[128];
    snprintf(weak, sizeof(weak), "W/%s", g_etag);
    snprintf(list, sizeof(list), "\"x\", W/\"y\",%s", g_etag);
    snprintf(spaced, sizeof(spaced), " ,\t%s , ", g_etag);
    assert_int_equal(st(GET, NULL, 0), 200);
    assert_int_equal(st(HEAD, NULL, 0), 200);
    assert_int_equal(ST1(GET, "If-None-Match", g_etag), 304);
    assert_int_equal(ST1(HEAD, "If-None-Match", g_etag), 304);
    assert_int_equal(ST1(POST, "If-None-Match", g_etag), 412);
    assert_int_equal(ST1(GET, "if-none-match", g_etag), 304); /* names in any case */
    assert_int_equal(ST1(GET, "IF-NONE-MATCH", g_etag), 304);
    assert_int_equal(ST1(GET, "If-None-Match", weak), 304); /* weak comparison */
    assert_int_equal(ST1(GET, "If-None-Match", list), 304);
    assert_int_equal(ST1(GET, "If-None-Match", spaced), 304);
    assert_int_equal(ST1(GET, "If-None-Match", "*"), 304);
    assert_int_equal(ST1(GET, "If-None-Match", " * "), 304);
    assert_int_equal(ST1(GET, "If-None-Match", "\"x\""), 200);
    assert_int_equal(ST1(GET, "If-None-Match", "\"x\", W/\"y\""), 200);
    assert_int_equal(ST2(GET, "If-None-Match", "\"x\"", "If-None-Match", g_etag), 304);
    /* malformed: no match (the full response is always right) */
    assert_int_equal(ST1(GET, "If-None-Match", ""), 200);
    assert_int_equal(ST1(GET, "If-None-Match", "abc"), 200);
    assert_int_equal(ST1(GET, "If-None-Match", "\"abc"), 200);
    assert_int_equal(ST1(GET, "If-None-Match", "*, \"x\""), 200);
    assert_int_equal(ST1(GET, "If-None-Match", "w/\"x\""), 200);
    char bad[128];
    snprintf(bad, sizeof(bad), "%s x", g_etag);
    assert_int_equal(ST1(GET, "If-None-Match", bad), 200);
    snprintf(bad, sizeof(bad), "%s, junk", g_etag);
    assert_int_equal(ST1(GET, "If-None-Match", bad), 200);
    /* the tag without its quotes is not the tag */
    snprintf(bad, sizeof(bad), "%.*s", (int)g_elen - 2, g_etag + 1);
    assert_int_equal(ST1(GET, "If-None-Match", bad), 200);
    /* If-None-Match present: If-Modified-Since is ignored, either way */
    assert_int_equal(ST2(GET, "If-None-Match", "\"x\"", "If-Modified-Since", D_AFTER), 200);
    assert_int_equal(ST2(GET, "If-None-Match", g_etag, "If-Modified-Since", D_BEFORE), 304);
}

static void test_decide_if_modified_since(void **state)
{
    (void)state;
    g_elen = sl_static_etag(SIZE, MTIME, 0, 42, g_etag);
    assert_int_equal(ST1(GET, "If-Modified-Since", D_MTIME), 304);
    assert_int_equal(ST1(GET, "If-Modified-Since", D_AFTER), 304);
    assert_int_equal(ST1(GET, "If-Modified-Since", D_BEFORE), 200);
    assert_int_equal(ST1(HEAD, "If-Modified-Since", D_MTIME), 304);
    assert_int_equal(ST1(GET, "If-Modified-Since", D_MTIME_850), 304);
    assert_int_equal(ST1(GET, "If-Modified-Since", D_MTIME_ASC), 304);
    assert_int_equal(ST1(GET, "If-Modified-Since", "Tue, 14 Nov 2023 22:11:40 UTC"), 200);
    assert_int_equal(ST1(GET, "If-Modified-Since", "0"), 200);
    assert_int_equal(ST1(GET, "If-Modified-Since", ""), 200);
    assert_int_equal(ST2(GET, "If-Modified-Since", D_MTIME, "If-Modified-Since", D_MTIME), 200);
    assert_int_equal(ST1(POST, "If-Modified-Since", D_MTIME), 200); /* GET/HEAD only */
    /* no Last-Modified: never 304 by date */
    sl_static_reply_t r;
    sl_http_header_t h[] = {H("If-Modified-Since", D_AFTER)};
    assert_int_equal(sl_static_decide(h, 1, GET, SIZE, g_etag, g_elen, -1, NOW, &r), 200);
}

static void test_decide_if_match(void **state)
{
    (void)state;
    g_elen = sl_static_etag(SIZE, MTIME, 0, 42, g_etag);
    char weak[64], list[128];
    snprintf(weak, sizeof(weak), "W/%s", g_etag);
    snprintf(list, sizeof(list), "\"a\", %s", g_etag);
    assert_int_equal(ST1(GET, "If-Match", g_etag), 200);
    assert_int_equal(ST1(GET, "If-Match", list), 200);
    assert_int_equal(ST1(GET, "If-Match", "*"), 200);
    assert_int_equal(ST1(GET, "If-Match", weak), 412); /* strong comparison */
    assert_int_equal(ST1(GET, "If-Match", "\"a\""), 412);
    assert_int_equal(ST1(GET, "If-Match", "garbage"), 412);
    assert_int_equal(ST1(GET, "If-Match", ""), 412);
    assert_int_equal(ST2(GET, "If-Match", "\"a\"", "If-Match", g_etag), 200);
    assert_int_equal(ST2(GET, "If-Match", "junk", "If-Match", g_etag), 412);
    /* If-Match beats If-None-Match; true If-Match still lets If-None-Match answer */
    assert_int_equal(ST2(GET, "If-Match", "\"a\"", "If-None-Match", g_etag), 412);
    assert_int_equal(ST2(GET, "If-Match", g_etag, "If-None-Match", g_etag), 304);
    /* If-Match present: If-Unmodified-Since is ignored */
    assert_int_equal(ST2(GET, "If-Match", g_etag, "If-Unmodified-Since", D_BEFORE), 200);
    /* If-Unmodified-Since */
    assert_int_equal(ST1(GET, "If-Unmodified-Since", D_BEFORE), 412);
    assert_int_equal(ST1(GET, "If-Unmodified-Since", D_MTIME), 200);
    assert_int_equal(ST1(GET, "If-Unmodified-Since", D_AFTER), 200);
    assert_int_equal(ST1(GET, "If-Unmodified-Since", "yesterday"), 200); /* invalid: ignored */
    assert_int_equal(ST2(GET, "If-Unmodified-Since", D_BEFORE, "If-Unmodified-Since", D_BEFORE),
                     200);
    assert_int_equal(ST2(GET, "If-Unmodified-Since", D_BEFORE, "If-None-Match", g_etag), 412);
    /* precondition failures beat Range */
    assert_int_equal(ST2(GET, "If-Match", "\"a\"", "Range", "bytes=0-1"), 412);
    /* without our ETag: only "*" matches */
    sl_static_reply_t r;
    sl_http_header_t h1[] = {H("If-Match", g_etag)};
    assert_int_equal(sl_static_decide(h1, 1, GET, SIZE, NULL, 0, MTIME, NOW, &r), 412);
    sl_http_header_t h2[] = {H("If-Match", "*")};
    assert_int_equal(sl_static_decide(h2, 1, GET, SIZE, NULL, 0, MTIME, NOW, &r), 200);
    sl_http_header_t h3[] = {H("If-None-Match", "*")};
    assert_int_equal(sl_static_decide(h3, 1, GET, SIZE, NULL, 0, MTIME, NOW, &r), 304);
    sl_http_header_t h4[] = {H("If-None-Match", g_etag)};
    assert_int_equal(sl_static_decide(h4, 1, GET, SIZE, NULL, 0, MTIME, NOW, &r), 200);
    assert_int_equal(sl_static_decide(h4, 1, GET, SIZE, "junk", 4, MTIME, NOW, &r), 200);
    /* If-Unmodified-Since without Last-Modified: false */
    sl_http_header_t h5[] = {H("If-Unmodified-Since", D_AFTER)};
    assert_int_equal(sl_static_decide(h5, 1, GET, SIZE, g_etag, g_elen, -1, NOW, &r), 412);
}

static void test_decide_range(void **state)
{
    (void)state;
    g_elen = sl_static_etag(SIZE, MTIME, 0, 42, g_etag);
    sl_static_reply_t r = dec(GET, (sl_http_header_t[]){H("Range", "bytes=10-19")}, 1);
    assert_int_equal(r.status, 206);
    assert_true(r.first == 10 && r.len == 10);
    r = dec(GET, (sl_http_header_t[]){H("range", "bytes=-10")}, 1);
    assert_true(r.status == 206 && r.first == 990 && r.len == 10);
    assert_int_equal(ST1(HEAD, "Range", "bytes=10-19"), 200); /* GET only */
    assert_int_equal(ST1(POST, "Range", "bytes=10-19"), 200);
    assert_int_equal(ST1(GET, "Range", "bytes=1000-"), 416);
    assert_int_equal(ST1(GET, "Range", "bytes=-0"), 416);
    assert_int_equal(ST1(GET, "Range", "bytes=5-4"), 200);
    assert_int_equal(ST1(GET, "Range", "bytes=0-1,5-6"), 200);
    assert_int_equal(ST1(GET, "Range", "pages=1-2"), 200);
    assert_int_equal(ST1(GET, "Range", ""), 200);
    assert_int_equal(ST2(GET, "Range", "bytes=0-1", "Range", "bytes=0-1"), 200);
    /* a 304 beats Range */
    assert_int_equal(ST2(GET, "If-None-Match", g_etag, "Range", "bytes=0-1"), 304);
    assert_int_equal(ST2(GET, "If-Modified-Since", D_MTIME, "Range", "bytes=0-1"), 304);
    assert_int_equal(ST2(GET, "If-None-Match", "\"x\"", "Range", "bytes=0-1"), 206);
    /* an empty file */
    sl_http_header_t h[] = {H("Range", "bytes=0-")};
    assert_int_equal(sl_static_decide(h, 1, GET, 0, g_etag, g_elen, MTIME, NOW, &r), 416);
    assert_true(r.size == 0 && r.len == 0);
    assert_int_equal(sl_static_decide(NULL, 0, GET, 0, g_etag, g_elen, MTIME, NOW, &r), 200);
    assert_true(r.len == 0);
    assert_int_equal(sl_static_decide(NULL, 5, GET, 0, g_etag, g_elen, MTIME, NOW, &r), 200);
}

static void test_decide_if_range(void **state)
{
    (void)state;
    g_elen = sl_static_etag(SIZE, MTIME, 0, 42, g_etag);
    char weak[64];
    snprintf(weak, sizeof(weak), "W/%s", g_etag);
    const char *R = "bytes=0-9";
    assert_int_equal(ST2(GET, "If-Range", g_etag, "Range", R), 206);
    assert_int_equal(ST2(GET, "Range", R, "if-range", g_etag), 206);
    assert_int_equal(ST2(GET, "If-Range", weak, "Range", R), 200); /* weak never matches */
    assert_int_equal(ST2(GET, "If-Range", "\"other\"", "Range", R), 200);
    assert_int_equal(ST2(GET, "If-Range", "*", "Range", R), 200);
    char two[128];
    snprintf(two, sizeof(two), "%s, %s", g_etag, g_etag);
    assert_int_equal(ST2(GET, "If-Range", two, "Range", R), 200); /* one tag, not a list */
    /* a date: exact, and Last-Modified strong (1 s before now) */
    assert_int_equal(ST2(GET, "If-Range", D_MTIME, "Range", R), 206);
    assert_int_equal(ST2(GET, "If-Range", D_MTIME_850, "Range", R), 206);
    assert_int_equal(ST2(GET, "If-Range", D_AFTER, "Range", R), 200); /* exact only */
    assert_int_equal(ST2(GET, "If-Range", D_BEFORE, "Range", R), 200);
    assert_int_equal(ST2(GET, "If-Range", "garbage", "Range", R), 200);
    assert_int_equal(ST2(GET, "If-Range", "", "Range", R), 200);
    assert_int_equal(ST3(GET, "If-Range", g_etag, "If-Range", g_etag, "Range", R), 200);
    /* If-Range false also skips the 416: the whole 200 */
    assert_int_equal(ST2(GET, "If-Range", "\"other\"", "Range", "bytes=5000-"), 200);
    assert_int_equal(ST2(GET, "If-Range", g_etag, "Range", "bytes=5000-"), 416);
    /* If-Range without Range: ignored */
    assert_int_equal(ST1(GET, "If-Range", "\"other\""), 200);
    /* a weak Last-Modified (mtime within the last second, or now unknown): no range */
    sl_static_reply_t r;
    sl_http_header_t h[] = {H("If-Range", D_MTIME), H("Range", R)};
    assert_int_equal(sl_static_decide(h, 2, GET, SIZE, g_etag, g_elen, MTIME, MTIME, &r), 200);
    assert_int_equal(sl_static_decide(h, 2, GET, SIZE, g_etag, g_elen, MTIME, 0, &r), 200);
    assert_int_equal(sl_static_decide(h, 2, GET, SIZE, g_etag, g_elen, MTIME, MTIME + 1, &r), 206);
    assert_int_equal(sl_static_decide(h, 2, GET, SIZE, g_etag, g_elen, -1, NOW, &r), 200);
    /* no ETag of ours: an entity-tag If-Range is false */
    sl_http_header_t h2[] = {H("If-Range", g_etag), H("Range", R)};
    assert_int_equal(sl_static_decide(h2, 2, GET, SIZE, NULL, 0, MTIME, NOW, &r), 200);
    /* a weak ETag of ours never satisfies If-Range */
    sl_http_header_t h3[] = {H("If-Range", weak), H("Range", R)};
    assert_int_equal(sl_static_decide(h3, 2, GET, SIZE, weak, strlen(weak), MTIME, NOW, &r), 200);
    sl_http_header_t h4[] = {H("If-None-Match", g_etag)};
    assert_int_equal(sl_static_decide(h4, 1, GET, SIZE, weak, strlen(weak), MTIME, NOW, &r), 304);
}

static void test_content_range(void **state)
{
    (void)state;
    char out[64];
    sl_static_reply_t r = {.status = 206, .first = 0, .len = 1, .size = 1000};
    assert_int_equal(sl_static_content_range(&r, out, sizeof(out)), 14);
    assert_string_equal(out, "bytes 0-0/1000");
    r = (sl_static_reply_t){.status = 206, .first = 990, .len = 10, .size = 1000};
    assert_int_equal(sl_static_content_range(&r, out, sizeof(out)), 18);
    assert_string_equal(out, "bytes 990-999/1000");
    r = (sl_static_reply_t){.status = 416, .size = 1000};
    assert_int_equal(sl_static_content_range(&r, out, sizeof(out)), 12);
    assert_string_equal(out, "bytes */1000");
    r = (sl_static_reply_t){.status = 416, .size = 0};
    sl_static_content_range(&r, out, sizeof(out));
    assert_string_equal(out, "bytes */0");
    r = (sl_static_reply_t){.status = 206, .first = 0, .len = UINT64_MAX, .size = UINT64_MAX};
    assert_int_equal(sl_static_content_range(&r, out, sizeof(out)), 49);
    assert_string_equal(out, "bytes 0-18446744073709551614/18446744073709551615");
    assert_int_equal(sl_static_content_range(&r, out, 49), SL_ETOOBIG);
    assert_int_equal(sl_static_content_range(&r, out, 50), 49);
    /* the longest value there is */
    char big[SL_STATIC_CONTENT_RANGE_MAX];
    r = (sl_static_reply_t){.status = 206, .first = UINT64_MAX - 2, .len = 2, .size = UINT64_MAX};
    assert_int_equal(sl_static_content_range(&r, big, sizeof(big)), 68);
    assert_string_equal(big,
                        "bytes 18446744073709551613-18446744073709551614/18446744073709551615");
    assert_int_equal(sl_static_content_range(&r, big, 68), SL_ETOOBIG);
    r.status = 200;
    assert_int_equal(sl_static_content_range(&r, out, sizeof(out)), SL_EINVAL);
    r = (sl_static_reply_t){.status = 206, .len = 0, .size = 5};
    assert_int_equal(sl_static_content_range(&r, out, sizeof(out)), SL_EINVAL);
    assert_int_equal(sl_static_content_range(NULL, out, sizeof(out)), SL_EINVAL);
    /* from a decision */
    g_elen = sl_static_etag(SIZE, MTIME, 0, 42, g_etag);
    r = dec(GET, (sl_http_header_t[]){H("Range", "bytes=-1")}, 1);
    sl_static_content_range(&r, out, sizeof(out));
    assert_string_equal(out, "bytes 999-999/1000");
}

/* ---- fingerprinted names ---------------------------------------------------------------- */

static void test_fingerprinted(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int yes;
    } cases[] = {
        {"app.0123abcd.css", 1},
        {"app-0123abcdef.js", 1},
        {"main.3f2a1b9c.chunk.js", 1},
        {"3f2a1b9c4d.js", 1},
        {"app.0123ABCD.css", 1},
        {"vendor-a1b2c3d4e5f6a7b8c9d0.min.js", 1},
        {"static/js/app.0123abcd.js", 1},
        {"a-b-c-0123abcd-d.woff2", 1},
        {"app.0123abcd.css.map", 1},
        {"app.css", 0},
        {"app.0123abc.css", 0},     /* 7 */
        {"report-20240101.pdf", 0}, /* digits only: a date */
        {"deadbeef.js", 0},         /* letters only: a word */
        {"app.deadbeefcafe.js", 0},
        {"app.0123abcd", 0},     /* the hash is the extension */
        {"v0123abcd.css", 0},    /* not a whole part */
        {"app_0123abcd.css", 0}, /* '_' is not a separator */
        {"app.0123abcg.css", 0},
        {"app.0123abcd.", 0}, /* empty extension */
        {"0123abcd", 0},
        {"v/0123abcd/app.js", 0}, /* directories are not looked at */
        {"0123abcd/app.js", 0},
        {"", 0},
        {".0123abcd", 0},
        {".0123abcd.js", 1},
    };
    for (unsigned i = 0; i < N(cases); i++) {
        int r = sl_static_fingerprinted(cases[i].name, strlen(cases[i].name),
                                        SL_STATIC_FINGERPRINT_MIN_HEX);
        if (r != cases[i].yes)
            print_error("\"%s\" -> %d\n", cases[i].name, r);
        assert_int_equal(r, cases[i].yes);
    }
    /* min_hex */
    assert_true(sl_static_fingerprinted("a.1b.css", 8, 2));
    assert_false(sl_static_fingerprinted("a.1b.css", 8, 3));
    assert_true(sl_static_fingerprinted("a.0123abcdef01.css", 18, 12));
    assert_false(sl_static_fingerprinted("a.0123abcdef0.css", 17, 14));
    assert_false(sl_static_fingerprinted("app.0123abcd.css", 16, 0)); /* disabled */
    assert_false(sl_static_fingerprinted(NULL, 0, 8));
    /* never read past n */
    assert_false(sl_static_fingerprinted("app.0123abcd.css", 12, 8));
    assert_string_equal(SL_STATIC_CC_IMMUTABLE, "public, max-age=31536000, immutable");
}

int main(void)
{
    alarm(60); /* a blocking open (FIFO) must fail the run, not hang it */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve_ok),
        cmocka_unit_test(test_resolve_errors),
        cmocka_unit_test(test_resolve_dotfiles_flag),
        cmocka_unit_test(test_resolve_index),
        cmocka_unit_test(test_resolve_bounds),
        cmocka_unit_test(test_status),
        cmocka_unit_test_setup_teardown(test_open_openat2, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_open_walk, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_open_misc, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_open_fallback, tree_setup, tree_teardown),
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_compressible),
        cmocka_unit_test(test_siblings),
        cmocka_unit_test(test_etag),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_range_parse),
        cmocka_unit_test(test_decide_if_none_match),
        cmocka_unit_test(test_decide_if_modified_since),
        cmocka_unit_test(test_decide_if_match),
        cmocka_unit_test(test_decide_range),
        cmocka_unit_test(test_decide_if_range),
        cmocka_unit_test(test_content_range),
        cmocka_unit_test(test_fingerprinted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
