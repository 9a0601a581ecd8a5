/*
 * partition.h - split a labelled dataset among simulated clients: IID,
 * label shards (McMahan et al. 2017) and a per-class Dirichlet split
 * (Yurochkin et al. 2019; Hsu et al. 2019 draw per-client mixes instead).
 * See docs/data.md.
 *
 * A partition is decided by (spec, labels, num_clients, seed) alone. The
 * randomness is the INSECURE deterministic mode of common/rng.h keyed by
 * the seed: partitioning is an experimental setup, not a privacy
 * mechanism, and reproducing a split from its seed is the point.
 *
 * A roost_partition assigns every example index 0..count-1 to exactly one
 * client, and every client gets at least one example. Each client's
 * indices are in ascending order. Memory is O(count + num_clients). It is
 * immutable after creation; concurrent readers need no locking.
 */
#ifndef ROOST_COMMON_PARTITION_H
#define ROOST_COMMON_PARTITION_H

#include <roost/roost.h>

#include "common/error.h"

#include <stddef.h>
#include <stdint.h>

enum roost_partition_kind {
    ROOST_PARTITION_IID = 1,
    ROOST_PARTITION_SHARDS = 2,
    ROOST_PARTITION_DIRICHLET = 3
};

#define ROOST_PARTITION_DEFAULT_SHARDS 2u
#define ROOST_PARTITION_MAX_SHARDS 1000000u
#define ROOST_PARTITION_MIN_ALPHA 1e-6
#define ROOST_PARTITION_MAX_ALPHA 1e6

/* What kind of split, with its parameter. */
typedef struct roost_partition_spec {
    int kind;                   /* enum roost_partition_kind */
    uint32_t shards_per_client; /* SHARDS: 1..ROOST_PARTITION_MAX_SHARDS */
    double alpha;               /* DIRICHLET: concentration, in
                                   [MIN_ALPHA, MAX_ALPHA] */
} roost_partition_spec;

/*
 * roost_partition_spec_parse - parse "iid", "shards" (2 shards per client),
 * "shards:S" or "dirichlet:ALPHA" (ALPHA a positive decimal, e.g. 0.5).
 * Returns ROOST_OK or ROOST_ECONFIG with a message saying what is wrong
 * (em may be NULL); ROOST_EINVAL for NULL arguments.
 */
int roost_partition_spec_parse(roost_partition_spec *out, const char *text,
                               roost_errmsg *em);

/*
 * roost_partition_spec_format - the canonical text of spec ("iid",
 * "shards:2", "dirichlet:0.5") into buf (cap bytes, NUL-terminated).
 * Returns ROOST_OK, ROOST_EINVAL (bad spec), or ROOST_ETOOSMALL when cap is
 * too small (*len, if not NULL, then holds the length needed without NUL).
 */
int roost_partition_spec_format(const roost_partition_spec *spec, char *buf,
                                size_t cap, size_t *len);

typedef struct roost_partition roost_partition;

/*
 * roost_partition_create - split examples 0..count-1, whose labels are
 * labels[0..count) (each < num_classes <= 256), among num_clients clients.
 * labels may be NULL for IID only. Requires 1 <= num_clients <= count <=
 * UINT32_MAX; SHARDS also needs num_clients * shards_per_client <= count.
 * alloc may be NULL; the partition keeps the pointer.
 *
 * Returns ROOST_OK; ROOST_EINVAL (NULL argument, bad spec, sizes out of
 * range); ROOST_EDATA (a label >= num_classes); ROOST_ENOMEM;
 * ROOST_ECRYPTO (the generator failed). On failure *out is NULL.
 */
int roost_partition_create(roost_partition **out, const roost_allocator *alloc,
                           const roost_partition_spec *spec,
                           const uint8_t *labels, size_t count,
                           uint32_t num_classes, uint32_t num_clients,
                           uint64_t seed, roost_errmsg *em);

/* roost_partition_destroy - free; NULL does nothing. */
void roost_partition_destroy(roost_partition *p);

uint32_t roost_partition_num_clients(const roost_partition *p);

/* Total number of indices (the dataset's count). */
size_t roost_partition_total(const roost_partition *p);

/* roost_partition_client - the ascending example indices of client c
 * (c < num_clients); *n receives their number (>= 1). Owned by p. */
const uint32_t *roost_partition_client(const roost_partition *p, uint32_t c,
                                       size_t *n);

#endif
