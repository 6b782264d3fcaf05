//! `spawn_blocking_ratio`: the round trip of an empty job through `killable::spawn_blocking`
//! against `tokio::task::spawn_blocking`, both pools warm, alternated in one run on one tokio
//! runtime; `abort_p50_us`: from `BlockingTask::abort` to the job's blocked read returning.

use std::hint::black_box;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use killable::io::Interruptible;
use testkit::stress;

use crate::Opts;
use crate::report::{Report, median, median_ratio, micros, paired, percentile};

const BATCH: usize = 50;

fn round_trips(opts: &Opts, report: &mut Report) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ours = || {
        rt.block_on(async {
            let t = Instant::now();
            for i in 0..BATCH {
                black_box(
                    killable::spawn_blocking(move || black_box(i))
                        .await
                        .unwrap(),
                );
            }
            t.elapsed()
        })
    };
    let theirs = || {
        rt.block_on(async {
            let t = Instant::now();
            for i in 0..BATCH {
                black_box(
                    tokio::task::spawn_blocking(move || black_box(i))
                        .await
                        .unwrap(),
                );
            }
            t.elapsed()
        })
    };
    let rounds = if opts.quick { 200 } else { 2000 };
    // The warm-up inside `paired` starts both pools' threads.
    let pairs = paired(rounds, ours, theirs);
    let per_job = |pick: fn(&(Duration, Duration)) -> Duration| {
        let mut v: Vec<f64> = pairs
            .iter()
            .map(|p| micros(pick(p)) / BATCH as f64)
            .collect();
        median(&mut v)
    };
    report.note(
        "round trip killable::spawn_blocking",
        format!("{:.1} µs (median)", per_job(|p| p.0)),
    );
    report.note(
        "round trip tokio::task::spawn_blocking",
        format!("{:.1} µs (median)", per_job(|p| p.1)),
    );
    report.figure(
        "spawn_blocking_ratio",
        median_ratio(&pairs),
        "killable / tokio spawn_blocking round trip of an empty job, warm pools, median of \
         pairwise ratios (target <= 1.25)",
    );
}

fn abort_latency(opts: &Opts, report: &mut Report) {
    let rounds = if opts.quick { 300 } else { 2000 };
    let base = Instant::now();
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let armed = Arc::new(AtomicU64::new(0));
        let returned = Arc::new(AtomicU64::new(0));
        let (a, r) = (armed.clone(), returned.clone());
        let task = killable::spawn_blocking(move || {
            let (reader, _writer) = std::io::pipe().unwrap();
            let mut reader = Interruptible::new(reader);
            let mut buf = [0u8; 8];
            a.store(1, Ordering::SeqCst);
            let res = reader.read(&mut buf);
            r.store(base.elapsed().as_nanos() as u64, Ordering::SeqCst);
            res
        });
        while armed.load(Ordering::SeqCst) == 0 {
            std::hint::spin_loop();
        }
        // Let it get into the kernel and fall asleep.
        stress::spin_for(200_000);
        let t0 = base.elapsed().as_nanos() as u64;
        task.abort();
        let limit = Instant::now();
        let stamp = loop {
            let s = returned.load(Ordering::SeqCst);
            if s != 0 {
                break s;
            }
            assert!(
                limit.elapsed() < Duration::from_secs(30),
                "the job never woke"
            );
            std::hint::spin_loop();
        };
        samples.push(stamp.saturating_sub(t0) as f64 / 1000.0);
        let err = futures::executor::block_on(task).unwrap().unwrap_err();
        assert!(killable::is_interrupt(&err));
    }
    let p99 = percentile(&mut samples, 99.0);
    report.figure(
        "abort_p50_us",
        median(&mut samples),
        "µs from BlockingTask::abort to the job's blocked read returning, p50",
    );
    report.note("abort p99", format!("{p99:.1} µs"));
}

pub fn run(opts: &Opts, report: &mut Report) {
    round_trips(opts, report);
    abort_latency(opts, report);
}
