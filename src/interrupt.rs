//! Interruption: the per-thread control block, the flag, deferral and callbacks.
//!
//! # Internal workings
//!
//! Each thread's `Control` holds one 32-bit word, `state`, that the race-free stub
//! (`src/sys/syscall_x86_64.S`) loads right before entering the kernel:
//!
//! * bits 0..8: stop requests. `INTERRUPT` (set by `interrupt()`, sticky until
//!   `clear_interrupt()`), `DEADLINE` (set when the innermost `timeout` passes).
//! * bits 8..32: the deferral depth, `DEFER_ONE` per live `defer_interrupts()` guard.
//!
//! A blocking call must fail exactly when `1 <= state <= 0xff`: some request is pending and
//! nothing defers it. The stub tests that with two instructions.
//!
//! An interrupter sets its bit with a sequentially consistent read-modify-write and only then
//! signals the target (`rt_tgsigqueueinfo`, marked as killable's: see `signal.rs`). The target either loads the word after the bit was set (and
//! fails before the kernel), or is interrupted by the signal: in the kernel (the call returns
//! `EINTR`, because the handler is installed without `SA_RESTART`) or between the load and the
//! `syscall` instruction (the handler moves its program counter to the stub's cancel label).
//! There is no third place to be, so no wake-up is lost.
//!
//! Sending a signal to a thread id is only safe while that thread exists: a finished thread's
//! id can be reused. `life` counts the senders in flight (in steps of `SENDER`) and carries an
//! `EXITED` bit; a sender registers before checking `EXITED`, and an exiting thread sets
//! `EXITED` and then waits for the in-flight senders to drain before it is allowed to end.
//!
//! Interrupt callbacks (`on_interrupt`) live in a list guarded by a small futex lock that is
//! held only to change the list or to take a snapshot of it, never while a signal is sent or a
//! callback runs. An interrupter sets `INTERRUPT` and takes its snapshot under that lock, and a
//! registration pushes its callback and looks at `INTERRUPT` under it, so each callback runs
//! exactly once per interrupt: in the interrupter's snapshot, or at its registration. Each
//! callback has its own lock, held while it runs, so that unregistering can wait for a run in
//! progress. Callbacks that interrupt each other cannot deadlock (no list lock is held while
//! they run, and a second interrupt of a thread already interrupted runs nothing), and a `fork`
//! child finds nothing locked: the fork handlers (registry.rs) hold the forking thread's list
//! lock across the fork and reset it, and its callbacks' locks, in the child.

use std::cell::UnsafeCell;
use std::error::Error;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::futex::RawLock;

use crate::thread::{CURRENT, Inner, Thread, current};

/// `state`: `interrupt()` was called and not cleared.
pub(crate) const INTERRUPT: u32 = 1;
/// `state`: the innermost `timeout` has passed.
pub(crate) const DEADLINE: u32 = 2;
/// `state`: `kill()` was called; the next (or current) kill region is abandoned.
pub(crate) const KILL: u32 = 4;
/// `state`: the request bits; the stub breaks a call when `1 <= state <= REQUEST_MASK`.
pub(crate) const REQUEST_MASK: u32 = 0xff;
/// `state`: one level of `defer_interrupts()`.
pub(crate) const DEFER_ONE: u32 = 0x100;

/// `life`: the thread has ended (or is ending); no more signals may be sent to its tid.
const EXITED: u32 = 1;
/// `life`: one sender in flight.
const SENDER: u32 = 2;

/// One registered callback, with the lock held while it runs.
struct CallbackCell {
    running: RawLock,
    f: UnsafeCell<Box<dyn FnMut() + Send>>,
}

// SAFETY: `f` is only called with `running` held, so never from two threads at once; the
// closure itself is `Send`.
unsafe impl Sync for CallbackCell {}
// SAFETY: as above; the box is `Send`.
unsafe impl Send for CallbackCell {}

impl CallbackCell {
    /// Runs the callback (under its lock, released even if it panics).
    fn run(&self) {
        let _running = self.running.guard();
        // SAFETY: `running` is held, so this is the only access to `f`.
        unsafe { (*self.f.get())() };
    }
}

/// The callbacks of one thread (see the module docs).
struct Callbacks {
    lock: RawLock,
    list: UnsafeCell<Vec<(u64, Arc<CallbackCell>)>>,
}

// SAFETY: `list` is only touched with `lock` held (or in the single-threaded fork child).
unsafe impl Sync for Callbacks {}

impl Callbacks {
    const fn new() -> Callbacks {
        Callbacks {
            lock: RawLock::new(),
            list: UnsafeCell::new(Vec::new()),
        }
    }

    /// Runs `f` on the list with the lock held.
    fn with<R>(&self, f: impl FnOnce(&mut Vec<(u64, Arc<CallbackCell>)>) -> R) -> R {
        let _held = self.lock.guard();
        // SAFETY: the lock is held until `_held` drops: this is the only reference.
        f(unsafe { &mut *self.list.get() })
    }
}

/// The part of a thread's `Inner` that interruption uses.
pub(crate) struct Control {
    /// The word the stub loads. See the module docs.
    pub(crate) state: AtomicU32,
    life: AtomicU32,
    /// The parking token: see `sync.rs`.
    pub(crate) park: AtomicU32,
    /// The innermost deadline in `CLOCK_MONOTONIC` nanoseconds, 0 for none. Written only by
    /// the thread itself; read by its signal handler when its timer fires.
    pub(crate) deadline_ns: AtomicU64,
    /// How many kill regions the thread is in (for `in_kill_region` and `stop`).
    pub(crate) regions: AtomicU32,
    /// Sealing: see `seal.rs`.
    pub(crate) seal: AtomicU32,
    callbacks: Callbacks,
}

impl Control {
    pub(crate) const fn new() -> Control {
        Control {
            state: AtomicU32::new(0),
            life: AtomicU32::new(0),
            park: AtomicU32::new(0),
            deadline_ns: AtomicU64::new(0),
            regions: AtomicU32::new(0),
            seal: AtomicU32::new(0),
            callbacks: Callbacks::new(),
        }
    }

    /// The check every killable call makes: `Err` when a request is pending and not deferred.
    #[inline]
    pub(crate) fn check(&self) -> Result<(), Interrupted> {
        let s = self.state.load(Ordering::Acquire);
        if s.wrapping_sub(1) < REQUEST_MASK {
            return Err(Interrupted::from_state(s));
        }
        Ok(())
    }

    /// Marks the thread as ended and waits for senders already in flight. Called by the thread
    /// itself as it ends, and in a fork child for threads that stayed in the parent.
    pub(crate) fn mark_exited(&self) {
        self.life.fetch_or(EXITED, Ordering::SeqCst);
        while self.life.load(Ordering::SeqCst) >= SENDER {
            std::hint::spin_loop();
            std::thread::yield_now();
        }
    }

    /// Like `mark_exited`, without waiting (in a fork child the senders do not exist; for a
    /// thread adopted during its own teardown, nobody has its `Thread` yet).
    pub(crate) fn mark_exited_now(&self) {
        self.life.store(EXITED, Ordering::SeqCst);
    }

    /// In a fork child, for the forking thread: forgets senders that stayed in the parent.
    pub(crate) fn reset_senders_in_child(&self) {
        self.life.fetch_and(EXITED, Ordering::SeqCst);
    }

    /// Fork prepare handler, on the forking thread: holds the callback list still across the
    /// fork, so that the child's copy is not half-changed.
    pub(crate) fn lock_callbacks_for_fork(&self) {
        self.callbacks.lock.lock();
    }

    /// Fork parent handler: the counterpart of `lock_callbacks_for_fork`.
    pub(crate) fn unlock_callbacks_after_fork(&self) {
        self.callbacks.lock.unlock();
    }

    /// Fork child handler: the threads that held any of these locks (the list's, held by
    /// `lock_callbacks_for_fork`; a callback's, held by a parent thread running it) do not
    /// exist here.
    pub(crate) fn reset_callbacks_in_child(&self) {
        // SAFETY: the child has one thread, and the list lock was taken before the fork.
        for (_, cell) in unsafe { &*self.callbacks.list.get() } {
            cell.running.reset_in_child();
        }
        self.callbacks.lock.reset_in_child();
    }
}

/// The error a killable call returns when its thread was interrupted, or when the
/// [`timeout`](crate::timeout) around it passed.
///
/// It converts into an [`io::Error`] whose kind is [`io::ErrorKind::Other`] (or
/// [`io::ErrorKind::TimedOut`] for a timeout), never [`io::ErrorKind::Interrupted`]: std's loops
/// (`read_exact`, `read_line`, `write_all`, `io::copy`) retry that kind forever, and an
/// interrupt must end them. [`is_interrupt`] recognises the converted error.
///
/// # Examples
///
/// ```
/// killable::current().interrupt();
/// let err = killable::check().unwrap_err();
/// assert!(!err.is_timeout());
/// let io_err = std::io::Error::from(err);
/// assert_ne!(io_err.kind(), std::io::ErrorKind::Interrupted);
/// assert!(killable::is_interrupt(&io_err));
/// killable::clear_interrupt();
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Interrupted {
    timed_out: bool,
}

impl Interrupted {
    /// The error of an interrupt (not a timeout).
    pub(crate) fn interrupt() -> Interrupted {
        Interrupted { timed_out: false }
    }

    fn from_state(state: u32) -> Interrupted {
        Interrupted {
            timed_out: state & INTERRUPT == 0 && state & DEADLINE != 0,
        }
    }

    /// Whether the call was stopped by a [`timeout`](crate::timeout) passing rather than by
    /// [`interrupt`](Thread::interrupt).
    ///
    /// # Examples
    ///
    /// ```
    /// let r = killable::timeout(std::time::Duration::from_millis(1), || {
    ///     killable::sleep(std::time::Duration::from_secs(60))
    /// });
    /// assert!(r.unwrap_err().is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        self.timed_out
    }
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.timed_out {
            "the killable timeout passed"
        } else {
            "the thread was interrupted"
        })
    }
}

impl Error for Interrupted {}

impl From<Interrupted> for io::Error {
    fn from(e: Interrupted) -> io::Error {
        let kind = if e.timed_out {
            io::ErrorKind::TimedOut
        } else {
            io::ErrorKind::Other
        };
        io::Error::new(kind, e)
    }
}

/// Whether an [`io::Error`] is killable's [`Interrupted`] (an interrupt or a timeout).
///
/// # Examples
///
/// ```
/// let plain = std::io::Error::from(std::io::ErrorKind::Interrupted);
/// assert!(!killable::is_interrupt(&plain));
/// ```
pub fn is_interrupt(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<Interrupted>())
}

/// Runs `f` with the calling thread's `Inner` (adopting the thread if needed).
#[inline(always)]
pub(crate) fn with_current<R>(f: impl FnOnce(&Inner) -> R) -> R {
    let p = CURRENT.with(|c| c.get());
    if p.is_null() {
        let t = current();
        return f(&t.inner);
    }
    // SAFETY: CURRENT is non-null only while this thread's `Inner` is alive (thread.rs).
    f(unsafe { &*p })
}

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
    let p = CURRENT.with(|c| c.get());
    // SAFETY: see `with_current`. A thread without a control block cannot have been interrupted:
    // nobody can hold its `Thread`.
    !p.is_null() && unsafe { (*p).ctl.state.load(Ordering::Acquire) } & INTERRUPT != 0
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
    let p = CURRENT.with(|c| c.get());
    if p.is_null() {
        return Ok(());
    }
    // SAFETY: see `with_current`.
    unsafe { (*p).ctl.check() }
}

/// Clears the calling thread's interrupt flag (and a pending [`kill`](Thread::kill)); returns
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
    with_current(|inner| {
        inner
            .ctl
            .state
            .fetch_and(!(INTERRUPT | KILL), Ordering::AcqRel)
            & INTERRUPT
            != 0
    })
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
    with_current(|inner| inner.ctl.state.fetch_add(DEFER_ONE, Ordering::AcqRel));
    DeferGuard {
        _not_send: PhantomData,
    }
}

impl Drop for DeferGuard {
    fn drop(&mut self) {
        with_current(|inner| inner.ctl.state.fetch_sub(DEFER_ONE, Ordering::AcqRel));
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
    thread: Thread,
    id: u64,
}

/// Registers `f` to run when the calling thread is interrupted.
///
/// `f` runs on the thread that calls [`interrupt`](Thread::interrupt), each time the
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
    let thread = current();
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let cell = Arc::new(CallbackCell {
        running: RawLock::new(),
        f: UnsafeCell::new(Box::new(f)),
    });
    let ctl = &thread.inner.ctl;
    let already = ctl.callbacks.with(|list| {
        list.push((id, cell.clone()));
        ctl.state.load(Ordering::Acquire) & INTERRUPT != 0
    });
    if already {
        cell.run();
    }
    InterruptCallback { thread, id }
}

impl Drop for InterruptCallback {
    fn drop(&mut self) {
        let ctl = &self.thread.inner.ctl;
        let removed = ctl.callbacks.with(|list| {
            let at = list.iter().position(|(id, _)| *id == self.id)?;
            Some(list.swap_remove(at).1)
        });
        if let Some(cell) = removed {
            // Waits for a run in progress on another thread to finish.
            drop(cell.running.guard());
        }
    }
}

impl fmt::Debug for InterruptCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterruptCallback")
            .field("thread", &self.thread)
            .finish_non_exhaustive()
    }
}

impl Thread {
    /// Interrupts the thread: sets its interrupt flag and breaks the killable call it is blocked
    /// in, if any.
    ///
    /// The target's current or next killable call fails with [`Interrupted`] (unless it defers
    /// interrupts), [`is_interrupted`](crate::is_interrupted) turns true in it, and its
    /// [`on_interrupt`] callbacks run here. Idempotent while the flag is set; harmless on a
    /// thread that has finished. On first use this installs killable's signal handler (see
    /// [`set_signal`](crate::set_signal)).
    ///
    /// # Panics
    ///
    /// If killable's signal handler has been replaced by someone else: sending the signal
    /// would then run their handler (or kill the process) instead of breaking the call. Use
    /// [`try_interrupt`](Thread::try_interrupt) to get that as an error.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// let (reader, _writer) = std::io::pipe().unwrap();
    /// let h = killable::spawn(move || {
    ///     let mut buf = [0u8; 16];
    ///     killable::io::Interruptible::new(reader).read(&mut buf)
    /// });
    /// h.interrupt();
    /// let err = h.join().unwrap().unwrap_err();
    /// assert!(killable::is_interrupt(&err));
    /// ```
    ///
    /// # References
    ///
    /// * [`rt_tgsigqueueinfo(2)`](https://man7.org/linux/man-pages/man2/rt_tgsigqueueinfo.2.html)
    #[doc(alias = "pthread_kill")]
    #[doc(alias = "tgkill")]
    #[doc(alias = "rt_tgsigqueueinfo")]
    pub fn interrupt(&self) {
        if let Err(e) = self.try_interrupt() {
            panic!("killable: cannot interrupt {self:?}: {e}");
        }
    }

    /// Like [`interrupt`](Thread::interrupt), but returns an error instead of panicking.
    ///
    /// # Errors
    ///
    /// An error of kind [`io::ErrorKind::Other`] if killable's signal handler was replaced by
    /// another one (the flag is still set, so the target's next check sees it); the OS error if
    /// the handler cannot be installed or the signal cannot be sent.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| killable::sleep(std::time::Duration::from_secs(3600)));
    /// h.thread().try_interrupt().expect("killable's handler is in place");
    /// assert!(h.join().unwrap().is_err());
    /// ```
    pub fn try_interrupt(&self) -> io::Result<()> {
        self.request(INTERRUPT)
    }

    /// Sets request bits (`INTERRUPT`, plus `KILL` for a kill) and signals the thread if a bit
    /// was newly set. The flag is set even if the handler cannot be used, so cooperative code
    /// still stops.
    pub(crate) fn request(&self, bits: u32) -> io::Result<()> {
        self.request_with(bits, crate::signal::ensure_installed())
    }

    /// `request` with the handler check already done (once for many threads, in `stop.rs`).
    pub(crate) fn request_with(
        &self,
        bits: u32,
        installed: io::Result<libc::c_int>,
    ) -> io::Result<()> {
        let inner = &*self.inner;
        // The bit is set, and the callbacks to run are taken, under the list lock, so that a
        // callback registering at the same moment runs exactly once (module docs). No lock is
        // held while the signal is sent or the callbacks run.
        let (old, to_run) = inner.ctl.callbacks.with(|list| {
            let old = inner.ctl.state.fetch_or(bits, Ordering::SeqCst);
            let newly_interrupted = old & INTERRUPT == 0
                && inner.ctl.life.load(Ordering::Acquire) & EXITED == 0
                && !list.is_empty();
            let to_run: Vec<Arc<CallbackCell>> = if newly_interrupted {
                list.iter().map(|(_, cell)| cell.clone()).collect()
            } else {
                Vec::new()
            };
            (old, to_run)
        });
        if old & bits == bits {
            return installed.map(drop);
        }
        // A deferring thread is not signalled: the signal would break calls that are not
        // killable's (std's, C's) with EINTR. The bit waits for its next killable call, which
        // cannot come before its guard is dropped.
        let sent = if old >= DEFER_ONE {
            installed.map(drop)
        } else {
            installed.and_then(|sig| send(inner, sig))
        };
        for cell in to_run {
            cell.run();
        }
        sent
    }

    /// Whether the thread's interrupt flag is set.
    ///
    /// # Examples
    ///
    /// ```
    /// let me = killable::current();
    /// assert!(!me.is_interrupted());
    /// me.interrupt();
    /// assert!(me.is_interrupted());
    /// killable::clear_interrupt();
    /// ```
    pub fn is_interrupted(&self) -> bool {
        self.inner.ctl.state.load(Ordering::Acquire) & INTERRUPT != 0
    }
}

impl<T> crate::JoinHandle<T> {
    /// Interrupts the thread: the same as [`Thread::interrupt`] on
    /// [`self.thread()`](crate::JoinHandle::thread).
    ///
    /// # Panics
    ///
    /// As [`Thread::interrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| killable::sleep(std::time::Duration::from_secs(3600)));
    /// h.interrupt();
    /// assert!(h.join().unwrap().is_err());
    /// ```
    #[doc(alias = "pthread_kill")]
    pub fn interrupt(&self) {
        self.thread().interrupt();
    }

    /// Like [`interrupt`](crate::JoinHandle::interrupt), returning an error instead of
    /// panicking (see [`Thread::try_interrupt`]).
    ///
    /// # Errors
    ///
    /// As [`Thread::try_interrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| killable::park());
    /// h.try_interrupt().unwrap();
    /// assert!(h.join().unwrap().is_err());
    /// ```
    pub fn try_interrupt(&self) -> io::Result<()> {
        self.thread().try_interrupt()
    }
}

/// Runs `f` with the thread's kernel id while pinning it: until `f` returns, the thread cannot
/// finish exiting, so the id cannot be reused by another thread. Returns `None`, without
/// calling `f`, when the id would not name this thread: it has not been published yet, the
/// thread has ended (or is ending), or the handle comes from before a `fork` (the thread stayed
/// in the parent; in the child its id may belong to anyone).
///
/// Every per-tid operation (a signal, a `/proc` read, `sched_getaffinity`) goes through here.
pub(crate) fn with_live_tid<R>(inner: &Inner, f: impl FnOnce(libc::pid_t) -> R) -> Option<R> {
    // Dekker with `Inner::publish_tid` and the start routine (spawn.rs): a request set before
    // this point (a bit, a seal request) is seen by the thread's first check if the tid is not
    // published yet. The fence orders the caller's earlier stores, whatever their ordering.
    std::sync::atomic::fence(Ordering::SeqCst);
    let tid = inner.tid.load(Ordering::SeqCst);
    if tid <= 0 || !inner.in_this_process() {
        return None;
    }
    let before = inner.ctl.life.fetch_add(SENDER, Ordering::SeqCst);
    // `tid` belongs to a thread of this process that cannot finish exiting while we are
    // registered as a sender (`Control::mark_exited` waits for us).
    let r = (before & EXITED == 0).then(|| f(tid));
    inner.ctl.life.fetch_sub(SENDER, Ordering::SeqCst);
    r
}

/// Sends killable's signal to the thread, if it is (still) running.
pub(crate) fn send(inner: &Inner, sig: libc::c_int) -> io::Result<()> {
    match with_live_tid(inner, |tid| crate::signal::send_marked(tid, sig)) {
        Some(r) if r != 0 => {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                Ok(())
            } else {
                Err(e)
            }
        }
        // Sent; or not started yet (its first check sees the bit, and `seal::on_start` the
        // seal request); or gone.
        _ => Ok(()),
    }
}
