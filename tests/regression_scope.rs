//! Regression tests for structured stopping (scope, Group, sync::mpsc): each reproduces a
//! defect of the first version and failed on it. The checks that found that version sound are
//! kept in `scope_sound.rs`.

use std::time::Duration;

use testkit::{in_child, wait_blocked};

/// A scoped thread that waits at the end of a *nested* scope is not reached by the outer
/// scope's sibling interrupt: the inner scope's threads are in no set the outer scope knows,
/// and the inner scope's end-of-scope wait ignores its owner's interrupt. A panicking sibling
/// therefore does not end the outer scope ("a panicking thread ends the scope even though its
/// sibling waits for ever" is false one level down): the outer scope hangs for ever.
#[test]
fn regression_nested_scope_sibling_panic_ends_outer_scope() {
    in_child(
        "regression_nested_scope_sibling_panic_ends_outer_scope",
        Duration::from_secs(20),
        || {
            testkit::quiet_panics("on purpose");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let r = std::panic::catch_unwind(|| {
                    killable::scope(|s| {
                        s.spawn(|| {
                            // An ordinary sibling whose work happens to use a scope.
                            killable::scope(|inner| {
                                inner.spawn(killable::park);
                            });
                        });
                        s.spawn(|| {
                            std::thread::sleep(Duration::from_millis(100));
                            panic!("on purpose");
                        });
                    })
                });
                let _ = tx.send(r.is_err());
            });
            let r = rx.recv_timeout(Duration::from_secs(10));
            assert_eq!(
                r,
                Ok(true),
                "the outer scope did not return within 10 s after a scoped thread panicked"
            );
        },
    );
}

/// The same gap seen through `Scope::stop`: the outer scope's stop cannot stop a scoped
/// thread that waits for a nested scope (its wait is a plain futex), so the report says not
/// all stopped and the outer scope then hangs, although every thread involved is blocked in a
/// killable call (`park`).
#[test]
fn regression_scope_stop_reaches_a_nested_scope() {
    in_child(
        "regression_scope_stop_reaches_a_nested_scope",
        Duration::from_secs(30),
        || {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let all = killable::scope(|s| {
                    let h = s.spawn(|| {
                        killable::scope(|inner| {
                            inner.spawn(killable::park);
                        });
                    });
                    std::thread::sleep(Duration::from_millis(100));
                    let report = s.stop(Duration::from_secs(2));
                    let _ = h; // joined at the end
                    report.all_stopped()
                });
                let _ = tx.send(all);
            });
            let r = rx.recv_timeout(Duration::from_secs(15));
            assert_eq!(
                r,
                Ok(true),
                "Scope::stop did not stop a scoped thread waiting for a nested scope of parked threads"
            );
        },
    );
}

/// Rendezvous channel (`sync_channel(0)`): a `send` that is blocked because nobody receives
/// returns `Ok(())` when the receiver is dropped, although the value was never received. std's
/// rendezvous `send` returns `Err(SendError(value))` in exactly this situation, and the issue
/// requires "a value whose send returned Ok stays in the channel until received".
#[test]
fn regression_rendezvous_send_to_a_dropped_receiver_returns_the_value() {
    // std, for reference.
    let (stx, srx) = std::sync::mpsc::sync_channel::<u32>(0);
    let s = std::thread::spawn(move || stx.send(7).map_err(|e| e.0));
    std::thread::sleep(Duration::from_millis(100));
    drop(srx);
    assert_eq!(s.join().unwrap(), Err(7), "std's behaviour");

    // killable.
    let (tx, rx) = killable::sync::mpsc::sync_channel::<u32>(0);
    let k = killable::spawn(move || tx.send(7).map_err(|e| e.into_inner()));
    std::thread::sleep(Duration::from_millis(100));
    drop(rx);
    assert_eq!(
        k.join().unwrap(),
        Err(7),
        "killable's rendezvous send returned Ok for a value that no receiver ever took"
    );
}

/// Rendezvous channel: an interrupt of a `send` that waits for a receiver returns `Ok(())`
/// (the value stays parked in the hidden capacity-one slot), so a blocked rendezvous send is
/// not a killable call in the sense ("an interrupt makes them return an error") and
/// the caller is told "sent" for a value that is then lost when the receiver goes.
#[test]
fn regression_interrupted_rendezvous_send_returns_the_value() {
    let (tx, rx) = killable::sync::mpsc::sync_channel::<u32>(0);
    let k = killable::spawn(move || tx.send(9).map_err(|e| e.is_interrupt()));
    wait_blocked(k.thread());
    k.interrupt();
    let r = k.join().unwrap();
    // Nobody ever received 9 and nobody will: the receiver goes now.
    drop(rx);
    assert_eq!(
        r,
        Err(true),
        "an interrupted rendezvous send returned Ok although its value was never received"
    );
}

/// A pool thread of `spawn_blocking`/`BlockingPool` that happens to be created by a group
/// member joins the member's group (membership is inherited through `Builder::new()` in
/// `blocking.rs`). The group then lists and stops a shared pool's thread that serves everyone,
/// long after the member has ended.
#[test]
fn regression_blocking_pool_worker_joins_no_group() {
    let pool = killable::BlockingPool::builder()
        .max_threads(1)
        .keep_alive(Duration::from_secs(60))
        .build()
        .unwrap();
    let pool2 = pool.clone();
    let g = killable::Group::new("members");
    let member = g
        .spawn(move || futures::executor::block_on(pool2.spawn(|| 1)).unwrap())
        .unwrap();
    assert_eq!(member.join().unwrap(), 1);
    std::thread::sleep(Duration::from_millis(50));
    let listed: Vec<_> = g
        .threads()
        .iter()
        .map(|t| t.name().unwrap_or("?").to_owned())
        .collect();
    assert!(
        listed.is_empty(),
        "the group's only member has ended, but the group still lists {listed:?} (the shared pool's thread)"
    );
    drop(pool);
}

/// Same cause as D4: `shutdown_on_signals` called by a group member puts the crate's own
/// daemon signal thread in the member's group, and `Group::stop` then stops (seals) it: the
/// process no longer reacts to SIGINT/SIGTERM at all.
#[test]
fn regression_signal_thread_joins_no_group() {
    in_child(
        "regression_signal_thread_joins_no_group",
        Duration::from_secs(30),
        || {
            let g = killable::Group::new("app");
            let member = g
                .spawn(|| killable::shutdown_on_signals(Duration::from_secs(1)).map(drop))
                .unwrap();
            member.join().unwrap().unwrap();
            std::thread::sleep(Duration::from_millis(50));
            let report = g.stop(Duration::from_secs(2));
            let stopped: Vec<_> = report
                .outcomes()
                .iter()
                .map(|o| o.thread().name().unwrap_or("?").to_owned())
                .collect();
            assert!(
                stopped.is_empty(),
                "Group::stop stopped the crate's own signal thread: {stopped:?}"
            );
        },
    );
}

/// The owner of a scope that is interrupted while it waits at the end of the scope relays the
/// interrupt to the scope's threads (the wait used to ignore it, and the scope hung).
#[test]
fn regression_interrupted_owner_interrupts_its_scope() {
    let owner = killable::spawn(|| {
        let mut interrupted = false;
        killable::scope(|s| {
            s.spawn(|| interrupted = killable::park().is_err());
        });
        interrupted
    });
    wait_blocked(owner.thread());
    owner.interrupt();
    let r = join_within(owner, Duration::from_secs(10));
    assert_eq!(r, Some(true), "the interrupted owner's scope did not end");
}

/// After a scoped thread panicked, a thread the owner spawns into the scope starts interrupted,
/// so the panic still ends the scope (it used to park for ever).
#[test]
fn regression_thread_spawned_after_a_panic_starts_interrupted() {
    in_child(
        "regression_thread_spawned_after_a_panic_starts_interrupted",
        Duration::from_secs(20),
        || {
            testkit::quiet_panics("on purpose");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let r = std::panic::catch_unwind(|| {
                    killable::scope(|s| {
                        let p = s.spawn(|| panic!("on purpose"));
                        while !p.is_finished() {
                            std::thread::yield_now();
                        }
                        s.spawn(killable::park);
                    })
                });
                let _ = tx.send(r.is_err());
            });
            assert_eq!(
                rx.recv_timeout(Duration::from_secs(10)),
                Ok(true),
                "a thread spawned after a panic kept the scope waiting"
            );
        },
    );
}

/// `Scope::stop` seals a nested scope's thread that ignores interrupts (std's `accept` retries
/// `EINTR`): nested scopes' threads are threads of the enclosing scope.
#[test]
fn regression_scope_stop_seals_a_nested_scope_thread() {
    in_child(
        "regression_scope_stop_seals_a_nested_scope_thread",
        Duration::from_secs(30),
        || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let (report, sealed) = killable::scope(|s| {
                    let h = s.spawn(|| {
                        killable::scope(|inner| {
                            let i = inner.spawn(|| listener.accept().map(drop));
                            i.join().unwrap()
                        })
                    });
                    std::thread::sleep(Duration::from_millis(200));
                    let report = s.stop(Duration::from_millis(500));
                    let r = h.join().unwrap();
                    (report, r.is_err_and(|e| killable::is_sealed(&e)))
                });
                let _ = tx.send((report.all_stopped(), report.outcomes().len(), sealed));
            });
            let r = rx.recv_timeout(Duration::from_secs(20));
            assert_eq!(r, Ok((true, 2, true)), "the nested thread was not stopped");
        },
    );
}

/// Every value a rendezvous `send` returned `Ok` for was received, every value it handed back
/// was not, with the receiver dropped while senders wait.
#[test]
fn regression_rendezvous_send_ok_means_received() {
    for _ in 0..20 {
        let (tx, rx) = killable::sync::mpsc::sync_channel::<u32>(0);
        let senders: Vec<_> = (0..4)
            .map(|i| {
                let tx = tx.clone();
                killable::spawn(move || tx.send(i).map_err(|e| e.into_inner()))
            })
            .collect();
        drop(tx);
        let got = rx.recv().unwrap();
        drop(rx);
        let mut ok = Vec::new();
        for (i, s) in senders.into_iter().enumerate() {
            match s.join().unwrap() {
                Ok(()) => ok.push(i as u32),
                Err(v) => assert_eq!(v, i as u32),
            }
        }
        assert_eq!(ok, vec![got], "Ok sends != the value received");
    }
}

/// Joins `h` within `limit` (interrupting it is the caller's business); `None` if it is still
/// running then.
fn join_within<T: Send + 'static>(h: killable::JoinHandle<T>, limit: Duration) -> Option<T> {
    let start = std::time::Instant::now();
    while !h.is_finished() {
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    h.join().ok()
}

/// A rendezvous `try_send` that sees the receiver's waiting flag while the receiver is being
/// interrupted must not report `Ok` for a value the receiver does not take (the flag is stale).
/// Repeated with the interrupt at varying moments.
#[test]
fn regression_rendezvous_try_send_against_a_stale_waiting_flag() {
    let mut lost = 0;
    for round in 0..300u64 {
        let (tx, rx) = killable::sync::mpsc::sync_channel::<u64>(0);
        let receiver = killable::spawn(move || rx.recv().ok());
        let sender = std::thread::spawn(move || {
            loop {
                match tx.try_send(round) {
                    Ok(()) => return true,
                    Err(killable::sync::mpsc::TrySendError::Full(_)) => std::hint::spin_loop(),
                    Err(_) => return false,
                }
            }
        });
        std::thread::sleep(Duration::from_micros(round % 50));
        receiver.interrupt();
        let got = receiver.join().unwrap();
        let sent_ok = sender.join().unwrap();
        if sent_ok && got.is_none() {
            lost += 1;
        }
    }
    assert_eq!(lost, 0, "try_send returned Ok for values never received");
}
