//! Process-level behaviour that must run on the real main thread or in a child process:
//! `current()` on the main thread, `fork()`, and the stack-overflow report.
//!
//! This binary has no test harness (`harness = false` in Cargo.toml), so `main` is the
//! process's main thread.

use std::sync::mpsc;
use std::time::Duration;

use testkit::forks;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("overflow-child") {
        overflow_child();
    }
    if std::env::args().nth(1).as_deref() == Some("edge-child") {
        edge_child();
    }
    let tests: &[(&str, fn())] = &[
        ("current_on_the_main_thread", current_on_the_main_thread),
        (
            "forked_child_keeps_only_the_forking_thread",
            forked_child_keeps_only_the_forking_thread,
        ),
        (
            "stack_overflow_is_reported_like_std",
            stack_overflow_is_reported_like_std,
        ),
        (
            "regression_an_interrupt_with_600_bytes_of_stack_left_is_delivered",
            regression_an_interrupt_with_600_bytes_of_stack_left_is_delivered,
        ),
        (
            "forks_while_threads_are_being_interrupted",
            forks_while_threads_are_being_interrupted,
        ),
    ];
    let mut failed = 0;
    for (name, test) in tests {
        match std::panic::catch_unwind(test) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!("{} passed, {failed} failed", tests.len() - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}

fn current_on_the_main_thread() {
    let main = killable::current();
    assert_eq!(main.name(), Some("main"));
    assert_eq!(main.tid(), std::process::id() as i32);
    assert!(!main.is_finished());
    assert!(
        killable::threads()
            .iter()
            .all(|t| t.thread().id() != main.id()),
        "main is not managed"
    );
}

fn forked_child_keeps_only_the_forking_thread() {
    // Install killable's handler before the fork, so the child inherits it and its cached pid.
    killable::current().interrupt();
    killable::clear_interrupt();
    let (tx, rx) = mpsc::channel::<()>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let sleepers: Vec<_> = (0..3)
        .map(|_| {
            let rx = rx.clone();
            killable::spawn(move || {
                let _ = rx.lock().unwrap().recv();
            })
        })
        .collect();
    let forker = killable::Builder::new()
        .name("forker".into())
        .spawn(move || {
            let me = killable::current();
            // SAFETY: the child only runs code that is safe after fork in glibc (malloc and our
            // own fork-aware registry) and leaves with _exit.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                let ok = child_checks(&me, sleepers);
                // SAFETY: _exit is always safe.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            let mut status = 0;
            // SAFETY: waiting for our own child.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            (
                libc::WIFEXITED(status),
                libc::WEXITSTATUS(status),
                sleepers_back(),
            )
        })
        .unwrap();
    fn sleepers_back() {}
    let (exited, code, ()) = forker.join().unwrap();
    assert!(
        exited && code == 0,
        "child checks failed (exited {exited}, code {code})"
    );
    drop(tx);
}

fn child_checks(me: &killable::Thread, sleepers: Vec<killable::JoinHandle<()>>) -> bool {
    let listed = killable::threads();
    let only_me = listed.len() == 1 && listed[0].thread().id() == me.id();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let tid_fixed = me.tid() == pid && killable::current().tid() == pid;
    let lost = sleepers.into_iter().all(|h| h.join().is_err());
    let spawns = killable::spawn(|| 4).join().ok() == Some(4);
    // Interruption works in the child (the cached pid was refreshed by the fork handler).
    let sleeper = killable::spawn(|| killable::sleep(Duration::from_secs(3600)));
    sleeper.interrupt();
    let interrupts = matches!(sleeper.join(), Ok(Err(_)));
    only_me && tid_fixed && lost && spawns && interrupts
}

fn overflow_child() -> ! {
    #[allow(unconditional_recursion)]
    fn recurse(n: u64) -> u64 {
        let buf = [n; 64];
        std::hint::black_box(&buf);
        recurse(n + 1) + buf[3]
    }
    let h = killable::Builder::new()
        .name("deep".into())
        .stack_size(128 * 1024)
        .spawn(|| recurse(0))
        .unwrap();
    let _ = h.join();
    std::process::exit(0)
}

fn stack_overflow_is_reported_like_std() {
    let out = testkit::own_binary()
        .arg("overflow-child")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "status {:?}, stderr {stderr}",
        out.status
    );
    assert!(stderr.contains("thread 'deep' ("), "stderr: {stderr}");
    assert!(
        stderr.contains(") has overflowed its stack\nfatal runtime error: stack overflow"),
        "stderr: {stderr}"
    );
}

/// A thread whose stack pointer sits a few hundred bytes above its guard, spinning in a loop
/// that uses no stack, is interrupted. Its own stack has no room for a signal frame; killable's
/// handler runs on the alternate stack (src/signal.rs), so the interrupt is delivered there and
/// seen, and nothing is reported as an overflow. (With the handler on the thread's own stack,
/// the kernel raised SIGSEGV instead and the process aborted with an overflow report.)
fn edge_child() -> ! {
    use std::sync::atomic::{AtomicBool, Ordering};
    static READY: AtomicBool = AtomicBool::new(false);
    static RELEASE: AtomicBool = AtomicBool::new(false);

    fn descend(low: usize) {
        let buf = [0u8; 64];
        let sp = std::hint::black_box(&buf).as_ptr() as usize;
        if sp - low > 600 {
            descend(low);
            std::hint::black_box(&buf);
            return;
        }
        READY.store(true, Ordering::SeqCst);
        let flag = RELEASE.as_ptr();
        // Spin until released without touching the stack: less than a signal frame is left.
        // SAFETY: a loop that only reads the flag's byte; no stack.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            std::arch::asm!(
                "2: pause",
                "cmp byte ptr [{f}], 0",
                "je 2b",
                f = in(reg) flag,
                options(nostack, readonly)
            )
        }
        // SAFETY: as above.
        #[cfg(target_arch = "aarch64")]
        unsafe {
            std::arch::asm!(
                "2: yield",
                "ldarb {t:w}, [{f}]",
                "cbz {t:w}, 2b",
                f = in(reg) flag,
                t = out(reg) _,
                options(nostack, readonly)
            )
        }
        // SAFETY: as above.
        #[cfg(target_arch = "riscv64")]
        unsafe {
            std::arch::asm!(
                "2: lbu {t}, 0({f})",
                "beqz {t}, 2b",
                f = in(reg) flag,
                t = out(reg) _,
                options(nostack, readonly)
            )
        }
    }

    // A first thread, so that the edge thread's guard comes from the descriptor read
    // (src/stack.rs, record_guard) rather than from pthread_getattr_np.
    killable::spawn(|| ()).join().unwrap();
    let h = killable::Builder::new()
        .name("edge".into())
        .stack_size(128 * 1024)
        .spawn(|| {
            descend(testkit::stack_low());
            killable::check()
        })
        .unwrap();
    while !READY.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    println!("at the edge");
    h.interrupt();
    // The signal was queued before `interrupt` returned: once it is no longer pending, it was
    // delivered at the edge (had its frame not fit, the process would have died of it).
    testkit::wait_until(Duration::from_secs(10), "the signal delivered", || {
        !testkit::signal_pending(h.thread().tid(), libc::SIGUSR1)
    });
    RELEASE.store(true, Ordering::SeqCst);
    let r = h.join().expect("the edge thread does not panic");
    let e = std::io::Error::from(r.expect_err("the interrupt was seen"));
    assert!(killable::is_interrupt(&e), "{e:?}");
    println!("interrupted at the edge");
    std::process::exit(0)
}

fn regression_an_interrupt_with_600_bytes_of_stack_left_is_delivered() {
    let out = testkit::own_binary().arg("edge-child").output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success()
            && stdout.contains("at the edge")
            && stdout.contains("interrupted at the edge")
            && !stderr.contains("overflowed its stack"),
        "status {:?}, stdout {stdout}, stderr {stderr}",
        out.status
    );
}

fn forks_while_threads_are_being_interrupted() {
    let f = forks::run(20, 4);
    println!("{f:?}");
    assert_eq!(f.child_failures, 0, "{f:?}");
    assert!(f.forks == 20 && f.interrupts_meanwhile > 0, "{f:?}");
}
