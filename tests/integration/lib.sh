# lib.sh - what the integration tests share: a throw-away PKI made with
# `roost pki`, the [server] section of a coordinator configuration, and
# starting `roost serve` on an ephemeral loopback port. Sourced by the
# test scripts (which set $roost and define fail()); run in the test's
# working directory.

# make_pki N: ca/ (CA + CRL), server.{key,crt} for localhost and
# 127.0.0.1, and device certificates dev0 .. dev(N-1).
make_pki() {
    "$roost" pki init --dir ca >/dev/null || fail "pki init"
    "$roost" pki server --ca-dir ca --name localhost,127.0.0.1 --out server \
        >/dev/null || fail "pki server"
    _i=0
    while [ "$_i" -lt "$1" ]; do
        "$roost" pki request --cn "device-$_i" --out "dev$_i" >/dev/null &&
            "$roost" pki sign --ca-dir ca --csr "dev$_i.csr" \
                --out "dev$_i.crt" >/dev/null || fail "pki for device $_i"
        _i=$((_i + 1))
    done
}

# server_section LISTEN DB: the [server] section for this directory.
server_section() {
    cat <<CONF
[server]
listen = $1
ca_file = ca/ca.crt
cert_file = server.crt
key_file = server.key
crl_file = ca/ca.crl
state_dir = $PWD
database = $2
CONF
}

# start_serve CONF LOG: start the coordinator in the background; sets
# serve_pid, and endpoint once it listens (the configuration may use an
# ephemeral port, tcp://127.0.0.1:*).
start_serve() {
    "$roost" serve --config "$1" >>"$2" 2>&1 &
    serve_pid=$!
    endpoint=""
    _n=0
    while [ -z "$endpoint" ]; do
        endpoint=$(sed -n 's/.*listening on \(tcp:[^;]*\);.*/\1/p' "$2" |
            tail -n 1)
        [ -n "$endpoint" ] && break
        _n=$((_n + 1))
        [ $_n -gt 200 ] && fail "roost serve did not start listening"
        kill -0 "$serve_pid" 2>/dev/null || fail "roost serve exited"
        sleep 0.1
    done
}
