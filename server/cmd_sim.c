/*
 * cmd_sim.c - `roost sim`: many virtual clients in one process, running the
 * real client protocol (client/src/cproto.c) and local trainer against the
 * real coordinator (server/coord.c) through an in-process channel.
 *
 * The channel encodes every message with the wire codec and decodes it on
 * the other side, exactly as the TLS transport does, so everything above
 * the channel is the code that runs in deployment. Messages from the
 * coordinator are delivered to the client at once (the client never calls
 * back into the coordinator: what it sends is queued); messages from
 * clients are queued and delivered by the main loop.
 *
 * Threads: the main thread owns the coordinator, every virtual client's
 * protocol state and the queue. Worker threads only run local training on
 * buffers a job hands them, with single-threaded BLAS each; results come
 * back through a completion queue (mutex + condition variable).
 *
 * Each virtual client has its own partition of the data, privacy budget
 * (an in-memory event list, epsilon always recomputed by the accountant),
 * and random stream (derived per task from the client and round). An idle
 * virtual client holds only its protocol state and budget.
 */
#include "server/cli.h"

#include "client/src/cproto.h"
#include "client/src/local_train.h"
#include "common/channel.h"
#include "common/clock.h"
#include "common/dataset.h"
#include "common/model.h"
#include "common/partition.h"
#include "common/pki.h"
#include "common/rng.h"
#include "common/wire.h"
#include "dp/accountant.h"
#include "dp/noise.h"
#include "server/coord.h"
#include "server/store.h"
#include "server/strategy.h"

#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

/* Room for the --tls PKI directory ($TMPDIR/roost-sim-pki-XXXXXX) and for
 * a file name in it. */
#define SIM_PKI_DIR_CAP 512
#define SIM_PKI_PATH_CAP (SIM_PKI_DIR_CAP + 32)

struct sim_args {
    uint32_t clients, per_round, rounds;
    const char *model;
    uint32_t local_epochs, batch;
    double lr, momentum;
    const char *partition;
    bool dp;
    double epsilon, sigma, clip, delta;
    bool seeded;
    uint64_t seed;
    const char *db;
    bool overwrite, json, quiet;
    uint32_t threads;
    double dropout;
    double straggler_p, straggler_factor;
    const char *data_dir;
    const char *strategy;
    roost_strategy_kind strategy_kind; /* strategy, parsed by parse_args */
    uint64_t round_timeout_ms;
    uint32_t min_clients;
    bool tls;
    uint32_t fed_eval_every;  /* 0: no federated evaluation rounds */
    uint32_t eval_every;      /* held-out evaluation every N rounds */
    uint32_t dp_rounds;       /* rounds a budget is planned for; 0: all */
    const char *dp_only_flag; /* the first DP setting given, for --no-dp */
};

/* ------------------------------------------------------------ budgets */

/* A virtual client's privacy budget: events with the same (q, sigma) and
 * the same sampler (mu, beta) are merged by adding their steps and draws,
 * which is exact (RDP composes additively, the accountant sums per-event
 * RDP, and the sampler's terms are sums over draws), so memory stays
 * constant. Epsilon is charged for the sampler as the device ledger
 * charges it (roost_dp_epsilon_sampled), so a client stops where a real
 * device would. */
#define SIM_MAX_EVENTS 4
/* The largest epsilon the DP-SGD line states as such (a cap for
 * roost_dp_epsilon_sampled, as in roost dp). */
#define SIM_EPS_REPORT_CAP 1000.0
struct sim_event {
    roost_dp_event dp;
    uint64_t draws;
    double mu, beta;
};
struct sim_budget {
    double eps_max, delta;
    size_t n_events;
    struct sim_event events[SIM_MAX_EVENTS];
    double spent;
};

/* The budget's events with ev added (merged when it matches one); *n
 * receives their count. */
static int
budget_with(const struct sim_budget *b, const roost_ledger_event *ev,
            struct sim_event *out, size_t *n, roost_errmsg *em)
{
    size_t k = b->n_events;
    memcpy(out, b->events, k * sizeof(out[0]));
    if (ev == NULL || ev->steps == 0) {
        *n = k;
        return ROOST_OK;
    }
    for (size_t i = 0; i < k; i++)
        if (out[i].dp.q == ev->q && out[i].dp.sigma == ev->sigma &&
            out[i].mu == ev->mu && out[i].beta == ev->beta) {
            out[i].dp.steps += ev->steps;
            out[i].draws += ev->draws;
            *n = k;
            return ROOST_OK;
        }
    if (k == SIM_MAX_EVENTS)
        return roost_fail(em, ROOST_ENOTSUP,
                          "more than %d distinct DP settings per client",
                          SIM_MAX_EVENTS);
    out[k++] = (struct sim_event){
        {ev->q, ev->sigma, ev->steps}, ev->draws, ev->mu, ev->beta};
    *n = k;
    return ROOST_OK;
}

/* The epsilon with ev added, into *eps_after, and the merged events that
 * give it; ROOST_EBUDGET beyond the budget. */
static int
budget_decide(const struct sim_budget *b, const roost_ledger_event *ev,
              struct sim_event *all, size_t *n_all, double *eps_after,
              roost_errmsg *em)
{
    int rc = budget_with(b, ev, all, n_all, em);
    if (rc != ROOST_OK)
        return rc;
    roost_dp_event dp[SIM_MAX_EVENTS];
    double n_mu = 0.0, n_beta = 0.0;
    for (size_t i = 0; i < *n_all; i++) {
        dp[i] = all[i].dp;
        n_mu += (double)all[i].draws * all[i].mu;
        n_beta += (double)all[i].draws * all[i].beta;
    }
    *eps_after = 0.0;
    if (*n_all > 0 && (rc = roost_dp_epsilon_sampled(
                           dp, *n_all, n_mu, n_beta, b->eps_max, b->delta,
                           eps_after, NULL, em)) != ROOST_OK)
        return rc;
    /* Above the budget the charged search stops at a lower bound. */
    if (!(*eps_after <= b->eps_max))
        return roost_fail(em, ROOST_EBUDGET,
                          "round would bring epsilon to at least %.4f > budget "
                          "%.4f",
                          *eps_after, b->eps_max);
    return ROOST_OK;
}

static int
budget_plan(void *arg, const roost_ledger_event *ev, double *eps_after,
            roost_errmsg *em)
{
    struct sim_event all[SIM_MAX_EVENTS];
    size_t n_all;
    return budget_decide(arg, ev, all, &n_all, eps_after, em);
}

static int
budget_charge(void *arg, const roost_ledger_event *ev, double *eps_after,
              roost_errmsg *em)
{
    struct sim_budget *b = arg;
    struct sim_event all[SIM_MAX_EVENTS];
    size_t n_all;
    int rc = budget_decide(b, ev, all, &n_all, eps_after, em);
    if (rc != ROOST_OK)
        return rc;
    memcpy(b->events, all, n_all * sizeof(all[0]));
    b->n_events = n_all;
    b->spent = *eps_after;
    return ROOST_OK;
}

static int
budget_remaining(void *arg, double *eps_remaining, double *delta)
{
    struct sim_budget *b = arg;
    *eps_remaining = b->eps_max - b->spent;
    *delta = b->delta;
    return ROOST_OK;
}

/* ------------------------------------------------------ virtual clients */

struct sim;

struct vclient {
    struct sim *sim;
    uint32_t index;
    uint64_t session; /* index + 1 */
    bool connected;
    roost_cproto *proto;
    struct sim_budget budget;
    const uint32_t *idx;
    size_t n_local;
    bool queued; /* a training job is pending or running */
    /* Disconnect requested from inside a coordinator callback; carried
     * out by the main loop, since the coordinator must not be re-entered
     * from its own send or close callbacks. */
    bool drop_pending;
    /* --tls: dropped; connect again at reconnect_at_ms (a connector does
     * not reconnect by itself after a local close). */
    bool rejoin;
    /* --tls: this client's own certificate, TLS context and connector. */
    roost_tls_ctx *tls;
    roost_channel *ch;
    uint64_t csession; /* the connector's open session, 0 when none */
    int64_t reconnect_at_ms;
};

/* A message from a client to the coordinator, encoded. */
struct frame {
    struct frame *next;
    uint64_t session;
    size_t len;
    uint8_t bytes[];
};

/* Training work for the pool. */
struct job {
    struct job *next;
    struct vclient *vc;
    roost_cproto_job *pj;
    int rc;
    roost_local_result result;
    double eval_loss, eval_accuracy; /* evaluation jobs */
    double seconds;
    int64_t release_at_ms; /* stragglers: completion held until then */
};

struct sim {
    struct sim_args a;
    roost_dataset *train, *test;
    roost_partition *part;
    roost_model *model;
    roost_store *store;
    roost_coord *coord;
    struct vclient *vc;
    roost_rng *rng;         /* dropout/straggler decisions, reconnect jitter */
    roost_noise_memo *memo; /* the sampler's figures, shared by all clients */
    uint8_t *encode_buf;
    size_t encode_cap;
    struct frame *q_head, *q_tail;
    int64_t t0_ms;
    /* worker pool */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    struct job *work_head, *work_tail, *done_head;
    struct job *held; /* finished stragglers, released later */
    size_t running;
    bool stop;
    pthread_t *threads;
    uint32_t n_threads;
    /* Held-out evaluation: one workspace per thread that takes a slice. */
    roost_workspace **eval_ws;
    uint32_t n_eval;
    int failed;
    /* --tls: a real listener on loopback and one connector per client,
     * with a throw-away PKI made for the run. */
    void *zctx;
    roost_tls_ctx *server_tls;
    roost_channel *listener;
    char tls_endpoint[128]; /* where the listener is, for reconnects */
    char pki_dir[SIM_PKI_DIR_CAP];
    bool in_coord;
    uint64_t held_closed[64];
    size_t n_held_closed;
    /* progress */
    double dp_sigma, dp_q;
    uint64_t dp_steps_per_round;
    uint32_t rounds_done;      /* training rounds recorded */
    uint32_t rounds_committed; /* of those, the ones that committed */
    int64_t last_round_ms;
    /* The progress bar (stdout is a terminal, neither --json nor
     * --quiet): training jobs finished in the open round, when the bar
     * was last drawn, and whether it is on the screen now. */
    bool progress_bar;
    uint32_t round_jobs_done;
    /* The last committed training round, and whether its model was
     * evaluated (--eval-every skips some). */
    int64_t last_committed_id;
    bool last_committed_evaluated;
    int64_t bar_drawn_ms;
    bool bar_shown;
};

/* The simulation's clock. Every time it keeps is an interval (round
 * deadlines, reconnects, stragglers' hold, the progress bar), so it is
 * CLOCK_MONOTONIC, which no wall-clock step moves. Not CLOCK_BOOTTIME as
 * in roost serve: the virtual clients stop with the process, so a laptop
 * suspended mid-run must not make the open round miss its deadline. */
static int64_t
now_ms(void)
{
    return roost_clock_ms(CLOCK_MONOTONIC);
}

/* The coordinator's clocks (coord.h) at now_ms() == now: the wall clock
 * dates the record. */
static roost_coord_time
coord_time(int64_t now)
{
    roost_coord_time t = {.mono_ms = now,
                          .wall_ms = roost_clock_ms(CLOCK_REALTIME)};
    return t;
}

static double
mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int
encode(struct sim *s, const Roost__V1__Envelope *m, size_t *len)
{
    return roost_wire_encode_reuse(NULL, m, &s->encode_buf, &s->encode_cap,
                                   len);
}

/* Client -> coordinator: encode now, deliver from the main loop. */
static int
client_send(void *arg, const Roost__V1__Envelope *m)
{
    struct vclient *vc = arg;
    struct sim *s = vc->sim;
    if (!vc->connected)
        return ROOST_ECLOSED;
    size_t len = 0;
    int rc = encode(s, m, &len);
    if (rc != ROOST_OK)
        return rc;
    struct frame *f = malloc(sizeof(*f) + len);
    if (f == NULL)
        return ROOST_ENOMEM;
    f->next = NULL;
    f->session = vc->session;
    f->len = len;
    memcpy(f->bytes, s->encode_buf, len);
    if (s->q_tail != NULL)
        s->q_tail->next = f;
    else
        s->q_head = f;
    s->q_tail = f;
    return ROOST_OK;
}

static void vclient_disconnect(struct sim *s, struct vclient *vc, int64_t now);
static int submit_job(struct sim *s, struct vclient *vc);

static void
maybe_drop(struct sim *s, struct vclient *vc, int64_t now)
{
    if (s->a.dropout <= 0 || roost_cproto_state(vc->proto) != ROOST_CP_READY)
        return;
    (void)now;
    double u;
    if (roost_rng_uniform(s->rng, &u) == ROOST_OK && u < s->a.dropout)
        vc->drop_pending = true;
}

/* Coordinator -> client: encode, decode, hand to the client at once. */
static int
coord_send(void *arg, uint64_t session, const Roost__V1__Envelope *m)
{
    struct sim *s = arg;
    if (session == 0 || session > s->a.clients)
        return ROOST_EINVAL;
    struct vclient *vc = &s->vc[session - 1];
    if (!vc->connected)
        return ROOST_ECLOSED;
    size_t len = 0;
    int rc = encode(s, m, &len);
    if (rc != ROOST_OK)
        return rc;
    Roost__V1__Envelope *dec = NULL;
    roost_errmsg em;
    rc = roost_wire_decode(NULL, s->encode_buf, len, NULL, &dec, &em);
    if (rc != ROOST_OK) {
        fprintf(stderr, "roost sim: client %u: bad frame: %s\n", vc->index,
                em.text);
        return rc;
    }
    int64_t now = now_ms();
    rc = roost_cproto_on_message(vc->proto, dec, now);
    roost_wire_free(NULL, dec);
    if (rc != ROOST_OK) {
        fprintf(stderr, "roost sim: client %u: %s\n", vc->index,
                roost_cproto_errmsg(vc->proto));
        vc->drop_pending = true;
        return ROOST_OK;
    }
    maybe_drop(s, vc, now);
    /* Hand the job to the workers as soon as its model is complete,
     * rather than after the coordinator has sent every selected client
     * its copy: the first clients train while the rest still receive. */
    if (!vc->drop_pending && !vc->queued &&
        roost_cproto_state(vc->proto) == ROOST_CP_READY &&
        submit_job(s, vc) != ROOST_OK)
        vc->drop_pending = true; /* disconnected by the main loop */
    return ROOST_OK;
}

static void
coord_close(void *arg, uint64_t session, const char *reason)
{
    struct sim *s = arg;
    if (session == 0 || session > s->a.clients)
        return;
    struct vclient *vc = &s->vc[session - 1];
    if (!s->a.quiet)
        fprintf(stderr, "roost sim: coordinator closed client %u: %s\n",
                vc->index, reason);
    vc->drop_pending = true;
}

static void
vclient_disconnect(struct sim *s, struct vclient *vc, int64_t now)
{
    if (!vc->connected)
        return;
    vc->connected = false;
    roost_cproto_disconnected(vc->proto);
    roost_coord_session_closed(s->coord, vc->session, coord_time(now));
    /* Reconnect after a short pause, like a device coming back. */
    vc->reconnect_at_ms = now + 50;
}

static int
vclient_connect(struct sim *s, struct vclient *vc, int64_t now)
{
    char fp[65];
    snprintf(fp, sizeof(fp), "sim-%08x", vc->index);
    int rc = roost_coord_session_opened(s->coord, vc->session, fp, NULL,
                                        coord_time(now));
    if (rc != ROOST_OK)
        return rc;
    vc->connected = true;
    if (roost_cproto_state(vc->proto) == ROOST_CP_EXHAUSTED)
        return ROOST_OK;
    return roost_cproto_check_in(vc->proto, now);
}

/* SIGINT/SIGTERM: the main loop stops at its next turn (every wait in
 * it is bounded to a few ms), the local training running on the workers
 * stops at its next batch (the flag is their cancel flag), and the run
 * ends through the normal teardown, which leaves the record as of the
 * last committed round. The handler is installed as soon as the flags are
 * read: a signal during the setup (loading the data, making hundreds of
 * certificates) must not kill the process with --tls's private keys left
 * behind; the setup checks the flag between its steps, and removes the
 * throw-away PKI as soon as every key is loaded.
 *
 * A second signal, once no key is on disk, stops the process at once by
 * the signal's default action: what is left undone then is only the
 * open round's note in the record (roost status lists that round as
 * open), and the committed rounds are already durable. While keys are on
 * disk a second signal waits for the setup to remove them. */
static atomic_int sim_interrupted;
static atomic_int sim_keys_on_disk;

/* The flags are read by the worker threads (sim_interrupted is their
 * cancel flag) and the main thread, and written by a handler that may run
 * on any thread. A volatile sig_atomic_t is only defined for a handler and
 * the thread it interrupts; a lock-free atomic is defined for all of them
 * (C11 7.14.1.1), so that is what the flags are. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2,
               "the signal flags need lock-free atomic ints");

static bool
sim_stopping(void)
{
    return atomic_load_explicit(&sim_interrupted, memory_order_relaxed) != 0;
}

static void
sim_say(const char *msg)
{
    /* write(2) is async-signal-safe; stdio is not. A failed write has
     * nowhere else to go. */
    ssize_t n = write(STDERR_FILENO, msg, strlen(msg));
    (void)n;
}

static void
on_sim_signal(int sig)
{
    /* write(2) sets errno when it fails (stderr closed, a full pipe), and
     * the handler may run between a call the signal interrupted and its
     * caller's look at errno (SQLite retries a read on EINTR and fails on
     * anything else): restore it, as roost serve's handler does. */
    int saved = errno;
    if (!atomic_exchange(&sim_interrupted, 1)) {
        sim_say("\nroost sim: stopping after the running jobs cancel "
                "(signal again to stop at once)\n");
        errno = saved;
        return;
    }
    if (atomic_load(&sim_keys_on_disk)) {
        sim_say("roost sim: removing --tls's keys first\n");
        errno = saved;
        return;
    }
    sim_say("roost sim: stopping now; the record keeps the committed "
            "rounds (the open round stays listed as open)\n");
    signal(sig, SIG_DFL);
    raise(sig);
    errno = saved;
}

/* ------------------------------------------------ --tls: real transport */

/* The coordinator side: the listener's events, as roost serve handles
 * them. A session closed while the coordinator is inside one of our calls
 * is held and reported after it returns, so the coordinator is never
 * re-entered. */
static void
tls_drain_closed(struct sim *s)
{
    for (size_t i = 0; i < s->n_held_closed; i++)
        roost_coord_session_closed(s->coord, s->held_closed[i],
                                   coord_time(now_ms()));
    s->n_held_closed = 0;
}

static void
tls_listener_event(void *arg, const roost_channel_event *ev)
{
    struct sim *s = arg;
    if (ev->type == ROOST_CHANNEL_CLOSED) {
        if (s->in_coord && s->n_held_closed < 64)
            s->held_closed[s->n_held_closed++] = ev->session;
        else
            roost_coord_session_closed(s->coord, ev->session,
                                       coord_time(now_ms()));
        return;
    }
    s->in_coord = true;
    if (ev->type == ROOST_CHANNEL_OPENED) {
        if (roost_coord_session_opened(
                s->coord, ev->session, ev->identity->fingerprint_hex,
                ev->identity->subject, coord_time(now_ms())) != ROOST_OK)
            roost_channel_close(s->listener, ev->session);
    } else if (ev->type == ROOST_CHANNEL_FRAME) {
        Roost__V1__Envelope *m = NULL;
        roost_errmsg em;
        if (roost_wire_decode(NULL, ev->data, ev->len, NULL, &m, &em) !=
            ROOST_OK) {
            fprintf(stderr, "roost sim: undecodable frame from %s: %s\n",
                    ev->identity->subject, em.text);
            roost_channel_close(s->listener, ev->session);
        } else {
            if (roost_coord_session_message(s->coord, ev->session, m,
                                            coord_time(now_ms())) != ROOST_OK)
                s->failed = 1;
            roost_wire_free(NULL, m);
        }
    }
    s->in_coord = false;
    tls_drain_closed(s);
}

static int
tls_coord_send(void *arg, uint64_t session, const Roost__V1__Envelope *m)
{
    struct sim *s = arg;
    size_t len = 0;
    int rc = encode(s, m, &len);
    if (rc == ROOST_OK)
        rc = roost_channel_send(s->listener, session, s->encode_buf, len);
    if (rc != ROOST_OK)
        roost_channel_close(s->listener, session);
    return rc;
}

static void
tls_coord_close(void *arg, uint64_t session, const char *reason)
{
    struct sim *s = arg;
    if (!s->a.quiet)
        fprintf(stderr,
                "roost sim: coordinator closed session %" PRIu64 ": %s\n",
                session, reason);
    roost_channel_close(s->listener, session);
}

/* The client side: each virtual client's own connector. */
static int
tls_client_send(void *arg, const Roost__V1__Envelope *m)
{
    struct vclient *vc = arg;
    struct sim *s = vc->sim;
    if (vc->csession == 0)
        return ROOST_ECLOSED;
    size_t len = 0;
    int rc = encode(s, m, &len);
    if (rc == ROOST_OK)
        rc = roost_channel_send(vc->ch, vc->csession, s->encode_buf, len);
    return rc;
}

static void
tls_client_event(void *arg, const roost_channel_event *ev)
{
    struct vclient *vc = arg;
    int64_t now = now_ms();
    if (ev->type == ROOST_CHANNEL_OPENED) {
        vc->csession = ev->session;
        vc->connected = true;
        if (roost_cproto_state(vc->proto) != ROOST_CP_EXHAUSTED)
            roost_cproto_check_in(vc->proto, now);
    } else if (ev->type == ROOST_CHANNEL_CLOSED) {
        vc->csession = 0;
        vc->connected = false;
        roost_cproto_disconnected(vc->proto);
    } else if (ev->type == ROOST_CHANNEL_FRAME) {
        Roost__V1__Envelope *m = NULL;
        roost_errmsg em;
        if (roost_wire_decode(NULL, ev->data, ev->len, NULL, &m, &em) !=
            ROOST_OK) {
            roost_channel_close(vc->ch, ev->session);
            return;
        }
        int rc = roost_cproto_on_message(vc->proto, m, now);
        roost_wire_free(NULL, m);
        if (rc != ROOST_OK)
            roost_channel_close(vc->ch, ev->session);
        else
            maybe_drop(vc->sim, vc, now);
    }
}

/* Remove --tls's throw-away PKI: every file in it is ours, and it has no
 * subdirectories. Removed file by file rather than through a shell, since
 * $TMPDIR may hold any character. Runs as soon as every TLS context has
 * loaded its certificate and key (nothing reads the files after that),
 * so the keys stay on disk only during the setup, and again at the
 * teardown in case the setup failed half-way. */
static void
pki_remove(struct sim *s)
{
    if (s->pki_dir[0] == '\0')
        return;
    DIR *dir = opendir(s->pki_dir);
    struct dirent *de;
    char path[SIM_PKI_PATH_CAP + 256];
    while (dir != NULL && (de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", s->pki_dir, de->d_name);
        unlink(path);
    }
    if (dir != NULL)
        closedir(dir);
    if (rmdir(s->pki_dir) != 0)
        fprintf(stderr, "roost sim: could not remove %s\n", s->pki_dir);
    else
        atomic_store(&sim_keys_on_disk, 0);
    s->pki_dir[0] = '\0';
}

/* A CA, a server certificate for localhost and one client certificate per
 * virtual client, in a temporary directory removed once they are loaded. */
static int
tls_setup(struct sim *s)
{
    roost_errmsg em;
    char a[SIM_PKI_PATH_CAP], b[SIM_PKI_PATH_CAP], c[SIM_PKI_PATH_CAP],
        d[SIM_PKI_PATH_CAP];
    /* In $TMPDIR like other temporary files, so a user (or a test) can
     * keep the keys on a private file system. */
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0' ||
        strlen(tmp) > SIM_PKI_DIR_CAP - sizeof("/roost-sim-pki-XXXXXX"))
        tmp = "/tmp";
    snprintf(s->pki_dir, sizeof(s->pki_dir), "%s/roost-sim-pki-XXXXXX", tmp);
    atomic_store(&sim_keys_on_disk, 1);
    if (mkdtemp(s->pki_dir) == NULL) {
        s->pki_dir[0] = '\0';
        atomic_store(&sim_keys_on_disk, 0);
        fprintf(stderr, "roost sim: --tls: cannot make a temporary dir\n");
        return ROOST_EIO;
    }
    snprintf(a, sizeof(a), "%s/ca.key", s->pki_dir);
    snprintf(b, sizeof(b), "%s/ca.crt", s->pki_dir);
    snprintf(c, sizeof(c), "%s/ca.crl", s->pki_dir);
    int rc = roost_pki_init(a, b, c, "roost sim CA", 2, 2, &em);
    roost_pki_validity v = {-60, ROOST_PKI_DAY_S};
    const char *sans[] = {"127.0.0.1"};
    char sk[SIM_PKI_PATH_CAP], sc[SIM_PKI_PATH_CAP];
    snprintf(sk, sizeof(sk), "%s/server.key", s->pki_dir);
    snprintf(sc, sizeof(sc), "%s/server.crt", s->pki_dir);
    if (rc == ROOST_OK)
        rc = roost_pki_server(a, b, sk, sc, "localhost", sans, 1, &v, &em);
    roost_tls_files sf = {b, sc, sk, c};
    if (rc == ROOST_OK)
        rc = roost_tls_ctx_create_server(&s->server_tls, &sf, &em);
    s->zctx = rc == ROOST_OK ? zmq_ctx_new() : NULL;
    if (rc == ROOST_OK && s->zctx == NULL)
        rc = roost_fail(&em, ROOST_EIO, "zmq_ctx_new failed");
    roost_channel_config chc;
    roost_channel_config_init(&chc);
    chc.on_event = tls_listener_event;
    chc.event_arg = s;
    chc.zmq_ctx = s->zctx;
    chc.max_sessions = (size_t)s->a.clients + 16;
    if (rc == ROOST_OK)
        rc = roost_channel_create(&s->listener, &chc, s->server_tls, &em);
    if (rc == ROOST_OK)
        rc = roost_channel_listen(s->listener, "tcp://127.0.0.1:*");
    char *endpoint = s->tls_endpoint;
    if (rc == ROOST_OK)
        rc = roost_channel_endpoint(s->listener, endpoint,
                                    sizeof(s->tls_endpoint));
    for (uint32_t i = 0; rc == ROOST_OK && i < s->a.clients; i++) {
        struct vclient *vc = &s->vc[i];
        char cn[32];
        if (sim_stopping()) {
            rc = roost_fail(&em, ROOST_ECANCELED,
                            "interrupted while making client certificates");
            break;
        }
        snprintf(cn, sizeof(cn), "sim-client-%u", i);
        snprintf(a, sizeof(a), "%s/c%u.key", s->pki_dir, i);
        snprintf(d, sizeof(d), "%s/c%u.csr", s->pki_dir, i);
        snprintf(c, sizeof(c), "%s/c%u.crt", s->pki_dir, i);
        char cak[SIM_PKI_PATH_CAP];
        snprintf(cak, sizeof(cak), "%s/ca.key", s->pki_dir);
        rc = roost_pki_request(a, d, cn, &em);
        if (rc == ROOST_OK)
            rc = roost_pki_sign(cak, b, d, c, &v, &em);
        roost_tls_files cf = {b, c, a, NULL};
        if (rc == ROOST_OK)
            rc = roost_tls_ctx_create_client(&vc->tls, &cf, &em);
        roost_channel_config cc;
        roost_channel_config_init(&cc);
        cc.on_event = tls_client_event;
        cc.event_arg = vc;
        cc.zmq_ctx = s->zctx;
        cc.reconnect_min_ms = 20;
        cc.reconnect_max_ms = 500;
        if (rc == ROOST_OK)
            rc = roost_channel_create(&vc->ch, &cc, vc->tls, &em);
        if (rc == ROOST_OK)
            rc = roost_channel_connect(vc->ch, endpoint, "localhost");
    }
    pki_remove(s);
    if (rc != ROOST_OK)
        fprintf(stderr, "roost sim: --tls: %s\n", em.text);
    else if (!s->a.json && !s->a.quiet)
        printf("roost sim: TLS 1.3 over loopback: coordinator on %s, %u "
               "client certificates\n",
               endpoint, s->a.clients);
    return rc;
}

static void
tls_teardown(struct sim *s)
{
    if (s->vc != NULL)
        for (uint32_t i = 0; i < s->a.clients; i++) {
            roost_channel_destroy(s->vc[i].ch);
            roost_tls_ctx_destroy(s->vc[i].tls);
        }
    roost_channel_destroy(s->listener);
    roost_tls_ctx_destroy(s->server_tls);
    if (s->zctx != NULL)
        zmq_ctx_term(s->zctx);
    pki_remove(s);
}

/* One pass over every channel without waiting. */
static void
tls_poll(struct sim *s)
{
    roost_channel_poll(s->listener, 0);
    for (uint32_t i = 0; i < s->a.clients; i++)
        roost_channel_poll(s->vc[i].ch, 0);
}

/* ------------------------------------------------- held-out evaluation */

struct eval_slice {
    roost_workspace *ws;
    const float *params, *x;
    const uint8_t *y;
    size_t n;
    double loss, accuracy;
    int rc;
};

static void *
eval_slice_main(void *arg)
{
    struct eval_slice *e = arg;
    e->rc = roost_model_evaluate(e->ws, e->params, e->x, e->y, e->n, &e->loss,
                                 &e->accuracy);
    return NULL;
}

/* The coordinator's held-out evaluation, spread over as many threads as
 * the simulation trains with: the round's clients have all answered, so
 * the cores would otherwise wait for one thread. Each slice is
 * contiguous; the means are recombined weighted by slice size. */
static int
sim_evaluate(void *arg, const float *params, double *loss, double *accuracy)
{
    struct sim *s = arg;
    size_t n = roost_dataset_count(s->test), dim = roost_dataset_dim(s->test);
    const float *x = roost_dataset_features(s->test);
    const uint8_t *y = roost_dataset_labels(s->test);
    struct eval_slice sl[64];
    pthread_t th[64];
    bool started[64] = {false};
    uint32_t k = s->n_eval;
    size_t at = 0;
    for (uint32_t i = 0; i < k; i++) {
        size_t len = n / k + (i < n % k ? 1 : 0);
        sl[i] = (struct eval_slice){
            s->eval_ws[i], params, x + at * dim, y + at, len, 0, 0, ROOST_OK};
        at += len;
    }
    for (uint32_t i = 1; i < k; i++)
        started[i] = sl[i].n > 0 &&
                     pthread_create(&th[i], NULL, eval_slice_main, &sl[i]) == 0;
    for (uint32_t i = 0; i < k; i++)
        if (i == 0 || (!started[i] && sl[i].n > 0))
            eval_slice_main(&sl[i]); /* this thread, or a failed start */
    double l = 0, a = 0;
    int rc = ROOST_OK;
    for (uint32_t i = 0; i < k; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        if (sl[i].n == 0)
            continue;
        if (sl[i].rc != ROOST_OK)
            rc = sl[i].rc;
        l += sl[i].loss * (double)sl[i].n;
        a += sl[i].accuracy * (double)sl[i].n;
    }
    *loss = l / (double)n;
    *accuracy = a / (double)n;
    return rc;
}

/* ---------------------------------------------------------- worker pool */

static void *
worker_main(void *arg)
{
    struct sim *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->work_head == NULL && !s->stop)
            pthread_cond_wait(&s->cv_work, &s->mu);
        if (s->stop) {
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        struct job *j = s->work_head;
        s->work_head = j->next;
        if (s->work_head == NULL)
            s->work_tail = NULL;
        pthread_mutex_unlock(&s->mu);

        /* A random stream per (client, round): reproducible under --seed
         * whatever the scheduling, secure without it. */
        roost_rng *rng = NULL;
        roost_errmsg em;
        roost_errmsg_clear(&em);
        double t0 = mono_s();
        /* After a signal no job starts: training would stop at its first
         * batch anyway, and a federated evaluation, which takes no cancel
         * flag, would run to its end for a round that will not close. */
        if (sim_stopping())
            j->rc = ROOST_ECANCELED;
        else
            j->rc = s->a.seeded ? roost_rng_create_insecure_deterministic(
                                      &rng, NULL, s->a.seed,
                                      ((uint64_t)j->vc->index << 32) ^
                                          (uint64_t)j->pj->round_id)
                                : roost_rng_create(&rng, NULL);
        if (j->rc == ROOST_OK && j->pj->evaluate)
            j->rc = roost_local_evaluate(s->model, NULL, s->train, j->vc->idx,
                                         j->vc->n_local, j->pj->global,
                                         &j->eval_loss, &j->eval_accuracy, &em);
        else if (j->rc == ROOST_OK)
            j->rc = roost_local_train(s->model, s->train, j->vc->idx,
                                      j->vc->n_local, j->pj->global,
                                      j->pj->params, &j->pj->task, rng,
                                      &sim_interrupted, &j->result, &em);
        roost_rng_destroy(rng);
        j->seconds = mono_s() - t0;
        if (j->rc != ROOST_OK && j->rc != ROOST_ECANCELED && !s->a.quiet)
            fprintf(stderr, "roost sim: client %u: %s failed: %s\n",
                    j->vc->index, j->pj->evaluate ? "evaluation" : "training",
                    em.text);

        pthread_mutex_lock(&s->mu);
        j->next = s->done_head;
        s->done_head = j;
        s->running--;
        pthread_cond_signal(&s->cv_done);
        pthread_mutex_unlock(&s->mu);
    }
}

static int
submit_job(struct sim *s, struct vclient *vc)
{
    roost_cproto_job *pj = NULL;
    int rc = roost_cproto_take_job(vc->proto, &pj);
    if (rc != ROOST_OK)
        return rc;
    if (strcmp(pj->model_spec, roost_model_spec(s->model)) != 0 ||
        pj->n_params != roost_model_param_count(s->model)) {
        fprintf(stderr, "roost sim: task model '%s' is not the sim's model\n",
                pj->model_spec);
        return ROOST_EPROTO;
    }
    struct job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return ROOST_ENOMEM;
    j->vc = vc;
    j->pj = pj;
    vc->queued = true;
    pthread_mutex_lock(&s->mu);
    if (s->work_tail != NULL)
        s->work_tail->next = j;
    else
        s->work_head = j;
    s->work_tail = j;
    s->running++;
    pthread_cond_signal(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
    return ROOST_OK;
}

static void
complete_job(struct sim *s, struct job *j, int64_t now)
{
    struct vclient *vc = j->vc;
    vc->queued = false;
    if (!j->pj->evaluate && j->rc == ROOST_OK)
        s->round_jobs_done++;
    int rc = j->pj->evaluate
                 ? roost_cproto_finish_eval(vc->proto, j->rc, vc->n_local,
                                            j->eval_loss, j->eval_accuracy, now)
                 : roost_cproto_finish(vc->proto, j->rc, &j->result, now);
    if (rc != ROOST_OK && rc != ROOST_EBUDGET && !s->a.quiet)
        fprintf(stderr, "roost sim: client %u: %s\n", vc->index,
                roost_cproto_errmsg(vc->proto));
    free(j);
}

/* Collect finished jobs; stragglers are held back by their factor. */
static void
collect_jobs(struct sim *s, int64_t now, bool wait)
{
    pthread_mutex_lock(&s->mu);
    if (wait && s->done_head == NULL && s->running == 0 && s->held == NULL) {
        /* Nothing is training: waiting on the clock (a deadline, a
         * reconnect); do not spin. */
        pthread_mutex_unlock(&s->mu);
        struct timespec pause = {0, 2 * 1000000};
        nanosleep(&pause, NULL);
        pthread_mutex_lock(&s->mu);
    } else if (wait && s->done_head == NULL) {
        /* cv_done waits on CLOCK_MONOTONIC (roost_cmd_sim): on the
         * default CLOCK_REALTIME a wall-clock step back would stretch this
         * 20 ms wait by the step while only held stragglers remain. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 20 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s->cv_done, &s->mu, &ts);
    }
    struct job *done = s->done_head;
    s->done_head = NULL;
    pthread_mutex_unlock(&s->mu);
    while (done != NULL) {
        struct job *j = done;
        done = j->next;
        double u = 1.0;
        if (s->a.straggler_p > 0)
            roost_rng_uniform(s->rng, &u);
        if (u < s->a.straggler_p) {
            /* Held F - 1 times its training time, but no longer than
             * past the round's deadline: a later arrival changes nothing,
             * and a large F (1e300) would overflow the conversion to
             * milliseconds, which released the update at once. */
            double hold_ms =
                j->seconds * 1000.0 * (s->a.straggler_factor - 1.0);
            double cap_ms = (double)s->a.round_timeout_ms + 1000.0;
            j->release_at_ms =
                now + (int64_t)(hold_ms < cap_ms ? hold_ms : cap_ms);
            j->next = s->held;
            s->held = j;
            continue;
        }
        complete_job(s, j, now);
    }
    struct job **pp = &s->held;
    while (*pp != NULL) {
        struct job *j = *pp;
        if (j->release_at_ms <= now) {
            *pp = j->next;
            complete_job(s, j, now);
        } else {
            pp = &j->next;
        }
    }
}

/* ------------------------------------------------------------ progress */

/* Erase the progress bar, so that a line printed next starts at the left
 * edge of an empty line. */
static void
bar_clear(struct sim *s)
{
    if (!s->bar_shown)
        return;
    printf("\r\033[K");
    fflush(stdout);
    s->bar_shown = false;
}

/* On a terminal, redraw the progress bar under the round lines at most
 * five times a second: the rounds done (plus the finished part of the
 * open one) out of --rounds, the open round's finished local trainings,
 * the time so far and the estimated time left. Drawn at once on the
 * first call, so even a run of short rounds shows it. */
static void
bar_draw(struct sim *s, int64_t now)
{
    if (!s->progress_bar || s->rounds_done >= s->a.rounds ||
        (s->bar_shown && now - s->bar_drawn_ms < 200))
        return;
    uint32_t jobs = s->round_jobs_done < s->a.per_round ? s->round_jobs_done
                                                        : s->a.per_round;
    double done =
        (double)s->rounds_done + (double)jobs / (double)s->a.per_round;
    double frac = done / (double)s->a.rounds;
    char bar[24];
    size_t width = sizeof(bar) - 1, fill = (size_t)(frac * (double)width);
    for (size_t i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    double elapsed = (double)(now - s->t0_ms) / 1000.0;
    /* From the rounds done so far, the open one's finished part
     * included, so the estimate moves while a long round runs. */
    char eta[32] = "eta -";
    if (done > 0)
        snprintf(eta, sizeof(eta), "eta %.0fs",
                 elapsed / done * ((double)s->a.rounds - done));
    printf("\r\033[K[%s] %u/%u rounds  round %u: %u/%u trained  %.0fs  %s", bar,
           s->rounds_done, s->a.rounds, s->rounds_done + 1, jobs,
           s->a.per_round, elapsed, eta);
    fflush(stdout);
    s->bar_drawn_ms = now;
    s->bar_shown = true;
}

/* Seconds since the previous round event (training or evaluation), which
 * is the round just reported; now becomes the next one's start. */
static double
round_seconds(struct sim *s, int64_t now)
{
    double secs = (double)(now - s->last_round_ms) / 1000.0;
    s->last_round_ms = now;
    return secs;
}

/* A federated evaluation round: the clients' own figures for the model of
 * the training round before it. */
static void
on_eval_round(struct sim *s, const roost_coord_round_summary *r)
{
    double secs = round_seconds(s, now_ms());
    if (s->a.json) {
        char acc[ROOST_CLI_JSON_NUMBER_CAP], loss[ROOST_CLI_JSON_NUMBER_CAP];
        roost_cli_json_number(acc, sizeof(acc), r->fed_eval_accuracy, 6);
        roost_cli_json_number(loss, sizeof(loss), r->fed_eval_loss, 6);
        printf("{\"round\":%" PRId64 ",\"kind\":\"eval\","
               "\"committed\":%s,\"fed_accuracy\":%s,\"fed_loss\":%s,"
               "\"clients\":%u,\"selected\":%u,\"examples\":%" PRIu64
               ",\"seconds\":%.3f}\n",
               r->round_id, r->committed ? "true" : "false", acc, loss,
               r->accepted, r->selected, r->examples, secs);
        fflush(stdout);
        return;
    }
    if (s->a.quiet)
        return;
    bar_clear(s);
    if (r->committed)
        printf("round %3" PRId64 " federated evaluation: accuracy %6.2f%%  "
               "loss %.4f on %" PRIu64 " client examples (%u clients; no "
               "DP)  %.2fs\n",
               r->round_id, 100.0 * r->fed_eval_accuracy, r->fed_eval_loss,
               r->examples, r->accepted, secs);
    else
        printf("round %3" PRId64 " federated evaluation FAILED: %u/%u "
               "clients answered\n",
               r->round_id, r->accepted, r->selected);
    fflush(stdout);
}

static void
on_round(void *arg, const roost_coord_round_summary *r)
{
    struct sim *s = arg;
    if (r->evaluation) {
        on_eval_round(s, r);
        return;
    }
    s->rounds_done++;
    s->round_jobs_done = 0;
    if (r->committed) {
        s->rounds_committed++;
        s->last_committed_id = r->round_id;
        s->last_committed_evaluated = isfinite(r->eval_accuracy);
    }
    /* The largest epsilon any client has spent so far: each value is the
     * accountant's, recomputed from that client's events at its charge. */
    double eps_max = s->a.dp ? 0.0 : (double)NAN;
    if (s->a.dp)
        for (uint32_t i = 0; i < s->a.clients; i++)
            if (s->vc[i].budget.spent > eps_max)
                eps_max = s->vc[i].budget.spent;
    int64_t now = now_ms();
    double secs = round_seconds(s, now);
    if (s->a.json) {
        /* A failed round has no new model to evaluate: null. */
        char acc[ROOST_CLI_JSON_NUMBER_CAP], loss[ROOST_CLI_JSON_NUMBER_CAP];
        roost_cli_json_number(acc, sizeof(acc), r->eval_accuracy, 6);
        roost_cli_json_number(loss, sizeof(loss), r->eval_loss, 6);
        printf("{\"round\":%" PRId64 ",\"committed\":%s,\"accuracy\":%s,"
               "\"loss\":%s,",
               r->round_id, r->committed ? "true" : "false", acc, loss);
        if (s->a.dp)
            printf("\"epsilon_max\":%.6f,", eps_max);
        else
            printf("\"epsilon_max\":null,");
        /* Under --seed the epsilon is not a guarantee: every object says
         * so, not only a notice on stderr that a script never reads (the
         * key roost train uses for the same). */
        if (s->a.dp)
            printf("\"insecure_rng\":%s,", s->a.seeded ? "true" : "false");
        printf("\"clients\":%u,\"selected\":%u,\"refused\":%u,"
               "\"dropped\":%u,\"seconds\":%.3f}\n",
               r->accepted, r->selected, r->refused, r->dropped, secs);
        fflush(stdout);
        return;
    }
    if (s->a.quiet)
        return;
    double elapsed = (double)(now - s->t0_ms) / 1000.0;
    double eta = s->rounds_done ? elapsed / s->rounds_done *
                                      (double)(s->a.rounds - s->rounds_done)
                                : 0;
    char eps_text[48];
    if (s->a.dp)
        snprintf(eps_text, sizeof(eps_text), "epsilon %.3f%s", eps_max,
                 s->a.seeded ? " (INSECURE --seed)" : "");
    else
        snprintf(eps_text, sizeof(eps_text), "no DP");
    bar_clear(s);
    /* Rounds between held-out evaluations (--eval-every) have none. */
    char acc_text[48] = "accuracy       -  loss      -";
    if (isfinite(r->eval_accuracy))
        snprintf(acc_text, sizeof(acc_text), "accuracy %6.2f%%  loss %.4f",
                 100.0 * r->eval_accuracy, r->eval_loss);
    /* The count of training rounds, and the record's round id when they
     * differ (federated evaluation rounds take ids too), so the line
     * names the round that `roost status` and `roost report` show. */
    char id_text[48] = "";
    if (r->round_id != (int64_t)s->rounds_done)
        snprintf(id_text, sizeof(id_text), " (round %" PRId64 " in the record)",
                 r->round_id);
    char refused_text[32] = "";
    if (r->refused > 0)
        snprintf(refused_text, sizeof(refused_text), " (%u refused)",
                 r->refused);
    printf("round %3" PRId64 "/%u%s %s %s  %s  clients %u/%u%s  %.2fs",
           (int64_t)s->rounds_done, s->a.rounds, id_text,
           r->committed ? "" : "FAILED", acc_text, eps_text, r->accepted,
           r->selected, refused_text, secs);
    if (isatty(STDOUT_FILENO) && s->rounds_done < s->a.rounds)
        printf("  [eta %.0fs]", eta);
    printf("\n");
    fflush(stdout);
}

/* ---------------------------------------------------------------- args */

static void
usage(FILE *out)
{
    fputs(
        "usage: roost sim [flags]\n"
        "Run virtual clients against the real coordinator logic in one\n"
        "process, on Fashion-MNIST.\n\n"
        "  --clients N          virtual clients (default 100)\n"
        "  --per-round K        updates per round (default 10)\n"
        "  --rounds R           rounds (default 20)\n"
        "  --model M            mlp | cnn | logreg | layer spec (default mlp)\n"
        "  --local-epochs E     local epochs per round (default 1)\n"
        "  --batch B            batch size; with DP the expected batch\n"
        "                       (default 32)\n"
        "  --lr LR              client learning rate (default 0.05; 0.5\n"
        "                       with DP, whose clipped, noised steps are\n"
        "                       smaller)\n"
        "  --momentum M         client momentum, in [0, 1) (default 0)\n"
        "  --partition P        iid | shards[:S] | dirichlet:ALPHA (default "
        "iid)\n"
        "  --strategy S         fedavg, fedavgm, fedadam, ... (default "
        "fedavg);\n"
        "                       krum and multikrum need --per-round >= 5\n"
        "  --epsilon E          DP budget per client (default 8); sigma is\n"
        "                       calibrated so a client joining --dp-rounds\n"
        "                       rounds stays within it\n"
        "  --dp-rounds N        rounds each client's budget is planned for\n"
        "                       (default: twice a client's expected share,\n"
        "                       2*R*K/N, at most R); a client whose budget\n"
        "                       is spent declines and another takes its\n"
        "                       place\n"
        "  --sigma S            use this noise multiplier instead\n"
        "  --clip C             per-example clip norm (default 1)\n"
        "  --delta D            DP delta (default 1e-5)\n"
        "  --no-dp              train without differential privacy (not\n"
        "                       with --epsilon, --sigma, --clip, --delta\n"
        "                       or --dp-rounds)\n"
        "  --seed S             reproducible run; INSECURE: makes DP noise\n"
        "                       and selection predictable\n"
        "  --db FILE            SQLite record (default roost-sim.db)\n"
        "  --overwrite          replace an existing --db file\n"
        "  --threads T          training threads (default: cores)\n"
        "  --dropout P          selected clients vanish with probability P\n"
        "  --straggler P:F      with probability P a client is F times "
        "slower\n"
        "  --round-timeout S    round deadline in seconds, 1..604800\n"
        "                       (default 300)\n"
        "  --min-clients M      updates that commit a round at the deadline\n"
        "                       (default: per-round)\n"
        "  --data DIR           Fashion-MNIST directory\n"
        "  --tls                carry every message over real TLS 1.3 on\n"
        "                       loopback TCP (a certificate per client;\n"
        "                       for up to a few hundred clients)\n"
        "  --eval-every N       evaluate the global model on the test set\n"
        "                       every N rounds and after the last (default 1)\n"
        "  --fed-eval N         every N training rounds, a federated\n"
        "                       evaluation round: clients report loss and\n"
        "                       accuracy on their own data, WITHOUT DP\n"
        "  --json               one JSON object per round on stdout\n"
        "                       (notices go to stderr)\n"
        "  --quiet              no progress output\n"
        "\n"
        "Exit status: 0 when at least one training round committed; 1 when\n"
        "none did (every round failed, or the privacy budgets ran out\n"
        "before the first) or the run failed; 2 for bad flags.\n",
        out);
}

/* The flags that take one plain value (or none), as one table: name, type,
 * where the value goes in struct sim_args, and the accepted range for
 * integers. Flags with structured values are parsed by hand below. */
enum flag_type { FLAG_U32, FLAG_DOUBLE, FLAG_STR, FLAG_TRUE, FLAG_FALSE };

struct sim_flag {
    const char *name;
    enum flag_type type;
    size_t offset;
    long min, max;
};

#define SIM_FLAG(name, type, field, min, max)                                  \
    {                                                                          \
        name, type, offsetof(struct sim_args, field), min, max                 \
    }

static const struct sim_flag sim_flags[] = {
    SIM_FLAG("--clients", FLAG_U32, clients, 1, 1000000),
    SIM_FLAG("--per-round", FLAG_U32, per_round, 1, 1000000),
    SIM_FLAG("--rounds", FLAG_U32, rounds, 1, 1000000),
    SIM_FLAG("--local-epochs", FLAG_U32, local_epochs, 1, 1000),
    SIM_FLAG("--batch", FLAG_U32, batch, 1, 65536),
    SIM_FLAG("--threads", FLAG_U32, threads, 1, 256),
    SIM_FLAG("--min-clients", FLAG_U32, min_clients, 1, 1000000),
    SIM_FLAG("--fed-eval", FLAG_U32, fed_eval_every, 1, 1000000),
    SIM_FLAG("--eval-every", FLAG_U32, eval_every, 1, 1000000),
    SIM_FLAG("--dp-rounds", FLAG_U32, dp_rounds, 1, 1000000),
    SIM_FLAG("--lr", FLAG_DOUBLE, lr, 0, 0),
    SIM_FLAG("--momentum", FLAG_DOUBLE, momentum, 0, 0),
    SIM_FLAG("--epsilon", FLAG_DOUBLE, epsilon, 0, 0),
    SIM_FLAG("--sigma", FLAG_DOUBLE, sigma, 0, 0),
    SIM_FLAG("--clip", FLAG_DOUBLE, clip, 0, 0),
    SIM_FLAG("--delta", FLAG_DOUBLE, delta, 0, 0),
    SIM_FLAG("--dropout", FLAG_DOUBLE, dropout, 0, 0),
    SIM_FLAG("--model", FLAG_STR, model, 0, 0),
    SIM_FLAG("--partition", FLAG_STR, partition, 0, 0),
    SIM_FLAG("--strategy", FLAG_STR, strategy, 0, 0),
    SIM_FLAG("--db", FLAG_STR, db, 0, 0),
    SIM_FLAG("--data", FLAG_STR, data_dir, 0, 0),
    SIM_FLAG("--no-dp", FLAG_FALSE, dp, 0, 0),
    SIM_FLAG("--overwrite", FLAG_TRUE, overwrite, 0, 0),
    SIM_FLAG("--tls", FLAG_TRUE, tls, 0, 0),
    SIM_FLAG("--json", FLAG_TRUE, json, 0, 0),
    SIM_FLAG("--quiet", FLAG_TRUE, quiet, 0, 0),
};

static const struct sim_flag *
find_flag(const char *name)
{
    for (size_t i = 0; i < sizeof(sim_flags) / sizeof(sim_flags[0]); i++)
        if (strcmp(sim_flags[i].name, name) == 0)
            return &sim_flags[i];
    return NULL;
}

/* Parse v into the field sf names; prints the reason on failure. */
static bool
set_flag(struct sim_args *a, const struct sim_flag *sf, const char *v)
{
    void *field = (char *)a + sf->offset;
    long l;
    switch (sf->type) {
    case FLAG_U32:
        if (!roost_cli_parse_int("sim", sf->name, v, sf->min, sf->max, &l))
            return false;
        *(uint32_t *)field = (uint32_t)l;
        return true;
    case FLAG_DOUBLE:
        return roost_cli_parse_double("sim", sf->name, v, (double *)field);
    case FLAG_STR:
        *(const char **)field = v;
        return true;
    default:
        return false;
    }
}

/* Longest --round-timeout, in seconds: seven days. */
#define SIM_ROUND_TIMEOUT_MAX_S 604800L

static bool
parse_args(int argc, char **argv, struct sim_args *a)
{
    memset(a, 0, sizeof(*a));
    a->clients = 100;
    a->per_round = 10;
    a->rounds = 20;
    a->model = "mlp";
    a->local_epochs = 1;
    a->batch = 32;
    a->lr = (double)NAN; /* unset: chosen after parsing, by DP or not */
    a->partition = "iid";
    a->dp = true;
    a->epsilon = 8.0;
    a->clip = 1.0;
    a->delta = 1e-5;
    a->db = "roost-sim.db";
    a->round_timeout_ms = 300000;
    a->strategy = "fedavg";
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    a->threads = nproc > 0 ? (uint32_t)nproc : 1;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) {
            usage(stdout);
            exit(ROOST_EXIT_OK);
        }
#define NEED_VALUE()                                                           \
    do {                                                                       \
        if (v == NULL) {                                                       \
            fprintf(stderr, "roost sim: %s needs a value\n", f);               \
            return false;                                                      \
        }                                                                      \
        i++;                                                                   \
    } while (0)
        const struct sim_flag *sf = find_flag(f);
        if (sf != NULL) {
            if (sf->type == FLAG_TRUE || sf->type == FLAG_FALSE) {
                *(bool *)((char *)a + sf->offset) = sf->type == FLAG_TRUE;
                continue;
            }
            NEED_VALUE();
            if (!set_flag(a, sf, v))
                return false;
            if (a->dp_only_flag == NULL &&
                (sf->offset == offsetof(struct sim_args, epsilon) ||
                 sf->offset == offsetof(struct sim_args, sigma) ||
                 sf->offset == offsetof(struct sim_args, clip) ||
                 sf->offset == offsetof(struct sim_args, delta) ||
                 sf->offset == offsetof(struct sim_args, dp_rounds)))
                a->dp_only_flag = sf->name;
            continue;
        }
        if (strcmp(f, "--straggler") == 0) {
            NEED_VALUE();
            char *colon = strchr(v, ':');
            char pbuf[64];
            if (colon == NULL || (size_t)(colon - v) >= sizeof(pbuf)) {
                fprintf(stderr, "roost sim: --straggler wants P:FACTOR\n");
                return false;
            }
            memcpy(pbuf, v, (size_t)(colon - v));
            pbuf[colon - v] = '\0';
            if (!roost_cli_parse_double("sim", f, pbuf, &a->straggler_p) ||
                !roost_cli_parse_double("sim", f, colon + 1,
                                        &a->straggler_factor))
                return false;
            if (a->straggler_factor < 1.0) {
                fprintf(stderr, "roost sim: --straggler factor must be >= 1\n");
                return false;
            }
        } else if (strcmp(f, "--round-timeout") == 0) {
            NEED_VALUE();
            /* Seconds, up to a week (serve's [round] timeout allows the
             * same); the bound also keeps the milliseconds in range. */
            long secs;
            if (!roost_cli_parse_int("sim", f, v, 1, SIM_ROUND_TIMEOUT_MAX_S,
                                     &secs))
                return false;
            a->round_timeout_ms = (uint64_t)secs * 1000u;
        } else if (strcmp(f, "--seed") == 0) {
            NEED_VALUE();
            if (!roost_cli_parse_u64("sim", f, v, &a->seed))
                return false;
            a->seeded = true;
        } else {
            fprintf(stderr, "roost sim: unknown flag '%s' (see --help)\n", f);
            return false;
        }
#undef NEED_VALUE
    }
    if (a->per_round > a->clients) {
        fprintf(stderr, "roost sim: --per-round %u exceeds --clients %u\n",
                a->per_round, a->clients);
        return false;
    }
    if (a->min_clients > a->per_round) {
        fprintf(stderr, "roost sim: --min-clients exceeds --per-round\n");
        return false;
    }
    if (!(a->dropout >= 0 && a->dropout <= 1) ||
        !(a->straggler_p >= 0 && a->straggler_p <= 1)) {
        fprintf(stderr, "roost sim: probabilities must be in [0, 1]\n");
        return false;
    }
    /* --no-dp and a privacy setting contradict each other: the setting
     * would be silently ignored and the run reported as if it meant
     * something (as `roost train` refuses DP flags without --dp). */
    if (!a->dp && a->dp_only_flag != NULL) {
        fprintf(stderr,
                "roost sim: %s is a differential privacy setting and "
                "--no-dp turns differential privacy off; drop one\n",
                a->dp_only_flag);
        return false;
    }
    if (a->dp && (!(a->epsilon > 0) || !(a->clip > 0) || a->sigma < 0 ||
                  !(a->delta > 0 && a->delta < 1))) {
        fprintf(stderr, "roost sim: DP needs --epsilon > 0, --clip > 0, "
                        "--sigma >= 0 and --delta in (0, 1)\n");
        return false;
    }
    if (isnan(a->lr))
        a->lr = a->dp ? 0.5 : 0.05;
    if (!(a->lr > 0)) {
        fprintf(stderr, "roost sim: --lr must be > 0\n");
        return false;
    }
    /* The range serve's [training] momentum allows: at 1 or above the
     * velocity never decays and local training diverges. */
    if (!(a->momentum >= 0 && a->momentum < 1)) {
        fprintf(stderr, "roost sim: --momentum %g is outside [0, 1)\n",
                a->momentum);
        return false;
    }
    /* A strategy that needs more updates than a round can have would
     * record every round as failed. */
    roost_errmsg em;
    if (roost_strategy_kind_parse(a->strategy, &a->strategy_kind, &em) !=
        ROOST_OK) {
        fprintf(stderr, "roost sim: --strategy: %s\n", em.text);
        return false;
    }
    roost_strategy_config scfg;
    roost_strategy_config_init(&scfg, a->strategy_kind);
    size_t need = roost_strategy_min_updates(&scfg);
    if (need > a->per_round) {
        fprintf(stderr,
                "roost sim: --strategy %s (tolerating f=%zu Byzantine "
                "clients) needs at least %zu updates per round; "
                "--per-round is %u\n",
                a->strategy, scfg.byzantine_f, need, a->per_round);
        return false;
    }
    if (a->dp_rounds == 0) {
        /* Twice the rounds a client takes part in on average: a client
         * selected more often than that runs out of budget and is
         * replaced, instead of every client's noise being sized for the
         * unlikely case of joining every round. */
        double share =
            2.0 * (double)a->rounds * (double)a->per_round / (double)a->clients;
        a->dp_rounds =
            share >= (double)a->rounds ? a->rounds : (uint32_t)ceil(share);
        if (a->dp_rounds == 0)
            a->dp_rounds = 1;
    }
    return true;
}

/* ---------------------------------------------------------------- main */

static void
sim_free(struct sim *s)
{
    tls_teardown(s);
    if (s->threads != NULL) {
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        pthread_cond_broadcast(&s->cv_work);
        pthread_mutex_unlock(&s->mu);
        for (uint32_t i = 0; i < s->n_threads; i++)
            pthread_join(s->threads[i], NULL);
        free(s->threads);
    }
    while (s->work_head != NULL) {
        struct job *j = s->work_head;
        s->work_head = j->next;
        free(j);
    }
    while (s->done_head != NULL) {
        struct job *j = s->done_head;
        s->done_head = j->next;
        free(j);
    }
    while (s->held != NULL) {
        struct job *j = s->held;
        s->held = j->next;
        free(j);
    }
    while (s->q_head != NULL) {
        struct frame *f = s->q_head;
        s->q_head = f->next;
        free(f);
    }
    if (s->vc != NULL)
        for (uint32_t i = 0; i < s->a.clients; i++)
            roost_cproto_destroy(s->vc[i].proto);
    free(s->vc);
    roost_coord_destroy(s->coord);
    roost_store_close(s->store);
    roost_partition_destroy(s->part);
    for (uint32_t i = 0; s->eval_ws != NULL && i < s->n_eval; i++)
        roost_workspace_destroy(s->eval_ws[i]);
    free(s->eval_ws);
    roost_model_destroy(s->model);
    roost_noise_memo_destroy(s->memo);
    roost_dataset_destroy(s->train);
    roost_dataset_destroy(s->test);
    roost_rng_destroy(s->rng);
    free(s->encode_buf);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv_work);
    pthread_cond_destroy(&s->cv_done);
}

/* Deliver every queued client -> coordinator frame. */
static int
drain_queue(struct sim *s, int64_t now)
{
    while (s->q_head != NULL) {
        struct frame *f = s->q_head;
        s->q_head = f->next;
        if (s->q_head == NULL)
            s->q_tail = NULL;
        Roost__V1__Envelope *m = NULL;
        roost_errmsg em;
        int rc = roost_wire_decode(NULL, f->bytes, f->len, NULL, &m, &em);
        uint64_t session = f->session;
        free(f);
        if (rc != ROOST_OK) {
            fprintf(stderr, "roost sim: undecodable frame from client: %s\n",
                    em.text);
            continue;
        }
        if (s->vc[session - 1].connected)
            rc = roost_coord_session_message(s->coord, session, m,
                                             coord_time(now));
        roost_wire_free(NULL, m);
        if (rc != ROOST_OK) {
            fprintf(stderr, "roost sim: coordinator failed: %s\n",
                    roost_coord_errmsg(s->coord));
            return rc;
        }
    }
    return ROOST_OK;
}

/* With DP, whether the run can go on: between rounds, with nothing
 * training, at least as many clients as a round needs must still have
 * budget. Otherwise no round can ever open again (a deployment would wait
 * for new devices; a simulation has no others), so it says so and stops. */
static bool
out_of_budget(struct sim *s)
{
    if (!s->a.dp || roost_coord_round_open(s->coord))
        return false;
    pthread_mutex_lock(&s->mu);
    bool busy = s->running > 0 || s->held != NULL || s->done_head != NULL;
    pthread_mutex_unlock(&s->mu);
    if (busy)
        return false;
    uint32_t able = 0;
    for (uint32_t i = 0; i < s->a.clients; i++) {
        const struct vclient *vc = &s->vc[i];
        if (roost_cproto_state(vc->proto) != ROOST_CP_EXHAUSTED &&
            vc->budget.eps_max - vc->budget.spent > 0)
            able++;
    }
    if (able >= s->a.per_round)
        return false;
    bar_clear(s);
    fprintf(stderr,
            "roost sim: stopping after %u round%s: only %u client%s "
            "privacy budget left, and a round needs %u\n",
            s->rounds_done, s->rounds_done == 1 ? "" : "s", able,
            able == 1 ? " has" : "s have", s->a.per_round);
    return true;
}

/*
 * The run stops before --rounds when the budgets run out. With
 * --eval-every N the last committed model may not have been evaluated
 * (only every N-th round and the planned last are): evaluate it now, so
 * the run ends with the accuracy of the model it leaves.
 */
static void
final_evaluation(struct sim *s)
{
    if (s->rounds_committed == 0 || s->last_committed_evaluated)
        return;
    double loss = (double)NAN, acc = (double)NAN;
    if (sim_evaluate(s, roost_coord_params(s->coord, NULL), &loss, &acc) !=
        ROOST_OK)
        return;
    s->last_committed_evaluated = true;
    if (s->a.json) {
        char a[ROOST_CLI_JSON_NUMBER_CAP], l[ROOST_CLI_JSON_NUMBER_CAP];
        roost_cli_json_number(a, sizeof(a), acc, 6);
        roost_cli_json_number(l, sizeof(l), loss, 6);
        printf("{\"round\":%" PRId64 ",\"kind\":\"final\",\"accuracy\":%s,"
               "\"loss\":%s}\n",
               s->last_committed_id, a, l);
        fflush(stdout);
    } else if (!s->a.quiet) {
        bar_clear(s);
        printf("final model (round %" PRId64 "): accuracy %6.2f%%  loss %.4f\n",
               s->last_committed_id, 100.0 * acc, loss);
    }
}

static int
setup_dp(struct sim *s, roost_coord_config *cc)
{
    const struct sim_args *a = &s->a;
    /* The coordinator fixes q (so it does not depend on each client's
     * private data size): the expected batch over the mean local size. */
    double mean_local = (double)roost_dataset_count(s->train) / a->clients;
    double q = (double)a->batch / mean_local;
    if (q > 1.0)
        q = 1.0;
    uint64_t steps = (uint64_t)ceil((double)a->local_epochs / q - 1e-9);
    double sigma = a->sigma;
    roost_errmsg em;
    uint32_t plan_rounds = a->dp_rounds != 0 && a->dp_rounds < a->rounds
                               ? a->dp_rounds
                               : a->rounds;
    /* Every step of a client draws one noise value per parameter: the
     * sampler's distance from the ideal Gaussian is charged over the
     * draws of the rounds the budget is planned for (docs/privacy.md). */
    double draws = (double)roost_model_param_count(s->model) * (double)steps *
                   (double)plan_rounds;
    if (sigma == 0) {
        int rc = roost_dp_calibrate_sigma_sampled(
            s->memo, q, steps * plan_rounds, draws, a->clip, 0, a->delta,
            a->epsilon, &sigma, &em);
        if (rc != ROOST_OK) {
            fprintf(stderr, "roost sim: cannot calibrate sigma: %s\n", em.text);
            return rc;
        }
    }
    double eps_all = 0, mu, beta;
    roost_dp_event ev = {q, sigma, steps * plan_rounds};
    int rc =
        roost_noise_closeness_for(s->memo, sigma, a->clip, 0, &mu, &beta, &em);
    /* Reported with a loose cap: above the budget's epsilon the search
     * would stop at a lower bound, and the line states a value. */
    if (rc == ROOST_OK)
        rc = roost_dp_epsilon_sampled(&ev, 1, draws * mu, draws * beta,
                                      SIM_EPS_REPORT_CAP, a->delta, &eps_all,
                                      NULL, &em);
    if (rc != ROOST_OK) {
        fprintf(stderr, "roost sim: accountant: %s\n", em.text);
        return rc;
    }
    char reach[64];
    if (isfinite(eps_all) && eps_all <= SIM_EPS_REPORT_CAP)
        snprintf(reach, sizeof(reach), "%.4f", eps_all);
    else if (isfinite(eps_all)) /* a lower bound: the search stopped */
        snprintf(reach, sizeof(reach), "more than %g", SIM_EPS_REPORT_CAP);
    else
        snprintf(reach, sizeof(reach),
                 "no epsilon up to %g (the noise sampler's tail term)",
                 SIM_EPS_REPORT_CAP);
    s->dp_sigma = sigma;
    s->dp_q = q;
    s->dp_steps_per_round = steps;
    cc->dp_enabled = true;
    cc->dp_noise_multiplier = sigma;
    cc->dp_clip_norm = a->clip;
    cc->dp_delta = a->delta;
    cc->dp_sampling_rate = q;
    cc->dp_expected_batch = a->batch;
    if (!a->json)
        printf("DP-SGD: noise multiplier %.4f, clip %g, q %.5f, %" PRIu64
               " steps per round; budget epsilon %g at delta %g per client "
               "(a client in %u round%s would reach %s%s)\n",
               sigma, a->clip, q, steps, a->epsilon, a->delta, plan_rounds,
               plan_rounds == 1 ? "" : "s", reach,
               plan_rounds < a->rounds
                   ? "; each client's own budget stops it after that"
                   : "");
    return ROOST_OK;
}

int
roost_cmd_sim(int argc, char **argv)
{
    struct sim sim;
    struct sim *s = &sim;
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv_work, NULL);
    pthread_condattr_t done_attr;
    pthread_condattr_init(&done_attr);
    pthread_condattr_setclock(&done_attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv_done, &done_attr);
    pthread_condattr_destroy(&done_attr);
    if (!parse_args(argc, argv, &s->a)) {
        sim_free(s);
        return ROOST_EXIT_USAGE;
    }
    const struct sim_args *a = &s->a;
    roost_errmsg em;
    int rc;
    int status = ROOST_EXIT_FAIL;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sim_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* Parallelism comes from running clients at once, each on one BLAS
     * thread (ARCHITECTURE.md, "Performance model"). */
    openblas_set_num_threads(1);

    if (a->seeded)
        fprintf(stderr,
                "roost sim: WARNING: --seed makes DP noise and client "
                "selection predictable (INSECURE, for experiments only)\n");
    /* Notices about privacy go to stdout with the progress lines, or to
     * stderr under --json, whose stdout is JSON only: either way the user
     * sees them. */
    if (!a->dp)
        fprintf(a->json ? stderr : stdout,
                "roost sim: differential privacy is OFF (--no-dp)\n");

    bool replace_db = access(a->db, F_OK) == 0;
    if (replace_db && !a->overwrite) {
        fprintf(stderr,
                "roost sim: %s exists; pass --overwrite or choose "
                "another --db\n",
                a->db);
        sim_free(s);
        return ROOST_EXIT_USAGE;
    }

    rc = roost_dataset_load_fmnist(&s->train, NULL, a->data_dir,
                                   ROOST_SPLIT_TRAIN, &em);
    if (rc == ROOST_OK)
        rc = roost_dataset_load_fmnist(&s->test, NULL, a->data_dir,
                                       ROOST_SPLIT_TEST, &em);
    if (rc != ROOST_OK) {
        fprintf(stderr, "roost sim: %s\n", em.text);
        goto out;
    }
    if (sim_stopping())
        goto out; /* before any record is made or replaced */
    roost_partition_spec pspec;
    rc = roost_partition_spec_parse(&pspec, a->partition, &em);
    if (rc == ROOST_OK)
        rc = roost_partition_create(
            &s->part, NULL, &pspec, roost_dataset_labels(s->train),
            roost_dataset_count(s->train), roost_dataset_num_classes(s->train),
            a->clients, a->seeded ? a->seed : 1, &em);
    if (rc != ROOST_OK) {
        fprintf(stderr, "roost sim: --partition: %s\n", em.text);
        status = ROOST_EXIT_USAGE;
        goto out;
    }
    rc = roost_model_create(
        &s->model, NULL, a->model, roost_dataset_channels(s->train),
        roost_dataset_height(s->train), roost_dataset_width(s->train), &em);
    if (rc != ROOST_OK) {
        fprintf(stderr, "roost sim: --model: %s\n", em.text);
        status = ROOST_EXIT_USAGE;
        goto out;
    }
    /* A model with fewer outputs than the data has classes cannot take a
     * single training step: every client would fail every round with
     * nothing but "local training step failed" (roost train refuses the
     * same spec). */
    if (roost_model_num_classes(s->model) <
        roost_dataset_num_classes(s->train)) {
        fprintf(stderr,
                "roost sim: --model: the model has %u outputs but the data "
                "has %u classes\n",
                roost_model_num_classes(s->model),
                roost_dataset_num_classes(s->train));
        status = ROOST_EXIT_USAGE;
        goto out;
    }
    rc = a->seeded ? roost_rng_create_insecure_deterministic(&s->rng, NULL,
                                                             a->seed, 1)
                   : roost_rng_create(&s->rng, NULL);
    if (rc != ROOST_OK)
        goto out;
    /* The old record goes only now, once the data, the partition and the
     * model are known to be good: a mistyped --model or --partition exits
     * 2 and must not cost the user the previous run's record. */
    if (replace_db) {
        char side[1024];
        unlink(a->db);
        snprintf(side, sizeof(side), "%s-wal", a->db);
        unlink(side);
        snprintf(side, sizeof(side), "%s-shm", a->db);
        unlink(side);
    }
    rc = roost_store_open(&s->store, a->db, ROOST_STORE_CREATE, &em);
    if (rc != ROOST_OK) {
        fprintf(stderr, "roost sim: %s: %s\n", a->db, em.text);
        goto out;
    }

    roost_coord_config cc;
    roost_coord_config_init(&cc);
    cc.dp_enabled = false; /* set by the DP setup unless --no-dp */
    cc.model_spec = a->model;
    cc.input_channels = roost_dataset_channels(s->train);
    cc.input_height = roost_dataset_height(s->train);
    cc.input_width = roost_dataset_width(s->train);
    cc.init_seed = a->seeded ? a->seed : 1;
    cc.clients_per_round = a->per_round;
    cc.min_clients = a->min_clients ? a->min_clients : a->per_round;
    cc.fed_eval_every = a->fed_eval_every;
    cc.min_available = a->per_round;
    cc.round_timeout_ms = a->round_timeout_ms;
    cc.max_rounds = a->rounds;
    cc.local_epochs = a->local_epochs;
    cc.batch_size = a->batch;
    cc.learning_rate = a->lr;
    cc.momentum = a->momentum;
    cc.eval_set = s->test;
    cc.eval_every = a->eval_every;
    cc.evaluate = sim_evaluate;
    cc.evaluate_arg = s;
    cc.selection_seed = a->seeded ? a->seed : 0;
    cc.store = s->store;
    /* The record names a seeded DP run insecure, so `roost report` and
     * `roost status --json` do not present its epsilon as a guarantee. */
    cc.run_name = a->seeded && a->dp
                      ? "roost sim (INSECURE: --seed makes DP noise "
                        "predictable)"
                      : "roost sim";
    cc.log.max_level = -1;
    cc.on_round = on_round;
    cc.on_round_arg = s;
    roost_strategy_config_init(&cc.strategy, a->strategy_kind);
    if (roost_noise_memo_create(&s->memo, NULL, &em) != ROOST_OK) {
        fprintf(stderr, "roost sim: %s\n", em.text);
        goto out;
    }
    if (a->dp && setup_dp(s, &cc) != ROOST_OK)
        goto out;
    if (a->fed_eval_every > 0)
        fprintf(a->json ? stderr : stdout,
                "%sfederated evaluation every %u training rounds: clients "
                "report loss and accuracy on their own data WITHOUT "
                "differential privacy\n",
                a->json ? "roost sim: " : "", a->fed_eval_every);
    roost_coord_io io = {coord_send, coord_close, s};
    if (a->tls) {
        io.send = tls_coord_send;
        io.close = tls_coord_close;
    }
    rc = roost_coord_create(&s->coord, &cc, &io, &em);
    if (rc != ROOST_OK) {
        fprintf(stderr, "roost sim: coordinator: %s\n", em.text);
        goto out;
    }

    s->vc = calloc(a->clients, sizeof(*s->vc));
    if (s->vc == NULL)
        goto out;
    int64_t now = now_ms();
    s->t0_ms = s->last_round_ms = now;
    for (uint32_t i = 0; i < a->clients; i++) {
        struct vclient *vc = &s->vc[i];
        vc->sim = s;
        vc->index = i;
        vc->session = (uint64_t)i + 1;
        vc->idx = roost_partition_client(s->part, i, &vc->n_local);
        vc->budget.eps_max = a->dp ? a->epsilon : HUGE_VAL;
        vc->budget.delta = a->delta;
        roost_cproto_config pc = {
            .n_local = vc->n_local,
            .budget = {budget_plan, budget_charge, budget_remaining,
                       &vc->budget},
            .keep_model = false,
            .allow_evaluation = a->fed_eval_every > 0,
            .allow_no_dp = !a->dp, /* --no-dp: the whole run is non-private */
            .noise_memo = s->memo,
            .log = {NULL, NULL, -1},
        };
        rc = roost_cproto_create(&vc->proto, NULL, &pc,
                                 a->tls ? tls_client_send : client_send, vc,
                                 &em);
        if (rc == ROOST_OK && !a->tls)
            rc = vclient_connect(s, vc, now);
        if (rc != ROOST_OK) {
            fprintf(stderr, "roost sim: client %u: %s\n", i, em.text);
            goto out;
        }
    }
    if (a->tls && tls_setup(s) != ROOST_OK)
        goto out;
    s->n_eval = a->threads < 64 ? a->threads : 64;
    s->eval_ws = calloc(s->n_eval, sizeof(*s->eval_ws));
    if (s->eval_ws == NULL)
        goto out;
    for (uint32_t i = 0; i < s->n_eval; i++)
        if (roost_workspace_create(&s->eval_ws[i], s->model, 256, &em) !=
            ROOST_OK) {
            fprintf(stderr, "roost sim: evaluation workspace: %s\n", em.text);
            goto out;
        }
    s->n_threads = a->threads;
    s->threads = calloc(s->n_threads, sizeof(*s->threads));
    if (s->threads == NULL)
        goto out;
    for (uint32_t i = 0; i < s->n_threads; i++)
        if (pthread_create(&s->threads[i], NULL, worker_main, s) != 0) {
            s->n_threads = i;
            fprintf(stderr, "roost sim: cannot start worker threads\n");
            goto out;
        }

    if (!a->json && !a->quiet)
        printf("roost sim: %u clients (%s), %u per round, %u rounds, model "
               "%s (%zu parameters), %u threads, record in %s\n",
               a->clients, a->partition, a->per_round, a->rounds,
               roost_model_spec(s->model), roost_model_param_count(s->model),
               s->n_threads, a->db);

    s->progress_bar = !a->json && !a->quiet && isatty(STDOUT_FILENO);
    /* Round times and the ETA start here, not before the setup: making
     * --tls's certificates takes seconds for a few hundred clients, and
     * round 1 used to be charged for them (3.9 s against 0.1 s for the
     * next rounds, with 300 clients). */
    s->t0_ms = s->last_round_ms = now_ms();
    while (!roost_coord_finished(s->coord) && !s->failed && !sim_stopping()) {
        if (a->tls)
            tls_poll(s);
        now = now_ms();
        int64_t next;
        /* The tick sends tasks; with --tls a failed send closes the session
         * and the listener reports CLOSED at once. Hold it like the
         * listener's own events do (coord.h: the transport reports a close
         * later), or the coordinator frees a session it is still using. */
        s->in_coord = true;
        rc = roost_coord_tick(s->coord, coord_time(now), &next);
        s->in_coord = false;
        tls_drain_closed(s);
        if (rc == ROOST_OK)
            rc = drain_queue(s, now);
        if (rc != ROOST_OK) {
            fprintf(stderr, "roost sim: %s\n", roost_coord_errmsg(s->coord));
            goto out;
        }
        bool busy = false;
        for (uint32_t i = 0; i < a->clients; i++) {
            struct vclient *vc = &s->vc[i];
            if (vc->drop_pending) {
                vc->drop_pending = false;
                if (a->tls) {
                    /* Closed here, connected again shortly after, like
                     * a device coming back. */
                    if (vc->csession != 0)
                        roost_channel_close(vc->ch, vc->csession);
                    vc->rejoin = true;
                    vc->reconnect_at_ms = now + 50;
                } else {
                    vclient_disconnect(s, vc, now);
                }
            }
            if (vc->rejoin && now >= vc->reconnect_at_ms) {
                if (roost_channel_connect(vc->ch, s->tls_endpoint,
                                          "localhost") == ROOST_OK)
                    vc->rejoin = false;
                else
                    vc->reconnect_at_ms = now + 1000;
            }
            if (!vc->connected && a->tls)
                continue;
            if (!vc->connected) {
                if (now >= vc->reconnect_at_ms &&
                    vclient_connect(s, vc, now) != ROOST_OK)
                    vc->reconnect_at_ms = now + 1000;
                continue;
            }
            enum roost_cproto_state st = roost_cproto_state(vc->proto);
            if (st == ROOST_CP_READY && !vc->queued) {
                rc = submit_job(s, vc);
                if (rc != ROOST_OK)
                    vclient_disconnect(s, vc, now);
                busy = true;
            } else if (st == ROOST_CP_BACKOFF && !vc->queued) {
                roost_cproto_tick(vc->proto, now, NULL);
            }
        }
        rc = drain_queue(s, now);
        if (rc != ROOST_OK)
            goto out;
        collect_jobs(s, now_ms(), !busy);
        rc = drain_queue(s, now_ms());
        if (rc != ROOST_OK)
            goto out;
        if (out_of_budget(s)) {
            final_evaluation(s);
            break;
        }
        bar_draw(s, now_ms());
    }
    bar_clear(s);
    if (sim_stopping()) {
        /* The open round is abandoned, and a simulation never resumes
         * it: clear the store's open-round note (0: none, as
         * roost_store_get_open_round reports it), or roost status would
         * show a round as open for good. */
        if (roost_coord_round_open(s->coord)) {
            roost_coord_abandon_round(s->coord);
            if (roost_store_note_open_round(s->store, 0, 0, 0, &em) != ROOST_OK)
                fprintf(stderr, "roost sim: %s\n", em.text);
        }
        goto out;
    }
    if (!a->json && !a->quiet) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("done: %u rounds in %.1fs, peak RSS %.1f MiB. Record: %s "
               "(roost status --db %s; roost report --db %s -o "
               "report.html)\n",
               s->rounds_done, (double)(now_ms() - s->t0_ms) / 1000.0,
               (double)ru.ru_maxrss / 1024.0, a->db, a->db, a->db);
    }
    /* A run in which no round committed produced no model: say so and
     * fail, so a script does not take it for a result. */
    if (s->rounds_committed == 0) {
        fprintf(stderr,
                "roost sim: no training round committed (%u recorded as "
                "failed); the model is the initial one\n",
                s->rounds_done);
        status = ROOST_EXIT_FAIL;
        goto out;
    }
    status = ROOST_EXIT_OK;
out:
    bar_clear(s);
    if (sim_stopping() && s->store == NULL)
        fprintf(stderr, "roost sim: interrupted before the run started; "
                        "no record was made\n");
    else if (sim_stopping())
        fprintf(stderr,
                "roost sim: interrupted after %u rounds (%u committed); the "
                "record in %s holds them (the open round is not recorded)\n",
                s->rounds_done, s->rounds_committed, a->db);
    sim_free(s);
    return sim_stopping() ? ROOST_EXIT_FAIL : status;
}
