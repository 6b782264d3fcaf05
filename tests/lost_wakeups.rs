//! Lost wake-ups: an interrupt sent at a random moment around a blocking read's check never
//! leaves the read blocked (the race that killable's system-call stub closes), and the harness
//! that says so, `testkit::stress`, does catch the race in a naive check-then-read.
//!
//! Both tests run the harness, whose threads spin; they take turns so that on a small machine
//! neither starves the other's threads (which would hide the race the racy test looks for).

use std::io::{self, PipeReader, Read};
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use killable::io::Interruptible;
use testkit::stress;

/// How long the racy read spins between its check and its read. The window must be wide enough
/// that an interrupt still lands in it when the interrupting thread runs late, or shares a CPU
/// with the target on a busy machine: with 20 µs, runs on a loaded 2-core machine sometimes lost
/// nothing in 5,000 rounds; with 500 µs beside two CPU hogs a loss took up to 3,000 rounds; with
/// 2 ms it takes about ten.
const RACY_WINDOW: Duration = Duration::from_millis(2);

/// The harness's threads spin: one harness at a time.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    // A failed test poisons the lock; the next one may still run.
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// killable's read: the check and the system call are one step for an interrupt.
fn killable_read(r: &PipeReader, buf: &mut [u8]) -> io::Result<usize> {
    Interruptible::new(r).read(buf)
}

/// The naive alternative to the stub: check the flag, then call a plain `read`. A signal that
/// lands between the two is handled and forgotten, and the read blocks. The window between them
/// is widened with a spin (`RACY_WINDOW`) so the harness hits it often.
fn racy_read(r: &PipeReader, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        killable::check()?;
        stress::spin_for(RACY_WINDOW.as_nanos() as u64);
        // SAFETY: reading into a live buffer of the given length.
        let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

#[test]
fn the_harness_catches_lost_wakeups_in_a_racy_check_then_read() {
    let _turn = one_at_a_time();
    // Runs until the third lost wake-up, which usually comes within a few rounds. The
    // bounds (a million rounds, five minutes) are only there so that a harness that cannot see
    // the race ends: then this test fails, as it must.
    let c = stress::run(
        1_000_000,
        racy_read,
        Duration::from_millis(500),
        3,
        Duration::from_secs(300),
    );
    println!("racy check-then-read: {c:?}");
    assert!(
        c.lost_wakeups >= 1,
        "the racy variant lost nothing in {c:?}: the harness proves nothing"
    );
}

#[test]
fn no_lost_wakeups_with_the_stub() {
    let _turn = one_at_a_time();
    let c = stress::run(
        5_000,
        killable_read,
        Duration::from_secs(10),
        1,
        Duration::from_secs(240),
    );
    println!("killable stub: {c:?}");
    assert_eq!(c.lost_wakeups, 0, "{c:?}");
    assert!(c.interrupts >= 1_000, "{c:?}");
}
