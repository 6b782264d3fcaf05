//! Regression tests for stopping and diagnosing: per-tid reads of finished threads, syscall
//! names, and `shutdown` racing with threads born while it runs. Each body runs in a child
//! process (`testkit::in_child`): these tests spawn thousands of threads or call `shutdown`,
//! which stops every thread killable spawned in the process.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use killable::io::Interruptible;
use testkit::{in_child, wait_blocked, wait_until};

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    killable::current()
        .affinity()
        .expect("affinity of the current thread")
}

/// Pins the calling thread to `cpu`.
fn pin_self(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (it came from the allowed set).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid set of the size passed; 0 is the calling thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    assert_eq!(r, 0, "sched_setaffinity: {}", io::Error::last_os_error());
}

/// Makes the kernel hand out `tid - 1` as the last id, so the next thread probably gets `tid`.
/// Needs CAP_CHECKPOINT_RESTORE (root); returns false where that is not allowed.
fn suggest_next_tid(tid: i32) -> bool {
    std::fs::write("/proc/sys/kernel/ns_last_pid", (tid - 1).to_string()).is_ok()
}

/// A std thread that got kernel id `tid`, pinned to `cpu`, kept alive until the value drops.
struct Holder {
    release: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// Spawns short-lived threads until one gets kernel id `tid` (bounded); that one pins itself to
/// `cpu` and stays. Returns None if the id did not come back within the bounds.
fn reuse_tid(tid: i32, cpu: usize) -> Option<Holder> {
    let pid_max: usize = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4_194_304);
    // Cycling through the whole id space takes pid_max spawns (a second or two for 32768, too
    // long for the 4194304 of many distributions); ns_last_pid, where allowed, takes one.
    let cycle = pid_max <= 65_536;
    if !cycle && !suggest_next_tid(tid) {
        return None;
    }
    let end = Instant::now() + Duration::from_secs(60);
    for _ in 0..pid_max + 10_000 {
        if Instant::now() > end {
            break;
        }
        suggest_next_tid(tid);
        let (got_tx, got_rx) = mpsc::channel();
        let (release, wait) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let mine = unsafe { libc::gettid() } == tid;
            if mine {
                pin_self(cpu);
            }
            got_tx.send(mine).unwrap();
            if mine {
                let _ = wait.recv();
            }
        });
        if got_rx.recv().unwrap() {
            return Some(Holder { release, thread });
        }
        thread.join().unwrap();
    }
    None
}

#[test]
fn regression_affinity_of_a_finished_thread_whose_tid_was_reused() {
    in_child(
        "regression_affinity_of_a_finished_thread_whose_tid_was_reused",
        Duration::from_secs(200),
        || {
            let cpus = allowed_cpus();
            let (first, other) = (cpus[0], *cpus.last().unwrap());
            let h = killable::Builder::new()
                .name("finished-one".into())
                .affinity([first])
                .spawn(|| ())
                .unwrap();
            let t = h.thread().clone();
            let tid = t.tid();
            h.join().unwrap();
            wait_until(Duration::from_secs(10), "the tid to be released", || {
                !std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
            });
            let holder = reuse_tid(tid, other);
            if holder.is_none() {
                eprintln!("note: tid {tid} was not reused within the bounds");
            } else {
                eprintln!("tid {tid} now names another thread, pinned to CPU {other}");
            }
            let r = t.affinity();
            eprintln!("affinity() of the finished thread: {r:?}");
            let e = r.expect_err("affinity() of a finished thread must fail");
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
            assert!(e.to_string().contains("finished"), "{e}");
            assert!(e.to_string().contains("finished-one"), "{e}");
            let d = t.diagnose();
            eprintln!("diagnose() of the finished thread: {d:?}");
            assert!(d.is_err());
            if let Some(holder) = holder {
                drop(holder.release);
                holder.thread.join().unwrap();
            }
        },
    );
}

#[test]
fn regression_diagnose_of_a_finished_thread_is_an_error() {
    let h = killable::Builder::new()
        .name("done".into())
        .spawn(|| ())
        .unwrap();
    let t = h.thread().clone();
    h.join().unwrap();
    let d = t.diagnose();
    println!("diagnose() of a finished thread: {d:?}");
    let e = d.expect_err("diagnose() of a finished thread must fail");
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("'done'"), "{e}");
    assert!(e.to_string().contains("finished"), "{e}");
}

/// Takes (`F_SETLK`) or waits for (`F_SETLKW`) a POSIX write lock on the whole file `fd`.
fn posix_lock(fd: RawFd, cmd: libc::c_int) -> libc::c_int {
    // SAFETY: flock is plain data; all-zero is a valid starting value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: `fl` is a valid flock for the duration of the call.
    unsafe { libc::fcntl(fd, cmd, &mut fl) }
}

/// A child process that holds a POSIX lock (those conflict only between processes; valgrind
/// 3.19 does not know that `F_OFD_SETLKW` blocks, so OFD locks within one process would hang
/// it). Killed and reaped on drop, which releases the lock.
struct LockHolder(libc::pid_t);

impl LockHolder {
    fn new(file: &File) -> LockHolder {
        let (mut ready_r, ready_w) = std::io::pipe().unwrap();
        let (fd, w) = (file.as_raw_fd(), ready_w.as_raw_fd());
        // SAFETY: the child only calls async-signal-safe functions (fcntl, write, pause) until
        // it is killed, as a child of a multi-threaded process must.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            let ok = [u8::from(posix_lock(fd, libc::F_SETLK) == 0)];
            // SAFETY: `w` is open in the child and `ok` is one readable byte.
            unsafe { libc::write(w, ok.as_ptr().cast(), 1) };
            loop {
                // SAFETY: pause has no preconditions.
                unsafe { libc::pause() };
            }
        }
        drop(ready_w);
        let holder = LockHolder(pid);
        let mut ok = [0u8];
        ready_r.read_exact(&mut ok).unwrap();
        assert_eq!(ok, [1], "the child could not lock the file");
        holder
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        // SAFETY: `self.0` is our child, not reaped yet.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

#[test]
fn regression_diagnose_names_fcntl() {
    let path = std::env::temp_dir().join(format!("killable-fcntl-{}", std::process::id()));
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap()
    };
    let file = open();
    let holder = LockHolder::new(&file);
    let waiter = open();
    let fd = waiter.as_raw_fd();
    let h = killable::spawn(move || posix_lock(waiter.as_raw_fd(), libc::F_SETLKW));
    wait_blocked(h.thread());
    let d = h.thread().diagnose();
    drop(holder); // the lock is released: the thread gets it and returns
    let r = h
        .join_timeout(Duration::from_secs(30))
        .expect("the lock was granted");
    let _ = std::fs::remove_file(&path);
    let d = d.unwrap();
    println!("diagnosis: {d}; syscall_name() = {:?}", d.syscall_name());
    assert_eq!(d.syscall().map(|s| s.0), Some(libc::SYS_fcntl), "{d}");
    assert_eq!(d.syscall_name(), Some("fcntl"), "{d}");
    assert!(
        d.to_string()
            .starts_with(&format!("blocked in fcntl(fd {fd})")),
        "{d}"
    );
    assert_eq!(r.unwrap(), 0);
}

/// A thread that needs a while to stop: interrupted, it winds down until `done` says so (a
/// std channel, which no interrupt reaches), and a little longer.
fn slow_to_stop(done: mpsc::Receiver<()>) -> killable::JoinHandle<()> {
    killable::Builder::new()
        .name("slow-to-stop".into())
        .spawn(move || {
            let _ = killable::sleep(Duration::from_secs(3600));
            let _ = done.recv_timeout(Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(5));
        })
        .unwrap()
}

/// Interrupts and joins a worker that may still run (bounded), so a failed round leaves
/// nothing behind; returns whether it had finished before.
fn finished_then_reap<T>(w: killable::JoinHandle<T>) -> bool {
    let finished = w.is_finished();
    w.interrupt();
    assert!(
        w.join_timeout(Duration::from_secs(30)).is_ok(),
        "the worker did not end even when interrupted"
    );
    finished
}

#[test]
fn regression_shutdown_reaches_a_worker_an_acceptor_spawns_during_it() {
    in_child(
        "regression_shutdown_reaches_a_worker_an_acceptor_spawns_during_it",
        Duration::from_secs(120),
        || {
            let mut missed = 0;
            for round in 0..10 {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let acceptor = killable::Builder::new()
                    .name("acceptor".into())
                    .spawn(move || {
                        let (conn, _) = listener.accept().expect("accept");
                        std::thread::sleep(Duration::from_millis(5)); // std-only work
                        killable::Builder::new()
                            .name("worker".into())
                            .spawn(move || Interruptible::new(conn).read(&mut [0u8; 1]))
                            .unwrap()
                    })
                    .unwrap();
                wait_blocked(acceptor.thread());
                let client = TcpStream::connect(addr).unwrap(); // kept open: no EOF
                let report = killable::shutdown(Duration::from_secs(10));
                let worker = acceptor
                    .join_timeout(Duration::from_secs(30))
                    .expect("the acceptor ended")
                    .expect("the acceptor did not panic");
                let all = report.all_stopped();
                let listed = report
                    .outcomes()
                    .iter()
                    .any(|o| o.thread().id() == worker.thread().id());
                let finished = finished_then_reap(worker);
                println!(
                    "round {round}: all_stopped {all}, worker in report {listed}, worker \
                     finished {finished}\n{report}"
                );
                if all && !finished {
                    missed += 1;
                }
                drop(client);
            }
            assert_eq!(
                missed, 0,
                "shutdown reported all_stopped() with a worker running"
            );
        },
    );
}

#[test]
fn regression_shutdown_reaches_a_worker_a_daemon_spawns_during_it() {
    in_child(
        "regression_shutdown_reaches_a_worker_a_daemon_spawns_during_it",
        Duration::from_secs(120),
        || {
            let mut missed = 0;
            for round in 0..10 {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                // A daemon, which shutdown leaves alone, hands a connection to a new
                // non-daemon worker while the shutdown is busy with a slow thread (which
                // winds down until the worker exists, however slow the machine).
                let (spawned, done) = mpsc::channel();
                let acceptor = killable::Builder::new()
                    .name("daemon-acceptor".into())
                    .daemon(true)
                    .spawn(move || {
                        let (conn, _) = listener.accept().expect("accept");
                        std::thread::sleep(Duration::from_millis(5)); // std-only work
                        let worker = killable::Builder::new()
                            .name("worker".into())
                            .spawn(move || Interruptible::new(conn).read(&mut [0u8; 1]))
                            .unwrap();
                        let _ = spawned.send(());
                        worker
                    })
                    .unwrap();
                let slow = slow_to_stop(done);
                wait_blocked(acceptor.thread());
                wait_blocked(slow.thread());
                let client = TcpStream::connect(addr).unwrap(); // kept open: no EOF
                let report = killable::shutdown(Duration::from_secs(10));
                let worker = acceptor
                    .join_timeout(Duration::from_secs(30))
                    .expect("the acceptor ended")
                    .expect("the acceptor did not panic");
                slow.join_timeout(Duration::from_secs(30))
                    .expect("the slow thread ended")
                    .unwrap();
                let all = report.all_stopped();
                let listed = report
                    .outcomes()
                    .iter()
                    .any(|o| o.thread().id() == worker.thread().id());
                let finished = finished_then_reap(worker);
                println!(
                    "round {round}: all_stopped {all}, worker in report {listed}, worker \
                     finished {finished}\n{report}"
                );
                if all && !finished {
                    missed += 1;
                }
                drop(client);
            }
            assert_eq!(
                missed, 0,
                "shutdown reported all_stopped() with a worker running"
            );
        },
    );
}

/// `shutdown` collects its targets under the registry lock (cloning only the threads it will
/// stop): every live non-daemon thread is in the report exactly once, and neither daemons nor
/// threads that finished but were not joined yet are, with hundreds of threads listed.
#[test]
fn regression_shutdown_reports_each_live_worker_once_and_no_daemon_or_finished_thread() {
    in_child(
        "regression_shutdown_reports_each_live_worker_once_and_no_daemon_or_finished_thread",
        Duration::from_secs(120),
        || {
            let sleep = || killable::sleep(Duration::from_secs(3600)).is_err();
            let workers: Vec<_> = (0..300).map(|_| killable::spawn(sleep)).collect();
            let daemons: Vec<_> = (0..3)
                .map(|_| killable::Builder::new().daemon(true).spawn(sleep).unwrap())
                .collect();
            let finished: Vec<_> = (0..5).map(|_| killable::spawn(|| true)).collect();
            for h in &finished {
                wait_until(Duration::from_secs(30), "a thread to finish", || {
                    h.is_finished()
                });
            }
            let report = killable::shutdown(Duration::from_secs(30));
            assert!(report.all_stopped(), "{report}");
            let mut reported: Vec<_> = report.outcomes().iter().map(|o| o.thread().id()).collect();
            reported.sort();
            let mut expected: Vec<_> = workers.iter().map(|h| h.thread().id()).collect();
            expected.sort();
            assert_eq!(reported, expected, "each live worker once, nothing else");
            for h in workers {
                assert!(h.join().unwrap(), "a worker was not interrupted");
            }
            for h in &daemons {
                assert!(!h.is_finished(), "a daemon was stopped");
            }
            for h in finished {
                assert!(h.join().unwrap());
            }
        },
    );
}
