//! `spawn_blocking` under real executors: tokio (drop, `tokio::time::timeout`, `select!`,
//! `tokio::spawn`), smol, and `futures::executor::block_on`.

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use killable::io::Interruptible;

const LIMIT: Duration = Duration::from_secs(60);

/// Sends on drop: shows that a job unwound through its destructors.
struct Guard(mpsc::Sender<&'static str>);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.send("guard dropped");
    }
}

/// A job blocked in a killable read of a pipe nobody writes to; its guard reports the unwind.
/// Returns the task, the job's thread once it blocks, and the guard's channel.
fn blocked_job() -> (
    killable::BlockingTask<std::io::Result<usize>>,
    mpsc::Receiver<&'static str>,
) {
    let (started_tx, started) = mpsc::channel();
    let (dropped_tx, dropped) = mpsc::channel();
    let task = killable::spawn_blocking(move || {
        let _guard = Guard(dropped_tx);
        let (reader, writer) = std::io::pipe()?;
        let mut reader = Interruptible::new(reader);
        started_tx.send(killable::current()).unwrap();
        let mut buf = [0u8; 16];
        let r = reader.read(&mut buf);
        drop(writer);
        r
    });
    let thread = started.recv_timeout(LIMIT).unwrap();
    testkit::wait_blocked(&thread);
    (task, dropped)
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn tokio_awaits_a_value_and_a_panic() {
    tokio_rt().block_on(async {
        assert_eq!(killable::spawn_blocking(|| 42).await.unwrap(), 42);
        let err = killable::spawn_blocking(|| -> u8 {
            testkit::panics_on_purpose();
            panic!("on purpose: tokio job")
        })
        .await
        .unwrap_err();
        assert_eq!(err.downcast_ref::<&str>(), Some(&"on purpose: tokio job"));
        // The task is Send: it can be awaited from another tokio task.
        let task = killable::spawn_blocking(|| "moved");
        assert_eq!(
            tokio::spawn(task).await.unwrap().unwrap(),
            "moved",
            "awaited inside tokio::spawn"
        );
    });
}

#[test]
fn tokio_dropping_the_future_interrupts_the_job() {
    let (task, dropped) = blocked_job();
    tokio_rt().block_on(async move {
        let handle = tokio::spawn(task);
        handle.abort(); // tokio drops the future: the job is aborted
        assert!(handle.await.unwrap_err().is_cancelled());
    });
    assert_eq!(dropped.recv_timeout(LIMIT), Ok("guard dropped"));
}

#[test]
fn tokio_timeout_expiring_interrupts_the_job() {
    let (task, dropped) = blocked_job();
    tokio_rt().block_on(async move {
        let r = tokio::time::timeout(Duration::from_millis(20), task).await;
        assert!(r.is_err(), "the job never returns on its own");
    });
    assert_eq!(dropped.recv_timeout(LIMIT), Ok("guard dropped"));
}

#[test]
fn tokio_select_drops_the_losing_job() {
    let (task, dropped) = blocked_job();
    tokio_rt().block_on(async move {
        let winner = tokio::select! {
            _ = task => "job",
            _ = tokio::time::sleep(Duration::from_millis(20)) => "timer",
        };
        assert_eq!(winner, "timer");
    });
    assert_eq!(dropped.recv_timeout(LIMIT), Ok("guard dropped"));
}

#[test]
fn tokio_abort_then_await() {
    let (task, dropped) = blocked_job();
    tokio_rt().block_on(async move {
        task.abort();
        let err = task.await.unwrap().unwrap_err();
        assert!(killable::is_interrupt(&err), "{err:?}");
    });
    assert_eq!(dropped.recv_timeout(LIMIT), Ok("guard dropped"));
}

#[test]
fn tokio_concurrent_jobs_from_many_tasks() {
    tokio_rt().block_on(async {
        let tasks: Vec<_> = (0..64u64)
            .map(|i| tokio::spawn(killable::spawn_blocking(move || i * i)))
            .collect();
        let mut sum = 0;
        for t in tasks {
            sum += t.await.unwrap().unwrap();
        }
        assert_eq!(sum, (0..64u64).map(|i| i * i).sum::<u64>());
    });
}

#[test]
fn smol_awaits_aborts_and_drops() {
    smol::block_on(async {
        assert_eq!(killable::spawn_blocking(|| 7).await.unwrap(), 7);
        assert!(
            killable::spawn_blocking(|| -> u8 {
                testkit::panics_on_purpose();
                panic!("on purpose: smol job")
            })
            .await
            .is_err()
        );
        let task = smol::spawn(killable::spawn_blocking(|| "spawned"));
        assert_eq!(task.await.unwrap(), "spawned");
    });
    let (task, dropped) = blocked_job();
    smol::block_on(async move {
        task.abort();
        assert!(killable::is_interrupt(&task.await.unwrap().unwrap_err()));
    });
    assert_eq!(dropped.recv_timeout(LIMIT), Ok("guard dropped"));
    let (task, dropped) = blocked_job();
    smol::block_on(async move {
        let t = smol::spawn(task);
        drop(t); // smol cancels the task: its future, and so the job, is dropped
    });
    assert_eq!(dropped.recv_timeout(LIMIT), Ok("guard dropped"));
}

#[test]
fn futures_block_on_awaits_aborts_and_drops() {
    use futures::FutureExt;
    futures::executor::block_on(async {
        assert_eq!(killable::spawn_blocking(|| 9).await.unwrap(), 9);
    });
    let (task, dropped) = blocked_job();
    futures::executor::block_on(async move {
        let timer = killable::spawn_blocking(|| killable::sleep(Duration::from_millis(20)));
        futures::select! {
            _ = task.fuse() => panic!("the blocked job cannot win"),
            r = timer.fuse() => r.unwrap().unwrap(),
        }
    });
    assert_eq!(dropped.recv_timeout(LIMIT), Ok("guard dropped"));
}
