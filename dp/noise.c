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
 * of 2^-127 and the table samples exactly that distribution Q. A draw
 * takes 32 bits of CSPRNG output (so one 64-bit word per coordinate feeds
 * both B and A): the slot (top bits), the sign (bit 0) and the first
 * 31 - bits bits of the position inside the slot, which are compared with
 * the slot's threshold from a 4-byte hot table (branch-free, eight draws
 * at a time with AVX2 gathers where the CPU has them). When those bits are
 * equal (probability 2^(bits-31), about 2^-16) the next 64 bits of the
 * position come from an extra word and are compared with the threshold's
 * next 64 bits; when those are equal too (probability 2^-64) a further
 * word gives the last 32. The support is cut where the ideal probability
 * drops below 2^-76, so on the support |ln(Q/P)| <= mu_table (about
 * 2^-51, measured when the table is built) and the cut-off mass is charged
 * as beta.
 *
 * Invariants: the 128-bit threshold thr of a slot is its own mass,
 * thr < 2^(127-bits), bits <= 30; hot = (thr >> 96) << bits | alias,
 * hi = thr >> 64, lo = low 64 bits of thr; a full slot is stored as
 * thr = 0, alias = itself. The slot index is |value|. The scalar and the
 * AVX2 paths compute the same function of the CSPRNG stream.
 * No locking on a sampler: it belongs to one thread, like its rng. A
 * roost_noise_memo (the closeness figures of recent keys) has its own
 * mutex, never held while tables are built.
 *
 * roost_dp_calibrate_sigma_sampled() lives here because it needs both the
 * sampler's figures and the accountant (dp/accountant.h).
 */
#include "dp/noise.h"
#include "dp/noise_int.h"

#include "common/alloc.h"
#include "dp/accountant.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__)
#define NOISE_X86 1
#include <immintrin.h>
#endif

__extension__ typedef unsigned __int128 u128;

/* Coordinates per CSPRNG refill: one word each, 16 KiB, stays in L1. */
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
    uint32_t *hot; /* n_slots: (thr >> 96) << bits | alias */
    uint64_t *hi;  /* n_slots: thr >> 64 */
    uint64_t *lo;  /* n_slots: low 64 bits of thr */
    unsigned bits; /* log2(n_slots), 1..30 */
    double mu;     /* max |ln(Q/P)| on the support */
    double tail;   /* P-mass outside the support */
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
    bool avx2;       /* the CPU has AVX2: use the 8-wide paths */
    uint64_t *words; /* NOISE_CHUNK CSPRNG words */
    /* Sharing (roost_noise_create_memo): a sampler whose parent is not
     * NULL reads its parent's tables (tb and ta are copies of the
     * parent's pointers) and holds one of the parent's references; a
     * parent frees its tables when its last reference goes. The tables
     * are never written after they are built, so samplers on other
     * threads may read them at once. */
    roost_noise *parent;
    atomic_int refs;
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

/*
 * Whether t^2 (1 + K^2) >= s^2 holds exactly, for the doubles t < s and an
 * integer K in [2, 4096). With t = tm 2^(et-53) and s = sm 2^(es-53) (53-bit
 * integer mantissas) it compares tm^2 (1 + K^2) with sm^2 2^(2 (es - et)),
 * both below 2^192, as 64-bit limbs: tm^2 < 2^106, 1 + K^2 < 2^24, and the
 * shift is at most 26 because t ~ s / sqrt(1 + K^2).
 */
static bool
conv_covers(double t, double kk, double s)
{
    int et = 0, es = 0;
    uint64_t tm = (uint64_t)ldexp(frexp(t, &et), 53);
    uint64_t sm = (uint64_t)ldexp(frexp(s, &es), 53);
    uint64_t m = (uint64_t)kk * (uint64_t)kk + 1u;
    int shift = 2 * (es - et);
    if (shift < 0 || shift >= 64)
        return shift < 0; /* t >= s covers s; t < s / 2^32 cannot */
    u128 l = (u128)tm * tm;
    u128 a = (u128)(uint64_t)l * m, b = (u128)(uint64_t)(l >> 64) * m;
    u128 lhs_hi = b + (a >> 64);
    uint64_t lhs_lo = (uint64_t)a;
    u128 r = (u128)sm * sm;
    u128 rhs_hi = shift == 0 ? r >> 64 : r >> (64 - shift);
    uint64_t rhs_lo = (uint64_t)(r << shift);
    return lhs_hi > rhs_hi || (lhs_hi == rhs_hi && lhs_lo >= rhs_lo);
}

/* ---- exact alias tables ------------------------------------------------- */

static void
table_free(const roost_allocator *alloc, noise_table *tab)
{
    roost_alloc_free(alloc, tab->hot);
    roost_alloc_free(alloc, tab->hi);
    roost_alloc_free(alloc, tab->lo);
    tab->hot = NULL;
    tab->hi = NULL;
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
    if (bits > 30)
        return roost_fail(em, ROOST_EINVAL, "noise table of %zu entries", n);
    size_t n_slots = (size_t)1 << bits;
    const u128 total = (u128)1 << 127;
    const u128 cap = (u128)1 << (127 - bits);

    u128 *mass = roost_alloc_calloc(alloc, n_slots, sizeof(*mass));
    uint32_t *small = roost_alloc_calloc(alloc, n_slots, sizeof(*small));
    uint32_t *large = roost_alloc_calloc(alloc, n_slots, sizeof(*large));
    tab->hot = roost_alloc_calloc(alloc, n_slots, sizeof(*tab->hot));
    tab->hi = roost_alloc_calloc(alloc, n_slots, sizeof(*tab->hi));
    tab->lo = roost_alloc_calloc(alloc, n_slots, sizeof(*tab->lo));
    int rc = ROOST_OK;
    if (mass == NULL || small == NULL || large == NULL || tab->hot == NULL ||
        tab->hi == NULL || tab->lo == NULL) {
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
        tab->hi[sm] = lg; /* the alias, until the final pass */
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
        tab->hi[lg] = lg;
    }
    /* thr = mass < 2^(127-bits): its top 31-bits bits are thr >> 96. */
    for (size_t i = 0; i < n_slots; i++) {
        uint64_t alias = tab->hi[i];
        tab->hot[i] = (uint32_t)(((uint64_t)(mass[i] >> 96) << bits) | alias);
        tab->hi[i] = (uint64_t)(mass[i] >> 64);
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
 * A draw from a 32-bit value h: bits 31..32-bits pick the slot; bits
 * 31-bits..1 are the first 31 - bits bits of the position w inside the
 * slot (the rest of w comes from further words only if needed); bit 0 is
 * the sign. The slot's own value is chosen when w < thr, its alias
 * otherwise. fast_draw compares the first bits with the hot table and sets
 * *tie when they are equal; the draw is then undecided and table_draw
 * finishes it.
 */
static inline int32_t
fast_draw(const uint32_t *hot, unsigned bits, uint32_t h, uint32_t *tie)
{
    uint32_t slot = h >> (32 - bits);
    uint32_t r = (h >> 1) & (UINT32_MAX >> (bits + 1));
    uint32_t e = hot[slot];
    uint32_t ttop = e >> bits;
    uint32_t alias = e & ((1u << bits) - 1);
    uint32_t own = 0u - (uint32_t)(r < ttop);
    uint32_t mag = (slot & own) | (alias & ~own);
    *tie |= (uint32_t)(r == ttop);
    uint32_t neg = 0u - (h & 1u);
    return (int32_t)((mag ^ neg) - neg);
}

/* The exact draw: fast_draw, and on a tie the next 64 bits of the
 * position (one more word) against bits 95..32 of thr, then, only if those
 * are equal too, 32 more bits against thr's lowest 32. */
static int32_t
table_draw(const noise_table *tab, uint32_t h, roost_rng *rng, int *rc)
{
    uint32_t tie = 0;
    int32_t value = fast_draw(tab->hot, tab->bits, h, &tie);
    if (tie == 0)
        return value;
    const unsigned bits = tab->bits;
    uint32_t slot = h >> (32 - bits);
    uint32_t alias = tab->hot[slot] & ((1u << bits) - 1);
    uint64_t mid = (tab->hi[slot] << 32) | (tab->lo[slot] >> 32);
    uint64_t v = 0;
    int e = roost_rng_u64(rng, &v);
    bool own = v < mid;
    if (e == ROOST_OK && v == mid) {
        e = roost_rng_u64(rng, &v);
        own = (v >> 32) < (tab->lo[slot] & UINT32_MAX);
    }
    if (e != ROOST_OK)
        *rc = e;
    uint32_t mag = own ? slot : alias;
    uint32_t neg = 0u - (h & 1u);
    return (int32_t)((mag ^ neg) - neg);
}

/* Draws per tie group: the fast paths record ties per group of this many
 * coordinates, and only those groups are redone exactly. */
#define NOISE_GROUP 8

/* The fast path for coordinates [0, count) of a chunk, scalar: z[i] =
 * B + k*A from the high (B) and low (A) halves of word w[i], or B alone
 * from the high half when k == 0; tie[g] != 0 when group g has a tie. */
static void
fast_chunk_scalar(const roost_noise *noise, const uint64_t *w, int32_t *z,
                  size_t count, uint8_t *tie)
{
    /* One table per pass keeps the loop's constants in registers. */
    const uint32_t *hot = noise->tb.hot;
    unsigned bits = noise->tb.bits;
    for (size_t g = 0; g * NOISE_GROUP < count; g++) {
        size_t end =
            (g + 1) * NOISE_GROUP < count ? (g + 1) * NOISE_GROUP : count;
        uint32_t t = 0;
        for (size_t i = g * NOISE_GROUP; i < end; i++)
            z[i] = fast_draw(hot, bits, (uint32_t)(w[i] >> 32), &t);
        tie[g] = (uint8_t)t;
    }
    if (noise->k == 0)
        return;
    const int32_t k = (int32_t)noise->k;
    hot = noise->ta.hot;
    bits = noise->ta.bits;
    for (size_t g = 0; g * NOISE_GROUP < count; g++) {
        size_t end =
            (g + 1) * NOISE_GROUP < count ? (g + 1) * NOISE_GROUP : count;
        uint32_t t = 0;
        for (size_t i = g * NOISE_GROUP; i < end; i++)
            z[i] += k * fast_draw(hot, bits, (uint32_t)w[i], &t);
        tie[g] |= (uint8_t)t;
    }
}

#ifdef NOISE_X86
/* Eight fast draws: the lanes of h as in fast_draw; equal first bits set
 * the lane in *tie. Values of ttop and r are below 2^31, so the signed
 * comparisons are exact. */
__attribute__((target("avx2"))) static inline __m256i
fast_draw8(const uint32_t *hot, unsigned bits, __m256i h, __m256i *tie)
{
    const __m256i one = _mm256_set1_epi32(1);
    __m256i slot = _mm256_srl_epi32(h, _mm_cvtsi32_si128((int)(32 - bits)));
    __m256i r =
        _mm256_and_si256(_mm256_srli_epi32(h, 1),
                         _mm256_set1_epi32((int)(UINT32_MAX >> (bits + 1))));
    __m256i e = _mm256_i32gather_epi32((const int *)hot, slot, 4);
    __m256i ttop = _mm256_srl_epi32(e, _mm_cvtsi32_si128((int)bits));
    __m256i alias =
        _mm256_and_si256(e, _mm256_set1_epi32((int)((1u << bits) - 1)));
    __m256i own = _mm256_cmpgt_epi32(ttop, r);
    *tie = _mm256_or_si256(*tie, _mm256_cmpeq_epi32(ttop, r));
    __m256i mag = _mm256_blendv_epi8(alias, slot, own);
    __m256i neg =
        _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_and_si256(h, one));
    return _mm256_sub_epi32(_mm256_xor_si256(mag, neg), neg);
}

/* fast_chunk_scalar for whole groups of eight, with AVX2. The high and low
 * halves of eight words are split into two vectors in coordinate order
 * (shuffle within 128-bit lanes, then a 64-bit permute). */
__attribute__((target("avx2"))) static void
fast_chunk_avx2(const roost_noise *noise, const uint64_t *w, int32_t *z,
                size_t groups, uint8_t *tie)
{
    const uint32_t *hot_b = noise->tb.hot, *hot_a = noise->ta.hot;
    const unsigned bits_b = noise->tb.bits, bits_a = noise->ta.bits;
    const __m256i kv = _mm256_set1_epi32((int)noise->k);
    const bool two = noise->k != 0;
    for (size_t g = 0; g < groups; g++) {
        __m256 w0 = _mm256_castsi256_ps(
            _mm256_loadu_si256((const __m256i *)(const void *)(w + 8 * g)));
        __m256 w1 = _mm256_castsi256_ps(
            _mm256_loadu_si256((const __m256i *)(const void *)(w + 8 * g + 4)));
        __m256i hi = _mm256_permute4x64_epi64(
            _mm256_castps_si256(_mm256_shuffle_ps(w0, w1, 0xDD)), 0xD8);
        __m256i t = _mm256_setzero_si256();
        __m256i b = fast_draw8(hot_b, bits_b, hi, &t);
        if (two) {
            __m256i lo = _mm256_permute4x64_epi64(
                _mm256_castps_si256(_mm256_shuffle_ps(w0, w1, 0x88)), 0xD8);
            __m256i a = fast_draw8(hot_a, bits_a, lo, &t);
            b = _mm256_add_epi32(b, _mm256_mullo_epi32(a, kv));
        }
        _mm256_storeu_si256((__m256i *)(void *)(z + 8 * g), b);
        tie[g] = (uint8_t)!_mm256_testz_si256(t, t);
    }
}
#endif

/* Integer noise for count <= NOISE_CHUNK coordinates into z, from one
 * CSPRNG word per coordinate (B from its high half, A from its low half).
 * The rare extra words of exact comparisons are drawn from the stream
 * after the chunk's words, in coordinate order (B before A), so the output
 * is a fixed function of the rng stream whichever path computes it. */
static int
draw_chunk(roost_noise *noise, int32_t *z, size_t count)
{
    int rc = roost_rng_bytes(noise->rng, noise->words,
                             count * sizeof(*noise->words));
    if (rc != ROOST_OK)
        return rc;
    const uint64_t *w = noise->words;
    uint8_t tie[NOISE_CHUNK / NOISE_GROUP];
    size_t groups = (count + NOISE_GROUP - 1) / NOISE_GROUP, done = 0;
#ifdef NOISE_X86
    if (noise->avx2) {
        done = count / NOISE_GROUP;
        fast_chunk_avx2(noise, w, z, done, tie);
    }
#endif
    fast_chunk_scalar(noise, w + done * NOISE_GROUP, z + done * NOISE_GROUP,
                      count - done * NOISE_GROUP, tie + done);
    const noise_table *tb = &noise->tb, *ta = &noise->ta;
    for (size_t g = 0; g < groups; g++) {
        if (tie[g] == 0)
            continue;
        /* About 2^-13 of the groups at the default grid. */
        size_t end =
            (g + 1) * NOISE_GROUP < count ? (g + 1) * NOISE_GROUP : count;
        for (size_t i = g * NOISE_GROUP; i < end; i++) {
            int64_t b = table_draw(tb, (uint32_t)(w[i] >> 32), noise->rng, &rc);
            if (noise->k != 0)
                b += noise->k * table_draw(ta, (uint32_t)w[i], noise->rng, &rc);
            z[i] = (int32_t)b;
        }
    }
    return rc;
}

/* ---- public API ---------------------------------------------------------- */

/* The clip and grid a sampler can be built for. */
static int
check_clip_grid(double clip, unsigned grid_bits, roost_errmsg *em)
{
    if (!(clip > 0.0) || !isfinite(clip))
        return roost_fail(em, ROOST_EINVAL,
                          "noise: clip must be positive and finite (got %g)",
                          clip);
    if (grid_bits > ROOST_NOISE_GRID_BITS_MAX)
        return roost_fail(em, ROOST_EINVAL,
                          "noise: grid_bits %u exceeds the maximum %u",
                          grid_bits, ROOST_NOISE_GRID_BITS_MAX);
    return ROOST_OK;
}

/*
 * noise_build - roost_noise_create without the checks of out and rng: it
 * validates sigma, clip and grid_bits and builds the tables. Building
 * draws nothing from rng (it is only stored for later draws), so
 * roost_noise_closeness_for() passes NULL for a sampler it only reads the
 * closeness figures of and destroys without drawing.
 */
static int
noise_build(roost_noise **out, const roost_allocator *alloc, roost_rng *rng,
            double sigma, double clip, unsigned grid_bits, roost_errmsg *em)
{
    if (!(sigma > 0.0) || !isfinite(sigma))
        return roost_fail(em, ROOST_EINVAL,
                          "noise: sigma must be positive and finite (got %g)",
                          sigma);
    int checked = check_clip_grid(clip, grid_bits, em);
    if (checked != ROOST_OK)
        return checked;
    double stddev = sigma * clip;
    int e2 = 0;
    (void)frexp(stddev, &e2); /* stddev = f 2^e2, f in [0.5, 1) */
    double grid = ldexp(1.0, e2 - 1 - (int)grid_bits);
    /* stddev < DBL_MIN: a product that underflowed (frexp of 0 gives
     * exponent 0, which would hide it from the grid check). */
    if (!isfinite(stddev) || stddev < DBL_MIN || stddev > 0x1p100 ||
        grid < (double)FLT_MIN)
        return roost_fail(em, ROOST_EINVAL,
                          "noise: sigma*clip = %g gives a grid %g outside the "
                          "float range",
                          stddev, grid);

    roost_noise *noise = roost_alloc_calloc(alloc, 1, sizeof(*noise));
    if (noise == NULL)
        return roost_fail(em, ROOST_ENOMEM, "noise sampler");
    noise->alloc = alloc;
    noise->rng = rng;
    atomic_init(&noise->refs, 1);
    noise->sigma = sigma;
    noise->clip = clip;
    noise->stddev = stddev;
    noise->grid = grid;
    noise->inv_grid = 1.0 / grid;
#ifdef NOISE_X86
    noise->avx2 = __builtin_cpu_supports("avx2") != 0;
#endif
    noise->s = stddev / grid; /* exact: grid is a power of two */

    double kk = floor(sqrt(noise->s / NOISE_TAU_MIN - 1.0));
    int rc;
    if (kk >= 2.0) {
        noise->k = (int64_t)kk;
        /* The convolution has variance t^2 (1 + K^2), which must not fall
         * short of s^2: a narrower Gaussian than sigma*clip would differ
         * from P_s by about z^2/s^2 times the shortfall, far beyond mu in
         * the tails, while a wider one is the Gaussian of sigma*clip plus
         * independent noise, a post-processing. The quotient is rounded
         * either way, so step t up to the first double that covers s
         * (one or two ulps at most). */
        noise->t = noise->s / sqrt(1.0 + kk * kk);
        while (!conv_covers(noise->t, kk, noise->s))
            noise->t = nextafter(noise->t, HUGE_VAL);
        /* tau = t^2 / s' with s' = t sqrt(1 + K^2) >= s; using s makes tau
         * larger by under 1e-15 relative and the ripple smaller by about
         * 1e-14 of itself (~1e-33), inside the 2^-60 slack of each table's
         * mu. */
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
            roost_alloc_calloc(alloc, NOISE_CHUNK, sizeof(*noise->words));
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
    return noise_build(out, alloc, rng, sigma, clip, grid_bits, em);
}

void
roost_noise_destroy(roost_noise *noise)
{
    /* Drops one reference: the caller's (or a memo's, or a child's). */
    while (noise != NULL && atomic_fetch_sub(&noise->refs, 1) == 1) {
        const roost_allocator *alloc = noise->alloc;
        roost_noise *parent = noise->parent;
        if (noise->words != NULL)
            OPENSSL_cleanse(noise->words, NOISE_CHUNK * sizeof(*noise->words));
        roost_alloc_free(alloc, noise->words);
        if (parent == NULL) {
            table_free(alloc, &noise->tb);
            table_free(alloc, &noise->ta);
        }
        OPENSSL_cleanse(noise, sizeof(*noise));
        roost_alloc_free(alloc, noise);
        noise = parent; /* the reference this sampler held */
    }
}

/* Whether every |x[i]| < lim (false for NaN): a branch-free pass the
 * compiler vectorises; the caller looks for the culprit only on failure. */
static bool
all_below(const float *x, size_t n, float lim)
{
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad |= (uint32_t) !(fabsf(x[i]) < lim);
    return bad == 0;
}

/* x[i] <- float(g * (round(x[i]/g) + z[i])) * scale for i < count, the
 * scalar version. Adding and subtracting 1.5*2^52 rounds a double of
 * magnitude below 2^51 to the nearest integer, ties to even, without a
 * libm call; the result is exact and does not depend on the rounding of
 * any earlier operation, since x/g is itself exact. */
static void
apply_scalar(const roost_noise *noise, float *x, const int32_t *z, size_t count,
             float scale)
{
    const double magic = 0x1.8p52, inv_g = noise->inv_grid, g = noise->grid;
    for (size_t i = 0; i < count; i++) {
        double m = ((double)x[i] * inv_g + magic) - magic;
        x[i] = (float)((m + (double)z[i]) * g) * scale;
    }
}

#ifdef NOISE_X86
/* apply_scalar four lanes at a time: the same operations in the same
 * order, each correctly rounded, so the same results. */
__attribute__((target("avx2"))) static void
apply_avx2(const roost_noise *noise, float *x, const int32_t *z, size_t count,
           float scale)
{
    const __m256d magic = _mm256_set1_pd(0x1.8p52);
    const __m256d inv_g = _mm256_set1_pd(noise->inv_grid);
    const __m256d g = _mm256_set1_pd(noise->grid);
    const __m128 sc = _mm_set1_ps(scale);
    size_t i = 0;
    for (; i + 4 <= count; i += 4) {
        __m256d xd = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
        __m256d m = _mm256_sub_pd(
            _mm256_add_pd(_mm256_mul_pd(xd, inv_g), magic), magic);
        __m256d zd = _mm256_cvtepi32_pd(
            _mm_loadu_si128((const __m128i *)(const void *)(z + i)));
        __m128 y = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_add_pd(m, zd), g));
        _mm_storeu_ps(x + i, _mm_mul_ps(y, sc));
    }
    apply_scalar(noise, x + i, z + i, count - i, scale);
}
#endif

int
roost_noise_add_scaled(roost_noise *noise, float *x, size_t n, float scale,
                       roost_errmsg *em)
{
    return roost_noise_add_scaled_each(noise, x, n, scale, NULL, NULL, em);
}

int
roost_noise_add_scaled_each(roost_noise *noise, float *x, size_t n, float scale,
                            void (*each)(void *arg, size_t off, size_t count),
                            void *arg, roost_errmsg *em)
{
    if (noise == NULL || (x == NULL && n > 0))
        return roost_fail(em, ROOST_EINVAL, "noise_add: NULL argument");
    /* Check everything first so a rejected vector is left untouched and no
     * randomness is spent on it. |x|/g < 2^51 is |x| < 2^51 g exactly (g
     * is a power of two); as a float that bound is exact, or infinite when
     * it exceeds FLT_MAX (every finite float then passes). */
    const double limit = 0x1p51;
    double lim_d = limit * noise->grid;
    float lim = lim_d > (double)FLT_MAX ? INFINITY : (float)lim_d;
    if (!all_below(x, n, lim)) {
        for (size_t i = 0; i < n; i++) {
            if (!isfinite(x[i]))
                return roost_fail(em, ROOST_ENONFINITE,
                                  "noise_add: coordinate %zu is not finite", i);
            if (fabs((double)x[i] * noise->inv_grid) >= limit)
                return roost_fail(em, ROOST_EOVERFLOW,
                                  "noise_add: coordinate %zu (%g) exceeds "
                                  "2^51 grid steps of %g",
                                  i, (double)x[i], noise->grid);
        }
    }
    int32_t z[NOISE_CHUNK];
    int rc = ROOST_OK;
    for (size_t base = 0; base < n && rc == ROOST_OK; base += NOISE_CHUNK) {
        size_t count = n - base < NOISE_CHUNK ? n - base : NOISE_CHUNK;
        rc = draw_chunk(noise, z, count);
        if (rc != ROOST_OK)
            break;
#ifdef NOISE_X86
        if (noise->avx2)
            apply_avx2(noise, x + base, z, count, scale);
        else
#endif
            apply_scalar(noise, x + base, z, count, scale);
        if (each != NULL)
            each(arg, base, count);
    }
    OPENSSL_cleanse(z, sizeof(z));
    OPENSSL_cleanse(noise->words, NOISE_CHUNK * sizeof(*noise->words));
    if (rc != ROOST_OK)
        return roost_fail(em, rc, "noise_add: CSPRNG failure");
    return ROOST_OK;
}

int
roost_noise_add(roost_noise *noise, float *x, size_t n, roost_errmsg *em)
{
    /* float * 1.0f is exact: the same values as without a scale. */
    return roost_noise_add_scaled(noise, x, n, 1.0f, em);
}

int
roost_noise_fill_standard(roost_noise *noise, double *out, size_t n)
{
    if (noise == NULL || (out == NULL && n > 0))
        return ROOST_EINVAL;
    int32_t z[NOISE_CHUNK];
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
    OPENSSL_cleanse(noise->words, NOISE_CHUNK * sizeof(*noise->words));
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

/* ---- closeness without a sampler ---------------------------------------- */

/*
 * The closeness figures of a sampler are a pure function of (sigma, clip,
 * grid_bits), and building the tables that give them costs about 20 ms,
 * while `roost sim` asks for them once per virtual client and round. A
 * roost_noise_memo remembers the last NOISE_MEMO_SLOTS distinct keys,
 * compared by exact equality of the doubles, and builds with its own
 * allocator. Its mutex guards the slots and the replacement cursor (one
 * memo may serve several threads); it is never held while tables are
 * built, so two threads missing on the same key both build (the same
 * figures) and the second insert finds the key present.
 */
#define NOISE_MEMO_SLOTS 8

struct memo_slot {
    double sigma, clip;
    unsigned grid_bits;
    /* A sampler built for the key (no rng, no word buffer): its
     * closeness figures answer roost_noise_closeness_for and its tables
     * are shared by roost_noise_create_memo. NULL: the slot is free. The
     * slot holds one reference. */
    roost_noise *tmpl;
};

struct roost_noise_memo {
    const roost_allocator *alloc;
    pthread_mutex_t lock;
    struct memo_slot slots[NOISE_MEMO_SLOTS];
    unsigned next; /* slot the next new key replaces */
};

int
roost_noise_memo_create(roost_noise_memo **out, const roost_allocator *alloc,
                        roost_errmsg *em)
{
    if (out == NULL)
        return roost_fail(em, ROOST_EINVAL, "noise: out is NULL");
    *out = NULL;
    roost_noise_memo *m = roost_alloc_calloc(alloc, 1, sizeof(*m));
    if (m == NULL)
        return roost_fail(em, ROOST_ENOMEM, "noise: out of memory");
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        roost_alloc_free(alloc, m);
        return roost_fail(em, ROOST_ENOMEM, "noise: cannot create a mutex");
    }
    m->alloc = alloc;
    *out = m;
    return ROOST_OK;
}

void
roost_noise_memo_destroy(roost_noise_memo *m)
{
    if (m == NULL)
        return;
    /* Samplers made from a template keep it alive past this. */
    for (size_t i = 0; i < NOISE_MEMO_SLOTS; i++)
        roost_noise_destroy(m->slots[i].tmpl);
    pthread_mutex_destroy(&m->lock);
    roost_alloc_free(m->alloc, m);
}

/* The slot holding the key, or NULL. Call with m->lock held. */
static struct memo_slot *
memo_find(roost_noise_memo *m, double sigma, double clip, unsigned grid_bits)
{
    for (size_t i = 0; i < NOISE_MEMO_SLOTS; i++) {
        struct memo_slot *c = &m->slots[i];
        if (c->tmpl != NULL && c->sigma == sigma && c->clip == clip &&
            c->grid_bits == grid_bits)
            return c;
    }
    return NULL;
}

/*
 * memo_template - the memo's sampler for the key, with a reference taken
 * for the caller (who drops it with roost_noise_destroy). A key the memo
 * lacks is built outside the lock (about 20 ms), with the memo's
 * allocator, and takes the next slot in turn; two threads missing
 * together both build, the first to insert wins and the other's goes.
 * Only keys that built are stored, so a hit needs no checks, and invalid
 * input (NaN equals nothing) always reaches noise_build's.
 */
static int
memo_template(roost_noise_memo *m, double sigma, double clip,
              unsigned grid_bits, roost_noise **out, roost_errmsg *em)
{
    pthread_mutex_lock(&m->lock);
    struct memo_slot *c = memo_find(m, sigma, clip, grid_bits);
    if (c != NULL)
        atomic_fetch_add(&c->tmpl->refs, 1);
    pthread_mutex_unlock(&m->lock);
    if (c != NULL) {
        *out = c->tmpl;
        return ROOST_OK;
    }
    roost_noise *built = NULL;
    int rc = noise_build(&built, m->alloc, NULL, sigma, clip, grid_bits, em);
    if (rc != ROOST_OK)
        return rc;
    /* It never draws: its word buffer goes. */
    roost_alloc_free(m->alloc, built->words);
    built->words = NULL;
    roost_noise *evicted = NULL;
    pthread_mutex_lock(&m->lock);
    c = memo_find(m, sigma, clip, grid_bits);
    if (c == NULL) {
        c = &m->slots[m->next];
        m->next = (m->next + 1) % NOISE_MEMO_SLOTS;
        evicted = c->tmpl;
        *c = (struct memo_slot){.sigma = sigma,
                                .clip = clip,
                                .grid_bits = grid_bits,
                                .tmpl = built};
        built = NULL; /* the slot's reference */
    }
    atomic_fetch_add(&c->tmpl->refs, 1);
    *out = c->tmpl;
    pthread_mutex_unlock(&m->lock);
    roost_noise_destroy(evicted);
    roost_noise_destroy(built);
    return ROOST_OK;
}

int
roost_noise_closeness_for(roost_noise_memo *memo, double sigma, double clip,
                          unsigned grid_bits, double *mu, double *beta,
                          roost_errmsg *em)
{
    if (mu == NULL || beta == NULL)
        return roost_fail(em, ROOST_EINVAL, "noise: mu or beta is NULL");
    if (grid_bits == 0)
        grid_bits = ROOST_NOISE_GRID_BITS_DEFAULT;
    roost_noise *probe = NULL;
    int rc = memo != NULL
                 ? memo_template(memo, sigma, clip, grid_bits, &probe, em)
                 : noise_build(&probe, NULL, NULL, sigma, clip, grid_bits, em);
    if (rc != ROOST_OK)
        return rc;
    *mu = probe->mu;
    *beta = probe->beta;
    roost_noise_destroy(probe);
    return ROOST_OK;
}

int
roost_noise_create_memo(roost_noise **out, const roost_allocator *alloc,
                        roost_noise_memo *memo, roost_rng *rng, double sigma,
                        double clip, unsigned grid_bits, roost_errmsg *em)
{
    if (memo == NULL)
        return roost_noise_create(out, alloc, rng, sigma, clip, grid_bits, em);
    if (out == NULL)
        return roost_fail(em, ROOST_EINVAL, "noise: out is NULL");
    *out = NULL;
    if (rng == NULL)
        return roost_fail(em, ROOST_EINVAL, "noise: rng is NULL");
    roost_noise *child = roost_alloc_calloc(alloc, 1, sizeof(*child));
    uint64_t *words =
        roost_alloc_calloc(alloc, NOISE_CHUNK, sizeof(*child->words));
    roost_noise *tmpl = NULL;
    int rc = child == NULL || words == NULL
                 ? roost_fail(em, ROOST_ENOMEM, "noise sampler")
                 : memo_template(memo, sigma, clip, grid_bits, &tmpl, em);
    if (rc != ROOST_OK) {
        roost_alloc_free(alloc, child);
        roost_alloc_free(alloc, words);
        return rc;
    }
    /* Everything but the allocator, the rng, the word buffer and the
     * ownership is the template's: the same tables, grid and closeness
     * figures. The template's reference taken above is the child's. */
    memcpy(child, tmpl, sizeof(*child));
    child->alloc = alloc;
    child->rng = rng;
    child->words = words;
    child->parent = tmpl;
    atomic_init(&child->refs, 1);
    *out = child;
    return ROOST_OK;
}

/* ---- calibration for this sampler ---------------------------------------- */

/* Tries of the fixed-point search for a first sigma that passes (each
 * builds at most one sampler). */
#define NOISE_CALIBRATE_TRIES 8
/* Headroom on the sampler's (mu, beta) in that search: near a given sigma
 * they move a little with it (beta by about 1% as the cut of the tables
 * steps), and a calibration for exactly the largest values seen picks a
 * sigma whose values may be slightly larger again. The bisection that
 * follows takes back what the headroom over-provides. */
#define NOISE_CLOSENESS_HEADROOM 1.01
/* Largest sigma tried when the fixed point does not settle (as in
 * roost_dp_calibrate_sigma). */
#define NOISE_SIGMA_MAX 1e6

/*
 * sampled_epsilon - THE check of a calibration: the epsilon that
 * roost_dp_epsilon_sampled() gives for (q, sigma, steps) with the terms of
 * the sampler for sigma, n_mu = draws * mu and n_beta = draws * beta, at
 * eps_cap = target_eps. A budget that later charges the same call accepts
 * the planned run exactly when this is <= target_eps. A sigma so small
 * that the accountant overflows gives HUGE_VAL (too little noise).
 */
static int
sampled_epsilon(roost_noise_memo *memo, double q, uint64_t steps, double draws,
                double clip, unsigned grid_bits, double delta,
                double target_eps, double sigma, double *eps, roost_errmsg *em)
{
    double mu, beta;
    int rc =
        roost_noise_closeness_for(memo, sigma, clip, grid_bits, &mu, &beta, em);
    if (rc != ROOST_OK)
        return rc;
    roost_dp_event ev = {.q = q, .sigma = sigma, .steps = steps};
    rc = roost_dp_epsilon_sampled(&ev, 1, draws * mu, draws * beta, target_eps,
                                  delta, eps, NULL, em);
    if (rc == ROOST_EOVERFLOW) {
        *eps = HUGE_VAL;
        return ROOST_OK;
    }
    return rc;
}

static int calibrate_sampled(roost_noise_memo *memo, double q, uint64_t steps,
                             double draws, double clip, unsigned grid_bits,
                             double delta, double target_eps, double ideal,
                             double *sigma, roost_errmsg *em);

int
roost_dp_calibrate_sigma_sampled(roost_noise_memo *memo, double q,
                                 uint64_t steps, double draws, double clip,
                                 unsigned grid_bits, double delta,
                                 double target_eps, double *sigma,
                                 roost_errmsg *em)
{
    if (sigma == NULL)
        return roost_fail(em, ROOST_EINVAL, "sigma is NULL");
    if (!(draws >= 0.0) || !isfinite(draws))
        return roost_fail(em, ROOST_EINVAL,
                          "noise draws %g must be finite and >= 0", draws);
    int checked = check_clip_grid(clip, grid_bits, em);
    if (checked != ROOST_OK)
        return checked;
    /* The ideal mechanism's calibration checks q, steps, delta and the
     * target, and is the answer when nothing is drawn. */
    double ideal;
    int rc = roost_dp_calibrate_sigma(q, steps, delta, target_eps, &ideal, em);
    if (rc != ROOST_OK || draws == 0.0) {
        if (rc == ROOST_OK)
            *sigma = ideal;
        return rc;
    }
    /* The search asks for the same sigma's figures more than once. */
    roost_noise_memo *own = NULL;
    if (memo == NULL) {
        if ((rc = roost_noise_memo_create(&own, NULL, em)) != ROOST_OK)
            return rc;
        memo = own;
    }
    rc = calibrate_sampled(memo, q, steps, draws, clip, grid_bits, delta,
                           target_eps, ideal, sigma, em);
    roost_noise_memo_destroy(own);
    return rc;
}

/* roost_dp_calibrate_sigma_sampled past its checks, with a memo and the
 * ideal mechanism's sigma. */
static int
calibrate_sampled(roost_noise_memo *memo, double q, uint64_t steps,
                  double draws, double clip, unsigned grid_bits, double delta,
                  double target_eps, double ideal, double *sigma,
                  roost_errmsg *em)
{
    int rc;

    /* An upper end: calibrate the ideal mechanism at the epsilon and delta
     * the largest (mu, beta) seen leave it, d0 = (D - e^E n beta) e^(-n mu)
     * and E - 2 n mu, until the sampler of the sigma found passes the
     * check with its own figures. */
    double mu, beta, mu_max = 0.0, beta_max = 0.0, hi = 0.0, cand = ideal;
    double eps = HUGE_VAL;
    rc =
        roost_noise_closeness_for(memo, ideal, clip, grid_bits, &mu, &beta, em);
    for (int attempt = 0;
         rc == ROOST_OK && hi == 0.0 && attempt < NOISE_CALIBRATE_TRIES;
         attempt++) {
        mu_max = fmax(mu_max, mu);
        beta_max = fmax(beta_max, beta);
        double n_mu = draws * mu_max, n_beta = draws * beta_max;
        double tail = exp(target_eps) * n_beta;
        if (!(tail < delta))
            return roost_fail(
                em, ROOST_EBUDGET,
                "epsilon %g cannot be met at delta %g: the noise sampler's "
                "tail term e^epsilon * n * beta (beta %.3g, n = %.4g draws) "
                "is %.3g. For the sigmas tried, delta %g is reachable only "
                "for epsilon below %.2f",
                target_eps, delta, beta_max, draws, tail, delta,
                log(delta / n_beta));
        if (!(2.0 * n_mu < target_eps))
            return roost_fail(em, ROOST_EBUDGET,
                              "epsilon %g cannot be met: the noise sampler's "
                              "term 2 * n * mu (mu <= %.3g per draw, n = %.4g "
                              "draws) is %.3g, not below it",
                              target_eps, mu_max, draws, 2.0 * n_mu);
        /* The headroom, unless it alone leaves no room. */
        double h = NOISE_CLOSENESS_HEADROOM;
        if (!(h * tail < delta) || !(2.0 * h * n_mu < target_eps))
            h = 1.0;
        double d0 = (delta - h * tail) * exp(-h * n_mu);
        rc = roost_dp_calibrate_sigma(q, steps, d0, target_eps - 2.0 * h * n_mu,
                                      &cand, em);
        if (rc == ROOST_OK)
            rc = sampled_epsilon(memo, q, steps, draws, clip, grid_bits, delta,
                                 target_eps, cand, &eps, em);
        if (rc == ROOST_OK && eps <= target_eps)
            hi = cand;
        else if (rc == ROOST_OK)
            rc = roost_noise_closeness_for(memo, cand, clip, grid_bits, &mu,
                                           &beta, em);
    }
    /* Not settled: doubling sigma keeps the mantissa of sigma*clip, hence
     * the sampler's (mu, beta), and lowers the ideal epsilon, so doubling
     * the last candidate ends on a passing sigma if any does. */
    for (double s = 2.0 * cand; rc == ROOST_OK && hi == 0.0; s *= 2.0) {
        if (s > NOISE_SIGMA_MAX)
            return roost_fail(em, ROOST_EINVAL,
                              "target epsilon %g is unreachable at delta %g "
                              "with the noise sampler's terms (n = %.4g "
                              "draws): sigma = %g still gives epsilon %g",
                              target_eps, delta, draws, s / 2.0, eps);
        rc = sampled_epsilon(memo, q, steps, draws, clip, grid_bits, delta,
                             target_eps, s, &eps, em);
        if (rc == ROOST_OK && eps <= target_eps)
            hi = s;
    }
    if (rc != ROOST_OK)
        return rc;

    /* Down to the smallest passing sigma within the tolerance. Below the
     * ideal calibration nothing passes: the sampled epsilon is at least
     * the ideal one at delta (d0 < delta, and 2 n mu >= 0), and
     * roost_dp_calibrate_sigma's answer is within ROOST_DP_CALIBRATE_RTOL
     * of a sigma that fails even that. The sampler's figures are not
     * monotone in sigma (the cut of its tables steps), so this finds a
     * passing sigma just above one that fails, which is the smallest
     * wherever those figures matter less than the tolerance. */
    double lo = ideal * (1.0 - ROOST_DP_CALIBRATE_RTOL);
    while (hi - lo > ROOST_DP_CALIBRATE_RTOL * hi) {
        double mid = sqrt(lo * hi);
        rc = sampled_epsilon(memo, q, steps, draws, clip, grid_bits, delta,
                             target_eps, mid, &eps, em);
        if (rc != ROOST_OK)
            return rc;
        if (eps <= target_eps)
            hi = mid;
        else
            lo = mid;
    }
    *sigma = hi;
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
    *thr_hi = tab->hi[slot];
    *thr_lo = tab->lo[slot];
    *alias = tab->hot[slot] & ((1u << tab->bits) - 1);
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
    *value = table_draw(tab, (uint32_t)word, noise->rng, &rc);
    return rc;
}

bool
roost_noise_debug_use_simd(roost_noise *noise, bool on)
{
#ifdef NOISE_X86
    noise->avx2 = on && __builtin_cpu_supports("avx2") != 0;
#else
    (void)on;
    noise->avx2 = false;
#endif
    return noise->avx2;
}
