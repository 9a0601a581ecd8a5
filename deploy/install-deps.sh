#!/bin/sh
# Install the Debian 12 packages Roost needs to build, test and run its demo,
# but only those that are missing (so a prepared machine does no apt work).
# Usage: sh deploy/install-deps.sh [build|test|bench]
#   build: compiler, CMake and the -dev libraries (default)
#   test:  build + cmocka, clang (fuzzing), clang-format, python3 (a TLS
#          relay in test_reload.sh), Fashion-MNIST
#   bench: test + python3-torch (PyTorch baselines)
set -eu
kind=${1:-build}
pkgs="build-essential cmake pkg-config libzmq3-dev libprotobuf-c-dev
protobuf-c-compiler libssl-dev openssl libopenblas-dev libsqlite3-dev
zlib1g-dev libinih-dev dataset-fashion-mnist"
case "$kind" in
build) ;;
test) pkgs="$pkgs libcmocka-dev clang libclang-rt-14-dev clang-format
python3" ;;
bench) pkgs="$pkgs libcmocka-dev clang libclang-rt-14-dev clang-format
python3 python3-torch" ;;
*) echo "install-deps.sh: unknown kind '$kind' (build|test|bench)" >&2; exit 2 ;;
esac
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "roost: installing Debian packages:$missing" >&2
if [ "$(id -u)" -ne 0 ]; then
    echo "roost: need root to install packages (run as root or install:$missing)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
