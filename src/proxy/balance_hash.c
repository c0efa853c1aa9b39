/* balance_hash.c - consistent hashing with a Maglev lookup table (Eisenbud et al., NSDI
 * 2016): a request goes to table[hash % size]. Owns the table's life: it is rebuilt on
 * the control thread when membership changes and published with one atomic store, so
 * pick() is a load, a modulo and an array read; it never allocates, locks or blocks.
 * The hash of keys is sl_hash_bytes (core/hash.h). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "balance.h"


#define EMPTY UINT32_MAX
#define GRACE_MS 10000 /* a retired table is freed once it is this old */
#define MIN_SIZE 65537 /* the Maglev paper's small table */

/* One published table. Never changed after publication: a rebuild makes a new one. */
typedef struct mg_table {
    struct mg_table *next_retired; /* the retired list (control thread only) */
    uint64_t retired_ms;           /* when it was replaced (CLOCK_MONOTONIC) */
    uint32_t size;                 /* M: a prime, so every skip walks the whole table */
    uint32_t nmembers;
    uint32_t *members; /* the slots in the table, in build order (after entry) */
    uint32_t *weights; /* their weights when built (after members) */
    uint32_t entry[];  /* M slot indices */
} mg_table_t;

/* Readers load `table` with acquire for the length of one pick and keep no pointer after
 * it. A replaced table therefore only has to outlive the picks already under way, which
 * take microseconds: it waits on `retired` and is freed by the first changed() (or the
 * destroy()) at least GRACE_MS later - ten seconds is many orders of magnitude more than
 * a pick can take, even on a worker descheduled mid-pick. No reader counts, no epochs. */
typedef struct hash_state {
    mg_table_t *table; /* atomic: NULL when no server is a member */
    mg_table_t *retired;
} hash_state_t;

/* ---- building a table (control thread) ------------------------------------------- */

/* Per member while building: its place in its own permutation of the table. */
typedef struct builder {
    uint32_t slot;
    uint32_t weight;
    uint32_t pos;    /* next preferred entry */
    uint32_t skip;   /* step through the permutation, in [1, M) */
    uint64_t credit; /* weight earned towards the next turn */
} builder_t;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int is_prime(uint32_t v)
{
    if (v < 2)
        return 0;
    for (uint32_t d = 2; (uint64_t)d * d <= v; d++)
        if (v % d == 0)
            return 0;
    return 1;
}

/* The table size for a pool: the smallest prime >= max(65537, 100 x cap). It depends on
 * cap, not on the servers present, so it never changes during the pool's life: changing
 * M would move nearly every key. 100 entries per server keep the shares within about 1%
 * of the weights (the paper's bound). */
static uint32_t table_size(uint32_t cap)
{
    uint64_t want = (uint64_t)cap * 100;
    if (want < MIN_SIZE)
        want = MIN_SIZE;
    if (want > UINT32_MAX / 2)
        want = UINT32_MAX / 2;
    uint32_t m = (uint32_t)want;
    while (!is_prime(m))
        m++;
    return m;
}

/* A server's identity for its permutation: its address, so a server keeps its place in
 * the table across restarts, reloads and gateways whatever slot it lands in. Servers
 * without an address text (tests) use their slot. */
static uint64_t identity_hash(const sl_server_t *s, uint64_t seed)
{
    size_t len = strnlen(s->conf.addr.text, sizeof(s->conf.addr.text));
    if (len)
        return sl_hash_seeded(s->conf.addr.text, len, seed);
    return sl_hash_seeded(&s->index, sizeof(s->index), seed ^ SL_HASH_K2);
}

static int is_member(const sl_server_t *s)
{
    uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
    return st != SL_SRV_REMOVED && st != SL_SRV_DRAINING;
}

/* Members in address order, so turn order (who wins a contested entry) depends on the
 * set of servers, not on the order they were configured or added in. */
static int by_identity(const void *pa, const void *pb, void *pool)
{
    const sl_server_t *slots = ((const sl_pool_t *)pool)->slots;
    const sl_server_t *a = &slots[*(const uint32_t *)pa];
    const sl_server_t *b = &slots[*(const uint32_t *)pb];
    int c = strncmp(a->conf.addr.text, b->conf.addr.text, sizeof(a->conf.addr.text));
    if (c)
        return c;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* Maglev's population, weighted: members take turns in rounds; each round a member earns
 * its weight in credit and takes a turn for each `wmax` of credit it holds, so a server
 * of weight w gets w/wmax turns per round (the heaviest one every round). A turn claims
 * the member's next preferred entry that is still empty. Ends when all M are claimed. */
static void populate(mg_table_t *t, builder_t *b, uint32_t nb)
{
    uint32_t m = t->size, wmax = 1, filled = 0;
    for (uint32_t j = 0; j < nb; j++)
        if (b[j].weight > wmax)
            wmax = b[j].weight;
    for (uint32_t e = 0; e < m; e++)
        t->entry[e] = EMPTY;
    for (;;) {
        for (uint32_t j = 0; j < nb; j++) {
            b[j].credit += b[j].weight;
            if (b[j].credit < wmax)
                continue;
            b[j].credit -= wmax;
            uint32_t pos;
            do {
                pos = b[j].pos;
                b[j].pos += b[j].skip;
                if (b[j].pos >= m)
                    b[j].pos -= m;
            } while (t->entry[pos] != EMPTY);
            t->entry[pos] = b[j].slot;
            if (++filled == m)
                return;
        }
    }
}

/* A table for pool's current members, or NULL with *err set (SL_ENOMEM), or NULL with
 * *err 0 when no server is a member. */
static mg_table_t *build(const sl_pool_t *pool, int *err)
{
    uint32_t n = sl_pool_size(pool);
    *err = 0;
    uint32_t *members = malloc((n ? n : 1) * sizeof(*members));
    if (!members) {
        *err = SL_ENOMEM;
        return NULL;
    }
    uint32_t nm = 0;
    for (uint32_t i = 0; i < n; i++)
        if (is_member(&pool->slots[i]))
            members[nm++] = i;
    if (nm == 0) {
        free(members);
        return NULL;
    }
    qsort_r(members, nm, sizeof(*members), by_identity, (void *)pool);

    uint32_t m = table_size(pool->cap);
    size_t bytes = sizeof(mg_table_t) + ((size_t)m + 2 * (size_t)nm) * sizeof(uint32_t);
    mg_table_t *t = malloc(bytes);
    builder_t *b = malloc(nm * sizeof(*b));
    if (!t || !b) {
        free(t);
        free(b);
        free(members);
        *err = SL_ENOMEM;
        return NULL;
    }
    t->next_retired = NULL;
    t->retired_ms = 0;
    t->size = m;
    t->nmembers = nm;
    t->members = t->entry + m;
    t->weights = t->members + nm;
    for (uint32_t j = 0; j < nm; j++) {
        const sl_server_t *s = &pool->slots[members[j]];
        uint32_t w = s->conf.weight ? s->conf.weight : 1;
        t->members[j] = members[j];
        t->weights[j] = w;
        b[j] = (builder_t){.slot = members[j],
                           .weight = w,
                           .pos = (uint32_t)(identity_hash(s, SL_HASH_K0) % m),
                           .skip = (uint32_t)(identity_hash(s, SL_HASH_K3) % (m - 1)) + 1};
    }
    populate(t, b, nm);
    free(b);
    free(members);
    return t;
}

static int same_members(const mg_table_t *a, const mg_table_t *b)
{
    if (!a || !b)
        return a == b;
    return a->nmembers == b->nmembers &&
           !memcmp(a->members, b->members, a->nmembers * sizeof(uint32_t)) &&
           !memcmp(a->weights, b->weights, a->nmembers * sizeof(uint32_t));
}

/* Free retired tables older than the grace period (all of them when all is set). */
static void sweep(hash_state_t *st, int all)
{
    uint64_t now = now_ms();
    mg_table_t **pp = &st->retired;
    while (*pp) {
        mg_table_t *t = *pp;
        if (all || now - t->retired_ms >= GRACE_MS) {
            *pp = t->next_retired;
            free(t);
        } else {
            pp = &t->next_retired;
        }
    }
}

/* Publish t (may be NULL) and retire the table it replaces. */
static void publish(hash_state_t *st, mg_table_t *t)
{
    mg_table_t *old = __atomic_exchange_n(&st->table, t, __ATOMIC_ACQ_REL);
    if (old) {
        old->retired_ms = now_ms();
        old->next_retired = st->retired;
        st->retired = old;
    }
}

static int hash_init(sl_pool_t *pool)
{
    hash_state_t *st = calloc(1, sizeof(*st));
    if (!st)
        return SL_ENOMEM;
    int err;
    mg_table_t *t = build(pool, &err);
    if (err) {
        free(st);
        return err;
    }
    st->table = t;
    pool->state = st;
    return 0;
}

/* Rebuild from the current members (servers not REMOVED or DRAINING: a server that is
 * CHECKING or passively down keeps its entries and pick() steps over them, so its keys
 * come back when it does). The proxy calls this when a server is added, starts draining
 * or is removed. A call that changes nothing keeps the table. Out of memory: the old
 * table stays in service (pick() still skips servers that left, as they are unusable),
 * and the next changed() tries again. */
static void hash_changed(sl_pool_t *pool)
{
    hash_state_t *st = pool->state;
    sweep(st, 0);
    int err;
    mg_table_t *t = build(pool, &err);
    if (err)
        return;
    if (same_members(t, st->table)) {
        free(t);
        return;
    }
    publish(st, t);
}

/* Past a server that cannot take the request (down, not yet healthy, already tried), the
 * key probes further entries, in an order its hash decides, until one's server can take
 * it. Each probe is a pseudo-random entry, so a dead server's keys spread over the others
 * in proportion to their shares; every other key stays put, and the keys come back when
 * the server does. (Not the next entry, as a plain walk would: Maglev's neighbours are
 * correlated - a server's entries are the start of an arithmetic progression - and with
 * 4 servers walking forward gave one heir under half the keys another got.) The order is
 * the same for every worker and for a retry of the same request (which adds to the tried
 * list). The members are scanned first: that answers "nobody" without probing, and gives
 * the answer for the rare key whose probes all land on unusable servers (when nearly the
 * whole table belongs to them, or a usable server too light to own an entry). */
#define PROBES 64

static sl_server_t *fallback(sl_pool_t *pool, const mg_table_t *t, uint64_t hash,
                             const sl_pick_t *ctx)
{
    sl_server_t *last_resort = NULL;
    uint32_t j = (uint32_t)(hash % t->nmembers);
    for (uint32_t k = 0; k < t->nmembers; k++, j = j + 1 < t->nmembers ? j + 1 : 0) {
        sl_server_t *s = &pool->slots[t->members[j]];
        if (sl_server_usable(s, ctx)) {
            last_resort = s;
            break;
        }
    }
    if (!last_resort)
        return NULL;
    for (uint64_t k = 1; k <= PROBES; k++) {
        uint64_t z = hash + k * 0x9e3779b97f4a7c15ULL; /* splitmix64's sequence */
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        sl_server_t *s = &pool->slots[t->entry[z % t->size]];
        if (sl_server_usable(s, ctx))
            return s;
    }
    return last_resort;
}

static sl_server_t *hash_pick(sl_pool_t *pool, const sl_pick_t *ctx)
{
    hash_state_t *st = pool->state;
    const mg_table_t *t = __atomic_load_n(&st->table, __ATOMIC_ACQUIRE);
    if (SL_UNLIKELY(!t))
        return NULL;
    sl_server_t *s = &pool->slots[t->entry[ctx->hash % t->size]];
    if (SL_LIKELY(sl_server_usable(s, ctx)))
        return s;
    return fallback(pool, t, ctx->hash, ctx);
}

/* Frees the table and every retired one at once: the caller guarantees no pick on this
 * pool is under way or will start (workers stopped or past a grace period of their own). */
static void hash_destroy(sl_pool_t *pool)
{
    hash_state_t *st = pool->state;
    if (st) {
        sweep(st, 1);
        free(st->table);
        free(st);
    }
    pool->state = NULL;
}

const sl_balancer_ops_t sl_balance_hash = {.name = "hash",
                                           .init = hash_init,
                                           .pick = hash_pick,
                                           .changed = hash_changed,
                                           .destroy = hash_destroy};
