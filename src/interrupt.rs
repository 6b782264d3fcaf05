//! Interruption: `interrupt()`, the flag, deferral and callbacks.
//!
//! The protocol (the state word, who may be signalled, exactly-once callbacks) is explained
//! once, in `control.rs`; the signal and how ours are told from others, in `signal.rs`.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::control::{INTERRUPT, Inner, KILL, RUNNING, current_ptr, with_current, with_live_tid};
use crate::errors::Interrupted;

/// Whether the calling thread has been interrupted (and not cleared since).
///
/// Deferral does not hide the flag: under [`defer_interrupts`] this still says `true`.
///
/// # Examples
///
/// ```
/// assert!(!killable::is_interrupted());
/// ```
#[inline]
pub fn is_interrupted() -> bool {
    let p = current_ptr();
    // SAFETY: CURRENT points to this thread's live `Inner` (control.rs). A thread without a
    // control block cannot have been interrupted: nobody can hold its `Thread`.
    !p.is_null() && unsafe { (*p).ctl.is_interrupted() }
}

/// Returns `Err(Interrupted)` if the calling thread has a stop request pending (an interrupt,
/// or a passed [`timeout`](crate::timeout)) that is not deferred.
///
/// This is the cooperative level: a loop that does no killable blocking call calls `check()?`
/// now and then. It is one thread-local load and one atomic load.
///
/// # Errors
///
/// [`Interrupted`] as above; the flag stays set (see [`clear_interrupt`]).
///
/// # Examples
///
/// ```
/// fn crunch() -> Result<u64, killable::Interrupted> {
///     let mut acc = 0u64;
///     for i in 0..1_000_000u64 {
///         if i % 1024 == 0 {
///             killable::check()?;
///         }
///         acc = acc.wrapping_add(i);
///     }
///     Ok(acc)
/// }
/// assert!(crunch().is_ok());
/// ```
#[inline]
pub fn check() -> Result<(), Interrupted> {
    let p = current_ptr();
    if p.is_null() {
        return Ok(());
    }
    // SAFETY: CURRENT points to this thread's live `Inner` (control.rs).
    unsafe { (*p).ctl.check() }
}

/// Clears the calling thread's interrupt flag (and a pending [`kill`](crate::Thread::kill)); returns
/// whether the interrupt flag was set.
///
/// # Examples
///
/// ```
/// killable::current().interrupt();
/// assert!(killable::clear_interrupt());
/// assert!(!killable::clear_interrupt());
/// ```
pub fn clear_interrupt() -> bool {
    with_current(|inner| inner.ctl.clear_interrupt())
}

/// A guard under which the calling thread's interrupts stay pending: killable calls are not
/// broken and [`check`] succeeds. Returned by [`defer_interrupts`].
///
/// # Examples
///
/// ```
/// let guard = killable::defer_interrupts();
/// killable::current().interrupt();
/// assert!(killable::check().is_ok()); // deferred
/// drop(guard);
/// assert!(killable::check().is_err());
/// killable::clear_interrupt();
/// ```
#[must_use = "interrupts are deferred only while the guard lives"]
pub struct DeferGuard {
    _not_send: PhantomData<*const ()>,
}

/// Defers interrupts on the calling thread until the returned guard drops.
///
/// Guards nest; a pending interrupt takes effect at the next killable call after the last guard
/// drops. Use it around a section that must not be abandoned half-way (a write that must be
/// whole, a protocol exchange). Like Boost's `disable_interruption` and
/// `PTHREAD_CANCEL_DISABLE`.
///
/// # Examples
///
/// ```
/// killable::current().interrupt();
/// {
///     let _guard = killable::defer_interrupts();
///     assert!(killable::check().is_ok());
///     assert!(killable::sleep(std::time::Duration::from_millis(1)).is_ok());
/// }
/// assert!(killable::check().is_err());
/// killable::clear_interrupt();
/// ```
pub fn defer_interrupts() -> DeferGuard {
    with_current(|inner| inner.ctl.defer());
    DeferGuard {
        _not_send: PhantomData,
    }
}

impl Drop for DeferGuard {
    fn drop(&mut self) {
        with_current(|inner| inner.ctl.undefer());
    }
}

impl fmt::Debug for DeferGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeferGuard")
    }
}

/// A registered interrupt callback; dropping it unregisters the callback. Returned by
/// [`on_interrupt`].
///
/// # Examples
///
/// ```
/// let registration = killable::on_interrupt(|| println!("interrupted"));
/// drop(registration); // unregistered: it will not run
/// ```
#[must_use = "the callback is unregistered when this is dropped"]
pub struct InterruptCallback {
    inner: std::sync::Arc<Inner>,
    id: u64,
}

/// Registers `f` to run when the calling thread is interrupted.
///
/// `f` runs on the thread that calls [`interrupt`](crate::Thread::interrupt), each time the
/// interrupt flag goes from clear to set; if the flag is already set, `f` runs once at once, on
/// the calling thread. Use it to wake a wait killable does not know about (close a socket,
/// notify a foreign condition variable), like C++20's `std::stop_callback`.
///
/// Dropping the returned [`InterruptCallback`] unregisters `f`; once the drop has returned, `f`
/// never runs again (the drop waits for a run in progress to finish). Do not drop the
/// registration from inside `f`: that would wait for itself. `f` runs with no killable lock
/// held, so it may interrupt other threads, including threads whose callbacks interrupt this
/// one (a thread already interrupted is not interrupted again, so the chain ends).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// let woken = Arc::new(AtomicBool::new(false));
/// let w = woken.clone();
/// let h = killable::spawn(move || {
///     // If the interrupt came first, the callback runs right here instead.
///     let _cb = killable::on_interrupt(move || w.store(true, Ordering::SeqCst));
///     while killable::check().is_ok() {
///         std::thread::yield_now();
///     }
/// });
/// h.interrupt();
/// h.join().unwrap();
/// assert!(woken.load(Ordering::SeqCst));
/// ```
pub fn on_interrupt<F: FnMut() + Send + 'static>(f: F) -> InterruptCallback {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let inner = crate::control::current_inner();
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let already = inner.ctl.add_callback(id, Box::new(f));
    // Built before the callback runs, so that a panic in it unregisters it on the way out.
    let registration = InterruptCallback { inner, id };
    if let Some(cell) = already {
        cell.run();
    }
    registration
}

impl Drop for InterruptCallback {
    fn drop(&mut self) {
        self.inner.ctl.remove_callback(self.id);
    }
}

impl fmt::Debug for InterruptCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterruptCallback")
            .field("thread_id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

pub(crate) fn try_interrupt(this: &Inner) -> io::Result<()> {
    request(this, INTERRUPT)
}

/// Sets request bits (`INTERRUPT`, plus `KILL` for a kill) and signals the thread if a bit
/// was newly set. The flag is set even if the handler cannot be used, so cooperative code
/// still stops.
pub(crate) fn request(this: &Inner, bits: u32) -> io::Result<()> {
    request_with(this, bits, crate::signal::ensure_installed())
}

/// `request` with the handler check already done (once for many threads, in `stop.rs`).
pub(crate) fn request_with(
    this: &Inner,
    bits: u32,
    installed: io::Result<libc::c_int>,
) -> io::Result<()> {
    let inner = this;
    if inner.done_state() != RUNNING {
        // Finished, or a thread of a parent process (whose callback lock a parent thread may
        // have held at the fork): set the flag for anyone looking, signal nobody, run nothing.
        inner.ctl.set_quietly(bits);
        return installed.map(drop);
    }
    // The bit is set, and the callbacks to run are taken, in one step (control.rs), so that
    // a callback registering at the same moment runs exactly once. No lock is held while the
    // signal is sent or the callbacks run.
    let (old, to_run) = inner.ctl.request(bits);
    // A kill is sent again even when one is pending: a kill left waiting (kill.rs) may have
    // lost its signal, and a second signal costs nothing.
    if old.had(bits) && bits & KILL == 0 {
        return installed.map(drop);
    }
    // A deferring thread is not signalled: the signal would break calls that are not
    // killable's (std's, C's) with EINTR. The bit waits for its next killable call, which
    // cannot come before its guard is dropped.
    let panic = run_callbacks(to_run);
    let sent = if old.deferring() {
        installed.map(drop)
    } else {
        installed.and_then(|sig| send(inner, sig))
    };
    resume(panic);
    sent
}

/// A panic caught in an interrupt callback, to be resumed once the interrupt is complete.
pub(crate) type CallbackPanic = Option<Box<dyn std::any::Any + Send>>;

/// Runs interrupt callbacks, each exactly once even if another panics; returns the first panic,
/// for `resume` once the signal has been sent too.
///
/// They run before the signal is sent: a target waiting in a killable call cannot wake, finish
/// and drop its registration before its callbacks have run.
pub(crate) fn run_callbacks(snapshot: crate::control::Snapshot) -> CallbackPanic {
    snapshot.run()
}

/// Resumes a callback's panic, if there was one.
pub(crate) fn resume(panic: CallbackPanic) {
    if let Some(p) = panic {
        std::panic::resume_unwind(p);
    }
}

pub(crate) fn thread_is_interrupted(this: &Inner) -> bool {
    this.ctl.is_interrupted()
}

/// Sends killable's signal to the thread, if it is (still) running.
pub(crate) fn send(inner: &Inner, sig: libc::c_int) -> io::Result<()> {
    // The error is read inside the closure, right after the call: `with_live_tid` may make a
    // system call of its own (a wake) on the way out.
    let sent = with_live_tid(inner, |tid| {
        if crate::signal::send_marked(tid, sig) != 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    });
    match sent {
        Some(Err(e)) if e.raw_os_error() != Some(libc::ESRCH) => Err(e),
        // Sent; or not started yet (its first check sees the bit, and `seal::on_start` the
        // seal request); or gone.
        _ => Ok(()),
    }
}
