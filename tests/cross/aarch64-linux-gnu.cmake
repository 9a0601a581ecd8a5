# CMake toolchain file: cross-build Roost for 64-bit Arm Linux on a Debian 12
# x86-64 host, with Debian's cross compiler (gcc-aarch64-linux-gnu) and the
# arm64 multiarch -dev packages (libzmq3-dev:arm64, ...), and run the
# resulting test programs under user-mode QEMU (qemu-user).
#
#   cmake -S . -B build-aarch64 \
#         -DCMAKE_TOOLCHAIN_FILE=tests/cross/aarch64-linux-gnu.cmake
#
# tests/cross/aarch64.sh installs the packages and drives the whole run.
#
# Multiarch puts the arm64 libraries and .pc files under the host's own
# /usr (/usr/lib/aarch64-linux-gnu, /usr/include/aarch64-linux-gnu), which
# Debian's cross gcc searches by itself, so no --sysroot is used. What must
# not happen is that pkg-config reports the amd64 libraries: PKG_CONFIG_LIBDIR
# replaces its default search path with the arm64 one only.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(ROOST_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${ROOST_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${ROOST_CROSS_TRIPLE}-g++)

# The cross runtime (libc6-arm64-cross) lives in /usr/aarch64-linux-gnu; the
# multiarch libraries (libc6:arm64 and the -dev:arm64 packages) in
# /usr/lib/aarch64-linux-gnu.
set(CMAKE_FIND_ROOT_PATH /usr/${ROOST_CROSS_TRIPLE})
set(CMAKE_LIBRARY_ARCHITECTURE ${ROOST_CROSS_TRIPLE})
# Programs that run during the build (protoc-c, pkg-config) are the host's
# own: never look them up under the target root. Libraries, headers and
# packages are the target's: look for them there first, then in the
# multiarch directories of the host's /usr (CMake adds the
# CMAKE_LIBRARY_ARCHITECTURE subdirectory itself).
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# pkg-config: the arm64 .pc files only (the multiarch ones, plus the
# architecture-independent share/pkgconfig). PKG_CONFIG_LIBDIR replaces the
# default path, so amd64 modules can never be picked up by mistake.
set(ENV{PKG_CONFIG_LIBDIR}
    "/usr/lib/${ROOST_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")

# ctest (and try_run) run target programs through QEMU. The arm64
# multiarch libc6 (pulled in by the -dev:arm64 packages) provides the
# loader at /lib/ld-linux-aarch64.so.1, so QEMU needs no -L prefix. Do not
# pass -L /usr/${ROOST_CROSS_TRIPLE}: the loader found there belongs to
# libc6-arm64-cross, whose version differs from the multiarch libc.so.6 the
# loader then picks up from /lib/aarch64-linux-gnu, and with the two
# mismatched pthread_create and raise() in a forked child spin forever
# (seen with 2.36-8cross1 against 2.36-9+deb12u14). The prefix is only used
# when the multiarch loader is absent.
find_program(ROOST_QEMU_AARCH64 qemu-aarch64 REQUIRED)
if(EXISTS /lib/ld-linux-aarch64.so.1)
    set(CMAKE_CROSSCOMPILING_EMULATOR ${ROOST_QEMU_AARCH64})
else()
    set(CMAKE_CROSSCOMPILING_EMULATOR
        ${ROOST_QEMU_AARCH64} -L /usr/${ROOST_CROSS_TRIPLE})
endif()
