//! Stopping every worker: `shutdown(grace)`, and `shutdown_on_signals`, which runs it on the
//! first SIGINT or SIGTERM.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::escalate::{StopOutcome, escalate};
use crate::thread::{Thread, ThreadId};

#[derive(Default)]
struct State {
    signal: Option<i32>,
    report: Option<ShutdownReport>,
}

/// The handle returned by [`shutdown_on_signals`]: what was received and what the shutdown did.
///
/// # Examples
///
/// ```
/// let on_signals = killable::shutdown_on_signals(std::time::Duration::from_secs(1)).unwrap();
/// assert_eq!(on_signals.signal(), None); // no Ctrl-C yet
/// ```
#[derive(Clone)]
pub struct SignalShutdown {
    shared: Arc<(Mutex<State>, Condvar)>,
}

impl SignalShutdown {
    /// The signal that started the shutdown, if one arrived.
    ///
    /// # Examples
    ///
    /// ```
    /// let on_signals = killable::shutdown_on_signals(std::time::Duration::from_secs(1)).unwrap();
    /// assert!(on_signals.signal().is_none());
    /// ```
    pub fn signal(&self) -> Option<i32> {
        self.shared
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .signal
    }

    /// The shutdown's report, once it has finished.
    ///
    /// # Examples
    ///
    /// ```
    /// let on_signals = killable::shutdown_on_signals(std::time::Duration::from_secs(1)).unwrap();
    /// assert!(on_signals.report().is_none());
    /// ```
    pub fn report(&self) -> Option<ShutdownReport> {
        self.shared
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .report
            .clone()
    }

    /// Waits until a signal has arrived and the shutdown it started has finished.
    ///
    /// # Examples
    ///
    /// ```
    /// let on_signals = killable::shutdown_on_signals(std::time::Duration::from_secs(1)).unwrap();
    /// // Simulate Ctrl-C:
    /// // SAFETY: sending SIGINT to ourselves; signal-hook has a handler for it.
    /// unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
    /// let report = on_signals.wait();
    /// assert!(report.all_stopped());
    /// ```
    pub fn wait(&self) -> ShutdownReport {
        let (lock, cv) = &*self.shared;
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let guard = cv
            .wait_while(guard, |s| s.report.is_none())
            .unwrap_or_else(|e| e.into_inner());
        guard.report.clone().expect("checked above")
    }
}

impl std::fmt::Debug for SignalShutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalShutdown")
            .field("signal", &self.signal())
            .finish_non_exhaustive()
    }
}

/// Makes the first SIGINT or SIGTERM [`shutdown`] every non-daemon thread killable spawned
/// (escalating within `grace`), and a second one end the process at once with status
/// `128 + signal`, as a shell reports a death by that signal.
///
/// The signals are received with `signal-hook` by a daemon thread named `killable-signals`, so
/// the shutdown itself runs outside any signal handler. The workers' `JoinHandle`s stay with
/// their owners: typically `main` joins them, and returns once the shutdown has stopped them.
///
/// # Errors
///
/// The OS error if the signal handlers cannot be registered or the thread cannot be spawned.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// killable::shutdown_on_signals(Duration::from_secs(5)).unwrap();
/// let worker = killable::spawn(|| killable::sleep(Duration::from_secs(3600)));
/// // Ctrl-C: the sleep is interrupted, and join returns.
/// let _ = worker.join();
/// ```
pub fn shutdown_on_signals(grace: Duration) -> io::Result<SignalShutdown> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let handle = SignalShutdown {
        shared: Arc::new((Mutex::new(State::default()), Condvar::new())),
    };
    let shared = handle.shared.clone();
    // The crate's own threads join no group, even when a member calls this (a group's stop
    // would otherwise seal the signal thread).
    crate::Builder::new()
        .no_group()
        .name("killable-signals".into())
        .daemon(true)
        .spawn(move || {
            let mut received = signals.forever();
            let Some(first) = received.next() else { return };
            shared.0.lock().unwrap_or_else(|e| e.into_inner()).signal = Some(first);
            let spawned = crate::Builder::new()
                .no_group()
                .name("killable-shutdown".into())
                .daemon(true)
                .spawn(move || {
                    let report = shutdown(grace);
                    let (lock, cv) = &*shared;
                    lock.lock().unwrap_or_else(|e| e.into_inner()).report = Some(report);
                    cv.notify_all();
                });
            // A second signal ends the process even if the shutdown hangs (or could not start).
            if let Some(sig) = received.next().or(spawned.err().map(|_| first)) {
                // SAFETY: _exit ends the process at once; nothing is unwound.
                unsafe { libc::_exit(128 + sig) };
            }
        })?;
    Ok(handle)
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
    /// Threads were still being spawned when the stop gave up (`stop_rounds`).
    gave_up: bool,
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

    /// Whether every thread stopped: every thread in the report, and no thread spawned while
    /// the stop ran was left out.
    ///
    /// # Examples
    ///
    /// ```
    /// let w = killable::spawn(|| killable::park());
    /// assert!(killable::shutdown(std::time::Duration::from_secs(10)).all_stopped());
    /// let _ = w.join();
    /// ```
    pub fn all_stopped(&self) -> bool {
        !self.gave_up && self.outcomes.iter().all(StopOutcome::stopped)
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
/// `grace` as [`JoinHandle::stop`](crate::JoinHandle::stop) does, and reports what became of each.
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
/// Past the deadline each further round requests every level at once without waiting, and
/// the rounds go on until one finds no new thread: a thread spawned during the shutdown is in
/// the report, and [`ShutdownReport::all_stopped`] is never true while one still runs. (A
/// spawner stopped by the shutdown spawns its children before it finishes, and they start
/// interrupted.) If new threads still appear after many rounds past the deadline, the shutdown
/// gives up and the report says not all stopped.
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
    let me = crate::current().id();
    stop_rounds(grace, || {
        // Only the targets are cloned: the last round, which finds every thread finished
        // but not yet joined, then clones nothing.
        crate::registry::collect(|t| !t.inner.daemon && !t.is_finished() && t.id() != me)
    })
}

/// Rounds past the deadline after which a stop that still finds new threads gives up.
const ROUNDS_PAST_DEADLINE: usize = 64;

/// The rounds of `shutdown`, `Group::stop` and `Scope::stop`: escalates on the threads
/// `targets` lists, then on those it lists next that were not seen yet, until a listing finds
/// none (see `shutdown`'s race conditions).
pub(crate) fn stop_rounds(
    grace: Duration,
    mut targets: impl FnMut() -> Vec<Thread>,
) -> ShutdownReport {
    let start = Instant::now();
    let mut seen: HashSet<ThreadId> = HashSet::new();
    let mut outcomes = Vec::new();
    let mut past_deadline = 0;
    let mut gave_up = false;
    loop {
        let listed = targets();
        // Sized by the first listing: at 10,000 threads, growing the set step by step rehashes
        // it again and again while no signal has been sent yet. (Later listings hold mostly
        // threads already seen.)
        if seen.is_empty() {
            seen.reserve(listed.len());
        }
        let round: Vec<Thread> = listed.into_iter().filter(|t| seen.insert(t.id())).collect();
        if round.is_empty() {
            break;
        }
        let offset = start.elapsed();
        let remaining = grace.saturating_sub(offset);
        if remaining.is_zero() {
            past_deadline += 1;
        }
        let mut escalated = escalate(&round, remaining);
        for o in &mut escalated {
            // Elapsed from the start of the stop, not of this round.
            o.elapsed += offset;
        }
        // The first round's outcomes are kept as they are rather than copied (at 10,000
        // threads the copy touches megabytes of fresh pages while the joiners wait).
        if outcomes.is_empty() {
            outcomes = escalated;
        } else {
            outcomes.append(&mut escalated);
        }
        if past_deadline >= ROUNDS_PAST_DEADLINE {
            gave_up = targets().iter().any(|t| !seen.contains(&t.id()));
            break;
        }
    }
    ShutdownReport { outcomes, gave_up }
}
