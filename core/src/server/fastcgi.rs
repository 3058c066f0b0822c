//! FastCGI services: a request handed to a service as a FastCGI exchange on a stream
//! (DESIGN.md §4, §7; the record codec is `crate::fcgi`).
//!
//! # Theory of operation
//!
//! A request that an `exec … service=NAME` rule routes becomes a `Job` of kind `Fcgi`
//! (its meta-variables are the CGI ones, `cgi::env`), and the job becomes an exchange
//! (`super::exchange::FcgiExchange`, which speaks the records) on a stream to the
//! service. Streams are the core's one family of upstream effects: `Connect` (named by
//! its token for life, `StreamId`), then at most one `StreamRead` and one `StreamWrite`
//! outstanding, and `StreamClose`. This module keeps each service's pool: idle streams,
//! the count of open ones, the requests waiting for one.
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

use super::exchange::{Exchange, FcgiExchange};
use super::gateway::{content_length, slot_done, Gateway, GatewayState, Job, JobKind};
use super::reply::Reply;
use super::{Availability, ConnId, Effect, IoError, Server};
use crate::cgi::env::{self, CgiRequest};
use crate::http1::{BodyKind, RequestHead};
use crate::ids::StreamId;
use crate::rules::Gateway as Route;
use crate::time::Now;

/// Requests waiting for a stream to one service, per worker; beyond that, 503.
const QUEUE_MAX: usize = 1024;

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
pub(super) fn connect_status(err: IoError) -> u16 {
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
        gw: &Route,
        now: Now,
    ) {
        let Some(slot) = self.conns.get(&id) else {
            return;
        };
        let content_length = content_length(req.body);
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
        self.begin_job(id, req.body, job, now);
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
            self.gateways
                .get(s)
                .and_then(|g| g.service.as_ref())
                .is_some_and(|(_, a)| Some(a) == addr.as_ref())
        });
        if let Some(i) = reuse {
            let stream = pool.idle.remove(i);
            return self.fcgi_attach(stream, id, job, now);
        }
        if pool.open >= cap && !pool.idle.is_empty() {
            // Every place is taken, some by idle streams to where the service no longer
            // is for this request (a reload moved it): the oldest makes room, or the
            // request would wait behind a stream nobody will use again.
            let stale = pool.idle[0];
            self.stop_gateway(stale, now);
            return self.fcgi_start(id, job, now);
        }
        if pool.open < cap {
            let Some(addr) = addr else {
                self.log(format!("{}: not declared", job.label));
                return self.error(id, 500, &[], now);
            };
            pool.open += 1;
            let token = self.token();
            let stream = StreamId(token);
            self.gateways.insert(
                stream,
                Gateway::opening(
                    None,
                    Some((service, addr.clone())),
                    Exchange::Fcgi(FcgiExchange::new()),
                ),
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
        let (_, keep) = self.fcgi_share(&service);
        let deadline = now.mono.after(self.conf(id).timeouts.gateway);
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        if job.streams_body {
            slot.conn.accept_body();
        }
        slot.cur.get_mut().gateway = Some(GatewayState::Running(stream));
        let Some(g) = self.gateways.get_mut(&stream) else {
            return;
        };
        g.reply = Some(Reply::new(id, job.label, false));
        if let Exchange::Fcgi(x) = &mut g.exchange {
            x.start(&params, job.spooled, job.streams_body, keep);
        }
        self.set_gateway_deadline(stream, Some(deadline));
        self.pump_gateway(stream, now);
    }

    /// The exchange is over and the stream clean: it waits in the pool for the next
    /// request (which may be waiting already).
    pub(super) fn fcgi_release(&mut self, stream: StreamId, now: Now) {
        let Some(g) = self.gateways.get_mut(&stream) else {
            return;
        };
        let reply = g.reply.take();
        let Some((service, addr)) = g.service.clone() else {
            return;
        };
        self.detach(stream, reply);
        if self.config.service_addr(&service).as_ref() != Some(&addr) {
            // A reload moved the service while this exchange ran: the stream goes to the
            // old place, where no request of the new configuration may be sent.
            self.effects.push_back(Effect::StreamClose { stream });
            return self.forget(stream, now);
        }
        let pool = self.services.entry(service.clone()).or_default();
        pool.idle.push(stream);
        self.pump_gateway(stream, now);
        self.fcgi_next(&service, now);
    }

    /// A stream to `service` was forgotten: its place is free for the next request.
    pub(super) fn fcgi_forgotten(&mut self, service: &str, stream: StreamId, now: Now) {
        if let Some(pool) = self.services.get_mut(service) {
            pool.open = pool.open.saturating_sub(1);
            pool.idle.retain(|s| *s != stream);
        }
        self.fcgi_next(service, now);
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
            .gateways
            .iter()
            .filter(|(_, g)| g.service.as_ref().is_some_and(|(s, _)| *s == service))
            .map(|(s, _)| *s)
            .collect();
        for stream in streams {
            let waiting = self
                .reply(stream)
                .and_then(|r| r.head_pending().then_some(r.conn).flatten());
            match waiting {
                Some(id) => {
                    self.log(format!("service {service}: down; the request gets 503"));
                    if let Some(reply) = self.reply_mut(stream) {
                        reply.conn = None;
                    }
                    self.stop_gateway(stream, now);
                    self.error(id, 503, retry, now);
                    slot_done(self, id);
                    self.pump(id, now);
                }
                None if self.reply(stream).is_none() => self.stop_gateway(stream, now),
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
                self.gateways
                    .get(s)
                    .and_then(|g| g.service.as_ref())
                    .is_some_and(|(name, addr)| {
                        self.config.service_addr(name).as_ref() != Some(addr)
                    })
            })
            .collect();
        for stream in stale {
            self.stop_gateway(stream, now);
        }
    }

    /// Shutting down with nothing in flight: idle pooled streams are closed.
    pub(super) fn fcgi_close_all_idle(&mut self) {
        for pool in self.services.values_mut() {
            for stream in std::mem::take(&mut pool.idle) {
                if self.gateways.remove(&stream).is_some() {
                    pool.open = pool.open.saturating_sub(1);
                    self.effects.push_back(Effect::StreamClose { stream });
                }
            }
        }
    }
}
