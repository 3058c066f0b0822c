//! Size, count and time limits (the `limit` and `timeout` directives of DESIGN.md §3.1).
//!
//! Every buffer the core keeps is bounded by one of these numbers; when a peer would push a
//! buffer past its bound the core either stops asking for input (back-pressure) or answers
//! with the status RFC 9110 names for it (413, 414, 431) and closes.

use core::time::Duration;

/// Size and count limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Longest request line accepted, CRLF excluded (414 beyond).
    pub request_line_max: usize,
    /// Largest request head (request line and header section), in bytes (431 beyond).
    pub header_bytes_max: usize,
    /// Most header fields in one request head (431 beyond).
    pub headers_max: usize,
    /// Largest request body (413 beyond, judged from Content-Length before reading).
    pub body_max: u64,
    /// Most connections open at once; past it the server stops accepting.
    pub connections_max: usize,
    /// Most CGI scripts running at once.
    pub cgi_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_line_max: 8 * 1024,
            header_bytes_max: 32 * 1024,
            headers_max: 100,
            body_max: 16 * 1024 * 1024,
            connections_max: 10_000,
            cgi_max: 64,
        }
    }
}

/// Time limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// From the first byte of a request head to its end (408 on expiry).
    pub header: Duration,
    /// Longest wait for the next bytes of a request body (408 on expiry).
    pub body: Duration,
    /// Longest a kept-alive connection may wait for the next request (silent close).
    pub idle: Duration,
    /// Longest wait for the peer to accept more response bytes (abort).
    pub send: Duration,
    /// Longest a gateway may take to answer (504).
    pub gateway: Duration,
    /// On shutdown, how long requests in flight may take to finish.
    pub grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(10),
            body: Duration::from_secs(30),
            idle: Duration::from_secs(60),
            send: Duration::from_secs(60),
            gateway: Duration::from_secs(60),
            grace: Duration::from_secs(10),
        }
    }
}
