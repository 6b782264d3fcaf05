//! Abortable blocking tasks for async code: [`spawn_blocking`], [`BlockingTask`], and the pool
//! of reused killable threads that runs them ([`BlockingPool`], [`BlockingPoolBuilder`]).
//!
//! # Internal workings
//!
//! ## The pool
//!
//! One mutex guards the queue and the counts: `threads` (workers counted against
//! `max_threads`), `idle` (workers waiting for work, or about to), `notified` (wake-ups handed to
//! idle workers and not yet taken). A spawn queues its job; if a worker is idle it takes one
//! idle worker (`idle -= 1; notified += 1`) and signals the condition variable, else it creates a
//! worker if `threads < max_threads`, else the job waits in the queue. A waiting worker leaves
//! only by taking a `notified` (then it drains the queue), at shutdown, or when `keep_alive`
//! passes with nothing for it (it retires). Counting wake-ups, rather than trusting the
//! condition variable, makes spurious wake-ups harmless and never lets two spawns count on the
//! same idle worker. Workers are created with the pool mutex released. An idle worker spins for
//! 50 µs before it sleeps, counted in `spinning`: a spawn meanwhile hands it the job through
//! `notified` (and the `wake_hint` flag it watches) without a futex wake, as long as there are at
//! least as many spinners as wake-ups handed out; a spinner that gives up takes the pool mutex
//! and looks at `notified` before it sleeps, so no wake-up is lost.
//!
//! ## Job isolation: the slot
//!
//! A worker runs one job after another, and an `abort()` of one job must never interrupt the
//! next one on the same thread, even an abort that arrives just as its job ends. Each worker has
//! a `Slot` under a small mutex: the id of the job it runs (0 between jobs), how many aborts
//! are in flight, whether one sent a signal, and whether the worker was retired.
//!
//! * `abort()` marks its task aborted, and if the task says which worker runs it (and with which
//!   id), takes that worker's slot lock: only if the slot still holds the same id does it count
//!   itself in flight (`aborting += 1`) and, with the lock released (an interrupt callback runs
//!   user code, which may abort again), interrupt the thread: set the bit, run the callbacks,
//!   send the signal. Then it takes the lock again, counts itself out and notes that a signal
//!   may be on its way.
//! * The worker opens the slot (`job = id`) before it publishes itself in the task, so an abort
//!   that finds the worker in the task finds the id in the slot until the job is closed. The task
//!   mutex orders the two: the worker publishes itself and reads `aborted` under it, the abort
//!   sets `aborted` and reads the worker under it, so exactly one of them sees the other: a job
//!   aborted before it started begins with its interrupt bit already set.
//! * When the job's closure returns (or panics), the worker closes the slot (`job = 0`) and, under
//!   the same lock, waits until no abort is in flight. From then on no abort can reach this thread
//!   for that job: one that comes later finds another id. One that came earlier has finished its
//!   `rt_tgsigqueueinfo`, so its signal is already pending on this thread (the kernel queues it
//!   before the call returns); the worker makes one system call (`pthread_sigmask`, which also
//!   unblocks the signal if the job had blocked it) and the kernel delivers every pending signal
//!   on its way back. Only then does it clear the interrupt bit (and a pending kill). So neither
//!   the bit nor the signal of an old abort survives into the next job. The bit is cleared again
//!   right before each job, for an interrupt someone sent through a `Thread` obtained from
//!   `BlockingTask::thread` after its job ended: that path does not go through the slot.
//!   A signal of that kind still in flight is harmless: killable's calls retry a wake-up whose
//!   bit is not set.
//! * Interrupt callbacks a job registered run at most once per abort, on the aborter, and the
//!   job's registration drop waits for them (`control.rs`); they end with the job. A job that
//!   leaves state behind that the next job would inherit (a leaked `defer_interrupts` guard or
//!   interrupt callback, a seal, a kill region, a deadline) retires its thread instead of
//!   handing it on.
//! * The result is published (and the task's waker woken) only after the worker closed and
//!   cleaned the slot and took the next job or counted itself idle, so a caller that awaits one
//!   job and then spawns the next finds that worker ready for it: no new thread is created.
//!
//! ## Stuck jobs
//!
//! An abort that reached a running job also registers it with the pool's watchdog (a thread
//! that exists only while aborts are pending). If the job still holds the slot when the grace
//! has passed, the watchdog retires the worker under its slot lock: the worker no longer counts
//! against `max_threads`, a new worker is created if jobs are waiting, and the stuck worker exits
//! when its job ends instead of taking another. With `stop_stuck(true)`, the watchdog also
//! escalates on the thread as `JoinHandle::stop` does (kill, then seal).
//!
//! Lock order: pool, then slot; the task mutex is never held with either.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::control::{INTERRUPT, Inner};
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
/// The default pool has at most 512 threads, retires a thread idle for 10 s, and retires a
/// thread whose job has not ended 1 s after an abort; [`BlockingPoolBuilder::build_global`]
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
    state: Mutex<TaskState<T>>,
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
    /// dropped and aborted before it started is not run.
    dropped: bool,
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
    /// # Panics
    ///
    /// If an interrupt callback the job registered ([`on_interrupt`](crate::on_interrupt))
    /// panics, the panic is resumed here, after the interrupt was sent.
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
    /// [`abort`](BlockingTask::abort), not through this `Thread`.
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
        lock(&self.task.state).thread.clone()
    }

    /// Whether the job has ended (then the task resolves at its next poll).
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
        lock(&self.task.state).finished
    }

    /// Lets the job run to its end without anyone waiting for it: unlike dropping the task,
    /// this does not abort the job.
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
}

impl<T> Task<T> {
    fn abort(&self) {
        let target = {
            let mut st = lock(&self.state);
            if st.finished || st.aborted {
                return;
            }
            st.aborted = true;
            st.running.clone()
        };
        if let Some((worker, id)) = target {
            worker.abort_job(id);
        }
    }
}

impl<T> Future for BlockingTask<T> {
    type Output = std::thread::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
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
        // A result nobody took is dropped here, on the caller's thread, never on a pool thread
        // after its job was closed (where a slow or panicking destructor would hold up or break
        // the worker).
        let unclaimed = {
            let mut st = lock(&self.task.state);
            st.dropped = true;
            st.result.take()
        };
        drop(unclaimed);
        if !self.detached {
            self.task.abort();
        }
    }
}

impl<T> fmt::Debug for BlockingTask<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
            if st.dropped && st.aborted {
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
                    // Aborted before it started: it starts interrupted. The job has registered
                    // no callback yet, and the thread checks the bit before blocking.
                    worker.thread.inner.ctl.set_quietly(INTERRUPT);
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
/// pool's to propagate (nobody would see it) and must not end the worker.
fn drop_quietly<V>(v: V) {
    let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(v)));
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
        if let Some(w) = waker {
            // A waker is the executor's code; its panic must not take the pool thread down.
            let _ = panic::catch_unwind(AssertUnwindSafe(|| w.wake()));
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
        let mut st = lock(&self.0.pool);
        st.shutdown = true;
        drop(st);
        self.0.work.notify_all();
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
    /// ignores its abort never holds the pool up.
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
        let shared = Arc::new(Shared {
            config: self,
            pool: Mutex::new(PoolState::default()),
            work: Condvar::new(),
            watch: Condvar::new(),
            pid: AtomicI32::new(crate::control::pid()),
            wake_hint: AtomicBool::new(false),
        });
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

struct Shared {
    config: BlockingPoolBuilder,
    pool: Mutex<PoolState>,
    /// Idle workers wait here.
    work: Condvar,
    /// The watchdog waits here.
    watch: Condvar,
    /// The process the counts belong to: a fork child starts with no worker.
    pid: AtomicI32,
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
    /// Aborted jobs to look at again after the grace: (when, worker, job id).
    watch: VecDeque<(Instant, Arc<Worker>, u64)>,
    watchdog: bool,
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
            state: Mutex::new(TaskState {
                result: None,
                waker: None,
                finished: false,
                taken: false,
                // The spawn rule (as `Builder::spawn`): work handed on by a thread that is being
                // stopped does not escape the stop.
                aborted: crate::interrupt::is_interrupted(),
                dropped: false,
                running: None,
                thread: None,
            }),
        });
        let job = Box::new(JobOf {
            task: task.clone(),
            f,
        });
        self.shared.submit(job);
        BlockingTask {
            task,
            detached: false,
        }
    }
}

impl fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.shared.pool);
        f.debug_struct("BlockingPool")
            .field("threads", &st.threads)
            .field("idle", &st.idle)
            .field("queued", &st.queue.len())
            .field("config", &self.shared.config)
            .finish()
    }
}

impl Shared {
    fn submit(self: &Arc<Self>, job: Box<dyn Job>) {
        let mut st = lock(&self.pool);
        let pid = crate::control::pid();
        if self.pid.load(Ordering::Relaxed) != pid {
            // A fork child: the parent's workers and watchdog do not exist here, and the jobs
            // queued in the parent are the parent's to run. Their copies are forgotten, not
            // dropped: their destructors belong to the parent too.
            self.pid.store(pid, Ordering::Relaxed);
            std::mem::forget(std::mem::take(&mut st.queue));
            st.threads = 0;
            st.idle = 0;
            st.notified = 0;
            st.spinning = 0;
            st.watch.clear();
            st.watchdog = false;
        }
        st.queue.push_back(job);
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
            drop(st);
            self.start_worker();
        }
    }

    /// Creates a worker already counted in `threads`; undoes the count if it cannot.
    fn start_worker(self: &Arc<Self>) {
        // A shared pool's worker serves everyone: it joins no group (`Builder::no_group`).
        let mut b = crate::Builder::new()
            .no_group()
            .name(self.config.name.clone());
        if let Some(size) = self.config.stack_size {
            b = b.stack_size(size);
        }
        let shared = self.clone();
        match b.spawn(move || worker_main(shared)) {
            Ok(handle) => drop(handle),
            Err(e) => {
                let mut st = lock(&self.pool);
                st.threads -= 1;
                if st.threads == 0 {
                    // Nobody is left to run the queue: resolve its tasks instead of hanging.
                    let jobs: Vec<_> = st.queue.drain(..).collect();
                    drop(st);
                    for job in jobs {
                        job.fail(format!(
                            "killable::spawn_blocking: cannot create a pool thread: {e}"
                        ));
                    }
                }
            }
        }
    }

    /// With the pool locked, at a worker's start or after a job: the next job if one waits;
    /// else the worker counts itself idle (it will wait), or leaves (shutdown, or sealed: a
    /// sealed worker's futex waits would fail at once).
    fn take_or_idle(&self, st: &mut PoolState, me: &Worker) -> Next {
        if let Some(job) = st.queue.pop_front() {
            return Next::Run(job);
        }
        if st.shutdown || me.sealed() {
            st.threads -= 1;
            return Next::Exit;
        }
        st.idle += 1;
        Next::Wait
    }

    /// Waits, counted idle, until a spawn hands this worker a job; `None` when it should exit
    /// (shutdown, or `keep_alive` passed with nothing for it).
    fn wait_for_job(&self) -> Option<Box<dyn Job>> {
        self.spin_for_job();
        let mut st = lock(&self.pool);
        st.spinning -= 1;
        let until = Instant::now() + self.config.keep_alive;
        loop {
            if st.notified > 0 {
                // A spawn counted on an idle worker: this one takes the wake-up.
                st.notified -= 1;
                if st.notified == 0 {
                    self.wake_hint.store(false, Ordering::Relaxed);
                }
                if let Some(job) = st.queue.pop_front() {
                    return Some(job);
                }
                // The job was taken by a busy worker that came back first: idle again.
                st.idle += 1;
                continue;
            }
            let now = Instant::now();
            if st.shutdown || now >= until {
                st.idle -= 1;
                st.threads -= 1;
                return None;
            }
            st = self
                .work
                .wait_timeout(st, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Spins a little before an idle worker sleeps: a caller that awaits a job and spawns the
    /// next one comes back within microseconds, and waking a sleeping thread on another CPU
    /// (an idle CPU, in a virtual machine a halted one) costs several times that. The worker
    /// counts itself `spinning`, so a spawn meanwhile hands it the job through `notified` and
    /// `wake_hint` without a futex wake.
    fn spin_for_job(&self) {
        lock(&self.pool).spinning += 1;
        let start = Instant::now();
        while start.elapsed() < SPIN {
            if self.wake_hint.load(Ordering::Acquire) {
                return;
            }
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
    }

    /// After a worker left the count: creates a replacement if jobs wait and no idle worker
    /// will take them.
    fn refill(self: &Arc<Self>, mut st: MutexGuard<'_, PoolState>) {
        if st.queue.is_empty() || st.idle > 0 || st.threads >= self.config.max_threads {
            return;
        }
        st.threads += 1;
        drop(st);
        self.start_worker();
    }

    /// Registers an aborted job for the watchdog.
    fn watch(self: &Arc<Self>, worker: Arc<Worker>, id: u64) {
        let at = Instant::now() + self.config.abort_grace;
        let mut st = lock(&self.pool);
        st.watch.push_back((at, worker, id));
        if st.watchdog {
            return;
        }
        st.watchdog = true;
        drop(st);
        let shared = self.clone();
        let started = std::thread::Builder::new()
            .name("killable-watch".into())
            .spawn(move || shared.watchdog());
        if started.is_err() {
            // No watchdog: stuck jobs keep their threads. The next abort tries again.
            let mut st = lock(&self.pool);
            st.watchdog = false;
            st.watch.clear();
        }
    }

    fn watchdog(self: Arc<Self>) {
        let mut st = lock(&self.pool);
        loop {
            let Some(&(at, _, _)) = st.watch.front() else {
                st.watchdog = false;
                return;
            };
            let now = Instant::now();
            if now < at {
                st = self
                    .watch
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
            st.threads -= 1;
            self.refill(st);
            if self.config.stop_stuck {
                let thread = worker.thread.clone();
                let grace = self.config.abort_grace;
                // Escalation waits up to the grace: not on the watchdog's time.
                let _ = std::thread::Builder::new()
                    .name("killable-stop".into())
                    .spawn(move || crate::escalate::escalate(&[thread], grace));
            }
            st = lock(&self.pool);
        }
    }
}

/// A pool thread, as aborts see it.
struct Worker {
    thread: Thread,
    shared: Arc<Shared>,
    slot: Mutex<Slot>,
    /// Signalled when the last abort in flight leaves the slot.
    settled: Condvar,
}

#[derive(Default)]
struct Slot {
    /// The job running, 0 between jobs.
    job: u64,
    /// Aborts between their check of `job` and the end of their interrupt.
    aborting: u32,
    /// An abort interrupted this job: its signal may still be pending on the thread.
    signalled: bool,
    /// The watchdog took the thread out of the pool: it exits after its job.
    retired: bool,
}

impl Worker {
    fn abort_job(self: &Arc<Self>, id: u64) {
        {
            let mut slot = lock(&self.slot);
            if slot.job != id {
                return;
            }
            slot.aborting += 1;
        }
        // Counts the abort out even if an interrupt callback panics.
        struct Out<'a>(&'a Arc<Worker>, u64);
        impl Drop for Out<'_> {
            fn drop(&mut self) {
                let mut slot = lock(&self.0.slot);
                slot.aborting -= 1;
                slot.signalled = true;
                let still = slot.job == self.1;
                if slot.aborting == 0 {
                    self.0.settled.notify_all();
                }
                drop(slot);
                if still {
                    self.0.shared.watch(self.0.clone(), self.1);
                }
            }
        }
        let _out = Out(self, id);
        // The thread cannot take another job meanwhile: it waits for `aborting` to drop to 0
        // first. A failure to signal (killable's handler replaced) still leaves the bit set,
        // which the job's next killable call sees.
        let _ = crate::interrupt::try_interrupt(&self.thread.inner);
    }

    /// Closes the slot, cleans the thread, and decides what comes next: called after each job,
    /// before its result is published (module docs).
    fn after_job(&self) -> Next {
        match self.close() {
            Fate::Keep => {
                let mut st = lock(&self.shared.pool);
                self.shared.take_or_idle(&mut st, self)
            }
            Fate::Leave => {
                let mut st = lock(&self.shared.pool);
                st.threads -= 1;
                self.shared.refill(st);
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
        if signalled {
            // Any system call would do: the kernel delivers pending signals on its way back.
            // This one also unblocks killable's signal if the job had blocked it.
            crate::signal::unblock_in_current_thread();
        }
        let ctl = &self.inner().ctl;
        ctl.clear_interrupt();
        if retired {
            return Fate::Retired;
        }
        let leaked = ctl.deferral_depth() != 0
            || ctl.has_callbacks()
            || self.sealed()
            || ctl.regions.load(Ordering::Acquire) != 0
            || ctl.deadline_ns.load(Ordering::Acquire) != 0;
        if leaked { Fate::Leave } else { Fate::Keep }
    }

    fn inner(&self) -> &Inner {
        &self.thread.inner
    }

    /// A seal was requested or installed: the thread is not handed on.
    fn sealed(&self) -> bool {
        self.inner().ctl.seal.load(Ordering::Acquire) != 0
    }
}

/// What becomes of a worker after a job.
enum Fate {
    /// It takes the next job.
    Keep,
    /// Its job left state behind that the next job would inherit: it exits.
    Leave,
    /// The watchdog retired it (already not counted): it exits.
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

/// A pool thread's life: jobs until it retires.
fn worker_main(shared: Arc<Shared>) {
    let me = Arc::new(Worker {
        thread: crate::current(),
        shared: shared.clone(),
        slot: Mutex::new(Slot::default()),
        settled: Condvar::new(),
    });
    let mut next = {
        let mut st = lock(&shared.pool);
        shared.take_or_idle(&mut st, &me)
    };
    loop {
        let job = match next {
            Next::Run(job) => job,
            Next::Wait => match shared.wait_for_job() {
                Some(job) => job,
                None => return,
            },
            Next::Exit => return,
        };
        let id = next_id();
        // A bit set through a `Thread` after an earlier job had ended, or by the spawn rule when
        // this thread was created, is not this job's.
        me.inner().ctl.clear_interrupt();
        lock(&me.slot).job = id;
        next = Next::Exit;
        job.run(&me, id, &mut || next = me.after_job());
    }
}
