//! Gateways: the work of a CGI script or a FastCGI service for a request, owned by the
//! server through one token → owner map (RFC 3875; DESIGN.md §4, §7).
//!
//! # Theory of operation
//!
//! A request routed to a gateway becomes a `Job`: a script to run (`super::farm`) or a
//! service to ask (`super::fastcgi`). A connection's gateway state is one of:
//!
//! ```text
//!   Spooling ── request End ──┐          (chunked body: gathered first, so that
//!      │                      ▼           CONTENT_LENGTH can be given)
//!   (no body / Content-Length) ──► start ──► no room? ── Queued ── room frees ──┐
//!                                     │                                         │
//!                                     ▼◄────────────────────────────────────────┘
//!                                  Running(stream) ── Spawn | Connect → opened or Failed
//! ```
//!
//! Every running gateway is a `Gateway` record in one map keyed by its `StreamId` (the
//! token of its `Spawn` or `Connect`, named so for life): the pure exchange that speaks to
//! the stream (`super::exchange`: `CgiExchange` or `FcgiExchange`), the response side
//! (`super::reply::Reply`), and whether the stream is open yet. One family of stream
//! effects and inputs serves both kinds, one deadline index, one response path:
//!
//! ```text
//!   stream Input ─► Exchange::handle ─► progress? restart the `gateway` deadline
//!                   drive: poll_event ─► Output → reply_data · OutputEnd → reply_end ·
//!                                       Log → error log · Broken → 502 or cut ·
//!                                       Finished → close (or back to its pool)
//!                   pump_gateway: poll_op(room) ─► StreamWrite · StreamShutdownWrite ·
//!                                                  StreamRead
//! ```
//!
//! `room` is true while the response head is awaited or the client connection has less
//! than `OUTPUT_BUFFER` queued, so a slow client slows the gateway; the connection's pump
//! asks again when it drains.
//!
//! Back-pressure on the request body: while a gateway has more than `STDIN_BUFFER` bytes
//! queued for its stream, or waits for room, the server stops taking events from that
//! connection, so the bytes stay in the connection (which then stops asking to read). A
//! connection that is closing reads nothing more, so its events are taken regardless: a
//! refusal (`Rejected`) queued behind body bytes is handled when the connection's own
//! answer is handed over, not when a stuck script makes room.
//!
//! Ending (`stop_gateway`): a script is killed (`Kill`, its whole process group) and its
//! stream closed; a service's stream is closed (the service sees the connection go and
//! stops; a half-finished exchange never goes back to a pool). A stream still opening is
//! marked *doomed* and stopped as soon as its `Spawn` or `Connect` reports. Endings: the
//! exchange finished (a script's output, error and exit all seen; a service's
//! END_REQUEST), the `gateway` timeout (no output for that long: 504 if no head was sent,
//! else the connection is cut), a client that goes away, a request the protocol layer
//! refused before the gateway's head went out, bad output, a broken stream. Every ending
//! gives the gateway's place back (`forget`): the farm starts its next job, the service's
//! pool its next request.

use bytes::{Bytes, BytesMut};

use super::exchange::{Exchange, ExchangeEvent, StreamEvent};
use super::reply::Reply;
use super::{Completion, ConnId, Effect, Input, Server, SpawnSpec, UpstreamAddr};
use crate::config::ConfigRef;
use crate::http1::BodyKind;
use crate::ids::{StreamId, Token};
use crate::time::{Now, Time};

/// Most request-body bytes held for a gateway's stream before the server stops reading
/// the request.
pub const STDIN_BUFFER: usize = 64 * 1024;
/// Most response bytes queued on the connection before the gateway's output stops being
/// read.
pub const OUTPUT_BUFFER: u64 = 64 * 1024;
/// Local redirects (`Location: /path`) followed for one request.
pub const REDIRECTS_MAX: u8 = 10;

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
    Running(StreamId),
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

/// A running gateway: the record behind one `StreamId` in the owner map.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Gateway {
    /// The response side while it answers a request; `None` for an idle pooled stream,
    /// and once doomed.
    pub(super) reply: Option<Reply>,
    /// Its `Spawn` or `Connect` completed.
    pub(super) opened: bool,
    /// Stopped while opening: stopped for good as soon as the opening reports.
    pub(super) doomed: bool,
    /// The service and where its stream goes (`None` for a script).
    pub(super) service: Option<(String, UpstreamAddr)>,
    /// What speaks to the stream.
    pub(super) exchange: Exchange,
}

impl Gateway {
    /// A gateway whose stream is being opened.
    pub(super) fn opening(
        reply: Option<Reply>,
        service: Option<(String, UpstreamAddr)>,
        exchange: Exchange,
    ) -> Gateway {
        Gateway {
            reply,
            opened: false,
            doomed: false,
            service,
            exchange,
        }
    }

    /// The request it answers, if any.
    pub(super) fn conn(&self) -> Option<ConnId> {
        self.reply.as_ref().and_then(|r| r.conn)
    }

    /// What the error log calls it.
    fn label(&self) -> String {
        match (&self.reply, &self.service) {
            (Some(reply), _) => reply.label.clone(),
            (None, Some((name, _))) => format!("service {name}"),
            (None, None) => "cgi".to_string(),
        }
    }
}

/// The `CONTENT_LENGTH` a gateway is given for a request body of this kind (a chunked
/// body's is set once it has been gathered).
pub(super) fn content_length(body: BodyKind) -> Option<u64> {
    match body {
        BodyKind::None => None,
        BodyKind::Length(n) => Some(n),
        BodyKind::Chunked => Some(0),
    }
}

impl Server {
    /// A job for request `id` starts, or, for a chunked body, waits for the body to be
    /// gathered first (so that `CONTENT_LENGTH` can be given).
    pub(super) fn begin_job(&mut self, id: ConnId, body: BodyKind, job: Job, now: Now) {
        if body != BodyKind::Chunked {
            return self.start_or_queue(id, job, now);
        }
        if let Some(slot) = self.conns.get_mut(&id) {
            slot.conn.accept_body();
            slot.cur.get_mut().gateway = Some(GatewayState::Spooling(Box::new(Spool::new(job))));
        }
    }

    /// True while the connection's events must wait (see the module documentation).
    pub(super) fn body_blocked(&self, id: ConnId) -> bool {
        match self
            .conns
            .get(&id)
            .and_then(|s| s.cur.get().gateway.as_ref())
        {
            Some(GatewayState::Queued(_)) => true,
            Some(GatewayState::Running(s)) => self
                .gateways
                .get(s)
                .is_some_and(|g| g.exchange.body_queued() > STDIN_BUFFER),
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
            Some(GatewayState::Running(stream)) => {
                let stream = *stream;
                if let Some(g) = self.gateways.get_mut(&stream) {
                    g.exchange.body(data);
                    self.pump_gateway(stream, now);
                }
                true
            }
        }
    }

    /// A `Spawn` or `Connect` completed; returns false if `token` is not a gateway's.
    pub(super) fn gateway_opened(&mut self, token: Token, result: &Completion, now: Now) -> bool {
        let stream = StreamId(token);
        let Some(g) = self.gateways.get_mut(&stream) else {
            return false;
        };
        match result {
            Completion::Spawned | Completion::Connected => {
                g.opened = true;
                if g.doomed {
                    // Its request went away while it was being opened.
                    self.stop_gateway(stream, now);
                    return true;
                }
                if g.service.is_none() {
                    // A script's `gateway` timeout counts from its start (a slow spawn may
                    // have let the first deadline pass unarmed).
                    let conn = g.conn();
                    let deadline = now.mono.after(self.gateway_conf(conn).timeouts.gateway);
                    self.set_gateway_deadline(stream, Some(deadline));
                }
                self.pump_gateway(stream, now);
            }
            Completion::Failed(err) => {
                let (err, conn, label) = (*err, g.conn(), g.label());
                let script = g.service.is_none();
                // Nothing was created: no Kill, no StreamClose.
                g.doomed = true;
                self.forget(stream, now);
                if script {
                    self.log(format!("{label}: cannot start: {err:?}"));
                    if let Some(id) = conn {
                        self.error(id, super::farm::status_for(err), &[], now);
                        self.pump(id, now);
                    }
                } else {
                    self.log(format!("{label}: cannot connect: {err:?}"));
                    if let Some(id) = conn {
                        let status = super::fastcgi::connect_status(err);
                        let retry = [("Retry-After", "1".to_string())];
                        let headers = if status == 503 { &retry[..] } else { &[] };
                        self.error(id, status, headers, now);
                        slot_done(self, id);
                        self.pump(id, now);
                    }
                }
            }
            _ => {}
        }
        true
    }

    /// A stream input: the owner's exchange takes it, then the server acts on what the
    /// exchange says and issues what its stream is ready for.
    pub(super) fn stream_input(&mut self, input: Input, now: Now) {
        let Some((stream, event)) = StreamEvent::from_input(input) else {
            return;
        };
        let Some(g) = self.gateways.get_mut(&stream) else {
            return;
        };
        let conn = g.conn();
        let busy = g.reply.is_some();
        if g.exchange.handle(event) && busy {
            let deadline = now.mono.after(self.gateway_conf(conn).timeouts.gateway);
            self.set_gateway_deadline(stream, Some(deadline));
        }
        self.drive(stream, now);
        self.pump_gateway(stream, now);
        if let Some(id) = conn {
            self.pump(id, now);
        }
    }

    /// Acts on what the exchange of `stream` says, in order, while it is still there.
    fn drive(&mut self, stream: StreamId, now: Now) {
        loop {
            let Some(g) = self.gateways.get_mut(&stream) else {
                return;
            };
            if g.doomed {
                return;
            }
            let Some(event) = g.exchange.poll_event() else {
                return;
            };
            match event {
                ExchangeEvent::Output(data) => self.reply_data(stream, data, now),
                ExchangeEvent::OutputEnd => {
                    if let Some((service, _)) = &g.service {
                        let service = service.clone();
                        self.effects.push_back(Effect::ServiceAnswered { service });
                    }
                    self.reply_end(stream, now);
                }
                ExchangeEvent::Log(line) => {
                    let label = g.label();
                    self.log(format!("{label}: {line}"));
                }
                ExchangeEvent::Broken(why) => self.gateway_broken(stream, &why, now),
                ExchangeEvent::Finished { reusable } => {
                    if reusable && g.service.is_some() {
                        self.fcgi_release(stream, now);
                    } else {
                        self.effects.push_back(Effect::StreamClose { stream });
                        self.forget(stream, now);
                    }
                    return;
                }
            }
        }
    }

    /// Issues what the stream of `stream` is ready for (see the module documentation).
    pub(super) fn pump_gateway(&mut self, stream: StreamId, _now: Now) {
        let Some(g) = self.gateways.get(&stream) else {
            return;
        };
        if !g.opened || g.doomed {
            return;
        }
        let room = match &g.reply {
            None => true,
            Some(reply) => {
                reply.head_pending()
                    || reply
                        .conn
                        .and_then(|id| self.conns.get(&id))
                        .is_some_and(|s| s.conn.transmit_queued() < OUTPUT_BUFFER)
            }
        };
        let Some(g) = self.gateways.get_mut(&stream) else {
            return;
        };
        while let Some(op) = g.exchange.poll_op(room) {
            self.effects.push_back(op.effect(stream));
        }
    }

    /// The stream ended, failed or spoke nonsense before the response ended: 502 if
    /// nothing of the answer went out, else the response is cut.
    fn gateway_broken(&mut self, stream: StreamId, why: &str, now: Now) {
        match self.reply(stream) {
            Some(reply) if reply.conn.is_some() && reply.head_pending() => {
                self.gateway_failed(stream, &format!("{why} before answering; 502"), now);
            }
            Some(reply) if reply.conn.is_some() => {
                let label = reply.label.clone();
                self.log(format!("{label}: {why}; the response is cut short"));
                self.abort_gateway(stream, now);
            }
            _ => self.stop_gateway(stream, now),
        }
    }

    /// The reply of a gateway, if it is still known.
    pub(super) fn reply_mut(&mut self, stream: StreamId) -> Option<&mut Reply> {
        self.gateways.get_mut(&stream)?.reply.as_mut()
    }

    /// The reply of a gateway, if it is still known.
    pub(super) fn reply(&self, stream: StreamId) -> Option<&Reply> {
        self.gateways.get(&stream)?.reply.as_ref()
    }

    /// Stops a gateway and forgets it: a script is killed, a stream closed (see the module
    /// documentation); one still opening is doomed, detached from its request.
    pub(super) fn stop_gateway(&mut self, stream: StreamId, now: Now) {
        let Some(g) = self.gateways.get_mut(&stream) else {
            return;
        };
        if !g.opened {
            if !g.doomed {
                g.doomed = true;
                let reply = g.reply.take();
                self.detach(stream, reply);
            }
            return;
        }
        if g.service.is_none() {
            self.effects.push_back(Effect::Kill { stream });
        }
        self.effects.push_back(Effect::StreamClose { stream });
        self.forget(stream, now);
    }

    /// A reply taken from its gateway: out of the deadline index, and the request's
    /// gateway state cleared if it still names the gateway.
    pub(super) fn detach(&mut self, stream: StreamId, reply: Option<Reply>) {
        let Some(reply) = reply else {
            return;
        };
        self.set_deadline_index(stream, reply.deadline, None);
        let Some(id) = reply.conn else {
            return;
        };
        if let Some(cur) = self.conns.get_mut(&id).and_then(|s| s.cur.existing()) {
            if cur.gateway == Some(GatewayState::Running(stream)) {
                cur.gateway = None;
            }
        }
    }

    /// Drops a gateway's record and gives its place back: the farm's next job, or the
    /// service pool's next request, starts.
    pub(super) fn forget(&mut self, stream: StreamId, now: Now) {
        let Some(g) = self.gateways.remove(&stream) else {
            return;
        };
        self.detach(stream, g.reply);
        match g.service {
            None => {
                self.cgi_running -= 1;
                self.start_next_cgi(now);
            }
            Some((service, _)) => self.fcgi_forgotten(&service, stream, now),
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
            Some(GatewayState::Running(stream)) => {
                self.log_cut_response(stream, id, now);
                // Still running for this connection means its answer is not whole (the
                // answer's end clears the state); a reply already detached (refused) was
                // logged as such.
                if let Some(reply) = self.reply_mut(stream) {
                    if reply.conn.take().is_some() {
                        let label = reply.label.clone();
                        self.log(format!("{label}: client went away; stopping it"));
                    }
                }
                self.stop_gateway(stream, now);
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
        if let Some(GatewayState::Running(stream)) = &state {
            if let Some(reply) = self.reply_mut(*stream) {
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
    pub(super) fn set_gateway_deadline(&mut self, stream: StreamId, deadline: Option<Time>) {
        let Some(reply) = self.reply_mut(stream) else {
            return;
        };
        let old = std::mem::replace(&mut reply.deadline, deadline);
        self.set_deadline_index(stream, old, deadline);
    }

    fn set_deadline_index(&mut self, stream: StreamId, old: Option<Time>, new: Option<Time>) {
        if let Some(t) = old {
            self.gateway_deadlines.remove(&(t, stream));
        }
        if let Some(t) = new {
            self.gateway_deadlines.insert((t, stream));
        }
    }

    /// The `gateway` timeout: gateways that said nothing for that long.
    pub(super) fn gateway_timeouts(&mut self, now: Now) {
        let due: Vec<StreamId> = self
            .gateway_deadlines
            .iter()
            .take_while(|(t, _)| *t <= now.mono)
            .map(|(_, p)| *p)
            .collect();
        for stream in due {
            if self
                .gateways
                .get(&stream)
                .is_some_and(|g| !g.opened && g.service.is_none())
            {
                // Spawning does not time out (it is a local fork); keep waiting.
                self.set_gateway_deadline(stream, None);
                continue;
            }
            let Some(reply) = self.reply(stream) else {
                continue;
            };
            let (label, conn, head_pending) =
                (reply.label.clone(), reply.conn, reply.head_pending());
            self.log(format!(
                "{label}: no output for {:?}; stopping it",
                self.gateway_conf(conn).timeouts.gateway
            ));
            if let Some(id) = conn {
                self.log_cut_response(stream, id, now);
            }
            self.stop_gateway(stream, now);
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

    /// Every gateway is stopped (shutdown's grace is over).
    pub(super) fn stop_all_gateways(&mut self, now: Now) {
        let streams: Vec<StreamId> = self.gateways.keys().copied().collect();
        for stream in streams {
            self.stop_gateway(stream, now);
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
