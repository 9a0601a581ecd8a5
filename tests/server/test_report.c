/*
 * test_report.c - `roost report` on real coordinator databases built here
 * with the store fixture: the page is well-formed (every tag closed, in
 * order), self-contained (no scripts, no external references), has one
 * SVG per chart with data drawn in it, shows the summary figures and the
 * chain's verdict, escapes operator text, says "BROKEN" after one row is
 * edited, and copes with an empty database. Runs the real program
 * ($ROOST_BIN); the rendering itself was checked by eye in headless
 * Chromium (docs/operations.md), which the suite does not depend on.
 */
#include "server/store.h"
#include "server/store_fixture.h"

#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

static char dir[256];

static int
setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/roost_report_XXXXXX");
    return mkdtemp(dir) != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void
path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* Run `roost report --db db -o html`; returns the exit status. The output
 * is capped at about 10 MB (a page here is a few hundred KB): a report
 * that never stops writing dies of SIGXFSZ and fails the test instead of
 * filling the disk. */
static int
run_report(const char *db, const char *html)
{
    const char *bin = getenv("ROOST_BIN");
    assert_non_null(bin);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "ulimit -f 20000; '%s' report --db '%s' -o '%s' 2>/dev/null", bin,
             db, html);
    int st = system(cmd);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static char *
slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static size_t
count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Every element is closed, in order, or self-closed with "/>"; text holds
 * no raw '<' (it would have to be escaped). Returns NULL or a problem. */
static const char *
check_well_formed(const char *html)
{
    static char problem[160];
    char stack[64][16];
    int depth = 0;
    const char *p = strstr(html, "<html");
    if (p == NULL || strncmp(html, "<!DOCTYPE html>\n", 16) != 0)
        return "no doctype or <html>";
    while ((p = strchr(p, '<')) != NULL) {
        const char *end = strchr(p, '>');
        if (end == NULL)
            return "unterminated tag";
        bool closing = p[1] == '/';
        const char *name = p + (closing ? 2 : 1);
        size_t len = strcspn(name, " />\n");
        if (len == 0 || len >= sizeof(stack[0]))
            return "bad tag name (raw '<' in text?)";
        bool self = !closing && end[-1] == '/';
        if (closing) {
            if (depth == 0 || strncmp(stack[depth - 1], name, len) != 0 ||
                stack[depth - 1][len] != '\0') {
                snprintf(problem, sizeof(problem), "</%.*s> closes <%s>",
                         (int)len, name, depth ? stack[depth - 1] : "nothing");
                return problem;
            }
            depth--;
        } else if (!self) {
            if (depth == 64)
                return "nesting too deep";
            memcpy(stack[depth], name, len);
            stack[depth][len] = '\0';
            depth++;
            if (strcmp(stack[depth - 1], "style") == 0) {
                /* CSS may hold '>' selectors; it must hold no '<'. */
                const char *close = strstr(end, "</style>");
                if (close == NULL || memchr(end, '<', (size_t)(close - end)))
                    return "bad <style>";
                p = close;
                continue;
            }
        }
        p = end + 1;
    }
    if (depth != 0) {
        snprintf(problem, sizeof(problem), "<%s> never closed",
                 stack[depth - 1]);
        return problem;
    }
    return NULL;
}

/* The page roost report writes for db (exit status 0, well-formed), as a
 * new string. */
static char *
report_page(const char *db, const char *html_path)
{
    assert_int_equal(run_report(db, html_path), 0);
    char *html = slurp(html_path);
    const char *problem = check_well_formed(html);
    if (problem != NULL)
        fail_msg("%s: not well-formed: %s", html_path, problem);
    return html;
}

/* The content of the <svg id="id">...</svg> element, as a new string. */
static char *
svg_of(const char *html, const char *id)
{
    char key[64];
    snprintf(key, sizeof(key), "<svg id=\"%s\"", id);
    const char *a = strstr(html, key);
    if (a == NULL)
        return NULL;
    const char *b = strstr(a, "</svg>");
    assert_non_null(b);
    return strndup(a, (size_t)(b - a));
}

/* A database of 12 rounds: round 5 failed (no quorum), rounds 9..12 with
 * central DP, an operator-chosen run name with markup in it. */
static void
make_db(const char *path)
{
    roost_store *s = NULL;
    roost_errmsg em;
    assert_int_equal(roost_store_open(&s, path, ROOST_STORE_CREATE, &em),
                     ROOST_OK);
    roost_store_run run = {
        .name = "<script>alert(1)</script> & co",
        .model_spec = "mlp:784-128-10",
        .n_params = 500,
        .strategy = "fedavg",
        .config_json = "{\"clients_per_round\": 10}",
        .created_ms = 1700000000000,
    };
    int64_t run_id = 0;
    assert_int_equal(roost_store_add_run(s, &run, &run_id, &em), ROOST_OK);
    for (int64_t r = 1; r <= 12; r++) {
        fixture_round f;
        assert_int_equal(fixture_round_init(&f, run_id, r, 10, 500), 0);
        if (r == 5) {
            f.commit.round.state = ROOST_ROUND_FAILED;
            f.commit.round.eval_accuracy = NAN;
            f.commit.round.eval_loss = NAN;
            f.commit.params = NULL;
            f.commit.n_params = 0;
            f.commit.n_updates = 3;
            f.commit.n_participants = 10;
            for (size_t i = 3; i < 10; i++)
                f.participants[i].status =
                    i < 6 ? ROOST_PART_DROPPED : ROOST_PART_SELECTED;
            f.participants[2].status = ROOST_PART_REFUSED;
            f.updates[2].accepted = false;
            f.updates[2].reason_code = ROOST_ENORM;
            f.updates[2].reason = "norm";
        }
        if (r >= 9) {
            f.commit.round.has_central_dp = true;
            f.commit.round.cdp_epsilon = 0.25 * (double)(r - 8);
            f.commit.round.cdp_delta = 1e-5;
            f.commit.round.cdp_noise_multiplier = 1.2;
            f.commit.round.cdp_clip_norm = 1.0;
        }
        if (roost_store_commit_round(s, &f.commit, NULL, &em) != ROOST_OK)
            fail_msg("round %d: %s", (int)r, em.text);
        fixture_round_free(&f);
    }
    roost_store_close(s);
}

static void
test_report_structure_and_figures(void **state)
{
    (void)state;
    char db[320], html_path[320];
    path_in(db, sizeof(db), "run.db");
    path_in(html_path, sizeof(html_path), "report.html");
    make_db(db);
    char *html = report_page(db, html_path);
    /* Self-contained. */
    assert_int_equal(count(html, "<script"), 0);
    assert_int_equal(count(html, "http"), count(html, "http://www.w3.org/"));
    assert_int_equal(count(html, " src="), 0);
    assert_int_equal(count(html, "<link"), 0);
    /* Operator text is escaped. */
    assert_non_null(strstr(html, "&lt;script&gt;alert(1)&lt;/script&gt; "
                                 "&amp; co"));

    /* One SVG per chart, each with its data drawn. */
    assert_int_equal(count(html, "<svg "), 4);
    char *acc = svg_of(html, "chart-accuracy");
    char *loss = svg_of(html, "chart-loss");
    char *eps = svg_of(html, "chart-epsilon");
    char *part = svg_of(html, "chart-participation");
    assert_non_null(acc);
    assert_non_null(loss);
    assert_non_null(eps);
    assert_non_null(part);
    /* 11 rounds with held-out accuracy (round 5 failed) + 12 reported. */
    assert_int_equal(count(acc, "<circle class=\"s-eacc"), 11);
    assert_int_equal(count(acc, "<circle class=\"s-tacc"), 12);
    assert_non_null(strstr(acc, "round 12: held-out (global model) 0.98<"));
    assert_int_equal(count(loss, "<circle class=\"s-eloss"), 11);
    /* The failed round splits the held-out line into two segments. */
    const char *d = strstr(acc, "<path class=\"s-eacc ln\" d=\"");
    assert_non_null(d);
    assert_int_equal(count(d, "M") - count(strstr(d, "\"/>"), "M"), 2);
    /* Epsilon: min, median, max per round and the central DP entries. */
    assert_int_equal(count(eps, "<circle class=\"s-med"), 12);
    assert_int_equal(count(eps, "<circle class=\"s-cdp"), 4);
    assert_non_null(strstr(eps, "class=\"s-band\""));
    /* Round 3: epsilons 0.3 + 0.01 i for i = 0..9: min 0.3, max 0.39. */
    assert_non_null(strstr(eps, "round 3: min 0.3<"));
    assert_non_null(strstr(eps, "round 3: max 0.39<"));
    assert_non_null(strstr(eps, "round 3: median 0.345<"));
    /* Participation: round 5 is marked failed with its breakdown. */
    assert_non_null(strstr(part, "round 5 failed (no quorum)"));
    assert_non_null(strstr(part, "round 5: 2 accepted of 10 selected"));
    assert_non_null(strstr(part, "round 5: 1 refused of 10 selected"));
    assert_non_null(strstr(part, "round 5: 3 dropped of 10 selected"));
    assert_non_null(strstr(part, "round 5: 4 no answer of 10 selected"));
    assert_non_null(strstr(part, "round 7: 8 accepted of 10 selected"));

    /* Summary and chain. */
    assert_non_null(strstr(html, "Hash chain intact</b>: 12 round records"));
    assert_non_null(strstr(html, "11 committed, 1 failed (no quorum)"));
    assert_non_null(strstr(html, "0.98 (last); best 0.98 in round 12"));
    assert_non_null(strstr(html, "<code>mlp:784-128-10</code>, 500 "
                                 "parameters"));
    /* The table has a row per round. */
    assert_int_equal(count(html, "<tr><td>"), 12 + 10 /* summary rows */);

    free(acc);
    free(loss);
    free(eps);
    free(part);
    free(html);

    /* Edit one committed figure behind the coordinator's back. */
    sqlite3 *raw = NULL;
    assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw,
                                  "UPDATE rounds SET eval_accuracy = 0.99 "
                                  "WHERE round_id = 7",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(raw);
    html = report_page(db, html_path);
    assert_non_null(strstr(html, "Hash chain BROKEN</b> (first bad round 7)"));
    free(html);

    /* A round kind that is not one the coordinator writes (the file was
     * edited, its CHECK constraint bypassed) is escaped like any other
     * stored text: it cannot open an element that hides the page. */
    assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw,
                                  "PRAGMA ignore_check_constraints = 1;"
                                  "UPDATE rounds SET kind = '<style>' "
                                  "WHERE round_id = 3",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(raw);
    html = report_page(db, html_path);
    assert_non_null(strstr(html, "&lt;style&gt; committed"));
    free(html);
}

/* A hostile file: the largest round id SQLite holds, and counts at the
 * ends of the 64-bit range. The page still renders (BROKEN at the top),
 * lists every round once, and sums no count past the range (signed
 * overflow is undefined behaviour, and a wrapped sum would show a
 * negative number of examples). */
static void
test_report_hostile_figures(void **state)
{
    (void)state;
    char db[320], html_path[320];
    path_in(db, sizeof(db), "hostile.db");
    path_in(html_path, sizeof(html_path), "hostile.html");
    make_db(db);
    sqlite3 *raw = NULL;
    assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(raw,
                     "UPDATE rounds SET round_id = 9223372036854775807 "
                     "WHERE round_id = 12;"
                     "UPDATE rounds SET examples = 9223372036854775807, "
                     "n_accepted = 9223372036854775807, n_refused = "
                     "9223372036854775807, n_selected = "
                     "-9223372036854775807 WHERE round_id = 3;"
                     "UPDATE rounds SET examples = 9223372036854775807 "
                     "WHERE round_id = 4",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(raw);
    char *html = report_page(db, html_path);
    assert_non_null(strstr(html, "Hash chain BROKEN</b> (first bad round 3)"));
    assert_int_equal(count(html, "<tr><td>"), 12 + 10 /* summary rows */);
    assert_null(strstr(html, "examples aggregated</td><td>-"));
    free(html);
}

/* Finite values an edited file (or an extreme run) may hold: a loss near
 * DBL_MAX, whose axis rounds up to infinity, and losses 16 apart at 1e17,
 * whose tick step is below the spacing of doubles there. Either left the
 * tick loops unable to advance, writing ticks for ever. The page must
 * still come out whole. */
static void
test_report_extreme_axes(void **state)
{
    (void)state;
    static const char *const edits[] = {
        "UPDATE rounds SET train_loss = 1.7e308 WHERE round_id = 2",
        "UPDATE rounds SET eval_loss = 1e17, train_loss = 1e17 + 16",
        "UPDATE updates SET dp_epsilon = 1.7e308 WHERE round_id = 3",
    };
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        char db[320], html_path[320];
        snprintf(db, sizeof(db), "%s/extreme%zu.db", dir, i);
        snprintf(html_path, sizeof(html_path), "%s/extreme%zu.html", dir, i);
        make_db(db);
        sqlite3 *raw = NULL;
        assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
        assert_int_equal(sqlite3_exec(raw, edits[i], NULL, NULL, NULL),
                         SQLITE_OK);
        sqlite3_close(raw);
        char *html = report_page(db, html_path);
        assert_int_equal(count(html, "<svg "), 4);
        free(html);
    }
}

static void
test_report_empty_database(void **state)
{
    (void)state;
    char db[320], html_path[320];
    path_in(db, sizeof(db), "empty.db");
    path_in(html_path, sizeof(html_path), "empty.html");
    roost_store *s = NULL;
    assert_int_equal(roost_store_open(&s, db, ROOST_STORE_CREATE, NULL),
                     ROOST_OK);
    roost_store_close(s);
    char *html = report_page(db, html_path);
    assert_int_equal(count(html, "<svg "), 4);
    assert_int_equal(count(html, "no rounds committed yet"), 4);
    assert_non_null(strstr(html, "Hash chain intact</b>: 0 round records"));
    assert_non_null(strstr(html, "none recorded"));
    free(html);
}

static void
test_report_errors(void **state)
{
    (void)state;
    char db[320], html_path[320];
    path_in(db, sizeof(db), "missing.db");
    path_in(html_path, sizeof(html_path), "x.html");
    assert_int_equal(run_report(db, html_path), 1);
    assert_int_equal(access(html_path, F_OK), -1);
    const char *bin = getenv("ROOST_BIN");
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "'%s' report --db x.db 2>/dev/null", bin);
    int st = system(cmd);
    assert_int_equal(WEXITSTATUS(st), 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_structure_and_figures),
        cmocka_unit_test(test_report_hostile_figures),
        cmocka_unit_test(test_report_extreme_axes),
        cmocka_unit_test(test_report_empty_database),
        cmocka_unit_test(test_report_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
