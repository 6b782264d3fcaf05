//! Spawns and joins N killable threads one after another (N from the command line, 1,000 by
//! default): the workload for counting system calls per spawn+join with strace, as the README's
//! benchmark section does (run it with 1,000 and 2,000 and divide the difference by 1,000).

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000);
    // One first thread, so that one-time set-up (handlers, pools) is not counted per thread.
    killable::spawn(|| ()).join().unwrap();
    for i in 0..n {
        let h = killable::spawn(move || std::hint::black_box(i));
        std::hint::black_box(h.join().unwrap());
    }
}
