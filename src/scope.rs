//! Scoped threads: [`scope`], [`Scope`], [`ScopedJoinHandle`], with `std::thread::scope`'s
//! semantics plus stopping.
//!
//! # Internal workings
//!
//! A scoped closure may borrow what lives outside the scope, so nothing it borrows may be used
//! after [`scope`] returns. As in std, each scoped thread shares a packet with its handle; the
//! packet holds the closure's result, and dropping the packet (the last of the thread's and the
//! handle's references) first drops an untaken result, which may borrow too, and then counts
//! the thread out of the scope (`ScopeData::running`). [`scope`] waits, with a plain futex wait
//! that no interrupt breaks (breaking it would free what the threads borrow), until the count is
//! zero. The killable thread itself runs a wrapper that stores the result in that packet and
//! returns `()`, so the start routine never holds anything the scope lends.
//!
//! The wrapper catches the closure's panic and interrupts the scope's other threads at once,
//! before it stores the result: a sibling blocked in a killable call returns instead of keeping
//! [`scope`] waiting forever. If the scope's own closure panics, every scoped thread is
//! interrupted too, for the same reason.
//!
//! The scope's threads are a `ThreadSet` (`group.rs`), filled by `Builder::spawn` before the
//! spawn rule's check; `interrupt_all` and `stop` therefore reach a scoped thread spawned by
//! another scoped thread while they run.

use std::any::Any;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::Result as ThreadResult;
use std::time::Duration;

use crate::futex;
use crate::group::ThreadSet;
use crate::join_handle::JoinHandle;
use crate::shutdown::ShutdownReport;
use crate::spawn::Builder;
use crate::thread::Thread;

struct ScopeData {
    /// Scoped threads whose packet is still alive; a futex word (module docs).
    running: AtomicU32,
    /// A scoped thread panicked and nobody joined it.
    a_thread_panicked: AtomicBool,
    threads: ThreadSet,
}

impl ScopeData {
    fn decrement(&self) {
        if self.running.fetch_sub(1, Ordering::Release) == 1 {
            futex::wake(&self.running, i32::MAX);
        }
    }

    /// Waits, not interruptibly, until every packet is gone (module docs).
    fn wait_all(&self) {
        loop {
            let n = self.running.load(Ordering::Acquire);
            if n == 0 {
                return;
            }
            futex::wait(&self.running, n, None);
        }
    }
}

/// A scope to spawn threads in; see [`scope`].
///
/// # Examples
///
/// ```
/// let mut total = 0;
/// killable::scope(|s| {
///     s.spawn(|| total += 1);
/// });
/// assert_eq!(total, 1);
/// ```
pub struct Scope<'scope, 'env: 'scope> {
    data: Arc<ScopeData>,
    /// Invariance over 'scope, so that the scope cannot shrink (std's reasoning).
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

/// An owned permission to join a scoped thread; dropping it lets the thread be joined at the
/// end of the scope instead.
///
/// # Examples
///
/// ```
/// let v = vec![1, 2, 3];
/// let sum = killable::scope(|s| s.spawn(|| v.iter().sum::<i32>()).join().unwrap());
/// assert_eq!(sum, 6);
/// ```
pub struct ScopedJoinHandle<'scope, T> {
    handle: JoinHandle<()>,
    packet: Arc<Packet<'scope, T>>,
}

struct Packet<'scope, T> {
    scope: Arc<ScopeData>,
    result: Mutex<Option<ThreadResult<T>>>,
    _scope: PhantomData<&'scope ()>,
}

impl<T> Drop for Packet<'_, T> {
    fn drop(&mut self) {
        let result = self
            .result
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let unhandled_panic = matches!(result, Some(Err(_)));
        // The result may borrow from the scope: it goes before the scope can end. A panic in
        // its destructor cannot be handed to anyone (as in std, the process aborts).
        if catch_unwind(AssertUnwindSafe(|| drop(result.take()))).is_err() {
            eprintln!("killable: a scoped thread's result panicked on drop");
            std::process::abort();
        }
        if unhandled_panic {
            self.scope.a_thread_panicked.store(true, Ordering::Relaxed);
        }
        self.scope.decrement();
    }
}

/// Creates a scope for spawning threads that may borrow non-`'static` data, like
/// [`std::thread::scope`], and joins every thread spawned in it before returning.
///
/// All threads spawned with [`Scope::spawn`] (or
/// [`Builder::spawn_scoped`](crate::Builder::spawn_scoped)) are joined at the end, joined or
/// not. Beyond std's scope:
///
/// * when a scoped thread panics, its live siblings are interrupted at once, so one blocked in
///   a killable call does not keep the scope waiting forever (std's would);
/// * [`Scope::interrupt_all`] and [`Scope::stop`] stop the scope's threads, and only them;
/// * if `f` itself panics, the scope's threads are interrupted before they are waited for.
///
/// The wait at the end is not interruptible: the threads may borrow from the caller's stack,
/// so the scope cannot end before they do.
///
/// # Panics
///
/// If `f` panics, that panic is resumed once every thread has been joined. Otherwise, if a
/// scoped thread panicked and its handle was not joined, `scope` panics after joining them.
///
/// # Examples
///
/// ```
/// let mut a = vec![1, 2, 3];
/// let mut x = 0;
/// killable::scope(|s| {
///     s.spawn(|| println!("a is {a:?}"));
///     s.spawn(|| x += a[0] + a[2]);
/// });
/// a.push(4);
/// assert_eq!(x, 4);
/// ```
///
/// A panicking thread ends the scope even though its sibling waits for ever:
///
/// ```
/// let r = std::panic::catch_unwind(|| {
///     killable::scope(|s| {
///         s.spawn(|| killable::park());
///         s.spawn(|| panic!("on purpose"));
///     })
/// });
/// assert!(r.is_err());
/// ```
pub fn scope<'env, F, T>(f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    let scope = Scope {
        data: Arc::new(ScopeData {
            running: AtomicU32::new(0),
            a_thread_panicked: AtomicBool::new(false),
            threads: ThreadSet::default(),
        }),
        scope: PhantomData,
        env: PhantomData,
    };
    let result = catch_unwind(AssertUnwindSafe(|| f(&scope)));
    if result.is_err() {
        scope.data.threads.interrupt_except(None);
    }
    scope.data.wait_all();
    match result {
        Err(e) => resume_unwind(e),
        Ok(_) if scope.data.a_thread_panicked.load(Ordering::Relaxed) => {
            panic!("a scoped thread panicked")
        }
        Ok(r) => r,
    }
}

impl<'scope, 'env> Scope<'scope, 'env> {
    /// Spawns a scoped thread, like [`std::thread::Scope::spawn`].
    ///
    /// # Panics
    ///
    /// If the thread cannot be created; use
    /// [`Builder::spawn_scoped`](crate::Builder::spawn_scoped) to handle the error.
    ///
    /// # Examples
    ///
    /// ```
    /// let name = String::from("scoped");
    /// let len = killable::scope(|s| s.spawn(|| name.len()).join().unwrap());
    /// assert_eq!(len, 6);
    /// ```
    pub fn spawn<F, T>(&'scope self, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        Builder::new()
            .spawn_scoped(self, f)
            .expect("failed to spawn thread")
    }

    /// Interrupts every thread of the scope still running, including one a scoped thread
    /// spawns meanwhile (it starts interrupted: the spawn rule). The calling thread is
    /// interrupted too if it is one of the scope's.
    ///
    /// # Examples
    ///
    /// ```
    /// killable::scope(|s| {
    ///     let a = s.spawn(|| killable::park());
    ///     let b = s.spawn(|| killable::park());
    ///     s.interrupt_all();
    ///     assert!(a.join().unwrap().is_err() && b.join().unwrap().is_err());
    /// });
    /// ```
    pub fn interrupt_all(&self) {
        self.data.threads.interrupt_except(None);
    }

    /// Stops the scope's threads (all but the caller), escalating within `grace` as
    /// [`shutdown`](crate::shutdown) does, and reports what became of each; threads outside
    /// the scope are not touched. It does not join them: their results stay for their
    /// handles, and the scope still joins them at its end.
    ///
    /// # Race conditions
    ///
    /// As [`Group::stop`](crate::Group::stop): scoped threads spawned while it runs are stopped
    /// in further rounds, and the report never says
    /// [`all_stopped`](ShutdownReport::all_stopped) while one still runs.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// killable::scope(|s| {
    ///     s.spawn(|| killable::sleep(Duration::from_secs(3600)));
    ///     assert!(s.stop(Duration::from_secs(10)).all_stopped());
    /// });
    /// ```
    pub fn stop(&self, grace: Duration) -> ShutdownReport {
        self.data.threads.stop(grace)
    }
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("running", &self.data.running.load(Ordering::Relaxed))
            .field(
                "a_thread_panicked",
                &self.data.a_thread_panicked.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

/// `Builder::spawn_scoped`.
pub(crate) fn spawn_in<'scope, 'env, F, T>(
    builder: Builder,
    scope: &'scope Scope<'scope, 'env>,
    f: F,
) -> io::Result<ScopedJoinHandle<'scope, T>>
where
    F: FnOnce() -> T + Send + 'scope,
    T: Send + 'scope,
{
    // Counted before the thread exists; a failed spawn drops both references to the packet,
    // which counts it out again.
    scope.data.running.fetch_add(1, Ordering::Relaxed);
    let packet = Arc::new(Packet {
        scope: scope.data.clone(),
        result: Mutex::new(None),
        _scope: PhantomData,
    });
    let theirs = packet.clone();
    let data = scope.data.clone();
    let main = move || {
        let result = catch_unwind(AssertUnwindSafe(f));
        if result.is_err() {
            // Siblings are interrupted at once, before the result is published (module docs).
            data.threads.interrupt_except(Some(crate::current().id()));
        }
        *theirs.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
        // If the handle is gone, this drops the result and counts the thread out.
        drop(theirs);
    };
    // SAFETY: `main` owns `f` and the only other thing it borrows from the scope, the packet
    // (through an `Arc`). The scope ends only once the packet is gone (`wait_all`), which is
    // after `main` has run `f` and dropped its reference; the thread returns `()`, so the start
    // routine keeps nothing the scope lends.
    let handle = unsafe { builder.spawn_unchecked(main, Some(&scope.data.threads)) }?;
    Ok(ScopedJoinHandle { handle, packet })
}

impl<T> ScopedJoinHandle<'_, T> {
    /// Waits for the thread to finish and returns its result, like
    /// [`std::thread::ScopedJoinHandle::join`]: `Err` with the panic payload if it panicked.
    ///
    /// Not interruptible (as the scope's own end is not).
    ///
    /// # Examples
    ///
    /// ```
    /// killable::scope(|s| {
    ///     let h = s.spawn(|| -> u8 { panic!("boom") });
    ///     assert!(h.join().is_err());
    /// });
    /// ```
    pub fn join(self) -> ThreadResult<T> {
        let joined = self.handle.join();
        let taken = self
            .packet
            .result
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match (taken, joined) {
            (Some(result), _) => result,
            // The wrapper never panics; a thread lost in a fork has no result.
            (None, Err(e)) => Err(e),
            (None, Ok(())) => {
                Err(Box::new("killable: the scoped thread left no result") as Box<dyn Any + Send>)
            }
        }
    }

    /// The thread's [`Thread`].
    ///
    /// # Examples
    ///
    /// ```
    /// killable::scope(|s| {
    ///     let h = s.spawn(|| killable::current().id());
    ///     let id = h.thread().id();
    ///     assert_eq!(h.join().unwrap(), id);
    /// });
    /// ```
    pub fn thread(&self) -> &Thread {
        self.handle.thread()
    }

    /// Interrupts the thread ([`Thread::interrupt`]).
    ///
    /// # Examples
    ///
    /// ```
    /// killable::scope(|s| {
    ///     let h = s.spawn(|| killable::park());
    ///     h.interrupt();
    ///     assert!(h.join().unwrap().is_err());
    /// });
    /// ```
    pub fn interrupt(&self) {
        self.handle.interrupt();
    }

    /// Whether the thread has finished running (its closure and its thread-local destructors).
    ///
    /// # Examples
    ///
    /// ```
    /// killable::scope(|s| {
    ///     let h = s.spawn(|| ());
    ///     while !h.is_finished() {
    ///         std::thread::yield_now();
    ///     }
    ///     h.join().unwrap();
    /// });
    /// ```
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

impl<T> fmt::Debug for ScopedJoinHandle<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedJoinHandle")
            .field("thread", self.thread())
            .finish_non_exhaustive()
    }
}
