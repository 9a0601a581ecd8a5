/*
 * coord.h - the coordinator's round logic, independent of any transport.
 *
 * `roost serve` drives it from a poll loop over the TLS channel; `roost sim`
 * drives it from an in-process channel. Both hand it the same three kinds
 * of event -- a session opened (with the client's certificate identity), a
 * decoded message from a session, a session closed -- plus a clock tick,
 * and it answers by sending messages through the caller's send function.
 * Everything a round does happens here, so deployment and simulation run
 * the same code.
 *
 * A round, as in ARCHITECTURE.md:
 *   1. Clients check in; checked-in clients wait (the long poll) until a
 *      round opens, or are told to come back later (pacing).
 *   2. When at least min_available clients wait and no round is open, the
 *      coordinator opens round r = last committed + 1, selects
 *      ceil(clients_per_round * over_selection) of them at random (CSPRNG),
 *      and sends each a Task, followed by the global parameters in chunks
 *      unless the client already holds their hash.
 *   3. Each Update and its chunks are reassembled (SHA-256 checked),
 *      validated (shape, finiteness, norm, example cap) and folded into the
 *      strategy's streaming aggregate, then acknowledged.
 *   4. When clients_per_round updates are in (quorum), or at the deadline
 *      with at least min_clients, the strategy produces the new model and
 *      the round, its participants and updates are committed to the store
 *      in one transaction. At the deadline with fewer, the round is
 *      recorded as failed and the model is unchanged. Only then does the
 *      next round open.
 * Updates for another round, a second update for the same task, and
 * updates after the round closed are refused with a reason in the Ack. With
 * DP on, so is an update whose DP report is missing or malformed (a noise
 * multiplier below the configured one or NaN; an epsilon, delta, sampling
 * rate or clip outside the ranges of proto/roost.proto's DpReport), and
 * an update whose training figures are malformed (a loss that is not a
 * finite value >= 0, a measured accuracy outside [0, 1]).
 * A selected client that declines is replaced by a waiting client that
 * was not selected (so one budget-exhausted client does not cost the
 * round its quorum), and with DP on, clients whose check-in reports no
 * budget left are not selected at all.
 *
 * Federated evaluation (fed_eval_every > 0): after every N-th committed
 * training round, a round of kind "eval" sends the new model to clients
 * with an EVALUATE task; their EvaluationResults (checked: once per task,
 * examples >= 1 and capped, finite loss >= 0, accuracy in [0, 1]) are
 * combined weighted by examples and recorded as the round's client-reported
 * loss and accuracy and as fed_eval.* metrics. The model is unchanged.
 *
 * The strategy's state (server momentum, adaptive moments, adaptive clip)
 * is committed with every new model and loaded on resume.
 *
 * Resume: roost_coord_create() continues from the store's last committed
 * round and its checkpoint. A coordinator killed mid-round loses only the
 * open round, which is run again under the same number; acknowledged
 * updates of that round are simply asked for again.
 *
 * Time: the coordinator reads no clock. Every call that may act on time
 * carries a roost_coord_time with two readings, because a round needs two
 * kinds of time: its deadline and duration are intervals and come from a
 * clock that never steps, while its record and the deadline a task names
 * are dates and come from the wall clock (see roost_coord_time).
 *
 * Threading: one thread owns a roost_coord and makes every call on it. The
 * send function is called synchronously from within those calls.
 */
#ifndef ROOST_SERVER_COORD_H
#define ROOST_SERVER_COORD_H

#include <roost/roost.h>

#include "common/dataset.h"
#include "common/error.h"
#include "common/log.h"
#include "server/store.h"
#include "server/strategy.h"
#include "server/validate.h"

#include "roost.pb-c.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct roost_coord roost_coord;

/*
 * roost_coord_time - the time of one call, read by the caller from two
 * clocks at the moment of the call.
 *
 * mono_ms: milliseconds on a clock that never steps (roost serve reads
 * CLOCK_BOOTTIME, roost sim CLOCK_MONOTONIC; any origin) and never goes
 * back from one call to the next. A round's deadline (opening +
 * round_timeout_ms), the *next_ms of roost_coord_tick and a round's
 * seconds are on this clock, so a wall-clock step (an NTP correction, an
 * operator's `date -s`) neither closes an open round at once nor keeps it
 * open longer than its timeout.
 *
 * wall_ms: milliseconds since the Unix epoch (CLOCK_REALTIME), which may
 * step either way. Only what is meant as a date uses it: the timestamps
 * written to the store (a round's start and commit, each update's
 * receipt, a client's last connection, the open-round note) and the
 * deadline_unix_ms of a task, which is wall_ms at sending plus the time
 * the round has left on the monotonic clock. A record written across a
 * step keeps what the wall clock said, even a commit time before the
 * start; the duration is the round summary's seconds. A wall_ms of 0 is
 * no "now": the store reads the wall clock for a 0 commit time, last
 * connection or open-round time, but a round's start, an update's
 * receipt and a task's deadline are written as 0 (plus the time left).
 *
 * Nothing on the monotonic clock reaches the store: a coordinator started
 * again (after a crash or a reboot, when the monotonic clock starts again
 * from near zero) runs the lost round afresh, from its own clock.
 */
typedef struct roost_coord_time {
    int64_t mono_ms;
    int64_t wall_ms;
} roost_coord_time;

/*
 * ROOST_COORD_MAX_EXAMPLES - the largest example count one update may
 * report. An update claiming more is refused (ROOST_ETOOBIG, with the
 * reason in its Ack), whatever max_examples says; max_examples caps the
 * counts below it. 2^40 (about 1.1e12) is far above any real device's or
 * silo's data, yet small enough that the sum over a round cannot overflow
 * the signed 64-bit count the store keeps: a training round accepts at
 * most its quorum of updates (it closes when the quorum is in), the
 * quorum is at most ROOST_COORD_MAX_QUORUM = 2^22, and 2^40 * 2^22 = 2^62.
 * One client therefore can never make a round fail to commit.
 */
#define ROOST_COORD_MAX_EXAMPLES (UINT64_C(1) << 40)
/* The largest clients_per_round and fed_eval_clients (about 4.2 million;
 * the configuration file allows 100000, roost sim 1000000). */
#define ROOST_COORD_MAX_QUORUM (UINT32_C(1) << 22)

/* How the coordinator talks to sessions. send() must copy or consume the
 * message before returning (the coordinator reuses it); it returns
 * ROOST_OK or an error, after which the coordinator treats the session as
 * closed. close() asks the transport to end a session (for protocol
 * violations); the transport later reports it through
 * roost_coord_session_closed(). Both run on the coordinator's thread. */
typedef struct roost_coord_io {
    int (*send)(void *arg, uint64_t session, const Roost__V1__Envelope *msg);
    void (*close)(void *arg, uint64_t session, const char *reason);
    void *arg;
} roost_coord_io;

/* What a committed (or failed) round looks like to the program running the
 * coordinator, e.g. for progress lines. */
typedef struct roost_coord_round_summary {
    int64_t round_id;
    bool evaluation;       /* a federated evaluation round (no training) */
    bool committed;        /* false: no quorum, model unchanged */
    uint32_t selected;     /* tasks sent */
    uint32_t accepted;     /* updates aggregated */
    uint32_t refused;      /* updates refused by validation */
    uint32_t dropped;      /* declined or disconnected; a client that had
                              not answered when the round closed is in
                              selected only, as the record's participants
                              ("selected": never answered) and n_dropped */
    uint64_t examples;     /* sum of capped example counts aggregated */
    double train_loss;     /* example-weighted mean of reports, or NaN */
    double eval_loss;      /* global model on the held-out set, or NaN */
    double eval_accuracy;  /* in [0,1], or NaN */
    double epsilon_max;    /* largest epsilon reported spent, or NaN */
    double epsilon_median; /* median over accepted updates, or NaN */
    /* Evaluation rounds: example-weighted means of the clients' answers
     * (accepted counts the answers), or NaN. */
    double fed_eval_loss, fed_eval_accuracy;
    double seconds; /* from opening to commit, monotonic */
} roost_coord_round_summary;

typedef void (*roost_coord_round_fn)(void *arg,
                                     const roost_coord_round_summary *s);

typedef struct roost_coord_config {
    /* Model: spec string (preset or layer list) and input shape. */
    const char *model_spec;
    uint32_t input_channels, input_height, input_width;
    /* Seed of the initial parameters (not a privacy mechanism). */
    uint64_t init_seed;

    /* Selection and pacing. */
    uint32_t clients_per_round; /* quorum target K (>= 1) */
    uint32_t min_clients;       /* fewest updates that commit at deadline */
    double over_selection;      /* tasks sent = ceil(K * this), >= 1 */
    uint32_t min_available;     /* waiting clients needed to open a round */
    uint64_t round_timeout_ms;  /* deadline after opening (monotonic) */
    uint64_t retry_after_ms;    /* 0: unselected clients keep waiting;
                                   else told to come back after this */
    uint64_t max_rounds;        /* stop after this many training rounds
                                   (and a federated evaluation due after
                                   the last); 0: forever */
    /* Federated evaluation: after every fed_eval_every-th training round
     * that committed, one round of kind "eval" sends the new model to
     * fed_eval_clients clients (0: clients_per_round), which answer with
     * loss and accuracy on their local data. 0: never. Clients release
     * these figures without DP and decline unless their embedder allows
     * it (roost_config_set_allow_evaluation). */
    uint32_t fed_eval_every;
    uint32_t fed_eval_clients;

    /* Sent to clients in each task. */
    uint32_t local_epochs;
    uint32_t batch_size;
    double learning_rate, momentum, weight_decay;
    bool dp_enabled;
    double dp_noise_multiplier, dp_clip_norm, dp_delta;
    double dp_sampling_rate;    /* 0: client derives from batch */
    uint32_t dp_expected_batch; /* used when sampling_rate is 0 */

    /* Update validation and aggregation. */
    double max_update_norm; /* 0: no bound */
    roost_norm_policy norm_policy;
    uint64_t max_examples; /* cap on reported counts; 0: none */
    roost_strategy_config strategy;

    /* Optional held-out evaluation of new global models (borrowed; must
     * outlive the coordinator): after every eval_every-th training round
     * (0 or 1: every round) and after the last one (max_rounds). */
    const roost_dataset *eval_set;
    uint32_t eval_every;
    /* Optional: runs the held-out evaluation instead of the coordinator's
     * single-threaded loop (e.g. roost sim spreads it over its worker
     * threads). Called on the coordinator's thread; must compute the mean
     * cross-entropy and accuracy of params on all of eval_set. */
    int (*evaluate)(void *arg, const float *params, double *loss,
                    double *accuracy);
    void *evaluate_arg;

    /* Deterministic selection for reproducible simulations (INSECURE: the
     * selection becomes predictable; it is not a privacy mechanism, but
     * say so). 0: selection draws from the CSPRNG. */
    uint64_t selection_seed;

    /* Records every round in this store (borrowed, required). */
    roost_store *store;
    const char *run_name; /* recorded with the run, may be NULL */

    roost_logger log;
    roost_coord_round_fn on_round;
    void *on_round_arg;
} roost_coord_config;

/* roost_coord_config_init - defaults: mlp on 1x28x28, K = 10, min_clients
 * = K, over_selection 1.0, min_available = K, timeout 10 min, no pacing,
 * 1 local epoch, batch 32, lr 0.05, no DP, FedAvg. store is left NULL. */
void roost_coord_config_init(roost_coord_config *cfg);

/*
 * roost_coord_create - build the coordinator: parse the model, open or
 * continue the run in the store, load the last committed model (or
 * initialise one from init_seed), and prepare the strategy. The config is
 * copied; io is copied. Returns ROOST_OK, ROOST_ECONFIG / ROOST_ESPEC (bad
 * configuration, with em naming the field; also a model whose checkpoint
 * or strategy state would exceed roost_store_max_value_bytes(), or a robust
 * strategy whose buffer limits cannot hold min_clients updates, so that no
 * round could ever commit), ROOST_ESTORE / ROOST_EHASH
 * (the store cannot be resumed from), ROOST_ENOMEM.
 */
int roost_coord_create(roost_coord **out, const roost_coord_config *cfg,
                       const roost_coord_io *io, roost_errmsg *em);

/* roost_coord_destroy - abandons an open round (nothing is committed) and
 * frees everything; NULL does nothing. */
void roost_coord_destroy(roost_coord *c);

/* A client connected. fingerprint: hex SHA-256 of its certificate (the
 * identity); subject for display (may be NULL). One session per
 * certificate: a session already open with the same fingerprint is
 * replaced, i.e. forgotten at once (its place in the open round, if any,
 * counts as dropped) and closed through io.close; the transport's later
 * report of its end is ignored. */
int roost_coord_session_opened(roost_coord *c, uint64_t session,
                               const char *fingerprint, const char *subject,
                               roost_coord_time now);

/* A decoded message from a session. Protocol violations get an Error
 * message and the session is closed; the return value is ROOST_OK unless
 * the coordinator itself failed (e.g. the store), which the caller should
 * treat as fatal. */
int roost_coord_session_message(roost_coord *c, uint64_t session,
                                const Roost__V1__Envelope *msg,
                                roost_coord_time now);

/* A session ended (disconnect, timeout, or after close()). */
void roost_coord_session_closed(roost_coord *c, uint64_t session,
                                roost_coord_time now);

/* roost_coord_tick - handle deadlines and open rounds; call it again when
 * now.mono_ms reaches *next_ms, if not before (a time on the monotonic
 * clock of roost_coord_time; INT64_MAX when nothing is pending). Returns
 * ROOST_OK or a fatal error (store failure). */
int roost_coord_tick(roost_coord *c, roost_coord_time now, int64_t *next_ms);

/* roost_coord_abandon_round - give up the open round without committing
 * (SIGTERM); its participants are told to come back later. */
void roost_coord_abandon_round(roost_coord *c);

/* true once max_rounds rounds are committed. */
bool roost_coord_finished(const roost_coord *c);

/* true while a round is open. */
bool roost_coord_round_open(const roost_coord *c);

/* The last committed round id (0 before the first) and the current global
 * parameters (owned by the coordinator, param_count floats). */
int64_t roost_coord_last_round(const roost_coord *c);
const float *roost_coord_params(const roost_coord *c, size_t *param_count);

/* Number of sessions currently known (for status and tests). */
size_t roost_coord_session_count(const roost_coord *c);

/* Detail of the last fatal error. */
const char *roost_coord_errmsg(const roost_coord *c);

#endif
