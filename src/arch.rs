//! What differs between the architectures killable runs on: where the signal handler finds the
//! interrupted program counter, and the seccomp audit architecture of the native system-call
//! ABI. The race-free stub itself is one assembly file per architecture (`src/sys/`), the
//! system-call names one table per architecture (`syscall_names*.rs`), and the seal's list of
//! numbers is in `seal.rs`, `cfg`-gated where the tables differ.
//!
//! The marked `siginfo` (`signal.rs`, `send_marked`) needs nothing here: x86_64, aarch64 and
//! riscv64 share the generic 64-bit layout (`si_signo`, `si_errno`, `si_code`, padding to 16
//! bytes, then the union: `si_pid` at 16, `si_uid` at 20, `si_value` at 24).

/// The program counter saved in the `ucontext_t` an `SA_SIGINFO` handler receives.
///
/// # Safety
///
/// `ctx` is the third argument of an `SA_SIGINFO` handler (a live `ucontext_t` the kernel
/// restores when the handler returns), and the pointer is used only while that handler runs.
#[inline(always)]
pub(crate) unsafe fn pc(ctx: *mut libc::c_void) -> *mut usize {
    let uc = ctx.cast::<libc::ucontext_t>();
    // SAFETY: per the contract, `uc` is a live ucontext_t; the place named is the saved
    // program counter, a 64-bit register on each architecture (`usize` here).
    unsafe {
        #[cfg(target_arch = "x86_64")]
        let p = (&raw mut (*uc).uc_mcontext.gregs[libc::REG_RIP as usize]).cast::<usize>();
        #[cfg(target_arch = "aarch64")]
        let p = (&raw mut (*uc).uc_mcontext.pc).cast::<usize>();
        // __gregs[REG_PC] is the saved pc (sepc); the other 31 are x1..x31.
        #[cfg(target_arch = "riscv64")]
        let p = (&raw mut (*uc).uc_mcontext.__gregs[libc::REG_PC]).cast::<usize>();
        p
    }
}

/// `AUDIT_ARCH_*` of the native ABI (linux/audit.h), the `arch` of `struct seccomp_data`.
#[cfg(target_arch = "x86_64")]
pub(crate) const AUDIT_ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
pub(crate) const AUDIT_ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64: EM_AARCH64 | 64BIT | LE
#[cfg(target_arch = "riscv64")]
pub(crate) const AUDIT_ARCH: u32 = 0xc000_00f3; // AUDIT_ARCH_RISCV64: EM_RISCV | 64BIT | LE

#[cfg(test)]
mod tests {
    use crate::syscall::{cancel_address, in_window};

    /// Runs killable's handler on a context whose saved program counter is `pc`, as the kernel
    /// would after interrupting a thread there; returns the program counter it would resume at.
    /// The signal is a plain `SI_USER` one, which the handler passes on to the previous action
    /// (the default one, or none: ignored).
    fn resume_at(pc: usize) -> usize {
        // SAFETY: both are plain data, zeroed as the kernel's are before it fills them.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut uc: libc::ucontext_t = unsafe { std::mem::zeroed() };
        info.si_signo = libc::SIGUSR1;
        info.si_code = libc::SI_USER;
        let ctx = (&raw mut uc).cast::<libc::c_void>();
        // SAFETY: `uc` is a live ucontext_t that outlives the pointer's uses here.
        unsafe { *super::pc(ctx) = pc };
        // The test's own thread: killable never adopted it (nothing here calls `current()`), so
        // there is no control block to act on; the program counter is all the handler changes.
        let jump = crate::signal::handler(libc::SIGUSR1, &raw mut info, ctx);
        // SAFETY: as above.
        let r = (jump, unsafe { *super::pc(ctx) });
        assert_eq!(r.0, 0, "no kill region: no jump");
        r.1
    }

    /// The program counter `pc` finds in a context the kernel filled in, recorded by the
    /// handler below; 0 until a signal arrives.
    static SEEN_PC: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    extern "C" fn record_pc(_: libc::c_int, _: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: `ctx` is this SA_SIGINFO handler's third argument, read while it runs.
        let pc = unsafe { *super::pc(ctx) };
        SEEN_PC.store(pc, std::sync::atomic::Ordering::Relaxed);
    }

    /// `pc` names the slot where this architecture's kernel saves the program counter: a signal
    /// that the stub's own system call sends to its thread is delivered as the kernel returns
    /// from that call, so the saved program counter is exactly the stub's end label. (A wrong
    /// slot, such as the link register, gives another address.) Replaces a signal handler, so
    /// it runs in a child process.
    #[test]
    fn the_kernel_saves_the_program_counter_where_pc_reads_it() {
        let name = "arch::tests::the_kernel_saves_the_program_counter_where_pc_reads_it";
        testkit::in_child(name, std::time::Duration::from_secs(60), || {
            let mut end = cancel_address();
            while !in_window(end - 1) {
                end -= 1;
            }
            let handler = record_pc as extern "C" fn(_, _, _) as usize;
            let action = crate::signal::action(handler, libc::SA_SIGINFO);
            // SAFETY: a fully initialised action whose handler has the SA_SIGINFO signature
            // and only stores an integer; this child process runs nothing else.
            let r = unsafe { libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut()) };
            assert_eq!(r, 0, "sigaction: {}", std::io::Error::last_os_error());
            // SAFETY: the thread's own ids; sends a signal this process handles.
            let (pid, tid) = (unsafe { libc::getpid() }, unsafe { libc::gettid() });
            let sent = crate::syscall::call(
                libc::SYS_tgkill,
                [pid.into(), tid.into(), libc::SIGUSR2.into(), 0, 0, 0],
            );
            assert!(sent.is_ok(), "tgkill through the stub failed");
            let seen = SEEN_PC.load(std::sync::atomic::Ordering::Relaxed);
            assert_eq!(
                seen, end,
                "saved pc {seen:#x}, the stub's end label {end:#x}"
            );
        });
    }

    /// The handler reads and moves this architecture's program counter: one inside the stub's
    /// window goes to the cancel label, one at its end (the system call returned) or anywhere
    /// else is left alone.
    #[test]
    fn the_handler_moves_a_program_counter_in_the_window_to_cancel() {
        // The labels, found through `in_window` alone: the window [begin, end) lies below the
        // cancel label (syscall.rs checks the order).
        let mut begin = cancel_address();
        while !in_window(begin) {
            begin -= 1;
        }
        while in_window(begin - 1) {
            begin -= 1;
        }
        let mut end = begin;
        while in_window(end) {
            end += 1;
        }
        for pc in [begin, begin + 4, end - 4] {
            assert_eq!(
                resume_at(pc),
                cancel_address(),
                "pc {pc:#x} in [{begin:#x}, {end:#x})"
            );
        }
        for pc in [end, begin - 4, cancel_address(), 0x1000] {
            assert_eq!(
                resume_at(pc),
                pc,
                "pc {pc:#x} outside [{begin:#x}, {end:#x})"
            );
        }
    }

    #[test]
    fn the_audit_arch_is_the_kernels() {
        // AUDIT_ARCH_* = EM_* | __AUDIT_ARCH_64BIT (0x8000_0000) | __AUDIT_ARCH_LE (0x4000_0000).
        let em = if cfg!(target_arch = "x86_64") {
            62 // EM_X86_64
        } else if cfg!(target_arch = "aarch64") {
            183 // EM_AARCH64
        } else {
            243 // EM_RISCV
        };
        assert_eq!(super::AUDIT_ARCH, 0xc000_0000 | em);
    }
}
