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
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::unistd::{SysconfVar, sysconf};

use crate::control::{Inner, current_ptr, gettid};
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
/// Finished threads give their mapping back to a small pool instead of unmapping it: an
/// `munmap` per thread exit (and the TLB shootdowns it costs) is a large share of the work of
/// stopping a thousand threads at once, and a new thread then saves the `mmap` and `mprotect`.
pub(crate) struct AltStack {
    map: usize,
}

/// Mappings kept for reuse: each slot holds one mapping's address, or 0. Lock-free (a thousand
/// threads may exit at once, and a lock would convoy them), free of ABA (each slot is taken or
/// filled with one atomic operation), and consistent in a fork child by construction.
static POOL: [AtomicUsize; POOL_SLOTS] = [const { AtomicUsize::new(0) }; POOL_SLOTS];
const POOL_SLOTS: usize = 256;

/// Takes a pooled mapping, scanning from `hint`.
fn pool_take(hint: usize) -> Option<usize> {
    (0..POOL_SLOTS)
        .map(|i| &POOL[(hint + i) % POOL_SLOTS])
        .find_map(|slot| {
            if slot.load(Ordering::Relaxed) == 0 {
                return None;
            }
            let map = slot.swap(0, Ordering::Acquire);
            (map != 0).then_some(map)
        })
}

/// Gives a mapping to the pool; `false` if the pool is full.
fn pool_give(map: usize, hint: usize) -> bool {
    (0..POOL_SLOTS)
        .map(|i| &POOL[(hint + i) % POOL_SLOTS])
        .any(|slot| {
            slot.load(Ordering::Relaxed) == 0
                && slot
                    .compare_exchange(0, map, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
        })
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

impl AltStack {
    /// Installs an alternate signal stack for the calling thread (from the pool, or freshly
    /// mapped). `None` if the system refused (the thread then runs without one; only the
    /// overflow report is lost).
    pub(crate) fn install() -> Option<AltStack> {
        let page = page_size();
        let size = alt_size();
        let hint = gettid() as usize;
        let map = match pool_take(hint) {
            Some(map) => map,
            None => {
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
                map as usize
            }
        };
        let stack = AltStack { map };
        let ss = libc::stack_t {
            ss_sp: (map + page) as *mut libc::c_void,
            ss_flags: 0,
            ss_size: size,
        };
        // SAFETY: `ss` describes memory we own for as long as the AltStack lives; Drop
        // disables it before the memory is reused or unmapped.
        if unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) } != 0 {
            return None;
        }
        Some(stack)
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let ss = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disabling the alternate stack first means no handler can run on the memory
        // once it is reused or unmapped (we are not in a handler: this runs in the start
        // routine).
        unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) };
        let map = self.map;
        if !pool_give(map, map / page_size()) {
            // SAFETY: the mapping is ours and no longer installed.
            unsafe { libc::munmap(map as *mut libc::c_void, alt_size() + page_size()) };
        }
    }
}

/// Records the calling thread's guard region in `inner`, for the overflow report.
pub(crate) fn record_guard(inner: &Inner) {
    // SAFETY: pthread_attr_t is plain data, initialised by pthread_getattr_np below.
    let mut attr: libc::pthread_attr_t = unsafe { std::mem::zeroed() };
    // SAFETY: `attr` is writable; pthread_self is always valid for the calling thread.
    if unsafe { libc::pthread_getattr_np(libc::pthread_self(), &mut attr) } != 0 {
        return;
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
    let guard = guard.max(page_size());
    // glibc has placed the guard both below and at the bottom of the reported stack across
    // versions; like std, treat a page-sized region on either side as the guard.
    inner
        .guard_lo
        .store((addr as usize).saturating_sub(guard), Ordering::Relaxed);
    inner
        .guard_hi
        .store(addr as usize + guard, Ordering::Relaxed);
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
