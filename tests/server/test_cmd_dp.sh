#!/bin/sh
# `roost dp`: the Opacus reference value, the calibration round trip, JSON
# output, the figures charged for the noise sampler (--params), and exit
# status 2 with a message for every kind of bad input.
set -u
roost="$1"
fail=0
out=/tmp/roost_cmd_dp_out.$$
. "$(dirname "$0")/checks.sh"
check 0 "epsilon" "$roost" dp epsilon --q 0.04 --sigma 1.5 --steps 2250 --delta 1e-5
expect_text "Opacus value" "epsilon 7.32911"
expect_text "best order" "order 3.9"
check 0 "epsilon --json" "$roost" dp epsilon --json --q 0.04 --sigma 1.5 --steps 2250 --delta 1e-5
expect_text "json epsilon" '"epsilon": 7.329111171'
check 0 "sigma" "$roost" dp sigma --q 0.04 --steps 2250 --epsilon 7.32911117143 --delta 1e-5
expect_text "calibrated sigma" "sigma 1.50000"
check 0 "sigma --json" "$roost" dp sigma --q 0.04 --steps 2250 --epsilon 3 --delta 1e-5 --json
expect_text "json sigma" '"sigma": 2.955'
check 0 "dp --help" "$roost" dp --help
check 0 "dp epsilon --help" "$roost" dp epsilon --help
check 2 "no subcommand" "$roost" dp
check 2 "unknown subcommand" "$roost" dp frobnicate
check 2 "unknown flag" "$roost" dp epsilon --q 0.1 --sigma 1 --steps 1 --delta 1e-5 --frob
expect_text "names the flag" "unknown flag '--frob'"
check 2 "missing flag" "$roost" dp epsilon --q 0.1 --steps 1 --delta 1e-5
expect_text "names the missing flag" "\-\-sigma is required"
check 2 "missing value" "$roost" dp epsilon --q
check 2 "bad number" "$roost" dp epsilon --q x --sigma 1 --steps 1 --delta 1e-5
check 2 "q out of range" "$roost" dp epsilon --q 1.5 --sigma 1 --steps 1 --delta 1e-5
expect_text "names q" "q = 1.5"
check 2 "delta out of range" "$roost" dp epsilon --q 0.1 --sigma 1 --steps 1 --delta 1
check 2 "negative steps" "$roost" dp epsilon --q 0.1 --sigma 1 --steps -3 --delta 1e-5
check 2 "sigma zero" "$roost" dp epsilon --q 0.1 --sigma 0 --steps 1 --delta 1e-5
check 2 "unreachable target" "$roost" dp sigma --q 0.01 --steps 10 --epsilon 1e-4 --delta 1e-5
expect_text "says unreachable" "unreachable"
check 1 "no finite epsilon" "$roost" dp epsilon --q 0.1 --sigma 1e-300 --steps 1 --delta 1e-5
# --params: the figures a device enforces, charged for the noise sampler
# over P x T draws, slightly above the ideal Gaussian's.
check 0 "epsilon --params" "$roost" dp epsilon --q 0.04 --sigma 1.5 --steps 2250 \
    --delta 1e-5 --params 199210 --json
expect_text "json draws" '"noise_draws": 448222500'
charged=$(sed 's/.*"epsilon": \([0-9.e+-]*\).*/\1/' "$out")
awk -v e="$charged" 'BEGIN { exit !(e > 7.329112 && e < 7.33) }' ||
    { echo "FAIL: charged epsilon $charged not just above 7.329111"; fail=1; }
check 0 "sigma --params" "$roost" dp sigma --q 0.0533333 --steps 76 --epsilon 8 \
    --delta 1e-5 --params 199210
expect_text "sigma charged" "charged for the noise sampler over 1.514e+07 draws"
# The tail term grows like e^epsilon: logreg (7850 parameters) at epsilon
# 30 cannot reach delta 1e-5, and below a certain sigma no epsilon is valid.
check 1 "sigma --params unreachable" "$roost" dp sigma --q 0.1 --steps 10 \
    --epsilon 30 --delta 1e-5 --params 1500
expect_text "names the reachable epsilon" "reachable only for epsilon below"
check 1 "epsilon --params past the tail limit" "$roost" dp epsilon \
    --q 0.0533333 --sigma 0.3 --steps 19 --delta 1e-5 --params 7850
expect_text "says no epsilon" "no epsilon up to 1000 is valid"
# Far above the cap the charged search returns only a lower bound, which
# must not be printed as the epsilon.
check 1 "epsilon --params above the cap" "$roost" dp epsilon --q 0.5 \
    --sigma 0.2 --steps 100000 --delta 1e-5 --params 1000
expect_text "says above the cap" "above 1000 (at least"
check 2 "--clip without --params" "$roost" dp epsilon --q 0.1 --sigma 1 \
    --steps 10 --delta 1e-5 --clip 2
check 2 "--params 0" "$roost" dp sigma --q 0.1 --steps 10 --epsilon 3 \
    --delta 1e-5 --params 0
check 2 "--clip 0" "$roost" dp epsilon --q 0.1 --sigma 1 --steps 10 \
    --delta 1e-5 --params 10 --clip 0
expect_text "names clip" "clip"
# dp ledger: a real ledger (the fuzz seed, three events) verifies; a
# missing, corrupt or tampered one exits 1 and says why.
seed="$(dirname "$0")/../fuzz/corpus/ledger/three_events.db"
tmp=$(mktemp -d)
cp "$seed" "$tmp/ledger.db"
check 0 "ledger" "$roost" dp ledger --path "$tmp/ledger.db"
expect_text "ledger verified" "verified, 3 events"
check 0 "ledger --json" "$roost" dp ledger --path "$tmp/ledger.db" --json
expect_text "json events" '"events": 3'
check 1 "missing ledger" "$roost" dp ledger --path "$tmp/nope.db"
expect_text "says missing" "missing"
printf 'garbage' >"$tmp/bad.db"
check 1 "corrupt ledger" "$roost" dp ledger --path "$tmp/bad.db"
cp "$seed" "$tmp/cut.db"
if command -v sqlite3 >/dev/null 2>&1; then
    sqlite3 "$tmp/cut.db" "DELETE FROM events WHERE seq = 3"
    check 1 "tampered ledger" "$roost" dp ledger --path "$tmp/cut.db"
    expect_text "says altered" "refusing to train"
fi
check 2 "ledger without --path" "$roost" dp ledger
rm -rf "$tmp"
rm -f "$out"
exit $fail
