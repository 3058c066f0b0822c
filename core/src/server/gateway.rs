//! CGI gateways: running a script for a request, through effects (RFC 3875; DESIGN.md §4).
//!
//! # Theory of operation
//!
//! A request routed to a script becomes a `Job` (the program, its environment, its working
//! directory). The farm runs at most `limit cgi=N` jobs at once; the rest wait in a bounded
//! queue, and past that they get 503. A connection's gateway state is one of:
//!
//! ```text
//!   Spooling ── request End ──┐          (chunked body: gathered first, so that
//!      │                      ▼           CONTENT_LENGTH can be given)
//!   (no body / Content-Length) ──► start ──► farm full? ── Queued ── a slot frees ──┐
//!                                     │                                            │
//!                                     ▼◄───────────────────────────────────────────┘
//!                                  Running(proc) ── Spawn → Completed(Spawned | Failed)
//! ```
//!
//! A running script (`Cgi`) has three streams, each driven like a connection's: one
//! outstanding `WriteStdin` (the request body, in order, then `CloseStdin`), one
//! outstanding `ReadOutput` per output stream. Standard output goes through
//! `cgi::output::HeadParser` until the header section ends; then the reply is decided:
//! a document is streamed to the client (the next `ReadOutput` is asked for only while the
//! connection has less than `OUTPUT_BUFFER` queued, so a slow client slows the script); a
//! local `Location` re-runs the rules as a new GET (at most `REDIRECTS_MAX` times); bad
//! output is a 502. An `nph-` script's output is the whole response (status line and all)
//! and passes unparsed, the connection closing after it (`Conn::send_raw`). Standard
//! error is cut into lines for the error log.
//!
//! Back-pressure on the request body: while a script has more than `STDIN_BUFFER` bytes
//! waiting for its standard input, or waits in the farm's queue, the server stops taking
//! events from that connection, so the bytes stay in the connection (which then stops
//! asking to read). A connection that is closing reads nothing more, so its events are
//! taken regardless: a refusal (`Rejected`) queued behind body bytes is handled when the
//! connection's own answer is handed over, not when a stuck script makes room.
//!
//! Ending: the record is dropped, and `Release` sent, once standard output and standard
//! error have ended and the process has exited. Every other ending kills the process
//! group first (`Kill`, then `Release`): the `gateway` timeout (no output for that long:
//! 504 if no header was sent, else the connection is cut), a client that goes away, a
//! request the protocol layer refused before the script's header went out (a body too
//! slow, too large or malformed: the connection answers it itself), bad output. Every ending frees a farm slot and starts the next queued job.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

use super::{
    Completion, ConnId, Effect, ExitStatus, Input, IoError, OutStream, ProcId, Server, SpawnSpec,
};
use crate::cgi::env::{self, CgiRequest};
use crate::cgi::output::{HeadParser, Parsed, Reply};
use crate::chunk::Chunk;
use crate::http1::{BodyKind, Headers, Method, RequestHead, ResponseBody, ResponseHead};
use crate::ids::Token;
use crate::rules::Gateway;
use crate::time::{Now, Time};

/// Most request-body bytes held for a script's standard input before the server stops
/// reading the request.
pub const STDIN_BUFFER: usize = 64 * 1024;
/// Most response bytes queued on the connection before the script's output stops being read.
pub const OUTPUT_BUFFER: u64 = 64 * 1024;
/// Bytes asked of a script's output at a time.
pub const READ_CHUNK: usize = 64 * 1024;
/// Local redirects (`Location: /path`) followed for one request.
pub const REDIRECTS_MAX: u8 = 10;
/// Longest standard-error line kept whole; longer ones are cut.
pub const STDERR_LINE_MAX: usize = 4096;

/// What to run for a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Job {
    spec: SpawnSpec,
    /// The script, for log lines.
    label: String,
    /// Bytes gathered for a chunked body (sent to standard input first).
    spooled: Option<Bytes>,
    /// The request body still arrives as events after the spawn.
    streams_body: bool,
    /// An `nph-` script: its output is the whole response, passed on unparsed.
    nph: bool,
}

/// A connection's gateway state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum GatewayState {
    /// Gathering a chunked body before the script can start.
    Spooling(Box<Spool>),
    /// Waiting for a free place in the farm.
    Queued(Box<Job>),
    /// The script runs (or is being spawned).
    Running(ProcId),
}

/// A chunked request body being gathered, and the script it is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Spool {
    job: Job,
    body: BytesMut,
}

/// A running script.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Cgi {
    conn: Option<ConnId>,
    label: String,
    spawned: bool,
    /// Body bytes not yet written to standard input.
    stdin: VecDeque<Bytes>,
    stdin_queued: usize,
    /// Length of the outstanding `WriteStdin`.
    stdin_writing: Option<u64>,
    /// The whole body has been queued (request End, or no body).
    stdin_complete: bool,
    /// `CloseStdin` was sent or the pipe broke: body bytes are dropped from now on.
    stdin_closed: bool,
    /// The response header parser, until the header section has ended.
    head: Option<HeadParser>,
    /// An `nph-` script whose raw response has not started yet.
    raw_pending: bool,
    /// An `nph-` script: its output goes out as written, head and all.
    raw: bool,
    /// The status sent (for the access log).
    status: u16,
    /// Body bytes passed to the client (for the access log).
    bytes_out: u64,
    /// A `ReadOutput` is outstanding (standard output, standard error).
    reading: [bool; 2],
    /// The stream has ended (standard output, standard error).
    eof: [bool; 2],
    exited: Option<ExitStatus>,
    stderr_line: Vec<u8>,
    deadline: Option<Time>,
}

/// The answer when a script cannot be started.
fn status_for(err: IoError) -> u16 {
    match err {
        IoError::NotFound => 404,
        IoError::PermissionDenied => 403,
        IoError::Exhausted => 503,
        IoError::Reset | IoError::Other => 500,
    }
}

impl Server {
    /// Starts the gateway for a request the rules sent to a CGI script.
    /// `path_translated` is set for presentation and search scripts (the document).
    pub(super) fn start_cgi(
        &mut self,
        id: ConnId,
        req: &RequestHead,
        query: &[u8],
        gw: &Gateway,
        path_translated: Option<&Path>,
        now: Now,
    ) {
        let Some(script) = gw.script.clone() else {
            return self.error(id, 500, &[], now);
        };
        let Some(slot) = self.conns.get(&id) else {
            return;
        };
        let content_length = match req.body {
            BodyKind::None => None,
            BodyKind::Length(n) => Some(n),
            // Known once the body is spooled.
            BodyKind::Chunked => Some(0),
        };
        let document_root = self.config.root.clone();
        let cwd = script
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        let info_translated;
        let translated = match path_translated {
            Some(p) => Some(p),
            None if !gw.path_info.is_empty() => {
                use std::os::unix::ffi::OsStrExt;
                let rel = std::ffi::OsStr::from_bytes(
                    gw.path_info.strip_prefix(b"/").unwrap_or(&gw.path_info),
                );
                info_translated = document_root.join(rel);
                Some(info_translated.as_path())
            }
            None => None,
        };
        let env = env::build(&CgiRequest {
            head: req,
            query,
            script_name: &gw.script_name,
            path_info: &gw.path_info,
            path_translated: translated,
            script_filename: &script,
            document_root: &document_root,
            peer: slot.peer(),
            local: slot.local(),
            remote_user: slot.cur.get().user.as_deref(),
            content_length,
            extra: &gw.env,
        });
        let nph = script
            .file_name()
            .is_some_and(|n| n.as_encoded_bytes().starts_with(b"nph-"));
        let job = Job {
            nph,
            label: script.display().to_string(),
            spec: SpawnSpec {
                program: script,
                args: Vec::new(),
                env,
                cwd,
            },
            spooled: None,
            streams_body: matches!(req.body, BodyKind::Length(_)),
        };
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        if req.body == BodyKind::Chunked {
            slot.conn.accept_body();
            slot.cur.get_mut().gateway = Some(GatewayState::Spooling(Box::new(Spool {
                job,
                body: BytesMut::new(),
            })));
            return;
        }
        self.start_or_queue(id, job, now);
    }

    fn start_or_queue(&mut self, id: ConnId, job: Job, now: Now) {
        if self.cgi_running < self.config.limits.cgi_max {
            return self.spawn(id, job, now);
        }
        // The queue holds as many again as the farm runs: beyond that, waiting would only
        // make the answer later, not better.
        if self.cgi_queue.len() >= self.config.limits.cgi_max {
            self.log(format!(
                "cgi {}: farm full ({} running, {} waiting): 503",
                job.label,
                self.cgi_running,
                self.cgi_queue.len()
            ));
            return self.error(id, 503, &[("Retry-After", "1".into())], now);
        }
        if let Some(slot) = self.conns.get_mut(&id) {
            slot.cur.get_mut().gateway = Some(GatewayState::Queued(Box::new(job)));
            self.cgi_queue.push_back(id);
        }
    }

    fn spawn(&mut self, id: ConnId, job: Job, now: Now) {
        let token = self.token();
        let proc = ProcId(token);
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        if job.streams_body {
            slot.conn.accept_body();
        }
        slot.cur.get_mut().gateway = Some(GatewayState::Running(proc));
        let mut cgi = Cgi {
            conn: Some(id),
            label: job.label,
            spawned: false,
            stdin: VecDeque::new(),
            stdin_queued: 0,
            stdin_writing: None,
            stdin_complete: !job.streams_body,
            stdin_closed: false,
            head: (!job.nph).then(HeadParser::new),
            raw_pending: job.nph,
            raw: job.nph,
            status: 0,
            bytes_out: 0,
            reading: [false; 2],
            eof: [false; 2],
            exited: None,
            stderr_line: Vec::new(),
            deadline: None,
        };
        if let Some(body) = job.spooled.filter(|b| !b.is_empty()) {
            cgi.stdin_queued = body.len();
            cgi.stdin.push_back(body);
        }
        self.cgi_running += 1;
        self.procs.insert(proc, cgi);
        self.set_proc_deadline(proc, Some(now.mono.after(self.config.timeouts.gateway)));
        self.effects.push_back(Effect::Spawn {
            token,
            spec: job.spec,
        });
    }

    /// True while the connection's events must wait (see the module documentation).
    pub(super) fn body_blocked(&self, id: ConnId) -> bool {
        match self
            .conns
            .get(&id)
            .and_then(|s| s.cur.get().gateway.as_ref())
        {
            Some(GatewayState::Queued(_)) => true,
            Some(GatewayState::Running(p)) => self
                .procs
                .get(p)
                .is_some_and(|c| c.stdin_queued > STDIN_BUFFER),
            _ => false,
        }
    }

    /// Routes request-body events to the connection's gateway. Returns false if there is
    /// no gateway (the body is the document code's to drop).
    pub(super) fn gateway_body(&mut self, id: ConnId, data: Option<Bytes>, now: Now) -> bool {
        let Some(slot) = self.conns.get_mut(&id) else {
            return false;
        };
        let Some(cur) = slot.cur.existing() else {
            return false;
        };
        match cur.gateway.as_mut() {
            None => false,
            Some(GatewayState::Spooling(spool)) => {
                match data {
                    Some(d) => spool.body.extend_from_slice(&d),
                    None => {
                        let Some(GatewayState::Spooling(spool)) = cur.gateway.take() else {
                            return true;
                        };
                        let Spool { mut job, body } = *spool;
                        let body = body.freeze();
                        for (k, v) in &mut job.spec.env {
                            if k == b"CONTENT_LENGTH" {
                                *v = body.len().to_string().into_bytes();
                            }
                        }
                        job.spooled = Some(body);
                        self.start_or_queue(id, job, now);
                    }
                }
                true
            }
            Some(GatewayState::Queued(_)) => true,
            Some(GatewayState::Running(proc)) => {
                let proc = *proc;
                if let Some(cgi) = self.procs.get_mut(&proc) {
                    match data {
                        Some(d) if !cgi.stdin_closed => {
                            cgi.stdin_queued += d.len();
                            cgi.stdin.push_back(d);
                        }
                        Some(_) => {}
                        None => cgi.stdin_complete = true,
                    }
                    self.pump_proc(proc, now);
                }
                true
            }
        }
    }

    /// A `Spawn` completed; returns false if `token` is not a spawn's.
    pub(super) fn spawn_completed(&mut self, token: Token, result: &Completion, now: Now) -> bool {
        let proc = ProcId(token);
        let Some(cgi) = self.procs.get_mut(&proc) else {
            return false;
        };
        match result {
            Completion::Spawned if cgi.conn.is_none() => {
                // Its request went away while it was being spawned.
                cgi.spawned = true;
                self.kill_proc(proc, now);
            }
            Completion::Spawned => {
                cgi.spawned = true;
                // The gateway timeout counts from the start (a slow spawn may have let the
                // first deadline pass unarmed).
                let deadline = now.mono.after(self.config.timeouts.gateway);
                self.set_proc_deadline(proc, Some(deadline));
                self.pump_proc(proc, now);
            }
            Completion::Failed(err) => {
                let (conn, label) = (cgi.conn, cgi.label.clone());
                self.log(format!("cgi {label}: cannot start: {err:?}"));
                // Nothing was created: no Kill, no Release.
                self.forget_proc(proc, now);
                if let Some(id) = conn {
                    self.error(id, status_for(*err), &[], now);
                    self.pump(id, now);
                }
            }
            _ => {}
        }
        true
    }

    pub(super) fn gateway_input(&mut self, input: Input, now: Now) {
        let proc = match &input {
            Input::StdinWritten { proc, .. }
            | Input::StdinClosed { proc }
            | Input::Output { proc, .. }
            | Input::OutputEof { proc, .. }
            | Input::Exited { proc, .. } => *proc,
            _ => return,
        };
        let Some(cgi) = self.procs.get_mut(&proc) else {
            return;
        };
        let conn = cgi.conn;
        match input {
            Input::StdinWritten { n, .. } => {
                let len = cgi.stdin_writing.take().unwrap_or(0);
                let mut n = n.min(len) as usize;
                cgi.stdin_queued -= n.min(cgi.stdin_queued);
                while n > 0 {
                    let Some(front) = cgi.stdin.front_mut() else {
                        break;
                    };
                    if front.len() <= n {
                        n -= front.len();
                        cgi.stdin.pop_front();
                    } else {
                        let _ = front.split_to(n);
                        n = 0;
                    }
                }
            }
            Input::StdinClosed { .. } => {
                cgi.stdin_writing = None;
                cgi.stdin_closed = true;
                cgi.stdin.clear();
                cgi.stdin_queued = 0;
            }
            Input::Output {
                stream: OutStream::Stderr,
                data,
                ..
            } => {
                cgi.reading[1] = false;
                self.stderr(proc, &data);
            }
            Input::OutputEof {
                stream: OutStream::Stderr,
                ..
            } => {
                cgi.reading[1] = false;
                cgi.eof[1] = true;
                let rest = std::mem::take(&mut cgi.stderr_line);
                if !rest.is_empty() {
                    let label = cgi.label.clone();
                    self.log(format!("cgi {label}: {}", String::from_utf8_lossy(&rest)));
                }
            }
            Input::Output {
                stream: OutStream::Stdout,
                data,
                ..
            } => {
                cgi.reading[0] = false;
                let deadline = now.mono.after(self.config.timeouts.gateway);
                self.set_proc_deadline(proc, Some(deadline));
                self.stdout(proc, data, now);
            }
            Input::OutputEof {
                stream: OutStream::Stdout,
                ..
            } => {
                cgi.reading[0] = false;
                cgi.eof[0] = true;
                self.stdout_eof(proc, now);
            }
            Input::Exited { status, .. } => cgi.exited = Some(status),
            _ => {}
        }
        self.pump_proc(proc, now);
        if let Some(id) = conn {
            self.pump(id, now);
        }
    }

    fn stderr(&mut self, proc: ProcId, data: &[u8]) {
        let Some(cgi) = self.procs.get_mut(&proc) else {
            return;
        };
        let label = cgi.label.clone();
        let mut lines = Vec::new();
        for &b in data {
            if b == b'\n' {
                lines.push(std::mem::take(&mut cgi.stderr_line));
            } else if cgi.stderr_line.len() < STDERR_LINE_MAX {
                cgi.stderr_line.push(b);
            }
        }
        for l in lines {
            let l = l.strip_suffix(b"\r").unwrap_or(&l);
            self.log(format!("cgi {label}: {}", String::from_utf8_lossy(l)));
        }
    }

    fn stdout(&mut self, proc: ProcId, data: Bytes, now: Now) {
        let Some(cgi) = self.procs.get_mut(&proc) else {
            return;
        };
        let Some(id) = cgi.conn else { return };
        let Some(parser) = cgi.head.as_mut() else {
            if std::mem::take(&mut cgi.raw_pending) {
                // nph: the script speaks HTTP itself; its bytes go out as they are. Its
                // status line is read only for the log and the counters.
                cgi.status = nph_status(&data);
                let status = cgi.status;
                if let Some(slot) = self.conns.get_mut(&id) {
                    let _ = slot.conn.send_raw(now);
                    if let Some(cur) = slot.cur.existing() {
                        cur.extra_headers.clear();
                    }
                }
                self.counters.response(status);
            }
            // The body: straight to the client.
            cgi.bytes_out += data.len() as u64;
            if let Some(slot) = self.conns.get_mut(&id) {
                if slot.conn.send_body(Chunk::Bytes(data), now).is_err() {
                    // More than the script's Content-Length promised.
                    self.log(format!(
                        "cgi {}: more output than its Content-Length",
                        self.procs[&proc].label
                    ));
                    self.abort_cgi(proc, now);
                }
            }
            return;
        };
        match parser.feed(&data, self.config.limits.header_bytes_max) {
            Parsed::NeedMore => {}
            Parsed::Bad(why) => self.bad_output(proc, why, now),
            Parsed::Head(head, rest) => {
                cgi.head = None;
                match head.reply() {
                    Err(why) => self.bad_output(proc, why, now),
                    Ok(Reply::LocalRedirect(location)) => {
                        // The script's part is over: the rules answer the new path.
                        self.kill_proc(proc, now);
                        self.local_redirect(id, location, now);
                    }
                    Ok(Reply::Document { status }) => {
                        let mut headers = Headers::new();
                        for (n, v) in head.fields {
                            headers.push(n, v);
                        }
                        let body = match head.content_length {
                            Some(n) => ResponseBody::Length(n),
                            None => ResponseBody::Streamed,
                        };
                        if let Some(cgi) = self.procs.get_mut(&proc) {
                            cgi.status = status;
                        }
                        self.start_response(
                            id,
                            ResponseHead {
                                status,
                                headers,
                                body,
                            },
                            now,
                        );
                        if !rest.is_empty() {
                            self.stdout(proc, rest, now);
                        }
                    }
                }
            }
        }
    }

    fn stdout_eof(&mut self, proc: ProcId, now: Now) {
        let Some(cgi) = self.procs.get_mut(&proc) else {
            return;
        };
        let Some(id) = cgi.conn else { return };
        if cgi.head.is_some() {
            return self.bad_output(
                proc,
                "the output ended before the end of the header section",
                now,
            );
        }
        if cgi.raw_pending {
            return self.bad_output(proc, "no output", now);
        }
        let (status, bytes, raw) = (cgi.status, cgi.bytes_out, cgi.raw);
        self.log_script_response(id, status, bytes, raw, now);
        let ended = self
            .conns
            .get_mut(&id)
            .map(|slot| slot.conn.send_end(None, now).is_ok());
        if ended == Some(false) {
            let label = self.procs[&proc].label.clone();
            self.log(format!("cgi {label}: less output than its Content-Length"));
            if let Some(slot) = self.conns.get_mut(&id) {
                slot.conn.cut(now);
            }
        }
        slot_done(self, id);
    }

    fn bad_output(&mut self, proc: ProcId, why: &str, now: Now) {
        let Some(cgi) = self.procs.get(&proc) else {
            return;
        };
        let (label, conn) = (cgi.label.clone(), cgi.conn);
        self.log(format!("cgi {label}: bad output: {why}"));
        self.kill_proc(proc, now);
        if let Some(id) = conn {
            self.error(id, 502, &[], now);
            slot_done(self, id);
        }
    }

    /// A script's response is being cut off after its head went out (timeout, broken
    /// promise, client gone): it still gets its access-log line, with the status sent and
    /// the body bytes passed so far, as nginx logs a response cut short. Call it while the
    /// connection's slot still exists, before `slot_done`.
    pub(super) fn log_cut_response(&mut self, proc: ProcId, id: ConnId, now: Now) {
        let Some(cgi) = self.procs.get(&proc) else {
            return;
        };
        if cgi.conn != Some(id) || cgi.head.is_some() || cgi.raw_pending {
            return;
        }
        let (status, bytes, raw) = (cgi.status, cgi.bytes_out, cgi.raw);
        self.log_script_response(id, status, bytes, raw, now);
    }

    /// The access-log line of a script's response: `bytes` passed to the connection, which
    /// sends none of them for a HEAD request, a 204 or a 304 (an `nph-` script's, `raw`,
    /// pass unparsed and all go out).
    fn log_script_response(&mut self, id: ConnId, status: u16, bytes: u64, raw: bool, now: Now) {
        let bytes = if !raw && self.bodiless(id, status) {
            0
        } else {
            bytes
        };
        if let Some(line) = self.access_line(id, status, bytes, now) {
            self.effects.push_back(Effect::AccessLog { line });
        }
    }

    /// Cuts a running script off after its response head went out: the connection closes.
    fn abort_cgi(&mut self, proc: ProcId, now: Now) {
        let conn = self.procs.get(&proc).and_then(|c| c.conn);
        if let Some(id) = conn {
            self.log_cut_response(proc, id, now);
        }
        self.kill_proc(proc, now);
        if let Some(id) = conn {
            if let Some(slot) = self.conns.get_mut(&id) {
                slot.conn.cut(now);
            }
            slot_done(self, id);
        }
    }

    fn local_redirect(&mut self, id: ConnId, location: Bytes, now: Now) {
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        let cur = slot.cur.get_mut();
        cur.gateway = None;
        cur.redirects += 1;
        if cur.redirects > REDIRECTS_MAX {
            self.log(format!(
                "too many local redirects, the last to {}",
                String::from_utf8_lossy(&location)
            ));
            return self.error(id, 500, &[], now);
        }
        let Some(mut req) = cur.request.as_deref().cloned() else {
            return;
        };
        req.method = Method::Get;
        req.target = location;
        req.body = BodyKind::None;
        req.headers.remove("content-length");
        req.headers.remove("content-type");
        req.headers.remove("transfer-encoding");
        self.route_request(id, std::sync::Arc::new(req), now);
    }

    /// Sends a response head that a script's body will follow (`respond` does head, body and
    /// end at once).
    fn start_response(&mut self, id: ConnId, mut head: ResponseHead, now: Now) {
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        if let Some(cur) = slot.cur.existing() {
            for (name, value) in std::mem::take(&mut cur.extra_headers) {
                head.headers.push(name, value);
            }
        }
        let status = head.status;
        if slot.conn.send_head(head, now).is_ok() {
            self.counters.response(status);
        }
    }

    /// Issues what a script's streams are ready for.
    pub(super) fn pump_proc(&mut self, proc: ProcId, now: Now) {
        let Some(cgi) = self.procs.get_mut(&proc) else {
            return;
        };
        if !cgi.spawned {
            return;
        }
        if !cgi.stdin_closed && cgi.stdin_writing.is_none() {
            if let Some(front) = cgi.stdin.front() {
                cgi.stdin_writing = Some(front.len() as u64);
                self.effects.push_back(Effect::WriteStdin {
                    proc,
                    data: front.clone(),
                });
            } else if cgi.stdin_complete {
                cgi.stdin_closed = true;
                self.effects.push_back(Effect::CloseStdin { proc });
            }
        }
        let room = cgi
            .conn
            .and_then(|id| self.conns.get(&id))
            .is_some_and(|s| s.conn.transmit_queued() < OUTPUT_BUFFER);
        if !cgi.reading[0] && !cgi.eof[0] && (cgi.head.is_some() || cgi.raw_pending || room) {
            cgi.reading[0] = true;
            self.effects.push_back(Effect::ReadOutput {
                proc,
                stream: OutStream::Stdout,
                max: READ_CHUNK,
            });
        }
        if !cgi.reading[1] && !cgi.eof[1] {
            cgi.reading[1] = true;
            self.effects.push_back(Effect::ReadOutput {
                proc,
                stream: OutStream::Stderr,
                max: READ_CHUNK,
            });
        }
        if cgi.eof[0] && cgi.eof[1] && cgi.exited.is_some() {
            if let Some(ExitStatus::Code(c)) = cgi.exited.filter(|s| *s != ExitStatus::Code(0)) {
                let label = cgi.label.clone();
                self.log(format!("cgi {label}: exited with status {c}"));
            }
            self.effects.push_back(Effect::Release { proc });
            self.forget_proc(proc, now);
        }
    }

    /// Kills a script's process group and lets it go.
    pub(super) fn kill_proc(&mut self, proc: ProcId, now: Now) {
        let Some(cgi) = self.procs.get(&proc) else {
            return;
        };
        if cgi.spawned {
            self.effects.push_back(Effect::Kill { proc });
            self.effects.push_back(Effect::Release { proc });
        } else {
            // The Spawn is still outstanding: keep the record, detached from its request,
            // and kill the process as soon as the spawn reports it (`spawn_completed`).
            if let Some(cgi) = self.procs.get_mut(&proc) {
                cgi.conn = None;
            }
            return;
        }
        self.forget_proc(proc, now);
    }

    /// Drops a script's record, frees its farm place and starts the next queued job.
    fn forget_proc(&mut self, proc: ProcId, now: Now) {
        let Some(cgi) = self.procs.remove(&proc) else {
            return;
        };
        self.set_deadline_index(proc, cgi.deadline, None);
        self.cgi_running -= 1;
        if let Some(id) = cgi.conn {
            if let Some(slot) = self.conns.get_mut(&id) {
                if let Some(cur) = slot.cur.existing() {
                    if cur.gateway == Some(GatewayState::Running(proc)) {
                        cur.gateway = None;
                    }
                }
            }
        }
        while let Some(next) = self.cgi_queue.pop_front() {
            let taken = self.conns.get_mut(&next).and_then(|s| s.cur.take_gateway());
            let job = match taken {
                Some(GatewayState::Queued(job)) => job,
                other => {
                    if let (Some(slot), Some(other)) = (self.conns.get_mut(&next), other) {
                        slot.cur.get_mut().gateway = Some(other);
                    }
                    continue;
                }
            };
            self.spawn(next, *job, now);
            self.pump(next, now);
            break;
        }
    }

    /// The connection is going away: whatever runs for it is killed (its answer, if it had
    /// started, still logged: call this while the slot exists), whatever waits dropped.
    pub(super) fn gateway_conn_closed(
        &mut self,
        id: ConnId,
        state: Option<GatewayState>,
        now: Now,
    ) {
        match state {
            Some(GatewayState::Running(proc)) => {
                self.log_cut_response(proc, id, now);
                if let Some(label) = self.procs.get(&proc).map(|c| c.label.clone()) {
                    if self.procs[&proc].conn.is_some() && !self.procs[&proc].eof[0] {
                        self.log(format!("cgi {label}: client went away; killing the script"));
                    }
                }
                if let Some(cgi) = self.procs.get_mut(&proc) {
                    cgi.conn = None;
                }
                self.kill_proc(proc, now);
            }
            Some(GatewayState::Queued(_)) => self.cgi_queue.retain(|c| *c != id),
            Some(GatewayState::Spooling(_)) | None => {}
        }
    }

    /// The protocol layer refused the request and queued its own answer: the script's
    /// answer can never be written, so whatever runs for it is killed and whatever waits
    /// dropped (the connection is closing).
    pub(super) fn gateway_refused(&mut self, id: ConnId, now: Now) {
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        let state = slot.cur.take_gateway();
        if let Some(GatewayState::Running(proc)) = &state {
            if let Some(cgi) = self.procs.get_mut(proc) {
                // Detached first: nothing of it is answered or logged any more.
                cgi.conn = None;
                let label = cgi.label.clone();
                self.log(format!(
                    "cgi {label}: the request was refused; killing the script"
                ));
            }
        }
        self.gateway_conn_closed(id, state, now);
    }

    /// The client closed its side while a gateway works for it: stop the gateway and the
    /// connection (nobody will read the answer of a client that hung up).
    pub(super) fn gateway_peer_closed(&mut self, id: ConnId, now: Now) {
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        let state = slot.cur.take_gateway();
        if state.is_none() {
            return;
        }
        slot.conn.cut(now);
        self.gateway_conn_closed(id, state, now);
    }

    fn set_proc_deadline(&mut self, proc: ProcId, deadline: Option<Time>) {
        let Some(cgi) = self.procs.get_mut(&proc) else {
            return;
        };
        let old = std::mem::replace(&mut cgi.deadline, deadline);
        self.set_deadline_index(proc, old, deadline);
    }

    fn set_deadline_index(&mut self, proc: ProcId, old: Option<Time>, new: Option<Time>) {
        if let Some(t) = old {
            self.proc_deadlines.remove(&(t, proc));
        }
        if let Some(t) = new {
            self.proc_deadlines.insert((t, proc));
        }
    }

    /// The `gateway` timeout: scripts that said nothing for that long.
    pub(super) fn gateway_timeouts(&mut self, now: Now) {
        let due: Vec<ProcId> = self
            .proc_deadlines
            .iter()
            .take_while(|(t, _)| *t <= now.mono)
            .map(|(_, p)| *p)
            .collect();
        for proc in due {
            let Some(cgi) = self.procs.get(&proc) else {
                continue;
            };
            let (label, conn, head_pending) = (
                cgi.label.clone(),
                cgi.conn,
                cgi.head.is_some() || cgi.raw_pending,
            );
            if !cgi.spawned {
                // Spawning does not time out (it is a local fork); keep waiting.
                self.set_proc_deadline(proc, None);
                continue;
            }
            self.log(format!(
                "cgi {label}: no output for {:?}; killing it",
                self.config.timeouts.gateway
            ));
            if let Some(id) = conn {
                self.log_cut_response(proc, id, now);
            }
            self.kill_proc(proc, now);
            if let Some(id) = conn {
                if head_pending {
                    self.error(id, 504, &[], now);
                } else if let Some(slot) = self.conns.get_mut(&id) {
                    slot.conn.cut(now);
                }
                slot_done(self, id);
                self.pump(id, now);
            }
        }
    }

    pub(super) fn log(&mut self, line: String) {
        self.effects.push_back(Effect::ErrorLog { line });
    }
}

/// The connection's gateway part is over (its response is complete or cut off).
fn slot_done(server: &mut Server, id: ConnId) {
    if let Some(slot) = server.conns.get_mut(&id) {
        if let Some(cur) = slot.cur.existing() {
            if matches!(cur.gateway, Some(GatewayState::Running(_))) {
                cur.gateway = None;
            }
        }
    }
}

/// The status an `nph-` script's output starts with (`HTTP/1.1 299 …`), for the log and the
/// counters; 0 when its first bytes are not such a status line.
fn nph_status(first: &[u8]) -> u16 {
    let Some(rest) = first.strip_prefix(b"HTTP/1.") else {
        return 0;
    };
    match rest {
        [_, b' ', a, b, c, ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => 0,
    }
}
