#!/usr/bin/env bash
# Style checks CI runs before the tests: formatting (rustfmt.toml) and
# clippy on every target with warnings as errors. Lints allowed anywhere are
# named, with the reason, in the workspace Cargo.toml ([workspace.lints]).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordo-target}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
