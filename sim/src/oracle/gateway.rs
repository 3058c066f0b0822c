//! The gateway checker: the core keeps the process side of its contract, and the world's
//! record of every script, for the judge.
//!
//! # Theory of operation
//!
//! Each process effect is checked against `weir_core::server::io` and DESIGN.md §4 as it
//! is emitted, and each process input as the world delivers it:
//!
//! * **lifetimes** — a `Spawn` has a fresh token; nothing but its completion may follow
//!   until it is `Spawned`; a failed spawn is never killed or released; every spawned
//!   process is released exactly once, and no effect or input names it afterwards; a
//!   `StreamClose` without a `Kill` comes only after the process exited (nothing runs on
//!   unattended);
//! * **streams** — at most one `StreamWrite` outstanding, never empty, never after
//!   `StreamShutdownWrite` or `StreamWriteClosed`; at most one `StreamRead` per stream, none after its
//!   end;
//! * **standard input** — the bytes the core writes are exactly the request body, in
//!   order (each `StreamWrite` continues where the accepted bytes end), and `StreamShutdownWrite`
//!   comes only once all of it was accepted (unless the script closed its input);
//! * **the farm** — at most `limit cgi=N` processes between `Spawn` and `StreamClose`;
//! * **the `gateway` timeout** — no spawned process lives on more than the timeout after
//!   its last output was read (or its start);
//! * **back-pressure** — the core never holds more than `BACKLOG_MAX` bytes of a
//!   script's output that its client has not been sent.
//!
//! The per-request records (`RequestRecord`) say what the world saw happen, for the
//! judge's 503 and 504 and the ledger's cut connections: whether the farm and its queue
//! were both full while the request waited (`farm_full`), whether a spawn failed for want
//! of processes, and whether a process of the request was killed after a silence as long
//! as the timeout, before or after its header section was read.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use weir_core::server::{Channel, Completion, IoError, SpawnSpec, StreamId};
use weir_core::Time;

/// The most script output the server may hold that its client has not been sent: its
/// own buffer (the connection's queue is read from only while it is short) plus one
/// read, with room for framing. A server without back-pressure exceeds it at once.
pub const BACKLOG_MAX: u64 = 256 * 1024;

/// What the world saw of one request's scripts.
#[derive(Clone, Debug, Default)]
pub struct RequestRecord {
    /// Processes spawned for it.
    pub procs: Vec<StreamId>,
    /// The farm was full and its queue held as many again while it waited.
    pub farm_full: bool,
    /// A spawn for it failed with `Exhausted`.
    pub spawn_exhausted: bool,
    /// A process of it was killed after a whole timeout without output, before its
    /// header section had been read.
    pub idle_kill_before_head: bool,
    /// The same, after its header section had been read.
    pub idle_kill_after_head: bool,
}

#[derive(Debug)]
struct ProcState {
    request: Option<u64>,
    spawned: bool,
    /// The body its standard input must receive.
    expect: Option<Vec<u8>>,
    accepted: usize,
    writing: Option<usize>,
    stdin_closed: bool,
    stdin_broken: bool,
    reading: [bool; 2],
    eof: [bool; 2],
    exited: bool,
    killed: bool,
    last_out: Time,
    started_at: Time,
    out_taken: u64,
    sent_base: u64,
    /// The output is not sent on (a HEAD's): back-pressure does not apply.
    discarded: bool,
}

/// The gateway checker and record book.
#[derive(Debug)]
pub struct GatewayBook {
    /// `timeout gateway=`, in ms (the shortest of any generation: a kill after that much
    /// silence may be the timeout's).
    pub timeout_ms: u64,
    /// The longest of any generation: no process outlives it.
    timeout_max_ms: u64,
    cgi_max: usize,
    procs: BTreeMap<StreamId, ProcState>,
    released: BTreeSet<StreamId>,
    failed: BTreeSet<StreamId>,
    requests: BTreeMap<u64, RequestRecord>,
    held: usize,
    held_max: usize,
    /// Processes spawned in all.
    pub spawned: u64,
    empty: RequestRecord,
}

fn env<'a>(spec: &'a SpawnSpec, name: &str) -> Option<&'a [u8]> {
    spec.env
        .iter()
        .find(|(k, _)| k == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

/// The request number a spawn names (`HTTP_X_SIM_REQ`).
#[must_use]
pub fn request_of(spec: &SpawnSpec) -> Option<u64> {
    env(spec, "HTTP_X_SIM_REQ")
        .and_then(|v| core::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
}

/// The `QUERY_STRING` a spawn carries.
#[must_use]
pub fn query_of(spec: &SpawnSpec) -> String {
    env(spec, "QUERY_STRING")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

impl GatewayBook {
    /// A book for `limit cgi=cgi_max` and `timeout gateway=`, from the shortest to the
    /// longest any generation of the configuration has.
    #[must_use]
    pub fn new(cgi_max: usize, (timeout_ms, timeout_max_ms): (u64, u64)) -> GatewayBook {
        GatewayBook {
            timeout_ms,
            timeout_max_ms,
            cgi_max,
            procs: BTreeMap::new(),
            released: BTreeSet::new(),
            failed: BTreeSet::new(),
            requests: BTreeMap::new(),
            held: 0,
            held_max: 0,
            spawned: 0,
            empty: RequestRecord::default(),
        }
    }

    /// The record of request `id` (empty if no script ran for it).
    #[must_use]
    pub fn request(&self, id: u64) -> &RequestRecord {
        self.requests.get(&id).unwrap_or(&self.empty)
    }

    /// The request a process serves.
    #[must_use]
    pub fn request_for(&self, proc: StreamId) -> Option<u64> {
        self.procs.get(&proc).and_then(|p| p.request)
    }

    fn live(&mut self, proc: StreamId, what: &str) -> Result<&mut ProcState, String> {
        if self.released.contains(&proc) {
            return Err(format!("{what} for {proc:?} after its Release"));
        }
        if self.failed.contains(&proc) {
            return Err(format!("{what} for {proc:?}, whose spawn failed"));
        }
        let p = self
            .procs
            .get_mut(&proc)
            .ok_or_else(|| format!("{what} for {proc:?}, which was never spawned"))?;
        if !p.spawned {
            return Err(format!("{what} for {proc:?} before its spawn completed"));
        }
        Ok(p)
    }

    /// Effect `Spawn`, for request `request` whose body is `body` (if the world knows
    /// it); `method`, `query`: as the client sent them; `sent_base`: bytes its client
    /// has been sent so far.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        &mut self,
        proc: StreamId,
        spec: &SpawnSpec,
        request: Option<u64>,
        body: Option<&[u8]>,
        method: Option<&str>,
        query: Option<&str>,
        now: Time,
        sent_base: u64,
    ) -> Result<(), String> {
        if self.procs.contains_key(&proc) || self.failed.contains(&proc) {
            return Err(format!("Spawn reuses {proc:?}"));
        }
        self.check_spec(spec, body, method, query)?;
        self.held += 1;
        self.held_max = self.held_max.max(self.held);
        self.spawned += 1;
        if self.held > self.cgi_max {
            return Err(format!(
                "{} processes at once, beyond limit cgi={}",
                self.held, self.cgi_max
            ));
        }
        if let Some(id) = request {
            self.requests.entry(id).or_default().procs.push(proc);
        }
        self.procs.insert(
            proc,
            ProcState {
                request,
                spawned: false,
                expect: body.map(<[u8]>::to_vec),
                accepted: 0,
                writing: None,
                stdin_closed: false,
                stdin_broken: false,
                reading: [false; 2],
                eof: [false; 2],
                exited: false,
                killed: false,
                last_out: now,
                started_at: now,
                out_taken: 0,
                sent_base,
                discarded: method == Some("HEAD"),
            },
        );
        Ok(())
    }

    /// RFC 3875 §4.1 for what the simulation can know: the script, its directory, the
    /// method, the query, the body's length, and never `HTTP_PROXY`.
    fn check_spec(
        &self,
        spec: &SpawnSpec,
        body: Option<&[u8]>,
        method: Option<&str>,
        query: Option<&str>,
    ) -> Result<(), String> {
        let program = spec.program.display().to_string();
        let bad = |m: String| Err(format!("Spawn of {program}: {m}"));
        if !spec.program.is_absolute() {
            return bad("the program is not an absolute path".into());
        }
        if Some(spec.cwd.as_path()) != spec.program.parent() {
            return bad(format!(
                "working directory {} is not the script's",
                spec.cwd.display()
            ));
        }
        let mut names = BTreeSet::new();
        for (k, _) in &spec.env {
            if !names.insert(k.as_slice()) {
                return bad(format!("{} twice", String::from_utf8_lossy(k)));
            }
        }
        if env(spec, "HTTP_PROXY").is_some() {
            return bad("HTTP_PROXY is set (httpoxy)".into());
        }
        let want = |name: &str, value: &[u8]| -> Result<(), String> {
            match env(spec, name) {
                Some(v) if v == value => Ok(()),
                other => Err(format!(
                    "Spawn of {program}: {name} is {:?}, not {:?}",
                    other.map(String::from_utf8_lossy),
                    String::from_utf8_lossy(value)
                )),
            }
        };
        want("GATEWAY_INTERFACE", b"CGI/1.1")?;
        want(
            "SCRIPT_FILENAME",
            spec.program.as_os_str().as_encoded_bytes(),
        )?;
        if let Some(m) = method {
            want("REQUEST_METHOD", m.as_bytes())?;
        }
        if let Some(q) = query {
            want("QUERY_STRING", q.as_bytes())?;
        }
        if let Some(b) = body.filter(|b| !b.is_empty()) {
            want("CONTENT_LENGTH", b.len().to_string().as_bytes())?;
        }
        Ok(())
    }

    /// Input `Completed` for a spawn.
    pub fn spawn_completed(&mut self, proc: StreamId, result: &Completion) {
        let Some(p) = self.procs.get_mut(&proc) else {
            return;
        };
        match result {
            Completion::Spawned => p.spawned = true,
            Completion::Failed(e) => {
                if *e == IoError::Exhausted {
                    if let Some(id) = p.request {
                        self.requests.entry(id).or_default().spawn_exhausted = true;
                    }
                }
                self.procs.remove(&proc);
                self.failed.insert(proc);
                self.held -= 1;
            }
            _ => {}
        }
    }

    /// Effect `StreamWrite`.
    pub fn write_stdin(&mut self, proc: StreamId, data: &Bytes) -> Result<(), String> {
        let p = self.live(proc, "StreamWrite")?;
        if p.stdin_closed || p.stdin_broken {
            return Err(format!(
                "StreamWrite for {proc:?} after its input was closed"
            ));
        }
        if p.writing.is_some() {
            return Err(format!("two StreamWrite outstanding for {proc:?}"));
        }
        if data.is_empty() {
            return Err(format!("empty StreamWrite for {proc:?}"));
        }
        if let Some(body) = &p.expect {
            let at = p.accepted;
            let due = body.get(at..at + data.len());
            if due != Some(&data[..]) {
                return Err(format!(
                    "StreamWrite for {proc:?} of {} bytes at offset {at} is not the request \
                     body there (the body has {} bytes)",
                    data.len(),
                    body.len()
                ));
            }
        }
        p.writing = Some(data.len());
        Ok(())
    }

    /// Effect `StreamShutdownWrite`.
    pub fn close_stdin(&mut self, proc: StreamId) -> Result<(), String> {
        let p = self.live(proc, "StreamShutdownWrite")?;
        if p.stdin_closed {
            return Err(format!("StreamShutdownWrite for {proc:?} twice"));
        }
        if p.writing.is_some() {
            return Err(format!(
                "StreamShutdownWrite for {proc:?} with a StreamWrite outstanding"
            ));
        }
        if let Some(body) = &p.expect {
            if !p.stdin_broken && p.accepted != body.len() {
                return Err(format!(
                    "StreamShutdownWrite for {proc:?} after {} of the body's {} bytes",
                    p.accepted,
                    body.len()
                ));
            }
        }
        p.stdin_closed = true;
        Ok(())
    }

    /// Effect `StreamRead`.
    pub fn read_output(
        &mut self,
        proc: StreamId,
        stream: Channel,
        max: usize,
    ) -> Result<(), String> {
        let s = usize::from(stream == Channel::Errors);
        let p = self.live(proc, "StreamRead")?;
        if p.reading[s] {
            return Err(format!("two StreamRead outstanding on {proc:?} {stream:?}"));
        }
        if p.eof[s] {
            return Err(format!("StreamRead on {proc:?} {stream:?} after its end"));
        }
        if max == 0 {
            return Err(format!("ReadOutput {{ max: 0 }} on {proc:?}"));
        }
        p.reading[s] = true;
        Ok(())
    }

    /// Effect `Kill`; `head_read`: the script's header section had been read in full.
    /// Returns the request whose connection the kill may cut, if the kill was the
    /// `gateway` timeout's after the header section.
    pub fn kill(&mut self, proc: StreamId, now: Time, head_read: bool) -> Result<(), String> {
        let timeout = self.timeout_ms;
        let p = self.live(proc, "Kill")?;
        p.killed = true;
        let idle = now.0.saturating_sub(p.last_out.0) >= timeout;
        if let (true, Some(id)) = (idle, p.request) {
            let r = self.requests.entry(id).or_default();
            if head_read {
                r.idle_kill_after_head = true;
            } else {
                r.idle_kill_before_head = true;
            }
        }
        Ok(())
    }

    /// Effect `StreamClose`.
    pub fn release(&mut self, proc: StreamId) -> Result<(), String> {
        let p = self.live(proc, "Release")?;
        if !p.killed && !p.exited {
            return Err(format!(
                "Release of {proc:?}, which neither exited nor was killed: it would run on \
                 unattended"
            ));
        }
        self.procs.remove(&proc);
        self.released.insert(proc);
        self.held -= 1;
        Ok(())
    }

    /// An input the world is about to deliver about `proc`; `received`: bytes the
    /// process's client has been sent so far (for back-pressure).
    pub fn input(
        &mut self,
        proc: StreamId,
        what: &ProcInput,
        now: Time,
        received: u64,
    ) -> Result<(), String> {
        let p = self.live(proc, "an input")?;
        match what {
            ProcInput::StdinWritten(n) => {
                let len = p.writing.take().unwrap_or(0);
                if *n == 0 || *n as usize > len {
                    return Err(format!("StdinWritten {{ n: {n} }} for a write of {len}"));
                }
                p.accepted += *n as usize;
            }
            ProcInput::StdinClosed => {
                p.writing = None;
                p.stdin_broken = true;
            }
            ProcInput::Output(s, n) => {
                p.reading[*s] = false;
                if *s == 0 {
                    p.last_out = now;
                    p.out_taken += *n as u64;
                }
                if *s == 0 && !p.discarded {
                    let sent = received.saturating_sub(p.sent_base);
                    let held = p.out_taken.saturating_sub(sent);
                    if held > BACKLOG_MAX {
                        return Err(format!(
                            "the server holds {held} bytes of {proc:?}'s output that its \
                             client was not sent (back-pressure allows {BACKLOG_MAX})"
                        ));
                    }
                }
            }
            ProcInput::Eof(s) => {
                p.reading[*s] = false;
                p.eof[*s] = true;
            }
            ProcInput::Exited => p.exited = true,
        }
        Ok(())
    }

    /// Called at the start of each input: the farm's high-water mark restarts.
    pub fn begin_handle(&mut self) {
        self.held_max = self.held;
    }

    /// Called after the core's effects for one input were carried out: if the farm was
    /// full at some point and `waiting` (the script requests that were in the server
    /// without a process when the input came) were more than it can queue, each may
    /// have been refused with 503.
    pub fn end_handle(&mut self, waiting: &[u64]) {
        if self.held_max >= self.cgi_max && waiting.len() > self.cgi_max {
            for id in waiting {
                self.requests.entry(*id).or_default().farm_full = true;
            }
        }
    }

    /// A spawned process that outlived the timeout (no output read for longer), if any.
    #[must_use]
    pub fn overdue(&self, now: Time) -> Option<String> {
        self.procs.iter().find_map(|(id, p)| {
            let silent = now.0.saturating_sub(p.last_out.max(p.started_at).0);
            (p.spawned && silent > self.timeout_max_ms).then(|| {
                format!(
                    "{id:?} (request {:?}) has had no output read for {silent}ms and is still \
                     not killed (timeout gateway={}ms)",
                    p.request, self.timeout_max_ms
                )
            })
        })
    }

    /// Processes spawned and not released.
    #[must_use]
    pub fn held(&self) -> Vec<StreamId> {
        self.procs.keys().copied().collect()
    }

    /// Marks a spawn completion time as the script's start (its silence counts from
    /// then).
    pub fn started(&mut self, proc: StreamId, now: Time) {
        if let Some(p) = self.procs.get_mut(&proc) {
            p.started_at = now;
        }
    }

    /// Was `proc` released?
    #[must_use]
    pub fn is_released(&self, proc: StreamId) -> bool {
        self.released.contains(&proc)
    }
}

/// A process input, as the book needs it.
#[derive(Clone, Copy, Debug)]
pub enum ProcInput {
    /// `StdinWritten { n }`.
    StdinWritten(u64),
    /// `StreamWriteClosed`.
    StdinClosed,
    /// `Output` on stream 0/1 with this many bytes.
    Output(usize, usize),
    /// `StreamEof` on stream 0/1.
    Eof(usize),
    /// `Exited`.
    Exited,
}
