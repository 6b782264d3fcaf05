//! The Rust side of the race-free system call (`src/sys/syscall_x86_64.S`).
//!
//! Every killable blocking call goes through [`call`] (or [`call_once`] when a retry needs
//! care). See `interrupt.rs` for the control word the stub loads and `signal.rs` for the
//! handler that moves a program counter out of the stub's window.

use std::io;

use crate::interrupt::{Control, Interrupted, with_current};

// Keep in sync with src/sys/syscall_x86_64.S.
unsafe extern "C" {
    fn killable_syscall_cp(
        state: *const u32,
        nr: libc::c_long,
        a0: libc::c_long,
        a1: libc::c_long,
        a2: libc::c_long,
        a3: libc::c_long,
        a4: libc::c_long,
        a5: libc::c_long,
    ) -> libc::c_long;
    static killable_cp_begin: u8;
    static killable_cp_end: u8;
    static killable_cp_cancel: u8;
}

/// Whether a program counter lies where the stub has checked (or is about to check) the control
/// word but has not entered the kernel: `[begin, end)`.
#[inline(always)]
pub(crate) fn in_window(pc: usize) -> bool {
    // Only the addresses of the labels are taken; they are never read.
    let (begin, end) = (
        &raw const killable_cp_begin as usize,
        &raw const killable_cp_end as usize,
    );
    pc >= begin && pc < end
}

/// The label that returns `-EINTR` without entering the kernel.
#[inline(always)]
pub(crate) fn cancel_address() -> usize {
    &raw const killable_cp_cancel as usize
}

/// How one pass through the stub failed.
pub(crate) enum Fail {
    /// A stop was requested (interrupt or timeout).
    Stop(Interrupted),
    /// The kernel's error. `EINTR` here means a signal that was not a stop request for us.
    Os(i32),
}

impl From<Fail> for io::Error {
    fn from(f: Fail) -> io::Error {
        match f {
            Fail::Stop(i) => i.into(),
            Fail::Os(e) => io::Error::from_raw_os_error(e),
        }
    }
}

/// One pass through the stub, on `ctl` (the calling thread's control block).
///
/// # Performance
///
/// Everything between the caller and the stub is `#[inline(always)]`, so the `syscall`
/// instruction runs one frame below the user's call site, as in libc's wrappers. Returns after a
/// system call are mispredicted on machines whose kernel mitigations clear return prediction
/// (measured here: each extra frame cost 6 to 27 ns on a 200 ns `read`).
#[inline(always)]
pub(crate) fn call_once(
    ctl: &Control,
    nr: libc::c_long,
    a: [libc::c_long; 6],
) -> Result<libc::c_long, Fail> {
    let state = ctl.state.as_ptr();
    // SAFETY: the stub performs exactly the system call `nr` with these arguments; the caller
    // vouches for them (each wrapper passes live buffers with their lengths); `state` outlives it.
    let r = unsafe { killable_syscall_cp(state, nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if (-4095..0).contains(&r) {
        let e = -r as i32;
        if e == libc::EINTR {
            ctl.check().map_err(Fail::Stop)?;
        }
        return Err(Fail::Os(e));
    }
    Ok(r)
}

/// A killable system call on the calling thread, retried after signals that were not stop
/// requests. For calls whose retry is the same call (reads, writes, accepts, absolute sleeps).
#[inline(always)]
pub(crate) fn call(nr: libc::c_long, a: [libc::c_long; 6]) -> Result<libc::c_long, Fail> {
    with_current(|inner| {
        loop {
            match call_once(&inner.ctl, nr, a) {
                Err(Fail::Os(libc::EINTR)) => continue,
                r => return r,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use crate::stress;

    fn killable_read(r: &std::io::PipeReader, buf: &mut [u8]) -> std::io::Result<usize> {
        crate::io::Interruptible::new(r).read(buf)
    }

    /// The naive alternative to the stub: check the flag, then call a plain `read`. A signal
    /// that lands between the two is handled and forgotten, and the read blocks. The window is
    /// widened with a spin so the harness can hit it often.
    fn racy_read(r: &std::io::PipeReader, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            crate::check()?;
            let t = std::time::Instant::now();
            while t.elapsed() < Duration::from_micros(20) {
                std::hint::spin_loop();
            }
            // SAFETY: reading into a live buffer of the given length.
            let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(e);
            }
        }
    }

    #[test]
    fn the_harness_catches_lost_wakeups_in_a_racy_check_then_read() {
        let c = stress::run(
            5_000,
            racy_read,
            Duration::from_millis(500),
            3,
            Duration::from_secs(120),
        );
        println!("racy check-then-read: {c:?}");
        assert!(
            c.lost_wakeups >= 1,
            "the racy variant lost nothing in {c:?}: the harness proves nothing"
        );
    }

    #[test]
    fn no_lost_wakeups_with_the_stub() {
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

    #[test]
    fn labels_are_ordered() {
        let (b, e, c) = (
            &raw const killable_cp_begin as usize,
            &raw const killable_cp_end as usize,
            &raw const killable_cp_cancel as usize,
        );
        assert!(b < e && e < c, "{b:#x} {e:#x} {c:#x}");
        assert!(in_window(b) && in_window(e - 1) && !in_window(e) && !in_window(c));
    }

    #[test]
    fn a_plain_call_goes_through() {
        let r = call(libc::SYS_getpid, [0; 6]).ok().unwrap();
        assert_eq!(r, std::process::id() as libc::c_long);
    }

    #[test]
    fn errors_come_back_as_errno() {
        let Err(Fail::Os(e)) = call(libc::SYS_close, [-1, 0, 0, 0, 0, 0]) else {
            panic!("close(-1) succeeded")
        };
        assert_eq!(e, libc::EBADF);
    }
}
