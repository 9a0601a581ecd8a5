#!/bin/sh
# extendedKeyUsage is required for the peer's role, over real TLS on
# loopback sockets, with certificates made by the openssl tool and signed
# by a Roost CA (roost pki only issues certificates with the right EKU):
#   - `roost serve` refuses a client certificate with no extendedKeyUsage
#     and one whose extendedKeyUsage lacks clientAuth (serverAuth only),
#     and its log names the problem; a certificate from `roost pki sign`
#     still gets in;
#   - `roost client` refuses a server certificate (served by openssl
#     s_server) with no extendedKeyUsage and one that lacks serverAuth
#     (clientAuth only), and says why; one from `roost pki server` works;
#   - `roost serve` does not start with its own certificate lacking
#     serverAuth: every client would refuse it.
# usage: test_eku.sh ROOST_BIN
set -u
roost=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
work=$(mktemp -d)
pid=
srv=
cl=
cleanup() {
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    [ -n "$srv" ] && kill -KILL "$srv" 2>/dev/null
    [ -n "$cl" ] && kill -KILL "$cl" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT; [ -n "${KEEP:-}" ] && trap - EXIT
fail=0
. "$(dirname "$0")/checks.sh"

if ! command -v openssl >/dev/null 2>&1; then
    echo "skip: openssl not installed"
    exit 0
fi
cd "$work" || exit 1
"$roost" pki init --dir ca --cn "EKU Test CA" >/dev/null &&
    "$roost" pki server --ca-dir ca --name localhost,127.0.0.1 \
        --out server >/dev/null &&
    "$roost" pki request --cn dev --out dev >/dev/null &&
    "$roost" pki sign --ca-dir ca --csr dev.csr --out dev.crt >/dev/null ||
    { echo "FAIL: pki setup"; exit 1; }
# issue NAME EXTENSIONS: NAME.key and NAME.crt, CN=NAME, signed by the
# Roost CA with exactly EXTENSIONS (an openssl extension file's lines).
issue() {
    printf '%s\n' "$2" >"$1.ext"
    "$roost" pki request --cn "$1" --out "$1" >/dev/null &&
        openssl x509 -req -in "$1.csr" -CA ca/ca.crt -CAkey ca/ca.key \
            -set_serial "0x$(openssl rand -hex 16 | sed 's/^./1/')" \
            -days 30 -extfile "$1.ext" -out "$1.crt" >/dev/null 2>&1 ||
        { echo "FAIL: certificate $1"; exit 1; }
}
leaf='basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature'
san='subjectAltName=DNS:localhost,IP:127.0.0.1'
issue client-noeku "$leaf"
issue client-serverauth "$leaf
extendedKeyUsage=serverAuth"
issue server-noeku "$leaf
$san"
issue server-clientauth "$leaf
$san
extendedKeyUsage=clientAuth"
openssl x509 -in client-noeku.crt -noout -text | grep -q "Extended Key Usage" &&
    { echo "FAIL: client-noeku has an extendedKeyUsage"; exit 1; }

# --- the server refuses client certificates without clientAuth -----------
mkdir state
serve_conf >serve.conf
start_daemon "daemon did not start"
handshake dev
wait_for serve.log "opened: CN=dev " && ok "a roost pki client certificate gets in" ||
    { bad "dev did not get in"; cat serve.log; }
handshake client-noeku
if wait_for serve.log "peer certificate refused: no extendedKeyUsage extension; a client certificate needs one with clientAuth"; then
    ok "a client certificate without extendedKeyUsage is refused, and why"
else
    bad "no refusal of client-noeku logged"; cat serve.log
fi
handshake client-serverauth
if wait_for serve.log "peer certificate refused: its extendedKeyUsage lacks clientAuth"; then
    ok "a client certificate with serverAuth only is refused, and why"
else
    bad "no refusal of client-serverauth logged"; cat serve.log
fi
grep -q "opened: CN=client-" serve.log &&
    { bad "a certificate without clientAuth opened a session"; cat serve.log; }
kill -TERM "$pid"
wait "$pid"
pid=

# The daemon's own certificate must allow serverAuth.
for c in server-noeku server-clientauth; do
    sed "s/^cert_file = .*/cert_file = $c.crt/; s/^key_file = .*/key_file = $c.key/" \
        serve.conf >"$c.conf"
    timeout 20 "$roost" serve --config "$c.conf" --log "$work/$c.log" \
        >"$c.out" 2>&1
    st=$?
    [ "$st" -eq 1 ] && ok "serve with $c.crt exits 1" ||
        bad "serve with $c.crt: exit $st, want 1"
    cat "$c.out" >>"$c.log" 2>/dev/null
done
expect_text "the start failure names the missing extendedKeyUsage" \
    "certificate server-noeku.crt .*no extendedKeyUsage extension; a server certificate needs one with serverAuth" \
    server-noeku.log
expect_text "the start failure names the missing serverAuth" \
    "certificate server-clientauth.crt .*its extendedKeyUsage lacks serverAuth" \
    server-clientauth.log

# --- the client refuses server certificates without serverAuth -----------
# s_server serves one certificate (its input, a fifo this shell holds
# open, keeps it from quitting); roost client connects to it, and keeps
# reconnecting, until its log shows a session opened or refused.
connect() { # server-certificate log
    rm -f ss.out ss.in
    mkfifo ss.in
    openssl s_server -accept 127.0.0.1:0 -cert "$1.crt" -key "$1.key" \
        -CAfile ca/ca.crt -Verify 1 -tls1_3 <ss.in >ss.out 2>&1 &
    srv=$!
    exec 3>ss.in
    wait_for ss.out "^ACCEPT 127.0.0.1:" ||
        { bad "s_server did not start"; cat ss.out; return; }
    sport=$(sed -n 's/^ACCEPT 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' ss.out)
    timeout 60 "$roost" client --connect "tcp://127.0.0.1:$sport" \
        --server-name localhost --ca ca/ca.crt --cert dev.crt --key dev.key \
        --ledger "$2.db" --create-ledger --shard 0/300 --data "$fmnist" \
        --reconnect 100:500 --verbose >"$2" 2>&1 &
    cl=$!
    wait_for "$2" "opened: CN=\|peer certificate refused"
    kill "$cl" 2>/dev/null
    wait "$cl" 2>/dev/null
    cl=
    exec 3>&-
    kill "$srv" 2>/dev/null
    wait "$srv" 2>/dev/null
    srv=
}
fmnist=${ROOST_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ -e "$fmnist/train-labels-idx1-ubyte.gz" ] ||
    [ -e "$fmnist/train-labels-idx1-ubyte" ]; then
    connect server good.log
    expect_text "a roost pki server certificate is accepted" \
        "opened: CN=localhost" good.log
    connect server-noeku noeku.log
    expect_text "a server certificate without extendedKeyUsage is refused" \
        "peer certificate refused: no extendedKeyUsage extension; a server certificate needs one with serverAuth" \
        noeku.log
    connect server-clientauth clientauth.log
    expect_text "a server certificate with clientAuth only is refused" \
        "peer certificate refused: its extendedKeyUsage lacks serverAuth" \
        clientauth.log
    grep -q "opened: CN=server-" noeku.log clientauth.log &&
        bad "the client opened a session with a server certificate without serverAuth"
else
    echo "skip: no Fashion-MNIST in $fmnist; roost client not exercised"
fi
exit $fail
