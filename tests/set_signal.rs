//! Choosing the signal, bad signals, and a replaced handler. Own binary: it changes
//! process-wide signal dispositions; a single test keeps the steps in order.

use std::io::{ErrorKind, Read};
use std::time::Duration;

use killable::io::Interruptible;

fn action(sig: i32) -> libc::sigaction {
    // SAFETY: querying into a zeroed (valid) sigaction.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut sa);
        sa
    }
}

#[test]
fn set_signal_then_replace_the_handler() {
    for bad in [
        0,
        -1,
        1000,
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        32,
        33,
    ] {
        let e = killable::set_signal(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "signal {bad}: {e}");
    }
    assert_eq!(killable::signal(), libc::SIGUSR1);
    killable::set_signal(libc::SIGUSR2).unwrap();
    assert_eq!(killable::signal(), libc::SIGUSR2);

    // Interrupt a blocked read: the handler goes on SIGUSR2, without SA_RESTART.
    let (r, _w) = std::io::pipe().unwrap();
    let h = killable::spawn(move || Interruptible::new(r).read(&mut [0u8; 1]));
    std::thread::sleep(Duration::from_millis(20));
    h.interrupt();
    let res = h
        .join_timeout(Duration::from_secs(30))
        .expect("interrupted")
        .unwrap();
    assert!(killable::is_interrupt(&res.unwrap_err()));
    let sa = action(libc::SIGUSR2);
    assert_ne!(sa.sa_sigaction, libc::SIG_DFL);
    assert_eq!(
        sa.sa_flags & libc::SA_RESTART,
        0,
        "SA_RESTART would lose interrupts"
    );
    assert_ne!(sa.sa_flags & libc::SA_SIGINFO, 0);
    // The interrupt handler runs on the alternate stack: a thread with a few KB of stack left
    // must still take an interrupt, and a handler chained from ours keeps the alternate stack
    // it asked for (src/signal.rs; tests/regression_perf.rs).
    assert_ne!(
        sa.sa_flags & libc::SA_ONSTACK,
        0,
        "the interrupt handler must run on the alternate stack"
    );
    // So does the stack-overflow report (the thread's stack is exhausted when it runs): its
    // SIGSEGV and SIGBUS handlers have SA_ONSTACK too.
    for sig in [libc::SIGSEGV, libc::SIGBUS] {
        let sa = action(sig);
        assert_ne!(sa.sa_sigaction, libc::SIG_DFL, "signal {sig}");
        assert_ne!(sa.sa_flags & libc::SA_ONSTACK, 0, "signal {sig}");
    }
    assert_eq!(
        action(libc::SIGUSR1).sa_sigaction,
        libc::SIG_DFL,
        "SIGUSR1 untouched"
    );

    // Too late to change; the same signal is fine.
    assert_eq!(
        killable::set_signal(libc::SIGUSR1).unwrap_err().kind(),
        ErrorKind::ResourceBusy
    );
    killable::set_signal(libc::SIGUSR2).unwrap();

    // Someone replaces our handler: interrupt() reports it instead of doing nothing.
    // SAFETY: installing SIG_IGN is always valid.
    unsafe { libc::signal(libc::SIGUSR2, libc::SIG_IGN) };
    let victim = killable::spawn(|| {
        while killable::check().is_ok() {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let e = victim.try_interrupt().unwrap_err();
    assert!(e.to_string().contains("replaced"), "{e}");
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| victim.interrupt()));
    assert!(
        panicked.is_err(),
        "interrupt() panics when the handler was replaced"
    );
    // The flag was still set, so cooperative code stops anyway.
    victim
        .join_timeout(Duration::from_secs(30))
        .expect("the flag was set")
        .unwrap();
}
