/*
 * coord.c - the coordinator's round state machine (see coord.h for the
 * protocol it implements).
 *
 * Invariants:
 *  - At most one round is open. A round's id is always last committed + 1,
 *    so a round is never committed twice, and an abandoned round is run
 *    again under the same id.
 *  - A session is in exactly one state (enum sess_state). Only sessions in
 *    S_ASSIGNED or S_RECEIVING belong to the open round, and each has a
 *    slot in round.parts.
 *  - At most one session per certificate fingerprint: a session opened with
 *    a fingerprint already in use replaces the older session, which is
 *    closed and forgotten at once (see roost_coord_session_opened). So the
 *    sessions a round selects from never share a certificate, and a
 *    replacement pick (replace_participant) also passes over certificates
 *    whose earlier session already holds a place in the round. The store
 *    records one participant per certificate and round.
 *  - An update is folded into the strategy only after its chunks hashed to
 *    the announced SHA-256 and validation passed; each task folds at most
 *    once (the participant's status moves off PART_SELECTED first).
 *  - Nothing about a round reaches the store before roost_store_commit_round
 *    writes all of it in one transaction.
 *  - A round's deadline and duration are on the monotonic clock of
 *    roost_coord_time and never reach the store; its record and the
 *    deadline a task names are on the wall clock. So no wall-clock step
 *    moves a deadline, and a restart (the monotonic clock may start again
 *    from zero after a reboot) has no monotonic time to resume from: it
 *    runs the lost round afresh.
 *
 * Locking: none; one thread owns the coordinator (coord.h).
 */
#include "server/coord.h"

#include "common/alloc.h"
#include "common/model.h"
#include "common/rng.h"
#include "common/wire.h"
#include "common/xfer.h"
#include "dp/accountant.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A round accepts at most its quorum of updates, each reporting at most
 * ROOST_COORD_MAX_EXAMPLES: the sum fits the store's signed count. */
_Static_assert((ROOST_COORD_MAX_EXAMPLES * ROOST_COORD_MAX_QUORUM) <=
                   (uint64_t)INT64_MAX,
               "a round's example sum must fit in int64");

/* NaN as a double ("not measured" in records); NAN itself is a float. */
#define NOT_MEASURED ((double)NAN)

#define FP_CAP 129 /* fingerprint: up to 128 characters + NUL */

enum sess_state {
    S_NEW,       /* connected, no check-in yet */
    S_WAITING,   /* checked in, waiting for a round */
    S_PAUSED,    /* told to come back later */
    S_ASSIGNED,  /* task sent, answer expected */
    S_RECEIVING, /* update header in, chunks arriving */
    S_DONE,      /* answered this round; waits for its next check-in */
};

struct session {
    uint64_t id;
    enum sess_state state;
    char fingerprint[FP_CAP];
    struct session *fp_next; /* next in its fingerprint bucket */
    bool has_model_hash;
    uint8_t model_hash[ROOST_XFER_HASH_BYTES];
    double epsilon_remaining;
    int part; /* index into round.parts while in the round, else -1 */
    /* Set only inside replace_participant: the certificate already holds a
     * place in the open round through an earlier session. */
    bool cert_in_round;
    /* Update being received (S_RECEIVING). */
    roost_xfer_receiver *rx;
    float *delta;
    uint64_t reported_examples;
    double train_loss, train_accuracy;
    double dp_epsilon, dp_delta, dp_sigma, dp_clip, dp_rate;
    int64_t dp_steps;
};

struct participant {
    char fingerprint[FP_CAP];
    uint64_t session; /* 0 once the session is gone */
    uint64_t task_id;
    int status; /* enum roost_store_participant_status */
};

struct update_rec {
    roost_store_update u;
    char reason[160];
};

struct round_state {
    bool open;
    bool evaluate; /* a federated evaluation round, not training */
    int64_t id;
    int64_t started_wall_ms;  /* the record's started_ms */
    int64_t started_mono_ms;  /* for the round's seconds */
    int64_t deadline_mono_ms; /* started_mono_ms + round_timeout_ms */
    struct participant *parts;
    size_t n_parts, cap_parts; /* cap: room for replacements */
    uint32_t owed;             /* declines not yet replaced */
    struct update_rec *updates;
    size_t n_updates, cap_updates;
    uint32_t accepted, refused;
    uint64_t examples;
    /* Example-weighted means of what clients reported, and their weights
     * (see mean_fold). */
    double loss_mean, acc_mean;
    double loss_weight, acc_weight;
    /* Evaluation rounds: answers and their example-weighted sums. */
    uint32_t answered;
    uint64_t ev_examples;
    double ev_loss_mean, ev_acc_mean; /* weighted by examples */
    double ev_loss_weight, ev_acc_weight;
};

struct roost_coord {
    roost_coord_config cfg;
    roost_coord_io io;
    roost_errmsg em;

    roost_model *model;
    roost_workspace *eval_ws;
    size_t n;
    float *params;
    uint8_t params_hash[ROOST_XFER_HASH_BYTES];
    roost_strategy *strategy;
    roost_rng *rng;
    int64_t run_id;
    /* Seed of the initial model: the one recorded with the run (open_run),
     * which may differ from a restarted configuration's. */
    uint64_t init_seed;
    int64_t last_round;
    int64_t train_rounds; /* training rounds recorded (committed or failed) */
    /* Committed training rounds in the record whose central DP settings
     * (none, or another noise multiplier) differ from this run's: no
     * whole-history figure can then be computed from the current ones. */
    int64_t cdp_mixed;
    /* The strategy's sampler sums cover the whole record: no training
     * round before this run, or they came with the resumed state. */
    bool cdp_sums_exact;
    bool eval_due; /* the next round is a federated evaluation */
    bool finished;
    void *state_buf; /* strategy state saved with each commit */
    size_t state_cap;

    /* Sessions: open-addressing hash table keyed by session id, and an
     * index by fingerprint (n_slots chained buckets) that finds a
     * certificate's session when it connects again. */
    struct session **slots;
    size_t n_slots, n_sessions;
    struct session **fp_buckets;

    struct round_state round;
    uint64_t next_task_id; /* the last given; random at start */
};

/* ------------------------------------------------------------ sessions */

static size_t
slot_of(uint64_t id, size_t n_slots)
{
    /* Fibonacci hashing spreads sequential ids. */
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & (n_slots - 1);
}

static struct session *
session_find(const roost_coord *c, uint64_t id)
{
    for (size_t i = slot_of(id, c->n_slots);; i = (i + 1) & (c->n_slots - 1)) {
        if (c->slots[i] == NULL)
            return NULL;
        if (c->slots[i]->id == id)
            return c->slots[i];
    }
}

/* FNV-1a over the fingerprint, reduced to one of n (a power of two)
 * buckets. */
static size_t
fp_bucket_of(const char *fingerprint, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = fingerprint; *p != '\0'; p++) {
        h ^= (unsigned char)*p;
        h *= 0x100000001b3ull;
    }
    return (size_t)(h & (uint64_t)(n - 1));
}

static struct session *
session_by_fingerprint(const roost_coord *c, const char *fingerprint)
{
    struct session *x = c->fp_buckets[fp_bucket_of(fingerprint, c->n_slots)];
    while (x != NULL && strcmp(x->fingerprint, fingerprint) != 0)
        x = x->fp_next;
    return x;
}

static void
fp_link(struct session **buckets, size_t n, struct session *s)
{
    struct session **head = &buckets[fp_bucket_of(s->fingerprint, n)];
    s->fp_next = *head;
    *head = s;
}

static void
fp_unlink(roost_coord *c, struct session *s)
{
    struct session **p =
        &c->fp_buckets[fp_bucket_of(s->fingerprint, c->n_slots)];
    while (*p != NULL && *p != s)
        p = &(*p)->fp_next;
    if (*p != NULL)
        *p = s->fp_next;
    s->fp_next = NULL;
}

static int
table_grow(roost_coord *c)
{
    size_t n_new = c->n_slots * 2;
    struct session **s = calloc(n_new, sizeof(*s));
    struct session **fp = calloc(n_new, sizeof(*fp));
    if (s == NULL || fp == NULL) {
        free(s);
        free(fp);
        return ROOST_ENOMEM;
    }
    for (size_t i = 0; i < c->n_slots; i++) {
        struct session *x = c->slots[i];
        if (x == NULL)
            continue;
        size_t j = slot_of(x->id, n_new);
        while (s[j] != NULL)
            j = (j + 1) & (n_new - 1);
        s[j] = x;
        fp_link(fp, n_new, x);
    }
    free(c->slots);
    free(c->fp_buckets);
    c->slots = s;
    c->fp_buckets = fp;
    c->n_slots = n_new;
    return ROOST_OK;
}

static void
session_remove(roost_coord *c, uint64_t id)
{
    size_t i = slot_of(id, c->n_slots);
    while (c->slots[i] != NULL && c->slots[i]->id != id)
        i = (i + 1) & (c->n_slots - 1);
    if (c->slots[i] == NULL)
        return;
    c->slots[i] = NULL;
    c->n_sessions--;
    /* Backward-shift deletion keeps every probe chain unbroken. */
    for (size_t j = (i + 1) & (c->n_slots - 1); c->slots[j] != NULL;
         j = (j + 1) & (c->n_slots - 1)) {
        struct session *x = c->slots[j];
        size_t home = slot_of(x->id, c->n_slots);
        /* x may move to i when i lies cyclically in [home, j). */
        bool movable =
            (j > i) ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            c->slots[i] = x;
            c->slots[j] = NULL;
            i = j;
        }
    }
}

static void
session_drop_upload(struct session *s)
{
    roost_xfer_receiver_destroy(s->rx);
    s->rx = NULL;
    free(s->delta);
    s->delta = NULL;
}

/* Forget a session that ended: its place in the open round, if it still
 * owed an answer, is dropped. */
static void
session_forget(roost_coord *c, struct session *s)
{
    if (s->part >= 0 && c->round.open) {
        struct participant *p = &c->round.parts[s->part];
        if (p->status == ROOST_PART_SELECTED)
            p->status = ROOST_PART_DROPPED;
        p->session = 0;
    }
    session_drop_upload(s);
    fp_unlink(c, s);
    session_remove(c, s->id);
    free(s);
}

/* ------------------------------------------------------------ messages */

static int
send_msg(roost_coord *c, struct session *s, Roost__V1__Envelope *env)
{
    int rc = c->io.send(c->io.arg, s->id, env);
    if (rc != ROOST_OK)
        roost_log(&c->cfg.log, ROOST_LOG_WARN,
                  "session %" PRIu64 ": send failed: %s", s->id,
                  roost_strerror(rc));
    return rc;
}

static void
send_error_and_close(roost_coord *c, struct session *s, int code,
                     const char *why)
{
    Roost__V1__Envelope env;
    roost__v1__envelope__init(&env);
    Roost__V1__Error err;
    roost__v1__error__init(&err);
    err.code = (uint32_t)code;
    err.message = (char *)(uintptr_t)why;
    env.body_case = ROOST__V1__ENVELOPE__BODY_ERROR;
    env.error = &err;
    roost_log(&c->cfg.log, ROOST_LOG_WARN, "session %" PRIu64 " (%s): %s",
              s->id, s->fingerprint, why);
    send_msg(c, s, &env);
    c->io.close(c->io.arg, s->id, why);
}

static void
send_ack(roost_coord *c, struct session *s, uint64_t round_id, uint64_t task_id,
         int code, const char *reason)
{
    Roost__V1__Envelope env;
    roost__v1__envelope__init(&env);
    Roost__V1__Ack ack;
    roost__v1__ack__init(&ack);
    ack.round_id = round_id;
    ack.task_id = task_id;
    ack.accepted = code == ROOST_OK;
    ack.error_code = (uint32_t)code;
    ack.reason = (char *)(uintptr_t)(reason ? reason : "");
    env.body_case = ROOST__V1__ENVELOPE__BODY_ACK;
    env.ack = &ack;
    send_msg(c, s, &env);
}

static void
send_come_back(roost_coord *c, struct session *s, uint64_t after_ms,
               const char *reason)
{
    Roost__V1__Envelope env;
    roost__v1__envelope__init(&env);
    Roost__V1__ComeBackLater cbl;
    roost__v1__come_back_later__init(&cbl);
    cbl.retry_after_ms = after_ms;
    cbl.reason = (char *)(uintptr_t)reason;
    env.body_case = ROOST__V1__ENVELOPE__BODY_COME_BACK_LATER;
    env.come_back_later = &cbl;
    s->state = S_PAUSED;
    send_msg(c, s, &env);
}

/* The deadline a task sent now names: the wall clock now plus what is
 * left of the round on the monotonic clock, so it is right on the
 * client's (wall) clock even when the server's wall clock stepped since
 * the round opened. A round past its deadline (not yet closed by a tick)
 * names the present. */
static uint64_t
task_deadline_unix_ms(const roost_coord *c, roost_coord_time now)
{
    int64_t left = c->round.deadline_mono_ms - now.mono_ms;
    int64_t when = now.wall_ms + (left > 0 ? left : 0);
    return when > 0 ? (uint64_t)when : 0;
}

/* Send the task of the open round to s, then the parameters unless s holds
 * them. */
static int
send_task(roost_coord *c, struct session *s, uint64_t task_id,
          roost_coord_time now)
{
    const roost_coord_config *cfg = &c->cfg;
    Roost__V1__Envelope env;
    roost__v1__envelope__init(&env);
    Roost__V1__Task task;
    roost__v1__task__init(&task);
    Roost__V1__ModelSpec spec;
    roost__v1__model_spec__init(&spec);
    Roost__V1__TrainingParams tp;
    roost__v1__training_params__init(&tp);
    Roost__V1__DpParams dp;
    roost__v1__dp_params__init(&dp);
    roost_xfer_sender sender;
    uint32_t chunk_count = 0;

    bool need_params =
        !s->has_model_hash ||
        memcmp(s->model_hash, c->params_hash, sizeof(c->params_hash)) != 0;
    if (need_params) {
        int rc = roost_xfer_sender_init(&sender, c->params, c->n, 0,
                                        (uint64_t)c->round.id, task_id,
                                        &chunk_count);
        if (rc != ROOST_OK)
            return rc;
    }
    spec.spec = (char *)(uintptr_t)roost_model_spec(c->model);
    spec.input_channels = cfg->input_channels;
    spec.input_height = cfg->input_height;
    spec.input_width = cfg->input_width;
    spec.num_classes = roost_model_num_classes(c->model);
    spec.num_params = c->n;
    tp.local_epochs = cfg->local_epochs;
    tp.batch_size = cfg->batch_size;
    tp.learning_rate = cfg->learning_rate;
    tp.momentum = cfg->momentum;
    tp.weight_decay = cfg->weight_decay;
    tp.prox_mu = cfg->strategy.kind == ROOST_STRATEGY_FEDPROX
                     ? cfg->strategy.prox_mu
                     : 0.0;
    dp.enabled = cfg->dp_enabled;
    if (cfg->dp_enabled) {
        dp.noise_multiplier = cfg->dp_noise_multiplier;
        dp.clip_norm = cfg->dp_clip_norm;
        dp.sampling_rate = cfg->dp_sampling_rate;
        dp.expected_batch_size = cfg->dp_expected_batch;
        dp.delta = cfg->dp_delta;
        dp.poisson = true;
    }
    task.round_id = (uint64_t)c->round.id;
    task.task_id = task_id;
    task.kind = c->round.evaluate ? ROOST__V1__TASK_KIND__TASK_KIND_EVALUATE
                                  : ROOST__V1__TASK_KIND__TASK_KIND_TRAIN;
    task.model = &spec;
    task.model_hash.data = c->params_hash;
    task.model_hash.len = sizeof(c->params_hash);
    task.parameters_follow = need_params;
    task.param_chunk_count = chunk_count;
    /* An evaluation task carries no training or DP parameters. */
    task.training = c->round.evaluate ? NULL : &tp;
    task.dp = c->round.evaluate ? NULL : &dp;
    task.deadline_unix_ms = task_deadline_unix_ms(c, now);
    env.body_case = ROOST__V1__ENVELOPE__BODY_TASK;
    env.task = &task;
    int rc = send_msg(c, s, &env);
    if (rc != ROOST_OK || !need_params)
        return rc;
    Roost__V1__Envelope cenv;
    roost__v1__envelope__init(&cenv);
    Roost__V1__ParamChunk chunk;
    roost__v1__param_chunk__init(&chunk);
    cenv.body_case = ROOST__V1__ENVELOPE__BODY_PARAM_CHUNK;
    cenv.param_chunk = &chunk;
    for (;;) {
        bool done = false;
        rc = roost_xfer_sender_next(&sender, &chunk, &done);
        if (rc != ROOST_OK || done)
            return rc;
        rc = send_msg(c, s, &cenv);
        if (rc != ROOST_OK)
            return rc;
    }
}

/* -------------------------------------------------------------- rounds */

static struct update_rec *
add_update_rec(roost_coord *c, struct session *s, roost_coord_time now)
{
    struct round_state *r = &c->round;
    if (r->n_updates == r->cap_updates) {
        size_t cap = r->cap_updates ? 2 * r->cap_updates : 16;
        struct update_rec *u = realloc(r->updates, cap * sizeof(*u));
        if (u == NULL)
            return NULL;
        /* Fingerprint pointers point into parts, which do not move, so
         * moving the records is safe. */
        r->updates = u;
        r->cap_updates = cap;
    }
    struct update_rec *rec = &r->updates[r->n_updates++];
    memset(rec, 0, sizeof(*rec));
    rec->u.seq = (int64_t)r->n_updates;
    rec->u.fingerprint = r->parts[s->part].fingerprint;
    rec->u.received_ms = now.wall_ms;
    rec->u.l2_norm = NOT_MEASURED;
    /* The store keeps signed 64-bit counts: a claim above INT64_MAX (only
     * ever on a refused update, see on_update) is recorded saturated, so
     * the record of a refusal can never make the round's commit fail. */
    rec->u.examples_reported = s->reported_examples > (uint64_t)INT64_MAX
                                   ? INT64_MAX
                                   : (int64_t)s->reported_examples;
    rec->u.train_loss = s->train_loss;
    rec->u.train_accuracy = s->train_accuracy;
    rec->u.dp_epsilon = s->dp_epsilon;
    rec->u.dp_delta = s->dp_delta;
    rec->u.dp_noise_multiplier = s->dp_sigma;
    rec->u.dp_clip_norm = s->dp_clip;
    rec->u.dp_sample_rate = s->dp_rate;
    rec->u.dp_steps = s->dp_steps;
    return rec;
}

/* Fold a client's figure x >= 0 of weight w > 0 into a weighted mean of
 * total weight *total. The running form, mean += w / total * (x - mean),
 * stays between the smallest and largest figure folded, so finite claims
 * can never make the mean overflow, as a sum of w * x over a round can
 * (w is up to 2^40 examples, x any finite double). */
static void
mean_fold(double *mean, double *total, double w, double x)
{
    *total += w;
    *mean += w / *total * (x - *mean);
}

static void
round_reset(roost_coord *c)
{
    struct round_state *r = &c->round;
    free(r->parts);
    r->parts = NULL;
    r->n_parts = 0;
    r->n_updates = 0;
    r->accepted = r->refused = 0;
    r->examples = 0;
    r->loss_mean = r->acc_mean = r->loss_weight = r->acc_weight = 0;
    r->answered = 0;
    r->ev_examples = 0;
    r->ev_loss_mean = r->ev_acc_mean = 0;
    r->ev_loss_weight = r->ev_acc_weight = 0;
    r->cap_parts = 0;
    r->owed = 0;
    r->evaluate = false;
    r->open = false;
}

/* Updates (or evaluation answers) that close the open round at once. */
static uint32_t
round_quorum(const roost_coord *c)
{
    if (c->round.evaluate && c->cfg.fed_eval_clients > 0)
        return c->cfg.fed_eval_clients;
    return c->cfg.clients_per_round;
}

/* The fewest that still make the round count at its deadline. */
static uint32_t
round_minimum(const roost_coord *c)
{
    uint32_t q = round_quorum(c);
    return c->cfg.min_clients < q ? c->cfg.min_clients : q;
}

/* Detach every session from the round (after commit or abandon). Those
 * still working on it are told at once, so a client that has not yet
 * charged its ledger can stop before spending budget on a dead round. */
static void
round_release_sessions(roost_coord *c)
{
    for (size_t i = 0; i < c->round.n_parts; i++) {
        struct participant *p = &c->round.parts[i];
        if (p->session == 0)
            continue;
        struct session *s = session_find(c, p->session);
        if (s == NULL)
            continue;
        s->part = -1;
        if (s->state == S_RECEIVING)
            session_drop_upload(s);
        if (s->state == S_ASSIGNED || s->state == S_RECEIVING)
            send_come_back(c, s, c->cfg.retry_after_ms,
                           "round closed before your update arrived");
    }
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void
epsilon_stats(const struct round_state *r, double *max, double *median)
{
    *max = NOT_MEASURED;
    *median = NOT_MEASURED;
    double *v = malloc((r->n_updates + 1) * sizeof(double));
    if (v == NULL)
        return;
    size_t k = 0;
    for (size_t i = 0; i < r->n_updates; i++)
        if (r->updates[i].u.accepted && isfinite(r->updates[i].u.dp_epsilon))
            v[k++] = r->updates[i].u.dp_epsilon;
    if (k > 0) {
        qsort(v, k, sizeof(double), cmp_double);
        *max = v[k - 1];
        *median = k % 2 ? v[k / 2] : 0.5 * (v[k / 2 - 1] + v[k / 2]);
    }
    free(v);
}

/* Participants as the store records them; *dropped counts the dropped. */
static roost_store_participant *
record_participants(const struct round_state *r, uint32_t *dropped)
{
    roost_store_participant *parts = calloc(r->n_parts + 1, sizeof(*parts));
    *dropped = 0;
    if (parts == NULL)
        return NULL;
    for (size_t i = 0; i < r->n_parts; i++) {
        parts[i].fingerprint = r->parts[i].fingerprint;
        parts[i].status = r->parts[i].status;
        if (parts[i].status == ROOST_PART_DROPPED)
            (*dropped)++;
    }
    return parts;
}

/* Whether the next round is due to be a federated evaluation, after
 * c->train_rounds training rounds the last of which committed or not. */
static void
update_eval_due(roost_coord *c, bool last_train_committed)
{
    c->eval_due = c->cfg.fed_eval_every > 0 && last_train_committed &&
                  c->train_rounds > 0 &&
                  c->train_rounds % c->cfg.fed_eval_every == 0;
}

static void
update_finished(roost_coord *c)
{
    c->finished = c->cfg.max_rounds != 0 &&
                  (uint64_t)c->train_rounds >= c->cfg.max_rounds &&
                  !c->eval_due;
}

/* The fields every round record shares, training or evaluation. */
static void
record_begin(const roost_coord *c, roost_store_commit *rec, const char *kind,
             bool counted, roost_coord_time now)
{
    memset(rec, 0, sizeof(*rec));
    rec->round.round_id = c->round.id;
    rec->round.run_id = c->run_id;
    rec->round.kind = kind;
    rec->round.state = counted ? ROOST_ROUND_COMMITTED : ROOST_ROUND_FAILED;
    rec->round.started_ms = c->round.started_wall_ms;
    rec->round.committed_ms = now.wall_ms;
    rec->round.strategy = roost_strategy_kind_name(c->cfg.strategy.kind);
}

/* After a round's record is committed: free its sessions for the next
 * round and tell the program running the coordinator. */
static int
round_end(roost_coord *c, const roost_coord_round_summary *sum)
{
    round_release_sessions(c);
    round_reset(c);
    update_finished(c);
    if (c->cfg.on_round != NULL)
        c->cfg.on_round(c->cfg.on_round_arg, sum);
    return ROOST_OK;
}

/* Close a federated evaluation round: record the example-weighted mean
 * loss and accuracy the clients reported as metrics of a round of kind
 * "eval" (the model is unchanged). It counts when at least the round's
 * minimum answered; either way the next round trains. */
static int
eval_close(roost_coord *c, roost_coord_time now)
{
    struct round_state *r = &c->round;
    roost_coord_round_summary sum;
    memset(&sum, 0, sizeof(sum));
    sum.round_id = r->id;
    sum.evaluation = true;
    sum.selected = (uint32_t)r->n_parts;
    sum.accepted = r->answered;
    sum.refused = r->refused;
    sum.examples = r->ev_examples;
    sum.train_loss = sum.eval_loss = sum.eval_accuracy = NOT_MEASURED;
    sum.epsilon_max = sum.epsilon_median = NOT_MEASURED;
    sum.seconds = (double)(now.mono_ms - r->started_mono_ms) / 1000.0;
    bool counted = r->answered >= round_minimum(c) && r->answered > 0 &&
                   r->ev_examples > 0;
    sum.fed_eval_loss = counted ? r->ev_loss_mean : NOT_MEASURED;
    sum.fed_eval_accuracy = counted ? r->ev_acc_mean : NOT_MEASURED;

    uint32_t dropped = 0;
    roost_store_participant *parts = record_participants(r, &dropped);
    if (parts == NULL)
        return roost_fail(&c->em, ROOST_ENOMEM,
                          "round %" PRId64 ": no memory for the record", r->id);
    sum.dropped = dropped;
    sum.committed = counted;
    roost_store_metric metrics[4] = {
        {"fed_eval.loss", sum.fed_eval_loss},
        {"fed_eval.accuracy", sum.fed_eval_accuracy},
        {"fed_eval.examples", (double)r->ev_examples},
        {"fed_eval.clients", (double)r->answered},
    };
    roost_store_commit rec;
    record_begin(c, &rec, "eval", counted, now);
    /* The clients' figures on their own data are what the record calls
     * "reported by clients"; held-out figures belong to training rounds. */
    rec.round.train_loss = sum.fed_eval_loss;
    rec.round.train_accuracy = sum.fed_eval_accuracy;
    rec.round.eval_loss = rec.round.eval_accuracy = NOT_MEASURED;
    rec.participants = parts;
    rec.n_participants = r->n_parts;
    rec.metrics = metrics;
    rec.n_metrics = 4;
    roost_errmsg em;
    roost_errmsg_clear(&em);
    int rc = roost_store_commit_round(c->cfg.store, &rec, NULL, &em);
    free(parts);
    if (rc != ROOST_OK)
        return roost_fail(&c->em, rc, "round %" PRId64 ": commit failed: %s",
                          r->id, roost_errmsg_text(&em));
    c->last_round = r->id;
    c->eval_due = false;
    if (counted)
        roost_log(&c->cfg.log, ROOST_LOG_INFO,
                  "round %" PRId64 " (federated evaluation): %u/%u clients, "
                  "%" PRIu64 " examples, loss %.4f, accuracy %.4f",
                  r->id, r->answered, sum.selected, r->ev_examples,
                  sum.fed_eval_loss, sum.fed_eval_accuracy);
    else
        roost_log(&c->cfg.log, ROOST_LOG_INFO,
                  "round %" PRId64 " (federated evaluation) failed: %u/%u "
                  "clients answered",
                  r->id, r->answered, sum.selected);
    return round_end(c, &sum);
}

/* The strategy's state for the commit record, in c->state_buf. */
static int
save_strategy_state(roost_coord *c, size_t *len, roost_errmsg *em)
{
    size_t need = 0;
    int rc = roost_strategy_state_size(c->strategy, &need);
    if (rc != ROOST_OK)
        return roost_fail(em, rc, "strategy state size");
    if (need > c->state_cap) {
        void *b = realloc(c->state_buf, need);
        if (b == NULL)
            return roost_fail(em, ROOST_ENOMEM,
                              "no memory for the strategy "
                              "state");
        c->state_buf = b;
        c->state_cap = need;
    }
    return roost_strategy_state_save(c->strategy, c->state_buf, c->state_cap,
                                     len, em);
}

/* Close the open round: aggregate when it reached min_clients, record it
 * either way, and move on. Returns a fatal error only when the store
 * fails. */
static int
round_close(roost_coord *c, roost_coord_time now)
{
    struct round_state *r = &c->round;
    if (r->evaluate)
        return eval_close(c, now);
    roost_coord_round_summary sum;
    memset(&sum, 0, sizeof(sum));
    sum.round_id = r->id;
    sum.selected = (uint32_t)r->n_parts;
    sum.accepted = r->accepted;
    sum.refused = r->refused;
    sum.examples = r->examples;
    sum.train_loss = r->loss_weight > 0 ? r->loss_mean : NOT_MEASURED;
    sum.eval_loss = sum.eval_accuracy = NOT_MEASURED;
    sum.fed_eval_loss = sum.fed_eval_accuracy = NOT_MEASURED;
    sum.seconds = (double)(now.mono_ms - r->started_mono_ms) / 1000.0;
    epsilon_stats(r, &sum.epsilon_max, &sum.epsilon_median);

    bool quorum = r->accepted >= round_minimum(c) && r->accepted > 0;
    float *new_params = NULL;
    roost_errmsg em;
    roost_errmsg_clear(&em);
    if (quorum) {
        new_params = malloc(c->n * sizeof(float));
        if (new_params == NULL)
            return roost_fail(&c->em, ROOST_ENOMEM,
                              "round %" PRId64 ": no memory for the new model",
                              r->id);
        memcpy(new_params, c->params, c->n * sizeof(float));
        int rc = roost_strategy_finish(c->strategy, new_params, &em);
        if (rc != ROOST_OK) {
            /* The aggregate is unusable (e.g. it overflowed): record the
             * round as failed rather than commit a broken model. */
            roost_log(&c->cfg.log, ROOST_LOG_ERROR,
                      "round %" PRId64 ": aggregation failed: %s", r->id,
                      roost_errmsg_text(&em));
            free(new_params);
            new_params = NULL;
            quorum = false;
        }
    }
    /* Central DP: the accountant's entry for the whole history so far.
     * The coordinator does not know the population it samples from, so no
     * amplification by sampling is claimed: every committed round counts
     * as one full Gaussian mechanism of multiplier z on the clipped sum
     * (q = 1), an upper bound. The sampler's distance from the ideal
     * Gaussian is charged as in roost_noise_charge. Training rounds are
     * counted, failed ones included (an upper bound); federated
     * evaluation rounds release no aggregate and are not. */
    int64_t train_no = c->train_rounds + 1;
    bool has_cdp = false;
    double cdp_z = NOT_MEASURED, cdp_clip = NOT_MEASURED;
    double cdp_eps = NOT_MEASURED, cdp_delta = NOT_MEASURED;
    if (quorum && c->cfg.strategy.central_dp) {
        roost_strategy_dp_info info;
        if (roost_strategy_dp_info_get(c->strategy, &info) == ROOST_OK &&
            info.enabled) {
            roost_dp_event ev = {1.0, info.noise_multiplier,
                                 (uint64_t)train_no};
            double eps = 0;
            if (c->cdp_mixed > 0) {
                /* The multiplier and clip of this round are real; an
                 * epsilon for the whole record is not known. */
                has_cdp = true;
                cdp_z = info.noise_multiplier;
                cdp_clip = info.clip_norm;
            } else if (roost_dp_epsilon(&ev, 1, c->cfg.dp_delta, &eps, NULL,
                                        &em) == ROOST_OK) {
                /* The samplers' terms over every draw of every applied
                 * round, as the strategy summed them (each round with
                 * the sampler it used), when those sums cover the whole
                 * record. Otherwise (a record resumed from a state saved
                 * before the sums were kept): every round charged with
                 * the current samplers, the update sampler's draws and,
                 * with adaptive clipping, the count release's one. */
                double n_mu = info.sampler_n_mu, n_beta = info.sampler_n_beta;
                if (!c->cdp_sums_exact) {
                    double rounds = (double)train_no;
                    n_mu = rounds *
                           ((double)info.draws_per_round * info.closeness_mu +
                            (double)info.count_draws_per_round *
                                info.count_closeness_mu);
                    n_beta = rounds * ((double)info.draws_per_round *
                                           info.closeness_beta +
                                       (double)info.count_draws_per_round *
                                           info.count_closeness_beta);
                }
                has_cdp = true;
                cdp_z = info.noise_multiplier;
                cdp_clip = info.clip_norm;
                cdp_eps = eps + 2.0 * n_mu;
                cdp_delta = exp(n_mu) * c->cfg.dp_delta +
                            exp(eps + 2.0 * n_mu) * n_beta;
            } else {
                roost_log(&c->cfg.log, ROOST_LOG_ERROR,
                          "round %" PRId64 ": central DP accounting: %s", r->id,
                          roost_errmsg_text(&em));
            }
        }
    }
    /* Held-out evaluation of this training round's model when due. */
    bool eval_due =
        c->cfg.eval_every <= 1 || train_no % (int64_t)c->cfg.eval_every == 0 ||
        (c->cfg.max_rounds != 0 && (uint64_t)train_no >= c->cfg.max_rounds);
    if (quorum && c->eval_ws != NULL && eval_due) {
        const roost_dataset *ds = c->cfg.eval_set;
        int erc = c->cfg.evaluate != NULL
                      ? c->cfg.evaluate(c->cfg.evaluate_arg, new_params,
                                        &sum.eval_loss, &sum.eval_accuracy)
                      : roost_model_evaluate(
                            c->eval_ws, new_params, roost_dataset_features(ds),
                            roost_dataset_labels(ds), roost_dataset_count(ds),
                            &sum.eval_loss, &sum.eval_accuracy);
        if (erc != ROOST_OK) {
            roost_log(&c->cfg.log, ROOST_LOG_ERROR,
                      "round %" PRId64 ": held-out evaluation failed: %s",
                      r->id, roost_strerror(erc));
            sum.eval_loss = sum.eval_accuracy = NOT_MEASURED;
        }
    }

    uint32_t dropped = 0;
    roost_store_participant *parts = record_participants(r, &dropped);
    roost_store_update *ups = calloc(r->n_updates + 1, sizeof(*ups));
    size_t state_len = 0;
    int src = quorum ? save_strategy_state(c, &state_len, &em) : ROOST_OK;
    if (parts == NULL || ups == NULL || src != ROOST_OK) {
        free(parts);
        free(ups);
        free(new_params);
        if (src != ROOST_OK)
            return roost_fail(&c->em, src, "round %" PRId64 ": %s", r->id,
                              roost_errmsg_text(&em));
        return roost_fail(&c->em, ROOST_ENOMEM,
                          "round %" PRId64 ": no memory for the record", r->id);
    }
    for (size_t i = 0; i < r->n_updates; i++)
        ups[i] = r->updates[i].u;
    sum.dropped = dropped;
    sum.committed = quorum;

    roost_store_commit rec;
    record_begin(c, &rec, "train", quorum, now);
    rec.round.train_loss = sum.train_loss;
    rec.round.train_accuracy = r->acc_weight > 0 ? r->acc_mean : NOT_MEASURED;
    rec.round.eval_loss = sum.eval_loss;
    rec.round.eval_accuracy = sum.eval_accuracy;
    rec.round.has_central_dp = has_cdp;
    rec.round.cdp_noise_multiplier = cdp_z;
    rec.round.cdp_clip_norm = cdp_clip;
    rec.round.cdp_epsilon = cdp_eps;
    rec.round.cdp_delta = cdp_delta;
    rec.participants = parts;
    rec.n_participants = r->n_parts;
    rec.updates = ups;
    rec.n_updates = r->n_updates;
    rec.params = quorum ? new_params : NULL;
    rec.n_params = quorum ? c->n : 0;
    /* The server optimiser's state goes with the model it produced, so a
     * restart resumes both (FedAvgM/FedAdam momentum, adaptive clip). */
    rec.strategy_state = quorum ? c->state_buf : NULL;
    rec.strategy_state_len = quorum ? state_len : 0;
    int rc = roost_store_commit_round(c->cfg.store, &rec, NULL, &em);
    free(parts);
    free(ups);
    if (rc != ROOST_OK) {
        free(new_params);
        return roost_fail(&c->em, rc, "round %" PRId64 ": commit failed: %s",
                          r->id, roost_errmsg_text(&em));
    }
    if (quorum) {
        memcpy(c->params, new_params, c->n * sizeof(float));
        roost_xfer_hash_floats(c->params, c->n, c->params_hash);
    }
    free(new_params);
    c->last_round = r->id;
    c->train_rounds++;
    update_eval_due(c, quorum);
    roost_log(&c->cfg.log, ROOST_LOG_INFO,
              "round %" PRId64 " %s: %u/%u updates, %u refused, %u dropped",
              r->id, quorum ? "committed" : "failed (no quorum)", r->accepted,
              sum.selected, r->refused, dropped);
    return round_end(c, &sum);
}

/* Whether s may be selected for the round about to open (or open): it
 * waits, and for a DP training round it has budget left by its own
 * account. A client that reports none would only decline. */
static bool
selectable(const roost_coord *c, const struct session *s, bool evaluate)
{
    if (s->state != S_WAITING)
        return false;
    return evaluate || !c->cfg.dp_enabled || s->epsilon_remaining > 0;
}

/* Give s slot i of the open round and send it the task. A session whose
 * task cannot be sent is dropped from the round at once. */
static void
assign(roost_coord *c, struct session *s, size_t i, roost_coord_time now)
{
    struct participant *p = &c->round.parts[i];
    memcpy(p->fingerprint, s->fingerprint, sizeof(p->fingerprint));
    p->session = s->id;
    p->task_id = ++c->next_task_id;
    p->status = ROOST_PART_SELECTED;
    s->part = (int)i;
    s->state = S_ASSIGNED;
    if (send_task(c, s, p->task_id, now) != ROOST_OK) {
        p->status = ROOST_PART_DROPPED;
        p->session = 0;
        s->part = -1;
        s->state = S_DONE;
        c->io.close(c->io.arg, s->id, "task could not be sent");
    }
}

/* Mark (or unmark) the sessions whose certificate already holds a place
 * in the open round through an earlier session: a participant that
 * reconnected waits under a new session (part < 0) but must not take a
 * second place. One session per certificate makes the lookup exact. */
static void
mark_certs_in_round(roost_coord *c, bool mark)
{
    const struct round_state *r = &c->round;
    for (size_t k = 0; k < r->n_parts; k++) {
        struct session *s = session_by_fingerprint(c, r->parts[k].fingerprint);
        if (s != NULL && s->part < 0)
            s->cert_in_round = mark;
    }
}

static bool
replacement_candidate(const roost_coord *c, const struct session *s)
{
    return s != NULL && s->part < 0 && !s->cert_in_round &&
           selectable(c, s, c->round.evaluate);
}

/* A selected client declined before training (budget, not now, cannot
 * run the model): give its place to a waiting client that was not
 * selected, so one refusal does not cost the round its quorum. Clients
 * already in the round (including earlier decliners, and participants
 * that reconnected under a new session) are never picked again; the
 * round's participant array has room for every client that was waiting
 * when it opened. The draw is over the eligible sessions only, so an
 * eligible client is found whenever one waits (redrawing past ineligible
 * picks could miss it). */
static int
replace_participant(roost_coord *c, roost_coord_time now)
{
    struct round_state *r = &c->round;
    if (r->n_parts >= r->cap_parts || r->owed == 0)
        return ROOST_OK;
    /* Past the deadline (the tick that closes the round has not run yet)
     * a replacement could only train for an update the round refuses, and
     * a DP client would spend budget on it. */
    if (now.mono_ms >= r->deadline_mono_ms)
        return ROOST_OK;
    mark_certs_in_round(c, true);
    size_t n_cand = 0;
    for (size_t i = 0; i < c->n_slots; i++)
        n_cand += replacement_candidate(c, c->slots[i]);
    struct session *chosen = NULL;
    int rc = ROOST_OK;
    if (n_cand > 0) {
        uint64_t pick = 0;
        rc = roost_rng_below(c->rng, n_cand, &pick);
        for (size_t i = 0; rc == ROOST_OK && i < c->n_slots && chosen == NULL;
             i++)
            if (replacement_candidate(c, c->slots[i]) && pick-- == 0)
                chosen = c->slots[i];
    }
    mark_certs_in_round(c, false);
    if (rc != ROOST_OK)
        return roost_fail(&c->em, rc, "selection: random source failed");
    if (chosen == NULL)
        return ROOST_OK;
    roost_log(&c->cfg.log, ROOST_LOG_INFO,
              "round %" PRId64 ": %s replaces a client that declined", r->id,
              chosen->fingerprint);
    r->owed--;
    assign(c, chosen, r->n_parts++, now);
    return ROOST_OK;
}

static int
round_open(roost_coord *c, roost_coord_time now)
{
    const roost_coord_config *cfg = &c->cfg;
    bool evaluate = c->eval_due;
    size_t n_wait = 0, n_broke = 0;
    for (size_t i = 0; i < c->n_slots; i++) {
        struct session *s = c->slots[i];
        if (s == NULL || s->state != S_WAITING)
            continue;
        if (selectable(c, s, evaluate))
            n_wait++;
        else
            n_broke++;
    }
    if (n_wait < cfg->min_available || n_wait == 0)
        return ROOST_OK;
    struct session **pool = malloc(n_wait * sizeof(*pool));
    if (pool == NULL)
        return roost_fail(&c->em, ROOST_ENOMEM, "no memory to open a round");
    size_t k = 0;
    for (size_t i = 0; i < c->n_slots; i++) {
        struct session *s = c->slots[i];
        if (s == NULL || s->state != S_WAITING)
            continue;
        if (selectable(c, s, evaluate))
            pool[k++] = s;
        else
            send_come_back(c, s,
                           cfg->retry_after_ms ? cfg->retry_after_ms : 60000,
                           "no privacy budget left by your own account");
    }
    struct round_state *r = &c->round;
    r->evaluate = evaluate;
    double want = ceil((double)round_quorum(c) * cfg->over_selection);
    size_t n_sel = want >= (double)n_wait ? n_wait : (size_t)want;
    /* Partial Fisher-Yates: the first n_sel entries become a uniform random
     * subset. */
    for (size_t i = 0; i < n_sel; i++) {
        uint64_t j;
        int rc = roost_rng_below(c->rng, n_wait - i, &j);
        if (rc != ROOST_OK) {
            free(pool);
            r->evaluate = false;
            return roost_fail(&c->em, rc, "selection: random source failed");
        }
        struct session *t = pool[i];
        pool[i] = pool[i + j];
        pool[i + j] = t;
    }
    /* Room for every waiting client: replacements for decliners come from
     * those not selected (replace_participant). */
    r->parts = calloc(n_wait, sizeof(*r->parts));
    if (r->parts == NULL) {
        free(pool);
        r->evaluate = false;
        return roost_fail(&c->em, ROOST_ENOMEM, "no memory to open a round");
    }
    r->cap_parts = n_wait;
    r->open = true;
    r->id = c->last_round + 1;
    r->started_wall_ms = now.wall_ms;
    r->started_mono_ms = now.mono_ms;
    r->deadline_mono_ms = now.mono_ms + (int64_t)cfg->round_timeout_ms;
    r->n_parts = n_sel;
    if (!evaluate)
        roost_strategy_begin_round(c->strategy);
    roost_store_note_open_round(cfg->store, r->id, now.wall_ms, (int64_t)n_sel,
                                NULL);
    roost_log(&c->cfg.log, ROOST_LOG_INFO,
              "round %" PRId64 " open%s: %zu selected of %zu waiting", r->id,
              evaluate ? " (federated evaluation)" : "", n_sel, n_wait);
    if (n_broke > 0)
        roost_log(&c->cfg.log, ROOST_LOG_INFO,
                  "round %" PRId64 ": %zu waiting clients report no privacy "
                  "budget left and were not selected",
                  r->id, n_broke);
    for (size_t i = 0; i < n_sel; i++)
        assign(c, pool[i], i, now);
    if (cfg->retry_after_ms > 0)
        for (size_t i = n_sel; i < n_wait; i++)
            send_come_back(c, pool[i], cfg->retry_after_ms,
                           "not selected for this round");
    free(pool);
    return ROOST_OK;
}

/* ------------------------------------------------------------ handlers */

static void
on_check_in(roost_coord *c, struct session *s, const Roost__V1__CheckIn *ci,
            roost_coord_time now)
{
    if (ci->protocol_version != ROOST_WIRE_PROTOCOL_VERSION) {
        char why[96];
        snprintf(why, sizeof(why), "protocol version %u is not supported (%u)",
                 ci->protocol_version, ROOST_WIRE_PROTOCOL_VERSION);
        send_error_and_close(c, s, ROOST_ENOTSUP, why);
        return;
    }
    if (s->state == S_ASSIGNED || s->state == S_RECEIVING) {
        send_error_and_close(c, s, ROOST_EPROTO,
                             "check-in while a task is outstanding");
        return;
    }
    s->has_model_hash = ci->model_hash.len == ROOST_XFER_HASH_BYTES;
    if (s->has_model_hash)
        memcpy(s->model_hash, ci->model_hash.data, ROOST_XFER_HASH_BYTES);
    s->epsilon_remaining = ci->epsilon_remaining;
    if (c->finished) {
        send_come_back(c, s, 3600 * 1000, "federation finished");
        return;
    }
    s->state = S_WAITING;
    /* A client that checks in while the open round still owes a
     * replacement for a decline may take that place. */
    if (c->round.open && c->round.owed > 0)
        (void)replace_participant(c, now);
}

static int
refuse_update(roost_coord *c, struct session *s, uint64_t round_id,
              uint64_t task_id, int code, const char *why, roost_coord_time now,
              bool record)
{
    if (record && s->part >= 0) {
        struct update_rec *rec = add_update_rec(c, s, now);
        if (rec == NULL)
            return roost_fail(&c->em, ROOST_ENOMEM, "no memory for a record");
        rec->u.accepted = false;
        rec->u.reason_code = code;
        snprintf(rec->reason, sizeof(rec->reason), "%s", why);
        rec->u.reason = rec->reason;
        c->round.parts[s->part].status = ROOST_PART_REFUSED;
        c->round.refused++;
    }
    roost_log(&c->cfg.log, ROOST_LOG_INFO, "update from %s refused: %s (%s)",
              s->fingerprint, roost_errname(code), why);
    send_ack(c, s, round_id, task_id, code, why);
    return ROOST_OK;
}

/* Whether the values of a DP report are in the ranges the DpReport
 * message of proto/roost.proto gives (every comparison written so that NaN
 * fails it); if not, why names the field and its value. A report that
 * fails is not recorded as the client's privacy spend: a NaN or negative
 * epsilon would otherwise be accepted with no usable report, or enter the
 * epsilon figures of `roost status` and `roost report`. */
static bool
dp_report_in_range(const Roost__V1__DpReport *dp, char *why, size_t cap)
{
    const struct {
        const char *field;
        double value;
        bool ok;
        const char *range;
    } checks[] = {
        {"noise multiplier", dp->noise_multiplier,
         dp->noise_multiplier > 0 && isfinite(dp->noise_multiplier),
         "a finite value > 0"},
        {"epsilon spent", dp->epsilon_spent,
         dp->epsilon_spent >= 0 && isfinite(dp->epsilon_spent),
         "a finite value >= 0"},
        {"delta", dp->delta, dp->delta > 0 && dp->delta < 1, "in (0, 1)"},
        {"sampling rate", dp->sampling_rate,
         dp->sampling_rate > 0 && dp->sampling_rate <= 1, "in (0, 1]"},
        {"clip norm", dp->clip_norm,
         dp->clip_norm > 0 && isfinite(dp->clip_norm), "a finite value > 0"},
    };
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++)
        if (!checks[i].ok) {
            snprintf(why, cap, "update's DP report: %s %g is not %s",
                     checks[i].field, checks[i].value, checks[i].range);
            return false;
        }
    return true;
}

static int
on_update(roost_coord *c, struct session *s, const Roost__V1__Update *u,
          roost_coord_time now)
{
    struct round_state *r = &c->round;
    if (s->state == S_RECEIVING) {
        session_drop_upload(s);
        s->state = S_DONE;
        return refuse_update(c, s, u->round_id, u->task_id, ROOST_EPROTO,
                             "update header while chunks are outstanding", now,
                             true);
    }
    bool current = r->open && !r->evaluate && s->part >= 0 &&
                   s->state == S_ASSIGNED && u->round_id == (uint64_t)r->id &&
                   u->task_id == r->parts[s->part].task_id;
    if (!current) {
        /* Answering a task twice, or for a round that is over or was
         * never this client's. The chunks that follow are ignored. */
        int code =
            (s->state == S_DONE && r->open && u->round_id == (uint64_t)r->id)
                ? ROOST_EDUPLICATE
                : ROOST_ESTALE;
        return refuse_update(c, s, u->round_id, u->task_id, code,
                             code == ROOST_EDUPLICATE
                                 ? "this task was already answered"
                                 : "no such task in the open round",
                             now, false);
    }
    s->reported_examples = u->num_examples;
    s->train_loss = u->metrics ? u->metrics->loss : NOT_MEASURED;
    s->train_accuracy = u->metrics && u->metrics->accuracy_measured
                            ? u->metrics->accuracy
                            : NOT_MEASURED;
    /* Training figures are claims the round averages (mean_fold needs
     * them finite and >= 0): a malformed one is refused, like a malformed
     * evaluation answer, and not recorded. */
    char metrics_why[96] = "";
    if (u->metrics != NULL && !(s->train_loss >= 0 && isfinite(s->train_loss)))
        snprintf(metrics_why, sizeof(metrics_why),
                 "update's training loss %g is not a finite value >= 0",
                 s->train_loss);
    else if (u->metrics != NULL && u->metrics->accuracy_measured &&
             !(s->train_accuracy >= 0 && s->train_accuracy <= 1))
        snprintf(metrics_why, sizeof(metrics_why),
                 "update's training accuracy %g is not in [0, 1]",
                 s->train_accuracy);
    if (metrics_why[0] != '\0')
        s->train_loss = s->train_accuracy = NOT_MEASURED;
    /* With DP on, the report must be present, in range, and at least as
     * noisy as configured; only a report in range is recorded. */
    char dp_why[128] = "";
    bool dp_in_range = u->dp != NULL && c->cfg.dp_enabled &&
                       dp_report_in_range(u->dp, dp_why, sizeof(dp_why));
    if (c->cfg.dp_enabled && dp_why[0] == '\0' &&
        (u->dp == NULL ||
         !(u->dp->noise_multiplier >= c->cfg.dp_noise_multiplier)))
        snprintf(dp_why, sizeof(dp_why),
                 "update does not report the required DP noise");
    if (dp_in_range) {
        s->dp_epsilon = u->dp->epsilon_spent;
        s->dp_delta = u->dp->delta;
        s->dp_sigma = u->dp->noise_multiplier;
        s->dp_clip = u->dp->clip_norm;
        s->dp_rate = u->dp->sampling_rate;
        s->dp_steps = (int64_t)u->dp->steps;
    } else {
        s->dp_epsilon = s->dp_delta = s->dp_sigma = s->dp_clip = NOT_MEASURED;
        s->dp_rate = NOT_MEASURED;
        s->dp_steps = -1;
    }
    if (u->num_params != c->n) {
        char why[96];
        snprintf(why, sizeof(why),
                 "update has %" PRIu64 " parameters, the model %zu",
                 u->num_params, c->n);
        s->state = S_DONE;
        return refuse_update(c, s, u->round_id, u->task_id, ROOST_ESHAPE, why,
                             now, true);
    }
    if (u->num_examples > ROOST_COORD_MAX_EXAMPLES) {
        /* Refused at the header, whatever max_examples says, so that no
         * client can overflow the round's example sum (coord.h). */
        char why[128];
        snprintf(why, sizeof(why),
                 "update reports %" PRIu64 " examples, above the ceiling of "
                 "%" PRIu64,
                 u->num_examples, ROOST_COORD_MAX_EXAMPLES);
        s->state = S_DONE;
        return refuse_update(c, s, u->round_id, u->task_id, ROOST_ETOOBIG, why,
                             now, true);
    }
    if (dp_why[0] != '\0') {
        s->state = S_DONE;
        return refuse_update(c, s, u->round_id, u->task_id, ROOST_EPROTO,
                             dp_why, now, true);
    }
    if (metrics_why[0] != '\0') {
        s->state = S_DONE;
        return refuse_update(c, s, u->round_id, u->task_id, ROOST_EINVAL,
                             metrics_why, now, true);
    }
    roost_xfer_expect ex;
    memset(&ex, 0, sizeof(ex));
    ex.round_id = u->round_id;
    ex.task_id = u->task_id;
    ex.num_params = c->n;
    ex.chunk_count = u->chunk_count;
    if (u->delta_sha256.len != ROOST_XFER_HASH_BYTES) {
        s->state = S_DONE;
        return refuse_update(c, s, u->round_id, u->task_id, ROOST_EPROTO,
                             "update without a 32-byte delta hash", now, true);
    }
    memcpy(ex.sha256, u->delta_sha256.data, ROOST_XFER_HASH_BYTES);
    s->delta = malloc(c->n * sizeof(float));
    if (s->delta == NULL)
        return roost_fail(&c->em, ROOST_ENOMEM, "no memory for an update");
    roost_errmsg em;
    int rc = roost_xfer_receiver_create(&s->rx, NULL, &ex, s->delta, c->n, &em);
    if (rc != ROOST_OK) {
        session_drop_upload(s);
        s->state = S_DONE;
        return refuse_update(c, s, u->round_id, u->task_id, rc,
                             roost_errmsg_text(&em), now, true);
    }
    s->state = S_RECEIVING;
    return ROOST_OK;
}

/* The last chunk of an update arrived and hashed correctly. */
static int
fold_update(roost_coord *c, struct session *s, roost_coord_time now)
{
    struct round_state *r = &c->round;
    struct participant *p = &r->parts[s->part];
    roost_validate_config vc = {
        .n = c->n,
        .max_norm = c->cfg.max_update_norm,
        .norm_policy = c->cfg.norm_policy,
        .max_examples = c->cfg.max_examples,
    };
    roost_validate_result vr;
    roost_errmsg em;
    roost_errmsg_clear(&em);
    int rc = roost_validate_update(&vc, s->delta, c->n, s->reported_examples,
                                   &vr, &em);
    /* DP clients do not report their example count (it is outside the
     * guarantee), so their updates are weighted equally. */
    double weight = c->cfg.dp_enabled ? 1.0 : (double)vr.examples;
    if (rc == ROOST_OK)
        rc = roost_strategy_add(c->strategy, s->delta, weight, &em);
    session_drop_upload(s);
    s->state = S_DONE;
    if (rc != ROOST_OK) {
        int e = refuse_update(c, s, (uint64_t)r->id, p->task_id, rc,
                              roost_errmsg_text(&em), now, true);
        if (e == ROOST_OK && r->n_updates > 0 && isfinite(vr.norm))
            r->updates[r->n_updates - 1].u.l2_norm = vr.norm;
        return e;
    }
    struct update_rec *rec = add_update_rec(c, s, now);
    if (rec == NULL)
        return roost_fail(&c->em, ROOST_ENOMEM, "no memory for a record");
    rec->u.accepted = true;
    rec->u.reason_code = ROOST_OK;
    rec->u.bytes = (int64_t)(c->n * sizeof(float));
    rec->u.l2_norm = vr.norm;
    rec->u.examples_capped = (int64_t)vr.examples;
    p->status = ROOST_PART_UPDATED;
    r->accepted++;
    r->examples += vr.examples;
    if (isfinite(s->train_loss) && vr.examples > 0) {
        mean_fold(&r->loss_mean, &r->loss_weight, (double)vr.examples,
                  s->train_loss);
    }
    if (isfinite(s->train_accuracy) && vr.examples > 0) {
        mean_fold(&r->acc_mean, &r->acc_weight, (double)vr.examples,
                  s->train_accuracy);
    }
    send_ack(c, s, (uint64_t)r->id, p->task_id, ROOST_OK, "");
    if (r->accepted >= round_quorum(c))
        return round_close(c, now);
    return ROOST_OK;
}

static int
on_chunk(roost_coord *c, struct session *s, const Roost__V1__ParamChunk *ch,
         roost_coord_time now)
{
    if (s->state != S_RECEIVING)
        return ROOST_OK; /* chunks of a refused update: ignored */
    bool complete = false;
    roost_errmsg em;
    roost_errmsg_clear(&em);
    int rc = roost_xfer_receiver_add(s->rx, ch, &complete, &em);
    if (rc != ROOST_OK) {
        uint64_t task_id = c->round.parts[s->part].task_id;
        session_drop_upload(s);
        s->state = S_DONE;
        return refuse_update(c, s, (uint64_t)c->round.id, task_id, rc,
                             roost_errmsg_text(&em), now, true);
    }
    return complete ? fold_update(c, s, now) : ROOST_OK;
}

static int
on_decline(roost_coord *c, struct session *s, const Roost__V1__Decline *d,
           roost_coord_time now)
{
    struct round_state *r = &c->round;
    if (!r->open || s->part < 0 || d->round_id != (uint64_t)r->id ||
        d->task_id != r->parts[s->part].task_id || s->state != S_ASSIGNED)
        return ROOST_OK; /* a late or foreign decline changes nothing */
    r->parts[s->part].status = ROOST_PART_DROPPED;
    roost_log(&c->cfg.log, ROOST_LOG_INFO, "%s declined round %" PRId64 ": %s",
              s->fingerprint, r->id, d->message ? d->message : "");
    s->state = S_DONE;
    r->owed++;
    return replace_participant(c, now);
}

/* An answer to a federated evaluation task. Checked like an update's
 * header (round, task, once), then its figures: at least one example
 * (capped like training counts), a finite non-negative loss and an
 * accuracy in [0, 1]. */
static int
on_eval_result(roost_coord *c, struct session *s,
               const Roost__V1__EvaluationResult *e, roost_coord_time now)
{
    struct round_state *r = &c->round;
    bool current = r->open && r->evaluate && s->part >= 0 &&
                   s->state == S_ASSIGNED && e->round_id == (uint64_t)r->id &&
                   e->task_id == r->parts[s->part].task_id;
    if (!current) {
        bool dup = s->state == S_DONE && r->open && r->evaluate &&
                   e->round_id == (uint64_t)r->id;
        send_ack(c, s, e->round_id, e->task_id,
                 dup ? ROOST_EDUPLICATE : ROOST_ESTALE,
                 dup ? "this task was already answered"
                     : "no such evaluation task in the open round");
        return ROOST_OK;
    }
    struct participant *p = &r->parts[s->part];
    s->state = S_DONE;
    const char *why = NULL;
    if (e->num_examples == 0)
        why = "evaluation over zero examples";
    else if (e->num_examples > ROOST_COORD_MAX_EXAMPLES)
        why = "evaluation over more than 2^40 examples";
    else if (!isfinite(e->loss) || e->loss < 0)
        why = "evaluation loss is not a finite value >= 0";
    else if (!(e->accuracy >= 0 && e->accuracy <= 1))
        why = "evaluation accuracy is not in [0, 1]";
    if (why != NULL) {
        p->status = ROOST_PART_REFUSED;
        r->refused++;
        roost_log(&c->cfg.log, ROOST_LOG_INFO, "evaluation from %s refused: %s",
                  s->fingerprint, why);
        send_ack(c, s, e->round_id, e->task_id, ROOST_EINVAL, why);
        return ROOST_OK;
    }
    uint64_t n = e->num_examples;
    if (c->cfg.max_examples != 0 && n > c->cfg.max_examples)
        n = c->cfg.max_examples;
    p->status = ROOST_PART_UPDATED;
    r->answered++;
    r->ev_examples += n;
    mean_fold(&r->ev_loss_mean, &r->ev_loss_weight, (double)n, e->loss);
    mean_fold(&r->ev_acc_mean, &r->ev_acc_weight, (double)n, e->accuracy);
    send_ack(c, s, e->round_id, e->task_id, ROOST_OK, "");
    if (r->answered >= round_quorum(c))
        return round_close(c, now);
    return ROOST_OK;
}

/* -------------------------------------------------------------- public */

void
roost_coord_config_init(roost_coord_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->dp_enabled = true; /* clients decline tasks without DP by default */
    cfg->model_spec = "mlp";
    cfg->input_channels = 1;
    cfg->input_height = 28;
    cfg->input_width = 28;
    cfg->init_seed = 1;
    cfg->clients_per_round = 10;
    cfg->min_clients = 10;
    cfg->over_selection = 1.0;
    cfg->min_available = 10;
    cfg->round_timeout_ms = 600000;
    cfg->local_epochs = 1;
    cfg->batch_size = 32;
    cfg->learning_rate = 0.05;
    cfg->dp_noise_multiplier = 1.0;
    cfg->dp_clip_norm = 1.0;
    cfg->dp_delta = 1e-5;
    cfg->dp_expected_batch = 32;
    cfg->norm_policy = ROOST_NORM_REJECT;
    roost_strategy_config_init(&cfg->strategy, ROOST_STRATEGY_FEDAVG);
    cfg->log.max_level = ROOST_LOG_INFO;
}

static int
check_config(const roost_coord_config *cfg, roost_errmsg *em)
{
    if (cfg->store == NULL)
        return roost_fail(em, ROOST_ECONFIG, "coordinator: no store");
    if (cfg->clients_per_round == 0 ||
        cfg->clients_per_round > ROOST_COORD_MAX_QUORUM)
        return roost_fail(em, ROOST_ECONFIG,
                          "clients_per_round must be in [1, %" PRIu32 "]",
                          ROOST_COORD_MAX_QUORUM);
    if (cfg->fed_eval_clients > ROOST_COORD_MAX_QUORUM)
        return roost_fail(em, ROOST_ECONFIG,
                          "fed_eval_clients must be at most %" PRIu32,
                          ROOST_COORD_MAX_QUORUM);
    if (cfg->min_clients == 0 || cfg->min_clients > cfg->clients_per_round)
        return roost_fail(em, ROOST_ECONFIG,
                          "min_clients must be in [1, clients_per_round]");
    if (!(cfg->over_selection >= 1.0 && cfg->over_selection <= 10.0))
        return roost_fail(em, ROOST_ECONFIG,
                          "over_selection must be in [1, 10]");
    if (cfg->round_timeout_ms == 0)
        return roost_fail(em, ROOST_ECONFIG, "round_timeout_ms must be > 0");
    if (cfg->local_epochs == 0 || cfg->batch_size == 0)
        return roost_fail(em, ROOST_ECONFIG,
                          "local_epochs and batch_size must be >= 1");
    if (!(cfg->learning_rate > 0) || !isfinite(cfg->learning_rate))
        return roost_fail(em, ROOST_ECONFIG, "learning_rate must be > 0");
    if (cfg->dp_enabled &&
        (!(cfg->dp_noise_multiplier > 0) || !(cfg->dp_clip_norm > 0) ||
         !(cfg->dp_delta > 0 && cfg->dp_delta < 1)))
        return roost_fail(em, ROOST_ECONFIG,
                          "DP needs noise_multiplier > 0, clip_norm > 0 and "
                          "delta in (0, 1)");
    return roost_strategy_config_check(&cfg->strategy, em);
}

/* Whether every value a commit writes fits in one SQLite value: the
 * checkpoint (4 bytes per parameter) and the strategy state (8 or 16 bytes
 * per parameter for server momentum and the adaptive optimisers). A model
 * for which either does not fit could never commit a round, so it is
 * refused here, before anything is recorded, rather than at the first
 * commit. */
static int
check_value_sizes(const roost_coord *c, roost_errmsg *em)
{
    size_t limit = roost_store_max_value_bytes(c->cfg.store);
    size_t state = 0;
    int rc = roost_strategy_state_size(c->strategy, &state);
    if (rc != ROOST_OK)
        return roost_fail(em, rc, "strategy state size");
    if (c->n > limit / 4)
        return roost_fail(em, ROOST_ECONFIG,
                          "a model of %zu parameters needs a checkpoint above "
                          "the store's value limit of %zu bytes (SQLite's "
                          "SQLITE_LIMIT_LENGTH less room for the row), so no "
                          "round could be committed; use a smaller model",
                          c->n, limit);
    if (state > limit)
        return roost_fail(em, ROOST_ECONFIG,
                          "strategy %s keeps %zu bytes of state for a model of "
                          "%zu parameters, above the store's value limit of "
                          "%zu bytes (SQLite's SQLITE_LIMIT_LENGTH less room "
                          "for the row), so no round could be committed; use "
                          "a smaller model or a strategy without "
                          "per-parameter state (fedavg)",
                          roost_strategy_kind_name(c->cfg.strategy.kind), state,
                          c->n, limit);
    return ROOST_OK;
}

/* Whether the robust strategies can buffer a round's updates. They keep
 * every update of a round within max_buffered_updates and
 * max_buffered_bytes and refuse the rest (ROOST_ETOOBIG). If the fewest
 * updates that commit a training round (min_clients) do not fit, every
 * round refuses valid updates past the limit and fails at its deadline:
 * no round could ever commit, so the configuration is refused here, like
 * a model whose checkpoint cannot be stored. A quorum that does not fit
 * (min_clients does) only makes each round wait for its deadline, which
 * is logged. */
static int
check_robust_buffer(const roost_coord *c, roost_errmsg *em)
{
    const roost_strategy_config *sc = &c->cfg.strategy;
    if (!roost_strategy_kind_is_robust(sc->kind))
        return ROOST_OK;
    const char *name = roost_strategy_kind_name(sc->kind);
    size_t need = c->cfg.min_clients;
    if (need > sc->max_buffered_updates)
        return roost_fail(em, ROOST_ECONFIG,
                          "strategy %s buffers at most %zu updates per round "
                          "(max_buffered_updates), fewer than min_clients %zu: "
                          "no round could commit; raise max_buffered_updates "
                          "or lower min_clients",
                          name, sc->max_buffered_updates, need);
    size_t bytes = 0;
    int rc = roost_strategy_memory_bound(sc, c->n, need, &bytes, em);
    if (rc != ROOST_OK)
        return rc;
    if (bytes > sc->max_buffered_bytes)
        return roost_fail(em, ROOST_ECONFIG,
                          "strategy %s needs %zu bytes to buffer min_clients "
                          "%zu updates of %zu parameters, above "
                          "max_buffered_bytes %zu: no round could commit; "
                          "raise max_buffered_bytes or lower min_clients",
                          name, bytes, need, c->n, sc->max_buffered_bytes);
    size_t quorum = c->cfg.clients_per_round;
    if (quorum > need && (quorum > sc->max_buffered_updates ||
                          roost_strategy_memory_bound(sc, c->n, quorum, &bytes,
                                                      NULL) != ROOST_OK ||
                          bytes > sc->max_buffered_bytes))
        roost_log(&c->cfg.log, ROOST_LOG_WARN,
                  "strategy %s cannot buffer clients_per_round %zu updates "
                  "(max_buffered_updates %zu, max_buffered_bytes %zu): "
                  "updates past the limit are refused and rounds close at "
                  "their deadline with at least min_clients %zu",
                  name, quorum, sc->max_buffered_updates,
                  sc->max_buffered_bytes, need);
    return ROOST_OK;
}

/* Find the run this configuration continues, or start one. */
static int
open_run(roost_coord *c, roost_errmsg *em)
{
    roost_store_run_info *info = NULL;
    int rc = roost_store_get_run(c->cfg.store, 0, &info, NULL);
    if (rc == ROOST_OK) {
        bool same = strcmp(info->model_spec, roost_model_spec(c->model)) == 0 &&
                    info->n_params == c->n;
        int64_t id = info->run_id;
        /* The initial model is a function of the seed recorded with the
         * run (config_json, written below by this file), so that a restart
         * before the first committed model regenerates the model the run
         * began from, whatever seed its configuration now names. */
        const char *seed_key = "\"init_seed\":";
        const char *at = info->config_json != NULL
                             ? strstr(info->config_json, seed_key)
                             : NULL;
        if (at != NULL) {
            char *end = NULL;
            unsigned long long seed = strtoull(at + strlen(seed_key), &end, 10);
            if (end != at + strlen(seed_key) && seed != c->cfg.init_seed) {
                roost_log(&c->cfg.log, ROOST_LOG_WARN,
                          "init_seed %" PRIu64 " differs from the run's %llu; "
                          "the run's seed stays in force",
                          c->cfg.init_seed, seed);
                c->init_seed = (uint64_t)seed;
            }
        }
        roost_store_run_info_free(info);
        if (!same)
            return roost_fail(em, ROOST_ECONFIG,
                              "the store holds a run of another model; use a "
                              "new database file");
        c->run_id = id;
        return ROOST_OK;
    }
    if (rc != ROOST_ENOENT)
        return roost_fail(em, rc, "cannot read the run from the store");
    char config_json[512], dp_json[256];
    snprintf(config_json, sizeof(config_json),
             "{\"clients_per_round\":%u,\"min_clients\":%u,"
             "\"over_selection\":%g,\"local_epochs\":%u,\"batch_size\":%u,"
             "\"learning_rate\":%g,\"momentum\":%g,\"weight_decay\":%g,"
             "\"init_seed\":%" PRIu64 ",\"max_update_norm\":%g,"
             "\"max_examples\":%" PRIu64 "}",
             c->cfg.clients_per_round, c->cfg.min_clients,
             c->cfg.over_selection, c->cfg.local_epochs, c->cfg.batch_size,
             c->cfg.learning_rate, c->cfg.momentum, c->cfg.weight_decay,
             c->cfg.init_seed, c->cfg.max_update_norm, c->cfg.max_examples);
    if (c->cfg.dp_enabled)
        snprintf(dp_json, sizeof(dp_json),
                 "{\"noise_multiplier\":%g,\"clip_norm\":%g,\"delta\":%g,"
                 "\"sampling_rate\":%g,\"expected_batch\":%u}",
                 c->cfg.dp_noise_multiplier, c->cfg.dp_clip_norm,
                 c->cfg.dp_delta, c->cfg.dp_sampling_rate,
                 c->cfg.dp_expected_batch);
    roost_store_run run = {
        .name = c->cfg.run_name,
        .model_spec = roost_model_spec(c->model),
        .n_params = c->n,
        .strategy = roost_strategy_kind_name(c->cfg.strategy.kind),
        .config_json = config_json,
        .dp_json = c->cfg.dp_enabled ? dp_json : NULL,
    };
    return roost_store_add_run(c->cfg.store, &run, &c->run_id, em);
}

/* After loading the model: how many training rounds were run, whether the
 * last one's federated evaluation is still due, and the strategy state
 * saved with the model resumed from. A state saved with a different
 * model (or none, for a store written before states were kept) restarts
 * the strategy from zero, with a warning: for FedAvg that changes
 * nothing, for server momentum and adaptive optimisers it loses their
 * accumulated state. */
/* Count the committed training rounds of the record that ran without
 * central DP, with another noise multiplier than this run's, or (without
 * adaptive clipping, where the clip is fixed) another clip, into
 * c->cdp_mixed, and say once what that means. The clip matters because
 * the noise sampler, and with it the (mu, beta) charged for every round's
 * draws, is built for noise multiplier x clip. */
static int
check_cdp_history(roost_coord *c, roost_errmsg *em)
{
    enum { PAGE = 128 };
    roost_store_round_info *page = malloc(PAGE * sizeof(*page));
    if (page == NULL)
        return roost_fail(em, ROOST_ENOMEM, "coordinator: out of memory");
    double z = c->cfg.strategy.dp_noise_multiplier;
    double clip = c->cfg.strategy.dp_clip_norm;
    bool fixed_clip = !c->cfg.strategy.dp_adaptive_clip;
    int64_t next = 1;
    int rc = ROOST_OK;
    for (;;) {
        size_t n = 0;
        rc = roost_store_list_rounds(c->cfg.store, next, page, PAGE, &n, em);
        if (rc != ROOST_OK || n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            const roost_store_round_info *r = &page[i];
            if (strcmp(r->kind, "train") == 0 &&
                r->state == ROOST_ROUND_COMMITTED &&
                (!r->has_central_dp || r->cdp_noise_multiplier != z ||
                 (fixed_clip && r->cdp_clip_norm != clip)))
                c->cdp_mixed++;
        }
        /* The file may have been edited: the largest id ends the scan
         * (id + 1 would overflow and start it again from the first). */
        if (page[n - 1].round_id == INT64_MAX)
            break;
        next = page[n - 1].round_id + 1;
    }
    free(page);
    if (rc == ROOST_OK && c->cdp_mixed > 0)
        roost_log(&c->cfg.log, ROOST_LOG_WARN,
                  "central DP: %" PRId64 " committed training round%s of the "
                  "record ran without central DP or with other settings than "
                  "noise multiplier %g, clip %g; no epsilon computed from "
                  "the current settings covers the whole record, so the "
                  "rounds of this run record their multiplier and clip but "
                  "no central epsilon",
                  c->cdp_mixed, c->cdp_mixed == 1 ? "" : "s", z, clip);
    return rc;
}

static int
resume_progress(roost_coord *c, const roost_store_head *head, roost_errmsg *em)
{
    int rc =
        roost_store_count_rounds(c->cfg.store, "train", &c->train_rounds, em);
    if (rc != ROOST_OK)
        return rc;
    c->cdp_sums_exact = c->train_rounds == 0;
    if (c->cfg.strategy.central_dp && c->train_rounds > 0 &&
        (rc = check_cdp_history(c, em)) != ROOST_OK)
        return rc;
    if (head->round_id > 0 && c->cfg.fed_eval_every > 0) {
        roost_store_round_info last;
        size_t n = 0;
        rc = roost_store_list_rounds(c->cfg.store, head->round_id, &last, 1, &n,
                                     em);
        if (rc != ROOST_OK)
            return rc;
        if (n == 1 && strcmp(last.kind, "train") == 0)
            update_eval_due(c, last.state == ROOST_ROUND_COMMITTED);
    }
    update_finished(c);
    if (head->checkpoint_round <= 0)
        return ROOST_OK;
    int64_t state_round = 0;
    void *buf = NULL;
    size_t len = 0;
    roost_errmsg lem;
    roost_errmsg_clear(&lem);
    rc = roost_store_load_strategy_state(c->cfg.store, &state_round, &buf, &len,
                                         &lem);
    if (rc == ROOST_OK && state_round != head->checkpoint_round)
        rc = roost_fail(&lem, ROOST_ESTATE,
                        "the newest strategy state is of round %" PRId64
                        ", the model of round %" PRId64,
                        state_round, head->checkpoint_round);
    if (rc == ROOST_OK)
        rc = roost_strategy_state_load(c->strategy, buf, len, &lem);
    free(buf);
    roost_strategy_dp_info di;
    if (rc == ROOST_OK &&
        roost_strategy_dp_info_get(c->strategy, &di) == ROOST_OK &&
        di.sampler_sums_loaded)
        c->cdp_sums_exact = true;
    if (rc == ROOST_EHASH)
        return roost_fail(em, rc, "%s", roost_errmsg_text(&lem));
    if (rc != ROOST_OK)
        roost_log(&c->cfg.log, ROOST_LOG_WARN,
                  "strategy state not resumed (%s); the %s state restarts "
                  "from zero",
                  roost_errmsg_text(&lem),
                  roost_strategy_kind_name(c->cfg.strategy.kind));
    return ROOST_OK;
}

int
roost_coord_create(roost_coord **out, const roost_coord_config *cfg,
                   const roost_coord_io *io, roost_errmsg *em)
{
    if (out == NULL || cfg == NULL || io == NULL || io->send == NULL ||
        io->close == NULL)
        return roost_fail(em, ROOST_EINVAL, "coordinator: NULL argument");
    *out = NULL;
    int rc = check_config(cfg, em);
    if (rc != ROOST_OK)
        return rc;
    roost_coord *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return roost_fail(em, ROOST_ENOMEM, "coordinator: out of memory");
    c->cfg = *cfg;
    c->io = *io;
    c->init_seed = cfg->init_seed;
    c->n_slots = 64;
    c->slots = calloc(c->n_slots, sizeof(*c->slots));
    c->fp_buckets = calloc(c->n_slots, sizeof(*c->fp_buckets));
    if (c->slots == NULL || c->fp_buckets == NULL) {
        rc = roost_fail(em, ROOST_ENOMEM, "coordinator: out of memory");
        goto fail;
    }
    rc = roost_model_create(&c->model, NULL, cfg->model_spec,
                            cfg->input_channels, cfg->input_height,
                            cfg->input_width, em);
    if (rc != ROOST_OK)
        goto fail;
    c->n = roost_model_param_count(c->model);
    c->params = malloc(c->n * sizeof(float));
    if (c->params == NULL) {
        rc = roost_fail(em, ROOST_ENOMEM, "coordinator: no memory for model");
        goto fail;
    }
    if (cfg->eval_set != NULL) {
        if (roost_dataset_dim(cfg->eval_set) !=
            roost_model_input_dim(c->model)) {
            rc = roost_fail(em, ROOST_ECONFIG,
                            "evaluation set has %zu features per example, "
                            "the model takes %zu",
                            roost_dataset_dim(cfg->eval_set),
                            roost_model_input_dim(c->model));
            goto fail;
        }
        rc = roost_workspace_create(&c->eval_ws, c->model, 256, em);
        if (rc != ROOST_OK)
            goto fail;
    }
    rc = cfg->selection_seed != 0 ? roost_rng_create_insecure_deterministic(
                                        &c->rng, NULL, cfg->selection_seed, 7)
                                  : roost_rng_create(&c->rng, NULL);
    if (rc != ROOST_OK) {
        roost_fail(em, rc, "coordinator: random source unavailable");
        goto fail;
    }
    /* Task ids start from a random point on every start, from the system's
     * generator even when selection is seeded: counting from 1 again, a
     * rerun of a round a crash abandoned would hand the same ids to the
     * same clients (the seeded selection repeats itself), and an update
     * made for the abandoned attempt would then pass as current. 2^56
     * starting points; the count cannot wrap. */
    {
        roost_rng *ids = NULL;
        rc = roost_rng_create(&ids, NULL);
        if (rc == ROOST_OK)
            rc = roost_rng_u64(ids, &c->next_task_id);
        roost_rng_destroy(ids);
        if (rc != ROOST_OK) {
            roost_fail(em, rc, "coordinator: random source unavailable");
            goto fail;
        }
        c->next_task_id >>= 8;
    }
    rc = roost_strategy_create(&c->strategy, NULL, &cfg->strategy, c->n, em);
    if (rc != ROOST_OK)
        goto fail;
    rc = check_value_sizes(c, em);
    if (rc != ROOST_OK)
        goto fail;
    rc = check_robust_buffer(c, em);
    if (rc != ROOST_OK)
        goto fail;
    rc = open_run(c, em);
    if (rc != ROOST_OK)
        goto fail;

    roost_store_head head;
    rc = roost_store_last_committed_round(cfg->store, &head, em);
    if (rc != ROOST_OK)
        goto fail;
    if (head.round_id == INT64_MAX) {
        /* Only an edited file gets here; no round could follow it. */
        rc = roost_fail(em, ROOST_ESTORE,
                        "the store's last round id is %" PRId64
                        ", the largest possible: no round can follow it "
                        "(run roost audit on the file)",
                        head.round_id);
        goto fail;
    }
    c->last_round = head.round_id;
    if (head.checkpoint_round > 0) {
        rc = roost_store_load_checkpoint(cfg->store, head.checkpoint_round,
                                         c->params, c->n, em);
        if (rc != ROOST_OK)
            goto fail;
    } else {
        /* No model committed yet: the initial model is a pure function of
         * the seed recorded with the run, so it is regenerated rather than
         * stored. */
        roost_rng *init = NULL;
        rc = roost_rng_create_insecure_deterministic(&init, NULL, c->init_seed,
                                                     0);
        if (rc == ROOST_OK)
            rc = roost_model_init_params(c->model, c->params, init);
        roost_rng_destroy(init);
        if (rc != ROOST_OK) {
            roost_fail(em, rc, "coordinator: cannot initialise the model");
            goto fail;
        }
    }
    roost_xfer_hash_floats(c->params, c->n, c->params_hash);
    rc = resume_progress(c, &head, em);
    if (rc != ROOST_OK)
        goto fail;
    if (c->last_round > 0)
        roost_log(&c->cfg.log, ROOST_LOG_INFO, "resuming after round %" PRId64,
                  c->last_round);
    *out = c;
    return ROOST_OK;
fail:
    roost_coord_destroy(c);
    return rc;
}

void
roost_coord_destroy(roost_coord *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_slots && c->slots != NULL; i++) {
        struct session *s = c->slots[i];
        if (s == NULL)
            continue;
        session_drop_upload(s);
        free(s);
    }
    free(c->slots);
    free(c->fp_buckets);
    round_reset(c);
    free(c->round.updates);
    roost_strategy_destroy(c->strategy);
    roost_rng_destroy(c->rng);
    roost_workspace_destroy(c->eval_ws);
    roost_model_destroy(c->model);
    free(c->params);
    free(c->state_buf);
    free(c);
}

int
roost_coord_session_opened(roost_coord *c, uint64_t session,
                           const char *fingerprint, const char *subject,
                           roost_coord_time now)
{
    if (session == 0 || fingerprint == NULL || fingerprint[0] == '\0' ||
        strlen(fingerprint) >= FP_CAP)
        return ROOST_EINVAL;
    if (session_find(c, session) != NULL)
        return ROOST_EDUPLICATE;
    if (2 * (c->n_sessions + 1) > c->n_slots && table_grow(c) != ROOST_OK)
        return ROOST_ENOMEM;
    struct session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return ROOST_ENOMEM;
    /* One session per certificate. A certificate that connects again while
     * its older session still looks alive is usually a client whose old
     * connection died without the server noticing (a half-open TCP
     * session that would only end at the transport's idle timeout); the
     * new session is the live one. Otherwise it is two processes sharing
     * one certificate, which the deployment does not support: they take
     * the session from each other, and the log says so. The older session
     * is forgotten before the transport is asked to close it, so its
     * closing report, whenever it comes, finds nothing; if it held a place
     * in the open round that place is dropped, as for a disconnect. */
    struct session *old = session_by_fingerprint(c, fingerprint);
    if (old != NULL) {
        uint64_t old_id = old->id;
        roost_log(&c->cfg.log, ROOST_LOG_WARN,
                  "certificate %s connected again (session %" PRIu64
                  "): its older session %" PRIu64 " is closed",
                  fingerprint, session, old_id);
        session_forget(c, old);
        c->io.close(c->io.arg, old_id,
                    "replaced by a newer session with the same certificate");
    }
    s->id = session;
    s->state = S_NEW;
    s->part = -1;
    snprintf(s->fingerprint, sizeof(s->fingerprint), "%s", fingerprint);
    size_t i = slot_of(session, c->n_slots);
    while (c->slots[i] != NULL)
        i = (i + 1) & (c->n_slots - 1);
    c->slots[i] = s;
    fp_link(c->fp_buckets, c->n_slots, s);
    c->n_sessions++;
    /* The client table is informational and outside the chain; failing to
     * update last_seen must not refuse a client. */
    roost_store_upsert_client(c->cfg.store, fingerprint, subject, now.wall_ms,
                              NULL);
    return ROOST_OK;
}

int
roost_coord_session_message(roost_coord *c, uint64_t session,
                            const Roost__V1__Envelope *msg,
                            roost_coord_time now)
{
    struct session *s = session_find(c, session);
    if (s == NULL || msg == NULL)
        return ROOST_OK; /* message racing a close: nothing to do */
    switch (msg->body_case) {
    case ROOST__V1__ENVELOPE__BODY_CHECK_IN:
        on_check_in(c, s, msg->check_in, now);
        break;
    case ROOST__V1__ENVELOPE__BODY_UPDATE:
        return on_update(c, s, msg->update, now);
    case ROOST__V1__ENVELOPE__BODY_PARAM_CHUNK:
        return on_chunk(c, s, msg->param_chunk, now);
    case ROOST__V1__ENVELOPE__BODY_DECLINE:
        return on_decline(c, s, msg->decline, now);
    case ROOST__V1__ENVELOPE__BODY_ERROR:
        roost_log(&c->cfg.log, ROOST_LOG_WARN, "client %s reports %s: %s",
                  s->fingerprint, roost_errname((int)msg->error->code),
                  msg->error->message ? msg->error->message : "");
        c->io.close(c->io.arg, s->id, "client reported an error");
        break;
    case ROOST__V1__ENVELOPE__BODY_EVALUATION_RESULT:
        return on_eval_result(c, s, msg->evaluation_result, now);
    default:
        send_error_and_close(c, s, ROOST_EPROTO,
                             "message type not valid from a client");
        break;
    }
    return ROOST_OK;
}

void
roost_coord_session_closed(roost_coord *c, uint64_t session,
                           roost_coord_time now)
{
    (void)now;
    struct session *s = session_find(c, session);
    if (s != NULL)
        session_forget(c, s);
}

int
roost_coord_tick(roost_coord *c, roost_coord_time now, int64_t *next_ms)
{
    int rc = ROOST_OK;
    if (c->round.open) {
        /* Close at the deadline, or early once no selected client can still
         * answer (all answered, declined or gone). */
        bool pending = false;
        for (size_t i = 0; i < c->round.n_parts && !pending; i++)
            pending = c->round.parts[i].status == ROOST_PART_SELECTED &&
                      c->round.parts[i].session != 0;
        if (now.mono_ms >= c->round.deadline_mono_ms || !pending)
            rc = round_close(c, now);
    }
    if (rc == ROOST_OK && !c->round.open && !c->finished)
        rc = round_open(c, now);
    if (next_ms != NULL)
        *next_ms = c->round.open ? c->round.deadline_mono_ms : INT64_MAX;
    return rc;
}

void
roost_coord_abandon_round(roost_coord *c)
{
    if (!c->round.open)
        return;
    roost_log(&c->cfg.log, ROOST_LOG_WARN,
              "round %" PRId64 " abandoned; it will run again", c->round.id);
    round_release_sessions(c);
    round_reset(c);
}

bool
roost_coord_finished(const roost_coord *c)
{
    return c->finished;
}

bool
roost_coord_round_open(const roost_coord *c)
{
    return c->round.open;
}

int64_t
roost_coord_last_round(const roost_coord *c)
{
    return c->last_round;
}

const float *
roost_coord_params(const roost_coord *c, size_t *param_count)
{
    if (param_count != NULL)
        *param_count = c->n;
    return c->params;
}

size_t
roost_coord_session_count(const roost_coord *c)
{
    return c->n_sessions;
}

const char *
roost_coord_errmsg(const roost_coord *c)
{
    return c->em.text;
}
