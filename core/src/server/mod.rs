//! SKELETON of the server core (being written).

pub mod io;

use crate::config::ConfigRef;
use crate::time::{Now, Time};
pub use io::{Completion, Effect, FileKind, FileMeta, Input, IoError};

/// The server core.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Server {
    _todo: (),
}

impl Server {
    /// A server with no connections.
    pub fn new(_config: ConfigRef, _now: Now) -> Server {
        todo!()
    }
    /// Reports something that happened.
    pub fn handle(&mut self, _input: Input, _now: Now) {
        todo!()
    }
    /// The next thing to do.
    #[must_use]
    pub fn poll_effect(&mut self) -> Option<Effect> {
        todo!()
    }
    /// The earliest deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        todo!()
    }
    /// Fires what is due.
    pub fn handle_timeout(&mut self, _now: Now) {
        todo!()
    }
}
