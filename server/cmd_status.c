/*
 * cmd_status.c - `roost status --db FILE [--json]`: the coordinator's state
 * as its database records it: the run, the round in progress (if the
 * coordinator noted one), the last committed round with its participants,
 * accuracy and loss, and the distribution across clients of the latest
 * epsilon each one reported. Read-only; safe while the coordinator runs
 * (WAL readers do not block it).
 */
#include "common/wire.h"
#include "server/cli.h"
#include "server/store.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STATUS_MAX_ROUNDS 1000

static const char status_usage[] =
    "usage: roost status --db FILE [--json] [--rounds N]\n"
    "\n"
    "Show the coordinator's state from its database: run settings, the\n"
    "round in progress, the last committed round (participants, accuracy,\n"
    "loss, central DP entry), the distribution across clients of the\n"
    "latest epsilon each reported (min, quartiles, median, max), and the\n"
    "last few rounds.\n"
    "\n"
    "  --db FILE   the coordinator's SQLite file (opened read-only)\n"
    "  --json      print one JSON object instead of text\n"
    "  --rounds N  also list the last N committed rounds (default 5, 0..1000)\n"
    "              with participation, accuracy, loss and the median epsilon\n"
    "              reported in each\n";

/* ISO 8601 UTC of a Unix time in milliseconds. */
static void
format_time(int64_t ms, char *out, size_t cap)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    if (ms <= 0 || gmtime_r(&secs, &tm) == NULL) {
        snprintf(out, cap, "-");
        return;
    }
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A JSON string literal (quotes included); control characters escaped. */
static void
json_string(FILE *f, const char *s)
{
    if (s == NULL) {
        fputs("null", f);
        return;
    }
    /* JSON text is Unicode: well-formed UTF-8 passes through, and each
     * byte of anything else (a Latin-1 file name, a run name from an old
     * config) becomes U+FFFD, so the output always parses. */
    fputc('"', f);
    const uint8_t *p = (const uint8_t *)s;
    size_t n = strlen(s);
    while (n > 0) {
        size_t ok = roost_wire_utf8_bad_offset(p, n);
        for (size_t i = 0; i < ok; i++) {
            if (p[i] == '"' || p[i] == '\\')
                fprintf(f, "\\%c", p[i]);
            else if (p[i] < 0x20 || p[i] == 0x7f)
                fprintf(f, "\\u%04x", p[i]);
            else
                fputc(p[i], f);
        }
        if (ok == n)
            break;
        fputs("\\ufffd", f);
        p += ok + 1;
        n -= ok + 1;
    }
    fputc('"', f);
}

/* A JSON number in the fewest digits that read back to the same double,
 * or null for NaN/inf (not representable in JSON). */
static void
json_number(FILE *f, double v)
{
    if (!isfinite(v)) {
        fputs("null", f);
        return;
    }
    char buf[32];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, sizeof(buf), "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    fputs(buf, f);
}

struct status {
    const char *db;
    int schema_version;
    roost_store_run_info *run; /* NULL: no run recorded */
    int64_t open_round, opened_ms, open_selected;
    bool have_last;
    roost_store_round_info last;
    int64_t clients;
    roost_store_eps_stats eps;
    size_t n_recent;                /* rounds in recent[] */
    roost_store_round_info *recent; /* ascending */
    double *recent_eps_median;      /* per recent round, NaN: no reports */
};

static void
print_json(const struct status *st)
{
    FILE *f = stdout;
    char hex[65];
    fputs("{\"db\": ", f);
    json_string(f, st->db);
    fprintf(f, ", \"schema_version\": %d, \"run\": ", st->schema_version);
    if (st->run != NULL) {
        fprintf(f, "{\"run_id\": %" PRId64 ", \"name\": ", st->run->run_id);
        json_string(f, st->run->name);
        fputs(", \"model_spec\": ", f);
        json_string(f, st->run->model_spec);
        fprintf(f, ", \"n_params\": %" PRIu64 ", \"strategy\": ",
                st->run->n_params);
        json_string(f, st->run->strategy);
        fputs("}", f);
    } else {
        fputs("null", f);
    }
    fputs(", \"open_round\": ", f);
    if (st->open_round > 0)
        fprintf(f,
                "{\"round\": %" PRId64 ", \"opened_ms\": %" PRId64
                ", \"selected\": %" PRId64 "}",
                st->open_round, st->opened_ms, st->open_selected);
    else
        fputs("null", f);
    fputs(", \"last_round\": ", f);
    if (st->have_last) {
        const roost_store_round_info *r = &st->last;
        fprintf(f, "{\"round\": %" PRId64 ", \"kind\": ", r->round_id);
        json_string(f, r->kind);
        fputs(", \"state\": ", f);
        json_string(f, r->state == ROOST_ROUND_FAILED ? "failed" : "committed");
        fprintf(f,
                ", \"started_ms\": %" PRId64 ", \"committed_ms\": %" PRId64
                ", \"strategy\": ",
                r->started_ms, r->committed_ms);
        json_string(f, r->strategy);
        fprintf(f,
                ", \"selected\": %" PRId64 ", \"accepted\": %" PRId64
                ", \"refused\": %" PRId64 ", \"dropped\": %" PRId64
                ", \"examples\": %" PRId64,
                r->n_selected, r->n_accepted, r->n_refused, r->n_dropped,
                r->examples);
        fputs(", \"eval_accuracy\": ", f);
        json_number(f, r->eval_accuracy);
        fputs(", \"eval_loss\": ", f);
        json_number(f, r->eval_loss);
        fputs(", \"train_accuracy\": ", f);
        json_number(f, r->train_accuracy);
        fputs(", \"train_loss\": ", f);
        json_number(f, r->train_loss);
        fputs(", \"central_dp\": ", f);
        if (r->has_central_dp) {
            fputs("{\"epsilon\": ", f);
            json_number(f, r->cdp_epsilon);
            fputs(", \"delta\": ", f);
            json_number(f, r->cdp_delta);
            fputs(", \"noise_multiplier\": ", f);
            json_number(f, r->cdp_noise_multiplier);
            fputs(", \"clip_norm\": ", f);
            json_number(f, r->cdp_clip_norm);
            fputs("}", f);
        } else {
            fputs("null", f);
        }
        roost_store_hex(r->model_hash, hex);
        fprintf(f, ", \"model_hash\": \"%s\"", hex);
        roost_store_hex(r->record_hash, hex);
        fprintf(f, ", \"record_hash\": \"%s\"}", hex);
    } else {
        fputs("null", f);
    }
    fprintf(f, ", \"clients_seen\": %" PRId64, st->clients);
    fprintf(f, ", \"epsilon\": {\"clients\": %" PRId64 ", \"min\": ",
            st->eps.n_clients);
    json_number(f, st->eps.min);
    fputs(", \"p25\": ", f);
    json_number(f, st->eps.p25);
    fputs(", \"median\": ", f);
    json_number(f, st->eps.median);
    fputs(", \"p75\": ", f);
    json_number(f, st->eps.p75);
    fputs(", \"max\": ", f);
    json_number(f, st->eps.max);
    fputs("}, \"recent_rounds\": [", f);
    for (size_t i = 0; i < st->n_recent; i++) {
        const roost_store_round_info *r = &st->recent[i];
        fprintf(f, "%s{\"round\": %" PRId64 ", \"kind\": ", i ? ", " : "",
                r->round_id);
        json_string(f, r->kind);
        fputs(", \"state\": ", f);
        json_string(f, r->state == ROOST_ROUND_FAILED ? "failed" : "committed");
        fprintf(f,
                ", \"selected\": %" PRId64 ", \"accepted\": %" PRId64
                ", \"refused\": %" PRId64 ", \"dropped\": %" PRId64
                ", \"examples\": %" PRId64 ", \"eval_accuracy\": ",
                r->n_selected, r->n_accepted, r->n_refused, r->n_dropped,
                r->examples);
        json_number(f, r->eval_accuracy);
        fputs(", \"eval_loss\": ", f);
        json_number(f, r->eval_loss);
        fputs(", \"epsilon_median\": ", f);
        json_number(f, st->recent_eps_median[i]);
        fputs("}", f);
    }
    fputs("]}\n", f);
}

static void
print_text(const struct status *st)
{
    char t[40], a[32], b[32], c[32], d[32], e[32], hex[65];
    printf("database      %s (schema version %d)\n", st->db,
           st->schema_version);
    if (st->run != NULL)
        printf("run           %" PRId64 ": %s, %" PRIu64
               " parameters, strategy %s\n",
               st->run->run_id, st->run->model_spec, st->run->n_params,
               st->run->strategy);
    else
        printf("run           none recorded\n");
    if (st->open_round > 0) {
        format_time(st->opened_ms, t, sizeof(t));
        printf("open round    %" PRId64 " (opened %s, %" PRId64 " selected)\n",
               st->open_round, t, st->open_selected);
    } else {
        printf("open round    none\n");
    }
    if (!st->have_last) {
        printf("last round    none committed\n");
    } else {
        const roost_store_round_info *r = &st->last;
        format_time(r->committed_ms, t, sizeof(t));
        printf("last round    %" PRId64 " (%s, %s at %s, %s)\n", r->round_id,
               r->kind, r->state == ROOST_ROUND_FAILED ? "failed" : "committed",
               t, r->strategy);
        printf("participants  %" PRId64 " selected, %" PRId64
               " accepted, %" PRId64 " refused, %" PRId64 " dropped; %" PRId64
               " examples\n",
               r->n_selected, r->n_accepted, r->n_refused, r->n_dropped,
               r->examples);
        roost_cli_number(a, sizeof(a), r->eval_accuracy);
        roost_cli_number(b, sizeof(b), r->train_accuracy);
        printf("accuracy      %s (global model, held-out); %s (reported by "
               "clients)\n",
               a, b);
        roost_cli_number(a, sizeof(a), r->eval_loss);
        roost_cli_number(b, sizeof(b), r->train_loss);
        printf("loss          %s (global model, held-out); %s (reported by "
               "clients)\n",
               a, b);
        if (r->has_central_dp) {
            roost_cli_number(a, sizeof(a), r->cdp_epsilon);
            roost_cli_number(b, sizeof(b), r->cdp_delta);
            roost_cli_number(c, sizeof(c), r->cdp_noise_multiplier);
            roost_cli_number(d, sizeof(d), r->cdp_clip_norm);
            printf("central DP    epsilon %s at delta %s (noise multiplier "
                   "%s, clip %s)\n",
                   a, b, c, d);
        }
        roost_store_hex(r->model_hash, hex);
        printf("model hash    %s\n", hex);
        roost_store_hex(r->record_hash, hex);
        printf("record hash   %s\n", hex);
    }
    printf("clients       %" PRId64 " seen\n", st->clients);
    if (st->eps.n_clients == 0) {
        printf("epsilon       no client has reported one\n");
    } else {
        roost_cli_number(a, sizeof(a), st->eps.min);
        roost_cli_number(b, sizeof(b), st->eps.p25);
        roost_cli_number(c, sizeof(c), st->eps.median);
        roost_cli_number(d, sizeof(d), st->eps.p75);
        roost_cli_number(e, sizeof(e), st->eps.max);
        printf("epsilon       %" PRId64 " clients (latest report each): min "
               "%s, p25 %s, median %s, p75 %s, max %s\n",
               st->eps.n_clients, a, b, c, d, e);
    }
    if (st->n_recent == 0)
        return;
    printf("\n%7s %-5s %-9s %5s %5s %5s %5s %9s %9s %9s %9s\n", "round", "kind",
           "state", "sel", "acc", "ref", "drop", "examples", "eval_acc",
           "eval_loss", "eps_med");
    for (size_t i = 0; i < st->n_recent; i++) {
        const roost_store_round_info *r = &st->recent[i];
        roost_cli_number(a, sizeof(a), r->eval_accuracy);
        roost_cli_number(b, sizeof(b), r->eval_loss);
        roost_cli_number(c, sizeof(c), st->recent_eps_median[i]);
        printf("%7" PRId64 " %-5s %-9s %5" PRId64 " %5" PRId64 " %5" PRId64
               " %5" PRId64 " %9" PRId64 " %9s %9s %9s\n",
               r->round_id, r->kind,
               r->state == ROOST_ROUND_FAILED ? "failed" : "committed",
               r->n_selected, r->n_accepted, r->n_refused, r->n_dropped,
               r->examples, a, b, c);
    }
}

/* The last n_rounds rounds up to head_round, each with the median epsilon
 * its clients reported. */
static int
load_recent(roost_store *s, struct status *st, int64_t head_round,
            size_t n_rounds, roost_errmsg *em)
{
    if (n_rounds == 0 || head_round <= 0)
        return ROOST_OK;
    st->recent = calloc(n_rounds, sizeof(*st->recent));
    st->recent_eps_median = calloc(n_rounds, sizeof(double));
    if (st->recent == NULL || st->recent_eps_median == NULL)
        return roost_fail(em, ROOST_ENOMEM, "out of memory");
    int64_t first = head_round - (int64_t)n_rounds + 1;
    int err = roost_store_list_rounds(s, first > 1 ? first : 1, st->recent,
                                      n_rounds, &st->n_recent, em);
    for (size_t i = 0; err == ROOST_OK && i < st->n_recent; i++) {
        roost_store_eps_stats eps;
        err = roost_store_epsilon_stats(s, st->recent[i].round_id, &eps, em);
        st->recent_eps_median[i] = eps.median;
    }
    return err;
}

int
roost_cmd_status(int argc, char **argv)
{
    struct status st;
    memset(&st, 0, sizeof(st));
    bool json = false;
    long n_rounds = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(status_usage, stdout);
            return ROOST_EXIT_OK;
        }
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--rounds") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "roost status: --rounds needs a value\n");
                return ROOST_EXIT_USAGE;
            }
            if (!roost_cli_parse_int("status", "--rounds", argv[++i], 0,
                                     STATUS_MAX_ROUNDS, &n_rounds))
                return ROOST_EXIT_USAGE;
        } else if (strcmp(argv[i], "--db") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "roost status: --db needs a value\n");
                return ROOST_EXIT_USAGE;
            }
            st.db = argv[++i];
        } else {
            fprintf(stderr,
                    "roost status: unknown flag '%s' (see 'roost status "
                    "--help')\n",
                    argv[i]);
            return ROOST_EXIT_USAGE;
        }
    }
    if (st.db == NULL) {
        fprintf(stderr, "roost status: --db FILE is required\n");
        return ROOST_EXIT_USAGE;
    }

    roost_store *s = NULL;
    roost_errmsg em;
    int err = roost_store_open(&s, st.db, ROOST_STORE_READONLY, &em);
    if (err != ROOST_OK) {
        fprintf(stderr, "roost status: %s\n", em.text);
        return ROOST_EXIT_FAIL;
    }
    st.schema_version = roost_store_schema_version(s);
    /* Every figure from one snapshot: the coordinator may commit between
     * two reads, and the open round, the last round and the epsilon
     * figures must describe the same moment. */
    err = roost_store_read_begin(s, &em);
    if (err == ROOST_OK)
        err = roost_store_get_run(s, 0, &st.run, &em);
    if (err == ROOST_ENOENT)
        err = ROOST_OK;
    roost_store_head head;
    if (err == ROOST_OK)
        err = roost_store_get_open_round(s, &st.open_round, &st.opened_ms,
                                         &st.open_selected, &em);
    if (err == ROOST_OK)
        err = roost_store_last_committed_round(s, &head, &em);
    if (err == ROOST_OK && head.round_id > 0) {
        size_t n = 0;
        err = roost_store_list_rounds(s, head.round_id, &st.last, 1, &n, &em);
        st.have_last = err == ROOST_OK && n == 1;
    }
    if (err == ROOST_OK)
        err = roost_store_count_clients(s, &st.clients, &em);
    if (err == ROOST_OK)
        err = roost_store_epsilon_stats(s, 0, &st.eps, &em);
    if (err == ROOST_OK)
        err = load_recent(s, &st, head.round_id, (size_t)n_rounds, &em);
    roost_store_read_end(s);
    if (err != ROOST_OK) {
        fprintf(stderr, "roost status: %s: %s\n", st.db, em.text);
    } else if (json) {
        print_json(&st);
    } else {
        print_text(&st);
    }
    roost_store_run_info_free(st.run);
    free(st.recent);
    free(st.recent_eps_median);
    roost_store_close(s);
    return err == ROOST_OK ? ROOST_EXIT_OK : ROOST_EXIT_FAIL;
}
