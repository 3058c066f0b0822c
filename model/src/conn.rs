//! `conn`: the real `http1::Conn` between a scripted client, an application and a shell.
//!
//! # Theory of operation
//!
//! The state ([`ConnWorld`]) holds the core's own `Conn` value plus a small abstract
//! environment; every action calls the real API (`receive`, `receive_eof`, `poll_event`,
//! `accept_body`, `send_head`/`send_body`/`send_end`, `pending_transmit`/
//! `advance_transmit`, `poll_timeout`/`handle_timeout`). Nothing of HTTP is re-implemented
//! except the strict client (`weir_testkit::response`), which reads what was transmitted.
//!
//! The environment, and the actions it offers:
//!
//! * **the client** has a [`Script`] of up to three requests, concatenated into one byte
//!   stream with *cut points* (inside the request line, after it, between the last two
//!   CRLFs of the head, after the head, inside the body, at the end). `ClientSends` delivers
//!   from where it is to *any* later cut point, as much as `read_budget` allows (a shell only
//!   reads that much), so every way of cutting the stream at those points — one request in
//!   five pieces, or three pipelined requests in one — is explored. `ClientCloses` sends
//!   the EOF, at most once, whenever the shell would be reading.
//! * **the application** drains `poll_event` after every call (that is the calling
//!   contract) into [`AppRequest`]s, and may answer the current request as soon as its head
//!   is known (before its body, too): a whole response with `Content-Length`, or a streamed
//!   one (head and first bytes, then the end, as two actions). It tags each answer with
//!   `X-Request: i`, the index of the head it answers, so the client can tell which is which.
//!   `AppAcceptsBody` calls `accept_body` for a request that expects `100-continue`.
//! * **the shell** writes the front chunk of `pending_transmit` in full or in half (a short
//!   write), appending the bytes to the wire the client reads.
//! * **time** moves only when `TimerFires`: `now` jumps to `conn.poll_timeout()`, so time
//!   takes only values the core chose.
//!
//! # Bounds, and why `eventually` is sound here
//!
//! The state space is finite and the transition graph acyclic: every action strictly
//! increases one of (bytes delivered, EOF sent, events drained, responses started and
//! ended, bytes transmitted, `now`), none decreases, and the `Conn` has no transition back
//! to a state with the same counters (the only cycle it has, `next_cycle`, happens inside a
//! call and is paid for with events). An action that would change nothing is not offered
//! (`next_state` returns `None` when the state would be equal), so the checker never sees a
//! self-loop. Stateright's `eventually` is sound on acyclic graphs, and the one used here is
//! *stable* (once true, true in every successor), so the checker's DAG-join shortcut (it does
//! not re-explore a state reached by a second path) cannot hide a counterexample either.
//!
//! # Broken variants
//!
//! [`ConnFault`] breaks the environment or its use of the core, never the core, so each
//! property is shown to catch something (see the tests).

use std::fmt::Write as _;

use bytes::Bytes;
use core::time::Duration;
use stateright::{Model, Property};
use weir_core::http1::{BodyKind, Conn, ConnState, Event, ResponseBody, ResponseHead};
use weir_core::{Chunk, Limits, Now, Time, Timeouts, UnixTime};

use weir_testkit::response::{self, Framing};

/// One request of a client script.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScriptRequest {
    /// Short name for transcripts.
    pub label: &'static str,
    /// The bytes on the wire.
    pub bytes: &'static [u8],
}

impl ScriptRequest {
    /// Where the head ends (just past its empty line), or the whole length for a request
    /// that has none (malformed).
    fn head_len(&self) -> usize {
        self.bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(self.bytes.len(), |i| i + 4)
    }

    /// The cut points inside this request, relative to its start (see the module docs).
    fn cuts(&self) -> Vec<usize> {
        let len = self.bytes.len();
        let head = self.head_len();
        let line = self
            .bytes
            .iter()
            .position(|&b| b == b'\n')
            .map_or(len, |i| i + 1);
        let mut cuts = vec![3, line, head.saturating_sub(2), head, head + 1, len];
        cuts.retain(|&c| c > 0 && c <= len);
        cuts.sort_unstable();
        cuts.dedup();
        cuts
    }
}

/// A client script and the name the CLI and tests know it by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Script {
    /// Name (`weir-model --model conn` checks every script).
    pub name: &'static str,
    /// Up to three requests, sent in order on one connection.
    pub requests: Vec<ScriptRequest>,
}

const GET_A: ScriptRequest = ScriptRequest {
    label: "GET /a",
    bytes: b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n",
};
const POST_CONTINUE: ScriptRequest = ScriptRequest {
    label: "POST /b (Expect: 100-continue, Content-Length: 2)",
    bytes: b"POST /b HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab",
};
const GET_CLOSE: ScriptRequest = ScriptRequest {
    label: "GET /c (Connection: close)",
    bytes: b"GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
};
const POST_CHUNKED: ScriptRequest = ScriptRequest {
    label: "POST /d (chunked)",
    bytes: b"POST /d HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
};
const GET_HTTP10: ScriptRequest = ScriptRequest {
    label: "GET /e HTTP/1.0",
    bytes: b"GET /e HTTP/1.0\r\n\r\n",
};
const SMUGGLE: ScriptRequest = ScriptRequest {
    label: "POST /x (Content-Length and chunked: malformed)",
    bytes: b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
};
const GET_SMUGGLED: ScriptRequest = ScriptRequest {
    label: "GET /y (after the malformed one)",
    bytes: b"GET /y HTTP/1.1\r\nHost: h\r\n\r\n",
};

impl Script {
    /// Keep-alive and pipelining: a GET, a POST expecting `100-continue`, a GET that closes.
    #[must_use]
    pub fn keepalive() -> Script {
        Script {
            name: "keepalive",
            requests: vec![GET_A, POST_CONTINUE, GET_CLOSE],
        }
    }

    /// A chunked body, then an HTTP/1.0 request (no keep-alive).
    #[must_use]
    pub fn chunked() -> Script {
        Script {
            name: "chunked",
            requests: vec![POST_CHUNKED, GET_HTTP10],
        }
    }

    /// A request-smuggling attempt: a malformed framing, then a request hidden behind it.
    #[must_use]
    pub fn smuggle() -> Script {
        Script {
            name: "smuggle",
            requests: vec![SMUGGLE, GET_SMUGGLED],
        }
    }

    /// Every script `weir-model --model conn` checks.
    #[must_use]
    pub fn all() -> Vec<Script> {
        vec![Script::keepalive(), Script::chunked(), Script::smuggle()]
    }

    fn stream(&self) -> Vec<u8> {
        self.requests
            .iter()
            .flat_map(|r| r.bytes.to_vec())
            .collect()
    }
}

/// A deliberately broken environment (the tests show each property catches one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnFault {
    /// The honest environment.
    None,
    /// The shell holds back the first whole chunk it writes and puts it on the wire after
    /// the next one: two sends reordered. Breaks "responses in request order".
    ReorderSends,
    /// On a short write the shell reports one byte more than it wrote. Breaks "responses
    /// in request order" (the client reads a garbled response).
    OverReportSent,
    /// After `Rejected` the shell starts a fresh `Conn` on the same socket instead of
    /// closing. Breaks "nothing is parsed after a rejection".
    RecycleAfterReject,
    /// The shell keeps its copy of a partly written chunk and writes it even after the
    /// connection closed. Breaks "nothing is sent after close".
    WriteAfterClose,
    /// The shell reads without looking at `read_budget`. Breaks "buffered bytes stay within
    /// the limits".
    IgnoreBudget,
    /// The application drains `poll_event` only after `receive`, not after its own calls
    /// or the EOF. Breaks "every request sent is answered or the connection closes".
    SkipDrain,
}

/// The model: a script, the limits the `Conn` is built with, and a fault (or none).
#[derive(Clone, Debug)]
pub struct ConnModel {
    /// What the client sends.
    pub script: Script,
    /// Limits for the `Conn` (small, so back-pressure is reachable).
    pub limits: Limits,
    /// Timeouts for the `Conn` (distinct, so transcripts tell them apart).
    pub timeouts: Timeouts,
    /// The environment's deliberate bug, if any.
    pub fault: ConnFault,
    stream: Vec<u8>,
    /// Absolute cut points, ascending, the last being the stream's end.
    cuts: Vec<usize>,
    /// Absolute end of each request's head, and of each request.
    head_ends: Vec<usize>,
    request_ends: Vec<usize>,
}

/// Limits small enough that two pipelined requests exceed the pipelining budget.
#[must_use]
pub fn model_limits() -> Limits {
    Limits {
        request_line_max: 32,
        header_bytes_max: 96,
        headers_max: 8,
        body_max: 16,
        connections_max: 4,
        cgi_max: 1,
    }
}

/// Short, distinct timeouts.
#[must_use]
pub fn model_timeouts() -> Timeouts {
    Timeouts {
        header: Duration::from_secs(2),
        body: Duration::from_secs(3),
        idle: Duration::from_secs(5),
        send: Duration::from_secs(4),
        gateway: Duration::from_secs(6),
        grace: Duration::from_secs(1),
    }
}

impl ConnModel {
    /// The honest model of `script`.
    #[must_use]
    pub fn new(script: Script) -> ConnModel {
        ConnModel::with_fault(script, ConnFault::None)
    }

    /// The model of `script` in a broken environment.
    #[must_use]
    pub fn with_fault(script: Script, fault: ConnFault) -> ConnModel {
        assert!(
            (1..=3).contains(&script.requests.len()),
            "one to three requests"
        );
        let stream = script.stream();
        let (mut cuts, mut head_ends, mut request_ends) = (Vec::new(), Vec::new(), Vec::new());
        let mut start = 0;
        for r in &script.requests {
            cuts.extend(r.cuts().into_iter().map(|c| start + c));
            head_ends.push(start + r.head_len());
            start += r.bytes.len();
            request_ends.push(start);
        }
        cuts.sort_unstable();
        cuts.dedup();
        ConnModel {
            script,
            limits: model_limits(),
            timeouts: model_timeouts(),
            fault,
            stream,
            cuts,
            head_ends,
            request_ends,
        }
    }

    fn now_at(mono: Time) -> Now {
        Now {
            mono,
            unix: UnixTime(1_700_000_000 + i64::try_from(mono.0 / 1000).unwrap_or(0)),
        }
    }

    /// What the connection holds at most of delivered bytes it has not turned into
    /// events: its head buffer (`header_bytes_max + 1`, one more byte than a legal head so
    /// an oversized one is seen), plus the framing of a chunked body being read, which the
    /// model cannot see consumed (it sees only the data).
    fn buffer_bound(&self, s: &ConnWorld) -> usize {
        let slack = match s.app.last() {
            Some(r) if !r.ended => {
                let i = s.app.len() - 1;
                let body = self.request_ends[i] - self.head_ends[i];
                body.saturating_sub(r.body_bytes)
            }
            _ => 0,
        };
        self.limits.header_bytes_max + 1 + slack
    }

    /// Delivered bytes the events do not yet account for (an upper bound on the
    /// connection's input buffer).
    fn unparsed(&self, s: &ConnWorld) -> usize {
        let consumed = match s.app.last() {
            None => 0,
            Some(r) => {
                let i = s.app.len() - 1;
                if i >= self.request_ends.len() {
                    return 0;
                }
                if r.ended {
                    self.request_ends[i]
                } else {
                    self.head_ends[i] + r.body_bytes
                }
            }
        };
        s.delivered.saturating_sub(consumed)
    }
}

/// A request as the application has seen it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AppRequest {
    /// The head announced a body.
    pub has_body: bool,
    /// The head asked for `100-continue`.
    pub expects_continue: bool,
    /// `accept_body` was called.
    pub accepted: bool,
    /// Body bytes seen.
    pub body_bytes: usize,
    /// `End` seen.
    pub ended: bool,
    /// How far the answer is.
    pub answer: Answer,
}

/// How far the application has answered a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Answer {
    /// Not yet.
    None,
    /// Head and first body bytes sent; the end is still to come.
    Streaming,
    /// Ended.
    Done,
}

/// What the client has read off the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Seen {
    /// Status code.
    pub status: u16,
    /// The `X-Request` index it carries (`None`: the connection's own error response).
    pub answers: Option<usize>,
}

/// The state: the real `Conn` and the environment around it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConnWorld {
    /// The core's connection.
    pub conn: Conn,
    /// The clock, moved only by timers.
    pub now: Now,
    /// Script bytes delivered.
    pub delivered: usize,
    /// The client sent its EOF.
    pub eof_sent: bool,
    /// Requests the application has seen, in order.
    pub app: Vec<AppRequest>,
    /// `Rejected` was reported, with this status.
    pub rejected: Option<u16>,
    /// A head, body, trailers or end was reported after `Rejected`.
    pub parsed_after_reject: bool,
    /// Transmitted bytes the client has not yet read as a complete response.
    pub wire: Vec<u8>,
    /// Total bytes transmitted.
    pub transmitted: usize,
    /// `transmitted` when the connection was first seen `Closed`.
    pub closed_at: Option<usize>,
    /// Final responses read, in order.
    pub responses: Vec<Seen>,
    /// `100 Continue` heads read.
    pub continues: u8,
    /// Why the client could not read the wire, if it could not.
    pub garbled: Option<String>,
    /// A response came out of order or answered a request not sent.
    pub misordered: bool,
    /// The second request was delivered in full before the first response was read.
    pub pipelined: bool,
    /// `ReorderSends`: the bytes the shell holds back.
    pub held: Option<Vec<u8>>,
    /// `WriteAfterClose`: the shell's copy of what is left of the chunk it was writing.
    pub stale: Option<Bytes>,
}

/// How the application answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reply {
    /// `200` with `Content-Length: 2`, head, body and end at once.
    Whole,
    /// `200` streamed (chunked, or close-delimited to HTTP/1.0): head and `ok` now, the
    /// end later.
    Streamed,
}

/// What can happen next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnAction {
    /// The client's bytes `from..to` arrive in one read.
    ClientSends {
        /// First byte.
        from: usize,
        /// One past the last byte.
        to: usize,
    },
    /// The client closes its sending side.
    ClientCloses,
    /// The application will read the body (`accept_body`).
    AppAcceptsBody,
    /// The application answers the current request.
    AppResponds(Reply),
    /// The application ends its streamed answer.
    AppEndsStream,
    /// The shell writes `n` of the `len` bytes of the front chunk.
    ShellWrites {
        /// Bytes written.
        n: usize,
        /// Length of the chunk.
        len: usize,
    },
    /// `ReorderSends`: the shell writes what it held back.
    ShellFlushesHeld,
    /// `WriteAfterClose`: the shell writes its stale copy.
    ShellWritesStale,
    /// Time jumps to the connection's deadline and the timer fires.
    TimerFires(Time),
}

impl ConnModel {
    fn drain(&self, s: &mut ConnWorld) {
        while let Some(e) = s.conn.poll_event() {
            if s.rejected.is_some() && !matches!(e, Event::PeerClosed) {
                s.parsed_after_reject = true;
            }
            match e {
                Event::Head(h) => {
                    s.app.push(AppRequest {
                        has_body: h.body != BodyKind::None,
                        expects_continue: h.expects_continue,
                        accepted: false,
                        body_bytes: 0,
                        ended: false,
                        answer: Answer::None,
                    });
                }
                Event::Body(b) => {
                    if let Some(r) = s.app.last_mut() {
                        r.body_bytes += b.len();
                    }
                }
                Event::End => {
                    if let Some(r) = s.app.last_mut() {
                        r.ended = true;
                    }
                }
                Event::Trailers(_) | Event::PeerClosed => {}
                Event::Rejected { error, .. } => {
                    s.rejected = Some(error.status);
                    if self.fault == ConnFault::RecycleAfterReject {
                        // The bug: a fresh parser on a socket whose stream position is
                        // unknown.
                        s.conn = Conn::new(&self.limits, &self.timeouts, s.now);
                    }
                }
            }
        }
    }

    /// Puts transmitted bytes on the wire and lets the client read what it can.
    fn transmit(&self, s: &mut ConnWorld, bytes: &[u8]) {
        s.transmitted += bytes.len();
        // Once the client cannot read the wire, what follows tells nothing more; keeping
        // it would only make every later state distinct.
        if s.garbled.is_none() {
            s.wire.extend_from_slice(bytes);
        }
        self.read_wire(s);
    }

    /// What the client knows of its request `k` when it reads the answer: whether it was
    /// HTTP/1.0, where the application's streamed answer can only end with the close.
    /// (No script sends HEAD.)
    fn framing(&self, k: usize) -> Framing {
        let http10 = self.script.requests.get(k).is_some_and(|q| {
            let line = q.bytes.split(|&b| b == b'\r').next().unwrap_or_default();
            line.ends_with(b" HTTP/1.0")
        });
        Framing {
            head: false,
            http10,
            close_ok: http10,
        }
    }

    fn read_wire(&self, s: &mut ConnWorld) {
        let finished = matches!(s.conn.state(), ConnState::Lingering | ConnState::Closed)
            && s.conn.pending_transmit().is_none()
            && s.held.is_none();
        while s.garbled.is_none() {
            // The client reads the answer to its k-th request as what it asked deserves.
            let k = s.responses.len();
            match response::read(&s.wire, self.framing(k), finished) {
                Ok(None) => break,
                Err(why) => {
                    s.garbled = Some(why);
                    s.wire.clear();
                }
                Ok(Some((r, used))) => {
                    s.wire.drain(..used);
                    if r.is_interim() {
                        s.continues += u8::from(r.status == 100);
                        continue;
                    }
                    let answers = r.field("x-request").and_then(|v| v.parse().ok());
                    let k = s.responses.len();
                    let sent = |i: usize| self.head_ends.get(i).is_some_and(|&e| e <= s.delivered);
                    // The connection's own answer (no tag) is to the request in progress;
                    // it must be the last one, which `after_canned` checks.
                    let in_order = answers.is_none() || answers.is_some_and(|i| i == k && sent(i));
                    let after_canned = s.responses.last().is_some_and(|p| p.answers.is_none());
                    if !in_order || after_canned {
                        s.misordered = true;
                    }
                    s.responses.push(Seen {
                        status: r.status,
                        answers,
                    });
                }
            }
        }
    }

    fn respond(&self, s: &mut ConnWorld, reply: Reply) -> bool {
        let i = s.app.len() - 1;
        let body = match reply {
            Reply::Whole => ResponseBody::Length(2),
            Reply::Streamed => ResponseBody::Streamed,
        };
        let mut head = ResponseHead::new(200, body);
        head.headers.push("X-Request", i.to_string());
        if s.conn.send_head(head, s.now).is_err() {
            return false;
        }
        let ok = Chunk::Bytes(Bytes::from_static(b"ok"));
        // unwrap-free: the head was accepted and promised exactly these bytes.
        let sent = s.conn.send_body(ok, s.now).is_ok();
        debug_assert!(sent, "send_body after an accepted head");
        s.app[i].answer = match reply {
            Reply::Whole => {
                let ended = s.conn.send_end(None, s.now).is_ok();
                debug_assert!(ended, "send_end after the whole body");
                Answer::Done
            }
            Reply::Streamed => Answer::Streaming,
        };
        true
    }

    /// Bookkeeping after every action: note the close, drop the shell's copy of a
    /// chunk that is gone, and let the client read a close-delimited body.
    fn settle(&self, s: &mut ConnWorld) {
        if s.conn.state() == ConnState::Closed && s.closed_at.is_none() {
            s.closed_at = Some(s.transmitted);
        }
        if s.delivered >= self.head_ends.get(1).copied().unwrap_or(usize::MAX)
            && s.responses.is_empty()
        {
            s.pipelined = true;
        }
        self.read_wire(s);
    }
}

impl Model for ConnModel {
    type State = ConnWorld;
    type Action = ConnAction;

    fn init_states(&self) -> Vec<ConnWorld> {
        let now = ConnModel::now_at(Time(0));
        vec![ConnWorld {
            conn: Conn::new(&self.limits, &self.timeouts, now),
            now,
            delivered: 0,
            eof_sent: false,
            app: Vec::new(),
            rejected: None,
            parsed_after_reject: false,
            wire: Vec::new(),
            transmitted: 0,
            closed_at: None,
            responses: Vec::new(),
            continues: 0,
            garbled: None,
            misordered: false,
            pipelined: false,
            held: None,
            stale: None,
        }]
    }

    fn actions(&self, s: &ConnWorld, actions: &mut Vec<ConnAction>) {
        let closed = s.conn.state() == ConnState::Closed;
        let budget = if self.fault == ConnFault::IgnoreBudget && !closed && !s.eof_sent {
            usize::MAX
        } else {
            s.conn.read_budget()
        };
        // The client: every later cut point within the budget, or as much as the budget
        // allows when the next cut point lies beyond it.
        if budget > 0 && !s.eof_sent && s.delivered < self.stream.len() {
            let limit = s.delivered.saturating_add(budget);
            let mut any = false;
            for &c in self.cuts.iter().filter(|&&c| c > s.delivered) {
                if c <= limit {
                    actions.push(ConnAction::ClientSends {
                        from: s.delivered,
                        to: c,
                    });
                    any = true;
                }
            }
            if !any {
                actions.push(ConnAction::ClientSends {
                    from: s.delivered,
                    to: limit,
                });
            }
        }
        if budget > 0 && !s.eof_sent {
            actions.push(ConnAction::ClientCloses);
        }
        // The application.
        let open = !matches!(
            s.conn.state(),
            ConnState::Closing | ConnState::Lingering | ConnState::Closed
        );
        if let Some(r) = s.app.last() {
            if open && r.has_body && r.expects_continue && !r.accepted && !r.ended {
                actions.push(ConnAction::AppAcceptsBody);
            }
            if open && r.answer == Answer::None && s.rejected.is_none() {
                actions.push(ConnAction::AppResponds(Reply::Whole));
                actions.push(ConnAction::AppResponds(Reply::Streamed));
            }
            if r.answer == Answer::Streaming && !closed {
                actions.push(ConnAction::AppEndsStream);
            }
        }
        // The shell.
        if let Some(chunk) = s.conn.pending_transmit() {
            // unwrap-free: the model's chunks are a few hundred bytes.
            let len = usize::try_from(chunk.len()).expect("small chunk");
            if len > 1 {
                actions.push(ConnAction::ShellWrites { n: len / 2, len });
            }
            actions.push(ConnAction::ShellWrites { n: len, len });
        }
        if s.held.is_some() && s.conn.pending_transmit().is_none() {
            actions.push(ConnAction::ShellFlushesHeld);
        }
        if closed && s.stale.is_some() {
            actions.push(ConnAction::ShellWritesStale);
        }
        if let Some(t) = s.conn.poll_timeout() {
            actions.push(ConnAction::TimerFires(t));
        }
    }

    fn next_state(&self, last: &ConnWorld, action: ConnAction) -> Option<ConnWorld> {
        let mut s = last.clone();
        let mut drain = true;
        match action {
            ConnAction::ClientSends { from, to } => {
                let to = to.min(self.stream.len());
                s.conn.receive(&self.stream[from..to], s.now);
                s.delivered = to;
            }
            ConnAction::ClientCloses => {
                s.eof_sent = true;
                s.conn.receive_eof(s.now);
                drain = self.fault != ConnFault::SkipDrain;
            }
            ConnAction::AppAcceptsBody => {
                let r = s.app.last_mut()?;
                r.accepted = true;
                s.conn.accept_body();
                drain = self.fault != ConnFault::SkipDrain;
            }
            ConnAction::AppResponds(reply) => {
                if !self.respond(&mut s, reply) {
                    return None;
                }
                drain = self.fault != ConnFault::SkipDrain;
            }
            ConnAction::AppEndsStream => {
                s.conn.send_end(None, s.now).ok()?;
                s.app.last_mut()?.answer = Answer::Done;
                drain = self.fault != ConnFault::SkipDrain;
            }
            ConnAction::ShellWrites { n, .. } => {
                let Some(Chunk::Bytes(b)) = s.conn.pending_transmit().cloned() else {
                    return None;
                };
                let reported = if self.fault == ConnFault::OverReportSent && n < b.len() {
                    n + 1
                } else {
                    n
                };
                s.conn.advance_transmit(reported as u64, s.now);
                if self.fault == ConnFault::WriteAfterClose {
                    s.stale = (n < b.len()).then(|| b.slice(n..));
                }
                if self.fault == ConnFault::ReorderSends && n == b.len() && s.held.is_none() {
                    s.held = Some(b.to_vec());
                } else {
                    let mut out = b[..n].to_vec();
                    if self.fault == ConnFault::ReorderSends {
                        out.extend(s.held.take().unwrap_or_default());
                    }
                    self.transmit(&mut s, &out);
                }
                drain = self.fault != ConnFault::SkipDrain;
            }
            ConnAction::ShellFlushesHeld => {
                let held = s.held.take()?;
                self.transmit(&mut s, &held);
            }
            ConnAction::ShellWritesStale => {
                let stale = s.stale.take()?;
                self.transmit(&mut s, &stale);
            }
            ConnAction::TimerFires(t) => {
                s.now = ConnModel::now_at(t.max(s.now.mono));
                s.conn.handle_timeout(s.now);
                drain = self.fault != ConnFault::SkipDrain;
            }
        }
        if drain {
            self.drain(&mut s);
        }
        self.settle(&mut s);
        (s != *last).then_some(s)
    }

    fn format_action(&self, action: &ConnAction) -> String {
        match *action {
            ConnAction::ClientSends { from, to } => {
                let to = to.min(self.stream.len());
                format!("client sends \"{}\"", show(&self.stream[from..to]))
            }
            ConnAction::ClientCloses => "client closes its side (EOF)".into(),
            ConnAction::AppAcceptsBody => "app will read the body (accept_body)".into(),
            ConnAction::AppResponds(Reply::Whole) => {
                "app answers 200, Content-Length: 2, \"ok\"".into()
            }
            ConnAction::AppResponds(Reply::Streamed) => {
                "app starts a streamed 200 and sends \"ok\"".into()
            }
            ConnAction::AppEndsStream => "app ends the streamed response".into(),
            ConnAction::ShellWrites { n, len } if n == len => format!("shell writes {n} bytes"),
            ConnAction::ShellWrites { n, len } => format!("shell writes {n} of {len} bytes"),
            ConnAction::ShellFlushesHeld => "shell writes the chunk it held back".into(),
            ConnAction::ShellWritesStale => "shell writes its stale copy".into(),
            ConnAction::TimerFires(t) => format!("timer fires at {t}"),
        }
    }

    fn properties(&self) -> Vec<Property<ConnModel>> {
        let mut p: Vec<Property<ConnModel>> = vec![
            Property::<ConnModel>::always("responses leave in request order", |_, s| {
                !s.misordered && s.garbled.is_none()
            }),
            Property::<ConnModel>::always("nothing is parsed after a rejection", |_, s| {
                !s.parsed_after_reject
            }),
            Property::<ConnModel>::always("nothing is sent after close", |_, s| {
                s.closed_at.is_none() || s.closed_at == Some(s.transmitted)
            }),
            Property::<ConnModel>::always("buffered bytes stay within the limits", |m, s| {
                // Closing or closed, the connection discards what it reads; after a
                // rejection it has dropped its input.
                let open = !matches!(
                    s.conn.state(),
                    ConnState::Closing | ConnState::Lingering | ConnState::Closed
                );
                !open || s.rejected.is_some() || m.unparsed(s) <= m.buffer_bound(s)
            }),
            Property::<ConnModel>::eventually(
                "every request sent is answered or the connection closes",
                |m, s| {
                    s.conn.state() == ConnState::Closed
                        || (s.delivered == m.stream.len()
                            && s.responses.len() >= m.script.requests.len())
                },
            ),
            Property::<ConnModel>::sometimes("408 fires", |_, s| {
                s.responses.iter().any(|r| r.status == 408)
            }),
        ];
        // The witnesses each script can reach (a `sometimes` with no example fails).
        let has = |needle: &[u8]| {
            self.script
                .requests
                .iter()
                .any(|r| r.bytes.windows(needle.len()).any(|w| w == needle))
        };
        if has(b"Transfer-Encoding") && has(b"Content-Length") {
            p.push(Property::<ConnModel>::sometimes(
                "a malformed request is rejected with 400",
                |_, s| s.responses.iter().any(|r| r.status == 400),
            ));
        } else if self.script.requests.len() > 1 {
            p.push(Property::<ConnModel>::sometimes(
                "a pipelined second request is answered",
                |_, s| s.pipelined && s.responses.get(1).is_some_and(|r| r.answers == Some(1)),
            ));
        }
        if has(b"100-continue") {
            p.push(Property::<ConnModel>::sometimes(
                "100-continue is sent",
                |_, s| s.continues > 0,
            ));
        }
        p
    }
}

/// Bytes as readable text for transcripts (`\r\n` shown as such).
#[must_use]
pub fn show(b: &[u8]) -> String {
    let mut out = String::new();
    for &c in b {
        match c {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            0x20..=0x7e => out.push(char::from(c)),
            _ => {
                let _ = write!(out, "\\x{c:02x}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use stateright::{Checker, HasDiscoveries, Model};

    use super::*;

    fn check(model: ConnModel) -> impl Checker<ConnModel> {
        model.checker().spawn_bfs().join()
    }

    /// The counterexample the checker finds for `property` in the broken model: its
    /// transcript and its last state. The check stops soon after the first one.
    fn caught(
        script: Script,
        fault: ConnFault,
        property: &'static str,
    ) -> (Vec<String>, ConnWorld) {
        let checker = ConnModel::with_fault(script, fault)
            .checker()
            .finish_when(HasDiscoveries::AnyOf([property].into()))
            .target_state_count(2_000_000)
            .spawn_bfs()
            .join();
        let path = checker.discovery(property).unwrap_or_else(|| {
            panic!("{fault:?} is not caught by {property:?}");
        });
        let last = path.last_state().clone();
        let transcript = path
            .into_actions()
            .iter()
            .map(|a| checker.model().format_action(a))
            .collect();
        (transcript, last)
    }

    #[test]
    fn honest_models_hold_and_their_state_counts_are_pinned() {
        for (script, unique) in [
            (Script::keepalive(), 221_159),
            (Script::chunked(), 6_056),
            (Script::smuggle(), 688),
        ] {
            let name = script.name;
            let checker = check(ConnModel::new(script));
            checker.assert_properties();
            assert_eq!(checker.unique_state_count(), unique, "{name}");
        }
    }

    #[test]
    fn reordered_sends_break_response_order() {
        let (t, last) = caught(
            Script::keepalive(),
            ConnFault::ReorderSends,
            "responses leave in request order",
        );
        assert!(last.misordered || last.garbled.is_some(), "{t:?}");
        assert!(
            t.iter().filter(|a| a.starts_with("shell writes")).count() >= 2,
            "{t:?}"
        );
    }

    #[test]
    fn over_reported_writes_garble_the_responses() {
        let (t, last) = caught(
            Script::keepalive(),
            ConnFault::OverReportSent,
            "responses leave in request order",
        );
        assert!(last.garbled.is_some() || last.misordered, "{t:?}");
        assert!(t.iter().any(|a| a.contains(" of ")), "a short write: {t:?}");
    }

    #[test]
    fn recycling_after_a_rejection_parses_the_smuggled_request() {
        let (t, last) = caught(
            Script::smuggle(),
            ConnFault::RecycleAfterReject,
            "nothing is parsed after a rejection",
        );
        assert!(last.rejected.is_some(), "{t:?}");
        assert!(last.parsed_after_reject);
    }

    #[test]
    fn writing_a_stale_copy_sends_after_close() {
        let (t, last) = caught(
            Script::keepalive(),
            ConnFault::WriteAfterClose,
            "nothing is sent after close",
        );
        assert_eq!(last.conn.state(), ConnState::Closed);
        assert!(
            t.iter().any(|a| a == "shell writes its stale copy"),
            "{t:?}"
        );
    }

    #[test]
    fn ignoring_the_read_budget_overfills_the_buffer() {
        let (t, last) = caught(
            Script::keepalive(),
            ConnFault::IgnoreBudget,
            "buffered bytes stay within the limits",
        );
        // More was delivered than a fresh connection's whole budget.
        assert!(
            last.delivered > model_limits().header_bytes_max + 1,
            "{t:?}"
        );
    }

    #[test]
    fn skipping_the_drain_leaves_a_request_unanswered() {
        let (t, last) = caught(
            Script::keepalive(),
            ConnFault::SkipDrain,
            "every request sent is answered or the connection closes",
        );
        assert_ne!(last.conn.state(), ConnState::Closed, "{t:?}");
        assert!(last.responses.len() < 3);
    }

    #[test]
    fn cut_points_cover_the_head_boundaries() {
        let m = ConnModel::new(Script::keepalive());
        // Between the two CRLFs that end the first head, and right after it.
        assert!(m.cuts.contains(&(GET_A.bytes.len() - 2)));
        assert!(m.cuts.contains(&GET_A.bytes.len()));
        assert_eq!(m.cuts.last(), Some(&m.stream.len()));
        assert_eq!(m.head_ends[0], GET_A.bytes.len());
    }
}
