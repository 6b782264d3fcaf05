//! Interruptible I/O on any file descriptor: [`Interruptible<T>`] and [`poll()`].
//!
//! Every call here goes through killable's race-free system call: an interrupt (or a passed
//! [`timeout`](crate::timeout)) makes it fail at once with an error that
//! [`is_interrupt`](crate::is_interrupt) recognises, whether it was blocked or about to block.
//! A call that completed before the interrupt keeps its result, so no data is lost.

// Internal workings
//
// Layout: this file holds the wrapper and what every descriptor has; `fd.rs` the reads and
// writes (`Read`/`Write`, vectored); `socket.rs` accept, connect, datagrams and the socket
// address conversions; `poll.rs` readiness.
//
// Two kinds of system call appear here. Every call that may block (read, readv, write, writev,
// accept4, connect, recvfrom, sendto, ppoll) is issued by raw number through
// `crate::syscall::call`/`call_once`: the stub checks the interrupt bit and enters the kernel
// between two labels, which is what makes the interrupt race-free. nix's wrappers (and std's)
// call libc, which would re-open the window between the check and the kernel, so those calls
// keep their raw `libc` arguments. Calls that cannot block (socket, getsockopt) and the socket
// address conversions use nix's safe wrappers instead of `unsafe` libc.

use std::io;
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

mod fd;
mod poll;
mod socket;

pub use poll::{Interest, PollFd, poll};

/// Wraps a file descriptor owner (a pipe, a socket, a file, a child's stdout...) so that its
/// reads and writes are killable: an interrupt breaks them.
///
/// `Read` and `Write` are implemented for `Interruptible<T>` **and for `&Interruptible<T>`**, for
/// every `T: AsFd`, vectored calls included, as std does for `TcpStream` and `&TcpStream`: one
/// stream can be read by one thread and written by another through an `Arc` or a shared
/// reference (see the second example). They issue `read(2)`/`write(2)` on the descriptor
/// directly, so a type with its own userspace buffer (std's `Stdin`) should not be read both
/// ways. Listeners gain an interruptible `accept`, `UdpSocket` gains `recv_from`/`send_to`,
/// [`connect_tcp`](Interruptible::connect_tcp) and [`connect_unix`](Interruptible::connect_unix)
/// create an interruptible stream, and every `T` that is a descriptor owner (`T: AsFd +
/// From<OwnedFd>`: sockets, `File`, `PipeReader`, `PipeWriter`, `OwnedFd`...) has a
/// [`try_clone`](Interruptible::try_clone) that stays wrapped.
///
/// `Interruptible<T>` dereferences to `T` ([`Deref`], [`AsRef`]), so `T`'s own methods are at
/// hand: `stream.peer_addr()`, `listener.local_addr()`, `socket.set_read_timeout(..)`. Those are
/// `T`'s methods, not killable ones: only the calls listed above (and `Read`/`Write` on the
/// wrapper) are broken by an interrupt, so `stream.peek(..)` or `listener.incoming()` reached
/// through the deref block as std's do. There is no `DerefMut`: `&mut T` (through
/// [`get_mut`](Interruptible::get_mut)) would hand out std's `Read` and `Write` under the
/// wrapper's name.
///
/// An interrupt is reported as an error whose kind is **not**
/// [`io::ErrorKind::Interrupted`], so `read_exact`, `read_line`,
/// `write_all` and `io::copy` stop instead of retrying.
///
/// # Examples
///
/// ```
/// use std::io::{BufRead, BufReader, Write};
///
/// let (reader, mut writer) = std::io::pipe().unwrap();
/// writer.write_all(b"hello\n").unwrap();
/// let (read_one, first_read) = std::sync::mpsc::channel();
/// let h = killable::spawn(move || {
///     let mut lines = BufReader::new(killable::io::Interruptible::new(reader));
///     let mut first = String::new();
///     lines.read_line(&mut first).unwrap();
///     read_one.send(()).unwrap();
///     let mut second = String::new();
///     let blocked = lines.read_line(&mut second); // nothing more is coming
///     (first, blocked)
/// });
/// first_read.recv().unwrap();
/// h.interrupt(); // before or during the second read: either way it fails
/// let (first, blocked) = h.join().unwrap();
/// assert_eq!(first, "hello\n");
/// assert!(killable::is_interrupt(&blocked.unwrap_err()));
/// drop(writer);
/// ```
///
/// Reading and writing one stream from two threads through `&Interruptible<T>`, and `T`'s
/// methods through the deref:
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::TcpListener;
/// use std::sync::Arc;
/// use killable::io::Interruptible;
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let stream = Arc::new(Interruptible::connect_tcp(listener.local_addr()?)?);
/// let (mut echo, _) = listener.accept()?;
/// println!("connected to {}", stream.peer_addr()?); // TcpStream::peer_addr, through Deref
///
/// let s = stream.clone();
/// let reader = killable::spawn(move || {
///     let mut buf = [0u8; 5];
///     (&*s).read_exact(&mut buf)?; // Read for &Interruptible<TcpStream>
///     (&*s).read(&mut buf)          // blocks: nothing more is coming
/// });
/// (&*stream).write_all(b"hello")?; // Write for &Interruptible<TcpStream>, on this thread
/// let mut got = [0u8; 5];
/// echo.read_exact(&mut got)?;
/// echo.write_all(&got)?;
/// std::thread::sleep(std::time::Duration::from_millis(20));
/// reader.interrupt();
/// assert!(killable::is_interrupt(&reader.join().unwrap().unwrap_err()));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Interruptible<T> {
    inner: T,
}

impl<T> Interruptible<T> {
    /// Wraps `inner`.
    ///
    /// # Examples
    ///
    /// ```
    /// let (reader, _writer) = std::io::pipe().unwrap();
    /// let reader = killable::io::Interruptible::new(reader);
    /// ```
    pub fn new(inner: T) -> Interruptible<T> {
        Interruptible { inner }
    }

    /// The wrapped value.
    ///
    /// # Examples
    ///
    /// ```
    /// let listener = killable::io::Interruptible::new(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    /// println!("listening on {}", listener.get_ref().local_addr().unwrap());
    /// ```
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The wrapped value, mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut socket = killable::io::Interruptible::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
    /// socket.get_mut().set_broadcast(false).unwrap();
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Unwraps the value.
    ///
    /// # Examples
    ///
    /// ```
    /// let (reader, _writer) = std::io::pipe().unwrap();
    /// let plain: std::io::PipeReader = killable::io::Interruptible::new(reader).into_inner();
    /// ```
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsFd + From<OwnedFd>> Interruptible<T> {
    /// A new handle to the same open file description (`fcntl(F_DUPFD_CLOEXEC)`, as std's
    /// `try_clone`s do), wrapped too: both are killable. For sockets, files, pipes and any
    /// `T: AsFd + From<OwnedFd>`; through the deref, `try_clone` would be `T`'s own and return a
    /// bare `T` whose reads no interrupt breaks.
    ///
    /// # Errors
    ///
    /// The OS error of `fcntl(F_DUPFD_CLOEXEC)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// let (reader, mut writer) = std::io::pipe().unwrap();
    /// let reader = killable::io::Interruptible::new(reader);
    /// let clone: killable::io::Interruptible<std::io::PipeReader> = reader.try_clone().unwrap();
    /// let h = killable::spawn(move || { let mut clone = clone; clone.read(&mut [0u8; 8]) });
    /// std::thread::sleep(std::time::Duration::from_millis(20));
    /// h.interrupt(); // the clone is killable too
    /// assert!(killable::is_interrupt(&h.join().unwrap().unwrap_err()));
    /// writer.write_all(b"x").unwrap();
    /// assert_eq!((&reader).read(&mut [0u8; 8]).unwrap(), 1); // the original still works
    /// ```
    ///
    /// A listener:
    ///
    /// ```
    /// let listener = killable::io::Interruptible::new(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    /// let other: killable::io::Interruptible<std::net::TcpListener> = listener.try_clone().unwrap();
    /// assert_eq!(other.local_addr().unwrap(), listener.local_addr().unwrap());
    /// ```
    pub fn try_clone(&self) -> io::Result<Interruptible<T>> {
        self.inner
            .as_fd()
            .try_clone_to_owned()
            .map(|fd| Interruptible::new(T::from(fd)))
    }
}

impl<T: AsFd> AsFd for Interruptible<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl<T: AsFd> AsRawFd for Interruptible<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_fd().as_raw_fd()
    }
}

/// `T`'s own methods through the wrapper: `stream.peer_addr()`. They are not killable (see the
/// type's docs).
///
/// One name is shadowed on purpose: `wrapped.try_clone()` is
/// [`Interruptible::try_clone`], which returns a wrapped, killable clone, for every descriptor
/// owner (`T: AsFd + From<OwnedFd>`). A `T` with its own `try_clone` that is not one would reach
/// `T::try_clone` through this deref and get a bare, non-killable `T`: wrap the clone again
/// (`Interruptible::new(wrapped.get_ref().try_clone()?)`).
///
/// # Examples
///
/// ```
/// let listener = killable::io::Interruptible::new(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
/// let addr = listener.local_addr().unwrap(); // TcpListener::local_addr
/// assert!(addr.ip().is_loopback());
/// ```
impl<T> Deref for Interruptible<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner
    }
}

/// The wrapped value, as [`get_ref`](Interruptible::get_ref).
///
/// # Examples
///
/// ```
/// fn port(socket: &impl AsRef<std::net::UdpSocket>) -> u16 {
///     socket.as_ref().local_addr().unwrap().port()
/// }
/// let socket = killable::io::Interruptible::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
/// assert_ne!(port(&socket), 0);
/// ```
impl<T> AsRef<T> for Interruptible<T> {
    fn as_ref(&self) -> &T {
        &self.inner
    }
}
