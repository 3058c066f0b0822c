//! One client connection in the shell: its socket, what the OS said about it, and the
//! operations the core has armed on it.
//!
//! Streams are completion-based (core `server::io`): the core arms at most one read
//! (`Read { max }`) and one send (`Send { chunk }`) at a time, and the shell completes each
//! with exactly one input. The socket is registered edge-triggered once, so readiness is
//! remembered here, sozu-style:
//!
//! ```text
//!   event readable ──► readable = true ─┐      ┌─ armed_read = Some(max)  ◄── Effect::Read
//!                                       ├─ both? ─► read(2) once ─► Received / PeerClosed /
//!   read(2) = EAGAIN ─► readable = false┘                          ConnFailed (disarm)
//!                                                   EAGAIN ─► stay armed, wait for an event
//! ```
//!
//! and the same for `writable` / `in_flight`. A flag is cleared only by what the socket
//! said, never by the core's lack of interest, so a read the core postponed (back-pressure)
//! runs as soon as it asks again, without waiting for an edge that already passed. Besides
//! `WouldBlock`, a *short* read clears `readable` too (nginx does the same): it emptied the
//! receive buffer, and any byte that arrives later raises a new edge, so the next read would
//! only return `EAGAIN` — one system call per request saved. The exception is a peer that
//! has already half-closed (`read_closed`): its end of stream raises no further edge, so
//! the next read must go ahead to find it.
//!
//! A send writes until the chunk is done, the socket is full, or `SEND_BUDGET` bytes have
//! gone (fairness between connections); it then reports how much went (`Sent { n }`) and the
//! core asks again for the rest. Only a send that wrote nothing waits armed for writability.
//!
//! A send from a file whose range is not in the page cache waits, armed, while the file
//! pool reads the range in (`preloading`, see `filepool`); the read-ahead's end makes the
//! next send go ahead without asking again (`warm`), so that one is never waited for twice.

use std::io::{self, Read, Write};

use bytes::Bytes;
use mio::net::TcpStream;
use weir_core::server::{Input, IoError};
use weir_core::{Chunk, ConnId};

use crate::files::Files;
use crate::sendfile::{resident, send_file};
use crate::{errno, fault};

/// The most bytes one send operation writes before yielding to other connections.
///
/// Measured, not guessed (bench/RESULTS.md, "1 MiB"): serving 1 MiB files to 64 kept-alive
/// clients on loopback, 256 KiB per `sendfile` gave the most responses per second and the
/// least CPU per response; 64 and 128 KiB cost more turns of the loop, and 512 KiB or a
/// whole 1 MiB per call cost 5–40 % more CPU per response (lighttpd also sends in
/// 256 KiB pieces).
pub const SEND_BUDGET: usize = 256 * 1024;

/// A connection and its armed operations.
///
/// One of these sits in the worker's slab for every open connection, idle ones included,
/// so it is kept small (memory per idle connection, bench/RESULTS.md; a test pins it).
#[derive(Debug)]
pub struct Connection {
    /// The socket (non-blocking, registered edge-triggered for both directions).
    pub socket: TcpStream,
    /// Distinguishes this connection from earlier ones at the same slab key.
    pub generation: u32,
    /// The OS said readable (or closed, or error) and no read has hit `WouldBlock` since.
    pub readable: bool,
    /// Likewise for writing.
    pub writable: bool,
    /// An outstanding `Read`, with its byte limit (clamped to `u32::MAX`, far above what
    /// one read delivers: the worker's scratch buffer).
    pub armed_read: Option<u32>,
    /// An outstanding `Send`: the part of its chunk not yet written.
    pub in_flight: Option<Chunk>,
    /// The connection is in the worker's ready queue.
    pub queued: bool,
    /// A `ConnFailed` has been reported: no more operations; the core will `Close` it.
    pub failed: bool,
    /// The OS reported the peer's half-close (or an error): no edge will announce it again.
    pub read_closed: bool,
    /// The file pool is reading the armed send's range into the page cache: the send waits.
    pub preloading: bool,
    /// A read-ahead for the armed send has ended: send without asking whether the range is
    /// cached (cleared by the next send).
    pub warm: bool,
}

impl Connection {
    /// A freshly accepted connection. Both directions start out presumed ready: a new
    /// socket is almost always writable, and a speculative read that finds nothing costs one
    /// `EAGAIN` instead of a wait for the first event.
    #[must_use]
    pub fn new(socket: TcpStream, generation: u32) -> Connection {
        Connection {
            socket,
            generation,
            readable: true,
            writable: true,
            armed_read: None,
            in_flight: None,
            queued: false,
            failed: false,
            read_closed: false,
            preloading: false,
            warm: false,
        }
    }

    /// True if an armed operation can run now.
    #[must_use]
    pub fn has_work(&self) -> bool {
        !self.failed
            && ((self.armed_read.is_some() && self.readable)
                || (self.in_flight.is_some() && self.writable && !self.preloading))
    }

    /// Runs the armed read if the socket is readable; returns the input that completes it,
    /// or `None` if it stays armed (nothing to read yet) or nothing was armed.
    pub fn run_read(&mut self, id: ConnId, scratch: &mut [u8]) -> Option<Input> {
        let max = self.armed_read?;
        if !self.readable || self.failed {
            return None;
        }
        let want = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .min(scratch.len());
        loop {
            match self.socket.read(&mut scratch[..want]) {
                Ok(0) => {
                    self.armed_read = None;
                    return Some(Input::PeerClosed { conn: id });
                }
                Ok(n) => {
                    self.armed_read = None;
                    if n < want && !self.read_closed {
                        self.readable = false;
                    }
                    return Some(Input::Received {
                        conn: id,
                        data: Bytes::copy_from_slice(&scratch[..n]),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(self.fail(id, &e)),
            }
        }
    }

    /// Runs the armed send if the socket is writable; returns `Sent { n }` once some bytes
    /// went (see the module documentation), `ConnFailed` on error, or `None` if it stays
    /// armed.
    pub fn run_send(&mut self, id: ConnId, files: &Files) -> Option<Input> {
        if !self.writable || self.failed || self.preloading {
            return None;
        }
        let mut chunk = self.in_flight.take()?;
        self.warm = false;
        let mut written: usize = 0;
        let outcome = loop {
            if chunk.is_empty() || written >= SEND_BUDGET {
                break Ok(());
            }
            let budget = SEND_BUDGET - written;
            let step = match &chunk {
                Chunk::Bytes(b) => {
                    let end = b.len().min(budget);
                    self.socket.write(&b[..end])
                }
                Chunk::File { file, offset, len } => match files.get(*file) {
                    Some(f) => {
                        let want = usize::try_from(*len).unwrap_or(usize::MAX).min(budget);
                        // The test seam's slow disk (debug builds): a range read from the
                        // disk, not the cache, takes its time here.
                        if f.slow && resident(&f.file, *offset, want as u64) == Some(false) {
                            fault::before_read(true);
                        }
                        match send_file(&self.socket, &f.file, *offset, want) {
                            // The file ended before the range did: it shrank under us. The
                            // response can no longer be completed as promised.
                            Ok(0) => Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "file shrank while being sent",
                            )),
                            other => other,
                        }
                    }
                    None => Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        "send from a file that is not open",
                    )),
                },
            };
            match step {
                // write(2) returning 0 for a non-empty buffer: treat as a broken socket
                // rather than spin.
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    chunk.advance(n as u64);
                    written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    break Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        match outcome {
            Ok(()) if written > 0 => Some(Input::Sent {
                conn: id,
                n: written as u64,
            }),
            Ok(()) => {
                // Nothing went: stay armed until the socket is writable again.
                self.in_flight = Some(chunk);
                None
            }
            Err(e) => {
                if e.raw_os_error().is_none() {
                    crate::log::log_error!("connection {}: {e}", id.0);
                }
                Some(self.fail(id, &e))
            }
        }
    }

    /// Marks the connection failed, disarms everything, and builds the input that says so.
    fn fail(&mut self, id: ConnId, e: &io::Error) -> Input {
        self.failed = true;
        self.armed_read = None;
        self.in_flight = None;
        // Errors without an errno are our own findings (a file that shrank, a file that is
        // not open, a write of zero bytes), not something the peer did.
        let error = match e.raw_os_error() {
            Some(_) => errno::classify(e),
            None => IoError::Other,
        };
        Input::ConnFailed { conn: id, error }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every open connection, idle or not, costs one slab entry of this: at most 64 bytes
    /// besides the socket (which debug builds of mio make larger).
    #[test]
    fn a_connection_entry_is_small() {
        let size = core::mem::size_of::<Connection>();
        assert!(
            size <= core::mem::size_of::<TcpStream>() + 64,
            "Connection grew to {size} bytes"
        );
    }
}
