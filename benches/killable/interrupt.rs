//! Interruption figures: latency against a raw `pthread_kill` baseline, the cost of an
//! interruptible read and of `check()`, and the lost-wake-up stress run.

use std::fs::File;
use std::hint::black_box;
use std::io::{PipeReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::thread::JoinHandleExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use killable::io::Interruptible;
use testkit::stress;

use crate::Opts;
use crate::report::{Report, median, median_ratio, paired, percentile};

/// Nanoseconds since a fixed base, comparable across threads.
fn now_ns(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

/// A thread that blocks in a read, over and over, and stamps the time each read returns.
struct Target {
    armed: Arc<AtomicU64>,
    returned: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Target {
    fn new() -> Target {
        Target {
            armed: Arc::new(AtomicU64::new(0)),
            returned: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    fn clones(&self) -> (Arc<AtomicU64>, Arc<AtomicU64>, Arc<AtomicBool>) {
        (self.armed.clone(), self.returned.clone(), self.stop.clone())
    }

    /// One measurement: wait until the target is armed and asleep, send, wait for its stamp.
    fn measure(&self, round: u64, base: Instant, send: &dyn Fn()) -> f64 {
        while self.armed.load(Ordering::SeqCst) < round {
            std::hint::spin_loop();
        }
        // Let it get into the kernel and fall asleep.
        stress::spin_for(200_000);
        let t0 = now_ns(base);
        send();
        let limit = Instant::now();
        loop {
            let stamp = self.returned.load(Ordering::SeqCst);
            if stamp >= t0 {
                return (stamp - t0) as f64 / 1000.0;
            }
            assert!(
                limit.elapsed() < Duration::from_secs(30),
                "target never woke"
            );
            std::hint::spin_loop();
        }
    }
}

extern "C" fn noop(_: libc::c_int) {}

fn latency(opts: &Opts, report: &mut Report) {
    let rounds = if opts.quick { 4_000 } else { 20_000 };
    let (mut ours, mut theirs) = latency_samples(rounds);
    let (k50, k99) = (percentile(&mut ours, 50.0), percentile(&mut ours, 99.0));
    let (b50, b99) = (percentile(&mut theirs, 50.0), percentile(&mut theirs, 99.0));
    report.figure(
        "interrupt_p50_us",
        k50,
        "interrupt() to the blocked read returning, median",
    );
    report.figure("interrupt_p99_us", k99, "same, 99th percentile");
    report.figure(
        "baseline_p50_us",
        b50,
        "raw pthread_kill to a plain blocked read returning, median",
    );
    report.figure("baseline_p99_us", b99, "same, 99th percentile");
    report.figure(
        "interrupt_p50_ratio",
        k50 / b50,
        "killable / baseline at p50 (target <= 1.10)",
    );
    report.figure(
        "interrupt_p99_ratio",
        k99 / b99,
        "killable / baseline at p99 (target <= 1.25)",
    );
}

/// `rounds` latencies in microseconds of `interrupt()` to a killable read and of a raw
/// `pthread_kill` to a plain read, alternated round by round: (killable, baseline).
pub fn latency_samples(rounds: usize) -> (Vec<f64>, Vec<f64>) {
    let base = Instant::now();

    // killable: a killable thread blocked in an interruptible pipe read.
    let (kr, _kw) = std::io::pipe().unwrap();
    let kt = Target::new();
    let (armed, returned, stop) = kt.clones();
    let killable_target = killable::Builder::new()
        .name("lat-killable".into())
        .spawn(move || {
            let mut r = Interruptible::new(kr);
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                killable::clear_interrupt();
                armed.store(i, Ordering::SeqCst);
                let res = r.read(&mut [0u8; 1]);
                returned.store(now_ns(base), Ordering::SeqCst);
                black_box(res.is_err());
            }
        })
        .unwrap();

    // Baseline: a plain thread blocked in libc::read, woken by raw pthread_kill with a no-op
    // handler installed without SA_RESTART.
    // SAFETY: installing a no-op handler for SIGUSR2 (killable uses SIGUSR1 here).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = noop as *const () as usize;
        libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
    }
    let (br, _bw) = std::io::pipe().unwrap();
    let bt = Target::new();
    let (armed, returned, stop) = bt.clones();
    let baseline_target = std::thread::spawn(move || {
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            i += 1;
            armed.store(i, Ordering::SeqCst);
            let mut b = [0u8; 1];
            // SAFETY: reading into a live one-byte buffer.
            let n = unsafe { libc::read(br.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
            returned.store(now_ns(base), Ordering::SeqCst);
            black_box(n);
        }
    });
    let baseline_pthread = baseline_target.as_pthread_t();

    let kill_k = || killable_target.interrupt();
    // SAFETY: the baseline thread is alive until we stop it below.
    let kill_b = || unsafe {
        libc::pthread_kill(baseline_pthread, libc::SIGUSR2);
    };
    let mut ours = Vec::with_capacity(rounds);
    let mut theirs = Vec::with_capacity(rounds);
    for round in 1..=rounds as u64 {
        if round % 2 == 0 {
            ours.push(kt.measure(round, base, &kill_k));
            theirs.push(bt.measure(round, base, &kill_b));
        } else {
            theirs.push(bt.measure(round, base, &kill_b));
            ours.push(kt.measure(round, base, &kill_k));
        }
    }
    kt.stop.store(true, Ordering::SeqCst);
    bt.stop.store(true, Ordering::SeqCst);
    killable_target.interrupt();
    kill_b();
    killable_target.join().unwrap();
    baseline_target.join().unwrap();
    (ours, theirs)
}

fn read_overhead(opts: &Opts, report: &mut Report) {
    const BATCH: usize = 2_000;
    let rounds = if opts.quick { 300 } else { 3_000 };
    let zero = File::open("/dev/zero").unwrap();
    let fd = zero.as_raw_fd();
    let mut ours = Interruptible::new(&zero);
    let mut buf = [0u8; 1];
    let killable_batch = || {
        let t = Instant::now();
        for _ in 0..BATCH {
            black_box(ours.read(black_box(&mut buf)).unwrap());
        }
        t.elapsed()
    };
    let mut buf2 = [0u8; 1];
    let libc_batch = || {
        let t = Instant::now();
        for _ in 0..BATCH {
            // SAFETY: reading into a live one-byte buffer.
            black_box(unsafe { libc::read(fd, black_box(&mut buf2).as_mut_ptr().cast(), 1) });
        }
        t.elapsed()
    };
    let pairs = paired(rounds, killable_batch, libc_batch);
    report.figure(
        "read_overhead_ratio",
        median_ratio(&pairs),
        "Interruptible read / libc::read, 1 byte from /dev/zero, median of pairwise ratios (target <= 1.03)",
    );
}

fn check_cost(opts: &Opts, report: &mut Report) {
    let _ = killable::current(); // give this thread its control block, as a real user's has
    let n: u64 = if opts.quick { 50_000_000 } else { 500_000_000 };
    let mut samples = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..n / 5 {
            black_box(killable::check().is_ok());
        }
        samples.push(t.elapsed().as_nanos() as f64 / (n / 5) as f64);
    }
    report.figure(
        "check_ns",
        median(&mut samples),
        "one killable::check() with no interrupt, ns (target <= 2)",
    );
}

fn killable_read(r: &PipeReader, buf: &mut [u8]) -> std::io::Result<usize> {
    Interruptible::new(r).read(buf)
}

fn lost_wakeups(opts: &Opts, report: &mut Report) {
    let n = if opts.quick { 100_000 } else { 1_000_000 };
    let limit = if opts.quick {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(900)
    };
    let c = stress::run(n, killable_read, Duration::from_secs(10), u64::MAX, limit);
    report.figure(
        "interrupts",
        c.interrupts as f64,
        "interrupts sent at random moments around the check",
    );
    report.figure(
        "lost_wakeups",
        c.lost_wakeups as f64,
        "of those, reads that stayed blocked (target 0)",
    );
}

pub fn run(opts: &Opts, report: &mut Report) {
    latency(opts, report);
    read_overhead(opts, report);
    check_cost(opts, report);
    lost_wakeups(opts, report);
}
