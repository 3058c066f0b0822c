//! FastCGI exchanges through the server, against a fake service that speaks the record
//! protocol with the core's own codec: what the core writes is decoded, and the answer
//! is encoded, so a framing mistake on either side shows.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};

use super::super::*;
use super::{configured, request, status, World};
use crate::fcgi::{self, Decoder, ProtocolStatus, Record, StreamKind};

/// How a fake service answers a request once it has all of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Behaviour {
    /// `Content-Type: text/plain`, then the request's SCRIPT_FILENAME, QUERY_STRING and body
    /// length, a line of stderr, END_REQUEST.
    Echo,
    /// A header section only, then the connection closes without END_REQUEST.
    DiesMidway,
    /// Says nothing.
    Hangs,
    /// Closes the connection without a word.
    DiesAtOnce,
    /// Answers, but closes the connection even when asked to keep it.
    ClosesAfter,
    /// Sends a local redirect to /target.php, and echoes /target.php itself.
    Redirects,
    /// A header section and part of the body, then nothing more (the stream stays open).
    StallsMidway,
    /// Answers as `Echo` does, but never closes the connection, even when not asked to
    /// keep it.
    NeverCloses,
}

/// One stream the fake service has accepted.
#[derive(Debug)]
pub(super) struct FakeStream {
    decoder: Decoder,
    params: BytesMut,
    stdin: Vec<u8>,
    keep: bool,
    done: bool,
    to_core: Vec<u8>,
    read_wanted: Option<usize>,
    eof_after: bool,
    eof_sent: bool,
    closed: bool,
    /// Requests answered on this stream.
    pub answered: usize,
}

/// The world's FastCGI services.
#[derive(Debug, Default)]
pub(super) struct Services {
    /// Where services listen, and how they behave.
    pub listening: Vec<(UpstreamAddr, Behaviour)>,
    pub streams: BTreeMap<StreamId, (Behaviour, FakeStream)>,
    pub connects: usize,
    /// `ServiceAnswered` effects seen.
    pub answered: usize,
    /// Parameters of every request received.
    pub requests: Vec<BTreeMap<String, String>>,
}

impl Services {
    pub(super) fn apply(&mut self, e: Effect, server: &mut Server, now: Now) {
        match e {
            Effect::Connect { token, addr } => {
                self.connects += 1;
                let found = self.listening.iter().find(|(a, _)| *a == addr).map(|x| x.1);
                let result = match found {
                    Some(b) => {
                        self.streams.insert(
                            StreamId(token),
                            (
                                b,
                                FakeStream {
                                    decoder: Decoder::new(1 << 20),
                                    params: BytesMut::new(),
                                    stdin: Vec::new(),
                                    keep: false,
                                    done: false,
                                    to_core: Vec::new(),
                                    read_wanted: None,
                                    eof_after: false,
                                    eof_sent: false,
                                    closed: false,
                                    answered: 0,
                                },
                            ),
                        );
                        Completion::Connected
                    }
                    None => Completion::Failed(IoError::Refused),
                };
                server.handle(Input::Completed { token, result }, now);
            }
            Effect::StreamWrite { stream, data } => {
                let (b, s) = self
                    .streams
                    .get_mut(&stream)
                    .expect("write to unknown stream");
                assert!(!s.closed, "write after close");
                s.decoder.push(&data);
                while let Some(r) = s.decoder.next_record().expect("the core wrote bad records") {
                    match r {
                        Record::BeginRequest { keep_conn, .. } => {
                            s.keep = keep_conn;
                            s.done = false;
                            s.params.clear();
                            s.stdin.clear();
                        }
                        Record::Params { data, .. } => s.params.extend_from_slice(&data),
                        Record::Stdin { data, .. } if !data.is_empty() => {
                            s.stdin.extend_from_slice(&data);
                        }
                        Record::Stdin { .. } => s.done = true,
                        other => panic!("unexpected record from the core: {other:?}"),
                    }
                }
                if s.done && !s.eof_after {
                    s.done = false;
                    let params: BTreeMap<String, String> =
                        fcgi::decode_params(&s.params.clone().freeze())
                            .expect("bad params")
                            .into_iter()
                            .map(|(k, v)| {
                                (
                                    String::from_utf8_lossy(&k).into_owned(),
                                    String::from_utf8_lossy(&v).into_owned(),
                                )
                            })
                            .collect();
                    answer(*b, s, &params);
                    self.requests.push(params);
                }
                server.handle(
                    Input::StreamWritten {
                        stream,
                        n: data.len() as u64,
                    },
                    now,
                );
            }
            Effect::StreamRead { stream, max, .. } => {
                let (_, s) = self
                    .streams
                    .get_mut(&stream)
                    .expect("read of unknown stream");
                assert!(s.read_wanted.is_none(), "two reads on one stream");
                s.read_wanted = Some(max);
            }
            Effect::StreamClose { stream } => {
                let (_, s) = self
                    .streams
                    .get_mut(&stream)
                    .expect("close of unknown stream");
                assert!(!s.closed, "closed twice");
                s.closed = true;
            }
            other => panic!("not a stream effect: {other:?}"),
        }
    }

    /// Delivers what services have said; true if anything happened.
    pub(super) fn step(&mut self, server: &mut Server, now: Now) -> bool {
        for (&stream, (_, s)) in &mut self.streams {
            if s.closed {
                continue;
            }
            let Some(max) = s.read_wanted else { continue };
            if !s.to_core.is_empty() {
                let n = max.min(s.to_core.len());
                let data = Bytes::from(s.to_core.drain(..n).collect::<Vec<u8>>());
                s.read_wanted = None;
                server.handle(
                    Input::StreamReceived {
                        stream,
                        channel: Channel::Main,
                        data,
                    },
                    now,
                );
                return true;
            }
            if s.eof_after && !s.eof_sent {
                s.eof_sent = true;
                s.read_wanted = None;
                server.handle(
                    Input::StreamEof {
                        stream,
                        channel: Channel::Main,
                    },
                    now,
                );
                return true;
            }
        }
        false
    }

    /// Streams open (not closed by the core).
    pub(super) fn open(&self) -> usize {
        self.streams.values().filter(|(_, s)| !s.closed).count()
    }
}

fn answer(b: Behaviour, s: &mut FakeStream, params: &BTreeMap<String, String>) {
    let mut out = BytesMut::new();
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    match b {
        Behaviour::Redirects if get("SCRIPT_NAME") != "/target.php" => {
            fcgi::encode_stream_part(
                StreamKind::Stdout,
                1,
                b"Location: /target.php\r\n\r\n",
                &mut out,
            );
            fcgi::encode_stream(StreamKind::Stdout, 1, b"", &mut out);
            fcgi::encode(
                &Record::EndRequest {
                    id: 1,
                    app_status: 0,
                    protocol_status: ProtocolStatus::RequestComplete,
                },
                &mut out,
            );
        }
        Behaviour::Echo
        | Behaviour::ClosesAfter
        | Behaviour::Redirects
        | Behaviour::NeverCloses => {
            let body = format!(
                "Content-Type: text/plain\r\n\r\nscript={} query={} body={}\n",
                get("SCRIPT_FILENAME"),
                get("QUERY_STRING"),
                s.stdin.len()
            );
            fcgi::encode_stream_part(StreamKind::Stdout, 1, body.as_bytes(), &mut out);
            fcgi::encode_stream(StreamKind::Stderr, 1, b"a notice\n", &mut out);
            fcgi::encode_stream(StreamKind::Stdout, 1, b"", &mut out);
            fcgi::encode(
                &Record::EndRequest {
                    id: 1,
                    app_status: 0,
                    protocol_status: ProtocolStatus::RequestComplete,
                },
                &mut out,
            );
            s.answered += 1;
            if (!s.keep && b != Behaviour::NeverCloses) || b == Behaviour::ClosesAfter {
                s.eof_after = true;
            }
        }
        Behaviour::DiesMidway => {
            fcgi::encode_stream_part(
                StreamKind::Stdout,
                1,
                b"Content-Type: text/plain\r\n\r\npart",
                &mut out,
            );
            s.eof_after = true;
        }
        Behaviour::StallsMidway => {
            fcgi::encode_stream_part(
                StreamKind::Stdout,
                1,
                b"Content-Type: text/plain\r\n\r\npart",
                &mut out,
            );
        }
        Behaviour::Hangs => {}
        Behaviour::DiesAtOnce => s.eof_after = true,
    }
    s.to_core.extend_from_slice(&out);
}

const SOCK: &str = "/run/test/php.sock";

fn fcgi_world(conf: &str, behaviour: Behaviour) -> World {
    let mut w = configured(conf);
    w.services
        .listening
        .push((UpstreamAddr::Unix(SOCK.into()), behaviour));
    w
}

const CONF: &str = "access-log /var/log/weir.log\n\
                    service php connect=unix:/run/test/php.sock connections=2\n\
                    exec /*.php service=php htdocs/*.php\npass /*\n";

/// Where the reload tests move the service to.
const SOCK2: &str = "/run/test/php2.sock";

/// Reloads `w` to the configuration `text` (the next generation) and lets it settle.
fn reload(w: &mut World, text: &str) {
    let mut load = |_: &std::path::Path| -> Result<String, String> { Err("none".into()) };
    let config = crate::config::parse("t.conf", text, std::path::Path::new(super::ROOT), &mut load)
        .unwrap_or_else(|d| panic!("{}", d[0]));
    let next = w.server.config().generation() + 1;
    w.server
        .handle(Input::Reload(ConfigRef::new(next, config)), w.now);
    w.run();
}

/// A world whose service may hold one stream, with an echoing service listening at
/// [`SOCK2`] too (for a reload to move it there), and its configuration.
fn one_stream_and_a_second_socket() -> (World, String) {
    let conf = CONF.replace("connections=2", "connections=1");
    let mut w = fcgi_world(&conf, Behaviour::Echo);
    w.services
        .listening
        .push((UpstreamAddr::Unix(SOCK2.into()), Behaviour::Echo));
    (w, conf)
}

#[test]
fn a_service_answers_through_the_cgi_response_parser() {
    let mut w = fcgi_world(CONF, Behaviour::Echo);
    let out = request(&mut w, "GET /a/b.php?x=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status(&out), 200, "{out}");
    assert!(
        out.contains("script=/srv/www/htdocs/a/b.php query=x=1 body=0"),
        "{out}"
    );
    assert!(
        w.log.iter().any(|l| l == "service php: a notice"),
        "{:?}",
        w.log
    );
    assert_eq!(w.services.requests[0]["REQUEST_METHOD"], "GET");
    assert_eq!(w.services.requests[0]["SCRIPT_NAME"], "/a/b.php");
    assert_eq!(w.access.len(), 1, "{:?}", w.access);
}

#[test]
fn kept_alive_streams_are_reused_for_the_next_request() {
    let mut w = fcgi_world(CONF, Behaviour::Echo);
    for i in 0..5 {
        let out = request(&mut w, &format!("GET /{i}.php HTTP/1.1\r\nHost: h\r\n\r\n"));
        assert_eq!(status(&out), 200, "{out}");
    }
    assert_eq!(
        w.services.connects, 1,
        "one stream, kept alive: {:?}",
        w.log
    );
    assert_eq!(w.services.open(), 1);
    let answered: usize = w.services.streams.values().map(|(_, s)| s.answered).sum();
    assert_eq!(answered, 5);
    assert_eq!(w.services.answered, 5, "each told to the supervisor");
}

#[test]
fn an_idle_stream_the_service_closes_leaves_the_others_pooled() {
    let mut w = fcgi_world(CONF, Behaviour::Echo);
    // A body still coming holds the first stream while a second request opens another.
    let a = w.connect();
    w.send(
        a,
        b"POST /a.php HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nab",
    );
    let out = request(&mut w, "GET /b.php HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status(&out), 200, "{out}");
    w.send(a, b"cd");
    assert!(w.take_output(a).contains("body=4"));
    assert_eq!(
        (w.services.connects, w.services.open()),
        (2, 2),
        "both pooled"
    );
    // The service closes one of them while it is idle: the other stays in the pool.
    let first = *w.services.streams.keys().next().expect("a stream");
    w.services.streams.get_mut(&first).expect("it").1.eof_after = true;
    w.run();
    assert_eq!(w.services.open(), 1, "the closed one is closed");
    for _ in 0..2 {
        let out = request(&mut w, "GET /c.php HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(status(&out), 200, "{out}");
    }
    assert_eq!(w.services.connects, 2, "the pooled one is used");
}

#[test]
fn a_service_that_closes_after_answering_is_not_reused() {
    let mut w = fcgi_world(CONF, Behaviour::ClosesAfter);
    for _ in 0..3 {
        let out = request(&mut w, "GET /x.php HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(status(&out), 200, "{out}");
    }
    assert_eq!(w.services.connects, 3);
    assert_eq!(
        w.services.open(),
        0,
        "every stream the service closed is closed"
    );
}

#[test]
fn post_bodies_go_as_stdin_records() {
    let mut w = fcgi_world(CONF, Behaviour::Echo);
    let out = request(
        &mut w,
        "POST /p.php HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world",
    );
    assert!(out.contains("body=11"), "{out}");
    assert_eq!(w.services.requests[0]["CONTENT_LENGTH"], "11");
    let out = request(
        &mut w,
        "POST /p.php HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    );
    assert!(out.contains("body=5"), "{out}");
    assert_eq!(w.services.requests[1]["CONTENT_LENGTH"], "5");
}

#[test]
fn nothing_listening_is_503_and_a_death_midway_is_502_or_a_cut() {
    let mut w = configured(CONF);
    let out = request(&mut w, "GET /x.php HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status(&out), 503, "{out}");
    assert!(out.contains("Retry-After: 1\r\n"), "{out}");

    let mut w = fcgi_world(CONF, Behaviour::DiesMidway);
    let out = request(&mut w, "GET /x.php HTTP/1.1\r\nHost: h\r\n\r\n");
    // The head went out: the response is cut (chunked, never finished).
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(!out.ends_with("0\r\n\r\n"), "{out}");
    assert!(w.log.iter().any(|l| l.contains("cut short")), "{:?}", w.log);
    assert_eq!(w.services.open(), 0);
}

#[test]
fn a_service_that_closes_before_answering_is_502() {
    let mut w = fcgi_world(CONF, Behaviour::DiesAtOnce);
    let out = request(&mut w, "GET /x.php HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status(&out), 502, "{out}");
    assert!(
        w.log
            .iter()
            .any(|l| l.ends_with("the service closed the connection before answering; 502")),
        "{:?}",
        w.log
    );
    assert_eq!(w.services.open(), 0);
}

#[test]
fn a_silent_service_times_out_with_504() {
    let mut w = fcgi_world(CONF, Behaviour::Hangs);
    let id = w.connect();
    w.send(id, b"GET /x.php HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(w.take_output(id).is_empty());
    w.advance(std::time::Duration::from_secs(61));
    let out = w.take_output(id);
    assert_eq!(status(&out), 504, "{out}");
    assert_eq!(w.services.open(), 0);
}

#[test]
fn requests_beyond_the_connection_limit_wait_their_turn() {
    let mut w = fcgi_world(CONF, Behaviour::Hangs);
    let ids: Vec<ConnId> = (0..4).map(|_| w.connect()).collect();
    for &id in &ids {
        w.send(id, b"GET /x.php HTTP/1.1\r\nHost: h\r\n\r\n");
    }
    assert_eq!(w.services.connects, 2, "connections=2");
    // The two running ones time out; the two waiting ones then get their streams.
    w.advance(std::time::Duration::from_secs(61));
    assert_eq!(w.services.connects, 4);
}

#[test]
fn each_worker_keeps_to_its_share_of_the_connections() {
    // (connections=, worker index, workers, streams it may open, kept alive)
    for (total, index, count, share, kept) in [
        (3, 0, 2, 2, true),
        (3, 1, 2, 1, true),
        (1, 1, 2, 1, false),
        (5, 2, 3, 1, true),
    ] {
        let conf = CONF.replace("connections=2", &format!("connections={total}"));
        let mut w = fcgi_world(&conf, Behaviour::Hangs);
        w.server.set_worker_share(index, count);
        for _ in 0..4 {
            let id = w.connect();
            w.send(id, b"GET /x.php HTTP/1.1\r\nHost: h\r\n\r\n");
        }
        assert_eq!(
            w.services.connects, share,
            "worker {index} of {count}, connections={total}"
        );
        // Fewer connections than workers: a stream is not kept, or a worker holding one
        // idle would leave another none.
        let mut w = fcgi_world(&conf, Behaviour::Echo);
        w.server.set_worker_share(index, count);
        let out = request(&mut w, "GET /x.php HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(status(&out), 200, "{out}");
        assert_eq!(
            w.services.open(),
            usize::from(kept),
            "worker {index} of {count}, connections={total}"
        );
    }
}

#[test]
fn a_stream_not_to_be_kept_is_closed_by_weir_when_the_service_does_not() {
    // One connection shared by two workers: streams are not kept alive.
    let conf = CONF.replace("connections=2", "connections=1");
    let mut w = fcgi_world(&conf, Behaviour::NeverCloses);
    w.server.set_worker_share(1, 2);
    let out = request(&mut w, "GET /x.php HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status(&out), 200, "{out}");
    assert_eq!(
        w.services.open(),
        0,
        "not pooled: closed after its END_REQUEST"
    );
}

#[test]
fn a_service_down_is_answered_503_at_once() {
    let mut w = fcgi_world(CONF, Behaviour::Hangs);
    let id = w.connect();
    w.send(id, b"GET /x.php HTTP/1.1\r\nHost: h\r\n\r\n");
    w.server.handle(
        Input::ServiceState {
            service: "php".into(),
            availability: Availability::Down {
                retry_after: std::time::Duration::from_secs(7),
            },
        },
        w.now,
    );
    w.run();
    let out = w.take_output(id);
    assert_eq!(status(&out), 503, "{out}");
    assert!(out.contains("Retry-After: 7\r\n"), "{out}");
    let connects = w.services.connects;
    let out = request(&mut w, "GET /y.php HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status(&out), 503, "{out}");
    assert_eq!(w.services.connects, connects, "no connect while down");
}

#[test]
fn a_service_going_down_closes_its_idle_streams() {
    let mut w = fcgi_world(CONF, Behaviour::Echo);
    let out = request(&mut w, "GET /x.php HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status(&out), 200, "{out}");
    assert_eq!(w.services.open(), 1, "kept alive");
    w.server.handle(
        Input::ServiceState {
            service: "php".into(),
            availability: Availability::Down {
                retry_after: std::time::Duration::from_secs(7),
            },
        },
        w.now,
    );
    w.run();
    assert_eq!(w.services.open(), 0, "no process is left behind it");
}

#[test]
fn at_shutdown_idle_streams_are_closed_and_the_server_exits() {
    let mut w = fcgi_world(CONF, Behaviour::Echo);
    let id = w.connect();
    w.send(
        id,
        b"GET /x.php HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&w.take_output(id)), 200);
    assert_eq!(w.services.open(), 1, "kept alive");
    w.server.handle(Input::Shutdown, w.now);
    w.run();
    assert_eq!(
        w.services.open(),
        0,
        "a pooled stream is not work in flight"
    );
    assert_eq!(w.exit, Some(0));
}

#[test]
fn a_record_of_several_kilobytes_from_the_service_is_read_whole() {
    let mut w = fcgi_world(CONF, Behaviour::Echo);
    // The answer echoes the query: one STDOUT record of about 4 KiB.
    let query = "q".repeat(4000);
    let out = request(
        &mut w,
        &format!("GET /x.php?{query} HTTP/1.1\r\nHost: h\r\n\r\n"),
    );
    assert_eq!(status(&out), 200, "{}", &out[..out.len().min(200)]);
    assert!(out.contains(&format!("query={query} ")));
}

#[test]
fn a_service_going_down_leaves_an_answer_under_way_to_finish() {
    let mut w = fcgi_world(CONF, Behaviour::StallsMidway);
    let id = w.connect();
    w.send(id, b"GET /x.php HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(w.take_output(id).starts_with("HTTP/1.1 200"));
    w.server.handle(
        Input::ServiceState {
            service: "php".into(),
            availability: Availability::Down {
                retry_after: std::time::Duration::from_secs(7),
            },
        },
        w.now,
    );
    w.run();
    // Its process may still finish it: the stream stays, the answer is not cut.
    assert_eq!(w.services.open(), 1);
    assert!(!w.clients[&id].closed);
}

#[test]
fn requests_in_flight_are_counted_per_service() {
    let conf = format!(
        "service app connect=unix:/run/test/app.sock\nexec /app/* service=app htdocs/app/*\n{CONF}"
    );
    let mut w = fcgi_world(&conf, Behaviour::Hangs);
    w.services.listening.push((
        UpstreamAddr::Unix("/run/test/app.sock".into()),
        Behaviour::Hangs,
    ));
    for path in ["/x.php", "/app/a", "/y.php"] {
        let id = w.connect();
        w.send(
            id,
            format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
        );
    }
    let mut got = w.server.worker_status().in_flight;
    got.sort();
    assert_eq!(got, [("app".to_string(), 1), ("php".to_string(), 2)]);
}

#[test]
fn a_client_that_goes_away_closes_the_stream() {
    let mut w = fcgi_world(CONF, Behaviour::Hangs);
    let id = w.connect();
    w.send(id, b"GET /x.php HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(w.services.open(), 1);
    w.clients.get_mut(&id).unwrap().eof_to_send = true;
    w.run();
    assert_eq!(w.services.open(), 0);
}

#[test]
fn a_waiting_request_whose_client_goes_away_leaves_the_queue() {
    let conf = CONF.replace("connections=2", "connections=1");
    let mut w = fcgi_world(&conf, Behaviour::Hangs);
    // The one stream is taken; one request waits behind it to the end, then a full
    // queue's worth more, whose connections break.
    let first = w.connect();
    w.send(first, b"GET /x.php HTTP/1.1\r\nHost: h\r\n\r\n");
    let patient = w.connect();
    w.send(patient, b"GET /x.php HTTP/1.1\r\nHost: h\r\n\r\n");
    for _ in 0..1024 {
        let id = w.connect();
        w.send(id, b"GET /x.php HTTP/1.1\r\nHost: h\r\n\r\n");
        w.reset(id);
        // Closed for good: the world need not look at it again.
        assert!(w.clients.remove(&id).is_some_and(|c| c.closed));
    }
    // Nobody waits now: the next request waits its turn rather than get a 503.
    let id = w.connect();
    w.send(id, b"GET /x.php HTTP/1.1\r\nHost: h\r\n\r\n");
    let out = w.take_output(id);
    assert!(out.is_empty(), "queued, not refused: {out}");
    assert_eq!(w.services.connects, 1);
    // The first times out; the one that waited longest gets the stream next.
    w.advance(std::time::Duration::from_secs(61));
    assert_eq!(status(&w.take_output(first)), 504);
    assert_eq!(w.services.connects, 2);
    assert!(w.take_output(id).is_empty(), "still waiting its turn");
    w.advance(std::time::Duration::from_secs(61));
    assert_eq!(
        status(&w.take_output(patient)),
        504,
        "it was served in its turn"
    );
}

#[test]
fn a_request_keeps_the_configuration_it_started_under_across_a_reload() {
    let mut w = fcgi_world(CONF, Behaviour::Redirects);
    let old = w.connect();
    // The body is not there yet: the service waits for it.
    w.send(
        old,
        b"POST /x.php HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n",
    );
    // The next generation refuses /target.php: new requests follow it, the one in flight
    // (whose service answers with a local redirect to /target.php) does not.
    let text = format!("fail /target.php 410\n{CONF}").replace(
        "access-log /var/log/weir.log",
        "access-log /var/log/weir.log format=json",
    );
    reload(&mut w, &text);
    assert_eq!(w.server.config().generation(), 2);
    let out = request(&mut w, "GET /target.php HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        status(&out),
        410,
        "a new request follows the new rules: {out}"
    );
    w.send(old, b"abc");
    let out = w.take_output(old);
    assert_eq!(
        status(&out),
        200,
        "the old request re-ran the old rules: {out}"
    );
    assert!(out.contains("script=/srv/www/htdocs/target.php"), "{out}");
    // Each logged in its own generation's format: the new request in JSON, the old in
    // the combined format it started under.
    let last = w.access.last().expect("a line for the old request");
    assert!(!last.starts_with('{'), "{last}");
    assert!(
        w.access
            .iter()
            .any(|l| l.starts_with('{') && l.contains("410")),
        "{:?}",
        w.access
    );
}

#[test]
fn a_stream_to_where_a_reload_moved_the_service_from_is_closed_not_pooled() {
    let (mut w, conf) = one_stream_and_a_second_socket();
    let old = w.connect();
    // In flight across the reload: the body is not there yet.
    w.send(
        old,
        b"POST /x.php HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n",
    );
    reload(&mut w, &conf.replace(SOCK, SOCK2));
    w.send(old, b"abc");
    assert_eq!(status(&w.take_output(old)), 200);
    assert_eq!(
        w.services.open(),
        0,
        "the stream to the old socket is closed once its exchange ends"
    );
    // With connections=1, a pooled stream to the old socket would hold the only place
    // and the next request would wait for ever.
    let out = request(&mut w, "GET /y.php HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status(&out), 200, "{out}");
    assert_eq!(w.services.connects, 2);
    assert_eq!(w.services.open(), 1);
}

#[test]
fn a_reload_closes_idle_streams_only_where_the_service_moved() {
    let (mut w, conf) = one_stream_and_a_second_socket();
    let out = request(&mut w, "GET /x.php HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status(&out), 200, "{out}");
    assert_eq!(w.services.open(), 1, "kept alive");
    // The same address in the next generation: the idle stream stays and is used again.
    reload(&mut w, &format!("header /* X-Gen 2\n{conf}"));
    assert_eq!(w.services.open(), 1);
    let out = request(&mut w, "GET /y.php HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status(&out), 200, "{out}");
    assert_eq!(w.services.connects, 1);
    // Moved: the idle stream to the old place is closed at once.
    reload(&mut w, &conf.replace(SOCK, SOCK2));
    assert_eq!(w.services.open(), 0);
}

#[test]
fn an_idle_stream_to_the_new_place_makes_room_for_a_request_of_the_old_generation() {
    let (mut w, conf) = one_stream_and_a_second_socket();
    let old = w.connect();
    // A chunked body is gathered before the service is asked: the request starts under
    // generation 1, and reaches the service only after the reload.
    w.send(
        old,
        b"POST /x.php HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
    );
    reload(&mut w, &conf.replace(SOCK, SOCK2));
    let out = request(&mut w, "GET /y.php HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(status(&out), 200, "{out}");
    assert_eq!(w.services.open(), 1, "kept alive, to the new socket");
    // The old request's body ends: its service is at the old socket, and the only place
    // is held by an idle stream to the new one, which makes room.
    w.send(old, b"0\r\n\r\n");
    let out = w.take_output(old);
    assert_eq!(status(&out), 200, "{out}");
    assert!(out.contains("body=3"), "{out}");
    assert_eq!(w.services.connects, 2);
}
