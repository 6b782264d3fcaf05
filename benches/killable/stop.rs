//! Forcing figures: a C busy loop abandoned (`kill_p50_us`), the cost of attaching a naive
//! seccomp filter, and `shutdown` of 1,000 and 10,000 threads blocked in reads (`seal_p50_us`
//! is measured in floor.rs, side by side with its floor).

use std::ffi::c_void;
use std::hint::black_box;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use testkit::demo::killable_demo_spin;

use crate::Opts;
use crate::report::{Report, median, percentile};

fn now_ns(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

fn wait_for(cond: impl Fn() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "benchmark thread never got there"
        );
        std::thread::yield_now();
    }
}

fn kill_latency(opts: &Opts) -> f64 {
    let rounds = if opts.quick { 1_000 } else { 10_000 };
    let base = Instant::now();
    let entered = Arc::new(AtomicU64::new(0));
    let returned = Arc::new(AtomicU64::new(0));
    let (e, r) = (entered.clone(), returned.clone());
    let counter = Box::leak(Box::new(0u64)) as *mut u64 as usize;
    let worker = killable::Builder::new()
        .name("kill-bench".into())
        .spawn(move || {
            for i in 1..=rounds as u64 {
                killable::clear_interrupt();
                e.store(i, Ordering::SeqCst);
                // SAFETY: the demo spin loop holds no lock and does not allocate.
                let res =
                    unsafe { killable::kill_region(killable_demo_spin, counter as *mut c_void) };
                r.store(now_ns(base), Ordering::SeqCst);
                black_box(res.is_err());
            }
        })
        .unwrap();
    let mut samples = Vec::with_capacity(rounds);
    for i in 1..=rounds as u64 {
        wait_for(|| entered.load(Ordering::SeqCst) >= i && worker.thread().in_kill_region());
        std::thread::sleep(Duration::from_micros(100));
        let t0 = now_ns(base);
        worker.thread().kill();
        wait_for(|| returned.load(Ordering::SeqCst) >= t0);
        samples.push((returned.load(Ordering::SeqCst) - t0) as f64 / 1000.0);
    }
    worker.join().unwrap();
    percentile(&mut samples, 50.0)
}

/// For comparison with `seal_p50_us`: the kernel's cost of attaching a linear seccomp filter
/// that starts as a naive seal would (an architecture check, then 31 system-call comparisons,
/// and no `tax` in front: since Linux 5.11 the attach then emulates the filter for every system
/// call number to build its action cache, so the cost follows the shape; the seal's own filter
/// starts with `tax` to skip that pass), in a throwaway thread; median in microseconds.
fn seccomp_attach_linear(opts: &Opts) -> f64 {
    const N: usize = 31;
    let insn = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    let mut prog_insns = vec![
        insn(0x20, 0, 0, 4),
        insn(0x15, 0, (N + 2) as u8, 0xc000_003e),
        insn(0x20, 0, 0, 0),
        insn(0x35, N as u8, 0, 0x4000_0000),
    ];
    for i in 0..N {
        prog_insns.push(insn(0x15, (N - i) as u8, 0, 500 + i as u32));
    }
    prog_insns.push(insn(0x06, 0, 0, 0x7fff_0000));
    prog_insns.push(insn(0x06, 0, 0, 0x0005_0000 | libc::ECANCELED as u32));
    let rounds = if opts.quick { 50 } else { 500 };
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let prog_insns = prog_insns.clone();
            std::thread::spawn(move || {
                let prog = libc::sock_fprog {
                    len: prog_insns.len() as u16,
                    filter: prog_insns.as_ptr() as *mut libc::sock_filter,
                };
                let t = Instant::now();
                // SAFETY: the filter only fails system calls 500 to 530, which this throwaway
                // thread never makes before it exits.
                unsafe {
                    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                    libc::syscall(libc::SYS_seccomp, 1, 0, &prog);
                }
                t.elapsed().as_secs_f64() * 1e6
            })
            .join()
            .unwrap()
        })
        .collect();
    percentile(&mut samples, 50.0)
}

/// Spawns `n` threads blocked in interruptible reads of one pipe, then times `shutdown` and
/// the joins, in milliseconds.
pub fn mass_stop(n: usize) -> f64 {
    let (r, _w) = std::io::pipe().unwrap();
    let r = Arc::new(killable::io::Interruptible::new(r));
    let reading = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (r, reading) = (r.clone(), reading.clone());
            killable::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    reading.fetch_add(1, Ordering::SeqCst);
                    (&*r).read(&mut [0u8; 1]).is_err()
                })
                .expect("spawn")
        })
        .collect();
    wait_for(|| reading.load(Ordering::SeqCst) == n as u64);
    // Let the last ones reach the kernel.
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let report = killable::shutdown(Duration::from_secs(30));
    let mut stopped = 0;
    for h in handles {
        stopped += h.join().unwrap() as usize;
    }
    let elapsed = t0.elapsed().as_secs_f64() * 1e3;
    assert!(
        report.all_stopped() && stopped == n,
        "{stopped} of {n} stopped"
    );
    elapsed
}

/// The floor for `mass_stop`: `n` bare pthreads (no killable) blocked in a plain `read`, woken
/// by raw `pthread_kill` with a no-op handler, and joined; in milliseconds.
pub fn mass_stop_raw(n: usize) -> f64 {
    extern "C" fn noop(_: libc::c_int) {}
    extern "C" fn body(arg: *mut c_void) -> *mut c_void {
        // SAFETY: `arg` points to the (fd, counter) pair that outlives every thread.
        let (fd, reading) = unsafe { &*(arg as *const (i32, AtomicU64)) };
        reading.fetch_add(1, Ordering::SeqCst);
        let mut b = 0u8;
        // SAFETY: reading one byte into a live local.
        unsafe { libc::read(*fd, (&raw mut b).cast(), 1) };
        std::ptr::null_mut()
    }
    // SAFETY: a no-op handler for SIGUSR2, without SA_RESTART (killable uses SIGUSR1 here).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = noop as *const () as usize;
        libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
    }
    let (r, _w) = std::io::pipe().unwrap();
    let shared = Box::new((std::os::fd::AsRawFd::as_raw_fd(&r), AtomicU64::new(0)));
    let arg = &*shared as *const (i32, AtomicU64) as *mut c_void;
    // SAFETY: pthread_attr_t is plain data, initialised before use and destroyed after.
    let mut attr: libc::pthread_attr_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe {
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setstacksize(&mut attr, 64 * 1024);
    }
    let threads: Vec<libc::pthread_t> = (0..n)
        .map(|_| {
            let mut t: libc::pthread_t = 0;
            // SAFETY: `body` and `arg` stay valid until every thread is joined below.
            let rc = unsafe { libc::pthread_create(&mut t, &attr, body, arg) };
            assert_eq!(rc, 0);
            t
        })
        .collect();
    // SAFETY: destroying the attribute object initialised above.
    unsafe { libc::pthread_attr_destroy(&mut attr) };
    wait_for(|| shared.1.load(Ordering::SeqCst) == n as u64);
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    for &t in &threads {
        // SAFETY: every thread is alive until it is joined below.
        unsafe { libc::pthread_kill(t, libc::SIGUSR2) };
    }
    for t in threads {
        // SAFETY: joining each thread once.
        unsafe { libc::pthread_join(t, std::ptr::null_mut()) };
    }
    let elapsed = t0.elapsed().as_secs_f64() * 1e3;
    drop(r);
    elapsed
}

pub fn run(opts: &Opts, report: &mut Report) {
    report.figure(
        "kill_p50_us",
        kill_latency(opts),
        "kill() to a C busy loop's region returning, median",
    );
    // seal_p50_us is measured in floor.rs, in rounds alternated with its floor's.
    report.figure(
        "seccomp_attach_linear_us",
        seccomp_attach_linear(opts),
        "for comparison: attaching a linear filter of 31 comparisons without `tax` in front (the kernel builds its action cache), median",
    );
    mass_stop_scaling(opts, report);
}

/// `shutdown` of 1,000 and of 10,000 blocked threads, and the same for the bare-pthread floor,
/// in rounds that run the four one after another (the order turning round every round, after
/// one warm-up of each), so that a noisy neighbour or a warmer cache weighs on all four alike.
/// The `_ms` figures are medians over the rounds; the scalings are medians of each round's own
/// 10,000 / 1,000 ratio, which compares sizes measured seconds apart rather than a minute.
pub fn mass_stop_scaling(opts: &Opts, report: &mut Report) {
    let rounds = if opts.quick { 5 } else { 7 };
    let runs: [fn() -> f64; 4] = [
        || mass_stop(1_000),
        || mass_stop_raw(1_000),
        || mass_stop(10_000),
        || mass_stop_raw(10_000),
    ];
    for run in runs {
        run();
    }
    let mut ms: [Vec<f64>; 4] = Default::default();
    for round in 0..rounds {
        for k in 0..4 {
            let k = if round % 2 == 0 { k } else { 3 - k };
            ms[k].push(runs[k]());
        }
    }
    let per_round = |f: &dyn Fn(usize) -> f64| median(&mut (0..rounds).map(f).collect::<Vec<_>>());
    let scaling = per_round(&|r| ms[2][r] / ms[0][r]);
    let raw_scaling = per_round(&|r| ms[3][r] / ms[1][r]);
    let relative = per_round(&|r| (ms[2][r] / ms[0][r]) / (ms[3][r] / ms[1][r]));
    let ratio_10000 = per_round(&|r| ms[2][r] / ms[3][r]);
    let [m1, r1, m10, r10] = ms.map(|mut v| median(&mut v));
    report.figure(
        "mass_stop_1000_ms",
        m1,
        "shutdown of 1,000 threads blocked in reads, to the last join (target <= 25)",
    );
    report.figure(
        "mass_stop_raw_1000_ms",
        r1,
        "floor: 1,000 bare pthreads woken by pthread_kill and joined",
    );
    report.figure("mass_stop_10000_ms", m10, "same with 10,000 threads");
    report.figure(
        "mass_stop_raw_10000_ms",
        r10,
        "floor with 10,000 bare pthreads",
    );
    report.figure(
        "mass_stop_scaling",
        scaling,
        "10,000 / 1,000 (target <= 10), median of the rounds' own ratios",
    );
    report.figure(
        "mass_stop_raw_scaling",
        raw_scaling,
        "the same ratio for the bare-pthread floor",
    );
    report.figure(
        "mass_stop_scaling_ratio",
        relative,
        "mass_stop_scaling / mass_stop_raw_scaling, median of the rounds' (target <= 1)",
    );
    report.figure(
        "mass_stop_10000_ratio",
        ratio_10000,
        "shutdown of 10,000 blocked threads / the floor, median of the rounds' ratios",
    );
    report.note(
        "mass stop (rounds)",
        format!("{rounds} rounds of 1,000 and 10,000 threads, each against its floor"),
    );
}
