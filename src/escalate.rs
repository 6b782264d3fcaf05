//! Escalation: stopping threads within a deadline (`JoinHandle::stop`; `shutdown` in
//! `shutdown.rs` runs it on every worker).
//!
//! Escalation runs the chosen levels ([`StopOptions`]; all three by default) in order within one
//! grace period, on any number of threads at once. Each level but the last waits up to half of
//! what is left of the grace, the last waits to the end: by default interrupt (to ½), kill (to
//! ¾), seal (to the end), as before.
//!
//! The kill's wait is skipped only when it can change nothing: the interrupt level ran (so the
//! kill is not the thread's first stop request), and every thread still running still has that
//! interrupt pending (it did not clear it to carry on, so the kill's interrupt is not a new
//! request), sits blocked in the kernel (its `/proc` state is not `R`: the interrupt's signal
//! has reached it, and it went back to sleep, in a call that retries `EINTR`, which only the
//! seal reaches), and is in no kill region. A thread that computes in Rust (state `R`) may yet
//! reach a killable call or a region, where the kill alone would stop it; one that cleared its
//! interrupt stops on a second request: both get the kill's wait, and are not sealed while the
//! kill is still doing its work. The kill is requested either way (it costs one signal): a
//! thread that enters a region after the look finds the `KILL` bit set (the region's entry
//! re-checks it after publishing the region) and returns `Err(Killed)` without running it, so
//! no region can start in the gap and escape the kill. If the kill is the last level chosen, it
//! waits to the end anyway (it is then the stop's only remaining chance).
//!
//! A thread's [`StopOutcome::elapsed`] is its own finishing time (`Inner::finished_ns`, stamped
//! by the thread as it ends), not the moment the escalation got round to looking at it: the
//! waits go one thread after another, and a thread stopped at once must not be reported as
//! having taken as long as the slowest one before it.
//!
//! A thread that still runs at the end is reported with a [`Diagnosis`] read from `/proc`.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use crate::control::{INTERRUPT, KILL, RUNNING};
use crate::diagnose::{Diagnosis, diagnose_live};
use crate::thread::Thread;
use crate::time::monotonic_timespec;

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

/// Which levels [`JoinHandle::stop_with`](crate::JoinHandle::stop_with) uses, in the fixed
/// order interrupt, kill, seal; all three by default (what [`stop`](crate::JoinHandle::stop)
/// uses). A builder in the manner of [`std::fs::OpenOptions`].
///
/// Each chosen level but the last waits up to half of what is left of the grace, the last to
/// the end. The kill's wait is skipped only when it can change nothing: after the interrupt
/// level, for a thread that still has that interrupt, is blocked in the kernel (a call that
/// retries `EINTR`, like std's `accept`) and is in no [`kill_region`](crate::kill_region). The
/// kill is still requested, so a region it enters later is not run. A thread that cleared its
/// interrupt, still computes, or never had the interrupt (`interrupt(false)`) is given the
/// kill's wait: the kill's interrupt may be what stops it.
///
/// * Leave out the seal for a thread that must be able to go on blocking afterwards (a sealed
///   thread cannot be unsealed), or whose `ECANCELED` errors would be mistaken for real ones.
/// * Leave out the interrupt (`interrupt(false)`) to go straight to the seal for a thread known
///   to sit in std's calls, which retry the interrupt's `EINTR`: it then stops at once instead
///   of after half the grace.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use killable::{StopLevel, StopOptions};
/// // std's accept retries EINTR: only the seal reaches it, so go straight there.
/// let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let h = killable::spawn(move || listener.accept().map(drop));
/// std::thread::sleep(Duration::from_millis(20));
/// let stopped = h
///     .stop_with(Duration::from_secs(10), StopOptions::new().interrupt(false).kill(false))
///     .unwrap();
/// assert_eq!(stopped.level(), StopLevel::Seal);
/// assert!(killable::is_sealed(&stopped.into_result().unwrap().unwrap_err()));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct StopOptions {
    interrupt: bool,
    kill: bool,
    seal: bool,
}

impl StopOptions {
    /// All three levels: interrupt, kill, seal.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(killable::StopOptions::new(), killable::StopOptions::default());
    /// ```
    #[must_use]
    pub const fn new() -> StopOptions {
        StopOptions {
            interrupt: true,
            kill: true,
            seal: true,
        }
    }

    /// Whether to interrupt first ([`Thread::interrupt`](crate::Thread::interrupt)).
    ///
    /// # Examples
    ///
    /// ```
    /// let seal_only = killable::StopOptions::new().interrupt(false).kill(false);
    /// assert!(!seal_only.uses(killable::StopLevel::Interrupt));
    /// ```
    #[must_use]
    pub const fn interrupt(mut self, yes: bool) -> StopOptions {
        self.interrupt = yes;
        self
    }

    /// Whether to kill ([`Thread::kill`](crate::Thread::kill)), abandoning a
    /// [`kill_region`](crate::kill_region).
    ///
    /// # Examples
    ///
    /// ```
    /// let polite = killable::StopOptions::new().kill(false).seal(false);
    /// assert!(polite.uses(killable::StopLevel::Interrupt));
    /// ```
    #[must_use]
    pub const fn kill(mut self, yes: bool) -> StopOptions {
        self.kill = yes;
        self
    }

    /// Whether to seal ([`Thread::seal`](crate::Thread::seal)) last.
    ///
    /// # Examples
    ///
    /// ```
    /// let no_seal = killable::StopOptions::new().seal(false);
    /// assert!(!no_seal.uses(killable::StopLevel::Seal));
    /// ```
    #[must_use]
    pub const fn seal(mut self, yes: bool) -> StopOptions {
        self.seal = yes;
        self
    }

    /// Whether `level` is among the chosen ones (`AlreadyFinished` always is).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(killable::StopOptions::new().uses(killable::StopLevel::Kill));
    /// ```
    pub const fn uses(&self, level: StopLevel) -> bool {
        match level {
            StopLevel::AlreadyFinished => true,
            StopLevel::Interrupt => self.interrupt,
            StopLevel::Kill => self.kill,
            StopLevel::Seal => self.seal,
        }
    }
}

impl Default for StopOptions {
    fn default() -> StopOptions {
        StopOptions::new()
    }
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
    pub(crate) elapsed: Duration,
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

/// The time from the escalation's start (`start`, and the same moment as `start_ns`) to the
/// moment the finished thread `t` ended, by its own stamp; never more than now.
fn finished_after(t: &Thread, start: Instant, start_ns: u64) -> Duration {
    let now = start.elapsed();
    match t
        .inner
        .finished_ns
        .load(std::sync::atomic::Ordering::Acquire)
    {
        0 => now, // ended without a stamp (its `pthread_create` failed, or lost in a fork)
        at => Duration::from_nanos(at.saturating_sub(start_ns)).min(now),
    }
}

/// Whether a kill, requested after the interrupt level, can change nothing for `inner` (see
/// the module's docs): it still has the interrupt, is in no kill region, and is blocked in the
/// kernel. A thread that has ended changes nothing either; one whose `/proc` entry cannot be
/// read is given the kill's wait.
fn kill_changes_nothing(inner: &crate::control::Inner) -> bool {
    if crate::kill::in_kill_region(inner) || !inner.ctl.is_interrupted() {
        return false;
    }
    match diagnose_live(inner) {
        None => true,
        Some(Ok(d)) => d.state() != 'R' && !crate::kill::in_kill_region(inner),
        Some(Err(_)) => false,
    }
}

/// Escalates on all `threads` at once within `grace`, with every level; one outcome per thread,
/// in order.
pub(crate) fn escalate(threads: &[Thread], grace: Duration) -> Vec<StopOutcome> {
    escalate_with(threads, grace, StopOptions::new())
}

/// Escalates with the levels `options` chooses (see the module's docs for the schedule).
pub(crate) fn escalate_with(
    threads: &[Thread],
    grace: Duration,
    options: StopOptions,
) -> Vec<StopOutcome> {
    let levels: Vec<StopLevel> = [StopLevel::Interrupt, StopLevel::Kill, StopLevel::Seal]
        .into_iter()
        .filter(|&l| options.uses(l))
        .collect();
    assert!(
        !levels.is_empty(),
        "killable: StopOptions chose no level of stopping"
    );
    let start = Instant::now();
    let start_ns = crate::time::now_ns();
    let end = start.checked_add(grace);
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

    for (k, &level) in levels.iter().enumerate() {
        let pending: Vec<usize> = (0..out.len()).filter(|&i| out[i].level.is_none()).collect();
        if pending.is_empty() {
            break;
        }
        let last = k + 1 == levels.len();
        // Looked at before the kill is requested; see the module's docs for why a region
        // entered after this look cannot escape.
        let kill_applies = level != StopLevel::Kill
            || !options.uses(StopLevel::Interrupt)
            || pending
                .iter()
                .any(|&i| !kill_changes_nothing(&out[i].thread.inner));
        let now = Instant::now();
        let until = if last {
            end
        } else if !kill_applies {
            Some(now) // nothing to wait for: straight on to the next level
        } else {
            end.map(|e| now + e.saturating_duration_since(now) / 2)
        };
        // One check of the handler for the whole phase, not one per thread.
        let installed = crate::signal::ensure_installed();
        for &i in &pending {
            let t = &out[i].thread;
            let handler = || match &installed {
                Ok(sig) => Ok(*sig),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            // A panicking interrupt callback (user code, run here) must not stop the others'
            // escalation: its panic is reported in the outcome instead.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match level {
                StopLevel::Interrupt => {
                    crate::interrupt::request_with(&t.inner, INTERRUPT, handler())
                }
                StopLevel::Kill => {
                    crate::interrupt::request_with(&t.inner, INTERRUPT | KILL, handler())
                }
                StopLevel::Seal => crate::seal::seal_async(&t.inner),
                StopLevel::AlreadyFinished => Ok(()),
            }))
            .unwrap_or_else(|_| Err(io::Error::other("an interrupt callback panicked")));
            if let (StopLevel::Seal, Err(e)) = (level, &r) {
                out[i].seal_error = Some(e.to_string());
            }
        }
        let deadline = until.map(monotonic_timespec);
        for &i in &pending {
            if out[i].level.is_none() && out[i].thread.inner.wait_done(deadline.as_ref()) {
                out[i].level = Some(level);
                out[i].elapsed = finished_after(&out[i].thread, start, start_ns);
            }
        }
        // Threads that finished while we waited for earlier ones (stamped with their own
        // finishing time, not this look's).
        for &i in &pending {
            if out[i].level.is_none() && finished(&out[i].thread) {
                out[i].level = Some(level);
                out[i].elapsed = finished_after(&out[i].thread, start, start_ns);
            }
        }
    }
    for o in out.iter_mut().filter(|o| o.level.is_none()) {
        o.elapsed = start.elapsed();
        match diagnose_live(&o.thread.inner) {
            Some(d) => o.diagnosis = d.ok(),
            // It ended after the last wait: it did stop, at the last level. (Its `done` word
            // turns `FINISHED` right after its tid is released; the wait is a formality.)
            None => {
                let soon = monotonic_timespec(Instant::now() + Duration::from_millis(100));
                if o.thread.inner.wait_done(Some(&soon)) {
                    o.level = levels.last().copied();
                    o.elapsed = finished_after(&o.thread, start, start_ns);
                }
            }
        }
    }
    out
}
