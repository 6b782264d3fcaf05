//! Running a test's body in a child process, and silencing the panics a test expects.
//!
//! A test that forks, changes a process-wide signal disposition or might hang runs its body in
//! a fresh copy of its own test binary (`--exact NAME`), with an `alarm` in the child and a
//! deadline in the parent, so a hang fails the test instead of the whole suite and a replaced
//! handler cannot disturb the tests running beside it.

use std::process::{Command, Stdio};
use std::time::Duration;

/// Set in the child's environment to the name of the test it runs.
const CHILD_ENV: &str = "KILLABLE_TESTKIT_CHILD";

/// Set by `ci/cross.sh` when the tests run under user-mode emulation: the emulator command line
/// (`qemu-aarch64`, `qemu-riscv64 -L /usr/riscv64-linux-gnu`) that runs a binary of the target.
const RUNNER_ENV: &str = "KILLABLE_TEST_RUNNER";

/// A command that runs this test binary again (its arguments are the caller's to add).
///
/// Natively that is the binary itself. Under user-mode emulation (`ci/cross.sh` sets
/// `KILLABLE_TEST_RUNNER`), an emulated process cannot `exec` a binary of its own architecture:
/// the host has no binfmt handler for it, so the copy is started through the emulator, as cargo
/// started the first one.
pub fn own_binary() -> Command {
    let exe = std::env::current_exe().expect("own path");
    match std::env::var(RUNNER_ENV) {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut words = runner.split_whitespace();
            let mut c = Command::new(words.next().expect("a runner"));
            c.args(words).arg(exe);
            c
        }
        _ => Command::new(exe),
    }
}

/// Silences the panic message of panics that a test expects (their message contains
/// `marker`), and keeps every other panic's report. The panic hook is process-wide: call this
/// only in a process of its own, such as the child of [`in_child`].
pub fn quiet_panics(marker: &'static str) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if !msg.contains(marker) {
            previous(info);
        }
    }));
}

/// Runs `body` in a child process: a copy of this test binary that runs only test `name`.
///
/// In the parent, re-runs test `name` (which must be the calling test's full name, the one
/// `--exact` matches) in a child and waits for it; `body` is not called. In the child (the copy
/// started here), runs `body` with an `alarm` of `limit` as a watchdog, so a hung child dies.
///
/// # Panics
///
/// In the parent: if the child failed, or did not finish within `limit` plus 10 seconds (it is
/// then killed), with everything the child printed.
pub fn in_child(name: &str, limit: Duration, body: impl FnOnce()) {
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        // SAFETY: alarm has no preconditions; its default action ends a hung child.
        unsafe { libc::alarm(limit.as_secs().max(1) as u32) };
        body();
        return;
    }
    let child = own_binary()
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, name)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child test");
    let pid = child.id() as libc::pid_t;
    // Another thread drains the pipes, so a child that prints a lot never blocks on them.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let (status, out) = match rx.recv_timeout(limit + Duration::from_secs(10)) {
        Ok(out) => {
            let out = out.expect("child output");
            (Some(out.status), out)
        }
        Err(_) => {
            // SAFETY: `pid` is our child, not yet reaped (the waiting thread has not returned).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            (
                None,
                rx.recv().expect("child output").expect("child output"),
            )
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match status {
        Some(s) if s.success() && text.contains("1 passed") => {}
        Some(s) => panic!("{name} failed in its child ({s}):\n{text}"),
        None => panic!("{name} hung in its child (killed after {limit:?}):\n{text}"),
    }
}

thread_local! {
    /// Set on a thread that is about to panic on purpose.
    static PANICS_ON_PURPOSE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread as one that panics on purpose, so that its panic does not print a
/// message and a backtrace that look like a failure. The hook that does it is installed once
/// and is process-wide while tests run in parallel: it silences only threads marked here and
/// hands every other panic to the previous hook.
pub fn panics_on_purpose() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !PANICS_ON_PURPOSE
                .try_with(std::cell::Cell::get)
                .unwrap_or(false)
            {
                previous(info);
            }
        }));
    });
    PANICS_ON_PURPOSE.with(|p| p.set(true));
}
