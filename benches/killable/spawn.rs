//! `spawn_join_ratio`: killable's spawn+join against std's, alternated in one run.

use std::hint::black_box;
use std::time::Instant;

use crate::Opts;
use crate::report::{Report, median, micros};

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
    // Warm up both (first spawns install handlers, fault in code and allocator caches).
    killable_batch();
    std_batch();
    let mut ratios = Vec::with_capacity(rounds);
    let mut ours = Vec::with_capacity(rounds);
    let mut theirs = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let (k, s) = if round % 2 == 0 {
            let k = killable_batch();
            (k, std_batch())
        } else {
            let s = std_batch();
            (killable_batch(), s)
        };
        ratios.push(k.as_secs_f64() / s.as_secs_f64());
        ours.push(micros(k) / BATCH as f64);
        theirs.push(micros(s) / BATCH as f64);
    }
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
        median(&mut ratios),
        "killable spawn+join / std spawn+join, median of pairwise ratios (target <= 1.00)",
    );
}
