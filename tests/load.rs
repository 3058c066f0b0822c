//! Large files, many clients, slow and vanishing clients, signals, and a real client (curl).

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{get, request, Expect, Weir, BIG_LEN, EXIT_TIMEOUT};

#[test]
fn five_mib_file_is_byte_exact() {
    let weir = Weir::start();
    let mut c = weir.connect();
    let r = c.get("/big.bin");
    r.assert_status(200);
    assert_eq!(r.expect_header("content-length"), BIG_LEN.to_string());
    assert_eq!(r.expect_header("content-type"), "application/octet-stream");
    assert_eq!(r.body.len(), BIG_LEN);
    assert!(r.body == weir.docs.bytes("big.bin"), "big.bin body differs");
    // HEAD of the same file: the same length, no body, and the connection goes on.
    c.send(request("HEAD", "/big.bin", ""));
    let h = c.read_response(Expect::NoBody);
    h.assert_status(200);
    assert_eq!(h.expect_header("content-length"), BIG_LEN.to_string());
    assert_eq!(h.header("etag"), r.header("etag"));
    let r = c.get("/hello.txt");
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));
}

#[test]
fn two_workers_serve_fifty_connections() {
    let weir = Weir::start_with_workers(2);
    weir.stderr_containing("(2 worker");
    let want = weir.docs.bytes("hello.txt");
    for i in 0..50 {
        let mut c = weir.connect();
        let r = c.get("/hello.txt");
        assert_eq!(r.status, 200, "connection {i}:\n{}", r);
        assert!(r.body == want, "connection {i}: body differs");
    }
}

#[test]
fn two_hundred_concurrent_connections_are_all_answered() {
    let weir = Weir::start_with_workers(2);
    let started = Instant::now();
    let mut clients: Vec<_> = (0..200).map(|_| weir.connect()).collect();
    for c in &mut clients {
        c.send(get("/hello.txt"));
    }
    let want = weir.docs.bytes("hello.txt");
    for (i, c) in clients.iter_mut().enumerate() {
        let r = c.read_response(Expect::Body);
        assert_eq!(r.status, 200, "connection {i}:\n{}", r);
        assert!(r.body == want, "connection {i}: body differs");
    }
    // Every connection is still usable (none was dropped to make room).
    for c in &mut clients {
        c.send(get("/style.css"));
    }
    for c in &mut clients {
        c.read_response(Expect::Body).assert_status(200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "200 connections took {:?}",
        started.elapsed()
    );
}

#[test]
fn slow_reader_gets_the_whole_file() {
    let weir = Weir::start();
    let mut c = weir.connect();
    c.send(get("/big.bin"));
    // Let the server fill the socket buffers and hit back-pressure before reading at all.
    thread::sleep(Duration::from_millis(300));
    let head = c.read_head_only();
    head.assert_status(200);
    assert_eq!(head.expect_header("content-length"), BIG_LEN.to_string());
    let started = Instant::now();
    let mut body = Vec::with_capacity(BIG_LEN);
    let mut next_pause = 256 * 1024;
    while body.len() < BIG_LEN {
        let piece = c.read_some((BIG_LEN - body.len()).min(4096));
        assert!(
            !piece.is_empty(),
            "connection closed after {} bytes",
            body.len()
        );
        body.extend_from_slice(&piece);
        if body.len() >= next_pause {
            // 20 pauses of 40 ms: under a second in all, while the server keeps writing.
            thread::sleep(Duration::from_millis(40));
            next_pause += 256 * 1024;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "slow read took too long"
        );
    }
    assert!(
        body == weir.docs.bytes("big.bin"),
        "slowly read body differs"
    );
    // The connection is usable after the slow response.
    let r = c.get("/hello.txt");
    r.assert_status(200);
}

#[test]
fn client_vanishing_mid_response_does_not_disturb_the_next() {
    let mut weir = Weir::start();
    // Reads a little and then closes with unread data (the server sees a reset).
    {
        let mut quitter = weir.connect();
        quitter.send(get("/big.bin"));
        let head = quitter.read_head_only();
        head.assert_status(200);
        let mut got = 0;
        while got < 100 * 1024 {
            got += quitter.read_some(16 * 1024).len();
        }
    }
    // Sends a request and leaves at once without reading anything.
    for _ in 0..5 {
        let mut rude = weir.connect();
        rude.send(format!("{}{}", get("/big.bin"), get("/big.bin")));
    }
    // Closes its sending side right after a pipelined pair: both must still be answered.
    let mut half = weir.connect();
    half.send(format!("{}{}", get("/hello.txt"), get("/style.css")));
    half.shutdown_write();
    let r = half.read_response(Expect::Body);
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));
    let r = half.read_response(Expect::Body);
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("style.css"));
    half.expect_closed();

    let mut next = weir.connect();
    let r = next.get("/big.bin");
    r.assert_status(200);
    assert!(r.body == weir.docs.bytes("big.bin"), "big.bin differs");
    let r = next.get("/hello.txt");
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));
    weir.assert_running();
}

#[test]
fn sigterm_exits_with_status_zero() {
    let mut weir = Weir::start();
    let mut c = weir.connect();
    c.get("/hello.txt").assert_status(200);
    drop(c);
    weir.signal("TERM");
    let status = weir
        .wait_exit(EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("weir still running {EXIT_TIMEOUT:?} after SIGTERM"));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
}

#[test]
fn sigint_exits_with_status_zero_even_with_an_idle_connection() {
    let mut weir = Weir::start();
    let mut idle = weir.connect();
    idle.get("/hello.txt").assert_status(200);
    weir.signal("INT");
    let status = weir
        .wait_exit(EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("weir still running {EXIT_TIMEOUT:?} after SIGINT"));
    assert_eq!(status.code(), Some(0), "exit status after SIGINT: {status}");
    // The kept-alive connection was closed, not left hanging.
    idle.expect_closed();
}

#[test]
fn sigterm_finishes_the_response_in_flight() {
    let mut weir = Weir::start();
    let mut c = weir.connect();
    c.send(get("/big.bin"));
    let head = c.read_head_only();
    head.assert_status(200);
    let mut body = c.read_some(64 * 1024);
    weir.signal("TERM");
    while body.len() < BIG_LEN {
        let piece = c.read_some(64 * 1024);
        assert!(
            !piece.is_empty(),
            "the response in flight was cut at {} of {BIG_LEN} bytes by SIGTERM",
            body.len()
        );
        body.extend_from_slice(&piece);
    }
    assert!(body == weir.docs.bytes("big.bin"), "body differs");
    c.expect_closed();
    let status = weir
        .wait_exit(EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("weir still running {EXIT_TIMEOUT:?} after SIGTERM"));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
}

/// Runs curl if it is installed (the CI script installs it); `None` if it is absent.
fn curl(args: &[&str]) -> Option<std::process::Output> {
    // -q: ignore ~/.curlrc; --noproxy: never send loopback requests through a proxy.
    match Command::new("curl")
        .args(["-q", "--noproxy", "*", "--max-time", "20", "-sS"])
        .args(args)
        .output()
    {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("running curl: {e}"),
    }
}

#[test]
fn curl_gets_the_exact_bytes() {
    if curl(&["--version"]).is_none() {
        eprintln!("NOTE: curl is not installed; skipping curl_gets_the_exact_bytes");
        return;
    }
    let weir = Weir::start();
    let url = format!("http://{}/hello.txt", weir.addr);
    let out = curl(&["-D", "-", &url]).expect("curl ran a moment ago");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("curl -D - prints the head, then a blank line");
    let head = String::from_utf8_lossy(&out.stdout[..split]).into_owned();
    let body = &out.stdout[split + 4..];
    let status_line = head.lines().next().unwrap_or_default();
    assert!(
        status_line.starts_with("HTTP/1.1 200"),
        "curl saw: {status_line}"
    );
    assert!(
        head.to_ascii_lowercase().contains("\ncontent-length: 1024"),
        "head: {head}"
    );
    assert_eq!(body, &weir.docs.bytes("hello.txt")[..], "curl body differs");

    // The 5 MiB file through curl as well.
    let url = format!("http://{}/big.bin", weir.addr);
    let out = curl(&[&url]).expect("curl ran a moment ago");
    assert!(out.status.success(), "curl big.bin failed");
    assert!(
        out.stdout == weir.docs.bytes("big.bin"),
        "curl big.bin differs"
    );
}
