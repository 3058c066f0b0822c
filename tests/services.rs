//! FastCGI services end to end: `service` lines and `exec … service=NAME` rules, driven
//! through the real binary over raw HTTP, with real FastCGI servers behind it.
//!
//! # Theory
//!
//! A service is two things weir must get right at once: the FastCGI exchange (what the
//! application sees, and what the client gets back) and the processes (weir's launcher
//! starts, relaunches, holds back, gives up on and stops them). Each is checked from the
//! outside only, where a user would look:
//!
//! * **The exchange**, against two independent FastCGI implementations. `php-cgi` (the
//!   program most people will run) is spawned by weir (`spawn=`, the listening socket on
//!   fd 0); its `$_GET`, `$_POST`, `php://input`, `http_response_code` and `error_log`
//!   must work as under any other server, byte-exact for a mebibyte both ways, with
//!   Content-Length and chunked bodies, and interleaved with static files and CGI scripts
//!   on one kept-alive client connection. A FastCGI responder written here in Python's
//!   standard library (`APP_PY`) is reached with `connect=` (a unix socket and a TCP
//!   port): it echoes every parameter and the body, and names its connection and the
//!   request's number on it, so the test sees the meta-variables weir sends and that weir
//!   keeps its connection (`FCGI_KEEP_CONN`) instead of opening one per request. The same
//!   app, told to, misbehaves (bad header section, a closed connection before or after
//!   the head, silence past the `gateway` timeout, a local `Location`, 5 MiB of output, a
//!   client that leaves), and must get 502, a cut, 504, an internal redirect, whole
//!   bytes, and then whole answers again on the same pooled connections. With
//!   `--serial` it serves one connection at a time, as php-cgi does, which is what makes
//!   queueing for `connections=` and idle kept connections matter: many clients at once
//!   must all get whole answers, and more workers than processes must never leave a
//!   request waiting for a process another worker holds idle. The PHP tests print a
//!   note and return early when `php-cgi` is not on PATH.
//! * **The processes**, through `/proc`: weir's launcher is the child of weir whose
//!   argv is `weir launcher`, and a service's processes are the launcher's children. The
//!   fault tests kill them with SIGKILL in a storm while clients keep asking (every answer
//!   must be 200, 502 or 503 and none may hang, and the service must be back at once when
//!   the storm ends); run a command that exits at once (503 at once, back-off and give-up
//!   in the error log, and weir and its launcher idle, measured by their CPU time); run a
//!   command that does not exist (weir starts and answers 503); and stop weir with
//!   SIGTERM (exit 0, and no process of any service left, the ones that ignore SIGTERM
//!   and their own children included) or SIGKILL (the launcher still stops them). With
//!   several services, each one's process is relaunched after a `kill -9`. What a spawned
//!   process gets is read from `/proc`: the listening socket on fd 0 (its path in the
//!   0700 run directory), `/dev/null` and weir's stderr, nothing else open, exactly
//!   `PATH` and the `env=` variables, its `cwd`, its own process group, and, when the
//!   tests run as root, the `user=`'s ids. A run directory left by a killed weir must not
//!   stop the next weir that gets the same PID. A process is named by its PID *and* its
//!   start time, so a reused PID is never taken for an old process.
//! * **The configuration**: `weir check` reports bad `service` lines as
//!   `FILE:LINE:COL: error: …` with exit status 1.
//!
//! Every wait is bounded (socket timeouts of `IO_TIMEOUT`, loops with deadlines and
//! counts); the Python servers started here are killed by PID when their guard drops, and
//! the only processes signalled otherwise are weir's own service processes, found as
//! children of the launcher of the weir this test started.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{preview, request, Client, Expect, Response, TempDir, Weir, IO_TIMEOUT};

/// Longest a background change (a process starting or dying, a log line) may take.
const SETTLE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// The Python FastCGI responder
// ---------------------------------------------------------------------------------------

/// A FastCGI responder in Python's standard library.
///
/// `app.py (--fd0 | --unix PATH | --tcp) [--serial] [--ignore-term] [--helper]`: listen on
/// fd 0 (as weir's `spawn=` hands it), on a unix socket, or on 127.0.0.1 at a free port,
/// then print `READY <what>` on stdout. One thread per connection, or with `--serial` one
/// connection at a time, as php-cgi does; a connection serves requests one after another
/// while the web server asks to keep it (`FCGI_KEEP_CONN`). Each answer is
/// `text/plain`: `KEEP=0|1`, `CONN=<connection number>`, `REQ=<request number on it>`,
/// `PID=`, every parameter as `NAME=VALUE`, `BODY-LEN=`, a `--body--` line, the request
/// body as received, and `\n--end--\n`. Query options: `log=TEXT` writes `app-log: TEXT`
/// to the FastCGI stderr stream, `status=N` answers with that status, `sleep=SECONDS`
/// waits first, `location=URL` answers with only a `Location`, `bad=1` with a header
/// section that is not one, `size=N` with N bytes of `pattern251(N)`, `close=before`
/// closes the connection without an answer and `close=after-head` (with `size=`) after
/// the head and half the body. `--ignore-term`
/// ignores SIGTERM; `--helper` forks a child that sleeps (a process of the service that
/// is not the one weir started).
const APP_PY: &str = r#"import os, signal, socket, struct, sys, threading, time

BEGIN, ABORT, END, PARAMS, STDIN, STDOUT, STDERR = 1, 2, 3, 4, 5, 6, 7
GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = 9, 10, 11
KEEP_CONN = 1

lock = threading.Lock()
serial = [0]


def record(typ, rid, content=b""):
    out = []
    if not content:
        out.append(struct.pack(">BBHHBB", 1, typ, rid, 0, 0, 0))
    for off in range(0, len(content), 65535):
        chunk = content[off:off + 65535]
        pad = (-len(chunk)) % 8
        out.append(struct.pack(">BBHHBB", 1, typ, rid, len(chunk), pad, 0))
        out.append(chunk)
        out.append(b"\0" * pad)
    return b"".join(out)


def pairs(data):
    out, i = {}, 0
    while i < len(data):
        lens = []
        for _ in range(2):
            if data[i] >> 7:
                lens.append(struct.unpack(">I", data[i:i + 4])[0] & 0x7FFFFFFF)
                i += 4
            else:
                lens.append(data[i])
                i += 1
        n, v = lens
        out[data[i:i + n].decode("latin-1")] = data[i + n:i + n + v].decode("latin-1")
        i += n + v
    return out


def encode_pair(k, v):
    def ln(n):
        return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    return ln(len(k)) + ln(len(v)) + k + v


def respond(sock, rid, keep, conn_id, number, params, body):
    query = dict(p.split("=", 1) for p in params.get("QUERY_STRING", "").split("&") if "=" in p)
    end = record(STDOUT, rid) + record(END, rid, struct.pack(">IB3x", 0, 0))
    if "log" in query:
        sock.sendall(record(STDERR, rid, ("app-log: " + query["log"] + "\n").encode()))
    if "sleep" in query:
        time.sleep(float(query["sleep"]))
    close = query.get("close")
    if close == "before":
        raise OSError("closing before any output, as asked")
    if "location" in query:
        sock.sendall(record(STDOUT, rid, ("Location: %s\r\n\r\n" % query["location"]).encode()) + end)
        return
    if "bad" in query:
        sock.sendall(record(STDOUT, rid, b"this is no header line\r\n\r\nbody") + end)
        return
    if "size" in query:
        n = int(query["size"])
        data = (bytes(range(251)) * (n // 251 + 1))[:n]
        head = b"Content-Type: application/octet-stream\r\n\r\n"
        if close == "after-head":
            sock.sendall(record(STDOUT, rid, head + data[:n // 2]))
            time.sleep(0.2)
            raise OSError("closing after the head, as asked")
        sock.sendall(record(STDOUT, rid, head + data) + end)
        return
    head = "Content-Type: text/plain\r\n"
    if "status" in query:
        head = "Status: %s Custom\r\n" % query["status"] + head
    text = "KEEP=%d\nCONN=%d\nREQ=%d\nPID=%d\n" % (keep, conn_id, number, os.getpid())
    for k in sorted(params):
        text += "%s=%s\n" % (k, params[k])
    text += "BODY-LEN=%d\n--body--\n" % len(body)
    payload = head.encode() + b"\r\n" + text.encode("latin-1") + body + b"\n--end--\n"
    sock.sendall(record(STDOUT, rid, payload) + end)


def serve(sock):
    with lock:
        serial[0] += 1
        conn_id = serial[0]
    f = sock.makefile("rb")
    number = 0
    req = None
    try:
        while True:
            h = f.read(8)
            if len(h) < 8:
                return
            _, typ, rid, clen, plen, _ = struct.unpack(">BBHHBB", h)
            content = f.read(clen)
            f.read(plen)
            if len(content) < clen:
                return
            if typ == GET_VALUES:
                answer = {"FCGI_MAX_CONNS": "100", "FCGI_MAX_REQS": "100", "FCGI_MPXS_CONNS": "0"}
                data = b"".join(encode_pair(k.encode(), answer[k].encode())
                                for k in pairs(content) if k in answer)
                sock.sendall(record(GET_VALUES_RESULT, 0, data))
            elif typ == BEGIN:
                role, flags = struct.unpack(">HB", content[:3])
                req = {"rid": rid, "keep": flags & KEEP_CONN, "params": bytearray(),
                       "stdin": bytearray()}
            elif req is None or rid != req["rid"]:
                continue
            elif typ == ABORT:
                sock.sendall(record(END, rid, struct.pack(">IB3x", 1, 0)))
                if not req["keep"]:
                    return
                req = None
            elif typ == PARAMS:
                req["params"] += content
            elif typ == STDIN and content:
                req["stdin"] += content
            elif typ == STDIN:
                number += 1
                respond(sock, rid, req["keep"], conn_id, number,
                        pairs(bytes(req["params"])), bytes(req["stdin"]))
                if not req["keep"]:
                    return
                req = None
            else:
                sock.sendall(record(UNKNOWN_TYPE, 0, bytes([typ]) + b"\0" * 7))
    except OSError:
        pass
    finally:
        for close in (lambda: sock.shutdown(socket.SHUT_RDWR), f.close, sock.close):
            try:
                close()
            except OSError:
                pass


def main():
    args = sys.argv[1:]
    if "--ignore-term" in args:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "--fd0" in args:
        listener = socket.socket(fileno=0)
        ready = "fd0"
    elif "--unix" in args:
        path = args[args.index("--unix") + 1]
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(64)
        ready = path
    else:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        ready = str(listener.getsockname()[1])
    if "--helper" in args:
        if os.fork() == 0:
            listener.close()
            time.sleep(120)
            os._exit(0)
    print("READY " + ready, flush=True)
    while True:
        conn, _ = listener.accept()
        if "--serial" in args:
            serve(conn)
        else:
            threading.Thread(target=serve, args=(conn,), daemon=True).start()


main()
"#;

/// The Python 3 interpreter's real path (not a version manager's shim, which needs an
/// environment that services do not get).
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

/// `APP_PY` started by this test (for `connect=`), killed by PID when dropped.
struct App {
    child: Child,
    /// What it printed after `READY`: the socket path or the TCP port.
    ready: String,
    _dir: TempDir,
}

impl App {
    /// Starts the app with `args` (`--unix PATH` or `--tcp`), in its own directory, and
    /// waits (bounded) for its `READY` line.
    fn start(dir: TempDir, args: &[&str]) -> App {
        let script = dir.path().join("app.py");
        fs::write(&script, APP_PY).expect("write app.py");
        let mut child = Command::new(python3())
            .arg(&script)
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Python FastCGI app");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while let Ok(1) = stdout.read(&mut byte) {
                if byte[0] == b'\n' {
                    break;
                }
                line.push(byte[0]);
            }
            let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
            // Keep reading (and discarding) so the app never blocks on a full pipe.
            let mut sink = [0u8; 256];
            while let Ok(n) = stdout.read(&mut sink) {
                if n == 0 {
                    break;
                }
            }
        });
        let mut app = App {
            child,
            ready: String::new(),
            _dir: dir,
        };
        let line = rx
            .recv_timeout(SETTLE)
            .unwrap_or_else(|_| panic!("the Python app printed no READY line in {SETTLE:?}"));
        app.ready = line
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("the Python app said {line:?} instead of READY"))
            .to_string();
        app
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // Our own child, not yet reaped: the PID is still this process.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer of `APP_PY`, parsed.
struct Echo {
    vars: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Echo {
    fn parse(r: &Response) -> Echo {
        let raw = &r.body;
        let sep = b"--body--\n";
        let at = raw
            .windows(sep.len())
            .position(|w| w == sep)
            .unwrap_or_else(|| panic!("not an answer of the app:\n{}", r));
        let vars = String::from_utf8_lossy(&raw[..at])
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let rest = &raw[at + sep.len()..];
        let body = rest
            .strip_suffix(b"\n--end--\n")
            .unwrap_or_else(|| panic!("the app's answer is cut:\n{}", r))
            .to_vec();
        Echo { vars, body }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn var(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("the app did not see {name}; it saw {:?}", self.vars))
    }
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

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

/// A request with a `Content-Length` body.
fn with_body(method: &str, path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// A POST with a chunked body, in chunks of uneven sizes (one with an extension).
fn chunked_post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    let sizes = [1usize, 4095, 65_536, 100_000, 7, 300_000, 65_535];
    let mut at = 0;
    let mut i = 0;
    while at < body.len() {
        let size = sizes[i % sizes.len()].min(body.len() - at);
        if i == 2 {
            req.extend_from_slice(format!("{size:x};ext=1\r\n").as_bytes());
        } else {
            req.extend_from_slice(format!("{size:X}\r\n").as_bytes());
        }
        req.extend_from_slice(&body[at..at + size]);
        req.extend_from_slice(b"\r\n");
        at += size;
        i += 1;
    }
    req.extend_from_slice(b"0\r\n\r\n");
    req
}

fn ask(c: &mut Client, bytes: impl AsRef<[u8]>) -> Response {
    c.send(bytes);
    c.read_response(Expect::Body)
}

/// GET `path` on a fresh connection, timed.
fn timed_get(weir: &Weir, path: &str) -> (Response, Duration) {
    let t0 = Instant::now();
    let mut c = weir.connect();
    let r = c.get(path);
    (r, t0.elapsed())
}

/// Panics unless `r` is a 503 with a `Retry-After` of a whole number of seconds ≥ 1, and
/// returns that number.
fn assert_503_retry_after(r: &Response) -> u64 {
    r.assert_status(503);
    let ra = r.header("retry-after").unwrap_or_else(|| {
        panic!(
            "a 503 for a service that is down has no Retry-After:\n{}",
            r
        )
    });
    let secs: u64 = ra
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {ra:?} is not a number of seconds"));
    assert!(secs >= 1, "Retry-After {secs} is less than a second");
    secs
}

/// Panics unless hello.txt is served, byte-exact, on a fresh connection.
fn assert_static_ok(weir: &Weir) {
    let mut c = weir.connect();
    let r = c.get("/hello.txt");
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"), "hello.txt body");
}

/// One request with `Connection: close` on its own connection, read raw to the close:
/// `Ok((status, raw bytes))`, or `Err` if the server sent nothing parseable or it took
/// longer than `IO_TIMEOUT` (a hang). A response cut short is still `Ok`.
fn one_shot(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>), String> {
    let t0 = Instant::now();
    let mut s =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.write_all(request("GET", path, "Connection: close\r\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                break
            }
            Err(e) => {
                return Err(format!(
                    "{e} after {:?}; received: {}",
                    t0.elapsed(),
                    preview(&raw)
                ))
            }
        }
        if t0.elapsed() > IO_TIMEOUT {
            return Err(format!(
                "still reading after {IO_TIMEOUT:?}: {}",
                preview(&raw)
            ));
        }
    }
    let status = raw
        .strip_prefix(b"HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| std::str::from_utf8(code).ok())
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("no status line after {:?}: {}", t0.elapsed(), preview(&raw)))?;
    Ok((status, raw))
}

/// Runs `weir` with `args`: (exit code, stdout, stderr).
fn weir_cmd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run weir");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits (bounded by `SETTLE`) until weir's stderr contains `needle`.
fn stderr_eventually(weir: &Weir, needle: &str) -> String {
    let deadline = Instant::now() + SETTLE;
    loop {
        let err = weir.stderr();
        if err.contains(needle) {
            return err;
        }
        assert!(
            Instant::now() < deadline,
            "stderr does not contain {needle:?} after {SETTLE:?}; stderr:\n{err}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Processes, as /proc shows them
// ---------------------------------------------------------------------------------------

/// The fields of `/proc/PID/stat` after the command name (field 3, the state, first);
/// `None` once the process is gone.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn proc_state(pid: u32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// Start time (field 22), which with the PID names one process for good.
fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// User plus system CPU time (fields 14 and 15), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let f = stat_fields(pid).unwrap_or_else(|| panic!("process {pid} is gone"));
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf takes a constant and touches no memory.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 / if hz > 0 { hz as f64 } else { 100.0 }
}

fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The processes whose parent is `parent` (zombies included).
fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc is mounted").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if parent_of(pid) == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// The living (not zombie) children of `parent`.
fn live_children_of(parent: u32) -> Vec<u32> {
    children_of(parent)
        .into_iter()
        .filter(|&p| !matches!(proc_state(p), Some('Z') | None))
        .collect()
}

/// weir's launcher: its child whose argv is `… launcher`.
fn launcher_of(weir: &Weir) -> u32 {
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(pid) = children_of(weir.pid())
            .into_iter()
            .find(|&p| cmdline(p).get(1).map(String::as_str) == Some("launcher"))
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "weir (PID {}) has no `weir launcher` child after {SETTLE:?}; its children: {:?}",
            weir.pid(),
            children_of(weir.pid())
                .into_iter()
                .map(|p| (p, cmdline(p)))
                .collect::<Vec<_>>()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `parent` has exactly `n` living children, and returns them.
fn wait_children(parent: u32, n: usize, what: &str) -> Vec<u32> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let kids = live_children_of(parent);
        if kids.len() == n {
            return kids;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: expected {n} living children of {parent} after {SETTLE:?}, found {:?}",
            kids.iter().map(|&p| (p, cmdline(p))).collect::<Vec<_>>()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A process named for good: PID and start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Proc {
    pid: u32,
    start: u64,
}

impl Proc {
    fn of(pid: u32) -> Option<Proc> {
        Some(Proc {
            pid,
            start: start_time(pid)?,
        })
    }

    /// The state letter while this very process exists (zombie included).
    fn state(self) -> Option<char> {
        if start_time(self.pid) == Some(self.start) {
            proc_state(self.pid)
        } else {
            None
        }
    }
}

/// SIGKILL to `pid` if it is still a child of `parent` (a service process of the weir this
/// test started, never anything else).
fn kill9_child(pid: u32, parent: u32) -> bool {
    if parent_of(pid) != Some(parent) || proc_state(pid) == Some('Z') {
        return false;
    }
    let pid = libc::pid_t::try_from(pid).expect("a PID fits pid_t");
    // SAFETY: kill with plain integers; the PID was checked a moment ago to be a living
    // child of the launcher, which reaps it, so it cannot have been reused in between.
    unsafe { libc::kill(pid, libc::SIGKILL) == 0 }
}

/// Where weir makes its private run directory (the sockets of `spawn=` services).
fn run_dir_of(weir_pid: u32) -> PathBuf {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(std::env::temp_dir);
    base.join(format!("weir.{weir_pid}"))
}

/// Sends SIGTERM and asserts weir exits 0 within `SETTLE`, and that none of `procs` (the
/// launcher, the services and their children) exists afterwards, not even as a zombie
/// that weir or its launcher would have had to reap.
fn stop_and_assert_nothing_left(weir: &mut Weir, procs: &[Proc], what: &str) {
    let weir_pid = weir.pid();
    let run_dir = run_dir_of(weir_pid);
    weir.signal("TERM");
    let t0 = Instant::now();
    let status = weir.wait_exit(SETTLE).unwrap_or_else(|| {
        panic!(
            "{what}: weir still running {SETTLE:?} after SIGTERM; stderr:\n{}",
            weir.stderr()
        )
    });
    assert_eq!(
        status.code(),
        Some(0),
        "{what}: exit status after SIGTERM: {status}; stderr:\n{}",
        weir.stderr()
    );
    eprintln!("{what}: weir exited 0 {:?} after SIGTERM", t0.elapsed());
    // weir has exited, so its launcher and the services were stopped before (the
    // launcher stops them when weir's end of its socket closes, and weir waits for it).
    // Give the kernel a moment to tear down what was killed last.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left: Vec<(Proc, char, Option<u32>, Vec<String>)> = procs
            .iter()
            .filter_map(|&p| p.state().map(|s| (p, s, parent_of(p.pid), cmdline(p.pid))))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: processes of weir's services are left after weir exited \
             (process, state, parent, argv): {left:?}\nstderr:\n{}",
            weir.stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !run_dir.exists(),
        "{what}: the run directory {} is left after weir exited",
        run_dir.display()
    );
}

// ---------------------------------------------------------------------------------------
// 1. php-cgi, spawned by weir
// ---------------------------------------------------------------------------------------

/// True if php-cgi is on PATH; otherwise prints a note for `test`.
fn have_php_cgi(test: &str) -> bool {
    match Command::new("php-cgi")
        .arg("-v")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => true,
        _ => {
            eprintln!("NOTE: php-cgi is not on PATH; skipping {test}");
            false
        }
    }
}

const PHP_CONF: &str = "service php spawn=\"php-cgi\" processes=2\n\
                        exec /cgi-bin/* {root}/cgi-bin/*\n\
                        exec /*.php service=php {root}/*.php\n\
                        pass /* {root}/*\n";

const QUERY_PHP: &str = r#"<?php
header('Content-Type: text/plain');
echo "a=", $_GET['a'], "\n";
echo "b=", $_GET['b'], "\n";
echo "qs=", $_SERVER['QUERY_STRING'], "\n";
echo "method=", $_SERVER['REQUEST_METHOD'], "\n";
echo "script_name=", $_SERVER['SCRIPT_NAME'], "\n";
echo "script_filename=", $_SERVER['SCRIPT_FILENAME'], "\n";
"#;

const FORM_PHP: &str = r#"<?php
header('Content-Type: text/plain; charset=utf-8');
echo "method=", $_SERVER['REQUEST_METHOD'], "\n";
echo "content_type=", $_SERVER['CONTENT_TYPE'], "\n";
echo "content_length=", $_SERVER['CONTENT_LENGTH'], "\n";
echo "name=", $_POST['name'], "\n";
echo "n=", $_POST['n'], "\n";
echo "tags=", implode(',', $_POST['tags']), "\n";
echo "get=", $_GET['from'], "\n";
"#;

const ECHO_PHP: &str = r#"<?php
$body = file_get_contents('php://input');
header('Content-Type: application/octet-stream');
header('X-Length: ' . strlen($body));
header('X-Content-Length: ' . $_SERVER['CONTENT_LENGTH']);
echo $body;
"#;

const NOT_FOUND_PHP: &str = r#"<?php
http_response_code(404);
header('Content-Type: text/plain');
echo "php says: nothing here\n";
"#;

const ERROR_LOG_PHP: &str = r#"<?php
error_log('weir-e2e-marker ' . $_GET['n']);
header('Content-Type: text/plain');
echo "logged\n";
"#;

const MIXED_PHP: &str = r#"<?php
header('Content-Type: text/plain');
echo "php ", $_GET['i'], " ", str_repeat('p', intval($_GET['i']) * 37), "\n";
"#;

const MIXED_SH: &str =
    "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho \"cgi $QUERY_STRING\"\n";

/// weir with `PHP_CONF` and the PHP pages and the CGI script in place.
fn php_server() -> Weir {
    let weir = Weir::start_with_config(PHP_CONF);
    let root = weir.docs.root();
    for (name, text) in [
        ("q.php", QUERY_PHP),
        ("form.php", FORM_PHP),
        ("echo.php", ECHO_PHP),
        ("nf.php", NOT_FOUND_PHP),
        ("log.php", ERROR_LOG_PHP),
        ("mixed.php", MIXED_PHP),
    ] {
        fs::write(root.join(name), text).expect("write a PHP page");
    }
    let script = root.join("cgi-bin/mixed.sh");
    fs::create_dir_all(script.parent().unwrap()).expect("mkdir cgi-bin");
    fs::write(&script, MIXED_SH).expect("write mixed.sh");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod mixed.sh");
    weir
}

#[test]
fn php_cgi_spawned_by_weir_answers_get_and_post_forms() {
    if !have_php_cgi("php_cgi_spawned_by_weir_answers_get_and_post_forms") {
        return;
    }
    let mut weir = php_server();
    // processes=2: two php-cgi processes, children of weir's launcher.
    let launcher = launcher_of(&weir);
    // (A child is the launcher itself for a moment, between its fork and its exec.)
    let deadline = Instant::now() + SETTLE;
    let php = loop {
        let php = wait_children(launcher, 2, "processes=2");
        let argv: Vec<Vec<String>> = php.iter().map(|&p| cmdline(p)).collect();
        if argv
            .iter()
            .all(|a| a.first().is_some_and(|a| a.ends_with("php-cgi")))
        {
            break php;
        }
        assert!(
            Instant::now() < deadline,
            "the launcher's children are not php-cgi after {SETTLE:?}: {argv:?}"
        );
        thread::sleep(Duration::from_millis(20));
    };

    let mut c = weir.connect();
    let r = c.get("/q.php?a=1&b=two%20words");
    r.assert_status(200);
    let root = weir.docs.root().canonicalize().expect("canonical root");
    let want = format!(
        "a=1\nb=two words\nqs=a=1&b=two%20words\nmethod=GET\nscript_name=/q.php\n\
         script_filename={}\n",
        root.join("q.php").display()
    );
    assert_eq!(String::from_utf8_lossy(&r.body), want, "{}", r);
    assert!(
        r.expect_header("content-type").starts_with("text/plain"),
        "{}",
        r
    );

    // A form, on the same connection: $_POST parsed by PHP from the body weir passed on.
    let form = b"name=J%C3%BCrgen+X&n=42&tags%5B%5D=a&tags%5B%5D=b";
    let r = ask(
        &mut c,
        with_body(
            "POST",
            "/form.php?from=query",
            "application/x-www-form-urlencoded",
            form,
        ),
    );
    r.assert_status(200);
    let want = format!(
        "method=POST\ncontent_type=application/x-www-form-urlencoded\ncontent_length={}\n\
         name=J\u{fc}rgen X\nn=42\ntags=a,b\nget=query\n",
        form.len()
    );
    assert_eq!(String::from_utf8_lossy(&r.body), want, "{}", r);

    // The same form, chunked: weir gathers it, so PHP sees a CONTENT_LENGTH.
    let mut req = b"POST /form.php?from=chunks HTTP/1.1\r\nHost: localhost\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for part in form.chunks(7) {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = ask(&mut c, req);
    r.assert_status(200);
    let want = want.replace("get=query", "get=chunks");
    assert_eq!(String::from_utf8_lossy(&r.body), want, "{}", r);

    // PHP's own status and body.
    let r = c.get("/nf.php");
    r.assert_status(404);
    assert_eq!(r.body, b"php says: nothing here\n", "{}", r);

    // A PHP file that does not exist: PHP's answer, never a hang; and a static file.
    let r = c.get("/missing.php");
    assert!(
        r.status == 404,
        "a missing PHP file should get php-cgi's 404:\n{}",
        r
    );
    let r = c.get("/hello.txt");
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"));

    // php-cgi stops with weir.
    let mut procs: Vec<Proc> = php.iter().filter_map(|&p| Proc::of(p)).collect();
    procs.extend(Proc::of(launcher));
    drop(c);
    stop_and_assert_nothing_left(&mut weir, &procs, "php-cgi");
}

#[test]
fn php_echoes_a_mebibyte_byte_exact_with_content_length_and_chunked() {
    if !have_php_cgi("php_echoes_a_mebibyte_byte_exact_with_content_length_and_chunked") {
        return;
    }
    let weir = php_server();
    let mut c = weir.connect();
    let body = pattern(1 << 20, 7);

    let r = ask(
        &mut c,
        with_body("POST", "/echo.php", "application/octet-stream", &body),
    );
    r.assert_status(200);
    assert_eq!(r.expect_header("x-length"), (1 << 20).to_string());
    assert_eq!(r.expect_header("x-content-length"), (1 << 20).to_string());
    assert_eq!(r.body.len(), body.len(), "echoed length (Content-Length)");
    assert!(r.body == body, "the echoed body differs (Content-Length)");

    // The same bytes chunked, on the same kept-alive connection.
    let r = ask(&mut c, chunked_post("/echo.php", &body));
    r.assert_status(200);
    assert_eq!(r.expect_header("x-content-length"), (1 << 20).to_string());
    assert_eq!(r.body.len(), body.len(), "echoed length (chunked)");
    assert!(r.body == body, "the echoed body differs (chunked)");

    // And once more with a different pattern, so a stale buffer cannot pass.
    let body2 = pattern(1 << 20, 8);
    let r = ask(
        &mut c,
        with_body("PUT", "/echo.php", "application/octet-stream", &body2),
    );
    r.assert_status(200);
    assert!(r.body == body2, "the echoed body differs (second PUT)");
}

#[test]
fn php_error_log_reaches_weirs_error_log_and_fifty_mixed_requests_share_a_connection() {
    if !have_php_cgi(
        "php_error_log_reaches_weirs_error_log_and_fifty_mixed_requests_share_a_connection",
    ) {
        return;
    }
    let weir = php_server();
    let mut c = weir.connect();

    // error_log() goes to the FastCGI stderr stream; weir logs it under the service name.
    let r = c.get("/log.php?n=4711");
    r.assert_status(200);
    assert_eq!(r.body, b"logged\n");
    let err = stderr_eventually(&weir, "weir-e2e-marker 4711");
    let line = err
        .lines()
        .find(|l| l.contains("weir-e2e-marker 4711"))
        .expect("the line was found a moment ago");
    assert!(
        line.contains("service php: ") && line.ends_with("weir-e2e-marker 4711"),
        "the PHP error_log line is not logged as `service php: …`: {line:?}"
    );

    // 50 requests on one kept-alive connection: a static file, a CGI script and PHP, in
    // turn, every answer byte-exact, and the connection never closed.
    let hello = weir.docs.bytes("hello.txt");
    for i in 0..50usize {
        let (path, want): (String, Vec<u8>) = match i % 3 {
            0 => ("/hello.txt".into(), hello.clone()),
            1 => (
                format!("/cgi-bin/mixed.sh?i={i}"),
                format!("cgi i={i}\n").into_bytes(),
            ),
            _ => (
                format!("/mixed.php?i={i}"),
                format!("php {i} {}\n", "p".repeat(i * 37)).into_bytes(),
            ),
        };
        let r = c.get(&path);
        assert_eq!(r.status, 200, "request {i} ({path}):\n{}", r);
        assert!(
            r.body == want,
            "request {i} ({path}): body {} differs from {}",
            preview(&r.body),
            preview(&want)
        );
        assert!(
            !r.closes(),
            "request {i} ({path}) closed the connection:\n{}",
            r
        );
    }
}

// ---------------------------------------------------------------------------------------
// 2. A FastCGI application that is not PHP, reached with connect=
// ---------------------------------------------------------------------------------------

/// The checks both `connect=` tests make: meta-variables, bodies both ways, kept
/// connections, stderr, status, and static files beside it.
fn exercise_python_app(weir: &Weir, app: &App) {
    let mut c = weir.connect();

    // A GET with a query and a path below the rule's prefix. The rule has no SCRIPT:
    // SCRIPT_NAME is the prefix, the rest is PATH_INFO, SCRIPT_FILENAME is under root.
    let r = c.get("/app/tool/extra/path?x=1&y=two%20words");
    r.assert_status(200);
    assert_eq!(r.expect_header("content-type"), "text/plain", "{}", r);
    let e = Echo::parse(&r);
    assert_eq!(e.var("REQUEST_METHOD"), "GET");
    assert_eq!(e.var("QUERY_STRING"), "x=1&y=two%20words");
    assert_eq!(e.var("SCRIPT_NAME"), "/app");
    assert_eq!(e.var("PATH_INFO"), "/tool/extra/path");
    assert_eq!(
        e.var("REQUEST_URI"),
        "/app/tool/extra/path?x=1&y=two%20words"
    );
    assert_eq!(e.var("GATEWAY_INTERFACE"), "CGI/1.1");
    assert_eq!(e.var("SERVER_PROTOCOL"), "HTTP/1.1");
    let root = weir.docs.root().canonicalize().expect("canonical root");
    let base = weir.docs.base().canonicalize().expect("canonical base");
    assert_eq!(
        e.var("SCRIPT_FILENAME"),
        base.join("app").display().to_string(),
        "SCRIPT_FILENAME without a SCRIPT: `root` (the configuration's directory) joined \
         with SCRIPT_NAME"
    );
    assert_eq!(
        e.var("PID"),
        app.pid().to_string(),
        "answered by another process"
    );
    assert!(
        matches!(e.get("CONTENT_LENGTH"), None | Some("" | "0")),
        "a GET without a body has CONTENT_LENGTH {:?}",
        e.get("CONTENT_LENGTH")
    );
    assert_eq!(e.var("BODY-LEN"), "0");
    assert_eq!(
        e.var("KEEP"),
        "1",
        "weir did not ask to keep the connection"
    );
    let conn = e.var("CONN").to_string();
    let first = e.var("REQ").parse::<u32>().expect("REQ is a number");

    // A POST with a body, on the same client connection, through a rule with a SCRIPT
    // (PHP style): SCRIPT_FILENAME is SCRIPT with `*` substituted.
    let body = pattern(200_000, 3);
    let r = ask(
        &mut c,
        with_body(
            "POST",
            "/dir/run.fcgi?kind=post",
            "application/x-thing",
            &body,
        ),
    );
    r.assert_status(200);
    let e = Echo::parse(&r);
    assert_eq!(e.var("REQUEST_METHOD"), "POST");
    assert_eq!(e.var("QUERY_STRING"), "kind=post");
    assert_eq!(e.var("SCRIPT_NAME"), "/dir/run.fcgi");
    assert_eq!(
        e.var("SCRIPT_FILENAME"),
        root.join("scripts/dir/run.fcgi").display().to_string()
    );
    assert_eq!(e.var("CONTENT_LENGTH"), body.len().to_string());
    assert_eq!(e.var("CONTENT_TYPE"), "application/x-thing");
    assert!(e.body == body, "the body the app received differs");

    // Chunked: gathered, so that CONTENT_LENGTH is known.
    let body = pattern(700_000, 4);
    let r = ask(&mut c, chunked_post("/app/tool?kind=chunked", &body));
    r.assert_status(200);
    let e = Echo::parse(&r);
    assert_eq!(e.var("CONTENT_LENGTH"), body.len().to_string());
    assert!(e.body == body, "the chunked body the app received differs");

    // The service's own status, and its stderr in weir's error log.
    let r = c.get("/app/tool?status=418&log=teapot-e2e");
    r.assert_status(418);
    stderr_eventually(weir, "service app: app-log: teapot-e2e");

    // Kept connections: one FastCGI connection served every request so far (the service
    // has connections=1), and serves five more, numbered in order.
    let mut last = first;
    for i in 0..5 {
        let r = c.get(&format!("/app/tool?i={i}"));
        r.assert_status(200);
        let e = Echo::parse(&r);
        assert_eq!(
            e.var("CONN"),
            conn,
            "request {i} came on a new FastCGI connection (FCGI_KEEP_CONN not honoured)"
        );
        let n = e.var("REQ").parse::<u32>().expect("REQ is a number");
        assert!(
            n > last,
            "request numbers on the kept connection: {n} after {last}"
        );
        last = n;
    }
    assert!(
        last == first + 8,
        "fewer requests on the kept connection than sent"
    );

    // A static file beside the service.
    assert_static_ok(weir);
}

const APP_CONF_TAIL: &str = "exec /app/* service=app\n\
                             exec /*.fcgi service=app {root}/scripts/*.fcgi\n\
                             pass /* {root}/*\n";

#[test]
fn a_python_fastcgi_app_on_a_unix_socket_sees_the_request_and_keeps_its_connection() {
    let dir = TempDir::new("fcgi-app");
    let sock = dir.path().join("app.sock");
    let app = App::start(dir, &["--unix", sock.to_str().expect("a UTF-8 path")]);
    assert_eq!(app.ready, sock.display().to_string());
    let weir = Weir::start_with_config(&format!(
        "service app connect=unix:{} connections=1\n{APP_CONF_TAIL}",
        sock.display()
    ));
    exercise_python_app(&weir, &app);
}

#[test]
fn a_python_fastcgi_app_on_tcp_sees_the_request_and_keeps_its_connection() {
    let app = App::start(TempDir::new("fcgi-app-tcp"), &["--tcp"]);
    let port: u16 = app.ready.parse().expect("the app printed its port");
    let weir = Weir::start_with_config(&format!(
        "service app connect=127.0.0.1:{port} connections=1\n{APP_CONF_TAIL}"
    ));
    exercise_python_app(&weir, &app);
}

/// `size=N` bytes of the app: 0, 1, … 250, 0, 1, …
fn pattern251(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn a_misbehaving_service_gets_502_504_or_a_cut_and_its_connections_recover() {
    let dir = TempDir::new("fcgi-bad");
    let sock = dir.path().join("app.sock");
    let app = App::start(dir, &["--unix", sock.to_str().expect("a UTF-8 path")]);
    let weir = Weir::start_with_config(&format!(
        "timeout gateway=1s\nservice app connect=unix:{} connections=2\n{APP_CONF_TAIL}",
        sock.display()
    ));
    let mut c = weir.connect();
    // Fine first, so kept connections exist when things go wrong.
    let r = c.get("/app/x?warm=1");
    r.assert_status(200);

    // Output that is not a CGI header section: 502.
    let r = c.get("/app/x?bad=1");
    r.assert_status(502);
    let mut c = if r.closes() { weir.connect() } else { c };
    // The service closes the connection before any output: 502.
    let r = c.get("/app/x?close=before");
    r.assert_status(502);
    let mut c = if r.closes() { weir.connect() } else { c };
    // Silent for longer than the gateway timeout: 504, in about a second.
    let t0 = Instant::now();
    let r = c.get("/app/x?sleep=3");
    let took = t0.elapsed();
    r.assert_status(504);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2900),
        "the 504 came after {took:?}, not after the 1 s gateway timeout"
    );
    let mut c = if r.closes() { weir.connect() } else { c };

    // A local Location is followed inside weir; a URL is a 302.
    let r = c.get("/app/x?location=/hello.txt");
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("hello.txt"), "local redirect");
    let r = c.get("/app/x?location=http://example.invalid/y");
    r.assert_status(302);
    assert_eq!(r.expect_header("location"), "http://example.invalid/y");

    // Five mebibytes in many records, byte-exact; and a HEAD has no body.
    let n = 5 << 20;
    let r = c.get(&format!("/app/x?size={n}"));
    r.assert_status(200);
    assert_eq!(r.body.len(), n, "length of a large answer");
    assert!(r.body == pattern251(n), "a large answer differs");
    c.send(request("HEAD", "/app/x?h=1", ""));
    let r = c.read_response(Expect::NoBody);
    r.assert_status(200);

    // The service's connection ends after the head and half the body: the response is
    // cut (the connection closes before the body is whole).
    c.send(crate::support::get("/app/x?size=300000&close=after-head"));
    let head = c.read_head_only();
    head.assert_status(200);
    let rest = c.read_to_close();
    assert!(
        rest.len() < 300_000,
        "a cut response delivered {} bytes, as many as a whole one",
        rest.len()
    );
    assert!(
        !rest.ends_with(b"\r\n0\r\n\r\n"),
        "a cut response must not end like a whole chunked one"
    );

    // A client that goes away in the middle of a large answer.
    let mut gone = weir.connect();
    gone.send(crate::support::get("/app/x?size=20000000"));
    let _ = gone.read_some(1000);
    drop(gone);

    // After all that the service answers whole again, on the kept connections, many
    // times, and static files never stopped.
    let mut c = weir.connect();
    for i in 0..20 {
        let r = c.get(&format!("/app/x?after={i}"));
        assert_eq!(r.status, 200, "request {i} after the faults:\n{}", r);
        let e = Echo::parse(&r);
        assert_eq!(e.var("QUERY_STRING"), format!("after={i}"));
        assert_eq!(e.var("PID"), app.pid().to_string());
    }
    assert_static_ok(&weir);
}

// ---------------------------------------------------------------------------------------
// 3. Nobody listens
// ---------------------------------------------------------------------------------------

#[test]
fn connect_to_a_socket_nobody_listens_on_gets_503_quickly_and_static_files_still_flow() {
    let dir = TempDir::new("fcgi-dead");
    // A path with no file, and a socket file whose listener is gone (ECONNREFUSED).
    let missing = dir.path().join("missing.sock");
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind a unix socket"));
    assert!(stale.exists(), "the stale socket file stays");
    // A loopback port nobody listens on (free a moment ago).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port();
    let weir = Weir::start_with_config(&format!(
        "service gone connect=unix:{}\n\
         service stale connect=unix:{}\n\
         service closed connect=127.0.0.1:{port}\n\
         exec /gone/* service=gone\n\
         exec /stale/* service=stale\n\
         exec /closed/* service=closed\n\
         pass /* {{root}}/*\n",
        missing.display(),
        stale.display()
    ));
    for round in 0..3 {
        for prefix in ["/gone/x", "/stale/x?q=1", "/closed/x"] {
            let (r, took) = timed_get(&weir, prefix);
            assert_503_retry_after(&r);
            assert!(
                took < Duration::from_secs(2),
                "round {round}: {prefix} took {took:?} to get its 503"
            );
        }
        // The same on a kept-alive connection, then a static file on it.
        let mut c = weir.connect();
        let r = c.get("/stale/y");
        assert_503_retry_after(&r);
        if !r.closes() {
            let r = c.get("/hello.txt");
            r.assert_status(200);
        }
        assert_static_ok(&weir);
    }
}

// ---------------------------------------------------------------------------------------
// 4. Faults
// ---------------------------------------------------------------------------------------

/// `service app spawn="<python3> {base}/app.py --fd0 EXTRA" processes=N`.
fn spawned_app_conf(processes: usize, extra: &str) -> String {
    format!(
        "service app spawn=\"{} -S {{base}}/app.py --fd0{extra}\" processes={processes}\n\
         {APP_CONF_TAIL}",
        python3()
    )
}

#[test]
fn a_storm_of_kill_9_on_the_service_costs_only_requests_in_flight() {
    let weir = Weir::start_with_config_and_files(&spawned_app_conf(2, ""), &[("app.py", APP_PY)]);
    let launcher = launcher_of(&weir);
    wait_children(launcher, 2, "processes=2 before the storm");
    // The service answers before the storm (and is proven by it).
    let (status, raw) = one_shot(weir.addr, "/app/tool?before").expect("a first answer");
    assert_eq!(status, 200, "before the storm: {}", preview(&raw));

    const STORM: Duration = Duration::from_secs(3);
    const CLIENTS: usize = 4;
    const PER_CLIENT_MAX: usize = 3000;
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for t in 0..CLIENTS {
        let (stop, failures, addr) = (stop.clone(), failures.clone(), weir.addr);
        clients.push(thread::spawn(move || {
            // (200 whole, 200 cut, 502, 503)
            let mut counts = [0usize; 4];
            for i in 0..PER_CLIENT_MAX {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let t0 = Instant::now();
                match one_shot(addr, &format!("/app/tool?t={t}&i={i}")) {
                    Ok((200, raw))
                        if raw.ends_with(b"--end--\n")
                            || raw.ends_with(b"--end--\n\r\n0\r\n\r\n") =>
                    {
                        counts[0] += 1
                    }
                    Ok((200, _)) => counts[1] += 1,
                    Ok((502, _)) => counts[2] += 1,
                    Ok((503, raw)) => {
                        counts[3] += 1;
                        let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
                        if !head.contains("\r\nretry-after: ") {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("client {t} request {i}: 503 without Retry-After"));
                        }
                    }
                    Ok((status, raw)) => failures.lock().unwrap().push(format!(
                        "client {t} request {i}: status {status}: {}",
                        preview(&raw)
                    )),
                    Err(e) => failures.lock().unwrap().push(format!(
                        "client {t} request {i}: no answer after {:?}: {e}",
                        t0.elapsed()
                    )),
                }
            }
            counts
        }));
    }
    let t0 = Instant::now();
    let mut kills = 0usize;
    let mut rounds = 0usize;
    while t0.elapsed() < STORM && rounds < 100 {
        for pid in live_children_of(launcher) {
            if kill9_child(pid, launcher) {
                kills += 1;
            }
        }
        rounds += 1;
        thread::sleep(Duration::from_millis(100));
    }
    let storm_end = Instant::now();
    // Back within a second: a request is answered 200 again.
    let mut back = None;
    let mut last = String::new();
    for _ in 0..100 {
        if storm_end.elapsed() > Duration::from_secs(1) {
            break;
        }
        match one_shot(weir.addr, "/app/tool?after") {
            Ok((200, _)) => {
                back = Some(storm_end.elapsed());
                break;
            }
            Ok((s, raw)) => last = format!("{s}: {}", preview(&raw)),
            Err(e) => last = e,
        }
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let mut totals = [0usize; 4];
    for c in clients {
        let counts = c.join().expect("a client thread panicked");
        for (t, n) in totals.iter_mut().zip(counts) {
            *t += n;
        }
    }
    eprintln!(
        "kill storm: {kills} kills in {rounds} rounds; answers: {} whole 200, {} cut 200, \
         {} 502, {} 503; back after {back:?}",
        totals[0], totals[1], totals[2], totals[3]
    );
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} requests during the storm got no acceptable answer; the first ones:\n{}\nstderr:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        weir.stderr()
    );
    assert!(kills >= 10, "the storm killed only {kills} processes");
    assert!(
        totals[0] > 0,
        "no request was answered 200 during the storm"
    );
    assert!(
        back.is_some(),
        "no 200 within 1 s after the storm ended; last answer: {last}\nstderr:\n{}",
        weir.stderr()
    );
    // After the storm: the service is whole again, and the launcher has reaped every
    // process that was killed (no zombie children).
    wait_children(launcher, 2, "processes=2 after the storm");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let zombies: Vec<u32> = children_of(launcher)
            .into_iter()
            .filter(|&p| proc_state(p) == Some('Z'))
            .collect();
        if zombies.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the launcher leaves zombie children after the storm: {zombies:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert_static_ok(&weir);
}

#[test]
fn each_of_several_spawned_services_is_relaunched_after_kill_9() {
    // Three services from one program. Each must know its processes from the start, so
    // that a process killed after serving is relaunched at once, whichever service it is.
    let py = python3();
    let weir = Weir::start_with_config_and_files(
        &format!(
            "timeout gateway=3s\n\
             service a spawn=\"{py} -S {{base}}/app.py --fd0\"\n\
             service b spawn=\"{py} -S {{base}}/app.py --fd0\"\n\
             service c spawn=\"{py} -S {{base}}/app.py --fd0\"\n\
             exec /a/* service=a\nexec /b/* service=b\nexec /c/* service=c\n\
             pass /* {{root}}/*\n"
        ),
        &[("app.py", APP_PY)],
    );
    let launcher = launcher_of(&weir);
    wait_children(launcher, 3, "three services of one process each");
    for name in ["a", "b", "c"] {
        let mut c = weir.connect();
        let r = c.get(&format!("/{name}/x?first"));
        r.assert_status(200);
        let pid: u32 = Echo::parse(&r).var("PID").parse().expect("a PID");
        drop(c);
        // Let the control loop see the answer (it proves the process), then kill it.
        thread::sleep(Duration::from_millis(400));
        assert!(
            kill9_child(pid, launcher),
            "service {name}: {pid} is not the launcher's"
        );
        let t0 = Instant::now();
        let mut last = String::new();
        let mut back = false;
        while t0.elapsed() < Duration::from_secs(5) {
            match one_shot(weir.addr, &format!("/{name}/x?after")) {
                Ok((200, raw))
                    if !raw
                        .windows(12)
                        .any(|w| w == format!("PID={pid}\n").as_bytes()) =>
                {
                    back = true;
                    break;
                }
                Ok((s, raw)) => {
                    last = format!(
                        "{s} after {:?}: {}",
                        t0.elapsed(),
                        preview(&raw[..raw.len().min(100)])
                    )
                }
                Err(e) => last = e,
            }
            thread::sleep(Duration::from_millis(50));
        }
        assert!(
            back,
            "service {name}: not relaunched within 5 s of kill -9 of its process {pid}, which \
             had served; last answer: {last}\nstderr:\n{}",
            weir.stderr()
        );
    }
    let err = weir.stderr();
    assert!(
        !err.contains("unexpected report"),
        "weir lost launcher reports at start-up:\n{err}"
    );
}

#[test]
fn concurrent_clients_queue_for_two_one_at_a_time_processes_and_all_get_whole_answers() {
    // 12 clients at once, 2 processes that serve one connection at a time (as php-cgi):
    // requests beyond connections= wait for a free connection, none is lost or mixed up.
    let weir =
        Weir::start_with_config_and_files(&spawned_app_conf(2, " --serial"), &[("app.py", APP_PY)]);
    let launcher = launcher_of(&weir);
    wait_children(launcher, 2, "processes=2");
    let mut threads = Vec::new();
    for t in 0..12 {
        let addr = weir.addr;
        threads.push(thread::spawn(move || {
            let mut c = Client::connect(addr);
            let mut pids = std::collections::BTreeSet::new();
            for i in 0..10 {
                let body = pattern(1000 + t * 100 + i, (t * 100 + i) as u32);
                let path = format!("/dir/run.fcgi?t={t}&i={i}");
                let r = ask(
                    &mut c,
                    with_body("POST", &path, "application/x-thing", &body),
                );
                assert_eq!(r.status, 200, "client {t} request {i}:\n{}", r);
                let e = Echo::parse(&r);
                assert_eq!(
                    e.var("QUERY_STRING"),
                    format!("t={t}&i={i}"),
                    "client {t} request {i}"
                );
                assert!(e.body == body, "client {t} request {i}: the body differs");
                pids.insert(e.var("PID").to_string());
            }
            pids
        }));
    }
    let mut pids = std::collections::BTreeSet::new();
    for t in threads {
        pids.extend(t.join().expect("a client failed"));
    }
    assert_eq!(pids.len(), 2, "both processes should have served: {pids:?}");
}

#[test]
fn expect_100_continue_and_http_1_0_reach_a_service() {
    let weir = Weir::start_with_config_and_files(&spawned_app_conf(1, ""), &[("app.py", APP_PY)]);
    let mut c = weir.connect();
    let body = pattern(50_000, 9);
    c.send(format!(
        "POST /app/e?x=1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\
         Content-Type: application/x-thing\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    ));
    let interim = c.read_response(Expect::Body);
    interim.assert_status(100);
    c.send(&body);
    let r = c.read_response(Expect::Body);
    r.assert_status(200);
    let e = Echo::parse(&r);
    assert_eq!(e.var("CONTENT_LENGTH"), body.len().to_string());
    assert!(e.body == body, "the body after 100-continue differs");

    // HTTP/1.0: an answer without chunking, closed after it.
    let mut c = weir.connect();
    c.send("GET /app/old?y=2 HTTP/1.0\r\nHost: localhost\r\n\r\n");
    // The reader refuses a chunked answer to HTTP/1.0 (Expect::Http10).
    let r = c.read_response(Expect::Http10);
    r.assert_status(200);
    let e = Echo::parse(&r);
    assert_eq!(e.var("SERVER_PROTOCOL"), "HTTP/1.0");
    assert_eq!(e.var("QUERY_STRING"), "y=2");
    c.expect_closed();
}

/// `(uid, gid)` of `name` in /etc/passwd.
fn passwd_ids(name: &str) -> Option<(u32, u32)> {
    let text = fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// `Uid:`/`Gid:` of /proc/PID/status: (real, effective, saved, fs) each.
fn ids_of(pid: u32, field: &str) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The path /proc/net/unix gives the socket with inode `inode`, and its flags.
fn unix_socket(inode: &str) -> Option<(u32, String)> {
    let table = fs::read_to_string("/proc/net/unix").ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 8 && f[6] == inode)
            .then(|| (u32::from_str_radix(f[3], 16).unwrap_or(0), f[7].to_string()))
    })
}

#[test]
fn a_spawned_process_gets_its_socket_on_fd_0_only_path_and_env_its_cwd_and_its_user() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid takes nothing and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let nobody = passwd_ids("nobody").filter(|_| root);
    if nobody.is_none() {
        eprintln!("NOTE: not root (or no `nobody`): user= is not checked");
    }
    let user = if nobody.is_some() { " user=nobody" } else { "" };
    let weir = Weir::start_with_config(&format!(
        "service s spawn=\"sleep 30\" processes=2 env=FOO=bar env=X=a=b{user}\n\
         service t spawn=\"sleep 31\" cwd={{root}}\n\
         exec /s/* service=s\nexec /t/* service=t\npass /* {{root}}/*\n"
    ));
    let launcher = launcher_of(&weir);
    let deadline = Instant::now() + SETTLE;
    let kids = loop {
        let kids = wait_children(launcher, 3, "2 + 1 processes");
        if kids
            .iter()
            .all(|&k| cmdline(k).first().is_some_and(|a| a.ends_with("sleep")))
        {
            break kids;
        }
        assert!(Instant::now() < deadline, "the services did not exec sleep");
        thread::sleep(Duration::from_millis(20));
    };
    let run_dir = run_dir_of(weir.pid());
    let mode = |p: &std::path::Path| fs::metadata(p).map(|m| m.permissions().mode() & 0o777).ok();
    assert_eq!(
        mode(&run_dir),
        Some(0o700),
        "the run directory {}",
        run_dir.display()
    );
    assert_eq!(mode(&run_dir.join("s.sock")), Some(0o600), "s.sock");
    let stderr_file = weir
        .docs
        .base()
        .join(format!("weir-{}.stderr", weir.port()));
    let path = std::env::var("PATH").expect("the tests have a PATH");
    let base = weir.docs.base().canonicalize().expect("canonical base");
    let docroot = weir.docs.root().canonicalize().expect("canonical root");
    let mut seen = Vec::new();
    for k in kids {
        let argv = cmdline(k);
        let name = if argv.get(1).map(String::as_str) == Some("30") {
            "s"
        } else {
            "t"
        };
        seen.push(name);
        // Standard input is the service's listening socket; output /dev/null; errors go
        // where weir's go; nothing else is open.
        let fds: Vec<String> = fs::read_dir(format!("/proc/{k}/fd"))
            .expect("/proc/PID/fd")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let mut sorted = fds.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            ["0", "1", "2"],
            "service {name} ({k}): open descriptors"
        );
        let link = |fd: u32| {
            fs::read_link(format!("/proc/{k}/fd/{fd}"))
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let fd0 = link(0);
        let inode = fd0
            .strip_prefix("socket:[")
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or_else(|| panic!("service {name}: fd 0 is {fd0}, not a socket"));
        let (flags, sock_path) =
            unix_socket(inode).unwrap_or_else(|| panic!("fd 0 ({inode}) is not a unix socket"));
        assert_eq!(
            sock_path,
            run_dir.join(format!("{name}.sock")).display().to_string(),
            "service {name}: the socket on fd 0"
        );
        assert!(
            flags & 0x1_0000 != 0,
            "service {name}: fd 0 is not listening"
        );
        assert_eq!(link(1), "/dev/null", "service {name}: fd 1");
        assert_eq!(
            fs::canonicalize(link(2)).ok(),
            stderr_file.canonicalize().ok(),
            "service {name}: fd 2 is not weir's standard error"
        );
        // Exactly PATH and the env= variables.
        let environ = fs::read(format!("/proc/{k}/environ")).expect("/proc/PID/environ");
        let mut vars: Vec<String> = environ
            .split(|&b| b == 0)
            .filter(|v| !v.is_empty())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        vars.sort();
        let want: Vec<String> = if name == "s" {
            vec![format!("FOO=bar"), format!("PATH={path}"), format!("X=a=b")]
        } else {
            vec![format!("PATH={path}")]
        };
        assert_eq!(vars, want, "service {name}: environment");
        // The working directory: `root` by default, else cwd=.
        let cwd = fs::read_link(format!("/proc/{k}/cwd")).expect("/proc/PID/cwd");
        let want_cwd = if name == "s" { &base } else { &docroot };
        assert_eq!(&cwd, want_cwd, "service {name}: working directory");
        // Its own process group.
        let pgrp: u32 = stat_fields(k).expect("alive")[2].parse().expect("pgrp");
        assert_eq!(pgrp, k, "service {name}: not in a process group of its own");
        if let (Some((uid, gid)), "s") = (nobody, name) {
            assert_eq!(ids_of(k, "Uid:"), [uid; 4], "service s: uids");
            assert_eq!(ids_of(k, "Gid:"), [gid; 4], "service s: gids");
        }
    }
    seen.sort();
    assert_eq!(seen, ["s", "s", "t"]);
}

#[test]
fn more_workers_than_service_processes_never_leave_a_request_waiting() {
    // Three workers and a service of two processes that, like php-cgi, serve one
    // connection at a time (connections= defaults to processes, so each worker's share is
    // 1, 1 and 0). Every request must be answered at once: an idle kept connection in one
    // worker must not pin a process that another worker's request waits for.
    let weir = Weir::start_with_config_files_and_workers(
        &format!("timeout gateway=3s\n{}", spawned_app_conf(2, " --serial")),
        &[("app.py", APP_PY)],
        3,
    );
    let launcher = launcher_of(&weir);
    wait_children(launcher, 2, "processes=2");
    let mut failures = Vec::new();
    let t0 = Instant::now();
    for i in 0..40 {
        if failures.len() >= 3 || t0.elapsed() > Duration::from_secs(20) {
            break;
        }
        let t = Instant::now();
        match one_shot(weir.addr, &format!("/app/tool?i={i}")) {
            Ok((200, raw)) if raw.windows(8).any(|w| w == b"--end--\n") => {}
            Ok((status, raw)) => failures.push(format!(
                "request {i}: {status} after {:?}: {}",
                t.elapsed(),
                preview(&raw[..raw.len().min(120)])
            )),
            Err(e) => failures.push(format!("request {i}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "with 3 workers and 2 one-connection-at-a-time processes, requests waited for a \
         process pinned by another worker's idle kept connection:\n{}",
        failures.join("\n")
    );
}

#[test]
fn a_command_that_exits_at_once_gets_503_backs_off_gives_up_and_costs_nothing() {
    let weir = Weir::start_with_config(
        "service broken spawn=\"false\"\nexec /broken/* service=broken\npass /* {root}/*\n",
    );
    let launcher = launcher_of(&weir);
    // Requests get 503 with Retry-After at once, whatever the supervisor is doing.
    for i in 0..5 {
        let (r, took) = timed_get(&weir, &format!("/broken/x?i={i}"));
        assert_503_retry_after(&r);
        assert!(
            took < Duration::from_secs(2),
            "request {i} took {took:?} to get its 503"
        );
        assert_static_ok(&weir);
    }
    stderr_eventually(&weir, "service broken: ");
    stderr_eventually(&weir, "retrying in");

    // Idle while it backs off and gives up: weir and its launcher burn no CPU.
    let (w0, l0) = (cpu_seconds(weir.pid()), cpu_seconds(launcher));
    thread::sleep(Duration::from_secs(3));
    let (w1, l1) = (cpu_seconds(weir.pid()), cpu_seconds(launcher));
    eprintln!(
        "spawn=false: CPU over 3 s: weir {:.2} s, launcher {:.2} s",
        w1 - w0,
        l1 - l0
    );
    assert!(
        w1 - w0 < 0.3,
        "weir used {:.2} s of CPU in 3 s while its service was broken",
        w1 - w0
    );
    assert!(
        l1 - l0 < 0.3,
        "the launcher used {:.2} s of CPU in 3 s while its service was broken",
        l1 - l0
    );

    // Six failed starts (about 0.1 + 0.2 + … + 1.6 s of back-off, plus jitter) give it up.
    let err = stderr_eventually(&weir, "giving up");
    let give_up = err
        .lines()
        .find(|l| l.contains("giving up"))
        .expect("found a moment ago");
    assert!(give_up.contains("service broken: "), "{give_up}");
    let retrying = err.lines().filter(|l| l.contains("retrying in")).count();
    assert!(
        retrying >= 3,
        "expected several back-off lines before the give-up, found {retrying}:\n{err}"
    );
    // Given up: 503 at once, with a Retry-After until the cool-down ends (60 s).
    let (r, took) = timed_get(&weir, "/broken/after");
    let secs = assert_503_retry_after(&r);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(
        (30..=61).contains(&secs),
        "a given-up service should say Retry-After until the cool-down ends, not {secs}"
    );
    // And nothing is started any more.
    thread::sleep(Duration::from_millis(300));
    assert!(
        live_children_of(launcher).is_empty(),
        "a given-up service still has processes: {:?}",
        live_children_of(launcher)
    );
    assert_static_ok(&weir);
}

#[test]
fn a_command_not_on_path_is_logged_and_its_requests_get_503_while_weir_serves() {
    let weir = Weir::start_with_config_and_files(
        &format!(
            "service ghost spawn=\"weir-e2e-no-such-program-5c1e --flag\"\n\
             exec /ghost/* service=ghost\n{}",
            spawned_app_conf(1, "")
        ),
        &[("app.py", APP_PY)],
    );
    let err = stderr_eventually(&weir, "not a program found on PATH");
    let line = err
        .lines()
        .find(|l| l.contains("not a program found on PATH"))
        .expect("found a moment ago");
    assert!(
        line.contains("service ghost") && line.contains("weir-e2e-no-such-program-5c1e"),
        "the start-up line should name the service and the program: {line}"
    );
    for i in 0..3 {
        let (r, took) = timed_get(&weir, &format!("/ghost/x?i={i}"));
        r.assert_status(503);
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }
    assert_static_ok(&weir);
    // The other service, which does exist, runs.
    let mut c = weir.connect();
    let r = c.get("/app/tool?x=1");
    r.assert_status(200);
    assert_eq!(Echo::parse(&r).var("QUERY_STRING"), "x=1");
}

#[test]
fn sigterm_stops_every_service_process_even_those_ignoring_it() {
    // Two processes that ignore SIGTERM, each with a child of its own.
    let mut weir = Weir::start_with_config_and_files(
        &spawned_app_conf(2, " --ignore-term --helper"),
        &[("app.py", APP_PY)],
    );
    let launcher = launcher_of(&weir);
    let services = wait_children(launcher, 2, "processes=2");
    let mut procs: Vec<Proc> = Vec::new();
    for &s in &services {
        let helpers = wait_children(s, 1, "the app's helper");
        procs.extend(helpers.iter().filter_map(|&h| Proc::of(h)));
        procs.extend(Proc::of(s));
    }
    procs.extend(Proc::of(launcher));
    assert_eq!(procs.len(), 5, "launcher, 2 services, 2 helpers: {procs:?}");
    let mut c = weir.connect();
    let r = c.get("/app/tool?x=1");
    r.assert_status(200);
    let pid: u32 = Echo::parse(&r).var("PID").parse().expect("a PID");
    assert!(
        services.contains(&pid),
        "answered by {pid}, not one of {services:?}"
    );
    drop(c);
    stop_and_assert_nothing_left(&mut weir, &procs, "spawned app ignoring SIGTERM");
    assert!(
        !weir.stderr().contains("did not exit within"),
        "the launcher had to be killed:\n{}",
        weir.stderr()
    );
}

#[test]
fn kill_9_of_weir_still_takes_every_service_process_down() {
    let mut weir = Weir::start_with_config_and_files(
        &spawned_app_conf(2, " --ignore-term --helper"),
        &[("app.py", APP_PY)],
    );
    let launcher = launcher_of(&weir);
    let services = wait_children(launcher, 2, "processes=2");
    let mut procs: Vec<Proc> = Vec::new();
    for &s in &services {
        procs.extend(
            wait_children(s, 1, "the app's helper")
                .iter()
                .filter_map(|&h| Proc::of(h)),
        );
        procs.extend(Proc::of(s));
    }
    procs.extend(Proc::of(launcher));
    assert_eq!(procs.len(), 5, "launcher, 2 services, 2 helpers: {procs:?}");
    weir.signal("KILL");
    assert!(weir.wait_exit(SETTLE).is_some(), "weir survived SIGKILL");
    // The launcher sees its socket close: SIGTERM, 2 s, SIGKILL to every process group.
    let deadline = Instant::now() + SETTLE;
    loop {
        let left: Vec<(Proc, char, Vec<String>)> = procs
            .iter()
            .filter_map(|&p| {
                p.state()
                    .filter(|&s| s != 'Z')
                    .map(|s| (p, s, cmdline(p.pid)))
            })
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{SETTLE:?} after weir was killed, processes of its services live on: {left:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let run_dir = run_dir_of(weir.pid());
    let sock = run_dir.join("app.sock");
    assert!(!sock.exists(), "{} is left behind", sock.display());
    // Nobody is left to remove the (empty) run directory: remove it here, or a later
    // weir with this PID would find it (see the test after this one).
    let _ = fs::remove_dir(&run_dir);
}

/// A weir started by a test itself (not through the harness), stopped by PID on drop.
struct OwnWeir {
    child: Child,
}

impl Drop for OwnWeir {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill with plain integers, to our own unreaped child.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + SETTLE;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn a_run_directory_left_by_a_killed_weir_does_not_stop_the_next_one() {
    // weir killed with SIGKILL (or by the OOM killer) cannot remove its run directory,
    // `$XDG_RUNTIME_DIR/weir.PID`; a later weir that gets the same PID (PID 1 in a
    // restarted container, or any reused PID) must still start and run its services.
    // The stale directory is made here by a shell that then execs weir, keeping its PID.
    let dir = TempDir::new("stale-run-dir");
    let xdg = dir.path().join("xdg");
    fs::create_dir_all(&xdg).expect("mkdir xdg");
    fs::create_dir_all(dir.path().join("root")).expect("mkdir root");
    fs::write(dir.path().join("root/hello.txt"), "hello\n").expect("write hello.txt");
    fs::write(dir.path().join("app.py"), APP_PY).expect("write app.py");
    let conf = dir.path().join("weir.conf");
    fs::write(
        &conf,
        format!(
            "service app spawn=\"{} -S {}/app.py --fd0\"\nexec /app/* service=app\n\
             pass /* {}/root/*\n",
            python3(),
            dir.path().display(),
            dir.path().display()
        ),
    )
    .expect("write weir.conf");
    let claim = crate::support::claim_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], claim.port));
    let stderr_path = dir.path().join("stderr");
    let stderr = fs::File::create(&stderr_path).expect("create the stderr file");
    let child = Command::new("sh")
        .arg("-c")
        .arg(r#"mkdir -m 700 "$XDG_RUNTIME_DIR/weir.$$" && exec "$0" serve -c "$1" --listen "$2" --workers 1"#)
        .arg(env!("CARGO_BIN_EXE_weir"))
        .arg(&conf)
        .arg(addr.to_string())
        .env("XDG_RUNTIME_DIR", &xdg)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("start sh, then weir");
    let mut weir = OwnWeir { child };
    let stale = xdg.join(format!("weir.{}", weir.child.id()));
    let deadline = Instant::now() + crate::support::START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = weir.child.try_wait() {
            panic!(
                "weir refused to start ({status}) because of the stale {}; stderr:\n{}",
                stale.display(),
                fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "weir did not start listening");
        thread::sleep(Duration::from_millis(20));
    }
    let mut c = Client::connect(addr);
    let r = c.get("/app/x?stale=1");
    r.assert_status(200);
    assert_eq!(Echo::parse(&r).var("QUERY_STRING"), "stale=1");
    drop(c);
    drop(weir);
    drop(claim);
}

// ---------------------------------------------------------------------------------------
// 5. weir check
// ---------------------------------------------------------------------------------------

#[test]
fn check_reports_bad_service_lines_with_file_line_and_column() {
    let dir = TempDir::new("check-services");
    let cases: [(&str, &str, &str); 5] = [
        (
            "unknown-option.conf",
            "service php spawn=\"php-cgi\" bogus=1\npass /*\n",
            ":1:29: error: unknown option `bogus`",
        ),
        (
            "zero-processes.conf",
            "# a comment first\nservice php spawn=\"php-cgi\" processes=0\npass /*\n",
            ":2:29: error: processes must be",
        ),
        (
            "empty-user.conf",
            "pass /x\nservice php spawn=\"php-cgi\" processes=2 user=\npass /*\n",
            ":2:41: error: ",
        ),
        (
            "undeclared.conf",
            "service php spawn=\"php-cgi\"\nexec /*.php service=pgp {root}/*.php\npass /*\n",
            ":2:13: error: no service named `pgp` is declared",
        ),
        (
            "zero-connections.conf",
            "service app connect=unix:/nowhere.sock connections=0\npass /*\n",
            ":1:40: error: ",
        ),
    ];
    for (name, text, want) in cases {
        let file = dir.path().join(name);
        fs::write(&file, text).expect("write the configuration");
        let path = file.to_str().expect("a UTF-8 path");
        let (code, out, err) = weir_cmd(&["check", "-c", path]);
        assert_eq!(
            code, 1,
            "{name}: weir check should refuse\n{text}\nstdout: {out}\nstderr: {err}"
        );
        let want = format!("{path}{want}");
        assert!(
            err.contains(&want),
            "{name}: expected {want:?} in stderr:\n{err}"
        );
    }
    // The good line is accepted, so the errors above are about what they name.
    let good = dir.path().join("good.conf");
    fs::write(
        &good,
        "service php spawn=\"php-cgi -d display_errors=0\" processes=2 connections=4 \
         cwd=/ env=A=B env=C=D=E\n\
         service far connect=127.0.0.1:9000 connections=3\n\
         exec /*.php service=php {root}/*.php\nexec /far/* service=far\npass /*\n",
    )
    .expect("write good.conf");
    let (code, out, err) = weir_cmd(&["check", "-c", good.to_str().unwrap()]);
    assert_eq!(code, 0, "good.conf refused: {out}{err}");
}
