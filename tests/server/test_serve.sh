#!/bin/sh
# `roost serve`: --check-config on the sample and on broken files (exit 2
# with FILE:LINE: reason; settings under which no round could commit are
# broken too), --print-default-config equals deploy/roost.conf,
# the systemd unit verifies, and the daemon runs for real: it listens, a
# client certificate completes a TLS 1.3 handshake (openssl s_client), a
# certificate from another CA is refused, SIGHUP reopens the log file,
# SIGTERM stops it with status 0, and a restart resumes the same database.
#
# usage: test_serve.sh ROOST_BIN SOURCE_DIR
set -u
roost=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
src=$(cd "$2" && pwd)
work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT; [ -n "${KEEP:-}" ] && trap - EXIT
fail=0
out="$work/out"
. "$(dirname "$0")/checks.sh"


# --- configuration ---------------------------------------------------
check 0 "check-config of deploy/roost.conf" \
    "$roost" serve --check-config "$src/deploy/roost.conf"
expect_text "effective config printed" "^clients_per_round = 10  ; line"
"$roost" serve --print-default-config >"$work/sample.conf"
if cmp -s "$work/sample.conf" "$src/deploy/roost.conf"; then
    echo "ok: deploy/roost.conf is the generated sample"
else
    echo "FAIL: deploy/roost.conf differs from --print-default-config:"
    diff "$src/deploy/roost.conf" "$work/sample.conf" | head -20; fail=1
fi

bad() { # line pattern description: file content on stdin
    cat >"$work/bad.conf"
    check 2 "$3" "$roost" serve --check-config "$work/bad.conf"
    expect_text "$3 names the line" "bad.conf:$1: .*$2"
}
printf '[server]\nlisten = tcp://0.0.0.0:1\nbogus = 1\n' |
    bad 3 "unknown key 'bogus'" "unknown key"
printf '# x\n[servers]\n' | bad 2 "unknown section" "unknown section"
printf '[round]\nclients_per_round = 1O\n' |
    bad 2 "not a non-negative integer" "bad number"
printf '[round]\n\n\nover_selection = 11\n' | bad 4 "outside" "out of range"
printf '[aggregation]\nstrategy = fedavgg\n' |
    bad 2 "unknown strategy" "bad strategy name"
printf '[round]\ntimeout = 30\n' | bad 2 "needs a unit" "duration without unit"
printf '[round]\nclients_per_round = 5\nmin_clients = 7\n' |
    bad 3 "min_clients 7 is above" "cross-key check"
printf '[server]\nmax_sessions = 10\n[round]\nclients_per_round = 50\n' |
    bad 4 "clients_per_round 50 exceeds .server. max_sessions 10" \
        "quorum above max_sessions"
printf '[round]\nclients_per_round = 50\n[aggregation]\nstrategy = krum\nbyzantine_f = 24\n' |
    bad 5 "byzantine_f 24 needs at least 51 updates" "krum f too large for K"
printf '[dp]\nsampling_rate = 1e-320\n' |
    bad 2 "out of range" "double underflow"
check 1 "missing config file" "$roost" serve --check-config "$work/none.conf"
check 2 "serve without --config" "$roost" serve
check 2 "unknown flag" "$roost" serve --config "$src/deploy/roost.conf" --frob 1
check 2 "bad --set" "$roost" serve --check-config "$src/deploy/roost.conf" \
    --set round.timeout=never
expect_text "bad --set names the key" "round.timeout"
check 0 "--set and shorthand flags override the file" \
    "$roost" serve --check-config "$src/deploy/roost.conf" \
    --set round.timeout=2min --max-rounds 7
expect_text "--set applied" "^timeout = 2min  ; command line"
expect_text "--max-rounds applied" "^max_rounds = 7  ; command line"

# --- systemd unit ----------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
    # verify checks that ExecStart exists: point it at the built binary.
    sed "s#/usr/local/bin/roost#$roost#g" "$src/deploy/roost.service" \
        >"$work/roost.service"
    check 0 "systemd-analyze verify deploy/roost.service" \
        systemd-analyze verify "$work/roost.service"
    for k in 'DynamicUser=yes' 'StateDirectory=roost' 'Restart=on-failure' \
        'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ProtectHome=yes' \
        'PrivateTmp=yes' 'CapabilityBoundingSet=$' \
        'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
        'SystemCallFilter=@system-service' \
        'ExecReload=/bin/kill -HUP \$MAINPID'; do
        expect_text "unit has $k" "^$k" "$src/deploy/roost.service"
    done
else
    echo "skip: systemd-analyze not installed (apt-get install systemd)"
fi

# --- the daemon ------------------------------------------------------
if ! command -v openssl >/dev/null 2>&1; then
    echo "skip: openssl not installed; daemon not exercised"
    exit $fail
fi
cd "$work" || exit 1
"$roost" pki init --dir ca --cn "Serve Test CA" >/dev/null &&
    "$roost" pki server --ca-dir ca --name localhost,127.0.0.1 \
        --out server >/dev/null &&
    "$roost" pki request --cn device-1 --out dev >/dev/null &&
    "$roost" pki sign --ca-dir ca --csr dev.csr --out dev.crt >/dev/null &&
    "$roost" pki init --dir other --cn "Other CA" >/dev/null &&
    "$roost" pki request --cn intruder --out bad >/dev/null &&
    "$roost" pki sign --ca-dir other --csr bad.csr --out bad.crt >/dev/null ||
    { echo "FAIL: pki setup"; exit 1; }
mkdir state
{ serve_conf; cat <<EOF; } >serve.conf
log_level = debug
[round]
clients_per_round = 2
EOF
check 0 "check-config of the test config" "$roost" serve --check-config serve.conf

start_daemon "daemon did not start"
echo "ok: daemon listening on port $port"
expect_text "resume point logged" "last committed round 0" serve.log

(sleep 1; printf '') | timeout 10 openssl s_client -connect "127.0.0.1:$port" \
    -CAfile ca/ca.crt -cert dev.crt -key dev.key -tls1_3 -brief \
    >"$work/sc.out" 2>&1
expect_text "client handshake completes" "Protocol version: TLSv1.3" "$work/sc.out"
if wait_for serve.log "opened: CN=device-1"; then
    echo "ok: coordinator saw the session with the client's identity"
else
    echo "FAIL: session not opened"; cat serve.log; fail=1
fi
(sleep 1; printf '') | timeout 10 openssl s_client -connect "127.0.0.1:$port" \
    -CAfile ca/ca.crt -cert bad.crt -key bad.key -tls1_3 -brief \
    >"$work/sc2.out" 2>&1
if wait_for serve.log "unauthenticated.*peer certificate refused"; then
    echo "ok: certificate from another CA refused"
else
    echo "FAIL: foreign certificate not refused"; cat serve.log; fail=1
fi
grep -q "opened: CN=intruder" serve.log &&
    { echo "FAIL: intruder session opened"; fail=1; }

# A framed message that is not a protobuf Envelope: logged, session closed,
# daemon unaffected.
(printf '\000\000\000\005hello'; sleep 1) | timeout 10 openssl s_client \
    -connect "127.0.0.1:$port" -CAfile ca/ca.crt -cert dev.crt -key dev.key \
    -tls1_3 -quiet >"$work/sc3.out" 2>&1
if wait_for serve.log "undecodable message.*closing it"; then
    echo "ok: undecodable frame closes its session"
else
    echo "FAIL: undecodable frame not reported"; cat serve.log; fail=1
fi

mv serve.log serve.log.1
kill -HUP "$pid"
if wait_for serve.log "SIGHUP: log file reopened"; then
    echo "ok: SIGHUP reopened the log file"
else
    echo "FAIL: no new log file after SIGHUP"; fail=1
fi
kill -0 "$pid" 2>/dev/null || { echo "FAIL: SIGHUP killed the daemon"; fail=1; }
kill -TERM "$pid"
wait "$pid"
st=$?
pid=
if [ "$st" -eq 0 ]; then echo "ok: SIGTERM exits 0"; else
    echo "FAIL: SIGTERM exit $st"; fail=1; fi
expect_text "SIGTERM logged" "SIGTERM: stopping" serve.log

# A restart resumes from the same database; status reads it.
"$roost" serve --config serve.conf --max-rounds 0 &
pid=$!
wait_for serve.log "listening on tcp://127.0.0.1:[0-9].*last committed round 0" ||
    { echo "FAIL: restart"; fail=1; }
kill -INT "$pid"
wait "$pid"
st=$?
pid=
[ "$st" -eq 0 ] && echo "ok: SIGINT exits 0" || { echo "FAIL: SIGINT exit $st"; fail=1; }
check 0 "status reads the daemon's database" "$roost" status --db state/roost.db
expect_text "run recorded" "run           1: "

# --- rounds with real clients --------------------------------------
# Three `roost client` processes on small shards, two DP rounds with
# held-out evaluation: the loop carries check-in, task, chunks, update
# and ack over TLS; the daemon stops by itself at max_rounds; status,
# report and audit read what it recorded.
fmnist=${ROOST_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ ! -e "$fmnist/t10k-labels-idx1-ubyte.gz" ] &&
    [ ! -e "$fmnist/t10k-labels-idx1-ubyte" ]; then
    echo "skip: no Fashion-MNIST in $fmnist; rounds not exercised"
else
    for i in 0 1 2; do
        "$roost" pki request --cn "dev$i" --out "dev$i" >/dev/null &&
            "$roost" pki sign --ca-dir ca --csr "dev$i.csr" --out "dev$i.crt" \
                >/dev/null || { echo "FAIL: client certificates"; exit 1; }
    done
    # Each client process must exit 0 (under ASan: also without leaks).
    wait_clients() {
        for c in $cpids; do
            wait "$c"
            cst=$?
            [ "$cst" -eq 0 ] ||
                { echo "FAIL: a roost client exited $cst (see below)"; fail=1; }
        done
        [ "$fail" -eq 0 ] || for f in client*.log resume*.log; do
            [ -f "$f" ] && grep -q "Sanitizer\|FAIL\|error" "$f" &&
                { echo "--- $f"; head -40 "$f"; }
        done
    }
    mkdir rstate
    rm -f serve.log
    start_daemon "daemon did not start" --state-dir "$work/rstate" \
        --set round.clients_per_round=3 --set round.timeout=2min \
        --set round.max_rounds=2 --set dp.enabled=true \
        --set evaluation.enabled=true \
        --set "evaluation.dataset_dir=$fmnist" --set server.log_level=info
    cpids=
    for i in 0 1 2; do
        "$roost" client --connect "tcp://127.0.0.1:$port" --ca ca/ca.crt \
            --cert "dev$i.crt" --key "dev$i.key" --ledger "ledger$i.db" \
            --create-ledger --shard "$i/200" --data "$fmnist" --rounds 2 \
            >"client$i.log" 2>&1 &
        cpids="$cpids $!"
    done
    wait "$pid"
    st=$?
    pid=
    wait_clients
    if [ "$st" -eq 0 ]; then echo "ok: daemon stopped at max_rounds"; else
        echo "FAIL: daemon exit $st"; cat serve.log; fail=1; fi
    expect_text "round 1 committed" "round 1 committed: 3/3 updates" serve.log
    expect_text "round 2 committed" "round 2 committed: 3/3 updates" serve.log
    expect_text "held-out accuracy measured" "held-out accuracy 0\.[0-9]" serve.log
    expect_text "client finished" "done (contributed 2 rounds" client0.log
    check 0 "audit of the daemon's record" "$roost" audit --db rstate/roost.db
    expect_text "chain holds 2 rounds" "chain intact: 2 rounds"
    check 0 "report of the daemon's record" \
        "$roost" report --db rstate/roost.db -o report.html
    expect_text "report has the participation chart" \
        'id="chart-participation"' report.html

    # SIGTERM while round 3 is open: nothing of it is committed; the
    # clients, still training, reconnect to the restarted daemon, which
    # runs round 3 again and commits it once. Larger shards here keep the
    # clients busy well past the moment the signal lands.
    cpids=
    for i in 0 1 2; do
        "$roost" client --connect "tcp://127.0.0.1:$port" --ca ca/ca.crt \
            --cert "dev$i.crt" --key "dev$i.key" --ledger "ledger$i.db" \
            --shard "$i/20" --data "$fmnist" --rounds 1 \
            >"resume$i.log" 2>&1 &
        cpids="$cpids $!"
    done
    serve_again() {
        "$roost" serve --config serve.conf --state-dir "$work/rstate" \
            --listen "tcp://127.0.0.1:$port" \
            --set round.clients_per_round=3 --set round.timeout=2min \
            --set round.max_rounds=3 --set dp.enabled=true &
        pid=$!
    }
    rm -f serve.log
    serve_again
    if wait_for serve.log "round 3 open"; then
        kill -TERM "$pid"
        wait "$pid"
        st=$?
        pid=
        [ "$st" -eq 0 ] && echo "ok: SIGTERM during a round exits 0" ||
            { echo "FAIL: SIGTERM during a round: exit $st"; fail=1; }
    else
        echo "FAIL: round 3 never opened"; cat serve.log; fail=1
    fi
    expect_text "the open round was abandoned" "round 3 abandoned" serve.log
    check 0 "audit after the stop" "$roost" audit --db rstate/roost.db
    expect_text "round 3 not committed" "chain intact: 2 rounds"
    check 0 "status after the stop" "$roost" status --db rstate/roost.db
    expect_text "last round is 2" "last round    2 "
    expect_text "open round noted" "open round    3 "
    rm -f serve.log
    serve_again
    wait_for serve.log "listening on" || { echo "FAIL: restart"; exit 1; }
    expect_text "resumes after round 2" "resuming after round 2" serve.log
    wait "$pid"
    st=$?
    pid=
    wait_clients
    [ "$st" -eq 0 ] && echo "ok: resumed daemon stopped at max_rounds" ||
        { echo "FAIL: resumed daemon exit $st"; cat serve.log; fail=1; }
    expect_text "round 3 run again and committed" \
        "round 3 committed: 3/3 updates" serve.log
    expect_text "a client saw the stop" "disconnected" resume0.log
    expect_text "and finished with the new daemon" \
        "done (contributed 1 rounds" resume0.log
    check 0 "audit after the resume" "$roost" audit --db rstate/roost.db
    expect_text "three rounds, each once" "chain intact: 3 rounds"
fi

# Settings the daemon finds unusable only when it starts (no round could
# ever commit under them, or the database holds another model) are a bad
# configuration: exit 2, which systemd does not restart in a loop
# (RestartPreventExitStatus=2), not 1.
check 2 "robust buffer below min_clients exits 2" "$roost" serve \
    --config serve.conf --set aggregation.strategy=median \
    --set aggregation.max_buffered_updates=1 --log ""
expect_text "names the limit" "max_buffered_updates"
check 2 "database of another model exits 2" "$roost" serve \
    --config serve.conf --set model.spec=logreg --log ""
expect_text "names the problem" "another model"

# Bad TLS files: exit 1 with a message, not a crash.
check 1 "missing certificate" "$roost" serve --config serve.conf \
    --set server.cert_file=nope.crt --log ""
expect_text "names the TLS problem" "TLS"

exit $fail
