//! A short tour of killable: run it with `cargo run --release --example tour`.
//!
//! Every step prints what it does and what it observed.

use std::io::Read;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use killable::io::Interruptible;

fn main() {
    println!("killable tour (pid {})\n", std::process::id());
    threads_and_names();
    panics_reach_join();
    join_with_a_timeout();
    affinity_from_inside();
    interrupting_blocked_calls();
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
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
}
