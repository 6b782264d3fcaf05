//! The ground floor: each thread's control block (`Inner`, and in it `Control`, the state word
//! the race-free stub loads), the calling thread's block (`CURRENT`), and the protocols on them.
//! Every feature (interrupt, deadline, seal, kill, the registry, waits and I/O) works through
//! the named operations here; this module imports no feature.
//!
//! # Internal workings
//!
//! ## The state word
//!
//! `Control::state` is one 32-bit word, loaded by the stub (`src/sys/syscall_<arch>.S`) right
//! before it enters the kernel and by the kill-region entry (`src/sys/kill.c`):
//!
//! * bits 0..8: stop requests. `INTERRUPT` (set by `interrupt()`, sticky until
//!   `clear_interrupt()`), `DEADLINE` (the innermost `timeout` has passed), `KILL` (the next or
//!   current kill region is abandoned).
//! * bits 8..32: the deferral depth, `DEFER_ONE` per live `defer_interrupts()` guard.
//!
//! A blocking call must fail exactly when `1 <= state <= REQUEST_MASK`: a request is pending
//! and nothing defers it. The stub tests that with two instructions. This file is the one
//! definition of the layout; the C and assembly copies are checked against it by the unit test
//! at the bottom (`the_c_and_assembly_layouts_match`).
//!
//! An interrupter sets its bit with a sequentially consistent read-modify-write and only then
//! signals the target (`rt_tgsigqueueinfo`, marked as killable's: see `signal.rs`). The target
//! either loads the word after the bit was set (and fails before the kernel), or is interrupted
//! by the signal: in the kernel (the call returns `EINTR`, because the handler is installed
//! without `SA_RESTART`) or between the load and the `syscall` instruction (the handler moves
//! its program counter to the stub's cancel label). There is no third place to be, so no
//! wake-up is lost.
//!
//! ## Who may be signalled
//!
//! Sending a signal to a thread id is only safe while that thread exists: a finished thread's
//! id can be reused. `life` counts the senders in flight (in steps of `SENDER`) and carries an
//! `EXITED` bit; a sender registers before checking `EXITED` (`with_live_tid`), and an exiting
//! thread sets `EXITED` and then waits for the in-flight senders to drain before it is allowed
//! to end. It yields a few times (`EXIT_YIELDS`), then waits asleep on a futex (on `life`
//! itself, after setting `EXIT_WAITING`), and the sender that takes the count to zero wakes it.
//! It used to yield for as long as it took: when thousands of threads are stopped at once, the
//! sender (the stopping thread) is often preempted right after its signal by the very threads
//! it woke, and an exiting thread that yields in a loop keeps a CPU busy until the sender runs
//! again (in a shutdown of 10,000 threads one such thread was seen yielding for 54 ms). Sleeping
//! at once costs the sender a wake (a system call) each time, which made a stop of 1,000
//! threads slower; the few yields first cover the sender that is still running. A handle also
//! carries the fork generation its tid was published in: after a `fork`, a handle of a thread
//! that stayed in the parent names nobody in the child.
//!
//! ## Interrupt callbacks
//!
//! Interrupt callbacks (`on_interrupt`) live in a list guarded by a small futex lock that is
//! held only to change the list or to take a snapshot of it, never while a signal is sent or a
//! callback runs. An interrupter sets `INTERRUPT` and takes its snapshot under that lock
//! (`Control::request`), and a registration pushes its callback and looks at `INTERRUPT` under
//! it, so each callback runs exactly once per interrupt: in the interrupter's snapshot, or at its
//! registration. Each callback has its own lock, held while it runs, so that unregistering can
//! wait for a run in progress. Callbacks that interrupt each other cannot deadlock (no list lock
//! is held while they run, and a second interrupt of a thread already interrupted runs nothing).
//!
//! ## fork
//!
//! The fork handlers here hold the forking thread's callback-list lock across the fork; in the
//! child they reset it and its callbacks' locks (the threads that held them do not exist there),
//! refresh the cached pid, increment the fork generation and give it to the forking thread
//! alone. The registry (`registry.rs`) has fork handlers of its own for its map.
//!
//! ## `CURRENT`
//!
//! The calling thread's `Inner` is reachable through one raw pointer in a thread-local,
//! `CURRENT`. It is non-null only while an `Arc<Inner>` for this thread is alive on this thread:
//! in the start routine's frame for spawned threads, in the `ADOPTED` holder otherwise. Signal
//! handlers read it with a single thread-local load and never write it.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::ffi::CString;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Once};

use crate::errors::Interrupted;
use crate::futex::{self, RawLock};

/// `state`: `interrupt()` was called and not cleared.
pub(crate) const INTERRUPT: u32 = 1;
/// `state`: the innermost `timeout` has passed.
pub(crate) const DEADLINE: u32 = 2;
/// `state`: `kill()` was called; the next (or current) kill region is abandoned.
pub(crate) const KILL: u32 = 4;
/// `state`: the request bits; the stub breaks a call when `1 <= state <= REQUEST_MASK`.
const REQUEST_MASK: u32 = 0xff;
/// `state`: one level of `defer_interrupts()`.
const DEFER_ONE: u32 = 0x100;

/// `life`: the thread has ended (or is ending); no more signals may be sent to its tid.
const EXITED: u32 = 1;
/// `life`: the exiting thread sleeps on `life` until the senders in flight have gone; the last
/// one wakes it.
const EXIT_WAITING: u32 = 2;
/// `life`: one sender in flight.
const SENDER: u32 = 4;
/// How many times an exiting thread yields to a sender in flight before it sleeps: a sender
/// that is running leaves within a yield or two, and a wake would cost it a system call; one
/// that was preempted is waited for asleep (module docs: who may be signalled).
const EXIT_YIELDS: u32 = 8;

fn next_id() -> NonZeroU64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NonZeroU64::new(NEXT.fetch_add(1, Ordering::Relaxed)).expect("thread id counter overflowed")
}

/// `Inner::done` values.
pub(crate) const RUNNING: u32 = 0;
pub(crate) const FINISHED: u32 = 1;
/// The thread does not exist in this process: it stayed behind in the parent of a `fork`.
pub(crate) const LOST_IN_FORK: u32 = 2;
/// Or-ed into `done` by a thread about to wait on it, so the finishing thread knows to wake
/// it (no futex call at all when nobody waits).
pub(crate) const DONE_WAITERS: u32 = 4;
/// `tid` of a thread that never ran in this process (its `pthread_create` failed, or it had not
/// started when the process forked): positive, so `Thread::tid` does not wait for it, and no
/// thread's id (`EXITED` is set as well, so nothing is ever sent to it).
const NO_TID: i32 = i32::MAX;
/// `tid` value while a waiter sleeps on the unpublished id.
const TID_WAITERS: i32 = -1;

pub(crate) struct Inner {
    /// The process-unique id (`Thread::id`), never reused.
    pub(crate) id: NonZeroU64,
    pub(crate) name: Option<CString>,
    /// The kernel thread id; 0 (or `TID_WAITERS`) until the thread has published it.
    pub(crate) tid: AtomicI32,
    /// The fork generation (`FORK_GENERATION`) in which `tid` was published: a handle whose
    /// generation is not the current one names a thread that stayed in a parent process.
    pub(crate) generation: AtomicU32,
    pub(crate) daemon: bool,
    /// Created by killable (and so in the registry), as opposed to adopted by `current()`.
    pub(crate) managed: bool,
    /// `RUNNING`, `FINISHED` or `LOST_IN_FORK`, plus `DONE_WAITERS`; a futex word.
    pub(crate) done: AtomicU32,
    /// When the thread finished (`CLOCK_MONOTONIC` nanoseconds, stored just before `done`
    /// turns `FINISHED`), 0 until then: an escalation waiting on several threads one after
    /// another reports each one's own stopping time, not when it got round to looking.
    pub(crate) finished_ns: AtomicU64,
    /// References that keep a managed thread in the registry: the running thread and its
    /// `JoinHandle`. Whoever drops the last one removes the entry.
    pub(crate) registry_refs: AtomicU32,
    /// The stack guard region `[lo, hi)`, for the stack-overflow report (spawned threads only).
    pub(crate) guard_lo: AtomicUsize,
    pub(crate) guard_hi: AtomicUsize,
    /// The alternate stack a finished thread left to its joiner, and who gives it back to the
    /// pool (`stack.rs`, `AltStack::release`).
    pub(crate) alt_stack: AtomicUsize,
    pub(crate) alt_state: AtomicU32,
    /// Interruption: the control word the stub loads, senders in flight, callbacks.
    pub(crate) ctl: Control,
}

impl Inner {
    pub(crate) fn new(name: Option<CString>, managed: bool, daemon: bool) -> Inner {
        Inner {
            id: next_id(),
            name,
            tid: AtomicI32::new(0),
            generation: AtomicU32::new(FORK_GENERATION.load(Ordering::Relaxed)),
            daemon,
            managed,
            done: AtomicU32::new(RUNNING),
            finished_ns: AtomicU64::new(0),
            registry_refs: AtomicU32::new(if managed { 2 } else { 0 }),
            guard_lo: AtomicUsize::new(0),
            guard_hi: AtomicUsize::new(0),
            alt_stack: AtomicUsize::new(0),
            alt_state: AtomicU32::new(0),
            ctl: Control::new(),
        }
    }

    pub(crate) fn name_str(&self) -> Option<&str> {
        // Names are built from `&str` (or std's `&str` name), so they are valid UTF-8.
        self.name.as_ref().and_then(|n| n.to_str().ok())
    }

    /// Whether the thread belongs to this process: not a thread that stayed in the parent of a
    /// `fork` this process was born from.
    pub(crate) fn in_this_process(&self) -> bool {
        self.generation.load(Ordering::Acquire) == FORK_GENERATION.load(Ordering::Acquire)
    }

    /// Publishes the calling thread's kernel id and wakes anyone waiting in `Thread::tid`.
    pub(crate) fn publish_tid(&self) {
        self.generation
            .store(FORK_GENERATION.load(Ordering::Acquire), Ordering::Release);
        // SeqCst: an interrupter sets its bit and then reads `tid`; the target publishes `tid`
        // and then reads the bit. One of the two must see the other's write.
        if self.tid.swap(gettid(), Ordering::SeqCst) == TID_WAITERS {
            futex::wake(self.tid_word(), i32::MAX);
        }
    }

    /// The kernel id, waiting (without spinning) until the thread has published it.
    pub(crate) fn wait_tid(&self) -> i32 {
        loop {
            let tid = self.tid.load(Ordering::Acquire);
            if tid > 0 {
                return tid;
            }
            if tid == 0
                && self
                    .tid
                    .compare_exchange(0, TID_WAITERS, Ordering::Acquire, Ordering::Acquire)
                    .is_err()
            {
                continue;
            }
            futex::wait(self.tid_word(), TID_WAITERS as u32, None);
        }
    }

    fn tid_word(&self) -> &AtomicU32 {
        // SAFETY: AtomicI32 and AtomicU32 have the same size and alignment; the futex only
        // compares the 32-bit value.
        unsafe { &*(self.tid.as_ptr() as *const AtomicU32) }
    }

    /// `RUNNING`, `FINISHED` or `LOST_IN_FORK`.
    pub(crate) fn done_state(&self) -> u32 {
        let d = self.done.load(Ordering::Acquire) & !DONE_WAITERS;
        if d == RUNNING && !self.in_this_process() {
            // A thread killable did not create (so not in the registry the fork handler
            // cleans), adopted in a parent process.
            return LOST_IN_FORK;
        }
        d
    }

    /// Waits until the thread is no longer `RUNNING` or the absolute `deadline` passes; returns
    /// whether it finished. Not interruptible (killable's own bookkeeping: `join`, `stop`).
    pub(crate) fn wait_done(&self, deadline: Option<&libc::timespec>) -> bool {
        let never = self.wait_done_with(|word, expected| {
            Ok::<bool, std::convert::Infallible>(futex::wait(word, expected, deadline))
        });
        match never {
            Ok(done) => done,
        }
    }

    /// The one loop that waits for the thread to finish, with `wait(word, expected)` as the
    /// futex wait (plain, or killable's: `JoinHandle::wait`). `wait` returns `Ok(false)` when
    /// its deadline passed.
    pub(crate) fn wait_done_with<E>(
        &self,
        mut wait: impl FnMut(&AtomicU32, u32) -> Result<bool, E>,
    ) -> Result<bool, E> {
        loop {
            let d = self.done.fetch_or(DONE_WAITERS, Ordering::Acquire) | DONE_WAITERS;
            if d != RUNNING | DONE_WAITERS {
                return Ok(true);
            }
            if !wait(&self.done, d)? {
                return Ok(self.done_state() != RUNNING);
            }
        }
    }
}

/// Counts the `fork`s this process descends from (incremented in each child by the fork
/// handler), so that handles from before a fork can tell they name a thread of the parent.
static FORK_GENERATION: AtomicU32 = AtomicU32::new(0);

/// The number of forks this process descends from (once the fork handlers are registered:
/// `init_fork_handlers`): state tagged with another generation was copied from a parent.
pub(crate) fn fork_generation() -> u32 {
    FORK_GENERATION.load(Ordering::Acquire)
}

/// This process's pid, cached so that neither the signal handler nor `interrupt()` needs a
/// `getpid` system call; refreshed in fork children.
static PID: AtomicI32 = AtomicI32::new(0);

/// This process's pid (cached; see `PID`).
#[inline]
pub(crate) fn pid() -> libc::pid_t {
    let p = PID.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    let p = std::process::id() as libc::pid_t;
    PID.store(p, Ordering::Relaxed);
    p
}

/// The calling thread's kernel id (async-signal-safe: one system call).
pub(crate) fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// What a thread's state word held before a `Control::request`.
#[derive(Clone, Copy)]
pub(crate) struct Prior(u32);

impl Prior {
    /// All of `bits` were already set: nothing new was requested.
    pub(crate) fn had(self, bits: u32) -> bool {
        self.0 & bits == bits
    }

    /// The thread was deferring interrupts.
    pub(crate) fn deferring(self) -> bool {
        self.0 >= DEFER_ONE
    }
}

/// One registered callback, with the lock held while it runs.
pub(crate) struct CallbackCell {
    running: RawLock,
    /// Set (under `running`) when the registration is dropped while the thread that would
    /// run it is the dropping thread itself (a callback dropping another registration): that
    /// run is skipped.
    removed: std::sync::atomic::AtomicBool,
    /// Snapshots (`Control::request`) that hold this callback and have not run it yet. The
    /// registration's drop waits for them, so that each interrupt runs it exactly once and
    /// none runs it after the drop has returned. A futex word.
    pending: AtomicU32,
    f: UnsafeCell<Box<dyn FnMut() + Send>>,
}

thread_local! {
    /// The callbacks this thread has taken in a snapshot and not run yet.
    static SNAPSHOT: RefCell<Vec<*const CallbackCell>> = const { RefCell::new(Vec::new()) };
}

/// The callbacks an interrupter took from a thread's list: run them with `run`, exactly once.
pub(crate) struct Snapshot(Vec<Arc<CallbackCell>>);

impl Snapshot {
    /// Runs each callback (even if one panics); returns the first panic.
    pub(crate) fn run(mut self) -> Option<Box<dyn std::any::Any + Send>> {
        let cells = std::mem::take(&mut self.0);
        let _ = SNAPSHOT.try_with(|s| s.borrow_mut().extend(cells.iter().map(Arc::as_ptr)));
        let mut panic = None;
        for cell in &cells {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cell.run()));
            let _ = SNAPSHOT.try_with(|s| {
                let mut s = s.borrow_mut();
                if let Some(at) = s.iter().position(|&p| std::ptr::eq(p, Arc::as_ptr(cell))) {
                    s.swap_remove(at);
                }
            });
            cell.release();
            if let Err(p) = r {
                panic.get_or_insert(p);
            }
        }
        panic
    }
}

impl Drop for Snapshot {
    /// A snapshot dropped without running (never today) must not leave a drop waiting.
    fn drop(&mut self) {
        for cell in self.0.drain(..) {
            cell.release();
        }
    }
}

// SAFETY: `f` is only called with `running` held, so never from two threads at once; the
// closure itself is `Send`.
unsafe impl Sync for CallbackCell {}
// SAFETY: as above; the box is `Send`.
unsafe impl Send for CallbackCell {}

impl CallbackCell {
    /// One snapshot that held it is done with it.
    fn release(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            futex::wake(&self.pending, i32::MAX);
        }
    }

    /// Runs the callback (under its lock, released even if it panics).
    pub(crate) fn run(&self) {
        let _running = self.running.guard();
        if self.removed.load(Ordering::Relaxed) {
            return;
        }
        // SAFETY: `running` is held, so this is the only access to `f`.
        unsafe { (*self.f.get())() };
    }
}

/// The callbacks of one thread (module docs).
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

/// The part of a thread's `Inner` that stopping uses.
pub(crate) struct Control {
    /// The word the stub loads (module docs). Private: use the named operations.
    state: AtomicU32,
    life: AtomicU32,
    /// The parking token: owned by `sync.rs`.
    pub(crate) park: AtomicU32,
    /// The innermost deadline in `CLOCK_MONOTONIC` nanoseconds, 0 for none. Written only by
    /// the thread itself; read by its signal handler when its timer fires (`deadline.rs`).
    pub(crate) deadline_ns: AtomicU64,
    /// How many kill regions the thread is in (for `in_kill_region` and `stop`).
    pub(crate) regions: AtomicU32,
    /// The seal's state machine: owned by `seal.rs`.
    pub(crate) seal: AtomicU32,
    /// How many sealers are about to sleep, or sleep, on `seal` waiting for the answer: the
    /// target (and the thread's end) wakes them only when there are any (`seal.rs`).
    pub(crate) seal_waiters: AtomicU32,
    /// The thread's closure has returned: it is running its thread-local destructors, where a
    /// panic aborts the process, so it is interrupted but never sealed (`seal.rs`).
    pub(crate) unwinding_out: std::sync::atomic::AtomicBool,
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
            seal_waiters: AtomicU32::new(0),
            unwinding_out: std::sync::atomic::AtomicBool::new(false),
            callbacks: Callbacks::new(),
        }
    }

    /// The word, for the stub and the kill-region entry, which load it themselves.
    pub(crate) fn state_ptr(&self) -> *mut u32 {
        self.state.as_ptr()
    }

    /// The check every killable call makes: `Err` when a request is pending and not deferred.
    #[inline]
    pub(crate) fn check(&self) -> Result<(), Interrupted> {
        let s = self.state.load(Ordering::Acquire);
        if s.wrapping_sub(1) < REQUEST_MASK {
            return Err(Interrupted::stop(s & INTERRUPT == 0 && s & DEADLINE != 0));
        }
        Ok(())
    }

    /// Sets request `bits` (`INTERRUPT`, `KILL`, `DEADLINE`), with a sequentially consistent
    /// read-modify-write. If this newly sets `INTERRUPT` on a thread still running, returns the
    /// callbacks to run (a snapshot taken under the list lock: module docs).
    pub(crate) fn request(&self, bits: u32) -> (Prior, Snapshot) {
        self.callbacks.with(|list| {
            let old = self.state.fetch_or(bits, Ordering::SeqCst);
            let newly_interrupted = bits & INTERRUPT != 0
                && old & INTERRUPT == 0
                && self.life.load(Ordering::Acquire) & EXITED == 0;
            let to_run = if newly_interrupted {
                list.iter()
                    .map(|(_, cell)| {
                        cell.pending.fetch_add(1, Ordering::AcqRel);
                        cell.clone()
                    })
                    .collect()
            } else {
                Vec::new()
            };
            (Prior(old), Snapshot(to_run))
        })
    }

    /// Sets `bits` without callbacks: a request made before the thread runs (the spawn rule) or
    /// by the thread's own signal handler (a passed deadline). Async-signal-safe.
    pub(crate) fn set_quietly(&self, bits: u32) {
        self.state.fetch_or(bits, Ordering::SeqCst);
    }

    /// Clears `INTERRUPT` and `KILL`; returns whether `INTERRUPT` was set.
    pub(crate) fn clear_interrupt(&self) -> bool {
        self.state.fetch_and(!(INTERRUPT | KILL), Ordering::AcqRel) & INTERRUPT != 0
    }

    /// Whether `INTERRUPT` is set (deferral does not hide it).
    pub(crate) fn is_interrupted(&self) -> bool {
        self.state.load(Ordering::Acquire) & INTERRUPT != 0
    }

    /// One more level of deferral.
    pub(crate) fn defer(&self) {
        self.state.fetch_add(DEFER_ONE, Ordering::AcqRel);
    }

    /// One level of deferral less.
    pub(crate) fn undefer(&self) {
        self.state.fetch_sub(DEFER_ONE, Ordering::AcqRel);
    }

    /// How many `defer_interrupts()` guards are live (a pool thread whose job leaked one is
    /// not reused: `blocking.rs`).
    pub(crate) fn deferral_depth(&self) -> u32 {
        self.state.load(Ordering::Acquire) / DEFER_ONE
    }

    /// Whether an interrupt callback is registered (a pool thread whose job leaked one is not
    /// reused: `blocking.rs`).
    pub(crate) fn has_callbacks(&self) -> bool {
        self.callbacks.with(|list| !list.is_empty())
    }

    /// A kill is pending and not deferred. Async-signal-safe.
    pub(crate) fn kill_due(&self) -> bool {
        let s = self.state.load(Ordering::SeqCst);
        s & KILL != 0 && s < DEFER_ONE
    }

    /// Consumes a pending kill (the interrupt that came with it stays). Async-signal-safe.
    pub(crate) fn take_kill(&self) {
        self.state.fetch_and(!KILL, Ordering::SeqCst);
    }

    /// Clears `DEADLINE` (a new innermost deadline is in force).
    pub(crate) fn clear_deadline(&self) {
        self.state.fetch_and(!DEADLINE, Ordering::SeqCst);
    }

    /// Registers a callback (`on_interrupt`); returns whether the thread is already
    /// interrupted, in which case the caller runs it once itself.
    pub(crate) fn add_callback(
        &self,
        id: u64,
        f: Box<dyn FnMut() + Send>,
    ) -> Option<Arc<CallbackCell>> {
        let cell = Arc::new(CallbackCell {
            running: RawLock::new(),
            removed: std::sync::atomic::AtomicBool::new(false),
            pending: AtomicU32::new(0),
            f: UnsafeCell::new(f),
        });
        let already = self.callbacks.with(|list| {
            list.push((id, cell.clone()));
            self.is_interrupted()
        });
        already.then_some(cell)
    }

    /// Unregisters a callback; once this returns it never runs again (a run in progress on
    /// another thread is waited for).
    pub(crate) fn remove_callback(&self, id: u64) {
        let removed = self.callbacks.with(|list| {
            let at = list.iter().position(|(i, _)| *i == id)?;
            Some(list.swap_remove(at).1)
        });
        let Some(cell) = removed else { return };
        let mine = SNAPSHOT
            .try_with(|s| {
                s.borrow()
                    .iter()
                    .any(|&p| std::ptr::eq(p, Arc::as_ptr(&cell)))
            })
            .unwrap_or(false);
        if mine {
            // This thread holds a snapshot with it (a callback dropping another registration):
            // waiting would wait for itself. The run is skipped instead.
            let _running = cell.running.guard();
            cell.removed.store(true, Ordering::Relaxed);
            return;
        }
        // No new snapshot can take it now; wait for the ones taken before to run it.
        loop {
            let n = cell.pending.load(Ordering::Acquire);
            if n == 0 {
                break;
            }
            futex::wait(&cell.pending, n, None);
        }
        // And for a run at registration (on the registering thread) still in progress.
        drop(cell.running.guard());
    }

    /// Marks the thread as ended and waits for senders already in flight. Called by the thread
    /// itself as it ends.
    pub(crate) fn mark_exited(&self) {
        let mut life = self.life.fetch_or(EXITED, Ordering::SeqCst) | EXITED;
        let mut yields = 0;
        while life >= SENDER {
            if yields < EXIT_YIELDS {
                yields += 1;
                std::hint::spin_loop();
                std::thread::yield_now();
                life = self.life.load(Ordering::SeqCst);
                continue;
            }
            // Announce the sleep before taking it; a sender leaving after this sees the bit
            // and wakes us, and one that left before changed the word, so the wait returns
            // at once (module docs: who may be signalled).
            life = self.life.fetch_or(EXIT_WAITING, Ordering::SeqCst) | EXIT_WAITING;
            if life >= SENDER {
                futex::wait(&self.life, life, None);
                life = self.life.load(Ordering::SeqCst);
            }
        }
        if life & EXIT_WAITING != 0 {
            // Nobody sleeps on `life` any more: later senders (which see `EXITED` and do
            // nothing) need not wake anyone. The mask leaves their count alone.
            self.life.fetch_and(!EXIT_WAITING, Ordering::SeqCst);
        }
    }

    /// Unregisters a sender (`with_live_tid`), waking the exiting thread if it was the last
    /// one it waits for.
    fn sender_done(&self) {
        let after = self
            .life
            .fetch_sub(SENDER, Ordering::SeqCst)
            .wrapping_sub(SENDER);
        if after < SENDER && after & EXIT_WAITING != 0 {
            // The caller holds a `Thread` (or `Inner`) reference, so `life` is still
            // allocated even if the woken thread is gone by the time the wake runs.
            futex::wake(&self.life, i32::MAX);
        }
    }

    /// Like `mark_exited`, without waiting (in a fork child the senders do not exist; for a
    /// thread adopted during its own teardown, nobody has its `Thread` yet).
    pub(crate) fn mark_exited_now(&self) {
        self.life.store(EXITED, Ordering::SeqCst);
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
    // this point with a SeqCst read-modify-write (a request bit; a seal request, followed by a
    // fence in `seal_async`) is seen by the thread's first check if the tid is not published.
    let tid = inner.tid.load(Ordering::SeqCst);
    if tid <= 0 || !inner.in_this_process() {
        return None;
    }
    let before = inner.ctl.life.fetch_add(SENDER, Ordering::SeqCst);
    // `tid` belongs to a thread of this process that cannot finish exiting while we are
    // registered as a sender (`Control::mark_exited` waits for us).
    let r = (before & EXITED == 0).then(|| f(tid));
    inner.ctl.sender_done();
    r
}

thread_local! {
    /// The calling thread's `Inner`, or null (module docs).
    pub(crate) static CURRENT: Cell<*const Inner> = const { Cell::new(std::ptr::null()) };
    static ADOPTED: Holder = const { Holder(RefCell::new(None)) };
}

/// The calling thread's `Inner`, if it has one (no adoption). For signal handlers and fork
/// handlers, which must not allocate.
#[inline]
pub(crate) fn current_ptr() -> *const Inner {
    CURRENT.with(Cell::get)
}

/// The calling thread's `Inner`, adopting the thread if killable did not create it.
pub(crate) fn current_inner() -> Arc<Inner> {
    let p = current_ptr();
    if !p.is_null() {
        // SAFETY: CURRENT is non-null only while an `Arc<Inner>` for this thread is alive on
        // this thread (module docs), so the pointer came from `Arc::as_ptr` of a live Arc.
        unsafe {
            Arc::increment_strong_count(p);
            return Arc::from_raw(p);
        }
    }
    adopt()
}

/// Runs `f` with the calling thread's `Inner` (adopting the thread if needed).
#[inline(always)]
pub(crate) fn with_current<R>(f: impl FnOnce(&Inner) -> R) -> R {
    let p = current_ptr();
    if p.is_null() {
        return f(&current_inner());
    }
    // SAFETY: CURRENT is non-null only while this thread's `Inner` is alive (module docs).
    f(unsafe { &*p })
}

/// Keeps an adopted thread's `Inner` alive until the thread exits.
struct Holder(RefCell<Option<Arc<Inner>>>);

impl Drop for Holder {
    fn drop(&mut self) {
        if let Some(inner) = self.0.borrow_mut().take() {
            CURRENT.with(|c| {
                if c.get() == Arc::as_ptr(&inner) {
                    c.set(std::ptr::null());
                }
            });
            exit_protocol(&inner);
        }
    }
}

/// Gives a thread killable did not create its control block.
#[cold]
fn adopt() -> Arc<Inner> {
    init_fork_handlers();
    let tid = gettid();
    let name = if tid == std::process::id() as i32 {
        Some("main".to_owned())
    } else {
        std::thread::current().name().map(str::to_owned)
    };
    let name = name.and_then(|n| CString::new(n).ok());
    let inner = Arc::new(Inner::new(name, false, false));
    inner.publish_tid();
    let kept = ADOPTED.try_with(|h| {
        *h.0.borrow_mut() = Some(inner.clone());
        CURRENT.with(|c| c.set(Arc::as_ptr(&inner)));
    });
    // During thread-local teardown the holder is gone: the caller gets a `Thread` that lives as
    // long as it keeps it, which is all we can offer that late. It is marked exited at once, so
    // no signal can ever reach its tid after the thread is gone.
    if kept.is_err() {
        inner.ctl.mark_exited_now();
    }
    inner
}

/// Runs when a thread is about to end: marks it finished for everyone who holds its `Thread`.
pub(crate) fn exit_protocol(inner: &Inner) {
    // No signal may reach this tid once the thread is gone (it could be reused).
    inner.ctl.mark_exited();
    inner
        .finished_ns
        .store(crate::time::now_ns().max(1), Ordering::Relaxed);
    if inner.done.swap(FINISHED, Ordering::Release) & DONE_WAITERS != 0 {
        futex::wake(&inner.done, i32::MAX);
    }
    crate::seal::thread_ended(&inner.ctl);
}

/// Marks a thread whose `pthread_create` failed: finished, never signalled, with the same
/// placeholder id as a thread lost in a fork before it started.
pub(crate) fn never_started(inner: &Inner) {
    inner.ctl.mark_exited_now();
    inner.tid.store(NO_TID, Ordering::SeqCst);
    futex::wake(inner.tid_word(), i32::MAX);
    if inner.done.swap(FINISHED, Ordering::Release) & DONE_WAITERS != 0 {
        futex::wake(&inner.done, i32::MAX);
    }
}

/// Marks a thread that stayed behind in the parent of a `fork` (runs in the fork child).
pub(crate) fn mark_lost(inner: &Inner) {
    inner.ctl.mark_exited_now();
    inner.done.store(LOST_IN_FORK, Ordering::Release);
    if inner.tid.load(Ordering::Relaxed) <= 0 {
        // It never started in the parent before the fork; nobody will ever publish it here.
        inner.tid.store(NO_TID, Ordering::Relaxed);
    }
}

/// Set once every fork handler of the crate is registered (`register_fork_handlers`).
static FORK_HANDLERS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Registers every fork handler of the crate, in the order their child handlers must run
/// (`pthread_atfork` runs child handlers in the order of registration): the control blocks'
/// first, which fix the forking thread's tid and generation, then the registry's, which cleans
/// its map with them, then the alternate-stack pool's. Returns the first error.
fn register_fork_handlers() -> Result<(), i32> {
    register_atfork(prepare, parent, child)?;
    crate::registry::register_fork_handlers()?;
    crate::stack::register_fork_handlers()?;
    FORK_HANDLERS.store(true, Ordering::Release);
    Ok(())
}

/// Registers the fork handlers as the program is loaded, before `main` and before any thread
/// exists. Registered later, on first use, a registration races with a `fork` on another
/// thread: glibc's `fork` holds its handler lock from the prepare handlers to the clone, so
/// `pthread_atfork` waits inside the registration, and the child copies the registration as
/// under way, with no thread to finish it; its first use of killable then waits forever. (The
/// program's loader runs `.init_array`, as for a C constructor; a library loaded with `dlopen`
/// runs it in `dlopen`.)
extern "C" fn register_at_load() {
    // An error (no memory) is reported by `init_fork_handlers`, on first use, where it can panic.
    let _ = register_fork_handlers();
}

#[used]
#[unsafe(link_section = ".init_array")]
static REGISTER_AT_LOAD: extern "C" fn() = register_at_load;

/// Makes sure the fork handlers are registered (they are, from load: `register_at_load`).
/// Called before any control block, registry entry, pooled stack or set lock exists.
pub(crate) fn init_fork_handlers() {
    if FORK_HANDLERS.load(Ordering::Acquire) {
        return;
    }
    // The loader did not run `register_at_load` (or its registration failed): register now.
    // Naming the static keeps its object file, and with it the `.init_array` entry, in the link.
    std::hint::black_box(&REGISTER_AT_LOAD);
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Err(r) = register_fork_handlers() {
            panic!(
                "pthread_atfork failed: {}",
                std::io::Error::from_raw_os_error(r)
            );
        }
    });
}

/// Registers three fork handlers with `pthread_atfork`; the error number if it fails.
pub(crate) fn register_atfork(
    prepare: extern "C" fn(),
    parent: extern "C" fn(),
    child: extern "C" fn(),
) -> Result<(), i32> {
    // SAFETY: the three handlers are `extern "C"` functions with no arguments that live for the
    // whole program.
    match unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) } {
        0 => Ok(()),
        r => Err(r),
    }
}

/// The calling thread's `Inner` in a fork handler, if it has one.
fn forking_thread() -> Option<&'static Inner> {
    let me = current_ptr();
    // SAFETY: CURRENT points to this thread's live `Inner` (module docs), which outlives these
    // fork handlers running on this thread; the 'static is not let out of the handlers.
    (!me.is_null()).then(|| unsafe { &*me })
}

extern "C" fn prepare() {
    if let Some(me) = forking_thread() {
        me.ctl.callbacks.lock.lock();
    }
}

extern "C" fn parent() {
    if let Some(me) = forking_thread() {
        me.ctl.callbacks.lock.unlock();
    }
}

extern "C" fn child() {
    PID.store(std::process::id() as libc::pid_t, Ordering::Relaxed);
    // Every handle from before the fork now names a thread of the parent, except the forking
    // thread's, whose generation is renewed below.
    let generation = FORK_GENERATION.fetch_add(1, Ordering::AcqRel) + 1;
    if let Some(me) = forking_thread() {
        me.generation.store(generation, Ordering::Release);
        me.tid.store(gettid(), Ordering::SeqCst);
        // A thread of the parent may have been sending to us, or running one of our callbacks,
        // at the fork: its count and locks were copied, but it does not exist here.
        me.ctl.life.fetch_and(EXITED, Ordering::SeqCst);
        // SAFETY: the child has one thread, and the list lock was taken before the fork.
        for (_, cell) in unsafe { &*me.ctl.callbacks.list.get() } {
            cell.running.reset_in_child();
        }
        me.ctl.callbacks.lock.reset_in_child();
        crate::seal::forget_in_child(&me.ctl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a process of its own that has run nothing of the crate's, the fork handlers are
    /// already registered: the loader ran `register_at_load` (a registration on first use could
    /// race with a fork: see there).
    #[test]
    fn the_fork_handlers_are_registered_as_the_program_loads() {
        let name = "control::tests::the_fork_handlers_are_registered_as_the_program_loads";
        testkit::in_child(name, std::time::Duration::from_secs(60), || {
            assert!(FORK_HANDLERS.load(Ordering::Acquire));
        });
    }

    unsafe extern "C" {
        static killable_c_kill: u32;
        static killable_c_defer_shift: u32;
        static killable_stub_request_mask: u32;
    }

    /// The C (`kill.c`) and assembly (`syscall_<arch>.S`) copies of the layout match this file.
    #[test]
    fn the_c_and_assembly_layouts_match() {
        // SAFETY: constants defined in the C and assembly files, never written.
        let (kill, shift, mask) = unsafe {
            (
                killable_c_kill,
                killable_c_defer_shift,
                killable_stub_request_mask,
            )
        };
        assert_eq!(kill, KILL);
        assert_eq!(1 << shift, DEFER_ONE);
        assert_eq!(mask, REQUEST_MASK);
        assert_eq!(
            REQUEST_MASK + 1,
            DEFER_ONE,
            "requests sit below the deferral count"
        );
    }

    /// A thread pinned by a sender (`with_live_tid`) does not finish while the sender is in
    /// flight: it sleeps (`EXIT_WAITING`), and the sender's exit wakes it.
    /// Spawns a thread that ends when told, pins it (`with_live_tid`), tells it to end, and
    /// runs `asleep` once it sleeps waiting for the pin to go (`EXIT_WAITING`); then unpins it.
    fn pinned_until_it_sleeps(asleep: impl FnOnce(&Inner)) -> (crate::JoinHandle<()>, Arc<Inner>) {
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let h = crate::spawn(move || {
            let _ = wait.recv();
        });
        let inner = h.thread().inner.clone();
        inner.wait_tid();
        let pinned = with_live_tid(&inner, |_| {
            go.send(()).unwrap();
            let t = std::time::Instant::now();
            while inner.ctl.life.load(Ordering::SeqCst) & EXIT_WAITING == 0 {
                assert!(t.elapsed().as_secs() < 30, "the thread never waited for us");
                std::thread::yield_now();
            }
            asleep(&inner);
        });
        assert!(pinned.is_some());
        (h, inner)
    }

    #[test]
    fn an_exiting_thread_sleeps_until_the_sender_in_flight_leaves() {
        let (h, inner) = pinned_until_it_sleeps(|inner| {
            // Asleep, and so neither finished nor able to let its tid be reused.
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert_eq!(inner.done_state(), RUNNING);
        });
        let deadline = crate::time::monotonic_timespec(
            std::time::Instant::now() + std::time::Duration::from_secs(30),
        );
        assert!(
            inner.wait_done(Some(&deadline)),
            "the last sender did not wake the exiting thread"
        );
        h.join().unwrap();
        assert!(with_live_tid(&inner, |_| ()).is_none());
    }

    /// Once an exiting thread that slept (`EXIT_WAITING`) has finished, a sender to it makes no
    /// system call: nobody sleeps on `life` any more, so `sender_done` must not wake it. The
    /// bit was left set, so every later `with_live_tid` made a `futex` wake that could wake
    /// nobody: `Thread::affinity` of the finished thread, and any sender (interrupt, seal,
    /// diagnose) that passed its `done_state` check before the thread stored `FINISHED`.
    #[test]
    fn regression_a_finished_thread_that_slept_costs_its_later_senders_no_wake() {
        let (h, inner) = pinned_until_it_sleeps(|_| {});
        h.join().unwrap();
        // What strace shows as a futex(FUTEX_WAKE_PRIVATE) per call:
        for _ in 0..1000 {
            assert!(with_live_tid(&inner, |_| ()).is_none());
        }
        let life = inner.ctl.life.load(Ordering::SeqCst);
        println!("life of the finished thread: {life:#x}");
        assert_eq!(
            life & EXIT_WAITING,
            0,
            "a finished thread still asks every sender to wake it"
        );
    }
}
