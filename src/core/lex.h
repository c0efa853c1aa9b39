/* lex.h - the byte-level helpers every HTTP field parser uses (RFC 9110 §5.6): case
 * folding, tchar, optional whitespace, tokens, trimming, and comparison with a lower-case
 * literal. Header-only and pure; any thread. */
#ifndef SL_LEX_H
#define SL_LEX_H

#include <stddef.h>
#include <string.h>

static inline unsigned char sl_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* tchar (RFC 9110 §5.6.2): a visible ASCII byte other than a delimiter. */
static inline int sl_is_tchar(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", c);
}

static inline int sl_is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static inline const char *sl_skip_ows(const char *p, const char *e)
{
    while (p < e && sl_is_ows((unsigned char)*p))
        p++;
    return p;
}

static inline const char *sl_skip_token(const char *p, const char *e)
{
    while (p < e && sl_is_tchar((unsigned char)*p))
        p++;
    return p;
}

/* Trim OWS on both sides of [*p, *e). */
static inline void sl_trim(const char **p, const char **e)
{
    *p = sl_skip_ows(*p, *e);
    while (*e > *p && sl_is_ows((unsigned char)(*e)[-1]))
        (*e)--;
}

/* a[0..n) equals the lower-case literal lit[0..litlen), ignoring a's case. */
static inline int sl_ieq_lit(const char *a, size_t n, const char *lit, size_t litlen)
{
    if (n != litlen)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (sl_lower((unsigned char)a[i]) != (unsigned char)lit[i])
            return 0;
    return 1;
}

#endif
