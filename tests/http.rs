//! End-to-end tests: the real `weir` binary on a loopback port, spoken to over raw TCP.
//!
//! Each test starts its own server on its own temporary document root (see
//! `support::DocRoot` for the files), so tests are independent and run in parallel. The
//! modules beside this file hold the rest: `cgi` (scripts through `exec` rules, git
//! http-backend), `framing` (malformed requests and limits), `lint` (a representative set
//! of raw responses, recorded for httplint), `load`
//! (concurrency, slow and vanishing clients, signals, curl), `ops` (error log, `user`,
//! `chroot`, serving the current directory) and `purity` (the CI script that keeps
//! weir-core free of I/O).

mod auth;
mod cgi;
mod framing;
mod lint;
mod load;
mod mud;
mod ops;
mod purity;
mod reload;
mod rules;
mod services;
mod status;
mod support;

use support::{assert_date_and_server, get, request, Delimiter, Expect, Weir};

/// Asserts the connection is still usable: a GET for hello.txt on it is answered byte-exact.
fn assert_still_usable(weir: &Weir, c: &mut support::Client) {
    let r = c.get("/hello.txt");
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"), "hello.txt body");
}

/// After a response: if it announced `Connection: close` the socket must close, otherwise
/// the connection must go on working.
fn assert_consistent_with_connection_field(
    weir: &Weir,
    c: &mut support::Client,
    r: &support::Response,
) {
    if r.closes() {
        c.expect_closed();
    } else {
        assert_still_usable(weir, c);
    }
}

#[test]
fn startup_banner_names_root_and_address() {
    let weir = Weir::start();
    let err = weir.stderr_containing("weir: serving");
    let line = err
        .lines()
        .find(|l| l.starts_with("weir: serving"))
        .expect("a line starting with the banner");
    let root = weir.docs.root().canonicalize().expect("canonical root");
    assert!(
        line.contains(&root.display().to_string()),
        "banner does not name the root {}: {line}",
        root.display()
    );
    let url = format!("http://{}", weir.addr);
    assert!(line.contains(&url), "banner does not name {url}: {line}");
}

#[test]
fn get_returns_exact_bytes_and_headers() {
    let weir = Weir::start();
    let mut c = weir.connect();
    let r = c.get("/hello.txt");
    r.assert_status(200);
    assert_eq!(
        r.body,
        weir.docs.bytes("hello.txt"),
        "body differs from the file"
    );
    assert_eq!(r.expect_header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(r.expect_header("content-length"), "1024");
    assert_eq!(
        r.expect_header("last-modified"),
        weir.docs.last_modified("hello.txt")
    );
    let etag = r.expect_header("etag");
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "ETag must be a strong, quoted entity tag: {etag:?}"
    );
    assert!(
        !etag[1..etag.len() - 1].contains('"'),
        "ETag has an inner quote: {etag:?}"
    );
    assert_date_and_server(&r);
    assert!(!r.closes(), "a plain 1.1 GET must keep the connection open");
}

#[test]
fn query_string_does_not_change_the_file() {
    let weir = Weir::start();
    let mut c = weir.connect();
    let r = c.get("/hello.txt?x=1&y=%2F");
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));
}

#[test]
fn percent_encoded_path_is_decoded_once() {
    let weir = Weir::start();
    let mut c = weir.connect();
    let r = c.get("/with%20space.txt");
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("with space.txt"));
    // Decoded once: %2520 is a literal "%20" in the name, which does not exist.
    let r = c.get("/with%2520space.txt");
    r.assert_status(404);
}

#[test]
fn absolute_form_target_is_served() {
    // RFC 9112 §3.2.2: a server MUST accept the absolute form.
    let weir = Weir::start();
    let mut c = weir.connect();
    c.send(format!(
        "GET http://localhost:{}/hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
        weir.port()
    ));
    let r = c.read_response(Expect::Body);
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));
}

#[test]
fn content_type_follows_the_suffix() {
    let weir = Weir::start();
    let mut c = weir.connect();
    let cases = [
        ("/index.html", "text/html"),
        ("/style.css", "text/css"),
        ("/app.js", "text/javascript"),
        ("/data.json", "application/json"),
        ("/pixel.png", "image/png"),
        ("/logo.svg", "image/svg+xml"),
        ("/hello.txt", "text/plain"),
        ("/blob.zzqx", "application/octet-stream"),
    ];
    for (path, want) in cases {
        let r = c.get(path);
        r.assert_status(200);
        let ct = r.expect_header("content-type");
        let media = ct.split(';').next().unwrap_or_default().trim();
        assert!(
            media.eq_ignore_ascii_case(want),
            "{path}: Content-Type {ct:?}, want {want}"
        );
        if let Some(params) = ct.split_once(';').map(|(_, p)| p) {
            assert!(
                params.trim().eq_ignore_ascii_case("charset=utf-8"),
                "{path}: unexpected parameters in {ct:?}"
            );
        }
        assert_eq!(r.body, weir.docs.bytes(&path[1..]), "{path}: body");
    }
}

#[test]
fn head_has_the_get_headers_and_no_body() {
    let weir = Weir::start();
    let mut c = weir.connect();
    let g = c.get("/hello.txt");
    g.assert_status(200);
    c.send(request("HEAD", "/hello.txt", ""));
    let h = c.read_response(Expect::NoBody);
    h.assert_status(200);
    for field in [
        "content-type",
        "content-length",
        "etag",
        "last-modified",
        "server",
    ] {
        assert_eq!(
            h.header(field),
            g.header(field),
            "HEAD and GET differ in {field}"
        );
    }
    assert_eq!(h.expect_header("content-length"), "1024");
    // If HEAD had sent a body, it would be in front of this response and break the parse.
    assert_still_usable(&weir, &mut c);
}

#[test]
fn keep_alive_serves_three_requests_on_one_connection() {
    let weir = Weir::start();
    let mut c = weir.connect();
    for path in ["/hello.txt", "/style.css", "/index.html"] {
        let r = c.get(path);
        r.assert_status(200);
        assert!(!r.closes(), "{path}: unexpected Connection: close");
        assert_eq!(r.body, weir.docs.bytes(&path[1..]), "{path}: body");
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let weir = Weir::start();
    let mut c = weir.connect();
    let mut batch = String::new();
    for path in ["/hello.txt", "/missing.txt", "/style.css", "/index.html"] {
        batch.push_str(&get(path));
    }
    c.send(batch);
    let r = c.read_response(Expect::Body);
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"), "first response");
    let r = c.read_response(Expect::Body);
    r.assert_status(404);
    assert!(!r.closes(), "a 404 must not close a pipelined connection");
    let r = c.read_response(Expect::Body);
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("style.css"), "third response");
    let r = c.read_response(Expect::Body);
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("index.html"), "fourth response");
    assert!(c.unread().is_empty(), "extra bytes: {:?}", c.unread());
}

#[test]
fn pipelined_head_and_get_mix() {
    let weir = Weir::start();
    let mut c = weir.connect();
    c.send(format!(
        "{}{}{}",
        request("HEAD", "/big.bin", ""),
        get("/hello.txt"),
        request("HEAD", "/hello.txt", "")
    ));
    let r = c.read_response(Expect::NoBody);
    r.assert_status(200);
    assert_eq!(
        r.expect_header("content-length"),
        support::BIG_LEN.to_string()
    );
    let r = c.read_response(Expect::Body);
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));
    let r = c.read_response(Expect::NoBody);
    r.assert_status(200);
    assert_still_usable(&weir, &mut c);
}

#[test]
fn http10_without_keep_alive_closes_after_the_response() {
    let weir = Weir::start();
    let mut c = weir.connect();
    c.send("GET /hello.txt HTTP/1.0\r\n\r\n");
    let r = c.read_response(Expect::Http10);
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));
    c.expect_closed();
}

#[test]
fn http10_with_keep_alive_stays_open() {
    let weir = Weir::start();
    let mut c = weir.connect();
    for _ in 0..2 {
        c.send("GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = c.read_response(Expect::Http10);
        r.assert_status(200);
        assert_eq!(r.body, weir.docs.bytes("hello.txt"));
        // RFC 9112 Appendix C.2.2: a 1.0 client only keeps the connection if told so.
        assert!(
            r.has_token("connection", "keep-alive"),
            "a kept-alive 1.0 response must say Connection: keep-alive:\n{}",
            r
        );
        assert!(
            r.header("content-length").is_some(),
            "1.0 keep-alive needs a length"
        );
    }
    // Without the keep-alive token, the third request ends the connection.
    c.send("GET /style.css HTTP/1.0\r\n\r\n");
    let r = c.read_response(Expect::Http10);
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("style.css"));
    c.expect_closed();
}

#[test]
fn http11_connection_close_is_honoured() {
    let weir = Weir::start();
    let mut c = weir.connect();
    c.send(request("GET", "/hello.txt", "Connection: close\r\n"));
    let r = c.read_response(Expect::Body);
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));
    assert!(r.closes(), "the response must echo Connection: close");
    c.expect_closed();
}

#[test]
fn chunked_upload_is_consumed_before_the_next_request() {
    let weir = Weir::start();
    let mut c = weir.connect();
    c.send(format!(
        "POST /hello.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
         Content-Type: text/plain\r\n\r\n\
         5;name=value\r\nhello\r\n6\r\n world\r\nA\r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\n{}",
        get("/hello.txt")
    ));
    let r = c.read_response(Expect::Body);
    r.assert_status(405);
    assert_eq!(r.expect_header("allow"), "GET, HEAD, OPTIONS");
    assert!(
        !r.closes(),
        "a 405 after a well-formed chunked body need not close:\n{}",
        r
    );
    // Had the chunked body not been consumed, its bytes would be parsed as a request here.
    let r = c.read_response(Expect::Body);
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));
}

#[test]
fn content_length_body_is_consumed_before_the_next_request() {
    let weir = Weir::start();
    let mut c = weir.connect();
    // The body looks like a request: if it were not consumed, it would be answered.
    let body = "GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n";
    c.send(format!(
        "PUT /hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}{}",
        body.len(),
        get("/style.css")
    ));
    let r = c.read_response(Expect::Body);
    r.assert_status(405);
    assert_eq!(r.expect_header("allow"), "GET, HEAD, OPTIONS");
    let r = c.read_response(Expect::Body);
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("style.css"));
}

#[test]
fn expect_100_continue_on_a_static_path() {
    let weir = Weir::start();
    let mut c = weir.connect();
    c.send(request(
        "POST",
        "/hello.txt",
        "Content-Length: 10\r\nExpect: 100-continue\r\n",
    ));
    let first = c.read_response(Expect::Body);
    if first.status == 100 {
        // The server asked for the body: it must then read it and answer on.
        c.send("0123456789");
        let r = c.read_response(Expect::Body);
        r.assert_status(405);
        assert_eq!(r.expect_header("allow"), "GET, HEAD, OPTIONS");
        assert_consistent_with_connection_field(&weir, &mut c, &r);
    } else {
        // A final status without 100: the client may never send the body, so the server
        // cannot know where the next request starts and must close (RFC 9110 §10.1.1).
        first.assert_status(405);
        assert_eq!(first.expect_header("allow"), "GET, HEAD, OPTIONS");
        assert!(
            first.closes(),
            "405 without 100 Continue must close:\n{}",
            first
        );
        c.expect_closed();
    }
}

#[test]
fn missing_file_is_404() {
    let weir = Weir::start();
    let mut c = weir.connect();
    let r = c.get("/no/such/file.txt");
    r.assert_status(404);
    assert_date_and_server(&r);
    assert!(r.header("etag").is_none(), "a 404 has no ETag");
    assert_still_usable(&weir, &mut c);
}

#[test]
fn directory_without_slash_redirects() {
    let weir = Weir::start();
    let mut c = weir.connect();
    let r = c.get("/sub");
    r.assert_status(301);
    let location = r.expect_header("location");
    assert!(location.ends_with("/sub/"), "Location {location:?}");
    let r = c.get("/noindex?a=b");
    r.assert_status(301);
    let location = r.expect_header("location");
    assert!(
        location.ends_with("/noindex/?a=b"),
        "Location {location:?} should keep the query"
    );
}

#[test]
fn directory_with_slash_serves_its_index() {
    let weir = Weir::start();
    let mut c = weir.connect();
    let r = c.get("/sub/");
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("sub/index.html"));
    assert!(r.expect_header("content-type").starts_with("text/html"));
    let r = c.get("/");
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("index.html"));
}

#[test]
fn directory_without_index_is_listed_by_default() {
    // The built-in configuration (no -c) has listings on (DESIGN.md §5); `listing off`
    // giving 403 is tested through a configuration file in tests/rules.rs.
    let weir = Weir::start();
    let mut c = weir.connect();
    let r = c.get("/noindex/");
    r.assert_status(200);
    let page = String::from_utf8_lossy(&r.body);
    assert!(
        page.contains("<a href=\"readme.txt\">readme.txt</a>"),
        "{page}"
    );
    assert_still_usable(&weir, &mut c);
}

#[test]
fn if_none_match_gives_304() {
    let weir = Weir::start();
    let mut c = weir.connect();
    let first = c.get("/hello.txt");
    first.assert_status(200);
    let etag = first.expect_header("etag").to_string();
    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        "*".into(),
    ] {
        c.send(request(
            "GET",
            "/hello.txt",
            &format!("If-None-Match: {inm}\r\n"),
        ));
        let r = c.read_response(Expect::Body);
        r.assert_status(304);
        assert_eq!(r.expect_header("etag"), etag, "304 must repeat the ETag");
        assert!(r.body.is_empty());
        assert!(r.header("date").is_some(), "304 needs Date");
    }
    // A different tag: the full response. If-None-Match wins over If-Modified-Since.
    let lm = first.expect_header("last-modified");
    c.send(request(
        "GET",
        "/hello.txt",
        &format!("If-None-Match: \"not-it\"\r\nIf-Modified-Since: {lm}\r\n"),
    ));
    let r = c.read_response(Expect::Body);
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));
}

#[test]
fn if_modified_since_gives_304() {
    let weir = Weir::start();
    let mut c = weir.connect();
    let first = c.get("/hello.txt");
    first.assert_status(200);
    let lm = first.expect_header("last-modified").to_string();
    c.send(request(
        "GET",
        "/hello.txt",
        &format!("If-Modified-Since: {lm}\r\n"),
    ));
    let r = c.read_response(Expect::Body);
    r.assert_status(304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("last-modified"), Some(lm.as_str()));
    // An older date: modified since, so the full response.
    c.send(request(
        "GET",
        "/hello.txt",
        "If-Modified-Since: Thu, 01 Jan 1998 00:00:00 GMT\r\n",
    ));
    let r = c.read_response(Expect::Body);
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));
    // The 304s above must have had no body, or this would not parse.
    assert_still_usable(&weir, &mut c);
}

#[test]
fn options_star_and_options_path() {
    let weir = Weir::start();
    let mut c = weir.connect();
    for target in ["*", "/hello.txt"] {
        c.send(request("OPTIONS", target, ""));
        let r = c.read_response(Expect::Body);
        r.assert_status(200);
        assert_eq!(
            r.expect_header("allow"),
            "GET, HEAD, OPTIONS",
            "OPTIONS {target}"
        );
        assert!(r.body.is_empty(), "OPTIONS {target}: unexpected body");
        assert!(!r.closes(), "OPTIONS {target} closed the connection");
    }
    assert_still_usable(&weir, &mut c);
}

#[test]
fn other_methods_on_a_static_path_are_405() {
    let weir = Weir::start();
    for (method, extra) in [
        ("POST", "Content-Length: 0\r\n"),
        ("PUT", "Content-Length: 3\r\n\r\nabc"),
        ("DELETE", ""),
        ("PATCH", "Content-Length: 2\r\n\r\n{}"),
        ("TRACE", ""),
        ("CONNECT", ""),
    ] {
        let mut c = weir.connect();
        // `extra` may end the head itself and carry a body; then no second CRLF is added.
        let req = if extra.contains("\r\n\r\n") {
            format!("{method} /hello.txt HTTP/1.1\r\nHost: localhost\r\n{extra}")
        } else {
            request(method, "/hello.txt", extra)
        };
        c.send(req);
        let r = c.read_response(Expect::Body);
        assert_eq!(r.status, 405, "{method}:\n{}", r);
        assert_eq!(r.expect_header("allow"), "GET, HEAD, OPTIONS", "{method}");
        assert_consistent_with_connection_field(&weir, &mut c, &r);
    }
}

#[test]
fn unknown_method_is_501() {
    let weir = Weir::start();
    let mut c = weir.connect();
    c.send(request("BREW", "/hello.txt", ""));
    let r = c.read_response(Expect::Body);
    r.assert_status(501);
    assert_consistent_with_connection_field(&weir, &mut c, &r);
}

#[test]
fn error_responses_carry_date_server_and_a_length() {
    // RFC 9110 §6.6.1: an origin server with a clock sends Date in 4xx responses too.
    let weir = Weir::start();
    let mut c = weir.connect();
    c.send("GET /hello.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    let r = c.read_response(Expect::Body);
    r.assert_status(400);
    assert_date_and_server(&r);
    assert!(
        matches!(r.delimiter, Delimiter::Length | Delimiter::Chunked),
        "error body must be delimited:\n{}",
        r
    );
    assert!(r.closes());
    c.expect_closed();
}
