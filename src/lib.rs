//! Threads you can stop.
//!
//! `killable` creates threads with `pthread_create` behind a safe, std-shaped API
//! ([`Builder`], [`spawn`], [`JoinHandle`], [`Thread`]) and keeps track of them
//! ([`threads`]), so that a thread stuck in a blocking call can be stopped.
//!
//! # Examples
//!
//! ```
//! let handle = killable::Builder::new()
//!     .name("worker".into())
//!     .spawn(|| killable::current().name().unwrap().len())
//!     .unwrap();
//! assert_eq!(handle.join().unwrap(), 6);
//! ```
//!
//! # Platform
//!
//! Linux on x86_64 only; the crate refuses to build elsewhere.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
compile_error!("killable supports only Linux on x86_64");

mod futex;
mod registry;
mod spawn;
mod stack;
mod thread;

pub use registry::{ThreadInfo, threads};
pub use spawn::{Builder, JoinHandle, spawn};
pub use thread::{Thread, ThreadId, current};
