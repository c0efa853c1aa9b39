/* fuzz_objcodec.c - libFuzzer target for the L2 object decoder: sl_objcodec_decode must
 * accept only inputs whose lengths add up exactly, never read outside them, and whatever
 * it accepts must encode back to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/cache/objcodec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size ? size : 1); /* exactly size bytes: ASan sees any overread */
    if (!s)
        return 0;
    memcpy(s, data, size);
    sl_objcodec_t o;
    if (sl_objcodec_decode(s, size, &o) == 0) {
        size_t pre = sl_objcodec_prefix_size(&o);
        if (pre + o.body.len != size)
            abort();
        char *out = malloc(pre ? pre : 1);
        if (!out || sl_objcodec_encode_prefix(&o, out, pre) != pre || memcmp(out, s, pre) != 0)
            abort();
        if (o.body.len && memcmp(o.body.p, s + pre, o.body.len) != 0)
            abort();
        free(out);
    }
    free(s);
    return 0;
}
