# lib.sh - shared by examples/demo.sh and examples/federation.sh (sourced,
# not run): install the Debian packages that are missing, build the
# `roost` program (Release, under $ROOST_BUILD_ROOT or build/), and enter
# a fresh output directory.
#
# usage: . examples/lib.sh; build_roost_into NAME
# Sets: src (the checkout), roost (the program), demo (build/NAME, the
# working directory afterwards).

build_roost_into() {
    src=$(cd "$(dirname "$0")/.." && pwd)
    root=${ROOST_BUILD_ROOT:-$src/build}
    build=$root/release
    demo=$root/$1
    jobs=$(nproc 2>/dev/null || echo 2)

    sh "$src/deploy/install-deps.sh" build
    echo "==> building Roost ($build)"
    cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release \
        -DROOST_BUILD_TESTS=OFF -DROOST_BUILD_BENCH=OFF >/dev/null
    cmake --build "$build" -j "$jobs" --target roost >/dev/null
    roost=$build/server/roost
    "$roost" --version

    rm -rf "$demo"
    mkdir -p "$demo"
    cd "$demo" || exit 1
}
