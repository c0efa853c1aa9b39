/* fuzz_l2_msg.c - libFuzzer target for the cache's purge messages (cache/cache_redis.c), the
 * one input another machine sends this process through Redis: sl_l2_parse_msg must reject
 * anything malformed and never read past the message; what it accepts must re-format to the
 * very same bytes (one spelling per message) and parse again to the same fields. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/cache/cache_redis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes, so ASan catches any read beyond. */
    char *m = malloc(size ? size : 1);
    if (!m)
        return 0;
    memcpy(m, data, size);
    uint64_t sender = 0;
    int kind = -1;
    const char *s = NULL;
    size_t n = 0;
    int rc = sl_l2_parse_msg(m, size, &sender, &kind, &s, &n);
    check(rc == 0 || rc == SL_EBADMSG);
    if (rc == 0) {
        check(kind >= SL_L2_PURGE_KEY && kind <= SL_L2_PURGE_TAG);
        check(s >= m && n <= size && s + n == m + size);
        char *out = malloc(size);
        check(out != NULL);
        check(sl_l2_format_msg(sender, kind, s, n, out, size) == size);
        check(memcmp(out, m, size) == 0);
        check(sl_l2_format_msg(sender, kind, s, n, out, size - 1) == 0);
        uint64_t sender2;
        int kind2;
        const char *s2;
        size_t n2;
        check(sl_l2_parse_msg(out, size, &sender2, &kind2, &s2, &n2) == 0);
        check(sender2 == sender && kind2 == kind && n2 == n && s2 == out + (s - m));
        free(out);
    } else if (size > 0) {
        /* rejected: then as a payload, with a kind and sender taken from it, it formats
         * into a message that parses back to exactly these bytes */
        size_t cap = size + 64;
        char *out = malloc(cap);
        check(out != NULL);
        int k = data[0] % 3;
        uint64_t snd = 0;
        memcpy(&snd, data, size < 8 ? size : 8);
        size_t len = sl_l2_format_msg(snd, k, m, size, out, cap);
        check(len > size);
        char *exact = malloc(len);
        check(exact != NULL);
        memcpy(exact, out, len);
        check(sl_l2_parse_msg(exact, len, &sender, &kind, &s, &n) == 0);
        check(sender == snd && kind == k && n == size && memcmp(s, m, size) == 0);
        free(exact);
        free(out);
    }
    free(m);
    return 0;
}
