//! Figures against the floor the kernel allows, each measured side by side with that floor in
//! the same run: `mass_stop_ratio` (`shutdown` against bare pthreads woken by `pthread_kill`),
//! `seal_floor_p50_us` and `seal_floor_ratio` (`seal()` against a raw signal whose handler
//! attaches a minimal filter), and `interrupt_load_p99_ratio` (interrupt latency against raw
//! `pthread_kill` while pipe-moving threads keep every CPU busy).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::thread::JoinHandleExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use testkit::{task_state, wait_blocked};

use crate::Opts;
use crate::interrupt::latency_samples;
use crate::report::{Report, median, median_ratio, paired, percentile};
use crate::stop::{mass_stop, mass_stop_raw};

pub fn run(opts: &Opts, report: &mut Report) {
    mass_stop_pairs(opts, report);
    seal_floor(opts, report);
    interrupt_under_load(opts, report);
}

/// `shutdown` of 1,000 blocked threads against the bare-pthread floor: alternating pairs after
/// one warm-up of each (so both sides are equally warm: killable's pooled alternate stacks,
/// glibc's cached thread stacks), median of the pairwise ratios.
pub fn mass_stop_pairs(opts: &Opts, report: &mut Report) {
    let rounds = if opts.quick { 9 } else { 15 };
    let ms = |f: fn(usize) -> f64| move || Duration::from_secs_f64(f(1_000) / 1e3);
    let pairs = paired(rounds, ms(mass_stop), ms(mass_stop_raw));
    let mut ours: Vec<f64> = pairs.iter().map(|p| p.0.as_secs_f64() * 1e3).collect();
    let mut floor: Vec<f64> = pairs.iter().map(|p| p.1.as_secs_f64() * 1e3).collect();
    report.note(
        "mass stop (pairs)",
        format!(
            "{:.1} ms killable, {:.1} ms floor (medians of {rounds})",
            median(&mut ours),
            median(&mut floor)
        ),
    );
    report.figure(
        "mass_stop_ratio",
        median_ratio(&pairs),
        "shutdown of 1,000 blocked threads / the bare-pthread floor, median of alternating pairs (target <= 1.10)",
    );
}

/// The floor's signal: a real-time signal nobody else in this program uses.
fn floor_signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

/// The minimal filter: `accept4` (std's `accept`) fails with `ECANCELED`, all else is allowed.
static MINIMAL: [libc::sock_filter; 4] = [
    // ld [nr]
    libc::sock_filter {
        code: 0x20,
        jt: 0,
        jf: 0,
        k: 0,
    },
    // jeq #accept4, deny, allow
    libc::sock_filter {
        code: 0x15,
        jt: 0,
        jf: 1,
        k: libc::SYS_accept4 as u32,
    },
    libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0x0005_0000 | libc::ECANCELED as u32,
    },
    libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0x7fff_0000,
    },
];

/// The floor's handler: what a seal cannot do without (`no_new_privs` and the attach).
extern "C" fn attach_minimal(_: libc::c_int) {
    let prog = libc::sock_fprog {
        len: MINIMAL.len() as u16,
        filter: MINIMAL.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: two system calls on the calling thread; the program is a static the kernel copies.
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        libc::syscall(libc::SYS_seccomp, 1, 0, &prog);
    }
}

fn now_ns(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

/// Waits for the stamp as `seal_p50_us` does (stop.rs): yielding, never spinning on a CPU the
/// target needs (on a busy machine a plain spin delays the target by a scheduler tick).
fn since(stamp: &AtomicU64, t0: u64) -> f64 {
    let start = Instant::now();
    loop {
        let s = stamp.load(Ordering::SeqCst);
        if s >= t0 {
            return (s - t0) as f64 / 1000.0;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "never returned");
        std::thread::yield_now();
    }
}

/// One `seal()` of a killable thread blocked in std's `accept`, in microseconds.
fn seal_once(base: Instant) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let returned = Arc::new(AtomicU64::new(0));
    let r = returned.clone();
    let h = killable::spawn(move || {
        let res = listener.accept();
        r.store(now_ns(base), Ordering::SeqCst);
        res.is_err()
    });
    wait_blocked(h.thread());
    let t0 = now_ns(base);
    h.thread().seal().expect("seccomp available");
    let us = since(&returned, t0);
    assert!(h.join().unwrap());
    us
}

/// One floor round: a plain thread blocked in `accept4` (retrying `EINTR`, as std does) gets a
/// raw `pthread_kill` whose handler attaches the minimal filter; in microseconds.
fn floor_once(base: Instant) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let fd = listener.as_raw_fd();
    let returned = Arc::new(AtomicU64::new(0));
    let tid = Arc::new(AtomicI32::new(0));
    let (r, t) = (returned.clone(), tid.clone());
    let h = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        t.store(unsafe { libc::gettid() }, Ordering::SeqCst);
        loop {
            // SAFETY: accepting on a listening socket this closure owns, no address wanted.
            let c = unsafe {
                libc::accept4(
                    fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            let e = std::io::Error::last_os_error().raw_os_error();
            if c < 0 && e == Some(libc::EINTR) {
                continue;
            }
            r.store(now_ns(base), Ordering::SeqCst);
            assert!(c < 0 && e == Some(libc::ECANCELED), "accept4: {c} {e:?}");
            break;
        }
        drop(listener);
    });
    let start = Instant::now();
    loop {
        let id = tid.load(Ordering::SeqCst);
        if id != 0 && task_state(id) == Some('S') {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "never blocked");
        std::thread::sleep(Duration::from_millis(1));
    }
    let t0 = now_ns(base);
    // SAFETY: the thread is alive until it is joined below.
    unsafe { libc::pthread_kill(h.as_pthread_t(), floor_signal()) };
    let us = since(&returned, t0);
    h.join().unwrap();
    us
}

pub fn seal_floor(opts: &Opts, report: &mut Report) {
    let rounds = if opts.quick { 200 } else { 2_000 };
    // SAFETY: the handler only makes two system calls; the signal is this benchmark's own.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = attach_minimal as *const () as usize;
        libc::sigaction(floor_signal(), &sa, std::ptr::null_mut());
    }
    let base = Instant::now();
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            ours.push(seal_once(base));
            floor.push(floor_once(base));
        } else {
            floor.push(floor_once(base));
            ours.push(seal_once(base));
        }
    }
    let (s50, f50) = (percentile(&mut ours, 50.0), percentile(&mut floor, 50.0));
    report.figure(
        "seal_p50_us",
        s50,
        "seal() to std's TcpListener::accept returning, median (rounds alternated with the floor's)",
    );
    report.figure(
        "seal_floor_p50_us",
        f50,
        "floor: raw pthread_kill whose handler attaches a 4-instruction filter, to accept4 failing, median",
    );
    report.figure(
        "seal_floor_ratio",
        s50 / f50,
        "seal_p50_us / seal_floor_p50_us (target <= 1.25)",
    );
}

/// `2 × cores` threads in writer/reader pairs, moving data through pipes until `stop`.
fn pipe_load(stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (0..cores)
        .flat_map(|_| {
            let (mut r, mut w) = std::io::pipe().unwrap();
            let stop = stop.clone();
            let writer = std::thread::spawn(move || {
                let buf = [7u8; 16 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    if w.write_all(&buf).is_err() {
                        break;
                    }
                }
            });
            let reader = std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
            });
            [writer, reader]
        })
        .collect()
}

fn interrupt_under_load(opts: &Opts, report: &mut Report) {
    let rounds = if opts.quick { 2_000 } else { 10_000 };
    let stop = Arc::new(AtomicBool::new(false));
    let load = pipe_load(&stop);
    let (mut ours, mut theirs) = latency_samples(rounds);
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let (k99, b99) = (percentile(&mut ours, 99.0), percentile(&mut theirs, 99.0));
    let (k50, b50) = (percentile(&mut ours, 50.0), percentile(&mut theirs, 50.0));
    report.figure(
        "interrupt_load_p99_us",
        k99,
        "interrupt() latency p99 while 2 x cores threads move data through pipes",
    );
    report.figure(
        "baseline_load_p99_us",
        b99,
        "raw pthread_kill latency p99 under the same load",
    );
    report.figure(
        "interrupt_load_p99_ratio",
        k99 / b99,
        "killable / raw at p99 under load (target <= 1.25)",
    );
    report.figure(
        "interrupt_load_p50_ratio",
        k50 / b50,
        "killable / raw at p50 under load",
    );
}
