/*
 * cmd_pki.c - `roost pki`: the deployment's certificate authority.
 *
 *   roost pki init     the CA: key, self-signed certificate, empty CRL
 *   roost pki server   a server key + certificate with subjectAltNames
 *   roost pki request  on a device: key + certificate signing request
 *   roost pki sign     the CA signs a request -> client certificate
 *   roost pki revoke   add a certificate to the CRL
 *   roost pki crl      re-sign the CRL with a fresh validity, same entries
 *
 * The work is done by common/pki.c; this file parses flags and reports.
 * A CA lives in one directory: ca.key (0600), ca.crt, ca.crl.
 */
#include "server/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/pki.h"

#define MAX_SANS 32

static const char *const usage_main =
    "usage: roost pki init|server|request|sign|revoke|crl [flags]\n"
    "       roost pki SUBCOMMAND --help\n\n"
    "  init     create the CA (key, certificate, empty CRL) in a directory\n"
    "  server   issue a server key and certificate with subjectAltNames\n"
    "  request  on a device: create a key and a certificate request (CSR);\n"
    "           the key never leaves the device\n"
    "  sign     the CA signs a CSR, giving a client certificate\n"
    "  revoke   add a certificate to the CA's revocation list (CRL)\n"
    "  crl      re-sign the CRL before it expires (same entries)\n\n"
    "Keys are EC P-256, PEM, mode 0600; existing files are never "
    "overwritten.\n";

static const char *const usage_init =
    "usage: roost pki init --dir DIR [--cn NAME] [--days N] [--crl-days N]\n"
    "Create DIR/ca.key (0600), DIR/ca.crt and DIR/ca.crl (empty).\n"
    "  --dir DIR       the CA directory (created if missing)\n"
    "  --cn NAME       the CA's common name (default \"Roost CA\")\n"
    "  --days N        certificate validity (default 3650)\n"
    "  --crl-days N    CRL validity; run 'roost pki crl' before it ends "
    "(default 365)\n";

static const char *const usage_server =
    "usage: roost pki server --ca-dir DIR --name HOST[,SAN...] --out PREFIX\n"
    "                        [--days N]\n"
    "Issue PREFIX.key (0600) and PREFIX.crt for the coordinator. HOST is the\n"
    "common name; HOST and every SAN (DNS names or IP addresses) go into\n"
    "subjectAltName; clients check the name they connect to against it.\n"
    "  --days N        validity (default 825)\n";

static const char *const usage_request =
    "usage: roost pki request --cn NAME --out PREFIX\n"
    "On the device: create PREFIX.key (0600) and PREFIX.csr. Send only the\n"
    "CSR to the CA operator; the key stays where it was made.\n";

static const char *const usage_sign =
    "usage: roost pki sign --ca-dir DIR --csr FILE --out FILE [--days N]\n"
    "Check the request's signature and issue a client certificate for its\n"
    "subject and key (extendedKeyUsage clientAuth).\n"
    "  --days N        validity (default 365)\n";

static const char *const usage_revoke =
    "usage: roost pki revoke --ca-dir DIR --cert FILE [--crl-days N]\n"
    "Add the certificate's serial number to DIR/ca.crl and re-sign it\n"
    "(with the next CRL number).\n"
    "Then copy the CRL to the coordinator's crl_file if it reads another\n"
    "copy, and reload it (SIGHUP: systemctl reload roost): new handshakes\n"
    "use the new CRL and open sessions of the revoked certificate close.\n"
    "  --crl-days N    CRL validity from now (default 365)\n";

static const char *const usage_crl =
    "usage: roost pki crl --ca-dir DIR [--days N]\n"
    "Re-sign DIR/ca.crl with the same revoked entries, a new validity and\n"
    "the next CRL number.\n"
    "A coordinator whose CRL has passed its next update refuses every\n"
    "client, so run this before then (the coordinator warns 30 days ahead),\n"
    "copy the CRL to the coordinator's crl_file if it reads another copy,\n"
    "and reload the coordinator (SIGHUP: systemctl reload roost).\n"
    "  --days N        CRL validity from now (default 365)\n";

typedef struct flag {
    const char *name;
    const char *value;
} flag;

/* Parse "--name value" / "--name=value" pairs into flags (NULL-terminated
 * by name). Returns false (after a message) on unknown or valueless
 * flags. */
static bool
parse_flags(const char *sub, int argc, char **argv, flag *flags)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *eq = strchr(arg, '=');
        size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
        flag *f = NULL;
        for (flag *g = flags; g->name != NULL; g++)
            if (strlen(g->name) == n && strncmp(g->name, arg, n) == 0)
                f = g;
        if (f == NULL) {
            fprintf(stderr,
                    "roost pki %s: unknown argument '%s' (see --help)\n", sub,
                    arg);
            return false;
        }
        if (eq != NULL) {
            f->value = eq + 1;
        } else if (i + 1 < argc) {
            f->value = argv[++i];
        } else {
            fprintf(stderr, "roost pki %s: %s needs a value\n", sub, f->name);
            return false;
        }
    }
    return true;
}

static const char *
get(const flag *flags, const char *name)
{
    for (const flag *f = flags; f->name != NULL; f++)
        if (strcmp(f->name, name) == 0)
            return f->value;
    return NULL;
}

static bool
require(const char *sub, const flag *flags, const char *name)
{
    if (get(flags, name) != NULL)
        return true;
    fprintf(stderr, "roost pki %s: %s is required (see --help)\n", sub, name);
    return false;
}

static bool
days_flag(const char *sub, const flag *flags, const char *name, long dflt,
          long max, int64_t *out)
{
    const char *v = get(flags, name);
    long d = dflt;
    if (v != NULL && !roost_cli_parse_int(sub, name, v, 1, max, &d))
        return false;
    *out = d;
    return true;
}

static bool
path_join(char *buf, size_t cap, const char *a, const char *b)
{
    int n = snprintf(buf, cap, "%s%s", a, b);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "roost pki: path too long: %s%s\n", a, b);
        return false;
    }
    return true;
}

static int
report(const char *sub, int rc, const roost_errmsg *em)
{
    if (rc == ROOST_OK)
        return ROOST_EXIT_OK;
    fprintf(stderr, "roost pki %s: %s (%s)\n", sub, roost_errmsg_text(em),
            roost_errname(rc));
    return ROOST_EXIT_FAIL;
}

typedef struct ca_paths {
    char key[4096], cert[4096], crl[4096];
} ca_paths;

static bool
ca_paths_of(const char *dir, ca_paths *p)
{
    return path_join(p->key, sizeof(p->key), dir, "/ca.key") &&
           path_join(p->cert, sizeof(p->cert), dir, "/ca.crt") &&
           path_join(p->crl, sizeof(p->crl), dir, "/ca.crl");
}

static int
cmd_init(int argc, char **argv)
{
    flag flags[] = {{"--dir", NULL},
                    {"--cn", NULL},
                    {"--days", NULL},
                    {"--crl-days", NULL},
                    {NULL, NULL}};
    int64_t days, crl_days;
    if (!parse_flags("init", argc, argv, flags) ||
        !require("init", flags, "--dir") ||
        !days_flag("init", flags, "--days", 3650, 36500, &days) ||
        !days_flag("init", flags, "--crl-days", 365, 3650, &crl_days))
        return ROOST_EXIT_USAGE;
    const char *dir = get(flags, "--dir");
    const char *cn = get(flags, "--cn") ? get(flags, "--cn") : "Roost CA";
    ca_paths p;
    if (!ca_paths_of(dir, &p))
        return ROOST_EXIT_USAGE;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "roost pki init: %s: %s\n", dir, strerror(errno));
        return ROOST_EXIT_FAIL;
    }
    roost_errmsg em = {{0}};
    int rc = roost_pki_init(p.key, p.cert, p.crl, cn, days, crl_days, &em);
    if (rc == ROOST_OK)
        printf("created CA '%s':\n  key  %s (0600, keep it offline)\n"
               "  cert %s\n  crl  %s\n",
               cn, p.key, p.cert, p.crl);
    return report("init", rc, &em);
}

static int
cmd_server(int argc, char **argv)
{
    flag flags[] = {{"--ca-dir", NULL},
                    {"--name", NULL},
                    {"--out", NULL},
                    {"--days", NULL},
                    {NULL, NULL}};
    int64_t days;
    if (!parse_flags("server", argc, argv, flags) ||
        !require("server", flags, "--ca-dir") ||
        !require("server", flags, "--name") ||
        !require("server", flags, "--out") ||
        !days_flag("server", flags, "--days", 825, 36500, &days))
        return ROOST_EXIT_USAGE;
    /* Split HOST[,SAN...]; the first name is the common name. */
    char names[4096];
    if (snprintf(names, sizeof(names), "%s", get(flags, "--name")) >=
        (int)sizeof(names)) {
        fprintf(stderr, "roost pki server: --name is too long\n");
        return ROOST_EXIT_USAGE;
    }
    const char *sans[MAX_SANS];
    size_t n_sans = 0;
    for (char *save = NULL, *tok = strtok_r(names, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (n_sans == MAX_SANS) {
            fprintf(stderr, "roost pki server: at most %d names\n", MAX_SANS);
            return ROOST_EXIT_USAGE;
        }
        sans[n_sans++] = tok;
    }
    if (n_sans == 0) {
        fprintf(stderr, "roost pki server: --name is empty\n");
        return ROOST_EXIT_USAGE;
    }
    ca_paths ca;
    char key[4096], cert[4096];
    const char *out = get(flags, "--out");
    if (!ca_paths_of(get(flags, "--ca-dir"), &ca) ||
        !path_join(key, sizeof(key), out, ".key") ||
        !path_join(cert, sizeof(cert), out, ".crt"))
        return ROOST_EXIT_USAGE;
    roost_pki_validity v = {-300, days * ROOST_PKI_DAY_S};
    roost_errmsg em = {{0}};
    int rc = roost_pki_server(ca.key, ca.cert, key, cert, sans[0], sans + 1,
                              n_sans - 1, &v, &em);
    if (rc == ROOST_OK)
        printf("issued server certificate for %s:\n  key  %s (0600)\n"
               "  cert %s\n",
               get(flags, "--name"), key, cert);
    return report("server", rc, &em);
}

static int
cmd_request(int argc, char **argv)
{
    flag flags[] = {{"--cn", NULL}, {"--out", NULL}, {NULL, NULL}};
    if (!parse_flags("request", argc, argv, flags) ||
        !require("request", flags, "--cn") ||
        !require("request", flags, "--out"))
        return ROOST_EXIT_USAGE;
    char key[4096], csr[4096];
    const char *out = get(flags, "--out");
    if (!path_join(key, sizeof(key), out, ".key") ||
        !path_join(csr, sizeof(csr), out, ".csr"))
        return ROOST_EXIT_USAGE;
    roost_errmsg em = {{0}};
    int rc = roost_pki_request(key, csr, get(flags, "--cn"), &em);
    if (rc == ROOST_OK)
        printf("created key %s (0600, stays on this device)\n"
               "created request %s (send it to the CA operator)\n",
               key, csr);
    return report("request", rc, &em);
}

static int
cmd_sign(int argc, char **argv)
{
    flag flags[] = {{"--ca-dir", NULL},
                    {"--csr", NULL},
                    {"--out", NULL},
                    {"--days", NULL},
                    {NULL, NULL}};
    int64_t days;
    if (!parse_flags("sign", argc, argv, flags) ||
        !require("sign", flags, "--ca-dir") ||
        !require("sign", flags, "--csr") || !require("sign", flags, "--out") ||
        !days_flag("sign", flags, "--days", 365, 36500, &days))
        return ROOST_EXIT_USAGE;
    ca_paths ca;
    if (!ca_paths_of(get(flags, "--ca-dir"), &ca))
        return ROOST_EXIT_USAGE;
    roost_pki_validity v = {-300, days * ROOST_PKI_DAY_S};
    roost_errmsg em = {{0}};
    int rc = roost_pki_sign(ca.key, ca.cert, get(flags, "--csr"),
                            get(flags, "--out"), &v, &em);
    if (rc == ROOST_OK)
        printf("issued client certificate %s (valid %lld days)\n",
               get(flags, "--out"), (long long)days);
    return report("sign", rc, &em);
}

static int
cmd_revoke(int argc, char **argv)
{
    flag flags[] = {{"--ca-dir", NULL},
                    {"--cert", NULL},
                    {"--crl-days", NULL},
                    {NULL, NULL}};
    int64_t crl_days;
    if (!parse_flags("revoke", argc, argv, flags) ||
        !require("revoke", flags, "--ca-dir") ||
        !require("revoke", flags, "--cert") ||
        !days_flag("revoke", flags, "--crl-days", 365, 3650, &crl_days))
        return ROOST_EXIT_USAGE;
    ca_paths ca;
    if (!ca_paths_of(get(flags, "--ca-dir"), &ca))
        return ROOST_EXIT_USAGE;
    roost_errmsg em = {{0}};
    int rc = roost_pki_revoke(ca.key, ca.cert, ca.crl, get(flags, "--cert"),
                              crl_days, &em);
    if (rc == ROOST_OK)
        printf("revoked %s; CRL %s updated (valid %lld days); reload the "
               "coordinator to apply it (systemctl reload roost, or "
               "SIGHUP)\n",
               get(flags, "--cert"), ca.crl, (long long)crl_days);
    return report("revoke", rc, &em);
}

static int
cmd_crl(int argc, char **argv)
{
    flag flags[] = {{"--ca-dir", NULL}, {"--days", NULL}, {NULL, NULL}};
    int64_t days;
    if (!parse_flags("crl", argc, argv, flags) ||
        !require("crl", flags, "--ca-dir") ||
        !days_flag("crl", flags, "--days", 365, 3650, &days))
        return ROOST_EXIT_USAGE;
    ca_paths ca;
    if (!ca_paths_of(get(flags, "--ca-dir"), &ca))
        return ROOST_EXIT_USAGE;
    roost_errmsg em = {{0}};
    size_t n = 0;
    int rc = roost_pki_crl(ca.key, ca.cert, ca.crl, days, &n, &em);
    if (rc == ROOST_OK)
        printf("re-signed CRL %s: %zu revoked certificate%s, valid %lld "
               "days; reload the coordinator to apply it (systemctl reload "
               "roost, or SIGHUP)\n",
               ca.crl, n, n == 1 ? "" : "s", (long long)days);
    return report("crl", rc, &em);
}

int
roost_cmd_pki(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int, char **);
        const char *usage;
    } subs[] = {{"init", cmd_init, usage_init},
                {"server", cmd_server, usage_server},
                {"request", cmd_request, usage_request},
                {"sign", cmd_sign, usage_sign},
                {"revoke", cmd_revoke, usage_revoke},
                {"crl", cmd_crl, usage_crl}};
    if (argc < 2) {
        fputs(usage_main, stderr);
        return ROOST_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_main, stdout);
        return ROOST_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        if (strcmp(argv[1], subs[i].name) != 0)
            continue;
        for (int j = 2; j < argc; j++) {
            if (strcmp(argv[j], "--help") == 0 || strcmp(argv[j], "-h") == 0) {
                fputs(subs[i].usage, stdout);
                return ROOST_EXIT_OK;
            }
        }
        return subs[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "roost pki: unknown subcommand '%s'\n%s", argv[1],
            usage_main);
    return ROOST_EXIT_USAGE;
}
