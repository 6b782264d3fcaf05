//! Process events under load: `fork` from a killable thread while other threads are being
//! interrupted; each child spawns and interrupts threads of its own and checks its registry.
//! A child that hangs is killed by its own `alarm` and counted as failed.
//!
//! Used by the reliability benchmark and by `tests/process.rs`.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Debug, Default, Clone, Copy)]
pub struct Forks {
    pub forks: u64,
    pub child_failures: u64,
    pub interrupts_meanwhile: u64,
}

/// What a forked child checks; its exit status says whether all held.
fn child_checks(forker: &killable::Thread) -> bool {
    // SAFETY: alarm only schedules a SIGALRM; it ends a child that hangs.
    unsafe { libc::alarm(20) };
    let listed = killable::threads();
    let only_forker = listed.len() == 1 && listed[0].thread().id() == forker.id();
    let mut ok = only_forker;
    for _ in 0..3 {
        let h = killable::spawn(|| killable::sleep(Duration::from_secs(3600)));
        h.interrupt();
        ok &= matches!(h.join(), Ok(Err(_)));
    }
    let (r, _w) = std::io::pipe().expect("pipe");
    let h = killable::spawn(move || killable::io::Interruptible::new(r).read(&mut [0u8; 1]));
    h.interrupt();
    ok &= matches!(h.join(), Ok(Err(e)) if killable::is_interrupt(&e));
    ok
}

/// Forks `n` times from a killable thread while `busy` threads sit in interruptible reads and
/// two threads interrupt them without pause.
pub fn run(n: u64, busy: usize) -> Forks {
    let stop = Arc::new(AtomicBool::new(false));
    let (r, w) = std::io::pipe().expect("pipe");
    let r = Arc::new(killable::io::Interruptible::new(r));
    let readers: Vec<_> = (0..busy)
        .map(|_| {
            let (r, stop) = (r.clone(), stop.clone());
            killable::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let _ = (&*r).read(&mut [0u8; 1]);
                    killable::clear_interrupt();
                }
            })
        })
        .collect();
    let targets: Arc<Vec<killable::Thread>> =
        Arc::new(readers.iter().map(|h| h.thread().clone()).collect());
    let interrupters: Vec<_> = (0..2)
        .map(|k| {
            let (targets, stop) = (targets.clone(), stop.clone());
            killable::spawn(move || {
                let mut sent = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    targets[(sent as usize + k) % targets.len()].interrupt();
                    sent += 1;
                    std::thread::yield_now();
                }
                sent
            })
        })
        .collect();
    let forker = killable::Builder::new()
        .name("forker".into())
        .spawn(move || {
            let me = killable::current();
            let mut failures = 0;
            for _ in 0..n {
                // SAFETY: the child runs only fork-safe code (glibc's malloc and killable's
                // fork-aware registry) and leaves with _exit.
                let pid = unsafe { libc::fork() };
                assert!(pid >= 0, "fork failed");
                if pid == 0 {
                    let ok = child_checks(&me);
                    // SAFETY: _exit is always safe.
                    unsafe { libc::_exit(if ok { 0 } else { 1 }) };
                }
                let mut status = 0;
                // SAFETY: waiting for our own child.
                let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
                if waited != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                    failures += 1;
                }
            }
            failures
        })
        .expect("spawn forker");
    let child_failures = forker.join().expect("forker panicked");
    stop.store(true, Ordering::SeqCst);
    let interrupts_meanwhile = interrupters
        .into_iter()
        .map(|h| h.join().expect("interrupter"))
        .sum();
    for h in &readers {
        h.interrupt();
    }
    for h in readers {
        h.join().expect("reader panicked");
    }
    drop(w);
    Forks {
        forks: n,
        child_failures,
        interrupts_meanwhile,
    }
}
