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
            assert_eq!(escaped, 0, "a thread finished while a sender had its tid pinned");
        },
    );
}
