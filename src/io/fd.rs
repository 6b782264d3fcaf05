//! Reads and writes on a descriptor: `Read` and `Write` for [`Interruptible<T>`] and
//! `&Interruptible<T>`, vectored calls included, each one system call through the stub.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd};

use super::Interruptible;
use crate::syscall::call;

/// The descriptor as a system call argument.
#[inline(always)]
pub(super) fn raw<T: AsFd>(t: &T) -> libc::c_long {
    t.as_fd().as_raw_fd() as libc::c_long
}

/// A successful call's return value as a byte count (the stub turned negatives into errors).
#[inline(always)]
pub(super) fn len_of(r: libc::c_long) -> usize {
    r as usize
}

/// `read(2)` through the stub, at most `isize::MAX` bytes.
#[inline(always)]
pub(super) fn sys_read(fd: libc::c_long, buf: &mut [u8]) -> io::Result<usize> {
    let len = buf.len().min(isize::MAX as usize);
    Ok(len_of(call(
        libc::SYS_read,
        [
            fd,
            buf.as_mut_ptr() as libc::c_long,
            len as libc::c_long,
            0,
            0,
            0,
        ],
    )?))
}

/// `readv(2)` through the stub, at most `UIO_MAXIOV` buffers.
#[inline(always)]
fn sys_readv(fd: libc::c_long, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
    // IoSliceMut is ABI-compatible with `struct iovec` on Unix.
    let n = bufs.len().min(libc::UIO_MAXIOV as usize);
    Ok(len_of(call(
        libc::SYS_readv,
        [
            fd,
            bufs.as_mut_ptr() as libc::c_long,
            n as libc::c_long,
            0,
            0,
            0,
        ],
    )?))
}

/// `write(2)` through the stub, at most `isize::MAX` bytes.
#[inline(always)]
pub(super) fn sys_write(fd: libc::c_long, buf: &[u8]) -> io::Result<usize> {
    let len = buf.len().min(isize::MAX as usize);
    Ok(len_of(call(
        libc::SYS_write,
        [
            fd,
            buf.as_ptr() as libc::c_long,
            len as libc::c_long,
            0,
            0,
            0,
        ],
    )?))
}

/// `writev(2)` through the stub, at most `UIO_MAXIOV` buffers.
#[inline(always)]
fn sys_writev(fd: libc::c_long, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // IoSlice is ABI-compatible with `struct iovec` on Unix.
    let n = bufs.len().min(libc::UIO_MAXIOV as usize);
    Ok(len_of(call(
        libc::SYS_writev,
        [
            fd,
            bufs.as_ptr() as libc::c_long,
            n as libc::c_long,
            0,
            0,
            0,
        ],
    )?))
}

macro_rules! read_write_impls {
    ($($ty:ty),*) => {$(
        impl<T: AsFd> Read for $ty {
            #[inline]
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                sys_read(raw(&self.inner), buf)
            }
            #[inline]
            fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
                sys_readv(raw(&self.inner), bufs)
            }
        }

        impl<T: AsFd> Write for $ty {
            #[inline]
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                sys_write(raw(&self.inner), buf)
            }
            #[inline]
            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                sys_writev(raw(&self.inner), bufs)
            }
            /// Writes go straight to the descriptor: there is nothing to flush.
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
    )*};
}

read_write_impls!(Interruptible<T>, &Interruptible<T>);
