#!/bin/sh
# Install Roost into a scratch prefix, then build examples/hello_roost.c
# against the *installed* package twice: with pkg-config and with
# find_package(Roost). Proves the install rules, not just the build tree.
set -eu
build="$1"; src="$2"; extra_cflags="${3:-}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
libdir=$(ls -d "$work"/prefix/lib*/pkgconfig | head -n 1)
libdir=${libdir%/pkgconfig}
test -f "$work/prefix/include/roost/roost.h"
test -x "$work/prefix/bin/roost"
# deploy/roost.service's Documentation= link: <prefix>/share/doc/roost.
test -f "$work/prefix/share/doc/roost/operations.md"

# pkg-config, shared; then the static archive with its dependencies'
# shared libraries (a fully static link would need every dependency's .a).
PKG_CONFIG_PATH="$libdir/pkgconfig" cc -std=c11 -Wall -Werror $extra_cflags \
    -o "$work/hello_shared" "$src/examples/hello_roost.c" \
    $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs roost)
LD_LIBRARY_PATH="$libdir" "$work/hello_shared" | grep -q "libroost"
# The embedding example uses the whole client API: it must build from the
# installed header and library alone.
PKG_CONFIG_PATH="$libdir/pkgconfig" cc -std=c11 -Wall -Werror $extra_cflags \
    -o "$work/edge_client" "$src/examples/edge_client.c" \
    $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs roost)
LD_LIBRARY_PATH="$libdir" "$work/edge_client" 2>&1 | grep -q "usage:"
PKG_CONFIG_PATH="$libdir/pkgconfig" cc -std=c11 -Wall -Werror $extra_cflags \
    -o "$work/hello_static" "$src/examples/hello_roost.c" \
    $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags roost) \
    "$libdir/libroost.a" \
    $(pkg-config --libs libzmq libprotobuf-c openssl openblas sqlite3 zlib) \
    -lpthread -lm
"$work/hello_static" | grep -q "libroost"

# find_package(Roost)
mkdir -p "$work/cm"
cat > "$work/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.18)
project(hello C)
find_package(Roost 0.1 REQUIRED)
add_compile_options($extra_cflags)
add_link_options($extra_cflags)
add_executable(hello $src/examples/hello_roost.c)
target_link_libraries(hello PRIVATE Roost::roost)
add_executable(edge_static $src/examples/edge_client.c)
target_link_libraries(edge_static PRIVATE Roost::roost_static)
CM
cmake -S "$work/cm" -B "$work/cm/build" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/cm/build" >/dev/null
LD_LIBRARY_PATH="$libdir" "$work/cm/build/hello" | grep -q "libroost"
# docs/client.md offers Roost::roost_static too: the whole client API
# links from the archive and its dependencies as the package names them.
"$work/cm/build/edge_static" 2>&1 | grep -q "usage:"
echo "install test: pkg-config (shared, static) and find_package(Roost) ok"
