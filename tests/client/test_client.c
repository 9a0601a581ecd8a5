/*
 * test_client.c - libroost's client API: bad configuration is refused with
 * a clear code and message (setters refuse endpoints and labels that could
 * never work; NULL handles are ROOST_EINVAL; create's failures carry the
 * documented codes); a missing ledger that must exist is refused;
 * and an allocation-failure sweep (fail the Nth allocation through the
 * embedder's allocator, for every N) over client creation and over the
 * protocol's handling of a task shows no crash and no leak: every call
 * fails cleanly or succeeds, and every allocation is returned.
 *
 * Against a scripted coordinator (a listener channel in this process that
 * answers what each test tells it to): the client connects again after
 * closing a session over a coordinator's error or an undecodable frame; a
 * ledger that fails at check-in ends the client with ROOST_ELEDGER; and
 * roost_client_errmsg explains the condition that ended the client, not an
 * older failure it got over; a DP round's event is in the ledger file
 * before its update arrives; and an allocation-failure sweep over a whole
 * round ends every run in a documented way, without a leak. A connection
 * whose first allocation fails is retried after the reconnect backoff; a
 * session is closed when the coordinator's certificate expires (a
 * short-lived server certificate), and the reconnection's handshake
 * refuses it; a budget spent to exactly 0 -- at start, or by an
 * acknowledged round -- ends the client with ROOST_EBUDGET instead of a
 * check-in that no coordinator would answer, while a small positive
 * remainder still checks in and pays for a cheap round.
 *
 * Real TLS files (made with the PKI functions) and real ledger files in a
 * temporary directory; the integration tests run the client against a
 * real coordinator.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/src/cproto.h"
#include "common/channel.h"
#include "common/tls.h"
#include "common/wire.h"
#include "common/xfer.h"
#include "common/tls_fixture.h"
#include <sqlite3.h>

/* ------------------------------------------------- counting allocator */

struct counting {
    long fail_at; /* fail the allocation with this number (1-based); 0 never */
    long count;   /* allocations attempted */
    long live;    /* allocations not yet freed */
};

static void *
c_malloc(void *arg, size_t n)
{
    struct counting *c = arg;
    if (++c->count == c->fail_at)
        return NULL;
    void *p = malloc(n);
    if (p != NULL)
        c->live++;
    return p;
}

static void *
c_realloc(void *arg, void *ptr, size_t n)
{
    struct counting *c = arg;
    if (++c->count == c->fail_at)
        return NULL;
    void *p = realloc(ptr, n);
    if (p != NULL && ptr == NULL)
        c->live++;
    return p;
}

static void
c_free(void *arg, void *ptr)
{
    struct counting *c = arg;
    if (ptr != NULL)
        c->live--;
    free(ptr);
}

/* -------------------------------------------------------------- data */

#define N_EX 8
static float data_x[N_EX * 4];
static uint8_t data_y[N_EX];

static int
get_examples(void *arg, const uint32_t *idx, size_t n, float *x,
             uint8_t *labels)
{
    (void)arg;
    for (size_t i = 0; i < n; i++) {
        memcpy(x + 4 * i, data_x + 4 * idx[i], 4 * sizeof(float));
        labels[i] = data_y[idx[i]];
    }
    return ROOST_OK;
}

static const roost_data_provider provider = {N_EX,         1,   2, 2, 3,
                                             get_examples, NULL};

static tls_fixture fx;

static int
setup(void **state)
{
    (void)state;
    fx_create(&fx);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    fx_destroy(&fx);
    return 0;
}

static roost_config *
full_config(const roost_allocator *alloc, const char *ledger, int create)
{
    roost_config *cfg = NULL;
    if (roost_config_create(&cfg, alloc) != ROOST_OK)
        return NULL;
    if (roost_config_set_server(cfg, "tcp://127.0.0.1:9", "localhost") ||
        roost_config_set_tls(cfg, fx_path(&fx, "ca.crt"),
                             fx_path(&fx, "good.crt"),
                             fx_path(&fx, "good.key")) ||
        roost_config_set_ledger(cfg, ledger, 3.0, 1e-5, create) ||
        roost_config_set_data(cfg, &provider) ||
        roost_config_set_label(cfg, "test")) {
        roost_config_destroy(cfg);
        return NULL;
    }
    return cfg;
}

static void
fixture_files_load(void **state)
{
    (void)state;
    /* The certificates the client tests use are valid TLS material. */
    roost_tls_ctx_destroy(fx_client_ctx(&fx, "good", "ca"));
    roost_tls_ctx_destroy(fx_server_ctx(&fx));
}

static void
bad_configuration_is_refused(void **state)
{
    (void)state;
    roost_config *cfg = NULL;
    assert_int_equal(roost_config_create(&cfg, NULL), ROOST_OK);
    roost_client *c = (roost_client *)&c;
    char err[256];
    assert_int_equal(roost_client_create(&c, cfg, err, sizeof(err)),
                     ROOST_ECONFIG);
    assert_null(c);
    assert_non_null(strstr(err, "roost_config_set_server"));
    /* Setters refuse nonsense without changing the config. */
    assert_int_equal(roost_config_set_server(cfg, "127.0.0.1:7443", NULL),
                     ROOST_EINVAL);
    assert_int_equal(roost_config_set_ledger(cfg, "/tmp/x", 0.0, 1e-5, 1),
                     ROOST_EINVAL);
    assert_int_equal(roost_config_set_ledger(cfg, "/tmp/x", 1.0, 1.5, 1),
                     ROOST_EINVAL);
    roost_data_provider bad = provider;
    bad.num_classes = 1;
    assert_int_equal(roost_config_set_data(cfg, &bad), ROOST_EINVAL);
    bad = provider;
    bad.get = NULL;
    assert_int_equal(roost_config_set_data(cfg, &bad), ROOST_EINVAL);
    assert_int_equal(roost_config_set_reconnect(cfg, 100, 10), ROOST_EINVAL);
    roost_trainer t = {0};
    assert_int_equal(roost_config_set_trainer(cfg, &t), ROOST_EINVAL);
    /* Each missing piece is named. */
    assert_int_equal(
        roost_config_set_server(cfg, "tcp://127.0.0.1:9", "localhost"),
        ROOST_OK);
    assert_int_equal(roost_client_create(&c, cfg, err, sizeof(err)),
                     ROOST_ECONFIG);
    assert_non_null(strstr(err, "roost_config_set_tls"));
    roost_config_destroy(cfg);
    roost_config_destroy(NULL);
    roost_client_destroy(NULL);
}

/* Entry points given a NULL handle return ROOST_EINVAL instead of
 * dereferencing it, and a failed create leaves *out NULL whatever the
 * reason. */
static void
null_handles_are_refused(void **state)
{
    (void)state;
    int timeout = -1;
    assert_int_equal(roost_client_step(NULL, &timeout), ROOST_EINVAL);
    assert_int_equal(timeout, 0);
    assert_int_equal(roost_client_step(NULL, NULL), ROOST_EINVAL);
    assert_int_equal(roost_client_run(NULL), ROOST_EINVAL);
    int fd;
    assert_int_equal(roost_client_fd(NULL, &fd), ROOST_EINVAL);
    double spent, budget;
    assert_int_equal(roost_client_epsilon(NULL, &spent, &budget), ROOST_EINVAL);
    assert_int_equal(roost_client_create(NULL, NULL, NULL, 0), ROOST_EINVAL);
    roost_client *c = (roost_client *)&c; /* not NULL: must be cleared */
    char err[256] = "";
    assert_int_equal(roost_client_create(&c, NULL, err, sizeof(err)),
                     ROOST_EINVAL);
    assert_null(c);
    assert_true(err[0] != '\0');
    /* A memory provider takes the same class range as set_data. */
    roost_data_provider d;
    roost_memory_data storage;
    assert_int_equal(roost_data_provider_memory(&d, &storage, data_x, data_y,
                                                N_EX, 1, 2, 2, 0),
                     ROOST_EINVAL);
    assert_int_equal(roost_data_provider_memory(&d, &storage, data_x, data_y,
                                                N_EX, 1, 2, 2, 257),
                     ROOST_EINVAL);
    assert_int_equal(roost_data_provider_memory(&d, &storage, data_x, data_y,
                                                N_EX, 1, 2, 2, 3),
                     ROOST_OK);
}

/* Endpoints the channel could never connect to, and labels the
 * coordinator would refuse at every check-in, are refused by the setter
 * (the client would otherwise retry forever without a word). */
static void
setters_refuse_what_could_never_work(void **state)
{
    (void)state;
    roost_config *cfg = NULL;
    assert_int_equal(roost_config_create(&cfg, NULL), ROOST_OK);
    static const char *const bad_endpoints[] = {
        "tcp://",
        "tcp://host",
        "tcp://host:",
        "tcp://:7443",
        "tcp://127.0.0.1:notaport",
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:65536",
        "tcp://127.0.0.1:007443",
        "tcp://127.0.0.1:+80",
        "tcp://127.0.0.1:-1",
        "tcp://127.0.0.1: 80",
        "tcp://127.0.0.1:80 ",
        "tcp://host name:80",
        "tcp://[::1]",
        "tcp://[]:7443",
        "tcp://[::g]:7443",
        "tcp://[127.0.0.1]:7443",
        "tcp://::1:7443",
        "tcp://[::1:7443",
        "tcp://10.0.0.1;127.0.0.1:80",
        "tcp://*:80",
        "udp://127.0.0.1:80",
        "127.0.0.1:80",
    };
    for (size_t i = 0; i < sizeof(bad_endpoints) / sizeof(bad_endpoints[0]);
         i++)
        if (roost_config_set_server(cfg, bad_endpoints[i], NULL) !=
            ROOST_EINVAL)
            fail_msg("endpoint '%s' was accepted", bad_endpoints[i]);
    static const char *const good_endpoints[] = {
        "tcp://127.0.0.1:1",        "tcp://127.0.0.1:65535",
        "tcp://localhost:7443",     "tcp://coord-1.example.org:7443",
        "tcp://my_host:80",         "tcp://[::1]:7443",
        "tcp://[2001:db8::1]:7443",
    };
    for (size_t i = 0; i < sizeof(good_endpoints) / sizeof(good_endpoints[0]);
         i++)
        if (roost_config_set_server(cfg, good_endpoints[i], NULL) != ROOST_OK)
            fail_msg("endpoint '%s' was refused", good_endpoints[i]);
    char long_host[300] = "tcp://";
    memset(long_host + 6, 'a', 254);
    memcpy(long_host + 260, ":80", 4);
    assert_int_equal(roost_config_set_server(cfg, long_host, NULL),
                     ROOST_EINVAL);
    /* The name the certificate must carry: an empty one cannot be sent
     * (TLS refuses an empty server name, so every connection attempt
     * failed), nor can one longer than a DNS name or with spaces or
     * control characters. */
    static const char *const bad_names[] = {"", "local host", "tab\there",
                                            "caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
        if (roost_config_set_server(cfg, "tcp://127.0.0.1:9", bad_names[i]) !=
            ROOST_EINVAL)
            fail_msg("server name '%s' was accepted", bad_names[i]);
    char long_name[300];
    memset(long_name, 'a', 254);
    long_name[254] = '\0';
    assert_int_equal(
        roost_config_set_server(cfg, "tcp://127.0.0.1:9", long_name),
        ROOST_EINVAL);
    long_name[253] = '\0';
    assert_int_equal(
        roost_config_set_server(cfg, "tcp://127.0.0.1:9", long_name), ROOST_OK);
    assert_int_equal(
        roost_config_set_server(cfg, "tcp://[::1]:9", "coord-1.example.org"),
        ROOST_OK);
    assert_int_equal(roost_config_set_server(cfg, "tcp://[::1]:9", "::1"),
                     ROOST_OK);

    static const char *const bad_labels[] = {
        "\xff",               /* never valid in UTF-8 */
        "caf\xe9",            /* Latin-1, not UTF-8 */
        "\xc0\x80",           /* overlong NUL */
        "\xed\xa0\x80",       /* a surrogate */
        "\xf4\x90\x80\x80",   /* above U+10FFFF */
        "truncated \xe2\x82", /* cut short */
    };
    for (size_t i = 0; i < sizeof(bad_labels) / sizeof(bad_labels[0]); i++)
        if (roost_config_set_label(cfg, bad_labels[i]) != ROOST_EINVAL)
            fail_msg("label %zu was accepted", i);
    char label[130];
    memset(label, 'x', 129);
    label[129] = '\0';
    assert_int_equal(roost_config_set_label(cfg, label), ROOST_EINVAL);
    label[128] = '\0';
    assert_int_equal(roost_config_set_label(cfg, label), ROOST_OK);
    assert_int_equal(roost_config_set_label(cfg, "caf\xc3\xa9 \xe2\x82\xac"),
                     ROOST_OK);
    assert_int_equal(roost_config_set_label(cfg, ""), ROOST_OK);
    assert_int_equal(roost_config_set_label(cfg, NULL), ROOST_OK);
    roost_config_destroy(cfg);
}

/* Create's failures come with the documented codes and *out NULL: an
 * unreadable TLS file is ROOST_EIO, a key that does not belong to the
 * certificate a bad setting (ROOST_ECONFIG), not ROOST_EINVAL. */
static void
create_failures_have_documented_codes(void **state)
{
    (void)state;
    char path[320];
    snprintf(path, sizeof(path), "%s/create-codes.db", fx.dir);
    roost_config *cfg = full_config(NULL, path, 1);
    assert_non_null(cfg);
    char err[256] = "";
    roost_client *c = (roost_client *)&c;
    assert_int_equal(roost_config_set_tls(cfg, fx_path(&fx, "ca.crt"),
                                          "/nonexistent/dev.crt",
                                          fx_path(&fx, "good.key")),
                     ROOST_OK);
    assert_int_equal(roost_client_create(&c, cfg, err, sizeof(err)), ROOST_EIO);
    assert_null(c);
    assert_non_null(strstr(err, "/nonexistent/dev.crt"));
    c = (roost_client *)&c;
    assert_int_equal(roost_config_set_tls(cfg, fx_path(&fx, "ca.crt"),
                                          fx_path(&fx, "good.crt"),
                                          fx_path(&fx, "good2.key")),
                     ROOST_OK);
    assert_int_equal(roost_client_create(&c, cfg, err, sizeof(err)),
                     ROOST_ECONFIG);
    assert_null(c);
    assert_non_null(strstr(err, "does not match"));
    roost_config_destroy(cfg);
    unlink(path);
}

/* A setter that fails leaves the configuration as it was: set_tls running
 * out of memory after copying the CA path must not leave a config with a
 * CA and no device certificate, from which create would make a client
 * that connects without a certificate (refused by every coordinator, for
 * ever). And the data's shape is refused when its size cannot be
 * represented, instead of the client's copy of it overflowing. */
static void
failed_setters_leave_the_config_unchanged(void **state)
{
    (void)state;
    char path[320];
    snprintf(path, sizeof(path), "%s/setters.db", fx.dir);
    struct counting cnt = {0, 0, 0};
    roost_allocator a = {c_malloc, c_realloc, c_free, &cnt};
    roost_config *cfg = NULL;
    assert_int_equal(roost_config_create(&cfg, &a), ROOST_OK);
    assert_int_equal(
        roost_config_set_server(cfg, "tcp://127.0.0.1:9", "localhost"),
        ROOST_OK);
    assert_int_equal(roost_config_set_ledger(cfg, path, 3.0, 1e-5, 1),
                     ROOST_OK);
    assert_int_equal(roost_config_set_data(cfg, &provider), ROOST_OK);
    for (long k = 1; k <= 3; k++) {
        cnt.fail_at = cnt.count + k; /* the CA, certificate or key copy */
        assert_int_equal(roost_config_set_tls(cfg, fx_path(&fx, "ca.crt"),
                                              fx_path(&fx, "good.crt"),
                                              fx_path(&fx, "good.key")),
                         ROOST_ENOMEM);
        cnt.fail_at = 0;
        roost_client *c = (roost_client *)&c;
        char err[256] = "";
        int rc = roost_client_create(&c, cfg, err, sizeof(err));
        roost_client_destroy(c);
        if (rc != ROOST_ECONFIG || strstr(err, "roost_config_set_tls") == NULL)
            fail_msg("allocation %ld of set_tls failed; create: %s (%s)", k,
                     roost_errname(rc), err);
    }
    /* A failed set_server keeps the endpoint and name it had. */
    cnt.fail_at = cnt.count + 2;
    assert_int_equal(roost_config_set_server(cfg, "tcp://10.0.0.1:7", "other"),
                     ROOST_ENOMEM);
    cnt.fail_at = 0;
    /* Dimensions whose product overflows are not a shape. */
    roost_data_provider huge = provider;
    huge.channels = huge.height = huge.width = 1u << 22;
    assert_int_equal(roost_config_set_data(cfg, &huge), ROOST_EINVAL);
    huge.channels = 1;
    huge.height = huge.width = UINT32_MAX;
    assert_int_equal(roost_config_set_data(cfg, &huge), ROOST_EINVAL);
    roost_config_destroy(cfg);
    assert_int_equal(cnt.live, 0);
    unlink(path);
}

static void
missing_ledger_is_refused_unless_created(void **state)
{
    (void)state;
    char path[320];
    snprintf(path, sizeof(path), "%s/never-created.db", fx.dir);
    roost_config *cfg = full_config(NULL, path, 0);
    assert_non_null(cfg);
    roost_client *c = NULL;
    char err[256] = "";
    int rc = roost_client_create(&c, cfg, err, sizeof(err));
    assert_int_not_equal(rc, ROOST_OK);
    assert_null(c);
    assert_true(err[0] != '\0');
    assert_int_not_equal(access(path, F_OK), 0); /* nothing was created */
    roost_config_destroy(cfg);
    /* With create, the client comes up (connecting in the background) and
     * reports nothing spent of its budget. */
    cfg = full_config(NULL, path, 1);
    assert_int_equal(roost_client_create(&c, cfg, err, sizeof(err)), ROOST_OK);
    double spent = -1, budget = 0;
    assert_int_equal(roost_client_epsilon(c, &spent, &budget), ROOST_OK);
    assert_true(spent == 0.0 && budget == 3.0);
    int timeout = -1;
    assert_int_equal(roost_client_step(c, &timeout), ROOST_OK);
    assert_true(timeout >= 0);
    roost_client_cancel(c);
    assert_int_equal(roost_client_step(c, &timeout), ROOST_ECANCELED);
    roost_client_destroy(c);
    roost_config_destroy(cfg);
    unlink(path);
}

static void
allocation_failure_sweep_over_create(void **state)
{
    (void)state;
    long n_ok = 0;
    for (long n = 1; n < 400; n++) {
        struct counting cnt = {n, 0, 0};
        roost_allocator a = {c_malloc, c_realloc, c_free, &cnt};
        char path[320];
        snprintf(path, sizeof(path), "%s/sweep-%ld.db", fx.dir, n);
        roost_config *cfg = full_config(&a, path, 1);
        roost_client *c = NULL;
        int rc = ROOST_ENOMEM;
        if (cfg != NULL)
            rc = roost_client_create(&c, cfg, NULL, 0);
        if (rc == ROOST_OK) {
            assert_non_null(c);
            n_ok++;
        } else {
            assert_null(c);
        }
        roost_client_destroy(c);
        roost_config_destroy(cfg);
        if (cnt.live != 0)
            fail_msg("allocation %ld failed: %ld allocations leaked", n,
                     cnt.live);
        unlink(path);
        if (rc == ROOST_OK && cnt.count < n) {
            print_message("create: swept %ld allocation points\n", n - 1);
            break; /* no allocation left to fail */
        }
    }
    assert_true(n_ok > 0);
}

/* A fake budget for the protocol sweep (the ledger has its own tests); it
 * keeps the last event it saw. */
static roost_ledger_event fake_last;
static char fake_task[64]; /* its task id (the event's pointer is transient) */
static int fake_charges;

static int
fake_plan(void *arg, const roost_ledger_event *ev, double *eps_after,
          roost_errmsg *em)
{
    (void)arg, (void)em;
    fake_last = *ev;
    snprintf(fake_task, sizeof(fake_task), "%s",
             ev->task_id != NULL ? ev->task_id : "");
    fake_last.task_id = fake_task;
    *eps_after = 1.0;
    return ROOST_OK;
}

static int
fake_charge(void *arg, const roost_ledger_event *ev, double *eps_after,
            roost_errmsg *em)
{
    fake_charges++;
    return fake_plan(arg, ev, eps_after, em);
}

static int
fake_remaining(void *arg, double *eps, double *delta)
{
    (void)arg;
    *eps = 2.0;
    *delta = 1e-5;
    return ROOST_OK;
}

static int
swallow(void *arg, const Roost__V1__Envelope *m)
{
    (void)m;
    (*(int *)arg)++;
    return ROOST_OK;
}

/* DP-SGD parameters of a training task at delta 1e-5. */
static void
dp_params(Roost__V1__DpParams *dp, double sigma, double clip, uint32_t batch)
{
    roost__v1__dp_params__init(dp);
    dp->enabled = true;
    dp->noise_multiplier = sigma;
    dp->clip_norm = clip;
    dp->delta = 1e-5;
    dp->expected_batch_size = batch;
}

/* One task for model dense:3 on inputs channels x side x side, training
 * (epochs local epochs, batch 4, lr 0.1, dp) or evaluation, whose
 * parameters follow in chunks. */
typedef struct task_desc {
    Roost__V1__TaskKind kind;
    uint64_t round_id, task_id;
    uint32_t channels, side, epochs;
    Roost__V1__DpParams *dp; /* training tasks only; NULL: none */
    const float *params;
    size_t n;
    const uint8_t *hash;
} task_desc;

/* Hand the task and then its chunks to deliver, stopping at the first
 * message it refuses; returns that code (ROOST_OK if none). */
static int
emit_task(const task_desc *d,
          int (*deliver)(void *arg, const Roost__V1__Envelope *env), void *arg)
{
    roost_xfer_sender snd;
    uint32_t chunks = 0;
    assert_int_equal(roost_xfer_sender_init(&snd, d->params, d->n, 0,
                                            d->round_id, d->task_id, &chunks),
                     ROOST_OK);
    Roost__V1__Envelope env;
    Roost__V1__Task task;
    Roost__V1__ModelSpec spec;
    Roost__V1__TrainingParams tp;
    roost__v1__envelope__init(&env);
    roost__v1__task__init(&task);
    roost__v1__model_spec__init(&spec);
    roost__v1__training_params__init(&tp);
    spec.spec = (char *)(uintptr_t) "dense:3";
    spec.input_channels = d->channels;
    spec.input_height = d->side;
    spec.input_width = d->side;
    spec.num_params = d->n;
    tp.local_epochs = d->epochs;
    tp.batch_size = 4;
    tp.learning_rate = 0.1;
    task.round_id = d->round_id;
    task.task_id = d->task_id;
    task.kind = d->kind;
    task.model = &spec;
    if (d->kind == ROOST__V1__TASK_KIND__TASK_KIND_TRAIN) {
        task.training = &tp;
        task.dp = d->dp;
    }
    task.model_hash.data = (uint8_t *)(uintptr_t)d->hash;
    task.model_hash.len = 32;
    task.parameters_follow = true;
    task.param_chunk_count = chunks;
    env.body_case = ROOST__V1__ENVELOPE__BODY_TASK;
    env.task = &task;
    int rc = deliver(arg, &env);
    Roost__V1__Envelope cenv;
    Roost__V1__ParamChunk ch;
    roost__v1__envelope__init(&cenv);
    roost__v1__param_chunk__init(&ch);
    cenv.body_case = ROOST__V1__ENVELOPE__BODY_PARAM_CHUNK;
    cenv.param_chunk = &ch;
    while (rc == ROOST_OK) {
        bool done = false;
        assert_int_equal(roost_xfer_sender_next(&snd, &ch, &done), ROOST_OK);
        if (done)
            break;
        rc = deliver(arg, &cenv);
    }
    return rc;
}

static int
to_cproto(void *arg, const Roost__V1__Envelope *env)
{
    return roost_cproto_on_message(arg, env, 0);
}

/* An accepted Ack for the task, handed to deliver; returns its code. */
static int
emit_ack(uint64_t round_id, uint64_t task_id,
         int (*deliver)(void *arg, const Roost__V1__Envelope *env), void *arg)
{
    Roost__V1__Envelope env;
    Roost__V1__Ack ack;
    roost__v1__envelope__init(&env);
    roost__v1__ack__init(&ack);
    ack.round_id = round_id;
    ack.task_id = task_id;
    ack.accepted = true;
    env.body_case = ROOST__V1__ENVELOPE__BODY_ACK;
    env.ack = &ack;
    return deliver(arg, &env);
}

/* DP parameters send_task attaches to its training task (NULL: none). */
static Roost__V1__DpParams *send_dp;

/* Send a task of kind for model dense:3 on 1x2x2 inputs (a training task
 * with 1 local epoch and send_dp) straight to the protocol; stops at the
 * first refusal and returns it. */
static int
send_task(roost_cproto *p, Roost__V1__TaskKind kind, uint64_t round_id,
          uint64_t task_id, const float *params, size_t n,
          const uint8_t hash[32])
{
    const task_desc d = {
        .kind = kind,
        .round_id = round_id,
        .task_id = task_id,
        .channels = 1,
        .side = 2,
        .epochs = 1,
        .dp = send_dp,
        .params = params,
        .n = n,
        .hash = hash,
    };
    return emit_task(&d, to_cproto, p);
}

static void
allocation_failure_sweep_over_a_task(void **state)
{
    (void)state;
    enum { N = 300000 }; /* parameters: two chunks of the default size */
    float *global = calloc(N, sizeof(float));
    for (size_t i = 0; i < N; i++)
        global[i] = (float)i * 1e-6f;
    uint8_t hash[32];
    assert_int_equal(roost_xfer_hash_floats(global, N, hash), ROOST_OK);
    long completed = 0;
    for (long n = 1; n < 200; n++) {
        struct counting cnt = {n, 0, 0};
        roost_allocator a = {c_malloc, c_realloc, c_free, &cnt};
        roost_cproto_config pc = {
            .n_local = N_EX,
            .budget = {fake_plan, fake_charge, fake_remaining, NULL},
            .keep_model = true,
            .allow_no_dp = true, /* send_task's training task has no DP */
            .log = {NULL, NULL, -1},
        };
        roost_cproto *p = NULL;
        int sent = 0;
        int rc = roost_cproto_create(&p, &a, &pc, swallow, &sent, NULL);
        if (rc == ROOST_OK)
            rc = roost_cproto_check_in(p, 0);
        if (rc == ROOST_OK)
            rc = send_task(p, ROOST__V1__TASK_KIND__TASK_KIND_TRAIN, 1, 7,
                           global, N, hash);
        if (rc == ROOST_OK) {
            assert_int_equal(roost_cproto_state(p), ROOST_CP_READY);
            roost_cproto_job *job = NULL;
            rc = roost_cproto_take_job(p, &job);
            if (rc == ROOST_OK) {
                assert_memory_equal(job->global, global, N * sizeof(float));
                completed++;
            }
        } else {
            assert_int_equal(rc, ROOST_ENOMEM);
        }
        roost_cproto_destroy(p);
        if (cnt.live != 0)
            fail_msg("allocation %ld failed: %ld allocations leaked", n,
                     cnt.live);
        if (rc == ROOST_OK && cnt.count < n) {
            print_message("task: swept %ld allocation points\n", n - 1);
            break;
        }
    }
    assert_true(completed > 0);
    free(global);
}

/* What the protocol last sent, copied out of the transient envelope. */
struct recorded {
    int n, last_case, declines;
    int decline_reason;
    uint64_t eval_examples;
    double eval_loss, eval_accuracy;
};

static int
record(void *arg, const Roost__V1__Envelope *m)
{
    struct recorded *r = arg;
    r->n++;
    r->last_case = (int)m->body_case;
    if (m->body_case == ROOST__V1__ENVELOPE__BODY_DECLINE) {
        r->decline_reason = (int)m->decline->reason;
        r->declines++;
    }
    if (m->body_case == ROOST__V1__ENVELOPE__BODY_EVALUATION_RESULT) {
        r->eval_examples = m->evaluation_result->num_examples;
        r->eval_loss = m->evaluation_result->loss;
        r->eval_accuracy = m->evaluation_result->accuracy;
    }
    return ROOST_OK;
}

/* Federated evaluation tasks: declined (before the model is taken) unless
 * allowed; when allowed, the job carries the global model, the answer
 * carries roost_local_evaluate's figures, no budget is charged and the
 * answer does not count as a contributed round; results out of range are
 * declined, not sent; a training finish on an evaluation job is refused. */
static void
evaluation_tasks(void **state)
{
    (void)state;
    enum { NP = 15 }; /* dense:3 on 4 inputs */
    float params[NP];
    for (int i = 0; i < NP; i++)
        params[i] = (float)((i * 37) % 11 - 5) / 10.0f;
    uint8_t hash[32];
    assert_int_equal(roost_xfer_hash_floats(params, NP, hash), ROOST_OK);
    roost_dataset *ds = NULL;
    assert_int_equal(roost_dataset_create_from_arrays(&ds, NULL, N_EX, 1, 2, 2,
                                                      data_x, data_y, 3, NULL),
                     ROOST_OK);
    roost_model *m = NULL;
    assert_int_equal(roost_model_create(&m, NULL, "dense:3", 1, 2, 2, NULL),
                     ROOST_OK);

    for (int allow = 0; allow < 2; allow++) {
        roost_cproto_config pc = {
            .n_local = N_EX,
            .budget = {fake_plan, fake_charge, fake_remaining, NULL},
            .allow_evaluation = allow == 1,
            .log = {NULL, NULL, -1},
        };
        struct recorded rec = {0};
        roost_cproto *p = NULL;
        assert_int_equal(roost_cproto_create(&p, NULL, &pc, record, &rec, NULL),
                         ROOST_OK);
        assert_int_equal(roost_cproto_check_in(p, 0), ROOST_OK);
        assert_int_equal(send_task(p, ROOST__V1__TASK_KIND__TASK_KIND_EVALUATE,
                                   4, 9, params, NP, hash),
                         ROOST_OK);
        if (!allow) {
            /* Declined, then checked in again for the next task. */
            assert_int_equal(rec.declines, 1);
            assert_int_equal(
                rec.decline_reason,
                ROOST__V1__DECLINE_REASON__DECLINE_REASON_UNSUPPORTED);
            assert_int_equal(rec.last_case, ROOST__V1__ENVELOPE__BODY_CHECK_IN);
            assert_int_equal(roost_cproto_state(p), ROOST_CP_WAITING);
            roost_cproto_destroy(p);
            continue;
        }
        assert_int_equal(roost_cproto_state(p), ROOST_CP_READY);
        roost_cproto_job *job = NULL;
        assert_int_equal(roost_cproto_take_job(p, &job), ROOST_OK);
        assert_true(job->evaluate);
        assert_null(job->params);
        assert_memory_equal(job->global, params, sizeof(params));
        assert_int_equal(
            roost_cproto_finish(p, ROOST_OK, &(roost_local_result){0}, 0),
            ROOST_ESTATE);
        double loss = 0, acc = 0;
        assert_int_equal(roost_local_evaluate(m, NULL, ds, NULL, N_EX,
                                              job->global, &loss, &acc, NULL),
                         ROOST_OK);
        /* The same figures straight from the model. */
        roost_workspace *ws = NULL;
        assert_int_equal(roost_workspace_create(&ws, m, N_EX, NULL), ROOST_OK);
        double l2 = 0, a2 = 0;
        assert_int_equal(
            roost_model_evaluate(ws, params, data_x, data_y, N_EX, &l2, &a2),
            ROOST_OK);
        roost_workspace_destroy(ws);
        assert_true(fabs(loss - l2) < 1e-6 && fabs(acc - a2) < 1e-12);
        assert_int_equal(
            roost_cproto_finish_eval(p, ROOST_OK, N_EX, loss, acc, 0),
            ROOST_OK);
        assert_int_equal(rec.last_case,
                         ROOST__V1__ENVELOPE__BODY_EVALUATION_RESULT);
        assert_int_equal(rec.eval_examples, N_EX);
        assert_true(rec.eval_loss == loss && rec.eval_accuracy == acc);
        assert_int_equal(roost_cproto_state(p), ROOST_CP_AWAIT_ACK);
        assert_true(isnan(roost_cproto_epsilon(p))); /* nothing charged */
        assert_int_equal(emit_ack(4, 9, to_cproto, p), ROOST_OK);
        assert_int_equal(roost_cproto_rounds(p), 0);
        assert_int_equal(roost_cproto_state(p), ROOST_CP_WAITING);

        /* A second task whose result is out of range is declined. */
        assert_int_equal(send_task(p, ROOST__V1__TASK_KIND__TASK_KIND_EVALUATE,
                                   4, 9, params, NP, hash),
                         ROOST_OK);
        assert_int_equal(roost_cproto_take_job(p, &job), ROOST_OK);
        assert_int_equal(
            roost_cproto_finish_eval(p, ROOST_OK, N_EX, 0.5, 1.5, 0), ROOST_OK);
        assert_int_equal(rec.declines, 1);
        assert_int_equal(rec.last_case, ROOST__V1__ENVELOPE__BODY_CHECK_IN);
        assert_int_equal(roost_cproto_state(p), ROOST_CP_WAITING);
        roost_cproto_destroy(p);
    }
    roost_model_destroy(m);
    roost_dataset_destroy(ds);
}

/* A training task without DP is declined before its model is taken,
 * unless the embedder allowed such tasks (INSECURE); either way nothing
 * is charged to the budget. */
static void
tasks_without_dp_are_declined_unless_allowed(void **state)
{
    (void)state;
    enum { NP = 15 }; /* dense:3 on 4 inputs */
    float params[NP] = {0};
    uint8_t hash[32];
    assert_int_equal(roost_xfer_hash_floats(params, NP, hash), ROOST_OK);
    for (int allow = 0; allow < 2; allow++) {
        roost_cproto_config pc = {
            .n_local = N_EX,
            .budget = {fake_plan, fake_charge, fake_remaining, NULL},
            .allow_no_dp = allow == 1,
            .log = {NULL, NULL, -1},
        };
        struct recorded rec = {0};
        roost_cproto *p = NULL;
        assert_int_equal(roost_cproto_create(&p, NULL, &pc, record, &rec, NULL),
                         ROOST_OK);
        assert_int_equal(roost_cproto_check_in(p, 0), ROOST_OK);
        int rc = send_task(p, ROOST__V1__TASK_KIND__TASK_KIND_TRAIN, 3, 5,
                           params, NP, hash);
        if (!allow) {
            /* Declined at once, checked in again; the parameter chunks
             * that follow the task on the wire are dropped. */
            assert_int_equal(rc, ROOST_OK);
            assert_int_equal(rec.declines, 1);
            assert_int_equal(
                rec.decline_reason,
                ROOST__V1__DECLINE_REASON__DECLINE_REASON_UNSUPPORTED);
            assert_int_equal(rec.last_case, ROOST__V1__ENVELOPE__BODY_CHECK_IN);
            assert_int_equal(roost_cproto_state(p), ROOST_CP_WAITING);
            roost_cproto_job *job = NULL;
            assert_int_not_equal(roost_cproto_take_job(p, &job), ROOST_OK);
        } else {
            assert_int_equal(rc, ROOST_OK);
            assert_int_equal(rec.declines, 0);
            assert_int_equal(roost_cproto_state(p), ROOST_CP_READY);
            roost_cproto_job *job = NULL;
            assert_int_equal(roost_cproto_take_job(p, &job), ROOST_OK);
            assert_false(job->task.dp);
        }
        assert_true(isnan(roost_cproto_epsilon(p))); /* nothing charged */
        roost_cproto_destroy(p);
    }
}

/* A DP task's privacy event carries the noise the trainer will draw:
 * parameters x steps values from the sampler for the task's sigma and clip
 * (its mu and beta), at plan and at charge; a result whose draws differ
 * from the plan is not charged and not sent. */
static void
dp_tasks_record_the_samplers_draws(void **state)
{
    (void)state;
    enum { NP = 15 }; /* dense:3 on 4 inputs */
    float params[NP] = {0};
    uint8_t hash[32];
    assert_int_equal(roost_xfer_hash_floats(params, NP, hash), ROOST_OK);
    Roost__V1__DpParams dp;
    dp_params(&dp, 1.3, 0.5, 4); /* q = 4 / 8, 2 steps for 1 epoch */
    double mu, beta;
    assert_int_equal(
        roost_noise_closeness_for(NULL, 1.3, 0.5, 0, &mu, &beta, NULL),
        ROOST_OK);
    assert_true(mu > 0 && beta > 0);
    roost_cproto_config pc = {
        .n_local = N_EX,
        .budget = {fake_plan, fake_charge, fake_remaining, NULL},
        .log = {NULL, NULL, -1},
    };
    struct recorded rec = {0};
    roost_cproto *p = NULL;
    assert_int_equal(roost_cproto_create(&p, NULL, &pc, record, &rec, NULL),
                     ROOST_OK);
    send_dp = &dp;
    int charged = fake_charges;
    for (int right = 0; right < 2; right++) {
        memset(&fake_last, 0, sizeof(fake_last));
        if (!right)
            assert_int_equal(roost_cproto_check_in(p, 0), ROOST_OK);
        assert_int_equal(send_task(p, ROOST__V1__TASK_KIND__TASK_KIND_TRAIN, 6,
                                   11 + (uint64_t)right, params, NP, hash),
                         ROOST_OK);
        /* The plan saw the whole event. */
        assert_true(fake_last.q == 0.5 && fake_last.sigma == 1.3);
        assert_int_equal(fake_last.steps, 2);
        assert_int_equal(fake_last.draws, 2 * NP);
        assert_true(fake_last.mu == mu && fake_last.beta == beta);
        assert_int_equal(fake_last.round_id, 6);
        roost_cproto_job *job = NULL;
        assert_int_equal(roost_cproto_take_job(p, &job), ROOST_OK);
        assert_true(job->task.dp);
        roost_local_result res = {.loss = 1.0,
                                  .accuracy = (double)NAN,
                                  .examples = N_EX,
                                  .steps = 2,
                                  .noise_draws = right ? 2 * NP : 2 * NP - 1};
        memset(&fake_last, 0, sizeof(fake_last));
        int rc = roost_cproto_finish(p, ROOST_OK, &res, 0);
        if (!right) {
            /* Declined, nothing charged, checked in again. */
            assert_int_equal(rc, ROOST_ESTATE);
            assert_int_equal(fake_charges, charged);
            assert_int_equal(rec.declines, 1);
            assert_int_equal(rec.last_case, ROOST__V1__ENVELOPE__BODY_CHECK_IN);
            assert_int_equal(roost_cproto_state(p), ROOST_CP_WAITING);
            assert_true(isnan(roost_cproto_epsilon(p)));
            continue;
        }
        assert_int_equal(rc, ROOST_OK);
        assert_int_equal(fake_charges, charged + 1);
        assert_int_equal(fake_last.draws, 2 * NP);
        assert_true(fake_last.mu == mu && fake_last.beta == beta);
        assert_string_equal(fake_last.task_id, "12");
        assert_int_equal(roost_cproto_state(p), ROOST_CP_AWAIT_ACK);
    }
    send_dp = NULL;
    roost_cproto_destroy(p);
}

/* ------------------------------------------------- a scripted coordinator */

/* A listener with the deployment's server certificate that records what a
 * client sends and answers only what a test tells it to, so that the
 * client's handling of the connection (check-in on connect, reconnects,
 * errors) is tested through the public API alone. */
struct coord {
    roost_channel *ch;
    char endpoint[128];
    int opened, closed, checkins, declines;
    uint64_t session; /* the last session opened */
    int last_case;
    /* The client's ledger, and its event count when an Update arrived
     * (-1: none arrived). */
    const char *ledger;
    int64_t events_at_update;
    double update_epsilon;
    int updates, chunks;
    double last_remaining; /* epsilon_remaining of the last check-in */
};

static int64_t
ledger_events(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM events", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void
coord_event(void *arg, const roost_channel_event *ev)
{
    struct coord *co = arg;
    if (ev->type == ROOST_CHANNEL_OPENED) {
        co->opened++;
        co->session = ev->session;
    } else if (ev->type == ROOST_CHANNEL_CLOSED) {
        co->closed++;
    } else if (ev->type == ROOST_CHANNEL_FRAME) {
        Roost__V1__Envelope *m = NULL;
        assert_int_equal(
            roost_wire_decode(NULL, ev->data, ev->len, NULL, &m, NULL),
            ROOST_OK);
        co->last_case = (int)m->body_case;
        if (m->body_case == ROOST__V1__ENVELOPE__BODY_CHECK_IN) {
            co->checkins++;
            co->last_remaining = m->check_in->epsilon_remaining;
        }
        if (m->body_case == ROOST__V1__ENVELOPE__BODY_DECLINE)
            co->declines++;
        if (m->body_case == ROOST__V1__ENVELOPE__BODY_UPDATE) {
            co->updates++;
            co->events_at_update =
                co->ledger != NULL ? ledger_events(co->ledger) : -1;
            co->update_epsilon =
                m->update->dp != NULL ? m->update->dp->epsilon_spent : -1;
        }
        if (m->body_case == ROOST__V1__ENVELOPE__BODY_PARAM_CHUNK)
            co->chunks++;
        roost_wire_free(NULL, m);
    }
}

/* A scripted coordinator presenting the certificate and key in the
 * fixture's files cert and key (signed by the deployment CA). */
static void
coord_start_as(struct coord *co, const char *cert, const char *key)
{
    memset(co, 0, sizeof(*co));
    co->events_at_update = -1;
    roost_tls_files f = {fx_path(&fx, "ca.crt"), fx_path(&fx, cert),
                         fx_path(&fx, key), fx_path(&fx, "ca.crl")};
    roost_errmsg em = {{0}};
    roost_tls_ctx *sctx = NULL;
    if (roost_tls_ctx_create_server(&sctx, &f, &em) != ROOST_OK)
        fail_msg("server context from %s: %s", cert, em.text);
    roost_channel_config cc;
    roost_channel_config_init(&cc);
    cc.on_event = coord_event;
    cc.event_arg = co;
    assert_int_equal(roost_channel_create(&co->ch, &cc, sctx, NULL), ROOST_OK);
    roost_tls_ctx_destroy(sctx);
    assert_int_equal(roost_channel_listen(co->ch, "tcp://127.0.0.1:*"),
                     ROOST_OK);
    assert_int_equal(
        roost_channel_endpoint(co->ch, co->endpoint, sizeof(co->endpoint)),
        ROOST_OK);
}

static void
coord_start(struct coord *co)
{
    coord_start_as(co, "server.crt", "server.key");
}

static void
coord_send(struct coord *co, const Roost__V1__Envelope *env)
{
    uint8_t buf[4096];
    size_t len = 0;
    assert_int_equal(roost_wire_encode(env, buf, sizeof(buf), &len), ROOST_OK);
    assert_int_equal(roost_channel_send(co->ch, co->session, buf, len),
                     ROOST_OK);
}

static void
coord_send_error(struct coord *co, int code, const char *message)
{
    Roost__V1__Envelope env;
    Roost__V1__Error err;
    roost__v1__envelope__init(&env);
    roost__v1__error__init(&err);
    err.code = (uint32_t)code;
    err.message = (char *)(uintptr_t)message;
    env.body_case = ROOST__V1__ENVELOPE__BODY_ERROR;
    env.error = &err;
    coord_send(co, &env);
}

/* A client of full_config's settings connected to co, reconnecting
 * quickly so that the tests do not wait. */
static roost_client *
coord_client(struct coord *co, const char *ledger)
{
    roost_config *cfg = full_config(NULL, ledger, 1);
    assert_non_null(cfg);
    assert_int_equal(roost_config_set_server(cfg, co->endpoint, "localhost"),
                     ROOST_OK);
    assert_int_equal(roost_config_set_reconnect(cfg, 10, 40), ROOST_OK);
    roost_client *c = NULL;
    char err[256] = "";
    int rc = roost_client_create(&c, cfg, err, sizeof(err));
    if (rc != ROOST_OK)
        fail_msg("create: %s: %s", roost_errname(rc), err);
    roost_config_destroy(cfg);
    return c;
}

/* Step the client and poll the coordinator until cond holds or the client
 * stops (its code in *client_rc), at most `rounds` times; waiting is in
 * the polls, so a hung client ends the loop instead of the test. */
#define PUMP_UNTIL(c, co, client_rc, cond, rounds)                             \
    do {                                                                       \
        for (int pump_i_ = 0; pump_i_ < (rounds) && !(cond); pump_i_++) {      \
            int pump_t_ = 0;                                                   \
            *(client_rc) = roost_client_step((c), &pump_t_);                   \
            if (*(client_rc) != ROOST_OK)                                      \
                break;                                                         \
            roost_channel_poll((co)->ch, pump_t_ > 5 ? 5 : pump_t_);           \
        }                                                                      \
    } while (0)

/* The client closes a session itself when the coordinator reports an
 * error or sends bytes that do not decode; it must then connect again (as
 * after any network loss) instead of sitting unconnected for ever while
 * step keeps returning ROOST_OK. */
static void
client_reconnects_after_closing_a_session(void **state)
{
    (void)state;
    char path[320];
    snprintf(path, sizeof(path), "%s/reconnect.db", fx.dir);
    struct coord co;
    coord_start(&co);
    roost_client *c = coord_client(&co, path);
    int rc = ROOST_OK;
    PUMP_UNTIL(c, &co, &rc, co.checkins == 1, 2000);
    assert_int_equal(rc, ROOST_OK);
    assert_int_equal(co.checkins, 1);
    /* An error from the coordinator: the client drops the session. */
    coord_send_error(&co, ROOST_EPROTO, "check-in while a task is outstanding");
    PUMP_UNTIL(c, &co, &rc, co.checkins == 2, 2000);
    assert_int_equal(rc, ROOST_OK);
    assert_int_equal(co.opened, 2);
    assert_int_equal(co.checkins, 2);
    /* A frame that is not a message. */
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0x01};
    assert_int_equal(
        roost_channel_send(co.ch, co.session, garbage, sizeof(garbage)),
        ROOST_OK);
    PUMP_UNTIL(c, &co, &rc, co.checkins == 3, 2000);
    assert_int_equal(rc, ROOST_OK);
    assert_int_equal(co.opened, 3);
    assert_int_equal(co.checkins, 3);
    roost_client_destroy(c);
    roost_channel_destroy(co.ch);
    unlink(path);
}

/* A ledger that cannot be read when the client checks in on connecting
 * ends the client with the ledger's code and says why; it is neither
 * ignored (a client connected but never checking in, step returning
 * ROOST_OK for ever) nor taken to mean that nothing was spent. */
static void
ledger_failure_at_check_in_ends_the_client(void **state)
{
    (void)state;
    char path[320];
    snprintf(path, sizeof(path), "%s/tampered-later.db", fx.dir);
    struct coord co;
    coord_start(&co);
    roost_client *c = coord_client(&co, path);
    /* Someone alters the ledger after the client opened it. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE budget SET epsilon_max = 100.0",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    int rc = ROOST_OK;
    PUMP_UNTIL(c, &co, &rc, false, 2000);
    assert_int_equal(rc, ROOST_ELEDGER);
    assert_int_equal(co.checkins, 0);
    assert_non_null(strstr(roost_client_errmsg(c), "ledger"));
    /* It stays ended. */
    assert_int_equal(roost_client_step(c, NULL), ROOST_ELEDGER);
    roost_client_destroy(c);
    roost_channel_destroy(co.ch);
    unlink(path);

    /* The same when the check-in is the one after a come-back-later. */
    snprintf(path, sizeof(path), "%s/tampered-backoff.db", fx.dir);
    coord_start(&co);
    c = coord_client(&co, path);
    PUMP_UNTIL(c, &co, &rc, co.checkins == 1, 2000);
    assert_int_equal(co.checkins, 1);
    Roost__V1__Envelope env;
    Roost__V1__ComeBackLater cbl;
    roost__v1__envelope__init(&env);
    roost__v1__come_back_later__init(&cbl);
    cbl.retry_after_ms = 20;
    env.body_case = ROOST__V1__ENVELOPE__BODY_COME_BACK_LATER;
    env.come_back_later = &cbl;
    coord_send(&co, &env);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE budget SET epsilon_max = 100.0",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    PUMP_UNTIL(c, &co, &rc, false, 2000);
    assert_int_equal(rc, ROOST_ELEDGER);
    assert_int_equal(co.checkins, 1);
    assert_non_null(strstr(roost_client_errmsg(c), "ledger"));
    roost_client_destroy(c);
    roost_channel_destroy(co.ch);
    unlink(path);
}

/* Send a training task of epochs local epochs (or, with evaluate, an
 * evaluation task) for model dense:3 on inputs channels x side x side
 * (with dp when not NULL), then its parameters (zeros)
 * in chunks. */
static int
to_coord(void *arg, const Roost__V1__Envelope *env)
{
    coord_send(arg, env);
    return ROOST_OK;
}

static void
coord_send_task(struct coord *co, uint64_t round_id, uint32_t channels,
                uint32_t side, uint32_t epochs, Roost__V1__DpParams *dp,
                bool evaluate)
{
    size_t n = (size_t)3 * channels * side * side + 3;
    float *params = calloc(n, sizeof(float));
    assert_non_null(params);
    uint8_t hash[32];
    assert_int_equal(roost_xfer_hash_floats(params, n, hash), ROOST_OK);
    const task_desc d = {
        .kind = evaluate ? ROOST__V1__TASK_KIND__TASK_KIND_EVALUATE
                         : ROOST__V1__TASK_KIND__TASK_KIND_TRAIN,
        .round_id = round_id,
        .task_id = round_id,
        .channels = channels,
        .side = side,
        .epochs = epochs,
        .dp = dp,
        .params = params,
        .n = n,
        .hash = hash,
    };
    emit_task(&d, to_coord, co);
    free(params);
}

/* When the budget ends the client, roost_client_errmsg says so: it gives
 * the ledger's refusal, not the message of an earlier task the client
 * declined and got over (here a model for inputs of another shape). */
static void
budget_end_reports_the_budget_not_an_older_failure(void **state)
{
    (void)state;
    char path[320];
    snprintf(path, sizeof(path), "%s/budget-msg.db", fx.dir);
    struct coord co;
    coord_start(&co);
    roost_client *c = coord_client(&co, path);
    int rc = ROOST_OK;
    PUMP_UNTIL(c, &co, &rc, co.checkins == 1, 2000);
    assert_int_equal(co.checkins, 1);
    Roost__V1__DpParams dp;
    dp_params(&dp, 5.0, 1.0, 4);
    /* Within budget, but for inputs of 1x3x3 where the local data is
     * 1x2x2: declined, checked in again. */
    coord_send_task(&co, 1, 1, 3, 1, &dp, false);
    PUMP_UNTIL(c, &co, &rc, co.checkins == 2, 2000);
    assert_int_equal(rc, ROOST_OK);
    assert_int_equal(co.declines, 1);
    assert_int_equal(co.checkins, 2);
    /* 50 epochs at sigma 0.6 and q 1 are far beyond a budget of 3. */
    dp.noise_multiplier = 0.6;
    dp.expected_batch_size = N_EX;
    coord_send_task(&co, 2, 1, 2, 50, &dp, false);
    PUMP_UNTIL(c, &co, &rc, false, 2000);
    assert_int_equal(rc, ROOST_EBUDGET);
    /* The decline (BUDGET_EXHAUSTED) went out before the client ended. */
    for (int i = 0; i < 2000 && co.declines < 2; i++)
        roost_channel_poll(co.ch, 5);
    assert_int_equal(co.declines, 2);
    const char *msg = roost_client_errmsg(c);
    if (strstr(msg, "budget") == NULL)
        fail_msg("errmsg after ROOST_EBUDGET: '%s'", msg);
    assert_int_equal(roost_client_step(c, NULL), ROOST_EBUDGET);
    assert_non_null(strstr(roost_client_errmsg(c), "budget"));
    roost_client_destroy(c);
    roost_channel_destroy(co.ch);
    unlink(path);
}

/* A DP task end to end through the public API: the privacy event is in
 * the ledger file when the coordinator receives the update (not after),
 * the update reports the epsilon the ledger gives, and the accepted round
 * counts towards max_rounds. */
static void
dp_round_is_charged_before_the_update_arrives(void **state)
{
    (void)state;
    char path[320];
    snprintf(path, sizeof(path), "%s/round.db", fx.dir);
    struct coord co;
    coord_start(&co);
    co.ledger = path;
    roost_config *cfg = full_config(NULL, path, 1);
    assert_non_null(cfg);
    assert_int_equal(roost_config_set_server(cfg, co.endpoint, "localhost"),
                     ROOST_OK);
    assert_int_equal(roost_config_set_max_rounds(cfg, 1), ROOST_OK);
    roost_client *c = NULL;
    assert_int_equal(roost_client_create(&c, cfg, NULL, 0), ROOST_OK);
    roost_config_destroy(cfg);
    int rc = ROOST_OK;
    PUMP_UNTIL(c, &co, &rc, co.checkins == 1, 2000);
    assert_int_equal(co.checkins, 1);
    assert_int_equal(ledger_events(path), 0);
    Roost__V1__DpParams dp;
    dp_params(&dp, 5.0, 1.0, 4);
    coord_send_task(&co, 3, 1, 2, 1, &dp, false);
    PUMP_UNTIL(c, &co, &rc, co.updates == 1 && co.chunks >= 1, 4000);
    assert_int_equal(rc, ROOST_OK);
    assert_int_equal(co.updates, 1);
    assert_int_equal(co.events_at_update, 1);
    double spent = 0, budget = 0;
    assert_int_equal(roost_client_epsilon(c, &spent, &budget), ROOST_OK);
    assert_true(spent > 0 && spent < budget);
    assert_true(co.update_epsilon == spent);
    /* The coordinator accepts it: one round contributed, max_rounds 1. */
    emit_ack(3, 3, to_coord, &co);
    PUMP_UNTIL(c, &co, &rc, false, 2000);
    assert_int_equal(rc, ROOST_ECLOSED);
    assert_int_equal(ledger_events(path), 1);
    roost_client_destroy(c);
    roost_channel_destroy(co.ch);
    unlink(path);
}

/* The allocation-failure sweep over a whole DP round through the public
 * client: after the client has checked in, fail its Nth allocation (its
 * channel's, protocol's, trainer's, ledger's...) for every N. Each run
 * must end in one of the documented ways -- the update arrives, the task
 * is declined, the client reconnects, or step returns an error -- never
 * hang, crash or charge without a durable event, and destroy must give
 * back every allocation. */
static void
allocation_failure_sweep_over_a_client_round(void **state)
{
    (void)state;
    char path[320];
    snprintf(path, sizeof(path), "%s/sweep-round.db", fx.dir);
    Roost__V1__DpParams dp;
    dp_params(&dp, 5.0, 1.0, 4);
    long ended[4] = {0, 0, 0, 0}; /* updated, declined, reconnected, error */
    long n;
    for (n = 1; n < 2000; n++) {
        struct counting cnt = {0, 0, 0};
        roost_allocator a = {c_malloc, c_realloc, c_free, &cnt};
        struct coord co;
        coord_start(&co);
        co.ledger = path;
        roost_config *cfg = full_config(&a, path, 1);
        assert_non_null(cfg);
        assert_int_equal(roost_config_set_server(cfg, co.endpoint, "localhost"),
                         ROOST_OK);
        assert_int_equal(roost_config_set_reconnect(cfg, 10, 40), ROOST_OK);
        roost_client *c = NULL;
        assert_int_equal(roost_client_create(&c, cfg, NULL, 0), ROOST_OK);
        roost_config_destroy(cfg);
        int rc = ROOST_OK;
        PUMP_UNTIL(c, &co, &rc, co.checkins == 1, 2000);
        assert_int_equal(co.checkins, 1);
        int64_t events_before = ledger_events(path);
        cnt.fail_at = cnt.count + n;
        coord_send_task(&co, (uint64_t)n, 1, 2, 1, &dp, false);
        PUMP_UNTIL(c, &co, &rc,
                   (co.updates == 1 && co.chunks >= 1) || co.declines > 0 ||
                       co.opened > 1,
                   4000);
        int how = co.updates == 1   ? 0
                  : co.declines > 0 ? 1
                  : co.opened > 1   ? 2
                  : rc != ROOST_OK  ? 3
                                    : -1;
        if (how < 0)
            fail_msg("allocation %ld failed: the round neither ended nor "
                     "failed (step %s, %d updates, %d chunks)",
                     n, roost_errname(rc), co.updates, co.chunks);
        ended[how]++;
        /* An update never leaves without its event in the ledger. */
        if (co.updates > 0)
            assert_int_equal(co.events_at_update, events_before + 1);
        bool injected = cnt.count >= cnt.fail_at;
        roost_client_destroy(c);
        roost_channel_destroy(co.ch);
        if (cnt.live != 0)
            fail_msg("allocation %ld failed: %ld allocations leaked", n,
                     cnt.live);
        if (!injected && how == 0)
            break; /* the whole round ran without reaching allocation n */
    }
    print_message("client round: swept %ld allocation points (updated %ld, "
                  "declined %ld, reconnected %ld, error %ld)\n",
                  n - 1, ended[0], ended[1], ended[2], ended[3]);
    assert_true(ended[0] > 0);
    unlink(path);
}

/* Step the client until cond holds, at most once per wake-up of its
 * descriptor (or every 50 ms), polling the coordinator in between: a
 * message the coordinator sent reaches the client within a few steps, so
 * a task of many steps is still in training when it does. */
#define STEP_ON_WAKEUP_UNTIL(c, co, client_rc, cond)                           \
    do {                                                                       \
        int wake_fd_ = -1;                                                     \
        assert_int_equal(roost_client_fd((c), &wake_fd_), ROOST_OK);           \
        for (int wake_i_ = 0; wake_i_ < 2000 && !(cond); wake_i_++) {          \
            roost_channel_poll((co)->ch, 0);                                   \
            struct pollfd wake_p_ = {.fd = wake_fd_, .events = POLLIN};        \
            poll(&wake_p_, 1, 50);                                             \
            *(client_rc) = roost_client_step((c), NULL);                       \
            if (*(client_rc) != ROOST_OK)                                      \
                break;                                                         \
        }                                                                      \
    } while (0)

static void
count_progress(void *arg, const roost_client_progress *p)
{
    int *events = arg;
    if (p->event >= 1 && p->event <= 6)
        events[p->event]++;
}

/* A task that ends while the client trains -- the round closes (come back
 * later) or the coordinator drops the connection -- is void: nothing is
 * charged to the ledger, nothing is sent, and the client checks in again.
 * Cancelling in the middle of training charges nothing either. */
static void
task_ended_under_training_charges_nothing(void **state)
{
    (void)state;
    char path[320];
    snprintf(path, sizeof(path), "%s/void.db", fx.dir);
    struct coord co;
    coord_start(&co);
    int events[7] = {0};
    roost_config *cfg = full_config(NULL, path, 1);
    assert_non_null(cfg);
    assert_int_equal(roost_config_set_server(cfg, co.endpoint, "localhost"),
                     ROOST_OK);
    assert_int_equal(roost_config_set_reconnect(cfg, 10, 40), ROOST_OK);
    assert_int_equal(roost_config_set_progress(cfg, count_progress, events),
                     ROOST_OK);
    roost_client *c = NULL;
    assert_int_equal(roost_client_create(&c, cfg, NULL, 0), ROOST_OK);
    roost_config_destroy(cfg);
    int rc = ROOST_OK;
    PUMP_UNTIL(c, &co, &rc, co.checkins == 1, 2000);
    Roost__V1__DpParams dp;
    dp_params(&dp, 20.0, 1.0, 1); /* 100 epochs: 800 steps */
    /* The round closes under the task. */
    coord_send_task(&co, 1, 1, 2, 100, &dp, false);
    PUMP_UNTIL(c, &co, &rc, events[ROOST_EVENT_TASK] == 1, 2000);
    assert_int_equal(roost_client_step(c, NULL), ROOST_OK); /* starts */
    assert_int_equal(roost_client_step(c, NULL), ROOST_OK); /* trains */
    Roost__V1__Envelope env;
    Roost__V1__ComeBackLater cbl;
    roost__v1__envelope__init(&env);
    roost__v1__come_back_later__init(&cbl);
    cbl.retry_after_ms = 10;
    env.body_case = ROOST__V1__ENVELOPE__BODY_COME_BACK_LATER;
    env.come_back_later = &cbl;
    coord_send(&co, &env);
    STEP_ON_WAKEUP_UNTIL(c, &co, &rc, co.checkins == 2);
    assert_int_equal(rc, ROOST_OK);
    assert_int_equal(co.checkins, 2);
    assert_int_equal(co.updates, 0);
    assert_int_equal(ledger_events(path), 0);
    /* The coordinator drops the connection under the task. */
    coord_send_task(&co, 2, 1, 2, 100, &dp, false);
    PUMP_UNTIL(c, &co, &rc, events[ROOST_EVENT_TASK] == 2, 2000);
    assert_int_equal(roost_client_step(c, NULL), ROOST_OK);
    assert_int_equal(roost_client_step(c, NULL), ROOST_OK);
    assert_int_equal(roost_channel_close(co.ch, co.session), ROOST_OK);
    STEP_ON_WAKEUP_UNTIL(c, &co, &rc, co.checkins == 3);
    assert_int_equal(rc, ROOST_OK);
    assert_int_equal(co.checkins, 3);
    assert_int_equal(co.updates, 0);
    assert_int_equal(ledger_events(path), 0);
    assert_true(events[ROOST_EVENT_DISCONNECTED] >= 1);
    /* The app cancels under a task. */
    coord_send_task(&co, 3, 1, 2, 100, &dp, false);
    PUMP_UNTIL(c, &co, &rc, events[ROOST_EVENT_TASK] == 3, 2000);
    assert_int_equal(roost_client_step(c, NULL), ROOST_OK);
    assert_int_equal(roost_client_step(c, NULL), ROOST_OK);
    roost_client_cancel(c);
    assert_int_equal(roost_client_step(c, NULL), ROOST_ECANCELED);
    roost_client_destroy(c);
    for (int i = 0; i < 20; i++)
        roost_channel_poll(co.ch, 5);
    assert_int_equal(co.updates, 0);
    assert_int_equal(ledger_events(path), 0);
    roost_channel_destroy(co.ch);
    unlink(path);
}

/* A coordinator that does not speak this client's protocol (it answers
 * the check-in with an error ROOST_ENOTSUP) ends the client with that code
 * and the coordinator's reason: reconnecting could never help, and the
 * app must learn that it needs another version. */
static void
unsupported_client_is_told_not_retried(void **state)
{
    (void)state;
    char path[320];
    snprintf(path, sizeof(path), "%s/unsupported.db", fx.dir);
    struct coord co;
    coord_start(&co);
    roost_client *c = coord_client(&co, path);
    int rc = ROOST_OK;
    PUMP_UNTIL(c, &co, &rc, co.checkins == 1, 2000);
    assert_int_equal(co.checkins, 1);
    coord_send_error(&co, ROOST_ENOTSUP,
                     "protocol version 1 is not supported (2)");
    PUMP_UNTIL(c, &co, &rc, false, 2000);
    assert_int_equal(rc, ROOST_ENOTSUP);
    assert_non_null(strstr(roost_client_errmsg(c), "protocol version 1"));
    assert_int_equal(roost_client_step(c, NULL), ROOST_ENOTSUP);
    assert_int_equal(co.opened, 1);
    roost_client_destroy(c);
    roost_channel_destroy(co.ch);
    unlink(path);
}

/* ------------------------------- reconnects, certificate expiry, budget */

/* Counts the log lines that contain each of a watch's words. */
struct log_watch {
    const char *words[2];
    int hits;
};

static void
watch_log(void *arg, int level, const char *message)
{
    (void)level;
    struct log_watch *w = arg; /* an array ended by one without words */
    for (; w->words[0] != NULL; w++)
        if (strstr(message, w->words[0]) != NULL &&
            (w->words[1] == NULL || strstr(message, w->words[1]) != NULL))
            w->hits++;
}

/* The first allocation after the TCP connection to the coordinator is up
 * (the channel's session for it) fails: the connection is dropped, and
 * the next attempt must come after the reconnect backoff. It used to come
 * only when the channel's connect timeout (10 s) ran out, a stall the app
 * could neither see nor shorten: the step that met the failure asked to
 * be called again in a second, then again, for ten seconds. */
static void
failed_allocation_on_connecting_retries_after_the_backoff(void **state)
{
    (void)state;
    char path[320];
    snprintf(path, sizeof(path), "%s/connect-enomem.db", fx.dir);
    struct counting cnt = {0, 0, 0};
    roost_allocator a = {c_malloc, c_realloc, c_free, &cnt};
    struct coord co;
    coord_start(&co);
    roost_config *cfg = full_config(&a, path, 1);
    assert_non_null(cfg);
    assert_int_equal(roost_config_set_server(cfg, co.endpoint, "localhost"),
                     ROOST_OK);
    assert_int_equal(roost_config_set_reconnect(cfg, 10, 40), ROOST_OK);
    roost_client *c = NULL;
    assert_int_equal(roost_client_create(&c, cfg, NULL, 0), ROOST_OK);
    roost_config_destroy(cfg);
    cnt.fail_at = cnt.count + 1;
    int rc = ROOST_OK, timeout = 0;
    for (int i = 0; i < 2000 && cnt.count < cnt.fail_at; i++) {
        rc = roost_client_step(c, &timeout);
        assert_int_equal(rc, ROOST_OK);
        if (cnt.count < cnt.fail_at)
            roost_channel_poll(co.ch, timeout > 5 ? 5 : timeout);
    }
    assert_true(cnt.count >= cnt.fail_at);
    assert_int_equal(co.checkins, 0);
    /* The step that met the failure asks to be woken for the next
     * attempt, which is due within the backoff's bound (40 ms). */
    if (timeout > 40)
        fail_msg("after the failed connection the client waits %d ms", timeout);
    PUMP_UNTIL(c, &co, &rc, co.checkins == 1, 2000);
    assert_int_equal(rc, ROOST_OK);
    assert_int_equal(co.checkins, 1);
    roost_client_destroy(c);
    roost_channel_destroy(co.ch);
    assert_int_equal(cnt.live, 0);
    unlink(path);
}

/* The coordinator's certificate expires while the session is open: the
 * client closes the session (and says why), as roost serve does for
 * client certificates, and connects again after its backoff; that
 * handshake verifies the certificate afresh and is refused, so no new
 * session opens while the coordinator presents the expired certificate.
 * Real TLS over loopback with a server certificate valid for 3 s. */
static void
session_closes_when_the_coordinators_certificate_expires(void **state)
{
    (void)state;
    enum { LIFETIME_S = 3 };
    char path[320];
    snprintf(path, sizeof(path), "%s/server-expiry.db", fx.dir);
    roost_errmsg em = {{0}};
    time_t issued = time(NULL);
    roost_pki_validity brief = {-60, LIFETIME_S};
    const char *sans[] = {"127.0.0.1", "localhost"};
    fx_check(roost_pki_server(fx_path(&fx, "ca.key"), fx_path(&fx, "ca.crt"),
                              fx_path(&fx, "brief.key"),
                              fx_path(&fx, "brief.crt"), "localhost", sans, 2,
                              &brief, &em),
             &em, "short-lived server certificate");
    struct coord co;
    coord_start_as(&co, "brief.crt", "brief.key");
    struct log_watch watch[] = {
        {{"coordinator's certificate", "expired at"}, 0},
        {{"handshake failed", "expired"}, 0},
        {{NULL, NULL}, 0},
    };
    roost_config *cfg = full_config(NULL, path, 1);
    assert_non_null(cfg);
    assert_int_equal(roost_config_set_server(cfg, co.endpoint, "localhost"),
                     ROOST_OK);
    assert_int_equal(roost_config_set_reconnect(cfg, 10, 40), ROOST_OK);
    assert_int_equal(
        roost_config_set_log(cfg, watch_log, watch, ROOST_LOG_WARN), ROOST_OK);
    roost_client *c = NULL;
    assert_int_equal(roost_client_create(&c, cfg, NULL, 0), ROOST_OK);
    roost_config_destroy(cfg);
    int rc = ROOST_OK;
    PUMP_UNTIL(c, &co, &rc, co.checkins == 1, 2000);
    assert_int_equal(rc, ROOST_OK);
    if (co.checkins == 0 && time(NULL) >= issued + LIFETIME_S) {
        /* A machine so slow (an emulator) that the certificate expired
         * before the first handshake: nothing to test here. */
        roost_client_destroy(c);
        roost_channel_destroy(co.ch);
        unlink(path);
        print_message("the certificate expired before the first session "
                      "opened; skipped\n");
        skip();
    }
    assert_int_equal(co.checkins, 1);
    assert_int_equal(co.closed, 0);
    /* The certificate expires LIFETIME_S after it was issued; allow the
     * client a few seconds past that (its wake-ups are at most 1 s
     * apart). */
    while (co.closed == 0 && time(NULL) < issued + LIFETIME_S + 10) {
        int t = 0;
        rc = roost_client_step(c, &t);
        assert_int_equal(rc, ROOST_OK);
        roost_channel_poll(co.ch, t > 5 ? 5 : t);
    }
    if (co.closed != 1)
        fail_msg("the session with an expired coordinator certificate is "
                 "still open %lds after it expired",
                 (long)(time(NULL) - issued - LIFETIME_S));
    assert_true(time(NULL) >= issued + LIFETIME_S);
    assert_int_equal(watch[0].hits, 1);
    /* It reconnects, and the new handshake refuses the certificate. */
    time_t closed_at = time(NULL);
    while (watch[1].hits == 0 && time(NULL) < closed_at + 10) {
        int t = 0;
        rc = roost_client_step(c, &t);
        assert_int_equal(rc, ROOST_OK);
        roost_channel_poll(co.ch, t > 5 ? 5 : t);
    }
    assert_true(watch[1].hits >= 1);
    assert_int_equal(co.opened, 1);
    assert_int_equal(co.checkins, 1);
    roost_client_destroy(c);
    roost_channel_destroy(co.ch);
    unlink(path);
}

/* A ledger at path with budget epsilon_max (delta 1e-5) and one event
 * charged to it (sigma 1, clip 1, the sampler's terms); returns the
 * epsilon spent. The search that charges the sampler stops depending on
 * the budget once the budget is at least its result (accountant.h), so a
 * ledger whose budget is what the event spent under a larger one takes
 * the event and has exactly 0 left. */
static double
ledger_with_one_event(const char *path, double epsilon_max)
{
    roost_ledger *l = NULL;
    roost_ledger_budget b = {epsilon_max, 1e-5};
    roost_errmsg em = {{0}};
    if (roost_ledger_open(&l, NULL, path, ROOST_LEDGER_CREATE, &b, &em) !=
        ROOST_OK)
        fail_msg("ledger %s: %s", path, em.text);
    roost_ledger_event ev = {.q = 0.5,
                             .sigma = 1.0,
                             .steps = 4,
                             .delta = 1e-5,
                             .round_id = 1,
                             .task_id = "1",
                             .draws = 60};
    assert_int_equal(
        roost_noise_closeness_for(NULL, 1.0, 1.0, 0, &ev.mu, &ev.beta, NULL),
        ROOST_OK);
    roost_ledger_receipt receipt;
    double eps = -1;
    int rc = roost_ledger_charge(l, &ev, &receipt, &eps);
    if (rc != ROOST_OK)
        fail_msg("charge: %s: %s", roost_errname(rc), roost_ledger_errmsg(l));
    roost_ledger_close(l);
    return eps;
}

/* A client of co on the ledger at path (budget epsilon at delta 1e-5,
 * created when create); the caller destroys it. */
static roost_client *
ledger_client(struct coord *co, const char *path, double epsilon, int create)
{
    roost_config *cfg = full_config(NULL, path, create);
    assert_non_null(cfg);
    assert_int_equal(roost_config_set_server(cfg, co->endpoint, "localhost"),
                     ROOST_OK);
    assert_int_equal(roost_config_set_ledger(cfg, path, epsilon, 1e-5, create),
                     ROOST_OK);
    roost_client *c = NULL;
    assert_int_equal(roost_client_create(&c, cfg, NULL, 0), ROOST_OK);
    roost_config_destroy(cfg);
    return c;
}

/* A client started on a ledger whose budget is spent to exactly 0 ends at
 * once with ROOST_EBUDGET and says why, without checking in: the
 * coordinator would never select a client with nothing left, so a
 * check-in would have left it connected and waiting for ever, with step
 * returning ROOST_OK and the app never told. */
static void
budget_spent_to_exactly_zero_ends_the_client(void **state)
{
    (void)state;
    char probe[320], path[320];
    snprintf(probe, sizeof(probe), "%s/zero-probe.db", fx.dir);
    snprintf(path, sizeof(path), "%s/zero.db", fx.dir);
    double cost = ledger_with_one_event(probe, 100.0);
    unlink(probe);
    assert_true(cost > 0 && cost < 100.0);
    /* The same event spends a budget of exactly its cost. */
    assert_true(ledger_with_one_event(path, cost) == cost);
    struct coord co;
    coord_start(&co);
    roost_client *c = ledger_client(&co, path, cost, 0);
    double spent = -1, budget = -1;
    assert_int_equal(roost_client_epsilon(c, &spent, &budget), ROOST_OK);
    assert_true(budget - spent == 0.0);
    int rc = ROOST_OK;
    PUMP_UNTIL(c, &co, &rc, co.checkins > 0, 2000);
    assert_int_equal(rc, ROOST_EBUDGET);
    assert_int_equal(co.checkins, 0);
    assert_non_null(strstr(roost_client_errmsg(c), "budget exhausted"));
    assert_int_equal(roost_client_step(c, NULL), ROOST_EBUDGET);
    roost_client_destroy(c);
    roost_channel_destroy(co.ch);
    unlink(path);
}

/* Run a client on the ledger at path (budget epsilon at delta 1e-5,
 * created when create) against co through DP rounds with the given noise
 * multipliers, each acknowledged, while it goes on. spent[i] gets the
 * epsilon spent after round i (NAN if it did not upload). Returns the
 * client (the caller destroys it) with the last step's code in *rc. */
static roost_client *
client_rounds(struct coord *co, const char *path, double epsilon, int create,
              const double *sigmas, int n, double *spent, int *rc)
{
    roost_client *c = ledger_client(co, path, epsilon, create);
    *rc = ROOST_OK;
    PUMP_UNTIL(c, co, rc, co->checkins == 1, 2000);
    assert_int_equal(co->checkins, 1);
    for (int i = 0; i < n; i++)
        spent[i] = (double)NAN;
    for (int i = 0; i < n && *rc == ROOST_OK; i++) {
        Roost__V1__DpParams dp;
        dp_params(&dp, sigmas[i], 1.0, 4);
        uint64_t round = (uint64_t)i + 1;
        coord_send_task(co, round, 1, 2, 1, &dp, false);
        PUMP_UNTIL(c, co, rc, co->chunks == i + 1, 4000);
        if (co->updates != i + 1)
            break;
        double budget = 0;
        assert_int_equal(roost_client_epsilon(c, &spent[i], &budget), ROOST_OK);
        emit_ack(round, round, to_coord, co);
        PUMP_UNTIL(c, co, rc, co->checkins == i + 2, 2000);
    }
    return c;
}

/* The budget is spent to exactly 0 by a round the coordinator
 * acknowledges: the client does not check in again (it would wait for
 * ever: the coordinator selects nobody with nothing left) but ends with
 * ROOST_EBUDGET. Before that, a remainder of a few thousandths still
 * pays for a cheap round: a positive remainder is not refused. The budget
 * is what the two rounds spend, measured on a ledger with a larger one
 * (the sampler's charge stops depending on the budget once the budget is
 * at least the result). */
static void
round_that_spends_the_last_of_the_budget_ends_the_client(void **state)
{
    (void)state;
    char probe[320], path[320];
    snprintf(probe, sizeof(probe), "%s/last-probe.db", fx.dir);
    snprintf(path, sizeof(path), "%s/last.db", fx.dir);
    /* A round at sigma 1, then a cheap one at sigma 40. */
    const double sigmas[2] = {1.0, 40.0};
    double spent[2];
    struct coord co;
    coord_start(&co);
    int rc = ROOST_OK;
    roost_client *c =
        client_rounds(&co, probe, 100.0, 1, sigmas, 2, spent, &rc);
    roost_client_destroy(c);
    roost_channel_destroy(co.ch);
    unlink(probe);
    assert_int_equal(rc, ROOST_OK);
    assert_true(spent[0] > 0 && spent[1] > spent[0]);
    double left = spent[1] - spent[0];
    print_message("rounds spend %.6f and %.6f: a remainder of %.6f\n", spent[0],
                  spent[1], left);
    assert_true(left < 0.01 * spent[1]);

    coord_start(&co);
    c = client_rounds(&co, path, spent[1], 1, sigmas, 2, spent, &rc);
    /* Both rounds were uploaded: the first one left a small positive
     * remainder, reported at check-in, which paid for the second. */
    assert_int_equal(co.updates, 2);
    assert_true(spent[1] > spent[0]);
    /* After the second: no check-in, the app is told. */
    PUMP_UNTIL(c, &co, &rc, co.checkins > 2, 2000);
    assert_int_equal(rc, ROOST_EBUDGET);
    assert_int_equal(co.checkins, 2);
    assert_true(co.last_remaining > 0 && co.last_remaining < 0.01 * spent[1]);
    assert_non_null(strstr(roost_client_errmsg(c), "budget exhausted"));
    double now_spent = -1, budget = -1;
    assert_int_equal(roost_client_epsilon(c, &now_spent, &budget), ROOST_OK);
    assert_true(now_spent == budget);
    assert_int_equal(roost_client_step(c, NULL), ROOST_EBUDGET);
    /* And it has left the coordinator, not held its session open. */
    for (int i = 0; i < 2000 && co.closed == 0; i++) {
        roost_client_step(c, NULL);
        roost_channel_poll(co.ch, 5);
    }
    assert_int_equal(co.closed, 1);
    roost_client_destroy(c);
    roost_channel_destroy(co.ch);
    unlink(path);
}

/* An app's own model for the trainer test: example i's gradient is x_i
 * (4 floats) placed at offset 4 * label_i of the 15 parameters; the norms
 * and the weighted sum are exact for that definition. */
struct app_model {
    int prepared, norm_calls, grad_calls;
    size_t largest_batch, n_params;
    char spec[32];
    float x[64 * 4];
    uint8_t y[64];
    size_t batch;
    int fail_norms; /* return this from example_norms when nonzero */
};

static int
app_prepare(void *arg, const char *spec, uint32_t channels, uint32_t height,
            uint32_t width, size_t num_params)
{
    struct app_model *m = arg;
    m->prepared++;
    snprintf(m->spec, sizeof(m->spec), "%s", spec);
    m->n_params = num_params;
    return channels * height * width == 4 && num_params == 15 ? ROOST_OK
                                                              : ROOST_ENOTSUP;
}

static int
app_norms(void *arg, const float *params, const float *x, const uint8_t *labels,
          size_t batch, double *norms_sq, double *loss_sum)
{
    (void)params;
    struct app_model *m = arg;
    m->norm_calls++;
    if (m->fail_norms != 0)
        return m->fail_norms;
    assert_true(batch <= 64);
    if (batch > m->largest_batch)
        m->largest_batch = batch;
    memcpy(m->x, x, batch * 4 * sizeof(float));
    memcpy(m->y, labels, batch);
    m->batch = batch;
    for (size_t i = 0; i < batch; i++) {
        double n = 0;
        for (int k = 0; k < 4; k++)
            n += (double)x[4 * i + k] * (double)x[4 * i + k];
        norms_sq[i] = n;
    }
    if (loss_sum != NULL)
        *loss_sum = (double)batch;
    return ROOST_OK;
}

static int
app_grad(void *arg, const float *weights, float *grad)
{
    struct app_model *m = arg;
    m->grad_calls++;
    memset(grad, 0, m->n_params * sizeof(float));
    for (size_t i = 0; i < m->batch; i++)
        for (int k = 0; k < 4; k++)
            grad[4 * m->y[i] + (size_t)k] += weights[i] * m->x[4 * i + k];
    return ROOST_OK;
}

/* Bring your own model through the public API: the trainer is prepared
 * with the task's model, gets batches of at most max_batch, and the round
 * is charged and sent like any other; a trainer that fails declines the
 * task with nothing charged; evaluation tasks are declined for clients
 * with their own trainer even when evaluation is allowed. */
static void
app_trainer_round(void **state)
{
    (void)state;
    char path[320];
    snprintf(path, sizeof(path), "%s/app-trainer.db", fx.dir);
    struct coord co;
    coord_start(&co);
    co.ledger = path;
    struct app_model am;
    memset(&am, 0, sizeof(am));
    roost_trainer t = {app_prepare, app_norms, app_grad, 3, &am};
    roost_config *cfg = full_config(NULL, path, 1);
    assert_non_null(cfg);
    assert_int_equal(roost_config_set_server(cfg, co.endpoint, "localhost"),
                     ROOST_OK);
    assert_int_equal(roost_config_set_trainer(cfg, &t), ROOST_OK);
    assert_int_equal(roost_config_set_allow_evaluation(cfg, 1), ROOST_OK);
    roost_client *c = NULL;
    assert_int_equal(roost_client_create(&c, cfg, NULL, 0), ROOST_OK);
    roost_config_destroy(cfg);
    int rc = ROOST_OK;
    PUMP_UNTIL(c, &co, &rc, co.checkins == 1, 2000);
    assert_int_equal(co.checkins, 1);
    Roost__V1__DpParams dp;
    dp_params(&dp, 5.0, 1.0, 8); /* q = 1: every example, batches of <= 3 */
    coord_send_task(&co, 1, 1, 2, 2, &dp, false);
    PUMP_UNTIL(c, &co, &rc, co.updates == 1 && co.chunks >= 1, 4000);
    assert_int_equal(rc, ROOST_OK);
    assert_int_equal(co.updates, 1);
    assert_int_equal(co.events_at_update, 1);
    assert_int_equal(am.prepared, 1);
    assert_string_equal(am.spec, "dense:3");
    assert_true(am.norm_calls > 0 && am.grad_calls > 0);
    assert_true(am.largest_batch >= 1 && am.largest_batch <= 3);
    /* A trainer that fails: declined, nothing more charged. */
    emit_ack(1, 1, to_coord, &co);
    PUMP_UNTIL(c, &co, &rc, co.checkins == 2, 2000);
    assert_int_equal(co.checkins, 2);
    am.fail_norms = ROOST_EIO;
    coord_send_task(&co, 2, 1, 2, 2, &dp, false);
    PUMP_UNTIL(c, &co, &rc, co.declines == 1, 4000);
    assert_int_equal(rc, ROOST_OK);
    assert_int_equal(co.declines, 1);
    assert_int_equal(co.updates, 1);
    assert_int_equal(ledger_events(path), 1);
    /* Evaluation: declined before the model is taken, trainer untouched. */
    PUMP_UNTIL(c, &co, &rc, co.checkins == 3, 2000);
    int prepared = am.prepared;
    coord_send_task(&co, 3, 1, 2, 0, NULL, true);
    PUMP_UNTIL(c, &co, &rc, co.declines == 2, 4000);
    assert_int_equal(co.declines, 2);
    assert_int_equal(am.prepared, prepared);
    roost_client_destroy(c);
    roost_channel_destroy(co.ch);
    unlink(path);
}

int
main(void)
{
    for (int i = 0; i < N_EX * 4; i++)
        data_x[i] = (float)(i % 7) / 7.0f;
    for (int i = 0; i < N_EX; i++)
        data_y[i] = (uint8_t)(i % 3);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fixture_files_load),
        cmocka_unit_test(bad_configuration_is_refused),
        cmocka_unit_test(null_handles_are_refused),
        cmocka_unit_test(setters_refuse_what_could_never_work),
        cmocka_unit_test(create_failures_have_documented_codes),
        cmocka_unit_test(failed_setters_leave_the_config_unchanged),
        cmocka_unit_test(missing_ledger_is_refused_unless_created),
        cmocka_unit_test(allocation_failure_sweep_over_create),
        cmocka_unit_test(allocation_failure_sweep_over_a_task),
        cmocka_unit_test(evaluation_tasks),
        cmocka_unit_test(tasks_without_dp_are_declined_unless_allowed),
        cmocka_unit_test(dp_tasks_record_the_samplers_draws),
        cmocka_unit_test(client_reconnects_after_closing_a_session),
        cmocka_unit_test(ledger_failure_at_check_in_ends_the_client),
        cmocka_unit_test(unsupported_client_is_told_not_retried),
        cmocka_unit_test(budget_end_reports_the_budget_not_an_older_failure),
        cmocka_unit_test(dp_round_is_charged_before_the_update_arrives),
        cmocka_unit_test(allocation_failure_sweep_over_a_client_round),
        cmocka_unit_test(task_ended_under_training_charges_nothing),
        cmocka_unit_test(app_trainer_round),
        cmocka_unit_test(
            failed_allocation_on_connecting_retries_after_the_backoff),
        cmocka_unit_test(
            session_closes_when_the_coordinators_certificate_expires),
        cmocka_unit_test(budget_spent_to_exactly_zero_ends_the_client),
        cmocka_unit_test(
            round_that_spends_the_last_of_the_budget_ends_the_client),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
