//! Simulated FastCGI services: the application behind `service app connect=unix:…`, run
//! by the world the way a real FastCGI server (php-fpm, the MUD) answers the core's
//! streams, behind the same stream effects.
//!
//! # Theory of operation
//!
//! The world holds one FastCGI server per socket address (`workload::SVC_SOCKETS`: a
//! reload can move the service from one to the other, and each answers with its own
//! `X-Sim-Service`). A `Connect` to an address whose server is up opens a *stream*,
//! served by a process of its own (one connection at a time, as php-cgi), which decodes
//! what the core writes with the core's own record codec (`weir_core::fcgi`) and writes
//! records back:
//!
//! ```text
//!   core ─ StreamWrite ─► [decoder] ─► BEGIN_REQUEST · PARAMS… · STDIN… ─► program
//!                                                                            │ composes
//!   core ◄─ StreamRead ─ [socket buffer, pipe_capacity] ◄─ steps ◄─ STDOUT… STDERR…
//!                                                            END_REQUEST (or stall, or death)
//! ```
//!
//! The program is chosen by the request's path, exactly as a script's is by its name
//! (`workload::Script`, read from `SCRIPT_NAME` and `PATH_INFO`): echo the body (whole or
//! as it streams), flood, stall, crash in the header section or in the body (the process
//! dies: the stream ends before END_REQUEST), or write bad output; a name it does not
//! know it answers 404. It writes in random pieces, blocking while the socket buffer is
//! full, and honours `FCGI_KEEP_CONN`: a kept stream waits for the next BEGIN_REQUEST,
//! another is closed after END_REQUEST. In the runs that draw `svc_idle`, a kept stream
//! idle that long is closed by the server (as many FastCGI servers do); a request the core
//! hands it at that very moment gets 502, the keep-alive race every FastCGI client has,
//! which the judge allows within the window of such a close.
//!
//! A process that dies leaves what it wrote readable, then the end of the stream (a
//! `StreamRead` gets `StreamEof`); a write to it fails (`StreamFailed`). A *restart* of the
//! server (`kill`) kills every process at once and refuses connections until it is up
//! again.
//!
//! What the server receives is checked as it decodes it (`Notice`s go to the world, which
//! knows the requests): valid records only, one request at a time per stream, the keep
//! flag, and — in the world — the parameters and standard input against the request.
//!
//! The two planted bugs of this layer live here: `lose-service-eof` (a shell that misses a
//! process's death: reads and writes on its streams are never answered) and
//! `swap-service-output` (a piece the service wrote reaches the core after the next one).

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use weir_core::fcgi::{self, Decoder, ProtocolStatus, Record, Role, StreamKind};
use weir_core::server::{Channel, Input, IoError, StreamId};

use crate::workload::{flood_body, query_n, BadOutput, Script, N_DEFAULT, SCRIPT_TYPE};

/// What the world schedules for a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SvcWake {
    /// The process writes its next piece.
    Step,
    /// The outstanding `StreamRead` is answered.
    Read,
    /// The outstanding `StreamWrite` is answered.
    Write,
    /// A kept connection has been idle for the server's idle time (if it still is, with
    /// this many requests served, the server closes it).
    Idle(u64),
}

/// What the server learned that the world must check or record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A request's parameters arrived whole on `stream`.
    Began {
        /// The stream.
        stream: StreamId,
        /// `HTTP_X_SIM_REQ`.
        request: Option<u64>,
        /// `REQUEST_METHOD`.
        method: Option<String>,
        /// `CONTENT_LENGTH`.
        content_length: Option<String>,
        /// `QUERY_STRING`.
        query: Option<String>,
    },
    /// A request's standard input ended: everything it received.
    Stdin {
        /// The request.
        request: Option<u64>,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The process serving `stream` died (for `request`, if it was serving one).
    Died {
        /// The stream.
        stream: StreamId,
        /// The request it served.
        request: Option<u64>,
    },
    /// The server closed a kept connection that had been idle for its idle time.
    IdleClosed,
}

/// What follows once everything composed has been written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    /// Wait for more (input, or the next request on a kept stream).
    Wait,
    /// Close the connection (END_REQUEST without `FCGI_KEEP_CONN`).
    Close,
    /// Say nothing more, ever.
    Stall,
    /// The process dies.
    Die,
}

#[derive(Debug)]
struct Exchange {
    keep: bool,
    params: Vec<u8>,
    request: Option<u64>,
    /// The program, once the parameters are in (`None`: a name it does not know).
    script: Option<Option<Script>>,
    name: String,
    n: usize,
    stdin: Vec<u8>,
    stdin_done: bool,
    /// Output composed (for `echo-stream`: its head).
    composed: bool,
    /// Bytes of standard input echoed so far (`echo-stream`).
    echoed: usize,
}

/// One stream: a connection to a server, and the process serving it.
#[derive(Debug)]
pub struct SvcStream {
    /// The socket address.
    pub addr: String,
    /// The server's name (`a`, `b`): what its answers say in `X-Sim-Service`.
    pub instance: String,
    decoder: Decoder,
    ex: Option<Exchange>,
    /// Composed and not yet written to the socket.
    pending: BytesMut,
    then: Then,
    /// In the socket, for the core to read.
    out: BytesMut,
    /// The service closed its end: the end of the stream once `out` drains.
    closed: bool,
    /// The process died.
    pub dead: bool,
    /// Bytes put into the socket in all.
    pub written: u64,
    /// Where each END_REQUEST written ends (in `written` terms), with its request.
    ends: VecDeque<(u64, Option<u64>)>,
    /// Bytes handed to the core in all.
    pub delivered: u64,
    read: Option<usize>,
    read_wake: bool,
    write: Option<Bytes>,
    write_wake: bool,
    step_wake: bool,
    /// Bytes held back by `swap-service-output`.
    held: Vec<u8>,
    /// The request being served, if its parameters said.
    pub request: Option<u64>,
    /// Requests begun on it.
    served: u64,
}

/// Knobs for every service.
#[derive(Clone, Copy, Debug)]
pub struct SvcKnobs {
    /// The socket buffer each way.
    pub capacity: usize,
    /// Longest step of a process.
    pub step_max_ms: u64,
    /// `limit header-bytes=` (for `bad-long`).
    pub header_bytes_max: usize,
    /// The `lose-service-eof` bug.
    pub lose_eof: bool,
    /// The `swap-service-output` bug.
    pub swap_output: bool,
    /// How long a kept connection may stay idle before the server closes it (`None`:
    /// for ever).
    pub idle_ms: Option<u64>,
}

/// Wakes to schedule: (delay in ms, stream, what).
pub type SvcWakes = Vec<(u64, StreamId, SvcWake)>;

/// Every server and stream.
#[derive(Debug)]
pub struct Services {
    knobs: SvcKnobs,
    streams: BTreeMap<StreamId, SvcStream>,
    /// Servers that are down (restarting), by address.
    down: BTreeMap<String, bool>,
}

/// The server's name for a socket address: `/srv/app-a.sock` is `a`.
#[must_use]
pub fn instance_of(addr: &str) -> String {
    addr.rsplit('-')
        .next()
        .and_then(|s| s.strip_suffix(".sock"))
        .unwrap_or("?")
        .to_string()
}

fn param<'a>(pairs: &'a [(Bytes, Bytes)], name: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .find(|(k, _)| &k[..] == name.as_bytes())
        .map(|(_, v)| &v[..])
}

fn text(v: Option<&[u8]>) -> Option<String> {
    v.map(|v| String::from_utf8_lossy(v).into_owned())
}

impl Services {
    /// No streams; every server up.
    #[must_use]
    pub fn new(knobs: SvcKnobs) -> Services {
        Services {
            knobs,
            streams: BTreeMap::new(),
            down: BTreeMap::new(),
        }
    }

    /// A stream by id.
    #[must_use]
    pub fn get(&self, stream: StreamId) -> Option<&SvcStream> {
        self.streams.get(&stream)
    }

    /// Is `stream` one of the services' (rather than a script's)?
    #[must_use]
    pub fn owns(&self, stream: StreamId) -> bool {
        self.streams.contains_key(&stream)
    }

    /// Is the server at `addr` up (accepting connections)?
    #[must_use]
    pub fn is_up(&self, addr: &str) -> bool {
        !self.down.get(addr).copied().unwrap_or(false)
    }

    /// Streams still known (the core has not closed them).
    #[must_use]
    pub fn open(&self) -> Vec<StreamId> {
        self.streams.keys().copied().collect()
    }

    /// A `Connect` to `addr` succeeded: the stream exists from now on.
    pub fn connected(&mut self, stream: StreamId, addr: &str) {
        self.streams.insert(
            stream,
            SvcStream {
                addr: addr.to_string(),
                instance: instance_of(addr),
                decoder: Decoder::new(1 << 20),
                ex: None,
                pending: BytesMut::new(),
                then: Then::Wait,
                out: BytesMut::new(),
                closed: false,
                dead: false,
                written: 0,
                ends: VecDeque::new(),
                delivered: 0,
                read: None,
                read_wake: false,
                write: None,
                write_wake: false,
                step_wake: false,
                held: Vec::new(),
                request: None,
                served: 0,
            },
        );
    }

    /// Effect `StreamWrite`.
    pub fn write(&mut self, stream: StreamId, data: Bytes, rng: &mut ChaCha8Rng, w: &mut SvcWakes) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.write = Some(data);
            // (The `lose-service-eof` bug leaves a write to a dead process unanswered.)
            let lost = s.dead && self.knobs.lose_eof;
            if !s.write_wake && !lost {
                s.write_wake = true;
                w.push((rng.random_range(0..=2), stream, SvcWake::Write));
            }
        }
    }

    /// Effect `StreamRead`.
    pub fn read(&mut self, stream: StreamId, max: usize, rng: &mut ChaCha8Rng, w: &mut SvcWakes) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.read = Some(max);
        }
        self.pump_read(stream, rng, w);
    }

    /// Effect `StreamClose`: the core is done with the stream (the process, if it still
    /// serves, sees the connection close and stops).
    pub fn close(&mut self, stream: StreamId) {
        self.streams.remove(&stream);
    }

    /// The server at `addr` is killed (every process of it dies) and refuses connections
    /// until `restarted`.
    pub fn kill(&mut self, addr: &str, notices: &mut Vec<Notice>) {
        self.down.insert(addr.to_string(), true);
        let ids: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| s.addr == addr && !s.dead)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.die(id, notices);
        }
    }

    /// The server at `addr` is up again.
    pub fn restarted(&mut self, addr: &str) {
        self.down.remove(addr);
    }

    fn die(&mut self, stream: StreamId, notices: &mut Vec<Notice>) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if s.dead {
            return;
        }
        s.dead = true;
        s.pending.clear();
        s.then = Then::Wait;
        let request = s.ex.take().and(s.request);
        notices.push(Notice::Died { stream, request });
    }

    /// Kicks whatever a dead stream owes: its outstanding read and write are answered
    /// (the end, a failure) unless the `lose-service-eof` bug forgets them.
    pub fn after_death(&mut self, stream: StreamId, rng: &mut ChaCha8Rng, w: &mut SvcWakes) {
        let lose = self.knobs.lose_eof;
        if let Some(s) = self.streams.get_mut(&stream) {
            if s.write.is_some() && !s.write_wake && !lose {
                s.write_wake = true;
                w.push((rng.random_range(0..=2), stream, SvcWake::Write));
            }
        }
        self.pump_read(stream, rng, w);
    }

    fn pump_read(&mut self, stream: StreamId, rng: &mut ChaCha8Rng, w: &mut SvcWakes) {
        let lose = self.knobs.lose_eof;
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let ended = s.closed || s.dead;
        // The bug: a shell that missed the death never reports the end.
        let ready =
            !s.out.is_empty() || (ended && !(s.dead && lose)) || !s.held.is_empty() && ended;
        if s.read.is_some() && !s.read_wake && ready {
            s.read_wake = true;
            w.push((rng.random_range(0..=2), stream, SvcWake::Read));
        }
    }

    fn kick(&mut self, stream: StreamId, rng: &mut ChaCha8Rng, w: &mut SvcWakes) {
        let step_max = self.knobs.step_max_ms;
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if !s.step_wake && !s.dead && (!s.pending.is_empty() || s.then != Then::Wait) {
            s.step_wake = true;
            w.push((rng.random_range(0..=step_max), stream, SvcWake::Step));
        }
    }

    /// Something scheduled for `stream` comes due: the input to deliver, if any, and what
    /// the server noticed (or why what the core wrote is wrong).
    pub fn wake(
        &mut self,
        stream: StreamId,
        wake: SvcWake,
        rng: &mut ChaCha8Rng,
        w: &mut SvcWakes,
        notices: &mut Vec<Notice>,
    ) -> Result<Option<Input>, String> {
        let Some(s) = self.streams.get_mut(&stream) else {
            return Ok(None);
        };
        match wake {
            SvcWake::Step => {
                s.step_wake = false;
                self.step(stream, rng, w, notices);
                Ok(None)
            }
            SvcWake::Read => {
                s.read_wake = false;
                let Some(max) = s.read else {
                    return Ok(None);
                };
                if !s.out.is_empty() {
                    let avail = max.min(s.out.len());
                    let n = if rng.random_bool(0.5) {
                        avail
                    } else {
                        rng.random_range(1..=avail)
                    };
                    let mut data: Vec<u8> = s.out.split_to(n).to_vec();
                    s.delivered += n as u64;
                    if self.knobs.swap_output {
                        if !s.held.is_empty() {
                            data.append(&mut s.held);
                        } else if rng.random_bool(0.3) && !s.out.is_empty() {
                            // Held back: the read waits for the next piece, which goes
                            // out first.
                            s.held = data;
                            self.kick(stream, rng, w);
                            self.pump_read(stream, rng, w);
                            return Ok(None);
                        }
                    }
                    s.read = None;
                    self.kick(stream, rng, w);
                    return Ok(Some(Input::StreamReceived {
                        stream,
                        channel: Channel::Main,
                        data: Bytes::from(data),
                    }));
                }
                if !s.held.is_empty() {
                    s.read = None;
                    let data = std::mem::take(&mut s.held);
                    return Ok(Some(Input::StreamReceived {
                        stream,
                        channel: Channel::Main,
                        data: Bytes::from(data),
                    }));
                }
                if s.closed || (s.dead && !self.knobs.lose_eof) {
                    s.read = None;
                    return Ok(Some(Input::StreamEof {
                        stream,
                        channel: Channel::Main,
                    }));
                }
                Ok(None)
            }
            SvcWake::Idle(served) => {
                let idle = s.ex.is_none()
                    && s.served == served
                    && s.pending.is_empty()
                    && s.write.is_none()
                    && s.decoder.buffered() == 0;
                if idle && !s.dead && !s.closed {
                    s.closed = true;
                    notices.push(Notice::IdleClosed);
                    self.pump_read(stream, rng, w);
                }
                Ok(None)
            }
            SvcWake::Write => {
                s.write_wake = false;
                let Some(data) = s.write.take() else {
                    return Ok(None);
                };
                if s.dead || s.closed {
                    if s.dead && self.knobs.lose_eof {
                        s.write = Some(data);
                        return Ok(None);
                    }
                    return Ok(Some(Input::StreamFailed {
                        stream,
                        error: IoError::Reset,
                    }));
                }
                // The process reads its socket as fast as it comes; the kernel takes a
                // write whole or (a full buffer) in part.
                let n = if rng.random_bool(0.6) {
                    data.len()
                } else {
                    rng.random_range(1..=data.len().max(1))
                };
                s.decoder.push(&data[..n]);
                self.records(stream, rng, w, notices)?;
                Ok(Some(Input::StreamWritten {
                    stream,
                    n: n as u64,
                }))
            }
        }
    }

    /// Everything whole the core wrote, in order.
    fn records(
        &mut self,
        stream: StreamId,
        rng: &mut ChaCha8Rng,
        w: &mut SvcWakes,
        notices: &mut Vec<Notice>,
    ) -> Result<(), String> {
        loop {
            let Some(s) = self.streams.get_mut(&stream) else {
                return Ok(());
            };
            let record = match s.decoder.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(format!(
                        "{stream:?}: the core wrote bytes that are no FastCGI records ({e:?})"
                    ))
                }
            };
            match record {
                Record::BeginRequest {
                    role, keep_conn, ..
                } => {
                    if s.ex.is_some() {
                        return Err(format!(
                            "{stream:?}: a BEGIN_REQUEST while a request is in progress on it"
                        ));
                    }
                    if role != Role::Responder {
                        return Err(format!("{stream:?}: BEGIN_REQUEST for role {role:?}"));
                    }
                    s.request = None;
                    s.served += 1;
                    s.ex = Some(Exchange {
                        keep: keep_conn,
                        params: Vec::new(),
                        request: None,
                        script: None,
                        name: String::new(),
                        n: N_DEFAULT,
                        stdin: Vec::new(),
                        stdin_done: false,
                        composed: false,
                        echoed: 0,
                    });
                }
                Record::Params { data, .. } => {
                    let Some(ex) = s.ex.as_mut() else {
                        return Err(format!("{stream:?}: PARAMS outside a request"));
                    };
                    if ex.script.is_some() {
                        return Err(format!("{stream:?}: PARAMS after their end"));
                    }
                    if !data.is_empty() {
                        ex.params.extend_from_slice(&data);
                        continue;
                    }
                    let pairs =
                        fcgi::decode_params(&Bytes::from(std::mem::take(&mut ex.params)))
                            .map_err(|e| format!("{stream:?}: PARAMS that do not decode: {e:?}"))?;
                    let request =
                        text(param(&pairs, "HTTP_X_SIM_REQ")).and_then(|v| v.parse().ok());
                    let mut path = text(param(&pairs, "SCRIPT_NAME")).unwrap_or_default();
                    path.push_str(&text(param(&pairs, "PATH_INFO")).unwrap_or_default());
                    let name = path
                        .strip_prefix(crate::workload::SVC_PREFIX)
                        .unwrap_or("")
                        .split('/')
                        .next()
                        .unwrap_or("")
                        .to_string();
                    let query = text(param(&pairs, "QUERY_STRING"));
                    ex.n = query.as_deref().and_then(query_n).unwrap_or(N_DEFAULT);
                    ex.script = Some(Script::by_name(&name));
                    ex.name = name;
                    ex.request = request;
                    s.request = request;
                    notices.push(Notice::Began {
                        stream,
                        request,
                        method: text(param(&pairs, "REQUEST_METHOD")),
                        content_length: text(param(&pairs, "CONTENT_LENGTH")),
                        query,
                    });
                }
                Record::Stdin { data, .. } => {
                    // STDIN for a request already answered (the program answered before
                    // reading it all): nobody reads it.
                    let Some(ex) = s.ex.as_mut() else { continue };
                    if ex.stdin_done {
                        return Err(format!("{stream:?}: STDIN after its end"));
                    }
                    if data.is_empty() {
                        ex.stdin_done = true;
                        notices.push(Notice::Stdin {
                            request: ex.request,
                            data: ex.stdin.clone(),
                        });
                    } else {
                        ex.stdin.extend_from_slice(&data);
                    }
                }
                other => {
                    return Err(format!(
                        "{stream:?}: the core sent a record it never should: {other:?}"
                    ))
                }
            }
            self.compose(stream, rng, w);
        }
    }

    /// Writes what the program has to say, once it can say it.
    fn compose(&mut self, stream: StreamId, rng: &mut ChaCha8Rng, w: &mut SvcWakes) {
        let header_bytes_max = self.knobs.header_bytes_max;
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let Some(ex) = s.ex.as_mut() else { return };
        let Some(script) = ex.script else { return };
        let le: &[u8] = b"\r\n";
        let head = |cl: Option<usize>, name: &str, instance: &str| {
            let mut h = format!(
                "Content-Type: {SCRIPT_TYPE}\r\nX-Sim-Script: {name}\r\nX-Sim-Service: {instance}\r\n"
            )
            .into_bytes();
            if let Some(n) = cl {
                h.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
            }
            h.extend_from_slice(le);
            h
        };
        let n = ex.n;
        let mut stdout: Vec<u8> = Vec::new();
        let then;
        if ex.composed {
            // Only `echo-stream` composes in pieces: what came in since, and the end.
            if script != Some(Script::EchoStream) {
                return;
            }
            let fresh = ex.stdin[ex.echoed..].to_vec();
            ex.echoed = ex.stdin.len();
            push_stdout(&mut s.pending, &fresh, rng);
            if !ex.stdin_done {
                self.kick(stream, rng, w);
                return;
            }
            then = finish(s, rng);
            s.then = then;
            self.kick(stream, rng, w);
            return;
        }
        match script {
            Some(Script::Echo { len }) => {
                if !ex.stdin_done {
                    return;
                }
                stdout = head(len.then_some(ex.stdin.len()), &ex.name, &s.instance);
                stdout.extend_from_slice(&ex.stdin);
                then = Then::Close;
            }
            Some(Script::EchoStream) => {
                ex.composed = true;
                let h = head(None, &ex.name, &s.instance);
                push_stdout(&mut s.pending, &h, rng);
                self.compose(stream, rng, w);
                return;
            }
            Some(Script::Flood { len }) => {
                stdout = head(len.then_some(n), &ex.name, &s.instance);
                stdout.extend_from_slice(&flood_body(n));
                then = Then::Close;
            }
            Some(Script::Stall) => then = Then::Stall,
            Some(Script::StallBody { len }) => {
                stdout = head(len.then_some(n + 1_000), &ex.name, &s.instance);
                stdout.extend_from_slice(&flood_body(n));
                then = Then::Stall;
            }
            Some(Script::CrashHead) => {
                stdout = format!("Content-Type: {SCRIPT_TYPE}\r\nX-Sim-Par").into_bytes();
                then = Then::Die;
            }
            Some(Script::CrashBody { len }) => {
                stdout = head(len.then_some(2 * n + 10), &ex.name, &s.instance);
                stdout.extend_from_slice(&flood_body(n));
                then = Then::Die;
            }
            Some(Script::Bad(b)) => {
                stdout = match b {
                    BadOutput::NoBlankLine => {
                        b"Content-Type: text/plain\r\nX-A: b\r\nand no empty line follows".to_vec()
                    }
                    BadOutput::InvalidHeader => {
                        b"Content-Type: text/plain\r\nBad Name: x\r\n\r\nbody".to_vec()
                    }
                    BadOutput::BareCr => {
                        b"Content-Type: text/plain\r\nX-Injected: a\rSet-Cookie: evil=1\r\n\r\nbody"
                            .to_vec()
                    }
                    BadOutput::NoContentType => b"X-A: b\r\n\r\nbody".to_vec(),
                    BadOutput::TooLong => {
                        let mut o = b"Content-Type: text/plain\r\n".to_vec();
                        while o.len() <= header_bytes_max + 200 {
                            o.extend_from_slice(b"X-Pad: ");
                            o.extend_from_slice(&[b'p'; 100]);
                            o.extend_from_slice(le);
                        }
                        o.extend_from_slice(b"\r\nbody");
                        o
                    }
                };
                then = Then::Close;
            }
            None => {
                stdout = format!(
                    "Status: 404 Not Found\r\nContent-Type: text/plain\r\nX-Sim-Script: {}\r\n\
                     X-Sim-Service: {}\r\n\r\nno such program\n",
                    ex.name, s.instance
                )
                .into_bytes();
                then = Then::Close;
            }
        }
        ex.composed = true;
        if rng.random_bool(0.2) {
            let mut buf = BytesMut::new();
            fcgi::encode_stream_part(StreamKind::Stderr, 1, b"sim: a warning\n", &mut buf);
            s.pending.extend_from_slice(&buf);
        }
        push_stdout(&mut s.pending, &stdout, rng);
        s.then = match then {
            Then::Close => finish(s, rng),
            other => other,
        };
        self.kick(stream, rng, w);
    }

    /// The process's next step: a piece of what it composed goes into the socket, as
    /// far as the buffer has room; once all is written, what follows.
    fn step(
        &mut self,
        stream: StreamId,
        rng: &mut ChaCha8Rng,
        w: &mut SvcWakes,
        notices: &mut Vec<Notice>,
    ) {
        let cap = self.knobs.capacity;
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if s.dead {
            return;
        }
        if !s.pending.is_empty() {
            let room = cap.saturating_sub(s.out.len());
            if room == 0 {
                // Blocked until the core reads (the read's answer kicks again).
                return;
            }
            let fits = room.min(s.pending.len());
            let n = if rng.random_bool(0.5) {
                fits
            } else {
                rng.random_range(1..=fits)
            };
            let piece = s.pending.split_to(n);
            s.out.extend_from_slice(&piece);
            s.written += n as u64;
            if let (true, Then::Wait, None, Some(ms)) =
                (s.pending.is_empty(), s.then, &s.ex, self.knobs.idle_ms)
            {
                // All said, the connection kept: idle from now.
                w.push((ms, stream, SvcWake::Idle(s.served)));
            }
            self.pump_read(stream, rng, w);
            self.kick(stream, rng, w);
            return;
        }
        match std::mem::replace(&mut s.then, Then::Wait) {
            Then::Wait | Then::Stall => {}
            Then::Close => {
                s.closed = true;
                self.pump_read(stream, rng, w);
            }
            Then::Die => {
                self.die(stream, notices);
                self.after_death(stream, rng, w);
            }
        }
    }

    /// The END_REQUEST records the core has now been handed: (request) for each.
    pub fn ends_delivered(&mut self, stream: StreamId) -> Vec<Option<u64>> {
        let mut out = Vec::new();
        if let Some(s) = self.streams.get_mut(&stream) {
            while let Some((at, req)) = s.ends.front().copied() {
                if s.delivered < at {
                    break;
                }
                s.ends.pop_front();
                out.push(req);
            }
        }
        out
    }
}

/// STDOUT records for `data`, cut into pieces of random sizes (empty data: none).
fn push_stdout(pending: &mut BytesMut, data: &[u8], rng: &mut ChaCha8Rng) {
    let mut rest = data;
    let mut buf = BytesMut::new();
    while !rest.is_empty() {
        // Records of any size up to 16 KiB: a flood is tens of records, not thousands.
        let n = rng.random_range(1..=rest.len().min(16_384));
        fcgi::encode_stream_part(StreamKind::Stdout, 1, &rest[..n], &mut buf);
        rest = &rest[n..];
    }
    pending.extend_from_slice(&buf);
}

/// The end of the request: the empty STDOUT and END_REQUEST, remembered so that the
/// world knows when the core has read it; then the connection closes unless it is kept.
fn finish(s: &mut SvcStream, _rng: &mut ChaCha8Rng) -> Then {
    let Some(ex) = s.ex.take() else {
        return Then::Wait;
    };
    let mut buf = BytesMut::new();
    fcgi::encode_stream(StreamKind::Stdout, 1, &[], &mut buf);
    fcgi::encode(
        &Record::EndRequest {
            id: 1,
            app_status: 0,
            protocol_status: ProtocolStatus::RequestComplete,
        },
        &mut buf,
    );
    s.pending.extend_from_slice(&buf);
    let end = s.written + s.pending.len() as u64;
    s.ends.push_back((end, ex.request));
    if ex.keep {
        Then::Wait
    } else {
        Then::Close
    }
}
