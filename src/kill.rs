//! Kill regions: calls into foreign code that another thread may abandon.
//!
//! # Internal workings
//!
//! `kill_region` hands the foreign function to `killable_region_enter` (`src/sys/kill.c`), which
//! saves the signal mask, `sigsetjmp`s, publishes the region in a C thread-local, re-checks the
//! control word for a pending kill, and calls the function. `Thread::kill` sets the
//! `INTERRUPT` and `KILL` bits and signals the thread. killable's signal entry point is the C
//! function `killable_signal_entry`: it calls the Rust handler (`signal.rs`), which answers
//! "abandon" when a kill is pending and not deferred and `killable_region_verdict` says the
//! interrupted code is the innermost region's own; the Rust handler has returned by then, and
//! the C entry `siglongjmp`s to that region's entry, which restores the saved mask. The jump
//! passes over the C entry's frame, the kernel's signal frame and the foreign function's frames:
//! never a Rust frame, provided the foreign code does not call back into Rust (the caller's
//! promise, see [`kill_region`]).
//!
//! Three races are closed:
//!
//! * A kill whose signal arrives before the region is published left its bit set, and the region
//!   entry sees it; one whose signal arrives after finds the region.
//! * Between the `sigsetjmp` of a nested region and its publication, the innermost published
//!   region is the outer one. A flag (`killable_region_entering`) makes the handler leave the kill
//!   pending there, and the entry's re-check abandons the inner region: always the innermost.
//! * Another signal handler (the application's, perhaps Rust) may run on top of the region when
//!   the kill arrives. The kernel adds that handler's signal to the mask it runs with, so the
//!   interrupted context's `uc_sigmask` differs from the mask saved at entry; then the handler
//!   does not jump. It blocks killable's signal in the context it returns to and queues the
//!   signal again: when the other handler returns, the kernel restores the region's mask, the
//!   signal is delivered on top of the region's own code, and the kill proceeds. The cost is that
//!   a region whose C code changes its own signal mask is killed only once the mask is back: the
//!   signal stays blocked in it until its code restores the entry mask, or until the region
//!   returns, whose exit then restores it (`killable_region_postponed`).
//! * A kill is sent again by every `kill()`, even with one pending: a standard signal is not
//!   queued twice, so a kill's signal can be merged with a pending signal of the same number
//!   (the handler then acts on the one delivery that is left, whoever sent it).

use std::io;
use std::sync::atomic::Ordering;

use crate::control::{INTERRUPT, Inner, KILL, with_current};
use crate::errors::Killed;

// Keep in sync with src/sys/kill.c.
unsafe extern "C" {
    fn killable_region_enter(
        f: unsafe extern "C" fn(*mut libc::c_void),
        arg: *mut libc::c_void,
        state: *mut u32,
    ) -> libc::c_int;
}

/// Calls the foreign function `f(arg)` in a *kill region*: [`Thread::kill`](crate::Thread::kill) from another thread
/// abandons it at whatever instruction it is executing and makes this return `Err(Killed)`.
///
/// Returns `Ok(())` when `f` returns. If the thread already has a stop pending (an interrupt, a
/// kill or a passed [`timeout`](crate::timeout)), `f` is not called and the result is
/// `Err(Killed)` (for a passed timeout too: [`is_killed`](crate::is_killed) is then true and
/// [`is_timeout`](crate::is_timeout) false; `killable::check().is_err_and(|e| e.is_timeout())` right after
/// tells it apart). Under [`defer_interrupts`](crate::defer_interrupts) a kill waits: the region
/// runs to its end. The signal mask is restored after an abandon.
///
/// Regions nest when foreign code enters one with the C function `killable_region_nested`
/// (declared in `src/sys/kill.c`); a kill abandons the innermost one only.
///
/// # Safety
///
/// `f` may be abandoned at any instruction, by a `siglongjmp` out of a signal handler. The
/// caller promises:
///
/// * `f`, and everything it calls, is foreign code that never calls back into Rust: jumping over
///   a Rust frame is undefined behaviour (its destructors and unwinding would be skipped), and
///   killable cannot tell a Rust callback from C code.
/// * `f` holds no lock that another thread, or this thread's code after the region, needs: an
///   abandoned lock stays locked forever.
/// * `f` is not inside the allocator or another non-async-signal-safe part of the C library
///   (`malloc`, `free`, `printf`, `dlopen`...) when it can be killed: those keep internal locks
///   and state that an abandon leaves half-updated. Code that only computes, or only makes
///   system calls, is fine.
/// * Whatever `f` allocates or opens is the caller's to release after `Err(Killed)`: hand it
///   back through `arg`, because `f`'s own cleanup code will not run.
/// * `arg` is valid for whatever `f` does with it, for the whole call.
///
/// # Examples
///
/// ```
/// use std::ffi::c_void;
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// // Stands for a C library function that never returns.
/// unsafe extern "C" fn spin(flag: *mut c_void) {
///     // SAFETY: the caller passes an AtomicBool that outlives the call.
///     let started = unsafe { &*(flag as *const AtomicBool) };
///     started.store(true, Ordering::SeqCst);
///     loop {
///         std::hint::spin_loop();
///     }
/// }
///
/// static STARTED: AtomicBool = AtomicBool::new(false);
/// let h = killable::spawn(|| {
///     // SAFETY: `spin` holds no lock, does not allocate and calls nothing.
///     unsafe { killable::kill_region(spin, &STARTED as *const AtomicBool as *mut c_void) }
/// });
/// while !STARTED.load(Ordering::SeqCst) {
///     std::thread::yield_now();
/// }
/// h.thread().kill();
/// assert_eq!(h.join().unwrap(), Err(killable::Killed));
/// ```
///
/// (`spin` is written in Rust here only to keep the example self-contained; it makes no call
/// and has no destructor, so abandoning it skips nothing.)
pub unsafe fn kill_region(
    f: unsafe extern "C" fn(*mut libc::c_void),
    arg: *mut libc::c_void,
) -> Result<(), Killed> {
    with_current(|inner| {
        if inner.ctl.check().is_err() {
            return Err(Killed);
        }
        inner.ctl.regions.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the caller upholds `f`'s contract (see `# Safety`); the C function calls
        // `f(arg)` between its sigsetjmp and the restoration of the region chain, and
        // `inner.ctl.state` outlives the call.
        let r = unsafe { killable_region_enter(f, arg, inner.ctl.state_ptr()) };
        inner.ctl.regions.fetch_sub(1, Ordering::SeqCst);
        if r == 0 {
            Ok(())
        } else {
            // The kill is consumed; the interrupt stays, so the thread winds down.
            inner.ctl.take_kill();
            Err(Killed)
        }
    })
}

pub(crate) fn try_kill(this: &Inner) -> io::Result<()> {
    crate::interrupt::request(this, INTERRUPT | KILL)
}

pub(crate) fn in_kill_region(this: &Inner) -> bool {
    this.ctl.regions.load(Ordering::SeqCst) != 0
}
