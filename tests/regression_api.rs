//! Regression tests for the API of stopping, error reporting, `Condvar`, `try_clone` and
//! `wait_child_or_kill`: each `regression_*` test reproduces a defect found in review (it failed
//! before the fix), and the truth tables and stop edges at the end pin down what was found sound.
//!
//! Tests that seal run in a child process (`in_child`): valgrind does not implement seccomp.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use killable::io::{Interest, Interruptible, PollFd};
use killable::sync::Condvar;
use killable::{StopLevel, StopOptions};
use testkit::{in_child, quiet_panics, wait_blocked};

const LIMIT: Duration = Duration::from_secs(60);

/// Spins (no system call, so neither an interrupt nor a seal can touch it) for `d`.
fn spin_for(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// What the thread's cleanup sees: a plain std read of a socket that has data waiting. It
/// succeeds unless the thread was sealed (then `ECANCELED`).
fn cleanup_read() -> std::io::Result<usize> {
    let (mut a, mut b) = UnixStream::pair()?;
    b.write_all(b"x")?;
    a.read(&mut [0u8; 1])
}

/// `stop_with(grace, StopOptions::new().interrupt(false))` (kill, then seal) on a thread in
/// `killable::sleep`: the kill is its first stop request, and ends the sleep at once. The kill's
/// wait was skipped (the thread was in no kill region) and the thread sealed at once: its
/// cleanup failed with `ECANCELED`, and the stop said `Seal`. The wait is now skipped only after
/// the interrupt level.
#[test]
fn regression_kill_without_prior_interrupt_is_given_its_wait() {
    in_child(
        "regression_kill_without_prior_interrupt_is_given_its_wait",
        LIMIT,
        || {
            let h = killable::spawn(|| {
                let slept = killable::sleep(Duration::from_secs(3600));
                // Cleanup that takes a moment, then reads: a flush, a final log, a goodbye.
                spin_for(Duration::from_millis(50));
                (slept, cleanup_read().map_err(|e| e.raw_os_error()))
            });
            wait_blocked(h.thread());
            let t = h.thread().clone();
            let stopped = h
                .stop_with(Duration::from_secs(20), StopOptions::new().interrupt(false))
                .unwrap();
            let level = stopped.level();
            let (slept, cleanup) = stopped.into_result().unwrap();
            assert!(slept.is_err());
            eprintln!(
                "level {level:?}, sealed {}, cleanup {cleanup:?}",
                t.is_sealed()
            );
            assert_eq!(
                (level, t.is_sealed(), cleanup),
                (StopLevel::Kill, false, Ok(1)),
                "the kill's interrupt stopped the thread, yet it was sealed at once"
            );
        },
    );
}

/// The default levels, for a thread that clears its first interrupt (finishes the current item)
/// and stops on the second request: the kill is that second request (`StopLevel::Kill`'s docs:
/// "a kill region abandoned, or a second interrupt"). It was sealed at once instead.
#[test]
fn regression_thread_that_clears_its_interrupt_is_killed_not_sealed() {
    in_child(
        "regression_thread_that_clears_its_interrupt_is_killed_not_sealed",
        LIMIT,
        || {
            let h = killable::spawn(|| {
                // First request: finish the current item and keep serving.
                let _ = killable::sleep(Duration::from_secs(3600));
                killable::clear_interrupt();
                // Second request: stop, after a short cleanup.
                let slept = killable::sleep(Duration::from_secs(3600));
                spin_for(Duration::from_millis(50));
                (slept, cleanup_read().map_err(|e| e.raw_os_error()))
            });
            wait_blocked(h.thread());
            let t = h.thread().clone();
            let stopped = h.stop(Duration::from_secs(4)).unwrap();
            let level = stopped.level();
            let (slept, cleanup) = stopped.into_result().unwrap();
            assert!(slept.is_err());
            eprintln!(
                "level {level:?}, sealed {}, cleanup {cleanup:?}",
                t.is_sealed()
            );
            assert_eq!(
                (level, t.is_sealed(), cleanup),
                (StopLevel::Kill, false, Ok(1)),
                "the second interrupt (the kill) stopped the thread, yet it was sealed at once"
            );
        },
    );
}

/// A thread that computes in Rust past the interrupt's half of the grace, then calls into C
/// through `kill_region`: the region's entry finds the kill and returns `Err(Killed)`, so the
/// kill is what stops it. The thread was sealed too (the skip looked at regions only), its
/// cleanup failed and the stop said `Seal`. A thread in state `R` now gets the kill's wait.
#[test]
fn regression_region_entered_after_the_look_is_killed_not_sealed() {
    in_child(
        "regression_region_entered_after_the_look_is_killed_not_sealed",
        LIMIT,
        || {
            unsafe extern "C" fn forever(_: *mut std::ffi::c_void) {
                loop {
                    std::hint::spin_loop();
                }
            }
            // Generous: the spin ends at 5 s, between the kill's request (4 s) and the seal (6 s).
            let grace = Duration::from_secs(8);
            let h = killable::spawn(move || {
                spin_for(grace * 5 / 8); // past the interrupt's half, before the old kill's three quarters
                // SAFETY: `forever` holds nothing and calls nothing.
                let r = unsafe { killable::kill_region(forever, std::ptr::null_mut()) };
                spin_for(Duration::from_millis(50));
                (r, cleanup_read().map_err(|e| e.raw_os_error()))
            });
            let t = h.thread().clone();
            let stopped = h.stop(grace).unwrap();
            let level = stopped.level();
            let (r, cleanup) = stopped.into_result().unwrap();
            eprintln!(
                "region {r:?}, level {level:?}, sealed {}, cleanup {cleanup:?}",
                t.is_sealed()
            );
            assert_eq!(r, Err(killable::Killed));
            assert_eq!(
                (level, t.is_sealed(), cleanup),
                (StopLevel::Kill, false, Ok(1)),
                "the kill stopped the region, yet the thread was sealed and the stop says Seal"
            );
        },
    );
}

/// A killable read broken by a seal: the seal is also an interrupt, and killable's calls look at
/// the interrupt first, so the error is the interrupt's (`is_interrupt`), not `ECANCELED`. The
/// docs (`is_sealed`, the error tables of lib.rs and the README) said `ECANCELED`, "std's and
/// killable's I/O alike"; they now say this. After `clear_interrupt` the read reaches the
/// seal's filter: `ECANCELED`. (A documentation fix: this test pins the behaviour the docs now
/// describe.)
#[test]
fn regression_sealed_killable_read_reports_the_interrupt() {
    in_child(
        "regression_sealed_killable_read_reports_the_interrupt",
        LIMIT,
        || {
            let (a, _b) = UnixStream::pair().unwrap();
            let h = killable::spawn(move || {
                let mut a = Interruptible::new(a);
                let first = a.read(&mut [0u8; 1]);
                killable::clear_interrupt();
                let second = a.read(&mut [0u8; 1]);
                (first, second)
            });
            wait_blocked(h.thread());
            h.thread().seal().unwrap();
            let (first, second) = h.join().unwrap();
            let (first, second) = (first.unwrap_err(), second.unwrap_err());
            assert!(
                killable::is_interrupt(&first) && !killable::is_sealed(&first),
                "{first:?}"
            );
            assert!(
                killable::is_sealed(&second) && !killable::is_interrupt(&second),
                "{second:?}"
            );
        },
    );
}

/// std's `wait_timeout_while` on a poisoned mutex waits (the condition holds) and returns
/// `Err(PoisonError((guard, timed_out = true)))`. killable's returned at once with
/// `timed_out == false` (the condition "no longer holds"): `wait_inner` returned on the first
/// `lock()`'s poison. It now runs the loop on the guard inside the poison and reports the
/// poison on return.
#[test]
fn regression_condvar_on_poisoned_mutex_waits() {
    quiet_panics("poison it");
    let lock = Arc::new(Mutex::new(()));
    let l = lock.clone();
    let _ = std::thread::spawn(move || {
        let _g = l.lock().unwrap();
        panic!("poison it");
    })
    .join();
    assert!(lock.is_poisoned());
    let wait = Duration::from_millis(300);

    // std, for reference.
    let std_cv = std::sync::Condvar::new();
    let g = lock.lock().unwrap_or_else(PoisonError::into_inner);
    let t = Instant::now();
    let (g, std_res) = std_cv
        .wait_timeout_while(g, wait, |_| true)
        .unwrap_err()
        .into_inner();
    let std_took = t.elapsed();
    drop(g);
    assert!(std_res.timed_out() && std_took >= wait);

    // killable.
    let cv = Condvar::new();
    let t = Instant::now();
    let (_g, timed_out) = cv
        .wait_timeout_while(&lock, wait, |_| true)
        .unwrap()
        .unwrap_err()
        .into_inner();
    let took = t.elapsed();
    eprintln!(
        "std: waited {std_took:?}, timed_out true; killable: waited {took:?}, timed_out {timed_out}"
    );
    assert!(
        timed_out && took >= wait,
        "a poisoned mutex: killable returned after {took:?} with timed_out {timed_out} \
         (std waits {std_took:?} and says timed out)"
    );
}

/// `Condvar::wait`'s guard check took `mutex.try_lock()` as the `match` scrutinee and panicked
/// with that probe guard alive: the unwinding dropped it and poisoned `mutex`, which nobody
/// held. The check now takes no lock on `mutex` for a sized `T`.
#[test]
fn regression_condvar_guard_check_poisons_nothing() {
    quiet_panics("not of the mutex");
    let (a, b) = (Mutex::new(0u8), Mutex::new(0u8));
    let cv = Condvar::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let guard_of_b = b.lock().unwrap();
        let _ = cv.wait(&a, guard_of_b);
    }));
    assert!(r.is_err(), "the check did not panic");
    assert!(
        !a.is_poisoned(),
        "the check's own probe guard poisoned `a`, a mutex nobody held when the panic began"
    );
}

/// `StopOutcome::elapsed` was the time the escalation got round to a thread, not when it
/// stopped: a thread stopped by the interrupt at once, escalated after one that holds out for
/// the interrupt's half of the grace (std's `accept`), was reported at half the grace. Each
/// thread now stamps its own finishing time.
#[test]
fn regression_outcome_elapsed_is_the_threads_own() {
    in_child(
        "regression_outcome_elapsed_is_the_threads_own",
        LIMIT,
        || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let slow = killable::spawn(move || listener.accept().map(drop));
            let fast = killable::spawn(|| killable::sleep(Duration::from_secs(3600)));
            wait_blocked(slow.thread());
            wait_blocked(fast.thread());
            let grace = Duration::from_secs(4);
            let report = killable::shutdown(grace);
            eprint!("{report}");
            let o = report
                .outcomes()
                .iter()
                .find(|o| o.thread().id() == fast.thread().id())
                .unwrap();
            assert_eq!(o.level(), Some(StopLevel::Interrupt));
            assert!(
                o.elapsed() < Duration::from_millis(500),
                "the fast thread stopped at once but is reported after {:?}",
                o.elapsed()
            );
            drop((slow.join(), fast.join()));
        },
    );
}

/// `wrapped.try_clone()` on an `Interruptible<PipeReader>` resolved through `Deref` to std's
/// and returned a bare `PipeReader`, whose reads an interrupt does not break. Every descriptor
/// owner (`T: AsFd + From<OwnedFd>`) now has the wrapped `try_clone`.
#[test]
fn regression_try_clone_of_a_wrapped_pipe_is_killable() {
    let (reader, mut writer) = std::io::pipe().unwrap();
    let reader = Interruptible::new(reader);
    let clone: Interruptible<std::io::PipeReader> = reader.try_clone().unwrap();
    let h = killable::spawn(move || {
        let mut clone = clone;
        // read_exact, as std's loops do: an error that is an interrupt must end it.
        clone.read_exact(&mut [0u8; 1])
    });
    wait_blocked(h.thread());
    h.interrupt();
    let stopped = h.wait_timeout(Duration::from_millis(500)).unwrap();
    writer.write_all(b"x").unwrap(); // let it go either way
    let r = h.join().unwrap();
    assert!(
        stopped && r.as_ref().is_err_and(killable::is_interrupt),
        "an interrupt did not stop a read of `wrapped.try_clone()` ({r:?}): the clone is a bare PipeReader"
    );
}

/// The wrapped `try_clone` of a `File` and an `OwnedFd` stays wrapped too, and shares the open
/// file description (the offset moves for both).
#[test]
fn regression_try_clone_of_a_wrapped_file_and_fd_stays_wrapped() {
    use std::io::Seek;
    let path = std::env::temp_dir().join(format!("killable-regression-api-{}", std::process::id()));
    std::fs::write(&path, b"abc").unwrap();
    let file = Interruptible::new(std::fs::File::open(&path).unwrap());
    let clone: Interruptible<std::fs::File> = file.try_clone().unwrap();
    let mut first = [0u8; 1];
    (&file).read_exact(&mut first).unwrap();
    let mut clone = clone;
    clone.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"b", "the clone shares the offset");
    assert_eq!(clone.get_mut().stream_position().unwrap(), 2);
    let fd = Interruptible::new(std::os::fd::OwnedFd::from(clone.into_inner()));
    let fd2: Interruptible<std::os::fd::OwnedFd> = fd.try_clone().unwrap();
    assert_ne!(fd.as_raw_fd(), fd2.as_raw_fd());
    std::fs::remove_file(&path).unwrap();
}

/// The guard check asked only whether `mutex` was locked, so a guard of `b` was accepted for
/// `a` whenever anybody held `a` (by the caller itself, the relock deadlocked). The check is now
/// exact: the guard's value must lie inside `mutex`.
#[test]
fn regression_condvar_guard_check_is_exact() {
    quiet_panics("not of the mutex");
    let a = Arc::new(Mutex::new(0u64));
    let held = a.lock().unwrap(); // someone else holds `a`
    let a2 = a.clone();
    let h = killable::spawn(move || {
        let b = Mutex::new(0u64);
        let cv = Condvar::new();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let guard_of_b = b.lock().unwrap();
            cv.wait(&a2, guard_of_b).is_err() // blocks until interrupted: accepted
        }))
    });
    // Accepted, the wait would block until interrupted: give it time to panic, then stop it.
    let finished = h.wait_timeout(Duration::from_secs(10)).unwrap();
    h.interrupt();
    let r = h.join().unwrap();
    drop(held);
    assert!(finished, "the wait ran");
    assert!(
        r.is_err(),
        "a guard of another mutex was accepted (the wait ran: {r:?})"
    );
}

/// The caller itself holds `a` and passes a guard of `b`: a panic, not a wait that would end in
/// a self-deadlock on `a`'s relock; `a` is not poisoned (its guard is not the one unwound).
#[test]
fn regression_condvar_guard_check_with_the_callers_own_lock() {
    quiet_panics("not of the mutex");
    let (a, b) = (Mutex::new(1u32), Mutex::new(2u32));
    let cv = Condvar::new();
    let guard_of_a = a.lock().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let guard_of_b = b.lock().unwrap();
        let _ = cv.wait_timeout(&a, guard_of_b, Duration::from_secs(3600));
    }));
    assert!(r.is_err(), "a guard of `b` was accepted for `a`");
    drop(guard_of_a);
    assert!(!a.is_poisoned());
    // The right guard is accepted (and, for a zero-sized value, too).
    let g = a.lock().unwrap();
    let (_g, timed_out) = cv
        .wait_timeout(&a, g, Duration::from_millis(1))
        .unwrap()
        .unwrap();
    assert!(timed_out);
    let unit = Mutex::new(());
    let g = unit.lock().unwrap();
    assert!(cv.wait_timeout(&unit, g, Duration::from_millis(1)).is_ok());
}

/// A `kill_region` entered after its `timeout` passed is not run and returns `Err(Killed)`:
/// `is_killed`, not `is_timeout`. The tables (lib.rs, README) promised `is_killed` only for an
/// abandoned region; they now list a region refused at entry (for an interrupt, a kill, or a
/// passed timeout). `Killed` has no room for the reason: `check()` tells the timeout apart.
/// (A documentation fix: this pins the behaviour the docs now describe.)
#[test]
fn regression_kill_region_after_a_timeout() {
    unsafe extern "C" fn nothing(_: *mut std::ffi::c_void) {}
    let (err, why) = killable::spawn(|| {
        let mut why = None;
        let r = killable::timeout(Duration::from_millis(1), || {
            spin_for(Duration::from_millis(5));
            // SAFETY: `nothing` does nothing.
            let r = unsafe { killable::kill_region(nothing, std::ptr::null_mut()) };
            why = killable::check().err();
            r
        });
        (r, why)
    })
    .join()
    .unwrap();
    let err: io::Error = err.unwrap_err().into();
    assert!(killable::is_killed(&err) && !killable::is_timeout(&err));
    assert!(why.is_some_and(|e| e.is_timeout()), "{why:?}");
}

/// `Stuck` had no accessors for the level tried and the time taken.
#[test]
fn regression_stuck_reports_level_and_elapsed() {
    let lock = Arc::new(Mutex::new(()));
    let held = lock.lock().unwrap();
    let l = lock.clone();
    let h = killable::spawn(move || drop(l.lock())); // a std futex wait: nothing reaches it
    wait_blocked(h.thread());
    let grace = Duration::from_millis(200);
    let stuck = h
        .stop_with(grace, StopOptions::new().kill(false).seal(false))
        .unwrap_err();
    assert_eq!(stuck.level(), StopLevel::Interrupt);
    assert!(stuck.elapsed() >= grace, "{stuck:?}");
    drop(held);
    stuck.into_handle().join().unwrap();
}

/// `stop_with` with no level panics before it touches the thread (no interrupt is sent).
#[test]
fn regression_stop_with_no_levels_panics_first() {
    quiet_panics("chose no level");
    let h = killable::spawn(|| killable::sleep(Duration::from_secs(3600)));
    let t = h.thread().clone();
    let none = StopOptions::new().interrupt(false).kill(false).seal(false);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = h.stop_with(Duration::from_secs(1), none);
    }));
    assert!(r.is_err());
    assert!(
        !t.is_interrupted(),
        "the thread was interrupted before the panic"
    );
    t.interrupt();
}

/// `wait_child_or_kill` on a thread sealed while it waits: the error is the seal's, and the
/// child is killed and reaped without a blocking `waitpid` (which the seal refuses).
#[test]
fn regression_wait_child_or_kill_on_a_sealed_thread() {
    in_child(
        "regression_wait_child_or_kill_on_a_sealed_thread",
        LIMIT,
        || {
            let mut child = std::process::Command::new("sleep")
                .arg("3600")
                .spawn()
                .unwrap();
            let pid = child.id();
            let h = killable::spawn(move || {
                let r = killable::wait_child_or_kill(&mut child);
                (r, child.try_wait())
            });
            wait_blocked(h.thread());
            h.thread().seal().unwrap();
            let (r, after) = h.join().unwrap();
            let e = r.unwrap_err();
            assert!(
                killable::is_sealed(&e) || killable::is_interrupt(&e),
                "{e:?}"
            );
            // Reaped: no process with that id is our child any more.
            assert!(after.is_err() || after.unwrap().is_some());
            // SAFETY: kill with signal 0 only checks for existence.
            let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
            assert!(!alive, "the child {pid} is still there");
        },
    );
}

// ---- what the review found sound -----------------------------------------------------------

type Call = Box<dyn FnOnce() -> io::Error + Send>;
type MakeCall = Box<dyn Fn() -> Call>;

fn io_of<T>(r: Result<T, killable::Interrupted>) -> io::Error {
    match r {
        Ok(_) => panic!("the call returned"),
        Err(e) => e.into(),
    }
}
fn io_err<T>(r: io::Result<T>) -> io::Error {
    match r {
        Ok(_) => panic!("the call returned"),
        Err(e) => e,
    }
}

/// A TCP address whose connect hangs: a listener whose accept queue is full.
fn hanging_addr() -> (TcpListener, Vec<TcpStream>, std::net::SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: a live listening socket.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let addr = l.local_addr().unwrap();
    let mut held = Vec::new();
    while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        held.push(s);
        assert!(held.len() < 16, "the accept queue never filled");
    }
    (l, held, addr)
}

fn calls() -> Vec<(&'static str, MakeCall)> {
    vec![
        (
            "read",
            Box::new(|| -> Call {
                let (a, b) = UnixStream::pair().unwrap();
                Box::new(move || {
                    let _b = b;
                    let mut a = Interruptible::new(a);
                    io_err(a.read(&mut [0u8; 1]))
                })
            }),
        ),
        (
            "write",
            Box::new(|| -> Call {
                let (a, b) = UnixStream::pair().unwrap();
                Box::new(move || {
                    let _b = b;
                    let mut a = Interruptible::new(a);
                    let buf = vec![0u8; 1 << 16];
                    loop {
                        if let Err(e) = a.write(&buf) {
                            return e;
                        }
                    }
                })
            }),
        ),
        (
            "accept",
            Box::new(|| -> Call {
                let l = Interruptible::new(TcpListener::bind("127.0.0.1:0").unwrap());
                Box::new(move || io_err(l.accept()))
            }),
        ),
        (
            "connect (2 addresses)",
            Box::new(|| -> Call {
                Box::new(move || {
                    let (_l, _held, addr) = hanging_addr();
                    let good = TcpListener::bind("127.0.0.1:0").unwrap();
                    io_err(Interruptible::connect_tcp(
                        &[addr, good.local_addr().unwrap()][..],
                    ))
                })
            }),
        ),
        (
            "recv",
            Box::new(|| -> Call {
                let s = Interruptible::new(UdpSocket::bind("127.0.0.1:0").unwrap());
                Box::new(move || io_err(s.recv_from(&mut [0u8; 8])))
            }),
        ),
        (
            "sleep",
            Box::new(|| -> Call { Box::new(|| io_of(killable::sleep(Duration::from_secs(3600)))) }),
        ),
        (
            "park",
            Box::new(|| -> Call {
                Box::new(|| {
                    loop {
                        if let Err(e) = killable::park() {
                            return e.into();
                        }
                    }
                })
            }),
        ),
        (
            "Condvar::wait",
            Box::new(|| -> Call {
                Box::new(|| {
                    let (m, cv) = (Mutex::new(()), Condvar::new());
                    let mut g = m.lock().unwrap();
                    loop {
                        match cv.wait(&m, g) {
                            Ok(r) => g = r.unwrap(),
                            Err(e) => return e.into(),
                        }
                    }
                })
            }),
        ),
        (
            "Condvar::wait_timeout_while",
            Box::new(|| -> Call {
                Box::new(|| {
                    let (m, cv) = (Mutex::new(()), Condvar::new());
                    io_of(cv.wait_timeout_while(&m, Duration::from_secs(3600), |_| true))
                })
            }),
        ),
        (
            "JoinHandle::wait",
            Box::new(|| -> Call {
                Box::new(|| {
                    let other = killable::Builder::new()
                        .daemon(true)
                        .spawn(|| std::thread::sleep(Duration::from_secs(3600)))
                        .unwrap();
                    io_of(other.wait())
                })
            }),
        ),
        (
            "wait_child_or_kill",
            Box::new(|| -> Call {
                Box::new(|| {
                    let mut c = std::process::Command::new("sleep")
                        .arg("3600")
                        .spawn()
                        .unwrap();
                    let e = io_err(killable::wait_child_or_kill(&mut c));
                    assert!(c.try_wait().unwrap().is_some(), "child left behind");
                    e
                })
            }),
        ),
        (
            "poll",
            Box::new(|| -> Call {
                Box::new(|| {
                    let (a, _b) = UnixStream::pair().unwrap();
                    let mut fds = [PollFd::new(
                        std::os::fd::AsFd::as_fd(&a),
                        Interest::READABLE,
                    )];
                    io_err(killable::io::poll(&mut fds, None))
                })
            }),
        ),
    ]
}

fn table(e: &io::Error) -> (bool, bool, bool, io::ErrorKind) {
    (
        killable::is_interrupt(e),
        killable::is_timeout(e),
        killable::is_sealed(e),
        e.kind(),
    )
}

#[test]
fn regression_truth_tables() {
    for (name, make) in calls() {
        // Interrupt.
        let call = make();
        let h = killable::spawn(call);
        testkit::wait_blocked(h.thread());
        h.interrupt();
        let e = h.join().unwrap();
        assert_eq!(
            table(&e),
            (true, false, false, io::ErrorKind::Other),
            "{name} interrupted: {e:?}"
        );
        // Timeout.
        let call = make();
        let e = killable::spawn(move || killable::timeout(Duration::from_millis(30), call))
            .join()
            .unwrap();
        assert_eq!(
            table(&e),
            (false, true, false, io::ErrorKind::TimedOut),
            "{name} timed out: {e:?}"
        );
        // A timeout nested in a longer one, the outer expiring first.
        let call = make();
        let e = killable::spawn(move || {
            killable::timeout(Duration::from_millis(30), || {
                killable::timeout(Duration::from_secs(3600), call)
            })
        })
        .join()
        .unwrap();
        assert_eq!(
            table(&e),
            (false, true, false, io::ErrorKind::TimedOut),
            "{name} nested: {e:?}"
        );
        // Both: the timeout has passed and an interrupt is pending: the interrupt wins.
        let call = make();
        let e = killable::spawn(move || {
            killable::timeout(Duration::from_millis(1), || {
                std::thread::sleep(Duration::from_millis(5));
                killable::current().interrupt();
                call()
            })
        })
        .join()
        .unwrap();
        assert_eq!(
            table(&e),
            (true, false, false, io::ErrorKind::Other),
            "{name} both: {e:?}"
        );
        eprintln!("{name}: sound");
    }
}

#[test]
fn regression_stop_edges() {
    // A finished thread's result and a panic are returned; zero grace on a finished thread.
    let h = killable::spawn(|| 7);
    h.wait().unwrap();
    let s = h.stop(Duration::ZERO).unwrap();
    assert_eq!(
        (s.level(), s.elapsed()),
        (killable::StopLevel::AlreadyFinished, Duration::ZERO)
    );
    assert_eq!(s.into_result().unwrap(), 7);
    let h = killable::spawn(|| -> () {
        let _ = killable::sleep(Duration::from_secs(3600));
        panic!("after the interrupt")
    });
    testkit::quiet_panics("after the interrupt");
    testkit::wait_blocked(h.thread());
    let s = h
        .stop_with(
            Duration::from_secs(10),
            killable::StopOptions::new().seal(false),
        )
        .unwrap();
    assert_eq!(s.level(), killable::StopLevel::Interrupt);
    assert!(s.into_result().is_err());
    // Kill only, on a thread in a killable sleep: the kill's interrupt stops it, level Kill.
    let h = killable::spawn(|| killable::sleep(Duration::from_secs(3600)));
    testkit::wait_blocked(h.thread());
    let s = h
        .stop_with(
            Duration::from_secs(10),
            killable::StopOptions::new().interrupt(false).seal(false),
        )
        .unwrap();
    assert_eq!(s.level(), killable::StopLevel::Kill);
    // Stuck keeps the handle; the thread's result comes back through it.
    let lock = Arc::new(Mutex::new(()));
    let held = lock.lock().unwrap();
    let l = lock.clone();
    let h = killable::spawn(move || {
        drop(l.lock());
        9
    });
    testkit::wait_blocked(h.thread());
    let stuck = h
        .stop_with(
            Duration::from_millis(100),
            killable::StopOptions::new().seal(false),
        )
        .unwrap_err();
    drop(held);
    assert_eq!(stuck.into_handle().join().unwrap(), 9);
}
