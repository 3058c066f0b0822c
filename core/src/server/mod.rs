//! The server core: connections, requests and documents, spoken as `Input`s and `Effect`s.
//!
//! # Theory of operation
//!
//! The `Server` owns one `http1::Conn` per connection (a `Slot`), the configuration, and the
//! requests it has parked on effects. It never performs I/O: each `handle` call applies one
//! input, then *pumps* the connections it touched, and the pump is the only place that turns
//! a connection's wishes into effects:
//!
//! ```text
//!   Input ──► apply to the Conn ──► pump(conn):
//!                                     1. drain conn.poll_event(): route new requests
//!                                        (held while a script's input is full, unless
//!                                        the connection is closing)
//!                                     2. no Read outstanding and read_budget > 0 → Read
//!                                     3. no Send outstanding and pending_transmit → Send
//!                                     4. files whose bytes have all left → CloseFile
//!                                     5. Lingering → ShutdownWrite (once); Closed → Close
//!                                     6. index the connection's deadline if it is earlier,
//!                                        and whether it is idle (see "Connection limit")
//! ```
//!
//! What a request becomes is decided in `request` (routing through the rules, then the
//! document steps); `respond` writes answers; `status` keeps the counters.
//!
//! A file stays open until every byte the response queued for it has been transmitted: the
//! server counts bytes transmitted per connection and remembers, for each open file, the
//! count at which its response ends. Pipelined responses may queue behind it meanwhile.
//!
//! Deadlines: each connection has one entry in a `BTreeSet` of `(Time, ConnId)`, at or
//! before its `Conn::poll_timeout`, so `poll_timeout` is O(log n) and `handle_timeout`
//! visits only the connections that may be due. The entry is lazy: a deadline that moves
//! earlier is re-indexed at once, one that moves later (every kept-alive request moves the
//! idle time-out later) is not; the old entry fires early, `Conn::handle_timeout` then
//! does nothing, and the real deadline is indexed. A request thus costs no index update,
//! and a connection at most one early wake-up per time-out period. Shutdown adds one more
//! deadline, the end of the grace time.
//!
//! Connection limit (`limit connections=N`, per worker), nginx's reusable connections: the
//! server never holds more than N connections, and it never stops accepting either (a full
//! accept queue would leave every new client hanging, the good ones with the bad). The
//! count is checked before a new connection is admitted: at N, room is made by closing an
//! idle connection — first one that has never sent a byte, the oldest first, then a
//! kept-alive one waiting for its next request, the longest idle first — exactly as its
//! idle time-out would close it (no answer; a client retries a request on a kept-alive
//! connection closed under it). Only when every connection is busy is the new one refused:
//! `Effect::Refuse` has the shell answer it 503 and close it, and the core never takes it.
//! Which connections are idle, and since when, is kept in a `BTreeSet` ordered that way,
//! updated by `pump` whenever a connection goes idle or stops being idle (two B-tree
//! operations per kept-alive request), so finding the one to close costs O(log n).
//!
//! Memory: an idle kept-alive connection is the common case, by the thousand, so what it
//! costs is kept to its `Slot` (one boxed block), its map and deadline entries and the
//! shell's own entry. What only a request in progress needs (the `Conn`'s buffers, the
//! slot's `Current`) is boxed and let go when the connection goes idle; an absent box and
//! a box of empty state compare equal, so the model checker sees one state either way.

pub mod accesslog;
mod auth;
mod exchange;
mod farm;
mod fastcgi;
mod gateway;
pub mod io;
mod reply;
mod request;
mod respond;
pub mod status;

use core::net::{SocketAddr, SocketAddrV4};
use core::num::NonZeroU64;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::config::ConfigRef;
use crate::http1::{Conn, ConnState};
pub use crate::ids::StreamId;
use crate::ids::{ConnId, FileId, Token};
use crate::time::{Now, Time};
pub use auth::{
    VERIFIED_MAX, VERIFIED_TTL, VERIFY_IN_FLIGHT_MAX, VERIFY_PER_PEER, VERIFY_QUEUE_PER_PEER,
};
pub use io::{
    Availability, Channel, Completion, DirEntry, Effect, ExitStatus, FileKind, FileMeta, Input,
    IoError, Password, SpawnSpec, UpstreamAddr, LISTING_MAX,
};
use request::Waiting;
pub use status::{Counters, ServerStatus, ServiceStatus, StatusFormat, WorkerStatus};

/// The server core. See the module documentation for how it works.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Server {
    config: ConfigRef,
    /// Boxed so that the map's nodes, which sequential ids leave about half full, hold
    /// pointers rather than whole slots (idle memory per connection, bench/RESULTS.md).
    conns: BTreeMap<ConnId, Box<Slot>>,
    /// Requests parked on an effect, by token.
    parked: BTreeMap<Token, ConnId>,
    /// Requests waiting for the whole server's status, by token.
    status_parked: BTreeMap<Token, (ConnId, status::StatusFormat)>,
    effects: VecDeque<Effect>,
    deadlines: BTreeSet<(Time, ConnId)>,
    next_token: u64,
    /// The idle connections, the first to close to make room first (see "Connection
    /// limit"): each connection's entry is its `Slot::idle`.
    idle: BTreeSet<(Reuse, Time, ConnId)>,
    /// When the error log last said that new connections are being refused.
    refusal_logged: Option<Time>,
    accept_paused: bool,
    shutdown: Option<Time>,
    exited: bool,
    counters: Counters,
    /// Every gateway by its stream, the one token → owner map: running CGI scripts, and
    /// streams to FastCGI services, busy with a request or idle in a pool.
    gateways: BTreeMap<StreamId, gateway::Gateway>,
    /// Per FastCGI service: its pool of idle streams, its open count and waiting requests.
    services: BTreeMap<String, fastcgi::ServicePool>,
    /// The `gateway` deadline of every script and exchange.
    gateway_deadlines: BTreeSet<(Time, StreamId)>,
    /// This worker's share of each service's `connections=` (set by the shell).
    workers: (usize, usize),
    /// Scripts counted against `limit cgi=`.
    cgi_running: usize,
    /// Connections whose script waits for a place in the farm.
    cgi_queue: VecDeque<ConnId>,
    /// The document cache (`None` with `cache off`).
    cache: Option<crate::cache::Cache>,
    /// `ReadFile`s whose request went away: the file to close when each completes.
    orphan_reads: BTreeMap<Token, FileId>,
    /// Password checks: in flight, waiting for a place, and recent successes (`auth`).
    verifier: auth::Verifier,
}

/// One connection and what the server is doing for it.
///
/// An idle kept-alive connection is this struct and nothing else, and thousands of them are
/// the common case, so it is kept small: what only a request in progress needs lives in
/// `cur`, boxed and let go between requests, and the two addresses are stored compactly.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Slot {
    conn: Conn,
    addrs: Addrs,
    reading: bool,
    shutdown_sent: bool,
    /// No byte has arrived on this connection yet.
    fresh: bool,
    /// This connection's entry in `Server::idle`, while it is idle.
    idle: Option<IdleEntry>,
    /// Length of the chunk an outstanding `Send` carries (never empty).
    sending: Option<NonZeroU64>,
    /// The time indexed for this connection in `Server::deadlines`: at or before its
    /// `Conn::poll_timeout` (see "Deadlines").
    deadline: Option<Time>,
    /// The current request's state.
    cur: Cur,
}

/// What the server keeps for a connection's current request, and the files its responses
/// are still sending. All of it is empty or unset between requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Current {
    /// Bytes transmitted on this connection since this box was made (the file counts
    /// below are taken against it).
    transmitted: u64,
    /// Open files, each with the `transmitted` count at which its response has left. A file
    /// stays here until then, so the box is never let go with a file open: `Idle` means
    /// nothing is left to transmit.
    files: VecDeque<(FileId, u64)>,
    /// The request waiting on an effect, if any.
    waiting: Option<Box<Waiting>>,
    /// The request waiting for its password checks, if any.
    auth: Option<Box<auth::AuthWait>>,
    /// Header fields that `header` rules add to the current response.
    extra_headers: Vec<(String, String)>,
    /// The current request's head (for a script's local redirect and the access log).
    request: Option<std::sync::Arc<crate::http1::RequestHead>>,
    /// The user a `protect` rule authenticated for the current request.
    user: Option<Box<str>>,
    /// Local redirects followed for the current request.
    redirects: u8,
    /// What a CGI gateway is doing for the current request.
    gateway: Option<gateway::GatewayState>,
    /// The configuration the current request started under: it keeps it to its end,
    /// whatever a reload brings meanwhile.
    config: Option<ConfigRef>,
}

/// Which idle connections are closed first to make room for a new one (the order of the
/// variants), see "Connection limit".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Reuse {
    /// It has never sent a byte.
    Fresh,
    /// It waits for its next request.
    KeptAlive,
}

/// A slot's entry in `Server::idle`, packed into one word (the slot of every idle
/// connection carries it): the time it went idle and its `Reuse`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct IdleEntry(NonZeroU64);

impl IdleEntry {
    fn new(reuse: Reuse, since: Time) -> IdleEntry {
        // Milliseconds below 2^62 (a hundred million years): nothing is lost.
        let word = (since.0.min(u64::MAX >> 2) << 1) | u64::from(reuse == Reuse::KeptAlive);
        IdleEntry(NonZeroU64::MIN.saturating_add(word))
    }

    /// The entry's key in `Server::idle`.
    fn key(self, id: ConnId) -> (Reuse, Time, ConnId) {
        let word = self.0.get() - 1;
        let reuse = if word & 1 == 0 {
            Reuse::Fresh
        } else {
            Reuse::KeptAlive
        };
        (reuse, Time(word >> 1), id)
    }
}

/// A connection without a request in progress: what `Cur` reads as when it has no box.
static NO_CURRENT: Current = Current {
    transmitted: 0,
    files: VecDeque::new(),
    waiting: None,
    auth: None,
    extra_headers: Vec::new(),
    request: None,
    user: None,
    redirects: 0,
    gateway: None,
    config: None,
};

/// A slot's `Current`, boxed when there is one. `None` reads as an empty `Current`, and is
/// the same state as a box holding one (equality and hashing say so, for the model
/// checker), so where the box is let go is a question of memory only.
#[derive(Clone, Debug, Default)]
struct Cur(Option<Box<Current>>);

impl Cur {
    /// The current request's state (an empty one when there is no box).
    fn get(&self) -> &Current {
        self.0.as_deref().unwrap_or(&NO_CURRENT)
    }

    /// The current request's state, to be written: the box is made if there is none.
    fn get_mut(&mut self) -> &mut Current {
        self.0.get_or_insert_with(Box::default)
    }

    /// The current request's state to be written, if there is a box (for what has nothing
    /// to do when it is empty).
    fn existing(&mut self) -> Option<&mut Current> {
        self.0.as_deref_mut()
    }

    /// Takes the gateway state out, if there is one.
    fn take_gateway(&mut self) -> Option<gateway::GatewayState> {
        self.existing().and_then(|c| c.gateway.take())
    }
}

impl PartialEq for Cur {
    fn eq(&self, other: &Cur) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Cur {}

impl core::hash::Hash for Cur {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.get().hash(state);
    }
}

/// A connection's peer and local addresses: 12 bytes for two IPv4 ones (the common case),
/// anything else boxed whole.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Addrs {
    V4 {
        peer: SocketAddrV4,
        local: SocketAddrV4,
    },
    Other(Box<(SocketAddr, SocketAddr)>),
}

impl Addrs {
    fn new(peer: SocketAddr, local: SocketAddr) -> Addrs {
        match (peer, local) {
            (SocketAddr::V4(peer), SocketAddr::V4(local)) => Addrs::V4 { peer, local },
            _ => Addrs::Other(Box::new((peer, local))),
        }
    }
}

impl Slot {
    /// The client's address.
    fn peer(&self) -> SocketAddr {
        match &self.addrs {
            Addrs::V4 { peer, .. } => SocketAddr::V4(*peer),
            Addrs::Other(a) => a.0,
        }
    }

    /// Our address, on which the connection arrived.
    fn local(&self) -> SocketAddr {
        match &self.addrs {
            Addrs::V4 { local, .. } => SocketAddr::V4(*local),
            Addrs::Other(a) => a.1,
        }
    }
}

impl Server {
    /// A server with no connections.
    #[must_use]
    pub fn new(config: ConfigRef, now: Now) -> Server {
        let cache = config.cache.map(crate::cache::Cache::new);
        Server {
            config,
            conns: BTreeMap::new(),
            parked: BTreeMap::new(),
            status_parked: BTreeMap::new(),
            effects: VecDeque::new(),
            deadlines: BTreeSet::new(),
            next_token: 1,
            idle: BTreeSet::new(),
            refusal_logged: None,
            accept_paused: false,
            shutdown: None,
            exited: false,
            counters: Counters::new(now),
            gateways: BTreeMap::new(),
            services: BTreeMap::new(),
            gateway_deadlines: BTreeSet::new(),
            workers: (0, 1),
            cgi_running: 0,
            cgi_queue: VecDeque::new(),
            cache,
            orphan_reads: BTreeMap::new(),
            verifier: auth::Verifier::default(),
        }
    }

    /// Applies one input. Drain `poll_effect` afterwards.
    pub fn handle(&mut self, input: Input, now: Now) {
        match input {
            Input::Accepted {
                conn, peer, local, ..
            } => self.accepted(conn, peer, local, now),
            Input::Received { conn, data } => {
                if let Some(slot) = self.conns.get_mut(&conn) {
                    slot.reading = false;
                    slot.fresh = false;
                    slot.conn.receive(&data, now);
                    self.pump(conn, now);
                }
            }
            Input::PeerClosed { conn } => {
                if let Some(slot) = self.conns.get_mut(&conn) {
                    slot.reading = false;
                    slot.conn.receive_eof(now);
                    self.pump(conn, now);
                }
            }
            Input::Sent { conn, n } => {
                if let Some(slot) = self.conns.get_mut(&conn) {
                    let len = slot.sending.take().map_or(0, NonZeroU64::get);
                    let n = n.min(len);
                    // Without a box no file waits on the count (see `Current`).
                    if let Some(cur) = slot.cur.existing() {
                        cur.transmitted += n;
                    }
                    self.counters.bytes_sent += n;
                    slot.conn.advance_transmit(n, now);
                    self.pump(conn, now);
                }
            }
            Input::ConnFailed { conn, .. } => {
                if let Some(slot) = self.conns.get_mut(&conn) {
                    slot.reading = false;
                    slot.sending = None;
                    slot.conn.abort();
                    self.pump(conn, now);
                }
            }
            Input::Completed { token, result } => self.completed(token, result, now),
            // One family of stream inputs; the stream's owner says which gateway it feeds.
            Input::StreamReceived { .. }
            | Input::StreamEof { .. }
            | Input::StreamWritten { .. }
            | Input::StreamWriteClosed { .. }
            | Input::StreamFailed { .. }
            | Input::Exited { .. } => self.stream_input(input, now),
            Input::ServiceState {
                service,
                availability,
            } => self.fcgi_availability(service, availability, now),
            Input::Reload(config) => self.reload(config, now),
            Input::Shutdown => self.begin_shutdown(now),
        }
        self.check_exit();
    }

    /// The next effect to carry out, or `None` when there is nothing more to do now.
    #[must_use]
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// When to call `handle_timeout` next: no later than the earliest time at which it has
    /// work to do (possibly earlier, when a connection's deadline moved later since it was
    /// indexed; see "Deadlines" in the module documentation).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        [
            self.deadlines.first().map(|(t, _)| *t),
            self.gateway_deadlines.first().map(|(t, _)| *t),
            self.shutdown,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Fires every deadline at or before `now`. Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Now) {
        let due: Vec<ConnId> = self
            .deadlines
            .iter()
            .take_while(|(t, _)| *t <= now.mono)
            .map(|(_, c)| *c)
            .collect();
        for id in due {
            if let Some(slot) = self.conns.get_mut(&id) {
                // The entry is spent: `pump` indexes the connection's deadline afresh
                // (the entry may have been early, see `pump`).
                if let Some(t) = slot.deadline.take() {
                    self.deadlines.remove(&(t, id));
                }
                slot.conn.handle_timeout(now);
                self.pump(id, now);
            }
        }
        self.gateway_timeouts(now);
        if self.shutdown.is_some_and(|t| t <= now.mono) {
            // Grace is over: whatever is still in flight is cut off.
            let ids: Vec<ConnId> = self.conns.keys().copied().collect();
            for id in ids {
                if let Some(slot) = self.conns.get_mut(&id) {
                    slot.conn.abort();
                }
                self.pump(id, now);
            }
            // Gateways whose stream has not even opened are let go too.
            self.stop_all_gateways(now);
        }
        self.check_exit();
    }

    /// Number of open connections.
    #[must_use]
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// The counters `status` rules report.
    #[must_use]
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// This server's part of the whole server's status, for the shell to publish.
    #[must_use]
    pub fn worker_status(&self) -> WorkerStatus {
        let mut in_flight: Vec<(String, u64)> = Vec::new();
        for g in self.gateways.values() {
            if let (Some(_), Some((service, _))) = (&g.reply, &g.service) {
                match in_flight.iter_mut().find(|(s, _)| s == service) {
                    Some((_, n)) => *n += 1,
                    None => in_flight.push((service.to_string(), 1)),
                }
            }
        }
        WorkerStatus {
            counters: self.counters.clone(),
            open: self.conns.len(),
            in_flight,
        }
    }

    /// Tells the server it is worker `index` of `count`, so that it keeps to its share of
    /// each service's `connections=` (see `fastcgi`). A lone server takes all of it.
    pub fn set_worker_share(&mut self, index: usize, count: usize) {
        self.workers = (index, count.max(1));
    }

    /// `path` as the shell sees it: under `chroot DIR`, the path inside DIR (`None` if it
    /// is outside: it does not exist there); else `path` itself.
    fn shell_path(&self, path: &std::path::Path) -> Option<std::path::PathBuf> {
        match &self.config.chroot {
            Some(jail) => crate::config::chroot::inside(jail, path),
            None => Some(path.to_path_buf()),
        }
    }

    /// The configuration a connection's current request started under; the server's own
    /// for a connection between requests (or unknown).
    fn conf(&self, id: ConnId) -> &ConfigRef {
        self.conns
            .get(&id)
            .and_then(|s| s.cur.get().config.as_ref())
            .unwrap_or(&self.config)
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &ConfigRef {
        &self.config
    }

    fn accepted(&mut self, id: ConnId, peer: SocketAddr, local: SocketAddr, now: Now) {
        if self.shutdown.is_some() {
            self.effects.push_back(Effect::Close { conn: id });
            return;
        }
        // Room is made before the new connection is counted (see "Connection limit").
        while self.conns.len() >= self.config.limits.connections_max {
            let Some((_, _, victim)) = self.idle.pop_first() else {
                return self.refuse(id, now);
            };
            self.counters.shed += 1;
            if let Some(slot) = self.conns.get_mut(&victim) {
                slot.idle = None;
                slot.conn.abort();
            }
            self.pump(victim, now);
        }
        self.counters.accepted += 1;
        let conn = Conn::new(&self.config.limits, &self.config.timeouts, now);
        self.conns.insert(
            id,
            Box::new(Slot {
                conn,
                addrs: Addrs::new(peer, local),
                reading: false,
                shutdown_sent: false,
                fresh: true,
                idle: None,
                sending: None,
                deadline: None,
                cur: Cur(None),
            }),
        );
        self.pump(id, now);
    }

    /// Turns a new connection away: every connection is busy (see "Connection limit").
    fn refuse(&mut self, id: ConnId, now: Now) {
        self.counters.refused += 1;
        self.effects.push_back(Effect::Refuse {
            conn: id,
            answer: crate::http1::write::refusal(now.unix),
        });
        // Said once a minute at most: a flood must not flood the error log too.
        let minute = core::time::Duration::from_secs(60);
        if self
            .refusal_logged
            .is_none_or(|t| now.mono >= t.after(minute))
        {
            self.refusal_logged = Some(now.mono);
            self.effects.push_back(Effect::ErrorLog {
                line: format!(
                    "limit connections={} reached with no idle connection to close: new \
                     connections are answered 503 ({} so far)",
                    self.config.limits.connections_max, self.counters.refused
                ),
            });
        }
    }

    /// Takes a new configuration for every request that starts from now on (see
    /// `Current::config` for those in flight). Idle connections stay open. A changed
    /// `cache` setting starts an empty cache; a new connection limit applies from the next
    /// connection accepted (which makes room down to it, see "Connection limit").
    fn reload(&mut self, config: ConfigRef, now: Now) {
        if config.cache != self.config.cache {
            self.cache = config.cache.map(crate::cache::Cache::new);
        }
        self.config = config;
        self.fcgi_reloaded(now);
    }

    /// A deliberately wrong reload, for weir-model's broken variant only (the feature
    /// `model-faults`): `Input::Reload(config)`, and every request in flight is moved to
    /// `config` too, mid-way — what `Current::config` exists to prevent. No shell can do
    /// this through `handle`, hence this seam.
    #[cfg(any(test, feature = "model-faults"))]
    #[doc(hidden)]
    pub fn reload_in_flight_too(&mut self, config: ConfigRef, now: Now) {
        for slot in self.conns.values_mut() {
            if let Some(cur) = slot.cur.existing() {
                if cur.config.is_some() {
                    cur.config = Some(config.clone());
                }
            }
        }
        self.handle(Input::Reload(config), now);
    }

    fn begin_shutdown(&mut self, now: Now) {
        if self.shutdown.is_some() {
            return;
        }
        self.shutdown = Some(now.mono.after(self.config.timeouts.grace));
        if !self.accept_paused {
            self.accept_paused = true;
            self.effects.push_back(Effect::PauseAccept);
        }
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            if let Some(slot) = self.conns.get_mut(&id) {
                slot.conn.close(now);
            }
            self.pump(id, now);
        }
    }

    fn check_exit(&mut self) {
        let scripts = self.gateways.values().any(|g| g.service.is_none());
        let idle = self.conns.is_empty() && !scripts && self.orphan_reads.is_empty();
        // Idle pooled streams to services are not work in flight: they are closed now.
        if self.shutdown.is_some() && idle && !self.exited {
            self.fcgi_close_all_idle();
        }
        let idle = idle && self.gateways.is_empty();
        if self.shutdown.is_some() && idle && !self.exited {
            self.exited = true;
            self.shutdown = None;
            self.effects.push_back(Effect::Exit { code: 0 });
        }
    }

    fn token(&mut self) -> Token {
        let t = Token(self.next_token);
        self.next_token += 1;
        t
    }

    /// Turns the connection's state into effects (see the module documentation).
    fn pump(&mut self, id: ConnId, now: Now) {
        loop {
            let Some(slot) = self.conns.get_mut(&id) else {
                return;
            };
            // Back-pressure holds body events while the connection may still read more.
            // Once it is closing (it refused the request and queued its own answer) it
            // reads no more, so what is queued is bounded and is drained: its `Rejected`
            // is handled, and logged, when the answer is handed over. (Only a gateway
            // holds a body back, so without one there is nothing to ask.)
            if slot.cur.get().gateway.is_some() {
                let state = slot.conn.state();
                let closing = matches!(state, ConnState::Closing | ConnState::Lingering);
                if !closing && self.body_blocked(id) {
                    break;
                }
            }
            let Some(slot) = self.conns.get_mut(&id) else {
                return;
            };
            let Some(event) = slot.conn.poll_event() else {
                break;
            };
            self.on_event(id, event, now);
        }
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        let state = slot.conn.state();
        if state == ConnState::Closed {
            self.effects.push_back(Effect::Close { conn: id });
            let (mut waiting, mut gateway, mut auth) = (None, None, None);
            if let Some(cur) = slot.cur.existing() {
                for (file, _) in cur.files.drain(..) {
                    self.effects.push_back(Effect::CloseFile { file });
                }
                waiting = cur.waiting.take();
                gateway = cur.gateway.take();
                auth = cur.auth.take();
            }
            if let Some(t) = slot.deadline.take() {
                self.deadlines.remove(&(t, id));
            }
            if let Some(entry) = slot.idle.take() {
                self.idle.remove(&entry.key(id));
            }
            // While the slot still exists: a script's cut answer is logged from it.
            self.gateway_conn_closed(id, gateway, now);
            self.conns.remove(&id);
            if let Some(w) = waiting {
                // The Open may still complete; with nobody parked on its token, its file
                // is closed when it does.
                self.release(*w);
            }
            if let Some(w) = auth {
                self.release_auth(id, *w);
            }
            return;
        }
        if !slot.reading {
            let max = slot.conn.read_budget();
            if max > 0 {
                slot.reading = true;
                self.effects.push_back(Effect::Read { conn: id, max });
            }
        }
        if slot.sending.is_none() {
            if let Some((chunk, len)) = slot
                .conn
                .pending_transmit()
                .and_then(|c| Some((c, NonZeroU64::new(c.len())?)))
            {
                slot.sending = Some(len);
                self.effects.push_back(Effect::Send {
                    conn: id,
                    chunk: chunk.clone(),
                });
            }
        }
        // Room on the connection may let the gateway's output be read again.
        if let Some(gateway::GatewayState::Running(stream)) = slot.cur.get().gateway {
            self.pump_gateway(stream, now);
        }
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        if let Some(cur) = slot.cur.existing() {
            while let Some(&(file, until)) = cur.files.front() {
                if cur.transmitted < until {
                    break;
                }
                cur.files.pop_front();
                self.effects.push_back(Effect::CloseFile { file });
            }
        }
        if state == ConnState::Lingering && !slot.shutdown_sent && slot.sending.is_none() {
            slot.shutdown_sent = true;
            self.effects.push_back(Effect::ShutdownWrite { conn: id });
        }
        // Idle, and so closable to make room: nothing in flight at all (see "Connection
        // limit"). A connection's entry changes only when it goes idle or busy.
        let cur = slot.cur.get();
        let idle = slot
            .conn
            .idle_since()
            .filter(|_| cur.waiting.is_none() && cur.gateway.is_none() && cur.files.is_empty())
            .map(|since| {
                let reuse = if slot.fresh {
                    Reuse::Fresh
                } else {
                    Reuse::KeptAlive
                };
                IdleEntry::new(reuse, since)
            });
        if idle != slot.idle {
            if let Some(entry) = slot.idle {
                self.idle.remove(&entry.key(id));
            }
            if let Some(entry) = idle {
                self.idle.insert(entry.key(id));
            }
            slot.idle = idle;
        }
        let cur = slot.cur.get();
        if state == ConnState::Idle
            && cur.waiting.is_none()
            && cur.auth.is_none()
            && cur.gateway.is_none()
        {
            // Between requests a connection keeps nothing of the last one (memory per idle
            // connection is what thousands of keep-alive clients cost).
            if cur.files.is_empty() {
                slot.cur = Cur(None);
            } else if let Some(cur) = slot.cur.existing() {
                cur.request = None;
                cur.user = None;
            }
        }
        // Only an earlier deadline is indexed at once. A later one (the common case: every
        // request pushes the idle time-out further) leaves the earlier entry in place; it
        // fires early, which is harmless, and `handle_timeout` indexes the real deadline
        // then. So a kept-alive request costs no B-tree update here.
        let deadline = slot.conn.poll_timeout();
        if let Some(new) = deadline {
            if slot.deadline.is_none_or(|indexed| new < indexed) {
                if let Some(t) = slot.deadline {
                    self.deadlines.remove(&(t, id));
                }
                self.deadlines.insert((new, id));
                slot.deadline = Some(new);
            }
        }
    }
}

#[cfg(test)]
mod tests;
