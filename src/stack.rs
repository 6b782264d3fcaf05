//! Stacks: the size a new thread gets, its alternate signal stack, and the stack-overflow report.
//!
//! # Internal workings
//!
//! A thread that overflows its stack faults on the guard page below it. The fault cannot be
//! handled on the exhausted stack, so every thread killable spawns gets an alternate signal
//! stack (`sigaltstack`), and the process gets a SIGSEGV/SIGBUS handler (installed once, with
//! `SA_ONSTACK`) that checks whether the faulting address lies in the current thread's guard
//! region. If it does, it prints std's message (`thread '<name>' has overflowed its stack`) with
//! `write(2)` and aborts, as std does for its own threads. Any other fault goes to the handler
//! that was installed before ours (std installs one in `main`), or to the default action.
//!
//! The guard region is read from the thread's own `Inner` through the `CURRENT` thread-local
//! pointer: one load, no allocation, no lock, so the handler is async-signal-safe.

use std::io;
use std::os::fd::AsFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use nix::unistd::{SysconfVar, sysconf};

use crate::control::{Inner, current_ptr};
use crate::futex::RawLock;
use crate::signal::action;

pub(crate) const DEFAULT_STACK_SIZE: usize = 2 * 1024 * 1024;

pub(crate) fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let p = PAGE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // Linux always reports a page size; 4096 only keeps the arithmetic sane if it ever did not.
    let p = sysconf(SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as usize);
    PAGE.store(p, Ordering::Relaxed);
    p
}

/// The stack size a thread gets when the builder does not say: `RUST_MIN_STACK`, else 2 MiB.
pub(crate) fn default_stack_size() -> usize {
    static DEFAULT: OnceLock<usize> = OnceLock::new();
    *DEFAULT.get_or_init(|| {
        std::env::var_os("RUST_MIN_STACK")
            .and_then(|s| s.to_str().and_then(|s| s.trim().parse().ok()))
            .unwrap_or(DEFAULT_STACK_SIZE)
    })
}

/// The smallest stack the C library accepts for a thread created with `attr`, thread-local
/// storage included (glibc's `__pthread_get_minstack`, as std uses), else `PTHREAD_STACK_MIN`.
pub(crate) fn min_stack_size(attr: *const libc::pthread_attr_t) -> usize {
    type GetMinStack = unsafe extern "C" fn(*const libc::pthread_attr_t) -> libc::size_t;
    static FN: OnceLock<Option<GetMinStack>> = OnceLock::new();
    let f = FN.get_or_init(|| {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks a symbol up.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__pthread_get_minstack".as_ptr()) };
        // SAFETY: glibc's `__pthread_get_minstack` has exactly this signature.
        (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut libc::c_void, GetMinStack>(p) })
    });
    match f {
        // SAFETY: `attr` is an initialised attribute object (caller's contract, checked below).
        Some(f) => unsafe { f(attr) },
        None => sysconf(SysconfVar::PTHREAD_STACK_MIN)
            .ok()
            .flatten()
            .unwrap_or(0)
            .max(16384) as usize,
    }
}

/// Clamps a requested stack size to `min` and rounds it up to the page size.
pub(crate) fn round_stack_size(requested: usize, min: usize) -> io::Result<usize> {
    let page = page_size();
    requested
        .max(min)
        .checked_add(page - 1)
        .map(|s| s & !(page - 1))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("stack size {requested} is too large: it overflows when rounded to the page size"),
            )
        })
}

/// An alternate signal stack, installed for the calling thread, with a guard page below it.
///
/// Mappings are never unmapped: a finished thread's goes back to a free list, so the pool is
/// as large as the peak number of threads alive at once. An `munmap` per exiting thread takes
/// the address-space lock for writing and costs TLB shootdowns, which convoy when a thousand
/// threads exit at once (`shutdown`); a bounded pool only moves the convoy past its size, and
/// scanning a pool's slots for a free one costs the exiting thread more than it saves.
pub(crate) struct AltStack {
    node: &'static Node,
}

/// One mapping, for the life of the process (the free list links them).
struct Node {
    map: usize,
    next: AtomicPtr<Node>,
}

/// The free list: a stack of `Node`s. Pushes (exiting threads, joiners) are lock-free, so a
/// thousand threads exiting at once never convoy on it. Pops take `POP`: with one popper at a
/// time the list has no ABA problem (a node can only leave the list through the popper, so the
/// head a popper read cannot leave and come back before its compare-and-swap), and a node's
/// `next` is only written while the node is off the list. `POP` is held across `fork` (see
/// `pool_take`), so a child never inherits it locked.
static FREE: AtomicPtr<Node> = AtomicPtr::new(std::ptr::null_mut());
static POP: RawLock = RawLock::new();

extern "C" fn pool_prepare() {
    POP.lock();
}

extern "C" fn pool_parent() {
    POP.unlock();
}

extern "C" fn pool_child() {
    POP.reset_in_child();
}

/// Takes a pooled mapping, if there is one.
fn pool_take() -> Option<&'static Node> {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| crate::control::register_atfork(pool_prepare, pool_parent, pool_child));
    let _pop = POP.guard();
    let mut head = FREE.load(Ordering::Acquire);
    loop {
        // SAFETY: nodes are leaked, never freed: any pointer read from the list stays valid.
        let node = unsafe { head.as_ref() }?;
        let next = node.next.load(Ordering::Relaxed);
        match FREE.compare_exchange_weak(head, next, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => return Some(node),
            Err(h) => head = h,
        }
    }
}

/// Gives a mapping back to the pool (lock-free).
fn pool_give(node: &'static Node) {
    let ptr = node as *const Node as *mut Node;
    let mut head = FREE.load(Ordering::Relaxed);
    loop {
        node.next.store(head, Ordering::Relaxed);
        match FREE.compare_exchange_weak(head, ptr, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return,
            Err(h) => head = h,
        }
    }
}

/// The usable size of an alternate stack (after its guard page), fixed for the process.
fn alt_size() -> usize {
    static SIZE: AtomicUsize = AtomicUsize::new(0);
    let s = SIZE.load(Ordering::Relaxed);
    if s != 0 {
        return s;
    }
    let page = page_size();
    // SAFETY: getauxval has no preconditions; it returns 0 for an unknown entry.
    let min = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) } as usize;
    let size = (min.max(libc::SIGSTKSZ) + page - 1) & !(page - 1);
    SIZE.store(size, Ordering::Relaxed);
    size
}

/// Maps a new alternate stack with its guard page.
fn map_new() -> Option<&'static Node> {
    let page = page_size();
    let size = alt_size();
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size + page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: the first page lies inside the mapping we own.
    if unsafe { libc::mprotect(map, page, libc::PROT_NONE) } != 0 {
        // SAFETY: unmapping the mapping we just made.
        unsafe { libc::munmap(map, size + page) };
        return None;
    }
    Some(Box::leak(Box::new(Node {
        map: map as usize,
        next: AtomicPtr::new(std::ptr::null_mut()),
    })))
}

impl AltStack {
    /// Installs an alternate signal stack for the calling thread (from the pool, or freshly
    /// mapped). `None` if the system refused (the thread then runs without one; only the
    /// overflow report is lost).
    pub(crate) fn install() -> Option<AltStack> {
        let node = pool_take().or_else(map_new)?;
        let ss = libc::stack_t {
            ss_sp: (node.map + page_size()) as *mut libc::c_void,
            ss_flags: 0,
            ss_size: alt_size(),
        };
        // SAFETY: `ss` describes memory we own for as long as the AltStack lives; it is only
        // given back to the pool once no handler can run on it any more (`release`).
        if unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) } != 0 {
            pool_give(node);
            return None;
        }
        Some(AltStack { node })
    }

    /// The thread that installed it is ending: gives the mapping back, or leaves it to a
    /// joiner already waiting in `JoinHandle::join` (see `claim_for_join`).
    ///
    /// A mapping still installed as this thread's alternate stack must not be reused while
    /// the thread can still take a signal: the rest of its exit runs `pthread_key`
    /// destructors and the C library's clean-up, and a handler installed with `SA_ONSTACK`
    /// would run on it. So either the thread disables it first (one `sigaltstack`), or a
    /// joiner gives it back once `pthread_join` has returned, when the thread no longer exists
    /// and the kernel has forgotten its alternate stack: the common spawn-then-join saves a
    /// system call.
    pub(crate) fn release(self, inner: &Inner) {
        let node = self.node;
        inner
            .alt_stack
            .store(node as *const Node as usize, Ordering::Relaxed);
        // AcqRel: pairs with the joiner's `fetch_or` (the node is published with it).
        if inner.alt_state.fetch_or(ALT_EXITING, Ordering::AcqRel) & ALT_JOINING != 0 {
            return;
        }
        let ss = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disabling the alternate stack first means no handler can run on the memory
        // once it is reused (we are not in a handler: this runs in the exit guard).
        unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) };
        pool_give(node);
    }
}

/// `Inner::alt_state`: a joiner is committed to `pthread_join` the thread.
const ALT_JOINING: u32 = 1;
/// `Inner::alt_state`: the thread has reached its end (`AltStack::release`).
const ALT_EXITING: u32 = 2;

/// Called by `JoinHandle::join` before it joins: if the thread has not reached its end yet,
/// it will leave its alternate stack to this joiner, which must then call `joined` once
/// `pthread_join` has returned. Returns whether it did.
pub(crate) fn claim_for_join(inner: &Inner) -> bool {
    inner.alt_state.fetch_or(ALT_JOINING, Ordering::AcqRel) & ALT_EXITING == 0
}

/// After `pthread_join` returned for a thread claimed with `claim_for_join`: the thread no
/// longer exists, so its alternate stack (if it had one) goes back to the pool.
pub(crate) fn joined(inner: &Inner) {
    let node = inner.alt_stack.load(Ordering::Relaxed) as *const Node;
    // SAFETY: a node pointer stored by `AltStack::release`; nodes are never freed. The join
    // synchronizes with the thread's end, so the store is visible.
    if let Some(node) = unsafe { node.as_ref() } {
        pool_give(node);
    }
}

/// Where the C library keeps a thread's stack block in its thread descriptor: the word offset
/// of `stackblock`, followed by `stackblock_size` and `guardsize` (learned once; `usize::MAX`
/// when not found, 0 before the first look).
static DESCRIPTOR_OFFSET: AtomicUsize = AtomicUsize::new(0);

/// Records the calling thread's guard region in `inner`, for the overflow report.
///
/// `pthread_getattr_np` is the interface, but glibc's asks the kernel for the thread's CPU
/// affinity (`sched_getaffinity`, into a buffer it allocates) on every call: a system call,
/// and a malloc arena set up in every new thread, for a figure we throw away. So it is called
/// once, and the stack block it reports is located in the thread descriptor (`pthread_self()`,
/// the C library's `struct pthread`); later threads read those three words there, and believe
/// them only if their own stack pointer lies inside the block they describe, with a
/// page-multiple guard: anything else falls back to `pthread_getattr_np`.
pub(crate) fn record_guard(inner: &Inner) {
    // An address in this frame: on the thread's stack, near its top.
    let probe = 0u8;
    let sp = std::hint::black_box(&raw const probe) as usize;
    let offset = DESCRIPTOR_OFFSET.load(Ordering::Relaxed);
    if offset != 0 && offset != usize::MAX {
        let pd = pthread_self_words();
        // SAFETY: the offset was found inside this C library's thread descriptor, which every
        // thread has, in the readable memory at the top of its stack block.
        let (block, size, guard) = unsafe {
            (
                pd.add(offset).read(),
                pd.add(offset + 1).read(),
                pd.add(offset + 2).read(),
            )
        };
        let page = page_size();
        if block < sp && sp - block < size && guard >= page && guard % page == 0 && guard < size {
            store_guard(inner, block + guard, guard);
            return;
        }
    }
    let Some((addr, guard, block, size)) = getattr() else {
        return;
    };
    store_guard(inner, addr, guard);
    if offset == 0 {
        DESCRIPTOR_OFFSET.store(find_offset(block, size, guard), Ordering::Relaxed);
    }
}

fn pthread_self_words() -> *const usize {
    // SAFETY: pthread_self has no preconditions; on glibc it is the thread descriptor's address.
    unsafe { libc::pthread_self() as *const usize }
}

/// The word offset of `[block, size, guard]` in the calling thread's descriptor, searched
/// within the stack block (which holds the descriptor at its top); `usize::MAX` if absent.
fn find_offset(block: usize, size: usize, guard: usize) -> usize {
    let pd = pthread_self_words();
    let end = block.wrapping_add(size);
    if (pd as usize) < block || (pd as usize) >= end {
        return usize::MAX;
    }
    let words = ((end - pd as usize) / std::mem::size_of::<usize>()).min(1024);
    (1..words.saturating_sub(2))
        // SAFETY: `pd + i + 2` lies below the end of this thread's stack block, which is
        // mapped readable and writable (the descriptor and static TLS sit at its top).
        .find(|&i| unsafe {
            pd.add(i).read() == block
                && pd.add(i + 1).read() == size
                && pd.add(i + 2).read() == guard
        })
        .unwrap_or(usize::MAX)
}

/// `pthread_getattr_np` for the calling thread: (stack address, guard size, block, block size).
fn getattr() -> Option<(usize, usize, usize, usize)> {
    // SAFETY: pthread_attr_t is plain data, initialised by pthread_getattr_np below.
    let mut attr: libc::pthread_attr_t = unsafe { std::mem::zeroed() };
    // SAFETY: `attr` is writable; pthread_self is always valid for the calling thread.
    if unsafe { libc::pthread_getattr_np(libc::pthread_self(), &mut attr) } != 0 {
        return None;
    }
    let mut addr = std::ptr::null_mut();
    let mut size = 0;
    let mut guard = 0;
    // SAFETY: `attr` was initialised by pthread_getattr_np and is destroyed once, here.
    unsafe {
        libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_getguardsize(&attr, &mut guard);
        libc::pthread_attr_destroy(&mut attr);
    }
    // glibc reports the stack above the guard: the block starts `guard` bytes lower.
    let addr = addr as usize;
    Some((addr, guard, addr.wrapping_sub(guard), size + guard))
}

fn store_guard(inner: &Inner, addr: usize, guard: usize) {
    let guard = guard.max(page_size());
    // glibc has placed the guard both below and at the bottom of the reported stack across
    // versions; like std, treat a page-sized region on either side as the guard.
    inner
        .guard_lo
        .store(addr.saturating_sub(guard), Ordering::Relaxed);
    inner.guard_hi.store(addr + guard, Ordering::Relaxed);
}

static PREV_SEGV: OnceLock<libc::sigaction> = OnceLock::new();
static PREV_BUS: OnceLock<libc::sigaction> = OnceLock::new();

/// Installs the SIGSEGV/SIGBUS handler that reports stack overflows, once per process.
pub(crate) fn install_overflow_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (sig, prev) in [(libc::SIGSEGV, &PREV_SEGV), (libc::SIGBUS, &PREV_BUS)] {
            let mut old = action(libc::SIG_DFL, 0);
            // SAFETY: only queries the current action into `old`, a valid, writable sigaction.
            unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
            // The previous action is published before our handler can run, so the handler
            // never sees it missing.
            let _ = prev.set(old);
            let new = action(
                overflow_handler as *const () as usize,
                libc::SA_SIGINFO | libc::SA_ONSTACK,
            );
            // SAFETY: `new` is fully initialised and names `overflow_handler`, which has the
            // three-argument SA_SIGINFO signature and is async-signal-safe.
            unsafe { libc::sigaction(sig, &new, std::ptr::null_mut()) };
        }
    });
}

/// Formats a non-negative number without allocating (for signal handlers).
fn format_decimal(n: i32, buf: &mut [u8; 12]) -> &[u8] {
    let mut n = n.max(0) as u32;
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Async-signal-safe: `io::stderr()` returns a handle to a static (no allocation), its
/// `as_fd` borrows descriptor 2 without taking the handle's lock, and nix's `write` is the one
/// system call. A short or failed write is ignored on this path.
fn write_stderr(bytes: &[u8]) {
    let _ = nix::unistd::write(io::stderr().as_fd(), bytes);
}

/// Whether this SIGSEGV is the kernel's answer to a signal whose frame did not fit on the
/// thread's stack: `SI_KERNEL` (no faulting address), with the interrupted stack pointer less
/// than a signal frame above the guard. Handlers without `SA_ONSTACK` (killable's interrupt
/// handler among them: see `signal.rs`) put their frame on the thread's own stack, so a signal
/// that reaches a thread whose stack is all but exhausted overflows it there: that is a stack
/// overflow, and it is reported as one rather than left to vanish. Async-signal-safe.
fn frame_did_not_fit(code: libc::c_int, ctx: *mut libc::c_void, lo: usize, hi: usize) -> bool {
    if code != libc::SI_KERNEL || hi == 0 {
        return false;
    }
    // SAFETY: for an SA_SIGINFO handler `ctx` is the interrupted context, written by the kernel.
    let sp = unsafe { (*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_RSP as usize] }
        as usize;
    // The largest frame the kernel writes fits the alternate stack's size (at least
    // AT_MINSIGSTKSZ), plus the 128-byte red zone it skips.
    lo <= sp && sp < hi + alt_size() + 128
}

/// Async-signal-safe: reads one thread-local pointer and two atomics, then either aborts or
/// forwards to the previous action.
extern "C" fn overflow_handler(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let (addr, code) = unsafe { ((*info).si_addr() as usize, (*info).si_code) };
    let me = current_ptr();
    if !me.is_null() {
        // SAFETY: CURRENT points to the live `Inner` of this thread (thread.rs).
        let inner = unsafe { &*me };
        let lo = inner.guard_lo.load(Ordering::Relaxed);
        let hi = inner.guard_hi.load(Ordering::Relaxed);
        if (lo <= addr && addr < hi) || frame_did_not_fit(code, ctx, lo, hi) {
            let name = inner
                .name
                .as_ref()
                .map_or(&b"<unnamed>"[..], |n| n.to_bytes());
            let mut digits = [0u8; 12];
            let tid = format_decimal(inner.tid.load(Ordering::Relaxed), &mut digits);
            write_stderr(b"\nthread '");
            write_stderr(name);
            write_stderr(b"' (");
            write_stderr(tid);
            write_stderr(
                b") has overflowed its stack\nfatal runtime error: stack overflow, aborting\n",
            );
            // std's abort is the C library's `abort`, which is async-signal-safe.
            std::process::abort();
        }
    }
    let prev = if sig == libc::SIGSEGV {
        PREV_SEGV.get()
    } else {
        PREV_BUS.get()
    };
    if !prev.is_some_and(|p| crate::signal::call_previous(p, sig, info, ctx)) {
        // Restore the default action and return: the faulting instruction runs again and the
        // process dies of the signal, as it would have without us.
        let dfl = action(libc::SIG_DFL, 0);
        // SAFETY: `dfl` is fully initialised (the default action); sigaction(2) is
        // async-signal-safe.
        unsafe { libc::sigaction(sig, &dfl, std::ptr::null_mut()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guard read from the thread descriptor (every thread after the first) is the one
    /// `pthread_getattr_np` reports, for several stack sizes (and so several cached blocks).
    #[test]
    fn the_guard_from_the_descriptor_is_pthread_getattr_np_s() {
        for size in [64 * 1024, 256 * 1024, 2 * 1024 * 1024, 64 * 1024] {
            for _ in 0..3 {
                crate::Builder::new()
                    .stack_size(size)
                    .spawn(|| {
                        let me = crate::current();
                        let (addr, guard, _, _) = getattr().unwrap();
                        let g = guard.max(page_size());
                        assert_eq!(me.inner.guard_lo.load(Ordering::Relaxed), addr - g);
                        assert_eq!(me.inner.guard_hi.load(Ordering::Relaxed), addr + g);
                    })
                    .unwrap()
                    .join()
                    .unwrap();
            }
        }
        let offset = DESCRIPTOR_OFFSET.load(Ordering::Relaxed);
        assert!(offset != 0 && offset != usize::MAX, "offset {offset}");
    }

    /// A joined thread's alternate stack goes back to the pool, whichever side gives it back.
    #[test]
    fn alternate_stacks_are_reused() {
        let map = || {
            let mut ss = empty_stack();
            // SAFETY: only queries the calling thread's alternate stack into `ss`.
            unsafe { libc::sigaltstack(std::ptr::null(), &mut ss) };
            ss.ss_sp as usize
        };
        let first = crate::spawn(map).join().unwrap();
        assert_ne!(first, 0);
        // The pool is shared with the other tests of this binary: look for reuse over a few.
        let again: Vec<usize> = (0..50).map(|_| crate::spawn(map).join().unwrap()).collect();
        assert!(again.iter().all(|&m| m != 0));
        let distinct: std::collections::HashSet<_> = again.iter().collect();
        assert!(
            distinct.len() < again.len(),
            "no mapping was reused: {again:x?}"
        );
    }

    fn empty_stack() -> libc::stack_t {
        libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: 0,
            ss_size: 0,
        }
    }
}
