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
//! `O_APPEND`, so lines from several threads never interleave. `eprintln!` panics when
//! standard error is a pipe whose reader has gone (EPIPE, since SIGPIPE is ignored); a
//! server must not die because its log reader did, so failures to write are dropped.
//!
//! The file is opened once and never reopened: weir does not handle SIGUSR1 yet (for the
//! access log either); rotate with copy-and-truncate until it does.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The `error-log FILE`, once opened; unset = standard error.
static ERROR_LOG: OnceLock<File> = OnceLock::new();

/// Opens (creating it, and its directory, if missing; appending) the error log file and
/// sends every later line there. Called once, at start-up; a second call is an error.
pub fn open_error_log(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    ERROR_LOG
        .set(file)
        .map_err(|_| io::Error::other("the error log is already open"))
}

/// Whether the error log is a file (rather than standard error).
fn to_file() -> bool {
    ERROR_LOG.get().is_some()
}

/// Writes `weir: <message>` and a newline to the error log, ignoring failures.
pub fn error(message: fmt::Arguments<'_>) {
    match ERROR_LOG.get() {
        Some(file) => {
            let line = format!("{} weir: {message}\n", utc_stamp(now_secs()));
            // Nothing sensible can be done if the file cannot be written: the line is dropped.
            let _ = (&*file).write_all(line.as_bytes());
        }
        None => to_stderr(message),
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

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
fn utc_stamp(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    // Days to civil date (H. Hinnant's algorithm), for days >= 0.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
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
