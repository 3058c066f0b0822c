//! The shell: one thread, one mio loop, every FastCGI connection and the whole world.
//!
//! # Theory of operation
//!
//! The pure parts decide everything: [`Conn`] turns bytes into requests and answers into
//! bytes, [`http`] turns a request into a world call and an answer, [`World`] is the game.
//! This loop only moves bytes, reads the clock and the random source, and keeps the parked
//! long polls.
//!
//! ```text
//!   listener ─accept─► Client { stream, Conn, parked? }
//!                           │ read ≤ receive_room ─► Conn::receive
//!                           │ Conn::poll_event ─► Request ─► http::handle ─┬─ Now: respond
//!                           │                                              └─ Wait: park
//!                           │ write pending_transmit, close on should_close / EOF / error
//!   end of every turn:  World::handle_timeout (idle players) ─► expire parked polls past
//!                       their deadline (200, no lines) ─► World::poll_woken ─► answer the
//!                       parked polls of every woken player that now has something to show
//! ```
//!
//! Parked polls cost a map entry each, no thread and no timer: `Parked` indexes them by
//! player (who to answer when the world wakes a player) and by deadline (the loop sleeps
//! until the earliest one, the next idle logout, or an accept retry). A client that closes
//! its connection, or aborts the request, takes its parked poll with it.
//!
//! Sockets are registered edge-triggered for both directions, and readiness is remembered
//! per connection: set by an event, cleared only by `EAGAIN` (mio's contract). A
//! connection is read only while its `Conn` has room, so a peer that sends and never reads
//! stalls itself and no one else.
//!
//! Connections are limited to `Settings::connections_max`, lowered to what the descriptor
//! limit allows; at the limit the loop stops accepting (clients wait in the listen backlog,
//! which weir sized) and starts again when one closes. An `accept` that fails for want of
//! descriptors or memory is retried after [`ACCEPT_RETRY`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll};
use weir_core::Time;

use crate::conn::{Conn, ConnEvent};
use crate::http::{self, Answer, Wait};
use crate::sys;
use crate::world::{PlayerId, World, IDLE_TIMEOUT, LOG_MAX};

/// How long a long poll waits for an event before it is answered with no lines.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(25);

/// Connections held at most (before the descriptor limit lowers it).
pub const CONNECTIONS_MAX: usize = 10_000;

/// Descriptors kept back from connections (the listener, epoll, stdio, /dev/urandom…).
const FDS_RESERVED: u64 = 16;

/// How long to wait before accepting again after `accept` ran out of something.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The longest `PARAMS` stream taken (weir's headers are 32 KiB by default).
const PARAMS_MAX: usize = 128 * 1024;

/// The longest request body taken (a name or a command line); longer ones get 413.
const STDIN_MAX: usize = 8 * 1024;

/// The most bytes one read takes.
const READ_CHUNK: usize = 64 * 1024;

const LISTENER: mio::Token = mio::Token(usize::MAX);

/// What the loop is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Settings {
    /// How long a long poll waits ([`POLL_TIMEOUT`]).
    pub poll_timeout: Duration,
    /// How long a player may do nothing before being logged out ([`IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
    /// The most connections at once ([`CONNECTIONS_MAX`]); also what `FCGI_MAX_CONNS` says.
    pub connections_max: usize,
    /// Events the world keeps ([`LOG_MAX`]).
    pub log_max: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            poll_timeout: POLL_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            connections_max: CONNECTIONS_MAX,
            log_max: LOG_MAX,
        }
    }
}

/// Serves the MUD on this listening socket with the default settings until a fatal error;
/// returns the process exit status to use then.
#[must_use]
pub fn run(listener: std::os::unix::net::UnixListener) -> i32 {
    run_with(listener, Settings::default())
}

/// [`run`] with these settings.
#[must_use]
pub fn run_with(listener: std::os::unix::net::UnixListener, settings: Settings) -> i32 {
    let err = match Shell::new(listener, settings) {
        Ok(shell) => shell.serve(),
        Err(e) => e,
    };
    log(format_args!("stopped: {err}"));
    1
}

fn log(msg: std::fmt::Arguments<'_>) {
    eprintln!("weir-mud: {msg}");
}

/// One connection.
struct Client {
    stream: UnixStream,
    conn: Conn,
    readable: bool,
    writable: bool,
    /// The parked long poll and its deadline.
    parked: Option<(Wait, Time)>,
}

/// The parked long polls, by player and by deadline (the client holds the rest).
#[derive(Debug, Default)]
struct Parked {
    by_player: BTreeMap<PlayerId, BTreeSet<usize>>,
    by_deadline: BTreeSet<(Time, usize)>,
}

impl Parked {
    fn park(&mut self, key: usize, wait: &Wait, deadline: Time) {
        self.by_player.entry(wait.player).or_default().insert(key);
        self.by_deadline.insert((deadline, key));
    }

    fn unpark(&mut self, key: usize, wait: &Wait, deadline: Time) {
        if let Some(keys) = self.by_player.get_mut(&wait.player) {
            keys.remove(&key);
            if keys.is_empty() {
                self.by_player.remove(&wait.player);
            }
        }
        self.by_deadline.remove(&(deadline, key));
    }

    fn of(&self, player: PlayerId) -> Vec<usize> {
        self.by_player
            .get(&player)
            .map(|keys| keys.iter().copied().collect())
            .unwrap_or_default()
    }

    fn first_deadline(&self) -> Option<Time> {
        self.by_deadline.first().map(|&(t, _)| t)
    }
}

struct Shell {
    poll: Poll,
    listener: UnixListener,
    clients: BTreeMap<usize, Client>,
    next_key: usize,
    world: World,
    parked: Parked,
    settings: Settings,
    epoch: Instant,
    /// Accepting stopped at `connections_max`; starts again when a connection closes.
    full: bool,
    /// Accepting paused after a failure, until then.
    accept_retry: Option<Time>,
    buf: Box<[u8]>,
}

impl Shell {
    fn new(
        listener: std::os::unix::net::UnixListener,
        mut settings: Settings,
    ) -> io::Result<Shell> {
        listener.set_nonblocking(true)?;
        let mut listener = UnixListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        if let Some(fds) = sys::nofile_limit() {
            let usable = usize::try_from(fds.saturating_sub(FDS_RESERVED)).unwrap_or(usize::MAX);
            settings.connections_max = settings.connections_max.min(usable.max(1));
        }
        Ok(Shell {
            poll,
            listener,
            clients: BTreeMap::new(),
            next_key: 0,
            world: World::new(settings.idle_timeout, settings.log_max),
            parked: Parked::default(),
            settings,
            epoch: Instant::now(),
            full: false,
            accept_retry: None,
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
        })
    }

    /// Milliseconds since the loop started, rounded down (a deadline is never met early).
    fn now(&self) -> Time {
        Time(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// Runs the loop; returns only the error that stops it.
    fn serve(mut self) -> io::Error {
        let mut events = Events::with_capacity(1024);
        loop {
            let deadline = [
                self.parked.first_deadline(),
                self.world.poll_timeout(),
                self.accept_retry,
            ]
            .into_iter()
            .flatten()
            .min();
            let now = self.now();
            let timeout = deadline.map(|d| d.since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return e;
            }
            let now = self.now();
            for event in &events {
                if event.token() == LISTENER {
                    self.accept(now);
                    continue;
                }
                let key = event.token().0;
                let Some(c) = self.clients.get_mut(&key) else {
                    continue;
                };
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    c.readable = true;
                }
                if event.is_writable() || event.is_write_closed() || event.is_error() {
                    c.writable = true;
                }
                self.drive(key, now);
            }
            if self.accept_retry.is_some_and(|t| t <= now) {
                self.accept_retry = None;
                self.accept(now);
            }
            self.world.handle_timeout(now);
            self.expire(now);
            self.wake(now);
        }
    }

    fn accept(&mut self, now: Time) {
        if self.accept_retry.is_some() {
            return;
        }
        loop {
            if self.clients.len() >= self.settings.connections_max {
                self.full = true;
                return;
            }
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let key = self.next_key;
                    self.next_key += 1;
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut stream, mio::Token(key), interest)
                    {
                        log(format_args!("cannot watch a new connection: {e}"));
                        continue;
                    }
                    let conn = Conn::new(self.settings.connections_max, PARAMS_MAX, STDIN_MAX);
                    let client = Client {
                        stream,
                        conn,
                        // Optimistic: the first read or write says EAGAIN if not.
                        readable: true,
                        writable: true,
                        parked: None,
                    };
                    self.clients.insert(key, client);
                    self.drive(key, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    log(format_args!(
                        "accept: {e}; trying again in {} ms",
                        ACCEPT_RETRY.as_millis()
                    ));
                    self.accept_retry = Some(now.after(ACCEPT_RETRY));
                    return;
                }
            }
        }
    }

    /// Moves the connection's bytes and runs its requests until it can go no further.
    fn drive(&mut self, key: usize, now: Time) {
        loop {
            let Some(c) = self.clients.get_mut(&key) else {
                return;
            };
            let mut progress = false;
            let room = c.conn.receive_room().min(self.buf.len());
            if c.readable && room > 0 {
                match c.stream.read(&mut self.buf[..room]) {
                    // The peer closed: its parked poll, if any, goes with it.
                    Ok(0) => return self.close(key, now),
                    Ok(n) => {
                        c.conn.receive(&self.buf[..n]);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(_) => return self.close(key, now),
                }
            }
            while let Some(event) = c.conn.poll_event() {
                match event {
                    ConnEvent::Request(req) => {
                        match http::handle(&mut self.world, &req, now, sys::random16) {
                            Answer::Now(response) => c.conn.respond(&response.to_cgi()),
                            Answer::Wait(wait) => {
                                let deadline = now.after(self.settings.poll_timeout);
                                self.parked.park(key, &wait, deadline);
                                c.parked = Some((wait, deadline));
                            }
                        }
                    }
                    ConnEvent::Aborted => {
                        if let Some((wait, deadline)) = c.parked.take() {
                            self.parked.unpark(key, &wait, deadline);
                        }
                    }
                    ConnEvent::Failed(why) => {
                        log(format_args!("closing a FastCGI connection: {why}"));
                    }
                }
            }
            while c.writable && !c.conn.pending_transmit().is_empty() {
                match c.stream.write(c.conn.pending_transmit()) {
                    Ok(0) => return self.close(key, now),
                    Ok(n) => {
                        c.conn.advance_transmit(n);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return self.close(key, now),
                }
            }
            if c.conn.should_close() {
                return self.close(key, now);
            }
            if !progress {
                return;
            }
        }
    }

    fn close(&mut self, key: usize, now: Time) {
        let Some(mut c) = self.clients.remove(&key) else {
            return;
        };
        if let Some((wait, deadline)) = c.parked.take() {
            self.parked.unpark(key, &wait, deadline);
        }
        // Closing the descriptor would drop it from the poll set too; deregistering first
        // is mio's advice. Either way the stream is gone.
        let _ = self.poll.registry().deregister(&mut c.stream);
        drop(c);
        if self.full {
            self.full = false;
            self.accept(now);
        }
    }

    /// Answers, with no lines, every parked poll whose deadline has come.
    fn expire(&mut self, now: Time) {
        while let Some(&(deadline, key)) = self.parked.by_deadline.first() {
            if deadline > now {
                return;
            }
            let Some(c) = self.clients.get_mut(&key) else {
                unreachable!("a parked poll outlived its connection");
            };
            let (wait, deadline) = c.parked.take().expect("a parked client has its wait");
            self.parked.unpark(key, &wait, deadline);
            let response = http::expire(&mut self.world, &wait, now);
            c.conn.respond(&response.to_cgi());
            self.drive(key, now);
        }
    }

    /// Answers the parked polls of every player the world woke that have something to
    /// show now.
    fn wake(&mut self, now: Time) {
        while let Some(player) = self.world.poll_woken() {
            for key in self.parked.of(player) {
                // A drive below may have closed it (a pipelined request that failed).
                let Some(c) = self.clients.get_mut(&key) else {
                    continue;
                };
                let Some((wait, deadline)) = c.parked else {
                    continue;
                };
                let Some(response) = http::wake(&mut self.world, &wait, now) else {
                    continue;
                };
                c.parked = None;
                self.parked.unpark(key, &wait, deadline);
                c.conn.respond(&response.to_cgi());
                self.drive(key, now);
            }
        }
    }
}
