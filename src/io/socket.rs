//! Sockets: `accept` on listeners, `connect` for TCP and Unix streams, UDP datagrams, and the
//! conversions between std's socket addresses and the kernel's.

use std::io;
use std::net::{
    Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream, ToSocketAddrs, UdpSocket,
};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrLike, SockaddrStorage,
    UnixAddr, getsockopt, socket, sockopt,
};

use super::Interruptible;
use super::fd::{len_of, raw, sys_read, sys_write};
use super::poll::{Interest, PollFd, poll};
use crate::control::with_current;
use crate::syscall::{self, Fail, call};

// ---- socket addresses ----------------------------------------------------------------------

/// `addr` in the kernel's layout, with the exact length of its `sockaddr_in`/`sockaddr_in6`.
fn to_raw_addr(addr: SocketAddr) -> (SockaddrStorage, libc::socklen_t) {
    let len = match addr {
        SocketAddr::V4(_) => SockaddrIn::size(),
        SocketAddr::V6(_) => SockaddrIn6::size(),
    };
    (SockaddrStorage::from(addr), len)
}

/// Room for the kernel to write a peer's address into (`accept4`, `recvfrom`), with its size.
///
/// nix offers no empty `SockaddrStorage`; converting a std address yields one that is
/// initialised from end to end (nix zeroes it first), so no `unsafe` zeroing is needed here.
/// The kernel overwrites it; [`from_raw_addr`] trusts only the length the kernel returns.
fn addr_buffer() -> (SockaddrStorage, libc::socklen_t) {
    let storage = SockaddrStorage::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0));
    (
        storage,
        std::mem::size_of::<SockaddrStorage>() as libc::socklen_t,
    )
}

/// The address the kernel wrote into `storage`, `len` bytes of it, as std's type.
fn from_raw_addr(storage: &SockaddrStorage, len: libc::socklen_t) -> io::Result<SocketAddr> {
    if let Some(sin) = storage
        .as_sockaddr_in()
        .filter(|_| len >= SockaddrIn::size())
    {
        Ok(SocketAddr::from(*sin))
    } else if let Some(sin6) = storage
        .as_sockaddr_in6()
        .filter(|_| len >= SockaddrIn6::size())
    {
        Ok(SocketAddr::from(*sin6))
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected socket address family",
        ))
    }
}

// ---- accept --------------------------------------------------------------------------------

/// `accept4(2)` with `SOCK_CLOEXEC`, killable.
fn accept_fd(fd: libc::c_long) -> io::Result<(OwnedFd, SockaddrStorage, libc::socklen_t)> {
    let (mut storage, mut len) = addr_buffer();
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

// ---- connect -------------------------------------------------------------------------------

/// Connects a new socket of `family` to the raw address, killable, leaving no socket behind on
/// failure.
///
/// If the connect is interrupted, the socket is closed (the half-made connection is abandoned
/// and the caller gets the interrupt). If a signal that was not a stop request breaks it, the
/// kernel may go on connecting in the background: connecting again tells (`EISCONN`: done,
/// `EALREADY`: wait for writability, killable, and read `SO_ERROR`).
fn connect_raw(
    family: AddressFamily,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> io::Result<OwnedFd> {
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
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
                let err = getsockopt(&fd, sockopt::SocketError)?;
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
    ///
    /// [`Interruptible::connect_tcp`] is the same call without the type annotation.
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<Interruptible<TcpStream>> {
        let mut last = None;
        for a in addr.to_socket_addrs()? {
            let (storage, len) = to_raw_addr(a);
            let family = if a.is_ipv4() {
                AddressFamily::Inet
            } else {
                AddressFamily::Inet6
            };
            match connect_raw(family, storage.as_ptr(), len) {
                Ok(fd) => return Ok(Interruptible::new(TcpStream::from(fd))),
                // An interrupt or a passed timeout ends the attempts, as it ends every call.
                Err(e) if crate::errors::is_stop(&e) => return Err(e),
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
    ///
    /// [`Interruptible::connect_unix`] is the same call without the type annotation.
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<Interruptible<UnixStream>> {
        // nix refuses a path that does not fit `sun_path` with its NUL, or that contains one.
        let addr = UnixAddr::new(path.as_ref()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "unix socket path too long or contains a NUL byte",
            )
        })?;
        let fd = connect_raw(AddressFamily::Unix, addr.as_ptr().cast(), addr.len())?;
        Ok(Interruptible::new(UnixStream::from(fd)))
    }
}

impl Interruptible<TcpStream> {
    /// [`connect`](Interruptible::<TcpStream>::connect) under a name that needs no type
    /// annotation: `Interruptible::connect_tcp(addr)`.
    ///
    /// # Errors
    ///
    /// As [`connect`](Interruptible::<TcpStream>::connect).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// use killable::io::Interruptible;
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let mut stream = Interruptible::connect_tcp(listener.local_addr().unwrap()).unwrap();
    /// stream.write_all(b"hi").unwrap();
    /// ```
    pub fn connect_tcp<A: ToSocketAddrs>(addr: A) -> io::Result<Interruptible<TcpStream>> {
        Interruptible::<TcpStream>::connect(addr)
    }
}

impl Interruptible<UnixStream> {
    /// [`connect`](Interruptible::<UnixStream>::connect) under a name that needs no type
    /// annotation: `Interruptible::connect_unix(path)`.
    ///
    /// # Errors
    ///
    /// As [`connect`](Interruptible::<UnixStream>::connect).
    ///
    /// # Examples
    ///
    /// ```
    /// use killable::io::Interruptible;
    /// let path = std::env::temp_dir().join(format!("killable-doc-cu-{}.sock", std::process::id()));
    /// let _ = std::fs::remove_file(&path);
    /// let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    /// let stream = Interruptible::connect_unix(&path).unwrap();
    /// assert!(stream.peer_addr().is_ok());
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn connect_unix<P: AsRef<Path>>(path: P) -> io::Result<Interruptible<UnixStream>> {
        Interruptible::<UnixStream>::connect(path)
    }
}

// ---- datagrams -----------------------------------------------------------------------------

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
        let (mut storage, mut len) = addr_buffer();
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
        let (storage, len) = to_raw_addr(a);
        let n = call(
            libc::SYS_sendto,
            [
                raw(&self.inner),
                buf.as_ptr() as libc::c_long,
                buf.len() as libc::c_long,
                0,
                storage.as_ptr() as libc::c_long,
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
