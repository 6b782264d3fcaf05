//! killable's signal: choosing it, installing the handler, telling our signals from others.
//!
//! # Internal workings
//!
//! The handler is installed once, lazily (first `interrupt()` or first `timeout`), with
//! `SA_SIGINFO | SA_ONSTACK` and **without `SA_RESTART`**: a system call the target is blocked
//! in must return `EINTR` rather than be restarted by the kernel, or the interrupt would be lost.
//! This is the one place killable departs from signal-hook's practice.
//!
//! It runs **on the alternate stack** (`SA_ONSTACK`), like the overflow report. An interrupt
//! may reach a thread at any depth: one computing or blocked with a few KB of stack left, far
//! from overflowing, has no room below its stack pointer for the kernel's signal frame (the
//! size of `AT_MINSIGSTKSZ`, several KB with the wider vector registers). On the thread's own
//! stack the kernel could not deliver the interrupt there and would raise SIGSEGV instead: the
//! interrupt is lost and the fault looks like an overflow that never happened. And the flag is
//! per signal, not per handler: the application's own handler, chained from ours for a signal
//! that is not ours, runs on our frame, so without `SA_ONSTACK` it would lose the alternate
//! stack it asked for. Every thread that can take the signal has an alternate stack (killable
//! gives one to each thread it spawns, std to its own threads); without one, the kernel uses
//! the thread's stack, as it would without the flag.
//!
//! The price of the alternate stack was paid in the stop window: the first signal a thread got
//! wrote its frame to pages nobody had touched, and in `shutdown` of a thousand threads that
//! was a page fault per thread, each taking the address-space lock against the others. So the
//! pages a signal frame and this handler's frames use are touched when an alternate stack is
//! first mapped, in the new thread before it runs its closure (`stack.rs`, `populate_top`),
//! and mappings are never unmapped but reused, already touched, by later threads: a stop
//! writes only to resident pages.
//!
//! The handler is async-signal-safe: it saves and restores errno, reads the `CURRENT`
//! thread-local pointer and a few atomics (the pid is cached, not asked for), may call
//! `clock_gettime`, and never allocates, locks or panics. It decides whether a signal is ours:
//!
//! * `si_code == SI_QUEUE`, `si_pid` is this process and the value is this process's secret:
//!   sent by `interrupt()` with `rt_tgsigqueueinfo`. The secret is 64 random bits drawn when the
//!   handler is installed; another process can forge the code and the pid, but not the secret.
//!   The application's own `raise` or `pthread_kill` (`SI_TKILL`, no value) is not ours, so it
//!   still reaches the application's handler.
//! * `si_code == SI_TIMER` with the value killable put in its own per-thread timer (this thread's
//!   `Inner` address): the thread's `timeout` may have passed. The handler re-reads the clock and
//!   sets `DEADLINE` only if the deadline really has passed, so a stale or forged timer signal
//!   can at worst cause a spurious wake-up, which the Rust side retries.
//!
//! Anything else goes to the action that was installed before ours: its handler is called with
//! the same arguments; if it was `SIG_DFL` or `SIG_IGN` the signal is ignored (so a stray
//! `kill -USR1` no longer terminates the process once killable has installed its handler).
//!
//! After that, on every delivery, ours or not, the handler acts on the thread's own control
//! block. The mark decides only what is chained: acting on the control block is driven by
//! requests that only a real interrupter can set, so a forged signal can at most cause a
//! spurious wake-up, which the Rust side retries. It is needed because a standard signal is
//! queued once: an application's pending SIGUSR1 makes the kernel drop killable's, and the one
//! delivery left must serve both.
//!
//! Then the handler looks at the interrupted program counter in the `ucontext`: if
//! it lies in the stub's `[begin, end)` the thread had not entered the kernel yet, and the
//! handler moves it to the stub's cancel label, which returns `-EINTR`. With a kill pending it
//! first asks the kill-region code whether the interrupted code is the innermost region's own
//! (`kill.rs` explains the verdict); only then does the C entry jump.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use nix::errno::Errno;
use nix::sys::signal::SigSet;

use crate::control::{DEADLINE, Inner, current_ptr, init_fork_handlers, pid};
use crate::syscall;

// The handler's entry point, in C (src/sys/signal_entry.c): a kill's jump must start from C.
unsafe extern "C" {
    fn killable_set_rust_handler(
        h: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) -> libc::c_int,
    );
    fn killable_signal_entry(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void);
}

// The kill-region side of the handler's decision (src/sys/kill.c; kill.rs explains it).
unsafe extern "C" {
    fn killable_region_verdict(ctx: *mut libc::c_void) -> libc::c_int;
    fn killable_region_note_postponed();
}

static SIGNAL: AtomicI32 = AtomicI32::new(libc::SIGUSR1);
/// The value killable's own signals carry (module docs). Set before the handler is installed.
static SECRET: AtomicUsize = AtomicUsize::new(0);
/// This process's real uid, for the `si_uid` of our signals (set with `SECRET`).
static UID: AtomicU32 = AtomicU32::new(0);

/// Sends killable's signal to thread `tid` of this process, marked as ours. Returns the raw
/// system call result (0, or -1 with errno set).
pub(crate) fn send_marked(tid: libc::pid_t, sig: libc::c_int) -> libc::c_long {
    // SAFETY: siginfo_t is plain data; zeroed, then the fields of the `_rt` member are set.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    info.si_signo = sig;
    info.si_code = libc::SI_QUEUE;
    let raw = (&raw mut info).cast::<u8>();
    // SAFETY: layout of `_rt` in siginfo_t on every supported architecture (arch.rs): si_pid at
    // byte 16, si_uid at 20, si_value at 24; all inside the 128-byte struct we own.
    unsafe {
        raw.add(16).cast::<i32>().write_unaligned(pid());
        raw.add(20)
            .cast::<u32>()
            .write_unaligned(UID.load(Ordering::Relaxed));
        raw.add(24)
            .cast::<usize>()
            .write_unaligned(SECRET.load(Ordering::Relaxed));
    }
    // SAFETY: the kernel copies `info`; the target is a thread of this process.
    unsafe { libc::syscall(libc::SYS_rt_tgsigqueueinfo, pid(), tid, sig, &info) }
}

/// 64 random bits for `SECRET`, from the kernel's CSPRNG (`/dev/urandom`; std's `RandomState`
/// makes no promise of unpredictability, and nix has no `getrandom`). Called from `install`,
/// never from a handler; the handler is installed before any thread can be sealed, so the
/// seal's ban on `read` does not apply here.
fn draw_secret() -> usize {
    let mut bytes = [0u8; std::mem::size_of::<usize>()];
    let mut v = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_or(0, |()| usize::from_ne_bytes(bytes));
    if v == 0 {
        // No entropy source: the clock and an address still make a forged value improbable.
        let t = crate::time::now_ns() as usize;
        v = t.rotate_left(17) ^ (&raw const v as usize) ^ 0x6b69_6c6c_6162_6c65;
    }
    v
}

/// Unblocks killable's signal in the calling thread (spawned threads inherit their creator's
/// mask, which may block it).
pub(crate) fn unblock_in_current_thread() {
    // SAFETY: sigset_t is plain data; the set holds one valid signal number.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, SIGNAL.load(Ordering::Relaxed));
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

static INSTALLED: AtomicBool = AtomicBool::new(false);
static INSTALL: Mutex<()> = Mutex::new(());
/// The action ours replaced; published before our handler is installed.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// Chooses the signal killable uses to interrupt threads (SIGUSR1 by default).
///
/// Call it before the first interrupt or timeout, for example at the start of `main`, if the
/// application needs SIGUSR1 for itself. Signals that killable did not send are passed on to
/// the handler that was installed before killable's (see the README's "Signals" section).
///
/// # Errors
///
/// [`io::ErrorKind::InvalidInput`] for any signal but `SIGUSR1`, `SIGUSR2` and the real-time
/// signals `SIGRTMIN..=SIGRTMAX`, with a message that names those. The others cannot work:
/// `SIGKILL` and `SIGSTOP` cannot be caught; `SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE` and
/// `SIGABRT` report faults and aborts; the real-time signals below `SIGRTMIN` belong to the C
/// library; and the process relies on the default action or disposition of the rest (`SIGTERM`
/// and `SIGINT` terminate it, an ignored `SIGCHLD` reaps children), which killable's handler,
/// passing signals it did not send to the previous handler, could not reproduce.
/// [`io::ErrorKind::ResourceBusy`] once the handler is installed with a different signal.
///
/// The numbers are plain `i32`s, as in `libc`; [`SIGUSR1`], [`SIGUSR2`], [`sigrtmin`] and
/// [`sigrtmax`] name the ones accepted, so no direct `libc` dependency is needed.
///
/// # Examples
///
/// ```
/// // At the start of main, before any interrupt or timeout:
/// killable::set_signal(killable::SIGUSR2)?;
/// assert_eq!(killable::signal(), killable::SIGUSR2);
///
/// let err = killable::set_signal(15).unwrap_err(); // SIGTERM: the process needs it
/// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
/// assert!(err.to_string().contains("SIGUSR2"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn set_signal(sig: i32) -> io::Result<()> {
    validate(sig)?;
    let _g = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if INSTALLED.load(Ordering::Acquire) {
        let current = SIGNAL.load(Ordering::Relaxed);
        if current == sig {
            return Ok(());
        }
        return Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!(
                "killable's handler is already installed for signal {current}; \
                 set_signal({sig}) must come before the first interrupt or timeout"
            ),
        ));
    }
    SIGNAL.store(sig, Ordering::Relaxed);
    Ok(())
}

/// The signal killable uses (see [`set_signal`]).
///
/// # Examples
///
/// ```
/// assert_eq!(killable::signal(), killable::SIGUSR1); // unless set_signal chose another
/// ```
pub fn signal() -> i32 {
    SIGNAL.load(Ordering::Relaxed)
}

/// `SIGUSR1`, killable's signal unless [`set_signal`] chose another.
///
/// # Examples
///
/// ```
/// assert_eq!(killable::SIGUSR1, 10); // on Linux
/// ```
pub const SIGUSR1: i32 = libc::SIGUSR1;

/// `SIGUSR2`, for [`set_signal`] when the application uses SIGUSR1 itself.
///
/// # Examples
///
/// ```
/// killable::set_signal(killable::SIGUSR2).unwrap();
/// ```
pub const SIGUSR2: i32 = libc::SIGUSR2;

/// The lowest real-time signal the C library leaves to applications (`SIGRTMIN`, a function
/// because glibc reserves the first few for itself at run time).
///
/// # Examples
///
/// ```
/// killable::set_signal(killable::sigrtmin() + 1).unwrap();
/// ```
pub fn sigrtmin() -> i32 {
    libc::SIGRTMIN()
}

/// The highest real-time signal (`SIGRTMAX`).
///
/// # Examples
///
/// ```
/// assert!(killable::sigrtmax() > killable::sigrtmin());
/// ```
pub fn sigrtmax() -> i32 {
    libc::SIGRTMAX()
}

fn validate(sig: i32) -> io::Result<()> {
    let bad = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "signal {sig}: {why}; killable works with SIGUSR1 ({}), SIGUSR2 ({}) or a \
                 real-time signal from SIGRTMIN ({}) to SIGRTMAX ({})",
                libc::SIGUSR1,
                libc::SIGUSR2,
                libc::SIGRTMIN(),
                libc::SIGRTMAX()
            ),
        ))
    };
    if sig <= 0 || sig > libc::SIGRTMAX() {
        return bad("not a signal number");
    }
    match sig {
        libc::SIGUSR1 | libc::SIGUSR2 => Ok(()),
        s if s >= libc::SIGRTMIN() => Ok(()),
        libc::SIGKILL | libc::SIGSTOP => bad("cannot be caught"),
        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGABRT => {
            bad("reserved for faults and aborts")
        }
        s if s >= 32 => bad("reserved by the C library"),
        // SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGPIPE, SIGALRM...: the process relies on what
        // the kernel does with them by default (terminate, reap children when ignored), and a
        // chained handler cannot reproduce that.
        _ => bad(
            "the process relies on its default action or disposition, which a chained handler \
             cannot reproduce",
        ),
    }
}

/// Installs the handler if needed and checks that it is still ours; returns the signal.
pub(crate) fn ensure_installed() -> io::Result<libc::c_int> {
    if !INSTALLED.load(Ordering::Acquire) {
        return install();
    }
    // Read after INSTALLED (Acquire): the signal cannot change once the handler is installed.
    let sig = SIGNAL.load(Ordering::Relaxed);
    let mut cur = action(libc::SIG_DFL, 0);
    // SAFETY: only queries the current action into `cur`, a valid, writable sigaction.
    unsafe { libc::sigaction(sig, std::ptr::null(), &mut cur) };
    if cur.sa_sigaction != killable_signal_entry as *const () as usize {
        return Err(io::Error::other(format!(
            "killable's handler for signal {sig} was replaced by another one \
             (by another library, or by signal()/sigaction in the application)"
        )));
    }
    Ok(sig)
}

#[cold]
fn install() -> io::Result<libc::c_int> {
    let _g = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let sig = SIGNAL.load(Ordering::Relaxed);
    if INSTALLED.load(Ordering::Acquire) {
        return Ok(sig);
    }
    // The fork handlers keep the cached pid right in children.
    init_fork_handlers();
    SECRET.store(draw_secret(), Ordering::Relaxed);
    UID.store(nix::unistd::getuid().as_raw(), Ordering::Relaxed);
    let mut old = action(libc::SIG_DFL, 0);
    // SAFETY: only queries the current action into `old`, a valid, writable sigaction.
    if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // Published before the handler can run, so the handler never finds it missing.
    let _ = PREVIOUS.set(old);
    // The registered handler is the C entry (src/sys/signal_entry.c), which calls `handler` below and
    // performs the kill-region jump in C when it answers 1.
    // SAFETY: `handler` has the signature the C side expects and lives for the whole program;
    // it is published before the entry can run.
    unsafe { killable_set_rust_handler(handler) };
    // NOT SA_RESTART: a blocked system call must return EINTR, not be restarted (module docs).
    // SA_ONSTACK: a thread with a few KB of stack left must still take an interrupt, and a
    // chained handler keeps the alternate stack it asked for (module docs).
    let new = action(
        killable_signal_entry as *const () as usize,
        libc::SA_SIGINFO | libc::SA_ONSTACK,
    );
    // SAFETY: `new` is fully initialised and names the C entry, which has the three-argument
    // SA_SIGINFO signature; the handler is async-signal-safe.
    if unsafe { libc::sigaction(sig, &new, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    INSTALLED.store(true, Ordering::Release);
    Ok(sig)
}

/// A `sigaction` running `handler` (an address, `SIG_DFL` or `SIG_IGN`) with `flags` and an
/// empty mask, built field by field rather than with `mem::zeroed`. Async-signal-safe
/// (`sigemptyset` only). Shared with the overflow handler (stack.rs).
///
/// nix's `SigAction::new` does not fit: on glibc it leaves `sa_restorer` uninitialised, and
/// nix's `sigaction` takes only the standard signals, not the real-time ones killable's signal
/// may be, nor a query without a new action.
pub(crate) fn action(handler: libc::sighandler_t, flags: libc::c_int) -> libc::sigaction {
    libc::sigaction {
        sa_sigaction: handler,
        sa_mask: *SigSet::empty().as_ref(),
        sa_flags: flags,
        sa_restorer: None,
    }
}

/// Saves errno on creation and restores it on drop (signal handlers must preserve it).
/// Async-signal-safe: nix's `Errno::last_raw` and `Errno::set_raw` only read and write
/// through `__errno_location`.
pub(crate) struct ErrnoGuard(libc::c_int);

impl ErrnoGuard {
    pub(crate) fn new() -> ErrnoGuard {
        ErrnoGuard(Errno::last_raw())
    }
}

impl Drop for ErrnoGuard {
    fn drop(&mut self) {
        Errno::set_raw(self.0);
    }
}

/// The handler's Rust half, called by the C entry `killable_signal_entry`. Async-signal-safe:
/// see the module docs. Returns 1 when the C entry must abandon the innermost kill region.
pub(crate) extern "C" fn handler(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) -> libc::c_int {
    let _errno = ErrnoGuard::new();
    // SAFETY: the kernel passes a valid siginfo_t for an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    let ours = match code {
        // SAFETY: for SI_QUEUE the siginfo holds the sender's pid and value. `SECRET` was set
        // before the handler was installed; the cached pid is refreshed in fork children.
        libc::SI_QUEUE => unsafe {
            (*info).si_pid() == pid()
                && (*info).si_value().sival_ptr as usize == SECRET.load(Ordering::Relaxed)
        },
        // SAFETY: for SI_TIMER the siginfo holds the timer's sigval.
        libc::SI_TIMER => timer_fired(unsafe { (*info).si_value().sival_ptr }),
        _ => false,
    };
    if !ours {
        chain(sig, info, ctx);
    }
    // Whatever the delivery, act on this thread's own state: a request is only ever set by a
    // real interrupter, so acting on it cannot be forged, and a standard signal is not queued
    // twice: an application's pending SIGUSR1 makes the kernel drop killable's, and the one
    // delivery left must serve both.
    let me = current_ptr();
    if !me.is_null() {
        // SAFETY: CURRENT points to this thread's live `Inner` (control.rs).
        let inner = unsafe { &*me };
        let ctl = &inner.ctl;
        crate::seal::on_signal(ctl);
        if ctl.kill_due() {
            // SAFETY: reads this thread's C thread-locals (initial-exec TLS, no allocation) and
            // the first 8 bytes of the ucontext's signal mask, which the kernel wrote.
            match unsafe { killable_region_verdict(ctx) } {
                REGION_ABANDON => {
                    ctl.take_kill();
                    return 1;
                }
                REGION_NOT_OURS => postpone_kill(inner, sig, ctx),
                _ => {}
            }
        }
    }
    // SAFETY: for an SA_SIGINFO handler `ctx` is the interrupted thread's ucontext_t, which the
    // kernel restores on return; moving the program counter to the stub's cancel label is the
    // designed use (the label returns -EINTR, the stub has not touched the stack).
    unsafe {
        let pc = crate::arch::pc(ctx);
        if syscall::in_window(*pc) {
            *pc = syscall::cancel_address();
        }
    }
    0
}

/// `killable_region_verdict`: abandon the innermost region.
const REGION_ABANDON: libc::c_int = 1;
/// `killable_region_verdict`: a region runs, but another signal handler runs on top of it.
const REGION_NOT_OURS: libc::c_int = 2;

/// A kill found a signal handler running on top of the kill region (see `src/sys/kill.c`,
/// `killable_region_verdict`): jumping would skip that handler's frames. The kill stays
/// pending: killable's signal is blocked in the context this handler returns to (the other
/// handler's), and queued again. When the other handler returns, the kernel restores the
/// region's own mask, the queued signal is delivered on top of the region's code, and the kill
/// proceeds. Async-signal-safe: `sigaddset` and one system call.
fn postpone_kill(inner: &Inner, sig: libc::c_int, ctx: *mut libc::c_void) {
    // SAFETY: `ctx` is the interrupted context, which the kernel restores (mask included) when
    // this handler returns; `sig` is a valid signal number.
    unsafe { libc::sigaddset(&mut (*ctx.cast::<libc::ucontext_t>()).uc_sigmask, sig) };
    // SAFETY: writes a C thread-local of this thread (initial-exec TLS).
    unsafe { killable_region_note_postponed() };
    let tid = inner.tid.load(Ordering::Relaxed);
    if tid > 0 {
        // To ourselves: the thread is running this handler, so its tid is live.
        send_marked(tid, sig);
    }
}

/// Our timer fired for this thread: set `DEADLINE` if the deadline has really passed.
fn timer_fired(value: *mut libc::c_void) -> bool {
    let me = current_ptr();
    if me.is_null() || !std::ptr::eq(value, me.cast::<libc::c_void>()) {
        return false;
    }
    // SAFETY: CURRENT points to this thread's live `Inner` (control.rs).
    let ctl = unsafe { &(*me).ctl };
    let deadline = ctl.deadline_ns.load(Ordering::Acquire);
    if deadline != 0 && crate::time::now_ns() >= deadline {
        ctl.set_quietly(DEADLINE);
    }
    true
}

/// Passes a signal that is not ours to the action installed before ours (ignored if that was
/// `SIG_DFL` or `SIG_IGN`).
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    if let Some(prev) = PREVIOUS.get() {
        call_previous(prev, sig, info, ctx);
    }
}

/// Calls the handler of `prev` with what the kernel gave us, if it has one; returns `false`
/// for `SIG_DFL` and `SIG_IGN`. Async-signal-safe. Shared with the overflow handler (stack.rs).
pub(crate) fn call_previous(
    prev: &libc::sigaction,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) -> bool {
    if prev.sa_sigaction == libc::SIG_DFL || prev.sa_sigaction == libc::SIG_IGN {
        return false;
    }
    if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: installed with SA_SIGINFO, so it has the three-argument signature; it gets
        // exactly what the kernel gave us.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(prev.sa_sigaction) };
        f(sig, info, ctx);
    } else {
        // SAFETY: without SA_SIGINFO the handler takes only the signal number.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(prev.sa_sigaction) };
        f(sig);
    }
    true
}
