//! A slow disk on demand, for the end-to-end tests that prove a slow file operation holds
//! no other connection (tests/attack.rs): debug builds only, off unless the environment
//! says `WEIR_TEST_SLOW_DISK=MS`.
//!
//! A local disk is too fast, and a FIFO is not slow any more (files are opened with
//! `O_NONBLOCK`), so the tests need a disk that is slow when they say so. The delay sits
//! inside the code that carries the operation out (`files`, and the send path for
//! `sendfile`), wherever that code runs: inline, it stalls the event loop exactly as a slow
//! network file system would; on the file pool, it holds one pool thread. With the
//! variable set, by the file's name (its last path component):
//!
//! - `slow…`: opening it (or listing it, for a directory) takes MS longer, and so does
//!   reading it;
//! - `cold…`: opening it is quick, reading it takes MS longer — a `ReadFile`, a read-ahead
//!   on the pool, or a `sendfile` of a range that is not in the page cache (the only one
//!   that touches the disk).
//!
//! Release builds compile none of it: the functions below do nothing there, and the
//! variable is never read.

use std::path::Path;

#[cfg(debug_assertions)]
mod on {
    use std::path::Path;
    use std::sync::OnceLock;
    use std::time::Duration;

    /// The delay the environment asked for, read once.
    pub fn delay() -> Option<Duration> {
        static DELAY: OnceLock<Option<Duration>> = OnceLock::new();
        *DELAY.get_or_init(|| {
            let ms = std::env::var("WEIR_TEST_SLOW_DISK").ok()?;
            ms.trim().parse().ok().map(Duration::from_millis)
        })
    }

    pub fn named(path: &Path, prefix: &str) -> bool {
        path.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix))
    }
}

/// Before opening or listing `path`: waits if it is a `slow…` one.
pub fn before_open(path: &Path) {
    #[cfg(debug_assertions)]
    if let Some(d) = on::delay() {
        if on::named(path, "slow") {
            std::thread::sleep(d);
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = path;
}

/// Whether reading the file opened from `path` is to be slow.
#[must_use]
pub fn slow_reads(path: &Path) -> bool {
    #[cfg(debug_assertions)]
    {
        on::delay().is_some() && (on::named(path, "slow") || on::named(path, "cold"))
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = path;
        false
    }
}

/// Before reading from the disk a file whose reads are slow (`OpenFile::slow`): waits.
pub fn before_read(slow: bool) {
    #[cfg(debug_assertions)]
    if slow {
        if let Some(d) = on::delay() {
            std::thread::sleep(d);
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = slow;
}
