//! Sealing std's blocking calls, siblings unaffected, `stop` through each level, `diagnose`.

use std::ffi::c_void;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use killable::{Killed, StopLevel};
use testkit::demo::killable_demo_spin;
use testkit::wait_blocked;

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Spawns `f` holding a drop guard, waits until it blocks, seals it; returns its result and
/// whether the guard was dropped.
fn seal_blocked<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> (std::thread::Result<T>, bool) {
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = SetOnDrop(dropped.clone());
    let h = killable::spawn(move || {
        let _guard = guard;
        f()
    });
    wait_blocked(h.thread());
    h.thread().seal().expect("seccomp is available here");
    assert!(h.thread().is_sealed());
    let info = killable::threads()
        .into_iter()
        .find(|t| t.thread().id() == h.thread().id());
    assert!(
        info.is_none_or(|i| i.is_sealed()),
        "threads() shows the seal"
    );
    let r = h
        .join_timeout(Duration::from_secs(30))
        .expect("the sealed thread ended");
    (r, dropped.load(Ordering::SeqCst))
}

#[test]
fn seal_ends_std_accept() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let (r, dropped) = seal_blocked(move || l.accept().map(drop));
    assert_eq!(
        r.unwrap().unwrap_err().raw_os_error(),
        Some(libc::ECANCELED)
    );
    assert!(dropped);
}

#[test]
fn seal_ends_std_read_line_on_a_pipe() {
    let (r, w) = std::io::pipe().unwrap();
    let (res, dropped) = seal_blocked(move || BufReader::new(r).read_line(&mut String::new()));
    assert_eq!(
        res.unwrap().unwrap_err().raw_os_error(),
        Some(libc::ECANCELED)
    );
    assert!(dropped);
    drop(w);
}

#[test]
fn seal_ends_std_thread_sleep() {
    let (r, dropped) = seal_blocked(|| {
        testkit::panics_on_purpose();
        std::thread::sleep(Duration::from_secs(3600))
    });
    // std's sleep asserts that nanosleep only fails with EINTR: it panics, and unwinds.
    assert!(r.is_err());
    assert!(
        dropped,
        "the panic unwound through the thread's destructors"
    );
}

#[test]
fn a_sealed_threads_siblings_are_unaffected() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let (r, _) = seal_blocked(move || l.accept().map(drop));
    assert!(r.unwrap().is_err());
    let sibling = killable::spawn(|| {
        std::thread::sleep(Duration::from_millis(1));
        let (mut r, mut w) = std::io::pipe().unwrap();
        std::io::Write::write_all(&mut w, b"ok").unwrap();
        let mut b = [0u8; 2];
        r.read_exact(&mut b).map(|_| b)
    });
    assert_eq!(&sibling.join().unwrap().unwrap(), b"ok");
    std::thread::sleep(Duration::from_millis(1)); // this thread too
}

#[test]
fn sealing_a_finished_thread_does_nothing() {
    let h = killable::spawn(|| ());
    let t = h.thread().clone();
    h.join().unwrap();
    t.seal().unwrap();
    assert!(!t.is_sealed());
}

#[test]
fn stop_through_each_level() {
    let grace = Duration::from_secs(4);
    // Level 1: a killable call returns the interrupt.
    let h = killable::spawn(|| killable::sleep(Duration::from_secs(3600)));
    wait_blocked(h.thread());
    let stopped = h.stop(grace).unwrap();
    assert_eq!(stopped.level(), StopLevel::Interrupt);
    assert!(stopped.into_result().unwrap().is_err());

    // Level 2: a C loop in a kill region is abandoned.
    let counter = Box::leak(Box::new(0u64)) as *mut u64 as usize;
    // SAFETY: the spin loop holds no lock and does not allocate.
    let h = killable::spawn(move || unsafe {
        killable::kill_region(killable_demo_spin, counter as *mut c_void)
    });
    while !h.thread().in_kill_region() {
        std::thread::yield_now();
    }
    let stopped = h.stop(grace).unwrap();
    assert_eq!(stopped.level(), StopLevel::Kill);
    assert_eq!(stopped.into_result().unwrap(), Err(Killed));

    // Level 3: std's accept retries EINTR; the seal ends it.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let h = killable::spawn(move || l.accept().map(drop));
    wait_blocked(h.thread());
    let stopped = h.stop(grace).unwrap();
    assert_eq!(stopped.level(), StopLevel::Seal);
    let e = stopped.into_result().unwrap().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ECANCELED));

    // Nothing reaches a thread waiting for a lock (futex): the handle comes back, diagnosed.
    let lock = Arc::new(Mutex::new(()));
    let held = lock.lock().unwrap();
    let l2 = lock.clone();
    let h = killable::spawn(move || drop(l2.lock()));
    wait_blocked(h.thread());
    let stuck = h.stop(Duration::from_millis(400)).unwrap_err();
    let d = stuck.diagnosis().expect("diagnosed").clone();
    assert_eq!(d.syscall_name(), Some("futex"), "{d}");
    assert!(stuck.to_string().contains("futex"), "{stuck}");
    drop(held);
    stuck.into_handle().join().unwrap();
}

#[test]
fn diagnose_names_the_syscall_of_a_blocked_read() {
    use std::os::fd::AsRawFd;
    let (r, _w) = std::io::pipe().unwrap();
    let fd = r.as_raw_fd();
    let h = killable::spawn(move || killable::io::Interruptible::new(r).read(&mut [0u8; 1]));
    wait_blocked(h.thread());
    let d = h.thread().diagnose().unwrap();
    assert_eq!(d.syscall_name(), Some("read"));
    assert_eq!(d.syscall().unwrap().1[0] as i32, fd);
    let line = d.to_string();
    assert!(
        line.starts_with(&format!("blocked in read(fd {fd})")),
        "{line}"
    );
    assert!(line.contains("waiting in"), "{line}");
    h.interrupt();
    h.join().unwrap().unwrap_err();
}

#[test]
fn diagnose_of_a_finished_thread_says_it_finished() {
    let h = killable::Builder::new()
        .name("short-lived".into())
        .spawn(|| ())
        .unwrap();
    let t = h.thread().clone();
    h.join().unwrap();
    let e = t.diagnose().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    assert!(e.to_string().contains("'short-lived'"), "{e}");
    assert!(e.to_string().contains("has finished"), "{e}");
}

#[test]
fn seal_reports_an_unavailable_seccomp() {
    // Runs only where seccomp is known to be missing: ci/valgrind.sh sets this, because
    // valgrind does not implement seccomp(2). Elsewhere the other tests here seal for real.
    if std::env::var_os("KILLABLE_EXPECT_NO_SECCOMP").is_none() {
        return;
    }
    let (r, _w) = std::io::pipe().unwrap();
    let h = killable::spawn(move || BufReader::new(r).read_line(&mut String::new()));
    wait_blocked(h.thread());
    let e = h.thread().seal().unwrap_err();
    assert!(e.to_string().contains("refused the seccomp filter"), "{e}");
    assert!(!h.thread().is_sealed());
    // Nothing else changed: the thread is still there, and sealing left it interrupted.
    assert!(!h.is_finished() && h.thread().is_interrupted());
    drop(_w);
    h.join().unwrap().unwrap();
}
