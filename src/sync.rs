//! Waiting, killable: [`sleep`], [`park`], [`Condvar`], waiting for a thread
//! ([`JoinHandle::wait`](crate::JoinHandle::wait)) and for a child process ([`wait_child`]).
//!
//! All of them block in `futex(2)`, `clock_nanosleep(2)` or `waitid(2)` through killable's
//! race-free system call, with absolute deadlines so that a stray signal's retry does not
//! stretch the wait.
//!
//! None of them reports a wait that did not happen as done. On a [sealed](crate::Thread::seal) thread
//! they all fail, even after [`clear_interrupt`](crate::clear_interrupt): `wait_child` with the
//! seal's `ECANCELED`, the others (whose error type has no room for an OS error) with
//! [`Interrupted`], since the seal is an interrupt that cannot be cleared. The futex waits check
//! the seal themselves, because the seal's filter leaves `futex` working for locks.

pub mod mpsc;

use std::io;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{LockResult, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use crate::control::{Inner, with_current};
use crate::errors::Interrupted;
use crate::futex::{FUTEX_BITSET_MATCH_ANY, FUTEX_WAIT_BITSET_PRIVATE};
use crate::syscall::{Fail, call, call_once};
use crate::time::{abs_deadline, monotonic_timespec};
use crate::{futex, seal};

/// The error of a killable wait that failed in a way its caller does not expect: the stop
/// request that broke it, or, for `ECANCELED` (the seal's filter refused the call, so the wait
/// never happened), the interrupt the seal stands for.
///
/// These waits return `Result<_, Interrupted>`, which has no room for an OS error, and a wait
/// that did not happen must never pass for one that did. Any other errno cannot come from
/// killable's own arguments (a foreign seccomp policy, a kernel without the call): it panics,
/// as std's `thread::sleep` does.
#[cold]
fn wait_failed(f: Fail, call: &str) -> Interrupted {
    match f {
        Fail::Stop(stop) => stop,
        Fail::Os(libc::ECANCELED) => seal::interrupted_by_seal(),
        Fail::Os(e) => panic!(
            "killable: {call} failed: {}",
            io::Error::from_raw_os_error(e)
        ),
    }
}

/// Killable `FUTEX_WAIT_BITSET` on `word` while it equals `expected`, until the absolute
/// monotonic `deadline`. `Ok(false)` on timeout; `Ok(true)` when woken or the value changed
/// (callers re-check their condition).
///
/// The seal's filter leaves `futex` alone (locks must keep working), so a sealed thread's
/// killable futex waits fail here instead, checked before each attempt. A seal that lands
/// during the wait breaks it with its signal (`EINTR`), after which the check sees it, even
/// under `defer_interrupts`; only a seal signal that lands between the check and the system
/// call under `defer_interrupts` is seen at the wait's next return.
pub(crate) fn futex_wait(
    word: &AtomicU32,
    expected: u32,
    deadline: Option<&libc::timespec>,
) -> Result<bool, Interrupted> {
    let ts = deadline.map_or(std::ptr::null(), |t| t as *const libc::timespec);
    let args = [
        word.as_ptr() as libc::c_long,
        FUTEX_WAIT_BITSET_PRIVATE as libc::c_long,
        expected as libc::c_long,
        ts as libc::c_long,
        0,
        FUTEX_BITSET_MATCH_ANY as libc::c_long,
    ];
    with_current(|inner| {
        loop {
            if seal::is_sealed(&inner.ctl) {
                return Err(seal::interrupted_by_seal());
            }
            match call_once(&inner.ctl, libc::SYS_futex, args) {
                // Woken, or the value had already changed.
                Ok(_) | Err(Fail::Os(libc::EAGAIN)) => return Ok(true),
                Err(Fail::Os(libc::ETIMEDOUT)) => return Ok(false),
                // A signal that was not a stop request for us: wait again (absolute deadline).
                Err(Fail::Os(libc::EINTR)) => {}
                Err(f) => return Err(wait_failed(f, "futex")),
            }
        }
    })
}

/// Sleeps for `dur`, killable: an interrupt (or a passed [`timeout`](crate::timeout)) ends the
/// sleep early with `Err`.
///
/// Unlike [`std::thread::sleep`], which resumes after every signal, this sleeps on an absolute
/// `CLOCK_MONOTONIC` deadline and returns as soon as the thread is interrupted.
///
/// # Errors
///
/// [`Interrupted`] if the thread was interrupted before or during the sleep, or is
/// [sealed](crate::Thread::seal) (the seal refuses the sleep: it is an interrupt that
/// [`clear_interrupt`](crate::clear_interrupt) does not clear). It never returns `Ok` without
/// having slept.
///
/// # Panics
///
/// If the kernel refuses `clock_nanosleep` with an error other than an interrupt or the seal's
/// `ECANCELED` (a foreign seccomp policy), as [`std::thread::sleep`] does.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// let sleeper = killable::spawn(|| killable::sleep(Duration::from_secs(3600)));
/// sleeper.interrupt();
/// let t = Instant::now();
/// assert!(sleeper.join().unwrap().is_err());
/// assert!(t.elapsed() < Duration::from_secs(3600));
/// ```
///
/// # References
///
/// * [`clock_nanosleep(2)`](https://man7.org/linux/man-pages/man2/clock_nanosleep.2.html)
#[doc(alias = "clock_nanosleep")]
#[doc(alias = "nanosleep")]
pub fn sleep(dur: Duration) -> Result<(), Interrupted> {
    let at = Instant::now()
        .checked_add(dur)
        .map(monotonic_timespec)
        .unwrap_or(libc::timespec {
            tv_sec: libc::time_t::MAX,
            tv_nsec: 0,
        });
    let r = call(
        libc::SYS_clock_nanosleep,
        [
            libc::CLOCK_MONOTONIC as libc::c_long,
            libc::TIMER_ABSTIME as libc::c_long,
            (&raw const at) as libc::c_long,
            0,
            0,
            0,
        ],
    );
    match r {
        Ok(_) => Ok(()),
        Err(f) => Err(wait_failed(f, "clock_nanosleep")),
    }
}

const EMPTY: u32 = 0;
const NOTIFIED: u32 = 1;
const PARKED: u32 = u32::MAX;

/// Blocks until the calling thread is unparked ([`Thread::unpark`](crate::Thread::unpark)) or interrupted.
///
/// Like [`std::thread::park`] with std's token semantics (an `unpark` before the `park` makes
/// it return at once; spurious returns are possible), plus interruption.
///
/// The token is killable's own, not std's: [`Thread::unpark`](crate::Thread::unpark) wakes this
/// `park`, and [`std::thread::Thread::unpark`] wakes [`std::thread::park`]; neither wakes the
/// other. A thread parked in std's `park` is reached by nothing killable does (it waits in a
/// `futex`, which a seal leaves working): park killable threads with this one.
///
/// # Errors
///
/// [`Interrupted`] if the thread is interrupted before or while parked, or is
/// [sealed](crate::Thread::seal); a pending unpark token is kept for the next `park`.
///
/// # Examples
///
/// ```
/// let h = killable::spawn(|| killable::park());
/// h.thread().unpark();
/// assert!(h.join().unwrap().is_ok());
/// ```
pub fn park() -> Result<(), Interrupted> {
    park_until(None)
}

/// Like [`park`], returning after at most `timeout`.
///
/// # Errors
///
/// As [`park`].
///
/// # Examples
///
/// ```
/// assert!(killable::park_timeout(std::time::Duration::from_millis(1)).is_ok());
/// ```
pub fn park_timeout(timeout: Duration) -> Result<(), Interrupted> {
    park_until(abs_deadline(Some(timeout)).as_ref())
}

fn park_until(deadline: Option<&libc::timespec>) -> Result<(), Interrupted> {
    with_current(|inner| {
        let token = &inner.ctl.park;
        // An interrupted thread fails at once, keeping any token for a later park.
        inner.ctl.check()?;
        if token.fetch_sub(1, Ordering::Acquire) == NOTIFIED {
            return Ok(());
        }
        // Now PARKED.
        let r = futex_wait(token, PARKED, deadline);
        // Back to EMPTY unless an unpark arrived meanwhile (then its token is kept if we were
        // interrupted, and consumed if we were woken).
        if token
            .compare_exchange(PARKED, EMPTY, Ordering::Acquire, Ordering::Acquire)
            .is_err()
            && r.is_ok()
        {
            token.store(EMPTY, Ordering::Release);
        }
        r.map(drop)
    })
}

pub(crate) fn unpark(this: &Inner) {
    if this.ctl.park.swap(NOTIFIED, Ordering::Release) == PARKED {
        futex::wake(&this.ctl.park, 1);
    }
}

/// A condition variable whose waits an interrupt breaks, used with a std [`Mutex`].
///
/// The shapes are std's ([`std::sync::Condvar`]), with two differences:
///
/// * Each wait returns `Result<LockResult<..>, Interrupted>`: the outer `Err` is the interrupt
///   (or a passed [`timeout`](crate::timeout), or the seal), after which the mutex is **not**
///   held; the inner [`LockResult`] is std's poisoning, honoured as std does: if a thread
///   panicked while holding the mutex, the wait returns [`PoisonError`] with the guard inside.
/// * A wait needs the mutex itself, not only a guard: a std [`MutexGuard`] cannot be locked
///   again without its mutex, and stable Rust has no way to get the mutex back from a guard. So
///   [`wait`](Condvar::wait) takes both (`cv.wait(&lock, guard)`), and
///   [`wait_while`](Condvar::wait_while) takes the mutex and locks it itself.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// let pair = Arc::new((Mutex::new(false), killable::sync::Condvar::new()));
/// let p = pair.clone();
/// let waiter = killable::spawn(move || {
///     let (lock, cv) = &*p;
///     cv.wait_while(lock, |ready| !*ready).map(|g| *g.unwrap())
/// });
/// std::thread::sleep(std::time::Duration::from_millis(10));
/// waiter.interrupt(); // nobody will ever set `ready`
/// assert!(waiter.join().unwrap().is_err());
/// ```
#[derive(Debug, Default)]
pub struct Condvar {
    seq: AtomicU32,
}

impl Condvar {
    /// A new condition variable.
    ///
    /// # Examples
    ///
    /// ```
    /// let cv = killable::sync::Condvar::new();
    /// cv.notify_all(); // nobody waits: nothing happens
    /// ```
    pub const fn new() -> Condvar {
        Condvar {
            seq: AtomicU32::new(0),
        }
    }

    /// Releases `guard`, the guard of `mutex`, waits, killable, for a notification, and locks
    /// `mutex` again: [`std::sync::Condvar::wait`], with the mutex passed alongside its guard
    /// (see the type's docs). Like std's, it may return without a notification (a spurious
    /// wake-up), so call it in a loop that checks the condition, or use
    /// [`wait_while`](Condvar::wait_while).
    ///
    /// # Errors
    ///
    /// `Err(`[`Interrupted`]`)` if the thread is interrupted (or its [`timeout`](crate::timeout)
    /// passes) before or during the wait, or is [sealed](crate::Thread::seal): the mutex is then
    /// not held. `Ok(Err(`[`PoisonError`]`))` with the guard if the mutex is poisoned when it is
    /// locked again, as std returns it.
    ///
    /// # Panics
    ///
    /// If `guard` is not a guard of `mutex`. The check is exact (the guarded value must lie
    /// inside `mutex`) and panics before anything is unlocked, leaving `mutex` unpoisoned (the
    /// guard given is dropped by the unwinding, poisoning its own mutex as any panic under a
    /// guard does).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// let pair = Arc::new((Mutex::new(0), killable::sync::Condvar::new()));
    /// let p = pair.clone();
    /// let h = killable::spawn(move || -> Result<i32, killable::Interrupted> {
    ///     let (lock, cv) = &*p;
    ///     let mut n = lock.lock().unwrap();
    ///     while *n < 3 {
    ///         n = cv.wait(lock, n)?.unwrap();
    ///     }
    ///     Ok(*n)
    /// });
    /// for _ in 0..3 {
    ///     *pair.0.lock().unwrap() += 1;
    ///     pair.1.notify_all();
    /// }
    /// assert_eq!(h.join().unwrap().unwrap(), 3);
    /// ```
    pub fn wait<'a, T>(
        &self,
        mutex: &'a Mutex<T>,
        guard: MutexGuard<'a, T>,
    ) -> Result<LockResult<MutexGuard<'a, T>>, Interrupted> {
        self.wait_once(mutex, guard, None).map(|r| {
            r.map(|(g, _)| g)
                .map_err(|p| PoisonError::new(p.into_inner().0))
        })
    }

    /// Like [`wait`](Condvar::wait), giving up after `timeout`: the flag is `true` if the time
    /// ran out without a notification (std's `WaitTimeoutResult::timed_out`).
    ///
    /// # Errors
    ///
    /// As [`wait`](Condvar::wait).
    ///
    /// # Panics
    ///
    /// As [`wait`](Condvar::wait).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Mutex;
    /// let lock = Mutex::new(());
    /// let cv = killable::sync::Condvar::new();
    /// let guard = lock.lock().unwrap();
    /// let (_guard, timed_out) = cv
    ///     .wait_timeout(&lock, guard, std::time::Duration::from_millis(5))
    ///     .unwrap()
    ///     .unwrap();
    /// assert!(timed_out);
    /// ```
    pub fn wait_timeout<'a, T>(
        &self,
        mutex: &'a Mutex<T>,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> Result<LockResult<(MutexGuard<'a, T>, bool)>, Interrupted> {
        self.wait_once(mutex, guard, abs_deadline(Some(timeout)).as_ref())
    }

    /// One wait: `Ok((guard, timed_out))`, relocked.
    fn wait_once<'a, T>(
        &self,
        mutex: &'a Mutex<T>,
        guard: MutexGuard<'a, T>,
        deadline: Option<&libc::timespec>,
    ) -> Result<LockResult<(MutexGuard<'a, T>, bool)>, Interrupted> {
        // Stable Rust cannot get the mutex back from a guard, but it can check the guard's: the
        // value a guard derefs to lies inside its `Mutex<T>`. `<=` at the top end, for a
        // zero-sized `T` at the very end of the object. No lock is taken, so the panic poisons
        // nothing but the guard's own mutex.
        if !guard_is_of(mutex, &guard) {
            panic!("killable: Condvar::wait was given a guard that is not of the mutex")
        }
        // Read under the lock: a notifier changes the state under the lock and bumps `seq`
        // after, so either the waiter's caller saw the change or the futex sees the new `seq`.
        let seq = self.seq.load(Ordering::Acquire);
        drop(guard);
        let woken = futex_wait(&self.seq, seq, deadline)?;
        Ok(match mutex.lock() {
            Ok(g) => Ok((g, !woken)),
            Err(p) => Err(PoisonError::new((p.into_inner(), !woken))),
        })
    }

    /// Locks `mutex` and waits, killable, until `condition` returns false; returns the guard.
    /// [`std::sync::Condvar::wait_while`], taking the mutex (see the type's docs).
    ///
    /// # Errors
    ///
    /// `Err(`[`Interrupted`]`)` if the thread is interrupted first, or is
    /// [sealed](crate::Thread::seal); the mutex is then not held. `Ok(Err(`[`PoisonError`]`))`
    /// with the guard if the mutex is poisoned, as std returns it (without calling `condition`
    /// again).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// let pair = Arc::new((Mutex::new(0), killable::sync::Condvar::new()));
    /// let p = pair.clone();
    /// let h = killable::spawn(move || *p.1.wait_while(&p.0, |n| *n < 3).unwrap().unwrap());
    /// for _ in 0..3 {
    ///     *pair.0.lock().unwrap() += 1;
    ///     pair.1.notify_all();
    /// }
    /// assert_eq!(h.join().unwrap(), 3);
    /// ```
    pub fn wait_while<'a, T, F>(
        &self,
        mutex: &'a Mutex<T>,
        condition: F,
    ) -> Result<LockResult<MutexGuard<'a, T>>, Interrupted>
    where
        F: FnMut(&mut T) -> bool,
    {
        self.wait_inner(mutex, condition, None).map(|r| {
            r.map(|(g, _)| g)
                .map_err(|p| PoisonError::new(p.into_inner().0))
        })
    }

    /// Like [`wait_while`](Condvar::wait_while), giving up after `timeout`: the returned flag
    /// is `true` if the time ran out with the condition still true.
    ///
    /// # Errors
    ///
    /// As [`wait_while`](Condvar::wait_while).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Mutex;
    /// let lock = Mutex::new(false);
    /// let cv = killable::sync::Condvar::new();
    /// let (guard, timed_out) = cv
    ///     .wait_timeout_while(&lock, std::time::Duration::from_millis(5), |ready| !*ready)
    ///     .unwrap()
    ///     .unwrap();
    /// assert!(timed_out && !*guard);
    /// ```
    pub fn wait_timeout_while<'a, T, F>(
        &self,
        mutex: &'a Mutex<T>,
        timeout: Duration,
        condition: F,
    ) -> Result<LockResult<(MutexGuard<'a, T>, bool)>, Interrupted>
    where
        F: FnMut(&mut T) -> bool,
    {
        self.wait_inner(mutex, condition, abs_deadline(Some(timeout)))
    }

    fn wait_inner<'a, T, F>(
        &self,
        mutex: &'a Mutex<T>,
        mut condition: F,
        deadline: Option<libc::timespec>,
    ) -> Result<LockResult<(MutexGuard<'a, T>, bool)>, Interrupted>
    where
        F: FnMut(&mut T) -> bool,
    {
        // As std: a poisoned mutex does not end the wait. The loop runs on the guard inside the
        // poison error, and the poison is reported with the result, so that `timed_out` keeps
        // its meaning (the condition still held at the deadline) whatever the poisoning.
        let (mut guard, mut poisoned) = match mutex.lock() {
            Ok(g) => (g, false),
            Err(p) => (p.into_inner(), true),
        };
        let done = |g, timed_out, poisoned: bool| {
            Ok(if poisoned {
                Err(PoisonError::new((g, timed_out)))
            } else {
                Ok((g, timed_out))
            })
        };
        loop {
            if !condition(&mut guard) {
                return done(guard, false, poisoned);
            }
            let (mut g, timed_out) = match self.wait_once(mutex, guard, deadline.as_ref())? {
                Ok(r) => r,
                Err(p) => {
                    poisoned = true;
                    p.into_inner()
                }
            };
            if timed_out {
                let still = condition(&mut g);
                return done(g, still, poisoned);
            }
            guard = g;
        }
    }

    /// Wakes one waiter.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// let pair = Arc::new((Mutex::new(false), killable::sync::Condvar::new()));
    /// let p = pair.clone();
    /// let h = killable::spawn(move || *p.1.wait_while(&p.0, |ready| !*ready).unwrap().unwrap());
    /// *pair.0.lock().unwrap() = true;
    /// pair.1.notify_one();
    /// assert!(h.join().unwrap());
    /// ```
    pub fn notify_one(&self) {
        self.seq.fetch_add(1, Ordering::Release);
        futex::wake(&self.seq, 1);
    }

    /// Wakes every waiter.
    ///
    /// # Examples
    ///
    /// ```
    /// let cv = killable::sync::Condvar::new();
    /// cv.notify_all();
    /// ```
    pub fn notify_all(&self) {
        self.seq.fetch_add(1, Ordering::Release);
        futex::wake(&self.seq, i32::MAX);
    }
}

/// Whether `guard` guards `mutex`: the value it derefs to lies inside the `Mutex<T>` object.
/// Exact for every `T` with a size (distinct live objects do not overlap). A zero-sized `T` may
/// sit at the object's very end (hence the closed upper bound), where it could also be the
/// start of a mutex right behind: for those, `mutex` must also be locked (a probe with
/// `try_lock`, whose guard, if it got one, is dropped before anything can panic).
fn guard_is_of<T>(mutex: &Mutex<T>, guard: &MutexGuard<'_, T>) -> bool {
    let data = &**guard as *const T as usize;
    let start = mutex as *const Mutex<T> as usize;
    let inside = start <= data && data <= start + std::mem::size_of::<Mutex<T>>();
    if !inside || std::mem::size_of::<T>() != 0 {
        return inside;
    }
    matches!(mutex.try_lock(), Err(TryLockError::WouldBlock))
}

pub(crate) fn wait(this: &Inner) -> Result<(), Interrupted> {
    wait_until(this, None).map(drop)
}

pub(crate) fn wait_timeout(this: &Inner, timeout: Duration) -> Result<bool, Interrupted> {
    wait_until(this, abs_deadline(Some(timeout)).as_ref())
}

/// Waits, killable, for a child process to exit and returns its status, like
/// [`Child::wait`].
///
/// It waits with `waitid(2)` and `WNOWAIT`, which leaves the child un-reaped, then lets std
/// reap it: so after an interrupt the `Child` is untouched and can be waited for again, or
/// killed. [`wait_child_or_kill`] kills and reaps it on an interrupt.
///
/// # Errors
///
/// The OS error of `waitid(2)`, or an interrupt (see [`is_interrupt`](crate::is_interrupt)).
///
/// # Examples
///
/// ```
/// let mut child = std::process::Command::new("sleep").arg("3600").spawn().unwrap();
/// let h = killable::spawn(move || {
///     let r = killable::wait_child(&mut child).map(|_| ());
///     child.kill().unwrap(); // wait_child_or_kill does these two steps
///     child.wait().unwrap();
///     r
/// });
/// std::thread::sleep(std::time::Duration::from_millis(20));
/// h.interrupt();
/// assert!(killable::is_interrupt(&h.join().unwrap().unwrap_err()));
/// ```
#[doc(alias = "waitid")]
#[doc(alias = "waitpid")]
pub fn wait_child(child: &mut Child) -> io::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    // Only written by waitid, never read: `WNOWAIT` leaves the child for `child.wait()` below.
    let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
    call(
        libc::SYS_waitid,
        [
            libc::P_PID as libc::c_long,
            child.id() as libc::c_long,
            info.as_mut_ptr() as libc::c_long,
            (libc::WEXITED | libc::WNOWAIT) as libc::c_long,
            0,
            0,
        ],
    )?;
    child.wait()
}

/// Like [`wait_child`], but if the wait is interrupted (or its [`timeout`](crate::timeout)
/// passes, or the thread is [sealed](crate::Thread::seal)), kills the child (`SIGKILL`) and
/// reaps it before returning the error: the kill-and-reap every caller of [`wait_child`] would
/// otherwise write, so that stopping the waiting thread leaves no child process behind.
///
/// Inside [`timeout`](crate::timeout) it is "wait at most this long, then kill".
///
/// A child that had exited by the time the wait was broken is not killed: its status is
/// returned (`Ok`), and the thread's interrupt stays pending for its next killable call.
///
/// # Errors
///
/// The interrupt, timeout or seal error that ended the wait (the child is then killed and
/// reaped); the OS error of `waitid(2)` otherwise (the child is then left as it is).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let mut child = std::process::Command::new("sleep").arg("3600").spawn().unwrap();
/// let err = killable::timeout(Duration::from_millis(50), || {
///     killable::wait_child_or_kill(&mut child)
/// })
/// .unwrap_err();
/// assert!(killable::is_timeout(&err));
/// assert!(child.try_wait().unwrap().is_some()); // killed and reaped
/// ```
#[doc(alias = "waitid")]
pub fn wait_child_or_kill(child: &mut Child) -> io::Result<ExitStatus> {
    let r = wait_child(child);
    status_or_kill(child, r)
}

/// What [`wait_child_or_kill`] makes of `wait_child`'s result `r`.
fn status_or_kill(child: &mut Child, r: io::Result<ExitStatus>) -> io::Result<ExitStatus> {
    match r {
        Err(e) if crate::errors::is_stop(&e) || crate::errors::is_sealed(&e) => {
            // It may have exited just as the stop landed: its status is then the answer, not
            // lost to the reaping below (`WNOHANG` works on a sealed thread too).
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(status);
            }
            kill_and_reap(child);
            Err(e)
        }
        r => r,
    }
}

/// Kills `child` and reaps it, on a sealed thread too.
///
/// It never blocks in `waitpid`: a sealed thread's blocking `waitpid` fails with `ECANCELED`
/// (only `WNOHANG` works), and an interrupted thread's would be a wait nothing can break. It
/// polls with `WNOHANG` instead, sleeping between polls in a plain `futex` wait with a timeout
/// (which the seal leaves working), from 50 µs doubling to 10 ms: `SIGKILL` makes a child a
/// zombie within microseconds, unless it is stuck in an uninterruptible kernel wait.
fn kill_and_reap(child: &mut Child) {
    // An error means it has already exited (or was reaped): reaping below settles it.
    let _ = child.kill();
    let word = AtomicU32::new(0);
    let mut pause = Duration::from_micros(50);
    while let Ok(None) = child.try_wait() {
        let until = abs_deadline(Some(pause));
        // Nobody wakes `word`: this only sleeps until `until`.
        let _ = futex::wait(&word, 0, until.as_ref());
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

fn wait_until(this: &Inner, deadline: Option<&libc::timespec>) -> Result<bool, Interrupted> {
    this.wait_done_with(|word, expected| futex_wait(word, expected, deadline))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that exited just as the stop landed keeps its exit status: it is returned, not
    /// lost to the kill-and-reap. (Deterministic here: the stop error is handed in directly, for
    /// a child known to have exited, which is the state the race leaves behind.)
    #[test]
    fn regression_wait_child_or_kill_keeps_the_status_of_a_child_that_exited() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        // Wait until it has exited, leaving it un-reaped (as `wait_child`'s waitid does).
        let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: `info` is writable for a siginfo_t; the pid is our own child's.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                child.id(),
                info.as_mut_ptr(),
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        assert_eq!(r, 0);
        let stop: io::Error = Interrupted::interrupt().into();
        let status = status_or_kill(&mut child, Err(stop)).expect("the exit status was lost");
        assert_eq!(status.code(), Some(3));
    }
}
