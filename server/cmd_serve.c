/*
 * cmd_serve.c - `roost serve`: the coordinator daemon.
 *
 *   roost serve --config FILE [flags]      run
 *   roost serve --check-config FILE        validate, print the effective
 *                                          configuration, exit
 *   roost serve --print-default-config     the commented sample
 *
 * The daemon is one thread and one poll(2) loop over three sources: the
 * TLS channel's ZeroMQ descriptor, a signalfd for SIGTERM/SIGINT/SIGHUP,
 * and a timeout that is the earliest of the channel's timers and the
 * coordinator's next deadline. Channel events go to the coordinator
 * (coord.h): session opened -> roost_coord_session_opened; frame ->
 * roost_wire_decode -> roost_coord_session_message (a frame that does not
 * decode closes that session); closed -> roost_coord_session_closed.
 *
 * Reentrancy: roost_channel_close fires the CLOSED event synchronously,
 * and the coordinator calls close (through io.close, or after a failed
 * send) while it is in the middle of handling something. Those CLOSED
 * events are therefore queued while a coordinator call is on the stack and
 * delivered after it returns, so the coordinator is never re-entered.
 *
 * Signals: SIGTERM and SIGINT abandon the open round (nothing of it is
 * committed; it runs again, under the same number, at the next start) and
 * exit 0. SIGHUP reopens the log file (for logrotate) and reloads the TLS
 * files (see "TLS reload" below). The handlers only
 * write the signal number to a self-pipe that the loop polls; all the work
 * happens on the loop's thread. (A signalfd would need the signals blocked
 * in every thread, and OpenBLAS starts its threads before main runs.) The
 * pipe's descriptors are the file's only mutable globals: a signal handler
 * has no other way to reach the loop.
 *
 * Exit status: 0 on a clean stop (signal, or max_rounds reached); 1 when
 * something failed at run time (store, TLS files, socket); 2 for a bad
 * command line or configuration, including settings the coordinator finds
 * unusable when it starts (roost_coord_create's ROOST_ECONFIG).
 */
#include "server/cli.h"
#include "server/config.h"
#include "server/coord.h"

#include "common/channel.h"
#include "common/clock.h"
#include "common/dataset.h"
#include "common/rng.h"
#include "common/tls.h"
#include "common/wire.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

static const char serve_usage[] =
    "usage: roost serve --config FILE [flags]\n"
    "       roost serve --check-config FILE [--set SECTION.KEY=VALUE ...]\n"
    "       roost serve --print-default-config\n"
    "       roost serve --config FILE --accept-older-crl\n"
    "\n"
    "Run the coordinator: accept clients over TLS, run rounds, record every\n"
    "round in SQLite. It resumes from the last committed round. SIGTERM or\n"
    "SIGINT abandons the open round (it runs again at the next start) and\n"
    "exits 0. SIGHUP reopens the log file and reloads the CA, certificate,\n"
    "key and CRL files: new handshakes use them, open sessions of a\n"
    "certificate the new CRL revokes are closed, and if a file is bad the\n"
    "previous ones stay in force (the log says why). A CRL older than the\n"
    "one in force for its CA (a lower cRLNumber, or another CRL under the\n"
    "same number) is bad too, at a reload and at start: the database\n"
    "remembers the number in force.\n"
    "\n"
    "  --config FILE            the INI configuration (deploy/roost.conf)\n"
    "  --check-config FILE      check FILE, print the effective configuration\n"
    "                           and exit 0, or print FILE:LINE: reason and\n"
    "                           exit 2\n"
    "  --print-default-config   print every key with its default and help\n"
    "  --accept-older-crl       with --config: record the cRLNumbers of\n"
    "                           crl_file in the database as the ones in\n"
    "                           force, even if lower than recorded (to go\n"
    "                           back to an older CRL on purpose), and exit;\n"
    "                           then start or reload the daemon\n"
    "  --set SECTION.KEY=VALUE  override one key (repeatable)\n"
    "  --listen ENDPOINT        = --set server.listen=ENDPOINT\n"
    "  --db FILE                = --set server.database=FILE\n"
    "  --state-dir DIR          = --set server.state_dir=DIR\n"
    "  --log FILE               = --set server.log_file=FILE\n"
    "  --log-level LEVEL        = --set server.log_level=LEVEL\n"
    "  --max-rounds N           = --set round.max_rounds=N\n";

/* Shorthand flags and the key each one sets. */
static const struct {
    const char *flag, *key;
} shorthands[] = {
    {"--listen", "server.listen"},       {"--db", "server.database"},
    {"--state-dir", "server.state_dir"}, {"--log", "server.log_file"},
    {"--log-level", "server.log_level"}, {"--max-rounds", "round.max_rounds"},
};

/* ---------------------------------------------------------------------
 * Signals through a self-pipe.
 * ------------------------------------------------------------------- */
static int signal_pipe[2] = {-1, -1};

static void
on_signal(int signo)
{
    int saved = errno;
    unsigned char b = (unsigned char)signo;
    /* Non-blocking: if the pipe is full, a signal is pending anyway. */
    ssize_t n = write(signal_pipe[1], &b, 1);
    (void)n;
    errno = saved;
}

static const int handled_signals[] = {SIGTERM, SIGINT, SIGHUP};
#define N_HANDLED (sizeof(handled_signals) / sizeof(handled_signals[0]))

/* Install the handlers; old receives the previous actions. */
static int
signals_install(struct sigaction old[N_HANDLED])
{
    if (pipe(signal_pipe) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(signal_pipe[i], F_GETFL);
        if (fl < 0 || fcntl(signal_pipe[i], F_SETFL, fl | O_NONBLOCK) < 0 ||
            fcntl(signal_pipe[i], F_SETFD, FD_CLOEXEC) < 0)
            return -1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < N_HANDLED; i++)
        if (sigaction(handled_signals[i], &sa, &old[i]) != 0)
            return -1;
    return 0;
}

static void
signals_restore(const struct sigaction old[N_HANDLED])
{
    for (size_t i = 0; i < N_HANDLED; i++)
        sigaction(handled_signals[i], &old[i], NULL);
    for (int i = 0; i < 2; i++)
        if (signal_pipe[i] >= 0) {
            close(signal_pipe[i]);
            signal_pipe[i] = -1;
        }
}

/* ---------------------------------------------------------------------
 * Logging: stderr, or a file reopened on SIGHUP.
 * ------------------------------------------------------------------- */
struct serve_log {
    FILE *file; /* NULL: stderr */
    const char *path;
};

static void
serve_log_fn(void *arg, int level, const char *message)
{
    struct serve_log *lg = arg;
    if (lg->file == NULL) {
        roost_cli_log_stderr(NULL, level, message);
        return;
    }
    char stamp[32];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (gmtime_r(&ts.tv_sec, &tm) != NULL)
        strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
    else
        snprintf(stamp, sizeof(stamp), "-");
    fprintf(lg->file, "%s %s: %s\n", stamp, roost_log_level_name(level),
            message);
}

static int
serve_log_open(struct serve_log *lg)
{
    FILE *f = fopen(lg->path, "a");
    if (f == NULL)
        return -1;
    setvbuf(f, NULL, _IOLBF, 0);
    if (lg->file != NULL)
        fclose(lg->file);
    lg->file = f;
    return 0;
}

/* ---------------------------------------------------------------------
 * The daemon's state, shared by the event handlers.
 * ------------------------------------------------------------------- */
struct serve {
    roost_serve_config *cfg;
    roost_logger log;
    roost_channel *ch;
    roost_tls_ctx *tls; /* the context new handshakes use (owned) */
    roost_store *store; /* the coordinator's database (crl_guard) */
    roost_coord *coord;
    roost_wire_limits limits;
    uint8_t *buf; /* reusable encode buffer */
    size_t buf_cap;
    /* CLOSED events that arrived while a coordinator call was running. */
    bool in_coord;
    uint64_t *closed;
    size_t n_closed, closed_cap;
    int fatal; /* ROOST_OK, or the coordinator's fatal error */
    /* Identities of the sessions whose handshake completed and which have
     * not closed: what a TLS reload checks against the new CRL. Unordered;
     * a close swaps the last entry into the freed slot. */
    struct open_peer {
        uint64_t session;
        roost_tls_identity id;
    } * peers;
    size_t n_peers, peers_cap;
    int64_t crl_check_ms; /* next daily check of the CRL's nextUpdate
                             (mono_ms) */
    /* The earliest notAfter (wall_ms) among open sessions' certificates,
     * or later: when close_expired must run next. INT64_MAX: none. */
    int64_t expiry_ms;
};

/* The daemon's two clocks (coord.h, roost_coord_time). Intervals -- a
 * round's deadline, the poll timeout, the daily CRL check -- are measured
 * on mono_ms, which no NTP correction or `date -s` steps. It reads
 * CLOCK_BOOTTIME rather than CLOCK_MONOTONIC because the clients live on
 * other machines: time goes on for them while this host is suspended (a
 * paused VM, a laptop), and a round's deadline is the date they were
 * told, so it passes during a suspension too. Dates -- the record, the
 * deadline a task names, certificate and CRL times -- are on wall_ms. */
static int64_t
mono_ms(void)
{
#ifdef CLOCK_BOOTTIME
    /* A kernel without it fails every call alike: one clock throughout. */
    int64_t t = roost_clock_ms(CLOCK_BOOTTIME);
    if (t != INT64_MIN)
        return t;
#endif
    return roost_clock_ms(CLOCK_MONOTONIC);
}

static int64_t
wall_ms(void)
{
    return roost_clock_ms(CLOCK_REALTIME);
}

static roost_coord_time
coord_now(void)
{
    roost_coord_time t = {.mono_ms = mono_ms(), .wall_ms = wall_ms()};
    return t;
}

static void
note_fatal(struct serve *sv, int rc)
{
    if (rc != ROOST_OK && sv->fatal == ROOST_OK) {
        sv->fatal = rc;
        roost_log(&sv->log, ROOST_LOG_ERROR, "coordinator failed: %s (%s)",
                  roost_coord_errmsg(sv->coord), roost_strerror(rc));
    }
}

/* Deliver the CLOSED events held back while the coordinator was busy.
 * Delivering one may make the coordinator close another session (whose
 * CLOSED is then queued behind it), so the loop re-reads the count. */
static void
drain_closed(struct serve *sv)
{
    bool was = sv->in_coord;
    sv->in_coord = true;
    for (size_t i = 0; i < sv->n_closed; i++)
        roost_coord_session_closed(sv->coord, sv->closed[i], coord_now());
    sv->n_closed = 0;
    sv->in_coord = was;
}

static void
hold_closed(struct serve *sv, uint64_t session)
{
    if (sv->n_closed == sv->closed_cap) {
        size_t cap = sv->closed_cap ? 2 * sv->closed_cap : 64;
        uint64_t *p = realloc(sv->closed, cap * sizeof(*p));
        if (p == NULL) {
            /* The daemon may abort on OOM (STYLE.md); losing a CLOSED
             * would leave a ghost session in the round. */
            fprintf(stderr, "roost serve: out of memory\n");
            abort();
        }
        sv->closed = p;
        sv->closed_cap = cap;
    }
    sv->closed[sv->n_closed++] = session;
}

static void
peer_add(struct serve *sv, uint64_t session, const roost_tls_identity *id)
{
    if (sv->n_peers == sv->peers_cap) {
        size_t cap = sv->peers_cap ? 2 * sv->peers_cap : 64;
        struct open_peer *p = realloc(sv->peers, cap * sizeof(*p));
        if (p == NULL) {
            /* The daemon may abort on OOM (STYLE.md); an untracked peer
             * would escape a later revocation. */
            fprintf(stderr, "roost serve: out of memory\n");
            abort();
        }
        sv->peers = p;
        sv->peers_cap = cap;
    }
    sv->peers[sv->n_peers].session = session;
    sv->peers[sv->n_peers].id = *id;
    sv->n_peers++;
    if (id->not_after < sv->expiry_ms / 1000)
        sv->expiry_ms = id->not_after * 1000;
}

/* Linear: a close costs O(open sessions) compares, negligible next to the
 * TLS teardown around it even at tens of thousands of sessions. */
static void
peer_remove(struct serve *sv, uint64_t session)
{
    for (size_t i = 0; i < sv->n_peers; i++)
        if (sv->peers[i].session == session) {
            sv->peers[i] = sv->peers[--sv->n_peers];
            return;
        }
}

/* The coordinator's send: encode into the reusable buffer, one frame. */
static int
io_send(void *arg, uint64_t session, const Roost__V1__Envelope *msg)
{
    struct serve *sv = arg;
    size_t len = 0;
    int rc = roost_wire_encode_reuse(NULL, msg, &sv->buf, &sv->buf_cap, &len);
    if (rc == ROOST_OK)
        rc = roost_channel_send(sv->ch, session, sv->buf, len);
    if (rc != ROOST_OK) {
        roost_log(&sv->log, ROOST_LOG_WARN,
                  "session %" PRIu64 ": cannot send %s: %s; closing it",
                  session, roost_wire_body_name(msg), roost_strerror(rc));
        /* The coordinator now considers the session closed: make the
         * channel agree. */
        roost_channel_close(sv->ch, session);
    }
    return rc;
}

static void
io_close(void *arg, uint64_t session, const char *reason)
{
    struct serve *sv = arg;
    roost_log(&sv->log, ROOST_LOG_INFO, "session %" PRIu64 ": closing: %s",
              session, reason ? reason : "protocol violation");
    roost_channel_close(sv->ch, session);
}

/* Why a session whose certificate was checked against older TLS files
 * must close now, by roost_tls_ctx_recheck's verdict (NULL: it stays). One
 * text for the reload's sweep of open sessions and for sessions whose
 * handshake spanned a reload, so both close the same sessions, fail
 * closed, and say why. */
static const char *
recheck_reason(roost_tls_recheck verdict)
{
    switch (verdict) {
    case ROOST_TLS_VALID:
        return NULL;
    case ROOST_TLS_UNTRUSTED:
        return "its CA is not in the reloaded CA file";
    case ROOST_TLS_REVOKED:
        return "certificate revoked by the reloaded CRL";
    case ROOST_TLS_NO_CRL:
        return "the reloaded CRL file holds no CRL of its CA (new "
               "handshakes of its CA fail the same way)";
    case ROOST_TLS_UNCHECKED:
        break;
    }
    return "its certificate's serial number cannot be checked against the "
           "reloaded CRL; it must reconnect";
}

static void
on_event(void *arg, const roost_channel_event *ev)
{
    struct serve *sv = arg;
    if (ev->type == ROOST_CHANNEL_CLOSED) {
        peer_remove(sv, ev->session);
        hold_closed(sv, ev->session);
        if (!sv->in_coord)
            drain_closed(sv);
        return;
    }
    if (sv->fatal != ROOST_OK)
        return;
    sv->in_coord = true;
    if (ev->type == ROOST_CHANNEL_OPENED) {
        /* A session keeps the TLS context it was created with, so a
         * handshake that began before a reload was checked against the
         * previous files; the reload's sweep of open sessions ran before
         * it opened. Ask the files in force now (see "TLS reload"). */
        const char *why =
            recheck_reason(roost_tls_ctx_recheck(sv->tls, ev->identity));
        if (why != NULL) {
            roost_log(&sv->log, ROOST_LOG_WARN,
                      "session %" PRIu64 " (%s): closing: %s (its handshake "
                      "began before the reload)",
                      ev->session, ev->identity->subject, why);
            roost_channel_close(sv->ch, ev->session);
            sv->in_coord = false;
            drain_closed(sv);
            return;
        }
        peer_add(sv, ev->session, ev->identity);
        int rc = roost_coord_session_opened(sv->coord, ev->session,
                                            ev->identity->fingerprint_hex,
                                            ev->identity->subject, coord_now());
        if (rc != ROOST_OK) {
            roost_log(&sv->log, ROOST_LOG_WARN,
                      "session %" PRIu64 " (%s): refused: %s", ev->session,
                      ev->identity->subject, roost_strerror(rc));
            roost_channel_close(sv->ch, ev->session);
        }
    } else if (ev->type == ROOST_CHANNEL_FRAME) {
        Roost__V1__Envelope *env = NULL;
        roost_errmsg em;
        int rc =
            roost_wire_decode(NULL, ev->data, ev->len, &sv->limits, &env, &em);
        if (rc != ROOST_OK) {
            roost_log(&sv->log, ROOST_LOG_WARN,
                      "session %" PRIu64 " (%s): undecodable message (%s): "
                      "%s; closing it",
                      ev->session, ev->identity->subject, roost_strerror(rc),
                      em.text);
            roost_channel_close(sv->ch, ev->session);
        } else {
            note_fatal(sv, roost_coord_session_message(sv->coord, ev->session,
                                                       env, coord_now()));
            roost_wire_free(NULL, env);
        }
    }
    sv->in_coord = false;
    drain_closed(sv);
}

static void
on_round(void *arg, const roost_coord_round_summary *s)
{
    struct serve *sv = arg;
    char loss[32], acc[32], eps[32];
    if (s->evaluation) {
        roost_cli_number(loss, sizeof(loss), s->fed_eval_loss);
        roost_cli_number(acc, sizeof(acc), s->fed_eval_accuracy);
        roost_log(&sv->log, ROOST_LOG_INFO,
                  "round %" PRId64 " (federated evaluation) %s in %.1f s: %u "
                  "selected, %u answered, %u refused, %u dropped; %" PRIu64
                  " client examples; client loss %s; client accuracy %s "
                  "(not covered by DP)",
                  s->round_id, s->committed ? "committed" : "failed",
                  s->seconds, s->selected, s->accepted, s->refused, s->dropped,
                  s->examples, loss, acc);
        return;
    }
    roost_cli_number(loss, sizeof(loss), s->train_loss);
    roost_cli_number(acc, sizeof(acc), s->eval_accuracy);
    roost_cli_number(eps, sizeof(eps), s->epsilon_max);
    roost_log(&sv->log, ROOST_LOG_INFO,
              "round %" PRId64 " %s in %.1f s: %u selected, %u accepted, %u "
              "refused, %u dropped; %" PRIu64
              " examples; train loss %s; held-out accuracy %s; max epsilon "
              "reported %s",
              s->round_id, s->committed ? "committed" : "failed", s->seconds,
              s->selected, s->accepted, s->refused, s->dropped, s->examples,
              loss, acc, eps);
}

/* ---------------------------------------------------------------------
 * TLS reload.
 *
 * `roost pki revoke` and `roost pki crl` rewrite the CRL; the daemon reads
 * it (with the CA, certificate and key) into a new context on SIGHUP and
 * hands that to the channel with roost_channel_set_tls, so the next
 * handshake is checked against it. If building the context fails (a file
 * missing, unreadable, not PEM, a key that does not match, a CRL the CA
 * did not sign) the old context stays in force and the error is logged:
 * a typo in a reload must not take the federation down or, worse, leave
 * it without TLS.
 *
 * Sessions already open were verified against the old files. Those
 * whose certificate the new CRL lists, whose CA the new CA file lacks, or
 * whose serial cannot be looked up in a CRL that changed (so that nothing
 * vouches for it any more) are closed, exactly as if the client had
 * disconnected (roost_channel_close -> CLOSED -> the coordinator drops the
 * session and its place in the round): a revoked device must not keep
 * contributing updates on a connection it opened before the revocation.
 * A session still in its handshake at the reload keeps the old context
 * (the channel gives the new one only to new connections), so it is
 * checked against the context in force when it opens (on_event), by the
 * same function (roost_tls_ctx_recheck) with the same verdicts: a revoked
 * client could otherwise hold a handshake half-way across the reload and
 * open a session with a certificate revoked by it.
 *
 * CRL rollback. Each CRL carries a cRLNumber that grows with every CRL its
 * CA issues (roost pki; RFC 5280 5.2.3). Putting an older CRL back -- by
 * mistake, a stale copy from a backup or configuration management, or on
 * purpose by someone who can write the file -- would un-revoke every
 * device revoked since, and it is as well signed as the newer one. So a
 * context whose CRL for an issuer (roost_tls_crl_issuer: issuer name and
 * CA key) has a lower number than the one recorded for that issuer is
 * refused like a bad file, and so is a different CRL under the recorded
 * number (a re-signing under a number already used, which roost pki never
 * does). The record is the crl_numbers table of the database, written in
 * one transaction once a context passes and before it is installed, so a
 * restart compares against the same numbers as a reload (and a failed
 * write leaves the old context in force: nothing half-applies). CRLs
 * without a number count as 0: they load as long as no numbered CRL of
 * their issuer was seen, and replace one another freely. An issuer absent
 * from the new file keeps its record. `roost serve --accept-older-crl`
 * (accept_older_crl) records the numbers of crl_file as they are: the
 * operator's deliberate way back.
 *
 * An expired CRL makes OpenSSL refuse every client ("CRL has expired"), so
 * the CRL's nextUpdate is checked at start, at each reload and once a day:
 * past -> error, within 30 days -> warning, both naming the command that
 * re-signs it.
 * ------------------------------------------------------------------- */
#define CRL_WARN_S ((int64_t)30 * 86400)
#define CRL_CHECK_EVERY_MS ((int64_t)86400 * 1000)

static void
format_utc(int64_t t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (t == INT64_MAX || gmtime_r(&tt, &tm) == NULL ||
        strftime(buf, cap, "%Y-%m-%d %H:%M:%SZ", &tm) == 0)
        snprintf(buf, cap, "never");
}

/* Log how long the CRL of ctx stays valid; errors and warnings name the
 * file, the date and the cure. */
static void
crl_check(struct serve *sv, const roost_tls_ctx *ctx)
{
    roost_tls_crl_info info;
    if (roost_tls_ctx_crl_info(ctx, &info) != ROOST_OK) {
        roost_log(&sv->log, ROOST_LOG_WARN,
                  "CRL %s: cannot read its next update time",
                  sv->cfg->crl_file);
        return;
    }
    char when[40];
    if (info.last_update > (int64_t)time(NULL)) {
        format_utc(info.last_update, when, sizeof(when));
        roost_log(&sv->log, ROOST_LOG_ERROR,
                  "CRL %s is not valid before %s (its lastUpdate): every "
                  "client handshake fails (\"CRL is not yet valid\") until "
                  "then; this host's clock is behind the CA's: check both",
                  sv->cfg->crl_file, when);
    }
    if (info.next_update == INT64_MAX)
        return;
    format_utc(info.next_update, when, sizeof(when));
    int64_t left = info.next_update - (int64_t)time(NULL);
    if (left <= 0)
        roost_log(&sv->log, ROOST_LOG_ERROR,
                  "CRL %s expired at %s: every client handshake fails "
                  "(\"CRL has expired\") until it is re-signed: run 'roost "
                  "pki crl --ca-dir CA_DIR', copy the CRL here and reload "
                  "(systemctl reload roost)",
                  sv->cfg->crl_file, when);
    else if (left <= CRL_WARN_S)
        roost_log(&sv->log, ROOST_LOG_WARN,
                  "CRL %s expires at %s (in %" PRId64
                  " days): after that every client handshake fails; run "
                  "'roost pki crl --ca-dir CA_DIR', copy the CRL here and "
                  "reload (systemctl reload roost)",
                  sv->cfg->crl_file, when, left / 86400);
}

/* A cRLNumber (roost_tls_crl_issuer.number, hex) for the log: decimal,
 * as `openssl crl -text` shows it, when it fits 64 bits, else 0x and hex. */
static const char *
crl_number_text(const char *hex, char *buf, size_t cap)
{
    if (strlen(hex) <= 16)
        snprintf(buf, cap, "%llu", strtoull(hex, NULL, 16));
    else
        snprintf(buf, cap, "0x%s", hex);
    return buf;
}

/* The crl_numbers row for a CRL in force (recorded_ms 0: the store's now). */
static void
crl_record(roost_store_crl *r, const roost_tls_crl_issuer *ci)
{
    memset(r, 0, sizeof(*r));
    memcpy(r->issuer_key, ci->issuer_id, sizeof(r->issuer_key));
    snprintf(r->issuer, sizeof(r->issuer), "%s", ci->issuer);
    snprintf(r->number, sizeof(r->number), "%s", ci->number);
    memcpy(r->crl_sha256, ci->digest, sizeof(r->crl_sha256));
}

/*
 * Check each CRL of ctx against the number recorded for its issuer (see
 * "CRL rollback") and record those that changed. Returns ROOST_OK;
 * ROOST_ESTALE for an older CRL or another CRL under the number in force
 * (nothing recorded); or the store's error.
 */
static int
crl_guard(struct serve *sv, const roost_tls_ctx *ctx, roost_errmsg *em)
{
    const char *crl_file = sv->cfg->crl_file;
    size_t n = roost_tls_ctx_crl_count(ctx);
    roost_store_crl *rec = calloc(n > 0 ? n : 1, sizeof(*rec));
    if (rec == NULL) {
        fprintf(stderr, "roost serve: out of memory\n");
        abort();
    }
    size_t n_rec = 0;
    int rc = ROOST_OK;
    for (size_t i = 0; rc == ROOST_OK && i < n; i++) {
        roost_tls_crl_issuer ci;
        roost_store_crl old;
        if ((rc = roost_tls_ctx_crl_get(ctx, i, &ci)) != ROOST_OK)
            break;
        rc = roost_store_get_crl(sv->store, ci.issuer_id, &old, em);
        if (rc != ROOST_OK && rc != ROOST_ENOENT)
            break;
        bool known = rc == ROOST_OK;
        rc = ROOST_OK;
        int cmp = known ? roost_tls_crl_number_cmp(ci.number, old.number) : 1;
        bool same =
            known && memcmp(ci.digest, old.crl_sha256, sizeof(ci.digest)) == 0;
        char now_n[48], old_n[48], when[40];
        if (known)
            format_utc(old.recorded_ms / 1000, when, sizeof(when));
        if (cmp < 0)
            rc = roost_fail(em, ROOST_ESTALE,
                            "CRL %s: issuer %s: cRLNumber %s is lower than "
                            "%s, recorded in the database: an older CRL "
                            "would un-revoke certificates",
                            crl_file, ci.issuer,
                            crl_number_text(ci.number, now_n, sizeof(now_n)),
                            crl_number_text(old.number, old_n, sizeof(old_n)));
        else if (cmp == 0 && !same && strcmp(ci.number, "0") != 0)
            rc = roost_fail(em, ROOST_ESTALE,
                            "CRL %s: issuer %s: cRLNumber %s is the number in "
                            "force, but the CRL differs from the one recorded "
                            "under it at %s: re-signed under a used number",
                            crl_file, ci.issuer,
                            crl_number_text(ci.number, now_n, sizeof(now_n)),
                            when);
        else if (cmp > 0 || !same) {
            crl_record(&rec[n_rec++], &ci);
        }
    }
    if (rc == ROOST_OK && n_rec > 0)
        rc = roost_store_put_crls(sv->store, rec, n_rec, em);
    free(rec);
    return rc;
}

/* After crl_guard refused a CRL: the cure, and the deliberate way back. */
static void
crl_guard_hint(struct serve *sv, bool at_start)
{
    roost_log(&sv->log, ROOST_LOG_ERROR,
              "install the CA's newest CRL as %s ('roost pki crl --ca-dir "
              "CA_DIR' issues the next number) and %s; to use this CRL on "
              "purpose, run 'roost serve --config FILE --accept-older-crl' "
              "first",
              sv->cfg->crl_file,
              at_start ? "start again" : "reload (systemctl reload roost)");
}

/* The server TLS context from the configured files, checked against the
 * recorded cRLNumbers (crl_guard), its CRL logged. */
static int
tls_load(struct serve *sv, roost_tls_ctx **out, roost_errmsg *em)
{
    const roost_serve_config *cfg = sv->cfg;
    roost_tls_files files = {cfg->ca_file, cfg->cert_file, cfg->key_file,
                             cfg->crl_file};
    int rc = roost_tls_ctx_create_server(out, &files, em);
    if (rc != ROOST_OK)
        return rc;
    if ((rc = crl_guard(sv, *out, em)) != ROOST_OK) {
        roost_tls_ctx_destroy(*out);
        *out = NULL;
        return rc;
    }
    roost_tls_crl_info info;
    char when[40] = "unknown";
    if (roost_tls_ctx_crl_info(*out, &info) == ROOST_OK)
        format_utc(info.next_update, when, sizeof(when));
    else
        info.n_revoked = 0;
    roost_log(&sv->log, ROOST_LOG_INFO,
              "TLS: CA %s, certificate %s; CRL %s: %zu revoked, next update "
              "%s",
              cfg->ca_file, cfg->cert_file, cfg->crl_file, info.n_revoked,
              when);
    crl_check(sv, *out);
    return ROOST_OK;
}

/* Closing a session fires CLOSED synchronously, which removes its peer
 * from the table a caller is walking: the sessions to close are collected
 * first, into room for every open peer (NULL when there are none), and
 * closed by close_doomed. */
static uint64_t *
doomed_buffer(const struct serve *sv)
{
    if (sv->n_peers == 0)
        return NULL;
    uint64_t *doomed = malloc(sv->n_peers * sizeof(*doomed));
    if (doomed == NULL) {
        fprintf(stderr, "roost serve: out of memory\n");
        abort();
    }
    return doomed;
}

static void
close_doomed(struct serve *sv, uint64_t *doomed, size_t n)
{
    for (size_t i = 0; i < n; i++)
        roost_channel_close(sv->ch, doomed[i]);
    free(doomed);
    drain_closed(sv);
}

/* SIGHUP: rebuild the context, install it, close revoked sessions. */
static void
tls_reload(struct serve *sv)
{
    roost_tls_ctx *fresh = NULL;
    roost_errmsg em;
    roost_errmsg_clear(&em);
    int rc = tls_load(sv, &fresh, &em);
    if (rc != ROOST_OK) {
        roost_log(&sv->log, ROOST_LOG_ERROR,
                  "SIGHUP: TLS files not reloaded, the previous ones stay in "
                  "force: %s",
                  em.text);
        if (rc == ROOST_ESTALE)
            crl_guard_hint(sv, false);
        return;
    }
    /* tls_load recorded the new CRL numbers already; this cannot fail
     * for a server context (it refuses only a context of the other role),
     * so the record never runs ahead of the CRL in force. */
    if (roost_channel_set_tls(sv->ch, fresh) != ROOST_OK) {
        roost_log(&sv->log, ROOST_LOG_ERROR,
                  "SIGHUP: TLS files not reloaded, the previous ones stay in "
                  "force: %s",
                  roost_channel_errmsg(sv->ch));
        roost_tls_ctx_destroy(fresh);
        return;
    }
    roost_tls_ctx_destroy(sv->tls); /* the channel holds its own reference */
    sv->tls = fresh;
    sv->crl_check_ms = mono_ms() + CRL_CHECK_EVERY_MS;

    uint64_t *doomed = doomed_buffer(sv);
    size_t n_doomed = 0, n_unknown = 0, n_untrusted = 0, n_no_crl = 0;
    for (size_t i = 0; i < sv->n_peers; i++) {
        const struct open_peer *p = &sv->peers[i];
        /* A session verified to a CA that the reloaded CA file no longer
         * holds (a CA replaced after a compromise) is not trusted any
         * more, whatever its serial. A serial that cannot be looked up
         * (longer than 32 bytes, zero or negative: none of them
         * conforming) cannot be cleared by a CRL other than the one its
         * handshake checked: the session is closed and the peer's next
         * handshake checks its certificate against the reloaded CRL. */
        roost_tls_recheck verdict = roost_tls_ctx_recheck(fresh, &p->id);
        const char *why = recheck_reason(verdict);
        if (why == NULL)
            continue;
        roost_log(&sv->log, ROOST_LOG_WARN,
                  "session %" PRIu64 " (%s): closing: %s", p->session,
                  p->id.subject, why);
        doomed[n_doomed++] = p->session;
        n_unknown += verdict == ROOST_TLS_UNCHECKED;
        n_untrusted += verdict == ROOST_TLS_UNTRUSTED;
        n_no_crl += verdict == ROOST_TLS_NO_CRL;
    }
    close_doomed(sv, doomed, n_doomed);
    size_t n_revoked = n_doomed - n_unknown - n_untrusted - n_no_crl;
    roost_log(&sv->log, ROOST_LOG_INFO,
              "SIGHUP: TLS files reloaded; new handshakes use them; %zu open "
              "session%s of revoked certificates closed, %zu whose serial "
              "cannot be checked, %zu whose CA is no longer trusted, %zu "
              "whose CA has no CRL",
              n_revoked, n_revoked == 1 ? "" : "s", n_unknown, n_untrusted,
              n_no_crl);
}

/* Close the sessions whose certificate has expired. The handshake checked
 * the certificate's validity once, and sessions stay open across rounds
 * for as long as the client likes: without this, a device would go on
 * taking part with a certificate that no new handshake accepts. Runs when
 * the earliest notAfter among open sessions has passed (peer_add keeps
 * that time), and works out the next one. */
static void
close_expired(struct serve *sv)
{
    int64_t now_s = wall_ms() / 1000;
    int64_t next_s = INT64_MAX / 1000;
    uint64_t *doomed = doomed_buffer(sv);
    size_t n_doomed = 0;
    for (size_t i = 0; i < sv->n_peers; i++) {
        const roost_tls_identity *id = &sv->peers[i].id;
        if (id->not_after > now_s) {
            if (id->not_after < next_s)
                next_s = id->not_after;
            continue;
        }
        char when[40];
        format_utc(id->not_after, when, sizeof(when));
        roost_log(&sv->log, ROOST_LOG_WARN,
                  "session %" PRIu64 " (%s): closing: its certificate "
                  "expired at %s",
                  sv->peers[i].session, id->subject, when);
        doomed[n_doomed++] = sv->peers[i].session;
    }
    sv->expiry_ms = next_s * 1000;
    close_doomed(sv, doomed, n_doomed);
}

/* ---------------------------------------------------------------------
 * Command line.
 * ------------------------------------------------------------------- */
enum serve_mode { MODE_RUN, MODE_CHECK, MODE_PRINT_DEFAULT, MODE_ACCEPT_CRL };

struct serve_args {
    enum serve_mode mode;
    const char *config;
};

/* "--db x" with a relative x means relative to the working directory,
 * not to state_dir: make it absolute. Returns a heap string or NULL. */
static char *
absolute_path(const char *path)
{
    if (path[0] == '/')
        return strdup(path);
    char cwd[4096];
    if (getcwd(cwd, sizeof(cwd)) == NULL)
        return NULL;
    size_t n = strlen(cwd) + 1 + strlen(path) + 1;
    char *out = malloc(n);
    if (out != NULL)
        snprintf(out, n, "%s/%s", cwd, path);
    return out;
}

/* Parse argv into args and apply overrides to cfg (after the file is
 * loaded: flags override the file, so they are applied in a second pass).
 * pass 0: modes and the file; pass 1: overrides. Returns an exit status,
 * or -1 to continue. */
static int
parse_args(int argc, char **argv, int pass, struct serve_args *args,
           roost_serve_config *cfg)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            if (pass == 0)
                fputs(serve_usage, stdout);
            return ROOST_EXIT_OK;
        }
        if (strcmp(a, "--print-default-config") == 0) {
            args->mode = MODE_PRINT_DEFAULT;
            continue;
        }
        if (strcmp(a, "--accept-older-crl") == 0) {
            args->mode = MODE_ACCEPT_CRL;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr,
                    "roost serve: unknown flag or missing value: '%s' (see "
                    "'roost serve --help')\n",
                    a);
            return ROOST_EXIT_USAGE;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--config") == 0 || strcmp(a, "--check-config") == 0) {
            if (args->config != NULL && pass == 0) {
                fprintf(stderr, "roost serve: give one configuration file\n");
                return ROOST_EXIT_USAGE;
            }
            args->config = v;
            if (strcmp(a, "--check-config") == 0)
                args->mode = MODE_CHECK;
            continue;
        }
        const char *key = NULL;
        char keybuf[128];
        const char *value = v;
        char *owned = NULL;
        if (strcmp(a, "--set") == 0) {
            const char *eq = strchr(v, '=');
            if (eq == NULL || (size_t)(eq - v) >= sizeof(keybuf)) {
                fprintf(stderr,
                        "roost serve: --set %s: expected "
                        "SECTION.KEY=VALUE\n",
                        v);
                return ROOST_EXIT_USAGE;
            }
            memcpy(keybuf, v, (size_t)(eq - v));
            keybuf[eq - v] = '\0';
            key = keybuf;
            value = eq + 1;
        } else {
            for (size_t k = 0; k < sizeof(shorthands) / sizeof(shorthands[0]);
                 k++)
                if (strcmp(a, shorthands[k].flag) == 0)
                    key = shorthands[k].key;
            if (key == NULL) {
                fprintf(stderr,
                        "roost serve: unknown flag '%s' (see 'roost serve "
                        "--help')\n",
                        a);
                return ROOST_EXIT_USAGE;
            }
            if (pass == 1 &&
                (strcmp(a, "--db") == 0 || strcmp(a, "--state-dir") == 0 ||
                 (strcmp(a, "--log") == 0 && v[0] != '\0'))) {
                owned = absolute_path(v);
                if (owned == NULL) {
                    fprintf(stderr, "roost serve: %s: cannot resolve %s\n", a,
                            v);
                    return ROOST_EXIT_FAIL;
                }
                value = owned;
            }
        }
        if (pass == 1) {
            roost_errmsg em;
            int rc = roost_config_set(cfg, key, value, a, &em);
            free(owned);
            if (rc != ROOST_OK) {
                fprintf(stderr, "roost serve: %s\n", em.text);
                return ROOST_EXIT_USAGE;
            }
        }
    }
    return -1;
}

/* ---------------------------------------------------------------------
 * Running.
 * ------------------------------------------------------------------- */

/* Set up everything, run the loop, tear down. Returns an exit status. */
static int
run(roost_serve_config *cfg)
{
    struct serve_log lg = {NULL, cfg->log_file};
    struct serve sv;
    memset(&sv, 0, sizeof(sv));
    sv.cfg = cfg;
    if (cfg->log_file[0] != '\0' && serve_log_open(&lg) != 0) {
        fprintf(stderr, "roost serve: cannot open log file %s: %s\n",
                cfg->log_file, strerror(errno));
        return ROOST_EXIT_FAIL;
    }
    sv.log.fn = serve_log_fn;
    sv.log.arg = &lg;
    sv.log.max_level = cfg->log_level;
    roost_wire_limits_default(&sv.limits);
    /* One limit for the operator: the channel's frame cap is also the
     * decoder's message cap (the table keeps it >= the 2 MiB default), and
     * the decoder may allocate twice that while unpacking. */
    sv.limits.max_message_bytes = (size_t)cfg->max_frame;
    if (sv.limits.max_alloc_bytes < 2 * (size_t)cfg->max_frame)
        sv.limits.max_alloc_bytes = 2 * (size_t)cfg->max_frame;

    int status = ROOST_EXIT_FAIL;
    bool signals_on = false;
    struct sigaction old_actions[N_HANDLED];
    roost_store *store = NULL;
    roost_dataset *eval = NULL;
    roost_rng *dp_rng = NULL;
    roost_errmsg em;
    roost_errmsg_clear(&em);

    /* Signals first, so a SIGTERM during a slow start is not lost. */
    memset(old_actions, 0, sizeof(old_actions)); /* zero: SIG_DFL */
    signals_on = true;
    if (signals_install(old_actions) != 0) {
        roost_log(&sv.log, ROOST_LOG_ERROR, "signal handlers: %s",
                  strerror(errno));
        goto out;
    }

    roost_store_options sopt;
    roost_store_options_init(&sopt);
    sopt.flags = ROOST_STORE_CREATE;
    sopt.keep_last = cfg->keep_last;
    sopt.keep_every = cfg->keep_every;
    size_t sd_len = strlen(cfg->state_dir);
    bool in_state_dir = strncmp(cfg->database, cfg->state_dir, sd_len) == 0 &&
                        cfg->database[sd_len] == '/';
    if (in_state_dir && access(cfg->state_dir, W_OK | X_OK) != 0) {
        roost_log(&sv.log, ROOST_LOG_ERROR,
                  "state_dir %s: %s (create it, writable by this user; "
                  "systemd's StateDirectory= does)",
                  cfg->state_dir, strerror(errno));
        goto out;
    }
    if (roost_store_open_ex(&store, cfg->database, &sopt, &em) != ROOST_OK) {
        roost_log(&sv.log, ROOST_LOG_ERROR, "database: %s", em.text);
        goto out;
    }
    sv.store = store;
    int trc = tls_load(&sv, &sv.tls, &em);
    if (trc != ROOST_OK) {
        roost_log(&sv.log, ROOST_LOG_ERROR, "TLS: %s", em.text);
        /* An older CRL is the operator's to resolve: restarting in a loop
         * (systemd) cannot fix it. */
        if (trc == ROOST_ESTALE) {
            crl_guard_hint(&sv, true);
            status = ROOST_EXIT_USAGE;
        }
        goto out;
    }
    sv.crl_check_ms = mono_ms() + CRL_CHECK_EVERY_MS;
    sv.expiry_ms = INT64_MAX;
    if (cfg->eval_enabled) {
        if (roost_dataset_load_fmnist(&eval, NULL, cfg->eval_dir,
                                      ROOST_SPLIT_TEST, &em) != ROOST_OK) {
            roost_log(&sv.log, ROOST_LOG_ERROR, "evaluation set: %s", em.text);
            goto out;
        }
        roost_log(&sv.log, ROOST_LOG_INFO,
                  "evaluation set: %zu examples from %s",
                  roost_dataset_count(eval), cfg->eval_dir);
    }
    roost_coord_config cc = cfg->coord;
    if (cc.strategy.central_dp) {
        if (roost_rng_create(&dp_rng, NULL) != ROOST_OK) {
            roost_log(&sv.log, ROOST_LOG_ERROR,
                      "central DP: cannot seed the CSPRNG");
            goto out;
        }
        cc.strategy.dp_rng = dp_rng;
    }
    if (cc.selection_seed != 0)
        roost_log(&sv.log, ROOST_LOG_WARN,
                  "round.selection_seed is set: client selection is "
                  "deterministic and predictable (experiments only)");
    cc.store = store;
    cc.eval_set = eval;
    cc.log = sv.log;
    cc.on_round = on_round;
    cc.on_round_arg = &sv;
    roost_coord_io io = {io_send, io_close, &sv};
    int crc = roost_coord_create(&sv.coord, &cc, &io, &em);
    if (crc != ROOST_OK) {
        roost_log(&sv.log, ROOST_LOG_ERROR, "coordinator: %s", em.text);
        /* Settings found unusable only here (no round could ever commit
         * under them, or the database holds a run of another model) are
         * a bad configuration like those --check-config finds: exit 2,
         * which systemd does not restart in a loop. */
        if (crc == ROOST_ECONFIG)
            status = ROOST_EXIT_USAGE;
        goto out;
    }

    roost_channel_config chc;
    roost_channel_config_init(&chc);
    chc.on_event = on_event;
    chc.event_arg = &sv;
    chc.logger = sv.log;
    chc.max_sessions = cfg->max_sessions;
    chc.max_frame = (uint32_t)cfg->max_frame; /* <= 1 GiB by the table */
    chc.handshake_timeout_ms = (int)cfg->handshake_timeout_ms;
    chc.idle_timeout_ms =
        cfg->idle_timeout_ms == 0 ? -1 : (int)cfg->idle_timeout_ms;
    if (roost_channel_create(&sv.ch, &chc, sv.tls, &em) != ROOST_OK) {
        roost_log(&sv.log, ROOST_LOG_ERROR, "channel: %s", em.text);
        goto out;
    }
    if (roost_channel_listen(sv.ch, cfg->listen) != ROOST_OK) {
        roost_log(&sv.log, ROOST_LOG_ERROR, "listen on %s: %s", cfg->listen,
                  roost_channel_errmsg(sv.ch));
        goto out;
    }
    char endpoint[256] = "?";
    roost_channel_endpoint(sv.ch, endpoint, sizeof(endpoint));
    int zfd = -1;
    if (roost_channel_fd(sv.ch, &zfd) != ROOST_OK) {
        roost_log(&sv.log, ROOST_LOG_ERROR, "channel: no descriptor");
        goto out;
    }
    roost_log(&sv.log, ROOST_LOG_INFO,
              "listening on %s; database %s; last committed round %" PRId64,
              endpoint, cfg->database, roost_coord_last_round(sv.coord));

    /* The loop. */
    bool stop = false;
    while (!stop) {
        int64_t next_ms = INT64_MAX;
        sv.in_coord = true;
        note_fatal(&sv, roost_coord_tick(sv.coord, coord_now(), &next_ms));
        sv.in_coord = false;
        drain_closed(&sv);
        if (roost_channel_poll(sv.ch, 0) != ROOST_OK) {
            roost_log(&sv.log, ROOST_LOG_ERROR, "channel: %s",
                      roost_channel_errmsg(sv.ch));
            break;
        }
        if (sv.fatal != ROOST_OK)
            break;
        if (mono_ms() >= sv.crl_check_ms) {
            crl_check(&sv, sv.tls);
            sv.crl_check_ms = mono_ms() + CRL_CHECK_EVERY_MS;
        }
        if (wall_ms() >= sv.expiry_ms)
            close_expired(&sv);
        if (roost_coord_finished(sv.coord)) {
            roost_log(&sv.log, ROOST_LOG_INFO,
                      "round.max_rounds (%" PRIu64 " training rounds) "
                      "reached at round %" PRId64 "; stopping",
                      cfg->coord.max_rounds, roost_coord_last_round(sv.coord));
            status = ROOST_EXIT_OK;
            break;
        }
        /* The ZeroMQ descriptor is edge-triggered and sends made outside
         * roost_channel_poll may leave input unsignalled, so the wait is
         * capped: a missed edge costs at most this much latency. */
        int64_t timeout = 250;
        int ch_timer = roost_channel_next_timer_ms(sv.ch);
        if (ch_timer >= 0 && ch_timer < timeout)
            timeout = ch_timer;
        int64_t until_tick =
            next_ms == INT64_MAX ? INT64_MAX : next_ms - mono_ms();
        if (until_tick < timeout)
            timeout = until_tick < 0 ? 0 : until_tick;
        struct pollfd fds[2] = {{.fd = zfd, .events = POLLIN},
                                {.fd = signal_pipe[0], .events = POLLIN}};
        if (poll(fds, 2, (int)timeout) < 0 && errno != EINTR) {
            roost_log(&sv.log, ROOST_LOG_ERROR, "poll: %s", strerror(errno));
            break;
        }
        unsigned char signo;
        while (!stop && read(signal_pipe[0], &signo, 1) == 1) {
            if (signo == SIGHUP) {
                if (lg.file != NULL) {
                    if (serve_log_open(&lg) != 0)
                        fprintf(stderr,
                                "roost serve: SIGHUP: cannot reopen %s: %s\n",
                                lg.path, strerror(errno));
                    else
                        roost_log(&sv.log, ROOST_LOG_INFO,
                                  "SIGHUP: log file reopened");
                } else {
                    roost_log(&sv.log, ROOST_LOG_INFO,
                              "SIGHUP: logging to standard error, nothing to "
                              "reopen");
                }
                tls_reload(&sv);
            } else {
                roost_log(&sv.log, ROOST_LOG_INFO,
                          "%s: stopping; last committed round %" PRId64,
                          signo == SIGTERM ? "SIGTERM" : "SIGINT",
                          roost_coord_last_round(sv.coord));
                sv.in_coord = true;
                roost_coord_abandon_round(sv.coord);
                sv.in_coord = false;
                drain_closed(&sv);
                status = ROOST_EXIT_OK;
                stop = true;
            }
        }
    }

out:
    /* The channel goes first: destroying it fires no events, so the
     * coordinator is not called back while it is torn down. */
    roost_channel_destroy(sv.ch);
    roost_coord_destroy(sv.coord);
    roost_tls_ctx_destroy(sv.tls);
    roost_dataset_destroy(eval);
    roost_rng_destroy(dp_rng);
    roost_store_close(store);
    free(sv.buf);
    free(sv.closed);
    free(sv.peers);
    if (signals_on)
        signals_restore(old_actions);
    if (lg.file != NULL)
        fclose(lg.file);
    return status;
}

/* --accept-older-crl: record the cRLNumbers of crl_file as the ones in
 * force, lower or not, and say what changed. The files must make a
 * context (a bad file is not recorded). The daemon may be running: it
 * reads the record at its next reload. */
static int
accept_older_crl(roost_serve_config *cfg)
{
    roost_errmsg em;
    roost_errmsg_clear(&em);
    roost_store_options sopt;
    roost_store_options_init(&sopt);
    sopt.flags = ROOST_STORE_CREATE;
    roost_store *store = NULL;
    roost_tls_ctx *ctx = NULL;
    roost_store_crl *rec = NULL;
    roost_tls_files files = {cfg->ca_file, cfg->cert_file, cfg->key_file,
                             cfg->crl_file};
    int status = ROOST_EXIT_FAIL;
    if (roost_store_open_ex(&store, cfg->database, &sopt, &em) != ROOST_OK) {
        fprintf(stderr, "roost serve: database: %s\n", em.text);
        goto out;
    }
    if (roost_tls_ctx_create_server(&ctx, &files, &em) != ROOST_OK) {
        fprintf(stderr, "roost serve: TLS: %s\n", em.text);
        goto out;
    }
    size_t n = roost_tls_ctx_crl_count(ctx);
    rec = calloc(n > 0 ? n : 1, sizeof(*rec));
    if (rec == NULL) {
        fprintf(stderr, "roost serve: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        roost_tls_crl_issuer ci;
        roost_store_crl old;
        char now_n[48], old_n[48];
        if (roost_tls_ctx_crl_get(ctx, i, &ci) != ROOST_OK)
            goto out;
        int rc = roost_store_get_crl(store, ci.issuer_id, &old, &em);
        if (rc != ROOST_OK && rc != ROOST_ENOENT) {
            fprintf(stderr, "roost serve: database: %s\n", em.text);
            goto out;
        }
        printf(
            "CRL %s: issuer %s: cRLNumber %s recorded (%s%s)\n", cfg->crl_file,
            ci.issuer, crl_number_text(ci.number, now_n, sizeof(now_n)),
            rc == ROOST_OK ? "was " : "none recorded before",
            rc == ROOST_OK ? crl_number_text(old.number, old_n, sizeof(old_n))
                           : "");
        crl_record(&rec[i], &ci);
    }
    if (roost_store_put_crls(store, rec, n, &em) != ROOST_OK) {
        fprintf(stderr, "roost serve: database: %s\n", em.text);
        goto out;
    }
    printf("recorded in %s; start or reload roost serve (systemctl reload "
           "roost) to use the CRL\n",
           cfg->database);
    status = ROOST_EXIT_OK;
out:
    free(rec);
    roost_tls_ctx_destroy(ctx);
    roost_store_close(store);
    return status;
}

int
roost_cmd_serve(int argc, char **argv)
{
    struct serve_args args = {MODE_RUN, NULL};
    roost_serve_config cfg;
    int status = parse_args(argc, argv, 0, &args, NULL);
    if (status >= 0)
        return status;
    if (args.mode == MODE_PRINT_DEFAULT) {
        roost_config_write(NULL, stdout, true);
        return ROOST_EXIT_OK;
    }
    if (args.config == NULL) {
        fprintf(stderr, "roost serve: --config FILE is required (see 'roost "
                        "serve --help')\n");
        return ROOST_EXIT_USAGE;
    }
    if (roost_config_init(&cfg) != ROOST_OK) {
        fprintf(stderr, "roost serve: out of memory\n");
        return ROOST_EXIT_FAIL;
    }
    roost_errmsg em;
    int rc = roost_config_load_file(&cfg, args.config, &em);
    if (rc != ROOST_OK) {
        fprintf(stderr, "roost serve: %s\n", em.text);
        roost_config_free(&cfg);
        return rc == ROOST_ECONFIG ? ROOST_EXIT_USAGE : ROOST_EXIT_FAIL;
    }
    status = parse_args(argc, argv, 1, &args, &cfg);
    if (status < 0) {
        rc = roost_config_finish(&cfg, &em);
        if (rc != ROOST_OK) {
            fprintf(stderr, "roost serve: %s\n", em.text);
            status = ROOST_EXIT_USAGE;
        }
    }
    if (status < 0 && args.mode == MODE_CHECK) {
        roost_config_write(&cfg, stdout, false);
        status = ROOST_EXIT_OK;
    }
    if (status < 0 && args.mode == MODE_ACCEPT_CRL)
        status = accept_older_crl(&cfg);
    if (status < 0)
        status = run(&cfg);
    roost_config_free(&cfg);
    return status;
}
