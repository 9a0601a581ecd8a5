#!/bin/sh
# bench_train.sh - Roost's training engine next to PyTorch, same run.
#
#   sh tests/bench/bench_train.sh BUILD_DIR [REPS] [SECONDS]
#
# For the MLP at batch 10, 32 and 64 and the CNN at batch 32, runs
# bench_train (Roost) and torch_train.py (PyTorch 1.13 from Debian's
# python3-torch) alternately REPS times (default 5), each for SECONDS of
# timed steps (default 2), both with one BLAS thread, and prints the
# medians: samples/s of each, their ratio, and Roost's GFLOP/s next to a
# plain single-threaded sgemm of the same shapes (measured by bench_train in
# alternating windows). Alternating runs keep the comparison fair when other
# work shares the cores. Needs /usr/bin/python3 with torch
# (apt-get install python3-torch).
set -eu
build=${1:?usage: bench_train.sh BUILD_DIR [REPS] [SECONDS]}
reps=${2:-5}
secs=${3:-2}
here=$(cd "$(dirname "$0")" && pwd)
bench="$build/tests/bench/bench_train"
[ -x "$bench" ] || { echo "bench_train.sh: $bench not built" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for cfg in "mlp 10" "mlp 32" "mlp 64" "cnn 32"; do
    set -- $cfg
    i=0
    while [ "$i" -lt "$reps" ]; do
        "$bench" --model "$1" --batch "$2" --seconds "$secs" --json >>"$out"
        /usr/bin/python3 "$here/torch_train.py" --model "$1" --batch "$2" \
            --seconds "$secs" >>"$out"
        i=$((i + 1))
    done
done
/usr/bin/python3 - "$out" "$reps" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print(f"medians of {sys.argv[2]} alternating runs, 1 BLAS thread")
print(f"{'model':6} {'batch':>5} {'roost/s':>9} {'torch/s':>9} {'ratio':>6}"
      f" {'GFLOP/s':>8} {'sgemm':>7} {'of sgemm':>8}")
for model, batch in (("mlp", 10), ("mlp", 32), ("mlp", 64), ("cnn", 32)):
    r = [x for x in rows if x["impl"] == "roost" and x["model"] == model
         and x["batch"] == batch]
    t = [x for x in rows if x["impl"] == "torch" and x["model"] == model
         and x["batch"] == batch]
    rs = statistics.median(x["samples_per_s"] for x in r)
    ts = statistics.median(x["samples_per_s"] for x in t)
    gf = statistics.median(x["gflops"] for x in r)
    sg = statistics.median(x["sgemm_gflops"] for x in r)
    frac = statistics.median(x["gflops"] / x["sgemm_gflops"] for x in r)
    print(f"{model:6} {batch:5d} {rs:9.0f} {ts:9.0f} {rs / ts:6.2f}"
          f" {gf:8.1f} {sg:7.1f} {100 * frac:7.0f}%")
PY
