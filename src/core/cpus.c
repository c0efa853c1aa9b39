/* cpus.c - CPUs the process may use; see cpus.h. */
#include "cpus.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A decimal number at *p (at most 18 digits), advancing *p. -1 if none. */
static long long number(const char **p, const char *end)
{
    long long v = 0;
    int digits = 0;
    while (*p < end && **p >= '0' && **p <= '9' && digits < 18) {
        v = v * 10 + (**p - '0');
        (*p)++;
        digits++;
    }
    return digits ? v : -1;
}

int sl_cpu_quota_v1(long long quota_us, long long period_us)
{
    if (quota_us <= 0 || period_us <= 0)
        return 0;
    long long n = (quota_us + period_us - 1) / period_us;
    return n > 4096 ? 4096 : (int)n;
}

int sl_cpu_quota_v2(const char *s, size_t n)
{
    const char *p = s, *end = s + n;
    while (end > p && (end[-1] == '\n' || end[-1] == ' '))
        end--;
    long long quota;
    if (end - p >= 3 && memcmp(p, "max", 3) == 0) {
        p += 3;
        quota = -1;
    } else if ((quota = number(&p, end)) < 0) {
        return -1;
    }
    if (p >= end || *p != ' ')
        return -1;
    p++;
    long long period = number(&p, end);
    if (period <= 0 || p != end)
        return -1;
    return quota < 0 ? 0 : sl_cpu_quota_v1(quota, period);
}

static int read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = 0;
    return (int)n;
}

int sl_cpu_count(void)
{
    int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    char buf[128];
    int len, quota = 0;
    if ((len = read_file("/sys/fs/cgroup/cpu.max", buf, sizeof(buf))) > 0) {
        quota = sl_cpu_quota_v2(buf, (size_t)len);
    } else {
        char b2[64];
        if (read_file("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", buf, sizeof(buf)) > 0 &&
            read_file("/sys/fs/cgroup/cpu/cpu.cfs_period_us", b2, sizeof(b2)) > 0)
            quota = sl_cpu_quota_v1(atoll(buf), atoll(b2));
    }
    if (quota > 0 && quota < n)
        n = quota;
    return n > 0 ? n : 1;
}
