//! One worker: a thread with its own `mio::Poll`, its own core `Server`, its own listening
//! sockets, connections and open files. Workers share nothing but the configuration and a
//! stop flag; the kernel spreads connections between them (`SO_REUSEPORT`, see `listen`).
//!
//! # The loop (STYLE.md §3.4)
//!
//! ```text
//!   ┌─► poll(deadline − now)            deadline = server.poll_timeout(), accept back-off;
//!   │     │                             zero if work is already waiting
//!   │     ▼
//!   │   events → readiness flags        (conn.readable / writable, listener.ready,
//!   │                                    process pipes, pidfds)
//!   │   stop flag set? → feed Shutdown
//!   │     ▼
//!   │   rounds (≤ ROUNDS_PER_WAKE):
//!   │     accept while ready → Accepted ┐
//!   │     armed ops on ready conns      │
//!   │     (read once / send a budget)   ├─► pending inputs ─► settle
//!   │     armed ops on ready processes, │
//!   │     exit checks (see `process`)   ┘
//!   │     ▼
//!   │   deadline passed? → handle_timeout, drain, settle
//!   └── Exit seen? → return its code
//! ```
//!
//! **Settling.** `settle` feeds the pending inputs one at a time: `server.handle(input)`,
//! then drain `poll_effect()` to `None`, executing each effect. Executing never calls the
//! server: an effect that completes at once (an `Open`, say) queues its completion in
//! `pending`, which is fed only after the current drain is over — one mutation, then one
//! drain (the core's calling contract). `Read` and `Send` only *arm* the connection and put
//! it in the ready queue; the I/O happens in the next round, so one busy connection gets
//! one read and one send budget per round, and the others get their turn.
//!
//! **Stale names.** A `Close` removes the connection from the slab, closes its socket (which
//! takes it out of the epoll set: no `epoll_ctl(DEL)` is spent on it), and purges any pending input that names it, so no input about a closed `ConnId` can
//! reach the core; a `StreamClose` does the same for a process (`input_stream`), whose child
//! the process table still reaps later. Slab keys are reused, so mio tokens and ready-queue
//! entries carry a generation as well (see `token`); an entry whose generation does not
//! match is ignored.
//!
//! **Password checks.** `VerifyPassword` is handed to the verifier pool (`verifier`) with
//! this worker's `Inbox`; its answer comes back through the inbox as a `Message::Input`,
//! like what the control loop tells, and is fed on the next turn. The loop never hashes.
//!
//! **Files.** `Open`, `ReadFile` and `ReadDir` go the same way to the file pool
//! (`filepool`), whose answers come back as `Message::File`; an opened file is entered in
//! the table (`files`) before the core hears `Opened`. A send from a file range that is not
//! in the page cache first has the pool read it in (`Work::Preload`), so the loop's own
//! `sendfile` copies from memory. Under `file-threads off` the loop does all of it inline,
//! as it did before the pool existed.
//!
//! **Accepting.** The worker accepts whenever connections wait: at `limit connections=`
//! the core makes room by closing idle connections, or refuses the new one
//! (`Effect::Refuse`: a 503 written and the socket closed at once), so the kernel's accept
//! queue never fills behind a full server. `PauseAccept` / `ResumeAccept` (shutdown) set
//! a flag; listeners stay registered, and edge events while paused just leave `ready` set,
//! so accepting resumes where it stopped. Running out of descriptors on `accept` (EMFILE, ENFILE, ENOMEM) is
//! logged once and accepting pauses for `ACCEPT_BACKOFF` instead of spinning on a full
//! accept queue.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{event::Event, Events, Interest, Poll, Waker};
use slab::Slab;
use weir_core::server::{Completion, Effect, Input, IoError, Server};
use weir_core::{Chunk, ConfigRef, ConnId, ListenerId, Now, Time};

use crate::clock::Clock;
use crate::conn::{Connection, SEND_BUDGET};
use crate::errno;
use crate::filepool::{self, Done, FilePool, Work};
use crate::files::{self, Files};
use crate::log::log_error;
use crate::logger::LogSender;
use crate::process::Processes;
use crate::queue;
use crate::sendfile::resident;
use crate::services::ServiceBoard;
use crate::status::StatusBoard;
use crate::token::{self, Source};
use crate::upstream::{input_stream, Upstreams};
use crate::verifier::Verifiers;

/// Events taken from the OS per `poll`.
const EVENTS_CAPACITY: usize = 1024;
/// Rounds of I/O per wake-up before polling again, so new events, new connections and
/// timers are not starved by connections that always have more to do.
const ROUNDS_PER_WAKE: usize = 16;
/// Connections accepted per listener per round.
const ACCEPT_BUDGET: usize = 64;
/// How long accepting pauses after running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Size of the read buffer; one read delivers at most this much.
const SCRATCH_BYTES: usize = 64 * 1024;
/// Access-log bytes a busy loop gathers before handing them to the logger.
const LOG_BATCH_BYTES: usize = 32 * 1024;
/// How often, at most, the error log says that the file pool turned operations away.
const FILE_REFUSED_LOG_EVERY: Duration = Duration::from_secs(60);
/// The longest a line waits in a busy loop's batch (an idle loop hands it over at once).
const LOG_BATCH_DELAY: Duration = Duration::from_millis(100);

/// The main thread's handle to a worker: to tell it what the control loop learned, and
/// to ask it to stop.
#[derive(Clone, Debug)]
pub struct Stopper {
    stop: Arc<AtomicBool>,
    inbox: Inbox,
}

impl Stopper {
    /// Asks the worker to shut down cleanly: it feeds `Input::Shutdown` to its server on
    /// its next turn, and the waker makes that turn come now.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Err(e) = self.inbox.waker.wake() {
            log_error!("cannot wake a worker to stop it: {e}");
        }
    }

    /// Hands the worker an input from the control loop (a service's new availability);
    /// it is fed to the worker's server on its next turn, which the waker makes come now.
    pub fn tell(&self, input: Input) {
        self.inbox.tell(input);
    }

    /// Hands the worker a message from the control loop, and wakes it.
    pub fn send(&self, message: Message) {
        self.inbox.send(message);
    }
}

/// A way into a worker from another thread: its inbox, and the waker that makes it read
/// the inbox now. The control loop talks to a worker through it (`Stopper`), the verifier
/// pool answers a worker's password checks through it, and the file pool its files.
#[derive(Clone, Debug)]
pub struct Inbox {
    tx: queue::Sender<Message>,
    waker: Arc<Waker>,
}

impl Inbox {
    /// Hands the worker an input, fed to its server on its next turn.
    pub fn tell(&self, input: Input) {
        self.send(Message::Input(input));
    }

    /// An inbox with no worker behind it, for tests of the threads that answer through
    /// one: its receiving end, and the poll its waker wakes (which must outlive it).
    #[cfg(test)]
    pub fn for_test() -> (Inbox, queue::Receiver<Message>, Poll) {
        let poll = Poll::new().expect("a poll");
        let waker = Arc::new(Waker::new(poll.registry(), token::WAKER).expect("a waker"));
        let (tx, rx) = queue::unbounded();
        (Inbox { tx, waker }, rx, poll)
    }

    /// Hands the worker a message, and wakes it.
    pub fn send(&self, message: Message) {
        // A worker that has exited has dropped its receiver: nobody is left to tell.
        if self.tx.send(message).is_ok() {
            if let Err(e) = self.waker.wake() {
                log_error!("cannot wake a worker: {e}");
            }
        }
    }
}

/// The thread pools shared by the workers, which take their slow work off the loops.
#[derive(Clone, Debug)]
pub struct Pools {
    /// The password verifiers (`Effect::VerifyPassword`).
    pub verifiers: Verifiers,
    /// The file pool; `None` under `file-threads off`.
    pub files: Option<FilePool>,
}

/// What the control loop tells a worker.
#[derive(Debug)]
pub enum Message {
    /// An input for the worker's server (a service's availability, a reload).
    Input(Input),
    /// Listen on this address too (a reload added it); the socket is this worker's own.
    Listen(TcpListener, SocketAddr),
    /// Stop listening on this address (a reload removed it).
    Unlisten(SocketAddr),
    /// Hand access-log lines to this logger from now on (`None`: there is no access log
    /// any more); lines already gathered go to the old one first.
    AccessLog(Option<LogSender>),
    /// The file pool finished a job for this worker.
    File(Done),
}

/// A listening socket and whether it may have connections waiting.
#[derive(Debug)]
struct Listener {
    /// `None` once a reload removed the address (its index stays taken: tokens name it).
    socket: Option<TcpListener>,
    addr: SocketAddr,
    ready: bool,
}

/// One event loop and everything it owns.
#[derive(Debug)]
pub struct Worker {
    index: usize,
    poll: Poll,
    clock: Clock,
    /// The time of this loop turn, read once after `poll` returns: every input of the turn
    /// is stamped with it (as nginx updates its time once per turn), which saves two clock
    /// reads per input; a turn lasts far less than the millisecond the core counts in.
    now: Now,
    server: Server,
    listeners: Vec<Listener>,
    accept_paused: bool,
    accept_backoff_until: Option<Time>,
    exhaustion_logged: bool,
    conns: Slab<Connection>,
    next_generation: u32,
    files: Files,
    /// Child processes (CGI scripts), and children released but not yet reaped.
    procs: Processes,
    /// Messages from the control loop, and the verifiers' answers.
    inbox: queue::Receiver<Message>,
    /// This worker's own way in, which each password check carries for its answer.
    reply: Inbox,
    /// The verifier pool (`Effect::VerifyPassword`).
    verifiers: Verifiers,
    /// The file pool, unless `file-threads off` (then file operations run inline).
    file_pool: Option<FilePool>,
    /// Operations the file pool's full queue turned away since the error log last said
    /// so, and when it did.
    file_refused: (u64, Option<Time>),
    /// Requests each service answered, for the services' supervisors.
    board: Arc<ServiceBoard>,
    /// Where this worker publishes its part of the whole server's status.
    status: Arc<StatusBoard>,
    /// What was last published there: (accepted, requests, responses, bytes sent, open).
    status_published: (u64, u64, u64, u64, usize),
    /// Streams to FastCGI services.
    upstreams: Upstreams,
    /// The access logger, when there is an access log.
    access_log: Option<LogSender>,
    /// Access-log lines not yet handed to the logger, each ending in a newline.
    log_batch: String,
    /// When the oldest line in `log_batch` was made.
    log_batch_since: Option<Time>,
    /// Inputs waiting to be fed, after the current drain.
    pending: VecDeque<Input>,
    /// Connections that may have an armed operation able to run: (slab key, generation).
    ready: VecDeque<(usize, u32)>,
    /// The round being run (kept to reuse its allocation).
    batch: VecDeque<(usize, u32)>,
    scratch: Vec<u8>,
    stop: Arc<AtomicBool>,
    shutdown_fed: bool,
    exit: Option<i32>,
}

impl Worker {
    /// Sets up worker `index`: a poll, a waker, its listening sockets (one per listen
    /// address, in listen-list order) and a fresh `Server`.
    pub fn new(
        index: usize,
        config: ConfigRef,
        sockets: Vec<(TcpListener, SocketAddr)>,
        access_log: Option<LogSender>,
        board: Arc<ServiceBoard>,
        status: Arc<StatusBoard>,
        pools: Pools,
    ) -> io::Result<(Worker, Stopper)> {
        let Pools {
            verifiers,
            files: file_pool,
        } = pools;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), token::WAKER)?);
        let mut listeners = Vec::with_capacity(sockets.len());
        for (i, (mut socket, addr)) in sockets.into_iter().enumerate() {
            poll.registry()
                .register(&mut socket, token::listener(i), Interest::READABLE)?;
            // Presumed ready: connections may have queued between listen() and now.
            listeners.push(Listener {
                socket: Some(socket),
                addr,
                ready: true,
            });
        }
        let clock = Clock::start();
        let now = clock.now();
        let workers = config.workers.unwrap_or(1);
        let mut server = Server::new(config, now);
        server.set_worker_share(index, workers);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, inbox) = queue::unbounded();
        let reply = Inbox { tx, waker };
        let worker = Worker {
            index,
            poll,
            clock,
            now,
            server,
            listeners,
            accept_paused: false,
            accept_backoff_until: None,
            exhaustion_logged: false,
            conns: Slab::new(),
            next_generation: 0,
            files: Files::new(),
            procs: Processes::new(),
            inbox,
            reply: reply.clone(),
            verifiers,
            file_pool,
            file_refused: (0, None),
            board,
            status,
            status_published: (0, 0, 0, 0, usize::MAX),
            upstreams: Upstreams::new(),
            access_log,
            log_batch: String::new(),
            log_batch_since: None,
            pending: VecDeque::new(),
            ready: VecDeque::new(),
            batch: VecDeque::new(),
            scratch: vec![0; SCRATCH_BYTES],
            stop: Arc::clone(&stop),
            shutdown_fed: false,
            exit: None,
        };
        Ok((worker, Stopper { stop, inbox: reply }))
    }

    /// Runs the loop until the server says `Exit`; returns its exit code (1 if the poll
    /// itself fails).
    pub fn run(mut self) -> i32 {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            let timeout = self.poll_timeout();
            // Lines waiting for the logger: look for work without sleeping, and hand them
            // over only if there is none (an idle loop), before it sleeps.
            let holding = !self.log_batch.is_empty() && timeout != Some(Duration::ZERO);
            let first_wait = if holding {
                Some(Duration::ZERO)
            } else {
                timeout
            };
            let mut result = self.poll.poll(&mut events, first_wait);
            if holding && matches!(result, Ok(())) && events.is_empty() {
                self.flush_access_log();
                result = self.poll.poll(&mut events, timeout);
            }
            if let Err(e) = result {
                if e.kind() != io::ErrorKind::Interrupted {
                    log_error!("worker {}: poll failed: {e}", self.index);
                    return 1;
                }
            }
            self.now = self.clock.now();
            for event in &events {
                self.on_event(event);
            }
            self.procs.poll_unwatched();
            while let Ok(message) = self.inbox.try_recv() {
                self.message(message);
            }
            if !self.shutdown_fed && self.stop.load(Ordering::Acquire) {
                self.shutdown_fed = true;
                self.pending.push_back(Input::Shutdown);
                self.settle();
            }
            self.run_rounds();
            self.fire_timers();
            self.publish_status(false);
            let overdue = self
                .log_batch_since
                .is_some_and(|t| self.clock.mono().since(t) >= LOG_BATCH_DELAY);
            if self.exit.is_some() || self.log_batch.len() >= LOG_BATCH_BYTES || overdue {
                self.flush_access_log();
            }
            if let Some(code) = self.exit {
                return code;
            }
        }
    }

    /// Carries out what the control loop said.
    fn message(&mut self, message: Message) {
        match message {
            Message::Input(input) => {
                self.pending.push_back(input);
                self.settle();
            }
            Message::Listen(mut socket, addr) => {
                let i = self.listeners.len();
                match self.poll.registry().register(
                    &mut socket,
                    token::listener(i),
                    Interest::READABLE,
                ) {
                    Ok(()) => self.listeners.push(Listener {
                        socket: Some(socket),
                        addr,
                        ready: true,
                    }),
                    Err(e) => log_error!("worker {}: cannot listen on {addr}: {e}", self.index),
                }
            }
            Message::AccessLog(log) => {
                self.flush_access_log();
                self.access_log = log;
            }
            Message::File(done) => self.file_done(done),
            Message::Unlisten(addr) => {
                for l in &mut self.listeners {
                    if l.addr == addr && l.socket.is_some() {
                        // Dropping the socket closes it and takes it out of the poll.
                        l.socket = None;
                        l.ready = false;
                    }
                }
            }
        }
    }

    /// Publishes this worker's part of the whole server's status if it changed (or, with
    /// `force`, anyway).
    fn publish_status(&mut self, force: bool) {
        let c = self.server.counters();
        let now = (
            c.accepted,
            c.requests,
            c.responses.iter().sum::<u64>(),
            c.bytes_sent,
            self.server.connection_count(),
        );
        if force || now != self.status_published {
            self.status_published = now;
            self.status
                .publish_worker(self.index, self.server.worker_status());
        }
    }

    /// Hands the waiting lines to the logger in one message. A busy loop hands them over
    /// every [`LOG_BATCH_BYTES`] or [`LOG_BATCH_DELAY`], an idle one before it sleeps: one
    /// channel operation, and at most one wake-up of the logger thread, for many lines (a
    /// wake-up per loop turn cost more than the lines themselves).
    fn flush_access_log(&mut self) {
        if self.log_batch.is_empty() {
            return;
        }
        self.log_batch_since = None;
        let batch = std::mem::replace(
            &mut self.log_batch,
            String::with_capacity(LOG_BATCH_BYTES + 4096),
        );
        if let Some(log) = &self.access_log {
            // Blocks while the logger is behind: back-pressure, never a lost line.
            if log.send(batch).is_err() {
                log_error!("worker {}: the access logger has stopped", self.index);
                self.access_log = None;
            }
        }
    }

    /// How long `poll` may sleep: not at all if work is waiting, else until the server's
    /// next deadline or the end of an accept back-off (and at most the process table's
    /// exit-polling interval, when a child has no pidfd), else indefinitely.
    fn poll_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty()
            || !self.pending.is_empty()
            || self.procs.has_ready()
            || self.upstreams.has_ready()
            || self.may_accept()
        {
            return Some(Duration::ZERO);
        }
        let deadline = match (self.server.poll_timeout(), self.accept_backoff_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = deadline.map(|t| t.since(self.clock.mono()));
        match (sleep, self.procs.max_sleep()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn may_accept(&self) -> bool {
        !self.accept_paused
            && self.accept_backoff_until.is_none()
            && self.listeners.iter().any(|l| l.ready)
    }

    fn on_event(&mut self, event: &Event) {
        match token::decode(event.token()) {
            // The stop flag is checked after every poll; the wake-up was all it was for.
            Source::Waker => {}
            Source::Listener(i) => {
                if let Some(l) = self.listeners.get_mut(i) {
                    l.ready = true;
                }
            }
            Source::Conn { key, generation } => {
                let Some(c) = self.conns.get_mut(key) else {
                    return;
                };
                if c.generation != generation {
                    return;
                }
                // Closed and error states are readiness too: the next syscall reports them.
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    c.readable = true;
                }
                if event.is_read_closed() || event.is_error() {
                    c.read_closed = true;
                }
                if event.is_writable() || event.is_write_closed() || event.is_error() {
                    c.writable = true;
                }
                self.mark_ready(key);
            }
            Source::Proc {
                key,
                generation,
                part,
            } => self.procs.on_event(key, generation, part, event),
            Source::Upstream { key, generation } => {
                self.upstreams.on_event(key, generation, event);
            }
        }
    }

    /// Queues the connection at `key` if one of its armed operations can run.
    fn mark_ready(&mut self, key: usize) {
        if let Some(c) = self.conns.get_mut(key) {
            if !c.queued && c.has_work() {
                c.queued = true;
                self.ready.push_back((key, c.generation));
            }
        }
    }

    /// Accepts and runs armed operations, settling after each round.
    fn run_rounds(&mut self) {
        for _ in 0..ROUNDS_PER_WAKE {
            if self.exit.is_some() {
                return;
            }
            let accepted = self.accept_ready();
            if self.ready.is_empty()
                && !self.procs.has_ready()
                && !self.upstreams.has_ready()
                && !accepted
            {
                return;
            }
            std::mem::swap(&mut self.ready, &mut self.batch);
            while let Some((key, generation)) = self.batch.pop_front() {
                self.run_conn(key, generation);
            }
            self.procs
                .run_ready(self.poll.registry(), &mut self.scratch, &mut self.pending);
            self.upstreams
                .run_ready(&mut self.scratch, &mut self.pending);
            self.settle();
            // Before the next round sends what this one answered: a client that has its
            // answer finds it counted on every worker's status page.
            self.publish_status(false);
        }
    }

    fn run_conn(&mut self, key: usize, generation: u32) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if c.generation != generation {
            return;
        }
        c.queued = false;
        let id = conn_id(key);
        if let Some(input) = c.run_read(id, &mut self.scratch) {
            self.pending.push_back(input);
        }
        if self.preload_first(key) {
            return;
        }
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(input) = c.run_send(id, &self.files) {
            self.pending.push_back(input);
        }
    }

    /// Accepts from every ready listener, up to `ACCEPT_BUDGET` each. Returns true if any
    /// connection was accepted.
    fn accept_ready(&mut self) -> bool {
        if self.accept_paused {
            return false;
        }
        if let Some(until) = self.accept_backoff_until {
            if self.clock.mono() < until {
                return false;
            }
            self.accept_backoff_until = None;
        }
        let mut accepted = false;
        for i in 0..self.listeners.len() {
            let mut budget = ACCEPT_BUDGET;
            while self.listeners[i].ready && budget > 0 {
                let Some(socket) = &self.listeners[i].socket else {
                    break;
                };
                match socket.accept() {
                    Ok((stream, peer)) => {
                        budget -= 1;
                        self.exhaustion_logged = false;
                        accepted |= self.admit(i, stream, peer);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.listeners[i].ready = false;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if errno::is_exhaustion(&e) => {
                        if !self.exhaustion_logged {
                            self.exhaustion_logged = true;
                            log_error!(
                                "worker {}: cannot accept on {}: {e}; pausing accepts for {} ms",
                                self.index,
                                self.listeners[i].addr,
                                ACCEPT_BACKOFF.as_millis()
                            );
                        }
                        self.accept_backoff_until = Some(self.clock.mono().after(ACCEPT_BACKOFF));
                        return accepted;
                    }
                    Err(e) if is_transient_accept_error(&e) => budget -= 1,
                    Err(e) => {
                        // Unknown and possibly persistent: back off too, rather than spin.
                        log_error!(
                            "worker {}: cannot accept on {}: {e}",
                            self.index,
                            self.listeners[i].addr
                        );
                        self.accept_backoff_until = Some(self.clock.mono().after(ACCEPT_BACKOFF));
                        return accepted;
                    }
                }
            }
        }
        accepted
    }

    /// Registers an accepted socket and queues `Accepted`. Returns false if it had to be
    /// dropped.
    fn admit(&mut self, listener: usize, stream: TcpStream, peer: SocketAddr) -> bool {
        // TCP_NODELAY is inherited from the listening socket (`listen::new_socket`). The
        // local address is the listener's unless it is a wildcard: one `getsockname` saved
        // per connection in the common case.
        let listen_addr = self.listeners[listener].addr;
        let local = if listen_addr.ip().is_unspecified() {
            // No local address: the connection died already (reset in the queue).
            let Ok(local) = stream.local_addr() else {
                return false;
            };
            local
        } else {
            listen_addr
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if key > token::KEY_MAX {
            log_error!("worker {}: too many connections", self.index);
            return false;
        }
        let generation = self.next_generation & token::GENERATION_MASK;
        self.next_generation = self.next_generation.wrapping_add(1);
        let mut conn = Connection::new(stream, generation);
        if let Err(e) = self.poll.registry().register(
            &mut conn.socket,
            token::conn(key, generation),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log_error!("worker {}: cannot watch a new connection: {e}", self.index);
            return false;
        }
        entry.insert(conn);
        self.pending.push_back(Input::Accepted {
            // The listen list is short (it comes from the command line or config file).
            listener: ListenerId(u32::try_from(listener).unwrap_or(u32::MAX)),
            conn: conn_id(key),
            peer,
            local,
        });
        true
    }

    /// Fires the server's deadlines if one has passed.
    fn fire_timers(&mut self) {
        if self.exit.is_some() {
            return;
        }
        let now = self.now;
        if self.server.poll_timeout().is_some_and(|t| t <= now.mono) {
            self.server.handle_timeout(now);
            self.drain();
            self.settle();
        }
    }

    /// Feeds pending inputs one at a time, draining effects after each.
    fn settle(&mut self) {
        while self.exit.is_none() {
            let Some(input) = self.pending.pop_front() else {
                return;
            };
            self.server.handle(input, self.now);
            self.drain();
        }
    }

    /// Executes effects until the server has none left.
    fn drain(&mut self) {
        while let Some(effect) = self.server.poll_effect() {
            self.execute(effect);
        }
    }

    fn execute(&mut self, effect: Effect) {
        match effect {
            Effect::Read { conn, max } => {
                let Some(key) = self.known(conn, "Read") else {
                    return;
                };
                if max == 0 {
                    return self.misuse(key, "Read with max 0");
                }
                if let Some(c) = self.conns.get_mut(key) {
                    debug_assert!(c.armed_read.is_none(), "two reads armed on one connection");
                    c.armed_read = Some(u32::try_from(max).unwrap_or(u32::MAX));
                }
                self.mark_ready(key);
            }
            Effect::Send { conn, chunk } => {
                let Some(key) = self.known(conn, "Send") else {
                    return;
                };
                if chunk.is_empty() {
                    return self.misuse(key, "Send of an empty chunk");
                }
                if let Some(c) = self.conns.get_mut(key) {
                    debug_assert!(c.in_flight.is_none(), "two sends armed on one connection");
                    c.in_flight = Some(chunk);
                }
                self.mark_ready(key);
            }
            Effect::ShutdownWrite { conn } => {
                if let Some(c) = self
                    .known(conn, "ShutdownWrite")
                    .and_then(|k| self.conns.get(k))
                {
                    // Fails only if the peer is already gone (ENOTCONN); the next read or
                    // send reports that, and ShutdownWrite has no answer of its own.
                    let _ = c.socket.shutdown(Shutdown::Write);
                }
            }
            Effect::Close { conn } => self.close(conn),
            Effect::Refuse { conn, answer } => self.refuse(conn, &answer),
            Effect::PauseAccept => self.accept_paused = true,
            Effect::ResumeAccept => {
                self.accept_paused = false;
                // Connections may have queued while paused without a new edge.
                for l in &mut self.listeners {
                    l.ready = l.socket.is_some();
                }
            }
            Effect::Open { token, path } => {
                if self.file_pool.is_some() {
                    return self.submit_file_op(token, Work::Open { token, path });
                }
                let result = self.files.open(token, &path);
                self.pending.push_back(Input::Completed { token, result });
            }
            Effect::ReadFile {
                token,
                file,
                offset,
                len,
            } => {
                let Some(file) = self.files.get(file).cloned() else {
                    log_error!(
                        "worker {}: internal error: ReadFile of a file that is not open",
                        self.index
                    );
                    let result = Completion::Failed(IoError::Other);
                    return self.pending.push_back(Input::Completed { token, result });
                };
                if self.file_pool.is_some() {
                    let work = Work::Read {
                        token,
                        file,
                        offset,
                        len,
                    };
                    return self.submit_file_op(token, work);
                }
                let result = files::read_at(&file, offset, len);
                self.pending.push_back(Input::Completed { token, result });
            }
            Effect::ReadDir { token, path } => {
                if self.file_pool.is_some() {
                    return self.submit_file_op(token, Work::ReadDir { token, path });
                }
                let result = files::read_dir(&path);
                self.pending.push_back(Input::Completed { token, result });
            }
            Effect::CloseFile { file } => self.files.close(file),
            Effect::Spawn { token, spec } => {
                self.procs
                    .spawn(self.poll.registry(), token, &spec, &mut self.pending);
            }
            Effect::Connect { token, addr } => {
                self.upstreams
                    .connect(self.poll.registry(), token, &addr, &mut self.pending);
            }
            // One family of stream effects: a process's pipes or a socket, by who owns it.
            Effect::StreamWrite { stream, data } if self.procs.knows(stream) => {
                self.procs.write_stdin(stream, data, &mut self.pending);
            }
            Effect::StreamWrite { stream, data } => self.upstreams.write(stream, data),
            Effect::StreamShutdownWrite { stream } if self.procs.knows(stream) => {
                self.procs.close_stdin(self.poll.registry(), stream);
            }
            Effect::StreamShutdownWrite { stream } => self.upstreams.shutdown_write(stream),
            Effect::StreamRead {
                stream,
                channel,
                max,
            } if self.procs.knows(stream) => {
                self.procs
                    .read_output(stream, channel, max, &mut self.pending);
            }
            Effect::StreamRead { stream, max, .. } => self.upstreams.read(stream, max),
            Effect::Kill { stream } => self.procs.kill(stream),
            Effect::StreamClose { stream } if self.procs.knows(stream) => {
                self.procs.release(self.poll.registry(), stream);
                self.pending
                    .retain(|input| input_stream(input) != Some(stream));
            }
            Effect::StreamClose { stream } => {
                self.upstreams.close(stream);
                self.pending
                    .retain(|input| input_stream(input) != Some(stream));
            }
            Effect::ServiceAnswered { service } => self.board.answered(&service),
            // Off the loop: the answer comes back through the inbox (`verifier`).
            Effect::VerifyPassword {
                token,
                hash,
                password,
            } => self.verifiers.submit(token, hash, password, &self.reply),
            Effect::Status { token } => {
                self.publish_status(true);
                let status = Box::new(self.status.snapshot());
                self.pending.push_back(Input::Completed {
                    token,
                    result: Completion::Status(status),
                });
            }
            Effect::ErrorLog { line } => log_error!("{line}"),
            Effect::AccessLog { line } => {
                if self.access_log.is_some() {
                    if self.log_batch.is_empty() {
                        self.log_batch_since = Some(self.clock.mono());
                    }
                    self.log_batch.push_str(&line);
                    self.log_batch.push('\n');
                }
            }
            Effect::Exit { code } => {
                if !self.conns.is_empty()
                    || self.files.len() > 0
                    || self.procs.live() > 0
                    || self.upstreams.len() > 0
                {
                    log_error!(
                        "worker {}: exiting with {} connections, {} files and {} processes \
                         still open",
                        self.index,
                        self.conns.len(),
                        self.files.len(),
                        self.procs.live()
                    );
                }
                // Children still running (released ones the core killed, typically) are
                // killed and reaped when the table drops, as the worker returns.
                self.exit = Some(code);
            }
        }
    }

    /// Hands an effect's work to the file pool; a full queue answers it at once with
    /// `Failed(Exhausted)` (a 503) rather than make the loop wait.
    fn submit_file_op(&mut self, token: weir_core::Token, work: Work) {
        let Some(pool) = &self.file_pool else {
            return;
        };
        if pool.submit(work, &self.reply).is_err() {
            self.pending.push_back(filepool::refused(token));
            self.note_file_refused();
        }
    }

    /// Counts an operation the file pool's full queue turned away, and says so in the
    /// error log at most once a minute (a slow disk under load would otherwise fill it).
    fn note_file_refused(&mut self) {
        self.file_refused.0 += 1;
        let now = self.clock.mono();
        if self
            .file_refused
            .1
            .is_some_and(|t| now.since(t) < FILE_REFUSED_LOG_EVERY)
        {
            return;
        }
        log_error!(
            "worker {}: the file threads are behind (the disk is slow): {} file operations \
             turned away (503, or a response cut) since the last report",
            self.index,
            self.file_refused.0
        );
        self.file_refused = (0, Some(now));
    }

    /// Takes in what the file pool did for this worker.
    fn file_done(&mut self, done: Done) {
        match done {
            Done::Opened {
                token,
                file,
                result,
            } => {
                if let Some(file) = file {
                    self.files.insert(token, file);
                }
                self.pending.push_back(Input::Completed { token, result });
                self.settle();
            }
            Done::Completed(input) => {
                self.pending.push_back(input);
                self.settle();
            }
            Done::Preloaded { key, generation } => {
                // A connection closed meanwhile (its slot free, or another's now) is not
                // waiting any more.
                if let Some(c) = self.conns.get_mut(key) {
                    if c.generation == generation && c.preloading {
                        c.preloading = false;
                        c.warm = true;
                        self.mark_ready(key);
                    }
                }
            }
        }
    }

    /// Before a send from a file: if the pool is on and the range the send would copy is
    /// not in the page cache, hands a read-ahead to the pool and returns true (the send
    /// waits for it). A full queue fails the connection: its response cannot go on
    /// without waiting on the disk, and the loop must not.
    fn preload_first(&mut self, key: usize) -> bool {
        let Some(pool) = &self.file_pool else {
            return false;
        };
        let Some(c) = self.conns.get_mut(key) else {
            return false;
        };
        if c.warm || c.preloading || c.failed || !c.writable {
            return false;
        }
        let Some(Chunk::File { file, offset, len }) = &c.in_flight else {
            return false;
        };
        let Some(f) = self.files.get(*file) else {
            return false;
        };
        let step = (*len).min(SEND_BUDGET as u64);
        // Unknown (no cachestat): send inline, as without the pool.
        if resident(&f.file, *offset, step) != Some(false) {
            return false;
        }
        let work = Work::Preload {
            key,
            generation: c.generation,
            file: Arc::clone(f),
            offset: *offset,
            len: *len,
        };
        if pool.submit(work, &self.reply).is_ok() {
            c.preloading = true;
        } else {
            c.failed = true;
            c.armed_read = None;
            c.in_flight = None;
            self.pending.push_back(Input::ConnFailed {
                conn: conn_id(key),
                error: IoError::Exhausted,
            });
            self.note_file_refused();
        }
        true
    }

    /// The slab key for `conn`, if the connection exists; logs the core's mistake if not.
    fn known(&self, conn: ConnId, what: &str) -> Option<usize> {
        let key = usize::try_from(conn.0)
            .ok()
            .filter(|&k| self.conns.contains(k));
        if key.is_none() {
            log_error!(
                "worker {}: internal error: {what} for unknown connection {}",
                self.index,
                conn.0
            );
        }
        key
    }

    /// The core asked for something impossible on a connection: fail the connection (the
    /// core then closes it) instead of leaving it to hang until a timeout.
    fn misuse(&mut self, key: usize, what: &str) {
        log_error!(
            "worker {}: internal error: {what} on connection {key}",
            self.index
        );
        if let Some(c) = self.conns.get_mut(key) {
            if !c.failed {
                c.failed = true;
                c.armed_read = None;
                c.in_flight = None;
                self.pending.push_back(Input::ConnFailed {
                    conn: conn_id(key),
                    error: IoError::Other,
                });
            }
        }
    }

    /// Carries out `Refuse`: what the client sent so far is read and dropped (a close on
    /// unread bytes would reset the connection under the answer), the answer written as
    /// far as the socket takes it now, the sending side shut, and the connection closed.
    /// Bounded: a few reads, one write, whatever the client does.
    fn refuse(&mut self, conn: ConnId, answer: &[u8]) {
        if let Some(c) = self
            .known(conn, "Refuse")
            .and_then(|k| self.conns.get_mut(k))
        {
            for _ in 0..4 {
                match c.socket.read(&mut self.scratch) {
                    Ok(n) if n > 0 => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    _ => break,
                }
            }
            // Failures change nothing: the connection is closed either way.
            let _ = c.socket.write(answer);
            let _ = c.socket.shutdown(Shutdown::Write);
        }
        self.close(conn);
    }

    /// Carries out `Close`: forget the connection and every pending word about it.
    fn close(&mut self, conn: ConnId) {
        let Some(key) = self.known(conn, "Close") else {
            return;
        };
        // Dropping the socket closes it, and epoll forgets a closed descriptor by itself. (A
        // child being spawned may hold a copy of the descriptor until its exec closes it;
        // an event that arrives meanwhile carries this slot's old generation and is ignored.)
        drop(self.conns.try_remove(key));
        self.pending.retain(|input| input_conn(input) != Some(conn));
    }
}

/// The core's name for the connection at slab key `key`.
fn conn_id(key: usize) -> ConnId {
    ConnId(key as u64)
}

/// The connection an input is about, if any.
fn input_conn(input: &Input) -> Option<ConnId> {
    match input {
        Input::Accepted { conn, .. }
        | Input::Received { conn, .. }
        | Input::PeerClosed { conn }
        | Input::Sent { conn, .. }
        | Input::ConnFailed { conn, .. } => Some(*conn),
        Input::Completed { .. }
        | Input::StreamReceived { .. }
        | Input::StreamEof { .. }
        | Input::StreamWritten { .. }
        | Input::StreamWriteClosed { .. }
        | Input::StreamFailed { .. }
        | Input::Exited { .. }
        | Input::ServiceState { .. }
        | Input::Reload(_)
        | Input::Shutdown => None,
    }
}

/// Errors of `accept` that concern only the one connection being accepted (it was reset
/// or its network went away while queued); accept(2) says to retry on these.
fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EPROTO
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::ENETDOWN
                | libc::EPERM
        )
    )
}

#[cfg(test)]
mod tests;
