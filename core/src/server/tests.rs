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

struct Client {
    to_server: Vec<u8>,
    from_server: Vec<u8>,
    read_wanted: Option<usize>,
    eof_to_send: bool,
    shut_down_write: bool,
    closed: bool,
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
            },
        );
        let addr = core::net::SocketAddr::from(([127, 0, 0, 1], 40000));
        self.server.handle(
            Input::Accepted {
                listener: ListenerId(0),
                conn: id,
                peer: addr,
                local: addr,
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
            while let Some(e) = self.server.poll_effect() {
                moved = true;
                self.apply(e);
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
            Effect::Open { token, path } => {
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
            Effect::CloseFile { file } => {
                assert!(
                    self.open.remove(&file).is_some(),
                    "closing a file that is not open"
                );
                assert!(self.ever_closed.insert(file));
            }
            Effect::PauseAccept => self.paused = true,
            Effect::ResumeAccept => self.paused = false,
            Effect::Exit { code } => self.exit = Some(code),
        }
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
    let id = w.connect();
    w.send(id, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    let out = w.take_output(id);
    assert_eq!(status(&out), 200, "{out}");
    assert!(out.contains("Allow: GET, HEAD, OPTIONS\r\n"));
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
    // Deliver the request but hold the Open: take effects by hand.
    w.clients.get_mut(&id).unwrap().read_wanted = None;
    w.server.handle(
        Input::Received {
            conn: id,
            data: Bytes::from_static(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"),
        },
        w.now,
    );
    let mut open = None;
    while let Some(e) = w.server.poll_effect() {
        match e {
            Effect::Open { token, .. } => open = Some(token),
            other => w.apply(other),
        }
    }
    let token = open.expect("an Open");
    w.server.handle(
        Input::ConnFailed {
            conn: id,
            error: IoError::Reset,
        },
        w.now,
    );
    w.run();
    assert!(w.clients[&id].closed);
    w.open.insert(FileId(token), b"A".to_vec());
    w.server.handle(
        Input::Completed {
            token,
            result: Completion::Opened(FileMeta {
                kind: FileKind::File,
                len: 1,
                mtime: UnixTime(0),
                inode: 1,
            }),
        },
        w.now,
    );
    w.run();
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
fn accepting_pauses_at_the_connection_limit() {
    let mut w = World::with_config(|c| c.limits.connections_max = 2);
    let a = w.connect();
    assert!(!w.paused);
    let _b = w.connect();
    assert!(w.paused);
    w.server.handle(
        Input::ConnFailed {
            conn: a,
            error: IoError::Reset,
        },
        w.now,
    );
    w.run();
    assert!(!w.paused);
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
