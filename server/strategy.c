/*
 * strategy.c - the aggregation strategies behind strategy.h.
 *
 * Layout of a handle:
 *   acc     n doubles. Streaming kinds fold weight * delta into it during the
 *           round; at finish every kind leaves the round's aggregate delta
 *           (the "pseudo-gradient" of Reddi et al.) in it.
 *   state1  n doubles: FedAvgM's momentum, or Adam/Yogi/Adagrad's m.
 *   state2  n doubles: Adam/Yogi/Adagrad's v (starts at tau^2).
 *   rows    robust kinds: an array of max_buffered_updates pointers, the
 *           first rows_alloc of which point at n-float copies of updates.
 *           Rows are kept across rounds so a steady-state round allocates
 *           nothing (first touch of fresh pages is expensive, see
 *           ARCHITECTURE.md), and are only ever created within the limits.
 *   work    robust kinds: finish's working memory (a transposed block of
 *           the updates for median and trimmed mean, the k*k distance
 *           matrix and score arrays for Krum), grown on demand.
 *
 * Invariants: count updates have been added since begin_round; for robust
 * kinds rows[0..count) hold them. mem_used is the sum of the sizes of the
 * live allocations. finish computes the aggregate into acc, then checks the
 * whole new model in a dry pass before a second pass writes the parameters
 * and the optimiser state, so an error leaves both untouched.
 *
 * Accumulation is in double: a float accumulator over thousands of updates
 * loses the small ones to rounding (2^-24 relative per addition), a double
 * one does not at any realistic client count.
 *
 * No locking: a handle belongs to one thread at a time (see strategy.h).
 */
#include "server/strategy.h"

#include "common/alloc.h"
#include "dp/adaclip.h"
#include "dp/noise.h"
#include "server/validate.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Median and trimmed mean transpose this many coordinates of all k updates
 * at a time, so the per-coordinate selection works on contiguous memory
 * while each update row is read sequentially. 16 floats = one cache line. */
#define ROOST_STRATEGY_BLOCK 16

/* Upper bound on the noise sampler's tables at the default grid (two
 * tables of at most 2^16 entries of 16 bytes, per dp/noise.h), counted in
 * the memory bound of a central-DP handle. */
#define ROOST_STRATEGY_NOISE_TABLES ((size_t)2 * 16 * 65536)

/* An update's Krum score and its arrival index, ordered by score then
 * index, so ties go to the earlier update whatever qsort's stability. */
struct krum_rank {
    double score;
    size_t index;
};

struct roost_strategy {
    const roost_allocator *alloc; /* NULL or &alloc_copy */
    roost_allocator alloc_copy;
    roost_strategy_config cfg;
    size_t n;

    bool round_open;
    size_t count;
    double weight_sum;

    double *acc;
    double *state1;
    double *state2;

    float **rows;
    size_t rows_alloc;

    void *work;
    size_t work_bytes;

    /* Central DP: the sampler, a float buffer that receives the noise, the
     * grid g, the clip applied to each update (so that the grid-rounded
     * sum has sensitivity dp_clip_norm), and the last round's figures. */
    roost_noise *noise;
    float *noise_buf;
    double dp_grid;
    double dp_update_clip;
    double dp_denominator;
    double dp_update_sigma; /* z_u (z without adaptive clipping) */
    double dp_clip;         /* the C of the open round */
    double dp_last_clip;    /* the C of the last finish */
    size_t dp_unclipped;    /* updates of the open round not clipped */
    /* Adaptive clipping: the quantile tracker and the count's sampler. */
    roost_adaclip ada;
    roost_noise *count_noise;
    double dp_noised_fraction;
    /* The noise samplers' distance from the ideal Gaussian, summed over
     * every draw of every applied round (the update sampler changes with
     * C under adaptive clipping), and whether the sums cover the rounds
     * before this handle (loaded with the state) or only its own. */
    double dp_n_mu, dp_n_beta;
    bool dp_sums_loaded;

    size_t mem_used;
};

static const char *const kind_names[ROOST_STRATEGY_KIND_COUNT_] = {
    [ROOST_STRATEGY_FEDAVG] = "fedavg",
    [ROOST_STRATEGY_FEDAVGM] = "fedavgm",
    [ROOST_STRATEGY_FEDADAM] = "fedadam",
    [ROOST_STRATEGY_FEDYOGI] = "fedyogi",
    [ROOST_STRATEGY_FEDADAGRAD] = "fedadagrad",
    [ROOST_STRATEGY_FEDPROX] = "fedprox",
    [ROOST_STRATEGY_MEDIAN] = "median",
    [ROOST_STRATEGY_TRIMMED_MEAN] = "trimmed_mean",
    [ROOST_STRATEGY_KRUM] = "krum",
    [ROOST_STRATEGY_MULTIKRUM] = "multikrum",
};

const char *
roost_strategy_kind_name(roost_strategy_kind kind)
{
    if ((unsigned)kind >= ROOST_STRATEGY_KIND_COUNT_)
        return "unknown";
    return kind_names[kind];
}

int
roost_strategy_kind_parse(const char *name, roost_strategy_kind *out,
                          roost_errmsg *em)
{
    if (name == NULL || out == NULL)
        return roost_fail(em, ROOST_EINVAL, "strategy: NULL name");
    for (int k = 0; k < ROOST_STRATEGY_KIND_COUNT_; k++) {
        if (strcmp(name, kind_names[k]) == 0) {
            *out = (roost_strategy_kind)k;
            return ROOST_OK;
        }
    }
    return roost_fail(em, ROOST_ECONFIG,
                      "unknown strategy \"%.64s\"; expected one of fedavg, "
                      "fedavgm, fedadam, fedyogi, fedadagrad, fedprox, "
                      "median, trimmed_mean, krum, multikrum",
                      name);
}

bool
roost_strategy_kind_is_robust(roost_strategy_kind kind)
{
    return kind == ROOST_STRATEGY_MEDIAN ||
           kind == ROOST_STRATEGY_TRIMMED_MEAN || kind == ROOST_STRATEGY_KRUM ||
           kind == ROOST_STRATEGY_MULTIKRUM;
}

static bool
kind_is_adaptive(roost_strategy_kind kind)
{
    return kind == ROOST_STRATEGY_FEDADAM || kind == ROOST_STRATEGY_FEDYOGI ||
           kind == ROOST_STRATEGY_FEDADAGRAD;
}

static bool
kind_is_krum(roost_strategy_kind kind)
{
    return kind == ROOST_STRATEGY_KRUM || kind == ROOST_STRATEGY_MULTIKRUM;
}

void
roost_strategy_config_init(roost_strategy_config *cfg, roost_strategy_kind kind)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->kind = kind;
    cfg->server_lr = kind_is_adaptive(kind) ? 1e-2 : 1.0;
    cfg->momentum = 0.9;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.99;
    cfg->tau = 1e-3;
    cfg->prox_mu = 0.01;
    cfg->trim_fraction = 0.1;
    cfg->byzantine_f = 1;
    cfg->multikrum_m = 0;
    cfg->max_buffered_updates = 1000;
    cfg->max_buffered_bytes = (size_t)1 << 30;
    cfg->central_dp = false;
    cfg->dp_clip_norm = 1.0;
    cfg->dp_noise_multiplier = 1.0;
    cfg->dp_expected_updates = 0;
    cfg->dp_rng = NULL;
    cfg->dp_adaptive_clip = false;
    cfg->dp_target_quantile = 0.5;
    cfg->dp_clip_lr = 0.2;
    cfg->dp_count_sigma = 0;
}

/* in [lo, hi) when open_hi, else [lo, hi]; NaN is never in range. */
static bool
in_range(double x, double lo, double hi, bool open_hi)
{
    return x >= lo && (open_hi ? x < hi : x <= hi);
}

int
roost_strategy_config_check(const roost_strategy_config *cfg, roost_errmsg *em)
{
    if (cfg == NULL)
        return roost_fail(em, ROOST_EINVAL, "strategy: NULL configuration");
    if ((unsigned)cfg->kind >= ROOST_STRATEGY_KIND_COUNT_)
        return roost_fail(em, ROOST_ECONFIG, "strategy: unknown kind %d",
                          (int)cfg->kind);
    if (!isfinite(cfg->server_lr) || cfg->server_lr <= 0)
        return roost_fail(em, ROOST_ECONFIG,
                          "strategy: server_lr must be finite and > 0, got %g",
                          cfg->server_lr);
    if (cfg->kind == ROOST_STRATEGY_FEDAVGM &&
        !in_range(cfg->momentum, 0, 1, true))
        return roost_fail(em, ROOST_ECONFIG,
                          "strategy: momentum must be in [0, 1), got %g",
                          cfg->momentum);
    if (kind_is_adaptive(cfg->kind)) {
        if (!in_range(cfg->beta1, 0, 1, true))
            return roost_fail(em, ROOST_ECONFIG,
                              "strategy: beta1 must be in [0, 1), got %g",
                              cfg->beta1);
        if (cfg->kind != ROOST_STRATEGY_FEDADAGRAD &&
            !in_range(cfg->beta2, 0, 1, true))
            return roost_fail(em, ROOST_ECONFIG,
                              "strategy: beta2 must be in [0, 1), got %g",
                              cfg->beta2);
        if (!isfinite(cfg->tau) || cfg->tau <= 0)
            return roost_fail(em, ROOST_ECONFIG,
                              "strategy: tau must be finite and > 0, got %g",
                              cfg->tau);
    }
    if (cfg->kind == ROOST_STRATEGY_FEDPROX &&
        (!isfinite(cfg->prox_mu) || cfg->prox_mu < 0))
        return roost_fail(em, ROOST_ECONFIG,
                          "strategy: prox_mu must be finite and >= 0, got %g",
                          cfg->prox_mu);
    if (cfg->kind == ROOST_STRATEGY_TRIMMED_MEAN &&
        !in_range(cfg->trim_fraction, 0, 0.5, true))
        return roost_fail(em, ROOST_ECONFIG,
                          "strategy: trim_fraction must be in [0, 0.5), got %g",
                          cfg->trim_fraction);
    if (roost_strategy_kind_is_robust(cfg->kind)) {
        if (cfg->max_buffered_updates == 0)
            return roost_fail(em, ROOST_ECONFIG,
                              "strategy: max_buffered_updates must be > 0");
        if (cfg->byzantine_f > (SIZE_MAX - 3) / 2)
            return roost_fail(em, ROOST_ECONFIG,
                              "strategy: byzantine_f %zu is too large",
                              cfg->byzantine_f);
        if (cfg->central_dp)
            return roost_fail(em, ROOST_ECONFIG,
                              "strategy: central DP is only defined for the "
                              "mean-based strategies, not %s",
                              roost_strategy_kind_name(cfg->kind));
    }
    if (cfg->central_dp) {
        if (!isfinite(cfg->dp_clip_norm) || cfg->dp_clip_norm <= 0)
            return roost_fail(em, ROOST_ECONFIG,
                              "strategy: dp_clip_norm must be finite and > 0, "
                              "got %g",
                              cfg->dp_clip_norm);
        if (!isfinite(cfg->dp_noise_multiplier) ||
            cfg->dp_noise_multiplier <= 0)
            return roost_fail(em, ROOST_ECONFIG,
                              "strategy: dp_noise_multiplier must be finite "
                              "and > 0, got %g",
                              cfg->dp_noise_multiplier);
        if (cfg->dp_rng == NULL)
            return roost_fail(em, ROOST_ECONFIG,
                              "strategy: central DP needs a random generator");
    }
    if (cfg->dp_adaptive_clip) {
        if (!cfg->central_dp)
            return roost_fail(em, ROOST_ECONFIG,
                              "strategy: dp_adaptive_clip needs central_dp");
        if (cfg->dp_expected_updates == 0)
            return roost_fail(em, ROOST_ECONFIG,
                              "strategy: adaptive clipping needs "
                              "dp_expected_updates > 0");
        if (!in_range(cfg->dp_target_quantile, 0, 1, false))
            return roost_fail(em, ROOST_ECONFIG,
                              "strategy: dp_target_quantile must be in "
                              "[0, 1], got %g",
                              cfg->dp_target_quantile);
        if (!isfinite(cfg->dp_clip_lr) || cfg->dp_clip_lr <= 0)
            return roost_fail(em, ROOST_ECONFIG,
                              "strategy: dp_clip_lr must be finite and > 0, "
                              "got %g",
                              cfg->dp_clip_lr);
        if (!isfinite(cfg->dp_count_sigma) || cfg->dp_count_sigma < 0)
            return roost_fail(em, ROOST_ECONFIG,
                              "strategy: dp_count_sigma must be finite and "
                              ">= 0, got %g",
                              cfg->dp_count_sigma);
    }
    return ROOST_OK;
}

/* Bytes of finish's working memory for a robust kind and k updates. */
static bool
work_bytes_for(const roost_strategy_config *cfg, size_t k, size_t *out)
{
    if (!roost_strategy_kind_is_robust(cfg->kind)) {
        *out = 0;
        return true;
    }
    if (!kind_is_krum(cfg->kind))
        return roost_size_mul(k, ROOST_STRATEGY_BLOCK * sizeof(float), out);
    /* k*k distances, then one row of distances to sort and the k ranks
     * (score, index); see aggregate_krum. */
    size_t kk, per, total;
    if (!roost_size_mul(k, k, &kk) || !roost_size_mul(kk, sizeof(double), &kk))
        return false;
    if (!roost_size_mul(k, sizeof(double) + sizeof(struct krum_rank), &per))
        return false;
    if (!roost_size_add(kk, per, &total))
        return false;
    *out = total;
    return true;
}

int
roost_strategy_memory_bound(const roost_strategy_config *cfg, size_t n,
                            size_t k, size_t *bytes, roost_errmsg *em)
{
    if (cfg == NULL || bytes == NULL)
        return roost_fail(em, ROOST_EINVAL, "strategy: NULL argument");
    if (n == 0)
        return roost_fail(em, ROOST_EINVAL, "strategy: n must be positive");
    if ((unsigned)cfg->kind >= ROOST_STRATEGY_KIND_COUNT_)
        return roost_fail(em, ROOST_ECONFIG, "strategy: unknown kind");
    size_t vectors = 1; /* acc */
    if (cfg->kind == ROOST_STRATEGY_FEDAVGM)
        vectors = 2;
    else if (kind_is_adaptive(cfg->kind))
        vectors = 3;
    size_t total = sizeof(struct roost_strategy), t;
    if (!roost_size_mul(n, sizeof(double), &t) ||
        !roost_size_mul(t, vectors, &t) || !roost_size_add(total, t, &total))
        goto overflow;
    if (roost_strategy_kind_is_robust(cfg->kind)) {
        size_t w;
        if (!roost_size_mul(cfg->max_buffered_updates, sizeof(float *), &t) ||
            !roost_size_add(total, t, &total))
            goto overflow;
        if (!roost_size_mul(n, sizeof(float), &t) ||
            !roost_size_mul(t, k, &t) || !roost_size_add(total, t, &total))
            goto overflow;
        if (!work_bytes_for(cfg, k, &w) || !roost_size_add(total, w, &total))
            goto overflow;
    }
    if (cfg->central_dp) {
        if (!roost_size_mul(n, sizeof(float), &t) ||
            !roost_size_add(total, t, &total) ||
            !roost_size_add(total, ROOST_STRATEGY_NOISE_TABLES, &total))
            goto overflow;
        /* Adaptive clipping: the count's sampler, and during finish the
         * next round's sampler next to the current one. */
        if (cfg->dp_adaptive_clip &&
            !roost_size_add(total, 2 * ROOST_STRATEGY_NOISE_TABLES, &total))
            goto overflow;
    }
    *bytes = total;
    return ROOST_OK;
overflow:
    return roost_fail(em, ROOST_EOVERFLOW,
                      "strategy: memory bound for n=%zu, k=%zu overflows", n,
                      k);
}

/* Smallest number of updates the kind can aggregate (strategy.h). */
size_t
roost_strategy_min_updates(const roost_strategy_config *cfg)
{
    return kind_is_krum(cfg->kind) ? 2 * cfg->byzantine_f + 3 : 1;
}

static void *
tracked_alloc(roost_strategy *s, size_t count, size_t size)
{
    void *p = roost_alloc_calloc(s->alloc, count, size);
    if (p != NULL)
        s->mem_used += count * size; /* calloc checked the product */
    return p;
}

static void
tracked_free(roost_strategy *s, void *p, size_t bytes)
{
    if (p != NULL) {
        roost_alloc_free(s->alloc, p);
        s->mem_used -= bytes;
    }
}

void
roost_strategy_destroy(roost_strategy *s)
{
    if (s == NULL)
        return;
    size_t vec = s->n * sizeof(double);
    tracked_free(s, s->acc, vec);
    tracked_free(s, s->state1, vec);
    tracked_free(s, s->state2, vec);
    if (s->rows != NULL) {
        for (size_t i = 0; i < s->rows_alloc; i++)
            tracked_free(s, s->rows[i], s->n * sizeof(float));
        tracked_free(s, s->rows, s->cfg.max_buffered_updates * sizeof(float *));
    }
    tracked_free(s, s->work, s->work_bytes);
    tracked_free(s, s->noise_buf, s->n * sizeof(float));
    roost_noise_destroy(s->noise);
    roost_noise_destroy(s->count_noise);
    /* The allocator lives inside s: copy it out before freeing s. */
    roost_allocator a;
    const roost_allocator *ap = NULL;
    if (s->alloc != NULL) {
        a = s->alloc_copy;
        ap = &a;
    }
    roost_alloc_free(ap, s);
}

/*
 * make_update_noise - the sampler for the noise on the sum at clip C:
 * standard deviation z_u*C, from the DP engine's grid sampler (resistant
 * to the floating-point attacks on textbook Gaussian samplers). Its grid
 * rounding of the sum adds up to sqrt(n)*g to the sensitivity, so updates
 * are clipped to the smaller norm clip_for_dim gives (*update_clip) and
 * the rounded sum's sensitivity stays C.
 */
static int
make_update_noise(roost_strategy *s, double clip, roost_noise **out,
                  double *grid, double *update_clip, roost_errmsg *em)
{
    roost_noise *noise;
    int rc =
        roost_noise_create(&noise, s->alloc, s->cfg.dp_rng, s->dp_update_sigma,
                           clip, ROOST_NOISE_GRID_BITS_DEFAULT, em);
    if (rc != ROOST_OK)
        return rc == ROOST_EINVAL ? ROOST_ECONFIG : rc;
    double uc;
    if (roost_noise_clip_for_dim(noise, s->n, &uc) != ROOST_OK) {
        roost_noise_destroy(noise);
        return roost_fail(em, ROOST_ECONFIG,
                          "strategy: central DP grid too coarse for %zu "
                          "coordinates (sqrt(n) * grid >= clip)",
                          s->n);
    }
    *out = noise;
    *grid = roost_noise_grid(noise);
    *update_clip = uc;
    return ROOST_OK;
}

/* Adaptive clipping: split z between the sum and the count release, start
 * the quantile tracker and build the count's sampler (stddev sigma_b). */
static int
setup_adaptive_clip(roost_strategy *s, roost_errmsg *em)
{
    const roost_strategy_config *c = &s->cfg;
    double m = (double)c->dp_expected_updates;
    double sb = c->dp_count_sigma > 0 ? c->dp_count_sigma : m / 20;
    if (roost_adaclip_update_sigma(c->dp_noise_multiplier, sb,
                                   &s->dp_update_sigma, em) != ROOST_OK)
        return roost_fail(em, ROOST_ECONFIG,
                          "strategy: adaptive clipping needs 2 * "
                          "dp_count_sigma (%g) > dp_noise_multiplier (%g)",
                          2 * sb, c->dp_noise_multiplier);
    if (roost_adaclip_init(&s->ada, c->dp_clip_norm, c->dp_target_quantile,
                           c->dp_clip_lr, sb, m, em) != ROOST_OK)
        return ROOST_ECONFIG;
    int rc = roost_noise_create(&s->count_noise, s->alloc, c->dp_rng, sb, 1.0,
                                ROOST_NOISE_GRID_BITS_DEFAULT, em);
    if (rc != ROOST_OK)
        return rc == ROOST_EINVAL ? ROOST_ECONFIG : rc;
    s->mem_used += ROOST_STRATEGY_NOISE_TABLES;
    /* roost_adaclip_update refuses a count sampler whose grid would round
     * the centred count's half-integers; say so now, not at the first
     * round's finish. */
    if (!(roost_noise_grid(s->count_noise) <= 0.5))
        return roost_fail(em, ROOST_ECONFIG,
                          "strategy: dp_count_sigma %g is too large for the "
                          "noise grid (%g > 1/2 would round the centred "
                          "count)",
                          sb, roost_noise_grid(s->count_noise));
    return ROOST_OK;
}

int
roost_strategy_create(roost_strategy **out, const roost_allocator *alloc,
                      const roost_strategy_config *cfg, size_t n,
                      roost_errmsg *em)
{
    if (out == NULL)
        return roost_fail(em, ROOST_EINVAL, "strategy: NULL out");
    *out = NULL;
    if (cfg == NULL)
        return roost_fail(em, ROOST_EINVAL, "strategy: NULL configuration");
    if (n == 0)
        return roost_fail(em, ROOST_EINVAL, "strategy: n must be positive");
    int rc = roost_strategy_config_check(cfg, em);
    if (rc != ROOST_OK)
        return rc;
    size_t bound;
    if (roost_strategy_kind_is_robust(cfg->kind)) {
        size_t need = roost_strategy_min_updates(cfg);
        if (cfg->max_buffered_updates < need)
            return roost_fail(em, ROOST_ETOOBIG,
                              "strategy: %s with f=%zu needs at least %zu "
                              "updates per round but max_buffered_updates "
                              "is %zu",
                              roost_strategy_kind_name(cfg->kind),
                              cfg->byzantine_f, need,
                              cfg->max_buffered_updates);
        rc = roost_strategy_memory_bound(cfg, n, need, &bound, em);
        if (rc != ROOST_OK)
            return rc;
        if (bound > cfg->max_buffered_bytes)
            return roost_fail(em, ROOST_ETOOBIG,
                              "strategy: %s needs %zu bytes for its minimum "
                              "of %zu updates of %zu coordinates, above "
                              "max_buffered_bytes %zu",
                              roost_strategy_kind_name(cfg->kind), bound, need,
                              n, cfg->max_buffered_bytes);
    } else {
        rc = roost_strategy_memory_bound(cfg, n, 0, &bound, em);
        if (rc != ROOST_OK)
            return rc;
    }

    roost_strategy *s = roost_alloc_calloc(alloc, 1, sizeof(*s));
    if (s == NULL)
        return roost_fail(em, ROOST_ENOMEM, "strategy: out of memory");
    if (alloc != NULL) {
        s->alloc_copy = *alloc;
        s->alloc = &s->alloc_copy;
    }
    s->cfg = *cfg;
    s->n = n;
    s->mem_used = sizeof(*s);

    s->acc = tracked_alloc(s, n, sizeof(double));
    if (s->acc == NULL)
        goto nomem;
    if (cfg->kind == ROOST_STRATEGY_FEDAVGM || kind_is_adaptive(cfg->kind)) {
        s->state1 = tracked_alloc(s, n, sizeof(double));
        if (s->state1 == NULL)
            goto nomem;
    }
    if (kind_is_adaptive(cfg->kind)) {
        s->state2 = tracked_alloc(s, n, sizeof(double));
        if (s->state2 == NULL)
            goto nomem;
        /* Reddi et al., Algorithm 2: v_{-1} >= tau^2. */
        double v0 = cfg->tau * cfg->tau;
        for (size_t i = 0; i < n; i++)
            s->state2[i] = v0;
    }
    if (roost_strategy_kind_is_robust(cfg->kind)) {
        s->rows = tracked_alloc(s, cfg->max_buffered_updates, sizeof(float *));
        if (s->rows == NULL)
            goto nomem;
    }
    if (cfg->central_dp) {
        s->noise_buf = tracked_alloc(s, n, sizeof(float));
        if (s->noise_buf == NULL)
            goto nomem;
        s->dp_update_sigma = cfg->dp_noise_multiplier;
        s->dp_clip = cfg->dp_clip_norm;
        s->dp_last_clip = cfg->dp_clip_norm;
        if (cfg->dp_adaptive_clip) {
            rc = setup_adaptive_clip(s, em);
            if (rc != ROOST_OK) {
                roost_strategy_destroy(s);
                return rc;
            }
        }
        rc = make_update_noise(s, s->dp_clip, &s->noise, &s->dp_grid,
                               &s->dp_update_clip, em);
        if (rc != ROOST_OK) {
            roost_strategy_destroy(s);
            return rc;
        }
        s->mem_used += ROOST_STRATEGY_NOISE_TABLES;
    }
    *out = s;
    return ROOST_OK;
nomem:
    roost_strategy_destroy(s);
    return roost_fail(em, ROOST_ENOMEM, "strategy: out of memory");
}

void
roost_strategy_begin_round(roost_strategy *s)
{
    if (s == NULL)
        return;
    memset(s->acc, 0, s->n * sizeof(double));
    s->count = 0;
    s->weight_sum = 0;
    s->dp_unclipped = 0;
    s->round_open = true;
}

/* acc += w * x, the streaming fold. Eight independent lanes per iteration
 * give the compiler straight-line code it vectorises at -O2 (GCC's -O2 cost
 * model skips loops that need a runtime epilogue): SSE2 in the baseline
 * clone, 256- or 512-bit vectors in the AVX2 and AVX-512 clones. Each
 * element is one multiply and one add in every clone (-std=c11 forbids
 * contracting them into an FMA), so all clones give the same bits. */
ROOST_VECTOR_CLONES static void
fold(double *restrict acc, const float *restrict x, double w, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        acc[i] += w * (double)x[i];
        acc[i + 1] += w * (double)x[i + 1];
        acc[i + 2] += w * (double)x[i + 2];
        acc[i + 3] += w * (double)x[i + 3];
        acc[i + 4] += w * (double)x[i + 4];
        acc[i + 5] += w * (double)x[i + 5];
        acc[i + 6] += w * (double)x[i + 6];
        acc[i + 7] += w * (double)x[i + 7];
    }
    for (; i < n; i++)
        acc[i] += w * (double)x[i];
}

int
roost_strategy_add(roost_strategy *s, const float *delta, double weight,
                   roost_errmsg *em)
{
    if (s == NULL || delta == NULL)
        return roost_fail(em, ROOST_EINVAL, "strategy: NULL argument");
    if (!s->round_open)
        return roost_fail(em, ROOST_ESTATE,
                          "strategy: add outside a round (call begin_round)");
    if (!isfinite(weight) || weight < 0)
        return roost_fail(em, ROOST_EINVAL,
                          "strategy: weight must be finite and >= 0, got %g",
                          weight);
    const size_t n = s->n;

    if (!roost_strategy_kind_is_robust(s->cfg.kind)) {
        if (s->cfg.central_dp) {
            /* Unweighted, each update clipped to C' = C - sqrt(n) g: the
             * grid-rounded sum then has sensitivity C, which the noise is
             * calibrated to (see dp_noised_mean). */
            double norm = roost_validate_l2_norm(delta, n, NULL);
            if (!isfinite(norm))
                return roost_fail(em, ROOST_ENONFINITE,
                                  "strategy: update is not finite");
            /* The factor is shrunk by 2^-40 so that double rounding in the
             * norm cannot leave the clipped update a hair above the clip. */
            double c = s->dp_update_clip;
            if (norm <= c)
                s->dp_unclipped++;
            fold(s->acc, delta, norm > c ? c / norm * (1 - 0x1p-40) : 1.0, n);
            s->weight_sum += 1.0;
        } else {
            if (weight > 0)
                fold(s->acc, delta, weight, n);
            s->weight_sum += weight;
        }
        s->count++;
        return ROOST_OK;
    }

    size_t k = s->count + 1, bound;
    if (k > s->cfg.max_buffered_updates)
        return roost_fail(em, ROOST_ETOOBIG,
                          "strategy: %s buffers every update and is limited "
                          "to %zu per round (max_buffered_updates)",
                          roost_strategy_kind_name(s->cfg.kind),
                          s->cfg.max_buffered_updates);
    int rc = roost_strategy_memory_bound(&s->cfg, n, k, &bound, em);
    if (rc != ROOST_OK)
        return rc;
    if (bound > s->cfg.max_buffered_bytes)
        return roost_fail(em, ROOST_ETOOBIG,
                          "strategy: %s would need %zu bytes for %zu updates "
                          "of %zu coordinates, above max_buffered_bytes %zu",
                          roost_strategy_kind_name(s->cfg.kind), bound, k, n,
                          s->cfg.max_buffered_bytes);
    /* The selection code compares values; a NaN would silently break its
     * ordering, so robust kinds re-check what validate should have. */
    if (!isfinite(roost_validate_l2_norm(delta, n, NULL)))
        return roost_fail(em, ROOST_ENONFINITE,
                          "strategy: update is not finite");
    if (s->count == s->rows_alloc) {
        float *row = roost_alloc_malloc(s->alloc, n * sizeof(float));
        if (row == NULL)
            return roost_fail(em, ROOST_ENOMEM, "strategy: out of memory");
        s->mem_used += n * sizeof(float);
        s->rows[s->rows_alloc++] = row;
    }
    memcpy(s->rows[s->count], delta, n * sizeof(float));
    s->count++;
    return ROOST_OK;
}

/* ---- selection on small float arrays (median, trimmed mean) ---------- */

static void
swap_f(float *a, ptrdiff_t i, ptrdiff_t j)
{
    float t = a[i];
    a[i] = a[j];
    a[j] = t;
}

static void
sift_down(float *a, ptrdiff_t root, ptrdiff_t len)
{
    for (;;) {
        ptrdiff_t child = 2 * root + 1;
        if (child >= len)
            return;
        if (child + 1 < len && a[child + 1] > a[child])
            child++;
        if (!(a[child] > a[root]))
            return;
        swap_f(a, root, child);
        root = child;
    }
}

static void
heapsort_f(float *a, ptrdiff_t len)
{
    for (ptrdiff_t i = len / 2 - 1; i >= 0; i--)
        sift_down(a, i, len);
    for (ptrdiff_t end = len - 1; end > 0; end--) {
        swap_f(a, 0, end);
        sift_down(a, 0, end);
    }
}

/*
 * select_kth - reorder a[0..len) so that a[kth] is the value of rank kth,
 * everything before it is <= and everything after it is >= (introselect).
 * Quickselect with a median-of-three pivot is linear on typical data; the
 * values come from clients, who could craft a quadratic case, so after
 * 2*log2(len) rounds without converging the remaining range is heapsorted
 * (O(len log len) worst case). Values must not be NaN.
 */
static void
select_kth(float *a, ptrdiff_t len, ptrdiff_t kth)
{
    ptrdiff_t lo = 0, hi = len - 1;
    int budget = 4;
    for (ptrdiff_t m = len; m > 1; m >>= 1)
        budget += 2;
    while (hi > lo) {
        if (hi - lo < 16 || budget-- == 0) {
            heapsort_f(a + lo, hi - lo + 1);
            return;
        }
        ptrdiff_t mid = lo + (hi - lo) / 2;
        if (a[mid] < a[lo])
            swap_f(a, lo, mid);
        if (a[hi] < a[lo])
            swap_f(a, lo, hi);
        if (a[hi] < a[mid])
            swap_f(a, mid, hi);
        float pivot = a[mid];
        ptrdiff_t i = lo, j = hi;
        /* Hoare partition: afterwards a[lo..j] <= pivot, a[i..hi] >=
         * pivot, and anything strictly between j and i equals pivot. The
         * median-of-three guarantees both scans stop inside [lo, hi]. */
        while (i <= j) {
            while (a[i] < pivot)
                i++;
            while (a[j] > pivot)
                j--;
            if (i <= j) {
                swap_f(a, i, j);
                i++;
                j--;
            }
        }
        if (kth <= j)
            hi = j;
        else if (kth >= i)
            lo = i;
        else
            return;
    }
}

/* Median (mean of the two middle values for even k) or trimmed mean of
 * col[0..k), reordering col. */
static double
robust_center(float *col, size_t k, size_t trim, bool median)
{
    ptrdiff_t kk = (ptrdiff_t)k;
    if (median) {
        ptrdiff_t half = kk / 2;
        select_kth(col, kk, half);
        double upper = (double)col[half];
        if (k % 2 == 1)
            return upper;
        float lower = col[0];
        for (ptrdiff_t i = 1; i < half; i++)
            if (col[i] > lower)
                lower = col[i];
        return 0.5 * ((double)lower + upper);
    }
    float *mid = col;
    size_t keep = k - 2 * trim;
    if (trim > 0) {
        /* Ranks [trim, k - trim) are kept: put rank trim in place, then
         * the keep smallest of the rest at its front. */
        select_kth(col, kk, (ptrdiff_t)trim);
        mid = col + trim;
        select_kth(mid, kk - (ptrdiff_t)trim, (ptrdiff_t)keep - 1);
    }
    double sum = 0;
    for (size_t i = 0; i < keep; i++)
        sum += (double)mid[i];
    return sum / (double)keep;
}

static int
ensure_work(roost_strategy *s, size_t bytes, roost_errmsg *em)
{
    if (s->work_bytes >= bytes)
        return ROOST_OK;
    void *w = roost_alloc_malloc(s->alloc, bytes);
    if (w == NULL)
        return roost_fail(em, ROOST_ENOMEM, "strategy: out of memory");
    tracked_free(s, s->work, s->work_bytes);
    s->work = w;
    s->work_bytes = bytes;
    s->mem_used += bytes;
    return ROOST_OK;
}

/* Coordinate-wise median or trimmed mean of rows[0..k) into acc. */
static void
aggregate_coordinatewise(roost_strategy *s, float *block)
{
    const size_t n = s->n, k = s->count;
    const bool median = s->cfg.kind == ROOST_STRATEGY_MEDIAN;
    /* floor(beta * k), computed so 0.1 * 10 is 1 and not 0.99999. */
    size_t trim = 0;
    if (!median) {
        double t = floor(s->cfg.trim_fraction * (double)k + 1e-9);
        trim = (size_t)t;
        if (2 * trim >= k) /* beta < 0.5 makes this impossible; be sure */
            trim = (k - 1) / 2;
    }
    for (size_t base = 0; base < n; base += ROOST_STRATEGY_BLOCK) {
        size_t width =
            n - base < ROOST_STRATEGY_BLOCK ? n - base : ROOST_STRATEGY_BLOCK;
        /* block[c * k + j] = rows[j][base + c]: one column per coordinate. */
        for (size_t j = 0; j < k; j++) {
            const float *row = s->rows[j] + base;
            for (size_t c = 0; c < width; c++)
                block[c * k + j] = row[c];
        }
        for (size_t c = 0; c < width; c++)
            s->acc[base + c] = robust_center(block + c * k, k, trim, median);
    }
}

/* One lane of a squared distance: d = a[i + j] - b[i + j]; s<j> += d * d. */
#define ROOST_DIST_LANE(j)                                                     \
    do {                                                                       \
        double d_ = (double)a[i + (j)] - (double)b[i + (j)];                   \
        s##j += d_ * d_;                                                       \
    } while (0)

/* ||a - b||^2 in double over eight partial sums (see fold on clones). */
ROOST_VECTOR_CLONES static double
sq_distance(const float *a, const float *b, size_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        ROOST_DIST_LANE(0);
        ROOST_DIST_LANE(1);
        ROOST_DIST_LANE(2);
        ROOST_DIST_LANE(3);
        ROOST_DIST_LANE(4);
        ROOST_DIST_LANE(5);
        ROOST_DIST_LANE(6);
        ROOST_DIST_LANE(7);
    }
    for (; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        s0 += d * d;
    }
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
}

#undef ROOST_DIST_LANE

static int
cmp_double(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

static int
cmp_rank(const void *pa, const void *pb)
{
    const struct krum_rank *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score < b->score ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

/*
 * Krum / Multi-Krum (Blanchard et al. 2017). score(i) = sum of the squared
 * distances from update i to its k - f - 2 nearest other updates; Krum
 * returns the update with the lowest score, Multi-Krum the mean of the m
 * lowest-scored (ties broken by arrival order). Result into acc. Work
 * layout: the k*k distance matrix, one row of k distances to sort, k ranks
 * (8k^2 + 24k bytes, as work_bytes_for states). The distances, k(k-1)/2
 * passes over n coordinates, dominate; the sorts are O(k^2 log k).
 */
static void
aggregate_krum(roost_strategy *s, void *work)
{
    const size_t n = s->n, k = s->count, f = s->cfg.byzantine_f;
    double *dist = work;
    double *row = dist + k * k;
    struct krum_rank *rank = (struct krum_rank *)(row + k);

    for (size_t i = 0; i < k; i++) {
        dist[i * k + i] = 0;
        for (size_t j = i + 1; j < k; j++) {
            double d = sq_distance(s->rows[i], s->rows[j], n);
            dist[i * k + j] = d;
            dist[j * k + i] = d;
        }
    }
    const size_t nearest = k - f - 2;
    for (size_t i = 0; i < k; i++) {
        size_t len = 0;
        for (size_t j = 0; j < k; j++)
            if (j != i)
                row[len++] = dist[i * k + j];
        qsort(row, len, sizeof(double), cmp_double);
        double sc = 0;
        for (size_t j = 0; j < nearest; j++)
            sc += row[j];
        rank[i].score = sc;
        rank[i].index = i;
    }
    qsort(rank, k, sizeof(rank[0]), cmp_rank);
    size_t m = 1;
    if (s->cfg.kind == ROOST_STRATEGY_MULTIKRUM) {
        m = s->cfg.multikrum_m == 0 ? k - f : s->cfg.multikrum_m;
        if (m > k - f)
            m = k - f;
    }
    memset(s->acc, 0, n * sizeof(double));
    for (size_t r = 0; r < m; r++)
        fold(s->acc, s->rows[rank[r].index], 1.0, n);
    const double inv = 1.0 / (double)m;
    for (size_t i = 0; i < n; i++)
        s->acc[i] *= inv;
}

/*
 * apply - compute the new model from x and the aggregate delta in acc.
 * With commit false nothing is written and the return value is the first
 * coordinate whose new value would not be a finite float (n if none); with
 * commit true x and the optimiser state are updated. Same arithmetic both
 * times, so a dry pass that succeeds guarantees the commit pass does.
 */
static size_t
apply(roost_strategy *s, float *x, bool commit)
{
    const size_t n = s->n;
    const double lr = s->cfg.server_lr;
    const double *d = s->acc;
    const roost_strategy_config *c = &s->cfg;
    size_t i;
    switch (c->kind) {
    case ROOST_STRATEGY_FEDAVGM: {
        /* Hsu et al. 2019: v <- beta v + delta; x <- x + eta v. */
        double *mom = s->state1;
        for (i = 0; i < n; i++) {
            double v = c->momentum * mom[i] + d[i];
            double nx = (double)x[i] + lr * v;
            if (!(fabs(nx) <= (double)FLT_MAX))
                break;
            if (commit) {
                mom[i] = v;
                x[i] = (float)nx;
            }
        }
        break;
    }
    case ROOST_STRATEGY_FEDADAM:
    case ROOST_STRATEGY_FEDYOGI:
    case ROOST_STRATEGY_FEDADAGRAD: {
        /* Reddi et al. 2021, Algorithm 2. */
        double *m = s->state1, *v = s->state2;
        const double b1 = c->beta1, b2 = c->beta2, tau = c->tau;
        for (i = 0; i < n; i++) {
            double g = d[i], g2 = g * g;
            double nm = b1 * m[i] + (1 - b1) * g;
            double nv;
            if (c->kind == ROOST_STRATEGY_FEDADAM) {
                nv = b2 * v[i] + (1 - b2) * g2;
            } else if (c->kind == ROOST_STRATEGY_FEDYOGI) {
                double diff = v[i] - g2;
                double sign = diff > 0 ? 1.0 : (diff < 0 ? -1.0 : 0.0);
                nv = v[i] - (1 - b2) * g2 * sign;
            } else {
                nv = v[i] + g2;
            }
            double nx = (double)x[i] + lr * nm / (sqrt(nv) + tau);
            if (!(fabs(nx) <= (double)FLT_MAX) || !isfinite(nv))
                break;
            if (commit) {
                m[i] = nm;
                v[i] = nv;
                x[i] = (float)nx;
            }
        }
        break;
    }
    default:
        /* FedAvg, FedProx and the robust kinds: x <- x + eta * delta. */
        for (i = 0; i < n; i++) {
            double nx = (double)x[i] + lr * d[i];
            if (!(fabs(nx) <= (double)FLT_MAX))
                break;
            if (commit)
                x[i] = (float)nx;
        }
        break;
    }
    return i;
}

/*
 * dp_noised_mean - acc holds the sum of the round's clipped updates; make it
 * (round(sum / g) * g + Z * g) / D with Z the sampler's integer noise
 * (standard deviation z*C/g) and D the fixed expected number of updates or
 * the actual count. Rounding the sum to the grid before adding lattice
 * noise is what makes the output a post-processing of the Gaussian
 * mechanism (dp/noise.h); g is a power of two, so the rounding and the
 * sum of two multiples of g below 2^52 g are exact in double.
 */
static int
dp_noised_mean(roost_strategy *s, double *denominator, roost_errmsg *em)
{
    const size_t n = s->n;
    const double g = s->dp_grid;
    for (size_t i = 0; i < n; i++) {
        double q = s->acc[i] / g;
        if (!(fabs(q) < 0x1p51))
            return roost_fail(em, ROOST_EOVERFLOW,
                              "strategy: central DP sum coordinate %zu is too "
                              "large for the noise grid",
                              i);
        s->acc[i] = nearbyint(q) * g;
    }
    memset(s->noise_buf, 0, n * sizeof(float));
    int rc = roost_noise_add(s->noise, s->noise_buf, n, em);
    if (rc != ROOST_OK)
        return rc;
    double d = s->cfg.dp_expected_updates > 0
                   ? (double)s->cfg.dp_expected_updates
                   : (double)s->count;
    *denominator = d;
    for (size_t i = 0; i < n; i++)
        s->acc[i] = (s->acc[i] + (double)s->noise_buf[i]) / d;
    return ROOST_OK;
}

int
roost_strategy_finish(roost_strategy *s, float *global_params, roost_errmsg *em)
{
    if (s == NULL || global_params == NULL)
        return roost_fail(em, ROOST_EINVAL, "strategy: NULL argument");
    if (!s->round_open)
        return roost_fail(em, ROOST_ESTATE, "strategy: no round is open");
    s->round_open = false;
    if (s->count == 0)
        return roost_fail(em, ROOST_ESTATE, "strategy: no updates in round");
    const size_t n = s->n;
    const roost_strategy_kind kind = s->cfg.kind;
    roost_adaclip saved;
    roost_noise *next_noise = NULL;
    double next_grid = 0, next_update_clip = 0, fraction = 0;
    double denominator = 0;

    if (roost_strategy_kind_is_robust(kind)) {
        if (s->count < roost_strategy_min_updates(&s->cfg))
            return roost_fail(em, ROOST_ESTATE,
                              "strategy: %s with f=%zu needs at least %zu "
                              "updates, the round has %zu",
                              roost_strategy_kind_name(kind),
                              s->cfg.byzantine_f,
                              roost_strategy_min_updates(&s->cfg), s->count);
        size_t wb;
        if (!work_bytes_for(&s->cfg, s->count, &wb))
            return roost_fail(em, ROOST_EOVERFLOW,
                              "strategy: working memory size overflows");
        int rc = ensure_work(s, wb, em);
        if (rc != ROOST_OK)
            return rc;
        if (kind_is_krum(kind))
            aggregate_krum(s, s->work);
        else
            aggregate_coordinatewise(s, s->work);
    } else if (s->cfg.central_dp) {
        int rc = dp_noised_mean(s, &denominator, em);
        if (rc != ROOST_OK)
            return rc;
        if (s->cfg.dp_adaptive_clip) {
            /* Release the noised count and build the sampler for the next
             * round's C now, while failing still leaves everything as it
             * was (the tracker is restored from saved). */
            saved = s->ada;
            rc = roost_adaclip_update(&s->ada, s->count_noise, s->dp_unclipped,
                                      s->count, &fraction, em);
            if (rc != ROOST_OK)
                return rc;
            rc = make_update_noise(s, s->ada.clip, &next_noise, &next_grid,
                                   &next_update_clip, em);
            if (rc != ROOST_OK) {
                s->ada = saved;
                return rc;
            }
        }
    } else {
        if (!(s->weight_sum > 0))
            return roost_fail(em, ROOST_ESTATE,
                              "strategy: total weight of the %zu updates is "
                              "zero",
                              s->count);
        const double inv = 1.0 / s->weight_sum;
        for (size_t i = 0; i < n; i++)
            s->acc[i] *= inv;
    }

    size_t bad = apply(s, global_params, false);
    if (bad != n) {
        if (next_noise != NULL) {
            roost_noise_destroy(next_noise);
            s->ada = saved;
        }
        return roost_fail(em, ROOST_ENONFINITE,
                          "strategy: new global coordinate %zu would not be "
                          "a finite float; round not applied",
                          bad);
    }
    apply(s, global_params, true);
    if (s->cfg.central_dp) {
        /* The round is applied: charge its draws to the samplers that
         * made them (before the next round's sampler replaces this one). */
        double mu, beta;
        roost_noise_closeness(s->noise, &mu, &beta);
        s->dp_n_mu += (double)n * mu;
        s->dp_n_beta += (double)n * beta;
        if (s->cfg.dp_adaptive_clip) {
            roost_noise_closeness(s->count_noise, &mu, &beta);
            s->dp_n_mu += mu;
            s->dp_n_beta += beta;
        }
        s->dp_denominator = denominator;
        s->dp_last_clip = s->dp_clip;
        if (next_noise != NULL) {
            roost_noise_destroy(s->noise);
            s->noise = next_noise;
            s->dp_grid = next_grid;
            s->dp_update_clip = next_update_clip;
            s->dp_clip = s->ada.clip;
            s->dp_noised_fraction = fraction;
        }
    }
    return ROOST_OK;
}

size_t
roost_strategy_round_updates(const roost_strategy *s)
{
    return s == NULL ? 0 : s->count;
}

double
roost_strategy_round_weight(const roost_strategy *s)
{
    return s == NULL ? 0 : s->weight_sum;
}

size_t
roost_strategy_memory_used(const roost_strategy *s)
{
    return s == NULL ? 0 : s->mem_used;
}

const roost_strategy_config *
roost_strategy_config_of(const roost_strategy *s)
{
    return s == NULL ? NULL : &s->cfg;
}

int
roost_strategy_dp_info_get(const roost_strategy *s, roost_strategy_dp_info *out)
{
    if (s == NULL || out == NULL)
        return ROOST_EINVAL;
    memset(out, 0, sizeof(*out));
    if (!s->cfg.central_dp)
        return ROOST_OK;
    out->enabled = true;
    out->noise_multiplier = s->cfg.dp_noise_multiplier;
    out->update_noise_multiplier = s->dp_update_sigma;
    out->clip_norm = s->dp_last_clip;
    out->next_clip_norm = s->dp_clip;
    out->update_clip_norm = s->dp_update_clip;
    out->grid = s->dp_grid;
    out->denominator = s->dp_denominator;
    out->mean_noise_stddev =
        s->dp_denominator > 0
            ? s->dp_update_sigma * s->dp_last_clip / s->dp_denominator
            : 0;
    out->adaptive_clip = s->cfg.dp_adaptive_clip;
    if (s->cfg.dp_adaptive_clip) {
        out->count_sigma = s->ada.count_sigma;
        out->noised_fraction = s->dp_noised_fraction;
        roost_noise_closeness(s->count_noise, &out->count_closeness_mu,
                              &out->count_closeness_beta);
        out->count_draws_per_round = 1;
    }
    out->sampler_n_mu = s->dp_n_mu;
    out->sampler_n_beta = s->dp_n_beta;
    out->sampler_sums_loaded = s->dp_sums_loaded;
    roost_noise_closeness(s->noise, &out->closeness_mu, &out->closeness_beta);
    out->draws_per_round = s->n;
    out->insecure_rng = roost_rng_is_insecure(s->cfg.dp_rng);
    return ROOST_OK;
}

/* ---- optimiser state blob (see strategy.h for the format) ------------- */

#define ROOST_STATE_MAGIC "RSTS"
#define ROOST_STATE_VERSION 1u
#define ROOST_STATE_HEADER 24 /* magic, version, kind, flags, n */
#define ROOST_STATE_MOMENTUM 1u
#define ROOST_STATE_V 2u
#define ROOST_STATE_CLIP 4u
#define ROOST_STATE_SAMPLER 8u
#define ROOST_STATE_ALL 15u

static unsigned
state_flags(const roost_strategy *s)
{
    unsigned f = 0;
    if (s->state1 != NULL)
        f |= ROOST_STATE_MOMENTUM;
    if (s->state2 != NULL)
        f |= ROOST_STATE_V;
    if (s->cfg.central_dp && s->cfg.dp_adaptive_clip)
        f |= ROOST_STATE_CLIP;
    if (s->cfg.central_dp)
        f |= ROOST_STATE_SAMPLER;
    return f;
}

/* Blob size for flags and n; false on overflow. */
static bool
state_bytes(unsigned flags, size_t n, size_t *out)
{
    size_t total = ROOST_STATE_HEADER, vec;
    if (!roost_size_mul(n, 8, &vec))
        return false;
    if ((flags & ROOST_STATE_CLIP) && !roost_size_add(total, 8, &total))
        return false;
    if ((flags & ROOST_STATE_SAMPLER) && !roost_size_add(total, 16, &total))
        return false;
    if ((flags & ROOST_STATE_MOMENTUM) && !roost_size_add(total, vec, &total))
        return false;
    if ((flags & ROOST_STATE_V) && !roost_size_add(total, vec, &total))
        return false;
    *out = total;
    return true;
}

static void
put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void
put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t
get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t
get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void
put_double(unsigned char *p, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof(bits));
    put_u64(p, bits);
}

static double
get_double(const unsigned char *p)
{
    uint64_t bits = get_u64(p);
    double d;
    memcpy(&d, &bits, sizeof(d));
    return d;
}

int
roost_strategy_state_size(const roost_strategy *s, size_t *bytes)
{
    if (s == NULL || bytes == NULL)
        return ROOST_EINVAL;
    /* Every vector of n doubles was allocated, so this cannot overflow. */
    return state_bytes(state_flags(s), s->n, bytes) ? ROOST_OK
                                                    : ROOST_EOVERFLOW;
}

int
roost_strategy_state_save(const roost_strategy *s, void *buf, size_t cap,
                          size_t *len, roost_errmsg *em)
{
    if (s == NULL || len == NULL || (buf == NULL && cap > 0))
        return roost_fail(em, ROOST_EINVAL, "strategy: NULL argument");
    unsigned flags = state_flags(s);
    size_t need;
    if (!state_bytes(flags, s->n, &need))
        return roost_fail(em, ROOST_EOVERFLOW, "strategy: state too large");
    *len = need;
    if (cap < need)
        return roost_fail(em, ROOST_ETOOSMALL,
                          "strategy: state needs %zu bytes, buffer has %zu",
                          need, cap);
    unsigned char *p = buf;
    memcpy(p, ROOST_STATE_MAGIC, 4);
    put_u32(p + 4, ROOST_STATE_VERSION);
    put_u32(p + 8, (uint32_t)s->cfg.kind);
    put_u32(p + 12, flags);
    put_u64(p + 16, (uint64_t)s->n);
    p += ROOST_STATE_HEADER;
    if (flags & ROOST_STATE_CLIP) {
        put_double(p, s->dp_clip);
        p += 8;
    }
    if (flags & ROOST_STATE_SAMPLER) {
        put_double(p, s->dp_n_mu);
        put_double(p + 8, s->dp_n_beta);
        p += 16;
    }
    if (flags & ROOST_STATE_MOMENTUM)
        for (size_t i = 0; i < s->n; i++, p += 8)
            put_double(p, s->state1[i]);
    if (flags & ROOST_STATE_V)
        for (size_t i = 0; i < s->n; i++, p += 8)
            put_double(p, s->state2[i]);
    return ROOST_OK;
}

int
roost_strategy_state_load(roost_strategy *s, const void *buf, size_t len,
                          roost_errmsg *em)
{
    if (s == NULL || (buf == NULL && len > 0))
        return roost_fail(em, ROOST_EINVAL, "strategy: NULL argument");
    if (s->round_open)
        return roost_fail(em, ROOST_ESTATE,
                          "strategy: cannot load state during a round");
    const unsigned char *p = buf;
    if (len < ROOST_STATE_HEADER || memcmp(p, ROOST_STATE_MAGIC, 4) != 0)
        return roost_fail(em, ROOST_EDECODE,
                          "strategy state: not a strategy state blob");
    if (get_u32(p + 4) != ROOST_STATE_VERSION)
        return roost_fail(em, ROOST_EDECODE,
                          "strategy state: unknown version %u",
                          (unsigned)get_u32(p + 4));
    uint32_t kind = get_u32(p + 8), flags = get_u32(p + 12);
    uint64_t n = get_u64(p + 16);
    if (kind != (uint32_t)s->cfg.kind)
        return roost_fail(em, ROOST_ECONFIG,
                          "strategy state: saved by %s, this is %s",
                          roost_strategy_kind_name((roost_strategy_kind)kind),
                          roost_strategy_kind_name(s->cfg.kind));
    /* A state saved before the sampler sums were kept (the same flags
     * without ROOST_STATE_SAMPLER) still loads; the sums then cover only
     * this handle's rounds (dp_sums_loaded stays false). */
    unsigned want = state_flags(s);
    if (flags != want && flags != (want & ~ROOST_STATE_SAMPLER))
        return roost_fail(
            em, (flags & ~ROOST_STATE_ALL) ? ROOST_EDECODE : ROOST_ECONFIG,
            "strategy state: flags %u do not match this "
            "configuration's %u",
            (unsigned)flags, want);
    if (n != (uint64_t)s->n)
        return roost_fail(em, ROOST_ESHAPE,
                          "strategy state: %llu coordinates, the model has "
                          "%zu",
                          (unsigned long long)n, s->n);
    size_t need;
    if (!state_bytes(flags, s->n, &need) || len != need)
        return roost_fail(em, ROOST_EDECODE,
                          "strategy state: %zu bytes, expected %zu", len, need);
    /* Check every value before changing anything. */
    const unsigned char *q = p + ROOST_STATE_HEADER;
    if (flags & ROOST_STATE_CLIP) {
        double c = get_double(q);
        if (!isfinite(c) || c <= 0)
            return roost_fail(em, ROOST_ENONFINITE,
                              "strategy state: clip norm %g", c);
        q += 8;
    }
    double n_mu = 0.0, n_beta = 0.0;
    if (flags & ROOST_STATE_SAMPLER) {
        n_mu = get_double(q);
        n_beta = get_double(q + 8);
        if (!isfinite(n_mu) || n_mu < 0 || !isfinite(n_beta) || n_beta < 0)
            return roost_fail(em, ROOST_ENONFINITE,
                              "strategy state: sampler sums %g, %g", n_mu,
                              n_beta);
        q += 16;
    }
    const unsigned char *m = q;
    const unsigned char *v = (flags & ROOST_STATE_MOMENTUM) ? q + 8 * s->n : q;
    if (flags & ROOST_STATE_MOMENTUM)
        for (size_t i = 0; i < s->n; i++)
            if (!isfinite(get_double(m + 8 * i)))
                return roost_fail(em, ROOST_ENONFINITE,
                                  "strategy state: momentum %zu is not "
                                  "finite",
                                  i);
    if (flags & ROOST_STATE_V)
        for (size_t i = 0; i < s->n; i++) {
            double x = get_double(v + 8 * i);
            if (!isfinite(x) || x < 0)
                return roost_fail(em, ROOST_ENONFINITE,
                                  "strategy state: v[%zu] = %g", i, x);
        }
    /* The clip's sampler is built before anything is replaced, so a
     * failure here also leaves the handle as it was. */
    if (flags & ROOST_STATE_CLIP) {
        double c = get_double(p + ROOST_STATE_HEADER);
        roost_noise *next;
        double grid, update_clip;
        int rc = make_update_noise(s, c, &next, &grid, &update_clip, em);
        if (rc != ROOST_OK)
            return rc;
        roost_noise_destroy(s->noise);
        s->noise = next;
        s->dp_grid = grid;
        s->dp_update_clip = update_clip;
        s->dp_clip = c;
        s->dp_last_clip = c;
        s->ada.clip = c;
    }
    if (flags & ROOST_STATE_MOMENTUM)
        for (size_t i = 0; i < s->n; i++)
            s->state1[i] = get_double(m + 8 * i);
    if (flags & ROOST_STATE_V)
        for (size_t i = 0; i < s->n; i++)
            s->state2[i] = get_double(v + 8 * i);
    s->dp_n_mu = n_mu;
    s->dp_n_beta = n_beta;
    s->dp_sums_loaded = (flags & ROOST_STATE_SAMPLER) != 0;
    return ROOST_OK;
}
