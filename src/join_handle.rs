//! `JoinHandle`: an owned permission to join a thread killable spawned.
//!
//! Every public method of [`JoinHandle`] lives here. Joining is the handle's own business; the
//! methods of a feature (interrupt, wait, stop) forward to that feature's crate-private
//! function.

use std::cell::UnsafeCell;
use std::error::Error;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::thread::Result as ThreadResult;
use std::time::{Duration, Instant};

use crate::control::LOST_IN_FORK;
use crate::diagnose::Diagnosis;
use crate::errors::Interrupted;
use crate::escalate::{StopLevel, StopOptions, StopOutcome, escalate_with};
use crate::registry;
use crate::thread::Thread;
use crate::time::realtime_after;

/// Where the thread leaves its result for `join`.
pub(crate) struct Packet<T> {
    pub(crate) result: UnsafeCell<Option<ThreadResult<T>>>,
}

// SAFETY: the cell is written once by the spawned thread before it publishes `Inner::done`
// (Release) and read once by the joiner after observing it (Acquire); never both at once.
unsafe impl<T: Send> Sync for Packet<T> {}

/// An owned permission to join a thread; dropping it detaches the thread.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// let slow = killable::spawn(|| { std::thread::sleep(Duration::from_millis(200)); "done" });
/// let slow = slow.join_timeout(Duration::from_millis(1)).unwrap_err(); // still running
/// assert_eq!(slow.join().unwrap(), "done");
/// ```
pub struct JoinHandle<T> {
    pub(crate) thread: Thread,
    pub(crate) packet: Arc<Packet<T>>,
    pub(crate) native: libc::pthread_t,
    /// Still responsible for joining or detaching `native`.
    pub(crate) owns: bool,
}

impl<T> JoinHandle<T> {
    /// Waits for the thread to finish and returns its result: `Ok` with the closure's value,
    /// or `Err` with the panic payload if it panicked.
    ///
    /// Waiting burns no CPU (a futex). In a child process forked while the thread ran, the
    /// thread does not exist; `join` then returns `Err` at once instead of waiting forever.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| -> u8 { panic!("boom") });
    /// let payload = h.join().unwrap_err();
    /// assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
    /// ```
    #[doc(alias = "pthread_join")]
    pub fn join(mut self) -> ThreadResult<T> {
        let inner = &self.thread.inner;
        self.owns = false;
        if inner.done_state() == LOST_IN_FORK {
            registry::release(inner);
            return Err(Box::new(
                "killable: the thread does not exist in this forked child",
            ));
        }
        let claimed = crate::stack::claim_for_join(inner);
        // SAFETY: `native` is a joinable thread that we own (not joined or detached before).
        let r = unsafe { libc::pthread_join(self.native, std::ptr::null_mut()) };
        assert_eq!(
            r,
            0,
            "pthread_join failed: {}",
            io::Error::from_raw_os_error(r)
        );
        if claimed {
            crate::stack::joined(&self.thread.inner);
        }
        self.take_joined()
    }

    /// After a successful join: releases the registry entry and takes the result.
    fn take_joined(mut self) -> ThreadResult<T> {
        self.owns = false;
        registry::release(&self.thread.inner);
        // SAFETY: the thread was joined, so it has exited after writing the cell (termination
        // synchronizes with the join); nobody else reads the cell.
        unsafe { (*self.packet.result.get()).take() }
            .expect("killable: thread result already taken")
    }

    /// Waits at most `timeout` for the thread to finish.
    ///
    /// Returns `Ok` with what [`join`](JoinHandle::join) would return if the thread finished in
    /// time, otherwise `Err` with the handle, so the caller can wait again, join later or drop
    /// it. Waiting burns no CPU.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let h = killable::spawn(|| 1);
    /// assert_eq!(h.join_timeout(Duration::from_secs(10)).ok().unwrap().unwrap(), 1);
    /// ```
    pub fn join_timeout(self, timeout: Duration) -> Result<ThreadResult<T>, JoinHandle<T>> {
        let deadline = Instant::now().checked_add(timeout);
        if !self
            .thread
            .inner
            .wait_done(deadline.map(crate::time::monotonic_timespec).as_ref())
        {
            return Err(self);
        }
        let Some(deadline) = deadline else {
            return Ok(self.join());
        };
        if self.thread.inner.done_state() == LOST_IN_FORK {
            return Ok(self.join());
        }
        // The closure has returned, but thread-local destructors may still run: the final join
        // is bounded by what is left of the timeout too.
        let at = realtime_after(deadline.saturating_duration_since(Instant::now()));
        // SAFETY: `native` is joinable and still ours; on success the thread is reaped exactly
        // once and `take_joined` clears `owns`, so nothing joins or detaches it again.
        let r = unsafe { libc::pthread_timedjoin_np(self.native, std::ptr::null_mut(), &at) };
        if r == libc::ETIMEDOUT {
            return Err(self);
        }
        assert_eq!(
            r,
            0,
            "pthread_timedjoin_np failed: {}",
            io::Error::from_raw_os_error(r)
        );
        Ok(self.take_joined())
    }

    /// Whether the thread has finished running: its closure and its thread-local destructors
    /// (as [`Thread::is_finished`](crate::Thread::is_finished)).
    ///
    /// [`join`](JoinHandle::join) may still wait briefly for the C library's own teardown of the
    /// thread (its `pthread_key` destructors), which runs after that.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| ());
    /// h.wait().unwrap();
    /// assert!(h.is_finished());
    /// h.join().unwrap();
    /// ```
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// The thread's [`Thread`].
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| ());
    /// let t = h.thread().clone();
    /// h.join().unwrap();
    /// assert!(t.is_finished());
    /// ```
    pub fn thread(&self) -> &Thread {
        &self.thread
    }

    /// The underlying `pthread_t`, still owned by this handle.
    ///
    /// It stays valid while the handle exists, in the process that spawned the thread. Do not
    /// join or detach it: the handle does that. In the child of a `fork`, a handle of a thread
    /// that stayed in the parent holds a `pthread_t` that names no thread of the child: do not
    /// pass it to any pthread function there ([`JoinHandle::join`] knows and reports the thread
    /// as lost).
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| ());
    /// // SAFETY: the handle keeps the thread joinable, so its pthread_t is valid here.
    /// let same = unsafe { libc::pthread_equal(h.as_pthread_t(), h.as_pthread_t()) };
    /// assert_ne!(same, 0);
    /// h.join().unwrap();
    /// ```
    pub fn as_pthread_t(&self) -> libc::pthread_t {
        self.native
    }

    /// Gives up the handle and returns the `pthread_t`.
    ///
    /// The caller now owns the thread: it must `pthread_join` or `pthread_detach` it exactly
    /// once, or the thread's resources leak when it ends. The thread's return value is dropped
    /// when the thread finishes (a panic payload likewise); `pthread_join` yields a null pointer.
    ///
    /// # Examples
    ///
    /// ```
    /// let raw = killable::spawn(|| ()).into_pthread_t();
    /// // SAFETY: we own `raw` and join it exactly once.
    /// assert_eq!(unsafe { libc::pthread_join(raw, std::ptr::null_mut()) }, 0);
    /// ```
    pub fn into_pthread_t(mut self) -> libc::pthread_t {
        self.owns = false;
        registry::release(&self.thread.inner);
        self.native
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if !self.owns {
            return;
        }
        if self.thread.inner.done_state() != LOST_IN_FORK {
            // SAFETY: we own `native` and have neither joined nor detached it.
            unsafe { libc::pthread_detach(self.native) };
        }
        registry::release(&self.thread.inner);
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("thread", &self.thread)
            .finish_non_exhaustive()
    }
}

impl<T> JoinHandle<T> {
    /// Interrupts the thread: the same as [`Thread::interrupt`](crate::Thread::interrupt) on
    /// [`self.thread()`](crate::JoinHandle::thread).
    ///
    /// # Panics
    ///
    /// As [`Thread::interrupt`](crate::Thread::interrupt).
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| killable::sleep(std::time::Duration::from_secs(3600)));
    /// h.interrupt();
    /// assert!(h.join().unwrap().is_err());
    /// ```
    #[doc(alias = "pthread_kill")]
    pub fn interrupt(&self) {
        self.thread().interrupt()
    }

    /// Like [`interrupt`](crate::JoinHandle::interrupt), returning an error instead of
    /// panicking (see [`Thread::try_interrupt`](crate::Thread::try_interrupt)).
    ///
    /// # Errors
    ///
    /// As [`Thread::try_interrupt`](crate::Thread::try_interrupt).
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| killable::park());
    /// h.try_interrupt().unwrap();
    /// assert!(h.join().unwrap().is_err());
    /// ```
    pub fn try_interrupt(&self) -> io::Result<()> {
        self.thread().try_interrupt()
    }
    /// Waits, killable, until the thread has finished; the handle is kept, so
    /// [`join`](JoinHandle::join) afterwards returns at once.
    ///
    /// # Errors
    ///
    /// [`Interrupted`](crate::Interrupted) if the *calling* thread is interrupted while waiting, or is
    /// [sealed](crate::Thread::seal).
    ///
    /// # Examples
    ///
    /// ```
    /// let worker = killable::spawn(|| 5);
    /// worker.wait().unwrap();
    /// assert!(worker.is_finished());
    /// assert_eq!(worker.join().unwrap(), 5);
    /// ```
    pub fn wait(&self) -> Result<(), Interrupted> {
        crate::sync::wait(&self.thread.inner)
    }

    /// Like [`wait`](JoinHandle::wait), for at most `timeout`; returns whether the thread
    /// finished.
    ///
    /// # Errors
    ///
    /// As [`wait`](JoinHandle::wait).
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| killable::sleep(std::time::Duration::from_secs(3600)));
    /// assert_eq!(h.wait_timeout(std::time::Duration::from_millis(1)).unwrap(), false);
    /// h.interrupt();
    /// assert!(h.wait_timeout(std::time::Duration::from_secs(30)).unwrap());
    /// let _ = h.join();
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, Interrupted> {
        crate::sync::wait_timeout(&self.thread.inner, timeout)
    }
    /// Stops the thread within `grace`, escalating: interrupt, then kill (which abandons a
    /// [`kill_region`](crate::kill_region)), then [seal](crate::Thread::seal); returns its result
    /// with the level that stopped it and the time it took ([`Stopped`]).
    ///
    /// The interrupt is given half of `grace`. The kill is given half of the rest, unless it
    /// can change nothing: a thread outside any kill region that still has the interrupt and
    /// sits blocked in the kernel (in a call that retries `EINTR`) is not helped by a second
    /// interrupt, so the kill is requested (a region entered later is then not run) and the
    /// seal follows at once. A thread that cleared the interrupt to stop on a second request,
    /// or is still computing, is given the kill's wait (see [`StopOptions`]). The
    /// seal is given the rest. So a thread in std's `accept`, which only the seal reaches, stops
    /// after about half the grace. [`stop_with`](JoinHandle::stop_with) chooses the levels (to
    /// go straight to the seal, or never seal).
    ///
    /// # Errors
    ///
    /// [`Stuck`](crate::Stuck) with the handle and a [`Diagnosis`](crate::Diagnosis) if the thread still runs at the deadline
    /// (for example blocked in a `futex` that sealing does not reach, or spinning in Rust code
    /// that never checks).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// // std's sleep retries EINTR: only sealing ends it.
    /// let h = killable::spawn(|| std::thread::sleep(Duration::from_secs(3600)));
    /// std::thread::sleep(Duration::from_millis(20));
    /// let stopped = h.stop(Duration::from_secs(1)).unwrap();
    /// assert_eq!(stopped.level(), killable::StopLevel::Seal);
    /// println!("stopped by the seal after {:?}", stopped.elapsed());
    /// assert!(stopped.into_result().is_err()); // std's sleep panicked on ECANCELED, and unwound
    /// ```
    pub fn stop(self, grace: Duration) -> Result<Stopped<T>, Stuck<T>> {
        self.stop_with(grace, StopOptions::new())
    }

    /// Like [`stop`](JoinHandle::stop), with the levels `options` chooses (see [`StopOptions`]
    /// for the schedule).
    ///
    /// # Errors
    ///
    /// As [`stop`](JoinHandle::stop).
    ///
    /// # Panics
    ///
    /// If `options` chooses no level at all. The check comes first, before the thread is
    /// touched; the handle, moved into the call, is dropped by the panic (which detaches the
    /// thread, as dropping any handle does).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use killable::StopOptions;
    /// // Interrupt only: never seal a thread that must keep working afterwards.
    /// let h = killable::spawn(|| killable::sleep(Duration::from_secs(3600)));
    /// let stopped = h
    ///     .stop_with(Duration::from_secs(10), StopOptions::new().kill(false).seal(false))
    ///     .unwrap();
    /// assert_eq!(stopped.level(), killable::StopLevel::Interrupt);
    /// assert!(stopped.into_result().unwrap().is_err());
    /// ```
    pub fn stop_with(self, grace: Duration, options: StopOptions) -> Result<Stopped<T>, Stuck<T>> {
        // The last level chosen: what a `Stuck` reports as tried last.
        let Some(last) = [StopLevel::Seal, StopLevel::Kill, StopLevel::Interrupt]
            .into_iter()
            .find(|&l| options.uses(l))
        else {
            panic!("killable: StopOptions chose no level of stopping");
        };
        let mut outcome = escalate_with(std::slice::from_ref(self.thread()), grace, options);
        let outcome = outcome.pop().expect("one outcome per thread");
        match outcome.level() {
            Some(level) => Ok(Stopped {
                level,
                elapsed: outcome.elapsed(),
                result: self.join(),
            }),
            None => Err(Stuck {
                handle: self,
                last,
                outcome: Box::new(outcome),
            }),
        }
    }
}

/// The success of [`JoinHandle::stop`]: the thread's result, the level that stopped it and how
/// long that took.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let h = killable::spawn(|| killable::sleep(Duration::from_secs(3600)));
/// let stopped = h.stop(Duration::from_secs(10)).unwrap();
/// println!("{stopped:?}");
/// assert_eq!(stopped.level(), killable::StopLevel::Interrupt);
/// assert!(stopped.elapsed() < Duration::from_secs(10));
/// let slept: Result<(), killable::Interrupted> = stopped.into_result().unwrap();
/// assert!(slept.is_err());
/// ```
pub struct Stopped<T> {
    level: StopLevel,
    elapsed: Duration,
    result: ThreadResult<T>,
}

impl<T> Stopped<T> {
    /// The level that stopped the thread ([`StopLevel::AlreadyFinished`] if it had ended before
    /// the stop began).
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| 1);
    /// h.wait().unwrap();
    /// let stopped = h.stop(std::time::Duration::from_secs(1)).unwrap();
    /// assert_eq!(stopped.level(), killable::StopLevel::AlreadyFinished);
    /// ```
    pub fn level(&self) -> StopLevel {
        self.level
    }

    /// From the start of the stop to the moment the thread was seen finished.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| killable::park());
    /// let grace = std::time::Duration::from_secs(10);
    /// assert!(h.stop(grace).unwrap().elapsed() <= grace);
    /// ```
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The thread's result, as [`join`](JoinHandle::join) returns it: `Ok` with the closure's
    /// value, `Err` with its panic payload.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| 5);
    /// assert_eq!(h.stop(std::time::Duration::from_secs(1)).unwrap().into_result().unwrap(), 5);
    /// ```
    pub fn into_result(self) -> ThreadResult<T> {
        self.result
    }

    /// The thread's result, by reference.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| 5);
    /// let stopped = h.stop(std::time::Duration::from_secs(1)).unwrap();
    /// assert!(stopped.result().is_ok());
    /// ```
    pub fn result(&self) -> &ThreadResult<T> {
        &self.result
    }
}

impl<T> fmt::Debug for Stopped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stopped")
            .field("level", &self.level)
            .field("elapsed", &self.elapsed)
            .field("panicked", &self.result.is_err())
            .finish_non_exhaustive()
    }
}

/// The error of [`JoinHandle::stop`]: the thread still runs. Holds the handle and why.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// let lock = Arc::new(Mutex::new(()));
/// let held = lock.lock().unwrap();
/// let l = lock.clone();
/// let h = killable::spawn(move || drop(l.lock())); // waits in a futex: nothing reaches it
/// std::thread::sleep(std::time::Duration::from_millis(20));
/// let stuck = h.stop(std::time::Duration::from_millis(100)).unwrap_err();
/// println!("{stuck}");
/// drop(held);
/// stuck.into_handle().join().unwrap();
/// ```
pub struct Stuck<T> {
    handle: JoinHandle<T>,
    last: StopLevel,
    outcome: Box<StopOutcome>,
}

impl<T> Stuck<T> {
    /// Takes the handle back (to wait longer, or drop it to detach the thread).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// let lock = Arc::new(Mutex::new(()));
    /// let held = lock.lock().unwrap();
    /// let l = lock.clone();
    /// let h = killable::spawn(move || drop(l.lock()));
    /// std::thread::sleep(std::time::Duration::from_millis(20));
    /// let handle = h.stop(std::time::Duration::from_millis(100)).unwrap_err().into_handle();
    /// drop(held);
    /// handle.join().unwrap();
    /// ```
    pub fn into_handle(self) -> JoinHandle<T> {
        self.handle
    }

    /// Why the thread still runs, read from `/proc` at the deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// let lock = Arc::new(Mutex::new(()));
    /// let held = lock.lock().unwrap();
    /// let l = lock.clone();
    /// let h = killable::spawn(move || drop(l.lock()));
    /// std::thread::sleep(std::time::Duration::from_millis(50));
    /// let stuck = h.stop(std::time::Duration::from_millis(100)).unwrap_err();
    /// assert_eq!(stuck.diagnosis().unwrap().syscall_name(), Some("futex"));
    /// drop(held);
    /// stuck.into_handle().join().unwrap();
    /// ```
    pub fn diagnosis(&self) -> Option<&Diagnosis> {
        self.outcome.diagnosis()
    }

    /// The last level that was tried, in vain: the last one the [`StopOptions`] chose
    /// ([`StopLevel::Seal`] for [`stop`](JoinHandle::stop)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// let lock = Arc::new(Mutex::new(()));
    /// let held = lock.lock().unwrap();
    /// let l = lock.clone();
    /// let h = killable::spawn(move || drop(l.lock()));
    /// std::thread::sleep(std::time::Duration::from_millis(20));
    /// let stuck = h.stop(std::time::Duration::from_millis(100)).unwrap_err();
    /// assert_eq!(stuck.level(), killable::StopLevel::Seal);
    /// drop(held);
    /// stuck.into_handle().join().unwrap();
    /// ```
    pub fn level(&self) -> StopLevel {
        self.last
    }

    /// From the start of the stop to the deadline, when the thread was found still running.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// let lock = Arc::new(Mutex::new(()));
    /// let held = lock.lock().unwrap();
    /// let l = lock.clone();
    /// let h = killable::spawn(move || drop(l.lock()));
    /// std::thread::sleep(Duration::from_millis(20));
    /// let stuck = h.stop(Duration::from_millis(100)).unwrap_err();
    /// assert!(stuck.elapsed() >= Duration::from_millis(100));
    /// drop(held);
    /// stuck.into_handle().join().unwrap();
    /// ```
    pub fn elapsed(&self) -> Duration {
        self.outcome.elapsed()
    }
}

impl<T> fmt::Debug for Stuck<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stuck")
            .field("level", &self.last)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for Stuck<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.outcome.fmt(f)
    }
}

impl<T> Error for Stuck<T> {}
