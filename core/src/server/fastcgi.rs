//! FastCGI services: a request handed to a service as a FastCGI exchange on a stream
//! (DESIGN.md §4, §7; the record codec is `crate::fcgi`).
//!
//! # Theory of operation
//!
//! A request that an `exec … service=NAME` rule routes becomes a `Job` of kind `Fcgi`
//! (its meta-variables are the CGI ones, `cgi::env`), and the job becomes an *exchange*
//! on a stream to the service. Streams are the core's one family of upstream effects:
//! `Connect` (named by its token for life, `StreamId`), then at most one `StreamRead` and
//! one `StreamWrite` outstanding, and `StreamClose`.
//!
//! ```text
//!   job ─► service Down? ───────────────────────────────► 503 + Retry-After
//!    │
//!    ├─ an idle stream in the pool ─────────────┐
//!    ├─ open < share of connections= ─► Connect ┤ (Connected; Failed → 503 refused, else 502)
//!    └─ else wait in the service's queue ───────┤   (a stream freed or a slot freed takes it)
//!                                               ▼
//!      BEGIN_REQUEST(keep?) PARAMS… PARAMS() STDIN… STDIN()     ─► written in order
//!      STDOUT… ─► the CGI response parser (`Reply`, shared with scripts) ─► client
//!      STDERR… ─► error log lines, `service NAME: …`
//!      END_REQUEST ─► response ended; the stream goes back to the pool if it was kept
//!                     alive and nothing is left over, else StreamClose
//! ```
//!
//! One request at a time per stream (request id 1, no multiplexing: php-cgi and most
//! services refuse it). The stream's end or failure before END_REQUEST gives 502 if no
//! head went out, else the response is cut (and logged as such); the `gateway` timeout
//! (no output for that long) gives 504 or a cut. A client that goes away closes the
//! stream rather than aborting the request in-band: the service sees a closed connection
//! and stops, and no half-finished exchange is ever put back into the pool.
//!
//! Back-pressure: request-body events wait while more than `STDIN_BUFFER` bytes of
//! records are queued for the stream; the service's output is read only while the client
//! connection has less than `OUTPUT_BUFFER` queued. Idle pooled streams keep a read
//! outstanding, so a service that closes one is noticed at once.
//!
//! Connections: each worker's `Server` holds its share of the service's `connections=`
//! (`Server::set_worker_share`: N split among W workers, the first N mod W getting one
//! more), and keeps streams alive only while every worker has a share of at least one,
//! that is when N ≥ W. With fewer connections than workers, some worker's share rounds
//! down to zero; it may still open one stream at a time (or it could never serve), so the
//! workers together may open more than N, and then *no* worker keeps an idle stream: a
//! process of a classic FastCGI program (php-cgi) serves one connection at a time, and an
//! idle stream held by one worker would pin a process that another worker's request
//! waits for in the socket's backlog until the `gateway` timeout.
//!
//! Availability: the service's supervisor publishes `Ready` or `Down { retry_after }`
//! (`Input::ServiceState`). While Down, requests get 503 with `Retry-After` at once, and
//! the exchanges of that service whose answer has not started (they can only be waiting
//! in a dead service's backlog) get it too; idle streams are closed.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::gateway::{slot_done, ErrorLines, GatewayState, Job, JobKind, Owner, Reply, WriteQueue};
use super::{
    Availability, Channel, Completion, ConnId, Effect, Input, IoError, Server, UpstreamAddr,
};
use crate::cgi::env::{self, CgiRequest};
use crate::fcgi::{self, Record, StreamKind};
use crate::http1::{BodyKind, RequestHead};
use crate::ids::{StreamId, Token};
use crate::rules::Gateway;
use crate::time::Now;

use super::gateway::{OUTPUT_BUFFER, READ_CHUNK, STDIN_BUFFER};

/// The request id of every exchange (one request per stream at a time).
const REQUEST_ID: u16 = 1;
/// Most records buffered from a service before they are parsed (a record is at most
/// 64 KiB of content plus padding, so this holds one whole record and the next header).
const DECODER_BUFFER: usize = 80 * 1024;
/// Requests waiting for a stream to one service, per worker; beyond that, 503.
const QUEUE_MAX: usize = 1024;

/// A stream to a service: busy with one request, or idle in the service's pool.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Upstream {
    service: String,
    /// Where it is connected (a reload may move the service elsewhere).
    addr: UpstreamAddr,
    /// The exchange's response side while busy; `None` while idle (or detached from a
    /// request that went away while the stream was still connecting).
    reply: Option<Reply>,
    /// The `Connect` has completed.
    connected: bool,
    /// Dropped while connecting: closed as soon as the `Connect` reports.
    doomed: bool,
    /// Asked the service to keep the connection (`FCGI_KEEP_CONN`).
    keep: bool,
    /// The request body still streams in as STDIN records (its end not yet sent).
    stdin_open: bool,
    decoder: fcgi::Decoder,
    /// Encoded records not yet written, in order.
    out: WriteQueue,
    /// A `StreamRead` is outstanding.
    reading: bool,
    stderr: ErrorLines,
}

impl Upstream {
    /// The service this stream is answering a request for, if it is busy.
    pub(super) fn busy_service(&self) -> Option<&str> {
        self.reply.as_ref().map(|_| self.service.as_str())
    }
}

/// One service as this worker sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct ServicePool {
    /// Idle kept-alive streams, most recently used last.
    idle: Vec<StreamId>,
    /// Streams open or connecting.
    open: usize,
    /// Requests waiting for a stream.
    queue: VecDeque<ConnId>,
    /// Down, as the supervisor last published it, with the `Retry-After` seconds (0: none,
    /// the service is stopped); `None` (ready) until told otherwise.
    down: Option<u32>,
}

/// The answer when a stream to a service cannot be opened.
fn connect_status(err: IoError) -> u16 {
    match err {
        // Nothing listens: the service is not running (503, try again), not broken.
        IoError::Refused | IoError::NotFound | IoError::Exhausted => 503,
        IoError::PermissionDenied | IoError::Reset | IoError::Other => 502,
    }
}

impl Server {
    /// Starts the gateway for a request the rules sent to FastCGI service `name`.
    pub(super) fn start_fcgi(
        &mut self,
        id: ConnId,
        req: &RequestHead,
        query: &[u8],
        name: &str,
        gw: &Gateway,
        now: Now,
    ) {
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
        // Without a SCRIPT, the service is the script: SCRIPT_FILENAME names the
        // document root joined with the script name, as nginx's default does.
        let script_filename = gw.script.clone().unwrap_or_else(|| {
            use std::os::unix::ffi::OsStrExt;
            let rel = gw.script_name.strip_prefix(b"/").unwrap_or(&gw.script_name);
            document_root.join(std::ffi::OsStr::from_bytes(rel))
        });
        let params = env::build(&CgiRequest {
            head: req,
            query,
            script_name: &gw.script_name,
            path_info: &gw.path_info,
            path_translated: None,
            script_filename: &script_filename,
            document_root: &document_root,
            peer: slot.peer(),
            local: slot.local(),
            remote_user: slot.cur.get().user.as_deref(),
            content_length,
            extra: &gw.env,
        });
        let job = Job {
            label: format!("service {name}"),
            kind: JobKind::Fcgi {
                service: name.to_string(),
                params,
            },
            spooled: None,
            streams_body: matches!(req.body, BodyKind::Length(_)),
        };
        if req.body == BodyKind::Chunked {
            if let Some(slot) = self.conns.get_mut(&id) {
                slot.conn.accept_body();
                slot.cur.get_mut().gateway = Some(GatewayState::Spooling(Box::new(
                    super::gateway::Spool::new(job),
                )));
            }
            return;
        }
        self.fcgi_start(id, job, now);
    }

    /// This worker's share of `connections=` for a service, and whether streams to it
    /// may be kept alive (see the module documentation).
    fn fcgi_share(&self, service: &str) -> (usize, bool) {
        let total = self.config.service_connections(service);
        let (index, count) = self.workers;
        let share = total / count + usize::from(index < total % count);
        (share.max(1), total >= count)
    }

    /// Hands a job to its service: an idle stream, a new one, or the queue.
    pub(super) fn fcgi_start(&mut self, id: ConnId, job: Job, now: Now) {
        let JobKind::Fcgi { service, .. } = &job.kind else {
            return;
        };
        let service = service.clone();
        let (cap, _) = self.fcgi_share(&service);
        let addr = self.conf(id).service_addr(&service);
        let pool = self.services.entry(service.clone()).or_default();
        if let Some(secs) = pool.down {
            let retry = [("Retry-After", secs.to_string())];
            let headers = if secs == 0 { &[][..] } else { &retry[..] };
            return self.error(id, 503, headers, now);
        }
        // An idle stream to where this request's configuration says the service is.
        let reuse = pool.idle.iter().rposition(|s| {
            self.upstreams
                .get(s)
                .is_some_and(|u| Some(&u.addr) == addr.as_ref())
        });
        if let Some(i) = reuse {
            let stream = pool.idle.remove(i);
            return self.fcgi_attach(stream, id, job, now);
        }
        if pool.open < cap {
            let Some(addr) = addr else {
                self.log(format!("{}: not declared", job.label));
                return self.error(id, 500, &[], now);
            };
            pool.open += 1;
            let token = self.token();
            let stream = StreamId(token);
            self.upstreams.insert(
                stream,
                Upstream {
                    service,
                    addr: addr.clone(),
                    reply: None,
                    connected: false,
                    doomed: false,
                    keep: false,
                    stdin_open: false,
                    decoder: fcgi::Decoder::new(DECODER_BUFFER),
                    out: WriteQueue::default(),
                    reading: false,
                    stderr: ErrorLines::default(),
                },
            );
            self.effects.push_back(Effect::Connect { token, addr });
            return self.fcgi_attach(stream, id, job, now);
        }
        if pool.queue.len() >= QUEUE_MAX {
            let waiting = pool.queue.len();
            self.log(format!(
                "{}: {waiting} requests already wait for a connection: 503",
                job.label
            ));
            return self.error(id, 503, &[("Retry-After", "1".into())], now);
        }
        pool.queue.push_back(id);
        if let Some(slot) = self.conns.get_mut(&id) {
            slot.cur.get_mut().gateway = Some(GatewayState::Queued(Box::new(job)));
        }
    }

    /// Starts the exchange of `job` on `stream`: the request's records are queued.
    fn fcgi_attach(&mut self, stream: StreamId, id: ConnId, job: Job, now: Now) {
        let JobKind::Fcgi { service, params } = job.kind else {
            return;
        };
        let (_, keep_allowed) = self.fcgi_share(&service);
        let deadline = now.mono.after(self.conf(id).timeouts.gateway);
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        if job.streams_body {
            slot.conn.accept_body();
        }
        slot.cur.get_mut().gateway = Some(GatewayState::Running(Owner::Stream(stream)));
        let Some(up) = self.upstreams.get_mut(&stream) else {
            return;
        };
        up.keep = keep_allowed;
        up.stdin_open = job.streams_body;
        up.reply = Some(Reply::new(id, job.label, false));
        let mut buf = BytesMut::new();
        fcgi::encode(
            &Record::BeginRequest {
                id: REQUEST_ID,
                role: fcgi::Role::Responder,
                keep_conn: keep_allowed,
            },
            &mut buf,
        );
        let mut pairs = BytesMut::new();
        fcgi::encode_params(
            params.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
            &mut pairs,
        );
        fcgi::encode_stream(StreamKind::Params, REQUEST_ID, &pairs, &mut buf);
        if let Some(body) = job.spooled.filter(|b| !b.is_empty()) {
            fcgi::encode_stream_part(StreamKind::Stdin, REQUEST_ID, &body, &mut buf);
        }
        if !job.streams_body {
            fcgi::encode_stream(StreamKind::Stdin, REQUEST_ID, &[], &mut buf);
        }
        up.out.push(buf.freeze());
        self.set_gateway_deadline(Owner::Stream(stream), Some(deadline));
        self.pump_stream(stream, now);
    }

    pub(super) fn fcgi_reply_mut(&mut self, stream: StreamId) -> Option<&mut Reply> {
        self.upstreams.get_mut(&stream)?.reply.as_mut()
    }

    pub(super) fn fcgi_reply(&self, stream: StreamId) -> Option<&Reply> {
        self.upstreams.get(&stream)?.reply.as_ref()
    }

    /// True while the request body must wait for the stream to take what it has.
    pub(super) fn fcgi_body_blocked(&self, stream: StreamId) -> bool {
        self.upstreams
            .get(&stream)
            .is_some_and(|u| u.out.queued() > STDIN_BUFFER)
    }

    /// Request-body bytes (or, with `None`, its end) for the exchange on `stream`.
    pub(super) fn fcgi_body(&mut self, stream: StreamId, data: Option<Bytes>, now: Now) {
        let Some(up) = self.upstreams.get_mut(&stream) else {
            return;
        };
        if !up.stdin_open {
            // The whole body was sent with the request (none, or gathered first).
            return;
        }
        let mut buf = BytesMut::new();
        match data {
            Some(d) if d.is_empty() => return,
            Some(d) => fcgi::encode_stream_part(StreamKind::Stdin, REQUEST_ID, &d, &mut buf),
            None => {
                up.stdin_open = false;
                fcgi::encode_stream(StreamKind::Stdin, REQUEST_ID, &[], &mut buf);
            }
        }
        up.out.push(buf.freeze());
        self.pump_stream(stream, now);
    }

    /// Issues what a stream is ready for: the next write, and a read when there is room.
    pub(super) fn pump_stream(&mut self, stream: StreamId, _now: Now) {
        let Some(up) = self.upstreams.get_mut(&stream) else {
            return;
        };
        if !up.connected {
            return;
        }
        if let Some(data) = up.out.next_write() {
            self.effects.push_back(Effect::StreamWrite { stream, data });
        }
        if up.reading {
            return;
        }
        let room = match &up.reply {
            // Idle: a read notices a service that closes the stream.
            None => true,
            Some(reply) => {
                reply.head_pending()
                    || reply
                        .conn
                        .and_then(|id| self.conns.get(&id))
                        .is_some_and(|s| s.conn.transmit_queued() < OUTPUT_BUFFER)
            }
        };
        if room {
            up.reading = true;
            self.effects.push_back(Effect::StreamRead {
                stream,
                channel: Channel::Main,
                max: READ_CHUNK,
            });
        }
    }

    /// A `Connect` completed; returns false if `token` is not a connect's.
    pub(super) fn connect_completed(
        &mut self,
        token: Token,
        result: &Completion,
        now: Now,
    ) -> bool {
        let stream = StreamId(token);
        let Some(up) = self.upstreams.get_mut(&stream) else {
            return false;
        };
        match result {
            Completion::Connected if up.doomed => {
                up.connected = true;
                self.fcgi_drop(stream, now);
            }
            Completion::Connected => {
                up.connected = true;
                self.pump_stream(stream, now);
            }
            Completion::Failed(err) => {
                let err = *err;
                let conn = up.reply.as_ref().and_then(|r| r.conn);
                let service = up.service.clone();
                // Nothing was opened: no StreamClose.
                up.doomed = true;
                up.connected = false;
                self.log(format!("service {service}: cannot connect: {err:?}"));
                self.fcgi_forget(stream, now);
                if let Some(id) = conn {
                    let status = connect_status(err);
                    let retry = [("Retry-After", "1".to_string())];
                    let headers = if status == 503 { &retry[..] } else { &[] };
                    self.error(id, status, headers, now);
                    slot_done(self, id);
                    self.pump(id, now);
                }
            }
            _ => {}
        }
        true
    }

    /// Stream inputs: writes done, records read, the end or failure of a stream.
    pub(super) fn fcgi_input(&mut self, input: Input, now: Now) {
        let stream = match &input {
            Input::StreamReceived { stream, .. }
            | Input::StreamEof { stream, .. }
            | Input::StreamWritten { stream, .. }
            | Input::StreamFailed { stream, .. } => *stream,
            _ => return,
        };
        let Some(up) = self.upstreams.get_mut(&stream) else {
            return;
        };
        let conn = up.reply.as_ref().and_then(|r| r.conn);
        match input {
            Input::StreamWritten { n, .. } => up.out.written(n),
            Input::StreamReceived { data, .. } => {
                up.reading = false;
                if up.reply.is_none() {
                    // Nobody asked: an idle stream the service talks on is not usable.
                    let service = up.service.clone();
                    self.log(format!(
                        "service {service}: unexpected bytes on an idle connection; closing it"
                    ));
                    self.fcgi_drop(stream, now);
                } else {
                    let deadline = now.mono.after(self.gateway_conf(conn).timeouts.gateway);
                    self.set_gateway_deadline(Owner::Stream(stream), Some(deadline));
                    up_push(self, stream, &data);
                    self.fcgi_records(stream, now);
                }
            }
            Input::StreamEof { .. } | Input::StreamFailed { .. } => {
                up.reading = false;
                let why = match input {
                    Input::StreamFailed { error, .. } => {
                        format!("the connection failed ({error:?})")
                    }
                    _ => "the service closed the connection".to_string(),
                };
                self.fcgi_broken(stream, &why, now);
            }
            _ => {}
        }
        self.pump_stream(stream, now);
        if let Some(id) = conn {
            self.pump(id, now);
        }
    }

    /// Takes every whole record the service sent.
    fn fcgi_records(&mut self, stream: StreamId, now: Now) {
        loop {
            let Some(up) = self.upstreams.get_mut(&stream) else {
                return;
            };
            if up.reply.is_none() {
                return;
            }
            let record = match up.decoder.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    let why = format!("bad FastCGI records: {e:?}");
                    return self.fcgi_broken(stream, &why, now);
                }
            };
            let owner = Owner::Stream(stream);
            match record {
                Record::Stdout { data, .. } if !data.is_empty() => {
                    self.reply_data(owner, data, now);
                }
                Record::Stderr { data, .. } => self.fcgi_stderr(stream, &data),
                Record::EndRequest { .. } => {
                    let up = &self.upstreams[&stream];
                    let reusable = up.keep && up.decoder.buffered() == 0 && up.out.is_idle();
                    let service = up.service.clone();
                    self.effects.push_back(Effect::ServiceAnswered { service });
                    self.fcgi_stderr_flush(stream);
                    self.reply_end(owner, now);
                    if reusable && self.upstreams.contains_key(&stream) {
                        self.fcgi_release(stream, now);
                    } else {
                        self.fcgi_drop(stream, now);
                    }
                    return;
                }
                // An empty STDOUT (its stream's end), management records: nothing to do.
                _ => {}
            }
        }
    }

    /// The stream ended or broke, or spoke nonsense, before END_REQUEST: 502 if nothing
    /// of the answer went out, else the response is cut.
    fn fcgi_broken(&mut self, stream: StreamId, why: &str, now: Now) {
        let owner = Owner::Stream(stream);
        match self.fcgi_reply(stream) {
            Some(reply) if reply.conn.is_some() && reply.head_pending() => {
                self.gateway_failed(owner, &format!("{why} before answering; 502"), now);
            }
            Some(reply) if reply.conn.is_some() => {
                let label = reply.label.clone();
                self.log(format!("{label}: {why}; the response is cut short"));
                self.abort_gateway(owner, now);
            }
            _ => self.fcgi_drop(stream, now),
        }
    }

    fn fcgi_stderr(&mut self, stream: StreamId, data: &[u8]) {
        let Some(up) = self.upstreams.get_mut(&stream) else {
            return;
        };
        let service = up.service.clone();
        for line in up.stderr.feed(data) {
            self.log(format!("service {service}: {line}"));
        }
    }

    fn fcgi_stderr_flush(&mut self, stream: StreamId) {
        let Some(up) = self.upstreams.get_mut(&stream) else {
            return;
        };
        if let Some(rest) = up.stderr.rest() {
            let service = up.service.clone();
            self.log(format!("service {service}: {rest}"));
        }
    }

    /// The exchange is over and the stream clean: it waits in the pool for the next
    /// request (which may be waiting already).
    fn fcgi_release(&mut self, stream: StreamId, now: Now) {
        let Some(up) = self.upstreams.get_mut(&stream) else {
            return;
        };
        let old = up.reply.take().and_then(|r| r.deadline);
        let service = up.service.clone();
        self.set_deadline_index(Owner::Stream(stream), old, None);
        let pool = self.services.entry(service.clone()).or_default();
        pool.idle.push(stream);
        self.pump_stream(stream, now);
        self.fcgi_next(&service, now);
    }

    /// Closes a stream and forgets it (a stream still connecting is closed when its
    /// `Connect` reports).
    pub(super) fn fcgi_drop(&mut self, stream: StreamId, now: Now) {
        let Some(up) = self.upstreams.get_mut(&stream) else {
            return;
        };
        let conn = up.reply.as_ref().and_then(|r| r.conn);
        if let Some(id) = conn {
            if let Some(slot) = self.conns.get_mut(&id) {
                if let Some(cur) = slot.cur.existing() {
                    if cur.gateway == Some(GatewayState::Running(Owner::Stream(stream))) {
                        cur.gateway = None;
                    }
                }
            }
        }
        let Some(up) = self.upstreams.get_mut(&stream) else {
            return;
        };
        if !up.connected && !up.doomed {
            up.doomed = true;
            let old = up.reply.take().and_then(|r| r.deadline);
            self.set_deadline_index(Owner::Stream(stream), old, None);
            return;
        }
        if up.connected {
            self.effects.push_back(Effect::StreamClose { stream });
        }
        self.fcgi_forget(stream, now);
    }

    /// Drops a stream's record, frees its place and lets the next queued request start.
    fn fcgi_forget(&mut self, stream: StreamId, now: Now) {
        let Some(up) = self.upstreams.remove(&stream) else {
            return;
        };
        if let Some(t) = up.reply.as_ref().and_then(|r| r.deadline) {
            self.gateway_deadlines.remove(&(t, Owner::Stream(stream)));
        }
        if let Some(pool) = self.services.get_mut(&up.service) {
            pool.open = pool.open.saturating_sub(1);
            pool.idle.retain(|s| *s != stream);
        }
        self.fcgi_next(&up.service, now);
    }

    /// Starts the next request waiting for `service`, if a stream can be had for it.
    fn fcgi_next(&mut self, service: &str, now: Now) {
        let (cap, _) = self.fcgi_share(service);
        loop {
            let Some(pool) = self.services.get_mut(service) else {
                return;
            };
            if pool.idle.is_empty() && pool.open >= cap {
                return;
            }
            let Some(next) = pool.queue.pop_front() else {
                return;
            };
            match self.conns.get_mut(&next).and_then(|s| s.cur.take_gateway()) {
                Some(GatewayState::Queued(job)) => {
                    self.fcgi_start(next, *job, now);
                    self.pump(next, now);
                    return;
                }
                other => {
                    if let (Some(slot), Some(other)) = (self.conns.get_mut(&next), other) {
                        slot.cur.get_mut().gateway = Some(other);
                    }
                }
            }
        }
    }

    /// A queued request's connection went away.
    pub(super) fn fcgi_unqueue(&mut self, service: &str, id: ConnId) {
        if let Some(pool) = self.services.get_mut(service) {
            pool.queue.retain(|c| *c != id);
        }
    }

    /// The supervisor published a service's availability.
    pub(super) fn fcgi_availability(&mut self, service: String, a: Availability, now: Now) {
        let down = match a {
            Availability::Ready => None,
            Availability::Down { retry_after } => Some(
                u32::try_from(retry_after.as_secs())
                    .unwrap_or(u32::MAX)
                    .max(1),
            ),
            // Removed from the configuration: no time to say; 0 means no Retry-After.
            Availability::Stopped => Some(0),
        };
        let pool = self.services.entry(service.clone()).or_default();
        pool.down = down;
        let Some(secs) = down else {
            return;
        };
        let retry_field = [("Retry-After", secs.to_string())];
        let retry = if secs == 0 { &[][..] } else { &retry_field[..] };
        // Waiting requests, and exchanges still waiting for their answer (no process is
        // left to give it), are answered now; idle streams are closed.
        let queued: Vec<ConnId> = pool.queue.drain(..).collect();
        for id in queued {
            if let Some(slot) = self.conns.get_mut(&id) {
                slot.cur.take_gateway();
            }
            self.error(id, 503, retry, now);
            self.pump(id, now);
        }
        let streams: Vec<StreamId> = self
            .upstreams
            .iter()
            .filter(|(_, u)| u.service == service)
            .map(|(s, _)| *s)
            .collect();
        for stream in streams {
            let waiting = self
                .fcgi_reply(stream)
                .and_then(|r| r.head_pending().then_some(r.conn).flatten());
            match waiting {
                Some(id) => {
                    self.log(format!("service {service}: down; the request gets 503"));
                    if let Some(reply) = self.fcgi_reply_mut(stream) {
                        reply.conn = None;
                    }
                    self.fcgi_drop(stream, now);
                    self.error(id, 503, retry, now);
                    slot_done(self, id);
                    self.pump(id, now);
                }
                None if self.fcgi_reply(stream).is_none() => self.fcgi_drop(stream, now),
                None => {}
            }
        }
    }

    /// A reload: idle streams whose service is gone or now lives at another address are
    /// closed (a request never reaches an old process through a pooled stream); requests
    /// in flight keep theirs.
    pub(super) fn fcgi_reloaded(&mut self, now: Now) {
        let stale: Vec<StreamId> = self
            .services
            .values()
            .flat_map(|p| p.idle.iter().copied())
            .filter(|s| {
                self.upstreams
                    .get(s)
                    .is_some_and(|u| self.config.service_addr(&u.service).as_ref() != Some(&u.addr))
            })
            .collect();
        for stream in stale {
            self.fcgi_drop(stream, now);
        }
    }

    /// Shutdown's grace is over: every stream is closed.
    pub(super) fn fcgi_close_all(&mut self, now: Now) {
        let streams: Vec<StreamId> = self.upstreams.keys().copied().collect();
        for stream in streams {
            self.fcgi_drop(stream, now);
        }
    }

    /// Shutting down with nothing in flight: idle pooled streams are closed.
    pub(super) fn fcgi_close_all_idle(&mut self) {
        for pool in self.services.values_mut() {
            for stream in std::mem::take(&mut pool.idle) {
                if self.upstreams.remove(&stream).is_some() {
                    pool.open = pool.open.saturating_sub(1);
                    self.effects.push_back(Effect::StreamClose { stream });
                }
            }
        }
    }
}

/// Feeds bytes from a service to its stream's record decoder.
fn up_push(server: &mut Server, stream: StreamId, data: &[u8]) {
    if let Some(up) = server.upstreams.get_mut(&stream) {
        up.decoder.push(data);
    }
}
