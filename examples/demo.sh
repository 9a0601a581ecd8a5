#!/bin/sh
# README quick-start command 1: install what is missing, build Roost, and
# run the main job. Until the federation exists this builds and prints the
# version; see README for what each issue adds.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${ROOST_BUILD_ROOT:-$src/build}/release
jobs=$(nproc 2>/dev/null || echo 2)
sh "$src/deploy/install-deps.sh" build
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DROOST_BUILD_TESTS=OFF -DROOST_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "$jobs" --target roost
"$build/server/roost" --version
