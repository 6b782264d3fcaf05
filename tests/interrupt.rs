//! Every killable call, interrupted while blocked and before it starts; deferral, clearing,
//! callbacks, timeouts; std's retrying loops over `Interruptible`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use killable::JoinHandle;
use killable::io::{Interest, Interruptible, PollFd};
use testkit::wait_blocked;

const HANG_GUARD: Duration = Duration::from_secs(30);

/// Spawns `f` on a killable thread, waits until it is blocked in a system call
/// (`testkit::wait_blocked`), interrupts it and returns what it returned. Fails instead of
/// hanging.
fn interrupt_while_blocked<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let h = killable::spawn(f);
    wait_blocked(h.thread());
    h.interrupt();
    join_guarded(h)
}

fn join_guarded<T>(h: JoinHandle<T>) -> T {
    match h.join_timeout(HANG_GUARD) {
        Ok(r) => r.expect("thread panicked"),
        Err(_) => panic!("the interrupted thread did not return within {HANG_GUARD:?}"),
    }
}

/// Runs `f` with the calling thread already interrupted; clears the flag afterwards.
fn interrupted_before<T>(f: impl FnOnce() -> T) -> T {
    killable::current().interrupt();
    let r = f();
    assert!(
        killable::clear_interrupt(),
        "the flag stays set until cleared"
    );
    r
}

fn assert_interrupt<T: std::fmt::Debug>(r: io::Result<T>) {
    let e = r.expect_err("the call should have been interrupted");
    assert!(killable::is_interrupt(&e), "not an interrupt: {e:?}");
    assert_ne!(e.kind(), io::ErrorKind::Interrupted);
}

#[test]
fn pipe_read_blocked_and_before() {
    let (r, w) = io::pipe().unwrap();
    let r = Arc::new(Interruptible::new(r));
    let r2 = r.clone();
    assert_interrupt(interrupt_while_blocked(move || (&*r2).read(&mut [0u8; 8])));
    assert_interrupt(interrupted_before(|| (&*r).read(&mut [0u8; 8])));
    let mut space = [0u8; 4];
    let mut bufs = [io::IoSliceMut::new(&mut space[..])];
    assert_interrupt(interrupted_before(|| (&*r).read_vectored(&mut bufs)));
    drop(w);
}

#[test]
fn pipe_write_blocked_on_a_full_pipe() {
    let (r, w) = io::pipe().unwrap();
    let w = Interruptible::new(w);
    let result = interrupt_while_blocked(move || {
        let mut w = w;
        let chunk = vec![7u8; 1 << 16];
        loop {
            w.write_all(&chunk)?;
            if chunk.is_empty() {
                return Ok::<(), io::Error>(());
            }
        }
    });
    assert_interrupt(result);
    let v = [io::IoSlice::new(b"x")];
    let (_r2, w2) = io::pipe().unwrap();
    assert_interrupt(interrupted_before(|| {
        (&Interruptible::new(w2)).write_vectored(&v)
    }));
    drop(r);
}

#[test]
fn tcp_accept_blocked_and_before() {
    let l = Arc::new(Interruptible::new(
        TcpListener::bind("127.0.0.1:0").unwrap(),
    ));
    let l2 = l.clone();
    assert_interrupt(interrupt_while_blocked(move || l2.accept().map(drop)));
    assert_interrupt(interrupted_before(|| l.accept().map(drop)));
    // Still usable afterwards.
    let addr = l.get_ref().local_addr().unwrap();
    let client = std::net::TcpStream::connect(addr).unwrap();
    let (mut s, peer) = l.accept().unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    (&client).write_all(b"ok").unwrap();
    let mut buf = [0u8; 2];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ok");
}

#[test]
fn unix_accept_blocked_and_before() {
    let dir = std::env::temp_dir().join(format!("killable-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("accept.sock");
    let _ = std::fs::remove_file(&path);
    let l = Arc::new(Interruptible::new(UnixListener::bind(&path).unwrap()));
    let l2 = l.clone();
    assert_interrupt(interrupt_while_blocked(move || l2.accept().map(drop)));
    assert_interrupt(interrupted_before(|| l.accept().map(drop)));
    let c = Interruptible::<std::os::unix::net::UnixStream>::connect(&path).unwrap();
    let (mut s, _) = l.accept().unwrap();
    (&c).write_all(b"u").unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"u");
    assert_interrupt(interrupted_before(|| {
        Interruptible::<std::os::unix::net::UnixStream>::connect(&path)
    }));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tcp_connect_blocked_and_before() {
    // A listener with a backlog of 0 that never accepts: once its queue is full the kernel
    // drops further SYNs, and connect() blocks retransmitting them.
    // SAFETY: plain socket calls on a descriptor we own.
    let (fd, addr) = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as _;
        sin.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(libc::bind(fd, (&raw const sin).cast(), len), 0);
        assert_eq!(libc::listen(fd, 0), 0);
        let mut out: libc::sockaddr_in = std::mem::zeroed();
        let mut olen = len;
        libc::getsockname(fd, (&raw mut out).cast(), &mut olen);
        (
            fd,
            std::net::SocketAddr::from(([127, 0, 0, 1], u16::from_be(out.sin_port))),
        )
    };
    let r = interrupt_while_blocked(move || {
        let mut kept = Vec::new();
        for _ in 0..64 {
            kept.push(Interruptible::<std::net::TcpStream>::connect(addr)?);
        }
        Ok::<_, io::Error>(kept.len())
    });
    assert_interrupt(r);
    assert_interrupt(interrupted_before(|| {
        Interruptible::<std::net::TcpStream>::connect(addr)
    }));
    // SAFETY: closing the listener we created.
    unsafe { libc::close(fd) };
}

#[test]
fn udp_recv_from_blocked_and_send_to_before() {
    let s = Arc::new(Interruptible::new(UdpSocket::bind("127.0.0.1:0").unwrap()));
    let s2 = s.clone();
    assert_interrupt(interrupt_while_blocked(move || {
        s2.recv_from(&mut [0u8; 16])
    }));
    let to = s.get_ref().local_addr().unwrap();
    assert_interrupt(interrupted_before(|| s.send_to(b"x", to)));
    assert_interrupt(interrupted_before(|| s.recv(&mut [0u8; 1])));
    s.send_to(b"dgram", to).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = s.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"dgram"[..], to));
}

#[test]
fn poll_on_several_fds_blocked_and_before() {
    let (r1, _w1) = io::pipe().unwrap();
    let (r2, _w2) = io::pipe().unwrap();
    let r = interrupt_while_blocked(move || {
        let mut fds = [
            PollFd::new(r1.as_fd(), Interest::READABLE),
            PollFd::new(r2.as_fd(), Interest::READABLE),
        ];
        killable::io::poll(&mut fds, None)
    });
    assert_interrupt(r);
    let (r3, _w3) = io::pipe().unwrap();
    let mut fds = [PollFd::new(r3.as_fd(), Interest::READABLE)];
    assert_interrupt(interrupted_before(|| killable::io::poll(&mut fds, None)));
    assert_eq!(
        killable::io::poll(&mut fds, Some(Duration::from_millis(1))).unwrap(),
        0
    );
}

#[test]
fn sleep_park_condvar_blocked_and_before() {
    assert!(interrupt_while_blocked(|| killable::sleep(Duration::from_secs(3600))).is_err());
    assert!(interrupted_before(|| killable::sleep(Duration::from_secs(3600))).is_err());
    assert!(interrupt_while_blocked(killable::park).is_err());
    assert!(interrupted_before(killable::park).is_err());
    let pair = Arc::new((Mutex::new(0u32), killable::sync::Condvar::new()));
    let p = pair.clone();
    let r = interrupt_while_blocked(move || p.1.wait_while(&p.0, |v| *v == 0).map(|g| *g.unwrap()));
    assert!(r.is_err());
    assert!(
        interrupted_before(|| pair.1.wait_while(&pair.0, |v| *v == 0).map(|g| *g.unwrap()))
            .is_err()
    );
    // And a plain notification still works.
    let p = pair.clone();
    let h = killable::spawn(move || p.1.wait_while(&p.0, |v| *v == 0).map(|g| *g.unwrap()));
    *pair.0.lock().unwrap() = 9;
    pair.1.notify_all();
    assert_eq!(join_guarded(h).unwrap(), 9);
}

#[test]
fn park_keeps_an_unpark_that_raced_an_interrupt() {
    killable::current().unpark();
    assert!(killable::park().is_ok(), "token consumed");
    killable::current().unpark();
    assert!(interrupted_before(killable::park).is_err());
    assert!(
        killable::park().is_ok(),
        "the token was kept for the next park"
    );
}

#[test]
fn waiting_for_a_thread_keeps_its_handle() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let worker = Arc::new(killable::spawn(move || {
        rx.recv().unwrap();
        41 + 1
    }));
    let w = worker.clone();
    let r = interrupt_while_blocked(move || w.wait());
    assert!(r.is_err());
    assert!(interrupted_before(|| worker.wait()).is_err());
    tx.send(()).unwrap();
    worker.wait().unwrap();
    let worker = Arc::try_unwrap(worker).unwrap();
    assert_eq!(worker.join().unwrap(), 42);
}

#[test]
fn waiting_for_a_child_process() {
    let child = std::process::Command::new("sleep")
        .arg("3600")
        .spawn()
        .unwrap();
    let child = Arc::new(Mutex::new(child));
    let c = child.clone();
    let r = interrupt_while_blocked(move || killable::wait_child(&mut c.lock().unwrap()));
    assert_interrupt(r);
    let mut child = child.lock().unwrap();
    assert!(
        child.try_wait().unwrap().is_none(),
        "the child was not reaped by the interrupted wait"
    );
    child.kill().unwrap();
    let status = killable::wait_child(&mut child).unwrap();
    assert!(!status.success());
    drop(child);
    let mut other = std::process::Command::new("sleep")
        .arg("3600")
        .spawn()
        .unwrap();
    assert_interrupt(interrupted_before(|| killable::wait_child(&mut other)));
    other.kill().unwrap();
    other.wait().unwrap();
}

#[test]
fn std_loops_stop_instead_of_spinning() {
    let (r, mut w) = io::pipe().unwrap();
    w.write_all(b"partial line without newline").unwrap();
    let res = interrupt_while_blocked(move || {
        let mut lines = BufReader::new(Interruptible::new(r));
        let mut s = String::new();
        let line = lines.read_line(&mut s);
        let mut exact = [0u8; 4];
        let exact = lines.read_exact(&mut exact);
        let copied = io::copy(&mut lines, &mut io::sink());
        (line, exact, copied)
    });
    assert_interrupt(res.0);
    assert_interrupt(res.1);
    assert_interrupt(res.2);
    drop(w);
}

#[test]
fn data_that_arrived_before_the_interrupt_is_returned() {
    // The writer sends one byte and interrupts the reader at once, many times. Whatever the
    // interleaving, a read either returns the byte or is interrupted before taking it: after
    // clearing the flag, every byte is eventually read, none lost, none duplicated.
    const N: u32 = 500;
    let (r, w) = io::pipe().unwrap();
    let reader = killable::spawn(move || {
        let mut r = Interruptible::new(r);
        let mut got = Vec::new();
        let mut interrupts = 0u32;
        while got.len() < N as usize {
            let mut b = [0u8; 1];
            match r.read(&mut b) {
                Ok(1) => got.push(b[0]),
                Ok(_) => panic!("eof"),
                Err(e) if killable::is_interrupt(&e) => {
                    interrupts += 1;
                    killable::clear_interrupt();
                }
                Err(e) => panic!("{e}"),
            }
        }
        (got, interrupts)
    });
    let mut w = w;
    for i in 0..N {
        w.write_all(&[(i % 251) as u8]).unwrap();
        reader.interrupt();
    }
    let (got, interrupts) = join_guarded(reader);
    let expected: Vec<u8> = (0..N).map(|i| (i % 251) as u8).collect();
    assert_eq!(got, expected);
    assert!(
        interrupts > 0,
        "no read was ever interrupted: the test exercised nothing"
    );
}

#[test]
fn clearing_and_the_sticky_flag() {
    let me = killable::current();
    assert!(!me.is_interrupted());
    me.interrupt();
    me.interrupt(); // idempotent
    assert!(me.is_interrupted() && killable::is_interrupted());
    assert!(killable::check().is_err());
    assert!(killable::check().is_err(), "sticky");
    assert!(killable::clear_interrupt());
    assert!(killable::check().is_ok());
}

#[test]
fn interrupting_a_finished_thread_is_harmless() {
    let h = killable::spawn(|| ());
    let t = h.thread().clone();
    h.join().unwrap();
    t.interrupt();
    assert!(t.is_interrupted());
}

#[test]
fn deferral_nests_and_takes_effect_after_the_last_guard() {
    let h = killable::spawn(|| {
        let outer = killable::defer_interrupts();
        let inner = killable::defer_interrupts();
        // Wait (killable) until interrupted; deferral keeps the sleep going to its end.
        while !killable::is_interrupted() {
            killable::sleep(Duration::from_millis(1)).expect("deferred: not broken");
        }
        let slept = killable::sleep(Duration::from_millis(5)).is_ok();
        drop(inner);
        let still_deferred = killable::check().is_ok();
        drop(outer);
        let after = killable::sleep(Duration::from_secs(3600)).is_err();
        (slept, still_deferred, after)
    });
    h.interrupt();
    assert_eq!(join_guarded(h), (true, true, true));
}

#[test]
fn deferral_keeps_a_blocked_call_going() {
    let (r, mut w) = io::pipe().unwrap();
    let h = killable::spawn(move || {
        let _g = killable::defer_interrupts();
        Interruptible::new(r).read(&mut [0u8; 4])
    });
    wait_blocked(h.thread());
    h.interrupt();
    // The interrupt's signal breaks the read in the kernel; under deferral it is retried.
    std::thread::sleep(Duration::from_millis(50));
    assert!(!h.is_finished());
    w.write_all(b"abc").unwrap();
    assert_eq!(join_guarded(h).unwrap(), 3);
}

#[test]
fn callbacks_run_on_the_interrupter_and_stop_after_drop() {
    let runs = Arc::new(AtomicUsize::new(0));
    let ran_on = Arc::new(Mutex::new(None));
    let (r1, r2) = (runs.clone(), ran_on.clone());
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (back_tx, back_rx) = std::sync::mpsc::channel::<()>();
    let h = killable::spawn(move || {
        let cb = killable::on_interrupt(move || {
            r1.fetch_add(1, Ordering::SeqCst);
            *r2.lock().unwrap() = Some(killable::current().id());
        });
        back_tx.send(()).unwrap();
        rx.recv().unwrap(); // interrupted once meanwhile
        killable::clear_interrupt();
        drop(cb);
        back_tx.send(()).unwrap();
        rx.recv().unwrap(); // interrupted again: the callback is gone
    });
    back_rx.recv().unwrap();
    h.interrupt();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(*ran_on.lock().unwrap(), Some(killable::current().id()));
    tx.send(()).unwrap();
    back_rx.recv().unwrap();
    h.interrupt();
    tx.send(()).unwrap();
    join_guarded(h);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn callback_registered_after_the_interrupt_runs_at_once() {
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    interrupted_before(|| {
        let _cb = killable::on_interrupt(move || r.store(true, Ordering::SeqCst));
    });
    assert!(ran.load(Ordering::SeqCst));
}

#[test]
fn timeouts_break_calls_and_nest() {
    let (r, _w) = io::pipe().unwrap();
    let mut r = Interruptible::new(r);
    let e = killable::timeout(Duration::from_millis(20), || r.read(&mut [0u8; 1])).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    // A timeout is not an interrupt: a "we are shutting down" check must not catch deadlines.
    assert!(killable::is_timeout(&e));
    assert!(!killable::is_interrupt(&e));
    // Outside the timeout, calls are not affected.
    assert!(killable::check().is_ok());
    // The earliest deadline in force applies, and the outer one is restored after the inner.
    let (inner, outer) = killable::timeout(Duration::from_millis(100), || {
        let inner = killable::timeout(Duration::from_secs(3600), || {
            killable::sleep(Duration::from_secs(3600))
        });
        let outer = killable::sleep(Duration::from_secs(3600));
        (inner, outer)
    });
    assert!(inner.unwrap_err().is_timeout());
    assert!(outer.unwrap_err().is_timeout());
    let fine = killable::timeout(Duration::from_secs(3600), || {
        killable::sleep(Duration::from_millis(1))
    });
    assert!(fine.is_ok());
    // An inner timeout that ends in time leaves the outer one in force.
    let r = killable::timeout(Duration::from_millis(30), || {
        killable::timeout(Duration::from_millis(1), || ()); // ends immediately
        killable::sleep(Duration::from_secs(3600))
    });
    assert!(r.unwrap_err().is_timeout());
    // An interrupt inside a timeout is an interrupt, not a timeout.
    let r = interrupted_before(|| killable::timeout(Duration::from_secs(3600), killable::check));
    assert!(!r.unwrap_err().is_timeout());
}

#[test]
fn timeouts_work_in_a_std_thread() {
    let t = std::thread::spawn(|| {
        killable::timeout(Duration::from_millis(10), || {
            killable::sleep(Duration::from_secs(3600))
        })
    });
    assert!(t.join().unwrap().unwrap_err().is_timeout());
}

#[test]
fn an_interrupted_error_is_never_errorkind_interrupted() {
    let e: io::Error = interrupted_before(killable::check).unwrap_err().into();
    assert_eq!(e.kind(), io::ErrorKind::Other);
    assert!(killable::is_interrupt(&e));
    assert!(!killable::is_interrupt(&io::Error::from(
        io::ErrorKind::Interrupted
    )));
    assert!(!killable::is_interrupt(&io::Error::other("other")));
}

#[test]
fn regression_deferral_does_not_break_calls_that_are_not_killable() {
    // An interrupt under deferral used to send the signal anyway, and a std read (which
    // returns EINTR to a handler without SA_RESTART) failed with ErrorKind::Interrupted.
    let (r, mut w) = io::pipe().unwrap();
    let h = killable::spawn(move || {
        let _g = killable::defer_interrupts();
        let mut r = r;
        let mut b = [0u8; 2];
        // SAFETY: reading into a live buffer; a plain libc read, not killable's.
        let n = unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&r),
                b.as_mut_ptr().cast(),
                2,
            )
        };
        let err = (n < 0).then(io::Error::last_os_error);
        let _ = &mut r;
        (n, err.map(|e| e.kind()))
    });
    wait_blocked(h.thread());
    h.interrupt();
    std::thread::sleep(Duration::from_millis(50));
    assert!(!h.is_finished(), "the plain read was broken under deferral");
    w.write_all(b"ok").unwrap();
    assert_eq!(join_guarded(h), (2, None));
}

#[test]
fn regression_spawned_threads_unblock_killables_signal() {
    // A creator that blocks SIGUSR1 (say, for signalfd) used to make its threads impossible to
    // interrupt.
    let creator = std::thread::spawn(|| {
        // SAFETY: blocking a signal in this (std) thread's own mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, killable::signal());
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        let (r, _w) = io::pipe().unwrap();
        let h = killable::spawn(move || Interruptible::new(r).read(&mut [0u8; 1]));
        wait_blocked(h.thread());
        h.interrupt();
        join_guarded(h)
    });
    assert_interrupt(creator.join().unwrap());
}
