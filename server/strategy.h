/*
 * strategy.h - server-side aggregation strategies: how the coordinator turns
 * the validated updates of one round into the next global model.
 *
 * Parameters are one contiguous float32 vector of n coordinates. An update
 * is a DELTA (client weights after local training minus the global weights
 * it started from) with a weight (normally the client's capped example
 * count, see validate.h). Per round the caller does:
 *
 *     roost_strategy_begin_round(s);
 *     for each accepted update: roost_strategy_add(s, delta, weight, &em);
 *     roost_strategy_finish(s, global_params, &em);
 *
 * Mean-based strategies (FedAvg, FedAvgM, FedAdam, FedYogi, FedAdagrad,
 * FedProx) stream: add folds the delta into a double-precision accumulator
 * and keeps nothing else, so memory is O(n) whatever the number of clients.
 * Robust strategies (median, trimmed mean, Krum, Multi-Krum) need every
 * update of the round at once; they copy each delta into a buffer bounded by
 * the configuration (max_buffered_updates, max_buffered_bytes) and refuse
 * with ROOST_ETOOBIG rather than exceed it. roost_strategy_memory_bound()
 * states each strategy's bound; docs/strategies.md gives the formulas.
 *
 * finish is all-or-nothing: it either writes the new global parameters (and
 * advances the server optimiser state) or returns an error and leaves both
 * the parameters and the state exactly as they were.
 *
 * A roost_strategy is not thread-safe: one thread (the round loop, or the
 * worker it hands a round to) uses it at a time. The functions that take
 * no handle (config_init, config_check, kind_parse, kind_name,
 * memory_bound) keep no state and may be called from any thread.
 */
#ifndef ROOST_SERVER_STRATEGY_H
#define ROOST_SERVER_STRATEGY_H

#include "common/error.h"
#include "common/rng.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum roost_strategy_kind {
    ROOST_STRATEGY_FEDAVG = 0,
    ROOST_STRATEGY_FEDAVGM,
    ROOST_STRATEGY_FEDADAM,
    ROOST_STRATEGY_FEDYOGI,
    ROOST_STRATEGY_FEDADAGRAD,
    ROOST_STRATEGY_FEDPROX,
    ROOST_STRATEGY_MEDIAN,
    ROOST_STRATEGY_TRIMMED_MEAN,
    ROOST_STRATEGY_KRUM,
    ROOST_STRATEGY_MULTIKRUM,
    ROOST_STRATEGY_KIND_COUNT_ /* not a strategy */
} roost_strategy_kind;

/*
 * The configuration of a strategy. Fill it with
 * roost_strategy_config_init(), which sets the documented defaults for the
 * kind, then override fields. Fields a kind does not use are ignored.
 */
typedef struct roost_strategy_config {
    roost_strategy_kind kind;

    /* Server learning rate eta: x <- x + eta * step. Default 1 for every
     * kind except the adaptive ones (FedAdam/FedYogi/FedAdagrad: 1e-2,
     * which Reddi et al. tune per task over 10^-3 .. 10^1). */
    double server_lr;

    /* FedAvgM: server momentum beta (Hsu et al. 2019). Default 0.9. */
    double momentum;

    /* FedAdam/FedYogi/FedAdagrad (Reddi et al. 2021, Algorithm 2):
     * beta1 (default 0.9), beta2 (default 0.99; unused by FedAdagrad) and
     * the adaptivity tau (default 1e-3); v starts at tau^2. */
    double beta1;
    double beta2;
    double tau;

    /* FedProx: the proximal coefficient mu. The server only carries it so
     * the round loop can send it to clients in the task; aggregation is
     * FedAvg's. Default 0.01. */
    double prox_mu;

    /* Trimmed mean: fraction beta in [0, 0.5) trimmed from EACH end per
     * coordinate; floor(beta * k) values are dropped at each end. Default
     * 0.1. */
    double trim_fraction;

    /* Krum / Multi-Krum: number f of Byzantine clients tolerated; a round
     * needs k >= 2f + 3 updates (Blanchard et al. 2017: n > 2f + 2).
     * Default 1. multikrum_m: how many best-scored updates Multi-Krum
     * averages; 0 (default) means k - f. Krum itself uses m = 1. */
    size_t byzantine_f;
    size_t multikrum_m;

    /* Robust strategies only: the most updates, and the most bytes of
     * buffered updates plus working memory, one round may hold. add()
     * refuses with ROOST_ETOOBIG beyond them. Defaults 1000 updates and
     * 1 GiB. */
    size_t max_buffered_updates;
    size_t max_buffered_bytes;

    /* Optional central DP on the aggregate (mean-based kinds only). Each
     * update is clipped inside add() so that the sum has L2 sensitivity
     * dp_clip_norm (C) after the noise grid's rounding, updates are
     * summed WITHOUT weights (weights would change the sensitivity),
     * Gaussian noise of standard deviation z*C (z = dp_noise_multiplier
     * > 0) is added to the sum by the DP engine's sampler (dp/noise.h) and
     * the result divided by D: dp_expected_updates if non-zero (the
     * fixed-denominator estimator of McMahan et al. 2018), else the number
     * of updates received. The noise on the mean thus has standard
     * deviation z*C/D. Noise is drawn from dp_rng (borrowed, must outlive
     * the strategy). Default off. The accounting (which sampling rate,
     * how many rounds) is the caller's: see roost_strategy_dp_info_get. */
    bool central_dp;
    double dp_clip_norm;
    double dp_noise_multiplier;
    size_t dp_expected_updates;
    roost_rng *dp_rng;

    /* Adaptive clipping for central DP (Andrew et al. 2021, dp/adaclip.h).
     * dp_clip_norm is then the initial C; after every round C moves
     * geometrically toward the dp_target_quantile (default 0.5) of the
     * update norms, with step dp_clip_lr (default 0.2). The count of
     * unclipped updates is released with Gaussian noise of stddev
     * dp_count_sigma (0, the default, means dp_expected_updates / 20, the
     * paper's choice), and that release is paid for out of
     * dp_noise_multiplier: the sum gets the larger multiplier
     * z_u = (z^-2 - (2 sigma_b)^-2)^-1/2, so each round is still one
     * Gaussian mechanism of multiplier z for the accountant
     * (roost_adaclip_event). Needs central_dp, dp_expected_updates > 0 and
     * 2 * sigma_b > z. Default off. */
    bool dp_adaptive_clip;
    double dp_target_quantile;
    double dp_clip_lr;
    double dp_count_sigma;
} roost_strategy_config;

typedef struct roost_strategy roost_strategy;

/* roost_strategy_config_init - the defaults listed above for kind. */
void roost_strategy_config_init(roost_strategy_config *cfg,
                                roost_strategy_kind kind);

/*
 * roost_strategy_kind_parse - map "fedavg", "fedavgm", "fedadam",
 * "fedyogi", "fedadagrad", "fedprox", "median", "trimmed_mean", "krum",
 * "multikrum" (exact, lower case) to a kind. ROOST_ECONFIG with a message
 * listing the valid names otherwise; ROOST_EINVAL for NULL.
 */
int roost_strategy_kind_parse(const char *name, roost_strategy_kind *out,
                              roost_errmsg *em);

/* roost_strategy_kind_name - the name parse accepts, or "unknown". */
const char *roost_strategy_kind_name(roost_strategy_kind kind);

/* roost_strategy_kind_is_robust - true for the kinds that buffer every
 * update (median, trimmed mean, Krum, Multi-Krum). */
bool roost_strategy_kind_is_robust(roost_strategy_kind kind);

/* roost_strategy_min_updates - the fewest updates a round must have for
 * finish to aggregate it under cfg: 2 * byzantine_f + 3 for Krum and
 * Multi-Krum, 1 otherwise. Lets a program refuse, before it runs, a
 * configuration under which no round could commit. */
size_t roost_strategy_min_updates(const roost_strategy_config *cfg);

/*
 * roost_strategy_config_check - ROOST_OK, or ROOST_ECONFIG naming the bad
 * field (rates and betas out of range, tau <= 0, trim fraction outside
 * [0, 0.5), central DP on a robust kind or with C <= 0, z <= 0 or no rng,
 * adaptive clipping without central DP or dp_expected_updates, quantile
 * outside [0, 1], step <= 0). ROOST_EINVAL for NULL.
 */
int roost_strategy_config_check(const roost_strategy_config *cfg,
                                roost_errmsg *em);

/*
 * roost_strategy_memory_bound - *bytes = the most heap memory a strategy of
 * this configuration for n coordinates holds during a round of k updates
 * (streaming kinds: independent of k; robust kinds: k*n floats, Krum's k*k
 * distance matrix and working memory). ROOST_EOVERFLOW if that does not fit
 * in size_t, ROOST_EINVAL/ROOST_ECONFIG for bad arguments.
 */
int roost_strategy_memory_bound(const roost_strategy_config *cfg, size_t n,
                                size_t k, size_t *bytes, roost_errmsg *em);

/*
 * roost_strategy_create - a strategy for a model of n coordinates. cfg is
 * copied. alloc may be NULL (C library). Optimiser state (momentum,
 * Adam's m and v) starts at the paper's initial values and persists
 * across rounds in the handle.
 *
 * Returns ROOST_OK; ROOST_EINVAL (NULL out/cfg, n == 0); ROOST_ECONFIG
 * (see config_check); ROOST_ETOOBIG (a robust kind whose limits cannot hold
 * its smallest round: 1 update, 2f + 3 for Krum); ROOST_ENOMEM. With
 * central DP also ROOST_ECONFIG when the noise grid is too coarse for n or
 * (adaptive clipping) 2 * sigma_b <= z.
 * On failure *out is NULL and nothing leaks.
 */
int roost_strategy_create(roost_strategy **out, const roost_allocator *alloc,
                          const roost_strategy_config *cfg, size_t n,
                          roost_errmsg *em);

/* roost_strategy_destroy - frees everything; NULL does nothing. */
void roost_strategy_destroy(roost_strategy *s);

/* roost_strategy_begin_round - forget the previous round's updates (buffers
 * are kept for reuse) and accept updates for a new round. */
void roost_strategy_begin_round(roost_strategy *s);

/*
 * roost_strategy_add - fold one update (n floats, borrowed for the call,
 * already validated: all finite) with weight >= 0 into the round.
 * Streaming kinds accumulate weight * delta; a zero weight counts the
 * update but contributes nothing. Robust kinds ignore the weight (they are
 * unweighted by construction) and copy the delta. With central DP the
 * weight is ignored and the delta is scaled down to the DP update clip as
 * it is folded in (the caller's buffer is never modified).
 *
 * Returns ROOST_OK; ROOST_ESTATE (no begin_round); ROOST_EINVAL (NULL
 * delta, weight negative or not finite); ROOST_ENONFINITE (robust kinds
 * and central DP check while copying/clipping); ROOST_ETOOBIG (the
 * configured buffer limits would be exceeded; the update is not added);
 * ROOST_ENOMEM.
 */
int roost_strategy_add(roost_strategy *s, const float *delta, double weight,
                       roost_errmsg *em);

/*
 * roost_strategy_finish - apply the round to global_params (n floats; in:
 * the current global model, out: the new one) and advance the optimiser
 * state. The round is closed afterwards whatever the result (call
 * begin_round for the next one).
 *
 * Returns ROOST_OK; ROOST_ESTATE (no round open, no updates, all weights
 * zero, or fewer updates than Krum needs for f); ROOST_ENONFINITE (the new
 * model would have a non-finite or float-overflowing coordinate);
 * central DP: ROOST_EOVERFLOW (a sum coordinate beyond the noise grid's
 * range), ROOST_ECRYPTO (noise source failed); ROOST_ENOMEM. On any error
 * global_params and the optimiser state are unchanged.
 */
int roost_strategy_finish(roost_strategy *s, float *global_params,
                          roost_errmsg *em);

/* Number of updates added in the open (or last) round, and their total
 * weight (streaming kinds; 0 for robust ones). */
size_t roost_strategy_round_updates(const roost_strategy *s);
double roost_strategy_round_weight(const roost_strategy *s);

/* roost_strategy_memory_used - heap bytes the handle holds now. */
size_t roost_strategy_memory_used(const roost_strategy *s);

/* What the round record needs to account for central DP. */
typedef struct roost_strategy_dp_info {
    bool enabled;            /* false: the other fields are 0 */
    double noise_multiplier; /* z, the round's multiplier for the accountant */
    /* z_u: the noise stddev on the sum is z_u * C. Equal to z without
     * adaptive clipping; larger with it (the count release shares z). */
    double update_noise_multiplier;
    double clip_norm;         /* C of the last finish (the current C before
                                 any): L2 sensitivity of the rounded sum */
    double next_clip_norm;    /* C for the next round (= clip_norm if fixed) */
    double update_clip_norm;  /* the clip applied to each update now (< C) */
    double grid;              /* the current sampler's grid g */
    double denominator;       /* D of the last applied finish (0 before) */
    double mean_noise_stddev; /* z_u * C / D of the last finish */
    bool adaptive_clip;
    double count_sigma;     /* sigma_b of the count release (adaptive) */
    double noised_fraction; /* last released fraction unclipped (adaptive) */
    /* Per-draw closeness of the sampler to the ideal rounded Gaussian,
     * for roost_noise_charge (draws_per_round draws per round). */
    double closeness_mu;
    double closeness_beta;
    size_t draws_per_round;
    /* The same for the count release's sampler (adaptive clipping), one
     * draw per round; 0 without adaptive clipping. */
    double count_closeness_mu;
    double count_closeness_beta;
    size_t count_draws_per_round;
    /* Sums of draws x mu and draws x beta over every round applied since
     * the record began if sampler_sums_loaded (they came with a loaded
     * state), else over this handle's rounds only. */
    double sampler_n_mu;
    double sampler_n_beta;
    bool sampler_sums_loaded;
    bool insecure_rng; /* the rng is the insecure deterministic kind */
} roost_strategy_dp_info;

/* roost_strategy_dp_info_get - fill *out (ROOST_EINVAL for NULL). */
int roost_strategy_dp_info_get(const roost_strategy *s,
                               roost_strategy_dp_info *out);

/* roost_strategy_config_of - the handle's configuration (read-only; e.g.
 * the round loop reads prox_mu for FedProx tasks). */
const roost_strategy_config *roost_strategy_config_of(const roost_strategy *s);

/*
 * Server optimiser state across a restart. FedAvgM's momentum, the
 * adaptive strategies' m and v and the adaptive clip norm C carry over
 * from round to round; a coordinator that resumes from its last committed
 * round saves this blob with the round and loads it into a fresh handle,
 * so the resumed run continues exactly as an uninterrupted one would.
 * Strategies without such state (FedAvg, FedProx, the robust kinds,
 * without central DP) give a header-only blob, so callers need no special
 * case. With central DP the blob also carries the noise samplers'
 * distance summed over every applied round (roost_strategy_dp_info).
 *
 * Format (version 1, little-endian, independent of the host): "RSTS",
 * u32 version, u32 kind, u32 flags (1: momentum/m, 2: v, 4: clip, 8:
 * central DP's sampler sums), u64 n, then the clip as an IEEE-754 double
 * if flagged, then the sums n*mu and n*beta as two doubles if flagged,
 * then n doubles of momentum/m, then n doubles of v, as flagged. A blob
 * without flag 8 from a central-DP strategy (saved before the sums were
 * kept) loads, without sums.
 *
 * roost_strategy_state_size - *bytes = the blob's exact size.
 * roost_strategy_state_save - write it into buf[0..cap), *len = its size;
 *   ROOST_ETOOSMALL (and *len = the size needed) if cap is too small.
 * roost_strategy_state_load - check the whole blob, then (only if it is
 *   valid) replace the handle's state: ROOST_EDECODE (bad magic, version,
 *   flags or length), ROOST_ECONFIG (saved by another strategy kind, or
 *   with/without adaptive clipping), ROOST_ESHAPE (another n),
 *   ROOST_ENONFINITE (a non-finite value, a negative v or a clip <= 0).
 *   Not during a round (ROOST_ESTATE).
 */
int roost_strategy_state_size(const roost_strategy *s, size_t *bytes);
int roost_strategy_state_save(const roost_strategy *s, void *buf, size_t cap,
                              size_t *len, roost_errmsg *em);
int roost_strategy_state_load(roost_strategy *s, const void *buf, size_t len,
                              roost_errmsg *em);

#endif
