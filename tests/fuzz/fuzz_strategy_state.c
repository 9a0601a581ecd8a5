/*
 * fuzz_strategy_state.c - libFuzzer target for the server optimiser state
 * blob (roost_strategy_state_load in server/strategy.c), which a resuming
 * coordinator reads back from its store.
 *
 * Input: byte 0 picks the handle (FedAvg, FedAvgM, FedAdam, FedYogi or
 * FedAdagrad, 4 coordinates); the rest is the blob.
 *
 * Promises checked (a broken one traps): load returns ROOST_OK or one of
 * the documented refusals; a refused blob leaves the handle exactly as it
 * was (its next round matches a handle that never saw the blob); an
 * accepted blob saves back to the same bytes, and the next round gives a
 * finite model or a clean ROOST_ENONFINITE.
 *
 * Seeds (corpus/strategy_state/) are valid blobs for each kind.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/strategy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { N = 4 };

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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    roost_strategy_config cfg;
    roost_strategy_config_init(&cfg, kinds[data[0] % 5]);
    roost_strategy *s = NULL, *ref = NULL;
    if (roost_strategy_create(&s, NULL, &cfg, N, NULL) != ROOST_OK ||
        roost_strategy_create(&ref, NULL, &cfg, N, NULL) != ROOST_OK)
        abort();
    roost_errmsg em;
    int rc = roost_strategy_state_load(s, data + 1, size - 1, &em);
    float x[N] = {1, 2, 3, 4}, y[N] = {1, 2, 3, 4};
    if (rc == ROOST_OK) {
        unsigned char back[24 + 2 * 8 * N];
        size_t len;
        if (roost_strategy_state_save(s, back, sizeof(back), &len, NULL) !=
                ROOST_OK ||
            len != size - 1 || memcmp(back, data + 1, len) != 0)
            abort();
        int frc = one_round(s, x);
        if (frc != ROOST_OK && frc != ROOST_ENONFINITE)
            abort();
        for (int i = 0; i < N; i++)
            if (!isfinite(x[i]))
                abort();
    } else {
        if (rc != ROOST_EDECODE && rc != ROOST_ECONFIG && rc != ROOST_ESHAPE &&
            rc != ROOST_ENONFINITE)
            abort();
        if (one_round(s, x) != ROOST_OK || one_round(ref, y) != ROOST_OK ||
            memcmp(x, y, sizeof(x)) != 0)
            abort();
    }
    roost_strategy_destroy(s);
    roost_strategy_destroy(ref);
    return 0;
}
