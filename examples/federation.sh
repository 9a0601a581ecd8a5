#!/bin/sh
# A federation shaped like a deployment: separate `roost serve` and
# `roost client` processes talking TLS 1.3 over loopback, DP-SGD on
# Fashion-MNIST. (README command 1, examples/demo.sh, runs the same
# protocol and TLS inside one `roost sim --tls` process.)
#
# Installs the Debian packages that are missing, builds Roost, makes a
# CA and certificates with `roost pki`, starts a coordinator (`roost
# serve`) and ROOST_DEMO_CLIENTS `roost client` processes (default 10) on
# loopback, and prints each round's held-out accuracy and the largest
# epsilon any client has spent. Everything lands in build/federation/: the
# SQLite record, an HTML report, the certificates and the logs.
set -eu
clients=${ROOST_DEMO_CLIENTS:-10}
rounds=${ROOST_DEMO_ROUNDS:-10}
. "$(dirname "$0")/lib.sh"
build_roost_into federation
echo "==> certificates: a CA, the coordinator, $clients devices ($demo)"
"$roost" pki init --dir ca >/dev/null
"$roost" pki server --ca-dir ca --name localhost --out server >/dev/null
i=0
while [ $i -lt "$clients" ]; do
    "$roost" pki request --cn "device-$i" --out "device-$i" >/dev/null
    "$roost" pki sign --ca-dir ca --csr "device-$i.csr" \
        --out "device-$i.crt" >/dev/null
    i=$((i + 1))
done

cat >roost.conf <<CONF
# The demo federation: DP-SGD on every client (noise multiplier 1, clip 1,
# Poisson sampling q = 0.02 of each device's 6000 examples), FedAvg over
# half the devices per round, global model evaluated on the test set.
[server]
listen = tcp://127.0.0.1:*
ca_file = ca/ca.crt
cert_file = server.crt
key_file = server.key
crl_file = ca/ca.crl
state_dir = $demo
database = roost.db
[model]
spec = mlp
[round]
clients_per_round = $((clients / 2))
max_rounds = $rounds
timeout = 300s
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

"$roost" serve --config roost.conf >serve.log 2>&1 &
serve_pid=$!
pids=""
trap 'kill $pids $serve_pid 2>/dev/null || true' EXIT INT TERM
endpoint=""
n=0
while [ -z "$endpoint" ]; do
    endpoint=$(sed -n 's/.*listening on \(tcp:[^;]*\);.*/\1/p' serve.log |
        head -n 1)
    n=$((n + 1))
    if [ $n -gt 100 ] || ! kill -0 "$serve_pid" 2>/dev/null; then
        cat serve.log; echo "roost serve did not start" >&2; exit 1
    fi
    [ -z "$endpoint" ] && sleep 0.1
done
echo "==> coordinator on $endpoint; starting $clients clients (DP budget"\
     "epsilon 8 each, delta 1e-5)"
i=0
while [ $i -lt "$clients" ]; do
    "$roost" client --connect "$endpoint" --server-name localhost \
        --ca ca/ca.crt --cert "device-$i.crt" --key "device-$i.key" \
        --ledger "ledger-$i.db" --create-ledger --epsilon 8 \
        --shard "$i/$clients" >"client-$i.log" 2>&1 &
    pids="$pids $!"
    i=$((i + 1))
done

# Follow the coordinator's round lines until it stops after max_rounds.
start=$(date +%s)
shown=0
while :; do
    alive=0
    kill -0 "$serve_pid" 2>/dev/null && alive=1
    grep 'round [0-9]* committed in\|round [0-9]* failed in' serve.log |
        sed -n "$((shown + 1)),\$p" >new.txt || true
    while IFS= read -r line; do
        echo "$line" | awk -v t=$(( $(date +%s) - start )) '{
            round = $4; acc = "-"; eps = "-"; upd = "-";
            for (i = 1; i <= NF; i++) {
                if ($i == "accuracy") acc = $(i + 1);
                if ($i == "reported") eps = $(i + 1);
                if ($i == "accepted,") upd = $(i - 1);
            }
            sub(/;$/, "", acc); sub(/;$/, "", eps);
            if (acc != "-") acc = sprintf("%.2f%%", 100 * acc);
            printf "round %2d/%s  accuracy %-7s  epsilon (max over clients) %-7s  updates %s  [%ds]\n",
                round, "'"$rounds"'", acc, eps, upd, t }'
        shown=$((shown + 1))
    done <new.txt
    [ $alive -eq 1 ] || break
    sleep 1
done
wait "$serve_pid" || { tail -n 20 serve.log; exit 1; }
"$roost" report --db roost.db -o report.html >/dev/null
"$roost" audit --db roost.db
echo "==> done in $(( $(date +%s) - start ))s. Report: $demo/report.html"
echo "    record: $demo/roost.db (roost status --db ...), logs: $demo/*.log"
