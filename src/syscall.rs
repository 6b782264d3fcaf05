//! The Rust side of the race-free system call (`src/sys/syscall_<arch>.S`: x86_64, aarch64,
//! riscv64; one contract, described in the x86_64 file).
//!
//! Every killable blocking call goes through [`call`] (or [`call_once`] when a retry needs
//! care). See `interrupt.rs` for the control word the stub loads and `signal.rs` for the
//! handler that moves a program counter out of the stub's window.

use std::io;

use crate::control::{Control, with_current};
use crate::errors::Interrupted;

// Keep in sync with src/sys/syscall_<arch>.S.
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
    let state = ctl.state_ptr();
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
