//! Stopping with a deadline: escalation (`JoinHandle::stop`, `shutdown`) and diagnosis.
//!
//! Escalation runs the three levels in order within one grace period, on any number of threads
//! at once: interrupt all of them and wait up to half the grace; kill those still running (a
//! kill abandons a kill region, and is an interrupt otherwise) and wait up to three quarters;
//! seal the rest and wait to the end. A thread that still runs then is reported with a
//! [`Diagnosis`] read from `/proc`.

use std::collections::HashSet;
use std::error::Error;
use std::fmt;
use std::fs;
use std::io;
use std::thread::Result as ThreadResult;
use std::time::{Duration, Instant};

use crate::JoinHandle;
use crate::futex::monotonic_timespec;
use crate::interrupt::{INTERRUPT, KILL};
use crate::thread::{LOST_IN_FORK, RUNNING, Thread, ThreadId};

/// The level of stopping that ended a thread.
///
/// # Examples
///
/// ```
/// let w = killable::spawn(|| killable::sleep(std::time::Duration::from_secs(3600)));
/// let report = killable::shutdown(std::time::Duration::from_secs(10));
/// let o = report.outcomes().iter().find(|o| o.thread().id() == w.thread().id()).unwrap();
/// assert_eq!(o.level(), Some(killable::StopLevel::Interrupt));
/// let _ = w.join();
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum StopLevel {
    /// It was already finished.
    AlreadyFinished,
    /// It returned after being interrupted.
    Interrupt,
    /// It returned after being killed (a kill region abandoned, or a second interrupt).
    Kill,
    /// It returned after being sealed.
    Seal,
}

/// What became of one thread in an escalation.
///
/// # Examples
///
/// ```
/// let w = killable::spawn(|| killable::sleep(std::time::Duration::from_secs(3600)));
/// for outcome in killable::shutdown(std::time::Duration::from_secs(10)).outcomes() {
///     println!("{outcome}");
/// }
/// let _ = w.join();
/// ```
#[derive(Clone, Debug)]
pub struct StopOutcome {
    thread: Thread,
    level: Option<StopLevel>,
    elapsed: Duration,
    seal_error: Option<String>,
    diagnosis: Option<Diagnosis>,
}

impl StopOutcome {
    /// The thread.
    ///
    /// # Examples
    ///
    /// ```
    /// let w = killable::spawn(|| killable::park());
    /// let report = killable::shutdown(std::time::Duration::from_secs(10));
    /// assert!(report.outcomes().iter().any(|o| o.thread().id() == w.thread().id()));
    /// let _ = w.join();
    /// ```
    pub fn thread(&self) -> &Thread {
        &self.thread
    }

    /// The level that stopped it, or `None` if it was still running at the deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// let w = killable::spawn(|| killable::park());
    /// let report = killable::shutdown(std::time::Duration::from_secs(10));
    /// assert!(report.outcomes().iter().all(|o| o.level().is_some()));
    /// let _ = w.join();
    /// ```
    pub fn level(&self) -> Option<StopLevel> {
        self.level
    }

    /// Whether it stopped.
    ///
    /// # Examples
    ///
    /// ```
    /// let w = killable::spawn(|| killable::park());
    /// assert!(killable::shutdown(std::time::Duration::from_secs(10)).outcomes().iter().all(|o| o.stopped()));
    /// let _ = w.join();
    /// ```
    pub fn stopped(&self) -> bool {
        self.level.is_some()
    }

    /// From the start of the escalation to the moment the thread was seen finished (or to the
    /// deadline).
    ///
    /// # Examples
    ///
    /// ```
    /// let w = killable::spawn(|| killable::park());
    /// for o in killable::shutdown(std::time::Duration::from_secs(10)).outcomes() {
    ///     assert!(o.elapsed() <= std::time::Duration::from_secs(10));
    /// }
    /// let _ = w.join();
    /// ```
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Why it still runs, if it does.
    ///
    /// # Examples
    ///
    /// ```
    /// let w = killable::spawn(|| killable::park());
    /// for o in killable::shutdown(std::time::Duration::from_secs(10)).outcomes() {
    ///     assert!(o.diagnosis().is_none()); // it stopped: nothing to diagnose
    /// }
    /// let _ = w.join();
    /// ```
    pub fn diagnosis(&self) -> Option<&Diagnosis> {
        self.diagnosis.as_ref()
    }
}

impl fmt::Display for StopOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.thread.name().unwrap_or("<unnamed>");
        match (self.level, &self.diagnosis) {
            (Some(StopLevel::AlreadyFinished), _) => write!(f, "'{name}' had already finished"),
            (Some(level), _) => write!(f, "'{name}' stopped by {level:?} after {:?}", self.elapsed),
            (None, Some(d)) => {
                write!(f, "'{name}' still running after {:?}: {d}", self.elapsed)?;
                if let Some(e) = &self.seal_error {
                    write!(f, " (sealing failed: {e})")?;
                }
                Ok(())
            }
            (None, None) => write!(f, "'{name}' still running after {:?}", self.elapsed),
        }
    }
}

fn finished(t: &Thread) -> bool {
    t.inner.done_state() != RUNNING
}

/// Escalates on all `threads` at once within `grace`; one outcome per thread, in order.
pub(crate) fn escalate(threads: &[Thread], grace: Duration) -> Vec<StopOutcome> {
    let start = Instant::now();
    let at = |fraction: u32| start.checked_add(grace.mul_f64(fraction as f64 / 4.0));
    let mut out: Vec<StopOutcome> = threads
        .iter()
        .map(|t| StopOutcome {
            thread: t.clone(),
            level: finished(t).then_some(StopLevel::AlreadyFinished),
            elapsed: Duration::ZERO,
            seal_error: None,
            diagnosis: None,
        })
        .collect();

    let phases: [(StopLevel, Option<Instant>); 3] = [
        (StopLevel::Interrupt, at(2)),
        (StopLevel::Kill, at(3)),
        (StopLevel::Seal, at(4)),
    ];
    for (level, until) in phases {
        let pending: Vec<usize> = (0..out.len()).filter(|&i| out[i].level.is_none()).collect();
        if pending.is_empty() {
            break;
        }
        // One check of the handler for the whole phase, not one per thread.
        let installed = crate::signal::ensure_installed();
        for &i in &pending {
            let t = &out[i].thread;
            let handler = || match &installed {
                Ok(sig) => Ok(*sig),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            let r = match level {
                StopLevel::Interrupt => t.request_with(INTERRUPT, handler()),
                StopLevel::Kill => t.request_with(INTERRUPT | KILL, handler()),
                StopLevel::Seal => t.seal_async(),
                StopLevel::AlreadyFinished => Ok(()),
            };
            if let (StopLevel::Seal, Err(e)) = (level, &r) {
                out[i].seal_error = Some(e.to_string());
            }
        }
        let deadline = until.map(monotonic_timespec);
        for &i in &pending {
            if out[i].thread.inner.wait_done(deadline.as_ref()) {
                out[i].level = Some(level);
                out[i].elapsed = start.elapsed();
            }
        }
        // Threads that finished while we waited for earlier ones.
        for &i in &pending {
            if out[i].level.is_none() && finished(&out[i].thread) {
                out[i].level = Some(level);
                out[i].elapsed = start.elapsed();
            }
        }
    }
    for o in out.iter_mut().filter(|o| o.level.is_none()) {
        o.elapsed = start.elapsed();
        match o.thread.diagnose_live() {
            Some(d) => o.diagnosis = d.ok(),
            // It ended after the last wait: it did stop, at the last level. (Its `done` word
            // turns `FINISHED` right after its tid is released; the wait is a formality.)
            None => {
                let soon = monotonic_timespec(Instant::now() + Duration::from_millis(100));
                if o.thread.inner.wait_done(Some(&soon)) {
                    o.level = Some(StopLevel::Seal);
                }
            }
        }
    }
    out
}

/// The error of [`JoinHandle::stop`]: the thread still runs. Holds the handle and why.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// let lock = Arc::new(Mutex::new(()));
/// let held = lock.lock().unwrap();
/// let l = lock.clone();
/// let h = killable::spawn(move || drop(l.lock())); // waits in a futex: nothing reaches it
/// std::thread::sleep(std::time::Duration::from_millis(20));
/// let stuck = h.stop(std::time::Duration::from_millis(100)).unwrap_err();
/// println!("{stuck}");
/// drop(held);
/// stuck.into_handle().join().unwrap();
/// ```
pub struct Stuck<T> {
    handle: JoinHandle<T>,
    outcome: Box<StopOutcome>,
}

impl<T> Stuck<T> {
    /// Takes the handle back (to wait longer, or drop it to detach the thread).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// let lock = Arc::new(Mutex::new(()));
    /// let held = lock.lock().unwrap();
    /// let l = lock.clone();
    /// let h = killable::spawn(move || drop(l.lock()));
    /// std::thread::sleep(std::time::Duration::from_millis(20));
    /// let handle = h.stop(std::time::Duration::from_millis(100)).unwrap_err().into_handle();
    /// drop(held);
    /// handle.join().unwrap();
    /// ```
    pub fn into_handle(self) -> JoinHandle<T> {
        self.handle
    }

    /// Why the thread still runs, read from `/proc` at the deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// let lock = Arc::new(Mutex::new(()));
    /// let held = lock.lock().unwrap();
    /// let l = lock.clone();
    /// let h = killable::spawn(move || drop(l.lock()));
    /// std::thread::sleep(std::time::Duration::from_millis(50));
    /// let stuck = h.stop(std::time::Duration::from_millis(100)).unwrap_err();
    /// assert_eq!(stuck.diagnosis().unwrap().syscall_name(), Some("futex"));
    /// drop(held);
    /// stuck.into_handle().join().unwrap();
    /// ```
    pub fn diagnosis(&self) -> Option<&Diagnosis> {
        self.outcome.diagnosis()
    }
}

impl<T> fmt::Debug for Stuck<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stuck")
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for Stuck<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.outcome.fmt(f)
    }
}

impl<T> Error for Stuck<T> {}

impl<T> JoinHandle<T> {
    /// Stops the thread within `grace`, escalating: interrupt, then kill (which abandons a
    /// [`kill_region`](crate::kill_region)), then [seal](Thread::seal); returns its result.
    ///
    /// The first half of `grace` is given to the interrupt, the next quarter to the kill and the
    /// last quarter to the seal.
    ///
    /// # Errors
    ///
    /// [`Stuck`] with the handle and a [`Diagnosis`] if the thread still runs at the deadline
    /// (for example blocked in a `futex` that sealing does not reach, or spinning in Rust code
    /// that never checks).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// // std's sleep retries EINTR: only sealing ends it.
    /// let h = killable::spawn(|| std::thread::sleep(Duration::from_secs(3600)));
    /// std::thread::sleep(Duration::from_millis(20));
    /// let result = h.stop(Duration::from_secs(1)).unwrap();
    /// assert!(result.is_err()); // std's sleep panicked on ECANCELED, and unwound
    /// ```
    pub fn stop(self, grace: Duration) -> Result<ThreadResult<T>, Stuck<T>> {
        let mut outcome = escalate(std::slice::from_ref(self.thread()), grace);
        let outcome = outcome.pop().expect("one outcome per thread");
        if outcome.stopped() {
            Ok(self.join())
        } else {
            Err(Stuck {
                handle: self,
                outcome: Box::new(outcome),
            })
        }
    }
}

/// The outcome of [`shutdown`]: one [`StopOutcome`] per thread.
///
/// # Examples
///
/// ```
/// let report = killable::shutdown(std::time::Duration::from_secs(1));
/// print!("{report}");
/// ```
#[derive(Clone, Debug, Default)]
pub struct ShutdownReport {
    outcomes: Vec<StopOutcome>,
}

impl ShutdownReport {
    /// One outcome per thread the shutdown tried to stop: those live when it began, then
    /// those born while it ran.
    ///
    /// # Examples
    ///
    /// ```
    /// let w = killable::spawn(|| killable::park());
    /// let report = killable::shutdown(std::time::Duration::from_secs(10));
    /// assert!(!report.outcomes().is_empty());
    /// let _ = w.join();
    /// ```
    pub fn outcomes(&self) -> &[StopOutcome] {
        &self.outcomes
    }

    /// Whether every thread stopped.
    ///
    /// # Examples
    ///
    /// ```
    /// let w = killable::spawn(|| killable::park());
    /// assert!(killable::shutdown(std::time::Duration::from_secs(10)).all_stopped());
    /// let _ = w.join();
    /// ```
    pub fn all_stopped(&self) -> bool {
        self.outcomes.iter().all(StopOutcome::stopped)
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for o in &self.outcomes {
            writeln!(f, "{o}")?;
        }
        Ok(())
    }
}

/// Stops every live non-daemon thread killable spawned, all at once, escalating within
/// `grace` as [`JoinHandle::stop`] does, and reports what became of each.
///
/// It does not join them (their `JoinHandle`s stay with their owners), so their results are
/// still there to take; it waits until each has finished running or the deadline passes.
/// Daemon threads ([`Builder::daemon`](crate::Builder::daemon)) and the calling thread are
/// left alone.
///
/// # Race conditions
///
/// Threads go on being spawned while the shutdown runs (an acceptor hands a connection it had
/// just taken to a new worker; a daemon spawns one). So the shutdown works in rounds: it
/// escalates on the threads it finds, then looks again for live non-daemon threads it has not
/// seen yet and escalates on them within what is left of `grace`, until a round finds none.
/// Past the deadline it makes one last round that requests every level at once without
/// waiting, and returns: a thread spawned after that is not in the report. Every thread of
/// every round is in the report, stopped or not.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let worker = killable::spawn(|| killable::sleep(Duration::from_secs(3600)));
/// let report = killable::shutdown(Duration::from_secs(10));
/// assert!(report.all_stopped());
/// assert!(worker.join().unwrap().is_err());
/// ```
pub fn shutdown(grace: Duration) -> ShutdownReport {
    let start = Instant::now();
    let me = crate::current().id();
    let mut seen: HashSet<ThreadId> = HashSet::new();
    let mut outcomes = Vec::new();
    loop {
        let round: Vec<Thread> = crate::threads()
            .into_iter()
            .filter(|t| !t.is_daemon() && !t.is_finished() && t.thread().id() != me)
            .map(|t| t.thread().clone())
            .filter(|t| seen.insert(t.id()))
            .collect();
        if round.is_empty() {
            break;
        }
        let offset = start.elapsed();
        let remaining = grace.saturating_sub(offset);
        outcomes.extend(escalate(&round, remaining).into_iter().map(|mut o| {
            // Elapsed from the start of the shutdown, not of this round.
            o.elapsed += offset;
            o
        }));
        if remaining.is_zero() {
            break;
        }
    }
    ShutdownReport { outcomes }
}

/// What a thread is doing, read from `/proc/self/task/<tid>/` (see [`Thread::diagnose`]).
///
/// # Examples
///
/// ```
/// let d = killable::current().diagnose().unwrap();
/// assert_eq!(d.state(), 'R'); // this thread is running
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    state: char,
    syscall: Option<(i64, [u64; 6])>,
    wchan: Option<String>,
    in_region: bool,
    sealed: bool,
}

impl Diagnosis {
    /// The kernel's one-letter state (`R` running, `S` sleeping, `D` uninterruptible, `T`
    /// stopped).
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| killable::sleep(std::time::Duration::from_secs(3600)));
    /// std::thread::sleep(std::time::Duration::from_millis(50));
    /// assert_eq!(h.thread().diagnose().unwrap().state(), 'S');
    /// h.interrupt();
    /// let _ = h.join();
    /// ```
    pub fn state(&self) -> char {
        self.state
    }

    /// The system call the thread is blocked in: its number and its six arguments.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| killable::sleep(std::time::Duration::from_secs(3600)));
    /// std::thread::sleep(std::time::Duration::from_millis(50));
    /// let (nr, _args) = h.thread().diagnose().unwrap().syscall().unwrap();
    /// assert_eq!(nr, libc::SYS_clock_nanosleep);
    /// h.interrupt();
    /// let _ = h.join();
    /// ```
    pub fn syscall(&self) -> Option<(i64, [u64; 6])> {
        self.syscall
    }

    /// The system call's name, from the architecture's system call table (`None` for a number
    /// the table does not have: a call added by a kernel newer than the table).
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| killable::park());
    /// std::thread::sleep(std::time::Duration::from_millis(50));
    /// assert_eq!(h.thread().diagnose().unwrap().syscall_name(), Some("futex"));
    /// h.interrupt();
    /// let _ = h.join();
    /// ```
    pub fn syscall_name(&self) -> Option<&'static str> {
        self.syscall
            .and_then(|(nr, _)| crate::syscall_names::name(nr))
    }

    /// The kernel function the thread waits in (its wait channel), such as `pipe_read`.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| killable::park());
    /// std::thread::sleep(std::time::Duration::from_millis(50));
    /// println!("waiting in {:?}", h.thread().diagnose().unwrap().wchan());
    /// h.interrupt();
    /// let _ = h.join();
    /// ```
    pub fn wchan(&self) -> Option<&str> {
        self.wchan.as_deref()
    }
}

/// System calls whose first argument is a file descriptor (the `*at` calls are left out: their
/// first argument is usually `AT_FDCWD`).
const FD_FIRST: &[i64] = &[
    // Reading and writing.
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_sendfile,
    libc::SYS_splice,
    libc::SYS_tee,
    libc::SYS_vmsplice,
    libc::SYS_copy_file_range,
    libc::SYS_getdents,
    libc::SYS_getdents64,
    libc::SYS_lseek,
    libc::SYS_readahead,
    // Sockets.
    libc::SYS_connect,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_sendmmsg,
    libc::SYS_recvmmsg,
    libc::SYS_shutdown,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    // Control, locks and syncing.
    libc::SYS_ioctl,
    libc::SYS_fcntl,
    libc::SYS_flock,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_syncfs,
    libc::SYS_sync_file_range,
    libc::SYS_ftruncate,
    libc::SYS_fallocate,
    libc::SYS_fadvise64,
    libc::SYS_close,
    libc::SYS_fstat,
    libc::SYS_fstatfs,
    libc::SYS_fchdir,
    libc::SYS_fchmod,
    libc::SYS_fchown,
    libc::SYS_fgetxattr,
    libc::SYS_fsetxattr,
    libc::SYS_flistxattr,
    libc::SYS_fremovexattr,
    // Waiting on a descriptor.
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_epoll_ctl,
    libc::SYS_mq_timedsend,
    libc::SYS_mq_timedreceive,
    libc::SYS_io_uring_enter,
    libc::SYS_timerfd_settime,
    libc::SYS_timerfd_gettime,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_rm_watch,
    libc::SYS_fanotify_mark,
    // Descriptors that name something else.
    libc::SYS_setns,
    libc::SYS_finit_module,
    libc::SYS_pidfd_send_signal,
    libc::SYS_pidfd_getfd,
    libc::SYS_process_madvise,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
];

fn first_arg_is_fd(nr: i64) -> bool {
    FD_FIRST.contains(&nr)
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.state, self.syscall) {
            ('R', _) => f.write_str("running")?,
            (_, Some((nr, args))) => {
                let name = crate::syscall_names::name(nr)
                    .map_or_else(|| format!("syscall {nr}"), str::to_owned);
                if first_arg_is_fd(nr) {
                    write!(f, "blocked in {name}(fd {})", args[0] as i32)?;
                } else if nr == libc::SYS_futex {
                    let op = match args[1] & 0x7f {
                        0 => "FUTEX_WAIT".to_owned(),
                        9 => "FUTEX_WAIT_BITSET".to_owned(),
                        6 => "FUTEX_LOCK_PI".to_owned(),
                        other => format!("op {other}"),
                    };
                    write!(f, "blocked in futex({:#x}, {op})", args[0])?;
                } else {
                    write!(f, "blocked in {name}")?;
                }
            }
            ('S' | 'D', None) => f.write_str("blocked, not in a system call")?,
            (s, None) => write!(f, "in state {s}")?,
        }
        if let Some(w) = &self.wchan {
            write!(f, ", waiting in {w}")?;
        }
        if self.in_region {
            f.write_str(", inside a kill region")?;
        }
        if self.sealed {
            f.write_str(", sealed")?;
        }
        Ok(())
    }
}

/// The error of a per-tid query (`diagnose`, `affinity`) of a thread that has no live kernel
/// thread in this process: it finished (its id may already name another thread), or it stayed
/// in the parent of a `fork`.
pub(crate) fn not_live_error(thread: &Thread) -> io::Error {
    let id = thread.id().as_u64();
    let who = match thread.name() {
        Some(name) => format!("thread '{name}' (id {id})"),
        None => format!("thread {id}"),
    };
    let what = if thread.inner.done_state() == LOST_IN_FORK {
        "is not in this process: it stayed in the parent of a fork"
    } else {
        "has finished"
    };
    io::Error::new(io::ErrorKind::NotFound, format!("{who} {what}"))
}

impl Thread {
    /// Reads what the thread is doing from `/proc/self/task/<tid>/`: its state, the system
    /// call it is blocked in with its arguments, and its kernel wait channel. `Display` prints
    /// it as one line, such as `blocked in read(fd 3), waiting in pipe_read`.
    ///
    /// A thread that has not started yet is waited for (as [`tid`](Thread::tid) does); the
    /// thread cannot finish while `/proc` is read, so the reads are of this thread even if it
    /// is about to end.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if the thread has finished (its id may already name
    /// another thread) or stayed in the parent of a `fork`; the error of reading `/proc`
    /// otherwise (for example if it is not mounted).
    ///
    /// # Examples
    ///
    /// ```
    /// let (reader, _writer) = std::io::pipe().unwrap();
    /// let h = killable::spawn(move || {
    ///     use std::io::Read;
    ///     killable::io::Interruptible::new(reader).read(&mut [0u8; 1])
    /// });
    /// std::thread::sleep(std::time::Duration::from_millis(50));
    /// let d = h.thread().diagnose().unwrap();
    /// println!("{d}"); // blocked in read(fd 3), waiting in pipe_read
    /// h.interrupt();
    /// let t = h.thread().clone();
    /// h.join().unwrap().unwrap_err();
    /// let e = t.diagnose().unwrap_err(); // finished
    /// assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    /// ```
    pub fn diagnose(&self) -> io::Result<Diagnosis> {
        self.diagnose_live()
            .unwrap_or_else(|| Err(not_live_error(self)))
    }

    /// `diagnose`, or None if the thread has no live kernel thread in this process.
    fn diagnose_live(&self) -> Option<io::Result<Diagnosis>> {
        if self.inner.done_state() != RUNNING {
            return None;
        }
        self.tid(); // not started yet: wait until its id is published
        crate::interrupt::with_live_tid(&self.inner, |tid| {
            let dir = format!("/proc/self/task/{tid}");
            let stat = fs::read_to_string(format!("{dir}/stat"))?;
            let mut d = Diagnosis {
                state: stat
                    .rsplit(')')
                    .next()
                    .and_then(|s| s.trim_start().chars().next())
                    .unwrap_or('?'),
                syscall: None,
                wchan: None,
                in_region: self.in_kill_region(),
                sealed: self.is_sealed(),
            };
            if let Ok(sc) = fs::read_to_string(format!("{dir}/syscall")) {
                let mut it = sc.split_whitespace();
                if let Some(Ok(nr)) = it.next().map(str::parse::<i64>) {
                    if nr >= 0 {
                        let mut args = [0u64; 6];
                        for a in &mut args {
                            *a = it
                                .next()
                                .and_then(|x| {
                                    u64::from_str_radix(x.trim_start_matches("0x"), 16).ok()
                                })
                                .unwrap_or(0);
                        }
                        d.syscall = Some((nr, args));
                    }
                }
            }
            if let Ok(w) = fs::read_to_string(format!("{dir}/wchan")) {
                let w = w.trim();
                if !w.is_empty() && w != "0" {
                    d.wchan = Some(w.to_owned());
                }
            }
            Ok(d)
        })
    }
}
