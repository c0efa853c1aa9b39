/* inherit.h - listening sockets handed from a running sluice to the binary replacing it.
 * Owns: the SLUICE_INHERIT environment string, "FD:ADDR;FD:ADDR;..." (ADDR as the
 * configuration writes it, "127.0.0.1:8080" or "[::1]:8080"), its parsing and formatting,
 * and giving each inherited fd to the listener of the same address. Pure string work
 * plus close(); main thread only, at start-up. */
#ifndef SL_INHERIT_H
#define SL_INHERIT_H

#include <stddef.h>

#define SL_INHERIT_MAX 256 /* sockets handed over (workers x listen addresses + admin) */
#define SL_INHERIT_ADDR 64 /* as sl_addr_t.text */

typedef struct sl_inherit {
    int n;
    struct {
        int fd;
        int taken;
        char addr[SL_INHERIT_ADDR];
    } e[SL_INHERIT_MAX];
} sl_inherit_t;

/* Parse s (len bytes, no NUL needed) into *out. Entries are separated by ';' (an empty
 * entry, e.g. a trailing ';', is skipped); each is a decimal fd (0..1048575, no sign),
 * ':', and a non-empty address of at most 63 bytes without ';' or control bytes.
 * 0, or SL_EINVAL (out holds no entries) for anything else or more than SL_INHERIT_MAX. */
int sl_inherit_parse(const char *s, size_t len, sl_inherit_t *out);

/* An inherited fd for addr not yet taken (marked taken), or -1. */
int sl_inherit_take(sl_inherit_t *in, const char *addr);

/* Close every fd not taken (addresses the new configuration dropped). */
void sl_inherit_close_rest(sl_inherit_t *in);

/* Append "FD:ADDR;" to out (cap bytes, NUL-terminated) at *off. 0, or SL_EINVAL when it
 * does not fit or addr is not a valid address text (out unchanged). */
int sl_inherit_append(char *out, size_t cap, size_t *off, int fd, const char *addr);

#endif
