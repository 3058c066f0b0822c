//! The pieces of an exchange both kinds share: bytes queued for a stream's writing side,
//! and standard error cut into log lines.
//!
//! # Theory of operation
//!
//! A `WriteQueue` holds what is to be written in order with at most one write outstanding:
//! the write is handed the front chunk, and a short write leaves the rest at the front, so
//! the stream sees the bytes in order whatever the write sizes. `ErrorLines` keeps the
//! part of a line not yet ended between reads; a line longer than `STDERR_LINE_MAX` is cut
//! (the rest of it dropped), so a script printing without newlines costs bounded memory.

use std::collections::VecDeque;

use bytes::Bytes;

/// Longest standard-error line kept whole; longer ones are cut.
pub const STDERR_LINE_MAX: usize = 4096;

/// Bytes queued for a stream's writing side (a script's standard input, a service's
/// socket), written in order with at most one `StreamWrite` outstanding: the part of a
/// gateway's exchange that both kinds share.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(in crate::server) struct WriteQueue {
    chunks: VecDeque<Bytes>,
    queued: usize,
    /// Length of the outstanding `StreamWrite`.
    writing: Option<u64>,
}

impl WriteQueue {
    /// Queues `data` (nothing for empty data).
    pub(in crate::server) fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.queued += data.len();
            self.chunks.push_back(data);
        }
    }

    /// Bytes queued and not yet written.
    pub(in crate::server) fn queued(&self) -> usize {
        self.queued
    }

    /// True when nothing is queued or being written.
    pub(in crate::server) fn is_idle(&self) -> bool {
        self.chunks.is_empty() && self.writing.is_none()
    }

    /// True while a `StreamWrite` is outstanding.
    pub(in crate::server) fn writing(&self) -> bool {
        self.writing.is_some()
    }

    /// The next bytes to write, if none is outstanding (it is then).
    pub(in crate::server) fn next_write(&mut self) -> Option<Bytes> {
        if self.writing.is_some() {
            return None;
        }
        let front = self.chunks.front()?;
        self.writing = Some(front.len() as u64);
        Some(front.clone())
    }

    /// The outstanding write took its first `n` bytes; the rest is written again.
    pub(in crate::server) fn written(&mut self, n: u64) {
        let len = self.writing.take().unwrap_or(0);
        // Lossless on the 64-bit targets weir supports: `n` is at most a chunk's length.
        let mut n = n.min(len) as usize;
        self.queued -= n.min(self.queued);
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.len() <= n {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                let _ = front.split_to(n);
                n = 0;
            }
        }
    }

    /// The writing side is gone: everything queued is dropped.
    pub(in crate::server) fn clear(&mut self) {
        *self = WriteQueue::default();
    }
}

/// A gateway's standard error cut into lines for the error log (a line longer than
/// `STDERR_LINE_MAX` is cut; a CR before the LF is dropped).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(in crate::server) struct ErrorLines {
    partial: Vec<u8>,
}

impl ErrorLines {
    /// The whole lines `data` completes.
    pub(in crate::server) fn feed(&mut self, data: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in data {
            if b == b'\n' {
                let l = std::mem::take(&mut self.partial);
                let l = l.strip_suffix(b"\r").unwrap_or(&l);
                lines.push(String::from_utf8_lossy(l).into_owned());
            } else if self.partial.len() < STDERR_LINE_MAX {
                self.partial.push(b);
            }
        }
        lines
    }

    /// What is left of a last line without its newline, once the stream has ended.
    pub(in crate::server) fn rest(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.partial);
        (!rest.is_empty()).then(|| String::from_utf8_lossy(&rest).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes go out in order, one write at a time, a short write's rest first; the queue
    /// is idle only with nothing queued and nothing outstanding.
    #[test]
    fn a_write_queue_writes_in_order_one_at_a_time() {
        let mut q = WriteQueue::default();
        assert!(q.is_idle() && !q.writing());
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::new());
        q.push(Bytes::from_static(b"de"));
        assert_eq!(q.queued(), 5);
        assert!(!q.is_idle(), "queued, no write outstanding yet");
        assert!(!q.writing());
        assert_eq!(q.next_write().as_deref(), Some(&b"abc"[..]));
        assert!(q.writing() && !q.is_idle());
        assert_eq!(q.next_write(), None, "one write at a time");
        q.written(2);
        assert_eq!(q.queued(), 3);
        assert!(!q.writing());
        assert_eq!(q.next_write().as_deref(), Some(&b"c"[..]));
        q.written(1);
        assert_eq!(q.next_write().as_deref(), Some(&b"de"[..]));
        assert!(!q.is_idle(), "the last write outstanding");
        q.written(2);
        assert_eq!(q.queued(), 0);
        assert!(q.is_idle());
        q.push(Bytes::from_static(b"f"));
        q.clear();
        assert!(q.is_idle() && q.queued() == 0);
    }

    /// A line of exactly the bound is kept whole; a longer one is cut to it.
    #[test]
    fn error_lines_are_cut_at_their_bound() {
        let mut e = ErrorLines::default();
        let whole = "x".repeat(STDERR_LINE_MAX);
        assert_eq!(
            e.feed(format!("{whole}\r\n").as_bytes()),
            std::slice::from_ref(&whole)
        );
        assert_eq!(e.feed(format!("{whole}yz\nnext").as_bytes()), [whole]);
        assert_eq!(e.rest().as_deref(), Some("next"));
    }
}
