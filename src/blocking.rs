//! Abortable blocking tasks for async code: [`spawn_blocking`], [`BlockingTask`], and the pool
//! of reused killable threads that runs them ([`BlockingPool`], [`BlockingPoolBuilder`]).
//!
//! # Internal workings
//!
//! ## The pool
//!
//! One mutex guards the queue and the counts: `threads` (workers counted against
//! `max_threads`), `idle` (workers waiting for work, or about to), `notified` (wake-ups handed to
//! idle workers and not yet taken). A spawn queues its job and dispatches: if a worker is idle it
//! takes one idle worker (`idle -= 1; notified += 1`) and signals the condition variable, else it
//! creates a worker if `threads < max_threads`, else the job waits in the queue. A waiting worker
//! leaves only by taking a `notified` (then it drains the queue), at shutdown, when `keep_alive`
//! passes with nothing for it, or when its thread was interrupted or sealed (below). Counting
//! wake-ups, rather than trusting the condition variable, makes spurious wake-ups harmless and
//! never lets two spawns count on the same idle worker. Workers are created with the pool mutex
//! released. An idle worker spins for 50 µs before it sleeps, counted in `spinning`: a spawn
//! meanwhile hands it the job through `notified` (and the `wake_hint` flag it watches) without a
//! futex wake, as long as there are at least as many spinners as wake-ups handed out; a spinner
//! that gives up takes the pool mutex and looks at `notified` before it sleeps, so no wake-up is
//! lost. A `keep_alive` too long for `Instant` arithmetic (`Duration::MAX`) means no deadline.
//!
//! ## Interrupts and seals from outside the pool
//!
//! A pool thread is a killable thread like any other: `shutdown` interrupts, kills and seals it
//! (pool threads are not daemons: a shutdown stops the jobs they run), and a `Thread` from
//! `BlockingTask::thread` reaches it. Such a thread is `unfit`: its interrupt bit is set between
//! jobs (an abort's bit never is: see the slot), or it is sealed. An unfit worker is never handed
//! a job; it leaves the pool instead: the idle wait is killable's own condition variable, so an
//! interrupt or a seal wakes an idle worker, which uncounts itself and, if it had taken a
//! wake-up, dispatches again (to another idle worker or a new one). A worker that finds itself
//! unfit after a job, or just before one (the job goes back to the queue's head), leaves the
//! same way; one whose job ends with the interrupt bit set by no abort (`signalled` false) too.
//! So `shutdown` stops an idle pool thread at its interrupt, a busy one when its job ends, and
//! the pool creates new threads at the next spawn.
//!
//! ## Seals: who creates threads
//!
//! A thread inherits its creator's seccomp filter. killable marks a thread created by a thread it
//! knows is sealed (`seal::inherit`), but not one created by a thread it does not know, such as
//! a std thread created by a sealed thread. So every thread the pool creates is a killable
//! thread, and none is created from a sealed context: each `Core` has a manager (a killable
//! daemon thread, `killable-watch`), started by the first worker creation and alive while the
//! pool has workers or stuck jobs to watch. A worker is created by the thread that needs it only
//! if the kernel says that thread has no seccomp filter at all (`prctl(PR_GET_SECCOMP)`); from
//! a filtered thread (sealed, or under a container's filter) the creation is handed to the
//! manager (`create += 1`). A thread killable knows is sealed never creates one itself: if no
//! manager runs (the pool has no worker), the job fails with an error saying why. The escalation
//! threads (`killable-stop`) are the manager's, so they are unsealed killable daemons too.
//!
//! ## Job isolation: the slot
//!
//! A worker runs one job after another, and an `abort()` of one job must never interrupt the
//! next one on the same thread, even an abort that arrives just as its job ends. Each worker has
//! a `Slot` under a small mutex: the id of the job it runs (0 between jobs), how many aborts
//! are in flight, whether the interrupt bit is the job's own (`signalled`: an abort sent it, or
//! the job started aborted), and whether the worker was retired.
//!
//! * `abort()` marks its task aborted, and if the task says which worker runs it (and with which
//!   id), takes that worker's slot lock: only if the slot still holds the same id does it count
//!   itself in flight (`aborting += 1`) and, with the lock released (an interrupt callback runs
//!   user code, which may abort again), registers the job with the manager (below), then
//!   interrupts the thread: set the bit, run the callbacks, send the signal. Then it takes the
//!   lock again, counts itself out and notes that a signal may be on its way. The callbacks run
//!   on the aborter, so `abort()` returns only when they have; `Drop` catches a callback's panic
//!   and drops it (a task dropped during unwinding must not panic again).
//! * Dropping a task sets `dropped` and `aborted` under one lock, so a job cannot start between
//!   the two. A job that is dropped and aborted before it starts is not run; a detached one
//!   (`detached`, set by `detach` through the same `Drop`) runs to its end, aborted or not.
//! * The worker opens the slot (`job = id`) before it publishes itself in the task, so an abort
//!   that finds the worker in the task finds the id in the slot until the job is closed. The task
//!   mutex orders the two: the worker publishes itself and reads `aborted` under it, the abort
//!   sets `aborted` and reads the worker under it, so exactly one of them sees the other: a job
//!   aborted before it started begins with its interrupt bit already set (and `signalled`), and
//!   the worker registers it with the manager as the abort would have.
//! * When the job's closure returns (or panics), the worker closes the slot (`job = 0`) and, under
//!   the same lock, waits until no abort is in flight. From then on no abort can reach this thread
//!   for that job: one that comes later finds another id. One that came earlier has finished its
//!   `rt_tgsigqueueinfo`, so its signal is already pending on this thread (the kernel queues it
//!   before the call returns); the worker makes one system call, `pthread_sigmask(SIG_SETMASK)`
//!   with the mask the thread had when it joined the pool (killable's signal unblocked), after
//!   every job: it undoes whatever the job did to the mask (C code that blocked the signal would
//!   otherwise make every later job on the thread unabortable), and the kernel delivers every
//!   pending signal on its way back. Only then does it clear the interrupt bit (and a pending
//!   kill). So neither the bit nor the signal of an old abort survives into the next job. A bit
//!   that was not the job's own (no abort, `signalled` false) came from outside the pool: the
//!   worker leaves (above). An interrupt sent through a `Thread` just as a job starts may still
//!   reach that job: that path does not go through the slot (documented on
//!   `BlockingTask::thread`). A signal of that kind still in flight is harmless: killable's calls
//!   retry a wake-up whose bit is not set.
//! * Interrupt callbacks a job registered run at most once per abort, on the aborter, and the
//!   job's registration drop waits for them (`control.rs`); they end with the job. A job that
//!   leaves state behind that the next job would inherit (a leaked `defer_interrupts` guard or
//!   interrupt callback, a seal, a kill region, a deadline) retires its thread instead of
//!   handing it on.
//! * The result is published (and the task's waker woken) only after the worker closed and
//!   cleaned the slot and took the next job or counted itself idle, so a caller that awaits one
//!   job and then spawns the next finds that worker ready for it: no new thread is created.
//!   Destructors of jobs' closures and unclaimed results that run on a worker are dropped inside
//!   `catch_unwind`, their panics' payloads too (in a loop: a payload's destructor may panic);
//!   should a worker unwind anyway, a guard uncounts it.
//!
//! ## Stuck jobs
//!
//! Every abort that reaches a running job registers it with the manager *before* it interrupts
//! (an interrupt callback may never return), and a job that starts aborted is registered when
//! it starts. If the job still holds the slot when the grace has passed, the manager retires the
//! worker under its slot lock: the worker no longer counts against `max_threads` (so more than
//! `max_threads` threads may exist while retired jobs run), a new worker is created if jobs are
//! waiting, and the stuck worker exits when its job ends instead of taking another. With
//! `stop_stuck(true)`, the manager also escalates on the thread as `JoinHandle::stop` does (kill,
//! then seal). A grace too long for `Instant` arithmetic means the job is never retired.
//!
//! ## Fork
//!
//! `fork()` copies only the calling thread, and with it the pool's memory: its counts, queue and
//! mutexes, possibly held by a parent thread at that moment. So the pool's state lives in a
//! `Core` tagged with the fork generation (`control::fork_generation`, incremented in each fork
//! child), and a pool handle reaches it through an atomic pointer: in a fork child, the first
//! use finds a core of another generation and swaps in a fresh one, never touching the parent's
//! (which is leaked: its jobs and destructors belong to the parent). Tasks and workers carry the
//! generation too: a child's copy of a parent's task aborts nothing and drops nothing of the
//! job (its `Drop` does not even take the task's lock), and awaiting it resolves at once, with
//! the result if the job had ended before the fork, else with an `Err` saying the job is the
//! parent's.
//!
//! Lock order: pool, then slot; the task mutex is never held with either.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::control::{INTERRUPT, Inner, fork_generation};
use crate::thread::Thread;

/// tokio's defaults for its blocking pool.
const DEFAULT_MAX_THREADS: usize = 512;
const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(10);
const DEFAULT_ABORT_GRACE: Duration = Duration::from_secs(1);
const DEFAULT_NAME: &str = "killable-pool";
/// How long an idle worker spins before it sleeps (`Shared::spin_for_job`).
const SPIN: Duration = Duration::from_micros(50);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` on a thread of the default [`BlockingPool`] and returns a future of its result.
///
/// The job starts at once (not when the task is first polled), on a reused killable thread:
/// [`current`](crate::current), [`defer_interrupts`](crate::defer_interrupts),
/// [`timeout`](crate::timeout) and every killable call work in it. Dropping the
/// [`BlockingTask`] before the job has ended, or calling [`BlockingTask::abort`], interrupts the
/// job: the killable call it is blocked in (or its next one) fails with
/// [`Interrupted`](crate::Interrupted). An abort never reaches the next job run on the same
/// thread.
///
/// The default pool runs at most 512 threads at once (threads retired because their aborted job
/// did not end count no more, so more may exist while such jobs run), retires a thread idle for
/// 10 s, and retires a thread whose job has not ended 1 s after an abort; [`BlockingPoolBuilder::build_global`]
/// changes that. Like [`spawn`](crate::spawn), a job spawned by an interrupted killable thread
/// starts interrupted.
///
/// If the pool has no thread and cannot create one, the task resolves with an `Err` whose
/// payload is a `String` saying why, as if the job had panicked with it.
///
/// # Examples
///
/// ```
/// use std::io::Read;
/// use killable::io::Interruptible;
///
/// # futures::executor::block_on(async {
/// let (reader, _writer) = std::io::pipe().unwrap();
/// let mut reader = Interruptible::new(reader);
/// let task = killable::spawn_blocking(move || {
///     let mut buf = [0u8; 64];
///     reader.read(&mut buf) // blocks: nothing is ever written
/// });
/// task.abort();
/// let err = task.await.unwrap().unwrap_err();
/// assert!(killable::is_interrupt(&err));
/// # });
/// ```
pub fn spawn_blocking<F, T>(f: F) -> BlockingTask<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    global().spawn(f)
}

static GLOBAL: OnceLock<BlockingPool> = OnceLock::new();

fn global() -> &'static BlockingPool {
    GLOBAL.get_or_init(|| {
        BlockingPoolBuilder::new()
            .build()
            .expect("the default blocking pool's settings are valid")
    })
}

/// A job running (or waiting to run) on a [`BlockingPool`]; a future of its result.
///
/// Returned by [`spawn_blocking`] and [`BlockingPool::spawn`]. It resolves with `Ok` of the
/// job's value, or `Err` with the payload of its panic, like
/// [`JoinHandle::join`](crate::JoinHandle::join). An aborted job resolves too: with whatever it
/// returned once interrupted (usually the error its blocked call failed with).
///
/// Dropping an unfinished task aborts its job (use [`detach`](BlockingTask::detach) to let it
/// run on); a job whose task was dropped before the job started is not run at all (its closure
/// is dropped). The task is `Send` and `Sync` when `T` is `Send`, so it can be handed to any
/// executor. Polling it again after it resolved panics.
///
/// A result nobody takes (the task was dropped or detached) is dropped on whichever thread
/// comes last, the caller's or the pool thread's; a panic in its destructor is caught and
/// dropped there, never propagated.
///
/// In a `fork` child, a copy of a task created before the fork belongs to the parent: dropping
/// it aborts nothing, and awaiting it resolves at once, with the job's result if the job had
/// ended before the fork, else with an `Err` whose payload is a `String` saying so.
///
/// # Examples
///
/// ```
/// # futures::executor::block_on(async {
/// let task = killable::spawn_blocking(|| 6 * 7);
/// assert_eq!(task.await.unwrap(), 42);
/// # });
/// ```
///
/// The result crosses threads, so it must be `Send`:
///
/// ```compile_fail
/// let task = killable::spawn_blocking(|| std::rc::Rc::new(1));
/// ```
#[must_use = "dropping a BlockingTask aborts its job"]
pub struct BlockingTask<T> {
    task: Arc<Task<T>>,
    detached: bool,
}

struct Task<T> {
    /// The fork generation the task was created in: a fork child's copy of a parent's task
    /// never touches its locks or its worker (module docs, "Fork").
    generation: u32,
    state: Mutex<TaskState<T>>,
    /// 1 once the job's result is published (after `state` has it), for the waits of
    /// `BlockingTask::wait` and `join`, which sleep on it.
    published: AtomicU32,
}

struct TaskState<T> {
    result: Option<std::thread::Result<T>>,
    waker: Option<Waker>,
    /// The job ended (its result may have been taken already).
    finished: bool,
    /// The result was taken by a poll.
    taken: bool,
    aborted: bool,
    /// The task was dropped or detached: nobody will take the result. A job whose task was
    /// dropped (not detached) and aborted before it started is not run.
    dropped: bool,
    /// The task was detached: its job runs to its end even if it was aborted before it started.
    detached: bool,
    /// The worker running the job and the job's id in its slot, while it runs.
    running: Option<(Arc<Worker>, u64)>,
    thread: Option<Thread>,
}

impl<T> BlockingTask<T> {
    /// Interrupts the job: the killable call it is blocked in, or its next one, fails with
    /// [`Interrupted`](crate::Interrupted). A job that has not started yet starts interrupted.
    ///
    /// Does nothing if the job has ended, or once it was aborted. Never waits for the job; the
    /// task still resolves, with the job's own result. If the job has not ended within the
    /// pool's [`abort_grace`](BlockingPoolBuilder::abort_grace), its thread leaves the pool (a
    /// new thread takes its place) and exits when the job ends.
    ///
    /// An abort reaches only this task's job, never a later job on the same thread, however
    /// close to the job's end it comes.
    ///
    /// The job's interrupt callbacks ([`on_interrupt`](crate::on_interrupt)) run on the calling
    /// thread, before the signal is sent, so `abort` returns only once they have returned; the
    /// pool's watch on the job starts before they run, so a callback that never returns holds
    /// up the caller but never the pool (the job's thread is retired after the grace).
    ///
    /// # Panics
    ///
    /// If an interrupt callback the job registered panics, the panic is resumed here, after the
    /// interrupt was sent. (Dropping the task never panics that way: the panic is dropped.)
    ///
    /// # Examples
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let task = killable::spawn_blocking(|| killable::sleep(std::time::Duration::from_secs(3600)));
    /// task.abort();
    /// assert!(task.await.unwrap().is_err());
    /// # });
    /// ```
    pub fn abort(&self) {
        self.task.abort();
    }

    /// The thread running the job, once it has started (`None` before). It stays `Some` after
    /// the job ended: that thread may be running another job by then, so interrupt the job with
    /// [`abort`](BlockingTask::abort), not through this `Thread`. A pool thread interrupted or
    /// sealed through its `Thread` (or by [`shutdown`](crate::shutdown)) leaves the pool after its
    /// job (at once if it is idle) instead of taking another; the pool creates a new thread when
    /// it needs one.
    ///
    /// # Examples
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let task = killable::spawn_blocking(move || tx.send(killable::current().id()).unwrap());
    /// let id = rx.recv().unwrap(); // the job has started
    /// assert_eq!(task.thread().map(|t| t.id()), Some(id));
    /// task.await.unwrap();
    /// # });
    /// ```
    pub fn thread(&self) -> Option<Thread> {
        if self.task.foreign() {
            // A fork child's copy: its lock may have been held by a parent thread at the fork.
            return self.task.state.try_lock().ok()?.thread.clone();
        }
        lock(&self.task.state).thread.clone()
    }

    /// Whether the job has ended (then the task resolves at its next poll). In a fork child, a
    /// copy of a task created before the fork is always finished (see [`BlockingTask`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let task = killable::spawn_blocking(|| ());
    /// while !task.is_finished() {
    ///     std::thread::yield_now();
    /// }
    /// task.await.unwrap();
    /// # });
    /// ```
    pub fn is_finished(&self) -> bool {
        if self.task.foreign() {
            // A fork child's copy of a parent's task resolves at its next poll (`poll`).
            return true;
        }
        lock(&self.task.state).finished
    }

    /// Lets the job run to its end without anyone waiting for it: unlike dropping the task,
    /// this does not abort the job. A job aborted before it started (or spawned by an
    /// interrupted thread) still runs, interrupted.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// killable::spawn_blocking(move || tx.send(7).unwrap()).detach();
    /// assert_eq!(rx.recv().unwrap(), 7);
    /// ```
    pub fn detach(mut self) {
        self.detached = true;
    }

    /// Waits, killable, until the job has ended; the task is kept, so
    /// [`join`](BlockingTask::join) or `.await` afterwards returns at once.
    ///
    /// This is how a killable thread waits for a task without an executor: an executor's
    /// `block_on(task)` parks the thread in std's futex, which neither an interrupt nor a seal
    /// ends, so a thread blocked there cannot be stopped. Here the *calling* thread's interrupt
    /// ends the wait; the job runs on (drop the task, or [`abort`](BlockingTask::abort) it, to
    /// interrupt the job too).
    ///
    /// # Errors
    ///
    /// [`Interrupted`](crate::Interrupted) if the calling thread is interrupted while waiting,
    /// or is [sealed](crate::Thread::seal).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let waiter = killable::spawn(|| {
    ///     let task = killable::spawn_blocking(|| killable::sleep(Duration::from_secs(3600)));
    ///     let waited = task.wait();
    ///     // Dropping the task aborts its job.
    ///     waited
    /// });
    /// std::thread::sleep(Duration::from_millis(20));
    /// waiter.interrupt();
    /// assert!(waiter.join().unwrap().is_err());
    /// ```
    pub fn wait(&self) -> Result<(), crate::Interrupted> {
        while !self.task.is_published() {
            crate::sync::futex_wait(&self.task.published, 0, None)?;
        }
        Ok(())
    }

    /// Like [`wait`](BlockingTask::wait), for at most `timeout`; returns whether the job has
    /// ended.
    ///
    /// # Errors
    ///
    /// As [`wait`](BlockingTask::wait).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let task = killable::spawn_blocking(|| killable::sleep(Duration::from_secs(3600)));
    /// assert_eq!(task.wait_timeout(Duration::from_millis(1)).unwrap(), false);
    /// task.abort();
    /// assert!(task.wait_timeout(Duration::from_secs(60)).unwrap());
    /// assert!(task.join().unwrap().is_err());
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, crate::Interrupted> {
        // A timeout too long for `Instant` waits without a deadline, as `sleep` does.
        let Some(at) = Instant::now().checked_add(timeout) else {
            return self.wait().map(|()| true);
        };
        let deadline = crate::time::monotonic_timespec(at);
        while !self.task.is_published() {
            if !crate::sync::futex_wait(&self.task.published, 0, Some(&deadline))? {
                return Ok(self.task.is_published());
            }
        }
        Ok(true)
    }

    /// Waits for the job to end and returns its result, as `.await` would: `Ok` with the job's
    /// value, or `Err` with its panic payload. Like [`JoinHandle::join`](crate::JoinHandle::join)
    /// (and an executor's `block_on`), the wait is not killable: on a thread that may have to
    /// be stopped, [`wait`](BlockingTask::wait) first.
    ///
    /// # Panics
    ///
    /// If the task already resolved (it was awaited to its end).
    ///
    /// # Examples
    ///
    /// ```
    /// let task = killable::spawn_blocking(|| 6 * 7);
    /// assert_eq!(task.join().unwrap(), 42);
    /// ```
    pub fn join(self) -> std::thread::Result<T> {
        if self.task.foreign() {
            return self.task.foreign_result();
        }
        while self.task.published.load(Ordering::Acquire) == 0 {
            crate::futex::wait(&self.task.published, 0, None);
        }
        let mut st = lock(&self.task.state);
        assert!(!st.taken, "BlockingTask joined after it resolved");
        st.taken = true;
        st.result
            .take()
            .expect("a published result is taken only once")
    }
}

impl<T> Task<T> {
    /// A fork child's copy of a task created before the fork (its job is the parent's).
    fn foreign(&self) -> bool {
        self.generation != fork_generation()
    }

    /// What a fork child's copy of a parent's task resolves to: its job runs (or ran) in the
    /// parent. A result already there at the fork is the child's copy of it; otherwise nothing
    /// will ever come. `try_lock`: a parent thread may have held the lock at the fork, and
    /// would never release it here.
    fn foreign_result(&self) -> std::thread::Result<T> {
        if let Ok(mut st) = self.state.try_lock()
            && let Some(r) = st.result.take()
        {
            st.taken = true;
            return r;
        }
        Err(Box::new(String::from(
            "killable::BlockingTask: the job belongs to the parent process of a fork; its \
             result is not seen in the child",
        )))
    }

    /// Whether the result has been published (or, in a fork child's copy, will never be).
    fn is_published(&self) -> bool {
        self.foreign() || self.published.load(Ordering::Acquire) != 0
    }

    /// Marks the task aborted (under its lock); the worker to interrupt, if the job runs.
    fn mark_aborted(st: &mut TaskState<T>) -> Option<(Arc<Worker>, u64)> {
        if st.finished || st.aborted {
            return None;
        }
        st.aborted = true;
        st.running.clone()
    }

    fn abort(&self) {
        if self.foreign() {
            return;
        }
        let target = Self::mark_aborted(&mut lock(&self.state));
        if let Some((worker, id)) = target {
            worker.abort_job(id);
        }
    }
}

impl<T> Future for BlockingTask<T> {
    type Output = std::thread::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.task.foreign() {
            return Poll::Ready(self.task.foreign_result());
        }
        let mut st = lock(&self.task.state);
        if let Some(r) = st.result.take() {
            st.taken = true;
            return Poll::Ready(r);
        }
        assert!(!st.taken, "BlockingTask polled after it resolved");
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for BlockingTask<T> {
    fn drop(&mut self) {
        if self.task.foreign() {
            // A fork child's copy of a parent's task: its job is the parent's to run and abort,
            // and its lock may have been held by a parent thread at the fork.
            return;
        }
        // `dropped` and `aborted` are set in one step: a job cannot start between them.
        let (unclaimed, target) = {
            let mut st = lock(&self.task.state);
            st.dropped = true;
            st.detached = self.detached;
            let target = if self.detached {
                None
            } else {
                Task::mark_aborted(&mut st)
            };
            (st.result.take(), target)
        };
        if let Some((worker, id)) = target {
            // A panic of the job's interrupt callback is not re-raised from `Drop`: a task
            // dropped during unwinding would abort the process.
            if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| worker.abort_job(id))) {
                drop_quietly(p);
            }
        }
        // A result nobody took is dropped here, on the caller's thread, and a panic of its
        // destructor is dropped too, as on a pool thread: `Drop` never panics (a task dropped
        // during unwinding, or one detached just after its job ended, would otherwise abort the
        // process or panic in `detach`). One that the worker publishes after this point (the
        // task was dropped while the job ended) is dropped by the worker, after the slot was
        // closed and before its next job: a slow destructor delays that worker's next job.
        drop_quietly(unclaimed);
    }
}

impl<T> fmt::Debug for BlockingTask<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.task.foreign() {
            return f
                .debug_struct("BlockingTask")
                .field("forked_copy", &true)
                .finish_non_exhaustive();
        }
        let st = lock(&self.task.state);
        f.debug_struct("BlockingTask")
            .field("thread", &st.thread)
            .field("finished", &st.finished)
            .field("aborted", &st.aborted)
            .finish_non_exhaustive()
    }
}

/// A job in the queue: the closure and its task, with the type erased.
trait Job: Send {
    /// Runs the job on `worker` under slot id `id` (already opened); `close` closes and cleans
    /// the slot, and is called before the result is published.
    fn run(self: Box<Self>, worker: &Arc<Worker>, id: u64, close: &mut dyn FnMut());
    /// Resolves the task without running the job (no thread can run it).
    fn fail(self: Box<Self>, why: String);
}

struct JobOf<T, F> {
    task: Arc<Task<T>>,
    f: F,
}

impl<T: Send + 'static, F: FnOnce() -> T + Send + 'static> Job for JobOf<T, F> {
    fn run(self: Box<Self>, worker: &Arc<Worker>, id: u64, close: &mut dyn FnMut()) {
        let JobOf { task, f } = *self;
        let start = {
            let mut st = lock(&task.state);
            if st.dropped && st.aborted && !st.detached {
                None
            } else {
                st.running = Some((worker.clone(), id));
                st.thread = Some(worker.thread.clone());
                Some(st.aborted)
            }
        };
        let result = match start {
            None => {
                // Nobody will ever look at the result: the job is not run. Its closure is
                // dropped here, on the pool thread, like a job's own drops.
                drop_quietly(f);
                close();
                lock(&task.state).finished = true;
                return;
            }
            Some(aborted) => {
                if aborted {
                    // Aborted before it started (or by the spawn rule): it starts interrupted.
                    // The job has registered no callback yet, and the thread checks the bit
                    // before blocking. The bit is this job's (`signalled`), and the pool watches
                    // the job like any other aborted one.
                    lock(&worker.slot).signalled = true;
                    worker.thread.inner.ctl.set_quietly(INTERRUPT);
                    worker.core.watch(worker, id);
                }
                panic::catch_unwind(AssertUnwindSafe(f))
            }
        };
        // A result nobody will take is dropped as part of the job, before the slot is closed.
        let result = if lock(&task.state).dropped {
            drop_quietly(result);
            None
        } else {
            Some(result)
        };
        close();
        match result {
            Some(r) => task.publish(r),
            None => lock(&task.state).finished = true,
        }
    }

    fn fail(self: Box<Self>, why: String) {
        let JobOf { task, f } = *self;
        drop_quietly(f);
        task.publish(Err(Box::new(why)));
    }
}

/// Drops a job's closure or result on a pool thread; a panic in its destructor is not the
/// pool's to propagate (nobody would see it) and must not end the worker. The panic's payload
/// is dropped the same way: its own destructor may panic too.
fn drop_quietly<V>(v: V) {
    let mut r = panic::catch_unwind(AssertUnwindSafe(move || drop(v)));
    while let Err(payload) = r {
        r = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
    }
}

impl<T> Task<T> {
    fn publish(&self, result: std::thread::Result<T>) {
        let (waker, unclaimed) = {
            let mut st = lock(&self.state);
            st.finished = true;
            st.running = None;
            if st.dropped {
                // Dropped since the job ended: nobody will take it.
                (None, Some(result))
            } else {
                st.result = Some(result);
                (st.waker.take(), None)
            }
        };
        drop_quietly(unclaimed);
        self.published.store(1, Ordering::Release);
        crate::futex::wake(&self.published, i32::MAX);
        if let Some(w) = waker {
            // A waker is the executor's code; its panic must not take the pool thread down.
            drop_quietly(panic::catch_unwind(AssertUnwindSafe(|| w.wake())));
        }
    }
}

/// A pool of reused killable threads for blocking jobs, with abortable tasks.
///
/// [`spawn_blocking`] uses a default pool (512 threads at most, 10 s keep-alive); build your
/// own with [`BlockingPool::builder`] to give a part of the program its own bound. Cloning the
/// pool gives another handle to the same threads. When the last handle is dropped, idle
/// threads exit; jobs already queued still run, and their tasks still resolve.
///
/// # Examples
///
/// ```
/// # futures::executor::block_on(async {
/// let pool = killable::BlockingPool::builder().max_threads(4).build().unwrap();
/// let tasks: Vec<_> = (0..8).map(|i| pool.spawn(move || i * 2)).collect();
/// let mut sum = 0;
/// for t in tasks {
///     sum += t.await.unwrap();
/// }
/// assert_eq!(sum, 56);
/// # });
/// ```
#[derive(Clone)]
pub struct BlockingPool {
    shared: Arc<Shared>,
    /// Dropped with the last handle: shuts the pool down.
    _handle: Arc<Handle>,
}

struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        let core = self.0.core();
        let mut st = lock(&core.pool);
        st.shutdown = true;
        drop(st);
        core.work.notify_all();
        core.manage.notify_all();
    }
}

/// Configures a [`BlockingPool`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let pool = killable::BlockingPool::builder()
///     .max_threads(16)
///     .keep_alive(Duration::from_secs(30))
///     .abort_grace(Duration::from_millis(200))
///     .thread_name("io-pool".into())
///     .build()
///     .unwrap();
/// # drop(pool);
/// ```
#[must_use = "a BlockingPoolBuilder does nothing until `build` is called"]
#[derive(Clone, Debug)]
pub struct BlockingPoolBuilder {
    max_threads: usize,
    keep_alive: Duration,
    abort_grace: Duration,
    stop_stuck: bool,
    name: String,
    stack_size: Option<usize>,
}

impl Default for BlockingPoolBuilder {
    fn default() -> Self {
        BlockingPoolBuilder::new()
    }
}

impl BlockingPoolBuilder {
    /// A builder with the defaults: 512 threads, 10 s keep-alive, 1 s abort grace, no
    /// escalation, threads named `killable-pool`, the default stack size.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = killable::BlockingPoolBuilder::new().build().unwrap();
    /// # drop(pool);
    /// ```
    pub fn new() -> BlockingPoolBuilder {
        BlockingPoolBuilder {
            max_threads: DEFAULT_MAX_THREADS,
            keep_alive: DEFAULT_KEEP_ALIVE,
            abort_grace: DEFAULT_ABORT_GRACE,
            stop_stuck: false,
            name: DEFAULT_NAME.to_owned(),
            stack_size: None,
        }
    }

    /// The most threads the pool runs at once (default 512); further jobs wait in a queue.
    /// Threads retired after an abort do not count.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = killable::BlockingPool::builder().max_threads(1).build().unwrap();
    /// # drop(pool);
    /// ```
    pub fn max_threads(mut self, n: usize) -> BlockingPoolBuilder {
        self.max_threads = n;
        self
    }

    /// How long an idle thread waits for a job before it exits (default 10 s).
    /// [`Duration::MAX`] (or any duration too long to add to [`Instant::now`]) means never.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = killable::BlockingPool::builder()
    ///     .keep_alive(std::time::Duration::from_secs(1))
    ///     .build()
    ///     .unwrap();
    /// # drop(pool);
    /// ```
    pub fn keep_alive(mut self, d: Duration) -> BlockingPoolBuilder {
        self.keep_alive = d;
        self
    }

    /// How long an aborted job may take to end before its thread leaves the pool (default
    /// 1 s). The thread exits when the job ends; a new thread takes its place, so a job that
    /// ignores its abort never holds the pool up. [`Duration::MAX`] (or any duration too long to
    /// add to [`Instant::now`]) means never: a stuck job then keeps its thread.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = killable::BlockingPool::builder()
    ///     .abort_grace(std::time::Duration::from_millis(100))
    ///     .build()
    ///     .unwrap();
    /// # drop(pool);
    /// ```
    pub fn abort_grace(mut self, d: Duration) -> BlockingPoolBuilder {
        self.abort_grace = d;
        self
    }

    /// Whether a job still running after its [`abort_grace`](BlockingPoolBuilder::abort_grace)
    /// is escalated, within one more grace, the way
    /// [`JoinHandle::stop`](crate::JoinHandle::stop) does it: a kill (which abandons a
    /// [`kill_region`](crate::kill_region)) and then a [seal](crate::Thread::seal) (its blocking
    /// system calls fail from then on). Default `false`: the job is only interrupted.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = killable::BlockingPool::builder().stop_stuck(true).build().unwrap();
    /// # drop(pool);
    /// ```
    pub fn stop_stuck(mut self, yes: bool) -> BlockingPoolBuilder {
        self.stop_stuck = yes;
        self
    }

    /// The name of the pool's threads (default `killable-pool`).
    ///
    /// # Examples
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let pool = killable::BlockingPool::builder().thread_name("db".into()).build().unwrap();
    /// let name = pool.spawn(|| killable::current().name().map(str::to_owned)).await.unwrap();
    /// assert_eq!(name.as_deref(), Some("db"));
    /// # });
    /// ```
    pub fn thread_name(mut self, name: String) -> BlockingPoolBuilder {
        self.name = name;
        self
    }

    /// The stack size of the pool's threads, as [`Builder::stack_size`](crate::Builder::stack_size).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = killable::BlockingPool::builder().stack_size(256 * 1024).build().unwrap();
    /// # drop(pool);
    /// ```
    pub fn stack_size(mut self, size: usize) -> BlockingPoolBuilder {
        self.stack_size = Some(size);
        self
    }

    /// Builds the pool. No thread is created until the first job.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] for `max_threads(0)` or a thread name with a NUL byte.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = killable::BlockingPool::builder().max_threads(0).build().unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// ```
    pub fn build(self) -> io::Result<BlockingPool> {
        if self.max_threads == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a blocking pool needs max_threads >= 1",
            ));
        }
        if self.name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the pool's thread name contains a NUL byte",
            ));
        }
        // The fork generation counts forks only once the fork handlers are registered (they
        // are, from the program's load: `control::init_fork_handlers`).
        crate::control::init_fork_handlers();
        let shared = Arc::new(Shared::new(self));
        Ok(BlockingPool {
            _handle: Arc::new(Handle(shared.clone())),
            shared,
        })
    }

    /// Builds the pool and makes it the one [`spawn_blocking`] uses.
    ///
    /// # Errors
    ///
    /// As [`build`](BlockingPoolBuilder::build); [`io::ErrorKind::ResourceBusy`] if the default
    /// pool already exists (a `spawn_blocking` or `build_global` came first).
    ///
    /// # Examples
    ///
    /// ```
    /// // At the start of `main`, before any `spawn_blocking`:
    /// let first = killable::BlockingPool::builder().max_threads(64).build_global();
    /// # let _ = first;
    /// let err = killable::BlockingPool::builder().build_global().unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::ResourceBusy);
    /// ```
    pub fn build_global(self) -> io::Result<()> {
        let pool = self.build()?;
        GLOBAL.set(pool).map_err(|_| {
            io::Error::new(
                io::ErrorKind::ResourceBusy,
                "the default blocking pool already exists: build_global must come before the \
                 first spawn_blocking",
            )
        })
    }
}

impl BlockingPool {
    /// A [`BlockingPoolBuilder`] with the defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = killable::BlockingPool::builder().max_threads(8).build().unwrap();
    /// # drop(pool);
    /// ```
    pub fn builder() -> BlockingPoolBuilder {
        BlockingPoolBuilder::new()
    }

    /// Runs `f` on one of the pool's threads; as [`spawn_blocking`], on this pool.
    ///
    /// # Examples
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let pool = killable::BlockingPool::builder().max_threads(2).build().unwrap();
    /// assert_eq!(pool.spawn(|| "done").await.unwrap(), "done");
    /// # });
    /// ```
    pub fn spawn<F, T>(&self, f: F) -> BlockingTask<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let task = Arc::new(Task {
            generation: fork_generation(),
            published: AtomicU32::new(0),
            state: Mutex::new(TaskState {
                result: None,
                waker: None,
                finished: false,
                taken: false,
                // The spawn rule (as `Builder::spawn`): work handed on by a thread that is being
                // stopped, interrupted or sealed (even after `clear_interrupt`), does not escape
                // the stop: the job starts aborted.
                aborted: crate::interrupt::is_interrupted()
                    || crate::seal::current_is_sealed_or_requested(),
                dropped: false,
                detached: false,
                running: None,
                thread: None,
            }),
        });
        let job = Box::new(JobOf {
            task: task.clone(),
            f,
        });
        self.shared.core().submit(job);
        BlockingTask {
            task,
            detached: false,
        }
    }
}

impl fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = self.shared.core();
        let st = lock(&core.pool);
        f.debug_struct("BlockingPool")
            .field("threads", &st.threads)
            .field("idle", &st.idle)
            .field("queued", &st.queue.len())
            .field("config", &self.shared.config)
            .finish()
    }
}

/// What a pool handle holds: the settings, and the pool's state for the current fork
/// generation.
struct Shared {
    config: BlockingPoolBuilder,
    /// The `Core` of the current fork generation, from `Arc::into_raw` (module docs, "Fork").
    core: AtomicPtr<Core>,
}

impl Shared {
    fn new(config: BlockingPoolBuilder) -> Shared {
        let core = Arc::new(Core::new(config.clone()));
        Shared {
            config,
            core: AtomicPtr::new(Arc::into_raw(core).cast_mut()),
        }
    }

    /// The pool's state in this process: in a fork child, a fresh one the first time.
    fn core(&self) -> Arc<Core> {
        let generation = fork_generation();
        loop {
            let p = self.core.load(Ordering::Acquire);
            // SAFETY: `p` came from `Arc::into_raw` and that reference is never given back
            // while `self` lives (a replaced core is leaked, below; the current one is released
            // by `Drop`, which cannot run concurrently with `&self`).
            let current = unsafe {
                Arc::increment_strong_count(p);
                Arc::from_raw(p)
            };
            if current.generation == generation {
                return current;
            }
            // A fork child: the parent's core (its counts, its queue, its locks, possibly held
            // by a parent thread at the fork) is not touched, only leaked: its contents are the
            // parent's, and its destructors would run the parent's jobs' drops here.
            let fresh = Arc::into_raw(Arc::new(Core::new(self.config.clone()))).cast_mut();
            match self
                .core
                .compare_exchange(p, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => std::mem::forget(current),
                // Another thread of the child replaced it first.
                // SAFETY: `fresh` is ours alone, from `Arc::into_raw` just above.
                Err(_) => drop(unsafe { Arc::from_raw(fresh) }),
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: the reference `Shared::new` or `core` stored; nobody else can read it now.
        drop(unsafe { Arc::from_raw(self.core.load(Ordering::Acquire)) });
    }
}

/// A pool's state in one process (module docs).
struct Core {
    config: BlockingPoolBuilder,
    /// The fork generation this state belongs to.
    generation: u32,
    pool: Mutex<PoolState>,
    /// Idle workers wait here: a killable wait, so that an interrupt or a seal sent to an idle
    /// worker (by `shutdown`, or through a `Thread`) makes it leave the pool at once.
    work: crate::sync::Condvar,
    /// The manager waits here.
    manage: Condvar,
    /// Set when a spawn hands out a wake-up, for spinning workers; a hint only (the counts
    /// under the pool mutex decide), cleared by the worker that takes a wake-up.
    wake_hint: AtomicBool,
}

#[derive(Default)]
struct PoolState {
    queue: VecDeque<Box<dyn Job>>,
    threads: usize,
    idle: usize,
    notified: usize,
    /// Idle workers spinning before they sleep (`spin_for_job`).
    spinning: usize,
    shutdown: bool,
    /// Aborted jobs to look at again after the grace: (when, worker, job id), in time order.
    watch: VecDeque<(Instant, Arc<Worker>, u64)>,
    /// The manager thread runs (module docs, "The manager").
    manager: bool,
    /// Workers counted in `threads` that the manager is to create.
    create: usize,
}

/// Where the calling thread stands, for creating a thread from it (module docs, "Seals").
#[derive(Clone, Copy, PartialEq, Eq)]
enum Here {
    /// No seccomp filter at all.
    Clean,
    /// Some seccomp filter: the process's own (a container's), or a seal killable cannot see.
    Filtered,
    /// killable knows the thread is sealed (or being sealed).
    Sealed,
}

fn here() -> Here {
    let me = crate::control::current_ptr();
    // SAFETY: CURRENT is non-null only while the calling thread's `Inner` is alive.
    if !me.is_null() && unsafe { &(*me).ctl }.seal.load(Ordering::Acquire) != 0 {
        return Here::Sealed;
    }
    // SAFETY: PR_GET_SECCOMP takes no pointer; the unused arguments are zero.
    match unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } {
        0 => Here::Clean,
        // 2 (filter mode); or an error, which only a filter makes likely.
        _ => Here::Filtered,
    }
}

impl Core {
    fn new(config: BlockingPoolBuilder) -> Core {
        Core {
            config,
            generation: fork_generation(),
            pool: Mutex::new(PoolState::default()),
            work: crate::sync::Condvar::new(),
            manage: Condvar::new(),
            wake_hint: AtomicBool::new(false),
        }
    }

    fn submit(self: &Arc<Self>, job: Box<dyn Job>) {
        let mut st = lock(&self.pool);
        st.queue.push_back(job);
        self.dispatch(st);
    }

    /// With the pool locked and a job queued: hands it to an idle worker, or creates a worker
    /// if the pool may grow, or leaves it queued for the next worker that comes back.
    fn dispatch(self: &Arc<Self>, mut st: MutexGuard<'_, PoolState>) {
        if st.queue.is_empty() {
            return;
        }
        if st.idle > 0 {
            st.idle -= 1;
            st.notified += 1;
            // Each spinning worker can take one wake-up without a futex wake.
            let spinning = st.spinning >= st.notified;
            self.wake_hint.store(true, Ordering::Release);
            drop(st);
            if !spinning {
                self.work.notify_one();
            }
        } else if st.threads < self.config.max_threads {
            st.threads += 1;
            self.start_worker(st);
        }
    }

    /// A worker leaves the count (`threads`); the manager is told when none is left.
    fn uncount(&self, st: &mut PoolState) {
        st.threads -= 1;
        if st.threads == 0 {
            self.manage.notify_all();
        }
    }

    /// Creates a worker already counted in `threads`, with the pool locked: here if the calling
    /// thread is not sealed, else through the manager (module docs, "Seals").
    fn start_worker(self: &Arc<Self>, mut st: MutexGuard<'_, PoolState>) {
        let here = here();
        if here != Here::Clean && st.manager {
            st.create += 1;
            drop(st);
            self.manage.notify_all();
            return;
        }
        if here == Here::Sealed {
            drop(st);
            self.failed_start(&io::Error::other(
                "the calling thread is sealed, so a thread it created would be sealed too",
            ));
            return;
        }
        let start_manager = !st.manager;
        st.manager = true;
        drop(st);
        if start_manager {
            self.start_manager();
        }
        self.spawn_worker();
    }

    fn spawn_worker(self: &Arc<Self>) {
        // A shared pool's worker serves everyone: it joins no group (`Builder::no_group`).
        let mut b = crate::Builder::new()
            .no_group()
            .name(self.config.name.clone());
        if let Some(size) = self.config.stack_size {
            b = b.stack_size(size);
        }
        let core = self.clone();
        match b.spawn(move || worker_main(core)) {
            Ok(handle) => drop(handle),
            Err(e) => self.failed_start(&e),
        }
    }

    /// A counted worker could not be created: uncounts it, and if no worker is left to run the
    /// queue, resolves its tasks instead of letting them hang.
    fn failed_start(&self, e: &io::Error) {
        let mut st = lock(&self.pool);
        self.uncount(&mut st);
        if st.threads == 0 {
            let jobs: Vec<_> = st.queue.drain(..).collect();
            drop(st);
            for job in jobs {
                job.fail(format!(
                    "killable::spawn_blocking: cannot create a pool thread: {e}"
                ));
            }
        }
    }

    /// Starts the manager (`manager` already set): a killable daemon thread, so that a seal
    /// it might inherit would be seen, and `shutdown` leaves it alone.
    fn start_manager(self: &Arc<Self>) {
        let core = self.clone();
        let started = crate::Builder::new()
            .no_group()
            .name("killable-watch".into())
            .daemon(true)
            .spawn(move || core.manage());
        if let Err(e) = started {
            // No manager: stuck jobs keep their threads; the next worker creation tries again.
            let mut st = lock(&self.pool);
            st.manager = false;
            st.watch.clear();
            let create = std::mem::take(&mut st.create);
            drop(st);
            for _ in 0..create {
                self.failed_start(&e);
            }
        }
    }

    /// With the pool locked, at a worker's start or after a job: the next job if one waits;
    /// else the worker counts itself idle (it will wait), or leaves (shutdown, or its thread was
    /// interrupted or sealed from outside the pool: it is not handed a job).
    fn next_for(self: &Arc<Self>, mut st: MutexGuard<'_, PoolState>, me: &Worker) -> Next {
        if me.unfit() {
            self.uncount(&mut st);
            self.dispatch(st);
            return Next::Exit;
        }
        if let Some(job) = st.queue.pop_front() {
            return Next::Run(job);
        }
        if st.shutdown {
            self.uncount(&mut st);
            return Next::Exit;
        }
        st.idle += 1;
        Next::Wait
    }

    /// Waits, counted idle, until a spawn hands this worker a job; `None` when it left the pool
    /// (shutdown, `keep_alive` passed with nothing for it, or interrupted or sealed).
    fn wait_for_job(self: &Arc<Self>, me: &Worker) -> Option<Box<dyn Job>> {
        self.spin_for_job(me);
        let mut st = lock(&self.pool);
        st.spinning -= 1;
        // None: `keep_alive` is too long to count (never retire).
        let until = Instant::now().checked_add(self.config.keep_alive);
        loop {
            if st.notified > 0 {
                // A spawn counted on an idle worker: this one takes the wake-up.
                st.notified -= 1;
                if st.notified == 0 {
                    self.wake_hint.store(false, Ordering::Relaxed);
                }
                if me.unfit() {
                    // Not handed a job: the wake-up goes to another worker, or a new one.
                    self.uncount(&mut st);
                    self.dispatch(st);
                    return None;
                }
                if let Some(job) = st.queue.pop_front() {
                    return Some(job);
                }
                // The job was taken by a busy worker that came back first: idle again.
                st.idle += 1;
                continue;
            }
            let now = Instant::now();
            if st.shutdown || me.unfit() || until.is_some_and(|u| now >= u) {
                st.idle -= 1;
                self.uncount(&mut st);
                return None;
            }
            let woken = match until {
                Some(u) => self
                    .work
                    .wait_timeout(&self.pool, st, u - now)
                    .map(|r| r.map_or_else(|p| p.into_inner().0, |(g, _)| g)),
                None => self
                    .work
                    .wait(&self.pool, st)
                    .map(|r| r.unwrap_or_else(PoisonError::into_inner)),
            };
            // Interrupted or sealed: the mutex is not held; `unfit` sees why, above.
            st = woken.unwrap_or_else(|_| lock(&self.pool));
        }
    }

    /// Spins a little before an idle worker sleeps: a caller that awaits a job and spawns the
    /// next one comes back within microseconds, and waking a sleeping thread on another CPU
    /// (an idle CPU, in a virtual machine a halted one) costs several times that. The worker
    /// counts itself `spinning`, so a spawn meanwhile hands it the job through `notified` and
    /// `wake_hint` without a futex wake.
    fn spin_for_job(&self, me: &Worker) {
        lock(&self.pool).spinning += 1;
        let start = Instant::now();
        while start.elapsed() < SPIN {
            if self.wake_hint.load(Ordering::Acquire) || me.inner().ctl.is_interrupted() {
                return;
            }
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
    }

    /// Registers an aborted job for the manager: looked at again after the grace.
    fn watch(self: &Arc<Self>, worker: &Arc<Worker>, id: u64) {
        let mut st = lock(&self.pool);
        let Some(at) = Instant::now().checked_add(self.config.abort_grace) else {
            // A grace too long to count: the job is never retired.
            return;
        };
        let first = st.watch.is_empty();
        st.watch.push_back((at, worker.clone(), id));
        if st.manager {
            drop(st);
            if first {
                self.manage.notify_all();
            }
            return;
        }
        if here() == Here::Sealed {
            // A manager started here would be sealed. (Only after its creation failed can the
            // manager be missing while a job runs.)
            st.watch.pop_back();
            return;
        }
        st.manager = true;
        drop(st);
        self.start_manager();
    }

    /// The manager: creates the workers that sealed threads asked for, and retires stuck jobs'
    /// workers; exits when the pool has no worker and nothing to watch.
    fn manage(self: Arc<Self>) {
        let mut st = lock(&self.pool);
        loop {
            if st.create > 0 {
                st.create -= 1;
                drop(st);
                self.spawn_worker();
                st = lock(&self.pool);
                continue;
            }
            let now = Instant::now();
            let Some(&(at, _, _)) = st.watch.front() else {
                if st.threads == 0 {
                    st.manager = false;
                    return;
                }
                st = self.manage.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            if now < at {
                st = self
                    .manage
                    .wait_timeout(st, at - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                continue;
            }
            let (_, worker, id) = st.watch.pop_front().expect("looked at above");
            let stuck = {
                let mut slot = lock(&worker.slot);
                let stuck = slot.job == id && !slot.retired;
                if stuck {
                    slot.retired = true;
                }
                stuck
            };
            if !stuck {
                continue;
            }
            self.uncount(&mut st);
            self.dispatch(st);
            if self.config.stop_stuck {
                let thread = worker.thread.clone();
                let grace = self.config.abort_grace;
                // Escalation waits up to the grace: not on the manager's time. A killable
                // daemon thread, created by this unsealed one.
                let _ = crate::Builder::new()
                    .no_group()
                    .name("killable-stop".into())
                    .daemon(true)
                    .spawn(move || crate::escalate::escalate(&[thread], grace));
            }
            st = lock(&self.pool);
        }
    }
}

/// A thread's signal mask, as a worker restores it after each job.
struct SigMask(libc::sigset_t);

impl SigMask {
    /// The calling thread's mask, with killable's signal unblocked.
    fn current() -> SigMask {
        // SAFETY: sigset_t is plain data; a null `set` only reads the mask into `old`; the
        // signal number is valid.
        unsafe {
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut old);
            libc::sigdelset(&mut old, crate::signal());
            SigMask(old)
        }
    }

    /// Makes it the calling thread's mask again.
    fn restore(&self) {
        // SAFETY: `self.0` is an initialised sigset_t; the old mask is not asked for.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut());
        }
    }
}

/// A pool thread, as aborts see it.
struct Worker {
    thread: Thread,
    core: Arc<Core>,
    /// The fork generation the worker was created in: a fork child's copy is not aborted.
    generation: u32,
    slot: Mutex<Slot>,
    /// Signalled when the last abort in flight leaves the slot.
    settled: Condvar,
    /// The thread's own mask, restored after each job.
    mask: SigMask,
}

#[derive(Default)]
struct Slot {
    /// The job running, 0 between jobs.
    job: u64,
    /// Aborts between their check of `job` and the end of their interrupt.
    aborting: u32,
    /// An abort interrupted this job (its signal may still be pending on the thread), or it
    /// started aborted: the interrupt bit at its end is the job's.
    signalled: bool,
    /// The manager took the thread out of the pool: it exits after its job.
    retired: bool,
}

impl Worker {
    fn abort_job(self: &Arc<Self>, id: u64) {
        if self.generation != fork_generation() {
            // A fork child's copy of a parent's worker: that thread does not exist here.
            return;
        }
        {
            let mut slot = lock(&self.slot);
            if slot.job != id {
                return;
            }
            slot.aborting += 1;
        }
        // Counts the abort out even if an interrupt callback panics.
        struct Out<'a>(&'a Worker);
        impl Drop for Out<'_> {
            fn drop(&mut self) {
                let mut slot = lock(&self.0.slot);
                slot.aborting -= 1;
                slot.signalled = true;
                if slot.aborting == 0 {
                    self.0.settled.notify_all();
                }
            }
        }
        let _out = Out(self);
        // Watched before the interrupt: its callbacks run here and may never return.
        self.core.watch(self, id);
        // The thread cannot take another job meanwhile: it waits for `aborting` to drop to 0
        // first. A failure to signal (killable's handler replaced) still leaves the bit set,
        // which the job's next killable call sees.
        let _ = crate::interrupt::try_interrupt(&self.thread.inner);
    }

    /// Closes the slot, cleans the thread, and decides what comes next: called after each job,
    /// before its result is published (module docs).
    fn after_job(&self) -> Next {
        match self.close() {
            Fate::Keep => self.core.next_for(lock(&self.core.pool), self),
            Fate::Leave => {
                let mut st = lock(&self.core.pool);
                self.core.uncount(&mut st);
                self.core.dispatch(st);
                Next::Exit
            }
            Fate::Retired => Next::Exit,
        }
    }

    /// Closes the slot after a job and cleans the thread for the next one (module docs).
    fn close(&self) -> Fate {
        let (signalled, retired) = {
            let mut slot = lock(&self.slot);
            slot.job = 0;
            while slot.aborting > 0 {
                slot = self
                    .settled
                    .wait(slot)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            (std::mem::take(&mut slot.signalled), slot.retired)
        };
        // The thread's own mask again (a job may have blocked killable's signal, or others);
        // and, as any system call, this delivers the signals pending on the thread.
        self.mask.restore();
        let ctl = &self.inner().ctl;
        let interrupted = ctl.clear_interrupt();
        if retired {
            return Fate::Retired;
        }
        let leaked = ctl.deferral_depth() != 0
            || ctl.has_callbacks()
            || self.sealed()
            || ctl.regions.load(Ordering::Acquire) != 0
            || ctl.deadline_ns.load(Ordering::Acquire) != 0
            // Interrupted from outside the slot (shutdown, a `Thread`): the thread leaves.
            || (interrupted && !signalled);
        if leaked { Fate::Leave } else { Fate::Keep }
    }

    fn inner(&self) -> &Inner {
        &self.thread.inner
    }

    /// A seal was requested or installed: the thread is not handed on.
    fn sealed(&self) -> bool {
        self.inner().ctl.seal.load(Ordering::Acquire) != 0
    }

    /// Sealed, or interrupted between jobs (only from outside the slot: shutdown, a `Thread`):
    /// the worker takes no job and leaves the pool.
    fn unfit(&self) -> bool {
        self.sealed() || self.inner().ctl.is_interrupted()
    }
}

/// What becomes of a worker after a job.
enum Fate {
    /// It takes the next job.
    Keep,
    /// Its job left state behind that the next job would inherit, or the thread was
    /// interrupted or sealed from outside: it exits.
    Leave,
    /// The manager retired it (already not counted): it exits.
    Retired,
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What a worker does next.
enum Next {
    Run(Box<dyn Job>),
    /// It counted itself idle: it waits for a spawn to hand it a job.
    Wait,
    Exit,
}

/// A pool thread's life: jobs until it leaves.
fn worker_main(core: Arc<Core>) {
    // A bit set by the spawn rule when this thread was created is not a job's.
    crate::current().inner.ctl.clear_interrupt();
    let me = Arc::new(Worker {
        thread: crate::current(),
        core: core.clone(),
        generation: fork_generation(),
        slot: Mutex::new(Slot::default()),
        settled: Condvar::new(),
        mask: SigMask::current(),
    });
    // If the worker unwinds (a bug, or a destructor that escaped its guard) while counted, it
    // is uncounted, so the pool does not wait for a thread that is gone.
    struct Counted<'a>(&'a Worker);
    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                return;
            }
            let mut st = lock(&self.0.core.pool);
            // Lock order: pool, then slot. Retired here, the manager will not uncount it too.
            let was_retired = std::mem::replace(&mut lock(&self.0.slot).retired, true);
            if !was_retired {
                self.0.core.uncount(&mut st);
                self.0.core.dispatch(st);
            }
        }
    }
    let _counted = Counted(&me);
    let mut next = core.next_for(lock(&core.pool), &me);
    loop {
        let job = match next {
            Next::Run(job) => job,
            Next::Wait => match core.wait_for_job(&me) {
                Some(job) => job,
                None => return,
            },
            Next::Exit => return,
        };
        if me.unfit() {
            // Interrupted or sealed from outside the pool since it took the job: the job goes
            // back to the queue's head for another worker.
            let mut st = lock(&core.pool);
            st.queue.push_front(job);
            core.uncount(&mut st);
            core.dispatch(st);
            return;
        }
        let id = next_id();
        lock(&me.slot).job = id;
        next = Next::Exit;
        job.run(&me, id, &mut || next = me.after_job());
    }
}
