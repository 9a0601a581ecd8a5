/*
 * store.c - the coordinator's SQLite record (see store.h, docs/store.md).
 *
 * Invariants:
 *  - Rounds are numbered 1, 2, ... without gaps. A round exists in the file
 *    only as a whole: its row, participants, updates, metrics, checkpoint
 *    and record hash are written by one BEGIN IMMEDIATE ... COMMIT with
 *    synchronous=FULL, so after a crash at any instant the file holds the
 *    whole round or none of it, and a committed round is durable.
 *  - record_hash(r) = SHA-256(record_hash(r-1) || canon(r)), with 32 zero
 *    bytes before round 1. canon(r) is computed by reading the rows back
 *    from SQLite (hash_round), inside the commit's transaction and again by
 *    the verifier, so the two can never disagree about how a value was
 *    stored.
 *  - The model hash is SHA-256 of the parameters as little-endian float32;
 *    checkpoints hold exactly those bytes.
 *
 * Locking: a handle belongs to one thread. Across processes SQLite's WAL
 * gives one writer (the coordinator) and concurrent readers; writers wait
 * up to the busy timeout for each other.
 */
#include "server/store.h"

#include "common/alloc.h"
#include "common/clock.h"
#include "common/xfer.h"

#include <openssl/evp.h>
#include <sqlite3.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

_Static_assert(sizeof(float) == 4, "float must be IEEE-754 binary32");
_Static_assert(ROOST_XFER_HASH_BYTES == ROOST_STORE_HASH_LEN,
               "the model hash is the wire's parameter hash");

#define BUSY_TIMEOUT_MS 10000
#define FINGERPRINT_CAP 128
/* Magic prefix of the canonical serialisation of a round (docs/store.md). */
static const char CANON_MAGIC[] = "roost-round-v1";

/* ---------------------------------------------------------------------
 * Schema and migrations. migrations[i] takes the file from version i to
 * i + 1. Steps are append-only: a released step is never edited, since
 * files in the field were built by it.
 * ------------------------------------------------------------------- */
struct migration {
    const char *description;
    const char *sql;
};

static const struct migration migrations[] = {
    {"initial schema: runs, clients, rounds, participants, updates, "
     "metrics, checkpoints",
     "CREATE TABLE schema_migrations ("
     " version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL,"
     " description TEXT NOT NULL);"
     "CREATE TABLE runs ("
     " run_id INTEGER PRIMARY KEY, created_ms INTEGER NOT NULL, name TEXT,"
     " model_spec TEXT NOT NULL, n_params INTEGER NOT NULL"
     " CHECK (n_params > 0), strategy TEXT NOT NULL, config_json TEXT,"
     " dp_json TEXT);"
     "CREATE TABLE clients ("
     " fingerprint TEXT PRIMARY KEY, subject TEXT,"
     " first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL"
     ") WITHOUT ROWID;"
     "CREATE TABLE rounds ("
     " round_id INTEGER PRIMARY KEY CHECK (round_id >= 1),"
     " run_id INTEGER NOT NULL REFERENCES runs(run_id),"
     " kind TEXT NOT NULL CHECK (kind IN ('train', 'eval', 'init')),"
     " state TEXT NOT NULL CHECK (state IN ('committed', 'failed')),"
     " started_ms INTEGER NOT NULL, committed_ms INTEGER NOT NULL,"
     " strategy TEXT NOT NULL,"
     " n_selected INTEGER NOT NULL, n_accepted INTEGER NOT NULL,"
     " n_refused INTEGER NOT NULL, n_dropped INTEGER NOT NULL,"
     " examples INTEGER NOT NULL,"
     " train_loss REAL, train_accuracy REAL, eval_loss REAL,"
     " eval_accuracy REAL,"
     " cdp_noise_multiplier REAL, cdp_clip_norm REAL, cdp_epsilon REAL,"
     " cdp_delta REAL,"
     " n_params INTEGER NOT NULL, model_hash BLOB NOT NULL,"
     " prev_hash BLOB NOT NULL, record_hash BLOB NOT NULL);"
     "CREATE TABLE participants ("
     " round_id INTEGER NOT NULL REFERENCES rounds(round_id),"
     " fingerprint TEXT NOT NULL REFERENCES clients(fingerprint),"
     " status TEXT NOT NULL"
     " CHECK (status IN ('selected', 'updated', 'refused', 'dropped')),"
     " PRIMARY KEY (round_id, fingerprint)) WITHOUT ROWID;"
     "CREATE TABLE updates ("
     " round_id INTEGER NOT NULL REFERENCES rounds(round_id),"
     " seq INTEGER NOT NULL,"
     " fingerprint TEXT NOT NULL REFERENCES clients(fingerprint),"
     " received_ms INTEGER NOT NULL,"
     " accepted INTEGER NOT NULL CHECK (accepted IN (0, 1)),"
     " reason_code INTEGER NOT NULL, reason TEXT, bytes INTEGER NOT NULL,"
     " l2_norm REAL, examples_reported INTEGER NOT NULL,"
     " examples_capped INTEGER NOT NULL, train_loss REAL,"
     " train_accuracy REAL, dp_epsilon REAL, dp_delta REAL,"
     " dp_noise_multiplier REAL, dp_clip_norm REAL, dp_sample_rate REAL,"
     " dp_steps INTEGER,"
     " PRIMARY KEY (round_id, seq)) WITHOUT ROWID;"
     "CREATE INDEX updates_by_client ON updates(fingerprint, round_id);"
     "CREATE TABLE metrics ("
     " round_id INTEGER NOT NULL REFERENCES rounds(round_id),"
     " name TEXT NOT NULL, value REAL,"
     " PRIMARY KEY (round_id, name)) WITHOUT ROWID;"
     "CREATE TABLE checkpoints ("
     " round_id INTEGER PRIMARY KEY REFERENCES rounds(round_id),"
     " model_hash BLOB NOT NULL, n_params INTEGER NOT NULL,"
     " params BLOB NOT NULL);"},
    {"open_round: the coordinator's note of the round in progress; at most "
     "one accepted update per client and round",
     "CREATE TABLE open_round ("
     " id INTEGER PRIMARY KEY CHECK (id = 1),"
     " round_id INTEGER NOT NULL, opened_ms INTEGER NOT NULL,"
     " n_selected INTEGER NOT NULL);"
     "CREATE UNIQUE INDEX updates_one_accepted ON updates(round_id,"
     " fingerprint) WHERE accepted = 1;"},
    {"strategy_state: the server optimiser's state (momentum, Adam moments, "
     "adaptive clip) after a round, so a restart resumes it",
     "CREATE TABLE strategy_state ("
     " round_id INTEGER PRIMARY KEY REFERENCES rounds(round_id),"
     " sha256 BLOB NOT NULL, state BLOB NOT NULL);"},
    {"crl_numbers: the highest cRLNumber of each CRL issuer in force, so "
     "that a restart refuses an older CRL",
     "CREATE TABLE crl_numbers ("
     " issuer_key BLOB PRIMARY KEY CHECK (length(issuer_key) = 32),"
     " issuer TEXT NOT NULL,"
     " crl_number TEXT NOT NULL CHECK (length(crl_number) BETWEEN 1 AND 40),"
     " crl_sha256 BLOB NOT NULL CHECK (length(crl_sha256) = 32),"
     " recorded_ms INTEGER NOT NULL) WITHOUT ROWID;"},
};

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) ==
                   ROOST_STORE_SCHEMA_VERSION,
               "one migration step per schema version");

/* ---------------------------------------------------------------------
 * Prepared statements kept on the handle.
 * ------------------------------------------------------------------- */
#define ROUND_COLS                                                             \
    "round_id, run_id, kind, state, started_ms, committed_ms, strategy,"       \
    " n_selected, n_accepted, n_refused, n_dropped, examples, train_loss,"     \
    " train_accuracy, eval_loss, eval_accuracy, cdp_noise_multiplier,"         \
    " cdp_clip_norm, cdp_epsilon, cdp_delta, n_params, model_hash, prev_hash"

#define UPDATE_COLS                                                            \
    "seq, fingerprint, received_ms, accepted, reason_code, reason, bytes,"     \
    " l2_norm, examples_reported, examples_capped, train_loss,"                \
    " train_accuracy, dp_epsilon, dp_delta, dp_noise_multiplier,"              \
    " dp_clip_norm, dp_sample_rate, dp_steps"

enum stmt_id {
    ST_HEAD,
    ST_RUN_NPARAMS,
    ST_INSERT_RUN,
    ST_GET_RUN,
    ST_UPSERT_CLIENT,
    ST_COUNT_CLIENTS,
    ST_INSERT_ROUND,
    ST_INSERT_PARTICIPANT,
    ST_INSERT_UPDATE,
    ST_INSERT_METRIC,
    ST_INSERT_CHECKPOINT,
    ST_RETENTION,
    ST_SET_RECORD_HASH,
    ST_CLEAR_OPEN,
    ST_NOTE_OPEN,
    ST_GET_OPEN,
    ST_CANON_ROUND,
    ST_CANON_RUN,
    ST_CANON_PARTICIPANTS,
    ST_CANON_UPDATES,
    ST_CANON_METRICS,
    ST_CHECKPOINT_INFO,
    ST_LIST_ROUNDS,
    ST_ROUND_METRICS,
    ST_RECORD_HASH,
    ST_EPSILON,
    ST_EPSILON_ROUND,
    ST_SYNC_NORMAL,
    ST_SYNC_FULL,
    ST_COUNT_KIND,
    ST_INSERT_STRATEGY,
    ST_PRUNE_STRATEGY,
    ST_GET_STRATEGY,
    ST_GET_CRL,
    ST_PUT_CRL,
    ST_COUNT_
};

static const char *const stmt_sql[ST_COUNT_] = {
    [ST_HEAD] = "SELECT r.round_id, r.run_id, r.state, r.model_hash,"
                " r.n_params, r.record_hash,"
                " (SELECT max(c.round_id) FROM checkpoints c"
                "  WHERE c.model_hash = r.model_hash)"
                " FROM rounds r ORDER BY r.round_id DESC LIMIT 1",
    [ST_RUN_NPARAMS] = "SELECT n_params FROM runs WHERE run_id = ?1",
    [ST_INSERT_RUN] = "INSERT INTO runs (created_ms, name, model_spec,"
                      " n_params, strategy, config_json, dp_json)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_GET_RUN] = "SELECT run_id, created_ms, name, model_spec, n_params,"
                   " strategy, config_json, dp_json FROM runs"
                   " WHERE ?1 = 0 OR run_id = ?1"
                   " ORDER BY run_id DESC LIMIT 1",
    [ST_UPSERT_CLIENT] =
        "INSERT INTO clients (fingerprint, subject, first_seen_ms,"
        " last_seen_ms) VALUES (?1, ?2, ?3, ?3)"
        " ON CONFLICT (fingerprint) DO UPDATE SET"
        " first_seen_ms = min(first_seen_ms, excluded.first_seen_ms),"
        " last_seen_ms = max(last_seen_ms, excluded.last_seen_ms),"
        " subject = coalesce(excluded.subject, subject)",
    [ST_COUNT_CLIENTS] = "SELECT count(*) FROM clients",
    [ST_INSERT_ROUND] =
        "INSERT INTO rounds (" ROUND_COLS ", record_hash) VALUES (?1, ?2, ?3,"
        " ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,"
        " ?18, ?19, ?20, ?21, ?22, ?23, zeroblob(32))",
    [ST_INSERT_PARTICIPANT] = "INSERT INTO participants (round_id,"
                              " fingerprint, status) VALUES (?1, ?2, ?3)",
    [ST_INSERT_UPDATE] =
        "INSERT INTO updates (round_id, " UPDATE_COLS ") VALUES (?1, ?2, ?3,"
        " ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,"
        " ?18, ?19)",
    [ST_INSERT_METRIC] =
        "INSERT INTO metrics (round_id, name, value) VALUES (?1, ?2, ?3)",
    [ST_INSERT_CHECKPOINT] = "INSERT INTO checkpoints (round_id, model_hash,"
                             " n_params, params) VALUES (?1, ?2, ?3, ?4)",
    [ST_RETENTION] = "DELETE FROM checkpoints WHERE round_id NOT IN"
                     " (SELECT round_id FROM checkpoints"
                     "  ORDER BY round_id DESC LIMIT ?1)"
                     " AND (?2 = 0 OR round_id % ?2 != 0)",
    [ST_SET_RECORD_HASH] =
        "UPDATE rounds SET record_hash = ?2 WHERE round_id = ?1",
    [ST_CLEAR_OPEN] = "DELETE FROM open_round WHERE round_id <= ?1",
    [ST_NOTE_OPEN] = "INSERT OR REPLACE INTO open_round (id, round_id,"
                     " opened_ms, n_selected) VALUES (1, ?1, ?2, ?3)",
    [ST_GET_OPEN] = "SELECT round_id, opened_ms, n_selected FROM open_round"
                    " WHERE id = 1",
    [ST_CANON_ROUND] = "SELECT " ROUND_COLS " FROM rounds WHERE round_id = ?1",
    [ST_CANON_RUN] = "SELECT run_id, created_ms, name, model_spec, n_params,"
                     " strategy, config_json, dp_json FROM runs"
                     " WHERE run_id = ?1",
    [ST_CANON_PARTICIPANTS] = "SELECT fingerprint, status FROM participants"
                              " WHERE round_id = ?1 ORDER BY fingerprint",
    [ST_CANON_UPDATES] = "SELECT " UPDATE_COLS " FROM updates"
                         " WHERE round_id = ?1 ORDER BY seq",
    [ST_CANON_METRICS] = "SELECT name, value FROM metrics WHERE round_id = ?1"
                         " ORDER BY name",
    [ST_CHECKPOINT_INFO] =
        "SELECT c.n_params, length(c.params), r.model_hash, c.model_hash"
        " FROM checkpoints c JOIN rounds r ON r.round_id = c.round_id"
        " WHERE c.round_id = ?1",
    [ST_LIST_ROUNDS] = "SELECT " ROUND_COLS ", record_hash FROM rounds"
                       " WHERE round_id >= ?1 ORDER BY round_id LIMIT ?2",
    [ST_ROUND_METRICS] = "SELECT name, value FROM metrics WHERE round_id = ?1"
                         " ORDER BY name",
    [ST_RECORD_HASH] = "SELECT record_hash FROM rounds WHERE round_id = ?1",
    [ST_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
    [ST_SYNC_FULL] = "PRAGMA synchronous = FULL",
    [ST_COUNT_KIND] = "SELECT count(*) FROM rounds WHERE kind = ?1",
    [ST_INSERT_STRATEGY] = "INSERT INTO strategy_state (round_id, sha256,"
                           " state) VALUES (?1, ?2, ?3)",
    /* Only the newest state is ever resumed from. */
    [ST_PRUNE_STRATEGY] = "DELETE FROM strategy_state WHERE round_id < ?1",
    [ST_GET_STRATEGY] = "SELECT round_id, sha256, state FROM strategy_state"
                        " ORDER BY round_id DESC LIMIT 1",
    [ST_GET_CRL] = "SELECT issuer, crl_number, crl_sha256, recorded_ms"
                   " FROM crl_numbers WHERE issuer_key = ?1",
    [ST_PUT_CRL] = "INSERT OR REPLACE INTO crl_numbers (issuer_key, issuer,"
                   " crl_number, crl_sha256, recorded_ms)"
                   " VALUES (?1, ?2, ?3, ?4, ?5)",
    /* Per round: each client's last report in that round. Overall (?1 =
     * 0): each client's latest report across rounds. Sorted ascending. */
    [ST_EPSILON] =
        "SELECT dp_epsilon FROM (SELECT dp_epsilon, row_number() OVER"
        " (PARTITION BY fingerprint ORDER BY round_id DESC, seq DESC) AS rn"
        " FROM updates WHERE dp_epsilon IS NOT NULL"
        " AND (?1 = 0 OR round_id = ?1)) WHERE rn = 1 ORDER BY dp_epsilon",
    /* The same for one round, as its own statement so SQLite uses the
     * (round_id, seq) key instead of scanning every update (the OR above
     * defeats the index: 38 ms vs 0.14 ms per round at 100 rounds). */
    [ST_EPSILON_ROUND] =
        "SELECT dp_epsilon FROM (SELECT dp_epsilon, row_number() OVER"
        " (PARTITION BY fingerprint ORDER BY seq DESC) AS rn"
        " FROM updates WHERE round_id = ?1 AND dp_epsilon IS NOT NULL)"
        " WHERE rn = 1 ORDER BY dp_epsilon",
};

struct roost_store {
    sqlite3 *db;
    sqlite3_stmt *stmt[ST_COUNT_];
    bool readonly;
    int version;
    uint32_t keep_last, keep_every;
    roost_store_hook_fn hook;
    void *hook_arg;
};

/* ---------------------------------------------------------------------
 * Small helpers.
 * ------------------------------------------------------------------- */
static int64_t
now_ms(void)
{
    return roost_clock_ms(CLOCK_REALTIME);
}

static bool
host_is_little_endian(void)
{
    const uint32_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    return first == 1;
}

static int
sql_fail(roost_store *s, roost_errmsg *em, const char *what)
{
    return roost_fail(em, ROOST_ESTORE, "%s: %s", what,
                      s->db != NULL ? sqlite3_errmsg(s->db) : "no database");
}

static void
hook(roost_store *s, int point)
{
    if (s->hook != NULL)
        s->hook(s->hook_arg, point);
}

static void
stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Step a statement that returns no rows, then reset it. */
static int
exec_stmt(roost_store *s, sqlite3_stmt *st, roost_errmsg *em, const char *what)
{
    int rc = sqlite3_step(st);
    int err = ROOST_OK;
    if (rc != SQLITE_DONE) {
        if ((rc & 0xff) == SQLITE_CONSTRAINT &&
            (sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_PRIMARYKEY ||
             sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_UNIQUE))
            err = roost_fail(em, ROOST_EDUPLICATE, "%s: %s", what,
                             sqlite3_errmsg(s->db));
        else
            err = sql_fail(s, em, what);
    }
    stmt_done(st);
    return err;
}

static int
exec_sql(roost_store *s, const char *sql, roost_errmsg *em)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int err = roost_fail(em, ROOST_ESTORE, "%s: %s", sql,
                             msg != NULL ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return err;
    }
    return ROOST_OK;
}

/* Bind a large blob (a checkpoint, a strategy state) of len bytes, or say
 * what was too big and the limit. Unchecked, SQLite would refuse the bind
 * (SQLITE_TOOBIG) and leave the parameter NULL, which surfaces only at the
 * step as a NOT NULL failure naming no size. The statement is reset on
 * failure, as after a failed step. */
static int
bind_blob_or_fail(roost_store *s, sqlite3_stmt *st, int idx, const void *p,
                  size_t len, const char *what, roost_errmsg *em)
{
    size_t max = roost_store_max_value_bytes(s);
    int rc = len <= max ? sqlite3_bind_blob64(st, idx, p, (sqlite3_uint64)len,
                                              SQLITE_STATIC)
                        : SQLITE_TOOBIG;
    if (rc == SQLITE_OK)
        return ROOST_OK;
    stmt_done(st);
    if (rc == SQLITE_TOOBIG)
        return roost_fail(em, ROOST_ETOOBIG,
                          "%s of %zu bytes exceeds the store's value limit of "
                          "%zu bytes (SQLite's SQLITE_LIMIT_LENGTH less room "
                          "for the row)",
                          what, len, max);
    return sql_fail(s, em, what);
}

static void
bind_double_or_null(sqlite3_stmt *st, int idx, double v)
{
    if (isfinite(v))
        sqlite3_bind_double(st, idx, v);
    else
        sqlite3_bind_null(st, idx);
}

static void
bind_text_or_null(sqlite3_stmt *st, int idx, const char *text)
{
    if (text != NULL)
        sqlite3_bind_text(st, idx, text, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, idx);
}

static double
column_double_or_nan(sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return NAN;
    return sqlite3_column_double(st, col);
}

static void
column_hash(sqlite3_stmt *st, int col, uint8_t out[ROOST_STORE_HASH_LEN])
{
    const void *p = sqlite3_column_blob(st, col);
    int len = sqlite3_column_bytes(st, col);
    memset(out, 0, ROOST_STORE_HASH_LEN);
    if (p != NULL && len == ROOST_STORE_HASH_LEN)
        memcpy(out, p, ROOST_STORE_HASH_LEN);
}

static void
column_text_copy(sqlite3_stmt *st, int col, char *out, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(out, cap, "%s", t != NULL ? (const char *)t : "");
}

static bool
valid_fingerprint(const char *fp)
{
    if (fp == NULL || fp[0] == '\0')
        return false;
    size_t n = 0;
    for (const char *p = fp; *p != '\0'; p++, n++)
        if (*p < 0x21 || *p > 0x7e || n >= FINGERPRINT_CAP)
            return false;
    return true;
}

static bool
valid_metric_name(const char *name)
{
    if (name == NULL || name[0] == '\0')
        return false;
    size_t n = 0;
    for (const char *p = name; *p != '\0'; p++, n++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
        if (!ok || n + 1 >= ROOST_STORE_METRIC_NAME_CAP)
            return false;
    }
    return true;
}

static const char *const participant_status_text[] = {"selected", "updated",
                                                      "refused", "dropped"};

void
roost_store_hex(const uint8_t hash[ROOST_STORE_HASH_LEN], char out[65])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < ROOST_STORE_HASH_LEN; i++) {
        out[2 * i] = digits[hash[i] >> 4];
        out[2 * i + 1] = digits[hash[i] & 15];
    }
    out[64] = '\0';
}

/* ---------------------------------------------------------------------
 * Model hash: SHA-256 of the parameters as little-endian float32, and
 * the conversion to that byte order for checkpoints on big-endian hosts.
 * ------------------------------------------------------------------- */
static void
floats_to_le(const float *in, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &in[i], 4);
        out[4 * i] = (unsigned char)(bits & 0xff);
        out[4 * i + 1] = (unsigned char)((bits >> 8) & 0xff);
        out[4 * i + 2] = (unsigned char)((bits >> 16) & 0xff);
        out[4 * i + 3] = (unsigned char)(bits >> 24);
    }
}

int
roost_store_model_hash(const float *params, size_t n,
                       uint8_t out[ROOST_STORE_HASH_LEN])
{
    /* The same parameter hash as the wire's (docs/wire.md), so the hash in
     * a task and in the record of the round that produced it agree. */
    return roost_xfer_hash_floats(params, n, out);
}

/* ---------------------------------------------------------------------
 * Canonical serialisation of a round, fed straight into SHA-256.
 * Each value: a type byte, then 'I' 8-byte big-endian two's complement
 * integer, 'F' 8-byte big-endian IEEE-754 binary64, 'T'/'B' 4-byte
 * big-endian length and the bytes, 'N' nothing (NULL). Rows start with 'r';
 * sections are tagged and closed with 'e'.
 * ------------------------------------------------------------------- */
typedef struct canon {
    EVP_MD_CTX *ctx;
    bool ok;
} canon;

static void
canon_bytes(canon *c, const void *p, size_t n)
{
    if (c->ok && n > 0)
        c->ok = EVP_DigestUpdate(c->ctx, p, n) == 1;
}

static void
canon_u64(canon *c, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (56 - 8 * i));
    canon_bytes(c, b, 8);
}

static void
canon_tag(canon *c, char tag)
{
    unsigned char t = (unsigned char)tag;
    canon_bytes(c, &t, 1);
}

/* Serialise every column of the current row by its stored type. */
static void
canon_row(canon *c, sqlite3_stmt *st)
{
    canon_tag(c, 'r');
    int ncol = sqlite3_column_count(st);
    for (int col = 0; col < ncol; col++) {
        switch (sqlite3_column_type(st, col)) {
        case SQLITE_INTEGER:
            canon_tag(c, 'I');
            canon_u64(c, (uint64_t)sqlite3_column_int64(st, col));
            break;
        case SQLITE_FLOAT: {
            double d = sqlite3_column_double(st, col);
            uint64_t bits;
            memcpy(&bits, &d, 8);
            canon_tag(c, 'F');
            canon_u64(c, bits);
            break;
        }
        case SQLITE_TEXT:
        case SQLITE_BLOB: {
            bool text = sqlite3_column_type(st, col) == SQLITE_TEXT;
            const void *p = text ? (const void *)sqlite3_column_text(st, col)
                                 : sqlite3_column_blob(st, col);
            size_t n = (size_t)sqlite3_column_bytes(st, col);
            unsigned char len[4] = {(unsigned char)(n >> 24),
                                    (unsigned char)(n >> 16),
                                    (unsigned char)(n >> 8), (unsigned char)n};
            canon_tag(c, text ? 'T' : 'B');
            canon_bytes(c, len, 4);
            canon_bytes(c, p, n);
            break;
        }
        default:
            canon_tag(c, 'N');
            break;
        }
    }
}

/* Serialise the rows of one statement (bound to round_id) as a section.
 * *n_rows receives the row count. Returns ROOST_OK or ROOST_ESTORE. */
static int
canon_section(roost_store *s, canon *c, enum stmt_id id, char tag, int64_t key,
              int64_t *n_rows, roost_errmsg *em)
{
    sqlite3_stmt *st = s->stmt[id];
    sqlite3_bind_int64(st, 1, key);
    canon_tag(c, tag);
    int64_t rows = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        canon_row(c, st);
        rows++;
    }
    canon_tag(c, 'e');
    stmt_done(st);
    if (rc != SQLITE_DONE)
        return sql_fail(s, em, "reading a round's rows");
    if (n_rows != NULL)
        *n_rows = rows;
    return ROOST_OK;
}

/*
 * hash_round - record hash of round_id given the previous record hash:
 * SHA-256(prev || canon). The round row is read first; its run_id selects
 * the run row. ROOST_ENOENT when the round row does not exist.
 */
static int
hash_round(roost_store *s, int64_t round_id,
           const uint8_t prev[ROOST_STORE_HASH_LEN],
           uint8_t out[ROOST_STORE_HASH_LEN], roost_errmsg *em)
{
    canon c = {EVP_MD_CTX_new(), true};
    if (c.ctx == NULL)
        return roost_fail(em, ROOST_ENOMEM, "hash context");
    int err = ROOST_OK;
    c.ok = EVP_DigestInit_ex(c.ctx, EVP_sha256(), NULL) == 1;
    canon_bytes(&c, prev, ROOST_STORE_HASH_LEN);
    canon_bytes(&c, CANON_MAGIC, sizeof(CANON_MAGIC) - 1);

    int64_t rows = 0, run_id = 0;
    sqlite3_stmt *st = s->stmt[ST_CANON_ROUND];
    sqlite3_bind_int64(st, 1, round_id);
    canon_tag(&c, 'R');
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        canon_row(&c, st);
        run_id = sqlite3_column_int64(st, 1);
        rows = 1;
    }
    canon_tag(&c, 'e');
    stmt_done(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = sql_fail(s, em, "reading a round");
    else if (rows == 0)
        err = roost_fail(em, ROOST_ENOENT, "round %lld does not exist",
                         (long long)round_id);
    if (err == ROOST_OK)
        err = canon_section(s, &c, ST_CANON_RUN, 'C', run_id, NULL, em);
    if (err == ROOST_OK)
        err = canon_section(s, &c, ST_CANON_PARTICIPANTS, 'P', round_id, NULL,
                            em);
    if (err == ROOST_OK)
        err = canon_section(s, &c, ST_CANON_UPDATES, 'U', round_id, NULL, em);
    if (err == ROOST_OK)
        err = canon_section(s, &c, ST_CANON_METRICS, 'M', round_id, NULL, em);
    canon_tag(&c, 'E');
    unsigned int len = 0;
    if (err == ROOST_OK &&
        !(c.ok && EVP_DigestFinal_ex(c.ctx, out, &len) == 1 && len == 32))
        err = roost_fail(em, ROOST_ECRYPTO, "SHA-256 failed");
    EVP_MD_CTX_free(c.ctx);
    return err;
}

/* ---------------------------------------------------------------------
 * Open, migrate, close.
 * ------------------------------------------------------------------- */
void
roost_store_options_init(roost_store_options *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->keep_last = 3;
    opt->keep_every = 10;
}

static int
pragma_int(roost_store *s, const char *sql, int64_t *out, roost_errmsg *em)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s, em, sql);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return sql_fail(s, em, sql);
    return ROOST_OK;
}

/* Apply migrations[from..to-1], each in its own IMMEDIATE transaction that
 * re-reads the version first, so two processes opening an old file at
 * once migrate it exactly once. */
static int
migrate(roost_store *s, int to, roost_errmsg *em)
{
    for (int v = 1; v <= to; v++) {
        int err = exec_sql(s, "BEGIN IMMEDIATE", em);
        if (err != ROOST_OK)
            return err;
        int64_t cur = 0;
        err = pragma_int(s, "PRAGMA user_version", &cur, em);
        if (err == ROOST_OK && cur < v) {
            char sql[160];
            err = exec_sql(s, migrations[v - 1].sql, em);
            if (err == ROOST_OK && v == 1) {
                snprintf(sql, sizeof(sql), "PRAGMA application_id = %ld",
                         (long)ROOST_STORE_APPLICATION_ID);
                err = exec_sql(s, sql, em);
            }
            if (err == ROOST_OK) {
                snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v);
                err = exec_sql(s, sql, em);
            }
            if (err == ROOST_OK) {
                sqlite3_stmt *st = NULL;
                if (sqlite3_prepare_v2(s->db,
                                       "INSERT INTO schema_migrations"
                                       " VALUES (?1, ?2, ?3)",
                                       -1, &st, NULL) != SQLITE_OK) {
                    err = sql_fail(s, em, "recording a migration");
                } else {
                    sqlite3_bind_int(st, 1, v);
                    sqlite3_bind_int64(st, 2, now_ms());
                    sqlite3_bind_text(st, 3, migrations[v - 1].description, -1,
                                      SQLITE_STATIC);
                    if (sqlite3_step(st) != SQLITE_DONE)
                        err = sql_fail(s, em, "recording a migration");
                    sqlite3_finalize(st);
                }
            }
        }
        if (err == ROOST_OK)
            err = exec_sql(s, "COMMIT", em);
        if (err != ROOST_OK) {
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return err;
        }
    }
    return ROOST_OK;
}

/* Check the file is ours and of a version we can use; migrate when it is
 * older and writable. */
/* The oldest schema a read-only handle opens without migrating it. Version
 * 4 added crl_numbers, which only roost serve reads (its statements stay
 * NULL on an older file and the calls say ROOST_ENOTSUP); version 3 added
 * strategy_state, which roost report and status read. */
#define READ_AS_IS_VERSION 3

static int
check_schema(roost_store *s, const char *path, int target, roost_errmsg *em)
{
    int64_t app = 0, ver = 0, n_objects = 0;
    int err = pragma_int(s, "PRAGMA application_id", &app, em);
    if (err != ROOST_OK)
        return roost_fail(em, ROOST_ESTORE,
                          "%s cannot be read as a SQLite database: %s", path,
                          sqlite3_errmsg(s->db));
    if (err == ROOST_OK)
        err = pragma_int(s, "PRAGMA user_version", &ver, em);
    if (err == ROOST_OK)
        err =
            pragma_int(s, "SELECT count(*) FROM sqlite_schema", &n_objects, em);
    if (err != ROOST_OK)
        return err;
    if (app != ROOST_STORE_APPLICATION_ID && (app != 0 || n_objects > 0))
        return roost_fail(em, ROOST_ESTORE,
                          "%s is not a Roost coordinator database "
                          "(application_id 0x%llx, %lld schema objects)",
                          path, (unsigned long long)app, (long long)n_objects);
    if (ver > ROOST_STORE_SCHEMA_VERSION)
        return roost_fail(em, ROOST_ENOTSUP,
                          "%s has schema version %lld, newer than the "
                          "version %d this roost %s understands; use a newer "
                          "roost",
                          path, (long long)ver, ROOST_STORE_SCHEMA_VERSION,
                          roost_version_string());
    /* A reader takes a file as old as READ_AS_IS_VERSION as it is: later
     * versions only added what no reader uses, and an archived record
     * must stay readable (roost audit) without writing to it. */
    if (ver < target && s->readonly && ver >= READ_AS_IS_VERSION &&
        target == ROOST_STORE_SCHEMA_VERSION) {
        s->version = (int)ver;
        return ROOST_OK;
    }
    if (ver < target) {
        if (s->readonly)
            return roost_fail(em, ROOST_ENOTSUP,
                              "%s has schema version %lld and needs migrating "
                              "to version %d; open it once for writing (roost "
                              "serve) to migrate",
                              path, (long long)ver, target);
        err = migrate(s, target, em);
        if (err != ROOST_OK)
            return err;
        ver = target;
    }
    s->version = (int)ver;
    return ROOST_OK;
}

int
roost_store_open(roost_store **out, const char *path, unsigned flags,
                 roost_errmsg *em)
{
    roost_store_options opt;
    roost_store_options_init(&opt);
    opt.flags = flags;
    return roost_store_open_ex(out, path, &opt, em);
}

int
roost_store_open_ex(roost_store **out, const char *path,
                    const roost_store_options *opt, roost_errmsg *em)
{
    if (out == NULL)
        return roost_fail(em, ROOST_EINVAL, "store: out is NULL");
    *out = NULL;
    if (path == NULL || opt == NULL)
        return roost_fail(em, ROOST_EINVAL, "store: path or options NULL");
    if (opt->keep_last < 1)
        return roost_fail(em, ROOST_EINVAL,
                          "store: keep_last must be at least 1 (the model to "
                          "resume from is always kept)");
    if (opt->schema_version < 0 ||
        opt->schema_version > ROOST_STORE_SCHEMA_VERSION)
        return roost_fail(em, ROOST_EINVAL,
                          "store: schema version %d is not 1..%d",
                          opt->schema_version, ROOST_STORE_SCHEMA_VERSION);
    bool readonly = (opt->flags & ROOST_STORE_READONLY) != 0;
    bool create = (opt->flags & ROOST_STORE_CREATE) != 0;
    if (readonly && create)
        return roost_fail(em, ROOST_EINVAL,
                          "store: CREATE and READONLY exclude each other");
    struct stat sb;
    if (!create && stat(path, &sb) != 0)
        return roost_fail(em, errno == ENOENT ? ROOST_ENOENT : ROOST_EIO,
                          "%s: %s", path, strerror(errno));

    roost_store *s = roost_alloc_calloc(NULL, 1, sizeof(*s));
    if (s == NULL)
        return roost_fail(em, ROOST_ENOMEM, "store: out of memory");
    s->readonly = readonly;
    s->keep_last = opt->keep_last;
    s->keep_every = opt->keep_every;

    int oflags =
        SQLITE_OPEN_NOMUTEX |
        (readonly ? SQLITE_OPEN_READONLY
                  : SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0));
    int err = ROOST_OK;
    if (sqlite3_open_v2(path, &s->db, oflags, NULL) != SQLITE_OK) {
        err = roost_fail(em, ROOST_ESTORE, "%s: %s", path,
                         s->db != NULL ? sqlite3_errmsg(s->db) : "cannot open");
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    /* A tampered file may carry triggers or views; never run SQL functions
     * with side effects from its schema. */
    sqlite3_db_config(s->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
    sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    err = exec_sql(s, "PRAGMA foreign_keys = ON", em);
    if (err == ROOST_OK && !readonly) {
        /* 64 KiB pages (takes effect only when the file is created): the
         * file is mostly checkpoint BLOBs, which then span 16x fewer
         * overflow pages to write, chain-walk on delete and read on
         * resume; bench_store measured commits ~2x faster than with 4 KiB
         * pages. A cache that holds a whole checkpoint keeps SQLite from
         * spilling it to the WAL mid-transaction; the WAL is trimmed back
         * to 64 MiB after checkpoints. */
        err = exec_sql(s, "PRAGMA page_size = 65536", em);
        if (err == ROOST_OK)
            err = exec_sql(s, "PRAGMA cache_size = -65536", em);
        if (err == ROOST_OK)
            err = exec_sql(s, "PRAGMA journal_size_limit = 67108864", em);
        /* WAL: readers (status, audit) never block the coordinator.
         * synchronous=FULL: a committed round survives power loss. */
        sqlite3_stmt *st = NULL;
        if (err != ROOST_OK ||
            sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st,
                               NULL) != SQLITE_OK ||
            sqlite3_step(st) != SQLITE_ROW ||
            sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") !=
                0)
            err = roost_fail(em, ROOST_ESTORE,
                             "%s: cannot switch to WAL mode: %s", path,
                             sqlite3_errmsg(s->db));
        sqlite3_finalize(st);
        if (err == ROOST_OK)
            err = exec_sql(s, "PRAGMA synchronous = FULL", em);
    }
    if (err == ROOST_OK) {
        int target = opt->schema_version != 0 ? opt->schema_version
                                              : ROOST_STORE_SCHEMA_VERSION;
        err = check_schema(s, path, target, em);
    }
    if (err != ROOST_OK)
        goto fail;
    /* Statements for tables a tool-requested older schema lacks stay NULL. */
    for (int i = 0; i < ST_COUNT_; i++) {
        if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1,
                               SQLITE_PREPARE_PERSISTENT, &s->stmt[i],
                               NULL) != SQLITE_OK) {
            if (s->version < ROOST_STORE_SCHEMA_VERSION)
                continue;
            err = roost_fail(em, ROOST_ESTORE, "%s: preparing statement %d: %s",
                             path, i, sqlite3_errmsg(s->db));
            goto fail;
        }
    }
    *out = s;
    return ROOST_OK;
fail:
    roost_store_close(s);
    return err;
}

void
roost_store_close(roost_store *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < ST_COUNT_; i++)
        sqlite3_finalize(s->stmt[i]);
    sqlite3_close(s->db);
    roost_alloc_free(NULL, s);
}

int
roost_store_schema_version(const roost_store *s)
{
    return s->version;
}

void
roost_store_set_test_hook(roost_store *s, roost_store_hook_fn fn, void *arg)
{
    s->hook = fn;
    s->hook_arg = arg;
}

/* SQLITE_LIMIT_LENGTH bounds a whole row as well as each value, so the
 * largest checkpoint or strategy state is the limit less room for the
 * row's other columns: a round id, a 32-byte hash, a count and the record
 * header, well under 128 bytes. */
#define ROW_ALLOWANCE 256

size_t
roost_store_max_value_bytes(roost_store *s)
{
    int limit = sqlite3_limit(s->db, SQLITE_LIMIT_LENGTH, -1);
    return limit > ROW_ALLOWANCE ? (size_t)limit - ROW_ALLOWANCE : 0;
}

void
roost_store_set_sqlite_length_limit_for_testing(roost_store *s, int bytes)
{
    sqlite3_limit(s->db, SQLITE_LIMIT_LENGTH, bytes);
}

/* A statement that the schema of this handle lacks (an older schema
 * opened by a tool) refuses the operation rather than crashing. */
static int
need_stmt(roost_store *s, enum stmt_id id, roost_errmsg *em)
{
    if (s->stmt[id] == NULL)
        return roost_fail(em, ROOST_ENOTSUP,
                          "operation needs schema version %d (file is %d)",
                          ROOST_STORE_SCHEMA_VERSION, s->version);
    return ROOST_OK;
}

/* ---------------------------------------------------------------------
 * Runs and clients.
 * ------------------------------------------------------------------- */
int
roost_store_add_run(roost_store *s, const roost_store_run *run, int64_t *run_id,
                    roost_errmsg *em)
{
    if (run == NULL || run->model_spec == NULL || run->strategy == NULL ||
        run->n_params == 0 || run->n_params > (uint64_t)INT64_MAX)
        return roost_fail(em, ROOST_EINVAL,
                          "run: model_spec, strategy and n_params >= 1 are "
                          "required");
    sqlite3_stmt *st = s->stmt[ST_INSERT_RUN];
    sqlite3_bind_int64(st, 1, run->created_ms ? run->created_ms : now_ms());
    bind_text_or_null(st, 2, run->name);
    bind_text_or_null(st, 3, run->model_spec);
    sqlite3_bind_int64(st, 4, (int64_t)run->n_params);
    bind_text_or_null(st, 5, run->strategy);
    bind_text_or_null(st, 6, run->config_json);
    bind_text_or_null(st, 7, run->dp_json);
    int err = exec_stmt(s, st, em, "inserting a run");
    if (err == ROOST_OK && run_id != NULL)
        *run_id = sqlite3_last_insert_rowid(s->db);
    return err;
}

static char *
dup_column(sqlite3_stmt *st, int col, bool *oom)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return NULL;
    const unsigned char *t = sqlite3_column_text(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    char *copy = roost_alloc_malloc(NULL, n + 1);
    if (copy == NULL) {
        *oom = true;
        return NULL;
    }
    memcpy(copy, t, n);
    copy[n] = '\0';
    return copy;
}

void
roost_store_run_info_free(roost_store_run_info *info)
{
    if (info == NULL)
        return;
    roost_alloc_free(NULL, info->name);
    roost_alloc_free(NULL, info->model_spec);
    roost_alloc_free(NULL, info->strategy);
    roost_alloc_free(NULL, info->config_json);
    roost_alloc_free(NULL, info->dp_json);
    roost_alloc_free(NULL, info);
}

int
roost_store_get_run(roost_store *s, int64_t run_id, roost_store_run_info **out,
                    roost_errmsg *em)
{
    *out = NULL;
    sqlite3_stmt *st = s->stmt[ST_GET_RUN];
    sqlite3_bind_int64(st, 1, run_id);
    int rc = sqlite3_step(st);
    int err = ROOST_OK;
    if (rc == SQLITE_ROW) {
        roost_store_run_info *info = roost_alloc_calloc(NULL, 1, sizeof(*info));
        bool oom = info == NULL;
        if (info != NULL) {
            info->run_id = sqlite3_column_int64(st, 0);
            info->created_ms = sqlite3_column_int64(st, 1);
            info->name = dup_column(st, 2, &oom);
            info->model_spec = dup_column(st, 3, &oom);
            info->n_params = (uint64_t)sqlite3_column_int64(st, 4);
            info->strategy = dup_column(st, 5, &oom);
            info->config_json = dup_column(st, 6, &oom);
            info->dp_json = dup_column(st, 7, &oom);
        }
        if (oom) {
            roost_store_run_info_free(info);
            err = roost_fail(em, ROOST_ENOMEM, "run: out of memory");
        } else {
            *out = info;
        }
    } else if (rc == SQLITE_DONE) {
        err = roost_fail(em, ROOST_ENOENT, "no run %lld in the store",
                         (long long)run_id);
    } else {
        err = sql_fail(s, em, "reading a run");
    }
    stmt_done(st);
    return err;
}

static int
upsert_client(roost_store *s, const char *fingerprint, const char *subject,
              int64_t seen_ms, roost_errmsg *em)
{
    sqlite3_stmt *st = s->stmt[ST_UPSERT_CLIENT];
    sqlite3_bind_text(st, 1, fingerprint, -1, SQLITE_TRANSIENT);
    bind_text_or_null(st, 2, subject);
    sqlite3_bind_int64(st, 3, seen_ms);
    return exec_stmt(s, st, em, "recording a client");
}

/*
 * Writes outside a round (client check-ins, the open-round note) are
 * bookkeeping the chain does not depend on, and happen once per client
 * per round: they commit with synchronous=NORMAL, which in WAL mode is
 * atomic but skips the fsync, so a check-in costs microseconds instead of
 * a disk flush. The next round commit (synchronous=FULL) syncs the WAL and
 * with it these earlier frames; a crash before that may lose them, never
 * corrupt the file.
 */
static int
relaxed_write(roost_store *s, sqlite3_stmt *st, roost_errmsg *em,
              const char *what)
{
    sqlite3_step(s->stmt[ST_SYNC_NORMAL]);
    sqlite3_reset(s->stmt[ST_SYNC_NORMAL]);
    int err = exec_stmt(s, st, em, what);
    /* Round commits must not run relaxed: if the prepared pragma fails
     * (SQLite re-prepares it on each step), set it afresh, and if that
     * fails too, say so rather than go on without the fsync. */
    int rc = sqlite3_step(s->stmt[ST_SYNC_FULL]);
    sqlite3_reset(s->stmt[ST_SYNC_FULL]);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW &&
        sqlite3_exec(s->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL) !=
            SQLITE_OK &&
        err == ROOST_OK)
        return sql_fail(s, em, "restoring synchronous = FULL");
    return err;
}

int
roost_store_upsert_client(roost_store *s, const char *fingerprint,
                          const char *subject, int64_t seen_ms,
                          roost_errmsg *em)
{
    if (!valid_fingerprint(fingerprint))
        return roost_fail(em, ROOST_EINVAL,
                          "client fingerprint must be 1..%d printable ASCII "
                          "characters",
                          FINGERPRINT_CAP);
    if (s->readonly)
        return roost_fail(em, ROOST_ESTATE, "store opened read-only");
    sqlite3_stmt *st = s->stmt[ST_UPSERT_CLIENT];
    sqlite3_bind_text(st, 1, fingerprint, -1, SQLITE_TRANSIENT);
    bind_text_or_null(st, 2, subject);
    sqlite3_bind_int64(st, 3, seen_ms ? seen_ms : now_ms());
    return relaxed_write(s, st, em, "recording a client");
}

int
roost_store_count_clients(roost_store *s, int64_t *n, roost_errmsg *em)
{
    sqlite3_stmt *st = s->stmt[ST_COUNT_CLIENTS];
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *n = sqlite3_column_int64(st, 0);
    stmt_done(st);
    return rc == SQLITE_ROW ? ROOST_OK : sql_fail(s, em, "counting clients");
}

/* ---------------------------------------------------------------------
 * Head and checkpoints.
 * ------------------------------------------------------------------- */
int
roost_store_last_committed_round(roost_store *s, roost_store_head *out,
                                 roost_errmsg *em)
{
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *st = s->stmt[ST_HEAD];
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->round_id = sqlite3_column_int64(st, 0);
        out->run_id = sqlite3_column_int64(st, 1);
        const unsigned char *state = sqlite3_column_text(st, 2);
        out->state = state != NULL && strcmp((const char *)state, "failed") == 0
                         ? ROOST_ROUND_FAILED
                         : ROOST_ROUND_COMMITTED;
        column_hash(st, 3, out->model_hash);
        out->n_params = (uint64_t)sqlite3_column_int64(st, 4);
        column_hash(st, 5, out->record_hash);
        out->checkpoint_round = sqlite3_column_int64(st, 6);
    }
    stmt_done(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sql_fail(s, em, "reading the last round");
    return ROOST_OK;
}

int
roost_store_load_checkpoint(roost_store *s, int64_t round_id, float *params,
                            size_t n, roost_errmsg *em)
{
    if (params == NULL && n > 0)
        return roost_fail(em, ROOST_EINVAL, "checkpoint: params is NULL");
    /* One read transaction, so the row and the blob come from the same
     * snapshot even while the coordinator's retention deletes rows. The
     * verifier calls this inside its own transaction. */
    bool own_txn = sqlite3_get_autocommit(s->db) != 0;
    int err = own_txn ? exec_sql(s, "BEGIN", em) : ROOST_OK;
    if (err != ROOST_OK)
        return err;
    sqlite3_stmt *st = s->stmt[ST_CHECKPOINT_INFO];
    sqlite3_bind_int64(st, 1, round_id);
    int rc = sqlite3_step(st);
    uint8_t want[ROOST_STORE_HASH_LEN], got[ROOST_STORE_HASH_LEN];
    int64_t stored_n = 0, stored_bytes = 0;
    if (rc == SQLITE_ROW) {
        stored_n = sqlite3_column_int64(st, 0);
        stored_bytes = sqlite3_column_int64(st, 1);
        column_hash(st, 2, want);
    }
    stmt_done(st);
    if (rc == SQLITE_DONE)
        err = roost_fail(em, ROOST_ENOENT,
                         "no checkpoint for round %lld (never written or "
                         "removed by retention)",
                         (long long)round_id);
    else if (rc != SQLITE_ROW)
        err = sql_fail(s, em, "reading a checkpoint");
    else if (stored_n < 0 || (uint64_t)stored_n != n)
        err = roost_fail(em, ROOST_ESHAPE,
                         "checkpoint of round %lld has %lld parameters, "
                         "caller expects %zu",
                         (long long)round_id, (long long)stored_n, n);
    else if ((uint64_t)stored_bytes != (uint64_t)n * 4)
        err = roost_fail(em, ROOST_EHASH,
                         "checkpoint of round %lld holds %lld bytes, not "
                         "%zu",
                         (long long)round_id, (long long)stored_bytes, n * 4);
    sqlite3_blob *blob = NULL;
    if (err == ROOST_OK && n > 0) {
        if (sqlite3_blob_open(s->db, "main", "checkpoints", "params", round_id,
                              0, &blob) != SQLITE_OK)
            err = sql_fail(s, em, "opening a checkpoint");
        /* Read in slices of at most 1 GiB (sqlite3_blob_read takes int). */
        size_t done = 0, bytes = n * 4;
        while (err == ROOST_OK && done < bytes) {
            size_t m = bytes - done < (1u << 30) ? bytes - done : (1u << 30);
            if (sqlite3_blob_read(blob, (unsigned char *)params + done, (int)m,
                                  (int)done) != SQLITE_OK)
                err = sql_fail(s, em, "reading a checkpoint");
            done += m;
        }
        sqlite3_blob_close(blob);
    }
    if (own_txn)
        sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (err != ROOST_OK)
        return err;
    if (!host_is_little_endian()) {
        for (size_t i = 0; i < n; i++) {
            unsigned char b[4];
            memcpy(b, &params[i], 4);
            uint32_t bits = (uint32_t)b[0] | (uint32_t)b[1] << 8 |
                            (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
            memcpy(&params[i], &bits, 4);
        }
    }
    err = roost_store_model_hash(params, n, got);
    if (err != ROOST_OK)
        return roost_fail(em, err, "hashing a checkpoint");
    if (memcmp(want, got, ROOST_STORE_HASH_LEN) != 0)
        return roost_fail(em, ROOST_EHASH,
                          "checkpoint of round %lld does not match the "
                          "round's model hash",
                          (long long)round_id);
    return ROOST_OK;
}

/* ---------------------------------------------------------------------
 * Commit.
 * ------------------------------------------------------------------- */
static int
validate_commit(const roost_store_commit *c, roost_errmsg *em)
{
    const roost_store_round *r = &c->round;
    if (r->round_id < 1)
        return roost_fail(em, ROOST_EINVAL, "round id %lld is not >= 1",
                          (long long)r->round_id);
    if (r->kind == NULL ||
        (strcmp(r->kind, "train") != 0 && strcmp(r->kind, "eval") != 0 &&
         strcmp(r->kind, "init") != 0))
        return roost_fail(em, ROOST_EINVAL,
                          "round kind must be train, eval or init");
    if (r->state != ROOST_ROUND_COMMITTED && r->state != ROOST_ROUND_FAILED)
        return roost_fail(em, ROOST_EINVAL, "round state %d is unknown",
                          r->state);
    if (r->strategy == NULL || r->strategy[0] == '\0')
        return roost_fail(em, ROOST_EINVAL, "round strategy is required");
    if (r->started_ms < 0 || r->committed_ms < 0)
        return roost_fail(em, ROOST_EINVAL, "negative timestamp");
    if ((c->participants == NULL && c->n_participants > 0) ||
        (c->updates == NULL && c->n_updates > 0) ||
        (c->metrics == NULL && c->n_metrics > 0))
        return roost_fail(em, ROOST_EINVAL, "NULL array with a count");
    if ((c->params == NULL) != (c->n_params == 0))
        return roost_fail(em, ROOST_EINVAL,
                          "params and n_params must both be set or unset");
    if (c->params != NULL && r->state == ROOST_ROUND_FAILED)
        return roost_fail(em, ROOST_EINVAL,
                          "a failed round leaves the model unchanged: pass "
                          "no parameters");
    for (size_t i = 0; i < c->n_participants; i++) {
        const roost_store_participant *p = &c->participants[i];
        if (!valid_fingerprint(p->fingerprint))
            return roost_fail(em, ROOST_EINVAL,
                              "participant %zu: bad fingerprint", i);
        if (p->status < ROOST_PART_SELECTED || p->status > ROOST_PART_DROPPED)
            return roost_fail(em, ROOST_EINVAL,
                              "participant %zu: unknown status %d", i,
                              p->status);
    }
    for (size_t i = 0; i < c->n_updates; i++) {
        const roost_store_update *u = &c->updates[i];
        if (u->seq != (int64_t)i + 1)
            return roost_fail(em, ROOST_EINVAL,
                              "update %zu: seq %lld, expected %zu (updates "
                              "are numbered 1..n in order of receipt)",
                              i, (long long)u->seq, i + 1);
        if (!valid_fingerprint(u->fingerprint))
            return roost_fail(em, ROOST_EINVAL, "update %zu: bad fingerprint",
                              i);
        if (u->accepted != (u->reason_code == ROOST_OK))
            return roost_fail(em, ROOST_EINVAL,
                              "update %zu: an accepted update has reason "
                              "code 0 and a refused one a non-zero code",
                              i);
        if (u->bytes < 0 || u->examples_reported < 0 ||
            u->examples_capped < 0 || u->examples_capped > u->examples_reported)
            return roost_fail(em, ROOST_EINVAL,
                              "update %zu: negative bytes or examples, or "
                              "capped count above the reported one",
                              i);
    }
    for (size_t i = 0; i < c->n_metrics; i++)
        if (!valid_metric_name(c->metrics[i].name))
            return roost_fail(em, ROOST_EINVAL,
                              "metric %zu: name must be 1..%d characters of "
                              "[A-Za-z0-9_.-]",
                              i, ROOST_STORE_METRIC_NAME_CAP - 1);
    for (size_t i = 0; i < c->n_params; i++)
        if (!isfinite(c->params[i]))
            return roost_fail(em, ROOST_ENONFINITE,
                              "parameter %zu of the new model is not finite",
                              i);
    return ROOST_OK;
}

/* The statements of a commit, run inside the caller's transaction. */
static int
commit_body(roost_store *s, const roost_store_commit *c,
            const uint8_t model_hash_in[ROOST_STORE_HASH_LEN],
            const unsigned char *blob, uint8_t record_hash[32],
            roost_errmsg *em)
{
    const roost_store_round *r = &c->round;
    int64_t committed_ms = r->committed_ms ? r->committed_ms : now_ms();
    roost_store_head head;
    int err = roost_store_last_committed_round(s, &head, em);
    if (err != ROOST_OK)
        return err;
    /* A file whose last round id is the largest SQLite holds (an edited
     * file) takes no further round: head + 1 would overflow. */
    if (head.round_id == INT64_MAX || r->round_id != head.round_id + 1)
        return roost_fail(em, ROOST_ESTALE,
                          "round %lld cannot be committed: the last committed "
                          "round is %lld",
                          (long long)r->round_id, (long long)head.round_id);

    sqlite3_stmt *st = s->stmt[ST_RUN_NPARAMS];
    sqlite3_bind_int64(st, 1, r->run_id);
    int rc = sqlite3_step(st);
    int64_t run_n_params = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    stmt_done(st);
    if (rc == SQLITE_DONE)
        return roost_fail(em, ROOST_EINVAL, "round %lld names unknown run %lld",
                          (long long)r->round_id, (long long)r->run_id);
    if (rc != SQLITE_ROW)
        return sql_fail(s, em, "reading the run");
    if (c->params != NULL && (uint64_t)run_n_params != c->n_params)
        return roost_fail(em, ROOST_ESHAPE,
                          "round %lld: model has %zu parameters, run %lld "
                          "declares %lld",
                          (long long)r->round_id, c->n_params,
                          (long long)r->run_id, (long long)run_n_params);

    /* Without new parameters the model is the previous round's. */
    uint8_t model_hash[ROOST_STORE_HASH_LEN];
    memcpy(model_hash, c->params != NULL ? model_hash_in : head.model_hash,
           ROOST_STORE_HASH_LEN);

    int64_t n_accepted = 0, n_refused = 0, n_dropped = 0, examples = 0;
    for (size_t i = 0; i < c->n_updates; i++) {
        if (c->updates[i].accepted) {
            n_accepted++;
            if (__builtin_add_overflow(examples, c->updates[i].examples_capped,
                                       &examples))
                return roost_fail(em, ROOST_EOVERFLOW,
                                  "round %lld: example count overflows",
                                  (long long)r->round_id);
        } else {
            n_refused++;
        }
    }
    /* An evaluation round has answers, not updates: its participants say
     * which were accepted or refused. */
    bool answers = strcmp(r->kind, "eval") == 0;
    for (size_t i = 0; i < c->n_participants; i++) {
        int st_i = c->participants[i].status;
        n_dropped += st_i == ROOST_PART_DROPPED;
        n_accepted += answers && st_i == ROOST_PART_UPDATED;
        n_refused += answers && st_i == ROOST_PART_REFUSED;
    }

    st = s->stmt[ST_INSERT_ROUND];
    sqlite3_bind_int64(st, 1, r->round_id);
    sqlite3_bind_int64(st, 2, r->run_id);
    sqlite3_bind_text(st, 3, r->kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4,
                      r->state == ROOST_ROUND_FAILED ? "failed" : "committed",
                      -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, r->started_ms);
    sqlite3_bind_int64(st, 6, committed_ms);
    sqlite3_bind_text(st, 7, r->strategy, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 8, (int64_t)c->n_participants);
    sqlite3_bind_int64(st, 9, n_accepted);
    sqlite3_bind_int64(st, 10, n_refused);
    sqlite3_bind_int64(st, 11, n_dropped);
    sqlite3_bind_int64(st, 12, examples);
    bind_double_or_null(st, 13, r->train_loss);
    bind_double_or_null(st, 14, r->train_accuracy);
    bind_double_or_null(st, 15, r->eval_loss);
    bind_double_or_null(st, 16, r->eval_accuracy);
    if (r->has_central_dp) {
        bind_double_or_null(st, 17, r->cdp_noise_multiplier);
        bind_double_or_null(st, 18, r->cdp_clip_norm);
        bind_double_or_null(st, 19, r->cdp_epsilon);
        bind_double_or_null(st, 20, r->cdp_delta);
    }
    sqlite3_bind_int64(st, 21, run_n_params);
    sqlite3_bind_blob(st, 22, model_hash, ROOST_STORE_HASH_LEN,
                      SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 23, head.record_hash, ROOST_STORE_HASH_LEN,
                      SQLITE_TRANSIENT);
    if ((err = exec_stmt(s, st, em, "inserting the round")) != ROOST_OK)
        return err;
    hook(s, 1);

    /* Every fingerprint named by a chained row is a known client. */
    for (size_t i = 0; i < c->n_participants && err == ROOST_OK; i++)
        err = upsert_client(s, c->participants[i].fingerprint, NULL,
                            committed_ms, em);
    for (size_t i = 0; i < c->n_updates && err == ROOST_OK; i++)
        err = upsert_client(s, c->updates[i].fingerprint, NULL,
                            c->updates[i].received_ms > 0
                                ? c->updates[i].received_ms
                                : committed_ms,
                            em);
    if (err != ROOST_OK)
        return err;
    hook(s, 2);

    st = s->stmt[ST_INSERT_PARTICIPANT];
    for (size_t i = 0; i < c->n_participants; i++) {
        const roost_store_participant *p = &c->participants[i];
        sqlite3_bind_int64(st, 1, r->round_id);
        sqlite3_bind_text(st, 2, p->fingerprint, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, participant_status_text[p->status], -1,
                          SQLITE_STATIC);
        if ((err = exec_stmt(s, st, em, "inserting a participant")) != ROOST_OK)
            return err;
        if (i == c->n_participants / 2)
            hook(s, 3);
    }
    if (c->n_participants == 0)
        hook(s, 3);
    hook(s, 4);

    st = s->stmt[ST_INSERT_UPDATE];
    for (size_t i = 0; i < c->n_updates; i++) {
        const roost_store_update *u = &c->updates[i];
        sqlite3_bind_int64(st, 1, r->round_id);
        sqlite3_bind_int64(st, 2, u->seq);
        sqlite3_bind_text(st, 3, u->fingerprint, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, u->received_ms);
        sqlite3_bind_int(st, 5, u->accepted ? 1 : 0);
        sqlite3_bind_int(st, 6, u->reason_code);
        bind_text_or_null(st, 7, u->reason);
        sqlite3_bind_int64(st, 8, u->bytes);
        bind_double_or_null(st, 9, u->l2_norm);
        sqlite3_bind_int64(st, 10, u->examples_reported);
        sqlite3_bind_int64(st, 11, u->examples_capped);
        bind_double_or_null(st, 12, u->train_loss);
        bind_double_or_null(st, 13, u->train_accuracy);
        bind_double_or_null(st, 14, u->dp_epsilon);
        bind_double_or_null(st, 15, u->dp_delta);
        bind_double_or_null(st, 16, u->dp_noise_multiplier);
        bind_double_or_null(st, 17, u->dp_clip_norm);
        bind_double_or_null(st, 18, u->dp_sample_rate);
        if (u->dp_steps >= 0)
            sqlite3_bind_int64(st, 19, u->dp_steps);
        if ((err = exec_stmt(s, st, em, "inserting an update")) != ROOST_OK)
            return err;
    }
    hook(s, 5);

    st = s->stmt[ST_INSERT_METRIC];
    for (size_t i = 0; i < c->n_metrics; i++) {
        sqlite3_bind_int64(st, 1, r->round_id);
        sqlite3_bind_text(st, 2, c->metrics[i].name, -1, SQLITE_TRANSIENT);
        bind_double_or_null(st, 3, c->metrics[i].value);
        if ((err = exec_stmt(s, st, em, "inserting a metric")) != ROOST_OK)
            return err;
    }
    hook(s, 6);

    /* SQLite's largest value (SQLITE_MAX_LENGTH, 1e9 bytes by default):
     * a larger checkpoint or strategy state cannot be stored in one row.
     * The coordinator refuses such a model at start; this check keeps the
     * store's own contract for any other caller. */
    if (c->params != NULL) {
        st = s->stmt[ST_INSERT_CHECKPOINT];
        sqlite3_bind_int64(st, 1, r->round_id);
        sqlite3_bind_blob(st, 2, model_hash, ROOST_STORE_HASH_LEN,
                          SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, (int64_t)c->n_params);
        if ((err = bind_blob_or_fail(s, st, 4, blob, c->n_params * 4,
                                     "checkpoint", em)) != ROOST_OK)
            return err;
        if ((err = exec_stmt(s, st, em, "inserting the checkpoint")) !=
            ROOST_OK)
            return err;
    }
    if (c->strategy_state != NULL) {
        if ((err = need_stmt(s, ST_INSERT_STRATEGY, em)) != ROOST_OK)
            return err;
        uint8_t sh[ROOST_STORE_HASH_LEN];
        if (EVP_Digest(c->strategy_state, c->strategy_state_len, sh, NULL,
                       EVP_sha256(), NULL) != 1)
            return roost_fail(em, ROOST_ESTORE,
                              "hashing the strategy state failed");
        st = s->stmt[ST_INSERT_STRATEGY];
        sqlite3_bind_int64(st, 1, r->round_id);
        sqlite3_bind_blob(st, 2, sh, ROOST_STORE_HASH_LEN, SQLITE_TRANSIENT);
        if ((err = bind_blob_or_fail(s, st, 3, c->strategy_state,
                                     c->strategy_state_len, "strategy state",
                                     em)) != ROOST_OK)
            return err;
        if ((err = exec_stmt(s, st, em, "inserting the strategy state")) !=
            ROOST_OK)
            return err;
        st = s->stmt[ST_PRUNE_STRATEGY];
        sqlite3_bind_int64(st, 1, r->round_id);
        if ((err = exec_stmt(s, st, em, "pruning strategy states")) != ROOST_OK)
            return err;
    }
    hook(s, 7);

    st = s->stmt[ST_RETENTION];
    sqlite3_bind_int64(st, 1, s->keep_last);
    sqlite3_bind_int64(st, 2, s->keep_every);
    if ((err = exec_stmt(s, st, em, "applying checkpoint retention")) !=
        ROOST_OK)
        return err;
    hook(s, 8);

    if ((err = hash_round(s, r->round_id, head.record_hash, record_hash, em)) !=
        ROOST_OK)
        return err;
    st = s->stmt[ST_SET_RECORD_HASH];
    sqlite3_bind_int64(st, 1, r->round_id);
    sqlite3_bind_blob(st, 2, record_hash, ROOST_STORE_HASH_LEN,
                      SQLITE_TRANSIENT);
    if ((err = exec_stmt(s, st, em, "storing the record hash")) != ROOST_OK)
        return err;
    hook(s, 9);

    if (s->stmt[ST_CLEAR_OPEN] != NULL) {
        st = s->stmt[ST_CLEAR_OPEN];
        sqlite3_bind_int64(st, 1, r->round_id);
        if ((err = exec_stmt(s, st, em, "clearing the open round")) != ROOST_OK)
            return err;
    }
    hook(s, 10);
    return ROOST_OK;
}

int
roost_store_commit_round(roost_store *s, const roost_store_commit *c,
                         uint8_t record_hash[ROOST_STORE_HASH_LEN],
                         roost_errmsg *em)
{
    if (s == NULL || c == NULL)
        return roost_fail(em, ROOST_EINVAL, "commit: NULL store or record");
    if (s->readonly)
        return roost_fail(em, ROOST_ESTATE, "commit: store opened read-only");
    int err = validate_commit(c, em);
    if (err != ROOST_OK)
        return err;

    /* Hash and convert the parameters before taking the write lock. */
    uint8_t model_hash[ROOST_STORE_HASH_LEN] = {0};
    unsigned char *converted = NULL;
    const unsigned char *blob = (const unsigned char *)c->params;
    if (c->params != NULL) {
        err = roost_store_model_hash(c->params, c->n_params, model_hash);
        if (err != ROOST_OK)
            return roost_fail(em, err, "hashing the new model");
        if (!host_is_little_endian()) {
            converted = roost_alloc_calloc(NULL, c->n_params, 4);
            if (converted == NULL)
                return roost_fail(em, ROOST_ENOMEM, "checkpoint buffer");
            floats_to_le(c->params, c->n_params, converted);
            blob = converted;
        }
    }

    uint8_t hash[ROOST_STORE_HASH_LEN];
    err = exec_sql(s, "BEGIN IMMEDIATE", em);
    if (err == ROOST_OK) {
        hook(s, 0);
        err = commit_body(s, c, model_hash, blob, hash, em);
        if (err == ROOST_OK) {
            if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
                err = sql_fail(s, em, "committing the round");
        }
        if (err != ROOST_OK)
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        else
            hook(s, ROOST_STORE_HOOK_COMMITTED);
    }
    roost_alloc_free(NULL, converted);
    if (err == ROOST_OK && record_hash != NULL)
        memcpy(record_hash, hash, ROOST_STORE_HASH_LEN);
    return err;
}

int
roost_store_count_rounds(roost_store *s, const char *kind, int64_t *n,
                         roost_errmsg *em)
{
    if (s == NULL || kind == NULL || n == NULL)
        return roost_fail(em, ROOST_EINVAL, "count rounds: NULL argument");
    sqlite3_stmt *st = s->stmt[ST_COUNT_KIND];
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    int err = ROOST_OK;
    if (rc == SQLITE_ROW)
        *n = sqlite3_column_int64(st, 0);
    else
        err = sql_fail(s, em, "counting rounds");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return err;
}

int
roost_store_load_strategy_state(roost_store *s, int64_t *round_id, void **buf,
                                size_t *len, roost_errmsg *em)
{
    if (s == NULL || round_id == NULL || buf == NULL || len == NULL)
        return roost_fail(em, ROOST_EINVAL, "strategy state: NULL argument");
    *round_id = 0;
    *buf = NULL;
    *len = 0;
    int err = need_stmt(s, ST_GET_STRATEGY, em);
    if (err != ROOST_OK)
        return err;
    sqlite3_stmt *st = s->stmt[ST_GET_STRATEGY];
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        return roost_fail(em, ROOST_ENOENT, "no strategy state stored");
    }
    if (rc != SQLITE_ROW) {
        err = sql_fail(s, em, "reading the strategy state");
        sqlite3_reset(st);
        return err;
    }
    int64_t round = sqlite3_column_int64(st, 0);
    const void *stored_hash = sqlite3_column_blob(st, 1);
    int hash_len = sqlite3_column_bytes(st, 1);
    const void *blob = sqlite3_column_blob(st, 2);
    int blob_len = sqlite3_column_bytes(st, 2);
    uint8_t h[ROOST_STORE_HASH_LEN];
    if (hash_len != ROOST_STORE_HASH_LEN || blob_len <= 0 || blob == NULL ||
        EVP_Digest(blob, (size_t)blob_len, h, NULL, EVP_sha256(), NULL) != 1 ||
        memcmp(h, stored_hash, sizeof(h)) != 0) {
        sqlite3_reset(st);
        return roost_fail(em, ROOST_EHASH,
                          "strategy state of round %lld does not match its "
                          "SHA-256",
                          (long long)round);
    }
    void *copy = roost_alloc_malloc(NULL, (size_t)blob_len);
    if (copy == NULL) {
        sqlite3_reset(st);
        return roost_fail(em, ROOST_ENOMEM, "strategy state buffer");
    }
    memcpy(copy, blob, (size_t)blob_len);
    sqlite3_reset(st);
    *round_id = round;
    *buf = copy;
    *len = (size_t)blob_len;
    return ROOST_OK;
}

/* ---------------------------------------------------------------------
 * Open-round note.
 * ------------------------------------------------------------------- */
int
roost_store_note_open_round(roost_store *s, int64_t round_id, int64_t opened_ms,
                            int64_t n_selected, roost_errmsg *em)
{
    int err = need_stmt(s, ST_NOTE_OPEN, em);
    if (err != ROOST_OK)
        return err;
    sqlite3_stmt *st = s->stmt[ST_NOTE_OPEN];
    sqlite3_bind_int64(st, 1, round_id);
    sqlite3_bind_int64(st, 2, opened_ms ? opened_ms : now_ms());
    sqlite3_bind_int64(st, 3, n_selected);
    return relaxed_write(s, st, em, "noting the open round");
}

int
roost_store_get_open_round(roost_store *s, int64_t *round_id,
                           int64_t *opened_ms, int64_t *n_selected,
                           roost_errmsg *em)
{
    *round_id = 0;
    *opened_ms = 0;
    *n_selected = 0;
    int err = need_stmt(s, ST_GET_OPEN, em);
    if (err != ROOST_OK)
        return err;
    sqlite3_stmt *st = s->stmt[ST_GET_OPEN];
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *round_id = sqlite3_column_int64(st, 0);
        *opened_ms = sqlite3_column_int64(st, 1);
        *n_selected = sqlite3_column_int64(st, 2);
    }
    stmt_done(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sql_fail(s, em, "reading the open round");
    return ROOST_OK;
}

/* ---------------------------------------------------------------------
 * Verification.
 * ------------------------------------------------------------------- */
typedef struct verdict {
    int64_t round; /* 0: none yet */
    roost_errmsg *em;
} verdict;

/* Keep the lowest round found at fault, with its reason. */
static void
blame(verdict *v, int64_t round, const char *detail)
{
    if (v->round != 0 && v->round <= round)
        return;
    v->round = round;
    roost_fail(v->em, ROOST_EHASH, "round %lld: %s", (long long)round, detail);
}

/* Rows of a chained table whose round does not exist (inserted rows, or
 * the remains of a deleted round). */
static int
check_orphans(roost_store *s, const char *table, verdict *v, roost_errmsg *em)
{
    char sql[200];
    snprintf(sql, sizeof(sql),
             "SELECT min(round_id) FROM %s WHERE round_id NOT IN"
             " (SELECT round_id FROM rounds)",
             table);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s, em, sql);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        char detail[160];
        snprintf(detail, sizeof(detail),
                 "%s rows exist for a round that is not in the chain "
                 "(inserted, or their round was deleted)",
                 table);
        blame(v, sqlite3_column_int64(st, 0), detail);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? ROOST_OK : sql_fail(s, em, sql);
}

static int
verify_checkpoints(roost_store *s, verdict *v, roost_errmsg *em)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT c.round_id, c.n_params, length(c.params)"
                           " FROM checkpoints c"
                           " JOIN rounds r ON r.round_id = c.round_id"
                           " ORDER BY c.round_id",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s, em, "listing checkpoints");
    int err = ROOST_OK, rc;
    float *buf = NULL;
    size_t cap = 0;
    while (err == ROOST_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t round = sqlite3_column_int64(st, 0);
        int64_t n = sqlite3_column_int64(st, 1);
        int64_t stored_bytes = sqlite3_column_int64(st, 2);
        /* The file may be hostile: size the buffer from the bytes actually
         * stored, never from the declared count alone. */
        if (n < 0 || stored_bytes < 0 || (uint64_t)n > SIZE_MAX / 4 ||
            (uint64_t)stored_bytes != (uint64_t)n * 4) {
            blame(v, round,
                  "checkpoint length does not match its parameter count");
            continue;
        }
        if ((size_t)n > cap) {
            float *nb = roost_alloc_realloc(NULL, buf, (size_t)n * 4);
            if (nb == NULL) {
                err = roost_fail(em, ROOST_ENOMEM, "checkpoint buffer");
                break;
            }
            buf = nb;
            cap = (size_t)n;
        }
        roost_errmsg lem;
        int lerr = roost_store_load_checkpoint(s, round, buf, (size_t)n, &lem);
        if (lerr == ROOST_EHASH || lerr == ROOST_ESHAPE) {
            blame(v, round, lem.text);
        } else if (lerr != ROOST_OK) {
            err = roost_fail(em, lerr, "%s", lem.text);
        } else {
            /* The checkpoint's own model_hash column must agree too. */
            sqlite3_stmt *q = s->stmt[ST_CHECKPOINT_INFO];
            sqlite3_bind_int64(q, 1, round);
            if (sqlite3_step(q) == SQLITE_ROW) {
                uint8_t a[32], b[32];
                column_hash(q, 2, a);
                column_hash(q, 3, b);
                if (memcmp(a, b, 32) != 0)
                    blame(v, round,
                          "checkpoint's model_hash column differs from the "
                          "round's");
            }
            stmt_done(q);
        }
    }
    /* A scan that stopped on an error has not seen every checkpoint: say
     * so rather than pass the ones it never read. */
    if (err == ROOST_OK && rc != SQLITE_DONE)
        err = sql_fail(s, em, "listing checkpoints");
    sqlite3_finalize(st);
    roost_alloc_free(NULL, buf);
    return err;
}

int
roost_store_read_begin(roost_store *s, roost_errmsg *em)
{
    if (sqlite3_get_autocommit(s->db) == 0)
        return roost_fail(em, ROOST_ESTATE,
                          "store: a transaction is already open");
    int err = exec_sql(s, "BEGIN", em);
    /* BEGIN takes no snapshot until the first read: take it now, so that
     * the snapshot is the file as of this call. */
    int64_t n = 0;
    if (err == ROOST_OK) {
        err = pragma_int(s, "SELECT count(*) FROM sqlite_schema", &n, em);
        if (err != ROOST_OK)
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return err;
}

void
roost_store_read_end(roost_store *s)
{
    if (s != NULL && sqlite3_get_autocommit(s->db) == 0)
        sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
}

int
roost_store_verify_chain(roost_store *s, int64_t *first_bad_round,
                         int64_t *n_rounds, uint8_t head[ROOST_STORE_HASH_LEN],
                         roost_errmsg *em)
{
    *first_bad_round = 0;
    verdict v = {0, em};
    /* One read snapshot for the whole check: the caller's
     * (roost_store_read_begin), or one of its own. */
    bool own_txn = sqlite3_get_autocommit(s->db) != 0;
    int err = own_txn ? exec_sql(s, "BEGIN", em) : ROOST_OK;
    if (err != ROOST_OK)
        return err;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT round_id, prev_hash, record_hash FROM"
                           " rounds ORDER BY round_id",
                           -1, &st, NULL) != SQLITE_OK) {
        err = sql_fail(s, em, "listing rounds");
        goto out;
    }
    uint8_t prev[ROOST_STORE_HASH_LEN] = {0};
    int64_t expected = 1, count = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t round = sqlite3_column_int64(st, 0);
        uint8_t stored_prev[32], stored[32], computed[32];
        column_hash(st, 1, stored_prev);
        column_hash(st, 2, stored);
        count++;
        if (round != expected)
            blame(&v, round < expected ? round : expected,
                  round < expected ? "round numbering is out of sequence"
                                   : "round is missing (deleted)");
        if (memcmp(stored_prev, prev, 32) != 0)
            blame(&v, round,
                  "its previous-hash does not link to the round before "
                  "(a round was rewritten, inserted or deleted)");
        roost_errmsg lem;
        int herr = hash_round(s, round, prev, computed, &lem);
        if (herr != ROOST_OK) {
            err = roost_fail(em, herr, "%s", lem.text);
            break;
        }
        if (memcmp(computed, stored, 32) != 0)
            blame(&v, round,
                  "its rows do not match its record hash (the round, a "
                  "participant, update or metric row, or its run was "
                  "edited, inserted or deleted)");
        memcpy(prev, stored, 32);
        /* Ids come from a file that may be hostile: no overflow past the
         * largest one (it is the last row of the ordered scan anyway). */
        expected = round < INT64_MAX ? round + 1 : INT64_MAX;
    }
    sqlite3_finalize(st);
    if (err == ROOST_OK && rc != SQLITE_DONE)
        err = sql_fail(s, em, "listing rounds");
    /* Per-round tables (strategy_state is not chained, but a row of it
     * for a round that does not exist is still an edit). */
    static const char *const per_round[] = {
        "participants", "updates", "metrics", "checkpoints", "strategy_state"};
    size_t n_tables = s->version >= 3 ? 5 : 4;
    for (size_t i = 0; err == ROOST_OK && i < n_tables; i++)
        err = check_orphans(s, per_round[i], &v, em);
    if (err == ROOST_OK)
        err = verify_checkpoints(s, &v, em);
    if (err == ROOST_OK) {
        if (n_rounds != NULL)
            *n_rounds = count;
        if (head != NULL)
            memcpy(head, prev, 32);
        if (v.round != 0) {
            *first_bad_round = v.round;
            err = ROOST_EHASH;
        }
    }
out:
    if (own_txn)
        sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    return err;
}

int
roost_store_record_hash(roost_store *s, int64_t round_id,
                        uint8_t out[ROOST_STORE_HASH_LEN], roost_errmsg *em)
{
    sqlite3_stmt *st = s->stmt[ST_RECORD_HASH];
    sqlite3_bind_int64(st, 1, round_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        column_hash(st, 0, out);
    stmt_done(st);
    if (rc == SQLITE_DONE)
        return roost_fail(em, ROOST_ENOENT, "round %lld is not in the store",
                          (long long)round_id);
    return rc == SQLITE_ROW ? ROOST_OK
                            : sql_fail(s, em, "reading a record hash");
}

/* ---------------------------------------------------------------------
 * Readers.
 * ------------------------------------------------------------------- */
int
roost_store_list_rounds(roost_store *s, int64_t first_round,
                        roost_store_round_info *out, size_t cap, size_t *n,
                        roost_errmsg *em)
{
    *n = 0;
    sqlite3_stmt *st = s->stmt[ST_LIST_ROUNDS];
    sqlite3_bind_int64(st, 1, first_round);
    sqlite3_bind_int64(st, 2,
                       cap > (size_t)INT64_MAX ? INT64_MAX : (int64_t)cap);
    int rc = SQLITE_DONE;
    size_t i = 0;
    while (i < cap) {
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
            break;
        roost_store_round_info *r = &out[i++];
        memset(r, 0, sizeof(*r));
        r->round_id = sqlite3_column_int64(st, 0);
        r->run_id = sqlite3_column_int64(st, 1);
        column_text_copy(st, 2, r->kind, sizeof(r->kind));
        const unsigned char *state = sqlite3_column_text(st, 3);
        r->state = state != NULL && strcmp((const char *)state, "failed") == 0
                       ? ROOST_ROUND_FAILED
                       : ROOST_ROUND_COMMITTED;
        r->started_ms = sqlite3_column_int64(st, 4);
        r->committed_ms = sqlite3_column_int64(st, 5);
        column_text_copy(st, 6, r->strategy, sizeof(r->strategy));
        r->n_selected = sqlite3_column_int64(st, 7);
        r->n_accepted = sqlite3_column_int64(st, 8);
        r->n_refused = sqlite3_column_int64(st, 9);
        r->n_dropped = sqlite3_column_int64(st, 10);
        r->examples = sqlite3_column_int64(st, 11);
        r->train_loss = column_double_or_nan(st, 12);
        r->train_accuracy = column_double_or_nan(st, 13);
        r->eval_loss = column_double_or_nan(st, 14);
        r->eval_accuracy = column_double_or_nan(st, 15);
        r->has_central_dp = sqlite3_column_type(st, 16) != SQLITE_NULL ||
                            sqlite3_column_type(st, 18) != SQLITE_NULL;
        r->cdp_noise_multiplier = column_double_or_nan(st, 16);
        r->cdp_clip_norm = column_double_or_nan(st, 17);
        r->cdp_epsilon = column_double_or_nan(st, 18);
        r->cdp_delta = column_double_or_nan(st, 19);
        r->n_params = (uint64_t)sqlite3_column_int64(st, 20);
        column_hash(st, 21, r->model_hash);
        column_hash(st, 23, r->record_hash);
    }
    if (rc == SQLITE_ROW)
        rc = SQLITE_DONE; /* cap reached */
    stmt_done(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return sql_fail(s, em, "listing rounds");
    *n = i;
    return ROOST_OK;
}

int
roost_store_round_metrics(roost_store *s, int64_t round_id,
                          roost_store_metric_value *out, size_t cap, size_t *n,
                          roost_errmsg *em)
{
    *n = 0;
    sqlite3_stmt *st = s->stmt[ST_ROUND_METRICS];
    sqlite3_bind_int64(st, 1, round_id);
    size_t count = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (count < cap) {
            column_text_copy(st, 0, out[count].name, sizeof(out[count].name));
            out[count].value = column_double_or_nan(st, 1);
        }
        count++;
    }
    stmt_done(st);
    if (rc != SQLITE_DONE)
        return sql_fail(s, em, "reading metrics");
    *n = count;
    if (count > cap)
        return roost_fail(em, ROOST_ETOOSMALL,
                          "round %lld has %zu metrics, room for %zu",
                          (long long)round_id, count, cap);
    return ROOST_OK;
}

static double
quantile(const double *sorted, size_t n, double q)
{
    double pos = q * (double)(n - 1);
    size_t lo = (size_t)pos;
    if (lo + 1 >= n)
        return sorted[n - 1];
    double frac = pos - (double)lo;
    return sorted[lo] + frac * (sorted[lo + 1] - sorted[lo]);
}

int
roost_store_epsilon_stats(roost_store *s, int64_t round_id,
                          roost_store_eps_stats *out, roost_errmsg *em)
{
    out->n_clients = 0;
    out->min = out->p25 = out->median = out->p75 = out->max = NAN;
    sqlite3_stmt *st = s->stmt[round_id > 0 ? ST_EPSILON_ROUND : ST_EPSILON];
    sqlite3_bind_int64(st, 1, round_id);
    double *vals = NULL;
    size_t n = 0, cap = 0;
    int rc, err = ROOST_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 64;
            double *nv = roost_alloc_realloc(NULL, vals, ncap * sizeof(*nv));
            if (nv == NULL) {
                err = roost_fail(em, ROOST_ENOMEM, "epsilon values");
                break;
            }
            vals = nv;
            cap = ncap;
        }
        vals[n++] = sqlite3_column_double(st, 0);
    }
    if (err == ROOST_OK && rc != SQLITE_DONE)
        err = sql_fail(s, em, "epsilon query");
    stmt_done(st);
    if (err == ROOST_OK && n > 0) {
        out->n_clients = (int64_t)n;
        out->min = vals[0];
        out->p25 = quantile(vals, n, 0.25);
        out->median = quantile(vals, n, 0.5);
        out->p75 = quantile(vals, n, 0.75);
        out->max = vals[n - 1];
    }
    roost_alloc_free(NULL, vals);
    return err;
}

/* ---------------------------------------------------------------------
 * CRL numbers (docs/store.md, crl_numbers). Not part of the chain: the
 * table records what the TLS layer was given, not the federation's
 * history, and roost serve --accept-older-crl lowers a number on purpose.
 * ------------------------------------------------------------------- */

/* A cRLNumber as roost_tls_crl_issuer writes it: 1..40 lowercase hex
 * digits without leading zeros (or "0"). */
static bool
valid_crl_number(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > 40 || (len > 1 && n[0] == '0'))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'f')))
            return false;
    return true;
}

int
roost_store_get_crl(roost_store *s,
                    const uint8_t issuer_key[ROOST_STORE_HASH_LEN],
                    roost_store_crl *out, roost_errmsg *em)
{
    int err = need_stmt(s, ST_GET_CRL, em);
    if (err != ROOST_OK)
        return err;
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *st = s->stmt[ST_GET_CRL];
    sqlite3_bind_blob(st, 1, issuer_key, ROOST_STORE_HASH_LEN, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *issuer = (const char *)sqlite3_column_text(st, 0);
        const char *number = (const char *)sqlite3_column_text(st, 1);
        const void *sha = sqlite3_column_blob(st, 2);
        memcpy(out->issuer_key, issuer_key, ROOST_STORE_HASH_LEN);
        snprintf(out->issuer, sizeof(out->issuer), "%s",
                 issuer != NULL ? issuer : "");
        snprintf(out->number, sizeof(out->number), "%s",
                 number != NULL ? number : "");
        if (sha != NULL && sqlite3_column_bytes(st, 2) == ROOST_STORE_HASH_LEN)
            memcpy(out->crl_sha256, sha, ROOST_STORE_HASH_LEN);
        else
            err = roost_fail(em, ROOST_ESTORE,
                             "crl_numbers: damaged row (digest)");
        out->recorded_ms = sqlite3_column_int64(st, 3);
        if (err == ROOST_OK && !valid_crl_number(out->number))
            err = roost_fail(em, ROOST_ESTORE,
                             "crl_numbers: damaged row (number '%.48s')",
                             out->number);
    } else if (rc == SQLITE_DONE) {
        err = ROOST_ENOENT;
    } else {
        err = sql_fail(s, em, "reading a CRL number");
    }
    stmt_done(st);
    return err;
}

int
roost_store_put_crls(roost_store *s, const roost_store_crl *crls, size_t n,
                     roost_errmsg *em)
{
    int err = need_stmt(s, ST_PUT_CRL, em);
    if (err != ROOST_OK)
        return err;
    if (s->readonly)
        return roost_fail(em, ROOST_ESTATE, "store opened read-only");
    for (size_t i = 0; i < n; i++)
        if (!valid_crl_number(crls[i].number))
            return roost_fail(em, ROOST_EINVAL,
                              "CRL number '%.48s' is not 1..40 lowercase hex "
                              "digits without leading zeros",
                              crls[i].number);
    if ((err = exec_sql(s, "BEGIN IMMEDIATE", em)) != ROOST_OK)
        return err;
    int64_t now = now_ms();
    sqlite3_stmt *st = s->stmt[ST_PUT_CRL];
    for (size_t i = 0; err == ROOST_OK && i < n; i++) {
        sqlite3_bind_blob(st, 1, crls[i].issuer_key, ROOST_STORE_HASH_LEN,
                          SQLITE_STATIC);
        sqlite3_bind_text(st, 2, crls[i].issuer, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, crls[i].number, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 4, crls[i].crl_sha256, ROOST_STORE_HASH_LEN,
                          SQLITE_STATIC);
        sqlite3_bind_int64(st, 5,
                           crls[i].recorded_ms ? crls[i].recorded_ms : now);
        err = exec_stmt(s, st, em, "recording a CRL number");
    }
    if (err == ROOST_OK)
        err = exec_sql(s, "COMMIT", em);
    if (err != ROOST_OK)
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return err;
}
