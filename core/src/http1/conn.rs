//! The HTTP/1.1 server-side connection: one state machine per TCP connection.
//!
//! # Theory of operation
//!
//! Everything that affects transitions lives in this file (h11's rule); [`parse`],
//! [`chunked`] and [`write`] only read and write bytes.
//!
//! [`parse`]: crate::http1::parse
//! [`chunked`]: crate::http1::chunked
//! [`write`]: crate::http1::write
//!
//! A `Conn` is three small machines and a few flags:
//!
//! * the **read side** (`Read`), one request at a time:
//!
//!   ```text
//!              first byte           head complete,         body complete
//!   ┌──────┐ ─────────────► ┌──────┐ with a body ──► ┌──────┐ ────────────► ┌──────┐
//!   │ Idle │                │ Head │                 │ Body │               │ Done │
//!   └──────┘                └──────┘ ──────────────────────────────────────► └──────┘
//!      ▲                       │     head complete, no body                     │
//!      │                       │ error, EOF             │ error, EOF            │
//!      │                       ▼                        ▼                       │
//!      │                    ┌──────────────────────────────────┐                │
//!      │                    │ Stopped: nothing is parsed again │                │
//!      │                    └──────────────────────────────────┘                │
//!      └─────────────── next cycle: request Done and response Done ◄────────────┘
//!   ```
//!
//! * the **write side** (`Write`): `Waiting` (no final head yet) → `send_head` → `Sending`
//!   (body chunks) → `send_end` → `Done`. Interim 1xx heads and `100 Continue` leave it in
//!   `Waiting`.
//!
//! * the **phase** of the whole connection:
//!
//!   ```text
//!            cycle over and must close,
//!   ┌──────┐ or protocol error (4xx queued) ┌─────────┐ output sent  ┌───────────┐
//!   │ Open │ ─────────────────────────────► │ Closing │ ───────────► │ Lingering │
//!   └──────┘                                └─────────┘              └───────────┘
//!      │                                         │ output sent,            │ EOF, or
//!      │ abort, idle / send timeout              │ EOF already seen        │ LINGER
//!      ▼                                         ▼                         ▼
//!   ┌──────────────────────────────────────────────────────────────────────────┐
//!   │ Closed                                                                   │
//!   └──────────────────────────────────────────────────────────────────────────┘
//!   ```
//!
//! ## The request/response cycle (h11's discipline)
//!
//! After a request's `End`, nothing more is parsed until its response has been ended with
//! `send_end`: pipelined bytes wait in the input buffer, and the read budget stops the
//! shell from reading more than `header_bytes_max` of them. Responses therefore leave in
//! request order without any bookkeeping (RFC 9112 §9.3.2). The next cycle starts when both
//! sides are `Done`; the application may answer before the request body is complete (a 413 or
//! 405 to a POST), in which case body events keep coming until `End` and only then does the
//! next request get parsed.
//!
//! The connection closes after the current response (`must_close`) when: the client asked
//! (`Connection: close`, RFC 9112 §9.6) or is HTTP/1.0 without `keep-alive` (RFC 9112
//! §9.3); `close()` was called; the response body is delimited by closing (a streamed body
//! to an HTTP/1.0 client, RFC 9112 §6.3 rule 8); a final response went out to a request
//! that expects `100-continue` while its body is still unread, so the client may never send
//! it and the next bytes could be either body or request (RFC 9110 §10.1.1); or the peer has
//! closed its side and no pipelined bytes are left. A response that will be the last one says
//! `Connection: close` (RFC 9112 §9.6). After EOF, a response is the last one unless the
//! buffered pipelined bytes hold another complete head, which will then be answered too (a
//! client may pipeline several requests and half-close).
//!
//! ## Protocol errors (the anti-smuggling rule)
//!
//! Any framing or syntax error reported by the parsers is answered here and nowhere else:
//! the connection emits `Rejected` (`answered`), queues a canned response (`Connection: close`), drops
//! its input and moves to `Closing`; the read side becomes `Stopped`, so nothing after the
//! error is ever interpreted as a request. If a response head had already been sent for the
//! current request (an error in a chunked body being streamed), no second response can be
//! written: the connection aborts instead; if that response had already ended, it closes
//! after transmitting it.
//!
//! ## Closing (RFC 9112 §9.6)
//!
//! When the last response is queued and the connection must close, it stays `Closing` until
//! the output queue is empty, then `Lingering` if the peer may still be sending: the shell
//! shuts down the write side and keeps reading (and the connection discards) until the
//! peer's EOF or [`LINGER`] runs out. Closing the socket at once could make the kernel
//! answer unread input with a reset that destroys the response still in flight to the
//! client. The peer may still be sending after a protocol error, a response given before
//! the body was read, a cut response, a `close()`, or when bytes past the last request are
//! buffered. Otherwise — the last request was read whole, answered, and nothing followed it
//! (the usual `Connection: close` or HTTP/1.0 exchange) — there is nothing to wait for, and
//! `Closing` goes straight to `Closed`, as nginx's `lingering_close on` does: a shutdown and
//! a read of the end of stream saved per connection. A peer that sends more after its own
//! `Connection: close` may get a reset instead of the tail of its response. If the peer's
//! EOF was already seen, `Closing` goes straight to `Closed` too.
//!
//! EOF from the peer: while idle, or in the middle of a head, the connection closes (after
//! the output already queued, if any) with no response; in the middle of a body the request
//! can never complete, so the connection closes as soon as the response already started (if
//! any) is transmitted; after a complete request, the response is still delivered.
//!
//! ## Input budget (back-pressure)
//!
//! The shell reads only when [`Conn::read_budget`] is positive and at most that much:
//! `header_bytes_max + 1` minus what is buffered while a head is read (one byte more than a
//! legal head, so that an oversized one is detected), [`BODY_BUFFER`] minus what is buffered
//! or queued as body events while a body is read, `header_bytes_max` in total while a complete
//! request waits for its response (pipelining), [`LINGER_READ`] (discarded) while closing,
//! and 0 after EOF or once closed. `receive` accepts more than the budget (it just buffers),
//! but for a well-behaved shell the memory of a connection is bounded by these numbers.
//!
//! ## Timers (quinn's table)
//!
//! Each [`ConnTimer`] has one slot in a fixed table, derived from the state whenever it is
//! asked for (nothing is stored), so a timer can never be left armed in a state that does
//! not want it:
//!
//! | timer  | armed while                                  | from                   | expiry            |
//! |--------|----------------------------------------------|------------------------|-------------------|
//! | Idle   | no request byte buffered, nothing to send    | last activity          | Closed, silently  |
//! | Header | a head is incomplete                         | its first byte (or the cycle start if pipelined bytes were waiting) | 408, close |
//! | Body   | a body is incomplete                         | last body byte (or the discard limit, if earlier) | 408 if no head sent, close if discarding, else abort |
//! | Send   | output is queued                             | last transmit progress | abort             |
//! | Linger | lingering                                    | start of lingering     | Closed            |
//!
//! The header deadline is one deadline for the whole head, not reset by each read, so a
//! client trickling one byte at a time (slowloris) gets its 408 on time.
//!
//! The four read-side timers (Idle, Header, Body, Linger) are never armed together, so
//! their starting points share one stored time, which each state transition that arms
//! one of them sets; `Send` keeps its own, in the buffers' box, since output only exists
//! there.
//!
//! ## Discarding an unwanted body
//!
//! An answer may be complete before its request's body has arrived (a 405 or 404 to a
//! POST, a 413 the application chose): the rest of the body is read and thrown away, so
//! that the connection can carry the next request. That is bounded, like nginx's
//! lingering limits: at most [`DISCARD_MAX`] bytes or [`DISCARD_TIME`] from the moment the
//! answer was complete, whichever comes first; then the connection closes (a lingering
//! close, so at most [`LINGER`] more), and the client that keeps sending a body nobody
//! wants holds a connection for seconds, not for as long as it likes. A `Content-Length`
//! whose rest is beyond the byte bound closes at once (nothing is read in vain); a chunked
//! body's bytes are counted as they come. The `Body` timer carries the time bound (the
//! earlier of its two deadlines). Body bytes read while the answer is still going out are
//! not counted: a gateway may answer while it still reads.
//!
//! ## Subtle cases
//!
//! 1. The application answers a POST before its body has arrived and the connection stays
//!    open: the write side is `Done` while the read side is still `Body`. Body events keep
//!    coming, and only the request's `End` starts the next cycle. Had the response been the
//!    last one, the rest of the body is of no use and the connection goes `Closing` at once.
//! 2. A final response to an `Expect: 100-continue` request whose body has not arrived: the
//!    client may send the body or may not, and the next bytes cannot be told apart, so the
//!    response says `Connection: close` and the body is never read.
//! 3. Small chunks are merged into the last chunk of the output queue, which may be the one
//!    the shell is sending right now (it holds a clone). That is safe: merging only appends,
//!    and `advance_transmit(n)` only drops the first `n` bytes, which the shell's clone and
//!    the merged chunk share.
//! 4. A protocol error in a chunked body after the response head was sent: no canned
//!    response can follow a started one, so the connection aborts.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use core::time::Duration;

use crate::chunk::Chunk;
use crate::http1::chunked::{ChunkedDecoder, Step};
use crate::http1::error::{ProtocolError, UsageError};
use crate::http1::head::{
    BodyKind, Headers, Method, RequestHead, ResponseBody, ResponseHead, Version,
};
use crate::http1::parse::{err, parse_head, HeadScan};
use crate::http1::write;
use crate::limits::{Limits, Timeouts};
use crate::time::{Now, Time};

/// Bytes of request body the connection holds at most (buffered input plus body events not
/// yet polled) before it stops asking the shell to read.
pub const BODY_BUFFER: usize = 64 * 1024;

/// How long a closing connection keeps reading (and discarding) after its last response has
/// been transmitted, waiting for the peer's EOF. Two seconds covers the round trip of any
/// client still sending when the response left, as Apache's lingering close does.
pub const LINGER: Duration = Duration::from_secs(2);

/// Read budget while closing or lingering: input is discarded, so any amount is safe.
pub const LINGER_READ: usize = 64 * 1024;

/// The most request-body bytes read and discarded after the response to that request is
/// complete (a 405 or 404 to a POST), so that the connection can carry the next request;
/// past it the connection closes instead (see "Discarding an unwanted body").
pub const DISCARD_MAX: u64 = 1024 * 1024;

/// The longest an unwanted body is read and discarded after the response to its request
/// is complete; then the connection closes instead.
pub const DISCARD_TIME: Duration = Duration::from_secs(5);

/// Adjacent in-memory chunks are merged into one while the result stays this small, so a
/// head and a small body leave in a single write.
const MERGE_MAX: usize = 16 * 1024;

/// Room a response head is written into (most heads fit; a larger one grows the buffer).
const HEAD_CAPACITY: usize = 320;

/// What the connection reports to the application, in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// A request head; its body events follow.
    Head(RequestHead),
    /// The next bytes of the request body (de-chunked).
    Body(Bytes),
    /// The trailer section of a chunked body (only when non-empty).
    Trailers(Headers),
    /// The request (head and body) is complete.
    End,
    /// The peer broke the protocol; the connection is closing.
    ///
    /// `answered`: the connection queued its own answer (`write::canned`). If a response
    /// head had already been sent for the current request, no answer can be queued
    /// (`answered` is false): the connection is then `Closed` (or `Closing`, when that
    /// response was already complete).
    Rejected {
        /// What was wrong, with the status of the answer.
        error: ProtocolError,
        /// The connection queued its canned answer with `error.status`.
        answered: bool,
        /// The body bytes of that answer (0 when there is none, or for a HEAD request).
        answer_bytes: u64,
    },
    /// The peer closed its sending side.
    PeerClosed,
}

/// A summary of where the connection is, for the application and for tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnState {
    /// Waiting for the first byte of a request.
    Idle,
    /// Some bytes of a request head have arrived.
    ReadingHead,
    /// The head was delivered; body bytes are still arriving.
    ReadingBody,
    /// The request is complete and no response head has been sent.
    AwaitingResponse,
    /// The response head was sent; body or end still to come or still being transmitted.
    /// Also reported between requests while the previous response is still being
    /// transmitted and no byte of the next request has arrived.
    SendingResponse,
    /// Finishing the transmission of a last response before closing.
    Closing,
    /// Transmission done; the write side should be shut down and input is read and discarded
    /// until the peer closes or the linger time runs out.
    Lingering,
    /// Finished: the application should close the socket and forget the connection.
    Closed,
}

/// The connection's deadlines, one slot each in a fixed table (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConnTimer {
    /// Waiting for the next request on a kept-alive (or fresh) connection.
    Idle,
    /// Reading a request head.
    Header,
    /// Reading a request body.
    Body,
    /// Waiting for the peer to take queued output.
    Send,
    /// Lingering after the last response.
    Linger,
}

impl ConnTimer {
    /// Every timer, in table order (also the order ties fire in).
    pub const VALUES: [ConnTimer; 5] = [
        ConnTimer::Idle,
        ConnTimer::Header,
        ConnTimer::Body,
        ConnTimer::Send,
        ConnTimer::Linger,
    ];
}

/// The whole connection's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Phase {
    Open,
    Closing,
    Lingering,
    Closed,
}

/// The read side (see the module diagram).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Read {
    Idle,
    Head(HeadScan),
    Body(BodyReader),
    Done,
    Stopped,
}

/// How the body being read is delimited.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum BodyReader {
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// The write side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Write {
    Waiting,
    Sending(OutFraming),
    Done,
}

/// How the response body being sent is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum OutFraming {
    /// `Content-Length`: this many bytes still promised.
    Length { remaining: u64 },
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Delimited by closing the connection (HTTP/1.0 client, unknown length).
    Close,
    /// No body on the wire (HEAD, 204, 304): chunks are accepted and dropped.
    Discard,
}

/// What the write side needs to know of the request it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Request {
    head_method: bool,
    version: Version,
    keep_alive: bool,
    expects_continue: bool,
    continue_sent: bool,
}

/// The HTTP/1.1 server-side connection state machine.
///
/// Feed it with [`receive`](Conn::receive) and [`receive_eof`](Conn::receive_eof), drain
/// [`poll_event`](Conn::poll_event), answer with [`send_head`](Conn::send_head),
/// [`send_body`](Conn::send_body) and [`send_end`](Conn::send_end), move its output with
/// [`pending_transmit`](Conn::pending_transmit) and
/// [`advance_transmit`](Conn::advance_transmit), and honour
/// [`poll_timeout`](Conn::poll_timeout). See the module documentation for the rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Conn {
    limits: ConnLimits,
    timeouts: ConnTimeouts,
    phase: Phase,
    read: Read,
    write: Write,
    /// The request being answered (from its head to the end of the cycle).
    request: Option<Request>,
    /// Input, events and output: boxed, and let go while the connection is idle.
    bufs: Bufs,
    /// The peer's EOF has been seen.
    eof: bool,
    /// The connection closes after the current response.
    must_close: bool,
    /// `close()` was called.
    close_requested: bool,
    /// Closing must linger (see "Closing"): the peer may still be sending.
    linger: bool,
    /// The latest monotonic time any call told us.
    now: Time,
    /// Where the read side's timer runs from: the state says which timer that is, and
    /// only one of them is armed at a time (see "Timers"): `Idle` (last activity), `Head`
    /// (the head's first byte), `Body` (last body byte) or `Linger` (start of lingering).
    since: Time,
}

/// What a connection buffers: its unparsed input, the events not yet polled and the output
/// not yet transmitted, with their counts. All of it is empty between requests, so it is
/// boxed and the box is let go while the connection is idle: thousands of kept-alive
/// connections then cost a pointer each instead of three empty collections. `None` and a
/// box of empty buffers are the same state (equality and hashing say so, for the model
/// checker), so where the box is let go is a question of memory only.
#[derive(Clone, Debug, Default)]
struct Bufs(Option<Box<Buffers>>);

#[derive(Clone, Debug, Default)]
struct Buffers {
    input: BytesMut,
    events: VecDeque<Event>,
    /// Body bytes sitting in `events`, counted against [`BODY_BUFFER`].
    queued_body: usize,
    out: VecDeque<Chunk>,
    out_len: u64,
    /// Where the `Send` timer runs from (meaningful while `out` is not empty).
    send_since: Time,
    /// While an unwanted body is discarded (the answer complete, the body not): since when,
    /// and how many of its bytes (see "Discarding an unwanted body").
    discard: Option<(Time, u64)>,
}

/// The queues of a connection that has no box.
static NO_EVENTS: VecDeque<Event> = VecDeque::new();
static NO_OUTPUT: VecDeque<Chunk> = VecDeque::new();

impl Bufs {
    /// The buffers, to be written: the box is allocated if there is none.
    fn get_mut(&mut self) -> &mut Buffers {
        self.0.get_or_insert_with(Box::default)
    }

    /// The buffers to be written, if there is a box (for what has nothing to do when empty).
    fn existing(&mut self) -> Option<&mut Buffers> {
        self.0.as_deref_mut()
    }

    /// Unparsed input.
    fn input(&self) -> &[u8] {
        self.0.as_ref().map_or(&[], |b| &b.input)
    }

    /// Events not yet polled.
    fn events(&self) -> &VecDeque<Event> {
        self.0.as_ref().map_or(&NO_EVENTS, |b| &b.events)
    }

    /// Output not yet transmitted.
    fn out(&self) -> &VecDeque<Chunk> {
        self.0.as_ref().map_or(&NO_OUTPUT, |b| &b.out)
    }

    /// Bytes in `out`.
    fn out_len(&self) -> u64 {
        self.0.as_ref().map_or(0, |b| b.out_len)
    }

    /// Body bytes in `events`.
    fn queued_body(&self) -> usize {
        self.0.as_ref().map_or(0, |b| b.queued_body)
    }

    /// Since when an unwanted body has been discarded, and how many bytes of it.
    fn discard(&self) -> Option<(Time, u64)> {
        self.0.as_ref().and_then(|b| b.discard)
    }

    /// Where the `Send` timer runs from, while there is output.
    fn send_since(&self) -> Option<Time> {
        self.0
            .as_ref()
            .filter(|b| !b.out.is_empty())
            .map(|b| b.send_since)
    }

    /// The key equality and hashing use: the contents, not where they are kept, and the
    /// send timer's start only while it means something.
    #[allow(clippy::type_complexity)]
    fn key(
        &self,
    ) -> (
        &[u8],
        &VecDeque<Event>,
        usize,
        &VecDeque<Chunk>,
        u64,
        Option<Time>,
        Option<(Time, u64)>,
    ) {
        (
            self.input(),
            self.events(),
            self.queued_body(),
            self.out(),
            self.out_len(),
            self.send_since(),
            self.discard(),
        )
    }
}

impl PartialEq for Bufs {
    fn eq(&self, other: &Bufs) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Bufs {}

impl core::hash::Hash for Bufs {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

/// The size limits a connection enforces: a compact copy of [`Limits`], since every
/// connection carries one (a limit above 4 GiB is clamped to it, which changes nothing real).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ConnLimits {
    request_line_max: u32,
    header_bytes_max: u32,
    headers_max: u32,
    body_max: u64,
}

impl ConnLimits {
    fn new(l: &Limits) -> ConnLimits {
        let small = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        ConnLimits {
            request_line_max: small(l.request_line_max),
            header_bytes_max: small(l.header_bytes_max),
            headers_max: small(l.headers_max),
            body_max: l.body_max,
        }
    }

    fn request_line_max(&self) -> usize {
        self.request_line_max as usize
    }

    fn header_bytes_max(&self) -> usize {
        self.header_bytes_max as usize
    }

    /// What the parsers read: the head bound (for a chunked body's trailer section), the
    /// field count and the body bound. The others keep their defaults, which the parsers
    /// do not look at: the request line's bound is the head scanner's, which this
    /// connection calls with its own.
    fn parse(&self) -> Limits {
        Limits {
            header_bytes_max: self.header_bytes_max(),
            headers_max: self.headers_max as usize,
            body_max: self.body_max,
            ..Limits::default()
        }
    }
}

/// The four time limits a connection enforces, in milliseconds: a compact copy of
/// [`Timeouts`], since every connection carries one (a limit above 49 days is clamped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ConnTimeouts {
    header_ms: u32,
    body_ms: u32,
    idle_ms: u32,
    send_ms: u32,
}

impl ConnTimeouts {
    fn new(t: &Timeouts) -> ConnTimeouts {
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        ConnTimeouts {
            header_ms: ms(t.header),
            body_ms: ms(t.body),
            idle_ms: ms(t.idle),
            send_ms: ms(t.send),
        }
    }
}

impl Conn {
    /// A fresh connection, waiting for its first request (the idle timer runs from `now`).
    #[must_use]
    pub fn new(limits: &Limits, timeouts: &Timeouts, now: Now) -> Conn {
        Conn {
            limits: ConnLimits::new(limits),
            timeouts: ConnTimeouts::new(timeouts),
            phase: Phase::Open,
            read: Read::Idle,
            write: Write::Waiting,
            request: None,
            bufs: Bufs(None),
            eof: false,
            must_close: false,
            close_requested: false,
            linger: false,
            now: now.mono,
            since: now.mono,
        }
    }

    /// How many bytes the application should read for this connection now (0: don't read).
    ///
    /// See "Input budget" in the module documentation for the numbers.
    #[must_use]
    pub fn read_budget(&self) -> usize {
        if self.eof {
            return 0;
        }
        match self.phase {
            Phase::Closed => 0,
            Phase::Closing | Phase::Lingering => LINGER_READ,
            Phase::Open => match self.read {
                Read::Idle | Read::Head(_) => {
                    (self.limits.header_bytes_max() + 1).saturating_sub(self.bufs.input().len())
                }
                Read::Body(_) => {
                    BODY_BUFFER.saturating_sub(self.bufs.input().len() + self.bufs.queued_body())
                }
                Read::Done => self
                    .limits
                    .header_bytes_max()
                    .saturating_sub(self.bufs.input().len()),
                Read::Stopped => 0,
            },
        }
    }

    /// Feeds bytes received from the peer.
    ///
    /// Ignored after EOF or once closed; discarded while closing or lingering.
    pub fn receive(&mut self, data: &[u8], now: Now) {
        self.note_now(now);
        if self.eof || self.phase != Phase::Open || data.is_empty() {
            return;
        }
        if matches!(self.read, Read::Body(_)) {
            self.since = now.mono;
        }
        self.bufs.get_mut().input.extend_from_slice(data);
        self.process(now);
        self.settle(now);
    }

    /// The peer closed its sending side.
    ///
    /// Emits `PeerClosed`; what happens next depends on where the request is (see "Closing"
    /// in the module documentation).
    pub fn receive_eof(&mut self, now: Now) {
        self.note_now(now);
        if self.eof || self.phase == Phase::Closed {
            return;
        }
        self.eof = true;
        self.bufs.get_mut().events.push_back(Event::PeerClosed);
        self.process(now);
        self.settle(now);
    }

    /// The next event, if one is ready.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        let bufs = self.bufs.existing()?;
        let event = bufs.events.pop_front()?;
        if let Event::Body(b) = &event {
            bufs.queued_body = bufs.queued_body.saturating_sub(b.len());
        }
        Some(event)
    }

    /// The application will read the request body: queues `100 Continue` once if the client
    /// asked for it, the body is still to come and no final response head has been sent
    /// (RFC 9110 §10.1.1). Otherwise does nothing.
    pub fn accept_body(&mut self) {
        if self.phase != Phase::Open
            || self.write != Write::Waiting
            || !matches!(self.read, Read::Body(_))
        {
            return;
        }
        let Some(req) = &mut self.request else {
            return;
        };
        if !req.expects_continue || req.continue_sent {
            return;
        }
        req.continue_sent = true;
        // Nothing to settle: queuing output while a body is read changes no state, and
        // the buffers stay in use.
        self.queue(Chunk::Bytes(Bytes::from_static(write::CONTINUE)));
    }

    /// Starts the response to the current request.
    ///
    /// A 1xx status is an interim response (not sent to HTTP/1.0 clients, RFC 9110 §15.2)
    /// and leaves room for the final one; upgrades are not supported, so 101 is written as
    /// any other interim head. The connection adds `Date`, `Server`, the framing and
    /// `Connection` fields (the application's copies are dropped). Errors:
    /// `NoRequestToAnswer` if no request head has arrived or a final head was already sent;
    /// `Closed` if the connection is closing or closed.
    pub fn send_head(&mut self, head: ResponseHead, now: Now) -> Result<(), UsageError> {
        self.send_head_with_body(head, None, now).map(|_| ())
    }

    /// `send_head` for a response whose whole body is in memory: when `body` is small and
    /// exactly what the framing will carry (not a HEAD, not a 304 …), it is written into
    /// the head's buffer, so the whole response is one allocation and one chunk, and
    /// `Ok(true)` says so: only `send_end` remains. `Ok(false)`: the body was not taken,
    /// and goes with `send_body` as usual. Errors as `send_head`.
    pub fn send_head_with_body(
        &mut self,
        head: ResponseHead,
        inline: Option<&Bytes>,
        now: Now,
    ) -> Result<bool, UsageError> {
        self.note_now(now);
        if self.phase != Phase::Open {
            return Err(UsageError::Closed);
        }
        let Some(mut req) = self.request else {
            return Err(UsageError::NoRequestToAnswer);
        };
        if self.write != Write::Waiting {
            return Err(UsageError::NoRequestToAnswer);
        }
        let status = head.status;
        debug_assert!(
            (100..=599).contains(&status),
            "status {status} out of range"
        );
        if (100..200).contains(&status) {
            if req.version == Version::Http11 && !(status == 100 && req.continue_sent) {
                req.continue_sent |= status == 100;
                self.request = Some(req);
                let bytes = write::interim_head(status, &head.headers);
                self.queue(Chunk::Bytes(Bytes::from(bytes)));
            }
            self.settle(now);
            return Ok(false);
        }
        let bodiless_status = status == 204 || status == 304;
        let no_body = req.head_method || bodiless_status;
        // At most two connection fields: framing, then `Connection`.
        let mut fields: [(&str, &str); 2] = [("", ""); 2];
        let mut field_count = 0;
        let mut digits = [0u8; 20];
        macro_rules! push {
            ($field:expr) => {{
                fields[field_count] = $field;
                field_count += 1;
            }};
        }
        let framing = match head.body {
            ResponseBody::Length(n) => {
                // RFC 9110 §8.6: never a Content-Length in a 204.
                if status != 204 {
                    push!(("Content-Length", write::decimal(&mut digits, n)));
                }
                if no_body {
                    OutFraming::Discard
                } else {
                    OutFraming::Length { remaining: n }
                }
            }
            ResponseBody::Streamed if bodiless_status => OutFraming::Discard,
            ResponseBody::Streamed if req.version == Version::Http11 => {
                // A response to HEAD carries the fields a GET would (RFC 9110 §9.3.2).
                push!(("Transfer-Encoding", "chunked"));
                if no_body {
                    OutFraming::Discard
                } else {
                    OutFraming::Chunked
                }
            }
            ResponseBody::Streamed if no_body => OutFraming::Discard,
            ResponseBody::Streamed => OutFraming::Close,
            ResponseBody::Empty => {
                if !bodiless_status {
                    push!(("Content-Length", "0"));
                }
                if no_body {
                    OutFraming::Discard
                } else {
                    OutFraming::Length { remaining: 0 }
                }
            }
        };
        let body_unread = matches!(self.read, Read::Body(_));
        let expect_unanswered = req.expects_continue && !req.continue_sent && body_unread;
        // After EOF the buffered bytes are all there will be: another response follows only
        // if they hold a complete head.
        let pipelined_after_eof = self.read == Read::Done
            && matches!(
                HeadScan::request().scan(
                    self.bufs.input(),
                    self.limits.request_line_max(),
                    self.limits.header_bytes_max()
                ),
                Ok(Some(_))
            );
        // `close` sets `must_close` with `close_requested`, so the flag alone says both.
        let close = self.must_close
            || !req.keep_alive
            || expect_unanswered
            || framing == OutFraming::Close
            || (self.eof && !pipelined_after_eof);
        if close {
            self.must_close = true;
            push!(("Connection", "close"));
        } else if req.version == Version::Http10 {
            push!(("Connection", "keep-alive"));
        }
        let inline = inline.filter(|b| {
            b.len() <= MERGE_MAX
                && framing
                    == OutFraming::Length {
                        remaining: b.len() as u64,
                    }
        });
        let mut bytes = Vec::with_capacity(HEAD_CAPACITY + inline.map_or(0, Bytes::len));
        write::push_final_head(
            &mut bytes,
            status,
            &head.headers,
            now.unix,
            &fields[..field_count],
        );
        let mut framing = framing;
        if let Some(body) = inline {
            bytes.extend_from_slice(body);
            framing = OutFraming::Length { remaining: 0 };
        }
        self.queue(Chunk::Bytes(Bytes::from(bytes)));
        self.write = Write::Sending(framing);
        self.settle(now);
        Ok(inline.is_some())
    }

    /// Starts a response whose bytes the application provides whole, status line and header
    /// section included (a CGI `nph-` script's output). Nothing is added to it, body chunks
    /// pass unframed, and the connection closes after the response: only the close can
    /// delimit bytes the connection does not look into.
    ///
    /// Errors as for `send_head`.
    pub fn send_raw(&mut self, now: Now) -> Result<(), UsageError> {
        self.note_now(now);
        if self.phase != Phase::Open {
            return Err(UsageError::Closed);
        }
        if self.request.is_none() || self.write != Write::Waiting {
            return Err(UsageError::NoRequestToAnswer);
        }
        self.must_close = true;
        self.write = Write::Sending(OutFraming::Close);
        self.settle(now);
        Ok(())
    }

    /// Queues body bytes of the current response.
    ///
    /// Chunks for a response without a body on the wire (HEAD, 204, 304) are accepted and
    /// dropped. Errors: `LengthMismatch` if the chunk would exceed the declared
    /// `Content-Length` (nothing is queued); `HeadNotSent` without a response in progress;
    /// `Closed` once closing or closed.
    pub fn send_body(&mut self, chunk: Chunk, now: Now) -> Result<(), UsageError> {
        self.note_now(now);
        let Write::Sending(framing) = &mut self.write else {
            return Err(self.not_sending_error());
        };
        if self.phase == Phase::Closed {
            return Err(UsageError::Closed);
        }
        let len = chunk.len();
        match framing {
            OutFraming::Length { remaining } => {
                if len > *remaining {
                    return Err(UsageError::LengthMismatch);
                }
                *remaining -= len;
                self.queue(chunk);
            }
            OutFraming::Chunked => {
                if len > 0 {
                    self.queue(Chunk::Bytes(Bytes::from(write::chunk_prefix(len))));
                    self.queue(chunk);
                    self.queue(Chunk::Bytes(Bytes::from_static(write::CRLF)));
                }
            }
            OutFraming::Close => self.queue(chunk),
            OutFraming::Discard => {}
        }
        self.settle(now);
        Ok(())
    }

    /// Ends the current response. Trailers are written only on a chunked body (elsewhere
    /// there is no place for them) and are filtered like head fields.
    ///
    /// Errors: `LengthMismatch` if fewer bytes than the declared `Content-Length` were sent
    /// (the response stays open); `HeadNotSent` without a response in progress; `Closed` once
    /// closing or closed.
    pub fn send_end(&mut self, trailers: Option<Headers>, now: Now) -> Result<(), UsageError> {
        self.note_now(now);
        let Write::Sending(framing) = self.write else {
            return Err(self.not_sending_error());
        };
        if self.phase == Phase::Closed {
            return Err(UsageError::Closed);
        }
        match framing {
            OutFraming::Length { remaining } if remaining > 0 => {
                return Err(UsageError::LengthMismatch);
            }
            OutFraming::Chunked => {
                let last = write::last_chunk(trailers.as_ref());
                self.queue(Chunk::Bytes(Bytes::from(last)));
            }
            _ => {}
        }
        self.write = Write::Done;
        self.settle(now);
        Ok(())
    }

    /// Bytes queued for transmission and not yet transmitted.
    #[must_use]
    pub fn transmit_queued(&self) -> u64 {
        self.bufs.out_len()
    }

    /// The next chunk to transmit.
    #[must_use]
    pub fn pending_transmit(&self) -> Option<&Chunk> {
        self.bufs.out().front()
    }

    /// `n` bytes of the pending chunk were transmitted. (A larger `n` runs on into the
    /// following chunks; more than is queued is ignored.)
    pub fn advance_transmit(&mut self, n: u64, now: Now) {
        self.note_now(now);
        if let Some(bufs) = self.bufs.existing() {
            let mut left = n.min(bufs.out_len);
            if left > 0 {
                bufs.send_since = now.mono;
                // Transmit progress is activity: it restarts the idle timer (the only
                // read-side timer it concerns).
                if self.read == Read::Idle {
                    self.since = now.mono;
                }
            }
            while left > 0 {
                let Some(front) = bufs.out.front_mut() else {
                    break;
                };
                let k = left.min(front.len());
                front.advance(k);
                left -= k;
                bufs.out_len -= k;
                if front.is_empty() {
                    bufs.out.pop_front();
                }
            }
        }
        self.settle(now);
    }

    /// The earliest deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers().into_iter().flatten().min()
    }

    /// Fires expired timers (see the table in the module documentation). Calling it early
    /// is harmless.
    pub fn handle_timeout(&mut self, now: Now) {
        self.note_now(now);
        // Each firing leaves a state in which that timer is disarmed; the bound is a guard.
        for _ in 0..ConnTimer::VALUES.len() * 2 {
            let due = ConnTimer::VALUES
                .iter()
                .filter_map(|&t| self.timers()[t as usize].map(|d| (d, t)))
                .filter(|&(d, _)| d <= now.mono)
                .min();
            let Some((_, timer)) = due else {
                break;
            };
            match timer {
                ConnTimer::Idle | ConnTimer::Send | ConnTimer::Linger => self.abort(),
                ConnTimer::Header => self.reject(err(408, "request head timed out"), now),
                ConnTimer::Body if self.write == Write::Waiting => {
                    self.reject(err(408, "request body timed out"), now);
                }
                // Discarding an unwanted body for too long: the answer is complete, so the
                // connection closes after it (lingering) instead of reading on.
                ConnTimer::Body if self.bufs.discard().is_some() => self.enter_closing(true),
                ConnTimer::Body => self.abort(),
            }
            self.settle(now);
        }
    }

    /// Graceful close: an idle connection closes now; otherwise the request in progress is
    /// answered (its response says `Connection: close` if its head is not sent yet) and the
    /// connection closes after it.
    pub fn close(&mut self, now: Now) {
        self.note_now(now);
        if self.phase != Phase::Open {
            return;
        }
        self.close_requested = true;
        self.must_close = true;
        if self.read == Read::Idle && self.write == Write::Waiting {
            if self.bufs.out().is_empty() {
                self.abort();
            } else {
                self.enter_closing(true);
            }
        }
        self.settle(now);
    }

    /// Immediate close: the output queue is dropped and the connection is `Closed`.
    pub fn abort(&mut self) {
        self.phase = Phase::Closed;
        self.read = Read::Stopped;
        self.must_close = true;
        if let Some(bufs) = self.bufs.existing() {
            bufs.input.clear();
            bufs.out.clear();
            bufs.out_len = 0;
        }
    }

    /// Ends the connection after what is already queued, for when the response in progress
    /// cannot be completed (its source failed). The bytes queued so far — earlier complete
    /// responses and the beginning of this one — still go out; then the connection closes,
    /// the only sign a client can get that the last response is short. Nothing more is
    /// parsed or accepted for sending.
    pub fn cut(&mut self, now: Now) {
        self.note_now(now);
        if self.phase == Phase::Closed {
            return;
        }
        self.write = Write::Done;
        if let Some(bufs) = self.bufs.existing() {
            bufs.events.clear();
        }
        self.enter_closing(true);
        self.settle(now);
    }

    /// Where the connection is.
    #[must_use]
    pub fn state(&self) -> ConnState {
        match self.phase {
            Phase::Closed => ConnState::Closed,
            Phase::Lingering => ConnState::Lingering,
            Phase::Closing => ConnState::Closing,
            Phase::Open => match (&self.read, self.write) {
                (_, Write::Sending(_)) => ConnState::SendingResponse,
                (Read::Head(_), _) => ConnState::ReadingHead,
                (Read::Body(_), _) => ConnState::ReadingBody,
                (Read::Done, Write::Waiting) => ConnState::AwaitingResponse,
                (Read::Idle, _) if self.bufs.out().is_empty() => ConnState::Idle,
                (Read::Idle, _) => ConnState::SendingResponse,
                // settle() never leaves these in the Open phase.
                (Read::Done | Read::Stopped, _) => ConnState::Closing,
            },
        }
    }

    /// Since when the connection has been idle — waiting for a request with no byte of one
    /// buffered and nothing to send (`ConnState::Idle`) — or `None` if it is not.
    #[must_use]
    pub fn idle_since(&self) -> Option<Time> {
        (self.state() == ConnState::Idle).then_some(self.since)
    }

    /// The deadline of one timer, if armed (for tests and diagnostics).
    #[must_use]
    pub fn timer(&self, timer: ConnTimer) -> Option<Time> {
        self.timers()[timer as usize]
    }

    // ----- internals -------------------------------------------------------------------

    fn note_now(&mut self, now: Now) {
        if now.mono >= self.now {
            self.now = now.mono;
        }
    }

    fn not_sending_error(&self) -> UsageError {
        if self.phase == Phase::Open {
            UsageError::HeadNotSent
        } else {
            UsageError::Closed
        }
    }

    /// Parses as far as the buffered input and the cycle allow.
    fn process(&mut self, now: Now) {
        if self.phase != Phase::Open {
            return;
        }
        loop {
            match &mut self.read {
                Read::Idle => {
                    if self.bufs.input().is_empty() {
                        break;
                    }
                    self.read = Read::Head(HeadScan::request());
                    self.since = now.mono;
                }
                Read::Head(scan) => {
                    let found = scan.scan(
                        self.bufs.input(),
                        self.limits.request_line_max(),
                        self.limits.header_bytes_max(),
                    );
                    let end = match found {
                        Ok(Some(end)) => end,
                        Ok(None) => break,
                        Err(e) => return self.reject(e, now),
                    };
                    let input = &mut self.bufs.get_mut().input;
                    let head = input.split_to(end.end).freeze().slice(end.start..);
                    match parse_head(&head, &self.limits.parse()) {
                        Ok(req) => self.start_request(req, now),
                        Err(e) => return self.reject(e, now),
                    }
                }
                Read::Body(BodyReader::Length(remaining)) => {
                    let Some(bufs) = self.bufs.existing().filter(|b| !b.input.is_empty()) else {
                        break;
                    };
                    let n = (*remaining).min(bufs.input.len() as u64);
                    *remaining -= n;
                    let done = *remaining == 0;
                    // unwrap-free: n <= input.len(), a usize.
                    let data = bufs.input.split_to(n as usize).freeze();
                    self.push_body(data);
                    if done {
                        self.bufs.get_mut().events.push_back(Event::End);
                        self.read = Read::Done;
                    }
                }
                Read::Body(BodyReader::Chunked(decoder)) => {
                    match decoder.step(&mut self.bufs.get_mut().input, &self.limits.parse()) {
                        Ok(Step::NeedMore) => break,
                        Ok(Step::Data(data)) => self.push_body(data),
                        Ok(Step::Done(trailers)) => {
                            let events = &mut self.bufs.get_mut().events;
                            if !trailers.is_empty() {
                                events.push_back(Event::Trailers(trailers));
                            }
                            events.push_back(Event::End);
                            self.read = Read::Done;
                        }
                        Err(e) => return self.reject(e, now),
                    }
                }
                Read::Done | Read::Stopped => break,
            }
        }
        // After EOF, a request not complete by now never will be.
        if self.eof && matches!(self.read, Read::Idle | Read::Head(_) | Read::Body(_)) {
            self.read = Read::Stopped;
            if let Some(bufs) = self.bufs.existing() {
                bufs.input.clear();
            }
        }
    }

    fn start_request(&mut self, req: RequestHead, now: Now) {
        self.request = Some(Request {
            head_method: req.method == Method::Head,
            version: req.version,
            keep_alive: req.keep_alive,
            expects_continue: req.expects_continue,
            continue_sent: false,
        });
        if !req.keep_alive {
            self.must_close = true;
        }
        self.since = now.mono;
        let body = req.body;
        let events = &mut self.bufs.get_mut().events;
        events.push_back(Event::Head(req));
        self.read = match body {
            BodyKind::None => {
                events.push_back(Event::End);
                Read::Done
            }
            BodyKind::Length(n) => Read::Body(BodyReader::Length(n)),
            BodyKind::Chunked => Read::Body(BodyReader::Chunked(ChunkedDecoder::new())),
        };
    }

    fn push_body(&mut self, data: Bytes) {
        if !data.is_empty() {
            let bufs = self.bufs.get_mut();
            // Only a chunked body is counted: a length was judged when discarding began.
            if let (Some((_, discarded)), Read::Body(BodyReader::Chunked(_))) =
                (&mut bufs.discard, &self.read)
            {
                *discarded += data.len() as u64;
            }
            bufs.queued_body += data.len();
            bufs.events.push_back(Event::Body(data));
        }
    }

    /// The peer broke the protocol (see "Protocol errors" in the module documentation).
    fn reject(&mut self, e: ProtocolError, now: Now) {
        let status = e.status;
        let answered = self.write == Write::Waiting;
        // A HEAD's answer has no body, even the connection's own (RFC 9110 §9.3.2).
        let with_body = !self.request.as_ref().is_some_and(|r| r.head_method);
        let answer_bytes = if answered && with_body {
            write::canned_body(status).len() as u64
        } else {
            0
        };
        self.bufs.get_mut().events.push_back(Event::Rejected {
            error: e,
            answered,
            answer_bytes,
        });
        match self.write {
            Write::Waiting => {
                self.enter_closing(true);
                self.write = Write::Done;
                self.queue(Chunk::Bytes(write::canned(status, now.unix, with_body)));
            }
            Write::Sending(_) => self.abort(),
            Write::Done => self.enter_closing(true),
        }
    }

    /// `linger`: whether the peer may still be sending, so that closing must wait for its
    /// end of stream (see "Closing" in the module documentation).
    fn enter_closing(&mut self, linger: bool) {
        self.linger = linger;
        self.phase = Phase::Closing;
        self.read = Read::Stopped;
        self.must_close = true;
        if let Some(bufs) = self.bufs.existing() {
            bufs.input.clear();
        }
    }

    /// Appends to the output queue, merging small in-memory chunks.
    fn queue(&mut self, chunk: Chunk) {
        if chunk.is_empty() || self.phase == Phase::Closed {
            return;
        }
        let now = self.now;
        let bufs = self.bufs.get_mut();
        if bufs.out.is_empty() {
            bufs.send_since = now;
        }
        bufs.out_len += chunk.len();
        if let (Some(Chunk::Bytes(back)), Chunk::Bytes(b)) = (bufs.out.back_mut(), &chunk) {
            if back.len() + b.len() <= MERGE_MAX {
                let mut merged = BytesMut::with_capacity(back.len() + b.len());
                merged.extend_from_slice(back);
                merged.extend_from_slice(b);
                *back = merged.freeze();
                return;
            }
        }
        bufs.out.push_back(chunk);
    }

    /// Applies the state-triggered transitions to a fixed point, then lets idle buffers go.
    fn settle(&mut self, now: Now) {
        loop {
            let changed = match self.phase {
                Phase::Open => match (&self.read, self.write) {
                    (Read::Done, Write::Done)
                        if !self.must_close && (!self.eof || !self.bufs.input().is_empty()) =>
                    {
                        self.next_cycle(now);
                        true
                    }
                    // The whole request was read and answered: the peer has nothing more to
                    // send unless it pipelined past its own `Connection: close`.
                    (Read::Done, Write::Done) => {
                        // A close the application asked for may meet a keep-alive peer's
                        // next request at any moment.
                        let linger = !self.bufs.input().is_empty() || self.close_requested;
                        self.enter_closing(linger);
                        true
                    }
                    (Read::Stopped, Write::Done | Write::Waiting) => {
                        self.enter_closing(true);
                        true
                    }
                    // Answered before the body arrived, and closing: the rest of the body
                    // is of no use.
                    (Read::Body(_), Write::Done) if self.must_close => {
                        self.enter_closing(true);
                        true
                    }
                    // Answered before the body arrived: the rest is discarded, within
                    // bounds (see "Discarding an unwanted body").
                    (Read::Body(body), Write::Done) => match self.bufs.discard() {
                        // A length says at once whether the rest is within the bound.
                        None if matches!(body, BodyReader::Length(n) if *n > DISCARD_MAX) => {
                            self.enter_closing(true);
                            true
                        }
                        None => {
                            self.bufs.get_mut().discard = Some((now.mono, 0));
                            false
                        }
                        Some((_, n)) if n >= DISCARD_MAX => {
                            self.enter_closing(true);
                            true
                        }
                        Some(_) => false,
                    },
                    _ => false,
                },
                Phase::Closing if self.bufs.out().is_empty() => {
                    if self.eof || !self.linger {
                        self.abort();
                    } else {
                        self.phase = Phase::Lingering;
                        self.since = now.mono;
                    }
                    true
                }
                Phase::Lingering if self.eof => {
                    self.abort();
                    true
                }
                Phase::Closing | Phase::Lingering | Phase::Closed => false,
            };
            if !changed {
                break;
            }
        }
        self.release_idle_buffers();
    }

    /// A kept-alive connection waiting for its next request holds no buffer memory: an
    /// idle connection costs only this struct, with a `None` where its buffers were
    /// (thousands of idle clients are the common case), at the price of allocating again
    /// when the next request arrives. The whole box goes, not just the buffers' storage:
    /// an empty `input` left by `split_to` has no capacity of its own but still shares (and
    /// keeps alive) the buffer the last head was read into.
    fn release_idle_buffers(&mut self) {
        let idle = self.phase == Phase::Open
            && self.read == Read::Idle
            && self.bufs.input().is_empty()
            && self.bufs.out().is_empty()
            && self.bufs.events().is_empty();
        if idle {
            self.bufs = Bufs(None);
        }
    }

    fn next_cycle(&mut self, now: Now) {
        if let Some(bufs) = self.bufs.existing() {
            bufs.discard = None;
        }
        self.read = Read::Idle;
        self.write = Write::Waiting;
        self.request = None;
        self.since = now.mono;
        self.process(now);
    }

    /// The armed timers, derived from the state (no copy is stored, so none can go stale):
    /// one for the read side or the linger, plus `Send` while output is queued.
    fn timers(&self) -> [Option<Time>; 5] {
        let mut t = [None; 5];
        let at = |since: Time, ms: u32| Some(Time(since.0.saturating_add(u64::from(ms))));
        match self.phase {
            Phase::Open => match self.read {
                Read::Idle if self.bufs.out().is_empty() => {
                    t[ConnTimer::Idle as usize] = at(self.since, self.timeouts.idle_ms);
                }
                Read::Head(_) => {
                    t[ConnTimer::Header as usize] = at(self.since, self.timeouts.header_ms);
                }
                Read::Body(_) => {
                    let body = at(self.since, self.timeouts.body_ms);
                    let discard = self.bufs.discard().map(|(t, _)| t.after(DISCARD_TIME));
                    t[ConnTimer::Body as usize] = body.min(discard.or(body));
                }
                _ => {}
            },
            Phase::Lingering => t[ConnTimer::Linger as usize] = Some(self.since.after(LINGER)),
            Phase::Closing | Phase::Closed => {}
        }
        if self.phase != Phase::Closed {
            if let Some(since) = self.bufs.send_since() {
                t[ConnTimer::Send as usize] = at(since, self.timeouts.send_ms);
            }
        }
        t
    }
}

#[cfg(test)]
mod layout {
    use super::*;

    /// An idle kept-alive connection costs this struct and nothing else (memory per idle
    /// connection, bench/RESULTS.md): the buffers' box is gone and the struct stays small.
    #[test]
    fn an_idle_connection_is_small_and_holds_no_buffers() {
        assert!(
            core::mem::size_of::<Conn>() <= 136,
            "Conn grew to {} bytes",
            core::mem::size_of::<Conn>()
        );
        let now = Now::default();
        let mut c = Conn::new(&Limits::default(), &Timeouts::default(), now);
        assert!(c.bufs.0.is_none(), "a fresh connection holds no buffers");
        c.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", now);
        while c.poll_event().is_some() {}
        c.send_head(ResponseHead::new(200, ResponseBody::Length(2)), now)
            .unwrap();
        c.send_body(Chunk::Bytes(Bytes::from_static(b"hi")), now)
            .unwrap();
        c.send_end(None, now).unwrap();
        assert!(c.bufs.0.is_some());
        c.advance_transmit(c.transmit_queued(), now);
        assert_eq!(c.state(), ConnState::Idle);
        assert!(c.bufs.0.is_none(), "an idle connection holds no buffers");
        // And an empty box is the same state as none (for the model checker).
        let mut boxed = c.clone();
        boxed.bufs.get_mut();
        assert_eq!(boxed, c);
    }
}
