//! Readiness: [`Interest`], [`PollFd`] and [`poll`], killable.

use std::io;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use crate::control::with_current;
use crate::syscall::{Fail, call_once};

/// What [`poll`] waits for on a descriptor.
///
/// # Examples
///
/// ```
/// use killable::io::Interest;
/// let both = Interest::READABLE | Interest::WRITABLE;
/// assert_ne!(both, Interest::READABLE);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Interest(i16);

impl Interest {
    /// Data can be read (`POLLIN`).
    pub const READABLE: Interest = Interest(libc::POLLIN);
    /// Data can be written (`POLLOUT`).
    pub const WRITABLE: Interest = Interest(libc::POLLOUT);
}

impl std::ops::BitOr for Interest {
    type Output = Interest;
    fn bitor(self, rhs: Interest) -> Interest {
        Interest(self.0 | rhs.0)
    }
}

/// One descriptor for [`poll`]: what to wait for, and what happened. Same layout as
/// `struct pollfd`.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
/// use killable::io::{Interest, PollFd};
/// let (reader, _writer) = std::io::pipe().unwrap();
/// let mut fds = [PollFd::new(reader.as_fd(), Interest::READABLE)];
/// assert_eq!(killable::io::poll(&mut fds, Some(std::time::Duration::ZERO)).unwrap(), 0);
/// ```
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct PollFd<'fd> {
    raw: libc::pollfd,
    _fd: PhantomData<BorrowedFd<'fd>>,
}

impl<'fd> PollFd<'fd> {
    /// Waits for `interest` on `fd`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use killable::io::{Interest, PollFd};
    /// let (_reader, writer) = std::io::pipe().unwrap();
    /// let mut fds = [PollFd::new(writer.as_fd(), Interest::WRITABLE)];
    /// killable::io::poll(&mut fds, None).unwrap();
    /// assert!(fds[0].is_writable());
    /// ```
    pub fn new(fd: BorrowedFd<'fd>, interest: Interest) -> PollFd<'fd> {
        PollFd {
            raw: libc::pollfd {
                fd: fd.as_raw_fd(),
                events: interest.0,
                revents: 0,
            },
            _fd: PhantomData,
        }
    }

    /// Whether the descriptor became readable (`POLLIN`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// use std::os::fd::AsFd;
    /// use killable::io::{Interest, PollFd};
    /// let (reader, mut writer) = std::io::pipe().unwrap();
    /// writer.write_all(b"x").unwrap();
    /// let mut fds = [PollFd::new(reader.as_fd(), Interest::READABLE)];
    /// killable::io::poll(&mut fds, None).unwrap();
    /// assert!(fds[0].is_readable());
    /// ```
    pub fn is_readable(&self) -> bool {
        self.raw.revents & libc::POLLIN != 0
    }

    /// Whether the descriptor became writable (`POLLOUT`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use killable::io::{Interest, PollFd};
    /// let (_reader, writer) = std::io::pipe().unwrap();
    /// let mut fds = [PollFd::new(writer.as_fd(), Interest::WRITABLE)];
    /// killable::io::poll(&mut fds, None).unwrap();
    /// assert!(fds[0].is_writable());
    /// ```
    pub fn is_writable(&self) -> bool {
        self.raw.revents & libc::POLLOUT != 0
    }

    /// Whether the peer hung up (`POLLHUP`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use killable::io::{Interest, PollFd};
    /// let (reader, writer) = std::io::pipe().unwrap();
    /// drop(writer);
    /// let mut fds = [PollFd::new(reader.as_fd(), Interest::READABLE)];
    /// killable::io::poll(&mut fds, None).unwrap();
    /// assert!(fds[0].is_hangup());
    /// ```
    pub fn is_hangup(&self) -> bool {
        self.raw.revents & libc::POLLHUP != 0
    }

    /// Whether an error or an invalid descriptor was reported (`POLLERR`, `POLLNVAL`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use killable::io::{Interest, PollFd};
    /// let (reader, writer) = std::io::pipe().unwrap();
    /// drop(reader);
    /// let mut fds = [PollFd::new(writer.as_fd(), Interest::WRITABLE)];
    /// killable::io::poll(&mut fds, None).unwrap();
    /// assert!(fds[0].is_error()); // POLLERR: no reader left
    /// ```
    pub fn is_error(&self) -> bool {
        self.raw.revents & (libc::POLLERR | libc::POLLNVAL) != 0
    }

    /// The raw `revents` bits.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use killable::io::{Interest, PollFd};
    /// let (_reader, writer) = std::io::pipe().unwrap();
    /// let mut fds = [PollFd::new(writer.as_fd(), Interest::WRITABLE)];
    /// killable::io::poll(&mut fds, None).unwrap();
    /// assert_eq!(fds[0].revents() & libc::POLLOUT, libc::POLLOUT);
    /// ```
    pub fn revents(&self) -> i16 {
        self.raw.revents
    }
}

impl std::fmt::Debug for PollFd<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollFd")
            .field("fd", &self.raw.fd)
            .field("events", &self.raw.events)
            .field("revents", &self.raw.revents)
            .finish()
    }
}

/// Waits until one of `fds` is ready or `timeout` passes (`None`: no limit), killable.
///
/// Returns how many descriptors have events (0 on timeout); read them with
/// [`PollFd::is_readable`] and friends.
///
/// # Errors
///
/// The OS error of `ppoll(2)`, or an interrupt.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
/// use killable::io::{Interest, PollFd, poll};
///
/// let (r1, _w1) = std::io::pipe().unwrap();
/// let (r2, mut w2) = std::io::pipe().unwrap();
/// std::io::Write::write_all(&mut w2, b"x").unwrap();
/// let mut fds = [PollFd::new(r1.as_fd(), Interest::READABLE), PollFd::new(r2.as_fd(), Interest::READABLE)];
/// assert_eq!(poll(&mut fds, None).unwrap(), 1);
/// assert!(!fds[0].is_readable() && fds[1].is_readable());
/// ```
///
/// # References
///
/// * [`ppoll(2)`](https://man7.org/linux/man-pages/man2/ppoll.2.html)
#[doc(alias = "ppoll")]
pub fn poll(fds: &mut [PollFd<'_>], timeout: Option<Duration>) -> io::Result<usize> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    with_current(|inner| {
        loop {
            let mut ts = MaybeUninit::<libc::timespec>::uninit();
            let tsp = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    ts.write(libc::timespec {
                        tv_sec: left.as_secs() as libc::time_t,
                        tv_nsec: left.subsec_nanos() as libc::c_long,
                    });
                    ts.as_ptr()
                }
                None => std::ptr::null(),
            };
            let args = [
                fds.as_mut_ptr() as libc::c_long,
                fds.len() as libc::c_long,
                tsp as libc::c_long,
                0,
                0,
                0,
            ];
            match call_once(&inner.ctl, libc::SYS_ppoll, args) {
                Ok(n) => return Ok(n as usize),
                Err(Fail::Os(libc::EINTR)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    })
}
