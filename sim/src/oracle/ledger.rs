//! The order checker: one connection's requests and responses, paired off in order.
//!
//! # Theory of operation
//!
//! The ledger keeps every request a client wrote on one connection, with the byte range it
//! occupies in the client's stream and when the server received its first byte, the end
//! of its head and its last byte (so timeouts can be judged against the clock). Bytes the
//! client receives go through the strict reader (`parse`); each final response is paired
//! with the oldest unanswered request, which is exactly "every request gets one response,
//! in order" (RFC 9112 §9.3: responses to pipelined requests come in request order).
//!
//! A request is *owed* an answer once all its bytes reached the server, unless the
//! exchange ended legitimately before it: the client reset the connection, or an earlier
//! response closed it (`Connection: close`, a rejected request). When the server ends the
//! connection, every owed request must have been answered and no response may be half
//! sent. Anything the server sends after a response that closed the connection, or with
//! no request to answer, is a failure.
//!
//! A connection may also be *cut* from some request on (`cut_from`), when the world saw a
//! reason DESIGN.md §4 gives: the `gateway` timeout after a script's header section was
//! sent, a script that ended short of its `Content-Length`, a client that hung up while
//! its script ran. From that request on nothing more is owed, and a response cut short
//! is no failure; one whose body the close delimits is read whole and judged as cut.

use weir_core::Time;

use crate::workload::Request;
use weir_testkit::response::{self as parse, Framing, Response};

/// One request on the connection.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The request.
    pub req: Request,
    /// Its first byte's offset in the client's stream.
    pub start: usize,
    /// Offset just past its head.
    pub head_end: usize,
    /// Offset just past its last byte.
    pub end: usize,
    /// When the client wrote it.
    pub written_at: Time,
    /// When the server received its first byte.
    pub first: Option<Time>,
    /// When the server received the end of its head.
    pub head: Option<Time>,
    /// When the server received its last byte.
    pub all: Option<Time>,
    /// When the server last received some of its bytes.
    pub last: Option<Time>,
    /// The longest wait between two deliveries of its body.
    pub body_gap_max_ms: u64,
    /// Answered.
    pub answered: bool,
    /// The configuration's generation when the end of its head reached the server (0
    /// before): the earliest it can have started under (see `oracle::reload`).
    pub gen: u64,
    /// Every request before it had been answered whole when its head arrived, and the one
    /// just before it was no script's (whose answer the core ends only when the script's
    /// output ends, which may come after its client has every byte of a
    /// `Content-Length`): it started exactly then, under `gen`.
    pub gen_exact: bool,
}

impl Entry {
    /// True if every byte reached the server.
    #[must_use]
    pub fn complete(&self) -> bool {
        self.all.is_some()
    }

    /// Could a 408 at `now` be the server's header or body timeout? (The server may start
    /// its timers later than the first byte arrives, never earlier, so if either span is
    /// shorter than its limit the 408 came too soon.)
    #[must_use]
    pub fn timeout_legit(&self, now: Time, header_ms: u64, body_ms: u64) -> bool {
        let Some(first) = self.first else {
            return false;
        };
        let head_done = self.head.unwrap_or(now);
        if head_done.0.saturating_sub(first.0) >= header_ms {
            return true;
        }
        let tail_gap = match (self.head, self.all, self.last) {
            (Some(_), None, Some(last)) => now.0.saturating_sub(last.0),
            _ => 0,
        };
        self.body_gap_max_ms.max(tail_gap) >= body_ms
    }
}

/// What happened to the exchange when bytes arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The request with this index got its final response.
    Answered(usize),
}

/// One connection's requests and responses.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Every request written, in order.
    pub entries: Vec<Entry>,
    next: usize,
    /// Requests from this index on are owed nothing.
    void_from: Option<usize>,
    inbox: Vec<u8>,
    /// The server's side has ended.
    pub ended: bool,
    /// Why the exchange ended early, if it did.
    pub void_reason: Option<&'static str>,
    /// Bytes written so far (the end of the stream).
    pub written: usize,
    /// Bytes the server has received.
    pub delivered: usize,
    /// The client reset the connection: whatever it had not received is lost.
    reset: bool,
    /// The server has read the client's end of stream (a half-close).
    pub eof_delivered: bool,
    /// From this request on, the server may cut the connection (see above).
    pub cut_from: Option<usize>,
    /// The inbox cannot hold a whole response before it is this long (a head that has
    /// been read says its `Content-Length`): reading it again before is wasted work, and
    /// was quadratic for large bodies arriving in small pieces.
    need: usize,
}

impl Ledger {
    /// Records a request the client wrote.
    pub fn write(&mut self, req: Request, now: Time) {
        let start = self.written;
        self.written += req.bytes.len();
        self.entries.push(Entry {
            start,
            head_end: start + req.head_len,
            end: self.written,
            req,
            written_at: now,
            first: None,
            head: None,
            all: None,
            last: None,
            body_gap_max_ms: 0,
            answered: false,
            gen: 0,
            gen_exact: false,
        });
    }

    /// The server received stream bytes up to `upto`, under generation `gen` of the
    /// configuration.
    pub fn delivered(&mut self, upto: usize, now: Time, gen: u64) {
        let from = self.delivered;
        self.delivered = upto;
        let next = self.next;
        let mut after_script = false;
        for (i, e) in self.entries.iter_mut().enumerate() {
            let previous_script = core::mem::replace(&mut after_script, e.req.cgi);
            if e.end <= from || e.start >= upto {
                continue;
            }
            e.first.get_or_insert(now);
            if e.head.is_some() && upto > e.head_end.max(from) {
                if let Some(last) = e.last {
                    e.body_gap_max_ms = e.body_gap_max_ms.max(now.0 - last.0);
                }
            }
            if e.head.is_none() && upto >= e.head_end {
                e.head = Some(now);
                e.gen = gen;
                e.gen_exact = i == next && !previous_script;
            }
            if e.all.is_none() && upto >= e.end {
                e.all = Some(now);
            }
            e.last = Some(now);
        }
    }

    /// The index of the request the next response answers, if one is owed or possible.
    #[must_use]
    pub fn current(&self) -> Option<&Entry> {
        self.entries.get(self.next)
    }

    /// Every answer owed has arrived (and nothing is half received).
    #[must_use]
    pub fn settled(&self) -> bool {
        self.inbox.is_empty() && self.next >= self.void_from.unwrap_or(self.entries.len())
    }

    /// Requests still to be answered and not excused.
    #[must_use]
    pub fn unanswered(&self) -> usize {
        self.void_from
            .unwrap_or(self.entries.len())
            .saturating_sub(self.next)
    }

    /// True once nothing more is owed or allowed on the connection.
    #[must_use]
    pub fn voided(&self) -> bool {
        self.void_from.is_some()
    }

    /// Excuses every request not answered yet (the client reset the connection).
    pub fn void(&mut self, reason: &'static str) {
        if self.void_from.is_none() {
            self.void_from = Some(self.next);
            self.void_reason = Some(reason);
        }
    }

    /// The client reset the connection: nothing more is owed, and a response cut short is
    /// the client's doing.
    pub fn client_reset(&mut self) {
        self.reset = true;
        self.void("the client reset the connection");
    }

    /// The world saw a reason for the server to cut the connection at request `index`.
    pub fn license_cut(&mut self, index: usize) {
        self.cut_from = Some(self.cut_from.map_or(index, |c| c.min(index)));
    }

    fn framing(&self, entry: &Entry) -> Framing {
        // A HEAD's answer has no body only if the server got to read that it was a
        // HEAD: a 408 or 400 for a head cut short is an ordinary response with a body.
        Framing {
            head: entry.req.method == "HEAD" && entry.head.is_some(),
            http10: entry.req.http10,
            close_ok: entry.req.cgi,
        }
    }

    /// Bytes from the server. `judge` checks each final response against its request.
    pub fn receive(
        &mut self,
        bytes: &[u8],
        judge: &mut dyn FnMut(&Entry, &Response) -> Result<(), String>,
    ) -> Result<Vec<Progress>, String> {
        if self.ended {
            return Err("bytes after the server ended the connection".into());
        }
        self.inbox.extend_from_slice(bytes);
        let mut progress = Vec::new();
        while !self.inbox.is_empty() {
            let Some(entry) = self.entries.get(self.next) else {
                return Err(format!(
                    "{} bytes from the server with no request to answer: {:?}",
                    self.inbox.len(),
                    String::from_utf8_lossy(&self.inbox[..self.inbox.len().min(60)])
                ));
            };
            if self.void_from.is_some_and(|v| self.next >= v) {
                return Err(format!(
                    "bytes after the exchange ended ({}): {:?}",
                    self.void_reason.unwrap_or("?"),
                    String::from_utf8_lossy(&self.inbox[..self.inbox.len().min(60)])
                ));
            }
            if self.inbox.len() < self.need {
                break;
            }
            let framing = self.framing(entry);
            let (resp, used) = match parse::next(&self.inbox, framing) {
                Ok(Some(x)) => x,
                Ok(None) => {
                    self.need = length_hint(&self.inbox);
                    break;
                }
                Err(e) => {
                    return Err(format!(
                        "not a valid response to request #{} ({}): {e}",
                        self.next,
                        entry.req.summary()
                    ))
                }
            };
            self.inbox.drain(..used);
            self.need = 0;
            if (100..200).contains(&resp.status) {
                if resp.status != 100 || !entry.req.expects_continue {
                    return Err(format!(
                        "interim {} to request #{} that did not ask for it",
                        resp.status, self.next
                    ));
                }
                continue;
            }
            if entry.first.is_none() {
                return Err(format!(
                    "response {} before the server received any of request #{} ({})",
                    resp.summary(),
                    self.next,
                    entry.req.summary()
                ));
            }
            judge(entry, &resp).map_err(|e| {
                format!(
                    "request #{} {}\n    got {}\n    {e}",
                    self.next,
                    entry.req.summary(),
                    resp.summary()
                )
            })?;
            let index = self.next;
            self.entries[index].answered = true;
            self.next += 1;
            progress.push(Progress::Answered(index));
            let rejected = matches!(
                self.entries[index].req.expect,
                crate::workload::Expect::Reject { .. }
            );
            if resp.closes() || rejected || self.entries[index].req.close {
                self.void(if resp.closes() {
                    "a response said Connection: close"
                } else if rejected {
                    "a rejected request ends the connection"
                } else {
                    "the client asked to close"
                });
            }
        }
        Ok(progress)
    }

    /// The server ended the connection (shut down its write side or closed it). A response
    /// cut short is excused only when the client stalled past a timeout (the server then
    /// aborts, RFC 9112 §9.6 allows no better) or the connection was licensed to be cut; a
    /// response the close delimits is judged now (`judge`'s flag: it was cut).
    pub fn end(
        &mut self,
        now: Time,
        header_ms: u64,
        body_ms: u64,
        judge: &mut dyn FnMut(&Entry, &Response, bool) -> Result<(), String>,
    ) -> Result<(), String> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        // A client that stalled inside its request past a timeout: the server may abort
        // an answer it had begun, so one the close delimits may be a prefix (cut).
        let stalled = self
            .current()
            .is_some_and(|e| !e.complete() && e.timeout_legit(now, header_ms, body_ms));
        let cut = stalled || self.cut_from.is_some_and(|c| self.next >= c);
        if !self.inbox.is_empty() && self.void_from.is_none_or(|v| self.next < v) {
            if let Some(entry) = self.entries.get(self.next) {
                let framing = self.framing(entry);
                let closed = parse::at_close(&self.inbox, framing).map_err(|e| {
                    format!(
                        "not a valid response to request #{} ({}): {e}",
                        self.next,
                        entry.req.summary()
                    )
                })?;
                if let Some(resp) = closed {
                    judge(entry, &resp, cut).map_err(|e| {
                        format!(
                            "request #{} {}\n    got {} (delimited by the close)\n    {e}",
                            self.next,
                            entry.req.summary(),
                            resp.summary()
                        )
                    })?;
                    self.inbox.clear();
                    self.entries[self.next].answered = true;
                    self.next += 1;
                    self.void("a response delimited by the close ends the connection");
                }
            }
        }
        let cut = self.cut_from.is_some_and(|c| self.next >= c);
        let stalled = self
            .current()
            .is_some_and(|e| !e.complete() && e.timeout_legit(now, header_ms, body_ms));
        if !self.inbox.is_empty() && !stalled && !self.reset && !cut {
            return Err(format!(
                "connection ended inside a response ({} bytes unparsed: {:?})",
                self.inbox.len(),
                String::from_utf8_lossy(&self.inbox[..self.inbox.len().min(80)])
            ));
        }
        let owed_to = self
            .void_from
            .unwrap_or(self.entries.len())
            .min(self.cut_from.unwrap_or(usize::MAX));
        if let Some((i, e)) = self
            .entries
            .iter()
            .enumerate()
            .take(owed_to)
            .skip(self.next)
            .find(|(_, e)| e.complete())
        {
            return Err(format!(
                "connection ended with request #{i} ({}) received in full but unanswered",
                e.req.summary()
            ));
        }
        self.void("the server ended the connection");
        Ok(())
    }
}

/// For an inbox the reader found incomplete: the length a response needs, if its head is
/// all there and says one `Content-Length` (0, "no hint", otherwise). The reader has
/// checked the head already; this only spares it reading the head again for every piece
/// of a long body.
fn length_hint(inbox: &[u8]) -> usize {
    let Some(end) = inbox.windows(4).position(|w| w == b"\r\n\r\n") else {
        return 0;
    };
    let mut lengths = inbox[..end].split(|&b| b == b'\n').filter_map(|line| {
        let (name, value) = line.split_at(line.iter().position(|&b| b == b':')?);
        name.eq_ignore_ascii_case(b"content-length").then(|| {
            core::str::from_utf8(&value[1..])
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
        })
    });
    match (lengths.next(), lengths.next()) {
        (Some(Some(n)), None) => (end + 4).saturating_add(n),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_hints_only_for_a_whole_head_with_one_length() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nDate: x\r\n\r\nabc";
        assert_eq!(length_hint(head), head.len() - 3 + 10);
        assert_eq!(length_hint(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n"), 0);
        assert_eq!(
            length_hint(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n"),
            0
        );
        assert_eq!(
            length_hint(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\nContent-Length: 1\r\n\r\n"),
            0
        );
    }

    #[test]
    fn a_long_body_in_pieces_is_read_once_whole() {
        let mut l = Ledger::default();
        let bytes = b"GET /a.txt HTTP/1.1\r\nHost: sim.test\r\n\r\n".to_vec();
        let req = Request {
            method: "GET".into(),
            target: "/a.txt".into(),
            http10: false,
            headers: vec![("Host".into(), "sim.test".into())],
            head_len: bytes.len(),
            bytes,
            expect: crate::workload::Expect::Model,
            close: false,
            stall_at: None,
            expects_continue: false,
            body: Vec::new(),
            id: 1,
            cgi: false,
            svc: false,
        };
        l.write(req, Time(0));
        l.delivered(l.written, Time(0), 1);
        let body = vec![b'x'; 5_000];
        let mut wire = format!(
            "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: weir\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        wire.extend_from_slice(&body);
        let mut judged = Vec::new();
        for piece in wire.chunks(7) {
            let p = l
                .receive(piece, &mut |_, r| {
                    judged.push(r.body.len());
                    Ok(())
                })
                .unwrap();
            assert_eq!(p.is_empty(), judged.is_empty());
        }
        assert_eq!(judged, vec![5_000]);
        assert!(l.settled());
    }
}
