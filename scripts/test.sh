#!/usr/bin/env bash
# Builds once and runs every test: unit tests and the cluster tests, which
# spawn real `ordo` processes on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordo-target}"
cargo test --workspace --locked -- --test-threads 4
