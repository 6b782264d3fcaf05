#!/usr/bin/env bash
# Runs killable's whole test suite (unit, integration and doc tests) for aarch64 and riscv64
# under qemu's user-mode emulation, on an x86_64 Debian or Ubuntu machine.
#
#   bash ci/cross.sh                 # both targets
#   bash ci/cross.sh aarch64         # one of them (aarch64, riscv64)
#
# What it needs is installed when missing (idempotent; as root, or through sudo):
# * with rustup (CI, and any machine set up with it): the two targets' standard libraries
#   (`rustup target add`), and from apt qemu-user and the cross C compilers and C libraries;
# * without rustup, Debian's own toolchain (`rustc-web`) from apt as well: its arm64 standard
#   library matches it (the arm64 architecture is added for it), and riscv64's standard library
#   is built from the packaged sources (`-Zbuild-std`).
# What emulation cannot do, and what is skipped for it (each skip is printed with its reason):
# * qemu-user does not pass a guest's seccomp(2) to the kernel (it fails, as under valgrind),
#   so the tests that seal a thread of their own process skip, and KILLABLE_EXPECT_NO_SECCOMP
#   makes seal_reports_an_unavailable_seccomp check the error instead.
# * /proc/<tid>/syscall shows the host's system call (x86_64 numbers and qemu's own calls), so
#   the tests that read a blocked thread's system call from it skip.
# * qemu 7.2 aborts (an assertion in its plugin code) when a guest with several threads forks
#   and the child creates a thread: the tests that do exactly that skip.
# Nothing else is skipped. The tests re-run their own binary through the emulator
# (KILLABLE_TEST_RUNNER: the emulated process cannot exec a foreign binary without a binfmt
# handler), and doctests are built one binary per test (`--merge-doctests=no`) so that, as
# natively, each runs in a process of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(aarch64 riscv64)

# --- Installation (idempotent: only what is missing) ---------------------------------------
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
apt_install() {
  local need=() p
  for p in "$@"; do
    have_pkg "$p" || need+=("$p")
  done
  if [ ${#need[@]} -eq 0 ]; then
    echo "== already installed: $*"
    return
  fi
  echo "== installing: ${need[*]}"
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
}
apt_install qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-riscv64-linux-gnu \
  libc6-dev-riscv64-cross

build_std=()
if command -v rustup >/dev/null && rustup target add aarch64-unknown-linux-gnu riscv64gc-unknown-linux-gnu; then
  echo "== toolchain: rustup's, $(rustc --version)"
else
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    "${sudo[@]}" dpkg --add-architecture arm64
    "${sudo[@]}" apt-get update -q
  fi
  apt_install rustc-web libstd-rust-web-dev:arm64 rust-web-src
  # Debian's rustc and rustdoc (their arm64 std matches them); cargo is the one on PATH.
  export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
  build_std=(-Zbuild-std)
  echo "== toolchain: Debian's, $($RUSTC --version) (riscv64 with -Zbuild-std)"
fi
echo "== $(qemu-aarch64 --version | head -n 1)"

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_RISCV64GC_UNKNOWN_LINUX_GNU_LINKER=riscv64-linux-gnu-gcc
# qemu finds the target's loader and C library under -L. Not for aarch64 where the arm64 C
# library is installed natively (multiarch): -L would pair the cross loader with that newer
# libc, and every pthread_create then spins.
if [ -e /lib/ld-linux-aarch64.so.1 ]; then
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64
else
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
fi
export CARGO_TARGET_RISCV64GC_UNKNOWN_LINUX_GNU_RUNNER="qemu-riscv64 -L /usr/riscv64-linux-gnu"
# rustdoc's --merge-doctests (and -Zbuild-std) are unstable options.
export RUSTC_BOOTSTRAP=1
export RUSTDOCFLAGS="-Zunstable-options --merge-doctests=no"
export KILLABLE_EXPECT_NO_SECCOMP=1

# Substrings of test names (`--skip` matches substrings), with the reason printed for each.
skips=(
  "on_signal_installs_once_per_request|seals the test thread (seccomp)"
  "regression_a_seal_request_stays_in_the_parent_of_a_fork|seals a thread (seccomp)"
  "regression_seal_denies_|seals a thread (seccomp)"
  "regression_seal_reaches_|seals a thread (seccomp)"
  "regression_seal_installs_the_filter_once|seals a thread (seccomp)"
  "regression_seal_runs_interrupt_callbacks|seals a thread (seccomp)"
  "regression_seal_right_after_spawn_is_not_lost|seals a thread (seccomp)"
  "regression_sealed_|seals a thread (seccomp)"
  "sealed_thread_still_writes|seals a thread (seccomp)"
  "a_sealed_threads_siblings_are_unaffected|seals a thread (seccomp)"
  "seal_ends_std_|seals a thread (seccomp)"
  "stop_through_each_level|reaches the seal level (seccomp)"
  "shutdown_then_signals|reaches the seal level (seccomp)"
  "regression_thread_spawned_during_a_seal_is_sealed|seals a thread (seccomp)"
  "Thread::seal (line|seals a thread (seccomp)"
  "JoinHandle<T>::stop (line|a std sleep ends at the seal level (seccomp)"
  "diagnose_names_the_syscall_of_a_blocked_read|reads /proc/<tid>/syscall (the host's)"
  "regression_diagnose_names_fcntl|reads /proc/<tid>/syscall (the host's)"
  "Diagnosis::syscall (line|reads /proc/<tid>/syscall (the host's)"
  "Diagnosis::syscall_name (line|reads /proc/<tid>/syscall (the host's)"
  "Stuck<T>::diagnosis (line|reads /proc/<tid>/syscall (the host's)"
  "regression_stale_handle_after_fork_signals_nobody|qemu aborts when a threaded guest forks and the child spawns"
  "a_fork_child_gets_a_pool_of_its_own|qemu aborts when a threaded guest forks and the child spawns"
  "regression_a_fork_child_can_spawn_while_the_parent_pool_is_busy|qemu aborts when a threaded guest forks and the child spawns"
  "regression_a_fork_child_can_use_a_group_a_parent_thread_was_listing|qemu aborts when a threaded guest forks and the child spawns"
  "regression_a_grandchild_forked_while_its_parent_starts_a_thread_can_spawn|qemu aborts when a threaded guest forks and the child spawns"
  "regression_a_sealed_|seals a thread (seccomp)"
  "stop_stuck_seals|the pool's escalation seals a thread (seccomp)"
  "a_seal_is_recognised|seals a thread (seccomp)"
  "stop_of_std_accept_skips_the_kill_and_reports_the_seal|reaches the seal level (seccomp)"
  "stop_with_goes_straight_to_the_seal|seals a thread (seccomp)"
  "wait_child_or_kill_reaps_on_a_sealed_thread|seals a thread (seccomp)"
  "stop_stuck_seals_a_job_that_retries_eintr|the pool's escalation seals the job's thread (seccomp)"
  "errors::is_sealed (line|seals a thread (seccomp)"
  "escalate::StopOptions (line|stops std's accept at the seal level (seccomp)"
  "regression_scope_stop_seals_a_nested_scope_thread|seals a thread (seccomp)"
  "sealed_scoped_thread_ends_the_scope|seals a thread (seccomp)"
  "regression_sealed_killable_read_reports_the_interrupt|seals a thread (seccomp)"
  "regression_wait_child_or_kill_on_a_sealed_thread|seals a thread (seccomp)"
  "regression_outcome_elapsed_is_the_threads_own|its shutdown reaches the seal level (seccomp)"
)
args=()
for s in "${skips[@]}"; do
  args+=(--skip "${s%%|*}")
done

failed=()
for arch in "${targets[@]}"; do
  case "$arch" in
    aarch64) triple=aarch64-unknown-linux-gnu std=(); runner=$CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER ;;
    riscv64) triple=riscv64gc-unknown-linux-gnu std=("${build_std[@]}"); runner=$CARGO_TARGET_RISCV64GC_UNKNOWN_LINUX_GNU_RUNNER ;;
    *) echo "unknown target $arch (aarch64, riscv64)"; exit 2 ;;
  esac
  t0=$SECONDS
  echo "== $triple (under $runner)"
  for s in "${skips[@]}"; do
    echo "   skipped under emulation: ${s%%|*}* (${s#*|})"
  done
  log=$(mktemp)
  set +e
  # A time limit per target: a test that needs what emulation lacks (a seal) may hang there
  # rather than fail, and CI must end either way.
  KILLABLE_TEST_RUNNER=$runner timeout -k 10 1200 cargo test "${std[@]}" --target "$triple" \
    --target-dir target/cross --no-fail-fast -- "${args[@]}" > "$log" 2>&1
  rc=$?
  set -e
  # Each binary's name and result line, then any failure in full.
  # (`|| true`: a build that fails prints no such line, and its errors are shown below.)
  grep -E '^ *(Running|Doc-tests)|^test result|^[0-9]+ passed, [0-9]+ failed' "$log" | sed 's/^ */   /' || true
  if [ "$rc" -ne 0 ]; then
    grep -E -A30 '^---- |^failures:|^error' "$log" > "$log.fail" || true
    head -n 200 "$log.fail"
    rm -f "$log.fail"
    echo "!! $triple: FAILED (exit status $rc) in $((SECONDS - t0)) s"
    failed+=("$triple")
  else
    echo "== $triple: all passed in $((SECONDS - t0)) s"
  fi
  rm -f "$log"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "cross: FAILED: ${failed[*]} ($((SECONDS - started)) s)"
  exit 1
fi
echo "cross: ${targets[*]} passed in $((SECONDS - started)) s"
