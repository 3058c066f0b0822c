//! The server core: connections, requests and documents, spoken as `Input`s and `Effect`s.
//!
//! # Theory of operation
//!
//! The `Server` owns one `http1::Conn` per connection (a `Slot`), the configuration, and the
//! requests it has parked on effects. It never performs I/O: each `handle` call applies one
//! input, then *pumps* the connections it touched, and the pump is the only place that turns
//! a connection's wishes into effects:
//!
//! ```text
//!   Input ──► apply to the Conn ──► pump(conn):
//!                                     1. drain conn.poll_event(): route new requests
//!                                     2. no Read outstanding and read_budget > 0 → Read
//!                                     3. no Send outstanding and pending_transmit → Send
//!                                     4. files whose bytes have all left → CloseFile
//!                                     5. Lingering → ShutdownWrite (once); Closed → Close
//!                                     6. re-index the connection's deadline
//! ```
//!
//! A request for a document walks these steps:
//!
//! ```text
//!  Head ─► method? ─► 405/501/OPTIONS answered at once
//!            │GET/HEAD
//!            ▼
//!        normalise target (400 on failure) ─► Open(root + path) ─► Completed
//!            ┌──────────────────────────────────────────────────────┘
//!            ├─ file ─────────► 200/304 head, body = the open file's range
//!            ├─ directory, no final slash ─► 301 to path + "/" (query kept)
//!            ├─ directory ────► Open(dir + next welcome file) … none left → 403
//!            └─ failed ───────► 404 / 403 / 503 / 500
//! ```
//!
//! A file stays open until every byte the response queued for it has been transmitted: the
//! server counts bytes transmitted per connection and remembers, for each open file, the
//! count at which its response ends. Pipelined responses may queue behind it meanwhile.
//!
//! Deadlines: each connection's earliest `Conn::poll_timeout` is indexed in a `BTreeSet` of
//! `(Time, ConnId)`, so `poll_timeout` is O(log n) and `handle_timeout` visits only the
//! connections that are due. Shutdown adds one more deadline, the end of the grace time.

pub mod io;
pub mod static_file;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;

use bytes::Bytes;

use crate::chunk::Chunk;
use crate::config::ConfigRef;
use crate::http1::{
    reason_phrase, Conn, ConnState, Event, Method, RequestHead, ResponseBody, ResponseHead,
};
use crate::ids::{ConnId, FileId, Token};
use crate::path::{self, Target};
use crate::time::{Now, Time};
pub use io::{Completion, Effect, FileKind, FileMeta, Input, IoError};

/// The methods a static document answers.
const STATIC_ALLOW: &str = "GET, HEAD, OPTIONS";

/// The server core. See the module documentation for how it works.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Server {
    config: ConfigRef,
    conns: BTreeMap<ConnId, Slot>,
    /// Requests parked on an `Open`, by token.
    parked: BTreeMap<Token, ConnId>,
    effects: VecDeque<Effect>,
    deadlines: BTreeSet<(Time, ConnId)>,
    next_token: u64,
    accept_paused: bool,
    shutdown: Option<Time>,
    exited: bool,
}

/// One connection and what the server is doing for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Slot {
    conn: Conn,
    reading: bool,
    /// Length of the chunk an outstanding `Send` carries.
    sending: Option<u64>,
    shutdown_sent: bool,
    /// Bytes transmitted on this connection so far.
    transmitted: u64,
    /// Open files, each with the `transmitted` count at which its response has left.
    files: VecDeque<(FileId, u64)>,
    /// The request waiting on an effect, if any.
    waiting: Option<Waiting>,
    deadline: Option<Time>,
}

/// A request parked on an `Open`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Waiting {
    token: Token,
    req: RequestHead,
    target: Target,
    /// The file-system path being opened.
    fs_path: PathBuf,
    /// For a directory: the index of the welcome file being tried.
    welcome: Option<usize>,
}

impl Server {
    /// A server with no connections.
    #[must_use]
    pub fn new(config: ConfigRef, _now: Now) -> Server {
        Server {
            config,
            conns: BTreeMap::new(),
            parked: BTreeMap::new(),
            effects: VecDeque::new(),
            deadlines: BTreeSet::new(),
            next_token: 1,
            accept_paused: false,
            shutdown: None,
            exited: false,
        }
    }

    /// Applies one input. Drain `poll_effect` afterwards.
    pub fn handle(&mut self, input: Input, now: Now) {
        match input {
            Input::Accepted { conn, .. } => self.accepted(conn, now),
            Input::Received { conn, data } => {
                if let Some(slot) = self.conns.get_mut(&conn) {
                    slot.reading = false;
                    slot.conn.receive(&data, now);
                    self.pump(conn, now);
                }
            }
            Input::PeerClosed { conn } => {
                if let Some(slot) = self.conns.get_mut(&conn) {
                    slot.reading = false;
                    slot.conn.receive_eof(now);
                    self.pump(conn, now);
                }
            }
            Input::Sent { conn, n } => {
                if let Some(slot) = self.conns.get_mut(&conn) {
                    let len = slot.sending.take().unwrap_or(0);
                    let n = n.min(len);
                    slot.transmitted += n;
                    slot.conn.advance_transmit(n, now);
                    self.pump(conn, now);
                }
            }
            Input::ConnFailed { conn, .. } => {
                if let Some(slot) = self.conns.get_mut(&conn) {
                    slot.reading = false;
                    slot.sending = None;
                    slot.conn.abort();
                    self.pump(conn, now);
                }
            }
            Input::Completed { token, result } => self.completed(token, result, now),
            Input::Shutdown => self.begin_shutdown(now),
        }
        self.check_exit();
    }

    /// The next effect to carry out, or `None` when there is nothing more to do now.
    #[must_use]
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// The earliest time at which `handle_timeout` has work to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        let conn = self.deadlines.first().map(|(t, _)| *t);
        match (conn, self.shutdown) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires every deadline at or before `now`. Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Now) {
        let due: Vec<ConnId> = self
            .deadlines
            .iter()
            .take_while(|(t, _)| *t <= now.mono)
            .map(|(_, c)| *c)
            .collect();
        for id in due {
            if let Some(slot) = self.conns.get_mut(&id) {
                slot.conn.handle_timeout(now);
                self.pump(id, now);
            }
        }
        if self.shutdown.is_some_and(|t| t <= now.mono) {
            // Grace is over: whatever is still in flight is cut off.
            let ids: Vec<ConnId> = self.conns.keys().copied().collect();
            for id in ids {
                if let Some(slot) = self.conns.get_mut(&id) {
                    slot.conn.abort();
                }
                self.pump(id, now);
            }
        }
        self.check_exit();
    }

    /// Number of open connections.
    #[must_use]
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    fn accepted(&mut self, id: ConnId, now: Now) {
        if self.shutdown.is_some() {
            self.effects.push_back(Effect::Close { conn: id });
            return;
        }
        let conn = Conn::new(&self.config.limits, &self.config.timeouts, now);
        self.conns.insert(
            id,
            Slot {
                conn,
                reading: false,
                sending: None,
                shutdown_sent: false,
                transmitted: 0,
                files: VecDeque::new(),
                waiting: None,
                deadline: None,
            },
        );
        if self.conns.len() >= self.config.limits.connections_max && !self.accept_paused {
            self.accept_paused = true;
            self.effects.push_back(Effect::PauseAccept);
        }
        self.pump(id, now);
    }

    fn begin_shutdown(&mut self, now: Now) {
        if self.shutdown.is_some() {
            return;
        }
        self.shutdown = Some(now.mono.after(self.config.timeouts.grace));
        if !self.accept_paused {
            self.accept_paused = true;
            self.effects.push_back(Effect::PauseAccept);
        }
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            if let Some(slot) = self.conns.get_mut(&id) {
                slot.conn.close(now);
            }
            self.pump(id, now);
        }
    }

    fn check_exit(&mut self) {
        if self.shutdown.is_some() && self.conns.is_empty() && !self.exited {
            self.exited = true;
            self.shutdown = None;
            self.effects.push_back(Effect::Exit { code: 0 });
        }
    }

    fn token(&mut self) -> Token {
        let t = Token(self.next_token);
        self.next_token += 1;
        t
    }

    /// Turns the connection's state into effects (see the module documentation).
    fn pump(&mut self, id: ConnId, now: Now) {
        loop {
            let Some(slot) = self.conns.get_mut(&id) else {
                return;
            };
            let Some(event) = slot.conn.poll_event() else {
                break;
            };
            self.on_event(id, event, now);
        }
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        let state = slot.conn.state();
        if state == ConnState::Closed {
            self.effects.push_back(Effect::Close { conn: id });
            for (file, _) in slot.files.drain(..) {
                self.effects.push_back(Effect::CloseFile { file });
            }
            if let Some(w) = slot.waiting.take() {
                // The Open may still complete; with nobody parked on its token, its file
                // is closed when it does.
                self.parked.remove(&w.token);
            }
            if let Some(t) = slot.deadline.take() {
                self.deadlines.remove(&(t, id));
            }
            self.conns.remove(&id);
            if self.accept_paused
                && self.shutdown.is_none()
                && self.conns.len() < self.config.limits.connections_max
            {
                self.accept_paused = false;
                self.effects.push_back(Effect::ResumeAccept);
            }
            return;
        }
        if !slot.reading {
            let max = slot.conn.read_budget();
            if max > 0 {
                slot.reading = true;
                self.effects.push_back(Effect::Read { conn: id, max });
            }
        }
        if slot.sending.is_none() {
            if let Some(chunk) = slot.conn.pending_transmit() {
                slot.sending = Some(chunk.len());
                self.effects.push_back(Effect::Send {
                    conn: id,
                    chunk: chunk.clone(),
                });
            }
        }
        while let Some(&(file, until)) = slot.files.front() {
            if slot.transmitted < until {
                break;
            }
            slot.files.pop_front();
            self.effects.push_back(Effect::CloseFile { file });
        }
        if state == ConnState::Lingering && !slot.shutdown_sent && slot.sending.is_none() {
            slot.shutdown_sent = true;
            self.effects.push_back(Effect::ShutdownWrite { conn: id });
        }
        let deadline = slot.conn.poll_timeout();
        if deadline != slot.deadline {
            if let Some(t) = slot.deadline {
                self.deadlines.remove(&(t, id));
            }
            if let Some(t) = deadline {
                self.deadlines.insert((t, id));
            }
            slot.deadline = deadline;
        }
    }

    fn on_event(&mut self, id: ConnId, event: Event, now: Now) {
        match event {
            Event::Head(req) => self.route(id, req, now),
            // Static documents take no body: it is read and dropped so the connection can
            // carry the next request.
            Event::Body(_) | Event::Trailers(_) | Event::End => {}
            Event::Rejected(_) | Event::PeerClosed => {
                if let Some(slot) = self.conns.get_mut(&id) {
                    if let Some(w) = slot.waiting.take() {
                        self.parked.remove(&w.token);
                    }
                }
            }
        }
    }

    fn route(&mut self, id: ConnId, req: RequestHead, now: Now) {
        match req.method {
            Method::Get | Method::Head => {}
            Method::Options => {
                let mut head = ResponseHead::new(200, ResponseBody::Empty);
                head.headers.push("Allow", STATIC_ALLOW);
                self.respond(id, head, None, now);
                return;
            }
            Method::Other(_) => return self.error(id, 501, &[], now),
            _ => return self.error(id, 405, &[("Allow", STATIC_ALLOW)], now),
        }
        let target = match path::normalize(&req.target) {
            Ok(t) if t.path != b"*" => t,
            _ => return self.error(id, 400, &[], now),
        };
        let fs_path = self.fs_path(&target.path);
        self.open(
            id,
            Waiting {
                token: Token(0),
                req,
                target,
                fs_path,
                welcome: None,
            },
        );
    }

    /// The file-system path for a normalised request path (no `..`, starts with `/`).
    fn fs_path(&self, path: &[u8]) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        let rel = std::ffi::OsStr::from_bytes(&path[1..]);
        self.config.root.join(rel)
    }

    fn open(&mut self, id: ConnId, mut w: Waiting) {
        let token = self.token();
        w.token = token;
        self.effects.push_back(Effect::Open {
            token,
            path: w.fs_path.clone(),
        });
        self.parked.insert(token, id);
        if let Some(slot) = self.conns.get_mut(&id) {
            slot.waiting = Some(w);
        }
    }

    fn completed(&mut self, token: Token, result: Completion, now: Now) {
        let opened = match &result {
            Completion::Opened(_) => Some(FileId(token)),
            Completion::Failed(_) => None,
        };
        let waiting = self.parked.remove(&token).and_then(|id| {
            let slot = self.conns.get_mut(&id)?;
            match slot.waiting.take() {
                Some(w) if w.token == token => Some((id, w)),
                other => {
                    slot.waiting = other;
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
        self.resolve(id, w, result, now);
        self.pump(id, now);
    }

    fn resolve(&mut self, id: ConnId, w: Waiting, result: Completion, now: Now) {
        match result {
            Completion::Opened(meta) => {
                let file = FileId(w.token);
                self.opened(id, w, file, meta, now);
            }
            Completion::Failed(err) => {
                if let Some(i) = w.welcome {
                    if err == IoError::NotFound && i + 1 < self.config.welcome.len() {
                        return self.try_welcome(id, w, i + 1);
                    }
                    if err == IoError::NotFound {
                        // No welcome file and no listing: the directory is not browsable.
                        return self.error(id, 403, &[], now);
                    }
                }
                let status = match err {
                    IoError::NotFound => 404,
                    IoError::PermissionDenied => 403,
                    IoError::Exhausted => 503,
                    IoError::Reset | IoError::Other => 500,
                };
                self.error(id, status, &[], now);
            }
        }
    }

    fn opened(&mut self, id: ConnId, w: Waiting, file: FileId, meta: FileMeta, now: Now) {
        match meta.kind {
            FileKind::File => {
                let head = static_file::file_head(&w.req, &meta, &w.fs_path);
                let body = (head.status == 200 && meta.len > 0).then_some(Chunk::File {
                    file,
                    offset: 0,
                    len: meta.len,
                });
                self.respond(id, head, body, now);
                self.keep_file_until_sent(id, file);
            }
            FileKind::Dir if w.welcome.is_none() => {
                self.effects.push_back(Effect::CloseFile { file });
                if !w.target.path.ends_with(b"/") {
                    let mut location = w.target_path_escaped();
                    location.push('/');
                    if let Some(q) = &w.target.query {
                        location.push('?');
                        location.push_str(&String::from_utf8_lossy(q));
                    }
                    return self.error(id, 301, &[("Location", &location)], now);
                }
                if self.config.welcome.is_empty() {
                    return self.error(id, 403, &[], now);
                }
                self.try_welcome(id, w, 0);
            }
            // A welcome "file" that is a directory, or a device: not served.
            FileKind::Dir | FileKind::Other => {
                self.effects.push_back(Effect::CloseFile { file });
                self.error(id, 403, &[], now);
            }
        }
    }

    fn try_welcome(&mut self, id: ConnId, mut w: Waiting, i: usize) {
        let dir = self.fs_path(&w.target.path);
        w.fs_path = dir.join(&self.config.welcome[i]);
        w.welcome = Some(i);
        self.open(id, w);
    }

    /// Keeps `file` open until the bytes queued so far on `id` have been transmitted.
    fn keep_file_until_sent(&mut self, id: ConnId, file: FileId) {
        match self.conns.get_mut(&id) {
            Some(slot) => {
                let until = slot.transmitted + slot.conn.transmit_queued();
                slot.files.push_back((file, until));
            }
            None => self.effects.push_back(Effect::CloseFile { file }),
        }
    }

    /// Sends a complete response: head, optional body, end.
    fn respond(&mut self, id: ConnId, head: ResponseHead, body: Option<Chunk>, now: Now) {
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        // The Conn refuses out-of-turn calls (e.g. it was rejected meanwhile); then there is
        // nobody to answer and the result is dropped on purpose.
        if slot.conn.send_head(head, now).is_err() {
            return;
        }
        if let Some(chunk) = body {
            let _ = slot.conn.send_body(chunk, now);
        }
        let _ = slot.conn.send_end(None, now);
    }

    /// Sends a short HTML error page (or a redirect) with extra header fields.
    fn error(&mut self, id: ConnId, status: u16, extra: &[(&str, &str)], now: Now) {
        let reason = reason_phrase(status);
        let body = format!(
            "<!DOCTYPE html>\n<html><head><title>{status} {reason}</title></head>\
             <body><h1>{status} {reason}</h1></body></html>\n"
        );
        let mut head = ResponseHead::new(status, ResponseBody::Length(body.len() as u64));
        head.headers
            .push("Content-Type", "text/html; charset=utf-8");
        for (name, value) in extra {
            head.headers.push(
                Bytes::copy_from_slice(name.as_bytes()),
                Bytes::copy_from_slice(value.as_bytes()),
            );
        }
        self.respond(id, head, Some(Chunk::Bytes(Bytes::from(body))), now);
    }
}

impl Waiting {
    /// The normalised path, percent-encoded again for use in a `Location` field.
    fn target_path_escaped(&self) -> String {
        const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'/')
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        percent_encoding::percent_encode(&self.target.path, KEEP).to_string()
    }
}

#[cfg(test)]
mod tests;
