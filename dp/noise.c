/*
 * noise.c - grid-based Gaussian noise for DP-SGD, sampled with integer
 * tables from raw CSPRNG words (design and proof: docs/privacy.md, "Noise").
 *
 * With s = sigma*clip/g the noise standard deviation in grid units, the
 * integer noise is Z = B + K*A, where
 *   B is drawn from a table for the rounded Gaussian round(N(0, t^2)),
 *   A is drawn from a table for the discrete Gaussian D_{Z,t},
 *   K = floor(sqrt(s/1.5 - 1)) and t = s/sqrt(1 + K^2), so t^2 (1 + K^2) =
 *   s^2 and tau = t^2/s >= 1.5.
 * If B and A were exact, Z would be the rounded Gaussian round(N(0, s^2))
 * up to a factor exp(+-mu_theta) on every probability, mu_theta < 1e-18
 * (the discrete Gaussian A smooths the lattice K*Z; Poisson summation).
 * For small s (K < 2) Z = B with t = s.
 *
 * Both base distributions are symmetric, so each table holds |value| and
 * a random bit gives the sign. Each table is an alias table built in exact
 * 128-bit integer arithmetic: the probability of every entry is a multiple
 * of 2^-127 and the table samples exactly that distribution Q. One 64-bit
 * CSPRNG word gives the slot (top bits), the sign (bit 0) and the first
 * 63 - bits bits of the position inside the slot, which is compared with
 * the slot's threshold: first the top 32 - bits bits, from a 4-byte hot
 * table (branch-free); when those are equal (probability 2^(bits-32),
 * about 2^-17) the full 63 - bits bits; when those are equal too
 * (probability about 2^-48) a second word decides. The support is cut
 * where the ideal probability drops below 2^-76, so on the support
 * |ln(Q/P)| <= mu_table (about 2^-51, measured when the table is built)
 * and the cut-off mass is charged as beta.
 *
 * Invariants: the 128-bit threshold thr of a slot is its own mass,
 * thr < 2^(127-bits); hot = (thr >> 95) << bits | alias,
 * word = (thr >> 64) << bits | alias, lo = low 64 bits of thr; a full slot
 * is stored as thr = 0, alias = itself. The slot index is |value|.
 * No locking: a sampler belongs to one thread, like its rng.
 */
#include "dp/noise.h"
#include "dp/noise_int.h"

#include "common/alloc.h"

#include <float.h>
#include <math.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <string.h>

__extension__ typedef unsigned __int128 u128;

/* Coordinates per CSPRNG refill: 2 words each, 32 KiB, stays in L1/L2. */
#define NOISE_CHUNK 2048
/* Entries whose ideal probability is below 2^-NOISE_CUT_BITS are cut. */
#define NOISE_CUT_BITS 76
/* Bound on the relative error of the long double evaluation of an ideal
 * probability (expl of arguments up to ~53 with 64-bit mantissas, the
 * quadrature and the normaliser each contribute below 2^-56). */
#define NOISE_EVAL_MARGIN 0x1p-54L
/* Smallest tau = t_a t_b / s allowed for the convolution. */
#define NOISE_TAU_MIN 1.5

typedef struct noise_table {
    uint32_t *hot;  /* n_slots: (top 32-bits bits of thr << bits) | alias */
    uint64_t *word; /* n_slots: (thr >> 64) << bits | alias */
    uint64_t *lo;   /* n_slots: low 64 bits of thr */
    unsigned bits;  /* log2(n_slots), 1..31 */
    double mu;      /* max |ln(Q/P)| on the support */
    double tail;    /* P-mass outside the support */
} noise_table;

struct roost_noise {
    const roost_allocator *alloc;
    roost_rng *rng;
    double sigma, clip;
    double stddev;   /* sigma * clip */
    double grid;     /* g, a power of two */
    double inv_grid; /* 1/g, exact */
    double s;        /* stddev / g */
    double t;        /* standard deviation of the base tables */
    int64_t k;       /* multiplier of A; 0 when Z = B alone */
    double mu_theta; /* convolution distance (0 when k == 0) */
    double mu, beta; /* per-draw closeness to round(N(0, s^2)) */
    noise_table tb, ta;
    uint64_t *words; /* 2 * NOISE_CHUNK CSPRNG words */
};

/* ---- ideal probabilities ------------------------------------------------ */

/* Gauss-Legendre nodes and weights on [-1, 1] in long double, by Newton's
 * method on the Legendre polynomial (the usual double tables would limit
 * the probabilities to 2^-53). */
#define NOISE_GL 8
static void
gauss_legendre(long double x[NOISE_GL], long double w[NOISE_GL])
{
    const long double pi = acosl(-1.0L);
    for (int i = 0; i < NOISE_GL; i++) {
        long double z = cosl(pi * ((long double)i + 0.75L) /
                             ((long double)NOISE_GL + 0.5L));
        long double dp = 1.0L;
        for (int iter = 0; iter < 100; iter++) {
            long double p0 = 1.0L, p1 = z;
            for (int j = 2; j <= NOISE_GL; j++) {
                long double p2 = ((2.0L * j - 1.0L) * z * p1 -
                                  ((long double)j - 1.0L) * p0) /
                                 (long double)j;
                p0 = p1;
                p1 = p2;
            }
            dp = (long double)NOISE_GL * (z * p1 - p0) / (z * z - 1.0L);
            long double dz = p1 / dp;
            z -= dz;
            if (fabsl(dz) < 1e-21L)
                break;
        }
        x[i] = z;
        w[i] = 2.0L / ((1.0L - z * z) * dp * dp);
    }
}

/* Pr[round(N(0, t^2)) = j] = integral of the normal density over
 * [j - 1/2, j + 1/2], by composite Gauss-Legendre (no cancellation, unlike
 * a difference of two erfc values). */
static long double
rounded_gauss_prob(int64_t j, long double t, const long double gx[NOISE_GL],
                   const long double gw[NOISE_GL])
{
    const long double norm = 1.0L / (sqrtl(2.0L * acosl(-1.0L)) * t);
    /* One panel is exact to far below 2^-64 once |j|/t^2 is small; narrow
     * tables (tests) use 64 panels. */
    int panels = t >= 64.0L ? 1 : 64;
    long double h = 1.0L / (long double)panels, sum = 0.0L;
    for (int m = 0; m < panels; m++) {
        long double c = (long double)j - 0.5L + h * ((long double)m + 0.5L);
        for (int q = 0; q < NOISE_GL; q++) {
            long double y = c + 0.5L * h * gx[q];
            sum += gw[q] * expl(-(y * y) / (2.0L * t * t));
        }
    }
    return 0.5L * h * sum * norm;
}

/* Pr[D_{Z,t} = j] = exp(-j^2/2t^2) / sum_i exp(-i^2/2t^2), with the sum
 * from Poisson summation: sqrt(2 pi) t (1 + 2 sum_k exp(-2 pi^2 t^2 k^2)). */
static long double
discrete_gauss_prob(int64_t j, long double t)
{
    const long double pi = acosl(-1.0L);
    long double theta = 1.0L;
    for (int k = 1; k <= 4; k++)
        theta += 2.0L * expl(-2.0L * pi * pi * t * t * (long double)(k * k));
    long double jl = (long double)j;
    return expl(-(jl * jl) / (2.0L * t * t)) / (sqrtl(2.0L * pi) * t * theta);
}

/* ---- exact alias tables ------------------------------------------------- */

static void
table_free(const roost_allocator *alloc, noise_table *tab)
{
    roost_alloc_free(alloc, tab->hot);
    roost_alloc_free(alloc, tab->word);
    roost_alloc_free(alloc, tab->lo);
    tab->hot = NULL;
    tab->word = NULL;
    tab->lo = NULL;
}

/*
 * Build tab from the ideal probabilities p[0..n) of |value| = i (folded:
 * p[i] = P(i) + P(-i) for i > 0). Every p[i] >= 2^-NOISE_CUT_BITS and
 * sum p <= 1. The table samples Q[i] = mass[i] / 2^127 exactly, with
 * sum mass = 2^127; the sign is a separate random bit.
 */
static int
table_build(noise_table *tab, const roost_allocator *alloc,
            const long double *p, size_t n, double tail, roost_errmsg *em)
{
    memset(tab, 0, sizeof(*tab));
    unsigned bits = 1;
    while (((size_t)1 << bits) < n)
        bits++;
    if (bits > 31)
        return roost_fail(em, ROOST_EINVAL, "noise table of %zu entries", n);
    size_t n_slots = (size_t)1 << bits;
    const u128 total = (u128)1 << 127;
    const u128 cap = (u128)1 << (127 - bits);

    u128 *mass = roost_alloc_calloc(alloc, n_slots, sizeof(*mass));
    uint32_t *small = roost_alloc_calloc(alloc, n_slots, sizeof(*small));
    uint32_t *large = roost_alloc_calloc(alloc, n_slots, sizeof(*large));
    tab->hot = roost_alloc_calloc(alloc, n_slots, sizeof(*tab->hot));
    tab->word = roost_alloc_calloc(alloc, n_slots, sizeof(*tab->word));
    tab->lo = roost_alloc_calloc(alloc, n_slots, sizeof(*tab->lo));
    int rc = ROOST_OK;
    if (mass == NULL || small == NULL || large == NULL || tab->hot == NULL ||
        tab->word == NULL || tab->lo == NULL) {
        rc = roost_fail(em, ROOST_ENOMEM, "noise table of %zu slots", n_slots);
        goto done;
    }

    /* Fixed point, biased down by 2^-50 so the sum stays below 2^127 even
     * with the evaluation error; the deficit is then spread in proportion
     * to p, and the last few units go to the largest entry. */
    size_t peak = 0;
    u128 sum = 0;
    for (size_t i = 0; i < n; i++) {
        mass[i] = (u128)ldexpl(p[i] * (1.0L - 0x1p-50L), 127);
        sum += mass[i];
        if (p[i] > p[peak])
            peak = i;
    }
    if (sum > total) {
        rc = roost_fail(em, ROOST_EOVERFLOW, "noise table normalisation");
        goto done;
    }
    u128 deficit = total - sum;
    long double deficit_l = (long double)deficit * (1.0L - 0x1p-50L);
    u128 spread = 0;
    for (size_t i = 0; i < n; i++) {
        u128 add = (u128)(deficit_l * p[i]);
        mass[i] += add;
        spread += add;
    }
    if (spread > deficit) {
        rc = roost_fail(em, ROOST_EOVERFLOW, "noise table normalisation");
        goto done;
    }
    mass[peak] += deficit - spread;

    /* Distance from the ideal probabilities, entry by entry. */
    long double mu = 0.0L;
    for (size_t i = 0; i < n; i++) {
        long double q = ldexpl((long double)mass[i], -127);
        long double d = fabsl(logl(q / p[i]));
        if (d > mu)
            mu = d;
    }
    tab->mu = (double)(mu + NOISE_EVAL_MARGIN + 0x1p-60L);
    tab->tail = tail;

    /* Vose's alias method in exact integers: the invariant "remaining mass
     * = remaining slots * cap" holds throughout, so it ends with both
     * lists empty or only full slots left. */
    size_t ns = 0, nl = 0;
    for (size_t i = 0; i < n_slots; i++) {
        if (mass[i] < cap)
            small[ns++] = (uint32_t)i;
        else
            large[nl++] = (uint32_t)i;
    }
    while (ns > 0 && nl > 0) {
        uint32_t sm = small[--ns];
        uint32_t lg = large[nl - 1];
        /* mass[sm] is now final: the slot's own share. */
        tab->word[sm] = lg;
        mass[lg] -= cap - mass[sm];
        if (mass[lg] < cap) {
            nl--;
            small[ns++] = lg;
        }
    }
    if (ns > 0) {
        rc = roost_fail(em, ROOST_EOVERFLOW, "noise alias table unbalanced");
        goto done;
    }
    while (nl > 0) {
        uint32_t lg = large[--nl];
        mass[lg] = 0; /* full slot: alias to itself, threshold unused */
        tab->word[lg] = lg;
    }
    /* thr = mass < 2^(127-bits): its top 32-bits bits are thr >> 95. */
    for (size_t i = 0; i < n_slots; i++) {
        uint64_t alias = tab->word[i];
        tab->hot[i] = (uint32_t)(((uint64_t)(mass[i] >> 95) << bits) | alias);
        tab->word[i] = ((uint64_t)(mass[i] >> 64) << bits) | alias;
        tab->lo[i] = (uint64_t)mass[i];
    }
    tab->bits = bits;

done:
    if (mass != NULL)
        OPENSSL_cleanse(mass, n_slots * sizeof(*mass));
    roost_alloc_free(alloc, mass);
    roost_alloc_free(alloc, small);
    roost_alloc_free(alloc, large);
    if (rc != ROOST_OK)
        table_free(alloc, tab);
    return rc;
}

/* Ideal probabilities of |value| for a base distribution, cut where P
 * falls below 2^-NOISE_CUT_BITS, and its table. */
static int
base_table(noise_table *tab, const roost_allocator *alloc, long double t,
           int rounded, roost_errmsg *em)
{
    long double gx[NOISE_GL], gw[NOISE_GL];
    gauss_legendre(gx, gw);
    const long double cut = ldexpl(1.0L, -NOISE_CUT_BITS);
#define NOISE_PROB(j)                                                          \
    (rounded ? rounded_gauss_prob((j), t, gx, gw) : discrete_gauss_prob((j), t))
    /* Start from the continuous estimate and walk to the exact cut. */
    long double est = 2.0L * (NOISE_CUT_BITS * logl(2.0L) -
                              logl(sqrtl(2.0L * acosl(-1.0L)) * t));
    int64_t half = est > 0.0L ? (int64_t)(t * sqrtl(est)) : 0;
    while (half > 0 && NOISE_PROB(half) < cut)
        half--;
    while (NOISE_PROB(half + 1) >= cut)
        half++;
    if (half < 1)
        return roost_fail(em, ROOST_EINVAL, "noise table too narrow");
    size_t n = (size_t)half + 1;
    long double *p = roost_alloc_calloc(alloc, n, sizeof(*p));
    if (p == NULL)
        return roost_fail(em, ROOST_ENOMEM, "noise table of %zu entries", n);
    /* Both distributions are symmetric: fold to |value|. */
    p[0] = NOISE_PROB(0);
    for (size_t i = 1; i < n; i++)
        p[i] = 2.0L * NOISE_PROB((int64_t)i);
#undef NOISE_PROB
    /* Mass beyond +-half: exact for the rounded Gaussian; for the discrete
     * one, sum_{i>h} rho(i) <= integral_h^inf rho, so the two tails are at
     * most erfc(h / (t sqrt 2)) times the (> 1 - 1e-30) normaliser ratio. */
    long double tail =
        rounded ? erfcl(((long double)half + 0.5L) / (t * sqrtl(2.0L)))
                : erfcl((long double)half / (t * sqrtl(2.0L))) * 1.000001L;
    int rc = table_build(tab, alloc, p, n, (double)tail, em);
    roost_alloc_free(alloc, p);
    return rc;
}

/* ---- sampling ------------------------------------------------------------ */

/*
 * A draw from a word u: bits 63..64-bits pick the slot; bits 63-bits..1 are
 * the first 63 - bits bits of the position w inside the slot (the rest of w
 * comes from a second word only if needed); bit 0 is the sign. The slot's
 * own value is chosen when w < thr, its alias otherwise. The fast path
 * compares the top 32 - bits bits of w and thr (from the 4-byte hot table);
 * equal top bits (probability 2^(bits-32)) take the exact path below.
 */
static uint64_t
table_resolve(const noise_table *tab, uint64_t u, roost_rng *rng, int *rc)
{
    const unsigned bits = tab->bits;
    uint64_t slot = u >> (64 - bits);
    uint64_t r = (u >> 1) & (UINT64_MAX >> (bits + 1));
    uint64_t w = tab->word[slot];
    uint64_t thr_hi = w >> bits, alias = w & (((uint64_t)1 << bits) - 1);
    if (r != thr_hi)
        return r < thr_hi ? slot : alias;
    /* The first 63 - bits bits of w equal thr's: the next 64 decide. */
    uint64_t v = 0;
    int e = roost_rng_u64(rng, &v);
    if (e != ROOST_OK)
        *rc = e;
    return v < tab->lo[slot] ? slot : alias;
}

/* |value| from the hot table, then the sign from bit 0, branch-free except
 * for the rare exact path. */
static inline int64_t
table_draw(const noise_table *tab, uint64_t u, roost_rng *rng, int *rc)
{
    const unsigned bits = tab->bits;
    uint64_t slot = u >> (64 - bits);
    uint64_t rtop = (u >> 32) & (UINT32_MAX >> bits);
    uint32_t h = tab->hot[slot];
    uint64_t ttop = (uint64_t)(h >> bits);
    uint64_t own = (uint64_t)0 - (uint64_t)(rtop < ttop);
    uint64_t mag = (slot & own) | ((uint64_t)h & ((1u << bits) - 1) & ~own);
    if (rtop == ttop)
        mag = table_resolve(tab, u, rng, rc);
    uint64_t neg = (uint64_t)0 - (u & 1);
    return (int64_t)((mag ^ neg) - neg);
}

/* The fast path of table_draw with the table's fields in locals (so the
 * loop keeps them in registers) and without the exact path: *tie records
 * that some draw needs it, and the caller then redoes the chunk with
 * table_draw. */
#define NOISE_FAST_DRAW(out, u, hot, bits, tmask, amask, tie)                  \
    do {                                                                       \
        uint64_t slot_ = (u) >> (64 - (bits));                                 \
        uint64_t rtop_ = ((u) >> 32) & (tmask);                                \
        uint64_t h_ = (hot)[slot_];                                            \
        uint64_t ttop_ = h_ >> (bits);                                         \
        uint64_t own_ = (uint64_t)0 - (uint64_t)(rtop_ < ttop_);               \
        uint64_t mag_ = (slot_ & own_) | (h_ & (amask) & ~own_);               \
        uint64_t neg_ = (uint64_t)0 - ((u)&1);                                 \
        (tie) |= (uint64_t)(rtop_ == ttop_);                                   \
        (out) = (int64_t)((mag_ ^ neg_) - neg_);                               \
    } while (0)

/* Integer noise for count <= NOISE_CHUNK coordinates into z. The words are
 * consumed in a fixed order (B's word, then A's, per coordinate); the rare
 * extra word of an exact comparison is drawn from the stream after the
 * chunk's words, in coordinate order, so the output is a fixed function of
 * the rng stream. */
static int
draw_chunk(roost_noise *noise, int64_t *z, size_t count)
{
    size_t per = noise->k != 0 ? 2 : 1;
    int rc = roost_rng_bytes(noise->rng, noise->words,
                             count * per * sizeof(*noise->words));
    if (rc != ROOST_OK)
        return rc;
    const uint64_t *w = noise->words;
    const noise_table *tb = &noise->tb, *ta = &noise->ta;
    const uint32_t *hot_b = tb->hot;
    const unsigned bits_b = tb->bits;
    const uint64_t tmask_b = UINT32_MAX >> bits_b;
    const uint64_t amask_b = ((uint64_t)1 << bits_b) - 1;
    uint64_t tie = 0;
    if (noise->k != 0) {
        const uint32_t *hot_a = ta->hot;
        const unsigned bits_a = ta->bits;
        const uint64_t tmask_a = UINT32_MAX >> bits_a;
        const uint64_t amask_a = ((uint64_t)1 << bits_a) - 1;
        const int64_t k = noise->k;
        for (size_t i = 0; i < count; i++) {
            int64_t b, a;
            NOISE_FAST_DRAW(b, w[2 * i], hot_b, bits_b, tmask_b, amask_b, tie);
            NOISE_FAST_DRAW(a, w[2 * i + 1], hot_a, bits_a, tmask_a, amask_a,
                            tie);
            z[i] = b + k * a;
        }
        if (tie != 0) {
            /* A few percent of chunks at the default grid. */
            for (size_t i = 0; i < count; i++)
                z[i] = table_draw(tb, w[2 * i], noise->rng, &rc) +
                       k * table_draw(ta, w[2 * i + 1], noise->rng, &rc);
        }
    } else {
        for (size_t i = 0; i < count; i++)
            NOISE_FAST_DRAW(z[i], w[i], hot_b, bits_b, tmask_b, amask_b, tie);
        if (tie != 0) {
            for (size_t i = 0; i < count; i++)
                z[i] = table_draw(tb, w[i], noise->rng, &rc);
        }
    }
    return rc;
}

/* ---- public API ---------------------------------------------------------- */

int
roost_noise_create(roost_noise **out, const roost_allocator *alloc,
                   roost_rng *rng, double sigma, double clip,
                   unsigned grid_bits, roost_errmsg *em)
{
    if (out == NULL)
        return roost_fail(em, ROOST_EINVAL, "noise: out is NULL");
    *out = NULL;
    if (rng == NULL)
        return roost_fail(em, ROOST_EINVAL, "noise: rng is NULL");
    if (!(sigma > 0.0) || !isfinite(sigma))
        return roost_fail(em, ROOST_EINVAL,
                          "noise: sigma must be positive and finite (got %g)",
                          sigma);
    if (!(clip > 0.0) || !isfinite(clip))
        return roost_fail(em, ROOST_EINVAL,
                          "noise: clip must be positive and finite (got %g)",
                          clip);
    if (grid_bits > ROOST_NOISE_GRID_BITS_MAX)
        return roost_fail(em, ROOST_EINVAL,
                          "noise: grid_bits %u exceeds the maximum %u",
                          grid_bits, ROOST_NOISE_GRID_BITS_MAX);
    double stddev = sigma * clip;
    int e2 = 0;
    (void)frexp(stddev, &e2); /* stddev = f 2^e2, f in [0.5, 1) */
    double grid = ldexp(1.0, e2 - 1 - (int)grid_bits);
    if (!isfinite(stddev) || stddev > 0x1p100 || grid < (double)FLT_MIN)
        return roost_fail(em, ROOST_EINVAL,
                          "noise: sigma*clip = %g gives a grid %g outside the "
                          "float range",
                          stddev, grid);

    roost_noise *noise = roost_alloc_calloc(alloc, 1, sizeof(*noise));
    if (noise == NULL)
        return roost_fail(em, ROOST_ENOMEM, "noise sampler");
    noise->alloc = alloc;
    noise->rng = rng;
    noise->sigma = sigma;
    noise->clip = clip;
    noise->stddev = stddev;
    noise->grid = grid;
    noise->inv_grid = 1.0 / grid;
    noise->s = stddev / grid; /* exact: grid is a power of two */

    double kk = floor(sqrt(noise->s / NOISE_TAU_MIN - 1.0));
    int rc;
    if (kk >= 2.0) {
        noise->k = (int64_t)kk;
        noise->t = noise->s / sqrt(1.0 + kk * kk);
        double tau = noise->t * noise->t / noise->s;
        /* theta-function ripple: 2 sum_k exp(-2 pi^2 tau^2 k^2). */
        double pi = acos(-1.0);
        double ripple = 0.0;
        for (int k = 1; k <= 3; k++)
            ripple += 2.0 * exp(-2.0 * pi * pi * tau * tau * (double)(k * k));
        noise->mu_theta = log1p(ripple) - log1p(-ripple);
        rc = base_table(&noise->tb, alloc, (long double)noise->t, 1, em);
        if (rc == ROOST_OK)
            rc = base_table(&noise->ta, alloc, (long double)noise->t, 0, em);
    } else {
        noise->k = 0;
        noise->t = noise->s;
        rc = base_table(&noise->tb, alloc, (long double)noise->t, 1, em);
    }
    if (rc == ROOST_OK) {
        noise->words =
            roost_alloc_calloc(alloc, 2 * NOISE_CHUNK, sizeof(*noise->words));
        if (noise->words == NULL)
            rc = roost_fail(em, ROOST_ENOMEM, "noise word buffer");
    }
    if (rc != ROOST_OK) {
        roost_noise_destroy(noise);
        return rc;
    }
    noise->mu = noise->tb.mu + noise->ta.mu + noise->mu_theta;
    noise->beta = exp(noise->mu_theta) * (noise->tb.tail + noise->ta.tail);
    *out = noise;
    return ROOST_OK;
}

void
roost_noise_destroy(roost_noise *noise)
{
    if (noise == NULL)
        return;
    const roost_allocator *alloc = noise->alloc;
    if (noise->words != NULL)
        OPENSSL_cleanse(noise->words, 2 * NOISE_CHUNK * sizeof(*noise->words));
    roost_alloc_free(alloc, noise->words);
    table_free(alloc, &noise->tb);
    table_free(alloc, &noise->ta);
    OPENSSL_cleanse(noise, sizeof(*noise));
    roost_alloc_free(alloc, noise);
}

int
roost_noise_add(roost_noise *noise, float *x, size_t n, roost_errmsg *em)
{
    if (noise == NULL || (x == NULL && n > 0))
        return roost_fail(em, ROOST_EINVAL, "noise_add: NULL argument");
    /* Check everything first so a rejected vector is left untouched and no
     * randomness is spent on it. */
    const double limit = 0x1p51;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]))
            return roost_fail(em, ROOST_ENONFINITE,
                              "noise_add: coordinate %zu is not finite", i);
        if (fabs((double)x[i] * noise->inv_grid) >= limit)
            return roost_fail(em, ROOST_EOVERFLOW,
                              "noise_add: coordinate %zu (%g) exceeds 2^51 "
                              "grid steps of %g",
                              i, (double)x[i], noise->grid);
    }
    int64_t z[NOISE_CHUNK];
    /* Adding and subtracting 1.5*2^52 rounds a double of magnitude below
     * 2^51 to the nearest integer, ties to even, without a libm call; the
     * result is exact and does not depend on the rounding of any earlier
     * operation, since x/g is itself exact. */
    const double magic = 0x1.8p52;
    int rc = ROOST_OK;
    for (size_t base = 0; base < n && rc == ROOST_OK; base += NOISE_CHUNK) {
        size_t count = n - base < NOISE_CHUNK ? n - base : NOISE_CHUNK;
        rc = draw_chunk(noise, z, count);
        if (rc != ROOST_OK)
            break;
        float *xs = x + base;
        for (size_t i = 0; i < count; i++) {
            double m = ((double)xs[i] * noise->inv_grid + magic) - magic;
            xs[i] = (float)((m + (double)z[i]) * noise->grid);
        }
    }
    OPENSSL_cleanse(z, sizeof(z));
    OPENSSL_cleanse(noise->words, 2 * NOISE_CHUNK * sizeof(*noise->words));
    if (rc != ROOST_OK)
        return roost_fail(em, rc, "noise_add: CSPRNG failure");
    return ROOST_OK;
}

int
roost_noise_fill_standard(roost_noise *noise, double *out, size_t n)
{
    if (noise == NULL || (out == NULL && n > 0))
        return ROOST_EINVAL;
    int64_t z[NOISE_CHUNK];
    double inv_s = 1.0 / noise->s;
    int rc = ROOST_OK;
    for (size_t base = 0; base < n; base += NOISE_CHUNK) {
        size_t count = n - base < NOISE_CHUNK ? n - base : NOISE_CHUNK;
        rc = draw_chunk(noise, z, count);
        if (rc != ROOST_OK)
            break;
        for (size_t i = 0; i < count; i++)
            out[base + i] = (double)z[i] * inv_s;
    }
    OPENSSL_cleanse(z, sizeof(z));
    OPENSSL_cleanse(noise->words, 2 * NOISE_CHUNK * sizeof(*noise->words));
    return rc;
}

double
roost_noise_grid(const roost_noise *noise)
{
    return noise->grid;
}

double
roost_noise_stddev(const roost_noise *noise)
{
    return noise->stddev;
}

int
roost_noise_clip_for_dim(const roost_noise *noise, size_t dim, double *clip_out)
{
    if (noise == NULL || clip_out == NULL)
        return ROOST_EINVAL;
    double c = noise->clip - sqrt((double)dim) * noise->grid;
    if (!(c > 0.0))
        return ROOST_EINVAL;
    *clip_out = c;
    return ROOST_OK;
}

void
roost_noise_closeness(const roost_noise *noise, double *mu, double *beta)
{
    if (mu != NULL)
        *mu = noise->mu;
    if (beta != NULL)
        *beta = noise->beta;
}

int
roost_noise_charge(const roost_noise *noise, double draws, double epsilon,
                   double delta, double *epsilon_out, double *delta_out)
{
    if (noise == NULL || epsilon_out == NULL || delta_out == NULL ||
        !(draws >= 0.0) || !isfinite(draws) || !(epsilon >= 0.0) ||
        !isfinite(epsilon) || !(delta >= 0.0) || !(delta <= 1.0))
        return ROOST_EINVAL;
    double drift = draws * noise->mu;
    *epsilon_out = epsilon + 2.0 * drift;
    *delta_out =
        exp(drift) * delta + exp(epsilon + 2.0 * drift) * draws * noise->beta;
    return ROOST_OK;
}

/* ---- test hooks (noise_int.h) -------------------------------------------- */

static const noise_table *
debug_table(const roost_noise *noise, int which)
{
    if (noise == NULL)
        return NULL;
    if (which == ROOST_NOISE_TABLE_B)
        return &noise->tb;
    if (which == ROOST_NOISE_TABLE_A && noise->k != 0)
        return &noise->ta;
    return NULL;
}

void
roost_noise_debug_params(const roost_noise *noise, int64_t *k, double *t)
{
    *k = noise->k;
    *t = noise->t;
}

int
roost_noise_debug_table(const roost_noise *noise, int which, unsigned *bits)
{
    const noise_table *tab = debug_table(noise, which);
    if (tab == NULL)
        return ROOST_EINVAL;
    *bits = tab->bits;
    return ROOST_OK;
}

int
roost_noise_debug_slot(const roost_noise *noise, int which, size_t slot,
                       uint64_t *thr_hi, uint64_t *thr_lo, uint64_t *alias)
{
    const noise_table *tab = debug_table(noise, which);
    if (tab == NULL || slot >= ((size_t)1 << tab->bits))
        return ROOST_EINVAL;
    *thr_hi = tab->word[slot] >> tab->bits;
    *thr_lo = tab->lo[slot];
    *alias = tab->word[slot] & (((uint64_t)1 << tab->bits) - 1);
    return ROOST_OK;
}

int
roost_noise_debug_draw(roost_noise *noise, int which, uint64_t word,
                       int64_t *value)
{
    const noise_table *tab = debug_table(noise, which);
    if (tab == NULL)
        return ROOST_EINVAL;
    int rc = ROOST_OK;
    *value = table_draw(tab, word, noise->rng, &rc);
    return rc;
}
