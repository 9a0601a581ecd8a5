#!/bin/sh
# `roost pki`: files are created with the right modes and never
# overwritten, OpenSSL accepts the chain for the right purposes, SANs are
# present, revocation shows up in the CRL, and bad input fails clearly;
# keys appear whole or not at all, parallel revocations are all kept, the
# CRL is backdated against clock skew, and unusable request keys refused.
# Every CRL carries the extensions RFC 5280 5.2.1 and 5.2.3 require: an
# authorityKeyIdentifier equal to the CA's subjectKeyIdentifier and a
# cRLNumber that grows with every CRL issued (init, revoke, crl, parallel
# revokes, and CRLs made elsewhere, with or without a number).
# usage: test_pki.sh path/to/roost
set -eu
roost=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
. "$(dirname "$0")/openssl_ca.sh"
# refused WHAT PATTERN LEFTOVER CMD...: CMD fails, its message matches
# PATTERN, and it leaves no LEFTOVER file.
refused() {
    what=$1 pattern=$2 leftover=$3
    shift 3
    if "$@" 2>"$dir/err"; then fail "$what"; fi
    grep -q "$pattern" "$dir/err" || fail "$what: message: $(cat "$dir/err")"
    [ ! -e "$leftover" ] || fail "$what: $leftover left behind"
}
mode() { stat -c %a "$1"; }
# crl_number FILE: the CRL's cRLNumber in decimal, or "none".
crl_number() {
    n=$(openssl crl -in "$1" -noout -crlnumber | sed 's/^crlNumber=//')
    case "$n" in 0x*) echo $((n)) ;; *) echo none ;; esac
}
# crl_aki FILE / cert_ski FILE: the key identifiers, hex with colons.
crl_aki() {
    openssl crl -in "$1" -noout -text |
        sed -n '/Authority Key Identifier/{n;s/ //g;s/^keyid://;p;}'
}
cert_ski() {
    openssl x509 -in "$1" -noout -ext subjectKeyIdentifier 2>/dev/null |
        sed -n "2s/ //gp"
}
# crl_is NUMBER WHAT: ca/ca.crl has cRLNumber NUMBER and the CA's key id.
crl_is() {
    got=$(crl_number "$dir/ca/ca.crl")
    [ "$got" = "$1" ] || fail "$2: CRL number $got, want $1"
    aki=$(crl_aki "$dir/ca/ca.crl")
    [ -n "$aki" ] && [ "$aki" = "$(cert_ski "$dir/ca/ca.crt")" ] ||
        fail "$2: CRL authorityKeyIdentifier '$aki' is not the CA's '$(cert_ski "$dir/ca/ca.crt")'"
}

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
crl_is 1 "init"
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
crl_is 2 "revoke"
# revoking twice keeps one entry (and issues a new CRL, with a new number)
"$roost" pki revoke --ca-dir "$dir/ca" --cert "$dir/dev.crt" >/dev/null
n=$(openssl crl -in "$dir/ca/ca.crl" -noout -text | grep -c "Serial Number")
[ "$n" = 1 ] || fail "CRL has $n entries after revoking twice"
crl_is 3 "revoke again"

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
# A key write cut short (here by the file size limit, as a crash or a full
# disk would cut it) leaves no partial key under the key's name, so the
# command can simply be run again.
(ulimit -f 0; exec "$roost" pki request --cn dev-cut --out "$dir/cut") \
    >/dev/null 2>&1 && fail "request wrote a key past the file size limit"
[ ! -e "$dir/cut.key" ] ||
    fail "a partial key was left at cut.key ($(wc -c <"$dir/cut.key") bytes)"
"$roost" pki request --cn dev-cut --out "$dir/cut" >/dev/null ||
    fail "request after a cut-short key write"
openssl pkey -in "$dir/cut.key" -noout || fail "cut.key is not a whole key"
[ "$(mode "$dir/cut.key")" = 600 ] || fail "cut.key mode $(mode "$dir/cut.key")"

# The CRL's lastUpdate lies a few minutes back, as certificates' notBefore
# does: a coordinator whose clock is a little behind the CA's would
# otherwise refuse every client ("CRL is not yet valid") after a reload.
"$roost" pki crl --ca-dir "$dir/ca" >/dev/null || fail "pki crl"
last=$(openssl crl -in "$dir/ca/ca.crl" -noout -lastupdate | sed 's/^lastUpdate=//')
[ $(( $(date -u +%s) - $(date -u -d "$last" +%s) )) -ge 120 ] ||
    fail "CRL lastUpdate $last is not backdated"
crl_is 4 "pki crl"

# Revocations run at the same time are all kept (each one reads, extends
# and rewrites the CRL: without a lock, one would overwrite another's).
i=0
while [ $i -lt 12 ]; do
    "$roost" pki request --cn "par-$i" --out "$dir/par-$i" >/dev/null &&
        "$roost" pki sign --ca-dir "$dir/ca" --csr "$dir/par-$i.csr" \
            --out "$dir/par-$i.crt" >/dev/null || fail "certificate par-$i"
    i=$((i + 1))
done
pids=
i=0
while [ $i -lt 12 ]; do
    "$roost" pki revoke --ca-dir "$dir/ca" --cert "$dir/par-$i.crt" \
        >/dev/null 2>"$dir/par-$i.err" &
    pids="$pids $!"
    i=$((i + 1))
done
for p in $pids; do wait "$p" || fail "a parallel revoke failed"; done
openssl crl -in "$dir/ca/ca.crl" -noout -text >"$dir/crl.txt"
i=0
while [ $i -lt 12 ]; do
    serial=$(openssl x509 -in "$dir/par-$i.crt" -noout -serial | cut -d= -f2)
    grep -q "$serial" "$dir/crl.txt" ||
        fail "revocation of par-$i lost by a parallel revoke"
    i=$((i + 1))
done
ls "$dir/ca" | grep -q tmp && fail "temporary files left: $(ls "$dir/ca")"
# Each revocation issued its own CRL under the lock: twelve more numbers.
crl_is 16 "after 12 parallel revokes"

# A CRL made elsewhere (openssl ca) continues from its number, and one
# without a number (as roost pki wrote before it numbered CRLs) counts as
# number 0; both gain the CA's key identifier.
openssl_ca_dir "$dir/gen"
echo 29 >"$dir/gen/crlnumber"
openssl ca -config "$dir/gen/ca.cnf" -gencrl -keyfile "$dir/ca/ca.key" \
    -cert "$dir/ca/ca.crt" -crldays 30 -out "$dir/ca/ca.crl" 2>/dev/null ||
    fail "openssl ca -gencrl"
[ "$(crl_number "$dir/ca/ca.crl")" = 41 ] || fail "openssl ca CRL number"
"$roost" pki revoke --ca-dir "$dir/ca" --cert "$dir/dev.crt" >/dev/null ||
    fail "revoke on an openssl ca CRL"
crl_is 42 "revoke after CRL number 41"
grep -v '^crlnumber' "$dir/gen/ca.cnf" >"$dir/gen/nonum.cnf"
openssl ca -config "$dir/gen/nonum.cnf" -gencrl -keyfile "$dir/ca/ca.key" \
    -cert "$dir/ca/ca.crt" -crldays 30 -out "$dir/ca/ca.crl" 2>/dev/null ||
    fail "openssl ca -gencrl without a number"
[ "$(crl_number "$dir/ca/ca.crl")" = none ] || fail "CRL without a number"
"$roost" pki crl --ca-dir "$dir/ca" >/dev/null || fail "pki crl on a CRL without a number"
crl_is 1 "pki crl after a CRL without a number"
# RFC 5280 5.2.3 caps a cRLNumber at 20 octets of DER: the last number
# that fits is 2^159 - 1 (a 20-octet magnitude with its top bit set needs
# a leading zero octet). A CRL carrying it cannot be followed by a
# conforming one, so revoke and crl refuse and leave the file as it was.
echo 7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF >"$dir/gen/crlnumber"
openssl ca -config "$dir/gen/ca.cnf" -gencrl -keyfile "$dir/ca/ca.key" \
    -cert "$dir/ca/ca.crt" -crldays 30 -out "$dir/ca/ca.crl" 2>/dev/null ||
    fail "openssl ca -gencrl with the last 20-octet number"
cp "$dir/ca/ca.crl" "$dir/last.crl"
refused "crl after the last 20-octet CRL number" "exceed 20 octets" \
    "$dir/nothing" "$roost" pki crl --ca-dir "$dir/ca"
cmp -s "$dir/ca/ca.crl" "$dir/last.crl" ||
    fail "a refused crl changed the CRL file"
"$roost" pki crl --ca-dir "$dir/ca" 2>/dev/null && fail "second crl after the last number"
# The operator's way out is a CRL without a number (as above): start over.
openssl ca -config "$dir/gen/nonum.cnf" -gencrl -keyfile "$dir/ca/ca.key" \
    -cert "$dir/ca/ca.crt" -crldays 30 -out "$dir/ca/ca.crl" 2>/dev/null ||
    fail "openssl ca -gencrl without a number, again"
"$roost" pki crl --ca-dir "$dir/ca" >/dev/null || fail "pki crl after restarting the numbers"
crl_is 1 "pki crl after restarting the numbers"

# A CA certificate made elsewhere without a subjectKeyIdentifier (which RFC
# 5280 requires of a CA) can still revoke: the CRL names the CA's key by
# the SHA-1 of its public key, and OpenSSL verifies with it.
mkdir "$dir/noski"
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=none\nauthorityKeyIdentifier=none\n' \
    >"$dir/noski.ext"
cp "$dir/ca/ca.key" "$dir/noski/ca.key"
openssl req -new -key "$dir/noski/ca.key" -subj "/CN=No SKI CA" \
    -out "$dir/noski.csr" 2>/dev/null &&
    openssl x509 -req -in "$dir/noski.csr" -signkey "$dir/noski/ca.key" \
        -extfile "$dir/noski.ext" -days 30 -out "$dir/noski/ca.crt" \
        2>/dev/null || fail "CA certificate without subjectKeyIdentifier"
[ -z "$(cert_ski "$dir/noski/ca.crt")" ] || fail "noski CA has a key identifier"
openssl x509 -req -in "$dir/dev.csr" -CA "$dir/noski/ca.crt" \
    -CAkey "$dir/noski/ca.key" -set_serial 77 -days 30 \
    -out "$dir/noski-dev.crt" 2>/dev/null || fail "certificate from noski CA"
sed 's/^crlnumber.*//' "$dir/gen/ca.cnf" >"$dir/gen/noski.cnf"
openssl ca -config "$dir/gen/noski.cnf" -gencrl -keyfile "$dir/noski/ca.key" \
    -cert "$dir/noski/ca.crt" -crldays 30 -out "$dir/noski/ca.crl" \
    2>/dev/null || fail "CRL of noski CA"
"$roost" pki revoke --ca-dir "$dir/noski" --cert "$dir/noski-dev.crt" \
    >/dev/null || fail "revoke with a CA without subjectKeyIdentifier"
[ "$(crl_number "$dir/noski/ca.crl")" = 1 ] || fail "noski CRL number"
want=$(openssl x509 -in "$dir/noski/ca.crt" -noout -pubkey |
    openssl pkey -pubin -outform DER | tail -c 65 | openssl sha1 -r |
    cut -c1-40 | tr a-f A-F | sed 's/../&:/g; s/:$//')
[ "$(crl_aki "$dir/noski/ca.crl")" = "$want" ] ||
    fail "noski CRL key identifier $(crl_aki "$dir/noski/ca.crl"), want $want"
if openssl verify -CAfile "$dir/noski/ca.crt" -crl_check \
    -CRLfile "$dir/noski/ca.crl" "$dir/noski-dev.crt" >"$dir/out" 2>&1; then
    fail "revoked certificate of the noski CA verifies"
fi
grep -q "revoked" "$dir/out" || fail "noski revocation: $(cat "$dir/out")"

# A request whose key TLS 1.3 cannot use at Roost's security level (DSA,
# RSA under 2048 bits) is refused: the certificate would fail every
# handshake.
for spec in "rsa:1024" "dsa"; do
    if [ "$spec" = dsa ]; then
        openssl genpkey -genparam -algorithm DSA -pkeyopt dsa_paramgen_bits:2048 \
            -out "$dir/dsa.param" 2>/dev/null || fail "DSA parameters"
        openssl req -new -newkey "dsa:$dir/dsa.param" -nodes -subj /CN=weak \
            -keyout "$dir/weak-dsa.key" -out "$dir/weak.csr" 2>/dev/null ||
            fail "DSA request"
    else
        openssl req -new -newkey "$spec" -nodes -subj /CN=weak \
            -keyout "$dir/weak-rsa.key" -out "$dir/weak.csr" 2>/dev/null ||
            fail "RSA request"
    fi
    refused "a $spec key was certified" "key" "$dir/weak.crt" \
        "$roost" pki sign --ca-dir "$dir/ca" --csr "$dir/weak.csr" \
        --out "$dir/weak.crt"
done
# An RSA 2048 request is fine.
openssl req -new -newkey rsa:2048 -nodes -subj /CN=rsa-ok \
    -keyout "$dir/rsa-ok.key" -out "$dir/rsa-ok.csr" 2>/dev/null
"$roost" pki sign --ca-dir "$dir/ca" --csr "$dir/rsa-ok.csr" \
    --out "$dir/rsa-ok.crt" >/dev/null || fail "RSA 2048 request refused"

# An expired CA certificate (same key, made with openssl ca -selfsign)
# issues nothing: every certificate it signed would fail verification.
openssl_ca_dir "$dir/old"
mkdir "$dir/oldca"
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n' \
    >"$dir/old/ext"
cp "$dir/ca/ca.key" "$dir/ca/ca.crl" "$dir/oldca/"
openssl req -new -key "$dir/oldca/ca.key" -subj "/CN=Old CA" -out "$dir/old/csr" &&
    openssl ca -config "$dir/old/ca.cnf" -batch -notext -selfsign \
        -in "$dir/old/csr" -keyfile "$dir/oldca/ca.key" \
        -startdate 20200101000000Z -enddate 20210101000000Z \
        -extfile "$dir/old/ext" -out "$dir/oldca/ca.crt" >/dev/null 2>&1 ||
    fail "expired CA certificate"
refused "an expired CA signed a request" "expired" "$dir/old-dev.crt" \
    "$roost" pki sign --ca-dir "$dir/oldca" --csr "$dir/dev.csr" \
    --out "$dir/old-dev.crt"
refused "an expired CA issued a server certificate" "expired" \
    "$dir/old-server.key" \
    "$roost" pki server --ca-dir "$dir/oldca" --name localhost \
    --out "$dir/old-server"

"$roost" pki frobnicate 2>/dev/null && fail "unknown subcommand"
"$roost" pki init --help | grep -q "usage: roost pki init" || fail "init --help"
echo "pki ok"
