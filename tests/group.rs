//! `killable::Group`: membership (spawned into, inherited from a member, kept after the
//! spawner ends), `interrupt`, and `stop`, whose report lists members only and which keeps going
//! while a member keeps spawning.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use testkit::{wait_blocked, wait_until};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn spawn_lists_members_until_they_finish() {
    let g = killable::Group::new("members");
    assert_eq!(g.name(), "members");
    let a = g.spawn(killable::park).unwrap();
    let b = killable::Builder::new()
        .group(&g)
        .name("b".into())
        .spawn(killable::park)
        .unwrap();
    let outside = killable::spawn(killable::park);
    let mut ids: Vec<_> = g.threads().iter().map(|t| t.id()).collect();
    ids.sort_by_key(|i| i.as_u64());
    let mut want = vec![a.thread().id(), b.thread().id()];
    want.sort_by_key(|i| i.as_u64());
    assert_eq!(ids, want);
    a.interrupt();
    assert!(a.join().unwrap().is_err());
    assert_eq!(g.threads().len(), 1);
    g.interrupt();
    assert!(b.join().unwrap().is_err());
    assert!(g.threads().is_empty());
    assert!(
        !outside.is_finished(),
        "interrupting the group reached a non-member"
    );
    outside.interrupt();
    let _ = outside.join();
}

#[test]
fn a_thread_spawned_by_a_member_joins_and_stays_after_its_parent_ends() {
    let g = killable::Group::new("inherit");
    let parent = g.spawn(|| killable::spawn(killable::park)).unwrap();
    let child = parent.join().unwrap();
    let listed: Vec<_> = g.threads().iter().map(|t| t.id()).collect();
    assert_eq!(listed, [child.thread().id()]);
    // And the grandchild too, spawned by the child through a Builder without a group.
    let report = g.stop(Duration::from_secs(30));
    assert!(report.all_stopped(), "{report}");
    assert!(child.join().unwrap().is_err());
}

#[test]
fn builder_group_overrides_the_inherited_group() {
    let g1 = killable::Group::new("one");
    let g2 = killable::Group::new("two");
    let g2c = g2.clone();
    let parent = g1
        .spawn(move || {
            killable::Builder::new()
                .group(&g2c)
                .spawn(killable::park)
                .unwrap()
        })
        .unwrap();
    let child = parent.join().unwrap();
    assert!(g1.threads().is_empty());
    assert_eq!(g2.threads()[0].id(), child.thread().id());
    g2.interrupt();
    assert!(child.join().unwrap().is_err());
}

#[test]
fn stop_lists_only_members_and_leaves_others_running() {
    let g = killable::Group::new("stop-only-members");
    let members: Vec<_> = (0..3)
        .map(|_| {
            g.spawn(|| killable::sleep(Duration::from_secs(3600)))
                .unwrap()
        })
        .collect();
    let outside = killable::spawn(|| killable::sleep(Duration::from_secs(3600)));
    for m in &members {
        wait_blocked(m.thread());
    }
    wait_blocked(outside.thread());
    let report = g.stop(Duration::from_secs(30));
    assert!(report.all_stopped(), "{report}");
    assert_eq!(report.outcomes().len(), 3);
    for o in report.outcomes() {
        assert!(members.iter().any(|m| m.thread().id() == o.thread().id()));
    }
    assert!(
        !outside.is_finished(),
        "stopping the group reached a non-member"
    );
    for m in members {
        assert!(m.join().unwrap().is_err());
    }
    outside.interrupt();
    let _ = outside.join();
}

/// A member that ignores its interrupt and keeps spawning: the stop goes on until every member,
/// including those born during the stop, is stopped, and only then says all stopped.
#[test]
fn a_group_stopped_while_a_member_keeps_spawning() {
    let g = killable::Group::new("spawning");
    let children = Arc::new(std::sync::Mutex::new(Vec::new()));
    let c = children.clone();
    let spawner = g
        .spawn(move || {
            for _ in 0..200 {
                // Each child blocks until interrupted; it starts interrupted once the spawner is.
                let child = killable::spawn(|| killable::sleep(Duration::from_secs(3600)));
                c.lock().unwrap().push(child.thread().clone());
                // Ignores its own interrupt (a sleep that is not killable's).
                std::thread::sleep(Duration::from_micros(200));
            }
        })
        .unwrap();
    wait_until(LIMIT, "the first children", || {
        children.lock().unwrap().len() >= 5
    });
    let report = g.stop(Duration::from_secs(60));
    assert!(report.all_stopped(), "{report}");
    assert!(spawner.is_finished());
    let children = children.lock().unwrap();
    assert_eq!(children.len(), 200);
    let running = children.iter().filter(|t| !t.is_finished()).count();
    assert_eq!(
        running, 0,
        "members still run after the stop said all stopped"
    );
    assert!(g.threads().is_empty());
    // Children still running at a listing are in the report, and only members are.
    for o in report.outcomes() {
        assert!(
            o.thread().id() == spawner.thread().id()
                || children.iter().any(|t| t.id() == o.thread().id())
        );
    }
    spawner.join().unwrap();
}

/// `interrupt` reaches a member spawned by a member at the same moment: either it is listed, or
/// it starts interrupted (the spawn rule).
#[test]
fn interrupt_reaches_members_spawned_meanwhile() {
    for _ in 0..50 {
        let g = killable::Group::new("race");
        let go = Arc::new(AtomicBool::new(false));
        let go2 = go.clone();
        let spawner = g
            .spawn(move || {
                while !go2.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                }
                (0..5)
                    .map(|_| killable::spawn(killable::park))
                    .collect::<Vec<_>>()
            })
            .unwrap();
        go.store(true, Ordering::SeqCst);
        g.interrupt();
        for child in spawner.join().unwrap() {
            let r = child
                .join_timeout(LIMIT)
                .expect("a child escaped the interrupt");
            assert!(r.unwrap().is_err());
        }
    }
}

#[test]
fn group_is_clone_send_sync_and_debug() {
    fn check<T: Clone + Send + Sync + std::fmt::Debug>(_: &T) {}
    let g = killable::Group::new("traits");
    check(&g);
    assert!(format!("{g:?}").contains("traits"));
}

/// A fork child uses a group whose list another thread of the parent was reading at the fork
/// (it held the list's lock): the child must not wait for a thread it does not have. With a
/// plain mutex, children hang; each child ends itself with `alarm` if it does, and counts.
#[test]
fn regression_a_fork_child_can_use_a_group_a_parent_thread_was_listing() {
    testkit::in_child(
        "regression_a_fork_child_can_use_a_group_a_parent_thread_was_listing",
        LIMIT,
        || {
            let g = killable::Group::new("listed");
            // Many members, so that listing them holds the lock for a while.
            let members: Vec<_> = (0..500)
                .map(|_| {
                    g.spawn(|| killable::sleep(Duration::from_secs(3600)))
                        .unwrap()
                })
                .collect();
            let stop = Arc::new(AtomicBool::new(false));
            let listers: Vec<_> = (0..2)
                .map(|_| {
                    let (g, stop) = (g.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let mut listings = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            listings += g.threads().len() as u64;
                        }
                        listings
                    })
                })
                .collect();
            let (mut hung, mut wrong) = (0, 0);
            for _ in 0..200 {
                // SAFETY: the child uses only killable's fork-aware state and glibc's malloc,
                // and leaves with _exit.
                let pid = unsafe { libc::fork() };
                assert!(pid >= 0, "fork failed");
                if pid == 0 {
                    // SAFETY: alarm only schedules a SIGALRM, which ends a child that hangs.
                    unsafe { libc::alarm(10) };
                    // The parent's members stayed in the parent.
                    let mut ok = g.threads().is_empty();
                    let h = g
                        .spawn(|| killable::sleep(Duration::from_secs(3600)))
                        .unwrap();
                    ok &= g.threads().len() == 1;
                    ok &= g.stop(Duration::from_secs(5)).all_stopped();
                    ok &= h.join().unwrap().is_err();
                    // SAFETY: leaving the child without running the parent's destructors.
                    unsafe { libc::_exit(if ok { 0 } else { 3 }) };
                }
                let mut status = 0;
                // SAFETY: waiting for the child forked above.
                assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
                if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGALRM {
                    hung += 1;
                } else if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                    wrong += 1;
                }
                if hung + wrong > 0 {
                    break;
                }
            }
            stop.store(true, Ordering::Relaxed);
            for l in listers {
                assert!(l.join().unwrap() > 0, "the listers never listed");
            }
            assert!(g.stop(LIMIT).all_stopped());
            drop(members);
            assert_eq!(
                (hung, wrong),
                (0, 0),
                "children that hung, children that failed"
            );
        },
    );
}
