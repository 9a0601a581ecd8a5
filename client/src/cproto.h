/*
 * cproto.h - the client's side of the round protocol, independent of the
 * transport (libroost's TLS channel, or roost sim's in-process queues).
 *
 * Life of a task, as in ARCHITECTURE.md:
 *   check in -> (Task + parameter chunks | ComeBackLater)
 *   -> plan the task's privacy cost against the budget; Decline if it
 *      would be exceeded
 *   -> train (the host runs roost_cproto_job's training, possibly on a
 *      worker thread)
 *   -> charge the budget DURABLY, and only then
 *   -> send Update + delta chunks -> Ack -> check in again.
 * Nothing derived from the local data leaves before its privacy event is
 * charged: roost_cproto_finish() charges first and sends after, and with
 * DP on the update carries no unprotected statistic (no training loss, no
 * example count).
 *
 * An idle client holds only its small state here (no parameter buffers
 * unless keep_model is set), so a simulation can hold many.
 *
 * Threading: all calls on one roost_cproto come from one thread at a time;
 * the job (buffers handed out by roost_cproto_job) may be worked on by
 * another thread between roost_cproto_job and roost_cproto_finish.
 */
#ifndef ROOST_CLIENT_CPROTO_H
#define ROOST_CLIENT_CPROTO_H

#include <roost/roost.h>

#include "client/src/local_train.h"
#include "common/error.h"
#include "common/log.h"
#include "dp/ledger.h"
#include "dp/noise.h"

#include "roost.pb-c.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct roost_cproto roost_cproto;

/* The privacy budget as the protocol sees it; libroost backs it with the
 * durable SQLite ledger (dp/ledger.h), roost sim with an in-memory event
 * list per virtual client. Every epsilon comes from the accountant,
 * charged for the noise sampler (the event's draws, mu and beta). */
typedef struct roost_cproto_budget {
    /* epsilon after adding the event, without recording it; ROOST_EBUDGET
     * (with em saying by how much) when it would exceed the budget. The
     * event's task_id is NULL here. */
    int (*plan)(void *arg, const roost_ledger_event *ev, double *eps_after,
                roost_errmsg *em);
    /* Record the event durably before returning; *eps_after is the total
     * spent including it. */
    int (*charge)(void *arg, const roost_ledger_event *ev, double *eps_after,
                  roost_errmsg *em);
    /* Budget left and the delta it is stated at. */
    int (*remaining)(void *arg, double *eps_remaining, double *delta);
    void *arg;
} roost_cproto_budget;

typedef int (*roost_cproto_send_fn)(void *arg, const Roost__V1__Envelope *msg);

typedef struct roost_cproto_config {
    const char *label; /* display label sent at check-in, may be NULL */
    size_t n_local;    /* local examples */
    roost_cproto_budget budget;
    bool keep_model; /* keep the last global model (cache by hash) */
    /* Answer federated evaluation tasks. Their loss and accuracy are
     * computed from the local data and released WITHOUT differential
     * privacy, so this is off unless the embedder turns it on; when off,
     * evaluation tasks are declined before the model is downloaded. */
    bool allow_evaluation;
    /* INSECURE. Train for tasks that carry no DP-SGD parameters. Such an
     * update is neither clipped nor noised and is not charged to the
     * budget, so the coordinator alone would decide whether the budget
     * applies. Off unless the embedder turns it on (roost sim --no-dp,
     * roost client --allow-no-dp); when off, those tasks are declined
     * before the model is downloaded. */
    bool allow_no_dp;
    /* Remembers the noise sampler's figures per (sigma, clip), which a DP
     * task's event records (building them costs about 20 ms). NULL: the
     * protocol keeps its own; roost sim shares one among its clients. */
    roost_noise_memo *noise_memo;
    roost_logger log;
} roost_cproto_config;

enum roost_cproto_state {
    ROOST_CP_IDLE = 0,  /* must check in */
    ROOST_CP_WAITING,   /* checked in, waiting for a task */
    ROOST_CP_RECEIVING, /* task in, parameter chunks arriving */
    ROOST_CP_READY,     /* task and parameters complete: train */
    ROOST_CP_TRAINING,  /* job handed out */
    ROOST_CP_AWAIT_ACK, /* update sent */
    ROOST_CP_BACKOFF,   /* told to come back later */
    ROOST_CP_EXHAUSTED, /* budget exhausted: takes no more tasks */
};

/* A job: everything the host needs to run roost_local_train, or, when
 * evaluate is set, roost_local_evaluate on global (params is then NULL and
 * task holds zeros). */
typedef struct roost_cproto_job {
    bool evaluate;
    const char *model_spec;
    uint32_t channels, height, width;
    size_t n_params;
    const float *global; /* n_params floats */
    float *params;       /* n_params floats: training writes here */
    roost_local_task task;
    int64_t round_id;
    uint64_t task_id;
} roost_cproto_job;

int roost_cproto_create(roost_cproto **out, const roost_allocator *alloc,
                        const roost_cproto_config *cfg,
                        roost_cproto_send_fn send, void *send_arg,
                        roost_errmsg *em);
void roost_cproto_destroy(roost_cproto *p);

/* Send a check-in (state IDLE or BACKOFF -> WAITING). ROOST_EBUDGET, with
 * the state EXHAUSTED, when no budget remains (remaining <= 0): nothing is
 * sent, and the client takes no further part. */
int roost_cproto_check_in(roost_cproto *p, int64_t now_ms);

/* Handle one message from the coordinator. Returns ROOST_OK, or an error
 * for a fatal protocol violation (the host should drop the connection).
 * The budget may run out on the way (a task declined for it, or nothing
 * left to check in with after an Ack or a decline) without an error: the
 * state is then EXHAUSTED, which the host checks after this call, after
 * roost_cproto_finish and after roost_cproto_finish_eval. */
int roost_cproto_on_message(roost_cproto *p, const Roost__V1__Envelope *m,
                            int64_t now_ms);

/* The connection dropped: forget any task in flight (an acknowledged
 * update is never resent; an unacknowledged one is lost, and its budget
 * stays spent). State becomes IDLE. */
void roost_cproto_disconnected(roost_cproto *p);

/* Timers: the next check-in after a come-back-later. Returns ROOST_OK;
 * *next_ms gets the next instant to call again (INT64_MAX: none). */
int roost_cproto_tick(roost_cproto *p, int64_t now_ms, int64_t *next_ms);

enum roost_cproto_state roost_cproto_state(const roost_cproto *p);

/* Hand out the training job (state READY -> TRAINING). */
int roost_cproto_take_job(roost_cproto *p, roost_cproto_job **job);

/*
 * roost_cproto_finish - the host's training ended with train_rc and
 * *result. On success: charge the budget (durably), then send the Update
 * and the delta chunks. If charging fails nothing is sent. On failure or
 * a budget refusal: Decline. Returns ROOST_OK or the charge error.
 */
int roost_cproto_finish(roost_cproto *p, int train_rc,
                        const roost_local_result *result, int64_t now_ms);

/*
 * roost_cproto_finish_eval - the host's evaluation of an evaluate job
 * ended with eval_rc; on success send an EvaluationResult (n examples,
 * mean loss, accuracy), else Decline. No budget is charged: the result is
 * not differentially private (cproto_config.allow_evaluation). Returns
 * ROOST_OK, ROOST_ESTATE (no evaluate job in hand) or a send error.
 */
int roost_cproto_finish_eval(roost_cproto *p, int eval_rc, uint64_t n,
                             double loss, double accuracy, int64_t now_ms);

/* Epsilon spent as of the last charge (NaN before any). */
double roost_cproto_epsilon(const roost_cproto *p);

/* Round of the task in hand, or of the last one (0 before any). */
int64_t roost_cproto_round_id(const roost_cproto *p);

/* Rounds this client has contributed to (updates acknowledged). */
uint64_t roost_cproto_rounds(const roost_cproto *p);

const char *roost_cproto_errmsg(const roost_cproto *p);

#endif
