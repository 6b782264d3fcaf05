//! Escalation: stopping threads within a deadline (`JoinHandle::stop`; `shutdown` in
//! `shutdown.rs` runs it on every worker).
//!
//! Escalation runs the three levels in order within one grace period, on any number of threads
//! at once: interrupt all of them and wait up to half the grace; kill those still running (a
//! kill abandons a kill region, and is an interrupt otherwise) and wait up to three quarters;
//! seal the rest and wait to the end. A thread that still runs then is reported with a
//! [`Diagnosis`] read from `/proc`.

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

/// Escalates on all `threads` at once within `grace`; one outcome per thread, in order.
pub(crate) fn escalate(threads: &[Thread], grace: Duration) -> Vec<StopOutcome> {
    let start = Instant::now();
    let at = |fraction: u32| start.checked_add(grace / 4 * fraction);
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
        match diagnose_live(&o.thread.inner) {
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
