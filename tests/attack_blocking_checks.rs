//! Suspicions about `spawn_blocking` that were checked and held: these pass on 53fa9c1. Kept as
//! evidence for the attack report (see tests/attack_blocking.rs for the defects).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use killable::{BlockingPool, BlockingTask};

fn rounds(n: usize) -> usize {
    std::env::var("ATTACK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n)
}

/// The next job on the one thread sleeps 200 µs with a killable sleep: any stale interrupt shows.
fn probe(pool: &BlockingPool) -> bool {
    block_on(pool.spawn(|| killable::sleep(Duration::from_micros(200)).is_ok())).unwrap()
}

/// Aborts at a job's edge in many shapes, each followed by a probe job on the same thread.
#[test]
fn isolation_under_many_abort_shapes() {
    let pool = BlockingPool::builder()
        .max_threads(1)
        .abort_grace(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut stray = 0;
    let n = rounds(600);
    for i in 0..n {
        let spin = (i % 50) as u64 * 200;
        let task = match i % 6 {
            // A job that aborts itself (its own task is handed to it) and ends at once.
            0 => {
                let (tx, rx) = mpsc::channel::<BlockingTask<()>>();
                let t = pool.spawn(move || {
                    let me = rx.recv().unwrap();
                    me.abort();
                    drop(me); // and drops its own task
                });
                tx.send(t).unwrap();
                None
            }
            // A job that clears its interrupt and keeps going.
            1 => {
                let t = pool.spawn(move || {
                    testkit_spin(spin);
                    killable::clear_interrupt();
                    let _ = killable::sleep(Duration::from_micros(50));
                });
                Some(t)
            }
            // A job with an interrupt callback.
            2 => {
                let t = pool.spawn(move || {
                    let _cb = killable::on_interrupt(|| {});
                    testkit_spin(spin);
                });
                Some(t)
            }
            // A job deferring interrupts at its end.
            3 => {
                let t = pool.spawn(move || {
                    let _g = killable::defer_interrupts();
                    testkit_spin(spin);
                });
                Some(t)
            }
            // A job with a timeout scope.
            4 => {
                let t = pool.spawn(move || {
                    let _ = killable::timeout(Duration::from_micros(spin / 2 + 1), || {
                        testkit_spin(spin);
                        killable::check()
                    });
                });
                Some(t)
            }
            // A job that spawns a killable thread and joins it.
            _ => {
                let t = pool.spawn(move || {
                    let h = killable::spawn(move || testkit_spin(spin));
                    let _ = h.join();
                });
                Some(t)
            }
        };
        if let Some(t) = task {
            // Aborted from another thread, or dropped there, at about the job's end.
            std::thread::sleep(Duration::from_micros(spin / 1000));
            if i % 2 == 0 {
                std::thread::spawn(move || drop(t)).join().unwrap();
            } else {
                t.abort();
                let _ = block_on(t);
            }
        }
        if !probe(&pool) {
            stray += 1;
        }
    }
    assert_eq!(stray, 0, "{stray} stray interrupts in {n} rounds");
}

fn testkit_spin(ns: u64) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_nanos(ns) {
        std::hint::spin_loop();
    }
}

/// Threads retiring on keep-alive while jobs are queued: no job is lost, and no more than
/// `max_threads` jobs ever run at once.
#[test]
fn retirement_racing_spawns_loses_no_job_and_respects_max() {
    const MAX: usize = 3;
    let pool = BlockingPool::builder()
        .max_threads(MAX)
        .keep_alive(Duration::from_micros(300))
        .build()
        .unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut spawners = Vec::new();
    for s in 0..4u64 {
        let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
        spawners.push(std::thread::spawn(move || {
            let n = rounds(1500);
            for i in 0..n as u64 {
                let (r, p) = (running.clone(), peak.clone());
                let t = pool.spawn(move || {
                    let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    std::hint::black_box(i);
                    r.fetch_sub(1, Ordering::SeqCst);
                });
                let (tx, rx) = mpsc::channel();
                std::thread::spawn(move || tx.send(block_on(t).is_ok()).unwrap());
                assert!(
                    rx.recv_timeout(Duration::from_secs(20)).unwrap(),
                    "job lost"
                );
                // Around the keep-alive, so retirements and spawns meet.
                std::thread::sleep(Duration::from_micros((i * 37 + s * 101) % 600));
            }
        }));
    }
    for s in spawners {
        s.join().unwrap();
    }
    assert!(
        peak.load(Ordering::SeqCst) <= MAX,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
}

struct Count(Arc<AtomicUsize>);
impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A replaced waker is the one woken; polling after completion panics as documented.
#[test]
fn replaced_wakers_and_polling_after_completion() {
    let (gate_tx, gate) = mpsc::channel::<()>();
    let mut task = killable::spawn_blocking(move || {
        gate.recv().unwrap();
        7
    });
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let wa = Waker::from(Arc::new(Count(a.clone())));
    let wb = Waker::from(Arc::new(Count(b.clone())));
    let mut pin = std::pin::Pin::new(&mut task);
    assert!(
        pin.as_mut()
            .poll(&mut Context::from_waker(&wa))
            .is_pending()
    );
    assert!(
        pin.as_mut()
            .poll(&mut Context::from_waker(&wb))
            .is_pending()
    );
    gate_tx.send(()).unwrap();
    while b.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(a.load(Ordering::SeqCst), 0);
    let r = pin.as_mut().poll(&mut Context::from_waker(&wb));
    assert!(matches!(r, Poll::Ready(Ok(7))));
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = pin.as_mut().poll(&mut Context::from_waker(&wb));
    }));
    assert!(
        again.is_err(),
        "documented: polling after it resolved panics"
    );
}

use std::future::Future;

/// Dropping the task while the worker publishes: every result is dropped exactly once.
#[test]
fn dropping_the_task_at_publication_drops_the_result_once() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    struct R;
    impl Drop for R {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }
    let pool = BlockingPool::builder().max_threads(2).build().unwrap();
    let n = rounds(3000);
    for i in 0..n {
        let t = pool.spawn(move || {
            testkit_spin((i % 20) as u64 * 500);
            RUNS.fetch_add(1, Ordering::SeqCst);
            R
        });
        testkit_spin((i % 23) as u64 * 450);
        drop(t);
    }
    // Let the last jobs end.
    drop(block_on(pool.spawn(|| ())));
    let start = Instant::now();
    while DROPS.load(Ordering::SeqCst) < RUNS.load(Ordering::SeqCst)
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    let (d, r) = (DROPS.load(Ordering::SeqCst), RUNS.load(Ordering::SeqCst));
    assert_eq!(d, r, "{d} results dropped for {r} jobs run ({n} spawned)");
}

/// For valgrind's leak check (`--leak-check=full`): a private pool through every path (results,
/// panics, aborts of running and queued jobs, drops, a stuck job retired by the watchdog), then
/// dropped, and its threads given time to exit.
#[test]
fn leak_probe_private_pool() {
    let pool = BlockingPool::builder()
        .max_threads(2)
        .keep_alive(Duration::from_millis(20))
        .abort_grace(Duration::from_millis(20))
        .build()
        .unwrap();
    for i in 0..rounds(40) {
        let a = pool.spawn(move || vec![i; 100]);
        let b = pool.spawn(|| killable::sleep(Duration::from_secs(60)).map(|_| vec![0u8; 64]));
        let c = pool.spawn(move || {
            let _ = std::panic::catch_unwind(|| ());
            vec![String::from("x"); i]
        });
        let d = pool.spawn(|| vec![1u8; 10]);
        b.abort();
        drop(d);
        let _ = block_on(a);
        let _ = block_on(b);
        drop(c);
    }
    // A stuck job: retired by the watchdog, then released.
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = release.clone();
    let stuck = pool.spawn(move || {
        while !r.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    stuck.abort();
    std::thread::sleep(Duration::from_millis(200));
    release.store(true, Ordering::SeqCst);
    let _ = block_on(stuck);
    drop(pool);
    std::thread::sleep(Duration::from_millis(500));
}

/// `build_global` racing `spawn_blocking` and itself: exactly one pool wins, and every job runs
/// on the winner.
#[test]
fn build_global_races() {
    testkit::in_child("build_global_races", Duration::from_secs(60), || {
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let mut hs = Vec::new();
        for i in 0..8 {
            let b = barrier.clone();
            hs.push(std::thread::spawn(move || {
                b.wait();
                if i % 2 == 0 {
                    let r = BlockingPool::builder()
                        .thread_name(format!("mine{i}"))
                        .build_global();
                    (Some(r.map_err(|e| e.kind())), None)
                } else {
                    let name = block_on(killable::spawn_blocking(|| {
                        killable::current().name().map(str::to_owned)
                    }))
                    .unwrap();
                    (None, name)
                }
            }));
        }
        let out: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        let oks: Vec<usize> = out
            .iter()
            .enumerate()
            .filter(|(_, o)| matches!(o.0, Some(Ok(()))))
            .map(|(i, _)| i)
            .collect();
        assert!(oks.len() <= 1, "{out:?}");
        let expected = match oks.first() {
            Some(i) => format!("mine{i}"),
            None => "killable-pool".to_owned(),
        };
        for o in &out {
            if let Some(Err(k)) = &o.0 {
                assert_eq!(*k, std::io::ErrorKind::ResourceBusy);
            }
            if let Some(n) = &o.1 {
                assert_eq!(n, &expected, "{out:?}");
            }
        }
        println!("winner: {expected}");
    });
}

/// Dropped pools give their threads back (no thread leak across many pools).
#[test]
fn dropped_pools_leave_no_threads() {
    testkit::in_child(
        "dropped_pools_leave_no_threads",
        Duration::from_secs(60),
        || {
            let count = || std::fs::read_dir("/proc/self/task").unwrap().count();
            let before = count();
            for _ in 0..200 {
                let pool = BlockingPool::builder().max_threads(4).build().unwrap();
                let ts: Vec<_> = (0..4).map(|i| pool.spawn(move || i)).collect();
                let b = pool.spawn(|| killable::sleep(Duration::from_secs(60)));
                b.abort();
                for t in ts {
                    block_on(t).unwrap();
                }
                let _ = block_on(b);
                drop(pool);
            }
            let start = Instant::now();
            while count() > before && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(count(), before, "threads left behind by dropped pools");
        },
    );
}

/// Odd settings resolve tasks instead of hanging: a tiny stack, a long thread name.
#[test]
fn odd_settings_resolve() {
    let pool = BlockingPool::builder().stack_size(1).build().unwrap();
    let r = block_on(pool.spawn(|| 1));
    println!(
        "stack_size(1): {:?}",
        r.as_ref().map_err(|e| e.downcast_ref::<String>())
    );
    let pool = BlockingPool::builder()
        .thread_name("a-very-long-pool-thread-name-indeed".into())
        .build()
        .unwrap();
    let r = block_on(pool.spawn(|| killable::current().name().map(str::to_owned)));
    println!(
        "long name: {:?}",
        r.as_ref().map_err(|e| e.downcast_ref::<String>())
    );
    assert!(r.is_ok());
}
