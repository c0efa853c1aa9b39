/* httpdate.h - HTTP-date (RFC 9110 §5.6.7) formatting and parsing, for every layer: http/
 * (static files: Last-Modified, If-Modified-Since, If-Range) may not include cache/, whose
 * cachecontrol.h has its own copy (sl_cc_date_*), so the shared one lives here.
 * Pure: never does I/O, never allocates, never reads a clock (the caller passes "now" where
 * a rule needs it). Any thread. */
#ifndef SL_HTTPDATE_H
#define SL_HTTPDATE_H

#include <stddef.h>
#include <stdint.h>

#define SL_HTTPDATE_LEN 29             /* "Sun, 06 Nov 1994 08:49:37 GMT" */
#define SL_HTTPDATE_MAX 253402300799LL /* 9999-12-31 23:59:59 GMT, the last IMF-fixdate */

/* Write t (unix seconds, 0 <= t <= SL_HTTPDATE_MAX) as an IMF-fixdate into out[0..29) (not
 * NUL-terminated). Returns 29, or 0 (nothing written) when t is out of range. */
size_t sl_httpdate_format(int64_t t, char out[SL_HTTPDATE_LEN]);

/* Parse v[0..n) as an HTTP-date: IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), the obsolete
 * RFC 850 form ("Sunday, 06-Nov-94 08:49:37 GMT") or asctime ("Sun Nov  6 08:49:37 1994"),
 * all of which a recipient must accept; case-sensitive as §5.6.7 says; surrounding spaces
 * and tabs allowed. Fields are range-checked (day within its month, leap years, second up
 * to 60); the weekday must be a day name but is not checked against the date. now_s (unix
 * seconds, <= 0 when unknown) resolves RFC 850's two-digit year: a year more than 50 years
 * after now's is taken 100 years earlier; without now_s, 70-99 are 19xx and 00-69 20xx.
 * Never reads past n; v may be NULL when n is 0. Returns unix seconds (a valid date before
 * 1970 returns 0), or -1 when v is not an HTTP-date. */
int64_t sl_httpdate_parse(const char *v, size_t n, int64_t now_s);

#endif
