//! The server driven in-process by a tiny deterministic world: an in-memory file system,
//! clients whose bytes are delivered in whole, and a clock moved by hand. Every effect is
//! answered the way the production shell would answer it, and the harness checks the
//! contract as it goes (one outstanding read and send per connection, no effect for a
//! closed connection, every opened file closed exactly once).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::chunk::Chunk;
use crate::config::Config;
use crate::ids::ListenerId;
use crate::time::UnixTime;

mod auth;
mod fcgi;

struct Client {
    to_server: Vec<u8>,
    from_server: Vec<u8>,
    read_wanted: Option<usize>,
    eof_to_send: bool,
    shut_down_write: bool,
    closed: bool,
    /// Not reading: the bytes of each send are held, and the send is not reported done.
    stalled: bool,
    held: Vec<(Vec<u8>, u64)>,
}

struct World {
    server: Server,
    now: Now,
    files: BTreeMap<PathBuf, (FileKind, Vec<u8>, UnixTime)>,
    open: BTreeMap<FileId, Vec<u8>>,
    ever_closed: BTreeSet<FileId>,
    clients: BTreeMap<ConnId, Client>,
    next_conn: u64,
    exit: Option<i32>,
    paused: bool,
    log: Vec<String>,
    access: Vec<String>,
    /// `Open` and `ReadFile` effects carried out.
    opens: usize,
    reads: usize,
    procs: Procs,
    services: fcgi::Services,
    /// `VerifyPassword` effects carried out.
    verifies: usize,
    /// With `hold_verifies`, the checks asked for and not yet answered (the test answers
    /// them); without, each is answered at once with `rules::auth::verify`.
    held: Vec<(Token, String, Password)>,
    hold_verifies: bool,
    /// The address the next connection comes from.
    peer: core::net::SocketAddr,
}

const ROOT: &str = "/srv/www";

impl World {
    fn new() -> World {
        World::with_config(|_| {})
    }

    fn with_config(edit: impl FnOnce(&mut Config)) -> World {
        let mut config = Config::builtin(PathBuf::from(ROOT));
        edit(&mut config);
        let now = Now {
            mono: Time(1_000),
            unix: UnixTime(1_700_000_000),
        };
        let mut w = World {
            server: Server::new(ConfigRef::new(1, config), now),
            now,
            files: BTreeMap::new(),
            open: BTreeMap::new(),
            ever_closed: BTreeSet::new(),
            clients: BTreeMap::new(),
            next_conn: 0,
            exit: None,
            paused: false,
            log: Vec::new(),
            access: Vec::new(),
            opens: 0,
            reads: 0,
            procs: Procs::default(),
            services: fcgi::Services::default(),
            verifies: 0,
            held: Vec::new(),
            hold_verifies: false,
            peer: core::net::SocketAddr::from(([127, 0, 0, 1], 40000)),
        };
        w.dir("");
        w
    }

    fn file(&mut self, rel: &str, body: &[u8]) {
        let p = PathBuf::from(ROOT).join(rel);
        self.files
            .insert(p, (FileKind::File, body.to_vec(), UnixTime(1_600_000_000)));
    }

    fn dir(&mut self, rel: &str) {
        let p = if rel.is_empty() {
            PathBuf::from(ROOT)
        } else {
            PathBuf::from(ROOT).join(rel)
        };
        self.files
            .insert(p, (FileKind::Dir, Vec::new(), UnixTime(1_600_000_000)));
    }

    fn connect(&mut self) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        self.clients.insert(
            id,
            Client {
                to_server: Vec::new(),
                from_server: Vec::new(),
                read_wanted: None,
                eof_to_send: false,
                shut_down_write: false,
                closed: false,
                stalled: false,
                held: Vec::new(),
            },
        );
        let local = core::net::SocketAddr::from(([127, 0, 0, 1], 40000));
        self.server.handle(
            Input::Accepted {
                listener: ListenerId(0),
                conn: id,
                peer: self.peer,
                local,
            },
            self.now,
        );
        self.run();
        id
    }

    fn send(&mut self, id: ConnId, bytes: &[u8]) {
        self.clients
            .get_mut(&id)
            .unwrap()
            .to_server
            .extend_from_slice(bytes);
        self.run();
    }

    /// The connection breaks (a reset, as the shell reports one), and the world settles.
    fn reset(&mut self, id: ConnId) {
        self.server.handle(
            Input::ConnFailed {
                conn: id,
                error: IoError::Reset,
            },
            self.now,
        );
        self.run();
    }

    /// The client reads again: what was held arrives, and the sends are reported done.
    fn unstall(&mut self, id: ConnId) {
        let c = self.clients.get_mut(&id).expect("a client");
        c.stalled = false;
        for (bytes, n) in std::mem::take(&mut c.held) {
            c.from_server.extend_from_slice(&bytes);
            self.server.handle(Input::Sent { conn: id, n }, self.now);
        }
        self.run();
    }

    fn take_output(&mut self, id: ConnId) -> String {
        let c = self.clients.get_mut(&id).unwrap();
        String::from_utf8_lossy(&std::mem::take(&mut c.from_server)).into_owned()
    }

    fn advance(&mut self, d: Duration) {
        self.now.mono = self.now.mono.after(d);
        self.now.unix.0 += d.as_secs() as i64;
        if self
            .server
            .poll_timeout()
            .is_some_and(|t| t <= self.now.mono)
        {
            self.server.handle_timeout(self.now);
        }
        self.run();
    }

    /// Carries out effects and delivers client bytes until nothing moves.
    fn run(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            // Bounded, like the passes: a server that answers every effect with another
            // (a send that never consumes its chunk) fails the test rather than hang it.
            for n in 0.. {
                let Some(e) = self.server.poll_effect() else {
                    break;
                };
                assert!(n < 100_000, "the server's effects do not run out");
                moved = true;
                self.apply(e);
            }
            if self.procs.step(&mut self.server, self.now) {
                moved = true;
            }
            if self.services.step(&mut self.server, self.now) {
                moved = true;
            }
            let ids: Vec<ConnId> = self.clients.keys().copied().collect();
            for id in ids {
                let c = self.clients.get_mut(&id).unwrap();
                if c.closed {
                    continue;
                }
                if let Some(max) = c.read_wanted {
                    if !c.to_server.is_empty() {
                        let n = max.min(c.to_server.len());
                        let data = Bytes::from(c.to_server.drain(..n).collect::<Vec<u8>>());
                        c.read_wanted = None;
                        self.server
                            .handle(Input::Received { conn: id, data }, self.now);
                        moved = true;
                    } else if c.eof_to_send {
                        c.read_wanted = None;
                        c.eof_to_send = false;
                        self.server.handle(Input::PeerClosed { conn: id }, self.now);
                        moved = true;
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the world did not settle");
    }

    fn apply(&mut self, e: Effect) {
        match e {
            Effect::Read { conn, max } => {
                let c = self.clients.get_mut(&conn).expect("read for unknown conn");
                assert!(!c.closed, "read after close");
                assert!(c.read_wanted.is_none(), "two reads outstanding");
                assert!(max > 0);
                c.read_wanted = Some(max);
            }
            Effect::Send { conn, chunk } => {
                let bytes = match &chunk {
                    Chunk::Bytes(b) => b.to_vec(),
                    Chunk::File { file, offset, len } => {
                        let data = self.open.get(file).expect("send from a closed file");
                        data[*offset as usize..(*offset + *len) as usize].to_vec()
                    }
                };
                let c = self.clients.get_mut(&conn).expect("send for unknown conn");
                assert!(!c.closed && !c.shut_down_write, "send after close");
                if c.stalled {
                    c.held.push((bytes, chunk.len()));
                    return;
                }
                c.from_server.extend_from_slice(&bytes);
                self.server.handle(
                    Input::Sent {
                        conn,
                        n: chunk.len(),
                    },
                    self.now,
                );
            }
            Effect::ShutdownWrite { conn } => {
                self.clients.get_mut(&conn).unwrap().shut_down_write = true;
            }
            Effect::Close { conn } => {
                let c = self.clients.get_mut(&conn).unwrap();
                assert!(!c.closed, "closed twice");
                c.closed = true;
            }
            Effect::Refuse { conn, answer } => {
                let c = self.clients.get_mut(&conn).unwrap();
                assert!(!c.closed, "closed twice");
                c.from_server.extend_from_slice(&answer);
                c.closed = true;
            }
            Effect::Open { token, path } => {
                self.opens += 1;
                let result = match self.files.get(&path) {
                    Some((kind, data, mtime)) => {
                        self.open.insert(FileId(token), data.clone());
                        Completion::Opened(FileMeta {
                            kind: *kind,
                            len: data.len() as u64,
                            mtime: *mtime,
                            inode: 42,
                        })
                    }
                    None => Completion::Failed(IoError::NotFound),
                };
                self.server
                    .handle(Input::Completed { token, result }, self.now);
            }
            Effect::ReadDir { token, path } => {
                let prefix = format!("{}/", path.display().to_string().trim_end_matches('/'));
                let entries: Vec<DirEntry> = self
                    .files
                    .iter()
                    .filter_map(|(p, (kind, data, mtime))| {
                        let rest = p.to_str()?.strip_prefix(&prefix)?;
                        (!rest.is_empty() && !rest.contains('/')).then(|| DirEntry {
                            name: rest.as_bytes().to_vec(),
                            is_dir: *kind == FileKind::Dir,
                            len: data.len() as u64,
                            mtime: *mtime,
                        })
                    })
                    .collect();
                let result = if self.files.contains_key(&path) {
                    Completion::Listing(entries)
                } else {
                    Completion::Failed(IoError::NotFound)
                };
                self.server
                    .handle(Input::Completed { token, result }, self.now);
            }
            Effect::ReadFile {
                token,
                file,
                offset,
                len,
            } => {
                let data = self.open.get(&file).expect("read of a closed file");
                let end = (offset + len).min(data.len() as u64) as usize;
                let bytes = Bytes::copy_from_slice(&data[offset as usize..end]);
                self.reads += 1;
                self.server.handle(
                    Input::Completed {
                        token,
                        result: Completion::Data(bytes),
                    },
                    self.now,
                );
            }
            Effect::CloseFile { file } => {
                assert!(
                    self.open.remove(&file).is_some(),
                    "closing a file that is not open"
                );
                assert!(self.ever_closed.insert(file));
            }
            Effect::PauseAccept => self.paused = true,
            Effect::ErrorLog { line } => self.log.push(line),
            Effect::ServiceAnswered { .. } => self.services.answered += 1,
            Effect::Status { token } => {
                // One worker, no services: the whole server is this one.
                let status = status::ServerStatus {
                    started: UnixTime(self.now.unix.0 - 5),
                    access_log_lost: 0,
                    workers: vec![self.server.worker_status()],
                    services: Vec::new(),
                };
                self.server.handle(
                    Input::Completed {
                        token,
                        result: Completion::Status(Box::new(status)),
                    },
                    self.now,
                );
            }
            Effect::AccessLog { line } => self.access.push(line),
            Effect::VerifyPassword {
                token,
                hash,
                password,
            } => {
                self.verifies += 1;
                if self.hold_verifies {
                    self.held.push((token, hash, password));
                } else {
                    let ok = crate::rules::auth::verify(&hash, &password.0);
                    self.server.handle(
                        Input::Completed {
                            token,
                            result: Completion::Verified(ok),
                        },
                        self.now,
                    );
                }
            }
            e @ (Effect::Spawn { .. } | Effect::Kill { .. }) => {
                self.procs.apply(e, &mut self.server, self.now);
            }
            Effect::Connect { .. } => self.services.apply(e, &mut self.server, self.now),
            // One family of stream effects: a script's pipes, or a service's socket.
            e @ (Effect::StreamWrite { stream, .. }
            | Effect::StreamShutdownWrite { stream }
            | Effect::StreamRead { stream, .. }
            | Effect::StreamClose { stream }) => {
                if self.procs.running.contains_key(&stream) {
                    self.procs.apply(e, &mut self.server, self.now);
                } else {
                    self.services.apply(e, &mut self.server, self.now);
                }
            }
            Effect::ResumeAccept => self.paused = false,
            Effect::Exit { code } => self.exit = Some(code),
        }
    }

    /// Delivers `data` on `id` by hand (not through the client's read) and carries out
    /// the effects it leads to, except an `Open`, whose token is returned: the test
    /// completes it when it chooses ([`World::complete_open`]).
    fn receive_holding_open(&mut self, id: ConnId, data: &'static [u8]) -> Option<Token> {
        self.clients.get_mut(&id).unwrap().read_wanted = None;
        self.server.handle(
            Input::Received {
                conn: id,
                data: Bytes::from_static(data),
            },
            self.now,
        );
        let mut open = None;
        while let Some(e) = self.server.poll_effect() {
            match e {
                Effect::Open { token, .. } => open = Some(token),
                other => self.apply(other),
            }
        }
        open
    }

    /// Completes a held `Open` with a regular file holding `body`, and lets the world
    /// settle.
    fn complete_open(&mut self, token: Token, body: &[u8]) {
        self.open.insert(FileId(token), body.to_vec());
        self.server.handle(
            Input::Completed {
                token,
                result: Completion::Opened(FileMeta {
                    kind: FileKind::File,
                    len: body.len() as u64,
                    mtime: UnixTime(0),
                    inode: 1,
                }),
            },
            self.now,
        );
        self.run();
    }

    /// Asserts that access-log line `i` holds `needle`, showing the line if not.
    #[track_caller]
    fn assert_logged(&self, i: usize, needle: &str) {
        let line = self.access.get(i).map_or("(no such line)", String::as_str);
        assert!(line.contains(needle), "access-log line {i}: {line}");
    }

    fn get(&mut self, target: &str) -> String {
        let id = self.connect();
        self.send(
            id,
            format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
        self.take_output(id)
    }
}

fn status(resp: &str) -> u16 {
    resp[9..12].parse().unwrap()
}

#[test]
fn serves_a_file_and_closes_it_after_sending() {
    let mut w = World::new();
    w.file("a.txt", b"hello world\n");
    let out = w.get("/a.txt");
    assert_eq!(status(&out), 200, "{out}");
    assert!(
        out.contains("Content-Type: text/plain; charset=utf-8\r\n"),
        "{out}"
    );
    assert!(out.contains("Content-Length: 12\r\n"), "{out}");
    assert!(out.contains("ETag: \""), "{out}");
    assert!(out.contains("Last-Modified: "), "{out}");
    assert!(out.ends_with("\r\n\r\nhello world\n"), "{out}");
    assert!(w.open.is_empty(), "file left open");
    assert_eq!(w.ever_closed.len(), 1);
}

/// An idle kept-alive connection costs its slot and nothing else (memory per idle
/// connection, bench/RESULTS.md): the slot stays small, and after a request has been
/// answered (from a file, which must be closed by then) it holds no per-request box.
#[test]
fn an_idle_connection_is_a_small_slot_with_nothing_boxed() {
    assert!(
        core::mem::size_of::<Slot>() <= 200,
        "Slot grew to {} bytes",
        core::mem::size_of::<Slot>()
    );
    let mut w = World::new();
    w.file("a.txt", b"hello world\n");
    let out = w.get("/a.txt");
    assert_eq!(status(&out), 200, "{out}");
    let slot = w.server.conns.values().next().expect("kept alive");
    assert_eq!(slot.conn.state(), ConnState::Idle);
    assert!(
        slot.cur.0.is_none(),
        "an idle slot holds no per-request state"
    );
    assert!(
        matches!(slot.addrs, Addrs::V4 { .. }),
        "IPv4 addresses are stored inline"
    );
    assert!(w.open.is_empty(), "file left open");
}

#[test]
fn head_sends_headers_only() {
    let mut w = World::new();
    w.file("a.txt", b"hello world\n");
    let id = w.connect();
    w.send(id, b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    let out = w.take_output(id);
    assert!(
        out.contains("Content-Length: 12\r\n") && out.ends_with("\r\n\r\n"),
        "{out}"
    );
    assert!(w.open.is_empty());
}

#[test]
fn conditional_get_gives_304() {
    let mut w = World::new();
    w.file("a.txt", b"hello");
    let out = w.get("/a.txt");
    let etag = out
        .lines()
        .find_map(|l| l.strip_prefix("ETag: "))
        .unwrap()
        .to_string();
    let id = w.connect();
    w.send(
        id,
        format!("GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes(),
    );
    let out = w.take_output(id);
    assert_eq!(status(&out), 304, "{out}");
    assert!(out.ends_with("\r\n\r\n") && !out.contains("hello"));
}

/// A small answer held in memory goes out with its head in one send.
#[test]
fn a_small_answer_in_memory_goes_out_with_its_head() {
    let mut w = configured("pass /*\n");
    let id = w.connect();
    w.clients.get_mut(&id).unwrap().read_wanted = None;
    w.server.handle(
        Input::Received {
            conn: id,
            data: Bytes::from_static(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"),
        },
        w.now,
    );
    let mut sends = Vec::new();
    while let Some(e) = w.server.poll_effect() {
        if let Effect::Send {
            chunk: Chunk::Bytes(b),
            ..
        } = &e
        {
            sends.push(String::from_utf8_lossy(b).into_owned());
        }
        w.apply(e);
    }
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert!(
        sends[0].starts_with("HTTP/1.1 404")
            && sends[0].ends_with("<h1>404 Not Found</h1></body></html>\n"),
        "{sends:?}"
    );
}

/// A 304 and an answer to HEAD send no body, and the access log counts none.
#[test]
fn bodiless_answers_are_logged_with_no_bytes() {
    let mut w = configured("access-log /var/log/weir.log\npass /*\n");
    w.file("a.txt", b"hello");
    let etag = etag_of(&w.get("/a.txt"));
    let out = request(
        &mut w,
        &format!("GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n"),
    );
    assert_eq!(status(&out), 304, "{out}");
    request(&mut w, "HEAD /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(w.access.len(), 3, "{:?}", w.access);
    w.assert_logged(0, "\" 200 5 ");
    w.assert_logged(1, "\" 304 0 ");
    w.assert_logged(2, "\" 200 0 ");
    // A script's 204 and 304 are cut to their heads, and logged so, whatever it wrote.
    let mut w = cgi_world("access-log /var/log/weir.log\nexec /cgi-bin/* cgi-bin/*\n");
    for code in [204, 304] {
        let out: &'static [u8] = format!("Status: {code}\nContent-Type: text/plain\n\nxyz")
            .leak()
            .as_bytes();
        w.procs.scripts.insert(
            PathBuf::from(format!("/srv/www/cgi-bin/s{code}")),
            Script::Prints(out, b""),
        );
        let out = request(
            &mut w,
            &format!("GET /cgi-bin/s{code} HTTP/1.1\r\nHost: x\r\n\r\n"),
        );
        assert!(out.ends_with("\r\n\r\n"), "{out}");
        let line = w.access.last().expect("a line");
        assert!(line.contains(&format!("\" {code} 0 ")), "{line}");
    }
}

#[test]
fn directories_redirect_then_welcome_then_forbid() {
    let mut w = World::with_config(|c| c.listing = false);
    w.dir("docs");
    w.file("docs/index.html", b"<p>docs</p>");
    w.dir("empty");
    let out = w.get("/docs?x=1");
    assert_eq!(status(&out), 301, "{out}");
    assert!(out.contains("Location: /docs/?x=1\r\n"), "{out}");
    let out = w.get("/docs/");
    assert_eq!(status(&out), 200, "{out}");
    assert!(out.ends_with("<p>docs</p>"));
    assert_eq!(status(&w.get("/empty/")), 403);
    // A welcome "file" that is a directory is not served, nor searched for welcome files
    // of its own.
    w.dir("odd");
    w.dir("odd/index.html");
    w.file("odd/index.html/index.html", b"deeper");
    assert_eq!(status(&w.get("/odd/")), 403);
    assert!(w.open.is_empty());
}

#[test]
fn welcome_files_are_tried_in_order() {
    let mut w = World::with_config(|c| c.welcome = vec!["index.htm".into(), "default.html".into()]);
    w.file("default.html", b"second");
    let out = w.get("/");
    assert_eq!(status(&out), 200, "{out}");
    assert!(out.ends_with("second"));
}

#[test]
fn missing_escaping_and_bad_targets() {
    let mut w = World::new();
    w.file("a.txt", b"x");
    assert_eq!(status(&w.get("/nope")), 404);
    assert_eq!(status(&w.get("/../etc/passwd")), 400);
    assert_eq!(status(&w.get("/a%2Fb")), 400);
    assert_eq!(status(&w.get("/%00")), 400);
    assert_eq!(status(&w.get("/a.txt/../a.txt")), 200);
}

#[test]
fn methods() {
    let mut w = World::new();
    w.file("a.txt", b"x");
    for (method, want) in [
        ("POST", 405),
        ("PUT", 405),
        ("DELETE", 405),
        ("TRACE", 405),
        ("BREW", 501),
    ] {
        let id = w.connect();
        w.send(
            id,
            format!("{method} /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        );
        let out = w.take_output(id);
        assert_eq!(status(&out), want, "{method}: {out}");
        if want == 405 {
            assert!(out.contains("Allow: GET, HEAD, OPTIONS\r\n"), "{out}");
        }
    }
    for target in ["*", "/a.txt"] {
        let id = w.connect();
        w.send(
            id,
            format!("OPTIONS {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
        let out = w.take_output(id);
        assert_eq!(status(&out), 200, "{out}");
        assert!(out.contains("Allow: GET, HEAD, OPTIONS\r\n"), "{out}");
        assert!(out.ends_with("Content-Length: 0\r\n\r\n"), "{out}");
    }
}

#[test]
fn trace_and_connect_are_refused_before_any_rule_runs() {
    // A script and a redirect would each answer a TRACE their own way; neither may see it
    // (RFC 9110 §9.3.8: TRACE reflects the request, credentials and all).
    let mut w = cgi_world("exec /cgi/* /srv/cgi/*\nredirect /old/* http://elsewhere/*\n");
    for target in ["/cgi/echo", "/old/x"] {
        for method in ["TRACE", "CONNECT"] {
            let out = request(
                &mut w,
                &format!("{method} {target} HTTP/1.1\r\nHost: x\r\n\r\n"),
            );
            assert_eq!(status(&out), 405, "{method} {target}: {out}");
            assert!(out.contains("Allow: GET, HEAD, OPTIONS\r\n"), "{out}");
        }
    }
    assert!(w.procs.spawned.is_empty(), "no script ran");
}

#[test]
fn pipelined_requests_answer_in_order_and_release_files() {
    let mut w = World::new();
    w.file("one", b"1111");
    w.file("two", b"22");
    let id = w.connect();
    w.send(
        id,
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /missing HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let out = w.take_output(id);
    let a = out.find("1111").unwrap();
    let b = out.find("404 Not Found").unwrap();
    let c = out.rfind("22").unwrap();
    assert!(a < b && b < c, "{out}");
    assert!(w.open.is_empty());
    assert_eq!(w.ever_closed.len(), 2);
}

#[test]
fn post_body_is_drained_and_connection_reused() {
    let mut w = World::new();
    w.file("a", b"A");
    let id = w.connect();
    w.send(
        id,
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let out = w.take_output(id);
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    assert!(out.ends_with("\r\n\r\nA"), "{out}");
}

#[test]
fn a_closed_connection_releases_a_file_opened_for_it_later() {
    let mut w = World::new();
    w.file("a", b"A");
    let id = w.connect();
    // Deliver the request but hold the Open.
    let token = w
        .receive_holding_open(id, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("an Open");
    w.reset(id);
    assert!(w.clients[&id].closed);
    assert!(
        w.server.parked.is_empty(),
        "the request is let go with its connection, not when its Open completes"
    );
    w.complete_open(token, b"A");
    assert!(w.open.is_empty(), "the late file was not closed");
}

#[test]
fn idle_connections_time_out() {
    let mut w = World::new();
    let id = w.connect();
    assert!(w.server.poll_timeout().is_some());
    w.advance(Duration::from_secs(59));
    assert!(!w.clients[&id].closed);
    w.advance(Duration::from_secs(2));
    assert!(w.clients[&id].closed);
    assert_eq!(w.server.connection_count(), 0);
    assert_eq!(w.server.poll_timeout(), None);
}

#[test]
fn header_timeout_answers_408() {
    let mut w = World::new();
    let id = w.connect();
    w.send(id, b"GET / HTTP/1.1\r\n");
    for _ in 0..12 {
        w.advance(Duration::from_secs(1));
        if !w.clients[&id].closed {
            w.send(id, b"X: y\r\n");
        }
    }
    let out = w.take_output(id);
    assert_eq!(status(&out), 408, "{out}");
}

#[test]
fn shutdown_finishes_in_flight_requests_then_exits() {
    let mut w = World::new();
    w.file("a", b"A");
    let idle = w.connect();
    let busy = w.connect();
    w.send(busy, b"GET /a HTTP/1.1\r\nHost: x\r\n");
    w.server.handle(Input::Shutdown, w.now);
    w.run();
    assert!(w.paused);
    assert!(w.clients[&idle].closed, "idle connection kept open");
    assert!(!w.clients[&busy].closed);
    assert_eq!(w.exit, None);
    w.send(busy, b"\r\n");
    let out = w.take_output(busy);
    assert!(
        out.contains("Connection: close\r\n") && out.ends_with("A"),
        "{out}"
    );
    w.clients.get_mut(&busy).unwrap().eof_to_send = true;
    w.run();
    assert_eq!(w.exit, Some(0));
}

#[test]
fn shutdown_grace_cuts_off_slow_requests() {
    let mut w = World::new();
    let busy = w.connect();
    w.send(busy, b"GET /a HTTP/1.1\r\n");
    w.server.handle(Input::Shutdown, w.now);
    w.run();
    assert_eq!(w.exit, None);
    w.advance(Duration::from_secs(11));
    assert!(w.clients[&busy].closed);
    assert_eq!(w.exit, Some(0));
}

#[test]
fn at_the_connection_limit_idle_connections_make_room_and_busy_ones_do_not() {
    let mut w = World::with_config(|c| c.limits.connections_max = 3);
    w.file("a.txt", b"hello");
    // A kept-alive connection, idle the longest …
    let kept = w.connect();
    w.send(kept, b"GET /a.txt HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status(&w.take_output(kept)), 200);
    w.advance(Duration::from_secs(1));
    // … and two that never sent a byte.
    let fresh_old = w.connect();
    w.advance(Duration::from_secs(1));
    let fresh_new = w.connect();
    w.advance(Duration::from_secs(1));
    assert!(!w.paused, "accepting never pauses at the limit");
    // The oldest connection that never sent a byte goes first, silently.
    let a = w.connect();
    assert!(w.clients[&fresh_old].closed);
    assert!(w.clients[&fresh_old].from_server.is_empty());
    assert!(!w.clients[&fresh_new].closed && !w.clients[&kept].closed);
    assert_eq!(w.server.connection_count(), 3);
    // Busy connections (a head in progress) are never closed to make room: the next one
    // to go is the fresh one left, then the kept-alive one.
    w.send(a, b"GET /a.txt HTTP/1.1\r\n");
    w.advance(Duration::from_secs(1));
    let b = w.connect();
    assert!(w.clients[&fresh_new].closed && !w.clients[&kept].closed);
    w.send(b, b"GET /a.txt HTTP/1.1\r\n");
    let c = w.connect();
    assert!(w.clients[&kept].closed, "then the kept-alive connection");
    assert!(w.take_output(kept).is_empty());
    w.send(c, b"GET /a.txt");
    assert_eq!(w.server.counters().shed, 3);
    // Every connection busy: the new one is answered 503 and closed, never taken in.
    let refused = w.connect();
    assert!(w.clients[&refused].closed);
    let out = w.take_output(refused);
    assert_eq!(status(&out), 503, "{out}");
    assert!(
        out.contains("Retry-After: 1\r\n") && out.contains("Connection: close\r\n"),
        "{out}"
    );
    assert_eq!(w.server.connection_count(), 3);
    assert_eq!(w.server.counters().refused, 1);
    assert_eq!(w.server.counters().accepted, 6);
    assert!(w.log.iter().any(|l| l.contains("limit connections=3")));
    // The busy ones are served as usual, and once one is done it is idle again.
    w.send(a, b"Host: h\r\n\r\n");
    assert_eq!(status(&w.take_output(a)), 200);
    let d = w.connect();
    assert!(w.clients[&a].closed && !w.clients[&d].closed);
    // A second refusal within the minute is counted but not logged again.
    w.send(d, b"G");
    let logged = w.log.len();
    let again = w.connect();
    assert!(w.clients[&again].closed);
    assert_eq!(w.server.counters().refused, 2);
    assert_eq!(w.log.len(), logged);
}

fn configured(text: &str) -> World {
    let mut load = |p: &std::path::Path| -> Result<String, String> {
        if p.ends_with("users") {
            Ok("alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\n".into())
        } else {
            Err("missing".into())
        }
    };
    let config = crate::config::parse("t.conf", text, std::path::Path::new(ROOT), &mut load)
        .unwrap_or_else(|d| panic!("{}", d[0]));
    World::with_config(|c| *c = config)
}

fn request(w: &mut World, text: &str) -> String {
    let id = w.connect();
    w.send(id, text.as_bytes());
    w.take_output(id)
}

#[test]
fn the_status_page_counts_this_workers_requests_and_responses() {
    let mut w = configured("status /status\npass /*\n");
    w.file("a.txt", b"A");
    assert_eq!(status(&w.get("/a.txt")), 200);
    assert_eq!(status(&w.get("/nope")), 404);
    let out = w.get("/status");
    for line in [
        "\nworkers: 1\n",
        "\nuptime_seconds: 5\n",
        "\nconnections_accepted: 3\n",
        "\nrequests: 3\n",
        "\nresponses_2xx: 1\n",
        "\nresponses_4xx: 1\n",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
}

/// The status page waits for the whole server's figures (the shell's); its request is
/// kept meanwhile, so its access-log line names it.
#[test]
fn the_status_page_is_logged_with_its_request() {
    let mut w = configured("access-log /var/log/weir.log\nstatus /status\npass /*\n");
    let out = request(&mut w, "GET /status?json HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status(&out), 200, "{out}");
    assert_eq!(w.access.len(), 1, "{:?}", w.access);
    w.assert_logged(0, "\"GET /status?json HTTP/1.1\" 200 ");
}

/// The status page's format comes from a query parameter of exactly its name (`json`,
/// `format=json`, `format=prometheus`, among others separated by `&`), else from
/// `Accept`, else text.
#[test]
fn the_status_page_format_follows_the_query_then_accept() {
    let mut w = configured("status /status\npass /*\n");
    let json = "Content-Type: application/json\r\n";
    let prometheus = "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n";
    let text = "Content-Type: text/plain; charset=utf-8\r\n";
    for (target, accept, want) in [
        ("/status", "", text),
        ("/status?json", "", json),
        ("/status?format=json", "", json),
        ("/status?a=1&json&b", "", json),
        ("/status?jsonx", "", text),
        ("/status?x=json", "", text),
        ("/status?format=prometheus", "", prometheus),
        ("/status?a&format=prometheus", "", prometheus),
        ("/status?prometheus", "", text),
        ("/status", "Accept: application/json\r\n", json),
        (
            "/status?format=prometheus",
            "Accept: application/json\r\n",
            prometheus,
        ),
    ] {
        let out = request(
            &mut w,
            &format!("GET {target} HTTP/1.1\r\nHost: h\r\n{accept}\r\n"),
        );
        assert!(out.contains(want), "{target} {accept:?}: {out}");
    }
}

/// A slot without a request reads the same whether its box was never made or has been
/// emptied, so the model checker sees one state, not two; and a server equals its copy.
#[test]
fn a_request_slot_compares_and_hashes_by_what_it_holds() {
    use core::hash::{Hash, Hasher};
    let hash = |c: &Cur| {
        let mut h = std::hash::DefaultHasher::new();
        c.hash(&mut h);
        h.finish()
    };
    let never = Cur(None);
    let emptied = Cur(Some(Box::new(NO_CURRENT.clone())));
    assert_eq!(never, emptied);
    assert_eq!(hash(&never), hash(&emptied));
    let counted = Cur(Some(Box::new(Current {
        transmitted: 1,
        ..NO_CURRENT.clone()
    })));
    assert_ne!(never, counted, "what the slot holds is compared");
    assert_ne!(counted, emptied);
    let mut w = World::new();
    w.file("a.txt", b"A");
    let id = w.connect();
    w.send(id, b"GET /a.txt HTTP/1.1\r\nHost: h\r\n");
    assert!(w.server == w.server.clone(), "a request half-way");
}

#[test]
fn rules_answer_without_touching_files() {
    let mut w = configured(
        "header /* X-Served-By weir\nredirect /old/* /new/* 301\nfail /private/*\n\
         protect /admin/* users=users realm=\"Staff\"\nstatus /status\npass /*\n",
    );
    w.file("admin/a.txt", b"secret stuff");
    let out = request(&mut w, "GET /old/x?y=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status(&out), 301, "{out}");
    assert!(
        out.contains("Location: /new/x?y=1\r\n") && out.contains("X-Served-By: weir\r\n"),
        "{out}"
    );
    assert_eq!(status(&w.get("/private/x")), 403);
    let out = w.get("/admin/a.txt");
    assert_eq!(status(&out), 401, "{out}");
    assert!(
        out.contains("WWW-Authenticate: Basic realm=\"Staff\", charset=\"UTF-8\"\r\n"),
        "{out}"
    );
    let out = request(
        &mut w,
        "GET /admin/a.txt HTTP/1.1\r\nHost: h\r\nAuthorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n",
    );
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("secret stuff"),
        "{out}"
    );
    let out = w.get("/status");
    assert!(
        out.contains("requests: ") && out.contains("text/plain"),
        "{out}"
    );
    let out = request(
        &mut w,
        "GET /status HTTP/1.1\r\nHost: h\r\nAccept: application/json\r\n\r\n",
    );
    assert!(
        out.contains("\"requests\":") && out.contains("application/json"),
        "{out}"
    );
    // A browser's Accept admits both: the text form, which a person reads.
    let out = request(
        &mut w,
        "GET /status HTTP/1.1\r\nHost: h\r\nAccept: text/html, */*;q=0.8\r\n\r\n",
    );
    assert!(
        out.contains("requests: ") && out.contains("text/plain"),
        "{out}"
    );
    assert!(w.open.is_empty());
}

#[test]
fn host_sections_route_by_host() {
    let mut w = configured("host a.example\npass /* a/*\nhost *\npass /* b/*\n");
    w.file("a/x", b"from a");
    w.file("b/x", b"from b");
    assert!(request(&mut w, "GET /x HTTP/1.1\r\nHost: A.example:80\r\n\r\n").ends_with("from a"));
    assert!(request(&mut w, "GET /x HTTP/1.1\r\nHost: other\r\n\r\n").ends_with("from b"));
    assert!(request(
        &mut w,
        "GET http://a.example/x HTTP/1.1\r\nHost: other\r\n\r\n"
    )
    .ends_with("from a"));
}

#[test]
fn accept_excluding_the_type_is_406_except_for_head() {
    let mut w = World::new();
    w.file("p.png", b"PNG");
    let out = request(
        &mut w,
        "GET /p.png HTTP/1.1\r\nHost: h\r\nAccept: text/html\r\n\r\n",
    );
    assert_eq!(status(&out), 406, "{out}");
    let out = request(
        &mut w,
        "HEAD /p.png HTTP/1.1\r\nHost: h\r\nAccept: text/html\r\n\r\n",
    );
    assert_eq!(status(&out), 200, "{out}");
    assert!(w.open.is_empty());
}

#[test]
fn precompressed_variants_follow_accept_encoding() {
    let mut w = World::new();
    w.file("app.js", b"plain js");
    w.file("app.js.gz", b"GZ");
    w.file("style.css", b"css");
    let out = request(
        &mut w,
        "GET /app.js HTTP/1.1\r\nHost: h\r\nAccept-Encoding: br, gzip\r\n\r\n",
    );
    assert!(
        out.contains("Content-Encoding: gzip\r\n") && out.contains("Vary: Accept-Encoding\r\n"),
        "{out}"
    );
    assert!(
        out.contains("Content-Type: application/javascript")
            || out.contains("Content-Type: text/javascript"),
        "{out}"
    );
    assert!(out.ends_with("\r\n\r\nGZ"), "{out}");
    let out = request(&mut w, "GET /app.js HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(
        !out.contains("Content-Encoding")
            && out.contains("Vary: Accept-Encoding\r\n")
            && out.ends_with("plain js"),
        "{out}"
    );
    let out = request(
        &mut w,
        "GET /style.css HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\n\r\n",
    );
    assert!(
        !out.contains("Content-Encoding") && out.ends_with("css"),
        "{out}"
    );
    // A variant that is not a regular file (here a directory) is passed over for the
    // next coding the client takes.
    w.file("lib.js", b"plain js");
    w.dir("lib.js.br");
    w.file("lib.js.gz", b"GZ");
    let out = request(
        &mut w,
        "GET /lib.js HTTP/1.1\r\nHost: h\r\nAccept-Encoding: br, gzip\r\n\r\n",
    );
    assert!(
        out.contains("Content-Encoding: gzip\r\n") && out.ends_with("\r\n\r\nGZ"),
        "{out}"
    );
    assert!(w.open.is_empty(), "files left open: {:?}", w.open.keys());
}

#[test]
fn ranges_through_the_server() {
    let mut w = World::new();
    w.file("d.txt", b"0123456789");
    let out = request(
        &mut w,
        "GET /d.txt HTTP/1.1\r\nHost: h\r\nRange: bytes=2-4\r\n\r\n",
    );
    assert!(
        out.starts_with("HTTP/1.1 206")
            && out.contains("Content-Range: bytes 2-4/10\r\n")
            && out.ends_with("\r\n\r\n234"),
        "{out}"
    );
    let out = request(
        &mut w,
        "GET /d.txt HTTP/1.1\r\nHost: h\r\nRange: bytes=0-0,8-\r\n\r\n",
    );
    assert!(
        out.contains("multipart/byteranges; boundary=weir-"),
        "{out}"
    );
    assert!(
        out.contains("Content-Range: bytes 0-0/10\r\n\r\n0\r\n--")
            && out.contains("Content-Range: bytes 8-9/10\r\n\r\n89\r\n--"),
        "{out}"
    );
    let out = request(
        &mut w,
        "GET /d.txt HTTP/1.1\r\nHost: h\r\nRange: bytes=20-\r\n\r\n",
    );
    assert!(
        out.starts_with("HTTP/1.1 416") && out.contains("Content-Range: bytes */10\r\n"),
        "{out}"
    );
    assert!(w.open.is_empty());
}

#[test]
fn listings_when_no_welcome_file() {
    let mut w = World::new();
    w.dir("d");
    w.file("d/b <x>.txt", b"12345");
    w.dir("d/sub");
    let out = w.get("/d/");
    assert_eq!(status(&out), 200, "{out}");
    assert!(out.contains("<title>Index of /d/</title>"), "{out}");
    assert!(
        out.contains("<a href=\"b%20%3Cx%3E.txt\">b &lt;x&gt;.txt</a></td><td>5</td>"),
        "{out}"
    );
    assert!(out.contains("<a href=\"sub/\">sub/</a>"), "{out}");
    let mut w = World::with_config(|c| c.welcome.clear());
    w.dir("d");
    assert_eq!(status(&w.get("/d/")), 200);
    let mut w = World::with_config(|c| c.listing = false);
    w.dir("d");
    assert_eq!(status(&w.get("/d/")), 403);
}

/// What a fake script does.
#[derive(Clone, Debug)]
enum Script {
    /// Reads all of standard input, then prints a header section and echoes the input.
    Echo,
    /// Prints this to standard output and this to standard error, then exits with 0.
    Prints(&'static [u8], &'static [u8]),
    /// Prints nothing and never exits (until killed).
    Hangs,
    /// Prints this to standard output, then says nothing more and never exits.
    Stalls(&'static [u8]),
    /// Never reads its standard input (a write to it stays outstanding), prints nothing
    /// and never exits.
    Deaf,
}

#[derive(Debug)]
struct Running {
    script: Script,
    stdin: Vec<u8>,
    stdin_closed: bool,
    out: [Vec<u8>; 2],
    out_ready: bool,
    reads: [Option<usize>; 2],
    eof_sent: [bool; 2],
    exit_reported: bool,
    killed: bool,
    /// A `Stalls` script has printed what it prints.
    stalled: bool,
}

/// Scripted processes: the world's answer to the process effects.
#[derive(Debug, Default)]
struct Procs {
    scripts: BTreeMap<PathBuf, Script>,
    running: BTreeMap<StreamId, Running>,
    spawned: Vec<SpawnSpec>,
    released: BTreeSet<StreamId>,
    kills: usize,
    /// Most bytes one read of a script's output gives (a pipe's capacity); none: all.
    pipe: Option<usize>,
}

impl Procs {
    fn apply(&mut self, e: Effect, server: &mut Server, now: Now) {
        match e {
            Effect::Spawn { token, spec } => {
                let proc = StreamId(token);
                let result = match self.scripts.get(&spec.program) {
                    Some(s) => {
                        self.running.insert(
                            proc,
                            Running {
                                script: s.clone(),
                                stdin: Vec::new(),
                                stdin_closed: false,
                                out: [Vec::new(), Vec::new()],
                                out_ready: false,
                                reads: [None, None],
                                eof_sent: [false, false],
                                exit_reported: false,
                                killed: false,
                                stalled: false,
                            },
                        );
                        Completion::Spawned
                    }
                    None => Completion::Failed(IoError::NotFound),
                };
                self.spawned.push(spec);
                server.handle(Input::Completed { token, result }, now);
            }
            Effect::StreamWrite { stream: proc, data } => {
                let r = self.running.get_mut(&proc).expect("write to unknown proc");
                assert!(!r.stdin_closed, "write after StreamShutdownWrite");
                if matches!(r.script, Script::Deaf) {
                    return;
                }
                r.stdin.extend_from_slice(&data);
                server.handle(
                    Input::StreamWritten {
                        stream: proc,
                        n: data.len() as u64,
                    },
                    now,
                );
            }
            Effect::StreamShutdownWrite { stream: proc } => {
                self.running
                    .get_mut(&proc)
                    .expect("close of unknown proc")
                    .stdin_closed = true;
            }
            Effect::StreamRead {
                stream: proc,
                channel: stream,
                max,
            } => {
                let r = self.running.get_mut(&proc).expect("read of unknown proc");
                let i = if stream == Channel::Main { 0 } else { 1 };
                assert!(r.reads[i].is_none(), "two reads on one stream");
                r.reads[i] = Some(max);
            }
            Effect::Kill { stream: proc } => {
                self.kills += 1;
                if let Some(r) = self.running.get_mut(&proc) {
                    r.killed = true;
                }
            }
            Effect::StreamClose { stream: proc } => {
                assert!(self.released.insert(proc), "released twice");
                self.running.remove(&proc);
            }
            other => panic!("not a process effect: {other:?}"),
        }
    }

    /// Moves scripts along; true if anything happened.
    fn step(&mut self, server: &mut Server, now: Now) -> bool {
        let ids: Vec<StreamId> = self.running.keys().copied().collect();
        let pipe = self.pipe.unwrap_or(usize::MAX);
        for proc in ids {
            let r = self.running.get_mut(&proc).unwrap();
            if !r.out_ready && !r.killed {
                match &r.script {
                    Script::Echo if r.stdin_closed => {
                        let mut out = format!(
                            "Content-Type: text/plain\r\nX-Len: {}\r\n\r\n",
                            r.stdin.len()
                        )
                        .into_bytes();
                        out.extend_from_slice(&r.stdin);
                        r.out = [out, b"echoed\n".to_vec()];
                        r.out_ready = true;
                    }
                    Script::Prints(o, e) => {
                        r.out = [o.to_vec(), e.to_vec()];
                        r.out_ready = true;
                    }
                    Script::Stalls(o) if !r.stalled => {
                        r.out[0] = o.to_vec();
                        r.stalled = true;
                    }
                    _ => {}
                }
            }
            let done = r.out_ready || r.killed;
            for (i, stream) in [Channel::Main, Channel::Errors].into_iter().enumerate() {
                let r = self.running.get_mut(&proc).unwrap();
                let Some(max) = r.reads[i] else { continue };
                if !r.out[i].is_empty() {
                    let n = max.min(r.out[i].len()).min(pipe);
                    let data = Bytes::from(r.out[i].drain(..n).collect::<Vec<u8>>());
                    r.reads[i] = None;
                    server.handle(
                        Input::StreamReceived {
                            stream: proc,
                            channel: stream,
                            data,
                        },
                        now,
                    );
                    return true;
                }
                if done && !r.eof_sent[i] {
                    r.reads[i] = None;
                    r.eof_sent[i] = true;
                    server.handle(
                        Input::StreamEof {
                            stream: proc,
                            channel: stream,
                        },
                        now,
                    );
                    return true;
                }
            }
            let r = self.running.get_mut(&proc).unwrap();
            if done && r.eof_sent == [true, true] && !r.exit_reported {
                r.exit_reported = true;
                let status = if r.killed {
                    ExitStatus::Signal(9)
                } else {
                    ExitStatus::Code(0)
                };
                server.handle(
                    Input::Exited {
                        stream: proc,
                        status,
                    },
                    now,
                );
                return true;
            }
        }
        false
    }
}

fn cgi_world(conf: &str) -> World {
    let mut w = configured(conf);
    w.procs
        .scripts
        .insert(PathBuf::from("/srv/www/cgi-bin/echo"), Script::Echo);
    w.procs.scripts.insert(
        PathBuf::from("/srv/www/cgi-bin/hello"),
        Script::Prints(b"Content-Type: text/plain\n\nhello\n", b"a warning\n"),
    );
    w.procs.scripts.insert(
        PathBuf::from("/srv/www/cgi-bin/bad"),
        Script::Prints(b"no header section at all", b""),
    );
    w.procs.scripts.insert(
        PathBuf::from("/srv/www/cgi-bin/moved"),
        Script::Prints(b"Location: /hello.txt\n\n", b""),
    );
    w.procs.scripts.insert(
        PathBuf::from("/srv/www/cgi-bin/moved-to-a-fragment"),
        Script::Prints(b"Location: /hello.txt#top\n\n", b""),
    );
    w.procs
        .scripts
        .insert(PathBuf::from("/srv/www/cgi-bin/hang"), Script::Hangs);
    w.file("hello.txt", b"static hello");
    w
}

fn env_of(spec: &SpawnSpec, k: &str) -> Option<String> {
    spec.env
        .iter()
        .find(|(n, _)| n == k.as_bytes())
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

#[test]
fn under_chroot_the_shell_gets_every_path_as_seen_inside() {
    // The scripts the world knows are the inside paths: a spawn of an outside path fails.
    let mut w = configured("chroot /srv\nexec /cgi-bin/* cgi-bin/*\npass /*\n");
    w.procs.scripts.insert(
        PathBuf::from("/www/cgi-bin/hello"),
        Script::Prints(b"Content-Type: text/plain\n\nhi\n", b""),
    );
    w.files.insert(
        PathBuf::from("/www/a.txt"),
        (FileKind::File, b"inside".to_vec(), UnixTime(1_600_000_000)),
    );
    let out = w.get("/a.txt");
    assert!(out.ends_with("\r\n\r\ninside"), "{out}");
    let out = request(&mut w, "GET /cgi-bin/hello/x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let spec = &w.procs.spawned[0];
    assert_eq!(spec.program, PathBuf::from("/www/cgi-bin/hello"));
    assert_eq!(spec.cwd, PathBuf::from("/www/cgi-bin"));
    assert_eq!(
        env_of(spec, "SCRIPT_FILENAME").as_deref(),
        Some("/www/cgi-bin/hello")
    );
    assert_eq!(env_of(spec, "DOCUMENT_ROOT").as_deref(), Some("/www"));
    assert_eq!(env_of(spec, "PATH_TRANSLATED").as_deref(), Some("/www/x"));
    // The log names the script as configured.
    assert!(
        w.log.iter().all(|l| !l.contains("cgi /www/")),
        "{:?}",
        w.log
    );
}

#[test]
fn cgi_scripts_get_their_environment_and_stream_their_answer() {
    let mut w = cgi_world("exec /cgi-bin/* cgi-bin/*\npass /*\n");
    let out = request(
        &mut w,
        "GET /cgi-bin/hello/extra?a=1 HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    assert!(
        out.starts_with("HTTP/1.1 200") && out.contains("Transfer-Encoding: chunked"),
        "{out}"
    );
    assert!(out.contains("\r\n\r\n6\r\nhello\n\r\n0\r\n\r\n"), "{out}");
    let spec = &w.procs.spawned[0];
    assert_eq!(spec.cwd, PathBuf::from("/srv/www/cgi-bin"));
    assert!(spec.args.is_empty(), "nothing from the query in argv");
    assert_eq!(
        env_of(spec, "SCRIPT_NAME").as_deref(),
        Some("/cgi-bin/hello")
    );
    assert_eq!(env_of(spec, "PATH_INFO").as_deref(), Some("/extra"));
    assert_eq!(env_of(spec, "QUERY_STRING").as_deref(), Some("a=1"));
    assert!(
        w.log
            .iter()
            .any(|l| l.ends_with("/cgi-bin/hello: a warning")),
        "{:?}",
        w.log
    );
    assert_eq!(w.procs.released.len(), 1);
    assert!(w.procs.running.is_empty());
    // PATH_TRANSLATED maps PATH_INFO under the document root, and is absent without it
    // (RFC 3875 §4.1.6).
    assert_eq!(
        env_of(spec, "PATH_TRANSLATED").as_deref(),
        Some("/srv/www/extra")
    );
    request(&mut w, "GET /cgi-bin/hello HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(env_of(&w.procs.spawned[1], "PATH_TRANSLATED"), None);
}

#[test]
fn cgi_post_bodies_reach_standard_input() {
    let mut w = cgi_world("exec /cgi-bin/* cgi-bin/*\n");
    let out = request(
        &mut w,
        "POST /cgi-bin/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nabcde",
    );
    assert!(
        out.contains("X-Len: 5\r\n") && out.contains("5\r\nabcde\r\n0\r\n\r\n"),
        "{out}"
    );
    assert_eq!(
        env_of(&w.procs.spawned[0], "CONTENT_LENGTH").as_deref(),
        Some("5")
    );
    let out = request(&mut w, "POST /cgi-bin/echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    assert!(
        out.contains("X-Len: 5\r\n") && out.contains("abcde"),
        "{out}"
    );
    assert_eq!(
        env_of(&w.procs.spawned[1], "CONTENT_LENGTH").as_deref(),
        Some("5"),
        "a chunked body is spooled"
    );
    // A body many times the script's input buffer: what the script has taken makes room
    // for more, so back-pressure pauses the body without stopping it.
    let n = 4 * gateway::STDIN_BUFFER;
    let mut req = format!("POST /cgi-bin/echo HTTP/1.1\r\nHost: h\r\nContent-Length: {n}\r\n\r\n")
        .into_bytes();
    req.extend_from_slice(&vec![b'x'; n]);
    let id = w.connect();
    w.send(id, &req);
    let out = w.take_output(id);
    assert!(
        out.contains(&format!("X-Len: {n}\r\n")),
        "{}",
        &out[..out.len().min(300)]
    );
}

#[test]
fn cgi_failures() {
    let mut w = cgi_world("timeout gateway=2s\nexec /cgi-bin/* cgi-bin/*\npass /*\n");
    let out = request(&mut w, "GET /cgi-bin/bad HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status(&out), 502, "{out}");
    assert!(
        w.log.iter().any(|l| l.contains("bad output")),
        "{:?}",
        w.log
    );
    assert_eq!(
        status(&request(
            &mut w,
            "GET /cgi-bin/missing HTTP/1.1\r\nHost: h\r\n\r\n"
        )),
        404
    );
    let out = request(&mut w, "GET /cgi-bin/moved HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("static hello"),
        "a local Location re-runs the rules: {out}"
    );
    // RFC 3875 §6.2.2: a local redirect is a path and a query; anything else the request
    // rules would refuse is the script's error (502), not the client's (400).
    let out = request(
        &mut w,
        "GET /cgi-bin/moved-to-a-fragment HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    assert_eq!(status(&out), 502, "{out}");
    let id = w.connect();
    w.send(id, b"GET /cgi-bin/hang HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(w.take_output(id).is_empty());
    w.advance(Duration::from_secs(3));
    let out = w.take_output(id);
    assert_eq!(status(&out), 504, "{out}");
    assert!(w.procs.kills >= 1 && w.procs.running.is_empty());
}

#[test]
fn the_cgi_farm_queues_then_refuses() {
    let mut w = cgi_world("limit cgi=1\nexec /cgi-bin/* cgi-bin/*\n");
    let a = w.connect();
    w.send(a, b"GET /cgi-bin/hang HTTP/1.1\r\nHost: h\r\n\r\n");
    let b = w.connect();
    w.send(b, b"GET /cgi-bin/hello HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(w.procs.spawned.len(), 1, "the second waits");
    let c = w.connect();
    w.send(c, b"GET /cgi-bin/hello HTTP/1.1\r\nHost: h\r\n\r\n");
    let out = w.take_output(c);
    assert!(
        out.starts_with("HTTP/1.1 503") && out.contains("Retry-After: 1\r\n"),
        "{out}"
    );
    // The client of the hanging script goes away: its script is killed, the next one runs.
    w.reset(a);
    assert_eq!(w.procs.kills, 1);
    assert!(w.take_output(b).contains("hello"));
    // Both places are given back: a later request runs at once.
    let d = w.connect();
    w.send(d, b"GET /cgi-bin/hello HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(w.take_output(d).contains("hello"), "the farm is free again");
}

/// A queued request whose client goes leaves the farm's queue alone: the others wait on.
#[test]
fn a_queued_request_whose_client_goes_leaves_the_others_queued() {
    // Two places, both taken by hanging scripts; a queue of two.
    let mut w = cgi_world("limit cgi=2\nexec /cgi-bin/* cgi-bin/*\n");
    let [a, _] = [(); 2].map(|()| {
        let id = w.connect();
        w.send(id, b"GET /cgi-bin/hang HTTP/1.1\r\nHost: h\r\n\r\n");
        id
    });
    let [b, c] = [(); 2].map(|()| {
        let id = w.connect();
        w.send(id, b"GET /cgi-bin/hello HTTP/1.1\r\nHost: h\r\n\r\n");
        id
    });
    assert_eq!(w.procs.spawned.len(), 2, "both wait");
    w.reset(c);
    w.reset(a);
    assert!(
        w.take_output(b).contains("hello"),
        "the one still waiting runs"
    );
    assert_eq!(w.procs.spawned.len(), 3, "and the one that went does not");
}

/// A request queued for the farm keeps its body in its connection until its script
/// runs: none of it is taken (and lost) while it waits.
#[test]
fn a_queued_request_keeps_its_body_until_its_script_runs() {
    let mut w = cgi_world("limit cgi=1\nexec /cgi-bin/* cgi-bin/*\n");
    let a = w.connect();
    w.send(a, b"GET /cgi-bin/hang HTTP/1.1\r\nHost: h\r\n\r\n");
    let b = w.connect();
    w.send(
        b,
        b"POST /cgi-bin/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nabcde",
    );
    assert_eq!(w.procs.spawned.len(), 1, "the second waits");
    w.reset(a);
    let out = w.take_output(b);
    assert!(
        out.contains("X-Len: 5\r\n") && out.contains("5\r\nabcde\r\n0\r\n\r\n"),
        "{out}"
    );
}

#[test]
fn ten_local_redirects_are_followed_and_the_eleventh_is_a_500() {
    let mut w = cgi_world("exec /cgi-bin/* cgi-bin/*\npass /*\n");
    // r0 → r1 → … → r10 → /hello.txt
    for i in 0..=10 {
        let to = if i == 10 {
            "/hello.txt".to_string()
        } else {
            format!("/cgi-bin/r{}", i + 1)
        };
        let out: &'static [u8] = format!("Location: {to}\n\n").into_bytes().leak();
        w.procs.scripts.insert(
            PathBuf::from(format!("/srv/www/cgi-bin/r{i}")),
            Script::Prints(out, b""),
        );
    }
    let out = request(&mut w, "GET /cgi-bin/r1 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(out.ends_with("static hello"), "ten redirects: {out}");
    let out = request(&mut w, "GET /cgi-bin/r0 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status(&out), 500, "eleven: {out}");
}

/// A refused request's connection shuts its write side once the answer is out and
/// lingers for the client's end of stream (so a reset does not destroy the answer).
#[test]
fn a_refused_requests_connection_shuts_its_write_side_then_lingers() {
    let mut w = World::new();
    let id = w.connect();
    w.send(id, b"GET / HTTP/1.1\r\nHost: h\r\nBad Field: 1\r\n\r\n");
    assert_eq!(status(&w.take_output(id)), 400);
    assert!(w.clients[&id].shut_down_write, "the write side is shut");
    assert!(!w.clients[&id].closed, "lingering for the client's end");
    w.clients.get_mut(&id).unwrap().eof_to_send = true;
    w.run();
    assert!(w.clients[&id].closed);
}

#[test]
fn nph_scripts_answer_raw() {
    let mut w = cgi_world("access-log /var/log/weir.log\nexec /cgi-bin/* cgi-bin/*\n");
    w.procs.scripts.insert(
        PathBuf::from("/srv/www/cgi-bin/nph-raw"),
        Script::Prints(b"HTTP/1.1 299 Own Words\r\nX-Raw: 1\r\n\r\nraw body", b""),
    );
    let id = w.connect();
    w.send(id, b"GET /cgi-bin/nph-raw HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        w.take_output(id),
        "HTTP/1.1 299 Own Words\r\nX-Raw: 1\r\n\r\nraw body"
    );
    assert!(
        w.clients[&id].shut_down_write || w.clients[&id].closed,
        "the close delimits the raw response"
    );
    // The log reads the status off the script's own status line; the bytes are all it wrote.
    assert_eq!(w.access.len(), 1, "{:?}", w.access);
    w.assert_logged(0, "\"GET /cgi-bin/nph-raw HTTP/1.1\" 299 44 ");
}

#[test]
fn presentation_and_search_scripts() {
    let mut w = cgi_world("presentation text/markdown cgi-bin/hello\nsearch /docs/* cgi-bin/echo\ntype .md text/markdown\npass /*\n");
    w.file("readme.md", b"# title");
    w.file("docs/a.html", b"<p>doc</p>");
    let out = request(&mut w, "GET /readme.md HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(
        out.contains("hello"),
        "a markdown file goes to its presentation script: {out}"
    );
    let spec = w.procs.spawned.last().unwrap();
    assert_eq!(
        env_of(spec, "PATH_TRANSLATED").as_deref(),
        Some("/srv/www/readme.md")
    );
    assert_eq!(env_of(spec, "PATH_INFO").as_deref(), Some("/readme.md"));
    let out = request(&mut w, "GET /docs/a.html HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(
        out.ends_with("<p>doc</p>"),
        "no query: the document itself: {out}"
    );
    let out = request(
        &mut w,
        "GET /docs/a.html?q=weir HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    assert!(
        out.contains("X-Len: 0"),
        "a query: the search script: {out}"
    );
    let spec = w.procs.spawned.last().unwrap();
    assert_eq!(env_of(spec, "QUERY_STRING").as_deref(), Some("q=weir"));
    assert_eq!(
        env_of(spec, "PATH_TRANSLATED").as_deref(),
        Some("/srv/www/docs/a.html")
    );
    assert!(w.open.is_empty());
}

#[test]
fn one_access_log_line_per_response() {
    let mut w = cgi_world("access-log /var/log/weir.log\nexec /cgi-bin/* cgi-bin/*\npass /*\n");
    request(
        &mut w,
        "GET /hello.txt HTTP/1.1\r\nHost: h\r\nUser-Agent: t/1\r\n\r\n",
    );
    request(&mut w, "HEAD /hello.txt HTTP/1.1\r\nHost: h\r\n\r\n");
    request(&mut w, "GET /nope HTTP/1.0\r\n\r\n");
    request(&mut w, "GET /cgi-bin/hello HTTP/1.1\r\nHost: h\r\n\r\n");
    request(
        &mut w,
        "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n",
    );
    assert_eq!(w.access.len(), 5, "{:#?}", w.access);
    assert!(w.access[0].starts_with("127.0.0.1 - - [14/Nov/2023:22:13:20 +0000] \"GET /hello.txt HTTP/1.1\" 200 12 \"-\" \"t/1\""), "{}", w.access[0]);
    w.assert_logged(1, "\"HEAD /hello.txt HTTP/1.1\" 200 0 ");
    w.assert_logged(2, "\"GET /nope HTTP/1.0\" 404 ");
    w.assert_logged(3, "\"GET /cgi-bin/hello HTTP/1.1\" 200 6 ");
    w.assert_logged(4, "\"-\" 400 16 ");
}

#[test]
fn a_refused_request_is_logged_with_its_canned_answers_length() {
    let mut w = configured("access-log /var/log/weir.log\npass /*\n");
    let body = crate::http1::write::canned_body(400);
    let out = request(
        &mut w,
        "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n",
    );
    assert!(
        out.starts_with("HTTP/1.1 400") && out.ends_with(&body),
        "{out}"
    );
    let id = w.connect();
    w.send(
        id,
        format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000)).as_bytes(),
    );
    let out = w.take_output(id);
    let long = crate::http1::write::canned_body(status(&out));
    assert!(out.ends_with(&long), "{out}");
    assert_eq!(w.access.len(), 2, "{:#?}", w.access);
    w.assert_logged(0, &format!("\"-\" 400 {} ", body.len()));
    w.assert_logged(1, &format!("\"-\" {} {} ", status(&out), long.len()));
}

#[test]
fn a_script_answer_to_head_is_logged_with_no_body_bytes() {
    let mut w = cgi_world("access-log /var/log/weir.log\nexec /cgi-bin/* cgi-bin/*\n");
    let out = request(&mut w, "HEAD /cgi-bin/hello HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("\r\n\r\n"),
        "headers only: {out}"
    );
    request(&mut w, "GET /cgi-bin/hello HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(w.access.len(), 2, "{:#?}", w.access);
    w.assert_logged(0, "\"HEAD /cgi-bin/hello HTTP/1.1\" 200 0 ");
    w.assert_logged(1, "\"GET /cgi-bin/hello HTTP/1.1\" 200 6 ");
}

#[test]
fn a_body_error_after_the_answer_gets_no_record_of_its_own() {
    let mut w = cgi_world("access-log /var/log/weir.log\nexec /cgi-bin/* cgi-bin/*\npass /*\n");
    // A document answers a POST at once (405); its chunked body then breaks the protocol:
    // no second answer can be written, so there is no second record.
    let id = w.connect();
    w.send(
        id,
        b"POST /hello.txt HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n",
    );
    assert_eq!(status(&w.take_output(id)), 405);
    w.send(id, b"zz\r\n");
    assert!(w.take_output(id).is_empty(), "no answer after the first");
    assert_eq!(w.access.len(), 1, "{:#?}", w.access);
    w.assert_logged(0, "\"POST /hello.txt HTTP/1.1\" 405 ");
    // The same error before any answer (a script's body being spooled): the canned answer
    // is written, and logged once.
    let id = w.connect();
    w.send(
        id,
        b"POST /cgi-bin/echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    );
    let out = w.take_output(id);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert_eq!(w.access.len(), 2, "{:#?}", w.access);
    w.assert_logged(
        1,
        &format!("\"-\" 400 {} ", crate::http1::write::canned_body(400).len()),
    );
    assert!(w.procs.spawned.is_empty(), "the body never ended");
}

/// The script's input buffer holds `STDIN_BUFFER` bytes and still takes the next body
/// bytes; only more than that stops the server taking them.
#[test]
fn a_script_input_of_exactly_its_buffer_still_takes_body() {
    let mut w = cgi_world("exec /cgi-bin/* cgi-bin/*\n");
    w.procs
        .scripts
        .insert(PathBuf::from("/srv/www/cgi-bin/deaf"), Script::Deaf);
    let n = gateway::STDIN_BUFFER;
    let id = w.connect();
    let head = format!(
        "POST /cgi-bin/deaf HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        n + 2
    );
    w.send(id, head.as_bytes());
    let queued = |w: &World| {
        let g = w.server.gateways.values().next().expect("the script runs");
        g.exchange.body_queued()
    };
    w.send(id, &vec![b'x'; n]);
    assert_eq!(queued(&w), n);
    w.send(id, b"y");
    assert_eq!(queued(&w), n + 1, "taken at exactly the bound");
    w.send(id, b"z");
    assert_eq!(queued(&w), n + 1, "held back past it");
}

#[test]
fn a_refusal_behind_a_full_script_input_is_answered_and_logged_at_once() {
    let mut w = cgi_world(
        "access-log /var/log/weir.log\ntimeout body=2s gateway=60s\nexec /cgi-bin/* cgi-bin/*\n",
    );
    w.procs
        .scripts
        .insert(PathBuf::from("/srv/www/cgi-bin/deaf"), Script::Deaf);
    let id = w.connect();
    // More body than the script's input buffer and the connection's hold together, one
    // byte short of its Content-Length: the client then stalls.
    let n = 4 * gateway::STDIN_BUFFER;
    let mut req = format!(
        "POST /cgi-bin/deaf HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        n + 1
    )
    .into_bytes();
    req.extend_from_slice(&vec![b'x'; n]);
    w.send(id, &req);
    // Back-pressure: the server stopped reading the body.
    assert_eq!(w.procs.running.len(), 1);
    assert!(
        !w.clients[&id].to_server.is_empty(),
        "the body is held back"
    );
    assert!(w.clients[&id].read_wanted.is_none());
    assert!(w.access.is_empty(), "{:?}", w.access);
    // The body times out: the connection answers 408 itself, and that answer is logged as
    // it is handed over, although the script's input is still full.
    w.advance(Duration::from_secs(3));
    let out = w.take_output(id);
    assert_eq!(status(&out), 408, "{out}");
    let body = crate::http1::write::canned_body(408);
    assert!(out.ends_with(&body), "{out}");
    assert_eq!(w.access.len(), 1, "{:?}", w.access);
    w.assert_logged(0, &format!("\"-\" 408 {} ", body.len()));
    // The script's answer can never be written: it is killed, and nothing more is logged.
    assert_eq!(w.procs.kills, 1);
    assert!(w.procs.running.is_empty());
    assert!(
        w.log.iter().any(|l| l.contains("the request was refused")),
        "{:?}",
        w.log
    );
    assert!(
        !w.log.iter().any(|l| l.contains("client went away")),
        "logged once, as refused: {:?}",
        w.log
    );
    w.advance(Duration::from_secs(3));
    assert!(w.clients[&id].closed);
    assert_eq!(w.access.len(), 1, "{:?}", w.access);
}

#[test]
fn a_script_response_cut_short_still_gets_its_access_log_line() {
    let mut w =
        cgi_world("access-log /var/log/weir.log\ntimeout gateway=2s\nexec /cgi-bin/* cgi-bin/*\n");
    w.procs.scripts.insert(
        PathBuf::from("/srv/www/cgi-bin/late"),
        Script::Stalls(b"Content-Type: text/plain\n\nfirst part\n"),
    );
    // Cut by the gateway timeout after the head went out.
    let id = w.connect();
    w.send(id, b"GET /cgi-bin/late HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(w.take_output(id).starts_with("HTTP/1.1 200"));
    assert!(w.access.is_empty(), "{:?}", w.access);
    w.advance(Duration::from_secs(3));
    assert_eq!(w.access.len(), 1, "{:?}", w.access);
    w.assert_logged(0, "\"GET /cgi-bin/late HTTP/1.1\" 200 11 ");
    // Cut by the client hanging up: one line too, and only one.
    let id = w.connect();
    w.send(id, b"GET /cgi-bin/late?2 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(w.take_output(id).starts_with("HTTP/1.1 200"));
    w.clients.get_mut(&id).unwrap().eof_to_send = true;
    w.run();
    w.advance(Duration::from_secs(3));
    assert_eq!(w.access.len(), 2, "{:?}", w.access);
    w.assert_logged(1, "\"GET /cgi-bin/late?2 HTTP/1.1\" 200 11 ");
    // A script cut before its head answers 504, logged once as such.
    let id = w.connect();
    w.send(id, b"GET /cgi-bin/hang HTTP/1.1\r\nHost: h\r\n\r\n");
    w.advance(Duration::from_secs(3));
    assert_eq!(status(&w.take_output(id)), 504);
    assert_eq!(w.access.len(), 3, "{:?}", w.access);
    w.assert_logged(2, " 504 ");
}

/// A client that stops reading slows its script: the server reads the script's output
/// while less than `OUTPUT_BUFFER` (64 KiB) waits for the client, then stops until it
/// drains.
#[test]
fn a_client_that_stops_reading_stops_the_scripts_output_being_read() {
    let mut w = cgi_world("exec /cgi-bin/* cgi-bin/*\n");
    let total = 512 * 1024;
    let mut out = b"Content-Type: text/plain\n\n".to_vec();
    out.resize(out.len() + total, b'z');
    let out: &'static [u8] = out.leak();
    w.procs.scripts.insert(
        PathBuf::from("/srv/www/cgi-bin/big"),
        Script::Prints(out, b""),
    );
    // Output comes a pipe's 4 KiB at a time: reads go on until the client's queue is full.
    w.procs.pipe = Some(4096);
    let id = w.connect();
    w.clients.get_mut(&id).expect("it").stalled = true;
    w.send(id, b"GET /cgi-bin/big HTTP/1.1\r\nHost: h\r\n\r\n");
    let left = w.procs.running.values().next().expect("running").out[0].len();
    let read = out.len() - left;
    // 64 KiB, written out: the constant itself would move with a mistake in it.
    let buffer = 64 * 1024;
    assert!(
        (buffer..=buffer + 4096).contains(&read),
        "read {read} of {} with the client stalled",
        out.len()
    );
    w.unstall(id);
    let got = w.take_output(id);
    assert_eq!(got.bytes().filter(|&b| b == b'z').count(), total);
}

/// Output is read while less than `OUTPUT_BUFFER` waits for the client. Reads of 64
/// bytes and a script header section sized to match (spaces after a field's colon are
/// not passed on) make the queue reach the bound exactly, where reading must stop.
#[test]
fn a_stalled_clients_queue_stops_at_exactly_the_output_buffer() {
    let total = 80 * 1024;
    let script = |spaces: usize| -> &'static [u8] {
        let pad = " ".repeat(spaces);
        let mut out =
            format!("Content-Type:{pad}text/plain\nContent-Length: {total}\n\n").into_bytes();
        out.resize(out.len() + total, b'z');
        out.leak()
    };
    let run = |spaces: usize, stalled: bool| {
        let mut w = cgi_world("exec /cgi-bin/* cgi-bin/*\n");
        w.procs.scripts.insert(
            PathBuf::from("/srv/www/cgi-bin/big"),
            Script::Prints(script(spaces), b""),
        );
        w.procs.pipe = Some(64);
        let id = w.connect();
        w.clients.get_mut(&id).expect("it").stalled = stalled;
        w.send(id, b"GET /cgi-bin/big HTTP/1.1\r\nHost: h\r\n\r\n");
        (w, id)
    };
    // The response head's length, from an answer to a client that reads.
    let (mut w, id) = run(0, false);
    let whole = w.take_output(id);
    let head = whole.find("\r\n\r\n").expect("a head") + 4;
    assert_eq!(whole.len() - head, total);
    // Body bytes queued after k reads: head + 64k - (the script's header section).
    let section = script(0).len() - total;
    let gap = gateway::OUTPUT_BUFFER as usize + section - head;
    let spaces = (64 - gap % 64) % 64;
    let (mut w, id) = run(spaces, true);
    assert_eq!(
        w.server.conns[&id].conn.transmit_queued(),
        gateway::OUTPUT_BUFFER
    );
    w.unstall(id);
    let got = w.take_output(id);
    assert_eq!(got.bytes().filter(|&b| b == b'z').count(), total);
}

#[test]
fn a_client_that_hangs_up_takes_its_script_with_it() {
    let mut w = cgi_world("exec /cgi-bin/* cgi-bin/*\n");
    let id = w.connect();
    w.send(id, b"GET /cgi-bin/hang HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(w.procs.running.len(), 1);
    w.clients.get_mut(&id).unwrap().eof_to_send = true;
    w.run();
    assert_eq!(w.procs.kills, 1);
    assert!(w.procs.running.is_empty() && w.clients[&id].closed);
    assert!(
        w.log.iter().any(|l| l.contains("client went away")),
        "{:?}",
        w.log
    );
}

fn etag_of(resp: &str) -> String {
    resp.lines()
        .find_map(|l| l.strip_prefix("ETag: "))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn the_cache_answers_without_file_effects_until_revalidation() {
    let mut w = World::new();
    w.file("a.txt", b"version one");
    let first = w.get("/a.txt");
    assert!(first.ends_with("version one"));
    assert_eq!(
        (w.opens, w.reads),
        (1, 1),
        "one open and one read fill the cache"
    );
    for _ in 0..5 {
        assert!(w.get("/a.txt").ends_with("version one"));
    }
    assert_eq!((w.opens, w.reads), (1, 1), "fresh hits need no effect");
    // Changed on disk, same length and mtime second: within the revalidate time the old
    // version is served whole, with its own validators.
    w.files.insert(
        PathBuf::from("/srv/www/a.txt"),
        (
            FileKind::File,
            b"version TWO".to_vec(),
            UnixTime(1_600_000_099),
        ),
    );
    let cached = w.get("/a.txt");
    assert!(
        cached.ends_with("version one") && etag_of(&cached) == etag_of(&first),
        "{cached}"
    );
    w.advance(Duration::from_millis(1500));
    let fresh = w.get("/a.txt");
    assert!(fresh.ends_with("version TWO"), "{fresh}");
    assert_ne!(
        etag_of(&fresh),
        etag_of(&first),
        "a changed file never keeps its old validators"
    );
    assert!(w.open.is_empty());
}

#[test]
fn an_unchanged_file_is_revalidated_without_a_read() {
    let mut w = World::new();
    w.file("a.txt", b"same");
    w.get("/a.txt");
    w.advance(Duration::from_secs(2));
    assert!(w.get("/a.txt").ends_with("same"));
    assert_eq!(
        (w.opens, w.reads),
        (2, 1),
        "reopened to compare, not read again"
    );
    assert!(w.open.is_empty());
}

#[test]
fn missing_files_and_directories_are_cached_too() {
    let mut w = World::new();
    w.dir("d");
    w.file("d/index.html", b"welcome");
    for _ in 0..3 {
        assert_eq!(status(&w.get("/nope")), 404);
        assert!(w.get("/d/").ends_with("welcome"));
    }
    assert_eq!(w.opens, 3, "/nope, /d/ and /d/index.html once each");
}

#[test]
fn cache_off_and_nocache_ports_always_open() {
    let mut w = World::with_config(|c| c.cache = None);
    w.file("a.txt", b"x");
    for _ in 0..3 {
        w.get("/a.txt");
    }
    assert_eq!((w.opens, w.reads), (3, 0));
    let mut w = World::with_config(|c| {
        c.nocache = vec![core::net::SocketAddr::from(([127, 0, 0, 1], 40000))]
    });
    w.file("a.txt", b"x");
    for _ in 0..3 {
        w.get("/a.txt");
    }
    assert_eq!(
        (w.opens, w.reads),
        (3, 0),
        "the world's connections arrive on the nocache address"
    );
    assert!(w.open.is_empty());
    // A nocache address names a port: another port of the same address caches, and an
    // unspecified address stands for every address of its port.
    for (nocache, opens) in [
        ([127, 0, 0, 1], 9999),
        ([0, 0, 0, 0], 40000),
        ([127, 0, 0, 2], 40000),
    ]
    .map(|(ip, port)| core::net::SocketAddr::from((ip, port)))
    .into_iter()
    .zip([1, 3, 1])
    {
        let mut w = World::with_config(|c| c.nocache = vec![nocache]);
        w.file("a.txt", b"x");
        for _ in 0..3 {
            w.get("/a.txt");
        }
        assert_eq!(w.opens, opens, "nocache {nocache}");
    }
}

#[test]
fn large_files_are_not_kept() {
    let mut w = World::with_config(|c| {
        c.cache = Some(crate::config::CacheSettings {
            max_file: 4,
            ..Default::default()
        })
    });
    w.file("big", b"0123456789");
    for _ in 0..2 {
        assert!(w.get("/big").ends_with("0123456789"));
    }
    assert_eq!((w.opens, w.reads), (2, 0), "sent from the file each time");
    assert!(w.open.is_empty());
}

/// An idle connection's entry packs its `Reuse` and the time it went idle into one word
/// and gives both back whole: the shedding order (never-used first, oldest first) reads
/// them from it.
#[test]
fn an_idle_entry_gives_back_what_it_packed() {
    for reuse in [Reuse::Fresh, Reuse::KeptAlive] {
        for t in [0, 1, 2, 1_000, u64::MAX >> 2] {
            let key = IdleEntry::new(reuse, Time(t)).key(ConnId(7));
            assert_eq!(key, (reuse, Time(t), ConnId(7)));
        }
    }
}

/// A script that has sent all its response but lingers holds up a shutdown only for its
/// grace: then it is stopped and the server exits.
#[test]
fn a_script_lingering_after_its_answer_is_stopped_when_the_grace_ends() {
    let mut w = cgi_world("exec /cgi-bin/* cgi-bin/*\n");
    w.procs.scripts.insert(
        PathBuf::from("/srv/www/cgi-bin/lingers"),
        Script::Stalls(b"Content-Type: text/plain\nContent-Length: 3\n\nok\n"),
    );
    let id = w.connect();
    w.send(
        id,
        b"GET /cgi-bin/lingers HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    let out = w.take_output(id);
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("\r\n\r\nok\n"),
        "{out}"
    );
    w.server.handle(Input::Shutdown, w.now);
    w.run();
    assert_eq!(w.exit, None, "the script still runs");
    w.advance(Duration::from_secs(11));
    assert_eq!(w.procs.kills, 1);
    assert!(w.procs.running.is_empty(), "its streams are let go");
    assert_eq!(w.exit, Some(0));
}

/// A request waiting for its file when its body turns out bad is let go at once: the
/// connection answers 400 and lingers, and the file that opens later is closed unread.
#[test]
fn a_request_whose_body_breaks_while_its_file_opens_is_let_go() {
    let mut w = World::new();
    w.file("a", b"A");
    let id = w.connect();
    let token = w
        .receive_holding_open(
            id,
            b"GET /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .expect("an Open");
    assert_eq!(w.receive_holding_open(id, b"zz\r\n"), None);
    assert_eq!(status(&w.take_output(id)), 400);
    assert!(
        w.server.parked.is_empty(),
        "the request is let go with its broken body, not when its Open completes"
    );
    w.complete_open(token, b"A");
    assert!(w.open.is_empty(), "the late file was not closed");
    assert_eq!(w.reads, 0, "the late file was read");
    assert_eq!(w.take_output(id), "");
}
