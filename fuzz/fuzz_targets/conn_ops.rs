//! The connection machine driven by arbitrary operations, asserting the invariants of the
//! `conn` model (weir-model) on every step.
//!
//! Operations: receive bytes (arbitrary, or pieces of valid and invalid requests so that
//! deep states are reached) cut to the read budget as the shell would; EOF; short and full
//! writes; time moving by an arbitrary amount or to the next deadline; the application
//! answering (whole, streamed, interim), ending a stream, accepting a body, closing.
//!
//! Invariants: no panic; at most one request in flight; nothing parsed after `Rejected`;
//! a closed connection holds nothing, reads nothing and has no deadline; no deadline is
//! left in the past after `handle_timeout`; what was transmitted reads, with the model's
//! strict client, as responses in request order (each tagged `X-Request: i` answers head
//! `i`), with the connection's own error answer only last; buffered bytes stay within the
//! limits.
//!
//! The last one is observed as the `conn` model observes it, from outside: the bytes
//! delivered minus the bytes the events account for (heads and chunk framing found in the
//! delivered bytes by this harness's own scanning, body data counted from `Body` events).
//! A receive admitted while no body is being read never takes that above
//! `header_bytes_max + 1` (the head buffer, or the pipelining budget), and one admitted while
//! a body is read never above `BODY_BUFFER` plus one chunk-size line (the harness cannot see
//! framing consumed ahead of the data); an excess left over from a body read may only
//! shrink. Closing, lingering, or after a rejection the connection discards its input, so
//! the check stops there.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir_core::http1::chunked::CHUNK_LINE_MAX;
use weir_core::http1::conn::BODY_BUFFER;
use weir_core::http1::{BodyKind, Conn, ConnState, Event, ResponseBody, ResponseHead};
use weir_core::{Chunk, Limits, Now, Time, Timeouts, UnixTime};
use weir_testkit::response::{self, Framing};

const FRAGMENTS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\n",
    b"POST /p HTTP/1.1\r\n",
    b"GET / HTTP/1.0\r\n",
    b"HEAD / HTTP/1.1\r\n",
    b"Host: a\r\n",
    b"Content-Length: 3\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Expect: 100-continue\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive\r\n",
    b"\r\n",
    b"abc",
    b"5;x=y\r\nhello\r\n",
    b"0\r\n\r\n",
    b"0\r\nT: 1\r\n\r\n",
    b" ",
    b"\r",
    b"\n",
];

#[derive(Arbitrary, Debug)]
enum Op {
    Receive(Vec<u8>),
    Fragments(Vec<u8>),
    Eof,
    Write(u16),
    WriteAll,
    Tick(u16),
    ToDeadline,
    Respond(u8),
    EndStream,
    AcceptBody,
    Close,
}

fn at(ms: u64) -> Now {
    Now {
        mono: Time(ms),
        unix: UnixTime(1_700_000_000 + (ms / 1000) as i64),
    }
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The body being read: where its head ended, whether it is chunked, and how many data
/// bytes the `Body` events carried.
struct Reading {
    head_end: usize,
    chunked: bool,
    data: usize,
}

/// Every byte delivered to the connection while it reads, and how far the events account
/// for them (see the module documentation). Lines are CRLF-terminated: a connection that
/// reported a head or a body checked that, so the first empty line ends a head.
#[derive(Default)]
struct Intake {
    stream: Vec<u8>,
    /// Where the next (or current) request starts: every earlier byte is accounted for.
    start: usize,
    reading: Option<Reading>,
    /// The connection stopped reading for good (closing, or rejected): no more checks.
    off: bool,
}

impl Intake {
    fn head(&mut self, body: BodyKind) {
        if self.off {
            return;
        }
        let mut pos = self.start;
        while self.stream[pos..].starts_with(b"\r\n") {
            pos += 2;
        }
        let end = find(&self.stream[pos..], b"\r\n\r\n")
            .expect("a head the connection reported was delivered");
        self.reading = Some(Reading {
            head_end: pos + end + 4,
            chunked: body == BodyKind::Chunked,
            data: 0,
        });
    }

    fn data(&mut self, n: usize) {
        if let Some(r) = &mut self.reading {
            r.data += n;
        }
    }

    fn end(&mut self) {
        if self.off {
            return;
        }
        self.start = self.accounted(true);
        self.reading = None;
    }

    /// Where the bytes the events account for end (never past what the connection
    /// consumed). `ended`: the request's `End` was seen, so a chunked body's last chunk
    /// and trailer section are consumed too.
    fn accounted(&self, ended: bool) -> usize {
        let Some(r) = &self.reading else {
            return self.start;
        };
        if !r.chunked {
            return r.head_end + r.data;
        }
        let s = &self.stream;
        let (mut pos, mut left) = (r.head_end, r.data);
        loop {
            let Some(line) = find(&s[pos..], b"\r\n") else {
                return pos;
            };
            let size = s[pos..pos + line]
                .iter()
                .map_while(|&b| (b as char).to_digit(16))
                .fold(0usize, |n, d| {
                    n.saturating_mul(16).saturating_add(d as usize)
                });
            if size == 0 {
                if !ended {
                    return pos;
                }
                pos += line + 2;
                if s[pos..].starts_with(b"\r\n") {
                    return pos + 2;
                }
                return pos + find(&s[pos..], b"\r\n\r\n").expect("trailers were delivered") + 4;
            }
            if left == 0 && !ended {
                return pos;
            }
            if left <= size && !ended {
                return pos + line + 2 + left;
            }
            left -= size;
            pos += line + 2 + size + 2;
        }
    }

    /// Delivered bytes the events do not account for: at least what the connection buffers.
    fn unparsed(&self) -> usize {
        self.stream.len() - self.accounted(false)
    }
}

struct Harness {
    conn: Conn,
    header_bytes_max: usize,
    intake: Intake,
    now: Now,
    heads: usize,
    answered: usize,
    streaming: bool,
    /// What each request head was, for the reader.
    framings: Vec<Framing>,
    rejected: bool,
    wire: Vec<u8>,
    responses: usize,
    canned_seen: bool,
    closed_seen: bool,
}

impl Harness {
    fn drain(&mut self) {
        while let Some(e) = self.conn.poll_event() {
            assert!(
                !self.rejected || e == Event::PeerClosed,
                "parsed after Rejected: {e:?}"
            );
            match e {
                Event::Head(h) => {
                    self.intake.head(h.body);
                    self.heads += 1;
                    self.framings.push(Framing {
                        head: h.method == weir_core::http1::Method::Head,
                        http10: h.version == weir_core::http1::Version::Http10,
                        close_ok: true,
                    });
                }
                Event::Body(b) => self.intake.data(b.len()),
                Event::End => self.intake.end(),
                Event::Rejected { .. } => self.rejected = true,
                _ => {}
            }
        }
        assert!(self.heads <= self.answered + 1, "two requests in flight");
    }

    /// Delivers as much of `bytes` as the read budget allows, as a shell does, and checks
    /// that buffered bytes stay within the limits.
    fn receive(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.conn.read_budget());
        let before = self.intake.unparsed();
        let bound = if self.intake.reading.is_some() {
            BODY_BUFFER + CHUNK_LINE_MAX + 4
        } else {
            self.header_bytes_max + 1
        };
        self.conn.receive(&bytes[..n], self.now);
        if !self.intake.off {
            self.intake.stream.extend_from_slice(&bytes[..n]);
        }
        self.drain();
        self.intake.off |= self.rejected
            || matches!(
                self.conn.state(),
                ConnState::Closing | ConnState::Lingering | ConnState::Closed
            );
        if !self.intake.off {
            let after = self.intake.unparsed();
            assert!(
                after <= bound.max(before),
                "{after} bytes buffered (bound {bound}, {before} before a receive of {n})"
            );
        }
    }

    fn write(&mut self, n: Option<u64>) {
        let Some(chunk) = self.conn.pending_transmit() else {
            return;
        };
        let Chunk::Bytes(b) = chunk else {
            panic!("the harness sends bytes only");
        };
        let n = n.map_or(b.len() as u64, |n| n.min(b.len() as u64));
        self.wire.extend_from_slice(&b[..n as usize]);
        self.conn.advance_transmit(n, self.now);
    }

    fn read_wire(&mut self) {
        let finished = matches!(self.conn.state(), ConnState::Lingering | ConnState::Closed)
            && self.conn.pending_transmit().is_none();
        loop {
            // The strict reader (weir-testkit) is told what each request was: HEAD, or
            // HTTP/1.0; an answer without a request head (the connection's own) is read
            // as one to a GET over HTTP/1.1.
            let framing = self
                .framings
                .get(self.responses)
                .copied()
                .unwrap_or_default();
            match response::read(&self.wire, framing, finished) {
                Ok(None) => return,
                Err(why) => panic!("garbled output ({why}): {:?}", self.wire),
                Ok(Some((r, used))) => {
                    self.wire.drain(..used);
                    if r.is_interim() {
                        continue;
                    }
                    assert!(
                        !self.canned_seen,
                        "a response after the connection's own answer"
                    );
                    match r.header("x-request").map(|v| v.parse::<usize>()) {
                        Some(Ok(i)) => assert_eq!(i, self.responses, "response out of order"),
                        Some(Err(_)) => panic!("bad tag"),
                        None => self.canned_seen = true,
                    }
                    self.responses += 1;
                }
            }
        }
    }

    fn respond(&mut self, kind: u8) {
        let body = match kind % 4 {
            0 => ResponseBody::Length(2),
            1 => ResponseBody::Streamed,
            2 => ResponseBody::Empty,
            _ => ResponseBody::Length(2),
        };
        let status = if kind % 4 == 3 { 100 } else { 200 };
        let mut head = ResponseHead::new(status, body);
        head.headers.push("X-Request", self.answered.to_string());
        if self.conn.send_head(head, self.now).is_err() || status == 100 {
            return;
        }
        if kind % 4 != 2 {
            let ok = self
                .conn
                .send_body(Chunk::Bytes(Bytes::from_static(b"ok")), self.now);
            assert!(ok.is_ok(), "body after an accepted head: {ok:?}");
        }
        if kind % 4 == 1 {
            self.streaming = true;
        } else {
            assert!(self.conn.send_end(None, self.now).is_ok());
            self.answered += 1;
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let limits = Limits {
        request_line_max: 64,
        header_bytes_max: 256,
        headers_max: 8,
        body_max: 64,
        ..Limits::default()
    };
    let timeouts = Timeouts::default();
    let now = at(0);
    let mut h = Harness {
        conn: Conn::new(&limits, &timeouts, now),
        header_bytes_max: limits.header_bytes_max,
        intake: Intake::default(),
        now,
        heads: 0,
        answered: 0,
        streaming: false,
        framings: Vec::new(),
        rejected: false,
        wire: Vec::new(),
        responses: 0,
        canned_seen: false,
        closed_seen: false,
    };
    for op in ops.into_iter().take(200) {
        match op {
            Op::Receive(bytes) => h.receive(&bytes),
            Op::Fragments(picks) => {
                let bytes: Vec<u8> = picks
                    .iter()
                    .flat_map(|&i| FRAGMENTS[usize::from(i) % FRAGMENTS.len()].to_vec())
                    .collect();
                h.receive(&bytes);
            }
            Op::Eof => {
                if h.conn.read_budget() > 0 {
                    h.conn.receive_eof(h.now);
                }
            }
            Op::Write(n) => h.write(Some(u64::from(n) + 1)),
            Op::WriteAll => h.write(None),
            Op::Tick(ms) => {
                h.now = at(h.now.mono.0 + u64::from(ms));
                h.conn.handle_timeout(h.now);
            }
            Op::ToDeadline => {
                if let Some(t) = h.conn.poll_timeout() {
                    h.now = at(t.0.max(h.now.mono.0));
                    h.conn.handle_timeout(h.now);
                }
            }
            Op::Respond(kind) => {
                if !h.streaming {
                    h.respond(kind);
                }
            }
            Op::EndStream => {
                if h.streaming && h.conn.send_end(None, h.now).is_ok() {
                    h.streaming = false;
                    h.answered += 1;
                }
            }
            Op::AcceptBody => h.conn.accept_body(),
            Op::Close => h.conn.close(h.now),
        }
        h.drain();
        if let Some(t) = h.conn.poll_timeout() {
            // Every call leaves only future deadlines, except ones the clock has not
            // been told about (Tick moves time; only then are due timers fired).
            assert!(t > h.now.mono || !matches!(h.conn.state(), ConnState::Closed));
        }
        if h.conn.state() == ConnState::Closed {
            if !h.closed_seen {
                h.closed_seen = true;
                h.streaming = false;
            }
            assert!(h.conn.pending_transmit().is_none(), "closed with output");
            assert_eq!(h.conn.read_budget(), 0, "closed but reading");
            assert_eq!(h.conn.poll_timeout(), None, "closed with a deadline");
        }
        h.read_wire();
    }
});
