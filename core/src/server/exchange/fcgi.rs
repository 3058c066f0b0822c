//! A FastCGI exchange: one connection to a service, one request at a time on it.
//!
//! # Theory of operation
//!
//! The stream is a socket to the service. Between requests it is idle (a kept-alive
//! connection in its service's pool); `start` makes it busy with one request, whose
//! records are queued in order: BEGIN_REQUEST (with `FCGI_KEEP_CONN` when the stream may
//! be kept), the parameters, then STDIN (the body gathered first, or streamed as it comes
//! with `body`, and its empty end record). What the service sends is decoded a record at a
//! time as the server polls for events:
//!
//! ```text
//!   idle ── start ──► busy ── STDOUT ─► Output          STDERR ─► Log lines
//!    ▲                  │  ── END_REQUEST ─► Log(rest of stderr)?, OutputEnd,
//!    │                  │                    Finished { reusable }
//!    └── reusable ──────┘  ── end / failure / bad records ─► Broken
//!   idle ── any byte, end or failure ─► Broken (the stream is not usable)
//! ```
//!
//! One request id (1) and no multiplexing: php-cgi and most services refuse it. The stream
//! is reusable after END_REQUEST only if it was asked to be kept, nothing more was received
//! after the end, and nothing is left to write: a half-finished exchange never goes back
//! to a pool. One read is outstanding at a time, also while idle, so that a service that
//! closes a pooled stream is noticed at once.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::parts::{ErrorLines, WriteQueue};
use super::{ExchangeEvent, StreamEvent, StreamOp};
use crate::fcgi::{self, Record, StreamKind};
use crate::server::Channel;

/// The request id of every exchange (one request per stream at a time).
const REQUEST_ID: u16 = 1;
/// Most records buffered from a service before they are parsed (a record is at most
/// 64 KiB of content plus padding, so this holds one whole record and the next header).
const DECODER_BUFFER: usize = 80 * 1024;

/// A stream to a FastCGI service and the request it carries, if any.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(in crate::server) struct FcgiExchange {
    /// A request is under way (between `start` and its END_REQUEST).
    busy: bool,
    /// The service was asked to keep the connection (`FCGI_KEEP_CONN`).
    keep: bool,
    /// The request body still streams in as STDIN records (its end not yet queued).
    stdin_open: bool,
    decoder: fcgi::Decoder,
    /// Encoded records not yet written, in order.
    out: WriteQueue,
    /// A read is outstanding.
    reading: bool,
    stderr: ErrorLines,
    events: VecDeque<ExchangeEvent>,
    /// Told `Broken`: nothing more is decoded.
    broken: bool,
}

impl FcgiExchange {
    /// A new stream, idle until `start`.
    pub(in crate::server) fn new() -> FcgiExchange {
        FcgiExchange {
            busy: false,
            keep: false,
            stdin_open: false,
            decoder: fcgi::Decoder::new(DECODER_BUFFER),
            out: WriteQueue::default(),
            reading: false,
            stderr: ErrorLines::default(),
            events: VecDeque::new(),
            broken: false,
        }
    }

    /// Starts a request: `params` are its meta-variables, `spooled` a body gathered
    /// first, `streams_body` whether more comes through `body`; `keep` asks the service
    /// to keep the connection open after the answer.
    pub(in crate::server) fn start(
        &mut self,
        params: &[(Vec<u8>, Vec<u8>)],
        spooled: Option<Bytes>,
        streams_body: bool,
        keep: bool,
    ) {
        self.busy = true;
        self.keep = keep;
        self.stdin_open = streams_body;
        let mut buf = BytesMut::new();
        fcgi::encode(
            &Record::BeginRequest {
                id: REQUEST_ID,
                role: fcgi::Role::Responder,
                keep_conn: keep,
            },
            &mut buf,
        );
        let mut pairs = BytesMut::new();
        fcgi::encode_params(
            params.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
            &mut pairs,
        );
        fcgi::encode_stream(StreamKind::Params, REQUEST_ID, &pairs, &mut buf);
        if let Some(body) = spooled.filter(|b| !b.is_empty()) {
            fcgi::encode_stream_part(StreamKind::Stdin, REQUEST_ID, &body, &mut buf);
        }
        if !streams_body {
            fcgi::encode_stream(StreamKind::Stdin, REQUEST_ID, &[], &mut buf);
        }
        self.out.push(buf.freeze());
    }

    #[cfg(test)]
    /// True between `start` and the request's end.
    pub(in crate::server) fn busy(&self) -> bool {
        self.busy
    }

    /// See `Exchange::handle`: any bytes for a request under way count as progress.
    pub(in crate::server) fn handle(&mut self, event: StreamEvent) -> bool {
        match event {
            StreamEvent::Written(n) => self.out.written(n),
            StreamEvent::Received(_, data) => {
                self.reading = false;
                if !self.busy {
                    // Nobody asked: an idle stream the service talks on is not usable.
                    self.events.push_back(ExchangeEvent::Log(
                        "unexpected bytes on an idle connection; closing it".into(),
                    ));
                    self.broke("unexpected bytes on an idle connection".into());
                    return false;
                }
                self.decoder.push(&data);
                return true;
            }
            StreamEvent::Eof(_) => {
                self.reading = false;
                self.broke("the service closed the connection".into());
            }
            StreamEvent::Failed(error) => {
                self.reading = false;
                self.broke(format!("the connection failed ({error:?})"));
            }
            StreamEvent::WriteClosed | StreamEvent::Exited(_) => {}
        }
        false
    }

    fn broke(&mut self, why: String) {
        if !self.broken {
            self.broken = true;
            self.events.push_back(ExchangeEvent::Broken(why));
        }
    }

    /// Request-body bytes as STDIN records, or with `None` their end. Nothing when the
    /// whole body went with the request (none, or gathered first).
    pub(in crate::server) fn body(&mut self, data: Option<Bytes>) {
        if !self.stdin_open {
            return;
        }
        let mut buf = BytesMut::new();
        match data {
            // Empty data encodes to nothing (an empty record would end the stream), and
            // the queue takes no empty chunk.
            Some(d) => fcgi::encode_stream_part(StreamKind::Stdin, REQUEST_ID, &d, &mut buf),
            None => {
                self.stdin_open = false;
                fcgi::encode_stream(StreamKind::Stdin, REQUEST_ID, &[], &mut buf);
            }
        }
        self.out.push(buf.freeze());
    }

    /// See `Exchange::poll_op` (an idle stream is always read: `room` is then true).
    pub(in crate::server) fn poll_op(&mut self, room: bool) -> Option<StreamOp> {
        if let Some(data) = self.out.next_write() {
            return Some(StreamOp::Write(data));
        }
        if !self.reading && !self.broken && room {
            self.reading = true;
            return Some(StreamOp::Read(Channel::Main));
        }
        None
    }

    /// See `Exchange::poll_event`: records are decoded one at a time, as events are asked
    /// for, so that nothing is decoded after the server has stopped the exchange.
    pub(in crate::server) fn poll_event(&mut self) -> Option<ExchangeEvent> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            if !self.busy || self.broken {
                return None;
            }
            let record = match self.decoder.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => return None,
                Err(e) => {
                    self.broke(format!("bad records from the service: {e}"));
                    continue;
                }
            };
            match record {
                Record::Stdout { data, .. } if !data.is_empty() => {
                    return Some(ExchangeEvent::Output(data));
                }
                Record::Stderr { data, .. } => {
                    for line in self.stderr.feed(&data) {
                        self.events.push_back(ExchangeEvent::Log(line));
                    }
                }
                Record::EndRequest { .. } => {
                    let reusable = self.keep && self.decoder.buffered() == 0 && self.out.is_idle();
                    self.busy = false;
                    if let Some(rest) = self.stderr.rest() {
                        self.events.push_back(ExchangeEvent::Log(rest));
                    }
                    self.events.push_back(ExchangeEvent::OutputEnd);
                    self.events.push_back(ExchangeEvent::Finished { reusable });
                }
                // An empty STDOUT (its stream's end), management records: nothing to do.
                _ => {}
            }
        }
    }

    /// Bytes of records queued and not yet written.
    pub(in crate::server) fn body_queued(&self) -> usize {
        self.out.queued()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fcgi::{Decoder, ProtocolStatus};

    fn written(x: &mut FcgiExchange) -> Vec<Record> {
        let mut d = Decoder::new(1 << 20);
        while let Some(StreamOp::Write(data)) = x.poll_op(false) {
            x.handle(StreamEvent::Written(data.len() as u64));
            d.push(&data);
        }
        std::iter::from_fn(|| d.next_record().unwrap()).collect()
    }

    fn records(rs: &[Record]) -> Bytes {
        let mut buf = BytesMut::new();
        for r in rs {
            fcgi::encode(r, &mut buf);
        }
        buf.freeze()
    }

    fn end() -> Record {
        Record::EndRequest {
            id: REQUEST_ID,
            app_status: 0,
            protocol_status: ProtocolStatus::RequestComplete,
        }
    }

    fn events(x: &mut FcgiExchange) -> Vec<ExchangeEvent> {
        std::iter::from_fn(|| x.poll_event()).collect()
    }

    #[test]
    fn a_request_is_begin_params_and_stdin_in_order() {
        let mut x = FcgiExchange::new();
        x.start(&[(b"A".to_vec(), b"1".to_vec())], None, true, true);
        x.body(Some(Bytes::from_static(b"xy")));
        x.body(None);
        let rs = written(&mut x);
        let kinds: Vec<u8> = rs.iter().map(Record::kind).collect();
        // BEGIN_REQUEST, PARAMS, empty PARAMS, STDIN, empty STDIN.
        assert_eq!(kinds, [1, 4, 4, 5, 5]);
        assert!(matches!(
            rs[0],
            Record::BeginRequest {
                keep_conn: true,
                ..
            }
        ));
        assert!(rs[4].is_end_of_stream());
    }

    /// The body's records count against the stream's input buffer until written; an
    /// empty piece of body is no record at all.
    #[test]
    fn body_records_are_counted_until_written() {
        let mut x = FcgiExchange::new();
        x.start(&[], None, true, true);
        written(&mut x);
        assert_eq!(x.body_queued(), 0);
        x.body(Some(Bytes::new()));
        assert_eq!(x.body_queued(), 0, "no record for no bytes");
        x.body(Some(Bytes::from_static(b"0123456789")));
        // One STDIN record: an 8-byte header, 10 bytes and 6 of padding.
        assert_eq!(x.body_queued(), 24);
        let Some(StreamOp::Write(data)) = x.poll_op(false) else {
            panic!("a write");
        };
        assert_eq!(data.len(), 24);
        x.handle(StreamEvent::Written(10));
        assert_eq!(x.body_queued(), 14, "a short write leaves the rest counted");
        let Some(StreamOp::Write(rest)) = x.poll_op(false) else {
            panic!("the rest");
        };
        assert_eq!(rest, data.slice(10..));
        x.handle(StreamEvent::Written(14));
        assert_eq!(x.body_queued(), 0);
    }

    #[test]
    fn the_answer_becomes_output_log_lines_and_a_reusable_end() {
        let mut x = FcgiExchange::new();
        x.start(&[], None, false, true);
        written(&mut x);
        assert_eq!(x.poll_op(true), Some(StreamOp::Read(Channel::Main)));
        let answer = records(&[
            StreamKind::Stdout.record(REQUEST_ID, Bytes::from_static(b"Status: 200\r\n\r\nhi")),
            StreamKind::Stderr.record(REQUEST_ID, Bytes::from_static(b"a\nb")),
            StreamKind::Stdout.record(REQUEST_ID, Bytes::new()),
            end(),
        ]);
        assert!(x.handle(StreamEvent::Received(Channel::Main, answer)));
        assert_eq!(
            events(&mut x),
            [
                ExchangeEvent::Output(Bytes::from_static(b"Status: 200\r\n\r\nhi")),
                ExchangeEvent::Log("a".into()),
                ExchangeEvent::Log("b".into()),
                ExchangeEvent::OutputEnd,
                ExchangeEvent::Finished { reusable: true },
            ]
        );
        assert!(!x.busy());
    }

    #[test]
    fn bytes_after_the_end_or_no_keep_make_the_stream_unusable() {
        let mut x = FcgiExchange::new();
        x.start(&[], None, false, false);
        written(&mut x);
        x.handle(StreamEvent::Received(Channel::Main, records(&[end()])));
        assert_eq!(
            events(&mut x).last(),
            Some(&ExchangeEvent::Finished { reusable: false })
        );
        let mut x = FcgiExchange::new();
        x.start(&[], None, false, true);
        written(&mut x);
        x.handle(StreamEvent::Received(
            Channel::Main,
            records(&[end(), end()]),
        ));
        assert_eq!(
            events(&mut x).last(),
            Some(&ExchangeEvent::Finished { reusable: false })
        );
    }

    #[test]
    fn an_end_while_a_write_is_outstanding_leaves_the_stream_unusable() {
        // A service may answer before it has read the whole body (an early error): a write
        // is still in flight on the stream, so it cannot carry the next request.
        let mut x = FcgiExchange::new();
        x.start(&[], None, true, true);
        x.body(Some(Bytes::from_static(b"body")));
        let ops: Vec<StreamOp> = std::iter::from_fn(|| x.poll_op(true)).collect();
        assert!(
            ops.iter().any(|op| matches!(op, StreamOp::Write(_))),
            "{ops:?}"
        );
        x.handle(StreamEvent::Received(
            Channel::Main,
            records(&[StreamKind::Stdout.record(REQUEST_ID, Bytes::new()), end()]),
        ));
        assert_eq!(
            events(&mut x).last(),
            Some(&ExchangeEvent::Finished { reusable: false })
        );
    }

    #[test]
    fn an_end_before_end_request_or_bytes_on_an_idle_stream_break_it() {
        let mut x = FcgiExchange::new();
        x.start(&[], None, false, true);
        written(&mut x);
        x.handle(StreamEvent::Eof(Channel::Main));
        assert_eq!(
            events(&mut x),
            [ExchangeEvent::Broken(
                "the service closed the connection".into()
            )]
        );
        assert_eq!(x.poll_op(true), None, "nothing more is read");

        let mut idle = FcgiExchange::new();
        assert_eq!(idle.poll_op(true), Some(StreamOp::Read(Channel::Main)));
        assert!(!idle.handle(StreamEvent::Received(
            Channel::Main,
            Bytes::from_static(b"x")
        )));
        assert!(matches!(
            events(&mut idle).last(),
            Some(ExchangeEvent::Broken(_))
        ));
    }

    #[test]
    fn bad_records_break_the_exchange_once() {
        let mut x = FcgiExchange::new();
        x.start(&[], None, false, true);
        written(&mut x);
        // Version 9: not FastCGI.
        x.handle(StreamEvent::Received(
            Channel::Main,
            Bytes::from_static(&[9, 6, 0, 1, 0, 0, 0, 0]),
        ));
        let evs = events(&mut x);
        assert_eq!(evs.len(), 1);
        assert_eq!(
            evs,
            [ExchangeEvent::Broken(
                "bad records from the service: FastCGI record of version 9, not 1".into()
            )]
        );
    }
}
