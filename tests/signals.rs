//! Signals killable did not send interrupt nothing and reach the handler installed before
//! killable's. Own binary: it installs a process-wide SIGUSR1 handler first.

use std::io::Read;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use killable::io::Interruptible;

static APP_SEEN: AtomicUsize = AtomicUsize::new(0);

extern "C" fn app_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    APP_SEEN.fetch_add(1, Ordering::SeqCst);
}

fn install_app_handler() {
    // SAFETY: a plain, async-signal-safe handler installed with a zeroed (valid) sigaction.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = app_handler as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
}

fn wait_for_app_count(n: usize, what: &str) {
    let start = Instant::now();
    while APP_SEEN.load(Ordering::SeqCst) < n {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: the application's handler never saw it"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Child mode: sends one signal as told by the environment, exits 0 on success.
#[test]
fn child_sender() {
    let Ok(mode) = std::env::var("KILLABLE_SEND") else {
        return;
    };
    let pid: i32 = std::env::var("KILLABLE_PID").unwrap().parse().unwrap();
    let tid: i32 = std::env::var("KILLABLE_TID").unwrap().parse().unwrap();
    // SAFETY: siginfo_t is plain data.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    info.si_signo = libc::SIGUSR1;
    // The forged fields live after si_signo/si_errno/si_code: pid at offset 16, uid at 20,
    // value at 24 (layout of the _rt and _timer members on x86_64, aarch64 and riscv64).
    let raw = (&raw mut info).cast::<u8>();
    let r = match mode.as_str() {
        // SAFETY: tgkill has no memory preconditions.
        "tgkill" => unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGUSR1) },
        "queue-forged-pid" | "tkill-forged" | "timer-forged" => {
            info.si_code = match mode.as_str() {
                "queue-forged-pid" => libc::SI_QUEUE,
                "tkill-forged" => libc::SI_TKILL,
                _ => libc::SI_TIMER,
            };
            // SAFETY: writing inside the siginfo_t we own (128 bytes).
            unsafe {
                raw.add(16).cast::<i32>().write_unaligned(pid);
                raw.add(24).cast::<usize>().write_unaligned(0x1000);
            }
            // SAFETY: rt_tgsigqueueinfo reads the siginfo we pass.
            unsafe { libc::syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, libc::SIGUSR1, &info) }
        }
        _ => panic!("unknown mode"),
    };
    let err = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    if mode == "tkill-forged" {
        // The kernel refuses SI_TKILL from another process: that is what makes it trustworthy.
        assert!(
            r == -1 && err == libc::EPERM,
            "forged SI_TKILL was accepted"
        );
    } else {
        assert_eq!(r, 0, "{mode} failed: errno {err}");
    }
}

fn send_from_child(mode: &str, tid: i32) {
    let out = testkit::own_binary()
        .args(["child_sender", "--exact", "--test-threads=1"])
        .env("KILLABLE_SEND", mode)
        .env("KILLABLE_PID", std::process::id().to_string())
        .env("KILLABLE_TID", tid.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child {mode}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn foreign_signals_interrupt_nothing_and_are_chained() {
    if std::env::var("KILLABLE_SEND").is_ok() {
        return;
    }
    install_app_handler();
    // Install killable's handler on top (the first interrupt does).
    killable::current().interrupt();
    killable::clear_interrupt();

    let (r, w) = std::io::pipe().unwrap();
    let reader = killable::spawn(move || Interruptible::new(r).read(&mut [0u8; 4]));
    let tid = reader.thread().tid();
    let mut expected = 0;

    // SAFETY: kill(2) to our own process.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) }, 0);
    expected += 1;
    wait_for_app_count(expected, "kill(getpid())");

    let st = Command::new("kill")
        .args(["-USR1", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    expected += 1;
    wait_for_app_count(expected, "kill -USR1 from a child");

    for mode in ["tgkill", "queue-forged-pid", "timer-forged"] {
        send_from_child(mode, tid);
        expected += 1;
        wait_for_app_count(expected, mode);
    }
    send_from_child("tkill-forged", tid);

    // The application's own thread-directed signals (SI_TKILL, no killable marker) are its own.
    // SAFETY: raise and pthread_kill of a live thread of ours.
    assert_eq!(unsafe { libc::raise(libc::SIGUSR1) }, 0);
    expected += 1;
    wait_for_app_count(expected, "raise");
    let native = reader.as_pthread_t();
    // SAFETY: the reader thread is alive (its handle is held).
    assert_eq!(unsafe { libc::pthread_kill(native, libc::SIGUSR1) }, 0);
    expected += 1;
    wait_for_app_count(expected, "pthread_kill to a killable thread");

    std::thread::sleep(Duration::from_millis(50));
    assert!(!reader.is_finished(), "a foreign signal ended the read");
    assert!(!reader.thread().is_interrupted());
    assert_eq!(
        APP_SEEN.load(Ordering::SeqCst),
        expected,
        "every foreign signal reached the app once"
    );

    // Our own interrupt is not passed to the application's handler.
    reader.interrupt();
    let r = reader
        .join_timeout(Duration::from_secs(30))
        .expect("interrupt ended the read")
        .unwrap();
    assert!(killable::is_interrupt(&r.unwrap_err()));
    assert_eq!(APP_SEEN.load(Ordering::SeqCst), expected);
    drop(w);
}
