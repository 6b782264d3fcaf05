//! `Builder` and `spawn`: threads created with `pthread_create` (their handle is in
//! `join_handle.rs`).
//!
//! # Internal workings
//!
//! `spawn` boxes the closure together with the thread's `Thread` and result packet, hands the
//! box to `pthread_create` through `Box::into_raw`, and rebuilds and drops it if
//! `pthread_create` fails (pthread functions return their error; they do not set errno). The
//! start routine publishes the kernel tid, names the thread from inside, installs an alternate
//! signal stack, runs the closure under `catch_unwind` (a panic never crosses the `extern "C"`
//! boundary) and stores the result. Before the closure it registers an exit guard in a
//! thread-local; registered first, its destructor is the last thread-local destructor to run
//! (the C library runs them in reverse order), and it sets `Inner::done` and wakes the joiners.
//! So a thread counts as finished only once its thread-local destructors have run. Once the
//! closure has returned the thread is interrupted but never sealed (`Control::unwinding_out`):
//! std's calls panic on `ECANCELED`, and a panic in a thread-local destructor aborts the
//! process. `join` waits on `done`, then `pthread_join`s to reclaim the thread's resources.

use std::cell::UnsafeCell;
use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use nix::sched::CpuSet;
use nix::unistd::{SysconfVar, sysconf};

use crate::control::{CURRENT, INTERRUPT, Inner, exit_protocol, never_started};
use crate::join_handle::{JoinHandle, Packet};
use crate::registry;
use crate::stack::{self, AltStack};
use crate::thread::Thread;
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
    group: Option<crate::group::Group>,
    /// The crate's own threads (pool workers, the signal thread): in no group, whoever spawns
    /// them (`no_group`).
    no_group: bool,
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
    /// The full name is kept in [`Thread::name`](crate::Thread::name); the kernel name (`/proc/self/task/<tid>/comm`,
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

    /// Puts the thread in `group` ([`Group`](crate::Group)) instead of the spawner's group.
    ///
    /// Without this, a thread spawned by a member of a group joins that group (and stays in it
    /// after its spawner ends); a thread spawned by a thread in no group joins none.
    ///
    /// # Examples
    ///
    /// ```
    /// let workers = killable::Group::new("workers");
    /// let h = killable::Builder::new().group(&workers).spawn(|| killable::park()).unwrap();
    /// assert_eq!(workers.threads().len(), 1);
    /// workers.interrupt();
    /// assert!(h.join().unwrap().is_err());
    /// ```
    pub fn group(mut self, group: &crate::group::Group) -> Builder {
        self.group = Some(group.clone());
        self.no_group = false;
        self
    }

    /// Puts the thread in no group, whatever group its spawner is in, and exempts it from the
    /// spawn rule: for the crate's own threads, which serve every caller (a shared pool's
    /// worker, the signal thread) and must not be stopped with the group of whichever member
    /// happened to create them, nor start interrupted because that caller was.
    pub(crate) fn no_group(mut self) -> Builder {
        self.group = None;
        self.no_group = true;
        self
    }

    /// Spawns a thread in `scope`, with this builder's configuration, like
    /// [`std::thread::Builder::spawn_scoped`]: the closure may borrow what outlives the scope.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Builder::spawn).
    ///
    /// # Examples
    ///
    /// ```
    /// let words = vec!["a", "b"];
    /// killable::scope(|s| {
    ///     let h = killable::Builder::new().name("counter".into())
    ///         .spawn_scoped(s, || words.len())
    ///         .unwrap();
    ///     assert_eq!(h.join().unwrap(), 2);
    /// });
    /// ```
    pub fn spawn_scoped<'scope, 'env, F, T>(
        self,
        scope: &'scope crate::scope::Scope<'scope, 'env>,
        f: F,
    ) -> io::Result<crate::scope::ScopedJoinHandle<'scope, T>>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        crate::scope::spawn_in(self, scope, f)
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
        // SAFETY: `F` and `T` are 'static: nothing they borrow can end before the thread.
        unsafe { self.spawn_unchecked(f, &[]) }
    }

    /// `spawn` without the 'static bounds, also listing the thread in `sets` (a scope's and
    /// those of the scopes around it) before the spawn rule is applied; the thread starts
    /// interrupted if one of them is stopping (`ThreadSet::stopping`).
    ///
    /// # Safety
    ///
    /// * Everything `f` and its result borrow must outlive the thread's use of them: the caller
    ///   (`scope.rs`) waits until the closure has run and its result has been dropped or taken
    ///   before anything borrowed can end.
    pub(crate) unsafe fn spawn_unchecked<F, T>(
        self,
        f: F,
        sets: &[&crate::group::ThreadSet],
    ) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send,
        T: Send,
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
            // SAFETY: `attr` is initialised; `set` points to a live `CpuSet`, which is a
            // `cpu_set_t` (checked at compile time above `cpu_set`), and its size is passed.
            // nix has no wrapper for pthread attributes.
            let r = unsafe {
                libc::pthread_attr_setaffinity_np(
                    &mut attr.0,
                    std::mem::size_of::<CpuSet>(),
                    (set as *const CpuSet).cast::<libc::cpu_set_t>(),
                )
            };
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
        }

        let thread = Thread {
            inner: Arc::new(Inner::new(name, true, self.daemon)),
        };
        // Group and scope membership come first, before the spawn rule's check: an interrupt of
        // the set that misses the new thread in its listing has already set the spawner's bit,
        // which the check then sees (`group.rs`).
        let group = if self.no_group {
            None
        } else {
            self.group.clone().or_else(crate::group::current)
        };
        let f = crate::group::member(group.as_ref(), &thread, sets, f);
        // The spawn rule: a thread spawned by a thread with a pending interrupt starts
        // interrupted (the spawner's own interrupt stays pending). A thread that is being
        // stopped cannot hand its work to a new thread that escapes the stop.
        // A set that is stopping (a scope that saw a panic or whose owner was interrupted)
        // starts its newcomers interrupted the same way, after the listing above (`group.rs`).
        // The crate's own service threads (`no_group`) are exempt: a pool worker created for an
        // interrupted caller serves every later caller too (the caller's job itself starts
        // interrupted: `blocking.rs`), and a stop's rounds still find them in the registry.
        if !self.no_group
            && (crate::interrupt::is_interrupted() || sets.iter().any(|s| s.stopping()))
        {
            thread.inner.ctl.set_quietly(INTERRUPT);
        }
        // A sealed spawner's thread inherits the kernel's filter at `clone`: it starts sealed
        // (and a spawner whose seal is pending hands on the request).
        crate::seal::inherit(&thread.inner.ctl);
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
        let routine = start_of(&boxed);
        let data = Box::into_raw(boxed);
        // SAFETY: `attr` is initialised; `routine` (`start` for this closure type) takes
        // ownership of `data` exactly once if and only if pthread_create succeeds.
        let r = unsafe { libc::pthread_create(native.as_mut_ptr(), &attr.0, routine, data.cast()) };
        if r != 0 {
            // SAFETY: the thread was not created, so the box is still ours to rebuild and drop.
            drop(unsafe { Box::from_raw(data) });
            // It was listed already: whoever took a snapshot meanwhile sees it finished, never
            // waits for a tid that will not come, and never signals anything.
            never_started(&thread.inner);
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

// nix's `CpuSet` is `#[repr(transparent)]` over `libc::cpu_set_t` (its source says so and its
// own `sched_setaffinity` passes the inner set with `size_of::<CpuSet>()`), but the field is
// private, so the layout is checked here: a change in nix fails the build instead of handing
// `pthread_attr_setaffinity_np` a different struct.
const _: () = assert!(
    std::mem::size_of::<CpuSet>() == std::mem::size_of::<libc::cpu_set_t>()
        && std::mem::align_of::<CpuSet>() == std::mem::align_of::<libc::cpu_set_t>()
);

fn cpu_set(cpus: &[usize]) -> io::Result<CpuSet> {
    if cpus.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "affinity: the CPU set is empty",
        ));
    }
    let configured = sysconf(SysconfVar::_NPROCESSORS_CONF)
        .ok()
        .flatten()
        .unwrap_or(1)
        .max(1) as usize;
    let limit = configured.min(CpuSet::count());
    let mut set = CpuSet::new();
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
        // Cannot fail: `cpu` is below `CpuSet::count()`.
        set.set(cpu).map_err(io::Error::from)?;
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

struct Start<F, T> {
    thread: Thread,
    packet: Arc<Packet<T>>,
    f: F,
}

/// The start routine for a boxed `Start` (whose closure type has no name to write).
fn start_of<F, T>(_: &Start<F, T>) -> extern "C" fn(*mut libc::c_void) -> *mut libc::c_void
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    start::<F, T>
}

extern "C" fn start<F, T>(data: *mut libc::c_void) -> *mut libc::c_void
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    // SAFETY: `data` is the `Box<Start<F, T>>` leaked by `spawn`, handed to us exactly once.
    let start = unsafe { Box::from_raw(data.cast::<Start<F, T>>()) };
    let Start { thread, packet, f } = *start;
    let inner: &Inner = &thread.inner;
    inner.publish_tid();
    CURRENT.with(|c| c.set(inner));
    // A seal requested before the tid was published sent no signal, and one whose signal landed
    // before CURRENT was set found no control block: install it now. The fence pairs with the
    // one in `seal_async` (the sealer stores its request, fences, then reads the tid).
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
    // The thread counts as finished only once its thread-locals are destroyed: a destructor can
    // block (in a killable call that `stop` must still be able to break), and `join` must not
    // return before it is done. Registered before the closure runs, this guard's destructor is
    // the last thread-local destructor to run (the C library runs them in reverse order of
    // registration).
    let mut exit = Some(ExitGuard {
        thread: thread.clone(),
        alt,
    });
    let _ = EXIT.try_with(|slot| *slot.borrow_mut() = exit.take());

    let result = panic::catch_unwind(AssertUnwindSafe(f));
    inner.ctl.unwinding_out.store(true, Ordering::SeqCst);
    // SAFETY: only this thread writes the cell, and before `done` is published (see Packet).
    unsafe { *packet.result.get() = Some(result) };
    drop(packet);
    // Still here only if thread-locals were unavailable (never at a thread's start): finish now.
    drop(exit);
    std::ptr::null_mut()
}

thread_local! {
    /// The calling thread's exit guard (see `start`).
    static EXIT: std::cell::RefCell<Option<ExitGuard>> = const { std::cell::RefCell::new(None) };
}

/// Finishes a spawned thread when thread-locals are destroyed (see `start`).
struct ExitGuard {
    thread: Thread,
    alt: Option<AltStack>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        finish(&self.thread.inner, self.alt.take());
    }
}

/// The end of a spawned thread: its alternate stack goes, no signal may reach it any more, its
/// joiners are woken, and it leaves the registry once its handle is gone too.
fn finish(inner: &Inner, alt: Option<AltStack>) {
    if let Some(alt) = alt {
        alt.release(inner);
    }
    CURRENT.with(|c| c.set(std::ptr::null()));
    exit_protocol(inner);
    registry::release(inner);
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
    // `buf` ends with a NUL (the name has none: it was a CString), and holds at most 16 bytes,
    // as PR_SET_NAME requires. Naming is best effort, like std's: a failure is ignored.
    if let Ok(name) = CStr::from_bytes_until_nul(&buf) {
        let _ = nix::sys::prctl::set_name(name);
    }
}
