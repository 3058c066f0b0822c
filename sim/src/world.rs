//! The simulated world: the clock, the network, the clients and the file system, answering
//! the core's effects the way the production shell would, with faults.
//!
//! # Theory of operation
//!
//! One `World` holds the real `weir_core::server::Server` and everything around it. All
//! that will happen is a queue of timestamped events, ordered by `(time, sequence)` so the
//! order is total and depends only on the seed; the virtual clock jumps to whichever comes
//! first, the next event or the server's `poll_timeout()`:
//!
//! ```text
//!        ┌────────────── queue: (Time, seq, Event) ◄───────────────┐
//!        ▼                                                          │ schedule
//!   pop earliest ─► Connect · Write · Arrive · ReadDone · SendDone ·│ OpenDone ·
//!        │          FsChange · Reset · Spawn                        │
//!        │ (or the server's deadline: handle_timeout)               │
//!        ▼                                                          │
//!   server.handle(input, now) ─► drain poll_effect() to None ─► each effect is checked
//!                                (contract) and answered by scheduling an event ─┘
//! ```
//!
//! Effects never call `handle` directly: every answer is an event, so the calling
//! contract (drain everything before the next input) holds by construction.
//!
//! * **Network.** A client writes its stream in random pieces (`split_max`), each arriving
//!   after a random delay but in order (TCP). A `Read` is answered with a random-sized
//!   slice of what has arrived (never more than `max`), with `PeerClosed` once the client
//!   shut its side and everything was read, or with `ConnFailed` once it reset. A `Send`
//!   completes after a delay, sometimes short (`Sent { n }` with `n` < len: a slow reader).
//! * **Clients** pipeline or wait for each answer, may half-close, stay silent until the
//!   idle timeout, reset, or stall in the middle of a request for longer than the timeouts.
//! * **Files** change on a schedule (`SimFs`); an `Open` completes after a delay, and
//!   sometimes fails with "too many open files".
//!
//! A run has two phases (TigerBeetle's VOPR): **safety**, `steps` events with faults, every
//! checker watching; then **liveness**: faults heal, no new clients, each client finishes
//! what it started, and the world must go quiet within a budget with every connection,
//! descriptor and timer released, after which `Shutdown` must give `Exit { code: 0 }`.
//!
//! * **Scripts** (`procs`): a `Spawn` of a script under `cgi-bin/` starts a simulated
//!   process whose name says what it does; its pipes answer `StreamWrite` in random
//!   partial pieces and `StreamRead` with random slices, and it exits (or is killed)
//!   with `Exited` before or after its EOFs. Under faults a spawn sometimes fails with
//!   "too many processes". The gateway book (`oracle::gateway`) checks every process
//!   effect and input and records, per request, what the judge needs for 503 and 504.
//!   Around every input the world counts the script requests that wait without a
//!   process (`farm_waiting`), so the book can tell when the farm and its queue were
//!   both full.
//! * **Services** (`services`): a `Connect` to the service's socket is answered
//!   `Connected` (or `Refused` while a restart keeps it down), and the stream effects on
//!   it go to a simulated FastCGI server, which answers them as a socket would; the
//!   service book (`oracle::service`) checks every one. Under faults the service
//!   restarts now and then: every process dies at once, connections are refused, and a
//!   few milliseconds later the world publishes `ServiceState` `Down` (as the supervisor
//!   would once it saw the deaths), then `Ready` when it is back. What the server
//!   receives is checked against the request: its parameters and its standard input,
//!   exactly the body.

use core::fmt::Write as _;
use core::hash::Hash as _;
use core::net::SocketAddr;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::path::PathBuf;

use bytes::Bytes;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use weir_core::chunk::Chunk;
use weir_core::config::ConfigRef;
use weir_core::server::{Channel, Completion, Effect, Input, IoError, Server, StreamId};
use weir_core::{ConnId, FileId, ListenerId, Now, Time, Token, UnixTime};

use crate::fs::{SimFs, State};
use crate::options::{Inject, Options};
use crate::oracle::accesslog::{LogBook, Want};
use crate::oracle::contract::Contract;
use crate::oracle::gateway::{self, GatewayBook, ProcInput};
use crate::oracle::judge::Judge;
use crate::oracle::ledger::{Ledger, Progress};
use crate::oracle::model::{self, Routed, Site, TagBook};
use crate::oracle::reload::Generations;
use crate::oracle::service::ServiceBook;
use crate::procs::{Knobs, Procs, Wake, Wakes};
use crate::services::{Notice, Services, SvcKnobs, SvcWake, SvcWakes};
use crate::trace::Fnv;
use crate::workload::{self, End, Memory, Plan};

/// Which checker category a failure belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// The simulation (or the core) panicked.
    Crash,
    /// A checker saw something wrong.
    Safety,
    /// After the faults healed, something never finished or was never released.
    Liveness,
}

impl Category {
    /// The process exit status for this category.
    #[must_use]
    pub fn exit_code(self) -> u8 {
        match self {
            Category::Crash => 2,
            Category::Safety => 3,
            Category::Liveness => 4,
        }
    }
}

/// What broke, where.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The kind of failure.
    pub category: Category,
    /// The step at which it was seen.
    pub step: u64,
    /// The virtual time.
    pub time: Time,
    /// What the checker said.
    pub what: String,
}

/// Counts for the report.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Steps run (both phases).
    pub steps: u64,
    /// Virtual time at the end.
    pub time: Time,
    /// Connections made.
    pub connections: u64,
    /// Requests written.
    pub requests: u64,
    /// Final responses checked.
    pub responses: u64,
    /// Responses by status.
    pub statuses: BTreeMap<u16, u64>,
    /// File-system changes.
    pub fs_changes: u64,
    /// Client resets.
    pub resets: u64,
    /// Short writes.
    pub short_writes: u64,
    /// Failed opens injected.
    pub open_failures: u64,
    /// Access-log lines written.
    pub access_log_lines: u64,
    /// Script requests written.
    pub cgi_requests: u64,
    /// Processes spawned.
    pub spawns: u64,
    /// Processes killed.
    pub kills: u64,
    /// Connections refused (503) at the connection limit.
    pub refused: u64,
    /// Idle connections closed to make room at the connection limit.
    pub shed: u64,
    /// Reloads (generations after the first).
    pub reloads: u64,
    /// Service requests written.
    pub svc_requests: u64,
    /// Streams connected to the service.
    pub svc_streams: u64,
    /// Requests the service received on a stream it had served before (kept alive).
    pub svc_reused: u64,
    /// Service restarts.
    pub svc_restarts: u64,
    /// Processes of the service that died (crashes and restarts).
    pub svc_deaths: u64,
}

/// A successful run's summary.
#[derive(Clone, Debug)]
pub struct Summary {
    /// FNV-1a over every input and effect, in order.
    pub trace_hash: u64,
    /// Counts.
    pub stats: Stats,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Spawn,
    Connect(ConnId),
    Write(ConnId),
    Arrive(ConnId, usize, bool),
    ReadDone(ConnId),
    SendDone(ConnId),
    OpenDone(Token),
    ListDone(Token),
    /// The shell's answer to `Effect::Status`: one worker, no services.
    StatusDone(Token),
    /// A verifier thread's answer to `Effect::VerifyPassword`.
    VerifyDone(Token, bool),
    FileRead(Token, FileId, u64, u64),
    FsChange,
    Reset(ConnId),
    SpawnDone(Token),
    Proc(StreamId, Wake),
    /// The operator reloads: the next generation of the configuration.
    Reload,
    /// A `Connect` completes.
    SvcConnect(Token),
    /// Something scheduled for a service stream.
    Svc(StreamId, SvcWake),
    /// The service restarts: every process dies.
    SvcRestart,
    /// The supervisor publishes that the service is down.
    SvcDown,
    /// The service is back at this socket: `Ready` is published.
    SvcReady(String),
}

struct PendingSend {
    n: u64,
    bytes: Bytes,
}

struct Client {
    plan: Plan,
    remaining: usize,
    out: Vec<u8>,
    written: usize,
    arrived: usize,
    eof_written: bool,
    eof_arrived: bool,
    last_arrival: Time,
    write_scheduled: bool,
    read_max: Option<usize>,
    read_armed: bool,
    send: Option<PendingSend>,
    accepted: bool,
    reset: bool,
    failed: bool,
    closed: bool,
    server_ended: bool,
    ledger: Ledger,
    /// Bytes held back by the `reorder-sends` bug.
    held: Vec<u8>,
    /// The `lose-request-on-reload` bug lost this connection's answers.
    lost: bool,
    /// Bytes the server has been told were sent.
    received: u64,
    /// The highest generation an answer on this connection has shown.
    seen_gen: u64,
}

type Check<T = ()> = Result<T, Failure>;

/// Longest the liveness phase may run, in virtual time and in steps.
const LIVENESS_TIME_MS: u64 = 30 * 60 * 1000;
const LIVENESS_STEPS: u64 = 500_000;

/// The world. See the module documentation.
pub struct World {
    opts: Options,
    rng: ChaCha8Rng,
    server: Server,
    now: Now,
    unix_base: i64,
    queue: BinaryHeap<Reverse<(Time, u64, Event)>>,
    seq: u64,
    fs: SimFs,
    site: Site,
    clients: BTreeMap<ConnId, Client>,
    backlog: VecDeque<ConnId>,
    paused: bool,
    next_conn: u64,
    opens: BTreeMap<Token, (PathBuf, bool)>,
    lists: BTreeMap<Token, PathBuf>,
    exhausted: Vec<Time>,
    contract: Contract,
    tags: TagBook,
    memory: Memory,
    trace: Fnv,
    text: String,
    print_trace: bool,
    step: u64,
    healed: bool,
    exit: Option<i32>,
    stuck: u64,
    stats: Stats,
    procs: Procs,
    book: GatewayBook,
    /// Spawn results waiting to be reported.
    spawns: BTreeMap<Token, Completion>,
    /// Where each request is: its connection and its index in the ledger.
    req_at: BTreeMap<u64, (ConnId, usize)>,
    /// The access-log checker.
    log: LogBook,
    /// Every generation of the configuration loaded so far (see `oracle::reload`).
    gens: Generations,
    /// The drawn configuration's text, from which each generation is made.
    conf_text: String,
    /// The simulated FastCGI servers.
    svcs: Services,
    /// The service checker.
    svc_book: ServiceBook,
    /// `Connect`s not yet completed: their socket, and whether they succeed.
    svc_connects: BTreeMap<Token, (String, bool)>,
    /// Streams that have served a request (for the kept-alive count).
    svc_served: std::collections::BTreeSet<StreamId>,
}

impl World {
    /// Builds the world for `opts`: the configuration, the file system, the server.
    pub fn new(opts: Options, mut rng: ChaCha8Rng, print_trace: bool) -> Check<World> {
        let unix_base = 1_700_000_000 + rng.random_range(0..10_000_000);
        let now = Now {
            mono: Time(0),
            unix: UnixTime(unix_base),
        };
        let (site, text) = workload::site(&mut rng, &opts);
        let fail = |what: String| Failure {
            category: Category::Safety,
            step: 0,
            time: Time(0),
            what,
        };
        // With reloads, generation 1 is already marked as such (see `oracle::reload`).
        let (gen1, gen1_text) = if opts.reload_every_ms.is_some() {
            workload::generation(&site, &text, 1)
        } else {
            (site.clone(), text.clone())
        };
        let config = parse_config(&opts, &gen1, &gen1_text).map_err(fail)?;
        let fs = SimFs::new(
            PathBuf::from(workload::ROOT),
            opts.file_size_max,
            &mut rng,
            now.unix,
        );
        let read_max = (opts.header_bytes_max + 1)
            .max(weir_core::http1::conn::BODY_BUFFER)
            .max(weir_core::http1::conn::LINGER_READ);
        if print_trace {
            println!("config:\n{gen1_text}");
        }
        let knobs = Knobs {
            pipe_capacity: opts.pipe_capacity,
            step_max_ms: opts.script_delay_max_ms,
            header_bytes_max: opts.header_bytes_max,
            swap_stdin: opts.args.inject == Some(Inject::SwapStdin),
            lose_release: opts.args.inject == Some(Inject::LoseRelease),
        };
        let svc_knobs = SvcKnobs {
            capacity: opts.pipe_capacity,
            step_max_ms: opts.script_delay_max_ms,
            header_bytes_max: opts.header_bytes_max,
            lose_eof: opts.args.inject == Some(Inject::LoseServiceEof),
            swap_output: opts.args.inject == Some(Inject::SwapServiceOutput),
            idle_ms: opts.svc_idle_ms,
        };
        Ok(World {
            svcs: Services::new(svc_knobs),
            svc_book: ServiceBook::new(
                workload::SVC_NAME,
                &workload::SVC_SOCKETS,
                opts.svc_connections,
                (opts.gateway_timeout_ms, opts.gateway_timeout_max_ms()),
            ),
            svc_connects: BTreeMap::new(),
            svc_served: std::collections::BTreeSet::new(),
            procs: Procs::new(knobs),
            book: GatewayBook::new(
                opts.cgi_max,
                (opts.gateway_timeout_ms, opts.gateway_timeout_max_ms()),
            ),
            spawns: BTreeMap::new(),
            req_at: BTreeMap::new(),
            log: LogBook::new(opts.access_log),
            gens: Generations::new(gen1),
            conf_text: text,
            server: Server::new(ConfigRef::new(1, config), now),
            contract: Contract::new(read_max, workload::ROOT),
            opts,
            rng,
            now,
            unix_base,
            queue: BinaryHeap::new(),
            seq: 0,
            fs,
            site,
            clients: BTreeMap::new(),
            backlog: VecDeque::new(),
            paused: false,
            next_conn: 1,
            opens: BTreeMap::new(),
            lists: BTreeMap::new(),
            exhausted: Vec::new(),
            tags: TagBook::default(),
            memory: Memory::default(),
            trace: Fnv::new(),
            text: String::new(),
            print_trace,
            step: 0,
            healed: false,
            exit: None,
            stuck: 0,
            stats: Stats::default(),
        })
    }

    /// Runs both phases.
    pub fn run(&mut self) -> Check<Summary> {
        self.schedule(0, Event::Spawn);
        self.schedule(0, Event::FsChange);
        if let Some(every) = self.opts.reload_every_ms {
            let d = self.rng.random_range(1..=2 * every);
            self.schedule(d, Event::Reload);
        }
        if let (true, Some(every)) = (self.opts.svc, self.opts.svc_restart_every_ms) {
            let d = self.rng.random_range(1..=2 * every);
            self.schedule(d, Event::SvcRestart);
        }
        while self.step < self.opts.args.steps {
            self.tick()?;
        }
        self.heal();
        let deadline = self.now.mono.0 + LIVENESS_TIME_MS;
        let budget = self.step + LIVENESS_STEPS;
        while self.tick()? {
            if self.now.mono.0 > deadline || self.step > budget {
                return Err(self.liveness(format!(
                    "the world did not go quiet within {LIVENESS_TIME_MS}ms / {LIVENESS_STEPS} \
                     steps of healing:\n{}",
                    self.describe()
                )));
            }
        }
        self.finish()?;
        self.stats.steps = self.step;
        self.stats.time = self.now.mono;
        self.stats.shed = self.server.counters().shed;
        Ok(Summary {
            trace_hash: self.trace.finish(),
            stats: self.stats.clone(),
        })
    }

    fn safety(&self, what: impl Into<String>) -> Failure {
        Failure {
            category: Category::Safety,
            step: self.step,
            time: self.now.mono,
            what: what.into(),
        }
    }

    fn liveness(&self, what: impl Into<String>) -> Failure {
        Failure {
            category: Category::Liveness,
            step: self.step,
            time: self.now.mono,
            what: what.into(),
        }
    }

    fn schedule(&mut self, after_ms: u64, e: Event) {
        self.seq += 1;
        self.queue
            .push(Reverse((Time(self.now.mono.0 + after_ms), self.seq, e)));
    }

    fn chance(&mut self, permille: u32) -> bool {
        permille > 0 && self.rng.random_range(0..1000) < permille
    }

    fn advance(&mut self, t: Time) {
        if t > self.now.mono {
            self.now.mono = t;
            self.now.unix = UnixTime(self.unix_base + (t.0 / 1000) as i64);
            self.stuck = 0;
        }
    }

    /// One step: the next event or the server's deadline. `false` when nothing is left.
    fn tick(&mut self) -> Check<bool> {
        let event_at = self.queue.peek().map(|Reverse((t, _, _))| *t);
        let timer = self.server.poll_timeout();
        let fire_timer = match (event_at, timer) {
            (None, None) => return Ok(false),
            (Some(e), Some(t)) => t < e,
            (None, Some(_)) => true,
            (Some(_), None) => false,
        };
        self.step += 1;
        if fire_timer {
            // unwrap: fire_timer is only true when there is a timer.
            let t = timer.unwrap();
            if t <= self.now.mono {
                self.stuck += 1;
                if self.stuck > 10_000 {
                    return Err(self.liveness(format!(
                        "poll_timeout() stays at {t} (now {}) however often it fires",
                        self.now.mono
                    )));
                }
            }
            self.advance(t);
            let t = self.now.mono.0;
            self.record(format_args!("{t} timeout"));
            let waiting = self.farm_waiting();
            self.book.begin_handle();
            self.server.handle_timeout(self.now);
            self.drain()?;
            self.book.end_handle(&waiting);
        } else if let Some(Reverse((t, _, e))) = self.queue.pop() {
            self.advance(t);
            self.event(e)?;
        }
        if let Some(m) = self.book.overdue(self.now.mono) {
            return Err(self.safety(m));
        }
        if let Some(m) = self.svc_book.overdue(self.now.mono) {
            return Err(self.safety(m));
        }
        Ok(true)
    }

    fn record(&mut self, args: core::fmt::Arguments<'_>) {
        self.text.clear();
        let _ = self.text.write_fmt(args);
        self.trace.write(self.text.as_bytes());
        self.trace.write(b"\n");
        if self.print_trace {
            println!("{}", self.text);
        }
    }

    /// Records an input: its derived `Hash` goes into the trace hash (see `trace`);
    /// `--trace` prints it whole.
    fn record_input(&mut self, input: &Input) {
        self.record_io('<', input);
        input.hash(&mut self.trace);
    }

    /// Records an effect, as inputs are recorded.
    fn record_effect(&mut self, e: &Effect) {
        self.record_io('>', e);
        e.hash(&mut self.trace);
    }

    fn record_io(&mut self, arrow: char, item: &dyn core::fmt::Debug) {
        let t = self.now.mono.0;
        self.trace.write(&t.to_le_bytes());
        self.trace.write(&[arrow as u8]);
        if self.print_trace {
            println!("{t} {arrow} {item:?}");
        }
    }

    fn input(&mut self, input: Input) -> Check {
        self.record_input(&input);
        let waiting = self.farm_waiting();
        self.book.begin_handle();
        self.server.handle(input, self.now);
        self.drain()?;
        self.book.end_handle(&waiting);
        Ok(())
    }

    /// The script requests in the server that have no process (yet): heads delivered,
    /// not answered, on connections still open. A superset of the farm's queue (plus
    /// the request being decided), whatever the core's state.
    fn farm_waiting(&self) -> Vec<u64> {
        if !self.opts.cgi {
            return Vec::new();
        }
        let mut out = Vec::new();
        for c in self.clients.values() {
            if c.closed || c.failed || !c.accepted {
                continue;
            }
            for e in c.ledger.entries.iter().skip_while(|e| e.answered) {
                if e.req.cgi
                    && !e.req.svc
                    && e.head.is_some()
                    && !e.answered
                    && self.book.request(e.req.id).procs.is_empty()
                {
                    out.push(e.req.id);
                }
            }
        }
        out
    }

    /// Does the site run a script for this request, or hand it to the service? (The
    /// model's routing: the world must know which requests the farm counts.)
    fn runs_script(&self, req: &workload::Request, peer: std::net::Ipv4Addr) -> (bool, bool) {
        if !matches!(
            req.method.as_str(),
            "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "OPTIONS" | "PATCH"
        ) || !matches!(req.expect, workload::Expect::Model)
        {
            return (false, false);
        }
        let Some((path, query)) = model::normalize(&req.target) else {
            return (false, false);
        };
        let creds = model::Creds::of(&req.headers);
        match model::route(&self.site, &path, query.as_deref(), peer, creds).0 {
            Routed::Cgi(_) => (true, false),
            Routed::Service(_) => (true, true),
            _ => (false, false),
        }
    }

    fn drain(&mut self) -> Check {
        while let Some(e) = self.server.poll_effect() {
            self.record_effect(&e);
            self.effect(e)?;
        }
        Ok(())
    }

    fn client(&mut self, conn: ConnId) -> &mut Client {
        // unwrap: callers pass connections the world created (the contract checker
        // refused any other before this is reached).
        self.clients.get_mut(&conn).unwrap()
    }

    fn effect(&mut self, e: Effect) -> Check {
        match e {
            Effect::Read { conn, max } => {
                self.contract.read(conn, max).map_err(|m| self.safety(m))?;
                self.client(conn).read_max = Some(max);
                self.arm_read(conn);
            }
            Effect::Send { conn, chunk } => {
                self.contract
                    .send(conn, chunk.len())
                    .map_err(|m| self.safety(m))?;
                let mut bytes = self.chunk_bytes(&chunk)?;
                let len = bytes.len() as u64;
                let n = if !self.healed && len > 1 && self.chance(self.opts.short_write) {
                    self.stats.short_writes += 1;
                    self.rng.random_range(1..len)
                } else {
                    len
                };
                bytes.truncate(n as usize);
                let file_chunk = matches!(chunk, Chunk::File { .. });
                if self.opts.args.inject == Some(Inject::DropFinalChunk)
                    && file_chunk
                    && n == len
                    && self.rng.random_bool(0.3)
                {
                    bytes.truncate(bytes.len().saturating_sub(1));
                }
                self.client(conn).send = Some(PendingSend { n, bytes });
                let d = self.rng.random_range(0..=self.opts.net_delay_max_ms / 2);
                self.schedule(d, Event::SendDone(conn));
            }
            Effect::ShutdownWrite { conn } => {
                self.contract
                    .shutdown_write(conn)
                    .map_err(|m| self.safety(m))?;
                self.server_end(conn)?;
            }
            Effect::Close { conn } => {
                self.contract.close(conn).map_err(|m| self.safety(m))?;
                let c = self.client(conn);
                c.closed = true;
                c.read_max = None;
                c.send = None;
                self.server_end(conn)?;
            }
            Effect::Refuse { conn, answer } => {
                self.contract.refuse(conn).map_err(|m| self.safety(m))?;
                if !answer.starts_with(b"HTTP/1.1 503 ") {
                    return Err(self.safety(format!(
                        "Refuse of {conn:?} with an answer that is no 503: {:?}",
                        String::from_utf8_lossy(&answer)
                    )));
                }
                self.stats.refused += 1;
                // The client never had a request read: it is owed nothing, and the
                // connection simply ends (the 503 is checked above, not by its ledger).
                let c = self.client(conn);
                c.closed = true;
                c.read_max = None;
                c.send = None;
                self.server_end(conn)?;
            }
            Effect::PauseAccept => self.paused = true,
            Effect::ResumeAccept => {
                self.paused = false;
                for conn in std::mem::take(&mut self.backlog) {
                    self.schedule(0, Event::Connect(conn));
                }
            }
            Effect::Open { token, path } => {
                self.contract
                    .open(token, &path)
                    .map_err(|m| self.safety(m))?;
                let exhausted = !self.healed && self.chance(self.opts.open_exhausted);
                self.opens.insert(token, (path, exhausted));
                let d = self.rng.random_range(0..=self.opts.open_delay_max_ms);
                self.schedule(d, Event::OpenDone(token));
            }
            Effect::Status { token } => {
                self.contract.token(token).map_err(|m| self.safety(m))?;
                self.schedule(0, Event::StatusDone(token));
            }
            // A verifier thread: the core's own check, answered after a while (a hash is
            // slow), in any order with everything else.
            Effect::VerifyPassword {
                token,
                hash,
                password,
            } => {
                self.contract.token(token).map_err(|m| self.safety(m))?;
                let ok = weir_core::rules::auth::verify(&hash, &password.0);
                let d = self.rng.random_range(0..=self.opts.open_delay_max_ms);
                self.schedule(d, Event::VerifyDone(token, ok));
            }
            Effect::ReadDir { token, path } => {
                self.contract
                    .open(token, &path)
                    .map_err(|m| self.safety(m))?;
                let d = self.rng.random_range(0..=self.opts.open_delay_max_ms);
                self.lists.insert(token, path);
                self.schedule(d, Event::ListDone(token));
            }
            Effect::ReadFile {
                token,
                file,
                offset,
                len,
            } => {
                self.contract.token(token).map_err(|m| self.safety(m))?;
                let d = self.rng.random_range(0..=self.opts.open_delay_max_ms);
                self.schedule(d, Event::FileRead(token, file, offset, len));
            }
            Effect::CloseFile { file } => {
                if self.opts.args.inject == Some(Inject::LoseCloseFile) && self.rng.random_bool(0.2)
                {
                    return Ok(());
                }
                self.fs.close(file).map_err(|m| self.safety(m))?;
            }
            // Log lines are part of the trace; nothing answers them. Access-log records go
            // to their checker (unless the `lose-log-record` bug sheds one, or the
            // `duplicate-log-record` bug writes one twice).
            Effect::ErrorLog { .. } => {}
            Effect::AccessLog { line } => {
                self.stats.access_log_lines += 1;
                if self.opts.args.inject == Some(Inject::LoseLogRecord) && self.rng.random_bool(0.1)
                {
                    return Ok(());
                }
                if self.opts.args.inject == Some(Inject::DuplicateLogRecord)
                    && self.rng.random_bool(0.1)
                {
                    self.log
                        .record(&line, self.now)
                        .map_err(|m| self.safety(m))?;
                }
                self.log
                    .record(&line, self.now)
                    .map_err(|m| self.safety(m))?;
            }
            // Gateways: answered by the simulated processes (`procs`), after the gateway
            // book has checked them; a site drawn without an `exec` rule gives the core
            // no business starting a process.
            // Streams to the service (named by their `Connect`) go to its servers.
            Effect::StreamWrite { stream, .. }
            | Effect::StreamShutdownWrite { stream }
            | Effect::StreamRead { stream, .. }
            | Effect::StreamClose { stream }
                if self.svc_book.knows(stream) =>
            {
                self.service_effect(e)?;
            }
            Effect::Connect { .. } | Effect::ServiceAnswered { .. } if self.opts.svc => {
                self.service_effect(e)?;
            }
            gateway @ (Effect::Spawn { .. }
            | Effect::StreamWrite { .. }
            | Effect::StreamShutdownWrite { .. }
            | Effect::StreamRead { .. }
            | Effect::Kill { .. }
            | Effect::StreamClose { .. }) => {
                if !self.opts.cgi {
                    return Err(self.safety(format!(
                        "a gateway effect for a site without gateways: {gateway:?}"
                    )));
                }
                self.gateway_effect(gateway)?;
            }
            // A site drawn without a service gives the core no business connecting.
            stream @ (Effect::Connect { .. } | Effect::ServiceAnswered { .. }) => {
                return Err(self.safety(format!(
                    "a service stream for a site without services: {stream:?}"
                )));
            }
            Effect::Exit { code } => {
                self.contract.exit(code).map_err(|m| self.safety(m))?;
                self.exit = Some(code);
            }
        }
        Ok(())
    }

    /// The bytes a chunk stands for, read from the open descriptor for file chunks (a
    /// slice of the version's bytes, not a copy).
    fn chunk_bytes(&self, chunk: &Chunk) -> Check<Bytes> {
        match chunk {
            Chunk::Bytes(b) => Ok(b.clone()),
            Chunk::File { file, offset, len } => {
                let d = self
                    .fs
                    .descriptor(*file)
                    .ok_or_else(|| self.safety(format!("Send from {file:?}, which is not open")))?;
                let mut content = d.content.clone();
                if self.opts.args.inject == Some(Inject::StaleFile) {
                    if let Some(old) = self.fs.previous_content(d) {
                        content = old;
                    }
                }
                let end = offset.checked_add(*len).unwrap_or(u64::MAX);
                if end > d.content.len() as u64 {
                    return Err(self.safety(format!(
                        "Send of bytes {offset}..{end} from {file:?} ({}), which holds {}",
                        d.path.display(),
                        d.content.len()
                    )));
                }
                if end <= content.len() as u64 {
                    return Ok(content.slice(*offset as usize..end as usize));
                }
                // The stale-file bug may read past a shorter old version: pad, as a
                // shell reading a truncated file would send whatever it got.
                let mut out: Vec<u8> = content
                    .get(*offset as usize..(end as usize).min(content.len()))
                    .unwrap_or(&[])
                    .to_vec();
                out.resize(*len as usize, b'\0');
                Ok(Bytes::from(out))
            }
        }
    }

    fn arm_read(&mut self, conn: ConnId) {
        let c = self.client(conn);
        let ready = c.reset || c.arrived > c.ledger.delivered || c.eof_arrived;
        if c.read_max.is_some() && !c.read_armed && ready && !c.closed && !c.failed {
            c.read_armed = true;
            let d = self.rng.random_range(0..=1);
            self.schedule(d, Event::ReadDone(conn));
        }
    }

    fn event(&mut self, e: Event) -> Check {
        match e {
            Event::Spawn => self.spawn(),
            Event::Connect(conn) => self.connect(conn),
            Event::Write(conn) => self.write(conn),
            Event::Arrive(conn, upto, eof) => {
                let c = self.client(conn);
                c.arrived = c.arrived.max(upto);
                c.eof_arrived |= eof;
                self.arm_read(conn);
                Ok(())
            }
            Event::ReadDone(conn) => self.read_done(conn),
            Event::SendDone(conn) => self.send_done(conn),
            Event::OpenDone(token) => {
                // unwrap: OpenDone is scheduled only with an entry in `opens`.
                let (path, exhausted) = self.opens.remove(&token).unwrap();
                let result = if exhausted {
                    self.stats.open_failures += 1;
                    self.exhausted.push(self.now.mono);
                    Completion::Failed(IoError::Exhausted)
                } else {
                    self.fs.open(FileId(token), &path)
                };
                self.input(Input::Completed { token, result })
            }
            Event::ListDone(token) => {
                // unwrap: ListDone is scheduled only with an entry in `lists`.
                let path = self.lists.remove(&token).unwrap();
                let result = self.fs.list(&path);
                self.input(Input::Completed { token, result })
            }
            Event::StatusDone(token) => {
                let status = weir_core::server::ServerStatus {
                    started: weir_core::UnixTime(0),
                    access_log_lost: 0,
                    workers: vec![self.server.worker_status()],
                    services: Vec::new(),
                };
                self.input(Input::Completed {
                    token,
                    result: weir_core::server::Completion::Status(Box::new(status)),
                })
            }
            Event::VerifyDone(token, ok) => self.input(Input::Completed {
                token,
                result: Completion::Verified(ok),
            }),
            Event::FileRead(token, file, offset, len) => {
                // A read from the descriptor's own version, as `pread` on an open file
                // (the stale-file bug reads the path's previous version instead).
                let d = self.fs.descriptor(file).ok_or_else(|| {
                    self.safety(format!("ReadFile of {file:?}, which is not open"))
                })?;
                let mut content = d.content.clone();
                if self.opts.args.inject == Some(Inject::StaleFile) {
                    if let Some(old) = self.fs.previous_content(d) {
                        content = old;
                    }
                }
                let start = (offset as usize).min(content.len());
                let end = (offset.saturating_add(len) as usize).min(content.len());
                let result = Completion::Data(content.slice(start..end));
                self.input(Input::Completed { token, result })
            }
            Event::FsChange => {
                if self.healed {
                    return Ok(());
                }
                let what = self.fs.mutate(&mut self.rng, self.now.mono, self.now.unix);
                self.stats.fs_changes += 1;
                let t = self.now.mono.0;
                self.record(format_args!("{t} fs {what}"));
                let d = self.rng.random_range(1..=2 * self.opts.fs_change_every_ms);
                self.schedule(d, Event::FsChange);
                Ok(())
            }
            Event::SpawnDone(token) => {
                // unwrap: SpawnDone is scheduled only with an entry in `spawns`.
                let result = self.spawns.remove(&token).unwrap();
                let proc = StreamId(token);
                self.book.spawn_completed(proc, &result);
                if result == Completion::Spawned {
                    self.book.started(proc, self.now.mono);
                    let mut wakes = Vec::new();
                    self.procs.started(proc, &mut self.rng, &mut wakes);
                    self.schedule_wakes(wakes);
                }
                self.input(Input::Completed { token, result })
            }
            Event::Proc(proc, wake) => self.proc_event(proc, wake),
            Event::Reload => self.reload(),
            Event::SvcConnect(token) => self.service_connected(token),
            Event::Svc(stream, wake) => self.service_event(stream, wake),
            Event::SvcRestart => self.service_restart(),
            Event::SvcDown => {
                let retry = self.rng.random_range(1..=3);
                self.input(Input::ServiceState {
                    service: workload::SVC_NAME.into(),
                    availability: weir_core::server::Availability::Down {
                        retry_after: core::time::Duration::from_secs(retry),
                    },
                })
            }
            Event::SvcReady(addr) => {
                self.svcs.restarted(&addr);
                self.svc_book.up(self.now.mono);
                if let (false, Some(every)) = (self.healed, self.opts.svc_restart_every_ms) {
                    let d = self.rng.random_range(1..=2 * every);
                    self.schedule(d, Event::SvcRestart);
                }
                self.input(Input::ServiceState {
                    service: workload::SVC_NAME.into(),
                    availability: weir_core::server::Availability::Ready,
                })
            }
            Event::Reset(conn) => {
                let healed = self.healed;
                let c = self.client(conn);
                if healed || c.closed || c.failed || c.reset {
                    return Ok(());
                }
                c.reset = true;
                c.ledger.client_reset();
                self.stats.resets += 1;
                let t = self.now.mono.0;
                self.record(format_args!("{t} reset {conn:?}"));
                self.arm_read(conn);
                Ok(())
            }
        }
    }

    /// The operator reloads (faults only: the liveness phase keeps the last generation):
    /// the next generation of the site, alternating between the two shapes
    /// `workload::generation` draws, goes to the core, and comes back in a while.
    fn reload(&mut self) -> Check {
        let Some(every) = self.opts.reload_every_ms else {
            return Ok(());
        };
        if self.healed {
            return Ok(());
        }
        let g = self.gens.current() + 1;
        let (site, text) = workload::generation(&self.site, &self.conf_text, g);
        let config = parse_config(&self.opts, &site, &text).map_err(|m| self.safety(m))?;
        self.gens.reload(g, site);
        self.stats.reloads += 1;
        let config = ConfigRef::new(g, config);
        let t = self.now.mono.0;
        self.record(format_args!("{t} reload {g}"));
        if self.opts.args.inject == Some(Inject::ReloadInFlight) {
            self.record_input(&Input::Reload(config.clone()));
            let waiting = self.farm_waiting();
            self.book.begin_handle();
            self.server.reload_in_flight_too(config, self.now);
            self.drain()?;
            self.book.end_handle(&waiting);
        } else {
            self.input(Input::Reload(config))?;
        }
        if self.opts.args.inject == Some(Inject::LoseRequestOnReload) {
            let in_flight = self
                .clients
                .values_mut()
                .find(|c| !c.closed && !c.lost && c.ledger.unanswered() > 0);
            if let Some(c) = in_flight {
                c.lost = true;
            }
        }
        let d = self.rng.random_range(1..=2 * every);
        self.schedule(d, Event::Reload);
        Ok(())
    }

    fn spawn(&mut self) -> Check {
        if self.healed {
            return Ok(());
        }
        let active = self.clients.values().filter(|c| !c.closed).count();
        if active < self.opts.clients_max {
            let conn = ConnId(self.next_conn);
            self.next_conn += 1;
            let plan = workload::plan(&mut self.rng, &self.opts);
            self.clients.insert(
                conn,
                Client {
                    remaining: plan.requests,
                    plan,
                    out: Vec::new(),
                    written: 0,
                    arrived: 0,
                    eof_written: false,
                    eof_arrived: false,
                    last_arrival: self.now.mono,
                    write_scheduled: false,
                    read_max: None,
                    read_armed: false,
                    send: None,
                    accepted: false,
                    reset: false,
                    failed: false,
                    closed: false,
                    server_ended: false,
                    ledger: Ledger::default(),
                    held: Vec::new(),
                    lost: false,
                    received: 0,
                    seen_gen: 0,
                },
            );
            self.stats.connections += 1;
            self.schedule(0, Event::Connect(conn));
        }
        let d = self.rng.random_range(1..=300);
        self.schedule(d, Event::Spawn);
        Ok(())
    }

    fn connect(&mut self, conn: ConnId) -> Check {
        if self.paused {
            self.backlog.push_back(conn);
            return Ok(());
        }
        self.contract.accepted(conn);
        let c = self.client(conn);
        c.accepted = true;
        let peer = SocketAddr::from((c.plan.peer, 40_000 + (conn.0 % 20_000) as u16));
        let reset = c.plan.reset_after;
        self.write_soon(conn, 0);
        if let (Some(d), false) = (reset, self.healed) {
            self.schedule(d.as_millis() as u64, Event::Reset(conn));
        }
        self.input(Input::Accepted {
            listener: ListenerId(0),
            conn,
            peer,
            local: SocketAddr::from(([127, 0, 0, 1], 8080)),
        })
    }

    fn write_soon(&mut self, conn: ConnId, after_ms: u64) {
        let c = self.client(conn);
        if !c.write_scheduled {
            c.write_scheduled = true;
            self.schedule(after_ms, Event::Write(conn));
        }
    }

    /// The client shuts its write side: EOF arrives after every byte already in flight.
    fn client_eof(&mut self, conn: ConnId) {
        let d = self.rng.random_range(0..=self.opts.net_delay_max_ms);
        let now = self.now.mono;
        let c = self.client(conn);
        if c.eof_written {
            return;
        }
        c.eof_written = true;
        let at = Time(now.0 + d).max(c.last_arrival);
        c.last_arrival = at;
        let upto = c.written;
        self.schedule(at.0 - now.0, Event::Arrive(conn, upto, true));
    }

    fn write(&mut self, conn: ConnId) -> Check {
        let healed = self.healed;
        let c = self.client(conn);
        c.write_scheduled = false;
        if c.closed || c.failed || c.reset || c.server_ended || c.eof_written {
            return Ok(());
        }
        if c.written == c.out.len() {
            let may_write =
                c.remaining > 0 && !c.ledger.voided() && (c.plan.pipelined || c.ledger.settled());
            if !may_write {
                if c.remaining == 0 && c.plan.end == End::HalfClose {
                    self.client_eof(conn);
                }
                return Ok(());
            }
            let id = self.stats.requests + 1;
            let mut req = workload::request(&mut self.rng, &self.opts, &self.memory, id);
            if healed {
                req.stall_at = None;
            }
            (req.cgi, req.svc) = self.runs_script(&req, self.clients[&conn].plan.peer);
            self.stats.cgi_requests += u64::from(req.cgi && !req.svc);
            self.stats.svc_requests += u64::from(req.svc);
            let index = self.clients[&conn].ledger.entries.len();
            self.req_at.insert(id, (conn, index));
            self.stats.requests += 1;
            let now = self.now.mono;
            let c = self.client(conn);
            c.remaining -= 1;
            if req.close {
                c.remaining = 0;
            }
            c.out.extend_from_slice(&req.bytes);
            c.ledger.write(req, now);
        }
        let c = self.client(conn);
        let left = c.out.len() - c.written;
        let mut piece = self
            .rng
            .random_range(1..=self.opts.split_max.max(1))
            .min(left);
        let c = self.client(conn);
        // A planned stall: stop at its byte and wait past every request timeout.
        let from = c.written;
        let stall = c.ledger.entries.iter().find_map(|e| {
            e.req
                .stall_at
                .map(|s| e.start + s)
                .filter(|at| *at > from && *at <= from + piece)
        });
        if let Some(at) = stall {
            piece = at - from;
        }
        let d = self.rng.random_range(0..=self.opts.net_delay_max_ms);
        let now = self.now.mono;
        let c = self.client(conn);
        let at = Time(now.0 + d).max(c.last_arrival);
        c.last_arrival = at;
        c.written += piece;
        let upto = c.written;
        self.schedule(at.0 - now.0, Event::Arrive(conn, upto, false));
        let next = if stall.is_some() {
            self.opts.header_timeout_ms + self.opts.body_timeout_ms + 500
        } else {
            self.rng.random_range(0..=self.opts.net_delay_max_ms / 2)
        };
        self.write_soon(conn, next);
        Ok(())
    }

    fn read_done(&mut self, conn: ConnId) -> Check {
        let gen = self.gens.current();
        let c = self.client(conn);
        c.read_armed = false;
        if c.closed || c.failed {
            return Ok(());
        }
        let Some(max) = c.read_max else {
            return Ok(());
        };
        if c.reset {
            return self.fail(conn);
        }
        let delivered = c.ledger.delivered;
        if c.arrived > delivered {
            let avail = (c.arrived - delivered).min(max);
            let n = self.rng.random_range(1..=avail);
            let now = self.now.mono;
            let c = self.client(conn);
            let data = Bytes::copy_from_slice(&c.out[delivered..delivered + n]);
            c.ledger.delivered(delivered + n, now, gen);
            c.read_max = None;
            self.contract.read_done(conn);
            return self.input(Input::Received { conn, data });
        }
        if c.eof_arrived {
            c.read_max = None;
            c.ledger.eof_delivered = true;
            self.contract.read_done(conn);
            self.license_hang_up(conn);
            return self.input(Input::PeerClosed { conn });
        }
        Ok(())
    }

    fn fail(&mut self, conn: ConnId) -> Check {
        let c = self.client(conn);
        c.failed = true;
        c.read_max = None;
        c.send = None;
        c.ledger.client_reset();
        self.contract.failed(conn);
        self.input(Input::ConnFailed {
            conn,
            error: IoError::Reset,
        })
    }

    fn send_done(&mut self, conn: ConnId) -> Check {
        let c = self.client(conn);
        if c.closed || c.failed {
            return Ok(());
        }
        let Some(s) = c.send.take() else {
            return Ok(());
        };
        if c.reset {
            return self.fail(conn);
        }
        let mut bytes = s.bytes;
        if self.opts.args.inject == Some(Inject::ReorderSends) {
            let c = self.client(conn);
            if !c.held.is_empty() {
                let mut both = bytes.to_vec();
                both.append(&mut c.held);
                bytes = Bytes::from(both);
            } else if self.rng.random_bool(0.25) {
                self.client(conn).held = bytes.to_vec();
                bytes = Bytes::new();
            }
        }
        if !self.client(conn).lost {
            self.deliver(conn, &bytes)?;
        }
        self.contract.send_done(conn);
        self.client(conn).received += s.n;
        self.input(Input::Sent { conn, n: s.n })
    }

    /// Bytes reach the client: the ledger pairs them with requests and the judge checks
    /// them against the model.
    fn deliver(&mut self, conn: ConnId, bytes: &[u8]) -> Check {
        if bytes.is_empty() {
            return Ok(());
        }
        let now = self.now.mono;
        let mut ledger = std::mem::take(&mut self.client(conn).ledger);
        let peer = self.clients[&conn].plan.peer;
        let stats = &mut self.stats;
        let seen_gen = self.clients[&conn].seen_gen;
        let mut judge = Judge {
            gens: &self.gens,
            seen_gen,
            fs: &self.fs,
            tags: &mut self.tags,
            memory: &mut self.memory,
            timeouts_ms: (self.opts.header_timeout_ms, self.opts.body_timeout_ms),
            exhausted: &self.exhausted,
            now,
            unix_base: self.unix_base,
            peer,
            half_closed: ledger.eof_delivered,
            gateway: &self.book,
            service: &self.svc_book,
            cut: false,
        };
        let log = &mut self.log;
        let result = ledger.receive(bytes, &mut |e, r| {
            stats.responses += 1;
            *stats.statuses.entry(r.status).or_default() += 1;
            judge.judge(e, r)?;
            log.claim(Want::response(peer, e, r, now))
        });
        let seen_gen = judge.seen_gen;
        let c = self.client(conn);
        c.ledger = ledger;
        c.seen_gen = seen_gen;
        let progress = result.map_err(|m| self.safety(format!("{conn:?}: {m}")))?;
        for Progress::Answered(_) in progress {
            let think = self.rng.random_range(0..=self.opts.think_max_ms);
            let c = self.client(conn);
            if c.ledger.voided() {
                c.remaining = 0;
            }
            let done = c.remaining == 0 && c.ledger.settled();
            if done && c.plan.end == End::CloseWhenDone {
                self.client_eof(conn);
            } else if !c.plan.pipelined && c.remaining > 0 {
                self.write_soon(conn, think);
            }
        }
        Ok(())
    }

    /// The server ended the connection: what is held is delivered, then the ledger checks
    /// nothing owed is left unanswered (judging a response the close delimits), and the
    /// client closes its side too.
    fn server_end(&mut self, conn: ConnId) -> Check {
        let held = std::mem::take(&mut self.client(conn).held);
        self.deliver(conn, &held)?;
        let (h, b) = (self.opts.header_timeout_ms, self.opts.body_timeout_ms);
        let now = self.now.mono;
        let mut ledger = std::mem::take(&mut self.client(conn).ledger);
        let peer = self.clients[&conn].plan.peer;
        let stats = &mut self.stats;
        let seen_gen = self.clients[&conn].seen_gen;
        let mut judge = Judge {
            gens: &self.gens,
            seen_gen,
            fs: &self.fs,
            tags: &mut self.tags,
            memory: &mut self.memory,
            timeouts_ms: (h, b),
            exhausted: &self.exhausted,
            now,
            unix_base: self.unix_base,
            peer,
            half_closed: ledger.eof_delivered,
            gateway: &self.book,
            service: &self.svc_book,
            cut: false,
        };
        let log = &mut self.log;
        let result = ledger.end(now, h, b, &mut |e, r, cut| {
            stats.responses += 1;
            *stats.statuses.entry(r.status).or_default() += 1;
            judge.cut = cut;
            judge.judge(e, r)?;
            // A response cut short may have been logged or not (its line is written
            // when a script's output ends).
            if cut {
                log.excuse(Want::request(peer, e));
                Ok(())
            } else {
                log.claim(Want::response(peer, e, r, now))
            }
        });
        let seen_gen = judge.seen_gen;
        let c = self.client(conn);
        c.ledger = ledger;
        c.seen_gen = seen_gen;
        c.server_ended = true;
        result
            .map_err(|m| format!("{conn:?}: {m}"))
            .map_err(|m| self.safety(m))?;
        self.client_eof(conn);
        Ok(())
    }

    /// The client's end of stream reaches the server: a script still working for one of
    /// its requests is killed and the connection cut (DESIGN.md §4: a client that goes
    /// away kills it; the core cannot tell a half-close from a hang-up).
    fn license_hang_up(&mut self, conn: ConnId) {
        let c = &self.clients[&conn];
        let first = c.ledger.entries.iter().position(|e| {
            if e.req.svc {
                // Its answer may be cut until the core has its END_REQUEST.
                return e.head.is_some() && !self.svc_book.request(e.req.id).ended;
            }
            e.req.cgi && e.head.is_some() && {
                let rec = self.book.request(e.req.id);
                rec.procs.is_empty()
                    || rec.procs.iter().any(|p| {
                        !self.book.is_released(*p)
                            && self.procs.get(*p).is_none_or(|x| !x.stdout_done())
                    })
            }
        });
        if let Some(i) = first {
            self.license_cut(conn, i);
        }
    }

    /// The server may cut `conn` from request `i` on. Unless `--strict`, the cut may
    /// also lose the responses queued before it and not yet received (the core drops
    /// everything it has not sent): the whole unanswered tail is excused.
    fn license_cut(&mut self, conn: ConnId, i: usize) {
        let strict = self.opts.args.strict;
        let c = self.client(conn);
        let next = c.ledger.entries.iter().take_while(|e| e.answered).count();
        c.ledger.license_cut(if strict { i } else { i.min(next) });
    }

    /// The request a process serves, with its connection and ledger index.
    fn request_of(&self, proc: StreamId) -> Option<(u64, ConnId, usize)> {
        let id = self.book.request_for(proc)?;
        let (conn, i) = *self.req_at.get(&id)?;
        Some((id, conn, i))
    }

    /// Carries out a process effect (checked by the book first).
    fn gateway_effect(&mut self, e: Effect) -> Check {
        let mut wakes: Wakes = Vec::new();
        match e {
            Effect::Spawn { token, spec } => {
                self.contract.token(token).map_err(|m| self.safety(m))?;
                let proc = StreamId(token);
                let id = gateway::request_of(&spec);
                let query = gateway::query_of(&spec);
                let at = id.and_then(|i| self.req_at.get(&i).copied());
                let entry = at.and_then(|(c, i)| self.clients[&c].ledger.entries.get(i));
                let body = entry.map(|e| e.req.body.clone());
                let method = entry.map(|e| e.req.method.clone());
                let raw_query = entry.map(|e| {
                    e.req
                        .target
                        .split_once('?')
                        .map_or(String::new(), |(_, q)| q.to_string())
                });
                let base = at.map_or(0, |(c, _)| self.clients[&c].received);
                self.book
                    .spawn(
                        proc,
                        &spec,
                        id,
                        body.as_deref(),
                        method.as_deref(),
                        raw_query.as_deref(),
                        self.now.mono,
                        base,
                    )
                    .map_err(|m| self.safety(m))?;
                self.stats.spawns += 1;
                let name = spec
                    .program
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let in_scripts =
                    spec.program.parent() == Some(&self.fs.root().join(crate::fs::SCRIPT_DIR));
                let result = match self.fs.state(&spec.program) {
                    State::Missing => Completion::Failed(IoError::NotFound),
                    State::Denied | State::Dir(_) => Completion::Failed(IoError::PermissionDenied),
                    State::File(_) if !in_scripts || workload::Script::by_name(&name).is_none() => {
                        // A document that is not executable.
                        Completion::Failed(IoError::PermissionDenied)
                    }
                    State::File(_) if !self.healed && self.chance(self.opts.spawn_exhausted) => {
                        Completion::Failed(IoError::Exhausted)
                    }
                    State::File(_) => {
                        let n = workload::query_n(&query).unwrap_or(workload::N_DEFAULT);
                        self.procs.start(proc, &name, id, n, &mut self.rng);
                        Completion::Spawned
                    }
                };
                self.spawns.insert(token, result);
                // A fork is quick; with `--strict`, now and then the machine is loaded
                // and it takes longer than the gateway timeout (a known core bug: the
                // timeout is then never armed again).
                let slow = self.opts.args.strict && self.rng.random_bool(0.05);
                let d = self.rng.random_range(0..=2)
                    + if slow {
                        self.opts.gateway_timeout_ms + 50
                    } else {
                        0
                    };
                self.schedule(d, Event::SpawnDone(token));
            }
            Effect::StreamWrite { stream: proc, data } => {
                self.book
                    .write_stdin(proc, &data)
                    .map_err(|m| self.safety(m))?;
                self.procs
                    .write_stdin(proc, data, &mut self.rng, &mut wakes);
            }
            Effect::StreamShutdownWrite { stream: proc } => {
                self.book.close_stdin(proc).map_err(|m| self.safety(m))?;
                self.procs.close_stdin(proc, &mut self.rng, &mut wakes);
            }
            Effect::StreamRead {
                stream: proc,
                channel: stream,
                max,
            } => {
                self.book
                    .read_output(proc, stream, max)
                    .map_err(|m| self.safety(m))?;
                self.procs
                    .read_output(proc, stream, max, &mut self.rng, &mut wakes);
            }
            Effect::Kill { stream: proc } => {
                let head_read = self.procs.get(proc).is_some_and(|p| p.head_read());
                self.book
                    .kill(proc, self.now.mono, head_read)
                    .map_err(|m| self.safety(m))?;
                self.stats.kills += 1;
                let rec = self
                    .book
                    .request_for(proc)
                    .map(|id| self.book.request(id).clone());
                if rec.is_some_and(|r| r.idle_kill_after_head || r.idle_kill_before_head) {
                    if let Some((_, conn, i)) = self.request_of(proc) {
                        self.license_cut(conn, i);
                    }
                }
                self.procs.kill(proc, &mut self.rng, &mut wakes);
            }
            Effect::StreamClose { stream: proc } => {
                self.book.release(proc).map_err(|m| self.safety(m))?;
                self.procs.release(proc, &mut self.rng);
            }
            other => return Err(self.safety(format!("not a process effect: {other:?}"))),
        }
        self.schedule_wakes(wakes);
        Ok(())
    }

    fn schedule_wakes(&mut self, wakes: Wakes) {
        for (d, proc, w) in wakes {
            self.schedule(d, Event::Proc(proc, w));
        }
    }

    /// A process event comes due: the input it makes, checked by the book.
    fn proc_event(&mut self, proc: StreamId, wake: Wake) -> Check {
        let mut wakes: Wakes = Vec::new();
        let input = self.procs.wake(proc, wake, &mut self.rng, &mut wakes);
        self.schedule_wakes(wakes);
        let Some(input) = input else {
            return Ok(());
        };
        let what = match &input {
            Input::StreamWritten { n, .. } => ProcInput::StdinWritten(*n),
            Input::StreamWriteClosed { .. } => ProcInput::StdinClosed,
            Input::StreamReceived {
                channel: stream,
                data,
                ..
            } => ProcInput::Output(usize::from(*stream == Channel::Errors), data.len()),
            Input::StreamEof {
                channel: stream, ..
            } => ProcInput::Eof(usize::from(*stream == Channel::Errors)),
            _ => ProcInput::Exited,
        };
        let received = self
            .request_of(proc)
            .map_or(0, |(_, conn, _)| self.clients[&conn].received);
        self.book
            .input(proc, &what, self.now.mono, received)
            .map_err(|m| self.safety(format!("the world's input: {m}")))?;
        // A script that ends its output short of its Content-Length: the server can
        // only cut the connection (the response cannot be completed).
        if let (ProcInput::Eof(0), Some(p)) = (what, self.procs.get(proc)) {
            let short = workload::Script::by_name(&p.name)
                == Some(workload::Script::CrashBody { len: true });
            if short {
                if let Some((_, conn, i)) = self.request_of(proc) {
                    self.license_cut(conn, i);
                }
            }
        }
        self.input(input)
    }

    /// Carries out an effect on the service's streams (checked by the service book first).
    fn service_effect(&mut self, e: Effect) -> Check {
        let mut wakes: SvcWakes = Vec::new();
        let now = self.now.mono;
        match e {
            Effect::Connect { token, addr } => {
                self.contract.token(token).map_err(|m| self.safety(m))?;
                let path = self
                    .svc_book
                    .connect(StreamId(token), &addr, now)
                    .map_err(|m| self.safety(m))?;
                let up = self.svcs.is_up(&path);
                self.svc_connects.insert(token, (path, up));
                let d = self.rng.random_range(0..=2);
                self.schedule(d, Event::SvcConnect(token));
            }
            Effect::ServiceAnswered { service } => {
                self.svc_book
                    .answered(&service)
                    .map_err(|m| self.safety(m))?;
            }
            Effect::StreamWrite { stream, data } => {
                self.svc_book
                    .write(stream, data.len(), now)
                    .map_err(|m| self.safety(m))?;
                self.svcs.write(stream, data, &mut self.rng, &mut wakes);
            }
            Effect::StreamRead { stream, max, .. } => {
                self.svc_book
                    .read(stream, max, now)
                    .map_err(|m| self.safety(m))?;
                self.svcs.read(stream, max, &mut self.rng, &mut wakes);
            }
            Effect::StreamShutdownWrite { stream } => {
                return Err(self.safety(format!(
                    "StreamShutdownWrite on the service stream {stream:?}: FastCGI ends the \
                     request body with an empty STDIN record, and the connection may be kept"
                )));
            }
            Effect::StreamClose { stream } => {
                let busy = self
                    .svc_book
                    .close(stream, now)
                    .map_err(|m| self.safety(m))?;
                self.svcs.close(stream);
                // A request whose exchange the core ends before its END_REQUEST (the
                // gateway timeout, a dead process, its client gone) may see its answer cut.
                if let Some((conn, i)) = busy.and_then(|id| self.req_at.get(&id).copied()) {
                    self.license_cut(conn, i);
                }
            }
            other => return Err(self.safety(format!("not a service effect: {other:?}"))),
        }
        self.schedule_svc(wakes);
        Ok(())
    }

    fn schedule_svc(&mut self, wakes: SvcWakes) {
        for (d, stream, w) in wakes {
            self.schedule(d, Event::Svc(stream, w));
        }
    }

    /// A `Connect` completes: connected, or refused while the server is down.
    fn service_connected(&mut self, token: Token) -> Check {
        // unwrap: SvcConnect is scheduled only with an entry in `svc_connects`.
        let (path, up) = self.svc_connects.remove(&token).unwrap();
        let stream = StreamId(token);
        // Down when asked, or killed since: refused either way.
        let ok = up && self.svcs.is_up(&path);
        self.svc_book.connected(stream, ok);
        let result = if ok {
            self.svcs.connected(stream, &path);
            self.stats.svc_streams += 1;
            Completion::Connected
        } else {
            Completion::Failed(IoError::Refused)
        };
        self.input(Input::Completed { token, result })
    }

    /// Something scheduled for a service stream comes due: the input it makes, checked
    /// by the book, and what the server noticed, checked against the requests.
    fn service_event(&mut self, stream: StreamId, wake: SvcWake) -> Check {
        let mut wakes: SvcWakes = Vec::new();
        let mut notices = Vec::new();
        let input = self
            .svcs
            .wake(stream, wake, &mut self.rng, &mut wakes, &mut notices)
            .map_err(|m| self.safety(m))?;
        self.schedule_svc(wakes);
        self.service_notices(notices)?;
        let Some(input) = input else {
            return Ok(());
        };
        let now = self.now.mono;
        let checked = match &input {
            Input::StreamReceived { data, .. } => self.svc_book.received(stream, data.len(), now),
            Input::StreamEof { .. } => self.svc_book.ended(stream, true),
            Input::StreamFailed { .. } => self.svc_book.ended(stream, false),
            _ => self.svc_book.written(stream),
        };
        checked.map_err(|m| self.safety(m))?;
        for request in self.svcs.ends_delivered(stream) {
            self.svc_book.end_delivered(stream, request);
        }
        self.input(input)
    }

    /// What the service's servers noticed: the parameters and standard input of each
    /// request against what its client sent, and deaths, which may cut answers.
    fn service_notices(&mut self, notices: Vec<Notice>) -> Check {
        for n in notices {
            match n {
                Notice::Began {
                    stream,
                    request,
                    method,
                    content_length,
                    query,
                } => {
                    self.svc_book.began(stream, request);
                    if !self.svc_served.insert(stream) {
                        self.stats.svc_reused += 1;
                    }
                    let entry = request
                        .and_then(|id| self.req_at.get(&id).copied())
                        .and_then(|(c, i)| self.clients[&c].ledger.entries.get(i));
                    let Some(e) = entry else {
                        return Err(self.safety(format!(
                            "{stream:?}: the service received a request naming no request \
                             of the world ({request:?})"
                        )));
                    };
                    let raw_query = e
                        .req
                        .target
                        .split_once('?')
                        .map_or(String::new(), |(_, q)| q.to_string());
                    let body_len = (!e.req.body.is_empty()).then(|| e.req.body.len().to_string());
                    let wrong = if method.as_deref() != Some(e.req.method.as_str()) {
                        Some(format!("REQUEST_METHOD {method:?}"))
                    } else if query.as_deref().unwrap_or("") != raw_query {
                        Some(format!("QUERY_STRING {query:?}"))
                    } else if body_len.is_some() && content_length != body_len {
                        Some(format!("CONTENT_LENGTH {content_length:?}"))
                    } else {
                        None
                    };
                    if let Some(w) = wrong {
                        return Err(self.safety(format!(
                            "{stream:?}: the service received {w} for request {request:?} \
                             ({})",
                            e.req.summary()
                        )));
                    }
                }
                Notice::Stdin { request, data } => {
                    let entry = request
                        .and_then(|id| self.req_at.get(&id).copied())
                        .and_then(|(c, i)| self.clients[&c].ledger.entries.get(i));
                    if let Some(e) = entry {
                        if data != e.req.body {
                            return Err(self.safety(format!(
                                "the service's standard input for request {request:?} is {} \
                                 bytes that are not the request body ({} bytes){}",
                                data.len(),
                                e.req.body.len(),
                                first_difference(&e.req.body, &data)
                            )));
                        }
                    }
                }
                Notice::IdleClosed => self.svc_book.idle_closed(self.now.mono),
                Notice::Died { stream, request } => {
                    self.stats.svc_deaths += 1;
                    let written = self.svcs.get(stream).map_or(0, |s| s.written);
                    self.svc_book.died(stream, request, written, self.now.mono);
                    if let Some((conn, i)) = request.and_then(|id| self.req_at.get(&id).copied()) {
                        self.license_cut(conn, i);
                    }
                }
            }
        }
        Ok(())
    }

    /// The service restarts (faults only): the server at the socket the configuration
    /// in force names is killed and refuses connections; the supervisor publishes `Down`
    /// a moment later and `Ready` once it is back.
    fn service_restart(&mut self) -> Check {
        if self.healed {
            return Ok(());
        }
        let gen = self.gens.current();
        let Some(svc) = self.gens.site(gen).service.clone() else {
            return Ok(());
        };
        self.stats.svc_restarts += 1;
        let t = self.now.mono.0;
        self.record(format_args!("{t} service restart {}", svc.socket));
        let mut notices = Vec::new();
        self.svcs.kill(&svc.socket, &mut notices);
        self.svc_book.down(self.now.mono);
        let mut wakes = Vec::new();
        for n in &notices {
            if let Notice::Died { stream, .. } = n {
                self.svcs.after_death(*stream, &mut self.rng, &mut wakes);
            }
        }
        self.schedule_svc(wakes);
        self.service_notices(notices)?;
        let down = self
            .rng
            .random_range(10..=self.opts.svc_down_max_ms.max(10));
        let notice = self.rng.random_range(0..=5);
        self.schedule(notice, Event::SvcDown);
        self.schedule(down, Event::SvcReady(svc.socket));
        Ok(())
    }

    fn heal(&mut self) {
        self.healed = true;
        let t = self.now.mono.0;
        self.record(format_args!("{t} heal"));
        for c in self.clients.values_mut() {
            c.remaining = c.remaining.min(1);
        }
    }

    /// The end of the liveness phase: everything released, then a clean shutdown.
    fn finish(&mut self) -> Check {
        if self.server.connection_count() != 0 || self.contract.open_connections() != 0 {
            return Err(self.liveness(format!(
                "the world is quiet but the server holds {} connections:\n{}",
                self.server.connection_count(),
                self.describe()
            )));
        }
        if !self.backlog.is_empty() {
            return Err(self.liveness(format!(
                "{} connections were never accepted (accepting paused for good)",
                self.backlog.len()
            )));
        }
        let open = self.fs.open_files();
        if !open.is_empty() {
            return Err(self.liveness(format!("files never closed: {open:?}")));
        }
        let held = self.book.held();
        if !held.is_empty() {
            return Err(self.liveness(format!("processes spawned and never released: {held:?}")));
        }
        let running = self.procs.running();
        if !running.is_empty() {
            return Err(self.liveness(format!(
                "processes the world still runs after their Release: {running:?}"
            )));
        }
        if let Some((conn, c)) = self
            .clients
            .iter()
            .find(|(_, c)| c.accepted && !c.failed && c.ledger.unanswered() > 0)
        {
            return Err(self.liveness(format!(
                "{conn:?} has {} requests unanswered",
                c.ledger.unanswered()
            )));
        }
        // Requests whose answers may have left without their clients seeing them whole
        // may each account for one access-log record: on a connection the client reset,
        // or that was cut there, or whose bytes never all arrived.
        for c in self.clients.values().filter(|c| c.accepted) {
            let lost = c.reset || c.failed;
            for (i, e) in c.ledger.entries.iter().enumerate() {
                let cut = c.ledger.cut_from.is_some_and(|k| i >= k);
                // A request whose bytes never all arrived may have been answered (a
                // script or a document answers before the body ends) and its connection
                // then aborted for the stall.
                let partial = !e.complete();
                if !e.answered && e.first.is_some() && (lost || cut || partial) {
                    self.log.excuse(Want::request(c.plan.peer, e));
                }
            }
        }
        self.contract.shutdown();
        self.input(Input::Shutdown)?;
        self.log.settle().map_err(|m| self.safety(m))?;
        if self.exit != Some(0) {
            return Err(self.liveness("Shutdown with nothing open did not give Exit { code: 0 }"));
        }
        if let Some(t) = self.server.poll_timeout() {
            return Err(self.liveness(format!("a timer is still armed at {t} after Exit")));
        }
        let open = self.svc_book.open();
        if !open.is_empty() {
            return Err(self.liveness(format!(
                "service streams never closed, after Exit: {open:?}"
            )));
        }
        Ok(())
    }

    /// The state of every client that is not finished, for liveness reports.
    fn describe(&self) -> String {
        let mut s = String::new();
        for (id, c) in &self.clients {
            if c.closed || !c.accepted {
                continue;
            }
            let _ = writeln!(
                s,
                "  {id:?}: written {}/{} delivered {} eof(client {} arrived {}) read {:?} \
                 send {} reset {} server_ended {} requests {} unanswered {}",
                c.written,
                c.out.len(),
                c.ledger.delivered,
                c.eof_written,
                c.eof_arrived,
                c.read_max,
                c.send.is_some(),
                c.reset,
                c.server_ended,
                c.ledger.entries.len(),
                c.ledger.unanswered()
            );
        }
        let _ = write!(
            s,
            "  open files {:?}, processes held {:?}, server poll_timeout {:?}",
            self.fs.open_files(),
            self.book.held(),
            self.server.poll_timeout()
        );
        s
    }
}

fn first_difference(want: &[u8], got: &[u8]) -> String {
    match want.iter().zip(got).position(|(a, b)| a != b) {
        Some(i) => format!(" (first difference at byte {i})"),
        None => String::new(),
    }
}

/// Parses `text`, a configuration the workload wrote for `site`, with the real parser,
/// and checks that the parser understood what was written.
fn parse_config(
    opts: &Options,
    site: &Site,
    text: &str,
) -> Result<weir_core::config::Config, String> {
    let mut load = |p: &std::path::Path| -> Result<String, String> {
        if p == std::path::Path::new(workload::ROOT).join("users") {
            return Ok(workload::USERS.to_string());
        }
        Err(format!("{} does not exist in the simulation", p.display()))
    };
    let config = weir_core::config::parse("sim.conf", text, std::path::Path::new("/"), &mut load)
        .map_err(|d| {
        let all: Vec<String> = d.iter().map(|x| x.to_string()).collect();
        format!(
            "the core refused a valid configuration:\n{text}\n{}",
            all.join("\n")
        )
    })?;
    let l = &config.limits;
    let t = &config.timeouts;
    let understood = l.request_line_max == opts.request_line_max
        && l.header_bytes_max == opts.header_bytes_max
        && l.headers_max == opts.headers_max
        && l.body_max == opts.body_max
        && l.connections_max == opts.connections_max
        && t.header.as_millis() == u128::from(opts.header_timeout_ms)
        && t.body.as_millis() == u128::from(opts.body_timeout_ms)
        && t.idle.as_millis() == u128::from(opts.idle_timeout_ms)
        && t.gateway.as_millis() == u128::from(site.gateway_timeout_ms)
        && l.cgi_max == opts.cgi_max
        && config.root == std::path::Path::new(workload::ROOT)
        && config.welcome == site.welcome
        && config.listing == site.listing
        && config.rules.len() == site.rules.len()
        && config.services.len() == usize::from(site.service.is_some())
        && site.service.as_ref().is_none_or(|svc| {
            config.service_addr(&svc.name)
                == Some(weir_core::server::UpstreamAddr::Unix(
                    svc.socket.clone().into(),
                ))
                && config.service_connections(&svc.name) == svc.connections
        })
        && config
            .access_log
            .as_ref()
            .map(|a| format!("{:?}", a.format).to_lowercase())
            == opts.access_log.map(|f| f.to_string());
    if !understood {
        return Err(format!(
            "the parsed configuration differs from its text:\n{text}\n{config:?}"
        ));
    }
    Ok(config)
}
