/*
 * fuzz_strategy_state.c - libFuzzer target for the server optimiser state
 * blob (roost_strategy_state_load in server/strategy.c), which a resuming
 * coordinator reads back from its store.
 *
 * Input: byte 0 picks the handle: byte % 5 the kind (FedAvg, FedAvgM,
 * FedAdam, FedYogi or FedAdagrad, 4 coordinates), byte / 5 % 3 central DP
 * (none, a fixed clip, adaptive clipping; noise from a deterministic test
 * generator). The rest is the blob.
 *
 * Promises checked (a broken one traps): load returns ROOST_OK or one of
 * the documented refusals; a refused blob leaves the handle exactly as it
 * was (the same saved state, bit for bit, and the same central-DP figures:
 * clip, grid, sampler closeness and sums); an accepted blob saves back to
 * the same bytes (a central-DP blob saved before the sampler sums were
 * kept saves back with zero sums added), the loaded sums are what dp_info
 * reports, and a round from the accepted state gives a finite model or
 * one of finish's documented refusals and only adds to the sums.
 *
 * Seeds (corpus/strategy_state/) are valid blobs for each kind and mode.
 */
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "server/strategy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { N = 4, HEADER = 24, SUMS = 8u };

static const roost_strategy_kind kinds[] = {
    ROOST_STRATEGY_FEDAVG, ROOST_STRATEGY_FEDAVGM, ROOST_STRATEGY_FEDADAM,
    ROOST_STRATEGY_FEDYOGI, ROOST_STRATEGY_FEDADAGRAD};

/* One round with a fixed delta; returns finish's code, x updated. */
static int
one_round(roost_strategy *s, float *x)
{
    static const float delta[N] = {0.5f, -0.25f, 1.0f, 0.0f};
    roost_strategy_begin_round(s);
    if (roost_strategy_add(s, delta, 1.0, NULL) != ROOST_OK)
        abort();
    return roost_strategy_finish(s, x, NULL);
}

static uint32_t
u32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static double
double_at(const uint8_t *p)
{
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--)
        u = u << 8 | p[i];
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

/* Field by field, bitwise (the struct's padding is not compared). */
static bool
same_dp_info(const roost_strategy_dp_info *a, const roost_strategy_dp_info *b)
{
#define SAME(f) (memcmp(&a->f, &b->f, sizeof(a->f)) == 0)
    return SAME(enabled) && SAME(noise_multiplier) &&
           SAME(update_noise_multiplier) && SAME(clip_norm) &&
           SAME(next_clip_norm) && SAME(update_clip_norm) && SAME(grid) &&
           SAME(denominator) && SAME(mean_noise_stddev) &&
           SAME(adaptive_clip) && SAME(count_sigma) && SAME(noised_fraction) &&
           SAME(closeness_mu) && SAME(closeness_beta) &&
           SAME(draws_per_round) && SAME(count_closeness_mu) &&
           SAME(count_closeness_beta) && SAME(count_draws_per_round) &&
           SAME(sampler_n_mu) && SAME(sampler_n_beta) &&
           SAME(sampler_sums_loaded) && SAME(insecure_rng);
#undef SAME
}

/* A handle of the chosen kind and mode; its generator is returned in *rng
 * (NULL without central DP) and always seeded alike. */
static roost_strategy *
make(uint8_t pick, roost_rng **rng)
{
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, kinds[pick % 5]);
    *rng = NULL;
    int mode = pick / 5 % 3;
    if (mode > 0) {
        if (roost_rng_create_insecure_deterministic(rng, NULL, 7, 0) !=
            ROOST_OK)
            abort();
        cfg.central_dp = true;
        cfg.dp_clip_norm = 1;
        cfg.dp_noise_multiplier = 0.01;
        cfg.dp_expected_updates = 4;
        cfg.dp_rng = *rng;
        cfg.dp_adaptive_clip = mode == 2;
        cfg.dp_count_sigma = 0.01; /* adaptive clipping needs 2 * it > z */
    }
    roost_strategy *s = NULL;
    if (roost_strategy_create(&s, NULL, &cfg, N, NULL) != ROOST_OK)
        abort();
    return s;
}

/* An accepted blob must save back as loaded; one without the sampler sums
 * from a central-DP handle gains flag 8 and two zero sums after the clip
 * (if any), everything else unchanged. */
static void
check_saved(const roost_strategy *s, const uint8_t *blob, size_t len)
{
    unsigned char back[HEADER + 8 * 3 + 2 * 8 * N];
    size_t out;
    if (roost_strategy_state_save(s, back, sizeof(back), &out, NULL) !=
        ROOST_OK)
        abort();
    uint32_t flags = u32_at(blob + 12), saved = u32_at(back + 12);
    if (flags == saved) {
        if (out != len || memcmp(back, blob, len) != 0)
            abort();
        return;
    }
    if (saved != (flags | SUMS) || out != len + 16 ||
        memcmp(back, blob, 12) != 0 || memcmp(back + 16, blob + 16, 8) != 0)
        abort();
    size_t at = HEADER + ((flags & 4u) ? 8 : 0);
    static const unsigned char zero[16];
    if (memcmp(back + HEADER, blob + HEADER, at - HEADER) != 0 ||
        memcmp(back + at, zero, 16) != 0 ||
        memcmp(back + at + 16, blob + at, len - at) != 0)
        abort();
}

/* Building a central-DP handle builds its noise samplers' tables, some
 * milliseconds each, so one handle per pick is kept for the whole run and
 * brought back to a known state after every input: loading its own saved
 * blob (with sums) right after creation fixes that state, which no round
 * ever changes. */
typedef struct cached {
    roost_strategy *s;
    roost_rng *rng;
    unsigned char blob[HEADER + 8 * 3 + 2 * 8 * N];
    size_t len;
    roost_strategy_dp_info info;
} cached;

static unsigned char *
saved(const roost_strategy *s, size_t *len)
{
    static unsigned char back[HEADER + 8 * 3 + 2 * 8 * N];
    if (roost_strategy_state_save(s, back, sizeof(back), len, NULL) != ROOST_OK)
        abort();
    return back;
}

static cached *
baseline(uint8_t pick)
{
    static cached cache[15];
    cached *c = &cache[pick % 15];
    if (c->s != NULL)
        return c;
    c->s = make(pick, &c->rng);
    const unsigned char *b = saved(c->s, &c->len);
    memcpy(c->blob, b, c->len);
    if (roost_strategy_state_load(c->s, c->blob, c->len, NULL) != ROOST_OK ||
        roost_strategy_dp_info_get(c->s, &c->info) != ROOST_OK)
        abort();
    return c;
}

/* The cached handle is exactly at its baseline: same blob, same figures. */
static void
check_baseline(const cached *c)
{
    size_t len;
    const unsigned char *b = saved(c->s, &len);
    roost_strategy_dp_info now;
    if (len != c->len || memcmp(b, c->blob, len) != 0 ||
        roost_strategy_dp_info_get(c->s, &now) != ROOST_OK ||
        !same_dp_info(&now, &c->info))
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t pick = (uint8_t)(data[0] % 15);
    cached *c = baseline(pick);
    const uint8_t *blob = data + 1;
    size_t len = size - 1;
    roost_errmsg em;
    int rc = roost_strategy_state_load(c->s, blob, len, &em);
    if (rc != ROOST_OK) {
        if (rc != ROOST_EDECODE && rc != ROOST_ECONFIG && rc != ROOST_ESHAPE &&
            rc != ROOST_ENONFINITE)
            abort();
        check_baseline(c);
        return 0;
    }
    check_saved(c->s, blob, len);
    roost_strategy_dp_info after;
    if (roost_strategy_dp_info_get(c->s, &after) != ROOST_OK)
        abort();
    if (after.enabled) {
        uint32_t flags = u32_at(blob + 12);
        if (after.sampler_sums_loaded != ((flags & SUMS) != 0))
            abort();
        if (flags & SUMS) {
            size_t at = HEADER + ((flags & 4u) ? 8 : 0);
            if (memcmp(&after.sampler_n_mu, &(double){double_at(blob + at)},
                       8) != 0 ||
                memcmp(&after.sampler_n_beta,
                       &(double){double_at(blob + at + 8)}, 8) != 0)
                abort();
        }
    }
    if (roost_strategy_state_load(c->s, c->blob, c->len, NULL) != ROOST_OK)
        abort();
    check_baseline(c);

    /* A round from the accepted state, on a fresh handle. */
    roost_rng *rng;
    roost_strategy *f = make(pick, &rng);
    if (roost_strategy_state_load(f, blob, len, NULL) != ROOST_OK)
        abort();
    float x[N] = {1, 2, 3, 4};
    int frc = one_round(f, x);
    if (frc != ROOST_OK && frc != ROOST_ENONFINITE && frc != ROOST_EOVERFLOW)
        abort();
    for (int i = 0; i < N; i++)
        if (!isfinite(x[i]))
            abort();
    roost_strategy_dp_info next;
    if (roost_strategy_dp_info_get(f, &next) != ROOST_OK ||
        !(next.sampler_n_mu >= after.sampler_n_mu) ||
        !(next.sampler_n_beta >= after.sampler_n_beta))
        abort();
    roost_strategy_destroy(f);
    roost_rng_destroy(rng);
    return 0;
}
