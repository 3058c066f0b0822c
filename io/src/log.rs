//! The error log: `weir: …` lines on standard error, or in the `error-log FILE`.
//!
//! Everything `log_error!` writes goes to one place: standard error by default, or, once
//! `weir serve` has called `open_error_log` (before it drops privileges or chroots), the
//! file, opened for appending and created if missing. That includes the lines CGI scripts
//! write to their standard error (the core hands them over with the script's name). In
//! the file each line starts with the UTC time, `2026-12-04T14:52:53Z weir: …`; on standard
//! error it does not (whatever collects standard error usually stamps lines itself).
//!
//! `announce!` is for what the person starting weir must see — the start-up line, a
//! warning about the configuration, a start-up failure: it goes to the error log and, when
//! that is a file, to standard error as well.
//!
//! Each line is formatted first and written with one `write` on a descriptor opened with
//! `O_APPEND`, so lines never interleave. `eprintln!` panics when standard error is a pipe
//! whose reader has gone (EPIPE, since SIGPIPE is ignored); a server must not die because
//! its log reader did, so failures to write are dropped.
//!
//! Reopening (SIGUSR1, after logrotate has renamed the file): the file and its path live
//! in one `Mutex<Option<ErrorLog>>` — error lines are rare, so a lock per line costs
//! nothing that matters, and it makes the switch exact: a line is written either to the
//! old file before `reopen_error_log` swaps it or to the new one after, never lost. The
//! path is opened again (created if missing, appending) through `open_append`, which under
//! `chroot DIR` strips DIR first (a log outside DIR cannot be reached any more). If the
//! open fails — typically after `user` has dropped root and the directory is root's —
//! the old file is kept and written to, and the caller says so in it.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::jail;

/// The `error-log FILE`: the path as configured and the file open now.
struct ErrorLog {
    path: PathBuf,
    file: File,
}

/// The error log file, once opened; `None` = standard error.
static ERROR_LOG: Mutex<Option<ErrorLog>> = Mutex::new(None);

/// The error log, whatever a panicking holder left (a `File` has no invariant to break).
fn error_log() -> MutexGuard<'static, Option<ErrorLog>> {
    ERROR_LOG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens `path` for appending, creating it if missing; under `chroot DIR`, the path as
/// seen from inside (a path outside DIR is an error). Used for both logs, at start-up (not
/// yet in the chroot) and on reopen.
pub fn open_append(path: &Path) -> io::Result<File> {
    let inside = jail::inside(path).map_err(|_| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "it lies outside the chroot directory",
        )
    })?;
    OpenOptions::new().create(true).append(true).open(inside)
}

/// Opens (creating it, and its directory, if missing; appending) the error log file and
/// sends every later line there. Called once, at start-up; a second call is an error.
pub fn open_error_log(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let file = open_append(path)?;
    let mut log = error_log();
    if log.is_some() {
        return Err(io::Error::other("the error log is already open"));
    }
    *log = Some(ErrorLog {
        path: path.to_path_buf(),
        file,
    });
    Ok(())
}

/// Moves the error log to `path` (a reload), or back to standard error with `None`: the new
/// file is opened first, so on failure nothing changes and the error is returned.
pub fn switch_error_log(path: Option<&Path>) -> io::Result<()> {
    let next = match path {
        Some(p) => {
            if let Some(dir) = p.parent() {
                if !dir.as_os_str().is_empty() && !dir.exists() {
                    std::fs::create_dir_all(dir)?;
                }
            }
            Some(ErrorLog {
                path: p.to_path_buf(),
                file: open_append(p)?,
            })
        }
        None => None,
    };
    *error_log() = next;
    Ok(())
}

/// Opens the error log's path again and writes every later line to the new file (SIGUSR1).
/// `None` when the log is standard error (nothing to reopen); on failure, the path and the
/// error, and the old file stays in use.
pub fn reopen_error_log() -> Option<Result<(), (PathBuf, io::Error)>> {
    let path = error_log().as_ref()?.path.clone();
    // Opened without the lock, so that other threads' lines are not held up by the open;
    // only the swap is under it (the old file is closed when dropped).
    let opened = open_append(&path);
    let mut log = error_log();
    let current = log.as_mut()?;
    Some(match opened {
        Ok(file) => {
            current.file = file;
            Ok(())
        }
        Err(e) => Err((path, e)),
    })
}

/// Whether the error log is a file (rather than standard error).
fn to_file() -> bool {
    error_log().is_some()
}

/// Writes `weir: <message>` and a newline to the error log, ignoring failures.
pub fn error(message: fmt::Arguments<'_>) {
    // Formatted before the lock is taken: nothing the message's values do can wait on it.
    let line = format!("{} weir: {message}\n", utc_stamp(now_secs()));
    let mut log = error_log();
    match log.as_mut() {
        Some(log) => {
            // Nothing sensible can be done if the file cannot be written: the line is dropped.
            let _ = log.file.write_all(line.as_bytes());
        }
        None => {
            drop(log);
            to_stderr(message);
        }
    }
}

/// Writes `weir: <message>` to the error log and, if that is a file, to standard error too.
pub fn announce_line(message: fmt::Arguments<'_>) {
    error(message);
    if to_file() {
        to_stderr(message);
    }
}

fn to_stderr(message: fmt::Arguments<'_>) {
    let line = format!("weir: {message}\n");
    let mut err = std::io::stderr().lock();
    // Nothing sensible can be done if standard error is gone: the line is dropped.
    let _ = err.write_all(line.as_bytes());
}

/// Seconds since the epoch (0 for a clock set before 1970).
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC), by the
/// core's calendar arithmetic.
fn utc_stamp(secs: u64) -> String {
    let t = weir_core::UnixTime(i64::try_from(secs).unwrap_or(i64::MAX));
    t.rfc3339_bytes().iter().map(|&b| char::from(b)).collect()
}

/// `log_error!("cannot listen on {addr}: {e}")` writes `weir: cannot listen on …`.
macro_rules! log_error {
    ($($arg:tt)*) => {
        $crate::log::error(format_args!($($arg)*))
    };
}
pub(crate) use log_error;

/// `announce!(…)`: like `log_error!`, and on standard error too when the log is a file.
macro_rules! announce {
    ($($arg:tt)*) => {
        $crate::log::announce_line(format_args!($($arg)*))
    };
}
pub(crate) use announce;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(utc_stamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_stamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_stamp(1_796_309_573), "2026-12-03T14:52:53Z");
        assert_eq!(utc_stamp(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
