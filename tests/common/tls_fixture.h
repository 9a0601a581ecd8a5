/*
 * tls_fixture.h - a throw-away PKI for the TLS, channel and PKI tests,
 * made with the same functions as `roost pki`: a deployment CA (with a
 * CRL), a foreign CA, a server certificate for localhost/127.0.0.1, and
 * client certificates that are good, expired, revoked, or from the foreign
 * CA. Header-only so each test program stays one file.
 */
#ifndef ROOST_TESTS_TLS_FIXTURE_H
#define ROOST_TESTS_TLS_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/pki.h"
#include "common/tls.h"

typedef struct tls_fixture {
    char dir[256];
    char path[128][320];
    int n;
} tls_fixture;

/* fx_path - "<dir>/<name>", kept in the fixture (stable pointer). */
static const char *
fx_path(tls_fixture *fx, const char *name)
{
    for (int i = 0; i < fx->n; i++) {
        const char *slash = strrchr(fx->path[i], '/');
        if (slash && strcmp(slash + 1, name) == 0)
            return fx->path[i];
    }
    if (fx->n >= 128)
        abort();
    char dir[sizeof(fx->dir)];
    memcpy(dir, fx->dir, sizeof(dir));
    snprintf(fx->path[fx->n], sizeof(fx->path[0]), "%s/%s", dir, name);
    return fx->path[fx->n++];
}

static void
fx_check(int rc, const roost_errmsg *em, const char *what)
{
    if (rc != ROOST_OK) {
        fprintf(stderr, "fixture: %s: %s (%s)\n", what, roost_errname(rc),
                em->text);
        abort();
    }
}

/* A client key + certificate signed by the CA under ca_prefix. */
static void
fx_client(tls_fixture *fx, const char *ca_prefix, const char *name,
          const char *cn, roost_pki_validity v)
{
    roost_errmsg em = {{0}};
    char k[64], c[64], r[64], cak[64], cac[64];
    snprintf(k, sizeof(k), "%s.key", name);
    snprintf(r, sizeof(r), "%s.csr", name);
    snprintf(c, sizeof(c), "%s.crt", name);
    snprintf(cak, sizeof(cak), "%s.key", ca_prefix);
    snprintf(cac, sizeof(cac), "%s.crt", ca_prefix);
    const char *cak_p = fx_path(fx, cak), *cac_p = fx_path(fx, cac);
    const char *k_p = fx_path(fx, k), *r_p = fx_path(fx, r);
    const char *c_p = fx_path(fx, c);
    fx_check(roost_pki_request(k_p, r_p, cn, &em), &em, "request");
    fx_check(roost_pki_sign(cak_p, cac_p, r_p, c_p, &v, &em), &em, "sign");
}

static void
fx_create(tls_fixture *fx)
{
    memset(fx, 0, sizeof(*fx));
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/roost-tls-XXXXXX");
    if (mkdtemp(fx->dir) == NULL)
        abort();
    roost_errmsg em = {{0}};
    fx_check(roost_pki_init(fx_path(fx, "ca.key"), fx_path(fx, "ca.crt"),
                            fx_path(fx, "ca.crl"), "Roost Test CA", 30, 30,
                            &em),
             &em, "init");
    fx_check(roost_pki_init(fx_path(fx, "evil.key"), fx_path(fx, "evil.crt"),
                            fx_path(fx, "evil.crl"), "Roost Test CA", 30, 30,
                            &em),
             &em, "init foreign");
    roost_pki_validity ok = {-60, 30 * ROOST_PKI_DAY_S};
    const char *sans[] = {"127.0.0.1", "localhost"};
    fx_check(roost_pki_server(fx_path(fx, "ca.key"), fx_path(fx, "ca.crt"),
                              fx_path(fx, "server.key"),
                              fx_path(fx, "server.crt"), "localhost", sans, 2,
                              &ok, &em),
             &em, "server");
    fx_client(fx, "ca", "good", "device-1", ok);
    fx_client(fx, "ca", "good2", "device-2", ok);
    roost_pki_validity past = {-10 * ROOST_PKI_DAY_S, -ROOST_PKI_DAY_S};
    fx_client(fx, "ca", "expired", "device-expired", past);
    fx_client(fx, "ca", "revoked", "device-revoked", ok);
    fx_check(roost_pki_revoke(fx_path(fx, "ca.key"), fx_path(fx, "ca.crt"),
                              fx_path(fx, "ca.crl"), fx_path(fx, "revoked.crt"),
                              30, &em),
             &em, "revoke");
    fx_client(fx, "evil", "foreign", "device-foreign", ok);
}

static void
fx_destroy(tls_fixture *fx)
{
    for (int i = 0; i < fx->n; i++)
        unlink(fx->path[i]);
    rmdir(fx->dir);
}

static roost_tls_ctx *
fx_server_ctx(tls_fixture *fx)
{
    roost_tls_files f = {fx_path(fx, "ca.crt"), fx_path(fx, "server.crt"),
                         fx_path(fx, "server.key"), fx_path(fx, "ca.crl")};
    roost_errmsg em = {{0}};
    roost_tls_ctx *ctx;
    fx_check(roost_tls_ctx_create_server(&ctx, &f, &em), &em, "server ctx");
    return ctx;
}

/* A server context of another CA (evil.crt), with a server certificate
 * for localhost that CA issues (made on first use). Inline: only some
 * of the tests that include this file use it. */
static inline roost_tls_ctx *
fx_foreign_server_ctx(tls_fixture *fx)
{
    roost_errmsg em = {{0}};
    if (access(fx_path(fx, "evil-server.crt"), F_OK) != 0) {
        roost_pki_validity ok = {-60, 30 * ROOST_PKI_DAY_S};
        const char *sans[] = {"127.0.0.1"};
        fx_check(roost_pki_server(fx_path(fx, "evil.key"),
                                  fx_path(fx, "evil.crt"),
                                  fx_path(fx, "evil-server.key"),
                                  fx_path(fx, "evil-server.crt"), "localhost",
                                  sans, 1, &ok, &em),
                 &em, "foreign server");
    }
    roost_tls_files f = {
        fx_path(fx, "evil.crt"), fx_path(fx, "evil-server.crt"),
        fx_path(fx, "evil-server.key"), fx_path(fx, "evil.crl")};
    roost_tls_ctx *ctx;
    fx_check(roost_tls_ctx_create_server(&ctx, &f, &em), &em,
             "foreign server ctx");
    return ctx;
}

/* A client context for client certificate `name` (NULL: no certificate),
 * trusting the CA under ca_prefix. */
static roost_tls_ctx *
fx_client_ctx(tls_fixture *fx, const char *name, const char *ca_prefix)
{
    char c[64], k[64], ca[64];
    snprintf(ca, sizeof(ca), "%s.crt", ca_prefix);
    roost_tls_files f = {fx_path(fx, ca), NULL, NULL, NULL};
    if (name != NULL) {
        snprintf(c, sizeof(c), "%s.crt", name);
        snprintf(k, sizeof(k), "%s.key", name);
        f.cert_path = fx_path(fx, c);
        f.key_path = fx_path(fx, k);
    }
    roost_errmsg em = {{0}};
    roost_tls_ctx *ctx;
    fx_check(roost_tls_ctx_create_client(&ctx, &f, &em), &em, "client ctx");
    return ctx;
}

#endif
