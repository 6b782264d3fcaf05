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
//! pointer: one load, no allocation, no lock, so the handler is async-signal-safe. The region
//! is std's (the guard `pthread_getattr_np` reports, on either side of the stack's usable
//! bottom), and only a fault *address* in it is an overflow: a fault without one (an
//! `SI_KERNEL` SIGSEGV such as a general-protection fault) is never taken for an overflow,
//! whatever the stack pointer, and goes to the previous handler like any other fault.
//!
//! killable's interrupt handler runs on the alternate stack too (`signal.rs` says why), so the
//! alternate stacks' first-touch cost must not fall in a stop: each mapping's top pages, where
//! a signal frame and the handlers' frames land, are written when it is mapped
//! (`populate_top`), and mappings are never unmapped but pooled, so a later thread gets one
//! already touched.

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

/// Registers the pool's fork handlers: only `control::register_fork_handlers` calls this.
pub(crate) fn register_fork_handlers() -> Result<(), i32> {
    crate::control::register_atfork(pool_prepare, pool_parent, pool_child)
}

/// Takes a pooled mapping, if there is one.
fn pool_take() -> Option<&'static Node> {
    crate::control::init_fork_handlers();
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
    populate_top(map as usize + page + size);
    Some(Box::leak(Box::new(Node {
        map: map as usize,
        next: AtomicPtr::new(std::ptr::null_mut()),
    })))
}

/// Room for the frames of killable's handlers below the kernel's signal frame: the C entry,
/// the Rust handler and what it calls (the chained handler's own frames are its business).
const HANDLER_FRAMES: usize = 4096;

/// Touches the top of a freshly mapped alternate stack ending at `top`: the pages the kernel's
/// signal frame (`AT_MINSIGSTKSZ`) and the handlers' frames (`HANDLER_FRAMES`) are written to.
///
/// Why here: the interrupt handler runs on the alternate stack (`signal.rs`), and a fresh
/// mapping's pages are only allocated when first written. Left to the first signal, that is a
/// page fault per thread inside a stop (in `shutdown` of a thousand threads, a thousand faults
/// convoying on the address-space lock); here it is paid once per mapping, when a thread
/// starts, since mappings are never unmapped but reused by later threads already touched.
///
/// Why one write per page rather than `madvise(MADV_POPULATE_WRITE)` or `MAP_POPULATE`: the
/// part touched is two or three pages, where a fault each costs about what the system call
/// does (and adds none to spawn); the call needs Linux 5.14 and a fallback before it, and
/// user-mode emulators accept it as a hint and do nothing; `MAP_POPULATE` would populate the
/// whole mapping, its guard page included.
fn populate_top(top: usize) {
    let page = page_size();
    // SAFETY: getauxval has no preconditions; it returns 0 for an unknown entry.
    let frame = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) } as usize;
    let frame = if frame == 0 { libc::MINSIGSTKSZ } else { frame };
    let len = (frame + HANDLER_FRAMES).min(alt_size());
    let mut at = top - page;
    while at >= top - len.next_multiple_of(page) {
        // SAFETY: `at` lies in the usable part of the alternate stack just mapped (readable and
        // writable, not yet installed or shared): writing a zero over a zero page changes
        // nothing but allocates the page.
        unsafe { std::ptr::write_volatile(at as *mut u8, 0) };
        at -= page;
    }
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
/// of `stackblock`, followed by `stackblock_size`, `guardsize` and `reported_guardsize`
/// (learned once; `usize::MAX` when not found, 0 before the first look).
static DESCRIPTOR_OFFSET: AtomicUsize = AtomicUsize::new(0);

/// Records the calling thread's guard region in `inner`, for the overflow report.
///
/// `pthread_getattr_np` is the interface, but glibc's asks the kernel for the thread's CPU
/// affinity (`sched_getaffinity`, into a buffer it allocates) on every call: a system call,
/// and a malloc arena set up in every new thread, for a figure we throw away. So it is called
/// once, and the stack block it reports is located in the thread descriptor (`pthread_self()`,
/// the C library's `struct pthread`); later threads read those four words there, and believe
/// them only if their own stack pointer lies inside the block they describe, with a
/// page-multiple guard, and if the guard is the one `pthread_getattr_np` would report:
/// anything else falls back to `pthread_getattr_np`.
///
/// The last condition matters for a stack glibc reuses from its cache: a thread created with a
/// larger guard (`pthread_attr_setguardsize`) leaves it in place, so the descriptor's
/// `guardsize` (the guard that is there) exceeds `reported_guardsize` (the one asked for,
/// which `pthread_getattr_np` reports and std's report uses). The region is then computed as
/// std computes it, from `pthread_getattr_np`, so that a fault is called an overflow exactly
/// where std would call it one, and nowhere above.
pub(crate) fn record_guard(inner: &Inner) {
    // An address in this frame: on the thread's stack, near its top.
    let probe = 0u8;
    let sp = std::hint::black_box(&raw const probe) as usize;
    let offset = DESCRIPTOR_OFFSET.load(Ordering::Relaxed);
    if offset != 0 && offset != usize::MAX {
        let pd = pthread_self_words();
        // SAFETY: the offset was found inside this C library's thread descriptor, which every
        // thread has, in the readable memory at the top of its stack block.
        let [block, size, guard, reported] = unsafe { pd.add(offset).cast::<[usize; 4]>().read() };
        let page = page_size();
        if block < sp
            && sp - block < size
            && guard >= page
            && guard % page == 0
            && guard < size
            && reported == guard
        {
            store_guard(inner, block + guard, guard);
            return;
        }
    }
    let Some((addr, guard, top)) = getattr() else {
        return;
    };
    store_guard(inner, addr, guard);
    if offset == 0 {
        DESCRIPTOR_OFFSET.store(find_offset(addr, guard, top), Ordering::Relaxed);
    }
}

fn pthread_self_words() -> *const usize {
    // SAFETY: pthread_self has no preconditions; on glibc it is the thread descriptor's address.
    unsafe { libc::pthread_self() as *const usize }
}

/// The word offset in the calling thread's descriptor of `[block, size, guard, reported]`: a
/// stack block that ends at `top`, whose guard ends at `addr`, with `reported` as its reported
/// guard (what `pthread_getattr_np` said). Searched within the stack block (which holds the
/// descriptor at its top); `usize::MAX` if absent.
fn find_offset(addr: usize, reported: usize, top: usize) -> usize {
    let pd = pthread_self_words();
    if (pd as usize) < addr || (pd as usize) >= top {
        return usize::MAX;
    }
    let words = ((top - pd as usize) / std::mem::size_of::<usize>()).min(1024);
    (1..words.saturating_sub(3))
        // SAFETY: `pd + i + 3` lies below the end of this thread's stack block, which is
        // mapped readable and writable (the descriptor and static TLS sit at its top).
        .find(|&i| unsafe {
            let [block, size, guard, rep] = pd.add(i).cast::<[usize; 4]>().read();
            block.wrapping_add(size) == top
                && block.wrapping_add(guard) == addr
                && guard >= reported
                && rep == reported
        })
        .unwrap_or(usize::MAX)
}

/// `pthread_getattr_np` for the calling thread: (lowest usable stack address, reported guard
/// size, the stack's top).
fn getattr() -> Option<(usize, usize, usize)> {
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
    // glibc reports the stack above the guard that is there (which may be larger than the
    // reported one); the block ends at the stack's top.
    let addr = addr as usize;
    Some((addr, guard, addr.wrapping_add(size)))
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

/// Async-signal-safe: reads one thread-local pointer and two atomics, then either aborts or
/// forwards to the previous action.
extern "C" fn overflow_handler(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let me = current_ptr();
    if !me.is_null() {
        // SAFETY: CURRENT points to the live `Inner` of this thread (thread.rs).
        let inner = unsafe { &*me };
        let lo = inner.guard_lo.load(Ordering::Relaxed);
        let hi = inner.guard_hi.load(Ordering::Relaxed);
        if lo <= addr && addr < hi {
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
                        let (addr, guard, _) = getattr().unwrap();
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
