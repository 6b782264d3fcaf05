//! `shutdown` and `shutdown_on_signals`. Own binary: shutdown stops every thread killable
//! spawned in the process, so one test runs the steps in order, and the signal cases run in
//! child processes (this binary re-executed).

use std::ffi::c_void;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use killable::StopLevel;
use testkit::demo::killable_demo_spin;
use testkit::wait_blocked;

/// Child mode: workers blocked in reads (or, for "twice", on a lock nobody releases); Ctrl-C
/// handling on; joins them and reports.
fn child(mode: &str) -> ! {
    let handle =
        killable::shutdown_on_signals(Duration::from_secs(if mode == "twice" { 60 } else { 5 }))
            .unwrap();
    let (r, _w) = std::io::pipe().unwrap();
    let r = Arc::new(killable::io::Interruptible::new(r));
    let lock = Arc::new(Mutex::new(()));
    let _held = lock.lock().unwrap();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (r, lock) = (r.clone(), lock.clone());
            let twice = mode == "twice";
            killable::spawn(move || {
                if twice {
                    drop(lock.lock());
                    return false;
                }
                (&*r)
                    .read(&mut [0u8; 1])
                    .is_err_and(|e| killable::is_interrupt(&e))
            })
        })
        .collect();
    for w in &workers {
        wait_blocked(w.thread());
    }
    println!("ready");
    let stopped = workers
        .into_iter()
        .map(|w| w.join().unwrap())
        .filter(|&x| x)
        .count();
    let report = handle.wait();
    println!(
        "stopped {stopped}, signal {:?}, all {}",
        handle.signal(),
        report.all_stopped()
    );
    std::process::exit(0);
}

fn run_child(mode: &str, signals: &[i32]) -> (Option<i32>, String) {
    let mut c = testkit::own_binary()
        .args([
            "shutdown_then_signals",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KILLABLE_SHUTDOWN_CHILD", mode)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child ended before it was ready"
        );
    }
    for &sig in signals {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(c.id() as i32, sig) };
        std::thread::sleep(Duration::from_millis(100));
    }
    let start = Instant::now();
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            c.kill().unwrap();
            panic!("child {mode} did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    (status.code(), rest)
}

#[test]
fn shutdown_then_signals() {
    if let Ok(mode) = std::env::var("KILLABLE_SHUTDOWN_CHILD") {
        child(&mode);
    }

    // shutdown(): each level, a daemon left alone, and a thread nothing can stop.
    let a = killable::Builder::new()
        .name("a-sleep".into())
        .spawn(|| killable::sleep(Duration::from_secs(3600)))
        .unwrap();
    let counter = Box::leak(Box::new(0u64)) as *mut u64 as usize;
    // SAFETY: the spin loop holds no lock and does not allocate.
    let b = killable::Builder::new()
        .name("b-region".into())
        .spawn(move || unsafe { killable::kill_region(killable_demo_spin, counter as *mut c_void) })
        .unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = killable::Builder::new()
        .name("c-accept".into())
        .spawn(move || l.accept().map(drop))
        .unwrap();
    let d = killable::Builder::new()
        .name("d-daemon".into())
        .daemon(true)
        .spawn(|| killable::sleep(Duration::from_secs(3600)))
        .unwrap();
    let lock = Arc::new(Mutex::new(()));
    let held = lock.lock().unwrap();
    let l2 = lock.clone();
    let e = killable::Builder::new()
        .name("e-futex".into())
        .spawn(move || drop(l2.lock()))
        .unwrap();
    for t in [a.thread(), c.thread(), d.thread(), e.thread()] {
        wait_blocked(t);
    }
    while !b.thread().in_kill_region() {
        std::thread::yield_now();
    }

    let report = killable::shutdown(Duration::from_secs(2));
    let level = |name: &str| {
        let o = report
            .outcomes()
            .iter()
            .find(|o| o.thread().name() == Some(name));
        o.map(|o| o.level())
    };
    assert_eq!(
        level("a-sleep"),
        Some(Some(StopLevel::Interrupt)),
        "{report}"
    );
    assert_eq!(level("b-region"), Some(Some(StopLevel::Kill)), "{report}");
    assert_eq!(level("c-accept"), Some(Some(StopLevel::Seal)), "{report}");
    assert_eq!(level("e-futex"), Some(None), "{report}");
    assert_eq!(level("d-daemon"), None, "daemons are left alone");
    assert!(!report.all_stopped());
    let stuck = report.outcomes().iter().find(|o| !o.stopped()).unwrap();
    assert_eq!(stuck.diagnosis().unwrap().syscall_name(), Some("futex"));
    assert!(!d.is_finished());

    assert!(a.join().unwrap().is_err());
    assert_eq!(b.join().unwrap(), Err(killable::Killed));
    assert!(c.join().unwrap().is_err());
    drop(held);
    e.join().unwrap();
    d.interrupt();
    assert!(d.join().unwrap().is_err());

    // shutdown_on_signals(): a first SIGINT stops the workers and main returns normally...
    let (code, out) = run_child("graceful", &[libc::SIGINT]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("stopped 3") && out.contains("all true"),
        "{out}"
    );
    // ...and a second signal ends a process whose shutdown cannot finish, at once.
    let (code, out) = run_child("twice", &[libc::SIGINT, libc::SIGTERM]);
    assert_eq!(code, Some(128 + libc::SIGTERM), "{out}");
}
