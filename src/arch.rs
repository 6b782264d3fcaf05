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
