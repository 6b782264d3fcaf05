//! `mpsc_throughput_ratio`: messages per second through killable's channel / through
//! `std::sync::mpsc`'s, one producer and one consumer, unbounded and bounded, alternated in one
//! run; the figure is the lower of the two.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::Opts;
use crate::report::{Report, paired};

/// Messages per batch.
const MESSAGES: u64 = 20_000;
/// The bounded channels' capacity.
const BOUND: usize = 128;

/// Moves `MESSAGES` from a producer thread to this thread; times the transfer only (the
/// producer is spawned and waiting before the clock starts).
fn transfer<S, R>(make: impl FnOnce() -> (S, R), send: fn(&S, u64), recv: fn(&R) -> u64) -> Duration
where
    S: Send + 'static,
{
    let (tx, rx) = make();
    let go = Arc::new(AtomicBool::new(false));
    let g = go.clone();
    let producer = std::thread::spawn(move || {
        while !g.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        for i in 0..MESSAGES {
            send(&tx, i);
        }
    });
    let t = Instant::now();
    go.store(true, Ordering::Release);
    let mut sum = 0;
    for _ in 0..MESSAGES {
        sum += recv(&rx);
    }
    let elapsed = t.elapsed();
    black_box(sum);
    producer.join().unwrap();
    elapsed
}

fn killable_unbounded() -> Duration {
    transfer(
        killable::sync::mpsc::channel::<u64>,
        |tx, i| tx.send(i).unwrap(),
        |rx| rx.recv().unwrap(),
    )
}

fn std_unbounded() -> Duration {
    transfer(
        std::sync::mpsc::channel::<u64>,
        |tx, i| tx.send(i).unwrap(),
        |rx| rx.recv().unwrap(),
    )
}

fn killable_bounded() -> Duration {
    transfer(
        || killable::sync::mpsc::sync_channel::<u64>(BOUND),
        |tx, i| tx.send(i).unwrap(),
        |rx| rx.recv().unwrap(),
    )
}

fn std_bounded() -> Duration {
    transfer(
        || std::sync::mpsc::sync_channel::<u64>(BOUND),
        |tx, i| tx.send(i).unwrap(),
        |rx| rx.recv().unwrap(),
    )
}

/// The median of `theirs / ours` times: our throughput relative to theirs.
fn throughput_ratio(pairs: &[(Duration, Duration)]) -> f64 {
    let mut r: Vec<f64> = pairs
        .iter()
        .map(|(o, t)| t.as_secs_f64() / o.as_secs_f64())
        .collect();
    crate::report::median(&mut r)
}

fn rate(d: Duration) -> f64 {
    MESSAGES as f64 / d.as_secs_f64() / 1e6
}

pub fn run(opts: &Opts, report: &mut Report) {
    let rounds = if opts.quick { 30 } else { 200 };
    let unbounded = paired(rounds, killable_unbounded, std_unbounded);
    let bounded = paired(rounds, killable_bounded, std_bounded);
    let (u, b) = (throughput_ratio(&unbounded), throughput_ratio(&bounded));
    let median_rate = |pairs: &[(Duration, Duration)], ours: bool| {
        let mut v: Vec<f64> = pairs
            .iter()
            .map(|(o, t)| rate(if ours { *o } else { *t }))
            .collect();
        crate::report::median(&mut v)
    };
    report.note(
        "mpsc unbounded",
        format!(
            "killable {:.2} M msg/s, std {:.2} M msg/s (medians); ratio {u:.3}",
            median_rate(&unbounded, true),
            median_rate(&unbounded, false)
        ),
    );
    report.note(
        "mpsc bounded",
        format!(
            "killable {:.2} M msg/s, std {:.2} M msg/s (medians, capacity {BOUND}); ratio {b:.3}",
            median_rate(&bounded, true),
            median_rate(&bounded, false)
        ),
    );
    report.figure(
        "mpsc_throughput_ratio",
        u.min(b),
        "killable mpsc msg/s / std mpsc msg/s, 1 producer 1 consumer, lower of unbounded and bounded, median of pairwise ratios (target >= 0.90)",
    );
}
