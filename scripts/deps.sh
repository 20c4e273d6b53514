#!/usr/bin/env bash
# Installs what a fresh Debian machine with only the Rust toolchain lacks
# to build OrdoDB: libclang, which RocksDB's bindings are generated with.
set -euo pipefail
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing libclang-dev (needed to build RocksDB's bindings)..." >&2
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libclang-dev
fi
