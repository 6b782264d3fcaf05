#!/usr/bin/env bash
# killable's CI: the README's test command, then formatting, lints and docs, the quick
# reliability run, every test binary under valgrind, and (on x86_64) the whole suite for aarch64
# and riscv64 under emulation.
# Runs from a clean clone with only the Rust toolchain, gcc, python3 and valgrind.
#
# The workspace is killable and its dev-only fixture crate testkit/: `cargo test` builds testkit
# as killable's dev-dependency; fmt, clippy and doc check both crates.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
step() {
  echo "== $* (at $((SECONDS - started)) s)"
}

step "cargo test"
cargo test
step "cargo fmt --all --check"
cargo fmt --all --check
step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

# The reliability run at its quick size: forged signals, data through pipes and TCP under
# interrupts, the storm, forks, leaks. The last line of its output is one JSON object; every
# figure below must be present and zero.
step "cargo bench --bench killable -- reliability --quick --json"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cargo bench --bench killable -- reliability --quick --json | tee "$out"
tail -n 1 "$out" | python3 -c '
import json, sys
line = sys.stdin.read().strip()
try:
    figures = json.loads(line)
except ValueError:
    sys.exit("reliability: the last line is not JSON: %r" % line)
must_be_zero = ["forged_interrupts", "forged_crashes", "data_mismatches", "storm_failures",
                "fork_child_failures", "fd_growth"]
bad = []
for key in must_be_zero:
    if key not in figures:
        bad.append("%s is missing" % key)
    elif figures[key] != 0:
        bad.append("%s = %s (must be 0)" % (key, figures[key]))
if bad:
    sys.exit("reliability: FAILED: " + "; ".join(bad))
print("reliability: " + ", ".join("%s = 0" % k for k in must_be_zero))
'

step "valgrind (ci/valgrind.sh)"
bash ci/valgrind.sh

# The other architectures, under qemu-user (ci/cross.sh installs what it needs). On an aarch64
# machine the steps above already ran the suite natively.
if [ "$(uname -m)" = x86_64 ]; then
  step "aarch64 and riscv64 under emulation (ci/cross.sh)"
  bash ci/cross.sh
else
  step "ci/cross.sh skipped: it emulates from x86_64, and this machine is $(uname -m)"
fi

echo "== ci/test.sh: all green in $((SECONDS - started)) s"
