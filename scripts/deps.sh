#!/usr/bin/env bash
# Installs what a fresh Debian machine with only the Rust toolchain lacks to
# build OrdoDB. The list below is everything the README's commands need that is
# not part of the toolchain; each entry is checked by the file the build really
# loads, not by a look-alike (the image ships libclang-cpp.so.14, which is not
# what bindgen opens).
#
#   libclang-dev  bindgen (RocksDB's bindings, `bindgen-runtime`) dlopens an
#                 unversioned `libclang.so`; only the -dev package provides it.
#   g++           librocksdb-sys compiles RocksDB's C++ with the cc crate.
#
# Not needed: protoc (proto/ uses protox), cmake, pkg-config, OpenSSL (reqwest
# and tonic run without TLS). PostgreSQL, for the TPC-C comparison, is
# installed by scripts/postgres.sh.
set -euo pipefail

missing=()
have_libclang() {
  # bindgen's clang-sys looks in LIBCLANG_PATH, then llvm-config's libdir,
  # then the usual system directories, for a file named exactly libclang.so.
  local dirs=("${LIBCLANG_PATH:-}" /usr/lib/llvm-*/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib)
  local d
  for d in "${dirs[@]}"; do
    [ -n "$d" ] && [ -e "$d/libclang.so" ] && return 0
  done
  return 1
}
have_libclang || missing+=(libclang-dev)
command -v g++ >/dev/null 2>&1 || missing+=(g++)

if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing ${missing[*]} (needed to build RocksDB and its bindings)..." >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  have_libclang || { echo "libclang.so still not found after installing libclang-dev" >&2; exit 1; }
fi
