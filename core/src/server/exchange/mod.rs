//! Gateway exchanges: the part of a CGI script's or a FastCGI service's work that is
//! about its stream alone, as pure sub-machines (DESIGN.md §7, "Gateways are
//! sub-machines").
//!
//! # Theory of operation
//!
//! An exchange turns request-body events into bytes for its stream, and the stream's bytes
//! into response events. It knows nothing of connections, configurations, the farm or the
//! pools: `Server` (`super::gateway`, `super::fastcgi`) owns it in one token → owner map,
//! feeds it, and asks it what to do next, as quinn-proto's connection is driven:
//!
//! ```text
//!   Server ── body(Some(bytes) | None) ──────────────►┐
//!          ── handle(StreamEvent) ── progress? ──────►│ exchange (CgiExchange | FcgiExchange)
//!          ◄─ poll_op(room) ── Write · ShutdownWrite · Read(channel)   → stream effects
//!          ◄─ poll_event() ── Output · OutputEnd · Log · Broken · Finished
//! ```
//!
//! - `handle` takes what became of the stream (`StreamEvent`, the stream half of
//!   `Input`) and says whether the upstream made progress (the server then restarts the
//!   `gateway` deadline).
//! - `poll_op(room)` names the next stream operation, at most one outstanding write and one
//!   outstanding read per channel; `room` says whether the client can take more response
//!   bytes (a slow client slows the upstream). The server turns each into an `Effect` with
//!   the exchange's `StreamId`.
//! - `poll_event` says what the server must act on, in order: response bytes for the
//!   response parser (`Output`), the response's end (`OutputEnd`), error-log lines (`Log`,
//!   without the gateway's label), a broken exchange (`Broken`: the stream ended or spoke
//!   nonsense before the response ended) and the end of the exchange (`Finished`: the
//!   stream can be closed, or for a kept-alive FastCGI stream put back in its pool).
//!
//! Opening the stream (`Spawn`, `Connect`), killing a process and closing a stream are the
//! server's: they depend on the farm, the pools and the request, not on the bytes.

pub(super) mod cgi;
pub(super) mod fcgi;
pub(super) mod parts;

use bytes::Bytes;

use super::{Channel, Effect, ExitStatus, Input, IoError};
use crate::ids::StreamId;

pub(super) use cgi::CgiExchange;
pub(super) use fcgi::FcgiExchange;

/// Bytes asked of an upstream at a time.
pub const READ_CHUNK: usize = 64 * 1024;

/// What became of an exchange's stream: the stream half of `Input`, without the id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum StreamEvent {
    /// The outstanding write took its first `n` bytes.
    Written(u64),
    /// The writing side broke (a script closed its standard input).
    WriteClosed,
    /// Bytes on a channel.
    Received(Channel, Bytes),
    /// A channel ended.
    Eof(Channel),
    /// The stream failed (a socket).
    Failed(IoError),
    /// The process ended (a script).
    Exited(ExitStatus),
}

impl StreamEvent {
    /// The stream an input is about, and what it says; `None` for other inputs.
    pub(super) fn from_input(input: Input) -> Option<(StreamId, StreamEvent)> {
        Some(match input {
            Input::StreamWritten { stream, n } => (stream, StreamEvent::Written(n)),
            Input::StreamWriteClosed { stream } => (stream, StreamEvent::WriteClosed),
            Input::StreamReceived {
                stream,
                channel,
                data,
            } => (stream, StreamEvent::Received(channel, data)),
            Input::StreamEof { stream, channel } => (stream, StreamEvent::Eof(channel)),
            Input::StreamFailed { stream, error } => (stream, StreamEvent::Failed(error)),
            Input::Exited { stream, status } => (stream, StreamEvent::Exited(status)),
            _ => return None,
        })
    }
}

/// A stream operation an exchange asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum StreamOp {
    /// Write these bytes (answer: `Written` or `WriteClosed`/`Failed`).
    Write(Bytes),
    /// Close the writing side.
    ShutdownWrite,
    /// Read from a channel (answer: `Received`, `Eof` or `Failed`).
    Read(Channel),
}

impl StreamOp {
    /// The effect that carries the operation out on `stream`.
    pub(super) fn effect(self, stream: StreamId) -> Effect {
        match self {
            StreamOp::Write(data) => Effect::StreamWrite { stream, data },
            StreamOp::ShutdownWrite => Effect::StreamShutdownWrite { stream },
            StreamOp::Read(channel) => Effect::StreamRead {
                stream,
                channel,
                max: READ_CHUNK,
            },
        }
    }
}

/// What an exchange tells the server, in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum ExchangeEvent {
    /// Response bytes (header section, then body), in order.
    Output(Bytes),
    /// The response's bytes have all come.
    OutputEnd,
    /// A line for the error log (the server puts the gateway's label before it).
    Log(String),
    /// The exchange cannot go on: its stream ended, failed or spoke nonsense before the
    /// response ended (why, for the error log).
    Broken(String),
    /// The exchange is over: the stream can be closed, or put back in its pool when
    /// `reusable`.
    Finished {
        /// The stream is clean and kept alive: another exchange may use it.
        reusable: bool,
    },
}

/// The two kinds of exchange, behind one interface.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Exchange {
    /// A CGI script's pipes.
    Cgi(CgiExchange),
    /// A FastCGI service's connection.
    Fcgi(FcgiExchange),
}

impl Exchange {
    /// Applies what became of the stream; true when the upstream made progress.
    pub(super) fn handle(&mut self, event: StreamEvent) -> bool {
        match self {
            Exchange::Cgi(x) => x.handle(event),
            Exchange::Fcgi(x) => x.handle(event),
        }
    }

    /// Request-body bytes, or with `None` its end.
    pub(super) fn body(&mut self, data: Option<Bytes>) {
        match self {
            Exchange::Cgi(x) => x.body(data),
            Exchange::Fcgi(x) => x.body(data),
        }
    }

    /// The next stream operation; `room`: the client can take more response bytes.
    pub(super) fn poll_op(&mut self, room: bool) -> Option<StreamOp> {
        match self {
            Exchange::Cgi(x) => x.poll_op(room),
            Exchange::Fcgi(x) => x.poll_op(room),
        }
    }

    /// The next thing the server must act on.
    pub(super) fn poll_event(&mut self) -> Option<ExchangeEvent> {
        match self {
            Exchange::Cgi(x) => x.poll_event(),
            Exchange::Fcgi(x) => x.poll_event(),
        }
    }

    /// Bytes of request body queued and not yet written.
    pub(super) fn body_queued(&self) -> usize {
        match self {
            Exchange::Cgi(x) => x.body_queued(),
            Exchange::Fcgi(x) => x.body_queued(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::io::{ExitStatus, Input, IoError};

    /// Every input about a stream reaches its exchange as that stream's event, the
    /// writing side's close included; any other input is not a stream's.
    #[test]
    fn stream_inputs_become_their_streams_events() {
        let s = StreamId(crate::ids::Token(7));
        let data = Bytes::from_static(b"x");
        for (input, event) in [
            (
                Input::StreamWritten { stream: s, n: 3 },
                StreamEvent::Written(3),
            ),
            (
                Input::StreamWriteClosed { stream: s },
                StreamEvent::WriteClosed,
            ),
            (
                Input::StreamReceived {
                    stream: s,
                    channel: Channel::Errors,
                    data: data.clone(),
                },
                StreamEvent::Received(Channel::Errors, data),
            ),
            (
                Input::StreamEof {
                    stream: s,
                    channel: Channel::Main,
                },
                StreamEvent::Eof(Channel::Main),
            ),
            (
                Input::StreamFailed {
                    stream: s,
                    error: IoError::Reset,
                },
                StreamEvent::Failed(IoError::Reset),
            ),
            (
                Input::Exited {
                    stream: s,
                    status: ExitStatus::Code(2),
                },
                StreamEvent::Exited(ExitStatus::Code(2)),
            ),
        ] {
            assert_eq!(StreamEvent::from_input(input), Some((s, event)));
        }
        assert_eq!(StreamEvent::from_input(Input::Shutdown), None);
    }
}
