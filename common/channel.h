/*
 * channel.h - TLS 1.3 sessions carried over a ZeroMQ ZMQ_STREAM socket.
 *
 * One TCP connection is one TLS session (tls.h): ZeroMQ reports each
 * connect and disconnect as an empty message, and the bytes on the wire
 * are plain TLS, so any TLS tool (openssl s_client) can talk to a
 * listener. Inside TLS, messages travel as frames: a 4-byte big-endian
 * length followed by that many opaque bytes (the wire codec's protobuf
 * messages). A frame's length is checked against max_frame before any
 * memory is set aside for it.
 *
 * A channel is either a listener (created with a server TLS context; many
 * sessions keyed by ZeroMQ routing id) or a connector (client TLS
 * context; at most one session, reconnected with exponential backoff and
 * jitter after it ends). Both are driven the same way, from a poll loop:
 *
 *   roost_channel_poll(ch, timeout_ms)   wait up to timeout_ms, then do all
 *                                        pending work and fire events
 *
 * or, inside an application's own loop, wait on roost_channel_fd() (ZMQ_FD:
 * edge-triggered, readable means "call poll") and on
 * roost_channel_next_timer_ms(), then call roost_channel_poll(ch, 0).
 *
 * Events (session opened with the peer's verified identity, frame
 * received, session closed with a reason) go to one callback, run on the
 * thread that calls roost_channel_poll. Inside the callback the
 * application may call roost_channel_send and roost_channel_close (on any
 * session) but not roost_channel_poll or roost_channel_destroy.
 *
 * A misbehaving peer (not TLS, wrong or missing certificate, garbage or
 * truncated records, an oversize frame, a handshake that never ends, a
 * flood that overruns the per-session buffers) is dropped with one log
 * line naming the session, peer address and reason; other sessions are
 * not affected.
 *
 * Threading: a channel belongs to one thread at a time. It keeps no
 * globals; several channels may share a ZeroMQ context.
 */
#ifndef ROOST_COMMON_CHANNEL_H
#define ROOST_COMMON_CHANNEL_H

#include "common/log.h"
#include "common/rng.h"
#include "common/tls.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct roost_channel roost_channel;

/* The largest max_frame a channel accepts (1 GiB). Bigger payloads travel
 * as chunks above the channel. */
#define ROOST_CHANNEL_FRAME_HARD_MAX ((uint32_t)1 << 30)

enum roost_channel_event_type {
    ROOST_CHANNEL_OPENED = 1, /* handshake done, peer verified */
    ROOST_CHANNEL_FRAME = 2,  /* one complete frame arrived */
    ROOST_CHANNEL_CLOSED = 3  /* an opened session ended */
};

typedef struct roost_channel_event {
    int type;
    uint64_t session; /* never 0; not reused within a channel */
    /* The verified peer (all three event types). */
    const roost_tls_identity *identity;
    /* FRAME: the payload, valid only during the callback. */
    const uint8_t *data;
    size_t len;
    /* CLOSED: ROOST_OK (closed locally with roost_channel_close),
     * ROOST_ECLOSED (peer closed or disconnected), ROOST_ETIMEDOUT (idle),
     * ROOST_ETOOBIG (oversize frame or buffer cap), ROOST_ETLS (bad
     * record), ROOST_EAUTH; detail says more. */
    int reason;
    const char *detail;
} roost_channel_event;

typedef void (*roost_channel_event_fn)(void *arg,
                                       const roost_channel_event *event);

typedef struct roost_channel_config {
    roost_channel_event_fn on_event; /* may be NULL (events dropped) */
    void *event_arg;
    roost_logger logger;          /* {NULL}: silent */
    const roost_allocator *alloc; /* NULL: malloc */
    void *zmq_ctx;                /* NULL: the channel makes its own */
    size_t max_sessions;          /* listener; default 1024 */
    uint32_t max_frame;           /* default 16 MiB */
    int handshake_timeout_ms;     /* default 10 s */
    int idle_timeout_ms;          /* default 10 min; < 0: never */
    size_t max_in_buffered;       /* per session TLS input; 256 KiB */
    size_t max_out_buffered;      /* per session unsent; max_frame+1MiB */
    int reconnect_min_ms;         /* connector backoff: default 100 ms */
    int reconnect_max_ms;         /* default 30 s */
    int connect_timeout_ms;       /* TCP + handshake; default 10 s */
} roost_channel_config;

/* roost_channel_config_init - zero-initialise cfg (all defaults). */
void roost_channel_config_init(roost_channel_config *cfg);

/*
 * roost_channel_create - a channel over a new ZMQ_STREAM socket. The
 * channel takes a reference on tls (a server context makes a listener, a
 * client context a connector). Returns ROOST_OK, ROOST_EINVAL (bad
 * config), ROOST_ENOMEM, ROOST_EIO (ZeroMQ); *out is NULL on failure.
 */
int roost_channel_create(roost_channel **out, const roost_channel_config *cfg,
                         roost_tls_ctx *tls, roost_errmsg *em);

/* roost_channel_destroy - close every session (no events fired), the
 * socket, and the ZeroMQ context if the channel made it. NULL: no-op. */
void roost_channel_destroy(roost_channel *ch);

/* roost_channel_listen - bind a listener to a ZeroMQ TCP endpoint such as
 * "tcp://0.0.0.0:7443" or "tcp://127.0.0.1:*" (ephemeral port; see
 * roost_channel_endpoint). ROOST_ESTATE on a connector, ROOST_EIO. */
int roost_channel_listen(roost_channel *ch, const char *endpoint);

/* roost_channel_endpoint - the last bound endpoint, e.g.
 * "tcp://127.0.0.1:40123", into buf. ROOST_ETOOSMALL if cap is short. */
int roost_channel_endpoint(roost_channel *ch, char *buf, size_t cap);

/* roost_channel_connect - start connecting a connector to endpoint
 * ("tcp://host:port"), verifying that the server certificate carries
 * server_name. The connection is made and, after it ends, remade by
 * roost_channel_poll; OPENED fires for each established session. */
int roost_channel_connect(roost_channel *ch, const char *endpoint,
                          const char *server_name);

/*
 * roost_backoff_step - the delay before the next attempt under exponential
 * backoff with "equal jitter" (half of *backoff_ms fixed, half uniform
 * from rng, so a fleet of clients cut off together does not come back in
 * lockstep), then double *backoff_ms, at most max_ms. The channel's
 * reconnects use it; so does a client that ends a session for its own
 * reasons (the channel only remakes sessions the peer or network ended).
 */
int roost_backoff_step(roost_rng *rng, int *backoff_ms, int max_ms);

/*
 * roost_channel_poll - wait up to timeout_ms (0: do not wait; < 0: until
 * something happens) for input, then process everything pending: input,
 * handshakes, events, timeouts, reconnects, stalled output. Returns
 * ROOST_OK, or ROOST_EIO if the ZeroMQ socket itself failed (sessions are
 * unaffected by their peers' failures).
 */
int roost_channel_poll(roost_channel *ch, int timeout_ms);

/* roost_channel_fd - the socket's ZMQ_FD for an external poll loop. */
int roost_channel_fd(roost_channel *ch, int *fd);

/* roost_channel_next_timer_ms - milliseconds until the channel has timer
 * work (a timeout or reconnect), or -1 if none. */
int roost_channel_next_timer_ms(roost_channel *ch);

/*
 * roost_channel_send - send one frame of len bytes on an open session.
 * The data is encrypted at once (the caller's buffer may be reused on
 * return) and shipped as the socket allows. ROOST_OK; ROOST_ENOENT (no
 * such open session); ROOST_ETOOBIG (len > max_frame); ROOST_EAGAIN (the
 * session's unsent output would exceed max_out_buffered: try after a
 * poll); ROOST_ETLS.
 */
int roost_channel_send(roost_channel *ch, uint64_t session, const void *data,
                       size_t len);

/* roost_channel_close - end a session: close_notify, flush, disconnect.
 * CLOSED fires with reason ROOST_OK. A connector does not reconnect after
 * a local close until roost_channel_connect is called again. ROOST_ENOENT
 * if there is no such session. */
int roost_channel_close(roost_channel *ch, uint64_t session);

/* roost_channel_set_tls - use tls (same role) for sessions that start from
 * now on, e.g. a context rebuilt after `roost pki revoke` rewrote the
 * CRL. Sessions already open keep theirs: close those whose identity was
 * revoked. ROOST_EINVAL if the role differs. */
int roost_channel_set_tls(roost_channel *ch, roost_tls_ctx *tls);

/* Sessions in the table (handshaking, open, or closing). */
size_t roost_channel_session_count(const roost_channel *ch);
/* Sessions open (handshake done). */
size_t roost_channel_open_count(const roost_channel *ch);

/* roost_channel_errmsg - detail on the channel's last failure. */
const char *roost_channel_errmsg(const roost_channel *ch);

/*
 * Detached listeners, for fuzzing and tests of the receive path without
 * sockets: the same session table, TLS, framing, caps and events, but
 * input comes from roost_channel_inject (exactly what ZeroMQ would have
 * delivered for routing id rid: len 0 is a connect or disconnect notice)
 * and output goes to sink (len 0: the channel closes that peer).
 * roost_channel_poll runs timers only.
 */
typedef void (*roost_channel_sink_fn)(void *arg, const uint8_t *rid,
                                      size_t rid_len, const void *data,
                                      size_t len);
int roost_channel_create_detached(roost_channel **out,
                                  const roost_channel_config *cfg,
                                  roost_tls_ctx *tls,
                                  roost_channel_sink_fn sink, void *sink_arg,
                                  roost_errmsg *em);
int roost_channel_inject(roost_channel *ch, const uint8_t *rid, size_t rid_len,
                         const void *data, size_t len);

#endif
