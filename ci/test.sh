#!/usr/bin/env bash
# killable's CI: the README's test command, then formatting, lints and docs.
# Runs from a clean clone with only the Rust toolchain and gcc.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test"
cargo test
echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps
echo "== ci/test.sh: all green"
