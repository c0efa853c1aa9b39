/* fuzz_static_path.c - libFuzzer target for static-file path resolution (sl_static_resolve)
 * and the name rules that take a path (Content-Type, fingerprint). The input is the
 * request path after the route prefix; the first byte, when the input is long enough,
 * picks the flags and the out buffer's size. Invariants: a result is NUL-terminated,
 * within the bound, relative, without empty, "." or ".." segments, without NUL, control
 * bytes or backslash, without dot-files unless allowed; resolving the result again,
 * fully percent-encoded, gives the same result; a larger buffer never changes a result;
 * the codes are the documented ones. The input is copied to an exact-size buffer so ASan
 * catches any read beyond it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/http/static.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

/* index: appended names are the operator's and may start with '.'. */
static void check_result(const char *out, int rc, size_t cap, unsigned flags, const char *index)
{
    check(rc > 0 && (size_t)rc < cap && out[rc] == '\0' && strlen(out) == (size_t)rc);
    check(out[0] != '/' && out[rc - 1] != '/');
    const char *s = out;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        check(len > 0 && len <= SL_STATIC_NAME_MAX);
        check(!(len == 1 && s[0] == '.') && !(len == 2 && s[0] == '.' && s[1] == '.'));
        int is_index = index && !s[len] && strlen(index) == len && memcmp(s, index, len) == 0;
        if (!(flags & SL_STATIC_PATH_DOTFILES) && s[0] == '.' && !is_index)
            check(len == 11 && memcmp(s, ".well-known", 11) == 0);
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)s[i];
            check(c >= 0x20 && c != 0x7f && c != '\\');
        }
        s += len;
        if (*s == '/')
            s++;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const INDEX[4] = {"index.html", NULL, "default.htm", ".idx"};
    unsigned sel = size > 1 ? data[0] : 0;
    const uint8_t *in = size > 1 ? data + 1 : data;
    size_t n = size > 1 ? size - 1 : size;
    char *p = malloc(n ? n : 1);
    if (!p)
        return 0;
    memcpy(p, in, n);
    unsigned flags = sel & 1 ? SL_STATIC_PATH_DOTFILES : 0;
    const char *index = INDEX[(sel >> 1) & 3];
    size_t cap = (sel & 0x80) ? 1 + (sel & 0x38) * 4 : SL_STATIC_PATH_MAX;

    static char out[SL_STATIC_PATH_MAX], again[SL_STATIC_PATH_MAX], big[SL_STATIC_PATH_MAX * 2];
    int rc = sl_static_resolve(p, n, index, flags, out, cap);
    check(rc > 0 || rc == SL_EBADMSG || rc == SL_STATIC_ENOTFOUND || rc == SL_ETOOBIG);
    check(sl_static_status(rc) == (rc > 0             ? 0
                                   : rc == SL_EBADMSG ? 400
                                   : rc == SL_ETOOBIG ? 414
                                                      : 404));
    /* a larger buffer: the same answer, except that 414 may become a result */
    int rb = sl_static_resolve(p, n, index, flags, big, sizeof(big));
    if (rc == SL_ETOOBIG)
        check(rb > 0 || rb == SL_ETOOBIG);
    else
        check(rb == rc);
    if (rc > 0) {
        check_result(out, rc, cap, flags, index);
        check(memcmp(out, big, (size_t)rc + 1) == 0);
        /* the exact bound */
        check(sl_static_resolve(p, n, index, flags, again, (size_t)rc + 1) == rc);
        check(sl_static_resolve(p, n, index, flags, again, (size_t)rc) == SL_ETOOBIG);
        /* re-encoded, every byte but '/' as %XX: the same file */
        static const char HEX[] = "0123456789ABCDEF";
        size_t k = 0;
        char *enc = malloc(1 + 3 * (size_t)rc);
        if (enc) {
            enc[k++] = '/';
            for (int i = 0; i < rc; i++) {
                unsigned char c = (unsigned char)out[i];
                if (c == '/') {
                    enc[k++] = '/';
                } else {
                    enc[k++] = '%';
                    enc[k++] = HEX[c >> 4];
                    enc[k++] = HEX[c & 15];
                }
            }
            unsigned f2 = flags | (index && index[0] == '.' ? SL_STATIC_PATH_DOTFILES : 0);
            int r2 = sl_static_resolve(enc, k, index, f2, again, sizeof(again));
            check(r2 == rc && memcmp(again, out, (size_t)rc + 1) == 0);
            free(enc);
        }
        const char *t = sl_static_content_type(out, (size_t)rc);
        check(t != NULL && strlen(t) > 0);
        int f = sl_static_fingerprinted(out, (size_t)rc, SL_STATIC_FINGERPRINT_MIN_HEX);
        check(f == 0 || f == 1);
        char sib[SL_STATIC_PATH_MAX + 4];
        check(sl_static_sibling(out, (size_t)rc, ".gz", sib, sizeof(sib)) == rc + 3);
    }
    /* the name rules on raw bytes */
    const char *t = sl_static_content_type(p, n);
    check(t != NULL);
    for (unsigned m = 0; m < 20; m += 7) {
        int f = sl_static_fingerprinted(p, n, m);
        check(f == 0 || f == 1);
        if (m == 0)
            check(f == 0);
    }
    free(p);
    return 0;
}
