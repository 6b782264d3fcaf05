//! Bounded waits for tests and benchmarks: a condition, or a thread asleep in a system call.
//!
//! Every wait has a generous limit and panics when it runs out, so that a bug fails the test
//! instead of hanging the suite. The limits are hang guards, not timing assertions: they are
//! far above anything a healthy run needs, even under valgrind.

use std::time::{Duration, Instant};

/// How long [`wait_blocked`] waits before it gives up.
pub const BLOCK_LIMIT: Duration = Duration::from_secs(60);

/// Waits until `cond` holds, checking every 2 ms.
///
/// # Panics
///
/// After `limit`, with a message naming `what`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until the killable thread `t` sleeps in the kernel inside a system call: its state is
/// `S` and it has a current system call (both from [`killable::Thread::diagnose`]). An
/// interrupt, a seal or a kill sent after this returns finds the thread blocked.
///
/// # Panics
///
/// If `t` cannot be diagnosed (it has finished: it will never block), or after
/// [`BLOCK_LIMIT`], with the thread's last diagnosis.
pub fn wait_blocked(t: &killable::Thread) {
    let start = Instant::now();
    loop {
        let d = t
            .diagnose()
            .unwrap_or_else(|e| panic!("waiting for a thread to block: {e}"));
        if d.state() == 'S' && d.syscall().is_some() {
            return;
        }
        assert!(
            start.elapsed() < BLOCK_LIMIT,
            "the thread never blocked in a system call within {BLOCK_LIMIT:?}: {d}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The kernel's one-letter state (`R`, `S`, `D`...) of thread `tid` of this process, read from
/// `/proc/self/task/<tid>/stat`; `None` if there is no such thread. For threads killable does
/// not know (a plain `std::thread`), which [`wait_blocked`] cannot diagnose.
pub fn task_state(tid: libc::pid_t) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The command name, in parentheses, may itself contain spaces and parentheses.
    stat.rsplit(')').next()?.trim_start().chars().next()
}

/// Whether signal `sig` is pending for thread `tid` of this process: its own pending set
/// (`SigPnd` in `/proc/self/task/<tid>/status`). A thread that has ended has nothing pending.
pub fn signal_pending(tid: libc::pid_t, sig: libc::c_int) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")) else {
        return false;
    };
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigPnd:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    mask & (1 << (sig - 1)) != 0
}

/// The lowest usable address of the calling thread's stack (above its guard).
pub fn stack_low() -> usize {
    // SAFETY: pthread_attr_t is plain data, initialised by pthread_getattr_np before it is
    // read, and destroyed after.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_getattr_np(libc::pthread_self(), &mut attr), 0);
        let (mut addr, mut size) = (std::ptr::null_mut(), 0);
        libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        addr as usize
    }
}
