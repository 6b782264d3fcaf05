//! A pool of workers waiting on a channel, stopped as a `Group`: run it with
//! `cargo run --example pool`.
//!
//! The workers share one receiver behind a mutex, the pattern of the Rust book's thread pool:
//! one worker waits in `recv`, the others for the mutex. `Group::stop` interrupts them all: the
//! one in `recv` returns an interrupt error and releases the mutex, and each of the others then
//! takes the mutex and fails at once in `recv`, since its interrupt is pending. Jobs nobody took
//! stay in the channel: nothing is lost.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use killable::sync::mpsc;

type Job = u64;

fn main() -> std::io::Result<()> {
    let pool = killable::Group::new("pool");
    let (jobs, queue) = mpsc::channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    let (done_tx, done) = mpsc::channel::<(usize, Job)>();

    for id in 0..4 {
        let (queue, done_tx) = (queue.clone(), done_tx.clone());
        killable::Builder::new()
            .name(format!("worker-{id}"))
            .group(&pool)
            .spawn(move || -> std::io::Result<()> {
                loop {
                    let job = queue.lock().unwrap().recv()?; // an interrupt ends the worker here
                    killable::sleep(Duration::from_millis(job))?; // ...or here, mid-job
                    done_tx.send((id, job)).map_err(std::io::Error::from)?;
                }
            })?;
    }
    drop(done_tx);

    let sent = 200;
    for _ in 0..sent {
        jobs.send(2).map_err(std::io::Error::from)?;
    }
    println!(
        "{} workers, {sent} jobs of 2 ms queued",
        pool.threads().len()
    );
    std::thread::sleep(Duration::from_millis(50));

    let t = Instant::now();
    let report = pool.stop(Duration::from_secs(5));
    println!("pool.stop returned after {:?}:", t.elapsed());
    print!("{report}");
    assert!(report.all_stopped());

    let finished = done.try_iter().count();
    let left = queue.lock().unwrap().try_iter().count();
    // A job taken by a worker interrupted in its sleep is neither finished nor left.
    let interrupted_mid_job = sent - finished - left;
    println!(
        "{finished} jobs finished, {left} still queued, {interrupted_mid_job} interrupted mid-job \
         (sum {})",
        finished + left + interrupted_mid_job
    );
    assert!(
        interrupted_mid_job <= 4,
        "at most one job per worker is cut short"
    );
    Ok(())
}
