#!/bin/sh
# bench_dpsgd.sh - Roost's DP-SGD next to Roost without DP and next to the
# PyTorch 1.13 per-example methods, same run.
#
#   sh tests/bench/bench_dpsgd.sh BUILD_DIR [REPS] [SECONDS]
#
# For the MLP 784-200-200-10 at expected batch 64 and 256, runs bench_dpsgd
# (Roost: plain SGD as non-DP local training runs it, on shuffled batches
# gathered from the dataset, and on contiguous slices without a gather;
# then a whole DP-SGD step with Poisson sampling, per-example clipping,
# secure noise and the update) and torch_dpsgd.py
# (PyTorch: functorch vmap, the ghost-norm trick, plain SGD) alternately
# REPS times (default 5), each part for SECONDS of timed steps (default 2),
# all with one thread, and prints the medians in samples/s with the ratios
# the issue sets targets for: Roost DP / Roost plain (gathered batches,
# target >= 0.8 at batch 256; the ratio to the contiguous step is printed
# too) and Roost DP / the fastest PyTorch DP method (target >= 1.5
# at batch 64). Needs /usr/bin/python3 with torch (apt-get install
# python3-torch).
set -eu
build=${1:?usage: bench_dpsgd.sh BUILD_DIR [REPS] [SECONDS]}
reps=${2:-5}
secs=${3:-2}
here=$(cd "$(dirname "$0")" && pwd)
bench="$build/tests/bench/bench_dpsgd"
[ -x "$bench" ] || { echo "bench_dpsgd.sh: $bench not built" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for batch in 64 256; do
    i=0
    while [ "$i" -lt "$reps" ]; do
        "$bench" --batch "$batch" --seconds "$secs" --reps 1 --json >>"$out"
        /usr/bin/python3 "$here/torch_dpsgd.py" --batch "$batch" \
            --seconds "$secs" >>"$out"
        i=$((i + 1))
    done
done
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 - "$out" "$reps" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def med(impl, batch, key="samples_per_s"):
    v = [r[key] for r in rows if r["impl"] == impl and r["batch"] == batch]
    return statistics.median(v)
print(f"MLP 784-200-200-10, 1 thread, samples/s, medians of {sys.argv[2]} "
      "alternating runs")
print(f"{'batch':>5} {'roost DP':>9} {'roost':>9} {'torch vmap':>10}"
      f" {'torch ghost':>11} {'torch':>9} {'DP/plain':>8} {'(contig)':>8}"
      f" {'DP/best torch DP':>16} {'noise ms':>8} {'M draws/s':>9}")
for batch in (64, 256):
    dp = med("roost", batch)
    plain = med("roost", batch, "plain_samples_per_s")
    contig = med("roost", batch, "plain_contiguous_samples_per_s")
    noise = med("roost", batch, "noise_ms")
    params = rows[0]["params"]
    vm = med("torch-vmap", batch)
    gh = med("torch-ghost", batch)
    tp = med("torch-plain", batch)
    print(f"{batch:5d} {dp:9.0f} {plain:9.0f} {vm:10.0f} {gh:11.0f}"
          f" {tp:9.0f} {dp / plain:8.2f} {dp / contig:8.2f}"
          f" {dp / max(vm, gh):16.2f}"
          f" {noise:8.3f} {params / noise / 1e3:9.0f}")
PY
