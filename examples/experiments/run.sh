#!/bin/sh
# run.sh - run FedAvg experiment presets with roost sim and tabulate them.
#
#   sh examples/experiments/run.sh [options] [quick|all|TAG|NAME|PATTERN ...]
#
# Presets are the lines of presets.tsv (next to this script): a name, a tag
# list and the roost sim flags. "all" runs every preset; a tag (quick, the
# default; fedavg, iid, shards, dp, dp1, dp3, dp8, target) the presets
# carrying it; anything else is a preset name or a shell pattern over names
# (quote it: 'dp3-*'). Each run's per-round JSON goes to OUT/NAME.jsonl
# and its stderr to OUT/NAME.err; the summary table is written to
# OUT/results.md and printed.
#
# Options:
#   -o DIR      output directory (default: ./experiments-out)
#   -b BIN      roost binary (default: $ROOST, else roost on PATH, else
#               the in-tree build/release/server/roost)
#   -t ACC      target accuracy for "rounds to target", in % (default 85)
#   -r R        override every preset's --rounds
#   -s SEED     pass --seed SEED (reproducible but INSECURE DP noise and
#               selection; fine for experiments, never for deployments)
#   -x FLAGS    extra roost sim flags appended to every run (last wins)
#   -n          list the selected presets and their commands, run nothing
#   -T          only rebuild OUT/results.md from existing .jsonl files
#
# Runs are sequential, under nice -n 10: each already uses every core.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
presets="$here/presets.tsv"
out=./experiments-out
bin=${ROOST:-}
target=85
rounds=
seed=
extra=
dry=0
table_only=0
while getopts o:b:t:r:s:x:nTh opt; do
    case $opt in
    o) out=$OPTARG ;;
    b) bin=$OPTARG ;;
    t) target=$OPTARG ;;
    r) rounds=$OPTARG ;;
    s) seed=$OPTARG ;;
    x) extra=$OPTARG ;;
    n) dry=1 ;;
    T) table_only=1 ;;
    h)
        sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || set -- quick

if [ -z "$bin" ]; then
    if command -v roost >/dev/null 2>&1; then
        bin=$(command -v roost)
    else
        bin="$here/../../build/release/server/roost"
    fi
fi
if [ "$dry" = 0 ] && [ "$table_only" = 0 ] && [ ! -x "$bin" ]; then
    echo "run.sh: no roost binary at $bin (build it, or pass -b BIN)" >&2
    exit 1
fi

# The flags shared by every preset: the "@common" line of presets.tsv.
common=$(awk '$1 == "@common" { $1 = ""; print; exit }' "$presets")

# Select preset names, in file order, without duplicates.
selected=$(awk -v sel="$*" '
    BEGIN { n = split(sel, want, " ") }
    /^[[:space:]]*(#|$)/ || $1 == "@common" { next }
    {
        for (i = 1; i <= n; i++) {
            w = want[i]
            if (w == "all" || w == $1 ||
                index("," $2 ",", "," w ",") > 0) { print $1; next }
            # Shell-style pattern: turn * and ? into a regular expression.
            if (w ~ /[*?]/) {
                re = w; gsub(/\./, "\\.", re); gsub(/\*/, ".*", re)
                gsub(/\?/, ".", re)
                if ($1 ~ ("^" re "$")) { print $1; next }
            }
        }
    }' "$presets")
if [ -z "$selected" ] && [ "$table_only" = 0 ]; then
    echo "run.sh: no preset matches: $*" >&2
    echo "presets:" >&2
    awk '!/^[[:space:]]*(#|$)/ && $1 != "@common" { print "  " $1 }' \
        "$presets" >&2
    exit 2
fi

mkdir -p "$out"
if [ "$table_only" = 0 ]; then
    for name in $selected; do
        flags=$(awk -v n="$name" '$1 == n { $1 = ""; $2 = ""; print; exit }' \
            "$presets")
        [ -n "$rounds" ] && flags="$flags --rounds $rounds"
        [ -n "$seed" ] && flags="$flags --seed $seed"
        cmd="$bin sim $common $flags $extra --json --quiet"
        cmd="$cmd --db $out/$name.db --overwrite"
        # shellcheck disable=SC2086 # flags are deliberately word-split
        echo "$name:" $cmd
        [ "$dry" = 1 ] && continue
        # shellcheck disable=SC2086
        if ! nice -n 10 $cmd >"$out/$name.jsonl" 2>"$out/$name.err"; then
            echo "run.sh: $name failed (see $out/$name.err):" >&2
            tail -n 3 "$out/$name.err" >&2
        fi
        # The flags, for the table.
        printf '%s\n' "$common $flags $extra" | tr -s ' ' |
            sed -e 's/^ //' -e 's/ $//' >"$out/$name.flags"
    done
    [ "$dry" = 1 ] && exit 0
fi

# One row per OUT/*.jsonl (earlier runs in OUT stay in the table): final
# and best accuracy, the first round at or above the target, the largest
# epsilon spent by any client, and the mean seconds per round (wall time on
# this machine, evaluation included). Rounds are training rounds, counted
# in order: federated evaluation rounds (--fed-eval, "kind":"eval") take
# record ids of their own, and their time is counted in the wall time.
{
    echo "| preset | rounds | final acc % | best acc % (round) |" \
        "rounds to ${target}% | epsilon_max | s/round | flags |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    for f in "$out"/*.jsonl; do
        [ -e "$f" ] || continue
        name=$(basename "$f" .jsonl)
        flags=$(cat "$out/$name.flags" 2>/dev/null || true)
        awk -v name="$name" -v target="$target" -v flags="$flags" '
            function field(k,    r) {
                if (match($0, "\"" k "\":[^,}]*")) {
                    r = substr($0, RSTART + length(k) + 3,
                               RLENGTH - length(k) - 3)
                    return r
                }
                return "null"
            }
            /^\{/ && /"kind":"eval"/ { secs += field("seconds") + 0; next }
            /^\{/ {
                n++
                acc = field("accuracy"); eps = field("epsilon_max")
                secs += field("seconds") + 0
                last_round = n
                if (acc != "null") {
                    final = acc * 100
                    if (!have_best || acc * 100 > best) {
                        best = acc * 100; best_round = last_round
                        have_best = 1
                    }
                    if (reach == "" && acc * 100 >= target)
                        reach = last_round
                }
                if (eps != "null") epsmax = eps
            }
            END {
                if (n == 0) {
                    printf("| %s | 0 | - | - | - | - | - | `%s` |\n",
                           name, flags)
                    exit
                }
                printf("| %s | %d | %.2f | %.2f (%d) | %s | %s | %.2f | `%s` |\n",
                       name, last_round, final, best, best_round,
                       reach == "" ? "not reached" : reach,
                       epsmax == "" ? "no DP" : sprintf("%.3f", epsmax),
                       secs / n, flags)
            }' "$f"
    done
} >"$out/results.md"
cat "$out/results.md"
echo "results: $out/results.md"
