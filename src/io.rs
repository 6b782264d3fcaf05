//! Interruptible I/O on any file descriptor: [`Interruptible<T>`] and [`poll`].
//!
//! Every call here goes through killable's race-free system call: an interrupt (or a passed
//! [`timeout`](crate::timeout)) makes it fail at once with an error that
//! [`is_interrupt`](crate::is_interrupt) recognises, whether it was blocked or about to block.
//! A call that completed before the interrupt keeps its result, so no data is lost.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::interrupt::with_current;
use crate::syscall::{self, Fail, call, call_once};

/// Wraps a file descriptor owner (a pipe, a socket, a file, a child's stdout...) so that its
/// reads and writes are killable: an interrupt breaks them.
///
/// `Read` and `Write` are implemented for `Interruptible<T>` and `&Interruptible<T>` for every
/// `T: AsFd`, vectored calls included; they issue `read(2)`/`write(2)` on the descriptor
/// directly, so a type with its own userspace buffer (std's `Stdin`) should not be read both
/// ways. Listeners gain an interruptible `accept`, `UdpSocket` gains `recv_from`/`send_to`, and
/// `connect` creates an interruptible stream.
///
/// An interrupt is reported as an error whose kind is **not** [`io::ErrorKind::Interrupted`], so
/// `read_exact`, `read_line`, `write_all` and `io::copy` stop instead of retrying.
///
/// # Examples
///
/// ```
/// use std::io::{BufRead, BufReader, Write};
///
/// let (reader, mut writer) = std::io::pipe().unwrap();
/// writer.write_all(b"hello\n").unwrap();
/// let h = killable::spawn(move || {
///     let mut lines = BufReader::new(killable::io::Interruptible::new(reader));
///     let mut first = String::new();
///     lines.read_line(&mut first).unwrap();
///     let mut second = String::new();
///     let blocked = lines.read_line(&mut second); // nothing more is coming
///     (first, blocked)
/// });
/// std::thread::sleep(std::time::Duration::from_millis(20));
/// h.interrupt();
/// let (first, blocked) = h.join().unwrap();
/// assert_eq!(first, "hello\n");
/// assert!(killable::is_interrupt(&blocked.unwrap_err()));
/// drop(writer);
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

#[inline(always)]
fn raw<T: AsFd>(t: &T) -> libc::c_long {
    t.as_fd().as_raw_fd() as libc::c_long
}

#[inline(always)]
fn len_of(r: libc::c_long) -> usize {
    r as usize
}

#[inline(always)]
fn sys_read(fd: libc::c_long, buf: &mut [u8]) -> io::Result<usize> {
    let len = buf.len().min(isize::MAX as usize);
    Ok(len_of(call(
        libc::SYS_read,
        [
            fd,
            buf.as_mut_ptr() as libc::c_long,
            len as libc::c_long,
            0,
            0,
            0,
        ],
    )?))
}

#[inline(always)]
fn sys_readv(fd: libc::c_long, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
    // IoSliceMut is ABI-compatible with `struct iovec` on Unix.
    let n = bufs.len().min(libc::UIO_MAXIOV as usize);
    Ok(len_of(call(
        libc::SYS_readv,
        [
            fd,
            bufs.as_mut_ptr() as libc::c_long,
            n as libc::c_long,
            0,
            0,
            0,
        ],
    )?))
}

#[inline(always)]
fn sys_write(fd: libc::c_long, buf: &[u8]) -> io::Result<usize> {
    let len = buf.len().min(isize::MAX as usize);
    Ok(len_of(call(
        libc::SYS_write,
        [
            fd,
            buf.as_ptr() as libc::c_long,
            len as libc::c_long,
            0,
            0,
            0,
        ],
    )?))
}

#[inline(always)]
fn sys_writev(fd: libc::c_long, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // IoSlice is ABI-compatible with `struct iovec` on Unix.
    let n = bufs.len().min(libc::UIO_MAXIOV as usize);
    Ok(len_of(call(
        libc::SYS_writev,
        [
            fd,
            bufs.as_ptr() as libc::c_long,
            n as libc::c_long,
            0,
            0,
            0,
        ],
    )?))
}

macro_rules! read_write_impls {
    ($($ty:ty),*) => {$(
        impl<T: AsFd> Read for $ty {
            #[inline]
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                sys_read(raw(&self.inner), buf)
            }
            #[inline]
            fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
                sys_readv(raw(&self.inner), bufs)
            }
        }

        impl<T: AsFd> Write for $ty {
            #[inline]
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                sys_write(raw(&self.inner), buf)
            }
            #[inline]
            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                sys_writev(raw(&self.inner), bufs)
            }
            /// Writes go straight to the descriptor: there is nothing to flush.
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
    )*};
}

read_write_impls!(Interruptible<T>, &Interruptible<T>);

// ---- socket addresses ----------------------------------------------------------------------

fn to_raw_addr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn from_raw_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> io::Result<SocketAddr> {
    let len = len as usize;
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and it is long enough.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((storage as *const libc::sockaddr_storage).cast()) };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((storage as *const libc::sockaddr_storage).cast()) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected socket address family",
        )),
    }
}

/// `accept4(2)` with `SOCK_CLOEXEC`, killable.
fn accept_fd(fd: libc::c_long) -> io::Result<(OwnedFd, libc::sockaddr_storage, libc::socklen_t)> {
    // SAFETY: sockaddr_storage is plain data.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let r = call(
        libc::SYS_accept4,
        [
            fd,
            (&raw mut storage) as libc::c_long,
            (&raw mut len) as libc::c_long,
            libc::SOCK_CLOEXEC as libc::c_long,
            0,
            0,
        ],
    )?;
    // SAFETY: accept4 returned a new descriptor that nobody else owns.
    Ok((unsafe { OwnedFd::from_raw_fd(r as RawFd) }, storage, len))
}

impl Interruptible<TcpListener> {
    /// Accepts a connection, like [`TcpListener::accept`], killable. The new stream is wrapped
    /// too, and is close-on-exec.
    ///
    /// # Errors
    ///
    /// The OS error of `accept4(2)`, or an interrupt (see [`is_interrupt`](crate::is_interrupt)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::TcpListener;
    /// let listener = killable::io::Interruptible::new(TcpListener::bind("127.0.0.1:0").unwrap());
    /// let h = killable::spawn(move || listener.accept().map(|_| ()));
    /// std::thread::sleep(std::time::Duration::from_millis(20));
    /// h.interrupt();
    /// assert!(killable::is_interrupt(&h.join().unwrap().unwrap_err()));
    /// ```
    #[doc(alias = "accept4")]
    pub fn accept(&self) -> io::Result<(Interruptible<TcpStream>, SocketAddr)> {
        let (fd, storage, len) = accept_fd(raw(&self.inner))?;
        Ok((
            Interruptible::new(TcpStream::from(fd)),
            from_raw_addr(&storage, len)?,
        ))
    }
}

impl Interruptible<UnixListener> {
    /// Accepts a connection, like [`UnixListener::accept`], killable.
    ///
    /// # Errors
    ///
    /// The OS error of `accept4(2)`, or an interrupt.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::unix::net::{UnixListener, UnixStream};
    /// let path = std::env::temp_dir().join(format!("killable-doc-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let listener = killable::io::Interruptible::new(UnixListener::bind(&path).unwrap());
    /// let _client = UnixStream::connect(&path).unwrap();
    /// let (_stream, _peer) = listener.accept().unwrap();
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    #[doc(alias = "accept4")]
    pub fn accept(
        &self,
    ) -> io::Result<(Interruptible<UnixStream>, std::os::unix::net::SocketAddr)> {
        let (fd, _, _) = accept_fd(raw(&self.inner))?;
        let stream = UnixStream::from(fd);
        let addr = stream.peer_addr()?;
        Ok((Interruptible::new(stream), addr))
    }
}

/// Connects a new socket of `domain` to the raw address, killable, leaving no socket behind on
/// failure.
///
/// If the connect is interrupted, the socket is closed (the half-made connection is abandoned
/// and the caller gets the interrupt). If a signal that was not a stop request breaks it, the
/// kernel may go on connecting in the background: connecting again tells (`EISCONN`: done,
/// `EALREADY`: wait for writability, killable, and read `SO_ERROR`).
fn connect_raw(
    domain: libc::c_int,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that only we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let args = [
        fd.as_raw_fd() as libc::c_long,
        addr as libc::c_long,
        len as libc::c_long,
        0,
        0,
        0,
    ];
    // After a stray signal we cannot tell whether the kernel had started connecting (the stub
    // may have returned before entering it), so we ask it again: connect once more, and
    // `EISCONN` means done, `EALREADY` means in progress.
    loop {
        let r = with_current(|inner| syscall::call_once(&inner.ctl, libc::SYS_connect, args));
        match r {
            Ok(_) | Err(Fail::Os(libc::EISCONN)) => return Ok(fd),
            Err(Fail::Os(libc::EINTR)) => continue,
            Err(Fail::Os(libc::EALREADY | libc::EINPROGRESS)) => {
                let mut fds = [PollFd::new(fd.as_fd(), Interest::WRITABLE)];
                poll(&mut fds, None)?;
                let mut err: libc::c_int = 0;
                let mut elen = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                // SAFETY: getsockopt writes at most `elen` bytes into `err`.
                let r = unsafe {
                    libc::getsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_ERROR,
                        (&raw mut err).cast(),
                        &mut elen,
                    )
                };
                if r != 0 {
                    return Err(io::Error::last_os_error());
                }
                if err != 0 {
                    return Err(io::Error::from_raw_os_error(err));
                }
                // Writable with no pending error: connected (connect again says EISCONN).
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl Interruptible<TcpStream> {
    /// Opens a TCP connection, like [`TcpStream::connect`], killable: an interrupt during the
    /// handshake closes the new socket and returns the interrupt error, so no half-open
    /// connection is left behind. Each address `addr` resolves to is tried in turn.
    ///
    /// Name resolution (`getaddrinfo`) is not interruptible; pass a [`SocketAddr`] to avoid it.
    ///
    /// # Errors
    ///
    /// The last address's OS error, an interrupt, or `InvalidInput` if `addr` resolves to no
    /// address.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// use std::net::TcpListener;
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let addr = listener.local_addr().unwrap();
    /// let mut stream = killable::io::Interruptible::<std::net::TcpStream>::connect(addr).unwrap();
    /// stream.write_all(b"hi").unwrap();
    /// ```
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<Interruptible<TcpStream>> {
        let mut last = None;
        for a in addr.to_socket_addrs()? {
            let (storage, len) = to_raw_addr(&a);
            let domain = if a.is_ipv4() {
                libc::AF_INET
            } else {
                libc::AF_INET6
            };
            match connect_raw(domain, (&raw const storage).cast(), len) {
                Ok(fd) => return Ok(Interruptible::new(TcpStream::from(fd))),
                Err(e) if crate::is_interrupt(&e) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "could not resolve to any addresses",
            )
        }))
    }
}

impl Interruptible<UnixStream> {
    /// Connects to the Unix socket at `path`, killable, like [`UnixStream::connect`]; an
    /// interrupt closes the new socket.
    ///
    /// # Errors
    ///
    /// The OS error of `connect(2)`, an interrupt, or `InvalidInput` for a path that is too long
    /// or contains a NUL byte.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::unix::net::{UnixListener, UnixStream};
    /// let path = std::env::temp_dir().join(format!("killable-doc-c-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let _listener = UnixListener::bind(&path).unwrap();
    /// let _stream = killable::io::Interruptible::<UnixStream>::connect(&path).unwrap();
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<Interruptible<UnixStream>> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_ref().as_os_str().as_bytes();
        // SAFETY: sockaddr_un is plain data.
        let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        if bytes.len() >= sun.sun_path.len() || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "unix socket path too long or contains a NUL byte",
            ));
        }
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in sun.sun_path.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
        let fd = connect_raw(
            libc::AF_UNIX,
            (&raw const sun).cast(),
            len as libc::socklen_t,
        )?;
        Ok(Interruptible::new(UnixStream::from(fd)))
    }
}

impl Interruptible<UdpSocket> {
    /// Receives a datagram and its sender, like [`UdpSocket::recv_from`], killable.
    ///
    /// # Errors
    ///
    /// The OS error of `recvfrom(2)`, or an interrupt.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::UdpSocket;
    /// let a = killable::io::Interruptible::new(UdpSocket::bind("127.0.0.1:0").unwrap());
    /// let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    /// b.send_to(b"ping", a.get_ref().local_addr().unwrap()).unwrap();
    /// let mut buf = [0u8; 8];
    /// let (n, from) = a.recv_from(&mut buf).unwrap();
    /// assert_eq!((&buf[..n], from), (&b"ping"[..], b.local_addr().unwrap()));
    /// ```
    #[doc(alias = "recvfrom")]
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        // SAFETY: sockaddr_storage is plain data.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let n = call(
            libc::SYS_recvfrom,
            [
                raw(&self.inner),
                buf.as_mut_ptr() as libc::c_long,
                buf.len() as libc::c_long,
                0,
                (&raw mut storage) as libc::c_long,
                (&raw mut len) as libc::c_long,
            ],
        )?;
        Ok((len_of(n), from_raw_addr(&storage, len)?))
    }

    /// Sends a datagram to `addr`, like [`UdpSocket::send_to`], killable.
    ///
    /// # Errors
    ///
    /// The OS error of `sendto(2)`, an interrupt, or `InvalidInput` if `addr` resolves to no
    /// address.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::UdpSocket;
    /// let a = killable::io::Interruptible::new(UdpSocket::bind("127.0.0.1:0").unwrap());
    /// let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    /// assert_eq!(a.send_to(b"ping", b.local_addr().unwrap()).unwrap(), 4);
    /// ```
    #[doc(alias = "sendto")]
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let a = addr.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no addresses to send data to")
        })?;
        let (storage, len) = to_raw_addr(&a);
        let n = call(
            libc::SYS_sendto,
            [
                raw(&self.inner),
                buf.as_ptr() as libc::c_long,
                buf.len() as libc::c_long,
                0,
                (&raw const storage) as libc::c_long,
                len as libc::c_long,
            ],
        )?;
        Ok(len_of(n))
    }

    /// Receives a datagram on a connected socket, like [`UdpSocket::recv`], killable.
    ///
    /// # Errors
    ///
    /// The OS error of `recv(2)`, or an interrupt.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::UdpSocket;
    /// let a = killable::io::Interruptible::new(UdpSocket::bind("127.0.0.1:0").unwrap());
    /// let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    /// a.get_ref().connect(b.local_addr().unwrap()).unwrap();
    /// b.send_to(b"pong", a.get_ref().local_addr().unwrap()).unwrap();
    /// let mut buf = [0u8; 8];
    /// assert_eq!(a.recv(&mut buf).unwrap(), 4);
    /// ```
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        sys_read(raw(&self.inner), buf)
    }

    /// Sends a datagram on a connected socket, like [`UdpSocket::send`], killable.
    ///
    /// # Errors
    ///
    /// The OS error of `send(2)`, or an interrupt.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::UdpSocket;
    /// let a = killable::io::Interruptible::new(UdpSocket::bind("127.0.0.1:0").unwrap());
    /// let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    /// a.get_ref().connect(b.local_addr().unwrap()).unwrap();
    /// assert_eq!(a.send(b"hi").unwrap(), 2);
    /// ```
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        sys_write(raw(&self.inner), buf)
    }
}

// ---- poll ----------------------------------------------------------------------------------

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
