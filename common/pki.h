/*
 * pki.h - the deployment's certificate authority, as library functions
 * behind `roost pki` (and the tests, which need certificates that are
 * expired, revoked or from a foreign CA).
 *
 * Keys are EC P-256 (supported by every TLS 1.3 stack, including
 * `openssl s_client`), written PEM (PKCS#8) with mode 0600. Keys,
 * certificates and CSRs (0644) are created atomically and exclusively: a
 * temporary file beside the output, flushed to disk, then link()ed to its
 * name, so an existing file is never overwritten and a crash never leaves
 * a partial file under the name. The CRL is replaced atomically
 * (temporary file + rename) because revocation updates it, under an
 * exclusive flock on the CA key. Serial numbers are 127 random bits from
 * the CSPRNG layer.
 *
 * Every CRL carries the extensions RFC 5280 requires of a CRL issuer: an
 * authorityKeyIdentifier (the CA certificate's subjectKeyIdentifier) and a
 * cRLNumber one above that of the CRL it replaces (init: 1; a CRL without
 * a number counts as 0), kept in the CRL file itself so that it survives
 * a crash and parallel revocations take consecutive numbers.
 *
 * Issuing (roost_pki_server, roost_pki_sign) needs a CA certificate within
 * its validity period: what an expired CA signs never verifies.
 *
 * Functions are reentrant (no globals) and report failures as error codes
 * with a message naming the file and the reason.
 */
#ifndef ROOST_COMMON_PKI_H
#define ROOST_COMMON_PKI_H

#include "common/error.h"

#include <stddef.h>
#include <stdint.h>

/* Certificate validity as offsets in seconds from now (not_before may be
 * negative; not_after <= 0 makes an already expired certificate, which
 * only tests want). */
typedef struct roost_pki_validity {
    int64_t not_before_s;
    int64_t not_after_s;
} roost_pki_validity;

#define ROOST_PKI_DAY_S ((int64_t)86400)

/*
 * roost_pki_init - create the CA: a new key (ca_key_path, 0600), a
 * self-signed CA certificate with subject CN=cn valid for `days`, and an
 * empty CRL signed by it (valid crl_days). Fails with ROOST_EIO if any
 * output exists already.
 */
int roost_pki_init(const char *ca_key_path, const char *ca_cert_path,
                   const char *crl_path, const char *cn, int64_t days,
                   int64_t crl_days, roost_errmsg *em);

/*
 * roost_pki_server - a server key (key_path, 0600) and certificate signed
 * by the CA, with subject CN=cn, subjectAltName carrying each of sans (an
 * IPv4/IPv6 literal becomes an IP entry, anything else a DNS entry; cn is
 * always included as a SAN), extendedKeyUsage serverAuth.
 */
int roost_pki_server(const char *ca_key_path, const char *ca_cert_path,
                     const char *key_path, const char *cert_path,
                     const char *cn, const char *const *sans, size_t n_sans,
                     const roost_pki_validity *validity, roost_errmsg *em);

/* roost_pki_request - on the device: a new key (key_path, 0600) and a CSR
 * for subject CN=cn signed by it. The key never leaves the device; only
 * the CSR goes to the CA. */
int roost_pki_request(const char *key_path, const char *csr_path,
                      const char *cn, roost_errmsg *em);

/* roost_pki_sign - the CA checks the CSR's self-signature and issues a
 * client certificate (extendedKeyUsage clientAuth) for its subject and
 * public key. Extensions requested in the CSR are ignored: the CA decides
 * what a client certificate may do. A key TLS 1.3 cannot use (DSA, RSA
 * under 2048 bits, an EC curve other than P-256/384/521) is refused with
 * ROOST_EINVAL. */
int roost_pki_sign(const char *ca_key_path, const char *ca_cert_path,
                   const char *csr_path, const char *cert_path,
                   const roost_pki_validity *validity, roost_errmsg *em);

/* roost_pki_revoke - add the certificate's serial to the CA's CRL (kept
 * when already there), re-sign the CRL (valid crl_days, next cRLNumber)
 * and replace the file atomically. The certificate must have been issued
 * by this CA. */
int roost_pki_revoke(const char *ca_key_path, const char *ca_cert_path,
                     const char *crl_path, const char *cert_path,
                     int64_t crl_days, roost_errmsg *em);

/* roost_pki_crl - re-sign the CA's CRL with the same entries, a fresh
 * validity (crl_days from now) and the next cRLNumber, replacing the file
 * atomically: what an operator runs before the CRL's nextUpdate passes,
 * since an expired CRL makes every handshake fail. *n_revoked (may be
 * NULL) receives the number of entries. The CRL must be signed by this CA
 * already. */
int roost_pki_crl(const char *ca_key_path, const char *ca_cert_path,
                  const char *crl_path, int64_t crl_days, size_t *n_revoked,
                  roost_errmsg *em);

#endif
