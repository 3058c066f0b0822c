//! Micro-benchmarks of the pure core (bench/RESULTS.md has the numbers and how to run them):
//!
//! * `parse`: scanning and parsing a request head (a curl-sized and a browser-sized one);
//! * `conn`: one request/response cycle through `http1::Conn` in memory, on a kept-alive
//!   connection (1 KiB body as bytes, and as a file range for `sendfile`);
//! * `server`: one request for a 1 KiB file through the whole `Server` (rules, document,
//!   head, effects), the effects answered in memory as the shell would; with the document
//!   cache off (every request opens the file) and on (`get_1k_cached`: after the first
//!   request, answered from memory, as a kept-alive 1 KiB request is in production);
//! * `rules`: `rules::route` on a 100-rule configuration (the match at the last rule, and a
//!   path a `fail` rule near the top stops);
//! * `write`: serialising a response head (`http1::write::final_head`).
//!
//! Run with `cargo bench -p weir-core --bench micro` (add a filter such as `-- rules`).
//! No assertion here depends on time.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::hint::black_box;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir_core::config::{self, Config};
use weir_core::http1::parse::{parse_head, HeadScan};
use weir_core::http1::write::final_head;
use weir_core::http1::{Conn, Event, Headers, ResponseBody, ResponseHead};
use weir_core::rules::{route, RouteRequest};
use weir_core::server::{Completion, Effect, FileKind, FileMeta, Input, Server};
use weir_core::{Chunk, ConfigRef, ConnId, FileId, Limits, ListenerId, Now, Time, Timeouts};
use weir_core::{Token, UnixTime};

/// What `wrk` sends.
const CURL_REQUEST: &[u8] = b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

/// What a browser sends for a page.
const BROWSER_REQUEST: &[u8] = b"GET /docs/index.html?lang=en HTTP/1.1\r\n\
Host: www.example.org\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-GB,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Connection: keep-alive\r\n\
Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: none\r\n\
If-None-Match: \"65f0a1b2-400-1234\"\r\n\
If-Modified-Since: Tue, 12 Mar 2024 10:00:00 GMT\r\n\
\r\n";

fn now(ms: u64) -> Now {
    Now {
        mono: Time(ms),
        unix: UnixTime(1_700_000_000 + i64::try_from(ms / 1000).unwrap_or(0)),
    }
}

fn bench_parse(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("parse");
    for (name, wire) in [("curl", CURL_REQUEST), ("browser", BROWSER_REQUEST)] {
        let buf = Bytes::from_static(wire);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut scan = HeadScan::request();
                let end = scan
                    .scan(
                        black_box(&buf),
                        limits.request_line_max,
                        limits.header_bytes_max,
                    )
                    .ok()
                    .flatten();
                let head = end.map(|e| buf.slice(e.start..e.end));
                black_box(head.map(|h| parse_head(&h, &limits)))
            });
        });
    }
    g.finish();
}

/// One request and its response on a kept-alive `Conn`; returns the bytes transmitted.
fn conn_cycle(conn: &mut Conn, request: &[u8], body: &Chunk, t: Now) -> u64 {
    conn.receive(request, t);
    let mut head_seen = false;
    // Bounded: a request yields its head, maybe body events, and its end.
    for _ in 0..16 {
        match conn.poll_event() {
            Some(Event::Head(_)) => head_seen = true,
            Some(Event::End) | None => break,
            Some(_) => {}
        }
    }
    if !head_seen {
        return 0;
    }
    let mut head = ResponseHead::new(200, ResponseBody::Length(body.len()));
    head.headers
        .push("Content-Type", "application/octet-stream");
    head.headers.push("ETag", "\"65f0a1b2-400-1234\"");
    head.headers
        .push("Last-Modified", "Tue, 12 Mar 2024 10:00:00 GMT");
    head.headers.push("Accept-Ranges", "bytes");
    if conn.send_head(head, t).is_err()
        || conn.send_body(body.clone(), t).is_err()
        || conn.send_end(None, t).is_err()
    {
        return 0;
    }
    let mut sent = 0;
    for _ in 0..16 {
        let Some(n) = conn.pending_transmit().map(Chunk::len) else {
            break;
        };
        conn.advance_transmit(n, t);
        sent += n;
    }
    sent
}

fn bench_conn(c: &mut Criterion) {
    let limits = Limits::default();
    let timeouts = Timeouts::default();
    let mut g = c.benchmark_group("conn");
    g.throughput(Throughput::Elements(1));
    let bodies = [
        (
            "cycle_1k_bytes",
            Chunk::Bytes(Bytes::from(vec![b'x'; 1024])),
        ),
        (
            "cycle_1k_file",
            Chunk::File {
                file: FileId(Token(1)),
                offset: 0,
                len: 1024,
            },
        ),
    ];
    for (name, body) in bodies {
        let mut conn = Conn::new(&limits, &timeouts, now(0));
        let mut ms = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                ms += 1;
                black_box(conn_cycle(
                    &mut conn,
                    black_box(CURL_REQUEST),
                    &body,
                    now(ms),
                ))
            });
        });
    }
    // A fresh connection per request, as with `Connection: close`.
    let close_req = b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let body = Chunk::Bytes(Bytes::from(vec![b'x'; 1024]));
    g.bench_function("new_conn_close", |b| {
        b.iter(|| {
            let mut conn = Conn::new(&limits, &timeouts, now(0));
            black_box(conn_cycle(&mut conn, close_req, &body, now(1)))
        });
    });
    g.finish();
}

/// Drives a `Server` in memory: every file is a 1 KiB regular file, every send completes.
struct Driver {
    server: Server,
    t: u64,
}

impl Driver {
    fn new(config: Config) -> Driver {
        let mut d = Driver {
            server: Server::new(ConfigRef::new(1, config), now(0)),
            t: 0,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], 40000));
        d.server.handle(
            Input::Accepted {
                listener: ListenerId(0),
                conn: ConnId(0),
                peer: addr,
                local: addr,
            },
            now(0),
        );
        d.drain();
        d
    }

    /// Carries out effects until there are none; returns the bytes sent.
    fn drain(&mut self) -> u64 {
        let mut sent = 0;
        let mut inputs = Vec::new();
        // Bounded: one request makes a handful of effects.
        for _ in 0..64 {
            while let Some(e) = self.server.poll_effect() {
                match e {
                    Effect::Send { conn, chunk } => {
                        sent += chunk.len();
                        inputs.push(Input::Sent {
                            conn,
                            n: chunk.len(),
                        });
                    }
                    Effect::ReadFile { token, len, .. } => inputs.push(Input::Completed {
                        token,
                        result: Completion::Data(Bytes::from(vec![b'x'; len as usize])),
                    }),
                    Effect::Open { token, .. } => inputs.push(Input::Completed {
                        token,
                        result: Completion::Opened(FileMeta {
                            kind: FileKind::File,
                            len: 1024,
                            mtime: UnixTime(1_600_000_000),
                            inode: 42,
                        }),
                    }),
                    _ => {}
                }
            }
            if inputs.is_empty() {
                break;
            }
            for input in inputs.drain(..) {
                self.server.handle(input, now(self.t));
            }
        }
        sent
    }

    fn request(&mut self, wire: &'static [u8]) -> u64 {
        self.t += 1;
        self.server.handle(
            Input::Received {
                conn: ConnId(0),
                data: Bytes::from_static(wire),
            },
            now(self.t),
        );
        self.drain()
    }
}

/// The built-in configuration with the document cache off, so that every request takes
/// the `Open` path the driver answers (a cache would ask for `ReadFile` as well).
fn uncached() -> Config {
    let mut config = Config::builtin(PathBuf::from("/srv/www"));
    config.cache = None;
    config
}

fn bench_server(c: &mut Criterion) {
    let mut g = c.benchmark_group("server");
    g.throughput(Throughput::Elements(1));
    for (name, wire, config) in [
        ("get_1k_file", CURL_REQUEST, uncached()),
        ("get_1k_file_browser", BROWSER_REQUEST, uncached()),
        (
            "get_1k_cached",
            CURL_REQUEST,
            Config::builtin(PathBuf::from("/srv/www")),
        ),
    ] {
        let mut d = Driver::new(config);
        // Not a timing check: the driver must really carry a whole response, or the
        // benchmark would time a stalled connection.
        let sent = d.request(wire);
        assert!(
            sent > 1024,
            "{name}: the driver moved {sent} bytes, not a response"
        );
        g.bench_function(name, |b| {
            b.iter(|| black_box(d.request(black_box(wire))));
        });
    }
    g.finish();
}

/// A 100-rule configuration: 98 rules of five kinds (stopping and not) on other prefixes,
/// then a `header` rule that matches every path and the final `pass`.
fn hundred_rules() -> Config {
    let mut text = String::from("workers 1\n");
    for i in 0..98 {
        let rule = match i % 5 {
            0 => format!("redirect /old{i}/* /new{i}/* 301\n"),
            1 => format!("map /alias{i}/* /real{i}/*\n"),
            2 => format!("fail /private{i}/*\n"),
            3 => format!("protect /admin{i}/* allow=10.0.{i}.0/24\n"),
            _ => format!("header /static{i}/*.css Cache-Control \"max-age={i}\"\n"),
        };
        text.push_str(&rule);
    }
    text.push_str("header /* X-Content-Type-Options nosniff\n");
    text.push_str("pass /* htdocs/*\n");
    let mut load = |_: &Path| -> Result<String, String> { Err("no files".to_string()) };
    match config::parse("bench.conf", &text, Path::new("/srv"), &mut load) {
        Ok(config) => {
            assert_eq!(config.rules.len(), 100, "the bench wants 100 rules");
            config
        }
        Err(diags) => {
            let msgs: Vec<String> = diags.iter().map(ToString::to_string).collect();
            panic!("bench configuration does not parse: {}", msgs.join("\n"));
        }
    }
}

fn bench_rules(c: &mut Criterion) {
    let config = hundred_rules();
    let mut g = c.benchmark_group("rules");
    g.throughput(Throughput::Elements(1));
    let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for (name, path) in [
        ("100_rules_pass_last", &b"/docs/guide/index.html"[..]),
        ("100_rules_fail_early", &b"/private2/secret.txt"[..]),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let req = RouteRequest {
                    path: black_box(path),
                    query: None,
                    host: Some(b"www.example.org"),
                    peer,
                    authorization: None,
                };
                black_box(route(&config, &req))
            });
        });
    }
    g.finish();
}

fn bench_write(c: &mut Criterion) {
    let mut app = Headers::new();
    app.push("Last-Modified", "Tue, 12 Mar 2024 10:00:00 GMT");
    app.push("ETag", "\"65f0a1b2-400-1234\"");
    app.push("Accept-Ranges", "bytes");
    app.push("Content-Type", "application/octet-stream");
    let mut g = c.benchmark_group("write");
    g.throughput(Throughput::Elements(1));
    g.bench_function("final_head", |b| {
        b.iter(|| {
            let fields = [("Content-Length", "1024")];
            black_box(final_head(
                200,
                black_box(&app),
                UnixTime(1_700_000_000),
                &fields,
            ))
        });
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_parse,
    bench_conn,
    bench_server,
    bench_rules,
    bench_write
);
criterion_main!(benches);
