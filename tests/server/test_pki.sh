#!/bin/sh
# `roost pki`: files are created with the right modes and never
# overwritten, OpenSSL accepts the chain for the right purposes, SANs are
# present, revocation shows up in the CRL, and bad input fails clearly.
# usage: test_pki.sh path/to/roost
set -eu
roost=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
mode() { stat -c %a "$1"; }

# init
"$roost" pki init --dir "$dir/ca" --cn "Test Deployment CA" >/dev/null
for f in ca.key ca.crt ca.crl; do
    [ -s "$dir/ca/$f" ] || fail "init did not write $f"
done
[ "$(mode "$dir/ca/ca.key")" = 600 ] || fail "ca.key mode $(mode "$dir/ca/ca.key")"
openssl x509 -in "$dir/ca/ca.crt" -noout -subject | grep -q "Test Deployment CA" ||
    fail "CA subject"
openssl x509 -in "$dir/ca/ca.crt" -noout -text | grep -q "CA:TRUE" || fail "CA:TRUE"
openssl crl -in "$dir/ca/ca.crl" -CAfile "$dir/ca/ca.crt" -noout 2>&1 |
    grep -q "verify OK" || fail "CRL signature"
# never overwrite
if "$roost" pki init --dir "$dir/ca" 2>"$dir/err"; then fail "init overwrote"; fi
grep -q "refusing to overwrite" "$dir/err" || fail "overwrite message: $(cat "$dir/err")"

# server
"$roost" pki server --ca-dir "$dir/ca" --name localhost,127.0.0.1,coord.example \
    --out "$dir/server" >/dev/null
[ "$(mode "$dir/server.key")" = 600 ] || fail "server.key mode"
openssl verify -CAfile "$dir/ca/ca.crt" -purpose sslserver "$dir/server.crt" |
    grep -q ": OK" || fail "server cert does not verify"
san=$(openssl x509 -in "$dir/server.crt" -noout -ext subjectAltName)
echo "$san" | grep -q "DNS:localhost" || fail "SAN localhost: $san"
echo "$san" | grep -q "IP Address:127.0.0.1" || fail "SAN IP: $san"
echo "$san" | grep -q "DNS:coord.example" || fail "SAN coord.example: $san"
openssl x509 -in "$dir/server.crt" -noout -checkhost coord.example |
    grep -q "does match" || fail "checkhost"

# request (device) + sign (CA)
"$roost" pki request --cn device-42 --out "$dir/dev" >/dev/null
[ "$(mode "$dir/dev.key")" = 600 ] || fail "device key mode"
openssl req -in "$dir/dev.csr" -noout -verify 2>&1 | grep -qi "verify OK" ||
    fail "CSR self-signature"
"$roost" pki sign --ca-dir "$dir/ca" --csr "$dir/dev.csr" --out "$dir/dev.crt" \
    --days 30 >/dev/null
openssl verify -CAfile "$dir/ca/ca.crt" -crl_check -CRLfile "$dir/ca/ca.crl" \
    -purpose sslclient "$dir/dev.crt" | grep -q ": OK" || fail "client cert"
openssl x509 -in "$dir/dev.crt" -noout -subject | grep -q "device-42" || fail "subject"
# The certificate carries the device's key (the key never left it).
a=$(openssl x509 -in "$dir/dev.crt" -noout -pubkey | openssl sha256)
b=$(openssl pkey -in "$dir/dev.key" -pubout | openssl sha256)
[ "$a" = "$b" ] || fail "certificate key is not the device key"
# A client certificate is not a server certificate.
if openssl verify -CAfile "$dir/ca/ca.crt" -purpose sslserver "$dir/dev.crt" \
    >/dev/null 2>&1; then fail "client cert accepted as server"; fi

# revoke
"$roost" pki revoke --ca-dir "$dir/ca" --cert "$dir/dev.crt" >/dev/null
serial=$(openssl x509 -in "$dir/dev.crt" -noout -serial | cut -d= -f2)
openssl crl -in "$dir/ca/ca.crl" -noout -text | grep -q "$serial" ||
    fail "serial $serial not in CRL"
if openssl verify -CAfile "$dir/ca/ca.crt" -crl_check -CRLfile "$dir/ca/ca.crl" \
    "$dir/dev.crt" >"$dir/out" 2>&1; then fail "revoked cert still verifies"; fi
grep -q "revoked" "$dir/out" || fail "revocation message: $(cat "$dir/out")"
# revoking twice keeps one entry
"$roost" pki revoke --ca-dir "$dir/ca" --cert "$dir/dev.crt" >/dev/null
n=$(openssl crl -in "$dir/ca/ca.crl" -noout -text | grep -c "Serial Number")
[ "$n" = 1 ] || fail "CRL has $n entries after revoking twice"

# errors
if "$roost" pki sign --ca-dir "$dir/ca" --out "$dir/x.crt" 2>"$dir/err"; then
    fail "sign without --csr"
fi
grep -q -- "--csr is required" "$dir/err" || fail "missing flag message"
echo garbage >"$dir/bad.csr"
set +e
"$roost" pki sign --ca-dir "$dir/ca" --csr "$dir/bad.csr" --out "$dir/x.crt" 2>"$dir/err"
rc=$?
set -e
[ "$rc" = 1 ] || fail "bad CSR exit status $rc"
grep -q "not a PEM certificate request" "$dir/err" || fail "bad CSR message"
if "$roost" pki server --ca-dir "$dir/ca" --name "bad name!" --out "$dir/s2" \
    2>"$dir/err"; then fail "bad SAN accepted"; fi
grep -q "neither an IP address nor a DNS name" "$dir/err" || fail "SAN message"
[ ! -e "$dir/s2.key" ] || fail "key left behind after a failed server issue"
"$roost" pki frobnicate 2>/dev/null && fail "unknown subcommand"
"$roost" pki init --help | grep -q "usage: roost pki init" || fail "init --help"
echo "pki ok"
