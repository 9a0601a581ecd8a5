/*
 * ledger.c - the privacy budget ledger on SQLite (see ledger.h for the
 * plan -> charge -> release contract).
 *
 * File layout (schema version 2, PRAGMA application_id 'RoLg'):
 *   budget(id = 1, epsilon_max, delta, created_unix, ledger_id, genesis)
 *   events(seq from 1, q, sigma, steps, delta, round_id, task_id,
 *          time_unix, prev_hash, chain_hash, draws, mu, beta, format)
 *   head(id = 1, count, hash)
 * Version 2 added the noise sampler's figures (draws, mu, beta) so that the
 * budget is enforced on the epsilon charged for the sampler actually used
 * (roost_dp_epsilon_sampled), not on the ideal Gaussian's. A version 1 file
 * is upgraded in place when opened: in one transaction with its chain
 * re-verified, the four columns are added and `hash` becomes `chain_hash`
 * (so that version 1 code still running on the file fails rather than
 * append events without draws); its events keep format 1 (no draws
 * recorded, charged as the ideal mechanism, as they were), every new event
 * is format 2, and a format 1 event after a format 2 one is refused.
 *
 * Invariants, checked by load_verified() before every decision:
 *   - genesis = SHA-256("roost-ledger-v1", ledger_id, epsilon_max, delta,
 *     created_unix): the budget is bound into the chain;
 *   - events are numbered 1..n without gaps; event k has prev_hash = hash
 *     of event k-1 (genesis for k = 1) and hash = SHA-256 of a fixed
 *     big-endian encoding of (prev_hash, seq, q, sigma, steps, delta,
 *     round_id, time_unix, task_id), under the label
 *     "roost-ledger-event-v1" for format 1 (whose draws, mu and beta must
 *     be 0) and, followed by (draws, mu, beta), under
 *     "roost-ledger-event-v2" for format 2;
 *   - head.count = n and head.hash = hash of event n (genesis if n = 0).
 * Editing, deleting or reordering rows breaks one of these. Rewriting the
 * whole chain consistently is possible for anyone who can write the file:
 * there is no secret on the device that could prevent it (docs/privacy.md).
 *
 * Durability: rollback journal (journal_mode=DELETE) with
 * synchronous=EXTRA, so COMMIT returns after the journal, the database and
 * the journal's directory entry are fsync'd; the database is one
 * self-contained file. A new ledger is built under a temporary name and
 * link()ed into place, then the directory is fsync'd, so a crash during
 * creation leaves either no ledger or a complete one.
 *
 * Locking: a handle belongs to one thread. Between processes, charge runs
 * in BEGIN IMMEDIATE, which takes SQLite's write lock before the events are
 * re-read, so two charges cannot both pass the budget check on stale data.
 */
#include "dp/ledger.h"

#include "common/alloc.h"
#include "dp/accountant.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LEDGER_APP_ID 0x526f4c67 /* "RoLg" */
#define LEDGER_SCHEMA_VERSION 2
#define LEDGER_BUSY_MS 10000
#define HASH_LEN 32
#define LEDGER_ID_LEN 16

struct roost_ledger {
    const roost_allocator *alloc;
    sqlite3 *db;
    roost_ledger_budget budget;
    unsigned char genesis[HASH_LEN];
    unsigned char head[HASH_LEN]; /* hash of the last verified event */
    uint64_t count;               /* events verified by the last load */
    roost_dp_event *events;       /* count verified events + 1 spare slot */
    double n_mu, n_beta; /* sums of draws * mu and draws * beta over them */
    double draws;        /* sum of their draws */
    uint64_t format1;    /* how many of them are format 1 (no draws) */
    size_t cap;
    roost_ledger_hook_fn hook;
    void *hook_arg;
    roost_errmsg em;
};

/* The columns version 2 added to events, as created in a new file and as
 * added to a version 1 file (ALTER TABLE needs a default for NOT NULL). */
#define EVENTS_V2_COLUMNS                                                      \
    "draws INTEGER NOT NULL DEFAULT 0, mu REAL NOT NULL DEFAULT 0,"            \
    " beta REAL NOT NULL DEFAULT 0, format INTEGER NOT NULL DEFAULT 1"

static const char schema_sql[] =
    "CREATE TABLE budget(id INTEGER PRIMARY KEY CHECK (id = 1),"
    " epsilon_max REAL NOT NULL, delta REAL NOT NULL,"
    " created_unix INTEGER NOT NULL, ledger_id BLOB NOT NULL,"
    " genesis BLOB NOT NULL);"
    "CREATE TABLE events(seq INTEGER PRIMARY KEY, q REAL NOT NULL,"
    " sigma REAL NOT NULL, steps INTEGER NOT NULL, delta REAL NOT NULL,"
    " round_id INTEGER NOT NULL, task_id TEXT NOT NULL,"
    " time_unix INTEGER NOT NULL, prev_hash BLOB NOT NULL,"
    " chain_hash BLOB NOT NULL, " EVENTS_V2_COLUMNS ");"
    "CREATE TABLE head(id INTEGER PRIMARY KEY CHECK (id = 1),"
    " count INTEGER NOT NULL, hash BLOB NOT NULL);";

/* ---- encoding and hashing --------------------------------------------- */

static unsigned char *
put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        *p++ = (unsigned char)(v >> (8 * i));
    }
    return p;
}

static unsigned char *
put_f64(unsigned char *p, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    return put_u64(p, bits);
}

static unsigned char *
put_bytes(unsigned char *p, const void *src, size_t n)
{
    memcpy(p, src, n);
    return p + n;
}

static int
sha256(const unsigned char *buf, size_t n, unsigned char out[HASH_LEN],
       roost_errmsg *em)
{
    unsigned int len = 0;
    if (EVP_Digest(buf, n, out, &len, EVP_sha256(), NULL) != 1 ||
        len != HASH_LEN)
        return roost_fail(em, ROOST_ECRYPTO, "ledger: SHA-256 failed");
    return ROOST_OK;
}

static int
genesis_hash(const unsigned char id[LEDGER_ID_LEN],
             const roost_ledger_budget *b, int64_t created,
             unsigned char out[HASH_LEN], roost_errmsg *em)
{
    static const char label[] = "roost-ledger-v1";
    unsigned char buf[sizeof(label) + LEDGER_ID_LEN + 24];
    unsigned char *p = put_bytes(buf, label, sizeof(label));
    p = put_bytes(p, id, LEDGER_ID_LEN);
    p = put_f64(p, b->epsilon_max);
    p = put_f64(p, b->delta);
    p = put_u64(p, (uint64_t)created);
    return sha256(buf, (size_t)(p - buf), out, em);
}

/* The fields of one stored event, as hashed. */
struct row {
    uint64_t seq;
    double q, sigma, delta;
    uint64_t steps;
    int64_t round_id, time_unix;
    const char *task_id;
    size_t task_len;
    int format; /* 1: before the sampler's figures were recorded; 2 */
    uint64_t draws;
    double mu, beta;
};

static int
event_hash(const unsigned char prev[HASH_LEN], const struct row *r,
           unsigned char out[HASH_LEN], roost_errmsg *em)
{
    static const char label1[] = "roost-ledger-event-v1";
    static const char label2[] = "roost-ledger-event-v2";
    _Static_assert(sizeof(label1) == sizeof(label2), "labels differ in size");
    unsigned char
        buf[sizeof(label1) + HASH_LEN + 11 * 8 + 4 + ROOST_LEDGER_TASK_ID_MAX];
    unsigned char *p =
        put_bytes(buf, r->format == 1 ? label1 : label2, sizeof(label1));
    p = put_bytes(p, prev, HASH_LEN);
    p = put_u64(p, r->seq);
    p = put_f64(p, r->q);
    p = put_f64(p, r->sigma);
    p = put_u64(p, r->steps);
    p = put_f64(p, r->delta);
    p = put_u64(p, (uint64_t)r->round_id);
    p = put_u64(p, (uint64_t)r->time_unix);
    uint32_t len = (uint32_t)r->task_len;
    for (int i = 3; i >= 0; i--)
        *p++ = (unsigned char)(len >> (8 * i));
    p = put_bytes(p, r->task_id, r->task_len);
    if (r->format != 1) {
        p = put_u64(p, r->draws);
        p = put_f64(p, r->mu);
        p = put_f64(p, r->beta);
    }
    return sha256(buf, (size_t)(p - buf), out, em);
}

/* ---- SQLite helpers ---------------------------------------------------- */

/* Failures while reading what should be a valid ledger: resource problems
 * are storage errors, everything else (corrupt pages, missing tables or
 * columns, not a database) means the file is not a trustworthy ledger. */
static int
sql_fail(roost_errmsg *em, sqlite3 *db, int src, const char *what)
{
    int code;
    switch (src & 0xff) {
    case SQLITE_NOMEM:
        code = ROOST_ENOMEM;
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_INTERRUPT:
        code = ROOST_ESTORE;
        break;
    default:
        code = ROOST_ELEDGER;
        break;
    }
    return roost_fail(em, code, "ledger: %s: %s", what,
                      db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(src));
}

static int
exec(sqlite3 *db, const char *sql, roost_errmsg *em)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? ROOST_OK : sql_fail(em, db, rc, sql);
}

/* Run a single-value PRAGMA (or query) and return its integer result. */
static int
query_int(sqlite3 *db, const char *sql, int64_t *out, roost_errmsg *em)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sql_fail(em, db, rc, sql);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    int ret = rc == SQLITE_ROW ? ROOST_OK : sql_fail(em, db, rc, sql);
    sqlite3_finalize(st);
    return ret;
}

/* The settings durability rests on; read back, because a PRAGMA that
 * SQLite cannot honour is silently ignored. */
static int
set_durable(sqlite3 *db, roost_errmsg *em)
{
    int rc;
    int64_t v = -1;
    sqlite3_busy_timeout(db, LEDGER_BUSY_MS);
    sqlite3_extended_result_codes(db, 1);
#ifdef SQLITE_DBCONFIG_DEFENSIVE
    sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
#endif
    /* The journal mode PRAGMA answers with the mode in force, which stays
     * "wal" if another connection holds the file in WAL mode. */
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=DELETE", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sql_fail(em, db, rc, "PRAGMA journal_mode=DELETE");
    rc = sqlite3_step(st);
    const unsigned char *mode =
        rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
    bool is_delete = mode != NULL && strcmp((const char *)mode, "delete") == 0;
    int step_rc = rc;
    sqlite3_finalize(st);
    if (step_rc != SQLITE_ROW)
        return sql_fail(em, db, step_rc, "PRAGMA journal_mode=DELETE");
    if (!is_delete)
        return roost_fail(em, ROOST_ESTORE,
                          "ledger: SQLite refused the rollback journal "
                          "(journal_mode=DELETE)");
    if ((rc = exec(db, "PRAGMA synchronous=EXTRA", em)) != ROOST_OK ||
        (rc = exec(db, "PRAGMA cell_size_check=ON", em)) != ROOST_OK ||
        (rc = exec(db, "PRAGMA trusted_schema=OFF", em)) != ROOST_OK)
        return rc;
    if ((rc = query_int(db, "PRAGMA synchronous", &v, em)) != ROOST_OK)
        return rc;
    if (v != 3)
        return roost_fail(em, ROOST_ESTORE,
                          "ledger: SQLite refused synchronous=EXTRA (got %lld)",
                          (long long)v);
    return ROOST_OK;
}

static void
run_hook(roost_ledger *l, int point)
{
    if (l->hook != NULL)
        l->hook(l->hook_arg, point);
}

/* ---- validation -------------------------------------------------------- */

static int
check_budget(const roost_ledger_budget *b, roost_errmsg *em)
{
    if (!(b->epsilon_max > 0.0) || !isfinite(b->epsilon_max))
        return roost_fail(em, ROOST_EINVAL,
                          "ledger: budget epsilon_max = %g must be positive "
                          "and finite",
                          b->epsilon_max);
    if (!(b->delta > 0.0 && b->delta < 1.0))
        return roost_fail(em, ROOST_EINVAL,
                          "ledger: budget delta = %g is outside (0, 1)",
                          b->delta);
    return ROOST_OK;
}

/* Validate an event's fields (as given by a caller or read from the file);
 * returns the task id length in *task_len. */
static int
check_event(double q, double sigma, uint64_t steps, double delta,
            const char *task_id, size_t *task_len, roost_errmsg *em)
{
    if (!(q >= 0.0 && q <= 1.0))
        return roost_fail(em, ROOST_EINVAL,
                          "ledger: event q = %g is outside [0, 1]", q);
    if (!(sigma > 0.0) || !isfinite(sigma))
        return roost_fail(em, ROOST_EINVAL,
                          "ledger: event sigma = %g must be positive and "
                          "finite",
                          sigma);
    if (steps > (uint64_t)INT64_MAX)
        return roost_fail(em, ROOST_EINVAL,
                          "ledger: event steps = %llu exceeds 2^63 - 1",
                          (unsigned long long)steps);
    if (!(delta > 0.0 && delta < 1.0))
        return roost_fail(em, ROOST_EINVAL,
                          "ledger: event delta = %g is outside (0, 1)", delta);
    size_t len = task_id != NULL ? strlen(task_id) : 0;
    if (len > ROOST_LEDGER_TASK_ID_MAX)
        return roost_fail(em, ROOST_EINVAL,
                          "ledger: task id of %zu bytes exceeds %d", len,
                          ROOST_LEDGER_TASK_ID_MAX);
    *task_len = len;
    return ROOST_OK;
}

/* Validate an event's noise sampler figures. Every noisy step draws at
 * least one noise value, so an event that spends privacy must say how
 * many it drew: a caller that leaves draws at 0 is refused rather than
 * charged as the ideal Gaussian. */
static int
check_sampler(double q, uint64_t steps, uint64_t draws, double mu, double beta,
              roost_errmsg *em)
{
    if (draws > ROOST_LEDGER_MAX_DRAWS)
        return roost_fail(em, ROOST_EINVAL,
                          "ledger: event draws = %llu exceeds 2^62",
                          (unsigned long long)draws);
    if (!(mu >= 0.0) || !isfinite(mu) || !(beta >= 0.0) || !isfinite(beta))
        return roost_fail(em, ROOST_EINVAL,
                          "ledger: event sampler terms mu = %g, beta = %g "
                          "must be finite and >= 0",
                          mu, beta);
    if (draws > 0 && !(mu > 0.0 && beta > 0.0))
        return roost_fail(em, ROOST_EINVAL,
                          "ledger: event of %llu noise draws records sampler "
                          "terms mu = %g, beta = %g (every sampler's are "
                          "positive: set them from roost_noise_closeness)",
                          (unsigned long long)draws, mu, beta);
    if (q > 0.0 && steps > 0 && draws < steps)
        return roost_fail(em, ROOST_EINVAL,
                          "ledger: event of %llu noisy steps records %llu "
                          "noise draws (each step draws at least one: set "
                          "draws, mu and beta from the sampler)",
                          (unsigned long long)steps, (unsigned long long)draws);
    return ROOST_OK;
}

static int
reserve_events(roost_ledger *l, size_t need)
{
    if (need <= l->cap)
        return ROOST_OK;
    size_t cap = l->cap < 16 ? 16 : l->cap;
    while (cap < need) {
        if (!roost_size_mul(cap, 2, &cap))
            return roost_fail(&l->em, ROOST_ENOMEM, "ledger: too many events");
    }
    size_t bytes;
    if (!roost_size_mul(cap, sizeof(roost_dp_event), &bytes))
        return roost_fail(&l->em, ROOST_ENOMEM, "ledger: too many events");
    roost_dp_event *p = roost_alloc_realloc(l->alloc, l->events, bytes);
    if (p == NULL)
        return roost_fail(&l->em, ROOST_ENOMEM,
                          "ledger: out of memory for %zu events", need);
    l->events = p;
    l->cap = cap;
    return ROOST_OK;
}

/* ---- verification ------------------------------------------------------ */

static int
tampered(roost_errmsg *em, const char *what, uint64_t seq)
{
    return roost_fail(em, ROOST_ELEDGER,
                      "ledger: %s at event %llu: the ledger was altered or "
                      "damaged; refusing to train",
                      what, (unsigned long long)seq);
}

static bool
blob_is(sqlite3_stmt *st, int col, size_t len)
{
    return sqlite3_column_type(st, col) == SQLITE_BLOB &&
           sqlite3_column_bytes(st, col) == (int)len;
}

static int
load_budget(roost_ledger *l)
{
    sqlite3_stmt *st = NULL;
    static const char sql[] = "SELECT epsilon_max, delta, created_unix, "
                              "ledger_id, genesis FROM budget";
    int rc = sqlite3_prepare_v2(l->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sql_fail(&l->em, l->db, rc, "reading the budget");
    int ret = ROOST_OK;
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        ret = rc == SQLITE_DONE
                  ? roost_fail(&l->em, ROOST_ELEDGER,
                               "ledger: the budget row is missing")
                  : sql_fail(&l->em, l->db, rc, "reading the budget");
        goto out;
    }
    if (sqlite3_column_type(st, 0) != SQLITE_FLOAT ||
        sqlite3_column_type(st, 1) != SQLITE_FLOAT ||
        sqlite3_column_type(st, 2) != SQLITE_INTEGER ||
        !blob_is(st, 3, LEDGER_ID_LEN) || !blob_is(st, 4, HASH_LEN)) {
        ret = roost_fail(&l->em, ROOST_ELEDGER,
                         "ledger: the budget row has the wrong types");
        goto out;
    }
    roost_ledger_budget b = {sqlite3_column_double(st, 0),
                             sqlite3_column_double(st, 1)};
    if (check_budget(&b, &l->em) != ROOST_OK) {
        ret = roost_fail(&l->em, ROOST_ELEDGER,
                         "ledger: stored budget (epsilon %g, delta %g) is "
                         "invalid",
                         b.epsilon_max, b.delta);
        goto out;
    }
    unsigned char g[HASH_LEN];
    ret = genesis_hash(sqlite3_column_blob(st, 3), &b,
                       sqlite3_column_int64(st, 2), g, &l->em);
    if (ret != ROOST_OK)
        goto out;
    if (memcmp(g, sqlite3_column_blob(st, 4), HASH_LEN) != 0) {
        ret = tampered(&l->em, "the budget does not match its hash", 0);
        goto out;
    }
    if (sqlite3_step(st) != SQLITE_DONE) {
        ret = roost_fail(&l->em, ROOST_ELEDGER,
                         "ledger: more than one budget row");
        goto out;
    }
    l->budget = b;
    memcpy(l->genesis, g, HASH_LEN);
out:
    sqlite3_finalize(st);
    return ret;
}

static int
load_events(roost_ledger *l)
{
    sqlite3_stmt *st = NULL;
    static const char sql[] =
        "SELECT seq, q, sigma, steps, delta, round_id, task_id, time_unix, "
        "prev_hash, chain_hash, draws, mu, beta, format FROM events ORDER BY "
        "seq";
    int rc = sqlite3_prepare_v2(l->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sql_fail(&l->em, l->db, rc, "reading the events");
    unsigned char running[HASH_LEN];
    memcpy(running, l->genesis, HASH_LEN);
    uint64_t n = 0;
    double n_mu = 0.0, n_beta = 0.0, draws_sum = 0.0;
    uint64_t format1 = 0;
    bool format2_seen = false;
    int ret = ROOST_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t expect = n + 1;
        if (expect > ROOST_LEDGER_MAX_EVENTS) {
            ret =
                tampered(&l->em, "more events than a ledger may hold", expect);
            goto out;
        }
        static const int want[14] = {SQLITE_INTEGER,
                                     SQLITE_FLOAT,
                                     SQLITE_FLOAT,
                                     SQLITE_INTEGER,
                                     SQLITE_FLOAT,
                                     SQLITE_INTEGER,
                                     SQLITE_TEXT,
                                     SQLITE_INTEGER,
                                     0,
                                     0,
                                     SQLITE_INTEGER,
                                     SQLITE_FLOAT,
                                     SQLITE_FLOAT,
                                     SQLITE_INTEGER}; /* 0: the hashes, below */
        for (int c = 0; c < 14; c++) {
            if (want[c] != 0 && sqlite3_column_type(st, c) != want[c]) {
                ret = tampered(&l->em, "a field has the wrong type", expect);
                goto out;
            }
        }
        if (!blob_is(st, 8, HASH_LEN) || !blob_is(st, 9, HASH_LEN)) {
            ret = tampered(&l->em, "a hash is malformed", expect);
            goto out;
        }
        struct row r;
        int64_t seq = sqlite3_column_int64(st, 0);
        int64_t steps = sqlite3_column_int64(st, 3);
        if (seq < 1 || (uint64_t)seq != expect) {
            ret = tampered(&l->em, "an event is missing or out of sequence",
                           expect);
            goto out;
        }
        if (steps < 0) {
            ret = tampered(&l->em, "negative steps", expect);
            goto out;
        }
        r.seq = expect;
        r.q = sqlite3_column_double(st, 1);
        r.sigma = sqlite3_column_double(st, 2);
        r.steps = (uint64_t)steps;
        r.delta = sqlite3_column_double(st, 4);
        r.round_id = sqlite3_column_int64(st, 5);
        r.task_id = (const char *)sqlite3_column_text(st, 6);
        r.time_unix = sqlite3_column_int64(st, 7);
        int task_bytes = sqlite3_column_bytes(st, 6);
        if (r.task_id == NULL || task_bytes < 0 ||
            (size_t)task_bytes > ROOST_LEDGER_TASK_ID_MAX ||
            strlen(r.task_id) != (size_t)task_bytes) {
            ret = tampered(&l->em, "the task id is malformed", expect);
            goto out;
        }
        size_t task_len = 0; /* set by check_event; GCC -O3 cannot tell */
        if (check_event(r.q, r.sigma, r.steps, r.delta, r.task_id, &task_len,
                        &l->em) != ROOST_OK) {
            ret = tampered(&l->em, "an event has invalid parameters", expect);
            goto out;
        }
        r.task_len = task_len;
        int64_t draws = sqlite3_column_int64(st, 10);
        int64_t format = sqlite3_column_int64(st, 13);
        r.mu = sqlite3_column_double(st, 11);
        r.beta = sqlite3_column_double(st, 12);
        r.draws = draws < 0 ? UINT64_MAX : (uint64_t)draws;
        if (format != 1 && format != 2) {
            ret = tampered(&l->em, "an event has an unknown format", expect);
            goto out;
        }
        r.format = (int)format;
        if (r.format == 1 && format2_seen) {
            ret = tampered(&l->em,
                           "an event without noise draws follows one with "
                           "them (only events from before the upgrade may "
                           "lack them)",
                           expect);
            goto out;
        }
        format2_seen |= r.format == 2;
        if (r.format == 1 ? (r.draws != 0 || r.mu != 0.0 || r.beta != 0.0)
                          : check_sampler(r.q, r.steps, r.draws, r.mu, r.beta,
                                          &l->em) != ROOST_OK) {
            ret = tampered(&l->em, "an event has invalid sampler figures",
                           expect);
            goto out;
        }
        if (memcmp(sqlite3_column_blob(st, 8), running, HASH_LEN) != 0) {
            ret = tampered(&l->em, "the hash chain is broken", expect);
            goto out;
        }
        unsigned char h[HASH_LEN];
        if ((ret = event_hash(running, &r, h, &l->em)) != ROOST_OK)
            goto out;
        if (memcmp(sqlite3_column_blob(st, 9), h, HASH_LEN) != 0) {
            ret = tampered(&l->em, "an event does not match its hash", expect);
            goto out;
        }
        /* One spare slot is kept for the event being planned. */
        if ((ret = reserve_events(l, (size_t)expect + 1)) != ROOST_OK)
            goto out;
        l->events[n].q = r.q;
        l->events[n].sigma = r.sigma;
        l->events[n].steps = r.steps;
        n_mu += (double)r.draws * r.mu;
        n_beta += (double)r.draws * r.beta;
        draws_sum += (double)r.draws;
        format1 += r.format == 1;
        memcpy(running, h, HASH_LEN);
        n = expect;
    }
    if (rc != SQLITE_DONE) {
        ret = sql_fail(&l->em, l->db, rc, "reading the events");
        goto out;
    }
    if ((ret = reserve_events(l, (size_t)n + 1)) != ROOST_OK)
        goto out;
    sqlite3_finalize(st);
    st = NULL;

    /* The head row: catches deleting the newest events, which leaves a
     * chain that is consistent but short. */
    static const char head_sql[] = "SELECT count, hash FROM head";
    rc = sqlite3_prepare_v2(l->db, head_sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sql_fail(&l->em, l->db, rc, "reading the head");
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        ret = rc == SQLITE_DONE ? tampered(&l->em, "the head row is missing", n)
                                : sql_fail(&l->em, l->db, rc, "reading head");
        goto out;
    }
    if (sqlite3_column_type(st, 0) != SQLITE_INTEGER ||
        !blob_is(st, 1, HASH_LEN)) {
        ret = tampered(&l->em, "the head row is malformed", n);
        goto out;
    }
    if ((uint64_t)sqlite3_column_int64(st, 0) != n) {
        ret = roost_fail(&l->em, ROOST_ELEDGER,
                         "ledger: the head records %lld events but %llu "
                         "verify (events were deleted or altered); refusing "
                         "to train",
                         (long long)sqlite3_column_int64(st, 0),
                         (unsigned long long)n);
        goto out;
    }
    if (memcmp(sqlite3_column_blob(st, 1), running, HASH_LEN) != 0) {
        /* The counts agree but the chain ends elsewhere: the head (or the
         * events with it) was rewritten, e.g. every event deleted and the
         * count set to 0. */
        ret = roost_fail(&l->em, ROOST_ELEDGER,
                         "ledger: the head's hash does not match the chain "
                         "of its %llu events (the head or events were "
                         "altered); refusing to train",
                         (unsigned long long)n);
        goto out;
    }
    if (sqlite3_step(st) != SQLITE_DONE) {
        ret = tampered(&l->em, "more than one head row", n);
        goto out;
    }
    l->count = n;
    l->n_mu = n_mu;
    l->n_beta = n_beta;
    l->draws = draws_sum;
    l->format1 = format1;
    memcpy(l->head, running, HASH_LEN);
out:
    sqlite3_finalize(st);
    return ret;
}

/* Everything a decision rests on, re-read and re-verified; run inside a
 * transaction so the reads are consistent. */
static int
load_verified(roost_ledger *l)
{
    int rc = load_budget(l);
    if (rc == ROOST_OK)
        rc = load_events(l);
    return rc;
}

/* The header and SQLite's own structural check, once per open; *version
 * receives the schema version (1 or 2). */
static int
check_file(roost_ledger *l, const char *path, int64_t *version_out)
{
    int64_t app = 0, version = 0;
    int rc = query_int(l->db, "PRAGMA application_id", &app, &l->em);
    if (rc == ROOST_ELEDGER) {
        char why[ROOST_ERRMSG_CAP];
        memcpy(why, l->em.text, sizeof(why));
        return roost_fail(&l->em, ROOST_ELEDGER,
                          "ledger: '%s' is not a readable SQLite file (%s)",
                          path, why);
    }
    if (rc != ROOST_OK)
        return rc;
    if (app != LEDGER_APP_ID)
        return roost_fail(&l->em, ROOST_ELEDGER,
                          "ledger: '%s' is not a Roost ledger (application "
                          "id 0x%llx)",
                          path, (unsigned long long)app);
    if ((rc = query_int(l->db, "PRAGMA user_version", &version, &l->em)) !=
        ROOST_OK)
        return rc;
    if (version != 1 && version != LEDGER_SCHEMA_VERSION)
        return roost_fail(&l->em, ROOST_ELEDGER,
                          "ledger: '%s' has schema version %lld; this build "
                          "reads versions 1 and %d",
                          path, (long long)version, LEDGER_SCHEMA_VERSION);
    *version_out = version;
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(l->db, "PRAGMA integrity_check", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sql_fail(&l->em, l->db, rc, "integrity_check");
    rc = sqlite3_step(st);
    const unsigned char *res =
        rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
    int ret = ROOST_OK;
    if (rc != SQLITE_ROW)
        ret = sql_fail(&l->em, l->db, rc, "integrity_check");
    else if (res == NULL || strcmp((const char *)res, "ok") != 0)
        ret = roost_fail(&l->em, ROOST_ELEDGER, "ledger: '%s' is corrupt: %s",
                         path, res != NULL ? (const char *)res : "(no result)");
    sqlite3_finalize(st);
    return ret;
}

/* Upgrade a version 1 file to version 2 in one write transaction: add the
 * sampler columns (old rows read as format 1 with zero draws), verify the
 * whole chain as version 2 reads it, and only then set the version. A file
 * that does not verify is left exactly as it was. */
static int
upgrade_v1(roost_ledger *l, const char *path)
{
    int rc = exec(l->db, "BEGIN IMMEDIATE", &l->em);
    if (rc != ROOST_OK)
        return rc;
    int64_t version = 0;
    /* Another process may have upgraded the file since check_file. */
    if ((rc = query_int(l->db, "PRAGMA user_version", &version, &l->em)) !=
            ROOST_OK ||
        version != 1)
        goto done;
    /* Renaming the hash column makes a process still running version 1
     * code fail (its statements name `hash`) instead of appending events
     * without draws to the upgraded chain. */
    static const char *const add[] = {
        "ALTER TABLE events RENAME COLUMN hash TO chain_hash",
        "ALTER TABLE events ADD COLUMN draws INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE events ADD COLUMN mu REAL NOT NULL DEFAULT 0",
        "ALTER TABLE events ADD COLUMN beta REAL NOT NULL DEFAULT 0",
        "ALTER TABLE events ADD COLUMN format INTEGER NOT NULL DEFAULT 1"};
    for (size_t i = 0; i < sizeof(add) / sizeof(add[0]); i++)
        if ((rc = exec(l->db, add[i], &l->em)) != ROOST_OK)
            goto done;
    if ((rc = load_verified(l)) != ROOST_OK)
        goto done;
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", LEDGER_SCHEMA_VERSION);
    if ((rc = exec(l->db, sql, &l->em)) != ROOST_OK)
        goto done;
    rc = exec(l->db, "COMMIT", &l->em);
done:
    if (!sqlite3_get_autocommit(l->db))
        sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
    if (rc != ROOST_OK && rc != ROOST_ELEDGER) {
        char why[ROOST_ERRMSG_CAP];
        memcpy(why, l->em.text, sizeof(why));
        rc = roost_fail(&l->em, rc,
                        "ledger: upgrading '%s' from schema version 1: %s",
                        path, why);
    }
    return rc;
}

/* ---- creation ---------------------------------------------------------- */

static int
fsync_dir_of(const char *path, roost_errmsg *em)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t len = (size_t)(slash - path);
        if (len >= sizeof(dir))
            return roost_fail(em, ROOST_EINVAL, "ledger: path too long");
        memcpy(dir, path, len);
        dir[len] = '\0';
    }
    int fd = open(dir, O_RDONLY);
    if (fd < 0)
        return roost_fail(em, ROOST_ESTORE, "ledger: open directory '%s': %s",
                          dir, strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    if (rc != 0)
        return roost_fail(em, ROOST_ESTORE, "ledger: fsync '%s': %s", dir,
                          strerror(err));
    return ROOST_OK;
}

/* Build a complete empty ledger at tmp. */
static int
init_file(const char *tmp, const roost_ledger_budget *b, roost_errmsg *em)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(tmp, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc != SQLITE_OK) {
        int ret = sql_fail(em, db, rc, "creating the ledger");
        sqlite3_close(db);
        return ret;
    }
    unsigned char id[LEDGER_ID_LEN], g[HASH_LEN];
    int64_t created = (int64_t)time(NULL);
    char sql[128];
    sqlite3_stmt *st = NULL;
    int ret = set_durable(db, em);
    if (ret != ROOST_OK)
        goto out;
    if (RAND_bytes(id, sizeof(id)) != 1) {
        ret = roost_fail(em, ROOST_ECRYPTO, "ledger: no random ledger id");
        goto out;
    }
    if ((ret = genesis_hash(id, b, created, g, em)) != ROOST_OK)
        goto out;
    if ((ret = exec(db, "BEGIN IMMEDIATE", em)) != ROOST_OK)
        goto out;
    snprintf(sql, sizeof(sql), "PRAGMA application_id=%d", LEDGER_APP_ID);
    if ((ret = exec(db, sql, em)) != ROOST_OK)
        goto rollback;
    snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", LEDGER_SCHEMA_VERSION);
    if ((ret = exec(db, sql, em)) != ROOST_OK ||
        (ret = exec(db, schema_sql, em)) != ROOST_OK)
        goto rollback;
    rc = sqlite3_prepare_v2(db, "INSERT INTO budget VALUES (1, ?, ?, ?, ?, ?)",
                            -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_double(st, 1, b->epsilon_max);
        sqlite3_bind_double(st, 2, b->delta);
        sqlite3_bind_int64(st, 3, created);
        sqlite3_bind_blob(st, 4, id, sizeof(id), SQLITE_TRANSIENT);
        sqlite3_bind_blob(st, 5, g, sizeof(g), SQLITE_TRANSIENT);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc != SQLITE_DONE) {
        ret = sql_fail(em, db, rc, "writing the budget");
        goto rollback;
    }
    rc = sqlite3_prepare_v2(db, "INSERT INTO head VALUES (1, 0, ?)", -1, &st,
                            NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, g, sizeof(g), SQLITE_TRANSIENT);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        ret = sql_fail(em, db, rc, "writing the head");
        goto rollback;
    }
    if ((ret = exec(db, "COMMIT", em)) == ROOST_OK)
        goto out;
rollback:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
out:
    if (sqlite3_close(db) != SQLITE_OK && ret == ROOST_OK)
        ret = roost_fail(em, ROOST_ESTORE, "ledger: closing the new ledger");
    return ret;
}

/* Create the ledger atomically. Returns ROOST_OK, or ROOST_EDUPLICATE when
 * another process created it first (the caller then opens that one). */
static int
create_file(const roost_allocator *alloc, const char *path,
            const roost_ledger_budget *b, roost_errmsg *em)
{
    static const char suffix[] = ".new-XXXXXX";
    size_t len = strlen(path), bytes;
    if (!roost_size_add(len, sizeof(suffix), &bytes))
        return roost_fail(em, ROOST_EINVAL, "ledger: path too long");
    char *tmp = roost_alloc_malloc(alloc, bytes);
    if (tmp == NULL)
        return roost_fail(em, ROOST_ENOMEM, "ledger: out of memory");
    memcpy(tmp, path, len);
    memcpy(tmp + len, suffix, sizeof(suffix));
    int ret;
    int fd = mkstemp(tmp);
    if (fd < 0) {
        ret = roost_fail(em, ROOST_ESTORE, "ledger: cannot create '%s': %s",
                         tmp, strerror(errno));
        roost_alloc_free(alloc, tmp);
        return ret;
    }
    close(fd);
    ret = init_file(tmp, b, em);
    if (ret == ROOST_OK && link(tmp, path) != 0) {
        ret = errno == EEXIST
                  ? ROOST_EDUPLICATE
                  : roost_fail(em, ROOST_ESTORE,
                               "ledger: cannot link '%s' into place: %s", path,
                               strerror(errno));
    }
    unlink(tmp);
    roost_alloc_free(alloc, tmp);
    if (ret == ROOST_OK)
        ret = fsync_dir_of(path, em);
    return ret;
}

/* ---- public API -------------------------------------------------------- */

int
roost_ledger_open(roost_ledger **out, const roost_allocator *alloc,
                  const char *path, unsigned flags,
                  const roost_ledger_budget *budget, roost_errmsg *em)
{
    if (out == NULL)
        return roost_fail(em, ROOST_EINVAL, "ledger: out is NULL");
    *out = NULL;
    if (path == NULL || path[0] == '\0')
        return roost_fail(em, ROOST_EINVAL, "ledger: no path");
    if (flags & ~(unsigned)ROOST_LEDGER_CREATE)
        return roost_fail(em, ROOST_EINVAL, "ledger: unknown flags 0x%x",
                          flags);
    bool create = (flags & ROOST_LEDGER_CREATE) != 0;
    int rc;
    if (create) {
        if (budget == NULL)
            return roost_fail(em, ROOST_EINVAL,
                              "ledger: ROOST_LEDGER_CREATE needs a budget");
        if ((rc = check_budget(budget, em)) != ROOST_OK)
            return rc;
    }
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno != ENOENT)
            return roost_fail(em, ROOST_ESTORE, "ledger: stat '%s': %s", path,
                              strerror(errno));
        if (!create)
            return roost_fail(em, ROOST_ELEDGER,
                              "ledger: '%s' is missing; a ledger that existed "
                              "cannot be assumed empty, so training is "
                              "refused (pass ROOST_LEDGER_CREATE only on "
                              "first use)",
                              path);
        rc = create_file(alloc, path, budget, em);
        if (rc != ROOST_OK && rc != ROOST_EDUPLICATE)
            return rc;
    } else if (!S_ISREG(sb.st_mode)) {
        return roost_fail(em, ROOST_ELEDGER,
                          "ledger: '%s' is not a regular file", path);
    }

    roost_ledger *l = roost_alloc_calloc(alloc, 1, sizeof(*l));
    if (l == NULL)
        return roost_fail(em, ROOST_ENOMEM, "ledger: out of memory");
    l->alloc = alloc;
    /* No SQLITE_OPEN_CREATE: a file removed since the stat above is an
     * error, never a new empty database. */
    rc = sqlite3_open_v2(path, &l->db, SQLITE_OPEN_READWRITE, NULL);
    if (rc != SQLITE_OK) {
        rc = rc == SQLITE_CANTOPEN
                 ? roost_fail(em, ROOST_ELEDGER, "ledger: cannot open '%s'",
                              path)
                 : sql_fail(em, l->db, rc, "opening the ledger");
        roost_ledger_close(l);
        return rc;
    }
    if ((rc = set_durable(l->db, &l->em)) == ROOST_ELEDGER) {
        char why[ROOST_ERRMSG_CAP];
        memcpy(why, l->em.text, sizeof(why));
        rc = roost_fail(&l->em, ROOST_ELEDGER,
                        "ledger: '%s' is not a valid ledger (%s)", path, why);
        goto fail;
    }
    int64_t version = 0;
    if (rc != ROOST_OK || (rc = check_file(l, path, &version)) != ROOST_OK ||
        (version == 1 && (rc = upgrade_v1(l, path)) != ROOST_OK) ||
        (rc = exec(l->db, "BEGIN", &l->em)) != ROOST_OK)
        goto fail;
    rc = load_verified(l);
    sqlite3_exec(l->db, rc == ROOST_OK ? "COMMIT" : "ROLLBACK", NULL, NULL,
                 NULL);
    if (rc != ROOST_OK)
        goto fail;
    if (create && (budget->epsilon_max != l->budget.epsilon_max ||
                   budget->delta != l->budget.delta)) {
        rc = roost_fail(&l->em, ROOST_ECONFIG,
                        "ledger: '%s' holds the budget (epsilon %g, delta %g), "
                        "not the requested (epsilon %g, delta %g); a budget "
                        "cannot be changed",
                        path, l->budget.epsilon_max, l->budget.delta,
                        budget->epsilon_max, budget->delta);
        goto fail;
    }
    roost_errmsg_clear(&l->em);
    *out = l;
    return ROOST_OK;
fail:
    roost_fail(em, rc, "%s", l->em.text);
    roost_ledger_close(l);
    return rc;
}

void
roost_ledger_close(roost_ledger *l)
{
    if (l == NULL)
        return;
    sqlite3_close(l->db);
    roost_alloc_free(l->alloc, l->events);
    roost_alloc_free(l->alloc, l);
}

const char *
roost_ledger_errmsg(const roost_ledger *l)
{
    return l != NULL ? l->em.text : "";
}

void
roost_ledger_get_budget(const roost_ledger *l, roost_ledger_budget *out)
{
    *out = l->budget;
}

void
roost_ledger_set_hook(roost_ledger *l, roost_ledger_hook_fn fn, void *arg)
{
    l->hook = fn;
    l->hook_arg = arg;
}

/* Epsilon of the verified events, plus ev when given, charged for the
 * noise sampler's recorded figures at the budget's epsilon (any result
 * within the budget is an (epsilon, delta) guarantee). Must follow a
 * successful load_verified (which keeps a spare slot). */
static int
epsilon_with(roost_ledger *l, const roost_ledger_event *ev, double *eps,
             double *best_order)
{
    size_t n = (size_t)l->count;
    double n_mu = l->n_mu, n_beta = l->n_beta;
    if (ev != NULL) {
        l->events[n].q = ev->q == 0.0 ? 0.0 : ev->q;
        l->events[n].sigma = ev->sigma;
        l->events[n].steps = ev->steps;
        n_mu += (double)ev->draws * ev->mu;
        n_beta += (double)ev->draws * ev->beta;
        n++;
    }
    roost_errmsg why;
    int rc = roost_dp_epsilon_sampled(l->events, n, n_mu, n_beta,
                                      l->budget.epsilon_max, l->budget.delta,
                                      eps, best_order, &why);
    if (rc == ROOST_EOVERFLOW) {
        *eps = HUGE_VAL;
        return ROOST_OK;
    }
    if (rc != ROOST_OK)
        return roost_fail(&l->em, rc, "ledger: accountant: %s", why.text);
    return ROOST_OK;
}

/* The budget decision for ev on freshly verified events. */
static int
budget_check(roost_ledger *l, const roost_ledger_event *ev, double *eps_after)
{
    double spent, after;
    int rc = epsilon_with(l, NULL, &spent, NULL);
    if (rc == ROOST_OK)
        rc = epsilon_with(l, ev, &after, NULL);
    if (rc != ROOST_OK)
        return rc;
    if (eps_after != NULL)
        *eps_after = after;
    if (!(after <= l->budget.epsilon_max)) {
        /* Infinite: no epsilon up to the budget can be certified. When the
         * ideal Gaussian's epsilon is finite (epsilon_with left ev in the
         * spare slot), that is the tail term e^epsilon n beta taking too
         * much of delta for this sigma; otherwise sigma is too small for
         * any finite epsilon. */
        double n_mu = l->n_mu + (double)ev->draws * ev->mu;
        double n_beta = l->n_beta + (double)ev->draws * ev->beta;
        double ideal = 0.0;
        if (after >= HUGE_VAL && n_beta > 0.0 &&
            roost_dp_epsilon(l->events, (size_t)l->count + 1, l->budget.delta,
                             &ideal, NULL, NULL) == ROOST_OK)
            return roost_fail(
                &l->em, ROOST_EBUDGET,
                "privacy budget exceeded: with this task (sigma = %g) no "
                "epsilon up to %g holds at delta %g: the noise sampler's "
                "tail term e^epsilon * n * beta (n * beta = %.3g over all "
                "draws) takes too much of delta; refusing the task",
                ev->sigma, l->budget.epsilon_max, l->budget.delta, n_beta);
        if (after >= HUGE_VAL)
            return roost_fail(&l->em, ROOST_EBUDGET,
                              "privacy budget exceeded: sigma = %g is too "
                              "small to give any finite epsilon",
                              ev->sigma);
        return roost_fail(
            &l->em, ROOST_EBUDGET,
            "privacy budget exceeded: this task (q = %g, sigma = %g, steps = "
            "%llu) would raise epsilon from %.4f to %s%.4f, above the budget "
            "of "
            "%.4f at delta %g, after %llu charged events; refusing the task",
            ev->q, ev->sigma, (unsigned long long)ev->steps, spent,
            /* Above the budget, the charged search stops at a lower bound
             * of every valid epsilon (roost_dp_epsilon_sampled). */
            n_mu > 0.0 || n_beta > 0.0 ? "at least " : "", after,
            l->budget.epsilon_max, l->budget.delta,
            (unsigned long long)l->count);
    }
    return ROOST_OK;
}

int
roost_ledger_spent(roost_ledger *l, double *eps, double *best_order,
                   uint64_t *n_events)
{
    if (l == NULL || eps == NULL)
        return ROOST_EINVAL;
    roost_errmsg_clear(&l->em);
    int rc = exec(l->db, "BEGIN", &l->em);
    if (rc != ROOST_OK)
        return rc;
    rc = load_verified(l);
    sqlite3_exec(l->db, "COMMIT", NULL, NULL, NULL);
    if (rc == ROOST_OK)
        rc = epsilon_with(l, NULL, eps, best_order);
    if (rc == ROOST_OK && n_events != NULL)
        *n_events = l->count;
    return rc;
}

void
roost_ledger_sampler(const roost_ledger *l, roost_ledger_sampler_info *out)
{
    out->draws = l->draws;
    out->n_mu = l->n_mu;
    out->n_beta = l->n_beta;
    out->unrecorded_events = l->format1;
}

static int
check_caller_event(roost_ledger *l, const roost_ledger_event *ev,
                   size_t *task_len)
{
    if (ev == NULL)
        return roost_fail(&l->em, ROOST_EINVAL, "ledger: event is NULL");
    int rc = check_event(ev->q, ev->sigma, ev->steps, ev->delta, ev->task_id,
                         task_len, &l->em);
    if (rc == ROOST_OK)
        rc = check_sampler(ev->q, ev->steps, ev->draws, ev->mu, ev->beta,
                           &l->em);
    return rc;
}

int
roost_ledger_plan(roost_ledger *l, const roost_ledger_event *ev,
                  double *eps_after)
{
    if (l == NULL)
        return ROOST_EINVAL;
    roost_errmsg_clear(&l->em);
    size_t task_len;
    int rc = check_caller_event(l, ev, &task_len);
    if (rc != ROOST_OK)
        return rc;
    if ((rc = exec(l->db, "BEGIN", &l->em)) != ROOST_OK)
        return rc;
    rc = load_verified(l);
    sqlite3_exec(l->db, "COMMIT", NULL, NULL, NULL);
    if (rc != ROOST_OK)
        return rc;
    return budget_check(l, ev, eps_after);
}

/* Append the event row and move the head; inside the charge transaction. */
static int
append_event(roost_ledger *l, const struct row *r,
             const unsigned char hash[HASH_LEN])
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        l->db,
        "INSERT INTO events(seq, q, sigma, steps, delta, round_id, task_id, "
        "time_unix, prev_hash, chain_hash, draws, mu, beta, format) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 2)",
        -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)r->seq);
        sqlite3_bind_double(st, 2, r->q);
        sqlite3_bind_double(st, 3, r->sigma);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)r->steps);
        sqlite3_bind_double(st, 5, r->delta);
        sqlite3_bind_int64(st, 6, r->round_id);
        sqlite3_bind_text(st, 7, r->task_id, (int)r->task_len,
                          SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 8, r->time_unix);
        sqlite3_bind_blob(st, 9, l->head, HASH_LEN, SQLITE_TRANSIENT);
        sqlite3_bind_blob(st, 10, hash, HASH_LEN, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 11, (sqlite3_int64)r->draws);
        sqlite3_bind_double(st, 12, r->mu);
        sqlite3_bind_double(st, 13, r->beta);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_fail(&l->em, l->db, rc, "writing the event");
    run_hook(l, ROOST_LEDGER_POINT_INSERTED);
    st = NULL;
    rc = sqlite3_prepare_v2(l->db,
                            "UPDATE head SET count = ?, hash = ? WHERE id = 1",
                            -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)r->seq);
        sqlite3_bind_blob(st, 2, hash, HASH_LEN, SQLITE_TRANSIENT);
        rc = sqlite3_step(st);
    }
    if (rc == SQLITE_DONE && sqlite3_changes(l->db) != 1)
        rc = SQLITE_CORRUPT;
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_fail(&l->em, l->db, rc, "moving the head");
    return ROOST_OK;
}

int
roost_ledger_charge(roost_ledger *l, const roost_ledger_event *ev,
                    roost_ledger_receipt *receipt, double *eps_after)
{
    if (l == NULL)
        return ROOST_EINVAL;
    roost_errmsg_clear(&l->em);
    if (receipt == NULL)
        return roost_fail(&l->em, ROOST_EINVAL, "ledger: receipt is NULL");
    size_t task_len = 0;
    int rc = check_caller_event(l, ev, &task_len);
    if (rc != ROOST_OK)
        return rc;
    /* IMMEDIATE takes the write lock now, so the events verified below are
     * the ones the new event is appended to. */
    if ((rc = exec(l->db, "BEGIN IMMEDIATE", &l->em)) != ROOST_OK)
        return rc;
    run_hook(l, ROOST_LEDGER_POINT_BEGUN);
    if ((rc = load_verified(l)) != ROOST_OK ||
        (rc = budget_check(l, ev, eps_after)) != ROOST_OK)
        goto rollback;
    if (l->count >= ROOST_LEDGER_MAX_EVENTS) {
        rc = roost_fail(&l->em, ROOST_ETOOBIG,
                        "ledger: full (%d events); no further charges",
                        ROOST_LEDGER_MAX_EVENTS);
        goto rollback;
    }
    struct row r = {
        .seq = l->count + 1,
        .q = ev->q == 0.0 ? 0.0 : ev->q, /* no -0.0: SQLite may not keep it */
        .sigma = ev->sigma,
        .delta = ev->delta,
        .steps = ev->steps,
        .round_id = ev->round_id,
        .time_unix = ev->time_unix != 0 ? ev->time_unix : (int64_t)time(NULL),
        .task_id = ev->task_id != NULL ? ev->task_id : "",
        .task_len = task_len,
        .format = 2,
        .draws = ev->draws,
        .mu = ev->mu,
        .beta = ev->beta,
    };
    unsigned char hash[HASH_LEN];
    if ((rc = event_hash(l->head, &r, hash, &l->em)) != ROOST_OK ||
        (rc = append_event(l, &r, hash)) != ROOST_OK)
        goto rollback;
    run_hook(l, ROOST_LEDGER_POINT_PRECOMMIT);
    if ((rc = exec(l->db, "COMMIT", &l->em)) != ROOST_OK)
        goto rollback;
    run_hook(l, ROOST_LEDGER_POINT_COMMITTED);
    l->count = r.seq;
    l->n_mu += (double)r.draws * r.mu;
    l->n_beta += (double)r.draws * r.beta;
    l->draws += (double)r.draws;
    memcpy(l->head, hash, HASH_LEN);
    receipt->seq = r.seq;
    memcpy(receipt->hash, hash, HASH_LEN);
    return ROOST_OK;
rollback:
    if (!sqlite3_get_autocommit(l->db))
        sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int
roost_ledger_release(roost_ledger *l, const roost_ledger_receipt *receipt)
{
    if (l == NULL)
        return ROOST_EINVAL;
    roost_errmsg_clear(&l->em);
    if (receipt == NULL)
        return roost_fail(&l->em, ROOST_EINVAL, "ledger: receipt is NULL");
    if (!sqlite3_get_autocommit(l->db))
        return roost_fail(&l->em, ROOST_ELEDGER,
                          "ledger: a transaction is still open; nothing is "
                          "released before its charge commits");
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        l->db, "SELECT chain_hash FROM events WHERE seq = ?", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sql_fail(&l->em, l->db, rc, "release");
    sqlite3_bind_int64(st, 1, (sqlite3_int64)receipt->seq);
    rc = sqlite3_step(st);
    int ret;
    if (rc == SQLITE_ROW && blob_is(st, 0, HASH_LEN) &&
        memcmp(sqlite3_column_blob(st, 0), receipt->hash, HASH_LEN) == 0)
        ret = ROOST_OK;
    else if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        ret = roost_fail(&l->em, ROOST_ELEDGER,
                         "ledger: event %llu of the receipt is not in the "
                         "ledger as charged; the update must not be sent",
                         (unsigned long long)receipt->seq);
    else
        ret = sql_fail(&l->em, l->db, rc, "release");
    sqlite3_finalize(st);
    return ret;
}
