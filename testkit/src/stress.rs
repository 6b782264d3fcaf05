//! The lost-wake-up harness: a target thread blocks in a read again and again while this thread
//! interrupts it at random moments around its check; an interrupt that does not make the read
//! return within the hang guard is a lost wake-up (the read is then rescued with a byte).
//!
//! Used by the benchmark (`interrupts`, `lost_wakeups`) and by `tests/lost_wakeups.rs`, which
//! also runs it against a deliberately racy check-then-call read to show that it does catch lost
//! wake-ups. It uses only killable's public API.

use std::io::{self, PipeReader, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A blocking read of one byte from the pipe, killable or not.
pub type ReadFn = fn(&PipeReader, &mut [u8]) -> io::Result<usize>;

#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Interrupts sent, each at a random moment around the target's check.
    pub interrupts: u64,
    /// Interrupts after which the read did not return within the hang guard.
    pub lost_wakeups: u64,
    /// Reads that returned data (the rescue byte) rather than an interrupt error.
    pub data_reads: u64,
}

/// xorshift64*: a small, seedable generator for the random delays.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// Busy-waits for `ns` nanoseconds (a sleep would be far too coarse).
pub fn spin_for(ns: u64) {
    let t = Instant::now();
    while (t.elapsed().as_nanos() as u64) < ns {
        std::hint::spin_loop();
    }
}

fn wait_until(flag: &AtomicU64, at_least: u64, limit: Duration) -> bool {
    let t = Instant::now();
    while flag.load(Ordering::SeqCst) < at_least {
        if t.elapsed() > limit {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// Runs up to `iterations` rounds, stopping early after `max_lost` lost wake-ups or when
/// `time_limit` is used up.
pub fn run(
    iterations: u64,
    read: ReadFn,
    hang_guard: Duration,
    max_lost: u64,
    time_limit: Duration,
) -> Counts {
    let (reader, mut writer) = io::pipe().expect("pipe");
    let ready = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let data = Arc::new(AtomicU64::new(0));
    let (r2, d2, s2, data2) = (ready.clone(), done.clone(), stop.clone(), data.clone());
    let target = killable::Builder::new()
        .name("stress-target".into())
        .spawn(move || {
            let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
            let mut buf = [0u8; 1];
            let mut i = 0;
            while !s2.load(Ordering::SeqCst) {
                i += 1;
                killable::clear_interrupt();
                r2.store(i, Ordering::SeqCst);
                // A random pause so the interrupt lands before, at, or after the check.
                spin_for(rng.below(1500));
                if let Ok(1) = read(&reader, &mut buf) {
                    data2.fetch_add(1, Ordering::SeqCst);
                }
                d2.store(i, Ordering::SeqCst);
            }
        })
        .expect("spawn target");

    let mut rng = Rng::new(0x2545_f491);
    let mut counts = Counts::default();
    let started = Instant::now();
    for i in 1..=iterations {
        if counts.lost_wakeups >= max_lost || started.elapsed() > time_limit {
            break;
        }
        assert!(
            wait_until(&ready, i, Duration::from_secs(60)),
            "target never got ready"
        );
        spin_for(rng.below(1500));
        target.interrupt();
        counts.interrupts += 1;
        if !wait_until(&done, i, hang_guard) {
            counts.lost_wakeups += 1;
            writer.write_all(b"!").expect("rescue write");
            assert!(
                wait_until(&done, i, Duration::from_secs(60)),
                "rescue failed"
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    target.interrupt();
    // The target may already have stopped (then the pipe is closed): either way it ends.
    let _ = writer.write_all(b"!");
    target.join().expect("target panicked");
    counts.data_reads = data.load(Ordering::SeqCst);
    counts
}
