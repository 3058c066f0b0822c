//! The CGI farm: a request routed to a script becomes a job, run when the farm has room
//! (RFC 3875; DESIGN.md §4).
//!
//! # Theory of operation
//!
//! A request routed to a script becomes a `Job` (the program, its environment, its working
//! directory). The farm runs at most `limit cgi=N` jobs at once; the rest wait in a bounded
//! queue (as many again as the farm runs: beyond that, waiting would only make the answer
//! later, not better), and past that they get 503. A chunked request body is gathered
//! first (`Spooling`), so that `CONTENT_LENGTH` can be given.
//!
//! ```text
//!   Spooling ── request End ──┐
//!   (no body / Content-Length) ──► start ──► farm full? ── Queued ── a place frees ──┐
//!                                     │                                             │
//!                                     ▼◄────────────────────────────────────────────┘
//!                          Spawn → Running(stream): a `CgiExchange` (`super::exchange`)
//! ```
//!
//! Under `chroot`, the shell gets the script, its directory and the path variables as
//! seen inside. Every ending of a script (`Server::forget`) frees its place and starts the
//! next queued job (`start_next_cgi`).

use std::path::{Path, PathBuf};

use super::exchange::{CgiExchange, Exchange};
use super::gateway::{content_length, Gateway, GatewayState, Job, JobKind};
use super::reply::Reply;
use super::{ConnId, Effect, IoError, Server, SpawnSpec};
use crate::cgi::env::{self, CgiRequest};
use crate::http1::{BodyKind, RequestHead};
use crate::ids::StreamId;
use crate::rules::Gateway as Route;
use crate::time::Now;

/// The answer when a script cannot be started.
pub(super) fn status_for(err: IoError) -> u16 {
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
        gw: &Route,
        path_translated: Option<&Path>,
        now: Now,
    ) {
        let Some(script) = gw.script.clone() else {
            return self.error(id, 500, &[], now);
        };
        let Some(slot) = self.conns.get(&id) else {
            return;
        };
        let content_length = content_length(req.body);
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
        self.begin_job(id, req.body, job, now);
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
        let stream = StreamId(token);
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
        slot.cur.get_mut().gateway = Some(GatewayState::Running(stream));
        let exchange = CgiExchange::new(job.spooled, job.streams_body);
        let reply = Reply::new(id, job.label, nph);
        self.cgi_running += 1;
        self.gateways.insert(
            stream,
            Gateway::opening(Some(reply), None, Exchange::Cgi(exchange)),
        );
        self.set_gateway_deadline(stream, Some(now.mono.after(self.conf(id).timeouts.gateway)));
        self.effects.push_back(Effect::Spawn { token, spec });
    }

    /// A place in the farm is free: the first job still waiting for one starts.
    pub(super) fn start_next_cgi(&mut self, now: Now) {
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
}
