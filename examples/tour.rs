//! A short tour of killable: run it with `cargo run --release --example tour`.
//!
//! Every step prints what it does and what it observed.

use std::io::Read;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use killable::io::Interruptible;

// Foreign C code that never returns: a busy loop counting in *counter. It is a test fixture,
// not part of killable: the dev-only crate testkit (testkit/src/demo.c) compiles it.
use testkit::demo::killable_demo_spin;

fn main() {
    println!("killable tour (pid {})\n", std::process::id());
    threads_and_names();
    panics_reach_join();
    join_with_a_timeout();
    affinity_from_inside();
    interrupting_blocked_calls();
    killing_a_c_loop();
    sealing_std_calls();
    stopping_with_a_report();
    diagnosing_a_stuck_thread();
    stopping_sets_of_threads();
    println!("\ntour finished");
}

fn threads_and_names() {
    println!("1. named threads, created with pthread_create");
    let handles: Vec<_> = ["ingest", "a-name-longer-than-fifteen-bytes"]
        .into_iter()
        .map(|name| {
            killable::Builder::new()
                .name(name.into())
                .spawn(|| {
                    let me = killable::current();
                    let comm =
                        std::fs::read_to_string(format!("/proc/self/task/{}/comm", me.tid()))
                            .unwrap_or_default();
                    (
                        me.name().unwrap().to_owned(),
                        me.tid(),
                        comm.trim_end().to_owned(),
                    )
                })
                .expect("spawn")
        })
        .collect();
    let listed = killable::threads().len();
    for h in handles {
        let (name, tid, comm) = h.join().unwrap();
        println!("   thread {name:?} ran as tid {tid}; the kernel calls it {comm:?}");
    }
    println!("   killable::threads() listed {listed} live managed threads while they ran");
}

fn panics_reach_join() {
    println!("2. a panicking thread: the panic is caught and handed to join");
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {})); // keep the tour's output tidy
    let h = killable::Builder::new()
        .name("doomed".into())
        .spawn(|| -> u32 { panic!("disk on fire") })
        .unwrap();
    let payload = h.join().unwrap_err();
    std::panic::set_hook(previous);
    println!(
        "   join() returned Err with payload {:?}",
        payload.downcast_ref::<&str>().unwrap()
    );
}

fn join_with_a_timeout() {
    println!("3. join_timeout on a slow thread gives the handle back");
    let slow = killable::Builder::new()
        .name("slow".into())
        .spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            "slow result"
        })
        .unwrap();
    let t = Instant::now();
    let slow = match slow.join_timeout(Duration::from_millis(50)) {
        Ok(_) => unreachable!("the thread sleeps for 300 ms"),
        Err(handle) => handle,
    };
    println!("   after {:?}: not finished, handle returned", t.elapsed());
    let value = slow.join().unwrap();
    println!("   a later join() after {:?} got {value:?}", t.elapsed());
}

fn affinity_from_inside() {
    println!("4. CPU affinity set at creation, read back from inside the thread");
    let cpus = killable::current().affinity().expect("sched_getaffinity");
    let last = *cpus.last().unwrap();
    let h = killable::Builder::new()
        .name("pinned".into())
        .affinity([last])
        .spawn(|| killable::current().affinity().expect("sched_getaffinity"))
        .unwrap();
    println!(
        "   process may use CPUs {cpus:?}; thread pinned to [{last}] reports {:?}",
        h.join().unwrap()
    );
}

/// Spawns `f`, lets it block, interrupts it and reports how long the call took to return.
fn interrupt_and_time<T: std::fmt::Debug + Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = killable::Builder::new()
        .name(what.into())
        .spawn(move || {
            let r = f();
            tx.send(Instant::now()).unwrap();
            r
        })
        .expect("spawn");
    // Wait until the thread sleeps in the kernel ('S' in /proc), then interrupt it.
    let stat = format!("/proc/self/task/{}/stat", h.thread().tid());
    while !std::fs::read_to_string(&stat).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('S'))
    }) {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    let sent = Instant::now();
    h.interrupt();
    let returned = rx.recv().unwrap();
    let result = h.join().unwrap();
    println!(
        "   {what:<22} returned {:>6.1} µs after interrupt(): {result:?}",
        (returned - sent).as_secs_f64() * 1e6
    );
}

fn interrupting_blocked_calls() {
    println!("5. interrupting threads blocked in system calls (none of them would ever return)");
    let (reader, writer) = std::io::pipe().expect("pipe");
    interrupt_and_time("pipe read", move || {
        Interruptible::new(reader)
            .read(&mut [0u8; 64])
            .map_err(|e| e.to_string())
    });
    drop(writer);

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    interrupt_and_time("accept", move || {
        Interruptible::new(listener)
            .accept()
            .map(|_| ())
            .map_err(|e| e.to_string())
    });

    interrupt_and_time("sleep(1 hour)", || {
        killable::sleep(Duration::from_secs(3600)).map_err(|e| e.to_string())
    });

    let state = Arc::new((Mutex::new(false), killable::sync::Condvar::new()));
    interrupt_and_time("condition wait", move || {
        let (lock, cv) = &*state;
        cv.wait_while(lock, |ready| !*ready)
            .map(drop)
            .map_err(|e| e.to_string())
    });
}

fn killing_a_c_loop() {
    println!("6. killing a C loop that never returns (a kill region, entered with `unsafe`)");
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let h = killable::Builder::new()
        .name("c-loop".into())
        .spawn(|| {
            // SAFETY: the C loop only increments a counter: it holds no lock, does not
            // allocate and never calls back into Rust, so it may be abandoned anywhere.
            unsafe { killable::kill_region(killable_demo_spin, COUNTER.as_ptr().cast()) }
        })
        .expect("spawn");
    while !h.thread().in_kill_region() {
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(20));
    let t = Instant::now();
    h.thread().kill();
    let r = h.join().unwrap();
    println!(
        "   the loop had counted to {}; kill() -> join() took {:.1} µs; the region returned {r:?}",
        COUNTER.load(std::sync::atomic::Ordering::Relaxed),
        t.elapsed().as_secs_f64() * 1e6
    );
}

/// Tells the tour, from the sealed thread's destructors, that they ran: the tour prints it after
/// the "sealed" line it belongs to.
struct Announce(std::sync::mpsc::Sender<()>);

impl Drop for Announce {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

fn seal_and_report<T: std::fmt::Debug + Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) {
    let (dropped, destructors_ran) = std::sync::mpsc::channel();
    let h = killable::Builder::new()
        .name(what.into())
        .spawn(move || {
            let _announce = Announce(dropped);
            f()
        })
        .expect("spawn");
    while !h
        .thread()
        .diagnose()
        .is_ok_and(|d| d.state() == 'S' && d.syscall().is_some())
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    // An interrupt alone does not stop std's calls: they retry after EINTR.
    h.interrupt();
    std::thread::sleep(Duration::from_millis(50));
    println!(
        "   {what}: still blocked 50 ms after interrupt(): {}",
        !h.is_finished()
    );
    let t = Instant::now();
    h.thread().seal().expect("seal");
    let r = h.join();
    println!(
        "   {what}: sealed; returned after {:.1} µs with {}",
        t.elapsed().as_secs_f64() * 1e6,
        match &r {
            Ok(v) => format!("{v:?}"),
            Err(_) => "a panic (std's sleep asserts that only EINTR can happen), unwound".into(),
        }
    );
    if destructors_ran.try_recv().is_ok() {
        println!("   ({what} ran its destructors on the way out)");
    }
}

fn sealing_std_calls() {
    println!("7. sealing threads stuck in std calls that retry EINTR forever");
    // Make stdin a pipe nobody writes to, so that read_line blocks wherever the tour runs.
    let (reader, writer) = std::io::pipe().expect("pipe");
    // SAFETY: replacing fd 0 with the pipe's read end; nothing else in the tour uses stdin.
    unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&reader), 0) };
    seal_and_report("stdin().read_line", || {
        std::io::stdin()
            .read_line(&mut String::new())
            .map_err(|e| e.to_string())
    });
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    seal_and_report("thread::sleep(1 hour)", || {
        std::thread::sleep(Duration::from_secs(3600))
    });
    std::panic::set_hook(previous);
    drop((reader, writer));
}

fn stopping_with_a_report() {
    println!("8. stop(grace): the levels that apply, and which one worked");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let h = killable::Builder::new()
        .name("std accept".into())
        .spawn(move || listener.accept().map(drop))
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(20));
    // No kill region: the kill's wait is skipped, and the seal comes after the interrupt's half.
    let stopped = h
        .stop(Duration::from_millis(500))
        .expect("the seal reaches accept");
    let level = stopped.level();
    let elapsed = stopped.elapsed();
    let err = stopped.into_result().unwrap().unwrap_err();
    println!(
        "   std's accept: stopped by {level:?} after {elapsed:?} of 500 ms; \
         is_sealed: {}, is_interrupt: {}",
        killable::is_sealed(&err),
        killable::is_interrupt(&err)
    );
}

fn diagnosing_a_stuck_thread() {
    println!("9. a thread nothing can stop, diagnosed");
    let lock = Arc::new(Mutex::new(()));
    let held = lock.lock().unwrap();
    let l = lock.clone();
    let h = killable::Builder::new()
        .name("stuck".into())
        .spawn(move || drop(l.lock()))
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(20));
    match h.stop(Duration::from_millis(400)) {
        Ok(stopped) => println!("   it stopped after all: {stopped:?}"),
        Err(stuck) => {
            println!("   stop(400 ms) gave the handle back: {stuck}");
            drop(held);
            stuck.into_handle().join().unwrap();
            println!("   (released the lock it waited for; it then finished)");
        }
    }
}

fn stopping_sets_of_threads() {
    println!("10. stopping threads in sets: a pool on a channel as a Group, and a scope");
    let pool = killable::Group::new("pool");
    let (jobs, queue) = killable::sync::mpsc::channel::<u64>();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
    for i in 0..3 {
        let queue = queue.clone();
        killable::Builder::new()
            .name(format!("pool-{i}"))
            .group(&pool)
            .spawn(move || -> std::io::Result<()> {
                loop {
                    let job = queue.lock().unwrap().recv()?; // interrupted here when idle
                    killable::sleep(Duration::from_millis(job))?; // or in the middle of a job
                }
            })
            .unwrap();
    }
    for _ in 0..100 {
        jobs.send(5).unwrap();
    }
    std::thread::sleep(Duration::from_millis(30));
    let report = pool.stop(Duration::from_secs(5));
    let left = queue.lock().unwrap().try_iter().count();
    println!(
        "   group.stop: {} workers, all stopped: {}; {left} jobs never taken are still in the channel",
        report.outcomes().len(),
        report.all_stopped()
    );

    let data = [1u64, 2, 3];
    let t = Instant::now();
    // The panic is on purpose: its message would only clutter the tour.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(|| {
        killable::scope(|s| {
            s.spawn(|| killable::sleep(Duration::from_secs(3600))); // would block std's scope
            s.spawn(|| data.iter().sum::<u64>());
            s.spawn(|| panic!("a scoped thread panics"));
        })
    });
    std::panic::set_hook(hook);
    println!(
        "   a scope whose thread panicked ended after {:?} (its sleeping sibling was interrupted): {}",
        t.elapsed(),
        if r.is_err() {
            "panic propagated"
        } else {
            "no panic"
        }
    );
}
