//! `killable::sync::mpsc`: std's behaviour (order, disconnection, try_*, timeouts), killable
//! waits, and the stress tests: every message delivered exactly once, in order, while the
//! consumer (or the producer) is interrupted a thousand times at random moments.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use killable::sync::mpsc::{
    RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError, channel, sync_channel,
};
use testkit::stress::{Rng, spin_for};
use testkit::{wait_blocked, wait_until};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn values_arrive_in_order_from_each_sender() {
    let (tx, rx) = channel();
    let senders: Vec<_> = (0..3u64)
        .map(|k| {
            let tx = tx.clone();
            killable::spawn(move || {
                for i in 0..1000u64 {
                    tx.send((k, i)).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let mut next = [0u64; 3];
    for (k, i) in rx.iter() {
        assert_eq!(i, next[k as usize], "sender {k} out of order");
        next[k as usize] += 1;
    }
    assert_eq!(next, [1000; 3]);
    for s in senders {
        s.join().unwrap();
    }
}

#[test]
fn disconnection_as_std() {
    // Every sender gone: the queued values first, then Disconnected.
    let (tx, rx) = channel();
    tx.send(1).unwrap();
    let tx2 = tx.clone();
    drop(tx);
    tx2.send(2).unwrap();
    drop(tx2);
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(rx.try_recv(), Ok(2));
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(1)),
        Err(RecvTimeoutError::Disconnected)
    );
    // Receiver gone: sends fail and hand the value back.
    let (tx, rx) = channel();
    drop(rx);
    assert!(matches!(tx.send(3), Err(SendError::Disconnected(3))));
    let (tx, rx) = sync_channel(1);
    drop(rx);
    assert!(matches!(tx.send(4), Err(SendError::Disconnected(4))));
    assert_eq!(tx.try_send(5), Err(TrySendError::Disconnected(5)));
    let (tx, rx) = sync_channel::<i32>(0);
    drop(rx);
    assert!(matches!(tx.send(6), Err(SendError::Disconnected(6))));
}

#[test]
fn a_blocked_receiver_wakes_on_disconnection() {
    let (tx, rx) = channel::<u8>();
    let r = killable::spawn(move || rx.recv());
    wait_blocked(r.thread());
    drop(tx);
    assert_eq!(r.join().unwrap(), Err(RecvError::Disconnected));
}

#[test]
fn a_blocked_sender_wakes_when_the_receiver_goes() {
    let (tx, rx) = sync_channel(1);
    tx.send(1).unwrap();
    let s = killable::spawn(move || tx.send(2).map_err(SendError::into_inner));
    wait_blocked(s.thread());
    drop(rx);
    assert_eq!(s.join().unwrap(), Err(2));
}

#[test]
fn recv_timeout_times_out_and_is_not_an_interrupt() {
    let (tx, rx) = channel::<u8>();
    let e = rx.recv_timeout(Duration::from_millis(20)).unwrap_err();
    assert_eq!(e, RecvTimeoutError::Timeout);
    assert!(!killable::is_interrupt(&e.into()));
    tx.send(9).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(9));
}

#[test]
fn blocked_recv_and_recv_timeout_are_interrupted() {
    for timed in [false, true] {
        let (tx, rx) = channel::<u8>();
        let r = killable::spawn(move || {
            let err: std::io::Error = if timed {
                rx.recv_timeout(Duration::from_secs(3600))
                    .unwrap_err()
                    .into()
            } else {
                rx.recv().unwrap_err().into()
            };
            (killable::is_interrupt(&err), err.kind(), rx)
        });
        wait_blocked(r.thread());
        r.interrupt();
        let (is_interrupt, kind, rx) = r.join().unwrap();
        assert!(is_interrupt);
        assert_ne!(kind, std::io::ErrorKind::Interrupted);
        // Nothing was lost or broken: the channel still works.
        tx.send(1).unwrap();
        assert_eq!(rx.recv(), Ok(1));
    }
}

#[test]
fn a_pending_interrupt_fails_recv_and_keeps_the_message() {
    let (tx, rx) = channel();
    tx.send(5).unwrap();
    let h = killable::spawn(move || {
        killable::current().interrupt();
        let first = rx.recv();
        killable::clear_interrupt();
        (first, rx.recv())
    });
    let (first, second) = h.join().unwrap();
    assert!(matches!(first, Err(RecvError::Interrupted(_))));
    assert_eq!(second, Ok(5));
}

#[test]
fn an_interrupted_sender_gets_its_value_back_and_it_is_never_delivered() {
    let (tx, rx) = sync_channel(1);
    tx.send(1).unwrap();
    let s = killable::spawn(move || {
        let e = tx.send(2).unwrap_err();
        (e.is_interrupt(), killable::is_interrupt(&e.into()))
    });
    wait_blocked(s.thread());
    s.interrupt();
    assert_eq!(s.join().unwrap(), (true, true));
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
}

#[test]
fn rendezvous_send_returns_once_received() {
    let (tx, rx) = sync_channel(0);
    let received = Arc::new(AtomicBool::new(false));
    let r2 = received.clone();
    let s = killable::spawn(move || {
        tx.send(7).unwrap();
        r2.load(Ordering::SeqCst)
    });
    wait_blocked(s.thread());
    assert_eq!(tx_try_send_without_receiver(), TrySendError::Full(0));
    received.store(true, Ordering::SeqCst);
    assert_eq!(rx.recv(), Ok(7));
    assert!(
        s.join().unwrap(),
        "send returned before the value was received"
    );
}

fn tx_try_send_without_receiver() -> TrySendError<i32> {
    let (tx, _rx) = sync_channel(0);
    tx.try_send(0).unwrap_err()
}

#[test]
fn try_iter_and_into_iter() {
    let (tx, rx) = channel();
    for i in 0..5 {
        tx.send(i).unwrap();
    }
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    assert_eq!(rx.try_iter().next(), None);
    tx.send(5).unwrap();
    drop(tx);
    assert_eq!(rx.into_iter().collect::<Vec<_>>(), [5]);
}

#[test]
fn ends_are_send_and_senders_clone() {
    fn is_send<T: Send>(_: &T) {}
    let (tx, rx) = channel::<String>();
    let (stx, _srx) = sync_channel::<String>(1);
    is_send(&tx);
    is_send(&rx);
    is_send(&stx.clone());
    let tx2 = tx.clone();
    killable::spawn(move || tx2.send("moved".into()).unwrap())
        .join()
        .unwrap();
    assert_eq!(rx.recv().unwrap(), "moved");
}

/// What a stress run saw: messages received, and those missing, duplicated or out of order.
#[derive(Debug, PartialEq)]
struct Stress {
    received: u64,
    bad: u64,
    interrupts_seen: u64,
}

/// A producer sends 0, 1, 2... while the consumer is interrupted `interrupts` times at random
/// moments (and, with `hit_sender`, the producer as well). An interrupted send is retried with
/// the value it handed back; an interrupted receive is retried. The consumer checks that it
/// receives each number exactly once, in order.
fn stress(capacity: Option<usize>, interrupts: u64, hit_sender: bool) -> Stress {
    enum Tx {
        Unbounded(killable::sync::mpsc::Sender<u64>),
        Bounded(killable::sync::mpsc::SyncSender<u64>),
    }
    let (tx, rx) = match capacity {
        None => {
            let (t, r) = channel();
            (Tx::Unbounded(t), r)
        }
        Some(n) => {
            let (t, r) = sync_channel(n);
            (Tx::Bounded(t), r)
        }
    };
    let done = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let sender_seen = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));

    let (d, ss, rc) = (done.clone(), sender_seen.clone(), received.clone());
    let producer = killable::spawn(move || {
        let mut rng = Rng::new(7);
        let mut i = 0u64;
        while !d.load(Ordering::Relaxed) || i < 1000 {
            // Keep the unbounded queue short, so the consumer often waits for more (`rc` is
            // the next value the consumer expects, so a lost message cannot stall this).
            while i > rc.load(Ordering::Relaxed) + 256 {
                std::thread::yield_now();
            }
            let mut v = i;
            loop {
                let r = match &tx {
                    Tx::Unbounded(t) => t.send(v),
                    Tx::Bounded(t) => t.send(v),
                };
                match r {
                    Ok(()) => break,
                    Err(SendError::Interrupted(back, _)) => {
                        ss.fetch_add(1, Ordering::SeqCst);
                        killable::clear_interrupt();
                        v = back;
                    }
                    Err(SendError::Disconnected(_)) => panic!("the consumer went away"),
                }
            }
            i += 1;
            if rng.below(64) == 0 {
                spin_for(rng.below(20_000));
            }
        }
        // A last interrupt may be pending; it must not count.
        killable::clear_interrupt();
        i
    });

    let (s, rc) = (seen.clone(), received.clone());
    let consumer = killable::spawn(move || {
        let mut next = 0u64;
        let mut bad = 0u64;
        let mut count = 0u64;
        loop {
            match rx.recv() {
                Ok(v) => {
                    if v != next {
                        bad += 1;
                    }
                    next = v + 1;
                    count += 1;
                    rc.store(next, Ordering::Relaxed);
                }
                Err(RecvError::Interrupted(_)) => {
                    killable::clear_interrupt();
                    s.fetch_add(1, Ordering::SeqCst);
                }
                Err(RecvError::Disconnected) => return (count, next, bad),
            }
        }
    });

    let mut rng = Rng::new(42);
    for k in 0..interrupts {
        spin_for(rng.below(50_000));
        consumer.interrupt();
        wait_until(LIMIT, "the consumer to see its interrupt", || {
            seen.load(Ordering::SeqCst) > k || consumer.is_finished()
        });
        if hit_sender && rng.below(2) == 0 {
            producer.interrupt();
        }
    }
    done.store(true, Ordering::Relaxed);
    let sent = producer.join().unwrap();
    let (count, next, bad) = consumer.join().unwrap();
    let _ = sender_seen;
    Stress {
        received: count,
        bad: bad + sent.abs_diff(count) + next.abs_diff(sent),
        interrupts_seen: seen.load(Ordering::SeqCst),
    }
}

#[test]
fn stress_unbounded_consumer_interrupted_a_thousand_times() {
    let s = stress(None, 1000, false);
    println!("{s:?}");
    assert_eq!(s.bad, 0, "{s:?}");
    assert_eq!(s.interrupts_seen, 1000);
}

#[test]
fn stress_bounded_both_ends_interrupted_a_thousand_times() {
    let s = stress(Some(4), 1000, true);
    println!("{s:?}");
    assert_eq!(s.bad, 0, "{s:?}");
    assert_eq!(s.interrupts_seen, 1000);
}

#[test]
fn stress_rendezvous_both_ends_interrupted() {
    let s = stress(Some(0), 300, true);
    println!("{s:?}");
    assert_eq!(s.bad, 0, "{s:?}");
}

/// A channel still works in a child of `fork`, with a receiver that has to sleep.
#[test]
fn a_channel_works_in_a_fork_child() {
    testkit::in_child(
        "a_channel_works_in_a_fork_child",
        Duration::from_secs(60),
        || {
            // The parent uses a channel first.
            let (tx, rx) = channel::<u32>();
            let h = killable::spawn(move || rx.recv());
            wait_blocked(h.thread());
            tx.send(1).unwrap();
            assert_eq!(h.join().unwrap(), Ok(1));
            // SAFETY: the child only uses killable, std channels and exit; no lock is held by
            // another thread at this point that the child needs.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let (tx, rx) = channel::<u32>();
                let h = killable::spawn(move || rx.recv());
                wait_blocked(h.thread());
                tx.send(2).unwrap();
                let ok = h.join().unwrap() == Ok(2);
                // SAFETY: ends the child without running the parent's atexit handlers.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            let mut status = 0;
            // SAFETY: waits for our own child.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "child status {status}"
            );
        },
    );
}

/// Two threads bounce a counter through two channels, so each side sleeps in `recv` (or in a
/// full `send`) for nearly every message: a lost wake-up leaves both waiting, and the
/// `recv_timeout` hang guard fails the test.
fn ping_pong(capacity: Option<usize>, rounds: u32) {
    fn pair(
        capacity: Option<usize>,
    ) -> (Box<dyn Fn(u32) + Send>, killable::sync::mpsc::Receiver<u32>) {
        match capacity {
            None => {
                let (t, r) = channel();
                (Box::new(move |v| t.send(v).unwrap()), r)
            }
            Some(n) => {
                let (t, r) = sync_channel(n);
                (Box::new(move |v| t.send(v).unwrap()), r)
            }
        }
    }
    let (ping, ping_rx) = pair(capacity);
    let (pong, pong_rx) = pair(capacity);
    let other = killable::spawn(move || {
        for _ in 0..rounds {
            let v = ping_rx.recv_timeout(LIMIT).expect("lost wake-up (ping)");
            pong(v + 1);
        }
    });
    for i in 0..rounds {
        ping(2 * i);
        let v = pong_rx.recv_timeout(LIMIT).expect("lost wake-up (pong)");
        assert_eq!(v, 2 * i + 1);
    }
    other.join().unwrap();
}

#[test]
fn ping_pong_loses_no_wake_up() {
    // A hang guard on the whole exchange: a lost wake-up that a later timeout rescues would
    // otherwise only make the test slow.
    let both = killable::spawn(|| {
        ping_pong(None, 20_000);
        ping_pong(Some(1), 20_000);
        ping_pong(Some(0), 5_000);
    });
    match both.join_timeout(LIMIT) {
        Ok(r) => r.unwrap(),
        Err(_) => panic!("the ping-pong stalled for {LIMIT:?}: a wake-up was lost"),
    }
}
