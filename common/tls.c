/*
 * tls.c - TLS 1.3 sessions over OpenSSL memory BIOs (see tls.h).
 *
 * Input: each session's read BIO is Roost's own minimal BIO (one
 * BIO_METHOD per context) that serves OpenSSL first from an owned "spill"
 * buffer of leftovers, then from bytes the transport lends it for the
 * duration of one processing step (roost_tls_feed_borrow[v] / _release:
 * one or several pieces, e.g. consecutive ZeroMQ messages), so
 * the bulk of the ciphertext goes from the ZeroMQ message straight into
 * OpenSSL's record buffer without an intermediate copy. Only a partial
 * record left at the end of a step is copied, into the spill buffer,
 * which is bounded by in_cap. Output: a BIO_s_mem holding ciphertext
 * OpenSSL produced and the transport has not yet shipped, bounded by the
 * caller draining it after each write.
 *
 * Verification is OpenSSL's own chain verification, plus one rule
 * OpenSSL's purpose check leaves out: the peer's certificate must carry an
 * extendedKeyUsage extension naming its role (clientAuth for a client,
 * serverAuth for a server; OpenSSL accepts a certificate without the
 * extension for either). The verify callback that adds it can only refuse,
 * never accept what OpenSSL refused, and it records why, so that the error
 * message names the problem instead of OpenSSL's generic "unsuitable
 * certificate purpose". The server context enables CRL checking of the
 * leaf, so a revoked client certificate fails the handshake. A session
 * verified before a CRL or CA change can be re-checked with
 * roost_tls_ctx_recheck against a context built from the new files.
 *
 * Invariant: a context's store holds one CRL per issuer (issuer name and
 * signing CA key), the newest by cRLNumber (load_crl), and ctx->crls
 * lists exactly those. OpenSSL's verification then has one CRL to pick
 * for a certificate, and roost_tls_ctx_recheck asks the same one, so a
 * recheck never contradicts the handshake a new connection would get.
 *
 * No globals; a context is shared read-only by its sessions.
 */
#include "common/tls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <openssl/bn.h>

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"

#define TLS_DEFAULT_IN_CAP ((size_t)1 << 20)

struct roost_tls_ctx {
    SSL_CTX *ssl_ctx;
    BIO_METHOD *in_method; /* the input BIO (see the file comment) */
    bool server;
    atomic_int refs; /* the owner's reference + one per session */
    /* SHA-256 over the SHA-256 of each CRL loaded, in file order (all
     * zero without CRLs): copied into each peer identity, so that a
     * recheck knows whether it asks the CRLs the handshake asked. */
    uint8_t crl_digest[ROOST_TLS_FINGERPRINT_LEN];
    /* The CRLs in force, one per issuer (see load_crl): what the store
     * holds, with what a recheck and roost_tls_ctx_crl_get need to know
     * about each. Immutable after creation. */
    struct ctx_crl *crls;
    size_t n_crls;
    bool crl_check; /* X509_V_FLAG_CRL_CHECK: every peer needs its CRL */
};

/* One CRL in force: the CRL (a reference; the store holds another) and
 * what roost_tls_ctx_crl_get reports about it. */
struct ctx_crl {
    X509_CRL *crl;
    roost_tls_crl_issuer info;
    int64_t this_update; /* Unix seconds */
};

struct roost_tls {
    SSL *ssl;
    roost_tls_ctx *ctx; /* referenced: its in_method serves `in` */
    BIO *in;            /* ciphertext from the peer; owned by ssl */
    BIO *out;           /* ciphertext to the peer; owned by ssl */
    size_t in_cap;
    /* Input not yet consumed by OpenSSL: spill[spill_start, spill_end)
     * first, then the borrowed bytes. */
    uint8_t *spill;
    size_t spill_cap, spill_start, spill_end;
    /* Borrowed input: the current piece (borrow, borrow_len left of it),
     * then the pieces after it, borrow_rest bytes in all. */
    const uint8_t *borrow;
    size_t borrow_len;
    const roost_tls_piece *next_piece;
    size_t n_next, borrow_rest;
    roost_tls_piece one; /* the single piece of roost_tls_feed_borrow */
    /* Why verify_peer_role refused the peer's certificate (a static
     * string), or NULL: the message OpenSSL's verdict alone cannot give. */
    const char *refusal;
    bool keep; /* roost_tls_keep_buffers(true) in force */
    bool done;
    bool server;
};

static size_t
in_available(const roost_tls *t)
{
    return t->spill_end - t->spill_start + t->borrow_len + t->borrow_rest;
}

/* Make the next non-empty borrowed piece current; false if none is left. */
static bool
borrow_advance(roost_tls *t)
{
    while (t->borrow_len == 0 && t->n_next > 0) {
        t->borrow = t->next_piece->data;
        t->borrow_len = t->next_piece->len;
        t->borrow_rest -= t->borrow_len;
        t->next_piece++;
        t->n_next--;
    }
    return t->borrow_len > 0;
}

static int
in_read(BIO *bio, char *out, size_t outl, size_t *readbytes)
{
    roost_tls *t = BIO_get_data(bio);
    size_t done = 0;
    BIO_clear_retry_flags(bio);
    size_t n = t->spill_end - t->spill_start;
    if (n > 0) {
        if (n > outl)
            n = outl;
        memcpy(out, t->spill + t->spill_start, n);
        t->spill_start += n;
        if (t->spill_start == t->spill_end)
            t->spill_start = t->spill_end = 0;
        done = n;
    }
    while (done < outl && borrow_advance(t)) {
        n = outl - done < t->borrow_len ? outl - done : t->borrow_len;
        memcpy(out + done, t->borrow, n);
        t->borrow += n;
        t->borrow_len -= n;
        done += n;
    }
    if (done == 0) {
        BIO_set_retry_read(bio); /* wait for more, not end of file */
        *readbytes = 0;
        return 0;
    }
    *readbytes = done;
    return 1;
}

static long
in_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    roost_tls *t = BIO_get_data(bio);
    switch (cmd) {
    case BIO_CTRL_PENDING:
        return t != NULL ? (long)in_available(t) : 0;
    case BIO_CTRL_FLUSH:
        return 1;
    default:
        return 0;
    }
}

static int
in_create(BIO *bio)
{
    BIO_set_init(bio, 1);
    return 1;
}

/* Make room for n more spill bytes (within in_cap). */
static int
spill_append(roost_tls *t, const uint8_t *data, size_t n)
{
    if (n == 0)
        return ROOST_OK;
    size_t have = t->spill_end - t->spill_start;
    if (have + n > t->in_cap)
        return ROOST_ETOOBIG;
    if (t->spill_start > 0) {
        memmove(t->spill, t->spill + t->spill_start, have);
        t->spill_start = 0;
        t->spill_end = have;
    }
    if (have + n > t->spill_cap) {
        size_t cap = t->spill_cap ? t->spill_cap : 4096;
        while (cap < have + n)
            cap *= 2;
        if (cap > t->in_cap)
            cap = t->in_cap;
        uint8_t *p = roost_alloc_realloc(NULL, t->spill, cap);
        if (p == NULL)
            return ROOST_ENOMEM;
        t->spill = p;
        t->spill_cap = cap;
    }
    memcpy(t->spill + t->spill_end, data, n);
    t->spill_end += n;
    return ROOST_OK;
}

/* Clear OpenSSL's error queue before a call whose failure we classify
 * with SSL_get_error (which consults the queue). ERR_clear_error walks
 * all queue slots on every call, a measurable cost when it runs once per
 * TLS record and ZeroMQ message on the receive path; peeking first is
 * cheap and gives SSL_get_error the same empty queue. */
static void
clear_errors(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

/* Append OpenSSL's error queue (most recent reason) to a message, and
 * clear the queue so one session's failure never leaks into another's. */
static void
openssl_reason(char *buf, size_t cap)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()) != 0)
        last = e;
    if (last == 0) {
        snprintf(buf, cap, "no OpenSSL detail");
        return;
    }
    ERR_error_string_n(last, buf, cap);
}

static int
fail_ssl(roost_errmsg *em, int code, const char *what)
{
    char reason[160];
    openssl_reason(reason, sizeof(reason));
    return roost_fail(em, code, "%s: %s", what, reason);
}

void
roost_tls_ctx_destroy(roost_tls_ctx *ctx)
{
    if (ctx == NULL || atomic_fetch_sub(&ctx->refs, 1) > 1)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    BIO_meth_free(ctx->in_method);
    for (size_t i = 0; i < ctx->n_crls; i++)
        X509_CRL_free(ctx->crls[i].crl);
    roost_alloc_free(NULL, ctx->crls);
    roost_alloc_free(NULL, ctx);
}

void
roost_tls_ctx_ref(roost_tls_ctx *ctx)
{
    atomic_fetch_add(&ctx->refs, 1);
}

bool
roost_tls_ctx_is_server(const roost_tls_ctx *ctx)
{
    return ctx->server;
}

/* t as seconds since the epoch, given the current time now: t's distance
 * from now (ASN1_TIME_diff, which avoids timegm, not POSIX) added to it. */
static bool
asn1_seconds(const ASN1_TIME *t, time_t now, int64_t *out)
{
    int days = 0, secs = 0;
    if (ASN1_TIME_diff(&days, &secs, NULL, t) != 1)
        return false;
    *out = (int64_t)now + (int64_t)days * 86400 + secs;
    return true;
}

/* The CA certificate of store that issued crl, or NULL: the CRL's issuer
 * name is its subject, the CRL's authorityKeyIdentifier (if any) matches
 * it as OpenSSL matches them in verification (X509_check_akid: its
 * subjectKeyIdentifier, and issuer and serial if the identifier names
 * them), and the signature verifies with its key. Only such a CRL can be
 * the one a handshake checks a certificate of that CA against. */
static X509 *
crl_signer(X509_STORE *store, X509_CRL *crl)
{
    X509 *found = NULL;
    int crit = -1;
    AUTHORITY_KEYID *akid =
        X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, &crit, NULL);
    if (akid == NULL && crit != -1) {
        ERR_clear_error();
        return NULL; /* damaged or repeated: nothing can match it */
    }
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    for (int i = 0; found == NULL && i < sk_X509_OBJECT_num(objs); i++) {
        X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (ca == NULL || X509_NAME_cmp(X509_get_subject_name(ca),
                                        X509_CRL_get_issuer(crl)) != 0)
            continue;
        if (X509_check_akid(ca, akid) != X509_V_OK)
            continue;
        EVP_PKEY *pub = X509_get0_pubkey(ca);
        if (pub != NULL && X509_CRL_verify(crl, pub) == 1)
            found = ca;
    }
    AUTHORITY_KEYID_free(akid);
    ERR_clear_error();
    return found;
}

/* The most hex digits of a cRLNumber: RFC 5280 5.2.3 caps it at 20
 * octets, and roost serve's record (roost_store_put_crls) holds no more,
 * so a context must not take a number its coordinator cannot record. */
#define CRL_NUMBER_MAX_DIGITS 40
_Static_assert(CRL_NUMBER_MAX_DIGITS < ROOST_TLS_CRL_NUMBER_CAP,
               "a cRLNumber and its NUL fit roost_tls_crl_issuer.number");

/* Write the cRLNumber of crl as lowercase hex without leading zeros into
 * out ("0" without the extension, or a negative one, which counts as 0 as
 * roost pki counts it); false if the extension is damaged or repeated, or
 * the number does not fit (RFC 5280 caps it at 20 octets). */
static bool
crl_number_hex(X509_CRL *crl, char out[ROOST_TLS_CRL_NUMBER_CAP],
               bool *numbered)
{
    int crit = -1;
    ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, NULL);
    *numbered = num != NULL;
    snprintf(out, ROOST_TLS_CRL_NUMBER_CAP, "0");
    if (num == NULL)
        return crit == -1;
    BIGNUM *bn = ASN1_INTEGER_to_BN(num, NULL);
    ASN1_INTEGER_free(num);
    bool ok = bn != NULL;
    if (ok && !BN_is_negative(bn) && !BN_is_zero(bn)) {
        char *hex = BN_bn2hex(bn);
        size_t len = hex != NULL ? strlen(hex) : 0;
        const char *digits = hex;
        while (len > 1 && digits[0] == '0') {
            digits++;
            len--;
        }
        ok = hex != NULL && len <= CRL_NUMBER_MAX_DIGITS;
        for (size_t i = 0; ok && i <= len; i++)
            out[i] = (char)(digits[i] >= 'A' && digits[i] <= 'F'
                                ? digits[i] - 'A' + 'a'
                                : digits[i]);
        OPENSSL_free(hex);
    }
    BN_free(bn);
    return ok;
}

int
roost_tls_crl_number_cmp(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return la < lb ? -1 : 1;
    int c = strcmp(a, b);
    return (c > 0) - (c < 0);
}

/* name in RFC 2253 form (UTF-8 kept) into out, cut to fit; "" and false
 * when no memory BIO can be made. For messages and the log. */
static bool
name_text(const X509_NAME *name, char out[ROOST_TLS_SUBJECT_CAP])
{
    out[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        return false;
    X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    int len = BIO_read(b, out, ROOST_TLS_SUBJECT_CAP - 1);
    out[len > 0 ? len : 0] = '\0';
    BIO_free(b);
    return true;
}

/* Fill e for crl, signed by signer, the index-th CRL of its file. */
static bool
crl_describe(struct ctx_crl *e, X509_CRL *crl, X509 *signer, int index,
             time_t now)
{
    memset(e, 0, sizeof(*e));
    e->info.index = index;
    unsigned int n = 0;
    if (X509_pubkey_digest(signer, EVP_sha256(), e->info.issuer_key, &n) != 1 ||
        n != ROOST_TLS_FINGERPRINT_LEN ||
        X509_CRL_digest(crl, EVP_sha256(), e->info.digest, &n) != 1 ||
        n != ROOST_TLS_FINGERPRINT_LEN ||
        !asn1_seconds(X509_CRL_get0_lastUpdate(crl), now, &e->this_update))
        return false;
    /* issuer_id: the key's digest, then the name's DER, hashed. */
    unsigned char *der = NULL;
    int der_len = i2d_X509_NAME(X509_CRL_get_issuer(crl), &der);
    EVP_MD_CTX *md = der_len > 0 ? EVP_MD_CTX_new() : NULL;
    bool id_ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
                 EVP_DigestUpdate(md, e->info.issuer_key,
                                  sizeof(e->info.issuer_key)) == 1 &&
                 EVP_DigestUpdate(md, der, (size_t)der_len) == 1 &&
                 EVP_DigestFinal_ex(md, e->info.issuer_id, &n) == 1 &&
                 n == ROOST_TLS_FINGERPRINT_LEN;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    if (!id_ok)
        return false;
    if (!name_text(X509_CRL_get_issuer(crl), e->info.issuer))
        return false;
    e->crl = crl;
    return true;
}

/* Of two CRLs of one issuer, whether `b` supersedes `a`: the higher
 * cRLNumber (RFC 5280 5.2.3: the number tells which CRL supersedes
 * another), and between unnumbered CRLs (both 0) the later thisUpdate,
 * OpenSSL's own choice. 0: neither (an ambiguity the caller refuses). */
static int
crl_newer(const struct ctx_crl *a, const struct ctx_crl *b)
{
    int c = roost_tls_crl_number_cmp(b->info.number, a->info.number);
    if (c != 0 || strcmp(a->info.number, "0") != 0)
        return c;
    return (b->this_update > a->this_update) -
           (b->this_update < a->this_update);
}

/* Whether two CRLs have one issuer: the same name and signing CA key. */
static bool
crl_same_issuer(const struct ctx_crl *a, const struct ctx_crl *b)
{
    return memcmp(a->info.issuer_key, b->info.issuer_key,
                  sizeof(a->info.issuer_key)) == 0 &&
           X509_NAME_cmp(X509_CRL_get_issuer(a->crl),
                         X509_CRL_get_issuer(b->crl)) == 0;
}

/* Load every CRL of path into store, keeping only the newest of each
 * issuer, and set digest to the SHA-256 over the SHA-256 digests of all
 * of them (in file order).
 *
 * The CA certificates must be in the store already: a CRL that none of
 * them signed is refused here, because OpenSSL would otherwise accept the
 * file and then fail every handshake with "CRL signature failure" (or
 * "unable to get CRL"). A delta CRL is refused too: Roost never asks for
 * one (no X509_V_FLAG_USE_DELTAS) and roost pki never issues one.
 *
 * One CRL per issuer. An issuer is the CRL's issuer name together with
 * the CA key its signature verifies with (so two CAs of one name, the old
 * and its replacement, are two issuers). Of several CRLs of one issuer,
 * the one with the highest cRLNumber is kept (unnumbered CRLs count as 0;
 * between those, the latest thisUpdate), and the others are not loaded at
 * all: OpenSSL would pick by thisUpdate alone, which ties for two CRLs
 * issued in the same second and is then decided by the store's unstable
 * order. With one CRL per issuer in the store, the handshake and
 * roost_tls_ctx_recheck ask the very same CRL. Two different CRLs that
 * neither supersedes (one cRLNumber used twice, or unnumbered CRLs of the
 * same thisUpdate) are refused: which of them is meant cannot be told,
 * and re-using a number is what a forged or botched re-signing does. The
 * same CRL twice is loaded once. */
static int
load_crl(roost_tls_ctx *ctx, X509_STORE *store, const char *path,
         const char *ca_path, uint8_t digest[ROOST_TLS_FINGERPRINT_LEN],
         roost_errmsg *em)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return roost_fail(em, ROOST_EIO, "CRL %s: cannot open", path);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    /* Every distinct CRL read; once the file is read, compacted to the
     * newest of each issuer. */
    struct ctx_crl *kept = NULL;
    size_t n_kept = 0, cap = 0;
    time_t now = time(NULL);
    int rc = ROOST_OK;
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        rc = fail_ssl(em, ROOST_ENOMEM, "CRL digest");
        goto out;
    }
    int n = 0;
    X509_CRL *crl;
    while ((crl = PEM_read_X509_CRL(f, NULL, NULL, NULL)) != NULL) {
        n++;
        X509 *signer = crl_signer(store, crl);
        struct ctx_crl e;
        if (signer == NULL)
            rc =
                roost_fail(em, ROOST_EAUTH,
                           "CRL %s: not signed by the CA in %s", path, ca_path);
        else if (X509_CRL_get_ext_by_NID(crl, NID_delta_crl, -1) >= 0)
            rc = roost_fail(em, ROOST_EINVAL,
                            "CRL %s: entry %d is a delta CRL, which Roost "
                            "does not use; give complete CRLs only",
                            path, n);
        else if (!crl_describe(&e, crl, signer, n, now) ||
                 EVP_DigestUpdate(md, e.info.digest, sizeof(e.info.digest)) !=
                     1)
            rc = fail_ssl(em, ROOST_ECRYPTO, "CRL digest");
        else if (!crl_number_hex(crl, e.info.number, &e.info.numbered))
            rc = roost_fail(em, ROOST_EIO,
                            "CRL %s: entry %d: its cRLNumber is damaged, "
                            "repeated or over 20 octets",
                            path, n);
        if (rc != ROOST_OK) {
            X509_CRL_free(crl);
            goto out;
        }
        /* Compared with every earlier CRL of its issuer, not only the
         * newest so far: a number used twice is refused wherever the two
         * CRLs stand, so that whether a file loads does not depend on the
         * order of its entries. */
        const struct ctx_crl *tie = NULL;
        bool again = false;
        for (size_t j = 0; j < n_kept && tie == NULL && !again; j++) {
            if (!crl_same_issuer(&kept[j], &e))
                continue;
            if (memcmp(kept[j].info.digest, e.info.digest,
                       sizeof(e.info.digest)) == 0)
                again = true; /* the same CRL again */
            else if (crl_newer(&kept[j], &e) == 0)
                tie = &kept[j];
        }
        if (tie != NULL) {
            rc = roost_fail(
                em, ROOST_EAUTH,
                "CRL %s: entries %d and %d are different CRLs of issuer %s "
                "with the same cRLNumber %s%s: keep only the CA's newest "
                "(roost pki crl issues the next number)",
                path, tie->info.index, n, e.info.issuer, e.info.number,
                e.info.numbered ? "" : " (none) and the same thisUpdate");
            X509_CRL_free(crl);
            goto out;
        }
        if (again) {
            X509_CRL_free(crl);
            continue;
        }
        if (n_kept == cap) {
            size_t ncap = cap ? 2 * cap : 4;
            struct ctx_crl *p =
                roost_alloc_realloc(NULL, kept, ncap * sizeof(*p));
            if (p == NULL) {
                X509_CRL_free(crl);
                rc = roost_fail(em, ROOST_ENOMEM, "CRL: out of memory");
                goto out;
            }
            kept = p;
            cap = ncap;
        }
        kept[n_kept++] = e;
    }
    /* Keep the newest CRL of each issuer, at the place of the issuer's
     * first CRL, and free the others. The array is compacted in place:
     * entries below `i` are settled, at or above n_kept no longer owned. */
    size_t n_all = n_kept;
    n_kept = 0;
    for (size_t i = 0; i < n_all; i++) {
        size_t at = 0;
        while (at < n_kept && !crl_same_issuer(&kept[at], &kept[i]))
            at++;
        if (at == n_kept) {
            kept[n_kept++] = kept[i];
        } else if (crl_newer(&kept[at], &kept[i]) > 0) {
            X509_CRL_free(kept[at].crl);
            kept[at] = kept[i];
        } else {
            X509_CRL_free(kept[i].crl);
        }
    }
    /* PEM_read fails both at the end of the file (no further BEGIN line)
     * and on a damaged entry. A damaged entry must not be skipped: the
     * revocations it carries would silently be lost. */
    unsigned long e = ERR_peek_last_error();
    bool at_end = ERR_GET_LIB(e) == ERR_LIB_PEM &&
                  ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
    ERR_clear_error();
    unsigned int digest_len = 0;
    if (n == 0)
        rc = roost_fail(em, ROOST_EIO, "CRL %s: no PEM X509 CRL in file", path);
    else if (!at_end)
        rc = roost_fail(em, ROOST_EIO,
                        "CRL %s: entry %d is damaged (truncated or not a "
                        "CRL)",
                        path, n + 1);
    else if (EVP_DigestFinal_ex(md, digest, &digest_len) != 1 ||
             digest_len != ROOST_TLS_FINGERPRINT_LEN)
        rc = fail_ssl(em, ROOST_ECRYPTO, "CRL digest");
    for (size_t i = 0; rc == ROOST_OK && i < n_kept; i++)
        if (X509_STORE_add_crl(store, kept[i].crl) != 1)
            rc = fail_ssl(em, ROOST_ECRYPTO, "CRL: cannot add to store");
out:
    if (rc == ROOST_OK) {
        ctx->crls = kept;
        ctx->n_crls = n_kept;
    } else {
        for (size_t i = 0; i < n_kept; i++)
            X509_CRL_free(kept[i].crl);
        roost_alloc_free(NULL, kept);
    }
    EVP_MD_CTX_free(md);
    fclose(f);
    return rc;
}

int
roost_tls_ctx_crl_info(const roost_tls_ctx *ctx, roost_tls_crl_info *out)
{
    out->n_crls = 0;
    out->n_revoked = 0;
    out->next_update = INT64_MAX;
    out->last_update = INT64_MIN;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx->ssl_ctx);
    int rc = ROOST_OK;
    /* The store is shared with handshakes that may run on other threads:
     * hold its lock while walking its objects. */
    X509_STORE_lock(store);
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    time_t now = time(NULL);
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509_CRL *crl =
            X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objs, i));
        if (crl == NULL)
            continue;
        out->n_crls++;
        STACK_OF(X509_REVOKED) *rev = X509_CRL_get_REVOKED(crl);
        out->n_revoked += rev != NULL ? (size_t)sk_X509_REVOKED_num(rev) : 0;
        int64_t last;
        if (!asn1_seconds(X509_CRL_get0_lastUpdate(crl), now, &last)) {
            rc = ROOST_ECRYPTO;
            continue;
        }
        if (last > out->last_update)
            out->last_update = last;
        const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
        if (next == NULL)
            continue;
        int64_t t;
        if (!asn1_seconds(next, now, &t)) {
            rc = ROOST_ECRYPTO;
            continue;
        }
        if (t < out->next_update)
            out->next_update = t;
    }
    X509_STORE_unlock(store);
    ERR_clear_error();
    return rc;
}

size_t
roost_tls_ctx_crl_count(const roost_tls_ctx *ctx)
{
    return ctx->n_crls;
}

int
roost_tls_ctx_crl_get(const roost_tls_ctx *ctx, size_t i,
                      roost_tls_crl_issuer *out)
{
    if (i >= ctx->n_crls)
        return ROOST_EINVAL;
    *out = ctx->crls[i].info;
    return ROOST_OK;
}

/* Whether the CRL of ctx that applies to the identity lists its serial: 1
 * listed, 0 not listed, 2 ctx checks CRLs and none applies, -1 out of
 * memory. The serial must be known.
 *
 * The CRL that applies is the one of the certificate's issuer: the CRL's
 * issuer name is the certificate's issuer name and its signature verifies
 * with the key of the CA that issued the certificate (whose
 * authorityKeyIdentifier, if any, load_crl matched against that CA's
 * subjectKeyIdentifier). load_crl keeps one CRL per issuer, the newest,
 * and OpenSSL's verification picks from the same store: among CRLs of the
 * certificate's issuer name it takes only those whose
 * authorityKeyIdentifier matches the issuing CA (crl_akid_check), so a
 * handshake asks that CRL too. An identity without the issuer's key (it
 * was verified without a chain, which cannot happen in a handshake) is
 * looked up in every CRL of its issuer's name: a false revocation is the
 * safe error. */
static int
crl_lists(const roost_tls_ctx *ctx, const roost_tls_identity *id)
{
    static const uint8_t unknown[ROOST_TLS_FINGERPRINT_LEN];
    bool by_key = memcmp(id->issuer_key, unknown, sizeof(unknown)) != 0;
    BIGNUM *bn = BN_bin2bn(id->serial, (int)id->serial_len, NULL);
    ASN1_INTEGER *serial = bn != NULL ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    BN_free(bn);
    if (serial == NULL) {
        ERR_clear_error();
        return -1;
    }
    /* ctx->crls is immutable; OpenSSL locks a CRL itself when a lookup
     * first sorts its entries, so no store lock is needed. */
    int listed = 0;
    bool applies = false;
    for (size_t i = 0; !listed && i < ctx->n_crls; i++) {
        const struct ctx_crl *c = &ctx->crls[i];
        X509_REVOKED *entry = NULL;
        if (X509_NAME_hash_ex(X509_CRL_get_issuer(c->crl), NULL, NULL, NULL) !=
                id->issuer_hash ||
            (by_key && memcmp(c->info.issuer_key, id->issuer_key,
                              sizeof(id->issuer_key)) != 0))
            continue;
        applies = true;
        if (X509_CRL_get0_by_serial(c->crl, &entry, serial) == 1)
            listed = 1;
    }
    ASN1_INTEGER_free(serial);
    ERR_clear_error();
    /* With CRL checking on, OpenSSL refuses a certificate whose issuer has
     * no CRL ("unable to get certificate CRL"); so does the recheck, or a
     * session would outlive what every new handshake of its CA gets. */
    if (!listed && !applies && ctx->crl_check)
        return 2;
    return listed;
}

roost_tls_recheck
roost_tls_ctx_recheck(const roost_tls_ctx *ctx, const roost_tls_identity *id)
{
    if (!roost_tls_ctx_trusts(ctx, id))
        return ROOST_TLS_UNTRUSTED;
    if (id->serial_len == 0) {
        /* The serial cannot be looked up, but OpenSSL's own check during
         * the handshake could: its verdict stands as long as the CRLs are
         * the ones it asked. */
        return memcmp(id->crl_digest, ctx->crl_digest,
                      sizeof(ctx->crl_digest)) == 0
                   ? ROOST_TLS_VALID
                   : ROOST_TLS_UNCHECKED;
    }
    switch (crl_lists(ctx, id)) {
    case 0:
        return ROOST_TLS_VALID;
    case 1:
        return ROOST_TLS_REVOKED;
    case 2:
        return ROOST_TLS_NO_CRL;
    default:
        /* Out of memory: the question cannot be asked, so the answer
         * errs on the side of closing the session. */
        return ROOST_TLS_UNCHECKED;
    }
}

/* OpenSSL asks for a passphrase when a key file is encrypted; without a
 * callback of ours it prompts on the terminal or reads standard input,
 * which would block `roost serve` in a reload or consume the input of an
 * application linking libroost. Roost keys are not encrypted (mode 0600
 * protects them), so the answer is always no; *arg records the question so
 * that the error can say why the key was refused. */
static int
no_passphrase(char *buf, int size, int rwflag, void *arg)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    if (arg != NULL)
        *(bool *)arg = true;
    return -1;
}

/* Why cert may not act as a TLS client (client) or server (!client), or
 * NULL if it may: it must carry an extendedKeyUsage extension that names
 * the role. OpenSSL's purpose check refuses only a certificate whose
 * extension names other roles, and lets one without the extension act as
 * anything; Roost's CA always writes the extension, so a certificate
 * without it was not issued for Roost's use. (anyExtendedKeyUsage alone
 * does not name the role either, as for OpenSSL.) */
static const char *
eku_problem(X509 *cert, bool client)
{
    if ((X509_get_extension_flags(cert) & EXFLAG_XKUSAGE) == 0)
        return client ? "no extendedKeyUsage extension; a client certificate "
                        "needs one with clientAuth (as roost pki sign "
                        "issues)"
                      : "no extendedKeyUsage extension; a server certificate "
                        "needs one with serverAuth (as roost pki server "
                        "issues)";
    uint32_t xku = X509_get_extended_key_usage(cert);
    if ((xku & (client ? XKU_SSL_CLIENT : XKU_SSL_SERVER)) == 0)
        return client ? "its extendedKeyUsage lacks clientAuth: not a client "
                        "certificate (unsuitable certificate purpose)"
                      : "its extendedKeyUsage lacks serverAuth: not a server "
                        "certificate (unsuitable certificate purpose)";
    return NULL;
}

/* The verify callback of every session: OpenSSL's verdict on each
 * certificate of the peer's chain, plus the extendedKeyUsage rule for the
 * peer's certificate (depth 0), which a server checks for clientAuth and
 * a client for serverAuth. It refuses, never accepts what OpenSSL
 * refused; a refusal of ours, or OpenSSL's wrong-purpose refusal that
 * eku_problem explains, leaves the reason in the session for ssl_failure. */
static int
verify_peer_role(int ok, X509_STORE_CTX *xs)
{
    if (X509_STORE_CTX_get_error_depth(xs) != 0)
        return ok;
    if (!ok && X509_STORE_CTX_get_error(xs) != X509_V_ERR_INVALID_PURPOSE)
        return ok; /* OpenSSL's verdict and message stand */
    SSL *ssl =
        X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    X509 *cert = X509_STORE_CTX_get_current_cert(xs);
    if (ssl == NULL || cert == NULL) {
        /* Cannot happen in a handshake; refuse what cannot be checked. */
        X509_STORE_CTX_set_error(xs, X509_V_ERR_UNSPECIFIED);
        return 0;
    }
    const char *why = eku_problem(cert, SSL_is_server(ssl) == 1);
    if (why == NULL)
        return ok;
    roost_tls *t = SSL_get_app_data(ssl);
    if (t != NULL)
        t->refusal = why;
    X509_STORE_CTX_set_error(xs, X509_V_ERR_INVALID_PURPOSE);
    return 0;
}

/* The server's own certificate must verify against its CA file, as a
 * client will verify it: chain, validity period, and the purpose
 * (extendedKeyUsage serverAuth, which a Roost client requires). A context
 * with a certificate no client accepts would be refused by every client;
 * refusing to build it keeps the previous context in force on reload and
 * names the problem at start. The CRL is not consulted: an expired CRL is
 * reported on its own and must not stop the daemon from starting. */
static int
check_own_cert(SSL_CTX *c, const roost_tls_files *files, roost_errmsg *em)
{
    X509 *cert = SSL_CTX_get0_certificate(c);
    STACK_OF(X509) *chain = NULL;
    (void)SSL_CTX_get0_chain_certs(c, &chain);
    X509_STORE_CTX *vctx = X509_STORE_CTX_new();
    if (cert == NULL || vctx == NULL ||
        X509_STORE_CTX_init(vctx, SSL_CTX_get_cert_store(c), cert, chain) !=
            1 ||
        X509_STORE_CTX_set_default(vctx, "ssl_server") != 1) {
        X509_STORE_CTX_free(vctx);
        return fail_ssl(em, ROOST_ENOMEM, "checking the own certificate");
    }
    int ok = X509_verify_cert(vctx);
    int err = X509_STORE_CTX_get_error(vctx);
    X509_STORE_CTX_free(vctx);
    ERR_clear_error();
    const char *why = eku_problem(cert, false);
    if (why != NULL && (ok == 1 || err == X509_V_ERR_INVALID_PURPOSE))
        return roost_fail(em, ROOST_EAUTH,
                          "certificate %s cannot serve TLS clients: %s",
                          files->cert_path, why);
    if (ok != 1)
        return roost_fail(em, ROOST_EAUTH,
                          "certificate %s does not verify against CA %s: %s",
                          files->cert_path, files->ca_path,
                          X509_verify_cert_error_string(err));
    return ROOST_OK;
}

bool
roost_tls_ctx_trusts(const roost_tls_ctx *ctx, const roost_tls_identity *id)
{
    static const uint8_t unknown[ROOST_TLS_FINGERPRINT_LEN];
    if (memcmp(id->anchor_key, unknown, sizeof(unknown)) == 0)
        return false;
    bool trusted = false;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx->ssl_ctx);
    X509_STORE_lock(store);
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    for (int i = 0; !trusted && i < sk_X509_OBJECT_num(objs); i++) {
        X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        uint8_t md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        trusted = ca != NULL &&
                  X509_pubkey_digest(ca, EVP_sha256(), md, &n) == 1 &&
                  n == ROOST_TLS_FINGERPRINT_LEN &&
                  memcmp(md, id->anchor_key, n) == 0;
    }
    X509_STORE_unlock(store);
    ERR_clear_error();
    return trusted;
}

static int
ctx_create(roost_tls_ctx **out, const roost_tls_files *files, bool server,
           roost_errmsg *em)
{
    *out = NULL;
    if (files == NULL || files->ca_path == NULL ||
        (files->cert_path == NULL) != (files->key_path == NULL) ||
        (server && files->cert_path == NULL))
        return roost_fail(em, ROOST_EINVAL,
                          "TLS context needs CA, certificate and key paths");
    if (server && files->crl_path == NULL)
        return roost_fail(em, ROOST_EINVAL,
                          "server TLS context needs the CA's CRL "
                          "(roost pki init writes one)");
    ERR_clear_error();
    roost_tls_ctx *ctx = roost_alloc_calloc(NULL, 1, sizeof(*ctx));
    if (ctx == NULL)
        return roost_fail(em, ROOST_ENOMEM, "TLS context: out of memory");
    ctx->server = server;
    atomic_init(&ctx->refs, 1);
    ctx->ssl_ctx =
        SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    int rc = ROOST_OK;
    if (ctx->ssl_ctx == NULL) {
        rc = fail_ssl(em, ROOST_ECRYPTO, "SSL_CTX_new");
        goto fail;
    }
    ctx->in_method =
        BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "roost-in");
    if (ctx->in_method == NULL ||
        !BIO_meth_set_read_ex(ctx->in_method, in_read) ||
        !BIO_meth_set_ctrl(ctx->in_method, in_ctrl) ||
        !BIO_meth_set_create(ctx->in_method, in_create)) {
        rc = fail_ssl(em, ROOST_ECRYPTO, "BIO method");
        goto fail;
    }
    SSL_CTX *c = ctx->ssl_ctx;
    if (!SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION)) {
        rc = fail_ssl(em, ROOST_ECRYPTO, "cannot restrict to TLS 1.3");
        goto fail;
    }
    /* Idle sessions are the common case on a coordinator: release the
     * 16 KiB record buffers between records. Session tickets are of no use
     * (connections are long-lived, and resumption would skip the client
     * certificate check against a CRL that may have changed). */
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(c, 0);

    bool asked_passphrase = false;
    SSL_CTX_set_default_passwd_cb(c, no_passphrase);
    SSL_CTX_set_default_passwd_cb_userdata(c, &asked_passphrase);
    if (files->cert_path != NULL &&
        SSL_CTX_use_certificate_chain_file(c, files->cert_path) != 1) {
        /* OpenSSL's reason tells a missing or damaged file from one it
         * refuses, such as a key too small for its security level. */
        char reason[160];
        openssl_reason(reason, sizeof(reason));
        rc = roost_fail(em, ROOST_EIO,
                        "certificate %s: unreadable, not a PEM certificate or "
                        "refused (%s)",
                        files->cert_path, reason);
        goto fail;
    }
    int key_ok =
        files->key_path == NULL ||
        SSL_CTX_use_PrivateKey_file(c, files->key_path, SSL_FILETYPE_PEM) == 1;
    /* The flag lives on this stack frame: forget it before returning. */
    SSL_CTX_set_default_passwd_cb_userdata(c, NULL);
    if (!key_ok) {
        unsigned long e = ERR_peek_last_error();
        if (asked_passphrase)
            rc = roost_fail(em, ROOST_EINVAL,
                            "key %s is encrypted: Roost reads only "
                            "unencrypted keys (protected by mode 0600)",
                            files->key_path);
        else if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
                 ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
            rc = roost_fail(em, ROOST_EINVAL,
                            "key %s does not match certificate %s",
                            files->key_path, files->cert_path);
        else
            rc = roost_fail(em, ROOST_EIO,
                            "key %s: unreadable or not a PEM private key",
                            files->key_path);
        goto fail;
    }
    if (files->key_path != NULL && SSL_CTX_check_private_key(c) != 1) {
        char reason[160];
        openssl_reason(reason, sizeof(reason));
        rc = roost_fail(em, ROOST_EINVAL,
                        "key %s does not match certificate %s (%s)",
                        files->key_path, files->cert_path, reason);
        goto fail;
    }
    if (SSL_CTX_load_verify_locations(c, files->ca_path, NULL) != 1) {
        rc = roost_fail(em, ROOST_EIO,
                        "CA %s: unreadable or not a PEM certificate",
                        files->ca_path);
        goto fail;
    }
    if (server && (rc = check_own_cert(c, files, em)) != ROOST_OK)
        goto fail;
    /* A client's own certificate is checked for its role only: the chain
     * leads to the coordinator's CA, which the device may not hold (it
     * trusts ca_path for the server), and its validity period is the
     * server's to judge by its clock. A certificate for another role is
     * refused by every coordinator; saying so here names the file. */
    const char *why = NULL;
    if (!server && files->cert_path != NULL &&
        (why = eku_problem(SSL_CTX_get0_certificate(c), true)) != NULL) {
        rc = roost_fail(em, ROOST_EAUTH,
                        "certificate %s cannot act as a TLS client: %s",
                        files->cert_path, why);
        goto fail;
    }
    if (files->crl_path != NULL) {
        X509_STORE *store = SSL_CTX_get_cert_store(c);
        rc = load_crl(ctx, store, files->crl_path, files->ca_path,
                      ctx->crl_digest, em);
        if (rc != ROOST_OK)
            goto fail;
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
        ctx->crl_check = true;
    }
    if (server) {
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                           verify_peer_role);
        /* Tell clients which CA we accept (helps s_client pick a cert). */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(files->ca_path);
        if (names != NULL)
            SSL_CTX_set_client_CA_list(c, names);
    } else {
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, verify_peer_role);
    }
    SSL_CTX_set_verify_depth(c, 4);
    ERR_clear_error();
    *out = ctx;
    return ROOST_OK;

fail:
    roost_tls_ctx_destroy(ctx);
    ERR_clear_error();
    return rc;
}

int
roost_tls_ctx_create_server(roost_tls_ctx **out, const roost_tls_files *files,
                            roost_errmsg *em)
{
    return ctx_create(out, files, true, em);
}

int
roost_tls_ctx_create_client(roost_tls_ctx **out, const roost_tls_files *files,
                            roost_errmsg *em)
{
    return ctx_create(out, files, false, em);
}

int
roost_tls_create(roost_tls **out, roost_tls_ctx *ctx, const char *server_name,
                 size_t in_cap, roost_errmsg *em)
{
    *out = NULL;
    if (ctx->server != (server_name == NULL))
        return roost_fail(em, ROOST_EINVAL,
                          ctx->server ? "server session takes no host name"
                                      : "client session needs the server's "
                                        "host name");
    roost_tls *t = roost_alloc_calloc(NULL, 1, sizeof(*t));
    if (t == NULL)
        return roost_fail(em, ROOST_ENOMEM, "TLS session: out of memory");
    t->in_cap = in_cap != 0 ? in_cap : TLS_DEFAULT_IN_CAP;
    t->server = ctx->server;
    t->ssl = SSL_new(ctx->ssl_ctx);
    t->in = BIO_new(ctx->in_method);
    t->out = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->in == NULL || t->out == NULL) {
        BIO_free(t->in);
        BIO_free(t->out);
        SSL_free(t->ssl);
        roost_alloc_free(NULL, t);
        ERR_clear_error();
        return roost_fail(em, ROOST_ENOMEM, "TLS session: out of memory");
    }
    BIO_set_data(t->in, t);
    SSL_set_bio(t->ssl, t->in, t->out); /* ssl owns both now */
    SSL_set_app_data(t->ssl, t);        /* for verify_peer_role */
    t->ctx = ctx;
    roost_tls_ctx_ref(ctx);
    if (ctx->server) {
        SSL_set_accept_state(t->ssl);
    } else {
        /* SSL_set_tlsext_host_name is a macro that casts its argument to
         * void * (OpenSSL copies the name; it never writes it). */
        char *sni;
        memcpy(&sni, &server_name, sizeof(sni));
        if (SSL_set1_host(t->ssl, server_name) != 1 ||
            SSL_set_tlsext_host_name(t->ssl, sni) != 1) {
            int rc = fail_ssl(em, ROOST_EINVAL, "server host name");
            roost_tls_destroy(t);
            return rc;
        }
        SSL_set_connect_state(t->ssl);
    }
    *out = t;
    return ROOST_OK;
}

void
roost_tls_destroy(roost_tls *tls)
{
    if (tls == NULL)
        return;
    SSL_free(tls->ssl);
    roost_alloc_free(NULL, tls->spill);
    roost_tls_ctx_destroy(tls->ctx);
    roost_alloc_free(NULL, tls);
}

int
roost_tls_feed(roost_tls *tls, const void *data, size_t len, roost_errmsg *em)
{
    size_t pending = in_available(tls);
    int rc = spill_append(tls, data, len);
    if (rc == ROOST_ETOOBIG)
        return roost_fail(em, rc,
                          "TLS input buffer cap %zu bytes exceeded "
                          "(%zu buffered, %zu arriving)",
                          tls->in_cap, pending, len);
    if (rc != ROOST_OK)
        return roost_fail(em, rc, "TLS input buffer: out of memory");
    return ROOST_OK;
}

void
roost_tls_feed_borrowv(roost_tls *tls, const roost_tls_piece *pieces, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += pieces[i].len;
    tls->borrow = NULL;
    tls->borrow_len = 0;
    tls->next_piece = pieces;
    tls->n_next = n;
    tls->borrow_rest = total;
}

void
roost_tls_feed_borrow(roost_tls *tls, const void *data, size_t len)
{
    tls->one.data = data;
    tls->one.len = len;
    roost_tls_feed_borrowv(tls, &tls->one, 1);
}

int
roost_tls_feed_release(roost_tls *tls, roost_errmsg *em)
{
    size_t n = tls->borrow_len + tls->borrow_rest;
    if (n == 0 && tls->spill_end == tls->spill_start && !tls->keep &&
        tls->spill != NULL) {
        /* Idle sessions hold no input buffer. */
        roost_alloc_free(NULL, tls->spill);
        tls->spill = NULL;
        tls->spill_cap = tls->spill_start = tls->spill_end = 0;
    }
    size_t pending = in_available(tls) - n;
    int rc = ROOST_OK;
    if (pending + n > tls->in_cap)
        rc = roost_fail(em, ROOST_ETOOBIG,
                        "TLS input buffer cap %zu bytes exceeded "
                        "(%zu buffered, %zu arriving)",
                        tls->in_cap, pending, n);
    while (rc == ROOST_OK && borrow_advance(tls)) {
        rc = roost_tls_feed(tls, tls->borrow, tls->borrow_len, em);
        tls->borrow_len = 0;
    }
    tls->borrow = NULL;
    tls->borrow_len = 0;
    tls->next_piece = NULL;
    tls->n_next = tls->borrow_rest = 0;
    return rc;
}

/* Turn a failed SSL_* call into a code and message. */
static int
ssl_failure(roost_tls *tls, int ret, const char *op, roost_errmsg *em)
{
    int err = SSL_get_error(tls->ssl, ret);
    switch (err) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        clear_errors();
        return ROOST_EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return roost_fail(em, ROOST_ECLOSED, "peer sent close_notify");
    default:
        break;
    }
    long vr = SSL_get_verify_result(tls->ssl);
    if (vr != X509_V_OK) {
        ERR_clear_error();
        return roost_fail(
            em, ROOST_EAUTH, "%s: peer certificate refused: %s", op,
            tls->refusal != NULL ? tls->refusal
                                 : X509_verify_cert_error_string(vr));
    }
    unsigned long e = ERR_peek_last_error();
    char reason[160];
    openssl_reason(reason, sizeof(reason));
    if (ERR_GET_LIB(e) == ERR_LIB_SSL) {
        int r = ERR_GET_REASON(e);
        /* The peer refused us (alerts about our certificate), or we
         * refused a peer that sent no certificate. */
        if (r == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE ||
            r == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED ||
            r == SSL_R_SSLV3_ALERT_BAD_CERTIFICATE ||
            r == SSL_R_TLSV1_ALERT_UNKNOWN_CA ||
            r == SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED ||
            r == SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED ||
            r == SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN ||
            r == SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE ||
            r == SSL_R_CERTIFICATE_VERIFY_FAILED)
            return roost_fail(em, ROOST_EAUTH, "%s: %s", op, reason);
    }
    if (err == SSL_ERROR_SYSCALL && e == 0)
        return roost_fail(em, ROOST_ETLS, "%s: unexpected end of stream", op);
    return roost_fail(em, ROOST_ETLS, "%s: %s", op, reason);
}

int
roost_tls_handshake(roost_tls *tls, roost_errmsg *em)
{
    if (tls->done)
        return ROOST_OK;
    ERR_clear_error();
    int ret = SSL_do_handshake(tls->ssl);
    if (ret == 1) {
        tls->done = true;
        return ROOST_OK;
    }
    return ssl_failure(tls, ret, "handshake", em);
}

bool
roost_tls_handshake_done(const roost_tls *tls)
{
    return tls->done;
}

int
roost_tls_peer_identity(const roost_tls *tls, roost_tls_identity *out)
{
    if (!tls->done)
        return ROOST_ESTATE;
    X509 *cert = SSL_get0_peer_certificate(tls->ssl);
    if (cert == NULL)
        return ROOST_EAUTH;
    unsigned int n = 0;
    if (X509_digest(cert, EVP_sha256(), out->fingerprint, &n) != 1 ||
        n != ROOST_TLS_FINGERPRINT_LEN) {
        ERR_clear_error();
        return ROOST_ECRYPTO;
    }
    static const char hex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < n; i++) {
        out->fingerprint_hex[2 * i] = hex[out->fingerprint[i] >> 4];
        out->fingerprint_hex[2 * i + 1] = hex[out->fingerprint[i] & 15];
    }
    out->fingerprint_hex[2 * n] = '\0';
    /* The serial as a big-endian magnitude (Roost's serials are positive),
     * and the issuer's name hash: enough to find it in a CRL later. */
    out->serial_len = 0;
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    if (bn != NULL && !BN_is_negative(bn) &&
        BN_num_bytes(bn) <= ROOST_TLS_SERIAL_CAP)
        out->serial_len = (size_t)BN_bn2bin(bn, out->serial);
    BN_free(bn);
    out->issuer_hash =
        X509_NAME_hash_ex(X509_get_issuer_name(cert), NULL, NULL, NULL);
    memcpy(out->crl_digest, tls->ctx->crl_digest, sizeof(out->crl_digest));
    if (!asn1_seconds(X509_get0_notAfter(cert), time(NULL), &out->not_after))
        out->not_after = INT64_MAX;
    /* The verified chain ends at the trust anchor, a CA certificate of
     * the context's CA file; the certificate after the peer's issued it. */
    memset(out->anchor_key, 0, sizeof(out->anchor_key));
    memset(out->issuer_key, 0, sizeof(out->issuer_key));
    STACK_OF(X509) *chain = SSL_get0_verified_chain(tls->ssl);
    int depth = chain != NULL ? sk_X509_num(chain) : 0;
    unsigned int klen = 0;
    if (depth > 0 &&
        (X509_pubkey_digest(sk_X509_value(chain, depth - 1), EVP_sha256(),
                            out->anchor_key, &klen) != 1 ||
         klen != ROOST_TLS_FINGERPRINT_LEN))
        memset(out->anchor_key, 0, sizeof(out->anchor_key));
    if (depth > 1 && (X509_pubkey_digest(sk_X509_value(chain, 1), EVP_sha256(),
                                         out->issuer_key, &klen) != 1 ||
                      klen != ROOST_TLS_FINGERPRINT_LEN))
        memset(out->issuer_key, 0, sizeof(out->issuer_key));
    (void)name_text(X509_get_subject_name(cert), out->subject);
    ERR_clear_error();
    return ROOST_OK;
}

int
roost_tls_read(roost_tls *tls, void *buf, size_t cap, size_t *len,
               roost_errmsg *em)
{
    *len = 0;
    if (!tls->done)
        return roost_fail(em, ROOST_ESTATE, "TLS read before handshake");
    if (cap == 0)
        return ROOST_OK;
    clear_errors();
    size_t got = 0;
    int ret = SSL_read_ex(tls->ssl, buf, cap, &got);
    if (ret == 1) {
        *len = got;
        return ROOST_OK;
    }
    return ssl_failure(tls, ret, "read", em);
}

int
roost_tls_write(roost_tls *tls, const void *data, size_t len, roost_errmsg *em)
{
    if (!tls->done)
        return roost_fail(em, ROOST_ESTATE, "TLS write before handshake");
    const uint8_t *p = data;
    while (len > 0) {
        clear_errors();
        size_t written = 0;
        int ret = SSL_write_ex(tls->ssl, p, len, &written);
        if (ret != 1) {
            int rc = ssl_failure(tls, ret, "write", em);
            /* A memory BIO never refuses a write, so "retry" here means
             * the session is in a state where it cannot send. */
            return rc == ROOST_EAGAIN
                       ? roost_fail(em, ROOST_ETLS, "write: session stalled")
                       : rc;
        }
        p += written;
        len -= written;
    }
    return ROOST_OK;
}

void
roost_tls_close_notify(roost_tls *tls)
{
    if (tls->done)
        SSL_shutdown(tls->ssl);
    ERR_clear_error();
}

size_t
roost_tls_out_pending(const roost_tls *tls)
{
    return BIO_ctrl_pending(tls->out);
}

const uint8_t *
roost_tls_out_peek(roost_tls *tls, size_t *len)
{
    char *data = NULL;
    long n = BIO_get_mem_data(tls->out, &data);
    *len = n > 0 ? (size_t)n : 0;
    return (const uint8_t *)data;
}

void
roost_tls_out_consume(roost_tls *tls, size_t n)
{
    size_t pending = BIO_ctrl_pending(tls->out);
    if (n >= pending) {
        (void)BIO_reset(tls->out);
        return;
    }
    uint8_t scratch[4096];
    while (n > 0) {
        int chunk = (int)(n < sizeof(scratch) ? n : sizeof(scratch));
        int got = BIO_read(tls->out, scratch, chunk);
        if (got <= 0)
            break;
        n -= (size_t)got;
    }
}

void
roost_tls_keep_buffers(roost_tls *tls, bool keep)
{
    tls->keep = keep;
    if (keep)
        SSL_clear_mode(tls->ssl, SSL_MODE_RELEASE_BUFFERS);
    else
        SSL_set_mode(tls->ssl, SSL_MODE_RELEASE_BUFFERS);
}

void
roost_tls_trim(roost_tls *tls)
{
    if (BIO_ctrl_pending(tls->out) == 0) {
        /* A drained BIO_s_mem keeps its largest buffer; a fresh one
         * holds none until something is written. */
        BIO *fresh = BIO_new(BIO_s_mem());
        if (fresh != NULL) {
            SSL_set0_wbio(tls->ssl, fresh); /* frees the old one */
            tls->out = fresh;
        }
    }
    if (tls->borrow_len + tls->borrow_rest == 0 &&
        tls->spill_start == tls->spill_end && tls->spill != NULL) {
        roost_alloc_free(NULL, tls->spill);
        tls->spill = NULL;
        tls->spill_cap = tls->spill_start = tls->spill_end = 0;
    }
    ERR_clear_error();
}

size_t
roost_tls_in_pending(const roost_tls *tls)
{
    /* OpenSSL moves a partial record out of the BIO into its own buffer
     * while it waits for the rest; count that as one pending byte. */
    return in_available(tls) + (SSL_has_pending(tls->ssl) ? 1 : 0);
}
