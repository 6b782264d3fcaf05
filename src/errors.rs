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
/// interrupt must end them. [`is_interrupt`] recognises the converted error of an interrupt,
/// [`is_timeout`] that of a timeout.
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

/// Whether an [`io::Error`] is killable's [`Interrupted`] from an interrupt: the thread was asked
/// to stop ([`Thread::interrupt`](crate::Thread::interrupt), a kill outside a kill region, a
/// shutdown, or a seal as seen by killable's own waits).
///
/// It is **false** for a passed [`timeout`](crate::timeout) ([`is_timeout`] recognises that), so a
/// "we are shutting down" check does not catch deadlines; false for std's own
/// [`io::ErrorKind::Interrupted`]; and false for the `ECANCELED` of a sealed thread's system calls
/// ([`is_sealed`]). See the crate docs' table of error kinds.
///
/// # Examples
///
/// ```
/// let plain = std::io::Error::from(std::io::ErrorKind::Interrupted);
/// assert!(!killable::is_interrupt(&plain));
///
/// killable::current().interrupt();
/// let err = std::io::Error::from(killable::check().unwrap_err());
/// assert!(killable::is_interrupt(&err) && !killable::is_timeout(&err));
/// killable::clear_interrupt();
/// ```
pub fn is_interrupt(err: &io::Error) -> bool {
    interrupted(err).is_some_and(|e| !e.timed_out)
}

/// Whether an [`io::Error`] is killable's own timeout: a killable call made inside
/// [`timeout`](crate::timeout) after its time had passed. Its kind is
/// [`io::ErrorKind::TimedOut`], but only killable's timeouts match, not every `TimedOut` (a
/// socket's `SO_RCVTIMEO`, a connect that timed out in the kernel); [`is_interrupt`] is false
/// for them.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let err: std::io::Error = killable::timeout(Duration::from_millis(1), || {
///     killable::sleep(Duration::from_secs(60))
/// })
/// .unwrap_err()
/// .into();
/// assert!(killable::is_timeout(&err));
/// assert!(!killable::is_interrupt(&err));
/// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
///
/// let other = std::io::Error::from(std::io::ErrorKind::TimedOut);
/// assert!(!killable::is_timeout(&other));
/// ```
pub fn is_timeout(err: &io::Error) -> bool {
    interrupted(err).is_some_and(|e| e.timed_out)
}

/// Whether an [`io::Error`] is `ECANCELED`, the error every blocking system call of a
/// [sealed](crate::Thread::seal) thread fails with that is not killable's: std's calls
/// (`read_line`, `accept`...) and the C library's.
///
/// killable's own calls report the seal as the interrupt it also is (a seal sets the thread's
/// interrupt, and killable's calls look at the interrupt before the system call): a killable
/// read broken by a seal fails with an error that [`is_interrupt`] recognises, and this is
/// false for it. Only after [`clear_interrupt`](crate::clear_interrupt) does killable's I/O reach
/// the seal's filter and fail with `ECANCELED`.
///
/// The error is the kernel's own (`raw_os_error() == Some(libc::ECANCELED)`, kind
/// `Uncategorized` in std's eyes), so nothing marks it as the seal's: another source of
/// `ECANCELED` (an `io_uring` or AIO request that was cancelled) matches too. Where that matters,
/// ask the thread itself: [`Thread::is_sealed`](crate::Thread::is_sealed) on
/// [`current()`](crate::current) (or the thread's handle) tells whether it was sealed.
/// killable's own waits on a sealed thread ([`sleep`](crate::sleep), [`park`](crate::park),
/// [`Condvar`](crate::sync::Condvar), [`JoinHandle::wait`](crate::JoinHandle::wait)) fail with
/// [`Interrupted`] even then.
///
/// # Examples
///
/// ```
/// use std::net::TcpListener;
/// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
/// let h = killable::spawn(move || listener.accept().map(drop)); // std's accept retries EINTR
/// std::thread::sleep(std::time::Duration::from_millis(20));
/// h.thread().seal().unwrap();
/// let err = h.join().unwrap().unwrap_err();
/// assert!(killable::is_sealed(&err));
/// assert!(!killable::is_interrupt(&err));
/// ```
pub fn is_sealed(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ECANCELED)
}

/// Whether an [`io::Error`] is killable's [`Killed`]: a [`kill_region`](crate::kill_region) was
/// abandoned (or not entered because a stop was pending: an interrupt, a kill, or a passed
/// [`timeout`](crate::timeout), for which [`is_timeout`] is false), converted with `?` or
/// `into()`.
///
/// # Examples
///
/// ```
/// let err: std::io::Error = killable::Killed.into();
/// assert!(killable::is_killed(&err));
/// assert!(!killable::is_interrupt(&err));
/// ```
pub fn is_killed(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<Killed>())
}

/// killable's [`Interrupted`] inside `err`, if it is one.
fn interrupted(err: &io::Error) -> Option<&Interrupted> {
    err.get_ref().and_then(|e| e.downcast_ref::<Interrupted>())
}

/// Whether `err` stopped a call on killable's behalf: an interrupt or a passed timeout. For
/// loops that must give up on either (a connect trying one address after another).
pub(crate) fn is_stop(err: &io::Error) -> bool {
    interrupted(err).is_some()
}

/// The error of a [`kill_region`](crate::kill_region) that was abandoned by [`Thread::kill`](crate::Thread::kill), or not entered
/// because a stop was already pending.
///
/// Converts into an [`io::Error`] of kind [`io::ErrorKind::Other`] that [`is_killed`] matches and
/// [`is_interrupt`](crate::is_interrupt) does not (it is a different event: foreign state may
/// need cleaning up).
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
