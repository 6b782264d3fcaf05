#!/usr/bin/env bash
# Runs killable's test binaries under valgrind's memcheck; fails on any memcheck error.
#
#   bash ci/valgrind.sh            # every integration test binary and the unit tests
#
# The binaries are the test targets of killable (the package in the current directory) that
# `cargo test` builds; the dev-only fixture crate testkit/ is linked into them, so its harnesses
# and demo C loops run under memcheck too, without a binary of their own.
#
# Needs valgrind (apt-get install valgrind). Each binary runs with two test threads and a time
# limit; valgrind slows code down about 20-50x, so the kill stress tests run 100 kills instead of
# 2,000 (KILLABLE_KILL_ITERATIONS), and the pool's isolation stress runs 300 rounds instead of
# 3,000 (KILLABLE_BLOCKING_ROUNDS).
#
# --max-stackframe=4096: a kill jumps with siglongjmp from the handler back to the region's
# entry. The handler now runs on the thread's own stack (src/signal.rs), so that jump is an
# ordinary one up the same stack; the option dates from when it ran on the thread's alternate
# signal stack, and is kept because it costs little: when the alternate stack happens to lie above the thread stack within memcheck's default 2 MB
# threshold, memcheck takes that jump for stack growth and marks the live frames in between
# (the region entry's saved registers, its Rust caller) as undefined, then reports every read
# of them. A plain C program doing the same (signal on an alternate stack, siglongjmp out) is
# clean; ours gave 87 reports without the option and none with it. With a small threshold
# such moves count as stack switches; the cost is that memcheck checks frames larger than 4 KiB
# less closely.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 2; }
# Where cargo builds (CARGO_TARGET_DIR, a config's build.target-dir, or ./target): the lists and
# logs go there too. It may not exist yet on a fresh clone.
out=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
mkdir -p "$out"
cargo test --no-run --message-format=json \
  | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])
' | sort -u > "$out/valgrind-binaries.txt"

failed=0
while read -r bin; do
  name=$(basename "$bin")
  args=(--test-threads=2)
  case "$name" in
    process-*) args=() ;;
    # valgrind does not implement seccomp(2) (it returns ENOSYS), so the tests that seal a thread
    # of their own process need a real kernel; seal_reports_an_unavailable_seccomp checks instead
    # that seal() says so in its error. (Tests that seal in a child, a re-executed copy of the
    # binary, run on the real kernel: valgrind does not follow the child.) Skips match
    # substrings of test names, so they survive a test's module moving.
    killable-*) args+=(--skip on_signal_installs_once_per_request) ;;
    # A C loop that spins holds valgrind's one big lock: the thread that kills it runs only when
    # valgrind switches threads, so a hundred kills take anywhere from seconds to many minutes
    # here. The two repeated-kill tests run natively in `cargo test`; the other kill tests
    # (deferral, nesting, the restored mask) still run under memcheck.
    kill-*) args+=(--skip killed_thousands_of_times) ;;
    stop-*) args+=(--skip seal_ends --skip a_sealed_threads --skip stop_through_each_level) ;;
    shutdown-*) args+=(--skip shutdown_then_signals) ;;
    regression_seal-*) args+=(--skip sealed_thread_still_writes) ;;
    regression_review-*) args+=(--skip seal_runs_interrupt_callbacks) ;;
    # The pool's escalation seals the stuck job's thread: seccomp again.
    blocking-*) args+=(--skip stop_stuck_seals) ;;
    # Seals a scoped thread of its own process: seccomp again. And under valgrind's one big lock
    # the interrupter of the exactly-once stress tests is scheduled a handful of times per run
    # (10 interrupts in one), too few for the run to mean anything: they run natively in
    # `cargo test`, and the other channel tests run under memcheck.
    scope_sound-*) args+=(--skip sealed_scoped_thread_ends_the_scope --skip s1_exactly_once) ;;
  esac
  echo "== valgrind $name"
  # A binary that outlives its limit is run once more and reported: under valgrind's single
  # scheduler a fork child or a spinning region has been seen, rarely, to stall for minutes on
  # this 2-core machine. Memcheck errors (99) and test failures are never retried.
  for attempt in 1 2; do
    set +e
    KILLABLE_KILL_ITERATIONS=100 KILLABLE_BLOCKING_ROUNDS=300 KILLABLE_EXPECT_NO_SECCOMP=1 timeout -k 10 300 valgrind --quiet --error-exitcode=99 --max-stackframe=4096 \
      --suppressions=ci/valgrind.supp "$bin" "${args[@]}" < /dev/null > "$out/valgrind-$name.log" 2>&1
    rc=$?
    set -e
    if [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ]; then
      break
    fi
    echo "!! $name: still running after 300 s (attempt $attempt)"
    pkill -9 -f "$bin" || true
  done
  tail -n 3 "$out/valgrind-$name.log"
  if [ "$rc" -ne 0 ]; then
    echo "!! $name: exit status $rc (99 = memcheck errors; see $out/valgrind-$name.log)"
    failed=1
  fi
done < "$out/valgrind-binaries.txt"
if [ "$failed" -ne 0 ]; then
  echo "valgrind: FAILED"
  exit 1
fi
echo "valgrind: all clean"
