//! Groups: named sets of threads stopped together ([`Group`]), and the set of threads that
//! groups and scopes share (`ThreadSet`).
//!
//! # Internal workings
//!
//! ## Membership
//!
//! A thread joins its group in `Builder::spawn`, on the spawner, before `pthread_create` and
//! before the spawn rule's check of the spawner's interrupt; the group a thread belongs to is
//! remembered in a thread-local of the member (`MEMBER_OF`), set before its closure runs, which
//! is where a thread it spawns finds the group to inherit. Members stay listed until a listing
//! finds them finished; finished threads are pruned as the list grows, so a long-lived group
//! that spawns many short threads keeps a list about the size of its live members.
//!
//! The crate's own threads (pool workers, the signal thread) are spawned with
//! `Builder::no_group` and inherit no group: they serve every caller, and a group's stop would
//! otherwise seal a shared thread for good.
//!
//! ## Interrupting a set without missing a newborn
//!
//! `ThreadSet::interrupt` lists the members, interrupts each, and lists again until a listing
//! shows no member it has not interrupted. A member spawning at the same moment either lists its
//! child before our last listing (which then interrupts the child), or after it: then our
//! listing, which came after we set the spawner's bit, happens before the child's insertion,
//! which comes before the spawner's check of its own bit (the list's lock orders the two), so
//! the check sees the bit and the child starts interrupted (the spawn rule). Either way no
//! thread spawned by a member escapes.
//!
//! `stop` works in rounds the same way (`shutdown::stop_rounds`): each round escalates on the
//! members not seen yet and waits for them, and a member spawns its children before it
//! finishes, so the next listing sees them.
//!
//! ## Fork
//!
//! `fork` copies only the calling thread, and with it every lock as it was. A list's lock
//! (`SetLock`) holds the fork generation of its holder's process (`control::fork_generation`,
//! which each child increments in its fork handler), so a fork child that finds the lock held
//! by another generation knows the holder stayed in the parent: it takes the lock over and
//! starts the list afresh, leaking the old one without reading it (the holder may have been in
//! the middle of changing it). A lock per set cannot be taken in a `pthread_atfork` handler, as
//! the registry's is (there is no list of all sets, and one would be a second lock to order);
//! this needs no handler.
//!
//! So that the child sees the same sets whether or not a lock was taken over, every entry of a
//! list, and the group a thread belongs to (`MEMBER_OF`), carries the fork generation it was
//! made in, and those of another generation do not count: in a fork child, sets hold only the
//! threads listed there, and the forking thread, though it goes on, is in no group (a fork
//! starts a new process, and its groups start empty).

use std::cell::{RefCell, UnsafeCell};
use std::collections::HashSet;
use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use crate::control::fork_generation;
use crate::futex;
use crate::join_handle::JoinHandle;
use crate::shutdown::{ShutdownReport, stop_rounds};
use crate::thread::{Thread, ThreadId};

/// A set of threads, as groups and scopes keep them (module docs).
#[derive(Default)]
pub(crate) struct ThreadSet {
    list: SetLock,
    /// New members start interrupted (set by a scope that is being stopped: `scope.rs`).
    /// Read by the spawner after it listed the new member, set before a listing: the list's
    /// lock orders the two as for the spawn rule (module docs).
    stopping: AtomicBool,
}

#[derive(Default)]
struct Members {
    /// Each member with the fork generation it was listed in: a fork child's listings show
    /// only the threads listed in the child (module docs, "Fork").
    threads: Vec<(Thread, u32)>,
    /// Prune finished threads when the list reaches this length.
    prune_at: usize,
}

/// The lock of a `ThreadSet`'s list, which a `fork` child can take even when a thread of the
/// parent held it at the fork (module docs, "Fork").
///
/// The word is 0 when the lock is free; its holder stores `LOCKED`, with `WAITERS` when
/// someone sleeps on it, and the fork generation of its process above `GENERATION_SHIFT`.
#[derive(Default)]
struct SetLock {
    word: AtomicU32,
    members: UnsafeCell<Members>,
}

// SAFETY: `members` is only reached through a `SetGuard`, and the lock's protocol gives one
// guard at a time (`SetLock::lock`).
unsafe impl Sync for SetLock {}

const LOCKED: u32 = 1;
const WAITERS: u32 = 2;
const GENERATION_SHIFT: u32 = 2;

impl SetLock {
    fn lock(&self) -> SetGuard<'_> {
        // The generation counts forks only once the fork handlers are registered.
        crate::control::init_fork_handlers();
        let generation = fork_generation() << GENERATION_SHIFT;
        let mine = generation | LOCKED;
        loop {
            let word = self.word.load(Ordering::Relaxed);
            if word == 0 {
                if self
                    .word
                    .compare_exchange(0, mine, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return SetGuard(self);
                }
                continue;
            }
            if word & !(LOCKED | WAITERS) != generation {
                // Held by a thread of the process this one was forked from: it does not exist
                // here and never unlocks. Take the lock over, and start the list afresh
                // without reading it (the holder may have stopped in the middle of changing
                // it): its threads stayed in the parent, and the old list is leaked.
                if self
                    .word
                    .compare_exchange(word, mine, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    // SAFETY: we hold the lock; the old value is overwritten, never read or
                    // dropped.
                    unsafe { self.members.get().write(Members::default()) };
                    return SetGuard(self);
                }
                continue;
            }
            if word & WAITERS == 0
                && self
                    .word
                    .compare_exchange(word, word | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            futex::wait(&self.word, word | WAITERS, None);
        }
    }
}

/// Holds a `SetLock` and gives access to its members; unlocks when dropped.
struct SetGuard<'a>(&'a SetLock);

impl Deref for SetGuard<'_> {
    type Target = Members;

    fn deref(&self) -> &Members {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.0.members.get() }
    }
}

impl DerefMut for SetGuard<'_> {
    fn deref_mut(&mut self) -> &mut Members {
        // SAFETY: the guard holds the lock, and `&mut self` makes this the only reference.
        unsafe { &mut *self.0.members.get() }
    }
}

impl Drop for SetGuard<'_> {
    fn drop(&mut self) {
        if self.0.word.swap(0, Ordering::Release) & WAITERS != 0 {
            futex::wake(&self.0.word, i32::MAX);
        }
    }
}

impl ThreadSet {
    fn lock(&self) -> SetGuard<'_> {
        self.list.lock()
    }

    /// New members start interrupted from now on (see `stopping`).
    pub(crate) fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether new members start interrupted.
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Lists `thread` as a member.
    pub(crate) fn add(&self, thread: &Thread) {
        let mut m = self.lock();
        let generation = fork_generation();
        if m.threads.len() >= m.prune_at {
            m.threads
                .retain(|(t, g)| *g == generation && !t.is_finished());
            m.prune_at = (m.threads.len() * 2).max(16);
        }
        m.threads.push((thread.clone(), generation));
    }

    /// The members still running.
    pub(crate) fn live(&self) -> Vec<Thread> {
        let mut m = self.lock();
        let generation = fork_generation();
        m.threads
            .retain(|(t, g)| *g == generation && !t.is_finished());
        m.threads.iter().map(|(t, _)| t.clone()).collect()
    }

    /// Interrupts every member, `except` one, including those spawned meanwhile (module docs).
    pub(crate) fn interrupt_except(&self, except: Option<ThreadId>) {
        let mut seen: HashSet<ThreadId> = HashSet::new();
        loop {
            let round: Vec<Thread> = self
                .live()
                .into_iter()
                .filter(|t| Some(t.id()) != except && seen.insert(t.id()))
                .collect();
            if round.is_empty() {
                return;
            }
            for t in round {
                t.interrupt();
            }
        }
    }

    /// Escalates on every member but the caller within `grace`, in rounds until no member is
    /// left running (`shutdown::stop_rounds`).
    pub(crate) fn stop(&self, grace: Duration) -> ShutdownReport {
        let me = crate::current().id();
        stop_rounds(grace, || {
            self.live().into_iter().filter(|t| t.id() != me).collect()
        })
    }
}

thread_local! {
    /// The group the calling thread belongs to (module docs).
    /// With the fork generation it was set in: in a fork child, the forking thread is in no
    /// group (module docs, "Fork").
    static MEMBER_OF: RefCell<Option<(Group, u32)>> = const { RefCell::new(None) };
}

/// The calling thread's group, if it is a member of one.
pub(crate) fn current() -> Option<Group> {
    MEMBER_OF
        .try_with(|m| match &*m.borrow() {
            Some((g, generation)) if *generation == fork_generation() => Some(g.clone()),
            _ => None,
        })
        .ok()
        .flatten()
}

/// Lists a thread being spawned in its group and in `sets` (its scope's and the enclosing
/// scopes'), and returns its closure
/// wrapped so that the thread knows its group. Called by `Builder::spawn` before the spawn
/// rule's check (module docs).
pub(crate) fn member<F, T>(
    group: Option<&Group>,
    thread: &Thread,
    sets: &[&ThreadSet],
    f: F,
) -> impl FnOnce() -> T + Send + use<F, T>
where
    F: FnOnce() -> T + Send,
{
    for set in sets {
        set.add(thread);
    }
    if let Some(g) = group {
        g.inner.set.add(thread);
    }
    let group = group.cloned();
    move || {
        if let Some(g) = group {
            let _ = MEMBER_OF.try_with(|m| *m.borrow_mut() = Some((g, fork_generation())));
        }
        f()
    }
}

struct GroupInner {
    name: String,
    set: ThreadSet,
}

/// A named set of threads that are interrupted or stopped together.
///
/// Threads join a group when they are spawned into it ([`Group::spawn`],
/// [`Builder::group`](crate::Builder::group)), and a thread spawned by a member joins the
/// member's group and stays in it after its spawner ends. [`Group::stop`] escalates on the
/// members only, as [`shutdown`](crate::shutdown) does on every thread, and keeps going until no
/// member is left running, members spawned during the stop included.
///
/// A `Group` is a handle: clones refer to the same set. Threads keep no group alive by
/// themselves beyond their own lifetime.
///
/// The crate's own threads join no group, whoever creates them: a worker of
/// [`spawn_blocking`](crate::spawn_blocking) or a [`BlockingPool`](crate::BlockingPool) (so a
/// member's `spawn_blocking` job is not a member: it runs on a thread shared with everyone, which
/// a group's stop must not seal for good), and the signal thread of
/// [`shutdown_on_signals`](crate::shutdown_on_signals). To stop such a job with the group, keep
/// its [`BlockingTask`](crate::BlockingTask) and abort it, or run the work in a member thread. A
/// member waiting for the task must wait with [`BlockingTask::wait`](crate::BlockingTask::wait),
/// which the stop ends (dropping the task then aborts the job): blocked in an executor's
/// `block_on(task)`, it cannot be stopped, since the executor parks in std's futex.
///
/// # Fork
///
/// A `fork` child can use the groups it inherits, even one that another thread of the parent
/// was listing or spawning into at the fork. A fork starts a new process whose groups are
/// empty: the parent's members stayed in the parent, and the forking thread, which goes on in
/// the child, is in no group there (nor are the threads it spawns, unless spawned into one). In
/// the child a group lists only the threads spawned into it there.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let pool = killable::Group::new("pool");
/// for _ in 0..3 {
///     pool.spawn(|| killable::sleep(Duration::from_secs(3600))).unwrap();
/// }
/// let report = pool.stop(Duration::from_secs(10));
/// assert_eq!(report.outcomes().len(), 3);
/// assert!(report.all_stopped());
/// ```
#[derive(Clone)]
pub struct Group {
    inner: Arc<GroupInner>,
}

impl Group {
    /// An empty group called `name` (the name is for reports and `Debug`; it need not be
    /// unique).
    ///
    /// # Examples
    ///
    /// ```
    /// let g = killable::Group::new("io");
    /// assert_eq!(g.name(), "io");
    /// assert!(g.threads().is_empty());
    /// ```
    pub fn new(name: &str) -> Group {
        Group {
            inner: Arc::new(GroupInner {
                name: name.to_owned(),
                set: ThreadSet::default(),
            }),
        }
    }

    /// The group's name.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(killable::Group::new("workers").name(), "workers");
    /// ```
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Spawns a thread in the group with the default [`Builder`](crate::Builder) (use
    /// [`Builder::group`](crate::Builder::group) to configure it).
    ///
    /// # Errors
    ///
    /// As [`Builder::spawn`](crate::Builder::spawn).
    ///
    /// # Examples
    ///
    /// ```
    /// let g = killable::Group::new("g");
    /// let h = g.spawn(|| 7).unwrap();
    /// assert_eq!(h.join().unwrap(), 7);
    /// ```
    pub fn spawn<F, T>(&self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        crate::Builder::new().group(self).spawn(f)
    }

    /// The members still running.
    ///
    /// # Examples
    ///
    /// ```
    /// let g = killable::Group::new("g");
    /// let h = g.spawn(|| killable::park()).unwrap();
    /// assert_eq!(g.threads()[0].id(), h.thread().id());
    /// h.interrupt();
    /// let _ = h.join();
    /// assert!(g.threads().is_empty());
    /// ```
    pub fn threads(&self) -> Vec<Thread> {
        self.inner.set.live()
    }

    /// Interrupts every member, including one a member spawns meanwhile (which starts
    /// interrupted: the spawn rule). The calling thread is interrupted too if it is a member.
    ///
    /// # Examples
    ///
    /// ```
    /// let g = killable::Group::new("g");
    /// let h = g.spawn(|| killable::park()).unwrap();
    /// g.interrupt();
    /// assert!(h.join().unwrap().is_err());
    /// ```
    pub fn interrupt(&self) {
        self.inner.set.interrupt_except(None);
    }

    /// Stops every member but the caller, escalating within `grace` as
    /// [`shutdown`](crate::shutdown) does, and reports what became of each. No thread outside
    /// the group is touched or listed.
    ///
    /// # Race conditions
    ///
    /// It works in rounds, like `shutdown`: members spawned while it runs (by members, which
    /// start interrupted, or by anyone else) are stopped in the next round, and the report only
    /// says [`all_stopped`](ShutdownReport::all_stopped) once a listing finds no member it has
    /// not stopped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let g = killable::Group::new("g");
    /// let h = g.spawn(|| killable::sleep(Duration::from_secs(3600))).unwrap();
    /// let report = g.stop(Duration::from_secs(10));
    /// assert!(report.all_stopped());
    /// assert!(h.join().unwrap().is_err());
    /// ```
    pub fn stop(&self, grace: Duration) -> ShutdownReport {
        self.inner.set.stop(grace)
    }
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.inner.name)
            .field("live", &self.threads().len())
            .finish()
    }
}
