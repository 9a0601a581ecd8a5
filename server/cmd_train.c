/*
 * cmd_train.c - `roost train`: centralized training on Fashion-MNIST, so a
 * user can check a model spec (and its speed) before federating it.
 *
 * Each epoch shuffles the training set, runs minibatch SGD over it with
 * the model engine (common/model.h), then evaluates on the test split and
 * prints the mean training loss, the test loss and accuracy and the
 * training throughput (samples/s, timing only the training steps). With
 * --json each epoch is one JSON object on its own line of stdout.
 *
 * With --dp each step is a DP-SGD gradient (dp/dpsgd.h: Poisson sampling
 * at rate q, per-example clipping to C, Gaussian noise sigma*C, division by
 * the expected batch q*N) and each epoch also prints the (epsilon, delta)
 * spent so far: the RDP accountant's bound for the steps taken, charged
 * for the discrete noise sampler (roost_noise_charge). The accountant
 * works at a delta d0 just below the requested one, chosen before training
 * so that the charged delta of the whole run meets the request. With
 * --epsilon the noise multiplier is calibrated so that the charged figures
 * of the whole run meet the target, and a target the sampler's tail term
 * alone rules out is refused before training; with --sigma a charged delta
 * above the request is reported with a WARNING.
 *
 * Randomness: with --seed the initialisation, the shuffles and (with --dp)
 * the sampling and the noise come from the insecure deterministic
 * generator: reproducible, and for --dp it gives NO privacy, which the
 * output says. Without --seed everything comes from the CSPRNG.
 */
#include "server/cli.h"

#include "common/dataset.h"
#include "common/model.h"
#include "dp/accountant.h"
#include "dp/dpsgd.h"
#include "dp/noise.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char train_usage[] =
    "usage: roost train --model mlp|cnn|logreg|SPEC [flags]\n"
    "\n"
    "Train a model on Fashion-MNIST and print, per epoch, the mean training\n"
    "loss, the test loss and accuracy and the training samples/s.\n"
    "\n"
    "  --model M        preset (mlp, cnn, logreg) or a layer list such as\n"
    "                   conv:32x5,relu,maxpool:2,dense:10 (see docs/model.md)\n"
    "  --epochs E       passes over the training set (default 10)\n"
    "  --batch B        minibatch size (default 32)\n"
    "  --lr LR          learning rate (default 0.01)\n"
    "  --momentum M     SGD momentum in [0, 1) (default 0.9)\n"
    "  --weight-decay W L2 coefficient (default 0)\n"
    "  --cosine         anneal the learning rate to 0 along a half cosine,\n"
    "                   one value per epoch (epoch e uses\n"
    "                   LR * (1 + cos(pi * (e - 1) / E)) / 2)\n"
    "  --threads T      OpenBLAS threads (default 1)\n"
    "  --seed S         reproducible run (insecure deterministic rng)\n"
    "  --limit N        train on the first N examples only (0, the\n"
    "                   default, or N above the set's size: all)\n"
    "  --data DIR       Fashion-MNIST directory (default $ROOST_FMNIST_DIR,\n"
    "                   else " ROOST_FMNIST_DEFAULT_DIR ")\n"
    "  --json           one JSON object per epoch on stdout\n"
    "\n"
    "Differentially private training (DP-SGD with Poisson sampling):\n"
    "  --dp             enable; needs --clip, --delta and --sigma or\n"
    "                   --epsilon\n"
    "  --clip C         per-example L2 clip norm\n"
    "  --sigma S        noise multiplier (noise stddev = S * C)\n"
    "  --epsilon E      calibrate sigma so the whole run spends at most\n"
    "                   (E, D), the noise sampler's distance from the ideal\n"
    "                   Gaussian included (refused when that distance alone\n"
    "                   exceeds D at E)\n"
    "  --delta D        target delta, below 1 / training examples\n"
    "  --q Q            sampling rate (default batch / training examples);\n"
    "                   one epoch is round(1 / Q) steps; Q * training\n"
    "                   examples (the expected batch) must be at least 1\n";

struct train_args {
    const char *model;
    const char *data;
    long epochs, batch, threads;
    double lr, momentum, weight_decay;
    uint64_t seed, limit;
    bool have_seed, json, cosine;
    bool dp, have_clip, have_sigma, have_epsilon, have_delta, have_q;
    double clip, sigma, epsilon, delta, q;
};

static double
now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool
parse_args(int argc, char **argv, struct train_args *a)
{
    const char *cmd = "train";
    memset(a, 0, sizeof(*a));
    a->epochs = 10;
    a->batch = 32;
    a->threads = 1;
    a->lr = 0.01;
    a->momentum = 0.9;
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (strcmp(flag, "--json") == 0) {
            a->json = true;
            continue;
        }
        if (strcmp(flag, "--cosine") == 0) {
            a->cosine = true;
            continue;
        }
        if (strcmp(flag, "--dp") == 0) {
            a->dp = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "roost train: %s needs a value (or is unknown)\n",
                    flag);
            return false;
        }
        const char *v = argv[++i];
        bool ok = true;
        if (strcmp(flag, "--model") == 0)
            a->model = v;
        else if (strcmp(flag, "--data") == 0)
            a->data = v;
        else if (strcmp(flag, "--epochs") == 0)
            ok = roost_cli_parse_int(cmd, flag, v, 1, 100000, &a->epochs);
        else if (strcmp(flag, "--batch") == 0)
            ok = roost_cli_parse_int(cmd, flag, v, 1, 65536, &a->batch);
        else if (strcmp(flag, "--threads") == 0)
            ok = roost_cli_parse_int(cmd, flag, v, 1, 256, &a->threads);
        else if (strcmp(flag, "--lr") == 0)
            ok = roost_cli_parse_double(cmd, flag, v, &a->lr);
        else if (strcmp(flag, "--momentum") == 0)
            ok = roost_cli_parse_double(cmd, flag, v, &a->momentum);
        else if (strcmp(flag, "--weight-decay") == 0)
            ok = roost_cli_parse_double(cmd, flag, v, &a->weight_decay);
        else if (strcmp(flag, "--seed") == 0)
            ok = a->have_seed = roost_cli_parse_u64(cmd, flag, v, &a->seed);
        else if (strcmp(flag, "--limit") == 0)
            ok = roost_cli_parse_u64(cmd, flag, v, &a->limit);
        else if (strcmp(flag, "--clip") == 0)
            ok = a->have_clip = roost_cli_parse_double(cmd, flag, v, &a->clip);
        else if (strcmp(flag, "--sigma") == 0)
            ok = a->have_sigma =
                roost_cli_parse_double(cmd, flag, v, &a->sigma);
        else if (strcmp(flag, "--epsilon") == 0)
            ok = a->have_epsilon =
                roost_cli_parse_double(cmd, flag, v, &a->epsilon);
        else if (strcmp(flag, "--delta") == 0)
            ok = a->have_delta =
                roost_cli_parse_double(cmd, flag, v, &a->delta);
        else if (strcmp(flag, "--q") == 0)
            ok = a->have_q = roost_cli_parse_double(cmd, flag, v, &a->q);
        else {
            fprintf(stderr,
                    "roost train: unknown flag '%s' (see 'roost train "
                    "--help')\n",
                    flag);
            return false;
        }
        if (!ok)
            return false;
    }
    if (a->model == NULL) {
        fprintf(stderr, "roost train: --model is required\n%s", train_usage);
        return false;
    }
    if (!(a->lr > 0.0) || !(a->momentum >= 0.0 && a->momentum < 1.0) ||
        !(a->weight_decay >= 0.0)) {
        fprintf(stderr, "roost train: need --lr > 0, 0 <= --momentum < 1, "
                        "--weight-decay >= 0\n");
        return false;
    }
    bool dp_flags = a->have_clip || a->have_sigma || a->have_epsilon ||
                    a->have_delta || a->have_q;
    if (dp_flags && !a->dp) {
        fprintf(stderr, "roost train: --clip, --sigma, --epsilon, --delta "
                        "and --q need --dp\n");
        return false;
    }
    if (a->dp) {
        if (!a->have_clip || !(a->clip > 0.0) || !a->have_delta ||
            !(a->delta > 0.0 && a->delta < 1.0) ||
            a->have_sigma == a->have_epsilon ||
            (a->have_sigma && !(a->sigma > 0.0)) ||
            (a->have_epsilon && !(a->epsilon > 0.0)) ||
            (a->have_q && !(a->q > 0.0 && a->q <= 1.0))) {
            fprintf(stderr,
                    "roost train: --dp needs --clip C > 0, --delta in (0, 1) "
                    "and exactly one of --sigma S > 0 or --epsilon E > 0 "
                    "(--q in (0, 1])\n");
            return false;
        }
    }
    return true;
}

/* Everything a run holds, freed by run_free whatever was created. */
struct run {
    roost_dataset *train, *test;
    roost_model *model;
    roost_workspace *ws;
    roost_sgd *opt;
    roost_rng *init_rng, *shuffle_rng, *dp_rng;
    roost_dpsgd *dpsgd;
    float *params, *grad, *xb;
    uint8_t *yb;
    size_t *order;
};

static void
run_free(struct run *r)
{
    /* The DP-SGD handle and the workspace refer to the model, and the
     * DP-SGD handle to its rng: destroy them first. */
    roost_dpsgd_destroy(r->dpsgd);
    roost_rng_destroy(r->dp_rng);
    roost_workspace_destroy(r->ws);
    roost_model_destroy(r->model);
    roost_dataset_destroy(r->train);
    roost_dataset_destroy(r->test);
    roost_sgd_destroy(r->opt);
    roost_rng_destroy(r->init_rng);
    roost_rng_destroy(r->shuffle_rng);
    free(r->params);
    free(r->grad);
    free(r->xb);
    free(r->yb);
    free(r->order);
}

static int
fail_rc(const char *what, int rc, const roost_errmsg *em)
{
    fprintf(stderr, "roost train: %s: %s (%s)\n", what,
            em != NULL && roost_errmsg_text(em)[0] ? roost_errmsg_text(em)
                                                   : roost_strerror(rc),
            roost_errname(rc));
    return ROOST_EXIT_FAIL;
}

/* One epoch line or JSON object. eps < 0: not a DP run. */
static void
print_epoch(const struct train_args *a, long epoch, double loss,
            double test_loss, double acc, double sps, double secs, double lr,
            double eps, double delta)
{
    if (a->json) {
        char n[4][ROOST_CLI_JSON_NUMBER_CAP];
        printf("{\"epoch\":%ld,\"loss\":%s,\"test_loss\":%s,"
               "\"accuracy\":%s,\"samples_per_s\":%s,"
               "\"train_seconds\":%.3f,\"lr\":%g",
               epoch, roost_cli_json_number(n[0], sizeof(n[0]), loss, 6),
               roost_cli_json_number(n[1], sizeof(n[1]), test_loss, 6),
               roost_cli_json_number(n[2], sizeof(n[2]), acc, 6),
               roost_cli_json_number(n[3], sizeof(n[3]), sps, 1), secs, lr);
        if (eps >= 0.0) {
            char d[32];
            if (isfinite(delta))
                snprintf(d, sizeof(d), "%.6g", delta);
            else
                snprintf(d, sizeof(d), "null");
            printf(",\"epsilon\":%s,\"delta\":%s,\"insecure_rng\":%s",
                   roost_cli_json_number(n[0], sizeof(n[0]), eps, 6), d,
                   a->have_seed ? "true" : "false");
        }
        printf("}\n");
    } else {
        printf("epoch %3ld  loss %.4f  test loss %.4f  test accuracy "
               "%6.2f%%  %9.1f samples/s  (%.1f s)",
               epoch, loss, test_loss, 100.0 * acc, sps, secs);
        if (eps >= 0.0)
            printf("  epsilon %.4f (delta %.3g)%s", eps, delta,
                   a->have_seed ? " INSECURE rng: no privacy" : "");
        printf("\n");
    }
    fflush(stdout);
}

/*
 * What a DP run will spend, fixed before its first step. The sampler's
 * distance from the ideal Gaussian (dp/noise.h) is charged on top of the
 * accountant's bound: if the ideal mechanism is (eps, d0)-DP, the run is
 * (eps + 2 n mu, e^(n mu) d0 + e^(eps + 2 n mu) n beta)-DP for n noise
 * draws. The accountant is therefore asked for its epsilon at
 * account_delta = d0, chosen below the requested delta so that the
 * charged delta of the whole run still meets it.
 */
struct dp_plan {
    double q, sigma;
    uint64_t steps_per_epoch, total_steps;
    double draws;         /* noise values the whole run draws */
    double account_delta; /* d0: the accountant's delta */
};

/* Steps of the search for the accountant's delta under a given sigma
 * (each one accountant call, about 0.3 ms): 1.25^100 spans any ratio of
 * the tail term to delta that a double can express usefully. */
#define TRAIN_SIGMA_TRIES 100

/*
 * charged_at - the charged (epsilon, delta) of `steps` steps that drew
 * `draws` noise values from noise, the accountant bounding the ideal
 * mechanism at delta0; *eps_ideal receives the accountant's epsilon.
 */
static int
charged_at(const roost_noise *noise, const struct dp_plan *p, uint64_t steps,
           double draws, double delta0, double *eps_ideal, double *eps_out,
           double *delta_out, roost_errmsg *em)
{
    roost_dp_event ev = {.q = p->q, .sigma = p->sigma, .steps = steps};
    int rc = roost_dp_epsilon(&ev, 1, delta0, eps_ideal, NULL, em);
    if (rc == ROOST_OK)
        rc = roost_noise_charge(noise, draws, *eps_ideal, delta0, eps_out,
                                delta_out);
    return rc;
}

/*
 * calibrate_charged - the noise multiplier for --epsilon E --delta D such
 * that the CHARGED figures of the whole run meet (E, D), from the
 * library's calibration for the sampler (roost_dp_calibrate_sigma_sampled,
 * which also tracks how the sampler's (mu, beta) move with sigma), and the
 * accountant's delta d0 at which the run's charged epsilon is certified
 * (see the end). When the sampler's tail term rules (E, D) out the run is
 * refused before any training, naming the largest epsilon at which D is
 * reachable. Returns an exit status; prints its own message.
 */
static int
calibrate_charged(const struct train_args *a, size_t n_params,
                  struct dp_plan *p)
{
    roost_errmsg em;
    roost_errmsg_clear(&em);
    double sigma, mu, beta;
    /* The calibration builds the chosen sigma's sampler; the memo gives
     * its figures to the check below without building it again. */
    roost_noise_memo *memo = NULL;
    int rc = roost_noise_memo_create(&memo, NULL, &em);
    if (rc == ROOST_OK)
        rc = roost_dp_calibrate_sigma_sampled(
            memo, p->q, p->total_steps, p->draws, a->clip,
            ROOST_NOISE_GRID_BITS_DEFAULT, a->delta, a->epsilon, &sigma, &em);
    if (rc == ROOST_EBUDGET) {
        roost_noise_memo_destroy(memo);
        fprintf(stderr,
                "roost train: --epsilon: %s (n = %zu parameters x %llu "
                "steps): use a smaller --epsilon, a larger --delta or fewer "
                "steps\n",
                roost_errmsg_text(&em), n_params,
                (unsigned long long)p->total_steps);
        return ROOST_EXIT_FAIL;
    }
    double eps_run = 0.0;
    if (rc == ROOST_OK)
        rc = roost_noise_closeness_for(memo, sigma, a->clip,
                                       ROOST_NOISE_GRID_BITS_DEFAULT, &mu,
                                       &beta, &em);
    roost_noise_memo_destroy(memo);
    roost_dp_event run = {.q = p->q, .sigma = sigma, .steps = p->total_steps};
    if (rc == ROOST_OK)
        rc =
            roost_dp_epsilon_sampled(&run, 1, p->draws * mu, p->draws * beta,
                                     a->epsilon, a->delta, &eps_run, NULL, &em);
    if (rc != ROOST_OK)
        return fail_rc("--epsilon", rc, &em);
    /* The whole run's charged epsilon eps_run (<= E, the calibration's
     * check) is certified at d0 = (D - e^eps_run n beta) e^(-n mu): the
     * accountant works there, so the last epoch prints at most eps_run
     * with a charged delta at most D, and earlier epochs less. */
    double n_beta = p->draws * beta;
    double tail = n_beta > 0.0 ? exp(eps_run) * n_beta : 0.0;
    p->sigma = sigma;
    p->account_delta = (a->delta - tail) * exp(-(p->draws * mu));
    return ROOST_EXIT_OK;
}

/*
 * account_delta_for_sigma - with a given --sigma, the accountant's delta
 * d0 at which the whole run's charged delta is at most --delta D. The
 * charge e^(n mu) d0 + e^(eps(d0) + 2 n mu) n beta must fit in D: d0 =
 * (D - u) e^(-n mu) leaves u for the tail term, which grows as d0 falls
 * (the accountant's epsilon rises, though only logarithmically). u starts
 * at the tail term at d0 = D e^(-n mu) and grows by a quarter at a time
 * until the tail fits in it, which takes one step unless the tail is a
 * sizeable part of D. If u reaches D first, the accountant works at D and
 * a WARNING says that the charged delta exceeds the request. Returns an
 * exit status.
 */
static int
account_delta_for_sigma(const struct train_args *a, struct dp_plan *p,
                        const roost_noise *noise)
{
    roost_errmsg em;
    roost_errmsg_clear(&em);
    double mu, beta, eps_ideal, eps_c, delta_c;
    roost_noise_closeness(noise, &mu, &beta);
    double n_beta = p->draws * beta;
    double shrink = exp(-p->draws * mu);
    double delta0 = a->delta * shrink;
    int rc = charged_at(noise, p, p->total_steps, p->draws, delta0, &eps_ideal,
                        &eps_c, &delta_c, &em);
    if (rc != ROOST_OK)
        return fail_rc("accounting", rc, &em);
    double reserve = exp(eps_ideal + 2.0 * p->draws * mu) * n_beta;
    for (int attempt = 0; attempt < TRAIN_SIGMA_TRIES; attempt++) {
        if (delta_c <= a->delta) {
            p->account_delta = delta0;
            return ROOST_EXIT_OK;
        }
        reserve *= 1.25;
        if (!(reserve < a->delta))
            break;
        delta0 = (a->delta - reserve) * shrink;
        rc = charged_at(noise, p, p->total_steps, p->draws, delta0, &eps_ideal,
                        &eps_c, &delta_c, &em);
        if (rc != ROOST_OK)
            return fail_rc("accounting", rc, &em);
    }
    p->account_delta = a->delta;
    rc = charged_at(noise, p, p->total_steps, p->draws, a->delta, &eps_ideal,
                    &eps_c, &delta_c, &em);
    if (rc != ROOST_OK)
        return fail_rc("accounting", rc, &em);
    fprintf(stderr,
            "roost train: WARNING: with --sigma %g the whole run's charged "
            "delta is %.3g, above --delta %g: the noise sampler's tail term "
            "e^epsilon * n * beta (beta = %.3g per draw, n = %.4g draws) is "
            "%.3g at the run's epsilon %.4g. The figures printed hold for "
            "that delta, not for %g; delta %g is reachable only for epsilon "
            "below %.2f (use a larger --sigma or fewer steps)\n",
            a->sigma, delta_c, a->delta, beta, p->draws, exp(eps_c) * n_beta,
            eps_c, a->delta, a->delta, log(a->delta / n_beta));
    return ROOST_EXIT_OK;
}

/*
 * train_dp - DP-SGD epochs: round(1/q) Poisson-sampled steps each, then
 * the evaluation and the privacy spent so far (the charged figures; they
 * grow with the steps, so the last epoch's are the run's).
 */
static int
train_dp(const struct train_args *a, struct run *r, size_t n)
{
    roost_errmsg em;
    roost_errmsg_clear(&em);
    struct dp_plan plan = {.sigma = a->sigma, .account_delta = a->delta};
    plan.q = a->have_q ? a->q : (double)a->batch / (double)n;
    if (plan.q > 1.0)
        plan.q = 1.0;
    plan.steps_per_epoch = (uint64_t)llround(1.0 / plan.q);
    if (plan.steps_per_epoch == 0)
        plan.steps_per_epoch = 1;
    plan.total_steps = plan.steps_per_epoch * (uint64_t)a->epochs;
    size_t n_params = roost_model_param_count(r->model);
    plan.draws = (double)n_params * (double)plan.total_steps;
    int rc;
    if (a->have_seed)
        rc = roost_rng_create_insecure_deterministic(&r->dp_rng, NULL, a->seed,
                                                     2);
    else
        rc = roost_rng_create(&r->dp_rng, NULL);
    if (rc != ROOST_OK)
        return fail_rc("random generator", rc, NULL);
    /* The calibration builds its probe samplers without an rng, so a
     * seeded run's stream does not depend on it. */
    if (a->have_epsilon) {
        int status = calibrate_charged(a, n_params, &plan);
        if (status != ROOST_EXIT_OK)
            return status;
    }
    roost_dpsgd_config cfg = {.sampling_rate = plan.q,
                              .noise_multiplier = plan.sigma,
                              .clip_norm = a->clip,
                              .sampling = ROOST_DPSGD_POISSON};
    rc = roost_dpsgd_create(&r->dpsgd, NULL, r->model, n, &cfg, r->dp_rng, &em);
    if (rc != ROOST_OK)
        return fail_rc("--dp", rc, &em);
    const roost_noise *noise = roost_dpsgd_noise(r->dpsgd);
    if (!a->have_epsilon) {
        int status = account_delta_for_sigma(a, &plan, noise);
        if (status != ROOST_EXIT_OK)
            return status;
    }
    if (!a->json)
        printf("DP-SGD: q %.6g (expected batch %.1f), %llu steps per epoch, "
               "clip %g (effective %.6g), sigma %.6g, delta %g (accountant at "
               "%.7g, the rest covers the noise sampler)%s\n",
               plan.q, plan.q * (double)n,
               (unsigned long long)plan.steps_per_epoch, a->clip,
               roost_dpsgd_effective_clip(r->dpsgd), plan.sigma, a->delta,
               plan.account_delta,
               a->have_seed ? "; INSECURE deterministic rng (--seed): the "
                              "noise gives NO privacy"
                            : "");
    for (long epoch = 1; epoch <= a->epochs; epoch++) {
        double lr = a->lr;
        if (a->cosine)
            lr *= 0.5 * (1.0 + cos(3.14159265358979323846 *
                                   (double)(epoch - 1) / (double)a->epochs));
        roost_sgd_set_lr(r->opt, (float)lr);
        double loss_sum = 0.0, t0 = now_seconds();
        size_t seen = 0;
        for (uint64_t s = 0; s < plan.steps_per_epoch; s++) {
            roost_dpsgd_step_info info;
            rc = roost_dpsgd_step_sgd(r->dpsgd, r->params, r->train, NULL,
                                      r->grad, r->opt, NULL, &info, &em);
            if (rc != ROOST_OK)
                return fail_rc("DP-SGD step", rc, &em);
            loss_sum += info.loss_sum;
            seen += info.batch;
        }
        double secs = now_seconds() - t0;
        double test_loss, acc;
        rc = roost_model_evaluate(
            r->ws, r->params, roost_dataset_features(r->test),
            roost_dataset_labels(r->test), roost_dataset_count(r->test),
            &test_loss, &acc);
        if (rc != ROOST_OK)
            return fail_rc("evaluation", rc, NULL);
        double eps_ideal, eps_charged, delta_charged;
        rc = charged_at(noise, &plan, plan.steps_per_epoch * (uint64_t)epoch,
                        roost_dpsgd_noise_draws(r->dpsgd), plan.account_delta,
                        &eps_ideal, &eps_charged, &delta_charged, &em);
        if (rc != ROOST_OK)
            return fail_rc("accounting", rc, &em);
        print_epoch(a, epoch, seen ? loss_sum / (double)seen : 0.0, test_loss,
                    acc, (double)seen / secs, secs, lr, eps_charged,
                    delta_charged);
    }
    return ROOST_EXIT_OK;
}

/*
 * dp_args_fit - the DP flags that only make sense against the number n of
 * training examples, checked before anything is built. A delta of 1/n or
 * more is met by a mechanism that publishes one example outright, so it
 * is no guarantee. An expected batch q*n below one example makes most
 * steps see no example at all while the noise, divided by q*n, grows
 * beyond the gradient: the run learns nothing (the loss diverges).
 */
static bool
dp_args_fit(const struct train_args *a, size_t n)
{
    if (!(a->delta < 1.0 / (double)n)) {
        fprintf(stderr,
                "roost train: --delta %g must be below 1 / %zu training "
                "examples = %.3g (a larger delta admits releasing an "
                "example outright)\n",
                a->delta, n, 1.0 / (double)n);
        return false;
    }
    if (a->have_q && a->q * (double)n < 1.0 - 1e-9) {
        fprintf(stderr,
                "roost train: --q %g gives an expected batch of %.3g over "
                "%zu training examples, below 1: most steps would see no "
                "example and the noise would swamp the gradient; use --q "
                ">= 1/%zu or more examples\n",
                a->q, a->q * (double)n, n, n);
        return false;
    }
    return true;
}

static int
train(const struct train_args *a, struct run *r)
{
    roost_errmsg em;
    roost_errmsg_clear(&em);
    int rc = roost_dataset_load_fmnist(&r->train, NULL, a->data,
                                       ROOST_SPLIT_TRAIN, &em);
    if (rc != ROOST_OK)
        return fail_rc("loading the training set", rc, &em);
    rc = roost_dataset_load_fmnist(&r->test, NULL, a->data, ROOST_SPLIT_TEST,
                                   &em);
    if (rc != ROOST_OK)
        return fail_rc("loading the test set", rc, &em);
    rc = roost_model_create(
        &r->model, NULL, a->model, roost_dataset_channels(r->train),
        roost_dataset_height(r->train), roost_dataset_width(r->train), &em);
    /* A spec that does not parse, or has fewer outputs than the data has
     * classes, is a bad flag: status 2, as roost sim and the usage say. */
    if (rc != ROOST_OK) {
        fail_rc("--model", rc, &em);
        return ROOST_EXIT_USAGE;
    }
    if (roost_model_num_classes(r->model) <
        roost_dataset_num_classes(r->train)) {
        fprintf(stderr,
                "roost train: the model has %u outputs but the data has %u "
                "classes\n",
                roost_model_num_classes(r->model),
                roost_dataset_num_classes(r->train));
        return ROOST_EXIT_USAGE;
    }
    size_t batch = (size_t)a->batch, np = roost_model_param_count(r->model);
    size_t dim = roost_dataset_dim(r->train);
    size_t n = roost_dataset_count(r->train);
    if (a->limit > 0 && a->limit < n)
        n = (size_t)a->limit;
    if (a->dp && !dp_args_fit(a, n))
        return ROOST_EXIT_USAGE;
    rc = roost_workspace_create(&r->ws, r->model, batch, &em);
    if (rc != ROOST_OK)
        return fail_rc("workspace", rc, &em);
    roost_sgd_config cfg = {.lr = (float)a->lr,
                            .momentum = (float)a->momentum,
                            .weight_decay = (float)a->weight_decay};
    rc = roost_sgd_create(&r->opt, NULL, np, &cfg, &em);
    if (rc != ROOST_OK)
        return fail_rc("optimiser", rc, &em);
    if (a->have_seed) {
        rc = roost_rng_create_insecure_deterministic(&r->init_rng, NULL,
                                                     a->seed, 0);
        if (rc == ROOST_OK)
            rc = roost_rng_create_insecure_deterministic(&r->shuffle_rng, NULL,
                                                         a->seed, 1);
    } else {
        rc = roost_rng_create(&r->init_rng, NULL);
        if (rc == ROOST_OK)
            rc = roost_rng_create(&r->shuffle_rng, NULL);
    }
    if (rc != ROOST_OK)
        return fail_rc("random generator", rc, NULL);
    r->params = calloc(np, sizeof(float));
    r->grad = calloc(np, sizeof(float));
    r->xb = calloc(batch * dim, sizeof(float));
    r->yb = calloc(batch, 1);
    r->order = calloc(n, sizeof(size_t));
    if (!r->params || !r->grad || !r->xb || !r->yb || !r->order)
        return fail_rc("allocation", ROOST_ENOMEM, NULL);
    rc = roost_model_init_params(r->model, r->params, r->init_rng);
    if (rc != ROOST_OK)
        return fail_rc("initialisation", rc, NULL);
    if (a->dp)
        return train_dp(a, r, n);

    if (!a->json)
        printf("model %s: %zu parameters, %zu training / %zu test examples, "
               "batch %zu, lr %g, momentum %g, %ld BLAS thread(s)\n",
               roost_model_spec(r->model), np, n, roost_dataset_count(r->test),
               batch, a->lr, a->momentum, a->threads);
    const float *feat = roost_dataset_features(r->train);
    const uint8_t *lab = roost_dataset_labels(r->train);
    for (size_t i = 0; i < n; i++)
        r->order[i] = i;
    for (long epoch = 1; epoch <= a->epochs; epoch++) {
        double lr = a->lr;
        if (a->cosine)
            lr *= 0.5 * (1.0 + cos(3.14159265358979323846 *
                                   (double)(epoch - 1) / (double)a->epochs));
        roost_sgd_set_lr(r->opt, (float)lr);
        for (size_t i = n - 1; i > 0; i--) {
            uint64_t j;
            rc = roost_rng_below(r->shuffle_rng, i + 1, &j);
            if (rc != ROOST_OK)
                return fail_rc("shuffle", rc, NULL);
            size_t t = r->order[i];
            r->order[i] = r->order[j];
            r->order[j] = t;
        }
        double loss_sum = 0.0, t0 = now_seconds();
        for (size_t start = 0; start < n; start += batch) {
            size_t b = n - start < batch ? n - start : batch;
            for (size_t k = 0; k < b; k++) {
                size_t idx = r->order[start + k];
                memcpy(r->xb + k * dim, feat + idx * dim, dim * sizeof(float));
                r->yb[k] = lab[idx];
            }
            double loss;
            rc = roost_model_sgd_step(r->ws, r->params, r->xb, r->yb, b, r->opt,
                                      NULL, &loss);
            if (rc != ROOST_OK)
                return fail_rc("training step", rc, NULL);
            loss_sum += loss * (double)b;
        }
        double secs = now_seconds() - t0;
        double test_loss, acc;
        rc = roost_model_evaluate(
            r->ws, r->params, roost_dataset_features(r->test),
            roost_dataset_labels(r->test), roost_dataset_count(r->test),
            &test_loss, &acc);
        if (rc != ROOST_OK)
            return fail_rc("evaluation", rc, NULL);
        print_epoch(a, epoch, loss_sum / (double)n, test_loss, acc,
                    (double)n / secs, secs, lr, -1.0, 0.0);
    }
    return ROOST_EXIT_OK;
}

int
roost_cmd_train(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(train_usage, stdout);
            return ROOST_EXIT_OK;
        }
    struct train_args a;
    if (!parse_args(argc, argv, &a))
        return ROOST_EXIT_USAGE;
    openblas_set_num_threads((int)a.threads);
    struct run r;
    memset(&r, 0, sizeof(r));
    int status = train(&a, &r);
    run_free(&r);
    return status;
}
