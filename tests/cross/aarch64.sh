#!/bin/sh
# Cross-build libroost for 64-bit Arm Linux (aarch64) on a Debian 12 x86-64
# host, run the common/, dp/ and client/ unit tests under user-mode QEMU,
# and print the library's footprint. Not part of tests/run.sh: emulation
# makes the tests tens of times slower than native (see docs/cross.md).
#
# Usage: sh tests/cross/aarch64.sh [--no-install] [--no-test] [ctest args...]
#   --no-install  do not install missing Debian packages
#   --no-test     configure, build and measure only
#   ctest args    replace the default selection (every common/, dp/ and
#                 client/ cmocka program, run under QEMU), e.g. -R '^dp\.'
#                 or -R '^common\.' -E model_fmnist
# Environment:
#   ROOST_BUILD_ROOT          build trees go under it (default: build/ in the
#                             source tree); this one is $ROOST_BUILD_ROOT/aarch64
#   ROOST_CROSS_TIMEOUT_SCALE factor on every test's timeout (default 10)
#   ROOST_CROSS_JOBS          parallel compile and test jobs (default: nproc)
#
# Packages (installed only if missing, as root): the native build tools of
# deploy/install-deps.sh, gcc-aarch64-linux-gnu, qemu-user, and the arm64
# multiarch -dev packages of libroost's dependencies and cmocka. protoc-c is
# the host's own (protobuf-c-compiler): it runs during the build.
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
root=${ROOST_BUILD_ROOT:-$src/build}
build=$root/aarch64
jobs=${ROOST_CROSS_JOBS:-$(nproc 2>/dev/null || echo 2)}
scale=${ROOST_CROSS_TIMEOUT_SCALE:-10}
triple=aarch64-linux-gnu
install=1
run_tests=1
while [ $# -gt 0 ]; do
    case "$1" in
    --no-install) install=0; shift ;;
    --no-test) run_tests=0; shift ;;
    --) shift; break ;;
    *) break ;;
    esac
done

step() { printf '\n==> %s\n' "$*"; }
t0=$(date +%s)
elapsed() { echo "$(($(date +%s) - $1)) s"; }

# --- packages -------------------------------------------------------------
host_pkgs="gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu qemu-user"
arm_pkgs="libzmq3-dev libprotobuf-c-dev libssl-dev libopenblas-dev
libsqlite3-dev zlib1g-dev libinih-dev libcmocka-dev"
if [ "$install" -eq 1 ]; then
    step "packages"
    sh "$src/deploy/install-deps.sh" build
    missing=""
    for p in $host_pkgs; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
            grep -q "install ok installed" || missing="$missing $p"
    done
    for p in $arm_pkgs; do
        dpkg-query -W -f='${Status}' "$p:arm64" 2>/dev/null |
            grep -q "install ok installed" || missing="$missing $p:arm64"
    done
    if [ -n "$missing" ]; then
        echo "roost: installing Debian packages:$missing" >&2
        if [ "$(id -u)" -ne 0 ]; then
            echo "roost: need root to install:$missing" >&2
            exit 1
        fi
        dpkg --print-foreign-architectures | grep -qx arm64 ||
            dpkg --add-architecture arm64
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # Multi-Arch: same packages must have one version for amd64 and
        # arm64, so apt may upgrade an installed amd64 one to match.
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
    echo "packages ready ($(elapsed "$t0"))"
fi

# --- configure and build ----------------------------------------------------
step "configure $build"
t=$(date +%s)
cmake -S "$src" -B "$build" \
    -DCMAKE_TOOLCHAIN_FILE="$src/tests/cross/$triple.cmake" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DROOST_WERROR=ON \
    -DROOST_BUILD_TESTS=ON -DROOST_BUILD_BENCH=OFF -DROOST_BUILD_FUZZ=OFF \
    -DROOST_TEST_TIMEOUT_SCALE="$scale" >/dev/null
echo "configured ($(elapsed "$t"))"

step "build libroost and the common/dp/client tests"
t=$(date +%s)
tests=$(cmake --build "$build" --target help |
    sed -n 's/^\.\.\. \(test_\(common\|dp\|client\)_[A-Za-z0-9_]*\).*/\1/p' |
    sort -u | tr '\n' ' ')
# shellcheck disable=SC2086
cmake --build "$build" -j "$jobs" --target roost_static roost_shared $tests
echo "built ($(elapsed "$t")): $(echo $tests | wc -w) test programs"
"$triple-objdump" -f "$build/client/libroost.so" | sed -n 's/.*file format/libroost.so:/p'

step "footprint"
sh "$src/tests/cross/footprint.sh" "$build" "$triple-"

# --- tests under qemu-aarch64 -----------------------------------------------
if [ "$run_tests" -eq 1 ]; then
    step "ctest under qemu-aarch64 (timeouts x$scale)"
    t=$(date +%s)
    # Default: exactly the cmocka programs built above (roost_add_test's
    # test_<component>_<module> is ctest's <component>.<module>). Tests that
    # run host programs (the lint scripts, client.header's host compiler,
    # integration tests driving the roost program) are not for QEMU.
    if [ $# -eq 0 ]; then
        names=$(for p in $tests; do echo "$p"; done |
            sed 's/^test_\(common\|dp\|client\)_/\1\\./' | paste -sd'|' -)
        set -- -R "^($names)\$"
    fi
    status=0
    (cd "$build" && ctest --output-on-failure -j "$jobs" "$@") || status=$?
    echo "ctest finished ($(elapsed "$t")), exit status $status"
fi
step "done ($(elapsed "$t0"))"
exit "${status:-0}"
