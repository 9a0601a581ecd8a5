/*
 * pki.c - a small certificate authority over OpenSSL's C API (see pki.h).
 *
 * Every function builds its objects, writes its outputs, and frees
 * everything on every path (one cleanup label per function). Outputs are
 * created exclusively, so a mistyped command never destroys a key; if a
 * later step fails after an output was created, that output is removed so
 * a retry does not trip over half a result.
 *
 * No globals; randomness (serial numbers) comes from common/rng.h, key
 * generation from OpenSSL's DRBG (the same source rng.h is seeded from).
 */
#include "common/pki.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/rng.h"

static int
fail_ssl(roost_errmsg *em, int code, const char *what)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()) != 0)
        last = e;
    char reason[160] = "no OpenSSL detail";
    if (last != 0)
        ERR_error_string_n(last, reason, sizeof(reason));
    return roost_fail(em, code, "%s: %s", what, reason);
}

/* What a PEM output holds (one writer for all of them). */
typedef enum pem_kind { PEM_KEY, PEM_CERT, PEM_CSR, PEM_CRL } pem_kind;

static bool
pem_write(FILE *f, pem_kind kind, void *obj)
{
    switch (kind) {
    case PEM_KEY:
        return PEM_write_PrivateKey(f, obj, NULL, NULL, 0, NULL, NULL) == 1;
    case PEM_CERT:
        return PEM_write_X509(f, obj) == 1;
    case PEM_CSR:
        return PEM_write_X509_REQ(f, obj) == 1;
    case PEM_CRL:
        return PEM_write_X509_CRL(f, obj) == 1;
    }
    return false;
}

/* fsync the directory holding path, so that a name just created or
 * replaced survives a crash. Best effort: the file itself is on disk
 * already, and a directory that cannot be opened read-only loses nothing
 * more than before. */
static void
sync_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t n = slash == NULL ? 0 : (size_t)(slash - path);
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (n == 0)
        snprintf(dir, sizeof(dir), "/");
    else if (n < sizeof(dir)) {
        memcpy(dir, path, n);
        dir[n] = '\0';
    } else
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* Write obj as PEM to a new temporary file beside path (path.tmp-XXXXXX,
 * created exclusively by mkstemp, then given exactly `mode`: the umask
 * may have narrowed it), flushed to disk. On success tmp holds its name;
 * on failure nothing is left. */
static int
write_temp(const char *path, mode_t mode, pem_kind kind, void *obj, char *tmp,
           size_t tmp_cap, roost_errmsg *em)
{
    int n = snprintf(tmp, tmp_cap, "%s.tmp-XXXXXX", path);
    if (n < 0 || (size_t)n >= tmp_cap)
        return roost_fail(em, ROOST_EINVAL, "%s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return roost_fail(em, ROOST_EIO, "%s: %s", path, strerror(errno));
    FILE *f = NULL;
    int e = 0;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 || fchmod(fd, mode) != 0 ||
        (f = fdopen(fd, "w")) == NULL) {
        e = errno;
        close(fd);
        unlink(tmp);
        return roost_fail(em, ROOST_EIO, "%s: %s", path, strerror(e));
    }
    bool ok = pem_write(f, kind, obj);
    bool flushed = fflush(f) == 0 && fsync(fileno(f)) == 0;
    e = errno;
    bool closed = fclose(f) == 0;
    if (!ok || !flushed || !closed) {
        unlink(tmp);
        if (!ok)
            return fail_ssl(em, ROOST_EIO, path);
        return roost_fail(em, ROOST_EIO, "%s: write failed: %s", path,
                          strerror(flushed ? errno : e));
    }
    return ROOST_OK;
}

/* Create path holding obj, exclusively and atomically. The PEM goes to a
 * temporary file first, which link() then names path: link() fails if
 * path exists, so nothing is ever overwritten, and path never names a
 * partial file. A crash or a full disk half-way leaves at most a
 * temporary file, never a truncated key under the real name that a retry
 * would refuse to replace. (Hard links are needed: every Linux file
 * system a CA directory or a device's key lives on has them.) */
static int
create_pem(const char *path, mode_t mode, pem_kind kind, void *obj,
           roost_errmsg *em)
{
    if (access(path, F_OK) == 0)
        return roost_fail(em, ROOST_EIO,
                          "%s: exists already (refusing to overwrite)", path);
    char tmp[4096];
    int rc = write_temp(path, mode, kind, obj, tmp, sizeof(tmp), em);
    if (rc != ROOST_OK)
        return rc;
    if (link(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return roost_fail(em, ROOST_EIO, "%s: %s%s", path, strerror(e),
                          e == EEXIST ? " (refusing to overwrite)" : "");
    }
    unlink(tmp);
    sync_dir(path);
    return ROOST_OK;
}

static int
write_key(const char *path, EVP_PKEY *key, roost_errmsg *em)
{
    return create_pem(path, 0600, PEM_KEY, key, em);
}

static int
write_cert(const char *path, X509 *cert, roost_errmsg *em)
{
    return create_pem(path, 0644, PEM_CERT, cert, em);
}

/* Replace path with the CRL atomically (temporary file + rename): readers
 * see the old CRL or the new one, never part of one. */
static int
write_crl(const char *path, X509_CRL *crl, roost_errmsg *em)
{
    char tmp[4096];
    int rc = write_temp(path, 0644, PEM_CRL, crl, tmp, sizeof(tmp), em);
    if (rc != ROOST_OK)
        return rc;
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return roost_fail(em, ROOST_EIO, "%s: rename: %s", path, strerror(e));
    }
    sync_dir(path);
    return ROOST_OK;
}

static int
new_key(EVP_PKEY **out, roost_errmsg *em)
{
    *out = EVP_EC_gen("P-256");
    if (*out == NULL)
        return fail_ssl(em, ROOST_ECRYPTO, "EC P-256 key generation");
    return ROOST_OK;
}

static int
read_key(const char *path, EVP_PKEY **out, roost_errmsg *em)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return roost_fail(em, ROOST_EIO, "%s: %s", path, strerror(errno));
    *out = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (*out == NULL) {
        ERR_clear_error();
        return roost_fail(em, ROOST_EIO, "%s: not a PEM private key", path);
    }
    return ROOST_OK;
}

static int
read_cert(const char *path, X509 **out, roost_errmsg *em)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return roost_fail(em, ROOST_EIO, "%s: %s", path, strerror(errno));
    *out = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (*out == NULL) {
        ERR_clear_error();
        return roost_fail(em, ROOST_EIO, "%s: not a PEM certificate", path);
    }
    return ROOST_OK;
}

/* A positive random 127-bit serial number. */
static int
set_serial(X509 *cert, roost_errmsg *em)
{
    roost_rng *rng;
    int rc = roost_rng_create(&rng, NULL);
    if (rc != ROOST_OK)
        return roost_fail(em, rc, "serial number: CSPRNG unavailable");
    uint8_t bytes[16];
    rc = roost_rng_bytes(rng, bytes, sizeof(bytes));
    roost_rng_destroy(rng);
    if (rc != ROOST_OK)
        return roost_fail(em, rc, "serial number: CSPRNG failed");
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; /* never zero, never a leading zero byte */
    BIGNUM *bn = BN_bin2bn(bytes, (int)sizeof(bytes), NULL);
    bool ok = bn != NULL &&
              BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL;
    BN_free(bn);
    if (!ok)
        return fail_ssl(em, ROOST_ECRYPTO, "serial number");
    return ROOST_OK;
}

static int
check_cn(const char *cn, roost_errmsg *em)
{
    size_t n = cn != NULL ? strlen(cn) : 0;
    if (n == 0 || n > 64)
        return roost_fail(em, ROOST_EINVAL,
                          "common name must be 1 to 64 characters");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)cn[i] < 0x20 || cn[i] == 0x7f)
            return roost_fail(em, ROOST_EINVAL,
                              "common name contains a control character");
    return ROOST_OK;
}

static int
set_subject_cn(X509_NAME *name, const char *cn, roost_errmsg *em)
{
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                   (const unsigned char *)cn, -1, -1, 0) != 1)
        return fail_ssl(em, ROOST_ECRYPTO, "subject name");
    return ROOST_OK;
}

static int
add_ext(X509 *cert, X509 *issuer, int nid, const char *value, roost_errmsg *em)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (ext == NULL)
        return fail_ssl(em, ROOST_ECRYPTO, value);
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    if (ok != 1)
        return fail_ssl(em, ROOST_ECRYPTO, value);
    return ROOST_OK;
}

static int
set_validity(X509 *cert, const roost_pki_validity *v, roost_errmsg *em)
{
    if (v->not_after_s <= v->not_before_s)
        return roost_fail(em, ROOST_EINVAL,
                          "validity: not_after must follow not_before");
    if (X509_gmtime_adj(X509_getm_notBefore(cert), (long)v->not_before_s) ==
            NULL ||
        X509_gmtime_adj(X509_getm_notAfter(cert), (long)v->not_after_s) == NULL)
        return fail_ssl(em, ROOST_ECRYPTO, "validity");
    return ROOST_OK;
}

/* Fields every certificate we issue shares. */
static int
fill_cert(X509 *cert, X509 *issuer, EVP_PKEY *pub, const roost_pki_validity *v,
          roost_errmsg *em)
{
    int rc;
    if (X509_set_version(cert, 2) != 1 || X509_set_pubkey(cert, pub) != 1)
        return fail_ssl(em, ROOST_ECRYPTO, "certificate");
    if ((rc = set_serial(cert, em)) != ROOST_OK ||
        (rc = set_validity(cert, v, em)) != ROOST_OK)
        return rc;
    if (X509_set_issuer_name(cert, X509_get_subject_name(issuer)) != 1)
        return fail_ssl(em, ROOST_ECRYPTO, "issuer name");
    if ((rc = add_ext(cert, issuer, NID_subject_key_identifier, "hash", em)) !=
            ROOST_OK ||
        (rc = add_ext(cert, issuer, NID_authority_key_identifier,
                      "keyid:always", em)) != ROOST_OK)
        return rc;
    return ROOST_OK;
}

static int
sign_cert(X509 *cert, EVP_PKEY *ca_key, roost_errmsg *em)
{
    if (X509_sign(cert, ca_key, EVP_sha256()) <= 0)
        return fail_ssl(em, ROOST_ECRYPTO, "signing certificate");
    return ROOST_OK;
}

/* The CA key and certificate, checked to belong together. */
static int
load_ca(const char *key_path, const char *cert_path, EVP_PKEY **key,
        X509 **cert, roost_errmsg *em)
{
    *key = NULL;
    *cert = NULL;
    int rc = read_key(key_path, key, em);
    if (rc == ROOST_OK)
        rc = read_cert(cert_path, cert, em);
    if (rc == ROOST_OK && X509_check_private_key(*cert, *key) != 1) {
        ERR_clear_error();
        rc = roost_fail(em, ROOST_EINVAL,
                        "%s does not belong to CA certificate %s", key_path,
                        cert_path);
    }
    if (rc != ROOST_OK) {
        EVP_PKEY_free(*key);
        X509_free(*cert);
        *key = NULL;
        *cert = NULL;
    }
    return rc;
}

/* How far back lastUpdate lies (roost pki server and sign also start
 * certificates 300 s back). */
#define CLOCK_SKEW_S 300L

/* An issuing CA must be within its validity period: a certificate signed
 * by an expired (or not yet valid) CA certificate fails every
 * verification, so issuing one would only defer the error to the first
 * handshake. (revoke and crl do not check: revoking stays possible.) */
static int
check_ca_current(X509 *ca_cert, const char *ca_cert_path, roost_errmsg *em)
{
    const ASN1_TIME *after = X509_get0_notAfter(ca_cert);
    const ASN1_TIME *before = X509_get0_notBefore(ca_cert);
    char when[64] = "?";
    BIO *b = BIO_new(BIO_s_mem());
    int rc = ROOST_OK;
    if (X509_cmp_current_time(after) <= 0) {
        if (b != NULL && ASN1_TIME_print(b, after) == 1) {
            int n = BIO_read(b, when, (int)sizeof(when) - 1);
            when[n > 0 ? n : 0] = '\0';
        }
        rc = roost_fail(em, ROOST_EINVAL,
                        "CA certificate %s expired (%s): certificates it "
                        "signs would never verify; create a new CA",
                        ca_cert_path, when);
    } else if (X509_cmp_current_time(before) >= 0) {
        rc = roost_fail(em, ROOST_EINVAL,
                        "CA certificate %s is not valid yet: check the clock",
                        ca_cert_path);
    }
    BIO_free(b);
    ERR_clear_error();
    return rc;
}

static int
crl_set_times(X509_CRL *crl, int64_t crl_days, roost_errmsg *em)
{
    if (crl_days <= 0 || crl_days > 3650)
        return roost_fail(em, ROOST_EINVAL,
                          "CRL validity must be 1 to 3650 days");
    /* lastUpdate lies a few minutes back, as certificates' notBefore
     * does: OpenSSL refuses a CRL issued "in the future" ("CRL is not yet
     * valid"), so a coordinator whose clock is a little behind the CA's
     * would otherwise refuse every client once it reloads the CRL. */
    ASN1_TIME *now = X509_gmtime_adj(NULL, -CLOCK_SKEW_S);
    ASN1_TIME *next = X509_gmtime_adj(NULL, (long)(crl_days * ROOST_PKI_DAY_S));
    bool ok = now != NULL && next != NULL &&
              X509_CRL_set1_lastUpdate(crl, now) == 1 &&
              X509_CRL_set1_nextUpdate(crl, next) == 1;
    ASN1_TIME_free(now);
    ASN1_TIME_free(next);
    if (!ok)
        return fail_ssl(em, ROOST_ECRYPTO, "CRL times");
    return ROOST_OK;
}

/* RFC 5280 caps a cRLNumber at 20 octets. They are the octets of its DER
 * encoding, where a positive number whose top bit is set takes a leading
 * zero octet: 20 octets hold 159 bits, up to 2^159 - 1. */
#define CRL_NUMBER_MAX_OCTETS 20

/* The number the next CRL after `prev` (NULL: none yet) carries: prev's
 * cRLNumber plus one. A CRL without a number (as roost pki wrote before it
 * numbered CRLs) counts as 0, as does a negative one (not conforming, and
 * numbers only need to grow). The number lives in the CRL itself, which
 * is replaced atomically under the CA's lock: whichever CRL the file
 * holds after a crash, the next one is numbered after it, and parallel
 * revocations each start from their predecessor's number. */
static int
crl_next_number(const X509_CRL *prev, const char *crl_path, BIGNUM **out,
                roost_errmsg *em)
{
    *out = NULL;
    ASN1_INTEGER *num = NULL;
    if (prev != NULL) {
        int crit = -1;
        num = X509_CRL_get_ext_d2i(prev, NID_crl_number, &crit, NULL);
        if (num == NULL && crit != -1) {
            ERR_clear_error();
            return roost_fail(em, ROOST_EIO,
                              "%s: its cRLNumber extension is damaged or "
                              "repeated",
                              crl_path);
        }
    }
    BIGNUM *bn = num != NULL ? ASN1_INTEGER_to_BN(num, NULL) : BN_new();
    ASN1_INTEGER_free(num);
    if (bn == NULL)
        return fail_ssl(em, ROOST_ENOMEM, "CRL number");
    if (BN_is_negative(bn))
        BN_zero(bn);
    if (BN_add_word(bn, 1) != 1) {
        BN_free(bn);
        return fail_ssl(em, ROOST_ENOMEM, "CRL number");
    }
    if (BN_num_bits(bn) > 8 * CRL_NUMBER_MAX_OCTETS - 1) {
        BN_free(bn);
        return roost_fail(em, ROOST_EINVAL,
                          "%s: the next CRL number would exceed %d octets "
                          "(RFC 5280); create a new CA",
                          crl_path, CRL_NUMBER_MAX_OCTETS);
    }
    *out = bn;
    return ROOST_OK;
}

/* Give crl the extensions RFC 5280 requires of a CRL issuer (5.2.1,
 * 5.2.3): an authorityKeyIdentifier holding the CA certificate's
 * subjectKeyIdentifier (so a relying party finds the right key when a CA
 * is re-keyed under the same name) and the cRLNumber `number` (so it can
 * tell the newer of two CRLs). Extensions of a previous issue are
 * replaced. Every CA certificate roost pki init makes has a
 * subjectKeyIdentifier; for one made elsewhere without it (which RFC 5280
 * forbids of a CA) the key identifier is the SHA-1 of its public key, the
 * usual derivation (RFC 5280 4.2.1.2), rather than a refusal: a CA that
 * could not revoke would leave revoked devices in. */
static int
crl_set_extensions(X509_CRL *crl, X509 *ca_cert, const BIGNUM *number,
                   roost_errmsg *em)
{
    static const int nids[] = {NID_authority_key_identifier, NID_crl_number};
    for (size_t i = 0; i < sizeof(nids) / sizeof(nids[0]); i++) {
        int at;
        while ((at = X509_CRL_get_ext_by_NID(crl, nids[i], -1)) >= 0)
            X509_EXTENSION_free(X509_CRL_delete_ext(crl, at));
    }
    AUTHORITY_KEYID *aki = AUTHORITY_KEYID_new();
    ASN1_INTEGER *num = BN_to_ASN1_INTEGER(number, NULL);
    bool ok = aki != NULL && num != NULL;
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca_cert);
    if (ok && ski != NULL) {
        ok = (aki->keyid = ASN1_OCTET_STRING_dup(ski)) != NULL;
    } else if (ok) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        ok = X509_pubkey_digest(ca_cert, EVP_sha1(), md, &n) == 1 &&
             (aki->keyid = ASN1_OCTET_STRING_new()) != NULL &&
             ASN1_OCTET_STRING_set(aki->keyid, md, (int)n) == 1;
    }
    ok = ok &&
         X509_CRL_add1_ext_i2d(crl, NID_authority_key_identifier, aki, 0, 0) ==
             1 &&
         X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) == 1 &&
         X509_CRL_set_version(crl, 1) == 1; /* v2: has extensions */
    AUTHORITY_KEYID_free(aki);
    ASN1_INTEGER_free(num);
    if (!ok)
        return fail_ssl(em, ROOST_ECRYPTO, "CRL extensions");
    return ROOST_OK;
}

int
roost_pki_init(const char *ca_key_path, const char *ca_cert_path,
               const char *crl_path, const char *cn, int64_t days,
               int64_t crl_days, roost_errmsg *em)
{
    int rc = check_cn(cn, em);
    if (rc != ROOST_OK)
        return rc;
    if (days <= 0 || days > 36500)
        return roost_fail(em, ROOST_EINVAL, "days must be 1 to 36500");
    if (access(crl_path, F_OK) == 0 || access(ca_cert_path, F_OK) == 0)
        return roost_fail(em, ROOST_EIO,
                          "%s or %s exists already (refusing to overwrite)",
                          ca_cert_path, crl_path);
    EVP_PKEY *key = NULL;
    X509 *cert = X509_new();
    X509_CRL *crl = X509_CRL_new();
    BIGNUM *crl_number = NULL;
    bool key_written = false, cert_written = false;
    if (cert == NULL || crl == NULL) {
        rc = fail_ssl(em, ROOST_ENOMEM, "CA");
        goto out;
    }
    if ((rc = new_key(&key, em)) != ROOST_OK)
        goto out;
    if ((rc = set_subject_cn(X509_get_subject_name(cert), cn, em)) != ROOST_OK)
        goto out;
    roost_pki_validity v = {-3600, days * ROOST_PKI_DAY_S};
    if ((rc = fill_cert(cert, cert, key, &v, em)) != ROOST_OK ||
        (rc = add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE",
                      em)) != ROOST_OK ||
        (rc = add_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign",
                      em)) != ROOST_OK ||
        (rc = sign_cert(cert, key, em)) != ROOST_OK)
        goto out;
    if (X509_CRL_set_version(crl, 1) != 1 ||
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(cert)) != 1) {
        rc = fail_ssl(em, ROOST_ECRYPTO, "CRL");
        goto out;
    }
    if ((rc = crl_set_times(crl, crl_days, em)) != ROOST_OK ||
        (rc = crl_next_number(NULL, crl_path, &crl_number, em)) != ROOST_OK ||
        (rc = crl_set_extensions(crl, cert, crl_number, em)) != ROOST_OK)
        goto out;
    if (X509_CRL_sign(crl, key, EVP_sha256()) <= 0) {
        rc = fail_ssl(em, ROOST_ECRYPTO, "signing CRL");
        goto out;
    }
    if ((rc = write_key(ca_key_path, key, em)) != ROOST_OK)
        goto out;
    key_written = true;
    if ((rc = write_cert(ca_cert_path, cert, em)) != ROOST_OK)
        goto out;
    cert_written = true;
    rc = write_crl(crl_path, crl, em);
out:
    if (rc != ROOST_OK) {
        if (key_written)
            unlink(ca_key_path);
        if (cert_written)
            unlink(ca_cert_path);
    }
    EVP_PKEY_free(key);
    X509_free(cert);
    X509_CRL_free(crl);
    BN_free(crl_number);
    ERR_clear_error();
    return rc;
}

/* Append "DNS:name" or "IP:addr" to a subjectAltName value. */
static int
append_san(char *buf, size_t cap, const char *name, roost_errmsg *em)
{
    size_t n = strlen(name);
    if (n == 0 || n > 253)
        return roost_fail(em, ROOST_EINVAL,
                          "subject alternative name '%s': bad length", name);
    unsigned char addr[16];
    bool ip = inet_pton(AF_INET, name, addr) == 1 ||
              inet_pton(AF_INET6, name, addr) == 1;
    if (!ip) {
        for (size_t i = 0; i < n; i++) {
            char c = name[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '-' || c == '.' ||
                  (c == '*' && i == 0)))
                return roost_fail(em, ROOST_EINVAL,
                                  "'%s' is neither an IP address nor a DNS "
                                  "name",
                                  name);
        }
    }
    size_t used = strlen(buf);
    int w = snprintf(buf + used, cap - used, "%s%s:%s", used ? "," : "",
                     ip ? "IP" : "DNS", name);
    if (w < 0 || (size_t)w >= cap - used)
        return roost_fail(em, ROOST_ETOOBIG,
                          "too many subject alternative names");
    return ROOST_OK;
}

int
roost_pki_server(const char *ca_key_path, const char *ca_cert_path,
                 const char *key_path, const char *cert_path, const char *cn,
                 const char *const *sans, size_t n_sans,
                 const roost_pki_validity *validity, roost_errmsg *em)
{
    int rc = check_cn(cn, em);
    if (rc != ROOST_OK)
        return rc;
    char san[4096] = "";
    if ((rc = append_san(san, sizeof(san), cn, em)) != ROOST_OK)
        return rc;
    for (size_t i = 0; i < n_sans; i++)
        if (strcmp(sans[i], cn) != 0 &&
            (rc = append_san(san, sizeof(san), sans[i], em)) != ROOST_OK)
            return rc;
    EVP_PKEY *ca_key = NULL, *key = NULL;
    X509 *ca_cert = NULL, *cert = NULL;
    bool key_written = false;
    if ((rc = load_ca(ca_key_path, ca_cert_path, &ca_key, &ca_cert, em)) !=
            ROOST_OK ||
        (rc = check_ca_current(ca_cert, ca_cert_path, em)) != ROOST_OK)
        goto out;
    if ((cert = X509_new()) == NULL) {
        rc = roost_fail(em, ROOST_ENOMEM, "certificate: out of memory");
        goto out;
    }
    if ((rc = new_key(&key, em)) != ROOST_OK ||
        (rc = set_subject_cn(X509_get_subject_name(cert), cn, em)) !=
            ROOST_OK ||
        (rc = fill_cert(cert, ca_cert, key, validity, em)) != ROOST_OK ||
        (rc = add_ext(cert, ca_cert, NID_basic_constraints, "critical,CA:FALSE",
                      em)) != ROOST_OK ||
        (rc = add_ext(cert, ca_cert, NID_key_usage, "critical,digitalSignature",
                      em)) != ROOST_OK ||
        (rc = add_ext(cert, ca_cert, NID_ext_key_usage, "serverAuth", em)) !=
            ROOST_OK ||
        (rc = add_ext(cert, ca_cert, NID_subject_alt_name, san, em)) !=
            ROOST_OK ||
        (rc = sign_cert(cert, ca_key, em)) != ROOST_OK)
        goto out;
    if ((rc = write_key(key_path, key, em)) != ROOST_OK)
        goto out;
    key_written = true;
    rc = write_cert(cert_path, cert, em);
out:
    if (rc != ROOST_OK && key_written)
        unlink(key_path);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    X509_free(ca_cert);
    X509_free(cert);
    ERR_clear_error();
    return rc;
}

int
roost_pki_request(const char *key_path, const char *csr_path, const char *cn,
                  roost_errmsg *em)
{
    int rc = check_cn(cn, em);
    if (rc != ROOST_OK)
        return rc;
    if (access(csr_path, F_OK) == 0)
        return roost_fail(em, ROOST_EIO,
                          "%s: exists already (refusing to overwrite)",
                          csr_path);
    EVP_PKEY *key = NULL;
    X509_REQ *req = X509_REQ_new();
    bool key_written = false;
    if (req == NULL) {
        rc = roost_fail(em, ROOST_ENOMEM, "CSR: out of memory");
        goto out;
    }
    if ((rc = new_key(&key, em)) != ROOST_OK ||
        (rc = set_subject_cn(X509_REQ_get_subject_name(req), cn, em)) !=
            ROOST_OK)
        goto out;
    if (X509_REQ_set_version(req, 0) != 1 ||
        X509_REQ_set_pubkey(req, key) != 1 ||
        X509_REQ_sign(req, key, EVP_sha256()) <= 0) {
        rc = fail_ssl(em, ROOST_ECRYPTO, "signing CSR");
        goto out;
    }
    if ((rc = write_key(key_path, key, em)) != ROOST_OK)
        goto out;
    key_written = true;
    rc = create_pem(csr_path, 0644, PEM_CSR, req, em);
out:
    if (rc != ROOST_OK && key_written)
        unlink(key_path);
    EVP_PKEY_free(key);
    X509_REQ_free(req);
    ERR_clear_error();
    return rc;
}

/* A key a Roost peer can sign its TLS 1.3 handshake with at OpenSSL's
 * usual security level: EC on P-256, P-384 or P-521, Ed25519, Ed448, or
 * RSA of 2048 bits or more. Anything else (DSA, short RSA, other curves)
 * would get a certificate that fails every handshake, so the CA refuses
 * to issue one and says why. */
static int
check_request_key(EVP_PKEY *pub, const char *csr_path, roost_errmsg *em)
{
    int bits = EVP_PKEY_get_bits(pub);
    switch (EVP_PKEY_get_base_id(pub)) {
    case EVP_PKEY_ED25519:
    case EVP_PKEY_ED448:
        return ROOST_OK;
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
        if (bits >= 2048)
            return ROOST_OK;
        return roost_fail(em, ROOST_EINVAL,
                          "%s: the request's key is RSA of %d bits; TLS "
                          "needs at least 2048 (roost pki request makes an "
                          "EC P-256 key)",
                          csr_path, bits);
    case EVP_PKEY_EC: {
        char group[64] = "";
        size_t len = 0;
        if (EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME,
                                           group, sizeof(group), &len) == 1 &&
            (strcmp(group, "prime256v1") == 0 ||
             strcmp(group, "secp384r1") == 0 ||
             strcmp(group, "secp521r1") == 0))
            return ROOST_OK;
        ERR_clear_error();
        return roost_fail(em, ROOST_EINVAL,
                          "%s: the request's key is on curve '%s', which TLS "
                          "1.3 cannot use; use P-256 (roost pki request)",
                          csr_path, group);
    }
    default:
        return roost_fail(em, ROOST_EINVAL,
                          "%s: the request's key type (%s) cannot sign a TLS "
                          "1.3 handshake; use EC P-256 (roost pki request)",
                          csr_path, EVP_PKEY_get0_type_name(pub));
    }
}

int
roost_pki_sign(const char *ca_key_path, const char *ca_cert_path,
               const char *csr_path, const char *cert_path,
               const roost_pki_validity *validity, roost_errmsg *em)
{
    EVP_PKEY *ca_key = NULL, *pub = NULL;
    X509 *ca_cert = NULL, *cert = NULL;
    X509_REQ *req = NULL;
    int rc = load_ca(ca_key_path, ca_cert_path, &ca_key, &ca_cert, em);
    if (rc != ROOST_OK ||
        (rc = check_ca_current(ca_cert, ca_cert_path, em)) != ROOST_OK)
        goto out;
    FILE *f = fopen(csr_path, "r");
    if (f == NULL) {
        rc = roost_fail(em, ROOST_EIO, "%s: %s", csr_path, strerror(errno));
        goto out;
    }
    req = PEM_read_X509_REQ(f, NULL, NULL, NULL);
    fclose(f);
    if (req == NULL) {
        rc = roost_fail(em, ROOST_EIO, "%s: not a PEM certificate request",
                        csr_path);
        goto out;
    }
    pub = X509_REQ_get_pubkey(req);
    if (pub == NULL || X509_REQ_verify(req, pub) != 1) {
        rc =
            roost_fail(em, ROOST_EAUTH,
                       "%s: the request's signature does not verify", csr_path);
        goto out;
    }
    if ((rc = check_request_key(pub, csr_path, em)) != ROOST_OK)
        goto out;
    X509_NAME *subject = X509_REQ_get_subject_name(req);
    if (subject == NULL || X509_NAME_entry_count(subject) == 0) {
        rc = roost_fail(em, ROOST_EINVAL, "%s: the request has no subject",
                        csr_path);
        goto out;
    }
    if ((cert = X509_new()) == NULL) {
        rc = roost_fail(em, ROOST_ENOMEM, "certificate: out of memory");
        goto out;
    }
    if (X509_set_subject_name(cert, subject) != 1) {
        rc = fail_ssl(em, ROOST_ECRYPTO, "subject");
        goto out;
    }
    if ((rc = fill_cert(cert, ca_cert, pub, validity, em)) != ROOST_OK ||
        (rc = add_ext(cert, ca_cert, NID_basic_constraints, "critical,CA:FALSE",
                      em)) != ROOST_OK ||
        (rc = add_ext(cert, ca_cert, NID_key_usage, "critical,digitalSignature",
                      em)) != ROOST_OK ||
        (rc = add_ext(cert, ca_cert, NID_ext_key_usage, "clientAuth", em)) !=
            ROOST_OK ||
        (rc = sign_cert(cert, ca_key, em)) != ROOST_OK)
        goto out;
    rc = write_cert(cert_path, cert, em);
out:
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(pub);
    X509_free(ca_cert);
    X509_free(cert);
    X509_REQ_free(req);
    ERR_clear_error();
    return rc;
}

/* Re-sign crl_path with a fresh lastUpdate/nextUpdate and the next
 * cRLNumber, first adding cert_path's serial when cert_path is not NULL.
 * Shared by revoke and crl: both keep every entry already listed, and
 * both issue a new CRL, so both take a new number. */
static int
crl_update(const char *ca_key_path, const char *ca_cert_path,
           const char *crl_path, const char *cert_path, int64_t crl_days,
           size_t *n_revoked, roost_errmsg *em)
{
    EVP_PKEY *ca_key = NULL;
    X509 *ca_cert = NULL, *cert = NULL;
    X509_CRL *crl = NULL;
    X509_REVOKED *rev = NULL;
    ASN1_TIME *now = NULL;
    BIGNUM *crl_number = NULL;
    /* Read, extend, re-sign and replace the CRL under an exclusive lock
     * on the CA key (a file that is never replaced): two revocations run
     * at once would otherwise both start from the same CRL and the second
     * rename would drop the first one's entry. */
    int lock_fd = open(ca_key_path, O_RDONLY | O_CLOEXEC);
    if (lock_fd < 0)
        return roost_fail(em, ROOST_EIO, "%s: %s", ca_key_path,
                          strerror(errno));
    while (flock(lock_fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            int e = errno;
            close(lock_fd);
            return roost_fail(em, ROOST_EIO, "%s: lock: %s", ca_key_path,
                              strerror(e));
        }
    }
    int rc = load_ca(ca_key_path, ca_cert_path, &ca_key, &ca_cert, em);
    if (rc != ROOST_OK || (cert_path != NULL &&
                           (rc = read_cert(cert_path, &cert, em)) != ROOST_OK))
        goto out;
    if (cert != NULL && X509_check_issued(ca_cert, cert) != X509_V_OK) {
        rc = roost_fail(em, ROOST_EINVAL, "%s was not issued by %s", cert_path,
                        ca_cert_path);
        goto out;
    }
    FILE *f = fopen(crl_path, "r");
    if (f == NULL) {
        rc = roost_fail(em, ROOST_EIO, "%s: %s", crl_path, strerror(errno));
        goto out;
    }
    crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
    fclose(f);
    if (crl == NULL) {
        rc = roost_fail(em, ROOST_EIO, "%s: not a PEM CRL", crl_path);
        goto out;
    }
    EVP_PKEY *ca_pub = X509_get0_pubkey(ca_cert);
    if (ca_pub == NULL || X509_CRL_verify(crl, ca_pub) != 1) {
        rc = roost_fail(em, ROOST_EAUTH, "%s is not signed by %s", crl_path,
                        ca_cert_path);
        goto out;
    }
    X509_REVOKED *existing = NULL;
    if (cert != NULL && X509_CRL_get0_by_serial(
                            crl, &existing, X509_get_serialNumber(cert)) != 1) {
        rev = X509_REVOKED_new();
        now = X509_gmtime_adj(NULL, 0);
        if (rev == NULL || now == NULL ||
            X509_REVOKED_set_serialNumber(rev, X509_get_serialNumber(cert)) !=
                1 ||
            X509_REVOKED_set_revocationDate(rev, now) != 1 ||
            X509_CRL_add0_revoked(crl, rev) != 1) {
            rc = fail_ssl(em, ROOST_ECRYPTO, "CRL entry");
            goto out;
        }
        rev = NULL; /* owned by crl */
    }
    if ((rc = crl_set_times(crl, crl_days, em)) != ROOST_OK ||
        (rc = crl_next_number(crl, crl_path, &crl_number, em)) != ROOST_OK ||
        (rc = crl_set_extensions(crl, ca_cert, crl_number, em)) != ROOST_OK)
        goto out;
    if (X509_CRL_sort(crl) != 1 ||
        X509_CRL_sign(crl, ca_key, EVP_sha256()) <= 0) {
        rc = fail_ssl(em, ROOST_ECRYPTO, "signing CRL");
        goto out;
    }
    if (n_revoked != NULL) {
        STACK_OF(X509_REVOKED) *all = X509_CRL_get_REVOKED(crl);
        *n_revoked = all != NULL ? (size_t)sk_X509_REVOKED_num(all) : 0;
    }
    rc = write_crl(crl_path, crl, em);
out:
    close(lock_fd); /* releases the lock */
    EVP_PKEY_free(ca_key);
    X509_free(ca_cert);
    X509_free(cert);
    X509_CRL_free(crl);
    X509_REVOKED_free(rev);
    ASN1_TIME_free(now);
    BN_free(crl_number);
    ERR_clear_error();
    return rc;
}

int
roost_pki_revoke(const char *ca_key_path, const char *ca_cert_path,
                 const char *crl_path, const char *cert_path, int64_t crl_days,
                 roost_errmsg *em)
{
    if (cert_path == NULL)
        return roost_fail(em, ROOST_EINVAL, "revoke: no certificate given");
    return crl_update(ca_key_path, ca_cert_path, crl_path, cert_path, crl_days,
                      NULL, em);
}

int
roost_pki_crl(const char *ca_key_path, const char *ca_cert_path,
              const char *crl_path, int64_t crl_days, size_t *n_revoked,
              roost_errmsg *em)
{
    return crl_update(ca_key_path, ca_cert_path, crl_path, NULL, crl_days,
                      n_revoked, em);
}
