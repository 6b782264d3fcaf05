//! Shutting down on Ctrl-C: the first SIGINT or SIGTERM stops every worker, a second one exits.

use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::stop::{ShutdownReport, shutdown};

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
    crate::Builder::new()
        .name("killable-signals".into())
        .daemon(true)
        .spawn(move || {
            let mut received = signals.forever();
            let Some(first) = received.next() else { return };
            shared.0.lock().unwrap_or_else(|e| e.into_inner()).signal = Some(first);
            let spawned = crate::Builder::new()
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
