/* httpdate.c - HTTP-date formatting and parsing; see httpdate.h. Civil-date arithmetic
 * after H. Hinnant's days_from_civil / civil_from_days (proleptic Gregorian calendar). */
#include "httpdate.h"

#include <string.h>

static const char MONTHS[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char DAYS[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const DAYS_LONG[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                         "Thursday", "Friday", "Saturday"};

/* Days since 1970-01-01 of year y, month m (1..12), day d. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* k decimal digits at p as a number, or -1 when one of them is not a digit. */
static int digits(const char *p, size_t k)
{
    int v = 0;
    for (size_t i = 0; i < k; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

static int month3(const char *p)
{
    for (int i = 0; i < 12; i++)
        if (memcmp(p, MONTHS[i], 3) == 0)
            return i + 1;
    return -1;
}

static int day3(const char *p)
{
    for (int i = 0; i < 7; i++)
        if (memcmp(p, DAYS[i], 3) == 0)
            return 1;
    return 0;
}

/* "HH:MM:SS" at p[0..8): seconds of the day, or -1. Second 60 is a leap second. */
static int64_t time_of_day(const char *p)
{
    if (p[2] != ':' || p[5] != ':')
        return -1;
    int hh = digits(p, 2), mm = digits(p + 3, 2), ss = digits(p + 6, 2);
    if (hh < 0 || mm < 0 || ss < 0 || hh > 23 || mm > 59 || ss > 60)
        return -1;
    return (int64_t)hh * 3600 + mm * 60 + ss;
}

static int64_t mk_time(int64_t y, int mon, int day, int64_t tod)
{
    static const unsigned char mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 0 || mon < 1 || mon > 12 || day < 1 || tod < 0)
        return -1;
    if (day > mdays[mon - 1] + (mon == 2 && is_leap(y)))
        return -1;
    int64_t t = days_from_civil(y, (unsigned)mon, (unsigned)day) * 86400 + tod;
    return t < 0 ? 0 : t;
}

int64_t sl_httpdate_parse(const char *v, size_t n, int64_t now_s)
{
    if (!v)
        return -1;
    const char *p = v, *e = v + n;
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    size_t len = (size_t)(e - p);
    if (len == 29 && p[3] == ',') { /* IMF-fixdate */
        if (!day3(p) || p[4] != ' ' || p[7] != ' ' || p[11] != ' ' || p[16] != ' ' ||
            p[25] != ' ' || memcmp(p + 26, "GMT", 3) != 0)
            return -1;
        int day = digits(p + 5, 2), year = digits(p + 12, 4);
        if (day < 0 || year < 0)
            return -1;
        return mk_time(year, month3(p + 8), day, time_of_day(p + 17));
    }
    if (len == 24 && p[3] == ' ') { /* asctime-date */
        if (!day3(p) || p[7] != ' ' || p[10] != ' ' || p[19] != ' ')
            return -1;
        int day = p[8] == ' ' ? digits(p + 9, 1) : digits(p + 8, 2);
        int year = digits(p + 20, 4);
        if (day < 0 || year < 0)
            return -1;
        return mk_time(year, month3(p + 4), day, time_of_day(p + 11));
    }
    for (int i = 0; i < 7; i++) { /* rfc850-date */
        size_t dl = strlen(DAYS_LONG[i]);
        if (len != dl + 24 || memcmp(p, DAYS_LONG[i], dl) != 0)
            continue;
        const char *q = p + dl;
        if (q[0] != ',' || q[1] != ' ' || q[4] != '-' || q[8] != '-' || q[11] != ' ' ||
            q[20] != ' ' || memcmp(q + 21, "GMT", 3) != 0)
            return -1;
        int day = digits(q + 2, 2), yy = digits(q + 9, 2);
        if (day < 0 || yy < 0)
            return -1;
        int64_t year;
        if (now_s > 0) {
            int64_t ny;
            unsigned nm, nd;
            civil_from_days(now_s / 86400, &ny, &nm, &nd);
            year = ny - ny % 100 + yy;
            if (year > ny + 50) /* §5.6.7: more than 50 years ahead is the last century */
                year -= 100;
        } else {
            year = yy < 70 ? 2000 + yy : 1900 + yy;
        }
        return mk_time(year, month3(q + 5), day, time_of_day(q + 12));
    }
    return -1;
}

static void two(char *o, unsigned v)
{
    o[0] = (char)('0' + v / 10);
    o[1] = (char)('0' + v % 10);
}

size_t sl_httpdate_format(int64_t t, char out[SL_HTTPDATE_LEN])
{
    if (t < 0 || t > SL_HTTPDATE_MAX)
        return 0;
    int64_t days = t / 86400, sod = t % 86400, y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    memcpy(out, DAYS[(days + 4) % 7], 3); /* 1970-01-01 was a Thursday */
    memcpy(out + 3, ", ", 2);
    two(out + 5, d);
    out[7] = ' ';
    memcpy(out + 8, MONTHS[m - 1], 3);
    out[11] = ' ';
    two(out + 12, (unsigned)(y / 100));
    two(out + 14, (unsigned)(y % 100));
    out[16] = ' ';
    two(out + 17, (unsigned)(sod / 3600));
    out[19] = ':';
    two(out + 20, (unsigned)(sod / 60 % 60));
    out[22] = ':';
    two(out + 23, (unsigned)(sod % 60));
    memcpy(out + 25, " GMT", 4);
    return SL_HTTPDATE_LEN;
}
