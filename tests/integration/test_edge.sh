#!/bin/sh
# examples/edge_client.c against a real coordinator over TLS: it completes
# its rounds through the public API and its own poll() loop, and once its
# ledger's budget (epsilon 4) would be exceeded it refuses the next task,
# tells the coordinator why, and stops with ROOST_EBUDGET. The ledger file
# carries the spent budget across runs.
#
# usage: test_edge.sh ROOST EDGE_CLIENT
set -u
roost="$1"; edge="$2"
work=$(mktemp -d)
serve_pid=""
cleanup() { [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -n 20 "$work/serve.log"; exit 1; }
cd "$work" || exit 1
"$roost" pki init --dir ca >/dev/null || fail "pki"
"$roost" pki server --ca-dir ca --name localhost,127.0.0.1 --out server >/dev/null
"$roost" pki request --cn edge --out edge >/dev/null
"$roost" pki sign --ca-dir ca --csr edge.csr --out edge.crt >/dev/null
cat >edge.conf <<CONF
[server]
listen = tcp://127.0.0.1:*
ca_file = ca/ca.crt
cert_file = server.crt
key_file = server.key
crl_file = ca/ca.crl
state_dir = $work
database = edge-coord.db
[round]
clients_per_round = 1
[dp]
enabled = true
sampling_rate = 0.05
CONF
"$roost" serve --config edge.conf >serve.log 2>&1 &
serve_pid=$!
endpoint=""
for _ in $(seq 100); do
    endpoint=$(sed -n 's/.*listening on \(tcp:[^;]*\);.*/\1/p' serve.log | head -n 1)
    [ -n "$endpoint" ] && break
    sleep 0.1
done
[ -n "$endpoint" ] || fail "coordinator did not start"

# Run 1: three rounds (max_rounds 3 in the example) within the budget.
timeout 300 "$edge" "$endpoint" ca/ca.crt edge.crt edge.key ledger.db >run1.out 2>&1 ||
    { cat run1.out; fail "first run did not finish its 3 rounds"; }
[ "$(grep -c '^edge: accepted' run1.out)" -eq 3 ] ||
    { cat run1.out; fail "want 3 accepted rounds"; }

# Run 2: the same ledger; the budget runs out, the task is declined.
timeout 300 "$edge" "$endpoint" ca/ca.crt edge.crt edge.key ledger.db >run2.out 2>&1
rc=$?
[ $rc -ne 0 ] || { cat run2.out; fail "second run should stop on the budget"; }
grep -q "ROOST_EBUDGET (privacy budget exceeded" run2.out ||
    { cat run2.out; fail "no budget message"; }
grep -q "declined round" serve.log || fail "coordinator was not told"
spent=$(sed -n 's/.*epsilon spent \([0-9.]*\) of 4.000.*/\1/p' run2.out)
awk -v e="$spent" 'BEGIN { exit !(e > 0 && e <= 4) }' ||
    fail "spent epsilon $spent not within the budget"
echo "ok: edge client ran 3 rounds, then refused at epsilon $spent of 4"
