//! Regressions of the mass-stop work (issue 10): the interrupt handler must run on the
//! alternate stack, a fault that is not an overflow must reach the application's handler, and
//! the guard region must be std's, also on a stack glibc reuses with a larger guard.
//!
//! Every test runs its body in a child process (testkit's `in_child`, or a child run by hand
//! where the expected outcome is a death by signal): the defects these tests guard against end
//! the process or change process-wide signal dispositions.
//!
//! * `regression_interrupt_*`: a thread that uses its stack down to a few KB above the guard,
//!   without overflowing, takes an interrupt (on its alternate stack) and sees it; the signal
//!   frame does not fit on what is left of its own stack.
//! * `regression_gp_fault_*`, `regression_chained_sigsegv_*` (x86_64): a general-protection
//!   fault (`SI_KERNEL` SIGSEGV, no address) near the bottom of the stack is not an overflow:
//!   the process dies of SIGSEGV, or the SIGSEGV handler installed before killable's recovers.
//! * `regression_chained_handler_*`, `regression_interrupt_of_an_adopted_thread_*`: a handler
//!   chained from killable's keeps the alternate stack it asked for, and SIGSEGV stays armed.
//! * `regression_cached_stack_*`: the guard of a stack glibc reuses from a thread with a larger
//!   guard is the one `pthread_getattr_np` reports, as std's overflow report uses it.
//! * `regression_fresh_alternate_stacks_*`: the pages a signal frame lands on in a fresh
//!   alternate stack are touched when the thread starts, not by its first signal.

use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Recurses until less than `left` bytes of stack are left below the current frame, then
/// runs `at_depth` there.
#[inline(never)]
fn descend<R>(low: usize, left: usize, at_depth: &mut dyn FnMut() -> R) -> R {
    let buf = [0u8; 64];
    let sp = std::hint::black_box(&buf).as_ptr() as usize;
    if sp - low > left {
        let r = descend(low, left, at_depth);
        std::hint::black_box(&buf);
        return r;
    }
    at_depth()
}

/// The action installed for `sig`.
fn action(sig: libc::c_int) -> libc::sigaction {
    // SAFETY: only queries the current action into a zeroed, writable sigaction.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut sa);
        sa
    }
}

fn segv_disposition() -> &'static str {
    if action(libc::SIGSEGV).sa_sigaction == libc::SIG_DFL {
        "SIG_DFL"
    } else {
        "handled"
    }
}

// ---------------------------------------------------------------------------------------------
// An interrupt reaches a thread with a few KB of stack left.

static READY: AtomicBool = AtomicBool::new(false);
static RELEASE: AtomicBool = AtomicBool::new(false);

fn interrupt_at_depth(left: usize, blocked: bool) {
    // A first thread, as a program would have (the next one reads its guard from the
    // descriptor).
    killable::spawn(|| ()).join().unwrap();
    let h = killable::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            descend(testkit::stack_low(), left, &mut || {
                READY.store(true, Ordering::SeqCst);
                if blocked {
                    killable::sleep(Duration::from_secs(30))
                } else {
                    // Computing at this depth until the signal has been delivered here.
                    while !RELEASE.load(Ordering::SeqCst) {
                        std::hint::spin_loop();
                    }
                    killable::check()
                }
            })
        })
        .unwrap();
    while !READY.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    if blocked {
        testkit::wait_blocked(h.thread());
    }
    h.interrupt();
    // The signal was queued before `interrupt` returned; once it is no longer pending, it was
    // delivered (or, had its frame not fit, the process died of it).
    testkit::wait_until(Duration::from_secs(10), "the signal delivered", || {
        !testkit::signal_pending(h.thread().tid(), libc::SIGUSR1)
    });
    RELEASE.store(true, Ordering::SeqCst);
    let r = h.join().expect("the thread does not panic");
    let e = std::io::Error::from(r.expect_err("the interrupt was seen"));
    assert!(killable::is_interrupt(&e), "{e:?}");
    println!("interrupted cleanly with {left} bytes of stack left");
}

/// A thread computing with 2 KB of stack left (it never overflows) is interrupted: it sees the
/// interrupt. With the handler on the thread's own stack, the process aborted with "has
/// overflowed its stack".
#[test]
fn regression_interrupt_of_a_thread_computing_with_2k_of_stack_left() {
    testkit::in_child(
        "regression_interrupt_of_a_thread_computing_with_2k_of_stack_left",
        Duration::from_secs(20),
        || interrupt_at_depth(2048, false),
    );
}

/// A thread blocked in `killable::sleep` with 3 KB of stack left below the caller of `sleep`
/// (the sleep itself fits) is interrupted: `sleep` returns the interrupt.
#[test]
fn regression_interrupt_of_a_thread_sleeping_with_3k_of_stack_left() {
    testkit::in_child(
        "regression_interrupt_of_a_thread_sleeping_with_3k_of_stack_left",
        Duration::from_secs(20),
        || interrupt_at_depth(3072, true),
    );
}

// ---------------------------------------------------------------------------------------------
// A general-protection fault near the stack's bottom is not a stack overflow (x86_64: a load
// from a non-canonical address is the way to get an `SI_KERNEL` SIGSEGV from user code).

#[cfg(target_arch = "x86_64")]
mod gp {
    use super::*;

    /// Where the faulting load resumes when a handler recovers it (0: no recovery armed).
    static RECOVER: AtomicUsize = AtomicUsize::new(0);
    pub static RECOVERED: AtomicUsize = AtomicUsize::new(0);

    /// Loads from a non-canonical address: a #GP, delivered as SIGSEGV with
    /// `si_code == SI_KERNEL` and no address. Returns only if a handler moved the program
    /// counter to the label after it.
    pub fn gp_fault() {
        // SAFETY: the load faults; it returns only through `recovering_handler`, which resumes
        // at label 2 (after the load) with every register as it was.
        unsafe {
            std::arch::asm!(
                "lea {tmp}, [rip + 2f]",
                "mov qword ptr [{slot}], {tmp}",
                "mov {tmp}, {bad}",
                "mov {tmp}, qword ptr [{tmp}]",
                "2:",
                slot = in(reg) RECOVER.as_ptr(),
                bad = in(reg) 0x8000_0000_0000_0000u64,
                tmp = out(reg) _,
            );
        }
    }

    /// A SIGSEGV handler of the application (a runtime that recovers from its own faults),
    /// installed before killable's: it resumes the faulting load of `gp_fault`.
    extern "C" fn recovering_handler(
        _sig: libc::c_int,
        info: *mut libc::siginfo_t,
        ctx: *mut libc::c_void,
    ) {
        // SAFETY: SA_SIGINFO handler: valid siginfo and ucontext.
        unsafe {
            let to = RECOVER.swap(0, Ordering::SeqCst);
            if (*info).si_code == libc::SI_KERNEL && to != 0 {
                let uc = ctx.cast::<libc::ucontext_t>();
                (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] = to as i64;
                RECOVERED.fetch_add(1, Ordering::SeqCst);
                return;
            }
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGSEGV, &dfl, std::ptr::null_mut());
        }
    }

    pub fn install_recovering_handler() {
        // SAFETY: installs an SA_SIGINFO handler with the three-argument signature.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = recovering_handler as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut()), 0);
        }
    }

    /// Spawns a killable thread with the default stack that faults (`gp_fault`) with `left`
    /// bytes of stack left.
    pub fn fault_at_depth(left: usize) {
        killable::Builder::new()
            .name("faulty".into())
            .spawn(move || descend(testkit::stack_low(), left, &mut gp_fault))
            .unwrap()
            .join()
            .unwrap();
    }
}

/// Set in the child of `regression_gp_fault_*` to the stack left (bytes) when it faults.
#[cfg(target_arch = "x86_64")]
const FAULT_LEFT: &str = "REGRESSION_PERF_FAULT_LEFT";

/// A killable thread with 8 KB of stack left dereferences a non-canonical pointer (a bug, not
/// an overflow). As with more stack left (and as for std's threads), the process dies of
/// SIGSEGV; it used to abort with "thread 'faulty' (..) has overflowed its stack".
#[cfg(target_arch = "x86_64")]
#[test]
fn regression_gp_fault_with_8k_of_stack_left_is_not_a_stack_overflow() {
    const NAME: &str = "regression_gp_fault_with_8k_of_stack_left_is_not_a_stack_overflow";
    if let Ok(left) = std::env::var(FAULT_LEFT) {
        gp::fault_at_depth(left.parse().unwrap());
        unreachable!("the fault was not fatal");
    }
    for left in [64 * 1024, 8 * 1024] {
        let out = testkit::own_binary()
            .args([NAME, "--exact", "--test-threads=1", "--nocapture"])
            .env(FAULT_LEFT, left.to_string())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.signal() == Some(libc::SIGSEGV) && !text.contains("overflowed its stack"),
            "a GP fault with {left} bytes of stack left: {:?}\n{text}",
            out.status
        );
    }
}

/// The application's SIGSEGV handler, installed before killable's, recovers from the fault,
/// with 64 KB and with 8 KB of stack left: killable chains to it (it used to abort at 8 KB).
#[cfg(target_arch = "x86_64")]
#[test]
fn regression_chained_sigsegv_handler_recovers_a_gp_fault_with_8k_of_stack_left() {
    testkit::in_child(
        "regression_chained_sigsegv_handler_recovers_a_gp_fault_with_8k_of_stack_left",
        Duration::from_secs(20),
        || {
            gp::install_recovering_handler();
            gp::fault_at_depth(64 * 1024);
            assert_eq!(gp::RECOVERED.load(Ordering::SeqCst), 1);
            println!("recovered with 64 KB left");
            gp::fault_at_depth(8 * 1024);
            assert_eq!(gp::RECOVERED.load(Ordering::SeqCst), 2);
            println!("recovered with 8 KB left");
        },
    );
}

// ---------------------------------------------------------------------------------------------
// A cached stack with a larger guard: the guard region is the one std would use.

/// The page the application protected on purpose, and how often its handler unprotected it.
static PROTECTED: AtomicUsize = AtomicUsize::new(0);
static UNPROTECTED: AtomicUsize = AtomicUsize::new(0);

/// The application's SIGSEGV handler (installed before killable's): a fault on the page it
/// protected itself (a runtime's own guard or watch page) is resolved by unprotecting it;
/// anything else is fatal.
extern "C" fn unprotecting_handler(
    _sig: libc::c_int,
    info: *mut libc::siginfo_t,
    _ctx: *mut libc::c_void,
) {
    // SAFETY: SA_SIGINFO handler: valid siginfo; mprotect and sigaction are system calls.
    unsafe {
        let page = PROTECTED.load(Ordering::SeqCst);
        let addr = (*info).si_addr() as usize;
        if page != 0 && addr >= page && addr < page + 4096 {
            libc::mprotect(
                page as *mut libc::c_void,
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
            );
            UNPROTECTED.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGSEGV, &dfl, std::ptr::null_mut());
    }
}

/// glibc caches the stack of a thread created with a 256 KB guard; the next killable thread of
/// a fitting size gets it, with the 256 KB guard still in place (`pd->guardsize`) while
/// `pthread_getattr_np` reports the default guard (`reported_guardsize`), as std's overflow
/// report uses it. The thread then faults on a page of its stack, 128 KB above the usable
/// bottom, that the application protected itself: that is no overflow, and the application's
/// handler resolves it. With the descriptor's larger guard, killable took the fault for an
/// overflow and aborted.
#[test]
fn regression_cached_stack_with_a_large_guard_keeps_std_s_guard_region() {
    testkit::in_child(
        "regression_cached_stack_with_a_large_guard_keeps_std_s_guard_region",
        Duration::from_secs(20),
        || {
            // SAFETY: installs an SA_SIGINFO handler with the three-argument signature.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = unprotecting_handler as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut sa.sa_mask);
                assert_eq!(libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut()), 0);
            }
            // The first killable thread learns the descriptor's layout; its 64 KB stack is too
            // small for glibc to hand it to a 2 MiB request later.
            killable::Builder::new()
                .stack_size(64 * 1024)
                .spawn(|| ())
                .unwrap()
                .join()
                .unwrap();
            // A thread of the application, 2 MiB of stack and a 256 KB guard, that ends.
            extern "C" fn raw(_: *mut libc::c_void) -> *mut libc::c_void {
                testkit::stack_low() as *mut libc::c_void
            }
            // SAFETY: plain pthread calls on an attribute we initialise and destroy.
            let raw_low = unsafe {
                let mut attr: libc::pthread_attr_t = std::mem::zeroed();
                libc::pthread_attr_init(&mut attr);
                libc::pthread_attr_setstacksize(&mut attr, 2 * 1024 * 1024);
                libc::pthread_attr_setguardsize(&mut attr, 256 * 1024);
                let mut t: libc::pthread_t = 0;
                assert_eq!(
                    libc::pthread_create(&mut t, &attr, raw, std::ptr::null_mut()),
                    0
                );
                let mut low = std::ptr::null_mut();
                libc::pthread_join(t, &mut low);
                libc::pthread_attr_destroy(&mut attr);
                low as usize
            };
            // The killable thread (default 2 MiB) reuses that stack.
            let h = killable::Builder::new()
                .name("cached".into())
                .spawn(move || {
                    let low = testkit::stack_low();
                    assert_eq!(low, raw_low, "glibc did not reuse the cached stack");
                    let page = (low + 128 * 1024) & !4095;
                    PROTECTED.store(page, Ordering::SeqCst);
                    // SAFETY: the page lies in this thread's stack, 128 KB above its bottom,
                    // far below anything in use; the handler makes it writable again.
                    unsafe {
                        assert_eq!(
                            libc::mprotect(page as *mut libc::c_void, 4096, libc::PROT_NONE),
                            0
                        );
                        std::ptr::write_volatile(page as *mut u8, 1);
                    }
                })
                .unwrap();
            h.join().unwrap();
            assert_eq!(UNPROTECTED.load(Ordering::SeqCst), 1);
            println!("the application resolved its fault with 128 KB left");
        },
    );
}

// ---------------------------------------------------------------------------------------------
// A handler chained from killable's keeps its alternate stack.

static APP_SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn app_usr1(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    APP_SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// The application installs its SIGUSR1 handler with `SA_ONSTACK` and signals one of its own
/// std threads (std gave it an alternate stack) working with 2 KB of stack left. Once
/// killable's handler is installed, chaining to the application's, the signal still reaches
/// the application's handler on the alternate stack. Without `SA_ONSTACK` on killable's
/// handler the frame did not fit: the signal was lost and std's SIGSEGV handler, reached
/// through killable's overflow handler, reset SIGSEGV to `SIG_DFL`.
#[test]
fn regression_chained_handler_keeps_its_alternate_stack() {
    testkit::in_child(
        "regression_chained_handler_keeps_its_alternate_stack",
        Duration::from_secs(20),
        || {
            // SAFETY: installs an SA_SIGINFO handler with the three-argument signature.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = app_usr1 as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut sa.sa_mask);
                assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
            }
            // killable installs its handler (chaining to the application's) on first use.
            killable::current().interrupt();
            killable::clear_interrupt();
            static DEEP: AtomicBool = AtomicBool::new(false);
            static GIVE_UP: AtomicBool = AtomicBool::new(false);
            let t = std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(|| {
                    descend(testkit::stack_low(), 2048, &mut || {
                        DEEP.store(true, Ordering::SeqCst);
                        while APP_SIGNALS.load(Ordering::SeqCst) == 0
                            && !GIVE_UP.load(Ordering::SeqCst)
                        {
                            std::hint::spin_loop();
                        }
                    })
                })
                .unwrap();
            while !DEEP.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            use std::os::unix::thread::JoinHandleExt;
            // SAFETY: the thread is alive (it waits for the signal).
            assert_eq!(
                unsafe { libc::pthread_kill(t.as_pthread_t(), libc::SIGUSR1) },
                0
            );
            let start = std::time::Instant::now();
            while APP_SIGNALS.load(Ordering::SeqCst) == 0
                && start.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            GIVE_UP.store(true, Ordering::SeqCst);
            t.join().unwrap();
            assert_eq!(
                APP_SIGNALS.load(Ordering::SeqCst),
                1,
                "the application's SIGUSR1 vanished; SIGSEGV is now {}",
                segv_disposition()
            );
            assert_ne!(action(libc::SIGSEGV).sa_sigaction, libc::SIG_DFL);
            println!("the application's handler ran on its alternate stack");
        },
    );
}

/// A std thread adopted with `killable::current()` is blocked in `killable::sleep` with 3 KB of
/// stack left, and interrupted: killable's handler runs (on std's alternate stack) and `sleep`
/// returns the interrupt; SIGSEGV stays handled. Without `SA_ONSTACK` the frame did not fit,
/// the forced SIGSEGV went to std's handler, which reset SIGSEGV to `SIG_DFL` for the process.
#[test]
fn regression_interrupt_of_an_adopted_thread_low_on_stack_keeps_sigsegv_armed() {
    testkit::in_child(
        "regression_interrupt_of_an_adopted_thread_low_on_stack_keeps_sigsegv_armed",
        Duration::from_secs(40),
        || {
            static DEEP: AtomicBool = AtomicBool::new(false);
            let (tx, rx) = std::sync::mpsc::channel();
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            let _t = std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    tx.send(killable::current()).unwrap();
                    let r = descend(testkit::stack_low(), 3072, &mut || {
                        DEEP.store(true, Ordering::SeqCst);
                        killable::sleep(Duration::from_secs(30))
                    });
                    done_tx
                        .send(r.is_err_and(|e| killable::is_interrupt(&e.into())))
                        .unwrap();
                })
                .unwrap();
            let me = rx.recv().unwrap();
            while !DEEP.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            testkit::wait_blocked(&me);
            me.interrupt();
            let outcome = done_rx.recv_timeout(Duration::from_secs(20));
            assert_eq!(
                outcome,
                Ok(true),
                "the interrupt was not seen; SIGSEGV is now {}",
                segv_disposition()
            );
            assert_ne!(
                action(libc::SIGSEGV).sa_sigaction,
                libc::SIG_DFL,
                "SIGSEGV was reset to SIG_DFL"
            );
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The first-touch cost of the alternate stack is paid when a thread starts.

/// Threads that all live at once (so each has a freshly mapped alternate stack, in a new
/// process) find the top of their alternate stack, where the kernel writes a signal frame of
/// up to `AT_MINSIGSTKSZ` bytes, already resident before any signal: a stop does not
/// first-touch it. (Before, the first interrupt took a page fault there in every thread.)
#[test]
fn regression_fresh_alternate_stacks_are_touched_before_any_signal() {
    testkit::in_child(
        "regression_fresh_alternate_stacks_are_touched_before_any_signal",
        Duration::from_secs(20),
        || {
            const THREADS: usize = 8;
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(THREADS));
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    let barrier = barrier.clone();
                    killable::spawn(move || {
                        // SAFETY: only queries the calling thread's alternate stack.
                        let ss = unsafe {
                            let mut ss: libc::stack_t = std::mem::zeroed();
                            assert_eq!(libc::sigaltstack(std::ptr::null(), &mut ss), 0);
                            ss
                        };
                        assert_eq!(ss.ss_flags & libc::SS_DISABLE, 0, "no alternate stack");
                        // SAFETY: sysconf and getauxval have no preconditions.
                        let (page, frame) = unsafe {
                            (
                                libc::sysconf(libc::_SC_PAGESIZE) as usize,
                                libc::getauxval(libc::AT_MINSIGSTKSZ) as usize,
                            )
                        };
                        let frame = if frame == 0 { libc::MINSIGSTKSZ } else { frame };
                        let top = ss.ss_sp as usize + ss.ss_size;
                        let len = frame.min(ss.ss_size).next_multiple_of(page);
                        let mut resident = vec![0u8; len / page];
                        // SAFETY: `[top - len, top)` is page-aligned (the stack's top is) and
                        // mapped; `resident` has one byte per page.
                        let r = unsafe {
                            libc::mincore(
                                (top - len) as *mut libc::c_void,
                                len,
                                resident.as_mut_ptr(),
                            )
                        };
                        assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
                        barrier.wait();
                        resident
                    })
                })
                .collect();
            for h in handles {
                let resident = h.join().unwrap();
                assert!(
                    resident.iter().all(|&r| r & 1 == 1),
                    "pages of a fresh alternate stack's top not resident: {resident:?}"
                );
            }
            println!("{THREADS} fresh alternate stacks had their top resident");
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The pool: no two live threads ever run with the same alternate stack.

/// Alternate stacks registered: (`ss_sp`, tid, another thread got the same stack meanwhile).
static IN_USE: std::sync::Mutex<Vec<(usize, i32, bool)>> = std::sync::Mutex::new(Vec::new());
/// Threads that still had their alternate stack installed when another thread got it.
static VIOLATIONS: AtomicUsize = AtomicUsize::new(0);

fn my_altstack() -> Option<usize> {
    // SAFETY: only queries the calling thread's alternate stack.
    let ss = unsafe {
        let mut ss: libc::stack_t = std::mem::zeroed();
        libc::sigaltstack(std::ptr::null(), &mut ss);
        ss
    };
    (ss.ss_flags & libc::SS_DISABLE == 0 && !ss.ss_sp.is_null()).then_some(ss.ss_sp as usize)
}

fn claim_altstack() {
    let sp = my_altstack().expect("a killable thread has an alternate stack");
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    let mut u = IN_USE.lock().unwrap();
    for e in u.iter_mut().filter(|e| e.0 == sp) {
        e.2 = true;
    }
    u.push((sp, tid, false));
}

/// The last code a thread runs (a pthread_key destructor, after killable's exit guard): if
/// another thread got its alternate stack meanwhile, that stack must be disabled here (the
/// thread gave it back itself); still installed means two live threads share it.
extern "C" fn key_destructor(_: *mut libc::c_void) {
    for _ in 0..20 {
        std::thread::yield_now();
    }
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    let mut u = IN_USE.lock().unwrap();
    let pos = u.iter().position(|e| e.1 == tid).expect("registered");
    let (sp, _, shared) = u.remove(pos);
    if shared && my_altstack() == Some(sp) {
        VIOLATIONS.fetch_add(1, Ordering::SeqCst);
    }
}

/// Four loops spawn and join at once, so threads start while others are in their last steps
/// (the key destructor yields to widen that window), joined while still running, mostly: the
/// joiner hands the stack back after `pthread_join`. (Detached threads are left out: one
/// disables its stack and hands it back before its key destructor runs, so a new thread may
/// legitimately take it while the old one is still registered here.)
#[test]
fn alternate_stacks_are_never_shared_by_live_threads() {
    let mut key = 0;
    // SAFETY: creates a key with a destructor of the right signature.
    assert_eq!(
        unsafe { libc::pthread_key_create(&mut key, Some(key_destructor)) },
        0
    );
    let loops: Vec<_> = (0..4)
        .map(|l| {
            std::thread::spawn(move || {
                for i in 0..400 {
                    killable::spawn(move || {
                        // SAFETY: sets this thread's value for a live key.
                        unsafe {
                            libc::pthread_setspecific(key, std::ptr::dangling::<libc::c_void>())
                        };
                        claim_altstack();
                        for _ in 0..(i + l) % 7 {
                            std::thread::yield_now();
                        }
                    })
                    .join()
                    .unwrap();
                }
            })
        })
        .collect();
    for l in loops {
        l.join().unwrap();
    }
    assert!(IN_USE.lock().unwrap().is_empty());
    assert_eq!(
        VIOLATIONS.load(Ordering::SeqCst),
        0,
        "an alternate stack was handed to a new thread while the old one still had it installed"
    );
}
