/*
 * test_config.c - the coordinator's configuration table and INI parser:
 * every key parses, defaults agree with the modules' own defaults, each
 * kind of bad input is refused with FILE:LINE and a reason, flags override
 * the file, derived values and cross-key checks, and deploy/roost.conf is
 * exactly what --print-default-config writes.
 */
#include "server/config.h"
#include "server/strategy.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <ini.h>

static roost_serve_config *
fresh(void)
{
    roost_serve_config *cfg = calloc(1, sizeof(*cfg));
    assert_non_null(cfg);
    assert_int_equal(roost_config_init(cfg), ROOST_OK);
    return cfg;
}

static void
dispose(roost_serve_config *cfg)
{
    roost_config_free(cfg);
    free(cfg);
}

/* Load text named "t.conf"; return the code and leave the message. */
static int
load(roost_serve_config *cfg, const char *text, roost_errmsg *em)
{
    return roost_config_load_string(cfg, text, "t.conf", em);
}

/* The text must be refused with ROOST_ECONFIG and a message starting
 * with "t.conf:LINE: " and containing what. */
static void
expect_refused(const char *text, int line, const char *what)
{
    roost_serve_config *cfg = fresh();
    roost_errmsg em;
    int rc = load(cfg, text, &em);
    if (rc == ROOST_OK)
        rc = roost_config_finish(cfg, &em);
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "t.conf:%d: ", line);
    if (rc != ROOST_ECONFIG || strncmp(em.text, prefix, strlen(prefix)) != 0 ||
        strstr(em.text, what) == NULL)
        fail_msg("for %s: rc %d, message '%s'; want '%s...%s'", text, rc,
                 em.text, prefix, what);
    dispose(cfg);
}

static void
test_defaults_match_modules(void **state)
{
    (void)state;
    roost_serve_config *cfg = fresh();
    roost_errmsg em;
    assert_int_equal(roost_config_finish(cfg, &em), ROOST_OK);
    roost_coord_config want;
    roost_coord_config_init(&want);
    const roost_coord_config *got = &cfg->coord;
    assert_string_equal(got->model_spec, want.model_spec);
    assert_int_equal(got->input_channels, want.input_channels);
    assert_int_equal(got->input_height, want.input_height);
    assert_int_equal(got->input_width, want.input_width);
    assert_int_equal(got->init_seed, want.init_seed);
    assert_int_equal(got->clients_per_round, want.clients_per_round);
    /* min_clients and min_available default to 0 = clients_per_round,
     * which is what the coordinator's own defaults say. */
    assert_int_equal(got->min_clients, want.min_clients);
    assert_int_equal(got->min_available, want.min_available);
    assert_true(got->over_selection == want.over_selection);
    assert_int_equal(got->round_timeout_ms, want.round_timeout_ms);
    assert_int_equal(got->retry_after_ms, want.retry_after_ms);
    assert_int_equal(got->max_rounds, want.max_rounds);
    assert_int_equal(got->local_epochs, want.local_epochs);
    assert_int_equal(got->batch_size, want.batch_size);
    assert_true(got->learning_rate == want.learning_rate);
    assert_true(got->momentum == want.momentum);
    assert_true(got->weight_decay == want.weight_decay);
    assert_int_equal(got->dp_enabled, want.dp_enabled);
    assert_true(got->dp_noise_multiplier == want.dp_noise_multiplier);
    assert_true(got->dp_clip_norm == want.dp_clip_norm);
    assert_true(got->dp_delta == want.dp_delta);
    assert_true(got->dp_sampling_rate == want.dp_sampling_rate);
    assert_int_equal(got->dp_expected_batch, want.dp_expected_batch);
    assert_true(got->max_update_norm == want.max_update_norm);
    assert_int_equal(got->norm_policy, want.norm_policy);
    assert_int_equal(got->max_examples, want.max_examples);
    assert_int_equal(got->selection_seed, want.selection_seed);
    assert_int_equal(got->log.max_level, want.log.max_level);

    roost_strategy_config s;
    roost_strategy_config_init(&s, ROOST_STRATEGY_FEDAVG);
    const roost_strategy_config *g = &got->strategy;
    assert_int_equal(g->kind, s.kind);
    assert_true(g->server_lr == s.server_lr);
    assert_true(g->momentum == s.momentum);
    assert_true(g->beta1 == s.beta1 && g->beta2 == s.beta2);
    assert_true(g->tau == s.tau && g->prox_mu == s.prox_mu);
    assert_true(g->trim_fraction == s.trim_fraction);
    assert_int_equal(g->byzantine_f, s.byzantine_f);
    assert_int_equal(g->multikrum_m, s.multikrum_m);
    assert_int_equal(g->max_buffered_updates, s.max_buffered_updates);
    assert_int_equal(g->max_buffered_bytes, s.max_buffered_bytes);
    assert_int_equal(g->central_dp, s.central_dp);
    assert_true(g->dp_clip_norm == s.dp_clip_norm);
    assert_true(g->dp_noise_multiplier == s.dp_noise_multiplier);
    assert_int_equal(g->dp_expected_updates, s.dp_expected_updates);

    /* Each key's stored default prints back as the table's text. */
    for (size_t i = 0; i < roost_config_key_count(); i++) {
        const roost_config_key *k = roost_config_key_at(i);
        char buf[512];
        roost_config_format_value(cfg, k, buf, sizeof(buf));
        if (strcmp(k->section, "server") == 0 &&
            strcmp(k->name, "database") == 0)
            continue; /* made absolute under state_dir by finish */
        if (strcmp(k->section, "round") == 0 &&
            (strcmp(k->name, "min_clients") == 0 ||
             strcmp(k->name, "min_available") == 0))
            continue; /* 0 resolved to clients_per_round */
        if (strcmp(buf, k->def) != 0)
            fail_msg("[%s] %s: default prints as '%s', table says '%s'",
                     k->section, k->name, buf, k->def);
        assert_int_equal(cfg->origin[i], ROOST_CONFIG_FROM_DEFAULT);
    }
    assert_string_equal(cfg->database, "/var/lib/roost/roost.db");
    dispose(cfg);
}

/* Every key, alone in a file, with its default and with another valid
 * value, parses and is attributed to line 2. */
static void
test_every_key_parses(void **state)
{
    (void)state;
    size_t n = roost_config_key_count();
    assert_true(n >= 50);
    for (size_t i = 0; i < n; i++) {
        const roost_config_key *k = roost_config_key_at(i);
        assert_non_null(roost_config_key_find(k->section, k->name));
        assert_non_null(k->help);
        assert_true(strlen(k->help) > 10);
        char text[700];
        snprintf(text, sizeof(text), "[%s]\n%s = %s\n", k->section, k->name,
                 k->def);
        roost_serve_config *cfg = fresh();
        roost_errmsg em;
        if (load(cfg, text, &em) != ROOST_OK)
            fail_msg("[%s] %s = %s: %s", k->section, k->name, k->def, em.text);
        assert_int_equal(cfg->origin[i], 2);
        dispose(cfg);
    }
}

static void
test_values_by_type(void **state)
{
    (void)state;
    roost_serve_config *cfg = fresh();
    roost_errmsg em;
    const char *text = "# comment\n"
                       "; another\n"
                       "[server]\n"
                       "listen = tcp://127.0.0.1:9000\n"
                       "max_frame = 16MiB\n"
                       "handshake_timeout = 1500ms\n"
                       "idle_timeout = 2h\n"
                       "log_level = debug\n"
                       "run_name = first run ; inline comment\n"
                       "[model]\n"
                       "spec = cnn\n"
                       "input_shape = 3x32x32\n"
                       "[round]\n"
                       "clients_per_round = 20\n"
                       "over_selection = 1.3\n"
                       "timeout = 90s\n"
                       "retry_after = 1min\n"
                       "max_rounds = 100\n"
                       "[dp]\n"
                       "enabled = yes\n"
                       "delta = 1e-6\n"
                       "[aggregation]\n"
                       "strategy = trimmed_mean\n"
                       "trim_fraction = 0.2\n"
                       "max_buffered_bytes = 512MiB\n"
                       "norm_policy = clip\n"
                       "max_update_norm = 10\n"
                       "[evaluation]\n"
                       "enabled = on\n"
                       "dataset_dir = /data/fmnist\n";
    assert_int_equal(load(cfg, text, &em), ROOST_OK);
    assert_int_equal(roost_config_finish(cfg, &em), ROOST_OK);
    assert_string_equal(cfg->listen, "tcp://127.0.0.1:9000");
    assert_int_equal(cfg->max_frame, 16u << 20);
    assert_int_equal(cfg->handshake_timeout_ms, 1500);
    assert_int_equal(cfg->idle_timeout_ms, 2 * 3600 * 1000);
    assert_int_equal(cfg->log_level, ROOST_LOG_DEBUG);
    assert_string_equal(cfg->run_name, "first run");
    assert_string_equal(cfg->coord.run_name, "first run");
    assert_string_equal(cfg->coord.model_spec, "cnn");
    assert_int_equal(cfg->coord.input_channels, 3);
    assert_int_equal(cfg->coord.input_height, 32);
    assert_int_equal(cfg->coord.input_width, 32);
    assert_int_equal(cfg->coord.clients_per_round, 20);
    assert_int_equal(cfg->coord.min_clients, 20);
    assert_int_equal(cfg->coord.min_available, 20);
    assert_true(cfg->coord.over_selection == 1.3);
    assert_int_equal(cfg->coord.round_timeout_ms, 90000);
    assert_int_equal(cfg->coord.retry_after_ms, 60000);
    assert_int_equal(cfg->coord.max_rounds, 100);
    assert_true(cfg->coord.dp_enabled);
    assert_true(cfg->coord.dp_delta == 1e-6);
    assert_int_equal(cfg->coord.strategy.kind, ROOST_STRATEGY_TRIMMED_MEAN);
    assert_true(cfg->coord.strategy.trim_fraction == 0.2);
    assert_int_equal(cfg->coord.strategy.max_buffered_bytes, 512u << 20);
    assert_int_equal(cfg->coord.norm_policy, ROOST_NORM_CLIP);
    assert_true(cfg->coord.max_update_norm == 10);
    assert_true(cfg->eval_enabled);
    assert_string_equal(cfg->eval_dir, "/data/fmnist");
    /* Where values came from. */
    const roost_config_key *k = roost_config_key_find("round", "timeout");
    assert_int_equal(cfg->origin[k - roost_config_key_at(0)], 16);
    dispose(cfg);
}

static void
test_refusals_name_file_and_line(void **state)
{
    (void)state;
    expect_refused("[server]\nlisten = tcp://x:1\nfrobnicate = 1\n", 3,
                   "unknown key 'frobnicate' in [server]");
    expect_refused("[round]\ntimeout = 1min\n\n[rounds]\n", 4,
                   "unknown section [rounds]");
    expect_refused("[nosuch]\nkey = 1\n", 1, "unknown section [nosuch]");
    expect_refused("[round]\nclients_per_round = ten\n", 2,
                   "'ten' is not a non-negative integer");
    expect_refused("[round]\nclients_per_round = -3\n", 2,
                   "not a non-negative integer");
    expect_refused("[training]\nlearning_rate = 0.1x\n", 2,
                   "not a finite number");
    expect_refused("[training]\nlearning_rate = nan\n", 2,
                   "not a finite number");
    expect_refused("[round]\n\nclients_per_round = 0\n", 3,
                   "0 is outside [1, 100000]");
    expect_refused("[training]\nlearning_rate = 0\n", 2, "outside (0, 100]");
    expect_refused("[dp]\ndelta = 1\n", 2, "outside (0, 1)");
    expect_refused("[aggregation]\nstrategy = fedsgd\n", 2,
                   "unknown strategy \"fedsgd\"");
    expect_refused("[aggregation]\nnorm_policy = drop\n", 2,
                   "'drop' is not one of: reject clip");
    expect_refused("[dp]\nenabled = maybe\n", 2, "not a boolean");
    expect_refused("[round]\ntimeout = 600\n", 2, "needs a unit");
    expect_refused("[round]\ntimeout = 10 min\n", 2, "unknown unit");
    expect_refused("[round]\ntimeout = 1ms\n", 2, "outside [1000");
    expect_refused("[server]\nmax_frame = 4MB\n", 2, "is not a size");
    expect_refused("[model]\ninput_shape = 28x28\n", 2, "is not a shape");
    expect_refused("[model]\ninput_shape = 1x0x28\n", 2, "outside");
    expect_refused("[round]\ntimeout = 1min\ntimeout = 2min\n", 3,
                   "already set on line 2");
    expect_refused("spec = mlp\n", 1, "before any [section]");
    expect_refused("[server]\nthis line has no equals sign\n", 2,
                   "cannot parse");
    expect_refused("[server\n", 1, "cannot parse");
    expect_refused("[server]\nrun_name = a\001b\n", 2, "control character");
    /* Refusals on later lines win only when nothing earlier failed. */
    expect_refused("[round]\nbad = 1\nworse\n", 2, "unknown key 'bad'");

    /* Numbers too large for 64 bits are out of range, not malformed. */
    expect_refused("[round]\nclients_per_round = 99999999999999999999\n", 2,
                   "99999999999999999999 is outside [1, 100000]");
    expect_refused("[round]\ntimeout = 99999999999999999999s\n", 2,
                   "'99999999999999999999s' is too long");
    expect_refused("[server]\nmax_frame = 99999999999999999999\n", 2,
                   "'99999999999999999999' is too large");
    expect_refused("[model]\ninput_shape = 1x28x99999999999\n", 2,
                   "99999999999 is outside [1, 65536]");
    expect_refused("[model]\ninput_shape = 1x99999999999999999999x28\n", 2,
                   "99999999999999999999 is outside [1, 65536]");

    char longline[400];
    memset(longline, 'a', sizeof(longline));
    memcpy(longline, "[server]\nrun_name = ", 20);
    memcpy(longline + sizeof(longline) - 2, "\n", 2);
    expect_refused(longline, 2, "line longer than");
}

/* inih reads an indented line after a key as a continuation of that
 * key's value (a multi-line value), so indented keys are not keys. The
 * message must say so, not claim the earlier key was given twice. */
static void
expect_continuation(const char *text, int line, const char *what)
{
    expect_refused(text, line, what);
    roost_serve_config *cfg = fresh();
    roost_errmsg em;
    assert_int_equal(load(cfg, text, &em), ROOST_ECONFIG);
    if (strstr(em.text, "already set") != NULL)
        fail_msg("for %s: misleading message '%s'", text, em.text);
    dispose(cfg);
}

static void
test_indented_lines(void **state)
{
    (void)state;
    expect_continuation("[server]\n  listen = tcp://0.0.0.0:7443\n"
                        "  max_sessions = 10\n",
                        3,
                        "indented line continues [server] listen from "
                        "line 2");
    expect_continuation("[server]\nlisten = tcp://0.0.0.0:7443\n"
                        "\ttcp://127.0.0.1:1\n",
                        3, "remove the indentation");
    /* An indented section header after a key is a continuation too. */
    expect_continuation("[server]\nlisten = tcp://0.0.0.0:7443\n"
                        "  [round]\ntimeout = 5min\n",
                        3, "continues [server] listen");
    expect_continuation("[server]\nlisten = tcp://0.0.0.0:7443\n"
                        "  [rounds]\n",
                        3, "continues [server] listen");
    /* Indented comments, and an indented first key of a section, are
     * what they look like. */
    roost_serve_config *cfg = fresh();
    roost_errmsg em;
    assert_int_equal(load(cfg,
                          "[round]\n  timeout = 5min\n  # note\n"
                          "[server]\n  max_sessions = 10\n",
                          &em),
                     ROOST_OK);
    assert_int_equal(cfg->coord.round_timeout_ms, 300000);
    assert_int_equal(cfg->max_sessions, 10);
    dispose(cfg);
    /* A key really given twice still says so, indented or not. */
    expect_refused("[round]\ntimeout = 1min\n[round]\n  timeout = 2min\n", 4,
                   "already set on line 2");
}

/* inih ignores whatever follows the ']' of a section header, so a key
 * written there would silently keep its default. */
static void
test_text_after_section_header(void **state)
{
    (void)state;
    expect_refused("[round] timeout = 5min\n", 1,
                   "text after the section header [round]: 'timeout = "
                   "5min'");
    expect_refused("[round]\ntimeout = 5min\n[server]]\n", 3,
                   "text after the section header [server]: ']'");
    roost_serve_config *cfg = fresh();
    roost_errmsg em;
    assert_int_equal(load(cfg,
                          "[round] ; the round\ntimeout = 5min\n"
                          "[server]   # comment\t\r\nmax_sessions = 10\n",
                          &em),
                     ROOST_OK);
    assert_int_equal(cfg->coord.round_timeout_ms, 300000);
    assert_int_equal(cfg->max_sessions, 10);
    dispose(cfg);
}

static void
test_unreadable_file(void **state)
{
    (void)state;
    roost_serve_config *cfg = fresh();
    roost_errmsg em;
    assert_int_equal(roost_config_load_file(cfg, "/", &em), ROOST_EIO);
    if (strstr(em.text, "/: read error: ") == NULL)
        fail_msg("message '%s' does not say why the read failed", em.text);
    dispose(cfg);
}

static void
test_cross_key_checks(void **state)
{
    (void)state;
    expect_refused("[round]\nclients_per_round = 5\nmin_clients = 6\n", 3,
                   "min_clients 6 is above clients_per_round 5");
    expect_refused("[round]\ntimeout = 1h\n[server]\nidle_timeout = 30min\n", 4,
                   "idle_timeout");
    expect_refused("[aggregation]\nstrategy = median\ncentral_dp = true\n", 3,
                   "central_dp applies only to mean-based");
    expect_refused("[server]\nlisten = udp://0.0.0.0:1\n", 2,
                   "is not tcp://ADDRESS:PORT");
    expect_refused("[server]\ndatabase =\n", 2, "must not be empty");
    expect_refused("[evaluation]\nenabled = true\ndataset_dir =\n", 3,
                   "dataset_dir is empty");
    /* A round never has more participants than sessions: a quorum or an
     * opening threshold above max_sessions could never be met. The line
     * named is the key that was set. */
    expect_refused("[server]\nmax_sessions = 10\n[round]\n"
                   "clients_per_round = 50\n",
                   4, "clients_per_round 50 exceeds [server] max_sessions 10");
    expect_refused("[server]\nmax_sessions = 5\n", 2,
                   "clients_per_round 10 exceeds [server] max_sessions 5");
    expect_refused("[server]\nmax_sessions = 10\n[round]\n"
                   "clients_per_round = 5\nmin_available = 11\n",
                   5, "min_available 11 exceeds");
    expect_refused("[server]\nmax_sessions = 10\n[evaluation]\n"
                   "federated_every = 1\nfederated_clients = 12\n",
                   5, "federated_clients 12 exceeds");
    /* Krum needs 2f + 3 updates, and a round has at most K. */
    expect_refused("[round]\nclients_per_round = 50\n[aggregation]\n"
                   "strategy = krum\nbyzantine_f = 24\n",
                   5, "krum with byzantine_f 24 needs at least 51 updates");
    expect_refused("[round]\nclients_per_round = 4\n[aggregation]\n"
                   "strategy = multikrum\n",
                   2, "multikrum with byzantine_f 1 needs at least 5");
    /* Double values out of range say so (1e-320 underflows to a
     * subnormal: not the number written). */
    expect_refused("[dp]\nsampling_rate = 1e-320\n", 2, "out of range");
    expect_refused("[training]\nlearning_rate = 1e999\n", 2, "out of range");

    /* min_clients within K, derived min_available. */
    roost_serve_config *cfg = fresh();
    roost_errmsg em;
    assert_int_equal(
        load(cfg, "[round]\nclients_per_round = 8\nmin_clients = 6\n", &em),
        ROOST_OK);
    assert_int_equal(roost_config_finish(cfg, &em), ROOST_OK);
    assert_int_equal(cfg->coord.min_clients, 6);
    assert_int_equal(cfg->coord.min_available, 8);
    dispose(cfg);

    /* At the limits these are valid: K = max_sessions, over-selection
     * beyond the sessions (the coordinator then tasks every waiting
     * client), and Krum with exactly 2f + 3 = K. */
    cfg = fresh();
    assert_int_equal(load(cfg,
                          "[server]\nmax_sessions = 7\n[round]\n"
                          "clients_per_round = 7\nover_selection = 2\n"
                          "min_clients = 3\n[aggregation]\nstrategy = krum\n"
                          "byzantine_f = 2\n",
                          &em),
                     ROOST_OK);
    if (roost_config_finish(cfg, &em) != ROOST_OK)
        fail_msg("refused: %s", em.text);
    dispose(cfg);
}

static void
test_strategy_defaults_follow_kind(void **state)
{
    (void)state;
    roost_serve_config *cfg = fresh();
    roost_errmsg em;
    assert_int_equal(load(cfg, "[aggregation]\nstrategy = fedadam\n", &em),
                     ROOST_OK);
    assert_int_equal(roost_config_finish(cfg, &em), ROOST_OK);
    assert_true(cfg->coord.strategy.server_lr == 1e-2);
    dispose(cfg);

    cfg = fresh();
    assert_int_equal(
        load(cfg, "[aggregation]\nstrategy = fedyogi\nserver_lr = 0.5\n", &em),
        ROOST_OK);
    assert_int_equal(roost_config_finish(cfg, &em), ROOST_OK);
    assert_true(cfg->coord.strategy.server_lr == 0.5);
    assert_int_equal(cfg->coord.strategy.kind, ROOST_STRATEGY_FEDYOGI);
    dispose(cfg);
}

static void
test_flags_override_file(void **state)
{
    (void)state;
    roost_serve_config *cfg = fresh();
    roost_errmsg em;
    assert_int_equal(load(cfg,
                          "[round]\ntimeout = 1min\nclients_per_round = 4\n"
                          "[server]\nidle_timeout = 0\n",
                          &em),
                     ROOST_OK);
    assert_int_equal(
        roost_config_set(cfg, "round.timeout", "2min", "--set", &em), ROOST_OK);
    assert_int_equal(
        roost_config_set(cfg, "server.database", "/tmp/x.db", "--db", &em),
        ROOST_OK);
    assert_int_equal(roost_config_finish(cfg, &em), ROOST_OK);
    assert_int_equal(cfg->coord.round_timeout_ms, 120000);
    assert_int_equal(cfg->coord.clients_per_round, 4);
    assert_string_equal(cfg->database, "/tmp/x.db");
    const roost_config_key *k = roost_config_key_find("round", "timeout");
    assert_int_equal(cfg->origin[k - roost_config_key_at(0)],
                     ROOST_CONFIG_FROM_FLAG);

    assert_int_equal(
        roost_config_set(cfg, "round.timeout", "soon", "--set", &em),
        ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "--set round.timeout: "));
    assert_int_equal(roost_config_set(cfg, "round.nope", "1", "--set", &em),
                     ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "unknown key"));
    assert_int_equal(roost_config_set(cfg, "timeout", "1s", "--set", &em),
                     ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "SECTION.KEY"));
    /* A string no config line could hold is refused, not printed cut or
     * unloadable by --check-config; the longest a line holds is taken. */
    char path[600];
    memset(path, 'a', sizeof(path) - 1);
    path[sizeof(path) - 1] = '\0';
    assert_int_equal(
        roost_config_set(cfg, "server.ca_file", path, "--set", &em),
        ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "599 characters"));
    path[INI_MAX_LINE - 2 - strlen("ca_file = ")] = '\0';
    assert_int_equal(
        roost_config_set(cfg, "server.ca_file", path, "--set", &em), ROOST_OK);
    dispose(cfg);

    /* So is a relative database whose path joined to state_dir is longer
     * than a line, though each value fits one: --check-config prints the
     * joined path. It used to be accepted and printed unloadable. */
    size_t most = INI_MAX_LINE - 2 - strlen("database = ");
    char dir[600], name[600];
    memset(dir, 'd', most / 2);
    dir[0] = '/'; /* a relative one would be taken from the working dir */
    dir[most / 2] = '\0';
    memset(name, 'n', most - 1 - most / 2); /* joined: exactly most */
    name[most - 1 - most / 2] = '\0';
    cfg = fresh();
    assert_int_equal(
        roost_config_set(cfg, "server.state_dir", dir, "--set", &em), ROOST_OK);
    assert_int_equal(
        roost_config_set(cfg, "server.database", name, "--set", &em), ROOST_OK);
    assert_int_equal(roost_config_finish(cfg, &em), ROOST_OK);
    dispose(cfg);
    name[most - 1 - most / 2] = 'n';
    name[most - most / 2] = '\0';
    cfg = fresh();
    assert_int_equal(
        roost_config_set(cfg, "server.state_dir", dir, "--set", &em), ROOST_OK);
    assert_int_equal(
        roost_config_set(cfg, "server.database", name, "--set", &em), ROOST_OK);
    assert_int_equal(roost_config_finish(cfg, &em), ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "--set server.database: "));
    assert_non_null(strstr(em.text, "more than a config line holds"));
    dispose(cfg);
}

/* A fresh configuration loaded from cfg's effective output (what
 * --check-config prints); fails the test if that does not load. */
static roost_serve_config *
load_effective(const roost_serve_config *cfg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    roost_config_write(cfg, f, false);
    fclose(f);
    roost_serve_config *again = fresh();
    roost_errmsg em;
    if (roost_config_load_string(again, text, "effective", &em) != ROOST_OK)
        fail_msg("effective output does not parse: %s\n%s", em.text, text);
    free(text);
    return again;
}

/* The effective configuration printout is itself a valid file giving the
 * same values. */
static void
test_effective_output_round_trips(void **state)
{
    (void)state;
    roost_serve_config *cfg = fresh();
    roost_errmsg em;
    assert_int_equal(load(cfg,
                          "[round]\ntimeout = 90s\nover_selection = 1.25\n"
                          "[aggregation]\nstrategy = krum\nbyzantine_f = 2\n",
                          &em),
                     ROOST_OK);
    assert_int_equal(roost_config_finish(cfg, &em), ROOST_OK);
    roost_serve_config *again = load_effective(cfg);
    for (size_t i = 0; i < roost_config_key_count(); i++) {
        const roost_config_key *k = roost_config_key_at(i);
        if (k->type == ROOST_CONFIG_STRING &&
            strcmp(k->name, "run_name") != 0 &&
            strcmp(k->name, "log_file") != 0) {
            char a[512], b[512];
            roost_config_format_value(cfg, k, a, sizeof(a));
            roost_config_format_value(again, k, b, sizeof(b));
            assert_string_equal(a, b);
        }
    }
    assert_int_equal(again->coord.round_timeout_ms, 90000);
    assert_true(again->coord.over_selection == 1.25);
    assert_int_equal(again->coord.strategy.byzantine_f, 2);
    dispose(again);
    dispose(cfg);
}

/* A relative state_dir in a file is taken from the working directory.
 * The effective output names the database joined to it; loaded and
 * finished again, that output must name the same database. It used to
 * print database = state/roost.db with state_dir = state, which the next
 * load joined again into state/state/roost.db. */
static void
test_effective_output_relative_state_dir(void **state)
{
    (void)state;
    roost_serve_config *cfg = fresh();
    roost_errmsg em;
    assert_int_equal(load(cfg, "[server]\nstate_dir = state\n", &em), ROOST_OK);
    assert_int_equal(roost_config_finish(cfg, &em), ROOST_OK);
    roost_serve_config *again = load_effective(cfg);
    assert_int_equal(roost_config_finish(again, &em), ROOST_OK);
    assert_string_equal(again->database, cfg->database);
    assert_string_equal(again->state_dir, cfg->state_dir);
    /* The files are those the working directory names. */
    char cwd[4096], want[4200];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    snprintf(want, sizeof(want), "%s/state/roost.db", cwd);
    assert_string_equal(cfg->database, want);
    dispose(again);
    dispose(cfg);
}

/* A value near the reader's line limit (198 characters) still fits
 * after '--check-config' adds where it came from: the effective output
 * must stay a file the reader takes. */
static void
test_effective_output_long_lines(void **state)
{
    (void)state;
    char path[200];
    memset(path, 'p', sizeof(path));
    path[0] = '/';
    path[186] = '\0'; /* "ca_file=" + 186 = 194 characters */
    char text[300];
    snprintf(text, sizeof(text), "[server]\nca_file=%s\n", path);
    roost_serve_config *cfg = fresh();
    roost_errmsg em;
    assert_int_equal(load(cfg, text, &em), ROOST_OK);
    assert_int_equal(roost_config_finish(cfg, &em), ROOST_OK);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    assert_non_null(f);
    roost_config_write(cfg, f, false);
    fclose(f);
    roost_serve_config *again = fresh();
    if (roost_config_load_string(again, out, "effective", &em) != ROOST_OK)
        fail_msg("effective output does not parse: %s\n%s", em.text, out);
    assert_string_equal(again->ca_file, path);
    /* The origin is still stated, on a comment line of its own. */
    assert_non_null(strstr(out, "; line 2\nca_file = /ppp"));
    free(out);
    dispose(again);
    dispose(cfg);
}

/* deploy/roost.conf is exactly the generated sample, holds every key in
 * its section, and loads with every key set from the file. */
static void
test_sample_file_in_sync(void **state)
{
    (void)state;
    const char *src = getenv("ROOST_SOURCE_DIR");
    if (src == NULL)
        skip();
    char path[1024];
    snprintf(path, sizeof(path), "%s/deploy/roost.conf", src);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char file_text[64 * 1024];
    size_t n = fread(file_text, 1, sizeof(file_text) - 1, f);
    fclose(f);
    file_text[n] = '\0';

    char *gen = NULL;
    size_t len = 0;
    FILE *g = open_memstream(&gen, &len);
    assert_non_null(g);
    roost_config_write(NULL, g, true);
    fclose(g);
    if (strcmp(gen, file_text) != 0)
        fail_msg("deploy/roost.conf differs from `roost serve "
                 "--print-default-config`: regenerate it");
    free(gen);

    roost_serve_config *cfg = fresh();
    roost_errmsg em;
    if (roost_config_load_string(cfg, file_text, path, &em) != ROOST_OK)
        fail_msg("%s", em.text);
    for (size_t i = 0; i < roost_config_key_count(); i++) {
        const roost_config_key *k = roost_config_key_at(i);
        if (cfg->origin[i] <= 0)
            fail_msg("[%s] %s is missing from deploy/roost.conf", k->section,
                     k->name);
    }
    assert_int_equal(roost_config_finish(cfg, &em), ROOST_OK);
    dispose(cfg);
}

static void
test_missing_file(void **state)
{
    (void)state;
    roost_serve_config *cfg = fresh();
    roost_errmsg em;
    assert_int_equal(
        roost_config_load_file(cfg, "/nonexistent/roost.conf", &em),
        ROOST_ENOENT);
    assert_non_null(strstr(em.text, "/nonexistent/roost.conf"));
    dispose(cfg);
    roost_config_free(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_match_modules),
        cmocka_unit_test(test_every_key_parses),
        cmocka_unit_test(test_values_by_type),
        cmocka_unit_test(test_refusals_name_file_and_line),
        cmocka_unit_test(test_indented_lines),
        cmocka_unit_test(test_text_after_section_header),
        cmocka_unit_test(test_unreadable_file),
        cmocka_unit_test(test_cross_key_checks),
        cmocka_unit_test(test_strategy_defaults_follow_kind),
        cmocka_unit_test(test_flags_override_file),
        cmocka_unit_test(test_effective_output_round_trips),
        cmocka_unit_test(test_effective_output_relative_state_dir),
        cmocka_unit_test(test_effective_output_long_lines),
        cmocka_unit_test(test_sample_file_in_sync),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
