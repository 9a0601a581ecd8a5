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
. "$(dirname "$0")/lib.sh"
cd "$work" || exit 1
make_pki 1
{ server_section "tcp://127.0.0.1:*" edge-coord.db; cat <<CONF
[round]
clients_per_round = 1
[dp]
enabled = true
sampling_rate = 0.05
CONF
} >edge.conf
start_serve edge.conf serve.log

# Run 1: three rounds (max_rounds 3 in the example) within the budget.
timeout 300 "$edge" "$endpoint" ca/ca.crt dev0.crt dev0.key ledger.db >run1.out 2>&1 ||
    { cat run1.out; fail "first run did not finish its 3 rounds"; }
[ "$(grep -c '^edge: accepted' run1.out)" -eq 3 ] ||
    { cat run1.out; fail "want 3 accepted rounds"; }

# Run 2: the same ledger; the budget runs out, the task is declined.
timeout 300 "$edge" "$endpoint" ca/ca.crt dev0.crt dev0.key ledger.db >run2.out 2>&1
rc=$?
[ $rc -ne 0 ] || { cat run2.out; fail "second run should stop on the budget"; }
grep -q "ROOST_EBUDGET (privacy budget exceeded" run2.out ||
    { cat run2.out; fail "no budget message"; }
grep -q "declined round" serve.log || fail "coordinator was not told"
spent=$(sed -n 's/.*epsilon spent \([0-9.]*\) of 4.000.*/\1/p' run2.out)
awk -v e="$spent" 'BEGIN { exit !(e > 0 && e <= 4) }' ||
    fail "spent epsilon $spent not within the budget"
echo "ok: edge client ran 3 rounds, then refused at epsilon $spent of 4"
