#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks (libclang for RocksDB's
# bindings), then builds once and runs every test: unit tests and the
# cluster tests, which spawn real `ordo` processes on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libclang-dev
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordo-target}"
cargo test --workspace --locked -- --test-threads 4
