/*
 * test_tls.c - TLS 1.3 sessions over memory BIOs, wired back to back:
 * mutual authentication succeeds with a good client certificate and is
 * refused for an unknown CA, an expired or revoked certificate, a missing
 * client certificate, a wrong host name or a server from a foreign CA.
 * Also: identity = SHA-256 of the certificate, data both ways, input cap,
 * non-TLS bytes, truncated records, ciphertext lent in several pieces.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>

#include "tls_fixture.h"

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

/* Move every pending output byte of `from` into `to`. */
static void
shuttle(roost_tls *from, roost_tls *to)
{
    size_t n;
    const uint8_t *p = roost_tls_out_peek(from, &n);
    if (n > 0) {
        roost_errmsg em = {{0}};
        assert_int_equal(roost_tls_feed(to, p, n, &em), ROOST_OK);
        roost_tls_out_consume(from, n);
    }
}

typedef struct pair_result {
    int client_rc, server_rc;
    roost_errmsg client_em, server_em;
} pair_result;

/* Run a handshake until both sides stop making progress. After the
 * client finishes, it also tries a read so that an alert sent by a server
 * that refused its certificate surfaces on the client. */
static void
run_pair(roost_tls *c, roost_tls *s, pair_result *r)
{
    memset(r, 0, sizeof(*r));
    r->client_rc = r->server_rc = ROOST_EAGAIN;
    for (int i = 0; i < 10; i++) {
        if (r->client_rc == ROOST_EAGAIN)
            r->client_rc = roost_tls_handshake(c, &r->client_em);
        shuttle(c, s);
        if (r->server_rc == ROOST_EAGAIN)
            r->server_rc = roost_tls_handshake(s, &r->server_em);
        shuttle(s, c);
    }
    if (r->client_rc == ROOST_OK) {
        uint8_t buf[64];
        size_t n;
        int rc = roost_tls_read(c, buf, sizeof(buf), &n, &r->client_em);
        if (rc != ROOST_EAGAIN)
            r->client_rc = rc;
    }
}

/* A handshake of client certificate `client` (trusting the CA under
 * client_ca) with a server session of sctx (a reference is taken over);
 * *id (may be NULL) receives the client's identity as the server saw it. */
static void
handshake_on(roost_tls_ctx *sctx, const char *client, const char *client_ca,
             const char *host, pair_result *r, roost_tls_identity *id)
{
    roost_tls_ctx *cctx = fx_client_ctx(&fx, client, client_ca);
    roost_tls *s, *c;
    roost_errmsg em = {{0}};
    assert_int_equal(roost_tls_create(&s, sctx, NULL, 0, &em), ROOST_OK);
    assert_int_equal(roost_tls_create(&c, cctx, host, 0, &em), ROOST_OK);
    roost_tls_ctx_destroy(sctx); /* sessions keep the contexts alive */
    roost_tls_ctx_destroy(cctx);
    run_pair(c, s, r);
    if (id != NULL)
        assert_int_equal(roost_tls_peer_identity(s, id), ROOST_OK);
    roost_tls_destroy(c);
    roost_tls_destroy(s);
}

static void
handshake_with(const char *client, const char *client_ca, const char *host,
               pair_result *r)
{
    handshake_on(fx_server_ctx(&fx), client, client_ca, host, r, NULL);
}

static void
mutual_auth_and_data(void **state)
{
    (void)state;
    roost_tls_ctx *sctx = fx_server_ctx(&fx);
    roost_tls_ctx *cctx = fx_client_ctx(&fx, "good", "ca");
    assert_true(roost_tls_ctx_is_server(sctx));
    assert_false(roost_tls_ctx_is_server(cctx));
    roost_tls *s, *c;
    roost_errmsg em = {{0}};
    assert_int_equal(roost_tls_create(&s, sctx, NULL, 0, &em), ROOST_OK);
    assert_int_equal(roost_tls_create(&c, cctx, "localhost", 0, &em), ROOST_OK);
    roost_tls_identity id;
    assert_int_equal(roost_tls_peer_identity(s, &id), ROOST_ESTATE);
    pair_result r;
    run_pair(c, s, &r);
    assert_int_equal(r.client_rc, ROOST_OK);
    assert_int_equal(r.server_rc, ROOST_OK);
    assert_true(roost_tls_handshake_done(s));

    /* The identity is the SHA-256 of the client certificate's DER. */
    assert_int_equal(roost_tls_peer_identity(s, &id), ROOST_OK);
    FILE *f = fopen(fx_path(&fx, "good.crt"), "r");
    assert_non_null(f);
    X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(cert);
    uint8_t md[32];
    unsigned int mdlen = 0;
    assert_int_equal(X509_digest(cert, EVP_sha256(), md, &mdlen), 1);
    /* The serial is the certificate's, big-endian (16 bytes from roost
     * pki), and the issuer hash that of its issuer's name. */
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    uint8_t serial[32];
    int serial_len = BN_bn2bin(bn, serial);
    BN_free(bn);
    assert_int_equal(id.serial_len, 16);
    assert_int_equal(serial_len, 16);
    assert_memory_equal(id.serial, serial, 16);
    assert_int_equal(
        id.issuer_hash,
        X509_NAME_hash_ex(X509_get_issuer_name(cert), NULL, NULL, NULL));
    X509_free(cert);
    assert_memory_equal(md, id.fingerprint, 32);
    assert_int_equal(strlen(id.fingerprint_hex), 64);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    assert_string_equal(hex, id.fingerprint_hex);
    assert_string_equal(id.subject, "CN=device-1");
    /* The fixture's certificates end 30 days from now. */
    int64_t left = id.not_after - (int64_t)time(NULL);
    assert_true(left > 29 * 86400 && left <= 30 * 86400);
    assert_int_equal(roost_tls_peer_identity(c, &id), ROOST_OK);
    assert_string_equal(id.subject, "CN=localhost");

    /* 100 KB client -> server, crossing several records. */
    static uint8_t big[100000], got[100000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7);
    assert_int_equal(roost_tls_write(c, big, sizeof(big), &em), ROOST_OK);
    assert_true(roost_tls_out_pending(c) > sizeof(big));
    shuttle(c, s);
    size_t total = 0, n;
    while (total < sizeof(got)) {
        int rc = roost_tls_read(s, got + total, sizeof(got) - total, &n, &em);
        assert_int_equal(rc, ROOST_OK);
        total += n;
    }
    assert_memory_equal(big, got, sizeof(big));
    assert_int_equal(roost_tls_read(s, got, 10, &n, &em), ROOST_EAGAIN);

    /* server -> client, then close_notify. */
    assert_int_equal(roost_tls_write(s, "pong", 4, &em), ROOST_OK);
    roost_tls_close_notify(s);
    shuttle(s, c);
    assert_int_equal(roost_tls_read(c, got, sizeof(got), &n, &em), ROOST_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(got, "pong", 4);
    assert_int_equal(roost_tls_read(c, got, sizeof(got), &n, &em),
                     ROOST_ECLOSED);
    roost_tls_destroy(c);
    roost_tls_destroy(s);
    roost_tls_ctx_destroy(cctx);
    roost_tls_ctx_destroy(sctx);
    roost_tls_destroy(NULL);
    roost_tls_ctx_destroy(NULL);
}

static void
unknown_ca_refused(void **state)
{
    (void)state;
    pair_result r;
    handshake_with("foreign", "ca", "localhost", &r);
    assert_int_equal(r.server_rc, ROOST_EAUTH);
    assert_non_null(strstr(r.server_em.text, "unable to get local issuer"));
    assert_int_equal(r.client_rc, ROOST_EAUTH);
}

static void
expired_refused(void **state)
{
    (void)state;
    pair_result r;
    handshake_with("expired", "ca", "localhost", &r);
    assert_int_equal(r.server_rc, ROOST_EAUTH);
    assert_non_null(strstr(r.server_em.text, "expired"));
    assert_int_equal(r.client_rc, ROOST_EAUTH);
}

static void
revoked_refused(void **state)
{
    (void)state;
    pair_result r;
    handshake_with("revoked", "ca", "localhost", &r);
    assert_int_equal(r.server_rc, ROOST_EAUTH);
    assert_non_null(strstr(r.server_em.text, "revoked"));
    assert_int_equal(r.client_rc, ROOST_EAUTH);
}

static void
no_client_cert_refused(void **state)
{
    (void)state;
    pair_result r;
    handshake_with(NULL, "ca", "localhost", &r);
    assert_int_equal(r.server_rc, ROOST_EAUTH);
    assert_non_null(strstr(r.server_em.text, "certificate"));
    assert_int_equal(r.client_rc, ROOST_EAUTH);
}

static void
wrong_host_name_refused(void **state)
{
    (void)state;
    pair_result r;
    handshake_with("good", "ca", "coordinator.example", &r);
    assert_int_equal(r.client_rc, ROOST_EAUTH);
    assert_non_null(strstr(r.client_em.text, "hostname mismatch"));
    assert_int_not_equal(r.server_rc, ROOST_OK);
    /* The IP SAN works as a host name too. */
    handshake_with("good", "ca", "127.0.0.1", &r);
    assert_int_equal(r.client_rc, ROOST_OK);
    assert_int_equal(r.server_rc, ROOST_OK);
}

static void
foreign_server_refused(void **state)
{
    (void)state;
    pair_result r;
    /* The client trusts only the foreign CA, so our server is unknown. */
    handshake_with("foreign", "evil", "localhost", &r);
    assert_int_equal(r.client_rc, ROOST_EAUTH);
    /* Both CAs carry the same name, so OpenSSL reports the foreign one as
     * an untrusted self-signed certificate in the chain. */
    assert_non_null(strstr(r.client_em.text, "peer certificate refused"));
    assert_int_not_equal(r.server_rc, ROOST_OK);
}

static void
garbage_and_caps(void **state)
{
    (void)state;
    roost_tls_ctx *sctx = fx_server_ctx(&fx);
    roost_tls *s;
    roost_errmsg em = {{0}};
    assert_int_equal(roost_tls_create(&s, sctx, NULL, 1024, &em), ROOST_OK);
    const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(roost_tls_feed(s, http, strlen(http), &em), ROOST_OK);
    assert_int_equal(roost_tls_handshake(s, &em), ROOST_ETLS);
    assert_true(strlen(em.text) > 0);
    roost_tls_destroy(s);

    /* The input cap holds. */
    assert_int_equal(roost_tls_create(&s, sctx, NULL, 1024, &em), ROOST_OK);
    static uint8_t junk[2048];
    assert_int_equal(roost_tls_feed(s, junk, 1000, &em), ROOST_OK);
    assert_int_equal(roost_tls_feed(s, junk, 100, &em), ROOST_ETOOBIG);
    assert_non_null(strstr(em.text, "cap"));
    assert_int_equal(roost_tls_in_pending(s), 1000);
    roost_tls_destroy(s);

    /* A truncated ClientHello: the server waits for more (the channel's
     * handshake timeout ends it), then a bad continuation is an error. */
    roost_tls_ctx *cctx = fx_client_ctx(&fx, "good", "ca");
    roost_tls *c;
    assert_int_equal(roost_tls_create(&s, sctx, NULL, 0, &em), ROOST_OK);
    assert_int_equal(roost_tls_create(&c, cctx, "localhost", 0, &em), ROOST_OK);
    assert_int_equal(roost_tls_handshake(c, &em), ROOST_EAGAIN);
    size_t n;
    const uint8_t *hello = roost_tls_out_peek(c, &n);
    assert_true(n > 20);
    assert_int_equal(roost_tls_feed(s, hello, n / 2, &em), ROOST_OK);
    assert_int_equal(roost_tls_handshake(s, &em), ROOST_EAGAIN);
    assert_false(roost_tls_handshake_done(s));
    memset(junk, 0xff, sizeof(junk));
    assert_int_equal(roost_tls_feed(s, junk, n, &em), ROOST_OK);
    assert_int_equal(roost_tls_handshake(s, &em), ROOST_ETLS);
    roost_tls_destroy(c);
    roost_tls_destroy(s);

    /* Context creation errors name the file. */
    roost_tls_ctx *bad;
    roost_tls_files f = {fx_path(&fx, "ca.crt"), fx_path(&fx, "server.crt"),
                         fx_path(&fx, "good.key"), fx_path(&fx, "ca.crl")};
    assert_int_equal(roost_tls_ctx_create_server(&bad, &f, &em), ROOST_EINVAL);
    assert_null(bad);
    assert_non_null(strstr(em.text, "does not match"));
    f.key_path = "/nonexistent/key.pem";
    assert_int_equal(roost_tls_ctx_create_server(&bad, &f, &em), ROOST_EIO);
    assert_non_null(strstr(em.text, "/nonexistent/key.pem"));
    f.key_path = fx_path(&fx, "server.key");
    f.crl_path = NULL;
    assert_int_equal(roost_tls_ctx_create_server(&bad, &f, &em), ROOST_EINVAL);
    f.crl_path = fx_path(&fx, "ca.crt");
    assert_int_equal(roost_tls_ctx_create_server(&bad, &f, &em), ROOST_EIO);
    assert_non_null(strstr(em.text, "CRL"));
    assert_int_equal(roost_tls_create(&s, cctx, NULL, 0, &em), ROOST_EINVAL);
    assert_int_equal(roost_tls_create(&s, sctx, "localhost", 0, &em),
                     ROOST_EINVAL);
    roost_tls_ctx_destroy(cctx);
    roost_tls_ctx_destroy(sctx);
}

/* Ciphertext lent in several pieces (as the channel lends a session's
 * batch of ZeroMQ messages): records split across pieces at odd offsets
 * decrypt intact; what OpenSSL did not consume is kept on release, and
 * read in the next step; release refuses past the input cap. */
static void
borrowed_pieces(void **state)
{
    (void)state;
    roost_tls_ctx *sctx = fx_server_ctx(&fx);
    roost_tls_ctx *cctx = fx_client_ctx(&fx, "good", "ca");
    roost_tls *s, *c;
    roost_errmsg em = {{0}};
    assert_int_equal(roost_tls_create(&s, sctx, NULL, 65536, &em), ROOST_OK);
    assert_int_equal(roost_tls_create(&c, cctx, "localhost", 0, &em), ROOST_OK);
    pair_result r;
    run_pair(c, s, &r);
    assert_int_equal(r.client_rc, ROOST_OK);
    assert_int_equal(r.server_rc, ROOST_OK);

    enum { LEN = 40000 };
    static uint8_t msg[LEN], got[LEN];
    for (size_t i = 0; i < LEN; i++)
        msg[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(roost_tls_write(c, msg, LEN, &em), ROOST_OK);
    size_t wire_len;
    const uint8_t *wire = roost_tls_out_peek(c, &wire_len);
    assert_true(wire_len > LEN);
    static uint8_t copy[LEN + 1024];
    memcpy(copy, wire, wire_len);
    roost_tls_out_consume(c, wire_len);

    /* All but the last 100 bytes, in pieces of 1, 4999, 0 and the rest. */
    size_t first = wire_len - 100;
    roost_tls_piece pieces[4] = {{copy, 1},
                                 {copy + 1, 4999},
                                 {copy + 5000, 0},
                                 {copy + 5000, first - 5000}};
    roost_tls_feed_borrowv(s, pieces, 4);
    size_t have = 0, n;
    while (have < LEN &&
           roost_tls_read(s, got + have, LEN - have, &n, &em) == ROOST_OK)
        have += n;
    assert_true(have > 0 && have < LEN);
    assert_true(roost_tls_in_pending(s) > 0); /* a partial last record */
    assert_int_equal(roost_tls_feed_release(s, &em), ROOST_OK);
    memset(copy, 0, first); /* the pieces are the caller's again */

    /* The rest arrives; the record completes from kept + new bytes. */
    roost_tls_feed_borrow(s, copy + first, wire_len - first);
    while (have < LEN &&
           roost_tls_read(s, got + have, LEN - have, &n, &em) == ROOST_OK)
        have += n;
    assert_int_equal(roost_tls_feed_release(s, &em), ROOST_OK);
    assert_int_equal(have, LEN);
    assert_memory_equal(got, msg, LEN);
    assert_int_equal(roost_tls_in_pending(s), 0);

    /* Unconsumed borrowed bytes count against the cap on release. */
    static uint8_t junk[40000];
    roost_tls_piece big[2] = {{junk, 40000}, {junk, 30000}};
    memset(junk, 0x17, sizeof(junk)); /* a plausible record header */
    roost_tls_feed_borrowv(s, big, 2);
    assert_int_equal(roost_tls_feed_release(s, &em), ROOST_ETOOBIG);
    assert_non_null(strstr(em.text, "cap"));

    roost_tls_destroy(c);
    roost_tls_destroy(s);
    roost_tls_ctx_destroy(cctx);
    roost_tls_ctx_destroy(sctx);
}

/* Write the first `keep` bytes of src (all of them if keep is 0), then
 * `extra` (may be NULL), to dst. */
static void
copy_file(const char *src, const char *dst, size_t keep, const char *extra)
{
    FILE *in = fopen(src, "rb");
    assert_non_null(in);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf), in);
    fclose(in);
    if (keep != 0 && keep < n)
        n = keep;
    FILE *out = fopen(dst, "wb");
    assert_non_null(out);
    assert_int_equal(fwrite(buf, 1, n, out), n);
    if (extra != NULL)
        fputs(extra, out);
    fclose(out);
}

/* Append the contents of src to dst. */
static void
append_file(const char *dst, const char *src)
{
    FILE *in = fopen(src, "rb");
    assert_non_null(in);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf), in);
    fclose(in);
    FILE *out = fopen(dst, "ab");
    assert_non_null(out);
    assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(out);
}

static size_t
file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return (size_t)n;
}

static int
server_ctx_with(const char *ca, const char *cert, const char *key,
                const char *crl, roost_errmsg *em)
{
    roost_tls_files f = {fx_path(&fx, ca), fx_path(&fx, cert),
                         fx_path(&fx, key), fx_path(&fx, crl)};
    roost_tls_ctx *ctx = NULL;
    int rc = roost_tls_ctx_create_server(&ctx, &f, em);
    if (rc == ROOST_OK)
        assert_non_null(ctx);
    else
        assert_null(ctx);
    roost_tls_ctx_destroy(ctx);
    return rc;
}

/* A server context whose own certificate no client would accept (another
 * CA's, expired, or a client certificate) cannot be built: otherwise a
 * reload with such a file would be installed and refuse every client. */
static void
own_certificate_checked(void **state)
{
    (void)state;
    roost_errmsg em = {{0}};
    /* server.crt is not from the CA in evil.crt. */
    assert_int_equal(server_ctx_with("evil.crt", "server.crt", "server.key",
                                     "evil.crl", &em),
                     ROOST_EAUTH);
    assert_non_null(strstr(em.text, fx_path(&fx, "server.crt")));
    assert_non_null(strstr(em.text, "does not verify"));

    /* Expired. */
    roost_pki_validity past = {-10 * ROOST_PKI_DAY_S, -ROOST_PKI_DAY_S};
    const char *sans[] = {"127.0.0.1"};
    fx_check(roost_pki_server(fx_path(&fx, "ca.key"), fx_path(&fx, "ca.crt"),
                              fx_path(&fx, "old-server.key"),
                              fx_path(&fx, "old-server.crt"), "localhost", sans,
                              1, &past, &em),
             &em, "expired server");
    assert_int_equal(server_ctx_with("ca.crt", "old-server.crt",
                                     "old-server.key", "ca.crl", &em),
                     ROOST_EAUTH);
    assert_non_null(strstr(em.text, "expired"));

    /* A client certificate (extendedKeyUsage clientAuth) as the server's. */
    assert_int_equal(
        server_ctx_with("ca.crt", "good.crt", "good.key", "ca.crl", &em),
        ROOST_EAUTH);
    assert_non_null(strstr(em.text, "purpose"));

    /* The deployment's own files still work. */
    assert_int_equal(
        server_ctx_with("ca.crt", "server.crt", "server.key", "ca.crl", &em),
        ROOST_OK);
}

/* An encrypted key is refused with a message saying so, without asking
 * for a passphrase: OpenSSL's default would read it from the terminal or
 * from standard input, blocking a daemon's reload or eating the input of
 * the application that links libroost. Run in a child without a
 * controlling terminal whose standard input holds a line. */
static void
encrypted_key_refused(void **state)
{
    (void)state;
    FILE *f = fopen(fx_path(&fx, "server.key"), "r");
    assert_non_null(f);
    EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(key);
    f = fopen(fx_path(&fx, "server-enc.key"), "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, key, EVP_aes_256_cbc(),
                                          (const unsigned char *)"secret", 6,
                                          NULL, NULL),
                     1);
    fclose(f);
    EVP_PKEY_free(key);

    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], "secret\n", 7), 7);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setsid(); /* no /dev/tty */
        dup2(fds[0], 0);
        roost_errmsg cem = {{0}};
        int rc = server_ctx_with("ca.crt", "server.crt", "server-enc.key",
                                 "ca.crl", &cem);
        int left = 0;
        int fl = fcntl(0, F_GETFL);
        fcntl(0, F_SETFL, fl | O_NONBLOCK);
        char c;
        while (read(0, &c, 1) == 1)
            left++;
        fprintf(stderr, "encrypted key: %s (%s), %d stdin bytes left\n",
                roost_errname(rc), cem.text, left);
        _exit(rc == ROOST_EINVAL && strstr(cem.text, "encrypted") != NULL &&
                      strstr(cem.text, "server-enc.key") != NULL && left == 7
                  ? 0
                  : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(fds[0]);
    close(fds[1]);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Malformed or unusual CA and CRL files. */
static void
malformed_ca_and_crl_files(void **state)
{
    (void)state;
    roost_errmsg em = {{0}};
    const char *crl = fx_path(&fx, "ca.crl");
    /* A CRL file whose second CRL is cut short: refused, not read up to
     * the damage and accepted. */
    copy_file(crl, fx_path(&fx, "half.crl"), file_size(crl) / 2, NULL);
    copy_file(crl, fx_path(&fx, "two.crl"), 0, NULL);
    append_file(fx_path(&fx, "two.crl"), fx_path(&fx, "half.crl"));
    assert_int_equal(
        server_ctx_with("ca.crt", "server.crt", "server.key", "two.crl", &em),
        ROOST_EIO);
    assert_non_null(strstr(em.text, fx_path(&fx, "two.crl")));
    /* A truncated CRL alone. */
    assert_int_equal(
        server_ctx_with("ca.crt", "server.crt", "server.key", "half.crl", &em),
        ROOST_EIO);
    assert_non_null(strstr(em.text, "half.crl"));
    /* An empty CRL file. */
    fclose(fopen(fx_path(&fx, "empty.crl"), "w"));
    assert_int_equal(
        server_ctx_with("ca.crt", "server.crt", "server.key", "empty.crl", &em),
        ROOST_EIO);
    /* A truncated CA file. */
    const char *ca = fx_path(&fx, "ca.crt");
    copy_file(ca, fx_path(&fx, "half-ca.crt"), file_size(ca) / 2, NULL);
    assert_int_equal(server_ctx_with("half-ca.crt", "server.crt", "server.key",
                                     "ca.crl", &em),
                     ROOST_EIO);
    assert_non_null(strstr(em.text, "half-ca.crt"));
    /* A truncated certificate, and a certificate where the key belongs. */
    const char *crt = fx_path(&fx, "server.crt");
    copy_file(crt, fx_path(&fx, "half-server.crt"), file_size(crt) / 2, NULL);
    assert_int_equal(server_ctx_with("ca.crt", "half-server.crt", "server.key",
                                     "ca.crl", &em),
                     ROOST_EIO);
    assert_non_null(strstr(em.text, "half-server.crt"));
    assert_int_equal(
        server_ctx_with("ca.crt", "server.crt", "server.crt", "ca.crl", &em),
        ROOST_EIO);
    assert_non_null(strstr(em.text, "private key"));
}

/* A CA file holding many certificates, the deployment's CA last: its
 * CRL is found and clients it issued get in; those of another CA in the
 * file are refused for want of their CA's CRL (fail closed). */
static void
ca_file_with_many_certs(void **state)
{
    (void)state;
    const char *many = fx_path(&fx, "many.crt");
    fclose(fopen(many, "w"));
    for (int i = 0; i < 40; i++)
        append_file(many, fx_path(&fx, "evil.crt"));
    append_file(many, fx_path(&fx, "ca.crt"));
    roost_tls_files sf = {many, fx_path(&fx, "server.crt"),
                          fx_path(&fx, "server.key"), fx_path(&fx, "ca.crl")};
    roost_errmsg em = {{0}};
    roost_tls_ctx *sctx;
    assert_int_equal(roost_tls_ctx_create_server(&sctx, &sf, &em), ROOST_OK);
    const char *clients[] = {"good", "revoked", "foreign"};
    const char *cas[] = {"ca", "ca", "evil"};
    const int want[] = {ROOST_OK, ROOST_EAUTH, ROOST_EAUTH};
    for (int i = 0; i < 3; i++) {
        roost_tls_ctx *cctx = fx_client_ctx(&fx, clients[i], cas[i]);
        roost_tls *s, *c;
        assert_int_equal(roost_tls_create(&s, sctx, NULL, 0, &em), ROOST_OK);
        /* The foreign client trusts only its own CA: let it trust ours so
         * that the server's verdict on its certificate is what fails. */
        roost_tls_ctx *trust =
            i == 2 ? fx_client_ctx(&fx, "foreign", "ca") : NULL;
        assert_int_equal(
            roost_tls_create(&c, trust ? trust : cctx, "localhost", 0, &em),
            ROOST_OK);
        pair_result r;
        run_pair(c, s, &r);
        assert_int_equal(r.server_rc, want[i]);
        roost_tls_destroy(c);
        roost_tls_destroy(s);
        roost_tls_ctx_destroy(cctx);
        roost_tls_ctx_destroy(trust);
    }
    roost_tls_ctx_destroy(sctx);
}

/* Certificates of the deployment CA that are not valid client
 * certificates: the server's own (extendedKeyUsage serverAuth only) makes
 * no client context at all, naming the file; one not valid yet is refused
 * by the server. (A server's refusal of the wrong purpose, and
 * certificates without extendedKeyUsage, which only other tools make, are
 * tested with openssl s_client in tests/server/test_eku.sh.) */
static void
wrong_purpose_and_not_yet_valid_refused(void **state)
{
    (void)state;
    roost_tls_files f = {fx_path(&fx, "ca.crt"), fx_path(&fx, "server.crt"),
                         fx_path(&fx, "server.key"), NULL};
    roost_errmsg em = {{0}};
    roost_tls_ctx *ctx = NULL;
    assert_int_equal(roost_tls_ctx_create_client(&ctx, &f, &em), ROOST_EAUTH);
    assert_null(ctx);
    assert_non_null(strstr(em.text, "server.crt"));
    assert_non_null(strstr(em.text, "cannot act as a TLS client"));
    assert_non_null(strstr(em.text, "lacks clientAuth"));

    pair_result r;
    roost_pki_validity future = {ROOST_PKI_DAY_S, 30 * ROOST_PKI_DAY_S};
    fx_client(&fx, "ca", "future", "device-future", future);
    handshake_with("future", "ca", "localhost", &r);
    assert_int_equal(r.server_rc, ROOST_EAUTH);
    assert_non_null(strstr(r.server_em.text, "not yet valid"));
    /* The client learns that its certificate was refused (by the
     * server's alert). */
    assert_int_equal(r.client_rc, ROOST_EAUTH);
}

/* roost_tls_ctx_trusts: the CA a session was verified to is found in a
 * context built from the same CA file (again), not in one built from
 * another CA's; an identity without an anchor is not trusted. */
static void
trust_anchor_rechecked(void **state)
{
    (void)state;
    roost_tls_ctx *sctx = fx_server_ctx(&fx);
    roost_tls_ctx *cctx = fx_client_ctx(&fx, "good", "ca");
    roost_tls *s, *c;
    roost_errmsg em = {{0}};
    assert_int_equal(roost_tls_create(&s, sctx, NULL, 0, &em), ROOST_OK);
    assert_int_equal(roost_tls_create(&c, cctx, "localhost", 0, &em), ROOST_OK);
    pair_result r;
    run_pair(c, s, &r);
    assert_int_equal(r.server_rc, ROOST_OK);
    roost_tls_identity id;
    assert_int_equal(roost_tls_peer_identity(s, &id), ROOST_OK);
    roost_tls_ctx *again = fx_server_ctx(&fx);
    assert_true(roost_tls_ctx_trusts(sctx, &id));
    assert_true(roost_tls_ctx_trusts(again, &id));

    roost_tls_ctx *other = fx_foreign_server_ctx(&fx);
    assert_false(roost_tls_ctx_trusts(other, &id));
    memset(id.anchor_key, 0, sizeof(id.anchor_key));
    assert_false(roost_tls_ctx_trusts(sctx, &id));

    roost_tls_ctx_destroy(other);
    roost_tls_ctx_destroy(again);
    roost_tls_destroy(c);
    roost_tls_destroy(s);
    roost_tls_ctx_destroy(cctx);
    roost_tls_ctx_destroy(sctx);
}

/* A server context on the fixture's server certificate with the CA file
 * `ca` and the CRL file `crl`; server_ctx_crl with the fixture's CA. */
static roost_tls_ctx *
server_ctx_ca_crl(const char *ca, const char *crl)
{
    roost_tls_files f = {fx_path(&fx, ca), fx_path(&fx, "server.crt"),
                         fx_path(&fx, "server.key"), fx_path(&fx, crl)};
    roost_errmsg em = {{0}};
    roost_tls_ctx *ctx = NULL;
    assert_int_equal(roost_tls_ctx_create_server(&ctx, &f, &em), ROOST_OK);
    return ctx;
}

static roost_tls_ctx *
server_ctx_crl(const char *crl)
{
    return server_ctx_ca_crl("ca.crt", crl);
}

static X509 *
read_pem_cert(const char *name)
{
    FILE *f = fopen(fx_path(&fx, name), "r");
    assert_non_null(f);
    X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(cert);
    return cert;
}

/* CRLs from roost pki carry an authorityKeyIdentifier (the CA's
 * subjectKeyIdentifier) and a cRLNumber (RFC 5280 5.2.1, 5.2.3); CRLs
 * without either (as roost pki wrote them before, or as other tools may)
 * are still accepted and still refuse the certificates they list. */
static void
crl_with_and_without_extensions(void **state)
{
    (void)state;
    X509 *ca = read_pem_cert("ca.crt");
    X509 *revoked = read_pem_cert("revoked.crt");
    FILE *f = fopen(fx_path(&fx, "ca.crl"), "r");
    assert_non_null(f);
    X509_CRL *crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(crl);
    AUTHORITY_KEYID *aki =
        X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, NULL, NULL);
    assert_non_null(aki);
    assert_non_null(aki->keyid);
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca);
    assert_non_null(ski);
    assert_int_equal(ASN1_OCTET_STRING_cmp(aki->keyid, ski), 0);
    AUTHORITY_KEYID_free(aki);
    ASN1_INTEGER *number =
        X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    assert_non_null(number);
    /* init issued number 1, the fixture's revocation number 2. */
    assert_int_equal(ASN1_INTEGER_get(number), 2);
    ASN1_INTEGER_free(number);
    X509_CRL_free(crl);

    /* The same revocation in a CRL without extensions. */
    f = fopen(fx_path(&fx, "ca.key"), "r");
    assert_non_null(f);
    EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(key);
    crl = X509_CRL_new();
    X509_REVOKED *entry = X509_REVOKED_new();
    ASN1_TIME *last = X509_gmtime_adj(NULL, -600);
    ASN1_TIME *next = X509_gmtime_adj(NULL, 86400);
    assert_true(crl != NULL && entry != NULL && last != NULL && next != NULL);
    assert_int_equal(X509_CRL_set_version(crl, 1), 1);
    assert_int_equal(X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)),
                     1);
    assert_int_equal(X509_CRL_set1_lastUpdate(crl, last), 1);
    assert_int_equal(X509_CRL_set1_nextUpdate(crl, next), 1);
    assert_int_equal(
        X509_REVOKED_set_serialNumber(entry, X509_get_serialNumber(revoked)),
        1);
    assert_int_equal(X509_REVOKED_set_revocationDate(entry, last), 1);
    assert_int_equal(X509_CRL_add0_revoked(crl, entry), 1);
    assert_true(X509_CRL_sign(crl, key, EVP_sha256()) > 0);
    assert_int_equal(X509_CRL_get_ext_count(crl), 0);
    f = fopen(fx_path(&fx, "plain.crl"), "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509_CRL(f, crl), 1);
    fclose(f);
    X509_CRL_free(crl);
    ASN1_TIME_free(last);
    ASN1_TIME_free(next);
    EVP_PKEY_free(key);
    X509_free(revoked);
    X509_free(ca);

    pair_result r;
    roost_tls_identity id;
    handshake_on(server_ctx_crl("plain.crl"), "good", "ca", "localhost", &r,
                 &id);
    assert_int_equal(r.server_rc, ROOST_OK);
    assert_int_equal(r.client_rc, ROOST_OK);
    handshake_on(server_ctx_crl("plain.crl"), "revoked", "ca", "localhost", &r,
                 NULL);
    assert_int_equal(r.server_rc, ROOST_EAUTH);
    assert_non_null(strstr(r.server_em.text, "revoked"));
    /* A session checked against the new-style CRL, rechecked against the
     * old-style one listing the same certificate. */
    roost_tls_ctx *plain = server_ctx_crl("plain.crl");
    handshake_on(fx_server_ctx(&fx), "good", "ca", "localhost", &r, &id);
    assert_int_equal(roost_tls_ctx_recheck(plain, &id), ROOST_TLS_VALID);
    roost_tls_crl_info info;
    assert_int_equal(roost_tls_ctx_crl_info(plain, &info), ROOST_OK);
    assert_int_equal(info.n_revoked, 1);
    roost_tls_ctx_destroy(plain);
}

/* roost_tls_ctx_recheck: an identity verified under one context, asked
 * again of contexts built from other files. A serial that cannot be
 * looked up (serial_len 0) passes only as long as the CRLs are those its
 * handshake checked; any other CRL cannot clear it (fail closed). */
static void
recheck_verdicts(void **state)
{
    (void)state;
    pair_result r;
    roost_tls_identity id;
    handshake_on(fx_server_ctx(&fx), "good2", "ca", "localhost", &r, &id);
    assert_int_equal(r.server_rc, ROOST_OK);
    roost_tls_identity unknown = id;
    unknown.serial_len = 0;

    /* The same files, read again: the same CRLs. */
    roost_tls_ctx *same = fx_server_ctx(&fx);
    assert_int_equal(roost_tls_ctx_recheck(same, &id), ROOST_TLS_VALID);
    assert_int_equal(roost_tls_ctx_recheck(same, &unknown), ROOST_TLS_VALID);

    /* The CRL re-issued with the same entries: another CRL. */
    roost_errmsg em = {{0}};
    copy_file(fx_path(&fx, "ca.crl"), fx_path(&fx, "reissued.crl"), 0, NULL);
    fx_check(roost_pki_crl(fx_path(&fx, "ca.key"), fx_path(&fx, "ca.crt"),
                           fx_path(&fx, "reissued.crl"), 30, NULL, &em),
             &em, "re-issue");
    roost_tls_ctx *reissued = server_ctx_crl("reissued.crl");
    assert_int_equal(roost_tls_ctx_recheck(reissued, &id), ROOST_TLS_VALID);
    assert_int_equal(roost_tls_ctx_recheck(reissued, &unknown),
                     ROOST_TLS_UNCHECKED);

    /* A CRL that revokes it. */
    copy_file(fx_path(&fx, "ca.crl"), fx_path(&fx, "good2-revoked.crl"), 0,
              NULL);
    fx_check(roost_pki_revoke(fx_path(&fx, "ca.key"), fx_path(&fx, "ca.crt"),
                              fx_path(&fx, "good2-revoked.crl"),
                              fx_path(&fx, "good2.crt"), 30, &em),
             &em, "revoke good2");
    roost_tls_ctx *revoking = server_ctx_crl("good2-revoked.crl");
    assert_int_equal(roost_tls_ctx_recheck(revoking, &id), ROOST_TLS_REVOKED);
    assert_int_equal(roost_tls_ctx_recheck(revoking, &unknown),
                     ROOST_TLS_UNCHECKED);

    /* Another CA: untrusted, whatever its serial. */
    roost_tls_ctx *other = fx_foreign_server_ctx(&fx);
    assert_int_equal(roost_tls_ctx_recheck(other, &id), ROOST_TLS_UNTRUSTED);
    assert_int_equal(roost_tls_ctx_recheck(other, &unknown),
                     ROOST_TLS_UNTRUSTED);

    roost_tls_ctx_destroy(other);
    roost_tls_ctx_destroy(revoking);
    roost_tls_ctx_destroy(reissued);
    roost_tls_ctx_destroy(same);
}

/* A CRL file cut from two: `a` then `b` (fixture names), into `out`. */
static void
crl_bundle(const char *out, const char *a, const char *b)
{
    copy_file(fx_path(&fx, a), fx_path(&fx, out), 0, NULL);
    append_file(fx_path(&fx, out), fx_path(&fx, b));
}

/* A copy of the fixture's CRL (cRLNumber 2, listing `revoked`) under
 * `name`, re-issued by roost pki `reissues` times and then, if `revoke`
 * is not NULL, once more with that certificate added: each step takes the
 * next cRLNumber. */
static void
crl_variant(const char *name, int reissues, const char *revoke)
{
    roost_errmsg em = {{0}};
    copy_file(fx_path(&fx, "ca.crl"), fx_path(&fx, name), 0, NULL);
    for (int i = 0; i < reissues; i++)
        fx_check(roost_pki_crl(fx_path(&fx, "ca.key"), fx_path(&fx, "ca.crt"),
                               fx_path(&fx, name), 30, NULL, &em),
                 &em, "re-issue");
    if (revoke != NULL)
        fx_check(roost_pki_revoke(fx_path(&fx, "ca.key"),
                                  fx_path(&fx, "ca.crt"), fx_path(&fx, name),
                                  fx_path(&fx, revoke), 30, &em),
                 &em, "revoke");
}

/* Which CRL applies when a CRL file holds several of one CA: the newest
 * (highest cRLNumber). good2 is listed by cRLNumber 3 and not by the
 * newer cRLNumber 4 (as if un-revoked, or an older CRL left in the file):
 * in either order the handshake lets it in, a recheck keeps its session,
 * and only the newest CRL is in force. Listed again by cRLNumber 5, it is
 * refused and revoked. Two different CRLs under one number are refused
 * (a CRL re-signed under a number already used); the same CRL twice is
 * one CRL. */
static void
recheck_asks_the_newest_crl(void **state)
{
    (void)state;
    crl_variant("g2-listed.crl", 0, "good2.crt"); /* 3, lists good2 */
    crl_variant("g2-clear.crl", 2, NULL);         /* 4, does not */
    crl_bundle("old-new.crl", "g2-listed.crl", "g2-clear.crl");
    crl_bundle("new-old.crl", "g2-clear.crl", "g2-listed.crl");
    const char *bundles[] = {"old-new.crl", "new-old.crl"};
    roost_tls_identity id;
    for (int i = 0; i < 2; i++) {
        pair_result r;
        handshake_on(server_ctx_crl(bundles[i]), "good2", "ca", "localhost", &r,
                     &id);
        assert_int_equal(r.server_rc, ROOST_OK);
        assert_int_equal(r.client_rc, ROOST_OK);
        roost_tls_ctx *ctx = server_ctx_crl(bundles[i]);
        assert_int_equal(roost_tls_ctx_recheck(ctx, &id), ROOST_TLS_VALID);
        roost_tls_crl_info info;
        assert_int_equal(roost_tls_ctx_crl_info(ctx, &info), ROOST_OK);
        assert_int_equal(info.n_crls, 1);
        assert_int_equal(info.n_revoked, 1); /* `revoked` only */
        roost_tls_ctx_destroy(ctx);
        /* The certificate both CRLs list stays revoked. */
        handshake_on(server_ctx_crl(bundles[i]), "revoked", "ca", "localhost",
                     &r, NULL);
        assert_int_equal(r.server_rc, ROOST_EAUTH);
        assert_non_null(strstr(r.server_em.text, "revoked"));
    }

    crl_variant("g2-relisted.crl", 2, "good2.crt"); /* 5, lists it again */
    crl_bundle("relisted.crl", "g2-relisted.crl", "g2-clear.crl");
    roost_tls_ctx *ctx = server_ctx_crl("relisted.crl");
    assert_int_equal(roost_tls_ctx_recheck(ctx, &id), ROOST_TLS_REVOKED);
    roost_tls_ctx_destroy(ctx);
    pair_result r;
    handshake_on(server_ctx_crl("relisted.crl"), "good2", "ca", "localhost", &r,
                 NULL);
    assert_int_equal(r.server_rc, ROOST_EAUTH);

    roost_errmsg em = {{0}};
    crl_variant("other3.crl", 1, NULL); /* 3, does not list good2 */
    crl_bundle("twice3.crl", "g2-listed.crl", "other3.crl");
    assert_int_equal(server_ctx_with("ca.crt", "server.crt", "server.key",
                                     "twice3.crl", &em),
                     ROOST_EAUTH);
    assert_non_null(strstr(em.text, "twice3.crl"));
    assert_non_null(strstr(em.text, "cRLNumber 3"));
    crl_bundle("same-twice.crl", "g2-clear.crl", "g2-clear.crl");
    ctx = server_ctx_crl("same-twice.crl");
    roost_tls_crl_info info;
    assert_int_equal(roost_tls_ctx_crl_info(ctx, &info), ROOST_OK);
    assert_int_equal(info.n_crls, 1);
    roost_tls_ctx_destroy(ctx);
}

/* Write to `out` a client certificate as roost pki sign issues it, for the
 * key of fixture certificate `key_of`, issued by the CA under ca_prefix
 * with the serial number of fixture certificate `serial_of`: what a CA
 * replaced under the same name with sequential serials issues. */
static void
issue_with_serial(const char *ca_prefix, const char *key_of,
                  const char *serial_of, const char *out, const char *cn)
{
    char name[64];
    snprintf(name, sizeof(name), "%s.crt", ca_prefix);
    X509 *ca = read_pem_cert(name);
    snprintf(name, sizeof(name), "%s.key", ca_prefix);
    FILE *f = fopen(fx_path(&fx, name), "r");
    assert_non_null(f);
    EVP_PKEY *ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(ca_key);
    snprintf(name, sizeof(name), "%s.crt", key_of);
    X509 *holder = read_pem_cert(name);
    snprintf(name, sizeof(name), "%s.crt", serial_of);
    X509 *twin = read_pem_cert(name);

    X509 *cert = X509_new();
    assert_non_null(cert);
    assert_int_equal(X509_set_version(cert, 2), 1);
    assert_int_equal(X509_set_serialNumber(cert, X509_get_serialNumber(twin)),
                     1);
    assert_int_equal(X509_set_issuer_name(cert, X509_get_subject_name(ca)), 1);
    X509_NAME *subject = X509_NAME_new();
    assert_non_null(subject);
    assert_int_equal(X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                                                (const unsigned char *)cn, -1,
                                                -1, 0),
                     1);
    assert_int_equal(X509_set_subject_name(cert, subject), 1);
    X509_NAME_free(subject);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(cert), -60));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(cert), 86400));
    assert_int_equal(X509_set_pubkey(cert, X509_get0_pubkey(holder)), 1);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, ca, cert, NULL, NULL, 0);
    static const char *const exts[][2] = {
        {"basicConstraints", "critical,CA:FALSE"},
        {"keyUsage", "critical,digitalSignature"},
        {"extendedKeyUsage", "clientAuth"},
        {"authorityKeyIdentifier", "keyid:always"},
    };
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        X509_EXTENSION *ext =
            X509V3_EXT_conf(NULL, &v3, exts[i][0], exts[i][1]);
        assert_non_null(ext);
        assert_int_equal(X509_add_ext(cert, ext, -1), 1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(cert, ca_key, EVP_sha256()) > 0);
    f = fopen(fx_path(&fx, out), "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, cert), 1);
    fclose(f);
    X509_free(cert);
    X509_free(twin);
    X509_free(holder);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
}

/* Two CAs of one name in the CA file (the CA replaced, the old one still
 * trusted for a while), each with its CRL in the CRL file. The new CA
 * (the fixture's "evil", of the same name) issued `twin` with the serial
 * of the old CA's revoked certificate: only the new CA's CRL applies to
 * it (matched by its authorityKeyIdentifier and signature), so it gets in
 * and a recheck keeps it, while the old CA's revoked certificate stays
 * refused. Revoked by its own CA, the twin is revoked. */
static void
recheck_asks_the_issuers_crl(void **state)
{
    (void)state;
    issue_with_serial("evil", "good", "revoked", "twin.crt", "device-twin");
    copy_file(fx_path(&fx, "good.key"), fx_path(&fx, "twin.key"), 0, NULL);
    copy_file(fx_path(&fx, "ca.crt"), fx_path(&fx, "two-cas.crt"), 0, NULL);
    append_file(fx_path(&fx, "two-cas.crt"), fx_path(&fx, "evil.crt"));
    crl_bundle("two-cas.crl", "ca.crl", "evil.crl");
    roost_errmsg em = {{0}};
    roost_tls_ctx *ctx = server_ctx_ca_crl("two-cas.crt", "two-cas.crl");
    pair_result r;
    roost_tls_identity id;
    roost_tls_ctx_ref(ctx);
    handshake_on(ctx, "twin", "ca", "localhost", &r, &id);
    assert_int_equal(r.server_rc, ROOST_OK);
    assert_int_equal(roost_tls_ctx_recheck(ctx, &id), ROOST_TLS_VALID);
    roost_tls_ctx_ref(ctx);
    handshake_on(ctx, "revoked", "ca", "localhost", &r, NULL);
    assert_int_equal(r.server_rc, ROOST_EAUTH);
    assert_non_null(strstr(r.server_em.text, "revoked"));
    roost_tls_ctx_destroy(ctx);

    copy_file(fx_path(&fx, "evil.crl"), fx_path(&fx, "evil-twin.crl"), 0, NULL);
    fx_check(roost_pki_revoke(fx_path(&fx, "evil.key"),
                              fx_path(&fx, "evil.crt"),
                              fx_path(&fx, "evil-twin.crl"),
                              fx_path(&fx, "twin.crt"), 30, &em),
             &em, "revoke twin");
    crl_bundle("two-cas-twin.crl", "ca.crl", "evil-twin.crl");
    ctx = server_ctx_ca_crl("two-cas.crt", "two-cas-twin.crl");
    assert_int_equal(roost_tls_ctx_recheck(ctx, &id), ROOST_TLS_REVOKED);
    roost_tls_ctx_ref(ctx);
    handshake_on(ctx, "twin", "ca", "localhost", &r, NULL);
    assert_int_equal(r.server_rc, ROOST_EAUTH);
    roost_tls_ctx_destroy(ctx);
}

/* A context that checks CRLs but holds none of a session's issuer: the
 * handshake of that CA's devices is refused ("unable to get certificate
 * CRL"), and the recheck closes their open sessions too, rather than
 * keeping what no new handshake would let in. The other CA (of the same
 * name) has its CRL: its devices still get in. Runs after
 * recheck_asks_the_issuers_crl, whose files it reads. */
static void
recheck_without_the_issuers_crl(void **state)
{
    (void)state;
    pair_result r;
    roost_tls_identity id;
    handshake_on(server_ctx_ca_crl("two-cas.crt", "two-cas.crl"), "good", "ca",
                 "localhost", &r, &id);
    assert_int_equal(r.server_rc, ROOST_OK);

    /* The other CA's CRL only. */
    roost_tls_ctx *ctx = server_ctx_ca_crl("two-cas.crt", "evil.crl");
    assert_int_equal(roost_tls_ctx_recheck(ctx, &id), ROOST_TLS_NO_CRL);
    roost_tls_ctx_ref(ctx);
    handshake_on(ctx, "good", "ca", "localhost", &r, NULL);
    assert_int_equal(r.server_rc, ROOST_EAUTH);
    roost_tls_identity twin;
    roost_tls_ctx_ref(ctx);
    handshake_on(ctx, "twin", "ca", "localhost", &r, &twin);
    assert_int_equal(r.server_rc, ROOST_OK);
    assert_int_equal(roost_tls_ctx_recheck(ctx, &twin), ROOST_TLS_VALID);
    roost_tls_ctx_destroy(ctx);
}

/* What a context reports about its CRLs in force (roost serve compares
 * and records it): one per issuer with its name, the SHA-256 of its CA's
 * key, its cRLNumber in hex ("0" without one) and where it stood in the
 * file; and how numbers compare. Runs after recheck_asks_the_newest_crl,
 * whose files it reads. */
static void
crl_issuers_reported(void **state)
{
    (void)state;
    X509 *ca = read_pem_cert("ca.crt");
    uint8_t ca_key[ROOST_TLS_FINGERPRINT_LEN];
    unsigned int n = 0;
    assert_int_equal(X509_pubkey_digest(ca, EVP_sha256(), ca_key, &n), 1);
    X509_free(ca);
    roost_tls_ctx *ctx = server_ctx_crl("old-new.crl");
    assert_int_equal(roost_tls_ctx_crl_count(ctx), 1);
    roost_tls_crl_issuer ci;
    assert_int_equal(roost_tls_ctx_crl_get(ctx, 0, &ci), ROOST_OK);
    assert_string_equal(ci.issuer, "CN=Roost Test CA");
    assert_memory_equal(ci.issuer_key, ca_key, sizeof(ca_key));
    assert_string_equal(ci.number, "4");
    assert_true(ci.numbered);
    assert_int_equal(ci.index, 2);
    /* issuer_id: SHA-256 over the key's digest and the name's DER (the
     * CRL's issuer name is the CA's subject). */
    X509 *ca_cert = read_pem_cert("ca.crt");
    unsigned char *der = NULL;
    int der_len = i2d_X509_NAME(X509_get_subject_name(ca_cert), &der);
    assert_true(der_len > 0 && der_len <= 256);
    uint8_t id_in[ROOST_TLS_FINGERPRINT_LEN + 256], id[32];
    memcpy(id_in, ca_key, sizeof(ca_key));
    memcpy(id_in + sizeof(ca_key), der, (size_t)der_len);
    assert_int_equal(EVP_Digest(id_in, sizeof(ca_key) + (size_t)der_len, id, &n,
                                EVP_sha256(), NULL),
                     1);
    assert_memory_equal(ci.issuer_id, id, sizeof(id));
    OPENSSL_free(der);
    X509_free(ca_cert);
    assert_int_equal(roost_tls_ctx_crl_get(ctx, 1, &ci), ROOST_EINVAL);
    roost_tls_ctx_destroy(ctx);
    ctx = server_ctx_crl("plain.crl");
    assert_int_equal(roost_tls_ctx_crl_get(ctx, 0, &ci), ROOST_OK);
    assert_string_equal(ci.number, "0");
    assert_false(ci.numbered);
    roost_tls_ctx_destroy(ctx);
    /* Two CAs of one name: two issuers. */
    roost_tls_files f = {fx_path(&fx, "two-cas.crt"),
                         fx_path(&fx, "server.crt"), fx_path(&fx, "server.key"),
                         fx_path(&fx, "two-cas.crl")};
    roost_errmsg em = {{0}};
    assert_int_equal(roost_tls_ctx_create_server(&ctx, &f, &em), ROOST_OK);
    assert_int_equal(roost_tls_ctx_crl_count(ctx), 2);
    roost_tls_crl_issuer other;
    assert_int_equal(roost_tls_ctx_crl_get(ctx, 0, &ci), ROOST_OK);
    assert_int_equal(roost_tls_ctx_crl_get(ctx, 1, &other), ROOST_OK);
    assert_string_equal(ci.issuer, other.issuer);
    assert_memory_not_equal(ci.issuer_key, other.issuer_key,
                            sizeof(ci.issuer_key));
    assert_memory_not_equal(ci.issuer_id, other.issuer_id,
                            sizeof(ci.issuer_id));
    roost_tls_ctx_destroy(ctx);

    assert_true(roost_tls_crl_number_cmp("f", "10") < 0);
    assert_true(roost_tls_crl_number_cmp("10", "f") > 0);
    assert_true(roost_tls_crl_number_cmp("a", "b") < 0);
    assert_int_equal(roost_tls_crl_number_cmp("0", "0"), 0);
    assert_true(roost_tls_crl_number_cmp("0", "1") < 0);
}

/* Write to `out` the CRL of fixture file `src` with its INTEGER extension
 * `nid` (cRLNumber, or deltaCRLIndicator's base number) set to `hex`
 * (BN_hex2bn: a leading '-' makes it negative), re-signed by the
 * fixture's CA. */
static void
crl_with_number_ext(const char *out, const char *src, int nid, const char *hex)
{
    FILE *f = fopen(fx_path(&fx, src), "r");
    assert_non_null(f);
    X509_CRL *crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(crl);
    f = fopen(fx_path(&fx, "ca.key"), "r");
    assert_non_null(f);
    EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(key);
    BIGNUM *bn = NULL;
    assert_true(BN_hex2bn(&bn, hex) > 0);
    ASN1_INTEGER *num = BN_to_ASN1_INTEGER(bn, NULL);
    assert_non_null(num);
    assert_int_equal(
        X509_CRL_add1_ext_i2d(crl, nid, num, 0, X509V3_ADD_REPLACE), 1);
    assert_true(X509_CRL_sign(crl, key, EVP_sha256()) > 0);
    f = fopen(fx_path(&fx, out), "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509_CRL(f, crl), 1);
    fclose(f);
    ASN1_INTEGER_free(num);
    BN_free(bn);
    EVP_PKEY_free(key);
    X509_CRL_free(crl);
}

/* The CRL of fixture file `src` with its cRLNumber set to `hex`. */
static void
crl_renumbered(const char *out, const char *src, const char *hex)
{
    crl_with_number_ext(out, src, NID_crl_number, hex);
}

/* A delta CRL (deltaCRLIndicator) is refused, naming it: Roost never asks
 * OpenSSL for delta CRLs, so one would be loaded and never consulted. */
static void
delta_crl_refused(void **state)
{
    (void)state;
    roost_errmsg em = {{0}};
    crl_with_number_ext("delta.crl", "ca.crl", NID_delta_crl, "1");
    assert_int_equal(
        server_ctx_with("ca.crt", "server.crt", "server.key", "delta.crl", &em),
        ROOST_EINVAL);
    assert_non_null(strstr(em.text, "delta CRL"));
}

/* cRLNumber limits (RFC 5280 5.2.3: at most 20 octets): 40 hex digits are
 * the most a context takes, as the database records them
 * (roost_store_put_crls); 41 digits are refused naming the number, and
 * not taken by a context only to fail later when roost serve records it.
 * A negative number counts as 0. */
static void
crl_number_limits(void **state)
{
    (void)state;
    roost_errmsg em = {{0}};
    const char *max = "ffffffffffffffffffffffffffffffffffffffff";
    crl_renumbered("n40.crl", "ca.crl", max);
    roost_tls_ctx *ctx = server_ctx_crl("n40.crl");
    roost_tls_crl_issuer ci;
    assert_int_equal(roost_tls_ctx_crl_get(ctx, 0, &ci), ROOST_OK);
    assert_string_equal(ci.number, max);
    roost_tls_ctx_destroy(ctx);
    crl_renumbered("n41.crl", "ca.crl",
                   "10000000000000000000000000000000000000000");
    assert_int_equal(
        server_ctx_with("ca.crt", "server.crt", "server.key", "n41.crl", &em),
        ROOST_EIO);
    assert_non_null(strstr(em.text, "cRLNumber"));
    crl_renumbered("n47.crl", "ca.crl",
                   "fffffffffffffffffffffffffffffffffffffffffffffff");
    assert_int_equal(
        server_ctx_with("ca.crt", "server.crt", "server.key", "n47.crl", &em),
        ROOST_EIO);
    crl_renumbered("neg.crl", "ca.crl", "-5");
    ctx = server_ctx_crl("neg.crl");
    assert_int_equal(roost_tls_ctx_crl_get(ctx, 0, &ci), ROOST_OK);
    assert_string_equal(ci.number, "0");
    assert_true(ci.numbered);
    roost_tls_ctx_destroy(ctx);
}

/* Two different CRLs of one issuer under one cRLNumber are refused
 * wherever they stand in the file, also when a third CRL with a higher
 * number supersedes both: whether a file loads must not depend on the
 * order of its entries; without such a pair the newest of three is kept.
 * Runs after recheck_asks_the_newest_crl, whose files it reads. */
static void
reused_crl_number_refused_in_any_order(void **state)
{
    (void)state;
    /* g2-listed and other3 are two different CRLs numbered 3, g2-clear
     * is number 4. */
    const char *orders[][3] = {
        {"g2-listed.crl", "other3.crl", "g2-clear.crl"},
        {"g2-listed.crl", "g2-clear.crl", "other3.crl"},
        {"g2-clear.crl", "g2-listed.crl", "other3.crl"},
    };
    for (size_t i = 0; i < sizeof(orders) / sizeof(orders[0]); i++) {
        roost_errmsg em = {{0}};
        crl_bundle("three.crl", orders[i][0], orders[i][1]);
        append_file(fx_path(&fx, "three.crl"), fx_path(&fx, orders[i][2]));
        assert_int_equal(server_ctx_with("ca.crt", "server.crt", "server.key",
                                         "three.crl", &em),
                         ROOST_EAUTH);
        assert_non_null(strstr(em.text, "cRLNumber 3"));
    }
    /* Without the re-used number, the newest of three is in force. */
    crl_bundle("three.crl", "g2-listed.crl", "g2-relisted.crl");
    append_file(fx_path(&fx, "three.crl"), fx_path(&fx, "g2-clear.crl"));
    roost_tls_ctx *ctx = server_ctx_crl("three.crl");
    assert_int_equal(roost_tls_ctx_crl_count(ctx), 1);
    roost_tls_crl_issuer ci;
    assert_int_equal(roost_tls_ctx_crl_get(ctx, 0, &ci), ROOST_OK);
    assert_string_equal(ci.number, "5");
    assert_int_equal(ci.index, 2);
    roost_tls_ctx_destroy(ctx);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mutual_auth_and_data),
        cmocka_unit_test(unknown_ca_refused),
        cmocka_unit_test(expired_refused),
        cmocka_unit_test(revoked_refused),
        cmocka_unit_test(no_client_cert_refused),
        cmocka_unit_test(wrong_host_name_refused),
        cmocka_unit_test(foreign_server_refused),
        cmocka_unit_test(garbage_and_caps),
        cmocka_unit_test(borrowed_pieces),
        cmocka_unit_test(own_certificate_checked),
        cmocka_unit_test(encrypted_key_refused),
        cmocka_unit_test(malformed_ca_and_crl_files),
        cmocka_unit_test(ca_file_with_many_certs),
        cmocka_unit_test(wrong_purpose_and_not_yet_valid_refused),
        cmocka_unit_test(trust_anchor_rechecked),
        cmocka_unit_test(crl_with_and_without_extensions),
        cmocka_unit_test(recheck_verdicts),
        cmocka_unit_test(recheck_asks_the_newest_crl),
        cmocka_unit_test(recheck_asks_the_issuers_crl),
        cmocka_unit_test(recheck_without_the_issuers_crl),
        cmocka_unit_test(delta_crl_refused),
        cmocka_unit_test(crl_issuers_reported),
        cmocka_unit_test(crl_number_limits),
        cmocka_unit_test(reused_crl_number_refused_in_any_order),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
