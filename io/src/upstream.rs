//! Streams to upstreams (FastCGI services): `Connect`, `StreamRead`, `StreamWrite`,
//! `StreamClose`, carried out without blocking the loop.
//!
//! The core names a stream by its `Connect`'s token (`StreamId`) for life; here each lives
//! in a slab entry with a generation, registered edge-triggered for both directions, and
//! readiness is remembered as for client connections (`conn`): a flag is set by an event
//! and cleared only by `EAGAIN`. At most one read and one write are armed per stream (the
//! core's contract), and a stream with an armed operation that can run sits in the ready
//! queue until the worker's next round.
//!
//! ```text
//!   Connect(unix:PATH) ─► connect(2) ─► Completed { Connected | Failed }   (at once:
//!                                        a Unix connect never waits; a full backlog is
//!                                        EAGAIN, reported as Refused)
//!   Connect(HOST:PORT) ─► connect(2) ─► EINPROGRESS ─(writable)─► SO_ERROR ─► Completed
//!   StreamRead  ─► armed ─(readable)─► read(2) ─► StreamReceived | StreamEof | StreamFailed
//!   StreamWrite ─► armed ─(writable)─► write(2) ─► StreamWritten { n } | StreamFailed
//!   StreamClose ─► dropped (closing the descriptor), pending inputs about it purged
//! ```
//!
//! A host name in `connect=HOST:PORT` is resolved when the stream is opened, with the
//! system's resolver, which blocks: a service named by address (or a Unix socket) never
//! waits on DNS, and the README says so.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;

use bytes::Bytes;
use mio::net::{TcpStream, UnixStream};
use mio::{event::Event, Interest, Registry};
use slab::Slab;
use weir_core::server::{Channel, Completion, Input, IoError, UpstreamAddr};
use weir_core::{StreamId, Token};

use crate::errno;
use crate::token;

/// The most bytes one write operation sends before yielding to other streams.
const WRITE_BUDGET: usize = 256 * 1024;

/// The socket of a stream.
#[derive(Debug)]
enum Socket {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Unix(s) => s.read(buf),
            Socket::Tcp(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Unix(s) => s.write(buf),
            Socket::Tcp(s) => s.write(buf),
        }
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Socket::Unix(s) => s.take_error(),
            Socket::Tcp(s) => s.take_error(),
        }
    }

    fn register(&mut self, registry: &Registry, t: mio::Token) -> io::Result<()> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        match self {
            Socket::Unix(s) => registry.register(s, t, interest),
            Socket::Tcp(s) => registry.register(s, t, interest),
        }
    }
}

/// One stream and its armed operations.
#[derive(Debug)]
struct Stream {
    id: StreamId,
    socket: Socket,
    generation: u32,
    /// A TCP connect still in progress.
    connecting: bool,
    readable: bool,
    writable: bool,
    armed_read: Option<usize>,
    /// The part of an outstanding write not yet written, and how much of it went already.
    in_flight: Option<(Bytes, usize)>,
    queued: bool,
    /// A failure was reported: nothing more runs; the core will close it.
    failed: bool,
}

impl Stream {
    fn has_work(&self) -> bool {
        !self.failed
            && ((self.connecting && self.writable)
                || (self.armed_read.is_some() && self.readable)
                || (self.in_flight.is_some() && self.writable))
    }
}

/// Every stream of one worker.
#[derive(Debug, Default)]
pub struct Upstreams {
    slab: Slab<Stream>,
    keys: BTreeMap<StreamId, usize>,
    next_generation: u32,
    ready: VecDeque<(usize, u32)>,
}

/// How a failed connect is reported: nothing listening, or a full backlog (`EAGAIN` on a
/// Unix socket), is `Refused`; the rest as for any socket.
fn classify_connect(err: &io::Error) -> IoError {
    match err.raw_os_error() {
        Some(libc::ECONNREFUSED | libc::EAGAIN) => IoError::Refused,
        _ => errno::classify(err),
    }
}

impl Upstreams {
    /// An empty table.
    #[must_use]
    pub fn new() -> Upstreams {
        Upstreams::default()
    }

    /// Open streams.
    #[must_use]
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// True if a stream has an operation that can run.
    #[must_use]
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Carries out `Connect`: the completion is queued in `out` (at once, or when a TCP
    /// connect finishes).
    pub fn connect(
        &mut self,
        registry: &Registry,
        token: Token,
        addr: &UpstreamAddr,
        out: &mut VecDeque<Input>,
    ) {
        let opened = match addr {
            UpstreamAddr::Unix(path) => UnixStream::connect(path).map(|s| (Socket::Unix(s), false)),
            UpstreamAddr::Tcp(host, port) => match (host.as_str(), *port).to_socket_addrs() {
                Ok(mut addrs) => match addrs.next() {
                    Some(a) => TcpStream::connect(a).map(|s| (Socket::Tcp(s), true)),
                    None => Err(io::Error::from(io::ErrorKind::NotFound)),
                },
                Err(e) => Err(e),
            },
        };
        let (mut socket, connecting) = match opened {
            Ok(s) => s,
            Err(e) => {
                return out.push_back(Input::Completed {
                    token,
                    result: Completion::Failed(classify_connect(&e)),
                })
            }
        };
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        let generation = self.next_generation & token::UPSTREAM_GENERATION_MASK;
        self.next_generation = self.next_generation.wrapping_add(1);
        if let Err(e) = socket.register(registry, token::upstream(key, generation)) {
            return out.push_back(Input::Completed {
                token,
                result: Completion::Failed(errno::classify(&e)),
            });
        }
        let id = StreamId(token);
        entry.insert(Stream {
            id,
            socket,
            generation,
            connecting,
            readable: true,
            writable: !connecting,
            armed_read: None,
            in_flight: None,
            queued: false,
            failed: false,
        });
        self.keys.insert(id, key);
        if !connecting {
            out.push_back(Input::Completed {
                token,
                result: Completion::Connected,
            });
        }
    }

    /// Arms a read of at most `max` bytes.
    pub fn read(&mut self, stream: StreamId, max: usize) {
        if let Some(&key) = self.keys.get(&stream) {
            self.slab[key].armed_read = Some(max.max(1));
            self.mark_ready(key);
        }
    }

    /// Arms a write of `data`.
    pub fn write(&mut self, stream: StreamId, data: Bytes) {
        if let Some(&key) = self.keys.get(&stream) {
            self.slab[key].in_flight = Some((data, 0));
            self.mark_ready(key);
        }
    }

    /// Shuts down a stream's sending side (the peer reads end of file).
    pub fn shutdown_write(&mut self, stream: StreamId) {
        if let Some(&key) = self.keys.get(&stream) {
            let s = &mut self.slab[key];
            s.in_flight = None;
            // Fails only if the peer is already gone; the next read reports that.
            let _ = match &s.socket {
                Socket::Unix(u) => u.shutdown(std::net::Shutdown::Write),
                Socket::Tcp(t) => t.shutdown(std::net::Shutdown::Write),
            };
        }
    }

    /// Closes a stream (dropping its socket takes it out of the poll).
    pub fn close(&mut self, stream: StreamId) {
        if let Some(key) = self.keys.remove(&stream) {
            drop(self.slab.try_remove(key));
        }
    }

    /// Records readiness from a poll event.
    pub fn on_event(&mut self, key: usize, generation: u32, event: &Event) {
        let Some(s) = self.slab.get_mut(key) else {
            return;
        };
        if s.generation != generation {
            return;
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            s.readable = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            s.writable = true;
        }
        self.mark_ready(key);
    }

    fn mark_ready(&mut self, key: usize) {
        if let Some(s) = self.slab.get_mut(key) {
            if !s.queued && s.has_work() {
                s.queued = true;
                self.ready.push_back((key, s.generation));
            }
        }
    }

    /// Runs every ready stream's armed operations once, queueing their completions.
    pub fn run_ready(&mut self, scratch: &mut [u8], out: &mut VecDeque<Input>) {
        let batch: Vec<(usize, u32)> = self.ready.drain(..).collect();
        for (key, generation) in batch {
            let Some(s) = self.slab.get_mut(key) else {
                continue;
            };
            if s.generation != generation {
                continue;
            }
            s.queued = false;
            run_stream(s, scratch, out);
            self.mark_ready(key);
        }
    }
}

fn run_stream(s: &mut Stream, scratch: &mut [u8], out: &mut VecDeque<Input>) {
    let stream = s.id;
    if s.connecting && s.writable {
        s.connecting = false;
        let result = match s.socket.take_error() {
            Ok(None) => Completion::Connected,
            Ok(Some(e)) | Err(e) => {
                s.failed = true;
                Completion::Failed(classify_connect(&e))
            }
        };
        out.push_back(Input::Completed {
            token: stream.0,
            result,
        });
        return;
    }
    if s.connecting || s.failed {
        return;
    }
    if let (Some(max), true) = (s.armed_read, s.readable) {
        let n = max.min(scratch.len());
        match s.socket.read(&mut scratch[..n]) {
            Ok(0) => {
                s.armed_read = None;
                out.push_back(Input::StreamEof {
                    stream,
                    channel: Channel::Main,
                });
            }
            Ok(n) => {
                s.armed_read = None;
                out.push_back(Input::StreamReceived {
                    stream,
                    channel: Channel::Main,
                    data: Bytes::copy_from_slice(&scratch[..n]),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.readable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return fail(s, &e, out),
        }
    }
    if let (Some((data, done)), true) = (s.in_flight.as_mut(), s.writable) {
        let start = *done;
        while *done < data.len() && *done - start < WRITE_BUDGET {
            match s.socket.write(&data[*done..]) {
                Ok(0) => break,
                Ok(n) => *done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    s.writable = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return fail(s, &e, out),
            }
        }
        if *done > 0 {
            let n = *done as u64;
            s.in_flight = None;
            out.push_back(Input::StreamWritten { stream, n });
        }
    }
}

fn fail(s: &mut Stream, e: &io::Error, out: &mut VecDeque<Input>) {
    s.failed = true;
    s.armed_read = None;
    s.in_flight = None;
    out.push_back(Input::StreamFailed {
        stream: s.id,
        error: errno::classify(e),
    });
}

/// The stream an input is about, if any — a socket's or a process's (the completion of a
/// connect or a spawn names the stream it made).
#[must_use]
pub fn input_stream(input: &Input) -> Option<StreamId> {
    match input {
        Input::StreamReceived { stream, .. }
        | Input::StreamEof { stream, .. }
        | Input::StreamWritten { stream, .. }
        | Input::StreamWriteClosed { stream }
        | Input::StreamFailed { stream, .. }
        | Input::Exited { stream, .. } => Some(*stream),
        Input::Completed {
            token,
            result: Completion::Connected | Completion::Spawned,
        } => Some(StreamId(*token)),
        _ => None,
    }
}
