/* encoder.c - gzip and brotli encoders (see encoder.h). */
#include "encoder.h"

#include <brotli/encode.h>
#include <stdlib.h>
#include <zlib.h>

#include "compress.h"

#define BROTLI_LGWIN 18 /* 256 KiB window: web assets rarely gain from more */

struct sl_encoder {
    int coding;
    int done;
    z_stream z;
    BrotliEncoderState *br;
};

size_t sl_encode_bound(int coding, size_t n)
{
    if (coding == SL_COMPRESS_GZIP)
        return (size_t)compressBound((uLong)n) + 18 + 64; /* + gzip header and trailer */
    if (coding == SL_COMPRESS_BR)
        return BrotliEncoderMaxCompressedSize(n);
    return 0;
}

size_t sl_encode_all(int coding, const void *in, size_t n, void *out, size_t cap)
{
    if (coding == SL_COMPRESS_BR) {
        size_t len = cap;
        if (!BrotliEncoderCompress(SL_BROTLI_QUALITY, BROTLI_LGWIN, BROTLI_MODE_TEXT, n, in, &len,
                                   out))
            return 0;
        return len;
    }
    if (coding != SL_COMPRESS_GZIP || n > UINT32_MAX || cap > UINT32_MAX)
        return 0;
    z_stream z = {0};
    if (deflateInit2(&z, SL_GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return 0;
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    size_t len = (size_t)z.total_out;
    deflateEnd(&z);
    return rc == Z_STREAM_END ? len : 0;
}

sl_encoder_t *sl_encoder_new(int coding)
{
    sl_encoder_t *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->coding = coding;
    if (coding == SL_COMPRESS_GZIP) {
        if (deflateInit2(&e->z, SL_GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) ==
            Z_OK)
            return e;
    } else if (coding == SL_COMPRESS_BR) {
        e->br = BrotliEncoderCreateInstance(NULL, NULL, NULL);
        if (e->br && BrotliEncoderSetParameter(e->br, BROTLI_PARAM_QUALITY, SL_BROTLI_QUALITY) &&
            BrotliEncoderSetParameter(e->br, BROTLI_PARAM_LGWIN, BROTLI_LGWIN))
            return e;
        if (e->br)
            BrotliEncoderDestroyInstance(e->br);
    }
    free(e);
    return NULL;
}

void sl_encoder_free(sl_encoder_t *e)
{
    if (!e)
        return;
    if (e->coding == SL_COMPRESS_GZIP)
        deflateEnd(&e->z);
    else
        BrotliEncoderDestroyInstance(e->br);
    free(e);
}

int64_t sl_encoder_run(sl_encoder_t *e, const void *in, size_t n, size_t *used, void *out,
                       size_t cap, int mode)
{
    *used = 0;
    if (e->done)
        return 0;
    if (e->coding == SL_COMPRESS_BR) {
        size_t avail_in = n, avail_out = cap;
        const uint8_t *next_in = in;
        uint8_t *next_out = out;
        BrotliEncoderOperation op = mode == SL_ENC_FINISH  ? BROTLI_OPERATION_FINISH
                                    : mode == SL_ENC_FLUSH ? BROTLI_OPERATION_FLUSH
                                                           : BROTLI_OPERATION_PROCESS;
        if (!BrotliEncoderCompressStream(e->br, op, &avail_in, &next_in, &avail_out, &next_out,
                                         NULL))
            return -1;
        *used = n - avail_in;
        if (mode == SL_ENC_FINISH && BrotliEncoderIsFinished(e->br))
            e->done = 1;
        return (int64_t)(cap - avail_out);
    }
    uInt ni = n > UINT32_MAX ? UINT32_MAX : (uInt)n;
    uInt no = cap > UINT32_MAX ? UINT32_MAX : (uInt)cap;
    e->z.next_in = (Bytef *)(uintptr_t)in;
    e->z.avail_in = ni;
    e->z.next_out = out;
    e->z.avail_out = no;
    /* The mode applies once all the input is in (a piece past 4 GiB goes in parts). */
    int flush = ni != n ? Z_NO_FLUSH
                : mode == SL_ENC_FINISH ? Z_FINISH
                : mode == SL_ENC_FLUSH  ? Z_SYNC_FLUSH
                                        : Z_NO_FLUSH;
    int rc = deflate(&e->z, flush);
    if (rc == Z_STREAM_ERROR)
        return -1;
    if (rc == Z_STREAM_END)
        e->done = 1;
    *used = ni - e->z.avail_in;
    return (int64_t)(no - e->z.avail_out);
}

int sl_encoder_done(const sl_encoder_t *e)
{
    return e->done;
}
