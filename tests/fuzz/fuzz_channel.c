/*
 * fuzz_channel.c - the listener's receive path, bytes in -> session state,
 * without sockets: a detached channel (same session table, TLS, framing,
 * caps and events as a socket-backed one) is fed what ZeroMQ would have
 * delivered.
 *
 * The first input byte picks what the rest of the input is:
 *   0: raw bytes from a peer that just connected (pre-handshake: the TLS
 *      handshake parser), injected in chunks whose sizes the input sets;
 *   1: plaintext that a properly authenticated client sends inside TLS
 *      (the deframer: lengths, oversize frames, partial frames);
 *   2: raw ciphertext after a completed handshake (the record layer with
 *      keys in place: garbage, truncated and forged records).
 * Each run may end with a disconnect notice, so the truncation paths run
 * too. Certificates are made once, by the PKI functions, in a temp dir.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/channel.h"
#include "common/pki.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static roost_tls_ctx *server_ctx, *client_ctx;

typedef struct harness {
    roost_channel *ch;
    roost_tls *client; /* the authenticated peer (modes 1, 2) */
    int opened, frames, closed;
    size_t frame_bytes;
} harness;

static void
sink(void *arg, const uint8_t *rid, size_t rid_len, const void *data,
     size_t len)
{
    harness *h = arg;
    (void)rid;
    (void)rid_len;
    if (h->client != NULL && len > 0)
        (void)roost_tls_feed(h->client, data, len, NULL);
}

static void
on_event(void *arg, const roost_channel_event *ev)
{
    harness *h = arg;
    if (ev->type == ROOST_CHANNEL_OPENED) {
        h->opened++;
    } else if (ev->type == ROOST_CHANNEL_FRAME) {
        h->frames++;
        /* Touch every byte so ASan checks the frame buffer's bounds. */
        uint8_t x = 0;
        for (size_t i = 0; i < ev->len; i++)
            x ^= ev->data[i];
        h->frame_bytes += ev->len + x % 2;
        /* Answer some frames, as the coordinator would. */
        if (ev->len > 0 && ev->data[0] == 'e')
            (void)roost_channel_send(h->ch, ev->session, ev->data, ev->len);
    } else {
        h->closed++;
    }
}

static void
die(const char *what, const roost_errmsg *em)
{
    fprintf(stderr, "fuzz_channel init: %s: %s\n", what, em->text);
    abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/roost-fuzz-channel-XXXXXX";
    if (mkdtemp(dir) == NULL)
        abort();
    char p[8][128];
    const char *names[8] = {"ca.key",     "ca.crt",     "ca.crl",
                            "server.key", "server.crt", "client.key",
                            "client.csr", "client.crt"};
    for (int i = 0; i < 8; i++)
        snprintf(p[i], sizeof(p[i]), "%s/%s", dir, names[i]);
    roost_errmsg em = {{0}};
    roost_pki_validity v = {-60, 30 * ROOST_PKI_DAY_S};
    if (roost_pki_init(p[0], p[1], p[2], "Fuzz CA", 30, 30, &em) != 0)
        die("init", &em);
    if (roost_pki_server(p[0], p[1], p[3], p[4], "localhost", NULL, 0, &v,
                         &em) != 0)
        die("server", &em);
    if (roost_pki_request(p[5], p[6], "fuzz-client", &em) != 0 ||
        roost_pki_sign(p[0], p[1], p[6], p[7], &v, &em) != 0)
        die("client", &em);
    roost_tls_files sf = {p[1], p[4], p[3], p[2]};
    roost_tls_files cf = {p[1], p[7], p[5], NULL};
    if (roost_tls_ctx_create_server(&server_ctx, &sf, &em) != 0)
        die("server ctx", &em);
    if (roost_tls_ctx_create_client(&client_ctx, &cf, &em) != 0)
        die("client ctx", &em);
    for (int i = 0; i < 8; i++)
        unlink(p[i]);
    rmdir(dir);
    return 0;
}

static const uint8_t RID[5] = {0, 0, 0, 0, 1};

/* Shuttle client output into the channel until the server opened. */
static int
handshake(harness *h)
{
    if (roost_tls_create(&h->client, client_ctx, "localhost", 0, NULL) != 0)
        return -1;
    for (int i = 0; i < 8 && h->opened == 0; i++) {
        int rc = roost_tls_handshake(h->client, NULL);
        if (rc != ROOST_OK && rc != ROOST_EAGAIN)
            return -1;
        size_t n;
        const uint8_t *p = roost_tls_out_peek(h->client, &n);
        if (n > 0) {
            /* The sink may feed the client while we inject: copy first. */
            uint8_t *copy = malloc(n);
            if (copy == NULL)
                return -1;
            memcpy(copy, p, n);
            roost_tls_out_consume(h->client, n);
            roost_channel_inject(h->ch, RID, sizeof(RID), copy, n);
            free(copy);
        }
    }
    return h->opened == 1 ? 0 : -1;
}

/* Inject bytes in chunks: each chunk's size comes from the input. */
static void
inject_chunked(harness *h, const uint8_t *data, size_t size)
{
    while (size > 0) {
        size_t n = 1 + (size_t)data[0] * 7;
        if (n > size)
            n = size;
        roost_channel_inject(h->ch, RID, sizeof(RID), data, n);
        data += n;
        size -= n;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int mode = data[0] % 3;
    bool disconnect = (data[0] & 0x80) != 0;
    data++;
    size--;
    harness h = {0};
    roost_channel_config cfg;
    roost_channel_config_init(&cfg);
    cfg.on_event = on_event;
    cfg.event_arg = &h;
    cfg.max_frame = 4096;
    cfg.max_in_buffered = 65536;
    roost_errmsg em = {{0}};
    if (roost_channel_create_detached(&h.ch, &cfg, server_ctx, sink, &h, &em) !=
        0)
        abort();
    roost_channel_inject(h.ch, RID, sizeof(RID), "", 0); /* connect */
    if (roost_channel_session_count(h.ch) != 1)
        abort();
    if (mode == 0) {
        inject_chunked(&h, data, size);
    } else if (handshake(&h) == 0) {
        if (mode == 1) {
            /* The input is the plaintext stream, encrypted by the client
             * in pieces whose sizes the input sets. */
            while (size > 0) {
                size_t n = 1 + (size_t)data[0] * 13;
                if (n > size)
                    n = size;
                if (roost_tls_write(h.client, data, n, NULL) != 0)
                    break;
                size_t clen;
                const uint8_t *c = roost_tls_out_peek(h.client, &clen);
                uint8_t *copy = malloc(clen);
                if (copy == NULL)
                    break;
                memcpy(copy, c, clen);
                roost_tls_out_consume(h.client, clen);
                roost_channel_inject(h.ch, RID, sizeof(RID), copy, clen);
                free(copy);
                data += n;
                size -= n;
            }
        } else {
            inject_chunked(&h, data, size);
        }
    }
    if (disconnect)
        roost_channel_inject(h.ch, RID, sizeof(RID), "", 0);
    roost_channel_poll(h.ch, 0);
    /* An opened session is closed exactly once, by the end at the
     * latest; the table never holds more than this one peer. */
    if (roost_channel_session_count(h.ch) > 1 || h.closed > h.opened)
        abort();
    roost_channel_destroy(h.ch);
    roost_tls_destroy(h.client);
    return 0;
}
