//! One FastCGI connection, application side, as a pure machine over the core's codec.
//!
//! # Theory of operation
//!
//! weir (the client) opens a connection and sends `BEGIN_REQUEST`, the request's `PARAMS`
//! stream and its `STDIN` stream; the application answers with a `STDOUT` stream and
//! `END_REQUEST`. With `FCGI_KEEP_CONN` the connection then carries the next request;
//! without it the application closes the connection (FastCGI 1.0 §3.5, §5.1).
//!
//! ```text
//!          BEGIN_REQUEST(id, RESPONDER)     PARAMS(id, "")        STDIN(id, "")
//!   ┌─► Idle ─────────────────────► Params ─────────────► Stdin ─────────────► Running
//!   │    │ BEGIN_REQUEST(other role):                          poll_event() says  │
//!   │    │ END_REQUEST(UNKNOWN_ROLE)                           Request; the shell │
//!   │    ▼                                                     answers or parks it│
//!   └── keep_conn ◄─── respond(cgi): STDOUT… STDOUT("") END_REQUEST ◄─────────────┘
//!                            └── no keep_conn ──► Closing: write out, then close
//! ```
//!
//! In every state:
//!
//! * `GET_VALUES` → `GET_VALUES_RESULT` with those of `FCGI_MAX_CONNS`, `FCGI_MAX_REQS`
//!   (both the connection limit: one request per connection) and `FCGI_MPXS_CONNS` (`0`)
//!   that were asked for (§4.1);
//! * a record of a type FastCGI 1.0 does not define, or a management record only an
//!   application sends → `UNKNOWN_TYPE` (§4.2);
//! * `BEGIN_REQUEST` for another id while a request is open → `END_REQUEST(CANT_MPX_CONN)`
//!   (§5.5); records for ids that are not the open request's are ignored (§3.3);
//! * `ABORT_REQUEST` for the open request → `END_REQUEST` (§5.4); a Running request is
//!   first reported as [`ConnEvent::Aborted`] so the shell forgets its parked poll.
//!
//! What ends the connection ([`ConnEvent::Failed`], then [`Conn::should_close`]): a record
//! the codec refuses, a `BEGIN_REQUEST` with id 0 or with the open request's id, a stream
//! record of the open request out of order (`STDIN` before `PARAMS` ended, anything after
//! `STDIN` ended), a record only an application sends (`STDOUT`, `STDERR`, `END_REQUEST`)
//! , name-value pairs that do not decode, or `PARAMS` over the limit.
//! Each means weir and this service disagree about the protocol, and the one safe move is
//! to drop the connection (weir answers its client 502) and go on serving the others.
//!
//! Records are decoded lazily, one [`Conn::poll_event`] at a time, and the shell deals with
//! each request (answers it or parks it) before asking for the next event. So an
//! `ABORT_REQUEST` that arrived in the same read as the end of `STDIN` finds the request as
//! the shell left it: answered (the abort is then for no open request, and ignored) or
//! parked (the abort ends it).
//!
//! Limits: the decoder holds one record at most; `PARAMS` at most `params_max` bytes;
//! `STDIN` beyond `stdin_max` is dropped and flagged ([`Request::stdin_overflow`], which the
//! HTTP layer answers 413); and [`Conn::receive_room`] is 0 while more than [`OUT_PAUSE`]
//! bytes wait to be written, so a peer that floods `GET_VALUES` and never reads is not read
//! either.

use core::fmt;

use bytes::{Buf, Bytes, BytesMut};
use weir_core::fcgi::{
    self, decode_params, encode, encode_params, encode_stream, Decoder, FcgiError, ProtocolStatus,
    Record, Role, StreamKind, NULL_REQUEST_ID, RECORD_LEN_MAX,
};

/// Output waiting to be written past which the connection is not read.
pub const OUT_PAUSE: usize = 64 * 1024;

/// The application status in `END_REQUEST` for an aborted request.
const ABORTED_STATUS: u32 = 1;

/// A whole request, as the shell gets it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    /// The CGI meta-variables, in the order sent.
    pub params: Vec<(Bytes, Bytes)>,
    /// The body (its first `stdin_max` bytes).
    pub stdin: Bytes,
    /// The body was longer than `stdin_max`; the rest was dropped.
    pub stdin_overflow: bool,
}

impl Request {
    /// The value of the first meta-variable called `name`.
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&[u8]> {
        self.params
            .iter()
            .find(|(n, _)| n.as_ref() == name.as_bytes())
            .map(|(_, v)| v.as_ref())
    }
}

/// What [`Conn::poll_event`] reports.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConnEvent {
    /// A request is whole: answer it with [`Conn::respond`], now or later.
    Request(Request),
    /// The client aborted the Running request; it is answered, and nothing may be sent for
    /// it any more.
    Aborted,
    /// The peer broke the protocol: close the connection ([`Conn::should_close`] says so).
    Failed(Violation),
}

/// How the peer broke the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Violation {
    /// Bytes that are not FastCGI records, or name-value pairs that do not decode.
    Codec(FcgiError),
    /// Records that make no sense in this order, or a `PARAMS` stream over the limit.
    Protocol(&'static str),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Codec(e) => e.fmt(f),
            Violation::Protocol(why) => f.write_str(why),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum State {
    Idle,
    Params {
        id: u16,
        keep: bool,
        params: BytesMut,
    },
    Stdin {
        id: u16,
        keep: bool,
        params: Vec<(Bytes, Bytes)>,
        stdin: BytesMut,
        overflow: bool,
    },
    Running {
        id: u16,
        keep: bool,
    },
    Closing,
    Failed,
}

impl State {
    /// The id of the open request, if any.
    fn open(&self) -> Option<u16> {
        match self {
            State::Params { id, .. } | State::Stdin { id, .. } | State::Running { id, .. } => {
                Some(*id)
            }
            State::Idle | State::Closing | State::Failed => None,
        }
    }
}

/// One connection (see the module documentation). Plain data.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Conn {
    decoder: Decoder,
    state: State,
    out: BytesMut,
    /// What `FCGI_MAX_CONNS` and `FCGI_MAX_REQS` say.
    conns_max: usize,
    params_max: usize,
    stdin_max: usize,
}

impl Conn {
    /// A new connection of a service that takes at most `conns_max` connections, with
    /// `PARAMS` of at most `params_max` bytes and bodies of at most `stdin_max`.
    #[must_use]
    pub fn new(conns_max: usize, params_max: usize, stdin_max: usize) -> Conn {
        Conn {
            decoder: Decoder::new(RECORD_LEN_MAX),
            state: State::Idle,
            out: BytesMut::new(),
            conns_max,
            params_max,
            stdin_max,
        }
    }

    /// How many bytes the shell may read and pass to [`Conn::receive`] now (0: stop
    /// reading until output drains or events are polled).
    #[must_use]
    pub fn receive_room(&self) -> usize {
        match self.state {
            State::Closing | State::Failed => 0,
            _ if self.out.len() > OUT_PAUSE => 0,
            _ => self.decoder.room(),
        }
    }

    /// Bytes from the peer, cut anywhere (at most [`Conn::receive_room`]). Nothing happens
    /// until [`Conn::poll_event`] is called.
    pub fn receive(&mut self, data: &[u8]) {
        debug_assert!(data.len() <= self.receive_room(), "read past receive_room");
        self.decoder.push(data);
    }

    /// The next event, decoding as many records as it takes; `None` when the bytes
    /// received so far hold no more. Drain it to `None` after every `receive` and
    /// `respond`.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ConnEvent> {
        loop {
            if matches!(self.state, State::Closing | State::Failed) {
                return None;
            }
            let record = match self.decoder.next_record() {
                Ok(Some(record)) => record,
                Ok(None) => return None,
                Err(e) => return Some(self.fail(Violation::Codec(e))),
            };
            if let Some(event) = self.handle_record(record) {
                return Some(event);
            }
        }
    }

    /// Answers the Running request with this CGI output and ends it.
    ///
    /// # Panics
    ///
    /// If no request is Running (it was never reported, or was answered or aborted).
    pub fn respond(&mut self, cgi: &[u8]) {
        let State::Running { id, keep } = self.state else {
            panic!("respond() with no request running ({:?})", self.state);
        };
        encode_stream(StreamKind::Stdout, id, cgi, &mut self.out);
        self.end_request(id, 0, ProtocolStatus::RequestComplete);
        self.state = if keep { State::Idle } else { State::Closing };
    }

    /// Whether a request was reported and is not answered yet.
    #[must_use]
    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    /// Bytes to write to the peer.
    #[must_use]
    pub fn pending_transmit(&self) -> &[u8] {
        &self.out
    }

    /// Notes that the first `n` pending bytes were written.
    pub fn advance_transmit(&mut self, n: usize) {
        self.out.advance(n);
    }

    /// Whether the shell should close the connection now: the peer broke the protocol, or
    /// the last request did not ask to keep it and its answer is written.
    #[must_use]
    pub fn should_close(&self) -> bool {
        match self.state {
            State::Failed => true,
            State::Closing => self.out.is_empty(),
            _ => false,
        }
    }

    fn handle_record(&mut self, record: Record) -> Option<ConnEvent> {
        let open = self.state.open();
        match record {
            Record::BeginRequest {
                id,
                role,
                keep_conn,
            } => {
                if id == NULL_REQUEST_ID {
                    return Some(self.fail(Violation::Protocol("BEGIN_REQUEST with id 0")));
                }
                match open {
                    Some(o) if o == id => Some(self.fail(Violation::Protocol(
                        "BEGIN_REQUEST for the request already open",
                    ))),
                    Some(_) => {
                        self.end_request(id, 0, ProtocolStatus::CantMpxConn);
                        None
                    }
                    None if role != Role::Responder => {
                        self.end_request(id, 0, ProtocolStatus::UnknownRole);
                        if !keep_conn {
                            self.state = State::Closing;
                        }
                        None
                    }
                    None => {
                        self.state = State::Params {
                            id,
                            keep: keep_conn,
                            params: BytesMut::new(),
                        };
                        None
                    }
                }
            }
            Record::AbortRequest { id } if open == Some(id) => {
                let running = self.is_running();
                let keep = match self.state {
                    State::Params { keep, .. }
                    | State::Stdin { keep, .. }
                    | State::Running { keep, .. } => keep,
                    _ => unreachable!("an open request is in one of these states"),
                };
                self.end_request(id, ABORTED_STATUS, ProtocolStatus::RequestComplete);
                self.state = if keep { State::Idle } else { State::Closing };
                running.then_some(ConnEvent::Aborted)
            }
            Record::Params { id, data } if open == Some(id) => self.params(data),
            Record::Stdin { id, data } if open == Some(id) => self.stdin(data),
            Record::GetValues { data } => {
                self.get_values(&data);
                None
            }
            Record::Stdout { .. } | Record::Stderr { .. } | Record::EndRequest { .. } => {
                Some(self.fail(Violation::Protocol(
                    "a record only an application sends (STDOUT, STDERR or END_REQUEST)",
                )))
            }
            Record::GetValuesResult { .. } | Record::UnknownType { .. } | Record::Other { .. } => {
                encode(
                    &Record::UnknownType {
                        kind: record.kind(),
                    },
                    &mut self.out,
                );
                None
            }
            // Records of requests that are not open (aborted, refused, or never begun), and
            // DATA, which only a Filter reads.
            _ => None,
        }
    }

    fn params(&mut self, data: Bytes) -> Option<ConnEvent> {
        let State::Params { params, .. } = &mut self.state else {
            return Some(self.fail(Violation::Protocol("PARAMS after the PARAMS stream ended")));
        };
        if !data.is_empty() {
            if params.len() + data.len() > self.params_max {
                return Some(self.fail(Violation::Protocol("PARAMS over the limit")));
            }
            params.extend_from_slice(&data);
            return None;
        }
        let State::Params { id, keep, params } = std::mem::replace(&mut self.state, State::Idle)
        else {
            unreachable!("matched just above");
        };
        match decode_params(&params.freeze()) {
            Ok(params) => {
                self.state = State::Stdin {
                    id,
                    keep,
                    params,
                    stdin: BytesMut::new(),
                    overflow: false,
                };
                None
            }
            Err(e) => Some(self.fail(Violation::Codec(e))),
        }
    }

    fn stdin(&mut self, data: Bytes) -> Option<ConnEvent> {
        let stdin_max = self.stdin_max;
        let State::Stdin {
            stdin, overflow, ..
        } = &mut self.state
        else {
            return Some(self.fail(Violation::Protocol(
                "STDIN before PARAMS ended or after STDIN ended",
            )));
        };
        if !data.is_empty() {
            let take = data.len().min(stdin_max - stdin.len());
            stdin.extend_from_slice(&data[..take]);
            *overflow |= take < data.len();
            return None;
        }
        let State::Stdin {
            id,
            keep,
            params,
            stdin,
            overflow,
        } = std::mem::replace(&mut self.state, State::Idle)
        else {
            unreachable!("matched just above");
        };
        self.state = State::Running { id, keep };
        Some(ConnEvent::Request(Request {
            params,
            stdin: stdin.freeze(),
            stdin_overflow: overflow,
        }))
    }

    fn get_values(&mut self, data: &Bytes) {
        let Ok(asked) = decode_params(data) else {
            // A garbled question gets an empty answer rather than a closed connection:
            // management records are not part of any request.
            encode(
                &Record::GetValuesResult { data: Bytes::new() },
                &mut self.out,
            );
            return;
        };
        let conns = self.conns_max.to_string();
        let known: [(&[u8], &[u8]); 3] = [
            (fcgi::MAX_CONNS, conns.as_bytes()),
            (fcgi::MAX_REQS, conns.as_bytes()),
            (fcgi::MPXS_CONNS, b"0"),
        ];
        // Each known variable once, in our order, however often it was asked for: the
        // answer always fits one record.
        let answer = known
            .into_iter()
            .filter(|(name, _)| asked.iter().any(|(n, _)| n.as_ref() == *name));
        let mut data = BytesMut::new();
        encode_params(answer, &mut data);
        encode(
            &Record::GetValuesResult {
                data: data.freeze(),
            },
            &mut self.out,
        );
    }

    fn end_request(&mut self, id: u16, app_status: u32, protocol_status: ProtocolStatus) {
        encode(
            &Record::EndRequest {
                id,
                app_status,
                protocol_status,
            },
            &mut self.out,
        );
    }

    fn fail(&mut self, why: Violation) -> ConnEvent {
        self.state = State::Failed;
        ConnEvent::Failed(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::fcgi::encode_stream_part;

    const PARAMS_MAX: usize = 1024;
    const STDIN_MAX: usize = 16;

    fn conn() -> Conn {
        Conn::new(100, PARAMS_MAX, STDIN_MAX)
    }

    fn begin(id: u16, keep_conn: bool, out: &mut BytesMut) {
        let role = Role::Responder;
        encode(
            &Record::BeginRequest {
                id,
                role,
                keep_conn,
            },
            out,
        );
    }

    /// A whole request: BEGIN_REQUEST, PARAMS, STDIN.
    fn request(id: u16, keep: bool, params: &[(&str, &str)], body: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        begin(id, keep, &mut out);
        let mut p = BytesMut::new();
        encode_params(
            params.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            &mut p,
        );
        encode_stream(StreamKind::Params, id, &p, &mut out);
        encode_stream(StreamKind::Stdin, id, body, &mut out);
        out
    }

    fn records(bytes: &[u8]) -> Vec<Record> {
        let mut d = Decoder::new(RECORD_LEN_MAX);
        d.push(bytes);
        std::iter::from_fn(|| d.next_record().unwrap()).collect()
    }

    /// Everything the connection wrote since the last call.
    fn written(c: &mut Conn) -> Vec<Record> {
        let out = records(c.pending_transmit());
        let n = c.pending_transmit().len();
        c.advance_transmit(n);
        out
    }

    fn events(c: &mut Conn) -> Vec<ConnEvent> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    fn end(id: u16, app_status: u32, protocol_status: ProtocolStatus) -> Record {
        Record::EndRequest {
            id,
            app_status,
            protocol_status,
        }
    }

    fn stdout(id: u16, data: &'static [u8]) -> Record {
        Record::Stdout {
            id,
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn a_request_cut_anywhere_is_reported_whole() {
        let bytes = request(1, false, &[("REQUEST_METHOD", "POST")], b"name=al");
        let mut c = conn();
        let mut got = Vec::new();
        for b in bytes.chunks(1) {
            c.receive(b);
            got.extend(events(&mut c));
        }
        let [ConnEvent::Request(r)] = &got[..] else {
            panic!("{got:?}")
        };
        assert_eq!(r.param("REQUEST_METHOD"), Some(&b"POST"[..]));
        assert_eq!(r.param("NOPE"), None);
        assert_eq!((&r.stdin[..], r.stdin_overflow), (&b"name=al"[..], false));
        assert!(c.is_running() && !c.should_close());
    }

    #[test]
    fn without_keep_conn_the_answer_ends_the_connection() {
        let mut c = conn();
        c.receive(&request(7, false, &[], b""));
        assert!(matches!(&events(&mut c)[..], [ConnEvent::Request(_)]));
        c.respond(b"Status: 200 OK\r\n\r\nhi");
        assert!(!c.should_close(), "not before the answer is written");
        assert_eq!(c.receive_room(), 0, "nothing more is read");
        assert_eq!(
            written(&mut c),
            [
                stdout(7, b"Status: 200 OK\r\n\r\nhi"),
                stdout(7, b""),
                end(7, 0, ProtocolStatus::RequestComplete)
            ]
        );
        assert!(c.should_close());
    }

    #[test]
    fn keep_conn_carries_request_after_request() {
        let mut c = conn();
        for id in [1, 2, 1] {
            c.receive(&request(id, true, &[("N", "v")], b"x"));
            assert!(matches!(&events(&mut c)[..], [ConnEvent::Request(_)]));
            c.respond(b"ok");
            assert_eq!(
                written(&mut c),
                [
                    stdout(id, b"ok"),
                    stdout(id, b""),
                    end(id, 0, ProtocolStatus::RequestComplete)
                ]
            );
            assert!(!c.should_close());
        }
    }

    #[test]
    fn get_values_is_answered_in_any_state() {
        let mut c = conn();
        let mut q = BytesMut::new();
        encode_params(
            [
                (fcgi::MPXS_CONNS, &b""[..]),
                (fcgi::MAX_CONNS, &b""[..]),
                (fcgi::MPXS_CONNS, &b""[..]),
                (&b"FCGI_OTHER"[..], &b""[..]),
                (fcgi::MAX_REQS, &b""[..]),
                (fcgi::MPXS_CONNS, &b""[..]),
            ],
            &mut q,
        );
        let mut bytes = BytesMut::new();
        encode(
            &Record::GetValues {
                data: q.clone().freeze(),
            },
            &mut bytes,
        );
        c.receive(&bytes);
        assert_eq!(events(&mut c), []);
        let [Record::GetValuesResult { data }] = &written(&mut c)[..] else {
            panic!()
        };
        let got = decode_params(data).unwrap();
        let want: Vec<(Bytes, Bytes)> = [
            ("FCGI_MAX_CONNS", "100"),
            ("FCGI_MAX_REQS", "100"),
            ("FCGI_MPXS_CONNS", "0"),
        ]
        .iter()
        .map(|(n, v)| {
            (
                Bytes::from_static(n.as_bytes()),
                Bytes::from_static(v.as_bytes()),
            )
        })
        .collect();
        assert_eq!(got, want);
        // While a request runs, too.
        c.receive(&request(1, true, &[], b""));
        assert!(matches!(&events(&mut c)[..], [ConnEvent::Request(_)]));
        c.receive(&bytes);
        assert_eq!(events(&mut c), []);
        assert!(matches!(
            &written(&mut c)[..],
            [Record::GetValuesResult { .. }]
        ));
        assert!(c.is_running());
    }

    #[test]
    fn unknown_types_are_answered_unknown_type() {
        let mut c = conn();
        let mut bytes = BytesMut::new();
        let data = Bytes::from_static(b"??");
        encode(
            &Record::Other {
                kind: 42,
                id: 0,
                data: data.clone(),
            },
            &mut bytes,
        );
        encode(
            &Record::Other {
                kind: 200,
                id: 3,
                data,
            },
            &mut bytes,
        );
        encode(&Record::GetValuesResult { data: Bytes::new() }, &mut bytes);
        c.receive(&bytes);
        assert_eq!(events(&mut c), []);
        assert_eq!(
            written(&mut c),
            [
                Record::UnknownType { kind: 42 },
                Record::UnknownType { kind: 200 },
                Record::UnknownType { kind: 10 }
            ]
        );
        assert!(!c.should_close());
    }

    #[test]
    fn a_second_request_at_once_is_refused_cant_mpx_conn() {
        let mut c = conn();
        c.receive(&request(1, true, &[], b""));
        assert!(matches!(&events(&mut c)[..], [ConnEvent::Request(_)]));
        // Request 2 begins and sends its streams while 1 is parked: refused, its records
        // ignored, and request 1 goes on.
        c.receive(&request(2, true, &[("X", "y")], b"body"));
        assert_eq!(events(&mut c), []);
        assert_eq!(written(&mut c), [end(2, 0, ProtocolStatus::CantMpxConn)]);
        c.respond(b"one");
        assert_eq!(
            written(&mut c).last(),
            Some(&end(1, 0, ProtocolStatus::RequestComplete))
        );
    }

    #[test]
    fn other_roles_are_refused_unknown_role() {
        let mut c = conn();
        let mut bytes = BytesMut::new();
        let role = Role::Authorizer;
        encode(
            &Record::BeginRequest {
                id: 4,
                role,
                keep_conn: true,
            },
            &mut bytes,
        );
        encode_stream(StreamKind::Params, 4, b"", &mut bytes);
        c.receive(&bytes);
        assert_eq!(events(&mut c), []);
        assert_eq!(written(&mut c), [end(4, 0, ProtocolStatus::UnknownRole)]);
        assert!(!c.should_close());
        let mut bytes = BytesMut::new();
        encode(
            &Record::BeginRequest {
                id: 5,
                role,
                keep_conn: false,
            },
            &mut bytes,
        );
        c.receive(&bytes);
        assert_eq!(events(&mut c), []);
        assert_eq!(written(&mut c), [end(5, 0, ProtocolStatus::UnknownRole)]);
        assert!(c.should_close());
    }

    #[test]
    fn an_abort_of_a_parked_request_is_reported_and_answered() {
        let mut c = conn();
        let mut bytes = request(3, true, &[], b"");
        encode(&Record::AbortRequest { id: 3 }, &mut bytes);
        c.receive(&bytes);
        // The request is reported first; the shell parks it; then the abort.
        assert!(matches!(c.poll_event(), Some(ConnEvent::Request(_))));
        assert_eq!(c.poll_event(), Some(ConnEvent::Aborted));
        assert_eq!(c.poll_event(), None);
        assert!(!c.is_running());
        assert_eq!(
            written(&mut c),
            [end(3, ABORTED_STATUS, ProtocolStatus::RequestComplete)]
        );
        // The connection is kept, so it takes the next request.
        c.receive(&request(4, false, &[], b""));
        assert!(matches!(&events(&mut c)[..], [ConnEvent::Request(_)]));
    }

    #[test]
    fn an_abort_after_the_answer_is_ignored() {
        let mut c = conn();
        let mut bytes = request(3, true, &[], b"");
        encode(&Record::AbortRequest { id: 3 }, &mut bytes);
        c.receive(&bytes);
        assert!(matches!(c.poll_event(), Some(ConnEvent::Request(_))));
        c.respond(b"at once");
        assert_eq!(c.poll_event(), None);
        assert_eq!(
            written(&mut c).len(),
            3,
            "STDOUT, its end, END_REQUEST: no second end"
        );
    }

    #[test]
    fn an_abort_before_the_body_ends_reports_nothing() {
        let mut c = conn();
        let mut bytes = BytesMut::new();
        begin(9, false, &mut bytes);
        encode_stream(StreamKind::Params, 9, b"", &mut bytes);
        encode_stream_part(StreamKind::Stdin, 9, b"half", &mut bytes);
        encode(&Record::AbortRequest { id: 9 }, &mut bytes);
        c.receive(&bytes);
        assert_eq!(events(&mut c), []);
        assert_eq!(
            written(&mut c),
            [end(9, ABORTED_STATUS, ProtocolStatus::RequestComplete)]
        );
        assert!(c.should_close());
    }

    #[test]
    fn a_long_body_is_cut_and_flagged() {
        let mut c = conn();
        c.receive(&request(1, false, &[], &[b'x'; STDIN_MAX + 1]));
        let [ConnEvent::Request(r)] = &events(&mut c)[..] else {
            panic!()
        };
        assert_eq!((r.stdin.len(), r.stdin_overflow), (STDIN_MAX, true));
        let mut c = conn();
        c.receive(&request(1, false, &[], &[b'x'; STDIN_MAX]));
        let [ConnEvent::Request(r)] = &events(&mut c)[..] else {
            panic!()
        };
        assert_eq!((r.stdin.len(), r.stdin_overflow), (STDIN_MAX, false));
    }

    /// Each of these breaks the protocol: the connection fails once and reads no more.
    #[test]
    fn protocol_violations_fail_the_connection() {
        let big = "v".repeat(PARAMS_MAX);
        let cases: Vec<(&str, BytesMut)> = vec![
            (
                "bad version",
                BytesMut::from(&b"\x02\x01\x00\x01\x00\x08\x00\x00"[..]),
            ),
            ("begin with id 0", {
                let mut b = BytesMut::new();
                begin(0, false, &mut b);
                b
            }),
            ("begin twice", {
                let mut b = BytesMut::new();
                begin(1, false, &mut b);
                begin(1, false, &mut b);
                b
            }),
            ("stdin before params end", {
                let mut b = BytesMut::new();
                begin(1, false, &mut b);
                encode_stream(StreamKind::Stdin, 1, b"", &mut b);
                b
            }),
            ("params after params end", {
                let mut b = BytesMut::new();
                begin(1, false, &mut b);
                encode_stream(StreamKind::Params, 1, b"", &mut b);
                encode_stream(StreamKind::Params, 1, b"", &mut b);
                b
            }),
            ("stdin after stdin end", {
                let mut b = request(1, false, &[], b"");
                encode_stream(StreamKind::Stdin, 1, b"", &mut b);
                b
            }),
            ("params cut in a pair", {
                let mut b = BytesMut::new();
                begin(1, false, &mut b);
                encode_stream(StreamKind::Params, 1, b"\x05\x01abc", &mut b);
                b
            }),
            (
                "params over the limit",
                request(1, false, &[("BIG", &big)], b""),
            ),
            ("stdout from the client", {
                let mut b = BytesMut::new();
                encode_stream(StreamKind::Stdout, 1, b"no", &mut b);
                b
            }),
            ("end request from the client", {
                let mut b = BytesMut::new();
                encode(&end(1, 0, ProtocolStatus::RequestComplete), &mut b);
                b
            }),
        ];
        for (what, mut bytes) in cases {
            let mut c = conn();
            // Anything after the violation is never looked at.
            bytes.extend_from_slice(&request(5, false, &[], b""));
            c.receive(&bytes);
            let got = events(&mut c);
            assert!(
                matches!(&got[..], [.., ConnEvent::Failed(_)]),
                "{what}: {got:?}"
            );
            let requests = got
                .iter()
                .filter(|e| matches!(e, ConnEvent::Request(_)))
                .count();
            let before = usize::from(what == "stdin after stdin end");
            assert_eq!(requests, before, "{what}: {got:?}");
            assert!(c.should_close(), "{what}");
            assert_eq!(c.receive_room(), 0, "{what}");
            assert_eq!(c.poll_event(), None, "{what}");
        }
    }

    #[test]
    fn a_peer_that_does_not_read_is_not_read() {
        let mut c = conn();
        let mut bytes = BytesMut::new();
        let mut q = BytesMut::new();
        encode_params([(fcgi::MAX_CONNS, &b""[..])], &mut q);
        encode(&Record::GetValues { data: q.freeze() }, &mut bytes);
        let mut rounds = 0;
        while c.receive_room() > 0 {
            assert!(c.receive_room() >= bytes.len(), "room for a whole record");
            c.receive(&bytes);
            assert_eq!(events(&mut c), []);
            rounds += 1;
            assert!(rounds < 100_000, "never paused");
        }
        assert!(c.pending_transmit().len() > OUT_PAUSE);
        let n = c.pending_transmit().len();
        c.advance_transmit(n);
        assert!(c.receive_room() > 0, "reads resume once the output drains");
    }

    #[test]
    #[should_panic(expected = "no request running")]
    fn responding_without_a_request_is_a_bug() {
        conn().respond(b"x");
    }
}
