//! killable's test fixtures: the demo C loops, the harnesses and the helpers that killable's
//! tests and benchmarks share. Dev-only (`publish = false`): killable lists it under
//! `[dev-dependencies]`, and this crate depends back on killable, whose public API is all it
//! uses.
//!
//! * [`demo`]: foreign C loops (`src/demo.c`) to run in kill regions and abandon.
//! * [`stress`]: the lost-wake-up harness (interrupts at random moments around a read's check).
//! * [`integrity`]: byte streams through pipes and TCP under interrupts, and the storm.
//! * [`forge`]: signals forged by another process, which must interrupt nothing.
//! * [`forks`]: `fork` from a killable thread while other threads are being interrupted.
//! * [`in_child`] and [`quiet_panics`]: a test's body in a child process, expected panics
//!   silenced.
//! * [`wait_blocked`] and [`wait_until`]: bounded waits that fail instead of hanging.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod demo;
pub mod forge;
pub mod forks;
pub mod integrity;
pub mod stress;

mod child;
mod wait;

pub use child::{in_child, own_binary, panics_on_purpose, quiet_panics};
pub use wait::{BLOCK_LIMIT, signal_pending, stack_low, task_state, wait_blocked, wait_until};
