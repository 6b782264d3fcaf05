//! `cargo bench --bench killable -- reliability [--quick]`: runs that try to break killable,
//! each bounded in time, printing their counts.

use std::ffi::c_void;
use std::io::Read;
use std::time::Duration;

use testkit::demo::killable_demo_spin;
use testkit::{forge, forks, integrity};

use crate::Opts;
use crate::report::Report;

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn open_fds() -> i64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as i64)
        .unwrap_or(-1)
}

fn integrity_runs(opts: &Opts, report: &mut Report) {
    let (total, per_side) = if opts.quick {
        (16u64 << 20, 2_500)
    } else {
        (64 << 20, 10_000)
    };
    let p = integrity::pipe(total, per_side);
    let t = integrity::tcp(total, per_side);
    for (what, r) in [("pipe", p), ("tcp", t)] {
        report.note(
            &format!("integrity {what}"),
            format!(
                "{} of {} bytes, interrupts reader {} writer {} (calls broken {} / {})",
                r.bytes_received,
                r.bytes_sent,
                r.reader_interrupts,
                r.writer_interrupts,
                r.reader_broken,
                r.writer_broken
            ),
        );
    }
    report.figure(
        "data_mismatches",
        (p.mismatches + t.mismatches) as f64,
        "bytes lost, duplicated or changed through pipe and TCP under interrupts (target 0)",
    );
}

fn leak_runs(opts: &Opts, report: &mut Report) {
    let scale = if opts.quick { 10 } else { 1 };
    let (cycles, kills, seals) = (100_000 / scale, 10_000 / scale, 1_000 / scale);
    // Warm up every path once, so one-time allocations (pools, handler, registry) are not
    // counted as growth.
    let run_cycles = |n: usize| {
        let (r, _w) = std::io::pipe().unwrap();
        let r = std::sync::Arc::new(killable::io::Interruptible::new(r));
        for _ in 0..n {
            let r = r.clone();
            let h = killable::spawn(move || (&*r).read(&mut [0u8; 1]).is_err());
            h.interrupt();
            assert!(h.join().unwrap());
        }
    };
    let run_kills = |n: usize| {
        let counter = Box::leak(Box::new(0u64)) as *mut u64 as usize;
        for _ in 0..n {
            // SAFETY: the demo spin loop holds no lock and does not allocate.
            let h = killable::spawn(move || unsafe {
                killable::kill_region(killable_demo_spin, counter as *mut c_void)
            });
            while !h.thread().in_kill_region() {
                std::thread::yield_now();
            }
            h.thread().kill();
            assert!(h.join().unwrap().is_err());
        }
    };
    let run_seals = |n: usize| {
        for _ in 0..n {
            let (r, _w) = std::io::pipe().unwrap();
            let h = killable::spawn(move || {
                let mut r = r;
                r.read(&mut [0u8; 1]).is_err()
            });
            testkit::wait_blocked(h.thread());
            h.thread().seal().expect("seccomp");
            assert!(h.join().unwrap());
        }
    };
    run_cycles(1_000);
    run_kills(100);
    run_seals(20);
    let (rss0, fds0) = (rss_kib(), open_fds());
    run_cycles(cycles);
    run_kills(kills);
    run_seals(seals);
    let (rss1, fds1) = (rss_kib(), open_fds());
    report.note(
        "leak runs",
        format!("{cycles} spawn/interrupt/join, {kills} kill-region, {seals} sealed threads"),
    );
    report.figure(
        "rss_growth_kib",
        rss1.saturating_sub(rss0) as f64,
        "resident memory growth over the leak runs (target < 1024)",
    );
    report.figure(
        "fd_growth",
        (fds1 - fds0) as f64,
        "open descriptors after minus before (target 0)",
    );
}

fn forged_runs(opts: &Opts, report: &mut Report) {
    let n = if opts.quick { 20_000 } else { 100_000 };
    let child = std::process::Command::new(std::env::current_exe().expect("own path"));
    let c = forge::run(n, 8, child);
    report.note(
        "forged signals",
        format!(
            "{} sent by a child (kill, tgkill, forged SI_QUEUE and SI_TIMER)",
            c.sent
        ),
    );
    report.figure(
        "forged_interrupts",
        c.spurious_interrupts as f64,
        "reads a forged signal ended (target 0)",
    );
    report.figure(
        "forged_crashes",
        c.crashes as f64,
        "reader threads that failed or did not end with the real interrupt (target 0)",
    );
    report.figure(
        "forged_app_deliveries",
        c.app_deliveries as f64,
        "of those signals, delivered to the handler installed before killable's (target: all)",
    );
}

fn storm_run(opts: &Opts, report: &mut Report) {
    let secs = if opts.quick { 5 } else { 30 };
    let s = integrity::storm(32, 4, Duration::from_secs(secs));
    report.note(
        "storm",
        format!(
            "{secs} s: {} transfers (64 I/O threads, pipes and TCP), 4 interrupters, {} interrupts, {} bytes",
            s.transfers, s.interrupts, s.bytes
        ),
    );
    report.figure(
        "storm_failures",
        (s.failures + s.mismatches) as f64,
        "transfers that crashed, hung or lost data in the storm (target 0)",
    );
}

fn fork_runs(opts: &Opts, report: &mut Report) {
    let n = if opts.quick { 50 } else { 500 };
    let f = forks::run(n, 8);
    report.note(
        "forks",
        format!(
            "{} forks from a killable thread while {} interrupts hit 8 readers",
            f.forks, f.interrupts_meanwhile
        ),
    );
    report.figure(
        "fork_child_failures",
        f.child_failures as f64,
        "forked children whose registry or interrupts failed, or that hung (target 0)",
    );
}

/// Last, because it breaks killable's handler for the rest of the process: another library
/// replaces it, and `try_interrupt` must say so rather than do nothing.
fn replaced_handler(report: &mut Report) {
    let h = killable::spawn(|| {
        while killable::check().is_ok() {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    // SAFETY: installing SIG_IGN in place of killable's handler, as a careless library would.
    unsafe { libc::signal(killable::signal(), libc::SIG_IGN) };
    let detected = h
        .try_interrupt()
        .is_err_and(|e| e.to_string().contains("replaced"));
    // The flag was set anyway, so the cooperative thread still ends.
    let ended = h.join_timeout(Duration::from_secs(30)).is_ok();
    report.figure(
        "replaced_handler_detected",
        (detected && ended) as u8 as f64,
        "another library replaced killable's handler: try_interrupt reported it (target 1)",
    );
}

pub fn run(opts: &Opts, report: &mut Report) {
    // First: the application's handler must be installed before killable's.
    forged_runs(opts, report);
    integrity_runs(opts, report);
    storm_run(opts, report);
    fork_runs(opts, report);
    leak_runs(opts, report);
    replaced_handler(report);
}
