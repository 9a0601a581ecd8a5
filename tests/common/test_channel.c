/*
 * test_channel.c - TLS over real ZeroMQ ZMQ_STREAM sockets on 127.0.0.1.
 *
 * One listener and one good client stay connected through the whole
 * program. Each misbehaving peer (unknown CA, expired, revoked, no client
 * certificate, plaintext, truncated record, garbage after the handshake,
 * oversize frame, a handshake that never finishes, 1,000 connections
 * opened and dropped) must be refused with a clear log line while the
 * good session keeps working. `openssl s_client` must complete a TLS 1.3
 * handshake with the listener with a client certificate, and fail
 * without one. A FRAME callback that closes its own session or another
 * one can still read its payload, and the closed session goes away.
 * Everything runs on this thread; ZeroMQ's I/O thread does the TCP work.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "common/channel.h"
#include "tls_fixture.h"

static tls_fixture fx;

/* ---- log capture ------------------------------------------------------ */

static char logbuf[1 << 20];
static size_t loglen;

static void
capture_log(void *arg, int level, const char *msg)
{
    (void)arg;
    if (getenv("ROOST_TEST_VERBOSE"))
        fprintf(stderr, "[%s] %s\n", roost_log_level_name(level), msg);
    size_t n = strlen(msg);
    if (loglen + n + 2 >= sizeof(logbuf))
        loglen = 0;
    memcpy(logbuf + loglen, msg, n);
    loglen += n;
    logbuf[loglen++] = '\n';
    logbuf[loglen] = '\0';
}

static void
log_reset(void)
{
    loglen = 0;
    logbuf[0] = '\0';
}

/* ---- event capture ---------------------------------------------------- */

typedef struct recorder {
    roost_channel *ch;
    bool echo; /* server: send every frame back */
    int opened, frames, closed;
    uint64_t session;
    int last_reason;
    roost_tls_identity identity;
    uint8_t last[256];
    size_t last_len;
    uint64_t last_hash; /* of the whole last frame (frame_hash) */
    size_t last_full_len;
    /* With closer set, a FRAME callback ends a session before it reads
     * the payload, which must stay valid for the whole callback: a frame
     * that starts with '!' closes its own session, one that starts with
     * '>' closes close_other. Neither is echoed. */
    bool closer;
    uint64_t close_other;
} recorder;

/* FNV-1a over a whole frame, to compare large frames end to end. */
static uint64_t
frame_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static void
on_event(void *arg, const roost_channel_event *ev)
{
    recorder *r = arg;
    bool ended = false;
    switch (ev->type) {
    case ROOST_CHANNEL_OPENED:
        r->opened++;
        r->session = ev->session;
        r->identity = *ev->identity;
        break;
    case ROOST_CHANNEL_FRAME:
        r->frames++;
        if (r->closer && ev->len > 0 &&
            (ev->data[0] == '!' || ev->data[0] == '>')) {
            uint64_t victim = ev->data[0] == '!' ? ev->session : r->close_other;
            assert_int_equal(roost_channel_close(r->ch, victim), ROOST_OK);
            ended = true;
        }
        r->last_len = ev->len < sizeof(r->last) ? ev->len : sizeof(r->last);
        memcpy(r->last, ev->data, r->last_len);
        r->last_hash = frame_hash(ev->data, ev->len);
        r->last_full_len = ev->len;
        if (r->echo && !ended)
            assert_int_equal(
                roost_channel_send(r->ch, ev->session, ev->data, ev->len),
                ROOST_OK);
        break;
    case ROOST_CHANNEL_CLOSED:
        r->closed++;
        r->last_reason = ev->reason;
        break;
    }
}

/* ---- the shared server and good client -------------------------------- */

static roost_channel *server, *good;
static recorder srv_rec, good_rec;
static char endpoint[128];
static int port;
static uint64_t good_srv_session; /* the good session's id on the server */
static const uint32_t MAX_FRAME = 1 << 20;

static void
pump(int ms)
{
    roost_channel_poll(server, 1);
    if (good != NULL)
        roost_channel_poll(good, 0);
    (void)ms;
}

static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define PUMP_UNTIL(cond, ms)                                                   \
    do {                                                                       \
        int64_t deadline_ = mono_ms() + (ms);                                  \
        while (!(cond) && mono_ms() < deadline_)                               \
            pump(1);                                                           \
    } while (0)

static roost_channel *
make_client(const char *cert, recorder *rec, roost_tls_ctx **ctx_out)
{
    roost_tls_ctx *ctx = fx_client_ctx(&fx, cert, "ca");
    roost_channel_config cfg;
    roost_channel_config_init(&cfg);
    cfg.on_event = on_event;
    cfg.event_arg = rec;
    cfg.logger = (roost_logger){capture_log, NULL, ROOST_LOG_DEBUG};
    cfg.reconnect_min_ms = 50;
    cfg.reconnect_max_ms = 200;
    cfg.max_frame = MAX_FRAME;
    roost_channel *ch;
    roost_errmsg em = {{0}};
    assert_int_equal(roost_channel_create(&ch, &cfg, ctx, &em), ROOST_OK);
    rec->ch = ch;
    assert_int_equal(roost_channel_connect(ch, endpoint, "localhost"),
                     ROOST_OK);
    if (ctx_out != NULL)
        *ctx_out = ctx;
    else
        roost_tls_ctx_destroy(ctx);
    return ch;
}

/* The good session still works: a frame goes to the server and comes
 * back, and the server has exactly the sessions it should. */
static void
check_good_session(void)
{
    int before = good_rec.frames;
    char msg[64];
    snprintf(msg, sizeof(msg), "still alive %d", before);
    assert_int_equal(good_rec.opened, 1);
    assert_int_equal(good_rec.closed, 0);
    assert_int_equal(
        roost_channel_send(good, good_rec.session, msg, strlen(msg)), ROOST_OK);
    PUMP_UNTIL(good_rec.frames > before, 5000);
    assert_int_equal(good_rec.frames, before + 1);
    assert_int_equal(good_rec.last_len, strlen(msg));
    assert_memory_equal(good_rec.last, msg, strlen(msg));
    assert_int_equal(srv_rec.closed, 0);
}

static void
wait_for_log(const char *needle, int ms)
{
    PUMP_UNTIL(strstr(logbuf, needle) != NULL, ms);
    if (strstr(logbuf, needle) == NULL) {
        print_error("log lacks '%s':\n%s\n", needle, logbuf);
        fail();
    }
}

static void
wait_baseline(void)
{
    PUMP_UNTIL(roost_channel_session_count(server) == 1, 10000);
    assert_int_equal(roost_channel_session_count(server), 1);
    assert_int_equal(roost_channel_open_count(server), 1);
}

static int
setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    fx_create(&fx);
    roost_tls_ctx *sctx = fx_server_ctx(&fx);
    roost_channel_config cfg;
    roost_channel_config_init(&cfg);
    cfg.on_event = on_event;
    cfg.event_arg = &srv_rec;
    cfg.logger = (roost_logger){capture_log, NULL, ROOST_LOG_DEBUG};
    cfg.max_frame = MAX_FRAME;
    cfg.handshake_timeout_ms = 500;
    cfg.max_sessions = 2048;
    roost_errmsg em = {{0}};
    if (roost_channel_create(&server, &cfg, sctx, &em) != ROOST_OK)
        return -1;
    roost_tls_ctx_destroy(sctx);
    srv_rec.ch = server;
    srv_rec.echo = true;
    if (roost_channel_listen(server, "tcp://127.0.0.1:*") != ROOST_OK)
        return -1;
    if (roost_channel_endpoint(server, endpoint, sizeof(endpoint)) != ROOST_OK)
        return -1;
    port = atoi(strrchr(endpoint, ':') + 1);
    good = make_client("good", &good_rec, NULL);
    int64_t deadline = mono_ms() + 5000;
    while ((good_rec.opened == 0 || srv_rec.opened == 0) &&
           mono_ms() < deadline)
        pump(1);
    good_srv_session = srv_rec.session;
    return good_rec.opened == 1 && srv_rec.opened == 1 ? 0 : -1;
}

static int
teardown(void **state)
{
    (void)state;
    roost_channel_destroy(good);
    roost_channel_destroy(server);
    fx_destroy(&fx);
    return 0;
}

/* ---- tests ------------------------------------------------------------ */

static void
good_session_identity_and_frames(void **state)
{
    (void)state;
    assert_string_equal(srv_rec.identity.subject, "CN=device-1");
    assert_string_equal(good_rec.identity.subject, "CN=localhost");
    assert_int_equal(strlen(srv_rec.identity.fingerprint_hex), 64);
    check_good_session();
    /* A frame of exactly max_frame bytes passes, and comes back intact
     * (1 MiB: both ends write it into its buffer with streaming stores,
     * from records that start at unaligned offsets); one byte more is
     * refused by the sender before anything is encrypted. */
    uint8_t *big = malloc(MAX_FRAME + 1);
    assert_non_null(big);
    for (size_t i = 0; i <= MAX_FRAME; i++)
        big[i] = (uint8_t)(i * 2654435761u >> 13);
    assert_int_equal(
        roost_channel_send(good, good_rec.session, big, MAX_FRAME + 1),
        ROOST_ETOOBIG);
    int before = good_rec.frames;
    assert_int_equal(roost_channel_send(good, good_rec.session, big, MAX_FRAME),
                     ROOST_OK);
    PUMP_UNTIL(good_rec.frames > before, 10000);
    assert_int_equal(good_rec.frames, before + 1);
    assert_int_equal(good_rec.last_full_len, MAX_FRAME);
    assert_true(good_rec.last_hash == frame_hash(big, MAX_FRAME));
    free(big);
    assert_int_equal(roost_channel_send(good, 999999, "x", 1), ROOST_ENOENT);
    /* Swapping the context (as after a CRL update) keeps sessions. */
    roost_tls_ctx *fresh = fx_server_ctx(&fx);
    assert_int_equal(roost_channel_set_tls(good, fresh), ROOST_EINVAL);
    assert_int_equal(roost_channel_set_tls(server, fresh), ROOST_OK);
    roost_tls_ctx_destroy(fresh);
    check_good_session();
}

static void
bad_client(const char *cert, const char *needle)
{
    log_reset();
    recorder rec = {0};
    roost_channel *bad = make_client(cert, &rec, NULL);
    int64_t deadline = mono_ms() + 5000;
    while (strstr(logbuf, needle) == NULL && mono_ms() < deadline) {
        pump(1);
        roost_channel_poll(bad, 0);
    }
    if (strstr(logbuf, needle) == NULL) {
        print_error("log lacks '%s':\n%s\n", needle, logbuf);
        fail();
    }
    /* The refusal line names the session and says it was dropped. */
    assert_non_null(strstr(logbuf, "dropped: handshake failed"));
    /* The server never opened it: the good session is the only one. */
    assert_int_equal(srv_rec.opened, 1);
    /* In TLS 1.3 the client finishes before the server has checked its
     * certificate, so it may see OPENED and then CLOSED (EAUTH). */
    for (int i = 0; i < 50 && rec.opened > rec.closed; i++) {
        pump(1);
        roost_channel_poll(bad, 1);
    }
    assert_int_equal(rec.opened, rec.closed);
    roost_channel_destroy(bad);
    wait_baseline();
    check_good_session();
}

static void
unknown_ca(void **state)
{
    (void)state;
    bad_client("foreign", "unable to get local issuer certificate");
}

static void
expired_certificate(void **state)
{
    (void)state;
    bad_client("expired", "certificate has expired");
}

static void
revoked_certificate(void **state)
{
    (void)state;
    bad_client("revoked", "certificate revoked");
}

static void
no_client_certificate(void **state)
{
    (void)state;
    bad_client(NULL, "peer did not return a certificate");
}

/* ---- raw TCP peers ---------------------------------------------------- */

static int
raw_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void
send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    int64_t deadline = mono_ms() + 5000;
    while (n > 0 && mono_ms() < deadline) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
        } else {
            pump(1);
        }
    }
    assert_int_equal(n, 0);
}

/* A TLS client over a plain socket, so the test controls every byte. */
static roost_tls *
raw_tls_handshake(int fd, roost_tls_ctx **ctx_out)
{
    roost_tls_ctx *ctx = fx_client_ctx(&fx, "good2", "ca");
    roost_tls *t;
    roost_errmsg em = {{0}};
    assert_int_equal(roost_tls_create(&t, ctx, "localhost", 0, &em), ROOST_OK);
    int rc = ROOST_EAGAIN;
    int opened = srv_rec.opened;
    int64_t deadline = mono_ms() + 5000;
    while (mono_ms() < deadline &&
           (rc == ROOST_EAGAIN || srv_rec.opened == opened)) {
        if (rc == ROOST_EAGAIN)
            rc = roost_tls_handshake(t, &em);
        size_t n;
        const uint8_t *p = roost_tls_out_peek(t, &n);
        if (n > 0) {
            send_all(fd, p, n);
            roost_tls_out_consume(t, n);
        }
        uint8_t buf[4096];
        ssize_t got = recv(fd, buf, sizeof(buf), 0);
        if (got > 0)
            assert_int_equal(roost_tls_feed(t, buf, (size_t)got, &em),
                             ROOST_OK);
        pump(1);
    }
    assert_int_equal(rc, ROOST_OK);
    assert_int_equal(srv_rec.opened, opened + 1);
    *ctx_out = ctx;
    return t;
}

static void
plaintext_bytes(void **state)
{
    (void)state;
    log_reset();
    int fd = raw_connect();
    const char *req = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    send_all(fd, req, strlen(req));
    wait_for_log("dropped: handshake failed", 5000);
    assert_non_null(strstr(logbuf, "http request") != NULL
                        ? strstr(logbuf, "http request")
                        : strstr(logbuf, "wrong version number"));
    close(fd);
    wait_baseline();
    check_good_session();
}

static void
truncated_record(void **state)
{
    (void)state;
    log_reset();
    int fd = raw_connect();
    roost_tls_ctx *ctx;
    roost_tls *t = raw_tls_handshake(fd, &ctx);
    roost_errmsg em = {{0}};
    uint8_t frame[4 + 1000] = {0, 0, 0x03, 0xe8};
    assert_int_equal(roost_tls_write(t, frame, sizeof(frame), &em), ROOST_OK);
    size_t n;
    const uint8_t *p = roost_tls_out_peek(t, &n);
    send_all(fd, p, n / 2); /* half a record, then hang up */
    PUMP_UNTIL(false, 50);
    close(fd);
    wait_for_log("truncated record", 5000);
    assert_int_equal(srv_rec.last_reason, ROOST_ETRUNCATED);
    srv_rec.closed--; /* expected: the raw peer's session closed */
    roost_tls_destroy(t);
    roost_tls_ctx_destroy(ctx);
    wait_baseline();
    check_good_session();
}

/* A peer that sends one whole frame, then half of the next frame's
 * length prefix, and hangs up: the drop is a truncated frame, and the
 * log line describes the cut-off header, not the frame before it. */
static void
truncated_frame_header(void **state)
{
    (void)state;
    log_reset();
    int fd = raw_connect();
    roost_tls_ctx *ctx;
    roost_tls *t = raw_tls_handshake(fd, &ctx);
    roost_errmsg em = {{0}};
    int frames = srv_rec.frames;
    uint8_t frame[4 + 3] = {0, 0, 0, 3, 'a', 'b', 'c'};
    assert_int_equal(roost_tls_write(t, frame, sizeof(frame), &em), ROOST_OK);
    assert_int_equal(roost_tls_write(t, frame, 2, &em), ROOST_OK);
    size_t n;
    const uint8_t *p = roost_tls_out_peek(t, &n);
    send_all(fd, p, n);
    roost_tls_out_consume(t, n);
    PUMP_UNTIL(srv_rec.frames > frames, 5000);
    assert_int_equal(srv_rec.frames, frames + 1);
    close(fd);
    wait_for_log("in the middle of a frame", 5000);
    if (strstr(logbuf, "frame header (2 of 4 bytes)") == NULL) {
        print_error("log does not describe the cut-off header:\n%s\n", logbuf);
        fail();
    }
    assert_int_equal(srv_rec.last_reason, ROOST_ETRUNCATED);
    srv_rec.closed--;
    roost_tls_destroy(t);
    roost_tls_ctx_destroy(ctx);
    wait_baseline();
    check_good_session();
}

static void
garbage_after_handshake(void **state)
{
    (void)state;
    log_reset();
    int fd = raw_connect();
    roost_tls_ctx *ctx;
    roost_tls *t = raw_tls_handshake(fd, &ctx);
    /* A well-formed application-data record header over bytes that were
     * never encrypted: authentication fails. */
    uint8_t junk[5 + 64] = {0x17, 0x03, 0x03, 0x00, 0x40};
    for (size_t i = 5; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 31);
    send_all(fd, junk, sizeof(junk));
    wait_for_log("dropped", 5000);
    assert_non_null(strstr(logbuf, "CN=device-2"));
    assert_int_equal(srv_rec.last_reason, ROOST_ETLS);
    srv_rec.closed--;
    close(fd);
    roost_tls_destroy(t);
    roost_tls_ctx_destroy(ctx);
    wait_baseline();
    check_good_session();
}

static void
oversize_frame(void **state)
{
    (void)state;
    log_reset();
    int fd = raw_connect();
    roost_tls_ctx *ctx;
    roost_tls *t = raw_tls_handshake(fd, &ctx);
    roost_errmsg em = {{0}};
    /* Claims 4 GiB - 1: refused on the header, nothing allocated. */
    uint8_t hdr[4] = {0xff, 0xff, 0xff, 0xff};
    assert_int_equal(roost_tls_write(t, hdr, sizeof(hdr), &em), ROOST_OK);
    size_t n;
    const uint8_t *p = roost_tls_out_peek(t, &n);
    send_all(fd, p, n);
    roost_tls_out_consume(t, n);
    wait_for_log("exceeds the 1048576-byte limit", 5000);
    assert_int_equal(srv_rec.last_reason, ROOST_ETOOBIG);
    srv_rec.closed--;
    close(fd);
    roost_tls_destroy(t);
    roost_tls_ctx_destroy(ctx);
    wait_baseline();
    check_good_session();
}

static void
handshake_never_finishes(void **state)
{
    (void)state;
    log_reset();
    int fd = raw_connect();
    /* Three bytes of a TLS record header, then silence. */
    send_all(fd, "\x16\x03\x01", 3);
    wait_for_log("handshake not finished within 500 ms", 5000);
    close(fd);
    wait_baseline();
    check_good_session();
}

static void
thousand_connections(void **state)
{
    (void)state;
    log_reset();
    int fds[100];
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 100; i++)
            fds[i] = raw_connect();
        PUMP_UNTIL(roost_channel_session_count(server) >= 101, 5000);
        assert_true(roost_channel_session_count(server) >= 101);
        for (int i = 0; i < 100; i++) {
            if (i % 2 == 0)
                send_all(fds[i], "\x16\x03", 2); /* some leave a partial */
            close(fds[i]);
        }
        wait_baseline();
    }
    check_good_session();
}

/* Whether this host can bind the IPv6 loopback (containers may have no
 * IPv6 at all; the test is skipped there, not failed). */
static bool
ipv6_loopback_available(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof(a));
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* A bracketed IPv6 endpoint works on both ends: listen on [::1], connect
 * to it, a frame goes there and back (ZeroMQ needs ZMQ_IPV6 for it). */
static void
ipv6_listen_and_connect(void **state)
{
    (void)state;
    if (!ipv6_loopback_available()) {
        print_message("no IPv6 loopback here: skipped\n");
        skip();
    }
    roost_tls_ctx *sctx = fx_server_ctx(&fx);
    roost_channel_config cfg;
    roost_channel_config_init(&cfg);
    recorder s6 = {0}, c6 = {0};
    s6.echo = true;
    cfg.on_event = on_event;
    cfg.event_arg = &s6;
    cfg.logger = (roost_logger){capture_log, NULL, ROOST_LOG_DEBUG};
    roost_channel *srv6 = NULL;
    roost_errmsg em = {{0}};
    assert_int_equal(roost_channel_create(&srv6, &cfg, sctx, &em), ROOST_OK);
    roost_tls_ctx_destroy(sctx);
    s6.ch = srv6;
    assert_int_equal(roost_channel_listen(srv6, "tcp://[::1]:*"), ROOST_OK);
    char ep[128];
    assert_int_equal(roost_channel_endpoint(srv6, ep, sizeof(ep)), ROOST_OK);
    assert_non_null(strstr(ep, "[::1]:"));

    roost_tls_ctx *cctx = fx_client_ctx(&fx, "good2", "ca");
    roost_channel_config ccfg;
    roost_channel_config_init(&ccfg);
    ccfg.on_event = on_event;
    ccfg.event_arg = &c6;
    ccfg.logger = (roost_logger){capture_log, NULL, ROOST_LOG_DEBUG};
    ccfg.reconnect_min_ms = 50;
    ccfg.reconnect_max_ms = 200;
    roost_channel *cli6 = NULL;
    assert_int_equal(roost_channel_create(&cli6, &ccfg, cctx, &em), ROOST_OK);
    roost_tls_ctx_destroy(cctx);
    c6.ch = cli6;
    assert_int_equal(roost_channel_connect(cli6, ep, "localhost"), ROOST_OK);
    int64_t deadline = mono_ms() + 10000;
    while (c6.opened == 0 && mono_ms() < deadline) {
        roost_channel_poll(srv6, 1);
        roost_channel_poll(cli6, 0);
    }
    assert_int_equal(c6.opened, 1);
    const char msg[] = "over IPv6";
    assert_int_equal(roost_channel_send(cli6, c6.session, msg, sizeof(msg)),
                     ROOST_OK);
    deadline = mono_ms() + 10000;
    while (c6.frames == 0 && mono_ms() < deadline) {
        roost_channel_poll(srv6, 1);
        roost_channel_poll(cli6, 0);
    }
    assert_int_equal(s6.frames, 1);
    assert_int_equal(c6.frames, 1);
    assert_memory_equal(c6.last, msg, sizeof(msg));
    roost_channel_destroy(cli6);
    roost_channel_destroy(srv6);
    check_good_session();
}

static void
max_sessions_refuses_extra_connections(void **state)
{
    (void)state;
    log_reset();
    roost_tls_ctx *sctx = fx_server_ctx(&fx);
    roost_channel_config cfg;
    roost_channel_config_init(&cfg);
    cfg.logger = (roost_logger){capture_log, NULL, ROOST_LOG_DEBUG};
    cfg.max_sessions = 2;
    roost_channel *small;
    roost_errmsg em = {{0}};
    assert_int_equal(roost_channel_create(&small, &cfg, sctx, &em), ROOST_OK);
    roost_tls_ctx_destroy(sctx);
    assert_int_equal(roost_channel_listen(small, "tcp://127.0.0.1:*"),
                     ROOST_OK);
    char ep[128];
    assert_int_equal(roost_channel_endpoint(small, ep, sizeof(ep)), ROOST_OK);
    int saved_port = port;
    port = atoi(strrchr(ep, ':') + 1);
    int fds[3];
    for (int i = 0; i < 3; i++)
        fds[i] = raw_connect();
    port = saved_port;
    int64_t deadline = mono_ms() + 5000;
    while (strstr(logbuf, "refusing connection") == NULL &&
           mono_ms() < deadline) {
        roost_channel_poll(small, 1);
        pump(1);
    }
    assert_non_null(strstr(logbuf, "(max_sessions)"));
    assert_true(roost_channel_session_count(small) <= 2);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    deadline = mono_ms() + 5000;
    while (roost_channel_session_count(small) > 0 && mono_ms() < deadline)
        roost_channel_poll(small, 1);
    assert_int_equal(roost_channel_session_count(small), 0);
    roost_channel_destroy(small);
    check_good_session();
}

/* ---- callbacks that end sessions -------------------------------------- */

/* A TLS client over a raw socket whose records the test sends one by one,
 * so that it decides where each frame is cut. */
typedef struct raw_peer {
    int fd;
    roost_tls_ctx *ctx;
    roost_tls *t;
    uint64_t id; /* its session on the server */
} raw_peer;

static void
raw_peer_open(raw_peer *p)
{
    p->fd = raw_connect();
    p->t = raw_tls_handshake(p->fd, &p->ctx);
    p->id = srv_rec.session;
}

/* Encrypt len bytes as one TLS record and send it. */
static void
raw_peer_record(raw_peer *p, const void *data, size_t len)
{
    roost_errmsg em = {{0}};
    assert_int_equal(roost_tls_write(p->t, data, len, &em), ROOST_OK);
    size_t n;
    const uint8_t *out = roost_tls_out_peek(p->t, &n);
    send_all(p->fd, out, n);
    roost_tls_out_consume(p->t, n);
}

/* The server ends the connection: the peer reads to end of file (or a
 * reset, if the server dropped bytes it had not read). */
static void
raw_peer_wait_eof(raw_peer *p)
{
    uint8_t buf[4096];
    ssize_t got = -1;
    int64_t deadline = mono_ms() + 5000;
    while (mono_ms() < deadline) {
        got = recv(p->fd, buf, sizeof(buf), 0);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            break;
        pump(1);
    }
    assert_true(got == 0 || (got < 0 && errno == ECONNRESET));
}

static void
raw_peer_close(raw_peer *p)
{
    close(p->fd);
    roost_tls_destroy(p->t);
    roost_tls_ctx_destroy(p->ctx);
}

#define HALF_BODY 500

/* A frame body of 2 * HALF_BODY bytes that starts with first. */
static void
fill_body(uint8_t *body, uint8_t first)
{
    body[0] = first;
    for (size_t i = 1; i < 2 * HALF_BODY; i++)
        body[i] = (uint8_t)(i * 131 + first);
}

/* Send "ping" and the first half of a frame (header and HALF_BODY bytes
 * of body) in one record, and pump until the server has delivered the
 * ping. TLS decrypts a record whole and the server reads a session's
 * input until it runs dry, so by then it has also read the second
 * frame's header and holds a frame buffer for it. */
static void
raw_peer_half_frame(raw_peer *p, const uint8_t *body)
{
    uint8_t rec[8 + 4 + HALF_BODY] = {0,
                                      0,
                                      0,
                                      4,
                                      'p',
                                      'i',
                                      'n',
                                      'g',
                                      0,
                                      0,
                                      (2 * HALF_BODY) >> 8,
                                      (2 * HALF_BODY) & 0xff};
    memcpy(rec + 12, body, HALF_BODY);
    int frames = srv_rec.frames;
    raw_peer_record(p, rec, sizeof(rec));
    PUMP_UNTIL(srv_rec.frames > frames, 5000);
    assert_int_equal(srv_rec.frames, frames + 1);
    assert_int_equal(srv_rec.last_full_len, 4);
}

/*
 * A FRAME callback may close its own session and then go on reading the
 * payload: channel.h promises it is valid for the whole callback. Ending
 * the session must not give the frame buffer back while it is lent out,
 * even when the channel's pool of buffers is full and the buffer would
 * be freed. Nine peers each leave the server holding a half-filled frame
 * buffer; eight frames complete, and their buffers fill the pool (eight
 * kept); the ninth frame's callback closes its session, then hashes the
 * payload. The session must still be torn down and reaped.
 */
/* One more than the frame buffers channel.c keeps (POOL_KEEP): with fewer
 * peers the pool is not full and the buffer is not freed. */
#define PEERS 9

static void
callback_closes_own_session(void **state)
{
    (void)state;
    log_reset();
    raw_peer peers[PEERS];
    static uint8_t bodies[PEERS][2 * HALF_BODY];
    for (int i = 0; i < PEERS; i++) {
        raw_peer_open(&peers[i]);
        fill_body(bodies[i], i == PEERS - 1 ? '!' : (uint8_t)('a' + i));
    }
    srv_rec.closer = true;
    for (int i = 0; i < PEERS; i++)
        raw_peer_half_frame(&peers[i], bodies[i]);
    int frames = srv_rec.frames, closed = srv_rec.closed;
    for (int i = 0; i < PEERS - 1; i++)
        raw_peer_record(&peers[i], bodies[i] + HALF_BODY, HALF_BODY);
    PUMP_UNTIL(srv_rec.frames == frames + PEERS - 1, 5000);
    assert_int_equal(srv_rec.frames, frames + PEERS - 1);
    assert_int_equal(srv_rec.closed, closed);
    /* The ninth frame completes: its callback closes, then reads. */
    raw_peer *last = &peers[PEERS - 1];
    raw_peer_record(last, bodies[PEERS - 1] + HALF_BODY, HALF_BODY);
    PUMP_UNTIL(srv_rec.closed > closed, 5000);
    assert_int_equal(srv_rec.closed, closed + 1);
    assert_int_equal(srv_rec.last_reason, ROOST_OK);
    assert_int_equal(srv_rec.frames, frames + PEERS);
    assert_int_equal(srv_rec.last_full_len, 2 * HALF_BODY);
    assert_true(srv_rec.last_hash ==
                frame_hash(bodies[PEERS - 1], 2 * HALF_BODY));
    assert_non_null(strstr(logbuf, "closed locally"));
    /* The closed session goes away (the peer sees its connection end)
     * while the other peers' sessions stay. */
    raw_peer_wait_eof(last);
    PUMP_UNTIL(roost_channel_session_count(server) == PEERS, 5000);
    assert_int_equal(roost_channel_session_count(server), PEERS);
    assert_int_equal(roost_channel_open_count(server), PEERS);
    srv_rec.closer = false;
    for (int i = 0; i < PEERS; i++)
        raw_peer_close(&peers[i]);
    wait_baseline();
    assert_int_equal(srv_rec.closed, closed + PEERS);
    srv_rec.closed -= PEERS; /* expected: the raw peers' sessions */
    check_good_session();
}

/*
 * A FRAME callback may also close another session, here one whose frame
 * is half-read into a buffer of its own (freed at once when the pool is
 * full, as the previous test leaves it). The callback's own payload stays
 * intact, the victim's frame is never delivered, and bytes of its that
 * arrive in the same poll step are dropped, not written into the buffer
 * it gave back.
 */
static void
callback_closes_another_session(void **state)
{
    (void)state;
    log_reset();
    raw_peer a, b;
    static uint8_t body_a[2 * HALF_BODY], body_b[2 * HALF_BODY];
    fill_body(body_a, '>');
    fill_body(body_b, 'b');
    raw_peer_open(&a);
    raw_peer_open(&b);
    srv_rec.closer = true;
    srv_rec.close_other = b.id;
    raw_peer_half_frame(&b, body_b);
    int frames = srv_rec.frames, closed = srv_rec.closed;
    /* a's whole frame, then part of the rest of b's, before the server
     * looks at either: whichever it reads first, b's frame stays
     * incomplete until a's callback closes b. */
    uint8_t rec[4 + 2 * HALF_BODY] = {0, 0, (2 * HALF_BODY) >> 8,
                                      (2 * HALF_BODY) & 0xff};
    memcpy(rec + 4, body_a, sizeof(body_a));
    raw_peer_record(&a, rec, sizeof(rec));
    raw_peer_record(&b, body_b + HALF_BODY, HALF_BODY / 2);
    PUMP_UNTIL(srv_rec.closed > closed, 5000);
    assert_int_equal(srv_rec.closed, closed + 1);
    assert_int_equal(srv_rec.last_reason, ROOST_OK);
    assert_int_equal(srv_rec.frames, frames + 1);
    assert_int_equal(srv_rec.last_full_len, 2 * HALF_BODY);
    assert_true(srv_rec.last_hash == frame_hash(body_a, 2 * HALF_BODY));
    raw_peer_wait_eof(&b);
    PUMP_UNTIL(roost_channel_session_count(server) == 2, 5000);
    assert_int_equal(roost_channel_session_count(server), 2);
    assert_int_equal(srv_rec.frames, frames + 1);
    srv_rec.closer = false;
    raw_peer_close(&a);
    raw_peer_close(&b);
    wait_baseline();
    assert_int_equal(srv_rec.closed, closed + 2);
    srv_rec.closed -= 2; /* expected: a's and b's sessions */
    check_good_session();
}

/* ---- openssl s_client interop ----------------------------------------- */

typedef struct child {
    pid_t pid;
    int stdin_fd;
    char out_path[320];
} child;

static void
spawn_s_client(child *c, bool with_cert)
{
    snprintf(c->out_path, sizeof(c->out_path), "%s/s_client.out", fx.dir);
    char connect_arg[64];
    snprintf(connect_arg, sizeof(connect_arg), "127.0.0.1:%d", port);
    const char *argv[32];
    int n = 0;
    argv[n++] = "openssl";
    argv[n++] = "s_client";
    argv[n++] = "-connect";
    argv[n++] = connect_arg;
    argv[n++] = "-tls1_3";
    argv[n++] = "-CAfile";
    argv[n++] = fx_path(&fx, "ca.crt");
    argv[n++] = "-verify_return_error";
    argv[n++] = "-verify_hostname";
    argv[n++] = "localhost";
    if (with_cert) {
        argv[n++] = "-cert";
        argv[n++] = fx_path(&fx, "good.crt");
        argv[n++] = "-key";
        argv[n++] = fx_path(&fx, "good.key");
    }
    argv[n] = NULL;
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int out = open(c->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(pipefd[0], 0);
        dup2(out, 1);
        dup2(out, 2);
        close(pipefd[1]);
        /* execvp's prototype predates const; it does not write argv. */
        char *const *av;
        const char **argvp = argv;
        memcpy(&av, &argvp, sizeof(av));
        execvp("openssl", av);
        _exit(127);
    }
    close(pipefd[0]);
    c->pid = pid;
    c->stdin_fd = pipefd[1];
}

static int
wait_child(child *c, int ms)
{
    int status = 0;
    int64_t deadline = mono_ms() + ms;
    while (mono_ms() < deadline) {
        if (waitpid(c->pid, &status, WNOHANG) == c->pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
        pump(1);
    }
    kill(c->pid, SIGKILL);
    waitpid(c->pid, &status, 0);
    return -1;
}

static char *
slurp(const char *path)
{
    static char buf[65536];
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void
s_client_interop(void **state)
{
    (void)state;
    log_reset();
    child c;
    int opened = srv_rec.opened;
    spawn_s_client(&c, true);
    PUMP_UNTIL(srv_rec.opened > opened, 10000);
    assert_int_equal(srv_rec.opened, opened + 1);
    assert_string_equal(srv_rec.identity.subject, "CN=device-1");
    /* Closing s_client's stdin makes it send close_notify and exit. */
    close(c.stdin_fd);
    int status = wait_child(&c, 10000);
    PUMP_UNTIL(roost_channel_session_count(server) == 1, 5000);
    char *out = slurp(c.out_path);
    if (status != 0 || strstr(out, "TLSv1.3") == NULL ||
        strstr(out, "Verify return code: 0 (ok)") == NULL) {
        print_error("s_client (status %d):\n%s\n", status, out);
        fail();
    }
    srv_rec.closed--;
    wait_baseline();
    check_good_session();
}

static void
s_client_without_certificate_fails(void **state)
{
    (void)state;
    log_reset();
    child c;
    int opened = srv_rec.opened;
    spawn_s_client(&c, false);
    wait_for_log("peer did not return a certificate", 10000);
    int status = wait_child(&c, 10000);
    close(c.stdin_fd);
    char *out = slurp(c.out_path);
    assert_int_equal(srv_rec.opened, opened);
    if (status == 0 && strstr(out, "certificate required") == NULL) {
        print_error("s_client (status %d):\n%s\n", status, out);
        fail();
    }
    assert_non_null(strstr(out, "certificate required"));
    wait_baseline();
    check_good_session();
}

static void
reconnects_after_server_restart(void **state)
{
    (void)state;
    /* The good client's session ends when the server closes it; the
     * connector comes back on its own (backoff 50..200 ms). */
    log_reset();
    int closed = good_rec.closed, opened = good_rec.opened;
    int srv_opened = srv_rec.opened;
    /* Close the server's side of the good session. */
    assert_int_equal(roost_channel_close(server, good_srv_session), ROOST_OK);
    assert_int_equal(roost_channel_close(server, good_srv_session),
                     ROOST_ENOENT);
    PUMP_UNTIL(good_rec.opened > opened && srv_rec.opened > srv_opened, 10000);
    good_srv_session = srv_rec.session;
    assert_int_equal(good_rec.closed, closed + 1);
    assert_int_equal(good_rec.opened, opened + 1);
    assert_non_null(strstr(logbuf, "reconnecting to"));
    assert_int_equal(srv_rec.last_reason, ROOST_OK);
    srv_rec.closed--;
    good_rec.closed--;
    good_rec.opened--;
    PUMP_UNTIL(roost_channel_open_count(server) == 1, 5000);
    wait_baseline();
    check_good_session();
}

/* The coordinator dies (its socket goes away without a TLS goodbye) and
 * comes back on the same port: the connector notices and reconnects. */
static void
reconnects_after_server_dies(void **state)
{
    (void)state;
    log_reset();
    int closed = good_rec.closed, opened = good_rec.opened;
    roost_channel_destroy(server);
    server = NULL;
    int64_t deadline = mono_ms() + 10000;
    while (good_rec.closed == closed && mono_ms() < deadline)
        roost_channel_poll(good, 5);
    assert_int_equal(good_rec.closed, closed + 1);
    assert_int_equal(good_rec.last_reason, ROOST_ECLOSED);
    /* A new listener on the same endpoint. */
    roost_tls_ctx *sctx = fx_server_ctx(&fx);
    roost_channel_config cfg;
    roost_channel_config_init(&cfg);
    cfg.on_event = on_event;
    cfg.event_arg = &srv_rec;
    cfg.logger = (roost_logger){capture_log, NULL, ROOST_LOG_DEBUG};
    cfg.max_frame = MAX_FRAME;
    roost_errmsg em = {{0}};
    assert_int_equal(roost_channel_create(&server, &cfg, sctx, &em), ROOST_OK);
    roost_tls_ctx_destroy(sctx);
    srv_rec.ch = server;
    deadline = mono_ms() + 5000;
    int rc;
    while ((rc = roost_channel_listen(server, endpoint)) != ROOST_OK &&
           mono_ms() < deadline)
        roost_channel_poll(good, 10);
    assert_int_equal(rc, ROOST_OK);
    int srv_opened = srv_rec.opened;
    PUMP_UNTIL(good_rec.opened > opened && srv_rec.opened > srv_opened, 15000);
    assert_int_equal(good_rec.opened, opened + 1);
    good_srv_session = srv_rec.session;
    good_rec.closed--;
    good_rec.opened--;
    check_good_session();
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_session_identity_and_frames),
        cmocka_unit_test(unknown_ca),
        cmocka_unit_test(expired_certificate),
        cmocka_unit_test(revoked_certificate),
        cmocka_unit_test(no_client_certificate),
        cmocka_unit_test(plaintext_bytes),
        cmocka_unit_test(truncated_record),
        cmocka_unit_test(truncated_frame_header),
        cmocka_unit_test(garbage_after_handshake),
        cmocka_unit_test(oversize_frame),
        cmocka_unit_test(handshake_never_finishes),
        cmocka_unit_test(thousand_connections),
        cmocka_unit_test(max_sessions_refuses_extra_connections),
        cmocka_unit_test(ipv6_listen_and_connect),
        cmocka_unit_test(callback_closes_own_session),
        cmocka_unit_test(callback_closes_another_session),
        cmocka_unit_test(s_client_interop),
        cmocka_unit_test(s_client_without_certificate_fails),
        cmocka_unit_test(reconnects_after_server_restart),
        cmocka_unit_test(reconnects_after_server_dies),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
