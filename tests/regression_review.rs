//! Regression tests for the defects the adversarial review of the hardening found: failed spawns,
//! thread-local destructors, extreme graces, interrupt callbacks, fork, and kills whose signal
//! is held back or merged. Bodies that fork, replace a handler or could hang run in a child
//! process (`testkit::in_child`), bounded by an alarm.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use testkit::{in_child, wait_until};

const LIMIT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(10);

/// A snapshot taken while a spawn fails must not hold a thread that never publishes its id:
/// `tid()`, `diagnose()` and `shutdown()` used to wait for it forever.
#[test]
fn regression_failed_spawn_never_hangs_a_snapshot() {
    in_child(
        "regression_failed_spawn_never_hangs_a_snapshot",
        LIMIT,
        || {
            let stop = Arc::new(AtomicBool::new(false));
            let s = stop.clone();
            // Failed spawns so far: the snapshots below go on until some overlap them (on a
            // busy machine the spawner may not run at all during a fixed number of rounds).
            let failed = Arc::new(AtomicUsize::new(0));
            let f = failed.clone();
            let spawner = killable::Builder::new()
                .daemon(true)
                .spawn(move || {
                    let mut failures = 0u64;
                    while !s.load(Ordering::Relaxed) {
                        // A stack no process can map (1 PiB: see tests/thread.rs):
                        // pthread_create fails.
                        if killable::Builder::new()
                            .stack_size(1 << 50)
                            .spawn(|| ())
                            .is_err()
                        {
                            failures += 1;
                            f.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    failures
                })
                .unwrap();
            let started = std::time::Instant::now();
            let mut round = 0u64;
            while round < 20_000
                || (failed.load(Ordering::Relaxed) < 100 && started.elapsed() < WAIT)
            {
                round += 1;
                for info in killable::threads() {
                    if info.thread().id() != spawner.thread().id() {
                        let _ = info.thread().tid();
                        let _ = info.thread().diagnose();
                    }
                }
                if round.is_multiple_of(100) {
                    assert!(killable::shutdown(Duration::from_millis(1)).all_stopped());
                }
            }
            stop.store(true, Ordering::Relaxed);
            assert!(
                spawner.join().unwrap() > 0,
                "no spawn failed: the test proves nothing"
            );
        },
    );
}

static DESTRUCTOR_BLOCKED: AtomicBool = AtomicBool::new(false);

struct BlockingDrop;

impl Drop for BlockingDrop {
    fn drop(&mut self) {
        DESTRUCTOR_BLOCKED.store(true, Ordering::SeqCst);
        killable::clear_interrupt();
        // A killable call in a thread-local destructor: `stop` must still reach it.
        let _ = killable::sleep(Duration::from_secs(3600));
    }
}

thread_local! {
    static BLOCKING: std::cell::RefCell<Option<BlockingDrop>> =
        const { std::cell::RefCell::new(None) };
}

/// A thread whose thread-local destructor blocks is not finished: `stop` still reaches it and
/// returns, instead of reporting it stopped and joining it without bound.
#[test]
fn regression_stop_reaches_a_blocking_thread_local_destructor() {
    in_child(
        "regression_stop_reaches_a_blocking_thread_local_destructor",
        LIMIT,
        || {
            let h = killable::spawn(|| {
                BLOCKING.with(|b| *b.borrow_mut() = Some(BlockingDrop));
            });
            wait_until(WAIT, "the destructor to block", || {
                DESTRUCTOR_BLOCKED.load(Ordering::SeqCst)
            });
            assert!(!h.is_finished(), "finished while its destructor blocks");
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || tx.send(h.stop(Duration::from_secs(5)).is_ok()));
            let stopped = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("stop returned");
            assert!(stopped, "the interrupt broke the destructor's sleep");
        },
    );
}

/// `stop` and `shutdown` take any grace, `Duration::MAX` included.
#[test]
fn regression_stop_and_shutdown_accept_duration_max() {
    in_child(
        "regression_stop_and_shutdown_accept_duration_max",
        LIMIT,
        || {
            let h = killable::spawn(|| killable::sleep(Duration::from_secs(3600)));
            assert!(h.stop(Duration::MAX).is_ok());
            let w = killable::spawn(|| killable::sleep(Duration::from_secs(3600)));
            assert!(killable::shutdown(Duration::MAX).all_stopped());
            assert!(w.join().unwrap().is_err());
        },
    );
}

/// Once an `InterruptCallback`'s drop has returned, its callback never runs, even from a snapshot
/// an interrupter took before.
#[test]
fn regression_callback_never_runs_after_its_drop() {
    let a_running = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    let ran_after_drop = Arc::new(AtomicBool::new(false));
    let (a, d, r) = (a_running.clone(), dropped.clone(), ran_after_drop.clone());
    let (ready_tx, ready_rx) = mpsc::channel();
    let h = killable::spawn(move || {
        let a2 = a.clone();
        let _slow = killable::on_interrupt(move || {
            a2.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(300));
        });
        let d2 = d.clone();
        let b = killable::on_interrupt(move || {
            if d2.load(Ordering::SeqCst) {
                r.store(true, Ordering::SeqCst);
            }
        });
        ready_tx.send(()).unwrap();
        wait_until(WAIT, "the slow callback", || a.load(Ordering::SeqCst));
        drop(b);
        d.store(true, Ordering::SeqCst);
    });
    ready_rx.recv().unwrap();
    h.interrupt(); // runs the slow callback here, then (before the fix) the dropped one
    h.join().unwrap();
    assert!(a_running.load(Ordering::SeqCst));
    assert!(dropped.load(Ordering::SeqCst));
    assert!(
        !ran_after_drop.load(Ordering::SeqCst),
        "a callback ran after its registration was dropped"
    );
}

/// A panicking callback does not keep the others from running, and a registration whose first
/// run panics is not left behind.
#[test]
fn regression_panicking_callback_skips_nothing() {
    testkit::quiet_panics("callback panics on purpose");
    let b_runs = Arc::new(AtomicUsize::new(0));
    let b = b_runs.clone();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let h = killable::spawn(move || {
        let _a = killable::on_interrupt(|| panic!("callback panics on purpose"));
        let _b = killable::on_interrupt(move || {
            b.fetch_add(1, Ordering::SeqCst);
        });
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        // Already interrupted: the new callback runs at once, panics, and must not stay listed.
        let late_runs = Arc::new(AtomicUsize::new(0));
        let l = late_runs.clone();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            killable::on_interrupt(move || {
                l.fetch_add(1, Ordering::SeqCst);
                panic!("callback panics on purpose");
            })
        }));
        assert!(r.is_err());
        late_runs
    });
    ready_rx.recv().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.interrupt()));
    assert!(r.is_err(), "the callback's panic reaches the interrupter");
    assert_eq!(b_runs.load(Ordering::SeqCst), 1, "the other callback ran");
    go_tx.send(()).unwrap();
    let t = h.thread().clone();
    let late_runs = h.join().unwrap();
    assert_eq!(late_runs.load(Ordering::SeqCst), 1);
    // The thread has ended; its registration must not have survived its panicking first run.
    drop(t);
}

/// A `fork` while a thread of the parent holds another thread's callback lock: interrupting that
/// thread's handle in the child returns (it names nobody there) instead of waiting forever.
#[test]
fn regression_fork_with_a_lost_threads_callback_lock_held() {
    in_child(
        "regression_fork_with_a_lost_threads_callback_lock_held",
        LIMIT,
        || {
            killable::current().interrupt();
            killable::clear_interrupt();
            let stop = Arc::new(AtomicBool::new(false));
            let s = stop.clone();
            let (tx, rx) = mpsc::channel();
            let worker = killable::spawn(move || {
                tx.send(killable::current()).unwrap();
                // Many registrations make each unregistration hold the list lock a while.
                let _many: Vec<_> = (0..5_000).map(|_| killable::on_interrupt(|| {})).collect();
                while !s.load(Ordering::Relaxed) {
                    drop(killable::on_interrupt(|| {}));
                }
            });
            let target = rx.recv().unwrap();
            let mut hung = 0;
            for _ in 0..100 {
                // SAFETY: the child only interrupts a handle and leaves with _exit.
                let pid = unsafe { libc::fork() };
                assert!(pid >= 0);
                if pid == 0 {
                    // SAFETY: alarm and _exit are async-signal-safe.
                    unsafe { libc::alarm(2) };
                    let _ = target.try_interrupt();
                    // SAFETY: as above.
                    unsafe { libc::_exit(0) };
                }
                let mut status = 0;
                // SAFETY: waits for our own child.
                while unsafe { libc::waitpid(pid, &mut status, 0) } != pid {}
                if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                    hung += 1;
                }
            }
            stop.store(true, Ordering::Relaxed);
            worker.join().unwrap();
            assert_eq!(
                hung, 0,
                "children that hung on a lost thread's callback lock"
            );
        },
    );
}

/// A seal is an interrupt: it runs the thread's interrupt callbacks.
#[test]
fn regression_seal_runs_interrupt_callbacks() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let (ready_tx, ready_rx) = mpsc::channel();
    let h = killable::spawn(move || {
        let _cb = killable::on_interrupt(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        ready_tx.send(()).unwrap();
        killable::park()
    });
    ready_rx.recv().unwrap();
    h.thread().seal().unwrap();
    assert!(h.join().unwrap().is_err());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// Stands for C code that blocks SIGUSR2 for a while, gets killed meanwhile, then unblocks it
/// with `SIG_UNBLOCK` (not by restoring a saved mask) and returns. It calls only
/// `pthread_sigmask` and owns nothing.
unsafe extern "C" fn block_then_unblock(arg: *mut c_void) {
    // SAFETY: the caller passes two AtomicBools (started, release) that outlive the call.
    let flags = unsafe { &*(arg as *const [AtomicBool; 2]) };
    // SAFETY: sigset_t is plain data; the set holds SIGUSR2 only.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        set
    };
    // SAFETY: changes this thread's mask.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    flags[0].store(true, Ordering::SeqCst);
    while !flags[1].load(Ordering::SeqCst) {
        std::hint::spin_loop();
    }
    // SAFETY: as above.
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
}

/// A kill that lands while the region's own code runs with another mask is postponed; when the
/// region returns, killable's signal must not stay blocked (later interrupts must still work).
#[test]
fn regression_postponed_kill_leaves_the_signal_unblocked() {
    in_child(
        "regression_postponed_kill_leaves_the_signal_unblocked",
        LIMIT,
        || {
            static FLAGS: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];
            let (tx, rx) = mpsc::channel::<()>();
            let h = killable::spawn(move || {
                // SAFETY: `block_then_unblock` holds no lock and does not allocate.
                let region = unsafe {
                    killable::kill_region(block_then_unblock, &FLAGS as *const _ as *mut c_void)
                };
                killable::clear_interrupt();
                tx.send(()).unwrap();
                (region, killable::sleep(Duration::from_secs(3600)))
            });
            wait_until(WAIT, "the region", || FLAGS[0].load(Ordering::SeqCst));
            h.thread().kill();
            std::thread::sleep(Duration::from_millis(50));
            FLAGS[1].store(true, Ordering::SeqCst);
            rx.recv().unwrap();
            testkit::wait_blocked(h.thread());
            h.interrupt();
            let r = h
                .join_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("the interrupt after the region was lost"));
            let (_region, slept) = r.unwrap();
            assert!(slept.is_err());
        },
    );
}

static APP_RUNS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn app_usr1(_sig: libc::c_int) {
    APP_RUNS.fetch_add(1, Ordering::SeqCst);
}

/// Stands for C code that blocks SIGUSR1 around a critical section and then spins: it calls
/// only `pthread_sigmask` and owns nothing.
unsafe extern "C" fn critical_then_spin(arg: *mut c_void) {
    // SAFETY: the caller passes two AtomicBools (started, release) that outlive the call.
    let flags = unsafe { &*(arg as *const [AtomicBool; 2]) };
    // SAFETY: sigset_t is plain data.
    let (set, mut old) = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        (set, std::mem::zeroed::<libc::sigset_t>())
    };
    // SAFETY: changes this thread's mask, saving the old one.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
    flags[0].store(true, Ordering::SeqCst);
    while !flags[1].load(Ordering::SeqCst) {
        std::hint::spin_loop();
    }
    // SAFETY: restores the saved mask.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    loop {
        std::hint::spin_loop();
    }
}

/// The application's own SIGUSR1, pending when killable's kill signal is sent, makes the kernel
/// drop the kill's signal (a standard signal is queued once): the one delivery left must serve
/// both.
#[test]
fn regression_kill_merged_with_an_applications_signal() {
    in_child(
        "regression_kill_merged_with_an_applications_signal",
        LIMIT,
        || {
            // SAFETY: installs the application's SIGUSR1 handler, before killable's.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = app_usr1 as *const () as usize;
                assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
            }
            killable::current().interrupt();
            killable::clear_interrupt();
            static FLAGS: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];
            let h = killable::spawn(|| {
                // SAFETY: `critical_then_spin` holds no lock and does not allocate.
                unsafe {
                    killable::kill_region(critical_then_spin, &FLAGS as *const _ as *mut c_void)
                }
            });
            wait_until(WAIT, "the critical section", || {
                FLAGS[0].load(Ordering::SeqCst)
            });
            let tid = h.thread().tid();
            // SAFETY: the application's own signal to a thread of this process.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_tgkill,
                    std::process::id() as i32,
                    tid,
                    libc::SIGUSR1,
                )
            };
            assert_eq!(r, 0);
            h.thread().kill(); // merged with the pending SIGUSR1
            FLAGS[1].store(true, Ordering::SeqCst);
            let r = h
                .join_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("the kill was lost"));
            assert_eq!(r.unwrap(), Err(killable::Killed));
            assert_eq!(
                APP_RUNS.load(Ordering::SeqCst),
                1,
                "the application's signal arrived"
            );
        },
    );
}

/// Exactly once: a target that sees its interrupt flag, returns and drops its registration at
/// once still has its callback run by the interrupter (the drop waits for the run).
#[test]
fn regression_callback_runs_once_even_if_the_target_drops_it_at_once() {
    for round in 0..500 {
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        let h = killable::spawn(move || {
            let _cb = killable::on_interrupt(move || {
                r.fetch_add(1, Ordering::SeqCst);
            });
            ready_tx.send(()).unwrap();
            while killable::check().is_ok() {
                std::hint::spin_loop();
            }
        });
        ready_rx.recv().unwrap();
        h.interrupt();
        h.join().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1, "round {round}");
    }
}

/// A callback that drops another registration of the same thread, whose run the same
/// interrupter still holds: no deadlock, and the dropped one does not run afterwards.
#[test]
fn regression_callback_dropping_another_registration() {
    in_child(
        "regression_callback_dropping_another_registration",
        LIMIT,
        || {
            let b_ran = Arc::new(AtomicBool::new(false));
            let (ready_tx, ready_rx) = mpsc::channel();
            let b2 = b_ran.clone();
            let h = killable::spawn(move || {
                let slot: Arc<std::sync::Mutex<Option<killable::InterruptCallback>>> =
                    Arc::new(std::sync::Mutex::new(None));
                let s = slot.clone();
                let _a = killable::on_interrupt(move || drop(s.lock().unwrap().take()));
                *slot.lock().unwrap() = Some(killable::on_interrupt(move || {
                    b2.store(true, Ordering::SeqCst)
                }));
                ready_tx.send(()).unwrap();
                killable::park()
            });
            ready_rx.recv().unwrap();
            h.interrupt();
            assert!(h.join().unwrap().is_err());
            assert!(!b_ran.load(Ordering::SeqCst), "ran after its drop returned");
        },
    );
}

thread_local! {
    static STD_SLEEPER: std::cell::RefCell<Option<StdSleeper>> =
        const { std::cell::RefCell::new(None) };
}

static STD_SLEEPING: AtomicBool = AtomicBool::new(false);

/// A thread-local destructor that sleeps with std's `sleep`, which panics on `ECANCELED`.
struct StdSleeper;

impl Drop for StdSleeper {
    fn drop(&mut self) {
        STD_SLEEPING.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// `stop` must not seal a thread that runs its thread-local destructors: std's calls would
/// panic there, and a panic in a thread-local destructor aborts the whole process.
#[test]
fn regression_stop_never_seals_a_thread_in_its_destructors() {
    in_child(
        "regression_stop_never_seals_a_thread_in_its_destructors",
        LIMIT,
        || {
            let h = killable::spawn(|| STD_SLEEPER.with(|s| *s.borrow_mut() = Some(StdSleeper)));
            wait_until(WAIT, "the destructor", || {
                STD_SLEEPING.load(Ordering::SeqCst)
            });
            let h = match h.stop(Duration::from_millis(400)) {
                Ok(r) => {
                    r.into_result().unwrap();
                    return;
                }
                Err(stuck) => stuck.into_handle(),
            };
            let r = h
                .join_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("the destructor never ended"));
            r.unwrap();
        },
    );
}
