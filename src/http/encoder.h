/* encoder.h - gzip (zlib) and brotli (libbrotlienc) content encoders.
 * Owns: the codecs' state and their settings (levels chosen for a gateway: fast enough to
 * run per response, most of the saving of the slow levels). compress.h decides WHETHER and
 * WHICH coding; this module only turns bytes into coded bytes.
 * Two uses: sl_encode_all for a whole body at once (a static file read off the loop), and
 * the streaming sl_encoder_* for a body that arrives in pieces (a proxied answer). Pure
 * CPU work, any thread; no I/O. */
#ifndef SL_ENCODER_H
#define SL_ENCODER_H

#include <stddef.h>
#include <stdint.h>

/* Levels: gzip 5 (zlib's 6 costs ~15% more time for ~1% size on web text); brotli 5 (the
 * knee of its speed/size curve: 4 is much larger, 6+ much slower; nginx's brotli module
 * and Cloudflare's on-the-fly default sit at 4-5). Precompressed siblings should use
 * the maximum levels offline (gzip -9, brotli -q 11). */
#define SL_GZIP_LEVEL 5
#define SL_BROTLI_QUALITY 5

/* The most bytes coding `coding` (SL_COMPRESS_GZIP or SL_COMPRESS_BR) can produce for n
 * input bytes (an upper bound for sl_encode_all's out buffer); 0 for another coding. */
size_t sl_encode_bound(int coding, size_t n);

/* Code in[0..n) whole into out[0..cap). Returns the coded length, or 0 on failure (a
 * coding this module does not know, cap too small, out of memory). */
size_t sl_encode_all(int coding, const void *in, size_t n, void *out, size_t cap);

typedef struct sl_encoder sl_encoder_t;

/* A streaming encoder for coding (SL_COMPRESS_GZIP or SL_COMPRESS_BR); NULL when out of
 * memory or for another coding. Its state is large - about 256 KiB for gzip, and for
 * brotli about 1 MiB with the 256 KiB window (lgwin 18) used here rather than brotli's
 * 4 MiB default - so callers bound how many exist at once. */
sl_encoder_t *sl_encoder_new(int coding);
void sl_encoder_free(sl_encoder_t *e);

enum sl_encode_mode {
    SL_ENC_PROCESS = 0, /* take input; output comes when the codec has enough */
    SL_ENC_FLUSH,       /* and push out everything taken so far (a streamed answer's
                         * bytes must not wait for the next read: server-sent events) */
    SL_ENC_FINISH,      /* and end the stream (trailer) */
};

/* Feed in[0..n) with mode (enum sl_encode_mode; n may be 0) and collect coded output into
 * out[0..cap). *used gets how many input bytes were taken; returns how many output bytes
 * were written (possibly 0: the codec buffers). While the call fills out completely or
 * leaves input unused, call again with the rest of the input and the same mode; after
 * FINISH, until sl_encoder_done. Returns -1 on a codec error. */
int64_t sl_encoder_run(sl_encoder_t *e, const void *in, size_t n, size_t *used, void *out,
                       size_t cap, int mode);
/* 1 once every coded byte (the trailer included) has been returned after finish. */
int sl_encoder_done(const sl_encoder_t *e);

#endif
