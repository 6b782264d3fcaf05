//! Regression tests for the tid pin (`with_live_tid` / `mark_exited`): a thread that ends while
//! senders are in flight must not finish before the last of them leaves (its id could be reused
//! and a signal or a `/proc` read reach another thread), and must finish once they have all left
//! (no lost wake-up of the exiting thread asleep on `life`). Each body runs in a child process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use testkit::in_child;

/// Threads that end at once while two diagnosers (`diagnose`, which reads `/proc` with the tid
/// pinned, slowly enough that the exiting thread stops yielding and sleeps) and two interrupters
/// (`interrupt`, a signal sent with the tid pinned) hammer them. Inside the pin the thread's
/// `/proc/self/task/<tid>` must exist, so `diagnose` either succeeds or says "not live" (an error
/// without an OS code); an OS error (`ENOENT`/`ESRCH` from `/proc`) means the thread finished
/// while pinned. Every thread must also finish (be joinable) once the senders leave it.
#[test]
fn regression_an_exiting_thread_neither_escapes_nor_outsleeps_its_senders() {
    in_child(
        "regression_an_exiting_thread_neither_escapes_nor_outsleeps_its_senders",
        Duration::from_secs(240),
        || {
            const THREADS: usize = 3_000;
            let current: Arc<std::sync::Mutex<Option<killable::Thread>>> = Default::default();
            let stop = Arc::new(AtomicBool::new(false));
            let escaped = Arc::new(AtomicUsize::new(0));
            let pinned_reads = Arc::new(AtomicUsize::new(0));
            let mut helpers = Vec::new();
            for k in 0..4 {
                let (current, stop, escaped, pinned_reads) = (
                    current.clone(),
                    stop.clone(),
                    escaped.clone(),
                    pinned_reads.clone(),
                );
                helpers.push(std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let t = current.lock().unwrap().clone();
                        let Some(t) = t else {
                            std::thread::yield_now();
                            continue;
                        };
                        if k < 2 {
                            match t.diagnose() {
                                Ok(_) => {
                                    pinned_reads.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) if e.raw_os_error().is_some() => {
                                    eprintln!("diagnose read a vanished thread: {e}");
                                    escaped.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(_) => {} // not live: fine
                            }
                        } else {
                            let _ = t.try_interrupt();
                        }
                    }
                }));
            }
            let mut hung = 0;
            for _ in 0..THREADS {
                let h = killable::spawn(|| {
                    // A little work so that the helpers catch it alive.
                    for _ in 0..200 {
                        std::hint::spin_loop();
                    }
                });
                *current.lock().unwrap() = Some(h.thread().clone());
                match h.join_timeout(Duration::from_secs(20)) {
                    Ok(r) => {
                        let _ = r;
                    }
                    Err(h) => {
                        hung += 1;
                        eprintln!("thread {:?} did not finish within 20 s", h.thread().id());
                        break;
                    }
                }
            }
            stop.store(true, Ordering::Relaxed);
            if hung == 0 {
                for h in helpers {
                    h.join().unwrap();
                }
            }
            let escaped = escaped.load(Ordering::Relaxed);
            println!(
                "threads {THREADS}, pinned diagnoses {}, escaped {escaped}, hung {hung}",
                pinned_reads.load(Ordering::Relaxed)
            );
            assert_eq!(hung, 0, "an exiting thread slept past its last sender");
            assert_eq!(
                escaped, 0,
                "a thread finished while a sender had its tid pinned"
            );
        },
    );
}

/// A killable thread forks while two diagnosers keep its tid pinned (`diagnose`): the count of
/// senders in flight is copied into the child, where those senders do not exist. The child's
/// copy of the thread must still be able to end (its `mark_exited` must not wait for senders of
/// the parent): the child returns from the closure, runs the exit protocol and, being the last
/// thread of the child, ends the child with status 0.
#[test]
fn regression_a_thread_that_forks_while_pinned_can_end_in_the_child() {
    in_child(
        "regression_a_thread_that_forks_while_pinned_can_end_in_the_child",
        Duration::from_secs(200),
        || {
            const FORKS: usize = 100;
            let me: Arc<std::sync::Mutex<Option<killable::Thread>>> = Default::default();
            let stop = Arc::new(AtomicBool::new(false));
            let helpers: Vec<_> = (0..2)
                .map(|_| {
                    let (me, stop) = (me.clone(), stop.clone());
                    std::thread::spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            let t = me.lock().unwrap().clone();
                            match t {
                                Some(t) => drop(t.diagnose()),
                                None => std::thread::yield_now(),
                            }
                        }
                    })
                })
                .collect();
            let mut hung = 0;
            for _ in 0..FORKS {
                let me2 = me.clone();
                let h = killable::spawn(move || {
                    *me2.lock().unwrap() = Some(killable::current());
                    // Let the diagnosers get going on us.
                    std::thread::sleep(Duration::from_millis(2));
                    // SAFETY: the child only returns from this closure (no allocation before).
                    let pid = unsafe { libc::fork() };
                    assert!(pid >= 0);
                    if pid == 0 {
                        // Child: end this thread (the child's only one) through killable's
                        // exit protocol; the child exits with status 0 when it is gone.
                        return -1;
                    }
                    *me2.lock().unwrap() = None;
                    pid
                });
                let pid = h.join().unwrap();
                if pid == -1 {
                    // Only in the forked child: we never get here (the thread has ended).
                    unreachable!();
                }
                let mut status = 0;
                let mut done = false;
                for _ in 0..1000 {
                    // SAFETY: `pid` is our child; `status` is a live local.
                    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                    if r == pid {
                        done = true;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                if !done {
                    hung += 1;
                    // SAFETY: our child, not reaped yet.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                        libc::waitpid(pid, &mut status, 0);
                    }
                    break;
                }
            }
            stop.store(true, Ordering::Relaxed);
            for h in helpers {
                h.join().unwrap();
            }
            println!("forks {FORKS}, children that could not end {hung}");
            assert_eq!(
                hung, 0,
                "a forked child's thread waited for senders of the parent"
            );
        },
    );
}
