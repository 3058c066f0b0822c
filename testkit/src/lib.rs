//! weir's test kit: how every test, the simulator and the models read what weir sends.
//!
//! # Theory of operation
//!
//! weir is checked from outside at four levels — the core's own tests, the stateright
//! models, the simulator and the end-to-end tests against the real binary — and each of
//! them judges the server by the bytes a client receives. They all read those bytes with
//! this crate, so that there is one definition of a correct response, as strict as the
//! strictest of them needs, and a fix or a new rule reaches every level at once:
//!
//! * [`response`]: a strict, incremental HTTP/1.1 response reader (RFC 9112) over a byte
//!   buffer — no I/O, the caller owns the socket or the simulated wire — and a checker of
//!   `multipart/byteranges` bodies;
//! * [`date`]: the HTTP-date formatter and parsers (RFC 9110 §5.6.7).
//!
//! The crate does not depend on weir-core, on purpose: a check that shared the core's
//! code (its writer, its httpdate) would agree with the core's mistakes. It has no
//! dependencies at all, so that it can be the dev-dependency of the core itself.

pub mod date;
pub mod response;
