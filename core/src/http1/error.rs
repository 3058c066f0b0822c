//! The two kinds of failure: the peer's and ours.
//!
//! A `ProtocolError` is the peer's fault and a value: the connection answers it with its
//! status and closes. A `UsageError` is the application calling the connection out of turn:
//! a bug in the caller, reported so that tests and fuzzers can see it.

use core::fmt;

/// The peer broke the protocol; `status` is the answer it gets before the connection closes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProtocolError {
    /// The status code sent back (400, 408, 413, 414, 431, 501, 505 …).
    pub status: u16,
    /// What was wrong, for the error log.
    pub reason: &'static str,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.status)
    }
}

impl std::error::Error for ProtocolError {}

/// The application called the connection out of turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UsageError {
    /// `send_head` with no request waiting for an answer, or a second time.
    NoRequestToAnswer,
    /// `send_body` or `send_end` before `send_head`.
    HeadNotSent,
    /// More body bytes than the `Content-Length` promised, or `send_end` with fewer.
    LengthMismatch,
    /// The connection is closing or closed.
    Closed,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            UsageError::NoRequestToAnswer => "no request is waiting for a response head",
            UsageError::HeadNotSent => "the response head has not been sent",
            UsageError::LengthMismatch => "body length differs from the declared length",
            UsageError::Closed => "the connection is closed",
        };
        f.write_str(s)
    }
}

impl std::error::Error for UsageError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_sentences_in_the_log() {
        let e = ProtocolError {
            status: 414,
            reason: "request line too long",
        };
        assert_eq!(e.to_string(), "request line too long (414)");
        for (e, text) in [
            (
                UsageError::NoRequestToAnswer,
                "no request is waiting for a response head",
            ),
            (
                UsageError::HeadNotSent,
                "the response head has not been sent",
            ),
            (
                UsageError::LengthMismatch,
                "body length differs from the declared length",
            ),
            (UsageError::Closed, "the connection is closed"),
        ] {
            assert_eq!(e.to_string(), text);
        }
    }
}
