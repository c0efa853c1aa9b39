/* test_compress.c - the compression decisions: the Accept-Encoding grammar (names, the
 * qvalue grammar to the last digit, parameters, whitespace, empty elements, duplicates,
 * several lines, huge inputs), the effective weights, the choice among available codings
 * with its ties and refusals, which responses may be compressed, Vary, the cache-variant
 * token, and the ETag of a compressed representation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../../src/http/compress.h"

#define ID SL_COMPRESS_IDENTITY
#define GZ SL_COMPRESS_GZIP
#define BR SL_COMPRESS_BR
#define NA SL_COMPRESS_NOT_ACCEPTABLE
#define STAR SL_COMPRESS_STAR
#define ALL SL_COMPRESS_HAVE_ALL
#define HGZ SL_COMPRESS_HAVE_GZIP
#define HBR SL_COMPRESS_HAVE_BR
#define UNLISTED (-1)

static sl_http_header_t H(const char *name, const char *value)
{
    sl_http_header_t h;
    memset(&h, 0, sizeof(h));
    h.name = name;
    h.name_len = (uint16_t)strlen(name);
    h.value = value;
    h.value_len = value ? (uint32_t)strlen(value) : 0;
    return h;
}

#define N(a) ((unsigned)SL_ARRAY_LEN(a))

/* Parse s as one field line into a fresh struct, from an exact-size heap copy so that
 * ASan sees any read past the end. */
static sl_compress_accept_t ae_ret(const char *s, int *ret)
{
    sl_compress_accept_t a;
    memset(&a, 0, sizeof(a));
    size_t n = strlen(s);
    char *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, s, n);
    int r = sl_compress_accept_parse(copy, n, &a);
    free(copy);
    if (ret)
        *ret = r;
    return a;
}

static sl_compress_accept_t ae(const char *s)
{
    return ae_ret(s, NULL);
}

/* The recorded q of index i in the parse of s, or UNLISTED. */
static int q_of(const char *s, int i)
{
    sl_compress_accept_t a = ae(s);
    return (a.listed & (1u << i)) ? (int)a.q[i] : UNLISTED;
}

/* The choice for an Accept-Encoding line s (NULL: no field at all). */
static int choose(const char *s, unsigned avail)
{
    sl_compress_accept_t a;
    if (s)
        a = ae(s);
    else
        memset(&a, 0, sizeof(a));
    return sl_compress_choose(&a, avail);
}

/* ---- Accept-Encoding: names ------------------------------------------------------- */

static void test_accept_names(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int index;
    } cases[] = {
        {"gzip", GZ}, {"GZIP", GZ}, {"GzIp", GZ},     {"x-gzip", GZ},   {"X-GZIP", GZ}, {"br", BR},
        {"BR", BR},   {"Br", BR},   {"identity", ID}, {"IDENTITY", ID}, {"*", STAR},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        int r;
        sl_compress_accept_t a = ae_ret(cases[i].s, &r);
        assert_int_equal(r, 1);
        assert_int_equal(a.present, 1);
        assert_int_equal(a.listed, 1u << cases[i].index);
        assert_int_equal(a.q[cases[i].index], 1000);
        assert_int_equal(a.ignored, 0);
    }
    /* valid codings sluice cannot produce: counted, not recorded */
    static const char *const others[] = {"deflate", "compress", "zstd", "x-compress",
                                         "gzip2",   "brotli",   "gz",   "identity2"};
    for (size_t i = 0; i < SL_ARRAY_LEN(others); i++) {
        int r;
        sl_compress_accept_t a = ae_ret(others[i], &r);
        assert_int_equal(r, 1);
        assert_int_equal(a.listed, 0);
        assert_int_equal(a.ignored, 0);
    }
    /* not tokens: invalid, skipped */
    static const char *const bad[] = {"g zip", "gzip/1", "\"gzip\"", "gzip=1",   "(gzip)",
                                      "gz@p",  "=gzip",  "gzip\x01", "gzip\x7f", "g\xc3\xa9"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        int r;
        sl_compress_accept_t a = ae_ret(bad[i], &r);
        assert_int_equal(r, 0);
        assert_int_equal(a.listed, 0);
        assert_int_equal(a.ignored, 1);
        assert_int_equal(a.present, 1);
    }
    /* "x-gzip" and "gzip" are one coding */
    assert_int_equal(q_of("x-gzip;q=0.4", GZ), 400);
    /* an empty field is present and lists nothing */
    int r;
    sl_compress_accept_t a = ae_ret("", &r);
    assert_int_equal(r, 0);
    assert_int_equal(a.present, 1);
    assert_int_equal(a.listed, 0);
    memset(&a, 0, sizeof(a));
    assert_int_equal(sl_compress_accept_parse(NULL, 0, &a), 0);
    assert_int_equal(a.present, 1);
}

/* ---- Accept-Encoding: the qvalue grammar (RFC 9110 §12.4.2) ----------------------- */

static void test_accept_qvalues(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int q; /* UNLISTED: the element is invalid */
    } cases[] = {
        {"gzip;q=0", 0},
        {"gzip;q=0.", 0},
        {"gzip;q=0.0", 0},
        {"gzip;q=0.000", 0},
        {"gzip;q=0.001", 1},
        {"gzip;q=0.01", 10},
        {"gzip;q=0.1", 100},
        {"gzip;q=0.5", 500},
        {"gzip;q=0.55", 550},
        {"gzip;q=0.555", 555},
        {"gzip;q=0.999", 999},
        {"gzip;q=1", 1000},
        {"gzip;q=1.", 1000},
        {"gzip;q=1.0", 1000},
        {"gzip;q=1.00", 1000},
        {"gzip;q=1.000", 1000},
        {"gzip;Q=0.5", 500}, /* the parameter name is case-insensitive */
        /* invalid: more than three decimals, above 1, other spellings */
        {"gzip;q=1.0001", UNLISTED},
        {"gzip;q=0.0001", UNLISTED},
        {"gzip;q=0.5000", UNLISTED},
        {"gzip;q=0.1234", UNLISTED},
        {"gzip;q=1.001", UNLISTED},
        {"gzip;q=1.1", UNLISTED},
        {"gzip;q=1.5", UNLISTED},
        {"gzip;q=2", UNLISTED},
        {"gzip;q=10", UNLISTED},
        {"gzip;q=01", UNLISTED},
        {"gzip;q=00", UNLISTED},
        {"gzip;q=.5", UNLISTED},
        {"gzip;q=-0", UNLISTED},
        {"gzip;q=+1", UNLISTED},
        {"gzip;q=1e0", UNLISTED},
        {"gzip;q=0x1", UNLISTED},
        {"gzip;q=0.5x", UNLISTED},
        {"gzip;q=0..5", UNLISTED},
        {"gzip;q=0.5.", UNLISTED},
        {"gzip;q=", UNLISTED},
        {"gzip;q", UNLISTED},
        {"gzip;q=\"0.5\"", UNLISTED}, /* a qvalue is never quoted */
        {"gzip;q = 0.5", UNLISTED},   /* no whitespace around '=' (§5.6.6) */
        {"gzip;q= 0.5", UNLISTED},
        {"gzip;q =0.5", UNLISTED},
        {"gzip;q=0.5;q=0.5", UNLISTED}, /* a second weight */
        {"gzip;q=1;Q=0", UNLISTED},
        {"gzip;qq=0.5", 1000}, /* not "q": an extension parameter */
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        int r;
        sl_compress_accept_t a = ae_ret(cases[i].s, &r);
        int got = (a.listed & (1u << GZ)) ? (int)a.q[GZ] : UNLISTED;
        if (got != cases[i].q)
            fail_msg("\"%s\": q %d, expected %d", cases[i].s, got, cases[i].q);
        assert_int_equal(r, cases[i].q == UNLISTED ? 0 : 1);
        assert_int_equal(a.ignored, cases[i].q == UNLISTED ? 1 : 0);
    }
    /* an invalid element leaves the others alone */
    sl_compress_accept_t a = ae("br;q=0.7, gzip;q=1.0001, identity;q=0.2");
    assert_int_equal(a.listed, (1u << BR) | (1u << ID));
    assert_int_equal(a.q[BR], 700);
    assert_int_equal(a.q[ID], 200);
    assert_int_equal(a.ignored, 1);
    /* the wildcard and identity take weights the same way */
    assert_int_equal(q_of("*;q=0", STAR), 0);
    assert_int_equal(q_of("*;q=0.25", STAR), 250);
    assert_int_equal(q_of("identity;q=0", ID), 0);
    assert_int_equal(q_of("identity;q=2", ID), UNLISTED);
}

/* ---- Accept-Encoding: whitespace, empty elements, parameters ---------------------- */

static void test_accept_syntax(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int q;
    } cases[] = {
        {" gzip ; q=0.8 ", 800},
        {"\tgzip\t;\tq=0.8\t", 800},
        {"gzip;q=0.8", 800},
        {"gzip ;q=0.8", 800},
        {"gzip; q=0.8", 800},
        {",,gzip;q=0.8,,", 800},
        {" , gzip;q=0.8 , ", 800},
        {"gzip;", 1000},      /* an empty parameter (§5.6.6 allows it) */
        {"gzip;;q=0.3", 300}, /* ... in the middle */
        {"gzip; ;q=0.3", 300},
        {"gzip;q=0.3;", 300}, /* ... at the end */
        {"gzip;q=0.3 ; ", 300},
        {"gzip;q=0.5;x=y", 500}, /* extension parameters are ignored */
        {"gzip;x=y;q=0.5", 500}, /* the weight may come after them */
        {"gzip;x=y;z=w;q=0.25;v=1", 250},
        {"gzip;x=\"a b\";q=0.6", 600},      /* a quoted value */
        {"gzip;x=\"a,b;q=0\";q=0.7", 700},  /* commas and ';' inside quotes */
        {"gzip;x=\"a\\\"b,c\";q=0.4", 400}, /* an escaped quote */
        {"gzip;x=\"\";q=0.4", 400},         /* an empty quoted value */
        {"gzip q=0.5", UNLISTED},           /* no ';' */
        {"gzip;q=0.5 x", UNLISTED},         /* junk after the weight */
        {"gzip;q=0.5 ;x", UNLISTED},        /* a parameter without '=' */
        {"gzip;x", UNLISTED},
        {"gzip;x=", UNLISTED}, /* a parameter without a value */
        {"gzip;=1", UNLISTED}, /* ... without a name */
        {"gzip;x=\"unterminated", UNLISTED},
        {"gzip;x=\"a\"b;q=0.5", UNLISTED}, /* junk after a quoted value */
        {"gzip;x=a b", UNLISTED},
        {"gzip ; ; q=0.9 ; ", 900},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        int got = q_of(cases[i].s, GZ);
        if (got != cases[i].q)
            fail_msg("\"%s\": q %d, expected %d", cases[i].s, got, cases[i].q);
    }
    /* lists */
    int r;
    sl_compress_accept_t a = ae_ret("gzip, deflate, br", &r);
    assert_int_equal(r, 3);
    assert_int_equal(a.listed, (1u << GZ) | (1u << BR));
    a = ae_ret(", , ,", &r);
    assert_int_equal(r, 0);
    assert_int_equal(a.listed, 0);
    assert_int_equal(a.ignored, 0);
    a = ae_ret("gzip,br", &r);
    assert_int_equal(r, 2);
    assert_int_equal(a.listed, (1u << GZ) | (1u << BR));
    /* an unterminated quote swallows the rest of the line: br is not listed */
    a = ae_ret("gzip;x=\"a, br", &r);
    assert_int_equal(r, 0);
    assert_int_equal(a.listed, 0);
    assert_int_equal(a.ignored, 1);
    /* a comma inside a closed quote does not split; the next element is separate */
    a = ae_ret("gzip;x=\"a, br\", identity;q=0", &r);
    assert_int_equal(r, 2);
    assert_int_equal(a.listed, (1u << GZ) | (1u << ID));
    assert_int_equal(a.q[ID], 0);
    /* never read past n: the same bytes, shorter lengths */
    const char *s = "gzip;q=0.5, br";
    memset(&a, 0, sizeof(a));
    sl_compress_accept_parse(s, 4, &a);
    assert_int_equal(a.listed, 1u << GZ);
    assert_int_equal(a.q[GZ], 1000);
    memset(&a, 0, sizeof(a));
    sl_compress_accept_parse(s, 6, &a); /* "gzip;q" */
    assert_int_equal(a.listed, 0);
    memset(&a, 0, sizeof(a));
    sl_compress_accept_parse(s, 9, &a); /* "gzip;q=0." */
    assert_int_equal(a.q[GZ], 0);
    memset(&a, 0, sizeof(a));
    sl_compress_accept_parse(s, 12, &a); /* "gzip;q=0.5, " */
    assert_int_equal(a.listed, 1u << GZ);
}

/* ---- Accept-Encoding: duplicates and several lines -------------------------------- */

static void test_accept_duplicates(void **state)
{
    (void)state;
    /* a coding listed twice keeps its lowest weight, whatever the order */
    assert_int_equal(q_of("gzip;q=0.1, gzip;q=0.9", GZ), 100);
    assert_int_equal(q_of("gzip;q=0.9, gzip;q=0.1", GZ), 100);
    assert_int_equal(q_of("gzip, gzip;q=0", GZ), 0);
    assert_int_equal(q_of("gzip;q=0, gzip", GZ), 0);
    assert_int_equal(q_of("gzip, x-gzip;q=0.3", GZ), 300); /* the same coding */
    assert_int_equal(q_of("*;q=0.5, *;q=0.2", STAR), 200);
    assert_int_equal(q_of("identity, identity;q=0", ID), 0);
    assert_int_equal(q_of("gzip;q=0.9, gzip;q=bad", GZ), 900); /* an invalid one is skipped */
    assert_int_equal(q_of("br, br, br, br;q=0.004, br", BR), 4);

    /* several header lines combine, as one list */
    sl_http_header_t h[] = {H("Accept-Encoding", "gzip;q=0.2"), H("Host", "x"),
                            H("accept-encoding", "br"), H("ACCEPT-ENCODING", ""),
                            H("Accept-Encodings", "identity;q=0")};
    sl_compress_accept_t a;
    sl_compress_accept_from(h, N(h), &a);
    assert_int_equal(a.present, 1);
    assert_int_equal(a.listed, (1u << GZ) | (1u << BR));
    assert_int_equal(a.q[GZ], 200);
    assert_int_equal(a.q[BR], 1000);
    assert_int_equal(sl_compress_choose(&a, ALL), BR);
    assert_int_equal(sl_compress_choose(&a, HGZ), GZ);

    sl_http_header_t dup[] = {H("Accept-Encoding", "gzip;q=0.9"), H("Accept-Encoding", "gzip;q=0")};
    sl_compress_accept_from(dup, N(dup), &a);
    assert_int_equal(a.q[GZ], 0);
    assert_int_equal(sl_compress_choose(&a, ALL), ID);
    sl_http_header_t rev[] = {dup[1], dup[0]};
    sl_compress_accept_t b;
    sl_compress_accept_from(rev, N(rev), &b);
    assert_int_equal(memcmp(&a, &b, sizeof(a)), 0);

    /* from_headers resets its output; no field means not present */
    sl_http_header_t none[] = {H("Accept", "text/html")};
    memset(&a, 0xff, sizeof(a));
    sl_compress_accept_from(none, N(none), &a);
    assert_int_equal(a.present, 0);
    assert_int_equal(a.listed, 0);
    sl_compress_accept_from(NULL, 0, &a);
    assert_int_equal(a.present, 0);
    /* an empty line is a field: present */
    sl_http_header_t empty[] = {H("Accept-Encoding", "")};
    sl_compress_accept_from(empty, N(empty), &a);
    assert_int_equal(a.present, 1);
    sl_http_header_t nullv[] = {H("Accept-Encoding", NULL)};
    sl_compress_accept_from(nullv, N(nullv), &a);
    assert_int_equal(a.present, 1);
    assert_int_equal(a.listed, 0);
}

/* ---- Accept-Encoding: many elements, huge inputs ---------------------------------- */

static void test_accept_long(void **state)
{
    (void)state;
    /* 10 000 elements */
    size_t cap = 200000, k = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    for (int i = 0; i < 10000; i++) {
        memcpy(s + k, "deflate;q=0.9, ", 15);
        k += 15;
    }
    memcpy(s + k, "br;q=0.5", 8);
    k += 8;
    sl_compress_accept_t a;
    memset(&a, 0, sizeof(a));
    assert_int_equal(sl_compress_accept_parse(s, k, &a), 10001);
    assert_int_equal(a.listed, 1u << BR);
    assert_int_equal(a.q[BR], 500);

    /* 100 000 duplicates: still the lowest */
    free(s);
    cap = 1300000;
    s = malloc(cap);
    assert_non_null(s);
    k = 0;
    for (int i = 0; i < 100000; i++) {
        memcpy(s + k, "gzip;q=0.9,", 11);
        k += 11;
    }
    memcpy(s + k, "gzip;q=0.1", 10);
    k += 10;
    memset(&a, 0, sizeof(a));
    assert_int_equal(sl_compress_accept_parse(s, k, &a), 100001);
    assert_int_equal(a.q[GZ], 100);

    /* 1 MB of whitespace and commas around one element */
    memset(s, ' ', cap);
    for (size_t i = 0; i < cap; i += 7)
        s[i] = ',';
    memcpy(s + cap / 2, "gzip", 4);
    s[cap / 2 - 1] = ' ';
    s[cap / 2 + 4] = ' ';
    memset(&a, 0, sizeof(a));
    assert_int_equal(sl_compress_accept_parse(s, cap, &a), 1);
    assert_int_equal(a.listed, 1u << GZ);

    /* a 1 MB token (a valid unknown coding), and a 1 MB parameter value */
    memset(s, 'a', cap);
    memset(&a, 0, sizeof(a));
    assert_int_equal(sl_compress_accept_parse(s, cap, &a), 1);
    assert_int_equal(a.listed, 0);
    memcpy(s, "br;x=", 5);
    memset(&a, 0, sizeof(a));
    assert_int_equal(sl_compress_accept_parse(s, cap, &a), 1);
    assert_int_equal(a.q[BR], 1000);
    /* a qvalue with a million digits is invalid */
    memset(s, '0', cap);
    memcpy(s, "br;q=0.", 7);
    memset(&a, 0, sizeof(a));
    assert_int_equal(sl_compress_accept_parse(s, cap, &a), 0);
    assert_int_equal(a.listed, 0);

    /* the ignored counter saturates */
    k = 0;
    for (int i = 0; i < 70000; i++) {
        memcpy(s + k, "x;y,", 4);
        k += 4;
    }
    memset(&a, 0, sizeof(a));
    assert_int_equal(sl_compress_accept_parse(s, k, &a), 0);
    assert_int_equal(a.ignored, UINT16_MAX);
    free(s);
}

/* ---- effective weights ------------------------------------------------------------ */

static void test_effective_q(void **state)
{
    (void)state;
    static const struct {
        const char *s; /* NULL: no field */
        unsigned id, gz, br;
    } cases[] = {
        {NULL, 1000, 0, 0},   /* no field: identity only (policy) */
        {"", 1, 0, 0},        /* empty field: no coding wanted */
        {"deflate", 1, 0, 0}, /* only codings we lack */
        {"gzip", 1, 1000, 0}, /* identity unlisted: the last resort */
        {"gzip;q=0", 1, 0, 0},
        {"*", 1000, 1000, 1000}, /* "*" covers identity too */
        {"*;q=0", 0, 0, 0},
        {"*;q=0.3", 300, 300, 300},
        {"*;q=0, identity;q=0.1", 100, 0, 0},
        {"identity;q=0.1, *;q=0", 100, 0, 0},
        {"br;q=0, *", 1000, 1000, 0},
        {"identity;q=0", 0, 0, 0},
        {"identity;q=0, gzip", 0, 1000, 0},
        {"identity;q=0.5, br;q=0.7", 500, 0, 700},
        {"gzip;q=0.4, *;q=0.2", 200, 400, 200},
        {"*;q=bad", 1, 0, 0}, /* an invalid wildcard is ignored */
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        sl_compress_accept_t a;
        if (cases[i].s)
            a = ae(cases[i].s);
        else
            memset(&a, 0, sizeof(a));
        unsigned id = sl_compress_q(&a, ID), gz = sl_compress_q(&a, GZ), br = sl_compress_q(&a, BR);
        if (id != cases[i].id || gz != cases[i].gz || br != cases[i].br)
            fail_msg("\"%s\": identity %u gzip %u br %u, expected %u %u %u",
                     cases[i].s ? cases[i].s : "(none)", id, gz, br, cases[i].id, cases[i].gz,
                     cases[i].br);
    }
    sl_compress_accept_t a = ae("*");
    assert_int_equal(sl_compress_q(&a, NA), 0);
    assert_int_equal(sl_compress_q(&a, STAR), 0);
    assert_int_equal(sl_compress_q(&a, -1), 0);
    assert_int_equal(sl_compress_q(&a, 42), 0);
}

/* ---- the choice ------------------------------------------------------------------- */

static void test_choose(void **state)
{
    (void)state;
    static const struct {
        const char *s; /* NULL: no field */
        unsigned avail;
        int want;
    } cases[] = {
        /* no field, or nothing we have */
        {NULL, ALL, ID},
        {NULL, 0, ID},
        {"", ALL, ID},
        {"deflate", ALL, ID},
        {"gzip", 0, ID},
        {"gzip", HBR, ID},
        {"br", HGZ, ID},
        /* typical browsers and clients */
        {"gzip, deflate, br", ALL, BR},
        {"gzip, deflate, br, zstd", ALL, BR},
        {"gzip, deflate, br", HGZ, GZ},
        {"gzip, deflate", ALL, GZ},
        {"br", ALL, BR},
        {"gzip", ALL, GZ},
        {"x-gzip", ALL, GZ},
        {"GZIP", HGZ, GZ},
        /* weights */
        {"br;q=0.5, gzip", ALL, GZ},
        {"br;q=0.5, gzip;q=0.4", ALL, BR},
        {"br;q=0.5, gzip;q=0.5", ALL, BR}, /* a tie: br */
        {"gzip;q=0.5, br;q=0.5", ALL, BR}, /* whatever the order */
        {"gzip;q=1, br;q=0.999", ALL, GZ},
        {"gzip;q=0.001", ALL, GZ},             /* identity unlisted ranks last */
        {"identity, gzip", ALL, GZ},           /* a tie with identity: compress */
        {"identity;q=1, gzip;q=0.5", ALL, ID}, /* the client prefers identity */
        {"identity;q=0.5, gzip;q=0.5", ALL, GZ},
        {"gzip;q=0", ALL, ID},
        {"gzip;q=0, br;q=0", ALL, ID},
        {"gzip;q=1.0001", ALL, ID}, /* invalid: gzip unlisted */
        /* the wildcard */
        {"*", ALL, BR},
        {"*", HGZ, GZ},
        {"*", 0, ID},
        {"br;q=0, *", ALL, GZ},
        {"br;q=0, *", HBR, ID},
        {"*;q=0.1, gzip;q=0.2", ALL, GZ},
        {"*;q=0.3, gzip;q=0.2", ALL, BR},
        {"*;q=0.3, identity;q=0.4", ALL, ID},
        /* identity refused */
        {"*;q=0, identity;q=0.1", ALL, ID},
        {"*;q=0", ALL, NA},
        {"*;q=0", 0, NA},
        {"*;q=0, gzip", ALL, GZ},
        {"*;q=0, gzip", HBR, NA},
        {"identity;q=0", ALL, NA}, /* br and gzip unlisted: refused too */
        {"identity;q=0, *", ALL, BR},
        {"identity;q=0, *", 0, NA},
        {"identity;q=0, gzip", HGZ, GZ},
        {"identity;q=0, gzip", HBR, NA},
        {"identity;q=0, gzip;q=0", ALL, NA},
        {"identity;q=0, deflate", ALL, NA},
        /* duplicates keep the lowest */
        {"gzip;q=0.1, gzip;q=0.9, br;q=0.5", ALL, BR},
        {"br, br;q=0", ALL, ID},
        /* unknown bits of the mask are ignored */
        {"gzip", 0xfffffff9u, ID},
        {"gzip", 0xffffffffu, GZ},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        int got = choose(cases[i].s, cases[i].avail);
        if (got != cases[i].want)
            fail_msg("\"%s\" with %#x: %d, expected %d", cases[i].s ? cases[i].s : "(none)",
                     cases[i].avail, got, cases[i].want);
    }
}

static void test_tokens(void **state)
{
    (void)state;
    assert_string_equal(sl_compress_token(BR), "br");
    assert_string_equal(sl_compress_token(GZ), "gzip");
    assert_string_equal(sl_compress_token(ID), "");
    assert_string_equal(sl_compress_token(NA), "");
    assert_string_equal(sl_compress_token(-1), "");
    assert_string_equal(sl_compress_suffix(BR), ".br");
    assert_string_equal(sl_compress_suffix(GZ), ".gz");
    assert_string_equal(sl_compress_suffix(ID), "");
    assert_string_equal(sl_compress_suffix(NA), "");
    assert_string_equal(sl_compress_suffix(99), "");
}

/* ---- media types ------------------------------------------------------------------ */

static void test_type_ok(void **state)
{
    (void)state;
    static const char *const yes[] = {
        "text/html",
        "text/plain",
        "text/css",
        "text/csv",
        "text/javascript",
        "text/xml",
        "TEXT/HTML",
        "text/html; charset=utf-8",
        "text/html;charset=\"utf-8\"",
        "  text/html  ",
        "text/html ; charset=utf-8",
        "application/json",
        "Application/JSON; charset=UTF-8",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/xml",
        "application/yaml",
        "application/x-yaml",
        "application/wasm",
        "application/vnd.ms-fontobject",
        "application/x-font-ttf",
        "application/x-font-otf",
        "application/ld+json",
        "application/problem+json",
        "application/manifest+json",
        "application/vnd.api+json",
        "application/atom+xml",
        "application/rss+xml",
        "application/xhtml+xml",
        "image/svg+xml",
        "IMAGE/SVG+XML",
        "font/ttf",
        "font/otf",
        "font/collection",
        "image/x-icon",
        "image/vnd.microsoft.icon",
        "image/bmp",
    };
    static const char *const no[] = {
        "",
        " ",
        "text",
        "text/",
        "/html",
        "text/event-stream",
        "Text/Event-Stream; charset=utf-8",
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/gif",
        "video/mp4",
        "audio/mpeg",
        "font/woff",
        "font/woff2",
        "application/octet-stream",
        "application/zip",
        "application/gzip",
        "application/pdf",
        "application/x-ndjson",
        "application/+json", /* nothing before the suffix */
        "application/json-seq",
        "application/jsonx",
        "application/xml2",
        "text/html garbage",
        "text/html,text/plain",
        "text /html",
        "text/ html",
        "text\"/html",
        "multipart/form-data; boundary=x",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(yes); i++)
        if (!sl_compress_type_ok(yes[i], strlen(yes[i])))
            fail_msg("\"%s\" should be compressible", yes[i]);
    for (size_t i = 0; i < SL_ARRAY_LEN(no); i++)
        if (sl_compress_type_ok(no[i], strlen(no[i])))
            fail_msg("\"%s\" should not be compressible", no[i]);
    assert_int_equal(sl_compress_type_ok(NULL, 0), 0);
    assert_int_equal(sl_compress_type_ok("text/html", 4), 0); /* "text": never past n */
    assert_int_equal(sl_compress_type_ok("image/svg+xmlz", 13), 1);
}

/* ---- eligibility ------------------------------------------------------------------ */

/* sl_compress_eligible for a GET with no request fields, min_length 1024; returns why. */
static const char *elig(int status, const sl_http_header_t *resp, unsigned n)
{
    const char *why = NULL;
    int r = sl_compress_eligible(SL_M_GET, status, NULL, 0, resp, n, 1024, &why);
    assert_non_null(why);
    assert_int_equal(r, strcmp(why, "ok") == 0);
    return why;
}

#define CT H("Content-Type", "text/html; charset=utf-8")

static void test_eligible_status_method(void **state)
{
    (void)state;
    sl_http_header_t r[] = {CT, H("Content-Length", "5000")};
    static const int ok[] = {200, 201, 202, 203, 207, 226, 300, 301, 302, 303, 307,
                             308, 400, 401, 403, 404, 410, 429, 500, 502, 503, 599};
    for (size_t i = 0; i < SL_ARRAY_LEN(ok); i++)
        assert_string_equal(elig(ok[i], r, N(r)), "ok");
    assert_string_equal(elig(204, r, N(r)), "no content");
    assert_string_equal(elig(205, r, N(r)), "no content");
    assert_string_equal(elig(304, r, N(r)), "no content");
    assert_string_equal(elig(206, r, N(r)), "partial");
    assert_string_equal(elig(100, r, N(r)), "status");
    assert_string_equal(elig(101, r, N(r)), "status");
    assert_string_equal(elig(199, r, N(r)), "status");
    assert_string_equal(elig(600, r, N(r)), "status");
    assert_string_equal(elig(0, r, N(r)), "status");
    assert_string_equal(elig(-200, r, N(r)), "status");

    const char *why = NULL;
    assert_int_equal(sl_compress_eligible(SL_M_HEAD, 200, NULL, 0, r, N(r), 0, &why), 0);
    assert_string_equal(why, "method");
    assert_int_equal(sl_compress_eligible(SL_M_CONNECT, 200, NULL, 0, r, N(r), 0, &why), 0);
    assert_string_equal(why, "method");
    static const int methods[] = {SL_M_GET,   SL_M_POST,    SL_M_PUT,  SL_M_DELETE,
                                  SL_M_PATCH, SL_M_OPTIONS, SL_M_OTHER};
    for (size_t i = 0; i < SL_ARRAY_LEN(methods); i++)
        assert_int_equal(sl_compress_eligible(methods[i], 200, NULL, 0, r, N(r), 0, NULL), 1);
}

static void test_eligible_fields(void **state)
{
    (void)state;
    /* ranges */
    sl_http_header_t cr[] = {CT, H("Content-Range", "bytes 0-99/5000")};
    assert_string_equal(elig(200, cr, N(cr)), "content-range");
    sl_http_header_t cr2[] = {CT, H("content-range", "")};
    assert_string_equal(elig(200, cr2, N(cr2)), "content-range");

    /* Content-Encoding */
    static const struct {
        const char *v;
        const char *why;
    } ce[] = {
        {"gzip", "encoded"},
        {"br", "encoded"},
        {"x-gzip", "encoded"},
        {"deflate", "encoded"},
        {"zstd", "encoded"},
        {"identity, gzip", "encoded"},
        {"gzip, identity", "encoded"},
        {"", "encoded"}, /* empty: do not guess */
        {" , ", "encoded"},
        {"identity", "ok"},
        {"Identity", "ok"},
        {" identity ", "ok"},
        {"identity, identity", "ok"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(ce); i++) {
        sl_http_header_t r[] = {CT, H("Content-Encoding", ce[i].v)};
        const char *why = elig(200, r, N(r));
        if (strcmp(why, ce[i].why) != 0)
            fail_msg("Content-Encoding \"%s\": %s, expected %s", ce[i].v, why, ce[i].why);
    }
    sl_http_header_t ce2[] = {CT, H("Content-Encoding", "identity"), H("content-encoding", "br")};
    assert_string_equal(elig(200, ce2, N(ce2)), "encoded");
    sl_http_header_t cenull[] = {CT, H("Content-Encoding", NULL)};
    assert_string_equal(elig(200, cenull, N(cenull)), "encoded");

    /* Transfer-Encoding */
    sl_http_header_t te[] = {CT, H("Transfer-Encoding", "chunked")};
    assert_string_equal(elig(200, te, N(te)), "ok");
    sl_http_header_t te2[] = {CT, H("Transfer-Encoding", "gzip, chunked")};
    assert_string_equal(elig(200, te2, N(te2)), "transfer-coded");
    sl_http_header_t te3[] = {CT, H("Transfer-Encoding", "Chunked"), H("Transfer-Encoding", "br")};
    assert_string_equal(elig(200, te3, N(te3)), "transfer-coded");

    /* no-transform */
    static const struct {
        const char *v;
        const char *why;
    } ccs[] = {
        {"no-transform", "no-transform"},
        {"public, max-age=60, no-transform", "no-transform"},
        {"No-Transform", "no-transform"},
        {" ,no-transform , ", "no-transform"},
        {"no-transform=\"x\"", "no-transform"},
        {"private, max-age=0", "ok"},
        {"x=\"no-transform\"", "ok"}, /* a quoted value, not a directive */
        {"x=\"a, no-transform\"", "ok"},
        {"no-transformation", "ok"},
        {"", "ok"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(ccs); i++) {
        sl_http_header_t r[] = {CT, H("Cache-Control", ccs[i].v)};
        const char *why = elig(200, r, N(r));
        if (strcmp(why, ccs[i].why) != 0)
            fail_msg("Cache-Control \"%s\": %s, expected %s", ccs[i].v, why, ccs[i].why);
    }
    sl_http_header_t cc2[] = {CT, H("Cache-Control", "public"), H("cache-control", "no-transform")};
    assert_string_equal(elig(200, cc2, N(cc2)), "no-transform");
    /* the request's no-transform */
    sl_http_header_t resp[] = {CT};
    sl_http_header_t req[] = {H("Accept-Encoding", "gzip"), H("Cache-Control", "no-transform")};
    const char *why = NULL;
    assert_int_equal(sl_compress_eligible(SL_M_GET, 200, req, N(req), resp, N(resp), 0, &why), 0);
    assert_string_equal(why, "request no-transform");
    sl_http_header_t req2[] = {H("Cache-Control", "no-cache"), H("Pragma", "no-transform")};
    assert_int_equal(sl_compress_eligible(SL_M_GET, 200, req2, N(req2), resp, N(resp), 0, &why), 1);

    /* Content-Type */
    sl_http_header_t none[] = {H("Content-Length", "5000")};
    assert_string_equal(elig(200, none, N(none)), "type");
    sl_http_header_t png[] = {H("Content-Type", "image/png")};
    assert_string_equal(elig(200, png, N(png)), "type");
    sl_http_header_t same[] = {H("Content-Type", "application/json"),
                               H("content-type", "application/json")};
    assert_string_equal(elig(200, same, N(same)), "ok");
    sl_http_header_t differ[] = {H("Content-Type", "application/json"),
                                 H("Content-Type", "image/png")};
    assert_string_equal(elig(200, differ, N(differ)), "type");
    sl_http_header_t differ2[] = {H("Content-Type", "text/html"), H("Content-Type", "text/css")};
    assert_string_equal(elig(200, differ2, N(differ2)), "type");
    sl_http_header_t ctnull[] = {H("Content-Type", NULL)};
    assert_string_equal(elig(200, ctnull, N(ctnull)), "type");
    sl_http_header_t sse[] = {H("Content-Type", "text/event-stream")};
    assert_string_equal(elig(200, sse, N(sse)), "type");
}

static void test_eligible_length(void **state)
{
    (void)state;
    static const struct {
        const char *cl; /* NULL: no Content-Length */
        uint64_t min;
        const char *why;
    } cases[] = {
        {NULL, 1024, "ok"}, /* unknown length (chunked): yes */
        {NULL, 0, "ok"},
        {"5000", 1024, "ok"},
        {"1024", 1024, "ok"}, /* at the minimum: yes */
        {"1023", 1024, "too small"},
        {"1", 1024, "too small"},
        {"0", 1024, "too small"},
        {"0", 0, "too small"}, /* an empty body never */
        {"1", 0, "ok"},
        {"1", 1, "ok"},
        {"18446744073709551615", 1024, "content-length"}, /* 20 digits */
        {"9999999999999999999", 1024, "ok"},              /* 19 digits fit */
        {"9999999999999999999", UINT64_MAX, "too small"},
        {"5000, 5000", 1024, "ok"},
        {" 5000 ", 1024, "ok"},
        {"5000, 6000", 1024, "content-length"},
        {"", 1024, "content-length"},
        {",", 1024, "content-length"},
        {"abc", 1024, "content-length"},
        {"-1", 1024, "content-length"},
        {"+5000", 1024, "content-length"},
        {"5e3", 1024, "content-length"},
        {"50 00", 1024, "content-length"},
        {"0x10", 1024, "content-length"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        sl_http_header_t r[2] = {CT};
        unsigned n = 1;
        if (cases[i].cl)
            r[n++] = H("Content-Length", cases[i].cl);
        const char *why = NULL;
        int ok = sl_compress_eligible(SL_M_GET, 200, NULL, 0, r, n, cases[i].min, &why);
        if (strcmp(why, cases[i].why) != 0)
            fail_msg("Content-Length \"%s\" min %llu: %s, expected %s",
                     cases[i].cl ? cases[i].cl : "(none)", (unsigned long long)cases[i].min, why,
                     cases[i].why);
        assert_int_equal(ok, strcmp(cases[i].why, "ok") == 0);
    }
    sl_http_header_t two[] = {CT, H("Content-Length", "5000"), H("content-length", "5000")};
    assert_string_equal(elig(200, two, N(two)), "ok");
    sl_http_header_t twodiff[] = {CT, H("Content-Length", "5000"), H("Content-Length", "500")};
    assert_string_equal(elig(200, twodiff, N(twodiff)), "content-length");
    sl_http_header_t clnull[] = {CT, H("Content-Length", NULL)};
    assert_string_equal(elig(200, clnull, N(clnull)), "content-length");
    /* the typical proxied page */
    sl_http_header_t page[] = {
        H("Date", "Tue, 14 Nov 2023 22:13:20 GMT"), H("Content-Type", "text/html; charset=UTF-8"),
        H("Transfer-Encoding", "chunked"),          H("Vary", "Origin"),
        H("Cache-Control", "public, max-age=60"),   H("ETag", "\"33a64df5\"")};
    assert_string_equal(elig(200, page, N(page)), "ok");
}

/* ---- Vary and variants ------------------------------------------------------------ */

static void test_vary(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        int has;
    } cases[] = {
        {"Accept-Encoding", 1},
        {"accept-encoding", 1},
        {"ACCEPT-ENCODING", 1},
        {"Origin, Accept-Encoding", 1},
        {"Accept-Encoding, Origin", 1},
        {" , Accept-Encoding , ", 1},
        {"Origin,Accept-Encoding,Cookie", 1},
        {"*", 1},
        {"Origin, *", 1},
        {" * ", 1},
        {"Accept-Encodings", 0},
        {"X-Accept-Encoding", 0},
        {"Accept", 0},
        {"Accept-Language", 0},
        {"Origin", 0},
        {"", 0},
        {"**", 0},
        {"\"Accept-Encoding\"", 0},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        sl_http_header_t r[] = {H("Content-Type", "text/html"), H("Vary", cases[i].v)};
        if (sl_compress_vary_has(r, N(r)) != cases[i].has)
            fail_msg("Vary \"%s\": expected %d", cases[i].v, cases[i].has);
    }
    sl_http_header_t two[] = {H("Vary", "Origin"), H("vary", "accept-encoding")};
    assert_int_equal(sl_compress_vary_has(two, N(two)), 1);
    sl_http_header_t other[] = {H("X-Vary", "Accept-Encoding"), H("Accept-Encoding", "gzip")};
    assert_int_equal(sl_compress_vary_has(other, N(other)), 0);
    sl_http_header_t nullv[] = {H("Vary", NULL)};
    assert_int_equal(sl_compress_vary_has(nullv, N(nullv)), 0);
    assert_int_equal(sl_compress_vary_has(NULL, 0), 0);
}

static void etag_is(const char *in, int coding, const char *want)
{
    char out[256];
    memset(out, 'Z', sizeof(out));
    int64_t r = sl_compress_etag(in, strlen(in), coding, out, sizeof(out));
    if (r < 0)
        fail_msg("etag '%s' coding %d: %lld", in, coding, (long long)r);
    assert_int_equal(r, (int64_t)strlen(want));
    assert_memory_equal(out, want, strlen(want));
    assert_int_equal(out[r], 'Z'); /* nothing written beyond */
}

static void test_etag(void **state)
{
    (void)state;
    etag_is("\"abc\"", GZ, "\"abc-gzip\"");
    etag_is("\"abc\"", BR, "\"abc-br\"");
    etag_is("\"abc\"", ID, "\"abc\"");
    etag_is("W/\"abc\"", GZ, "W/\"abc-gzip\"");
    etag_is("W/\"abc\"", BR, "W/\"abc-br\"");
    etag_is("W/\"abc\"", ID, "W/\"abc\"");
    etag_is("  \"abc\"\t", BR, "\"abc-br\""); /* surrounding whitespace goes */
    etag_is("\"\"", GZ, "\"-gzip\"");         /* an empty opaque tag */
    etag_is("W/\"\"", BR, "W/\"-br\"");
    etag_is("\"abc-br\"", BR, "\"abc-br-br\""); /* still differs from its source */
    etag_is("\"33a64df551425fcc55e4d42a148795d9f25f89d4\"", GZ,
            "\"33a64df551425fcc55e4d42a148795d9f25f89d4-gzip\"");
    etag_is("\"a!#~\x80\xff\"", BR, "\"a!#~\x80\xff-br\""); /* every etagc, obs-text */

    /* invalid entity-tags */
    static const char *const bad[] = {
        "abc",     "\"abc", "abc\"",      "\"",        "w/\"abc\"", "W/abc",
        "W/",      "W/\"",  "\"a\"b\"",   "\"a b\"",   "\"a\tb\"",  "\"abc\" \"d\"",
        "\"a\"\"", " ",     "W /\"abc\"", "\"a\x01\"", "\"a\x7f\"", "*"};
    char out[64];
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++)
        for (int c = ID; c <= BR; c++)
            if (sl_compress_etag(bad[i], strlen(bad[i]), c, out, sizeof(out)) != SL_EINVAL)
                fail_msg("etag '%s' coding %d should be invalid", bad[i], c);
    assert_int_equal(sl_compress_etag("", 0, GZ, out, sizeof(out)), SL_EINVAL);
    assert_int_equal(sl_compress_etag(NULL, 0, GZ, out, sizeof(out)), SL_EINVAL);
    /* not a coding */
    assert_int_equal(sl_compress_etag("\"a\"", 3, NA, out, sizeof(out)), SL_EINVAL);
    assert_int_equal(sl_compress_etag("\"a\"", 3, -1, out, sizeof(out)), SL_EINVAL);
    assert_int_equal(sl_compress_etag("\"a\"", 3, 7, out, sizeof(out)), SL_EINVAL);
    /* never past n */
    assert_int_equal(sl_compress_etag("\"abc\"", 4, GZ, out, sizeof(out)), SL_EINVAL);
    assert_int_equal(sl_compress_etag("\"abc\"xyz", 5, GZ, out, sizeof(out)), 10);

    /* the buffer: exactly enough, one short, none */
    assert_int_equal(sl_compress_etag("\"abc\"", 5, GZ, out, 10), 10);
    memset(out, 'Z', sizeof(out));
    assert_int_equal(sl_compress_etag("\"abc\"", 5, GZ, out, 9), SL_ETOOBIG);
    assert_int_equal(out[0], 'Z'); /* nothing written */
    assert_int_equal(sl_compress_etag("\"abc\"", 5, GZ, NULL, 0), SL_ETOOBIG);
    assert_int_equal(sl_compress_etag("\"abc\"", 5, ID, out, 5), 5);
    assert_int_equal(sl_compress_etag("\"abc\"", 5, ID, out, 4), SL_ETOOBIG);
    /* the documented bound */
    assert_true(sl_compress_etag("\"abc\"", 5, GZ, out, sizeof(out)) <= 5 + SL_COMPRESS_ETAG_EXTRA);
    assert_true(sl_compress_etag("\"abc\"", 5, BR, out, sizeof(out)) <= 5 + SL_COMPRESS_ETAG_EXTRA);

    /* gzip and br variants of one tag differ from each other and from the source */
    char g[32], b[32];
    int64_t lg = sl_compress_etag("\"v1\"", 4, GZ, g, sizeof(g));
    int64_t lb = sl_compress_etag("\"v1\"", 4, BR, b, sizeof(b));
    assert_true(lg > 4 && lb > 4);
    assert_false(lg == lb && memcmp(g, b, (size_t)lg) == 0);
    /* the output is itself a valid entity-tag: deriving again works */
    assert_int_equal(sl_compress_etag(g, (size_t)lg, BR, out, sizeof(out)), lg + 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_names),
        cmocka_unit_test(test_accept_qvalues),
        cmocka_unit_test(test_accept_syntax),
        cmocka_unit_test(test_accept_duplicates),
        cmocka_unit_test(test_accept_long),
        cmocka_unit_test(test_effective_q),
        cmocka_unit_test(test_choose),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_type_ok),
        cmocka_unit_test(test_eligible_status_method),
        cmocka_unit_test(test_eligible_fields),
        cmocka_unit_test(test_eligible_length),
        cmocka_unit_test(test_vary),
        cmocka_unit_test(test_etag),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
