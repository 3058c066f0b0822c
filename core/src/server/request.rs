//! What a request becomes: routing, then the document steps.
//!
//! ```text
//!  Head ─► method known? (501) ─► target normalised? (400) ─► OPTIONS * (200 + Allow)
//!            │
//!            ▼
//!        rules::route_quiet ─► Fail / Redirect / Status / Forbidden / Unauthorized /
//!            │                  NotFound: answered at once
//!            │ password checks first (`auth`): VerifyPassword … Verified ─► 401 / 429, or on
//!            │ File
//!            ▼
//!        GET/HEAD? (405 + Allow; OPTIONS → 200) ─► Open(path) ─► Completed:
//!            ├─ failed ────────► 404 / 403 / 503 / 500
//!            ├─ directory, no final slash ─► 301 to path + "/" (query kept)
//!            ├─ directory ─────► Open(dir + welcome[i]) for each i … none → 403
//!            └─ file ──► Accept excludes its type? (406, not for HEAD)
//!                        ├─ compressible and Accept-Encoding allows:
//!                        │     Open(file.br), then Open(file.gz): the first regular file wins
//!                        └─ answer: 200 / 206 / 304 / 412 / 416 (crate::document)
//! ```
//!
//! A request parked on an `Open` is a `Waiting`, found again by the effect's token. If the
//! connection goes away meanwhile, the token has nobody parked on it, and the file the
//! `Open` produced is closed as soon as it is reported.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::auth::AuthWait;
use super::status::StatusFormat;
use super::{Completion, ConnId, Effect, FileId, FileKind, FileMeta, IoError, Server};
use crate::cache::Cached;
use crate::document::negotiate::{self, Coding};
use crate::document::{self, FileAnswer, Piece};
use crate::http1::{Event, Method, RequestHead};
use crate::path;
use crate::rules::{self, Outcome, RouteRequest};
use crate::time::{Now, Time};

/// The methods a document answers.
pub const DOCUMENT_ALLOW: &str = "GET, HEAD, OPTIONS";

/// Where a document's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Source {
    /// An open file (sent with `sendfile`; closed when its bytes have left).
    File(FileId),
    /// The document cache.
    Memory(Bytes),
}

/// A request parked on an `Open`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Waiting {
    token: crate::ids::Token,
    /// Shared with the slot's `request` (the access log and local redirects read it there).
    req: Arc<RequestHead>,
    /// The normalised request path.
    url_path: Vec<u8>,
    query: Option<Bytes>,
    /// The file-system path being opened.
    fs_path: PathBuf,
    stage: Stage,
    /// The open file being read into the cache, with its metadata.
    reading: Option<(FileId, FileMeta)>,
    /// When the `Open` was issued: a cache entry counts as validated then (the version it
    /// holds was current at some moment after it), never later.
    opened_at: Time,
}

/// Which open a parked request waits for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Stage {
    /// The path the rules produced.
    Primary,
    /// The directory's welcome file number `i`.
    Welcome(usize),
    /// The directory's entries, for a listing.
    Listing,
    /// A precompressed variant `codings[next]` of the open `original`.
    Variant {
        /// The document's own path, to which each coding's suffix is added.
        base: PathBuf,
        original: Source,
        meta: FileMeta,
        mime: Cow<'static, str>,
        codings: Vec<Coding>,
        next: usize,
    },
}

impl Server {
    pub(super) fn on_event(&mut self, id: ConnId, event: Event, now: Now) {
        match event {
            Event::Head(req) => {
                self.counters.requests += 1;
                let req = Arc::new(req);
                if let Some(slot) = self.conns.get_mut(&id) {
                    let cur = slot.cur.get_mut();
                    cur.request = Some(Arc::clone(&req));
                    cur.redirects = 0;
                    cur.user = None;
                    cur.config = Some(self.config.clone());
                }
                self.route_request(id, req, now);
            }
            // A gateway takes the body; documents take none: it is read and dropped so the
            // connection can carry the next request.
            Event::Body(data) => {
                self.gateway_body(id, Some(data), now);
            }
            Event::End => {
                self.gateway_body(id, None, now);
            }
            Event::Trailers(_) => {}
            // The connection answered the request itself (its canned answer, logged here
            // as handed over), or could not: a response head had gone out, whose own
            // record stands, and the connection aborts or closes without another answer.
            Event::Rejected {
                error,
                answered,
                answer_bytes,
            } => {
                if answered {
                    self.counters.response(error.status);
                    if let Some(slot) = self.conns.get_mut(&id) {
                        // The head that failed was never a request, and nobody logged in
                        // with it (a user left from the request before, pipelined on
                        // this connection, is not this record's).
                        if let Some(cur) = slot.cur.existing() {
                            cur.request = None;
                            cur.user = None;
                        }
                    }
                    if let Some(line) = self.access_line(id, error.status, answer_bytes, now) {
                        self.effects.push_back(Effect::AccessLog { line });
                    }
                    // A script's answer can no longer be written: it is stopped.
                    self.gateway_refused(id, now);
                }
                self.abandon(id);
            }
            Event::PeerClosed => {
                // A client that hangs up while its script runs takes the script with it
                // (DESIGN.md §4). End of input cannot tell a half-close from a close; like
                // nginx, weir takes it as the client going away.
                self.gateway_peer_closed(id, now);
                self.abandon(id);
            }
        }
    }

    /// Forgets a parked request whose connection can no longer carry its answer.
    fn abandon(&mut self, id: ConnId) {
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        let state = slot.conn.state();
        // After EOF a complete request is still answered (the client half-closed).
        if matches!(
            state,
            crate::http1::ConnState::Closed
                | crate::http1::ConnState::Closing
                | crate::http1::ConnState::Lingering
        ) {
            if let Some(w) = slot.cur.existing().and_then(|c| c.waiting.take()) {
                self.release(*w);
            }
            let slot = self.conns.get_mut(&id);
            if let Some(w) = slot
                .and_then(|s| s.cur.existing())
                .and_then(|c| c.auth.take())
            {
                self.release_auth(id, *w);
            }
        }
    }

    /// Lets go of a parked request: its token is forgotten (a late completion closes what
    /// it opened) and a file it holds is closed.
    pub(super) fn release(&mut self, w: Waiting) {
        self.parked.remove(&w.token);
        if let Stage::Variant { original, .. } = &w.stage {
            self.close_source(original);
        }
        if let Some((file, _)) = w.reading {
            // Its ReadFile is still outstanding: the file is closed when that completes,
            // never under the shell's feet.
            self.orphan_reads.insert(w.token, file);
        }
    }

    pub(super) fn route_request(&mut self, id: ConnId, req: Arc<RequestHead>, now: Now) {
        match req.method {
            Method::Other(_) => return self.error(id, 501, &[], now),
            Method::Trace | Method::Connect => {
                return self.error(id, 405, &[("Allow", DOCUMENT_ALLOW.into())], now);
            }
            _ => {}
        }
        let Ok(target) = path::normalize(&req.target) else {
            return self.error(id, 400, &[], now);
        };
        if target.path == b"*" {
            if req.method == Method::Options {
                return self.options(id, now);
            }
            return self.error(id, 400, &[], now);
        }
        let Some(slot) = self.conns.get(&id) else {
            return;
        };
        let peer = slot.peer().ip();
        let routed = rules::route_quiet(
            self.conf(id),
            &RouteRequest {
                path: &target.path,
                query: target.query.as_deref(),
                host: req.host.as_deref(),
                peer,
                authorization: req.headers.get("authorization").map(|v| v.as_ref()),
            },
        );
        if let Some(slot) = self.conns.get_mut(&id) {
            let cur = slot.cur.get_mut();
            cur.extra_headers = routed.headers;
            cur.user = routed.user.map(String::into_boxed_str);
        }
        if !routed.checks.is_empty() {
            // Passwords first, off the event loop (`auth`); the outcome waits.
            let w = AuthWait::new(req, target, routed.outcome, routed.checks, peer);
            return self.authenticate(id, w, now);
        }
        self.dispatch(id, req, target, routed.outcome, now);
    }

    /// Carries out what routing decided for the request (its passwords, if any, checked).
    pub(super) fn dispatch(
        &mut self,
        id: ConnId,
        req: Arc<RequestHead>,
        target: path::Target,
        outcome: Outcome,
        now: Now,
    ) {
        match outcome {
            Outcome::File {
                path,
                search: Some(script),
                url_path,
            } if req.method == Method::Get && target.query.is_some() => {
                // OSU's search: a GET with a query on a document goes to the search script.
                let gw = rules::Gateway {
                    script: Some(script),
                    script_name: url_path,
                    path_info: Vec::new(),
                    env: Vec::new(),
                };
                self.start_cgi(
                    id,
                    &req,
                    target.query.as_deref().unwrap_or(b""),
                    &gw,
                    Some(&path),
                    now,
                );
            }
            Outcome::File { path, .. } => match req.method {
                Method::Get | Method::Head => {
                    let w = Waiting {
                        token: crate::ids::Token(0),
                        req,
                        url_path: target.path,
                        query: target.query,
                        fs_path: path,
                        stage: Stage::Primary,
                        reading: None,
                        opened_at: now.mono,
                    };
                    self.open(id, w, now);
                }
                Method::Options => self.options(id, now),
                _ => self.error(id, 405, &[("Allow", DOCUMENT_ALLOW.into())], now),
            },
            Outcome::Fail(status) => self.error(id, status, &[], now),
            Outcome::Redirect { location, status } => self.redirect(id, status, location, now),
            Outcome::Status => {
                let asked = |form: &[u8]| {
                    target
                        .query
                        .as_deref()
                        .is_some_and(|q| q.split(|&b| b == b'&').any(|p| p == form))
                };
                let format = if asked(b"format=prometheus") {
                    StatusFormat::Prometheus
                } else if asked(b"json")
                    || asked(b"format=json")
                    || req.headers.get("accept").is_some_and(|a| {
                        negotiate::accept_allows(a, "application/json")
                            && !negotiate::accept_allows(a, "text/plain")
                    })
                {
                    StatusFormat::Json
                } else {
                    StatusFormat::Text
                };
                // The whole server's figures live in the shell (every worker publishes
                // its own): ask for them, and answer when they come.
                let token = self.token();
                self.status_parked.insert(token, (id, format));
                self.effects.push_back(Effect::Status { token });
            }
            Outcome::NotFound => self.error(id, 404, &[], now),
            Outcome::Forbidden | Outcome::Escapes => self.error(id, 403, &[], now),
            Outcome::Unauthorized { realm } => self.unauthorized(id, realm, now),
            Outcome::Cgi(gw) => self.start_cgi(
                id,
                &req,
                target.query.as_deref().unwrap_or(b""),
                &gw,
                None,
                now,
            ),
            Outcome::Service { name, gateway } => self.start_fcgi(
                id,
                &req,
                target.query.as_deref().unwrap_or(b""),
                &name,
                &gateway,
                now,
            ),
        }
    }

    fn options(&mut self, id: ConnId, now: Now) {
        let mut head = crate::http1::ResponseHead::new(200, crate::http1::ResponseBody::Empty);
        head.headers.push("Allow", DOCUMENT_ALLOW);
        self.respond(id, head, Vec::new(), None, now);
    }

    /// Opens `w.fs_path` for the request, or answers at once from a fresh cache entry.
    fn open(&mut self, id: ConnId, mut w: Waiting, now: Now) {
        if self.cache_usable(id) {
            let hit = self
                .cache
                .as_mut()
                .and_then(|c| c.fresh(&w.fs_path, now.mono));
            match hit {
                Some(Cached::File { meta, body }) => {
                    return self.opened(id, w, Source::Memory(body), meta, now)
                }
                Some(Cached::Dir(meta)) => {
                    return self.opened(id, w, Source::Memory(Bytes::new()), meta, now)
                }
                Some(Cached::Missing) => return self.open_failed(id, w, IoError::NotFound, now),
                None => {}
            }
        }
        let Some(path) = self.shell_path(&w.fs_path) else {
            return self.open_failed(id, w, IoError::NotFound, now);
        };
        let token = self.token();
        w.token = token;
        w.opened_at = now.mono;
        self.effects.push_back(Effect::Open { token, path });
        self.parked.insert(token, id);
        if let Some(slot) = self.conns.get_mut(&id) {
            slot.cur.get_mut().waiting = Some(Box::new(w));
        }
    }

    pub(super) fn completed(&mut self, token: crate::ids::Token, result: Completion, now: Now) {
        if self.gateway_opened(token, &result, now) || self.verify_completed(token, &result, now) {
            return;
        }
        if let Some((id, format)) = self.status_parked.remove(&token) {
            if let Completion::Status(status) = result {
                self.respond_bytes(
                    id,
                    200,
                    format.media_type(),
                    &[("Cache-Control", "no-store".into())],
                    Bytes::from(status.render(format, now)),
                    now,
                );
            } else {
                self.error(id, 500, &[], now);
            }
            return self.pump(id, now);
        }
        if let Some(file) = self.orphan_reads.remove(&token) {
            self.effects.push_back(Effect::CloseFile { file });
            return;
        }
        let opened = matches!(result, Completion::Opened(_)).then_some(FileId(token));
        let waiting = self.parked.remove(&token).and_then(|id| {
            let slot = self.conns.get_mut(&id)?;
            let cur = slot.cur.existing()?;
            match cur.waiting.take() {
                Some(w) if w.token == token => Some((id, *w)),
                other => {
                    cur.waiting = other;
                    None
                }
            }
        });
        let Some((id, w)) = waiting else {
            // Nobody waits for it any more (the connection closed): release what it opened.
            if let Some(file) = opened {
                self.effects.push_back(Effect::CloseFile { file });
            }
            return;
        };
        match result {
            Completion::Opened(meta) => self.opened_fresh(id, w, FileId(token), meta, now),
            Completion::Data(bytes) => self.read_done(id, w, bytes, now),
            Completion::Failed(err) => {
                if let Some((file, _)) = w.reading {
                    self.effects.push_back(Effect::CloseFile { file });
                } else if err == IoError::NotFound && self.cache_usable(id) {
                    if let Some(c) = self.cache.as_mut() {
                        c.note_open(&w.fs_path, None, w.opened_at);
                    }
                }
                self.open_failed(id, w, err, now);
            }
            // Only a shell bug could answer an Open with Spawned, Connected or Status.
            Completion::Spawned
            | Completion::Connected
            | Completion::Status(_)
            | Completion::Verified(_) => {
                self.error(id, 500, &[], now);
            }
            Completion::Listing(entries) => {
                let page = crate::document::listing::render(&w.url_path, &entries);
                self.respond_bytes(
                    id,
                    200,
                    "text/html; charset=utf-8",
                    &[],
                    Bytes::from(page),
                    now,
                );
            }
        }
        self.pump(id, now);
    }

    fn open_failed(&mut self, id: ConnId, w: Waiting, err: IoError, now: Now) {
        match w.stage {
            Stage::Welcome(i) if err == IoError::NotFound => {
                if i + 1 < self.conf(id).welcome.len() {
                    self.try_welcome(id, w, i + 1, now);
                } else {
                    self.no_welcome(id, w, now);
                }
            }
            Stage::Variant {
                base,
                original,
                meta,
                mime,
                codings,
                next,
            } => {
                self.next_variant(
                    id,
                    w.req,
                    w.url_path,
                    w.query,
                    base,
                    original,
                    meta,
                    mime,
                    codings,
                    next + 1,
                    now,
                );
            }
            _ => {
                let status = match err {
                    IoError::NotFound => 404,
                    IoError::PermissionDenied => 403,
                    IoError::Exhausted => 503,
                    IoError::Reset | IoError::Refused | IoError::Other => 500,
                };
                self.error(id, status, &[], now);
            }
        }
    }

    /// A real open completed: consult and fill the cache, then go on as `opened`.
    fn opened_fresh(&mut self, id: ConnId, mut w: Waiting, file: FileId, meta: FileMeta, now: Now) {
        if !self.cache_usable(id) {
            return self.opened(id, w, Source::File(file), meta, now);
        }
        let Some(cache) = self.cache.as_mut() else {
            return self.opened(id, w, Source::File(file), meta, now);
        };
        if meta.kind != FileKind::File || !cache.keeps(meta.len) {
            cache.note_open(&w.fs_path, Some(&meta), w.opened_at);
            return self.opened(id, w, Source::File(file), meta, now);
        }
        if let Some(body) = cache.same_version(&w.fs_path, &meta) {
            // Stale but unchanged: fresh again, no read needed.
            cache.insert(
                &w.fs_path,
                Cached::File {
                    meta,
                    body: body.clone(),
                },
                w.opened_at,
            );
            self.effects.push_back(Effect::CloseFile { file });
            return self.opened(id, w, Source::Memory(body), meta, now);
        }
        if meta.len == 0 {
            cache.insert(
                &w.fs_path,
                Cached::File {
                    meta,
                    body: Bytes::new(),
                },
                w.opened_at,
            );
            self.effects.push_back(Effect::CloseFile { file });
            return self.opened(id, w, Source::Memory(Bytes::new()), meta, now);
        }
        // Read it whole into the cache, then answer from memory.
        let token = self.token();
        w.token = token;
        w.reading = Some((file, meta));
        self.effects.push_back(Effect::ReadFile {
            token,
            file,
            offset: 0,
            len: meta.len,
        });
        self.parked.insert(token, id);
        if let Some(slot) = self.conns.get_mut(&id) {
            slot.cur.get_mut().waiting = Some(Box::new(w));
        }
    }

    /// A `ReadFile` for the cache completed.
    fn read_done(&mut self, id: ConnId, mut w: Waiting, bytes: Bytes, now: Now) {
        let Some((file, meta)) = w.reading.take() else {
            return self.error(id, 500, &[], now);
        };
        self.effects.push_back(Effect::CloseFile { file });
        if bytes.len() as u64 != meta.len {
            // The file changed while it was read: this read is no version at all.
            self.log(format!(
                "{}: changed while being read; try again",
                w.fs_path.display()
            ));
            return self.error(id, 503, &[("Retry-After", "1".into())], now);
        }
        if let Some(c) = self.cache.as_mut() {
            c.insert(
                &w.fs_path,
                Cached::File {
                    meta,
                    body: bytes.clone(),
                },
                w.opened_at,
            );
        }
        self.opened(id, w, Source::Memory(bytes), meta, now);
    }

    /// True if requests on this connection may use the cache (not a `nocache` port).
    fn cache_usable(&self, id: ConnId) -> bool {
        self.cache.is_some()
            && self.conns.get(&id).is_some_and(|s| {
                !self.conf(id).nocache.iter().any(|n| {
                    n.port() == s.local().port()
                        && (n.ip() == s.local().ip() || n.ip().is_unspecified())
                })
            })
    }

    fn close_source(&mut self, src: &Source) {
        if let Source::File(file) = src {
            self.effects.push_back(Effect::CloseFile { file: *file });
        }
    }

    fn opened(&mut self, id: ConnId, w: Waiting, file: Source, meta: FileMeta, now: Now) {
        if let Stage::Variant {
            base,
            original,
            meta: original_meta,
            mime,
            codings,
            next,
        } = w.stage
        {
            if meta.kind == FileKind::File {
                // The variant is served; the original is not needed.
                self.close_source(&original);
                return self.serve_file(
                    id,
                    &w.req,
                    file,
                    &meta,
                    &mime,
                    Some(codings[next]),
                    true,
                    now,
                );
            }
            self.close_source(&file);
            return self.next_variant(
                id,
                w.req,
                w.url_path,
                w.query,
                base,
                original,
                original_meta,
                mime,
                codings,
                next + 1,
                now,
            );
        }
        match meta.kind {
            FileKind::File => {
                let conf = self.conf(id);
                let mime = negotiate::content_type(&w.fs_path, &conf.types);
                if let Some(script) = rules::presentation_for(conf, w.req.host.as_deref(), &mime) {
                    // OSU's presentation rule: the document is handed to a script instead.
                    self.close_source(&file);
                    let gw = rules::Gateway {
                        script: Some(script),
                        script_name: Vec::new(),
                        path_info: w.url_path.clone(),
                        env: Vec::new(),
                    };
                    let query = w.query.clone().unwrap_or_default();
                    return self.start_cgi(id, &w.req, &query, &gw, Some(&w.fs_path), now);
                }
                if w.req.method != Method::Head
                    && w.req
                        .headers
                        .get("accept")
                        .is_some_and(|a| !negotiate::accept_allows(a, &mime))
                {
                    self.close_source(&file);
                    return self.error(id, 406, &[], now);
                }
                let codings = if negotiate::compressible(&mime) {
                    negotiate::accepted_codings(
                        w.req.headers.get("accept-encoding").map(|v| v.as_ref()),
                    )
                } else {
                    Vec::new()
                };
                let vary = negotiate::compressible(&mime);
                if codings.is_empty() {
                    return self.serve_file(id, &w.req, file, &meta, &mime, None, vary, now);
                }
                self.next_variant(
                    id, w.req, w.url_path, w.query, w.fs_path, file, meta, mime, codings, 0, now,
                );
            }
            FileKind::Dir if w.stage == Stage::Primary => {
                self.close_source(&file);
                if !w.url_path.ends_with(b"/") {
                    let mut location = escape_path(&w.url_path);
                    location.push('/');
                    if let Some(q) = &w.query {
                        location.push('?');
                        location.push_str(&String::from_utf8_lossy(q));
                    }
                    return self.redirect(id, 301, location, now);
                }
                if self.conf(id).welcome.is_empty() {
                    return self.no_welcome(id, w, now);
                }
                self.try_welcome(id, w, 0, now);
            }
            // A welcome "file" that is a directory, or a device: not served.
            FileKind::Dir | FileKind::Other => {
                self.close_source(&file);
                self.error(id, 403, &[], now);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn next_variant(
        &mut self,
        id: ConnId,
        req: Arc<RequestHead>,
        url_path: Vec<u8>,
        query: Option<Bytes>,
        fs_path: PathBuf,
        original: Source,
        meta: FileMeta,
        mime: Cow<'static, str>,
        codings: Vec<Coding>,
        next: usize,
        now: Now,
    ) {
        let Some(coding) = codings.get(next).copied() else {
            return self.serve_file(id, &req, original, &meta, &mime, None, true, now);
        };
        let mut variant = fs_path.clone().into_os_string();
        variant.push(coding.suffix());
        let w = Waiting {
            token: crate::ids::Token(0),
            req,
            url_path,
            query,
            fs_path: PathBuf::from(variant),
            stage: Stage::Variant {
                base: fs_path,
                original,
                meta,
                mime,
                codings,
                next,
            },
            reading: None,
            opened_at: Time(0),
        };
        self.open(id, w, now);
    }

    // The `Cow` says whether the type is static (sent without a copy).
    #[allow(clippy::too_many_arguments, clippy::ptr_arg)]
    fn serve_file(
        &mut self,
        id: ConnId,
        req: &RequestHead,
        file: Source,
        meta: &FileMeta,
        mime: &Cow<'static, str>,
        coding: Option<Coding>,
        vary: bool,
        now: Now,
    ) {
        let (head, body) = document::answer(&FileAnswer {
            method: &req.method,
            headers: &req.headers,
            meta,
            mime,
            coding,
            vary,
        });
        match file {
            Source::File(f) => self.respond(id, head, body, Some(f), now),
            Source::Memory(bytes) => {
                let body = body
                    .into_iter()
                    .map(|p| match p {
                        // unwrap-free: ranges come from `document::answer`, inside the body.
                        Piece::File { offset, len } => {
                            Piece::Bytes(bytes.slice(offset as usize..(offset + len) as usize))
                        }
                        other => other,
                    })
                    .collect();
                self.respond(id, head, body, None, now);
            }
        }
    }

    /// A directory without a welcome file: its listing when `listing on`, else 403.
    fn no_welcome(&mut self, id: ConnId, mut w: Waiting, now: Now) {
        if !self.conf(id).listing {
            return self.error(id, 403, &[], now);
        }
        if matches!(w.stage, Stage::Welcome(_)) {
            w.fs_path = w.fs_path.parent().map(PathBuf::from).unwrap_or_default();
        }
        w.stage = Stage::Listing;
        let Some(path) = self.shell_path(&w.fs_path) else {
            return self.error(id, 404, &[], now);
        };
        let token = self.token();
        w.token = token;
        self.effects.push_back(Effect::ReadDir { token, path });
        self.parked.insert(token, id);
        if let Some(slot) = self.conns.get_mut(&id) {
            slot.cur.get_mut().waiting = Some(Box::new(w));
        }
    }

    fn try_welcome(&mut self, id: ConnId, mut w: Waiting, i: usize, now: Now) {
        let dir = match w.stage {
            Stage::Primary => w.fs_path.clone(),
            _ => w.fs_path.parent().map(PathBuf::from).unwrap_or_default(),
        };
        w.fs_path = dir.join(&self.conf(id).welcome[i]);
        w.stage = Stage::Welcome(i);
        self.open(id, w, now);
    }
}

/// A normalised path, percent-encoded again for a `Location` field.
fn escape_path(path: &[u8]) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::percent_encode(path, KEEP).to_string()
}
