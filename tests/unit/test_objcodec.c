/* test_objcodec.c - the L2 byte form of cache objects: round trips, and every malformed
 * input (short, long, bad magic, bad version, too many tags) refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/cache/objcodec.h"

static sl_slice_t S(const char *s)
{
    return (sl_slice_t){s, strlen(s)};
}

/* Encode o into a fresh buffer (prefix + body); *n its length. */
static char *encode(const sl_objcodec_t *o, size_t *n)
{
    size_t pre = sl_objcodec_prefix_size(o);
    char *b = malloc(pre + o->body.len + 1);
    assert_non_null(b);
    assert_int_equal(sl_objcodec_encode_prefix(o, b, pre), pre);
    if (o->body.len)
        memcpy(b + pre, o->body.p, o->body.len);
    *n = pre + o->body.len;
    return b;
}

static void test_round_trip(void **state)
{
    (void)state;
    uint64_t meta[3] = {1, 2, 0xfffffffffull};
    sl_objcodec_t o = {.meta = meta, .meta_size = sizeof(meta)};
    o.vary = S("accept-encoding,accept-language");
    o.skey = S("accept-encoding:gzip\naccept-language\n");
    o.head = S("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
    o.body = (sl_slice_t){"a\0b\0c", 5};
    o.tags[0] = S("blog");
    o.tags[1] = S("");
    o.tags[2] = S("post-17");
    o.ntags = 3;
    size_t n;
    char *b = encode(&o, &n);
    sl_objcodec_t d;
    assert_int_equal(sl_objcodec_decode(b, n, &d), 0);
    assert_int_equal(d.meta_size, sizeof(meta));
    assert_memory_equal(d.meta, meta, sizeof(meta));
    assert_int_equal(d.vary.len, o.vary.len);
    assert_memory_equal(d.vary.p, o.vary.p, o.vary.len);
    assert_memory_equal(d.skey.p, o.skey.p, o.skey.len);
    assert_memory_equal(d.head.p, o.head.p, o.head.len);
    assert_int_equal(d.body.len, 5);
    assert_memory_equal(d.body.p, "a\0b\0c", 5);
    assert_int_equal(d.ntags, 3);
    assert_int_equal(d.tags[1].len, 0);
    assert_memory_equal(d.tags[2].p, "post-17", 7);

    /* every shorter or longer input is refused */
    for (size_t k = 0; k < n; k++)
        assert_int_equal(sl_objcodec_decode(b, k, &d), SL_EBADMSG);
    char *longer = malloc(n + 1);
    memcpy(longer, b, n);
    longer[n] = 'x';
    assert_int_equal(sl_objcodec_decode(longer, n + 1, &d), SL_EBADMSG);
    free(longer);

    /* magic and version */
    b[0] = 'X';
    assert_int_equal(sl_objcodec_decode(b, n, &d), SL_EBADMSG);
    b[0] = 'S';
    b[4] = 2;
    assert_int_equal(sl_objcodec_decode(b, n, &d), SL_EBADMSG);
    free(b);
}

static void test_empty_and_bounds(void **state)
{
    (void)state;
    sl_objcodec_t o = {0};
    size_t n;
    char *b = encode(&o, &n);
    assert_int_equal(n, SL_OBJCODEC_HDR);
    sl_objcodec_t d;
    assert_int_equal(sl_objcodec_decode(b, n, &d), 0);
    assert_int_equal(d.ntags, 0);
    assert_int_equal(d.body.len, 0);
    /* a tag count over the bound */
    b[24] = 17;
    assert_int_equal(sl_objcodec_decode(b, n, &d), SL_EBADMSG);
    free(b);
    o.ntags = SL_OBJCODEC_MAX_TAGS + 1;
    char small[64];
    assert_int_equal(sl_objcodec_encode_prefix(&o, small, sizeof(small)), 0);
    o.ntags = 0;
    o.head = S("HTTP/1.1 200 OK\r\n\r\n");
    assert_int_equal(sl_objcodec_encode_prefix(&o, small, 20), 0); /* cap too small */
    /* a length that points past the end */
    char hdr[SL_OBJCODEC_HDR];
    sl_objcodec_t e = {0};
    assert_int_equal(sl_objcodec_encode_prefix(&e, hdr, sizeof(hdr)), SL_OBJCODEC_HDR);
    hdr[28] = (char)0xff; /* body length 255 with no body bytes */
    assert_int_equal(sl_objcodec_decode(hdr, sizeof(hdr), &d), SL_EBADMSG);
    hdr[28] = 0;
    hdr[31] = (char)0xff; /* 4 GiB body: the sum cannot wrap */
    assert_int_equal(sl_objcodec_decode(hdr, sizeof(hdr), &d), SL_EBADMSG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_empty_and_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
