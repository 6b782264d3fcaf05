//! Timeouts: every killable call inside `timeout(d, f)` fails with a timed-out error once `d`
//! has passed.
//!
//! # Internal workings
//!
//! No thread per timeout: each thread that uses one gets a single POSIX timer
//! (`timer_create` with `SIGEV_THREAD_ID`), created on first use and deleted when the thread
//! exits, that delivers killable's signal to the thread itself with `SI_TIMER` and this
//! thread's `Inner` address as its value. The innermost deadline lives in the thread's
//! `Control::deadline_ns`; when the timer fires, the handler checks the clock against it and
//! sets the `DEADLINE` request bit, then breaks the call exactly as an interrupt does (same
//! stub, same race-free window). Leaving a `timeout` restores the enclosing deadline (or none)
//! and clears the bit, on every path, panics included.

use std::cell::Cell;
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::control::{Control, DEADLINE, Inner, current_inner, gettid};
use crate::time::{monotonic_timespec, now_ns, ts_to_ns};

/// Runs `f`; every killable call `f` makes on this thread after `limit` has passed fails with
/// [`Interrupted`](crate::Interrupted) whose [`is_timeout`](crate::Interrupted::is_timeout) is
/// true, as an [`io::Error`] of kind [`io::ErrorKind::TimedOut`] that
/// [`is_timeout`](crate::is_timeout) recognises (and [`is_interrupt`](crate::is_interrupt) does
/// not: a deadline is not a request to stop).
///
/// A call blocked when the time passes is broken, like an interrupt breaks it. Timeouts nest:
/// the earliest one in force applies. Only killable's calls are affected; the closure's other
/// code runs to completion. No extra thread is used.
///
/// # Panics
///
/// If the thread's timer cannot be created (the process is out of timers) or killable's
/// signal handler cannot be installed.
///
/// # Examples
///
/// ```
/// use std::io::Read;
/// use std::time::Duration;
///
/// let (reader, _writer) = std::io::pipe().unwrap();
/// let mut reader = killable::io::Interruptible::new(reader);
/// let mut buf = [0u8; 8];
/// let err = killable::timeout(Duration::from_millis(20), || reader.read(&mut buf)).unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
/// assert!(killable::is_timeout(&err) && !killable::is_interrupt(&err));
/// ```
pub fn timeout<R>(limit: Duration, f: impl FnOnce() -> R) -> R {
    match Instant::now().checked_add(limit) {
        Some(at) => timeout_at(at, f),
        None => f(),
    }
}

/// Like [`timeout`], with an absolute deadline.
///
/// # Panics
///
/// As [`timeout`].
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// let r = killable::timeout_at(Instant::now() + Duration::from_millis(10), || {
///     killable::sleep(Duration::from_secs(60))
/// });
/// assert!(r.unwrap_err().is_timeout());
/// ```
pub fn timeout_at<R>(at: Instant, f: impl FnOnce() -> R) -> R {
    let me = current_inner();
    let ctl = &me.ctl;
    let at_ns = ts_to_ns(&monotonic_timespec(at)).max(1);
    let prev = ctl.deadline_ns.load(Ordering::Relaxed);
    let effective = if prev != 0 { prev.min(at_ns) } else { at_ns };
    let _restore = Restore { inner: &me, prev };
    enter(&me, effective);
    f()
}

fn enter(inner: &Inner, at_ns: u64) {
    let ctl = &inner.ctl;
    ctl.deadline_ns.store(at_ns, Ordering::Release);
    if now_ns() >= at_ns {
        ctl.set_quietly(DEADLINE);
    } else if let Err(e) = arm(inner, at_ns) {
        panic!("killable::timeout: {e}");
    }
}

struct Restore<'a> {
    inner: &'a Inner,
    prev: u64,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let ctl: &Control = &self.inner.ctl;
        ctl.deadline_ns.store(self.prev, Ordering::Release);
        ctl.clear_deadline();
        if self.prev != 0 {
            enter(self.inner, self.prev);
        } else {
            disarm();
        }
    }
}

/// This process's id (`getpid(2)`, through std), asked each time: a fork child must see its
/// own pid here, to tell that its copy of the parent's timer id names no timer.
fn this_pid() -> libc::pid_t {
    std::process::id() as libc::pid_t
}

/// The calling thread's timer and the pid it was created in (timers do not survive `fork`).
struct TimerSlot(Cell<Option<(libc::timer_t, libc::pid_t)>>);

impl Drop for TimerSlot {
    fn drop(&mut self) {
        if let Some((id, pid)) = self.0.get() {
            if pid == this_pid() {
                // SAFETY: `id` is a timer this thread created in this process and not deleted.
                unsafe { libc::timer_delete(id) };
            }
        }
    }
}

thread_local! {
    static TIMER: TimerSlot = const { TimerSlot(Cell::new(None)) };
}

fn arm(inner: &Inner, at_ns: u64) -> io::Result<()> {
    let sig = crate::signal::ensure_installed()?;
    let id = TIMER.with(|slot| -> io::Result<libc::timer_t> {
        let pid = this_pid();
        if let Some((id, p)) = slot.0.get() {
            if p == pid {
                return Ok(id);
            }
        }
        // SAFETY: sigevent is plain data; zeroed then filled in.
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = sig;
        sev.sigev_value = libc::sigval {
            sival_ptr: inner as *const Inner as *mut libc::c_void,
        };
        sev.sigev_notify_thread_id = gettid();
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: `sev` and `id` are valid for the call.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut id) } != 0 {
            return Err(io::Error::other(format!(
                "cannot create the thread's POSIX timer: {}",
                io::Error::last_os_error()
            )));
        }
        slot.0.set(Some((id, pid)));
        Ok(id)
    })?;
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: (at_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (at_ns % 1_000_000_000) as libc::c_long,
        },
    };
    // SAFETY: `id` is this thread's live timer; `spec` is valid.
    if unsafe { libc::timer_settime(id, libc::TIMER_ABSTIME, &spec, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn disarm() {
    let _ = TIMER.try_with(|slot| {
        if let Some((id, pid)) = slot.0.get() {
            if pid == this_pid() {
                // An all-zero `it_value` stops the timer.
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                let spec = libc::itimerspec {
                    it_interval: zero,
                    it_value: zero,
                };
                // SAFETY: `id` is this thread's live timer (created in this process, not
                // deleted); `spec` is valid for the call.
                unsafe { libc::timer_settime(id, 0, &spec, std::ptr::null_mut()) };
            }
        }
    });
}
