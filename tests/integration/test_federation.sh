#!/bin/sh
# A real federation over loopback TLS: `roost pki` makes a CA, a server
# certificate and 20 client certificates; `roost serve` coordinates 20
# `roost client` processes (DP-SGD on Fashion-MNIST shards) for 5 FedAvg
# rounds. Checks: every round is committed in SQLite, held-out accuracy
# rises, `roost audit` verifies the chain, and editing one row makes audit
# fail naming that round.
# With FED_EVAL = fed, a federated evaluation round follows every training
# round; only the even-numbered clients allow evaluation, so the others
# decline and are replaced, and every evaluation round must still commit.
#
# usage: test_federation.sh ROOST STORE_FIXTURE [CLIENTS] [ROUNDS] [FED_EVAL]
set -u
roost="$1"; fixture="$2"
n_clients=${3:-20}; rounds=${4:-5}; fed_eval=${5:-}
[ "$rounds" -ge 2 ] || { echo "need at least 2 rounds"; exit 2; }
work=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$work"/serve.log "$work"/c0.log; do
    [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }; done; exit 1; }
. "$(dirname "$0")/lib.sh"
cd "$work" || exit 1

make_pki "$n_clients"

per_round=$(( n_clients / 2 ))
# With evaluation rounds every round waits for all clients, so a
# decliner's place can always go to a client that allows evaluation.
min_avail=0; [ "$fed_eval" = fed ] && min_avail=$n_clients
{ server_section "tcp://127.0.0.1:*" fed.db; cat <<CONF
[round]
clients_per_round = $per_round
min_clients = $per_round
min_available = $min_avail
timeout = 300s
max_rounds = $rounds
[training]
learning_rate = 0.5
[dp]
enabled = true
noise_multiplier = 1.0
clip_norm = 1.0
sampling_rate = 0.02
[evaluation]
enabled = true
CONF
[ "$fed_eval" = fed ] && printf 'federated_every = 1\nfederated_clients = %d\n' \
    $(( n_clients / 2 ))
} >fed.conf
[ -n "${ROOST_FMNIST_DIR:-}" ] &&
    printf 'dataset_dir = %s\n' "$ROOST_FMNIST_DIR" >>fed.conf
"$roost" serve --check-config fed.conf >/dev/null 2>check.err ||
    { cat check.err; fail "config refused"; }

start_serve fed.conf serve.log
pids="$serve_pid"
i=0
while [ $i -lt "$n_clients" ]; do
    "$roost" client --connect "$endpoint" --server-name localhost \
        --ca ca/ca.crt --cert "dev$i.crt" --key "dev$i.key" \
        --ledger "ledger$i.db" --create-ledger --epsilon 50 \
        $( [ "$fed_eval" = fed ] && [ $((i % 2)) -eq 0 ] && echo --allow-eval) \
        --shard "$i/$n_clients" >"c$i.log" 2>&1 &
    pids="$pids $!"
    i=$((i + 1))
done

# The coordinator exits by itself after max_rounds; bound the wait.
waited=0
while kill -0 "$serve_pid" 2>/dev/null; do
    sleep 1; waited=$((waited + 1))
    [ $waited -gt 900 ] && fail "federation did not finish in 900 s"
done
wait "$serve_pid" || fail "roost serve exited non-zero"
echo "federation of $n_clients clients finished $rounds rounds in ${waited}s"

"$roost" status --db fed.db --rounds "$rounds" --json >status.json ||
    fail "roost status"
committed=$(grep -o '"state": "committed"' status.json | wc -l)
# last_round plus every recent round: rounds + 1 matches
[ "$committed" -ge "$rounds" ] || fail "only $committed committed rounds"
accs=$(grep -o 'held-out accuracy [0-9.]*' serve.log | awk '{print $3}')
[ "$(echo "$accs" | wc -l)" -eq "$rounds" ] ||
    fail "want $rounds evaluated rounds in the log, got: $accs"
first=$(echo "$accs" | head -n 1); last=$(echo "$accs" | tail -n 1)
echo "held-out accuracy per round:" $accs
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b > a && b > 0.5) }' ||
    fail "accuracy did not rise: first $first, last $last"
if [ "$fed_eval" = fed ]; then
    evals=$(grep -c 'federated evaluation) committed' serve.log)
    [ "$evals" -eq "$rounds" ] ||
        fail "want $rounds committed federated evaluation rounds, got $evals"
    grep 'federated evaluation) committed' serve.log | tail -n 1 |
        grep -o 'client accuracy [0-9.]*'
    # Only clients that allow it answer: the odd ones declined.
    grep -q 'replaces a client that declined' serve.log ||
        echo "note: no decline needed a replacement this run"
fi

# Every device ledger charged its rounds for the noise sampler: each event
# records its draws (at least the MLP's 199,210 parameters per step), so
# the epsilon it enforces is the charged one.
charged=0
for l in ledger*.db; do
    "$roost" dp ledger --path "$l" --json >ledger.json || fail "dp ledger $l"
    grep -q '"events_without_draws": 0' ledger.json ||
        { cat ledger.json; fail "$l has events without noise draws"; }
    draws=$(sed 's/.*"noise_draws": \([0-9.e+]*\).*/\1/' ledger.json)
    events=$(sed 's/.*"events": \([0-9]*\).*/\1/' ledger.json)
    awk -v d="$draws" -v n="$events" 'BEGIN { exit !(d >= n * 199210) }' ||
        { cat ledger.json; fail "$l records $draws draws for $events events"; }
    [ "$events" -gt 0 ] && charged=$((charged + 1))
done
[ "$charged" -gt 0 ] || fail "no device ledger holds an event"
echo "$charged device ledgers charged for their noise draws"

"$roost" audit --db fed.db || fail "audit of an untouched record"
# The second training round (round 3 when evaluation rounds interleave).
tamper=2; [ "$fed_eval" = fed ] && tamper=3
"$fixture" sql fed.db "UPDATE updates SET l2_norm = l2_norm * 2 WHERE
    round_id = $tamper AND seq = 1" || fail "tampering"
if "$roost" audit --db fed.db >audit.out 2>&1; then
    cat audit.out; fail "audit passed after a row was edited"
fi
grep -q "round $tamper" audit.out ||
    { cat audit.out; fail "audit did not name round $tamper"; }
echo "ok: $rounds rounds over TLS, accuracy $first -> $last, audit catches tampering"
