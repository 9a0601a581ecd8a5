#!/bin/sh
# The public header compiles cleanly on its own as C11 and as C++ (with
# extern "C"), and a C++ program links against libroost and runs.
# usage: test_header.sh SOURCE_DIR LIBROOST_A "LINK FLAGS"
set -eu
src="$1"; lib="$2"; libs="$3"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
inc="$src/client/include"
printf '#include <roost/roost.h>\n' >"$work/only.c"
cc -std=c11 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I"$inc" "$work/only.c"
cp "$work/only.c" "$work/only.cpp"
for std in c++11 c++17; do
    c++ -std=$std -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I"$inc" \
        "$work/only.cpp"
done
# shellcheck disable=SC2086
c++ -std=c++11 -Wall -Wextra -Werror -I"$inc" -o "$work/cxx" \
    "$src/tests/client/header_cxx.cpp" "$lib" $libs
"$work/cxx"
echo "header: C11, C++11, C++17 clean; C++ program linked and ran"
