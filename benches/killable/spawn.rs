//! `spawn_join_ratio`: killable's spawn+join against std's, alternated in one run.

use std::hint::black_box;
use std::time::Instant;

use crate::Opts;
use crate::report::{Report, median, median_ratio, micros, paired};

const BATCH: usize = 20;

fn killable_batch() -> std::time::Duration {
    let t = Instant::now();
    for i in 0..BATCH {
        let h = killable::spawn(move || black_box(i));
        black_box(h.join().unwrap());
    }
    t.elapsed()
}

fn std_batch() -> std::time::Duration {
    let t = Instant::now();
    for i in 0..BATCH {
        let h = std::thread::spawn(move || black_box(i));
        black_box(h.join().unwrap());
    }
    t.elapsed()
}

pub fn run(opts: &Opts, report: &mut Report) {
    let rounds = if opts.quick { 300 } else { 3000 };
    // The warm-up inside `paired` installs handlers and faults in code and allocator caches.
    let pairs = paired(rounds, killable_batch, std_batch);
    let mut ours: Vec<f64> = pairs
        .iter()
        .map(|(k, _)| micros(*k) / BATCH as f64)
        .collect();
    let mut theirs: Vec<f64> = pairs
        .iter()
        .map(|(_, s)| micros(*s) / BATCH as f64)
        .collect();
    report.note(
        "spawn+join killable",
        format!("{:.1} µs (median)", median(&mut ours)),
    );
    report.note(
        "spawn+join std",
        format!("{:.1} µs (median)", median(&mut theirs)),
    );
    report.figure(
        "spawn_join_ratio",
        median_ratio(&pairs),
        "killable spawn+join / std spawn+join, median of pairwise ratios (target <= 1.00)",
    );
}
