/*
 * test_store.c - the coordinator's SQLite store on real files: commit and
 * read back, resume, crash atomicity (a child process SIGKILLs itself
 * between the statements of a commit), the hash chain and its detection
 * of single-row tampering, schema versioning and migration, retention and
 * the epsilon distribution.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/rng.h"
#include "server/store.h"
#include "server/store_fixture.h"
#include "sqlite_util.h"
#include "test_util.h"

#define N_PARAMS 1000
#define N_CLIENTS 10

/* ---------------------------------------------------------------------
 * Temporary directory per test.
 * ------------------------------------------------------------------- */
typedef struct tmpdir {
    char dir[256];
    char db[300];
} tmpdir;

static int
setup_tmp(void **state)
{
    tmpdir *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -1;
    const char *base = getenv("TMPDIR");
    snprintf(t->dir, sizeof(t->dir), "%s/roost_store_XXXXXX",
             base != NULL ? base : "/tmp");
    if (mkdtemp(t->dir) == NULL)
        return -1;
    snprintf(t->db, sizeof(t->db), "%s/coord.db", t->dir);
    *state = t;
    return 0;
}

static void
remove_db_files(const char *db)
{
    char p[340];
    unlink(db);
    snprintf(p, sizeof(p), "%s-wal", db);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", db);
    unlink(p);
    snprintf(p, sizeof(p), "%s-journal", db);
    unlink(p);
}

static int
teardown_tmp(void **state)
{
    tmpdir *t = *state;
    remove_db_files(t->db);
    rmdir(t->dir);
    free(t);
    return 0;
}

static roost_store *
open_rw(const char *path)
{
    roost_store *s = NULL;
    roost_errmsg em;
    int err = roost_store_open(&s, path, ROOST_STORE_CREATE, &em);
    if (err != ROOST_OK)
        fprintf(stderr, "open %s: %s\n", path, em.text);
    assert_int_equal(err, ROOST_OK);
    return s;
}

/* Run SQL on the file directly, as an attacker with the sqlite3 shell
 * would (foreign keys off, the shell's default). */
static void
raw_sql(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "%s: %s\n", sql, msg);
    sqlite3_free(msg);
    assert_int_equal(rc, SQLITE_OK);
    sqlite3_close(db);
}

static void
copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* ---------------------------------------------------------------------
 * Open.
 * ------------------------------------------------------------------- */
static void
open_create_and_refuse(void **state)
{
    tmpdir *t = *state;
    roost_store *s = NULL;
    roost_errmsg em;
    assert_int_equal(roost_store_open(&s, t->db, 0, &em), ROOST_ENOENT);
    assert_null(s);
    s = open_rw(t->db);
    assert_int_equal(roost_store_schema_version(s), ROOST_STORE_SCHEMA_VERSION);
    roost_store_close(s);
    roost_store_close(NULL);
    assert_int_equal(sql_int(t->db, "SELECT count(*) FROM schema_migrations"),
                     ROOST_STORE_SCHEMA_VERSION);
    assert_int_equal(sql_int(t->db, "PRAGMA application_id"),
                     ROOST_STORE_APPLICATION_ID);

    /* A SQLite file that is not ours. */
    char other[320];
    snprintf(other, sizeof(other), "%s/other.db", t->dir);
    raw_sql(other, "CREATE TABLE foo (x)");
    assert_int_equal(roost_store_open(&s, other, ROOST_STORE_CREATE, &em),
                     ROOST_ESTORE);
    assert_null(s);
    assert_non_null(strstr(em.text, "not a Roost coordinator database"));
    remove_db_files(other);

    roost_store_options opt;
    roost_store_options_init(&opt);
    opt.keep_last = 0;
    assert_int_equal(roost_store_open_ex(&s, t->db, &opt, &em), ROOST_EINVAL);
    assert_null(s);
}

static void
newer_schema_refused(void **state)
{
    tmpdir *t = *state;
    roost_store_close(open_rw(t->db));
    char sql[64], version[32];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d",
             ROOST_STORE_SCHEMA_VERSION + 1);
    snprintf(version, sizeof(version), "version %d",
             ROOST_STORE_SCHEMA_VERSION + 1);
    raw_sql(t->db, sql);
    roost_store *s = NULL;
    roost_errmsg em;
    assert_int_equal(roost_store_open(&s, t->db, 0, &em), ROOST_ENOTSUP);
    assert_null(s);
    assert_non_null(strstr(em.text, "newer"));
    assert_non_null(strstr(em.text, version));
    assert_int_equal(roost_store_open(&s, t->db, ROOST_STORE_READONLY, &em),
                     ROOST_ENOTSUP);
}

static void
migration_v1_to_latest(void **state)
{
    tmpdir *t = *state;
    roost_store_options opt;
    roost_store_options_init(&opt);
    opt.flags = ROOST_STORE_CREATE;
    opt.schema_version = 1;
    roost_store *s = NULL;
    roost_errmsg em;
    assert_int_equal(roost_store_open_ex(&s, t->db, &opt, &em), ROOST_OK);
    assert_int_equal(roost_store_schema_version(s), 1);
    /* v1 has no open_round table: the operation says so. */
    assert_int_equal(roost_store_note_open_round(s, 1, 0, 5, &em),
                     ROOST_ENOTSUP);
    int64_t run = fixture_add_run(s, N_PARAMS);
    assert_true(run > 0);
    assert_int_equal(fixture_commit_rounds(s, run, 1, 2, 5, N_PARAMS), 0);
    roost_store_close(s);

    /* Readers do not migrate. */
    assert_int_equal(roost_store_open(&s, t->db, ROOST_STORE_READONLY, &em),
                     ROOST_ENOTSUP);
    assert_non_null(strstr(em.text, "migrat"));

    s = open_rw(t->db);
    assert_int_equal(roost_store_schema_version(s), ROOST_STORE_SCHEMA_VERSION);
    assert_int_equal(roost_store_note_open_round(s, 3, 0, 5, &em), ROOST_OK);
    int64_t open_round, opened, nsel;
    assert_int_equal(
        roost_store_get_open_round(s, &open_round, &opened, &nsel, &em),
        ROOST_OK);
    assert_int_equal(open_round, 3);
    assert_int_equal(nsel, 5);
    assert_int_equal(fixture_commit_rounds(s, run, 3, 3, 5, N_PARAMS), 0);
    assert_int_equal(
        roost_store_get_open_round(s, &open_round, &opened, &nsel, &em),
        ROOST_OK);
    assert_int_equal(open_round, 0);
    int64_t bad = -1, n = 0;
    assert_int_equal(roost_store_verify_chain(s, &bad, &n, NULL, &em),
                     ROOST_OK);
    assert_int_equal(n, 3);
    roost_store_close(s);
    assert_int_equal(sql_int(t->db, "SELECT count(*) FROM schema_migrations"),
                     ROOST_STORE_SCHEMA_VERSION);
}

/* CRL numbers (schema version 4): per issuer key, the number put last
 * comes back, replacing what was there, lower or not (roost serve decides
 * what may be recorded); a malformed number is refused and writes nothing;
 * a version 3 file migrates and keeps its rounds. */
static void
crl_numbers_round_trip(void **state)
{
    tmpdir *t = *state;
    roost_store_options opt;
    roost_store_options_init(&opt);
    opt.flags = ROOST_STORE_CREATE;
    opt.schema_version = 3;
    roost_store *s = NULL;
    roost_errmsg em;
    assert_int_equal(roost_store_open_ex(&s, t->db, &opt, &em), ROOST_OK);
    roost_store_crl a;
    memset(&a, 0, sizeof(a));
    memset(a.issuer_key, 0xa1, sizeof(a.issuer_key));
    assert_int_equal(roost_store_get_crl(s, a.issuer_key, &a, &em),
                     ROOST_ENOTSUP);
    int64_t run = fixture_add_run(s, N_PARAMS);
    assert_int_equal(fixture_commit_rounds(s, run, 1, 2, 5, N_PARAMS), 0);
    roost_store_close(s);

    /* A reader opens the version 3 file as it is: its rounds audit, and
     * the table it lacks says so. */
    assert_int_equal(roost_store_open(&s, t->db, ROOST_STORE_READONLY, &em),
                     ROOST_OK);
    assert_int_equal(roost_store_schema_version(s), 3);
    int64_t bad_round = -1, n = 0;
    assert_int_equal(roost_store_verify_chain(s, &bad_round, &n, NULL, &em),
                     ROOST_OK);
    assert_int_equal(n, 2);
    assert_int_equal(roost_store_get_crl(s, a.issuer_key, &a, &em),
                     ROOST_ENOTSUP);
    roost_store_close(s);
    assert_int_equal(sql_int(t->db, "PRAGMA user_version"), 3);

    s = open_rw(t->db);
    assert_int_equal(roost_store_schema_version(s), 4);
    roost_store_crl put[2], got;
    memset(put, 0, sizeof(put));
    memset(put[0].issuer_key, 0xa1, sizeof(put[0].issuer_key));
    memset(put[1].issuer_key, 0xb2, sizeof(put[1].issuer_key));
    snprintf(put[0].issuer, sizeof(put[0].issuer), "CN=Roost CA");
    snprintf(put[1].issuer, sizeof(put[1].issuer), "CN=Roost CA");
    snprintf(put[0].number, sizeof(put[0].number), "1f");
    snprintf(put[1].number, sizeof(put[1].number), "0");
    memset(put[0].crl_sha256, 0x11, sizeof(put[0].crl_sha256));
    memset(put[1].crl_sha256, 0x22, sizeof(put[1].crl_sha256));
    assert_int_equal(roost_store_get_crl(s, put[0].issuer_key, &got, &em),
                     ROOST_ENOENT);
    assert_int_equal(roost_store_put_crls(s, put, 2, &em), ROOST_OK);
    assert_int_equal(roost_store_get_crl(s, put[0].issuer_key, &got, &em),
                     ROOST_OK);
    assert_string_equal(got.number, "1f");
    assert_string_equal(got.issuer, "CN=Roost CA");
    assert_memory_equal(got.crl_sha256, put[0].crl_sha256, 32);
    assert_true(got.recorded_ms > 0);
    assert_int_equal(roost_store_get_crl(s, put[1].issuer_key, &got, &em),
                     ROOST_OK);
    assert_string_equal(got.number, "0");

    snprintf(put[0].number, sizeof(put[0].number), "2");
    assert_int_equal(roost_store_put_crls(s, put, 1, &em), ROOST_OK);
    assert_int_equal(roost_store_get_crl(s, put[0].issuer_key, &got, &em),
                     ROOST_OK);
    assert_string_equal(got.number, "2");
    const char *bad[] = {"", "02", "1F", "x",
                         "12345678901234567890123456789"
                         "012345678901"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(put[1].number, sizeof(put[1].number), "%s", bad[i]);
        assert_int_equal(roost_store_put_crls(s, put, 2, &em), ROOST_EINVAL);
    }
    assert_int_equal(roost_store_get_crl(s, put[0].issuer_key, &got, &em),
                     ROOST_OK);
    assert_string_equal(got.number, "2");
    bad_round = -1;
    n = 0;
    assert_int_equal(roost_store_verify_chain(s, &bad_round, &n, NULL, &em),
                     ROOST_OK);
    assert_int_equal(n, 2);
    roost_store_close(s);
}

/* Version 2 files have no strategy_state table: loading says so, and a
 * commit that carries a state is refused whole (nothing half-written). */
static void
strategy_state_needs_v3(void **state)
{
    tmpdir *t = *state;
    roost_store_options opt;
    roost_store_options_init(&opt);
    opt.flags = ROOST_STORE_CREATE;
    opt.schema_version = 2;
    roost_store *s = NULL;
    roost_errmsg em;
    assert_int_equal(roost_store_open_ex(&s, t->db, &opt, &em), ROOST_OK);
    int64_t run = fixture_add_run(s, N_PARAMS);
    int64_t round = -1;
    void *buf = NULL;
    size_t len = 0;
    assert_int_equal(
        roost_store_load_strategy_state(s, &round, &buf, &len, &em),
        ROOST_ENOTSUP);
    fixture_round f;
    assert_int_equal(fixture_round_init(&f, run, 1, 3, N_PARAMS), 0);
    static const char blob[] = "state";
    f.commit.strategy_state = blob;
    f.commit.strategy_state_len = sizeof(blob);
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_ENOTSUP);
    fixture_round_free(&f);
    roost_store_head head;
    assert_int_equal(roost_store_last_committed_round(s, &head, &em), ROOST_OK);
    assert_int_equal(head.round_id, 0);
    roost_store_close(s);
}

/* The newest strategy state comes back byte for byte; older ones are
 * pruned by the commit that supersedes them; a round without a state
 * keeps the last one; a state whose bytes were edited is refused. */
static void
strategy_state_round_trip(void **state)
{
    tmpdir *t = *state;
    roost_store *s = open_rw(t->db);
    roost_errmsg em;
    int64_t run = fixture_add_run(s, N_PARAMS);
    int64_t round = -1, n = -1;
    void *buf = NULL;
    size_t len = 0;
    assert_int_equal(
        roost_store_load_strategy_state(s, &round, &buf, &len, &em),
        ROOST_ENOENT);
    unsigned char blob[300];
    for (int r = 1; r <= 3; r++) {
        for (size_t i = 0; i < sizeof(blob); i++)
            blob[i] = (unsigned char)(i * 7u + (unsigned)r);
        fixture_round f;
        assert_int_equal(fixture_round_init(&f, run, r, 3, N_PARAMS), 0);
        /* Round 3 records no state (a failed round keeps the old one). */
        if (r < 3) {
            f.commit.strategy_state = blob;
            f.commit.strategy_state_len = sizeof(blob) - (size_t)r;
        }
        assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                         ROOST_OK);
        fixture_round_free(&f);
    }
    assert_int_equal(sql_int(t->db, "SELECT count(*) FROM strategy_state"), 1);
    assert_int_equal(
        roost_store_load_strategy_state(s, &round, &buf, &len, &em), ROOST_OK);
    assert_int_equal(round, 2);
    assert_int_equal(len, sizeof(blob) - 2);
    assert_int_equal(((unsigned char *)buf)[5], (unsigned char)(35 + 2));
    free(buf);
    assert_int_equal(roost_store_count_rounds(s, "train", &n, &em), ROOST_OK);
    assert_int_equal(n, 3);
    assert_int_equal(roost_store_count_rounds(s, "eval", &n, &em), ROOST_OK);
    assert_int_equal(n, 0);
    roost_store_close(s);

    raw_sql(t->db, "UPDATE strategy_state SET state = zeroblob(298)");
    s = open_rw(t->db);
    buf = NULL;
    assert_int_equal(
        roost_store_load_strategy_state(s, &round, &buf, &len, &em),
        ROOST_EHASH);
    assert_null(buf);
    assert_non_null(strstr(em.text, "SHA-256"));
    roost_store_close(s);
}

/* A value above the store's limit (SQLite's length limit, lowered here to
 * 8 KiB instead of writing a gigabyte, less 256 bytes for the row) is
 * refused by name, with nothing written: a strategy state that does not
 * fit must not reach its row as NULL and fail as a NOT NULL constraint,
 * and a checkpoint that does not fit is refused the same way. A value of
 * exactly the limit fits. */
static void
oversized_values_are_refused_by_name(void **state)
{
    tmpdir *t = *state;
    roost_store *s = open_rw(t->db);
    roost_errmsg em;
    int64_t run = fixture_add_run(s, N_PARAMS);
    roost_store_set_sqlite_length_limit_for_testing(s, 8192);
    size_t max = roost_store_max_value_bytes(s);
    assert_int_equal(max, 8192 - 256);
    static unsigned char blob[8193];
    for (size_t i = 0; i < sizeof(blob); i++)
        blob[i] = (unsigned char)(i * 13u);
    fixture_round f;
    assert_int_equal(fixture_round_init(&f, run, 1, 3, N_PARAMS), 0);
    f.commit.strategy_state = blob;
    /* Above SQLite's own limit (it would refuse the bind). */
    f.commit.strategy_state_len = sizeof(blob);
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_ETOOBIG);
    assert_non_null(strstr(em.text, "strategy state of 8193 bytes"));
    /* Within it, but with no room left for the rest of the row. */
    f.commit.strategy_state_len = max + 1;
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_ETOOBIG);
    assert_non_null(strstr(em.text, "strategy state of 7937 bytes"));
    assert_non_null(strstr(em.text, "limit of 7936 bytes"));
    roost_store_head head;
    assert_int_equal(roost_store_last_committed_round(s, &head, &em), ROOST_OK);
    assert_int_equal(head.round_id, 0);
    f.commit.strategy_state_len = max;
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_OK);
    fixture_round_free(&f);
    /* A checkpoint: 1985 floats are 7940 bytes, 1984 exactly the limit. */
    for (size_t n = 1985; n >= 1984; n--) {
        roost_store_close(s);
        remove_db_files(t->db);
        s = open_rw(t->db);
        run = fixture_add_run(s, n);
        roost_store_set_sqlite_length_limit_for_testing(s, 8192);
        assert_int_equal(fixture_round_init(&f, run, 1, 3, n), 0);
        int want = n == 1985 ? ROOST_ETOOBIG : ROOST_OK;
        assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                         want);
        if (want != ROOST_OK)
            assert_non_null(strstr(em.text, "checkpoint of 7940 bytes"));
        fixture_round_free(&f);
        assert_int_equal(roost_store_last_committed_round(s, &head, &em),
                         ROOST_OK);
        assert_int_equal(head.round_id, want == ROOST_OK ? 1 : 0);
    }
    roost_store_close(s);
}

/* ---------------------------------------------------------------------
 * Commit and read back.
 * ------------------------------------------------------------------- */
static void
commit_and_read_back(void **state)
{
    tmpdir *t = *state;
    roost_store *s = open_rw(t->db);
    roost_errmsg em;
    roost_store_head head;
    assert_int_equal(roost_store_last_committed_round(s, &head, &em), ROOST_OK);
    assert_int_equal(head.round_id, 0);

    int64_t run = fixture_add_run(s, N_PARAMS);
    assert_true(run > 0);
    roost_store_run_info *ri = NULL;
    assert_int_equal(roost_store_get_run(s, 0, &ri, &em), ROOST_OK);
    assert_int_equal(ri->run_id, run);
    assert_int_equal(ri->n_params, N_PARAMS);
    assert_string_equal(ri->model_spec, "mlp:784-128-10");
    assert_non_null(strstr(ri->dp_json, "noise_multiplier"));
    roost_store_run_info_free(ri);
    roost_store_run_info_free(NULL);

    uint8_t returned[ROOST_STORE_HASH_LEN];
    for (int64_t r = 1; r <= 3; r++) {
        fixture_round f;
        assert_int_equal(fixture_round_init(&f, run, r, N_CLIENTS, N_PARAMS),
                         0);
        if (r == 2) {
            f.commit.round.has_central_dp = true;
            f.commit.round.cdp_noise_multiplier = 0.8;
            f.commit.round.cdp_clip_norm = 2.0;
            f.commit.round.cdp_epsilon = 3.5;
            f.commit.round.cdp_delta = 1e-6;
        }
        assert_int_equal(roost_store_commit_round(s, &f.commit, returned, &em),
                         ROOST_OK);
        fixture_round_free(&f);
    }

    assert_int_equal(roost_store_last_committed_round(s, &head, &em), ROOST_OK);
    assert_int_equal(head.round_id, 3);
    assert_int_equal(head.run_id, run);
    assert_int_equal(head.checkpoint_round, 3);
    assert_int_equal(head.n_params, N_PARAMS);
    assert_memory_equal(head.record_hash, returned, ROOST_STORE_HASH_LEN);

    float *want = malloc(N_PARAMS * sizeof(float));
    float *got = malloc(N_PARAMS * sizeof(float));
    fixture_params(want, N_PARAMS, 3);
    uint8_t h[ROOST_STORE_HASH_LEN];
    assert_int_equal(roost_store_model_hash(want, N_PARAMS, h), ROOST_OK);
    assert_memory_equal(h, head.model_hash, ROOST_STORE_HASH_LEN);
    assert_int_equal(roost_store_load_checkpoint(s, 3, got, N_PARAMS, &em),
                     ROOST_OK);
    assert_memory_equal(got, want, N_PARAMS * sizeof(float));
    assert_int_equal(roost_store_load_checkpoint(s, 3, got, N_PARAMS - 1, &em),
                     ROOST_ESHAPE);
    assert_int_equal(roost_store_load_checkpoint(s, 99, got, N_PARAMS, &em),
                     ROOST_ENOENT);

    roost_store_round_info rounds[8];
    size_t n = 0;
    assert_int_equal(roost_store_list_rounds(s, 1, rounds, 8, &n, &em),
                     ROOST_OK);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        const roost_store_round_info *r = &rounds[i];
        assert_int_equal(r->round_id, (int64_t)i + 1);
        assert_string_equal(r->kind, "train");
        assert_string_equal(r->strategy, "fedavg");
        assert_int_equal(r->state, ROOST_ROUND_COMMITTED);
        /* Derived: 10 clients, every fifth refused. */
        assert_int_equal(r->n_selected, 10);
        assert_int_equal(r->n_accepted, 8);
        assert_int_equal(r->n_refused, 2);
        assert_int_equal(r->n_dropped, 0);
        assert_int_equal(r->examples, 8 * 600);
        assert_near(r->eval_accuracy, 0.5 + 0.04 * (double)(i + 1), 1e-15);
        assert_int_equal(r->has_central_dp, i == 1);
    }
    assert_near(rounds[1].cdp_epsilon, 3.5, 0);
    assert_true(isnan(rounds[0].cdp_epsilon));
    assert_memory_equal(rounds[2].record_hash, returned, ROOST_STORE_HASH_LEN);
    /* Paging: cap 1 from round 2. */
    assert_int_equal(roost_store_list_rounds(s, 2, rounds, 1, &n, &em),
                     ROOST_OK);
    assert_int_equal(n, 1);
    assert_int_equal(rounds[0].round_id, 2);

    roost_store_metric_value mv[3];
    assert_int_equal(roost_store_round_metrics(s, 2, mv, 3, &n, &em), ROOST_OK);
    assert_int_equal(n, 3);
    assert_string_equal(mv[0].name, "round_seconds"); /* sorted by name */
    assert_near(mv[0].value, 3.5, 0);
    assert_int_equal(roost_store_round_metrics(s, 2, mv, 2, &n, &em),
                     ROOST_ETOOSMALL);
    assert_int_equal(n, 3);

    int64_t clients = 0;
    assert_int_equal(roost_store_count_clients(s, &clients, &em), ROOST_OK);
    assert_int_equal(clients, 12); /* client-0001 .. client-0012 */
    assert_int_equal(
        roost_store_upsert_client(s, "ab:cd", "CN=phone-7", 5, &em), ROOST_OK);
    assert_int_equal(roost_store_upsert_client(s, "ab:cd", NULL, 9, &em),
                     ROOST_OK);
    assert_int_equal(roost_store_upsert_client(s, "bad fp", NULL, 9, &em),
                     ROOST_EINVAL);
    assert_int_equal(roost_store_count_clients(s, &clients, &em), ROOST_OK);
    assert_int_equal(clients, 13);

    int64_t bad = -1, nr = 0;
    uint8_t chain_head[ROOST_STORE_HASH_LEN];
    assert_int_equal(roost_store_verify_chain(s, &bad, &nr, chain_head, &em),
                     ROOST_OK);
    assert_int_equal(bad, 0);
    assert_int_equal(nr, 3);
    assert_memory_equal(chain_head, returned, ROOST_STORE_HASH_LEN);
    free(want);
    free(got);
    roost_store_close(s);

    assert_int_equal(sql_int(t->db, "SELECT subject = 'CN=phone-7' AND"
                                    " first_seen_ms = 5 AND last_seen_ms = 9"
                                    " FROM clients WHERE fingerprint ="
                                    " 'ab:cd'"),
                     1);
}

static void
commit_refusals_leave_nothing(void **state)
{
    tmpdir *t = *state;
    roost_store *s = open_rw(t->db);
    roost_errmsg em;
    int64_t run = fixture_add_run(s, N_PARAMS);
    assert_int_equal(fixture_commit_rounds(s, run, 1, 1, 5, N_PARAMS), 0);
    fixture_round f;

    /* A round committed twice, or one skipped. */
    assert_int_equal(fixture_round_init(&f, run, 1, 5, N_PARAMS), 0);
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_ESTALE);
    f.commit.round.round_id = 3;
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_ESTALE);
    f.commit.round.round_id = 2;

    /* Duplicate participant: caught by the key, rolled back. */
    f.participants[1].fingerprint = f.participants[0].fingerprint;
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_EDUPLICATE);
    f.participants[1].fingerprint = f.fingerprints[1];

    f.params[7] = NAN;
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_ENONFINITE);
    f.params[7] = 0.25f;

    f.commit.n_params = N_PARAMS - 1;
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_ESHAPE);
    f.commit.n_params = N_PARAMS;

    f.commit.round.run_id = 42;
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_EINVAL);
    f.commit.round.run_id = run;

    f.metrics[1].name = "bad name!";
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_EINVAL);
    f.metrics[1].name = "round_seconds"; /* now a duplicate of metrics[0] */
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_EDUPLICATE);
    f.metrics[1].name = "ok";

    /* Two accepted updates from one client in a round: counted once
     * only, so refused by the store's unique index. */
    f.updates[1].fingerprint = f.updates[0].fingerprint;
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_EDUPLICATE);
    f.updates[1].accepted = false; /* a refused duplicate is recorded */
    f.updates[1].reason_code = ROOST_EDUPLICATE;
    f.updates[1].reason = "duplicate update";
    f.participants[1].status = ROOST_PART_REFUSED;

    f.updates[2].seq = 7;
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_EINVAL);
    f.updates[2].seq = 3;
    f.updates[2].examples_capped = f.updates[2].examples_reported + 1;
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_EINVAL);
    f.updates[2].examples_capped = 1;

    f.commit.round.state = ROOST_ROUND_FAILED;
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_EINVAL);
    f.commit.round.state = ROOST_ROUND_COMMITTED;
    f.commit.round.kind = "bogus";
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_EINVAL);
    f.commit.round.kind = "train";

    /* Nothing of the refused attempts is in the file. */
    roost_store_head head;
    assert_int_equal(roost_store_last_committed_round(s, &head, &em), ROOST_OK);
    assert_int_equal(head.round_id, 1);
    assert_int_equal(sql_int(t->db, "SELECT count(*) FROM participants"
                                    " WHERE round_id = 2"),
                     0);
    assert_int_equal(sql_int(t->db, "SELECT count(*) FROM metrics"
                                    " WHERE round_id = 2"),
                     0);
    /* And the corrected record commits. */
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_OK);
    fixture_round_free(&f);
    int64_t bad = -1;
    assert_int_equal(roost_store_verify_chain(s, &bad, NULL, NULL, &em),
                     ROOST_OK);
    roost_store_close(s);

    /* Readers cannot commit. */
    assert_int_equal(roost_store_open(&s, t->db, ROOST_STORE_READONLY, &em),
                     ROOST_OK);
    assert_int_equal(fixture_round_init(&f, run, 3, 5, N_PARAMS), 0);
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_ESTATE);
    fixture_round_free(&f);
    roost_store_close(s);
}

static void
failed_round_keeps_model(void **state)
{
    tmpdir *t = *state;
    roost_store *s = open_rw(t->db);
    roost_errmsg em;
    int64_t run = fixture_add_run(s, N_PARAMS);
    assert_int_equal(fixture_commit_rounds(s, run, 1, 1, 5, N_PARAMS), 0);
    roost_store_head h1, h2;
    assert_int_equal(roost_store_last_committed_round(s, &h1, &em), ROOST_OK);

    fixture_round f;
    assert_int_equal(fixture_round_init(&f, run, 2, 3, 0), 0);
    f.commit.round.state = ROOST_ROUND_FAILED;
    f.participants[0].status = ROOST_PART_DROPPED;
    f.participants[1].status = ROOST_PART_SELECTED;
    f.commit.n_updates = 1;
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_OK);
    fixture_round_free(&f);

    assert_int_equal(roost_store_last_committed_round(s, &h2, &em), ROOST_OK);
    assert_int_equal(h2.round_id, 2);
    assert_int_equal(h2.state, ROOST_ROUND_FAILED);
    assert_memory_equal(h2.model_hash, h1.model_hash, ROOST_STORE_HASH_LEN);
    assert_int_equal(h2.checkpoint_round, 1);
    float *p = malloc(N_PARAMS * sizeof(float));
    assert_int_equal(
        roost_store_load_checkpoint(s, h2.checkpoint_round, p, N_PARAMS, &em),
        ROOST_OK);
    assert_int_equal(roost_store_load_checkpoint(s, 2, p, N_PARAMS, &em),
                     ROOST_ENOENT);
    free(p);
    roost_store_round_info ri;
    size_t n = 0;
    assert_int_equal(roost_store_list_rounds(s, 2, &ri, 1, &n, &em), ROOST_OK);
    assert_int_equal(ri.n_selected, 3);
    assert_int_equal(ri.n_dropped, 1);
    assert_int_equal(ri.n_accepted, 1);
    int64_t bad = -1;
    assert_int_equal(roost_store_verify_chain(s, &bad, NULL, NULL, &em),
                     ROOST_OK);
    roost_store_close(s);
}

/* ---------------------------------------------------------------------
 * Resume: close, reopen, read the head, load its checkpoint, continue.
 * ------------------------------------------------------------------- */
static void
resume_from_last_committed(void **state)
{
    tmpdir *t = *state;
    roost_store *s = open_rw(t->db);
    roost_errmsg em;
    int64_t run = fixture_add_run(s, N_PARAMS);
    assert_int_equal(fixture_commit_rounds(s, run, 1, 4, 6, N_PARAMS), 0);
    roost_store_close(s);

    s = open_rw(t->db);
    roost_store_head head;
    assert_int_equal(roost_store_last_committed_round(s, &head, &em), ROOST_OK);
    assert_int_equal(head.round_id, 4);
    float *p = malloc(N_PARAMS * sizeof(float));
    float *want = malloc(N_PARAMS * sizeof(float));
    assert_int_equal(
        roost_store_load_checkpoint(s, head.checkpoint_round, p, N_PARAMS, &em),
        ROOST_OK);
    fixture_params(want, N_PARAMS, 4);
    assert_memory_equal(p, want, N_PARAMS * sizeof(float));
    assert_int_equal(
        fixture_commit_rounds(s, run, head.round_id + 1, 6, 6, N_PARAMS), 0);
    int64_t bad = -1, n = 0;
    assert_int_equal(roost_store_verify_chain(s, &bad, &n, NULL, &em),
                     ROOST_OK);
    assert_int_equal(n, 6);
    free(p);
    free(want);
    roost_store_close(s);
}

/* ---------------------------------------------------------------------
 * Crash atomicity: the child commits round 2 and SIGKILLs itself at hook
 * point k. Afterwards the file holds round 2 completely or not at all.
 * ------------------------------------------------------------------- */
static void
kill_at(void *arg, int point)
{
    if (point == *(const int *)arg)
        kill(getpid(), SIGKILL);
}

static void
crash_mid_commit_is_all_or_nothing(void **state)
{
    tmpdir *t = *state;
    char pristine[320];
    snprintf(pristine, sizeof(pristine), "%s/pristine.db", t->dir);
    roost_store *s = open_rw(pristine);
    int64_t run = fixture_add_run(s, N_PARAMS);
    assert_int_equal(fixture_commit_rounds(s, run, 1, 1, N_CLIENTS, N_PARAMS),
                     0);
    roost_store_close(s); /* checkpoints the WAL into the main file */

    for (int point = 0; point <= ROOST_STORE_HOOK_COMMITTED; point++) {
        remove_db_files(t->db);
        copy_file(pristine, t->db);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            roost_store *cs = NULL;
            if (roost_store_open(&cs, t->db, 0, NULL) != ROOST_OK)
                _exit(3);
            int at = point;
            roost_store_set_test_hook(cs, kill_at, &at);
            fixture_round f;
            if (fixture_round_init(&f, run, 2, N_CLIENTS, N_PARAMS) != 0)
                _exit(4);
            roost_store_commit_round(cs, &f.commit, NULL, NULL);
            _exit(5); /* the hook should have killed us */
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), SIGKILL);

        /* The -wal file of the killed writer is still there: reopening
         * must recover to a consistent state. */
        s = open_rw(t->db);
        roost_errmsg em;
        roost_store_head head;
        assert_int_equal(roost_store_last_committed_round(s, &head, &em),
                         ROOST_OK);
        bool committed = point == ROOST_STORE_HOOK_COMMITTED;
        assert_int_equal(head.round_id, committed ? 2 : 1);
        int64_t parts = sql_int(t->db, "SELECT count(*) FROM participants"
                                       " WHERE round_id = 2");
        int64_t ups = sql_int(t->db, "SELECT count(*) FROM updates"
                                     " WHERE round_id = 2");
        int64_t mets = sql_int(t->db, "SELECT count(*) FROM metrics"
                                      " WHERE round_id = 2");
        int64_t ckpt = sql_int(t->db, "SELECT count(*) FROM checkpoints"
                                      " WHERE round_id = 2");
        assert_int_equal(parts, committed ? N_CLIENTS : 0);
        assert_int_equal(ups, committed ? N_CLIENTS : 0);
        assert_int_equal(mets, committed ? 3 : 0);
        assert_int_equal(ckpt, committed ? 1 : 0);
        int64_t bad = -1;
        assert_int_equal(roost_store_verify_chain(s, &bad, NULL, NULL, &em),
                         ROOST_OK);
        /* The coordinator re-runs the round and commits it exactly once. */
        if (!committed)
            assert_int_equal(
                fixture_commit_rounds(s, run, 2, 2, N_CLIENTS, N_PARAMS), 0);
        fixture_round f;
        assert_int_equal(fixture_round_init(&f, run, 2, N_CLIENTS, N_PARAMS),
                         0);
        assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                         ROOST_ESTALE); /* never twice */
        fixture_round_free(&f);
        assert_int_equal(roost_store_verify_chain(s, &bad, NULL, NULL, &em),
                         ROOST_OK);
        roost_store_close(s);
    }
    remove_db_files(pristine);
}

/* ---------------------------------------------------------------------
 * kill -9 at random instants (inside SQLite's COMMIT, its fsyncs and WAL
 * checkpoints too, which the hook points cannot reach): after each kill
 * the head round is complete, nothing of a later round exists, the chain
 * verifies, and rounds only move forward.
 * ------------------------------------------------------------------- */
static int64_t
round_rows(const char *db, const char *table, const char *cmp, int64_t round)
{
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE round_id %s %lld",
             table, cmp, (long long)round);
    return sql_int(db, sql);
}

static void
kill_at_random_instants(void **state)
{
    tmpdir *t = *state;
    roost_store *s = open_rw(t->db);
    int64_t run = fixture_add_run(s, N_PARAMS);
    assert_true(run > 0);
    roost_store_close(s);
    roost_rng *rng = NULL;
    assert_int_equal(
        roost_rng_create_insecure_deterministic(&rng, NULL, 2026, 0), ROOST_OK);
    int64_t last = 0;
    for (int trial = 0; trial < 20; trial++) {
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            roost_store *cs = NULL;
            roost_store_head h;
            if (roost_store_open(&cs, t->db, 0, NULL) != ROOST_OK ||
                roost_store_last_committed_round(cs, &h, NULL) != ROOST_OK)
                _exit(3);
            for (int64_t r = h.round_id + 1;; r++) {
                fixture_round f;
                if (fixture_round_init(&f, run, r, N_CLIENTS, N_PARAMS) != 0 ||
                    roost_store_commit_round(cs, &f.commit, NULL, NULL) !=
                        ROOST_OK)
                    _exit(4);
                fixture_round_free(&f);
            }
        }
        uint64_t delay_us = 0;
        assert_int_equal(roost_rng_below(rng, 60000, &delay_us), ROOST_OK);
        struct timespec ts = {0, (long)delay_us * 1000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        /* Killed by us, not an early exit of the child. */
        assert_true(WIFSIGNALED(status));

        s = open_rw(t->db);
        roost_errmsg em;
        roost_store_head head;
        assert_int_equal(roost_store_last_committed_round(s, &head, &em),
                         ROOST_OK);
        int64_t bad = -1;
        assert_int_equal(roost_store_verify_chain(s, &bad, NULL, NULL, &em),
                         ROOST_OK);
        roost_store_close(s);
        assert_true(head.round_id >= last);
        last = head.round_id;
        if (head.round_id > 0) {
            assert_int_equal(
                round_rows(t->db, "participants", "=", head.round_id),
                N_CLIENTS);
            assert_int_equal(round_rows(t->db, "updates", "=", head.round_id),
                             N_CLIENTS);
            assert_int_equal(round_rows(t->db, "metrics", "=", head.round_id),
                             3);
            assert_int_equal(
                round_rows(t->db, "checkpoints", "=", head.round_id), 1);
        }
        assert_int_equal(round_rows(t->db, "participants", ">", head.round_id),
                         0);
        assert_int_equal(round_rows(t->db, "updates", ">", head.round_id), 0);
        assert_int_equal(round_rows(t->db, "checkpoints", ">", head.round_id),
                         0);
    }
    roost_rng_destroy(rng);
    print_message("kill -9 x20: %lld rounds committed in all\n",
                  (long long)last);
}

/* ---------------------------------------------------------------------
 * A reader (status, audit) opened while the coordinator is inside a
 * commit sees only committed rounds, and its chain verifies.
 * ------------------------------------------------------------------- */
struct reader_probe {
    const char *path;
    int point;
    int open_err, verify_err;
    int64_t head_round, n_rounds;
};

static void
read_during_commit(void *arg, int point)
{
    struct reader_probe *p = arg;
    if (point != p->point)
        return;
    roost_store *r = NULL;
    roost_errmsg em;
    p->open_err = roost_store_open(&r, p->path, ROOST_STORE_READONLY, &em);
    if (p->open_err != ROOST_OK)
        return;
    roost_store_head head;
    int64_t bad = 0;
    if (roost_store_last_committed_round(r, &head, &em) == ROOST_OK)
        p->head_round = head.round_id;
    p->verify_err = roost_store_verify_chain(r, &bad, &p->n_rounds, NULL, &em);
    roost_store_close(r);
}

static void
readers_see_only_committed_rounds(void **state)
{
    tmpdir *t = *state;
    roost_store *s = open_rw(t->db);
    int64_t run = fixture_add_run(s, N_PARAMS);
    assert_int_equal(fixture_commit_rounds(s, run, 1, 2, N_CLIENTS, N_PARAMS),
                     0);
    struct reader_probe probe = {
        t->db, ROOST_STORE_HOOK_LAST_IN_TXN, -1, -1, -1, -1};
    roost_store_set_test_hook(s, read_during_commit, &probe);
    assert_int_equal(fixture_commit_rounds(s, run, 3, 3, N_CLIENTS, N_PARAMS),
                     0);
    assert_int_equal(probe.open_err, ROOST_OK);
    assert_int_equal(probe.head_round, 2);
    assert_int_equal(probe.verify_err, ROOST_OK);
    assert_int_equal(probe.n_rounds, 2);
    roost_store_set_test_hook(s, NULL, NULL);
    roost_store_close(s);
}

/* A reader's snapshot spans several calls (roost status, report and
 * audit read the file in one): a round committed after read_begin is not
 * seen by any reader call, nor by the chain check, until read_end; the
 * open-round note and the head then agree. */
static void
reader_snapshot_spans_calls(void **state)
{
    tmpdir *t = *state;
    roost_store *s = open_rw(t->db);
    int64_t run = fixture_add_run(s, N_PARAMS);
    assert_int_equal(fixture_commit_rounds(s, run, 1, 2, N_CLIENTS, N_PARAMS),
                     0);
    roost_errmsg em;
    assert_int_equal(roost_store_note_open_round(s, 3, 1000, 5, &em), ROOST_OK);
    roost_store *r = NULL;
    assert_int_equal(roost_store_open(&r, t->db, ROOST_STORE_READONLY, &em),
                     ROOST_OK);
    assert_int_equal(roost_store_read_begin(r, &em), ROOST_OK);
    assert_int_equal(roost_store_read_begin(r, &em), ROOST_ESTATE);
    /* The coordinator commits round 3 (clearing its note) meanwhile. */
    assert_int_equal(fixture_commit_rounds(s, run, 3, 3, N_CLIENTS, N_PARAMS),
                     0);
    int64_t open_round = 0, opened = 0, selected = 0;
    assert_int_equal(
        roost_store_get_open_round(r, &open_round, &opened, &selected, &em),
        ROOST_OK);
    assert_int_equal(open_round, 3);
    roost_store_head head;
    assert_int_equal(roost_store_last_committed_round(r, &head, &em), ROOST_OK);
    assert_int_equal(head.round_id, 2);
    roost_store_round_info info[4];
    size_t n = 0;
    assert_int_equal(roost_store_list_rounds(r, 1, info, 4, &n, &em), ROOST_OK);
    assert_int_equal(n, 2);
    int64_t bad = -1, n_rounds = 0;
    assert_int_equal(roost_store_verify_chain(r, &bad, &n_rounds, NULL, &em),
                     ROOST_OK);
    assert_int_equal(n_rounds, 2);
    /* Still in the snapshot after the chain check. */
    assert_int_equal(roost_store_record_hash(r, 3, head.record_hash, &em),
                     ROOST_ENOENT);
    roost_store_read_end(r);
    assert_int_equal(
        roost_store_get_open_round(r, &open_round, &opened, &selected, &em),
        ROOST_OK);
    assert_int_equal(open_round, 0);
    assert_int_equal(roost_store_last_committed_round(r, &head, &em), ROOST_OK);
    assert_int_equal(head.round_id, 3);
    roost_store_read_end(r); /* none open: nothing happens */
    roost_store_close(r);
    roost_store_close(s);
}

/* ---------------------------------------------------------------------
 * Tampering: each single-row edit is detected and names the round.
 * ------------------------------------------------------------------- */
struct tamper_case {
    const char *sql;
    int64_t round; /* expected first bad round */
};

static const struct tamper_case tamper_cases[] = {
    {"UPDATE metrics SET value = value + 1 WHERE round_id = 3 AND"
     " name = 'round_seconds'",
     3},
    {"UPDATE participants SET status = 'dropped' WHERE round_id = 2 AND"
     " fingerprint = 'client-0003'",
     2},
    {"UPDATE updates SET l2_norm = 0.5 WHERE round_id = 4 AND seq = 1", 4},
    {"UPDATE checkpoints SET params = zeroblob(length(params))"
     " WHERE round_id = 5",
     5},
    {"UPDATE checkpoints SET params = substr(params, 1, 100)"
     " WHERE round_id = 4",
     4},
    {"UPDATE checkpoints SET n_params = 4611686018427387903"
     " WHERE round_id = 3",
     3},
    {"DELETE FROM rounds WHERE round_id = 3", 3},
    {"DELETE FROM rounds WHERE round_id = 3; DELETE FROM participants"
     " WHERE round_id = 3; DELETE FROM updates WHERE round_id = 3;"
     " DELETE FROM metrics WHERE round_id = 3;"
     " DELETE FROM checkpoints WHERE round_id = 3",
     3},
    {"UPDATE rounds SET eval_accuracy = 0.99 WHERE round_id = 2", 2},
    {"UPDATE rounds SET n_refused = 0 WHERE round_id = 5", 5},
    {"UPDATE rounds SET record_hash = zeroblob(32) WHERE round_id = 4", 4},
    {"INSERT INTO updates (round_id, seq, fingerprint, received_ms,"
     " accepted, reason_code, bytes, examples_reported, examples_capped)"
     " VALUES (4, 99, 'client-0001', 0, 1, 0, 10, 5, 5)",
     4},
    {"DELETE FROM updates WHERE round_id = 1 AND seq = 2", 1},
    {"INSERT INTO metrics VALUES (9, 'ghost', 1.0)", 9},
    {"UPDATE runs SET dp_json = '{}'", 1},
    {"UPDATE updates SET dp_epsilon = 0.01 WHERE round_id = 5 AND seq = 3", 5},
    {"UPDATE updates SET reason = 'fine' WHERE round_id = 2 AND seq = 5", 2},
    /* The largest round id SQLite holds: the verifier's arithmetic on ids
     * must not overflow (signed overflow is undefined; UBSan aborts). */
    {"UPDATE rounds SET round_id = 9223372036854775807 WHERE round_id = 5", 5},
};

static void
tampering_is_detected(void **state)
{
    tmpdir *t = *state;
    char pristine[320];
    snprintf(pristine, sizeof(pristine), "%s/pristine.db", t->dir);
    roost_store *s = open_rw(pristine);
    int64_t run = fixture_add_run(s, N_PARAMS);
    assert_int_equal(fixture_commit_rounds(s, run, 1, 5, N_CLIENTS, N_PARAMS),
                     0);
    roost_errmsg em;
    int64_t bad = -1;
    assert_int_equal(roost_store_verify_chain(s, &bad, NULL, NULL, &em),
                     ROOST_OK);
    roost_store_close(s);

    for (size_t i = 0; i < sizeof(tamper_cases) / sizeof(tamper_cases[0]);
         i++) {
        remove_db_files(t->db);
        copy_file(pristine, t->db);
        raw_sql(t->db, tamper_cases[i].sql);
        assert_int_equal(roost_store_open(&s, t->db, ROOST_STORE_READONLY, &em),
                         ROOST_OK);
        int err = roost_store_verify_chain(s, &bad, NULL, NULL, &em);
        if (err != ROOST_EHASH || bad != tamper_cases[i].round)
            fprintf(stderr, "case %zu (%s): err %d, round %lld: %s\n", i,
                    tamper_cases[i].sql, err, (long long)bad, em.text);
        assert_int_equal(err, ROOST_EHASH);
        assert_int_equal(bad, tamper_cases[i].round);
        char want[32];
        snprintf(want, sizeof(want), "round %lld", (long long)bad);
        assert_non_null(strstr(em.text, want));
        roost_store_close(s);
    }

    /* The limit stated in docs/store.md: removing the newest round with
     * all its rows leaves a shorter chain that verifies. Only a head hash
     * kept elsewhere (an anchor) exposes it. */
    remove_db_files(t->db);
    copy_file(pristine, t->db);
    s = open_rw(t->db);
    uint8_t anchor[ROOST_STORE_HASH_LEN], now[ROOST_STORE_HASH_LEN];
    assert_int_equal(roost_store_record_hash(s, 5, anchor, &em), ROOST_OK);
    roost_store_close(s);
    raw_sql(t->db, "DELETE FROM participants WHERE round_id = 5;"
                   " DELETE FROM updates WHERE round_id = 5;"
                   " DELETE FROM metrics WHERE round_id = 5;"
                   " DELETE FROM checkpoints WHERE round_id = 5;"
                   " DELETE FROM rounds WHERE round_id = 5");
    s = open_rw(t->db);
    assert_int_equal(roost_store_verify_chain(s, &bad, NULL, now, &em),
                     ROOST_OK);
    assert_memory_not_equal(now, anchor, ROOST_STORE_HASH_LEN);
    assert_int_equal(roost_store_record_hash(s, 5, now, &em), ROOST_ENOENT);
    roost_store_close(s);
    remove_db_files(pristine);
}

/* ---------------------------------------------------------------------
 * Corrupted files (audit runs on files an attacker may have written):
 * every reader returns an error code or a verdict, never crashes, leaks
 * or over-allocates (checked under ASan).
 * ------------------------------------------------------------------- */
static void
corrupted_files_are_refused_not_crashed_on(void **state)
{
    tmpdir *t = *state;
    char pristine[320];
    snprintf(pristine, sizeof(pristine), "%s/pristine.db", t->dir);
    roost_store *s = open_rw(pristine);
    int64_t run = fixture_add_run(s, N_PARAMS);
    assert_int_equal(fixture_commit_rounds(s, run, 1, 4, N_CLIENTS, N_PARAMS),
                     0);
    roost_store_close(s);
    struct stat sb;
    assert_int_equal(stat(pristine, &sb), 0);
    size_t size = (size_t)sb.st_size;
    float *buf = malloc(N_PARAMS * sizeof(float));
    assert_non_null(buf);
    int n_detected = 0;
    for (size_t trial = 0; trial < 40; trial++) {
        remove_db_files(t->db);
        copy_file(pristine, t->db);
        /* Overwrite 8 bytes at positions spread deterministically over
         * the file (header, b-tree pages, BLOB overflow pages). */
        FILE *f = fopen(t->db, "r+b");
        assert_non_null(f);
        for (size_t k = 0; k < 8; k++) {
            size_t pos = (trial * 104729 + k * 7919 + 100) % size;
            assert_int_equal(fseek(f, (long)pos, SEEK_SET), 0);
            fputc((int)((trial * 31 + k * 17 + 1) & 0xff), f);
        }
        fclose(f);
        roost_errmsg em;
        if (roost_store_open(&s, t->db, ROOST_STORE_READONLY, &em) !=
            ROOST_OK) {
            n_detected++;
            continue;
        }
        int64_t bad = 0, n = 0;
        int err = roost_store_verify_chain(s, &bad, &n, NULL, &em);
        assert_true(err == ROOST_OK || err == ROOST_EHASH ||
                    err == ROOST_ESTORE || err == ROOST_ENOENT);
        if (err != ROOST_OK)
            n_detected++;
        roost_store_head head;
        if (roost_store_last_committed_round(s, &head, &em) == ROOST_OK &&
            head.checkpoint_round > 0)
            (void)roost_store_load_checkpoint(s, head.checkpoint_round, buf,
                                              N_PARAMS, &em);
        roost_store_round_info ri[8];
        size_t nr = 0;
        (void)roost_store_list_rounds(s, 1, ri, 8, &nr, &em);
        roost_store_eps_stats st;
        (void)roost_store_epsilon_stats(s, 0, &st, &em);
        roost_store_close(s);
    }
    /* Many writes land in free space of the 64 KiB pages, which is
     * harmless and undetectable; some must hit chained data or structure
     * (9 of 40 when this was written). */
    assert_true(n_detected > 0);
    free(buf);
    remove_db_files(pristine);
}

/* A checkpoint scan that stops on an SQLite error must fail the audit,
 * not end it as if every checkpoint had been read. The edit below makes
 * the scan's first row raise an error (abs() of the smallest 64-bit
 * integer overflows), as a hostile file or an I/O error would; the
 * triggers only let the store prepare its writes against the view. */
static void
checkpoint_scan_error_fails_verify(void **state)
{
    tmpdir *t = *state;
    roost_store *s = open_rw(t->db);
    int64_t run = fixture_add_run(s, N_PARAMS);
    assert_int_equal(fixture_commit_rounds(s, run, 1, 2, N_CLIENTS, N_PARAMS),
                     0);
    roost_store_close(s);
    raw_sql(t->db, "ALTER TABLE checkpoints RENAME TO checkpoints_real;"
                   " CREATE VIEW checkpoints AS SELECT round_id, model_hash,"
                   " n_params + 0 * abs(round_id - 9223372036854775807 - 2)"
                   " AS n_params, params FROM checkpoints_real;"
                   " CREATE TRIGGER cp_ins INSTEAD OF INSERT ON checkpoints"
                   " BEGIN SELECT 1; END;"
                   " CREATE TRIGGER cp_del INSTEAD OF DELETE ON checkpoints"
                   " BEGIN SELECT 1; END;");
    roost_errmsg em;
    assert_int_equal(roost_store_open(&s, t->db, ROOST_STORE_READONLY, &em),
                     ROOST_OK);
    int64_t bad = -1;
    int err = roost_store_verify_chain(s, &bad, NULL, NULL, &em);
    if (err != ROOST_ESTORE)
        fprintf(stderr, "verify: err %d: %s\n", err, em.text);
    assert_int_equal(err, ROOST_ESTORE);
    assert_non_null(strstr(em.text, "listing checkpoints"));
    roost_store_close(s);
}

/* ---------------------------------------------------------------------
 * Retention: keep the last K and every M-th.
 * ------------------------------------------------------------------- */
static void
retention_keeps_last_and_every(void **state)
{
    tmpdir *t = *state;
    roost_store_options opt;
    roost_store_options_init(&opt);
    opt.flags = ROOST_STORE_CREATE;
    opt.keep_last = 2;
    opt.keep_every = 3;
    roost_store *s = NULL;
    roost_errmsg em;
    assert_int_equal(roost_store_open_ex(&s, t->db, &opt, &em), ROOST_OK);
    int64_t run = fixture_add_run(s, 100);
    assert_int_equal(fixture_commit_rounds(s, run, 1, 10, 3, 100), 0);
    /* Round 11 failed: no checkpoint, nothing more deleted. */
    fixture_round f;
    assert_int_equal(fixture_round_init(&f, run, 11, 3, 0), 0);
    f.commit.round.state = ROOST_ROUND_FAILED;
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_OK);
    fixture_round_free(&f);

    float p[100];
    const int kept[] = {3, 6, 9, 10};
    for (int r = 1; r <= 11; r++) {
        bool want = false;
        for (size_t i = 0; i < 4; i++)
            want = want || kept[i] == r;
        int err = roost_store_load_checkpoint(s, r, p, 100, &em);
        assert_int_equal(err, want ? ROOST_OK : ROOST_ENOENT);
    }
    roost_store_head head;
    assert_int_equal(roost_store_last_committed_round(s, &head, &em), ROOST_OK);
    assert_int_equal(head.checkpoint_round, 10);
    int64_t bad = -1;
    assert_int_equal(roost_store_verify_chain(s, &bad, NULL, NULL, &em),
                     ROOST_OK);
    roost_store_close(s);

    /* keep_every 0: only the last K. */
    remove_db_files(t->db);
    opt.keep_last = 1;
    opt.keep_every = 0;
    assert_int_equal(roost_store_open_ex(&s, t->db, &opt, &em), ROOST_OK);
    run = fixture_add_run(s, 100);
    assert_int_equal(fixture_commit_rounds(s, run, 1, 4, 3, 100), 0);
    roost_store_close(s);
    assert_int_equal(sql_int(t->db, "SELECT count(*) FROM checkpoints"), 1);
    assert_int_equal(sql_int(t->db, "SELECT round_id FROM checkpoints"), 4);
}

/* ---------------------------------------------------------------------
 * Epsilon distribution.
 * ------------------------------------------------------------------- */
static void
epsilon_distribution(void **state)
{
    tmpdir *t = *state;
    roost_store *s = open_rw(t->db);
    roost_errmsg em;
    int64_t run = fixture_add_run(s, 10);
    roost_store_eps_stats st;
    assert_int_equal(roost_store_epsilon_stats(s, 0, &st, &em), ROOST_OK);
    assert_int_equal(st.n_clients, 0);
    assert_true(isnan(st.median));

    /* Round 1: five clients report 1..5 (client 4 without DP). */
    fixture_round f;
    assert_int_equal(fixture_round_init(&f, run, 1, 5, 10), 0);
    const double eps1[] = {5, 1, 4, NAN, 2};
    for (size_t i = 0; i < 5; i++)
        f.updates[i].dp_epsilon = eps1[i];
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_OK);
    fixture_round_free(&f);
    assert_int_equal(roost_store_epsilon_stats(s, 1, &st, &em), ROOST_OK);
    assert_int_equal(st.n_clients, 4);
    assert_near(st.min, 1, 0);
    assert_near(st.median, 3, 1e-12); /* (2 + 4) / 2 */
    assert_near(st.max, 5, 0);
    assert_near(st.p25, 1.75, 1e-12);
    assert_near(st.p75, 4.25, 1e-12);

    /* Round 2: the same fingerprints shift by one (see the fixture), so
     * client-0002..0006 report; the latest report per client wins. */
    assert_int_equal(fixture_round_init(&f, run, 2, 5, 10), 0);
    for (size_t i = 0; i < 5; i++)
        f.updates[i].dp_epsilon = 10.0 + (double)i;
    assert_int_equal(roost_store_commit_round(s, &f.commit, NULL, &em),
                     ROOST_OK);
    fixture_round_free(&f);
    /* Clients: 0001 (latest 5, round 1), 0002..0006 (10..14). */
    assert_int_equal(roost_store_epsilon_stats(s, 0, &st, &em), ROOST_OK);
    assert_int_equal(st.n_clients, 6);
    assert_near(st.min, 5, 0);
    assert_near(st.max, 14, 0);
    assert_near(st.median, 11.5, 1e-12);
    roost_store_close(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(open_create_and_refuse, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(newer_schema_refused, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(migration_v1_to_latest, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(crl_numbers_round_trip, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(strategy_state_needs_v3, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(strategy_state_round_trip, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(oversized_values_are_refused_by_name,
                                        setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(commit_and_read_back, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(commit_refusals_leave_nothing,
                                        setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(failed_round_keeps_model, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(resume_from_last_committed, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(crash_mid_commit_is_all_or_nothing,
                                        setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(kill_at_random_instants, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(readers_see_only_committed_rounds,
                                        setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(reader_snapshot_spans_calls, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(tampering_is_detected, setup_tmp,
                                        teardown_tmp),
        cmocka_unit_test_setup_teardown(
            corrupted_files_are_refused_not_crashed_on, setup_tmp,
            teardown_tmp),
        cmocka_unit_test_setup_teardown(checkpoint_scan_error_fails_verify,
                                        setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(retention_keeps_last_and_every,
                                        setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(epsilon_distribution, setup_tmp,
                                        teardown_tmp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
