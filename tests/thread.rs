//! Thread creation, naming, stacks, affinity, joining and the registry.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use killable::Builder;

fn comm(tid: i32) -> String {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .unwrap()
        .trim_end()
        .to_owned()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_thousand_threads_spawn_and_join() {
    let handles: Vec<_> = (0..1000u64)
        .map(|i| killable::spawn(move || i * 2))
        .collect();
    let sum: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(sum, 2 * (0..1000u64).sum::<u64>());
}

#[test]
fn values_and_panics_reach_join() {
    let ok = killable::spawn(|| String::from("value"));
    assert_eq!(ok.join().unwrap(), "value");
    let bad = killable::spawn(|| -> u32 {
        testkit::panics_on_purpose();
        std::panic::panic_any(17u32)
    });
    let payload = bad.join().unwrap_err();
    assert_eq!(payload.downcast_ref::<u32>(), Some(&17));
    let n = std::hint::black_box(5);
    let fmt = killable::spawn(move || -> () {
        testkit::panics_on_purpose();
        panic!("formatted {n}")
    });
    let payload = fmt.join().unwrap_err();
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("formatted 5")
    );
}

#[test]
fn join_timeout_gives_the_handle_back() {
    let (tx, rx) = mpsc::channel::<()>();
    let h = killable::spawn(move || {
        rx.recv().unwrap();
        99
    });
    let h = h
        .join_timeout(Duration::from_millis(20))
        .expect_err("thread is blocked");
    assert!(!h.is_finished());
    tx.send(()).unwrap();
    assert_eq!(h.join().unwrap(), 99);
}

#[test]
fn join_timeout_returns_the_value_when_in_time() {
    let h = killable::spawn(|| 5);
    let Ok(r) = h.join_timeout(Duration::from_secs(60)) else {
        panic!("not finished in time")
    };
    assert_eq!(r.unwrap(), 5);
}

#[test]
fn name_with_nul_is_invalid_input() {
    let err = Builder::new()
        .name("bad\0name".into())
        .spawn(|| ())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("NUL"), "{err}");
}

#[test]
fn names_read_back_from_inside() {
    let h = Builder::new()
        .name("short".into())
        .spawn(|| {
            (
                killable::current().name().map(str::to_owned),
                comm(killable::current().tid()),
            )
        })
        .unwrap();
    assert_eq!(
        h.join().unwrap(),
        (Some("short".to_owned()), "short".to_owned())
    );

    let long = "a-very-long-thread-name-indeed";
    let h = Builder::new()
        .name(long.into())
        .spawn(|| comm(killable::current().tid()))
        .unwrap();
    assert_eq!(h.thread().name(), Some(long));
    assert_eq!(h.join().unwrap(), &long[..15]);

    // 'é' is two bytes: 15 bytes would cut the eighth one in half, so 14 are kept.
    let accents = "éééééééééé";
    let h = Builder::new()
        .name(accents.into())
        .spawn(|| comm(killable::current().tid()))
        .unwrap();
    assert_eq!(h.join().unwrap(), "ééééééé");
}

#[test]
fn tiny_stack_is_raised_to_the_minimum() {
    let h = Builder::new().stack_size(1).spawn(|| 3).unwrap();
    assert_eq!(h.join().unwrap(), 3);
}

#[test]
fn stack_size_that_overflows_rounding_is_invalid_input() {
    let err = Builder::new()
        .stack_size(usize::MAX)
        .spawn(|| ())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("stack size"), "{err}");
}

#[test]
fn stack_size_the_system_refuses_is_an_error_naming_it() {
    // 1 PiB: more than a process can map (user address spaces are 128 or 256 TiB unless a
    // mapping asks for an address above them). Under qemu-user a size it can map is tracked
    // page by page before the kernel refuses it: 64 TiB made it run out of memory.
    let size = 1usize << 50;
    let err = Builder::new().stack_size(size).spawn(|| ()).unwrap_err();
    assert!(err.to_string().contains(&size.to_string()), "{err}");
}

#[test]
fn bad_cpu_indices_are_invalid_input() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    for set in [vec![], vec![4096], vec![0, 100_000]] {
        let err = Builder::new()
            .affinity(set.clone())
            .spawn(|| ())
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{set:?}: {err}");
    }
    // SAFETY: sysconf has no preconditions.
    let configured = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) } as usize;
    let err = Builder::new()
        .affinity([configured])
        .spawn(|| ())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(cpus >= 1);
}

#[test]
fn affinity_reads_back_from_inside() {
    let allowed = killable::current().affinity().unwrap();
    let cpu = *allowed.last().unwrap();
    let h = Builder::new()
        .affinity([cpu])
        .spawn(|| {
            // SAFETY: cpu_set_t is plain data.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            // SAFETY: querying the calling thread (0) into a valid set.
            let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
            assert_eq!(r, 0);
            (0..libc::CPU_SETSIZE as usize)
                // SAFETY: index below CPU_SETSIZE.
                .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
                .collect::<Vec<_>>()
        })
        .unwrap();
    let from_outside = h.thread().affinity().ok();
    assert_eq!(h.join().unwrap(), vec![cpu]);
    if let Some(outside) = from_outside {
        assert_eq!(outside, vec![cpu]);
    }
}

#[test]
fn affinity_of_a_finished_thread_says_it_finished() {
    let h = Builder::new().name("gone".into()).spawn(|| ()).unwrap();
    let t = h.thread().clone();
    h.join().unwrap();
    let e = t.affinity().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("'gone'"), "{e}");
    assert!(e.to_string().contains("has finished"), "{e}");
}

#[test]
fn current_is_stable_and_knows_the_tid() {
    let a = killable::current();
    let b = killable::current();
    assert_eq!(a.id(), b.id());
    // SAFETY: gettid has no preconditions.
    assert_eq!(a.tid(), unsafe { libc::gettid() });
    let h = killable::spawn(|| {
        let me = killable::current();
        // SAFETY: as above.
        (me.id(), me.tid(), unsafe { libc::gettid() })
    });
    let outside = (h.thread().id(), h.thread().tid());
    let (id, tid, real) = h.join().unwrap();
    assert_eq!((id, tid), outside);
    assert_eq!(tid, real);
}

#[test]
fn current_in_a_std_thread_has_std_name() {
    let t = std::thread::Builder::new()
        .name("std-made".into())
        .spawn(|| {
            let me = killable::current();
            (me.name().map(str::to_owned), me.is_finished())
        })
        .unwrap();
    assert_eq!(t.join().unwrap(), (Some("std-made".to_owned()), false));
}

#[test]
fn registry_lists_live_threads_until_joined() {
    let (tx, rx) = mpsc::channel::<()>();
    let h = Builder::new()
        .name("registered".into())
        .daemon(true)
        .spawn(move || rx.recv().unwrap())
        .unwrap();
    let id = h.thread().id();
    let find = || {
        killable::threads()
            .into_iter()
            .find(|t| t.thread().id() == id)
    };
    let info = find().expect("listed while running");
    assert_eq!(info.name(), Some("registered"));
    assert!(info.is_daemon());
    assert!(!info.is_finished());
    assert_eq!(info.tid(), h.thread().tid());

    tx.send(()).unwrap();
    wait_until("the thread to finish", || h.is_finished());
    assert!(find().expect("listed until joined").is_finished());
    h.join().unwrap();
    assert!(find().is_none(), "gone after join");
}

#[test]
fn dropped_handle_detaches_and_leaves_the_registry() {
    let (tx, rx) = mpsc::channel::<()>();
    let h = killable::spawn(move || rx.recv().unwrap());
    let thread = h.thread().clone();
    drop(h);
    assert!(
        killable::threads()
            .iter()
            .any(|t| t.thread().id() == thread.id())
    );
    tx.send(()).unwrap();
    wait_until("the detached thread to leave the registry", || {
        killable::threads()
            .iter()
            .all(|t| t.thread().id() != thread.id())
    });
    assert!(thread.is_finished());
}

#[test]
fn into_pthread_t_transfers_ownership() {
    let h = killable::spawn(|| ());
    let thread = h.thread().clone();
    let raw = h.into_pthread_t();
    // SAFETY: `raw` is ours to join, once.
    assert_eq!(unsafe { libc::pthread_join(raw, std::ptr::null_mut()) }, 0);
    assert!(thread.is_finished());
    wait_until("the thread to leave the registry", || {
        killable::threads()
            .iter()
            .all(|t| t.thread().id() != thread.id())
    });
}

#[test]
fn join_handle_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<killable::JoinHandle<Vec<u8>>>();
    check::<killable::Thread>();
}

#[test]
fn regression_join_timeout_is_bounded_by_thread_local_destructors() {
    // join_timeout used to wait for the closure only, then block in pthread_join for as long as
    // the thread's thread-local destructors ran. A thread now counts as finished only once its
    // thread-local destructors are done, and join_timeout is bounded throughout.
    static DROPPING: AtomicBool = AtomicBool::new(false);
    struct SlowDrop;
    impl Drop for SlowDrop {
        fn drop(&mut self) {
            DROPPING.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    thread_local! {
        static SLOW: std::cell::RefCell<Option<SlowDrop>> = const { std::cell::RefCell::new(None) };
    }
    let h = killable::spawn(|| SLOW.with(|s| *s.borrow_mut() = Some(SlowDrop)));
    wait_until("the destructor to start", || {
        DROPPING.load(Ordering::SeqCst)
    });
    assert!(
        !h.is_finished(),
        "finished while a thread-local destructor runs"
    );
    let h = h
        .join_timeout(Duration::from_millis(100))
        .expect_err("the destructor is still sleeping");
    let Ok(r) = h.join_timeout(Duration::from_secs(60)) else {
        panic!("the destructor never finished")
    };
    r.unwrap();
}
