/*
 * cproto.c - the client's round protocol (see cproto.h).
 *
 * Invariants:
 *  - global/params buffers exist only from a Task until the Ack (or the
 *    end of the task), unless keep_model keeps global as a cache.
 *  - The budget is charged in roost_cproto_finish before the first byte
 *    of the update is handed to send(); a failed charge sends nothing.
 *  - Each task is answered at most once (Update or Decline).
 * Locking: none (cproto.h states the threading rule).
 */
#include "client/src/cproto.h"

#include "common/alloc.h"
#include "common/wire.h"
#include "common/xfer.h"
#include "dp/noise.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

struct roost_cproto {
    const roost_allocator *alloc;
    roost_cproto_config cfg;
    roost_noise_memo *own_memo; /* when cfg.noise_memo was NULL */
    roost_cproto_send_fn send;
    void *send_arg;
    roost_errmsg em;
    enum roost_cproto_state state;
    int64_t backoff_until_ms;

    /* The task in hand. */
    roost_cproto_job job;
    char spec[ROOST_WIRE_DEFAULT_MAX_STRING_BYTES + 1];
    uint8_t task_hash[ROOST_XFER_HASH_BYTES];
    roost_xfer_receiver *rx;
    float *global;
    float *params;
    size_t cap; /* floats allocated in global and params */

    /* Cached model (keep_model). */
    bool has_cached;
    uint8_t cached_hash[ROOST_XFER_HASH_BYTES];

    double eps_spent;
    uint64_t rounds;
};

static int
send_env(roost_cproto *p, Roost__V1__Envelope *env)
{
    int rc = p->send(p->send_arg, env);
    if (rc != ROOST_OK)
        roost_fail(&p->em, rc, "send failed: %s", roost_strerror(rc));
    return rc;
}

static void
drop_buffers(roost_cproto *p, bool keep_global)
{
    roost_xfer_receiver_destroy(p->rx);
    p->rx = NULL;
    roost_alloc_free(p->alloc, p->params);
    p->params = NULL;
    if (!keep_global) {
        roost_alloc_free(p->alloc, p->global);
        p->global = NULL;
        p->cap = 0;
        p->has_cached = false;
    }
}

/* End the task in hand: keep the global model only as a cache. */
static void
end_task(roost_cproto *p)
{
    bool keep = p->cfg.keep_model && p->global != NULL &&
                p->state != ROOST_CP_RECEIVING;
    if (keep) {
        memcpy(p->cached_hash, p->task_hash, sizeof(p->cached_hash));
        p->has_cached = true;
    }
    drop_buffers(p, keep);
}

int
roost_cproto_create(roost_cproto **out, const roost_allocator *alloc,
                    const roost_cproto_config *cfg, roost_cproto_send_fn send,
                    void *send_arg, roost_errmsg *em)
{
    if (out == NULL || cfg == NULL || send == NULL ||
        cfg->budget.plan == NULL || cfg->budget.charge == NULL ||
        cfg->budget.remaining == NULL)
        return roost_fail(em, ROOST_EINVAL, "client protocol: NULL argument");
    *out = NULL;
    if (cfg->n_local == 0)
        return roost_fail(em, ROOST_EINVAL, "client has no local examples");
    roost_cproto *p = roost_alloc_calloc(alloc, 1, sizeof(*p));
    if (p == NULL)
        return roost_fail(em, ROOST_ENOMEM, "client protocol: out of memory");
    p->alloc = alloc;
    p->cfg = *cfg;
    if (p->cfg.noise_memo == NULL) {
        int rc = roost_noise_memo_create(&p->own_memo, alloc, em);
        if (rc != ROOST_OK) {
            roost_alloc_free(alloc, p);
            return rc;
        }
        p->cfg.noise_memo = p->own_memo;
    }
    p->send = send;
    p->send_arg = send_arg;
    p->state = ROOST_CP_IDLE;
    p->eps_spent = (double)NAN;
    *out = p;
    return ROOST_OK;
}

void
roost_cproto_destroy(roost_cproto *p)
{
    if (p == NULL)
        return;
    drop_buffers(p, false);
    roost_noise_memo_destroy(p->own_memo);
    roost_alloc_free(p->alloc, p);
}

int
roost_cproto_check_in(roost_cproto *p, int64_t now_ms)
{
    (void)now_ms;
    if (p->state == ROOST_CP_EXHAUSTED)
        return roost_fail(&p->em, ROOST_EBUDGET,
                          "privacy budget exhausted; not checking in");
    double remaining = 0, delta = 0;
    int rc = p->cfg.budget.remaining(p->cfg.budget.arg, &remaining, &delta);
    if (rc != ROOST_OK)
        return roost_fail(&p->em, rc, "cannot read the privacy budget");
    /* A budget spent to the last bit (remaining exactly 0) is exhausted,
     * not "a little left": every DP task would exceed it, and the
     * coordinator selects for a DP training round only clients that
     * report some budget left (coord.c, selectable), so a check-in would
     * wait for a task that may never come while the host went on as if
     * nothing were wrong. (The coordinator would still select such a
     * client for an evaluation round, or for any round when it runs
     * without DP: the client gives those up too; docs/client.md.) Any
     * positive remainder still checks in; planning the task decides
     * whether it fits. */
    if (!(remaining > 0)) {
        p->state = ROOST_CP_EXHAUSTED;
        return roost_fail(&p->em, ROOST_EBUDGET,
                          "privacy budget exhausted: %g of epsilon remains "
                          "at delta %g; taking no more tasks",
                          remaining, delta);
    }
    Roost__V1__Envelope env;
    Roost__V1__CheckIn ci;
    roost__v1__envelope__init(&env);
    roost__v1__check_in__init(&ci);
    ci.software_version = (char *)(uintptr_t)ROOST_VERSION_STRING;
    ci.protocol_version = ROOST_WIRE_PROTOCOL_VERSION;
    if (p->has_cached) {
        ci.model_hash.data = p->cached_hash;
        ci.model_hash.len = sizeof(p->cached_hash);
    }
    ci.epsilon_remaining = remaining;
    ci.budget_delta = delta;
    if (p->cfg.label != NULL)
        ci.display_label = (char *)(uintptr_t)p->cfg.label;
    env.body_case = ROOST__V1__ENVELOPE__BODY_CHECK_IN;
    env.check_in = &ci;
    rc = send_env(p, &env);
    if (rc == ROOST_OK)
        p->state = ROOST_CP_WAITING;
    return rc;
}

/*
 * Check in for the next task after one ended (acknowledged or declined).
 * A budget that is now spent to the last bit ends participation here:
 * the state becomes EXHAUSTED, which hosts look at after each call. That
 * is not an error of the message or result being handled, so it is not
 * returned (a host drops the connection over an error of on_message).
 */
static int
check_in_again(roost_cproto *p, int64_t now_ms)
{
    int rc = roost_cproto_check_in(p, now_ms);
    return rc == ROOST_EBUDGET ? ROOST_OK : rc;
}

static int
send_decline(roost_cproto *p, Roost__V1__DeclineReason reason, const char *why)
{
    Roost__V1__Envelope env;
    Roost__V1__Decline d;
    roost__v1__envelope__init(&env);
    roost__v1__decline__init(&d);
    d.round_id = (uint64_t)p->job.round_id;
    d.task_id = p->job.task_id;
    d.reason = reason;
    d.message = (char *)(uintptr_t)why;
    env.body_case = ROOST__V1__ENVELOPE__BODY_DECLINE;
    env.decline = &d;
    roost_log(&p->cfg.log, ROOST_LOG_INFO, "declining round %" PRId64 ": %s",
              p->job.round_id, why);
    int rc = send_env(p, &env);
    /* A client that declined one task (it cannot evaluate, this model or
     * round failed) may still take the next: it checks in again at once.
     * One whose budget is spent (EXHAUSTED) does not. */
    if (rc == ROOST_OK && p->state == ROOST_CP_IDLE)
        rc = check_in_again(p, 0);
    return rc;
}

/* Make sure global/params hold n floats. */
static int
reserve(roost_cproto *p, size_t n)
{
    if (p->cap >= n && p->global != NULL)
        return ROOST_OK;
    drop_buffers(p, false);
    p->global = roost_alloc_calloc(p->alloc, n, sizeof(float));
    if (p->global == NULL)
        return ROOST_ENOMEM;
    p->cap = n;
    return ROOST_OK;
}

static int receive_model(roost_cproto *p, const Roost__V1__Task *t);

/* The privacy event of the job's DP task: its plan, and the noise sampler
 * it will draw from (the trainer's: same sigma, clip and default grid),
 * with one draw per parameter per step. */
static int
dp_event(roost_cproto *p, const roost_local_plan_info *plan,
         roost_ledger_event *ev, roost_errmsg *em)
{
    const roost_cproto_job *j = &p->job;
    memset(ev, 0, sizeof(*ev));
    ev->q = plan->q;
    ev->sigma = j->task.noise_multiplier;
    ev->steps = plan->steps;
    ev->delta = j->task.delta;
    ev->round_id = j->round_id;
    if (j->n_params == 0 ||
        plan->steps > ROOST_LEDGER_MAX_DRAWS / (uint64_t)j->n_params)
        return roost_fail(em, ROOST_EINVAL,
                          "a task of %" PRIu64 " steps over %zu parameters",
                          plan->steps, j->n_params);
    ev->draws = plan->steps * (uint64_t)j->n_params;
    return roost_noise_closeness_for(p->cfg.noise_memo, ev->sigma,
                                     j->task.clip_norm, 0, &ev->mu, &ev->beta,
                                     em);
}

static int
on_task(roost_cproto *p, const Roost__V1__Task *t)
{
    if (p->state != ROOST_CP_WAITING)
        return roost_fail(&p->em, ROOST_EPROTO,
                          "task arrived while not waiting for one");
    bool evaluate = t->kind == ROOST__V1__TASK_KIND__TASK_KIND_EVALUATE;
    if (t->model == NULL || t->model_hash.len != ROOST_XFER_HASH_BYTES ||
        (!evaluate && (t->kind != ROOST__V1__TASK_KIND__TASK_KIND_TRAIN ||
                       t->training == NULL)))
        return roost_fail(&p->em, ROOST_EPROTO,
                          "task is not a complete training or evaluation "
                          "task");
    const Roost__V1__ModelSpec *ms = t->model;
    roost_cproto_job *j = &p->job;
    memset(j, 0, sizeof(*j));
    j->evaluate = evaluate;
    snprintf(p->spec, sizeof(p->spec), "%s", ms->spec ? ms->spec : "");
    j->model_spec = p->spec;
    j->channels = ms->input_channels;
    j->height = ms->input_height;
    j->width = ms->input_width;
    j->n_params = (size_t)ms->num_params;
    j->round_id = (int64_t)t->round_id;
    j->task_id = t->task_id;
    memcpy(p->task_hash, t->model_hash.data, sizeof(p->task_hash));
    if (evaluate) {
        if (!p->cfg.allow_evaluation) {
            p->state = ROOST_CP_IDLE;
            return send_decline(
                p, ROOST__V1__DECLINE_REASON__DECLINE_REASON_UNSUPPORTED,
                "federated evaluation is not enabled on this client (its "
                "results are not covered by differential privacy)");
        }
        return receive_model(p, t);
    }
    const Roost__V1__TrainingParams *tp = t->training;
    j->task.local_epochs = tp->local_epochs;
    j->task.batch_size = tp->batch_size;
    j->task.learning_rate = tp->learning_rate;
    j->task.momentum = tp->momentum;
    j->task.weight_decay = tp->weight_decay;
    j->task.prox_mu = tp->prox_mu;
    if (t->dp != NULL && t->dp->enabled) {
        j->task.dp = true;
        j->task.noise_multiplier = t->dp->noise_multiplier;
        j->task.clip_norm = t->dp->clip_norm;
        j->task.delta = t->dp->delta;
        j->task.sampling_rate = t->dp->sampling_rate;
        j->task.expected_batch = t->dp->expected_batch_size;
        /* The sampler's tables outlive the round in the memo: the next
         * task with the same sigma and clip reuses them. */
        j->task.noise_memo = p->cfg.noise_memo;
    }

    /* Plan before anything else: a task that would break the budget is
     * declined without downloading the model. */
    if (j->task.dp) {
        roost_local_plan_info plan;
        roost_ledger_event ev;
        double eps_after = 0;
        roost_errmsg em;
        roost_errmsg_clear(&em);
        int rc = roost_local_plan(&j->task, p->cfg.n_local, &plan, &em);
        if (rc == ROOST_OK)
            rc = dp_event(p, &plan, &ev, &em);
        if (rc != ROOST_OK) {
            p->state = ROOST_CP_IDLE;
            return send_decline(
                p, ROOST__V1__DECLINE_REASON__DECLINE_REASON_UNSUPPORTED,
                em.text);
        }
        rc = p->cfg.budget.plan(p->cfg.budget.arg, &ev, &eps_after, &em);
        if (rc == ROOST_EBUDGET) {
            p->state = ROOST_CP_EXHAUSTED;
            roost_fail(&p->em, ROOST_EBUDGET, "%s", em.text);
            return send_decline(
                p, ROOST__V1__DECLINE_REASON__DECLINE_REASON_BUDGET_EXHAUSTED,
                em.text);
        }
        if (rc != ROOST_OK) {
            /* A ledger that cannot be read refuses training; it never
             * assumes nothing was spent. */
            roost_fail(&p->em, rc, "privacy ledger: %s", em.text);
            send_decline(p, ROOST__V1__DECLINE_REASON__DECLINE_REASON_NOT_NOW,
                         "privacy ledger unavailable");
            p->state = ROOST_CP_IDLE; /* the host treats rc as fatal */
            return rc;
        }
    } else if (!p->cfg.allow_no_dp) {
        /* The device, not the coordinator, decides whether its budget
         * applies: a task without DP is refused unless the embedder
         * allowed such tasks. */
        roost_log(&p->cfg.log, ROOST_LOG_ERROR,
                  "round %" PRId64 " asks for training WITHOUT differential "
                  "privacy; declined (this client requires DP)",
                  j->round_id);
        p->state = ROOST_CP_IDLE;
        return send_decline(
            p, ROOST__V1__DECLINE_REASON__DECLINE_REASON_UNSUPPORTED,
            "this client requires differential privacy and the task has "
            "none");
    } else {
        /* Without DP the update is not private: say so in the log of
         * every task, not once. */
        roost_log(&p->cfg.log, ROOST_LOG_WARN,
                  "round %" PRId64 " runs WITHOUT differential privacy "
                  "(allowed by this client's INSECURE allow-no-DP setting)",
                  j->round_id);
    }
    return receive_model(p, t);
}

/* After a task was accepted: receive its parameters, or use the cached
 * model the coordinator says this client holds. */
static int
receive_model(roost_cproto *p, const Roost__V1__Task *t)
{
    roost_cproto_job *j = &p->job;
    if (j->n_params == 0 || j->n_params > (size_t)1 << 30)
        return roost_fail(&p->em, ROOST_EPROTO, "task model has %zu params",
                          j->n_params);
    if (t->parameters_follow) {
        int rc = reserve(p, j->n_params);
        if (rc != ROOST_OK)
            return roost_fail(&p->em, rc, "no memory for the model");
        p->has_cached = false;
        roost_xfer_expect ex;
        memset(&ex, 0, sizeof(ex));
        ex.round_id = t->round_id;
        ex.task_id = t->task_id;
        ex.num_params = j->n_params;
        ex.chunk_count = t->param_chunk_count;
        memcpy(ex.sha256, t->model_hash.data, sizeof(ex.sha256));
        rc = roost_xfer_receiver_create(&p->rx, p->alloc, &ex, p->global,
                                        p->cap, &p->em);
        if (rc != ROOST_OK)
            return rc;
        p->state = ROOST_CP_RECEIVING;
        return ROOST_OK;
    }
    /* The coordinator says we hold the model: we must, with this hash. */
    if (!p->has_cached || p->global == NULL || p->cap < j->n_params ||
        memcmp(p->cached_hash, p->task_hash, sizeof(p->task_hash)) != 0)
        return roost_fail(&p->em, ROOST_EPROTO,
                          "task omits parameters the client does not hold");
    p->state = ROOST_CP_READY;
    return ROOST_OK;
}

static int
on_chunk(roost_cproto *p, const Roost__V1__ParamChunk *c)
{
    if (p->state != ROOST_CP_RECEIVING) {
        /* The parameters of a task this client just declined follow the
         * task on the wire anyway: drop them. */
        if (c->task_id == p->job.task_id &&
            c->round_id == (uint64_t)p->job.round_id)
            return ROOST_OK;
        return roost_fail(&p->em, ROOST_EPROTO,
                          "parameter chunk outside a task");
    }
    bool complete = false;
    int rc = roost_xfer_receiver_add(p->rx, c, &complete, &p->em);
    if (rc != ROOST_OK)
        return rc;
    if (complete) {
        roost_xfer_receiver_destroy(p->rx);
        p->rx = NULL;
        p->state = ROOST_CP_READY;
    }
    return ROOST_OK;
}

int
roost_cproto_on_message(roost_cproto *p, const Roost__V1__Envelope *m,
                        int64_t now_ms)
{
    switch (m->body_case) {
    case ROOST__V1__ENVELOPE__BODY_TASK:
        return on_task(p, m->task);
    case ROOST__V1__ENVELOPE__BODY_PARAM_CHUNK:
        return on_chunk(p, m->param_chunk);
    case ROOST__V1__ENVELOPE__BODY_COME_BACK_LATER:
        /* Also sent when a round closes under a task still in hand: drop
         * it (training that is under way is finished by the host and then
         * discarded in roost_cproto_finish). */
        if (p->state == ROOST_CP_TRAINING) {
            p->backoff_until_ms =
                now_ms + (int64_t)m->come_back_later->retry_after_ms;
            p->state = ROOST_CP_BACKOFF;
            return ROOST_OK; /* buffers belong to the host until finish */
        }
        if (p->state != ROOST_CP_EXHAUSTED) {
            end_task(p);
            p->backoff_until_ms =
                now_ms + (int64_t)m->come_back_later->retry_after_ms;
            p->state = ROOST_CP_BACKOFF;
        }
        return ROOST_OK;
    case ROOST__V1__ENVELOPE__BODY_ACK:
        if (p->state != ROOST_CP_AWAIT_ACK)
            return ROOST_OK; /* an ack for a refused stray: nothing to do */
        if (!m->ack->accepted)
            roost_log(&p->cfg.log, ROOST_LOG_WARN,
                      "round %" PRIu64 ": %s refused: %s (%s)",
                      m->ack->round_id,
                      p->job.evaluate ? "evaluation" : "update",
                      roost_errname((int)m->ack->error_code),
                      m->ack->reason ? m->ack->reason : "");
        else if (!p->job.evaluate)
            p->rounds++; /* evaluations are not contributed rounds */
        end_task(p);
        p->state = ROOST_CP_IDLE;
        return check_in_again(p, now_ms);
    case ROOST__V1__ENVELOPE__BODY_ERROR:
        return roost_fail(&p->em, ROOST_EREFUSED, "coordinator error %s: %s",
                          roost_errname((int)m->error->code),
                          m->error->message ? m->error->message : "");
    default:
        return roost_fail(&p->em, ROOST_EPROTO,
                          "message type %d is not valid from a coordinator",
                          (int)m->body_case);
    }
}

void
roost_cproto_disconnected(roost_cproto *p)
{
    if (p->state == ROOST_CP_EXHAUSTED)
        return;
    if (p->state != ROOST_CP_TRAINING)
        end_task(p);
    p->state = p->state == ROOST_CP_TRAINING ? ROOST_CP_BACKOFF : ROOST_CP_IDLE;
    p->backoff_until_ms = 0;
}

int
roost_cproto_tick(roost_cproto *p, int64_t now_ms, int64_t *next_ms)
{
    int rc = ROOST_OK;
    if (p->state == ROOST_CP_BACKOFF && now_ms >= p->backoff_until_ms)
        rc = roost_cproto_check_in(p, now_ms);
    if (next_ms != NULL)
        *next_ms =
            p->state == ROOST_CP_BACKOFF ? p->backoff_until_ms : INT64_MAX;
    return rc;
}

enum roost_cproto_state
roost_cproto_state(const roost_cproto *p)
{
    return p->state;
}

int
roost_cproto_take_job(roost_cproto *p, roost_cproto_job **job)
{
    if (p->state != ROOST_CP_READY)
        return roost_fail(&p->em, ROOST_ESTATE, "no training job ready");
    if (p->params == NULL && !p->job.evaluate) {
        p->params =
            roost_alloc_calloc(p->alloc, p->job.n_params, sizeof(float));
        if (p->params == NULL)
            return roost_fail(&p->em, ROOST_ENOMEM, "no memory to train");
    }
    p->job.global = p->global;
    p->job.params = p->params;
    p->state = ROOST_CP_TRAINING;
    *job = &p->job;
    return ROOST_OK;
}

static int
send_update(roost_cproto *p, const roost_local_result *res, double eps,
            uint64_t steps, double q)
{
    roost_cproto_job *j = &p->job;
    /* delta = trained - global, in place in params. */
    for (size_t i = 0; i < j->n_params; i++)
        p->params[i] -= p->global[i];
    uint8_t hash[ROOST_XFER_HASH_BYTES];
    int rc = roost_xfer_hash_floats(p->params, j->n_params, hash);
    if (rc != ROOST_OK)
        return roost_fail(&p->em, rc, "cannot hash the update");
    roost_xfer_sender snd;
    uint32_t n_chunks = 0;
    rc = roost_xfer_sender_init(&snd, p->params, j->n_params, 0,
                                (uint64_t)j->round_id, j->task_id, &n_chunks);
    if (rc != ROOST_OK)
        return roost_fail(&p->em, rc, "cannot chunk the update");
    Roost__V1__Envelope env;
    Roost__V1__Update up;
    Roost__V1__Metrics met;
    Roost__V1__DpReport dp;
    roost__v1__envelope__init(&env);
    roost__v1__update__init(&up);
    roost__v1__metrics__init(&met);
    roost__v1__dp_report__init(&dp);
    up.round_id = (uint64_t)j->round_id;
    up.task_id = j->task_id;
    up.num_params = j->n_params;
    up.chunk_count = n_chunks;
    up.delta_sha256.data = hash;
    up.delta_sha256.len = sizeof(hash);
    if (j->task.dp) {
        /* The example count and the training loss are functions of the
         * private data that the DP guarantee does not cover: they are not
         * sent. The coordinator weights DP updates equally. */
        up.num_examples = 0;
        dp.noise_multiplier = j->task.noise_multiplier;
        dp.clip_norm = j->task.clip_norm;
        dp.sampling_rate = q;
        dp.steps = steps;
        dp.delta = j->task.delta;
        dp.epsilon_spent = eps;
        up.dp = &dp;
    } else {
        up.num_examples = res->examples;
        met.loss = isfinite(res->loss) ? res->loss : 0.0;
        met.accuracy_measured = isfinite(res->accuracy);
        met.accuracy = met.accuracy_measured ? res->accuracy : 0.0;
        up.metrics = &met;
    }
    env.body_case = ROOST__V1__ENVELOPE__BODY_UPDATE;
    env.update = &up;
    rc = send_env(p, &env);
    if (rc != ROOST_OK)
        return rc;
    Roost__V1__Envelope cenv;
    Roost__V1__ParamChunk ch;
    roost__v1__envelope__init(&cenv);
    roost__v1__param_chunk__init(&ch);
    cenv.body_case = ROOST__V1__ENVELOPE__BODY_PARAM_CHUNK;
    cenv.param_chunk = &ch;
    for (;;) {
        bool done = false;
        rc = roost_xfer_sender_next(&snd, &ch, &done);
        if (rc != ROOST_OK || done)
            break;
        rc = send_env(p, &cenv);
        if (rc != ROOST_OK)
            break;
    }
    /* params now hold a delta; the buffer is not reused as a model. */
    roost_alloc_free(p->alloc, p->params);
    p->params = NULL;
    return rc;
}

int
roost_cproto_finish(roost_cproto *p, int train_rc,
                    const roost_local_result *result, int64_t now_ms)
{
    roost_cproto_job *j = &p->job;
    if (p->state == ROOST_CP_BACKOFF || p->state == ROOST_CP_IDLE) {
        /* The round closed (or the connection dropped) while training:
         * nothing was charged and nothing is sent. */
        end_task(p);
        return ROOST_OK;
    }
    if (p->state != ROOST_CP_TRAINING)
        return roost_fail(&p->em, ROOST_ESTATE, "no training job in hand");
    if (j->evaluate && train_rc == ROOST_OK)
        return roost_fail(&p->em, ROOST_ESTATE,
                          "an evaluation job ends with "
                          "roost_cproto_finish_eval");
    if (train_rc != ROOST_OK) {
        end_task(p);
        p->state = ROOST_CP_IDLE;
        char why[160];
        snprintf(why, sizeof(why), "local training failed: %s",
                 roost_strerror(train_rc));
        int rc = send_decline(
            p, ROOST__V1__DECLINE_REASON__DECLINE_REASON_NOT_NOW, why);
        return rc;
    }
    double eps = (double)NAN, q = 0;
    uint64_t steps = result->steps;
    if (j->task.dp) {
        roost_local_plan_info plan;
        roost_ledger_event ev;
        roost_errmsg em;
        int rc = roost_local_plan(&j->task, p->cfg.n_local, &plan, &em);
        if (rc == ROOST_OK && plan.steps != result->steps)
            rc = roost_fail(&em, ROOST_ESTATE,
                            "trained %" PRIu64 " steps, planned %" PRIu64,
                            result->steps, plan.steps);
        if (rc == ROOST_OK)
            rc = dp_event(p, &plan, &ev, &em);
        /* The ledger records what the trainer drew, which the plan must
         * have foreseen. */
        if (rc == ROOST_OK && result->noise_draws != ev.draws)
            rc = roost_fail(&em, ROOST_ESTATE,
                            "drew %" PRIu64 " noise values, planned %" PRIu64,
                            result->noise_draws, ev.draws);
        char task_id[32];
        snprintf(task_id, sizeof(task_id), "%" PRIu64, j->task_id);
        ev.task_id = task_id;
        /* Durable before anything derived from the data leaves. */
        if (rc == ROOST_OK)
            rc = p->cfg.budget.charge(p->cfg.budget.arg, &ev, &eps, &em);
        if (rc != ROOST_OK) {
            end_task(p);
            p->state = rc == ROOST_EBUDGET ? ROOST_CP_EXHAUSTED : ROOST_CP_IDLE;
            roost_fail(&p->em, rc, "not releasing the update: %s", em.text);
            send_decline(
                p,
                rc == ROOST_EBUDGET
                    ? ROOST__V1__DECLINE_REASON__DECLINE_REASON_BUDGET_EXHAUSTED
                    : ROOST__V1__DECLINE_REASON__DECLINE_REASON_NOT_NOW,
                em.text);
            return rc;
        }
        p->eps_spent = eps;
        q = plan.q;
    }
    int rc = send_update(p, result, eps, steps, q);
    p->state = ROOST_CP_AWAIT_ACK;
    (void)now_ms;
    return rc;
}

int
roost_cproto_finish_eval(roost_cproto *p, int eval_rc, uint64_t n, double loss,
                         double accuracy, int64_t now_ms)
{
    (void)now_ms;
    if (p->state == ROOST_CP_BACKOFF || p->state == ROOST_CP_IDLE) {
        end_task(p);
        return ROOST_OK;
    }
    if (p->state != ROOST_CP_TRAINING || !p->job.evaluate)
        return roost_fail(&p->em, ROOST_ESTATE, "no evaluation job in hand");
    if (eval_rc != ROOST_OK || n == 0 || !isfinite(loss) || loss < 0 ||
        !(accuracy >= 0 && accuracy <= 1)) {
        end_task(p);
        p->state = ROOST_CP_IDLE;
        char why[160];
        snprintf(why, sizeof(why), "local evaluation failed: %s",
                 roost_strerror(eval_rc != ROOST_OK ? eval_rc : ROOST_EINVAL));
        return send_decline(
            p, ROOST__V1__DECLINE_REASON__DECLINE_REASON_NOT_NOW, why);
    }
    Roost__V1__Envelope env;
    Roost__V1__EvaluationResult er;
    roost__v1__envelope__init(&env);
    roost__v1__evaluation_result__init(&er);
    er.round_id = (uint64_t)p->job.round_id;
    er.task_id = p->job.task_id;
    er.num_examples = n;
    er.loss = loss;
    er.accuracy = accuracy;
    env.body_case = ROOST__V1__ENVELOPE__BODY_EVALUATION_RESULT;
    env.evaluation_result = &er;
    p->state = ROOST_CP_AWAIT_ACK;
    return send_env(p, &env);
}

double
roost_cproto_epsilon(const roost_cproto *p)
{
    return p->eps_spent;
}

int64_t
roost_cproto_round_id(const roost_cproto *p)
{
    return p->job.round_id;
}

uint64_t
roost_cproto_rounds(const roost_cproto *p)
{
    return p->rounds;
}

const char *
roost_cproto_errmsg(const roost_cproto *p)
{
    return p->em.text;
}
