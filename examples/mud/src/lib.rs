//! weir-mud: occwserv's multi-user dungeon as a FastCGI service (DESIGN.md §7.1).
//!
//! One process holds the whole world for every player. weir starts it with a listening
//! Unix socket on fd 0 (the FastCGI convention), `/dev/null` on fd 1 and its error log on
//! fd 2, and hands it every request under `exec /mud/* service=mud`.
//!
//! # Layout
//!
//! ```text
//!   world   the game: rooms, players, events and who saw them        pure
//!   http    a FastCGI request's meta-variables → a world call → CGI   pure
//!   conn    one FastCGI connection, application side, over the core's
//!           record codec (weir_core::fcgi)                            pure
//!   server  the mio loop: sockets, the clock, parked long polls       I/O, one thread
//!   sys     fd 0, the descriptor limit, random bytes                  the only unsafe code
//! ```
//!
//! The pure modules take time as a [`weir_core::Time`] and randomness as bytes, like weir's
//! core; the loop owns the clock and the random source. A long poll waiting for events is
//! an entry in a map, not a thread: the process has one thread however many players wait.
//!
//! # Use
//!
//! [`main_with_listener_on_fd0`] is the whole program (the `weir-mud` binary, and weir's
//! hidden `weir mud`); [`run`] serves on a listener the caller made (tests, embedding).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod conn;
pub mod http;
mod server;
mod sys;
pub mod world;

pub use server::{run, run_with, Settings, ACCEPT_RETRY, CONNECTIONS_MAX, POLL_TIMEOUT};

/// The program: takes the listening socket on fd 0, raises the descriptor limit (every
/// waiting player holds a connection), and serves until a fatal error. Returns the exit
/// status: 2 when fd 0 is not a listening Unix socket, 1 after a fatal error.
#[must_use]
pub fn main_with_listener_on_fd0() -> i32 {
    let listener = match sys::listener_on_fd0() {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "weir-mud: {e}: weir starts the MUD with its FastCGI socket there \
                 (service mud spawn=\"weir-mud\" and exec /mud/* service=mud)"
            );
            return 2;
        }
    };
    let _ = sys::raise_nofile_limit();
    run(listener)
}
