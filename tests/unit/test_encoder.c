/* test_encoder.c - gzip and brotli encoders: whole-body and streaming output decodes back
 * to the input (with zlib's and brotli's own decoders), in any piece sizes and with tiny
 * output buffers; empty input; the bound holds; unknown codings fail cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <brotli/decode.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../../src/http/compress.h"
#include "../../src/http/encoder.h"

static size_t gunzip(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    z_stream z = {0};
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK); /* gzip wrapper only */
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int rc = inflate(&z, Z_FINISH);
    size_t len = z.total_out;
    inflateEnd(&z);
    assert_int_equal(rc, Z_STREAM_END);
    return len;
}

static size_t unbrotli(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    size_t len = cap;
    assert_int_equal(BrotliDecoderDecompress(n, in, &len, out), BROTLI_DECODER_RESULT_SUCCESS);
    return len;
}

static size_t decode(int coding, const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    return coding == SL_COMPRESS_GZIP ? gunzip(in, n, out, cap) : unbrotli(in, n, out, cap);
}

/* Text with repetition (compresses) and a pseudo-random tail (does not). */
static uint8_t *sample(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        if (i < n / 2) {
            p[i] = (uint8_t)"the quick brown fox jumps over the lazy dog. "[i % 45];
        } else {
            s = s * 1103515245u + 12345u;
            p[i] = (uint8_t)(s >> 16);
        }
    }
    return p;
}

static void test_whole(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 45, 1000, 65536, 300000};
    static const int codings[] = {SL_COMPRESS_GZIP, SL_COMPRESS_BR};
    for (size_t c = 0; c < 2; c++) {
        for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
            size_t n = sizes[k];
            uint8_t *in = sample(n);
            size_t cap = sl_encode_bound(codings[c], n);
            assert_true(cap > 0);
            uint8_t *out = malloc(cap), *back = malloc(n + 16);
            size_t len = sl_encode_all(codings[c], in, n, out, cap);
            assert_true(len > 0 && len <= cap);
            assert_int_equal(decode(codings[c], out, len, back, n + 16), n);
            assert_memory_equal(back, in, n);
            if (n == 65536) /* half of it repeats: it must shrink a lot */
                assert_true(len < n * 6 / 10);
            free(in);
            free(out);
            free(back);
        }
    }
}

static void test_whole_failures(void **state)
{
    (void)state;
    uint8_t in[100] = {0}, out[8];
    assert_int_equal(sl_encode_bound(SL_COMPRESS_IDENTITY, 10), 0);
    assert_int_equal(sl_encode_all(SL_COMPRESS_IDENTITY, in, sizeof(in), out, sizeof(out)), 0);
    assert_int_equal(sl_encode_all(7, in, sizeof(in), out, sizeof(out)), 0);
    /* too little room: 0, never a cut-off stream */
    assert_int_equal(sl_encode_all(SL_COMPRESS_GZIP, in, sizeof(in), out, sizeof(out)), 0);
    assert_null(sl_encoder_new(SL_COMPRESS_IDENTITY));
}

/* Stream n bytes in pieces of `piece` into output buffers of `ocap` bytes. */
static void stream_once(int coding, size_t n, size_t piece, size_t ocap)
{
    uint8_t *in = sample(n);
    size_t cap = sl_encode_bound(coding, n) + 1024, total = 0, off = 0;
    uint8_t *out = malloc(cap), *back = malloc(n + 16), *tmp = malloc(ocap);
    sl_encoder_t *e = sl_encoder_new(coding);
    assert_non_null(e);
    int guard = 0;
    while (!sl_encoder_done(e)) {
        size_t take = n - off < piece ? n - off : piece;
        int finish = off + take == n;
        size_t used = 0;
        int64_t got = sl_encoder_run(e, in + off, take, &used, tmp, ocap,
                                     finish ? SL_ENC_FINISH : SL_ENC_PROCESS);
        assert_true(got >= 0 && (size_t)got <= ocap);
        assert_true(used <= take);
        assert_true(total + (size_t)got <= cap);
        memcpy(out + total, tmp, (size_t)got);
        total += (size_t)got;
        off += used;
        assert_true(++guard < 10000000);
    }
    assert_int_equal(off, n);
    /* after done: nothing more */
    size_t used = 1;
    assert_int_equal(sl_encoder_run(e, NULL, 0, &used, tmp, ocap, SL_ENC_FINISH), 0);
    assert_int_equal(used, 0);
    assert_int_equal(decode(coding, out, total, back, n + 16), n);
    assert_memory_equal(back, in, n);
    sl_encoder_free(e);
    free(in);
    free(out);
    free(back);
    free(tmp);
}

static void test_stream(void **state)
{
    (void)state;
    static const int codings[] = {SL_COMPRESS_GZIP, SL_COMPRESS_BR};
    for (size_t c = 0; c < 2; c++) {
        stream_once(codings[c], 0, 1, 64);
        stream_once(codings[c], 1, 1, 1);
        stream_once(codings[c], 5000, 7, 3);       /* tiny pieces, tiny output buffer */
        stream_once(codings[c], 200000, 16384, 4096);
        stream_once(codings[c], 200000, 200000, 1 << 20);
    }
}

/* After a flush, everything fed so far can be decoded from the output so far: a streamed
 * answer (server-sent events) reaches the client piece by piece. */
static void flush_once(int coding)
{
    static const char *const pieces[] = {"data: one\n\n", "data: two\n\n", "data: three\n\n"};
    sl_encoder_t *e = sl_encoder_new(coding);
    assert_non_null(e);
    uint8_t out[4096], back[256];
    size_t total = 0, plain = 0;
    char want[256] = "";
    for (int i = 0; i < 3; i++) {
        size_t used = 0, n = strlen(pieces[i]);
        int64_t got = sl_encoder_run(e, pieces[i], n, &used, out + total, sizeof(out) - total,
                                     SL_ENC_FLUSH);
        assert_true(got > 0);
        assert_int_equal(used, n);
        total += (size_t)got;
        plain += n;
        strcat(want, pieces[i]);
        /* decode the prefix without the end of stream */
        size_t got_plain = 0;
        if (coding == SL_COMPRESS_GZIP) {
            z_stream z = {0};
            assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
            z.next_in = out;
            z.avail_in = (uInt)total;
            z.next_out = back;
            z.avail_out = sizeof(back);
            int rc = inflate(&z, Z_SYNC_FLUSH);
            assert_true(rc == Z_OK || rc == Z_BUF_ERROR);
            got_plain = z.total_out;
            inflateEnd(&z);
        } else {
            BrotliDecoderState *d = BrotliDecoderCreateInstance(NULL, NULL, NULL);
            size_t ai = total, ao = sizeof(back);
            const uint8_t *ni = out;
            uint8_t *no = back;
            BrotliDecoderResult rc = BrotliDecoderDecompressStream(d, &ai, &ni, &ao, &no, NULL);
            assert_int_equal(rc, BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT);
            got_plain = sizeof(back) - ao;
            BrotliDecoderDestroyInstance(d);
        }
        assert_int_equal(got_plain, plain);
        assert_memory_equal(back, want, plain);
    }
    size_t used = 0;
    while (!sl_encoder_done(e)) {
        int64_t got = sl_encoder_run(e, NULL, 0, &used, out + total, sizeof(out) - total,
                                     SL_ENC_FINISH);
        assert_true(got >= 0);
        total += (size_t)got;
    }
    assert_int_equal(decode(coding, out, total, back, sizeof(back)), plain);
    sl_encoder_free(e);
}

static void test_flush(void **state)
{
    (void)state;
    flush_once(SL_COMPRESS_GZIP);
    flush_once(SL_COMPRESS_BR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole),
        cmocka_unit_test(test_whole_failures),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_flush),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
