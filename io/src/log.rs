//! Error lines on standard error, as `weir: …`.
//!
//! `eprintln!` panics when standard error is a pipe whose reader has gone (EPIPE, since
//! SIGPIPE is ignored); a server must not die because its log reader did. `log_error!`
//! writes the line and drops any error.

use std::fmt;
use std::io::Write;

/// Writes `weir: <message>` and a newline to standard error, ignoring failures.
pub fn error(message: fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    // Nothing sensible can be done if standard error is gone: the line is dropped.
    let _ = writeln!(err, "weir: {message}");
}

/// `log_error!("cannot listen on {addr}: {e}")` writes `weir: cannot listen on …`.
macro_rules! log_error {
    ($($arg:tt)*) => {
        $crate::log::error(format_args!($($arg)*))
    };
}
pub(crate) use log_error;
