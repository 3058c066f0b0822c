//! `reload`: the real `server::Server` reloaded (`Input::Reload`) at any point while two
//! clients' requests are in flight.
//!
//! # Theory of operation
//!
//! The state ([`ReloadWorld`]) holds the core's `Server` and the shell around it, as in
//! [`crate::server`]: the effects awaiting an answer (`Read`, `Send`, `Open`, `ReadFile`),
//! the files the shell has open, and one client per connection with the bytes it has sent
//! and read. After every call the model drains `poll_effect` to `None`; `CloseFile`,
//! `Close` and `ShutdownWrite` are carried out at once, the logs are dropped, and any other
//! effect (a script, a listing, a password check…) breaks the contract: the modelled site
//! serves two files and nothing else.
//!
//! Every generation `g` of the configuration ([`config_text`]) answers the same paths, and
//! says which it is in every response: `header /* X-Gen g`, `type .txt text/x-gen{g}`,
//! and, for even `g`, `fail /b.txt 410`. The header and the `fail` rule are decided when
//! the request is routed, at its head; the media type only when its file is ready (its
//! `Open` completed, and its `ReadFile` when it fills the cache), steps later. So a request
//! moved to another generation mid-way shows two of them at once (the header of one, the
//! media type of the other), and a response judged by its bytes alone tells which
//! generation answered it. (With the header and the `fail` rule alone, such a request
//! would look whole: every rule is decided at the head.)
//!
//! It is a model of its own rather than a scenario of [`crate::server`]: its state carries
//! per-request history (when each was sent, started, crossed by a reload, and what its
//! answer showed) and a reload budget, its client judges generations rather than file
//! versions, and its site needs none of the scripts, resets and timers that model's shell
//! handles; folding it in would have grown every `server` scenario's state and its
//! properties' conditions for one scenario's sake.
//!
//! Actions:
//!
//! * `Deliver(k, end)` answers pending `Read` *k* with the client's next bytes, up to `end`:
//!   a client's bytes arrive in one piece or in two, cut at one of the scenario's cut
//!   points ([`Cut`]: after its first request line, or between its pipelined requests),
//!   and never more than the `Read`'s `max`. Once its bytes are all sent, a client waits for its answers (its
//!   last request says `Connection: close`): its `Read` stays pending.
//! * `Complete(k)` answers any other pending effect *k*, so every completion order is
//!   explored: a `Send` is written whole and its bytes reach the client, who reads the
//!   complete responses off them (`weir_testkit::response`); an `Open` opens one of the model's files
//!   (or fails with `NotFound`); a `ReadFile` reads the open file (the document cache
//!   filling itself: a first request for a file takes `Open` then `ReadFile`, a later one
//!   may be answered from the cache at once).
//! * `Reload(g)` hands the core generation `g` (`Input::Reload`), the next one: 2, then 3.
//!
//! # When a request starts
//!
//! A request starts when the core parses its head: `Server::counters().requests` grows in
//! the call that did it, and the model records the generation in force at that call
//! (`server.config().generation()`; a call that is not a reload never changes it) on the
//! connection the call was about. That is not always when its last head byte was handed
//! to the core, which the model records too: a pipelined request's head waits in the
//! connection's buffer until the response before it has been queued, so a reload in
//! between makes a request *sent* under generation 1 *start* under generation 2 — which
//! the README's "requests that start from then on" means, and a `sometimes` property shows
//! happening.
//!
//! # Bounds
//!
//! Two clients: one pipelines `GET /a.txt` and `GET /b.txt` on one connection (its bytes
//! whole, or cut after its first request line or between the two), the other sends
//! `GET /b.txt` (whole, or cut after its request line); one reload (`once`) or two
//! (`twice`: generation 2, then 3), at any point while a connection is open. Time never moves: the timers are the `server` and `conn` models'
//! concern, and both generations have the same time-outs. Every action answers a pending
//! effect or spends the reload budget, so the graph is acyclic and every path ends; the
//! `eventually` property, once true, stays true (answers are never taken back), so it is
//! sound.
//!
//! # Broken variant
//!
//! [`ReloadFault::InFlightToo`] reloads with `Server::reload_in_flight_too`, a seam that
//! exists only under `weir-core`'s `model-faults` feature: every request in flight moves to
//! the new configuration too. No shell can do that through `handle` — the configuration a
//! request started under is the core's own — so it is the one broken variant here that
//! needs the core's help. "A response never mixes generations" catches it: a request
//! routed under generation 1 whose file is ready only after the reload is served with
//! `X-Gen: 1` and `Content-Type: text/x-gen2`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use core::net::SocketAddr;
use stateright::{Model, Property};
use weir_core::config::Config;
use weir_core::ids::ListenerId;
use weir_core::server::{Completion, Effect, FileKind, FileMeta, Input, IoError, Server};
use weir_core::{Chunk, ConfigRef, ConnId, FileId, Now, Time, Token, UnixTime};

use crate::conn::{model_limits, model_timeouts, show};
use weir_testkit::response::{self, Framing, Response};

/// The document root of the model's file system.
const ROOT: &str = "/srv";

/// The model's files: URL path, contents, inode.
const FILES: [(&str, &[u8], u64); 2] = [("/a.txt", b"alpha\n", 10), ("/b.txt", b"beta\n", 11)];

/// The path the even generations refuse with 410.
const REFUSED: &str = "/b.txt";

/// The clock, which never moves.
const NOW: Now = Now {
    mono: Time(0),
    unix: UnixTime(1_700_000_000),
};

/// The configuration file of generation `g`: every response it makes says `g`, in its
/// `X-Gen` field, and in its media type if it serves a file; even generations refuse
/// [`REFUSED`] with 410.
#[must_use]
pub fn config_text(g: u64) -> String {
    let fail = if g.is_multiple_of(2) {
        format!("fail {REFUSED} 410\n")
    } else {
        String::new()
    };
    format!("type .txt text/x-gen{g}\nheader /* X-Gen {g}\n{fail}pass /*\n")
}

/// Where a client's bytes may be cut in two (they may also arrive whole).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cut {
    /// After the first request line: the head is incomplete.
    AfterRequestLine,
    /// Between the first request and the second (pipelined) one.
    BetweenRequests,
}

/// The clients and the reload budget.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scenario {
    /// Name for the CLI and tests.
    pub name: &'static str,
    /// Per client (one connection each): the paths it asks for, pipelined; the last
    /// request says `Connection: close`. And where its bytes may be cut.
    pub clients: Vec<(Vec<&'static str>, Vec<Cut>)>,
    /// How many reloads may happen.
    pub reloads: u8,
}

impl Scenario {
    /// One client pipelines `/a.txt` and `/b.txt`, another asks for `/b.txt`; one reload.
    #[must_use]
    pub fn once() -> Scenario {
        Scenario {
            name: "once",
            clients: vec![
                (
                    vec!["/a.txt", "/b.txt"],
                    vec![Cut::AfterRequestLine, Cut::BetweenRequests],
                ),
                (vec!["/b.txt"], vec![Cut::AfterRequestLine]),
            ],
            reloads: 1,
        }
    }

    /// The same clients; two reloads (generation 2 refuses `/b.txt`, 3 serves it again).
    #[must_use]
    pub fn twice() -> Scenario {
        Scenario {
            name: "twice",
            reloads: 2,
            ..Scenario::once()
        }
    }

    /// Every scenario `weir-model --model reload` checks.
    #[must_use]
    pub fn all() -> Vec<Scenario> {
        vec![Scenario::once(), Scenario::twice()]
    }
}

/// A deliberately broken reload (a test shows it is caught).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReloadFault {
    /// The honest one.
    None,
    /// The reload moves the requests in flight to the new configuration too
    /// (`Server::reload_in_flight_too`). Breaks "a response never mixes generations".
    InFlightToo,
}

/// A client's bytes, worked out once.
#[derive(Clone, Debug)]
struct Script {
    bytes: Vec<u8>,
    /// Where each request's head ends (the offset after its empty line).
    head_ends: Vec<usize>,
    /// The offsets its bytes may be cut at, in order.
    cuts: Vec<usize>,
}

impl Script {
    fn new(paths: &[&str], cuts: &[Cut]) -> Script {
        let mut bytes = Vec::new();
        let mut head_ends = Vec::new();
        let mut line_end = 0;
        for (i, path) in paths.iter().enumerate() {
            bytes.extend_from_slice(format!("GET {path} HTTP/1.1\r\n").as_bytes());
            if i == 0 {
                line_end = bytes.len();
            }
            bytes.extend_from_slice(b"Host: h\r\n");
            if i + 1 == paths.len() {
                bytes.extend_from_slice(b"Connection: close\r\n");
            }
            bytes.extend_from_slice(b"\r\n");
            head_ends.push(bytes.len());
        }
        let mut cuts: Vec<usize> = cuts
            .iter()
            .map(|cut| match cut {
                Cut::AfterRequestLine => line_end,
                Cut::BetweenRequests => head_ends[0],
            })
            .collect();
        cuts.sort_unstable();
        Script {
            bytes,
            head_ends,
            cuts,
        }
    }
}

/// The model: a scenario and a fault (or none).
#[derive(Clone, Debug)]
pub struct ReloadModel {
    /// Clients and reload budget.
    pub scenario: Scenario,
    /// The deliberate bug, if any.
    pub fault: ReloadFault,
    /// Generation `g`'s configuration at index `g - 1`.
    configs: Vec<ConfigRef>,
    scripts: Vec<Script>,
}

/// An effect awaiting its answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Pending {
    /// Read from a connection.
    Read {
        /// The connection.
        conn: ConnId,
        /// At most this many bytes.
        max: usize,
    },
    /// Write to a connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// What to write.
        chunk: Chunk,
    },
    /// Open a file for the request on `conn`.
    Open {
        /// The connection whose request asked.
        conn: ConnId,
        /// The effect's token.
        token: Token,
        /// The path.
        path: PathBuf,
    },
    /// Read an open file into the document cache, for the request on `conn`.
    ReadFile {
        /// The connection whose request asked.
        conn: ConnId,
        /// The effect's token.
        token: Token,
        /// The open file.
        file: FileId,
        /// Where to start.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
}

impl Pending {
    fn conn(&self) -> ConnId {
        match self {
            Pending::Read { conn, .. }
            | Pending::Send { conn, .. }
            | Pending::Open { conn, .. }
            | Pending::ReadFile { conn, .. } => *conn,
        }
    }
}

/// What a response showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Answer {
    /// Its status.
    pub status: u16,
    /// The one generation it showed, or `None` if it showed none or several (the world's
    /// `bad_response` says why).
    pub shows: Option<u64>,
}

/// One request, as the client and the model see it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Request {
    /// The generation in force when its last head byte was handed to the core.
    pub sent: Option<u64>,
    /// The generation in force when the core parsed its head (it started).
    pub started: Option<u64>,
    /// A reload landed while it waited on the file system (an `Open` or a `ReadFile`).
    pub crossed: bool,
    /// Its response, once the client has read it whole.
    pub answer: Option<Answer>,
}

/// One client, as the shell and the client see it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Client {
    /// Script bytes delivered.
    pub delivered: usize,
    /// The server closed the connection.
    pub closed: bool,
    /// The server shut down its write side.
    pub shut: bool,
    /// Bytes received and not yet read as a complete response.
    pub wire: Vec<u8>,
    /// Its requests, in order.
    pub requests: Vec<Request>,
}

/// The state: the real `Server` and the shell around it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReloadWorld {
    /// The core.
    pub server: Server,
    /// Effects awaiting an answer, in the order they were asked for.
    pub pending: Vec<Pending>,
    /// Open files, by the index of the model's file each is.
    pub open: BTreeMap<FileId, usize>,
    /// One per connection.
    pub clients: Vec<Client>,
    /// Reloads left.
    pub reloads_left: u8,
    /// The first broken rule of the effect contract, if any.
    pub contract: Option<&'static str>,
    /// Why a response did not show exactly one generation, if one did not.
    pub bad_response: Option<String>,
}

/// What can happen next.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReloadAction {
    /// Pending read `k` gets the client's bytes up to offset `end` (described).
    Deliver(usize, usize, String),
    /// The shell completes pending effect `k` (described).
    Complete(usize, String),
    /// The operator reloads: generation `g` becomes the core's.
    Reload(u64),
}

impl ReloadModel {
    /// The honest model of `scenario`.
    #[must_use]
    pub fn new(scenario: Scenario) -> ReloadModel {
        ReloadModel::with_fault(scenario, ReloadFault::None)
    }

    /// The model of `scenario` with a broken reload.
    #[must_use]
    pub fn with_fault(scenario: Scenario, fault: ReloadFault) -> ReloadModel {
        let configs = (1..=u64::from(scenario.reloads) + 1)
            .map(|g| {
                let mut load = |_: &Path| Err("no files to load".to_owned());
                let text = config_text(g);
                let mut config: Config =
                    weir_core::config::parse("model.conf", &text, Path::new(ROOT), &mut load)
                        .unwrap_or_else(|d| panic!("{}", d[0]));
                config.limits = model_limits();
                config.timeouts = model_timeouts();
                ConfigRef::new(g, config)
            })
            .collect();
        let scripts = scenario
            .clients
            .iter()
            .map(|(paths, cuts)| Script::new(paths, cuts))
            .collect();
        ReloadModel {
            scenario,
            fault,
            configs,
            scripts,
        }
    }

    /// Lets the core take one call (`call`) about connection `conn` (if any), records the
    /// requests it started, and drains its effects.
    fn step(&self, s: &mut ReloadWorld, conn: Option<ConnId>, call: impl FnOnce(&mut Server)) {
        let before = s.server.counters().requests;
        call(&mut s.server);
        let started = s.server.counters().requests - before;
        let generation = s.server.config().generation();
        for _ in 0..started {
            let next = conn.and_then(|c| {
                s.clients
                    .get_mut(idx(c))?
                    .requests
                    .iter_mut()
                    .find(|r| r.started.is_none())
            });
            match next {
                Some(r) => r.started = Some(generation),
                None => {
                    s.contract
                        .get_or_insert("a request started that no client sent");
                }
            }
        }
        self.drain(s, conn);
    }

    /// Drains `poll_effect` to `None`, carrying out what needs no answer. `conn` is the
    /// connection the call was about: the files it asks for are its request's.
    fn drain(&self, s: &mut ReloadWorld, about: Option<ConnId>) {
        while let Some(effect) = s.server.poll_effect() {
            let conn = match &effect {
                Effect::Read { conn, .. }
                | Effect::Send { conn, .. }
                | Effect::ShutdownWrite { conn }
                | Effect::Close { conn } => Some(*conn),
                _ => None,
            };
            if conn.is_some_and(|c| s.clients[idx(c)].closed) {
                s.contract
                    .get_or_insert("an effect for a closed connection");
            }
            let outstanding = |s: &ReloadWorld, read: bool, conn: ConnId| {
                s.pending.iter().any(|p| {
                    p.conn() == conn
                        && if read {
                            matches!(p, Pending::Read { .. })
                        } else {
                            matches!(p, Pending::Send { .. })
                        }
                })
            };
            match effect {
                Effect::Read { conn, max } => {
                    if outstanding(s, true, conn) {
                        s.contract
                            .get_or_insert("two reads outstanding on one connection");
                    }
                    s.pending.push(Pending::Read { conn, max });
                }
                Effect::Send { conn, chunk } => {
                    if outstanding(s, false, conn) {
                        s.contract
                            .get_or_insert("two sends outstanding on one connection");
                    }
                    s.pending.push(Pending::Send { conn, chunk });
                }
                Effect::Open { token, path } => match about {
                    Some(conn) => s.pending.push(Pending::Open { conn, token, path }),
                    None => {
                        s.contract.get_or_insert("an Open for no connection's call");
                    }
                },
                Effect::ReadFile {
                    token,
                    file,
                    offset,
                    len,
                } => match about {
                    Some(conn) => s.pending.push(Pending::ReadFile {
                        conn,
                        token,
                        file,
                        offset,
                        len,
                    }),
                    None => {
                        s.contract
                            .get_or_insert("a ReadFile for no connection's call");
                    }
                },
                Effect::CloseFile { file } => {
                    if s.open.remove(&file).is_none() {
                        s.contract.get_or_insert("CloseFile for a file not open");
                    }
                }
                Effect::ShutdownWrite { conn } => {
                    s.clients[idx(conn)].shut = true;
                    self.read_responses(s, conn);
                }
                Effect::Close { conn } => {
                    // Its outstanding read (the client waiting) is abandoned.
                    // (An `Open` or a `ReadFile` still completes, and its file is closed.)
                    s.pending.retain(|p| {
                        p.conn() != conn
                            || matches!(p, Pending::Open { .. } | Pending::ReadFile { .. })
                    });
                    let c = &mut s.clients[idx(conn)];
                    c.closed = true;
                    c.shut = true;
                    self.read_responses(s, conn);
                }
                Effect::PauseAccept
                | Effect::ResumeAccept
                | Effect::AccessLog { .. }
                | Effect::ErrorLog { .. } => {}
                _ => {
                    s.contract
                        .get_or_insert("an effect the modelled site never asks for");
                }
            }
        }
    }

    fn describe(p: &Pending) -> String {
        match p {
            Pending::Read { conn, .. } => format!("conn {} reads", conn.0),
            Pending::Send { conn, chunk } => match chunk {
                Chunk::Bytes(b) => format!("conn {} sends {}", conn.0, summary(b)),
                Chunk::File { file, offset, len } => format!(
                    "conn {} sends file {} bytes {}..{}",
                    conn.0,
                    file.0 .0,
                    offset,
                    offset + len
                ),
            },
            Pending::Open { conn, token, path } => format!(
                "open {} for conn {} (token {})",
                path.display(),
                conn.0,
                token.0
            ),
            Pending::ReadFile {
                conn,
                token,
                file,
                offset,
                len,
            } => format!(
                "read file {} bytes {}..{} for conn {} (token {})",
                file.0 .0,
                offset,
                offset + len,
                conn.0,
                token.0
            ),
        }
    }

    /// The bytes `len` at `offset` of open file `file`.
    fn read_file(s: &mut ReloadWorld, file: FileId, offset: u64, len: u64) -> Vec<u8> {
        let Some(&i) = s.open.get(&file) else {
            s.contract.get_or_insert("a read of a file not open");
            return Vec::new();
        };
        let all = FILES[i].1;
        // unwrap-free: the model's files are a few bytes long.
        let from = usize::try_from(offset).expect("small").min(all.len());
        let to = (from + usize::try_from(len).expect("small")).min(all.len());
        all[from..to].to_vec()
    }

    fn complete(&self, s: &mut ReloadWorld, k: usize) {
        match s.pending.remove(k) {
            // Reads are delivered by `Deliver`.
            Pending::Read { .. } => {}
            Pending::Send { conn, chunk } => {
                let bytes = match &chunk {
                    Chunk::Bytes(b) => b.to_vec(),
                    Chunk::File { file, offset, len } => {
                        let mut out = Self::read_file(s, *file, *offset, *len);
                        out.resize(usize::try_from(*len).expect("small"), b'?');
                        out
                    }
                };
                s.clients[idx(conn)].wire.extend_from_slice(&bytes);
                self.read_responses(s, conn);
                let n = chunk.len();
                self.step(s, Some(conn), |server| {
                    server.handle(Input::Sent { conn, n }, NOW);
                });
            }
            Pending::Open { conn, token, path } => {
                let found = FILES
                    .iter()
                    .position(|(url, _, _)| Path::new(ROOT).join(&url[1..]) == path);
                let result = match found {
                    Some(i) => {
                        s.open.insert(FileId(token), i);
                        Completion::Opened(FileMeta {
                            kind: FileKind::File,
                            len: FILES[i].1.len() as u64,
                            mtime: UnixTime(1_600_000_000),
                            inode: FILES[i].2,
                        })
                    }
                    None => Completion::Failed(IoError::NotFound),
                };
                self.step(s, Some(conn), |server| {
                    server.handle(Input::Completed { token, result }, NOW);
                });
            }
            Pending::ReadFile {
                conn,
                token,
                file,
                offset,
                len,
            } => {
                let result = Completion::Data(Bytes::from(Self::read_file(s, file, offset, len)));
                self.step(s, Some(conn), |server| {
                    server.handle(Input::Completed { token, result }, NOW);
                });
            }
        }
    }
}

/// What a transcript says of bytes sent: a response head's status line and the fields
/// that tell generations apart, or just the length.
fn summary(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let Some(head) = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.split("\r\n\r\n").next())
    else {
        return format!("{} bytes", bytes.len());
    };
    let mut lines = head.split("\r\n");
    let mut out = lines.next().unwrap_or_default().to_owned();
    for line in lines {
        let name = line.split(':').next().unwrap_or_default();
        if name.eq_ignore_ascii_case("x-gen") || name.eq_ignore_ascii_case("content-type") {
            out.push_str(", ");
            out.push_str(line);
        }
    }
    format!("{out} ({} bytes)", bytes.len())
}

fn idx(conn: ConnId) -> usize {
    // unwrap-free: the model's connection ids are small indices.
    usize::try_from(conn.0).expect("small connection id")
}

/// The one generation response `r` to a request for `path` shows: its `X-Gen` field, which
/// its status and, for a file, its media type must agree with; or why it shows none or
/// several.
fn shows(r: &Response, path: &str) -> Result<u64, &'static str> {
    let fields: Vec<&str> = r.fields_named("x-gen").collect();
    let [field] = fields.as_slice() else {
        return Err("a response without exactly one X-Gen field");
    };
    let g: u64 = field
        .parse()
        .map_err(|_| "an X-Gen field that names no generation")?;
    let status = if path == REFUSED && g.is_multiple_of(2) {
        410
    } else {
        200
    };
    if r.status != status {
        return Err("a status of another generation than its X-Gen");
    }
    if status == 200 {
        if r.field("content-type") != Some(format!("text/x-gen{g}").as_str()) {
            return Err("a media type of another generation than its X-Gen");
        }
        let body = FILES.iter().find(|f| f.0 == path).map(|f| f.1);
        if body != Some(r.body.as_slice()) {
            return Err("a body that is not the file's");
        }
    }
    Ok(g)
}

impl ReloadModel {
    /// Lets client `conn` read the complete responses on its wire, judging each.
    fn read_responses(&self, s: &mut ReloadWorld, conn: ConnId) {
        let paths = &self.scenario.clients[idx(conn)].0;
        let c = &mut s.clients[idx(conn)];
        loop {
            // Every request is a GET over HTTP/1.1.
            match response::read(&c.wire, Framing::default(), c.shut) {
                Ok(None) => return,
                Err(why) => {
                    s.bad_response.get_or_insert(why);
                    return;
                }
                Ok(Some((r, used))) => {
                    c.wire.drain(..used);
                    if r.is_interim() {
                        continue;
                    }
                    let Some(i) = c.requests.iter().position(|q| q.answer.is_none()) else {
                        s.bad_response
                            .get_or_insert_with(|| "a response to no request".into());
                        return;
                    };
                    let shown = shows(&r, paths[i]);
                    if let Err(why) = shown {
                        s.bad_response.get_or_insert_with(|| why.into());
                    }
                    c.requests[i].answer = Some(Answer {
                        status: r.status,
                        shows: shown.ok(),
                    });
                }
            }
        }
    }

    /// The next generation a reload brings.
    fn next_generation(&self, s: &ReloadWorld) -> u64 {
        s.server.config().generation() + 1
    }
}

impl Model for ReloadModel {
    type State = ReloadWorld;
    type Action = ReloadAction;

    fn init_states(&self) -> Vec<ReloadWorld> {
        let mut s = ReloadWorld {
            server: Server::new(self.configs[0].clone(), NOW),
            pending: Vec::new(),
            open: BTreeMap::new(),
            clients: self
                .scripts
                .iter()
                .map(|script| Client {
                    delivered: 0,
                    closed: false,
                    shut: false,
                    wire: Vec::new(),
                    requests: vec![Request::default(); script.head_ends.len()],
                })
                .collect(),
            reloads_left: self.scenario.reloads,
            contract: None,
            bad_response: None,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], 40000));
        for i in 0..self.scripts.len() {
            let conn = ConnId(i as u64);
            let input = Input::Accepted {
                listener: ListenerId(0),
                conn,
                peer: addr,
                local: addr,
            };
            self.step(&mut s, Some(conn), |server| server.handle(input, NOW));
        }
        vec![s]
    }

    fn actions(&self, s: &ReloadWorld, actions: &mut Vec<ReloadAction>) {
        for (k, p) in s.pending.iter().enumerate() {
            let Pending::Read { conn, max } = p else {
                actions.push(ReloadAction::Complete(k, Self::describe(p)));
                continue;
            };
            let script = &self.scripts[idx(*conn)];
            let from = s.clients[idx(*conn)].delivered;
            // Its bytes all sent, the client waits for its answers.
            if from == script.bytes.len() {
                continue;
            }
            // One piece or two: the first may end at a cut point.
            let mut ends = if from == 0 {
                script.cuts.clone()
            } else {
                Vec::new()
            };
            ends.push(script.bytes.len());
            let mut last = from;
            for end in ends {
                let end = end.min(from + max);
                if end > last {
                    let what = format!(
                        "conn {} reads \"{}\"",
                        conn.0,
                        show(&script.bytes[from..end])
                    );
                    actions.push(ReloadAction::Deliver(k, end, what));
                    last = end;
                }
            }
        }
        // A reload after every connection closed changes nothing a client could see.
        if s.reloads_left > 0 && s.clients.iter().any(|c| !c.closed) {
            actions.push(ReloadAction::Reload(self.next_generation(s)));
        }
    }

    fn next_state(&self, last: &ReloadWorld, action: ReloadAction) -> Option<ReloadWorld> {
        let mut s = last.clone();
        match action {
            ReloadAction::Deliver(k, end, _) => {
                let Pending::Read { conn, .. } = s.pending.remove(k) else {
                    return None;
                };
                let script = &self.scripts[idx(conn)];
                let generation = s.server.config().generation();
                let c = &mut s.clients[idx(conn)];
                let from = c.delivered;
                for (r, &head_end) in script.head_ends.iter().enumerate() {
                    if from < head_end && head_end <= end {
                        c.requests[r].sent = Some(generation);
                    }
                }
                c.delivered = end;
                let data = Bytes::copy_from_slice(&script.bytes[from..end]);
                self.step(&mut s, Some(conn), |server| {
                    server.handle(Input::Received { conn, data }, NOW);
                });
            }
            ReloadAction::Complete(k, _) => self.complete(&mut s, k),
            ReloadAction::Reload(g) => {
                s.reloads_left -= 1;
                // The requests waiting on the file system see the reload land mid-way.
                for p in &s.pending {
                    if let Pending::Open { conn, .. } | Pending::ReadFile { conn, .. } = p {
                        let c = &mut s.clients[idx(*conn)];
                        if let Some(r) = c.requests.iter_mut().rev().find(|r| r.started.is_some()) {
                            r.crossed = true;
                        }
                    }
                }
                let config = self.configs[usize::try_from(g - 1).expect("small")].clone();
                match self.fault {
                    ReloadFault::None => self.step(&mut s, None, |server| {
                        server.handle(Input::Reload(config), NOW);
                    }),
                    ReloadFault::InFlightToo => self.step(&mut s, None, |server| {
                        server.reload_in_flight_too(config, NOW);
                    }),
                }
            }
        }
        (s != *last).then_some(s)
    }

    fn format_action(&self, action: &ReloadAction) -> String {
        match action {
            ReloadAction::Deliver(_, _, what) | ReloadAction::Complete(_, what) => what.clone(),
            ReloadAction::Reload(g) => format!("reload: generation {g}"),
        }
    }

    fn properties(&self) -> Vec<Property<ReloadModel>> {
        let mut properties = vec![
            Property::<ReloadModel>::always(
                "a response never mixes generations (X-Gen, media type and status agree)",
                |_, s| s.bad_response.is_none(),
            ),
            Property::<ReloadModel>::always(
                "a response shows the generation its request started under",
                |_, s| {
                    s.clients.iter().all(|c| {
                        c.requests.iter().all(|r| match r.answer {
                            Some(Answer {
                                shows: Some(g), ..
                            }) => r.started == Some(g),
                            // No generation at all: the property above says so.
                            _ => true,
                        })
                    })
                },
            ),
            Property::<ReloadModel>::always("the core keeps the effect contract", |_, s| {
                s.contract.is_none()
            }),
            Property::<ReloadModel>::eventually(
                "every request is answered, every connection closed, every file closed",
                |_, s| {
                    s.clients
                        .iter()
                        .all(|c| c.closed && c.requests.iter().all(|r| r.answer.is_some()))
                        && s.pending.is_empty()
                        && s.open.is_empty()
                        && s.server.connection_count() == 0
                },
            ),
            Property::<ReloadModel>::sometimes(
                "a request started under generation 1 is answered after a reload landed while it waited on the file system",
                |_, s| any_answered(s, |r, g| g == 1 && r.crossed),
            ),
            Property::<ReloadModel>::sometimes(
                "a request started after the reload is answered under generation 2",
                |_, s| any_answered(s, |r, g| g == 2 && r.started == Some(2)),
            ),
            Property::<ReloadModel>::sometimes(
                "a /b.txt request started under generation 2 is answered 410",
                |_, s| {
                    s.clients.iter().any(|c| {
                        c.requests.iter().any(|r| {
                            r.started == Some(2) && r.answer.is_some_and(|a| a.status == 410)
                        })
                    })
                },
            ),
            Property::<ReloadModel>::sometimes(
                "a pipelined request sent under generation 1 starts under generation 2",
                |_, s| any_answered(s, |r, _| r.sent == Some(1) && r.started == Some(2)),
            ),
        ];
        if self.scenario.reloads > 1 {
            properties.push(Property::<ReloadModel>::sometimes(
                "a request started under generation 2 is answered after the reload to 3 landed while it waited",
                |_, s| any_answered(s, |r, g| g == 2 && r.crossed),
            ));
        }
        properties
    }
}

/// True if some request was answered showing one generation `g` with `p(request, g)`.
fn any_answered(s: &ReloadWorld, p: impl Fn(&Request, u64) -> bool) -> bool {
    s.clients.iter().any(|c| {
        c.requests
            .iter()
            .any(|r| r.answer.and_then(|a| a.shows).is_some_and(|g| p(r, g)))
    })
}

#[cfg(test)]
mod tests {
    use stateright::{Checker, HasDiscoveries, Model};

    use super::*;

    /// The transcript of the path the checker found for `property`, and its last state.
    fn found<C: Checker<ReloadModel>>(
        checker: &C,
        property: &'static str,
    ) -> (Vec<String>, ReloadWorld) {
        let path = checker
            .discovery(property)
            .unwrap_or_else(|| panic!("no path for {property:?}"));
        let last = path.last_state().clone();
        let transcript = path
            .into_actions()
            .iter()
            .map(|a| checker.model().format_action(a))
            .collect();
        (transcript, last)
    }

    #[test]
    fn reload_the_honest_models_hold_and_their_state_counts_are_pinned() {
        for (scenario, unique) in [(Scenario::once(), 6_545), (Scenario::twice(), 22_700)] {
            let name = scenario.name;
            let checker = ReloadModel::new(scenario).checker().spawn_bfs().join();
            checker.assert_properties();
            assert_eq!(checker.unique_state_count(), unique, "{name}");
        }
    }

    #[test]
    fn reload_a_request_keeps_its_generation_across_a_reload() {
        let checker = ReloadModel::new(Scenario::once())
            .checker()
            .spawn_bfs()
            .join();
        // Routed under 1, its file still opening or being read when 2 came: answered whole
        // under 1, after the reload.
        let (t, last) = found(
            &checker,
            "a request started under generation 1 is answered after a reload landed while it waited on the file system",
        );
        let reload = t
            .iter()
            .position(|a| a == "reload: generation 2")
            .unwrap_or_else(|| panic!("a reload: {t:?}"));
        assert!(
            t[..reload]
                .iter()
                .any(|a| a.starts_with("open") || a.starts_with("read file")),
            "the file system was busy for it before the reload: {t:?}"
        );
        assert!(
            t[reload..]
                .iter()
                .any(|a| a.contains("200 OK, Content-Type: text/x-gen1, X-Gen: 1")),
            "answered under 1 after it: {t:?}"
        );
        assert!(last
            .clients
            .iter()
            .flat_map(|c| &c.requests)
            .any(|r| r.started == Some(1) && r.crossed));
        // A request's head handed over before the reload, pipelined behind another, starts
        // under the generation in force when it is parsed.
        let (t, last) = found(
            &checker,
            "a pipelined request sent under generation 1 starts under generation 2",
        );
        let reload = t
            .iter()
            .position(|a| a == "reload: generation 2")
            .unwrap_or_else(|| panic!("a reload: {t:?}"));
        assert!(
            t[..reload]
                .iter()
                .any(|a| a.starts_with("conn 0 reads") && a.contains("GET /b.txt")),
            "its bytes were handed over before the reload: {t:?}"
        );
        let r = &last.clients[0].requests[1];
        assert_eq!((r.sent, r.started), (Some(1), Some(2)), "{t:?}");
        assert_eq!(
            r.answer,
            Some(Answer {
                status: 410,
                shows: Some(2)
            }),
            "{t:?}"
        );
    }

    #[test]
    fn reload_moving_requests_in_flight_is_caught() {
        let property = "a response never mixes generations (X-Gen, media type and status agree)";
        let checker = ReloadModel::with_fault(Scenario::once(), ReloadFault::InFlightToo)
            .checker()
            .finish_when(HasDiscoveries::AnyOf([property].into()))
            .spawn_bfs()
            .join();
        let (t, last) = found(&checker, property);
        assert_eq!(
            last.bad_response.as_deref(),
            Some("a media type of another generation than its X-Gen"),
            "{t:?}"
        );
        // Routed under 1 before the reload (its file asked for), typed under 2 after it.
        let reload = t
            .iter()
            .position(|a| a == "reload: generation 2")
            .unwrap_or_else(|| panic!("a reload: {t:?}"));
        assert!(t[..reload].iter().any(|a| a.starts_with("open")), "{t:?}");
        assert!(
            t[reload..]
                .iter()
                .any(|a| a.contains("Content-Type: text/x-gen2, X-Gen: 1")),
            "{t:?}"
        );
    }

    #[test]
    fn reload_responses_are_judged_by_every_sign_of_their_generation() {
        let response = |status: u16, fields: &[(&str, &str)], body: &[u8]| Response {
            status,
            reason: String::new(),
            fields: fields
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned()))
                .collect(),
            body: body.to_vec(),
            trailers: Vec::new(),
            delimiter: weir_testkit::response::Delimiter::Length,
        };
        let a = [("Content-Type", "text/x-gen1"), ("X-Gen", "1")];
        assert_eq!(shows(&response(200, &a, b"alpha\n"), "/a.txt"), Ok(1));
        let mixed = [("Content-Type", "text/x-gen2"), ("X-Gen", "1")];
        assert!(shows(&response(200, &mixed, b"alpha\n"), "/a.txt").is_err());
        let two = [("X-Gen", "1"), ("X-Gen", "2")];
        assert!(shows(&response(410, &two, b""), "/b.txt").is_err());
        assert_eq!(
            shows(&response(410, &[("X-Gen", "2")], b""), "/b.txt"),
            Ok(2)
        );
        // 410 is generation 2's answer: with X-Gen 1 it mixes, and so does 200 with X-Gen 2.
        assert!(shows(&response(410, &[("X-Gen", "1")], b""), "/b.txt").is_err());
        let b2 = [("Content-Type", "text/x-gen2"), ("X-Gen", "2")];
        assert!(shows(&response(200, &b2, b"beta\n"), "/b.txt").is_err());
        assert!(config_text(2).contains("fail /b.txt 410"));
        assert!(!config_text(3).contains("fail"));
    }
}
