#!/bin/sh
# The client's ledger never under-counts, whatever instant the client dies
# at: a `roost client` is killed with SIGKILL at random moments (while
# training, charging, uploading or idle), TRIALS times, against a real
# coordinator over TLS. Afterwards the ledger still verifies, and it holds
# at least one privacy event for every update the coordinator received
# from that client -- nothing left the device before its event was
# durable.
#
# usage: test_client_kill.sh ROOST STORE_FIXTURE [TRIALS]
set -u
roost="$1"; fixture="$2"; trials=${3:-12}
work=$(mktemp -d)
serve_pid=""; client_pid=""
cleanup() {
    [ -n "$client_pid" ] && kill -9 "$client_pid" 2>/dev/null
    [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -n 20 "$work/serve.log"; exit 1; }
. "$(dirname "$0")/lib.sh"
cd "$work" || exit 1
make_pki 1
{ server_section "tcp://127.0.0.1:*" coord.db; cat <<CONF
[round]
clients_per_round = 1
timeout = 5s
[dp]
enabled = true
sampling_rate = 0.05
CONF
} >kill.conf
start_serve kill.conf serve.log

client() { # start `roost client` in the background; sets client_pid
    "$roost" client --connect "$endpoint" --server-name localhost \
        --ca ca/ca.crt --cert dev0.crt --key dev0.key --ledger ledger.db \
        "$@" --epsilon 1000 --shard 0/100 --reconnect 20:200 \
        >>client.log 2>&1 &
    client_pid=$!
}
events_now() {
    "$roost" dp ledger --path ledger.db --json |
        sed -n 's/.*"events": \([0-9]*\).*/\1/p'
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# Calibrate: how long one whole round takes this client here, from start
# to an accepted update (it exits after one). The kills below land
# anywhere in 0.2 s .. 1.6x that, so on a slow machine (a sanitizer
# build, a loaded host) they still fall before, during and after the
# charge instead of always before it.
t0=$(now_ms)
client --create-ledger --rounds 1
wait "$client_pid" || fail "calibration: roost client exited $?"
client_pid=""
span=$(( $(now_ms) - t0 ))
calibrated=$(events_now)
[ "$calibrated" -ge 1 ] || fail "calibration round charged nothing"
echo "one round takes ${span} ms here; kills within 200 .. $((200 + span * 16 / 10)) ms"

t=1
while [ $t -le "$trials" ]; do
    client
    delay=$(awk -v s=$(($$ + t)) -v span="$span" \
        'BEGIN { srand(s); printf "%.3f", (200 + 1.6 * span * rand()) / 1000 }')
    sleep "$delay"
    kill -9 "$client_pid" 2>/dev/null
    wait "$client_pid" 2>/dev/null
    client_pid=""
    "$roost" dp ledger --path ledger.db >/dev/null 2>&1 ||
        fail "trial $t: ledger does not verify after kill -9"
    t=$((t + 1))
done
kill "$serve_pid"; wait "$serve_pid" 2>/dev/null; serve_pid=""

events=$(events_now)
# Every update the coordinator received (accepted or refused), over all
# rounds, came from this one client.
"$fixture" sql coord.db "CREATE TEMP TABLE chk (n INTEGER CHECK (n <= $events));
    INSERT INTO chk SELECT count(*) FROM updates;" ||
    fail "the coordinator holds more updates than the ledger has events ($events)"
received=$(grep -c "uploaded" client.log)
echo "ok: $trials kills; ledger verifies with $events events; client reported $received uploads"
[ "$events" -gt "$calibrated" ] ||
    fail "no killed client ever charged its ledger: the kills tested nothing"
