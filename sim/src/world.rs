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
//! Gateways (CGI, FastCGI) will add their own effects; they belong here as a `procs`
//! field answering spawn/pipe effects with scripted processes, beside `fs`.

use core::fmt::Write as _;
use core::net::SocketAddr;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::path::PathBuf;

use bytes::Bytes;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use weir_core::chunk::Chunk;
use weir_core::config::ConfigRef;
use weir_core::server::{Completion, Effect, Input, IoError, Server};
use weir_core::{ConnId, FileId, ListenerId, Now, Time, Token, UnixTime};

use crate::fs::SimFs;
use crate::options::{Inject, Options};
use crate::oracle::contract::Contract;
use crate::oracle::judge::Judge;
use crate::oracle::ledger::{Ledger, Progress};
use crate::oracle::model::{Site, TagBook};
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
    FsChange,
    Reset(ConnId),
}

struct PendingSend {
    n: u64,
    bytes: Vec<u8>,
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
        let mut load = |p: &std::path::Path| -> Result<String, String> {
            Err(format!("{} does not exist in the simulation", p.display()))
        };
        let config =
            weir_core::config::parse("sim.conf", &text, std::path::Path::new("/"), &mut load)
                .map_err(|d| {
                    let all: Vec<String> = d.iter().map(|x| x.to_string()).collect();
                    fail(format!(
                        "the core refused a valid configuration:\n{text}\n{}",
                        all.join("\n")
                    ))
                })?;
        // The parser must have understood what was written.
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
            && config.root == std::path::Path::new(workload::ROOT)
            && config.welcome == site.welcome
            && config.listing == site.listing
            && config.rules.len() == site.rules.len();
        if !understood {
            return Err(fail(format!(
                "the parsed configuration differs from its text:\n{text}\n{config:?}"
            )));
        }
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
            println!("config:\n{text}");
        }
        Ok(World {
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
            self.server.handle_timeout(self.now);
            self.drain()?;
        } else if let Some(Reverse((t, _, e))) = self.queue.pop() {
            self.advance(t);
            self.event(e)?;
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

    fn input(&mut self, input: Input) -> Check {
        let t = self.now.mono.0;
        self.record(format_args!("{t} < {input:?}"));
        self.server.handle(input, self.now);
        self.drain()
    }

    fn drain(&mut self) -> Check {
        while let Some(e) = self.server.poll_effect() {
            let t = self.now.mono.0;
            self.record(format_args!("{t} > {e:?}"));
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
                    bytes.pop();
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
            Effect::ReadDir { token, path } => {
                self.contract
                    .open(token, &path)
                    .map_err(|m| self.safety(m))?;
                let d = self.rng.random_range(0..=self.opts.open_delay_max_ms);
                self.lists.insert(token, path);
                self.schedule(d, Event::ListDone(token));
            }
            Effect::CloseFile { file } => {
                if self.opts.args.inject == Some(Inject::LoseCloseFile) && self.rng.random_bool(0.2)
                {
                    return Ok(());
                }
                self.fs.close(file).map_err(|m| self.safety(m))?;
            }
            // Log lines are part of the trace; nothing answers them. (A checker for "one
            // access-log line per response" belongs beside the ledger once the sites the
            // simulation draws turn `access-log` on.)
            Effect::ErrorLog { .. } => {}
            Effect::AccessLog { .. } => self.stats.access_log_lines += 1,
            // Gateways: the sites the simulation draws have no `exec` rule yet, so the core
            // has no business starting a process. This is where scripted CGI processes
            // (crashing, hanging, printing bad headers) will be answered, by a `procs`
            // beside `fs`.
            gateway @ (Effect::Spawn { .. }
            | Effect::WriteStdin { .. }
            | Effect::CloseStdin { .. }
            | Effect::ReadOutput { .. }
            | Effect::Kill { .. }
            | Effect::Release { .. }) => {
                return Err(self.safety(format!(
                    "a gateway effect for a site without gateways: {gateway:?}"
                )));
            }
            Effect::Exit { code } => {
                self.contract.exit(code).map_err(|m| self.safety(m))?;
                self.exit = Some(code);
            }
        }
        Ok(())
    }

    /// The bytes a chunk stands for, read from the open descriptor for file chunks.
    fn chunk_bytes(&self, chunk: &Chunk) -> Check<Vec<u8>> {
        match chunk {
            Chunk::Bytes(b) => Ok(b.to_vec()),
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
                // The stale-file bug may read past a shorter old version: pad, as a
                // shell reading a truncated file would send whatever it got.
                let mut out: Vec<u8> = content
                    .get(*offset as usize..(end as usize).min(content.len()))
                    .unwrap_or(&[])
                    .to_vec();
                out.resize(*len as usize, b'\0');
                Ok(out)
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
            let mut req = workload::request(&mut self.rng, &self.opts, &self.memory);
            if healed {
                req.stall_at = None;
            }
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
            c.ledger.delivered(delivered + n, now);
            c.read_max = None;
            self.contract.read_done(conn);
            return self.input(Input::Received { conn, data });
        }
        if c.eof_arrived {
            c.read_max = None;
            c.ledger.eof_delivered = true;
            self.contract.read_done(conn);
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
                bytes.append(&mut c.held);
            } else if self.rng.random_bool(0.25) {
                self.client(conn).held = bytes;
                bytes = Vec::new();
            }
        }
        self.deliver(conn, &bytes)?;
        self.contract.send_done(conn);
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
        let mut judge = Judge {
            site: &self.site,
            fs: &self.fs,
            tags: &mut self.tags,
            memory: &mut self.memory,
            timeouts_ms: (self.opts.header_timeout_ms, self.opts.body_timeout_ms),
            exhausted: &self.exhausted,
            now,
            unix_base: self.unix_base,
            peer,
            half_closed: ledger.eof_delivered,
        };
        let result = ledger.receive(bytes, &mut |e, r| {
            stats.responses += 1;
            *stats.statuses.entry(r.status).or_default() += 1;
            judge.judge(e, r)
        });
        self.client(conn).ledger = ledger;
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
    /// nothing owed is left unanswered, and the client closes its side too.
    fn server_end(&mut self, conn: ConnId) -> Check {
        let held = std::mem::take(&mut self.client(conn).held);
        self.deliver(conn, &held)?;
        let (h, b) = (self.opts.header_timeout_ms, self.opts.body_timeout_ms);
        let now = self.now.mono;
        let c = self.client(conn);
        c.server_ended = true;
        c.ledger
            .end(now, h, b)
            .map_err(|m| format!("{conn:?}: {m}"))
            .map_err(|m| self.safety(m))?;
        self.client_eof(conn);
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
        self.contract.shutdown();
        self.input(Input::Shutdown)?;
        if self.exit != Some(0) {
            return Err(self.liveness("Shutdown with nothing open did not give Exit { code: 0 }"));
        }
        if let Some(t) = self.server.poll_timeout() {
            return Err(self.liveness(format!("a timer is still armed at {t} after Exit")));
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
            "  open files {:?}, server poll_timeout {:?}",
            self.fs.open_files(),
            self.server.poll_timeout()
        );
        s
    }
}
