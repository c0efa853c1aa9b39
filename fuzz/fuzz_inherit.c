/* fuzz_inherit.c - libFuzzer target for the SLUICE_INHERIT string a binary upgrade hands
 * the new process: sl_inherit_parse must never read past the input, and what it accepts
 * must format back (sl_inherit_append) to a string that parses to the same entries. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/core/common.h"
#include "../src/core/inherit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size ? size : 1); /* exactly size bytes: ASan sees any overread */
    if (!s)
        return 0;
    memcpy(s, data, size);
    static sl_inherit_t in, again;
    if (sl_inherit_parse(s, size, &in) == 0) {
        size_t cap = (size_t)in.n * (SL_INHERIT_ADDR + 16) + 1, off = 0;
        char *out = malloc(cap);
        if (!out)
            abort();
        out[0] = 0;
        for (int i = 0; i < in.n; i++)
            if (sl_inherit_append(out, cap, &off, in.e[i].fd, in.e[i].addr) != 0)
                abort();
        if (sl_inherit_parse(out, off, &again) != 0 || again.n != in.n)
            abort();
        for (int i = 0; i < in.n; i++)
            if (again.e[i].fd != in.e[i].fd || strcmp(again.e[i].addr, in.e[i].addr) != 0)
                abort();
        free(out);
    } else if (in.n != 0) {
        abort();
    }
    free(s);
    return 0;
}
