//! Diagnosis: what a thread is doing, read from `/proc/self/task/<tid>/` while the thread is
//! pinned (`control::with_live_tid`), with system-call names from the architecture's table
//! (`syscall_names.rs`).

use std::fmt;
use std::fs;
use std::io;

use crate::control::{Inner, LOST_IN_FORK, RUNNING, with_live_tid};

/// What a thread is doing, read from `/proc/self/task/<tid>/` (see [`Thread::diagnose`](crate::Thread::diagnose)).
///
/// # Examples
///
/// ```
/// let d = killable::current().diagnose().unwrap();
/// assert_eq!(d.state(), 'R'); // this thread is running
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    state: char,
    syscall: Option<(i64, [u64; 6])>,
    wchan: Option<String>,
    in_region: bool,
    sealed: bool,
}

impl Diagnosis {
    /// The kernel's one-letter state (`R` running, `S` sleeping, `D` uninterruptible, `T`
    /// stopped).
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| killable::sleep(std::time::Duration::from_secs(3600)));
    /// std::thread::sleep(std::time::Duration::from_millis(50));
    /// assert_eq!(h.thread().diagnose().unwrap().state(), 'S');
    /// h.interrupt();
    /// let _ = h.join();
    /// ```
    pub fn state(&self) -> char {
        self.state
    }

    /// The system call the thread is blocked in: its number and its six arguments.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| killable::sleep(std::time::Duration::from_secs(3600)));
    /// std::thread::sleep(std::time::Duration::from_millis(50));
    /// let (nr, _args) = h.thread().diagnose().unwrap().syscall().unwrap();
    /// assert_eq!(nr, libc::SYS_clock_nanosleep);
    /// h.interrupt();
    /// let _ = h.join();
    /// ```
    pub fn syscall(&self) -> Option<(i64, [u64; 6])> {
        self.syscall
    }

    /// The system call's name, from the architecture's system call table (`None` for a number
    /// the table does not have: a call added by a kernel newer than the table).
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| killable::park());
    /// std::thread::sleep(std::time::Duration::from_millis(50));
    /// assert_eq!(h.thread().diagnose().unwrap().syscall_name(), Some("futex"));
    /// h.interrupt();
    /// let _ = h.join();
    /// ```
    pub fn syscall_name(&self) -> Option<&'static str> {
        self.syscall
            .and_then(|(nr, _)| crate::syscall_names::name(nr))
    }

    /// The kernel function the thread waits in (its wait channel), such as `pipe_read`.
    ///
    /// # Examples
    ///
    /// ```
    /// let h = killable::spawn(|| killable::park());
    /// std::thread::sleep(std::time::Duration::from_millis(50));
    /// println!("waiting in {:?}", h.thread().diagnose().unwrap().wchan());
    /// h.interrupt();
    /// let _ = h.join();
    /// ```
    pub fn wchan(&self) -> Option<&str> {
        self.wchan.as_deref()
    }
}

/// System calls whose first argument is a file descriptor (the `*at` calls are left out: their
/// first argument is usually `AT_FDCWD`).
const FD_FIRST: &[i64] = &[
    // Reading and writing.
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_sendfile,
    libc::SYS_splice,
    libc::SYS_tee,
    libc::SYS_vmsplice,
    libc::SYS_copy_file_range,
    #[cfg(target_arch = "x86_64")] // not in the generic table
    libc::SYS_getdents,
    libc::SYS_getdents64,
    libc::SYS_lseek,
    libc::SYS_readahead,
    // Sockets.
    libc::SYS_connect,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_sendmmsg,
    libc::SYS_recvmmsg,
    libc::SYS_shutdown,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    // Control, locks and syncing.
    libc::SYS_ioctl,
    libc::SYS_fcntl,
    libc::SYS_flock,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_syncfs,
    libc::SYS_sync_file_range,
    libc::SYS_ftruncate,
    libc::SYS_fallocate,
    libc::SYS_fadvise64,
    libc::SYS_close,
    libc::SYS_fstat,
    libc::SYS_fstatfs,
    libc::SYS_fchdir,
    libc::SYS_fchmod,
    libc::SYS_fchown,
    libc::SYS_fgetxattr,
    libc::SYS_fsetxattr,
    libc::SYS_flistxattr,
    libc::SYS_fremovexattr,
    // Waiting on a descriptor.
    #[cfg(target_arch = "x86_64")] // not in the generic table
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_epoll_ctl,
    libc::SYS_mq_timedsend,
    libc::SYS_mq_timedreceive,
    libc::SYS_io_uring_enter,
    libc::SYS_timerfd_settime,
    libc::SYS_timerfd_gettime,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_rm_watch,
    libc::SYS_fanotify_mark,
    // Descriptors that name something else.
    libc::SYS_setns,
    libc::SYS_finit_module,
    libc::SYS_pidfd_send_signal,
    libc::SYS_pidfd_getfd,
    libc::SYS_process_madvise,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
];

fn first_arg_is_fd(nr: i64) -> bool {
    FD_FIRST.contains(&nr)
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.state, self.syscall) {
            ('R', _) => f.write_str("running")?,
            (_, Some((nr, args))) => {
                let name = crate::syscall_names::name(nr)
                    .map_or_else(|| format!("syscall {nr}"), str::to_owned);
                if first_arg_is_fd(nr) {
                    write!(f, "blocked in {name}(fd {})", args[0] as i32)?;
                } else if nr == libc::SYS_futex {
                    let op = match args[1] & 0x7f {
                        0 => "FUTEX_WAIT".to_owned(),
                        9 => "FUTEX_WAIT_BITSET".to_owned(),
                        6 => "FUTEX_LOCK_PI".to_owned(),
                        other => format!("op {other}"),
                    };
                    write!(f, "blocked in futex({:#x}, {op})", args[0])?;
                } else {
                    write!(f, "blocked in {name}")?;
                }
            }
            ('S' | 'D', None) => f.write_str("blocked, not in a system call")?,
            (s, None) => write!(f, "in state {s}")?,
        }
        if let Some(w) = &self.wchan {
            write!(f, ", waiting in {w}")?;
        }
        if self.in_region {
            f.write_str(", inside a kill region")?;
        }
        if self.sealed {
            f.write_str(", sealed")?;
        }
        Ok(())
    }
}

/// The error of a per-tid query (`diagnose`, `affinity`) of a thread that has no live kernel
/// thread in this process: it finished (its id may already name another thread), or it stayed
/// in the parent of a `fork`.
pub(crate) fn not_live_error(thread: &Inner) -> io::Error {
    let id = thread.id;
    let who = match thread.name_str() {
        Some(name) => format!("thread '{name}' (id {id})"),
        None => format!("thread {id}"),
    };
    let what = if thread.done_state() == LOST_IN_FORK {
        "is not in this process: it stayed in the parent of a fork"
    } else {
        "has finished"
    };
    io::Error::new(io::ErrorKind::NotFound, format!("{who} {what}"))
}

pub(crate) fn diagnose(this: &Inner) -> io::Result<Diagnosis> {
    diagnose_live(this).unwrap_or_else(|| Err(not_live_error(this)))
}

/// `diagnose`, or None if the thread has no live kernel thread in this process.
pub(crate) fn diagnose_live(this: &Inner) -> Option<io::Result<Diagnosis>> {
    if this.done_state() != RUNNING {
        return None;
    }
    this.wait_tid(); // not started yet: wait until its id is published
    with_live_tid(this, |tid| {
        let dir = format!("/proc/self/task/{tid}");
        let stat = fs::read_to_string(format!("{dir}/stat"))?;
        let mut d = Diagnosis {
            state: stat
                .rsplit(')')
                .next()
                .and_then(|s| s.trim_start().chars().next())
                .unwrap_or('?'),
            syscall: None,
            wchan: None,
            in_region: crate::kill::in_kill_region(this),
            sealed: crate::seal::is_sealed(&this.ctl),
        };
        if let Ok(sc) = fs::read_to_string(format!("{dir}/syscall")) {
            let mut it = sc.split_whitespace();
            if let Some(Ok(nr)) = it.next().map(str::parse::<i64>) {
                if nr >= 0 {
                    let mut args = [0u64; 6];
                    for a in &mut args {
                        *a = it
                            .next()
                            .and_then(|x| u64::from_str_radix(x.trim_start_matches("0x"), 16).ok())
                            .unwrap_or(0);
                    }
                    d.syscall = Some((nr, args));
                }
            }
        }
        if let Ok(w) = fs::read_to_string(format!("{dir}/wchan")) {
            let w = w.trim();
            if !w.is_empty() && w != "0" {
                d.wchan = Some(w.to_owned());
            }
        }
        Ok(d)
    })
}
