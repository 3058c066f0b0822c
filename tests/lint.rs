//! A representative set of weir's responses, recorded byte for byte for an HTTP linter.
//!
//! `record_responses` asks two servers — the default one (`weir serve --root`: `pass /*`,
//! welcome file, listings) and one with rules (CGI, `protect`, `redirect`, `fail`,
//! `status`, `header`) — for every kind of answer weir gives: documents of each type, ranges,
//! validators, redirects, listings, scripts, and the errors of the rules, the document path
//! and the connection machine. Each response is read by the harness's strict parser (so
//! the test checks framing even when nothing is recorded) and kept exactly as it arrived.
//!
//! With `WEIR_RESPONSES_DIR=DIR` set, each response is written to `DIR/NN-label.http` and
//! the request that got it to `DIR/NN-label.request`. `tests/httplint.sh` runs this test
//! so and feeds every file to httplint (<https://github.com/mnot/httplint>), which lints
//! one raw response message read from standard input.
//!
//! Answers to HEAD are not recorded: a linter reading a response alone cannot know that
//! its `Content-Length` describes a body that is not there.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::support::{Expect, Weir};

/// Where to write the responses, if anywhere.
fn out_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("WEIR_RESPONSES_DIR")?);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    Some(dir)
}

/// Sends raw requests and records the responses.
struct Recorder {
    dir: Option<PathBuf>,
    count: usize,
}

impl Recorder {
    /// Sends `request` on a fresh connection to `weir`, reads one response and records it
    /// as `label`; checks its status and returns the response's raw bytes.
    fn ask(&mut self, weir: &Weir, label: &str, request: &[u8], status: u16) -> Vec<u8> {
        let mut c = weir.connect();
        // A server that refuses a request may close before it has read all of it.
        let _ = c.send_lenient(request);
        let (r, raw) = c.read_response_raw(Expect::of(request));
        assert_eq!(r.status, status, "{label}:\n{}", r);
        self.count += 1;
        if let Some(dir) = &self.dir {
            let name = format!("{:02}-{label}", self.count);
            let write = |ext: &str, bytes: &[u8]| {
                let path = dir.join(format!("{name}.{ext}"));
                fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            };
            write("http", &raw);
            write("request", request);
        }
        raw
    }

    /// A request with the given target and extra field lines, no body.
    fn get(&mut self, weir: &Weir, label: &str, method_target: &str, extra: &str, status: u16) {
        let req = format!("{method_target} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n");
        self.ask(weir, label, req.as_bytes(), status);
    }
}

/// The value of field `name` in a raw response head.
fn field(raw: &[u8], name: &str) -> String {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn record_responses() {
    let mut rec = Recorder {
        dir: out_dir(),
        count: 0,
    };

    // The default server: documents and the document path's answers.
    let weir = Weir::start();
    let root = weir.docs.root().to_path_buf();
    // A precompressed variant, made by gzip so that a linter can decode it.
    let gz = Command::new("gzip")
        .args(["-k", "-9", "-n"])
        .arg(root.join("style.css"))
        .status();
    let have_gz = gz.is_ok_and(|s| s.success());

    let ok = rec.ask(
        &weir,
        "200-text",
        b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
        200,
    );
    let etag = field(&ok, "etag");
    let last_modified = field(&ok, "last-modified");
    rec.get(&weir, "200-html", "GET /", "", 200);
    rec.get(&weir, "200-css", "GET /style.css", "", 200);
    if have_gz {
        rec.get(
            &weir,
            "200-css-gzip",
            "GET /style.css",
            "Accept-Encoding: gzip\r\n",
            200,
        );
    }
    rec.get(&weir, "200-js", "GET /app.js", "", 200);
    rec.get(&weir, "200-json", "GET /data.json", "", 200);
    rec.get(&weir, "200-png", "GET /pixel.png", "", 200);
    rec.get(&weir, "200-svg", "GET /logo.svg", "", 200);
    rec.get(&weir, "200-unknown-type", "GET /blob.zzqx", "", 200);
    rec.ask(&weir, "200-http10", b"GET /hello.txt HTTP/1.0\r\n\r\n", 200);
    rec.get(&weir, "200-listing", "GET /noindex/", "", 200);
    rec.get(&weir, "200-options", "OPTIONS /hello.txt", "", 200);
    rec.get(&weir, "200-options-star", "OPTIONS *", "", 200);
    rec.get(
        &weir,
        "206-range",
        "GET /hello.txt",
        "Range: bytes=0-99\r\n",
        206,
    );
    rec.get(
        &weir,
        "206-multipart",
        "GET /hello.txt",
        "Range: bytes=0-9,100-109\r\n",
        206,
    );
    rec.get(
        &weir,
        "304-if-none-match",
        "GET /hello.txt",
        &format!("If-None-Match: {etag}\r\n"),
        304,
    );
    rec.get(
        &weir,
        "304-if-modified-since",
        "GET /hello.txt",
        &format!("If-Modified-Since: {last_modified}\r\n"),
        304,
    );
    rec.get(&weir, "301-directory", "GET /sub", "", 301);
    rec.get(&weir, "301-directory-query", "GET /sub?x=1", "", 301);
    rec.get(&weir, "400-path", "GET /a/..;/hello.txt", "", 400);
    rec.get(&weir, "404", "GET /missing.txt", "", 404);
    rec.get(
        &weir,
        "405",
        "POST /hello.txt",
        "Content-Length: 0\r\n",
        405,
    );
    rec.get(&weir, "405-trace", "TRACE /hello.txt", "", 405);
    rec.get(&weir, "406", "GET /hello.txt", "Accept: image/png\r\n", 406);
    rec.get(
        &weir,
        "412",
        "GET /hello.txt",
        "If-Match: \"nope\"\r\n",
        412,
    );
    rec.get(
        &weir,
        "416",
        "GET /hello.txt",
        "Range: bytes=99999-\r\n",
        416,
    );
    rec.get(&weir, "501-method", "BREW /hello.txt", "", 501);
    // The connection machine's own answers.
    rec.get(
        &weir,
        "400-framing",
        "POST /hello.txt",
        "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n",
        400,
    );
    rec.get(
        &weir,
        "501-coding",
        "POST /hello.txt",
        "Transfer-Encoding: gzip\r\n",
        501,
    );
    rec.get(
        &weir,
        "413",
        "POST /hello.txt",
        "Content-Length: 99999999999\r\n",
        413,
    );
    let long = format!(
        "GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(9000)
    );
    rec.ask(&weir, "414", long.as_bytes(), 414);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "b".repeat(70_000)
    );
    rec.ask(&weir, "431", big.as_bytes(), 431);
    rec.ask(
        &weir,
        "505",
        b"GET / HTTP/2.0\r\nHost: localhost\r\n\r\n",
        505,
    );
    drop(weir);

    // A server with rules and scripts.
    let weir = Weir::start_with_config_and_files(
        "listing on\n\
         redirect /old/* /new/* 301\n\
         redirect /away https://example.com/x\n\
         fail /private/*\n\
         fail /gone 410\n\
         status /server-status\n\
         header /a/* Cache-Control \"max-age=60\"\n\
         protect /sub/* users={base}/users realm=\"Staff only\"\n\
         exec /cgi-bin/* {root}/cgi-bin/*\n\
         pass /* {root}/*\n",
        &[("users", "alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\n")],
    );
    let bin = weir.docs.root().join("cgi-bin");
    fs::create_dir_all(&bin).expect("mkdir cgi-bin");
    for (name, text) in [
        (
            "streamed.sh",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho streamed\n",
        ),
        (
            "length.sh",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\nContent-Length: 3\\r\\n\\r\\nok\\n'\n",
        ),
        (
            "status.sh",
            "#!/bin/sh\nprintf 'Status: 404 Nothing Here\\r\\nContent-Type: text/html\\r\\n\\r\\n<p>no</p>\\n'\n",
        ),
        (
            "away.sh",
            "#!/bin/sh\nprintf 'Location: https://example.com/elsewhere\\r\\n\\r\\n'\n",
        ),
        ("broken.sh", "#!/bin/sh\necho 'not a header'\n"),
    ] {
        let path = bin.join(name);
        fs::write(&path, text).expect("write a script");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    rec.get(
        &weir,
        "200-cgi-chunked",
        "GET /cgi-bin/streamed.sh",
        "",
        200,
    );
    rec.get(&weir, "200-cgi-length", "GET /cgi-bin/length.sh", "", 200);
    rec.ask(
        &weir,
        "200-cgi-http10",
        b"GET /cgi-bin/streamed.sh HTTP/1.0\r\n\r\n",
        200,
    );
    rec.get(&weir, "404-cgi-status", "GET /cgi-bin/status.sh", "", 404);
    rec.get(&weir, "302-cgi-location", "GET /cgi-bin/away.sh", "", 302);
    rec.get(&weir, "502-cgi", "GET /cgi-bin/broken.sh", "", 502);
    rec.get(&weir, "404-cgi-missing", "GET /cgi-bin/none.sh", "", 404);
    rec.get(&weir, "200-header-rule", "GET /a/file.txt", "", 200);
    rec.get(&weir, "200-status-text", "GET /server-status", "", 200);
    rec.get(&weir, "200-status-json", "GET /server-status?json", "", 200);
    rec.get(&weir, "301-redirect-rule", "GET /old/x?y=1", "", 301);
    rec.get(&weir, "302-redirect-rule", "GET /away", "", 302);
    rec.get(&weir, "401", "GET /sub/", "", 401);
    rec.get(&weir, "403-fail-rule", "GET /private/x", "", 403);
    rec.get(&weir, "410-fail-rule", "GET /gone", "", 410);
    assert!(rec.count >= 40, "{} responses", rec.count);
}
