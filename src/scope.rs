//! Scoped threads: [`scope`], [`Scope`], [`ScopedJoinHandle`], with `std::thread::scope`'s
//! semantics plus stopping.
//!
//! # Internal workings
//!
//! A scoped closure may borrow what lives outside the scope, so nothing it borrows may be used
//! after [`scope`] returns. As in std, each scoped thread shares a packet with its handle; the
//! packet holds the closure's result, and dropping the packet (the last of the thread's and the
//! handle's references) first drops an untaken result, which may borrow too, and then counts
//! the thread out of the scope (`ScopeData::running`). [`scope`] waits until the count is zero,
//! and never returns before (returning would free what the threads borrow). The killable thread
//! itself runs a wrapper that stores the result in that packet and returns `()`, so the start
//! routine never holds anything the scope lends.
//!
//! ## Stopping the scope's threads
//!
//! The wrapper catches the closure's panic and interrupts the scope's other threads at once,
//! before it stores the result: a sibling blocked in a killable call returns instead of keeping
//! [`scope`] waiting forever. If the scope's own closure panics, every scoped thread is
//! interrupted too, for the same reason. Either way the scope's set is marked stopping first
//! (`ThreadSet::stopping`): a thread spawned into the scope afterwards, by anyone (the owner
//! included), starts interrupted, so a panic ends the scope even if the owner goes on spawning.
//!
//! The end-of-scope wait is a killable futex wait. When the owner is interrupted or sealed while
//! it waits (or was already), the wait does not end: it relays the stop to the scope (marks the
//! set stopping and interrupts every thread in it) and goes on waiting, without a deadline and
//! no longer killable, until every thread is gone. So a scoped thread that waits at the end of a
//! nested scope passes its own interrupt down, and an interrupt of the outer scope reaches the
//! inner scope's threads.
//!
//! ## Nested scopes
//!
//! The scope's threads are a `ThreadSet` (`group.rs`), filled by `Builder::spawn` before the
//! spawn rule's check; `interrupt_all` and `stop` therefore reach a scoped thread spawned by
//! another scoped thread while they run. A scope opened by a scoped thread (a nested scope)
//! remembers the enclosing scope (`ScopeData::parent`, found through the thread-local
//! `IN_SCOPE`), and its threads are listed in the sets of every enclosing scope too, as group
//! membership is inherited. This is what lets [`Scope::stop`] escalate on them: relaying an
//! interrupt (above) is enough for threads blocked in killable calls, but a thread that ignores
//! interrupts must be sealed, and only a stop that lists it can do that. Escalating on a nested
//! scope's thread is as sound as on the outer scope's own: seal and kill never skip a Rust
//! frame, so what the thread borrows is released as its frames return, and the nested scope
//! still waits for it. A sibling's panic in the outer scope interrupts the nested scopes'
//! threads directly for the same reason.
//!
//! ## fork
//!
//! In a child forked while scoped threads ran, those threads do not exist, and the packets they
//! hold are never dropped: a child that leaves the scope waits forever, as with std's scope.
//! A forked child should only call async-signal-safe functions and `_exit` (or `exec`) anyway.
//! The membership lists themselves survive a fork: a child forked while another thread held
//! one takes it over (`group.rs`, "Fork").

use std::any::Any;
use std::cell::RefCell;
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
    /// The scope the owner runs in, if the owner is a scoped thread (module docs).
    parent: Option<Arc<ScopeData>>,
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

    /// Marks the scope stopping and interrupts every thread in it (module docs).
    fn interrupt_all(&self, except: Option<crate::thread::ThreadId>) {
        self.threads.set_stopping();
        self.threads.interrupt_except(except);
    }

    /// Waits until every packet is gone; an interrupt or seal of the caller is relayed to the
    /// scope's threads, and the wait goes on (module docs).
    fn wait_all(&self) {
        let mut relayed = false;
        loop {
            let n = self.running.load(Ordering::Acquire);
            if n == 0 {
                return;
            }
            if relayed {
                futex::wait(&self.running, n, None);
            } else if crate::sync::futex_wait(&self.running, n, None).is_err() {
                relayed = true;
                self.interrupt_all(None);
            }
        }
    }

    /// The sets a new thread of this scope is listed in: this scope's and every enclosing
    /// scope's (module docs).
    fn sets(&self) -> Vec<&ThreadSet> {
        let mut sets = vec![&self.threads];
        let mut up = self.parent.as_deref();
        while let Some(d) = up {
            sets.push(&d.threads);
            up = d.parent.as_deref();
        }
        sets
    }
}

thread_local! {
    /// The scope the calling thread was spawned in, if it is a scoped thread (module docs).
    static IN_SCOPE: RefCell<Option<Arc<ScopeData>>> = const { RefCell::new(None) };
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
/// * if `f` itself panics, the scope's threads are interrupted before they are waited for;
/// * after a panic (of `f` or of a scoped thread), a thread spawned into the scope starts
///   interrupted;
/// * a scope opened by a scoped thread is nested in the enclosing scope: its threads are also
///   threads of the enclosing scope for [`Scope::interrupt_all`], [`Scope::stop`] and the
///   interrupt after a panic.
///
/// The wait at the end never ends before the threads do: they may borrow from the caller's
/// stack. If the calling thread is interrupted or [sealed](crate::Thread::seal) while it waits
/// (or before), the scope's threads are interrupted, and the wait goes on until they end.
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
            parent: IN_SCOPE.try_with(|s| s.borrow().clone()).ok().flatten(),
            a_thread_panicked: AtomicBool::new(false),
            threads: ThreadSet::default(),
        }),
        scope: PhantomData,
        env: PhantomData,
    };
    let result = catch_unwind(AssertUnwindSafe(|| f(&scope)));
    if result.is_err() {
        scope.data.interrupt_all(None);
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
        let _ = IN_SCOPE.try_with(|s| *s.borrow_mut() = Some(data.clone()));
        let result = catch_unwind(AssertUnwindSafe(f));
        if result.is_err() {
            // Siblings are interrupted at once, before the result is published (module docs).
            data.interrupt_all(Some(crate::current().id()));
        }
        let _ = IN_SCOPE.try_with(|s| s.borrow_mut().take());
        *theirs.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
        // If the handle is gone, this drops the result and counts the thread out.
        drop(theirs);
    };
    // `main` owns `f` and the only other thing it borrows from the scope, the packet (through
    // an `Arc`). The scope ends only once the packet is gone (`wait_all`), which is after `main`
    // has run `f` and dropped its reference; the thread returns `()`, so the start routine keeps
    // nothing the scope lends.
    // SAFETY: nothing `main` borrows outlives the scope, as just said.
    let handle = unsafe { builder.spawn_unchecked(main, &scope.data.sets()) }?;
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
