//! `Builder`, `spawn` and `JoinHandle`: threads created with `pthread_create`.
//!
//! # Internal workings
//!
//! `spawn` boxes the closure together with the thread's `Thread` and result packet, hands the
//! box to `pthread_create` through `Box::into_raw`, and rebuilds and drops it if
//! `pthread_create` fails (pthread functions return their error; they do not set errno). The
//! start routine publishes the kernel tid, names the thread from inside, installs an alternate
//! signal stack, runs the closure under `catch_unwind` (a panic never crosses the `extern "C"`
//! boundary), stores the result, and finally sets `Inner::done` and wakes the joiners. `join`
//! waits on that futex word, then `pthread_join`s to reclaim the thread's resources.

use std::cell::UnsafeCell;
use std::ffi::CString;
use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::Result as ThreadResult;
use std::time::{Duration, Instant};

use crate::futex;
use crate::interrupt::INTERRUPT;
use crate::registry;
use crate::stack::{self, AltStack};
use crate::thread::{CURRENT, Inner, LOST_IN_FORK, Thread};
use std::sync::atomic::Ordering;

/// The kernel keeps at most 15 bytes of a thread's name (16 with the NUL).
const OS_NAME_MAX: usize = 15;

/// Configures a new thread before it is spawned, like [`std::thread::Builder`].
///
/// # Examples
///
/// ```
/// let handle = killable::Builder::new()
///     .name("reader".into())
///     .stack_size(256 * 1024)
///     .spawn(|| killable::current().name().map(str::to_owned))
///     .unwrap();
/// assert_eq!(handle.join().unwrap().as_deref(), Some("reader"));
/// ```
#[must_use = "a Builder does nothing until `spawn` is called"]
#[derive(Debug, Default, Clone)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
    affinity: Option<Vec<usize>>,
    daemon: bool,
}

impl Builder {
    /// A builder with no name, the default stack size, no affinity and `daemon(false)`.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::Builder::new().spawn(|| 1).unwrap();
    /// assert_eq!(h.join().unwrap(), 1);
    /// ```
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the thread.
    ///
    /// The full name is kept in [`Thread::name`]; the kernel name (`/proc/self/task/<tid>/comm`,
    /// shown by `top` and `gdb`) is set from inside the new thread and truncated to 15 bytes on
    /// a character boundary. A name containing a NUL byte makes [`spawn`](Builder::spawn) fail
    /// with [`io::ErrorKind::InvalidInput`].
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::Builder::new().name("io".into()).spawn(|| ()).unwrap();
    /// assert_eq!(h.thread().name(), Some("io"));
    /// h.join().unwrap();
    /// ```
    pub fn name(mut self, name: String) -> Builder {
        self.name = Some(name);
        self
    }

    /// Sets the stack size in bytes.
    ///
    /// Without this, the size is `RUST_MIN_STACK` from the environment (read once), else
    /// 2 MiB. A size below what the C library needs for a thread (its minimum plus thread-local
    /// storage) is raised to that minimum, and every size is rounded up to the page size, as
    /// std does. A size the system cannot provide makes [`spawn`](Builder::spawn) fail with an
    /// error that names the size.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::Builder::new().stack_size(64 * 1024).spawn(|| 2).unwrap();
    /// assert_eq!(h.join().unwrap(), 2);
    /// ```
    pub fn stack_size(mut self, size: usize) -> Builder {
        self.stack_size = Some(size);
        self
    }

    /// Restricts the thread to the given CPUs (indices as in `/proc/cpuinfo`), set at creation
    /// with `pthread_attr_setaffinity_np`.
    ///
    /// An empty set or an index the machine does not have makes [`spawn`](Builder::spawn) fail
    /// with [`io::ErrorKind::InvalidInput`].
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::Builder::new()
    ///     .affinity([0])
    ///     .spawn(|| killable::current().affinity().unwrap())
    ///     .unwrap();
    /// assert_eq!(h.join().unwrap(), vec![0]);
    /// ```
    #[doc(alias = "pthread_attr_setaffinity_np")]
    pub fn affinity<I: IntoIterator<Item = usize>>(mut self, cpus: I) -> Builder {
        self.affinity = Some(cpus.into_iter().collect());
        self
    }

    /// Marks the thread as a daemon, in Python's sense: a process shutting down through
    /// killable does not wait for it. The flag is visible in [`threads`](crate::threads).
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::Builder::new().daemon(true).spawn(|| ()).unwrap();
    /// h.join().unwrap();
    /// ```
    pub fn daemon(mut self, daemon: bool) -> Builder {
        self.daemon = daemon;
        self
    }

    /// Spawns the thread with `pthread_create`.
    ///
    /// # Errors
    ///
    /// * [`io::ErrorKind::InvalidInput`]: a name with a NUL byte, an empty CPU set or a CPU the
    ///   machine does not have, a stack size that overflows when rounded to the page size.
    /// * The OS error of `pthread_create` otherwise (`EAGAIN` for too many threads or a stack
    ///   that cannot be mapped; the message names the stack size).
    ///
    /// # Examples
    ///
    /// ```
    /// let err = killable::Builder::new().name("a\0b".into()).spawn(|| ()).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// ```
    ///
    /// # References
    ///
    /// * [`pthread_create(3)`](https://man7.org/linux/man-pages/man3/pthread_create.3.html)
    #[doc(alias = "pthread_create")]
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let name = match self.name {
            Some(n) => Some(CString::new(n).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "thread name contains a NUL byte at position {}",
                        e.nul_position()
                    ),
                )
            })?),
            None => None,
        };
        let cpus = self.affinity.as_deref().map(cpu_set).transpose()?;
        stack::install_overflow_handler();

        let mut attr = Attr::new()?;
        let requested = self.stack_size.unwrap_or_else(stack::default_stack_size);
        let size = stack::round_stack_size(requested, stack::min_stack_size(&attr.0))?;
        // SAFETY: `attr` is initialised; the size was checked against the C library's minimum.
        let r = unsafe { libc::pthread_attr_setstacksize(&mut attr.0, size) };
        if r != 0 {
            return Err(io::Error::new(
                io::Error::from_raw_os_error(r).kind(),
                format!(
                    "stack size {size} rejected by pthread_attr_setstacksize: {}",
                    io::Error::from_raw_os_error(r)
                ),
            ));
        }
        if let Some(set) = &cpus {
            // SAFETY: `set` is a valid cpu_set_t whose size is passed.
            let r = unsafe {
                libc::pthread_attr_setaffinity_np(
                    &mut attr.0,
                    std::mem::size_of::<libc::cpu_set_t>(),
                    set,
                )
            };
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
        }

        let thread = Thread {
            inner: Arc::new(Inner::new(name, true, self.daemon)),
        };
        // The spawn rule: a thread spawned by a thread with a pending interrupt starts
        // interrupted (the spawner's own interrupt stays pending). A thread that is being
        // stopped cannot hand its work to a new thread that escapes the stop.
        if crate::interrupt::is_interrupted() {
            thread.inner.ctl.state.fetch_or(INTERRUPT, Ordering::SeqCst);
        }
        let packet = Arc::new(Packet {
            result: UnsafeCell::new(None),
        });
        let boxed = Box::new(Start {
            thread: thread.clone(),
            packet: packet.clone(),
            f,
        });
        registry::insert(&thread);

        let mut native = MaybeUninit::<libc::pthread_t>::uninit();
        let data = Box::into_raw(boxed);
        // SAFETY: `attr` is initialised; `start::<F, T>` takes ownership of `data` exactly once
        // if and only if pthread_create succeeds.
        let r = unsafe {
            libc::pthread_create(native.as_mut_ptr(), &attr.0, start::<F, T>, data.cast())
        };
        if r != 0 {
            // SAFETY: the thread was not created, so the box is still ours to rebuild and drop.
            drop(unsafe { Box::from_raw(data) });
            registry::release(&thread.inner);
            registry::release(&thread.inner);
            let err = io::Error::from_raw_os_error(r);
            return Err(match r {
                libc::EAGAIN | libc::ENOMEM => io::Error::new(
                    err.kind(),
                    format!("pthread_create with a stack of {size} bytes: {err}"),
                ),
                libc::EINVAL if cpus.is_some() => io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "pthread_create with a stack of {size} bytes: CPU set {:?} is not \
                         allowed for this process ({err})",
                        self.affinity.unwrap_or_default()
                    ),
                ),
                _ => io::Error::new(
                    err.kind(),
                    format!("pthread_create with a stack of {size} bytes: {err}"),
                ),
            });
        }
        Ok(JoinHandle {
            thread,
            packet,
            // SAFETY: pthread_create succeeded, so it wrote the thread handle.
            native: unsafe { native.assume_init() },
            owns: true,
        })
    }
}

/// Spawns a thread with the default [`Builder`] and returns its [`JoinHandle`].
///
/// # Panics
///
/// Panics if the thread cannot be created, like [`std::thread::spawn`]; use
/// [`Builder::spawn`] to handle the error.
///
/// # Examples
///
/// ```
/// let handle = killable::spawn(|| 6 * 7);
/// assert_eq!(handle.join().unwrap(), 42);
/// ```
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new().spawn(f).expect("failed to spawn thread")
}

fn cpu_set(cpus: &[usize]) -> io::Result<libc::cpu_set_t> {
    if cpus.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "affinity: the CPU set is empty",
        ));
    }
    // SAFETY: sysconf has no preconditions.
    let configured = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as usize;
    let limit = configured.min(libc::CPU_SETSIZE as usize);
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "affinity: CPU {cpu} does not exist (this machine has CPUs 0 to {})",
                    limit - 1
                ),
            ));
        }
        // SAFETY: `cpu` is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    Ok(set)
}

/// A `pthread_attr_t` destroyed on drop.
struct Attr(libc::pthread_attr_t);

impl Attr {
    fn new() -> io::Result<Attr> {
        // SAFETY: pthread_attr_init initialises the zeroed storage.
        let mut attr = Attr(unsafe { std::mem::zeroed() });
        // SAFETY: as above.
        let r = unsafe { libc::pthread_attr_init(&mut attr.0) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(attr)
    }
}

impl Drop for Attr {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::pthread_attr_destroy(&mut self.0) };
    }
}

/// Where the thread leaves its result for `join`.
struct Packet<T> {
    result: UnsafeCell<Option<ThreadResult<T>>>,
}

// SAFETY: the cell is written once by the spawned thread before it publishes `Inner::done`
// (Release) and read once by the joiner after observing it (Acquire); never both at once.
unsafe impl<T: Send> Sync for Packet<T> {}

struct Start<F, T> {
    thread: Thread,
    packet: Arc<Packet<T>>,
    f: F,
}

extern "C" fn start<F, T>(data: *mut libc::c_void) -> *mut libc::c_void
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: `data` is the `Box<Start<F, T>>` leaked by `spawn`, handed to us exactly once.
    let start = unsafe { Box::from_raw(data.cast::<Start<F, T>>()) };
    let Start { thread, packet, f } = *start;
    let inner: &Inner = &thread.inner;
    inner.publish_tid();
    CURRENT.with(|c| c.set(inner));
    // A seal requested before the tid was published sent no signal, and one whose signal landed
    // before CURRENT was set found no control block: install it now. The fence pairs with the
    // one in `with_live_tid` (the sealer stores its request, fences, then reads the tid).
    std::sync::atomic::fence(Ordering::SeqCst);
    crate::seal::on_signal(&inner.ctl);
    // A thread inherits its creator's signal mask; a creator that blocked killable's signal
    // (say, for signalfd) must not make this thread impossible to interrupt.
    crate::signal::unblock_in_current_thread();
    if let Some(name) = &inner.name {
        set_os_name(name);
    }
    let alt = AltStack::install();
    stack::record_guard(inner);

    let result = panic::catch_unwind(AssertUnwindSafe(f));
    // SAFETY: only this thread writes the cell, and before `done` is published (see Packet).
    unsafe { *packet.result.get() = Some(result) };
    drop(packet);

    drop(alt);
    CURRENT.with(|c| c.set(std::ptr::null()));
    crate::thread::exit_protocol(inner);
    registry::release(inner);
    std::ptr::null_mut()
}

/// Sets the kernel's name for the calling thread, truncated to 15 bytes on a char boundary.
fn set_os_name(name: &CString) {
    let name = name.to_str().unwrap_or("");
    let mut end = name.len().min(OS_NAME_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let mut buf = [0u8; OS_NAME_MAX + 1];
    buf[..end].copy_from_slice(&name.as_bytes()[..end]);
    // SAFETY: `buf` is NUL-terminated and at most 16 bytes, as PR_SET_NAME requires.
    unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr()) };
}

/// `CLOCK_REALTIME` now plus `d` (what `pthread_timedjoin_np` takes).
fn realtime_after(d: Duration) -> libc::timespec {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let nanos = now.tv_nsec as u64 + d.subsec_nanos() as u64;
    let secs = (d.as_secs().min(i64::MAX as u64 / 2) as i64)
        .saturating_add(now.tv_sec)
        .saturating_add((nanos / 1_000_000_000) as i64);
    libc::timespec {
        tv_sec: secs,
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    }
}

/// An owned permission to join a thread; dropping it detaches the thread.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let slow = killable::spawn(|| { std::thread::sleep(Duration::from_millis(200)); "done" });
/// let slow = slow.join_timeout(Duration::from_millis(1)).unwrap_err(); // still running
/// assert_eq!(slow.join().unwrap(), "done");
/// ```
pub struct JoinHandle<T> {
    thread: Thread,
    packet: Arc<Packet<T>>,
    native: libc::pthread_t,
    /// Still responsible for joining or detaching `native`.
    owns: bool,
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
        // SAFETY: `native` is a joinable thread that we own (not joined or detached before).
        let r = unsafe { libc::pthread_join(self.native, std::ptr::null_mut()) };
        assert_eq!(
            r,
            0,
            "pthread_join failed: {}",
            io::Error::from_raw_os_error(r)
        );
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
    /// use std::time::Duration;
    /// let h = killable::spawn(|| 1);
    /// assert_eq!(h.join_timeout(Duration::from_secs(10)).ok().unwrap().unwrap(), 1);
    /// ```
    pub fn join_timeout(self, timeout: Duration) -> Result<ThreadResult<T>, JoinHandle<T>> {
        let deadline = Instant::now().checked_add(timeout);
        if !self
            .thread
            .inner
            .wait_done(deadline.map(futex::monotonic_timespec).as_ref())
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

    /// Whether the thread has finished running its closure.
    ///
    /// [`join`](JoinHandle::join) may still wait briefly for the thread's thread-local
    /// destructors, which run after the closure.
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
