/*
 * test_ledger.c - the privacy ledger on real SQLite files in a temporary
 * directory: durability across reopen, refusal of missing, corrupt and
 * tampered ledgers, budget exhaustion, the release contract, and a crash
 * test that SIGKILLs charging children at injected points (and at random
 * times) and checks that the ledger never under-counts what was released.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/rng.h"
#include "dp/accountant.h"
#include "dp/ledger.h"
#include "sqlite_util.h"
#include "test_util.h"

struct fixture {
    char dir[256];
    char path[300];
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof(f->dir), "%s/roost_ledger_XXXXXX",
             tmp != NULL ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/ledger.db", f->dir);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static const roost_ledger_budget budget8 = {8.0, 1e-5};

/* The noise sampler's per-draw terms at the default grid (docs/privacy.md)
 * and the parameter count of the MLP: what a client records. */
#define TEST_MU 7.66e-16
#define TEST_BETA 6.97e-21
#define TEST_PARAMS 199210u

static roost_ledger_event
event(double q, double sigma, uint64_t steps, int64_t round)
{
    roost_ledger_event e = {q,       sigma,    steps, 1e-5,
                            round,   "task-a", 0,     steps * TEST_PARAMS,
                            TEST_MU, TEST_BETA};
    return e;
}

/* The epsilon a ledger of these events must report: the accountant's,
 * charged for the sampler at the budget's epsilon. */
static double
charged_epsilon(const roost_dp_event *ev, size_t n,
                const roost_ledger_budget *b, double *order)
{
    double draws = 0;
    for (size_t i = 0; i < n; i++)
        draws += (double)(ev[i].steps * TEST_PARAMS);
    double eps = -1;
    assert_int_equal(roost_dp_epsilon_sampled(ev, n, draws * TEST_MU,
                                              draws * TEST_BETA, b->epsilon_max,
                                              b->delta, &eps, order, NULL),
                     ROOST_OK);
    return eps;
}

static roost_ledger *
open_ok(const char *path, unsigned flags)
{
    roost_ledger *l = NULL;
    roost_errmsg em;
    int rc = roost_ledger_open(&l, NULL, path, flags, &budget8, &em);
    if (rc != ROOST_OK)
        print_error("open: %s\n", em.text);
    assert_int_equal(rc, ROOST_OK);
    return l;
}

static void
charge_ok(roost_ledger *l, roost_ledger_event e, roost_ledger_receipt *r)
{
    double after;
    int rc = roost_ledger_charge(l, &e, r, &after);
    if (rc != ROOST_OK)
        print_error("charge: %s\n", roost_ledger_errmsg(l));
    assert_int_equal(rc, ROOST_OK);
    assert_int_equal(roost_ledger_release(l, r), ROOST_OK);
}

/* Run SQL on the ledger file behind the library's back (the attacker). */
static void
raw_sql(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        print_error("%s: %s\n", sql, err);
    sqlite3_free(err);
    assert_int_equal(rc, SQLITE_OK);
    sqlite3_close(db);
}

static void
expect_refused(const char *path, const char *needle)
{
    roost_ledger *l = (roost_ledger *)1;
    roost_errmsg em;
    int rc = roost_ledger_open(&l, NULL, path, 0, NULL, &em);
    if (rc != ROOST_ELEDGER)
        print_error("open gave %s: %s\n", roost_errname(rc), em.text);
    assert_int_equal(rc, ROOST_ELEDGER);
    assert_null(l);
    if (needle != NULL && strstr(em.text, needle) == NULL) {
        print_error("message '%s' lacks '%s'\n", em.text, needle);
        fail();
    }
}

/* Copy a file byte for byte. */
static void
copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

static void
durable_across_reopen(void **state)
{
    struct fixture *f = *state;
    roost_ledger *l = open_ok(f->path, ROOST_LEDGER_CREATE);
    roost_ledger_receipt r;
    double eps;
    uint64_t n;
    assert_int_equal(roost_ledger_spent(l, &eps, NULL, &n), ROOST_OK);
    assert_near(eps, 0.0, 0);
    assert_int_equal(n, 0);
    charge_ok(l, event(0.01, 1.1, 100, 1), &r);
    assert_int_equal(r.seq, 1);
    charge_ok(l, event(0.02, 1.3, 50, 2), &r);
    charge_ok(l, event(0.01, 1.1, 100, 3), &r);
    assert_int_equal(r.seq, 3);
    roost_ledger_close(l);

    /* Reopen without CREATE: the events and the budget are all there, and
     * epsilon is the accountant's over exactly these events. */
    l = open_ok(f->path, 0);
    roost_ledger_budget b;
    roost_ledger_get_budget(l, &b);
    assert_near(b.epsilon_max, 8.0, 0);
    assert_near(b.delta, 1e-5, 0);
    double order;
    assert_int_equal(roost_ledger_spent(l, &eps, &order, &n), ROOST_OK);
    assert_int_equal(n, 3);
    roost_dp_event ev[3] = {
        {0.01, 1.1, 100}, {0.02, 1.3, 50}, {0.01, 1.1, 100}};
    double want_order;
    double want = charged_epsilon(ev, 3, &budget8, &want_order);
    assert_rel_near(eps, want, 1e-12);
    assert_near(order, want_order, 0);
    /* ... which is above the ideal Gaussian's: the sampler is charged. */
    double ideal;
    assert_int_equal(roost_dp_epsilon(ev, 3, 1e-5, &ideal, NULL, NULL),
                     ROOST_OK);
    assert_true(eps > ideal);
    /* The receipt of an earlier session still releases. */
    assert_int_equal(roost_ledger_release(l, &r), ROOST_OK);
    roost_ledger_close(l);

    /* Opening with CREATE an existing ledger keeps it; a different budget
     * is refused. */
    l = open_ok(f->path, ROOST_LEDGER_CREATE);
    assert_int_equal(roost_ledger_spent(l, &eps, NULL, &n), ROOST_OK);
    assert_int_equal(n, 3);
    roost_ledger_close(l);
    roost_ledger_budget other = {9.0, 1e-5};
    roost_errmsg em;
    assert_int_equal(
        roost_ledger_open(&l, NULL, f->path, ROOST_LEDGER_CREATE, &other, &em),
        ROOST_ECONFIG);
    assert_null(l);
    /* No stray temporary files from creation. */
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "test $(ls '%s' | wc -l) -eq 1", f->dir);
    assert_int_equal(system(cmd), 0);
}

static void
missing_ledger_refused(void **state)
{
    struct fixture *f = *state;
    expect_refused(f->path, "missing");
    /* And nothing was created by trying. */
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), -1);
    /* A ledger deleted after use is missing too: never a fresh budget. */
    roost_ledger *l = open_ok(f->path, ROOST_LEDGER_CREATE);
    roost_ledger_receipt r;
    charge_ok(l, event(0.01, 1.0, 10, 1), &r);
    roost_ledger_close(l);
    assert_int_equal(unlink(f->path), 0);
    expect_refused(f->path, "missing");
}

static void
invalid_arguments(void **state)
{
    struct fixture *f = *state;
    roost_ledger *l = NULL;
    roost_errmsg em;
    roost_ledger_budget bad = {-1.0, 1e-5};
    assert_int_equal(
        roost_ledger_open(&l, NULL, f->path, ROOST_LEDGER_CREATE, &bad, &em),
        ROOST_EINVAL);
    assert_int_equal(
        roost_ledger_open(&l, NULL, f->path, ROOST_LEDGER_CREATE, NULL, &em),
        ROOST_EINVAL);
    assert_int_equal(roost_ledger_open(&l, NULL, f->path, 0x80, NULL, &em),
                     ROOST_EINVAL);
    l = open_ok(f->path, ROOST_LEDGER_CREATE);
    roost_ledger_event e = event(1.5, 1.0, 1, 1);
    roost_ledger_receipt r;
    assert_int_equal(roost_ledger_plan(l, &e, NULL), ROOST_EINVAL);
    e = event(0.1, 0.0, 1, 1);
    assert_int_equal(roost_ledger_charge(l, &e, &r, NULL), ROOST_EINVAL);
    e = event(0.1, 1.0, UINT64_MAX, 1);
    assert_int_equal(roost_ledger_charge(l, &e, &r, NULL), ROOST_EINVAL);
    char long_id[300];
    memset(long_id, 'x', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    e = event(0.1, 1.0, 1, 1);
    e.task_id = long_id;
    assert_int_equal(roost_ledger_charge(l, &e, &r, NULL), ROOST_EINVAL);
    /* The sampler's figures: a noisy event must say what it drew. */
    e = event(0.1, 1.0, 10, 1);
    e.draws = 9;
    assert_int_equal(roost_ledger_plan(l, &e, NULL), ROOST_EINVAL);
    assert_non_null(strstr(roost_ledger_errmsg(l), "noise draws"));
    e.draws = 0;
    assert_int_equal(roost_ledger_charge(l, &e, &r, NULL), ROOST_EINVAL);
    e = event(0.1, 1.0, 10, 1);
    e.draws = ROOST_LEDGER_MAX_DRAWS + 1;
    assert_int_equal(roost_ledger_charge(l, &e, &r, NULL), ROOST_EINVAL);
    e = event(0.1, 1.0, 10, 1);
    e.mu = (double)NAN;
    assert_int_equal(roost_ledger_charge(l, &e, &r, NULL), ROOST_EINVAL);
    e = event(0.1, 1.0, 10, 1);
    e.beta = -1e-20;
    assert_int_equal(roost_ledger_plan(l, &e, NULL), ROOST_EINVAL);
    e = event(0.1, 1.0, 10, 1);
    e.mu = 0.0; /* draws but no sampler terms: left out by accident */
    assert_int_equal(roost_ledger_plan(l, &e, NULL), ROOST_EINVAL);
    assert_non_null(strstr(roost_ledger_errmsg(l), "roost_noise_closeness"));
    uint64_t n;
    double eps;
    assert_int_equal(roost_ledger_spent(l, &eps, NULL, &n), ROOST_OK);
    assert_int_equal(n, 0);
    roost_ledger_close(l);
    roost_ledger_close(NULL);
}

static void
corrupt_files_refused(void **state)
{
    struct fixture *f = *state;
    char good[320];
    snprintf(good, sizeof(good), "%s/good.db", f->dir);
    roost_ledger *l = open_ok(good, ROOST_LEDGER_CREATE);
    roost_ledger_receipt r;
    for (int i = 0; i < 20; i++)
        charge_ok(l, event(0.001, 2.0, 10, i), &r);
    roost_ledger_close(l);

    /* Not a database at all. */
    FILE *fp = fopen(f->path, "wb");
    assert_non_null(fp);
    fputs("this is not a ledger, just some text that is long enough to "
          "look like a header to nobody",
          fp);
    fclose(fp);
    expect_refused(f->path, NULL);
    /* CREATE never replaces a bad ledger with a fresh budget. */
    roost_errmsg em;
    assert_int_equal(roost_ledger_open(&l, NULL, f->path, ROOST_LEDGER_CREATE,
                                       &budget8, &em),
                     ROOST_ELEDGER);
    assert_null(l);
    expect_refused(f->path, NULL);

    /* An empty file (a crash of something else, or a truncation). */
    fp = fopen(f->path, "wb");
    fclose(fp);
    expect_refused(f->path, "not a Roost ledger");

    /* A SQLite database of another application. */
    unlink(f->path);
    raw_sql(f->path, "CREATE TABLE t(x)");
    expect_refused(f->path, "not a Roost ledger");

    /* The real ledger truncated to its first page. */
    copy_file(good, f->path);
    assert_int_equal(truncate(f->path, 4096), 0);
    expect_refused(f->path, NULL);

    /* Every byte of the second half of the file overwritten in turn would
     * take long; overwrite a few spans of page contents with garbage. */
    struct stat sb;
    assert_int_equal(stat(good, &sb), 0);
    for (off_t off = 200; off < sb.st_size; off += 1500) {
        copy_file(good, f->path);
        int fd = open(f->path, O_WRONLY);
        assert_true(fd >= 0);
        unsigned char junk[64];
        memset(junk, 0xA5, sizeof(junk));
        assert_int_equal(pwrite(fd, junk, sizeof(junk), off),
                         (ssize_t)sizeof(junk));
        close(fd);
        roost_ledger *c = NULL;
        int rc = roost_ledger_open(&c, NULL, f->path, 0, NULL, &em);
        /* Garbage in unused space may go unnoticed (the ledger is then
         * intact); anything that reaches data must be refused. */
        if (rc == ROOST_OK) {
            double eps;
            uint64_t n;
            assert_int_equal(roost_ledger_spent(c, &eps, NULL, &n), ROOST_OK);
            assert_int_equal(n, 20);
            roost_ledger_close(c);
        } else {
            assert_int_equal(rc, ROOST_ELEDGER);
            assert_null(c);
        }
    }
    /* The header page itself. */
    copy_file(good, f->path);
    int fd = open(f->path, O_WRONLY);
    assert_int_equal(pwrite(fd, "XXXXXXXX", 8, 0), 8);
    close(fd);
    expect_refused(f->path, NULL);
}

static void
tampering_refused(void **state)
{
    struct fixture *f = *state;
    char good[320];
    snprintf(good, sizeof(good), "%s/good.db", f->dir);
    roost_ledger *l = open_ok(good, ROOST_LEDGER_CREATE);
    roost_ledger_receipt r;
    for (int i = 1; i <= 5; i++)
        charge_ok(l, event(0.01, 1.0, 100, i), &r);
    roost_ledger_close(l);

    static const struct {
        const char *sql, *needle;
    } attacks[] = {
        {"UPDATE events SET sigma = 10.0 WHERE seq = 2", "hash"},
        {"UPDATE events SET steps = 1 WHERE seq = 5", "hash"},
        {"UPDATE events SET q = 0.0 WHERE seq = 1", "hash"},
        {"UPDATE events SET task_id = 'other' WHERE seq = 3", "hash"},
        {"DELETE FROM events WHERE seq = 5", "head records 5"},
        {"DELETE FROM events WHERE seq = 5; UPDATE head SET count = 4", NULL},
        {"DELETE FROM events WHERE seq = 3", "sequence"},
        {"DELETE FROM events", "head"},
        {"DELETE FROM events; UPDATE head SET count = 0",
         "does not match the chain of its 0 events"},
        {"UPDATE head SET count = 0", "head"},
        {"UPDATE budget SET epsilon_max = 100.0", "budget"},
        {"UPDATE budget SET delta = 0.5", "budget"},
        {"DELETE FROM budget", "budget"},
        {"DROP TABLE head", NULL},
        {"UPDATE events SET seq = seq + 10 WHERE seq = 5", "sequence"},
        {"PRAGMA user_version = 3", "schema version"},
        {"UPDATE events SET draws = draws - 1 WHERE seq = 2", "hash"},
        {"UPDATE events SET draws = 0 WHERE seq = 2", "sampler figures"},
        {"UPDATE events SET mu = 0.0 WHERE seq = 3", "sampler figures"},
        {"UPDATE events SET beta = 0.0 WHERE seq = 4", "sampler figures"},
        {"UPDATE events SET mu = mu * 2 WHERE seq = 3", "hash"},
        {"UPDATE events SET beta = beta / 2 WHERE seq = 4", "hash"},
        {"UPDATE events SET mu = 'x' WHERE seq = 4", "wrong type"},
        {"UPDATE events SET format = 1 WHERE seq = 1", "sampler figures"},
        {"UPDATE events SET format = 1, draws = 0, mu = 0.0, beta = 0.0 "
         "WHERE seq = 1",
         "hash"},
        {"UPDATE events SET format = 1, draws = 0, mu = 0.0, beta = 0.0 "
         "WHERE seq = 2",
         "follows one with them"},
        {"UPDATE events SET format = 3 WHERE seq = 1", "unknown format"},
        {"PRAGMA application_id = 7", "not a Roost ledger"},
    };
    for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
        copy_file(good, f->path);
        raw_sql(f->path, attacks[i].sql);
        expect_refused(f->path, attacks[i].needle);
    }

    /* Tampering while a handle is open is caught by the next plan. */
    copy_file(good, f->path);
    l = open_ok(f->path, 0);
    raw_sql(f->path, "UPDATE events SET sigma = 50.0 WHERE seq = 4");
    roost_ledger_event e = event(0.01, 1.0, 100, 6);
    double after;
    assert_int_equal(roost_ledger_plan(l, &e, &after), ROOST_ELEDGER);
    assert_int_equal(roost_ledger_charge(l, &e, &r, &after), ROOST_ELEDGER);
    roost_ledger_close(l);
}

static void
budget_exhaustion(void **state)
{
    struct fixture *f = *state;
    roost_ledger *l = NULL;
    roost_ledger_budget small = {2.0, 1e-5};
    roost_errmsg em;
    assert_int_equal(
        roost_ledger_open(&l, NULL, f->path, ROOST_LEDGER_CREATE, &small, &em),
        ROOST_OK);
    roost_ledger_event e = event(0.02, 1.0, 100, 0);
    roost_ledger_receipt r;
    double after, prev = 0.0;
    int charged = 0;
    for (;;) {
        e.round_id = charged + 1;
        int rc = roost_ledger_plan(l, &e, &after);
        if (rc == ROOST_EBUDGET)
            break;
        assert_int_equal(rc, ROOST_OK);
        assert_true(after > prev && after <= 2.0);
        charge_ok(l, e, &r);
        prev = after;
        charged++;
        assert_true(charged < 1000);
    }
    assert_true(charged >= 1);
    assert_true(after > 2.0);
    const char *msg = roost_ledger_errmsg(l);
    assert_non_null(strstr(msg, "privacy budget exceeded"));
    assert_non_null(strstr(msg, "above the budget of 2.0000"));
    /* Charge refuses too, and appends nothing. */
    assert_int_equal(roost_ledger_charge(l, &e, &r, NULL), ROOST_EBUDGET);
    double eps;
    uint64_t n;
    assert_int_equal(roost_ledger_spent(l, &eps, NULL, &n), ROOST_OK);
    assert_int_equal(n, (uint64_t)charged);
    assert_true(eps <= 2.0);
    /* A smaller event that fits is still accepted. */
    roost_ledger_event tiny = event(1e-6, 5.0, 1, 99);
    assert_int_equal(roost_ledger_plan(l, &tiny, &after), ROOST_OK);
    /* A sigma too small for any finite epsilon is over budget, not an
     * arithmetic error. */
    roost_ledger_event reckless = event(0.5, 1e-300, 1, 100);
    assert_int_equal(roost_ledger_plan(l, &reckless, &after), ROOST_EBUDGET);
    assert_non_null(strstr(roost_ledger_errmsg(l), "too small"));
    roost_ledger_close(l);

    /* The decision survives a reopen. */
    l = open_ok(f->path, 0);
    assert_int_equal(roost_ledger_plan(l, &e, &after), ROOST_EBUDGET);
    roost_ledger_close(l);
}

static void
release_contract(void **state)
{
    struct fixture *f = *state;
    roost_ledger *l = open_ok(f->path, ROOST_LEDGER_CREATE);
    roost_ledger_receipt r, forged;
    roost_ledger_event e = event(0.01, 1.0, 10, 1);
    assert_int_equal(roost_ledger_charge(l, &e, &r, NULL), ROOST_OK);
    assert_int_equal(roost_ledger_release(l, &r), ROOST_OK);
    forged = r;
    forged.seq = 2; /* never charged */
    assert_int_equal(roost_ledger_release(l, &forged), ROOST_ELEDGER);
    forged = r;
    forged.hash[0] ^= 1;
    assert_int_equal(roost_ledger_release(l, &forged), ROOST_ELEDGER);
    assert_non_null(strstr(roost_ledger_errmsg(l), "must not be sent"));
    roost_ledger_close(l);
}

struct hook_log {
    int points[16];
    int n;
};

static void
record_point(void *arg, int point)
{
    struct hook_log *h = arg;
    if (h->n < 16)
        h->points[h->n++] = point;
}

static void
hook_points_in_order(void **state)
{
    struct fixture *f = *state;
    roost_ledger *l = open_ok(f->path, ROOST_LEDGER_CREATE);
    struct hook_log h = {{0}, 0};
    roost_ledger_set_hook(l, record_point, &h);
    roost_ledger_receipt r;
    roost_ledger_event e = event(0.01, 1.0, 10, 1);
    assert_int_equal(roost_ledger_charge(l, &e, &r, NULL), ROOST_OK);
    assert_int_equal(h.n, 4);
    assert_int_equal(h.points[0], ROOST_LEDGER_POINT_BEGUN);
    assert_int_equal(h.points[1], ROOST_LEDGER_POINT_INSERTED);
    assert_int_equal(h.points[2], ROOST_LEDGER_POINT_PRECOMMIT);
    assert_int_equal(h.points[3], ROOST_LEDGER_POINT_COMMITTED);
    roost_ledger_close(l);
}

/* ---- crash test -------------------------------------------------------- */

/* Where a child kills itself: one of the charge's hook points, or in the
 * caller between charge and release, or after release before reporting. */
enum { KILL_AFTER_CHARGE = 5, KILL_AFTER_RELEASE = 6, KILL_NEVER = 7 };

struct kill_plan {
    int point;  /* hook point or KILL_* */
    int charge; /* on which charge of this child (1-based) */
    int current;
};

static void
kill_hook(void *arg, int point)
{
    struct kill_plan *k = arg;
    if (point == k->point && k->current == k->charge)
        raise(SIGKILL);
}

/* The child: charge, release, report each receipt on fd; stop at its kill
 * point or after max_charges (or run until killed from outside). */
static void
child_main(const char *path, int fd, struct kill_plan *k, int max_charges)
{
    roost_ledger *l = NULL;
    static const roost_ledger_budget big = {1e9, 1e-5};
    if (roost_ledger_open(&l, NULL, path, ROOST_LEDGER_CREATE, &big, NULL) !=
        ROOST_OK)
        _exit(3);
    roost_ledger_set_hook(l, kill_hook, k);
    for (k->current = 1; k->current <= max_charges; k->current++) {
        roost_ledger_event e = event(0.01, 1.0, 10, k->current);
        roost_ledger_receipt r;
        if (roost_ledger_charge(l, &e, &r, NULL) != ROOST_OK)
            _exit(4);
        if (k->point == KILL_AFTER_CHARGE && k->current == k->charge)
            raise(SIGKILL);
        if (roost_ledger_release(l, &r) != ROOST_OK)
            _exit(5);
        /* Released: the update would be sent now. Tell the parent. */
        if (write(fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
            _exit(6);
        if (k->point == KILL_AFTER_RELEASE && k->current == k->charge)
            raise(SIGKILL);
    }
    roost_ledger_close(l);
    _exit(0);
}

static void
killed_chargers_never_undercount(void **state)
{
    struct fixture *f = *state;
    enum { ROUNDS = 60, MAX_RECEIPTS = 4096 };
    static roost_ledger_receipt released[MAX_RECEIPTS];
    size_t n_released = 0;
    roost_rng *rng = NULL;
    assert_int_equal(roost_rng_create(&rng, NULL), ROOST_OK);
    int killed = 0;
    for (int round = 0; round < ROUNDS; round++) {
        struct kill_plan k = {0, 0, 0};
        bool random_kill = round % 3 == 2;
        k.point = random_kill ? KILL_NEVER : 1 + round % 6;
        k.charge = 1 + (round / 6) % 3;
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child_main(f->path, fds[1], &k, random_kill ? 1000000 : 4);
        }
        close(fds[1]);
        if (random_kill) {
            /* SIGKILL from outside at a random moment: inside SQLite's
             * commit, an fsync, or anywhere else. */
            uint64_t us;
            assert_int_equal(roost_rng_below(rng, 30000, &us), ROOST_OK);
            struct timespec ts = {0, (long)us * 1000L};
            nanosleep(&ts, NULL);
            kill(pid, SIGKILL);
        }
        roost_ledger_receipt r;
        ssize_t got;
        while ((got = read(fds[0], &r, sizeof(r))) == (ssize_t)sizeof(r)) {
            assert_true(n_released < MAX_RECEIPTS);
            released[n_released++] = r;
        }
        assert_int_equal(got, 0);
        close(fds[0]);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (WIFSIGNALED(status)) {
            assert_int_equal(WTERMSIG(status), SIGKILL);
            killed++;
        } else {
            assert_true(WIFEXITED(status));
            assert_int_equal(WEXITSTATUS(status), 0);
        }
        /* The parent's view: the ledger opens (no corruption from the
         * crash), holds at least every released event, and each released
         * receipt is still in it unchanged. */
        roost_ledger *l = NULL;
        roost_errmsg em;
        int rc = roost_ledger_open(&l, NULL, f->path, 0, NULL, &em);
        if (rc != ROOST_OK)
            print_error("round %d: %s\n", round, em.text);
        assert_int_equal(rc, ROOST_OK);
        double eps;
        uint64_t n;
        assert_int_equal(roost_ledger_spent(l, &eps, NULL, &n), ROOST_OK);
        assert_true(n >= n_released);
        for (size_t i = 0; i < n_released; i++)
            assert_int_equal(roost_ledger_release(l, &released[i]), ROOST_OK);
        roost_ledger_close(l);
    }
    roost_rng_destroy(rng);
    assert_true(killed >= ROUNDS / 2);
    assert_true(n_released > 0);
    print_message("crash test: %d rounds, %d children killed, %zu events "
                  "released, none lost\n",
                  ROUNDS, killed, n_released);
}

/* Build f->path from tests/dp/ledger_v1.sql: a ledger as the version 1
 * code wrote it (three events, no sampler figures). */
static void
load_v1_fixture(const char *path)
{
    const char *src = getenv("ROOST_SOURCE_DIR");
    assert_non_null(src);
    char name[512];
    snprintf(name, sizeof(name), "%s/tests/dp/ledger_v1.sql", src);
    FILE *fp = fopen(name, "rb");
    assert_non_null(fp);
    static char sql[16384];
    size_t n = fread(sql, 1, sizeof(sql) - 1, fp);
    assert_true(n > 0 && n < sizeof(sql) - 1);
    fclose(fp);
    sql[n] = '\0';
    raw_sql(path, sql);
    assert_int_equal(sql_int(path, "PRAGMA user_version"), 1);
}

/* A version 1 ledger is upgraded in place on open: its events stay and are
 * charged as before (they recorded no draws), new events carry the
 * sampler's figures, and a tampered version 1 file is refused and left as
 * it was. */
static void
version1_ledger_upgraded(void **state)
{
    struct fixture *f = *state;
    load_v1_fixture(f->path);
    roost_ledger *l = open_ok(f->path, 0);
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 2);
    roost_ledger_budget b;
    roost_ledger_get_budget(l, &b);
    assert_true(b.epsilon_max == 8.0 && b.delta == 1e-5);
    double eps, ideal;
    uint64_t n;
    roost_dp_event old = {0.05, 1.1, 60};
    assert_int_equal(roost_ledger_spent(l, &eps, NULL, &n), ROOST_OK);
    assert_int_equal(n, 3);
    assert_int_equal(roost_dp_epsilon(&old, 1, 1e-5, &ideal, NULL, NULL),
                     ROOST_OK);
    assert_rel_near(eps, ideal, 1e-12);
    /* The epsilon the version 1 code printed after its third charge. */
    assert_rel_near(eps, 2.742544697063297, 1e-12);
    roost_ledger_receipt r;
    charge_ok(l, event(0.01, 1.1, 100, 4), &r);
    assert_int_equal(r.seq, 4);
    roost_ledger_close(l);

    /* Reopened (no second upgrade): old events at no sampler charge, the
     * new one at its own. */
    l = open_ok(f->path, 0);
    assert_int_equal(roost_ledger_spent(l, &eps, NULL, &n), ROOST_OK);
    assert_int_equal(n, 4);
    roost_dp_event both[2] = {{0.05, 1.1, 60}, {0.01, 1.1, 100}};
    double draws = 100.0 * TEST_PARAMS;
    double want = -1;
    assert_int_equal(roost_dp_epsilon_sampled(both, 2, draws * TEST_MU,
                                              draws * TEST_BETA, 8.0, 1e-5,
                                              &want, NULL, NULL),
                     ROOST_OK);
    assert_rel_near(eps, want, 1e-12);
    roost_ledger_close(l);
    assert_int_equal(
        sql_int(f->path, "SELECT count(*) FROM events WHERE format = 1"), 3);
    assert_int_equal(
        sql_int(f->path, "SELECT count(*) FROM events WHERE format = 2"), 1);
    /* Version 1 code still running on the file fails: its statements name
     * the hash column, which the upgrade renamed. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_not_equal(
        sqlite3_exec(db,
                     "SELECT seq, q, sigma, steps, delta, round_id, task_id, "
                     "time_unix, prev_hash, hash FROM events ORDER BY seq",
                     NULL, NULL, NULL),
        SQLITE_OK);
    assert_non_null(strstr(sqlite3_errmsg(db), "no such column"));
    sqlite3_close(db);

    /* Tampered before the upgrade: refused, and not upgraded. */
    assert_int_equal(unlink(f->path), 0);
    load_v1_fixture(f->path);
    raw_sql(f->path, "UPDATE events SET steps = 2 WHERE seq = 2");
    expect_refused(f->path, "hash");
    assert_int_equal(sql_int(f->path, "PRAGMA user_version"), 1);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM pragma_table_info("
                                      "'events') WHERE name = 'draws'"),
                     0);
}

/* A budget whose epsilon the sampler's tail term alone rules out refuses
 * the task with a message that says so. */
static void
sampler_tail_refused(void **state)
{
    struct fixture *f = *state;
    roost_ledger *l = NULL;
    roost_ledger_budget big = {20.0, 1e-5};
    roost_errmsg em;
    assert_int_equal(
        roost_ledger_open(&l, NULL, f->path, ROOST_LEDGER_CREATE, &big, &em),
        ROOST_OK);
    /* n beta = 2^62 * 6.97e-21 = 3.2e-2 > 1e-5 even at epsilon 0. */
    roost_ledger_event e = event(0.01, 5.0, 100, 1);
    e.draws = ROOST_LEDGER_MAX_DRAWS;
    e.mu = 1e-30; /* the tail term alone */
    double after;
    assert_int_equal(roost_ledger_plan(l, &e, &after), ROOST_EBUDGET);
    assert_true(isinf(after));
    assert_non_null(strstr(roost_ledger_errmsg(l), "tail term"));
    roost_ledger_receipt r;
    assert_int_equal(roost_ledger_charge(l, &e, &r, NULL), ROOST_EBUDGET);
    /* The same event with the draws of a 200k-parameter model fits. */
    e = event(0.01, 5.0, 100, 1);
    assert_int_equal(roost_ledger_plan(l, &e, &after), ROOST_OK);
    assert_true(after < 20.0);
    roost_ledger_close(l);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(durable_across_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_ledger_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(invalid_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_files_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(tampering_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(version1_ledger_upgraded, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(sampler_tail_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(budget_exhaustion, setup, teardown),
        cmocka_unit_test_setup_teardown(release_contract, setup, teardown),
        cmocka_unit_test_setup_teardown(hook_points_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(killed_chargers_never_undercount, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
