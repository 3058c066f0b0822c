//! weir-core: every decision the weir web server makes, with no I/O.
//!
//! This crate owns no socket, file, process, thread or clock. It is driven by a caller — the
//! mio shell in production, the simulator and the model checker in tests — through three
//! vocabularies:
//!
//! * `http1::Conn`, one HTTP/1.1 connection: `receive` bytes, `poll_event` for requests,
//!   `send_head`/`send_body`/`send_end` to answer, `pending_transmit`/`advance_transmit` to
//!   move the output, `poll_timeout`/`handle_timeout` for deadlines.
//! * `server::Server`, the whole server: `handle(Input, now)`, then `poll_effect()` until it
//!   returns `None`, then wait for an input or until `poll_timeout()`.
//! * `service::Supervisor`, one service's processes: `handle_spawned`/`handle_exited`/… from
//!   the launcher's reports, then `poll_effect()` for spawns, kills and the availability
//!   published to the workers.
//!
//! # The calling contract
//!
//! 1. After every `handle` or `handle_timeout`, drain `poll_effect()` to `None` and carry out
//!    every effect, in order, before the next input.
//! 2. Report each effect's outcome as an `Input` (streams: one outstanding `Read` and one
//!    outstanding `Send` per connection; tokens name everything else). An effect with a
//!    token may be answered much later and in any order: the shell runs `VerifyPassword`,
//!    a deliberately slow password hash, on threads of its own.
//! 3. Time only moves forward: `Now::mono` never decreases between calls. Calling
//!    `handle_timeout` early is harmless.
//!
//! All state is plain data (`Clone, Eq, Hash`), maps are ordered and ids are counters, so
//! the same inputs always give the same effects: one seed replays a simulation, and the
//! model checker can hold and compare whole servers.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cache;
pub mod cgi;
pub mod chunk;
pub mod config;
pub mod document;
pub mod fcgi;
pub mod http1;
pub mod ids;
pub mod limits;
pub mod path;
pub mod rules;
pub mod server;
pub mod service;
pub mod time;

pub use chunk::Chunk;
pub use config::{Config, ConfigRef};
pub use ids::{ConnId, FileId, ListenerId, StreamId, Token};
pub use limits::{Limits, Timeouts};
pub use time::{Now, Time, UnixTime};
