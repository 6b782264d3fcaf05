//! Forged signals: a child process sends killable's signal to this process and to its threads
//! in every way another process can (kill, tgkill, rt_sigqueueinfo and rt_tgsigqueueinfo with a
//! forged sender pid and value, forged SI_TIMER) while killable threads sit in interruptible
//! reads. None may interrupt a thread; every one must reach the handler the application
//! installed before killable's. The child waits for that handler's acknowledgement (a byte on a
//! pipe) before sending the next, so deliveries are counted exactly.
//!
//! Used by the reliability benchmark (100,000 signals) and by `tests/forged.rs` (fewer). The
//! caller re-executes itself as the child: see [`child_main`]. [`run`] installs a process-wide
//! `SIGUSR1` handler, so give it a process of its own (a test binary with that one test).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use killable::io::Interruptible;

pub const CHILD_ENV: &str = "KILLABLE_FORGE_CHILD";

static SEEN: AtomicU64 = AtomicU64::new(0);
static ACK_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn app_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    SEEN.fetch_add(1, Ordering::SeqCst);
    let fd = ACK_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; one byte from a static.
        unsafe { libc::write(fd, b"!".as_ptr().cast(), 1) };
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Forged {
    pub sent: u64,
    /// Deliveries to the application's own handler.
    pub app_deliveries: u64,
    /// Reads that returned the interrupt error while only forged signals were sent.
    pub spurious_interrupts: u64,
    /// Reader threads that died or returned anything else before the real interrupt.
    pub crashes: u64,
}

/// In the child: sends `n` signals of rotating kinds to `pid` and `tids`, waiting for one
/// acknowledgement byte on stdin after each. Exits the process.
pub fn child_main(spec: &str) -> ! {
    let mut parts = spec.split(',').map(|x| x.parse::<i64>().expect("number"));
    let pid = parts.next().unwrap() as i32;
    let n = parts.next().unwrap() as u64;
    let tids: Vec<i32> = parts.map(|t| t as i32).collect();
    let mut stdin = std::io::stdin().lock();
    let mut byte = [0u8; 1];
    for i in 0..n {
        let tid = tids[(i as usize / 5) % tids.len()];
        // SAFETY: siginfo_t is plain data; the fields set are inside it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        info.si_signo = libc::SIGUSR1;
        let raw = (&raw mut info).cast::<u8>();
        let forge = |code: i32, value: usize, info: &mut libc::siginfo_t| {
            info.si_code = code;
            // SAFETY: `_rt` layout (x86_64, aarch64, riscv64): pid at 16, uid at 20, value at 24.
            unsafe {
                raw.add(16).cast::<i32>().write_unaligned(pid);
                raw.add(24).cast::<usize>().write_unaligned(value);
            }
        };
        // SAFETY: plain signal-sending system calls with valid arguments.
        let r = unsafe {
            match i % 5 {
                0 => libc::kill(pid, libc::SIGUSR1) as i64,
                1 => libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGUSR1),
                2 => {
                    forge(libc::SI_QUEUE, i as usize, &mut info);
                    libc::syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, libc::SIGUSR1, &info)
                }
                3 => {
                    forge(libc::SI_TIMER, 0x1000 + i as usize, &mut info);
                    libc::syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, libc::SIGUSR1, &info)
                }
                _ => {
                    forge(libc::SI_QUEUE, usize::MAX - i as usize, &mut info);
                    libc::syscall(libc::SYS_rt_sigqueueinfo, pid, libc::SIGUSR1, &info)
                }
            }
        };
        assert_eq!(
            r,
            0,
            "signal {i} not sent: {}",
            std::io::Error::last_os_error()
        );
        stdin.read_exact(&mut byte).expect("acknowledgement");
    }
    std::process::exit(0)
}

/// In the parent: installs the application's handler (before killable's), starts `readers`
/// killable threads in interruptible reads, runs the child (`child` is the command that
/// re-executes this program; this adds the environment and pipes), then interrupts the readers
/// for real and checks they end with the interrupt.
pub fn run(n: u64, readers: usize, mut child: Command) -> Forged {
    // SAFETY: installing a plain async-signal-safe handler before killable's.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = app_handler as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
    // Install killable's handler on top.
    killable::current().interrupt();
    killable::clear_interrupt();

    let (data_r, data_w) = std::io::pipe().expect("pipe");
    let data_r = std::sync::Arc::new(Interruptible::new(data_r));
    let threads: Vec<_> = (0..readers)
        .map(|_| {
            let r = data_r.clone();
            killable::spawn(move || (&*r).read(&mut [0u8; 1]))
        })
        .collect();
    let tids: Vec<String> = threads
        .iter()
        .map(|h| h.thread().tid().to_string())
        .collect();

    let (ack_r, mut ack_w) = std::io::pipe().expect("pipe");
    ACK_FD.store(ack_w.as_raw_fd(), Ordering::SeqCst);
    let before = SEEN.load(Ordering::SeqCst);
    let spec = format!("{},{n},{}", std::process::id(), tids.join(","));
    let mut proc = child
        .env(CHILD_ENV, spec)
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(ack_r)))
        .spawn()
        .expect("spawn the child");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = proc.try_wait().expect("wait") {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(600), "child hung");
        std::thread::sleep(Duration::from_millis(5));
    };
    ACK_FD.store(-1, Ordering::SeqCst);
    let _ = ack_w.flush();
    assert!(status.success(), "the child failed: {status}");
    let app_deliveries = SEEN.load(Ordering::SeqCst) - before;

    let mut counts = Forged {
        sent: n,
        app_deliveries,
        ..Forged::default()
    };
    counts.spurious_interrupts = threads.iter().filter(|h| h.is_finished()).count() as u64;
    for h in threads {
        h.interrupt();
        match h.join_timeout(Duration::from_secs(30)) {
            Ok(Ok(Err(e))) if killable::is_interrupt(&e) => {}
            _ => counts.crashes += 1,
        }
    }
    drop(data_w);
    counts
}
