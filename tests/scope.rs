//! `killable::scope`: std's scope semantics (borrowing, joining, panics) plus interruption,
//! stopping, and siblings interrupted when a scoped thread panics.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use testkit::{panics_on_purpose, wait_blocked, wait_until};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn scoped_threads_borrow_and_mutate_local_data() {
    let data = [1, 2, 3, 4];
    let mut total = 0;
    let counter = AtomicUsize::new(0);
    killable::scope(|s| {
        for chunk in data.chunks(2) {
            let counter = &counter;
            s.spawn(move || counter.fetch_add(chunk.iter().sum::<usize>(), Ordering::SeqCst));
        }
        s.spawn(|| total = data.len());
    });
    assert_eq!(counter.load(Ordering::SeqCst), 10);
    assert_eq!(total, 4);
}

#[test]
fn every_thread_is_joined_at_the_end_joined_or_not() {
    let finished = AtomicUsize::new(0);
    killable::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                finished.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    assert_eq!(finished.load(Ordering::SeqCst), 4);
}

#[test]
fn join_returns_the_value_and_scope_returns_the_closures() {
    let v = String::from("abc");
    let r = killable::scope(|s| {
        let h = s.spawn(|| v.len());
        assert_eq!(h.thread().name(), None);
        h.join().unwrap() * 2
    });
    assert_eq!(r, 6);
}

#[test]
fn a_panic_propagates_after_all_are_joined() {
    panics_on_purpose();
    let finished = AtomicUsize::new(0);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        killable::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                finished.fetch_add(1, Ordering::SeqCst);
            });
            s.spawn(|| {
                testkit::panics_on_purpose();
                panic!("scoped thread panics on purpose")
            });
        })
    }));
    assert!(r.is_err());
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "the sibling was joined first"
    );
}

#[test]
fn a_joined_panic_does_not_propagate() {
    let r = killable::scope(|s| {
        let h = s.spawn(|| {
            testkit::panics_on_purpose();
            panic!("joined on purpose")
        });
        h.join().is_err()
    });
    assert!(r);
}

/// std's scope would wait forever for the blocked sibling; killable's interrupts it.
#[test]
fn a_scope_whose_thread_panics_does_not_hang() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(|| {
            killable::scope(|s| {
                let blocked = s.spawn(|| killable::sleep(Duration::from_secs(3600)));
                let waiting = s.spawn(killable::park);
                let (r, _w) = std::io::pipe().unwrap();
                let reader = s.spawn(move || {
                    use std::io::Read;
                    killable::io::Interruptible::new(r).read(&mut [0u8; 1])
                });
                wait_blocked(blocked.thread());
                wait_blocked(waiting.thread());
                wait_blocked(reader.thread());
                s.spawn(|| {
                    testkit::panics_on_purpose();
                    panic!("scoped thread panics on purpose")
                });
            })
        });
        tx.send(r.is_err()).unwrap();
    });
    let panicked = rx
        .recv_timeout(LIMIT)
        .expect("the scope hung after a scoped thread panicked");
    assert!(panicked);
}

#[test]
fn a_panicking_scope_body_interrupts_its_threads() {
    let r = std::panic::catch_unwind(|| {
        killable::scope(|s| {
            let h = s.spawn(killable::park);
            wait_blocked(h.thread());
            testkit::panics_on_purpose();
            panic!("scope body panics on purpose");
        })
    });
    assert!(r.is_err());
}

#[test]
fn interrupt_all_reaches_every_thread_and_handles_interrupt_one() {
    killable::scope(|s| {
        let hs: Vec<_> = (0..3).map(|_| s.spawn(killable::park)).collect();
        let one = s.spawn(|| killable::sleep(Duration::from_secs(3600)));
        for h in &hs {
            wait_blocked(h.thread());
        }
        wait_blocked(one.thread());
        one.interrupt();
        assert!(one.join().unwrap().is_err());
        assert!(hs.iter().all(|h| !h.is_finished()));
        s.interrupt_all();
        for h in hs {
            assert!(h.join().unwrap().is_err());
        }
    });
}

#[test]
fn stop_reports_only_the_scopes_threads() {
    let outside = killable::spawn(killable::park);
    killable::scope(|s| {
        let a = s.spawn(|| killable::sleep(Duration::from_secs(3600)));
        let b = s.spawn(killable::park);
        wait_blocked(a.thread());
        wait_blocked(b.thread());
        let report = s.stop(Duration::from_secs(30));
        assert!(report.all_stopped(), "{report}");
        let ids: Vec<_> = report.outcomes().iter().map(|o| o.thread().id()).collect();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains(&a.thread().id()) && ids.contains(&b.thread().id()));
        assert!(a.is_finished() && b.is_finished());
    });
    assert!(
        !outside.is_finished(),
        "a thread outside the scope was stopped"
    );
    outside.interrupt();
    assert!(outside.join().unwrap().is_err());
}

/// The spawn rule: a scoped thread spawned by an interrupted scoped thread starts interrupted,
/// and stop keeps going until the newborns are stopped too.
#[test]
fn stop_reaches_scoped_threads_spawned_during_the_stop() {
    let children = Mutex::new(Vec::new());
    killable::scope(|s| {
        let spawner = s.spawn(|| {
            // Keeps spawning, ignoring its own interrupt, for a while.
            for _ in 0..50 {
                let child = s.spawn(killable::park);
                children.lock().unwrap().push(child.thread().clone());
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        wait_until(LIMIT, "the first child", || {
            !children.lock().unwrap().is_empty()
        });
        let report = s.stop(Duration::from_secs(30));
        assert!(report.all_stopped(), "{report}");
        assert!(spawner.is_finished());
        let children = children.lock().unwrap();
        assert_eq!(children.len(), 50);
        let running = children.iter().filter(|t| !t.is_finished()).count();
        assert_eq!(
            running, 0,
            "scoped threads still run after the stop said all stopped"
        );
    });
}

#[test]
fn a_thread_spawned_by_an_interrupted_scoped_thread_starts_interrupted() {
    killable::scope(|s| {
        let h = s.spawn(|| {
            killable::current().interrupt();
            let child = s.spawn(killable::is_interrupted);
            (child.join().unwrap(), killable::is_interrupted())
        });
        assert_eq!(h.join().unwrap(), (true, true));
    });
}

#[test]
fn builder_spawn_scoped_names_the_thread() {
    let names = Mutex::new(Vec::new());
    killable::scope(|s| {
        killable::Builder::new()
            .name("scoped-worker".into())
            .spawn_scoped(s, || {
                names
                    .lock()
                    .unwrap()
                    .push(killable::current().name().map(str::to_owned))
            })
            .unwrap();
    });
    assert_eq!(
        names.into_inner().unwrap(),
        [Some("scoped-worker".to_owned())]
    );
    let err = killable::scope(|s| {
        killable::Builder::new()
            .name("a\0b".into())
            .spawn_scoped(s, || ())
            .unwrap_err()
    });
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
