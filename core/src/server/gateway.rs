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
//! A running script (`Cgi`) is a stream (named, like a service's socket, by its token) with
//! one writing side and two read channels, each driven like a connection's: one
//! outstanding `StreamWrite` (the request body, in order, then `StreamShutdownWrite`), one
//! outstanding `StreamRead` per channel (`Main`: standard output, `Errors`: standard error).
//! CGI and FastCGI thus share one family of stream effects and inputs, one owner map from
//! token to gateway (`Owner`), one deadline index and one response path (`Reply`). Standard output goes through
//! `cgi::output::HeadParser` until the header section ends; then the reply is decided:
//! a document is streamed to the client (the next `StreamRead` is asked for only while the
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
//! Ending: the record is dropped, and `StreamClose` sent, once standard output and standard
//! error have ended and the process has exited. Every other ending kills the process
//! group first (`Kill`, then `StreamClose`): the `gateway` timeout (no output for that long:
//! 504 if no header was sent, else the connection is cut), a client that goes away, a
//! request the protocol layer refused before the script's header went out (a body too
//! slow, too large or malformed: the connection answers it itself), bad output. Every ending frees a farm slot and starts the next queued job.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

use super::{Channel, Completion, ConnId, Effect, ExitStatus, Input, IoError, Server, SpawnSpec};
use crate::cgi::env::{self, CgiRequest};
use crate::cgi::output::{HeadParser, Parsed, Reply as CgiReply};
use crate::chunk::Chunk;
use crate::config::ConfigRef;
use crate::http1::{BodyKind, Headers, Method, RequestHead, ResponseBody, ResponseHead};
use crate::ids::{StreamId, Token};
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
    /// What runs it: a script, or a service.
    pub(super) kind: JobKind,
    /// The script or service, for log lines.
    pub(super) label: String,
    /// Bytes gathered for a chunked body (sent to standard input first).
    pub(super) spooled: Option<Bytes>,
    /// The request body still arrives as events after the start.
    pub(super) streams_body: bool,
}

/// The two kinds of gateway.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum JobKind {
    /// A CGI script: a process per request.
    Cgi {
        /// The process to run.
        spec: SpawnSpec,
        /// An `nph-` script: its output is the whole response, passed on unparsed.
        nph: bool,
    },
    /// A FastCGI service: an exchange on a (maybe kept-alive) stream to it.
    Fcgi {
        /// The service's name.
        service: String,
        /// The meta-variables, sent as FastCGI parameters.
        params: Vec<(Vec<u8>, Vec<u8>)>,
    },
}

impl Job {
    /// Sets `CONTENT_LENGTH` once a chunked body has been gathered.
    fn set_content_length(&mut self, len: usize) {
        let vars = match &mut self.kind {
            JobKind::Cgi { spec, .. } => &mut spec.env,
            JobKind::Fcgi { params, .. } => params,
        };
        for (k, v) in vars {
            if k == b"CONTENT_LENGTH" {
                *v = len.to_string().into_bytes();
            }
        }
    }
}

/// A connection's gateway state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum GatewayState {
    /// Gathering a chunked body before the script can start.
    Spooling(Box<Spool>),
    /// Waiting for a free place in the farm.
    Queued(Box<Job>),
    /// The script runs (or is being spawned), or the service's exchange is under way.
    Running(Owner),
}

/// A chunked request body being gathered, and the gateway it is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Spool {
    job: Job,
    body: BytesMut,
}

impl Spool {
    /// An empty spool for `job`.
    pub(super) fn new(job: Job) -> Spool {
        Spool {
            job,
            body: BytesMut::new(),
        }
    }
}

/// Who is producing a request's response: a CGI process, or a FastCGI exchange on a
/// stream to a service. One token names either for life, so one deadline index and one
/// response path (`Reply`) serve both kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Owner {
    /// A CGI script's process.
    Proc(StreamId),
    /// A FastCGI exchange (`super::fastcgi`).
    Stream(StreamId),
}

/// The response side of a gateway, whichever its kind: the header section being parsed,
/// then what was sent (for the access log), and the `gateway` deadline.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Reply {
    /// The request it answers; `None` once it was detached (its client went away).
    pub(super) conn: Option<ConnId>,
    /// What the error log calls it (`cgi /path/script`, `service php`).
    pub(super) label: String,
    /// The response header parser, until the header section has ended.
    pub(super) head: Option<HeadParser>,
    /// An `nph-` script whose raw response has not started yet.
    pub(super) raw_pending: bool,
    /// An `nph-` script: its output goes out as written, head and all.
    pub(super) raw: bool,
    /// The status sent (for the access log).
    pub(super) status: u16,
    /// Body bytes passed to the client (for the access log).
    pub(super) bytes_out: u64,
    /// When the `gateway` timeout fires (no output for that long).
    pub(super) deadline: Option<Time>,
}

impl Reply {
    /// A reply for request `conn`, parsed (`nph` false) or raw.
    pub(super) fn new(conn: ConnId, label: String, nph: bool) -> Reply {
        Reply {
            conn: Some(conn),
            label,
            head: (!nph).then(HeadParser::new),
            raw_pending: nph,
            raw: nph,
            status: 0,
            bytes_out: 0,
            deadline: None,
        }
    }

    /// True while nothing of the response has gone to the client.
    pub(super) fn head_pending(&self) -> bool {
        self.head.is_some() || self.raw_pending
    }
}

/// A running script.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Cgi {
    pub(super) reply: Reply,
    spawned: bool,
    /// Body bytes not yet written to standard input.
    stdin: WriteQueue,
    /// The whole body has been queued (request End, or no body).
    stdin_complete: bool,
    /// `StreamShutdownWrite` was sent or the pipe broke: body bytes are dropped from now on.
    stdin_closed: bool,
    /// A `StreamRead` is outstanding (standard output, standard error).
    reading: [bool; 2],
    /// The stream has ended (standard output, standard error).
    eof: [bool; 2],
    exited: Option<ExitStatus>,
    stderr: ErrorLines,
}

/// The answer when a script cannot be started.
fn status_for(err: IoError) -> u16 {
    match err {
        IoError::NotFound => 404,
        IoError::PermissionDenied => 403,
        IoError::Exhausted => 503,
        IoError::Reset | IoError::Refused | IoError::Other => 500,
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
        let document_root = self.conf(id).root.clone();
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
        // The log names the script as configured; under `chroot`, the shell gets the
        // script, its directory and the path variables as seen inside.
        let label = format!("cgi {}", script.display());
        let (Some(script), Some(cwd)) = (self.shell_path(&script), self.shell_path(&cwd)) else {
            return self.error(id, 404, &[], now);
        };
        let mut env = env;
        if self.config.chroot.is_some() {
            for (name, value) in &mut env {
                if crate::config::chroot::PATH_VARIABLES.contains(&name.as_slice()) {
                    use std::os::unix::ffi::{OsStrExt, OsStringExt};
                    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(value));
                    if let Some(p) = self.shell_path(path) {
                        *value = p.into_os_string().into_vec();
                    }
                }
            }
        }
        let job = Job {
            label,
            kind: JobKind::Cgi {
                spec: SpawnSpec {
                    program: script,
                    args: Vec::new(),
                    env,
                    cwd,
                },
                nph,
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

    /// Starts a job whose request body (if chunked) has been gathered.
    pub(super) fn start_or_queue(&mut self, id: ConnId, job: Job, now: Now) {
        if matches!(job.kind, JobKind::Fcgi { .. }) {
            return self.fcgi_start(id, job, now);
        }
        if self.cgi_running < self.config.limits.cgi_max {
            return self.spawn(id, job, now);
        }
        // The queue holds as many again as the farm runs: beyond that, waiting would only
        // make the answer later, not better.
        if self.cgi_queue.len() >= self.config.limits.cgi_max {
            self.log(format!(
                "{}: farm full ({} running, {} waiting): 503",
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
        let proc = StreamId(token);
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        if job.streams_body {
            slot.conn.accept_body();
        }
        let JobKind::Cgi { spec, nph } = job.kind else {
            // unreachable: `start_or_queue` sends service jobs to `fcgi_start`.
            return;
        };
        slot.cur.get_mut().gateway = Some(GatewayState::Running(Owner::Proc(proc)));
        let mut cgi = Cgi {
            reply: Reply::new(id, job.label, nph),
            spawned: false,
            stdin: WriteQueue::default(),
            stdin_complete: !job.streams_body,
            stdin_closed: false,
            reading: [false; 2],
            eof: [false; 2],
            exited: None,
            stderr: ErrorLines::default(),
        };
        if let Some(body) = job.spooled {
            cgi.stdin.push(body);
        }
        self.cgi_running += 1;
        self.procs.insert(proc, cgi);
        self.set_gateway_deadline(
            Owner::Proc(proc),
            Some(now.mono.after(self.conf(id).timeouts.gateway)),
        );
        self.effects.push_back(Effect::Spawn { token, spec });
    }

    /// True while the connection's events must wait (see the module documentation).
    pub(super) fn body_blocked(&self, id: ConnId) -> bool {
        match self
            .conns
            .get(&id)
            .and_then(|s| s.cur.get().gateway.as_ref())
        {
            Some(GatewayState::Queued(_)) => true,
            Some(GatewayState::Running(Owner::Proc(p))) => self
                .procs
                .get(p)
                .is_some_and(|c| c.stdin.queued() > STDIN_BUFFER),
            Some(GatewayState::Running(Owner::Stream(s))) => self.fcgi_body_blocked(*s),
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
                        job.set_content_length(body.len());
                        job.spooled = Some(body);
                        self.start_or_queue(id, job, now);
                    }
                }
                true
            }
            Some(GatewayState::Queued(_)) => true,
            Some(GatewayState::Running(Owner::Stream(stream))) => {
                let stream = *stream;
                self.fcgi_body(stream, data, now);
                true
            }
            Some(GatewayState::Running(Owner::Proc(proc))) => {
                let proc = *proc;
                if let Some(cgi) = self.procs.get_mut(&proc) {
                    match data {
                        Some(d) if !cgi.stdin_closed => {
                            cgi.stdin.push(d);
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
        let proc = StreamId(token);
        let Some(cgi) = self.procs.get_mut(&proc) else {
            return false;
        };
        match result {
            Completion::Spawned if cgi.reply.conn.is_none() => {
                // Its request went away while it was being spawned.
                cgi.spawned = true;
                self.kill_proc(proc, now);
            }
            Completion::Spawned => {
                cgi.spawned = true;
                let conn = cgi.reply.conn;
                // The gateway timeout counts from the start (a slow spawn may have let the
                // first deadline pass unarmed).
                let deadline = now.mono.after(self.gateway_conf(conn).timeouts.gateway);
                self.set_gateway_deadline(Owner::Proc(proc), Some(deadline));
                self.pump_proc(proc, now);
            }
            Completion::Failed(err) => {
                let (conn, label) = (cgi.reply.conn, cgi.reply.label.clone());
                self.log(format!("{label}: cannot start: {err:?}"));
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
            Input::StreamWritten { stream: proc, .. }
            | Input::StreamWriteClosed { stream: proc }
            | Input::StreamReceived { stream: proc, .. }
            | Input::StreamEof { stream: proc, .. }
            | Input::Exited { stream: proc, .. } => *proc,
            _ => return,
        };
        let Some(cgi) = self.procs.get_mut(&proc) else {
            return;
        };
        let conn = cgi.reply.conn;
        match input {
            Input::StreamWritten { n, .. } => cgi.stdin.written(n),
            Input::StreamWriteClosed { .. } => {
                cgi.stdin_closed = true;
                cgi.stdin.clear();
            }
            Input::StreamReceived {
                channel: Channel::Errors,
                data,
                ..
            } => {
                cgi.reading[1] = false;
                self.stderr(proc, &data);
            }
            Input::StreamEof {
                channel: Channel::Errors,
                ..
            } => {
                cgi.reading[1] = false;
                cgi.eof[1] = true;
                if let Some(rest) = cgi.stderr.rest() {
                    let label = cgi.reply.label.clone();
                    self.log(format!("{label}: {rest}"));
                }
            }
            Input::StreamReceived {
                channel: Channel::Main,
                data,
                ..
            } => {
                cgi.reading[0] = false;
                let deadline = now.mono.after(self.gateway_conf(conn).timeouts.gateway);
                self.set_gateway_deadline(Owner::Proc(proc), Some(deadline));
                self.reply_data(Owner::Proc(proc), data, now);
            }
            Input::StreamEof {
                channel: Channel::Main,
                ..
            } => {
                cgi.reading[0] = false;
                cgi.eof[0] = true;
                self.reply_end(Owner::Proc(proc), now);
            }
            Input::Exited { status, .. } => cgi.exited = Some(status),
            _ => {}
        }
        self.pump_proc(proc, now);
        if let Some(id) = conn {
            self.pump(id, now);
        }
    }

    fn stderr(&mut self, proc: StreamId, data: &[u8]) {
        let Some(cgi) = self.procs.get_mut(&proc) else {
            return;
        };
        let label = cgi.reply.label.clone();
        for line in cgi.stderr.feed(data) {
            self.log(format!("{label}: {line}"));
        }
    }

    /// The reply of a gateway, if it is still known.
    pub(super) fn reply_mut(&mut self, owner: Owner) -> Option<&mut Reply> {
        match owner {
            Owner::Proc(p) => self.procs.get_mut(&p).map(|c| &mut c.reply),
            Owner::Stream(s) => self.fcgi_reply_mut(s),
        }
    }

    /// The reply of a gateway, if it is still known.
    pub(super) fn reply(&self, owner: Owner) -> Option<&Reply> {
        match owner {
            Owner::Proc(p) => self.procs.get(&p).map(|c| &c.reply),
            Owner::Stream(s) => self.fcgi_reply(s),
        }
    }

    /// Stops whatever produces a reply (kills the script, closes the service's stream)
    /// and forgets it.
    pub(super) fn stop_gateway(&mut self, owner: Owner, now: Now) {
        match owner {
            Owner::Proc(p) => self.kill_proc(p, now),
            Owner::Stream(s) => self.fcgi_drop(s, now),
        }
    }

    /// Response bytes from a gateway (a script's standard output, a service's stdout
    /// records): the header section is parsed, then the body streamed to the client.
    pub(super) fn reply_data(&mut self, owner: Owner, data: Bytes, now: Now) {
        let conn = self.reply(owner).and_then(|r| r.conn);
        let limit = self.gateway_conf(conn).limits.header_bytes_max;
        let Some(reply) = self.reply_mut(owner) else {
            return;
        };
        let Some(id) = reply.conn else { return };
        let Some(parser) = reply.head.as_mut() else {
            if std::mem::take(&mut reply.raw_pending) {
                // nph: the script speaks HTTP itself; its bytes go out as they are. Its
                // status line is read only for the log and the counters.
                reply.status = nph_status(&data);
                let status = reply.status;
                if let Some(slot) = self.conns.get_mut(&id) {
                    let _ = slot.conn.send_raw(now);
                    if let Some(cur) = slot.cur.existing() {
                        cur.extra_headers.clear();
                    }
                }
                self.counters.response(status);
            }
            // The body: straight to the client.
            let Some(reply) = self.reply_mut(owner) else {
                return;
            };
            reply.bytes_out += data.len() as u64;
            let label = reply.label.clone();
            if let Some(slot) = self.conns.get_mut(&id) {
                if slot.conn.send_body(Chunk::Bytes(data), now).is_err() {
                    // More than the gateway's Content-Length promised.
                    self.log(format!("{label}: more output than its Content-Length"));
                    self.abort_gateway(owner, now);
                }
            }
            return;
        };
        match parser.feed(&data, limit) {
            Parsed::NeedMore => {}
            Parsed::Bad(why) => self.bad_output(owner, why, now),
            Parsed::Head(head, rest) => {
                reply.head = None;
                match head.reply() {
                    Err(why) => self.bad_output(owner, why, now),
                    Ok(CgiReply::LocalRedirect(location)) => {
                        // The gateway's part is over: the rules answer the new path.
                        self.stop_gateway(owner, now);
                        self.local_redirect(id, location, now);
                    }
                    Ok(CgiReply::Document { status }) => {
                        let mut headers = Headers::new();
                        for (n, v) in head.fields {
                            headers.push(n, v);
                        }
                        let body = match head.content_length {
                            Some(n) => ResponseBody::Length(n),
                            None => ResponseBody::Streamed,
                        };
                        if let Some(reply) = self.reply_mut(owner) {
                            reply.status = status;
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
                            self.reply_data(owner, rest, now);
                        }
                    }
                }
            }
        }
    }

    /// The gateway's response has ended (a script's standard output closed, a service's
    /// END_REQUEST): the response is finished, or found short.
    pub(super) fn reply_end(&mut self, owner: Owner, now: Now) {
        let Some(reply) = self.reply(owner) else {
            return;
        };
        let Some(id) = reply.conn else { return };
        if reply.head.is_some() {
            return self.bad_output(
                owner,
                "the output ended before the end of the header section",
                now,
            );
        }
        if reply.raw_pending {
            return self.bad_output(owner, "no output", now);
        }
        let (status, bytes, raw, label) = (
            reply.status,
            reply.bytes_out,
            reply.raw,
            reply.label.clone(),
        );
        self.log_script_response(id, status, bytes, raw, now);
        let ended = self
            .conns
            .get_mut(&id)
            .map(|slot| slot.conn.send_end(None, now).is_ok());
        if ended == Some(false) {
            self.log(format!("{label}: less output than its Content-Length"));
            if let Some(slot) = self.conns.get_mut(&id) {
                slot.conn.cut(now);
            }
        }
        slot_done(self, id);
    }

    /// The gateway's output is not a valid response: 502, and the gateway is stopped.
    pub(super) fn bad_output(&mut self, owner: Owner, why: &str, now: Now) {
        self.gateway_failed(owner, &format!("bad output: {why}"), now);
    }

    /// The gateway cannot answer (`what` says why, for the error log) and nothing of its
    /// answer went out: 502, and the gateway is stopped.
    pub(super) fn gateway_failed(&mut self, owner: Owner, what: &str, now: Now) {
        let Some(reply) = self.reply(owner) else {
            return;
        };
        let (label, conn) = (reply.label.clone(), reply.conn);
        self.log(format!("{label}: {what}"));
        self.stop_gateway(owner, now);
        if let Some(id) = conn {
            self.error(id, 502, &[], now);
            slot_done(self, id);
        }
    }

    /// A gateway's response is being cut off after its head went out (timeout, broken
    /// promise, client gone): it still gets its access-log line, with the status sent and
    /// the body bytes passed so far, as nginx logs a response cut short. Call it while the
    /// connection's slot still exists, before `slot_done`.
    pub(super) fn log_cut_response(&mut self, owner: Owner, id: ConnId, now: Now) {
        let Some(reply) = self.reply(owner) else {
            return;
        };
        if reply.conn != Some(id) || reply.head_pending() {
            return;
        }
        let (status, bytes, raw) = (reply.status, reply.bytes_out, reply.raw);
        self.log_script_response(id, status, bytes, raw, now);
    }

    /// The access-log line of a gateway's response: `bytes` passed to the connection,
    /// which sends none of them for a HEAD request, a 204 or a 304 (an `nph-` script's,
    /// `raw`, pass unparsed and all go out).
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

    /// Cuts a gateway off after its response head went out: the connection closes.
    pub(super) fn abort_gateway(&mut self, owner: Owner, now: Now) {
        let conn = self.reply(owner).and_then(|r| r.conn);
        if let Some(id) = conn {
            self.log_cut_response(owner, id, now);
        }
        self.stop_gateway(owner, now);
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
    pub(super) fn pump_proc(&mut self, proc: StreamId, now: Now) {
        let Some(cgi) = self.procs.get_mut(&proc) else {
            return;
        };
        if !cgi.spawned {
            return;
        }
        if !cgi.stdin_closed && !cgi.stdin.writing() {
            if let Some(data) = cgi.stdin.next_write() {
                self.effects
                    .push_back(Effect::StreamWrite { stream: proc, data });
            } else if cgi.stdin_complete {
                cgi.stdin_closed = true;
                self.effects
                    .push_back(Effect::StreamShutdownWrite { stream: proc });
            }
        }
        let room = cgi
            .reply
            .conn
            .and_then(|id| self.conns.get(&id))
            .is_some_and(|s| s.conn.transmit_queued() < OUTPUT_BUFFER);
        if !cgi.reading[0] && !cgi.eof[0] && (cgi.reply.head_pending() || room) {
            cgi.reading[0] = true;
            self.effects.push_back(Effect::StreamRead {
                stream: proc,
                channel: Channel::Main,
                max: READ_CHUNK,
            });
        }
        if !cgi.reading[1] && !cgi.eof[1] {
            cgi.reading[1] = true;
            self.effects.push_back(Effect::StreamRead {
                stream: proc,
                channel: Channel::Errors,
                max: READ_CHUNK,
            });
        }
        if cgi.eof[0] && cgi.eof[1] && cgi.exited.is_some() {
            if let Some(ExitStatus::Code(c)) = cgi.exited.filter(|s| *s != ExitStatus::Code(0)) {
                let label = cgi.reply.label.clone();
                self.log(format!("{label}: exited with status {c}"));
            }
            self.effects.push_back(Effect::StreamClose { stream: proc });
            self.forget_proc(proc, now);
        }
    }

    /// Kills a script's process group and lets it go.
    pub(super) fn kill_proc(&mut self, proc: StreamId, now: Now) {
        let Some(cgi) = self.procs.get(&proc) else {
            return;
        };
        if cgi.spawned {
            self.effects.push_back(Effect::Kill { stream: proc });
            self.effects.push_back(Effect::StreamClose { stream: proc });
        } else {
            // The Spawn is still outstanding: keep the record, detached from its request,
            // and kill the process as soon as the spawn reports it (`spawn_completed`).
            if let Some(cgi) = self.procs.get_mut(&proc) {
                cgi.reply.conn = None;
            }
            return;
        }
        self.forget_proc(proc, now);
    }

    /// Drops a script's record, frees its farm place and starts the next queued job.
    fn forget_proc(&mut self, proc: StreamId, now: Now) {
        let Some(cgi) = self.procs.remove(&proc) else {
            return;
        };
        self.set_deadline_index(Owner::Proc(proc), cgi.reply.deadline, None);
        self.cgi_running -= 1;
        if let Some(id) = cgi.reply.conn {
            if let Some(slot) = self.conns.get_mut(&id) {
                if let Some(cur) = slot.cur.existing() {
                    if cur.gateway == Some(GatewayState::Running(Owner::Proc(proc))) {
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

    /// The connection is going away: whatever runs for it is stopped (its answer, if it
    /// had started, still logged: call this while the slot exists), whatever waits dropped.
    pub(super) fn gateway_conn_closed(
        &mut self,
        id: ConnId,
        state: Option<GatewayState>,
        now: Now,
    ) {
        match state {
            Some(GatewayState::Running(owner)) => {
                self.log_cut_response(owner, id, now);
                let still_producing = match owner {
                    Owner::Proc(p) => self.procs.get(&p).is_some_and(|c| !c.eof[0]),
                    Owner::Stream(_) => true,
                };
                if let Some(reply) = self.reply_mut(owner) {
                    if reply.conn.is_some() && still_producing {
                        let label = reply.label.clone();
                        self.log(format!("{label}: client went away; stopping it"));
                    }
                }
                if let Some(reply) = self.reply_mut(owner) {
                    reply.conn = None;
                }
                self.stop_gateway(owner, now);
            }
            Some(GatewayState::Queued(job)) => match job.kind {
                JobKind::Cgi { .. } => self.cgi_queue.retain(|c| *c != id),
                JobKind::Fcgi { service, .. } => self.fcgi_unqueue(&service, id),
            },
            Some(GatewayState::Spooling(_)) | None => {}
        }
    }

    /// The protocol layer refused the request and queued its own answer: the gateway's
    /// answer can never be written, so whatever runs for it is stopped and whatever waits
    /// dropped (the connection is closing).
    pub(super) fn gateway_refused(&mut self, id: ConnId, now: Now) {
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        let state = slot.cur.take_gateway();
        if let Some(GatewayState::Running(owner)) = &state {
            if let Some(reply) = self.reply_mut(*owner) {
                // Detached first: nothing of it is answered or logged any more.
                reply.conn = None;
                let label = reply.label.clone();
                self.log(format!("{label}: the request was refused; stopping it"));
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

    /// Sets (or, with `None`, clears) a gateway's `gateway` deadline.
    pub(super) fn set_gateway_deadline(&mut self, owner: Owner, deadline: Option<Time>) {
        let Some(reply) = self.reply_mut(owner) else {
            return;
        };
        let old = std::mem::replace(&mut reply.deadline, deadline);
        self.set_deadline_index(owner, old, deadline);
    }

    pub(super) fn set_deadline_index(
        &mut self,
        owner: Owner,
        old: Option<Time>,
        new: Option<Time>,
    ) {
        if let Some(t) = old {
            self.gateway_deadlines.remove(&(t, owner));
        }
        if let Some(t) = new {
            self.gateway_deadlines.insert((t, owner));
        }
    }

    /// The `gateway` timeout: gateways that said nothing for that long.
    pub(super) fn gateway_timeouts(&mut self, now: Now) {
        let due: Vec<Owner> = self
            .gateway_deadlines
            .iter()
            .take_while(|(t, _)| *t <= now.mono)
            .map(|(_, p)| *p)
            .collect();
        for owner in due {
            if let Owner::Proc(proc) = owner {
                if self.procs.get(&proc).is_some_and(|c| !c.spawned) {
                    // Spawning does not time out (it is a local fork); keep waiting.
                    self.set_gateway_deadline(owner, None);
                    continue;
                }
            }
            let Some(reply) = self.reply(owner) else {
                continue;
            };
            let (label, conn, head_pending) =
                (reply.label.clone(), reply.conn, reply.head_pending());
            self.log(format!(
                "{label}: no output for {:?}; stopping it",
                self.gateway_conf(conn).timeouts.gateway
            ));
            if let Some(id) = conn {
                self.log_cut_response(owner, id, now);
            }
            self.stop_gateway(owner, now);
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

    /// The configuration of the request a gateway answers (the server's if it has none).
    pub(super) fn gateway_conf(&self, conn: Option<ConnId>) -> &ConfigRef {
        conn.map_or(&self.config, |id| self.conf(id))
    }

    pub(super) fn log(&mut self, line: String) {
        self.effects.push_back(Effect::ErrorLog { line });
    }
}

/// Bytes queued for a stream's writing side (a script's standard input, a service's
/// socket), written in order with at most one `StreamWrite` outstanding: the part of a
/// gateway's exchange that both kinds share.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct WriteQueue {
    chunks: VecDeque<Bytes>,
    queued: usize,
    /// Length of the outstanding `StreamWrite`.
    writing: Option<u64>,
}

impl WriteQueue {
    /// Queues `data` (nothing for empty data).
    pub(super) fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.queued += data.len();
            self.chunks.push_back(data);
        }
    }

    /// Bytes queued and not yet written.
    pub(super) fn queued(&self) -> usize {
        self.queued
    }

    /// True when nothing is queued or being written.
    pub(super) fn is_idle(&self) -> bool {
        self.chunks.is_empty() && self.writing.is_none()
    }

    /// True while a `StreamWrite` is outstanding.
    pub(super) fn writing(&self) -> bool {
        self.writing.is_some()
    }

    /// The next bytes to write, if none is outstanding (it is then).
    pub(super) fn next_write(&mut self) -> Option<Bytes> {
        if self.writing.is_some() {
            return None;
        }
        let front = self.chunks.front()?;
        self.writing = Some(front.len() as u64);
        Some(front.clone())
    }

    /// The outstanding write took its first `n` bytes; the rest is written again.
    pub(super) fn written(&mut self, n: u64) {
        let len = self.writing.take().unwrap_or(0);
        // Lossless on the 64-bit targets weir supports: `n` is at most a chunk's length.
        let mut n = n.min(len) as usize;
        self.queued -= n.min(self.queued);
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.len() <= n {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                let _ = front.split_to(n);
                n = 0;
            }
        }
    }

    /// The writing side is gone: everything queued is dropped.
    pub(super) fn clear(&mut self) {
        *self = WriteQueue::default();
    }
}

/// A gateway's standard error cut into lines for the error log (a line longer than
/// `STDERR_LINE_MAX` is cut; a CR before the LF is dropped).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct ErrorLines {
    partial: Vec<u8>,
}

impl ErrorLines {
    /// The whole lines `data` completes.
    pub(super) fn feed(&mut self, data: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in data {
            if b == b'\n' {
                let l = std::mem::take(&mut self.partial);
                let l = l.strip_suffix(b"\r").unwrap_or(&l);
                lines.push(String::from_utf8_lossy(l).into_owned());
            } else if self.partial.len() < STDERR_LINE_MAX {
                self.partial.push(b);
            }
        }
        lines
    }

    /// What is left of a last line without its newline, once the stream has ended.
    pub(super) fn rest(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.partial);
        (!rest.is_empty()).then(|| String::from_utf8_lossy(&rest).into_owned())
    }
}

/// The connection's gateway part is over (its response is complete or cut off).
pub(super) fn slot_done(server: &mut Server, id: ConnId) {
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
