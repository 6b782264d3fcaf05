//! Kill regions: foreign C loops abandoned thousands of times, the signal mask after a jump,
//! kills outside a region, nested regions, deferral.

use std::ffi::c_void;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use killable::{Killed, Thread, kill_region};
// Foreign C loops, compiled by the dev-only crate testkit (testkit/src/demo.c).
use testkit::demo::{killable_demo_nested, killable_demo_read_retrying, killable_demo_spin};

fn wait_in_region(t: &Thread) {
    let start = Instant::now();
    while !t.in_kill_region() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never entered the region"
        );
        std::thread::yield_now();
    }
}

/// Runs `n` regions of `f` one after another on one killable thread and kills each from here.
fn kill_repeatedly(n: u64, f: unsafe extern "C" fn(*mut c_void), arg: usize) -> u64 {
    let done = Arc::new(AtomicU64::new(0));
    let d = done.clone();
    let worker = killable::spawn(move || {
        let mut killed = 0;
        for _ in 0..n {
            killable::clear_interrupt();
            // SAFETY: the demo loops only compute or call read(2); they hold no lock and do
            // not allocate; `arg` outlives the region.
            if unsafe { kill_region(f, arg as *mut c_void) } == Err(Killed) {
                killed += 1;
            }
            d.fetch_add(1, Ordering::SeqCst);
        }
        killed
    });
    for i in 1..=n {
        wait_in_region(worker.thread());
        worker.thread().kill();
        let start = Instant::now();
        while done.load(Ordering::SeqCst) < i {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "region {i} was not abandoned"
            );
            std::thread::yield_now();
        }
    }
    worker
        .join_timeout(Duration::from_secs(30))
        .expect("worker ends")
        .unwrap()
}

fn process_is_healthy() {
    let v: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; 1000]).collect();
    assert_eq!(v.iter().map(|x| x.len()).sum::<usize>(), 1_000_000);
    let hs: Vec<_> = (0..50).map(|i| killable::spawn(move || i * 2)).collect();
    assert_eq!(
        hs.into_iter().map(|h| h.join().unwrap()).sum::<i32>(),
        2 * (0..50).sum::<i32>()
    );
}

/// 2,000, or `KILLABLE_KILL_ITERATIONS` (ci/valgrind.sh runs fewer).
fn iterations() -> u64 {
    std::env::var("KILLABLE_KILL_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

#[test]
fn c_busy_loop_killed_thousands_of_times() {
    let counter = Box::leak(Box::new(0u64)) as *mut u64 as usize;
    let n = iterations();
    assert_eq!(kill_repeatedly(n, killable_demo_spin, counter), n);
    process_is_healthy();
}

#[test]
fn c_read_loop_that_retries_eintr_killed_thousands_of_times() {
    let (r, w) = std::io::pipe().unwrap();
    let fd = Box::leak(Box::new(r.as_raw_fd())) as *mut i32 as usize;
    let n = iterations();
    assert_eq!(kill_repeatedly(n, killable_demo_read_retrying, fd), n);
    process_is_healthy();
    drop((r, w));
}

fn current_mask() -> libc::sigset_t {
    // SAFETY: querying the calling thread's mask into a zeroed (valid) set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut set);
        set
    }
}

fn mask_bytes(set: &libc::sigset_t) -> Vec<u8> {
    // SAFETY: viewing the plain-data set as bytes.
    unsafe {
        std::slice::from_raw_parts(
            (set as *const libc::sigset_t).cast::<u8>(),
            std::mem::size_of::<libc::sigset_t>(),
        )
    }
    .to_vec()
}

#[test]
fn the_signal_mask_is_restored_after_a_jump() {
    let counter = Box::leak(Box::new(0u64)) as *mut u64 as usize;
    let h = killable::spawn(move || {
        // Block an unrelated signal so the mask is not trivially empty.
        // SAFETY: adjusting the calling thread's own mask.
        unsafe {
            let mut s: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut s);
            libc::sigaddset(&mut s, libc::SIGUSR2);
            libc::pthread_sigmask(libc::SIG_BLOCK, &s, std::ptr::null_mut());
        }
        let before = mask_bytes(&current_mask());
        // SAFETY: the demo spin loop holds no lock and does not allocate.
        let r = unsafe { kill_region(killable_demo_spin, counter as *mut c_void) };
        let after = current_mask();
        // SAFETY: reading membership of a valid set.
        let ours_blocked = unsafe { libc::sigismember(&after, killable::signal()) } == 1;
        (r, before == mask_bytes(&after), ours_blocked)
    });
    wait_in_region(h.thread());
    h.thread().kill();
    assert_eq!(h.join().unwrap(), (Err(Killed), true, false));
}

#[test]
fn kill_outside_a_region_is_an_interrupt_and_no_later_region_runs() {
    let h = killable::spawn(|| {
        let slept = killable::sleep(Duration::from_secs(3600));
        let ran = Box::leak(Box::new(0u64)) as *mut u64;
        // SAFETY: as above; the region must not even start.
        let region = unsafe { kill_region(killable_demo_spin, ran.cast()) };
        // SAFETY: reading our own leaked counter.
        (slept.is_err(), region, unsafe { *ran })
    });
    std::thread::sleep(Duration::from_millis(20));
    h.thread().kill();
    assert_eq!(h.join().unwrap(), (true, Err(Killed), 0));
}

#[test]
fn nested_regions_unwind_to_the_innermost() {
    let result = Arc::new(AtomicU64::new(u64::MAX));
    let r2 = result.clone();
    let h = killable::spawn(move || {
        let mut inner: i32 = -7;
        // SAFETY: the demo functions hold no lock and do not allocate; `inner` outlives them.
        let outer = unsafe { kill_region(killable_demo_nested, (&raw mut inner).cast()) };
        r2.store(inner as u64, Ordering::SeqCst);
        outer
    });
    wait_in_region(h.thread());
    std::thread::sleep(Duration::from_millis(10));
    h.thread().kill();
    assert_eq!(
        h.join().unwrap(),
        Ok(()),
        "the outer region finished normally"
    );
    assert_eq!(
        result.load(Ordering::SeqCst),
        1,
        "the inner region was abandoned"
    );
}

#[test]
fn a_kill_waits_under_deferral() {
    let (r, mut w) = std::io::pipe().unwrap();
    let fd = r.as_raw_fd();
    let h = killable::spawn(move || {
        let _r = r;
        let guard = killable::defer_interrupts();
        let mut fd = fd;
        // SAFETY: the read loop holds no lock and does not allocate; `fd` outlives it.
        let region = unsafe { kill_region(killable_demo_read_retrying, (&raw mut fd).cast()) };
        drop(guard);
        (region, killable::check().is_err())
    });
    wait_in_region(h.thread());
    h.thread().kill();
    std::thread::sleep(Duration::from_millis(50));
    assert!(!h.is_finished(), "deferred: the region keeps running");
    w.write_all(b"data").unwrap();
    drop(w); // EOF ends the C loop
    assert_eq!(h.join().unwrap(), (Ok(()), true));
}
