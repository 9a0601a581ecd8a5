/*
 * config.c - the coordinator's configuration table and the INI parser
 * around it (see config.h for the syntax of values).
 *
 * The table below is the only list of keys. Parsing, range checks,
 * defaults, the effective-config printout and the commented sample are all
 * loops over it, so a key cannot be documented but not parsed, or parsed
 * but missing from the sample. A key's default is text in the file's own
 * syntax and goes through the same parser as the file, so defaults are
 * range-checked too (roost_config_init aborts on a bad one; tests run it).
 *
 * inih (Debian's build) does not pass line numbers to the handler, so the
 * text is fed to ini_parse_stream through a reader that counts lines: inih
 * calls the handler for a line before it reads the next one, so the
 * reader's count is the line of the key being handled. The reader also
 * refuses lines longer than inih's line buffer (inih would silently split
 * them) and unknown [section] headers, which inih reports to no one when
 * the section has no keys.
 *
 * Locking: none. The table is constant; a roost_serve_config belongs to
 * one thread.
 */
#include "server/config.h"

#include "server/strategy.h"

#include <ini.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OFF(field) offsetof(roost_serve_config, field)
#define COORD(field) offsetof(roost_serve_config, coord.field)
#define STRAT(field) offsetof(roost_serve_config, coord.strategy.field)

/* Biggest config file read (a real one is a few KiB). */
#define CONFIG_FILE_MAX (1024 * 1024)
/* Longest line the reader takes, in characters without the newline:
 * inih reads lines into a buffer of INI_MAX_LINE bytes, which holds the
 * newline and a NUL too (read_line). */
#define CONFIG_LINE_MAX (INI_MAX_LINE - 2)

static const char *const log_levels[] = {"error", "warn", "info", "debug",
                                         NULL};
static const char *const norm_policies[] = {"reject", "clip", NULL};

#define SEC_MS 1000.0
#define MIN_MS (60.0 * SEC_MS)
#define HOUR_MS (60.0 * MIN_MS)
#define DAY_MS (24.0 * HOUR_MS)
#define KIB 1024.0
#define MIB (1024.0 * KIB)
#define GIB (1024.0 * MIB)

/* clang-format off */
static const roost_config_key keys[] = {
    /* [server] */
    {"server", "listen", ROOST_CONFIG_STRING, OFF(listen),
     "tcp://0.0.0.0:7443", 0, 0, 0, NULL,
     "ZeroMQ endpoint the coordinator listens on for TLS connections, "
     "tcp://ADDRESS:PORT (0.0.0.0 for every IPv4 address, [::] for IPv6)."},
    {"server", "ca_file", ROOST_CONFIG_STRING, OFF(ca_file),
     "/etc/roost/ca.crt", 0, 0, 0, NULL,
     "The deployment CA certificate (PEM). Clients must present a "
     "certificate it signed. `roost pki init` writes it."},
    {"server", "cert_file", ROOST_CONFIG_STRING, OFF(cert_file),
     "/etc/roost/server.crt", 0, 0, 0, NULL,
     "The coordinator's certificate (PEM), from `roost pki server`."},
    {"server", "key_file", ROOST_CONFIG_STRING, OFF(key_file),
     "/etc/roost/server.key", 0, 0, 0, NULL,
     "The coordinator's private key (PEM); keep it mode 0600."},
    {"server", "crl_file", ROOST_CONFIG_STRING, OFF(crl_file),
     "/etc/roost/ca.crl", 0, 0, 0, NULL,
     "The CA's certificate revocation list (PEM). Required; revoked "
     "clients are refused during the handshake. Reload (SIGHUP) after "
     "updating it."},
    {"server", "max_sessions", ROOST_CONFIG_U32, OFF(max_sessions), "1024",
     1, 1000000, 0, NULL,
     "Most concurrent client connections; more are refused at connect."},
    {"server", "max_frame", ROOST_CONFIG_BYTES, OFF(max_frame), "2MiB",
     2 * MIB, GIB, 0, NULL,
     "Largest message accepted from a client, checked before any memory "
     "is set aside for it; also the wire decoder's message limit. "
     "Parameters travel in chunks of at most 1 MiB, so the 2 MiB minimum "
     "carries any model."},
    {"server", "handshake_timeout", ROOST_CONFIG_DURATION,
     OFF(handshake_timeout_ms), "10s", 100, 10 * MIN_MS, 0, NULL,
     "A connection that has not completed its TLS handshake by then is "
     "dropped."},
    {"server", "idle_timeout", ROOST_CONFIG_DURATION, OFF(idle_timeout_ms),
     "30min", SEC_MS, 7 * DAY_MS, ROOST_CONFIG_ZERO_OK, NULL,
     "A session silent for this long is closed (0: never). Keep it above "
     "round.timeout: waiting clients are silent between rounds."},
    {"server", "state_dir", ROOST_CONFIG_STRING, OFF(state_dir),
     "/var/lib/roost", 0, 0, 0, NULL,
     "Directory for the coordinator's state; relative paths of database "
     "are taken from here. systemd's StateDirectory=roost creates it."},
    {"server", "database", ROOST_CONFIG_STRING, OFF(database), "roost.db", 0,
     0, 0, NULL,
     "The SQLite file recording the run, every round, update and model "
     "checkpoint. The coordinator resumes from it after a restart."},
    {"server", "log_file", ROOST_CONFIG_STRING, OFF(log_file), "", 0, 0, 0,
     NULL,
     "Append log lines to this file (reopened on SIGHUP, for logrotate); "
     "empty: standard error (the journal under systemd)."},
    {"server", "log_level", ROOST_CONFIG_CHOICE, OFF(log_level), "info", 0,
     0, 0, log_levels, "Least severe messages logged: error, warn, info or "
     "debug."},
    {"server", "run_name", ROOST_CONFIG_STRING, OFF(run_name), "", 0, 0, 0,
     NULL, "Free text recorded with the run (shown by status and report)."},
    {"server", "checkpoint_keep_last", ROOST_CONFIG_U32, OFF(keep_last), "3",
     1, 1000000, 0, NULL,
     "Model checkpoints kept after each commit: the newest this many (the "
     "one to resume from is always among them)."},
    {"server", "checkpoint_keep_every", ROOST_CONFIG_U32, OFF(keep_every),
     "10", 0, 1000000, 0, NULL,
     "Also keep the checkpoint of every round that is a multiple of this "
     "(0: none)."},

    /* [model] */
    {"model", "spec", ROOST_CONFIG_STRING, OFF(model_spec), "mlp", 0, 0, 0,
     NULL,
     "The model: a preset (mlp, cnn, logreg) or a layer list (see "
     "docs/model.md). A database holds one model: changing it needs a new "
     "database file."},
    {"model", "input_shape", ROOST_CONFIG_SHAPE, COORD(input_channels),
     "1x28x28", 1, 65536, 0, NULL,
     "Shape of one example, CHANNELSxHEIGHTxWIDTH."},
    {"model", "init_seed", ROOST_CONFIG_U64, COORD(init_seed), "1", 0,
     1.8e19, 0, NULL,
     "Seed of the initial parameters of a new run (not a privacy "
     "mechanism)."},

    /* [round] */
    {"round", "clients_per_round", ROOST_CONFIG_U32, COORD(clients_per_round),
     "10", 1, 100000, 0, NULL,
     "Updates wanted per round (the quorum K): the round commits as soon "
     "as K updates are in."},
    {"round", "min_clients", ROOST_CONFIG_U32, COORD(min_clients), "0", 1,
     100000, ROOST_CONFIG_ZERO_OK, NULL,
     "Fewest updates that still commit at the deadline; with fewer the "
     "round is recorded as failed and the model kept. 0: same as "
     "clients_per_round."},
    {"round", "over_selection", ROOST_CONFIG_DOUBLE, COORD(over_selection),
     "1", 1, 10, 0, NULL,
     "Tasks sent per round = ceil(clients_per_round * this), so dropouts "
     "do not stall the round (e.g. 1.3)."},
    {"round", "min_available", ROOST_CONFIG_U32, COORD(min_available), "0",
     1, 1000000, ROOST_CONFIG_ZERO_OK, NULL,
     "Checked-in clients needed before a round opens. 0: same as "
     "clients_per_round."},
    {"round", "timeout", ROOST_CONFIG_DURATION, COORD(round_timeout_ms),
     "10min", SEC_MS, 7 * DAY_MS, 0, NULL,
     "Deadline of a round after it opens."},
    {"round", "retry_after", ROOST_CONFIG_DURATION, COORD(retry_after_ms),
     "0", SEC_MS, DAY_MS, ROOST_CONFIG_ZERO_OK, NULL,
     "Clients not selected are told to come back after this long; 0: they "
     "stay connected and wait for the next round."},
    {"round", "max_rounds", ROOST_CONFIG_U64, COORD(max_rounds), "0", 0,
     1e15, 0, NULL,
     "Stop (exit 0) once this many training rounds have run (and a "
     "federated evaluation due after the last); 0: run until stopped."},
    {"round", "selection_seed", ROOST_CONFIG_U64, COORD(selection_seed), "0",
     0, 1.8e19, 0, NULL,
     "0: clients are selected with the CSPRNG. Non-zero makes selection "
     "reproducible and PREDICTABLE (for experiments only)."},

    /* [training] */
    {"training", "local_epochs", ROOST_CONFIG_U32, COORD(local_epochs), "1",
     1, 1000, 0, NULL, "Passes over its data each client makes per round."},
    {"training", "batch_size", ROOST_CONFIG_U32, COORD(batch_size), "32", 1,
     65536, 0, NULL, "Local minibatch size."},
    {"training", "learning_rate", ROOST_CONFIG_DOUBLE, COORD(learning_rate),
     "0.05", 0, 100, ROOST_CONFIG_MIN_OPEN, NULL, "Local SGD step size."},
    {"training", "momentum", ROOST_CONFIG_DOUBLE, COORD(momentum), "0", 0, 1,
     ROOST_CONFIG_MAX_OPEN, NULL, "Local SGD momentum, in [0, 1)."},
    {"training", "weight_decay", ROOST_CONFIG_DOUBLE, COORD(weight_decay),
     "0", 0, 1, 0, NULL, "Local L2 weight decay."},

    /* [dp] */
    {"dp", "enabled", ROOST_CONFIG_BOOL, COORD(dp_enabled), "true", 0, 0, 0,
     NULL,
     "Ask clients to train with DP-SGD (per-example clipping and Gaussian "
     "noise on the device, accounted by the device). Clients decline tasks "
     "without it unless started with --allow-no-dp (INSECURE)."},
    {"dp", "noise_multiplier", ROOST_CONFIG_DOUBLE,
     COORD(dp_noise_multiplier), "1", 0, 1000, ROOST_CONFIG_MIN_OPEN, NULL,
     "sigma: noise standard deviation relative to clip_norm."},
    {"dp", "clip_norm", ROOST_CONFIG_DOUBLE, COORD(dp_clip_norm), "1", 0,
     1e6, ROOST_CONFIG_MIN_OPEN, NULL, "C: per-example gradient L2 bound."},
    {"dp", "delta", ROOST_CONFIG_DOUBLE, COORD(dp_delta), "1e-05", 0, 1,
     ROOST_CONFIG_MIN_OPEN | ROOST_CONFIG_MAX_OPEN, NULL,
     "delta of the (epsilon, delta) guarantee; well below 1/examples."},
    {"dp", "sampling_rate", ROOST_CONFIG_DOUBLE, COORD(dp_sampling_rate), "0",
     0, 1, 0, NULL,
     "Poisson sampling rate q of local batches; 0: the client uses "
     "expected_batch / its example count."},
    {"dp", "expected_batch", ROOST_CONFIG_U32, COORD(dp_expected_batch),
     "32", 1, 65536, 0, NULL,
     "Expected Poisson batch size when sampling_rate is 0."},

    /* [aggregation] */
    {"aggregation", "strategy", ROOST_CONFIG_STRATEGY, STRAT(kind), "fedavg",
     0, 0, 0, NULL,
     "fedavg, fedavgm, fedadam, fedyogi, fedadagrad, fedprox, median, "
     "trimmed_mean, krum or multikrum (docs/strategies.md). Keys below "
     "that a strategy does not use are ignored."},
    {"aggregation", "server_lr", ROOST_CONFIG_DOUBLE, STRAT(server_lr), "1",
     0, 100, ROOST_CONFIG_MIN_OPEN, NULL,
     "Server learning rate; when not set: 1, or 0.01 for fedadam, fedyogi "
     "and fedadagrad."},
    {"aggregation", "server_momentum", ROOST_CONFIG_DOUBLE, STRAT(momentum),
     "0.9", 0, 1, ROOST_CONFIG_MAX_OPEN, NULL, "fedavgm: server momentum."},
    {"aggregation", "beta1", ROOST_CONFIG_DOUBLE, STRAT(beta1), "0.9", 0, 1,
     ROOST_CONFIG_MAX_OPEN, NULL, "fedadam, fedyogi, fedadagrad: beta1."},
    {"aggregation", "beta2", ROOST_CONFIG_DOUBLE, STRAT(beta2), "0.99", 0, 1,
     ROOST_CONFIG_MAX_OPEN, NULL, "fedadam, fedyogi: beta2."},
    {"aggregation", "tau", ROOST_CONFIG_DOUBLE, STRAT(tau), "0.001", 0, 10,
     ROOST_CONFIG_MIN_OPEN, NULL,
     "fedadam, fedyogi, fedadagrad: adaptivity tau."},
    {"aggregation", "prox_mu", ROOST_CONFIG_DOUBLE, STRAT(prox_mu), "0.01", 0,
     100, 0, NULL, "fedprox: proximal coefficient mu sent to clients."},
    {"aggregation", "trim_fraction", ROOST_CONFIG_DOUBLE, STRAT(trim_fraction),
     "0.1", 0, 0.5, ROOST_CONFIG_MAX_OPEN, NULL,
     "trimmed_mean: fraction dropped at EACH end per coordinate."},
    {"aggregation", "byzantine_f", ROOST_CONFIG_SIZE_T, STRAT(byzantine_f),
     "1", 0, 100000, 0, NULL,
     "krum, multikrum: Byzantine clients tolerated (a round needs 2f+3 "
     "updates)."},
    {"aggregation", "multikrum_m", ROOST_CONFIG_SIZE_T, STRAT(multikrum_m),
     "0", 0, 100000, 0, NULL,
     "multikrum: best-scored updates averaged; 0: updates - f."},
    {"aggregation", "max_buffered_updates", ROOST_CONFIG_SIZE_T,
     STRAT(max_buffered_updates), "1000", 1, 1e7, 0, NULL,
     "Robust strategies keep every update of a round: at most this many."},
    {"aggregation", "max_buffered_bytes", ROOST_CONFIG_BYTES,
     STRAT(max_buffered_bytes), "1GiB", MIB, 1024 * GIB,
     ROOST_CONFIG_SIZE_T_FIELD, NULL,
     "Robust strategies: most memory for the buffered updates of a round."},
    {"aggregation", "max_update_norm", ROOST_CONFIG_DOUBLE,
     COORD(max_update_norm), "0", 0, 1e9, 0, NULL,
     "L2 bound on an update (parameter delta); 0: no bound."},
    {"aggregation", "norm_policy", ROOST_CONFIG_CHOICE, COORD(norm_policy),
     "reject", 0, 0, 0, norm_policies,
     "An update above max_update_norm is refused (reject) or scaled down "
     "to it (clip)."},
    {"aggregation", "max_examples", ROOST_CONFIG_U64, COORD(max_examples),
     "0", 0, 1e15, 0, NULL,
     "Cap on the example count a client reports (its weight); 0: none."},
    {"aggregation", "central_dp", ROOST_CONFIG_BOOL, STRAT(central_dp),
     "false", 0, 0, 0, NULL,
     "Add Gaussian noise to the aggregate on the coordinator (mean-based "
     "strategies only); recorded per round with its own accountant entry."},
    {"aggregation", "central_dp_clip_norm", ROOST_CONFIG_DOUBLE,
     STRAT(dp_clip_norm), "1", 0, 1e6, ROOST_CONFIG_MIN_OPEN, NULL,
     "Central DP: L2 sensitivity C of the sum of updates."},
    {"aggregation", "central_dp_noise_multiplier", ROOST_CONFIG_DOUBLE,
     STRAT(dp_noise_multiplier), "1", 0, 1000, ROOST_CONFIG_MIN_OPEN, NULL,
     "Central DP: noise standard deviation z, relative to C."},
    {"aggregation", "central_dp_expected_updates", ROOST_CONFIG_SIZE_T,
     STRAT(dp_expected_updates), "0", 0, 1e7, 0, NULL,
     "Central DP: fixed denominator of the mean; 0: the updates received."},

    /* [evaluation] */
    {"evaluation", "enabled", ROOST_CONFIG_BOOL, OFF(eval_enabled), "false",
     0, 0, 0, NULL,
     "Evaluate every new global model on a held-out set (accuracy and loss "
     "in the record)."},
    {"evaluation", "dataset_dir", ROOST_CONFIG_STRING, OFF(eval_dir),
     "/usr/share/datasets/fashion-mnist", 0, 0, 0, NULL,
     "Directory with the test split as IDX files (t10k-images-idx3-ubyte"
     "[.gz], t10k-labels-idx1-ubyte[.gz])."},
    {"evaluation", "federated_every", ROOST_CONFIG_U32, COORD(fed_eval_every),
     "0", 1, 1000000, ROOST_CONFIG_ZERO_OK, NULL,
     "After every N-th committed training round, run a federated "
     "evaluation round: selected clients report loss and accuracy of the "
     "new model on their own data. Those figures are NOT covered by "
     "differential privacy; clients decline unless their embedder allows "
     "it (roost client --allow-eval). 0: never."},
    {"evaluation", "federated_clients", ROOST_CONFIG_U32,
     COORD(fed_eval_clients), "0", 1, 100000, ROOST_CONFIG_ZERO_OK, NULL,
     "Answers wanted per federated evaluation round. 0: same as "
     "clients_per_round."},
};
/* clang-format on */

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))
_Static_assert(N_KEYS <= ROOST_CONFIG_MAX_KEYS, "raise ROOST_CONFIG_MAX_KEYS");
_Static_assert(sizeof(roost_norm_policy) == sizeof(int),
               "CHOICE fields are stored as int");
_Static_assert(sizeof(roost_strategy_kind) == sizeof(int),
               "the strategy kind is stored as int");

static const char *const sections[] = {"server",     "model", "round",
                                       "training",   "dp",    "aggregation",
                                       "evaluation", NULL};

size_t
roost_config_key_count(void)
{
    return N_KEYS;
}

const roost_config_key *
roost_config_key_at(size_t i)
{
    return i < N_KEYS ? &keys[i] : NULL;
}

const roost_config_key *
roost_config_key_find(const char *section, const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].section, section) == 0 &&
            strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

static bool
known_section(const char *name)
{
    for (size_t i = 0; sections[i] != NULL; i++)
        if (strcmp(sections[i], name) == 0)
            return true;
    return false;
}

static void *
field(roost_serve_config *cfg, const roost_config_key *k)
{
    return (char *)cfg + k->offset;
}

static const void *
cfield(const roost_serve_config *cfg, const roost_config_key *k)
{
    return (const char *)cfg + k->offset;
}

/* ---------------------------------------------------------------------
 * Value parsers: each returns true and the value, or false with a reason
 * in why (which the caller prefixes with the location).
 * ------------------------------------------------------------------- */

/* What parse_digits found. */
typedef enum digits_found {
    DIGITS_NONE,    /* text does not start with a digit */
    DIGITS_OK,      /* *out is the number */
    DIGITS_OVERFLOW /* digits, but more than 64 bits: *out is UINT64_MAX */
} digits_found;

/*
 * A decimal integer of digits only, into *out, and where it ended. A
 * number too large for 64 bits is told apart from text that is not a
 * number, so that its message can say "too large" or "outside [min, max]"
 * rather than "not an integer".
 */
static digits_found
parse_digits(const char *text, uint64_t *out, const char **end)
{
    if (text[0] < '0' || text[0] > '9')
        return DIGITS_NONE;
    errno = 0;
    char *e = NULL;
    unsigned long long v = strtoull(text, &e, 10);
    *end = e; /* past every digit, also on overflow */
    if (errno == ERANGE) {
        *out = UINT64_MAX;
        return DIGITS_OVERFLOW;
    }
    if (errno != 0)
        return DIGITS_NONE;
    *out = (uint64_t)v;
    return DIGITS_OK;
}

static bool
parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(text, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcmp(text, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* An integer times a unit factor, refusing overflow. */
static bool
scaled(uint64_t v, uint64_t factor, uint64_t *out)
{
    if (factor != 0 && v > UINT64_MAX / factor)
        return false;
    *out = v * factor;
    return true;
}

static bool
parse_duration(const char *text, uint64_t *ms, char *why, size_t cap)
{
    static const struct {
        const char *unit;
        uint64_t factor;
    } units[] = {{"ms", 1},
                 {"s", 1000},
                 {"min", 60000},
                 {"h", 3600000},
                 {"d", 86400000}};
    uint64_t v;
    const char *end;
    digits_found d = parse_digits(text, &v, &end);
    if (d == DIGITS_NONE) {
        snprintf(why, cap, "'%s' is not a duration (e.g. 30s, 10min)", text);
        return false;
    }
    if (*end == '\0') {
        if (v == 0) {
            *ms = 0;
            return true;
        }
        snprintf(why, cap, "'%s' needs a unit: ms, s, min, h or d (e.g. %ss)",
                 text, text);
        return false;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(end, units[i].unit) == 0) {
            if (d == DIGITS_OVERFLOW || !scaled(v, units[i].factor, ms)) {
                snprintf(why, cap, "'%s' is too long", text);
                return false;
            }
            return true;
        }
    snprintf(why, cap, "'%s': unknown unit '%s' (use ms, s, min, h or d)", text,
             end);
    return false;
}

static bool
parse_bytes(const char *text, uint64_t *bytes, char *why, size_t cap)
{
    static const struct {
        const char *unit;
        uint64_t factor;
    } units[] = {{"", 1},
                 {"B", 1},
                 {"KiB", 1024},
                 {"MiB", 1024 * 1024},
                 {"GiB", 1024 * 1024 * 1024}};
    uint64_t v;
    const char *end;
    digits_found d = parse_digits(text, &v, &end);
    if (d != DIGITS_NONE)
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
            if (strcmp(end, units[i].unit) == 0) {
                if (d == DIGITS_OVERFLOW ||
                    !scaled(v, units[i].factor, bytes)) {
                    snprintf(why, cap, "'%s' is too large", text);
                    return false;
                }
                return true;
            }
    snprintf(why, cap, "'%s' is not a size (bytes, or with KiB, MiB, GiB)",
             text);
    return false;
}

static bool
parse_double(const char *text, double *out, char *why, size_t cap)
{
    errno = 0;
    char *end = NULL;
    double v = text[0] != '\0' ? strtod(text, &end) : 0.0;
    if (text[0] == '\0' || *end != '\0' || (errno != 0 && errno != ERANGE)) {
        snprintf(why, cap, "'%s' is not a finite number", text);
        return false;
    }
    if (errno == ERANGE) {
        /* strtod saturates on overflow (an infinity) and rounds towards
         * zero on underflow: either way not the number written. */
        snprintf(why, cap, "'%s' is out of range (magnitude %s)", text,
                 isfinite(v) ? "below 2.2e-308; write 0 for zero"
                             : "above 1.8e308");
        return false;
    }
    if (!isfinite(v)) {
        snprintf(why, cap, "'%s' is not a finite number", text);
        return false;
    }
    *out = v;
    return true;
}

/* CxHxW into dims (UINT64_MAX for a number past 64 bits; the caller
 * range-checks), with where each number starts and its length. */
static bool
parse_shape(const char *text, uint64_t dims[3], const char *part[3],
            size_t part_len[3])
{
    const char *p = text;
    for (int i = 0; i < 3; i++) {
        const char *end;
        if (parse_digits(p, &dims[i], &end) == DIGITS_NONE)
            return false;
        part[i] = p;
        part_len[i] = (size_t)(end - p);
        if (i < 2) {
            if (*end != 'x')
                return false;
            p = end + 1;
        } else if (*end != '\0') {
            return false;
        }
    }
    return true;
}

/* The range check shared by the numeric types. */
static bool
in_range(const roost_config_key *k, double v, const char *text, char *why,
         size_t cap)
{
    if ((k->flags & ROOST_CONFIG_ZERO_OK) && v == 0)
        return true;
    bool lo_ok = (k->flags & ROOST_CONFIG_MIN_OPEN) ? v > k->min : v >= k->min;
    bool hi_ok = (k->flags & ROOST_CONFIG_MAX_OPEN) ? v < k->max : v <= k->max;
    if (lo_ok && hi_ok)
        return true;
    snprintf(why, cap, "%s is outside %s%.6g, %.6g%s%s", text,
             (k->flags & ROOST_CONFIG_MIN_OPEN) ? "(" : "[", k->min, k->max,
             (k->flags & ROOST_CONFIG_MAX_OPEN) ? ")" : "]",
             (k->flags & ROOST_CONFIG_ZERO_OK) ? " (or 0)" : "");
    return false;
}

/* Parse text for key k and store it in cfg. ROOST_OK, ROOST_ECONFIG with
 * why filled, or ROOST_ENOMEM. */
static int
apply_value(roost_serve_config *cfg, const roost_config_key *k,
            const char *text, char *why, size_t cap)
{
    void *dst = field(cfg, k);
    switch (k->type) {
    case ROOST_CONFIG_BOOL: {
        bool b;
        if (!parse_bool(text, &b)) {
            snprintf(why, cap, "'%s' is not a boolean (true or false)", text);
            return ROOST_ECONFIG;
        }
        *(bool *)dst = b;
        return ROOST_OK;
    }
    case ROOST_CONFIG_U32:
    case ROOST_CONFIG_U64:
    case ROOST_CONFIG_SIZE_T: {
        uint64_t v;
        const char *end;
        digits_found d = parse_digits(text, &v, &end);
        if (d == DIGITS_NONE || *end != '\0') {
            snprintf(why, cap, "'%s' is not a non-negative integer", text);
            return ROOST_ECONFIG;
        }
        /* Past 64 bits is past every key's maximum. */
        if (!in_range(k, d == DIGITS_OVERFLOW ? HUGE_VAL : (double)v, text, why,
                      cap))
            return ROOST_ECONFIG;
        if (k->type == ROOST_CONFIG_U32)
            *(uint32_t *)dst = (uint32_t)v;
        else if (k->type == ROOST_CONFIG_U64)
            *(uint64_t *)dst = v;
        else
            *(size_t *)dst = (size_t)v;
        return ROOST_OK;
    }
    case ROOST_CONFIG_DOUBLE: {
        double v;
        if (!parse_double(text, &v, why, cap))
            return ROOST_ECONFIG;
        if (!in_range(k, v, text, why, cap))
            return ROOST_ECONFIG;
        *(double *)dst = v;
        return ROOST_OK;
    }
    case ROOST_CONFIG_DURATION: {
        uint64_t ms;
        if (!parse_duration(text, &ms, why, cap))
            return ROOST_ECONFIG;
        char shown[96];
        snprintf(shown, sizeof(shown), "%s (%" PRIu64 " ms)", text, ms);
        if (!in_range(k, (double)ms, shown, why, cap)) {
            /* Say the limits in milliseconds: that is what they are. */
            size_t len = strlen(why);
            snprintf(why + len, cap - len, " ms");
            return ROOST_ECONFIG;
        }
        *(uint64_t *)dst = ms;
        return ROOST_OK;
    }
    case ROOST_CONFIG_BYTES: {
        uint64_t v;
        if (!parse_bytes(text, &v, why, cap))
            return ROOST_ECONFIG;
        char shown[96];
        snprintf(shown, sizeof(shown), "%s (%" PRIu64 " bytes)", text, v);
        if (!in_range(k, (double)v, shown, why, cap))
            return ROOST_ECONFIG;
        if (k->flags & ROOST_CONFIG_SIZE_T_FIELD) {
            if (v > SIZE_MAX) {
                snprintf(why, cap, "%s is too large", text);
                return ROOST_ECONFIG;
            }
            *(size_t *)dst = (size_t)v;
        } else {
            *(uint64_t *)dst = v;
        }
        return ROOST_OK;
    }
    case ROOST_CONFIG_STRING: {
        for (const unsigned char *p = (const unsigned char *)text; *p; p++)
            if (*p < 0x20 || *p == 0x7f) {
                snprintf(why, cap, "control character in the value");
                return ROOST_ECONFIG;
            }
        /* A file's lines are limited, so a value from --set is too: the
         * effective configuration printed by --check-config must load. */
        size_t most = CONFIG_LINE_MAX - strlen(k->name) - 3;
        if (strlen(text) > most) {
            snprintf(why, cap,
                     "the value is %zu characters, more than a config line "
                     "holds (%zu for this key)",
                     strlen(text), most);
            return ROOST_ECONFIG;
        }
        char *copy = strdup(text);
        if (copy == NULL) {
            snprintf(why, cap, "out of memory");
            return ROOST_ENOMEM;
        }
        free(*(char **)dst);
        *(char **)dst = copy;
        return ROOST_OK;
    }
    case ROOST_CONFIG_CHOICE:
        for (int i = 0; k->choices[i] != NULL; i++)
            if (strcmp(text, k->choices[i]) == 0) {
                *(int *)dst = i;
                return ROOST_OK;
            }
        {
            int n = snprintf(why, cap, "'%s' is not one of:", text);
            for (int i = 0; k->choices[i] != NULL && n >= 0 && (size_t)n < cap;
                 i++)
                n += snprintf(why + n, cap - (size_t)n, " %s", k->choices[i]);
        }
        return ROOST_ECONFIG;
    case ROOST_CONFIG_STRATEGY: {
        roost_strategy_kind kind;
        roost_errmsg em;
        if (roost_strategy_kind_parse(text, &kind, &em) != ROOST_OK) {
            snprintf(why, cap, "%s", em.text);
            return ROOST_ECONFIG;
        }
        *(roost_strategy_kind *)dst = kind;
        return ROOST_OK;
    }
    case ROOST_CONFIG_SHAPE: {
        uint64_t dims[3];
        const char *part[3];
        size_t part_len[3];
        if (!parse_shape(text, dims, part, part_len)) {
            snprintf(why, cap,
                     "'%s' is not a shape CHANNELSxHEIGHTxWIDTH (e.g. "
                     "1x28x28)",
                     text);
            return ROOST_ECONFIG;
        }
        /* A value past the uint32_t it is stored in is past the range
         * too, whatever the range says. */
        uint32_t stored[3];
        for (int i = 0; i < 3; i++) {
            char shown[96];
            snprintf(shown, sizeof(shown), "%.*s", (int)part_len[i], part[i]);
            double v = dims[i] > UINT32_MAX ? HUGE_VAL : (double)dims[i];
            if (!in_range(k, v, shown, why, cap))
                return ROOST_ECONFIG;
            stored[i] = (uint32_t)dims[i];
        }
        memcpy(dst, stored, sizeof(stored));
        return ROOST_OK;
    }
    }
    snprintf(why, cap, "unknown type");
    return ROOST_ECONFIG;
}

static size_t
key_index(const roost_config_key *k)
{
    return (size_t)(k - keys);
}

int
roost_config_init(roost_serve_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    roost_coord_config_init(&cfg->coord);
    for (size_t i = 0; i < N_KEYS; i++) {
        char why[ROOST_ERRMSG_CAP];
        int rc = apply_value(cfg, &keys[i], keys[i].def, why, sizeof(why));
        if (rc == ROOST_ENOMEM) {
            roost_config_free(cfg);
            return rc;
        }
        if (rc != ROOST_OK) {
            /* The table itself is wrong: a programming error. */
            fprintf(stderr, "roost: config table: [%s] %s default: %s\n",
                    keys[i].section, keys[i].name, why);
            abort();
        }
    }
    return ROOST_OK;
}

void
roost_config_free(roost_serve_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < N_KEYS; i++)
        if (keys[i].type == ROOST_CONFIG_STRING) {
            char **p = field(cfg, &keys[i]);
            free(*p);
            *p = NULL;
        }
    free(cfg->source);
    cfg->source = NULL;
}

/* ---------------------------------------------------------------------
 * The INI file.
 * ------------------------------------------------------------------- */

struct parse_ctx {
    roost_serve_config *cfg;
    const char *name; /* file name for messages */
    const char *text; /* the whole file */
    size_t pos;
    int line; /* line most recently handed to inih */
    /* That line starts with a blank. */
    bool indented;
    /* inih's "previous key": the line of the last key handled since the
     * last section header, or 0. While it is set, inih reads an indented
     * line as a continuation of that key's value (see on_key). */
    int key_line;
    int err; /* first error, ROOST_OK if none */
    int err_line;
    roost_errmsg *em;
};

static void ctx_fail(struct parse_ctx *ctx, int code, int line, const char *fmt,
                     ...) ROOST_PRINTF(4, 5);

static void
ctx_fail(struct parse_ctx *ctx, int code, int line, const char *fmt, ...)
{
    if (ctx->err != ROOST_OK)
        return; /* report the first problem only */
    char reason[ROOST_ERRMSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    ctx->err = code;
    ctx->err_line = line;
    roost_fail(ctx->em, code, "%s:%d: %s", ctx->name, line, reason);
}

/* A section header on this line (after optional blanks), checked against
 * the known sections. inih checks the syntax; we check the name. */
static void
check_section_line(struct parse_ctx *ctx, const char *line, size_t len)
{
    size_t i = 0;
    if (ctx->line == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (i >= len || line[i] != '[')
        return;
    const char *close = memchr(line + i, ']', len - i);
    if (close == NULL)
        return; /* inih reports the syntax error */
    /* After a key, inih reads an indented line as more of its value
     * (on_key reports that), not as a section header. */
    if (ctx->indented && ctx->key_line > 0)
        return;
    ctx->key_line = 0;
    char name[64];
    size_t n = (size_t)(close - (line + i + 1));
    if (n >= sizeof(name)) {
        ctx_fail(ctx, ROOST_ECONFIG, ctx->line, "unknown section");
        return;
    }
    memcpy(name, line + i + 1, n);
    name[n] = '\0';
    if (!known_section(name)) {
        ctx_fail(ctx, ROOST_ECONFIG, ctx->line,
                 "unknown section [%s] (sections: server, model, round, "
                 "training, dp, aggregation, evaluation)",
                 name);
        return;
    }
    /* inih ignores whatever follows the ']', so "[round] timeout = 5min"
     * would leave the timeout at its default without a word. Only blanks
     * and a comment may follow. */
    const char *rest = close + 1, *end = line + len;
    while (rest < end && isspace((unsigned char)*rest))
        rest++;
    while (end > rest && isspace((unsigned char)end[-1]))
        end--;
    if (rest < end && *rest != ';' && *rest != '#')
        ctx_fail(ctx, ROOST_ECONFIG, ctx->line,
                 "text after the section header [%s]: '%.*s' (put each key "
                 "on a line of its own)",
                 name, (int)(end - rest), rest);
}

/* inih's reader: copy the next line into buf like fgets, counting lines. */
static char *
read_line(char *buf, int size, void *stream)
{
    struct parse_ctx *ctx = stream;
    const char *text = ctx->text + ctx->pos;
    if (*text == '\0' || size < 2)
        return NULL;
    const char *nl = strchr(text, '\n');
    size_t len = nl ? (size_t)(nl - text) + 1 : strlen(text);
    ctx->line++;
    size_t room = (size_t)size - 1;
    if (len > room) {
        /* inih would treat the rest as another line: refuse instead. */
        ctx_fail(ctx, ROOST_ECONFIG, ctx->line,
                 "line longer than %zu characters", room - 1);
        ctx->pos += len;
        buf[0] = '\n';
        buf[1] = '\0';
        return buf;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    ctx->pos += len;
    ctx->indented = isspace((unsigned char)buf[0]) != 0; /* inih's test */
    check_section_line(ctx, buf, len);
    return buf;
}

static int
on_key(void *user, const char *section, const char *name, const char *value)
{
    struct parse_ctx *ctx = user;
    if (ctx->err != ROOST_OK)
        return 1;
    if (section[0] == '\0') {
        ctx_fail(ctx, ROOST_ECONFIG, ctx->line, "key '%s' before any [section]",
                 name);
        return 0;
    }
    if (!known_section(section))
        return 0; /* already reported by the reader */
    /* inih (built with INI_ALLOW_MULTILINE, as Debian's is) hands an
     * indented line after a key to us as more of that key's value, name
     * and all, whatever the line looks like. Say so: reporting it as the
     * key given twice would send the reader looking for a duplicate. */
    if (ctx->indented && ctx->key_line > 0) {
        ctx_fail(ctx, ROOST_ECONFIG, ctx->line,
                 "indented line continues [%s] %s from line %d (multi-line "
                 "values are not supported): remove the indentation",
                 section, name, ctx->key_line);
        return 0;
    }
    const roost_config_key *k = roost_config_key_find(section, name);
    if (k == NULL) {
        ctx_fail(ctx, ROOST_ECONFIG, ctx->line,
                 "unknown key '%s' in [%s] (see roost serve "
                 "--print-default-config)",
                 name, section);
        return 0;
    }
    int *origin = &ctx->cfg->origin[key_index(k)];
    if (*origin > 0) {
        ctx_fail(ctx, ROOST_ECONFIG, ctx->line,
                 "[%s] %s is already set on line %d", section, name, *origin);
        return 0;
    }
    char why[ROOST_ERRMSG_CAP - 64];
    int rc = apply_value(ctx->cfg, k, value, why, sizeof(why));
    if (rc != ROOST_OK) {
        ctx_fail(ctx, rc, ctx->line, "[%s] %s: %s", section, name, why);
        return 0;
    }
    *origin = ctx->line;
    ctx->key_line = ctx->line;
    return 1;
}

int
roost_config_load_string(roost_serve_config *cfg, const char *text,
                         const char *name, roost_errmsg *em)
{
    if (cfg == NULL || text == NULL || name == NULL)
        return roost_fail(em, ROOST_EINVAL, "config: NULL argument");
    struct parse_ctx ctx = {.cfg = cfg, .name = name, .text = text, .em = em};
    char *src = strdup(name);
    if (src == NULL)
        return roost_fail(em, ROOST_ENOMEM, "config: out of memory");
    free(cfg->source);
    cfg->source = src;
    int rc = ini_parse_stream(read_line, &ctx, on_key, &ctx);
    if (rc == -2)
        return roost_fail(em, ROOST_ENOMEM, "config: out of memory");
    if (rc > 0 && (ctx.err == ROOST_OK || rc < ctx.err_line)) {
        /* A line inih could not parse, earlier than anything we found. */
        ctx.err = ROOST_OK;
        ctx_fail(&ctx, ROOST_ECONFIG, rc,
                 "cannot parse (expected [section], key = value, or a "
                 "comment starting with # or ;)");
    }
    return ctx.err;
}

int
roost_config_load_file(roost_serve_config *cfg, const char *path,
                       roost_errmsg *em)
{
    if (cfg == NULL || path == NULL)
        return roost_fail(em, ROOST_EINVAL, "config: NULL argument");
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return roost_fail(em, errno == ENOENT ? ROOST_ENOENT : ROOST_EIO,
                          "%s: cannot open: %s", path, strerror(errno));
    char *buf = malloc(CONFIG_FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        return roost_fail(em, ROOST_ENOMEM, "config: out of memory");
    }
    errno = 0;
    size_t n = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
    bool read_failed = ferror(f) != 0;
    int why = errno; /* e.g. EISDIR: fopen opens a directory for reading */
    fclose(f);
    int rc;
    if (read_failed)
        rc = roost_fail(em, ROOST_EIO, "%s: read error: %s", path,
                        why != 0 ? strerror(why) : "unknown cause");
    else if (n > CONFIG_FILE_MAX)
        rc = roost_fail(em, ROOST_ECONFIG, "%s: larger than %d bytes", path,
                        CONFIG_FILE_MAX);
    else if (memchr(buf, '\0', n) != NULL)
        rc = roost_fail(em, ROOST_ECONFIG,
                        "%s: contains a NUL byte (not a text file)", path);
    else {
        buf[n] = '\0';
        rc = roost_config_load_string(cfg, buf, path, em);
    }
    free(buf);
    return rc;
}

int
roost_config_set(roost_serve_config *cfg, const char *key, const char *value,
                 const char *origin, roost_errmsg *em)
{
    if (cfg == NULL || key == NULL || value == NULL)
        return roost_fail(em, ROOST_EINVAL, "config: NULL argument");
    if (origin == NULL)
        origin = "--set";
    const char *dot = strchr(key, '.');
    char section[64];
    if (dot == NULL || (size_t)(dot - key) >= sizeof(section))
        return roost_fail(em, ROOST_ECONFIG,
                          "%s %s: expected SECTION.KEY, e.g. round.timeout",
                          origin, key);
    memcpy(section, key, (size_t)(dot - key));
    section[dot - key] = '\0';
    const roost_config_key *k = roost_config_key_find(section, dot + 1);
    if (k == NULL)
        return roost_fail(em, ROOST_ECONFIG,
                          "%s %s: unknown key (see roost serve "
                          "--print-default-config)",
                          origin, key);
    char why[ROOST_ERRMSG_CAP - 64];
    int rc = apply_value(cfg, k, value, why, sizeof(why));
    if (rc != ROOST_OK)
        return roost_fail(em, rc, "%s %s: %s", origin, key, why);
    cfg->origin[key_index(k)] = ROOST_CONFIG_FROM_FLAG;
    return ROOST_OK;
}

/* ---------------------------------------------------------------------
 * Derived values and checks across keys.
 * ------------------------------------------------------------------- */

/* "FILE:LINE: " or "--set: " or "" for where key got its value. */
static void
where(const roost_serve_config *cfg, const char *section, const char *name,
      char *out, size_t cap)
{
    const roost_config_key *k = roost_config_key_find(section, name);
    int o = k ? cfg->origin[key_index(k)] : 0;
    if (o > 0)
        snprintf(out, cap, "%s:%d: ", cfg->source ? cfg->source : "config", o);
    else if (o == ROOST_CONFIG_FROM_FLAG)
        snprintf(out, cap, "--set %s.%s: ", section, name);
    else if (cfg->source != NULL)
        snprintf(out, cap, "%s: ", cfg->source);
    else
        out[0] = '\0';
}

static bool
is_set(const roost_serve_config *cfg, const char *section, const char *name)
{
    const roost_config_key *k = roost_config_key_find(section, name);
    return k != NULL && cfg->origin[key_index(k)] != ROOST_CONFIG_FROM_DEFAULT;
}

/* Replace *value, the value of [server] key, with dir/ *value. The result
 * is what --check-config prints for key, and that printout must load, so
 * it must fit a config line like every value: if it does not, the error
 * names key, says what is too long (what) and the way out (fix). */
static int
join_under(const roost_serve_config *cfg, const char *key, const char *dir,
           char **value, const char *what, const char *fix, roost_errmsg *em)
{
    size_t n = strlen(dir) + 1 + strlen(*value) + 1;
    size_t most = CONFIG_LINE_MAX - strlen(key) - 3;
    if (n - 1 > most) {
        char at[ROOST_ERRMSG_CAP / 2];
        where(cfg, "server", key, at, sizeof(at));
        return roost_fail(em, ROOST_ECONFIG,
                          "%s[server] %s: %s is %zu characters, more than a "
                          "config line holds (%zu); %s",
                          at, key, what, n - 1, most, fix);
    }
    char *full = malloc(n);
    if (full == NULL)
        return roost_fail(em, ROOST_ENOMEM, "config: out of memory");
    snprintf(full, n, "%s/%s", dir, *value);
    free(*value);
    *value = full;
    return ROOST_OK;
}

int
roost_config_finish(roost_serve_config *cfg, roost_errmsg *em)
{
    char at[ROOST_ERRMSG_CAP / 2];
    roost_coord_config *c = &cfg->coord;

    /* Strategy hyper-parameters not set take the chosen kind's defaults
     * (fedadam's server_lr differs from fedavg's). */
    roost_strategy_config kind_defaults;
    roost_strategy_config_init(&kind_defaults, c->strategy.kind);
    size_t lo = offsetof(roost_serve_config, coord.strategy);
    for (size_t i = 0; i < N_KEYS; i++) {
        const roost_config_key *k = &keys[i];
        if (k->offset < lo || k->offset >= lo + sizeof(c->strategy) ||
            k->type == ROOST_CONFIG_STRATEGY ||
            cfg->origin[i] != ROOST_CONFIG_FROM_DEFAULT)
            continue;
        size_t width = k->type == ROOST_CONFIG_DOUBLE ? sizeof(double)
                       : k->type == ROOST_CONFIG_BOOL ? sizeof(bool)
                                                      : sizeof(size_t);
        memcpy(field(cfg, k), (const char *)&kind_defaults + (k->offset - lo),
               width);
    }

    if (c->min_clients == 0)
        c->min_clients = c->clients_per_round;
    if (c->min_available == 0)
        c->min_available = c->clients_per_round;
    if (c->min_clients > c->clients_per_round) {
        bool own = is_set(cfg, "round", "min_clients");
        where(cfg, "round", own ? "min_clients" : "clients_per_round", at,
              sizeof(at));
        return roost_fail(em, ROOST_ECONFIG,
                          "%s[round] min_clients %" PRIu32
                          " is above clients_per_round %" PRIu32,
                          at, c->min_clients, c->clients_per_round);
    }
    /* A round selects only among the sessions waiting when it opens, and
     * replaces decliners from the same pool, so it never has more updates
     * than there are sessions. With more wanted than max_sessions allows,
     * no round could ever open (min_available) or reach its quorum
     * (clients_per_round, fed_eval_clients). over_selection may ask for
     * more tasks than sessions: the coordinator then sends one to every
     * waiting client, which is fine. */
    struct {
        const char *section, *name;
        uint32_t value;
        const char *why;
    } wanted[] = {
        {"round", "clients_per_round", c->clients_per_round,
         "no round could reach its quorum"},
        {"round", "min_available", c->min_available,
         "no round could ever open"},
        {"evaluation", "federated_clients", c->fed_eval_clients,
         "no federated evaluation round could reach its quorum"},
    };
    for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
        if (wanted[i].value <= cfg->max_sessions)
            continue;
        bool own = is_set(cfg, wanted[i].section, wanted[i].name);
        if (own)
            where(cfg, wanted[i].section, wanted[i].name, at, sizeof(at));
        else
            where(cfg, "server", "max_sessions", at, sizeof(at));
        return roost_fail(em, ROOST_ECONFIG,
                          "%s[%s] %s %" PRIu32
                          " exceeds [server] max_sessions %" PRIu32
                          ": %s (each participant needs a session)",
                          at, wanted[i].section, wanted[i].name,
                          wanted[i].value, cfg->max_sessions, wanted[i].why);
    }
    /* Krum and Multi-Krum aggregate a round only with at least 2f + 3
     * updates, and a round never has more than clients_per_round: below
     * that, every round would be recorded as failed. */
    size_t need = roost_strategy_min_updates(&c->strategy);
    if (need > c->clients_per_round) {
        bool own = is_set(cfg, "aggregation", "byzantine_f");
        where(cfg, own ? "aggregation" : "round",
              own ? "byzantine_f" : "clients_per_round", at, sizeof(at));
        return roost_fail(
            em, ROOST_ECONFIG,
            "%s[aggregation] %s with byzantine_f %zu needs at least %zu "
            "updates per round, but [round] clients_per_round is %" PRIu32
            ": no round could commit",
            at, roost_strategy_kind_name(c->strategy.kind),
            c->strategy.byzantine_f, need, c->clients_per_round);
    }
    if (cfg->idle_timeout_ms != 0 &&
        cfg->idle_timeout_ms <= c->round_timeout_ms) {
        where(cfg, "server", "idle_timeout", at, sizeof(at));
        return roost_fail(em, ROOST_ECONFIG,
                          "%s[server] idle_timeout (%" PRIu64
                          " ms) must exceed [round] timeout (%" PRIu64
                          " ms): waiting clients are idle during a round",
                          at, cfg->idle_timeout_ms, c->round_timeout_ms);
    }
    if (c->strategy.central_dp &&
        roost_strategy_kind_is_robust(c->strategy.kind)) {
        where(cfg, "aggregation", "central_dp", at, sizeof(at));
        return roost_fail(em, ROOST_ECONFIG,
                          "%s[aggregation] central_dp applies only to "
                          "mean-based strategies, not %s",
                          at, roost_strategy_kind_name(c->strategy.kind));
    }
    if (cfg->listen[0] == '\0' || strncmp(cfg->listen, "tcp://", 6) != 0) {
        where(cfg, "server", "listen", at, sizeof(at));
        return roost_fail(em, ROOST_ECONFIG,
                          "%s[server] listen: '%s' is not tcp://ADDRESS:PORT",
                          at, cfg->listen);
    }
    static const char *const required[][2] = {
        {"server", "ca_file"},  {"server", "cert_file"}, {"server", "key_file"},
        {"server", "crl_file"}, {"server", "state_dir"}, {"server", "database"},
        {"model", "spec"}};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        const roost_config_key *k =
            roost_config_key_find(required[i][0], required[i][1]);
        if ((*(char *const *)cfield(cfg, k))[0] == '\0') {
            where(cfg, k->section, k->name, at, sizeof(at));
            return roost_fail(em, ROOST_ECONFIG, "%s[%s] %s must not be empty",
                              at, k->section, k->name);
        }
    }
    if (cfg->eval_enabled && cfg->eval_dir[0] == '\0') {
        where(cfg, "evaluation", "dataset_dir", at, sizeof(at));
        return roost_fail(em, ROOST_ECONFIG,
                          "%s[evaluation] dataset_dir is empty but "
                          "evaluation is enabled",
                          at);
    }

    /* A relative state_dir is taken from the working directory, as
     * --state-dir is, and made absolute here: the database is joined to
     * it below and --check-config prints the joined path, which a load of
     * that printout would otherwise join to the relative state_dir a
     * second time (state/state/roost.db). The daemon never changes
     * directory, so the files named are the same. */
    if (cfg->state_dir[0] != '/') {
        char cwd[4096];
        if (getcwd(cwd, sizeof(cwd)) == NULL) {
            where(cfg, "server", "state_dir", at, sizeof(at));
            return roost_fail(em, ROOST_ECONFIG,
                              "%s[server] state_dir: '%s' is relative and the "
                              "working directory cannot be read: %s",
                              at, cfg->state_dir, strerror(errno));
        }
        int rc = join_under(cfg, "state_dir", cwd, &cfg->state_dir,
                            "taken from the working directory it",
                            "give it as an absolute path", em);
        if (rc != ROOST_OK)
            return rc;
    }

    /* The database path, relative to state_dir. */
    if (cfg->database[0] != '/') {
        int rc = join_under(cfg, "database", cfg->state_dir, &cfg->database,
                            "state_dir/database",
                            "shorten state_dir or give database as an "
                            "absolute path",
                            em);
        if (rc != ROOST_OK)
            return rc;
    }

    /* What the coordinator reads from here. */
    c->model_spec = cfg->model_spec;
    c->run_name = cfg->run_name[0] ? cfg->run_name : NULL;
    c->log.max_level = cfg->log_level;

    /* The strategy's own checks, except the rng central DP needs (the
     * daemon supplies it when it builds the coordinator). */
    roost_strategy_config check = c->strategy;
    check.central_dp = false;
    roost_errmsg sem;
    if (roost_strategy_config_check(&check, &sem) != ROOST_OK) {
        where(cfg, "aggregation", "strategy", at, sizeof(at));
        return roost_fail(em, ROOST_ECONFIG, "%s[aggregation] %s", at,
                          sem.text);
    }
    return ROOST_OK;
}

/* ---------------------------------------------------------------------
 * Writing the configuration back out.
 * ------------------------------------------------------------------- */

static void
format_double(double v, char *buf, size_t cap)
{
    for (int digits = 6; digits <= 17; digits++) {
        snprintf(buf, cap, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static void
format_scaled(uint64_t v, const uint64_t *factors, const char *const *units,
              size_t n, char *buf, size_t cap)
{
    for (size_t i = n; i-- > 0;)
        if (v != 0 && v % factors[i] == 0) {
            snprintf(buf, cap, "%" PRIu64 "%s", v / factors[i], units[i]);
            return;
        }
    snprintf(buf, cap, "%" PRIu64, v);
}

void
roost_config_format_value(const roost_serve_config *cfg,
                          const roost_config_key *k, char *buf, size_t cap)
{
    const void *src = cfield(cfg, k);
    switch (k->type) {
    case ROOST_CONFIG_BOOL:
        snprintf(buf, cap, "%s", *(const bool *)src ? "true" : "false");
        return;
    case ROOST_CONFIG_U32:
        snprintf(buf, cap, "%" PRIu32, *(const uint32_t *)src);
        return;
    case ROOST_CONFIG_U64:
        snprintf(buf, cap, "%" PRIu64, *(const uint64_t *)src);
        return;
    case ROOST_CONFIG_SIZE_T:
        snprintf(buf, cap, "%zu", *(const size_t *)src);
        return;
    case ROOST_CONFIG_DOUBLE:
        format_double(*(const double *)src, buf, cap);
        return;
    case ROOST_CONFIG_DURATION: {
        static const uint64_t f[] = {1, 1000, 60000, 3600000, 86400000};
        static const char *const u[] = {"ms", "s", "min", "h", "d"};
        format_scaled(*(const uint64_t *)src, f, u, 5, buf, cap);
        return;
    }
    case ROOST_CONFIG_BYTES: {
        static const uint64_t f[] = {1, 1024, 1024 * 1024, 1024 * 1024 * 1024};
        static const char *const u[] = {"", "KiB", "MiB", "GiB"};
        uint64_t v = (k->flags & ROOST_CONFIG_SIZE_T_FIELD)
                         ? (uint64_t) * (const size_t *)src
                         : *(const uint64_t *)src;
        format_scaled(v, f, u, 4, buf, cap);
        return;
    }
    case ROOST_CONFIG_STRING: {
        const char *s = *(char *const *)src;
        snprintf(buf, cap, "%s", s ? s : "");
        return;
    }
    case ROOST_CONFIG_CHOICE: {
        int i = *(const int *)src;
        snprintf(buf, cap, "%s", k->choices[i]);
        return;
    }
    case ROOST_CONFIG_STRATEGY:
        snprintf(buf, cap, "%s",
                 roost_strategy_kind_name(*(const roost_strategy_kind *)src));
        return;
    case ROOST_CONFIG_SHAPE: {
        const uint32_t *d = src;
        snprintf(buf, cap, "%" PRIu32 "x%" PRIu32 "x%" PRIu32, d[0], d[1],
                 d[2]);
        return;
    }
    }
    snprintf(buf, cap, "?");
}

/* Help text as "# " comment lines of at most 78 columns. */
static void
write_help(FILE *out, const char *help)
{
    const char *p = help;
    while (*p) {
        size_t len = strlen(p);
        size_t take = len;
        if (len > 76) {
            take = 76;
            while (take > 0 && p[take] != ' ')
                take--;
            if (take == 0)
                take = 76;
        }
        fprintf(out, "# %.*s\n", (int)take, p);
        p += take;
        while (*p == ' ')
            p++;
    }
}

void
roost_config_write(const roost_serve_config *cfg, FILE *out, bool sample)
{
    roost_serve_config defaults;
    if (sample) {
        if (roost_config_init(&defaults) != ROOST_OK) {
            fprintf(out, "# out of memory\n");
            return;
        }
        cfg = &defaults;
        fputs("# Roost coordinator configuration (roost serve --config "
              "FILE).\n"
              "#\n"
              "# Every key is listed with its default value; delete or "
              "change what you\n"
              "# need. Durations take a unit (ms, s, min, h, d); sizes may "
              "take KiB,\n"
              "# MiB or GiB. Check a file with: roost serve --check-config "
              "FILE\n"
              "# This file is generated by: roost serve "
              "--print-default-config\n",
              out);
    } else {
        fprintf(out, "# effective configuration%s%s\n",
                cfg->source ? " of " : "", cfg->source ? cfg->source : "");
    }
    const char *section = "";
    for (size_t i = 0; i < N_KEYS; i++) {
        const roost_config_key *k = &keys[i];
        if (strcmp(section, k->section) != 0) {
            section = k->section;
            fprintf(out, "\n[%s]\n", section);
        }
        char value[512];
        roost_config_format_value(cfg, k, value, sizeof(value));
        if (sample) {
            fputc('\n', out);
            write_help(out, k->help);
            fprintf(out, "%s =%s%s\n", k->name, value[0] ? " " : "", value);
            continue;
        }
        int o = cfg->origin[i];
        char note[32] = "";
        if (o > 0)
            snprintf(note, sizeof(note), "line %d", o);
        else if (o == ROOST_CONFIG_FROM_FLAG)
            snprintf(note, sizeof(note), "command line");
        /* The output must load again, and the reader refuses lines over
         * CONFIG_LINE_MAX: a note that would push a long value over goes
         * on a comment line of its own. */
        size_t line_len =
            strlen(k->name) + 3 + strlen(value) + 4 + strlen(note);
        if (note[0] == '\0')
            fprintf(out, "%s = %s\n", k->name, value);
        else if (line_len > CONFIG_LINE_MAX)
            fprintf(out, "; %s\n%s = %s\n", note, k->name, value);
        else
            fprintf(out, "%s = %s  ; %s\n", k->name, value, note);
    }
    if (sample)
        roost_config_free(&defaults);
}
