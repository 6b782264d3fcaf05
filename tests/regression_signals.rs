//! Regression tests for the signal, kill-region, callback, fork and spawn defects found by the
//! hardening review. Each body that forks, replaces a handler or could hang runs in its own child
//! process (`testkit::in_child`), bounded by an alarm.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use testkit::{in_child, wait_until};

const LIMIT: Duration = Duration::from_secs(60);

/// Stands for a C library function that never returns: it makes no call and owns nothing, so
/// abandoning it skips nothing.
unsafe extern "C" fn spin(started: *mut c_void) {
    // SAFETY: the caller passes an AtomicBool that outlives the call.
    let started = unsafe { &*(started as *const AtomicBool) };
    started.store(true, Ordering::SeqCst);
    loop {
        std::hint::spin_loop();
    }
}

static IN_HANDLER: AtomicBool = AtomicBool::new(false);
static RELEASE: AtomicBool = AtomicBool::new(false);
static HANDLER_DONE: AtomicUsize = AtomicUsize::new(0);

/// An application's signal handler written in Rust, with a destructor: it must never be jumped
/// over.
extern "C" fn slow_handler(_sig: libc::c_int) {
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            HANDLER_DONE.fetch_add(1, Ordering::SeqCst);
        }
    }
    let _done = Done;
    IN_HANDLER.store(true, Ordering::SeqCst);
    while !RELEASE.load(Ordering::SeqCst) {
        std::hint::spin_loop();
    }
}

/// Whether killable's signal is pending for thread `tid` (the `SigPnd` line of its status).
fn our_signal_pending(tid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("SigPnd:")).unwrap();
    let mask = u64::from_str_radix(line["SigPnd:".len()..].trim(), 16).unwrap();
    mask & (1 << (killable::signal() - 1)) != 0
}

/// A kill landing while another signal handler runs on top of a kill region must not jump over
/// that handler's frames: it waits until the handler has returned, then abandons the region.
#[test]
fn regression_kill_never_jumps_over_another_handler() {
    in_child(
        "regression_kill_never_jumps_over_another_handler",
        LIMIT,
        || {
            // SAFETY: installs a handler for SIGUSR2 in this child process only.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = slow_handler as *const () as usize;
                assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
            }
            static STARTED: AtomicBool = AtomicBool::new(false);
            let h = killable::spawn(|| {
                // SAFETY: `spin` holds no lock, does not allocate and calls nothing.
                unsafe { killable::kill_region(spin, &STARTED as *const AtomicBool as *mut c_void) }
            });
            wait_until(Duration::from_secs(10), "the region", || {
                STARTED.load(Ordering::SeqCst)
            });
            let tid = h.thread().tid();
            // SAFETY: sends SIGUSR2 to a thread of this process that is running (in its region).
            let r = unsafe {
                libc::syscall(
                    libc::SYS_tgkill,
                    std::process::id() as i32,
                    tid,
                    libc::SIGUSR2,
                )
            };
            assert_eq!(r, 0);
            wait_until(Duration::from_secs(10), "the handler", || {
                IN_HANDLER.load(Ordering::SeqCst)
            });
            h.thread().kill();
            // The kill either jumped (the defect: the thread finishes with the handler
            // abandoned) or waits, pending, until the handler returns.
            wait_until(Duration::from_secs(10), "the kill to land", || {
                h.is_finished() || our_signal_pending(tid)
            });
            assert!(
                !h.is_finished(),
                "the kill jumped out of the handler running on top of the region"
            );
            RELEASE.store(true, Ordering::SeqCst);
            let r = h.join_timeout(Duration::from_secs(10)).unwrap_or_else(|_| {
                panic!("the pending kill abandons the region once the handler returned")
            });
            assert_eq!(r.unwrap(), Err(killable::Killed));
            assert_eq!(
                HANDLER_DONE.load(Ordering::SeqCst),
                1,
                "the handler ran to its end"
            );
        },
    );
}

/// A thread interrupting the forking thread at the moment of `fork` must not leave the child a
/// lock held by a thread that does not exist there.
#[test]
fn regression_fork_while_interrupted_leaves_nothing_locked() {
    in_child(
        "regression_fork_while_interrupted_leaves_nothing_locked",
        LIMIT,
        || {
            let (tx, rx) = mpsc::channel();
            let forker = killable::spawn(move || {
                let me = killable::current();
                tx.send(me).unwrap();
                let _cb = killable::on_interrupt(|| {});
                let mut deadlocked = 0;
                for _ in 0..300 {
                    killable::clear_interrupt();
                    // SAFETY: the child runs only fork-safe code (killable's fork-aware state,
                    // no allocation outside glibc's fork-safe malloc) and leaves with _exit.
                    let pid = unsafe { libc::fork() };
                    assert!(pid >= 0);
                    if pid == 0 {
                        // SAFETY: alarm and _exit are async-signal-safe.
                        unsafe { libc::alarm(5) };
                        let cb = killable::on_interrupt(|| {});
                        killable::current().interrupt();
                        drop(cb);
                        // SAFETY: as above.
                        unsafe { libc::_exit(0) };
                    }
                    let mut status = 0;
                    // This thread is being interrupted all along: retry EINTR.
                    // SAFETY: waits for our own child.
                    while unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
                        assert_eq!(
                            std::io::Error::last_os_error().raw_os_error(),
                            Some(libc::EINTR)
                        );
                    }
                    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                        deadlocked += 1;
                    }
                }
                deadlocked
            });
            let target = rx.recv().unwrap();
            let stop = AtomicBool::new(false);
            std::thread::scope(|s| {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        target.interrupt();
                        std::hint::spin_loop();
                    }
                });
                let deadlocked = forker.join().unwrap();
                stop.store(true, Ordering::Relaxed);
                assert_eq!(deadlocked, 0, "children that hung on an inherited lock");
            });
        },
    );
}

/// Writes `value` to /proc/sys/kernel/ns_last_pid, so that the next thread created gets the id
/// `value + 1` (if it is free). Needs root; returns whether it worked.
fn set_last_pid(value: i32) -> bool {
    std::fs::write("/proc/sys/kernel/ns_last_pid", value.to_string()).is_ok()
}

/// A `Thread` of a thread adopted by `current()` before a `fork` names a thread of the parent:
/// in the child it says the thread is gone and signals nobody, even a child thread that was
/// given the same id.
#[test]
fn regression_stale_handle_after_fork_signals_nobody() {
    in_child(
        "regression_stale_handle_after_fork_signals_nobody",
        LIMIT,
        || {
            // Install killable's handler before the fork.
            killable::current().interrupt();
            killable::clear_interrupt();
            let (tx, rx) = mpsc::channel();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let adopted = std::thread::spawn(move || {
                tx.send(killable::current()).unwrap();
                let _ = go_rx.recv();
            });
            let stale = rx.recv().unwrap();
            let stale_tid = stale.tid();
            // SAFETY: the child runs its checks and leaves with _exit.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                // SAFETY: alarm is async-signal-safe.
                unsafe { libc::alarm(20) };
                let code = stale_child(&stale, stale_tid);
                // SAFETY: _exit is always safe.
                unsafe { libc::_exit(code) };
            }
            // The parent's thread ends, so its id can be given to a thread of the child.
            go_tx.send(()).unwrap();
            adopted.join().unwrap();
            let mut status = 0;
            // SAFETY: waits for our own child.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(libc::WIFEXITED(status), "child status {status:#x}");
            match libc::WEXITSTATUS(status) {
                0 => {}
                2 => println!("ns_last_pid is not writable here: checked is_finished only"),
                1 => panic!("the stale handle does not say the thread is gone"),
                3 => panic!("interrupt() through the stale handle broke a stranger's read"),
                c => panic!("child failed with {c}"),
            }
        },
    );
}

fn stale_child(stale: &killable::Thread, stale_tid: i32) -> i32 {
    if !stale.is_finished() {
        return 1;
    }
    // Wait until the parent's thread is gone, then have a thread of ours take its id.
    while std::path::Path::new(&format!("/proc/{stale_tid}")).exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (r, mut w) = std::io::pipe().unwrap();
    use std::os::fd::AsRawFd;
    let rfd = r.as_raw_fd();
    for _ in 0..50 {
        if !set_last_pid(stale_tid - 1) {
            return 2;
        }
        let (tid_tx, tid_rx) = mpsc::channel();
        let stranger = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            let mut b = [0u8; 1];
            // A plain read, not killable's: a signal would make it fail with EINTR.
            // SAFETY: reads one byte into `b`.
            let n = unsafe { libc::read(rfd, b.as_mut_ptr().cast(), 1) };
            n == 1
        });
        let tid = tid_rx.recv().unwrap();
        if tid != stale_tid {
            use std::io::Write;
            w.write_all(b"x").unwrap();
            stranger.join().unwrap();
            continue;
        }
        // A plain std thread that killable does not know: `testkit::wait_blocked` cannot
        // diagnose it, so its state is read from /proc.
        wait_until(testkit::BLOCK_LIMIT, "the stranger to block", || {
            testkit::task_state(tid) == Some('S')
        });
        let _ = stale.try_interrupt();
        let _ = stale.seal();
        std::thread::sleep(Duration::from_millis(50));
        use std::io::Write;
        w.write_all(b"x").unwrap();
        return if stranger.join().unwrap() { 0 } else { 3 };
    }
    2
}

/// A seal requested before the thread has published its id (right after `spawn`) is not lost.
#[test]
fn regression_seal_right_after_spawn_is_not_lost() {
    in_child(
        "regression_seal_right_after_spawn_is_not_lost",
        LIMIT,
        || {
            // std's sleep panics on ECANCELED ("left: 125, right: 4"): expected here.
            testkit::quiet_panics("125");
            for round in 0..100 {
                let h = killable::spawn(|| {
                    // std's sleep retries EINTR: only the seal ends it (with a panic).
                    std::thread::sleep(Duration::from_secs(3600));
                });
                let sealed = h.thread().seal();
                assert!(sealed.is_ok(), "round {round}: {sealed:?}");
                assert!(h.thread().is_sealed(), "round {round}");
                let r = h
                    .join_timeout(Duration::from_secs(10))
                    .unwrap_or_else(|_| panic!("ended"));
                assert!(r.is_err(), "std's sleep panicked on ECANCELED");
            }
        },
    );
}

/// An interrupt or a kill right after `spawn` reaches the thread's first killable call or region.
#[test]
fn interrupt_and_kill_right_after_spawn_are_not_lost() {
    for _ in 0..100 {
        let h = killable::spawn(|| killable::sleep(Duration::from_secs(3600)));
        h.interrupt();
        let r = h
            .join_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("ended"));
        assert!(r.unwrap().is_err());
    }
    static NEVER: AtomicBool = AtomicBool::new(false);
    for _ in 0..100 {
        let h = killable::spawn(|| {
            // SAFETY: `spin` holds no lock, does not allocate and calls nothing.
            unsafe { killable::kill_region(spin, &NEVER as *const AtomicBool as *mut c_void) }
        });
        h.thread().kill();
        let r = h
            .join_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("ended"));
        assert_eq!(r.unwrap(), Err(killable::Killed));
    }
}

/// A's callback interrupts B and B's interrupts A: `a.interrupt()` returns.
#[test]
fn regression_callbacks_that_interrupt_each_other() {
    in_child(
        "regression_callbacks_that_interrupt_each_other",
        LIMIT,
        || {
            let (a_tx, a_rx) = mpsc::channel::<killable::Thread>();
            let (b_tx, b_rx) = mpsc::channel::<killable::Thread>();
            let (ready_tx, ready_rx) = mpsc::channel::<()>();
            let ready_b = ready_tx.clone();
            let a = killable::spawn(move || {
                let b = b_rx.recv().unwrap();
                let _cb = killable::on_interrupt(move || b.interrupt());
                ready_tx.send(()).unwrap();
                killable::park()
            });
            let b = killable::spawn(move || {
                let a = a_rx.recv().unwrap();
                let _cb = killable::on_interrupt(move || a.interrupt());
                ready_b.send(()).unwrap();
                killable::park()
            });
            a_tx.send(a.thread().clone()).unwrap();
            b_tx.send(b.thread().clone()).unwrap();
            ready_rx.recv().unwrap();
            ready_rx.recv().unwrap();
            a.interrupt();
            assert!(a.join().unwrap().is_err());
            assert!(b.join().unwrap().is_err());
        },
    );
}

/// `set_signal` refuses signals whose default action or disposition the process relies on.
#[test]
fn regression_set_signal_refuses_signals_chaining_cannot_reproduce() {
    in_child(
        "regression_set_signal_refuses_signals_chaining_cannot_reproduce",
        LIMIT,
        || {
            for sig in [
                libc::SIGTERM,
                libc::SIGINT,
                libc::SIGHUP,
                libc::SIGCHLD,
                libc::SIGPIPE,
                libc::SIGALRM,
                libc::SIGQUIT,
                libc::SIGWINCH,
            ] {
                let e = killable::set_signal(sig).expect_err("refused");
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{sig}: {e}");
                assert!(e.to_string().contains("SIGUSR1"), "{e}");
            }
            assert_eq!(killable::signal(), libc::SIGUSR1);
            killable::set_signal(libc::SIGRTMIN() + 2).unwrap();
            killable::set_signal(libc::SIGUSR2).unwrap();
        },
    );
}

/// A thread spawned by a thread with a pending interrupt starts interrupted; the spawner's own
/// interrupt stays pending.
#[test]
fn regression_spawned_by_an_interrupted_thread_starts_interrupted() {
    let h = killable::spawn(|| {
        killable::current().interrupt();
        let child = killable::spawn(|| {
            (
                killable::is_interrupted(),
                killable::sleep(Duration::from_secs(3600)).is_err(),
            )
        });
        let r = child
            .join_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("ended"));
        (r.unwrap(), killable::is_interrupted())
    });
    let ((child_interrupted, child_sleep_failed), still_pending) = h.join().unwrap();
    assert!(child_interrupted && child_sleep_failed);
    assert!(still_pending);
    // A thread that is not interrupted spawns threads that are not.
    let clean = killable::spawn(|| killable::spawn(killable::is_interrupted).join().unwrap());
    assert!(!clean.join().unwrap());
}
