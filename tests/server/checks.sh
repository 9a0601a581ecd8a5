# checks.sh - sourced by the shell tests of roost's commands: the checks
# they share. Each prints "ok: WHAT" or "FAIL: WHAT ..." and a failure sets
# fail=1, which the test exits with at the end. The sourcing test sets
# out, the file check writes a command's output to and expect_text reads
# by default. None of these calls bad, which a test may define its own
# way (test_serve.sh does).
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }
# check STATUS WHAT COMMAND...: COMMAND exits with STATUS; its output
# (stdout and stderr) is left in $out and shown on a failure.
check() {
    want=$1; what=$2; shift 2
    "$@" >"$out" 2>&1
    got=$?
    if [ "$got" -ne "$want" ]; then
        echo "FAIL: $what: exit $got, want $want"; cat "$out"; fail=1
    else
        echo "ok: $what"
    fi
}
# expect_text WHAT PATTERN [FILE]: FILE (default $out) has a line matching
# the grep PATTERN.
expect_text() {
    if grep -q -- "$2" "${3:-$out}"; then echo "ok: $1"; else
        echo "FAIL: $1: no '$2' in:"; cat "${3:-$out}"; fail=1; fi
}
# wait_for FILE PATTERN: wait up to 20 s for FILE to have a line matching
# PATTERN; status 1 if it never does.
wait_for() {
    i=0
    while [ $i -lt 200 ]; do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1; i=$((i + 1))
    done
    return 1
}

# The daemon tests: the sourcing test sets roost and work and runs in
# $work, which holds ca/ca.crt, ca/ca.crl, server.crt and server.key.
# serve_conf: print serve.conf's [server] section on those files, with the
# state in $work/state and the log in $work/serve.log; a test appends its
# own keys and sections.
serve_conf() {
    cat <<EOF
[server]
listen = tcp://127.0.0.1:*
ca_file = ca/ca.crt
cert_file = server.crt
key_file = server.key
crl_file = ca/ca.crl
state_dir = $work/state
log_file = $work/serve.log
EOF
}
# start_daemon WHAT [FLAG...]: roost serve on serve.conf (and FLAGs) in
# the background; sets pid and, once it listens, port. A daemon that does
# not start ends the test, naming WHAT.
start_daemon() {
    what=$1; shift
    "$roost" serve --config serve.conf "$@" &
    pid=$!
    wait_for serve.log "listening on tcp://127.0.0.1:[0-9]" ||
        { echo "FAIL: $what"; cat serve.log; exit 1; }
    port=$(sed -n 's/.*listening on tcp:\/\/127\.0\.0\.1:\([0-9][0-9]*\);.*/\1/p' serve.log)
}
# handshake DEVICE: one TLS 1.3 handshake (openssl s_client) with
# DEVICE.crt and DEVICE.key on $port; the session stays up for a second,
# then closes. The output is in sc-DEVICE.out.
handshake() {
    (sleep 1; printf '') | timeout 10 openssl s_client \
        -connect "127.0.0.1:$port" -CAfile ca/ca.crt -cert "$1.crt" \
        -key "$1.key" -tls1_3 -brief >"sc-$1.out" 2>&1
}
