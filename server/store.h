/*
 * store.h - the coordinator's durable record: one SQLite file holding the
 * run's settings, every committed round, its participants, every update
 * received (accepted or refused), named metrics, model checkpoints and a
 * hash chain over the committed round records.
 *
 * The coordinator's round logic is the main caller. Its contract with the
 * store is one call per round: roost_store_commit_round() writes the round
 * record, every participant and update row, the metrics and the new model
 * in ONE transaction, so a crash at any instant leaves either the whole
 * round or nothing. At start the coordinator reads
 * roost_store_last_committed_round() and loads that checkpoint.
 *
 * The full schema, the exact serialisation hashed into the chain, the
 * retention policy and what `roost audit` can and cannot prove are in
 * docs/store.md.
 *
 * Threading: a roost_store handle is used by one thread at a time. Several
 * processes may open the same file (WAL mode): one writer (the
 * coordinator) and any number of readers (status, report, audit).
 *
 * Strings passed in are copied by SQLite during the call; the caller keeps
 * ownership. Doubles that are NaN mean "not measured" and are stored as
 * NULL; readers give NaN back for NULL.
 */
#ifndef ROOST_SERVER_STORE_H
#define ROOST_SERVER_STORE_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROOST_STORE_HASH_LEN 32

/* The schema version this binary writes and understands. A file with a
 * newer version is refused; an older one is migrated when opened for
 * writing. */
#define ROOST_STORE_SCHEMA_VERSION 4
/* SQLite's application_id for Roost coordinator files: "RoSt". */
#define ROOST_STORE_APPLICATION_ID 0x526f5374

/* Metric names: 1..63 characters of [A-Za-z0-9_.-]. */
#define ROOST_STORE_METRIC_NAME_CAP 64

typedef struct roost_store roost_store;

/* Open flags. */
enum {
    ROOST_STORE_CREATE = 1 << 0,   /* create the file if it does not exist */
    ROOST_STORE_READONLY = 1 << 1, /* open read-only (status, audit, report) */
};

/* Checkpoint retention: after each commit, keep the newest keep_last
 * checkpoints and every checkpoint whose round id is a multiple of
 * keep_every (0: none of those); delete the others. keep_last >= 1 so the
 * model to resume from is never deleted. */
typedef struct roost_store_options {
    unsigned flags;
    uint32_t keep_last;  /* default 3 */
    uint32_t keep_every; /* default 10 */
    /* Migrate only up to this schema version (0: the latest). For tests of
     * the migration path and for tools; the coordinator passes 0. */
    int schema_version;
} roost_store_options;

/* roost_store_options_init - defaults: flags 0, keep_last 3, keep_every 10,
 * latest schema. */
void roost_store_options_init(roost_store_options *opt);

/*
 * roost_store_open - open (and with ROOST_STORE_CREATE create) a store.
 * Sets WAL mode, synchronous=FULL, foreign keys, checks application_id and
 * user_version, applies pending migrations in their own transaction, and
 * prepares the statements kept on the handle.
 *
 * Returns ROOST_OK; ROOST_ENOENT (no such file and no CREATE); ROOST_ESTORE
 * (SQLite failure, or not a Roost coordinator file); ROOST_ENOTSUP (schema
 * newer than this binary, or an older schema opened read-only);
 * ROOST_EINVAL (bad options); ROOST_ENOMEM. *out is NULL on failure, and
 * em (may be NULL) says why.
 */
int roost_store_open(roost_store **out, const char *path, unsigned flags,
                     roost_errmsg *em);
int roost_store_open_ex(roost_store **out, const char *path,
                        const roost_store_options *opt, roost_errmsg *em);

/* roost_store_close - finalize statements and close; NULL does nothing. */
void roost_store_close(roost_store *s);

/* roost_store_schema_version - the file's user_version after opening. */
int roost_store_schema_version(const roost_store *s);

/* ---------------------------------------------------------------------
 * Runs: the settings in force. Each round names the run it belongs to;
 * the run row is part of every round's chained record.
 * ------------------------------------------------------------------- */
typedef struct roost_store_run {
    const char *name;        /* free text, may be NULL */
    const char *model_spec;  /* required, e.g. "mlp:784-128-10" */
    uint64_t n_params;       /* parameters of the model (>= 1) */
    const char *strategy;    /* required, e.g. "fedavg" */
    const char *config_json; /* full effective configuration, may be NULL */
    const char *dp_json;     /* DP parameters sent to clients, may be NULL */
    int64_t created_ms;      /* 0: now */
} roost_store_run;

/* roost_store_add_run - insert a run; *run_id receives its id. */
int roost_store_add_run(roost_store *s, const roost_store_run *run,
                        int64_t *run_id, roost_errmsg *em);

/* A run read back. Strings are owned by the struct; free it with
 * roost_store_run_info_free (NULL does nothing). */
typedef struct roost_store_run_info {
    int64_t run_id;
    int64_t created_ms;
    uint64_t n_params;
    char *name, *model_spec, *strategy, *config_json, *dp_json; /* or NULL */
} roost_store_run_info;

/* roost_store_get_run - run_id 0 means the newest run. ROOST_ENOENT when
 * there is none. */
int roost_store_get_run(roost_store *s, int64_t run_id,
                        roost_store_run_info **out, roost_errmsg *em);
void roost_store_run_info_free(roost_store_run_info *info);

/* ---------------------------------------------------------------------
 * Clients, keyed by their certificate fingerprint. Not part of the chain
 * (last_seen changes); chained rows refer to clients by fingerprint.
 * ------------------------------------------------------------------- */

/* roost_store_upsert_client - record a client seen at seen_ms (0: now):
 * inserts it with first_seen = last_seen = seen_ms, or raises last_seen
 * and replaces the subject when it is known. fingerprint: 1..128
 * printable ASCII characters; subject may be NULL. Cheap enough for every
 * check-in: it commits without an fsync (atomic; made durable by the next
 * round commit), and must not be called inside a commit's hook. */
int roost_store_upsert_client(roost_store *s, const char *fingerprint,
                              const char *subject, int64_t seen_ms,
                              roost_errmsg *em);

/* roost_store_count_clients - number of distinct clients ever seen. */
int roost_store_count_clients(roost_store *s, int64_t *n, roost_errmsg *em);

/* ---------------------------------------------------------------------
 * Committing a round.
 * ------------------------------------------------------------------- */
enum roost_store_round_state {
    ROOST_ROUND_COMMITTED = 0, /* aggregated: a new model */
    ROOST_ROUND_FAILED = 1,    /* no quorum: model unchanged */
};

enum roost_store_participant_status {
    ROOST_PART_SELECTED = 0, /* selected, never answered before the end */
    ROOST_PART_UPDATED = 1,  /* its update was accepted */
    ROOST_PART_REFUSED = 2,  /* it answered; the update was refused */
    ROOST_PART_DROPPED = 3,  /* disconnected or declined (e.g. its budget) */
};

typedef struct roost_store_participant {
    const char *fingerprint;
    int status; /* enum roost_store_participant_status */
} roost_store_participant;

/* One update received (accepted or refused). seq numbers the updates of a
 * round in order of receipt, from 1, without gaps. */
typedef struct roost_store_update {
    int64_t seq;
    const char *fingerprint;
    int64_t received_ms;
    bool accepted;
    int reason_code;    /* ROOST_OK when accepted, else why it was refused */
    const char *reason; /* text for the refusal, NULL when accepted */
    int64_t bytes;      /* size of the update on the wire */
    double l2_norm;     /* of the parameter delta (NaN: not computed) */
    int64_t examples_reported;
    int64_t examples_capped;           /* as used for weighting */
    double train_loss, train_accuracy; /* reported by the client, or NaN */
    /* DP parameters and the epsilon the client reports having spent so far
     * (NaN / -1 when the client did not use DP). */
    double dp_epsilon, dp_delta, dp_noise_multiplier, dp_clip_norm;
    double dp_sample_rate;
    int64_t dp_steps;
} roost_store_update;

typedef struct roost_store_metric {
    const char *name;
    double value;
} roost_store_metric;

/* The round record the coordinator fills in. Counts of selected, accepted,
 * refused and dropped clients and the aggregated example count are derived
 * by the store from the participant and update arrays. */
typedef struct roost_store_round {
    int64_t round_id; /* must be last committed + 1 (the first is 1) */
    int64_t run_id;   /* a run inserted with roost_store_add_run */
    const char *kind; /* "train", "eval" or "init" */
    int state;        /* enum roost_store_round_state */
    int64_t started_ms;
    int64_t committed_ms; /* 0: now */
    const char *strategy;
    double train_loss, train_accuracy; /* weighted mean of reports, or NaN */
    double eval_loss, eval_accuracy;   /* global model, held-out, or NaN */
    /* Central DP on the aggregate: the accountant's entry for the round.
     * has_central_dp false: the four values are ignored (stored NULL). */
    bool has_central_dp;
    double cdp_noise_multiplier, cdp_clip_norm, cdp_epsilon, cdp_delta;
} roost_store_round;

typedef struct roost_store_commit {
    roost_store_round round;
    const roost_store_participant *participants; /* fingerprints unique */
    size_t n_participants;
    const roost_store_update *updates;
    size_t n_updates;
    const roost_store_metric *metrics; /* names unique */
    size_t n_metrics;
    /* The model after the round: n_params finite floats, the run's
     * n_params. NULL with n_params 0 means "unchanged" (failed or
     * evaluation rounds); then no checkpoint is written and the round's
     * model hash is the previous one. */
    const float *params;
    size_t n_params;
    /* The strategy's state after the round (roost_strategy_state_save), or
     * NULL. Stored with its SHA-256 in the same transaction; older states
     * are deleted. Not part of the chained record: it is derived data the
     * coordinator checks against its hash when it resumes. */
    const void *strategy_state;
    size_t strategy_state_len;
} roost_store_commit;

/*
 * roost_store_commit_round - write the round in one transaction (BEGIN
 * IMMEDIATE ... COMMIT, synchronous=FULL): the round row, participants
 * (clients are inserted or their last_seen raised), updates, metrics, the
 * checkpoint, the retention deletions, the chained record hash; it also
 * clears the open-round note. On any failure the transaction is rolled
 * back and nothing is written. record_hash (may be NULL) receives the new
 * chain head.
 *
 * Returns ROOST_OK; ROOST_ESTALE (round_id is not last + 1: a round is
 * never committed twice); ROOST_EINVAL (bad record, unknown run, bad
 * fingerprint or metric name, seq not 1..n); ROOST_EDUPLICATE (duplicate
 * participant or metric); ROOST_ESHAPE (n_params differs from the run's);
 * ROOST_ENONFINITE (a parameter is NaN/inf); ROOST_ETOOBIG (the checkpoint
 * or the strategy state exceeds roost_store_max_value_bytes());
 * ROOST_ESTORE (SQLite).
 */
int roost_store_commit_round(roost_store *s, const roost_store_commit *c,
                             uint8_t record_hash[ROOST_STORE_HASH_LEN],
                             roost_errmsg *em);

/* The newest committed round, as the coordinator needs it to resume. */
typedef struct roost_store_head {
    int64_t round_id; /* 0: nothing committed yet (other fields zero) */
    int64_t run_id;
    int state;
    uint8_t model_hash[ROOST_STORE_HASH_LEN]; /* model after the round */
    uint64_t n_params;
    int64_t checkpoint_round; /* round whose checkpoint holds that model;
                                 0 when no checkpoint exists */
    uint8_t record_hash[ROOST_STORE_HASH_LEN];
} roost_store_head;

int roost_store_last_committed_round(roost_store *s, roost_store_head *out,
                                     roost_errmsg *em);

/* roost_store_count_rounds - *n = rounds of that kind ("train", "eval",
 * "init"), committed or failed. */
int roost_store_count_rounds(roost_store *s, const char *kind, int64_t *n,
                             roost_errmsg *em);

/*
 * roost_store_load_strategy_state - the newest stored strategy state:
 * *round_id the round it was saved after, *buf a copy (release with
 * free()), *len its size. ROOST_ENOENT: none stored; ROOST_EHASH: the
 * blob does not match its SHA-256; ROOST_ENOTSUP: the file's schema
 * predates strategy states.
 */
int roost_store_load_strategy_state(roost_store *s, int64_t *round_id,
                                    void **buf, size_t *len, roost_errmsg *em);

/*
 * roost_store_load_checkpoint - copy round's checkpoint into params (n
 * floats, caller-owned) and check its SHA-256 against the recorded model
 * hash. ROOST_ENOENT: no checkpoint for that round (never written, or
 * removed by retention); ROOST_ESHAPE: n differs; ROOST_EHASH: the stored
 * parameters do not match their hash.
 */
int roost_store_load_checkpoint(roost_store *s, int64_t round_id, float *params,
                                size_t n, roost_errmsg *em);

/* roost_store_model_hash - SHA-256 of params as little-endian float32, the
 * model hash used throughout the record; identical to the wire's parameter
 * hash (roost_xfer_hash_floats). */
int roost_store_model_hash(const float *params, size_t n,
                           uint8_t out[ROOST_STORE_HASH_LEN]);

/* ---------------------------------------------------------------------
 * The open round: a note (outside the chain) that the coordinator has
 * opened round_id, so `roost status` can show it. Cleared by the commit
 * of that round.
 * ------------------------------------------------------------------- */
int roost_store_note_open_round(roost_store *s, int64_t round_id,
                                int64_t opened_ms, int64_t n_selected,
                                roost_errmsg *em);
/* *round_id = 0 when no round is open. */
int roost_store_get_open_round(roost_store *s, int64_t *round_id,
                               int64_t *opened_ms, int64_t *n_selected,
                               roost_errmsg *em);

/* ---------------------------------------------------------------------
 * Chain verification.
 * ------------------------------------------------------------------- */

/*
 * roost_store_verify_chain - recompute every round's record hash from its
 * rows and check the links, the round numbering (1, 2, ... without gaps),
 * each stored checkpoint against its round's model hash, and that no
 * participant/update/metric/checkpoint row belongs to a round that does
 * not exist. ROOST_OK when intact (*first_bad_round = 0); ROOST_EHASH
 * when not, with *first_bad_round the lowest round found at fault and em
 * saying what is wrong; ROOST_ESTORE on SQLite failure.
 * n_rounds (may be NULL) receives the number of rounds checked and head
 * (may be NULL) the last record hash.
 */
int roost_store_verify_chain(roost_store *s, int64_t *first_bad_round,
                             int64_t *n_rounds,
                             uint8_t head[ROOST_STORE_HASH_LEN],
                             roost_errmsg *em);

/* roost_store_record_hash - the stored record hash of round_id
 * (ROOST_ENOENT if absent), to compare with an external anchor. */
int roost_store_record_hash(roost_store *s, int64_t round_id,
                            uint8_t out[ROOST_STORE_HASH_LEN],
                            roost_errmsg *em);

/* ---------------------------------------------------------------------
 * Readers for status and report.
 * ------------------------------------------------------------------- */

/* roost_store_read_begin / roost_store_read_end - hold one read snapshot
 * across several reader calls, so that together they describe one state
 * of the file while the coordinator keeps committing: `roost status`
 * must not show round N as open and as committed, nor `roost report` or
 * `roost audit` check a chain over other rounds than they list. Every
 * reader call and roost_store_verify_chain between the two use the
 * snapshot. read_begin returns ROOST_ESTATE when a transaction is already
 * open on the handle; read_end on a handle without one does nothing. For
 * readers only: do not commit rounds in between. */
int roost_store_read_begin(roost_store *s, roost_errmsg *em);
void roost_store_read_end(roost_store *s);
typedef struct roost_store_round_info {
    int64_t round_id, run_id;
    char kind[8];
    int state;
    int64_t started_ms, committed_ms;
    char strategy[32]; /* truncated if longer */
    int64_t n_selected, n_accepted, n_refused, n_dropped, examples;
    double train_loss, train_accuracy, eval_loss, eval_accuracy; /* or NaN */
    bool has_central_dp;
    double cdp_noise_multiplier, cdp_clip_norm, cdp_epsilon, cdp_delta;
    uint64_t n_params;
    uint8_t model_hash[ROOST_STORE_HASH_LEN];
    uint8_t record_hash[ROOST_STORE_HASH_LEN];
} roost_store_round_info;

/* roost_store_list_rounds - up to cap rounds with id >= first_round in
 * ascending order into out; *n receives how many. */
int roost_store_list_rounds(roost_store *s, int64_t first_round,
                            roost_store_round_info *out, size_t cap, size_t *n,
                            roost_errmsg *em);

typedef struct roost_store_metric_value {
    char name[ROOST_STORE_METRIC_NAME_CAP];
    double value;
} roost_store_metric_value;

/* roost_store_round_metrics - the named metrics of a round, by name. When
 * there are more than cap, returns ROOST_ETOOSMALL with *n the count. */
int roost_store_round_metrics(roost_store *s, int64_t round_id,
                              roost_store_metric_value *out, size_t cap,
                              size_t *n, roost_errmsg *em);

/* Distribution of reported epsilon across clients. Quantiles interpolate
 * linearly between order statistics. n_clients 0: no reports (others
 * NaN). */
typedef struct roost_store_eps_stats {
    int64_t n_clients;
    double min, p25, median, p75, max;
} roost_store_eps_stats;

/* roost_store_epsilon_stats - round_id > 0: across the updates of that
 * round (one per client); round_id 0: each client's latest reported
 * epsilon over all rounds. */
int roost_store_epsilon_stats(roost_store *s, int64_t round_id,
                              roost_store_eps_stats *out, roost_errmsg *em);

/* Test hook: called with increasing point numbers between the statements
 * of a commit: 0 right after BEGIN IMMEDIATE, 1..10 between the writes
 * (ROOST_STORE_HOOK_LAST_IN_TXN is the last one before COMMIT), and
 * ROOST_STORE_HOOK_COMMITTED after COMMIT returned, so a test can kill the
 * process there. NULL removes it. Not for production use. */
#define ROOST_STORE_HOOK_LAST_IN_TXN 10
#define ROOST_STORE_HOOK_COMMITTED 11
typedef void (*roost_store_hook_fn)(void *arg, int point);
void roost_store_set_test_hook(roost_store *s, roost_store_hook_fn fn,
                               void *arg);

/*
 * roost_store_max_value_bytes - the largest checkpoint or strategy state
 * (in bytes) this handle can store: SQLite's SQLITE_LIMIT_LENGTH on its
 * connection (1e9 bytes unless SQLite was built with another
 * SQLITE_MAX_LENGTH), less 256 bytes for the rest of the row, since the
 * limit bounds whole rows too. The coordinator checks its model and
 * strategy state against it at start, so a run that could never commit a
 * round is refused there.
 */
size_t roost_store_max_value_bytes(roost_store *s);

/* Test hook: set SQLITE_LIMIT_LENGTH on this handle's connection
 * (sqlite3_limit; SQLite clamps it to its compiled maximum), so tests
 * reach the limit without gigabytes of data. Not for production use. */
void roost_store_set_sqlite_length_limit_for_testing(roost_store *s, int bytes);

/* roost_store_hex - lower-case hex of a hash into out (65 bytes). */
void roost_store_hex(const uint8_t hash[ROOST_STORE_HASH_LEN], char out[65]);

/* ---------------------------------------------------------------------
 * CRL numbers: for each CRL issuer (issuer name and CA key, identified by
 * roost_tls_crl_issuer.issuer_id, stored as issuer_key), the cRLNumber of
 * the CRL in force,
 * so that `roost serve` refuses an older CRL after a restart as on a
 * reload. Not chained. Schema version 4; older files give ROOST_ENOTSUP.
 * ------------------------------------------------------------------- */
#define ROOST_STORE_CRL_NUMBER_CAP 48
#define ROOST_STORE_CRL_ISSUER_CAP 256
typedef struct roost_store_crl {
    uint8_t issuer_key[ROOST_STORE_HASH_LEN];
    char issuer[ROOST_STORE_CRL_ISSUER_CAP]; /* RFC 2253, display only */
    /* 1..40 lowercase hex digits without leading zeros; "0" for a CRL
     * without a number. */
    char number[ROOST_STORE_CRL_NUMBER_CAP];
    uint8_t crl_sha256[ROOST_STORE_HASH_LEN]; /* of the CRL's DER */
    int64_t recorded_ms;                      /* put: 0 means now */
} roost_store_crl;

/* roost_store_get_crl - the record of one issuer into *out. ROOST_OK,
 * ROOST_ENOENT (none recorded), ROOST_ESTORE (SQLite failure or a damaged
 * row), ROOST_ENOTSUP (schema older than 4). */
int roost_store_get_crl(roost_store *s,
                        const uint8_t issuer_key[ROOST_STORE_HASH_LEN],
                        roost_store_crl *out, roost_errmsg *em);

/* roost_store_put_crls - record n issuers' CRLs in one durable
 * transaction, replacing what was recorded for them (lower numbers too:
 * the caller decides what may be recorded). ROOST_EINVAL for a malformed
 * number (nothing written), ROOST_ESTORE, ROOST_ESTATE (read-only),
 * ROOST_ENOTSUP. */
int roost_store_put_crls(roost_store *s, const roost_store_crl *crls, size_t n,
                         roost_errmsg *em);

#endif
