#!/bin/sh
# bench_sim.sh - roost sim at scale, next to a plain PyTorch FedAvg loop
# measured in the same run.
#
#   sh tests/bench/bench_sim.sh BUILD_DIR [ROUNDS] [REPS]
#
# 1. Speed: REPS times (default 5), alternately, `roost sim --no-dp` and
#    tests/bench/torch_fedavg.py on the same job: Fashion-MNIST, IID
#    partition, 100 clients, 10 per round, MLP 784-200-200-10, E = 1,
#    B = 32, lr 0.05, ROUNDS rounds (default 20), evaluation on the 10,000
#    test images after every round in both. Each uses the machine as it
#    does by default (roost: one worker thread per core, one BLAS thread
#    each; PyTorch: its default intra-op thread count, printed), and
#    PyTorch once more with one intra-op thread per core. Then, evaluating
#    only after the last round (--eval-every ROUNDS), which times training
#    and aggregation alone: roost and PyTorch by default again, roost with
#    --threads 1 (one training thread: how its default scales to the
#    cores), and PyTorch with OPENBLAS_NUM_THREADS=1 (its BLAS keeps its
#    own pool of one thread per core, which the intra-op count does not
#    govern; at one thread its pace is steady). Prints the median seconds
#    per round (rounds after the first), the ratios, the accuracy each
#    reached after ROUNDS rounds, each one's peak RSS, and each run's
#    figure: a median hides a bimodal pace.
# 2. Memory per idle virtual client: peak RSS of `roost sim --no-dp` with
#    1,000 and with 10,000 clients (10 per round, 1 round; 3 runs each,
#    medians); (difference) / 9,000. Both partition the same 60,000
#    training examples, so the data indices (4 bytes per example) are the
#    same total in both runs and cancel out of the difference.
# 3. Scale: 10,000 clients, 100 per round, 3 rounds, with DP (the default)
#    and with --no-dp: completes or not, wall time, peak RSS.
#
# Timings on a shared machine are noisy; alternating runs keep the
# comparison fair. Needs /usr/bin/python3 with torch (python3-torch) and
# /usr/bin/time.
set -eu
build=${1:?usage: bench_sim.sh BUILD_DIR [ROUNDS] [REPS]}
rounds=${2:-20}
reps=${3:-5}
here=$(cd "$(dirname "$0")" && pwd)
roost="$build/server/roost"
[ -x "$roost" ] || { echo "bench_sim.sh: $roost not built" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cores=$(nproc 2>/dev/null || echo 1)
job="--clients 100 --per-round 10 --local-epochs 1 --batch 32 --lr 0.05"

# --- 1. speed and accuracy against PyTorch -------------------------------
i=0
while [ "$i" -lt "$reps" ]; do
    # shellcheck disable=SC2086
    /usr/bin/time -f '{"impl": "roost-time", "peak_rss_kib": %M}' \
        -o "$tmp/time" "$roost" sim --no-dp $job --rounds "$rounds" \
        --seed $((i + 1)) --json --quiet --db "$tmp/sim.db" --overwrite \
        >"$tmp/roost.$i" 2>/dev/null
    cat "$tmp/time" >>"$tmp/roost.$i"
    # shellcheck disable=SC2086
    /usr/bin/python3 "$here/torch_fedavg.py" $job --rounds "$rounds" \
        --seed $((i + 1)) >"$tmp/torch.$i"
    # PyTorch again with one intra-op thread per core, in case its default
    # leaves cores idle (Debian's 1.13 defaults to 1 thread on some hosts).
    # shellcheck disable=SC2086
    /usr/bin/python3 "$here/torch_fedavg.py" $job --rounds "$rounds" \
        --seed $((i + 1)) --threads "$cores" >"$tmp/torchn.$i"
    # Both again evaluating only after the last round: the training and
    # aggregation themselves, without the 10,000-image test pass that
    # otherwise costs as much as training the round's 10 clients.
    # shellcheck disable=SC2086
    /usr/bin/time -f '{"impl": "roost-time", "peak_rss_kib": %M}' \
        -o "$tmp/time" "$roost" sim --no-dp $job --rounds "$rounds" \
        --eval-every "$rounds" --seed $((i + 1)) --json --quiet \
        --db "$tmp/sim.db" --overwrite >"$tmp/rooste.$i" 2>/dev/null
    cat "$tmp/time" >>"$tmp/rooste.$i"
    # And roost on one worker thread: its speed per core, against the
    # PyTorch loop's one thread, and how the default scales to the cores.
    # shellcheck disable=SC2086
    /usr/bin/time -f '{"impl": "roost-time", "peak_rss_kib": %M}' \
        -o "$tmp/time" "$roost" sim --no-dp $job --rounds "$rounds" \
        --eval-every "$rounds" --threads 1 --seed $((i + 1)) --json --quiet \
        --db "$tmp/sim.db" --overwrite >"$tmp/rooste1.$i" 2>/dev/null
    cat "$tmp/time" >>"$tmp/rooste1.$i"
    # shellcheck disable=SC2086
    /usr/bin/python3 "$here/torch_fedavg.py" $job --rounds "$rounds" \
        --eval-every "$rounds" --seed $((i + 1)) >"$tmp/torche.$i"
    # PyTorch's BLAS (OpenBLAS) runs its own pool of one thread per core
    # whatever the intra-op count; its default pace is bimodal here (see
    # docs/benchmarks.md). Once more with that pool at one thread: steady.
    # shellcheck disable=SC2086
    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 "$here/torch_fedavg.py" $job \
        --rounds "$rounds" --eval-every "$rounds" --seed $((i + 1)) \
        >"$tmp/torche1.$i"
    i=$((i + 1))
done

# --- 2. memory per idle virtual client ------------------------------------
for i in 1 2 3; do
    for n in 1000 10000; do
        /usr/bin/time -f "$n %M" -a -o "$tmp/mem" "$roost" sim --no-dp \
            --clients "$n" --per-round 10 --rounds 1 --json --quiet \
            --db "$tmp/mem.db" --overwrite >/dev/null 2>&1
    done
done

# --- 3. 10,000 clients, 100 per round, 3 rounds ---------------------------
for mode in dp no-dp; do
    flag=
    [ "$mode" = no-dp ] && flag=--no-dp
    if /usr/bin/time -f "%e %M" -o "$tmp/scale.$mode" "$roost" sim $flag \
        --clients 10000 --per-round 100 --rounds 3 --json --quiet \
        --db "$tmp/scale.db" --overwrite >"$tmp/scale.$mode.json" \
        2>"$tmp/scale.$mode.err"; then
        echo ok >>"$tmp/scale.$mode"
    else
        echo failed >>"$tmp/scale.$mode"
    fi
done

/usr/bin/python3 - "$tmp" "$reps" "$rounds" "$cores" <<'PY'
import json, os, statistics, sys
tmp, reps, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cores = int(sys.argv[4])
def rows(path):
    return [json.loads(l) for l in open(path) if l.startswith("{")]
def summary(path):
    rr = rows(path)
    s = [x for x in rr if x.get("impl") == "torch"]
    if s:
        s = s[0]
        return s["median_round_s"], s["accuracy"], s["peak_rss_kib"], \
            s["threads"]
    per = [x for x in rr if "round" in x]
    rss = [x for x in rr if x.get("impl") == "roost-time"][0]["peak_rss_kib"]
    return (statistics.median(x["seconds"] for x in per[1:] or per),
            per[-1]["accuracy"], rss, 0)
print(f"1. FedAvg, 100 clients, 10 per round, MLP, E=1, B=32, lr 0.05, "
      f"{rounds} rounds, median of {reps} alternating runs")
print(f"   {'impl':28} {'s/round':>8} {'accuracy':>9} {'peak RSS':>9}"
      f" {'roost faster':>12}   each run's s/round, sorted")
med = {}
for tag in ("roost", "torch", "torchn", "rooste", "rooste1", "torche",
            "torche1"):
    got = [summary(os.path.join(tmp, f"{tag}.{i}")) for i in range(reps)]
    med[tag] = [statistics.median(g[k] for g in got) for k in range(3)]
    med[tag].append(got[0][3])
    med[tag].append(sorted(g[0] for g in got))
for tag in ("roost", "torch", "torchn", "rooste", "torche", "torche1"):
    if tag == "rooste":
        print(f"   evaluating only after round {rounds} (both):")
    sec, acc, rss, thr, runs = med[tag]
    base = "rooste" if tag[-1] in "e1" else "roost"
    name = "roost sim" if tag.startswith("roost") else \
        "pytorch (%d thread%s%s)" % (thr, "s"[:thr != 1],
                                     {"torchn": "", "torche1": ", BLAS 1"}
                                     .get(tag, ", default"))
    ratio = "" if tag == base else f"{sec / med[base][0]:11.2f}x"
    print(f"   {name:28} {sec:8.3f} {100 * acc:8.2f}% {rss / 1024:5.0f} MiB"
          f" {ratio:>12}   runs {' '.join(f'{r:.3f}' for r in runs)}")
one, many = med["rooste1"][0], med["rooste"][0]
print(f"   roost sim --threads 1       {one:8.3f}   (one training thread; the"
      f" protocol runs beside it on the main thread): {cores} threads are"
      f" {one / many:.2f}x one")
mem = {}
for line in open(os.path.join(tmp, "mem")):
    n, kib = line.split()
    mem.setdefault(int(n), []).append(int(kib))
a, b = statistics.median(mem[1000]), statistics.median(mem[10000])
print("2. memory per idle virtual client (peak RSS, median of 3)")
print(f"   1,000 clients {a/1024:.1f} MiB, 10,000 clients {b/1024:.1f} MiB:"
      f" {(b - a) * 1024 / 9000:.0f} bytes per client"
      f" ({(b - a) / 9000:.2f} KiB; target <= 16 KiB)")
print("3. 10,000 clients, 100 per round, 3 rounds")
for mode in ("dp", "no-dp"):
    lines = open(os.path.join(tmp, f"scale.{mode}")).read().split()
    el, kib, status = lines[-3], lines[-2], lines[-1]
    js = rows(os.path.join(tmp, f"scale.{mode}.json"))
    last = js[-1] if js else {}
    print(f"   {mode:6}: {status}, {len(js)} rounds, {el} s,"
          f" peak RSS {int(kib)/1024:.1f} MiB, last accuracy"
          f" {last.get('accuracy')}, epsilon_max {last.get('epsilon_max')}")
PY
