//! The demo C loops of `src/demo.c`: foreign code that never returns by itself, for tests,
//! benchmarks and examples to run in a [`kill_region`](killable::kill_region) and abandon.
//!
//! They are compiled by this crate's `build.rs`, not by killable: killable ships no demo code.
//! Each declaration mirrors a function of `src/demo.c`; keep the two in sync.
//!
//! All three take a `*mut c_void` so they fit `kill_region`'s
//! `unsafe extern "C" fn(*mut c_void)` directly. None of them holds a lock or allocates, so
//! each may be abandoned at any instruction.
//!
//! # Examples
//!
//! ```
//! use std::ffi::c_void;
//!
//! let counter = Box::leak(Box::new(0u64)) as *mut u64 as usize;
//! let h = killable::spawn(move || {
//!     // SAFETY: the spin loop holds no lock and does not allocate; the counter is leaked, so
//!     // it outlives the loop.
//!     unsafe { killable::kill_region(testkit::demo::killable_demo_spin, counter as *mut c_void) }
//! });
//! while !h.thread().in_kill_region() {
//!     std::thread::yield_now();
//! }
//! h.thread().kill();
//! assert_eq!(h.join().unwrap(), Err(killable::Killed));
//! ```

use std::ffi::c_void;

unsafe extern "C" {
    /// Spins forever, incrementing the counter that `counter` points to (a volatile
    /// `unsigned long`). Only a kill ends it.
    ///
    /// # Safety
    ///
    /// * `counter` points to a `u64` that stays valid for as long as the loop may run, which is
    ///   until a kill abandons it: leak it, or keep it alive past the kill. The loop writes it
    ///   without synchronization, so read it only after the loop has been abandoned.
    /// * Call it only inside a kill region (or on a thread that is never meant to return).
    pub fn killable_demo_spin(counter: *mut c_void);

    /// Reads from the descriptor that `fd` points to (a `c_int`) into a stack buffer until end
    /// of file or an error other than `EINTR`, retrying after `EINTR` as much C code does: an
    /// interrupt alone cannot end it; end of file, a seal or a kill can.
    ///
    /// # Safety
    ///
    /// * `fd` points to a `c_int` that stays valid while the loop runs.
    /// * The descriptor stays open while the loop runs (or the loop ends with `EBADF`, or,
    ///   worse, reads whatever file reuses the number).
    pub fn killable_demo_read_retrying(fd: *mut c_void);

    /// A region inside a region, entered from C: runs [`killable_demo_spin`] in a nested kill
    /// region (killable's `killable_region_nested`), stores that inner region's result in the
    /// `c_int` that `result` points to (1 when a kill abandoned it), then returns normally. A
    /// kill abandons the inner region only, so the outer region returns `Ok(())`. Outside a
    /// kill region it stores -1 and returns at once.
    ///
    /// # Safety
    ///
    /// * `result` points to a `c_int` that stays valid until the function returns.
    pub fn killable_demo_nested(result: *mut c_void);
}
