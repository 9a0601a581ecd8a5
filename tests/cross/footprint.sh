#!/bin/sh
# Footprint of libroost in a build tree: the static archive as built, the
# same archive without debug sections (what an application's linker keeps
# at most), and the shared library stripped with --strip-unneeded (issue
# target: <= 1 MiB, dependencies excluded). Copies are stripped, the build
# tree is left as it is.
# Usage: sh tests/cross/footprint.sh BUILD_DIR [TOOL_PREFIX]
#   TOOL_PREFIX: binutils prefix, e.g. aarch64-linux-gnu- (default: none)
set -eu
build=${1:?usage: footprint.sh BUILD_DIR [TOOL_PREFIX]}
prefix=${2:-}
lib=$build/client/libroost.a
so=$build/client/libroost.so
for f in "$lib" "$so"; do
    [ -e "$f" ] || { echo "footprint.sh: $f missing (build roost_static roost_shared)" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$lib" "$tmp/libroost.a"
"${prefix}strip" --strip-debug "$tmp/libroost.a"
cp -L "$so" "$tmp/libroost.so"
"${prefix}strip" --strip-unneeded "$tmp/libroost.so"

bytes() { wc -c <"$1" | tr -d ' '; }
kib() { echo "$1" | awk '{ printf "%.1f KiB", $1 / 1024 }'; }
a=$(bytes "$lib")
ad=$(bytes "$tmp/libroost.a")
s=$(bytes "$tmp/libroost.so")
arch=$("${prefix}objdump" -f "$tmp/libroost.so" | sed -n 's/.*file format //p')
echo "footprint ($arch, $build):"
echo "  libroost.a as built:               $a bytes ($(kib "$a"))"
echo "  libroost.a --strip-debug:          $ad bytes ($(kib "$ad"))"
if [ "$s" -le 1048576 ]; then verdict="within the 1 MiB target"; else verdict="OVER the 1 MiB target"; fi
echo "  libroost.so --strip-unneeded:      $s bytes ($(kib "$s")), $verdict"
"${prefix}size" "$tmp/libroost.so" | sed 's/^/  /; s|'"$tmp"'/||'
