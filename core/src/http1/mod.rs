//! HTTP/1.1 (RFC 9112) for the server side, as a sans-IO state machine.
//!
//! `Conn` takes bytes in and gives events out; the application answers with `send_*` calls
//! and the connection queues the bytes to transmit. It owns no socket and no clock.

pub mod conn;
pub mod error;
pub mod head;

pub use conn::{Conn, ConnState, Event};
pub use error::{ProtocolError, UsageError};
pub use head::{
    reason_phrase, BodyKind, Header, Headers, Method, RequestHead, ResponseBody, ResponseHead,
    Version,
};
