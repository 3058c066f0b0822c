//! A CGI script's exchange: its standard input, output and error, and its exit.
//!
//! # Theory of operation
//!
//! The stream is a process with one writing side (standard input) and two read channels
//! (`Main`: standard output, `Errors`: standard error), each driven like a connection's:
//! one outstanding write (the request body in order, then `ShutdownWrite` once the body
//! has ended), one outstanding read per channel. Standard output is passed on as it comes
//! (`Output`, then `OutputEnd` at its end); it is read only while the client has room, or
//! while the header section is still awaited. Standard error is always read, cut into
//! lines (`Log`). A broken standard input (the script closed it) drops the rest of the
//! body: a script may answer without reading all of it.
//!
//! ```text
//!   running ── stdout Eof ──► OutputEnd
//!      │     ── stderr Eof, Exited ─┐
//!      └───────────── all three ────┴──► Log("exited with status N")? ──► Finished
//! ```
//!
//! The exchange finishes once standard output and standard error have ended and the
//! process has exited, whatever the order; a non-zero exit code is logged then.

use std::collections::VecDeque;

use bytes::Bytes;

use super::parts::{ErrorLines, WriteQueue};
use super::{ExchangeEvent, StreamEvent, StreamOp};
use crate::server::{Channel, ExitStatus};

/// A running script's exchange.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(in crate::server) struct CgiExchange {
    /// Body bytes not yet written to standard input.
    stdin: WriteQueue,
    /// The whole body has been queued (its end came, or there is none).
    stdin_complete: bool,
    /// `ShutdownWrite` was asked for or the pipe broke: body bytes are dropped from now on.
    stdin_closed: bool,
    /// A read is outstanding (standard output, standard error).
    reading: [bool; 2],
    /// The channel has ended (standard output, standard error).
    eof: [bool; 2],
    exited: Option<ExitStatus>,
    stderr: ErrorLines,
    events: VecDeque<ExchangeEvent>,
    finished: bool,
}

impl CgiExchange {
    /// A script's exchange: `spooled` is a body gathered before the start (sent first);
    /// `streams_body` says whether more of it comes as request events.
    pub(in crate::server) fn new(spooled: Option<Bytes>, streams_body: bool) -> CgiExchange {
        let mut stdin = WriteQueue::default();
        if let Some(body) = spooled {
            stdin.push(body);
        }
        CgiExchange {
            stdin,
            stdin_complete: !streams_body,
            stdin_closed: false,
            reading: [false; 2],
            eof: [false; 2],
            exited: None,
            stderr: ErrorLines::default(),
            events: VecDeque::new(),
            finished: false,
        }
    }

    /// See `Exchange::handle`: only standard output counts as progress.
    pub(in crate::server) fn handle(&mut self, event: StreamEvent) -> bool {
        match event {
            StreamEvent::Written(n) => self.stdin.written(n),
            StreamEvent::WriteClosed => {
                self.stdin_closed = true;
                self.stdin.clear();
            }
            StreamEvent::Received(Channel::Errors, data) => {
                self.reading[1] = false;
                for line in self.stderr.feed(&data) {
                    self.events.push_back(ExchangeEvent::Log(line));
                }
            }
            StreamEvent::Eof(Channel::Errors) => {
                self.reading[1] = false;
                self.eof[1] = true;
                if let Some(rest) = self.stderr.rest() {
                    self.events.push_back(ExchangeEvent::Log(rest));
                }
            }
            StreamEvent::Received(Channel::Main, data) => {
                self.reading[0] = false;
                self.events.push_back(ExchangeEvent::Output(data));
                return true;
            }
            StreamEvent::Eof(Channel::Main) => {
                self.reading[0] = false;
                self.eof[0] = true;
                self.events.push_back(ExchangeEvent::OutputEnd);
            }
            StreamEvent::Exited(status) => self.exited = Some(status),
            // A pipe that fails to read is reported as its end.
            StreamEvent::Failed(_) => {}
        }
        false
    }

    /// Request-body bytes for standard input, or with `None` its end.
    pub(in crate::server) fn body(&mut self, data: Option<Bytes>) {
        match data {
            Some(d) if !self.stdin_closed => self.stdin.push(d),
            Some(_) => {}
            None => self.stdin_complete = true,
        }
    }

    /// See `Exchange::poll_op`.
    pub(in crate::server) fn poll_op(&mut self, room: bool) -> Option<StreamOp> {
        if !self.stdin_closed && !self.stdin.writing() {
            if let Some(data) = self.stdin.next_write() {
                return Some(StreamOp::Write(data));
            }
            if self.stdin_complete {
                self.stdin_closed = true;
                return Some(StreamOp::ShutdownWrite);
            }
        }
        if !self.reading[0] && !self.eof[0] && room {
            self.reading[0] = true;
            return Some(StreamOp::Read(Channel::Main));
        }
        if !self.reading[1] && !self.eof[1] {
            self.reading[1] = true;
            return Some(StreamOp::Read(Channel::Errors));
        }
        None
    }

    /// See `Exchange::poll_event`.
    pub(in crate::server) fn poll_event(&mut self) -> Option<ExchangeEvent> {
        if self.events.is_empty()
            && !self.finished
            && self.eof == [true; 2]
            && self.exited.is_some()
        {
            self.finished = true;
            if let Some(ExitStatus::Code(c)) = self.exited.filter(|s| *s != ExitStatus::Code(0)) {
                self.events
                    .push_back(ExchangeEvent::Log(format!("exited with status {c}")));
            }
            self.events
                .push_back(ExchangeEvent::Finished { reusable: false });
        }
        self.events.pop_front()
    }

    /// Bytes of the body queued for standard input and not yet written.
    pub(in crate::server) fn body_queued(&self) -> usize {
        self.stdin.queued()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_ops(x: &mut CgiExchange, room: bool) -> Vec<StreamOp> {
        std::iter::from_fn(|| x.poll_op(room)).collect()
    }

    fn drain_events(x: &mut CgiExchange) -> Vec<ExchangeEvent> {
        std::iter::from_fn(|| x.poll_event()).collect()
    }

    #[test]
    fn body_goes_in_order_then_the_writing_side_closes() {
        let mut x = CgiExchange::new(Some(Bytes::from_static(b"ab")), true);
        x.body(Some(Bytes::from_static(b"cd")));
        let ops = drain_ops(&mut x, true);
        assert_eq!(
            ops,
            [
                StreamOp::Write(Bytes::from_static(b"ab")),
                StreamOp::Read(Channel::Main),
                StreamOp::Read(Channel::Errors),
            ]
        );
        // A short write: the rest is written again before the next chunk.
        x.handle(StreamEvent::Written(1));
        assert_eq!(
            x.poll_op(true),
            Some(StreamOp::Write(Bytes::from_static(b"b")))
        );
        x.handle(StreamEvent::Written(1));
        assert_eq!(
            x.poll_op(true),
            Some(StreamOp::Write(Bytes::from_static(b"cd")))
        );
        x.handle(StreamEvent::Written(2));
        assert_eq!(x.poll_op(true), None, "the body has not ended yet");
        x.body(None);
        assert_eq!(x.poll_op(true), Some(StreamOp::ShutdownWrite));
        assert_eq!(x.poll_op(true), None);
    }

    #[test]
    fn standard_output_waits_for_room_and_counts_as_progress() {
        let mut x = CgiExchange::new(None, false);
        assert_eq!(
            drain_ops(&mut x, false),
            [StreamOp::ShutdownWrite, StreamOp::Read(Channel::Errors)]
        );
        assert_eq!(x.poll_op(true), Some(StreamOp::Read(Channel::Main)));
        assert!(x.handle(StreamEvent::Received(
            Channel::Main,
            Bytes::from_static(b"Status: 200\r\n")
        )));
        assert!(!x.handle(StreamEvent::Received(
            Channel::Errors,
            Bytes::from_static(b"warn")
        )));
        assert_eq!(
            drain_events(&mut x),
            [ExchangeEvent::Output(Bytes::from_static(
                b"Status: 200\r\n"
            ))]
        );
    }

    #[test]
    fn finishes_once_both_channels_ended_and_the_process_exited_in_any_order() {
        let mut x = CgiExchange::new(None, false);
        drain_ops(&mut x, true);
        x.handle(StreamEvent::Exited(ExitStatus::Code(3)));
        x.handle(StreamEvent::Received(
            Channel::Errors,
            Bytes::from_static(b"oops\r\nhalf"),
        ));
        x.handle(StreamEvent::Eof(Channel::Errors));
        assert_eq!(
            drain_events(&mut x),
            [
                ExchangeEvent::Log("oops".into()),
                ExchangeEvent::Log("half".into())
            ],
            "standard output is still open"
        );
        x.handle(StreamEvent::Eof(Channel::Main));
        assert_eq!(
            drain_events(&mut x),
            [
                ExchangeEvent::OutputEnd,
                ExchangeEvent::Log("exited with status 3".into()),
                ExchangeEvent::Finished { reusable: false },
            ]
        );
        assert_eq!(x.poll_event(), None, "finished once");
    }

    #[test]
    fn a_closed_standard_input_drops_the_rest_of_the_body() {
        let mut x = CgiExchange::new(None, true);
        x.body(Some(Bytes::from_static(b"abc")));
        assert_eq!(
            x.poll_op(false),
            Some(StreamOp::Write(Bytes::from_static(b"abc")))
        );
        x.handle(StreamEvent::WriteClosed);
        x.body(Some(Bytes::from_static(b"def")));
        x.body(None);
        assert_eq!(x.body_queued(), 0);
        assert_eq!(x.poll_op(false), Some(StreamOp::Read(Channel::Errors)));
        assert_eq!(x.poll_op(false), None);
    }
}
