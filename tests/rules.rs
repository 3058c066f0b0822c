//! End-to-end tests of `weir.conf`: the rules engine and document retrieval through the real
//! binary (`weir serve -c`), and the `weir check` / `weir route` commands.
//!
//! Each test writes its own configuration next to a fresh document root (`{root}` in the
//! text is that root) and talks raw HTTP to the server.

use std::fs;
use std::process::Command;

use crate::support::{request, Client, Expect, Response, TempDir, Weir};

/// `alice:secret`, hashed the way `htpasswd -m` (apr1) does.
const HTPASSWD: &str = "alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\n";
const ALICE: &str = "Authorization: Basic YWxpY2U6c2VjcmV0\r\n";
const WRONG: &str = "Authorization: Basic YWxpY2U6d3Jvbmc=\r\n";

fn ask(c: &mut Client, method: &str, path: &str, extra: &str) -> Response {
    c.send(request(method, path, extra));
    c.read_response(if method == "HEAD" {
        Expect::NoBody
    } else {
        Expect::Body
    })
}

fn weir_with(conf: &str) -> Weir {
    Weir::start_with_config(conf)
}

#[test]
fn redirects_keep_the_query_and_fail_rules_answer() {
    let weir = weir_with("redirect /old/* /new/* 301\nredirect /away https://example.com/x?a=1\nfail /private/*\nfail /gone 410\npass /* {root}/*\n");
    let mut c = weir.connect();
    let r = ask(&mut c, "GET", "/old/a/b?x=1&y=2", "");
    r.assert_status(301);
    assert_eq!(r.expect_header("location"), "/new/a/b?x=1&y=2");
    let r = ask(&mut c, "GET", "/away?b=2", "");
    r.assert_status(302);
    assert_eq!(r.expect_header("location"), "https://example.com/x?a=1&b=2");
    ask(&mut c, "GET", "/private/hello.txt", "").assert_status(403);
    ask(&mut c, "GET", "/gone", "").assert_status(410);
    let r = ask(&mut c, "GET", "/hello.txt", "");
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));
}

#[test]
fn map_then_pass_into_a_directory() {
    let weir = weir_with("map /v1/* /a/*\npass /a/* {root}/a/*\n");
    let mut c = weir.connect();
    let r = ask(&mut c, "GET", "/v1/file.txt", "");
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("a/file.txt"));
    ask(&mut c, "GET", "/hello.txt", "").assert_status(404);
}

#[test]
fn protect_with_passwords_and_addresses() {
    let weir = Weir::start_with_config_and_files(
        "protect /sub/* users={base}/users realm=\"Staff only\"\nprotect /a/* deny=127.0.0.0/8\npass /* {root}/*\n",
        &[("users", HTPASSWD)],
    );
    let mut c = weir.connect();
    let r = ask(&mut c, "GET", "/sub/", "");
    r.assert_status(401);
    assert_eq!(
        r.expect_header("www-authenticate"),
        "Basic realm=\"Staff only\", charset=\"UTF-8\""
    );
    ask(&mut c, "GET", "/sub/", WRONG).assert_status(401);
    let r = ask(&mut c, "GET", "/sub/", ALICE);
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("sub/index.html"));
    ask(&mut c, "GET", "/a/file.txt", ALICE).assert_status(403);
}

#[test]
fn protect_allow_lets_loopback_in() {
    let weir = weir_with("protect /* allow=127.0.0.0/8,::1\npass /* {root}/*\n");
    let mut c = weir.connect();
    ask(&mut c, "GET", "/hello.txt", "").assert_status(200);
}

#[test]
fn header_rules_and_status() {
    let weir = weir_with("header /a/* Cache-Control \"max-age=60\"\nheader /* X-Demo yes\nstatus /server-status\npass /* {root}/*\n");
    let mut c = weir.connect();
    let r = ask(&mut c, "GET", "/a/file.txt", "");
    assert_eq!(r.expect_header("cache-control"), "max-age=60");
    assert_eq!(r.expect_header("x-demo"), "yes");
    let r = ask(&mut c, "GET", "/hello.txt", "");
    assert!(r.header("cache-control").is_none());
    let r = ask(&mut c, "GET", "/server-status", "");
    r.assert_status(200);
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        text.contains("requests: 3") && text.contains("responses_2xx: 2"),
        "{text}"
    );
    let r = ask(&mut c, "GET", "/server-status?format=json", "");
    assert!(r
        .expect_header("content-type")
        .starts_with("application/json"));
    assert!(String::from_utf8_lossy(&r.body).contains("\"requests\":4"));
}

#[test]
fn host_sections() {
    let weir = weir_with("host one.example\npass /* {root}/a/*\nhost *\npass /* {root}/*\n");
    let mut c = weir.connect();
    c.send("GET /file.txt HTTP/1.1\r\nHost: ONE.example:8080\r\n\r\n");
    let r = c.read_response(Expect::Body);
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("a/file.txt"));
    c.send("GET /hello.txt HTTP/1.1\r\nHost: two.example\r\n\r\n");
    assert_eq!(
        c.read_response(Expect::Body).body,
        weir.docs.bytes("hello.txt")
    );
    c.send("GET http://one.example/file.txt HTTP/1.1\r\nHost: two.example\r\n\r\n");
    assert_eq!(
        c.read_response(Expect::Body).body,
        weir.docs.bytes("a/file.txt")
    );
}

#[test]
fn accept_excluding_the_type_is_406_but_not_for_head() {
    let weir = weir_with("pass /* {root}/*\n");
    let mut c = weir.connect();
    ask(&mut c, "GET", "/pixel.png", "Accept: text/html\r\n").assert_status(406);
    ask(&mut c, "HEAD", "/pixel.png", "Accept: text/html\r\n").assert_status(200);
    ask(
        &mut c,
        "GET",
        "/pixel.png",
        "Accept: text/html, image/*;q=0.5\r\n",
    )
    .assert_status(200);
}

#[test]
fn conditional_requests() {
    let weir = weir_with("pass /* {root}/*\n");
    let mut c = weir.connect();
    let r = ask(&mut c, "GET", "/hello.txt", "");
    let etag = r.expect_header("etag").to_string();
    let lm = r.expect_header("last-modified").to_string();
    ask(
        &mut c,
        "GET",
        "/hello.txt",
        &format!("If-None-Match: {etag}\r\n"),
    )
    .assert_status(304);
    ask(
        &mut c,
        "GET",
        "/hello.txt",
        &format!("If-Modified-Since: {lm}\r\n"),
    )
    .assert_status(304);
    ask(
        &mut c,
        "GET",
        "/hello.txt",
        &format!("If-Match: {etag}\r\n"),
    )
    .assert_status(200);
    ask(&mut c, "GET", "/hello.txt", "If-Match: \"nope\"\r\n").assert_status(412);
    ask(
        &mut c,
        "GET",
        "/hello.txt",
        "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n",
    )
    .assert_status(412);
    // If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    ask(
        &mut c,
        "GET",
        "/hello.txt",
        &format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {lm}\r\n"),
    )
    .assert_status(200);
}

#[test]
fn byte_ranges_single_multiple_and_unsatisfiable() {
    let weir = weir_with("pass /* {root}/*\n");
    let body = weir.docs.bytes("hello.txt");
    let mut c = weir.connect();
    let r = ask(&mut c, "GET", "/hello.txt", "Range: bytes=10-19\r\n");
    r.assert_status(206);
    assert_eq!(
        r.expect_header("content-range"),
        format!("bytes 10-19/{}", body.len())
    );
    assert_eq!(r.body, &body[10..20]);
    let r = ask(&mut c, "GET", "/hello.txt", "Range: bytes=-5\r\n");
    assert_eq!(r.body, &body[body.len() - 5..]);
    let r = ask(&mut c, "GET", "/hello.txt", "Range: bytes=0-1,100-104\r\n");
    r.assert_status(206);
    let ct = r.expect_header("content-type").to_string();
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .expect("multipart type");
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let parts: Vec<&str> = text.split(&format!("--{boundary}")).collect();
    assert_eq!(parts.len(), 4, "{text}");
    assert!(
        parts[1].contains(&format!(
            "Content-Range: bytes 0-1/{}\r\n\r\n{}\r\n",
            body.len(),
            String::from_utf8_lossy(&body[0..2])
        )),
        "{text}"
    );
    assert!(
        parts[2].contains(&format!(
            "Content-Range: bytes 100-104/{}\r\n\r\n{}\r\n",
            body.len(),
            String::from_utf8_lossy(&body[100..105])
        )),
        "{text}"
    );
    assert_eq!(parts[3], "--\r\n");
    let r = ask(&mut c, "GET", "/hello.txt", "Range: bytes=5000-\r\n");
    r.assert_status(416);
    assert_eq!(
        r.expect_header("content-range"),
        format!("bytes */{}", body.len())
    );
    let etag = ask(&mut c, "GET", "/hello.txt", "")
        .expect_header("etag")
        .to_string();
    ask(
        &mut c,
        "GET",
        "/hello.txt",
        &format!("Range: bytes=0-0\r\nIf-Range: {etag}\r\n"),
    )
    .assert_status(206);
    ask(
        &mut c,
        "GET",
        "/hello.txt",
        "Range: bytes=0-0\r\nIf-Range: \"stale\"\r\n",
    )
    .assert_status(200);
}

#[test]
fn precompressed_variants() {
    let weir = weir_with("pass /* {root}/*\n");
    fs::write(weir.docs.root().join("style.css.gz"), b"GZIPPED-CSS").unwrap();
    let mut c = weir.connect();
    let r = ask(&mut c, "GET", "/style.css", "Accept-Encoding: gzip, br\r\n");
    assert_eq!(r.expect_header("content-encoding"), "gzip");
    assert_eq!(r.expect_header("vary"), "Accept-Encoding");
    assert!(r.expect_header("content-type").starts_with("text/css"));
    assert_eq!(r.body, b"GZIPPED-CSS");
    let r = ask(&mut c, "GET", "/style.css", "");
    assert!(r.header("content-encoding").is_none());
    assert_eq!(r.body, weir.docs.bytes("style.css"));
}

#[test]
fn listings_on_and_off_and_type_overrides() {
    let weir = weir_with("listing on\ntype .zzqx application/x-weir-test\npass /* {root}/*\n");
    let mut c = weir.connect();
    let r = ask(&mut c, "GET", "/noindex/", "");
    r.assert_status(200);
    assert!(String::from_utf8_lossy(&r.body).contains("<a href=\"readme.txt\">readme.txt</a>"));
    let r = ask(&mut c, "GET", "/", "");
    assert_eq!(
        r.body,
        weir.docs.bytes("index.html"),
        "a welcome file wins over the listing"
    );
    let r = ask(&mut c, "GET", "/blob.zzqx", "");
    assert_eq!(r.expect_header("content-type"), "application/x-weir-test");
    let weir = weir_with("listing off\npass /* {root}/*\n");
    let mut c = weir.connect();
    ask(&mut c, "GET", "/noindex/", "").assert_status(403);
}

#[test]
fn pass_targets_cannot_leave_their_directory() {
    // `/a..` makes the star `..`, which would name the root's parent.
    let weir = weir_with("pass /a* {root}/a/*\npass /* {root}/*\n");
    let mut c = weir.connect();
    let r = ask(&mut c, "GET", "/a..", "");
    assert!(r.status == 403 || r.status == 404, "{}", r);
    assert!(!String::from_utf8_lossy(&r.body).contains(crate::support::SECRET));
}

fn weir_cmd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .expect("run weir");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_reports_every_error_with_file_line_and_column() {
    let dir = TempDir::new("check");
    let good = dir.path().join("good.conf");
    fs::write(&good, "listen 127.0.0.1:8080\npass /*\n").unwrap();
    let (code, out, _) = weir_cmd(&["check", "-c", good.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("ok"), "{out}");
    let bad = dir.path().join("bad.conf");
    fs::write(&bad, "listen nowhere\npass /*/* x\nexec /x service=ghost\n").unwrap();
    let (code, _, err) = weir_cmd(&["check", "-c", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    let name = bad.display();
    assert!(
        err.contains(&format!("{name}:1:8: error: expected ADDR:PORT")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{name}:2:6: error: a template has at most one `*`\n  pass /*/* x\n       ^~~~"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{name}:3:9: error: no service named `ghost` is declared"
        )),
        "{err}"
    );
    // serve refuses the same file, with the same report.
    let (code, _, err) = weir_cmd(&[
        "serve",
        "-c",
        bad.to_str().unwrap(),
        "--listen",
        "127.0.0.1:1",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{name}:2:6: error")), "{err}");
}

#[test]
fn route_explains_the_demo_configuration() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/site/weir.conf");
    let (code, out, err) = weir_cmd(&["check", "-c", conf]);
    assert_eq!(code, 0, "{err}");
    let (code, out2, _) = weir_cmd(&["route", "-c", conf, "/old/notes.txt?x=1"]);
    assert_eq!(code, 0);
    assert!(
        out2.contains("redirect    /old/*")
            && out2.contains("outcome: redirect 301 to /docs/notes.txt?x=1"),
        "{out2}"
    );
    let (_, out3, _) = weir_cmd(&["route", "-c", conf, "--peer", "192.0.2.1", "/admin/"]);
    assert!(
        out3.contains("outcome: 403: a protect rule refuses this address"),
        "{out3}"
    );
    let (_, out4, _) = weir_cmd(&["route", "-c", conf, "/static/sample-100k.txt"]);
    assert!(
        out4.contains("header: Cache-Control: max-age=3600")
            && out4.contains("htdocs/static/sample-100k.txt"),
        "{out4}"
    );
    // A map rewrites the path, and the walk goes on to the rule that serves it.
    let (_, out5, _) = weir_cmd(&["route", "-c", conf, "/about"]);
    assert!(
        out5.contains("map         /about")
            && out5.contains("path becomes /about.html")
            && out5.contains("htdocs/about.html"),
        "{out5}"
    );
    let _ = out;
}

#[test]
fn route_explains_hostile_targets_as_400() {
    // The same normaliser as the server (core/src/path.rs): each of these is a 400 there.
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/site/weir.conf");
    for (url, reason) in [
        ("/index.html#top", "fragment (#) in the request target"),
        (
            "/%252e%252e/%252e%252e/etc/passwd",
            "double percent-encoding in the path",
        ),
        (
            "/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
            "overlong UTF-8 encoding in the path",
        ),
        ("/..%5c..%5cetc/passwd", "backslash in the path"),
        ("/..\\..\\etc/passwd", "backslash in the path"),
        (
            "/static/..;/..;/etc/passwd",
            "path parameter on a dot segment (..;)",
        ),
    ] {
        let (code, out, err) = weir_cmd(&["route", "-c", conf, url]);
        assert_eq!(code, 0, "{url}: {err}");
        assert!(
            out.contains(&format!("outcome: 400: {reason}\n")),
            "{url}: {out}"
        );
    }
}

#[test]
fn route_takes_the_host_and_the_method_into_account() {
    let dir = std::env::temp_dir().join(format!("weir-route-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("temp dir");
    let conf = dir.join("weir.conf");
    fs::write(
        &conf,
        "fail /secret\nhost a.example b.example\npass /* a/*\nhost *\nfail /* 404\n",
    )
    .expect("write config");
    let conf = conf.to_str().expect("utf-8 path");
    let file = format!("outcome: serve the file {}/a/x.html", dir.display());
    let route = |args: &[&str]| {
        let mut all = vec!["route", "-c", conf];
        all.extend_from_slice(args);
        let (code, out, err) = weir_cmd(&all);
        assert_eq!(code, 0, "{err}");
        out
    };
    // The host picks the section; any other host falls to `*`.
    let out = route(&["--host", "a.example", "/x.html"]);
    assert!(
        out.contains("line   3: pass /* a/*") && out.contains(&file),
        "{out}"
    );
    let out = route(&["--host", "other.example", "/x.html"]);
    assert!(out.contains("outcome: answer 404"), "{out}");
    // An absolute URL names the host itself.
    let out = route(&["http://b.example/x.html"]);
    assert!(
        out.contains("(host b.example,") && out.contains(&file),
        "{out}"
    );
    // Rules before the first host line apply to every host.
    let out = route(&["--host", "a.example", "/secret"]);
    assert!(out.contains("outcome: answer 403"), "{out}");
    // The method: documents answer GET and HEAD only; unknown methods are 501, TRACE 405.
    let out = route(&["--host", "a.example", "--method", "POST", "/x.html"]);
    assert!(
        out.contains(&file) && out.contains("this method gets 405"),
        "{out}"
    );
    let out = route(&["--host", "a.example", "--method", "BREW", "/x.html"]);
    assert!(out.contains("outcome: 501"), "{out}");
    let out = route(&["--host", "a.example", "--method", "TRACE", "/x.html"]);
    assert!(out.contains("outcome: 405"), "{out}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn access_log_has_one_line_per_response_and_is_flushed_on_shutdown() {
    let mut weir = weir_with("access-log {base}/logs/access.log\npass /* {root}/*\n");
    let mut c = weir.connect();
    ask(
        &mut c,
        "GET",
        "/hello.txt",
        "User-Agent: e2e/1\r\nReferer: http://r/\r\n",
    )
    .assert_status(200);
    ask(&mut c, "HEAD", "/hello.txt", "").assert_status(200);
    ask(&mut c, "GET", "/missing\"quote", "").assert_status(404);
    drop(c);
    weir.signal("TERM");
    let status = weir
        .wait_exit(std::time::Duration::from_secs(10))
        .expect("weir exits");
    assert!(status.success(), "{status}");
    let text = fs::read_to_string(weir.docs.base().join("logs/access.log")).expect("the log file");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let size = weir.docs.bytes("hello.txt").len();
    assert!(lines[0].starts_with("127.0.0.1 - - ["), "{}", lines[0]);
    assert!(
        lines[0].ends_with(&format!(
            "\"GET /hello.txt HTTP/1.1\" 200 {size} \"http://r/\" \"e2e/1\""
        )),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("\"HEAD /hello.txt HTTP/1.1\" 200 0 "),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("\"GET /missing\\\"quote HTTP/1.1\" 404 "),
        "{}",
        lines[2]
    );
}
