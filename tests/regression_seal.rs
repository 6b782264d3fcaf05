//! Regression tests for sealing: what the seccomp filter reaches, what it must leave working,
//! and what a sealed thread's killable calls report.
//!
//! Every test that could hang (a blocking call the seal should break but might not) runs in a
//! child process with an `alarm` watchdog (`testkit::in_child`).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testkit::in_child;

const LIMIT: Duration = Duration::from_secs(20);

/// Runs `f` on a killable thread after sealing it (and clearing the interrupt the seal set), so
/// that `f` meets the filter with a clean interrupt flag; returns its result.
fn run_sealed<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let h = killable::spawn(move || {
        // A std channel waits in `futex`, which the seal leaves working.
        go_rx.recv().expect("the go message");
        killable::clear_interrupt();
        f()
    });
    h.thread().seal().expect("seccomp is available here");
    assert!(h.thread().is_sealed());
    go_tx.send(()).unwrap();
    match h.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// A child process that waits (bounded, in case a failing test leaves it behind) and does not
/// hold the test's output pipes, which `in_child` reads to the end.
fn sleeper() -> std::io::Result<std::process::Child> {
    std::process::Command::new("sleep")
        .arg("60")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

/// `read` through the i386 ABI (`int $0x80`, nr 3) into a buffer below 4 GiB; returns the raw
/// result (`-errno` on failure).
#[cfg(target_arch = "x86_64")]
fn int80_read(fd: RawFd, buf: *mut u8, len: usize) -> i32 {
    let r: i64;
    // SAFETY: the i386 `read` writes at most `len` bytes at `buf`, which the caller maps below
    // 4 GiB (the compat ABI sees 32-bit pointers). rbx cannot be named as an operand, so the
    // descriptor is swapped into it and back. r8-r11 are declared clobbered: kernels before 4.17
    // zeroed them on `int $0x80`.
    unsafe {
        core::arch::asm!(
            "xchg {fd}, rbx",
            "int 0x80",
            "xchg {fd}, rbx",
            fd = inout(reg) fd as i64 => _,
            inlateout("rax") 3i64 => r,
            in("rcx") buf as u64,
            in("rdx") len as u64,
            lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
            options(nostack),
        );
    }
    r as i32
}

/// A sealed thread's `read` through `int $0x80` on an empty pipe fails with `ECANCELED` instead
/// of blocking (the filter used to allow every call whose arch was not x86_64).
#[cfg(target_arch = "x86_64")] // aarch64 and riscv64 processes have one ABI
#[test]
fn regression_seal_denies_i386_int80_read() {
    in_child("regression_seal_denies_i386_int80_read", LIMIT, || {
        let (reader, _w) = std::io::pipe().unwrap();
        let fd = reader.as_raw_fd();
        let r = run_sealed(move || {
            // SAFETY: a fresh anonymous mapping below 2 GiB; unmapped below.
            let buf = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                    -1,
                    0,
                )
            };
            assert_ne!(buf, libc::MAP_FAILED);
            let n = int80_read(fd, buf.cast(), 16);
            // SAFETY: the mapping made above, no longer used.
            unsafe { libc::munmap(buf, 4096) };
            n
        });
        println!("int $0x80 read on a sealed thread returned {r}");
        assert_eq!(r, -libc::ECANCELED);
    });
}

/// A sealed thread's x32 system call (`nr | 0x40000000`) fails with `ECANCELED` (the filter used
/// to allow every number with the x32 bit; where the kernel has x32 enabled, an x32 `read`
/// blocked).
#[cfg(target_arch = "x86_64")] // elsewhere such numbers are merely out of range (ENOSYS)
#[test]
fn regression_seal_denies_x32_numbers() {
    in_child("regression_seal_denies_x32_numbers", LIMIT, || {
        let (r, _w) = std::io::pipe().unwrap();
        let fd = r.as_raw_fd();
        let e = run_sealed(move || {
            let mut b = [0u8; 1];
            // SAFETY: x32 `read` (or ENOSYS) into a live one-byte buffer.
            let n =
                unsafe { libc::syscall(0x4000_0000 | libc::SYS_read, fd, b.as_mut_ptr(), b.len()) };
            assert_eq!(n, -1);
            errno()
        });
        drop(r);
        println!("x32 read on a sealed thread: errno {e}");
        assert_eq!(e, libc::ECANCELED);
    });
}

/// `splice` and `tee` from an empty pipe fail on a sealed thread instead of blocking.
#[test]
fn regression_seal_reaches_splice_and_tee() {
    in_child("regression_seal_reaches_splice_and_tee", LIMIT, || {
        let (r, _w) = std::io::pipe().unwrap();
        let (_r2, w2) = std::io::pipe().unwrap();
        let (rfd, wfd) = (r.as_raw_fd(), w2.as_raw_fd());
        let (splice, tee) = run_sealed(move || {
            let null = std::ptr::null_mut::<libc::loff_t>();
            // SAFETY: splice between two live pipe ends, no offsets.
            let s = unsafe { libc::splice(rfd, null, wfd, null, 16, 0) };
            let s = if s < 0 { errno() } else { 0 };
            // SAFETY: tee between two live pipe ends.
            let t = unsafe { libc::tee(rfd, wfd, 16, 0) };
            let t = if t < 0 { errno() } else { 0 };
            (s, t)
        });
        println!("sealed splice: errno {splice}, tee: errno {tee}");
        assert_eq!((splice, tee), (libc::ECANCELED, libc::ECANCELED));
    });
}

fn lock_file() -> (std::path::PathBuf, std::fs::File, std::fs::File) {
    let path = std::env::temp_dir().join(format!(
        "killable-regression-seal-{}-{:?}.lock",
        std::process::id(),
        std::thread::current().id()
    ));
    let a = std::fs::File::create(&path).unwrap();
    let b = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    (path, a, b)
}

fn write_lock() -> libc::flock {
    // SAFETY: flock is plain data.
    let mut l: libc::flock = unsafe { std::mem::zeroed() };
    l.l_type = libc::F_WRLCK as libc::c_short;
    l.l_whence = libc::SEEK_SET as libc::c_short;
    l
}

/// `flock` that waits for a lock fails on a sealed thread instead of blocking; `LOCK_NB` and
/// `LOCK_UN` (which never wait) keep working.
#[test]
fn regression_seal_reaches_waiting_flock() {
    in_child("regression_seal_reaches_waiting_flock", LIMIT, || {
        let (path, held, other) = lock_file();
        // SAFETY: flock on a live descriptor.
        assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
        let fd = other.as_raw_fd();
        let (wait, nb, un) = run_sealed(move || {
            let flock = |op| {
                // SAFETY: flock on a live descriptor.
                let r = unsafe { libc::flock(fd, op) };
                if r < 0 { errno() } else { 0 }
            };
            (
                flock(libc::LOCK_EX),
                flock(libc::LOCK_EX | libc::LOCK_NB),
                flock(libc::LOCK_UN),
            )
        });
        println!(
            "sealed flock: LOCK_EX errno {wait}, LOCK_EX|LOCK_NB errno {nb}, LOCK_UN errno {un}"
        );
        assert_eq!(wait, libc::ECANCELED);
        assert_eq!(nb, libc::EWOULDBLOCK);
        assert_eq!(un, 0);
        drop((held, other));
        let _ = std::fs::remove_file(path);
    });
}

/// `fcntl(F_OFD_SETLKW)` on a contended lock and `fcntl(F_SETLKW)` fail on a sealed thread;
/// the commands that never wait (`F_OFD_SETLK`, `F_SETLK`, `F_GETFL`) keep working.
#[test]
fn regression_seal_reaches_fcntl_setlkw() {
    in_child("regression_seal_reaches_fcntl_setlkw", LIMIT, || {
        let (path, held, other) = lock_file();
        let l = write_lock();
        // SAFETY: fcntl with a live flock struct.
        let r = unsafe { libc::fcntl(held.as_raw_fd(), libc::F_OFD_SETLK, &l) };
        assert_eq!(r, 0);
        let fd = other.as_raw_fd();
        let got = run_sealed(move || {
            let l = write_lock();
            let f = |cmd| {
                // SAFETY: fcntl with a live flock struct.
                let r = unsafe { libc::fcntl(fd, cmd, &l) };
                if r < 0 { errno() } else { 0 }
            };
            // SAFETY: F_GETFL takes no pointer.
            let getfl = unsafe { libc::fcntl(fd, libc::F_GETFL) } >= 0;
            // A classic POSIX lock conflicts with the other description's OFD lock too: F_SETLKW
            // would wait forever if it were allowed.
            (
                f(libc::F_OFD_SETLKW),
                f(libc::F_OFD_SETLK),
                f(libc::F_SETLKW),
                f(libc::F_SETLK),
                getfl,
            )
        });
        println!(
            "sealed fcntl: F_OFD_SETLKW, F_OFD_SETLK, F_SETLKW, F_SETLK, F_GETFL ok = {got:?}"
        );
        assert_eq!(
            got,
            (
                libc::ECANCELED,
                libc::EAGAIN,
                libc::ECANCELED,
                libc::EAGAIN,
                true
            )
        );
        drop((held, other));
        let _ = std::fs::remove_file(path);
    });
}

/// `io_uring_enter` waiting for a completion fails on a sealed thread; a submit-only enter works.
#[test]
fn regression_seal_reaches_io_uring_getevents() {
    in_child("regression_seal_reaches_io_uring_getevents", LIMIT, || {
        let mut params = [0u8; 120]; // struct io_uring_params
        // SAFETY: io_uring_setup writes into the 120-byte params struct.
        let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4, params.as_mut_ptr()) };
        if fd < 0 {
            println!("io_uring unavailable here (errno {}): skipped", errno());
            return;
        }
        // SAFETY: a fresh descriptor we own.
        let ring: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as RawFd) };
        let fd = ring.as_raw_fd();
        let (submit, wait) = run_sealed(move || {
            let enter = |min: u32, flags: u32| {
                // SAFETY: io_uring_enter on a live ring, no sigmask.
                let r = unsafe {
                    libc::syscall(libc::SYS_io_uring_enter, fd, 0, min, flags, 0usize, 0usize)
                };
                if r < 0 { errno() } else { 0 }
            };
            (enter(0, 0), enter(1, 1 /* IORING_ENTER_GETEVENTS */))
        });
        println!("sealed io_uring_enter: submit errno {submit}, getevents errno {wait}");
        assert_eq!((submit, wait), (0, libc::ECANCELED));
    });
}

/// A sealed thread can still reap a child: `try_wait` (wait4 with `WNOHANG`) works, and so do
/// `poll`/`epoll_wait` with a zero timeout, while the waiting forms still fail.
#[test]
fn regression_sealed_thread_can_try_wait_and_poll_without_waiting() {
    in_child(
        "regression_sealed_thread_can_try_wait_and_poll_without_waiting",
        LIMIT,
        || {
            let child = sleeper().unwrap();
            let pid = child.id() as libc::pid_t;
            let (r, _w) = std::io::pipe().unwrap();
            let rfd = r.as_raw_fd();
            let report = run_sealed(move || {
                let mut child = child;
                let mut out = Vec::new();
                out.push(format!(
                    "try_wait: {:?}",
                    child.try_wait().map_err(|e| e.raw_os_error())
                ));
                let ret = |r: libc::c_int| if r < 0 { -errno() } else { r };
                let poll = |timeout| {
                    let mut pfd = libc::pollfd {
                        fd: rfd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one live pollfd.
                    ret(unsafe { libc::poll(&mut pfd, 1, timeout) })
                };
                out.push(format!("poll(0): {}", poll(0)));
                out.push(format!("poll(10): {}", poll(10)));
                // SAFETY: a new epoll instance, closed below.
                let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
                let mut ev = libc::epoll_event {
                    events: libc::EPOLLIN as u32,
                    u64: 0,
                };
                // SAFETY: a live epoll instance and descriptor, and a live event.
                unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, rfd, &mut ev) };
                let epoll = |timeout, pwait| {
                    let mut ev = libc::epoll_event { events: 0, u64: 0 };
                    ret(if pwait {
                        // SAFETY: a live epoll instance, one event slot, no signal mask.
                        unsafe { libc::epoll_pwait(ep, &mut ev, 1, timeout, std::ptr::null()) }
                    } else {
                        // SAFETY: a live epoll instance and one event slot.
                        unsafe { libc::epoll_wait(ep, &mut ev, 1, timeout) }
                    })
                };
                out.push(format!("epoll_wait(0): {}", epoll(0, false)));
                out.push(format!("epoll_pwait(0): {}", epoll(0, true)));
                out.push(format!("epoll_wait(10): {}", epoll(10, false)));
                // SAFETY: closing the epoll descriptor made above.
                unsafe { libc::close(ep) };
                out.push(format!(
                    "wait: {:?}",
                    child.wait().map_err(|e| e.raw_os_error())
                ));
                child.kill().unwrap();
                // Reap without waiting (the thread cannot sleep either): spin on try_wait.
                let start = Instant::now();
                let reaped = loop {
                    match child.try_wait() {
                        Ok(Some(s)) => break format!("reaped: {s}"),
                        Ok(None) if start.elapsed() < Duration::from_secs(10) => {
                            std::thread::yield_now()
                        }
                        other => break format!("not reaped: {other:?}"),
                    }
                };
                out.push(reaped);
                out
            });
            println!("sealed thread: {report:#?}");
            let c = libc::ECANCELED;
            assert_eq!(
                report[..7],
                [
                    "try_wait: Ok(None)".to_string(),
                    "poll(0): 0".to_string(),
                    format!("poll(10): {}", -c),
                    "epoll_wait(0): 0".to_string(),
                    "epoll_pwait(0): 0".to_string(),
                    format!("epoll_wait(10): {}", -c),
                    format!("wait: Err(Some({c}))"),
                ]
            );
            assert!(report[7].starts_with("reaped"), "{}", report[7]);
            // No zombie left: the pid is no longer our child.
            // SAFETY: a non-blocking waitpid on a pid.
            let w = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            assert_eq!((w, errno()), (-1, libc::ECHILD));
        },
    );
}

/// A sealed thread's read of a non-blocking descriptor fails with `ECANCELED` even though data is
/// there (the filter cannot see `O_NONBLOCK`), and loses nothing: the call never ran, and the
/// bytes are read by another thread afterwards. `poll` with a zero timeout shows the data.
#[test]
fn regression_sealed_nonblocking_read_loses_no_data() {
    in_child(
        "regression_sealed_nonblocking_read_loses_no_data",
        LIMIT,
        || {
            let (r, w) = std::io::pipe().unwrap();
            let (rfd, mut w) = (r.as_raw_fd(), w);
            let (poll0, read) = run_sealed(move || {
                w.write_all(b"kept").unwrap(); // writes keep working
                // SAFETY: fcntl on a live descriptor.
                unsafe { libc::fcntl(rfd, libc::F_SETFL, libc::O_NONBLOCK) };
                let mut pfd = libc::pollfd {
                    fd: rfd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one live pollfd.
                let p = unsafe { libc::poll(&mut pfd, 1, 0) };
                let poll0 = if p < 0 { -errno() } else { p };
                let mut buf = [0u8; 8];
                // SAFETY: read into a live buffer.
                let n = unsafe { libc::read(rfd, buf.as_mut_ptr().cast(), buf.len()) };
                (poll0, if n < 0 { -errno() } else { n as i32 })
            });
            println!("sealed thread: poll(0) = {poll0}, non-blocking read = {read}");
            assert_eq!(poll0, 1, "poll with a zero timeout works and sees the data");
            assert_eq!(read, -libc::ECANCELED);
            let mut r = r;
            let mut buf = [0u8; 8];
            let n = r.read(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"kept");
        },
    );
}

/// A sealed thread's `killable::sleep` fails instead of returning `Ok` without sleeping.
#[test]
fn regression_sealed_sleep_fails() {
    in_child("regression_sealed_sleep_fails", LIMIT, || {
        let (r, took) = run_sealed(|| {
            let t = Instant::now();
            let r = killable::sleep(Duration::from_secs(2));
            (r, t.elapsed())
        });
        println!("sealed killable::sleep(2 s): {r:?} after {took:?}");
        let e = r.expect_err("a sealed thread cannot sleep: Ok would be a lie");
        assert!(!e.is_timeout());
        assert!(killable::is_interrupt(&std::io::Error::from(e)));
    });
}

/// A sealed thread's killable waits in `futex` (park, Condvar, JoinHandle::wait) fail at once
/// even after `clear_interrupt()`, as the seal's table promises, instead of blocking forever.
#[test]
fn regression_sealed_killable_waits_fail() {
    in_child("regression_sealed_killable_waits_fail", LIMIT, || {
        let pair = Arc::new((Mutex::new(false), killable::sync::Condvar::new()));
        let p = pair.clone();
        let (never_tx, never_rx) = mpsc::channel::<()>();
        let other = killable::spawn(move || {
            let _ = never_rx.recv();
        });
        let mut child = sleeper().unwrap();
        let got = run_sealed(move || {
            let park = killable::park().map_err(|e| e.is_timeout());
            let cv =
                p.1.wait_while(&p.0, |ready| !*ready)
                    .map(|_| ())
                    .map_err(|e| e.is_timeout());
            let wait = other.wait().map_err(|e| e.is_timeout());
            let io = killable::wait_child(&mut child)
                .map(drop)
                .map_err(|e| e.raw_os_error());
            let _ = child.kill(); // reaped when this test's process ends
            (park, cv, wait, io)
        });
        drop(never_tx);
        println!("sealed park, Condvar, wait, wait_child: {got:?}");
        assert_eq!(
            got,
            (
                Err(false),
                Err(false),
                Err(false),
                Err(Some(libc::ECANCELED))
            )
        );
    });
}

fn seccomp_filters(tid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp_filters:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(1) // kernels before 5.9 do not report the count
}

/// A seal requested right after `spawn` is installed exactly once, although the thread's own
/// start-up check and a seal signal landing in the middle of it both find the request.
///
/// The seal is requested before the thread has published its id (so the request sends no
/// signal, and the thread installs the filter itself as it starts); a second sealer, woken by
/// the id's publication, asks again while that installation runs and sends a signal, whose
/// handler used to find the request still pending and install the filter a second time.
#[test]
fn regression_seal_installs_the_filter_once() {
    in_child(
        "regression_seal_installs_the_filter_once",
        Duration::from_secs(60),
        || {
            let mut doubled = 0;
            let rounds = 200;
            for round in 0..rounds {
                let (ack_tx, ack_rx) = mpsc::channel::<()>();
                let (go_tx, go_rx) = mpsc::channel::<()>();
                let (t_tx, t_rx) = mpsc::channel::<killable::Thread>();
                let second = std::thread::spawn(move || {
                    let t = t_rx.recv().unwrap();
                    t.tid(); // returns when the thread publishes its id
                    t.seal()
                });
                let h = killable::spawn(move || {
                    ack_tx.send(()).unwrap();
                    let _ = go_rx.recv();
                });
                t_tx.send(h.thread().clone()).unwrap();
                h.thread()
                    .seal()
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
                second.join().unwrap().unwrap();
                ack_rx.recv().unwrap();
                if seccomp_filters(h.thread().tid()) != 1 {
                    doubled += 1;
                }
                go_tx.send(()).unwrap();
                h.join().unwrap();
            }
            println!("{doubled} of {rounds} seals installed the filter more than once");
            assert_eq!(doubled, 0);
        },
    );
}

/// Runs `f` after `delay` on a std thread of its own: the rescue that ends a call the seal should
/// have failed but that blocked, so that a failing test reports what the call did instead of
/// hanging until the watchdog.
fn after(delay: Duration, f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        f();
    });
}

/// `struct iocb` (linux/aio_abi.h; the same on x86_64, aarch64 and riscv64, little-endian).
#[repr(C)]
#[derive(Default)]
struct Iocb {
    data: u64,
    key: u32,
    rw_flags: i32,
    opcode: u16,
    reqprio: i16,
    fildes: u32,
    buf: u64,
    nbytes: u64,
    offset: i64,
    reserved2: u64,
    flags: u32,
    resfd: u32,
}

/// A sealed thread's `io_submit` fails with `ECANCELED`: an AIO read of a pipe without
/// `O_NONBLOCK` runs synchronously inside `io_submit` and blocks until data arrives (the filter
/// used to deny only `io_getevents`, so "AIO waits fail" did not hold).
#[test]
fn regression_seal_denies_io_submit() {
    in_child("regression_seal_denies_io_submit", LIMIT, || {
        let mut ctx: libc::c_ulong = 0;
        // SAFETY: io_setup writes the new context's id into `ctx`.
        if unsafe { libc::syscall(libc::SYS_io_setup, 8, &mut ctx) } != 0 {
            println!("AIO unavailable here (errno {}): skipped", errno());
            return;
        }
        let (r, mut w) = std::io::pipe().unwrap();
        let fd = r.as_raw_fd();
        // Outlives any read the kernel could still be doing into it (io_destroy below).
        let buf = Box::leak(Box::new([0u8; 16])).as_mut_ptr() as u64;
        // The rescue if io_submit blocks: a byte arrives and the read completes.
        after(Duration::from_secs(2), move || {
            let _ = w.write_all(b"x");
        });
        let (res, took) = run_sealed(move || {
            let mut cb = Iocb {
                opcode: 0, // IOCB_CMD_PREAD
                fildes: fd as u32,
                buf,
                nbytes: 16,
                ..Default::default()
            };
            let mut cbs = [&raw mut cb];
            let t = Instant::now();
            // SAFETY: one live iocb whose buffer lives for the rest of the process.
            let n = unsafe { libc::syscall(libc::SYS_io_submit, ctx, 1, cbs.as_mut_ptr()) };
            (if n < 0 { -i64::from(errno()) } else { n }, t.elapsed())
        });
        println!("sealed io_submit(IOCB_CMD_PREAD of an empty pipe) = {res} after {took:?}");
        // SAFETY: destroys the context made above (waits for nothing: no request is pending).
        unsafe { libc::syscall(libc::SYS_io_destroy, ctx) };
        drop(r);
        assert_eq!(res, -i64::from(libc::ECANCELED));
        assert!(took < Duration::from_secs(1), "{took:?}");
    });
}

fn sockaddr_in(a: std::net::SocketAddr) -> libc::sockaddr_in {
    let std::net::SocketAddr::V4(v4) = a else {
        panic!("{a} is not IPv4")
    };
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// `sendto`, `sendmsg` and `sendmmsg` with `MSG_FASTOPEN` fail on a sealed thread: on an
/// unconnected TCP socket that flag connects and waits for the handshake, like the `connect` the
/// seal denies. Here the listener's accept queue is full, so the SYN is dropped and the handshake
/// never completes; `SO_SNDTIMEO` bounds the wait in case the filter lets the call through.
/// Sends without the flag keep working.
#[test]
fn regression_seal_denies_msg_fastopen() {
    in_child("regression_seal_denies_msg_fastopen", LIMIT, || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // SAFETY: listen on a live socket; a backlog of 0 holds one connection.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
        let sa = sockaddr_in(l.local_addr().unwrap());
        let size = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // Fill the accept queue: later SYNs are dropped.
        let fillers: Vec<OwnedFd> = (0..4)
            .map(|_| {
                // SAFETY: a new socket, owned below; a non-blocking connect to a live address.
                unsafe {
                    let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
                    assert!(s >= 0);
                    libc::connect(s, (&raw const sa).cast(), size);
                    std::os::fd::FromRawFd::from_raw_fd(s)
                }
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let ufd = a.as_raw_fd();
        let got = run_sealed(move || {
            let ret = |n: isize| if n < 0 { -errno() } else { n as i32 };
            // SAFETY: a new socket, closed below.
            let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            let two = libc::timeval {
                tv_sec: 2,
                tv_usec: 0,
            };
            // SAFETY: setsockopt with a live timeval of the size passed.
            let r = unsafe {
                libc::setsockopt(
                    s,
                    libc::SOL_SOCKET,
                    libc::SO_SNDTIMEO,
                    (&raw const two).cast(),
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                )
            };
            assert_eq!(r, 0);
            let t = Instant::now();
            // SAFETY: one live byte and a live address of the size passed.
            let n = unsafe {
                libc::sendto(
                    s,
                    b"x".as_ptr().cast(),
                    1,
                    libc::MSG_FASTOPEN,
                    (&raw const sa).cast(),
                    size,
                )
            };
            let fastopen = (ret(n), t.elapsed());
            // SAFETY: closing the socket made above.
            unsafe { libc::close(s) };
            let mut byte = *b"y";
            let mut iov = libc::iovec {
                iov_base: byte.as_mut_ptr().cast(),
                iov_len: 1,
            };
            // SAFETY: msghdr is plain data.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &raw mut iov;
            msg.msg_iovlen = 1;
            let mut mmsg = libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0,
            };
            // SAFETY (each call): a connected socket, a live message of one live byte.
            let (plain_sendto, sendmsg, plain_sendmsg, sendmmsg, plain_sendmmsg) = unsafe {
                (
                    ret(libc::sendto(
                        ufd,
                        byte.as_ptr().cast(),
                        1,
                        0,
                        std::ptr::null(),
                        0,
                    )),
                    ret(libc::sendmsg(ufd, &msg, libc::MSG_FASTOPEN)),
                    ret(libc::sendmsg(ufd, &msg, 0)),
                    ret(libc::sendmmsg(ufd, &mut mmsg, 1, libc::MSG_FASTOPEN as _) as isize),
                    ret(libc::sendmmsg(ufd, &mut mmsg, 1, 0) as isize),
                )
            };
            (
                fastopen,
                [
                    plain_sendto,
                    sendmsg,
                    plain_sendmsg,
                    sendmmsg,
                    plain_sendmmsg,
                ],
            )
        });
        drop((fillers, l, a, b));
        let ((n, took), sends) = got;
        println!("sealed sendto(MSG_FASTOPEN) to a listener that drops SYNs = {n} after {took:?}");
        println!(
            "sealed sends on a unix socket: sendto(0), sendmsg(MSG_FASTOPEN), sendmsg(0), \
             sendmmsg(MSG_FASTOPEN), sendmmsg(0) = {sends:?}"
        );
        assert_eq!(n, -libc::ECANCELED);
        assert!(took < Duration::from_secs(1), "{took:?}");
        let c = -libc::ECANCELED;
        assert_eq!(sends, [1, c, 1, c, 1]);
    });
}

/// `sendfile` from a socket into a pipe fails on a sealed thread: it is a receive (it waits for
/// the peer's data and consumes it), and the filter cannot see the descriptors' types, so every
/// `sendfile` is denied.
#[test]
fn regression_seal_denies_sendfile() {
    in_child("regression_seal_denies_sendfile", LIMIT, || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (peer, _) = l.accept().unwrap();
        let (pr, pw) = std::io::pipe().unwrap();
        let (cfd, pwfd) = (c.as_raw_fd(), pw.as_raw_fd());
        // The rescue if sendfile blocks: the peer sends, and sendfile moves the bytes.
        after(Duration::from_secs(2), move || {
            let _ = (&peer).write_all(b"hello");
            std::thread::sleep(Duration::from_secs(60));
        });
        let (res, took) = run_sealed(move || {
            let t = Instant::now();
            // SAFETY: two live descriptors, no offset.
            let n = unsafe { libc::sendfile(pwfd, cfd, std::ptr::null_mut(), 16) };
            (if n < 0 { -errno() } else { n as i32 }, t.elapsed())
        });
        println!("sealed sendfile(pipe <- socket) = {res} after {took:?}");
        drop((c, pr, pw));
        assert_eq!(res, -libc::ECANCELED);
        assert!(took < Duration::from_secs(1), "{took:?}");
    });
}

/// `syslog(SYSLOG_ACTION_READ)` (which waits for new kernel messages) fails on a sealed thread;
/// the other actions keep working. The read is made with a length of 0, which the kernel answers
/// after its permission check without waiting or consuming a message, so the test leaves the
/// kernel log alone (the filter does not look at the length: the unit tests check its verdict).
#[test]
fn regression_seal_denies_syslog_read() {
    in_child("regression_seal_denies_syslog_read", LIMIT, || {
        let klog = |action: i32| {
            let mut b = [0u8; 1];
            // SAFETY: klogctl with a live one-byte buffer and a length of 0.
            let r = unsafe { libc::klogctl(action, b.as_mut_ptr().cast(), 0) };
            if r < 0 { -errno() } else { r }
        };
        const READ: i32 = 2; // SYSLOG_ACTION_READ
        const SIZE_BUFFER: i32 = 10; // SYSLOG_ACTION_SIZE_BUFFER
        let before = klog(READ);
        if before == -libc::EPERM {
            println!(
                "syslog(SYSLOG_ACTION_READ) fails with EPERM before sealing (no CAP_SYSLOG): skipped"
            );
            return;
        }
        assert_eq!(before, 0, "an unsealed syslog read of length 0");
        let (read, size, took) = run_sealed(move || {
            let t = Instant::now();
            let read = klog(READ);
            (read, klog(SIZE_BUFFER), t.elapsed())
        });
        println!("sealed syslog: READ = {read}, SIZE_BUFFER = {size}, after {took:?}");
        assert_eq!(read, -libc::ECANCELED);
        assert!(size > 0, "SYSLOG_ACTION_SIZE_BUFFER still works");
    });
}

/// Reads a descriptor made non-blocking: `ECANCELED` on a sealed thread, `EAGAIN` on another (the
/// pipe is empty). Never blocks, sealed or not.
fn nonblocking_read(fd: RawFd) -> i32 {
    let mut b = [0u8; 1];
    // SAFETY: read into a live one-byte buffer.
    let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
    if n < 0 { errno() } else { 0 }
}

fn empty_nonblocking_pipe() -> (std::io::PipeReader, std::io::PipeWriter) {
    let (r, w) = std::io::pipe().unwrap();
    // SAFETY: fcntl on a live descriptor.
    assert_eq!(
        unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) },
        0
    );
    (r, w)
}

/// A thread spawned by a sealed thread inherits the kernel's filter, and now killable's seal state
/// too: `is_sealed()` is true from birth (the spawner sees it on the handle at once) and its
/// killable waits fail as a sealed thread's do (they used to report it unsealed and let `park`
/// wait).
#[test]
fn regression_sealed_threads_children_are_sealed() {
    in_child(
        "regression_sealed_threads_children_are_sealed",
        LIMIT,
        || {
            let (r, _w) = empty_nonblocking_pipe();
            let fd = r.as_raw_fd();
            let (on_handle, (sealed, park, took, read)) = run_sealed(move || {
                let h = killable::spawn(move || {
                    let sealed = killable::current().is_sealed();
                    let t = Instant::now();
                    let park = killable::park_timeout(Duration::from_millis(500))
                        .map_err(|e| e.is_timeout());
                    (sealed, park, t.elapsed(), nonblocking_read(fd))
                });
                let on_handle = h.thread().is_sealed();
                (on_handle, h.join().unwrap())
            });
            println!(
                "child of a sealed thread: is_sealed on the handle {on_handle}, in the child \
             {sealed}; park_timeout(500 ms) = {park:?} after {took:?}; read errno {read}"
            );
            assert_eq!(read, libc::ECANCELED, "the kernel filter is inherited");
            assert!(on_handle && sealed, "the seal state is inherited");
            assert_eq!(park, Err(false));
            assert!(took < Duration::from_millis(400), "{took:?}");
        },
    );
}

/// A thread spawned by a thread whose seal is requested but not yet installed (it blocks
/// killable's signal) seals itself as it starts: the spawner would have handed it the filter had
/// the signal landed a moment earlier, and a thread that is being sealed must not hand its work
/// to one that escapes the seal.
#[test]
fn regression_thread_spawned_during_a_seal_is_sealed() {
    in_child(
        "regression_thread_spawned_during_a_seal_is_sealed",
        LIMIT,
        || {
            let (r, _w) = empty_nonblocking_pipe();
            let fd = r.as_raw_fd();
            let (blocked_tx, blocked_rx) = mpsc::channel::<()>();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let h = killable::spawn(move || {
                // SAFETY: sigset operations on a local set; blocks killable's signal for this
                // thread only.
                let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
                // SAFETY: as above.
                unsafe {
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, killable::signal());
                    libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                }
                blocked_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                let child = killable::spawn(move || {
                    (killable::current().is_sealed(), nonblocking_read(fd))
                });
                let got = child.join().unwrap();
                // SAFETY: unblocks the signal blocked above: the pending seal installs now.
                unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
                got
            });
            blocked_rx.recv().unwrap();
            let t = h.thread().clone();
            let tid = t.tid();
            let sealer = std::thread::spawn(move || t.seal());
            // The request is stored before the signal is sent: once the signal is pending, the
            // spawner's seal is requested.
            let bit = 1u64 << (killable::signal() - 1);
            let start = Instant::now();
            while std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("SigPnd:"))
                .is_none_or(|v| u64::from_str_radix(v.trim(), 16).unwrap() & bit == 0)
            {
                assert!(start.elapsed() < Duration::from_secs(5), "no seal signal");
                std::thread::yield_now();
            }
            go_tx.send(()).unwrap();
            let (sealed, read) = h.join().unwrap();
            let sealer = sealer.join().unwrap().map_err(|e| e.to_string());
            println!(
                "child of a thread being sealed: is_sealed {sealed}, read errno {read}; \
                 the spawner's seal: {sealer:?}"
            );
            assert_eq!((sealed, read), (true, libc::ECANCELED));
            assert_eq!(sealer, Ok(()));
        },
    );
}

#[test]
fn sealed_thread_still_writes() {
    let (mut r, w) = std::io::pipe().unwrap();
    run_sealed(move || {
        let mut w = killable::io::Interruptible::new(w);
        w.write_all(b"bye").unwrap();
    });
    let mut s = String::new();
    r.read_to_string(&mut s).unwrap();
    assert_eq!(s, "bye");
}

fn block_killable_signal(block: bool) {
    // SAFETY: plain signal-mask calls on the calling thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, killable::signal());
        let how = if block {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        assert_eq!(libc::pthread_sigmask(how, &set, std::ptr::null_mut()), 0);
    }
}

/// A thread that blocks killable's signal forks while another thread seals it. The fork child
/// is a new process nobody asked to seal: the forking thread is not sealed there, and must not
/// hand the parent's request to the threads it spawns (`inherit`), whose reads would then fail
/// with ECANCELED.
#[test]
fn regression_a_seal_request_stays_in_the_parent_of_a_fork() {
    in_child(
        "regression_a_seal_request_stays_in_the_parent_of_a_fork",
        LIMIT,
        || {
            let (ready_tx, ready_rx) = mpsc::channel::<()>();
            let sealing = Arc::new(AtomicBool::new(false));
            let s2 = sealing.clone();
            let h = killable::spawn(move || {
                block_killable_signal(true);
                ready_tx.send(()).unwrap();
                while !s2.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                std::thread::sleep(Duration::from_millis(30));
                // SAFETY: the child spawns one thread, reads and _exits.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    let me_sealed = killable::current().is_sealed();
                    let c = killable::spawn(|| {
                        use std::io::{Read, Write};
                        let (mut r, mut w) = std::io::pipe().unwrap();
                        w.write_all(b"x").unwrap();
                        let mut b = [0u8; 1];
                        r.read(&mut b).map_err(|e| e.raw_os_error())
                    });
                    let res = c.join().unwrap();
                    let code = match res {
                        Ok(1) => 0,
                        Err(Some(libc::ECANCELED)) => 1,
                        _ => 2,
                    };
                    // SAFETY: _exit in the fork child.
                    unsafe { libc::_exit(code | ((me_sealed as i32) << 2)) };
                }
                let mut status = 0;
                // SAFETY: our own child.
                assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
                block_killable_signal(false);
                libc::WEXITSTATUS(status)
            });
            ready_rx.recv().unwrap();
            let t = h.thread().clone();
            let sealer = std::thread::spawn(move || t.seal());
            sealing.store(true, Ordering::SeqCst);
            sealer.join().unwrap().expect("the parent's seal");
            let code = h.join().unwrap();
            println!(
                "fork child: forking thread is_sealed {}, a thread it spawned: {}",
                code & 4 != 0,
                match code & 3 {
                    0 => "read ok (not sealed)",
                    1 => "read failed with ECANCELED (sealed)",
                    _ => "other",
                }
            );
            assert_eq!(
                code & 4,
                0,
                "the forking thread was sealed in the fork child"
            );
            assert_eq!(code & 3, 0, "a thread spawned in the fork child was sealed");
        },
    );
}
