//! Operating-system errors, sorted into the few kinds the core tells apart.
//!
//! The core decides what an error *means* (404, 403, 503, a dropped connection); the shell
//! only classifies. The file classes follow nginx's static handler: a name that is too long
//! cannot exist (`ENAMETOOLONG` → not found), a symlink loop or too many links is refused
//! (`ELOOP`, `EMLINK` → permission denied).

use std::io;

use weir_core::server::IoError;

/// Classifies an I/O error from a socket or file operation.
#[must_use]
pub fn classify(err: &io::Error) -> IoError {
    match err.raw_os_error() {
        Some(code) => classify_errno(code),
        // Errors std made up itself (no errno) carry only a kind.
        None => match err.kind() {
            io::ErrorKind::NotFound => IoError::NotFound,
            io::ErrorKind::PermissionDenied => IoError::PermissionDenied,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
            | io::ErrorKind::UnexpectedEof => IoError::Reset,
            io::ErrorKind::OutOfMemory => IoError::Exhausted,
            _ => IoError::Other,
        },
    }
}

/// Classifies a raw `errno` value.
#[must_use]
pub fn classify_errno(code: i32) -> IoError {
    match code {
        libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG => IoError::NotFound,
        libc::EACCES | libc::EPERM | libc::ELOOP | libc::EMLINK => IoError::PermissionDenied,
        // ETIMEDOUT on a socket is a keep-alive or retransmission timeout: the peer is gone.
        libc::ECONNRESET
        | libc::EPIPE
        | libc::ECONNABORTED
        | libc::ENOTCONN
        | libc::ETIMEDOUT
        | libc::EHOSTUNREACH
        | libc::ENETUNREACH => IoError::Reset,
        libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS => IoError::Exhausted,
        _ => IoError::Other,
    }
}

/// True for the errors that mean "out of descriptors or memory" on `accept`, where the
/// right answer is to back off rather than retry at once.
#[must_use]
pub fn is_exhaustion(err: &io::Error) -> bool {
    err.raw_os_error()
        .is_some_and(|c| classify_errno(c) == IoError::Exhausted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_values_map_to_kinds() {
        let cases = [
            (libc::ENOENT, IoError::NotFound),
            (libc::ENOTDIR, IoError::NotFound),
            (libc::ENAMETOOLONG, IoError::NotFound),
            (libc::EACCES, IoError::PermissionDenied),
            (libc::EPERM, IoError::PermissionDenied),
            (libc::ELOOP, IoError::PermissionDenied),
            (libc::ECONNRESET, IoError::Reset),
            (libc::EPIPE, IoError::Reset),
            (libc::ECONNABORTED, IoError::Reset),
            (libc::EMFILE, IoError::Exhausted),
            (libc::ENFILE, IoError::Exhausted),
            (libc::ENOMEM, IoError::Exhausted),
            (libc::EIO, IoError::Other),
            (libc::EINVAL, IoError::Other),
        ];
        for (code, want) in cases {
            assert_eq!(
                classify(&io::Error::from_raw_os_error(code)),
                want,
                "errno {code}"
            );
        }
    }

    #[test]
    fn errors_without_errno_map_by_kind() {
        assert_eq!(
            classify(&io::Error::from(io::ErrorKind::NotFound)),
            IoError::NotFound
        );
        assert_eq!(
            classify(&io::Error::from(io::ErrorKind::BrokenPipe)),
            IoError::Reset
        );
        assert_eq!(classify(&io::Error::other("something odd")), IoError::Other);
    }

    #[test]
    fn exhaustion_is_recognised() {
        assert!(is_exhaustion(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(is_exhaustion(&io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!is_exhaustion(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
        assert!(!is_exhaustion(&io::Error::from(io::ErrorKind::WouldBlock)));
    }

    #[test]
    fn real_open_failures_classify() {
        let missing = std::fs::File::open("/nonexistent-weir-test/x").expect_err("no such path");
        assert_eq!(classify(&missing), IoError::NotFound);
    }
}
