//! The service checker: the core keeps the stream side of its contract with FastCGI
//! services, answers a dead service at once, and the world's record of every service
//! exchange, for the judge.
//!
//! # Theory of operation
//!
//! Each stream effect on a service's stream is checked as it is emitted, and each input
//! as the world delivers it:
//!
//! * **lifetimes** — a `Connect` has a fresh token and goes to a socket the configuration
//!   names; nothing but its completion may follow until it is `Connected`; a failed one is
//!   never read, written or closed; a connected stream is closed exactly once, and nothing
//!   names it afterwards; after `Exit` none is left open;
//! * **operations** — at most one `StreamRead` and one `StreamWrite` outstanding, never an
//!   empty write;
//! * **`connections=N`** — at most N streams to the service between `Connect` and their
//!   close (or failed connect): the simulated server has one worker, whose share is all N;
//! * **`ServiceAnswered`** — names the service, and never outnumbers the END_REQUEST records
//!   the core was handed;
//! * **the `gateway` timeout** — no stream busy with a request (its parameters received,
//!   its END_REQUEST not yet handed over) stays open longer than the timeout after the
//!   last bytes it handed the core (or the request's start);
//! * **death** — a stream whose process died, once the core has read everything the
//!   process wrote and has a `StreamRead` outstanding, is closed within
//!   `DEATH_NOTICE_MS`: the world answers that read with the end of the stream within
//!   2 ms, and a request on a dead service must get its 502 (or its cut) then, not sit
//!   until the `gateway` timeout. A shell that misses the death (the planted bug
//!   `lose-service-eof`) fails this rule.
//!
//! The per-request records (`ServiceRecord`) say what the world saw, for the judge: a
//! request may get 504 only if a stream of it was closed after a silence as long as the
//! `gateway` timeout *of the generation it started under* (a reload may change it) while
//! its process lived; 502 (beyond what the model predicts) or a
//! cut only if a process serving it died or a restart fell within its window; 503 only if
//! the service was down (restarting: connections refused, `Down` published) within its
//! window.

use std::collections::{BTreeMap, BTreeSet};

use weir_core::server::{StreamId, UpstreamAddr};
use weir_core::Time;

/// How long a dead process's stream may stay open once the core waits on it.
pub const DEATH_NOTICE_MS: u64 = 100;

/// What the world saw of one request's service exchanges.
#[derive(Clone, Debug, Default)]
pub struct ServiceRecord {
    /// Streams its parameters arrived on.
    pub streams: Vec<StreamId>,
    /// The longest silence after which the core closed a stream of it, its process
    /// alive: a 504 is the `gateway` timeout's if this is at least the timeout of the
    /// generation the request started under.
    pub closed_silent_ms: Option<u64>,
    /// A process serving it died.
    pub died: bool,
    /// Its END_REQUEST reached the core.
    pub ended: bool,
}

#[derive(Debug, Default)]
struct StreamState {
    connected: bool,
    reading: Option<Time>,
    writing: bool,
    /// The exchange it is busy with, since when (its `Connect`, or the first write after
    /// the last END_REQUEST: when the core started waiting on it), and its request once
    /// the service named it; then the last bytes it handed the core.
    busy: Option<(Option<u64>, Time)>,
    last_out: Time,
    died_at: Option<Time>,
    /// Bytes the process wrote before it died.
    written_at_death: u64,
    delivered: u64,
}

/// The service checker and record book.
#[derive(Debug)]
pub struct ServiceBook {
    /// `timeout gateway=`, in ms: the longest any generation has (no busy stream
    /// outlives it).
    pub timeout_max_ms: u64,
    connections: usize,
    name: String,
    sockets: Vec<String>,
    streams: BTreeMap<StreamId, StreamState>,
    closed: BTreeSet<StreamId>,
    failed: BTreeSet<StreamId>,
    requests: BTreeMap<u64, ServiceRecord>,
    /// When the service was down: (killed, `Ready` published).
    downs: Vec<(Time, Option<Time>)>,
    /// Deaths of one process (crashes), for requests the world could not name.
    deaths: Vec<Time>,
    ends: u64,
    answered: u64,
    empty: ServiceRecord,
}

impl ServiceBook {
    /// A book for service `name` at `sockets`, with `connections=N` and `timeout
    /// gateway=` from the shortest to the longest any generation has.
    #[must_use]
    pub fn new(
        name: &str,
        sockets: &[&str],
        connections: usize,
        (_, timeout_max_ms): (u64, u64),
    ) -> ServiceBook {
        ServiceBook {
            timeout_max_ms,
            connections,
            name: name.to_string(),
            sockets: sockets.iter().map(|s| s.to_string()).collect(),
            streams: BTreeMap::new(),
            closed: BTreeSet::new(),
            failed: BTreeSet::new(),
            requests: BTreeMap::new(),
            downs: Vec::new(),
            deaths: Vec::new(),
            ends: 0,
            answered: 0,
            empty: ServiceRecord::default(),
        }
    }

    /// The record of request `id`.
    #[must_use]
    pub fn request(&self, id: u64) -> &ServiceRecord {
        self.requests.get(&id).unwrap_or(&self.empty)
    }

    fn live(&mut self, stream: StreamId, what: &str) -> Result<&mut StreamState, String> {
        if self.closed.contains(&stream) {
            return Err(format!("{what} on {stream:?} after its StreamClose"));
        }
        if self.failed.contains(&stream) {
            return Err(format!("{what} on {stream:?}, whose Connect failed"));
        }
        let s = self
            .streams
            .get_mut(&stream)
            .ok_or_else(|| format!("{what} on {stream:?}, which was never connected"))?;
        if !s.connected {
            return Err(format!("{what} on {stream:?} before its Connect completed"));
        }
        Ok(s)
    }

    /// Effect `Connect`; returns the socket path.
    pub fn connect(
        &mut self,
        stream: StreamId,
        addr: &UpstreamAddr,
        now: Time,
    ) -> Result<String, String> {
        let UpstreamAddr::Unix(path) = addr else {
            return Err(format!(
                "Connect to {addr:?}: the service is at a Unix socket"
            ));
        };
        let path = path.display().to_string();
        if !self.sockets.contains(&path) {
            return Err(format!("Connect to {path}, which no configuration names"));
        }
        if self.streams.contains_key(&stream) || self.closed.contains(&stream) {
            return Err(format!("Connect reuses {stream:?}"));
        }
        self.streams.insert(
            stream,
            StreamState {
                busy: Some((None, now)),
                last_out: now,
                ..StreamState::default()
            },
        );
        if self.streams.len() > self.connections {
            return Err(format!(
                "{} streams to service {} at once, beyond connections={}",
                self.streams.len(),
                self.name,
                self.connections
            ));
        }
        Ok(path)
    }

    /// The `Connect`'s completion.
    pub fn connected(&mut self, stream: StreamId, ok: bool) {
        if ok {
            if let Some(s) = self.streams.get_mut(&stream) {
                s.connected = true;
            }
        } else {
            self.streams.remove(&stream);
            self.failed.insert(stream);
        }
    }

    /// Effect `StreamRead`.
    pub fn read(&mut self, stream: StreamId, max: usize, now: Time) -> Result<(), String> {
        let s = self.live(stream, "StreamRead")?;
        if s.reading.is_some() {
            return Err(format!("two StreamRead outstanding on {stream:?}"));
        }
        if max == 0 {
            return Err(format!("StreamRead {{ max: 0 }} on {stream:?}"));
        }
        s.reading = Some(now);
        Ok(())
    }

    /// Effect `StreamWrite`.
    pub fn write(&mut self, stream: StreamId, len: usize, now: Time) -> Result<(), String> {
        let s = self.live(stream, "StreamWrite")?;
        if s.busy.is_none() {
            // An idle stream taken for the next request.
            s.busy = Some((None, now));
        }
        if s.writing {
            return Err(format!("two StreamWrite outstanding on {stream:?}"));
        }
        if len == 0 {
            return Err(format!("empty StreamWrite on {stream:?}"));
        }
        s.writing = true;
        Ok(())
    }

    /// Effect `StreamClose`; returns the request it was busy with, if any (its answer
    /// may now be cut).
    pub fn close(&mut self, stream: StreamId, now: Time) -> Result<Option<u64>, String> {
        let s = self.live(stream, "StreamClose")?;
        let busy = s.busy;
        let silence = busy.map_or(0, |(_, since)| {
            now.0.saturating_sub(s.last_out.max(since).0)
        });
        let alive = s
            .died_at
            .is_none_or(|d| now.0.saturating_sub(d.0) <= DEATH_NOTICE_MS);
        self.streams.remove(&stream);
        self.closed.insert(stream);
        let request = busy.and_then(|(r, _)| r);
        if let (Some(id), true) = (request, alive) {
            let r = self.requests.entry(id).or_default();
            r.closed_silent_ms = r.closed_silent_ms.max(Some(silence));
        }
        Ok(request)
    }

    /// An input the world is about to deliver: `Some(n)` bytes, or (`None`) the end or
    /// failure of the stream, or a write's completion.
    pub fn received(&mut self, stream: StreamId, n: usize, now: Time) -> Result<(), String> {
        let s = self.live(stream, "an input")?;
        if s.reading.take().is_none() {
            return Err(format!(
                "the world's input: {stream:?} bytes with no read outstanding"
            ));
        }
        s.last_out = now;
        s.delivered += n as u64;
        Ok(())
    }

    /// The end of the stream (or its failure) is delivered.
    pub fn ended(&mut self, stream: StreamId, read: bool) -> Result<(), String> {
        let s = self.live(stream, "an input")?;
        if read {
            s.reading = None;
        } else {
            s.writing = false;
        }
        Ok(())
    }

    /// A write's completion is delivered.
    pub fn written(&mut self, stream: StreamId) -> Result<(), String> {
        let s = self.live(stream, "an input")?;
        s.writing = false;
        Ok(())
    }

    /// The service received a request's parameters on `stream`.
    pub fn began(&mut self, stream: StreamId, request: Option<u64>) {
        if let Some((r, _)) = self.streams.get_mut(&stream).and_then(|s| s.busy.as_mut()) {
            *r = request;
        }
        if let Some(id) = request {
            self.requests.entry(id).or_default().streams.push(stream);
        }
    }

    /// The core was handed the END_REQUEST of `request` on `stream`.
    pub fn end_delivered(&mut self, stream: StreamId, request: Option<u64>) {
        self.ends += 1;
        if let Some(s) = self.streams.get_mut(&stream) {
            s.busy = None;
        }
        if let Some(id) = request {
            self.requests.entry(id).or_default().ended = true;
        }
    }

    /// The process serving `stream` died, having written `written` bytes in all.
    pub fn died(&mut self, stream: StreamId, request: Option<u64>, written: u64, now: Time) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.died_at = Some(now);
            s.written_at_death = written;
        }
        if let Some(id) = request {
            self.requests.entry(id).or_default().died = true;
        }
        self.deaths.push(now);
    }

    /// The server closed an idle kept connection: a request the core hands to it at that
    /// moment (the keep-alive race every FastCGI client has) gets 502.
    pub fn idle_closed(&mut self, now: Time) {
        self.deaths.push(now);
    }

    /// The server was killed (a restart begins).
    pub fn down(&mut self, now: Time) {
        self.downs.push((now, None));
    }

    /// The service is ready again (`Ready` published).
    pub fn up(&mut self, now: Time) {
        if let Some((_, end @ None)) = self.downs.last_mut() {
            *end = Some(now);
        }
    }

    /// Was the service down (or a process of it dying) at some moment of `[from, to]`?
    #[must_use]
    pub fn down_during(&self, from: Time, to: Time) -> bool {
        self.downs
            .iter()
            .any(|(a, b)| *a <= to && b.is_none_or(|b| b >= from))
    }

    /// Did a process die (or the server go down) during `[from, to]`?
    #[must_use]
    pub fn death_during(&self, from: Time, to: Time) -> bool {
        self.down_during(from, to) || self.deaths.iter().any(|t| *t >= from && *t <= to)
    }

    /// Effect `ServiceAnswered`.
    pub fn answered(&mut self, service: &str) -> Result<(), String> {
        if service != self.name {
            return Err(format!(
                "ServiceAnswered for `{service}`, which is not declared"
            ));
        }
        self.answered += 1;
        if self.answered > self.ends {
            return Err(format!(
                "{} ServiceAnswered effects for {} END_REQUEST records handed to the core",
                self.answered, self.ends
            ));
        }
        Ok(())
    }

    /// A rule broken by now: a busy stream past the `gateway` timeout, or a dead
    /// process's stream the core waits on for longer than `DEATH_NOTICE_MS`.
    #[must_use]
    pub fn overdue(&self, now: Time) -> Option<String> {
        self.streams.iter().find_map(|(id, s)| {
            if let Some((request, since)) = s.busy {
                let silence = now.0.saturating_sub(s.last_out.max(since).0);
                if silence > self.timeout_max_ms {
                    return Some(format!(
                        "service {id:?} (request {request:?}) has handed the core nothing for \
                         {silence}ms and is still open (timeout gateway={}ms at most)",
                        self.timeout_max_ms
                    ));
                }
            }
            let died = s.died_at?;
            let waiting = s.reading?;
            if s.delivered < s.written_at_death {
                return None;
            }
            let from = died.max(waiting);
            let late = now.0.saturating_sub(from.0);
            (late > DEATH_NOTICE_MS).then(|| {
                format!(
                    "hang on service death: {id:?} (request {:?}): its process died at {} ms \
                     and the core, reading it since {} ms with everything the process wrote \
                     already read, has not closed it {late} ms later (a dead service is \
                     answered within {DEATH_NOTICE_MS} ms)",
                    s.busy.and_then(|(r, _)| r),
                    died.0,
                    waiting.0
                )
            })
        })
    }

    /// Streams connected (or connecting) and never closed.
    #[must_use]
    pub fn open(&self) -> Vec<StreamId> {
        self.streams.keys().copied().collect()
    }

    /// Is `stream` a service's (known to this book)?
    #[must_use]
    pub fn knows(&self, stream: StreamId) -> bool {
        self.streams.contains_key(&stream)
            || self.closed.contains(&stream)
            || self.failed.contains(&stream)
    }
}
