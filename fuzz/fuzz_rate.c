/* fuzz_rate.c - libFuzzer target for rate strings ("100/minute"): sl_parse_rate must
 * accept exactly <1..10^9>/<second|minute|hour|day> and never read past the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes, so ASan catches any read beyond. */
    char *s = malloc(size ? size : 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    uint32_t n = 0;
    uint64_t ms = 0;
    if (sl_parse_rate(s, size, &n, &ms) == 0) {
        if (n < 1 || n > 1000000000)
            abort();
        if (ms != 1000 && ms != 60000 && ms != 3600000 && ms != 86400000)
            abort();
        const char *slash = memchr(s, '/', size);
        if (!slash || slash == s)
            abort();
        for (const char *p = s; p < slash; p++)
            if (*p < '0' || *p > '9')
                abort();
    }
    free(s);
    return 0;
}
