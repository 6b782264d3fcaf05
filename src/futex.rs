//! Futex helpers and a small lock that can be reset in a forked child.
//!
//! These are the plain (not interruptible) waits killable uses for its own bookkeeping: a joiner
//! waiting for a thread to finish, the registry lock. The interruptible waits go through the
//! race-free stub in `syscall.rs` instead.

use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) const FUTEX_WAIT_BITSET_PRIVATE: libc::c_int = 9 | 128;
pub(crate) const FUTEX_WAKE_PRIVATE: libc::c_int = 1 | 128;
pub(crate) const FUTEX_BITSET_MATCH_ANY: u32 = u32::MAX;

/// Waits while `*word == expected`, until woken or until the absolute `deadline` passes.
/// Returns `false` on timeout. Spurious returns are possible; callers loop.
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<&libc::timespec>) -> bool {
    let ts = deadline.map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32 for the duration of the call; `ts` is null or points
    // to a timespec that outlives the call. FUTEX_WAIT_BITSET takes an absolute monotonic time.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            FUTEX_WAIT_BITSET_PRIVATE,
            expected,
            ts,
            std::ptr::null::<u32>(),
            FUTEX_BITSET_MATCH_ANY,
        )
    };
    // errno is read right after the failed call, on the same thread.
    !(r == -1 && nix::errno::Errno::last() == nix::errno::Errno::ETIMEDOUT)
}

/// Wakes up to `n` waiters on `word`.
pub(crate) fn wake(word: &AtomicU32, n: i32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key; it never dereferences it.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), FUTEX_WAKE_PRIVATE, n) };
}

/// A futex mutex without poisoning or owner tracking, small enough to be taken in a
/// `pthread_atfork` prepare handler and released (or reset) in the parent and the child.
pub(crate) struct RawLock(AtomicU32);

impl RawLock {
    pub(crate) const fn new() -> Self {
        RawLock(AtomicU32::new(0))
    }

    pub(crate) fn lock(&self) {
        if self
            .0
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        while self.0.swap(2, Ordering::Acquire) != 0 {
            wait(&self.0, 2, None);
        }
    }

    pub(crate) fn unlock(&self) {
        if self.0.swap(0, Ordering::Release) == 2 {
            wake(&self.0, 1);
        }
    }

    /// Marks the lock free without waking anyone: only in a fork child, where the thread that
    /// held it does not exist.
    pub(crate) fn reset_in_child(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// Locks, and unlocks when the guard drops (also when a panic unwinds through it).
    pub(crate) fn guard(&self) -> RawGuard<'_> {
        self.lock();
        RawGuard(self)
    }
}

/// Holds a `RawLock` (see `RawLock::guard`).
pub(crate) struct RawGuard<'a>(&'a RawLock);

impl Drop for RawGuard<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}
