//! `Thread`: a cloneable handle to a thread, and `current()`.
//!
//! Every thread that asks for its `Thread` gets one: threads killable spawned have theirs from
//! birth, and any other thread (the main thread, a `std::thread`, a thread a C library created)
//! gets one lazily, kept in a thread-local until the thread exits.
//!
//! Every public method of [`Thread`] lives here; those of a feature (interrupt, seal, kill,
//! diagnose, unpark) are thin forwarders to that feature's crate-private function. The control
//! block behind a `Thread` is `control::Inner`.

use std::fmt;
use std::io;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use nix::sched::{CpuSet, sched_getaffinity};
use nix::unistd::Pid;

use crate::control::{Inner, RUNNING};
use crate::diagnose::Diagnosis;

/// A unique identifier for a thread, never reused within a process.
///
/// It is killable's own numbering, not [`std::thread::ThreadId`]: ids are handed out in the order
/// killable first meets a thread (when it spawns one, or when [`current`] adopts one), so the
/// main thread is 1 only if it is the first thread killable meets, and the same thread's std
/// id is usually a different number. Compare killable ids with killable ids; for a std id, ask
/// [`std::thread::current`] inside the thread (killable's threads have one too).
///
/// # Examples
///
/// ```
/// let a = killable::current().id();
/// let b = killable::spawn(|| killable::current().id()).join().unwrap();
/// assert_ne!(a, b);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ThreadId(NonZeroU64);

impl ThreadId {
    /// The id as a number.
    ///
    /// # Examples
    ///
    /// ```
    /// let id = killable::current().id();
    /// assert!(id.as_u64().get() >= 1);
    /// ```
    pub fn as_u64(&self) -> NonZeroU64 {
        self.0
    }
}

/// A handle to a thread: cheap to clone, `Send` and `Sync`.
///
/// Obtained from [`current`], [`JoinHandle::thread`](crate::JoinHandle::thread) or
/// [`threads`](crate::threads). A `Thread` stays valid after its thread has ended.
///
/// # Examples
///
/// ```
/// let handle = killable::Builder::new().name("worker".into()).spawn(|| 7).unwrap();
/// let thread = handle.thread().clone();
/// assert_eq!(thread.name(), Some("worker"));
/// assert_eq!(handle.join().unwrap(), 7);
/// ```
#[derive(Clone)]
pub struct Thread {
    pub(crate) inner: Arc<Inner>,
}

impl Thread {
    /// The thread's name, if it has one.
    ///
    /// This is the full name given to [`Builder::name`](crate::Builder::name); the kernel keeps
    /// only its first 15 bytes (see `/proc/self/task/<tid>/comm`). The main thread is `"main"`;
    /// a `std::thread` adopted by [`current`] carries std's name.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::Builder::new().name("named".into()).spawn(|| ()).unwrap();
    /// assert_eq!(h.thread().name(), Some("named"));
    /// h.join().unwrap();
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.inner.name_str()
    }

    /// The kernel's id for the thread (what `gettid(2)` returns inside it), as seen in
    /// `/proc/self/task/`.
    ///
    /// Right after `spawn` the new thread may not have started yet; this waits (without
    /// spinning) until it has published its id, which it does before running any user code.
    ///
    /// # Examples
    ///
    /// ```
    /// let tid = killable::current().tid();
    /// assert!(std::path::Path::new(&format!("/proc/self/task/{tid}")).exists());
    /// ```
    #[doc(alias = "gettid")]
    pub fn tid(&self) -> i32 {
        self.inner.wait_tid()
    }

    /// The thread's process-unique id: killable's numbering, not std's (see [`ThreadId`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let a = killable::spawn(|| ());
    /// let b = killable::spawn(|| ());
    /// assert_ne!(a.thread().id(), b.thread().id());
    /// a.join().unwrap();
    /// b.join().unwrap();
    /// ```
    pub fn id(&self) -> ThreadId {
        ThreadId(self.inner.id)
    }

    /// Whether the thread has finished running: its closure returned or panicked and its
    /// thread-local destructors have run (so a destructor that blocks keeps it running, and
    /// `stop` can still interrupt it there).
    ///
    /// For a thread killable did not create, this turns true when its thread-locals are torn
    /// down at exit. C-level `pthread_key` destructors run after that, unseen.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| ());
    /// let t = h.thread().clone();
    /// h.join().unwrap();
    /// assert!(t.is_finished());
    /// ```
    pub fn is_finished(&self) -> bool {
        self.inner.done_state() != RUNNING
    }

    /// The CPUs the thread may run on, read with `sched_getaffinity(2)`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if the thread has finished (its id may already name another
    /// thread) or stayed in the parent of a `fork`; the OS error if the call fails.
    ///
    /// # Examples
    ///
    /// ```
    /// let cpus = killable::current().affinity().unwrap();
    /// assert!(!cpus.is_empty());
    /// ```
    ///
    /// # References
    ///
    /// * [`sched_getaffinity(2)`](https://man7.org/linux/man-pages/man2/sched_getaffinity.2.html)
    #[doc(alias = "sched_getaffinity")]
    pub fn affinity(&self) -> io::Result<Vec<usize>> {
        self.tid(); // not started yet: wait until its id is published
        // Pinned: the thread cannot finish exiting during the call, so `tid` is still its id
        // and not that of a thread that reused it.
        let set = crate::control::with_live_tid(&self.inner, |tid| {
            sched_getaffinity(Pid::from_raw(tid)).map_err(io::Error::from)
        })
        .ok_or_else(|| crate::diagnose::not_live_error(&self.inner))??;
        Ok((0..CpuSet::count())
            .filter(|&i| set.is_set(i).unwrap_or(false))
            .collect())
    }

    /// Interrupts the thread: sets its interrupt flag and breaks the killable call it is blocked
    /// in, if any.
    ///
    /// The target's current or next killable call fails with [`Interrupted`](crate::Interrupted) (unless it defers
    /// interrupts), [`is_interrupted`](crate::is_interrupted) turns true in it, and its
    /// [`on_interrupt`](crate::on_interrupt) callbacks run here. Idempotent while the flag is set; harmless on a
    /// thread that has finished. On first use this installs killable's signal handler (see
    /// [`set_signal`](crate::set_signal)).
    ///
    /// # Panics
    ///
    /// If killable's signal handler has been replaced by someone else: sending the signal
    /// would then run their handler (or kill the process) instead of breaking the call. Use
    /// [`try_interrupt`](Thread::try_interrupt) to get that as an error.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// let (reader, _writer) = std::io::pipe().unwrap();
    /// let h = killable::spawn(move || {
    ///     let mut buf = [0u8; 16];
    ///     killable::io::Interruptible::new(reader).read(&mut buf)
    /// });
    /// h.interrupt();
    /// let err = h.join().unwrap().unwrap_err();
    /// assert!(killable::is_interrupt(&err));
    /// ```
    ///
    /// # References
    ///
    /// * [`rt_tgsigqueueinfo(2)`](https://man7.org/linux/man-pages/man2/rt_tgsigqueueinfo.2.html)
    #[doc(alias = "pthread_kill")]
    #[doc(alias = "tgkill")]
    #[doc(alias = "rt_tgsigqueueinfo")]
    pub fn interrupt(&self) {
        if let Err(e) = self.try_interrupt() {
            panic!("killable: cannot interrupt {self:?}: {e}");
        }
    }

    /// Like [`interrupt`](Thread::interrupt), but returns an error instead of panicking.
    ///
    /// # Errors
    ///
    /// An error of kind [`io::ErrorKind::Other`] if killable's signal handler was replaced by
    /// another one (the flag is still set, so the target's next check sees it); the OS error if
    /// the handler cannot be installed or the signal cannot be sent.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| killable::sleep(std::time::Duration::from_secs(3600)));
    /// h.thread().try_interrupt().expect("killable's handler is in place");
    /// assert!(h.join().unwrap().is_err());
    /// ```
    pub fn try_interrupt(&self) -> io::Result<()> {
        crate::interrupt::try_interrupt(&self.inner)
    }

    /// Whether the thread's interrupt flag is set.
    ///
    /// # Examples
    ///
    /// ```
    /// let me = killable::current();
    /// assert!(!me.is_interrupted());
    /// me.interrupt();
    /// assert!(me.is_interrupted());
    /// killable::clear_interrupt();
    /// ```
    pub fn is_interrupted(&self) -> bool {
        crate::interrupt::thread_is_interrupted(&self.inner)
    }
    /// Kills the thread: abandons the [`kill_region`](crate::kill_region) it is in, if any, and interrupts it.
    ///
    /// Inside a region, the region's entry returns `Err(Killed)` at once, whatever the foreign
    /// code was doing. Outside one, this acts as [`interrupt`](Thread::interrupt) (and a region
    /// the thread enters later is not run). Under
    /// [`defer_interrupts`](crate::defer_interrupts) the kill waits. Safe to call: the `unsafe`
    /// promise is made where the region is entered.
    ///
    /// # Panics
    ///
    /// As [`interrupt`](Thread::interrupt), if killable's signal handler was replaced.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| killable::sleep(std::time::Duration::from_secs(3600)));
    /// h.thread().kill(); // not in a region: the same as an interrupt
    /// assert!(h.join().unwrap().is_err());
    /// ```
    pub fn kill(&self) {
        if let Err(e) = self.try_kill() {
            panic!("killable: cannot kill {self:?}: {e}");
        }
    }

    /// Like [`kill`](Thread::kill), returning an error instead of panicking.
    ///
    /// # Errors
    ///
    /// As [`Thread::try_interrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| killable::sleep(std::time::Duration::from_secs(3600)));
    /// h.thread().try_kill().unwrap();
    /// assert!(h.join().unwrap().is_err());
    /// ```
    pub fn try_kill(&self) -> io::Result<()> {
        crate::kill::try_kill(&self.inner)
    }

    /// Whether the thread is inside a [`kill_region`](crate::kill_region) right now.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!killable::current().in_kill_region());
    /// ```
    pub fn in_kill_region(&self) -> bool {
        crate::kill::in_kill_region(&self.inner)
    }
    /// Seals the thread: from now on its blocking system calls (reads, receives, accepts,
    /// connects, splices, sleeps, polls, waits, file-lock waits) fail with `ECANCELED`, and the
    /// call it is blocked in is broken. It is also [interrupted](Thread::interrupt).
    ///
    /// This reaches code that retries `EINTR` forever, std's included
    /// (`stdin().read_line`, `TcpListener::accept`, `thread::sleep`): those calls now fail with
    /// an error they do not retry, and the thread unwinds through its own error paths, running
    /// its destructors. Only system calls fail; the thread can still write, take locks, free
    /// memory, release file locks, reap its children ([`Child::try_wait`], and `poll` or
    /// `epoll_wait` with a zero timeout, still work) and exit. It must be on its way out: a
    /// sealed thread cannot be unsealed.
    ///
    /// The kernel's filter sees the call and its arguments, not the descriptor, so a read of a
    /// **non-blocking** descriptor fails with `ECANCELED` too, even with data waiting. No data
    /// is lost: the call never ran, and the bytes stay for another reader. i386 (`int $0x80`)
    /// and x32 system calls all fail with `ECANCELED`.
    ///
    /// killable's own calls report the seal as the interrupt it also is
    /// ([`is_interrupt`](crate::is_interrupt), not [`is_sealed`](crate::is_sealed)), and still
    /// fail after [`clear_interrupt`](crate::clear_interrupt): its I/O with `ECANCELED`, and
    /// [`sleep`](crate::sleep), [`park`](crate::park), [`Condvar`](crate::sync::Condvar) and
    /// [`JoinHandle::wait`](crate::JoinHandle::wait) with [`Interrupted`](crate::Interrupted), since the seal is an
    /// interrupt that cannot be cleared.
    ///
    /// [`Child::try_wait`]: std::process::Child::try_wait
    ///
    /// The filter is installed by the thread itself, from killable's signal handler; this waits
    /// (up to 5 seconds) for it to report back. Sealing a thread that has finished does nothing.
    ///
    /// # Errors
    ///
    /// * The kernel's error if it refuses seccomp (a kernel without it, a sandbox that forbids
    ///   it); nothing else changes (the interrupt is still sent).
    /// * [`io::ErrorKind::TimedOut`] if the thread did not answer within 5 seconds (it blocks
    ///   killable's signal).
    /// * As [`Thread::try_interrupt`] if killable's signal handler was replaced.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::TcpListener;
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// // std's accept retries EINTR: an interrupt alone would not stop it.
    /// let h = killable::spawn(move || listener.accept().map(drop));
    /// std::thread::sleep(std::time::Duration::from_millis(20));
    /// h.thread().seal().unwrap();
    /// let err = h.join().unwrap().unwrap_err();
    /// assert_eq!(err.raw_os_error(), Some(libc::ECANCELED));
    /// ```
    ///
    /// # References
    ///
    /// * [`seccomp(2)`](https://man7.org/linux/man-pages/man2/seccomp.2.html)
    #[doc(alias = "seccomp")]
    pub fn seal(&self) -> io::Result<()> {
        crate::seal::seal(&self.inner)
    }

    /// Whether the thread has been sealed.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!killable::current().is_sealed());
    /// ```
    pub fn is_sealed(&self) -> bool {
        crate::seal::is_sealed(&self.inner.ctl)
    }
    /// Reads what the thread is doing from `/proc/self/task/<tid>/`: its state, the system
    /// call it is blocked in with its arguments, and its kernel wait channel. `Display` prints
    /// it as one line, such as `blocked in read(fd 3), waiting in pipe_read`.
    ///
    /// A thread that has not started yet is waited for (as [`tid`](Thread::tid) does); the
    /// thread cannot finish while `/proc` is read, so the reads are of this thread even if it
    /// is about to end.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if the thread has finished (its id may already name
    /// another thread) or stayed in the parent of a `fork`; the error of reading `/proc`
    /// otherwise (for example if it is not mounted).
    ///
    /// # Examples
    ///
    /// ```
    /// let (reader, _writer) = std::io::pipe().unwrap();
    /// let h = killable::spawn(move || {
    ///     use std::io::Read;
    ///     killable::io::Interruptible::new(reader).read(&mut [0u8; 1])
    /// });
    /// std::thread::sleep(std::time::Duration::from_millis(50));
    /// let d = h.thread().diagnose().unwrap();
    /// println!("{d}"); // blocked in read(fd 3), waiting in pipe_read
    /// h.interrupt();
    /// let t = h.thread().clone();
    /// h.join().unwrap().unwrap_err();
    /// let e = t.diagnose().unwrap_err(); // finished
    /// assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    /// ```
    pub fn diagnose(&self) -> io::Result<Diagnosis> {
        crate::diagnose::diagnose(&self.inner)
    }
    /// Makes the thread's next (or current) [`park`](crate::park) return, like [`std::thread::Thread::unpark`].
    ///
    /// It wakes killable's [`park`](crate::park) only, not [`std::thread::park`]: the two keep
    /// separate tokens (a std `park` is woken by std's `Thread::unpark`, which
    /// `std::thread::current()` gives inside the thread).
    ///
    /// # Examples
    ///
    /// ```
    /// killable::current().unpark();
    /// assert!(killable::park().is_ok()); // the token was there: returns at once
    /// ```
    pub fn unpark(&self) {
        crate::sync::unpark(&self.inner)
    }
}

impl fmt::Debug for Thread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Thread")
            .field("id", &self.id())
            .field("name", &self.name())
            .field("tid", &self.inner.tid.load(Ordering::Relaxed).max(0))
            .field("managed", &self.inner.managed)
            .finish_non_exhaustive()
    }
}

/// The calling thread's [`Thread`].
///
/// Works in every thread: threads killable spawned, the main thread, `std::thread`s, and
/// threads created by C code. A thread killable did not create is adopted on the first call
/// and keeps the same `Thread` (same [`id`](Thread::id)) until it exits.
///
/// # Examples
///
/// ```
/// let main = killable::current();
/// assert_eq!(main.tid(), std::process::id() as i32);
/// assert_eq!(main.id(), killable::current().id());
/// ```
pub fn current() -> Thread {
    Thread {
        inner: crate::control::current_inner(),
    }
}
