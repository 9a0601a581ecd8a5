/*
 * partition.c - IID, label-shard and Dirichlet partitioners.
 *
 * Every partitioner first decides owner[i], the client of example i, and
 * one counting pass turns owner[] into the partition's layout: one index
 * array of length count (each client's indices contiguous and ascending)
 * and num_clients + 1 offsets. So the structure is O(count) whatever the
 * kind, and "every index exactly once" holds by construction.
 *
 * Randomness comes from a roost_rng in its insecure deterministic mode,
 * keyed by the caller's seed on a stream reserved for partitioning:
 * partitions are experimental setup and must be reproducible; they protect
 * nothing. IID and shards use only integer draws, so a seed gives the same
 * split on every platform; Dirichlet goes through log/exp/sqrt/cos, so it
 * is reproducible for a given C library (a last-bit difference in libm
 * could in principle move one boundary example).
 *
 * No locking: a partition is immutable after creation.
 */
#include "common/partition.h"

#include "common/alloc.h"
#include "common/rng.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The rng stream of partitioning ("part" in ASCII), so the same seed used
 * elsewhere in a simulation draws unrelated numbers here. */
#define PARTITION_RNG_STREAM 0x70617274u

struct roost_partition {
    const roost_allocator *alloc;
    uint32_t num_clients;
    size_t total;
    size_t *offsets;   /* num_clients + 1; client c is [offsets[c], +1) */
    uint32_t *indices; /* total */
};

/* ---------------------------------------------------------------------- */
/* Specs.                                                                 */
/* ---------------------------------------------------------------------- */

static int
spec_check(const roost_partition_spec *spec, roost_errmsg *em, int code)
{
    switch (spec->kind) {
    case ROOST_PARTITION_IID:
        return ROOST_OK;
    case ROOST_PARTITION_SHARDS:
        if (spec->shards_per_client < 1 ||
            spec->shards_per_client > ROOST_PARTITION_MAX_SHARDS)
            return roost_fail(em, code, "shards per client %u outside 1..%u",
                              (unsigned)spec->shards_per_client,
                              (unsigned)ROOST_PARTITION_MAX_SHARDS);
        return ROOST_OK;
    case ROOST_PARTITION_DIRICHLET:
        /* The negated form also refuses NaN. */
        if (!(spec->alpha >= ROOST_PARTITION_MIN_ALPHA &&
              spec->alpha <= ROOST_PARTITION_MAX_ALPHA))
            return roost_fail(em, code, "Dirichlet alpha %g outside [%g, %g]",
                              spec->alpha, ROOST_PARTITION_MIN_ALPHA,
                              ROOST_PARTITION_MAX_ALPHA);
        return ROOST_OK;
    default:
        return roost_fail(em, code, "unknown partition kind %d", spec->kind);
    }
}

int
roost_partition_spec_parse(roost_partition_spec *out, const char *text,
                           roost_errmsg *em)
{
    static const char usage[] =
        "expected iid, shards, shards:S or dirichlet:ALPHA";
    if (out == NULL || text == NULL)
        return roost_fail(em, ROOST_EINVAL, "NULL argument");
    memset(out, 0, sizeof(*out));
    roost_partition_spec spec = {0};
    if (strcmp(text, "iid") == 0) {
        spec.kind = ROOST_PARTITION_IID;
    } else if (strcmp(text, "shards") == 0) {
        spec.kind = ROOST_PARTITION_SHARDS;
        spec.shards_per_client = ROOST_PARTITION_DEFAULT_SHARDS;
    } else if (strncmp(text, "shards:", 7) == 0) {
        const char *num = text + 7;
        char *end;
        /* strtoul accepts leading space and signs; insist on digits. */
        if (*num < '0' || *num > '9')
            return roost_fail(em, ROOST_ECONFIG,
                              "partition \"%s\": shards per client must be a "
                              "positive integer",
                              text);
        errno = 0;
        unsigned long s = strtoul(num, &end, 10);
        if (*end != '\0' || errno != 0 || s < 1 ||
            s > ROOST_PARTITION_MAX_SHARDS)
            return roost_fail(em, ROOST_ECONFIG,
                              "partition \"%s\": shards per client must be an "
                              "integer in 1..%u",
                              text, (unsigned)ROOST_PARTITION_MAX_SHARDS);
        spec.kind = ROOST_PARTITION_SHARDS;
        spec.shards_per_client = (uint32_t)s;
    } else if (strncmp(text, "dirichlet:", 10) == 0) {
        const char *num = text + 10;
        char *end;
        if (!((*num >= '0' && *num <= '9') || *num == '.'))
            return roost_fail(em, ROOST_ECONFIG,
                              "partition \"%s\": alpha must be a positive "
                              "decimal number",
                              text);
        errno = 0;
        double alpha = strtod(num, &end);
        if (*end != '\0' || errno != 0 || !isfinite(alpha))
            return roost_fail(em, ROOST_ECONFIG,
                              "partition \"%s\": alpha must be a positive "
                              "decimal number",
                              text);
        spec.kind = ROOST_PARTITION_DIRICHLET;
        spec.alpha = alpha;
        int rc = spec_check(&spec, em, ROOST_ECONFIG);
        if (rc != ROOST_OK)
            return rc;
    } else if (strcmp(text, "dirichlet") == 0) {
        return roost_fail(em, ROOST_ECONFIG,
                          "partition \"dirichlet\" needs a concentration, "
                          "e.g. dirichlet:0.5");
    } else {
        return roost_fail(em, ROOST_ECONFIG, "unknown partition \"%s\": %s",
                          text, usage);
    }
    *out = spec;
    return ROOST_OK;
}

int
roost_partition_spec_format(const roost_partition_spec *spec, char *buf,
                            size_t cap, size_t *len)
{
    if (spec == NULL || (buf == NULL && cap > 0))
        return ROOST_EINVAL;
    if (spec_check(spec, NULL, ROOST_EINVAL) != ROOST_OK)
        return ROOST_EINVAL;
    char tmp[64];
    int n;
    if (spec->kind == ROOST_PARTITION_IID)
        n = snprintf(tmp, sizeof(tmp), "iid");
    else if (spec->kind == ROOST_PARTITION_SHARDS)
        n = snprintf(tmp, sizeof(tmp), "shards:%u",
                     (unsigned)spec->shards_per_client);
    else /* %.17g round-trips the double through the parser. */
        n = snprintf(tmp, sizeof(tmp), "dirichlet:%.17g", spec->alpha);
    if (n < 0)
        return ROOST_EINVAL;
    if (len != NULL)
        *len = (size_t)n;
    if ((size_t)n >= cap)
        return ROOST_ETOOSMALL;
    memcpy(buf, tmp, (size_t)n + 1);
    return ROOST_OK;
}

/* ---------------------------------------------------------------------- */
/* Random helpers.                                                        */
/* ---------------------------------------------------------------------- */

/* shuffle - Fisher-Yates over a[0..n) with unbiased bounded draws. */
static int
shuffle(roost_rng *rng, uint32_t *a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        uint64_t j;
        int rc = roost_rng_below(rng, i, &j);
        if (rc != ROOST_OK)
            return rc;
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
    return ROOST_OK;
}

/* uniform_open - a uniform double in (0, 1], safe for log(). */
static int
uniform_open(roost_rng *rng, double *out)
{
    double u;
    int rc = roost_rng_uniform(rng, &u);
    *out = 1.0 - u;
    return rc;
}

/* std_normal - Box-Muller. Partition sampling is not DP noise, so the
 * floating-point concerns of dp/'s Gaussian do not apply here. */
static int
std_normal(roost_rng *rng, double *out)
{
    static const double two_pi = 6.283185307179586476925286766559;
    double u1, u2;
    int rc = uniform_open(rng, &u1);
    if (rc == ROOST_OK)
        rc = roost_rng_uniform(rng, &u2);
    if (rc != ROOST_OK)
        return rc;
    *out = sqrt(-2.0 * log(u1)) * cos(two_pi * u2);
    return ROOST_OK;
}

/* log_gamma_variate - log of a Gamma(shape, 1) draw, by Marsaglia and
 * Tsang (2000) for shape >= 1 and the boost G(a) = G(a + 1) U^(1/a) for
 * shape < 1. Returned in log space because for small shapes the boost
 * U^(1/a) underflows to 0 (alpha = 0.01 gives exponents near -3600), and
 * the Dirichlet normalisation below works on logs. */
static int
log_gamma_variate(roost_rng *rng, double shape, double *out)
{
    double log_boost = 0.0;
    if (shape < 1.0) {
        double u;
        int rc = uniform_open(rng, &u);
        if (rc != ROOST_OK)
            return rc;
        log_boost = log(u) / shape;
        shape += 1.0;
    }
    double d = shape - 1.0 / 3.0;
    double c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, u;
        int rc = std_normal(rng, &x);
        if (rc != ROOST_OK)
            return rc;
        double v = 1.0 + c * x;
        if (v <= 0.0)
            continue;
        v = v * v * v;
        rc = uniform_open(rng, &u);
        if (rc != ROOST_OK)
            return rc;
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v)) {
            *out = log(d) + log(v) + log_boost;
            return ROOST_OK;
        }
    }
}

/* dirichlet - p[0..k) ~ Dir(alpha, ..., alpha), normalised in log space
 * (log-sum-exp) so that tiny alpha still gives a proper distribution. */
static int
dirichlet(roost_rng *rng, double alpha, double *p, uint32_t k)
{
    double max_log = -HUGE_VAL;
    for (uint32_t j = 0; j < k; j++) {
        int rc = log_gamma_variate(rng, alpha, &p[j]);
        if (rc != ROOST_OK)
            return rc;
        if (p[j] > max_log)
            max_log = p[j];
    }
    double sum = 0.0;
    for (uint32_t j = 0; j < k; j++) {
        p[j] = exp(p[j] - max_log);
        sum += p[j];
    }
    for (uint32_t j = 0; j < k; j++)
        p[j] /= sum;
    return ROOST_OK;
}

/* ---------------------------------------------------------------------- */
/* Partitioners: each fills owner[0..count).                              */
/* ---------------------------------------------------------------------- */

/* partition_iid - shuffle, then cut into num_clients runs whose lengths
 * differ by at most one. */
static int
partition_iid(roost_rng *rng, uint32_t *owner, uint32_t *scratch, size_t count,
              uint32_t num_clients)
{
    for (size_t i = 0; i < count; i++)
        scratch[i] = (uint32_t)i;
    int rc = shuffle(rng, scratch, count);
    if (rc != ROOST_OK)
        return rc;
    size_t base = count / num_clients, extra = count % num_clients, pos = 0;
    for (uint32_t c = 0; c < num_clients; c++) {
        size_t len = base + (c < extra ? 1 : 0);
        for (size_t j = 0; j < len; j++)
            owner[scratch[pos++]] = c;
    }
    return ROOST_OK;
}

/* sort_by_label - scratch = the example indices grouped by label; within a
 * label the order is random, so which examples share a shard does not
 * depend on file order. */
static int
sort_by_label(roost_rng *rng, const uint8_t *labels, size_t count,
              uint32_t num_classes, uint32_t *scratch, size_t *class_start)
{
    memset(class_start, 0, sizeof(size_t) * ((size_t)num_classes + 1));
    for (size_t i = 0; i < count; i++)
        class_start[labels[i] + 1]++;
    for (uint32_t k = 0; k < num_classes; k++)
        class_start[k + 1] += class_start[k];
    size_t next[256];
    memcpy(next, class_start, sizeof(size_t) * num_classes);
    for (size_t i = 0; i < count; i++)
        scratch[next[labels[i]]++] = (uint32_t)i;
    for (uint32_t k = 0; k < num_classes; k++) {
        int rc = shuffle(rng, scratch + class_start[k],
                         class_start[k + 1] - class_start[k]);
        if (rc != ROOST_OK)
            return rc;
    }
    return ROOST_OK;
}

/* partition_shards - McMahan et al. 2017: sort by label, cut into
 * num_clients * S shards of (nearly) equal size, deal S random shards to
 * each client. */
static int
partition_shards(const roost_allocator *alloc, roost_rng *rng,
                 const uint8_t *labels, uint32_t *owner, uint32_t *scratch,
                 size_t count, uint32_t num_classes, uint32_t num_clients,
                 uint32_t per_client, roost_errmsg *em)
{
    size_t num_shards = (size_t)num_clients * per_client;
    size_t class_start[257];
    int rc =
        sort_by_label(rng, labels, count, num_classes, scratch, class_start);
    if (rc != ROOST_OK)
        return rc;
    uint32_t *shard_ids =
        roost_alloc_calloc(alloc, num_shards, sizeof(uint32_t));
    if (shard_ids == NULL)
        return roost_fail(em, ROOST_ENOMEM, "cannot allocate %zu shards",
                          num_shards);
    for (size_t s = 0; s < num_shards; s++)
        shard_ids[s] = (uint32_t)s;
    rc = shuffle(rng, shard_ids, num_shards);
    if (rc == ROOST_OK) {
        /* Position j of the sorted order belongs to shard floor(j *
         * num_shards / count) (sizes differ by at most one); the shard's
         * slot in the shuffled deal names the client. s * count fits in
         * 64 bits because both are below 2^32. */
        for (size_t slot = 0; slot < num_shards; slot++) {
            size_t s = shard_ids[slot];
            uint32_t client = (uint32_t)(slot / per_client);
            size_t lo = (size_t)((uint64_t)s * count / num_shards);
            size_t hi = (size_t)((uint64_t)(s + 1) * count / num_shards);
            for (size_t j = lo; j < hi; j++)
                owner[scratch[j]] = client;
        }
    }
    roost_alloc_free(alloc, shard_ids);
    return rc;
}

/* A binary max-heap of client indices ordered by size, the lower index
 * first among equal sizes (the order a linear scan for the largest would
 * give). */
static bool
heap_before(const size_t *sizes, size_t a, size_t b)
{
    return sizes[a] > sizes[b] || (sizes[a] == sizes[b] && a < b);
}

static void
heap_sift_down(size_t *heap, size_t n, const size_t *sizes, size_t i)
{
    for (;;) {
        size_t best = i, l = 2 * i + 1, r = l + 1;
        if (l < n && heap_before(sizes, heap[l], heap[best]))
            best = l;
        if (r < n && heap_before(sizes, heap[r], heap[best]))
            best = r;
        if (best == i)
            return;
        size_t t = heap[i];
        heap[i] = heap[best];
        heap[best] = t;
        i = best;
    }
}

static void
heap_push(size_t *heap, size_t *n, const size_t *sizes, size_t c)
{
    size_t i = (*n)++;
    heap[i] = c;
    while (i > 0 && heap_before(sizes, heap[i], heap[(i - 1) / 2])) {
        size_t parent = (i - 1) / 2, t = heap[i];
        heap[i] = heap[parent];
        heap[parent] = t;
        i = parent;
    }
}
/* partition_dirichlet - the per-class form (Yurochkin et al. 2019; not Hsu
 * et al.'s per-client label mixes): for each class, proportions over
 * clients ~ Dir(alpha); the class's (shuffled) examples are cut at the
 * rounded cumulative proportions. Then every client left empty takes one
 * example, drawn uniformly, from the currently largest client, so no
 * client is empty; this moves at most num_clients - 1 examples. */
static int
partition_dirichlet(const roost_allocator *alloc, roost_rng *rng,
                    const uint8_t *labels, uint32_t *owner, uint32_t *scratch,
                    size_t count, uint32_t num_classes, uint32_t num_clients,
                    double alpha, roost_errmsg *em)
{
    size_t class_start[257];
    int rc =
        sort_by_label(rng, labels, count, num_classes, scratch, class_start);
    if (rc != ROOST_OK)
        return rc;
    double *p = roost_alloc_calloc(alloc, num_clients, sizeof(double));
    size_t *sizes = roost_alloc_calloc(alloc, num_clients, sizeof(size_t));
    size_t *starts = roost_alloc_calloc(alloc, num_clients, sizeof(size_t));
    size_t *fill = roost_alloc_calloc(alloc, num_clients, sizeof(size_t));
    if (p == NULL || sizes == NULL || starts == NULL || fill == NULL) {
        rc = roost_fail(em, ROOST_ENOMEM, "cannot allocate for %u clients",
                        (unsigned)num_clients);
        goto out;
    }
    for (uint32_t k = 0; k < num_classes && rc == ROOST_OK; k++) {
        size_t n_k = class_start[k + 1] - class_start[k];
        if (n_k == 0)
            continue;
        rc = dirichlet(rng, alpha, p, num_clients);
        if (rc != ROOST_OK)
            break;
        double cum = 0.0;
        size_t lo = 0;
        for (uint32_t c = 0; c < num_clients; c++) {
            cum += p[c];
            size_t hi = n_k;
            if (c + 1 < num_clients) {
                double b = floor(cum * (double)n_k + 0.5);
                hi = b < (double)n_k ? (size_t)b : n_k;
                if (hi < lo)
                    hi = lo;
            }
            for (size_t j = lo; j < hi; j++)
                owner[scratch[class_start[k] + j]] = c;
            sizes[c] += hi - lo;
            lo = hi;
        }
    }
    if (rc != ROOST_OK)
        goto out;
    /* Fix empty clients. Group examples by owner in scratch so that a
     * uniformly random example of a client is one draw away; a donor's
     * live examples are scratch[starts[d] .. starts[d] + sizes[d]). */
    size_t pos = 0;
    for (uint32_t c = 0; c < num_clients; c++) {
        starts[c] = pos;
        pos += sizes[c];
    }
    for (uint32_t c = 0; c < num_clients; c++)
        fill[c] = starts[c];
    for (size_t i = 0; i < count; i++)
        scratch[fill[owner[i]]++] = (uint32_t)i;
    /* The donor is the largest client, the lowest index among equals. A
     * scan per empty client made this quadratic (12.8 s for 60,000
     * clients at alpha 1e-6); a heap of the non-empty clients, reusing
     * fill, picks the same donors in O(log K) each. */
    size_t *heap = fill, n_heap = 0;
    for (uint32_t c = 0; c < num_clients; c++)
        if (sizes[c] != 0)
            heap_push(heap, &n_heap, sizes, c);
    for (uint32_t c = 0; c < num_clients; c++) {
        if (sizes[c] != 0)
            continue;
        uint32_t donor = (uint32_t)heap[0];
        /* count >= num_clients guarantees the largest has >= 2. */
        uint64_t pick;
        rc = roost_rng_below(rng, sizes[donor], &pick);
        if (rc != ROOST_OK)
            goto out;
        size_t last = starts[donor] + sizes[donor] - 1;
        uint32_t moved = scratch[starts[donor] + pick];
        scratch[starts[donor] + pick] = scratch[last];
        scratch[last] = moved;
        sizes[donor]--;
        heap_sift_down(heap, n_heap, sizes, 0);
        sizes[c] = 1;
        heap_push(heap, &n_heap, sizes, c);
        owner[moved] = c;
    }
out:
    roost_alloc_free(alloc, p);
    roost_alloc_free(alloc, sizes);
    roost_alloc_free(alloc, starts);
    roost_alloc_free(alloc, fill);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* The partition object.                                                  */
/* ---------------------------------------------------------------------- */

int
roost_partition_create(roost_partition **out, const roost_allocator *alloc,
                       const roost_partition_spec *spec, const uint8_t *labels,
                       size_t count, uint32_t num_classes, uint32_t num_clients,
                       uint64_t seed, roost_errmsg *em)
{
    if (out == NULL)
        return roost_fail(em, ROOST_EINVAL, "NULL output");
    *out = NULL;
    if (spec == NULL)
        return roost_fail(em, ROOST_EINVAL, "NULL partition spec");
    int rc = spec_check(spec, em, ROOST_EINVAL);
    if (rc != ROOST_OK)
        return rc;
    if (count == 0 || count > UINT32_MAX)
        return roost_fail(em, ROOST_EINVAL,
                          "cannot partition %zu examples (need 1..%u)", count,
                          (unsigned)UINT32_MAX);
    if (num_clients == 0 || num_clients > count)
        return roost_fail(em, ROOST_EINVAL,
                          "cannot give %u clients at least one of %zu "
                          "examples each",
                          (unsigned)num_clients, count);
    if (spec->kind != ROOST_PARTITION_IID) {
        if (labels == NULL)
            return roost_fail(em, ROOST_EINVAL,
                              "label-based partition needs labels");
        if (num_classes == 0 || num_classes > 256)
            return roost_fail(em, ROOST_EINVAL, "class count %u outside 1..256",
                              (unsigned)num_classes);
        for (size_t i = 0; i < count; i++)
            if (labels[i] >= num_classes)
                return roost_fail(em, ROOST_EDATA,
                                  "label %u of example %zu out of range (%u "
                                  "classes)",
                                  (unsigned)labels[i], i,
                                  (unsigned)num_classes);
    }
    if (spec->kind == ROOST_PARTITION_SHARDS &&
        (uint64_t)num_clients * spec->shards_per_client > count)
        return roost_fail(
            em, ROOST_EINVAL, "%u clients x %u shards exceeds %zu examples",
            (unsigned)num_clients, (unsigned)spec->shards_per_client, count);

    roost_rng *rng = NULL;
    uint32_t *owner = roost_alloc_calloc(alloc, count, sizeof(uint32_t));
    uint32_t *scratch = roost_alloc_calloc(alloc, count, sizeof(uint32_t));
    size_t *fill = roost_alloc_calloc(alloc, num_clients, sizeof(size_t));
    roost_partition *p = roost_alloc_calloc(alloc, 1, sizeof(*p));
    if (p != NULL) {
        p->alloc = alloc;
        p->num_clients = num_clients;
        p->total = count;
        p->offsets =
            roost_alloc_calloc(alloc, (size_t)num_clients + 1, sizeof(size_t));
        p->indices = roost_alloc_calloc(alloc, count, sizeof(uint32_t));
    }
    if (owner == NULL || scratch == NULL || fill == NULL || p == NULL ||
        p->offsets == NULL || p->indices == NULL) {
        rc = roost_fail(em, ROOST_ENOMEM, "cannot allocate partition of %zu",
                        count);
        goto out;
    }
    rc = roost_rng_create_insecure_deterministic(&rng, alloc, seed,
                                                 PARTITION_RNG_STREAM);
    if (rc != ROOST_OK) {
        rc = roost_fail(em, rc, "cannot create the partition generator");
        goto out;
    }
    switch (spec->kind) {
    case ROOST_PARTITION_IID:
        rc = partition_iid(rng, owner, scratch, count, num_clients);
        break;
    case ROOST_PARTITION_SHARDS:
        rc = partition_shards(alloc, rng, labels, owner, scratch, count,
                              num_classes, num_clients, spec->shards_per_client,
                              em);
        break;
    default:
        rc = partition_dirichlet(alloc, rng, labels, owner, scratch, count,
                                 num_classes, num_clients, spec->alpha, em);
        break;
    }
    if (rc != ROOST_OK) {
        if (rc == ROOST_ECRYPTO)
            roost_fail(em, rc, "the partition generator failed");
        goto out;
    }
    /* Counting pass: offsets from per-client sizes, then indices in
     * ascending order within each client. */
    for (size_t i = 0; i < count; i++)
        p->offsets[owner[i] + 1]++;
    for (uint32_t c = 0; c < num_clients; c++)
        p->offsets[c + 1] += p->offsets[c];
    memcpy(fill, p->offsets, sizeof(size_t) * num_clients);
    for (size_t i = 0; i < count; i++)
        p->indices[fill[owner[i]]++] = (uint32_t)i;
out:
    roost_rng_destroy(rng);
    roost_alloc_free(alloc, fill);
    roost_alloc_free(alloc, owner);
    roost_alloc_free(alloc, scratch);
    if (rc != ROOST_OK) {
        roost_partition_destroy(p);
        return rc;
    }
    *out = p;
    return ROOST_OK;
}

void
roost_partition_destroy(roost_partition *p)
{
    if (p == NULL)
        return;
    roost_alloc_free(p->alloc, p->offsets);
    roost_alloc_free(p->alloc, p->indices);
    roost_alloc_free(p->alloc, p);
}

uint32_t
roost_partition_num_clients(const roost_partition *p)
{
    return p->num_clients;
}

size_t
roost_partition_total(const roost_partition *p)
{
    return p->total;
}

const uint32_t *
roost_partition_client(const roost_partition *p, uint32_t c, size_t *n)
{
    *n = p->offsets[c + 1] - p->offsets[c];
    return p->indices + p->offsets[c];
}
