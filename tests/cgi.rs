//! CGI end to end: real scripts (a shell script, a Python 3 script, `git http-backend`)
//! run by the real binary through `exec` rules, checked over raw HTTP.
//!
//! What is checked is what a script and its client can see — the meta-variables (with
//! SCRIPT_NAME and PATH_INFO of a script mounted at the root and under a prefix), byte-exact
//! bodies both ways, `Status` and `Location`, 502 for bad output, 504 and a dead process
//! group for a script that hangs — and what the server's own process shows from outside:
//! `/proc/PID/fd` does not grow and no child is left a zombie after many scripts, and a
//! static file keeps being served while scripts misbehave or hang. Also: `nph-` scripts
//! passed through byte for byte, the exact variables (no `_` spoofing, no argv), the farm's
//! queue and its 503, a connection cut when a script stalls after its header, the
//! `presentation` and `search` rules, and the demo site's own configuration and script.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{
    assert_date_and_server, preview, request, Client, Expect, Response, TempDir, Weir,
};

/// The usual configuration: scripts under `{root}/cgi-bin`, documents under `{root}`.
const CGI_CONF: &str = "exec /cgi-bin/* {root}/cgi-bin/*\npass /* {root}/*\n";

/// Longest a background check (a process dying, descriptors settling) may take.
const SETTLE: Duration = Duration::from_secs(10);

/// A server with `conf` and the given scripts in `{root}/cgi-bin`, mode 755.
fn serve(conf: &str, scripts: &[(&str, &str)]) -> Weir {
    let weir = Weir::start_with_config(conf);
    for (name, text) in scripts {
        install(&weir.docs.root().join("cgi-bin").join(name), text);
    }
    weir
}

/// Writes an executable script.
fn install(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    }
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// The Python 3 interpreter's real path (not a version manager's shim, which needs an
/// environment that scripts do not get).
fn python3() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is installed");
    assert!(out.status.success(), "python3 -c failed");
    String::from_utf8(out.stdout)
        .expect("a UTF-8 path")
        .trim()
        .to_string()
}

fn ask(c: &mut Client, method: &str, path: &str, extra: &str) -> Response {
    c.send(request(method, path, extra));
    c.read_response(Expect::Body)
}

/// A POST with a `Content-Length` body.
fn post(c: &mut Client, path: &str, body: &[u8]) -> Response {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    c.send(req);
    c.read_response(Expect::Body)
}

/// Deterministic bytes of every value, so a lost, repeated or misplaced block shows.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// `NAME=VALUE` lines → pairs (the value may contain `=`).
fn vars(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn var<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
    vars.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The state letter in `/proc/PID/stat`, or `None` once the process is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
}

/// The parent PID in `/proc/PID/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Waits until `pid` is dead: gone, or a zombie that is not weir's to reap.
fn wait_dead(pid: u32, weir_pid: u32, what: &str) {
    let deadline = Instant::now() + SETTLE;
    loop {
        match proc_state(pid) {
            None => return,
            Some('Z') if parent_of(pid) != Some(weir_pid) => return,
            state => assert!(
                Instant::now() < deadline,
                "{what} (PID {pid}) still alive after {SETTLE:?}: state {state:?}"
            ),
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// weir's children (PID, state).
fn children_of(weir_pid: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc is mounted").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if parent_of(pid) == Some(weir_pid) {
            out.push((pid, proc_state(pid).unwrap_or('?')));
        }
        // Threads are listed under /proc/PID/task, not here: only processes count.
    }
    out
}

fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd is readable")
        .count()
}

/// Reads a PID a script wrote to `file`, waiting for the script to write it.
fn read_pid(file: &Path) -> u32 {
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(pid) = fs::read_to_string(file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "no PID in {} after {SETTLE:?}",
            file.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

const ENV_SH: &str = r#"#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
for name in REQUEST_METHOD QUERY_STRING PATH_INFO SCRIPT_NAME SERVER_PROTOCOL \
    CONTENT_LENGTH CONTENT_TYPE HTTP_X_CUSTOM HTTP_ACCEPT HTTP_PROXY GATEWAY_INTERFACE \
    REQUEST_URI SCRIPT_FILENAME; do
    eval "isset=\${$name+yes}"
    if [ "$isset" = yes ]; then eval "printf '%s=%s\n' $name \"\$$name\""; fi
done
echo "PWD_IS=$(pwd -P)"
echo "VARS=$(env | cut -d= -f1 | sort | tr '\n' ' ')"
echo "script says hello on stderr" >&2
"#;

#[test]
fn a_shell_script_sees_the_cgi_environment() {
    let weir = serve(CGI_CONF, &[("env.sh", ENV_SH)]);
    let mut c = weir.connect();
    let r = ask(
        &mut c,
        "GET",
        "/cgi-bin/env.sh/some/path?x=1&y=%41",
        "X-Custom: hello there\r\nAccept: text/plain\r\nProxy: http://evil.example:3128/\r\n",
    );
    r.assert_status(200);
    assert_eq!(r.expect_header("content-type"), "text/plain");
    let v = vars(&r.body);
    let body = String::from_utf8_lossy(&r.body);
    assert_eq!(var(&v, "REQUEST_METHOD"), Some("GET"), "{body}");
    assert_eq!(var(&v, "QUERY_STRING"), Some("x=1&y=%41"), "{body}");
    assert_eq!(var(&v, "PATH_INFO"), Some("/some/path"), "{body}");
    assert_eq!(var(&v, "SCRIPT_NAME"), Some("/cgi-bin/env.sh"), "{body}");
    assert_eq!(var(&v, "SERVER_PROTOCOL"), Some("HTTP/1.1"), "{body}");
    assert_eq!(var(&v, "GATEWAY_INTERFACE"), Some("CGI/1.1"), "{body}");
    assert_eq!(var(&v, "HTTP_X_CUSTOM"), Some("hello there"), "{body}");
    assert_eq!(var(&v, "HTTP_ACCEPT"), Some("text/plain"), "{body}");
    assert_eq!(var(&v, "HTTP_PROXY"), None, "httpoxy: {body}");
    assert_eq!(var(&v, "CONTENT_LENGTH"), None, "a GET has no body: {body}");
    let script = weir.docs.root().join("cgi-bin/env.sh");
    assert_eq!(
        var(&v, "SCRIPT_FILENAME"),
        Some(script.to_str().expect("UTF-8 path")),
        "{body}"
    );
    // The working directory is the script's.
    let dir = weir
        .docs
        .root()
        .join("cgi-bin")
        .canonicalize()
        .expect("exists");
    assert_eq!(
        var(&v, "PWD_IS"),
        Some(dir.to_str().expect("UTF-8")),
        "{body}"
    );
    // Nothing of weir's own environment (cargo's variables, HOME) reaches the script.
    let names = var(&v, "VARS").expect("the script lists its variables");
    for leaked in ["HOME", "CARGO", "RUST", "USER"] {
        assert!(
            !names.split(' ').any(|n| n.starts_with(leaked)),
            "{leaked}… leaked into the script's environment: {names}"
        );
    }

    // A POST: the body's length and type reach the script.
    let r = post(&mut c, "/cgi-bin/env.sh", b"abc=1");
    r.assert_status(200);
    let v = vars(&r.body);
    assert_eq!(var(&v, "REQUEST_METHOD"), Some("POST"));
    assert_eq!(var(&v, "CONTENT_LENGTH"), Some("5"));
    assert_eq!(var(&v, "CONTENT_TYPE"), Some("application/octet-stream"));
    assert_eq!(var(&v, "PATH_INFO").unwrap_or(""), "");

    // Standard error goes to the error log with the script's name.
    let err = weir.stderr_containing("script says hello on stderr");
    let line = err
        .lines()
        .find(|l| l.contains("script says hello on stderr"))
        .expect("the line is there");
    assert!(line.starts_with("weir: "), "{line}");
    assert!(
        line.contains("env.sh"),
        "the line does not name the script: {line}"
    );
}

/// RFC 3875 §3.3: SCRIPT_NAME and PATH_INFO join to the request's path. A script mounted
/// at the root has an empty SCRIPT_NAME and the whole path as PATH_INFO; one mounted under
/// a prefix keeps the slash after it in PATH_INFO.
#[test]
fn script_name_and_path_info_join_to_the_path_through_the_binary() {
    let weir = serve(
        "exec /app/* {root}/cgi-bin/env.sh\nexec /* {root}/cgi-bin/env.sh\n",
        &[("env.sh", ENV_SH)],
    );
    let mut c = weir.connect();
    for (path, name, info) in [
        ("/x/y", "", "/x/y"),
        ("/", "", "/"),
        ("/app/", "/app", "/"),
        ("/app/x/y", "/app", "/x/y"),
    ] {
        let r = ask(&mut c, "GET", path, "");
        r.assert_status(200);
        let v = vars(&r.body);
        let body = String::from_utf8_lossy(&r.body);
        assert_eq!(var(&v, "SCRIPT_NAME"), Some(name), "{path}: {body}");
        assert_eq!(var(&v, "PATH_INFO"), Some(info), "{path}: {body}");
    }
}

const ECHO_PY: &str = r#"
import os, sys
n = int(os.environ.get("CONTENT_LENGTH") or "0")
data = b""
while len(data) < n:
    more = sys.stdin.buffer.read(n - len(data))
    if not more:
        break
    data += more
out = sys.stdout.buffer
out.write(b"Content-Type: application/octet-stream\r\n")
out.write(b"X-Method: " + os.environ["REQUEST_METHOD"].encode() + b"\r\n")
out.write(b"X-Query: " + os.environ.get("QUERY_STRING", "").encode() + b"\r\n")
out.write(b"X-Path-Info: " + os.environ.get("PATH_INFO", "").encode() + b"\r\n")
out.write(b"X-Proxy: " + os.environ.get("HTTP_PROXY", "unset").encode() + b"\r\n")
out.write(b"X-Length: " + str(n).encode() + b"\r\n\r\n")
out.write(data)
out.flush()
"#;

fn echo_py() -> String {
    format!("#!{}\n{ECHO_PY}", python3())
}

#[test]
fn a_python_script_echoes_a_mebibyte_byte_exact() {
    let weir = serve(CGI_CONF, &[("echo.py", &echo_py())]);
    let mut c = weir.connect();
    let body = pattern(1 << 20, 1);
    let r = post(&mut c, "/cgi-bin/echo.py/p/i?q=1", &body);
    r.assert_status(200);
    assert_eq!(r.expect_header("x-method"), "POST");
    assert_eq!(r.expect_header("x-query"), "q=1");
    assert_eq!(r.expect_header("x-path-info"), "/p/i");
    assert_eq!(r.expect_header("x-length"), (1 << 20).to_string());
    assert_eq!(r.body.len(), body.len(), "echoed length");
    assert!(r.body == body, "the echoed body differs");
    // The connection goes on, and a Proxy header never becomes HTTP_PROXY.
    let r = ask(&mut c, "GET", "/cgi-bin/echo.py", "Proxy: http://evil/\r\n");
    r.assert_status(200);
    assert_eq!(r.expect_header("x-proxy"), "unset");
    assert!(r.body.is_empty());
}

#[test]
fn a_chunked_body_reaches_the_script_byte_exact() {
    let weir = serve(CGI_CONF, &[("echo.py", &echo_py())]);
    let mut c = weir.connect();
    let body = pattern(300_000, 2);
    let mut req =
        b"POST /cgi-bin/echo.py HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    // Chunks of uneven sizes, one with an extension.
    let mut at = 0;
    for (i, size) in [1usize, 4095, 65_536, 100_000, 7, 130_361]
        .iter()
        .enumerate()
    {
        let chunk = &body[at..at + size];
        at += size;
        if i == 2 {
            req.extend_from_slice(format!("{size:x};name=value\r\n").as_bytes());
        } else {
            req.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        }
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    assert_eq!(at, body.len());
    req.extend_from_slice(b"0\r\n\r\n");
    c.send(req);
    let r = c.read_response(Expect::Body);
    r.assert_status(200);
    assert_eq!(r.expect_header("x-length"), body.len().to_string());
    assert!(
        r.body == body,
        "the echoed body differs ({} bytes)",
        r.body.len()
    );
}

#[test]
fn status_and_location_fields() {
    let weir = serve(
        CGI_CONF,
        &[
            (
                "teapot.sh",
                "#!/bin/sh\nprintf 'Status: 418 Short and stout\\r\\nContent-Type: text/plain\\r\\nX-From: script\\r\\n\\r\\nteapot\\n'\n",
            ),
            (
                "local.sh",
                "#!/bin/sh\nprintf 'Location: /hello.txt\\r\\n\\r\\n'\n",
            ),
            (
                "away.sh",
                "#!/bin/sh\nprintf 'Location: http://example.com/elsewhere?x=1\\r\\n\\r\\n'\n",
            ),
            ("plain.sh", "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho bare-newlines\n"),
        ],
    );
    let mut c = weir.connect();
    let r = ask(&mut c, "GET", "/cgi-bin/teapot.sh", "");
    r.assert_status(418);
    assert_eq!(r.expect_header("x-from"), "script");
    assert_eq!(r.body, b"teapot\n");

    // A local path is served as if it had been asked for: the rules run again.
    let r = ask(&mut c, "GET", "/cgi-bin/local.sh", "");
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));

    // A URL is a redirect.
    let r = ask(&mut c, "GET", "/cgi-bin/away.sh", "");
    r.assert_status(302);
    assert_eq!(
        r.expect_header("location"),
        "http://example.com/elsewhere?x=1"
    );

    // Lines ended by LF alone are fine in a script's header.
    let r = ask(&mut c, "GET", "/cgi-bin/plain.sh", "");
    r.assert_status(200);
    assert_eq!(r.body, b"bare-newlines\n");
}

#[test]
fn a_hanging_script_gets_504_and_its_process_group_is_killed() {
    let weir = Weir::start_with_config(&format!("timeout gateway=1s\n{CGI_CONF}"));
    let pids = weir.docs.base().join("pids");
    let script = format!(
        "#!/bin/sh\nsleep 300 &\necho $! > {dir}/child.pid\necho $$ > {dir}/script.pid\nwait\n",
        dir = pids.display()
    );
    fs::create_dir_all(&pids).expect("mkdir pids");
    install(&weir.docs.root().join("cgi-bin/hang.sh"), &script);
    let mut c = weir.connect();
    let started = Instant::now();
    let r = ask(&mut c, "GET", "/cgi-bin/hang.sh", "");
    r.assert_status(504);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "504 after {took:?} with gateway=1s"
    );
    let script_pid = read_pid(&pids.join("script.pid"));
    let child_pid = read_pid(&pids.join("child.pid"));
    wait_dead(script_pid, weir.pid(), "the hanging script");
    wait_dead(
        child_pid,
        weir.pid(),
        "the script's own child (same process group)",
    );
    // The connection is still good.
    let r = c.get("/hello.txt");
    r.assert_status(200);
}

#[test]
fn a_client_that_goes_away_takes_its_script_with_it() {
    // A short grace time, so that even if this fails, the server exits (killing the
    // script) within the harness's wait instead of being killed and leaving it behind.
    let weir = Weir::start_with_config(&format!("timeout grace=1s\n{CGI_CONF}"));
    let pids = weir.docs.base().join("pids");
    fs::create_dir_all(&pids).expect("mkdir pids");
    let script = format!(
        "#!/bin/sh\nsleep 300 &\necho $! > {dir}/child.pid\necho $$ > {dir}/script.pid\nwait\n",
        dir = pids.display()
    );
    install(&weir.docs.root().join("cgi-bin/hang.sh"), &script);
    let mut c = weir.connect();
    c.send(request("GET", "/cgi-bin/hang.sh", ""));
    let script_pid = read_pid(&pids.join("script.pid"));
    let child_pid = read_pid(&pids.join("child.pid"));
    drop(c);
    wait_dead(script_pid, weir.pid(), "the script of a client that left");
    wait_dead(child_pid, weir.pid(), "the script's own child");
    weir.connect().get("/hello.txt").assert_status(200);
}

/// The gateway timeout of the misbehaving-scripts test: long against the few local requests
/// that must be answered while its hanging script waits for it.
const HANG_TIMEOUT_S: u32 = 8;

#[test]
fn misbehaving_scripts_get_502_while_static_files_keep_flowing() {
    const FLOOD: usize = 32 << 20;
    let weir = serve(
        &format!("timeout gateway={HANG_TIMEOUT_S}s\n{CGI_CONF}"),
        &[
            (
                "ok.sh",
                "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nok\\n'\n",
            ),
            (
                "flood.sh",
                &format!(
                    "#!/bin/sh\nprintf 'Content-Type: application/octet-stream\\r\\n\\r\\n'\nexec head -c {FLOOD} /dev/zero\n"
                ),
            ),
            ("crash.sh", "#!/bin/sh\nkill -SEGV $$\n"),
            (
                "crash-late.py",
                &format!(
                    "#!{}\nimport os, sys\nsys.stdout.write('Content-Type: text/plain\\r\\n')\nsys.stdout.flush()\nos.abort()\n",
                    python3()
                ),
            ),
            ("garbage.sh", "#!/bin/sh\nhead -c 5000 /dev/urandom\n"),
            ("noheader.sh", "#!/bin/sh\nprintf 'this is not a header\\r\\n\\r\\nbody\\n'\n"),
            (
                "inject.sh",
                "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\nX-Bad: a\\rSet-Cookie: evil\\r\\n\\r\\nx'\n",
            ),
            ("silent.sh", "#!/bin/sh\nexit 0\n"),
        ],
    );
    // A neighbour that keeps asking for a static file the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let neighbour = {
        let stop = Arc::clone(&stop);
        let addr = weir.addr;
        let want = weir.docs.bytes("hello.txt");
        thread::spawn(move || {
            let mut c = Client::connect(addr);
            let mut served = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let r = c.get("/hello.txt");
                assert_eq!(r.status, 200, "static file during CGI trouble:\n{}", r);
                assert!(r.body == want, "static body differs");
                served += 1;
            }
            served
        })
    };

    // A script that hangs until its gateway timeout (it writes its PID, then sleeps).
    let hang_pid_file = weir.docs.base().join("hang.pid");
    install(
        &weir.docs.root().join("cgi-bin/hang.sh"),
        &format!(
            "#!/bin/sh\necho $$ > '{}'\nexec sleep 300\n",
            hang_pid_file.display()
        ),
    );
    let mut hung = weir.connect();
    hung.stream()
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("set_read_timeout");
    hung.send(request("GET", "/cgi-bin/hang.sh", ""));
    let hang_pid = read_pid(&hang_pid_file);
    // While it hangs, the one worker serves a static file and another script. The script
    // being still alive afterwards shows these answers did not wait for the timeout (the
    // margin is the whole gateway timeout against a few local requests).
    let mut c = weir.connect();
    for _ in 0..3 {
        let r = c.get("/hello.txt");
        r.assert_status(200);
        assert!(
            r.body == weir.docs.bytes("hello.txt"),
            "static body differs"
        );
    }
    let r = ask(&mut c, "GET", "/cgi-bin/ok.sh", "");
    r.assert_status(200);
    assert_eq!(r.body, b"ok\n");
    assert!(
        matches!(proc_state(hang_pid), Some(s) if s != 'Z'),
        "the hanging script (PID {hang_pid}) ended before the requests beside it were \
         answered: they waited for it (gateway={HANG_TIMEOUT_S}s)"
    );

    let r = ask(&mut c, "GET", "/cgi-bin/flood.sh", "");
    r.assert_status(200);
    assert_eq!(r.body.len(), FLOOD, "flood length");
    assert!(r.body.iter().all(|&b| b == 0), "flood bytes");

    for script in [
        "crash.sh",
        "crash-late.py",
        "garbage.sh",
        "noheader.sh",
        "inject.sh",
        "silent.sh",
    ] {
        let mut c = weir.connect();
        let r = ask(&mut c, "GET", &format!("/cgi-bin/{script}"), "");
        assert_eq!(r.status, 502, "{script}:\n{}", r);
    }
    // Scripts that do not exist or may not run are not a gateway failure.
    install(
        &weir.docs.root().join("cgi-bin/noexec.sh"),
        "#!/bin/sh\necho\n",
    );
    fs::set_permissions(
        weir.docs.root().join("cgi-bin/noexec.sh"),
        fs::Permissions::from_mode(0o644),
    )
    .expect("chmod 644");
    let mut c = weir.connect();
    let r = ask(&mut c, "GET", "/cgi-bin/missing.sh", "");
    r.assert_status(404);
    let r = ask(&mut c, "GET", "/cgi-bin/noexec.sh", "");
    r.assert_status(403);

    // The hanging script's answer, once its timeout has passed.
    let r = hung.read_response(Expect::Body);
    r.assert_status(504);
    wait_dead(hang_pid, weir.pid(), "the hanging script");

    stop.store(true, Ordering::Relaxed);
    let served = neighbour.join().expect("the neighbour saw only 200s");
    assert!(served > 0, "the neighbour was never served");
}

#[test]
fn many_scripts_leave_no_descriptor_and_no_zombie_behind() {
    let weir = serve(
        CGI_CONF,
        &[
            (
                "ok.sh",
                "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nok\\n'\n",
            ),
            ("echo.py", &echo_py()),
            ("bad.sh", "#!/bin/sh\necho garbage\n"),
        ],
    );
    // One of each first, so that whatever the server opens once (nothing, it should be)
    // is open before counting.
    let mut c = weir.connect();
    ask(&mut c, "GET", "/cgi-bin/ok.sh", "").assert_status(200);
    drop(c);
    let pid = weir.pid();
    let before = settled_fds(pid, None);

    let run = |n: usize| {
        let addr = weir.addr;
        thread::spawn(move || {
            let mut c = Client::connect(addr);
            for i in 0..n {
                match i % 4 {
                    0 | 1 => {
                        ask(&mut c, "GET", "/cgi-bin/ok.sh", "").assert_status(200);
                    }
                    2 => {
                        let body = pattern(3000 + i, u32::try_from(i).unwrap_or(0));
                        let r = post(&mut c, "/cgi-bin/echo.py", &body);
                        r.assert_status(200);
                        assert!(r.body == body, "echo {i} differs");
                    }
                    _ => {
                        let r = ask(&mut c, "GET", "/cgi-bin/bad.sh", "");
                        assert_eq!(r.status, 502, "{}", r);
                        // A 502 may close the connection: go on with a fresh one.
                        c = Client::connect(addr);
                    }
                }
            }
        })
    };
    let threads: Vec<_> = (0..4).map(|_| run(50)).collect();
    for t in threads {
        t.join().expect("every script answered");
    }
    let after = settled_fds(pid, Some(before));
    assert_eq!(after, before, "weir's descriptors grew after 200 scripts");
    let deadline = Instant::now() + SETTLE;
    loop {
        let kids = children_of(pid);
        if kids.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "weir still has {} children after {SETTLE:?}, e.g. {:?}",
            kids.len(),
            &kids[..kids.len().min(10)]
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// weir's descriptor count once it stops changing (children finishing, connections
/// closing); with `want`, as soon as it equals `want`.
fn settled_fds(pid: u32, want: Option<usize>) -> usize {
    let deadline = Instant::now() + SETTLE;
    let mut last = fd_count(pid);
    let mut stable_since = Instant::now();
    loop {
        thread::sleep(Duration::from_millis(50));
        let now = fd_count(pid);
        if Some(now) == want {
            return now;
        }
        if now != last {
            last = now;
            stable_since = Instant::now();
        } else if stable_since.elapsed() > Duration::from_millis(500) && want.is_none() {
            return now;
        }
        if Instant::now() >= deadline {
            return now;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The demo site
// ---------------------------------------------------------------------------------------

/// `examples/site`, absolute.
fn example_site() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/site")
        .canonicalize()
        .expect("examples/site exists")
}

#[test]
fn the_example_site_runs_its_cgi_script_and_serves_its_pages() {
    let site = example_site();
    let conf = fs::read_to_string(site.join("weir.conf")).expect("read examples/site/weir.conf");
    // The harness writes the configuration into a temporary directory, so the file's
    // default root (its own directory) is given explicitly; everything else is the bundled
    // file as it is, and `--listen` (which the harness passes) replaces its `listen` line.
    let weir = Weir::start_with_config(&format!("root \"{}\"\n{conf}", site.display()));
    let started = weir.stderr_containing("serving");
    let line = started
        .lines()
        .find(|l| l.contains("serving"))
        .expect("the start-up line");
    assert!(
        line.ends_with(&format!(" on http://{} (1 workers)", weir.addr)),
        "--listen did not replace the file's listen line: {line}"
    );

    // What hello.sh prints when run by hand with the variables weir should give it.
    let script = site.join("cgi-bin/hello.sh");
    let out = Command::new(&script)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("SCRIPT_NAME", "/cgi-bin/hello.sh")
        .env("REQUEST_METHOD", "GET")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("PATH_INFO", "/extra/path")
        .env("QUERY_STRING", "name=weir")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env(
            "SERVER_SOFTWARE",
            concat!("weir/", env!("CARGO_PKG_VERSION")),
        )
        .current_dir(site.join("cgi-bin"))
        .stdin(Stdio::null())
        .output()
        .expect("run hello.sh");
    assert!(out.status.success(), "hello.sh failed: {}", out.status);
    let split = out
        .stdout
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("hello.sh prints a header section and a blank line");
    let want_body = &out.stdout[split + 2..];
    assert!(
        String::from_utf8_lossy(want_body).contains("Hello from a CGI script"),
        "hello.sh's page changed; update this test"
    );

    let mut c = weir.connect();
    let r = ask(&mut c, "GET", "/cgi-bin/hello.sh/extra/path?name=weir", "");
    r.assert_status(200);
    assert_eq!(r.expect_header("content-type"), "text/html; charset=utf-8");
    assert_eq!(r.expect_header("x-content-type-options"), "nosniff");
    assert!(
        r.body == want_body,
        "the page differs from what hello.sh prints:\n got: {}\nwant: {}",
        String::from_utf8_lossy(&r.body),
        String::from_utf8_lossy(want_body)
    );

    // One page of the demo site: the home page, through `pass /* htdocs/*` and `welcome`.
    let r = c.get("/");
    r.assert_status(200);
    assert_eq!(r.expect_header("content-type"), "text/html; charset=utf-8");
    assert_eq!(r.expect_header("x-content-type-options"), "nosniff");
    assert!(
        r.body == fs::read(site.join("htdocs/index.html")).expect("read index.html"),
        "/ is not htdocs/index.html"
    );

    // The multi-user dungeon, a FastCGI service built into weir (`weir mud`): its page,
    // a login, and a command.
    let r = ask(&mut c, "GET", "/mud/", "");
    r.assert_status(200);
    assert!(
        String::from_utf8_lossy(&r.body).contains("id=\"login\""),
        "the MUD's page"
    );
    let form = "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\n";
    c.send(format!(
        "POST /mud/login HTTP/1.1\r\nHost: x\r\n{form}\r\nname=alice"
    ));
    let r = c.read_response(Expect::Body);
    r.assert_status(200);
    let cookie = r
        .expect_header("set-cookie")
        .split(';')
        .next()
        .expect("a cookie")
        .to_string();
    c.send(format!(
        "POST /mud/cmd HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 8\r\n\r\nline=who"
    ));
    let r = c.read_response(Expect::Body);
    r.assert_status(200);
    assert!(String::from_utf8_lossy(&r.body).contains("alice"), "{}", r);

    // The PHP page, through the `php` service weir launched: with php-cgi on PATH it is
    // PHP's page; without, weir started anyway and answers 503 (README, "Services").
    let php = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("php-cgi").is_file()));
    let r = ask(&mut c, "GET", "/hello.php?name=tester", "");
    if php {
        r.assert_status(200);
        let body = String::from_utf8_lossy(&r.body);
        assert!(body.contains("<h1>Hello, tester.</h1>"), "{body}");
        assert!(
            body.contains(&format!("{}", site.join("htdocs/hello.php").display())),
            "SCRIPT_FILENAME: {body}"
        );
    } else {
        eprintln!("note: php-cgi is not on PATH; checking the 503 instead of the PHP page");
        r.assert_status(503);
        weir.stderr_containing("service php");
    }
}

// ---------------------------------------------------------------------------------------
// git http-backend
// ---------------------------------------------------------------------------------------

/// Where git keeps `git-http-backend`.
fn git_http_backend() -> PathBuf {
    let out = Command::new("git")
        .arg("--exec-path")
        .output()
        .expect("git is installed");
    assert!(out.status.success(), "git --exec-path failed");
    let dir = String::from_utf8(out.stdout).expect("a UTF-8 path");
    let backend = Path::new(dir.trim()).join("git-http-backend");
    assert!(backend.exists(), "no {}", backend.display());
    backend
}

/// Runs git (isolated from the user's configuration) in `dir`, within 60 s; panics with
/// its output on failure.
fn git(dir: &Path, home: &Path, args: &[&str]) -> String {
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "weir test")
        .env("GIT_AUTHOR_EMAIL", "test@weir.invalid")
        .env("GIT_COMMITTER_NAME", "weir test")
        .env("GIT_COMMITTER_EMAIL", "test@weir.invalid")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn git");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("wait for git").is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect git");
            panic!(
                "git {args:?} took over 60 s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect git");
    assert!(
        out.status.success(),
        "git {args:?} failed ({}); stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn git_clone_and_push_through_http_backend() {
    let backend = git_http_backend();
    let weir = Weir::start_with_config(&format!(
        "exec /git/* {} env=GIT_PROJECT_ROOT={{base}}/repos env=GIT_HTTP_EXPORT_ALL=1\n{CGI_CONF}",
        backend.display()
    ));
    let base = weir.docs.base();
    let home = TempDir::new("git-home");
    let work = TempDir::new("git-work");
    let repos = base.join("repos");
    fs::create_dir_all(&repos).expect("mkdir repos");
    git(
        &repos,
        home.path(),
        &["init", "--quiet", "--bare", "-b", "main", "repo.git"],
    );
    // Anonymous pushes are refused unless the repository allows them.
    git(
        &repos.join("repo.git"),
        home.path(),
        &["config", "http.receivepack", "true"],
    );
    let url = format!("http://{}/git/repo.git", weir.addr);

    // Push a first commit into the empty repository.
    let first = work.path().join("first");
    fs::create_dir_all(&first).expect("mkdir");
    git(&first, home.path(), &["init", "--quiet", "-b", "main"]);
    fs::write(first.join("README"), "pushed through weir\n").expect("write");
    // Something big enough that the pack is sent in more than one piece.
    fs::write(first.join("blob.bin"), pattern(3 << 20, 3)).expect("write");
    git(&first, home.path(), &["add", "."]);
    git(&first, home.path(), &["commit", "--quiet", "-m", "first"]);
    git(
        &first,
        home.path(),
        &[
            "-c",
            "http.postBuffer=65536",
            "push",
            "--quiet",
            &url,
            "main",
        ],
    );

    // Clone it back and find the same files.
    git(
        work.path(),
        home.path(),
        &["clone", "--quiet", &url, "clone"],
    );
    let clone = work.path().join("clone");
    assert_eq!(
        fs::read_to_string(clone.join("README")).expect("README was cloned"),
        "pushed through weir\n"
    );
    assert!(fs::read(clone.join("blob.bin")).expect("blob.bin was cloned") == pattern(3 << 20, 3));

    // A second push from the clone, and the bare repository has it.
    fs::write(clone.join("second.txt"), "second\n").expect("write");
    git(&clone, home.path(), &["add", "."]);
    git(&clone, home.path(), &["commit", "--quiet", "-m", "second"]);
    git(&clone, home.path(), &["push", "--quiet", "origin", "main"]);
    let log = git(
        &repos.join("repo.git"),
        home.path(),
        &["log", "--format=%s", "main"],
    );
    assert_eq!(log, "second\nfirst\n");
}

// ---------------------------------------------------------------------------------------
// nph- scripts, the exact environment, the farm, late timeouts, presentation and search
// ---------------------------------------------------------------------------------------

/// What the `nph-` script below writes: a whole HTTP response of its own.
const NPH_OUTPUT: &[u8] =
    b"HTTP/1.1 299 Raw Reason\r\nX-Nph: yes\r\nContent-Type: text/x-raw\r\n\r\nraw body, no length\n";

#[test]
fn an_nph_script_reaches_the_client_unchanged() {
    // A `header` rule matches too: even its field must not be added to a raw response.
    let weir = serve(
        &format!("header /* X-Added by-rule\n{CGI_CONF}"),
        &[(
            "nph-raw.sh",
            "#!/bin/sh\nprintf 'HTTP/1.1 299 Raw Reason\\r\\nX-Nph: yes\\r\\nContent-Type: text/x-raw\\r\\n\\r\\nraw body, no length\\n'\n",
        )],
    );
    let mut c = weir.connect();
    c.send(request("GET", "/cgi-bin/nph-raw.sh", ""));
    // Nothing delimits the body but the end of the connection, so weir must close it; what
    // arrives is exactly what the script wrote: no Date, Server, Content-Length,
    // Transfer-Encoding or Connection added, no chunk framing.
    let got = c.read_to_close();
    assert!(
        got == NPH_OUTPUT,
        "the nph response was changed on the way:\n got: {}\nwant: {}",
        preview(&got),
        preview(NPH_OUTPUT)
    );
    // The same rule does add its field to an ordinary script's response.
    install(
        &weir.docs.root().join("cgi-bin/parsed.sh"),
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nparsed\\n'\n",
    );
    let r = weir.connect().get("/cgi-bin/parsed.sh");
    r.assert_status(200);
    assert_eq!(r.expect_header("x-added"), "by-rule");
    assert_date_and_server(&r);
    assert_eq!(r.body, b"parsed\n");
}

/// Prints its argument count, chosen variables, and from its own initial environment
/// (`/proc/$$/environ`, which shows duplicates a shell would hide) how many `HTTP_X_FOO`
/// entries it got and how many values say `evil`.
const EXACT_ENV_SH: &str = r#"#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
echo "ARGC=$#"
echo "ARG1=${1-unset}"
for name in HTTP_X_FOO DOCUMENT_ROOT REQUEST_URI SCRIPT_NAME PATH_INFO PATH_TRANSLATED \
    SCRIPT_FILENAME QUERY_STRING SERVER_NAME REQUEST_METHOD; do
    eval "isset=\${$name+yes}"
    if [ "$isset" = yes ]; then eval "printf '%s=%s\n' $name \"\$$name\""; fi
done
echo "X_FOO_ENTRIES=$(tr '\0' '\n' < /proc/$$/environ | grep -c '^HTTP_X_FOO=')"
echo "EVIL_ENTRIES=$(tr '\0' '\n' < /proc/$$/environ | grep -c evil)"
"#;

#[test]
fn underscore_fields_are_dropped_and_the_variables_are_exact() {
    let weir = serve(CGI_CONF, &[("env.sh", EXACT_ENV_SH)]);
    let script = weir.docs.root().join("cgi-bin/env.sh");
    let script = script.to_str().expect("UTF-8 path");
    let base = weir.docs.base().to_str().expect("UTF-8 path").to_string();
    let mut c = weir.connect();
    // The spoof comes first and last, around the real field.
    let r = ask(
        &mut c,
        "GET",
        "/cgi-bin/env.sh/a%20b/c?a+b",
        "X_Foo: evil\r\nX-Foo: good\r\nx_foo: evil\r\n",
    );
    r.assert_status(200);
    let v = vars(&r.body);
    let body = String::from_utf8_lossy(&r.body);
    for (name, want) in [
        ("HTTP_X_FOO", "good"),
        ("X_FOO_ENTRIES", "1"),
        ("EVIL_ENTRIES", "0"),
        // The configuration has no `root`: it is the configuration file's directory.
        ("DOCUMENT_ROOT", base.as_str()),
        // The target as sent, query included; PATH_INFO decoded once.
        ("REQUEST_URI", "/cgi-bin/env.sh/a%20b/c?a+b"),
        ("SCRIPT_NAME", "/cgi-bin/env.sh"),
        ("PATH_INFO", "/a b/c"),
        ("PATH_TRANSLATED", &format!("{base}/a b/c")),
        ("SCRIPT_FILENAME", script),
        ("QUERY_STRING", "a+b"),
        ("SERVER_NAME", "localhost"),
        ("REQUEST_METHOD", "GET"),
        // RFC 3875 §4.4 lets a server put a query without `=` in argv; weir puts nothing
        // there (weir-core's gateway always spawns with empty `args`).
        ("ARGC", "0"),
        ("ARG1", "unset"),
    ] {
        assert_eq!(var(&v, name), Some(want), "{name}:\n{body}");
    }

    // Without PATH_INFO or a query: no PATH_INFO, no PATH_TRANSLATED, an empty QUERY_STRING.
    let r = ask(&mut c, "GET", "/cgi-bin/env.sh", "");
    r.assert_status(200);
    let v = vars(&r.body);
    let body = String::from_utf8_lossy(&r.body);
    assert_eq!(var(&v, "PATH_INFO"), None, "{body}");
    assert_eq!(var(&v, "PATH_TRANSLATED"), None, "{body}");
    assert_eq!(var(&v, "QUERY_STRING"), Some(""), "{body}");
    assert_eq!(var(&v, "REQUEST_URI"), Some("/cgi-bin/env.sh"), "{body}");
    assert_eq!(var(&v, "HTTP_X_FOO"), None, "{body}");
    assert_eq!(var(&v, "ARGC"), Some("0"), "{body}");
}

/// Reads one response on a thread, with a read timeout long enough for a queued script.
fn answer_on_thread(
    addr: std::net::SocketAddr,
    label: &'static str,
    path: String,
    done: std::sync::mpsc::Sender<(&'static str, Response)>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.stream()
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("set_read_timeout");
        c.send(request("GET", &path, ""));
        let r = c.read_response(Expect::Body);
        let _ = done.send((label, r));
    })
}

fn lines_in(file: &Path) -> usize {
    fs::read_to_string(file).map_or(0, |t| t.lines().count())
}

#[test]
fn the_farm_runs_limit_scripts_queues_as_many_again_then_answers_503() {
    let weir = Weir::start_with_config(&format!("limit cgi=1\ntimeout gateway=60s\n{CGI_CONF}"));
    let base = weir.docs.base().to_path_buf();
    let started = base.join("started");
    let release = base.join("release");
    // Waits (at most about 60 s) for the release file, then answers with its query.
    install(
        &weir.docs.root().join("cgi-bin/stall.sh"),
        &format!(
            "#!/bin/sh\necho $$ >> '{started}'\ni=0\n\
             while [ ! -e '{release}' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n\
             printf 'Content-Type: text/plain\\r\\n\\r\\nreleased %s\\n' \"$QUERY_STRING\"\n",
            started = started.display(),
            release = release.display()
        ),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let first = answer_on_thread(weir.addr, "a", "/cgi-bin/stall.sh?a".into(), tx.clone());
    // The first script holds the only place once it has started.
    let deadline = Instant::now() + SETTLE;
    while lines_in(&started) < 1 {
        assert!(
            Instant::now() < deadline,
            "the first script did not start within {SETTLE:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    // Two more: one waits in the queue (it holds as many as the limit), one is refused.
    let b = answer_on_thread(weir.addr, "b", "/cgi-bin/stall.sh?b".into(), tx.clone());
    let c = answer_on_thread(weir.addr, "c", "/cgi-bin/stall.sh?c".into(), tx.clone());
    let (refused, r) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("an answer to b or c");
    assert!(refused == "b" || refused == "c", "{refused} answered first");
    r.assert_status(503);
    assert_eq!(r.expect_header("retry-after"), "1", "{}", r);
    let queued = if refused == "b" { "c" } else { "b" };
    // Both have been handled by now (the refusal came second); the queued one has not run.
    assert_eq!(
        lines_in(&started),
        1,
        "a second script started with limit cgi=1"
    );
    // The queue is full: a fourth is refused too.
    let mut d = weir.connect();
    let r = ask(&mut d, "GET", "/cgi-bin/stall.sh?d", "");
    r.assert_status(503);
    assert_eq!(r.expect_header("retry-after"), "1");
    // Static files do not queue behind the farm.
    weir.connect().get("/hello.txt").assert_status(200);
    assert_eq!(lines_in(&started), 1);

    // Release: the running one answers, then the queued one runs and answers.
    fs::write(&release, b"").expect("create the release file");
    let mut answered = Vec::new();
    for _ in 0..2 {
        let (label, r) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the running and the queued script answer after the release");
        r.assert_status(200);
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            format!("released {label}\n")
        );
        answered.push(label);
    }
    answered.sort_unstable();
    let mut want = vec!["a", queued];
    want.sort_unstable();
    assert_eq!(answered, want);
    assert_eq!(lines_in(&started), 2, "the refused requests never ran");
    for t in [first, b, c] {
        t.join().expect("client thread");
    }
    // The farm is free again.
    let r = weir.connect().get("/cgi-bin/stall.sh?e");
    r.assert_status(200);
    assert_eq!(r.body, b"released e\n");
    assert!(
        weir.stderr().contains("farm full"),
        "the 503s are not in the error log:\n{}",
        weir.stderr()
    );
}

/// Splits `raw` (what follows a chunked response head) into its chunks' data, and says
/// whether the last chunk (`0`) was among them.
fn dechunk(raw: &[u8]) -> (Vec<u8>, bool) {
    let mut data = Vec::new();
    let mut rest = raw;
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return (data, false);
        };
        let size_text = std::str::from_utf8(&rest[..eol]).expect("ASCII chunk size");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or(""), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size_text:?}"));
        if size == 0 {
            return (data, true);
        }
        let start = eol + 2;
        let end = (start + size).min(rest.len());
        data.extend_from_slice(&rest[start..end]);
        if start + size + 2 > rest.len() {
            return (data, false);
        }
        rest = &rest[start + size + 2..];
    }
}

#[test]
fn a_script_that_stalls_after_its_header_has_its_connection_cut() {
    let weir = Weir::start_with_config(&format!("timeout gateway=1s\n{CGI_CONF}"));
    let pids = weir.docs.base().join("pids");
    fs::create_dir_all(&pids).expect("mkdir pids");
    install(
        &weir.docs.root().join("cgi-bin/late.sh"),
        &format!(
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nfirst part\\n'\n\
             sleep 300 &\necho $! > {dir}/child.pid\necho $$ > {dir}/script.pid\nwait\n",
            dir = pids.display()
        ),
    );
    let mut c = weir.connect();
    c.stream()
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set_read_timeout");
    c.send(request("GET", "/cgi-bin/late.sh", ""));
    let head = c.read_head_only();
    head.assert_status(200);
    assert!(
        head.has_token("transfer-encoding", "chunked"),
        "a 1.1 script response without a length is chunked:\n{}",
        head
    );
    // Then the body so far, and the end of the connection instead of a last chunk (a
    // 504 can no longer be sent once a 200 has gone out).
    let rest = c.read_to_close();
    let (data, finished) = dechunk(&rest);
    assert_eq!(
        String::from_utf8_lossy(&data),
        "first part\n",
        "raw: {}",
        preview(&rest)
    );
    assert!(
        !finished,
        "the cut response ended like a complete one: {}",
        preview(&rest)
    );
    assert!(!rest.windows(3).any(|w| w == b"504"), "a 504 after a 200");
    let err = weir.stderr_containing("no output for");
    let line = err
        .lines()
        .find(|l| l.contains("no output for"))
        .expect("the line is there");
    assert!(
        line.contains("late.sh"),
        "the line names the script: {line}"
    );
    wait_dead(
        read_pid(&pids.join("script.pid")),
        weir.pid(),
        "the stalled script",
    );
    wait_dead(
        read_pid(&pids.join("child.pid")),
        weir.pid(),
        "the stalled script's child",
    );
    weir.connect().get("/hello.txt").assert_status(200);
}

#[test]
fn presentation_and_search_rules_hand_documents_to_scripts() {
    let weir = serve(
        &format!(
            "type .wdoc text/x-weir-doc\n\
             presentation text/x-weir-doc {{root}}/cgi-bin/present.sh\n\
             search /docs/* {{root}}/cgi-bin/search.sh\n{CGI_CONF}"
        ),
        &[
            (
                "present.sh",
                "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\n\
                 echo \"PATH_TRANSLATED=$PATH_TRANSLATED\"\necho \"PATH_INFO=$PATH_INFO\"\n\
                 echo \"QUERY_STRING=$QUERY_STRING\"\necho \"METHOD=$REQUEST_METHOD\"\n\
                 echo \"DOC=$(cat \"$PATH_TRANSLATED\")\"\n",
            ),
            (
                "search.sh",
                "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\nX-Search: yes\\r\\n\\r\\n'\n\
                 echo \"PATH_TRANSLATED=$PATH_TRANSLATED\"\necho \"QUERY_STRING=$QUERY_STRING\"\n\
                 echo \"SCRIPT_NAME=$SCRIPT_NAME\"\necho \"HITS=$(grep -c \"$QUERY_STRING\" \"$PATH_TRANSLATED\")\"\n",
            ),
        ],
    );
    let root = weir.docs.root().to_path_buf();
    fs::create_dir_all(root.join("docs")).expect("mkdir docs");
    fs::write(root.join("docs/page.wdoc"), "the weir document\n").expect("write");
    fs::write(root.join("docs/notes.txt"), "apple\nbanana\napple pie\n").expect("write");
    let page = root.join("docs/page.wdoc").display().to_string();
    let notes = root.join("docs/notes.txt").display().to_string();
    let mut c = weir.connect();

    // A document of the presentation type is not sent: the script gets its file name.
    let r = ask(&mut c, "GET", "/docs/page.wdoc", "");
    r.assert_status(200);
    let v = vars(&r.body);
    let body = String::from_utf8_lossy(&r.body);
    assert_eq!(var(&v, "PATH_TRANSLATED"), Some(page.as_str()), "{body}");
    assert_eq!(var(&v, "PATH_INFO"), Some("/docs/page.wdoc"), "{body}");
    assert_eq!(var(&v, "QUERY_STRING"), Some(""), "{body}");
    assert_eq!(var(&v, "DOC"), Some("the weir document"), "{body}");
    // HEAD too: the script answers, and the body is dropped.
    c.send(request("HEAD", "/docs/page.wdoc", ""));
    let r = c.read_response(Expect::NoBody);
    r.assert_status(200);
    assert_eq!(r.expect_header("content-type"), "text/plain");
    // Other types are documents as usual.
    let r = ask(&mut c, "GET", "/docs/notes.txt", "");
    r.assert_status(200);
    assert_eq!(r.body, b"apple\nbanana\napple pie\n");
    assert_eq!(r.header("x-search"), None);

    // A GET with a query on a document under /docs/ goes to the search script.
    let r = ask(&mut c, "GET", "/docs/notes.txt?apple", "");
    r.assert_status(200);
    assert_eq!(r.expect_header("x-search"), "yes");
    let v = vars(&r.body);
    let body = String::from_utf8_lossy(&r.body);
    assert_eq!(var(&v, "QUERY_STRING"), Some("apple"), "{body}");
    assert_eq!(var(&v, "PATH_TRANSLATED"), Some(notes.as_str()), "{body}");
    assert_eq!(var(&v, "SCRIPT_NAME"), Some("/docs/notes.txt"), "{body}");
    assert_eq!(var(&v, "HITS"), Some("2"), "{body}");
    // Not a GET, or no query, or outside the template: the document itself.
    c.send(request("HEAD", "/docs/notes.txt?apple", ""));
    let r = c.read_response(Expect::NoBody);
    r.assert_status(200);
    assert_eq!(r.header("x-search"), None);
    assert_eq!(r.expect_header("content-length"), "23");
    let r = ask(&mut c, "GET", "/hello.txt?apple", "");
    r.assert_status(200);
    assert_eq!(r.header("x-search"), None);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));
}
