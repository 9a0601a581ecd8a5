#!/bin/sh
# README quick-start command 1: a small federation with differential
# privacy over TLS on Fashion-MNIST.
#
# Installs the Debian packages that are missing, builds Roost (Release,
# under build/release), and runs `roost sim --tls` with its defaults: 100
# virtual clients, each with its own 600 Fashion-MNIST training images,
# its own certificate and its own privacy budget (epsilon 8 at delta
# 1e-5); 10 per round train the FedAvg paper's MLP with DP-SGD, for 20
# FedAvg rounds, every message carried over TLS 1.3 with mutual
# certificates on loopback TCP. Each round prints the global model's
# accuracy on the 10,000 test images and the largest epsilon any client
# has spent. The SQLite record and an HTML report land in build/demo/.
#
# Extra arguments go to `roost sim` (e.g. --rounds 5; see roost sim --help).
# The same protocol as separate `roost serve` and `roost client` processes:
# examples/federation.sh.
set -eu
# The record's place is fixed (build/demo/roost.db): the audit and the
# report below read it, so a --db of the user's would leave them reading
# another file.
for arg in "$@"; do
    case "$arg" in
    --db | --db=*)
        echo "demo.sh: the record is build/demo/roost.db; run 'roost sim' itself for another --db" >&2
        exit 2 ;;
    esac
done
. "$(dirname "$0")/lib.sh"
build_roost_into demo
start=$(date +%s)
echo "==> roost sim --tls $*"
"$roost" sim --tls --db roost.db "$@"
"$roost" audit --db roost.db
"$roost" report --db roost.db -o report.html >/dev/null
echo "==> done in $(( $(date +%s) - start ))s. Report: $demo/report.html"
echo "    record: $demo/roost.db (roost status --db $demo/roost.db)"
