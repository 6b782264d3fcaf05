//! Checks of structured stopping (scope, Group, sync::mpsc) that attack its soundness: exactly-once
//! delivery under random interrupts, panics, floods of spawns during a stop. The defects found
//! by the same review have their regression tests in `regression_scope.rs`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use killable::sync::mpsc;
use testkit::panics_on_purpose;

/// Exactly-once delivery, several producers and one consumer, everyone interrupted at random
/// moments, for unbounded and bounded channels: every value whose send returned Ok is received
/// exactly once, no value whose send failed is ever received.
fn exactly_once(bound: Option<usize>) {
    const PRODUCERS: u64 = 3;
    const PER: u64 = 20000;
    let (utx, stx, rx) = match bound {
        None => {
            let (t, r) = mpsc::channel::<u64>();
            (Some(t), None, r)
        }
        Some(b) => {
            let (t, r) = mpsc::sync_channel::<u64>(b);
            (None, Some(t), r)
        }
    };
    let sent_ok = Arc::new(Mutex::new(HashSet::new()));
    let failed = Arc::new(Mutex::new(HashSet::new()));
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let utx = utx.clone();
        let stx = stx.clone();
        let sent_ok = sent_ok.clone();
        let failed = failed.clone();
        producers.push(killable::spawn(move || {
            for i in 0..PER {
                let v = p * PER + i;
                let r = match (&utx, &stx) {
                    (Some(t), _) => t.send(v).map_err(|e| e.into_inner()),
                    (_, Some(t)) => t.send(v).map_err(|e| e.into_inner()),
                    _ => unreachable!(),
                };
                killable::clear_interrupt();
                match r {
                    Ok(()) => sent_ok.lock().unwrap().insert(v),
                    Err(v) => failed.lock().unwrap().insert(v),
                };
            }
        }));
    }
    drop(utx);
    drop(stx);
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(Mutex::new(Vec::new()));
    let consumer = {
        let received = received.clone();
        killable::spawn(move || {
            loop {
                match rx.recv() {
                    Ok(v) => received.lock().unwrap().push(v),
                    Err(mpsc::RecvError::Disconnected) => return,
                    Err(mpsc::RecvError::Interrupted(_)) => {
                        killable::clear_interrupt();
                    }
                }
            }
        })
    };
    let targets: Vec<killable::Thread> = producers
        .iter()
        .map(|h| h.thread().clone())
        .chain([consumer.thread().clone()])
        .collect();
    let interrupter = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0x9e3779b97f4a7c15u64;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                targets[(x % targets.len() as u64) as usize].interrupt();
                n += 1;
                std::thread::sleep(Duration::from_micros(x % 40));
            }
            n
        })
    };
    for p in producers {
        p.join().unwrap();
    }
    consumer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let n = interrupter.join().unwrap();
    assert!(n > 100, "only {n} interrupts");
    let received = received.lock().unwrap();
    let set: HashSet<u64> = received.iter().copied().collect();
    assert_eq!(set.len(), received.len(), "a value was received twice");
    let ok = sent_ok.lock().unwrap();
    let failed = failed.lock().unwrap();
    assert_eq!(*ok, set, "received != sent Ok");
    assert!(failed.is_disjoint(&set));
    assert_eq!(ok.len() + failed.len(), (PRODUCERS * PER) as usize);
}

#[test]
fn s1_exactly_once_unbounded_with_random_interrupts() {
    exactly_once(None);
}

#[test]
fn s1_exactly_once_bounded_with_random_interrupts() {
    exactly_once(Some(2));
}

/// recv_timeout with huge durations behaves as recv (no overflow, no immediate timeout).
#[test]
fn s2_recv_timeout_huge_durations() {
    for d in [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Duration::from_secs(1 << 62),
        Duration::from_secs(i64::MAX as u64),
        Duration::new(1 << 40, 999_999_999),
    ] {
        let (tx, rx) = mpsc::channel::<u8>();
        let h = killable::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            tx.send(1).unwrap();
        });
        assert_eq!(rx.recv_timeout(d), Ok(1), "{d:?}");
        h.join().unwrap();
    }
}

/// A failed spawn in a scope is counted out: the scope returns.
#[test]
fn s3_failed_scoped_spawn_does_not_hang_the_scope() {
    let v = [1u8; 10];
    let e = killable::scope(|s| {
        killable::Builder::new()
            .stack_size(usize::MAX / 2)
            .spawn_scoped(s, || v.len())
            .unwrap_err()
    });
    assert!(!e.to_string().is_empty());
    let e = killable::scope(|s| {
        killable::Builder::new()
            .name("a\0b".into())
            .spawn_scoped(s, || v.len())
            .unwrap_err()
    });
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}

/// Panic propagation as std's: a joined panic does not propagate, an unjoined one does, the
/// closure's own panic is resumed with its payload, after all threads ended.
#[test]
fn s4_panic_propagation_as_std() {
    panics_on_purpose();
    let r = killable::scope(|s| {
        let h = s.spawn(|| {
            panics_on_purpose();
            panic!("joined")
        });
        h.join().is_err()
    });
    assert!(r);
    let done = AtomicUsize::new(0);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        killable::scope(|s| {
            s.spawn(|| {
                panics_on_purpose();
                panic!("unjoined")
            });
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                done.fetch_add(1, Ordering::SeqCst);
            });
        })
    }));
    assert!(r.is_err());
    assert_eq!(done.load(Ordering::SeqCst), 1);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        killable::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                done.fetch_add(1, Ordering::SeqCst);
            });
            panics_on_purpose();
            std::panic::panic_any(42u32);
        })
    }));
    assert_eq!(r.unwrap_err().downcast_ref::<u32>(), Some(&42));
    assert_eq!(done.load(Ordering::SeqCst), 2);
}

/// Many short-lived members: the live list stays small, and threads() lists only live ones.
#[test]
fn s5_many_short_lived_members() {
    let g = killable::Group::new("short");
    for _ in 0..5000 {
        g.spawn(|| ()).unwrap().join().unwrap();
    }
    assert!(g.threads().is_empty());
    let h = g.spawn(killable::park).unwrap();
    assert_eq!(g.threads().len(), 1);
    assert!(g.stop(Duration::from_secs(10)).all_stopped());
    assert!(h.join().unwrap().is_err());
}

/// Disconnection wakes a receiver blocked in recv when many senders go at once.
#[test]
fn s6_disconnection_with_many_senders() {
    for _ in 0..50 {
        let (tx, rx) = mpsc::sync_channel::<u8>(1);
        let senders: Vec<_> = (0..8)
            .map(|_| {
                let tx = tx.clone();
                killable::spawn(move || drop(tx))
            })
            .collect();
        drop(tx);
        assert_eq!(rx.recv(), Err(mpsc::RecvError::Disconnected));
        for s in senders {
            s.join().unwrap();
        }
    }
}

/// A member's child stays in the group after its parent ends; Group::stop from inside a member
/// stops the others and not the caller; the report lists only members.
#[test]
fn s7_membership_and_stop_from_a_member() {
    let g = killable::Group::new("g");
    let outsider = killable::spawn(killable::park);
    let parent = g
        .spawn(|| killable::spawn(killable::park).thread().clone())
        .unwrap();
    let child = parent.join().unwrap();
    assert!(g.threads().iter().any(|t| t.id() == child.id()));
    let g2 = g.clone();
    let stopper = g
        .spawn(move || {
            let r = g2.stop(Duration::from_secs(10));
            (
                r.all_stopped(),
                r.outcomes()
                    .iter()
                    .map(|o| o.thread().id())
                    .collect::<Vec<_>>(),
            )
        })
        .unwrap();
    let (all, ids) = stopper.join().unwrap();
    assert!(all);
    assert_eq!(ids, vec![child.id()]);
    assert!(!outsider.is_finished());
    outsider.interrupt();
    let _ = outsider.join();
}

#[test]
fn s1_exactly_once_rendezvous_with_random_interrupts() {
    exactly_once(Some(0));
}

/// Group::stop while members keep spawning (recursively, and through scopes): all_stopped, and
/// afterwards no member is left running. Repeated.
#[test]
fn s8_group_stop_while_members_spawn_recursively() {
    fn breed(depth: u32) {
        loop {
            if depth < 3 {
                let _ = killable::Builder::new().spawn(move || breed(depth + 1));
            }
            killable::scope(|s| {
                s.spawn(|| killable::sleep(Duration::from_millis(1)));
            });
            if killable::sleep(Duration::from_micros(200)).is_err() {
                return;
            }
        }
    }
    for _ in 0..10 {
        let g = killable::Group::new("breeders");
        for _ in 0..2 {
            g.spawn(|| breed(0)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        let r = g.stop(Duration::from_secs(10));
        assert!(r.all_stopped(), "{r}");
        let left = g.threads();
        assert!(
            left.is_empty(),
            "{} members still running after all_stopped",
            left.len()
        );
    }
}

/// Scope::stop while scoped threads keep spawning scoped threads.
#[test]
fn s9_scope_stop_while_scoped_threads_spawn() {
    for _ in 0..10 {
        killable::scope(|s| {
            for _ in 0..2 {
                s.spawn(move || {
                    loop {
                        s.spawn(|| killable::sleep(Duration::from_millis(5)));
                        if killable::sleep(Duration::from_micros(200)).is_err() {
                            return;
                        }
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(20));
            let r = s.stop(Duration::from_secs(10));
            assert!(r.all_stopped(), "{r}");
        });
    }
}

/// A scoped thread's result that borrows is dropped before the scope returns.
#[test]
fn s10_borrowing_result_dropped_before_scope_returns() {
    struct Guard<'a>(&'a AtomicBool);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            std::thread::sleep(Duration::from_millis(30));
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = AtomicBool::new(false);
    killable::scope(|s| {
        s.spawn(|| Guard(&dropped));
    });
    assert!(dropped.load(Ordering::SeqCst));
}

/// Bounded (capacity > 0) and unbounded sends against a dropped receiver match std exactly:
/// a send blocked on a full channel gets its value back when the receiver goes.
#[test]
fn s11_send_after_receiver_drop_matches_std() {
    let (stx, srx) = std::sync::mpsc::sync_channel::<u8>(1);
    stx.send(1).unwrap();
    let s = std::thread::spawn(move || stx.send(2).map_err(|e| e.0));
    let (tx, rx) = mpsc::sync_channel::<u8>(1);
    tx.send(1).unwrap();
    let k = killable::spawn(move || tx.send(2).map_err(|e| e.into_inner()));
    std::thread::sleep(Duration::from_millis(100));
    drop(srx);
    drop(rx);
    assert_eq!(s.join().unwrap(), Err(2));
    assert_eq!(k.join().unwrap(), Err(2));
    let (tx, rx) = mpsc::channel::<u8>();
    drop(rx);
    assert_eq!(tx.send(3).unwrap_err().into_inner(), 3);
    let (tx, rx) = mpsc::sync_channel::<u8>(0);
    assert_eq!(tx.try_send(4), Err(mpsc::TrySendError::Full(4)));
    drop(rx);
    assert_eq!(tx.try_send(4), Err(mpsc::TrySendError::Disconnected(4)));
}

/// Parity with std: a leaked (mem::forget) scoped handle keeps the scope waiting for ever in
/// std too (the packet's count is never released). Neither returns within a second.
#[test]
fn s12_forgotten_handle_hangs_like_std() {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        std::thread::scope(|s| std::mem::forget(s.spawn(|| ())));
        let _ = tx.send("std");
    });
    std::thread::spawn(move || {
        killable::scope(|s| std::mem::forget(s.spawn(|| ())));
        let _ = tx2.send("killable");
    });
    assert!(rx.recv_timeout(Duration::from_secs(1)).is_err());
}

/// Group::interrupt returns while an outsider keeps spawning into the group.
#[test]
fn s13_interrupt_terminates_while_outsider_spawns() {
    let g = killable::Group::new("flood");
    let stop = Arc::new(AtomicBool::new(false));
    let g2 = g.clone();
    let stop2 = stop.clone();
    let flooder = std::thread::spawn(move || {
        let mut hs = Vec::new();
        while !stop2.load(Ordering::Relaxed) {
            hs.push(
                g2.spawn(|| killable::sleep(Duration::from_millis(2)))
                    .unwrap(),
            );
            if hs.len() > 200 {
                for h in hs.drain(..100) {
                    let _ = h.join();
                }
            }
        }
        for h in hs {
            let _ = h.join();
        }
    });
    std::thread::sleep(Duration::from_millis(50));
    let t = std::time::Instant::now();
    for _ in 0..20 {
        g.interrupt();
    }
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// The end-of-scope wait works when a scoped thread is sealed (its futex wake still works) or
/// stopped by Scope::stop at the seal level.
#[test]
fn s14_sealed_scoped_thread_ends_the_scope() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let local = [1u8; 4];
    let r = killable::scope(|s| {
        let h = s.spawn(|| {
            let r = listener.accept().map(drop);
            (r, local.len())
        });
        testkit::wait_blocked(h.thread());
        h.thread().seal().unwrap();
        let (r, n) = h.join().unwrap();
        assert!(killable::is_sealed(&r.unwrap_err()));
        n
    });
    assert_eq!(r, 4);
    let report = killable::scope(|s| {
        let h = s.spawn(|| listener.accept().map(drop));
        testkit::wait_blocked(h.thread());
        s.stop(Duration::from_secs(2))
    });
    assert!(report.all_stopped(), "{report}");
}

/// A rendezvous `try_send` succeeds only if a receiver takes the value: a receiver that was
/// waiting and is interrupted does not make it report `Ok` for a value nobody receives.
#[test]
fn s15_rendezvous_try_send_with_and_without_a_waiting_receiver() {
    let (tx, rx) = killable::sync::mpsc::sync_channel::<u32>(0);
    // No receiver waiting: Full, as std.
    assert_eq!(
        tx.try_send(1),
        Err(killable::sync::mpsc::TrySendError::Full(1))
    );
    let (back_tx, back_rx) = std::sync::mpsc::channel();
    let receiver = killable::spawn(move || {
        let r = rx.recv();
        let _ = back_tx.send(r.is_ok());
        rx
    });
    // With a waiting receiver, a try_send eventually succeeds and that value is received.
    loop {
        match tx.try_send(2) {
            Ok(()) => break,
            Err(killable::sync::mpsc::TrySendError::Full(_)) => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(back_rx.recv_timeout(Duration::from_secs(10)), Ok(true));
    let rx = receiver.join().unwrap();
    drop(rx);
    assert_eq!(
        tx.try_send(3),
        Err(killable::sync::mpsc::TrySendError::Disconnected(3))
    );
}
