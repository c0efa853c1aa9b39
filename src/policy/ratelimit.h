/* ratelimit.h - GCRA rate limits in memory: one timestamp (the theoretical arrival time,
 * TAT) per key and limit, in a bounded table shared by every worker.
 * Owns: the decision for a request against every limit that applies to it, atomically
 * (it passes only if all pass; a rejected request consumes no budget from any limit),
 * and the numbers the IETF RateLimit fields need. Never blocks, never allocates after
 * sl_rl_new; updates are lock-free per key (compare-and-swap). */
#ifndef SL_RATELIMIT_H
#define SL_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "../core/common.h"

/* One configured limit, precomputed. rate N/period: emission interval T = period/N.
 * Without burst, N requests may arrive at once (tolerance tau = (N-1) x T); with burst B,
 * B requests beyond the first (tau = B x T), exactly as nginx's limit_req burst=B nodelay. */
typedef struct sl_rl_limit {
    uint64_t t_ns;      /* emission interval */
    uint64_t tau_ns;    /* burst tolerance */
    uint32_t count;     /* N, the quota for the RateLimit fields (q=) */
    uint32_t id;        /* distinct per limit: part of every key */
    uint64_t period_ms; /* the window for the RateLimit fields (w=) */
    int dry_run;        /* counts, never rejects */
} sl_rl_limit_t;

/* Fill l from a rate (count per period_ms) and burst (has_burst = 0: N at once).
 * 0, or SL_EINVAL (count 0, period 0). */
int sl_rl_limit_init(sl_rl_limit_t *l, uint32_t id, uint32_t count, uint64_t period_ms,
                     int has_burst, uint32_t burst, int dry_run);

typedef struct sl_ratelimiter sl_ratelimiter_t;

/* A table of at most max_keys (key, limit) entries. NULL when out of memory. */
sl_ratelimiter_t *sl_rl_new(size_t max_keys);
void sl_rl_free(sl_ratelimiter_t *rl);

/* One limit to check for a request: which limit, and the hash of the request's key for it
 * (client address, user, header value...; the table mixes in limit->id). The out fields
 * are filled by sl_rl_decide for every check, allowed or not. */
typedef struct sl_rl_check {
    const sl_rl_limit_t *limit;
    uint64_t key;
    /* out */
    int allowed;            /* this limit alone would allow the request */
    uint64_t remaining;     /* requests still allowed right after this decision (r=) */
    uint64_t reset_s;       /* seconds until the quota is full again (t=), rounded up */
    uint64_t retry_after_s; /* when rejected: seconds until one request passes, rounded up */
} sl_rl_check_t;

/* Decide for one request against checks[0..n) at now_ns (a monotonic clock; the caller
 * passes it so tests can use a fake one). Returns 1 when every limit that is not dry_run
 * allows it: then every limit's state is advanced (dry-run ones too); else 0 and no
 * state changes. Any thread; lock-free. n <= 16. */
int sl_rl_decide(sl_ratelimiter_t *rl, sl_rl_check_t *checks, unsigned n, uint64_t now_ns);

/* Entries in use, and entries evicted to make room (metrics). */
uint64_t sl_rl_size(const sl_ratelimiter_t *rl);
uint64_t sl_rl_evictions(const sl_ratelimiter_t *rl);

#endif
