//! HTTP/1.1 (RFC 9112) for the server side, as a sans-IO state machine.
//!
//! `Conn` takes bytes in and gives events out; the application answers with `send_*` calls
//! and the connection queues the bytes to transmit. It owns no socket and no clock.
//!
//! One file per concern (h11's layout): `conn` holds every transition and the timers;
//! `parse` finds and judges request heads (framing decided in one function, RFC 9112 §6.3);
//! `chunked` decodes chunked request bodies; `write` serialises responses; `head` and `error`
//! are the values they exchange. `parse` and `chunked` are public so that fuzz targets can
//! reach them directly.

pub mod chunked;
pub mod conn;
pub mod error;
pub mod head;
pub mod parse;
pub mod write;

#[cfg(test)]
mod tests;

pub use conn::{Conn, ConnState, ConnTimer, Event};
pub use error::{ProtocolError, UsageError};
pub use head::{
    reason_phrase, BodyKind, Header, Headers, Method, RequestHead, ResponseBody, ResponseHead,
    Version,
};
