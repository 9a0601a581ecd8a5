/*
 * client.c - libroost's public client: configuration, the durable ledger,
 * the TLS channel to the coordinator, the round protocol (cproto.c) and
 * step-wise local training, driven by roost_client_step.
 *
 * Invariants:
 *  - Privacy events go to the ledger (roost_ledger_charge, fsync'd) and
 *    are released (roost_ledger_release) before cproto hands the update to
 *    the channel; a failed charge sends nothing.
 *  - One step does a bounded amount of work: one channel poll without
 *    waiting, then at most one training step.
 *  - The local data is copied from the provider at the start of a task
 *    and freed at its end.
 *  - A condition that ends the client is recorded once (set_fatal), with
 *    its explanation in em; every later step returns it.
 *  - The client is always connected or connecting: a session it closes
 *    itself is remade after a backoff (drop_session), since the channel
 *    only remakes sessions that the peer or the network ended.
 * Threading: one thread drives a client; roost_client_cancel may come
 * from any thread (it only stores to an atomic flag, which step reads).
 */
#include <roost/roost.h>

#include "client/src/cproto.h"
#include "client/src/local_train.h"
#include "common/alloc.h"
#include "common/channel.h"
#include "common/clock.h"
#include "common/dataset.h"
#include "common/model.h"
#include "common/rng.h"
#include "common/wire.h"
#include "dp/ledger.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct roost_config {
    const roost_allocator *alloc;
    char *endpoint, *server_name;
    char *ca, *cert, *key;
    char *ledger_path;
    double epsilon, delta;
    int ledger_create;
    bool has_data, has_trainer;
    roost_data_provider data;
    roost_trainer trainer;
    roost_logger log;
    roost_progress_fn progress;
    void *progress_arg;
    uint64_t max_rounds;
    bool allow_evaluation;
    bool allow_no_dp;
    int reconnect_min_ms, reconnect_max_ms;
    char *label;
    bool seeded;
    uint64_t seed;
};

struct roost_client {
    const roost_allocator *alloc;
    roost_config cfg; /* strings owned (deep copy) */
    roost_errmsg em;
    atomic_int canceled; /* set by roost_client_cancel from any thread */
    roost_ledger *ledger;
    roost_tls_ctx *tls;
    roost_channel *ch;
    uint64_t session; /* 0: not connected */
    roost_cproto *proto;
    roost_rng *rng;
    uint8_t *buf;
    size_t buf_cap;
    int fatal;             /* a condition that ends the client (em says why) */
    char server_name[256]; /* the name the coordinator's certificate carries */
    /* A session this client closed itself is not remade by the channel:
     * reconnect_at_ms (0: none due) is when to connect again, and
     * reconnect_ms the backoff after the next such close. */
    int64_t reconnect_at_ms;
    int reconnect_ms;
    /* A send to the coordinator failed (ROOST_OK: none since the last
     * check): the conversation is then in an unknown state. */
    int send_failed;
    /* The open session's coordinator certificate: its notAfter (Unix
     * seconds; INT64_MAX with no session, or when it cannot be read) and
     * subject, for closing the session when it expires. */
    int64_t server_not_after;
    char server_subject[ROOST_TLS_SUBJECT_CAP];
    /* The task in hand. */
    roost_dataset *data;
    roost_model *model;
    roost_local_trainer *trainer;
    roost_grad_ops ops;
    roost_cproto_job *job;
    uint64_t rounds_seen;
};

/* ----------------------------------------------------------- config */

static char *
dup_str(const roost_allocator *a, const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = roost_alloc_malloc(a, n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

/*
 * Replace the strings *slots[i] with copies of values[i] (NULL stays NULL),
 * all or none: a setter that runs out of memory halfway must not leave a
 * mix of old and new settings (a CA with no device certificate would give
 * a client that connects without one).
 */
static int
set_strs(roost_config *cfg, char **const *slots, const char *const *values,
         size_t n)
{
    char *copies[3] = {NULL, NULL, NULL};
    if (n > sizeof(copies) / sizeof(copies[0]))
        return ROOST_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (values[i] == NULL)
            continue;
        copies[i] = dup_str(cfg->alloc, values[i]);
        if (copies[i] == NULL) {
            for (size_t j = 0; j < i; j++)
                roost_alloc_free(cfg->alloc, copies[j]);
            return ROOST_ENOMEM;
        }
    }
    for (size_t i = 0; i < n; i++) {
        roost_alloc_free(cfg->alloc, *slots[i]);
        *slots[i] = copies[i];
    }
    return ROOST_OK;
}

static int
set_str(roost_config *cfg, char **slot, const char *value)
{
    return set_strs(cfg, &slot, &value, 1);
}

int
roost_config_create(roost_config **out, const roost_allocator *alloc)
{
    if (out == NULL)
        return ROOST_EINVAL;
    *out = roost_alloc_calloc(alloc, 1, sizeof(**out));
    if (*out == NULL)
        return ROOST_ENOMEM;
    (*out)->alloc = alloc;
    (*out)->log.max_level = -1;
    (*out)->reconnect_min_ms = 100;
    (*out)->reconnect_max_ms = 30000;
    return ROOST_OK;
}

static void
config_free_strings(roost_config *cfg)
{
    char **s[] = {&cfg->endpoint, &cfg->server_name, &cfg->ca,   &cfg->cert,
                  &cfg->key,      &cfg->ledger_path, &cfg->label};
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
        roost_alloc_free(cfg->alloc, *s[i]);
        *s[i] = NULL;
    }
}

void
roost_config_destroy(roost_config *cfg)
{
    if (cfg == NULL)
        return;
    config_free_strings(cfg);
    roost_alloc_free(cfg->alloc, cfg);
}

/* Longest host name (RFC 1035: 253 characters in text form). */
#define ENDPOINT_HOST_MAX 253

/*
 * Whether endpoint is "tcp://HOST:PORT" as the channel can connect to it:
 * HOST a non-empty DNS name or IPv4 address (letters, digits, '-', '.',
 * '_') or a bracketed IPv6 address ("[::1]"; the channel turns on
 * ZeroMQ's IPv6 mode for those), PORT decimal in 1..65535. Checked here
 * because the channel only hands the text to ZeroMQ when it connects, in
 * the background: a bad endpoint would fail there on every attempt and
 * the client would retry forever without saying why. ZeroMQ's
 * "source;destination" form and interface names are not client endpoints.
 */
static bool
endpoint_valid(const char *endpoint)
{
    if (strncmp(endpoint, "tcp://", 6) != 0)
        return false;
    const char *host = endpoint + 6;
    const char *colon = strrchr(host, ':');
    if (colon == NULL || colon == host ||
        (size_t)(colon - host) > ENDPOINT_HOST_MAX)
        return false;
    if (host[0] == '[') {
        /* "[" IPv6 "]" right before the port's colon. */
        size_t n = (size_t)(colon - host);
        char addr[INET6_ADDRSTRLEN];
        struct in6_addr a6;
        if (n < 4 || host[n - 1] != ']' || n - 2 >= sizeof(addr))
            return false;
        memcpy(addr, host + 1, n - 2);
        addr[n - 2] = '\0';
        if (inet_pton(AF_INET6, addr, &a6) != 1)
            return false;
    } else {
        for (const char *p = host; p < colon; p++) {
            char ch = *p;
            bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
                      ch == '_';
            if (!ok)
                return false;
        }
    }
    const char *port = colon + 1;
    size_t digits = strlen(port);
    if (digits == 0 || digits > 5)
        return false;
    unsigned long value = 0;
    for (const char *p = port; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return false;
        value = value * 10 + (unsigned long)(*p - '0');
    }
    return value >= 1 && value <= 65535;
}

/*
 * Whether name can be the name the coordinator's certificate is checked
 * against: 1..253 printable ASCII characters without spaces (a DNS name or
 * an IP address). TLS refuses to send an empty name, so "" would fail
 * every connection attempt; and anything longer than a DNS name would be
 * cut to fit and then never match.
 */
static bool
server_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > ENDPOINT_HOST_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (name[i] <= ' ' || name[i] > '~')
            return false;
    return true;
}

int
roost_config_set_server(roost_config *cfg, const char *endpoint,
                        const char *server_name)
{
    if (cfg == NULL || endpoint == NULL || !endpoint_valid(endpoint) ||
        (server_name != NULL && !server_name_valid(server_name)))
        return ROOST_EINVAL;
    char **const slots[] = {&cfg->endpoint, &cfg->server_name};
    const char *const values[] = {endpoint, server_name};
    return set_strs(cfg, slots, values, 2);
}

int
roost_config_set_tls(roost_config *cfg, const char *ca_file,
                     const char *cert_file, const char *key_file)
{
    if (cfg == NULL || ca_file == NULL || cert_file == NULL || key_file == NULL)
        return ROOST_EINVAL;
    char **const slots[] = {&cfg->ca, &cfg->cert, &cfg->key};
    const char *const values[] = {ca_file, cert_file, key_file};
    return set_strs(cfg, slots, values, 3);
}

int
roost_config_set_ledger(roost_config *cfg, const char *path, double epsilon,
                        double delta, int create)
{
    if (cfg == NULL || path == NULL || !(epsilon > 0) || !isfinite(epsilon) ||
        !(delta > 0 && delta < 1))
        return ROOST_EINVAL;
    int rc = set_str(cfg, &cfg->ledger_path, path);
    if (rc != ROOST_OK)
        return rc;
    cfg->epsilon = epsilon;
    cfg->delta = delta;
    cfg->ledger_create = create != 0;
    return ROOST_OK;
}

int
roost_config_set_data(roost_config *cfg, const roost_data_provider *data)
{
    /* The client copies the examples into one array of count rows of
     * channels * height * width floats: a shape whose row size cannot be
     * represented would wrap and make that copy overflow. */
    size_t dim = 0, row_bytes = 0;
    if (cfg == NULL || data == NULL || data->get == NULL || data->count == 0 ||
        data->count > UINT32_MAX || data->channels == 0 || data->height == 0 ||
        data->width == 0 || data->num_classes < 2 || data->num_classes > 256 ||
        !roost_size_mul((size_t)data->channels, data->height, &dim) ||
        !roost_size_mul(dim, data->width, &dim) ||
        !roost_size_mul(dim, sizeof(float), &row_bytes))
        return ROOST_EINVAL;
    cfg->data = *data;
    cfg->has_data = true;
    return ROOST_OK;
}

int
roost_config_set_trainer(roost_config *cfg, const roost_trainer *trainer)
{
    if (cfg == NULL || trainer == NULL || trainer->example_norms == NULL ||
        trainer->weighted_grad == NULL || trainer->max_batch == 0)
        return ROOST_EINVAL;
    cfg->trainer = *trainer;
    cfg->has_trainer = true;
    return ROOST_OK;
}

int
roost_config_set_log(roost_config *cfg, roost_log_fn fn, void *arg,
                     int max_level)
{
    if (cfg == NULL)
        return ROOST_EINVAL;
    cfg->log.fn = fn;
    cfg->log.arg = arg;
    cfg->log.max_level = max_level;
    return ROOST_OK;
}

int
roost_config_set_progress(roost_config *cfg, roost_progress_fn fn, void *arg)
{
    if (cfg == NULL)
        return ROOST_EINVAL;
    cfg->progress = fn;
    cfg->progress_arg = arg;
    return ROOST_OK;
}

int
roost_config_set_max_rounds(roost_config *cfg, uint64_t rounds)
{
    if (cfg == NULL)
        return ROOST_EINVAL;
    cfg->max_rounds = rounds;
    return ROOST_OK;
}

int
roost_config_set_allow_evaluation(roost_config *cfg, int allow)
{
    if (cfg == NULL || (allow != 0 && allow != 1))
        return ROOST_EINVAL;
    cfg->allow_evaluation = allow == 1;
    return ROOST_OK;
}

int
roost_config_set_allow_no_dp_insecure(roost_config *cfg, int allow)
{
    if (cfg == NULL || (allow != 0 && allow != 1))
        return ROOST_EINVAL;
    cfg->allow_no_dp = allow == 1;
    return ROOST_OK;
}

int
roost_config_set_reconnect(roost_config *cfg, int min_ms, int max_ms)
{
    if (cfg == NULL || min_ms <= 0 || max_ms < min_ms)
        return ROOST_EINVAL;
    cfg->reconnect_min_ms = min_ms;
    cfg->reconnect_max_ms = max_ms;
    return ROOST_OK;
}

/* The longest display label CheckIn carries (proto/roost.proto). */
#define LABEL_MAX_BYTES 128

int
roost_config_set_label(roost_config *cfg, const char *label)
{
    if (cfg == NULL)
        return ROOST_EINVAL;
    /* The coordinator's decoder refuses a check-in whose label is longer
     * than the schema allows or is not UTF-8, and the client would then be
     * disconnected at every check-in without a word: refuse it here. */
    if (label != NULL) {
        size_t n = strlen(label);
        if (n > LABEL_MAX_BYTES ||
            roost_wire_utf8_bad_offset((const uint8_t *)label, n) != n)
            return ROOST_EINVAL;
    }
    return set_str(cfg, &cfg->label, label);
}

int
roost_config_set_insecure_seed(roost_config *cfg, uint64_t seed)
{
    if (cfg == NULL)
        return ROOST_EINVAL;
    cfg->seeded = true;
    cfg->seed = seed;
    return ROOST_OK;
}

static int
memory_get(void *arg, const uint32_t *indices, size_t n, float *x,
           uint8_t *labels)
{
    roost_memory_data *m = arg;
    for (size_t i = 0; i < n; i++) {
        memcpy(x + i * m->dim, m->x + (size_t)indices[i] * m->dim,
               m->dim * sizeof(float));
        labels[i] = m->labels[indices[i]];
    }
    return ROOST_OK;
}

int
roost_data_provider_memory(roost_data_provider *out, roost_memory_data *storage,
                           const float *x, const uint8_t *labels, size_t count,
                           uint32_t channels, uint32_t height, uint32_t width,
                           uint32_t num_classes)
{
    size_t dim;
    if (out == NULL || storage == NULL || x == NULL || labels == NULL ||
        count == 0 || channels == 0 || height == 0 || width == 0 ||
        num_classes < 2 || num_classes > 256 ||
        !roost_size_mul((size_t)channels * height, width, &dim))
        return ROOST_EINVAL;
    storage->x = x;
    storage->labels = labels;
    storage->dim = dim;
    out->count = count;
    out->channels = channels;
    out->height = height;
    out->width = width;
    out->num_classes = num_classes;
    out->get = memory_get;
    out->arg = storage;
    return ROOST_OK;
}

static int64_t
mono_ms(void)
{
    return roost_clock_ms(CLOCK_MONOTONIC);
}

/* Wall-clock time, which certificate validity is stated in. */
static int64_t
wall_ms(void)
{
    return roost_clock_ms(CLOCK_REALTIME);
}

/* ----------------------------------------------------------- ledger */

static int
ledger_plan(void *arg, const roost_ledger_event *ev, double *eps_after,
            roost_errmsg *em)
{
    roost_client *c = arg;
    int rc = roost_ledger_plan(c->ledger, ev, eps_after);
    if (rc != ROOST_OK)
        roost_fail(em, rc, "%s", roost_ledger_errmsg(c->ledger));
    return rc;
}

static int
ledger_charge(void *arg, const roost_ledger_event *ev, double *eps_after,
              roost_errmsg *em)
{
    roost_client *c = arg;
    roost_ledger_receipt receipt;
    int rc = roost_ledger_charge(c->ledger, ev, &receipt, eps_after);
    /* Released at once: the protocol sends right after this returns, and
     * the event is durable by now. */
    if (rc == ROOST_OK)
        rc = roost_ledger_release(c->ledger, &receipt);
    if (rc != ROOST_OK)
        roost_fail(em, rc, "%s", roost_ledger_errmsg(c->ledger));
    return rc;
}

static int
ledger_remaining(void *arg, double *eps_remaining, double *delta)
{
    roost_client *c = arg;
    double spent = 0;
    int rc = roost_ledger_spent(c->ledger, &spent, NULL, NULL);
    if (rc != ROOST_OK)
        return rc;
    roost_ledger_budget b;
    roost_ledger_get_budget(c->ledger, &b);
    *eps_remaining = b.epsilon_max - spent;
    *delta = b.delta;
    return ROOST_OK;
}

/* ---------------------------------------------------------- channel */

static void
progress(roost_client *c, int event, int64_t round_id)
{
    if (c->cfg.progress == NULL)
        return;
    roost_client_progress p = {.event = event, .round_id = round_id};
    if (round_id == 0)
        p.round_id = roost_cproto_round_id(c->proto);
    double spent = 0, budget = 0;
    roost_client_epsilon(c, &spent, &budget);
    p.epsilon_spent = spent;
    p.epsilon_budget = budget;
    p.rounds = roost_cproto_rounds(c->proto);
    c->cfg.progress(c->cfg.progress_arg, &p);
}

static int
proto_send(void *arg, const Roost__V1__Envelope *m)
{
    roost_client *c = arg;
    if (c->session == 0)
        return ROOST_ECLOSED;
    size_t len = 0;
    int rc = roost_wire_encode_reuse(c->alloc, m, &c->buf, &c->buf_cap, &len);
    if (rc == ROOST_OK)
        rc = roost_channel_send(c->ch, c->session, c->buf, len);
    if (rc != ROOST_OK && c->send_failed == ROOST_OK)
        c->send_failed = rc;
    return rc;
}

static void end_task(roost_client *c);

/* Record a condition that ends the client and its explanation, which
 * roost_client_errmsg then gives (and not whatever an earlier, recovered
 * failure left there). The first one wins. */
static void
set_fatal(roost_client *c, int rc, const char *why)
{
    if (c->fatal != ROOST_OK)
        return;
    c->fatal = rc;
    roost_fail(&c->em, rc, "%s", why);
    /* A client that can go no further leaves the coordinator now, rather
     * than holding a session (and one of the coordinator's slots) open
     * until the idle timeout or until the app destroys it. What was sent
     * before is flushed first: the channel closes with close_notify. */
    if (c->session != 0)
        roost_channel_close(c->ch, c->session);
}

/*
 * End a session the client cannot go on with (the coordinator reported an
 * error, or sent something that is not a valid message) and connect again
 * later, as after a network loss. The channel remakes only sessions the
 * peer or the network ended, not one closed locally, so the client
 * schedules the reconnect itself, by the channel's rule
 * (roost_backoff_step) but on its own backoff: the channel resets its
 * backoff at every session opened, this one only once a message is
 * handled, so that a coordinator that keeps refusing is not hammered.
 */
static void
drop_session(roost_client *c, uint64_t session)
{
    roost_channel_close(c->ch, session);
    c->reconnect_at_ms =
        mono_ms() +
        roost_backoff_step(c->rng, &c->reconnect_ms, c->cfg.reconnect_max_ms);
}

/*
 * A check-in (on connecting, or when a come-back-later has passed) could
 * not be made. A budget that is spent or cannot be read ends the client
 * with its reason: it never assumes that nothing was spent, and it must
 * not stay connected without checking in while step returns ROOST_OK.
 * Anything else (a send that failed) is the connection's problem: drop it
 * and connect again.
 */
static void
check_in_failed(roost_client *c, int rc)
{
    if (rc == ROOST_EBUDGET) {
        set_fatal(c, rc, roost_cproto_errmsg(c->proto));
    } else if (rc == ROOST_ELEDGER || rc == ROOST_ESTORE) {
        roost_errmsg why;
        roost_fail(&why, rc, "privacy ledger: %s",
                   roost_ledger_errmsg(c->ledger));
        set_fatal(c, rc, why.text);
    } else {
        roost_log(&c->cfg.log, ROOST_LOG_WARN, "check-in failed: %s",
                  roost_cproto_errmsg(c->proto));
        if (c->session != 0)
            drop_session(c, c->session);
    }
}

static void
on_channel_event(void *arg, const roost_channel_event *ev)
{
    roost_client *c = arg;
    switch (ev->type) {
    case ROOST_CHANNEL_OPENED: {
        c->session = ev->session;
        c->server_not_after = INT64_MAX;
        c->server_subject[0] = '\0';
        if (ev->identity != NULL) {
            c->server_not_after = ev->identity->not_after;
            snprintf(c->server_subject, sizeof(c->server_subject), "%s",
                     ev->identity->subject);
        }
        int rc = roost_cproto_check_in(c->proto, mono_ms());
        if (rc != ROOST_OK) {
            check_in_failed(c, rc);
            return;
        }
        progress(c, ROOST_EVENT_CONNECTED, 0);
        return;
    }
    case ROOST_CHANNEL_FRAME: {
        Roost__V1__Envelope *m = NULL;
        roost_errmsg em;
        int rc = roost_wire_decode(c->alloc, ev->data, ev->len, NULL, &m, &em);
        if (rc != ROOST_OK) {
            roost_log(&c->cfg.log, ROOST_LOG_WARN,
                      "undecodable message from the coordinator: %s", em.text);
            drop_session(c, ev->session);
            return;
        }
        if (m->body_case == ROOST__V1__ENVELOPE__BODY_ERROR &&
            m->error->code == (uint32_t)ROOST_ENOTSUP) {
            /* The coordinator does not speak this client's protocol (or
             * version): no reconnect can change that, so the app is told,
             * with the coordinator's reason, instead of retrying for
             * ever. */
            roost_errmsg why;
            roost_fail(&why, ROOST_ENOTSUP,
                       "the coordinator refuses this client: %s",
                       m->error->message != NULL ? m->error->message : "");
            roost_wire_free(c->alloc, m);
            set_fatal(c, ROOST_ENOTSUP, why.text);
            roost_channel_close(c->ch, ev->session);
            return;
        }
        enum roost_cproto_state before = roost_cproto_state(c->proto);
        uint64_t rounds_before = roost_cproto_rounds(c->proto);
        rc = roost_cproto_on_message(c->proto, m, mono_ms());
        roost_wire_free(c->alloc, m);
        if (rc != ROOST_OK) {
            roost_log(&c->cfg.log, ROOST_LOG_WARN, "%s",
                      roost_cproto_errmsg(c->proto));
            if (rc == ROOST_ELEDGER || rc == ROOST_ESTORE) {
                set_fatal(c, rc, roost_cproto_errmsg(c->proto));
                roost_channel_close(c->ch, ev->session);
            } else {
                drop_session(c, ev->session);
            }
            return;
        }
        /* A message was handled: the coordinator speaks our protocol, so
         * a later refusal starts the backoff afresh. */
        c->reconnect_ms = c->cfg.reconnect_min_ms;
        enum roost_cproto_state after = roost_cproto_state(c->proto);
        if ((after == ROOST_CP_RECEIVING || after == ROOST_CP_READY) &&
            before == ROOST_CP_WAITING)
            progress(c, ROOST_EVENT_TASK, 0);
        if (roost_cproto_rounds(c->proto) > rounds_before)
            progress(c, ROOST_EVENT_ACCEPTED, 0);
        if (after == ROOST_CP_EXHAUSTED && before != after) {
            /* From WAITING a task was declined (for the budget, or for
             * another reason with nothing left to check in with); after
             * an Ack the round was accepted and spent the rest. */
            if (before == ROOST_CP_WAITING)
                progress(c, ROOST_EVENT_DECLINED, 0);
            set_fatal(c, ROOST_EBUDGET, roost_cproto_errmsg(c->proto));
        }
        return;
    }
    case ROOST_CHANNEL_CLOSED:
        c->session = 0;
        c->server_not_after = INT64_MAX;
        if (roost_cproto_state(c->proto) == ROOST_CP_TRAINING)
            end_task(c);
        roost_cproto_disconnected(c->proto);
        progress(c, ROOST_EVENT_DISCONNECTED, 0);
        return;
    default:
        return;
    }
}

/* ------------------------------------------------------------ tasks */

static void
end_task(roost_client *c)
{
    roost_local_trainer_destroy(c->trainer);
    c->trainer = NULL;
    roost_dataset_destroy(c->data);
    c->data = NULL;
    c->job = NULL;
}

/* Copy the provider's examples into a dataset for this task. */
static int
load_data(roost_client *c)
{
    const roost_data_provider *p = &c->cfg.data;
    size_t dim = (size_t)p->channels * p->height * p->width;
    size_t n = p->count;
    float *x = roost_alloc_calloc(c->alloc, n, dim * sizeof(float));
    uint8_t *y = roost_alloc_malloc(c->alloc, n);
    uint32_t *idx = roost_alloc_calloc(c->alloc, n, sizeof(uint32_t));
    int rc = ROOST_ENOMEM;
    if (x != NULL && y != NULL && idx != NULL) {
        for (size_t i = 0; i < n; i++)
            idx[i] = (uint32_t)i;
        rc = p->get(p->arg, idx, n, x, y);
        if (rc != ROOST_OK)
            roost_fail(&c->em, rc, "data provider failed: %s",
                       roost_strerror(rc));
        else
            rc = roost_dataset_create_from_arrays(
                &c->data, c->alloc, n, p->channels, p->height, p->width, x, y,
                p->num_classes, &c->em);
    }
    roost_alloc_free(c->alloc, x);
    roost_alloc_free(c->alloc, y);
    roost_alloc_free(c->alloc, idx);
    return rc;
}

/* Build (or reuse) the built-in model for the job's spec. */
static int
job_model(roost_client *c, const roost_cproto_job *j)
{
    if (c->model == NULL ||
        strcmp(roost_model_spec(c->model), j->model_spec) != 0) {
        roost_model_destroy(c->model);
        c->model = NULL;
        int rc = roost_model_create(&c->model, c->alloc, j->model_spec,
                                    j->channels, j->height, j->width, &c->em);
        if (rc != ROOST_OK)
            return rc;
    }
    if (roost_model_param_count(c->model) != j->n_params)
        return roost_fail(
            &c->em, ROOST_ESHAPE, "model '%s' has %zu parameters, the task %zu",
            j->model_spec, roost_model_param_count(c->model), j->n_params);
    return ROOST_OK;
}

/* A federated evaluation task, run to completion in this step: one forward
 * pass over the local data (cproto only hands these out when the embedder
 * allowed evaluation). */
static int
evaluate_task(roost_client *c)
{
    const roost_cproto_job *j = c->job;
    double loss = (double)NAN, acc = (double)NAN;
    roost_errmsg em;
    roost_errmsg_clear(&em);
    int rc = job_model(c, j);
    if (rc == ROOST_OK)
        rc = roost_local_evaluate(c->model, c->alloc, c->data, NULL,
                                  roost_dataset_count(c->data), j->global,
                                  &loss, &acc, &em);
    if (rc != ROOST_OK)
        roost_log(&c->cfg.log, ROOST_LOG_WARN, "evaluation failed: %s",
                  em.text[0] ? em.text : c->em.text);
    uint64_t n = roost_dataset_count(c->data);
    end_task(c);
    int frc = roost_cproto_finish_eval(c->proto, rc, n, loss, acc, mono_ms());
    if (frc != ROOST_OK)
        roost_fail(&c->em, frc, "%s", roost_cproto_errmsg(c->proto));
    return ROOST_OK;
}

static int
start_task(roost_client *c)
{
    roost_cproto_job *j = NULL;
    int rc = roost_cproto_take_job(c->proto, &j);
    if (rc != ROOST_OK)
        return rc;
    c->job = j;
    const roost_data_provider *p = &c->cfg.data;
    if (j->channels != p->channels || j->height != p->height ||
        j->width != p->width) {
        rc = roost_fail(&c->em, ROOST_ESHAPE,
                        "task model takes %ux%ux%u inputs, the local data is "
                        "%ux%ux%u",
                        j->channels, j->height, j->width, p->channels,
                        p->height, p->width);
        goto fail;
    }
    rc = load_data(c);
    if (rc != ROOST_OK)
        goto fail;
    if (j->evaluate)
        return evaluate_task(c);
    roost_local_source src = {0};
    if (c->cfg.has_trainer) {
        if (c->cfg.trainer.prepare != NULL) {
            rc = c->cfg.trainer.prepare(c->cfg.trainer.arg, j->model_spec,
                                        j->channels, j->height, j->width,
                                        j->n_params);
            if (rc != ROOST_OK) {
                roost_fail(&c->em, rc, "trainer refused model '%s'",
                           j->model_spec);
                goto fail;
            }
        }
        c->ops.example_norms = c->cfg.trainer.example_norms;
        c->ops.weighted_grad = c->cfg.trainer.weighted_grad;
        c->ops.arg = c->cfg.trainer.arg;
        c->ops.max_batch = c->cfg.trainer.max_batch;
        src.ops = &c->ops;
        src.n_params = j->n_params;
        src.input_dim = (size_t)j->channels * j->height * j->width;
    } else {
        rc = job_model(c, j);
        if (rc != ROOST_OK)
            goto fail;
        src.model = c->model;
    }
    rc = roost_local_trainer_create(&c->trainer, c->alloc, &src, c->data, NULL,
                                    roost_dataset_count(c->data), j->global,
                                    j->params, &j->task, c->rng, &c->em);
    if (rc != ROOST_OK)
        goto fail;
    return ROOST_OK;
fail:
    /* The task cannot be trained: decline it (nothing was charged). */
    end_task(c);
    roost_local_result none;
    memset(&none, 0, sizeof(none));
    roost_cproto_finish(c->proto, rc, &none, mono_ms());
    progress(c, ROOST_EVENT_DECLINED, 0);
    return ROOST_OK;
}

/* One training step; at the end, charge and upload. */
static int
train_step(roost_client *c)
{
    bool done = false;
    roost_errmsg em;
    roost_errmsg_clear(&em);
    int rc = roost_local_trainer_step(c->trainer, &done, &em);
    if (rc == ROOST_OK && !done)
        return ROOST_OK;
    roost_local_result res;
    roost_local_trainer_result(c->trainer, &res);
    int64_t round_id = c->job->round_id;
    if (rc != ROOST_OK)
        roost_log(&c->cfg.log, ROOST_LOG_WARN, "training failed: %s", em.text);
    if (res.excluded > 0)
        roost_log(&c->cfg.log, ROOST_LOG_WARN,
                  "round %" PRId64 ": %" PRIu64 " sampled examples had a "
                  "non-finite gradient and were left out (check the data)",
                  round_id, res.excluded);
    int frc = roost_cproto_finish(c->proto, rc, &res, mono_ms());
    end_task(c);
    if (frc == ROOST_EBUDGET || frc == ROOST_ELEDGER || frc == ROOST_ESTORE) {
        set_fatal(c, frc, roost_cproto_errmsg(c->proto));
        return frc;
    }
    if (rc == ROOST_OK && frc == ROOST_OK)
        progress(c, ROOST_EVENT_UPLOADED, round_id);
    return ROOST_OK;
}

/* ----------------------------------------------------------- client */

static void
copy_config(roost_client *c, const roost_config *cfg, int *rc)
{
    c->cfg = *cfg;
    c->cfg.alloc = c->alloc;
    char **dst[] = {&c->cfg.endpoint, &c->cfg.server_name, &c->cfg.ca,
                    &c->cfg.cert,     &c->cfg.key,         &c->cfg.ledger_path,
                    &c->cfg.label};
    const char *src[] = {cfg->endpoint, cfg->server_name, cfg->ca,   cfg->cert,
                         cfg->key,      cfg->ledger_path, cfg->label};
    for (size_t i = 0; i < sizeof(dst) / sizeof(dst[0]); i++) {
        *dst[i] = NULL;
        if (src[i] != NULL && *rc == ROOST_OK) {
            *dst[i] = dup_str(c->alloc, src[i]);
            if (*dst[i] == NULL)
                *rc = ROOST_ENOMEM;
        }
    }
}

/* The host part of "tcp://HOST:PORT", as the default server name. */
static void
default_server_name(const char *endpoint, char *out, size_t cap)
{
    const char *h = endpoint + 6;
    const char *colon = strrchr(h, ':');
    size_t n = colon != NULL ? (size_t)(colon - h) : strlen(h);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++; /* an IPv6 literal: the certificate carries it unbracketed */
        n -= 2;
    }
    if (n >= cap)
        n = cap - 1;
    memcpy(out, h, n);
    out[n] = '\0';
}

int
roost_client_create(roost_client **out, const roost_config *cfg, char *errmsg,
                    size_t errmsg_cap)
{
    roost_errmsg em;
    roost_errmsg_clear(&em);
    int rc = ROOST_OK;
    if (out != NULL)
        *out = NULL;
    if (out == NULL || cfg == NULL) {
        if (errmsg != NULL && errmsg_cap > 0)
            snprintf(errmsg, errmsg_cap, "%s",
                     out == NULL ? "out is NULL" : "cfg is NULL");
        return ROOST_EINVAL;
    }
    if (cfg->endpoint == NULL)
        rc = roost_fail(&em, ROOST_ECONFIG,
                        "no coordinator (roost_config_set_server)");
    else if (cfg->ca == NULL || cfg->cert == NULL || cfg->key == NULL)
        rc = roost_fail(&em, ROOST_ECONFIG,
                        "no TLS files (roost_config_set_tls)");
    else if (cfg->ledger_path == NULL)
        rc = roost_fail(&em, ROOST_ECONFIG,
                        "no privacy ledger (roost_config_set_ledger)");
    else if (!cfg->has_data)
        rc = roost_fail(&em, ROOST_ECONFIG,
                        "no local data (roost_config_set_data)");
    roost_client *c = NULL;
    if (rc == ROOST_OK) {
        c = roost_alloc_calloc(cfg->alloc, 1, sizeof(*c));
        if (c == NULL)
            rc = roost_fail(&em, ROOST_ENOMEM, "out of memory");
        else
            atomic_init(&c->canceled, 0);
    }
    if (rc == ROOST_OK) {
        c->alloc = cfg->alloc;
        copy_config(c, cfg, &rc);
        if (rc != ROOST_OK)
            roost_fail(&em, rc, "out of memory");
    }
    if (rc == ROOST_OK) {
        roost_ledger_budget budget = {cfg->epsilon, cfg->delta};
        rc = roost_ledger_open(&c->ledger, c->alloc, cfg->ledger_path,
                               cfg->ledger_create ? ROOST_LEDGER_CREATE : 0,
                               &budget, &em);
    }
    if (rc == ROOST_OK) {
        rc = cfg->seeded ? roost_rng_create_insecure_deterministic(
                               &c->rng, c->alloc, cfg->seed, 0)
                         : roost_rng_create(&c->rng, c->alloc);
        if (rc != ROOST_OK)
            roost_fail(&em, rc, "random source unavailable");
        else if (cfg->seeded)
            roost_log(&c->cfg.log, ROOST_LOG_WARN,
                      "INSECURE: a fixed seed makes this client's DP noise "
                      "predictable; its privacy guarantee does not hold");
        if (rc == ROOST_OK && cfg->allow_no_dp)
            roost_log(&c->cfg.log, ROOST_LOG_WARN,
                      "INSECURE: this client also trains for tasks without "
                      "differential privacy; those updates are sent "
                      "unclipped, unnoised and uncharged");
    }
    if (rc == ROOST_OK) {
        roost_tls_files files = {cfg->ca, cfg->cert, cfg->key, NULL};
        rc = roost_tls_ctx_create_client(&c->tls, &files, &em);
    }
    if (rc == ROOST_OK) {
        roost_channel_config chc;
        roost_channel_config_init(&chc);
        chc.on_event = on_channel_event;
        chc.event_arg = c;
        chc.logger = c->cfg.log;
        chc.alloc = c->alloc;
        chc.reconnect_min_ms = cfg->reconnect_min_ms;
        chc.reconnect_max_ms = cfg->reconnect_max_ms;
        rc = roost_channel_create(&c->ch, &chc, c->tls, &em);
    }
    if (rc == ROOST_OK) {
        roost_cproto_config pc = {
            .label = c->cfg.label,
            .n_local = cfg->data.count,
            .budget = {ledger_plan, ledger_charge, ledger_remaining, c},
            .keep_model = true,
            .allow_evaluation = cfg->allow_evaluation && !cfg->has_trainer,
            .allow_no_dp = cfg->allow_no_dp,
            .log = c->cfg.log,
        };
        rc = roost_cproto_create(&c->proto, c->alloc, &pc, proto_send, c, &em);
    }
    if (rc == ROOST_OK) {
        char *name = c->server_name;
        if (cfg->server_name != NULL)
            snprintf(name, sizeof(c->server_name), "%s", cfg->server_name);
        else
            default_server_name(cfg->endpoint, name, sizeof(c->server_name));
        c->reconnect_ms = cfg->reconnect_min_ms;
        c->server_not_after = INT64_MAX;
        rc = roost_channel_connect(c->ch, cfg->endpoint, name);
        if (rc != ROOST_OK)
            roost_fail(&em, rc, "cannot connect to %s: %s", cfg->endpoint,
                       roost_channel_errmsg(c->ch));
    }
    if (rc != ROOST_OK) {
        /* Every argument of this call was checked above, so an EINVAL
         * from a layer below means a bad setting in the config (e.g. a
         * device key that does not match its certificate): the header
         * promises ROOST_EINVAL only for NULL out or cfg. */
        if (rc == ROOST_EINVAL)
            rc = ROOST_ECONFIG;
        if (errmsg != NULL && errmsg_cap > 0)
            snprintf(errmsg, errmsg_cap, "%s", em.text);
        roost_client_destroy(c);
        return rc;
    }
    *out = c;
    return ROOST_OK;
}

void
roost_client_destroy(roost_client *c)
{
    if (c == NULL)
        return;
    end_task(c);
    roost_cproto_destroy(c->proto);
    roost_channel_destroy(c->ch);
    roost_tls_ctx_destroy(c->tls);
    roost_model_destroy(c->model);
    roost_ledger_close(c->ledger);
    roost_rng_destroy(c->rng);
    roost_alloc_free(c->alloc, c->buf);
    config_free_strings(&c->cfg);
    roost_alloc_free(c->alloc, c);
}

/*
 * After a failed send (out of memory encoding it, the session's output
 * full), the coordinator may be waiting for a message that will never
 * come -- the rest of an update, a decline, a check-in -- while this
 * client waits for its answer: both would sit until the round's deadline.
 * End the session instead, so the coordinator gives the slot to another
 * client at once and this one checks in afresh. Deferred to here (not
 * done inside proto_send) because the protocol is mid-call when a send
 * fails. An update charged but not delivered stays charged.
 */
static void
drop_after_failed_send(roost_client *c)
{
    int rc = c->send_failed;
    if (rc == ROOST_OK)
        return;
    c->send_failed = ROOST_OK;
    if (c->session == 0)
        return; /* the session ended already; the channel reconnects */
    roost_log(&c->cfg.log, ROOST_LOG_WARN,
              "sending to the coordinator failed (%s): reconnecting",
              roost_strerror(rc));
    drop_session(c, c->session);
}

/* "YYYY-MM-DD HH:MM:SSZ" for Unix seconds t. */
static void
format_utc(int64_t t, char *out, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL ||
        strftime(out, cap, "%Y-%m-%d %H:%M:%SZ", &tm) == 0)
        snprintf(out, cap, "%" PRId64, t);
}

/*
 * Close the session once the coordinator's certificate has expired. The
 * handshake checked its validity once, but a session stays open across
 * rounds for as long as both ends like: without this, the device would go
 * on sending updates to a coordinator whose certificate no new handshake
 * accepts (roost serve closes sessions of expired client certificates for
 * the same reason). The session is remade after the usual backoff, and
 * that handshake verifies the certificate afresh: it fails, and the
 * channel retries with backoff, until the coordinator presents a valid
 * one. Expiry is at notAfter, read from the clock OpenSSL checks it
 * with (time(), which may trail CLOCK_REALTIME by a few milliseconds), so
 * that the handshake that follows agrees that it has expired.
 */
static void
close_if_server_expired(roost_client *c)
{
    if (c->session == 0 || c->server_not_after == INT64_MAX ||
        (int64_t)time(NULL) < c->server_not_after)
        return;
    char when[64];
    format_utc(c->server_not_after, when, sizeof(when));
    roost_log(&c->cfg.log, ROOST_LOG_WARN,
              "closing the session with %s: the coordinator's certificate "
              "(%s) expired at %s; reconnecting",
              c->cfg.endpoint, c->server_subject, when);
    drop_session(c, c->session);
}

/* When (monotonic ms, from now_mono) to look at the open session's
 * certificate again: just after it expires, with a margin for time()
 * trailing the precise clock, so that the step that wakes then finds it
 * expired instead of being asked to come back at once until time()
 * catches up. INT64_MAX when there is no session to watch. */
static int64_t
server_expiry_mono_ms(const roost_client *c, int64_t now_mono)
{
    if (c->session == 0 || c->server_not_after == INT64_MAX ||
        c->server_not_after > INT64_MAX / 1000 - 1)
        return INT64_MAX;
    int64_t left = c->server_not_after * 1000 - wall_ms();
    return now_mono + (left > 0 ? left : 0) + 10;
}

/* The protocol found the budget spent (planning a task, or checking in
 * after one ended): the client takes no further part, and step says so
 * with ROOST_EBUDGET from now on. */
static void
check_exhausted(roost_client *c)
{
    if (roost_cproto_state(c->proto) == ROOST_CP_EXHAUSTED)
        set_fatal(c, ROOST_EBUDGET, roost_cproto_errmsg(c->proto));
}

/* Connect again after drop_session, once its backoff has passed. */
static void
reconnect_if_due(roost_client *c, int64_t now)
{
    if (c->reconnect_at_ms == 0 || c->session != 0 || now < c->reconnect_at_ms)
        return;
    int rc = roost_channel_connect(c->ch, c->cfg.endpoint, c->server_name);
    if (rc == ROOST_OK || rc == ROOST_ESTATE) {
        /* ESTATE: the channel is already connecting by itself. */
        c->reconnect_at_ms = 0;
        return;
    }
    roost_log(&c->cfg.log, ROOST_LOG_WARN, "cannot reconnect: %s",
              roost_channel_errmsg(c->ch));
    /* Back off further, as after any failed attempt, rather than retrying
     * a failure that persists (no memory, no sockets) at a fixed pace. */
    c->reconnect_at_ms = now + roost_backoff_step(c->rng, &c->reconnect_ms,
                                                  c->cfg.reconnect_max_ms);
}

int
roost_client_step(roost_client *c, int *timeout_ms)
{
    int wait = 0;
    if (timeout_ms != NULL)
        *timeout_ms = 0;
    if (c == NULL)
        return ROOST_EINVAL;
    if (atomic_load_explicit(&c->canceled, memory_order_relaxed))
        return roost_fail(&c->em, ROOST_ECANCELED, "canceled");
    if (c->fatal != ROOST_OK)
        return c->fatal;
    if (c->cfg.max_rounds != 0 &&
        roost_cproto_rounds(c->proto) >= c->cfg.max_rounds)
        return roost_fail(&c->em, ROOST_ECLOSED,
                          "contributed %" PRIu64 " rounds; done",
                          c->cfg.max_rounds);
    int rc = roost_channel_poll(c->ch, 0);
    if (rc != ROOST_OK)
        return roost_fail(&c->em, rc, "network: %s",
                          roost_channel_errmsg(c->ch));
    check_exhausted(c);
    if (c->fatal != ROOST_OK)
        return c->fatal;
    drop_after_failed_send(c);
    close_if_server_expired(c);
    reconnect_if_due(c, mono_ms());
    if (c->trainer != NULL &&
        roost_cproto_state(c->proto) != ROOST_CP_TRAINING) {
        /* The round closed (come back later) or the connection dropped
         * while this client trained: the task is void. Nothing was
         * charged, nothing is sent; free the task's buffers. */
        roost_local_result none;
        memset(&none, 0, sizeof(none));
        roost_cproto_finish(c->proto, ROOST_ECANCELED, &none, mono_ms());
        end_task(c);
    }
    enum roost_cproto_state st = roost_cproto_state(c->proto);
    if (st == ROOST_CP_READY && c->session != 0) {
        rc = start_task(c);
        if (rc != ROOST_OK)
            return rc;
        check_exhausted(c); /* nothing left to check in with after it */
        if (c->fatal != ROOST_OK)
            return c->fatal;
        drop_after_failed_send(c); /* a decline or evaluation result */
    } else if (st == ROOST_CP_TRAINING && c->trainer != NULL) {
        rc = train_step(c);
        if (rc != ROOST_OK)
            return rc; /* train_step recorded it with set_fatal */
        check_exhausted(c);
        if (c->fatal != ROOST_OK)
            return c->fatal;
        drop_after_failed_send(c);
    } else {
        int64_t now = mono_ms(), next = INT64_MAX;
        if (c->session != 0) {
            rc = roost_cproto_tick(c->proto, now, &next);
            if (rc != ROOST_OK) {
                check_in_failed(c, rc);
                if (c->fatal != ROOST_OK)
                    return c->fatal;
                /* The session was dropped; look again at once. */
                next = now;
            }
        }
        int timer = roost_channel_next_timer_ms(c->ch);
        wait = timer < 0 ? 1000 : timer;
        if (c->reconnect_at_ms != 0 && next > c->reconnect_at_ms)
            next = c->reconnect_at_ms;
        int64_t expiry = server_expiry_mono_ms(c, now);
        if (next > expiry)
            next = expiry;
        if (next != INT64_MAX && next - now < wait)
            wait = next - now < 0 ? 0 : (int)(next - now);
        if (wait > 1000)
            wait = 1000;
    }
    if (timeout_ms != NULL)
        *timeout_ms = wait;
    return ROOST_OK;
}

int
roost_client_run(roost_client *c)
{
    if (c == NULL)
        return ROOST_EINVAL;
    int fd = -1;
    roost_channel_fd(c->ch, &fd);
    for (;;) {
        int timeout = 0;
        int rc = roost_client_step(c, &timeout);
        if (rc != ROOST_OK)
            return rc;
        if (timeout > 0) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            poll(&pfd, fd >= 0 ? 1 : 0, timeout);
        }
    }
}

int
roost_client_fd(roost_client *c, int *fd)
{
    if (c == NULL || fd == NULL)
        return ROOST_EINVAL;
    return roost_channel_fd(c->ch, fd);
}

void
roost_client_cancel(roost_client *c)
{
    if (c != NULL)
        atomic_store_explicit(&c->canceled, 1, memory_order_relaxed);
}

const char *
roost_client_errmsg(const roost_client *c)
{
    return c != NULL ? c->em.text : "";
}

int
roost_client_epsilon(roost_client *c, double *spent, double *budget)
{
    if (c == NULL || spent == NULL || budget == NULL)
        return ROOST_EINVAL;
    roost_ledger_budget b;
    roost_ledger_get_budget(c->ledger, &b);
    *budget = b.epsilon_max;
    return roost_ledger_spent(c->ledger, spent, NULL, NULL);
}
