//! The registry of live managed threads: what [`threads`] lists, and what a forked child keeps.
//!
//! # Internal workings
//!
//! A managed thread enters the registry in `spawn`, before `pthread_create`, and leaves it when
//! both the thread has ended and its `JoinHandle` is gone (joined, detached by drop, or turned
//! into a raw `pthread_t`): `Inner::registry_refs` starts at 2 and whoever takes it to 0
//! removes the entry. So a thread that has finished but was not joined yet is still listed,
//! with `finished` set.
//!
//! `fork()` copies only the calling thread. A `pthread_atfork` prepare handler takes the
//! registry lock so that no other thread is half-way through changing it; the child handler
//! keeps only the forking thread's entry, marks every other one as lost (their `JoinHandle`s in
//! the child then report that instead of waiting forever), fixes the forking thread's `tid`
//! (in the child it is the child's pid) and releases the lock.
//!
//! The child handler also increments the fork generation (`thread::FORK_GENERATION`) and gives
//! it to the forking thread alone: every other `Thread` from before the fork, including those
//! of threads killable did not create and so never listed here, then reports itself lost and
//! is never signalled, even once the child reuses its thread id (`interrupt::with_live_tid`).
//! The prepare handler also holds the forking thread's interrupt-callback list lock, and the
//! child resets that lock and its callbacks' locks, so the child inherits nothing locked by a
//! thread that stayed behind (`interrupt.rs`).

use std::cell::UnsafeCell;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use crate::control::{Inner, current_ptr, mark_lost, register_atfork};
use crate::futex::RawLock;
use crate::thread::Thread;

struct Registry {
    lock: RawLock,
    map: UnsafeCell<BTreeMap<u64, Thread>>,
}

// SAFETY: `map` is only touched with `lock` held (or in the single-threaded fork child).
unsafe impl Sync for Registry {}

static REGISTRY: Registry = Registry {
    lock: RawLock::new(),
    map: UnsafeCell::new(BTreeMap::new()),
};

fn with_map<R>(f: impl FnOnce(&mut BTreeMap<u64, Thread>) -> R) -> R {
    REGISTRY.lock.lock();
    struct Unlock;
    impl Drop for Unlock {
        fn drop(&mut self) {
            REGISTRY.lock.unlock();
        }
    }
    let _unlock = Unlock;
    // SAFETY: the lock is held until `_unlock` drops, so this is the only reference.
    f(unsafe { &mut *REGISTRY.map.get() })
}

/// Registers the registry's fork handlers: only `control::register_fork_handlers` calls this,
/// after the control blocks' (their child handler fixes the forking thread's tid before ours
/// cleans the map).
pub(crate) fn register_fork_handlers() -> Result<(), i32> {
    register_atfork(prepare, parent, child)
}

extern "C" fn prepare() {
    REGISTRY.lock.lock();
}

extern "C" fn parent() {
    REGISTRY.lock.unlock();
}

extern "C" fn child() {
    // The control blocks' own fork handler (control.rs) has run: the forking thread's tid and
    // generation are this child's.
    let me = current_ptr();
    // SAFETY: the prepare handler took the lock in the parent, and this child has one thread.
    let map = unsafe { &mut *REGISTRY.map.get() };
    for (_, thread) in std::mem::take(map) {
        if std::ptr::eq(std::sync::Arc::as_ptr(&thread.inner), me) {
            map.insert(thread.inner.id.get(), thread);
        } else {
            mark_lost(&thread.inner);
            // Dropping it could run user destructors inside the fork handler; it is a few
            // bytes, kept for the life of the child.
            std::mem::forget(thread);
        }
    }
    REGISTRY.lock.unlock();
}

pub(crate) fn insert(thread: &Thread) {
    crate::control::init_fork_handlers();
    with_map(|m| m.insert(thread.inner.id.get(), thread.clone()));
}

/// Drops one of the two references that keep a managed thread listed.
pub(crate) fn release(inner: &Inner) {
    if inner.registry_refs.fetch_sub(1, Ordering::AcqRel) == 1 {
        let removed = with_map(|m| m.remove(&inner.id.get()));
        drop(removed);
    }
}

/// The listed threads for which `keep` is true, cloned under the lock (`shutdown`'s rounds).
pub(crate) fn collect(mut keep: impl FnMut(&Thread) -> bool) -> Vec<Thread> {
    with_map(|m| m.values().filter(|t| keep(t)).cloned().collect())
}

/// A snapshot of one managed thread, as returned by [`threads`].
///
/// # Examples
///
/// ```
/// for info in killable::threads() {
///     println!("{:?} tid {} daemon {}", info.name(), info.tid(), info.is_daemon());
/// }
/// ```
#[derive(Clone, Debug)]
pub struct ThreadInfo {
    thread: Thread,
    finished: bool,
}

impl ThreadInfo {
    /// The thread itself.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| ());
    /// let listed = killable::threads().into_iter().any(|i| i.thread().id() == h.thread().id());
    /// assert!(listed);
    /// h.join().unwrap();
    /// ```
    pub fn thread(&self) -> &Thread {
        &self.thread
    }

    /// Its name, if it has one.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::Builder::new().name("named".into()).spawn(|| ()).unwrap();
    /// let info = killable::threads().into_iter().find(|i| i.thread().id() == h.thread().id()).unwrap();
    /// assert_eq!(info.name(), Some("named"));
    /// h.join().unwrap();
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.thread.name()
    }

    /// Its kernel thread id.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| ());
    /// let info = killable::threads().into_iter().find(|i| i.thread().id() == h.thread().id()).unwrap();
    /// assert_eq!(info.tid(), h.thread().tid());
    /// h.join().unwrap();
    /// ```
    pub fn tid(&self) -> i32 {
        self.thread.tid()
    }

    /// Whether it was spawned with [`Builder::daemon(true)`](crate::Builder::daemon).
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::Builder::new().daemon(true).spawn(|| ()).unwrap();
    /// let info = killable::threads().into_iter().find(|i| i.thread().id() == h.thread().id()).unwrap();
    /// assert!(info.is_daemon());
    /// h.join().unwrap();
    /// ```
    pub fn is_daemon(&self) -> bool {
        self.thread.inner.daemon
    }

    /// Whether it has been [sealed](crate::Thread::seal).
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| ());
    /// let info = killable::threads().into_iter().find(|i| i.thread().id() == h.thread().id()).unwrap();
    /// assert!(!info.is_sealed());
    /// h.join().unwrap();
    /// ```
    pub fn is_sealed(&self) -> bool {
        self.thread.is_sealed()
    }

    /// Whether it had finished running when the snapshot was taken (its handle not yet joined).
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| ());
    /// h.wait().unwrap(); // finished, not yet joined: still listed
    /// let info = killable::threads().into_iter().find(|i| i.thread().id() == h.thread().id()).unwrap();
    /// assert!(info.is_finished());
    /// h.join().unwrap();
    /// ```
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

/// A snapshot of the live threads killable spawned in this process.
///
/// A thread is listed from `spawn` until it has both finished and been joined (or its
/// `JoinHandle` dropped). Threads killable did not create (the main thread, `std::thread`s)
/// are not listed. In a forked child, only the thread that called `fork` remains.
///
/// # Examples
///
/// ```
/// let h = killable::Builder::new().name("listed".into()).daemon(true).spawn(|| ()).unwrap();
/// let me = h.thread().id();
/// let info = killable::threads().into_iter().find(|t| t.thread().id() == me).unwrap();
/// assert_eq!(info.name(), Some("listed"));
/// assert!(info.is_daemon());
/// h.join().unwrap();
/// assert!(killable::threads().iter().all(|t| t.thread().id() != me));
/// ```
pub fn threads() -> Vec<ThreadInfo> {
    with_map(|m| {
        m.values()
            .map(|t| ThreadInfo {
                thread: t.clone(),
                finished: t.is_finished(),
            })
            .collect()
    })
}
