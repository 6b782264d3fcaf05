//! `Thread`: a cloneable handle to a thread, and `current()`.
//!
//! Every thread that asks for its `Thread` gets one: threads killable spawned have theirs from
//! birth, and any other thread (the main thread, a `std::thread`, a thread a C library created)
//! gets one lazily, kept in a thread-local until the thread exits.
//!
//! # Internal workings
//!
//! The calling thread's `Inner` is reachable through one raw pointer in a thread-local,
//! `CURRENT`. It is non-null only while an `Arc<Inner>` for this thread is alive on this thread:
//! in the start routine's frame for spawned threads, in the `FOREIGN` holder otherwise. Signal
//! handlers read it with a single thread-local load and never write it.

use std::cell::{Cell, RefCell};
use std::ffi::CString;
use std::fmt;
use std::io;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::futex;
use crate::interrupt::Control;

/// A unique identifier for a thread, never reused within a process.
///
/// # Examples
///
/// ```
/// let a = killable::current().id();
/// let b = killable::spawn(|| killable::current().id()).join().unwrap();
/// assert_ne!(a, b);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ThreadId(NonZeroU64);

impl ThreadId {
    fn next() -> ThreadId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        ThreadId(NonZeroU64::new(id).expect("thread id counter overflowed"))
    }

    /// The id as a number.
    ///
    /// # Examples
    ///
    /// ```
    /// let id = killable::current().id();
    /// assert!(id.as_u64().get() >= 1);
    /// ```
    pub fn as_u64(&self) -> NonZeroU64 {
        self.0
    }
}

/// `Inner::done` values.
pub(crate) const RUNNING: u32 = 0;
pub(crate) const FINISHED: u32 = 1;
/// The thread does not exist in this process: it stayed behind in the parent of a `fork`.
pub(crate) const LOST_IN_FORK: u32 = 2;
/// Or-ed into `done` by a thread about to wait on it, so the finishing thread knows to wake
/// it (no futex call at all when nobody waits).
pub(crate) const DONE_WAITERS: u32 = 4;
/// `tid` value while a waiter sleeps on the unpublished id.
const TID_WAITERS: i32 = -1;

pub(crate) struct Inner {
    pub(crate) id: ThreadId,
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
    /// References that keep a managed thread in the registry: the running thread and its
    /// `JoinHandle`. Whoever drops the last one removes the entry.
    pub(crate) registry_refs: AtomicU32,
    /// The stack guard region `[lo, hi)`, for the stack-overflow report (spawned threads only).
    pub(crate) guard_lo: AtomicUsize,
    pub(crate) guard_hi: AtomicUsize,
    /// Interruption: the control word the stub loads, senders in flight, callbacks.
    pub(crate) ctl: Control,
}

impl Inner {
    pub(crate) fn new(name: Option<CString>, managed: bool, daemon: bool) -> Inner {
        Inner {
            id: ThreadId::next(),
            name,
            tid: AtomicI32::new(0),
            generation: AtomicU32::new(FORK_GENERATION.load(Ordering::Relaxed)),
            daemon,
            managed,
            done: AtomicU32::new(RUNNING),
            registry_refs: AtomicU32::new(if managed { 2 } else { 0 }),
            guard_lo: AtomicUsize::new(0),
            guard_hi: AtomicUsize::new(0),
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
    /// whether it finished.
    pub(crate) fn wait_done(&self, deadline: Option<&libc::timespec>) -> bool {
        loop {
            let d = self.done.fetch_or(DONE_WAITERS, Ordering::Acquire) | DONE_WAITERS;
            if d != RUNNING | DONE_WAITERS {
                return true;
            }
            if !futex::wait(&self.done, d, deadline) {
                return self.done_state() != RUNNING;
            }
        }
    }
}

/// Counts the `fork`s this process descends from (incremented in each child by the registry's
/// fork handler), so that handles from before a fork can tell they name a thread of the parent.
pub(crate) static FORK_GENERATION: AtomicU32 = AtomicU32::new(0);

pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

thread_local! {
    /// The calling thread's `Inner`, or null (see the module's internal workings).
    pub(crate) static CURRENT: Cell<*const Inner> = const { Cell::new(std::ptr::null()) };
    static FOREIGN: Holder = const { Holder(RefCell::new(None)) };
}

/// Keeps an adopted thread's `Thread` alive until the thread exits.
struct Holder(RefCell<Option<Thread>>);

impl Drop for Holder {
    fn drop(&mut self) {
        if let Some(thread) = self.0.borrow_mut().take() {
            CURRENT.with(|c| {
                if c.get() == Arc::as_ptr(&thread.inner) {
                    c.set(std::ptr::null());
                }
            });
            crate::thread::exit_protocol(&thread.inner);
        }
    }
}

/// Runs when a thread is about to end: marks it finished for everyone who holds its `Thread`.
pub(crate) fn exit_protocol(inner: &Inner) {
    // No signal may reach this tid once the thread is gone (it could be reused).
    inner.ctl.mark_exited();
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
        inner.tid.store(i32::MAX, Ordering::Relaxed);
    }
}

/// A handle to a thread: cheap to clone, `Send` and `Sync`.
///
/// Obtained from [`current`], [`JoinHandle::thread`](crate::JoinHandle::thread) or
/// [`threads`](crate::threads). A `Thread` stays valid after its thread has ended.
///
/// # Examples
///
/// ```
/// let handle = killable::Builder::new().name("worker".into()).spawn(|| 7).unwrap();
/// let thread = handle.thread().clone();
/// assert_eq!(thread.name(), Some("worker"));
/// assert_eq!(handle.join().unwrap(), 7);
/// ```
#[derive(Clone)]
pub struct Thread {
    pub(crate) inner: Arc<Inner>,
}

impl Thread {
    /// The thread's name, if it has one.
    ///
    /// This is the full name given to [`Builder::name`](crate::Builder::name); the kernel keeps
    /// only its first 15 bytes (see `/proc/self/task/<tid>/comm`). The main thread is `"main"`;
    /// a `std::thread` adopted by [`current`] carries std's name.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::Builder::new().name("named".into()).spawn(|| ()).unwrap();
    /// assert_eq!(h.thread().name(), Some("named"));
    /// h.join().unwrap();
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.inner.name_str()
    }

    /// The kernel's id for the thread (what `gettid(2)` returns inside it), as seen in
    /// `/proc/self/task/`.
    ///
    /// Right after `spawn` the new thread may not have started yet; this waits (without
    /// spinning) until it has published its id, which it does before running any user code.
    ///
    /// # Examples
    ///
    /// ```
    /// let tid = killable::current().tid();
    /// assert!(std::path::Path::new(&format!("/proc/self/task/{tid}")).exists());
    /// ```
    #[doc(alias = "gettid")]
    pub fn tid(&self) -> i32 {
        loop {
            let tid = self.inner.tid.load(Ordering::Acquire);
            if tid > 0 {
                return tid;
            }
            if tid == 0
                && self
                    .inner
                    .tid
                    .compare_exchange(0, TID_WAITERS, Ordering::Acquire, Ordering::Acquire)
                    .is_err()
            {
                continue;
            }
            futex::wait(self.inner.tid_word(), TID_WAITERS as u32, None);
        }
    }

    /// The thread's process-unique id.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = killable::spawn(|| ());
    /// let b = killable::spawn(|| ());
    /// assert_ne!(a.thread().id(), b.thread().id());
    /// a.join().unwrap();
    /// b.join().unwrap();
    /// ```
    pub fn id(&self) -> ThreadId {
        self.inner.id
    }

    /// Whether the thread has finished running (its closure returned or panicked).
    ///
    /// For a thread killable did not create, this turns true when its thread-locals are torn
    /// down at exit.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| ());
    /// let t = h.thread().clone();
    /// h.join().unwrap();
    /// assert!(t.is_finished());
    /// ```
    pub fn is_finished(&self) -> bool {
        self.inner.done_state() != RUNNING
    }

    /// The CPUs the thread may run on, read with `sched_getaffinity(2)`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if the thread has finished (its id may already name another
    /// thread) or stayed in the parent of a `fork`; the OS error if the call fails.
    ///
    /// # Examples
    ///
    /// ```
    /// let cpus = killable::current().affinity().unwrap();
    /// assert!(!cpus.is_empty());
    /// ```
    ///
    /// # References
    ///
    /// * [`sched_getaffinity(2)`](https://man7.org/linux/man-pages/man2/sched_getaffinity.2.html)
    #[doc(alias = "sched_getaffinity")]
    pub fn affinity(&self) -> io::Result<Vec<usize>> {
        self.tid(); // not started yet: wait until its id is published
        // Pinned: the thread cannot finish exiting during the call, so `tid` is still its id
        // and not that of a thread that reused it.
        let set = crate::interrupt::with_live_tid(&self.inner, |tid| {
            // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            // SAFETY: `set` is writable and its size is passed.
            let r = unsafe {
                libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set)
            };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(set)
        })
        .ok_or_else(|| crate::stop::not_live_error(self))??;
        Ok((0..libc::CPU_SETSIZE as usize)
            // SAFETY: `i` is below CPU_SETSIZE, the set's capacity.
            .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
            .collect())
    }
}

impl fmt::Debug for Thread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Thread")
            .field("id", &self.inner.id)
            .field("name", &self.name())
            .field("tid", &self.inner.tid.load(Ordering::Relaxed).max(0))
            .field("managed", &self.inner.managed)
            .finish_non_exhaustive()
    }
}

/// The calling thread's [`Thread`].
///
/// Works in every thread: threads killable spawned, the main thread, `std::thread`s, and
/// threads created by C code. A thread killable did not create is adopted on the first call
/// and keeps the same `Thread` (same [`id`](Thread::id)) until it exits.
///
/// # Examples
///
/// ```
/// let main = killable::current();
/// assert_eq!(main.tid(), std::process::id() as i32);
/// assert_eq!(main.id(), killable::current().id());
/// ```
pub fn current() -> Thread {
    let p = CURRENT.with(Cell::get);
    if !p.is_null() {
        // SAFETY: CURRENT is non-null only while an `Arc<Inner>` for this thread is alive on
        // this thread (module docs), so the pointer came from `Arc::as_ptr` of a live Arc.
        unsafe {
            Arc::increment_strong_count(p);
            return Thread {
                inner: Arc::from_raw(p),
            };
        }
    }
    adopt()
}

/// Gives a thread killable did not create its `Thread`.
#[cold]
fn adopt() -> Thread {
    crate::registry::init();
    let tid = gettid();
    let name = if tid == std::process::id() as i32 {
        Some("main".to_owned())
    } else {
        std::thread::current().name().map(str::to_owned)
    };
    let name = name.and_then(|n| CString::new(n).ok());
    let thread = Thread {
        inner: Arc::new(Inner::new(name, false, false)),
    };
    thread.inner.publish_tid();
    let kept = FOREIGN.try_with(|h| {
        *h.0.borrow_mut() = Some(thread.clone());
        CURRENT.with(|c| c.set(Arc::as_ptr(&thread.inner)));
    });
    // During thread-local teardown the holder is gone: the caller gets a `Thread` that lives as
    // long as it keeps it, which is all we can offer that late. It is marked exited at once, so
    // no signal can ever reach its tid after the thread is gone.
    if kept.is_err() {
        thread.inner.ctl.mark_exited_now();
    }
    thread
}
