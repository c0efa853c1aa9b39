/* inherit.c - the SLUICE_INHERIT string; see inherit.h. */
#include "inherit.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

static int addr_ok(const char *a, size_t n)
{
    if (n == 0 || n >= SL_INHERIT_ADDR)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (a[i] == ';' || (unsigned char)a[i] < 0x21 || a[i] == 0x7f)
            return 0;
    return 1;
}

int sl_inherit_parse(const char *s, size_t len, sl_inherit_t *out)
{
    out->n = 0;
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && s[end] != ';')
            end++;
        if (end > i) {
            size_t p = i;
            long fd = 0;
            while (p < end && s[p] >= '0' && s[p] <= '9' && p - i < 8)
                fd = fd * 10 + (s[p++] - '0');
            if (p == i || p >= end || s[p] != ':' || fd > 1048575 || out->n == SL_INHERIT_MAX ||
                !addr_ok(s + p + 1, end - p - 1)) {
                out->n = 0;
                return SL_EINVAL;
            }
            out->e[out->n].fd = (int)fd;
            out->e[out->n].taken = 0;
            memcpy(out->e[out->n].addr, s + p + 1, end - p - 1);
            out->e[out->n].addr[end - p - 1] = 0;
            out->n++;
        }
        i = end + 1;
    }
    return 0;
}

int sl_inherit_take(sl_inherit_t *in, const char *addr)
{
    for (int i = 0; i < in->n; i++)
        if (!in->e[i].taken && strcmp(in->e[i].addr, addr) == 0) {
            in->e[i].taken = 1;
            return in->e[i].fd;
        }
    return -1;
}

void sl_inherit_close_rest(sl_inherit_t *in)
{
    for (int i = 0; i < in->n; i++)
        if (!in->e[i].taken) {
            close(in->e[i].fd);
            in->e[i].taken = 1;
        }
}

int sl_inherit_append(char *out, size_t cap, size_t *off, int fd, const char *addr)
{
    if (fd < 0 || fd > 1048575 || !addr_ok(addr, strlen(addr)) || *off >= cap)
        return SL_EINVAL;
    int w = snprintf(out + *off, cap - *off, "%d:%s;", fd, addr);
    if (w < 0 || (size_t)w >= cap - *off) {
        out[*off] = 0;
        return SL_EINVAL;
    }
    *off += (size_t)w;
    return 0;
}
