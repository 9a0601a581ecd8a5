/*
 * store_fixture.h - synthetic rounds for the store's tests, its benchmark
 * and the audit shell test: a round with n clients (fingerprints
 * "client-NNNN"), one update each (every fifth refused), a few metrics and
 * a parameter vector that depends on the round, all deterministic.
 *
 * Header-only (static functions) so each program includes it once.
 */
#ifndef ROOST_TESTS_STORE_FIXTURE_H
#define ROOST_TESTS_STORE_FIXTURE_H

#include "server/store.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fixture_round {
    char (*fingerprints)[32];
    roost_store_participant *participants;
    roost_store_update *updates;
    roost_store_metric metrics[3];
    float *params;
    roost_store_commit commit;
} fixture_round;

/* The parameters of round r: p[i] = sin(0.001 i + r) / (1 + r). */
static inline void
fixture_params(float *p, size_t n, int64_t round_id)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(sin(0.001 * (double)i + (double)round_id) /
                       (1.0 + (double)round_id));
}

/* Fill f for round_id of run_id with n_clients clients and n_params
 * parameters (0: the model is unchanged). Returns 0, or -1 on OOM. */
static inline int
fixture_round_init(fixture_round *f, int64_t run_id, int64_t round_id,
                   size_t n_clients, size_t n_params)
{
    memset(f, 0, sizeof(*f));
    size_t nc = n_clients ? n_clients : 1;
    f->fingerprints = calloc(nc, sizeof(*f->fingerprints));
    f->participants = calloc(nc, sizeof(*f->participants));
    f->updates = calloc(nc, sizeof(*f->updates));
    f->params = calloc(n_params ? n_params : 1, sizeof(float));
    if (!f->fingerprints || !f->participants || !f->updates || !f->params)
        return -1;
    for (size_t i = 0; i < n_clients; i++) {
        /* Clients rotate so rounds share some of them. */
        snprintf(f->fingerprints[i], sizeof(f->fingerprints[i]), "client-%04zu",
                 (i + (size_t)round_id) % (2 * n_clients));
        bool refused = i % 5 == 4;
        f->participants[i].fingerprint = f->fingerprints[i];
        f->participants[i].status =
            refused ? ROOST_PART_REFUSED : ROOST_PART_UPDATED;
        roost_store_update *u = &f->updates[i];
        u->seq = (int64_t)i + 1;
        u->fingerprint = f->fingerprints[i];
        u->received_ms = 1700000000000 + round_id * 1000 + (int64_t)i;
        u->accepted = !refused;
        u->reason_code = refused ? ROOST_ENORM : ROOST_OK;
        u->reason = refused ? "L2 norm 12.5 exceeds bound 10" : NULL;
        u->bytes = (int64_t)n_params * 4 + 100;
        u->l2_norm = refused ? 12.5 : 1.0 + 0.01 * (double)i;
        u->examples_reported = 600 + (int64_t)i;
        u->examples_capped = 600;
        u->train_loss = 0.5 + 0.001 * (double)i;
        u->train_accuracy = 0.8;
        u->dp_epsilon = 0.1 * (double)round_id + 0.01 * (double)i;
        u->dp_delta = 1e-5;
        u->dp_noise_multiplier = 1.1;
        u->dp_clip_norm = 1.0;
        u->dp_sample_rate = 0.01;
        u->dp_steps = 100;
    }
    f->metrics[0].name = "round_seconds";
    f->metrics[0].value = 1.5 + (double)round_id;
    f->metrics[1].name = "update_norm_mean";
    f->metrics[1].value = 1.02;
    f->metrics[2].name = "selected_fraction";
    f->metrics[2].value = 0.1;
    if (n_params > 0)
        fixture_params(f->params, n_params, round_id);

    roost_store_round *r = &f->commit.round;
    r->round_id = round_id;
    r->run_id = run_id;
    r->kind = "train";
    r->state = ROOST_ROUND_COMMITTED;
    r->started_ms = 1700000000000 + round_id * 1000;
    r->committed_ms = r->started_ms + 900;
    r->strategy = "fedavg";
    r->train_loss = 0.5;
    r->train_accuracy = 0.8;
    r->eval_loss = 1.0 / (1.0 + (double)round_id);
    r->eval_accuracy = 0.5 + 0.04 * (double)round_id;
    r->has_central_dp = false;
    r->cdp_noise_multiplier = r->cdp_clip_norm = NAN;
    r->cdp_epsilon = r->cdp_delta = NAN;
    f->commit.participants = f->participants;
    f->commit.n_participants = n_clients;
    f->commit.updates = f->updates;
    f->commit.n_updates = n_clients;
    f->commit.metrics = f->metrics;
    f->commit.n_metrics = 3;
    f->commit.params = n_params > 0 ? f->params : NULL;
    f->commit.n_params = n_params;
    return 0;
}

static inline void
fixture_round_free(fixture_round *f)
{
    free(f->fingerprints);
    free(f->participants);
    free(f->updates);
    free(f->params);
    memset(f, 0, sizeof(*f));
}

/* Add a run of n_params parameters; returns its id or -1. */
static inline int64_t
fixture_add_run(roost_store *s, size_t n_params)
{
    roost_store_run run = {
        .name = "fixture",
        .model_spec = "mlp:784-128-10",
        .n_params = n_params,
        .strategy = "fedavg",
        .config_json = "{\"rounds\": 100, \"clients_per_round\": 20}",
        .dp_json = "{\"noise_multiplier\": 1.1, \"clip_norm\": 1.0}",
        .created_ms = 1700000000000,
    };
    int64_t id = -1;
    if (roost_store_add_run(s, &run, &id, NULL) != ROOST_OK)
        return -1;
    return id;
}

/* Commit rounds first..last with the fixture; 0 on success. */
static inline int
fixture_commit_rounds(roost_store *s, int64_t run_id, int64_t first,
                      int64_t last, size_t n_clients, size_t n_params)
{
    for (int64_t r = first; r <= last; r++) {
        fixture_round f;
        if (fixture_round_init(&f, run_id, r, n_clients, n_params) != 0)
            return -1;
        roost_errmsg em;
        int err = roost_store_commit_round(s, &f.commit, NULL, &em);
        fixture_round_free(&f);
        if (err != ROOST_OK) {
            fprintf(stderr, "commit round %lld: %s\n", (long long)r, em.text);
            return -1;
        }
    }
    return 0;
}

#endif
