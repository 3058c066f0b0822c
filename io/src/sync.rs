//! The synchronisation primitives of the structures that threads share, through one door.
//!
//! Normally these are std's. Built with `RUSTFLAGS="--cfg loom"`, they are loom's, so that
//! the `loom_…` tests beside each shared structure (`status::StatusBoard`,
//! `services::ServiceBoard`, `logger::Reopen`, `queue`, `pool`'s closing flag) explore every interleaving of the threads
//! that touch it, within loom's bounds, and check the property each one promises. Code
//! outside those structures keeps using std directly.

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(loom)]
pub use loom::sync::{Arc, Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
pub use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(loom))]
pub use std::sync::{Arc, Condvar, Mutex, MutexGuard};
