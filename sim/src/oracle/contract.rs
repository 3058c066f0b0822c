//! The contract checker: the core keeps its side of the `Input`/`Effect` interface.
//!
//! # Theory of operation
//!
//! `weir_core::server::io` promises the shell a protocol, and a shell in production would
//! misbehave (or crash) if the core broke it, so each promise is checked on every effect:
//!
//! * streams: at most one `Read` and one `Send` outstanding per connection; a `Read` asks
//!   for at least one byte and at most what the limits allow the core to buffer; a `Send`
//!   carries at least one byte; nothing is sent after `ShutdownWrite`;
//! * lifetimes: no effect for a connection after its `Close`, no `Close` twice, no `Read`
//!   or `Send` after the core was told the connection failed, a `Refuse` (which closes)
//!   only for a connection the core never read from or sent to;
//! * tokens: each `Open` has a fresh token and an absolute path inside the root (the
//!   rules the simulation draws never name anything outside it);
//! * `Exit` comes only after `Shutdown`, with status 0.
//!
//! Open-file accounting (every `Open`ed file closed exactly once) lives in `SimFs`, which
//! owns the descriptors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use weir_core::{ConnId, Token};

#[derive(Debug, Default)]
struct Stream {
    reading: bool,
    sending: bool,
    shut: bool,
    failed: bool,
    /// A `Read` or `Send` was asked for: the core has taken the connection in.
    used: bool,
}

/// Per-connection stream state as the contract sees it.
#[derive(Debug)]
pub struct Contract {
    streams: BTreeMap<ConnId, Stream>,
    closed: BTreeSet<ConnId>,
    tokens: BTreeSet<Token>,
    read_max: usize,
    root: String,
    shutdown: bool,
}

impl Contract {
    /// A checker for a server whose reads may ask for at most `read_max` bytes.
    #[must_use]
    pub fn new(read_max: usize, root: &str) -> Contract {
        Contract {
            streams: BTreeMap::new(),
            closed: BTreeSet::new(),
            tokens: BTreeSet::new(),
            read_max,
            root: root.to_string(),
            shutdown: false,
        }
    }

    fn live(&mut self, conn: ConnId, what: &str) -> Result<&mut Stream, String> {
        if self.closed.contains(&conn) {
            return Err(format!("{what} for {conn:?} after its Close"));
        }
        self.streams
            .get_mut(&conn)
            .ok_or_else(|| format!("{what} for {conn:?}, which was never accepted"))
    }

    /// The shell accepted `conn`.
    pub fn accepted(&mut self, conn: ConnId) {
        self.streams.insert(conn, Stream::default());
    }

    /// Effect `Read`.
    pub fn read(&mut self, conn: ConnId, max: usize) -> Result<(), String> {
        let read_max = self.read_max;
        let s = self.live(conn, "Read")?;
        if s.failed {
            return Err(format!("Read for {conn:?} after ConnFailed"));
        }
        if s.reading {
            return Err(format!("two Reads outstanding on {conn:?}"));
        }
        if max == 0 || max > read_max {
            return Err(format!(
                "Read {{ max: {max} }} on {conn:?}: outside 1..={read_max} (the buffer limit)"
            ));
        }
        s.reading = true;
        s.used = true;
        Ok(())
    }

    /// Input `Received` or `PeerClosed` answered the read.
    pub fn read_done(&mut self, conn: ConnId) {
        if let Some(s) = self.streams.get_mut(&conn) {
            s.reading = false;
        }
    }

    /// Effect `Send`.
    pub fn send(&mut self, conn: ConnId, len: u64) -> Result<(), String> {
        let s = self.live(conn, "Send")?;
        if s.failed {
            return Err(format!("Send on {conn:?} after ConnFailed"));
        }
        if s.shut {
            return Err(format!("Send on {conn:?} after ShutdownWrite"));
        }
        if s.sending {
            return Err(format!("two Sends outstanding on {conn:?}"));
        }
        if len == 0 {
            return Err(format!("empty Send on {conn:?}"));
        }
        s.sending = true;
        s.used = true;
        Ok(())
    }

    /// Input `Sent` answered the send.
    pub fn send_done(&mut self, conn: ConnId) {
        if let Some(s) = self.streams.get_mut(&conn) {
            s.sending = false;
        }
    }

    /// Input `ConnFailed`.
    pub fn failed(&mut self, conn: ConnId) {
        if let Some(s) = self.streams.get_mut(&conn) {
            s.failed = true;
            s.reading = false;
            s.sending = false;
        }
    }

    /// Effect `ShutdownWrite`.
    pub fn shutdown_write(&mut self, conn: ConnId) -> Result<(), String> {
        let s = self.live(conn, "ShutdownWrite")?;
        if s.shut {
            return Err(format!("ShutdownWrite on {conn:?} twice"));
        }
        if s.sending {
            return Err(format!("ShutdownWrite on {conn:?} with a Send outstanding"));
        }
        s.shut = true;
        Ok(())
    }

    /// Effect `Close`.
    pub fn close(&mut self, conn: ConnId) -> Result<(), String> {
        self.live(conn, "Close")?;
        self.streams.remove(&conn);
        self.closed.insert(conn);
        Ok(())
    }

    /// Effect `Refuse`: only for a connection the core never took in (no `Read` or `Send`
    /// was ever asked for on it).
    pub fn refuse(&mut self, conn: ConnId) -> Result<(), String> {
        if self.live(conn, "Refuse")?.used {
            return Err(format!("Refuse of {conn:?}, which the core had taken in"));
        }
        self.close(conn)
    }

    /// An effect that carries a fresh token (`ReadFile`, `Spawn`).
    pub fn token(&mut self, token: Token) -> Result<(), String> {
        if !self.tokens.insert(token) {
            return Err(format!("token {token:?} used twice"));
        }
        Ok(())
    }

    /// Effect `Open`.
    pub fn open(&mut self, token: Token, path: &Path) -> Result<(), String> {
        if !self.tokens.insert(token) {
            return Err(format!("token {token:?} used twice"));
        }
        if !path.is_absolute() || !path.starts_with(&self.root) {
            return Err(format!(
                "Open of {} outside the root {}",
                path.display(),
                self.root
            ));
        }
        Ok(())
    }

    /// Input `Shutdown` was given.
    pub fn shutdown(&mut self) {
        self.shutdown = true;
    }

    /// Effect `Exit`.
    pub fn exit(&mut self, code: i32) -> Result<(), String> {
        if !self.shutdown {
            return Err(format!("Exit {{ code: {code} }} without a Shutdown"));
        }
        if code != 0 {
            return Err(format!("Exit {{ code: {code} }} after a clean shutdown"));
        }
        if !self.streams.is_empty() {
            return Err(format!(
                "Exit with {} connections not closed",
                self.streams.len()
            ));
        }
        Ok(())
    }

    /// Connections accepted and not closed.
    #[must_use]
    pub fn open_connections(&self) -> usize {
        self.streams.len()
    }
}
