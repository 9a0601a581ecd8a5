/*
 * bench_accountant.c - cost of privacy accounting and of the ledger, with
 * baselines measured in the same run:
 *   - roost_dp_epsilon on the default grid (157 orders) for the Opacus
 *     reference plan, next to the same call on an integer-only grid (11..64,
 *     the cheap closed-form part) and on Opacus's 151-order grid;
 *   - roost_dp_epsilon_sampled (the sampler-charged epsilon a ledger
 *     enforces) for the same plan, as a ratio to roost_dp_epsilon;
 *   - roost_dp_calibrate_sigma for the same plan;
 *   - a ledger plan (re-verify + recompute epsilon) and a durable charge
 *     (BEGIN IMMEDIATE .. COMMIT with synchronous=EXTRA), next to a raw
 *     4 KiB write + fsync in the same directory (the storage floor).
 * Accounting figures are per call in thread CPU time (robust to other jobs
 * on a shared machine); ledger figures are wall-clock, since fsync waits.
 * Not a pass/fail test.
 *
 * Usage: bench_accountant [directory for the ledger (default /tmp)]
 */
#include "dp/accountant.h"
#include "dp/ledger.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double
clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double
epsilon_ms(const double *orders, size_t n, int calls, double *eps)
{
    roost_dp_event e = {0.04, 1.5, 2250};
    double t = clock_s(CLOCK_THREAD_CPUTIME_ID);
    for (int i = 0; i < calls; i++) {
        if (roost_dp_epsilon_orders(&e, 1, orders, n, 1e-5, eps, NULL, NULL) !=
            ROOST_OK)
            return -1.0;
    }
    return (clock_s(CLOCK_THREAD_CPUTIME_ID) - t) * 1e3 / calls;
}

int
main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    double grid[ROOST_RDP_DEFAULT_ORDERS], ints[54], opacus[151];
    size_t n = roost_rdp_default_orders(grid, ROOST_RDP_DEFAULT_ORDERS);
    size_t ni = 0, no = 0;
    for (int a = 11; a <= 64; a++)
        ints[ni++] = a;
    for (int x = 1; x < 100; x++)
        opacus[no++] = 1.0 + x / 10.0;
    for (int a = 12; a < 64; a++)
        opacus[no++] = a;

    double eps_d, eps_i, eps_o;
    double ms_d = epsilon_ms(grid, n, 300, &eps_d);
    double ms_i = epsilon_ms(ints, ni, 300, &eps_i);
    double ms_o = epsilon_ms(opacus, no, 300, &eps_o);
    printf("roost_dp_epsilon, q=0.04 sigma=1.5 steps=2250 delta=1e-5:\n");
    printf("  default grid (%zu orders)  %8.3f ms/call  eps %.9f\n", n, ms_d,
           eps_d);
    printf("  Opacus grid  (%zu orders)  %8.3f ms/call  eps %.9f\n", no, ms_o,
           eps_o);
    printf("  integer 11..64 (%zu)       %8.3f ms/call  eps %.9f (baseline; "
           "default/baseline = %.1fx)\n",
           ni, ms_i, eps_i, ms_d / ms_i);

    /* The sampler-charged epsilon a ledger enforces, for the same plan
     * drawn over the MLP's 199210 parameters (default grid). */
    roost_dp_event plan = {0.04, 1.5, 2250};
    double draws = 2250.0 * 199210.0, eps_s = 0.0;
    double t = clock_s(CLOCK_THREAD_CPUTIME_ID);
    for (int i = 0; i < 300; i++)
        roost_dp_epsilon_sampled(&plan, 1, draws * 7.66e-16, draws * 6.97e-21,
                                 8.0, 1e-5, &eps_s, NULL, NULL);
    double ms_s = (clock_s(CLOCK_THREAD_CPUTIME_ID) - t) * 1e3 / 300;
    printf("roost_dp_epsilon_sampled, same plan, %.3g draws: %.3f ms/call, "
           "eps %.9f (%.2fx roost_dp_epsilon on the default grid)\n",
           draws, ms_s, eps_s, ms_s / ms_d);

    double sigma;
    t = clock_s(CLOCK_THREAD_CPUTIME_ID);
    for (int i = 0; i < 20; i++)
        roost_dp_calibrate_sigma(0.04, 2250, 1e-5, 3.0, &sigma, NULL);
    double ms_c = (clock_s(CLOCK_THREAD_CPUTIME_ID) - t) * 1e3 / 20;
    printf("roost_dp_calibrate_sigma to eps 3: %.3f ms/call, sigma %.6f "
           "(%.0f epsilon evaluations' worth)\n",
           ms_c, sigma, ms_c / ms_d);

    char path[4096], raw[4096];
    snprintf(path, sizeof(path), "%s/bench_ledger_%ld.db", dir, (long)getpid());
    snprintf(raw, sizeof(raw), "%s/bench_raw_%ld", dir, (long)getpid());
    roost_ledger *l = NULL;
    roost_ledger_budget b = {1e9, 1e-5};
    roost_errmsg em;
    if (roost_ledger_open(&l, NULL, path, ROOST_LEDGER_CREATE, &b, &em) !=
        ROOST_OK) {
        fprintf(stderr, "ledger: %s\n", em.text);
        return 1;
    }
    enum { CHARGES = 200, PLANS = 200 };
    roost_ledger_event ev = {0.01,     1.0,     100, 1e-5,
                             0,        "bench", 0,   100u * 199210u,
                             7.66e-16, 6.97e-21};
    roost_ledger_receipt r;
    double w = clock_s(CLOCK_MONOTONIC);
    for (int i = 0; i < CHARGES; i++) {
        ev.round_id = i;
        if (roost_ledger_charge(l, &ev, &r, NULL) != ROOST_OK ||
            roost_ledger_release(l, &r) != ROOST_OK) {
            fprintf(stderr, "charge: %s\n", roost_ledger_errmsg(l));
            return 1;
        }
    }
    double ms_charge = (clock_s(CLOCK_MONOTONIC) - w) * 1e3 / CHARGES;
    w = clock_s(CLOCK_MONOTONIC);
    for (int i = 0; i < PLANS; i++)
        roost_ledger_plan(l, &ev, NULL);
    double ms_plan = (clock_s(CLOCK_MONOTONIC) - w) * 1e3 / PLANS;
    roost_ledger_close(l);
    unlink(path);

    char page[4096];
    memset(page, 0x5a, sizeof(page));
    int fd = open(raw, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return 1;
    w = clock_s(CLOCK_MONOTONIC);
    for (int i = 0; i < CHARGES; i++) {
        if (pwrite(fd, page, sizeof(page), 0) != (ssize_t)sizeof(page) ||
            fsync(fd) != 0)
            return 1;
    }
    double ms_raw = (clock_s(CLOCK_MONOTONIC) - w) * 1e3 / CHARGES;
    close(fd);
    unlink(raw);
    printf("ledger in %s (wall clock):\n", dir);
    printf("  charge + release (durable)   %8.3f ms  (up to %d events)\n",
           ms_charge, CHARGES);
    printf("  plan (verify %d events + eps) %7.3f ms\n", CHARGES, ms_plan);
    printf("  raw 4 KiB write + fsync      %8.3f ms (baseline; charge/raw = "
           "%.1fx)\n",
           ms_raw, ms_charge / ms_raw);
    return 0;
}
