//! Sealing: the target's blocking system calls fail with `ECANCELED` from then on.
//!
//! # Internal workings
//!
//! A seccomp filter applies to the thread that installs it (without `TSYNC`), so the target
//! must install it itself: `Thread::seal` marks the request in the target's `Control::seal`
//! word and sends killable's signal; the handler (on the target) sees the request, sets
//! `no_new_privs` for the thread (seccomp's precondition for unprivileged processes) and
//! installs the static BPF program below with two raw system calls (async-signal-safe: no
//! allocation, the program is a `static`), stores the outcome and wakes the sealer. The signal
//! also breaks the call the target is blocked in (`EINTR`); code that retries it, as std does,
//! now gets `ECANCELED`, an error it does not retry, and unwinds through its own error paths.
//!
//! The filter fails the system calls a thread waits in for an outside event (reads, receives,
//! accepts, connects, sleeps, polls, process and signal waits, SysV and AIO waits) and allows
//! everything else, so the thread can still write, unwind, free memory, take locks (`futex` is
//! allowed: a lock must keep working, and std's `Mutex`, `Condvar` and channels cannot report an
//! error), close descriptors and exit. Threads the sealed thread creates afterwards inherit the
//! filter.

use std::io;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::futex;
use crate::interrupt::{Control, INTERRUPT, send};
use crate::thread::{RUNNING, Thread};

const NONE: u32 = 0;
const REQUESTED: u32 = 1;
const SEALED: u32 = 2;
/// `FAILED | errno`: the kernel refused the filter.
const FAILED: u32 = 0x1_0000;

/// How long `seal` waits for the target to acknowledge.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The blocking system calls a sealed thread can no longer make (x86_64 numbers).
const SEALED_CALLS: [libc::c_long; 31] = [
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_pread64,
    libc::SYS_preadv,
    libc::SYS_preadv2,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_recvmmsg,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_connect,
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_select,
    libc::SYS_pselect6,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_pause,
    libc::SYS_rt_sigsuspend,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_msgrcv,
    libc::SYS_semop,
    libc::SYS_semtimedop,
    libc::SYS_io_getevents,
    333, // io_pgetevents (not in libc for x86_64)
    libc::SYS_mq_timedreceive,
];

// Classic BPF opcodes and seccomp constants (linux/filter.h, linux/seccomp.h, linux/audit.h).
/// BPF_LD (0x00) | BPF_W (0x00) | BPF_ABS (0x20).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const SECCOMP_SET_MODE_FILTER: libc::c_long = 1;
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
/// A leaf of the search tree compares this many numbers one by one.
const LEAF: usize = 4;

/// Where a jump goes, before offsets are resolved.
#[derive(Clone, Copy)]
enum To {
    Next,
    Allow,
    Deny,
    At(usize),
}

/// Emits a binary search over the sorted `nums` (the number is in the accumulator): a match
/// jumps to `Deny`, anything else to `Allow`.
fn emit_search(p: &mut Vec<(u16, To, To, u32)>, nums: &[u32]) {
    if nums.len() <= LEAF {
        for &n in nums {
            p.push((BPF_JMP_JEQ_K, To::Deny, To::Next, n));
        }
        p.push((BPF_JMP_JA, To::Allow, To::Next, 0));
        return;
    }
    let mid = nums.len() / 2;
    let at = p.len();
    p.push((BPF_JMP_JGE_K, To::Next, To::Next, nums[mid]));
    emit_search(p, &nums[..mid]);
    p[at].1 = To::At(p.len());
    emit_search(p, &nums[mid..]);
}

/// The filter: `[0] load arch; [1] not x86_64: allow; [2] load nr; [3] x32: allow;` then a
/// balanced binary search over the sealed numbers; `allow`; `deny with ECANCELED`.
///
/// A search rather than a list of 31 comparisons: since Linux 5.11 attaching a filter runs it
/// for every system-call number to build the kernel's action cache, so the attach, which is
/// most of a seal's latency, costs in proportion to the depth of the program.
fn build_program() -> Vec<libc::sock_filter> {
    let mut nums: Vec<u32> = SEALED_CALLS.iter().map(|&n| n as u32).collect();
    nums.sort_unstable();
    nums.dedup();
    let mut p = vec![
        (BPF_LD_W_ABS, To::Next, To::Next, OFFSET_ARCH),
        (BPF_JMP_JEQ_K, To::Next, To::Allow, AUDIT_ARCH_X86_64),
        (BPF_LD_W_ABS, To::Next, To::Next, OFFSET_NR),
        (BPF_JMP_JGE_K, To::Allow, To::Next, X32_SYSCALL_BIT),
    ];
    emit_search(&mut p, &nums);
    let (allow, deny) = (p.len(), p.len() + 1);
    let offset = |from: usize, to: To| -> usize {
        match to {
            To::Next => 0,
            To::Allow => allow - from - 1,
            To::Deny => deny - from - 1,
            To::At(i) => i - from - 1,
        }
    };
    let mut out: Vec<libc::sock_filter> = p
        .iter()
        .enumerate()
        .map(|(i, &(code, jt, jf, k))| {
            if code == BPF_JMP_JA {
                insn(code, 0, 0, offset(i, jt) as u32)
            } else {
                let (jt, jf) = (offset(i, jt), offset(i, jf));
                assert!(jt <= 255 && jf <= 255, "BPF jump out of range");
                insn(code, jt as u8, jf as u8, k)
            }
        })
        .collect();
    out.push(insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW));
    out.push(insn(
        BPF_RET_K,
        0,
        0,
        SECCOMP_RET_ERRNO | libc::ECANCELED as u32,
    ));
    out
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Built once, before the first seal request can reach a handler; the handler only reads it.
static PROGRAM: OnceLock<Vec<libc::sock_filter>> = OnceLock::new();

fn program() -> &'static [libc::sock_filter] {
    PROGRAM.get_or_init(build_program)
}

/// Installs the filter on the calling thread; returns 0 or the errno. Async-signal-safe: the
/// program was built by `seal_async` before the request was published (`OnceLock::get` is one
/// atomic load).
fn install_filter() -> i32 {
    let Some(p) = PROGRAM.get() else {
        return libc::EINVAL;
    };
    let prog = libc::sock_fprog {
        len: p.len() as u16,
        filter: p.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl and seccomp are plain system calls; `prog` points to a program of `len`
    // instructions that lives for the whole process and that the kernel copies.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0
        {
            return *libc::__errno_location();
        }
    }
    0
}

/// Called by the signal handler on the target: installs the filter if a seal was requested.
pub(crate) fn on_signal(ctl: &Control) {
    if ctl.seal.load(Ordering::Acquire) != REQUESTED {
        return;
    }
    let r = install_filter();
    ctl.seal.store(
        if r == 0 { SEALED } else { FAILED | r as u32 },
        Ordering::Release,
    );
    futex::wake(&ctl.seal, i32::MAX);
}

impl Thread {
    /// Seals the thread: from now on its blocking system calls (reads, receives, accepts,
    /// connects, sleeps, polls, waits) fail with `ECANCELED`, and the call it is blocked in is
    /// broken. It is also [interrupted](Thread::interrupt).
    ///
    /// This reaches code that retries `EINTR` forever, std's included
    /// (`stdin().read_line`, `TcpListener::accept`, `thread::sleep`): those calls now fail with
    /// an error they do not retry, and the thread unwinds through its own error paths, running
    /// its destructors. Only system calls fail; the thread can still write, take locks, free
    /// memory and exit. It must be on its way out: a sealed thread cannot be unsealed.
    ///
    /// The filter is installed by the thread itself, from killable's signal handler; this waits
    /// (up to 5 seconds) for it to report back. Sealing a thread that has finished does nothing.
    ///
    /// # Errors
    ///
    /// * The kernel's error if it refuses seccomp (a kernel without it, a sandbox that forbids
    ///   it); nothing else changes (the interrupt is still sent).
    /// * [`io::ErrorKind::TimedOut`] if the thread did not answer within 5 seconds (it blocks
    ///   killable's signal).
    /// * As [`Thread::try_interrupt`] if killable's signal handler was replaced.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::TcpListener;
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// // std's accept retries EINTR: an interrupt alone would not stop it.
    /// let h = killable::spawn(move || listener.accept().map(drop));
    /// std::thread::sleep(std::time::Duration::from_millis(20));
    /// h.thread().seal().unwrap();
    /// let err = h.join().unwrap().unwrap_err();
    /// assert_eq!(err.raw_os_error(), Some(libc::ECANCELED));
    /// ```
    ///
    /// # References
    ///
    /// * [`seccomp(2)`](https://man7.org/linux/man-pages/man2/seccomp.2.html)
    #[doc(alias = "seccomp")]
    pub fn seal(&self) -> io::Result<()> {
        self.seal_async()?;
        let inner = &*self.inner;
        let ctl = &inner.ctl;
        let start = Instant::now();
        loop {
            match ctl.seal.load(Ordering::Acquire) {
                SEALED => return Ok(()),
                REQUESTED => {}
                // Never requested: the thread had already finished.
                NONE => return Ok(()),
                failed => {
                    let errno = (failed & !FAILED) as i32;
                    let os = io::Error::from_raw_os_error(errno);
                    return Err(io::Error::new(
                        os.kind(),
                        format!("the kernel refused the seccomp filter: {os}"),
                    ));
                }
            }
            if inner.done_state() != RUNNING {
                return Ok(());
            }
            if start.elapsed() > ACK_TIMEOUT {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the thread did not install the seal within 5 s (does it block killable's signal?)",
                ));
            }
            let slice = Instant::now() + Duration::from_millis(10);
            futex::wait(
                &ctl.seal,
                REQUESTED,
                Some(&futex::monotonic_timespec(slice)),
            );
        }
    }

    /// Requests the seal and signals the thread, without waiting for its answer.
    pub(crate) fn seal_async(&self) -> io::Result<()> {
        let inner = &*self.inner;
        if inner.done_state() != RUNNING {
            return Ok(());
        }
        let sig = crate::signal::ensure_installed()?;
        // Built here, outside any signal handler, before the request is published.
        program();
        inner.ctl.state.fetch_or(INTERRUPT, Ordering::SeqCst);
        let ctl = &inner.ctl;
        match ctl
            .seal
            .compare_exchange(NONE, REQUESTED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) | Err(REQUESTED) => {}
            Err(SEALED) => return Ok(()),
            Err(_) => {
                // An earlier attempt failed: try again.
                ctl.seal.store(REQUESTED, Ordering::Release);
            }
        }
        send(inner, sig)
    }

    /// Whether the thread has been sealed.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!killable::current().is_sealed());
    /// ```
    pub fn is_sealed(&self) -> bool {
        self.inner.ctl.seal.load(Ordering::Acquire) == SEALED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on (arch, nr) with a minimal interpreter of the opcodes it uses.
    fn run(p: &[libc::sock_filter], arch: u32, nr: u32) -> u32 {
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => acc = if i.k == OFFSET_ARCH { arch } else { nr },
                BPF_JMP_JA => pc += i.k as usize,
                BPF_JMP_JEQ_K => pc += if acc == i.k { i.jt } else { i.jf } as usize,
                BPF_JMP_JGE_K => pc += if acc >= i.k { i.jt } else { i.jf } as usize,
                BPF_RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_filter_denies_exactly_the_sealed_calls() {
        let p = build_program();
        let deny = SECCOMP_RET_ERRNO | libc::ECANCELED as u32;
        for nr in 0..1024u32 {
            let sealed = SEALED_CALLS.contains(&(nr as libc::c_long));
            let want = if sealed { deny } else { SECCOMP_RET_ALLOW };
            assert_eq!(run(&p, AUDIT_ARCH_X86_64, nr), want, "syscall {nr}");
        }
        assert_eq!(
            run(&p, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT),
            SECCOMP_RET_ALLOW
        );
        assert_eq!(
            run(&p, 0x4000_0003, 0),
            SECCOMP_RET_ALLOW,
            "other architectures"
        );
    }

    #[test]
    fn the_search_is_shallow() {
        // Longest path: the prologue, the tree's comparisons, a leaf and a return.
        let p = build_program();
        let longest = (0..512u32)
            .map(|nr| {
                let (mut pc, mut steps) = (0usize, 0);
                loop {
                    let i = p[pc];
                    steps += 1;
                    pc += 1;
                    match i.code {
                        BPF_RET_K => break steps,
                        BPF_JMP_JA => pc += i.k as usize,
                        BPF_JMP_JEQ_K => {
                            pc += if nr == i.k || i.k == AUDIT_ARCH_X86_64 {
                                i.jt
                            } else {
                                i.jf
                            } as usize
                        }
                        BPF_JMP_JGE_K => pc += if nr >= i.k { i.jt } else { i.jf } as usize,
                        _ => {}
                    }
                }
            })
            .max()
            .unwrap();
        assert!(longest <= 16, "longest path {longest} instructions");
    }
}
