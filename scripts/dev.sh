#!/usr/bin/env bash
# Starts a local 3-node cluster (`ordo dev`) with embedded defaults; extra
# arguments go to `ordo dev` (see `ordo dev --help`). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordo-target}"
exec cargo run --locked --bin ordo -- dev "$@"
