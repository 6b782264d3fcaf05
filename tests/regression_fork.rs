//! Fork children and groups (regressions from the review of the set lock): a fork that races
//! with the first use of killable in the process, a grandchild forked while its parent starts a
//! thread, and the forking member's membership in the child. Everything forks inside a child
//! process (`testkit::in_child`), and every fork child ends itself with `alarm` if it hangs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[test]
fn regression_a_fork_during_the_first_use_of_a_group_leaves_the_child_working() {
    testkit::in_child(
        "regression_a_fork_during_the_first_use_of_a_group_leaves_the_child_working",
        Duration::from_secs(120),
        || {
            let mut hung = 0;
            let trials = 500;
            for i in 0..trials {
                // SAFETY: the child `p` only runs this trial and `_exit`s.
                let p = unsafe { libc::fork() };
                assert!(p >= 0);
                if p == 0 {
                    let code = trial((i % 100) * 10);
                    // SAFETY: ends the trial process without running the harness's exit.
                    unsafe { libc::_exit(code) };
                }
                let mut status = 0;
                // SAFETY: `p` is our child.
                unsafe { libc::waitpid(p, &mut status, 0) };
                assert!(libc::WIFEXITED(status), "trial process died: {status:#x}");
                match libc::WEXITSTATUS(status) {
                    0 => {}
                    3 => {
                        hung += 1;
                        break;
                    }
                    c => panic!("trial failed with {c}"),
                }
            }
            println!("fork child hung in its first group use: {hung} (stopped at the first)");
            assert_eq!(hung, 0, "{hung} fork children hung in Group::threads");
        },
    );
}

/// One trial (runs in a fresh process): 0 ok, 3 the fork child hung.
fn trial(delay: u32) -> i32 {
    let g = Arc::new(killable::Group::new("g"));
    let go = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicBool::new(false));
    let t = {
        let (g, go, ready) = (g.clone(), go.clone(), ready.clone());
        std::thread::spawn(move || {
            ready.store(true, Ordering::Release);
            while !go.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            g.threads().len()
        })
    };
    while !ready.load(Ordering::Acquire) {
        std::hint::spin_loop();
    }
    go.store(true, Ordering::Release);
    for _ in 0..delay {
        std::hint::spin_loop();
    }
    // SAFETY: the child only lists the group and `_exit`s.
    let q = unsafe { libc::fork() };
    if q == 0 {
        // SAFETY: alarm has no preconditions; its default action ends a hung child.
        unsafe { libc::alarm(3) };
        let n = g.threads().len();
        // SAFETY: ends the child.
        unsafe { libc::_exit(if n == 0 { 0 } else { 4 }) };
    }
    let mut status = 0;
    // SAFETY: `q` is our child.
    unsafe { libc::waitpid(q, &mut status, 0) };
    let _ = t.join();
    if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGALRM {
        3
    } else if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        5
    }
}

#[test]
fn regression_a_grandchild_forked_while_its_parent_starts_a_thread_can_spawn() {
    testkit::in_child(
        "regression_a_grandchild_forked_while_its_parent_starts_a_thread_can_spawn",
        Duration::from_secs(60),
        || {
            let g = Arc::new(killable::Group::new("n"));
            let stop = Arc::new(AtomicBool::new(false));
            let hammer = |g: Arc<killable::Group>, stop: Arc<AtomicBool>| {
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let _ = g.threads();
                    }
                })
            };
            let h = hammer(g.clone(), stop.clone());
            std::thread::sleep(Duration::from_millis(20));
            for _ in 0..60 {
                // SAFETY: the child uses the group, forks once more, and `_exit`s.
                let c = unsafe { libc::fork() };
                if c == 0 {
                    // SAFETY: alarm only schedules a SIGALRM, which ends a hung child.
                    unsafe { libc::alarm(10) };
                    let stop2 = Arc::new(AtomicBool::new(false));
                    let h2 = hammer(g.clone(), stop2.clone());
                    let m = g
                        .spawn(|| killable::sleep(Duration::from_secs(3600)))
                        .unwrap();
                    // SAFETY: as above.
                    let gc = unsafe { libc::fork() };
                    if gc == 0 {
                        // SAFETY: alarm only schedules a SIGALRM, which ends a hung child.
                        unsafe { libc::alarm(5) };
                        let n = g.threads().len() as i32;
                        let j = g.spawn(|| 1).unwrap().join().unwrap() == 1;
                        // SAFETY: ends the fork child without running the parent's destructors.
                        unsafe {
                            libc::_exit(if n == 0 && j {
                                0
                            } else {
                                20 + n * 2 + j as i32
                            })
                        };
                    }
                    let mut st = 0;
                    // SAFETY: waiting for a child forked above.
                    unsafe { libc::waitpid(gc, &mut st, 0) };
                    stop2.store(true, Ordering::Relaxed);
                    h2.join().unwrap();
                    let listed = g.threads().len();
                    m.interrupt();
                    let _ = m.join();
                    let ok = libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 && listed == 1;
                    if !ok {
                        eprintln!("grandchild status {st:#x}, listed in the child {listed}");
                    }
                    // SAFETY: ends the fork child without running the parent's destructors.
                    unsafe { libc::_exit(if ok { 0 } else { 8 }) };
                }
                let mut st = 0;
                // SAFETY: waiting for a child forked above.
                unsafe { libc::waitpid(c, &mut st, 0) };
                assert!(
                    libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
                    "nested fork child failed: {st:#x}"
                );
            }
            stop.store(true, Ordering::Relaxed);
            h.join().unwrap();
        },
    );
}

#[test]
fn regression_the_forking_member_is_in_no_group_in_the_child() {
    testkit::in_child(
        "regression_the_forking_member_is_in_no_group_in_the_child",
        Duration::from_secs(60),
        || {
            let g = Arc::new(killable::Group::new("f"));
            let stop = Arc::new(AtomicBool::new(false));
            let hammer = {
                let (g, stop) = (g.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let _ = g.threads();
                    }
                })
            };
            let g2 = g.clone();
            let (listed, trials) = g
                .spawn(move || {
                    let me = killable::current().id();
                    let g = g2;
                    let (mut listed, trials) = (0, 200);
                    for _ in 0..trials {
                        // SAFETY: the child lists the group and `_exit`s.
                        let c = unsafe { libc::fork() };
                        if c == 0 {
                            // SAFETY: alarm only schedules a SIGALRM, which ends a hung child.
                            unsafe { libc::alarm(5) };
                            let there = g.threads().iter().any(|t| t.id() == me);
                            // SAFETY: ends the fork child without running the parent's destructors.
                            unsafe { libc::_exit(if there { 1 } else { 0 }) };
                        }
                        let mut st = 0;
                        // SAFETY: waiting for a child forked above.
                        unsafe { libc::waitpid(c, &mut st, 0) };
                        assert!(libc::WIFEXITED(st), "child died: {st:#x}");
                        listed += libc::WEXITSTATUS(st) as usize;
                    }
                    (listed, trials)
                })
                .unwrap()
                .join()
                .unwrap();
            stop.store(true, Ordering::Relaxed);
            hammer.join().unwrap();
            println!("the forking member was listed in {listed} of {trials} fork children");
            assert_eq!(
                listed, 0,
                "the forking member is listed in {listed} of {trials} fork children \
                 (in the child it is in no group, whoever held the lock at the fork)"
            );
        },
    );
}
