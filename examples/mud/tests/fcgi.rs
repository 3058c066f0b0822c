//! The MUD over real sockets, spoken to in FastCGI with weir's own record codec.
//!
//! Most tests start the `weir-mud` binary as weir's launcher does: a listening Unix socket
//! on fd 0, /dev/null on fd 1, stderr to a file. Those that need short timeouts (the 25 s
//! long poll, the 10 min idle logout) run `weir_mud::run_with` on a thread instead. Every
//! read has a timeout and every child is killed on drop, so no test can hang.

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use weir_core::fcgi::{
    decode_params, encode, encode_params, encode_stream, Decoder, ProtocolStatus, Record, Role,
    StreamKind, RECORD_LEN_MAX,
};
use weir_mud::Settings;

/// The longest any single read waits.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A directory of its own for each server, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("weir-mud-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A running MUD: the binary (killed on drop) or a thread (left to the process's end).
struct Mud {
    socket: PathBuf,
    child: Option<Child>,
    dir: TempDir,
}

impl Mud {
    /// The binary, with its listening socket on fd 0 as weir's launcher gives it.
    fn spawn() -> Mud {
        let dir = TempDir::new();
        let socket = dir.0.join("mud.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        let stderr = File::create(dir.0.join("stderr")).expect("stderr file");
        let child = Command::new(env!("CARGO_BIN_EXE_weir-mud"))
            .stdin(Stdio::from(OwnedFd::from(listener)))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn weir-mud");
        Mud {
            socket,
            child: Some(child),
            dir,
        }
    }

    /// The library's loop on a thread of this process, with these settings.
    fn thread(settings: Settings) -> Mud {
        let dir = TempDir::new();
        let socket = dir.0.join("mud.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        thread::spawn(move || weir_mud::run_with(listener, settings));
        Mud {
            socket,
            child: None,
            dir,
        }
    }

    fn connect(&self) -> Fcgi {
        Fcgi::connect(&self.socket)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("a spawned MUD").id()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.dir.0.join("stderr")).unwrap_or_default()
    }

    /// Sends one HTTP request on a new connection (no keep-alive) and reads the answer.
    fn http(&self, method: &str, place: &str, query: &str, cookie: &str, body: &str) -> Resp {
        let mut c = self.connect();
        c.request(1, false, &http_params(method, place, query, cookie), body);
        c.response(1)
    }

    fn login(&self, name: &str) -> Player {
        let r = self.http("POST", "login", "", "", &format!("name={name}"));
        assert_eq!(r.status, 200, "login {name}: {}", r.body);
        let set = r.header("set-cookie").expect("a cookie");
        let cookie = set.split(';').next().unwrap().to_owned();
        assert!(
            cookie.starts_with("mud=") && cookie.len() == 4 + 32,
            "{cookie}"
        );
        Player {
            name: name.to_owned(),
            cookie,
            seq: 0,
        }
    }

    fn cmd(&self, p: &Player, line: &str) -> Resp {
        let body = format!("line={}", line.replace(' ', "+"));
        self.http("POST", "cmd", "", &p.cookie, &body)
    }

    /// Polls for the player's events (there must be some, or this waits out the read
    /// timeout) and moves its `seq` on.
    fn events(&self, p: &mut Player) -> Vec<String> {
        let r = self.http("GET", "events", &format!("after={}", p.seq), &p.cookie, "");
        assert_eq!(r.status, 200, "{}: {}", p.name, r.body);
        p.take(&r.body)
    }

    /// Starts a long poll for the player on a connection of its own.
    fn park(&self, p: &Player) -> Fcgi {
        let mut c = self.connect();
        let query = format!("after={}", p.seq);
        c.request(
            1,
            false,
            &http_params("GET", "events", &query, &p.cookie),
            "",
        );
        c
    }
}

impl Drop for Mud {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Player {
    name: String,
    cookie: String,
    seq: u64,
}

impl Player {
    /// The texts of an events body's lines, checking their order and noting the last.
    fn take(&mut self, body: &str) -> Vec<String> {
        body.lines()
            .map(|line| {
                let (seq, text) = line.split_once(' ').expect("SEQ TEXT");
                let seq: u64 = seq.parse().expect("a sequence number");
                assert!(seq > self.seq, "{seq} after {}", self.seq);
                self.seq = seq;
                text.to_owned()
            })
            .collect()
    }
}

/// The meta-variables weir sends for `exec /mud/* service=mud`.
fn http_params(method: &str, place: &str, query: &str, cookie: &str) -> Vec<(String, String)> {
    let mut p = vec![
        ("GATEWAY_INTERFACE", "CGI/1.1".to_owned()),
        ("REQUEST_METHOD", method.to_owned()),
        ("REQUEST_URI", format!("/mud/{place}?{query}")),
        ("QUERY_STRING", query.to_owned()),
        ("SCRIPT_NAME", "/mud".to_owned()),
        ("PATH_INFO", format!("/{place}")),
    ];
    if method == "POST" {
        p.push((
            "CONTENT_TYPE",
            "application/x-www-form-urlencoded".to_owned(),
        ));
    }
    if !cookie.is_empty() {
        p.push(("HTTP_COOKIE", cookie.to_owned()));
    }
    p.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// An HTTP response, from the CGI output in STDOUT.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn parse(cgi: &[u8]) -> Resp {
        let text = String::from_utf8(cgi.to_vec()).expect("UTF-8 output");
        let (head, body) = text.split_once("\r\n\r\n").expect("a header section");
        let headers: Vec<(String, String)> = head
            .split("\r\n")
            .map(|l| {
                let (n, v) = l.split_once(": ").expect("a field");
                (n.to_owned(), v.to_owned())
            })
            .collect();
        let status = headers
            .iter()
            .find(|(n, _)| n == "Status")
            .map(|(_, v)| v[..3].parse().expect("a status code"))
            .expect("a Status field");
        Resp {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A FastCGI client connection (the side weir plays).
struct Fcgi {
    stream: UnixStream,
    decoder: Decoder,
}

impl Fcgi {
    fn connect(path: &Path) -> Fcgi {
        let stream = UnixStream::connect(path).expect("connect");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        Fcgi {
            stream,
            decoder: Decoder::new(RECORD_LEN_MAX),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// BEGIN_REQUEST, PARAMS and STDIN of one request.
    fn request(&mut self, id: u16, keep_conn: bool, params: &[(String, String)], body: &str) {
        let mut out = BytesMut::new();
        let role = Role::Responder;
        encode(
            &Record::BeginRequest {
                id,
                role,
                keep_conn,
            },
            &mut out,
        );
        let mut p = BytesMut::new();
        encode_params(
            params.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
            &mut p,
        );
        encode_stream(StreamKind::Params, id, &p, &mut out);
        encode_stream(StreamKind::Stdin, id, body.as_bytes(), &mut out);
        self.send(&out);
    }

    /// The next record, or `None` at the end of the stream. Panics after READ_TIMEOUT.
    fn record(&mut self) -> Option<Record> {
        loop {
            if let Some(r) = self.decoder.next_record().expect("valid records") {
                return Some(r);
            }
            let mut buf = [0u8; 16 * 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("no record within {READ_TIMEOUT:?}: {e}"),
            }
        }
    }

    /// Records up to and including request `id`'s END_REQUEST: its STDOUT joined, and the
    /// END_REQUEST.
    fn finish(&mut self, id: u16) -> (Vec<u8>, Record) {
        let mut stdout = Vec::new();
        loop {
            match self
                .record()
                .expect("a response before the connection closed")
            {
                Record::Stdout { id: i, data } if i == id => stdout.extend_from_slice(&data),
                end @ Record::EndRequest { id: i, .. } if i == id => return (stdout, end),
                other => panic!("unexpected record {other:?}"),
            }
        }
    }

    /// The HTTP response to request `id`, which must complete normally.
    fn response(&mut self, id: u16) -> Resp {
        let (stdout, end) = self.finish(id);
        let Record::EndRequest {
            app_status,
            protocol_status,
            ..
        } = end
        else {
            unreachable!()
        };
        assert_eq!(
            (app_status, protocol_status),
            (0, ProtocolStatus::RequestComplete)
        );
        Resp::parse(&stdout)
    }

    /// Whether nothing arrives within `wait` (what does arrive is kept for `record`).
    fn quiet_for(&mut self, wait: Duration) -> bool {
        if self.decoder.buffered() > 0 {
            return false;
        }
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 16 * 1024];
        let got = self.stream.read(&mut buf);
        self.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        match got {
            Ok(n) => {
                self.decoder.push(&buf[..n]);
                false
            }
            Err(e) => matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        }
    }

    /// Asserts the server closes the connection (within the read timeout).
    fn expect_closed(&mut self) {
        if let Some(r) = self.record() {
            panic!("expected the connection to close, got {r:?}");
        }
    }
}

#[test]
fn three_players_meet_and_hear_each_other() {
    let mud = Mud::spawn();
    let mut alice = mud.login("alice");
    let mut bob = mud.login("bob");
    let mut carol = mud.login("carol");
    assert_eq!(
        mud.events(&mut alice),
        [
            "bob arrives, shaking off the rain.",
            "carol arrives, shaking off the rain."
        ]
    );
    assert_eq!(
        mud.events(&mut bob),
        ["carol arrives, shaking off the rain."]
    );

    // They meet in the mill yard, one after the other.
    let r = mud.cmd(&alice, "go north");
    assert!(r.body.starts_with("Mill Yard\n"), "{}", r.body);
    assert!(r.body.contains("You are alone here."), "{}", r.body);
    assert!(mud.cmd(&bob, "n").body.contains("Here: alice."));
    assert!(mud.cmd(&carol, "north").body.contains("Here: alice, bob."));
    assert_eq!(
        mud.events(&mut alice),
        [
            "bob arrives from the south.",
            "carol arrives from the south."
        ]
    );
    // Bob saw alice leave the gatehouse and carol follow him.
    assert_eq!(
        mud.events(&mut bob),
        ["alice leaves north.", "carol arrives from the south."]
    );
    assert_eq!(
        mud.events(&mut carol),
        ["alice leaves north.", "bob leaves north."]
    );

    let r = mud.cmd(&alice, "say hello, both of you");
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "You say: hello, both of you\n")
    );
    mud.cmd(&bob, "say hi alice");
    mud.cmd(&carol, "'evening");
    assert_eq!(
        mud.events(&mut alice),
        ["bob says: hi alice", "carol says: evening"]
    );
    assert_eq!(
        mud.events(&mut bob),
        ["alice says: hello, both of you", "carol says: evening"]
    );
    assert_eq!(
        mud.events(&mut carol),
        ["alice says: hello, both of you", "bob says: hi alice"]
    );
    let who = mud.cmd(&carol, "who");
    assert_eq!(
        who.body,
        "3 players:\n  alice (Mill Yard)\n  bob (Mill Yard)\n  carol (Mill Yard)\n"
    );
}

#[test]
fn a_parked_poll_is_answered_within_100ms_of_a_say() {
    let mud = Mud::spawn();
    let mut alice = mud.login("alice");
    let bob = mud.login("bob");
    mud.events(&mut alice);
    let mut poll = mud.park(&alice);
    assert!(
        poll.quiet_for(Duration::from_millis(200)),
        "answered with nothing to say"
    );
    let said = Instant::now();
    assert_eq!(mud.cmd(&bob, "say now").status, 200);
    let r = poll.response(1);
    let waited = said.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(alice.take(&r.body), ["bob says: now"]);
    assert!(
        waited < Duration::from_millis(100),
        "answered {waited:?} after the say"
    );
}

#[test]
fn a_hundred_long_polls_are_held_by_one_thread() {
    let mud = Mud::spawn();
    let mut players: Vec<Player> = (0..100).map(|i| mud.login(&format!("p{i}"))).collect();
    let speaker = mud.login("speaker");
    // Each has seen every arrival after its own; poll from the last sequence number.
    let last = speaker_seq(&mud, &speaker);
    for p in &mut players {
        p.seq = last;
    }
    let mut polls: Vec<Fcgi> = players.iter().map(|p| mud.park(p)).collect();
    // Give the server time to take every poll in, then count its threads.
    thread::sleep(Duration::from_millis(300));
    let tasks = fs::read_dir(format!("/proc/{}/task", mud.pid()))
        .expect("the server's /proc entry")
        .count();
    assert_eq!(tasks, 1, "the MUD runs on one thread");
    assert!(polls[0].quiet_for(Duration::from_millis(50)));
    assert!(polls[99].quiet_for(Duration::from_millis(50)));

    let said = Instant::now();
    mud.cmd(&speaker, "say wake up");
    for (p, poll) in players.iter_mut().zip(&mut polls) {
        let r = poll.response(1);
        assert_eq!(p.take(&r.body), ["speaker says: wake up"], "{}", p.name);
    }
    let waited = said.elapsed();
    assert!(
        waited < Duration::from_secs(2),
        "all answered in {waited:?}"
    );
}

/// The last sequence number the player can know of: that of its own most recent event,
/// which it learns by making one and asking another player.
fn speaker_seq(mud: &Mud, speaker: &Player) -> u64 {
    let mut witness = mud.login("witness");
    mud.cmd(speaker, "say mark");
    let lines = mud.events(&mut witness);
    assert_eq!(lines, ["speaker says: mark"]);
    witness.seq
}

#[test]
fn a_taken_name_is_409_and_a_bad_one_400() {
    let mud = Mud::spawn();
    mud.login("alice");
    let r = mud.http("POST", "login", "", "", "name=Alice");
    assert_eq!(r.status, 409);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.body, "Alice is already playing.\n");
    assert_eq!(r.header("set-cookie"), None);
    let r = mud.http("POST", "login", "", "", "name=no+spaces");
    assert_eq!(r.status, 400);
    let r = mud.http(
        "POST",
        "cmd",
        "",
        "mud=0123456789abcdef0123456789abcdef",
        "line=look",
    );
    assert_eq!(r.status, 401);
    let r = mud.http("GET", "events", "after=0", "", "");
    assert_eq!(r.status, 401);
}

#[test]
fn keep_alive_carries_many_requests_and_its_absence_closes() {
    let mud = Mud::spawn();
    let mut c = mud.connect();
    c.request(1, true, &http_params("POST", "login", "", ""), "name=alice");
    let r = c.response(1);
    assert_eq!(r.status, 200);
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    for (id, line) in [(2, "look"), (3, "n"), (1, "who"), (7, "s")] {
        let body = format!("line={line}");
        c.request(id, true, &http_params("POST", "cmd", "", &cookie), &body);
        assert_eq!(c.response(id).status, 200, "{line}");
    }
    c.request(
        9,
        false,
        &http_params("POST", "cmd", "", &cookie),
        "line=look",
    );
    assert!(c.response(9).body.starts_with("Gatehouse\n"));
    c.expect_closed();
}

#[test]
fn bad_records_close_that_connection_only() {
    let mud = Mud::spawn();
    let mut alice = mud.login("alice");
    let bob = mud.login("bob");
    mud.events(&mut alice);
    let mut poll = mud.park(&alice);
    let mut idle = mud.connect();

    let mut bad = mud.connect();
    bad.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    bad.expect_closed();
    let mut bad = mud.connect();
    let mut out = BytesMut::new();
    encode_stream(StreamKind::Stdout, 1, b"not from a client", &mut out);
    bad.send(&out);
    bad.expect_closed();

    // Everyone else goes on: new requests, the idle connection, the parked poll.
    assert_eq!(mud.cmd(&bob, "say still here").status, 200);
    assert_eq!(alice.take(&poll.response(1).body), ["bob says: still here"]);
    idle.request(
        1,
        false,
        &http_params("POST", "cmd", "", &bob.cookie),
        "line=who",
    );
    assert_eq!(idle.response(1).status, 200);
    let log = mud.stderr();
    assert!(
        log.contains("weir-mud: closing a FastCGI connection: FastCGI record of version 71"),
        "{log}"
    );
    assert!(log.contains("only an application sends"), "{log}");
}

#[test]
fn management_records_and_a_second_request_at_once() {
    let mud = Mud::spawn();
    let mut c = mud.connect();
    let mut out = BytesMut::new();
    let mut q = BytesMut::new();
    encode_params(
        [
            (&b"FCGI_MAX_CONNS"[..], &b""[..]),
            (b"FCGI_MAX_REQS", b""),
            (b"FCGI_MPXS_CONNS", b""),
        ],
        &mut q,
    );
    encode(&Record::GetValues { data: q.freeze() }, &mut out);
    let data = Bytes::from_static(b"");
    encode(
        &Record::Other {
            kind: 99,
            id: 0,
            data,
        },
        &mut out,
    );
    c.send(&out);
    let Some(Record::GetValuesResult { data }) = c.record() else {
        panic!("no GET_VALUES_RESULT")
    };
    let values = decode_params(&data).unwrap();
    let value = |name: &str| {
        values
            .iter()
            .find(|(n, _)| n.as_ref() == name.as_bytes())
            .map(|(_, v)| String::from_utf8(v.to_vec()).unwrap())
    };
    let conns: usize = value("FCGI_MAX_CONNS").unwrap().parse().unwrap();
    assert!(conns >= 100, "FCGI_MAX_CONNS={conns}");
    assert_eq!(value("FCGI_MAX_REQS"), value("FCGI_MAX_CONNS"));
    assert_eq!(value("FCGI_MPXS_CONNS").as_deref(), Some("0"));
    assert_eq!(c.record(), Some(Record::UnknownType { kind: 99 }));

    // A long poll parks as request 1; request 2 on the same connection is refused, and
    // request 1 is answered when something happens.
    let mut alice = mud.login("alice");
    let bob = mud.login("bob");
    mud.events(&mut alice);
    let query = format!("after={}", alice.seq);
    c.request(
        1,
        true,
        &http_params("GET", "events", &query, &alice.cookie),
        "",
    );
    c.request(
        2,
        true,
        &http_params("POST", "cmd", "", &alice.cookie),
        "line=look",
    );
    assert_eq!(
        c.record(),
        Some(Record::EndRequest {
            id: 2,
            app_status: 0,
            protocol_status: ProtocolStatus::CantMpxConn
        })
    );
    mud.cmd(&bob, "say there");
    assert_eq!(alice.take(&c.response(1).body), ["bob says: there"]);
    // Aborting a parked poll ends it at once; the connection stays.
    c.request(
        3,
        true,
        &http_params(
            "GET",
            "events",
            &format!("after={}", alice.seq),
            &alice.cookie,
        ),
        "",
    );
    assert!(c.quiet_for(Duration::from_millis(100)));
    let mut out = BytesMut::new();
    encode(&Record::AbortRequest { id: 3 }, &mut out);
    c.send(&out);
    let (stdout, end) = c.finish(3);
    assert!(stdout.is_empty());
    assert_eq!(
        end,
        Record::EndRequest {
            id: 3,
            app_status: 1,
            protocol_status: ProtocolStatus::RequestComplete
        }
    );
    c.request(
        4,
        false,
        &http_params("POST", "cmd", "", &alice.cookie),
        "line=look",
    );
    assert_eq!(c.response(4).status, 200);
}

#[test]
fn a_client_that_hangs_up_takes_its_poll_with_it() {
    let mud = Mud::spawn();
    let mut alice = mud.login("alice");
    let bob = mud.login("bob");
    mud.events(&mut alice);
    let polls: Vec<Fcgi> = (0..5).map(|_| mud.park(&alice)).collect();
    thread::sleep(Duration::from_millis(100));
    drop(polls);
    thread::sleep(Duration::from_millis(100));
    // Nothing is written to the closed connections, and the server goes on.
    assert_eq!(mud.cmd(&bob, "say anyone?").status, 200);
    assert_eq!(mud.events(&mut alice), ["bob says: anyone?"]);
    assert_eq!(mud.stderr(), "", "nothing worth logging happened");
}

#[test]
fn a_long_poll_with_nothing_to_show_ends_empty_after_its_timeout() {
    let mud = Mud::thread(Settings {
        poll_timeout: Duration::from_millis(300),
        ..Settings::default()
    });
    let alice = mud.login("alice");
    let started = Instant::now();
    let mut poll = mud.park(&alice);
    let r = poll.response(1);
    let waited = started.elapsed();
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}

#[test]
fn idle_players_are_logged_out_and_the_room_is_told() {
    let mud = Mud::thread(Settings {
        poll_timeout: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(600),
        ..Settings::default()
    });
    let alice = mud.login("alice");
    let mut bob = mud.login("bob");
    // Bob keeps polling, which keeps him in the game; alice does nothing.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut heard = Vec::new();
    while heard.is_empty() {
        assert!(Instant::now() < deadline, "alice was never logged out");
        let mut poll = mud.park(&bob);
        let r = poll.response(1);
        heard = bob.take(&r.body);
    }
    assert_eq!(heard, ["alice falls asleep and fades away."]);
    assert_eq!(mud.cmd(&alice, "look").status, 401);
    assert_eq!(mud.cmd(&bob, "look").status, 200, "bob's polls kept him");
    // The name is free again.
    mud.login("alice");
}

#[test]
fn the_binary_wants_a_listening_socket_on_fd_0() {
    let out = Command::new(env!("CARGO_BIN_EXE_weir-mud"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run weir-mud");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("weir-mud: "), "{err}");
    assert!(err.contains("exec /mud/* service=mud"), "{err}");
}
