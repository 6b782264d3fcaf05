//! A short tour of killable: run it with `cargo run --release --example tour`.
//!
//! Every step prints what it does and what it observed.

use std::time::{Duration, Instant};

fn main() {
    println!("killable tour (pid {})\n", std::process::id());
    threads_and_names();
    panics_reach_join();
    join_with_a_timeout();
    affinity_from_inside();
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
