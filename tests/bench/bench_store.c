/*
 * bench_store.c - what the coordinator's SQLite store costs per round and
 * at restart, next to the raw durable I/O of the same bytes measured in
 * the same run on the same file system.
 *
 * Rounds carry an n-parameter checkpoint (default 1M float32 = 4 MiB) and
 * P participants with one update each (default 100). It prints the median
 * (and min/max) of R runs of:
 *   baseline write  write(2) of the 4n checkpoint bytes to a fresh file
 *                   plus fdatasync: the floor of making them durable;
 *   model hash      SHA-256 of the parameters (part of every commit);
 *   commit          roost_store_commit_round: one BEGIN IMMEDIATE ...
 *                   COMMIT with synchronous=FULL in WAL mode (round row,
 *                   P participants, P updates, metrics, checkpoint,
 *                   retention, chained record hash);
 *   baseline read   pread of the 4n bytes from a (cached) plain file,
 *                   and the same followed by SHA-256 of them (the floor
 *                   of a checked load);
 *   resume          open the store, read the last committed round, load
 *                   and hash-check its checkpoint (what a restarting
 *                   coordinator does);
 *   client upsert   roost_store_upsert_client, as at each check-in;
 *   verify          roost_store_verify_chain over all committed rounds
 *                   (what `roost audit` does).
 * The commit is also broken into its phases (timed through the store's
 * test hook), so the cost of the final COMMIT (WAL fsync and any
 * checkpoint of the WAL into the database) shows apart from the inserts.
 * and the ratios commit / baseline write and resume / baseline read.
 *
 * usage: bench_store [DIR [n_params [participants [runs]]]]
 *        DIR defaults to the current directory (use a real disk, not
 *        tmpfs, or fsync costs nothing).
 */
#include "server/store.h"
#include "tests/server/store_fixture.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Commit phases, timed through the store's test hook: point k is reached
 * after phase k of the commit (see roost_store_set_test_hook). */
#define N_POINTS (ROOST_STORE_HOOK_COMMITTED + 1)
static const char *const phase_names[N_POINTS] = {
    "BEGIN",        "round row",  "clients",   "participants/2",
    "participants", "updates",    "metrics",   "checkpoint",
    "retention",    "chain hash", "open note", "COMMIT (fsync)"};

struct phase_clock {
    double start;
    double at[N_POINTS];
};

static void
phase_hook(void *arg, int point)
{
    struct phase_clock *pc = arg;
    if (point >= 0 && point < N_POINTS)
        pc->at[point] = now_s();
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sort t[0..n) and print "median (min .. max)" in milliseconds. */
static double
report(const char *what, double *t, size_t n)
{
    qsort(t, n, sizeof(*t), cmp_double);
    double med = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    printf("  %-16s median %9.3f ms   (min %9.3f, max %9.3f, %zu runs)\n", what,
           1e3 * med, 1e3 * t[0], 1e3 * t[n - 1], n);
    return med;
}

static void
remove_db(const char *db)
{
    char p[4200];
    unlink(db);
    snprintf(p, sizeof(p), "%s-wal", db);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", db);
    unlink(p);
}

int
main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    size_t n_params = argc > 2 ? (size_t)atol(argv[2]) : 1000000;
    size_t n_clients = argc > 3 ? (size_t)atol(argv[3]) : 100;
    size_t runs = argc > 4 ? (size_t)atol(argv[4]) : 9;
    if (n_params == 0 || runs == 0 || runs > 1000) {
        fprintf(stderr, "usage: bench_store [DIR [n_params [participants "
                        "[runs]]]]\n");
        return 2;
    }
    char db[4096], raw[4096];
    snprintf(db, sizeof(db), "%s/bench_store.db", dir);
    snprintf(raw, sizeof(raw), "%s/bench_store.raw", dir);
    remove_db(db);

    double *t_write = calloc(runs, sizeof(double));
    double *t_hash = calloc(runs, sizeof(double));
    double *t_commit = calloc(runs, sizeof(double));
    double *t_read = calloc(runs, sizeof(double));
    double *t_resume = calloc(runs, sizeof(double));
    double *t_read_hash = calloc(runs, sizeof(double));
    double *t_open = calloc(runs, sizeof(double));
    float *buf = calloc(n_params, sizeof(float));
    if (!t_write || !t_hash || !t_commit || !t_read || !t_resume || !buf ||
        !t_read_hash || !t_open)
        return 1;
    size_t bytes = n_params * sizeof(float);
    printf("bench_store: %zu parameters (%.1f MiB checkpoint), %zu "
           "participants + %zu updates per round, %zu runs, in %s\n",
           n_params, (double)bytes / 1048576.0, n_clients, n_clients, runs,
           dir);

    roost_store *s = NULL;
    roost_errmsg em;
    if (roost_store_open(&s, db, ROOST_STORE_CREATE, &em) != ROOST_OK) {
        fprintf(stderr, "bench_store: %s\n", em.text);
        return 1;
    }
    int64_t run = fixture_add_run(s, n_params);
    struct phase_clock pc;
    double *t_phase = calloc(runs * N_POINTS, sizeof(double));
    if (t_phase == NULL)
        return 1;
    roost_store_set_test_hook(s, phase_hook, &pc);
    for (size_t i = 0; i < runs; i++) {
        int64_t round = (int64_t)i + 1;
        fixture_round f;
        if (fixture_round_init(&f, run, round, n_clients, n_params) != 0)
            return 1;

        /* Baseline: the same bytes, written and made durable. */
        double t0 = now_s();
        int fd = open(raw, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || write(fd, f.params, bytes) != (ssize_t)bytes ||
            fdatasync(fd) != 0) {
            perror("bench_store: baseline write");
            return 1;
        }
        close(fd);
        t_write[i] = now_s() - t0;

        uint8_t h[ROOST_STORE_HASH_LEN];
        t0 = now_s();
        roost_store_model_hash(f.params, n_params, h);
        t_hash[i] = now_s() - t0;

        t0 = now_s();
        pc.start = t0;
        if (roost_store_commit_round(s, &f.commit, NULL, &em) != ROOST_OK) {
            fprintf(stderr, "bench_store: commit: %s\n", em.text);
            return 1;
        }
        t_commit[i] = now_s() - t0;
        /* Phase k lasts from point k-1 (or the call) to point k; phase 0
         * includes validation and hashing the parameters. */
        for (int k = 0; k < N_POINTS; k++)
            t_phase[(size_t)k * runs + i] =
                pc.at[k] - (k == 0 ? pc.start : pc.at[k - 1]);
        fixture_round_free(&f);
    }
    roost_store_close(s);

    for (size_t i = 0; i < runs; i++) {
        double t0 = now_s();
        int fd = open(raw, O_RDONLY);
        if (fd < 0 || pread(fd, buf, bytes, 0) != (ssize_t)bytes) {
            perror("bench_store: baseline read");
            return 1;
        }
        close(fd);
        t_read[i] = now_s() - t0;

        uint8_t h[ROOST_STORE_HASH_LEN];
        roost_store_model_hash(buf, n_params, h);
        t_read_hash[i] = now_s() - t0;

        t0 = now_s();
        roost_store_head head;
        if (roost_store_open(&s, db, 0, &em) != ROOST_OK) {
            fprintf(stderr, "bench_store: open: %s\n", em.text);
            return 1;
        }
        t_open[i] = now_s() - t0;
        if (roost_store_last_committed_round(s, &head, &em) != ROOST_OK ||
            roost_store_load_checkpoint(s, head.checkpoint_round, buf, n_params,
                                        &em) != ROOST_OK) {
            fprintf(stderr, "bench_store: resume: %s\n", em.text);
            return 1;
        }
        t_resume[i] = now_s() - t0;
        roost_store_close(s);
    }

    /* Check-ins: one client upsert each, outside any round transaction. */
    enum { N_UPSERTS = 200 };
    double t_upsert[N_UPSERTS];
    if (roost_store_open(&s, db, 0, &em) != ROOST_OK)
        return 1;
    for (size_t i = 0; i < N_UPSERTS; i++) {
        char fp[32];
        snprintf(fp, sizeof(fp), "checkin-%04zu", i);
        double t0 = now_s();
        if (roost_store_upsert_client(s, fp, "CN=bench", 0, &em) != ROOST_OK) {
            fprintf(stderr, "bench_store: upsert: %s\n", em.text);
            return 1;
        }
        t_upsert[i] = now_s() - t0;
    }
    roost_store_close(s);

    if (roost_store_open(&s, db, ROOST_STORE_READONLY, &em) != ROOST_OK)
        return 1;
    int64_t bad = 0, n_rounds = 0;
    double t0 = now_s();
    int err = roost_store_verify_chain(s, &bad, &n_rounds, NULL, &em);
    double t_verify = now_s() - t0;
    roost_store_close(s);
    if (err != ROOST_OK) {
        fprintf(stderr, "bench_store: verify: %s\n", em.text);
        return 1;
    }

    double w = report("baseline write", t_write, runs);
    report("model hash", t_hash, runs);
    double c = report("commit", t_commit, runs);
    for (int k = 0; k < N_POINTS; k++) {
        char name[48];
        snprintf(name, sizeof(name), "  %s", phase_names[k]);
        report(name, t_phase + (size_t)k * runs, runs);
    }
    report("baseline read", t_read, runs);
    double r = report("read + SHA-256", t_read_hash, runs);
    double z = report("resume", t_resume, runs);
    report("  of which open", t_open, runs);
    report("client upsert", t_upsert, N_UPSERTS);
    printf("  %-16s %9.3f ms for %lld rounds (3 checkpoints kept)\n",
           "verify chain", 1e3 * t_verify, (long long)n_rounds);
    printf("ratio commit / baseline write (write + fdatasync) = %.2f\n", c / w);
    printf("ratio resume / baseline read + SHA-256 (pread, cached) = %.2f\n",
           z / r);

    remove_db(db);
    unlink(raw);
    free(t_write);
    free(t_hash);
    free(t_commit);
    free(t_read);
    free(t_resume);
    free(t_phase);
    free(t_read_hash);
    free(t_open);
    free(buf);
    return 0;
}
