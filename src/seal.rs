//! Sealing: the target's blocking system calls fail with `ECANCELED` from then on.
//!
//! # Internal workings
//!
//! A seccomp filter applies to the thread that installs it (without `TSYNC`), so the target
//! must install it itself: `Thread::seal` marks the request in the target's `Control::seal`
//! word and sends killable's signal; the handler (on the target) sees the request, sets
//! `no_new_privs` for the thread (seccomp's precondition for unprivileged processes) and
//! installs the static BPF program below with two raw system calls (async-signal-safe: no
//! allocation, the program is a `static`), stores the outcome and wakes the sealer if it sleeps
//! (`seal` first waits awake for a while: see there). The signal also breaks the call the
//! target is blocked in (`EINTR`); code that retries it, as std does, now gets `ECANCELED`, an
//! error it does not retry, and unwinds through its own error paths.
//!
//! The request word goes `NONE → REQUESTED → INSTALLING → SEALED` (or `FAILED | errno`, from
//! which a new request starts over). Two calls of `on_signal` can find the same request: the
//! thread's own call as it starts (for a seal requested before it published its id) and a
//! seal signal that lands in the middle of it. Both run on the target, the second nested in
//! the first, so a compare-and-swap `REQUESTED → INSTALLING` lets exactly one of them install
//! the filter; the other returns at once.
//!
//! The filter fails the system calls a thread waits in for an outside event (reads, receives,
//! `sendfile`, accepts, connects, `MSG_FASTOPEN` sends, splices, sleeps, polls, process and
//! signal waits, file-lock waits, SysV, AIO and io_uring submissions and waits, `syslog` reads)
//! and allows everything else, so the thread can still write, unwind, free memory, take locks
//! (`futex` and `futex_waitv` are allowed: a lock must keep working, and std's `Mutex`,
//! `Condvar` and channels cannot report an error), close descriptors, reap its children and
//! exit.
//!
//! Threads the sealed thread creates afterwards inherit the filter (the kernel copies it at
//! `clone`) and the seal state: `Builder::spawn` calls `inherit` before it creates the thread,
//! which marks the new thread `SEALED` when the spawner is, so that `is_sealed` and killable's
//! own waits agree with the kernel from the start. A spawner whose seal is requested but not yet
//! installed (its signal is blocked, or not yet delivered) hands on the request instead: the new
//! thread installs a filter of its own as it starts (a second copy, if the spawner's landed
//! before the `clone`, which changes nothing). One window remains: a seal requested after
//! `inherit`'s check whose signal lands before the `clone` gives the new thread the kernel's
//! filter with the state `NONE` (its killable waits then do not fail by themselves).
//!
//! What the filter relies on, in the order it checks:
//!
//! 1. **The architecture, first.** A system-call number means nothing without its ABI: an
//!    x86_64 process can also enter the kernel through `int $0x80`, where the i386 table
//!    applies (i386 `read` is 3, x86_64's 3 is `close`). Every call whose `arch` is not the
//!    native one (`arch::AUDIT_ARCH`: `AUDIT_ARCH_X86_64`, `AUDIT_ARCH_AARCH64` or
//!    `AUDIT_ARCH_RISCV64`) is denied: a Rust thread makes none, and allowing them would let
//!    any i386 blocking call through. (An aarch64 or riscv64 process has no second ABI; the
//!    check costs one instruction there and keeps the program the same shape.)
//! 2. **The x32 bit** (x86_64 only). x32 calls arrive with the x86_64 `arch` and
//!    `nr | 0x40000000`, and reach the same kernel functions (x32 `read` blocks like `read`)
//!    where the kernel has x32 enabled. Every number with that bit is denied, whatever the rest
//!    of the number says.
//! 3. **The number**, compared with each sealed number in turn (see `build_program` for why a
//!    list and not a search).
//! 4. **One argument**, for the calls whose blocking depends on it (low 32 bits at offset
//!    `16 + 8 * i` of `struct seccomp_data`, little-endian; every argument checked here is an
//!    `int` or `unsigned int` in the kernel, which ignores the upper half): `wait4` and
//!    `waitid` are allowed with `WNOHANG` (`Child::try_wait`), `poll`, `epoll_wait` and
//!    `epoll_pwait` with a zero timeout; `fcntl` is denied only for `F_SETLKW` and
//!    `F_OFD_SETLKW`, `flock` only for `LOCK_SH` or `LOCK_EX` without `LOCK_NB` (`LOCK_UN`
//!    and `LOCK_NB` never wait), `io_uring_enter` only with `IORING_ENTER_GETEVENTS`,
//!    `sendto`, `sendmsg` and `sendmmsg` only with `MSG_FASTOPEN` (which connects an
//!    unconnected TCP socket and waits for the handshake, like the denied `connect`), and
//!    `syslog` only for `SYSLOG_ACTION_READ` (which waits for the next kernel message).
//!
//! The filter sees the call and its arguments, never the descriptor: a read of a non-blocking
//! descriptor is denied like any read. It loses no data: a seccomp `ERRNO` action returns
//! before the system call runs, so the bytes stay for another reader. Timeouts behind a
//! pointer (`ppoll`, `select`, `epoll_pwait2`, `io_getevents`) cannot be read, so those calls
//! are denied whatever their timeout. For the same reason `io_submit` is denied whatever its
//! requests (their opcodes are behind a pointer; an AIO read of a pipe or socket runs inside
//! `io_submit` and waits), and `sendfile` whatever its descriptors (with a socket as input it
//! is a receive that waits and consumes; std's `io::copy` may use it, and on a sealed thread
//! then fails, as a copy through `read` would). Calls that block like writes
//! (`write*`, `send*` without `MSG_FASTOPEN`, `msgsnd`, `mq_timedsend`, `vmsplice`) are
//! allowed: a thread on its way out must be able to write, log and flush.
//!
//! What no filter of numbers and arguments can close: `open` of a FIFO (the file type),
//! `close` of a TCP socket with `SO_LINGER` and unsent data (it waits up to the linger time),
//! a write to a socket connected with `TCP_FASTOPEN_CONNECT` before the seal (its connect was
//! deferred to it: it can wait for the handshake), and any allowed call or instruction that
//! touches memory registered with `userfaultfd` (it waits until the fault's handler resolves
//! it; killable's signal does not end that wait).
//!
//! killable's own waits follow the seal without the filter's help where it does not reach:
//! `sync.rs` fails its futex waits (`park`, `Condvar`, `JoinHandle::wait`) on a sealed thread
//! (`is_sealed`), and turns a sealed `sleep`'s `ECANCELED` into [`Interrupted`]
//! (`interrupted_by_seal`), never into a sleep that did not happen.

use std::io;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::control::{Control, INTERRUPT, Inner, RUNNING};
use crate::errors::Interrupted;
use crate::futex;
use crate::interrupt::send;

const NONE: u32 = 0;
const REQUESTED: u32 = 1;
const SEALED: u32 = 2;
/// The target is installing the filter (it won the `REQUESTED → INSTALLING` exchange).
const INSTALLING: u32 = 3;
/// `FAILED | errno`: the kernel refused the filter.
const FAILED: u32 = 0x1_0000;

/// How long `seal` waits for the target to acknowledge.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `seal` waits for the answer without sleeping (see `seal`).
const SPIN: Duration = Duration::from_micros(100);

/// What the filter does with one sealed system-call number. The first field of a check is the
/// index of the argument tested (its low 32 bits: see the module docs).
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// Always fails.
    Deny,
    /// Allowed when the argument has a bit of the mask (`WNOHANG`), fails otherwise.
    AllowIfAnyBit(u32, u32),
    /// Fails when the argument has a bit of the mask (`IORING_ENTER_GETEVENTS`).
    DenyIfAnyBit(u32, u32),
    /// Allowed when the argument is zero (a zero timeout), fails otherwise.
    AllowIfZero(u32),
    /// Fails when the argument is one of the values (`F_SETLKW`), allowed otherwise.
    DenyIfOneOf(u32, &'static [u32]),
}

const WNOHANG: u32 = libc::WNOHANG as u32;
const IORING_ENTER_GETEVENTS: u32 = 1;
const LOCK_WAITS: &[u32] = &[libc::LOCK_SH as u32, libc::LOCK_EX as u32];
const FCNTL_WAITS: &[u32] = &[libc::F_SETLKW as u32, libc::F_OFD_SETLKW as u32];
/// On an unconnected TCP socket, a send with this flag connects and waits for the handshake.
const MSG_FASTOPEN: u32 = libc::MSG_FASTOPEN as u32;
/// `SYSLOG_ACTION_READ`: waits until the kernel logs a message (and consumes it).
const SYSLOG_WAITS: &[u32] = &[2];

/// The blocking system calls a sealed thread can no longer make, and how. The numbers are
/// libc's for the target; aarch64 and riscv64 share the kernel's generic table, which has no
/// `poll`, `select`, `epoll_wait` or `pause` (their C library calls `ppoll`, `pselect6`,
/// `epoll_pwait` and `ppoll`, sealed here on every architecture).
const SEALED_CALLS: &[(libc::c_long, Rule)] = &[
    (libc::SYS_read, Rule::Deny),
    (libc::SYS_readv, Rule::Deny),
    (libc::SYS_pread64, Rule::Deny),
    (libc::SYS_preadv, Rule::Deny),
    (libc::SYS_preadv2, Rule::Deny),
    (libc::SYS_recvfrom, Rule::Deny),
    (libc::SYS_recvmsg, Rule::Deny),
    (libc::SYS_recvmmsg, Rule::Deny),
    (libc::SYS_accept, Rule::Deny),
    (libc::SYS_accept4, Rule::Deny),
    (libc::SYS_connect, Rule::Deny),
    // sendto(fd, buf, len, flags, addr, addrlen), sendmsg(fd, msg, flags),
    // sendmmsg(fd, msgs, vlen, flags): `MSG_FASTOPEN` is a `connect` (see the constant).
    (libc::SYS_sendto, Rule::DenyIfAnyBit(3, MSG_FASTOPEN)),
    (libc::SYS_sendmsg, Rule::DenyIfAnyBit(2, MSG_FASTOPEN)),
    (libc::SYS_sendmmsg, Rule::DenyIfAnyBit(3, MSG_FASTOPEN)),
    // Reads its input, which may be a socket: a receive (the filter cannot see the type).
    (libc::SYS_sendfile, Rule::Deny),
    (libc::SYS_splice, Rule::Deny),
    (libc::SYS_tee, Rule::Deny),
    (libc::SYS_nanosleep, Rule::Deny),
    (libc::SYS_clock_nanosleep, Rule::Deny),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_poll, Rule::AllowIfZero(2)),
    (libc::SYS_ppoll, Rule::Deny),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_select, Rule::Deny),
    (libc::SYS_pselect6, Rule::Deny),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_epoll_wait, Rule::AllowIfZero(3)),
    (libc::SYS_epoll_pwait, Rule::AllowIfZero(3)),
    (libc::SYS_epoll_pwait2, Rule::Deny),
    (libc::SYS_wait4, Rule::AllowIfAnyBit(2, WNOHANG)),
    (libc::SYS_waitid, Rule::AllowIfAnyBit(3, WNOHANG)),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_pause, Rule::Deny),
    (libc::SYS_rt_sigsuspend, Rule::Deny),
    (libc::SYS_rt_sigtimedwait, Rule::Deny),
    (libc::SYS_msgrcv, Rule::Deny),
    (libc::SYS_semop, Rule::Deny),
    (libc::SYS_semtimedop, Rule::Deny),
    (libc::SYS_io_getevents, Rule::Deny),
    // An AIO read of a pipe or socket runs synchronously inside io_submit, and waits.
    (libc::SYS_io_submit, Rule::Deny),
    #[cfg(target_arch = "x86_64")]
    (333, Rule::Deny), // io_pgetevents (not in libc for x86_64)
    #[cfg(not(target_arch = "x86_64"))]
    (292, Rule::Deny), // io_pgetevents (generic table; not in libc)
    (libc::SYS_mq_timedreceive, Rule::Deny),
    (
        libc::SYS_io_uring_enter,
        Rule::DenyIfAnyBit(3, IORING_ENTER_GETEVENTS),
    ),
    (libc::SYS_fcntl, Rule::DenyIfOneOf(1, FCNTL_WAITS)),
    (libc::SYS_flock, Rule::DenyIfOneOf(1, LOCK_WAITS)),
    // syslog(type, buf, len)
    (libc::SYS_syslog, Rule::DenyIfOneOf(0, SYSLOG_WAITS)),
];

// Classic BPF opcodes and seccomp constants (linux/filter.h, linux/seccomp.h, linux/audit.h).
/// BPF_LD (0x00) | BPF_W (0x00) | BPF_ABS (0x20).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JSET_K: u16 = 0x05 | 0x40;
const BPF_RET_K: u16 = 0x06;
/// BPF_MISC (0x07) | BPF_TAX (0x00): X = A.
const BPF_MISC_TAX: u16 = 0x07;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const SECCOMP_SET_MODE_FILTER: libc::c_long = 1;
/// `struct seccomp_data`: `int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6];`.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
/// The low 32 bits of `args[i]` (little-endian).
const fn offset_arg(i: u32) -> u32 {
    16 + 8 * i
}
/// Where a jump goes, before offsets are resolved.
#[derive(Clone, Copy)]
enum To {
    Next,
    Allow,
    Deny,
    /// The argument check of `SEALED_CALLS[i]`, emitted after the comparisons.
    Check(usize),
}

type Insn = (u16, To, To, u32);

/// Emits one comparison per sealed number (the number is in the accumulator): a match jumps
/// to its target; anything else falls through to the next comparison, and from the last one
/// to `Allow`.
fn emit_list(p: &mut Vec<Insn>, nums: &[(u32, To)]) {
    for (i, &(n, to)) in nums.iter().enumerate() {
        let otherwise = if i + 1 == nums.len() {
            To::Allow
        } else {
            To::Next
        };
        p.push((BPF_JMP_JEQ_K, to, otherwise, n));
    }
}

/// Emits the argument check of `rule` (not `Deny`): it loads the argument and ends in a jump
/// to `Allow` or `Deny`.
fn emit_check(p: &mut Vec<Insn>, rule: Rule) {
    let (arg, tail): (u32, &[Insn]) = match rule {
        Rule::Deny => unreachable!("a plain deny has no check"),
        Rule::AllowIfAnyBit(arg, mask) => (arg, &[(BPF_JMP_JSET_K, To::Allow, To::Deny, mask)]),
        Rule::DenyIfAnyBit(arg, mask) => (arg, &[(BPF_JMP_JSET_K, To::Deny, To::Allow, mask)]),
        Rule::AllowIfZero(arg) => (arg, &[(BPF_JMP_JEQ_K, To::Allow, To::Deny, 0)]),
        Rule::DenyIfOneOf(arg, values) => {
            p.push((BPF_LD_W_ABS, To::Next, To::Next, offset_arg(arg)));
            for (i, &v) in values.iter().enumerate() {
                let otherwise = if i + 1 == values.len() {
                    To::Allow
                } else {
                    To::Next
                };
                p.push((BPF_JMP_JEQ_K, To::Deny, otherwise, v));
            }
            return;
        }
    };
    p.push((BPF_LD_W_ABS, To::Next, To::Next, offset_arg(arg)));
    p.extend_from_slice(tail);
}

/// The filter: `tax; load arch; not native: deny; load nr; x32 bit (x86_64 only): deny;` then
/// one comparison per sealed number, in order; the argument checks (one per distinct rule);
/// `allow`; `deny with ECANCELED`.
///
/// Attaching the filter is most of a seal's latency (the target attaches it before its
/// blocked call can fail), and the program is shaped to make the attach cheap:
///
/// * **`tax` first.** Since Linux 5.11 the attach builds the kernel's action cache: for every
///   system-call number of each architecture it emulates the filter (`seccomp_is_const_allow`
///   in kernel/seccomp.c) to find the numbers it always allows. The emulator knows only loads
///   of the number and architecture, jumps, `and` and returns: at any other instruction it
///   gives up on that number. `tax` (copy the accumulator, 0, to the index register, which the
///   program never reads) is such an instruction, so the emulation stops at the first
///   instruction for every number, and the attach skips the pass (about a third of its cost
///   on the development machine: 34.6 to 24.2 µs). The price is that no call of the sealed
///   thread is cached as allowed: the kernel runs the filter on each of its calls.
/// * **As short as the table allows.** The rest of the attach (copying and checking the
///   program, translating it to eBPF and JIT-compiling it in several passes) costs in
///   proportion to the program's length, about 0.12 µs per instruction on the development
///   machine: 22.2 µs for the 86 instructions of a balanced binary search with leaves of 4,
///   19.5 µs for the 71 of this list, 11.1 µs for a 4-instruction filter (medians of 150
///   attaches in fresh threads). So the numbers are compared one by one, which costs one
///   instruction per number and nothing else (a search adds a comparison per inner node),
///   the last comparison jumps to `allow` itself, and calls with the same argument check
///   share one copy of it.
/// * **The price of the list** is the path: every allowed call of the sealed thread runs the
///   prologue and all the comparisons (see `the_longest_path_is_bounded`). Measured as
///   `getppid` in a loop on a sealed thread against the same thread before its seal, the
///   filter adds 56.8, 64.2 and 63.7 ns per call with the list, 48.5, 57.2 and 59.0 ns with
///   the search (three runs of each, alternated): a few nanoseconds per call of a thread on its
///   way out, against microseconds saved on every seal.
fn build_program() -> Vec<libc::sock_filter> {
    let mut nums: Vec<(u32, To)> = SEALED_CALLS
        .iter()
        .enumerate()
        .map(|(i, &(n, rule))| {
            let to = match rule {
                Rule::Deny => To::Deny,
                _ => To::Check(i),
            };
            (n as u32, to)
        })
        .collect();
    nums.sort_unstable_by_key(|&(n, _)| n);
    assert!(
        nums.windows(2).all(|w| w[0].0 != w[1].0),
        "a number is sealed twice"
    );
    let mut p = vec![
        // First, so that the kernel's action-cache emulation stops at once (see above).
        (BPF_MISC_TAX, To::Next, To::Next, 0),
        (BPF_LD_W_ABS, To::Next, To::Next, OFFSET_ARCH),
        (BPF_JMP_JEQ_K, To::Next, To::Deny, crate::arch::AUDIT_ARCH),
        (BPF_LD_W_ABS, To::Next, To::Next, OFFSET_NR),
        #[cfg(target_arch = "x86_64")]
        (BPF_JMP_JSET_K, To::Deny, To::Next, X32_SYSCALL_BIT),
    ];
    emit_list(&mut p, &nums);
    let mut checks = vec![usize::MAX; SEALED_CALLS.len()];
    for (i, &(_, rule)) in SEALED_CALLS.iter().enumerate() {
        if matches!(rule, Rule::Deny) {
            continue;
        }
        // A call whose check is the same as an earlier call's jumps to that one.
        let same = SEALED_CALLS[..i]
            .iter()
            .position(|&(_, r)| same_check(r, rule));
        if let Some(j) = same {
            checks[i] = checks[j];
        } else {
            checks[i] = p.len();
            emit_check(&mut p, rule);
        }
    }
    let (allow, deny) = (p.len(), p.len() + 1);
    let offset = |from: usize, to: To| -> usize {
        let target = match to {
            To::Next => return 0,
            To::Allow => allow,
            To::Deny => deny,
            To::Check(i) => checks[i],
        };
        assert!(target > from, "BPF jumps only forward");
        target - from - 1
    };
    let mut out: Vec<libc::sock_filter> = p
        .iter()
        .enumerate()
        .map(|(i, &(code, jt, jf, k))| {
            let (jt, jf) = (offset(i, jt), offset(i, jf));
            assert!(jt <= 255 && jf <= 255, "BPF jump out of range");
            insn(code, jt as u8, jf as u8, k)
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

/// Whether two rules emit the same argument check.
fn same_check(a: Rule, b: Rule) -> bool {
    match (a, b) {
        (Rule::AllowIfAnyBit(i, m), Rule::AllowIfAnyBit(j, n))
        | (Rule::DenyIfAnyBit(i, m), Rule::DenyIfAnyBit(j, n)) => i == j && m == n,
        (Rule::AllowIfZero(i), Rule::AllowIfZero(j)) => i == j,
        (Rule::DenyIfOneOf(i, v), Rule::DenyIfOneOf(j, w)) => i == j && v == w,
        _ => false,
    }
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
    // nix's `set_no_new_privs` is the bare `prctl` and an errno read: no allocation, no lock.
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        return e as i32;
    }
    // SAFETY: seccomp is a plain system call (nix has no wrapper); `prog` points to a program of
    // `len` instructions that lives for the whole process and that the kernel copies.
    if unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) } != 0 {
        return Errno::last_raw();
    }
    0
}

/// Called on the target, by the signal handler and by the thread itself as it starts: installs
/// the filter if a seal was requested.
///
/// Idempotent: only the call that wins `REQUESTED → INSTALLING` installs, so the start-up call
/// and a seal signal landing in the middle of it never install the filter twice (module docs).
/// Async-signal-safe: one compare-and-swap, two system calls, a store and a futex wake.
pub(crate) fn on_signal(ctl: &Control) {
    if ctl
        .seal
        .compare_exchange(REQUESTED, INSTALLING, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let r = install_filter();
    ctl.seal.store(
        if r == 0 { SEALED } else { FAILED | r as u32 },
        Ordering::SeqCst,
    );
    // Dekker with `seal`: a sealer counts itself in `seal_waiters` before it reads the word
    // and sleeps, so either it sees the answer stored above, or this load sees it counted. In
    // the common case the sealer has not gone to sleep yet (the signal made this thread
    // preempt it, or it is still on its way to the wait), and the answer costs no system call.
    if ctl.seal_waiters.load(Ordering::SeqCst) != 0 {
        futex::wake(&ctl.seal, i32::MAX);
    }
}

/// Called as the thread ends, once its `done` word says so: a sealer sleeping on the seal word
/// returns now rather than at the end of its 10 ms slice. The fence pairs with the one in
/// `seal`: either the sealer sees the thread ended before it sleeps, or this sees it counted.
pub(crate) fn thread_ended(ctl: &Control) {
    std::sync::atomic::fence(Ordering::SeqCst);
    if ctl.seal_waiters.load(Ordering::SeqCst) != 0 {
        futex::wake(&ctl.seal, i32::MAX);
    }
}

/// In a fork child, for the forking thread: a seal requested of the parent's thread is not the
/// child's (like the signals pending in the parent, which a child does not inherit), and no
/// sealer waits for it here. A thread sealed before the fork stays sealed: the child has its
/// filter.
pub(crate) fn forget_in_child(ctl: &Control) {
    ctl.seal_waiters.store(0, Ordering::Relaxed);
    if matches!(ctl.seal.load(Ordering::Relaxed), REQUESTED | INSTALLING) {
        ctl.seal.store(NONE, Ordering::Relaxed);
    }
}

/// Whether the thread whose control block is `ctl` is sealed. The seal word turns `SEALED` on
/// the thread itself (`on_signal`), or before the thread exists (`inherit`), so for the calling
/// thread's own block this load cannot be stale.
#[inline]
pub(crate) fn is_sealed(ctl: &Control) -> bool {
    ctl.seal.load(Ordering::Acquire) == SEALED
}

/// Hands the calling thread's seal to the thread `Builder::spawn` is about to create, whose
/// control block is `child` (module docs): `SEALED` if the caller is sealed (the new thread gets
/// the kernel's filter at `clone`), `REQUESTED` if the caller's seal is requested but not yet
/// installed (the new thread then installs the filter itself as it starts, in `on_signal`; the
/// program was built before the request was published). Nothing for a thread killable does not
/// know (it cannot have been sealed) or whose seal was never requested or failed.
pub(crate) fn inherit(child: &Control) {
    let me = crate::control::current_ptr();
    if me.is_null() {
        return;
    }
    // SAFETY: CURRENT is non-null only while the calling thread's `Inner` is alive.
    let word = unsafe { &(*me).ctl }.seal.load(Ordering::Acquire);
    match word {
        SEALED => child.seal.store(SEALED, Ordering::Release),
        REQUESTED | INSTALLING => child.seal.store(REQUESTED, Ordering::Release),
        _ => {}
    }
}

/// Whether the calling thread is sealed or its seal is requested: work it hands on (a pool's
/// job) must not escape the stop, as a thread it spawns does not (`inherit`).
pub(crate) fn current_is_sealed_or_requested() -> bool {
    let me = crate::control::current_ptr();
    if me.is_null() {
        return false;
    }
    // SAFETY: CURRENT is non-null only while the calling thread's `Inner` is alive.
    let word = unsafe { &(*me).ctl }.seal.load(Ordering::Acquire);
    matches!(word, SEALED | REQUESTED | INSTALLING)
}

/// The error a sealed thread's killable waits return when the seal, not an interrupt, stops
/// them (after `clear_interrupt`, or for a wait the seal's filter does not reach): a plain
/// interrupt, since a seal is an interrupt that cannot be cleared. It converts to an
/// `io::Error` that `is_interrupt` recognises, as every killable stop does.
#[cold]
pub(crate) fn interrupted_by_seal() -> Interrupted {
    Interrupted::interrupt()
}

pub(crate) fn seal(inner: &Inner) -> io::Result<()> {
    seal_async(inner)?;
    let ctl = &inner.ctl;
    let start = Instant::now();
    // The answer usually comes within tens of microseconds (the attach is most of it). Waiting
    // for it awake spares the target the wake-up of a sleeping sealer, on its path to its
    // failing call: on a virtual machine, waking a thread whose CPU went idle takes a cross-CPU
    // interrupt of 10 µs and more. Only when this thread may run on another CPU than the
    // target's, and for at most `SPIN`: on a CPU it shares with the target, a spinning sealer
    // holds up the target until it gives up. (Not `yield_now`: it hands the CPU to any runnable
    // thread, and the sealer, not counted as a waiter, then waits out that thread's time slice
    // with the answer long there.)
    if several_cpus() {
        while start.elapsed() < SPIN
            && matches!(ctl.seal.load(Ordering::Acquire), REQUESTED | INSTALLING)
        {
            std::hint::spin_loop();
        }
    }
    loop {
        // Counted before the word and the thread's end are read: see `on_signal` and
        // `thread_ended`.
        ctl.seal_waiters.fetch_add(1, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        let word = ctl.seal.load(Ordering::SeqCst);
        let answer = answer(inner, word, start);
        if answer.is_none() {
            let slice = Instant::now() + Duration::from_millis(10);
            futex::wait(
                &ctl.seal,
                word,
                Some(&crate::time::monotonic_timespec(slice)),
            );
        }
        ctl.seal_waiters.fetch_sub(1, Ordering::SeqCst);
        if let Some(answer) = answer {
            return answer;
        }
    }
}

/// Whether the calling thread may run on more than one CPU.
fn several_cpus() -> bool {
    // SAFETY: `sched_getaffinity` writes at most `size_of::<cpu_set_t>()` bytes into the set;
    // `CPU_COUNT` only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0
            && libc::CPU_COUNT(&set) > 1
    }
}

/// What `seal` returns, from the seal word `word` it has just read; `None` while the answer is
/// still to come.
fn answer(inner: &Inner, word: u32, start: Instant) -> Option<io::Result<()>> {
    match word {
        SEALED => return Some(Ok(())),
        REQUESTED | INSTALLING => {}
        // Never requested: the thread had already finished.
        NONE => return Some(Ok(())),
        failed => {
            let errno = (failed & !FAILED) as i32;
            let os = io::Error::from_raw_os_error(errno);
            return Some(Err(io::Error::new(
                os.kind(),
                format!("the kernel refused the seccomp filter: {os}"),
            )));
        }
    }
    if inner.done_state() != RUNNING {
        return Some(Ok(()));
    }
    if start.elapsed() > ACK_TIMEOUT {
        return Some(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the thread did not install the seal within 5 s (does it block killable's signal?)",
        )));
    }
    None
}

/// Requests the seal and signals the thread, without waiting for its answer.
pub(crate) fn seal_async(this: &Inner) -> io::Result<()> {
    let inner = this;
    if inner.done_state() != RUNNING {
        return Ok(());
    }
    let sig = crate::signal::ensure_installed()?;
    // Built here, outside any signal handler, before the request is published.
    program();
    // A seal is also an interrupt: the flag, and the callbacks, as `interrupt()` runs them.
    let (_, callbacks) = inner.ctl.request(INTERRUPT);
    if inner.ctl.unwinding_out.load(Ordering::SeqCst)
        && inner.ctl.seal.load(Ordering::Acquire) == NONE
    {
        // Its closure has returned and it runs its thread-local destructors, where std's calls
        // panic on ECANCELED and a panic aborts the whole process: interrupt only.
        let panic = crate::interrupt::run_callbacks(callbacks);
        let sent = send(inner, sig);
        crate::interrupt::resume(panic);
        return sent;
    }
    let ctl = &inner.ctl;
    let mut word = ctl.seal.load(Ordering::Acquire);
    loop {
        match word {
            SEALED => {
                crate::interrupt::resume(crate::interrupt::run_callbacks(callbacks));
                return Ok(());
            }
            // Already requested: signal again (the thread may not have seen it yet).
            REQUESTED | INSTALLING => break,
            // Never requested, or an earlier attempt failed: request (again). Only from the
            // value seen, so that a request another sealer made, and the thread has taken
            // up since, is never overwritten (which would let it install twice).
            _ => match ctl.seal.compare_exchange(
                word,
                REQUESTED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => word = now,
            },
        }
    }
    // Pairs with the fence in the start routine (spawn.rs): either the thread, once started,
    // sees the request, or `send` below sees its published tid.
    std::sync::atomic::fence(Ordering::SeqCst);
    let panic = crate::interrupt::run_callbacks(callbacks);
    let sent = send(inner, sig);
    crate::interrupt::resume(panic);
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    const DENY: u32 = SECCOMP_RET_ERRNO | libc::ECANCELED as u32;
    const ALLOW: u32 = SECCOMP_RET_ALLOW;
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;
    /// The native ABI's (arch.rs).
    const AUDIT_ARCH_NATIVE: u32 = crate::arch::AUDIT_ARCH;
    /// Whether the x32 bit is denied (x86_64 only).
    const X32: bool = cfg!(target_arch = "x86_64");

    /// `struct seccomp_data` as the kernel lays it out (little-endian on every supported
    /// architecture).
    fn data(arch: u32, nr: u32, args: [u64; 6]) -> [u8; 64] {
        let mut d = [0u8; 64];
        d[0..4].copy_from_slice(&nr.to_le_bytes());
        d[4..8].copy_from_slice(&arch.to_le_bytes());
        d[8..16].copy_from_slice(&0x7f00_dead_beefu64.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        d
    }

    /// Runs the program on `d` with a minimal interpreter of the opcodes it uses (a word load at
    /// an absolute offset, the jumps and a constant return); panics on anything else, and on a
    /// load that is not a whole field of `struct seccomp_data` or the low half of an argument.
    fn run_on(p: &[libc::sock_filter], d: &[u8; 64]) -> u32 {
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => {
                    let k = i.k as usize;
                    assert!(
                        k == 0 || k == 4 || ((16..64).contains(&k) && k.is_multiple_of(8)),
                        "load at offset {k}"
                    );
                    acc = u32::from_le_bytes(d[k..k + 4].try_into().unwrap());
                }
                BPF_MISC_TAX => {}
                BPF_JMP_JEQ_K => pc += if acc == i.k { i.jt } else { i.jf } as usize,
                BPF_JMP_JSET_K => pc += if acc & i.k != 0 { i.jt } else { i.jf } as usize,
                BPF_RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn run(p: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        run_on(p, &data(arch, nr, args))
    }

    /// What the filter should answer, from the table's rules, computed in Rust.
    fn reference(arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        if arch != AUDIT_ARCH_NATIVE || (X32 && nr & X32_SYSCALL_BIT != 0) {
            return DENY;
        }
        let Some(&(_, rule)) = SEALED_CALLS.iter().find(|c| c.0 as u32 == nr) else {
            return ALLOW;
        };
        let low = |i: u32| args[i as usize] as u32;
        let deny = match rule {
            Rule::Deny => true,
            Rule::AllowIfAnyBit(a, m) => low(a) & m == 0,
            Rule::DenyIfAnyBit(a, m) => low(a) & m != 0,
            Rule::AllowIfZero(a) => low(a) != 0,
            Rule::DenyIfOneOf(a, values) => values.contains(&low(a)),
        };
        if deny { DENY } else { ALLOW }
    }

    /// Argument vectors that exercise every rule: zeros, ones, each argument set to each value
    /// a rule tests (with and without the upper half set, which the kernel ignores).
    fn arg_patterns() -> Vec<[u64; 6]> {
        let mut values: Vec<u64> = vec![0, 1, 2, 4, 7, 8, 38, u64::MAX, 1 << 32, 0xffff_ffff];
        for &(_, rule) in SEALED_CALLS {
            match rule {
                Rule::Deny | Rule::AllowIfZero(_) => {}
                Rule::AllowIfAnyBit(_, m) | Rule::DenyIfAnyBit(_, m) => values.push(m.into()),
                Rule::DenyIfOneOf(_, vs) => values.extend(vs.iter().map(|&v| u64::from(v))),
            }
        }
        let mut out = vec![[0; 6], [u64::MAX; 6]];
        for i in 0..6 {
            for &v in &values {
                for high in [0, 0xdead_0000_0000_0000] {
                    let mut a = [0u64; 6];
                    a[i] = v | high;
                    out.push(a);
                }
            }
        }
        out
    }

    #[test]
    fn the_filter_matches_the_table_for_every_number_and_argument() {
        let p = build_program();
        let patterns = arg_patterns();
        let by_argument: Vec<u32> = SEALED_CALLS
            .iter()
            .filter(|c| !matches!(c.1, Rule::Deny))
            .map(|c| c.0 as u32)
            .collect();
        for nr in 0..1024u32 {
            // Every argument pattern for the numbers whose answer depends on one (and their
            // neighbours, which share their leaves); two for the rest.
            let near = by_argument.iter().any(|&n| nr.abs_diff(n) <= 1);
            let some = [[0; 6], [u64::MAX; 6]];
            let args: &[[u64; 6]] = if near { &patterns } else { &some };
            for &args in args {
                for arch in [AUDIT_ARCH_NATIVE, AUDIT_ARCH_I386, 0] {
                    for n in [nr, nr | X32_SYSCALL_BIT] {
                        assert_eq!(
                            run(&p, arch, n, args),
                            reference(arch, n, args),
                            "arch {arch:#x} nr {n:#x} args {args:x?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_filter_denies_exactly_the_sealed_calls() {
        let p = build_program();
        for nr in 0..1024u32 {
            let rule = SEALED_CALLS.iter().find(|c| c.0 as u32 == nr).map(|c| c.1);
            let want = match rule {
                Some(Rule::Deny) => DENY,
                None => ALLOW,
                Some(_) => continue, // by argument: see below
            };
            assert_eq!(run(&p, AUDIT_ARCH_NATIVE, nr, [0; 6]), want, "syscall {nr}");
            assert_eq!(
                run(&p, AUDIT_ARCH_NATIVE, nr, [u64::MAX; 6]),
                want,
                "syscall {nr}"
            );
        }
        let native = |nr: libc::c_long| run(&p, AUDIT_ARCH_NATIVE, nr as u32, [0; 6]);
        for nr in [
            libc::SYS_splice,
            libc::SYS_tee,
            libc::SYS_read,
            libc::SYS_clock_nanosleep,
            libc::SYS_io_submit,
            libc::SYS_sendfile,
        ] {
            assert_eq!(native(nr), DENY, "syscall {nr}");
        }
        // Locks, writes (sends without flags) and the exit path stay allowed.
        for nr in [
            libc::SYS_futex,
            libc::SYS_futex_waitv,
            libc::SYS_write,
            libc::SYS_writev,
            libc::SYS_pwrite64,
            libc::SYS_sendto,
            libc::SYS_sendmsg,
            libc::SYS_sendmmsg,
            libc::SYS_msgsnd,
            libc::SYS_mq_timedsend,
            libc::SYS_vmsplice,
            libc::SYS_close,
            libc::SYS_munmap,
            libc::SYS_exit,
            libc::SYS_exit_group,
            libc::SYS_rt_sigreturn,
        ] {
            assert_eq!(native(nr), ALLOW, "syscall {nr}");
        }
    }

    #[test]
    fn other_abis_are_denied() {
        let p = build_program();
        // i386 through `int $0x80`: read (3) would block; even exit (1) is refused.
        for nr in [0, 1, 3, 4, 162, 1023] {
            assert_eq!(run(&p, AUDIT_ARCH_I386, nr, [0; 6]), DENY, "i386 {nr}");
        }
        // x32: read, write, and numbers the x86_64 table allows.
        #[cfg(target_arch = "x86_64")]
        for nr in [0, 1, 60, 202, 512, 547, 0x3fff_ffff] {
            let x32 = X32_SYSCALL_BIT | nr;
            assert_eq!(run(&p, AUDIT_ARCH_NATIVE, x32, [0; 6]), DENY, "x32 {nr}");
        }
        // -1 has the x32 bit on x86_64; elsewhere it is just out of range (ENOSYS).
        let minus_one = if X32 { DENY } else { ALLOW };
        assert_eq!(
            run(&p, AUDIT_ARCH_NATIVE, u32::MAX, [0; 6]),
            minus_one,
            "nr -1"
        );
        // Out of range without the x32 bit: allowed (the kernel answers ENOSYS).
        assert_eq!(run(&p, AUDIT_ARCH_NATIVE, 0x8000_0000, [0; 6]), ALLOW);
    }

    #[test]
    fn argument_checks() {
        let p = build_program();
        let call = |nr: libc::c_long, i: usize, v: u64| {
            let mut a = [0u64; 6];
            a[i] = v;
            run(&p, AUDIT_ARCH_NATIVE, nr as u32, a)
        };
        let (wnohang, minus_one) = (libc::WNOHANG as u64, u64::MAX);
        // wait4(pid, status, options, rusage): WNOHANG never waits (Child::try_wait).
        assert_eq!(call(libc::SYS_wait4, 2, wnohang), ALLOW);
        assert_eq!(
            call(libc::SYS_wait4, 2, wnohang | libc::WUNTRACED as u64),
            ALLOW
        );
        assert_eq!(call(libc::SYS_wait4, 2, 0), DENY);
        assert_eq!(
            call(libc::SYS_wait4, 2, 1 << 32),
            DENY,
            "the kernel sees options 0"
        );
        assert_eq!(
            call(libc::SYS_wait4, 1, wnohang),
            DENY,
            "WNOHANG in the wrong argument"
        );
        // waitid(idtype, id, info, options, rusage).
        let exited = libc::WEXITED as u64;
        assert_eq!(call(libc::SYS_waitid, 3, exited | wnohang), ALLOW);
        assert_eq!(
            call(libc::SYS_waitid, 3, exited | libc::WNOWAIT as u64),
            DENY
        );
        // poll(fds, nfds, timeout_ms), epoll_wait/epoll_pwait(epfd, events, max, timeout_ms).
        #[cfg(target_arch = "x86_64")]
        assert_eq!(call(libc::SYS_poll, 2, 0), ALLOW);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            call(libc::SYS_poll, 2, 1 << 32),
            ALLOW,
            "the kernel sees timeout 0"
        );
        #[cfg(target_arch = "x86_64")]
        assert_eq!(call(libc::SYS_poll, 2, 10), DENY);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(call(libc::SYS_poll, 2, minus_one), DENY);
        let epoll_waits: &[libc::c_long] = &[
            #[cfg(target_arch = "x86_64")]
            libc::SYS_epoll_wait,
            libc::SYS_epoll_pwait,
        ];
        for &nr in epoll_waits {
            assert_eq!(call(nr, 3, 0), ALLOW, "{nr}");
            assert_eq!(call(nr, 3, 1), DENY, "{nr}");
            assert_eq!(call(nr, 3, minus_one), DENY, "{nr}");
        }
        // Timeouts behind a pointer cannot be read: always denied.
        for nr in [
            libc::SYS_ppoll,
            libc::SYS_epoll_pwait2,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_select,
            libc::SYS_pselect6,
        ] {
            assert_eq!(call(nr, 0, 0), DENY, "{nr}");
        }
        // fcntl(fd, cmd, arg): only the waiting lock commands.
        for cmd in [libc::F_SETLKW, libc::F_OFD_SETLKW] {
            assert_eq!(call(libc::SYS_fcntl, 1, cmd as u64), DENY, "fcntl {cmd}");
        }
        for cmd in [
            libc::F_SETLK,
            libc::F_OFD_SETLK,
            libc::F_GETLK,
            libc::F_GETFL,
            libc::F_SETFL,
            libc::F_DUPFD_CLOEXEC,
            libc::F_SETFD,
        ] {
            assert_eq!(call(libc::SYS_fcntl, 1, cmd as u64), ALLOW, "fcntl {cmd}");
        }
        // flock(fd, op): only a lock that may wait; LOCK_UN and LOCK_NB never wait.
        let (sh, ex, nb, un) = (libc::LOCK_SH, libc::LOCK_EX, libc::LOCK_NB, libc::LOCK_UN);
        for op in [sh, ex] {
            assert_eq!(call(libc::SYS_flock, 1, op as u64), DENY, "flock {op}");
        }
        for op in [sh | nb, ex | nb, un, un | nb] {
            assert_eq!(call(libc::SYS_flock, 1, op as u64), ALLOW, "flock {op}");
        }
        // io_uring_enter(fd, to_submit, min_complete, flags, argp, argsz).
        assert_eq!(call(libc::SYS_io_uring_enter, 3, 0), ALLOW);
        assert_eq!(
            call(libc::SYS_io_uring_enter, 3, 2),
            ALLOW,
            "SQ_WAKEUP only"
        );
        assert_eq!(call(libc::SYS_io_uring_enter, 3, 1), DENY);
        assert_eq!(call(libc::SYS_io_uring_enter, 3, 1 | 2 | 8), DENY);
        // sendto(fd, buf, len, flags, ...), sendmmsg(fd, msgs, vlen, flags), sendmsg(fd, msg,
        // flags): only MSG_FASTOPEN connects.
        let fastopen = libc::MSG_FASTOPEN as u64;
        let others = (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | libc::MSG_MORE) as u64;
        for (nr, flags) in [
            (libc::SYS_sendto, 3),
            (libc::SYS_sendmmsg, 3),
            (libc::SYS_sendmsg, 2),
        ] {
            assert_eq!(call(nr, flags, fastopen), DENY, "{nr}");
            assert_eq!(call(nr, flags, fastopen | others), DENY, "{nr}");
            assert_eq!(call(nr, flags, 0), ALLOW, "{nr}");
            assert_eq!(call(nr, flags, others), ALLOW, "{nr}");
            assert_eq!(
                call(nr, flags, fastopen << 32),
                ALLOW,
                "{nr}: the kernel sees flags 0"
            );
            assert_eq!(
                call(nr, flags - 1, fastopen),
                ALLOW,
                "{nr}: MSG_FASTOPEN in the wrong argument"
            );
        }
        // syslog(type, buf, len): only SYSLOG_ACTION_READ (2) waits; READ_ALL (3), READ_CLEAR
        // (4), SIZE_UNREAD (9) and SIZE_BUFFER (10) return at once.
        assert_eq!(call(libc::SYS_syslog, 0, 2), DENY);
        assert_eq!(
            call(libc::SYS_syslog, 0, 2 | 1 << 32),
            DENY,
            "the kernel sees type 2"
        );
        for t in [0, 1, 3, 4, 5, 6, 7, 8, 9, 10] {
            assert_eq!(call(libc::SYS_syslog, 0, t), ALLOW, "syslog {t}");
        }
        assert_eq!(
            call(libc::SYS_syslog, 1, 2),
            ALLOW,
            "2 in the wrong argument"
        );
    }

    /// The longest path through the program, counting every instruction on it (a walk of the
    /// jump graph, which only goes forward).
    fn longest_path(p: &[libc::sock_filter]) -> usize {
        let mut longest = vec![0usize; p.len()];
        for pc in (0..p.len()).rev() {
            let i = p[pc];
            let next = |off: usize| longest[pc + 1 + off];
            longest[pc] = 1 + match i.code {
                BPF_RET_K => 0,
                BPF_JMP_JEQ_K | BPF_JMP_JSET_K => next(i.jt as usize).max(next(i.jf as usize)),
                _ => next(0),
            };
        }
        longest[0]
    }

    /// The program's instructions, counted from the table: the prologue (`tax`, the
    /// architecture's load and check, the number's load, and on x86_64 the x32 check), one
    /// comparison per number, one copy of each distinct argument check (a load and its
    /// comparisons), and the two returns.
    fn shortest_length() -> usize {
        let prologue = if cfg!(target_arch = "x86_64") { 5 } else { 4 };
        let size = |rule: Rule| match rule {
            Rule::Deny => 0,
            Rule::DenyIfOneOf(_, values) => 1 + values.len(),
            _ => 2,
        };
        let mut checks = 0;
        for (i, &(_, rule)) in SEALED_CALLS.iter().enumerate() {
            if !SEALED_CALLS[..i].iter().any(|&(_, r)| same_check(r, rule)) {
                checks += size(rule);
            }
        }
        prologue + SEALED_CALLS.len() + checks + 2
    }

    #[test]
    fn the_program_is_as_short_as_the_table_allows() {
        // Its length is what a seal's attach costs (see `build_program`): nothing beyond one
        // comparison per number and one copy of each check.
        let p = build_program();
        println!(
            "{} instructions for {} numbers",
            p.len(),
            SEALED_CALLS.len()
        );
        assert_eq!(p.len(), shortest_length());
    }

    #[test]
    fn the_longest_path_is_bounded() {
        // Every call of a sealed thread runs the filter (it is not cached: see
        // `build_program`). The bound: the prologue, every comparison, the longest check
        // (its load and comparisons) and a return.
        let check = |rule: Rule| match rule {
            Rule::Deny => 0,
            Rule::DenyIfOneOf(_, values) => 1 + values.len(),
            _ => 2,
        };
        let checks = SEALED_CALLS.iter().map(|c| check(c.1)).max().unwrap();
        let prologue = if cfg!(target_arch = "x86_64") { 5 } else { 4 };
        let bound = prologue + SEALED_CALLS.len() + checks + 1;
        let longest = longest_path(&build_program());
        println!("longest path {longest} (bound {bound})");
        assert!(longest <= bound, "longest path {longest} > {bound}");
    }

    #[test]
    fn the_filter_starts_where_the_kernel_cache_emulation_gives_up() {
        // `seccomp_is_const_allow` (kernel/seccomp.c) emulates only BPF_LD|BPF_W|BPF_ABS,
        // BPF_JMP (JA, JEQ, JGE, JGT, JSET with K), BPF_ALU|BPF_AND|BPF_K and BPF_RET|BPF_K:
        // the first instruction must be none of these, or every attach pays for the pass.
        let first = build_program()[0];
        assert_eq!(first.code, BPF_MISC_TAX);
        assert!(first.code & 0x07 == 0x07, "a BPF_MISC instruction");
    }

    #[test]
    fn on_signal_installs_once_per_request() {
        // On a thread of its own: the filter stays with the thread, which reports its id and
        // waits (in a futex, which the seal leaves alone) while its filters are counted.
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let h = crate::spawn(move || {
            let me = crate::current();
            let ctl = &me.inner.ctl;
            program();
            // A call that finds the request taken (nested in an installing call) does nothing.
            ctl.seal.store(INSTALLING, Ordering::Release);
            on_signal(ctl);
            assert_eq!(ctl.seal.load(Ordering::Acquire), INSTALLING);
            ctl.seal.store(REQUESTED, Ordering::Release);
            on_signal(ctl);
            on_signal(ctl);
            assert!(is_sealed(ctl));
            tid_tx.send(me.tid()).unwrap();
            let _ = done_rx.recv();
        });
        let tid = tid_rx.recv().unwrap();
        let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
        done_tx.send(()).unwrap();
        h.join().unwrap();
        let filters = status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp_filters:"))
            .map(|v| v.trim().parse::<u32>().unwrap());
        assert!(filters.is_none_or(|n| n == 1), "{filters:?} filters");
    }

    #[test]
    fn the_seal_error_is_a_plain_interrupt() {
        let e = interrupted_by_seal();
        assert!(!e.is_timeout());
        assert!(crate::is_interrupt(&io::Error::from(e)));
    }

    /// A thread forks while a seal of it is requested and a sealer sleeps on it (the state of
    /// a thread that blocks killable's signal, set here by hand). In the fork child, the
    /// forking thread's control block holds neither the parent's sealer count nor its request
    /// (`forget_in_child`).
    #[test]
    fn regression_a_fork_child_keeps_no_sealer_count_and_no_request() {
        let h = crate::spawn(|| {
            let me = crate::control::current_ptr();
            // SAFETY: CURRENT points to this thread's live `Inner`.
            let ctl = unsafe { &(*me).ctl };
            ctl.seal.store(REQUESTED, Ordering::SeqCst);
            ctl.seal_waiters.store(1, Ordering::SeqCst);
            // SAFETY: the child only loads two atomics and calls _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let waiters = ctl.seal_waiters.load(Ordering::SeqCst).min(15);
                let word = ctl.seal.load(Ordering::SeqCst).min(15);
                // SAFETY: leaves the fork child at once.
                unsafe { libc::_exit((waiters | word << 4) as i32) };
            }
            ctl.seal_waiters.store(0, Ordering::SeqCst);
            ctl.seal.store(NONE, Ordering::SeqCst);
            let mut status = 0;
            // SAFETY: waiting for the child forked above.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(libc::WIFEXITED(status), "the fork child died: {status:#x}");
            libc::WEXITSTATUS(status) as u32
        });
        let code = h.join().unwrap();
        assert_eq!(code & 15, 0, "seal_waiters leaked into the fork child");
        assert_eq!(
            code >> 4,
            NONE,
            "the parent's seal request leaked into the fork child"
        );
    }
}
