//! Threads you can stop.
//!
//! `killable` creates threads with `pthread_create` behind a safe, std-shaped API
//! ([`Builder`], [`spawn`], [`JoinHandle`], [`Thread`], [`current`]) and can stop a thread that
//! sits in a blocking call: [`Thread::interrupt`] makes the killable call it is blocked in (or
//! its next one) fail with [`Interrupted`], race-free, without losing data.
//!
//! # Examples
//!
//! ```
//! use std::io::Read;
//! use std::net::TcpListener;
//! use killable::io::Interruptible;
//!
//! let listener = Interruptible::new(TcpListener::bind("127.0.0.1:0")?);
//! let server = killable::Builder::new().name("server".into()).spawn(move || -> std::io::Result<()> {
//!     loop {
//!         let (mut conn, _peer) = listener.accept()?; // an interrupt ends the loop here...
//!         let mut buf = [0u8; 512];
//!         while conn.read(&mut buf)? > 0 {}             // ...or here
//!     }
//! })?;
//! server.interrupt();
//! let err = server.join().unwrap().unwrap_err();
//! assert!(killable::is_interrupt(&err));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # How an interrupt travels
//!
//! [`Thread::interrupt`] sets a bit in the target's control block and sends it killable's signal
//! ([`set_signal`], SIGUSR1 by default) with `rt_tgsigqueueinfo`, marked as killable's. The handler is installed without
//! `SA_RESTART`, so a system call the target is blocked in returns `EINTR`. Every killable
//! blocking call goes through one assembly stub that loads the bit and enters the kernel between
//! two labels; if the signal lands between the check and the kernel, the handler moves the
//! thread to a third label that returns at once. So the interrupt is never lost, and a call that
//! had completed keeps its result. The error converts to an [`std::io::Error`] whose kind is
//! never `Interrupted` (std's loops retry that kind), and [`is_interrupt`] recognises it.
//!
//! The bit is sticky until [`clear_interrupt`]; [`defer_interrupts`] holds interrupts back for a
//! section; [`on_interrupt`] registers a callback that runs on the interrupter; [`timeout`]
//! applies the same mechanism to a deadline; [`check`] is the cooperative test for loops.
//!
//! # Errors, kind by kind
//!
//! Every way killable stops a call has its own error and its own predicate; none of them is
//! [`std::io::ErrorKind::Interrupted`], which std's loops retry.
//!
//! | what stopped the call | the error | in an `io::Error` | recognise it with |
//! |---|---|---|---|
//! | an **interrupt**: [`Thread::interrupt`], a kill outside a kill region, [`JoinHandle::stop`], [`shutdown`]; also a seal, for every killable call (its I/O and its waits: [`sleep`], [`park`], [`sync::Condvar`], [`JoinHandle::wait`]), since a seal is also an interrupt and killable's calls look at the interrupt first | [`Interrupted`] | kind `Other` | [`is_interrupt`] |
//! | a **timeout**: the [`timeout`] around the call passed | [`Interrupted`] whose [`is_timeout`](Interrupted::is_timeout) is true | kind `TimedOut` | [`is_timeout`] (and [`is_interrupt`] is false) |
//! | a **seal**: [`Thread::seal`], or the last level of a stop; every blocking system call of the thread that is not killable's: std's (`accept`, `read_line`, `thread::sleep`...) and the C library's; killable's I/O too once the thread has [cleared](clear_interrupt) the seal's interrupt | the kernel's `ECANCELED` | `raw_os_error() == Some(ECANCELED)` (kind `Uncategorized`) | [`is_sealed`] |
//! | a **kill**: [`Thread::kill`] abandoned a [`kill_region`]; or the region was not run at all, because a stop was already pending when it was entered (an interrupt, a kill, or a passed [`timeout`]: [`is_timeout`] is then false) | [`Killed`] | kind `Other` | [`is_killed`] |
//!
//! ```
//! use std::time::Duration;
//! let timed_out: std::io::Error = killable::timeout(Duration::from_millis(1), || {
//!     killable::sleep(Duration::from_secs(60))
//! })
//! .unwrap_err()
//! .into();
//! assert!(killable::is_timeout(&timed_out) && !killable::is_interrupt(&timed_out));
//! ```
//!
//! # When interrupting is not enough
//!
//! Interruption reaches code that uses killable's calls. Two stronger levels reach the rest:
//!
//! * [`Thread::seal`] (safe): the thread installs, for itself alone, a seccomp filter under
//!   which its blocking system calls fail with `ECANCELED`. Code that retries `EINTR` forever,
//!   std's included, then gets an error it does not retry, and unwinds through its own error
//!   paths and destructors. Only system calls fail; nothing is jumped over.
//! * [`Thread::kill`] (safe to call) abandons a [`kill_region`]: a call into foreign C code,
//!   entered with `unsafe` because the caller promises the C code may be abandoned at any
//!   instruction. The `sigsetjmp`, the call and the `siglongjmp` all happen in C, so no Rust
//!   frame is ever jumped over.
//!
//! [`JoinHandle::stop`] escalates through the three levels within a grace period (skipping the
//! kill's wait when it can change nothing: a thread still interrupted, blocked in the kernel and
//! in no kill region; [`JoinHandle::stop_with`] and
//! [`StopOptions`] choose the levels), reports which level stopped it and when ([`Stopped`]),
//! and, if the thread still runs, hands back a [`Diagnosis`] read from `/proc`; [`shutdown`] does the same
//! for every worker at once, and [`shutdown_on_signals`] runs it on Ctrl-C.
//!
//! # Async code
//!
//! [`spawn_blocking`] runs a blocking job on a pool of reused killable threads and returns a
//! [`BlockingTask`], a future of its result; dropping the task or calling
//! [`BlockingTask::abort`] interrupts the job. It needs no particular runtime.
//!
//! # Signals
//!
//! killable uses one signal (SIGUSR1 unless [`set_signal`] chose SIGUSR2 or a real-time signal).
//! Its handler takes only the signals killable itself sent (`SI_QUEUE` from this process, with a
//! per-process 64-bit secret as the value) and its own timers'; every other delivery, from
//! `kill`, another process, or the application's own `raise`, goes to the handler that was
//! installed before killable's. A kill never jumps out of another signal handler running on top
//! of a kill region: it waits until that handler has returned (see [`kill_region`]).
//!
//! # Platform
//!
//! Linux on x86_64, aarch64 and riscv64 (see the README's platforms table); the crate refuses to
//! build elsewhere.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(not(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )
)))]
compile_error!("killable supports only Linux on x86_64, aarch64 and riscv64");

/// The README's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod arch;
mod blocking;
mod control;
mod deadline;
mod diagnose;
mod errors;
mod escalate;
mod futex;
mod group;
mod interrupt;
pub mod io;
mod join_handle;
mod kill;
mod registry;
mod scope;
mod seal;
mod shutdown;
mod signal;
mod spawn;
mod stack;
pub mod sync;
mod syscall;
#[cfg_attr(target_arch = "aarch64", path = "syscall_names_aarch64.rs")]
#[cfg_attr(target_arch = "riscv64", path = "syscall_names_riscv64.rs")]
mod syscall_names;
mod thread;
mod time;

pub use blocking::{BlockingPool, BlockingPoolBuilder, BlockingTask, spawn_blocking};
pub use deadline::{timeout, timeout_at};
pub use diagnose::Diagnosis;
pub use errors::{Interrupted, Killed, is_interrupt, is_killed, is_sealed, is_timeout};
pub use escalate::{StopLevel, StopOptions, StopOutcome};
pub use group::Group;
pub use interrupt::{
    DeferGuard, InterruptCallback, check, clear_interrupt, defer_interrupts, is_interrupted,
    on_interrupt,
};
pub use join_handle::{JoinHandle, Stopped, Stuck};
pub use kill::kill_region;
pub use registry::{ThreadInfo, threads};
pub use scope::{Scope, ScopedJoinHandle, scope};
pub use shutdown::{ShutdownReport, SignalShutdown, shutdown, shutdown_on_signals};
pub use signal::{SIGUSR1, SIGUSR2, set_signal, signal, sigrtmax, sigrtmin};
pub use spawn::{Builder, spawn};
pub use sync::{park, park_timeout, sleep, wait_child, wait_child_or_kill};
pub use thread::{Thread, ThreadId, current};
