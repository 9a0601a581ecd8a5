/*
 * local_train.h - a client's local training for one task: plain minibatch
 * SGD, or DP-SGD (dp/dpsgd.h) when the task asks for DP.
 *
 * The privacy plan of a DP task -- sampling rate q and number of noisy
 * steps -- is a pure function of the task and the local example count
 * (roost_local_plan), so the ledger can be checked and charged for exactly
 * the steps that training then takes.
 *
 * A task is trained in steps (roost_local_trainer_step), so a client
 * driven from an application's event loop never blocks for a whole task.
 * Everything the steps need is allocated when the trainer is created.
 * One thread at a time per trainer.
 */
#ifndef ROOST_CLIENT_LOCAL_TRAIN_H
#define ROOST_CLIENT_LOCAL_TRAIN_H

#include <roost/roost.h>

#include "common/dataset.h"
#include "common/error.h"
#include "common/model.h"
#include "common/rng.h"
#include "dp/dpsgd.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a task asks for (from the wire's TrainingParams and DpParams). */
typedef struct roost_local_task {
    uint32_t local_epochs;
    uint32_t batch_size;
    double learning_rate, momentum, weight_decay, prox_mu;
    bool dp;
    double noise_multiplier, clip_norm, delta;
    double sampling_rate; /* 0: expected_batch / local count */
    uint32_t expected_batch;
    /* Not from the task message: where a DP run's noise sampler takes its
     * tables from (roost_dpsgd_config.noise_memo); NULL builds them. */
    struct roost_noise_memo *noise_memo;
} roost_local_task;

/* The privacy plan of a DP task over n_local examples. */
typedef struct roost_local_plan_info {
    double q;       /* Poisson sampling rate, in (0, 1] */
    uint64_t steps; /* noisy steps: ceil(local_epochs / q) */
} roost_local_plan_info;

typedef struct roost_local_result {
    double loss;          /* mean training loss per example over the last
                             epoch's steps */
    double accuracy;      /* training accuracy over the same steps (before
                             each step's update); NaN when not measured
                             (DP, or an application's own trainer) */
    uint64_t examples;    /* local examples */
    uint64_t steps;       /* optimiser steps taken */
    uint64_t noise_draws; /* DP: noise values drawn in all (parameters x
                             steps); 0 without DP */
    uint64_t excluded;    /* DP: sampled examples left out of their step
                             for a non-finite gradient (dp/dpsgd.h); kept
                             on the device, like the loss */
} roost_local_result;

/* roost_local_plan - q and steps for a DP task; ROOST_EINVAL when the task
 * cannot be planned (no examples, bad rate, too many steps). */
int roost_local_plan(const roost_local_task *task, size_t n_local,
                     roost_local_plan_info *out, roost_errmsg *em);

/* Where gradients come from: the built-in model, or an application's
 * trainer (ops; see dp/dpsgd.h for what it must guarantee). Exactly one
 * of model and ops is set. */
typedef struct roost_local_source {
    const roost_model *model;
    const roost_grad_ops *ops;
    size_t n_params, input_dim; /* required with ops */
} roost_local_source;

typedef struct roost_local_trainer roost_local_trainer;

/*
 * roost_local_trainer_create - prepare to train from global (n_params
 * floats) into params (n_params floats, caller-owned, must stay valid) on
 * examples idx[0..n) of ds (idx NULL: the first n). rng drives shuffling,
 * Poisson sampling and noise and must outlive the trainer. Everything the
 * steps need is allocated here.
 */
int roost_local_trainer_create(roost_local_trainer **out,
                               const roost_allocator *alloc,
                               const roost_local_source *src,
                               const roost_dataset *ds, const uint32_t *idx,
                               size_t n, const float *global, float *params,
                               const roost_local_task *task, roost_rng *rng,
                               roost_errmsg *em);

/* roost_local_trainer_step - one optimiser step (one minibatch, or one
 * DP-SGD step); *done once the task's steps are all taken. An error
 * leaves params unusable for release. */
int roost_local_trainer_step(roost_local_trainer *t, bool *done,
                             roost_errmsg *em);

/* roost_local_trainer_result - what the steps so far did. */
void roost_local_trainer_result(const roost_local_trainer *t,
                                roost_local_result *res);

void roost_local_trainer_destroy(roost_local_trainer *t);

/*
 * roost_local_train - all steps at once with the built-in model m.
 * cancel, when not NULL, is polled between steps: a nonzero value stops
 * training with ROOST_ECANCELED (params must then not be used). It is an
 * atomic because another thread, or a signal handler on any thread, sets
 * it while this one trains.
 */
int roost_local_train(const roost_model *m, const roost_dataset *ds,
                      const uint32_t *idx, size_t n, const float *global,
                      float *params, const roost_local_task *task,
                      roost_rng *rng, const atomic_int *cancel,
                      roost_local_result *result, roost_errmsg *em);

/*
 * roost_local_evaluate - mean cross-entropy and accuracy of params (the
 * model's param_count floats) on examples idx[0..n) of ds (idx NULL: the
 * first n), for a federated evaluation task. Works through the examples in
 * batches of at most 256 with buffers allocated here. The results are
 * functions of the local data that no DP mechanism covers (see
 * docs/client.md, "Federated evaluation").
 * Returns ROOST_OK, ROOST_EINVAL (n 0, a shape mismatch), ROOST_ENOMEM.
 */
int roost_local_evaluate(const roost_model *m, const roost_allocator *alloc,
                         const roost_dataset *ds, const uint32_t *idx, size_t n,
                         const float *params, double *loss, double *accuracy,
                         roost_errmsg *em);

#endif
