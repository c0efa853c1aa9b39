/* cpus.h - how many CPUs this process may use: the affinity mask, bounded by a cgroup CPU
 * quota (a container's CPU limit: Kubernetes `resources.limits.cpu`, docker --cpus), so
 * `workers: auto` starts one worker per CPU the process can really use, not per CPU of
 * the node. */
#ifndef SL_CPUS_H
#define SL_CPUS_H

#include <stddef.h>

/* The CPUs a cgroup v2 `cpu.max` value allows ("QUOTA PERIOD" or "max PERIOD"), rounded
 * up: 0 for no limit, -1 when the text is not such a value. */
int sl_cpu_quota_v2(const char *s, size_t n);

/* The same from cgroup v1's cpu.cfs_quota_us and cpu.cfs_period_us (quota -1: no limit). */
int sl_cpu_quota_v1(long long quota_us, long long period_us);

/* CPUs this process may use: the affinity mask's count, bounded by the cgroup's quota
 * (v2 at /sys/fs/cgroup/cpu.max, else v1), at least 1. */
int sl_cpu_count(void);

#endif
