//! Tests of the connection machine through a pair harness (h11's `ConnectionPair`, quinn's
//! `Pair`): a strict test client writes requests as bytes and parses the connection's output
//! back into responses, and time is a number the test advances by hand.

use std::collections::VecDeque;

use bytes::Bytes;
use core::time::Duration;
use proptest::prelude::*;

use crate::chunk::Chunk;
use crate::http1::conn::{Conn, ConnState, ConnTimer, Event, DISCARD_MAX, DISCARD_TIME, LINGER};
use crate::http1::error::UsageError;
use crate::http1::head::{BodyKind, Headers, Method, ResponseBody, ResponseHead, Version};
use crate::ids::{FileId, Token};
use crate::limits::{Limits, Timeouts};
use crate::time::{Now, Time, UnixTime};
use weir_testkit::date::parse_imf_fixdate;
use weir_testkit::response::{self, Delimiter, Framing, Response};

// ----- the harness ------------------------------------------------------------------------

fn at(ms: u64) -> Now {
    Now {
        mono: Time(ms),
        unix: UnixTime(1_700_000_000 + i64::try_from(ms / 1000).unwrap_or(0)),
    }
}

/// The byte a test file holds at `offset` (the harness "sendfile"s these).
fn file_byte(file: FileId, offset: u64) -> u8 {
    b'A' + ((file.0 .0 * 7 + offset) % 26) as u8
}

fn file_bytes(file: FileId, offset: u64, len: u64) -> Vec<u8> {
    (offset..offset + len).map(|o| file_byte(file, o)).collect()
}

fn render(chunk: &Chunk, n: u64) -> Vec<u8> {
    match chunk {
        // unwrap-free: n <= chunk length, a usize for Bytes.
        Chunk::Bytes(b) => b[..n as usize].to_vec(),
        Chunk::File { file, offset, .. } => file_bytes(*file, *offset, n),
    }
}

/// More chunks than any test's response makes: a connection whose output never runs out
/// (a chunk it does not consume) fails the test here rather than hang it.
const TRANSMIT_CHUNKS_MAX: usize = 100_000;

/// Every chunk the connection has queued, each written whole, in order.
fn drain_chunks(conn: &mut Conn, now: Now) -> Vec<Chunk> {
    let mut out = Vec::new();
    while let Some(c) = conn.pending_transmit() {
        assert!(
            out.len() < TRANSMIT_CHUNKS_MAX,
            "the connection's output does not run out"
        );
        let c = c.clone();
        conn.advance_transmit(c.len(), now);
        out.push(c);
    }
    out
}

/// The bytes of `chunks`, in order.
fn bytes_of(chunks: &[Chunk]) -> Vec<u8> {
    chunks.iter().flat_map(|c| render(c, c.len())).collect()
}

/// The strict client: the test kit's reader (independent of the core's writer) over the
/// transmitted bytes, in order, plus what only weir's own responses owe.
#[derive(Default)]
struct Client {
    pos: usize,
    /// What the client knows of each request sent and not yet answered, when a test says
    /// it is not a GET over HTTP/1.1 (the default).
    requests: VecDeque<Framing>,
}

impl Client {
    /// The next complete response, or `None` if more bytes are needed. `closed`: the
    /// server has finished writing (a close-delimited body ends there).
    fn next(&mut self, wire: &[u8], closed: bool) -> Option<Response> {
        let framing = self.requests.front().copied().unwrap_or_default();
        let rest = &wire[self.pos..];
        let (resp, used) = match response::read(rest, framing, closed) {
            Ok(r) => r?,
            Err(e) => panic!("not a valid response: {e}\n{}", response::preview(rest)),
        };
        self.pos += used;
        if !resp.is_interim() {
            assert_eq!(resp.field("server"), Some("weir"), "{resp}");
            assert!(resp.count("connection") <= 1, "{resp}");
            self.requests.pop_front();
        }
        Some(resp)
    }
}

/// A connection, a strict client, and a clock.
struct Pair {
    conn: Conn,
    now: Now,
    wire: Vec<u8>,
    client: Client,
}

impl Pair {
    fn new() -> Pair {
        Pair::with(Limits::default(), Timeouts::default())
    }

    fn with(limits: Limits, timeouts: Timeouts) -> Pair {
        let now = at(1_000);
        Pair {
            conn: Conn::new(&limits, &timeouts, now),
            now,
            wire: Vec::new(),
            client: Client::default(),
        }
    }

    /// The client sends bytes (`expect_head_response` and `expect_http10_response` tell
    /// the client what it needs to know of a request that is not a GET over HTTP/1.1).
    fn send(&mut self, bytes: &[u8]) {
        self.conn.receive(bytes, self.now);
    }

    fn expect_head_response(&mut self) {
        self.client.requests.push_back(Framing {
            head: true,
            ..Framing::default()
        });
    }

    /// The next response answers an HTTP/1.0 request: never chunked, and a streamed body
    /// ends with the close.
    fn expect_http10_response(&mut self) {
        self.client.requests.push_back(Framing {
            head: false,
            http10: true,
            close_ok: true,
        });
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.conn.poll_event()).collect()
    }

    fn advance(&mut self, ms: u64) {
        self.now = at(self.now.mono.0 + ms);
        self.conn.handle_timeout(self.now);
    }

    /// Moves every queued byte to the wire.
    fn transmit(&mut self) {
        let chunks = drain_chunks(&mut self.conn, self.now);
        self.wire.extend(bytes_of(&chunks));
    }

    /// Moves every queued byte to the wire, at most `n` bytes per write.
    fn transmit_in_pieces(&mut self, n: u64) {
        for _ in 0..TRANSMIT_CHUNKS_MAX {
            if !self.transmit_some(n) {
                return;
            }
        }
        panic!("the connection's output does not run out");
    }

    /// Moves at most `n` bytes of the front chunk to the wire.
    fn transmit_some(&mut self, n: u64) -> bool {
        let Some(chunk) = self.conn.pending_transmit() else {
            return false;
        };
        let n = n.min(chunk.len());
        self.wire.extend(render(chunk, n));
        self.conn.advance_transmit(n, self.now);
        true
    }

    fn finished_writing(&self) -> bool {
        matches!(self.conn.state(), ConnState::Lingering | ConnState::Closed)
            && self.conn.pending_transmit().is_none()
    }

    fn responses(&mut self) -> Vec<Response> {
        self.transmit();
        let closed = self.finished_writing();
        std::iter::from_fn(|| self.client.next(&self.wire, closed)).collect()
    }

    fn respond(&mut self, status: u16, body: &[u8]) {
        let mut head = ResponseHead::new(status, ResponseBody::Length(body.len() as u64));
        head.headers.push("Content-Type", "text/plain");
        self.conn.send_head(head, self.now).expect("send_head");
        self.conn
            .send_body(Chunk::Bytes(Bytes::copy_from_slice(body)), self.now)
            .expect("send_body");
        self.conn.send_end(None, self.now).expect("send_end");
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n").into_bytes()
}

fn head_of(e: &Event) -> &crate::http1::head::RequestHead {
    match e {
        Event::Head(h) => h,
        other => panic!("expected a head, got {other:?}"),
    }
}

/// Merges adjacent body events, so that event lists from different splits compare equal.
fn normalise(events: Vec<Event>) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for e in events {
        if let (Some(Event::Body(prev)), Event::Body(b)) = (out.last_mut(), &e) {
            let mut v = prev.to_vec();
            v.extend_from_slice(b);
            *prev = Bytes::from(v);
            continue;
        }
        out.push(e);
    }
    out
}

// ----- the request/response cycle -----------------------------------------------------

#[test]
fn simple_exchange_keeps_alive() {
    let mut p = Pair::new();
    assert_eq!(p.conn.state(), ConnState::Idle);
    p.send(GET);
    let ev = p.events();
    assert_eq!(ev.len(), 2);
    let h = head_of(&ev[0]);
    assert_eq!(h.method, Method::Get);
    assert_eq!(h.target, "/");
    assert_eq!(h.host.as_deref(), Some(&b"example.com"[..]));
    assert_eq!(h.body, BodyKind::None);
    assert_eq!(ev[1], Event::End);
    assert_eq!(p.conn.state(), ConnState::AwaitingResponse);
    p.respond(200, b"hello");
    // Head and small body were merged into one chunk.
    assert_eq!(p.conn.pending_transmit().map(|_| ()), Some(()));
    let queued = p.conn.transmit_queued();
    assert_eq!(p.conn.pending_transmit().map(Chunk::len), Some(queued));
    let r = p.responses();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, 200);
    assert_eq!(r[0].body, b"hello");
    assert_eq!(r[0].header("content-length"), Some("5"));
    assert_eq!(r[0].header("content-type"), Some("text/plain"));
    assert_eq!(r[0].header("connection"), None);
    assert_eq!(r[0].header("date"), Some(p.now.unix.http_date().as_str()));
    assert_eq!(p.conn.state(), ConnState::Idle);
    assert_eq!(p.conn.transmit_queued(), 0);
    // And a second request on the same connection.
    p.send(&get("/two"));
    assert_eq!(head_of(&p.events()[0]).target, "/two");
}

#[test]
fn pipelined_requests_wait_for_the_previous_response() {
    let mut p = Pair::new();
    let mut bytes = get("/1");
    bytes.extend(b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
    bytes.extend(get("/3"));
    p.send(&bytes);
    let ev = p.events();
    assert_eq!(ev.len(), 2, "only the first request: {ev:?}");
    assert_eq!(head_of(&ev[0]).target, "/1");
    assert_eq!(p.conn.state(), ConnState::AwaitingResponse);
    // The head goes out, but the next request waits for the end of the response.
    p.conn
        .send_head(ResponseHead::new(200, ResponseBody::Length(1)), p.now)
        .unwrap();
    assert!(p.events().is_empty());
    p.conn
        .send_body(Chunk::Bytes(Bytes::from_static(b"1")), p.now)
        .unwrap();
    assert!(p.events().is_empty());
    p.conn.send_end(None, p.now).unwrap();
    let ev = p.events();
    assert_eq!(head_of(&ev[0]).target, "/2");
    assert_eq!(
        ev[1..],
        [Event::Body(Bytes::from_static(b"abc")), Event::End]
    );
    p.respond(201, b"2");
    let ev = p.events();
    assert_eq!(head_of(&ev[0]).target, "/3");
    p.respond(202, b"3");
    let r = p.responses();
    let got: Vec<(u16, &[u8])> = r.iter().map(|r| (r.status, &r.body[..])).collect();
    assert_eq!(got, [(200, &b"1"[..]), (201, b"2"), (202, b"3")]);
}

#[test]
fn early_response_keeps_reading_the_body() {
    let mut p = Pair::new();
    p.send(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nab");
    let ev = p.events();
    assert_eq!(ev.len(), 2);
    p.respond(405, b"no");
    assert_eq!(p.conn.state(), ConnState::ReadingBody);
    p.send(b"cdef");
    p.send(&get("/next"));
    let ev = p.events();
    assert_eq!(ev[0], Event::Body(Bytes::from_static(b"cdef")));
    assert_eq!(ev[1], Event::End);
    assert_eq!(head_of(&ev[2]).target, "/next");
    p.respond(200, b"ok");
    let r = p.responses();
    assert_eq!(r.len(), 2);
    assert!(!r[0].closes());
}

#[test]
fn an_unwanted_chunked_body_is_discarded_up_to_a_mebibyte_then_the_connection_closes() {
    let mut p = Pair::new();
    p.send(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    p.events();
    p.respond(405, b"no");
    assert_eq!(p.responses()[0].status, 405);
    let mut piece = b"10000\r\n".to_vec();
    piece.extend(vec![b'x'; 0x10000]);
    piece.extend(b"\r\n");
    let mut sent = 0;
    while p.conn.state() == ConnState::ReadingBody {
        assert!(sent <= DISCARD_MAX, "still reading after {sent} bytes");
        p.send(&piece);
        p.events();
        sent += 0x10000;
    }
    assert_eq!(sent, DISCARD_MAX);
    assert_eq!(p.conn.state(), ConnState::Lingering);
    p.advance(LINGER.as_millis() as u64);
    assert_eq!(p.conn.state(), ConnState::Closed);
}

#[test]
fn an_unwanted_body_longer_than_a_mebibyte_is_not_read_at_all() {
    let mut p = Pair::new();
    p.send(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 16000000\r\n\r\nabc");
    p.events();
    p.respond(405, b"no");
    let r = p.responses();
    assert_eq!(r[0].status, 405);
    assert_eq!(p.conn.state(), ConnState::Lingering);
    // Within the bound, the rest is read.
    let mut p = Pair::new();
    p.send(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\nabc");
    p.events();
    p.respond(405, b"no");
    p.transmit();
    assert_eq!(p.conn.state(), ConnState::ReadingBody);
    p.send(&vec![b'x'; 1_048_573]);
    p.events();
    assert_eq!(p.conn.state(), ConnState::Idle);
}

#[test]
fn an_unwanted_body_is_discarded_for_five_seconds_at_most() {
    let mut p = Pair::new();
    p.send(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n");
    p.events();
    p.respond(405, b"no");
    assert_eq!(p.responses()[0].status, 405);
    let start = p.now.mono;
    // A byte every half second keeps the body timer from firing …
    while p.conn.state() == ConnState::ReadingBody {
        assert!(p.now.mono.0 - start.0 <= DISCARD_TIME.as_millis() as u64);
        p.send(b"x");
        p.events();
        p.advance(500);
    }
    // … but not the discard limit, which closes without a 408: the 405 was the answer.
    assert_eq!(p.now.mono, start.after(DISCARD_TIME));
    assert_eq!(p.conn.state(), ConnState::Lingering);
    assert!(p.events().is_empty());
    p.advance(LINGER.as_millis() as u64);
    assert_eq!(p.conn.state(), ConnState::Closed);
}

#[test]
fn the_discard_limits_start_afresh_with_each_request() {
    let mut p = Pair::new();
    for _ in 0..3 {
        p.send(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 900000\r\n\r\n");
        p.events();
        p.respond(405, b"no");
        p.transmit();
        p.advance(4_000);
        p.send(&vec![b'x'; 900_000]);
        p.events();
        assert_eq!(p.conn.state(), ConnState::Idle);
    }
    assert_eq!(p.responses().len(), 3);
}

#[test]
fn leading_empty_lines_are_ignored() {
    let mut p = Pair::new();
    let mut bytes = b"\r\n\r\n".to_vec();
    bytes.extend(GET);
    p.send(&bytes);
    assert_eq!(head_of(&p.events()[0]).target, "/");
}

/// Empty lines before the request line count against the head's bound, and the scanner
/// says 431 as soon as they pass it, without waiting for another byte. (A connection then
/// holds exactly one byte past the bound, all its read budget allows while it reads a
/// head; it would refuse the head anyway, but the scanner is also what reads a chunked
/// body's trailer section, and its verdict must not depend on who calls it.)
#[test]
fn leading_empty_lines_count_against_the_head_bound() {
    let scan = |bytes: &[u8], bound| {
        crate::http1::parse::HeadScan::request()
            .scan(bytes, 100, bound)
            .map(|end| end.is_some())
            .map_err(|e| e.status)
    };
    assert_eq!(scan(b"\r\n\r\n", 3), Err(431));
    assert_eq!(
        scan(b"\r\n\r\n", 4),
        Ok(false),
        "within the bound: more to come"
    );
}

/// A chunked body's trailer section is bounded by the connection's own head limit (here
/// 300 bytes), not by the default's 32 KiB.
#[test]
fn trailers_past_the_connections_head_bound_are_refused() {
    let mut p = Pair::with(small_limits(), Timeouts::default());
    let mut bytes = b"PUT /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
          1\r\na\r\n0\r\nX-Long: "
        .to_vec();
    bytes.extend([b'v'; 400]);
    bytes.extend(b"\r\n\r\n");
    p.send(&bytes);
    p.conn.accept_body();
    let statuses: Vec<u16> = p
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Rejected { error, .. } => Some(error.status),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, [431]);
}

#[test]
fn chunked_request_body_with_trailers() {
    let mut p = Pair::new();
    p.send(
        b"PUT /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
          3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Check: 5\r\n\r\n",
    );
    let ev = normalise(p.events());
    assert_eq!(head_of(&ev[0]).body, BodyKind::Chunked);
    assert_eq!(ev[1], Event::Body(Bytes::from_static(b"abcde")));
    let Event::Trailers(t) = &ev[2] else {
        panic!("trailers expected: {ev:?}");
    };
    assert_eq!(t.get("x-check").map(|v| &v[..]), Some(&b"5"[..]));
    assert_eq!(ev[3], Event::End);
    assert_eq!(ev.len(), 4);
}

#[test]
fn absolute_form_target_names_the_host() {
    let mut p = Pair::new();
    p.send(b"GET http://other.example:8080/x HTTP/1.1\r\nHost: example.com\r\n\r\n");
    let ev = p.events();
    let h = head_of(&ev[0]);
    assert_eq!(h.host.as_deref(), Some(&b"other.example:8080"[..]));
    assert_eq!(h.target, "http://other.example:8080/x");
}

// ----- responses --------------------------------------------------------------------------

#[test]
fn connection_close_request_closes_after_the_response() {
    let mut p = Pair::new();
    p.send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n");
    let ev = p.events();
    assert!(!head_of(&ev[0]).keep_alive);
    p.respond(200, b"x");
    assert_eq!(p.conn.state(), ConnState::Closing);
    let r = p.responses();
    assert!(r[0].closes());
    assert_eq!(p.conn.state(), ConnState::Lingering);
    assert_eq!(p.conn.read_budget(), crate::http1::conn::LINGER_READ);
    p.send(b"discarded");
    assert!(p.events().is_empty());
    p.conn.receive_eof(p.now);
    assert_eq!(p.events(), [Event::PeerClosed]);
    assert_eq!(p.conn.state(), ConnState::Closed);
}

#[test]
fn streamed_body_is_chunked_and_files_stay_files() {
    let mut p = Pair::new();
    p.send(GET);
    p.events();
    p.conn
        .send_head(ResponseHead::new(200, ResponseBody::Streamed), p.now)
        .unwrap();
    p.conn
        .send_body(Chunk::Bytes(Bytes::from_static(b"hello ")), p.now)
        .unwrap();
    let file = FileId(Token(3));
    p.conn
        .send_body(
            Chunk::File {
                file,
                offset: 10,
                len: 40,
            },
            p.now,
        )
        .unwrap();
    p.conn.send_body(Chunk::Bytes(Bytes::new()), p.now).unwrap();
    let mut trailers = Headers::new();
    trailers.push("X-Digest", "abc");
    p.conn.send_end(Some(trailers), p.now).unwrap();
    // head+"6\r\nhello \r\n28\r\n", the file, "\r\n0\r\n…".
    let chunks = drain_chunks(&mut p.conn, p.now);
    let kinds: Vec<bool> = chunks
        .iter()
        .map(|c| matches!(c, Chunk::File { .. }))
        .collect();
    p.wire.extend(bytes_of(&chunks));
    assert_eq!(kinds, [false, true, false]);
    let r = p.responses();
    assert_eq!(r[0].header("transfer-encoding"), Some("chunked"));
    let mut want = b"hello ".to_vec();
    want.extend(file_bytes(file, 10, 40));
    assert_eq!(r[0].body, want);
    assert_eq!(r[0].trailers, [("x-digest".to_owned(), "abc".to_owned())]);
    assert!(!r[0].closes());
}

#[test]
fn head_and_bodiless_statuses_carry_no_body() {
    let mut p = Pair::new();
    p.send(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
    p.expect_head_response();
    assert_eq!(head_of(&p.events()[0]).method, Method::Head);
    p.respond(200, b"twelve bytes");
    let r = p.responses();
    assert_eq!(r[0].header("content-length"), Some("12"));
    assert!(r[0].body.is_empty());
    assert_eq!(p.client.pos, p.wire.len(), "no body bytes on the wire");

    p.send(GET);
    p.events();
    p.conn
        .send_head(ResponseHead::new(204, ResponseBody::Empty), p.now)
        .unwrap();
    p.conn
        .send_body(Chunk::Bytes(Bytes::from_static(b"dropped")), p.now)
        .unwrap();
    p.conn.send_end(None, p.now).unwrap();
    let r = p.responses();
    assert_eq!(r[0].status, 204);
    assert_eq!(r[0].count("content-length"), 0);
    assert_eq!(p.client.pos, p.wire.len());

    p.send(GET);
    p.events();
    p.conn
        .send_head(ResponseHead::new(200, ResponseBody::Empty), p.now)
        .unwrap();
    p.conn.send_end(None, p.now).unwrap();
    let r = p.responses();
    assert_eq!(r[0].header("content-length"), Some("0"));
}

#[test]
fn usage_errors() {
    let mut p = Pair::new();
    let head = || ResponseHead::new(200, ResponseBody::Length(2));
    assert_eq!(
        p.conn.send_head(head(), p.now),
        Err(UsageError::NoRequestToAnswer)
    );
    assert_eq!(
        p.conn
            .send_body(Chunk::Bytes(Bytes::from_static(b"x")), p.now),
        Err(UsageError::HeadNotSent)
    );
    assert_eq!(p.conn.send_end(None, p.now), Err(UsageError::HeadNotSent));
    p.send(GET);
    p.events();
    p.conn.send_head(head(), p.now).unwrap();
    assert_eq!(
        p.conn.send_head(head(), p.now),
        Err(UsageError::NoRequestToAnswer)
    );
    assert_eq!(
        p.conn
            .send_body(Chunk::Bytes(Bytes::from_static(b"xyz")), p.now),
        Err(UsageError::LengthMismatch)
    );
    p.conn
        .send_body(Chunk::Bytes(Bytes::from_static(b"x")), p.now)
        .unwrap();
    assert_eq!(
        p.conn.send_end(None, p.now),
        Err(UsageError::LengthMismatch)
    );
    p.conn
        .send_body(Chunk::Bytes(Bytes::from_static(b"y")), p.now)
        .unwrap();
    p.conn.send_end(None, p.now).unwrap();
    assert_eq!(p.responses()[0].body, b"xy");
    p.conn.abort();
    assert_eq!(p.conn.state(), ConnState::Closed);
    assert_eq!(p.conn.send_head(head(), p.now), Err(UsageError::Closed));
    assert_eq!(p.conn.read_budget(), 0);
    assert_eq!(p.conn.poll_timeout(), None);
}

// ----- HTTP/1.0 ---------------------------------------------------------------------------

#[test]
fn http10_closes_unless_asked_to_keep_alive() {
    let mut p = Pair::new();
    p.expect_http10_response();
    p.send(b"GET / HTTP/1.0\r\n\r\n");
    let ev = p.events();
    assert_eq!(head_of(&ev[0]).version, Version::Http10);
    assert!(!head_of(&ev[0]).keep_alive);
    p.respond(200, b"a");
    let r = p.responses();
    assert!(r[0].closes());
    // The request was read whole and nothing followed it: no need to linger.
    assert_eq!(p.conn.state(), ConnState::Closed);

    let mut p = Pair::new();
    p.expect_http10_response();
    p.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert!(head_of(&p.events()[0]).keep_alive);
    p.respond(200, b"a");
    let r = p.responses();
    assert_eq!(r[0].header("connection"), Some("keep-alive"));
    assert_eq!(p.conn.state(), ConnState::Idle);
}

#[test]
fn http10_streamed_body_is_close_delimited() {
    let mut p = Pair::new();
    p.expect_http10_response();
    p.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    p.events();
    p.conn
        .send_head(ResponseHead::new(200, ResponseBody::Streamed), p.now)
        .unwrap();
    p.conn
        .send_body(Chunk::Bytes(Bytes::from_static(b"raw ")), p.now)
        .unwrap();
    p.conn
        .send_body(Chunk::Bytes(Bytes::from_static(b"bytes")), p.now)
        .unwrap();
    p.conn.send_end(None, p.now).unwrap();
    let r = p.responses();
    assert_eq!(r.len(), 1);
    assert!(r[0].closes());
    assert_eq!(r[0].count("transfer-encoding"), 0);
    assert_eq!(r[0].count("content-length"), 0);
    assert_eq!(r[0].body, b"raw bytes");
    assert_eq!(r[0].delimiter, Delimiter::Close);
    assert_eq!(p.conn.state(), ConnState::Closed);
}

// ----- 100-continue -----------------------------------------------------------------------

const EXPECT: &[u8] =
    b"PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";

#[test]
fn continue_is_sent_once_on_accept_body() {
    let mut p = Pair::new();
    p.send(EXPECT);
    let ev = p.events();
    assert!(head_of(&ev[0]).expects_continue);
    assert!(
        p.conn.pending_transmit().is_none(),
        "nothing before accept_body"
    );
    p.conn.accept_body();
    p.conn.accept_body();
    p.transmit();
    assert_eq!(p.wire, b"HTTP/1.1 100 Continue\r\n\r\n");
    p.send(b"data");
    assert_eq!(
        p.events(),
        [Event::Body(Bytes::from_static(b"data")), Event::End]
    );
    p.conn.accept_body();
    p.respond(201, b"");
    let r = p.responses();
    assert_eq!(r.iter().map(|r| r.status).collect::<Vec<_>>(), [100, 201]);
    assert!(!r[1].closes());
    assert_eq!(p.conn.state(), ConnState::Idle);
}

#[test]
fn final_response_before_continue_closes_the_connection() {
    let mut p = Pair::new();
    p.send(EXPECT);
    p.events();
    p.respond(413, b"too big");
    p.conn.accept_body();
    let r = p.responses();
    assert_eq!(r.len(), 1, "no 100 Continue: {r:?}");
    assert_eq!(r[0].status, 413);
    assert!(r[0].closes());
    assert_eq!(p.conn.state(), ConnState::Lingering);
    // Whatever the client sends now is not parsed.
    p.send(&get("/smuggled"));
    assert!(p.events().is_empty());
}

#[test]
fn accept_body_after_a_final_head_sends_no_continue() {
    // The final head has gone out but the body has not arrived: a 100 now would follow
    // the final response, which RFC 9110 §15.2 forbids (1xx come before it).
    let mut p = Pair::new();
    p.send(EXPECT);
    p.events();
    p.conn
        .send_head(ResponseHead::new(413, ResponseBody::Length(7)), p.now)
        .unwrap();
    p.transmit();
    p.conn.accept_body();
    assert!(p.conn.pending_transmit().is_none(), "a 100 after the 413");
    p.conn
        .send_body(Chunk::Bytes(Bytes::from_static(b"too big")), p.now)
        .unwrap();
    p.conn.send_end(None, p.now).unwrap();
    let r = p.responses();
    assert_eq!(r.iter().map(|r| r.status).collect::<Vec<_>>(), [413]);
}

#[test]
fn interim_heads_skip_http10_clients_and_a_second_100() {
    // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
    let mut p = Pair::new();
    p.send(b"GET / HTTP/1.0\r\n\r\n");
    p.events();
    p.conn
        .send_head(ResponseHead::new(103, ResponseBody::Empty), p.now)
        .unwrap();
    assert!(p.conn.pending_transmit().is_none(), "a 103 to HTTP/1.0");
    p.expect_http10_response();
    p.respond(200, b"ok");
    let r = p.responses();
    assert_eq!(r.iter().map(|r| r.status).collect::<Vec<_>>(), [200]);

    // A 100 the connection already sent on accept_body is not repeated; other 1xx are.
    let mut p = Pair::new();
    p.send(EXPECT);
    p.events();
    p.conn.accept_body();
    p.conn
        .send_head(ResponseHead::new(100, ResponseBody::Empty), p.now)
        .unwrap();
    p.conn
        .send_head(ResponseHead::new(103, ResponseBody::Empty), p.now)
        .unwrap();
    p.send(b"data");
    p.events();
    p.respond(201, b"");
    let r = p.responses();
    assert_eq!(
        r.iter().map(|r| r.status).collect::<Vec<_>>(),
        [100, 103, 201]
    );
}

#[test]
fn expect_with_body_already_sent_needs_no_close() {
    let mut p = Pair::new();
    let mut bytes = EXPECT.to_vec();
    bytes.extend(b"data");
    p.send(&bytes);
    assert_eq!(p.events().len(), 3);
    p.respond(200, b"ok");
    let r = p.responses();
    assert!(!r[0].closes());
}

// ----- back-pressure ----------------------------------------------------------------------

#[test]
fn read_budget_follows_the_buffer() {
    let limits = Limits {
        header_bytes_max: 1024,
        ..Limits::default()
    };
    let mut p = Pair::with(limits, Timeouts::default());
    assert_eq!(p.conn.read_budget(), 1025);
    p.send(b"GET / HT");
    assert_eq!(p.conn.read_budget(), 1025 - 8);
    p.send(b"TP/1.1\r\nHost: a\r\n\r\n");
    p.events();
    // A complete request waits for its response: up to header_bytes_max of pipelined input.
    assert_eq!(p.conn.read_budget(), 1024);
    let mut pipelined = Vec::new();
    while pipelined.len() < 1024 {
        pipelined.extend(get("/next"));
    }
    pipelined.truncate(1024);
    p.send(&pipelined);
    assert_eq!(p.conn.read_budget(), 0);
    assert!(p.events().is_empty());
    p.respond(200, b"");
    assert!(!p.events().is_empty());
    assert!(p.conn.read_budget() > 0);

    // While reading a body: BODY_BUFFER less what is buffered or not yet polled.
    let mut p = Pair::new();
    p.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n");
    p.events();
    assert_eq!(p.conn.read_budget(), crate::http1::conn::BODY_BUFFER);
    p.send(&[b'x'; 1000]);
    assert_eq!(p.conn.read_budget(), crate::http1::conn::BODY_BUFFER - 1000);
    p.events();
    assert_eq!(p.conn.read_budget(), crate::http1::conn::BODY_BUFFER);
    p.conn.receive_eof(p.now);
    assert_eq!(p.conn.read_budget(), 0);
}

// ----- malformed requests -----------------------------------------------------------------

/// Input, expected status.
const MALFORMED: &[(&str, &[u8], u16)] = &[
    (
        "TE and CL",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        400,
    ),
    (
        "duplicate CL",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
        400,
    ),
    (
        "CL list",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n",
        400,
    ),
    (
        "empty CL",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
        400,
    ),
    (
        "non-digit CL",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3a\r\n\r\n",
        400,
    ),
    (
        "overflowing CL",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
        400,
    ),
    // RFC 9112 §6.1: a transfer coding weir does not understand is 501, then close.
    (
        "final coding not chunked",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        501,
    ),
    (
        "unknown coding alone",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
    ),
    (
        "identity",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
        501,
    ),
    (
        "unknown coding with CL",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n",
        400,
    ),
    (
        "chunked twice in one line",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        400,
    ),
    (
        "unknown coding before chunked",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        501,
    ),
    (
        "chunked twice",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    (
        "TE in HTTP/1.0",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    (
        "obs-fold",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",
        400,
    ),
    ("bare CR", b"GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n", 400),
    ("bare LF", b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    (
        "space before colon",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        400,
    ),
    ("NUL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400),
    ("CTL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x1bb\r\n\r\n", 400),
    (
        "invalid field name",
        b"GET / HTTP/1.1\r\nHost: a\r\nX[1]: b\r\n\r\n",
        400,
    ),
    (
        "non-hex chunk size",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
    ),
    (
        "empty chunk size",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
        400,
    ),
    (
        "overflowing chunk size",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000000\r\n",
        400,
    ),
    (
        "no CRLF after chunk data",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    ("no Host", b"GET / HTTP/1.1\r\n\r\n", 400),
    (
        "two Hosts",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        400,
    ),
    ("Host with space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("Host with slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("Host with userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("HTTP/3.0", b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    ("garbage line", b"hello\r\n\r\n", 400),
    (
        "CL above body_max",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n",
        413,
    ),
    (
        "chunked above body_max",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n",
        413,
    ),
];

fn small_limits() -> Limits {
    Limits {
        request_line_max: 100,
        header_bytes_max: 300,
        headers_max: 5,
        body_max: 1000,
        ..Limits::default()
    }
}

/// Feeds `input` followed by a valid request, and checks the whole rejection contract.
fn check_rejected(name: &str, input: &[u8], status: u16, piecewise: bool) {
    let mut p = Pair::with(small_limits(), Timeouts::default());
    let mut bytes = input.to_vec();
    bytes.extend(GET);
    if piecewise {
        for b in &bytes {
            p.send(std::slice::from_ref(b));
        }
    } else {
        p.send(&bytes);
    }
    let ev = p.events();
    let rejected: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Rejected { error, .. } => Some(error.status),
            _ => None,
        })
        .collect();
    assert_eq!(rejected, [status], "{name}: {ev:?}");
    assert!(
        matches!(ev.last(), Some(Event::Rejected { .. })),
        "{name}: nothing after Rejected: {ev:?}"
    );
    let heads = ev.iter().filter(|e| matches!(e, Event::Head(_))).count();
    assert!(
        heads <= 1,
        "{name}: the following request was parsed: {ev:?}"
    );
    assert_eq!(p.conn.state(), ConnState::Closing, "{name}");
    let r = p.responses();
    assert_eq!(r.len(), 1, "{name}: {r:?}");
    assert_eq!(r[0].status, status, "{name}");
    assert!(r[0].closes(), "{name}");
    assert_eq!(
        r[0].header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(
        String::from_utf8_lossy(&r[0].body).starts_with(&status.to_string()),
        "{name}"
    );
    assert_eq!(p.conn.state(), ConnState::Lingering, "{name}");
    p.send(GET);
    assert!(p.events().is_empty(), "{name}");
    p.conn.receive_eof(p.now);
    assert_eq!(p.conn.state(), ConnState::Closed, "{name}");
    assert_eq!(
        p.wire.len(),
        p.client.pos,
        "{name}: nothing after the canned response"
    );
}

#[test]
fn malformed_requests_are_rejected_and_nothing_follows() {
    for (name, input, status) in MALFORMED {
        check_rejected(name, input, *status, false);
        check_rejected(name, input, *status, true);
    }
}

#[test]
fn oversized_heads_are_rejected() {
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(100));
    check_rejected("long request line", long_line.as_bytes(), 414, false);
    check_rejected("long request line", long_line.as_bytes(), 414, true);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "b".repeat(300)
    );
    check_rejected("big head", big.as_bytes(), 431, false);
    check_rejected("big head", big.as_bytes(), 431, true);
    let many = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\n\r\n";
    check_rejected("too many fields", many.as_bytes(), 431, false);
}

#[test]
fn oversized_head_is_refused_before_it_ends() {
    let mut p = Pair::with(small_limits(), Timeouts::default());
    let budget = p.conn.read_budget();
    assert_eq!(budget, 301);
    p.send(&[b'G'; 50]);
    p.send(&[b'G'; 51]);
    assert_eq!(
        p.events(),
        [Event::Rejected {
            error: crate::http1::parse::err(414, "request line too long"),
            answered: true,
            answer_bytes: "414 URI Too Long\n".len() as u64,
        }]
    );
}

#[test]
fn error_in_a_body_after_the_response_started_aborts() {
    let mut p = Pair::new();
    p.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n");
    assert_eq!(p.events().len(), 2);
    p.conn
        .send_head(ResponseHead::new(200, ResponseBody::Streamed), p.now)
        .unwrap();
    p.send(b"zz\r\n");
    let ev = p.events();
    assert!(
        matches!(ev[..], [Event::Rejected { ref error, answered: false, .. }] if error.status == 400)
    );
    assert_eq!(p.conn.state(), ConnState::Closed);
    assert!(p.conn.pending_transmit().is_none());
}

// ----- EOF and close ----------------------------------------------------------------------

#[test]
fn eof_while_idle_closes() {
    let mut p = Pair::new();
    p.conn.receive_eof(p.now);
    assert_eq!(p.events(), [Event::PeerClosed]);
    assert_eq!(p.conn.state(), ConnState::Closed);
}

#[test]
fn eof_mid_head_closes_without_a_response() {
    let mut p = Pair::new();
    p.send(b"GET / HTTP/1.1\r\nHo");
    assert_eq!(p.conn.state(), ConnState::ReadingHead);
    p.conn.receive_eof(p.now);
    assert_eq!(p.events(), [Event::PeerClosed]);
    assert_eq!(p.conn.state(), ConnState::Closed);
    assert!(p.conn.pending_transmit().is_none());
}

#[test]
fn eof_mid_body_drops_the_request() {
    let mut p = Pair::new();
    p.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc");
    assert_eq!(p.events().len(), 2);
    p.conn.receive_eof(p.now);
    assert_eq!(p.events(), [Event::PeerClosed]);
    assert_eq!(p.conn.state(), ConnState::Closed);
    assert_eq!(
        p.conn
            .send_head(ResponseHead::new(200, ResponseBody::Empty), p.now),
        Err(UsageError::Closed)
    );

    // With a response under way, it is finished first.
    let mut p = Pair::new();
    p.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc");
    p.events();
    p.conn
        .send_head(ResponseHead::new(200, ResponseBody::Length(2)), p.now)
        .unwrap();
    p.conn.receive_eof(p.now);
    assert_eq!(p.events(), [Event::PeerClosed]);
    assert_eq!(p.conn.state(), ConnState::SendingResponse);
    p.conn
        .send_body(Chunk::Bytes(Bytes::from_static(b"ok")), p.now)
        .unwrap();
    p.conn.send_end(None, p.now).unwrap();
    assert_eq!(p.conn.state(), ConnState::Closing);
    let r = p.responses();
    assert_eq!(r[0].body, b"ok");
    assert_eq!(p.conn.state(), ConnState::Closed);
}

#[test]
fn eof_after_a_complete_request_still_gets_the_response() {
    let mut p = Pair::new();
    p.send(GET);
    p.conn.receive_eof(p.now);
    assert_eq!(p.events().last(), Some(&Event::PeerClosed));
    assert_eq!(p.conn.read_budget(), 0);
    p.respond(200, b"late");
    let r = p.responses();
    assert_eq!(r[0].body, b"late");
    assert!(r[0].closes());
    assert_eq!(p.conn.state(), ConnState::Closed, "no lingering after EOF");
}

#[test]
fn eof_after_pipelined_requests_answers_them_all() {
    let mut p = Pair::new();
    let mut bytes = get("/1");
    bytes.extend(get("/2"));
    bytes.extend(b"GET /3 HTTP/1.1\r\n");
    p.send(&bytes);
    p.conn.receive_eof(p.now);
    let ev = p.events();
    assert_eq!(head_of(&ev[0]).target, "/1");
    assert_eq!(ev[1..], [Event::End, Event::PeerClosed]);
    p.respond(200, b"1");
    let ev = p.events();
    assert_eq!(head_of(&ev[0]).target, "/2");
    p.respond(200, b"2");
    // The third request never completed: the connection closes after the second response.
    assert!(p.events().is_empty());
    let r = p.responses();
    assert_eq!(r.len(), 2);
    assert!(!r[0].closes());
    assert!(r[1].closes(), "the last response says so");
    assert_eq!(p.conn.state(), ConnState::Closed);
}

#[test]
fn close_is_graceful() {
    let mut p = Pair::new();
    p.conn.close(p.now);
    assert_eq!(p.conn.state(), ConnState::Closed);

    let mut p = Pair::new();
    p.send(GET);
    p.events();
    p.conn.close(p.now);
    assert_eq!(p.conn.state(), ConnState::AwaitingResponse);
    p.respond(200, b"bye");
    let r = p.responses();
    assert!(r[0].closes());
    assert_eq!(p.conn.state(), ConnState::Lingering);
}

// ----- timers -----------------------------------------------------------------------------

fn timeouts() -> Timeouts {
    Timeouts {
        header: Duration::from_secs(10),
        body: Duration::from_secs(30),
        idle: Duration::from_secs(60),
        send: Duration::from_secs(20),
        ..Timeouts::default()
    }
}

#[test]
fn idle_timeout_closes_silently() {
    let mut p = Pair::with(Limits::default(), timeouts());
    assert_eq!(p.conn.poll_timeout(), Some(Time(61_000)));
    p.advance(59_999);
    assert_eq!(p.conn.state(), ConnState::Idle);
    p.advance(1);
    assert_eq!(p.conn.state(), ConnState::Closed);
    assert!(p.events().is_empty());
    assert!(p.conn.pending_transmit().is_none());

    // After a response, the idle time runs from the end of its transmission.
    let mut p = Pair::with(Limits::default(), timeouts());
    p.send(GET);
    p.events();
    p.advance(5_000);
    p.respond(200, b"x");
    assert_eq!(
        p.conn.timer(ConnTimer::Idle),
        None,
        "not idle while sending"
    );
    p.advance(1_000);
    p.transmit();
    assert_eq!(p.conn.poll_timeout(), Some(Time(67_000)));
}

#[test]
fn header_timeout_is_not_reset_by_trickling_bytes() {
    let mut p = Pair::with(Limits::default(), timeouts());
    p.advance(500);
    p.send(b"G");
    let deadline = Time(p.now.mono.0 + 10_000);
    assert_eq!(p.conn.poll_timeout(), Some(deadline));
    for b in b"ET / HTTP/1.1\r\nHost: a\r\nX-Slow: " {
        p.advance(300);
        p.send(std::slice::from_ref(b));
        assert_eq!(p.conn.poll_timeout(), Some(deadline), "slowloris");
    }
    p.now = Now {
        mono: deadline,
        unix: p.now.unix,
    };
    p.conn.handle_timeout(Now {
        mono: Time(deadline.0 - 1),
        unix: p.now.unix,
    });
    assert_eq!(
        p.conn.state(),
        ConnState::ReadingHead,
        "early call is harmless"
    );
    p.conn.handle_timeout(p.now);
    assert!(
        matches!(p.events()[..], [Event::Rejected { ref error, answered: true, .. }] if error.status == 408)
    );
    let r = p.responses();
    assert_eq!(r[0].status, 408);
    assert!(r[0].closes());
    assert_eq!(p.conn.state(), ConnState::Lingering);
    assert_eq!(p.conn.poll_timeout(), Some(p.now.mono.after(LINGER)));
    p.advance(2_000);
    assert_eq!(p.conn.state(), ConnState::Closed, "linger expired");
}

#[test]
fn pipelined_head_timer_runs_from_the_cycle_start() {
    let mut p = Pair::with(Limits::default(), timeouts());
    let mut bytes = GET.to_vec();
    bytes.extend(b"GET / HT");
    p.send(&bytes);
    p.events();
    assert_eq!(p.conn.timer(ConnTimer::Header), None, "not parsed yet");
    p.advance(7_000);
    p.respond(200, b"");
    assert_eq!(p.conn.timer(ConnTimer::Header), Some(Time(18_000)));
}

#[test]
fn body_timeout_gives_408_or_aborts() {
    let mut p = Pair::with(Limits::default(), timeouts());
    p.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345");
    p.events();
    p.advance(20_000);
    p.send(b"6");
    assert_eq!(
        p.conn.poll_timeout(),
        Some(Time(51_000)),
        "progress resets it"
    );
    p.advance(30_000);
    let ev = p.events();
    assert_eq!(ev[0], Event::Body(Bytes::from_static(b"6")));
    assert!(matches!(ev[1], Event::Rejected { ref error, .. } if error.status == 408));
    assert_eq!(p.responses()[0].status, 408);

    let mut p = Pair::with(Limits::default(), timeouts());
    p.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345");
    p.events();
    p.conn
        .send_head(ResponseHead::new(200, ResponseBody::Streamed), p.now)
        .unwrap();
    p.transmit();
    p.advance(30_000);
    assert_eq!(p.conn.state(), ConnState::Closed);
    // No 408 can follow a head already sent: the connection aborts, and reports no
    // rejection the client never sees (the table in the module documentation).
    assert!(p.events().is_empty());
}

#[test]
fn the_connections_own_answer_to_a_head_has_no_body() {
    // A HEAD whose body never comes: the 408 has the head a GET's would have, and no body
    // (RFC 9110 §9.3.2), so the bytes on the wire end with the head.
    let mut p = Pair::with(Limits::default(), timeouts());
    p.send(b"HEAD / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345");
    p.events();
    p.advance(30_000);
    let ev = p.events();
    assert!(
        matches!(ev.last(), Some(Event::Rejected { error, answered: true, answer_bytes: 0 }) if error.status == 408),
        "{ev:?}"
    );
    p.transmit();
    let wire = String::from_utf8(p.wire.clone()).unwrap();
    assert!(wire.starts_with("HTTP/1.1 408 "), "{wire}");
    assert!(wire.ends_with("\r\n\r\n"), "no body after the head: {wire}");
    assert!(wire.contains("Content-Length: 20\r\n"), "{wire}");
    // The same for a GET carries its body, and says how long.
    let mut p = Pair::with(Limits::default(), timeouts());
    p.send(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345");
    p.events();
    p.advance(30_000);
    let ev = p.events();
    assert!(
        matches!(
            ev.last(),
            Some(Event::Rejected {
                answer_bytes: 20,
                ..
            })
        ),
        "{ev:?}"
    );
    assert_eq!(p.responses()[0].body, b"408 Request Timeout\n");
}

#[test]
fn send_timeout_aborts() {
    let mut p = Pair::with(Limits::default(), timeouts());
    p.send(GET);
    p.events();
    p.respond(200, &[b'z'; 100]);
    assert_eq!(p.conn.poll_timeout(), Some(Time(21_000)));
    p.advance(15_000);
    p.transmit_some(10);
    assert_eq!(
        p.conn.poll_timeout(),
        Some(Time(36_000)),
        "progress resets it"
    );
    p.advance(20_000);
    assert_eq!(p.conn.state(), ConnState::Closed);
    assert!(p.conn.pending_transmit().is_none());
    assert_eq!(p.conn.transmit_queued(), 0);
}

/// Only bytes moved are progress: a write that moved nothing (a shell reporting 0) leaves
/// the send deadline where it was.
#[test]
fn a_write_of_nothing_is_not_progress() {
    let mut p = Pair::with(Limits::default(), timeouts());
    p.send(GET);
    p.events();
    p.respond(200, &[b'z'; 100]);
    p.advance(15_000);
    p.conn.advance_transmit(0, p.now);
    assert_eq!(p.conn.poll_timeout(), Some(Time(21_000)), "unchanged");
    p.advance(6_000);
    assert_eq!(
        p.conn.state(),
        ConnState::Closed,
        "cut at the first deadline"
    );
}

#[test]
fn a_clean_close_does_not_linger() {
    // The last request read whole, answered, nothing after it: closed once sent.
    let mut p = Pair::new();
    p.send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    p.events();
    p.respond(200, b"bye");
    assert_eq!(
        p.conn.state(),
        ConnState::Closing,
        "the response is still queued"
    );
    p.transmit();
    assert_eq!(p.conn.state(), ConnState::Closed);
    // A close the application asked for lingers: a keep-alive peer may be sending.
    let mut p = Pair::new();
    p.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    p.events();
    p.conn.close(p.now);
    p.respond(200, b"bye");
    p.transmit();
    assert_eq!(p.conn.state(), ConnState::Lingering);
    // So does an answer given before the body was read.
    let mut p = Pair::new();
    p.send(b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 9\r\n\r\nabc");
    p.events();
    p.respond(413, b"");
    p.transmit();
    assert_eq!(p.conn.state(), ConnState::Lingering);
}

#[test]
fn linger_ends_at_eof() {
    // Bytes past the last request: the peer may still be sending, so closing lingers.
    let mut p = Pair::new();
    p.send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /more HTTP/1.1\r\n");
    p.events();
    p.respond(200, b"");
    p.transmit();
    assert_eq!(p.conn.state(), ConnState::Lingering);
    assert_eq!(
        p.conn.timer(ConnTimer::Linger),
        Some(p.now.mono.after(LINGER))
    );
    p.advance(1_000);
    p.conn.receive_eof(p.now);
    assert_eq!(p.conn.state(), ConnState::Closed);
}

// ----- properties -------------------------------------------------------------------------

/// A request as the generator builds it.
#[derive(Clone, Debug)]
struct GenRequest {
    method: &'static str,
    target: String,
    fields: Vec<(String, String)>,
    body: GenBody,
}

#[derive(Clone, Debug)]
enum GenBody {
    None,
    Length(Vec<u8>),
    Chunked {
        chunks: Vec<(Vec<u8>, &'static str)>,
        trailers: Vec<(String, String)>,
    },
}

impl GenRequest {
    fn serialise(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: example.com\r\n",
            self.method, self.target
        )
        .into_bytes();
        for (n, v) in &self.fields {
            out.extend(format!("{n}:\t{v} \r\n").into_bytes());
        }
        match &self.body {
            GenBody::None => out.extend(b"\r\n"),
            GenBody::Length(b) => {
                out.extend(format!("Content-Length: {}\r\n\r\n", b.len()).into_bytes());
                out.extend(b);
            }
            GenBody::Chunked { chunks, trailers } => {
                out.extend(b"Transfer-Encoding: chunked\r\n\r\n");
                for (c, ext) in chunks {
                    out.extend(format!("{:X}{ext}\r\n", c.len()).into_bytes());
                    out.extend(c);
                    out.extend(b"\r\n");
                }
                out.extend(b"0\r\n");
                for (n, v) in trailers {
                    out.extend(format!("{n}: {v}\r\n").into_bytes());
                }
                out.extend(b"\r\n");
            }
        }
        out
    }

    /// The events the connection must report for this request (bodies merged).
    fn check(&self, events: &[Event]) {
        let h = head_of(&events[0]);
        assert_eq!(h.method.as_bytes(), self.method.as_bytes());
        assert_eq!(h.target, self.target.as_bytes());
        assert_eq!(h.host.as_deref(), Some(&b"example.com"[..]));
        let got: Vec<(Vec<u8>, Vec<u8>)> = h
            .headers
            .0
            .iter()
            .skip(1)
            .take(self.fields.len())
            .map(|f| (f.name.to_vec(), f.value.to_vec()))
            .collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> = self
            .fields
            .iter()
            .map(|(n, v)| (n.clone().into_bytes(), v.clone().into_bytes()))
            .collect();
        assert_eq!(got, want);
        let mut rest = &events[1..];
        let (body, trailers): (Vec<u8>, &[(String, String)]) = match &self.body {
            GenBody::None => (Vec::new(), &[]),
            GenBody::Length(b) => (b.clone(), &[]),
            GenBody::Chunked { chunks, trailers } => (
                chunks.iter().flat_map(|(c, _)| c.clone()).collect(),
                trailers,
            ),
        };
        if !body.is_empty() {
            assert_eq!(rest[0], Event::Body(Bytes::from(body)));
            rest = &rest[1..];
        }
        if !trailers.is_empty() {
            let Event::Trailers(t) = &rest[0] else {
                panic!("expected trailers: {rest:?}");
            };
            let got: Vec<(String, String)> =
                t.0.iter()
                    .map(|f| {
                        (
                            String::from_utf8(f.name.to_vec()).unwrap(),
                            String::from_utf8(f.value.to_vec()).unwrap(),
                        )
                    })
                    .collect();
            assert_eq!(got, trailers);
            rest = &rest[1..];
        }
        assert_eq!(rest, [Event::End]);
    }
}

fn field_strategy() -> impl Strategy<Value = (String, String)> {
    (
        "[A-Za-z][A-Za-z0-9-]{0,8}",
        prop_oneof!["", "[!-~]", "[!-~][ -~]{0,16}[!-~]"],
    )
        .prop_map(|(n, v)| (format!("X-{n}"), v))
}

fn request_strategy() -> impl Strategy<Value = GenRequest> {
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "X-CUSTOM"]);
    let target = "/[a-z0-9/._-]{0,20}(\\?[a-z0-9=&]{0,10})?";
    let bytes = prop::collection::vec(any::<u8>(), 1..40);
    let ext = prop::sample::select(vec![
        "",
        ";a",
        ";a=b",
        " ; name = \"quoted v\\\"\"",
        ";x;y=z",
    ]);
    let body = prop_oneof![
        Just(GenBody::None),
        bytes.clone().prop_map(GenBody::Length),
        (
            prop::collection::vec((bytes, ext), 0..4),
            prop::collection::vec(field_strategy(), 0..3)
        )
            .prop_map(|(chunks, trailers)| GenBody::Chunked { chunks, trailers }),
    ];
    (
        method,
        target,
        prop::collection::vec(field_strategy(), 0..4),
        body,
    )
        .prop_map(|(method, target, fields, body)| GenRequest {
            method,
            target,
            fields,
            body,
        })
}

/// Feeds `stream` in pieces of the given sizes (respecting the read budget, as the shell
/// does), answering each request as soon as it ends. Returns the events (bodies merged) and
/// the transmitted bytes.
fn run(stream: &[u8], splits: &[usize], advances: &[u64]) -> (Vec<Event>, Vec<u8>) {
    let mut p = Pair::new();
    let mut events = Vec::new();
    let mut fed = 0;
    let mut step = 0;
    let pump = |p: &mut Pair, events: &mut Vec<Event>, step: usize| {
        while let Some(e) = p.conn.poll_event() {
            let end = e == Event::End;
            events.push(e);
            if end {
                let answered = events.iter().filter(|e| **e == Event::End).count();
                p.respond(200, format!("response {answered}").as_bytes());
            }
        }
        if advances.is_empty() {
            p.transmit();
        } else {
            p.transmit_some(advances[step % advances.len()]);
        }
    };
    while fed < stream.len() {
        let budget = p.conn.read_budget();
        assert!(budget > 0, "stuck with {} bytes unsent", stream.len() - fed);
        let n = splits[step % splits.len()]
            .min(budget)
            .min(stream.len() - fed);
        p.send(&stream[fed..fed + n]);
        fed += n;
        pump(&mut p, &mut events, step);
        step += 1;
    }
    pump(&mut p, &mut events, step);
    p.transmit();
    (normalise(events), p.wire)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any split of the same byte stream gives the same events, and they are the requests
    /// that were serialised (head fields, de-chunked body, trailers) — a round trip.
    #[test]
    fn any_split_gives_the_same_events(
        requests in prop::collection::vec(request_strategy(), 1..5),
        splits in prop::collection::vec(1usize..60, 1..20),
    ) {
        let stream: Vec<u8> = requests.iter().flat_map(GenRequest::serialise).collect();
        let (whole, whole_wire) = run(&stream, &[stream.len()], &[]);
        let (split, split_wire) = run(&stream, &splits, &[]);
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(whole_wire, split_wire);
        // Round trip: the events are exactly the generated requests.
        let mut rest = &whole[..];
        for r in &requests {
            let end = rest.iter().position(|e| *e == Event::End).expect("an End per request");
            r.check(&rest[..=end]);
            rest = &rest[end + 1..];
        }
        prop_assert!(rest.is_empty());
    }

    /// Partial transmission in random sizes gives byte-identical output.
    #[test]
    fn partial_transmits_give_identical_bytes(
        requests in prop::collection::vec(request_strategy(), 1..4),
        splits in prop::collection::vec(1usize..60, 1..10),
        advances in prop::collection::vec(1u64..50, 1..10),
    ) {
        let stream: Vec<u8> = requests.iter().flat_map(GenRequest::serialise).collect();
        let (_, whole) = run(&stream, &[stream.len()], &[]);
        let (_, partial) = run(&stream, &splits, &advances);
        prop_assert_eq!(whole, partial);
    }

    /// Streamed responses of bytes and file ranges, transmitted in random pieces, reach the
    /// strict client intact.
    #[test]
    fn streamed_responses_round_trip(
        bodies in prop::collection::vec(
            prop::collection::vec(
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..30).prop_map(|b| Chunk::Bytes(Bytes::from(b))),
                    (0u64..4, 0u64..100, 0u64..60).prop_map(|(f, offset, len)| Chunk::File {
                        file: FileId(Token(f)),
                        offset,
                        len,
                    }),
                ],
                0..5,
            ),
            1..4,
        ),
        advances in prop::collection::vec(1u64..40, 1..10),
    ) {
        let mut p = Pair::new();
        let mut want = Vec::new();
        for (i, chunks) in bodies.iter().enumerate() {
            p.send(GET);
            let ev = p.events();
            prop_assert_eq!(ev.len(), 2);
            p.conn.send_head(ResponseHead::new(200, ResponseBody::Streamed), p.now).unwrap();
            let mut body = Vec::new();
            for c in chunks {
                body.extend(render(c, c.len()));
                p.conn.send_body(c.clone(), p.now).unwrap();
                p.transmit_some(advances[i % advances.len()]);
            }
            p.conn.send_end(None, p.now).unwrap();
            p.transmit_in_pieces(advances[(i + 1) % advances.len()]);
            want.push(body);
        }
        let got: Vec<Vec<u8>> = p.responses().into_iter().map(|r| r.body).collect();
        prop_assert_eq!(got, want);
    }

    /// Whatever the bytes, the connection never panics, and after a rejection it reports
    /// nothing more than the EOF.
    #[test]
    fn arbitrary_input_is_judged_without_panic(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8),
    ) {
        let mut p = Pair::with(small_limits(), Timeouts::default());
        let mut rejected = false;
        for c in &chunks {
            p.send(c);
            for e in p.events() {
                prop_assert!(!rejected, "event after Rejected: {:?}", e);
                match e {
                    Event::Rejected { .. } => rejected = true,
                    Event::End => p.respond(200, b""),
                    _ => {}
                }
            }
            p.transmit();
        }
        p.conn.receive_eof(p.now);
        for e in p.events() {
            prop_assert!(e == Event::PeerClosed || !rejected);
        }
    }
}

/// One step of a randomly driven connection (the shape of the `conn_ops` fuzz target).
#[derive(Clone, Debug)]
enum Op {
    Receive(Vec<u8>),
    Eof,
    Transmit(u64),
    Tick(u64),
    Respond(u8),
    AcceptBody,
    Close,
}

/// Pieces of requests, valid and not, so that random streams reach deep states.
const FRAGMENTS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\n",
    b"POST /p HTTP/1.1\r\n",
    b"GET / HTTP/1.0\r\n",
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
    b"\0",
];

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(prop::sample::select(FRAGMENTS), 1..4)
            .prop_map(|f| Op::Receive(f.concat())),
        1 => Just(Op::Eof),
        3 => (1u64..200).prop_map(Op::Transmit),
        2 => (0u64..40_000).prop_map(Op::Tick),
        3 => (0u8..4).prop_map(Op::Respond),
        1 => Just(Op::AcceptBody),
        1 => Just(Op::Close),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Random operations in any order: no panic, one request at a time, nothing parsed
    /// after a rejection, a closed connection holds nothing, and the output always parses.
    #[test]
    fn random_operations_keep_the_invariants(ops in prop::collection::vec(op_strategy(), 1..40)) {
        let mut p = Pair::with(small_limits(), timeouts());
        let (mut heads, mut ended, mut rejected) = (0usize, 0usize, false);
        for op in ops {
            match op {
                Op::Receive(bytes) => {
                    let n = bytes.len().min(p.conn.read_budget());
                    p.send(&bytes[..n]);
                }
                Op::Eof => p.conn.receive_eof(p.now),
                Op::Transmit(n) => {
                    p.transmit_some(n);
                }
                Op::Tick(ms) => {
                    p.advance(ms);
                    // Every expired timer has fired.
                    prop_assert!(!matches!(p.conn.poll_timeout(), Some(t) if t <= p.now.mono));
                }
                Op::Respond(kind) => {
                    let body = match kind {
                        0 => ResponseBody::Length(2),
                        1 => ResponseBody::Streamed,
                        2 => ResponseBody::Empty,
                        _ => ResponseBody::Length(0),
                    };
                    let status = if kind == 3 { 100 } else { 200 };
                    if p.conn.send_head(ResponseHead::new(status, body), p.now).is_ok() && status != 100 {
                        let chunk = Chunk::Bytes(Bytes::from_static(b"ok"));
                        if kind != 2 {
                            let _ = p.conn.send_body(chunk, p.now);
                        }
                        if p.conn.send_end(None, p.now).is_ok() {
                            ended += 1;
                        }
                    }
                }
                Op::AcceptBody => p.conn.accept_body(),
                Op::Close => p.conn.close(p.now),
            }
            for e in p.events() {
                prop_assert!(!rejected || e == Event::PeerClosed, "after Rejected: {:?}", e);
                match e {
                    Event::Head(h) => {
                        heads += 1;
                        // The client reads each answer as its request asked (bytes
                        // drawn at random may be HEAD or HTTP/1.0).
                        p.client.requests.push_back(Framing {
                            head: h.method == Method::Head,
                            http10: h.version == Version::Http10,
                            close_ok: true,
                        });
                    }
                    Event::Rejected { .. } => rejected = true,
                    _ => {}
                }
            }
            prop_assert!(heads <= ended + 1, "two requests in flight");
            if p.conn.state() == ConnState::Closed {
                prop_assert!(p.conn.pending_transmit().is_none());
                prop_assert_eq!(p.conn.read_budget(), 0);
                prop_assert_eq!(p.conn.poll_timeout(), None);
            }
        }
        // Whatever went out is a sequence of well-formed responses (the strict client
        // asserts as it parses; a response cut short by an abort is simply incomplete).
        let _ = p.responses();
    }
}

/// RFC 9110 §2.5: a later minor version of HTTP/1 is processed as HTTP/1.1.
#[test]
fn later_minor_versions_are_read_as_1_1() {
    let limits = Limits::default();
    let mut conn = Conn::new(&limits, &Timeouts::default(), Now::default());
    conn.receive(b"GET / HTTP/1.7\r\nHost: a\r\n\r\n", Now::default());
    match conn.poll_event() {
        Some(Event::Head(h)) => assert_eq!(h.version, Version::Http11),
        other => panic!("{other:?}"),
    }
}

/// An empty body chunk asks for no write: the shell is never handed a chunk of nothing
/// (a write of nothing is no progress, so it would wait on it for ever).
#[test]
fn an_empty_body_chunk_asks_for_no_write() {
    let mut p = Pair::new();
    p.send(GET);
    p.events();
    p.conn
        .send_head(ResponseHead::new(200, ResponseBody::Length(1)), p.now)
        .unwrap();
    drain_chunks(&mut p.conn, p.now);
    p.conn.send_body(Chunk::Bytes(Bytes::new()), p.now).unwrap();
    assert!(p.conn.pending_transmit().is_none());
    p.conn
        .send_body(Chunk::Bytes(Bytes::from_static(b"x")), p.now)
        .unwrap();
    assert_eq!(p.conn.pending_transmit().map(Chunk::len), Some(1));
}

/// A head and the body chunks after it leave as one write while together they stay
/// within 16 KiB; beyond that, the body is its own chunk (not copied into the head's).
#[test]
fn a_head_and_a_small_body_leave_in_one_write() {
    for (len, writes) in [(10_000, 1), (16 * 1024, 2), (20_000, 2)] {
        let mut p = Pair::new();
        p.send(GET);
        p.events();
        let body = Bytes::from(vec![b'x'; len]);
        p.conn
            .send_head(
                ResponseHead::new(200, ResponseBody::Length(len as u64)),
                p.now,
            )
            .unwrap();
        p.conn.send_body(Chunk::Bytes(body.clone()), p.now).unwrap();
        p.conn.send_end(None, p.now).unwrap();
        let chunks = drain_chunks(&mut p.conn, p.now);
        assert!(
            bytes_of(&chunks).ends_with(&body),
            "{len}: the body follows the head"
        );
        assert_eq!(chunks.len(), writes, "a body of {len} bytes");
    }
}

/// `send_raw`: the application's bytes go out as they are, and the connection closes.
#[test]
fn raw_responses_pass_unframed_and_close() {
    let limits = Limits::default();
    let now = Now::default();
    let mut conn = Conn::new(&limits, &Timeouts::default(), now);
    conn.receive(
        b"GET /nph HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n",
        now,
    );
    assert!(matches!(conn.poll_event(), Some(Event::Head(_))));
    assert!(matches!(conn.poll_event(), Some(Event::End)));
    conn.send_raw(now).unwrap();
    assert_eq!(
        conn.send_raw(now),
        Err(UsageError::NoRequestToAnswer),
        "the request is being answered already"
    );
    conn.send_body(
        Chunk::Bytes(Bytes::from_static(b"HTTP/1.1 299 Odd\r\nX: y\r\n\r\nraw")),
        now,
    )
    .unwrap();
    conn.send_end(None, now).unwrap();
    let out = bytes_of(&drain_chunks(&mut conn, now));
    assert_eq!(out, b"HTTP/1.1 299 Odd\r\nX: y\r\n\r\nraw");
    assert!(
        matches!(conn.state(), ConnState::Lingering | ConnState::Closed),
        "{:?}",
        conn.state()
    );
    assert!(
        !matches!(conn.poll_event(), Some(Event::Head(_))),
        "nothing after a raw response"
    );
}

/// The first violation in byte order decides, however the bytes are cut: a long request
/// line that also holds a bare LF past the limit is 414 whole and in pieces.
#[test]
fn limit_verdicts_do_not_depend_on_the_split() {
    let limits = Limits {
        request_line_max: 64,
        ..Limits::default()
    };
    let mut line = b"GET /".to_vec();
    line.extend(std::iter::repeat_n(b'a', 70));
    line.extend_from_slice(b"\n HTTP/1.1\r\n\r\n");
    let verdict = |cut: usize| {
        let mut conn = Conn::new(&limits, &Timeouts::default(), Now::default());
        conn.receive(&line[..cut], Now::default());
        conn.receive(&line[cut..], Now::default());
        std::iter::from_fn(|| conn.poll_event()).find_map(|e| match e {
            Event::Rejected { error, .. } => Some(error.status),
            _ => None,
        })
    };
    for cut in 0..line.len() {
        assert_eq!(verdict(cut), Some(414), "cut at {cut}");
    }
}

/// `cut`: what was queued still leaves, then the connection closes; nothing more is sent.
#[test]
fn cut_keeps_what_was_queued() {
    let limits = Limits::default();
    let now = Now::default();
    let mut conn = Conn::new(&limits, &Timeouts::default(), now);
    conn.receive(
        b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
        now,
    );
    assert!(matches!(conn.poll_event(), Some(Event::Head(_))));
    assert!(matches!(conn.poll_event(), Some(Event::End)));
    conn.send_head(ResponseHead::new(200, ResponseBody::Length(1)), now)
        .unwrap();
    conn.send_body(Chunk::Bytes(Bytes::from_static(b"A")), now)
        .unwrap();
    conn.send_end(None, now).unwrap();
    assert!(matches!(conn.poll_event(), Some(Event::Head(_))));
    conn.send_head(ResponseHead::new(200, ResponseBody::Streamed), now)
        .unwrap();
    conn.send_body(Chunk::Bytes(Bytes::from_static(b"partial")), now)
        .unwrap();
    conn.cut(now);
    assert!(conn
        .send_body(Chunk::Bytes(Bytes::from_static(b"more")), now)
        .is_err());
    let out = bytes_of(&drain_chunks(&mut conn, now));
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("\r\n\r\nA") && text.ends_with("partial\r\n"),
        "{text}"
    );
    assert!(
        matches!(conn.state(), ConnState::Lingering | ConnState::Closed),
        "{:?}",
        conn.state()
    );
}

// ----- response heads: serialise with the real `Conn`, parse with the test kit -------------

/// A field as raw bytes: name, value.
type Field = (Vec<u8>, Vec<u8>);

/// Field names the connection writes itself and drops from the application's fields.
const CONNECTION_OWNED: [&str; 6] = [
    "date",
    "server",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

fn owned_by_the_connection(name: &[u8]) -> bool {
    CONNECTION_OWNED
        .iter()
        .any(|o| name.eq_ignore_ascii_case(o.as_bytes()))
}

/// A field the application gives: a token name (sometimes one the connection owns, in any
/// case) and a value of visible ASCII, obs-text and inner whitespace.
fn response_field_strategy() -> impl Strategy<Value = Field> {
    let name = prop_oneof![
        4 => "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}".prop_map(String::into_bytes),
        1 => (prop::sample::select(CONNECTION_OWNED.to_vec()), any::<bool>())
            .prop_map(|(n, upper)| if upper { n.to_ascii_uppercase() } else { n.to_owned() }.into_bytes()),
    ];
    let byte = prop_oneof![
        6 => 0x21u8..=0x7e,
        1 => 0x80u8..=0xff,
        1 => Just(b' '),
        1 => Just(b'\t'),
    ];
    let value = prop::collection::vec(byte, 0..24).prop_map(|mut v| {
        // The value without surrounding whitespace is what any recipient keeps.
        while matches!(v.first(), Some(b' ' | b'\t')) {
            v.remove(0);
        }
        while matches!(v.last(), Some(b' ' | b'\t')) {
            v.pop();
        }
        v
    });
    (name, value)
}

fn to_headers(fields: &[Field]) -> Headers {
    let mut h = Headers::new();
    for (n, v) in fields {
        h.push(Bytes::from(n.clone()), Bytes::from(v.clone()));
    }
    h
}

/// How the generated response declares its body.
#[derive(Clone, Debug)]
enum GenFraming {
    /// `ResponseBody::Length` of the pieces' total.
    Length,
    /// `ResponseBody::Streamed` (chunked to this HTTP/1.1 client), with trailer fields.
    Streamed(Vec<Field>),
    /// `ResponseBody::Empty`: no pieces.
    Empty,
}

/// One exchange as the generator builds it: interim heads, then a final one and its body.
#[derive(Clone, Debug)]
struct GenResponse {
    interim: Vec<(u16, Vec<Field>)>,
    status: u16,
    fields: Vec<Field>,
    framing: GenFraming,
    pieces: Vec<Chunk>,
}

impl GenResponse {
    fn body_len(&self) -> u64 {
        self.pieces.iter().map(Chunk::len).sum()
    }

    fn response_body(&self) -> ResponseBody {
        match self.framing {
            GenFraming::Length => ResponseBody::Length(self.body_len()),
            GenFraming::Streamed(_) => ResponseBody::Streamed,
            GenFraming::Empty => ResponseBody::Empty,
        }
    }
}

fn response_strategy() -> impl Strategy<Value = GenResponse> {
    // Every 1xx the API takes, except 101: after it the bytes are another protocol.
    let interim_status = (100u16..200).prop_filter("101 switches protocols", |s| *s != 101);
    let interim = prop::collection::vec(
        (
            interim_status,
            prop::collection::vec(response_field_strategy(), 0..4),
        ),
        0..3,
    );
    let status = prop_oneof![
        2 => prop::sample::select(vec![200u16, 204, 206, 304, 404, 500, 502]),
        3 => 200u16..600,
    ];
    let piece = prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| Chunk::Bytes(Bytes::from(b))),
        1 => (0u64..4, 0u64..100, 0u64..50).prop_map(|(f, offset, len)| Chunk::File {
            file: FileId(Token(f)),
            offset,
            len,
        }),
    ];
    let framing = prop_oneof![
        Just(GenFraming::Length),
        prop::collection::vec(response_field_strategy(), 0..3).prop_map(GenFraming::Streamed),
        Just(GenFraming::Empty),
    ];
    (
        interim,
        status,
        prop::collection::vec(response_field_strategy(), 0..6),
        framing,
        prop::collection::vec(piece, 0..4),
    )
        .prop_map(|(interim, status, fields, framing, pieces)| GenResponse {
            interim,
            status,
            fields,
            pieces: if matches!(framing, GenFraming::Empty) {
                Vec::new()
            } else {
                pieces
            },
            framing,
        })
}

/// The application's fields the connection keeps, in order, as the test kit's reader
/// shows them: names lower-cased, values byte for byte (obs-text as Latin-1).
fn kept(fields: &[Field]) -> Vec<(String, String)> {
    fields
        .iter()
        .filter(|(n, _)| !owned_by_the_connection(n))
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).to_ascii_lowercase(),
                v.iter().map(|&b| char::from(b)).collect(),
            )
        })
        .collect()
}

/// The next response at `wire[*pos..]`, read by the test kit's reader (every byte is
/// there), with `pos` moved past it.
fn read_one(wire: &[u8], pos: &mut usize) -> Response {
    match response::next(&wire[*pos..], Framing::default()) {
        Ok(Some((r, used))) => {
            *pos += used;
            r
        }
        other => panic!(
            "not a whole valid response: {other:?} in {}",
            response::preview(&wire[*pos..])
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Response heads round-trip: whatever the application gives `send_head` / `send_body` /
    /// `send_end`, an independent parser (the test kit's strict reader, which frames the
    /// body by RFC 9112 §6.3 from the fields it parsed) reads back the status, its reason phrase, the application's fields
    /// in order (minus the ones the connection owns), exactly one `Date` and `Server`, the
    /// framing the connection chose, the body and the trailers — for interim heads,
    /// Content-Length and chunked bodies, on one kept-alive connection transmitted in
    /// random pieces.
    #[test]
    fn response_heads_round_trip(
        responses in prop::collection::vec(response_strategy(), 1..4),
        advances in prop::collection::vec(1u64..64, 1..8),
    ) {
        let mut p = Pair::new();
        let requests: Vec<u8> = (0..responses.len()).flat_map(|i| get(&format!("/{i}"))).collect();
        p.send(&requests);
        let mut step = 0;
        let mut transmit_a_little = |p: &mut Pair| {
            p.transmit_some(advances[step % advances.len()]);
            step += 1;
        };
        for r in &responses {
            let ev = p.events();
            prop_assert!(matches!(ev.as_slice(), [Event::Head(_), Event::End]), "{:?}", ev);
            for (status, fields) in &r.interim {
                let mut head = ResponseHead::new(*status, ResponseBody::Empty);
                head.headers = to_headers(fields);
                p.conn.send_head(head, p.now).unwrap();
                transmit_a_little(&mut p);
            }
            let mut head = ResponseHead::new(r.status, r.response_body());
            head.headers = to_headers(&r.fields);
            p.conn.send_head(head, p.now).unwrap();
            for c in &r.pieces {
                p.conn.send_body(c.clone(), p.now).unwrap();
                transmit_a_little(&mut p);
            }
            let trailers = match &r.framing {
                GenFraming::Streamed(t) => Some(to_headers(t)),
                _ => None,
            };
            p.conn.send_end(trailers, p.now).unwrap();
            transmit_a_little(&mut p);
        }
        p.transmit();
        prop_assert_eq!(p.conn.state(), ConnState::Idle);

        let wire = p.wire.clone();
        let mut pos = 0;
        for r in &responses {
            // Interim heads: the API sends `100` once per request; every other 1xx each time.
            let mut continue_sent = false;
            for (status, fields) in &r.interim {
                if *status == 100 && continue_sent {
                    continue;
                }
                continue_sent |= *status == 100;
                let got = read_one(&wire, &mut pos);
                prop_assert_eq!(got.status, *status);
                prop_assert_eq!(got.reason, crate::http1::head::reason_phrase(*status));
                prop_assert_eq!(got.fields, kept(fields));
            }

            let got = read_one(&wire, &mut pos);
            prop_assert_eq!(got.status, r.status);
            prop_assert_eq!(&got.reason, crate::http1::head::reason_phrase(r.status));
            let app = kept(&r.fields);
            prop_assert_eq!(&got.fields[..app.len()], &app[..]);
            let own = &got.fields[app.len()..];
            prop_assert_eq!(&own[0].0, "date");
            prop_assert_eq!(parse_imf_fixdate(&own[0].1), Some(p.now.unix.0));
            prop_assert_eq!(&own[1], &("server".to_owned(), "weir".to_owned()));
            let framing = &own[2..];
            let bodiless = r.status == 204 || r.status == 304;
            let body_len = r.body_len();
            let want_framing: Vec<(String, String)> = match r.framing {
                GenFraming::Length if r.status == 204 => vec![],
                GenFraming::Length => vec![("content-length".into(), body_len.to_string())],
                GenFraming::Streamed(_) if bodiless => vec![],
                GenFraming::Streamed(_) => vec![("transfer-encoding".into(), "chunked".into())],
                GenFraming::Empty if bodiless => vec![],
                GenFraming::Empty => vec![("content-length".into(), "0".into())],
            };
            prop_assert_eq!(framing, &want_framing[..]);
            let want_delimiter = match r.framing {
                _ if bodiless => Delimiter::None,
                GenFraming::Streamed(_) => Delimiter::Chunked,
                GenFraming::Length | GenFraming::Empty => Delimiter::Length,
            };
            prop_assert_eq!(got.delimiter, want_delimiter);
            let want_body: Vec<u8> = if bodiless {
                Vec::new()
            } else {
                r.pieces.iter().flat_map(|c| render(c, c.len())).collect()
            };
            prop_assert_eq!(got.body, want_body);
            let want_trailers = match &r.framing {
                GenFraming::Streamed(t) if !bodiless => kept(t),
                _ => Vec::new(),
            };
            prop_assert_eq!(got.trailers, want_trailers);
        }
        prop_assert_eq!(pos, wire.len(), "bytes after the last response");
    }
}

proptest! {
    /// `send_head_with_body` (+ `send_body` when it did not take the body) + `send_end` puts
    /// the same bytes on the wire, and leaves the connection in the same state, as
    /// `send_head` + `send_body` + `send_end`, whatever the request and the response.
    #[test]
    fn a_body_in_the_head_buffer_changes_nothing_on_the_wire(
        method in prop_oneof![Just("GET"), Just("HEAD")],
        version in prop_oneof![Just("1.0"), Just("1.1")],
        close: bool,
        status in prop_oneof![Just(200u16), Just(204), Just(304), Just(404), Just(103)],
        body_len in prop_oneof![Just(0usize), 1..64usize, Just(16 * 1024), Just(16 * 1024 + 1)],
        declared_extra in prop_oneof![Just(0u64), Just(1)],
        pipelined: bool,
    ) {
        let request = format!(
            "{method} /x HTTP/{version}\r\nHost: h\r\n{}\r\n{}",
            if close { "Connection: close\r\n" } else { "" },
            if pipelined { "GET /y HTTP/1.1\r\nHost: h\r\n\r\n" } else { "" },
        );
        let body = Bytes::from(vec![b'b'; body_len]);
        let head = || {
            let mut h = ResponseHead::new(
                status,
                ResponseBody::Length(body_len as u64 + declared_extra),
            );
            h.headers.push("Content-Type", "text/plain");
            h
        };
        let mut plain = Pair::new();
        plain.send(request.as_bytes());
        let _ = plain.events();
        let r1 = (
            plain.conn.send_head(head(), plain.now),
            plain.conn.send_body(Chunk::Bytes(body.clone()), plain.now),
            plain.conn.send_end(None, plain.now),
        );
        let mut inline = Pair::new();
        inline.send(request.as_bytes());
        let _ = inline.events();
        let first = inline.conn.send_head_with_body(head(), Some(&body), inline.now);
        let taken = matches!(first, Ok(true));
        let second = if taken {
            Ok(())
        } else {
            inline.conn.send_body(Chunk::Bytes(body.clone()), inline.now)
        };
        let r2 = (first.map(|_| ()), second, inline.conn.send_end(None, inline.now));
        prop_assert_eq!(r1, r2);
        plain.transmit();
        inline.transmit();
        prop_assert_eq!(&plain.wire, &inline.wire);
        prop_assert_eq!(&plain.conn, &inline.conn);
        prop_assert_eq!(plain.events(), inline.events());
        prop_assert!(!taken || body_len <= 16 * 1024);
    }
}

#[test]
fn a_kept_alive_connection_is_sending_until_its_last_response_is_transmitted() {
    // The cycle is over once send_end is called, but the shell must still write: the
    // state says so (ConnState::SendingResponse), not Idle.
    let mut p = Pair::new();
    p.send(GET);
    p.events();
    p.respond(200, b"ok");
    assert_eq!(p.conn.state(), ConnState::SendingResponse);
    p.transmit();
    assert_eq!(p.conn.state(), ConnState::Idle);
}

#[test]
fn headers_remove_drops_every_field_of_that_name_whatever_its_case() {
    let mut h = Headers::new();
    h.push("Content-Length", "3");
    h.push("X-Kept", "1");
    h.push("content-length", "4");
    h.remove("CONTENT-LENGTH");
    assert_eq!(h.len(), 1);
    assert!(!h.contains("content-length"));
    assert_eq!(h.get("x-kept").map(|v| &v[..]), Some(&b"1"[..]));
}

/// Every status weir names has the reason phrase its RFC gives it (RFC 9110 §15; 428,
/// 429 and 431 from RFC 6585, 451 from RFC 7725), and any other status says `Unknown`.
#[test]
fn reason_phrases_are_the_rfcs() {
    let registry = [
        (100, "Continue"),
        (101, "Switching Protocols"),
        (200, "OK"),
        (201, "Created"),
        (202, "Accepted"),
        (203, "Non-Authoritative Information"),
        (204, "No Content"),
        (205, "Reset Content"),
        (206, "Partial Content"),
        (300, "Multiple Choices"),
        (301, "Moved Permanently"),
        (302, "Found"),
        (303, "See Other"),
        (304, "Not Modified"),
        (307, "Temporary Redirect"),
        (308, "Permanent Redirect"),
        (400, "Bad Request"),
        (401, "Unauthorized"),
        (402, "Payment Required"),
        (403, "Forbidden"),
        (404, "Not Found"),
        (405, "Method Not Allowed"),
        (406, "Not Acceptable"),
        (407, "Proxy Authentication Required"),
        (408, "Request Timeout"),
        (409, "Conflict"),
        (410, "Gone"),
        (411, "Length Required"),
        (412, "Precondition Failed"),
        (413, "Content Too Large"),
        (414, "URI Too Long"),
        (415, "Unsupported Media Type"),
        (416, "Range Not Satisfiable"),
        (417, "Expectation Failed"),
        (421, "Misdirected Request"),
        (422, "Unprocessable Content"),
        (426, "Upgrade Required"),
        (428, "Precondition Required"),
        (429, "Too Many Requests"),
        (431, "Request Header Fields Too Large"),
        (451, "Unavailable For Legal Reasons"),
        (500, "Internal Server Error"),
        (501, "Not Implemented"),
        (502, "Bad Gateway"),
        (503, "Service Unavailable"),
        (504, "Gateway Timeout"),
        (505, "HTTP Version Not Supported"),
    ];
    for (status, phrase) in registry {
        assert_eq!(
            crate::http1::head::reason_phrase(status),
            phrase,
            "{status}"
        );
    }
    for status in [199, 299, 305, 306, 418, 599] {
        assert_eq!(
            crate::http1::head::reason_phrase(status),
            "Unknown",
            "{status}"
        );
    }
}

// ----- gaps of the full mutation run (second http1 pass) ------------------------------------

/// The budgets of "Input budget" are the documented 64 KiB: while a body is read (what is
/// buffered or queued counts against it) and while closing, when input is only discarded
/// but must still be read to see the peer's end of stream.
#[test]
fn a_body_and_a_closing_connection_read_64_kib_at_a_time() {
    let mut p = Pair::new();
    p.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n");
    p.events();
    assert_eq!(p.conn.read_budget(), 65_536);
    p.send(&[b'x'; 36]);
    assert_eq!(p.conn.read_budget(), 65_500, "36 body bytes not yet polled");

    // A close the application asks for waits for the peer's EOF (it may be sending).
    let mut p = Pair::new();
    p.send(GET);
    p.events();
    p.conn.close(p.now);
    p.respond(200, b"x");
    assert_eq!(p.conn.state(), ConnState::Closing);
    assert_eq!(p.conn.read_budget(), 65_536, "closing");
    p.transmit();
    assert_eq!(p.conn.state(), ConnState::Lingering);
    assert_eq!(
        p.conn.read_budget(),
        65_536,
        "lingering: waiting for the EOF"
    );
}

/// RFC 9110 §9.3.2: the answer to HEAD has no body, whatever the framing would have been.
/// An HTTP/1.0 client cannot take a chunked body, so a streamed GET answer would be
/// delimited by the close; to HEAD it is not, and a kept-alive connection stays open.
#[test]
fn a_streamed_answer_to_an_http10_head_has_no_body_and_keeps_alive() {
    let mut p = Pair::new();
    p.send(b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    p.client.requests.push_back(Framing {
        head: true,
        http10: true,
        close_ok: false,
    });
    p.events();
    p.conn
        .send_head(ResponseHead::new(200, ResponseBody::Streamed), p.now)
        .unwrap();
    p.conn
        .send_body(Chunk::Bytes(Bytes::from_static(b"dropped")), p.now)
        .unwrap();
    p.conn.send_end(None, p.now).unwrap();
    let r = p.responses();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].header("connection"), Some("keep-alive"));
    assert_eq!(p.client.pos, p.wire.len(), "no body bytes on the wire");
    assert_eq!(p.conn.state(), ConnState::Idle);
}

/// RFC 9112 §6.1: a server MUST NOT send Transfer-Encoding in a 204, even for a body the
/// application meant to stream.
#[test]
fn a_streamed_204_has_no_transfer_encoding() {
    let mut p = Pair::new();
    p.send(GET);
    p.events();
    p.conn
        .send_head(ResponseHead::new(204, ResponseBody::Streamed), p.now)
        .unwrap();
    p.conn
        .send_body(Chunk::Bytes(Bytes::from_static(b"dropped")), p.now)
        .unwrap();
    p.conn.send_end(None, p.now).unwrap();
    let r = p.responses();
    assert_eq!(r[0].status, 204);
    assert_eq!(r[0].count("transfer-encoding"), 0);
    assert_eq!(r[0].count("content-length"), 0);
    assert_eq!(p.client.pos, p.wire.len());
    assert_eq!(p.conn.state(), ConnState::Idle);
}

/// RFC 9112 §7.1: a chunk of size 0 is the last chunk, so an empty piece of a streamed body
/// must write nothing rather than end the body early.
#[test]
fn an_empty_piece_of_a_chunked_body_does_not_end_it() {
    let mut p = Pair::new();
    p.send(GET);
    p.events();
    p.conn
        .send_head(ResponseHead::new(200, ResponseBody::Streamed), p.now)
        .unwrap();
    for piece in [&b"ab"[..], b"", b"cd"] {
        p.conn
            .send_body(Chunk::Bytes(Bytes::copy_from_slice(piece)), p.now)
            .unwrap();
    }
    p.conn.send_end(None, p.now).unwrap();
    let r = p.responses();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].body, b"abcd");
    assert_eq!(p.client.pos, p.wire.len());
}

/// `idle_since` says since when a connection has waited for a request with nothing
/// buffered, and nothing while a head is being read.
#[test]
fn idle_since_is_the_start_of_the_wait_and_only_while_idle() {
    let mut p = Pair::with(Limits::default(), timeouts());
    assert_eq!(p.conn.idle_since(), Some(Time(1_000)));
    p.advance(500);
    p.send(b"GET / HT");
    assert_eq!(p.conn.idle_since(), None, "reading a head");
    p.send(b"TP/1.1\r\nHost: a\r\n\r\n");
    p.events();
    p.advance(500);
    p.respond(200, b"x");
    assert_eq!(p.conn.idle_since(), None, "sending");
    p.advance(500);
    p.transmit();
    assert_eq!(p.conn.idle_since(), Some(Time(2_500)));
}

/// After the peer's EOF nothing more is read: bytes that arrive anyway are no request, and
/// a second EOF is no second event.
#[test]
fn nothing_is_read_after_the_peers_eof() {
    let mut p = Pair::new();
    p.send(GET);
    p.conn.receive_eof(p.now);
    p.conn.receive_eof(p.now);
    p.send(&get("/late"));
    let events = p.events();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(head_of(&events[0]).target, "/");
    assert_eq!(events[1..], [Event::End, Event::PeerClosed]);
    p.respond(200, b"x");
    assert_eq!(p.responses().len(), 1);
    assert_eq!(p.conn.state(), ConnState::Closed);
    assert!(p.events().is_empty(), "no request after the EOF");
}

/// The send timer runs from when the response is queued (here long after the request
/// arrived and the connection was made), not from an older clock reading.
#[test]
fn the_send_timer_runs_from_when_the_response_is_queued() {
    let mut p = Pair::with(Limits::default(), timeouts());
    p.send(GET);
    p.events();
    p.advance(50_000);
    assert_eq!(p.conn.state(), ConnState::AwaitingResponse);
    p.respond(200, b"x");
    assert_eq!(p.conn.timer(ConnTimer::Send), Some(Time(71_000)));
    p.advance(19_999);
    assert_eq!(p.conn.state(), ConnState::SendingResponse);
    p.advance(1);
    assert_eq!(p.conn.state(), ConnState::Closed);
}

/// A `100 Continue` the application sends itself counts as the one the client asked for
/// (RFC 9110 §10.1.1): `accept_body` and a second 100 add none, and a final response sent
/// before the body arrives need not close, since the client was told to send it.
#[test]
fn the_applications_own_100_is_the_continue() {
    let mut p = Pair::new();
    p.send(EXPECT);
    p.events();
    p.conn
        .send_head(ResponseHead::new(100, ResponseBody::Empty), p.now)
        .unwrap();
    p.conn.accept_body();
    p.conn
        .send_head(ResponseHead::new(100, ResponseBody::Empty), p.now)
        .unwrap();
    p.respond(200, b"ok");
    p.send(b"data");
    p.events();
    let r = p.responses();
    assert_eq!(r.iter().map(|r| r.status).collect::<Vec<_>>(), [100, 200]);
    assert!(!r[1].closes(), "the client was told to send its body");
    assert_eq!(p.conn.state(), ConnState::Idle);
}

/// Two connections are the same state only if their buffers hold the same bytes (the
/// model checker's visited set and the simulator's comparisons rest on this equality).
#[test]
fn connections_differing_only_in_buffered_bytes_are_not_equal() {
    let limits = Limits::default();
    let fresh = || Conn::new(&limits, &Timeouts::default(), Now::default());
    let (mut a, mut b, mut c) = (fresh(), fresh(), fresh());
    assert_eq!(a, b, "two fresh connections, no buffers");
    a.receive(b"GE", Now::default());
    b.receive(b"PO", Now::default());
    c.receive(b"GE", Now::default());
    assert_ne!(a, b);
    assert_eq!(a, c);
}
