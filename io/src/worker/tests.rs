//! A real worker on loopback, driven by a plain `TcpStream`.
//!
//! These tests check the shell's plumbing (accept, read, send, sendfile with partial
//! writes, close, shutdown, exit), not HTTP: the requests are fixed byte strings and the
//! checks look only at what the shell must get right (every byte of a file arrives, the
//! worker exits 0 when stopped). HTTP behaviour is tested in the core and in tests/.

use std::io::{Read, Write};
use std::net::TcpStream as StdStream;
use std::path::PathBuf;
use std::thread::JoinHandle;

use weir_core::{Config, StreamId};

use super::*;
use crate::listen;

struct Running {
    addr: SocketAddr,
    stopper: Stopper,
    thread: JoinHandle<i32>,
    root: PathBuf,
    file_threads: Option<crate::filepool::Pool>,
}

impl Running {
    /// A worker with a file pool of two threads (files off the loop, the default).
    fn start(name: &str, files: &[(&str, &[u8])]) -> Running {
        Running::start_with(name, files, true)
    }

    /// `pool`: false carries out file operations inline (`file-threads off`).
    fn start_with(name: &str, files: &[(&str, &[u8])], pool: bool) -> Running {
        let root = std::env::temp_dir().join(format!("weir-worker-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("temp dir is writable");
        for (path, body) in files {
            std::fs::write(root.join(path), body).expect("write test file");
        }
        let root = std::fs::canonicalize(&root).expect("just created");
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
        let mut bound = listen::bind_all(&[addr], 1).expect("loopback is bindable");
        let addr = bound.addrs[0];
        let sockets = bound
            .sockets
            .pop()
            .expect("one worker's sockets")
            .into_iter()
            .map(|s| (s, addr))
            .collect();
        let config = ConfigRef::new(1, Config::builtin(root.clone()));
        let (file_pool, file_threads) = if pool {
            let (handle, threads) = crate::filepool::start(2, 1).expect("file threads");
            (Some(handle), Some(threads))
        } else {
            (None, None)
        };
        let (worker, stopper) = Worker::new(
            0,
            config,
            sockets,
            None,
            std::sync::Arc::default(),
            std::sync::Arc::new(crate::status::StatusBoard::new(1, weir_core::UnixTime(0))),
            Pools {
                verifiers: crate::verifier::start(1, 1).expect("verifier thread").0,
                files: file_pool,
            },
        )
        .expect("worker setup");
        let thread = std::thread::spawn(move || worker.run());
        Running {
            addr,
            stopper,
            thread,
            root,
            file_threads,
        }
    }

    fn connect(&self) -> StdStream {
        let s = StdStream::connect(self.addr).expect("connect to the worker");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set timeout");
        s
    }

    /// Stops the worker and returns its exit code.
    fn stop(self) -> i32 {
        self.stopper.stop();
        let code = self.thread.join().expect("worker thread does not panic");
        if let Some(pool) = self.file_threads {
            pool.finish();
        }
        let _ = std::fs::remove_dir_all(&self.root);
        code
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Reads until the server closes and returns everything.
fn read_all(s: &mut StdStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read until close");
    out
}

fn ends_with(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.len() >= needle.len() && &haystack[haystack.len() - needle.len()..] == needle
}

#[test]
fn serves_a_file_and_stops_cleanly() {
    let w = Running::start("small", &[("hello.txt", b"hello, weir\n")]);
    let mut s = w.connect();
    s.write_all(&get("/hello.txt")).expect("send request");
    let reply = read_all(&mut s);
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(ends_with(&reply, b"\r\n\r\nhello, weir\n"));
    // Close our end, or the server lingers (waits for our EOF) before it can exit.
    drop(s);
    assert_eq!(w.stop(), 0);
}

#[test]
fn a_large_file_arrives_whole_through_a_slow_reader() {
    for pool in [true, false] {
        large_file_through_a_slow_reader(pool, false);
    }
}

#[test]
fn a_large_file_out_of_the_page_cache_is_read_ahead_on_the_pool_and_arrives_whole() {
    large_file_through_a_slow_reader(true, true);
}

/// `evict`: drop the file from the page cache first, so that (where `cachestat` exists)
/// every send waits for a read-ahead on the pool.
fn large_file_through_a_slow_reader(pool: bool, evict: bool) {
    // Several times the send budget and the socket buffers, so sends stop on WouldBlock and
    // on the budget, report partial `Sent`s, and resume on writability.
    let body: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let name = format!("large-{pool}-{evict}");
    let w = Running::start_with(&name, &[("big.bin", &body)], pool);
    if evict {
        let f = std::fs::File::open(w.root.join("big.bin")).expect("just written");
        f.sync_all().expect("fsync");
        // SAFETY: plain integers and a live descriptor.
        let rc = unsafe {
            libc::posix_fadvise(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                0,
                0,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        assert_eq!(rc, 0);
    }
    let mut s = w.connect();
    s.write_all(&get("/big.bin")).expect("send request");
    // Let the server fill the socket buffers before reading anything.
    std::thread::sleep(Duration::from_millis(200));
    let reply = read_all(&mut s);
    assert!(reply.starts_with(b"HTTP/1.1 200"));
    assert!(
        ends_with(&reply, &body),
        "body differs (got {} bytes)",
        reply.len()
    );
    drop(s);
    assert_eq!(w.stop(), 0);
}

#[test]
fn many_connections_at_once() {
    let w = Running::start("many", &[("a.txt", b"aaaa")]);
    let mut clients: Vec<StdStream> = (0..50).map(|_| w.connect()).collect();
    for c in &mut clients {
        c.write_all(&get("/a.txt")).expect("send request");
    }
    for c in &mut clients {
        let reply = read_all(c);
        assert!(reply.starts_with(b"HTTP/1.1 200"));
        assert!(ends_with(&reply, b"aaaa"));
    }
    drop(clients);
    assert_eq!(w.stop(), 0);
}

#[test]
fn a_peer_that_resets_does_not_disturb_others() {
    let body = vec![b'x'; 2_000_000];
    let w = Running::start("reset", &[("big.bin", &body), ("b.txt", b"bb")]);
    {
        let mut s = w.connect();
        s.write_all(&get("/big.bin")).expect("send request");
        let mut first = [0u8; 100];
        s.read_exact(&mut first).expect("the response starts");
        // Dropping with unread data makes the kernel send a reset.
    }
    let mut s = w.connect();
    s.write_all(&get("/b.txt")).expect("send request");
    let reply = read_all(&mut s);
    assert!(ends_with(&reply, b"bb"));
    drop(s);
    assert_eq!(w.stop(), 0);
}

#[test]
fn stops_with_idle_connections_open() {
    let w = Running::start("idle", &[]);
    let mut idle = w.connect();
    // Give the worker time to accept it.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(w.stop(), 0);
    // The server closed it: reading ends (cleanly or with a reset).
    let mut buf = [0u8; 16];
    assert!(matches!(idle.read(&mut buf), Ok(0) | Err(_)));
}

#[test]
fn inputs_name_their_process() {
    use weir_core::server::{Channel, Completion, ExitStatus};
    use weir_core::Token;

    let p = StreamId(Token(7));
    let about_p = [
        Input::StreamWritten { stream: p, n: 1 },
        Input::StreamWriteClosed { stream: p },
        Input::StreamReceived {
            stream: p,
            channel: Channel::Errors,
            data: bytes::Bytes::from_static(b"x"),
        },
        Input::StreamEof {
            stream: p,
            channel: Channel::Main,
        },
        Input::Exited {
            stream: p,
            status: ExitStatus::Code(0),
        },
        // A spawn's success names the process it created, so a Release purges it too.
        Input::Completed {
            token: Token(7),
            result: Completion::Spawned,
        },
    ];
    for input in &about_p {
        assert_eq!(input_stream(input), Some(p), "{input:?}");
        assert_eq!(input_conn(input), None, "{input:?}");
    }
    let not_a_process = [
        Input::Completed {
            token: Token(7),
            result: Completion::Failed(IoError::NotFound),
        },
        Input::PeerClosed { conn: ConnId(7) },
        Input::Shutdown,
    ];
    for input in &not_a_process {
        assert_eq!(input_stream(input), None, "{input:?}");
    }
}
