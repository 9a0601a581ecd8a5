/*
 * bench_transport.c - the coordinator's transport, measured:
 *
 *   1. payload throughput: one listener thread receives 4 MiB frames over
 *      several TLS connections (and acknowledges each with a small frame),
 *      next to `openssl speed -evp aes-256-gcm` measured in the same run
 *      (in rounds that pair the two, see main);
 *   2. full handshakes per second (mutual certificates, ECDHE, P-256),
 *      both over the channel (TCP connect to OPENED) and as the server's
 *      CPU time per handshake over memory BIOs;
 *   3. memory per idle session: the listener process's RSS delta over N
 *      established, idle sessions.
 *
 * Clients run in a child process (this program re-executed with --child),
 * so the listener's CPU time and RSS are its own. Certificates are made
 * with the PKI functions in a temporary directory.
 *
 * usage: bench_transport [--seconds S] [--conns C] [--idle N] [--rounds R]
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "common/channel.h"
#include "common/pki.h"

#define FRAME_BYTES ((size_t)4 << 20)
#define IN_FLIGHT 2
#define MAX_ROUNDS 15

/* The median of n values (sorts them). */
static double
median(double *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double
thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long
rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void
die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_transport: %s: %s\n", what, detail);
    exit(1);
}

/* ---- PKI --------------------------------------------------------------- */

static char dir[64] = "/tmp/roost-bench-XXXXXX";

static const char *
path(const char *name)
{
    static char buf[16][128];
    static int next;
    char *p = buf[next++ % 16];
    snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
    return p;
}

static void
make_pki(void)
{
    if (mkdtemp(dir) == NULL)
        die("mkdtemp", strerror(errno));
    roost_errmsg em = {{0}};
    roost_pki_validity v = {-60, ROOST_PKI_DAY_S};
    if (roost_pki_init(path("ca.key"), path("ca.crt"), path("ca.crl"),
                       "Bench CA", 1, 1, &em) != 0 ||
        roost_pki_server(path("ca.key"), path("ca.crt"), path("srv.key"),
                         path("srv.crt"), "localhost", NULL, 0, &v, &em) != 0 ||
        roost_pki_request(path("cli.key"), path("cli.csr"), "bench-client",
                          &em) != 0 ||
        roost_pki_sign(path("ca.key"), path("ca.crt"), path("cli.csr"),
                       path("cli.crt"), &v, &em) != 0)
        die("pki", em.text);
}

static void
cleanup_pki(void)
{
    const char *names[] = {"ca.key",  "ca.crt",  "ca.crl",  "srv.key",
                           "srv.crt", "cli.key", "cli.csr", "cli.crt"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unlink(path(names[i]));
    rmdir(dir);
}

static roost_tls_ctx *
server_ctx(void)
{
    roost_tls_files f = {path("ca.crt"), path("srv.crt"), path("srv.key"),
                         path("ca.crl")};
    roost_errmsg em = {{0}};
    roost_tls_ctx *ctx;
    if (roost_tls_ctx_create_server(&ctx, &f, &em) != 0)
        die("server ctx", em.text);
    return ctx;
}

static roost_tls_ctx *
client_ctx(void)
{
    roost_tls_files f = {path("ca.crt"), path("cli.crt"), path("cli.key"),
                         NULL};
    roost_errmsg em = {{0}};
    roost_tls_ctx *ctx;
    if (roost_tls_ctx_create_client(&ctx, &f, &em) != 0)
        die("client ctx", em.text);
    return ctx;
}

/* ---- the client process ------------------------------------------------ */

typedef struct peer {
    roost_channel *ch;
    uint64_t session;
    int in_flight;
    bool opened;
    const uint8_t *payload;
    bool send_mode;
} peer;

static void
client_event(void *arg, const roost_channel_event *ev)
{
    peer *p = arg;
    if (ev->type == ROOST_CHANNEL_OPENED) {
        p->opened = true;
        p->session = ev->session;
    } else if (ev->type == ROOST_CHANNEL_FRAME) {
        p->in_flight--; /* an acknowledgement */
    } else {
        p->opened = false;
        p->in_flight = 0;
    }
}

/* Modes: "send" (C connections streaming 4 MiB frames), "idle" (N
 * connections that stay open), "handshake" (connect, open, drop, again). */
static _Noreturn void
child_main(const char *mode, const char *endpoint, int n)
{
    void *zctx = zmq_ctx_new();
    zmq_ctx_set(zctx, ZMQ_MAX_SOCKETS, n + 64);
    roost_tls_ctx *ctx = client_ctx();
    uint8_t *payload = NULL;
    if (strcmp(mode, "send") == 0) {
        payload = malloc(FRAME_BYTES);
        if (payload == NULL)
            die("malloc", "payload");
        for (size_t i = 0; i < FRAME_BYTES; i++)
            payload[i] = (uint8_t)(i * 2654435761u >> 24);
    }
    if (strcmp(mode, "handshake") == 0) {
        for (;;) {
            peer p = {0};
            roost_channel_config cfg;
            roost_channel_config_init(&cfg);
            cfg.on_event = client_event;
            cfg.event_arg = &p;
            cfg.zmq_ctx = zctx;
            roost_errmsg em = {{0}};
            if (roost_channel_create(&p.ch, &cfg, ctx, &em) != 0)
                die("client channel", em.text);
            roost_channel_connect(p.ch, endpoint, "localhost");
            while (!p.opened)
                roost_channel_poll(p.ch, 5);
            roost_channel_destroy(p.ch);
        }
    }
    peer *peers = calloc((size_t)n, sizeof(peer));
    struct pollfd *fds = calloc((size_t)n, sizeof(struct pollfd));
    if (peers == NULL || fds == NULL)
        die("calloc", "peers");
    for (int i = 0; i < n; i++) {
        roost_channel_config cfg;
        roost_channel_config_init(&cfg);
        cfg.on_event = client_event;
        cfg.event_arg = &peers[i];
        cfg.zmq_ctx = zctx;
        cfg.max_frame = (uint32_t)FRAME_BYTES;
        cfg.max_out_buffered = 3 * FRAME_BYTES;
        cfg.idle_timeout_ms = -1;
        roost_errmsg em = {{0}};
        if (roost_channel_create(&peers[i].ch, &cfg, ctx, &em) != 0)
            die("client channel", em.text);
        peers[i].payload = payload;
        roost_channel_connect(peers[i].ch, endpoint, "localhost");
        roost_channel_fd(peers[i].ch, &fds[i].fd);
        fds[i].events = POLLIN;
    }
    for (;;) {
        poll(fds, (nfds_t)n, 2);
        for (int i = 0; i < n; i++) {
            peer *p = &peers[i];
            roost_channel_poll(p->ch, 0);
            while (payload != NULL && p->opened && p->in_flight < IN_FLIGHT &&
                   roost_channel_send(p->ch, p->session, payload,
                                      FRAME_BYTES) == ROOST_OK)
                p->in_flight++;
        }
    }
}

static pid_t
spawn_child(const char *self, const char *mode, const char *endpoint, int n)
{
    char nbuf[16];
    snprintf(nbuf, sizeof(nbuf), "%d", n);
    pid_t pid = fork();
    if (pid < 0)
        die("fork", strerror(errno));
    if (pid == 0) {
        execl(self, self, "--child", mode, endpoint, nbuf, dir, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void
stop_child(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* ---- the listener ------------------------------------------------------ */

typedef struct server_state {
    roost_channel *ch;
    uint64_t frames, bytes, opened;
    double first_byte_s;
} server_state;

static void
server_event(void *arg, const roost_channel_event *ev)
{
    server_state *s = arg;
    if (ev->type == ROOST_CHANNEL_OPENED) {
        s->opened++;
    } else if (ev->type == ROOST_CHANNEL_FRAME) {
        s->frames++;
        s->bytes += ev->len;
        roost_channel_send(s->ch, ev->session, "ack", 3);
    }
}

/* openssl speed -evp aes-256-gcm: bytes/s on 16 KiB blocks (-bytes 16384
 * runs that block size alone: the same figure as the last column of the
 * full table, in a sixth of the time). */
static double
openssl_speed(int seconds)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd),
             "openssl speed -seconds %d -bytes 16384 -evp aes-256-gcm "
             "2>/dev/null",
             seconds);
    FILE *f = popen(cmd, "r");
    if (f == NULL)
        return 0;
    char line[512];
    double best = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "AES-256-GCM", 11) != 0)
            continue;
        char *p = line + 11;
        double v;
        int used;
        while (sscanf(p, " %lfk%n", &v, &used) == 1) {
            best = v * 1000.0; /* the last column: 16384-byte blocks */
            p += used;
        }
    }
    pclose(f);
    return best;
}

static void
pump_for(roost_channel *ch, double seconds)
{
    double end = now_s() + seconds;
    while (now_s() < end)
        roost_channel_poll(ch, 10);
}

/* Server CPU per full handshake, over memory BIOs (no TCP, no ZeroMQ). */
static void
handshake_cpu(roost_tls_ctx *sctx, roost_tls_ctx *cctx, int count,
              double *server_s, double *pair_per_s)
{
    double server = 0, t0 = now_s();
    for (int i = 0; i < count; i++) {
        roost_tls *s, *c;
        if (roost_tls_create(&s, sctx, NULL, 0, NULL) != 0 ||
            roost_tls_create(&c, cctx, "localhost", 0, NULL) != 0)
            die("tls", "create");
        int src = ROOST_EAGAIN, crc = ROOST_EAGAIN;
        for (int round = 0; round < 6 && (src != 0 || crc != 0); round++) {
            if (crc != 0)
                crc = roost_tls_handshake(c, NULL);
            size_t n;
            const uint8_t *p = roost_tls_out_peek(c, &n);
            double a = thread_cpu_s();
            if (n > 0) {
                roost_tls_feed(s, p, n, NULL);
                roost_tls_out_consume(c, n);
            }
            if (src != 0)
                src = roost_tls_handshake(s, NULL);
            server += thread_cpu_s() - a;
            p = roost_tls_out_peek(s, &n);
            if (n > 0) {
                roost_tls_feed(c, p, n, NULL);
                roost_tls_out_consume(s, n);
            }
        }
        if (src != 0 || crc != 0)
            die("handshake", "did not complete");
        roost_tls_destroy(s);
        roost_tls_destroy(c);
    }
    *server_s = server / count;
    *pair_per_s = count / (now_s() - t0);
}

/* The listener's receive path without sockets: ciphertext of n_frames
 * 4 MiB frames, made beforehand by a real client session, injected in
 * 8 KiB pieces (what ZeroMQ's TCP reads deliver) into a detached listener
 * channel. Measures decrypt + deframe + delivery on one core. */
typedef struct detached_sink {
    roost_tls *client;
} detached_sink;

static void
detached_out(void *arg, const uint8_t *rid, size_t rid_len, const void *data,
             size_t len)
{
    detached_sink *d = arg;
    (void)rid;
    (void)rid_len;
    if (len > 0)
        roost_tls_feed(d->client, data, len, NULL);
}

static double
detached_receive(roost_tls_ctx *sctx, roost_tls_ctx *cctx, int n_frames,
                 double *cpu_out)
{
    detached_sink d = {NULL};
    server_state st = {0};
    roost_channel_config cfg;
    roost_channel_config_init(&cfg);
    cfg.on_event = server_event;
    cfg.event_arg = &st;
    cfg.max_frame = (uint32_t)FRAME_BYTES;
    roost_errmsg em = {{0}};
    if (roost_channel_create_detached(&st.ch, &cfg, sctx, detached_out, &d,
                                      &em) != 0)
        die("detached channel", em.text);
    if (roost_tls_create(&d.client, cctx, "localhost", 0, &em) != 0)
        die("client tls", em.text);
    static const uint8_t rid[5] = {0, 0, 0, 0, 7};
    roost_channel_inject(st.ch, rid, sizeof(rid), "", 0);
    for (int i = 0; i < 8 && st.opened == 0; i++) {
        roost_tls_handshake(d.client, NULL);
        size_t n;
        const uint8_t *p = roost_tls_out_peek(d.client, &n);
        if (n > 0) {
            uint8_t *copy = malloc(n);
            memcpy(copy, p, n);
            roost_tls_out_consume(d.client, n);
            roost_channel_inject(st.ch, rid, sizeof(rid), copy, n);
            free(copy);
        }
    }
    if (st.opened != 1)
        die("detached", "handshake did not complete");
    /* Encrypt the frames up front. */
    uint8_t *payload = malloc(FRAME_BYTES);
    size_t cap = (size_t)n_frames * (FRAME_BYTES + FRAME_BYTES / 64);
    uint8_t *wire = malloc(cap);
    if (payload == NULL || wire == NULL)
        die("malloc", "detached");
    memset(payload, 0x5a, FRAME_BYTES);
    size_t used = 0;
    uint8_t hdr[4] = {(uint8_t)(FRAME_BYTES >> 24),
                      (uint8_t)(FRAME_BYTES >> 16), (uint8_t)(FRAME_BYTES >> 8),
                      (uint8_t)FRAME_BYTES};
    for (int f = 0; f < n_frames; f++) {
        roost_tls_write(d.client, hdr, 4, NULL);
        for (size_t off = 0; off < FRAME_BYTES; off += 262144) {
            roost_tls_write(d.client, payload + off, 262144, NULL);
            size_t n;
            const uint8_t *p = roost_tls_out_peek(d.client, &n);
            if (used + n > cap)
                die("detached", "ciphertext buffer too small");
            memcpy(wire + used, p, n);
            used += n;
            roost_tls_out_consume(d.client, n);
        }
    }
    double c0 = thread_cpu_s();
    for (size_t off = 0; off < used; off += 8192) {
        size_t n = used - off < 8192 ? used - off : 8192;
        roost_channel_inject(st.ch, rid, sizeof(rid), wire + off, n);
    }
    double cpu = thread_cpu_s() - c0;
    if (st.frames != (uint64_t)n_frames)
        die("detached", "frames lost");
    *cpu_out = cpu;
    roost_channel_destroy(st.ch);
    roost_tls_destroy(d.client);
    free(payload);
    free(wire);
    return (double)st.bytes / cpu;
}

/* Heap in use per idle session for the TLS session and the channel's
 * session record alone (a detached listener, so no ZeroMQ state): the
 * part of the idle-session cost that Roost and OpenSSL own. */
static double
detached_idle_kib(roost_tls_ctx *sctx, roost_tls_ctx *cctx, int n)
{
    detached_sink d = {NULL};
    server_state st = {0};
    roost_channel_config cfg;
    roost_channel_config_init(&cfg);
    cfg.on_event = server_event;
    cfg.event_arg = &st;
    cfg.max_sessions = (size_t)n + 1;
    roost_errmsg em = {{0}};
    if (roost_channel_create_detached(&st.ch, &cfg, sctx, detached_out, &d,
                                      &em) != 0)
        die("detached channel", em.text);
    size_t base = 0;
    for (int i = 0; i <= n; i++) {
        if (i == 1) /* after one warm-up session (one-time caches) */
            base = mallinfo2().uordblks;
        uint8_t rid[5] = {1, (uint8_t)(i >> 24), (uint8_t)(i >> 16),
                          (uint8_t)(i >> 8), (uint8_t)i};
        roost_channel_inject(st.ch, rid, sizeof(rid), "", 0);
        if (roost_tls_create(&d.client, cctx, "localhost", 0, &em) != 0)
            die("client tls", em.text);
        uint64_t opened = st.opened;
        for (int k = 0; k < 8 && st.opened == opened; k++) {
            roost_tls_handshake(d.client, NULL);
            size_t len;
            const uint8_t *p = roost_tls_out_peek(d.client, &len);
            if (len > 0) {
                uint8_t *copy = malloc(len);
                memcpy(copy, p, len);
                roost_tls_out_consume(d.client, len);
                roost_channel_inject(st.ch, rid, sizeof(rid), copy, len);
                free(copy);
            }
        }
        roost_tls_destroy(d.client);
        d.client = NULL;
    }
    size_t used = mallinfo2().uordblks;
    if (st.opened != (uint64_t)n + 1)
        die("detached idle", "handshakes failed");
    roost_channel_destroy(st.ch);
    return used > base ? (double)(used - base) / n / 1024.0 : 0.0;
}

int
main(int argc, char **argv)
{
    if (argc >= 6 && strcmp(argv[1], "--child") == 0) {
        snprintf(dir, sizeof(dir), "%s", argv[5]);
        child_main(argv[2], argv[3], atoi(argv[4]));
    }
    int seconds = 5, conns = 4, idle = 1000, rounds = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--seconds") == 0)
            seconds = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--rounds") == 0)
            rounds = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--conns") == 0)
            conns = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--idle") == 0)
            idle = atoi(argv[i + 1]);
    }
    if (seconds < 1 || conns < 1 || idle < 1 || rounds < 1 ||
        rounds > MAX_ROUNDS)
        die("usage", "bench_transport [--seconds S] [--conns C] [--idle N] "
                     "[--rounds R (1 to 15)]");
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (sl <= 0)
        die("readlink", strerror(errno));
    self[sl] = '\0';
    make_pki();

    printf("bench_transport: %d s per phase (throughput: %d rounds), %d "
           "sender connections, %d idle sessions, %ld CPUs\n",
           seconds, rounds, conns, idle, sysconf(_SC_NPROCESSORS_ONLN));
    double aes = openssl_speed(seconds > 3 ? 3 : seconds);
    printf("openssl speed -evp aes-256-gcm (16 KiB blocks): %.2f GB/s\n",
           aes / 1e9);

    server_state st = {0};
    roost_channel_config cfg;
    roost_channel_config_init(&cfg);
    cfg.on_event = server_event;
    cfg.event_arg = &st;
    cfg.max_frame = (uint32_t)FRAME_BYTES;
    cfg.max_sessions = (size_t)idle + 64;
    cfg.idle_timeout_ms = -1;
    roost_tls_ctx *sctx = server_ctx();
    roost_errmsg em = {{0}};
    if (roost_channel_create(&st.ch, &cfg, sctx, &em) != 0)
        die("server channel", em.text);
    if (roost_channel_listen(st.ch, "tcp://127.0.0.1:*") != 0)
        die("listen", roost_channel_errmsg(st.ch));
    char endpoint[128];
    roost_channel_endpoint(st.ch, endpoint, sizeof(endpoint));

    /* 1. idle sessions, first, so that memory freed by the other phases
     * cannot hide the sessions' growth */
    while (roost_channel_session_count(st.ch) > 0)
        roost_channel_poll(st.ch, 10);
    long rss0 = rss_kib();
    uint64_t o0 = st.opened;
    pid_t pid = spawn_child(self, "idle", endpoint, idle);
    double t0 = now_s();
    while (st.opened - o0 < (uint64_t)idle && now_s() - t0 < 120)
        roost_channel_poll(st.ch, 10);
    pump_for(st.ch, 0.5);
    long rss1 = rss_kib();
    size_t open = roost_channel_open_count(st.ch);
    printf("idle sessions: %zu open; listener RSS %ld -> %ld KiB: %.1f KiB "
           "per idle session\n",
           open, rss0, rss1, open ? (double)(rss1 - rss0) / (double)open : 0);
    stop_child(pid);
    pump_for(st.ch, 0.5);
    {
        roost_tls_ctx *cc = client_ctx();
        printf("  of which TLS session + session record (heap in use, no "
               "ZeroMQ): %.1f KiB per idle session\n",
               detached_idle_kib(sctx, cc, idle));
        roost_tls_ctx_destroy(cc);
    }

    /* 2. throughput: the receive path alone, then over TCP */
    {
        roost_tls_ctx *cc = client_ctx();
        double cpu_d = 0;
        double best = 0;
        for (int rep = 0; rep < 3; rep++) {
            double r = detached_receive(sctx, cc, 16, &cpu_d);
            if (r > best)
                best = r;
        }
        roost_tls_ctx_destroy(cc);
        printf("receive path without sockets (8 KiB pieces -> TLS -> 4 MiB "
               "frames), best of 3: %.2f GB/s per core",
               best / 1e9);
        if (aes > 0)
            printf(", ratio to openssl speed %.2f", best / aes);
        printf("\n");
    }

    /* Over TCP, in rounds: `openssl speed` for 1 s (the senders stall
     * meanwhile, as nobody reads), then the listener for S seconds. Each
     * round's ratio pairs two figures taken under the same machine load,
     * which on a shared machine moves both by tens of percent from one
     * minute to the next; the median round is reported. */
    pid = spawn_child(self, "send", endpoint, conns);
    while (st.frames < (uint64_t)conns)
        roost_channel_poll(st.ch, 10); /* warm-up: one frame per sender */
    double r_ratio[MAX_ROUNDS], r_aes[MAX_ROUNDS], r_cpu[MAX_ROUNDS],
        r_wall[MAX_ROUNDS], r_busy[MAX_ROUNDS];
    uint64_t frames_total = 0;
    double wall_total = 0;
    for (int r = 0; r < rounds; r++) {
        r_aes[r] = openssl_speed(1);
        uint64_t f0 = st.frames, b0 = st.bytes;
        t0 = now_s();
        double c0 = thread_cpu_s();
        pump_for(st.ch, seconds);
        double wall = now_s() - t0, cpu = thread_cpu_s() - c0;
        uint64_t bytes = st.bytes - b0;
        frames_total += st.frames - f0;
        wall_total += wall;
        r_cpu[r] = (double)bytes / cpu;
        r_wall[r] = (double)bytes / wall;
        r_busy[r] = 100.0 * cpu / wall;
        r_ratio[r] = r_aes[r] > 0 ? r_cpu[r] / r_aes[r] : 0;
        printf("  round %d: openssl speed %.2f GB/s; payload %.2f GB/s per "
               "listener CPU second, %.2f GB/s wall clock (listener busy "
               "%.0f%%); ratio %.2f\n",
               r + 1, r_aes[r] / 1e9, r_cpu[r] / 1e9, r_wall[r] / 1e9,
               r_busy[r], r_ratio[r]);
    }
    stop_child(pid);
    pump_for(st.ch, 0.3);
    printf("throughput: %" PRIu64 " frames of 4 MiB in %.2f s over %d "
           "connections, %d rounds; medians:\n",
           frames_total, wall_total, conns, rounds);
    printf("  payload received: %.2f GB/s wall clock (listener thread busy "
           "%.0f%%)\n",
           median(r_wall, rounds) / 1e9, median(r_busy, rounds));
    printf("  payload per listener-thread CPU second: %.2f GB/s\n",
           median(r_cpu, rounds) / 1e9);
    printf("  openssl speed -evp aes-256-gcm: %.2f GB/s\n",
           median(r_aes, rounds) / 1e9);
    printf("  ratio to openssl speed aes-256-gcm (per CPU second, paired "
           "per round): %.2f\n",
           median(r_ratio, rounds));

    /* 3. handshakes */
    roost_tls_ctx *cctx = client_ctx();
    double hs_cpu, pair_rate;
    handshake_cpu(sctx, cctx, 200, &hs_cpu, &pair_rate);
    printf("handshake over memory BIOs: server CPU %.3f ms per full "
           "handshake (%.0f/s per core); client+server pair %.0f/s\n",
           hs_cpu * 1e3, 1.0 / hs_cpu, pair_rate);
    o0 = st.opened;
    pid = spawn_child(self, "handshake", endpoint, 1);
    t0 = now_s();
    double c0 = thread_cpu_s();
    pump_for(st.ch, seconds);
    double wall = now_s() - t0;
    double cpu = thread_cpu_s() - c0;
    stop_child(pid);
    uint64_t hs = st.opened - o0;
    printf("handshake over TCP + ZeroMQ, one client process connecting "
           "serially: %.0f/s (listener CPU %.3f ms each)\n",
           (double)hs / wall, hs ? cpu * 1e3 / (double)hs : 0.0);
    pump_for(st.ch, 0.5);

    roost_channel_destroy(st.ch);
    roost_tls_ctx_destroy(sctx);
    roost_tls_ctx_destroy(cctx);
    cleanup_pki();
    return 0;
}
