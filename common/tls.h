/*
 * tls.h - one TLS 1.3 session driven through OpenSSL memory BIOs.
 *
 * A roost_tls never touches a socket. The transport feeds it the
 * ciphertext that arrived (roost_tls_feed), drives it (roost_tls_handshake,
 * roost_tls_read, roost_tls_write) and ships whatever ciphertext it
 * produced (roost_tls_out_peek / roost_tls_out_consume). This keeps
 * the TLS state machine independent of ZeroMQ, testable with two sessions
 * wired back to back, and fuzzable without sockets.
 *
 * Policy (fixed, not configurable): TLS 1.3 only; both ends present
 * certificates; the server requires a client certificate that chains to
 * the deployment CA, is not on the CA's CRL and carries extendedKeyUsage
 * clientAuth; the client checks the server certificate against the same
 * CA and the expected host name, and requires extendedKeyUsage
 * serverAuth (a certificate without the extension is refused by both,
 * although OpenSSL alone would accept it for either role). The peer's
 * identity is the SHA-256 fingerprint of its certificate (DER); the
 * subject is for display only.
 *
 * A roost_tls_ctx is immutable after creation and reference-counted
 * atomically; sessions made from it hold a reference and may run on
 * different threads. A roost_tls
 * is used by one thread at a time.
 */
#ifndef ROOST_COMMON_TLS_H
#define ROOST_COMMON_TLS_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct roost_tls_ctx roost_tls_ctx;
typedef struct roost_tls roost_tls;

/* PEM files a context is built from. All paths are read at creation time
 * and not kept. crl_path is required for a server context (a deployment
 * always has a CRL, possibly empty: `roost pki init` writes one) and
 * optional for a client; every CRL in it must be signed by a CA of
 * ca_path (a CRL nobody signed would fail every handshake later). A client
 * context may also leave cert_path and key_path both NULL: it then presents no
 * certificate, which every Roost server refuses; that exists for tests and
 * diagnostics. */
typedef struct roost_tls_files {
    const char *ca_path;   /* deployment CA certificate */
    const char *cert_path; /* own certificate */
    const char *key_path;  /* own private key */
    const char *crl_path;  /* CA's CRL (server: required) */
} roost_tls_files;

/* The authenticated identity of a peer. */
#define ROOST_TLS_FINGERPRINT_LEN 32
#define ROOST_TLS_SUBJECT_CAP 256
#define ROOST_TLS_SERIAL_CAP 32
typedef struct roost_tls_identity {
    uint8_t fingerprint[ROOST_TLS_FINGERPRINT_LEN]; /* SHA-256 of cert DER */
    char fingerprint_hex[2 * ROOST_TLS_FINGERPRINT_LEN + 1];
    char subject[ROOST_TLS_SUBJECT_CAP]; /* RFC 2253, display only */
    /* Serial number (big-endian magnitude) and issuer name hash, kept so
     * that an open session can be checked against a CRL loaded later
     * (roost_tls_ctx_recheck). serial_len is 0 for a serial longer than
     * the cap (RFC 5280 allows 20 octets; Roost issues 16), zero or
     * negative: such a serial cannot be looked up. */
    uint8_t serial[ROOST_TLS_SERIAL_CAP];
    size_t serial_len;
    unsigned long issuer_hash;
    /* Digest of the CRLs the handshake checked the certificate against
     * (those of the context the session was made from), so that a recheck
     * knows whether a context holds the very same CRLs: for a serial that
     * cannot be looked up, the handshake's verdict is then the only one. */
    uint8_t crl_digest[ROOST_TLS_FINGERPRINT_LEN];
    /* The certificate's notAfter in Unix seconds (INT64_MAX if it cannot
     * be read): a session outlives the handshake that checked it, so its
     * holder (roost serve) closes it once the certificate has expired. */
    int64_t not_after;
    /* SHA-256 of the public key (SubjectPublicKeyInfo) of the CA the
     * certificate's chain was verified to, so that a reload can tell
     * whether that CA is still trusted (roost_tls_ctx_trusts). */
    uint8_t anchor_key[ROOST_TLS_FINGERPRINT_LEN];
    /* SHA-256 of the public key of the CA that issued the certificate
     * (the next certificate of the verified chain; the anchor itself in a
     * Roost deployment), so that a recheck asks that CA's CRL and no
     * other CA's of the same name. All zero if unknown. */
    uint8_t issuer_key[ROOST_TLS_FINGERPRINT_LEN];
} roost_tls_identity;

/*
 * roost_tls_ctx_create_server / _client - build a context from PEM files.
 * Checks that the key matches the certificate; never asks for a
 * passphrase (an encrypted key is refused). A server context also checks
 * its own certificate against ca_path as a client would (chain, validity
 * period, extendedKeyUsage serverAuth), and that every CRL in crl_path is
 * intact and signed by a CA of ca_path. Returns ROOST_OK, ROOST_EINVAL (a
 * required path missing, a key that does not match or is encrypted),
 * ROOST_EIO (a file unreadable, not PEM or damaged), ROOST_EAUTH (the own
 * certificate does not verify, a CRL not signed by the CA),
 * ROOST_ECRYPTO, ROOST_ENOMEM; em (may be NULL) says which file and why.
 * *out is NULL on failure.
 */
int roost_tls_ctx_create_server(roost_tls_ctx **out,
                                const roost_tls_files *files, roost_errmsg *em);
int roost_tls_ctx_create_client(roost_tls_ctx **out,
                                const roost_tls_files *files, roost_errmsg *em);
/* roost_tls_ctx_destroy - drop a reference (the context is freed with the
 * last one); NULL does nothing. Sessions hold their own reference. */
void roost_tls_ctx_destroy(roost_tls_ctx *ctx);
/* roost_tls_ctx_ref - take another reference, released with
 * roost_tls_ctx_destroy (atomic: any thread). */
void roost_tls_ctx_ref(roost_tls_ctx *ctx);
bool roost_tls_ctx_is_server(const roost_tls_ctx *ctx);

/* What the CRLs of a context say, for the operator's log. */
typedef struct roost_tls_crl_info {
    size_t n_crls;       /* CRLs loaded (0 for a client without one) */
    size_t n_revoked;    /* entries over all of them */
    int64_t next_update; /* earliest nextUpdate, Unix seconds; INT64_MAX if
                            no CRL carries one */
    int64_t last_update; /* latest lastUpdate, Unix seconds; INT64_MIN if
                            there is no CRL. OpenSSL refuses a CRL whose
                            lastUpdate is still to come ("CRL is not yet
                            valid"): a clock behind the CA's. */
} roost_tls_crl_info;

/* roost_tls_ctx_crl_info - summarise the context's CRLs into *out.
 * ROOST_OK, or ROOST_ECRYPTO if a nextUpdate cannot be read. */
int roost_tls_ctx_crl_info(const roost_tls_ctx *ctx, roost_tls_crl_info *out);

/* The CRL of one issuer in force in a context. A context keeps one CRL
 * per issuer (issuer name and the CA key that verifies its signature):
 * of several in crl_path, the one with the highest cRLNumber, unnumbered
 * CRLs counting as 0 and, between those, the latest thisUpdate winning;
 * two different CRLs neither of which supersedes the other make the
 * context fail (ROOST_EAUTH). Handshakes and roost_tls_ctx_recheck ask
 * only that CRL about a certificate of that issuer. */
#define ROOST_TLS_CRL_NUMBER_CAP 48 /* at most 40 hex digits, and the NUL */
typedef struct roost_tls_crl_issuer {
    char issuer[ROOST_TLS_SUBJECT_CAP]; /* the CRL's issuer, RFC 2253 */
    /* SHA-256 of the public key (SubjectPublicKeyInfo) of the CA of
     * ca_path whose signature the CRL carries: with the name, what tells
     * a CA from another of the same name (a CA re-created with a new key
     * starts numbering again). */
    uint8_t issuer_key[ROOST_TLS_FINGERPRINT_LEN];
    /* SHA-256 over issuer_key and then the DER of the CRL's issuer name:
     * one value per issuer as a context tells issuers apart (a CA key
     * under two names is two issuers, numbered apart), under which roost
     * serve records the number in force. */
    uint8_t issuer_id[ROOST_TLS_FINGERPRINT_LEN];
    /* cRLNumber in lowercase hex without leading zeros; "0" for a CRL
     * without one (numbered false), as roost pki counts it. */
    char number[ROOST_TLS_CRL_NUMBER_CAP];
    bool numbered;
    uint8_t digest[ROOST_TLS_FINGERPRINT_LEN]; /* SHA-256 of its DER */
    int index; /* its position in crl_path, from 1, for messages */
} roost_tls_crl_issuer;

/* roost_tls_ctx_crl_count / _get - the CRLs in force, one per issuer, in
 * the order of their first appearance in crl_path; _get copies the i-th
 * (i < count) into *out: ROOST_OK, or ROOST_EINVAL for i out of range.
 * Any thread. */
size_t roost_tls_ctx_crl_count(const roost_tls_ctx *ctx);
int roost_tls_ctx_crl_get(const roost_tls_ctx *ctx, size_t i,
                          roost_tls_crl_issuer *out);

/* roost_tls_crl_number_cmp - compare two cRLNumbers as
 * roost_tls_crl_issuer.number writes them: <0, 0 or >0 as a is below,
 * equal to or above b. */
int roost_tls_crl_number_cmp(const char *a, const char *b);

/* What the files of a context say about a peer verified earlier,
 * possibly under another context (roost_tls_ctx_recheck). */
typedef enum roost_tls_recheck {
    ROOST_TLS_VALID = 0, /* trusted, not revoked: keep the session */
    ROOST_TLS_UNTRUSTED, /* no CA of ctx carries the key its chain was
                            verified to (roost_tls_ctx_trusts) */
    ROOST_TLS_REVOKED,   /* the CRL of ctx that applies to it (its
                            issuer's: roost_tls_crl_issuer) lists its
                            serial */
    ROOST_TLS_NO_CRL,    /* ctx checks CRLs and holds none of its
                            issuer: a new handshake would be refused
                            ("unable to get certificate CRL") */
    ROOST_TLS_UNCHECKED, /* the question cannot be answered: its serial
                            cannot be looked up (serial_len 0) and the CRLs
                            of ctx are not those its handshake checked, or
                            memory ran out */
} roost_tls_recheck;

/* roost_tls_ctx_recheck - ask ctx's CA file and CRLs the questions a
 * handshake asks, of an identity whose handshake asked older ones (a
 * session open across a reload, or whose handshake spanned one). The
 * verdicts are checked in the order of the enum; anything but
 * ROOST_TLS_VALID means the session must not go on (fail closed:
 * ROOST_TLS_UNCHECKED too). Any thread, with the identity's owner's
 * synchronisation. */
roost_tls_recheck roost_tls_ctx_recheck(const roost_tls_ctx *ctx,
                                        const roost_tls_identity *id);

/* roost_tls_ctx_trusts - true if a CA certificate of ctx carries the
 * public key the identity's chain was verified to: the trust question a
 * handshake asks, asked again of a session verified against an older CA
 * file (a renewed CA certificate with the same key still trusts it). False
 * when the key is unknown or the question cannot be asked for lack of
 * memory. */
bool roost_tls_ctx_trusts(const roost_tls_ctx *ctx,
                          const roost_tls_identity *id);

/*
 * roost_tls_create - a new session. For a client context, server_name
 * (not NULL) is the host name (or IP literal) the server certificate must
 * carry; it is also sent as SNI. For a server context server_name must be
 * NULL. in_cap bounds the ciphertext buffered but not yet consumed by the
 * TLS engine (0: 1 MiB); feeding beyond it fails with ROOST_ETOOBIG.
 */
int roost_tls_create(roost_tls **out, roost_tls_ctx *ctx,
                     const char *server_name, size_t in_cap, roost_errmsg *em);
void roost_tls_destroy(roost_tls *tls);

/* roost_tls_feed - append ciphertext received from the peer. ROOST_OK or
 * ROOST_ETOOBIG (cap exceeded: the peer sends faster than it is read, or
 * sends junk that never forms a record) or ROOST_ENOMEM. */
int roost_tls_feed(roost_tls *tls, const void *data, size_t len,
                   roost_errmsg *em);

/*
 * roost_tls_feed_borrow / roost_tls_feed_release - the zero-copy form of
 * roost_tls_feed: lend the session len bytes at data for one processing
 * step (handshake/read calls), then release them; release copies the
 * bytes OpenSSL did not consume yet into the session (ROOST_ETOOBIG past
 * in_cap, ROOST_ENOMEM), after which data may be reused. Bytes fed
 * earlier are consumed before borrowed ones.
 */
void roost_tls_feed_borrow(roost_tls *tls, const void *data, size_t len);
int roost_tls_feed_release(roost_tls *tls, roost_errmsg *em);

/* One borrowed piece of ciphertext (see roost_tls_feed_borrowv). */
typedef struct roost_tls_piece {
    const void *data;
    size_t len;
} roost_tls_piece;

/*
 * roost_tls_feed_borrowv - roost_tls_feed_borrow for n pieces that
 * continue one another (several messages received from the same peer),
 * so that one processing step covers all of them. The array and the bytes
 * it points to stay the caller's and must stay valid until
 * roost_tls_feed_release, which copies whatever OpenSSL did not consume,
 * from all pieces, into the session (ROOST_ETOOBIG past in_cap).
 */
void roost_tls_feed_borrowv(roost_tls *tls, const roost_tls_piece *pieces,
                            size_t n);

/*
 * roost_tls_handshake - advance the handshake with what was fed.
 * ROOST_OK: done, peer verified (roost_tls_peer_identity works).
 * ROOST_EAGAIN: needs more bytes from the peer (ship the output first).
 * ROOST_EAUTH: the peer's certificate was refused (unknown CA, expired,
 *   revoked, missing, wrong host name, no extendedKeyUsage for its role),
 *   or the peer refused ours; em names the reason.
 * ROOST_ETLS: any other protocol failure (not TLS, not 1.3, bad record).
 * Also ROOST_ECLOSED if the peer closed. Call again after roost_tls_feed.
 */
int roost_tls_handshake(roost_tls *tls, roost_errmsg *em);
bool roost_tls_handshake_done(const roost_tls *tls);

/* roost_tls_peer_identity - the verified peer's identity; ROOST_ESTATE
 * before the handshake is done. */
int roost_tls_peer_identity(const roost_tls *tls, roost_tls_identity *out);

/*
 * roost_tls_read - decrypt up to cap plaintext bytes into buf; *len is set
 * to the count (> 0 on ROOST_OK). ROOST_EAGAIN: no complete record
 * buffered. ROOST_ECLOSED: the peer sent close_notify. ROOST_EAUTH: the
 * peer refused our certificate after our side finished (TLS 1.3 client).
 * ROOST_ETLS: a bad record (truncated, forged, garbage).
 */
int roost_tls_read(roost_tls *tls, void *buf, size_t cap, size_t *len,
                   roost_errmsg *em);

/* roost_tls_write - encrypt all len bytes; the ciphertext is queued in the
 * output buffer. ROOST_OK, ROOST_ESTATE (handshake not done), ROOST_ETLS. */
int roost_tls_write(roost_tls *tls, const void *data, size_t len,
                    roost_errmsg *em);

/* roost_tls_close_notify - queue a close_notify alert (best effort). */
void roost_tls_close_notify(roost_tls *tls);

/* Ciphertext ready to be sent: roost_tls_out_peek points at it (valid
 * until the next call on tls), roost_tls_out_consume drops n bytes of it
 * once they were handed to the transport. */
size_t roost_tls_out_pending(const roost_tls *tls);
const uint8_t *roost_tls_out_peek(roost_tls *tls, size_t *len);
void roost_tls_out_consume(roost_tls *tls, size_t n);

/* roost_tls_keep_buffers - sessions release OpenSSL's 16 KiB record
 * buffers (and their own input buffer) whenever they run empty, which
 * keeps idle sessions small but costs a malloc/free per record; keep them
 * while a large transfer is under way (keep = true) and release again
 * afterwards. */
void roost_tls_keep_buffers(roost_tls *tls, bool keep);

/* roost_tls_trim - give back buffers an idle session does not need (the
 * output buffer's capacity once drained, an empty input buffer). Call it
 * when a session goes idle, e.g. after the handshake. */
void roost_tls_trim(roost_tls *tls);

/* Ciphertext fed but not yet consumed by the TLS engine, plus one if the
 * engine holds a partial record or undelivered plaintext: non-zero means
 * a disconnect now would truncate something. */
size_t roost_tls_in_pending(const roost_tls *tls);

#endif
