/* hash.h - the one hash sluice applies to keys: balancing keys (hash balance, Maglev
 * permutations), rate-limit keys, client addresses. Fast and well spread, the same in
 * every process and on every machine (gateways sharing a config, or Redis, agree), not
 * keyed: it does not resist crafted collisions, and nothing relies on it doing so. */
#ifndef SL_HASH_H
#define SL_HASH_H

#include <stddef.h>
#include <stdint.h>

#define SL_HASH_K0 0xa0761d6478bd642fULL
#define SL_HASH_K1 0xe7037ed1a0b428dbULL
#define SL_HASH_K2 0x8ebc6af09c88c6e3ULL
#define SL_HASH_K3 0x589965cc75374cc3ULL

/* The hash of n bytes at p (p may be NULL when n is 0), with a seed. Any thread. */
uint64_t sl_hash_seeded(const void *p, size_t n, uint64_t seed);

/* sl_hash_seeded with seed 0. */
uint64_t sl_hash_bytes(const void *p, size_t n);

#endif
