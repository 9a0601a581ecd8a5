/*
 * cmd_dp.c - `roost dp`: privacy accounting from the command line.
 *
 *   roost dp epsilon --q Q --sigma S --steps T --delta D [--json]
 *   roost dp sigma   --q Q --steps T --epsilon E --delta D [--json]
 *   roost dp ledger  --path FILE [--json]
 *
 * The first prints the (epsilon, delta) bound of T steps of DP-SGD with
 * Poisson sampling rate Q and noise multiplier S, with the RDP order that
 * attains it; the second the smallest noise multiplier meeting a target
 * epsilon; the third verifies a ledger file and prints what it has spent.
 * All use dp/accountant.c on its default order grid. The first two give
 * the ideal Gaussian's figures; the third the ledger's own, charged for
 * the discrete noise sampler (roost_dp_epsilon_sampled), which is what
 * the client enforces.
 */
#include "server/cli.h"

#include "dp/accountant.h"
#include "dp/ledger.h"
#include "dp/noise.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char dp_usage[] =
    "usage: roost dp epsilon --q Q --sigma S --steps T --delta D\n"
    "                        [--params P [--clip C]] [--json]\n"
    "       roost dp sigma --q Q --steps T --epsilon E --delta D\n"
    "                      [--params P [--clip C]] [--json]\n"
    "       roost dp ledger --path FILE [--json]\n"
    "\n"
    "Privacy accounting for DP-SGD with Poisson sampling (Renyi DP of the\n"
    "subsampled Gaussian mechanism, converted with Balle et al. 2020).\n"
    "\n"
    "  --q Q        sampling rate: each example joins a batch with\n"
    "               probability Q (0 <= Q <= 1)\n"
    "  --sigma S    noise multiplier: noise stddev / clipping norm (> 0)\n"
    "  --steps T    number of noisy steps (non-negative integer)\n"
    "  --delta D    target delta (0 < D < 1), e.g. below 1 / dataset size\n"
    "  --epsilon E  target epsilon (> 0), for `roost dp sigma`\n"
    "  --params P   parameters noised per step: charge the discrete noise\n"
    "               sampler's distance from the ideal Gaussian over its\n"
    "               P x T draws, as a device ledger does\n"
    "  --clip C     clipping norm the sampler is built for (default 1;\n"
    "               with --params)\n"
    "  --json       print one JSON object instead of text\n"
    "\n"
    "epsilon prints the epsilon and the best Renyi order of the grid\n"
    "1.1..10.9 (step 0.1), 11..64, 128, 256, 512, 1024; sigma prints the\n"
    "smallest noise multiplier (to 1e-6 relative) whose epsilon is at most\n"
    "E. Without --params epsilon and sigma are the ideal Gaussian's; with\n"
    "it they are the figures a device enforces for a model of P\n"
    "parameters. ledger verifies a\n"
    "device's privacy ledger (hash chain, budget) and prints its budget,\n"
    "event count and the epsilon spent, charged for the discrete noise\n"
    "sampler's recorded draws as the device enforces it; it exits 1 if the\n"
    "ledger is missing, corrupt or tampered. A ledger written before noise\n"
    "draws were recorded (schema version 1) is upgraded in place.\n";

struct dp_args {
    bool have_q, have_sigma, have_steps, have_delta, have_epsilon;
    bool have_params, have_clip;
    double q, sigma, delta, epsilon, clip;
    uint64_t steps, params;
    bool json;
};

static bool
is_help_flag(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

/* Parse the flags after the subcommand; prints the reason and returns false
 * on any bad or unknown flag. */
static bool
parse_args(const char *cmd, int argc, char **argv, struct dp_args *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 0; i < argc; i++) {
        const char *flag = argv[i];
        if (strcmp(flag, "--json") == 0) {
            a->json = true;
            continue;
        }
        bool known =
            strcmp(flag, "--q") == 0 || strcmp(flag, "--sigma") == 0 ||
            strcmp(flag, "--steps") == 0 || strcmp(flag, "--delta") == 0 ||
            strcmp(flag, "--epsilon") == 0 || strcmp(flag, "--params") == 0 ||
            strcmp(flag, "--clip") == 0;
        if (!known) {
            fprintf(stderr,
                    "roost %s: unknown flag '%s' (see 'roost dp --help')\n",
                    cmd, flag);
            return false;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "roost %s: %s needs a value\n", cmd, flag);
            return false;
        }
        const char *val = argv[++i];
        bool ok;
        if (strcmp(flag, "--q") == 0) {
            ok = roost_cli_parse_double(cmd, flag, val, &a->q);
            a->have_q = true;
        } else if (strcmp(flag, "--sigma") == 0) {
            ok = roost_cli_parse_double(cmd, flag, val, &a->sigma);
            a->have_sigma = true;
        } else if (strcmp(flag, "--steps") == 0) {
            ok = roost_cli_parse_u64(cmd, flag, val, &a->steps);
            a->have_steps = true;
        } else if (strcmp(flag, "--delta") == 0) {
            ok = roost_cli_parse_double(cmd, flag, val, &a->delta);
            a->have_delta = true;
        } else if (strcmp(flag, "--params") == 0) {
            ok = roost_cli_parse_u64(cmd, flag, val, &a->params);
            a->have_params = true;
        } else if (strcmp(flag, "--clip") == 0) {
            ok = roost_cli_parse_double(cmd, flag, val, &a->clip);
            a->have_clip = true;
        } else {
            ok = roost_cli_parse_double(cmd, flag, val, &a->epsilon);
            a->have_epsilon = true;
        }
        if (!ok)
            return false;
    }
    return true;
}

/* --clip belongs with --params, and --params counts at least one
 * parameter; false (usage) with a message otherwise. */
static bool
check_params_flags(const char *cmd, const struct dp_args *a)
{
    if (a->have_clip && !a->have_params) {
        fprintf(stderr, "roost %s: --clip needs --params\n", cmd);
        return false;
    }
    if (a->have_params && a->params == 0) {
        fprintf(stderr, "roost %s: --params must be at least 1\n", cmd);
        return false;
    }
    return true;
}

/* The sampler's figures for --params P (draws = P x steps), through memo
 * (may be NULL); false with a message when the sampler cannot be built
 * (*status then holds the exit status). */
static bool
sampler_terms(const char *cmd, const struct dp_args *a, roost_noise_memo *memo,
              double sigma, double *draws, double *n_mu, double *n_beta,
              int *status)
{
    *draws = *n_mu = *n_beta = 0.0;
    if (!a->have_params)
        return true;
    *draws = (double)a->params * (double)a->steps;
    double mu = 0.0, beta = 0.0;
    roost_errmsg em;
    int rc = roost_noise_closeness_for(
        memo, sigma, a->have_clip ? a->clip : 1.0, 0, &mu, &beta, &em);
    if (rc != ROOST_OK) {
        fprintf(stderr, "roost %s: %s\n", cmd, em.text);
        *status = rc == ROOST_EINVAL ? ROOST_EXIT_USAGE : ROOST_EXIT_FAIL;
        return false;
    }
    *n_mu = *draws * mu;
    *n_beta = *draws * beta;
    return true;
}

/* The largest epsilon the command line reports as such (a cap for
 * roost_dp_epsilon_sampled; beyond it the figure is only a bound). */
#define DP_CLI_EPS_CAP 1000.0

static bool
require(const char *cmd, bool have, const char *flag)
{
    if (!have)
        fprintf(stderr, "roost %s: %s is required (see 'roost dp --help')\n",
                cmd, flag);
    return have;
}

static int
run_epsilon(int argc, char **argv)
{
    static const char cmd[] = "dp epsilon";
    struct dp_args a;
    if (!parse_args(cmd, argc, argv, &a))
        return ROOST_EXIT_USAGE;
    if (!require(cmd, a.have_q, "--q") ||
        !require(cmd, a.have_sigma, "--sigma") ||
        !require(cmd, a.have_steps, "--steps") ||
        !require(cmd, a.have_delta, "--delta"))
        return ROOST_EXIT_USAGE;
    if (a.have_epsilon) {
        fprintf(stderr, "roost %s: --epsilon belongs to 'roost dp sigma'\n",
                cmd);
        return ROOST_EXIT_USAGE;
    }
    if (!check_params_flags(cmd, &a))
        return ROOST_EXIT_USAGE;
    roost_dp_event e = {a.q, a.sigma, a.steps};
    roost_errmsg em;
    double eps, order, draws, n_mu, n_beta;
    int status;
    int rc = roost_dp_epsilon(&e, 1, a.delta, &eps, &order, &em);
    if (rc == ROOST_EINVAL) {
        fprintf(stderr, "roost %s: %s\n", cmd, em.text);
        return ROOST_EXIT_USAGE;
    }
    if (rc == ROOST_OK &&
        !sampler_terms(cmd, &a, NULL, a.sigma, &draws, &n_mu, &n_beta, &status))
        return status;
    if (rc == ROOST_OK && a.have_params)
        rc = roost_dp_epsilon_sampled(&e, 1, n_mu, n_beta, DP_CLI_EPS_CAP,
                                      a.delta, &eps, &order, &em);
    if (rc == ROOST_OK && !isfinite(eps)) {
        fprintf(stderr,
                "roost %s: no epsilon up to %g is valid at delta %g: the "
                "noise sampler's tail term over %.4g draws leaves no room "
                "in delta\n",
                cmd, DP_CLI_EPS_CAP, a.delta, draws);
        return ROOST_EXIT_FAIL;
    }
    if (rc != ROOST_OK) {
        fprintf(stderr, "roost %s: %s: %s\n", cmd, roost_strerror(rc), em.text);
        return ROOST_EXIT_FAIL;
    }
    /* Above the cap the charged search stops at a lower bound of every
     * valid epsilon: not a figure to print as the epsilon. */
    if (a.have_params && eps > DP_CLI_EPS_CAP) {
        fprintf(stderr,
                "roost %s: the epsilon charged for the noise sampler is "
                "above %g (at least %.6g); only epsilons up to %g are "
                "computed with --params\n",
                cmd, DP_CLI_EPS_CAP, eps, DP_CLI_EPS_CAP);
        return ROOST_EXIT_FAIL;
    }
    if (a.json) {
        printf("{\"epsilon\": %.12g, \"delta\": %.12g, \"best_order\": %.12g, "
               "\"q\": %.12g, \"sigma\": %.12g, \"steps\": %llu, "
               "\"noise_draws\": %.17g}\n",
               eps, a.delta, order, a.q, a.sigma, (unsigned long long)a.steps,
               draws);
    } else if (a.have_params) {
        printf("epsilon %.6f at delta %g (best Renyi order %g), charged for "
               "the noise sampler over %.4g draws\n",
               eps, a.delta, order, draws);
    } else {
        printf("epsilon %.6f at delta %g (best Renyi order %g)\n", eps, a.delta,
               order);
    }
    if (order == 1.1 || order == 1024.0)
        fprintf(stderr,
                "roost %s: note: the best order is at the edge of the grid; "
                "the bound is valid but may be loose\n",
                cmd);
    return ROOST_EXIT_OK;
}

static int
run_sigma(int argc, char **argv)
{
    static const char cmd[] = "dp sigma";
    struct dp_args a;
    if (!parse_args(cmd, argc, argv, &a))
        return ROOST_EXIT_USAGE;
    if (!require(cmd, a.have_q, "--q") ||
        !require(cmd, a.have_steps, "--steps") ||
        !require(cmd, a.have_epsilon, "--epsilon") ||
        !require(cmd, a.have_delta, "--delta"))
        return ROOST_EXIT_USAGE;
    if (a.have_sigma) {
        fprintf(stderr, "roost %s: --sigma belongs to 'roost dp epsilon'\n",
                cmd);
        return ROOST_EXIT_USAGE;
    }
    if (!check_params_flags(cmd, &a))
        return ROOST_EXIT_USAGE;
    roost_errmsg em;
    double sigma = 0.0, eps = 0.0, order = 0.0, draws = 0.0, n_mu, n_beta;
    int status;
    /* The calibration builds the chosen sigma's sampler; the memo lets the
     * report below reuse its figures instead of building it again. */
    roost_noise_memo *memo = NULL;
    int rc =
        a.have_params ? roost_noise_memo_create(&memo, NULL, &em) : ROOST_OK;
    if (rc == ROOST_OK)
        rc = a.have_params
                 ? roost_dp_calibrate_sigma_sampled(
                       memo, a.q, a.steps, (double)a.params * (double)a.steps,
                       a.have_clip ? a.clip : 1.0, 0, a.delta, a.epsilon,
                       &sigma, &em)
                 : roost_dp_calibrate_sigma(a.q, a.steps, a.delta, a.epsilon,
                                            &sigma, &em);
    roost_dp_event e = {a.q, sigma, a.steps};
    if (rc == ROOST_OK)
        rc = roost_dp_epsilon(&e, 1, a.delta, &eps, &order, &em);
    bool terms = rc != ROOST_OK || sampler_terms(cmd, &a, memo, sigma, &draws,
                                                 &n_mu, &n_beta, &status);
    roost_noise_memo_destroy(memo);
    if (!terms)
        return status;
    if (rc == ROOST_OK && a.have_params)
        rc = roost_dp_epsilon_sampled(&e, 1, n_mu, n_beta, a.epsilon, a.delta,
                                      &eps, &order, &em);
    if (rc == ROOST_EBUDGET) {
        fprintf(stderr, "roost %s: %s\n", cmd, em.text);
        return ROOST_EXIT_FAIL;
    }
    if (rc == ROOST_EINVAL) {
        fprintf(stderr, "roost %s: %s\n", cmd, em.text);
        return ROOST_EXIT_USAGE;
    }
    if (rc != ROOST_OK) {
        fprintf(stderr, "roost %s: %s: %s\n", cmd, roost_strerror(rc), em.text);
        return ROOST_EXIT_FAIL;
    }
    if (a.json) {
        printf("{\"sigma\": %.12g, \"epsilon\": %.12g, \"target_epsilon\": "
               "%.12g, \"delta\": %.12g, \"best_order\": %.12g, \"q\": "
               "%.12g, \"steps\": %llu, \"noise_draws\": %.17g}\n",
               sigma, eps, a.epsilon, a.delta, order, a.q,
               (unsigned long long)a.steps, draws);
    } else if (a.have_params) {
        printf("sigma %.6f (epsilon %.6f <= %g at delta %g, best Renyi "
               "order %g, charged for the noise sampler over %.4g draws)\n",
               sigma, eps, a.epsilon, a.delta, order, draws);
    } else {
        printf("sigma %.6f (epsilon %.6f <= %g at delta %g, best Renyi "
               "order %g)\n",
               sigma, eps, a.epsilon, a.delta, order);
    }
    return ROOST_EXIT_OK;
}

static int
run_ledger(int argc, char **argv)
{
    static const char cmd[] = "dp ledger";
    const char *path = NULL;
    bool json = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--path") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else {
            fprintf(stderr,
                    "roost %s: unexpected argument '%s' (see 'roost dp "
                    "--help')\n",
                    cmd, argv[i]);
            return ROOST_EXIT_USAGE;
        }
    }
    if (!require(cmd, path != NULL, "--path"))
        return ROOST_EXIT_USAGE;
    roost_ledger *l = NULL;
    roost_errmsg em;
    int rc = roost_ledger_open(&l, NULL, path, 0, NULL, &em);
    double eps = 0.0, order = 0.0;
    uint64_t n = 0;
    if (rc == ROOST_OK) {
        rc = roost_ledger_spent(l, &eps, &order, &n);
        if (rc != ROOST_OK)
            snprintf(em.text, sizeof(em.text), "%s", roost_ledger_errmsg(l));
    }
    if (rc != ROOST_OK) {
        fprintf(stderr, "roost %s: %s: %s\n", cmd, roost_strerror(rc), em.text);
        roost_ledger_close(l);
        return ROOST_EXIT_FAIL;
    }
    roost_ledger_budget b;
    roost_ledger_get_budget(l, &b);
    roost_ledger_sampler_info si;
    roost_ledger_sampler(l, &si);
    roost_ledger_close(l);
    if (json) {
        char eps_text[32];
        if (isfinite(eps))
            snprintf(eps_text, sizeof(eps_text), "%.12g", eps);
        else
            snprintf(eps_text, sizeof(eps_text), "null");
        printf("{\"events\": %llu, \"epsilon\": %s, \"best_order\": "
               "%.12g, \"epsilon_max\": %.12g, \"delta\": %.12g, "
               "\"noise_draws\": %.17g, \"sampler_n_mu\": %.12g, "
               "\"sampler_n_beta\": %.12g, \"events_without_draws\": %llu, "
               "\"verified\": true}\n",
               (unsigned long long)n, eps_text, order, b.epsilon_max, b.delta,
               si.draws, si.n_mu, si.n_beta,
               (unsigned long long)si.unrecorded_events);
    } else {
        printf("ledger %s: verified, %llu events\n"
               "epsilon spent %.6f of %g at delta %g (best Renyi order %g)\n"
               "charged for the noise sampler: %.4g draws, n*mu = %.3g, "
               "n*beta = %.3g\n",
               path, (unsigned long long)n, eps, b.epsilon_max, b.delta, order,
               si.draws, si.n_mu, si.n_beta);
        if (si.unrecorded_events > 0)
            printf("%llu events were written before ledgers recorded noise "
                   "draws and are charged as the ideal Gaussian (no sampler "
                   "terms)\n",
                   (unsigned long long)si.unrecorded_events);
    }
    return ROOST_EXIT_OK;
}

int
roost_cmd_dp(int argc, char **argv)
{
    if (argc < 2) {
        fputs(dp_usage, stderr);
        return ROOST_EXIT_USAGE;
    }
    if (is_help_flag(argv[1]) || strcmp(argv[1], "help") == 0) {
        fputs(dp_usage, stdout);
        return ROOST_EXIT_OK;
    }
    for (int i = 2; i < argc; i++) {
        if (is_help_flag(argv[i])) {
            fputs(dp_usage, stdout);
            return ROOST_EXIT_OK;
        }
    }
    if (strcmp(argv[1], "epsilon") == 0)
        return run_epsilon(argc - 2, argv + 2);
    if (strcmp(argv[1], "sigma") == 0)
        return run_sigma(argc - 2, argv + 2);
    if (strcmp(argv[1], "ledger") == 0)
        return run_ledger(argc - 2, argv + 2);
    fprintf(stderr,
            "roost dp: unknown subcommand '%s' (expected 'epsilon', 'sigma' "
            "or 'ledger'; see 'roost dp --help')\n",
            argv[1]);
    return ROOST_EXIT_USAGE;
}
