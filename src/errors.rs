//! killable's error types and the predicates that recognise them inside an [`io::Error`].
//!
//! A leaf: it imports nothing from the crate, so every layer can use it.

use std::error::Error;
use std::fmt;
use std::io;

/// The error a killable call returns when its thread was interrupted, or when the
/// [`timeout`](crate::timeout) around it passed.
///
/// It converts into an [`io::Error`] whose kind is [`io::ErrorKind::Other`] (or
/// [`io::ErrorKind::TimedOut`] for a timeout), never [`io::ErrorKind::Interrupted`]: std's loops
/// (`read_exact`, `read_line`, `write_all`, `io::copy`) retry that kind forever, and an
/// interrupt must end them. [`is_interrupt`] recognises the converted error.
///
/// # Examples
///
/// ```
/// killable::current().interrupt();
/// let err = killable::check().unwrap_err();
/// assert!(!err.is_timeout());
/// let io_err = std::io::Error::from(err);
/// assert_ne!(io_err.kind(), std::io::ErrorKind::Interrupted);
/// assert!(killable::is_interrupt(&io_err));
/// killable::clear_interrupt();
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Interrupted {
    timed_out: bool,
}

impl Interrupted {
    /// The error of an interrupt (not a timeout).
    pub(crate) fn interrupt() -> Interrupted {
        Interrupted { timed_out: false }
    }

    /// The error of a stop request; `timed_out` when only a deadline stopped the call.
    pub(crate) fn stop(timed_out: bool) -> Interrupted {
        Interrupted { timed_out }
    }

    /// Whether the call was stopped by a [`timeout`](crate::timeout) passing rather than by
    /// [`interrupt`](crate::Thread::interrupt).
    ///
    /// # Examples
    ///
    /// ```
    /// let r = killable::timeout(std::time::Duration::from_millis(1), || {
    ///     killable::sleep(std::time::Duration::from_secs(60))
    /// });
    /// assert!(r.unwrap_err().is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        self.timed_out
    }
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.timed_out {
            "the killable timeout passed"
        } else {
            "the thread was interrupted"
        })
    }
}

impl Error for Interrupted {}

impl From<Interrupted> for io::Error {
    fn from(e: Interrupted) -> io::Error {
        let kind = if e.timed_out {
            io::ErrorKind::TimedOut
        } else {
            io::ErrorKind::Other
        };
        io::Error::new(kind, e)
    }
}

/// Whether an [`io::Error`] is killable's [`Interrupted`] (an interrupt or a timeout).
///
/// # Examples
///
/// ```
/// let plain = std::io::Error::from(std::io::ErrorKind::Interrupted);
/// assert!(!killable::is_interrupt(&plain));
/// ```
pub fn is_interrupt(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<Interrupted>())
}

/// The error of a [`kill_region`](crate::kill_region) that was abandoned by [`Thread::kill`](crate::Thread::kill), or not entered
/// because a stop was already pending.
///
/// Converts into an [`io::Error`] of kind [`io::ErrorKind::Other`] that
/// [`is_interrupt`](crate::is_interrupt) does not match (it is a different event: foreign state
/// may need cleaning up).
///
/// # Examples
///
/// ```
/// let err: std::io::Error = killable::Killed.into();
/// assert_eq!(err.to_string(), "the kill region was abandoned");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Killed;

impl fmt::Display for Killed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the kill region was abandoned")
    }
}

impl Error for Killed {}

impl From<Killed> for io::Error {
    fn from(k: Killed) -> io::Error {
        io::Error::other(k)
    }
}
