/* test_cachecontrol.c - the shared cache's RFC 9111 rules: every directive (duplicates,
 * quoted values, garbage, huge numbers), the targeted fields and their precedence, the
 * three HTTP-date forms, storability per status and per rule, the freshness order, the age
 * computation with hand-worked numbers, the lookup decision, Vary keys, the fields a store
 * drops and a 304 refreshes, and 304 answers to conditional requests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../src/cache/cachecontrol.h"
#include "../../src/core/hash.h"

#define T0_S 1700000000LL /* Tue, 14 Nov 2023 22:13:20 GMT */
#define T0 (T0_S * 1000)  /* ms */
#define D_T0 "Tue, 14 Nov 2023 22:13:20 GMT"
#define D_T0_M3 "Tue, 14 Nov 2023 22:13:17 GMT"  /* T0 - 3 s */
#define D_T0_M30 "Tue, 14 Nov 2023 22:12:50 GMT" /* T0 - 30 s */
#define D_T0_P60 "Tue, 14 Nov 2023 22:14:20 GMT" /* T0 + 60 s */
#define D_T0_P100 "Tue, 14 Nov 2023 22:15:00 GMT"
#define D_T0_M100 "Tue, 14 Nov 2023 22:11:40 GMT"

static sl_http_header_t H(const char *name, const char *value)
{
    sl_http_header_t h;
    memset(&h, 0, sizeof(h));
    h.name = name;
    h.name_len = (uint16_t)strlen(name);
    h.value = value;
    h.value_len = (uint32_t)strlen(value);
    return h;
}

#define N(a) ((unsigned)SL_ARRAY_LEN(a))

static sl_cc_t cc_of(const char *s)
{
    sl_cc_t c;
    memset(&c, 0, sizeof(c));
    sl_cc_parse(s, strlen(s), &c);
    return c;
}

static int targeted(const char *s, sl_cc_t *c)
{
    memset(c, 0, sizeof(*c));
    return sl_cc_parse_targeted(s, strlen(s), c);
}

static int64_t date(const char *s)
{
    return sl_cc_date_parse(s, strlen(s), T0_S);
}

/* ---- directives ------------------------------------------------------------------- */

static void test_directives_each(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint32_t flag;
    } bools[] = {
        {"no-store", SL_CC_NO_STORE},
        {"no-cache", SL_CC_NO_CACHE},
        {"private", SL_CC_PRIVATE},
        {"public", SL_CC_PUBLIC},
        {"must-revalidate", SL_CC_MUST_REVALIDATE},
        {"proxy-revalidate", SL_CC_PROXY_REVALIDATE},
        {"no-transform", SL_CC_NO_TRANSFORM},
        {"immutable", SL_CC_IMMUTABLE},
        {"must-understand", SL_CC_MUST_UNDERSTAND},
        {"only-if-cached", SL_CC_ONLY_IF_CACHED},
        {"NO-STORE", SL_CC_NO_STORE}, /* names are case-insensitive */
        {"Private", SL_CC_PRIVATE},
        {"no-cache=\"Set-Cookie, X-Foo\"", SL_CC_NO_CACHE}, /* field list: whole no-cache */
        {"private=\"Set-Cookie\"", SL_CC_PRIVATE},
        {"private=x", SL_CC_PRIVATE},
        {"no-store=\"ignored\"", SL_CC_NO_STORE},
        {"max-stale", SL_CC_MAX_STALE},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(bools); i++) {
        sl_cc_t c = cc_of(bools[i].s);
        assert_int_equal(c.flags, bools[i].flag);
    }
    sl_cc_t c = cc_of("max-age=60, s-maxage=120, stale-while-revalidate=30, stale-if-error=300");
    assert_int_equal(c.flags, SL_CC_MAX_AGE | SL_CC_S_MAXAGE | SL_CC_STALE_WHILE_REVALIDATE |
                                  SL_CC_STALE_IF_ERROR);
    assert_int_equal(c.max_age, 60);
    assert_int_equal(c.s_maxage, 120);
    assert_int_equal(c.stale_while_revalidate, 30);
    assert_int_equal(c.stale_if_error, 300);
    c = cc_of("max-age=0, max-stale=15, min-fresh=20, no-cache, no-store, only-if-cached");
    assert_int_equal(c.flags, SL_CC_MAX_AGE | SL_CC_MAX_STALE | SL_CC_MIN_FRESH | SL_CC_NO_CACHE |
                                  SL_CC_NO_STORE | SL_CC_ONLY_IF_CACHED);
    assert_int_equal(c.max_age, 0);
    assert_int_equal(c.max_stale, 15);
    assert_int_equal(c.min_fresh, 20);
    c = cc_of("max-stale"); /* any staleness */
    assert_int_equal(c.max_stale, SL_CC_DELTA_MAX);
    c = cc_of("MAX-AGE=7");
    assert_int_equal(c.max_age, 7);
    /* the count of recognised directives */
    sl_cc_t d;
    memset(&d, 0, sizeof(d));
    assert_int_equal(sl_cc_parse("public, foo, max-age=1, bar=\"x,y\"", 33, &d), 2);
    assert_int_equal(sl_cc_parse(NULL, 0, &d), 0);
}

static void test_directives_values(void **state)
{
    (void)state;
    /* quoted values are accepted (§5.2: recipients ought to accept both forms) */
    assert_int_equal(cc_of("max-age=\"60\"").max_age, 60);
    assert_int_equal(cc_of("s-maxage=\"1\\2\"").s_maxage, 12); /* quoted-pair */
    assert_int_equal(cc_of("max-age = 60").max_age, 60);       /* lenient around '=' */
    assert_int_equal(cc_of("max-age=007").max_age, 7);
    /* invalid: 0, still present (stale) */
    const char *bad[] = {"max-age=",       "max-age",      "max-age=-1",  "max-age=+5",
                         "max-age=1.5",    "max-age=abc",  "max-age=6 0", "max-age=\"\"",
                         "max-age=\"6x\"", "max-age=\"60", "max-age=60s", "max-age:60",
                         "max-age=0x10"};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        sl_cc_t c = cc_of(bad[i]);
        assert_true(c.flags & SL_CC_MAX_AGE);
        assert_int_equal(c.max_age, 0);
    }
    /* huge: clamp to 2^31 (§1.2.2) */
    assert_int_equal(cc_of("max-age=2147483647").max_age, 2147483647u);
    assert_int_equal(cc_of("max-age=2147483648").max_age, SL_CC_DELTA_MAX);
    assert_int_equal(cc_of("max-age=2147483649").max_age, SL_CC_DELTA_MAX);
    assert_int_equal(cc_of("max-age=99999999999999999999999999999999").max_age, SL_CC_DELTA_MAX);
    assert_int_equal(cc_of("stale-if-error=18446744073709551617").stale_if_error, SL_CC_DELTA_MAX);
    /* invalid swr/sie/max-stale/min-fresh: 0 */
    sl_cc_t c = cc_of("stale-while-revalidate=x, stale-if-error=-3, max-stale=y, min-fresh=");
    assert_int_equal(c.stale_while_revalidate, 0);
    assert_int_equal(c.stale_if_error, 0);
    assert_int_equal(c.max_stale, 0);
    assert_int_equal(c.min_fresh, 0);
    assert_true(c.flags & SL_CC_STALE_WHILE_REVALIDATE);
}

static void test_directives_duplicates(void **state)
{
    (void)state;
    /* max-age / s-maxage: same value keeps it, different values -> 0 (§4.2.1) */
    assert_int_equal(cc_of("max-age=60, max-age=60").max_age, 60);
    assert_int_equal(cc_of("max-age=60, max-age=30").max_age, 0);
    assert_int_equal(cc_of("s-maxage=60, s-maxage=600").s_maxage, 0);
    assert_int_equal(cc_of("max-age=abc, max-age=60").max_age, 0);
    assert_int_equal(cc_of("max-age=60, max-age=30, max-age=60").max_age, 0);
    /* across field lines: the same, because parse accumulates */
    sl_cc_t c;
    memset(&c, 0, sizeof(c));
    sl_cc_parse("max-age=60", 10, &c);
    assert_int_equal(c.max_age, 60);
    sl_cc_parse("max-age=30", 10, &c);
    assert_int_equal(c.max_age, 0);
    /* the others: the most restrictive */
    assert_int_equal(
        cc_of("stale-while-revalidate=30, stale-while-revalidate=10").stale_while_revalidate, 10);
    assert_int_equal(cc_of("stale-if-error=5, stale-if-error=50").stale_if_error, 5);
    assert_int_equal(cc_of("max-stale, max-stale=20").max_stale, 20);
    assert_int_equal(cc_of("max-stale=20, max-stale").max_stale, 20);
    assert_int_equal(cc_of("min-fresh=5, min-fresh=50").min_fresh, 50);
}

static void test_directives_garbage(void **state)
{
    (void)state;
    /* whitespace, empty elements, unknown directives, junk: tolerated */
    sl_cc_t c = cc_of(" ,, \t public ,  ,max-age=5,,");
    assert_int_equal(c.flags, SL_CC_PUBLIC | SL_CC_MAX_AGE);
    assert_int_equal(c.max_age, 5);
    c = cc_of("foo=\"a, no-store, b\", max-age=5"); /* commas inside a quoted string */
    assert_int_equal(c.flags, SL_CC_MAX_AGE);
    c = cc_of("=5, \"x\", max-age=9");
    assert_int_equal(c.flags, SL_CC_MAX_AGE);
    assert_int_equal(c.max_age, 9);
    c = cc_of("no-cache junk, private");
    assert_int_equal(c.flags, SL_CC_NO_CACHE | SL_CC_PRIVATE);
    c = cc_of("max-agex=5, xmax-age=5, max_age=5, nostore");
    assert_int_equal(c.flags, 0);
    c = cc_of("\"unterminated, no-store");
    assert_int_equal(c.flags, 0);
    c = cc_of("");
    assert_int_equal(c.flags, 0);
    /* never reads past n: a valid directive cut by n */
    memset(&c, 0, sizeof(c));
    sl_cc_parse("max-age=601", 9, &c);
    assert_int_equal(c.max_age, 6);
    memset(&c, 0, sizeof(c));
    sl_cc_parse("no-store", 7, &c);
    assert_int_equal(c.flags, 0);
}

static void test_targeted_parse(void **state)
{
    (void)state;
    sl_cc_t c;
    assert_int_equal(targeted("max-age=600", &c), 0);
    assert_int_equal(c.flags, SL_CC_MAX_AGE);
    assert_int_equal(c.max_age, 600);
    assert_int_equal(targeted("no-store, private=\"set-cookie\", must-revalidate;p=1", &c), 0);
    assert_int_equal(c.flags, SL_CC_NO_STORE | SL_CC_PRIVATE | SL_CC_MUST_REVALIDATE);
    assert_int_equal(targeted("max-age=60, max-age=5", &c), 0); /* last wins (RFC 8941) */
    assert_int_equal(c.max_age, 5);
    assert_int_equal(targeted("no-store, no-store=?0", &c), 0); /* switched off */
    assert_int_equal(c.flags, 0);
    assert_int_equal(targeted("no-store=?1", &c), 0);
    assert_int_equal(c.flags, SL_CC_NO_STORE);
    assert_int_equal(targeted("none", &c), 0); /* valid, nothing known */
    assert_int_equal(c.flags, 0);
    assert_int_equal(targeted("s-maxage=99999999999999", &c), 0);
    assert_int_equal(c.s_maxage, SL_CC_DELTA_MAX);
    /* wrong types: invalid value -> 0 */
    const char *wrong[] = {"max-age=\"60\"", "max-age=1.5",   "max-age=-1",    "max-age=abc",
                           "max-age",        "max-age=(1 2)", "max-age=:YQ==:"};
    for (size_t i = 0; i < SL_ARRAY_LEN(wrong); i++) {
        assert_int_equal(targeted(wrong[i], &c), 0);
        assert_true(c.flags & SL_CC_MAX_AGE);
        assert_int_equal(c.max_age, 0);
    }
    /* not a Dictionary: SL_EBADMSG */
    const char *invalid[] = {"Max-Age=60",
                             "max-age=60,",
                             "max-age=60;",
                             "max-age=60 x",
                             "max-age=1234567890123456",
                             "a=\"unterminated",
                             "a=?2",
                             "a=(1",
                             ",max-age=1",
                             "max-age=60,,public",
                             "a=1.",
                             "a=1.2345",
                             "a=1234567890123.1",
                             "a=\"\\x\"",
                             "a=:abc",
                             "a=\"\x01\""};
    for (size_t i = 0; i < SL_ARRAY_LEN(invalid); i++)
        assert_int_equal(targeted(invalid[i], &c), SL_EBADMSG);
    assert_int_equal(targeted("  max-age=1 , public  ", &c), 0);
    assert_int_equal(c.flags, SL_CC_MAX_AGE | SL_CC_PUBLIC);
}

static void test_precedence(void **state)
{
    (void)state;
    sl_cc_t c;
    sl_http_header_t all[] = {H("Cache-Control", "max-age=60, s-maxage=120"),
                              H("CDN-Cache-Control", "max-age=600"),
                              H("Sluice-Cache-Control", "max-age=6000")};
    sl_cc_response_directives(all, N(all), &c);
    assert_int_equal(c.source, SL_CC_SRC_SLUICE);
    assert_int_equal(c.flags, SL_CC_MAX_AGE);
    assert_int_equal(c.max_age, 6000);
    sl_cc_response_directives(all, 2, &c);
    assert_int_equal(c.source, SL_CC_SRC_CDN);
    assert_int_equal(c.max_age, 600);
    sl_cc_response_directives(all, 1, &c);
    assert_int_equal(c.source, SL_CC_SRC_CACHE_CONTROL);
    assert_int_equal(c.s_maxage, 120);
    sl_cc_response_directives(all, 0, &c);
    assert_int_equal(c.source, SL_CC_SRC_NONE);
    assert_int_equal(c.flags, 0);

    /* RFC 9213 §3.1: CDN-Cache-Control lets a CDN store what Cache-Control forbids */
    sl_http_header_t cdn[] = {H("Cache-Control", "no-store"), H("cdn-cache-control", "none")};
    sl_cc_response_directives(cdn, N(cdn), &c);
    assert_int_equal(c.source, SL_CC_SRC_CDN);
    assert_int_equal(c.flags, 0);

    /* invalid or empty targeted fields are ignored: fall back to the next */
    sl_http_header_t bad[] = {H("Sluice-Cache-Control", "Max-Age=1"), H("CDN-Cache-Control", ""),
                              H("Cache-Control", "max-age=7")};
    sl_cc_response_directives(bad, N(bad), &c);
    assert_int_equal(c.source, SL_CC_SRC_CACHE_CONTROL);
    assert_int_equal(c.max_age, 7);
    /* one bad line spoils the whole field; several good lines combine (last wins) */
    sl_http_header_t lines[] = {
        H("CDN-Cache-Control", "max-age=10"), H("Sluice-Cache-Control", "max-age=20"),
        H("Sluice-Cache-Control", "max-age=30, public"), H("CDN-Cache-Control", "max-age=1 junk")};
    sl_cc_response_directives(lines, N(lines), &c);
    assert_int_equal(c.source, SL_CC_SRC_SLUICE);
    assert_int_equal(c.max_age, 30);
    assert_int_equal(c.flags, SL_CC_MAX_AGE | SL_CC_PUBLIC);
    sl_cc_response_directives(lines + 3, 1, &c); /* bad CDN line, no Cache-Control */
    assert_int_equal(c.source, SL_CC_SRC_NONE);
    /* several Cache-Control lines accumulate */
    sl_http_header_t cc2[] = {H("Cache-Control", "public"), H("cache-control", "max-age=9")};
    sl_cc_response_directives(cc2, N(cc2), &c);
    assert_int_equal(c.flags, SL_CC_PUBLIC | SL_CC_MAX_AGE);
    /* a response Pragma means nothing */
    sl_http_header_t pr[] = {H("Pragma", "no-cache")};
    sl_cc_response_directives(pr, N(pr), &c);
    assert_int_equal(c.flags, 0);

    /* requests: Pragma: no-cache only without Cache-Control (§5.4); no targeted fields */
    sl_cc_request_directives(pr, N(pr), &c);
    assert_int_equal(c.flags, SL_CC_NO_CACHE);
    assert_int_equal(c.source, SL_CC_SRC_PRAGMA);
    sl_http_header_t rq[] = {H("Pragma", "no-cache"), H("Cache-Control", "max-stale=5"),
                             H("CDN-Cache-Control", "no-store")};
    sl_cc_request_directives(rq, N(rq), &c);
    assert_int_equal(c.flags, SL_CC_MAX_STALE);
    assert_int_equal(c.source, SL_CC_SRC_CACHE_CONTROL);
    sl_http_header_t rq2[] = {H("Pragma", "foo, No-Cache")};
    sl_cc_request_directives(rq2, N(rq2), &c);
    assert_int_equal(c.flags, SL_CC_NO_CACHE);
}

/* ---- dates ------------------------------------------------------------------------ */

static void test_dates(void **state)
{
    (void)state;
    /* the three forms of RFC 9110 §5.6.7's example */
    assert_int_equal(date("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
    assert_int_equal(date("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777);
    assert_int_equal(date("Sun Nov  6 08:49:37 1994"), 784111777);
    assert_int_equal(date("  Sun, 06 Nov 1994 08:49:37 GMT\t"), 784111777);
    assert_int_equal(date(D_T0), T0_S);
    assert_int_equal(date("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    assert_int_equal(date("Tue, 29 Feb 2000 00:00:00 GMT"), 951782400);
    assert_int_equal(date("Thu, 29 Feb 2024 12:00:00 GMT"), 1709208000);
    assert_int_equal(date("Fri, 31 Dec 1999 23:59:59 GMT"), 946684799);
    assert_int_equal(date("Fri, 31 Dec 1999 23:59:60 GMT"), 946684800); /* leap second */
    assert_int_equal(date("Wed Dec 31 23:59:59 1969"), 0); /* before 1970: the far past */
    assert_int_equal(date("Fri Dec 31 23:59:59 1999"), 946684799);
    assert_int_equal(date("Sun Nov 16 08:49:37 1994"), 784111777 + 10 * 86400);
    /* RFC 850 two-digit years: > 50 years ahead of now means the previous century */
    assert_int_equal(date("Thursday, 01-Jan-37 00:00:00 GMT"), 2114380800); /* 2037 */
    assert_int_equal(date("Friday, 01-Jan-99 00:00:00 GMT"), 915148800);    /* 1999 */
    assert_int_equal(date("Monday, 01-Jan-73 00:00:00 GMT"), 3250454400);   /* 2073: 50 ahead */
    assert_int_equal(date("Tuesday, 01-Jan-74 00:00:00 GMT"), 126230400);   /* 51: 1974 */
    assert_int_equal(sl_cc_date_parse("Friday, 01-Jan-37 00:00:00 GMT", 30, 4102444800LL),
                     5270054400LL); /* now 2100: 2137 is 37 years ahead */
    assert_int_equal(sl_cc_date_parse("Friday, 01-Jan-99 00:00:00 GMT", 30, 4102444800LL),
                     4070908800LL); /* now 2100: 2199 is 99 ahead, so 2099 */
    assert_int_equal(sl_cc_date_parse("Friday, 01-Jan-99 00:00:00 GMT", 30, 0), 915148800);
    assert_int_equal(sl_cc_date_parse("Friday, 01-Jan-37 00:00:00 GMT", 30, 0), 2114380800);
    /* the weekday is not checked against the date */
    assert_int_equal(date("Mon, 06 Nov 1994 08:49:37 GMT"), 784111777);
    /* invalid */
    const char *bad[] = {
        "0",
        "",
        "-1",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Sun, 29 Feb 1900 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 1994 08-49-37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT ,",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun,06 Nov 1994 08:49:37 GMT ",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sunday, 06 Nov 94 08:49:37 GMT",
        "Sundae, 06-Nov-94 08:49:37 GMT",
        "Sun Nov 06 08:49:37 94",
        "Sun Nov  0 08:49:37 1994",
        "Sun Nov 6  08:49:37 1994",
        "Sun Xyz  6 08:49:37 1994",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 06 Nov +994 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        if (date(bad[i]) != -1)
            fail_msg("accepted %s", bad[i]);
    }
    assert_int_equal(sl_cc_date_parse(NULL, 0, 0), -1);
    /* never past n */
    assert_int_equal(sl_cc_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", 28, 0), -1);

    /* format and round trip */
    char out[29];
    assert_int_equal(sl_cc_date_format(784111777, out), 29);
    assert_memory_equal(out, "Sun, 06 Nov 1994 08:49:37 GMT", 29);
    assert_int_equal(sl_cc_date_format(0, out), 29);
    assert_memory_equal(out, "Thu, 01 Jan 1970 00:00:00 GMT", 29);
    assert_int_equal(sl_cc_date_format(253402300799LL, out), 29);
    assert_memory_equal(out, "Fri, 31 Dec 9999 23:59:59 GMT", 29);
    assert_int_equal(sl_cc_date_format(-1, out), 0);
    assert_int_equal(sl_cc_date_format(253402300800LL, out), 0);
    for (int64_t t = 0; t < 253402300799LL; t += 86400LL * 97 + 3607) {
        assert_int_equal(sl_cc_date_format(t, out), 29);
        assert_int_equal(sl_cc_date_parse(out, 29, 0), t);
    }
}

/* ---- storability ------------------------------------------------------------------ */

static int store(int method, int status, const sl_http_header_t *rq, unsigned nrq,
                 const sl_http_header_t *rs, unsigned nrs, const sl_cc_route_t *route,
                 const char *want_why)
{
    const char *why = NULL;
    int r = sl_cc_storable(method, status, rq, nrq, rs, nrs, route, &why);
    assert_non_null(why);
    if (strcmp(why, want_why) != 0)
        fail_msg("status %d: why \"%s\", expected \"%s\"", status, why, want_why);
    assert_int_equal(r, strcmp(want_why, "ok") == 0);
    return r;
}

static void test_storable_status(void **state)
{
    (void)state;
    sl_cc_route_t ttl = {.ttl_ms = 60000};
    sl_http_header_t explicit_fresh[] = {H("Cache-Control", "max-age=60")};
    for (int s = 100; s <= 599; s++) {
        const char *heur = NULL, *expl = NULL;
        if (s < 200)
            heur = expl = "interim";
        else if (s == 206)
            heur = expl = "partial";
        else if (s == 304)
            heur = expl = "not modified";
        else {
            expl = "ok"; /* any final status with explicit freshness */
            heur = sl_cc_status_heuristic(s) ? "ok" : "status";
        }
        store(SL_M_GET, s, NULL, 0, NULL, 0, &ttl, heur);
        store(SL_M_GET, s, NULL, 0, explicit_fresh, 1, NULL, expl);
    }
    int heuristic[] = {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501};
    int n = 0;
    for (int s = 0; s < 1000; s++)
        n += sl_cc_status_heuristic(s);
    assert_int_equal(n, (int)SL_ARRAY_LEN(heuristic));
    for (size_t i = 0; i < SL_ARRAY_LEN(heuristic); i++)
        assert_true(sl_cc_status_heuristic(heuristic[i]));
    store(SL_M_GET, 99, NULL, 0, explicit_fresh, 1, NULL, "status");
    store(SL_M_GET, 600, NULL, 0, explicit_fresh, 1, NULL, "status");
    /* Expires counts as explicit freshness, even invalid (stored, but stale) */
    sl_http_header_t exp[] = {H("Expires", "0")};
    store(SL_M_GET, 500, NULL, 0, exp, 1, NULL, "ok");
    sl_http_header_t sm[] = {H("Cache-Control", "s-maxage=5")};
    store(SL_M_GET, 302, NULL, 0, sm, 1, NULL, "ok");
    /* public alone does not make a non-heuristic status storable (our choice) */
    sl_http_header_t pub[] = {H("Cache-Control", "public")};
    store(SL_M_GET, 302, NULL, 0, pub, 1, &ttl, "status");
    store(SL_M_GET, 200, NULL, 0, pub, 1, &ttl, "ok");
}

static void test_storable_rules(void **state)
{
    (void)state;
    sl_cc_route_t ttl = {.ttl_ms = 60000};
    sl_cc_route_t none = {0};
    sl_http_header_t fresh[] = {H("Cache-Control", "max-age=60")};
    /* methods */
    store(SL_M_GET, 200, NULL, 0, fresh, 1, NULL, "ok");
    for (int m = 0; m < SL_M__COUNT; m++)
        if (m != SL_M_GET)
            store(m, 200, NULL, 0, fresh, 1, NULL, "method");
    /* no-store: request (§5.2.1.5) and response (§5.2.2.5) */
    sl_http_header_t rq_ns[] = {H("Cache-Control", "no-store")};
    store(SL_M_GET, 200, rq_ns, 1, fresh, 1, NULL, "request no-store");
    sl_http_header_t ns[] = {H("Cache-Control", "max-age=60, no-store")};
    store(SL_M_GET, 200, NULL, 0, ns, 1, NULL, "no-store");
    sl_http_header_t ns2[] = {H("Cache-Control", "max-age=60"), H("Cache-Control", "No-Store")};
    store(SL_M_GET, 200, NULL, 0, ns2, 2, NULL, "no-store");
    /* must-understand: no-store ignored for a status we understand, refused otherwise */
    sl_http_header_t mu[] = {H("Cache-Control", "must-understand, no-store, max-age=60")};
    store(SL_M_GET, 200, NULL, 0, mu, 1, NULL, "ok");
    store(SL_M_GET, 299, NULL, 0, mu, 1, NULL, "must-understand");
    store(SL_M_GET, 299, NULL, 0, fresh, 1, NULL, "ok"); /* unknown final status, explicit */
    /* private (with or without a field list) */
    sl_http_header_t pv[] = {H("Cache-Control", "private, max-age=60")};
    store(SL_M_GET, 200, NULL, 0, pv, 1, NULL, "private");
    sl_http_header_t pvf[] = {H("Cache-Control", "private=\"Set-Cookie\", max-age=60")};
    store(SL_M_GET, 200, NULL, 0, pvf, 1, NULL, "private");
    /* no-cache responses are stored (revalidated on each use) */
    sl_http_header_t nc[] = {H("Cache-Control", "no-cache, max-age=60")};
    store(SL_M_GET, 200, NULL, 0, nc, 1, NULL, "ok");
    /* Authorization (§3.5) */
    sl_http_header_t auth[] = {H("Authorization", "Bearer x")};
    store(SL_M_GET, 200, auth, 1, fresh, 1, NULL, "authorization");
    store(SL_M_GET, 200, auth, 1, NULL, 0, &ttl, "authorization");
    const char *allow[] = {"public, max-age=60", "s-maxage=60", "must-revalidate, max-age=60"};
    for (size_t i = 0; i < SL_ARRAY_LEN(allow); i++) {
        sl_http_header_t r[] = {H("Cache-Control", allow[i])};
        store(SL_M_GET, 200, auth, 1, r, 1, NULL, "ok");
    }
    sl_http_header_t auth_cdn[] = {H("Cache-Control", "public"),
                                   H("CDN-Cache-Control", "max-age=5")};
    store(SL_M_GET, 200, auth, 1, auth_cdn, 2, NULL, "authorization"); /* CDN- replaces CC */
    /* Set-Cookie */
    sl_http_header_t ck[] = {H("Cache-Control", "max-age=60"), H("Set-Cookie", "a=b")};
    store(SL_M_GET, 200, NULL, 0, ck, 2, NULL, "set-cookie");
    store(SL_M_GET, 200, NULL, 0, ck, 2, &ttl, "set-cookie");
    sl_cc_route_t cookies = {.allow_set_cookie = 1};
    store(SL_M_GET, 200, NULL, 0, ck, 2, &cookies, "ok");
    /* Vary */
    sl_http_header_t vs[] = {H("Cache-Control", "max-age=60"), H("Vary", "Accept, *")};
    store(SL_M_GET, 200, NULL, 0, vs, 2, NULL, "vary *");
    sl_http_header_t vb[] = {H("Cache-Control", "max-age=60"), H("Vary", "Accept, a b")};
    store(SL_M_GET, 200, NULL, 0, vb, 2, NULL, "vary");
    sl_http_header_t vok[] = {H("Cache-Control", "max-age=60"), H("Vary", "Accept-Encoding")};
    store(SL_M_GET, 200, NULL, 0, vok, 2, NULL, "ok");
    /* freshness: explicit, or the route's ttl for heuristically cacheable statuses */
    store(SL_M_GET, 200, NULL, 0, NULL, 0, NULL, "no freshness");
    store(SL_M_GET, 200, NULL, 0, NULL, 0, &none, "no freshness");
    store(SL_M_GET, 200, NULL, 0, NULL, 0, &ttl, "ok");
    sl_http_header_t etag[] = {H("ETag", "\"v1\"")};
    store(SL_M_GET, 200, NULL, 0, etag, 1, NULL, "no freshness"); /* a validator alone */
    store(SL_M_GET, 200, NULL, 0, etag, 1, &ttl, "ok");
    sl_http_header_t zero[] = {H("Cache-Control", "max-age=0")};
    store(SL_M_GET, 200, NULL, 0, zero, 1, NULL, "ok"); /* explicit, stale at once */
    /* Expires does not count under a targeted field (RFC 9213 §2.2) */
    sl_http_header_t tgt[] = {H("CDN-Cache-Control", "public"), H("Expires", D_T0_P100)};
    store(SL_M_GET, 302, NULL, 0, tgt, 2, NULL, "status");
    store(SL_M_GET, 200, NULL, 0, tgt, 2, NULL, "no freshness");
    sl_http_header_t tgt2[] = {H("CDN-Cache-Control", "max-age=5"), H("Cache-Control", "no-store")};
    store(SL_M_GET, 200, NULL, 0, tgt2, 2, NULL, "ok");
    /* NULL why is fine */
    assert_int_equal(sl_cc_storable(SL_M_GET, 200, NULL, 0, fresh, 1, NULL, NULL), 1);
}

/* ---- freshness -------------------------------------------------------------------- */

static int64_t lifetime(const sl_http_header_t *h, unsigned n, const sl_cc_route_t *route)
{
    sl_cc_t c;
    sl_cc_response_directives(h, n, &c);
    return sl_cc_freshness_ms(&c, h, n, T0, route);
}

static void test_freshness(void **state)
{
    (void)state;
    sl_cc_route_t ttl = {.ttl_ms = 5000};
    sl_cc_route_t over = {.ttl_ms = 5000, .override = 1};
    sl_http_header_t all[] = {H("Date", D_T0), H("Expires", D_T0_P100),
                              H("Cache-Control", "max-age=60, s-maxage=120")};
    assert_int_equal(lifetime(all, 3, &ttl), 120000); /* s-maxage first (shared cache) */
    assert_int_equal(lifetime(all, 3, &over), 5000);  /* override: the route's ttl */
    sl_http_header_t ma[] = {H("Date", D_T0), H("Expires", D_T0_P100),
                             H("Cache-Control", "max-age=60")};
    assert_int_equal(lifetime(ma, 3, &ttl), 60000);      /* max-age beats Expires (§5.3) */
    assert_int_equal(lifetime(ma, 2, &ttl), 100000);     /* Expires - Date */
    assert_int_equal(lifetime(ma + 1, 1, &ttl), 100000); /* no Date: the receipt time */
    sl_http_header_t bad_date[] = {H("Date", "yesterday"), H("Expires", D_T0_P60)};
    assert_int_equal(lifetime(bad_date, 2, &ttl), 60000);
    sl_http_header_t same[] = {H("Date", D_T0), H("Expires", D_T0)};
    assert_int_equal(lifetime(same, 2, &ttl), 0); /* Expires == Date: stale */
    sl_http_header_t before[] = {H("Date", D_T0), H("Expires", D_T0_M100)};
    assert_int_equal(lifetime(before, 2, &ttl), 0); /* Expires < Date: stale */
    sl_http_header_t inval[] = {H("Date", D_T0), H("Expires", "0")};
    assert_int_equal(lifetime(inval, 2, &ttl), 0); /* invalid Expires: stale (§5.3) */
    sl_http_header_t two[] = {H("Date", D_T0), H("Expires", D_T0_P100), H("Expires", D_T0_P60)};
    assert_int_equal(lifetime(two, 3, &ttl), 0); /* two different Expires: stale */
    sl_http_header_t twins[] = {H("Date", D_T0), H("Expires", D_T0_P60), H("Expires", D_T0_P60)};
    assert_int_equal(lifetime(twins, 3, &ttl), 60000);
    sl_http_header_t rfc850[] = {H("Date", D_T0), H("Expires", "Tuesday, 14-Nov-23 22:14:20 GMT")};
    assert_int_equal(lifetime(rfc850, 2, &ttl), 60000);
    /* nothing explicit: the route's ttl (our heuristic); none without a route */
    sl_http_header_t lm[] = {H("Date", D_T0), H("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")};
    assert_int_equal(lifetime(lm, 2, &ttl), 5000); /* never the Last-Modified 10% */
    assert_int_equal(lifetime(lm, 2, NULL), 0);
    /* invalid / duplicate max-age: 0 */
    sl_http_header_t dup[] = {H("Cache-Control", "max-age=60"), H("Cache-Control", "max-age=61")};
    assert_int_equal(lifetime(dup, 2, &ttl), 0);
    sl_http_header_t junk[] = {H("Cache-Control", "max-age=sixty"), H("Expires", D_T0_P100)};
    assert_int_equal(lifetime(junk, 2, &ttl), 0); /* invalid max-age still beats Expires */
    /* targeted fields: Expires ignored */
    sl_http_header_t cdn[] = {H("CDN-Cache-Control", "public"), H("Date", D_T0),
                              H("Expires", D_T0_P100)};
    assert_int_equal(lifetime(cdn, 3, &ttl), 5000);
    sl_http_header_t cdn2[] = {H("CDN-Cache-Control", "max-age=600"),
                               H("Cache-Control", "max-age=5")};
    assert_int_equal(lifetime(cdn2, 2, &ttl), 600000);
    /* clamps */
    sl_http_header_t huge[] = {H("Cache-Control", "max-age=99999999999")};
    assert_int_equal(lifetime(huge, 1, NULL), (int64_t)SL_CC_DELTA_MAX * 1000);
    sl_cc_route_t big = {.ttl_ms = UINT64_MAX, .override = 1};
    assert_int_equal(lifetime(huge, 1, &big), (int64_t)SL_CC_DELTA_MAX * 1000);
    sl_http_header_t far[] = {H("Date", "Thu, 01 Jan 1970 00:00:00 GMT"),
                              H("Expires", "Fri, 31 Dec 9999 23:59:59 GMT")};
    assert_int_equal(lifetime(far, 2, NULL), (int64_t)SL_CC_DELTA_MAX * 1000);
    /* override with ttl 0 does nothing */
    sl_cc_route_t over0 = {.override = 1};
    assert_int_equal(lifetime(ma, 3, &over0), 60000);
}

/* ---- age -------------------------------------------------------------------------- */

static void test_age(void **state)
{
    (void)state;
    sl_cc_entry_t e;
    /* Sent at T0, received 2 s later; the origin's Date is 3 s before T0 and an upstream
     * cache says Age: 10.
     *   apparent_age          = max(0, (T0+2) - (T0-3))  = 5 s
     *   response_delay        = (T0+2) - T0              = 2 s
     *   corrected_age_value   = 10 + 2                   = 12 s
     *   corrected_initial_age = max(5, 12)               = 12 s
     *   current_age at T0+7   = 12 + (T0+7 - (T0+2))     = 17 s */
    sl_http_header_t h[] = {H("Date", D_T0_M3), H("Age", "10"), H("Cache-Control", "max-age=20")};
    sl_cc_entry_init(&e, h, N(h), T0, T0 + 2000, NULL);
    assert_int_equal(e.date_ms, T0 - 3000);
    assert_int_equal(e.age_value_ms, 10000);
    assert_int_equal(e.corrected_initial_age_ms, 12000);
    assert_int_equal(e.lifetime_ms, 20000);
    assert_int_equal(sl_cc_current_age_ms(&e, T0 + 7000), 17000);
    assert_int_equal(sl_cc_age_header(&e, T0 + 7000), 17);
    assert_int_equal(sl_cc_age_header(&e, T0 + 7999), 17);
    assert_true(sl_cc_is_fresh(&e, T0 + 7000));
    assert_int_equal(sl_cc_staleness_ms(&e, T0 + 7000), -3000);
    assert_true(sl_cc_is_fresh(&e, T0 + 9999));
    assert_false(sl_cc_is_fresh(&e, T0 + 10000)); /* age 20 s = lifetime: stale */
    assert_int_equal(sl_cc_staleness_ms(&e, T0 + 10000), 0);
    assert_int_equal(sl_cc_staleness_ms(&e, T0 + 15000), 5000);
    /* now before the response time: resident time 0 */
    assert_int_equal(sl_cc_current_age_ms(&e, T0), 12000);

    /* The Date is 30 s old and no Age: apparent_age (32 s) wins over the delay (2 s). */
    sl_http_header_t old[] = {H("Date", D_T0_M30), H("Cache-Control", "max-age=60")};
    sl_cc_entry_init(&e, old, N(old), T0, T0 + 2000, NULL);
    assert_int_equal(e.corrected_initial_age_ms, 32000);
    assert_int_equal(sl_cc_age_header(&e, T0 + 2000), 32);
    /* The origin's clock is 60 s ahead: apparent_age is 0, the delay (2 s) remains. */
    sl_http_header_t ahead[] = {H("Date", D_T0_P60), H("Cache-Control", "max-age=60")};
    sl_cc_entry_init(&e, ahead, N(ahead), T0, T0 + 2000, NULL);
    assert_int_equal(e.corrected_initial_age_ms, 2000);
    /* No Date: the receipt time (apparent 0). Invalid Age ignored; the largest valid Age. */
    sl_http_header_t ages[] = {H("Age", "x"), H("Age", " 7 "), H("Age", "3"), H("Age", "-9")};
    sl_cc_entry_init(&e, ages, N(ages), T0, T0 + 500, NULL);
    assert_int_equal(e.date_ms, T0 + 500);
    assert_int_equal(e.age_value_ms, 7000);
    assert_int_equal(e.corrected_initial_age_ms, 7500);
    assert_int_equal(e.lifetime_ms, 0);
    /* a response time before the request time: no negative delay */
    sl_cc_entry_init(&e, NULL, 0, T0 + 1000, T0, NULL);
    assert_int_equal(e.corrected_initial_age_ms, 0);
    /* huge Age: clamped, and the Age header never exceeds 2^31 */
    sl_http_header_t big[] = {H("Age", "999999999999999")};
    sl_cc_entry_init(&e, big, N(big), T0, T0, NULL);
    assert_int_equal(e.age_value_ms, (int64_t)SL_CC_DELTA_MAX * 1000);
    assert_int_equal(sl_cc_age_header(&e, INT64_MAX), SL_CC_DELTA_MAX);
    assert_true(sl_cc_current_age_ms(&e, INT64_MAX) > 0);
    assert_int_equal(sl_cc_current_age_ms(&e, INT64_MIN), e.corrected_initial_age_ms);
}

/* ---- the lookup decision ---------------------------------------------------------- */

/* An entry received at T0 (sent at T0, Date T0) with these Cache-Control lines. */
static sl_cc_entry_t entry(const char *cc, const sl_cc_route_t *route)
{
    sl_cc_entry_t e;
    sl_http_header_t h[] = {H("Date", D_T0), H("Cache-Control", cc)};
    sl_cc_entry_init(&e, h, N(h), T0, T0, route);
    return e;
}

static int act(const sl_cc_entry_t *e, const char *req_cc, const sl_cc_route_t *route, int64_t now,
               const char *want_why)
{
    sl_cc_decision_t d;
    sl_cc_t rq;
    const sl_cc_t *rp = NULL;
    if (req_cc) {
        sl_http_header_t h[] = {H("Cache-Control", req_cc)};
        sl_cc_request_directives(h, 1, &rq);
        rp = &rq;
    }
    int a = sl_cc_lookup(e, rp, route, now, &d);
    assert_int_equal(a, d.action);
    assert_int_equal(d.age_ms, sl_cc_current_age_ms(e, now));
    if (want_why && strcmp(d.why, want_why) != 0)
        fail_msg("why \"%s\", expected \"%s\"", d.why, want_why);
    return a;
}

static int64_t grace(const sl_cc_entry_t *e, const char *req_cc, const sl_cc_route_t *route,
                     int64_t now)
{
    sl_cc_decision_t d;
    sl_cc_t rq;
    sl_http_header_t h[] = {H("Cache-Control", req_cc ? req_cc : "")};
    sl_cc_request_directives(h, req_cc ? 1 : 0, &rq);
    sl_cc_lookup(e, req_cc ? &rq : NULL, route, now, &d);
    return d.error_grace_ms;
}

static void test_lookup_fresh_stale(void **state)
{
    (void)state;
    sl_cc_entry_t e = entry("max-age=60", NULL);
    assert_int_equal(act(&e, NULL, NULL, T0, "fresh"), SL_CC_ACT_FRESH);
    assert_int_equal(act(&e, NULL, NULL, T0 + 59999, "fresh"), SL_CC_ACT_FRESH);
    assert_int_equal(act(&e, NULL, NULL, T0 + 60000, "stale"), SL_CC_ACT_REVALIDATE);
    assert_int_equal(act(&e, "", NULL, T0 + 1000, "fresh"), SL_CC_ACT_FRESH);
    /* no-cache: the response's (§5.2.2.4) and the request's (§5.2.1.4), and Pragma */
    sl_cc_entry_t nc = entry("max-age=60, no-cache", NULL);
    assert_int_equal(act(&nc, NULL, NULL, T0, "no-cache"), SL_CC_ACT_REVALIDATE);
    sl_cc_entry_t ncf = entry("max-age=60, no-cache=\"Set-Cookie\"", NULL);
    assert_int_equal(act(&ncf, NULL, NULL, T0, "no-cache"), SL_CC_ACT_REVALIDATE);
    assert_int_equal(act(&e, "no-cache", NULL, T0, "request no-cache"), SL_CC_ACT_REVALIDATE);
    sl_http_header_t pragma[] = {H("Pragma", "no-cache")};
    sl_cc_t rq;
    sl_cc_decision_t d;
    sl_cc_request_directives(pragma, 1, &rq);
    assert_int_equal(sl_cc_lookup(&e, &rq, NULL, T0, &d), SL_CC_ACT_REVALIDATE);
    /* NULL request directives: the client is ignored */
    assert_int_equal(sl_cc_lookup(&e, NULL, NULL, T0, &d), SL_CC_ACT_FRESH);
    /* request max-age: age <= max-age is fine (§5.2.1.1) */
    assert_int_equal(act(&e, "max-age=10", NULL, T0 + 10000, "fresh"), SL_CC_ACT_FRESH);
    assert_int_equal(act(&e, "max-age=10", NULL, T0 + 10001, "request max-age"),
                     SL_CC_ACT_REVALIDATE);
    assert_int_equal(act(&e, "max-age=0", NULL, T0 + 1, "request max-age"), SL_CC_ACT_REVALIDATE);
    /* request min-fresh: lifetime - age >= min-fresh (§5.2.1.3) */
    assert_int_equal(act(&e, "min-fresh=20", NULL, T0 + 40000, "fresh"), SL_CC_ACT_FRESH);
    assert_int_equal(act(&e, "min-fresh=20", NULL, T0 + 40001, "request min-fresh"),
                     SL_CC_ACT_REVALIDATE);
    assert_int_equal(act(&e, "min-fresh=20", NULL, T0 + 70000, "request min-fresh"),
                     SL_CC_ACT_REVALIDATE);
    /* lifetime 0 (max-age=0, invalid max-age): stale at once */
    sl_cc_entry_t z = entry("max-age=zero", NULL);
    assert_int_equal(act(&z, NULL, NULL, T0, "stale"), SL_CC_ACT_REVALIDATE);
    /* only-if-cached: 504 instead of going to the origin (§5.2.1.7) */
    assert_int_equal(act(&e, "only-if-cached", NULL, T0, "fresh"), SL_CC_ACT_FRESH);
    assert_int_equal(act(&e, "only-if-cached", NULL, T0 + 60000, "only-if-cached"),
                     SL_CC_ACT_UNSATISFIABLE);
    assert_int_equal(act(&e, "only-if-cached, no-cache", NULL, T0, "only-if-cached"),
                     SL_CC_ACT_UNSATISFIABLE);
}

static void test_lookup_max_stale_revalidate(void **state)
{
    (void)state;
    sl_cc_entry_t e = entry("max-age=60", NULL);
    /* max-stale: staleness <= N (§5.2.1.2) */
    assert_int_equal(act(&e, "max-stale=30", NULL, T0 + 90000, "max-stale"), SL_CC_ACT_STALE_OK);
    assert_int_equal(act(&e, "max-stale=30", NULL, T0 + 90001, "stale"), SL_CC_ACT_REVALIDATE);
    assert_int_equal(act(&e, "max-stale", NULL, T0 + 86400000LL * 365, "max-stale"),
                     SL_CC_ACT_STALE_OK);
    /* with a request max-age it still bounds the age */
    assert_int_equal(act(&e, "max-stale=30, max-age=70", NULL, T0 + 70000, "max-stale"),
                     SL_CC_ACT_STALE_OK);
    assert_int_equal(act(&e, "max-stale=30, max-age=70", NULL, T0 + 70001, "request max-age"),
                     SL_CC_ACT_REVALIDATE);
    /* min-fresh can never be met by a stale response */
    assert_int_equal(act(&e, "max-stale=30, min-fresh=1", NULL, T0 + 61000, "request min-fresh"),
                     SL_CC_ACT_REVALIDATE);
    /* must-revalidate / proxy-revalidate: no stale use at all (§5.2.2.2, §5.2.2.8) */
    sl_cc_entry_t mr = entry("max-age=60, must-revalidate", NULL);
    assert_int_equal(act(&mr, NULL, NULL, T0 + 1000, "fresh"), SL_CC_ACT_FRESH);
    assert_int_equal(act(&mr, "max-stale=30", NULL, T0 + 61000, "must-revalidate"),
                     SL_CC_ACT_REVALIDATE);
    sl_cc_entry_t pr = entry("max-age=60, proxy-revalidate", NULL);
    assert_int_equal(act(&pr, "max-stale", NULL, T0 + 61000, "must-revalidate"),
                     SL_CC_ACT_REVALIDATE);
    /* s-maxage implies proxy-revalidate for us (§5.2.2.10): no max-stale */
    sl_cc_entry_t sm = entry("s-maxage=60", NULL);
    assert_int_equal(act(&sm, "max-stale=30", NULL, T0 + 61000, "stale"), SL_CC_ACT_REVALIDATE);
    assert_int_equal(act(&sm, "max-stale=30", NULL, T0 + 59000, "fresh"), SL_CC_ACT_FRESH);
}

static void test_lookup_swr(void **state)
{
    (void)state;
    sl_cc_route_t route = {.swr_ms = 10000};
    /* the response's own window (RFC 5861 §3) */
    sl_cc_entry_t e = entry("max-age=60, stale-while-revalidate=30", NULL);
    assert_int_equal(act(&e, NULL, NULL, T0 + 59999, "fresh"), SL_CC_ACT_FRESH);
    assert_int_equal(act(&e, NULL, NULL, T0 + 60000, "stale-while-revalidate"),
                     SL_CC_ACT_STALE_WHILE_REVALIDATE);
    assert_int_equal(act(&e, NULL, NULL, T0 + 89999, "stale-while-revalidate"),
                     SL_CC_ACT_STALE_WHILE_REVALIDATE);
    assert_int_equal(act(&e, NULL, NULL, T0 + 90000, "stale"), SL_CC_ACT_REVALIDATE);
    assert_int_equal(act(&e, NULL, &route, T0 + 89999, NULL), SL_CC_ACT_STALE_WHILE_REVALIDATE);
    assert_int_equal(act(&e, NULL, &route, T0 + 90000, NULL), SL_CC_ACT_REVALIDATE);
    /* the route's when the response has none */
    sl_cc_entry_t r = entry("max-age=60", NULL);
    assert_int_equal(act(&r, NULL, &route, T0 + 69999, "stale-while-revalidate"),
                     SL_CC_ACT_STALE_WHILE_REVALIDATE);
    assert_int_equal(act(&r, NULL, &route, T0 + 70000, "stale"), SL_CC_ACT_REVALIDATE);
    /* the response's stale-while-revalidate=0 beats the route's */
    sl_cc_entry_t z = entry("max-age=60, stale-while-revalidate=0", NULL);
    assert_int_equal(act(&z, NULL, &route, T0 + 60000, "stale"), SL_CC_ACT_REVALIDATE);
    /* must-revalidate, proxy-revalidate, no-cache forbid it, even when the origin sent it */
    sl_cc_entry_t mr = entry("max-age=60, stale-while-revalidate=30, must-revalidate", NULL);
    assert_int_equal(act(&mr, NULL, &route, T0 + 61000, "must-revalidate"), SL_CC_ACT_REVALIDATE);
    sl_cc_entry_t pr = entry("max-age=60, proxy-revalidate", NULL);
    assert_int_equal(act(&pr, NULL, &route, T0 + 61000, "must-revalidate"), SL_CC_ACT_REVALIDATE);
    /* s-maxage blocks the route's default, not the origin's explicit window */
    sl_cc_entry_t sm = entry("s-maxage=60", NULL);
    assert_int_equal(act(&sm, NULL, &route, T0 + 61000, "stale"), SL_CC_ACT_REVALIDATE);
    sl_cc_entry_t sw = entry("s-maxage=1, stale-while-revalidate=59", NULL);
    assert_int_equal(act(&sw, NULL, &route, T0 + 30000, "stale-while-revalidate"),
                     SL_CC_ACT_STALE_WHILE_REVALIDATE);
    /* the client's limits win over the window */
    assert_int_equal(act(&e, "no-cache", NULL, T0 + 61000, "request no-cache"),
                     SL_CC_ACT_REVALIDATE);
    assert_int_equal(act(&e, "max-age=60", NULL, T0 + 61000, "request max-age"),
                     SL_CC_ACT_REVALIDATE);
    assert_int_equal(act(&e, "min-fresh=0", NULL, T0 + 61000, "request min-fresh"),
                     SL_CC_ACT_REVALIDATE);
    /* within both windows, a refresh is started */
    assert_int_equal(act(&e, "max-stale=100", NULL, T0 + 61000, "stale-while-revalidate"),
                     SL_CC_ACT_STALE_WHILE_REVALIDATE);
    assert_int_equal(act(&e, "max-stale=100", NULL, T0 + 95000, "max-stale"), SL_CC_ACT_STALE_OK);
    /* only-if-cached does not block serving stale while refreshing */
    assert_int_equal(act(&e, "only-if-cached", NULL, T0 + 61000, NULL),
                     SL_CC_ACT_STALE_WHILE_REVALIDATE);
}

static void test_lookup_sie(void **state)
{
    (void)state;
    sl_cc_route_t route = {.sie_ms = 100000};
    /* the response's window: age < lifetime + window */
    sl_cc_entry_t e = entry("max-age=60, stale-if-error=300", NULL);
    assert_int_equal(grace(&e, NULL, NULL, T0), 360000);
    assert_int_equal(grace(&e, NULL, NULL, T0 + 60000), 300000);
    assert_int_equal(grace(&e, NULL, NULL, T0 + 359999), 1);
    assert_int_equal(grace(&e, NULL, NULL, T0 + 360000), 0);
    assert_int_equal(grace(&e, NULL, &route, T0 + 60000), 300000); /* response's first */
    /* the route's when the response has none; a fresh entry always stands in */
    sl_cc_entry_t r = entry("max-age=60", NULL);
    assert_int_equal(grace(&r, NULL, NULL, T0 + 10000), 50000);
    assert_int_equal(grace(&r, NULL, NULL, T0 + 60000), 0);
    assert_int_equal(grace(&r, NULL, &route, T0 + 60000), 100000);
    /* the request's own stale-if-error (RFC 5861 §4) extends it */
    assert_int_equal(grace(&r, "stale-if-error=200", &route, T0 + 60000), 200000);
    assert_int_equal(grace(&r, "stale-if-error=20", &route, T0 + 60000), 100000);
    /* forbidden by no-cache (always), must-revalidate and proxy-revalidate (when stale) */
    sl_cc_entry_t nc = entry("max-age=60, no-cache, stale-if-error=300", NULL);
    assert_int_equal(grace(&nc, NULL, &route, T0), 0);
    sl_cc_entry_t mr = entry("max-age=60, must-revalidate, stale-if-error=300", NULL);
    assert_int_equal(grace(&mr, NULL, &route, T0 + 10000), 50000);
    assert_int_equal(grace(&mr, "stale-if-error=999", &route, T0 + 60000), 0);
    sl_cc_entry_t pr = entry("max-age=60, proxy-revalidate", NULL);
    assert_int_equal(grace(&pr, NULL, &route, T0 + 60000), 0);
    /* s-maxage: not the route's nor the request's, but the origin's explicit one */
    sl_cc_entry_t sm = entry("s-maxage=60", NULL);
    assert_int_equal(grace(&sm, "stale-if-error=999", &route, T0 + 60000), 0);
    sl_cc_entry_t sms = entry("s-maxage=60, stale-if-error=30", NULL);
    assert_int_equal(grace(&sms, NULL, &route, T0 + 60000), 30000);
    /* the grace is reported with every action */
    sl_cc_decision_t d;
    assert_int_equal(sl_cc_lookup(&e, NULL, NULL, T0 + 100000, &d), SL_CC_ACT_REVALIDATE);
    assert_int_equal(d.error_grace_ms, 260000);
    /* usable time for the store's expiry: the longest of the windows */
    sl_cc_route_t both = {.swr_ms = 30000, .sie_ms = 100000};
    assert_int_equal(sl_cc_usable_ms(&r, &both, T0), 160000);
    assert_int_equal(sl_cc_usable_ms(&r, NULL, T0 + 70000), 0);
    assert_int_equal(sl_cc_usable_ms(&nc, &both, T0), 0);
    assert_int_equal(sl_cc_usable_ms(&mr, &both, T0 + 1000), 59000);
}

static void test_lookup_route_ttl(void **state)
{
    (void)state;
    sl_cc_route_t ttl = {.ttl_ms = 30000};
    sl_cc_route_t over = {.ttl_ms = 30000, .override = 1};
    sl_cc_entry_t h = entry("public", &ttl); /* no explicit freshness: the route's ttl */
    assert_int_equal(h.lifetime_ms, 30000);
    assert_int_equal(act(&h, NULL, &ttl, T0 + 29999, "fresh"), SL_CC_ACT_FRESH);
    assert_int_equal(act(&h, NULL, &ttl, T0 + 30000, "stale"), SL_CC_ACT_REVALIDATE);
    sl_cc_entry_t o = entry("max-age=3600", &over);
    assert_int_equal(o.lifetime_ms, 30000);
    sl_cc_entry_t x = entry("max-age=3600", &ttl); /* without override the origin decides */
    assert_int_equal(x.lifetime_ms, 3600000);
}

/* ---- Vary ------------------------------------------------------------------------- */

static void vary_names(const sl_cc_vary_t *v, const char *const *want, unsigned n)
{
    assert_int_equal(v->n, n);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(v->len[i], strlen(want[i]));
        assert_memory_equal(v->names + v->off[i], want[i], v->len[i]);
    }
}

static void test_vary_parse(void **state)
{
    (void)state;
    sl_cc_vary_t v;
    sl_http_header_t h[] = {H("Vary", " Accept-Encoding ,accept, ,User-Agent"),
                            H("vary", "ACCEPT-ENCODING"), H("Vary", "")};
    assert_int_equal(sl_cc_vary_parse(h, N(h), &v), 0);
    const char *want[] = {"accept", "accept-encoding", "user-agent"};
    vary_names(&v, want, 3);
    assert_int_equal(v.flags, 0);
    /* no Vary */
    assert_int_equal(sl_cc_vary_parse(NULL, 0, &v), 0);
    assert_int_equal(v.n, 0);
    /* * anywhere */
    sl_http_header_t star[] = {H("Vary", "Accept"), H("Vary", "Cookie, *")};
    assert_int_equal(sl_cc_vary_parse(star, N(star), &v), SL_EINVAL);
    assert_true(v.flags & SL_CC_VARY_STAR);
    /* bad elements and bounds */
    memset(&v, 0, sizeof(v));
    assert_int_equal(sl_cc_vary_add(&v, "a b", 3), SL_ETOOBIG);
    assert_true(v.flags & SL_CC_VARY_BAD);
    assert_int_equal(sl_cc_vary_add(&v, "x", 1), SL_ETOOBIG); /* sticky */
    memset(&v, 0, sizeof(v));
    assert_int_equal(sl_cc_vary_add(&v, "\"quoted\"", 8), SL_ETOOBIG);
    memset(&v, 0, sizeof(v));
    char many[512];
    size_t len = 0;
    for (int i = 0; i < SL_CC_VARY_MAX; i++)
        len += (size_t)snprintf(many + len, sizeof(many) - len, "h%02d,", i);
    assert_int_equal(sl_cc_vary_add(&v, many, len), 0);
    assert_int_equal(v.n, SL_CC_VARY_MAX);
    assert_int_equal(sl_cc_vary_add(&v, "h00, H01", 8), 0); /* duplicates: no room needed */
    assert_int_equal(sl_cc_vary_add(&v, "one-more", 8), SL_ETOOBIG);
    memset(&v, 0, sizeof(v));
    char longname[300];
    memset(longname, 'a', sizeof(longname));
    assert_int_equal(sl_cc_vary_add(&v, longname, 255), 0);
    assert_int_equal(v.len[0], 255);
    assert_int_equal(sl_cc_vary_add(&v, "b", 1), 0); /* 256 bytes: full */
    assert_int_equal(v.used, SL_CC_VARY_BYTES);
    assert_int_equal(sl_cc_vary_add(&v, "c", 1), SL_ETOOBIG);
    memset(&v, 0, sizeof(v));
    assert_int_equal(sl_cc_vary_add(&v, longname, 256), SL_ETOOBIG); /* one name > 255 */
    memset(&v, 0, sizeof(v));
    assert_int_equal(sl_cc_vary_add(&v, longname, 200), 0);
    assert_int_equal(sl_cc_vary_add(&v, "b", 1), 0);
    memset(longname, 'c', sizeof(longname));
    assert_int_equal(sl_cc_vary_add(&v, longname, 60), SL_ETOOBIG); /* 256 bytes in all */
    memset(&v, 0, sizeof(v));
    assert_int_equal(sl_cc_vary_add(&v, NULL, 0), 0);
}

static int64_t vkey(const sl_cc_vary_t *v, const sl_http_header_t *h, unsigned n, char *buf)
{
    int64_t len = sl_cc_vary_key(v, h, n, buf, 256);
    if (len >= 0) {
        assert_int_equal(sl_cc_vary_hash(v, h, n), sl_hash_bytes(buf, (size_t)len));
        assert_int_equal(sl_cc_vary_key(v, h, n, NULL, 0), len == 0 ? 0 : SL_ETOOBIG);
        if (len > 0)
            assert_int_equal(sl_cc_vary_key(v, h, n, buf, (size_t)len - 1), SL_ETOOBIG);
    }
    return len;
}

static void test_vary_key(void **state)
{
    (void)state;
    sl_cc_vary_t v;
    sl_http_header_t vh[] = {H("Vary", "Accept-Encoding, Accept-Language")};
    assert_int_equal(sl_cc_vary_parse(vh, 1, &v), 0);
    char a[256], b[256];
    sl_http_header_t r1[] = {H("Host", "x"), H("Accept-Encoding", "gzip, br"),
                             H("Accept-Language", "en")};
    int64_t la = vkey(&v, r1, N(r1), a);
    const char want[] = "accept-encoding:gzip, br\naccept-language:en\n";
    assert_int_equal(la, sizeof(want) - 1);
    assert_memory_equal(a, want, (size_t)la);
    /* equivalent spacing, empty elements, and lines split or combined: the same key */
    const sl_http_header_t same[][3] = {
        {H("accept-encoding", "gzip,br"), H("ACCEPT-LANGUAGE", " en ")},
        {H("Accept-Encoding", "gzip ,\t br"), H("Accept-Language", "en")},
        {H("Accept-Encoding", "gzip"), H("Accept-Language", "en"), H("Accept-Encoding", "br")},
        {H("Accept-Encoding", ", gzip,, br ,"), H("Accept-Language", "en,")},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(same); i++) {
        unsigned n = same[i][2].name ? 3 : 2;
        int64_t lb = vkey(&v, same[i], n, b);
        assert_int_equal(lb, la);
        assert_memory_equal(a, b, (size_t)la);
        assert_int_equal(sl_cc_vary_hash(&v, same[i], n), sl_cc_vary_hash(&v, r1, N(r1)));
    }
    /* different values, order within a field, quoted commas: different keys */
    sl_http_header_t r2[] = {H("Accept-Encoding", "br, gzip"), H("Accept-Language", "en")};
    int64_t lb = vkey(&v, r2, N(r2), b);
    assert_false(lb == la && memcmp(a, b, (size_t)la) == 0);
    sl_http_header_t q[] = {H("Accept-Encoding", "x=\"a,b\""), H("Accept-Language", "en")};
    lb = vkey(&v, q, N(q), b);
    const char wq[] = "accept-encoding:x=\"a,b\"\naccept-language:en\n";
    assert_int_equal(lb, sizeof(wq) - 1);
    assert_memory_equal(b, wq, (size_t)lb);
    /* absent differs from empty */
    sl_http_header_t absent[] = {H("Accept-Language", "en")};
    sl_http_header_t empty[] = {H("Accept-Encoding", ""), H("Accept-Language", "en")};
    int64_t l1 = vkey(&v, absent, 1, a), l2 = vkey(&v, empty, 2, b);
    assert_int_equal(l1, strlen("accept-encoding\naccept-language:en\n"));
    assert_memory_equal(a, "accept-encoding\naccept-language:en\n", (size_t)l1);
    assert_int_equal(l2, strlen("accept-encoding:\naccept-language:en\n"));
    assert_memory_equal(b, "accept-encoding:\naccept-language:en\n", (size_t)l2);
    assert_true(sl_cc_vary_hash(&v, absent, 1) != sl_cc_vary_hash(&v, empty, 2));
    /* no Vary: the empty key */
    sl_cc_vary_t none;
    sl_cc_vary_parse(NULL, 0, &none);
    assert_int_equal(vkey(&none, r1, N(r1), a), 0);
    /* * never matches: no key at all */
    sl_cc_vary_t star;
    sl_http_header_t sh[] = {H("Vary", "*")};
    sl_cc_vary_parse(sh, 1, &star);
    assert_int_equal(sl_cc_vary_key(&star, r1, N(r1), a, sizeof(a)), SL_EINVAL);
    assert_int_equal(sl_cc_vary_hash(&star, r1, N(r1)), 0);
    /* long keys: hashed without a buffer, in 256-byte blocks */
    static char big[2000];
    memset(big, 'z', sizeof(big) - 1);
    sl_http_header_t lr[] = {H("Accept-Encoding", big)};
    assert_int_equal(sl_cc_vary_key(&v, lr, 1, a, sizeof(a)), SL_ETOOBIG);
    uint64_t h1 = sl_cc_vary_hash(&v, lr, 1);
    big[1000] = 'y';
    assert_true(sl_cc_vary_hash(&v, lr, 1) != h1);
    big[1000] = 'z';
    assert_int_equal(sl_cc_vary_hash(&v, lr, 1), h1);
}

/* ---- stored fields ---------------------------------------------------------------- */

static void test_store_fields(void **state)
{
    (void)state;
    sl_http_header_t r[] = {
        H("Connection", "keep-alive, X-Internal"),
        H("Keep-Alive", "timeout=5"),
        H("Transfer-Encoding", "chunked"),
        H("X-Internal", "1"),
        H("Content-Type", "text/html"),
        H("Content-Length", "10"),
        H("TE", "trailers"),
        H("Trailer", "X"),
        H("Upgrade", "h2c"),
        H("Proxy-Connection", "close"),
        H("Proxy-Authenticate", "Basic"),
        H("Proxy-Authentication-Info", "x"),
        H("ETag", "\"v1\""),
        H("Cache-Control", "max-age=5"),
        H("x-internal", "2"),
        H("Content-Range", "bytes 0-9/10"),
        H("Proxy-Authorization", "x"),
    };
    int drop[] = {1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 1};
    int upd[] = {0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0};
    for (unsigned i = 0; i < N(r); i++) {
        if (sl_cc_store_drops(&r[i], r, N(r)) != drop[i])
            fail_msg("store_drops %s", r[i].name);
        if (sl_cc_304_updates(&r[i], r, N(r)) != upd[i])
            fail_msg("304_updates %s", r[i].name);
    }
    /* the parser's hop flag is honoured */
    sl_http_header_t f = H("X-Other", "1");
    assert_int_equal(sl_cc_store_drops(&f, &f, 1), 0);
    f.hop = 1;
    assert_int_equal(sl_cc_store_drops(&f, &f, 1), 1);
    assert_int_equal(sl_cc_304_updates(&f, &f, 1), 0);
}

/* ---- conditional requests --------------------------------------------------------- */

static int cond(const char *inm, const char *ims, const char *etag, const char *lm, int status)
{
    sl_http_header_t rq[2], st[2];
    unsigned nrq = 0, nst = 0;
    if (inm)
        rq[nrq++] = H("If-None-Match", inm);
    if (ims)
        rq[nrq++] = H("If-Modified-Since", ims);
    if (etag)
        st[nst++] = H("ETag", etag);
    if (lm)
        st[nst++] = H("Last-Modified", lm);
    return sl_cc_conditional(rq, nrq, status, st, nst, T0);
}

static void test_conditional(void **state)
{
    (void)state;
    const int FULL = SL_CC_COND_FULL, NM = SL_CC_COND_NOT_MODIFIED;
    /* If-None-Match, weak comparison (RFC 9110 §8.8.3.2) */
    assert_int_equal(cond("\"x\"", NULL, "\"x\"", NULL, 200), NM);
    assert_int_equal(cond("W/\"x\"", NULL, "\"x\"", NULL, 200), NM);
    assert_int_equal(cond("\"x\"", NULL, "W/\"x\"", NULL, 200), NM);
    assert_int_equal(cond("W/\"x\"", NULL, "W/\"x\"", NULL, 200), NM);
    assert_int_equal(cond("\"y\"", NULL, "\"x\"", NULL, 200), FULL);
    assert_int_equal(cond("\"X\"", NULL, "\"x\"", NULL, 200), FULL); /* case matters */
    assert_int_equal(cond("\"a\", W/\"b\",\"x\"", NULL, "\"x\"", NULL, 200), NM);
    assert_int_equal(cond(" \"a\" ,, \"x\" ", NULL, "\"x\"", NULL, 200), NM);
    assert_int_equal(cond("\"a\", \"b\"", NULL, "\"x\"", NULL, 200), FULL);
    assert_int_equal(cond("\"a,b\"", NULL, "\"a,b\"", NULL, 200), NM); /* comma in a tag */
    assert_int_equal(cond("*", NULL, "\"x\"", NULL, 200), NM);
    assert_int_equal(cond(" * ", NULL, NULL, NULL, 200), NM);     /* a representation exists */
    assert_int_equal(cond("\"x\"", NULL, NULL, NULL, 200), FULL); /* no stored ETag */
    /* malformed: the full response */
    assert_int_equal(cond("x", NULL, "\"x\"", NULL, 200), FULL);
    assert_int_equal(cond("\"x\" junk", NULL, "\"x\"", NULL, 200), FULL);
    assert_int_equal(cond("\"x", NULL, "\"x\"", NULL, 200), FULL);
    assert_int_equal(cond("w/\"x\"", NULL, "\"x\"", NULL, 200), FULL);
    assert_int_equal(cond("\"x\"", NULL, "x", NULL, 200), FULL);
    assert_int_equal(cond("", NULL, "\"x\"", NULL, 200), FULL);
    /* If-None-Match present: If-Modified-Since ignored (§13.1.3) */
    const char *lm = "Sun, 06 Nov 1994 08:49:37 GMT";
    const char *older = "Sat, 05 Nov 1994 08:49:37 GMT";
    const char *newer = "Mon, 07 Nov 1994 08:49:37 GMT";
    assert_int_equal(cond("\"y\"", newer, "\"x\"", lm, 200), FULL);
    /* If-Modified-Since against Last-Modified */
    assert_int_equal(cond(NULL, newer, "\"x\"", lm, 200), NM); /* not modified since */
    assert_int_equal(cond(NULL, lm, NULL, lm, 200), NM);       /* equal: not modified */
    assert_int_equal(cond(NULL, older, NULL, lm, 200), FULL);  /* modified since */
    assert_int_equal(cond(NULL, "Sunday, 06-Nov-94 08:49:37 GMT", NULL, lm, 200), NM);
    assert_int_equal(cond(NULL, "Sun Nov  6 08:49:37 1994", NULL, lm, 200), NM);
    assert_int_equal(cond(NULL, "garbage", NULL, lm, 200), FULL);
    assert_int_equal(cond(NULL, newer, NULL, "garbage", 200), FULL);
    assert_int_equal(cond(NULL, newer, "\"x\"", NULL, 200), FULL); /* no Last-Modified */
    /* only 2xx */
    assert_int_equal(cond("\"x\"", NULL, "\"x\"", NULL, 404), FULL);
    assert_int_equal(cond(NULL, newer, NULL, lm, 301), FULL);
    assert_int_equal(cond("\"x\"", NULL, "\"x\"", NULL, 204), NM);
    /* several lines */
    sl_http_header_t two[] = {H("If-None-Match", "\"a\""), H("If-None-Match", "W/\"x\"")};
    sl_http_header_t st[] = {H("etag", "\"x\"")};
    assert_int_equal(sl_cc_conditional(two, 2, 200, st, 1, T0), NM);
    sl_http_header_t twobad[] = {H("If-None-Match", "\"x\""), H("If-None-Match", "bad")};
    assert_int_equal(sl_cc_conditional(twobad, 2, 200, st, 1, T0), FULL);
    sl_http_header_t ims2[] = {H("If-Modified-Since", newer), H("If-Modified-Since", newer)};
    sl_http_header_t stlm[] = {H("Last-Modified", lm)};
    assert_int_equal(sl_cc_conditional(ims2, 2, 200, stlm, 1, T0), FULL);
    /* If-Match / If-Unmodified-Since are not for a cache (RFC 9111 §4.3.2) */
    sl_http_header_t im[] = {H("If-None-Match", "\"x\""), H("If-Match", "\"x\"")};
    assert_int_equal(sl_cc_conditional(im, 2, 200, st, 1, T0), SL_CC_COND_FORWARD);
    sl_http_header_t ius[] = {H("If-Unmodified-Since", lm)};
    assert_int_equal(sl_cc_conditional(ius, 1, 200, stlm, 1, T0), SL_CC_COND_FORWARD);
    /* If-Range alone changes nothing; no conditionals: the full response */
    sl_http_header_t ir[] = {H("If-Range", "\"x\"")};
    assert_int_equal(sl_cc_conditional(ir, 1, 200, st, 1, T0), FULL);
    assert_int_equal(sl_cc_conditional(NULL, 0, 200, st, 1, T0), FULL);

    /* the raw weak matcher */
    assert_int_equal(sl_cc_etag_match("W/\"x\"", 5, "\"x\"", 3), 1);
    assert_int_equal(sl_cc_etag_match("*", 1, "W/\"q\"", 5), 1);
    assert_int_equal(sl_cc_etag_match("*", 1, "q", 1), 0);
    assert_int_equal(sl_cc_etag_match("\"x\"", 2, "\"x\"", 3), 0); /* never past n */
    assert_int_equal(sl_cc_etag_match("\"\"", 2, "\"\"", 2), 1);   /* empty opaque tag */
    assert_int_equal(sl_cc_etag_match(NULL, 0, "\"x\"", 3), 0);
    assert_int_equal(sl_cc_etag_match("\"x\"", 3, "\"x\" \"y\"", 7), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_directives_each),
        cmocka_unit_test(test_directives_values),
        cmocka_unit_test(test_directives_duplicates),
        cmocka_unit_test(test_directives_garbage),
        cmocka_unit_test(test_targeted_parse),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_storable_status),
        cmocka_unit_test(test_storable_rules),
        cmocka_unit_test(test_freshness),
        cmocka_unit_test(test_age),
        cmocka_unit_test(test_lookup_fresh_stale),
        cmocka_unit_test(test_lookup_max_stale_revalidate),
        cmocka_unit_test(test_lookup_swr),
        cmocka_unit_test(test_lookup_sie),
        cmocka_unit_test(test_lookup_route_ttl),
        cmocka_unit_test(test_vary_parse),
        cmocka_unit_test(test_vary_key),
        cmocka_unit_test(test_store_fields),
        cmocka_unit_test(test_conditional),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
