//! SKELETON — to be replaced by the implementation (see the helper brief).

use bytes::Bytes;

use crate::chunk::Chunk;
use crate::http1::error::{ProtocolError, UsageError};
use crate::http1::head::{Headers, RequestHead, ResponseHead};
use crate::limits::{Limits, Timeouts};
use crate::time::{Now, Time};

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
    /// The peer broke the protocol; the connection has queued its own answer and is closing.
    Rejected(ProtocolError),
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
    SendingResponse,
    /// Finishing the transmission of a last response before closing.
    Closing,
    /// Transmission done; the write side should be shut down and input is read and discarded
    /// until the peer closes or the linger time runs out.
    Lingering,
    /// Finished: the application should close the socket and forget the connection.
    Closed,
}

/// The HTTP/1.1 server-side connection state machine.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Conn {
    _todo: (),
}

impl Conn {
    /// A fresh connection.
    pub fn new(_limits: &Limits, _timeouts: &Timeouts, _now: Now) -> Conn {
        todo!()
    }
    /// How many bytes the application should read for this connection now (0: don't read).
    pub fn read_budget(&self) -> usize {
        todo!()
    }
    /// Feeds bytes received from the peer.
    pub fn receive(&mut self, _data: &[u8], _now: Now) {
        todo!()
    }
    /// The peer closed its sending side.
    pub fn receive_eof(&mut self, _now: Now) {
        todo!()
    }
    /// The next event, if one is ready.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!()
    }
    /// The application will read the request body: sends `100 Continue` if the client asked.
    pub fn accept_body(&mut self) {
        todo!()
    }
    /// Starts the response to the current request.
    pub fn send_head(&mut self, _head: ResponseHead, _now: Now) -> Result<(), UsageError> {
        todo!()
    }
    /// Queues body bytes of the current response.
    pub fn send_body(&mut self, _chunk: Chunk, _now: Now) -> Result<(), UsageError> {
        todo!()
    }
    /// Ends the current response.
    pub fn send_end(&mut self, _trailers: Option<Headers>, _now: Now) -> Result<(), UsageError> {
        todo!()
    }
    /// Bytes queued for transmission and not yet transmitted.
    pub fn transmit_queued(&self) -> u64 {
        todo!()
    }
    /// The next chunk to transmit.
    pub fn pending_transmit(&self) -> Option<&Chunk> {
        todo!()
    }
    /// `n` bytes of the pending chunk were transmitted.
    pub fn advance_transmit(&mut self, _n: u64, _now: Now) {
        todo!()
    }
    /// The earliest deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        todo!()
    }
    /// Fires expired timers.
    pub fn handle_timeout(&mut self, _now: Now) {
        todo!()
    }
    /// Graceful close.
    pub fn close(&mut self, _now: Now) {
        todo!()
    }
    /// Immediate close.
    pub fn abort(&mut self) {
        todo!()
    }
    /// Where the connection is.
    pub fn state(&self) -> ConnState {
        todo!()
    }
}
