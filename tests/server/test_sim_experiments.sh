#!/bin/sh
# examples/experiments/run.sh's results table, from per-round JSON lines
# as roost sim --json writes them (run.sh -T: table only, nothing run):
# rounds are training rounds counted in order, so federated evaluation
# rounds (--fed-eval, "kind":"eval") do not inflate the round count or
# the rounds to target; and -n lists a tag's presets without running.
set -u
src=${1:?usage: test_sim_experiments.sh SOURCE_DIR}
run="$src/examples/experiments/run.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0

# Two training rounds, each followed by a federated evaluation round.
cat >"$work/fed.jsonl" <<'JSON'
{"round":1,"committed":true,"accuracy":0.800000,"loss":0.5,"epsilon_max":null,"clients":5,"selected":5,"refused":0,"dropped":0,"seconds":1.000}
{"round":2,"kind":"eval","committed":true,"fed_accuracy":0.900000,"fed_loss":0.4,"clients":5,"selected":5,"examples":100,"seconds":3.000}
{"round":3,"committed":true,"accuracy":0.860000,"loss":0.4,"epsilon_max":null,"clients":5,"selected":5,"refused":0,"dropped":0,"seconds":1.000}
{"round":4,"kind":"eval","committed":true,"fed_accuracy":0.900000,"fed_loss":0.4,"clients":5,"selected":5,"examples":100,"seconds":3.000}
JSON
# Three training rounds with DP, the second failed (accuracy null).
cat >"$work/dp.jsonl" <<'JSON'
{"round":1,"committed":true,"accuracy":0.700000,"loss":0.9,"epsilon_max":2.500000,"insecure_rng":false,"clients":5,"selected":5,"refused":0,"dropped":0,"seconds":2.000}
{"round":2,"committed":false,"accuracy":null,"loss":null,"epsilon_max":2.500000,"insecure_rng":false,"clients":0,"selected":5,"refused":0,"dropped":5,"seconds":2.000}
{"round":3,"committed":true,"accuracy":0.750000,"loss":0.8,"epsilon_max":3.000000,"insecure_rng":false,"clients":5,"selected":5,"refused":0,"dropped":0,"seconds":2.000}
JSON
sh "$run" -T -t 85 -o "$work" >"$work/table" 2>&1 ||
    { echo "FAIL: run.sh -T exited $?"; cat "$work/table"; fail=1; }
grep -qF '| fed | 2 | 86.00 | 86.00 (2) | 2 | no DP | 4.00 |' "$work/table" ||
    { echo "FAIL: fed row"; cat "$work/table"; fail=1; }
grep -qF '| dp | 3 | 75.00 | 75.00 (3) | not reached | 3.000 | 2.00 |' \
    "$work/table" || { echo "FAIL: dp row"; cat "$work/table"; fail=1; }

# -n lists the quick presets' commands and runs nothing.
sh "$run" -n -b /bin/false -o "$work/dry" quick >"$work/dry.out" 2>&1 ||
    { echo "FAIL: run.sh -n exited $?"; cat "$work/dry.out"; fail=1; }
[ "$(grep -c ' sim .* --json --quiet' "$work/dry.out")" -eq 3 ] ||
    { echo "FAIL: run.sh -n quick: want 3 commands"; cat "$work/dry.out"
      fail=1; }
[ "$fail" -eq 0 ] && echo "server.sim_experiments: all checks passed"
exit "$fail"
