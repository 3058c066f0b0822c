//! Malformed requests, size limits, versions and path traversal.
//!
//! The anti-smuggling rule (DESIGN.md §4): a request whose framing is in doubt gets one error
//! response with `Connection: close`, and then the connection ends. Every case below sends
//! the bad bytes *followed by a valid pipelined GET*; that GET must never be answered,
//! because answering it would mean the server guessed where the bad request ended.

use std::os::unix::fs::PermissionsExt;

use crate::support::{get, preview, Client, Expect, Response, Weir, SECRET};

/// A valid request that must never be answered when it follows a rejected one.
fn follower() -> String {
    get("/hello.txt")
}

/// Sends `raw` + a pipelined GET on a fresh connection; expects one `status` response that
/// announces `Connection: close`, and then the end of the connection.
fn assert_rejected(weir: &Weir, label: &str, raw: &[u8], status: u16) -> Response {
    let mut c = weir.connect();
    let mut bytes = raw.to_vec();
    bytes.extend_from_slice(follower().as_bytes());
    // The server may close before reading everything; what matters is what comes back.
    let _ = c.send_lenient(&bytes);
    let r = c.read_response(Expect::Body);
    assert_eq!(
        r.status,
        status,
        "{label}: request {}\ngot:\n{}",
        preview(raw),
        r
    );
    assert!(
        r.closes(),
        "{label}: a {status} for bad framing must say Connection: close:\n{}",
        r
    );
    assert_not_the_follower(label, &r);
    c.expect_closed();
    r
}

fn assert_not_the_follower(label: &str, r: &Response) {
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        !body.contains("HTTP/1.") && !body.contains("HELLO line"),
        "{label}: the pipelined request was answered: {}",
        preview(&r.body)
    );
}

/// A request head with the given field lines (each ending in CRLF) and raw body bytes.
fn with_fields(method: &str, fields: &str, body: &str) -> Vec<u8> {
    format!("{method} /hello.txt HTTP/1.1\r\nHost: localhost\r\n{fields}\r\n{body}").into_bytes()
}

#[test]
fn transfer_encoding_with_content_length_is_400() {
    let weir = Weir::start();
    for (label, fields) in [
        (
            "TE then CL",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        ),
        (
            "CL then TE",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "CL 0 and TE",
            "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
        ),
    ] {
        let raw = with_fields("POST", fields, "0\r\n\r\n");
        assert_rejected(&weir, label, &raw, 400);
    }
    let raw = with_fields(
        "GET",
        "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
        "0\r\n\r\n",
    );
    assert_rejected(&weir, "GET with TE and CL", &raw, 400);
    // With Content-Length, an unknown coding is a smuggling attempt first (400), not a
    // coding to implement (501).
    for (label, fields) in [
        (
            "gzip and CL",
            "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n",
        ),
        (
            "identity and CL",
            "Transfer-Encoding: identity\r\nContent-Length: 5\r\n",
        ),
        (
            "CL and chunked, identity",
            "Content-Length: 5\r\nTransfer-Encoding: chunked, identity\r\n",
        ),
    ] {
        let raw = with_fields("POST", fields, "0\r\n\r\n");
        assert_rejected(&weir, label, &raw, 400);
    }
}

#[test]
fn duplicate_content_length_is_400() {
    let weir = Weir::start();
    for (label, fields) in [
        (
            "different values",
            "Content-Length: 5\r\nContent-Length: 6\r\n",
        ),
        (
            "same value twice",
            "Content-Length: 5\r\nContent-Length: 5\r\n",
        ),
        ("list in one line", "Content-Length: 5, 5\r\n"),
    ] {
        let raw = with_fields("POST", fields, "hello!");
        assert_rejected(&weir, label, &raw, 400);
    }
}

#[test]
fn empty_content_length_is_400() {
    let weir = Weir::start();
    for (label, fields) in [
        ("empty", "Content-Length:\r\n"),
        ("blank", "Content-Length:  \r\n"),
    ] {
        let raw = with_fields("POST", fields, "");
        assert_rejected(&weir, label, &raw, 400);
    }
}

#[test]
fn invalid_content_length_is_400() {
    let weir = Weir::start();
    for value in ["abc", "-1", "+5", "5.0", "0x5", "5 5", "5a"] {
        let raw = with_fields("POST", &format!("Content-Length: {value}\r\n"), "hello");
        assert_rejected(&weir, &format!("Content-Length: {value}"), &raw, 400);
    }
}

#[test]
fn unknown_transfer_coding_is_501_then_close() {
    // RFC 9112 §6.1: a transfer coding the server does not understand SHOULD get 501; weir
    // understands bare `chunked` only, so every other coding, wherever it stands in the
    // list, is 501, and the connection closes as after any framing error (the body's
    // length is unknown, so nothing after the head can be read as a request).
    let weir = Weir::start();
    for (label, fields) in [
        ("gzip", "Transfer-Encoding: gzip\r\n"),
        ("identity", "Transfer-Encoding: identity\r\n"),
        ("chunked, gzip", "Transfer-Encoding: chunked, gzip\r\n"),
        ("gzip, chunked", "Transfer-Encoding: gzip, chunked\r\n"),
        (
            "two lines, chunked first",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
        ),
        ("chunkedx", "Transfer-Encoding: chunkedx\r\n"),
        (
            "chunked with a parameter",
            "Transfer-Encoding: chunked;x=1\r\n",
        ),
    ] {
        let raw = with_fields("POST", fields, "0\r\n\r\n");
        assert_rejected(&weir, label, &raw, 501);
    }
}

#[test]
fn malformed_transfer_encoding_is_400() {
    // Not an unknown coding but no coding at all, or not a token: a syntax error.
    let weir = Weir::start();
    for (label, fields) in [
        ("empty", "Transfer-Encoding:\r\n"),
        ("only commas", "Transfer-Encoding: , ,\r\n"),
        ("quoted", "Transfer-Encoding: \"chunked\"\r\n"),
    ] {
        let raw = with_fields("POST", fields, "0\r\n\r\n");
        assert_rejected(&weir, label, &raw, 400);
    }
}

#[test]
fn chunked_applied_twice_is_400() {
    // RFC 9112 §6.1: a sender MUST NOT apply chunked more than once; a server that accepted
    // it would have to guess how many layers to remove.
    let weir = Weir::start();
    for (label, fields) in [
        ("one line", "Transfer-Encoding: chunked, chunked\r\n"),
        (
            "two lines",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        ),
    ] {
        let raw = with_fields("POST", fields, "0\r\n\r\n");
        assert_rejected(&weir, label, &raw, 400);
    }
}

#[test]
fn http10_with_transfer_encoding_is_400() {
    // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
    let weir = Weir::start();
    let raw = b"POST /hello.txt HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_rejected(&weir, "1.0 + TE", raw, 400);
    let raw = b"GET /hello.txt HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\
                Content-Length: 5\r\n\r\n0\r\n\r\n";
    assert_rejected(&weir, "1.0 + TE + CL", raw, 400);
}

#[test]
fn obs_fold_is_400() {
    let weir = Weir::start();
    for (label, fields) in [
        ("space fold", "X-Folded: a\r\n b\r\n"),
        ("tab fold", "X-Folded: a\r\n\tb\r\n"),
        ("folded Content-Length", "Content-Length:\r\n 5\r\n"),
    ] {
        let raw = with_fields("GET", fields, "");
        assert_rejected(&weir, label, &raw, 400);
    }
}

#[test]
fn bare_cr_is_400() {
    let weir = Weir::start();
    let raw = with_fields("GET", "X-A: a\rb\r\n", "");
    assert_rejected(&weir, "CR inside a value", &raw, 400);
    let raw = b"GET /hello.txt HTTP/1.1\rHost: localhost\r\n\r\n";
    assert_rejected(&weir, "CR ending the request line", raw, 400);
    let raw = b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-A: b\r\r\n\r\n";
    assert_rejected(&weir, "CR CR LF", raw, 400);
}

#[test]
fn whitespace_before_colon_is_400() {
    // RFC 9112 §5.1: a server MUST reject whitespace between field name and colon.
    let weir = Weir::start();
    let raw = b"GET /hello.txt HTTP/1.1\r\nHost : localhost\r\n\r\n";
    assert_rejected(&weir, "Host :", raw, 400);
    let raw = with_fields("POST", "Content-Length : 5\r\n", "hello");
    assert_rejected(&weir, "Content-Length :", &raw, 400);
    let raw = with_fields("GET", "X-A\t: b\r\n", "");
    assert_rejected(&weir, "tab before colon", &raw, 400);
}

#[test]
fn nul_or_control_in_a_field_value_is_400() {
    let weir = Weir::start();
    for (label, byte) in [("NUL", 0u8), ("SOH", 1), ("ESC", 0x1b), ("DEL", 0x7f)] {
        let mut raw = b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-A: a".to_vec();
        raw.push(byte);
        raw.extend_from_slice(b"b\r\n\r\n");
        assert_rejected(&weir, label, &raw, 400);
    }
    let raw = b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-\x00A: b\r\n\r\n";
    assert_rejected(&weir, "NUL in a field name", raw, 400);
}

#[test]
fn invalid_chunk_size_ends_the_connection() {
    // The chunked body goes to a CGI script, which takes a body (a POST to a static file
    // would be answered 405 from its head, before the bad chunk is read). weir gathers a
    // chunked body before starting the script (README: so that CONTENT_LENGTH can be
    // given), so the bad size is met while reading the body: 400 with close, the pipelined
    // GET unanswered, and the script never started.
    let weir = Weir::start_with_config("exec /cgi-bin/* {root}/cgi-bin/*\npass /* {root}/*\n");
    let ran = weir.docs.base().join("ran");
    let script = weir.docs.root().join("cgi-bin/sink.sh");
    std::fs::create_dir_all(weir.docs.root().join("cgi-bin")).expect("mkdir cgi-bin");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ >> '{}'\nn=$(wc -c)\nprintf 'Content-Type: text/plain\\r\\n\\r\\nread %s\\n' \"$n\"\n",
            ran.display()
        ),
    )
    .expect("write the script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let chunked_post = |body: &str| {
        format!(
            "POST /cgi-bin/sink.sh HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        )
    };
    // A valid chunked body reaches the script.
    let mut c = weir.connect();
    c.send(chunked_post("5\r\nhello\r\n0\r\n\r\n"));
    let r = c.read_response(Expect::Body);
    r.assert_status(200);
    assert_eq!(r.body, b"read 5\n");
    let runs = || std::fs::read_to_string(&ran).map_or(0, |t| t.lines().count());
    assert_eq!(runs(), 1);

    for size in ["zz", "-1", "", "1 2", "fffffffffffffffffffff", "0x5"] {
        let label = format!("chunk size {size:?}");
        let mut c = weir.connect();
        let raw = chunked_post(&format!("{size}\r\nhello\r\n0\r\n\r\n"));
        let _ = c.send_lenient([raw, follower()].concat());
        let r = c.read_response(Expect::Body);
        assert_eq!(r.status, 400, "{label}:\n{}", r);
        assert!(r.closes(), "{label}: 400 without close:\n{}", r);
        assert_not_the_follower(&label, &r);
        c.expect_closed();
    }
    assert_eq!(runs(), 1, "the script ran for a body with a bad chunk size");
}

#[test]
fn missing_host_in_http11_is_400() {
    let weir = Weir::start();
    assert_rejected(&weir, "no Host", b"GET /hello.txt HTTP/1.1\r\n\r\n", 400);
    assert_rejected(
        &weir,
        "no Host, other fields",
        b"GET /hello.txt HTTP/1.1\r\nAccept: */*\r\n\r\n",
        400,
    );
}

#[test]
fn duplicate_host_is_400() {
    let weir = Weir::start();
    for (label, fields) in [
        ("same value", "Host: localhost\r\nHost: localhost\r\n"),
        (
            "different values",
            "Host: localhost\r\nHost: example.com\r\n",
        ),
    ] {
        let raw = format!("GET /hello.txt HTTP/1.1\r\n{fields}\r\n");
        assert_rejected(&weir, label, raw.as_bytes(), 400);
    }
}

#[test]
fn invalid_host_is_400() {
    let weir = Weir::start();
    for host in [
        "exa mple.com",
        "a/b",
        "user@localhost",
        "localhost:po",
        "[::1",
    ] {
        let raw = format!("GET /hello.txt HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert_rejected(&weir, &format!("Host: {host}"), raw.as_bytes(), 400);
    }
}

#[test]
fn valid_host_forms_are_accepted() {
    // The positive side of the Host checks, so the 400s above are not a blanket refusal.
    let weir = Weir::start();
    let mut c = weir.connect();
    for host in [
        "localhost",
        "localhost:8080",
        "127.0.0.1",
        "[::1]:80",
        "Example.COM",
    ] {
        c.send(format!("GET /hello.txt HTTP/1.1\r\nHost: {host}\r\n\r\n"));
        let r = c.read_response(Expect::Body);
        assert_eq!(r.status, 200, "Host: {host}:\n{}", r);
    }
    // HTTP/1.0 needs no Host.
    c.send("GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    c.read_response(Expect::Http10).assert_status(200);
}

#[test]
fn http2_version_is_505() {
    let weir = Weir::start();
    let raw = b"GET /hello.txt HTTP/2.0\r\nHost: localhost\r\n\r\n";
    assert_rejected(&weir, "HTTP/2.0", raw, 505);
    let raw = b"GET /hello.txt HTTP/3.0\r\nHost: localhost\r\n\r\n";
    assert_rejected(&weir, "HTTP/3.0", raw, 505);
}

#[test]
fn http12_is_read_as_http11() {
    // RFC 9110 §2.5: a higher minor version of a major version the server implements is
    // processed as the highest minor version it knows.
    let weir = Weir::start();
    let mut c = weir.connect();
    c.send(b"GET /hello.txt HTTP/1.2\r\nHost: localhost\r\n\r\n");
    let r = c.read_response(Expect::Body);
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));
}

#[test]
fn long_request_line_is_414() {
    let weir = Weir::start();
    let path = format!("/{}", "a".repeat(9000));
    assert_rejected(&weir, "9 KB target", get(&path).as_bytes(), 414);
    // Below the limit it is an ordinary 404.
    let mut c = weir.connect();
    let r = c.get(&format!("/{}", "b".repeat(4000)));
    r.assert_status(404);
}

#[test]
fn huge_header_section_is_431() {
    let weir = Weir::start();
    let one_big = format!("X-Big: {}\r\n", "a".repeat(33 * 1024));
    assert_rejected(
        &weir,
        "one 33 KiB field",
        &with_fields("GET", &one_big, ""),
        431,
    );
    let many_medium: String = (0..40)
        .map(|i| format!("X-Medium-{i}: {}\r\n", "m".repeat(1000)))
        .collect();
    assert_rejected(
        &weir,
        "40 fields of 1 KB",
        &with_fields("GET", &many_medium, ""),
        431,
    );
}

#[test]
fn too_many_header_fields_is_431() {
    let weir = Weir::start();
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_rejected(&weir, "151 fields", &with_fields("GET", &many, ""), 431);
    // Well under the limit: served.
    let some: String = (0..60).map(|i| format!("X-H{i}: v\r\n")).collect();
    let mut c = weir.connect();
    c.send(with_fields("GET", &some, ""));
    c.read_response(Expect::Body).assert_status(200);
}

#[test]
fn body_over_16_mib_is_413() {
    let weir = Weir::start();
    for len in [16 * 1024 * 1024 + 1, 1 << 30] {
        let raw = with_fields("POST", &format!("Content-Length: {len}\r\n"), "");
        assert_rejected(&weir, &format!("Content-Length: {len}"), &raw, 413);
    }
}

#[test]
fn path_traversal_never_escapes_the_root() {
    let weir = Weir::start();
    let port = weir.port();
    let attempts = [
        "/../secret.txt".to_string(),
        "/../x".into(),
        "/../etc/passwd".into(),
        "/../../../../../../etc/passwd".into(),
        "/%2e%2e/%2e%2e/etc/passwd".into(),
        "/%2e%2e/secret.txt".into(),
        "/%2E%2E/x".into(),
        "/.%2e/secret.txt".into(),
        "/a/../../x".into(),
        "/a/../../secret.txt".into(),
        "/sub/../../secret.txt".into(),
        "/a/%2e%2e/%2e%2e/x".into(),
        "//../secret.txt".into(),
        "/./../secret.txt".into(),
        "/..\\secret.txt".into(),
        format!("http://localhost:{port}/../secret.txt"),
    ];
    for target in &attempts {
        let mut c = weir.connect();
        c.send(get(target));
        let r = c.read_response(Expect::Body);
        assert!(
            r.status == 400 || r.status == 404,
            "{target}: expected 400 or 404, got:\n{}",
            r
        );
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains(SECRET), "{target}: leaked the secret file");
        assert!(!body.contains("root:x:0:0"), "{target}: leaked /etc/passwd");
        if r.closes() {
            c.expect_closed();
        }
    }
    // A `..` that stays inside the root is fine.
    let mut c = weir.connect();
    let r = c.get("/a/../hello.txt");
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));
}

#[test]
fn encoded_slash_in_the_path_is_400() {
    let weir = Weir::start();
    for target in [
        "/sub%2Findex.html",
        "/sub%2findex.html",
        "/a%2F..%2F..%2Fsecret.txt",
    ] {
        let mut c = weir.connect();
        c.send(get(target));
        let r = c.read_response(Expect::Body);
        assert_eq!(r.status, 400, "{target}:\n{}", r);
        assert!(!String::from_utf8_lossy(&r.body).contains(SECRET));
        if r.closes() {
            c.expect_closed();
        }
    }
}

#[test]
fn encoded_nul_or_control_in_the_path_is_400() {
    let weir = Weir::start();
    for target in [
        "/hello.txt%00.png",
        "/hello%0a.txt",
        "/bad%zzescape",
        "/bad%2",
    ] {
        let mut c = weir.connect();
        c.send(get(target));
        let r = c.read_response(Expect::Body);
        assert_eq!(r.status, 400, "{target}:\n{}", r);
        if r.closes() {
            c.expect_closed();
        }
    }
}

/// Sends `GET target` (raw bytes) and expects a 400 that leaks nothing; a refused target is
/// not a framing error, so the connection stays usable unless the answer says otherwise.
fn assert_target_refused(weir: &Weir, target: &[u8]) {
    let mut c = weir.connect();
    let mut raw = b"GET ".to_vec();
    raw.extend_from_slice(target);
    raw.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\n\r\n");
    c.send(&raw);
    let r = c.read_response(Expect::Body);
    let shown = preview(target);
    assert_eq!(r.status, 400, "{shown}:\n{}", r);
    assert!(
        !String::from_utf8_lossy(&r.body).contains(SECRET),
        "{shown}"
    );
    if r.closes() {
        c.expect_closed();
    } else {
        c.get("/hello.txt").assert_status(200);
    }
}

#[test]
fn fragment_in_the_target_is_400() {
    // RFC 9112 §3.2: origin-form = absolute-path [ "?" query ]; there is no fragment.
    let weir = Weir::start();
    let port = weir.port();
    for target in [
        "/hello.txt#x".to_string(),
        "/hello.txt?a=1#x".into(),
        "/#".into(),
        format!("http://localhost:{port}/hello.txt#top"),
    ] {
        assert_target_refused(&weir, target.as_bytes());
    }
    // An encoded `#` is an ordinary character of a name.
    let mut c = weir.connect();
    c.get("/hello%23.txt").assert_status(404);
}

#[test]
fn double_encoded_dots_and_slashes_are_400() {
    let weir = Weir::start();
    for target in [
        "/%252e%252e/secret.txt",
        "/%252E%252E/%252E%252E/x",
        "/sub/%252e%252e/%252e%252e/secret.txt",
        "/sub%252findex.html",
        "/..%255csecret.txt",
        "/%25252e%25252e/secret.txt",
        "/%25c0%25ae%25c0%25ae/secret.txt",
        "/a/..%253b/secret.txt",
    ] {
        assert_target_refused(&weir, target.as_bytes());
    }
}

#[test]
fn overlong_utf8_is_400() {
    let weir = Weir::start();
    for target in [
        &b"/%c0%ae%c0%ae/secret.txt"[..],
        b"/%C0%AE%C0%AE/%C0%AE%C0%AE/x",
        b"/sub%c0%afindex.html",
        b"/%e0%80%ae%e0%80%ae/secret.txt",
        b"/%f0%80%80%ae%f0%80%80%ae/secret.txt",
        b"/\xc0\xae\xc0\xae/secret.txt",
    ] {
        assert_target_refused(&weir, target);
    }
}

#[test]
fn backslash_in_the_path_is_400() {
    let weir = Weir::start();
    for target in [
        "/..%5csecret.txt",
        "/..%5Csecret.txt",
        "/..\\secret.txt",
        "/sub\\index.html",
        "/a/..\\..\\secret.txt",
    ] {
        assert_target_refused(&weir, target.as_bytes());
    }
}

#[test]
fn path_parameters_on_dot_segments_are_400() {
    let weir = Weir::start();
    for target in [
        "/a/..;/hello.txt",
        "/a/..;/..;/secret.txt",
        "/..;/secret.txt",
        "/a/..;jsessionid=1/hello.txt",
        "/a/.;/file.txt",
        "/a/%2e%2e;/hello.txt",
        "/a/..%3b/hello.txt",
    ] {
        assert_target_refused(&weir, target.as_bytes());
    }
}

#[test]
fn names_that_only_look_hostile_are_served() {
    // The attack rules leave ordinary names alone (core/src/path.rs, "Attacks answered as
    // such"): a space, a `;` in a name, `%2e` decoded once.
    let weir = Weir::start();
    for (name, contents) in [
        ("caf\u{e9}.html", "UTF-8 name"),
        ("a%20b.txt", "percent in the name"),
        ("100%.txt", "a bare percent"),
        ("a;b.txt", "a semicolon"),
    ] {
        std::fs::write(weir.docs.root().join(name), contents).expect("write a test file");
    }
    let mut c = weir.connect();
    for (target, contents) in [
        ("/caf%C3%A9.html", "UTF-8 name"),
        ("/a%2520b.txt", "percent in the name"),
        ("/100%25.txt", "a bare percent"),
        ("/a;b.txt", "a semicolon"),
    ] {
        let r = c.get(target);
        r.assert_status(200);
        assert_eq!(r.body, contents.as_bytes(), "{target}");
    }
    let r = c.get("/with%20space.txt");
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("with space.txt"));
    c.get("/a/%2e%2e/hello.txt").assert_status(200);
    c.get("/a/%2e%2e/hello.txt?x=%252e%252e&y=..;")
        .assert_status(200);
}

#[test]
fn garbage_on_one_connection_does_not_disturb_others() {
    let weir = Weir::start();
    // A connection stalled in the middle of a head, held open throughout.
    let mut stalled = weir.connect();
    stalled.send("GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-Partial: aaa");

    // Binary garbage (an LCG stream, with NULs and high bytes). It ends like a head, so
    // that even a parser that waits for the end of the head must judge it now.
    let mut state: u32 = 0xdead_beef;
    let mut garbage: Vec<u8> = (0..4096)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (state >> 16) as u8
        })
        .collect();
    garbage.extend_from_slice(b"\r\n\r\n");
    let mut bad = weir.connect();
    let _ = bad.send_lenient(&garbage);
    assert_garbage_rejected(&mut bad, "binary garbage");

    // Something that looks like a TLS ClientHello.
    let mut tls = weir.connect();
    let _ =
        tls.send_lenient(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-not-http\r\n\r\n");
    assert_garbage_rejected(&mut tls, "TLS ClientHello");

    let mut good = weir.connect();
    for _ in 0..3 {
        let r = good.get("/hello.txt");
        r.assert_status(200);
        assert_eq!(r.body, weir.docs.bytes("hello.txt"));
    }
    // The stalled connection is still alive and completes once it finishes its head.
    stalled.send("\r\n\r\n");
    let r = stalled.read_response(Expect::Body);
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));
}

/// After garbage, the server answers with a 4xx/5xx and `Connection: close` (if it answers
/// at all) and closes; nothing else arrives.
fn assert_garbage_rejected(c: &mut Client, label: &str) {
    let raw = c.read_to_close();
    if raw.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(&raw);
    let status_line = text.lines().next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or_default();
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    assert!(
        version.starts_with("HTTP/1.") && (400..600).contains(&status),
        "{label}: expected an error response, got: {}",
        preview(&raw)
    );
    assert_eq!(
        text.matches("HTTP/1.").count(),
        1,
        "{label}: more than one response: {}",
        preview(&raw)
    );
    assert!(
        text.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{label}: the error response must say Connection: close: {}",
        preview(&raw)
    );
}
