/*
 * test_coord.c - the coordinator's round logic, driven by scripted clients
 * through its transport-independent interface, with a real SQLite store in
 * a temporary directory. (The scripted clients stand in for the client
 * library, the layer above which has its own tests; the integration tests
 * run real clients over TLS.)
 *
 * Each scripted client keeps the messages the coordinator sent it, so the
 * tests can read tasks and reassemble the global parameters from chunks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/wire.h"
#include "common/xfer.h"
#include "dp/accountant.h"
#include "server/coord.h"
#include "sqlite_util.h"
#include "test_util.h"

#define MAX_CLIENTS 16
#define N_PARAMS 50 /* dense:10 on 1x2x2 input: 4*10 + 10 */

struct fake_client {
    uint64_t session;
    bool open;
    /* last task */
    bool has_task;
    bool task_eval, task_training; /* kind EVALUATE; carries TrainingParams */
    uint64_t round_id, task_id;
    uint64_t deadline_unix_ms; /* the last task's */
    uint32_t chunks_expected, chunks_seen;
    float global[N_PARAMS];
    /* last ack / come-back / error */
    int acks, refusals, come_backs, errors;
    int last_ack_code;
};

struct harness {
    char dir[64], db[96];
    roost_store *store;
    roost_coord *coord;
    struct fake_client clients[MAX_CLIENTS];
    int rounds_seen;
    roost_coord_round_summary last;
    /* Non-NULL: the Metrics every update carries instead of the default. */
    Roost__V1__Metrics *metrics;
    /* The tests' times are the coordinator's monotonic clock; its wall
     * clock reads that plus this skew, which a test changes to step the
     * wall clock (0 unless a test sets it: both clocks then agree). */
    int64_t wall_skew_ms;
};

/* The coordinator's clocks at monotonic time now: the wall clock of the
 * harness. */
static roost_coord_time
clock_at(const struct harness *h, int64_t now)
{
    roost_coord_time t = {.mono_ms = now, .wall_ms = now + h->wall_skew_ms};
    return t;
}

static int
tick(struct harness *h, int64_t now, int64_t *next_ms)
{
    return roost_coord_tick(h->coord, clock_at(h, now), next_ms);
}

static int
session_opened(struct harness *h, uint64_t session, const char *fingerprint,
               const char *subject, int64_t now)
{
    return roost_coord_session_opened(h->coord, session, fingerprint, subject,
                                      clock_at(h, now));
}

static int
session_message(struct harness *h, uint64_t session,
                const Roost__V1__Envelope *msg, int64_t now)
{
    return roost_coord_session_message(h->coord, session, msg,
                                       clock_at(h, now));
}

static void
session_closed(struct harness *h, uint64_t session, int64_t now)
{
    roost_coord_session_closed(h->coord, session, clock_at(h, now));
}

static struct fake_client *
client_of(struct harness *h, uint64_t session)
{
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (h->clients[i].session == session)
            return &h->clients[i];
    return NULL;
}

static int
fake_send(void *arg, uint64_t session, const Roost__V1__Envelope *m)
{
    struct harness *h = arg;
    struct fake_client *fc = client_of(h, session);
    assert_non_null(fc);
    switch (m->body_case) {
    case ROOST__V1__ENVELOPE__BODY_TASK:
        fc->has_task = true;
        fc->round_id = m->task->round_id;
        fc->task_id = m->task->task_id;
        fc->deadline_unix_ms = m->task->deadline_unix_ms;
        fc->task_eval =
            m->task->kind == ROOST__V1__TASK_KIND__TASK_KIND_EVALUATE;
        fc->task_training = m->task->training != NULL;
        fc->chunks_expected = m->task->param_chunk_count;
        fc->chunks_seen = 0;
        assert_int_equal(m->task->model->num_params, N_PARAMS);
        break;
    case ROOST__V1__ENVELOPE__BODY_PARAM_CHUNK: {
        const Roost__V1__ParamChunk *ch = m->param_chunk;
        assert_true(ch->offset + ch->n_values <= N_PARAMS);
        memcpy(fc->global + ch->offset, ch->values,
               ch->n_values * sizeof(float));
        fc->chunks_seen++;
        break;
    }
    case ROOST__V1__ENVELOPE__BODY_ACK:
        fc->acks++;
        fc->last_ack_code = (int)m->ack->error_code;
        if (!m->ack->accepted)
            fc->refusals++;
        break;
    case ROOST__V1__ENVELOPE__BODY_COME_BACK_LATER:
        fc->come_backs++;
        fc->has_task = false;
        break;
    case ROOST__V1__ENVELOPE__BODY_ERROR:
        fc->errors++;
        break;
    default:
        fail_msg("unexpected message %d", (int)m->body_case);
    }
    return ROOST_OK;
}

static void
fake_close(void *arg, uint64_t session, const char *reason)
{
    (void)reason;
    struct harness *h = arg;
    struct fake_client *fc = client_of(h, session);
    if (fc != NULL)
        fc->open = false;
}

static void
on_round(void *arg, const roost_coord_round_summary *s)
{
    struct harness *h = arg;
    h->rounds_seen++;
    h->last = *s;
}

static void
make_config(struct harness *h, roost_coord_config *cfg, uint32_t k)
{
    roost_coord_config_init(cfg);
    cfg->dp_enabled = false; /* the fake clients send plain updates */
    cfg->model_spec = "dense:10";
    cfg->input_channels = 1;
    cfg->input_height = 2;
    cfg->input_width = 2;
    cfg->clients_per_round = k;
    cfg->min_clients = k;
    cfg->min_available = k;
    cfg->round_timeout_ms = 1000;
    cfg->max_update_norm = 100.0;
    cfg->max_examples = 1000;
    cfg->store = h->store;
    cfg->selection_seed = 99;
    cfg->log.max_level = -1; /* silent */
    cfg->on_round = on_round;
    cfg->on_round_arg = h;
}

/* A coordinator from cfg over the fake transport into h->coord. */
static void
start_with(struct harness *h, const roost_coord_config *cfg)
{
    roost_coord_io io = {fake_send, fake_close, h};
    roost_errmsg em;
    int rc = roost_coord_create(&h->coord, cfg, &io, &em);
    if (rc != ROOST_OK)
        fail_msg("coord_create: %s", em.text);
}

static void
start(struct harness *h, uint32_t k)
{
    roost_coord_config cfg;
    make_config(h, &cfg, k);
    start_with(h, &cfg);
}

/* make_config for 3 clients with central DP (clip 1, z 1.5) drawing its
 * noise from rng. */
static void
make_central_dp_config(struct harness *h, roost_coord_config *cfg,
                       roost_rng *rng)
{
    make_config(h, cfg, 3);
    cfg->strategy.central_dp = true;
    cfg->strategy.dp_clip_norm = 1.0;
    cfg->strategy.dp_noise_multiplier = 1.5;
    cfg->strategy.dp_expected_updates = 3;
    cfg->strategy.dp_rng = rng;
    cfg->dp_delta = 1e-5;
}

static int
setup(void **state)
{
    struct harness *h = calloc(1, sizeof(*h));
    snprintf(h->dir, sizeof(h->dir), "/tmp/roost_coord_XXXXXX");
    assert_non_null(mkdtemp(h->dir));
    snprintf(h->db, sizeof(h->db), "%s/coord.db", h->dir);
    roost_errmsg em;
    assert_int_equal(
        roost_store_open(&h->store, h->db, ROOST_STORE_CREATE, &em), ROOST_OK);
    *state = h;
    return 0;
}

static int
teardown(void **state)
{
    struct harness *h = *state;
    roost_coord_destroy(h->coord);
    roost_store_close(h->store);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", h->dir);
    assert_int_equal(system(cmd), 0);
    free(h);
    return 0;
}

/* Client fc's message env reaches the coordinator, which accepts it. */
static void
deliver(struct harness *h, const struct fake_client *fc,
        const Roost__V1__Envelope *env, int64_t now)
{
    assert_int_equal(session_message(h, fc->session, env, now), ROOST_OK);
}

static void check_in(struct harness *h, int i, int64_t now);

static void
connect_and_check_in(struct harness *h, int i, int64_t now)
{
    struct fake_client *fc = &h->clients[i];
    fc->session = (uint64_t)(1000 + i);
    fc->open = true;
    char fp[65];
    snprintf(fp, sizeof(fp), "%064x", 0xabc0 + i);
    assert_int_equal(session_opened(h, fc->session, fp, "CN=test", now),
                     ROOST_OK);
    check_in(h, i, now);
}

static void
check_in_with_budget(struct harness *h, int i, int64_t now, double eps_left)
{
    struct fake_client *fc = &h->clients[i];
    Roost__V1__Envelope env;
    roost__v1__envelope__init(&env);
    Roost__V1__CheckIn ci;
    roost__v1__check_in__init(&ci);
    ci.epsilon_remaining = eps_left;
    ci.budget_delta = 1e-5;
    ci.protocol_version = ROOST_WIRE_PROTOCOL_VERSION;
    ci.software_version = (char *)(uintptr_t) "test";
    env.body_case = ROOST__V1__ENVELOPE__BODY_CHECK_IN;
    env.check_in = &ci;
    deliver(h, fc, &env, now);
}

static void
check_in(struct harness *h, int i, int64_t now)
{
    check_in_with_budget(h, i, now, 10.0);
}

/* Client i answers an evaluation task. */
static void
send_eval(struct harness *h, int i, uint64_t examples, double loss,
          double accuracy, int64_t now)
{
    struct fake_client *fc = &h->clients[i];
    Roost__V1__Envelope env;
    roost__v1__envelope__init(&env);
    Roost__V1__EvaluationResult er;
    roost__v1__evaluation_result__init(&er);
    er.round_id = fc->round_id;
    er.task_id = fc->task_id;
    er.num_examples = examples;
    er.loss = loss;
    er.accuracy = accuracy;
    env.body_case = ROOST__V1__ENVELOPE__BODY_EVALUATION_RESULT;
    env.evaluation_result = &er;
    deliver(h, fc, &env, now);
}

static void
send_decline(struct harness *h, int i, int64_t now)
{
    struct fake_client *fc = &h->clients[i];
    Roost__V1__Envelope env;
    roost__v1__envelope__init(&env);
    Roost__V1__Decline d;
    roost__v1__decline__init(&d);
    d.round_id = fc->round_id;
    d.task_id = fc->task_id;
    d.reason = ROOST__V1__DECLINE_REASON__DECLINE_REASON_BUDGET_EXHAUSTED;
    d.message = (char *)(uintptr_t) "budget";
    env.body_case = ROOST__V1__ENVELOPE__BODY_DECLINE;
    env.decline = &d;
    deliver(h, fc, &env, now);
}

/* Client i answers its task with delta[j] = value for every j, and the
 * DP report dp (NULL: none). */
static void
send_update_dp(struct harness *h, int i, float value, uint64_t examples,
               uint64_t round_id, uint64_t task_id, Roost__V1__DpReport *dp,
               int64_t now)
{
    struct fake_client *fc = &h->clients[i];
    float delta[N_PARAMS];
    for (int j = 0; j < N_PARAMS; j++)
        delta[j] = value;
    uint8_t hash[32];
    assert_int_equal(roost_xfer_hash_floats(delta, N_PARAMS, hash), ROOST_OK);
    roost_xfer_sender snd;
    uint32_t n_chunks;
    assert_int_equal(roost_xfer_sender_init(&snd, delta, N_PARAMS, 16, round_id,
                                            task_id, &n_chunks),
                     ROOST_OK);
    Roost__V1__Envelope env;
    roost__v1__envelope__init(&env);
    Roost__V1__Update up;
    roost__v1__update__init(&up);
    Roost__V1__Metrics met;
    roost__v1__metrics__init(&met);
    met.loss = 1.0;
    met.accuracy = 0.5;
    met.accuracy_measured = examples != 77; /* 77: a client that did not */
    up.round_id = round_id;
    up.task_id = task_id;
    up.num_examples = examples;
    up.num_params = N_PARAMS;
    up.chunk_count = n_chunks;
    up.delta_sha256.data = hash;
    up.delta_sha256.len = 32;
    up.metrics = h->metrics != NULL ? h->metrics : &met;
    up.dp = dp;
    env.body_case = ROOST__V1__ENVELOPE__BODY_UPDATE;
    env.update = &up;
    deliver(h, fc, &env, now);
    Roost__V1__Envelope cenv;
    roost__v1__envelope__init(&cenv);
    Roost__V1__ParamChunk ch;
    roost__v1__param_chunk__init(&ch);
    cenv.body_case = ROOST__V1__ENVELOPE__BODY_PARAM_CHUNK;
    cenv.param_chunk = &ch;
    for (;;) {
        bool done = false;
        assert_int_equal(roost_xfer_sender_next(&snd, &ch, &done), ROOST_OK);
        if (done)
            break;
        assert_int_equal(session_message(h, fc->session, &cenv, now), ROOST_OK);
    }
}

/* Client i answers its task with delta[j] = value for every j. */
static void
send_update(struct harness *h, int i, float value, uint64_t examples,
            uint64_t round_id, uint64_t task_id, int64_t now)
{
    send_update_dp(h, i, value, examples, round_id, task_id, NULL, now);
}

static void
fedavg_round_commits_weighted_mean(void **state)
{
    struct harness *h = *state;
    start(h, 3);
    for (int i = 0; i < 3; i++)
        connect_and_check_in(h, i, 0);
    int64_t next;
    assert_int_equal(tick(h, 1, &next), ROOST_OK);
    assert_int_equal(next, 1 + 1000);
    size_t n;
    const float *before = roost_coord_params(h->coord, &n);
    assert_int_equal(n, N_PARAMS);
    float initial[N_PARAMS];
    memcpy(initial, before, sizeof(initial));
    for (int i = 0; i < 3; i++) {
        struct fake_client *fc = &h->clients[i];
        assert_true(fc->has_task);
        assert_int_equal(fc->round_id, 1);
        assert_int_equal(fc->chunks_seen, fc->chunks_expected);
        assert_memory_equal(fc->global, initial, sizeof(initial));
    }
    /* deltas 1, 2, 4 with weights 100, 100, 200:
     * (100*1 + 100*2 + 200*4) / 400 = 1100 / 400 = 2.75 */
    float values[3] = {1, 2, 4};
    uint64_t weights[3] = {100, 100, 200};
    for (int i = 0; i < 3; i++)
        send_update(h, i, values[i], weights[i], 1, h->clients[i].task_id, 2);
    assert_int_equal(h->rounds_seen, 1);
    assert_true(h->last.committed);
    assert_int_equal(h->last.accepted, 3);
    assert_int_equal(h->last.examples, 400);
    assert_int_equal(roost_coord_last_round(h->coord), 1);
    const float *after = roost_coord_params(h->coord, NULL);
    for (int j = 0; j < N_PARAMS; j++)
        assert_near(after[j], (double)initial[j] + 2.75, 1e-5);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(h->clients[i].acks, 1);
        assert_int_equal(h->clients[i].refusals, 0);
    }
    /* The store has the round, and its chain verifies. */
    roost_store_head head;
    roost_errmsg em;
    assert_int_equal(roost_store_last_committed_round(h->store, &head, &em),
                     ROOST_OK);
    assert_int_equal(head.round_id, 1);
    int64_t bad;
    assert_int_equal(roost_store_verify_chain(h->store, &bad, NULL, NULL, &em),
                     ROOST_OK);
    /* Reported training figures, example-weighted: all said loss 1.0 and
     * measured accuracy 0.5. */
    roost_store_round_info info;
    size_t n_info = 0;
    assert_int_equal(
        roost_store_list_rounds(h->store, 1, &info, 1, &n_info, &em), ROOST_OK);
    assert_near(info.train_loss, 1.0, 1e-12);
    assert_near(info.train_accuracy, 0.5, 1e-12);

    /* Round 2: one client did not measure accuracy; the others' value
     * stands alone, the loss still counts all three. */
    for (int i = 0; i < 3; i++)
        check_in(h, i, 10);
    assert_int_equal(tick(h, 11, NULL), ROOST_OK);
    send_update(h, 0, 1.0f, 77, 2, h->clients[0].task_id, 12);
    send_update(h, 1, 1.0f, 100, 2, h->clients[1].task_id, 12);
    send_update(h, 2, 1.0f, 100, 2, h->clients[2].task_id, 12);
    assert_int_equal(
        roost_store_list_rounds(h->store, 2, &info, 1, &n_info, &em), ROOST_OK);
    assert_near(info.train_accuracy, 0.5, 1e-12);
    assert_near(info.train_loss, 1.0, 1e-12);
}

static void
refuses_stale_duplicate_and_malformed(void **state)
{
    struct harness *h = *state;
    start(h, 3);
    for (int i = 0; i < 3; i++)
        connect_and_check_in(h, i, 0);
    assert_int_equal(tick(h, 1, NULL), ROOST_OK);
    /* Stale: wrong round id. */
    send_update(h, 0, 1.0f, 10, 7, h->clients[0].task_id, 2);
    assert_int_equal(h->clients[0].last_ack_code, ROOST_ESTALE);
    /* A non-finite delta is refused by validation. */
    send_update(h, 1, NAN, 10, 1, h->clients[1].task_id, 2);
    assert_int_equal(h->clients[1].last_ack_code, ROOST_ENONFINITE);
    /* Huge norm: 50 coordinates of 1e3 -> norm ~7071 > 100. */
    send_update(h, 2, 1e3f, 10, 1, h->clients[2].task_id, 2);
    assert_int_equal(h->clients[2].last_ack_code, ROOST_ENORM);
    /* A second answer to the same task is a duplicate. */
    send_update(h, 2, 1.0f, 10, 1, h->clients[2].task_id, 3);
    assert_int_equal(h->clients[2].last_ack_code, ROOST_EDUPLICATE);
    /* Client 0's stale answer did not use up its task: it can still answer
     * correctly. */
    send_update(h, 0, 1.0f, 10, 1, h->clients[0].task_id, 3);
    assert_int_equal(h->clients[0].last_ack_code, ROOST_OK);
    /* Only one good update of three: at the deadline (min_clients 3) the
     * round fails and the model is unchanged. */
    float before[N_PARAMS];
    memcpy(before, roost_coord_params(h->coord, NULL), sizeof(before));
    assert_int_equal(tick(h, 5000, NULL), ROOST_OK);
    assert_int_equal(h->rounds_seen, 1);
    assert_false(h->last.committed);
    assert_int_equal(h->last.accepted, 1);
    assert_int_equal(h->last.refused, 2);
    assert_memory_equal(before, roost_coord_params(h->coord, NULL),
                        sizeof(before));
}

static void
dropout_below_quorum_fails_round_above_commits(void **state)
{
    struct harness *h = *state;
    roost_coord_config cfg;
    make_config(h, &cfg, 4);
    cfg.min_clients = 2; /* quorum 4, but 2 suffice at the deadline */
    start_with(h, &cfg);
    for (int i = 0; i < 4; i++)
        connect_and_check_in(h, i, 0);
    assert_int_equal(tick(h, 1, NULL), ROOST_OK);
    /* Two answer, two disconnect: nobody else can answer, so the round
     * closes at the next tick without waiting for the deadline. */
    send_update(h, 0, 1.0f, 10, 1, h->clients[0].task_id, 2);
    send_update(h, 1, 3.0f, 10, 1, h->clients[1].task_id, 2);
    session_closed(h, h->clients[2].session, 3);
    session_closed(h, h->clients[3].session, 3);
    assert_int_equal(tick(h, 4, NULL), ROOST_OK);
    assert_int_equal(h->rounds_seen, 1);
    assert_true(h->last.committed);
    assert_int_equal(h->last.dropped, 2);
    /* Round 2: the two remaining clients check in again; with only one
     * answering, the round fails cleanly. */
    roost_coord_destroy(h->coord);
    h->coord = NULL;
    cfg.min_available = 2;
    start_with(h, &cfg);
    assert_int_equal(roost_coord_last_round(h->coord), 1);
    connect_and_check_in(h, 4, 10);
    connect_and_check_in(h, 5, 10);
    assert_int_equal(tick(h, 11, NULL), ROOST_OK);
    assert_int_equal(h->clients[4].round_id, 2);
    send_update(h, 4, 1.0f, 10, 2, h->clients[4].task_id, 12);
    session_closed(h, h->clients[5].session, 12);
    assert_int_equal(tick(h, 13, NULL), ROOST_OK);
    assert_int_equal(h->rounds_seen, 2);
    assert_false(h->last.committed);
    assert_int_equal(h->last.round_id, 2);
}

static void
resume_continues_from_last_commit(void **state)
{
    struct harness *h = *state;
    start(h, 2);
    connect_and_check_in(h, 0, 0);
    connect_and_check_in(h, 1, 0);
    assert_int_equal(tick(h, 1, NULL), ROOST_OK);
    send_update(h, 0, 0.5f, 10, 1, h->clients[0].task_id, 2);
    send_update(h, 1, 0.5f, 10, 1, h->clients[1].task_id, 2);
    assert_int_equal(roost_coord_last_round(h->coord), 1);
    float committed[N_PARAMS];
    memcpy(committed, roost_coord_params(h->coord, NULL), sizeof(committed));
    /* Round 2 opens, one update is acknowledged, then the coordinator dies
     * (destroy without commit stands in for the kill). */
    check_in(h, 0, 3);
    check_in(h, 1, 3);
    assert_int_equal(tick(h, 4, NULL), ROOST_OK);
    assert_int_equal(h->clients[0].round_id, 2);
    send_update(h, 0, 9.0f, 10, 2, h->clients[0].task_id, 5);
    assert_int_equal(h->clients[0].last_ack_code, ROOST_OK);
    roost_coord_destroy(h->coord);
    h->coord = NULL;
    memset(h->clients, 0, sizeof(h->clients));
    start(h, 2);
    assert_int_equal(roost_coord_last_round(h->coord), 1);
    assert_memory_equal(roost_coord_params(h->coord, NULL), committed,
                        sizeof(committed));
    connect_and_check_in(h, 2, 10);
    connect_and_check_in(h, 3, 10);
    assert_int_equal(tick(h, 11, NULL), ROOST_OK);
    assert_int_equal(h->clients[2].round_id, 2);
    /* The clients were sent the committed model: the acknowledged update
     * of the lost round left no trace and is simply asked for again. */
    assert_memory_equal(h->clients[2].global, committed, sizeof(committed));
    roost_store_head head;
    assert_int_equal(roost_store_last_committed_round(h->store, &head, NULL),
                     ROOST_OK);
    assert_int_equal(head.round_id, 1);
}

/* An update made for a round attempt that a crash abandoned is not
 * accepted by the rerun of that round: task ids do not start again from
 * the same value after a restart (with the same seed the rerun would
 * select the same clients in the same order and hand out the same ids). */
static void
abandoned_attempt_update_is_stale_after_restart(void **state)
{
    struct harness *h = *state;
    start(h, 2);
    connect_and_check_in(h, 0, 0);
    connect_and_check_in(h, 1, 0);
    assert_int_equal(tick(h, 1, NULL), ROOST_OK);
    assert_int_equal(h->clients[0].round_id, 1);
    uint64_t lost_task = h->clients[0].task_id;
    roost_coord_destroy(h->coord); /* the crash: round 1 never commits */
    h->coord = NULL;
    memset(h->clients, 0, sizeof(h->clients));
    start(h, 2);
    connect_and_check_in(h, 0, 10);
    connect_and_check_in(h, 1, 10);
    assert_int_equal(tick(h, 11, NULL), ROOST_OK);
    assert_int_equal(h->clients[0].round_id, 1);
    assert_int_not_equal(h->clients[0].task_id, lost_task);
    /* Client 0 sends the update it made for the abandoned attempt. */
    send_update(h, 0, 0.5f, 10, 1, lost_task, 12);
    assert_int_equal(h->clients[0].last_ack_code, ROOST_ESTALE);
    send_update(h, 0, 0.5f, 10, 1, h->clients[0].task_id, 13);
    assert_int_equal(h->clients[0].last_ack_code, ROOST_OK);
}

static void
bad_messages_close_the_session(void **state)
{
    struct harness *h = *state;
    start(h, 2);
    connect_and_check_in(h, 0, 0);
    /* A client may not send a Task. */
    Roost__V1__Envelope env;
    roost__v1__envelope__init(&env);
    Roost__V1__Task task;
    roost__v1__task__init(&task);
    env.body_case = ROOST__V1__ENVELOPE__BODY_TASK;
    env.task = &task;
    assert_int_equal(session_message(h, h->clients[0].session, &env, 1),
                     ROOST_OK);
    assert_int_equal(h->clients[0].errors, 1);
    assert_false(h->clients[0].open);
    /* Wrong protocol version. */
    h->clients[1].session = 77;
    h->clients[1].open = true;
    assert_int_equal(session_opened(h, 77, "ff", NULL, 1), ROOST_OK);
    assert_int_equal(session_opened(h, 77, "ff", NULL, 1), ROOST_EDUPLICATE);
    Roost__V1__CheckIn ci;
    roost__v1__check_in__init(&ci);
    ci.protocol_version = 99;
    env.body_case = ROOST__V1__ENVELOPE__BODY_CHECK_IN;
    env.check_in = &ci;
    assert_int_equal(session_message(h, 77, &env, 1), ROOST_OK);
    assert_int_equal(h->clients[1].errors, 1);
    assert_false(h->clients[1].open);
}

static void
central_dp_round_is_accounted(void **state)
{
    struct harness *h = *state;
    roost_rng *rng;
    assert_int_equal(roost_rng_create_insecure_deterministic(&rng, NULL, 3, 0),
                     ROOST_OK);
    roost_coord_config cfg;
    make_central_dp_config(h, &cfg, rng);
    start_with(h, &cfg);
    roost_errmsg em;
    for (int round = 1; round <= 2; round++) {
        for (int i = 0; i < 3; i++) {
            if (round == 1)
                connect_and_check_in(h, i, 0);
            else
                check_in(h, i, 10);
        }
        assert_int_equal(tick(h, round * 10 + 1, NULL), ROOST_OK);
        for (int i = 0; i < 3; i++)
            send_update(h, i, 0.1f, 10, (uint64_t)round, h->clients[i].task_id,
                        round * 10 + 2);
        assert_int_equal(h->rounds_seen, round);
        assert_true(h->last.committed);
    }
    /* Each committed round is one Gaussian mechanism with z = 1.5 on the
     * clipped sum, composed without sampling amplification. */
    roost_store_round_info info[2];
    size_t n = 0;
    assert_int_equal(roost_store_list_rounds(h->store, 1, info, 2, &n, &em),
                     ROOST_OK);
    assert_int_equal(n, 2);
    for (size_t k = 0; k < 2; k++) {
        assert_true(info[k].has_central_dp);
        assert_near(info[k].cdp_noise_multiplier, 1.5, 0);
        assert_near(info[k].cdp_clip_norm, 1.0, 0);
        roost_dp_event ev = {1.0, 1.5, (uint64_t)(k + 1)};
        double eps;
        assert_int_equal(roost_dp_epsilon(&ev, 1, 1e-5, &eps, NULL, NULL),
                         ROOST_OK);
        assert_rel_near(info[k].cdp_epsilon, eps, 1e-9);
        assert_true(info[k].cdp_delta >= 1e-5 && info[k].cdp_delta < 1.001e-5);
    }
    assert_true(info[1].cdp_epsilon > info[0].cdp_epsilon);
    /* The strategy state saved with round 2 carries the samplers' sums
     * (flag 8, two positive doubles after the header), so a restart
     * charges the rounds before it exactly. */
    int64_t state_round = 0;
    void *blob = NULL;
    size_t len = 0;
    assert_int_equal(roost_store_load_strategy_state(h->store, &state_round,
                                                     &blob, &len, &em),
                     ROOST_OK);
    assert_int_equal(state_round, 2);
    assert_int_equal(len, 24 + 16);
    const unsigned char *p = blob;
    assert_int_equal(p[12], 8);
    double n_mu, n_beta;
    memcpy(&n_mu, p + 24, 8);
    memcpy(&n_beta, p + 32, 8);
    assert_true(n_mu > 0 && n_mu < 1e-12 && n_beta > 0 && n_beta < 1e-15);
    free(blob);
    roost_coord_destroy(h->coord);
    h->coord = NULL;
    roost_rng_destroy(rng);
}

/* The central-DP entry covers the whole record only if every committed
 * training round ran with this run's multiplier: a restart with the same
 * settings keeps counting (round 2 is two mechanisms), one with another
 * multiplier records its rounds' multiplier and clip but no epsilon (the
 * current settings do not describe rounds 1 and 2), and the record still
 * verifies. */
/* Rounds 1..n, one coordinator each (a restart between rounds), round r
 * with central DP at noise multiplier z[r-1] and clip clip[r-1]. */
static void
central_dp_rounds_with_restarts(struct harness *h, roost_rng *rng, int n,
                                const double *z, const double *clip)
{
    for (int round = 1; round <= n; round++) {
        roost_coord_config cfg;
        make_central_dp_config(h, &cfg, rng);
        cfg.strategy.dp_noise_multiplier = z[round - 1];
        cfg.strategy.dp_clip_norm = clip[round - 1];
        memset(h->clients, 0, sizeof(h->clients));
        start_with(h, &cfg);
        for (int i = 0; i < 3; i++)
            connect_and_check_in(h, i, round * 10);
        assert_int_equal(tick(h, round * 10 + 1, NULL), ROOST_OK);
        for (int i = 0; i < 3; i++)
            send_update(h, i, 0.1f, 10, (uint64_t)round, h->clients[i].task_id,
                        round * 10 + 2);
        assert_true(h->last.committed);
        roost_coord_destroy(h->coord);
        h->coord = NULL;
    }
}

static void
central_dp_needs_one_multiplier_for_the_record(void **state)
{
    struct harness *h = *state;
    roost_rng *rng;
    assert_int_equal(roost_rng_create_insecure_deterministic(&rng, NULL, 3, 0),
                     ROOST_OK);
    roost_errmsg em;
    const double z[3] = {1.5, 1.5, 2.0}, clip[3] = {1.0, 1.0, 1.0};
    central_dp_rounds_with_restarts(h, rng, 3, z, clip);
    roost_store_round_info info[3];
    size_t n = 0;
    assert_int_equal(roost_store_list_rounds(h->store, 1, info, 3, &n, &em),
                     ROOST_OK);
    assert_int_equal(n, 3);
    for (size_t k = 0; k < 2; k++) {
        roost_dp_event ev = {1.0, 1.5, (uint64_t)(k + 1)};
        double eps;
        assert_int_equal(roost_dp_epsilon(&ev, 1, 1e-5, &eps, NULL, NULL),
                         ROOST_OK);
        assert_rel_near(info[k].cdp_epsilon, eps, 1e-9);
    }
    assert_true(info[2].has_central_dp);
    assert_near(info[2].cdp_noise_multiplier, 2.0, 0);
    assert_near(info[2].cdp_clip_norm, 1.0, 0);
    assert_true(isnan(info[2].cdp_epsilon) && isnan(info[2].cdp_delta));
    int64_t bad = -1;
    assert_int_equal(roost_store_verify_chain(h->store, &bad, NULL, NULL, &em),
                     ROOST_OK);
    roost_rng_destroy(rng);
}

/* With a fixed clip, a restart with another clip is a mixed record too:
 * the sampler (and the (mu, beta) charged for every round) is built for
 * multiplier x clip. */
static void
central_dp_needs_one_clip_for_the_record(void **state)
{
    struct harness *h = *state;
    roost_rng *rng;
    assert_int_equal(roost_rng_create_insecure_deterministic(&rng, NULL, 3, 0),
                     ROOST_OK);
    roost_errmsg em;
    const double z[2] = {1.5, 1.5}, clip[2] = {1.0, 0.9};
    central_dp_rounds_with_restarts(h, rng, 2, z, clip);
    roost_store_round_info info[2];
    size_t n = 0;
    assert_int_equal(roost_store_list_rounds(h->store, 1, info, 2, &n, &em),
                     ROOST_OK);
    assert_int_equal(n, 2);
    assert_true(isfinite(info[0].cdp_epsilon));
    assert_true(info[1].has_central_dp);
    assert_near(info[1].cdp_clip_norm, 0.9, 0);
    assert_true(isnan(info[1].cdp_epsilon) && isnan(info[1].cdp_delta));
    roost_rng_destroy(rng);
}

/* Central DP composes one mechanism per training round: a federated
 * evaluation round between two training rounds (it releases no aggregate)
 * leaves round 3's entry at two mechanisms, not three. */
static void
central_dp_counts_training_rounds_only(void **state)
{
    struct harness *h = *state;
    roost_rng *rng;
    assert_int_equal(roost_rng_create_insecure_deterministic(&rng, NULL, 3, 0),
                     ROOST_OK);
    roost_coord_config cfg;
    make_central_dp_config(h, &cfg, rng);
    cfg.fed_eval_every = 2; /* after training round 2 only */
    start_with(h, &cfg);
    roost_errmsg em;
    for (int i = 0; i < 3; i++)
        connect_and_check_in(h, i, 0);
    for (int round = 1; round <= 4; round++) {
        if (round > 1)
            for (int i = 0; i < 3; i++)
                check_in(h, i, round * 10);
        assert_int_equal(tick(h, round * 10 + 1, NULL), ROOST_OK);
        for (int i = 0; i < 3; i++) {
            if (round == 3) {
                assert_true(h->clients[i].task_eval);
                send_eval(h, i, 10, 1.0, 0.5, round * 10 + 2);
            } else {
                send_update(h, i, 0.1f, 10, (uint64_t)round,
                            h->clients[i].task_id, round * 10 + 2);
            }
        }
        assert_true(h->last.committed);
    }
    /* Rounds 1, 2 and 4 trained: 1, 2 and 3 mechanisms. */
    roost_store_round_info info[4];
    size_t n = 0;
    assert_int_equal(roost_store_list_rounds(h->store, 1, info, 4, &n, &em),
                     ROOST_OK);
    assert_int_equal(n, 4);
    assert_false(info[2].has_central_dp);
    const int mechanisms[4] = {1, 2, 0, 3};
    for (size_t k = 0; k < 4; k++) {
        if (mechanisms[k] == 0)
            continue;
        roost_dp_event ev = {1.0, 1.5, (uint64_t)mechanisms[k]};
        double eps;
        assert_int_equal(roost_dp_epsilon(&ev, 1, 1e-5, &eps, NULL, NULL),
                         ROOST_OK);
        assert_rel_near(info[k].cdp_epsilon, eps, 1e-9);
    }
    roost_coord_destroy(h->coord);
    h->coord = NULL;
    roost_rng_destroy(rng);
}

static void
many_sessions_open_and_close(void **state)
{
    struct harness *h = *state;
    start(h, 2);
    /* Exercise the session table's growth and deletion (a certificate
     * each: a second session of one certificate replaces the first). */
    char fp[32];
    for (uint64_t id = 1; id <= 5000; id++) {
        snprintf(fp, sizeof(fp), "fp%06u", (unsigned)id);
        assert_int_equal(session_opened(h, id, fp, NULL, 0), ROOST_OK);
    }
    assert_int_equal(roost_coord_session_count(h->coord), 5000);
    for (uint64_t id = 1; id <= 5000; id += 2)
        session_closed(h, id, 0);
    assert_int_equal(roost_coord_session_count(h->coord), 2500);
    for (uint64_t id = 2; id <= 5000; id += 2)
        assert_int_equal(session_opened(h, id, "other", NULL, 0),
                         ROOST_EDUPLICATE);
    for (uint64_t id = 2; id <= 5000; id += 2)
        session_closed(h, id, 0);
    assert_int_equal(roost_coord_session_count(h->coord), 0);
}

/* Which clients hold a task of round_id. */
static int
tasked(struct harness *h, uint64_t round_id, int n, int *who)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (h->clients[i].has_task && h->clients[i].round_id == round_id)
            who[k++] = i;
    return k;
}

/* After every committed training round, a round of kind "eval" sends the
 * new model to clients and records the example-weighted means of their
 * answers; a restart between the two still runs the evaluation; answers
 * that are not evaluations, out of range, or repeated are refused. */
static void
federated_evaluation_round(void **state)
{
    struct harness *h = *state;
    roost_coord_config cfg;
    make_config(h, &cfg, 2);
    cfg.min_available = 4;
    cfg.fed_eval_every = 1;
    cfg.fed_eval_clients = 4;
    cfg.max_rounds = 1;
    start_with(h, &cfg);
    for (int i = 0; i < 4; i++)
        connect_and_check_in(h, i, 0);
    assert_int_equal(tick(h, 1, NULL), ROOST_OK);
    int who[4];
    assert_int_equal(tasked(h, 1, 4, who), 2);
    for (int k = 0; k < 2; k++) {
        assert_false(h->clients[who[k]].task_eval);
        send_update(h, who[k], 1.0f, 10, 1, h->clients[who[k]].task_id, 2);
    }
    assert_true(h->last.committed);
    assert_false(h->last.evaluation);
    assert_false(roost_coord_finished(h->coord)); /* evaluation still due */
    float model[N_PARAMS];
    memcpy(model, roost_coord_params(h->coord, NULL), sizeof(model));

    /* The coordinator restarts between the training round and its
     * evaluation: the evaluation is still run. */
    roost_coord_destroy(h->coord);
    h->coord = NULL;
    memset(h->clients, 0, sizeof(h->clients));
    start_with(h, &cfg);
    assert_false(roost_coord_finished(h->coord));
    for (int i = 0; i < 4; i++)
        connect_and_check_in(h, i, 10);
    assert_int_equal(tick(h, 11, NULL), ROOST_OK);
    assert_int_equal(tasked(h, 2, 4, who), 4);
    for (int i = 0; i < 4; i++) {
        assert_true(h->clients[i].task_eval);
        assert_false(h->clients[i].task_training);
        assert_memory_equal(h->clients[i].global, model, sizeof(model));
    }
    /* An update is not an answer to an evaluation task. */
    send_update(h, 0, 1.0f, 10, 2, h->clients[0].task_id, 12);
    assert_int_equal(h->clients[0].last_ack_code, ROOST_ESTALE);
    /* 100 examples at loss 1.0 / accuracy 0.5 and 300 at 2.0 / 0.9:
     * loss (100 + 600) / 400 = 1.75, accuracy (50 + 270) / 400 = 0.8. */
    send_eval(h, 0, 100, 1.0, 0.5, 12);
    assert_int_equal(h->clients[0].last_ack_code, ROOST_OK);
    send_eval(h, 0, 100, 1.0, 0.5, 12);
    assert_int_equal(h->clients[0].last_ack_code, ROOST_EDUPLICATE);
    send_eval(h, 1, 300, 2.0, 0.9, 13);
    assert_int_equal(h->clients[1].last_ack_code, ROOST_OK);
    send_eval(h, 2, 50, 1.0, 1.5, 13);
    assert_int_equal(h->clients[2].last_ack_code, ROOST_EINVAL);
    /* A count above the ceiling would wrap the round's example sum. */
    send_eval(h, 3, ROOST_COORD_MAX_EXAMPLES + 1, 1.0, 0.5, 13);
    assert_int_equal(h->clients[3].last_ack_code, ROOST_EINVAL);
    /* Nobody can answer any more: the round closes at the next tick with
     * two answers (min_clients 2). */
    assert_int_equal(tick(h, 14, NULL), ROOST_OK);
    assert_true(h->last.evaluation);
    assert_true(h->last.committed);
    assert_int_equal(h->last.round_id, 2);
    assert_int_equal(h->last.accepted, 2);
    assert_int_equal(h->last.refused, 2);
    assert_int_equal(h->last.examples, 400);
    assert_near(h->last.fed_eval_loss, 1.75, 1e-12);
    assert_near(h->last.fed_eval_accuracy, 0.8, 1e-12);
    assert_true(roost_coord_finished(h->coord));
    assert_memory_equal(roost_coord_params(h->coord, NULL), model,
                        sizeof(model));

    roost_store_round_info info;
    size_t n = 0;
    roost_errmsg em;
    assert_int_equal(roost_store_list_rounds(h->store, 2, &info, 1, &n, &em),
                     ROOST_OK);
    assert_int_equal(n, 1);
    assert_string_equal(info.kind, "eval");
    roost_store_metric_value mv[8];
    assert_int_equal(roost_store_round_metrics(h->store, 2, mv, 8, &n, &em),
                     ROOST_OK);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(mv[i].name, "fed_eval.accuracy") == 0)
            assert_near(mv[i].value, 0.8, 1e-12);
        else if (strcmp(mv[i].name, "fed_eval.examples") == 0)
            assert_near(mv[i].value, 400, 0);
    }
    int64_t bad;
    assert_int_equal(roost_store_verify_chain(h->store, &bad, NULL, NULL, &em),
                     ROOST_OK);
}

/* A selected client that declines (here: its budget) is replaced by a
 * waiting client that was not selected, so the round still reaches its
 * quorum. */
static void
declined_task_goes_to_a_waiting_client(void **state)
{
    struct harness *h = *state;
    roost_coord_config cfg;
    make_config(h, &cfg, 2);
    cfg.min_available = 3;
    start_with(h, &cfg);
    for (int i = 0; i < 3; i++)
        connect_and_check_in(h, i, 0);
    assert_int_equal(tick(h, 1, NULL), ROOST_OK);
    int who[3];
    assert_int_equal(tasked(h, 1, 3, who), 2);
    send_decline(h, who[0], 2);
    assert_int_equal(tasked(h, 1, 3, who), 3);
    /* The decliner is not asked again; the other two answer. */
    int answered = 0;
    for (int i = 0; i < 3; i++) {
        if (i == who[0])
            continue;
        send_update(h, i, 1.0f, 10, 1, h->clients[i].task_id, 3);
        answered++;
    }
    assert_int_equal(answered, 2);
    assert_int_equal(h->rounds_seen, 1);
    assert_true(h->last.committed);
    assert_int_equal(h->last.selected, 3);
    assert_int_equal(h->last.accepted, 2);
    assert_int_equal(h->last.dropped, 1);
}

/* A decline that arrives after the round's deadline (before the tick that
 * closes the round) is not replaced: the replacement could only train for
 * an update the round refuses, and a DP client would spend budget on it. */
static void
decline_after_the_deadline_is_not_replaced(void **state)
{
    struct harness *h = *state;
    roost_coord_config cfg;
    make_config(h, &cfg, 2);
    cfg.min_available = 3;
    start_with(h, &cfg);
    for (int i = 0; i < 3; i++)
        connect_and_check_in(h, i, 0);
    assert_int_equal(tick(h, 1, NULL), ROOST_OK);
    int who[3];
    assert_int_equal(tasked(h, 1, 3, who), 2);
    send_decline(h, who[0], 1 + 1000); /* the deadline is 1 + 1000 */
    assert_int_equal(tasked(h, 1, 3, who), 2);
    assert_int_equal(tick(h, 1 + 1000, NULL), ROOST_OK);
    assert_int_equal(h->rounds_seen, 1);
    assert_false(h->last.committed);
}

/* With DP on, a client whose check-in reports no budget left is not
 * selected (it would only decline) and is told to come back later. */
static void
clients_without_budget_are_not_selected(void **state)
{
    struct harness *h = *state;
    roost_coord_config cfg;
    make_config(h, &cfg, 2);
    cfg.min_available = 2;
    cfg.dp_enabled = true;
    start_with(h, &cfg);
    for (int i = 0; i < 3; i++) {
        h->clients[i].session = (uint64_t)(1000 + i);
        h->clients[i].open = true;
        char fp[65];
        snprintf(fp, sizeof(fp), "%064x", 0xbbb0 + i);
        assert_int_equal(session_opened(h, 1000u + (unsigned)i, fp, NULL, 0),
                         ROOST_OK);
        check_in_with_budget(h, i, 0, i == 1 ? 0.0 : 2.5);
    }
    assert_int_equal(tick(h, 1, NULL), ROOST_OK);
    assert_true(h->clients[0].has_task);
    assert_true(h->clients[2].has_task);
    assert_false(h->clients[1].has_task);
    assert_int_equal(h->clients[1].come_backs, 1);
}

/* Server momentum survives a restart: a run interrupted after round 1
 * ends round 2 with exactly the model of a run that was not. */
static void
strategy_state_survives_restart(void **state)
{
    struct harness *h = *state;
    float uninterrupted[N_PARAMS];
    for (int pass = 0; pass < 2; pass++) {
        roost_coord_config cfg;
        make_config(h, &cfg, 1);
        roost_strategy_config_init(&cfg.strategy, ROOST_STRATEGY_FEDAVGM);
        cfg.strategy.momentum = 0.9;
        start_with(h, &cfg);
        connect_and_check_in(h, 0, 0);
        assert_int_equal(tick(h, 1, NULL), ROOST_OK);
        send_update(h, 0, 1.0f, 10, 1, h->clients[0].task_id, 2);
        assert_int_equal(roost_coord_last_round(h->coord), 1);
        if (pass == 1) {
            roost_coord_destroy(h->coord);
            h->coord = NULL;
            memset(h->clients, 0, sizeof(h->clients));
            start_with(h, &cfg);
            connect_and_check_in(h, 0, 3);
        } else {
            check_in(h, 0, 3);
        }
        assert_int_equal(tick(h, 4, NULL), ROOST_OK);
        send_update(h, 0, 1.0f, 10, 2, h->clients[0].task_id, 5);
        assert_int_equal(roost_coord_last_round(h->coord), 2);
        if (pass == 0) {
            memcpy(uninterrupted, roost_coord_params(h->coord, NULL),
                   sizeof(uninterrupted));
            /* A fresh store for the interrupted run. */
            roost_coord_destroy(h->coord);
            h->coord = NULL;
            roost_store_close(h->store);
            unlink(h->db);
            assert_int_equal(
                roost_store_open(&h->store, h->db, ROOST_STORE_CREATE, NULL),
                ROOST_OK);
            memset(h->clients, 0, sizeof(h->clients));
        }
    }
    /* With momentum 0.9 the second step moves 1 + 0.9 = 1.9, where a lost
     * momentum would move 1.0. */
    assert_memory_equal(roost_coord_params(h->coord, NULL), uninterrupted,
                        sizeof(uninterrupted));
}

/* Client i connects as session id with certificate fingerprint fp. */
static void
connect_as(struct harness *h, int i, uint64_t session, const char *fp,
           int64_t now)
{
    struct fake_client *fc = &h->clients[i];
    fc->session = session;
    fc->open = true;
    assert_int_equal(session_opened(h, session, fp, "CN=same", now), ROOST_OK);
    check_in(h, i, now);
}

#define DUP_FP                                                                 \
    "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0"

/* One certificate, one session: a client that connects again while its
 * older session still looks alive (a half-open TCP connection the server
 * has not noticed yet, or a second process with the same certificate)
 * replaces that session. A round therefore never holds one certificate
 * twice, which the store could not commit (one participant row per
 * certificate and round): the round is not lost. */
static void
one_session_per_certificate(void **state)
{
    struct harness *h = *state;
    roost_coord_config cfg;
    make_config(h, &cfg, 2);
    cfg.min_clients = 1;
    cfg.min_available = 1;
    start_with(h, &cfg);
    connect_as(h, 1, 2001, DUP_FP, 0);
    connect_as(h, 2, 2002, DUP_FP, 0);
    assert_int_equal(tick(h, 1, NULL), ROOST_OK);
    assert_true(h->clients[2].has_task);
    send_update(h, 2, 1.0f, 10, 1, h->clients[2].task_id, 2);
    if (h->clients[1].has_task)
        send_update(h, 1, 1.0f, 10, 1, h->clients[1].task_id, 2);
    assert_int_equal(tick(h, 3, NULL), ROOST_OK);
    assert_int_equal(h->rounds_seen, 1);
    assert_true(h->last.committed);
    assert_int_equal(h->last.selected, 1);
    assert_int_equal(h->last.accepted, 1);
    /* The older session was closed, not selected, and is not counted. */
    assert_false(h->clients[1].open);
    assert_false(h->clients[1].has_task);
    assert_true(h->clients[2].open);
    assert_int_equal(roost_coord_session_count(h->coord), 1);
    /* The transport's later report of its end changes nothing. */
    session_closed(h, 2001, 3);
    assert_int_equal(roost_coord_session_count(h->coord), 1);

    /* The certificate reconnects while its session works on round 2: that
     * place is dropped at once (the round need not wait for its deadline
     * for a session that was replaced), and the new session, which cannot
     * join round 2 under the same certificate, trains in round 3. */
    check_in(h, 2, 10);
    assert_int_equal(tick(h, 11, NULL), ROOST_OK);
    assert_int_equal(h->clients[2].round_id, 2);
    connect_as(h, 3, 2003, DUP_FP, 20);
    assert_false(h->clients[2].open);
    assert_false(h->clients[3].has_task);
    assert_int_equal(tick(h, 21, NULL), ROOST_OK);
    assert_int_equal(h->rounds_seen, 2);
    assert_false(h->last.committed);
    assert_int_equal(h->last.dropped, 1);
    assert_true(h->clients[3].has_task);
    assert_int_equal(h->clients[3].round_id, 3);
    send_update(h, 3, 1.0f, 10, 3, h->clients[3].task_id, 22);
    /* A late update from the replaced session is not folded. */
    send_update(h, 2, 1.0f, 10, 2, h->clients[2].task_id, 22);
    assert_int_equal(tick(h, 23, NULL), ROOST_OK);
    assert_int_equal(roost_coord_last_round(h->coord), 3);
    assert_true(h->last.committed);
    assert_int_equal(h->last.accepted, 1);
    assert_int_equal(
        sql_int(h->db,
                "SELECT count(*) FROM participants WHERE fingerprint = '" DUP_FP
                "' GROUP BY round_id ORDER BY count(*) DESC LIMIT 1"),
        1);
    assert_int_equal(sql_int(h->db, "SELECT count(*) FROM rounds"), 3);
}

/* A decliner's place goes to a waiting client that is not in the round,
 * even when most waiting sessions are participants that reconnected (their
 * certificate already holds a place, so they may not take another). With
 * four selected, three of whom reconnect, and one client never selected,
 * that one must replace the decliner whatever the selection draws: for
 * every seed. */
static void
replacement_passes_over_reconnected_participants(void **state)
{
    struct harness *h = *state;
    for (uint64_t seed = 1; seed <= 24; seed++) {
        roost_coord_destroy(h->coord);
        h->coord = NULL;
        memset(h->clients, 0, sizeof(h->clients));
        roost_coord_config cfg;
        make_config(h, &cfg, 4);
        cfg.selection_seed = seed;
        start_with(h, &cfg);
        for (int i = 0; i < 5; i++)
            connect_and_check_in(h, i, 0);
        assert_int_equal(tick(h, 1, NULL), ROOST_OK);
        int who[5];
        assert_int_equal(tasked(h, 1, 5, who), 4);
        int idle = -1;
        for (int i = 0; i < 5; i++)
            if (!h->clients[i].has_task)
                idle = i;
        assert_true(idle >= 0);
        /* who[1..3] reconnect under the same certificates and wait. */
        for (int k = 1; k < 4; k++) {
            char fp[65];
            snprintf(fp, sizeof(fp), "%064x", 0xabc0 + who[k]);
            connect_as(h, who[k], 3000 + (uint64_t)who[k], fp, 2);
        }
        send_decline(h, who[0], 3);
        if (!h->clients[idle].has_task)
            fail_msg("seed %llu: the waiting client did not replace the "
                     "decliner",
                     (unsigned long long)seed);
        assert_int_equal(h->clients[idle].round_id, 1);
    }
}

/* With DP on, an update's DP report must be well formed: a noise
 * multiplier of at least the configured one (NaN is not), and an epsilon,
 * delta, sampling rate and clip in their ranges (proto/roost.proto).
 * Anything else is refused with its reason and recorded, and the round
 * commits with the well-formed updates only: no accepted update lacks its
 * privacy report, and no malformed one enters the epsilon figures. */
static void
malformed_dp_reports_are_refused(void **state)
{
    struct harness *h = *state;
    roost_coord_config cfg;
    make_config(h, &cfg, 6);
    cfg.dp_enabled = true;
    cfg.dp_noise_multiplier = 1.0;
    cfg.min_clients = 1;
    start_with(h, &cfg);
    for (int i = 0; i < 6; i++)
        connect_and_check_in(h, i, 0);
    assert_int_equal(tick(h, 1, NULL), ROOST_OK);
    Roost__V1__DpReport good;
    roost__v1__dp_report__init(&good);
    good.noise_multiplier = 1.0;
    good.clip_norm = 1.0;
    good.sampling_rate = 0.01;
    good.steps = 100;
    good.delta = 1e-5;
    good.epsilon_spent = 0.5;
    Roost__V1__DpReport bad[5];
    for (int k = 0; k < 5; k++)
        bad[k] = good;
    bad[0].noise_multiplier = (double)NAN;
    bad[1].epsilon_spent = (double)NAN;
    bad[2].epsilon_spent = -1.0;
    bad[3].delta = 0.0;
    bad[4].sampling_rate = 2.0;
    for (int k = 0; k < 5; k++) {
        send_update_dp(h, k, 0.1f, 0, 1, h->clients[k].task_id, &bad[k], 2);
        if (h->clients[k].last_ack_code != ROOST_EPROTO)
            fail_msg("malformed DP report %d: ack %d", k,
                     h->clients[k].last_ack_code);
    }
    send_update_dp(h, 5, 0.1f, 0, 1, h->clients[5].task_id, &good, 2);
    assert_int_equal(h->clients[5].last_ack_code, ROOST_OK);
    assert_int_equal(tick(h, 3, NULL), ROOST_OK);
    assert_int_equal(h->rounds_seen, 1);
    assert_true(h->last.committed);
    assert_int_equal(h->last.accepted, 1);
    assert_int_equal(h->last.refused, 5);
    assert_int_equal(sql_int(h->db, "SELECT count(*) FROM updates WHERE "
                                    "accepted = 1 AND dp_epsilon = 0.5"),
                     1);
    /* The malformed reports are on record as refusals naming the field and
     * value, but none counts as a client's privacy spend. */
    assert_int_equal(sql_int(h->db, "SELECT count(*) FROM updates WHERE "
                                    "accepted = 0 AND reason LIKE "
                                    "'%epsilon spent -1 is not%'"),
                     1);
    assert_int_equal(sql_int(h->db, "SELECT count(*) FROM updates WHERE "
                                    "dp_epsilon IS NOT NULL"),
                     1);
    roost_store_eps_stats eps;
    roost_errmsg em;
    assert_int_equal(roost_store_epsilon_stats(h->store, 0, &eps, &em),
                     ROOST_OK);
    assert_int_equal(eps.n_clients, 1);
    assert_near(eps.min, 0.5, 0);
}

/* A store whose last round id was edited to the largest SQLite holds is
 * refused at start, naming the id, rather than overflowing last + 1 (or,
 * with central DP, scanning the record's rounds forever: id + 1 wrapped
 * to the smallest id and the scan began again). */
static void
largest_round_id_is_refused_at_start(void **state)
{
    struct harness *h = *state;
    roost_rng *rng;
    assert_int_equal(roost_rng_create_insecure_deterministic(&rng, NULL, 3, 0),
                     ROOST_OK);
    const double z[1] = {1.5}, clip[1] = {1.0};
    central_dp_rounds_with_restarts(h, rng, 1, z, clip);
    sqlite3 *raw = NULL;
    assert_int_equal(sqlite3_open(h->db, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw,
                                  "UPDATE rounds SET round_id = "
                                  "9223372036854775807;"
                                  "UPDATE checkpoints SET round_id = "
                                  "9223372036854775807;"
                                  "UPDATE strategy_state SET round_id = "
                                  "9223372036854775807;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(raw);
    roost_coord_config cfg;
    make_central_dp_config(h, &cfg, rng);
    roost_coord_io io = {fake_send, fake_close, h};
    roost_errmsg em;
    assert_int_equal(roost_coord_create(&h->coord, &cfg, &io, &em),
                     ROOST_ESTORE);
    assert_null(h->coord);
    assert_non_null(strstr(em.text, "9223372036854775807"));
    roost_rng_destroy(rng);
}

/* The robust strategies buffer every update within max_buffered_updates
 * and max_buffered_bytes and refuse the rest. A configuration whose
 * min_clients updates do not fit could never commit a round: each would
 * refuse valid updates past the limit and fail at its deadline. It is
 * refused when the coordinator starts, naming the limit; one that fits
 * runs its round to a commit. */
static void
robust_buffer_below_min_clients_is_refused_at_start(void **state)
{
    struct harness *h = *state;
    roost_coord_config cfg;
    make_config(h, &cfg, 3);
    roost_strategy_config_init(&cfg.strategy, ROOST_STRATEGY_MEDIAN);
    cfg.strategy.max_buffered_updates = 2;
    roost_coord_io io = {fake_send, fake_close, h};
    roost_errmsg em;
    assert_int_equal(roost_coord_create(&h->coord, &cfg, &io, &em),
                     ROOST_ECONFIG);
    assert_null(h->coord);
    assert_non_null(strstr(em.text, "max_buffered_updates"));
    /* The byte limit: 3 updates of 50 floats need more than 2 do. */
    size_t two = 0, three = 0;
    cfg.strategy.max_buffered_updates = 1000;
    assert_int_equal(
        roost_strategy_memory_bound(&cfg.strategy, N_PARAMS, 2, &two, &em),
        ROOST_OK);
    assert_int_equal(
        roost_strategy_memory_bound(&cfg.strategy, N_PARAMS, 3, &three, &em),
        ROOST_OK);
    cfg.strategy.max_buffered_bytes = (two + three) / 2;
    assert_int_equal(roost_coord_create(&h->coord, &cfg, &io, &em),
                     ROOST_ECONFIG);
    assert_null(h->coord);
    assert_non_null(strstr(em.text, "max_buffered_bytes"));
    /* Nothing was recorded for the refused configurations. */
    roost_store_run_info *info = NULL;
    assert_int_equal(roost_store_get_run(h->store, 0, &info, NULL),
                     ROOST_ENOENT);
    /* With room for min_clients (2) the round commits at the deadline even
     * though the quorum (3) cannot be buffered. */
    cfg.strategy.max_buffered_bytes = (two + three) / 2;
    cfg.min_clients = 2;
    start_with(h, &cfg);
    for (int i = 0; i < 3; i++)
        connect_and_check_in(h, i, 0);
    assert_int_equal(tick(h, 1, NULL), ROOST_OK);
    for (int i = 0; i < 3; i++)
        send_update(h, i, 1.0f, 10, 1, h->clients[i].task_id, 2);
    assert_int_equal(tick(h, 3, NULL), ROOST_OK);
    assert_int_equal(h->rounds_seen, 1);
    assert_true(h->last.committed);
    assert_int_equal(h->last.accepted, 2);
    assert_int_equal(h->last.refused, 1);
}

/* An update's training figures are client claims the round averages. A
 * malformed one (a loss that is not a finite value >= 0, a measured
 * accuracy outside [0, 1]) is refused with its reason, like a malformed
 * evaluation answer; a huge but finite loss is a valid claim and must not
 * overflow the round's example-weighted mean (10 x 1e308 is +inf, which
 * used to leave the round with no recorded loss at all). */
static void
malformed_training_metrics_are_refused(void **state)
{
    struct harness *h = *state;
    roost_coord_config cfg;
    make_config(h, &cfg, 5);
    cfg.min_clients = 1;
    start_with(h, &cfg);
    for (int i = 0; i < 5; i++)
        connect_and_check_in(h, i, 0);
    assert_int_equal(tick(h, 1, NULL), ROOST_OK);
    Roost__V1__Metrics m[4];
    for (int k = 0; k < 4; k++) {
        roost__v1__metrics__init(&m[k]);
        m[k].loss = 1.0;
        m[k].accuracy = 0.5;
        m[k].accuracy_measured = true;
    }
    m[0].loss = 1e308;
    m[1].loss = (double)NAN;
    m[2].loss = -2.0;
    m[3].accuracy = 7.0;
    const int want[4] = {ROOST_OK, ROOST_EINVAL, ROOST_EINVAL, ROOST_EINVAL};
    for (int k = 0; k < 4; k++) {
        h->metrics = &m[k];
        send_update(h, k, 1.0f, 10, 1, h->clients[k].task_id, 2);
        if (h->clients[k].last_ack_code != want[k])
            fail_msg("metrics %d: ack %d, want %d", k,
                     h->clients[k].last_ack_code, want[k]);
    }
    h->metrics = NULL;
    send_update(h, 4, 1.0f, 10, 1, h->clients[4].task_id, 2);
    assert_int_equal(h->clients[4].last_ack_code, ROOST_OK);
    assert_int_equal(tick(h, 3, NULL), ROOST_OK);
    assert_true(h->last.committed);
    assert_int_equal(h->last.accepted, 2);
    assert_int_equal(h->last.refused, 3);
    roost_store_round_info info;
    size_t n = 0;
    roost_errmsg em;
    assert_int_equal(roost_store_list_rounds(h->store, 1, &info, 1, &n, &em),
                     ROOST_OK);
    assert_rel_near(info.train_loss, 0.5 * (1e308 + 1.0), 1e-12);
    assert_near(info.train_accuracy, 0.5, 0);
    assert_int_equal(sql_int(h->db, "SELECT count(*) FROM updates WHERE "
                                    "accepted = 0 AND reason LIKE "
                                    "'%accuracy 7 is not in [0, 1]%'"),
                     1);
}

/* Before the first model is committed, the initial model is regenerated
 * at every start from the seed recorded with the run (the record says
 * which model the run began from), not from whatever seed the restarted
 * configuration names. */
static void
initial_model_follows_the_recorded_seed(void **state)
{
    struct harness *h = *state;
    roost_coord_config cfg;
    make_config(h, &cfg, 2);
    cfg.init_seed = 5;
    start_with(h, &cfg);
    float first[N_PARAMS];
    memcpy(first, roost_coord_params(h->coord, NULL), sizeof(first));
    /* A round opens, one update arrives, the coordinator dies: nothing is
     * committed. It restarts with another init_seed. */
    connect_and_check_in(h, 0, 0);
    connect_and_check_in(h, 1, 0);
    assert_int_equal(tick(h, 1, NULL), ROOST_OK);
    send_update(h, 0, 1.0f, 10, 1, h->clients[0].task_id, 2);
    roost_coord_destroy(h->coord);
    h->coord = NULL;
    memset(h->clients, 0, sizeof(h->clients));
    cfg.init_seed = 6;
    start_with(h, &cfg);
    assert_memory_equal(roost_coord_params(h->coord, NULL), first,
                        sizeof(first));
    /* Round 1 then trains from that model. */
    connect_and_check_in(h, 0, 10);
    connect_and_check_in(h, 1, 10);
    assert_int_equal(tick(h, 11, NULL), ROOST_OK);
    assert_memory_equal(h->clients[0].global, first, sizeof(first));
}

/* An example count above the hard ceiling (2^40) is refused even with no
 * max_examples cap, and is recorded without breaking the record: a claim
 * of 2^63 does not fit the store's signed count, and two claims of 2^62
 * would overflow the round's sum. Either would otherwise have made the
 * round fail to commit, and every later round that selected the client. */
static void
absurd_example_counts_are_refused(void **state)
{
    struct harness *h = *state;
    roost_coord_config cfg;
    make_config(h, &cfg, 3);
    cfg.min_clients = 1;
    cfg.max_examples = 0; /* no cap, the configuration's default */
    start_with(h, &cfg);
    for (int i = 0; i < 3; i++)
        connect_and_check_in(h, i, 0);
    assert_int_equal(tick(h, 1, NULL), ROOST_OK);
    send_update(h, 0, 1.0f, ROOST_COORD_MAX_EXAMPLES, 1, h->clients[0].task_id,
                2);
    assert_int_equal(h->clients[0].last_ack_code, ROOST_OK);
    send_update(h, 1, 1.0f, UINT64_C(1) << 63, 1, h->clients[1].task_id, 2);
    assert_int_equal(h->clients[1].last_ack_code, ROOST_ETOOBIG);
    send_update(h, 2, 1.0f, 10, 1, h->clients[2].task_id, 2);
    assert_int_equal(h->clients[2].last_ack_code, ROOST_OK);
    assert_int_equal(tick(h, 3, NULL), ROOST_OK);
    assert_int_equal(h->rounds_seen, 1);
    assert_true(h->last.committed);
    assert_int_equal(h->last.accepted, 2);
    assert_int_equal(h->last.refused, 1);
    assert_true(h->last.examples == ROOST_COORD_MAX_EXAMPLES + 10);

    for (int i = 0; i < 3; i++)
        check_in(h, i, 10);
    assert_int_equal(tick(h, 11, NULL), ROOST_OK);
    uint64_t claims[3] = {UINT64_C(1) << 62, UINT64_C(1) << 62, UINT64_MAX};
    for (int i = 0; i < 3; i++) {
        send_update(h, i, 1.0f, claims[i], 2, h->clients[i].task_id, 12);
        assert_int_equal(h->clients[i].last_ack_code, ROOST_ETOOBIG);
    }
    /* Nobody is left to answer: recorded as failed, and the next round
     * with an honest count commits. */
    assert_int_equal(tick(h, 13, NULL), ROOST_OK);
    assert_int_equal(roost_coord_last_round(h->coord), 2);
    assert_false(h->last.committed);
    assert_int_equal(h->last.refused, 3);
    assert_int_equal(h->rounds_seen, 2);
    for (int i = 0; i < 3; i++)
        check_in(h, i, 20);
    assert_int_equal(tick(h, 21, NULL), ROOST_OK);
    for (int i = 0; i < 3; i++)
        send_update(h, i, 1.0f, 10, 3, h->clients[i].task_id, 22);
    assert_int_equal(roost_coord_last_round(h->coord), 3);
    assert_true(h->last.committed);
    /* The refused claims are on record, saturated at the largest count
     * the store holds. */
    assert_int_equal(sql_int(h->db, "SELECT count(*) FROM updates WHERE "
                                    "accepted = 0 AND reason_code = 5"),
                     4);
    assert_true(sql_int(h->db, "SELECT max(examples_reported) FROM updates") ==
                INT64_MAX);
    int64_t bad;
    roost_errmsg em;
    assert_int_equal(roost_store_verify_chain(h->store, &bad, NULL, NULL, &em),
                     ROOST_OK);
}

/* A model whose strategy state cannot be stored in one SQLite value
 * (FedAdam keeps 16 bytes per parameter: 62.5 M parameters reach SQLite's
 * default 1e9-byte limit) is refused when the coordinator starts, naming
 * the limit, instead of failing every commit. SQLite's limit is lowered
 * to 700 bytes here, so the store holds values up to 444 bytes: FedAdam's
 * 824-byte state does not fit, FedAvgM's 424 bytes do. */
static void
state_too_big_for_the_store_is_refused_at_start(void **state)
{
    struct harness *h = *state;
    roost_store_set_sqlite_length_limit_for_testing(h->store, 700);
    roost_coord_config cfg;
    make_config(h, &cfg, 1);
    roost_strategy_config_init(&cfg.strategy, ROOST_STRATEGY_FEDADAM);
    roost_coord_io io = {fake_send, fake_close, h};
    roost_errmsg em;
    assert_int_equal(roost_coord_create(&h->coord, &cfg, &io, &em),
                     ROOST_ECONFIG);
    assert_null(h->coord);
    assert_non_null(strstr(em.text, "fedadam"));
    assert_non_null(strstr(em.text, "824 bytes"));
    assert_non_null(strstr(em.text, "444 bytes"));
    /* Nothing was recorded for the refused configuration. */
    roost_store_run_info *info = NULL;
    assert_int_equal(roost_store_get_run(h->store, 0, &info, NULL),
                     ROOST_ENOENT);
    roost_strategy_config_init(&cfg.strategy, ROOST_STRATEGY_FEDAVGM);
    start_with(h, &cfg);
    connect_and_check_in(h, 0, 0);
    assert_int_equal(tick(h, 1, NULL), ROOST_OK);
    send_update(h, 0, 1.0f, 10, 1, h->clients[0].task_id, 2);
    assert_int_equal(roost_coord_last_round(h->coord), 1);
}

/* ------------------------------------------------ clocks: wall steps */

/* A plausible wall clock (November 2023, in ms since the epoch) and the
 * step an NTP correction or `date -s` might make. */
#define WALL_BASE_MS INT64_C(1700000000000)
#define HOUR_MS INT64_C(3600000)

/* The round record of round_id as the store holds it. */
static roost_store_round_info
recorded_round(struct harness *h, int64_t round_id)
{
    roost_store_round_info info;
    size_t n = 0;
    roost_errmsg em;
    assert_int_equal(
        roost_store_list_rounds(h->store, round_id, &info, 1, &n, &em),
        ROOST_OK);
    assert_int_equal(n, 1);
    assert_int_equal(info.round_id, round_id);
    return info;
}

/* The wall clock steps forward by an hour in the middle of a round (an
 * NTP correction, an operator's `date -s`). The round still closes at its
 * timeout by the monotonic clock, not at once; a task sent after the step
 * names the wall-clock deadline as wall time now plus the time left; and
 * the record's timestamps are the wall clock's readings. */
static void
wall_step_forward_does_not_close_the_round(void **state)
{
    struct harness *h = *state;
    roost_coord_config cfg;
    make_config(h, &cfg, 2);
    cfg.min_clients = 1; /* one update commits at the deadline */
    start_with(h, &cfg);
    h->wall_skew_ms = WALL_BASE_MS;
    for (int i = 0; i < 3; i++)
        connect_and_check_in(h, i, 100);
    int64_t next = 0;
    assert_int_equal(tick(h, 100, &next), ROOST_OK);
    assert_true(roost_coord_round_open(h->coord));
    assert_int_equal(next, 100 + 1000); /* monotonic */
    /* Two of the three are selected; the third waits. */
    int sel[2], n_sel = 0, waiting = -1;
    for (int i = 0; i < 3; i++) {
        if (h->clients[i].has_task)
            sel[n_sel++] = i;
        else
            waiting = i;
    }
    assert_int_equal(n_sel, 2);
    assert_true(waiting >= 0);
    for (int k = 0; k < 2; k++)
        assert_int_equal(h->clients[sel[k]].deadline_unix_ms,
                         (uint64_t)(WALL_BASE_MS + 100 + 1000));
    int64_t open_id = 0, opened_ms = 0, n_open = 0;
    assert_int_equal(roost_store_get_open_round(h->store, &open_id, &opened_ms,
                                                &n_open, NULL),
                     ROOST_OK);
    assert_int_equal(open_id, 1);
    assert_int_equal(opened_ms, WALL_BASE_MS + 100);

    h->wall_skew_ms += HOUR_MS; /* the step */
    assert_int_equal(tick(h, 400, &next), ROOST_OK);
    assert_true(roost_coord_round_open(h->coord));
    assert_int_equal(h->rounds_seen, 0);
    assert_int_equal(next, 1100);

    /* One selected client declines; the waiting one takes its place with
     * 600 ms of the round left, on the stepped wall clock. */
    send_decline(h, sel[0], 500);
    assert_true(h->clients[waiting].has_task);
    assert_int_equal(h->clients[waiting].deadline_unix_ms,
                     (uint64_t)(WALL_BASE_MS + HOUR_MS + 500 + 600));
    send_update(h, sel[1], 1.0f, 10, 1, h->clients[sel[1]].task_id, 600);
    assert_int_equal(h->clients[sel[1]].last_ack_code, ROOST_OK);

    /* The replacement never answers: the round waits for it until the
     * monotonic deadline, and closes there. */
    assert_int_equal(tick(h, 1099, &next), ROOST_OK);
    assert_true(roost_coord_round_open(h->coord));
    assert_int_equal(h->rounds_seen, 0);
    assert_int_equal(tick(h, 1100, &next), ROOST_OK);
    assert_int_equal(h->rounds_seen, 1);
    assert_true(h->last.committed);
    assert_int_equal(h->last.accepted, 1);
    assert_near(h->last.seconds, 1.0, 1e-9);

    /* The record holds wall-clock readings: opened before the step,
     * committed and the update received after it. */
    roost_store_round_info info = recorded_round(h, 1);
    assert_int_equal(info.started_ms, WALL_BASE_MS + 100);
    assert_int_equal(info.committed_ms, WALL_BASE_MS + HOUR_MS + 1100);
    assert_int_equal(
        sql_int(h->db, "SELECT received_ms FROM updates WHERE round_id = 1"),
        WALL_BASE_MS + HOUR_MS + 600);
}

/* The wall clock steps back by an hour in the middle of a round. The
 * round still closes at its timeout by the monotonic clock instead of
 * staying open for an hour more, and the record keeps what the wall
 * clock said, even a commit time before the start. */
static void
wall_step_backward_does_not_stretch_the_round(void **state)
{
    struct harness *h = *state;
    roost_coord_config cfg;
    make_config(h, &cfg, 2);
    cfg.min_clients = 1;
    start_with(h, &cfg);
    h->wall_skew_ms = WALL_BASE_MS;
    connect_and_check_in(h, 0, 100);
    connect_and_check_in(h, 1, 100);
    assert_int_equal(tick(h, 100, NULL), ROOST_OK);
    assert_true(h->clients[0].has_task);
    assert_int_equal(h->clients[0].deadline_unix_ms,
                     (uint64_t)(WALL_BASE_MS + 1100));

    h->wall_skew_ms -= HOUR_MS; /* the step */
    send_update(h, 0, 1.0f, 10, 1, h->clients[0].task_id, 300);
    assert_int_equal(h->clients[0].last_ack_code, ROOST_OK);
    int64_t next = 0;
    assert_int_equal(tick(h, 1099, &next), ROOST_OK);
    assert_true(roost_coord_round_open(h->coord));
    assert_int_equal(next, 1100);
    assert_int_equal(tick(h, 1100, &next), ROOST_OK);
    assert_int_equal(h->rounds_seen, 1);
    assert_false(roost_coord_round_open(h->coord));
    assert_true(h->last.committed);
    assert_near(h->last.seconds, 1.0, 1e-9);

    roost_store_round_info info = recorded_round(h, 1);
    assert_int_equal(info.started_ms, WALL_BASE_MS + 100);
    assert_int_equal(info.committed_ms, WALL_BASE_MS - HOUR_MS + 1100);
    assert_int_equal(
        sql_int(h->db, "SELECT received_ms FROM updates WHERE round_id = 1"),
        WALL_BASE_MS - HOUR_MS + 300);
}

/* A coordinator killed mid-round and started again after a reboot: the
 * monotonic clock starts again near zero while the wall clock went on.
 * Nothing of the lost round's timing survives in the store but the wall
 * time of its note, so the round run again gets its whole timeout from
 * the new monotonic clock and tells clients a deadline on the wall
 * clock. */
static void
round_after_reboot_times_from_the_new_clock(void **state)
{
    struct harness *h = *state;
    start(h, 2);
    h->wall_skew_ms = WALL_BASE_MS;
    int64_t uptime = INT64_C(5000000000); /* 58 days */
    connect_and_check_in(h, 0, uptime);
    connect_and_check_in(h, 1, uptime);
    assert_int_equal(tick(h, uptime, NULL), ROOST_OK);
    assert_true(roost_coord_round_open(h->coord));
    roost_coord_destroy(h->coord); /* killed; the host reboots */
    h->coord = NULL;
    memset(h->clients, 0, sizeof(h->clients));

    h->wall_skew_ms = WALL_BASE_MS + uptime + 60000; /* mono restarts at 0 */
    start(h, 2);
    connect_and_check_in(h, 2, 20);
    connect_and_check_in(h, 3, 20);
    int64_t next = 0;
    assert_int_equal(tick(h, 20, &next), ROOST_OK);
    assert_true(roost_coord_round_open(h->coord));
    assert_int_equal(h->clients[2].round_id, 1);
    assert_int_equal(next, 20 + 1000);
    assert_int_equal(h->clients[2].deadline_unix_ms,
                     (uint64_t)(h->wall_skew_ms + 20 + 1000));
    int64_t open_id = 0, opened_ms = 0, n_open = 0;
    assert_int_equal(roost_store_get_open_round(h->store, &open_id, &opened_ms,
                                                &n_open, NULL),
                     ROOST_OK);
    assert_int_equal(open_id, 1);
    assert_int_equal(opened_ms, h->wall_skew_ms + 20);
    assert_int_equal(tick(h, 1019, NULL), ROOST_OK);
    assert_true(roost_coord_round_open(h->coord));
    assert_int_equal(tick(h, 1020, NULL), ROOST_OK);
    assert_int_equal(h->rounds_seen, 1);
    assert_false(h->last.committed); /* nobody answered */
    assert_near(h->last.seconds, 1.0, 1e-9);
    roost_store_round_info info = recorded_round(h, 1);
    assert_int_equal(info.started_ms, h->wall_skew_ms + 20);
    assert_int_equal(info.committed_ms, h->wall_skew_ms + 1020);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(fedavg_round_commits_weighted_mean,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_stale_duplicate_and_malformed,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            dropout_below_quorum_fails_round_above_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(
            abandoned_attempt_update_is_stale_after_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(resume_continues_from_last_commit,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(initial_model_follows_the_recorded_seed,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(bad_messages_close_the_session, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(central_dp_round_is_accounted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(many_sessions_open_and_close, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(federated_evaluation_round, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            central_dp_needs_one_multiplier_for_the_record, setup, teardown),
        cmocka_unit_test_setup_teardown(
            central_dp_needs_one_clip_for_the_record, setup, teardown),
        cmocka_unit_test_setup_teardown(central_dp_counts_training_rounds_only,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            decline_after_the_deadline_is_not_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(declined_task_goes_to_a_waiting_client,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(clients_without_budget_are_not_selected,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(strategy_state_survives_restart, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(one_session_per_certificate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            replacement_passes_over_reconnected_participants, setup, teardown),
        cmocka_unit_test_setup_teardown(malformed_dp_reports_are_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(malformed_training_metrics_are_refused,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(absurd_example_counts_are_refused,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(largest_round_id_is_refused_at_start,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            robust_buffer_below_min_clients_is_refused_at_start, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            state_too_big_for_the_store_is_refused_at_start, setup, teardown),
        cmocka_unit_test_setup_teardown(
            wall_step_forward_does_not_close_the_round, setup, teardown),
        cmocka_unit_test_setup_teardown(
            wall_step_backward_does_not_stretch_the_round, setup, teardown),
        cmocka_unit_test_setup_teardown(
            round_after_reboot_times_from_the_new_clock, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
