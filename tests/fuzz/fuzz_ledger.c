/*
 * fuzz_ledger.c - libFuzzer target for the privacy ledger's file checks
 * (dp/ledger.c): the input is written as a ledger file and opened without
 * ROOST_LEDGER_CREATE; an accepted file must then answer spent, plan and
 * release consistently. Charges are left out (each one fsyncs, which would
 * make the target too slow to be useful); the verification they run is the
 * same load_verified() that open and plan run.
 *
 * The seed corpus (corpus/ledger/) holds real ledgers written by the
 * library itself: empty and with three events as schema version 1 wrote
 * them (opening them runs the upgrade), and with three events in
 * version 2.
 *
 * Promises checked (a broken one traps): open returns ROOST_OK or
 * ROOST_ELEDGER/ROOST_ESTORE/ROOST_ENOMEM and leaves *out NULL on failure;
 * an accepted ledger's epsilon is >= 0 and not NaN (infinite only when
 * the sampler's tail term rules the budget out) and within its budget
 * unless plan says ROOST_EBUDGET; a forged receipt is never released.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dp/ledger.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The scratch ledger, removed at exit. */
static char scratch[64];

static void
remove_scratch(void)
{
    char journal[80];
    snprintf(journal, sizeof(journal), "%s-journal", scratch);
    unlink(scratch);
    unlink(journal);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (scratch[0] == '\0') {
        snprintf(scratch, sizeof(scratch), "/tmp/fuzz_ledger_%ld.db",
                 (long)getpid());
        atexit(remove_scratch);
    }
    const char *path = scratch;
    char journal[80];
    snprintf(journal, sizeof(journal), "%s-journal", path);
    unlink(journal);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL)
        return 0;
    if (size > 0 && fwrite(data, 1, size, fp) != size) {
        fclose(fp);
        return 0;
    }
    fclose(fp);

    roost_ledger *l = (roost_ledger *)scratch; /* must be reset to NULL */
    roost_errmsg em;
    int rc = roost_ledger_open(&l, NULL, path, 0, NULL, &em);
    if (rc != ROOST_OK) {
        if (l != NULL ||
            (rc != ROOST_ELEDGER && rc != ROOST_ESTORE && rc != ROOST_ENOMEM))
            __builtin_trap();
        return 0;
    }
    double eps = -1.0;
    uint64_t n = 0;
    rc = roost_ledger_spent(l, &eps, NULL, &n);
    if (rc == ROOST_OK && (isnan(eps) || eps < 0.0))
        __builtin_trap();
    roost_ledger_event ev = {0.01,   1.0, 1,       1e-5,     1,
                             "fuzz", 1,   199210u, 7.66e-16, 6.97e-21};
    double after = -1.0;
    rc = roost_ledger_plan(l, &ev, &after);
    roost_ledger_budget b;
    roost_ledger_get_budget(l, &b);
    if (rc == ROOST_OK && !(after <= b.epsilon_max))
        __builtin_trap();
    roost_ledger_receipt forged;
    memset(&forged, 0x42, sizeof(forged));
    forged.seq = n + 1;
    if (roost_ledger_release(l, &forged) == ROOST_OK)
        __builtin_trap();
    roost_ledger_close(l);
    return 0;
}
