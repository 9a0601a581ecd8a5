/*
 * channel.c - TLS sessions over a ZeroMQ ZMQ_STREAM socket (see channel.h).
 *
 * Data structures. Every session lives in two hash tables (by ZeroMQ
 * routing id, for input; by session id, for the API) and in exactly one of
 * two lists: `live` (handshaking or open) or `closing` (ended, waiting for
 * its last bytes to leave and for the disconnect). A session is freed only
 * by reap(), at the end of a poll step, so no pointer the poll loop or an
 * event callback holds can dangle: ending a session only moves it to the
 * closing list.
 *
 * Invariants:
 *  - count = live + closing sessions <= max_sessions (+1 while refusing);
 *  - a session's TLS input buffer holds <= max_in_buffered bytes and its
 *    unsent output <= max_out_buffered (+ one flush chunk);
 *  - a frame's body buffer is reserved only after its length passed the
 *    max_frame check; body buffers come from a small per-channel pool, so
 *    idle sessions hold none and steady traffic does not call malloc;
 *  - the body buffer of a frame being delivered (s->delivering) goes back
 *    only after its FRAME callback returned, even if the callback ended
 *    the session meanwhile (see deliver_frame);
 *  - frames of STREAM_FRAME bytes or more pass, a record at a time,
 *    through one staging buffer per channel (RECORD_PLAIN bytes) on
 *    their way into the frame buffer (see read_body).
 *
 * Input is batched per poll step: data messages for known sessions are
 * held (up to BATCH_MSGS, still owned by ZeroMQ's zmq_msg_t) and then lent
 * to each session's TLS in one step; any other message (a connect or
 * disconnect notice) first runs the held batch, so per session the order
 * of data and notices is kept.
 *
 * Why a "recently closed" ring: ZeroMQ reports connect and disconnect with
 * the same empty message. After we close a connection ourselves, a
 * disconnect notice for it may still be queued; without remembering the
 * routing id we would take that notice for a new connection.
 *
 * Locking: none; a channel is used by one thread at a time.
 */
#include "common/channel.h"

#include <zmq.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/rng.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#define HAVE_STREAM_STORES 1
#else
#define HAVE_STREAM_STORES 0
#endif

#define DEFAULT_MAX_SESSIONS 1024
#define DEFAULT_MAX_FRAME ((uint32_t)16 << 20)
#define DEFAULT_HANDSHAKE_MS 10000
#define DEFAULT_IDLE_MS 600000
#define DEFAULT_IN_CAP ((size_t)256 << 10)
#define DEFAULT_RECONNECT_MIN_MS 100
#define DEFAULT_RECONNECT_MAX_MS 30000
#define DEFAULT_CONNECT_MS 10000
#define RID_CAP 255
#define RING_SIZE 256
#define RING_RID_CAP 16
#define POOL_KEEP 8
#define LINGER_MS 50
#define RECV_BUDGET 4096
/* Data messages held per poll step before TLS processes them (see
 * batch_run). ZeroMQ hands over a TCP stream in messages of at most 8 KiB
 * (libzmq's in_batch_size, settable only in draft builds), round-robin
 * across connections; processing each on its own costs a failed TLS read
 * and the bookkeeping around it per 8 KiB, which lending a session all
 * its held messages at once saves. 32 messages are at most 256 KiB. */
#define BATCH_MSGS 32
#define SEND_SLICE ((size_t)256 << 10)
#define FIRST_RECORD 16384
#define RECORD_PLAIN 16384 /* TLS's largest record payload */
/* Frames at least this large keep OpenSSL's record buffers while they
 * arrive (see roost_tls_keep_buffers). */
#define BIG_FRAME ((size_t)65536)
/* Frames at least this large (the size of a core's L2 cache on the
 * project's machine kind) are written into their buffer with streaming
 * stores (see read_body). */
#define STREAM_FRAME ((size_t)1 << 20)

enum { S_HANDSHAKE, S_OPEN, S_CLOSING };

typedef struct session {
    uint64_t id;
    struct session *next_rid, *next_id; /* hash chains */
    struct session *prev, *next;        /* live or closing list */
    roost_tls *tls;
    int state;
    bool opened;     /* OPENED was fired */
    bool peer_gone;  /* ZeroMQ reported the disconnect */
    bool want_flush; /* output waits for the socket */
    bool delivering; /* a FRAME callback is reading body (deliver_frame) */
    int64_t created_ms, last_rx_ms, close_at_ms;
    roost_tls_identity identity;
    uint8_t hdr[4];
    size_t hdr_have;
    bool in_body;
    bool stream; /* this frame's body is written with streaming stores */
    uint8_t *body;
    size_t body_len, body_have, body_cap;
    char peer[64];
    size_t rid_len;
    uint8_t rid[];
} session;

typedef struct sess_list {
    session *head;
    size_t n;
} sess_list;

struct roost_channel {
    roost_channel_config cfg;
    roost_allocator alloc_copy;
    const roost_allocator *alloc;
    roost_tls_ctx *tls;
    bool server;
    void *zctx;
    bool own_zctx;
    void *sock;
    session **by_rid, **by_id;
    size_t mask;
    sess_list live, closing;
    size_t open_count, n_flush;
    uint64_t last_id;
    int64_t next_scan_ms;
    struct {
        uint8_t len;
        uint8_t rid[RING_RID_CAP];
    } ring[RING_SIZE];
    size_t ring_pos;
    struct {
        uint8_t *p;
        size_t cap;
    } pool[POOL_KEEP];
    size_t npool;
    /* One record's plaintext on its way to a streamed frame body
     * (RECORD_PLAIN bytes, allocated on first use). */
    uint8_t *stage;
    /* connector */
    char *endpoint, *server_name;
    bool want_connect;  /* keep (re)connecting */
    bool zmq_connected; /* endpoint registered with zmq_connect */
    int64_t connect_at_ms, connect_deadline_ms;
    int backoff_ms;
    roost_rng *rng;
    roost_errmsg em;
    /* data messages received in this poll step, not yet processed */
    struct {
        struct session *s;
        zmq_msg_t msg;
    } batch[BATCH_MSGS];
    size_t n_batch;
    /* detached (fuzzing/testing): no socket; output goes to sink */
    roost_channel_sink_fn sink;
    void *sink_arg;
};

static int64_t
now_ms(void)
{
    return roost_clock_ms(CLOCK_MONOTONIC);
}

static size_t
hash_rid(const uint8_t *rid, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ rid[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

static size_t
hash_id(uint64_t id)
{
    return (size_t)(id * 0x9E3779B97F4A7C15ull >> 17);
}

static session *
find_rid(roost_channel *ch, const uint8_t *rid, size_t len)
{
    for (session *s = ch->by_rid[hash_rid(rid, len) & ch->mask]; s;
         s = s->next_rid)
        if (s->rid_len == len && memcmp(s->rid, rid, len) == 0)
            return s;
    return NULL;
}

static session *
find_id(roost_channel *ch, uint64_t id)
{
    for (session *s = ch->by_id[hash_id(id) & ch->mask]; s; s = s->next_id)
        if (s->id == id)
            return s;
    return NULL;
}

static void
list_push(sess_list *l, session *s)
{
    s->prev = NULL;
    s->next = l->head;
    if (l->head)
        l->head->prev = s;
    l->head = s;
    l->n++;
}

static void
list_remove(sess_list *l, session *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        l->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    l->n--;
}

static void
tables_remove(roost_channel *ch, session *s)
{
    session **pp = &ch->by_rid[hash_rid(s->rid, s->rid_len) & ch->mask];
    while (*pp != s)
        pp = &(*pp)->next_rid;
    *pp = s->next_rid;
    pp = &ch->by_id[hash_id(s->id) & ch->mask];
    while (*pp != s)
        pp = &(*pp)->next_id;
    *pp = s->next_id;
}

static void
ring_add(roost_channel *ch, const uint8_t *rid, size_t len)
{
    if (len > RING_RID_CAP)
        return;
    ch->ring[ch->ring_pos].len = (uint8_t)len;
    memcpy(ch->ring[ch->ring_pos].rid, rid, len);
    ch->ring_pos = (ch->ring_pos + 1) % RING_SIZE;
}

static bool
ring_take(roost_channel *ch, const uint8_t *rid, size_t len)
{
    for (size_t i = 0; i < RING_SIZE; i++) {
        if (ch->ring[i].len != 0 && ch->ring[i].len == len &&
            memcmp(ch->ring[i].rid, rid, len) == 0) {
            ch->ring[i].len = 0;
            return true;
        }
    }
    return false;
}

/* Frame buffers: take one of at least `need` bytes from the pool (or
 * allocate), give it back when the frame was delivered. */
static int
body_acquire(roost_channel *ch, session *s, size_t need)
{
    /* The pool is in release order; among the smallest that fit, take the
     * most recently released: the one most likely still in the cache. */
    size_t best = POOL_KEEP;
    for (size_t i = ch->npool; i-- > 0;)
        if (ch->pool[i].cap >= need &&
            (best == POOL_KEEP || ch->pool[i].cap < ch->pool[best].cap))
            best = i;
    if (best == POOL_KEEP && ch->npool > 0)
        best = ch->npool - 1; /* grow the last one */
    uint8_t *p = NULL;
    size_t cap = 0;
    if (best != POOL_KEEP) {
        p = ch->pool[best].p;
        cap = ch->pool[best].cap;
        memmove(&ch->pool[best], &ch->pool[best + 1],
                (ch->npool - best - 1) * sizeof(ch->pool[0]));
        ch->npool--;
    }
    if (cap < need) {
        /* A new frame's buffer: nothing in the old one to keep. */
        roost_alloc_free(ch->alloc, p);
        p = roost_alloc_malloc(ch->alloc, need);
        if (p == NULL)
            return ROOST_ENOMEM;
        cap = need;
    }
    s->body = p;
    s->body_cap = cap;
    return ROOST_OK;
}

static void
body_release(roost_channel *ch, session *s)
{
    if (s->body == NULL)
        return;
    if (ch->npool < POOL_KEEP) {
        ch->pool[ch->npool].p = s->body;
        ch->pool[ch->npool].cap = s->body_cap;
        ch->npool++;
    } else {
        roost_alloc_free(ch->alloc, s->body);
    }
    s->body = NULL;
    s->body_cap = 0;
}

static void
emit(roost_channel *ch, roost_channel_event *ev, session *s)
{
    if (ch->cfg.on_event == NULL)
        return;
    ev->session = s->id;
    ev->identity = &s->identity;
    ch->cfg.on_event(ch->cfg.event_arg, ev);
}

/* Send one message to the peer with routing id rid: data, or (len 0) the
 * empty frame that closes the connection. Returns 0 or an errno value. A
 * detached channel hands it to its sink instead. */
static int
wire_send(roost_channel *ch, const uint8_t *rid, size_t rid_len,
          const void *data, size_t len)
{
    if (ch->sock == NULL) {
        if (ch->sink != NULL)
            ch->sink(ch->sink_arg, rid, rid_len, data, len);
        return 0;
    }
    if (zmq_send(ch->sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(ch->sock, data, len, ZMQ_DONTWAIT) < 0)
        return errno;
    return 0;
}

/* Hand the session's pending ciphertext to ZeroMQ. ROOST_OK when all of it
 * left; ROOST_EAGAIN when the peer's pipe is full (kept for later). */
static int
flush(roost_channel *ch, session *s)
{
    size_t n;
    while (roost_tls_out_pending(s->tls) > 0) {
        const uint8_t *p = roost_tls_out_peek(s->tls, &n);
        int err = wire_send(ch, s->rid, s->rid_len, p, n);
        if (err != 0) {
            if (err == EAGAIN) {
                if (!s->want_flush)
                    ch->n_flush++;
                s->want_flush = true;
                return ROOST_EAGAIN;
            }
            /* EHOSTUNREACH: the connection is gone already. */
            roost_tls_out_consume(s->tls, n);
            break;
        }
        roost_tls_out_consume(s->tls, n);
    }
    if (s->want_flush)
        ch->n_flush--;
    s->want_flush = false;
    return ROOST_OK;
}

static const char *
who(const session *s)
{
    return s->opened ? s->identity.subject : "unauthenticated";
}

/*
 * End a session: log, fire CLOSED if it was open, flush what TLS queued
 * (an alert, a close_notify) and move it to the closing list. reap()
 * disconnects and frees it later.
 */
static void session_end(roost_channel *ch, session *s, int reason, int level,
                        const char *fmt, ...) ROOST_PRINTF(5, 6);

static void
session_end(roost_channel *ch, session *s, int reason, int level,
            const char *fmt, ...)
{
    if (s->state == S_CLOSING)
        return;
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    roost_log(&ch->cfg.logger, level,
              "channel: session %" PRIu64 " from %s (%s): %s: %s", s->id,
              s->peer, who(s), reason == ROOST_OK ? "closed" : "dropped",
              detail);
    bool was_open = s->opened;
    if (was_open)
        ch->open_count--;
    s->state = S_CLOSING;
    /* A session ended from inside its own FRAME callback (a close, or a
     * send that failed) keeps the payload the callback is reading;
     * read_frames gives the buffer back when the callback returns. */
    if (!s->delivering)
        body_release(ch, s);
    list_remove(&ch->live, s);
    list_push(&ch->closing, s);
    int64_t now = now_ms();
    s->close_at_ms = now;
    if (!s->peer_gone && roost_tls_out_pending(s->tls) > 0) {
        /* Give an alert or close_notify a moment to leave before the
         * connection is torn down (ZeroMQ drops queued bytes on close). */
        flush(ch, s);
        s->close_at_ms = now + LINGER_MS;
    }
    if (was_open) {
        roost_channel_event ev = {0};
        ev.type = ROOST_CHANNEL_CLOSED;
        ev.reason = reason;
        ev.detail = detail;
        emit(ch, &ev, s);
    }
}

static void
session_free(roost_channel *ch, session *s)
{
    body_release(ch, s);
    roost_tls_destroy(s->tls);
    roost_alloc_free(ch->alloc, s);
}

int
roost_backoff_step(roost_rng *rng, int *backoff_ms, int max_ms)
{
    uint64_t r = 0;
    int half = *backoff_ms / 2;
    if (half > 0 && roost_rng_below(rng, (uint64_t)half + 1, &r) != 0)
        r = (uint64_t)half;
    *backoff_ms = *backoff_ms > max_ms / 2 ? max_ms : *backoff_ms * 2;
    return half + (int)r;
}

static void
connector_schedule(roost_channel *ch, int64_t now)
{
    if (ch->zmq_connected) {
        zmq_disconnect(ch->sock, ch->endpoint);
        ch->zmq_connected = false;
    }
    int delay =
        roost_backoff_step(ch->rng, &ch->backoff_ms, ch->cfg.reconnect_max_ms);
    ch->connect_at_ms = now + delay;
    ch->connect_deadline_ms = 0;
    roost_log(&ch->cfg.logger, ROOST_LOG_INFO,
              "channel: reconnecting to %s in %d ms", ch->endpoint, delay);
}

/* Disconnect and free closing sessions whose linger passed. */
static void
reap(roost_channel *ch, bool all)
{
    int64_t now = now_ms();
    session *s = ch->closing.head;
    while (s != NULL) {
        session *next = s->next;
        if (all || s->peer_gone || now >= s->close_at_ms) {
            if (!s->peer_gone) {
                /* An empty frame after the routing id closes the TCP
                 * connection. */
                wire_send(ch, s->rid, s->rid_len, "", 0);
                ring_add(ch, s->rid, s->rid_len);
            }
            if (s->want_flush)
                ch->n_flush--;
            list_remove(&ch->closing, s);
            tables_remove(ch, s);
            session_free(ch, s);
            if (!ch->server && !all) {
                if (ch->want_connect) {
                    connector_schedule(ch, now);
                } else if (ch->zmq_connected) {
                    zmq_disconnect(ch->sock, ch->endpoint);
                    ch->zmq_connected = false;
                }
            }
        }
        s = next;
    }
}

static void
session_open(roost_channel *ch, session *s)
{
    s->state = S_OPEN;
    s->opened = true;
    ch->open_count++;
    if (roost_tls_peer_identity(s->tls, &s->identity) != ROOST_OK) {
        session_end(ch, s, ROOST_EAUTH, ROOST_LOG_WARN,
                    "no usable peer certificate");
        return;
    }
    roost_log(&ch->cfg.logger, ROOST_LOG_INFO,
              "channel: session %" PRIu64 " from %s opened: %s (sha256 %s)",
              s->id, s->peer, s->identity.subject, s->identity.fingerprint_hex);
    if (!ch->server) {
        ch->backoff_ms = ch->cfg.reconnect_min_ms;
        ch->connect_deadline_ms = 0;
    }
    roost_channel_event ev = {0};
    ev.type = ROOST_CHANNEL_OPENED;
    emit(ch, &ev, s);
}

/* Fire FRAME. The payload must stay valid for the whole callback, which
 * may end this very session (roost_channel_close, or a failed
 * roost_channel_send); ending a session normally gives its frame buffer
 * back at once, and with the pool full that frees it. So while the
 * callback runs the session is marked as delivering and session_end keeps
 * its buffer; the caller releases it afterwards, whatever the session's
 * state. */
static void
deliver_frame(roost_channel *ch, session *s, const uint8_t *data, size_t len)
{
    roost_channel_event ev = {0};
    ev.type = ROOST_CHANNEL_FRAME;
    ev.data = data;
    ev.len = len;
    s->delivering = true;
    emit(ch, &ev, s);
    s->delivering = false;
}

/* Ask the CPU to fetch, for writing, the part of the frame buffer that
 * the next TLS read fills (at most one record, 16 KiB). OpenSSL decrypts
 * a record in its own buffer before copying it out, so the cache lines of
 * a frame buffer that went cold (4 MiB frames from several peers outgrow
 * the caches) arrive during the decryption instead of stalling the copy
 * (perf: memmove fell from 31 % to 19 % of the listener's samples, 7 %
 * went to issuing the prefetches; +9 to +13 % payload per listener CPU
 * second in most A/B runs on the shared machine, no clear change in some). */
static void
prefetch_body(const session *s)
{
#if defined(__GNUC__) || defined(__clang__)
    size_t ahead = s->body_len - s->body_have;
    if (ahead > RECORD_PLAIN)
        ahead = RECORD_PLAIN;
    for (size_t off = 0; off < ahead; off += 64)
        __builtin_prefetch(s->body + s->body_have + off, 1, 3);
#else
    (void)s;
#endif
}

#if HAVE_STREAM_STORES
/* Copy n bytes with non-temporal stores for the whole 64-byte lines of
 * dst (ordinary stores for the partial lines at either end, so no line is
 * written both ways). The caller fences before anyone reads dst. */
static void
stream_copy(uint8_t *dst, const uint8_t *src, size_t n)
{
    size_t head = (size_t)(-(uintptr_t)dst & 63);
    if (head > n)
        head = n;
    memcpy(dst, src, head);
    dst += head;
    src += head;
    n -= head;
    for (; n >= 64; dst += 64, src += 64, n -= 64) {
        const __m128i *in = (const __m128i *)(const void *)src;
        __m128i *out = (__m128i *)(void *)dst;
        __m128i a = _mm_loadu_si128(in), b = _mm_loadu_si128(in + 1);
        __m128i c = _mm_loadu_si128(in + 2), d = _mm_loadu_si128(in + 3);
        _mm_stream_si128(out, a);
        _mm_stream_si128(out + 1, b);
        _mm_stream_si128(out + 2, c);
        _mm_stream_si128(out + 3, d);
    }
    memcpy(dst, src, n);
}
#endif

/*
 * Read the next part of a frame body: at most one TLS record's plaintext.
 *
 * OpenSSL decrypts a record in its own buffer and then copies the
 * plaintext out. For frames larger than a core's L2 cache that copy's
 * destination is cold: with several peers sending large frames, the
 * lines of a frame buffer were last written several frames ago, so each
 * one is first read from memory (read-for-ownership) only to be
 * overwritten, and the start of the frame has left the cache again by the
 * time its end arrives. Such frames (s->stream) take each record into a
 * one-record staging buffer that stays in the cache, and copy it on with
 * non-temporal stores, which write whole lines without reading them.
 * bench_transport, 4 MiB frames from 4 peers: +10 % payload per listener
 * CPU second (17 of 19 paired rounds), and +6 % (19 of 19) when the
 * listener also reads every frame in full, as a consumer that decodes it
 * would. Smaller frames go straight into the frame buffer, after a
 * prefetch, where their consumer finds them in the cache.
 */
static int
read_body(roost_channel *ch, session *s, size_t *got, roost_errmsg *em)
{
    size_t want = s->body_len - s->body_have;
#if HAVE_STREAM_STORES
    if (s->stream) {
        if (want > RECORD_PLAIN)
            want = RECORD_PLAIN;
        int rc = roost_tls_read(s->tls, ch->stage, want, got, em);
        if (rc == ROOST_OK)
            stream_copy(s->body + s->body_have, ch->stage, *got);
        return rc;
    }
#else
    (void)ch;
#endif
    prefetch_body(s);
    return roost_tls_read(s->tls, s->body + s->body_have, want, got, em);
}

/* Decrypt and deframe everything buffered for an open session. */
static void
read_frames(roost_channel *ch, session *s)
{
    roost_errmsg em;
    while (s->state == S_OPEN) {
        size_t got = 0;
        int rc;
        if (!s->in_body) {
            rc = roost_tls_read(s->tls, s->hdr + s->hdr_have,
                                sizeof(s->hdr) - s->hdr_have, &got, &em);
            if (rc != ROOST_OK)
                goto fail;
            s->hdr_have += got;
            if (s->hdr_have < sizeof(s->hdr))
                continue;
            uint32_t len = (uint32_t)s->hdr[0] << 24 |
                           (uint32_t)s->hdr[1] << 16 |
                           (uint32_t)s->hdr[2] << 8 | s->hdr[3];
            s->hdr_have = 0;
            if (len > ch->cfg.max_frame) {
                session_end(ch, s, ROOST_ETOOBIG, ROOST_LOG_WARN,
                            "frame of %" PRIu32 " bytes exceeds the %" PRIu32
                            "-byte limit",
                            len, ch->cfg.max_frame);
                return;
            }
            if (len == 0) {
                deliver_frame(ch, s, (const uint8_t *)"", 0);
                continue;
            }
            if (body_acquire(ch, s, len) != ROOST_OK) {
                session_end(ch, s, ROOST_ENOMEM, ROOST_LOG_ERROR,
                            "no memory for a %" PRIu32 "-byte frame", len);
                return;
            }
            s->in_body = true;
            s->body_len = len;
            s->body_have = 0;
            if (len >= BIG_FRAME)
                roost_tls_keep_buffers(s->tls, true);
            s->stream = false;
            if (HAVE_STREAM_STORES && len >= STREAM_FRAME) {
                /* Without a staging buffer, the frame takes the plain
                 * path. */
                if (ch->stage == NULL)
                    ch->stage = roost_alloc_malloc(ch->alloc, RECORD_PLAIN);
                s->stream = ch->stage != NULL;
            }
            continue;
        }
        rc = read_body(ch, s, &got, &em);
        if (rc != ROOST_OK)
            goto fail;
        s->body_have += got;
        if (s->body_have == s->body_len) {
#if HAVE_STREAM_STORES
            /* Streaming stores are weakly ordered: make them visible
             * before the frame is handed on (perhaps to another
             * thread). */
            if (s->stream)
                _mm_sfence();
#endif
            s->in_body = false;
            if (s->body_len >= BIG_FRAME)
                roost_tls_keep_buffers(s->tls, false);
            deliver_frame(ch, s, s->body, s->body_len);
            /* Also when the callback ended the session: session_end
             * left the buffer to us. */
            body_release(ch, s);
        }
        continue;
    fail:
        if (rc == ROOST_EAGAIN)
            return;
        if (rc == ROOST_ECLOSED)
            session_end(ch, s, ROOST_ECLOSED, ROOST_LOG_INFO,
                        "peer sent close_notify");
        else
            session_end(ch, s, rc, ROOST_LOG_WARN, "%s", em.text);
        return;
    }
}

static void process_input(roost_channel *ch, session *s);

/* Ciphertext for a session: n pieces that continue one another. */
static void
on_bytes(roost_channel *ch, session *s, const roost_tls_piece *pieces, size_t n)
{
    roost_errmsg em;
    s->last_rx_ms = now_ms();
    /* Lend the messages to TLS for this step (no copy); whatever is left
     * of them afterwards (a partial record) is copied on release. */
    roost_tls_feed_borrowv(s->tls, pieces, n);
    process_input(ch, s);
    if (s->state == S_CLOSING) {
        roost_tls_feed_borrow(s->tls, NULL, 0); /* nothing more to read */
        return;
    }
    int rc = roost_tls_feed_release(s->tls, &em);
    if (rc != ROOST_OK)
        session_end(ch, s, rc, ROOST_LOG_WARN, "%s", em.text);
}

static void
process_input(roost_channel *ch, session *s)
{
    roost_errmsg em;
    int rc;
    if (s->state == S_HANDSHAKE) {
        rc = roost_tls_handshake(s->tls, &em);
        if (rc == ROOST_EAGAIN) {
            flush(ch, s);
            return;
        }
        if (rc != ROOST_OK) {
            session_end(ch, s, rc, ROOST_LOG_WARN, "handshake failed: %s",
                        em.text);
            return;
        }
        flush(ch, s);
        roost_tls_trim(s->tls); /* the handshake's buffers */
        session_open(ch, s);
    }
    read_frames(ch, s);
    if (s->state != S_CLOSING)
        flush(ch, s);
}

static void
new_connection(roost_channel *ch, const uint8_t *rid, size_t rid_len,
               const char *peer)
{
    size_t count = ch->live.n + ch->closing.n;
    if (ch->server && count >= ch->cfg.max_sessions) {
        roost_log(&ch->cfg.logger, ROOST_LOG_WARN,
                  "channel: refusing connection from %s: %zu sessions "
                  "(max_sessions)",
                  peer, count);
        wire_send(ch, rid, rid_len, "", 0);
        ring_add(ch, rid, rid_len);
        return;
    }
    session *s = NULL;
    size_t size;
    roost_errmsg em;
    int rc = ROOST_ENOMEM;
    if (roost_size_add(sizeof(*s), rid_len, &size))
        s = roost_alloc_calloc(ch->alloc, 1, size);
    if (s != NULL)
        rc = roost_tls_create(&s->tls, ch->tls,
                              ch->server ? NULL : ch->server_name,
                              ch->cfg.max_in_buffered, &em);
    else
        roost_fail(&em, rc, "out of memory");
    if (rc != ROOST_OK) {
        roost_log(&ch->cfg.logger, ROOST_LOG_ERROR,
                  "channel: cannot start a session for %s: %s", peer, em.text);
        roost_alloc_free(ch->alloc, s);
        wire_send(ch, rid, rid_len, "", 0);
        ring_add(ch, rid, rid_len);
        /* A connector has just dropped the connection it was waiting for
         * and no session will end to reschedule it: try again after the
         * usual backoff, not only when connect_timeout_ms (10 s by
         * default) runs out. */
        if (!ch->server && ch->want_connect)
            connector_schedule(ch, now_ms());
        return;
    }
    s->id = ++ch->last_id;
    s->state = S_HANDSHAKE;
    s->created_ms = s->last_rx_ms = now_ms();
    snprintf(s->peer, sizeof(s->peer), "%s", peer);
    s->rid_len = rid_len;
    memcpy(s->rid, rid, rid_len);
    size_t b = hash_rid(rid, rid_len) & ch->mask;
    s->next_rid = ch->by_rid[b];
    ch->by_rid[b] = s;
    b = hash_id(s->id) & ch->mask;
    s->next_id = ch->by_id[b];
    ch->by_id[b] = s;
    list_push(&ch->live, s);
    roost_log(&ch->cfg.logger, ROOST_LOG_DEBUG,
              "channel: session %" PRIu64 " from %s: connected", s->id, peer);
    if (!ch->server) {
        /* The client speaks first: send the ClientHello. */
        rc = roost_tls_handshake(s->tls, &em);
        if (rc != ROOST_EAGAIN && rc != ROOST_OK) {
            session_end(ch, s, rc, ROOST_LOG_WARN, "handshake failed: %s",
                        em.text);
            return;
        }
        flush(ch, s);
    }
}

static void
on_disconnect(roost_channel *ch, session *s)
{
    s->peer_gone = true;
    if (s->state == S_CLOSING)
        return;
    size_t partial = roost_tls_in_pending(s->tls);
    if (partial > 0)
        session_end(ch, s, ROOST_ETRUNCATED, ROOST_LOG_WARN,
                    "peer disconnected in the middle of a TLS record "
                    "(truncated record, %zu bytes buffered)",
                    partial);
    else if (s->state == S_HANDSHAKE)
        session_end(ch, s, ROOST_ECLOSED, ROOST_LOG_WARN,
                    "peer disconnected during the handshake");
    else if (s->in_body)
        session_end(ch, s, ROOST_ETRUNCATED, ROOST_LOG_WARN,
                    "peer disconnected in the middle of a frame (%zu of "
                    "%zu bytes)",
                    s->body_have, s->body_len);
    else if (s->hdr_have > 0) /* body_* still describe the last frame */
        session_end(ch, s, ROOST_ETRUNCATED, ROOST_LOG_WARN,
                    "peer disconnected in the middle of a frame header "
                    "(%zu of %zu bytes)",
                    s->hdr_have, sizeof(s->hdr));
    else
        session_end(ch, s, ROOST_ECLOSED, ROOST_LOG_INFO, "peer disconnected");
}

/* One message from ZeroMQ (or injected): an empty one is a connect or
 * disconnect notice, anything else ciphertext for the session. */
static void
handle_message(roost_channel *ch, const uint8_t *r, size_t rlen,
               const uint8_t *data, size_t n, const char *peer)
{
    if (rlen == 0 || rlen > RID_CAP)
        return;
    session *s = find_rid(ch, r, rlen);
    if (n == 0) {
        if (s != NULL)
            on_disconnect(ch, s);
        else if (!ring_take(ch, r, rlen))
            new_connection(ch, r, rlen, peer ? peer : "?");
    } else if (s != NULL && s->state != S_CLOSING) {
        roost_tls_piece piece = {data, n};
        on_bytes(ch, s, &piece, 1);
    }
}

/* Process the held data messages, each session's in arrival order and in
 * one step, and give them back to ZeroMQ. A session that ended meanwhile
 * (sessions are freed only by reap, so the pointers are good) drops its
 * messages. */
static void
batch_run(roost_channel *ch)
{
    roost_tls_piece pieces[BATCH_MSGS];
    for (size_t i = 0; i < ch->n_batch; i++) {
        session *s = ch->batch[i].s;
        if (s == NULL)
            continue;
        size_t n = 0;
        for (size_t j = i; j < ch->n_batch; j++) {
            if (ch->batch[j].s != s)
                continue;
            pieces[n].data = zmq_msg_data(&ch->batch[j].msg);
            pieces[n].len = zmq_msg_size(&ch->batch[j].msg);
            n++;
            ch->batch[j].s = NULL;
        }
        if (s->state != S_CLOSING)
            on_bytes(ch, s, pieces, n);
    }
    for (size_t i = 0; i < ch->n_batch; i++)
        zmq_msg_close(&ch->batch[i].msg);
    ch->n_batch = 0;
}

/* Receive one message (routing id + data). */
static int
recv_one(roost_channel *ch)
{
    zmq_msg_t rid, data;
    zmq_msg_init(&rid);
    if (zmq_msg_recv(&rid, ch->sock, ZMQ_DONTWAIT) < 0) {
        int e = errno;
        zmq_msg_close(&rid);
        if (e == EAGAIN || e == EINTR)
            return ROOST_EAGAIN;
        return roost_fail(&ch->em, ROOST_EIO, "zmq_msg_recv: %s",
                          zmq_strerror(e));
    }
    if (!zmq_msg_more(&rid)) {
        zmq_msg_close(&rid);
        return ROOST_OK;
    }
    zmq_msg_init(&data);
    if (zmq_msg_recv(&data, ch->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&data);
        zmq_msg_close(&rid);
        return ROOST_OK;
    }
    while (zmq_msg_more(&data)) { /* never happens on ZMQ_STREAM */
        zmq_msg_close(&data);
        zmq_msg_init(&data);
        if (zmq_msg_recv(&data, ch->sock, ZMQ_DONTWAIT) < 0)
            break;
    }
    size_t rlen = zmq_msg_size(&rid);
    session *s = NULL;
    if (zmq_msg_size(&data) > 0 && rlen > 0 && rlen <= RID_CAP)
        s = find_rid(ch, zmq_msg_data(&rid), rlen);
    if (s != NULL && s->state != S_CLOSING) {
        /* Data for a known session: hold it for batch_run. */
        zmq_msg_init(&ch->batch[ch->n_batch].msg);
        zmq_msg_move(&ch->batch[ch->n_batch].msg, &data);
        ch->batch[ch->n_batch].s = s;
        if (++ch->n_batch == BATCH_MSGS)
            batch_run(ch);
    } else {
        /* A connect or disconnect notice (or data nobody takes): what was
         * held goes first, so that a session sees its data before its
         * end. */
        batch_run(ch);
        const char *peer = NULL;
        if (zmq_msg_size(&data) == 0)
            peer = zmq_msg_gets(&data, "Peer-Address");
        handle_message(ch, zmq_msg_data(&rid), rlen, zmq_msg_data(&data),
                       zmq_msg_size(&data), peer);
    }
    zmq_msg_close(&data);
    zmq_msg_close(&rid);
    return ROOST_OK;
}

static int
scan_interval(const roost_channel *ch)
{
    int t = ch->cfg.handshake_timeout_ms;
    if (ch->cfg.idle_timeout_ms > 0 && ch->cfg.idle_timeout_ms < t)
        t = ch->cfg.idle_timeout_ms;
    t /= 4;
    return t < 10 ? 10 : t > 1000 ? 1000 : t;
}

static void
run_timers(roost_channel *ch, int64_t now)
{
    if (now >= ch->next_scan_ms) {
        ch->next_scan_ms = now + scan_interval(ch);
        session *s = ch->live.head;
        while (s != NULL) {
            session *next = s->next;
            if (s->state == S_HANDSHAKE &&
                now - s->created_ms > ch->cfg.handshake_timeout_ms)
                session_end(ch, s, ROOST_ETIMEDOUT, ROOST_LOG_WARN,
                            "handshake not finished within %d ms",
                            ch->cfg.handshake_timeout_ms);
            else if (s->state == S_OPEN && ch->cfg.idle_timeout_ms > 0 &&
                     now - s->last_rx_ms > ch->cfg.idle_timeout_ms)
                session_end(ch, s, ROOST_ETIMEDOUT, ROOST_LOG_INFO,
                            "idle for more than %d ms",
                            ch->cfg.idle_timeout_ms);
            s = next;
        }
    }
    if (ch->server || !ch->want_connect)
        return;
    if (!ch->zmq_connected && ch->live.n == 0 && ch->closing.n == 0 &&
        now >= ch->connect_at_ms) {
        if (zmq_connect(ch->sock, ch->endpoint) != 0) {
            roost_log(&ch->cfg.logger, ROOST_LOG_ERROR,
                      "channel: connect %s: %s", ch->endpoint,
                      zmq_strerror(errno));
            connector_schedule(ch, now);
            return;
        }
        ch->zmq_connected = true;
        ch->connect_deadline_ms = now + ch->cfg.connect_timeout_ms;
    } else if (ch->zmq_connected && ch->open_count == 0 &&
               ch->connect_deadline_ms != 0 && now >= ch->connect_deadline_ms) {
        roost_log(&ch->cfg.logger, ROOST_LOG_WARN,
                  "channel: no session with %s within %d ms", ch->endpoint,
                  ch->cfg.connect_timeout_ms);
        if (ch->live.head != NULL)
            session_end(ch, ch->live.head, ROOST_ETIMEDOUT, ROOST_LOG_WARN,
                        "connect timeout");
        else
            connector_schedule(ch, now);
    }
}

static void
retry_flushes(roost_channel *ch)
{
    for (session *s = ch->live.head; s != NULL && ch->n_flush > 0; s = s->next)
        if (s->want_flush)
            flush(ch, s);
    for (session *s = ch->closing.head; s != NULL && ch->n_flush > 0;
         s = s->next)
        if (s->want_flush)
            flush(ch, s);
}

int
roost_channel_next_timer_ms(roost_channel *ch)
{
    int64_t now = now_ms();
    int64_t next = -1;
    if (ch->live.n > 0)
        next = ch->next_scan_ms;
    if (ch->closing.n > 0 && (next < 0 || now + LINGER_MS < next))
        next = now + LINGER_MS;
    if (!ch->server && ch->want_connect) {
        int64_t t =
            ch->zmq_connected ? ch->connect_deadline_ms : ch->connect_at_ms;
        if (t != 0 && (next < 0 || t < next))
            next = t;
    }
    if (ch->n_flush > 0 && (next < 0 || now + 1 < next))
        next = now + 1;
    if (next < 0)
        return -1;
    return next <= now ? 0 : (int)(next - now);
}

int
roost_channel_poll(roost_channel *ch, int timeout_ms)
{
    int wait = timeout_ms;
    int timer = roost_channel_next_timer_ms(ch);
    if (timer >= 0 && (wait < 0 || timer < wait))
        wait = timer;
    zmq_pollitem_t item = {ch->sock, 0, ZMQ_POLLIN, 0};
    if (ch->sock != NULL && zmq_poll(&item, 1, wait) < 0 && errno != EINTR)
        return roost_fail(&ch->em, ROOST_EIO, "zmq_poll: %s",
                          zmq_strerror(errno));
    for (int i = 0; ch->sock != NULL && i < RECV_BUDGET; i++) {
        int rc = recv_one(ch);
        if (rc == ROOST_EAGAIN)
            break;
        if (rc != ROOST_OK) {
            batch_run(ch);
            return rc;
        }
    }
    batch_run(ch);
    run_timers(ch, now_ms());
    if (ch->n_flush > 0)
        retry_flushes(ch);
    reap(ch, false);
    return ROOST_OK;
}

void
roost_channel_config_init(roost_channel_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
}

static int
channel_new(roost_channel **out, const roost_channel_config *cfg,
            roost_tls_ctx *tls, bool detached, roost_channel_sink_fn sink,
            void *sink_arg, roost_errmsg *em)
{
    *out = NULL;
    if (cfg == NULL || tls == NULL)
        return roost_fail(em, ROOST_EINVAL, "channel needs a config and TLS");
    roost_channel_config c = *cfg;
    if (c.max_sessions == 0)
        c.max_sessions = DEFAULT_MAX_SESSIONS;
    if (c.max_frame == 0)
        c.max_frame = DEFAULT_MAX_FRAME;
    if (c.handshake_timeout_ms <= 0)
        c.handshake_timeout_ms = DEFAULT_HANDSHAKE_MS;
    if (c.idle_timeout_ms == 0)
        c.idle_timeout_ms = DEFAULT_IDLE_MS;
    if (c.max_in_buffered == 0)
        c.max_in_buffered = DEFAULT_IN_CAP;
    if (c.max_out_buffered == 0)
        c.max_out_buffered = (size_t)c.max_frame + ((size_t)1 << 20);
    if (c.reconnect_min_ms <= 0)
        c.reconnect_min_ms = DEFAULT_RECONNECT_MIN_MS;
    if (c.reconnect_max_ms <= 0)
        c.reconnect_max_ms = DEFAULT_RECONNECT_MAX_MS;
    if (c.connect_timeout_ms <= 0)
        c.connect_timeout_ms = DEFAULT_CONNECT_MS;
    if (c.max_frame > ROOST_CHANNEL_FRAME_HARD_MAX)
        return roost_fail(em, ROOST_EINVAL,
                          "max_frame %" PRIu32
                          " exceeds the hard limit %" PRIu32,
                          c.max_frame, ROOST_CHANNEL_FRAME_HARD_MAX);
    if (c.max_sessions > ((size_t)1 << 24) ||
        c.reconnect_min_ms > c.reconnect_max_ms || c.max_in_buffered < 32768)
        return roost_fail(em, ROOST_EINVAL,
                          "channel config: max_sessions <= 2^24, "
                          "reconnect_min_ms <= reconnect_max_ms and "
                          "max_in_buffered >= 32 KiB required");
    roost_channel *ch = roost_alloc_calloc(cfg->alloc, 1, sizeof(*ch));
    if (ch == NULL)
        return roost_fail(em, ROOST_ENOMEM, "channel: out of memory");
    if (cfg->alloc != NULL) {
        ch->alloc_copy = *cfg->alloc;
        ch->alloc = &ch->alloc_copy;
    }
    ch->cfg = c;
    ch->server = roost_tls_ctx_is_server(tls);
    ch->backoff_ms = c.reconnect_min_ms;
    size_t buckets = 64;
    while (buckets < c.max_sessions)
        buckets *= 2;
    ch->mask = buckets - 1;
    int rc = ROOST_ENOMEM;
    ch->by_rid = roost_alloc_calloc(ch->alloc, buckets, sizeof(session *));
    ch->by_id = roost_alloc_calloc(ch->alloc, buckets, sizeof(session *));
    if (ch->by_rid == NULL || ch->by_id == NULL) {
        roost_fail(em, rc, "channel: out of memory");
        goto fail;
    }
    if (!ch->server && (rc = roost_rng_create(&ch->rng, ch->alloc)) != 0) {
        roost_fail(em, rc, "channel: CSPRNG unavailable");
        goto fail;
    }
    if (detached) {
        if (!ch->server) {
            rc = roost_fail(em, ROOST_EINVAL,
                            "a detached channel needs a server context");
            goto fail;
        }
        ch->sink = sink;
        ch->sink_arg = sink_arg;
    } else {
        ch->zctx = c.zmq_ctx;
        if (ch->zctx == NULL) {
            ch->zctx = zmq_ctx_new();
            ch->own_zctx = true;
        }
        ch->sock = ch->zctx ? zmq_socket(ch->zctx, ZMQ_STREAM) : NULL;
        if (ch->sock == NULL) {
            rc = roost_fail(em, ROOST_EIO, "ZeroMQ socket: %s",
                            zmq_strerror(errno));
            goto fail;
        }
        int zero = 0, one = 1;
        int ivl = ch->cfg.reconnect_min_ms, ivl_max = ch->cfg.reconnect_max_ms;
        zmq_setsockopt(ch->sock, ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(ch->sock, ZMQ_STREAM_NOTIFY, &one, sizeof(one));
        /* ZeroMQ's own reconnect cannot simply be turned off: with
         * ZMQ_RECONNECT_IVL = -1, libzmq 4.3 drops the disconnect notice
         * on the connecting side, and a client would never learn that its
         * coordinator died. So ZeroMQ retries a refused TCP connect with
         * the configured bounds, while the channel schedules each new
         * attempt (after a session ends) with its own jittered backoff and
         * cancels ZeroMQ's retries with zmq_disconnect. */
        zmq_setsockopt(ch->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof(ivl));
        zmq_setsockopt(ch->sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max,
                       sizeof(ivl_max));
    }
    ch->tls = tls;
    roost_tls_ctx_ref(tls);
    *out = ch;
    return ROOST_OK;
fail:
    roost_channel_destroy(ch);
    return rc;
}

int
roost_channel_create(roost_channel **out, const roost_channel_config *cfg,
                     roost_tls_ctx *tls, roost_errmsg *em)
{
    return channel_new(out, cfg, tls, false, NULL, NULL, em);
}

int
roost_channel_create_detached(roost_channel **out,
                              const roost_channel_config *cfg,
                              roost_tls_ctx *tls, roost_channel_sink_fn sink,
                              void *sink_arg, roost_errmsg *em)
{
    return channel_new(out, cfg, tls, true, sink, sink_arg, em);
}

int
roost_channel_inject(roost_channel *ch, const uint8_t *rid, size_t rid_len,
                     const void *data, size_t len)
{
    if (ch->sock != NULL)
        return roost_fail(&ch->em, ROOST_ESTATE,
                          "inject works on detached channels only");
    handle_message(ch, rid, rid_len, data, len, "injected");
    return ROOST_OK;
}

void
roost_channel_destroy(roost_channel *ch)
{
    if (ch == NULL)
        return;
    while (ch->live.head != NULL) {
        session *s = ch->live.head;
        list_remove(&ch->live, s);
        list_push(&ch->closing, s);
    }
    reap(ch, true);
    for (size_t i = 0; i < ch->npool; i++)
        roost_alloc_free(ch->alloc, ch->pool[i].p);
    roost_alloc_free(ch->alloc, ch->stage);
    if (ch->sock != NULL)
        zmq_close(ch->sock);
    if (ch->own_zctx && ch->zctx != NULL)
        zmq_ctx_term(ch->zctx);
    roost_rng_destroy(ch->rng);
    roost_tls_ctx_destroy(ch->tls);
    roost_alloc_free(ch->alloc, ch->endpoint);
    roost_alloc_free(ch->alloc, ch->server_name);
    roost_alloc_free(ch->alloc, ch->by_rid);
    roost_alloc_free(ch->alloc, ch->by_id);
    /* ch itself was allocated with the embedder's hooks, which live in
     * ch: copy them out before freeing. */
    roost_allocator copy = ch->alloc_copy;
    roost_alloc_free(ch->alloc != NULL ? &copy : NULL, ch);
}

/* ZeroMQ resolves and binds IPv4 only unless ZMQ_IPV6 is set. It is set
 * for a bracketed IPv6 literal ("tcp://[::]:7443", "tcp://[::1]:7443")
 * and nothing else: with it on, a host name such as "localhost" could
 * resolve to ::1 first and miss a coordinator that listens on IPv4 only. */
static int
ipv6_for(roost_channel *ch, const char *endpoint)
{
    if (strncmp(endpoint, "tcp://[", 7) != 0)
        return ROOST_OK;
    int one = 1;
    if (zmq_setsockopt(ch->sock, ZMQ_IPV6, &one, sizeof(one)) != 0)
        return roost_fail(&ch->em, ROOST_EIO, "IPv6 for %s: %s", endpoint,
                          zmq_strerror(errno));
    return ROOST_OK;
}

int
roost_channel_listen(roost_channel *ch, const char *endpoint)
{
    if (ch->sock == NULL)
        return roost_fail(&ch->em, ROOST_ESTATE, "detached channel");
    if (!ch->server)
        return roost_fail(&ch->em, ROOST_ESTATE,
                          "listen needs a server TLS context");
    int rc = ipv6_for(ch, endpoint);
    if (rc != ROOST_OK)
        return rc;
    if (zmq_bind(ch->sock, endpoint) != 0)
        return roost_fail(&ch->em, ROOST_EIO, "bind %s: %s", endpoint,
                          zmq_strerror(errno));
    roost_log(&ch->cfg.logger, ROOST_LOG_INFO, "channel: listening on %s",
              endpoint);
    return ROOST_OK;
}

int
roost_channel_endpoint(roost_channel *ch, char *buf, size_t cap)
{
    if (ch->sock == NULL)
        return roost_fail(&ch->em, ROOST_ESTATE, "detached channel");
    char tmp[256];
    size_t len = sizeof(tmp);
    if (zmq_getsockopt(ch->sock, ZMQ_LAST_ENDPOINT, tmp, &len) != 0)
        return roost_fail(&ch->em, ROOST_EIO, "ZMQ_LAST_ENDPOINT: %s",
                          zmq_strerror(errno));
    if (len > cap)
        return ROOST_ETOOSMALL;
    memcpy(buf, tmp, len);
    return ROOST_OK;
}

static char *
dup_string(const roost_allocator *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = roost_alloc_malloc(a, n);
    if (p != NULL)
        memcpy(p, s, n);
    return p;
}

int
roost_channel_connect(roost_channel *ch, const char *endpoint,
                      const char *server_name)
{
    if (ch->server)
        return roost_fail(&ch->em, ROOST_ESTATE,
                          "connect needs a client TLS context");
    if (ch->want_connect || ch->live.n > 0)
        return roost_fail(&ch->em, ROOST_ESTATE, "already connected");
    int rc = ch->sock != NULL ? ipv6_for(ch, endpoint) : ROOST_OK;
    if (rc != ROOST_OK)
        return rc;
    char *e = dup_string(ch->alloc, endpoint);
    char *n = dup_string(ch->alloc, server_name);
    if (e == NULL || n == NULL) {
        roost_alloc_free(ch->alloc, e);
        roost_alloc_free(ch->alloc, n);
        return roost_fail(&ch->em, ROOST_ENOMEM, "out of memory");
    }
    roost_alloc_free(ch->alloc, ch->endpoint);
    roost_alloc_free(ch->alloc, ch->server_name);
    ch->endpoint = e;
    ch->server_name = n;
    ch->want_connect = true;
    ch->backoff_ms = ch->cfg.reconnect_min_ms;
    ch->connect_at_ms = now_ms();
    run_timers(ch, ch->connect_at_ms);
    return ROOST_OK;
}

int
roost_channel_fd(roost_channel *ch, int *fd)
{
    if (ch->sock == NULL)
        return roost_fail(&ch->em, ROOST_ESTATE, "detached channel");
    size_t len = sizeof(*fd);
    if (zmq_getsockopt(ch->sock, ZMQ_FD, fd, &len) != 0)
        return roost_fail(&ch->em, ROOST_EIO, "ZMQ_FD: %s",
                          zmq_strerror(errno));
    return ROOST_OK;
}

int
roost_channel_send(roost_channel *ch, uint64_t session_id, const void *data,
                   size_t len)
{
    session *s = find_id(ch, session_id);
    if (s == NULL || s->state != S_OPEN)
        return roost_fail(&ch->em, ROOST_ENOENT, "no open session %" PRIu64,
                          session_id);
    if (len > ch->cfg.max_frame)
        return roost_fail(&ch->em, ROOST_ETOOBIG,
                          "frame of %zu bytes exceeds the %" PRIu32
                          "-byte limit",
                          len, ch->cfg.max_frame);
    /* Records add 22 bytes per 16 KiB; refuse before encrypting anything
     * if the unsent output would pass its cap. */
    size_t need = len + 4 + (len / 16384 + 1) * 32;
    if (roost_tls_out_pending(s->tls) + need > ch->cfg.max_out_buffered) {
        flush(ch, s);
        if (roost_tls_out_pending(s->tls) + need > ch->cfg.max_out_buffered)
            return roost_fail(&ch->em, ROOST_EAGAIN,
                              "session %" PRIu64 ": output buffer full",
                              session_id);
    }
    /* The length prefix shares the first record with the payload's first
     * bytes, so a small frame is one record. */
    uint8_t first[FIRST_RECORD];
    size_t head = len < sizeof(first) - 4 ? len : sizeof(first) - 4;
    first[0] = (uint8_t)(len >> 24);
    first[1] = (uint8_t)(len >> 16);
    first[2] = (uint8_t)(len >> 8);
    first[3] = (uint8_t)len;
    if (head > 0)
        memcpy(first + 4, data, head);
    roost_errmsg em;
    int rc = roost_tls_write(s->tls, first, head + 4, &em);
    const uint8_t *p = (const uint8_t *)data + head;
    size_t left = len - head;
    while (rc == ROOST_OK && left > 0) {
        size_t n = left < SEND_SLICE ? left : SEND_SLICE;
        rc = roost_tls_write(s->tls, p, n, &em);
        p += n;
        left -= n;
        if (rc == ROOST_OK)
            flush(ch, s);
    }
    if (rc != ROOST_OK) {
        session_end(ch, s, rc, ROOST_LOG_ERROR, "send failed: %s", em.text);
        return roost_fail(&ch->em, rc, "%s", em.text);
    }
    flush(ch, s);
    return ROOST_OK;
}

int
roost_channel_close(roost_channel *ch, uint64_t session_id)
{
    session *s = find_id(ch, session_id);
    if (s == NULL || s->state == S_CLOSING)
        return roost_fail(&ch->em, ROOST_ENOENT, "no session %" PRIu64,
                          session_id);
    if (!ch->server)
        ch->want_connect = false;
    roost_tls_close_notify(s->tls);
    session_end(ch, s, ROOST_OK, ROOST_LOG_INFO, "closed locally");
    return ROOST_OK;
}

int
roost_channel_set_tls(roost_channel *ch, roost_tls_ctx *tls)
{
    if (roost_tls_ctx_is_server(tls) != ch->server)
        return roost_fail(&ch->em, ROOST_EINVAL,
                          "replacement TLS context has the other role");
    roost_tls_ctx_ref(tls);
    roost_tls_ctx_destroy(ch->tls);
    ch->tls = tls;
    return ROOST_OK;
}

size_t
roost_channel_session_count(const roost_channel *ch)
{
    return ch->live.n + ch->closing.n;
}

size_t
roost_channel_open_count(const roost_channel *ch)
{
    return ch->open_count;
}

const char *
roost_channel_errmsg(const roost_channel *ch)
{
    return ch->em.text;
}
