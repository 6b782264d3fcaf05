//! `spawn_blocking` and `BlockingPool` without an async runtime (`futures::executor::block_on`):
//! results and panics, aborts and drops, thread reuse, stuck jobs, and job isolation under
//! stress.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use killable::io::Interruptible;
use killable::{BlockingPool, ThreadId};

/// Hang guard for waits on a channel.
const LIMIT: Duration = Duration::from_secs(60);

/// Sends on drop: shows that a job unwound through its destructors.
struct Guard(mpsc::Sender<&'static str>);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.send("guard dropped");
    }
}

/// A job that blocks in a killable read of a pipe nobody writes to, with a guard; reports its
/// thread once it runs.
fn blocked_read(
    started: mpsc::Sender<killable::Thread>,
    dropped: mpsc::Sender<&'static str>,
) -> impl FnOnce() -> std::io::Result<usize> + Send + 'static {
    move || {
        let _guard = Guard(dropped);
        let (reader, writer) = std::io::pipe()?;
        let mut reader = Interruptible::new(reader);
        started.send(killable::current()).unwrap();
        let mut buf = [0u8; 16];
        let r = reader.read(&mut buf);
        drop(writer);
        r
    }
}

#[test]
fn awaits_a_value_and_a_panic() {
    block_on(async {
        assert_eq!(killable::spawn_blocking(|| 6 * 7).await.unwrap(), 42);
        let err = killable::spawn_blocking(|| -> u32 {
            testkit::panics_on_purpose();
            panic!("on purpose: job panics")
        })
        .await
        .unwrap_err();
        assert_eq!(
            err.downcast_ref::<&str>(),
            Some(&"on purpose: job panics"),
            "the panic payload is handed back"
        );
        // The thread survived the panic and runs the next job.
        assert_eq!(killable::spawn_blocking(|| "after").await.unwrap(), "after");
    });
}

#[test]
fn tasks_and_pools_cross_threads() {
    fn send_sync<X: Send + Sync>() {}
    send_sync::<killable::BlockingTask<u8>>();
    send_sync::<killable::BlockingTask<std::io::Result<Vec<u8>>>>();
    send_sync::<BlockingPool>();
}

#[test]
fn the_job_starts_before_the_first_poll() {
    let (tx, rx) = mpsc::channel();
    let task = killable::spawn_blocking(move || tx.send(()).unwrap());
    rx.recv_timeout(LIMIT)
        .expect("the job ran without being polled");
    block_on(task).unwrap();
}

#[test]
fn dropping_the_task_interrupts_a_blocked_job() {
    let (started_tx, started) = mpsc::channel();
    let (dropped_tx, dropped) = mpsc::channel();
    let task = killable::spawn_blocking(blocked_read(started_tx, dropped_tx));
    let thread = started.recv_timeout(LIMIT).unwrap();
    testkit::wait_blocked(&thread);
    assert!(task.thread().is_some());
    drop(task);
    assert_eq!(dropped.recv_timeout(LIMIT), Ok("guard dropped"));
}

#[test]
fn abort_then_await_gives_the_jobs_own_error() {
    let (started_tx, started) = mpsc::channel();
    let (dropped_tx, dropped) = mpsc::channel();
    let task = killable::spawn_blocking(blocked_read(started_tx, dropped_tx));
    let thread = started.recv_timeout(LIMIT).unwrap();
    testkit::wait_blocked(&thread);
    task.abort();
    task.abort(); // a second abort does nothing
    let err = block_on(task).unwrap().unwrap_err();
    assert!(killable::is_interrupt(&err), "{err:?}");
    assert_eq!(dropped.recv_timeout(LIMIT), Ok("guard dropped"));
}

#[test]
fn a_job_aborted_before_it_starts_starts_interrupted() {
    let pool = BlockingPool::builder().max_threads(1).build().unwrap();
    let (release_tx, release) = mpsc::channel::<()>();
    let first = pool.spawn(move || release.recv_timeout(LIMIT).is_ok());
    let second = pool.spawn(|| (killable::is_interrupted(), killable::check().is_err()));
    second.abort();
    release_tx.send(()).unwrap();
    assert!(block_on(first).unwrap());
    assert_eq!(block_on(second).unwrap(), (true, true));
    // The interrupt ended with its job.
    assert!(!block_on(pool.spawn(killable::is_interrupted)).unwrap());
}

#[test]
fn a_job_spawned_by_an_interrupted_thread_starts_interrupted() {
    let h = killable::spawn(|| {
        killable::current().interrupt();
        let task = killable::spawn_blocking(killable::is_interrupted);
        killable::clear_interrupt();
        block_on(task).unwrap()
    });
    assert!(h.join().unwrap(), "the spawn rule holds for jobs");
    assert!(!block_on(killable::spawn_blocking(killable::is_interrupted)).unwrap());
}

#[test]
fn a_fork_child_gets_a_pool_of_its_own() {
    testkit::in_child(
        "a_fork_child_gets_a_pool_of_its_own",
        Duration::from_secs(60),
        || {
            let pool = BlockingPool::builder().build().unwrap();
            assert_eq!(block_on(pool.spawn(|| 1)).unwrap(), 1);
            // SAFETY: the child only spawns a job, awaits it and exits.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                // SAFETY: a watchdog for this process alone (alarms are not inherited).
                unsafe { libc::alarm(30) };
                // The parent's worker does not exist here: a new one must run this.
                let two = block_on(pool.spawn(|| 2)).unwrap();
                // SAFETY: ends the fork child without running the test harness's exit path.
                unsafe { libc::_exit(if two == 2 { 0 } else { 1 }) };
            }
            let mut status = 0;
            // SAFETY: waits for the child forked above.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "{status:#x}"
            );
        },
    );
}

#[test]
fn a_job_dropped_before_it_starts_never_runs() {
    let pool = BlockingPool::builder().max_threads(1).build().unwrap();
    let (release_tx, release) = mpsc::channel::<()>();
    let first = pool.spawn(move || release.recv_timeout(LIMIT).is_ok());
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    drop(pool.spawn(move || r.store(true, Ordering::SeqCst)));
    release_tx.send(()).unwrap();
    assert!(block_on(first).unwrap());
    // Jobs run in order on the one thread: once this one ran, the dropped one was passed over.
    block_on(pool.spawn(|| ())).unwrap();
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn detach_lets_the_job_run_on() {
    let (tx, rx) = mpsc::channel();
    killable::spawn_blocking(move || {
        killable::sleep(Duration::from_millis(20)).unwrap();
        tx.send(7).unwrap();
    })
    .detach();
    assert_eq!(rx.recv_timeout(LIMIT), Ok(7));
}

#[test]
fn an_unclaimed_result_whose_drop_panics_leaves_the_worker_alone() {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            testkit::panics_on_purpose();
            panic!("on purpose: unclaimed result");
        }
    }
    let pool = BlockingPool::builder().max_threads(1).build().unwrap();
    let first = block_on(pool.spawn(|| killable::current().id())).unwrap();
    let (tx, rx) = mpsc::channel();
    pool.spawn(move || {
        tx.send(()).unwrap();
        Bomb
    })
    .detach();
    rx.recv_timeout(LIMIT).unwrap();
    // The same single thread goes on running jobs (awaited on a helper thread, so that a dead
    // worker fails the test instead of hanging it).
    for _ in 0..3 {
        let task = pool.spawn(|| killable::current().id());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(block_on(task).unwrap()));
        assert_eq!(rx.recv_timeout(LIMIT), Ok(first));
    }
}

#[test]
fn killable_calls_work_in_a_job() {
    let pool = BlockingPool::builder()
        .thread_name("jobs".into())
        .build()
        .unwrap();
    let (name, deferred, timed_out) = block_on(pool.spawn(|| {
        let name = killable::current().name().map(str::to_owned);
        killable::current().interrupt();
        let deferred = {
            let _g = killable::defer_interrupts();
            killable::sleep(Duration::from_millis(1)).is_ok()
        };
        killable::clear_interrupt();
        let timed_out = killable::timeout(Duration::from_millis(10), || {
            killable::sleep(Duration::from_secs(60))
        })
        .unwrap_err()
        .is_timeout();
        (name, deferred, timed_out)
    }))
    .unwrap();
    assert_eq!(name.as_deref(), Some("jobs"));
    assert!(deferred);
    assert!(timed_out);
}

#[test]
fn a_thousand_sequential_jobs_reuse_threads() {
    let pool = BlockingPool::builder().build().unwrap();
    let ids: HashSet<ThreadId> = block_on(async {
        let mut ids = HashSet::new();
        for _ in 0..1000 {
            ids.insert(pool.spawn(|| killable::current().id()).await.unwrap());
        }
        ids
    });
    // Each job is awaited before the next: the thread that ran it is nearly always idle again
    // by then (it publishes the result after cleaning up). A new thread per job would be 1000.
    assert!(
        ids.len() <= 10,
        "{} threads for 1000 sequential jobs",
        ids.len()
    );
}

#[test]
fn two_hundred_concurrent_jobs_reuse_threads() {
    const N: usize = 200;
    let pool = BlockingPool::builder().max_threads(N).build().unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let wave = |wait_for_all: bool| {
        let tasks: Vec<_> = (0..N)
            .map(|_| {
                let running = running.clone();
                pool.spawn(move || {
                    running.fetch_add(1, Ordering::SeqCst);
                    if wait_for_all {
                        // Proof that the pool runs N jobs at once: each waits for all.
                        let end = Instant::now() + LIMIT;
                        while running.load(Ordering::SeqCst) < N {
                            assert!(Instant::now() < end, "the {N} jobs never all ran at once");
                            killable::sleep(Duration::from_millis(1)).unwrap();
                        }
                    }
                    killable::current().id()
                })
            })
            .collect();
        block_on(async {
            let mut ids = Vec::new();
            for t in tasks {
                ids.push(t.await.unwrap());
            }
            ids
        })
    };
    let mut ids: HashSet<ThreadId> = wave(true).into_iter().collect();
    ids.extend(wave(false));
    assert!(ids.len() <= N, "{} threads for {} jobs", ids.len(), 2 * N);
}

#[test]
fn a_job_that_ignores_its_abort_does_not_hold_the_pool_up() {
    let pool = BlockingPool::builder()
        .max_threads(1)
        .abort_grace(Duration::from_millis(50))
        .build()
        .unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    let (started_tx, started) = mpsc::channel();
    let stuck = pool.spawn(move || {
        started_tx.send(killable::current().id()).unwrap();
        // std's sleep retries EINTR: this job does not notice the abort.
        while !r.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        "released"
    });
    let stuck_id = started.recv_timeout(LIMIT).unwrap();
    stuck.abort();
    // The one thread is taken; after the grace the pool replaces it.
    let next = pool.spawn(|| killable::current().id());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(block_on(next).unwrap()).unwrap());
    let next_id = rx.recv_timeout(LIMIT).expect("the queued job ran");
    assert_ne!(next_id, stuck_id);
    release.store(true, Ordering::SeqCst);
    assert_eq!(block_on(stuck).unwrap(), "released");
    // The stuck thread left the pool: later jobs run on the new one.
    for _ in 0..20 {
        assert_ne!(
            block_on(pool.spawn(|| killable::current().id())).unwrap(),
            stuck_id
        );
    }
}

#[test]
fn stop_stuck_seals_a_job_that_retries_eintr() {
    let pool = BlockingPool::builder()
        .max_threads(1)
        .abort_grace(Duration::from_millis(50))
        .stop_stuck(true)
        .build()
        .unwrap();
    let (started_tx, started) = mpsc::channel();
    let task = pool.spawn(move || {
        let (mut reader, writer) = std::io::pipe().unwrap();
        started_tx.send(killable::current()).unwrap();
        let mut buf = [0u8; 8];
        // std's read_exact retries EINTR: only the seal ends it.
        let r = reader.read_exact(&mut buf).map_err(|e| e.raw_os_error());
        drop(writer);
        r
    });
    let thread = started.recv_timeout(LIMIT).unwrap();
    testkit::wait_blocked(&thread);
    task.abort();
    assert_eq!(block_on(task).unwrap(), Err(Some(libc::ECANCELED)));
    // The sealed thread is not reused.
    let next = block_on(pool.spawn(|| killable::current().id())).unwrap();
    assert_ne!(next, thread.id());
}

#[test]
fn a_job_that_leaks_a_deferral_does_not_hand_it_on() {
    let pool = BlockingPool::builder().max_threads(1).build().unwrap();
    let first = block_on(pool.spawn(|| {
        std::mem::forget(killable::defer_interrupts());
        killable::current().id()
    }))
    .unwrap();
    let (id, broken) = block_on(pool.spawn(|| {
        killable::current().interrupt();
        let broken = killable::check().is_err();
        killable::clear_interrupt();
        (killable::current().id(), broken)
    }))
    .unwrap();
    assert_ne!(id, first, "the thread with a leaked guard was retired");
    assert!(broken, "the next job's interrupts are not deferred");
}

#[test]
fn the_pool_rejects_bad_settings() {
    let e = BlockingPool::builder().max_threads(0).build().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let e = BlockingPool::builder()
        .thread_name("a\0b".into())
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}

/// Rounds of the isolation stress; fewer under valgrind (ci/valgrind.sh sets it).
fn rounds() -> usize {
    std::env::var("KILLABLE_BLOCKING_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

/// Thousands of aborts aimed at a job's very end, each followed at once by another job on the
/// same (single) thread that sleeps in a killable call: no abort may reach the second job.
#[test]
fn aborts_at_the_jobs_edge_never_reach_the_next_job() {
    let pool = BlockingPool::builder().max_threads(1).build().unwrap();
    let rounds = rounds();
    let mut strays = 0;
    let mut landed = 0;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let spin = (seed % 2000) as u32;
        let wait = (seed >> 32) % 2000;
        let ending = Arc::new(AtomicBool::new(false));
        let e = ending.clone();
        let first = pool.spawn(move || {
            e.store(true, Ordering::SeqCst);
            for _ in 0..spin {
                std::hint::spin_loop();
            }
            killable::is_interrupted()
        });
        // Queued behind the first: the worker goes straight from one to the other.
        let second = pool.spawn(|| {
            let at_start = killable::is_interrupted();
            let slept = killable::sleep(Duration::from_micros(500));
            // A plain system call, which killable's retry does not cover: a signal of an old
            // abort arriving now would break it with EINTR.
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 300_000,
            };
            // SAFETY: `ts` is valid; no remainder is asked for.
            let raw = unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) } != 0;
            (at_start, slept.is_err(), raw)
        });
        let end = Instant::now() + LIMIT;
        while !ending.load(Ordering::SeqCst) {
            assert!(Instant::now() < end, "round {round}: the job never started");
            std::hint::spin_loop();
        }
        for _ in 0..wait {
            std::hint::spin_loop();
        }
        first.abort();
        if block_on(first).unwrap() {
            landed += 1;
        }
        let (at_start, broken, signalled) = block_on(second).unwrap();
        if at_start || broken || signalled {
            strays += 1;
            eprintln!(
                "round {round}: stray interrupt (at start: {at_start}, sleep broken: {broken}, \
                 raw nanosleep broken: {signalled})"
            );
        }
    }
    eprintln!("{rounds} rounds: {landed} aborts landed inside the job, {strays} stray interrupts");
    assert_eq!(strays, 0, "{strays} of {rounds} next jobs were interrupted");
}

/// A killable thread waiting for a task without an executor can be stopped: `wait` ends on the
/// waiter's interrupt (an executor's `block_on` parks in std's futex, which nothing ends), the
/// job runs on until the task is dropped, and dropping it aborts the job.
#[test]
fn wait_is_killable_and_the_job_runs_on_until_the_task_is_dropped() {
    let (started_tx, started_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let waiter = killable::spawn(move || {
        let task = killable::spawn_blocking(move || {
            started_tx.send(()).unwrap();
            let r = killable::sleep(Duration::from_secs(3600));
            done_tx.send(r.is_err()).unwrap();
        });
        let waited = task.wait();
        // The waiter was interrupted, not the job.
        let still_running = !task.is_finished();
        (waited, still_running)
    });
    started_rx.recv_timeout(LIMIT).unwrap();
    testkit::wait_blocked(waiter.thread());
    waiter.interrupt();
    let (waited, still_running) = waiter
        .join_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("the interrupted waiter stayed blocked"))
        .unwrap();
    assert!(waited.is_err(), "the interrupted wait returned Ok");
    assert!(still_running, "the job ended with the waiter's interrupt");
    // The task was dropped as the waiter returned: that aborted the job.
    assert_eq!(done_rx.recv_timeout(LIMIT), Ok(true));
}

#[test]
fn wait_then_join_returns_the_value_and_join_returns_a_panic() {
    let task = killable::spawn_blocking(|| 6 * 7);
    task.wait().unwrap();
    assert!(task.is_finished());
    assert_eq!(task.join().unwrap(), 42);

    let task = killable::spawn_blocking(|| -> u8 {
        testkit::panics_on_purpose();
        panic!("on purpose: job panics")
    });
    let payload = task.join().unwrap_err();
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"on purpose: job panics")
    );
}

#[test]
fn wait_timeout_reports_whether_the_job_ended() {
    let (r, w) = std::io::pipe().unwrap();
    let task = killable::spawn_blocking(move || {
        let mut b = [0u8; 1];
        Interruptible::new(r).read(&mut b).map(|_| b[0])
    });
    assert!(!task.wait_timeout(Duration::from_millis(10)).unwrap());
    (&w).write_all(&[9]).unwrap();
    assert!(task.wait_timeout(LIMIT).unwrap());
    assert_eq!(task.join().unwrap().unwrap(), 9);
}

#[test]
fn an_interrupted_waiter_fails_at_once() {
    let h = killable::spawn(|| {
        let task = killable::spawn_blocking(|| killable::sleep(Duration::from_secs(3600)));
        killable::current().interrupt();
        let first = task.wait().is_err();
        let timed = task.wait_timeout(LIMIT).is_err();
        task.abort();
        killable::clear_interrupt();
        let joined = task.join().unwrap().is_err();
        (first, timed, joined)
    });
    assert_eq!(h.join().unwrap(), (true, true, true));
}

#[test]
fn regression_wait_timeout_of_duration_max_waits_without_a_deadline() {
    let task = killable::spawn_blocking(|| 5);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        task.wait_timeout(Duration::MAX)
    }));
    assert!(
        matches!(r, Ok(Ok(true))),
        "wait_timeout(Duration::MAX) on a task whose job ends must return Ok(true), got {}",
        match &r {
            Ok(v) => format!("{v:?}"),
            Err(p) => format!(
                "a panic: {:?}",
                p.downcast_ref::<String>()
                    .map(String::as_str)
                    .or(p.downcast_ref::<&str>().copied())
            ),
        }
    );
    assert_eq!(task.join().unwrap(), 5);
}
