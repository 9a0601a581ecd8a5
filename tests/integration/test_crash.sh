#!/bin/sh
# Crash safety of `roost serve`: a coordinator with 4 `roost client`
# processes over loopback TLS is killed with SIGKILL at random instants,
# TRIALS times, and restarted each time while the clients reconnect on
# their own. After every kill: the record verifies (roost audit: hash
# chain intact, rounds numbered 1, 2, ... without gaps or repeats), the
# committed history never shrinks, and the restarted coordinator resumes
# right after the last committed round. At the end each committed round
# holds at most one accepted update per client.
#
# usage: test_crash.sh ROOST STORE_FIXTURE [TRIALS]
set -u
roost="$1"; fixture="$2"; trials=${3:-20}
work=$(mktemp -d)
pids=""
serve_pid=""
cleanup() {
    [ -n "$serve_pid" ] && kill -9 "$serve_pid" 2>/dev/null
    for p in $pids; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    [ -n "${ROOST_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$work/serve.log" ] && tail -n 30 "$work/serve.log"; exit 1; }
. "$(dirname "$0")/lib.sh"
cd "$work" || exit 1

make_pki 4
# A fixed port: the clients must find each restarted coordinator where
# the last one was.
port=$(( 20000 + ($$ * 7) % 20000 ))
{ server_section "tcp://127.0.0.1:$port" crash.db; cat <<CONF
[model]
spec = logreg
[round]
clients_per_round = 2
timeout = 20s
[training]
learning_rate = 0.1
[dp]
# Without DP: the clients' budgets would run out after ~180 rounds and a
# fast machine reaches that within the trials. They run --allow-no-dp.
enabled = false
CONF
} >crash.conf
[ -n "${ROOST_FMNIST_DIR:-}" ] &&
    printf '[evaluation]\ndataset_dir = %s\n' "$ROOST_FMNIST_DIR" >>crash.conf

for i in 0 1 2 3; do
    "$roost" client --connect "tcp://127.0.0.1:$port" --server-name localhost \
        --ca ca/ca.crt --cert "dev$i.crt" --key "dev$i.key" \
        --ledger "ledger$i.db" --create-ledger --shard "$i/20" \
        --reconnect 50:200 --allow-no-dp \
        >"c$i.log" 2>&1 &
    pids="$pids $!"
done

rounds_of() { # committed rounds according to audit
    "$roost" audit --db crash.db 2>&1 | sed -n 's/.*chain intact: \([0-9]*\) rounds.*/\1/p'
}

seed=$$
last=0
t=1
while [ $t -le "$trials" ]; do
    "$roost" serve --config crash.conf >>serve.log 2>&1 &
    serve_pid=$!
    # A random instant within the next 0.3 .. 4 s.
    delay=$(awk -v s=$((seed + t)) 'BEGIN { srand(s); printf "%.2f", 0.3 + 3.7 * rand() }')
    sleep "$delay"
    kill -9 "$serve_pid" 2>/dev/null
    wait "$serve_pid" 2>/dev/null
    serve_pid=""
    if [ -f crash.db ]; then
        "$roost" audit --db crash.db >audit.out 2>&1 ||
            { cat audit.out; fail "trial $t: audit after kill -9"; }
        now=$(rounds_of)
        [ -n "$now" ] || now=0
        [ "$now" -ge "$last" ] || fail "trial $t: history shrank $last -> $now"
        last=$now
    fi
    echo "trial $t: killed after ${delay}s; $last rounds committed"
    t=$((t + 1))
done

# Finally let it run until two more rounds commit, and check it resumed
# right after the last committed one.
"$roost" serve --config crash.conf --max-rounds $((last + 2)) >final.log 2>&1 &
serve_pid=$!
waited=0
while kill -0 "$serve_pid" 2>/dev/null; do
    sleep 1; waited=$((waited + 1))
    [ $waited -gt 300 ] && fail "final run did not finish"
done
serve_pid=""
grep -q "last committed round $last" final.log ||
    { cat final.log; fail "did not resume after round $last"; }
grep -q "round $((last + 1)) open" final.log ||
    { cat final.log; fail "did not open round $((last + 1)) next"; }
"$roost" audit --db crash.db || fail "final audit"
# At most one accepted update per client per round (the store's unique
# index enforces it; this checks the rows directly).
"$fixture" sql crash.db "CREATE TEMP TABLE chk (dups INTEGER CHECK (dups = 0));
    INSERT INTO chk SELECT count(*) FROM (SELECT round_id, fingerprint
    FROM updates WHERE accepted = 1 GROUP BY 1, 2 HAVING count(*) > 1);" ||
    fail "an update was counted twice"
echo "ok: $trials kills, $((last + 2)) rounds, chain intact, resumed at $((last + 1))"
