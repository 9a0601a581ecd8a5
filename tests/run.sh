#!/bin/sh
# The whole test suite, as README's second quick-start command and CI run
# it: install missing Debian packages, then
#   1. build with -Werror and run ctest,
#   2. build with AddressSanitizer + UBSan and run ctest,
#   3. build the libFuzzer targets with clang and run each briefly on its
#      corpus,
#   4. check formatting with clang-format.
# Any failure fails the run. Build trees go under $ROOST_BUILD_ROOT
# (default: build/ in the source tree).
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
root=${ROOST_BUILD_ROOT:-$src/build}
jobs=$(nproc 2>/dev/null || echo 2)
fuzz_seconds=${ROOST_FUZZ_SECONDS:-20}

sh "$src/deploy/install-deps.sh" test

step() { printf '\n==> %s\n' "$*"; }

step "build with -Werror ($root/werror)"
cmake -S "$src" -B "$root/werror" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DROOST_WERROR=ON >/dev/null
cmake --build "$root/werror" -j "$jobs"
step "ctest (werror build)"
(cd "$root/werror" && ctest --output-on-failure -j "$jobs")

step "build with ASan + UBSan ($root/asan)"
cmake -S "$src" -B "$root/asan" -DCMAKE_BUILD_TYPE=Debug -DROOST_WERROR=ON \
    -DROOST_SANITIZE=ON -DROOST_BUILD_BENCH=OFF >/dev/null
cmake --build "$root/asan" -j "$jobs"
step "ctest (sanitizer build)"
(cd "$root/asan" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure -j "$jobs" -LE slow)

step "fuzz targets, ${fuzz_seconds}s each ($root/fuzz)"
CC=clang cmake -S "$src" -B "$root/fuzz" -DROOST_BUILD_FUZZ=ON \
    -DROOST_BUILD_TESTS=OFF -DROOST_BUILD_BENCH=OFF >/dev/null
cmake --build "$root/fuzz" -j "$jobs"
for t in "$root"/fuzz/tests/fuzz/fuzz_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    corpus="$src/tests/fuzz/corpus/${name#fuzz_}"
    work=$(mktemp -d)
    [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/
    echo "$name: ${fuzz_seconds}s on $(ls "$work" | wc -l) corpus files"
    "$t" -max_total_time="$fuzz_seconds" -print_final_stats=1 "$work" \
        2>"$work.log" || { tail -n 40 "$work.log"; exit 1; }
    grep -E 'stat::number_of_executed_units' "$work.log" || true
    rm -rf "$work" "$work.log"
done

step "clang-format"
cd "$src"
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find client common dp server tests examples -name '*.[ch]')
# shellcheck disable=SC2086
clang-format --dry-run --Werror $files
echo "formatting ok"

step "all checks passed"
