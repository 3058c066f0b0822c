//! The end-to-end harness: a temporary document root, the real `weir` binary on a loopback
//! port, and a raw HTTP/1.1 client with a strict response parser.
//!
//! Every network wait is bounded: sockets carry read and write timeouts of `IO_TIMEOUT`,
//! start-up waits at most `START_TIMEOUT`, and a server is stopped by its PID (SIGTERM,
//! then SIGKILL) when its `Weir` guard drops. Servers listen on 127.0.0.1 only.

#![allow(dead_code)] // Each test uses a part of the harness.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest any single socket read or write may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the server may take to accept connections after it was started.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the server may take to exit after SIGTERM/SIGINT (with nothing in flight).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest response head the parser accepts before calling the response broken.
const RESPONSE_HEAD_MAX: usize = 64 * 1024;

/// Size of `big.bin`.
pub const BIG_LEN: usize = 5 * 1024 * 1024;
/// A string that only the files outside the document root contain.
pub const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-ROOT-5c1e";

// ---------------------------------------------------------------------------------------
// Temporary directories and the document root
// ---------------------------------------------------------------------------------------

/// A directory under the system temp dir, removed (with its contents) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("weir-{tag}-{}-{n}-{nanos:08x}", std::process::id()));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The test document root and, beside it (outside it), files a traversal must never reach.
///
/// ```text
/// BASE/secret.txt, BASE/x        contain SECRET (outside the root)
/// BASE/root/                     the document root
///   hello.txt                    1024 bytes of text
///   index.html                   the root's welcome file
///   sub/index.html               a directory with a welcome file
///   noindex/readme.txt           a directory without one
///   a/file.txt                   for `/a/../../x`
///   big.bin                      5 MiB, a deterministic pseudo-random pattern
///   style.css app.js data.json pixel.png logo.svg blob.zzqx  one file per suffix
///   with space.txt               a name that must be percent-encoded
/// ```
pub struct DocRoot {
    base: TempDir,
    root: PathBuf,
}

impl DocRoot {
    pub fn new() -> DocRoot {
        let base = TempDir::new("e2e");
        let root = base.path().join("root");
        let b = base.path();
        write(&b.join("secret.txt"), format!("{SECRET}\n").as_bytes());
        write(&b.join("x"), format!("{SECRET} (x)\n").as_bytes());
        write(&root.join("hello.txt"), &hello_bytes());
        write(
            &root.join("index.html"),
            b"<!doctype html>\n<title>root</title>\n<p>ROOT-INDEX</p>\n",
        );
        write(
            &root.join("sub/index.html"),
            b"<!doctype html>\n<title>sub</title>\n<p>SUB-INDEX</p>\n",
        );
        write(&root.join("noindex/readme.txt"), b"no welcome file here\n");
        write(&root.join("a/file.txt"), b"a file in a\n");
        write(&root.join("big.bin"), &big_bytes());
        write(&root.join("style.css"), b"body { color: #222; }\n");
        write(&root.join("app.js"), b"console.log(\"weir\");\n");
        write(&root.join("data.json"), b"{\"weir\": true}\n");
        write(&root.join("pixel.png"), PIXEL_PNG);
        write(
            &root.join("logo.svg"),
            b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1\" height=\"1\"/>\n",
        );
        write(&root.join("blob.zzqx"), b"\x00\x01\x02 unknown suffix\n");
        write(&root.join("with space.txt"), b"a name with a space\n");
        DocRoot { base, root }
    }

    /// The document root (what `--root` gets).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory that holds the root and the secret files.
    pub fn base(&self) -> &Path {
        self.base.path()
    }

    /// The bytes of a file under the root, as on disk.
    pub fn bytes(&self, rel: &str) -> Vec<u8> {
        let p = self.root.join(rel);
        fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    }

    /// The file's mtime as an IMF-fixdate, which is what `Last-Modified` must say.
    pub fn last_modified(&self, rel: &str) -> String {
        let p = self.root.join(rel);
        let mtime = fs::metadata(&p)
            .and_then(|m| m.modified())
            .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
        http_date(unix_seconds(mtime))
    }
}

impl Default for DocRoot {
    fn default() -> Self {
        DocRoot::new()
    }
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    }
    fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The 1024 bytes of `hello.txt`: numbered lines of text.
pub fn hello_bytes() -> Vec<u8> {
    let mut out = Vec::with_capacity(1100);
    let mut i = 0;
    while out.len() < 1024 {
        out.extend_from_slice(format!("HELLO line {i:03}: weir serves this file\n").as_bytes());
        i += 1;
    }
    out.truncate(1023);
    out.push(b'\n');
    out
}

/// The 5 MiB of `big.bin`: an LCG stream, so a misplaced or repeated chunk shows up.
pub fn big_bytes() -> Vec<u8> {
    let mut state: u64 = 0x5eed_f00d_cafe_0001;
    (0..BIG_LEN)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u8
        })
        .collect()
}

/// A valid 1×1 transparent PNG.
pub const PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

// ---------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------

/// A running `weir serve`, stopped by PID when dropped.
pub struct Weir {
    child: Child,
    exited: Option<ExitStatus>,
    pub addr: SocketAddr,
    pub docs: DocRoot,
    stderr_path: PathBuf,
    /// Held while the server runs (dropped after `Drop::drop` has stopped it).
    _claim: PortClaim,
}

impl Weir {
    /// `weir serve` on a fresh document root with one worker.
    pub fn start() -> Weir {
        Weir::start_with_workers(1)
    }

    /// `weir serve --workers N` on a fresh document root.
    pub fn start_with_workers(workers: usize) -> Weir {
        Weir::start_with(workers, None, &[])
    }

    /// `weir serve -c FILE` with one worker on a fresh document root, FILE holding `conf`
    /// with every `{root}` replaced by the document root's path and every `{base}` by the
    /// directory that holds it (the file itself lives in `{base}`).
    pub fn start_with_config(conf: &str) -> Weir {
        Weir::start_with_config_and_files(conf, &[])
    }

    /// Like `start_with_config`, with `workers` workers.
    pub fn start_with_config_and_workers(conf: &str, workers: usize) -> Weir {
        Weir::start_with(workers, Some(conf), &[])
    }

    /// Like `start_with_config`, with extra files written first in `{base}` (e.g. an
    /// htpasswd file the configuration names): (file name, contents).
    pub fn start_with_config_and_files(conf: &str, files: &[(&str, &str)]) -> Weir {
        Weir::start_with(1, Some(conf), files)
    }

    /// `weir serve` with neither `-c` nor `--root`, started in the document root (so it
    /// serves its current directory).
    pub fn start_in_root_dir() -> Weir {
        Weir::start_with_options(1, None, &[], true)
    }

    fn start_with(workers: usize, conf: Option<&str>, files: &[(&str, &str)]) -> Weir {
        Weir::start_with_options(workers, conf, files, false)
    }

    /// `in_root_dir`: without `conf`, start in the document root and pass no `--root`.
    fn start_with_options(
        workers: usize,
        conf: Option<&str>,
        files: &[(&str, &str)],
        in_root_dir: bool,
    ) -> Weir {
        let mut docs = DocRoot::new();
        for (name, text) in files {
            write(&docs.base().join(name), text.as_bytes());
        }
        let mut last_failure = String::new();
        // A port picked by binding port 0 can be taken by someone else before weir binds
        // it; when weir exits early saying so, try again with another port.
        for _attempt in 0..5 {
            let claim = free_port();
            let port = claim.port;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let stderr_path = docs.base().join(format!("weir-{port}.stderr"));
            let stderr = fs::File::create(&stderr_path).expect("create the stderr file");
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
            cmd.arg("serve");
            match conf {
                Some(text) => {
                    let file = docs.base().join("weir.conf");
                    let text = text
                        .replace("{root}", &docs.root().display().to_string())
                        .replace("{base}", &docs.base().display().to_string());
                    fs::write(&file, text).expect("write weir.conf");
                    cmd.arg("-c").arg(file);
                }
                // The current directory (set below) is what is served.
                None if in_root_dir => {}
                None => {
                    cmd.arg("--root").arg(docs.root());
                }
            }
            let child = cmd
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--workers")
                .arg(workers.to_string())
                .current_dir(if in_root_dir {
                    docs.root()
                } else {
                    docs.base()
                })
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(stderr))
                .spawn()
                .expect("spawn the weir binary");
            let mut weir = Weir {
                child,
                exited: None,
                addr,
                docs,
                stderr_path,
                _claim: claim,
            };
            match weir.wait_ready() {
                Ok(()) => return weir,
                Err(Ready::ExitedEarly(status)) => {
                    let err = weir.stderr();
                    last_failure = format!("weir exited early with {status}; stderr:\n{err}");
                    let lower = err.to_ascii_lowercase();
                    if !(lower.contains("in use") || lower.contains("bind")) {
                        panic!("{last_failure}");
                    }
                    // Retry with a new port; the guard is dropped here (already exited).
                    docs = weir.take_docs();
                }
                Err(Ready::TimedOut) => {
                    panic!(
                        "weir did not accept connections on {addr} within {START_TIMEOUT:?}; \
                         stderr:\n{}",
                        weir.stderr()
                    );
                }
            }
        }
        panic!("weir could not bind a free port in 5 attempts; last failure: {last_failure}");
    }

    fn wait_ready(&mut self) -> Result<(), Ready> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.try_wait() {
                return Err(Ready::ExitedEarly(status));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(250)).is_ok() {
                // The probe connection is closed at once; the server must shrug that off.
                if let Some(status) = self.try_wait() {
                    return Err(Ready::ExitedEarly(status));
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Ready::TimedOut);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Moves the document root out of a guard whose process has exited (for a retry).
    fn take_docs(mut self) -> DocRoot {
        // The process already exited; make Drop a no-op and hand the root on.
        std::mem::replace(&mut self.docs, DocRoot::placeholder())
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything weir wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("(could not read stderr: {e})"))
    }

    /// Stderr once it contains `needle`; panics (with stderr) if that takes over 5 s. The
    /// start-up line may be written a moment after the port starts accepting.
    pub fn stderr_containing(&self, needle: &str) -> String {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let err = self.stderr();
            if err.contains(needle) {
                return err;
            }
            assert!(
                Instant::now() < deadline,
                "stderr does not contain {needle:?} after {IO_TIMEOUT:?}; stderr:\n{err}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new client connection with read and write timeouts.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// The exit status if the process has exited (reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait on weir");
        }
        self.exited
    }

    /// Panics (with stderr) unless the process is still running.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.try_wait() {
            panic!(
                "weir exited unexpectedly with {status}; stderr:\n{}",
                self.stderr()
            );
        }
    }

    /// Sends a signal by name (`TERM`, `INT`) to this server's PID, and to nothing else.
    pub fn signal(&mut self, name: &str) {
        if self.try_wait().is_some() {
            return;
        }
        // The child is not reaped yet, so its PID cannot have been reused.
        let status = Command::new("sh")
            .arg("-c")
            .arg("kill -s \"$1\" \"$2\"")
            .arg("sh")
            .arg(name)
            .arg(self.pid().to_string())
            .status()
            .expect("run sh -c kill");
        assert!(status.success(), "kill -s {name} {} failed", self.pid());
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

enum Ready {
    ExitedEarly(ExitStatus),
    TimedOut,
}

impl DocRoot {
    /// An empty stand-in used only while moving a real root between guards.
    fn placeholder() -> DocRoot {
        let base = TempDir::new("placeholder");
        let root = base.path().join("root");
        DocRoot { base, root }
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            self.signal("TERM");
            if self.wait_exit(EXIT_TIMEOUT).is_none() {
                let _ = self.child.kill();
                self.exited = self.child.wait().ok();
            }
        }
        if thread::panicking() {
            eprintln!("---- weir stderr ({}) ----\n{}", self.addr, self.stderr());
        }
    }
}

/// A loopback port that was free a moment ago and that no other e2e test — in this process
/// or in another one running at the same time — holds.
///
/// weir binds with `SO_REUSEPORT`, so two servers of the same user could share one port and
/// split its connections between them. Ports are therefore claimed across processes with a
/// lock file created with `create_new` in a shared directory; a claim whose process is gone
/// (no `/proc/PID`) is stale and taken over.
fn free_port() -> PortClaim {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let dir = std::env::temp_dir().join("weir-e2e-ports");
    let _ = fs::create_dir_all(&dir);
    for _ in 0..200 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        let mut used = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !used.insert(port) {
            continue;
        }
        drop(used);
        if let Some(claim) = PortClaim::take(&dir, port) {
            return claim;
        }
    }
    panic!("no fresh loopback port after 200 tries");
}

/// A port claimed for one server; the claim is released when this drops.
pub struct PortClaim {
    pub port: u16,
    file: PathBuf,
}

impl PortClaim {
    fn take(dir: &Path, port: u16) -> Option<PortClaim> {
        let file = dir.join(port.to_string());
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&file)
            {
                Ok(mut f) => {
                    let _ = write!(f, "{}", std::process::id());
                    return Some(PortClaim { port, file });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let owner = fs::read_to_string(&file).unwrap_or_default();
                    let alive = owner
                        .trim()
                        .parse::<u32>()
                        .map(|pid| Path::new(&format!("/proc/{pid}")).exists())
                        // Being written right now, or unreadable: treat as held.
                        .unwrap_or(true);
                    if alive {
                        return None;
                    }
                    let _ = fs::remove_file(&file);
                }
                // No shared directory (odd temp dir): fall back to the in-process check.
                Err(_) => {
                    return Some(PortClaim {
                        port,
                        file: PathBuf::new(),
                    })
                }
            }
        }
        None
    }
}

impl Drop for PortClaim {
    fn drop(&mut self) {
        if !self.file.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.file);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The client and the strict response parser
// ---------------------------------------------------------------------------------------

/// A request's method as far as the response parser cares: HEAD responses have no body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Body,
    NoBody,
}

/// A parsed response.
#[derive(Clone, Debug)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Field names as sent, values with surrounding whitespace removed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// True if the body came chunked.
    pub chunked: bool,
    /// True if the body was delimited by the connection closing.
    pub close_delimited: bool,
}

impl Response {
    /// All values of a field, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of a field that must appear at most once.
    pub fn header(&self, name: &str) -> Option<&str> {
        let all = self.header_all(name);
        assert!(
            all.len() <= 1,
            "field {name} appears {} times in {}",
            all.len(),
            self.summary()
        );
        all.first().copied()
    }

    /// The value of a field that must appear exactly once.
    pub fn expect_header(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("no {name} field in {}", self.summary()))
    }

    /// True if any value of the field lists `token` (comma-separated, case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_all(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// True if the server announced that it closes the connection after this response.
    pub fn closes(&self) -> bool {
        self.has_token("connection", "close")
    }

    /// Status line and headers, for assertion messages.
    pub fn summary(&self) -> String {
        let mut s = format!("{} {} {}\n", self.version, self.status, self.reason);
        for (n, v) in &self.headers {
            s.push_str(&format!("{n}: {v}\n"));
        }
        s.push_str(&format!("[body: {}]", preview(&self.body)));
        s
    }

    /// Panics unless the status is `want`.
    pub fn assert_status(&self, want: u16) -> &Self {
        assert_eq!(
            self.status,
            want,
            "expected status {want}, got:\n{}",
            self.summary()
        );
        self
    }
}

/// A short printable rendering of bytes for messages.
pub fn preview(bytes: &[u8]) -> String {
    const MAX: usize = 300;
    let shown = &bytes[..bytes.len().min(MAX)];
    let mut s = String::new();
    for &b in shown {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > MAX {
        s.push_str(&format!("… ({} bytes)", bytes.len()));
    }
    s
}

/// A raw TCP client with a read buffer, so pipelined responses can be split apart.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    /// While a response is read raw (`read_response_raw`), consumed bytes stay buffered.
    keep: bool,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Client::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set_read_timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set_write_timeout");
        let _ = stream.set_nodelay(true);
        Client {
            stream,
            buf: Vec::new(),
            start: 0,
            keep: false,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Writes all bytes; panics on failure.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        let bytes = bytes.as_ref();
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("send {} bytes: {e}", bytes.len()));
    }

    /// Writes all bytes; the server may legitimately have closed already.
    pub fn send_lenient(&mut self, bytes: impl AsRef<[u8]>) -> io::Result<()> {
        self.stream.write_all(bytes.as_ref())
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// `GET path` on this connection, read its response.
    pub fn get(&mut self, path: &str) -> Response {
        self.send(get(path));
        self.read_response(Expect::Body)
    }

    /// Bytes received and not yet consumed by a parse.
    pub fn unread(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Reads more bytes into the buffer; returns how many (0 at EOF). Panics on timeout.
    fn fill(&mut self, context: &str) -> usize {
        if self.start > 0 && self.start == self.buf.len() && !self.keep {
            self.buf.clear();
            self.start = 0;
        }
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!(
                        "timed out after {IO_TIMEOUT:?} while {context}; received so far: {}",
                        preview(self.unread())
                    )
                }
                Err(e) => panic!(
                    "read error while {context}: {e}; received so far: {}",
                    preview(self.unread())
                ),
            }
        }
    }

    /// One CRLF-terminated line (without the CRLF). Bare LF or bare CR → panic.
    fn line(&mut self, context: &str) -> Vec<u8> {
        loop {
            let unread = &self.buf[self.start..];
            if let Some(i) = unread.iter().position(|&b| b == b'\n') {
                assert!(
                    i > 0 && unread[i - 1] == b'\r',
                    "bare LF while {context}: {}",
                    preview(&unread[..=i])
                );
                let line = unread[..i - 1].to_vec();
                assert!(
                    !line.contains(&b'\r'),
                    "bare CR while {context}: {}",
                    preview(&line)
                );
                self.start += i + 1;
                return line;
            }
            assert!(
                unread.len() <= RESPONSE_HEAD_MAX,
                "line longer than {RESPONSE_HEAD_MAX} bytes while {context}"
            );
            if self.fill(context) == 0 {
                panic!(
                    "connection closed while {context}; received: {}",
                    preview(self.unread())
                );
            }
        }
    }

    /// Exactly `n` bytes.
    fn exact(&mut self, n: usize, context: &str) -> Vec<u8> {
        while self.buf.len() - self.start < n {
            if self.fill(context) == 0 {
                panic!(
                    "connection closed after {} of {n} bytes while {context}",
                    self.buf.len() - self.start
                );
            }
        }
        let out = self.buf[self.start..self.start + n].to_vec();
        self.start += n;
        out
    }

    /// Reads one response. `Expect::NoBody` for answers to HEAD. Interim (1xx) responses
    /// are returned like any other; the caller reads again for the final one.
    pub fn read_response(&mut self, expect: Expect) -> Response {
        let status_line = self.line("reading a status line");
        let (version, status, reason) = parse_status_line(&status_line);
        let mut headers = Vec::new();
        let mut head_bytes = status_line.len();
        loop {
            let line = self.line("reading response header fields");
            if line.is_empty() {
                break;
            }
            head_bytes += line.len() + 2;
            assert!(head_bytes <= RESPONSE_HEAD_MAX, "response head too large");
            headers.push(parse_field_line(&line));
        }
        let mut response = Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
            chunked: false,
            close_delimited: false,
        };
        let no_body = expect == Expect::NoBody
            || (100..200).contains(&status)
            || status == 204
            || status == 304;
        let te = response.header_all("transfer-encoding");
        let cl = response.header_all("content-length");
        if (100..200).contains(&status) || status == 204 {
            assert!(
                te.is_empty() && cl.is_empty(),
                "a {status} response must not carry Content-Length or Transfer-Encoding:\n{}",
                response.summary()
            );
        }
        assert!(
            te.is_empty() || cl.is_empty(),
            "response has both Transfer-Encoding and Content-Length:\n{}",
            response.summary()
        );
        assert!(
            cl.len() <= 1,
            "response has {} Content-Length fields:\n{}",
            cl.len(),
            response.summary()
        );
        let length = cl.first().map(|v| {
            assert!(
                !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()),
                "invalid Content-Length {v:?}"
            );
            v.parse::<usize>().expect("Content-Length fits usize")
        });
        if no_body {
            return response;
        }
        if !te.is_empty() {
            assert!(
                te.len() == 1 && te[0].eq_ignore_ascii_case("chunked"),
                "unexpected Transfer-Encoding {te:?}"
            );
            response.chunked = true;
            response.body = self.chunked_body();
        } else if let Some(n) = length {
            response.body = self.exact(n, "reading a Content-Length body");
        } else {
            response.close_delimited = true;
            loop {
                let n = self.fill_until_eof("reading a close-delimited body");
                if n == 0 {
                    break;
                }
            }
            response.body = self.buf[self.start..].to_vec();
            self.start = self.buf.len();
        }
        response
    }

    /// Reads one response like `read_response` and also returns its bytes exactly as they
    /// arrived (status line through the end of the body), e.g. to feed a linter.
    pub fn read_response_raw(&mut self, expect: Expect) -> (Response, Vec<u8>) {
        let from = self.start;
        self.keep = true;
        let r = self.read_response(expect);
        self.keep = false;
        (r, self.buf[from..self.start].to_vec())
    }

    fn fill_until_eof(&mut self, context: &str) -> usize {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if is_reset(&e) => return 0,
                Err(e) => panic!("read error while {context}: {e}"),
            }
        }
    }

    fn chunked_body(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line = self.line("reading a chunk size");
            let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
            let size_text = std::str::from_utf8(size_text).expect("chunk size is ASCII");
            assert!(
                !size_text.is_empty() && size_text.bytes().all(|b| b.is_ascii_hexdigit()),
                "invalid chunk size line {:?}",
                preview(&line)
            );
            let size = usize::from_str_radix(size_text, 16).expect("chunk size fits usize");
            if size == 0 {
                loop {
                    let trailer = self.line("reading the trailer section");
                    if trailer.is_empty() {
                        return body;
                    }
                    parse_field_line(&trailer);
                }
            }
            body.extend(self.exact(size, "reading chunk data"));
            let end = self.exact(2, "reading the CRLF after chunk data");
            assert_eq!(end, b"\r\n", "chunk data not followed by CRLF");
        }
    }

    /// Asserts that nothing more arrives and the server closes the connection (EOF, or a
    /// reset once everything before it was received) within `IO_TIMEOUT`.
    pub fn expect_closed(&mut self) {
        assert!(
            self.unread().is_empty(),
            "unexpected bytes after the last response: {}",
            preview(self.unread())
        );
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => panic!(
                    "expected the connection to close, but received: {}",
                    preview(&chunk[..n])
                ),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if is_reset(&e) => return,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("the server did not close the connection within {IO_TIMEOUT:?}")
                }
                Err(e) => panic!("read error while waiting for the close: {e}"),
            }
        }
    }

    /// Reads everything until the server closes (bounded), returning the raw bytes.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        loop {
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if is_reset(&e) => break,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!(
                        "the server did not close the connection within {IO_TIMEOUT:?}; \
                         received: {}",
                        preview(self.unread())
                    )
                }
                Err(e) => panic!("read error: {e}"),
            }
        }
        let out = self.buf[self.start..].to_vec();
        self.start = self.buf.len();
        out
    }

    /// Reads up to `max` body bytes directly from the socket (for slow/partial readers).
    pub fn read_some(&mut self, max: usize) -> Vec<u8> {
        if !self.unread().is_empty() {
            let n = self.unread().len().min(max);
            let out = self.buf[self.start..self.start + n].to_vec();
            self.start += n;
            return out;
        }
        let mut chunk = vec![0u8; max];
        let n = loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => panic!("read error: {e}"),
            }
        };
        chunk.truncate(n);
        chunk
    }

    /// Reads a response head only (status line and fields); the body stays unread.
    pub fn read_head_only(&mut self) -> Response {
        let status_line = self.line("reading a status line");
        let (version, status, reason) = parse_status_line(&status_line);
        let mut headers = Vec::new();
        loop {
            let line = self.line("reading response header fields");
            if line.is_empty() {
                break;
            }
            headers.push(parse_field_line(&line));
        }
        Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
            chunked: false,
            close_delimited: false,
        }
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

/// `HTTP/1.x SP 3DIGIT SP reason`, strictly.
fn parse_status_line(line: &[u8]) -> (String, u16, String) {
    let text = std::str::from_utf8(line)
        .unwrap_or_else(|_| panic!("status line is not UTF-8: {}", preview(line)));
    let bad = || -> ! { panic!("malformed status line: {}", preview(line)) };
    let (version, rest) = text.split_once(' ').unwrap_or_else(|| bad());
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        bad();
    }
    let (code, reason) = rest.split_once(' ').unwrap_or_else(|| bad());
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        bad();
    }
    if reason
        .bytes()
        .any(|b| b != b'\t' && (b < 0x20 || b == 0x7f))
    {
        bad();
    }
    let status: u16 = code.parse().unwrap_or_else(|_| bad());
    if !(100..=599).contains(&status) {
        bad();
    }
    (version.to_string(), status, reason.to_string())
}

/// `token ":" OWS value OWS`, strictly (no obs-fold, no CTLs in the value).
fn parse_field_line(line: &[u8]) -> (String, String) {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .unwrap_or_else(|| panic!("field line without a colon: {}", preview(line)));
    let name = &line[..colon];
    assert!(
        !name.is_empty() && name.iter().all(|&b| is_tchar(b)),
        "invalid field name (or obs-fold) in: {}",
        preview(line)
    );
    let value = &line[colon + 1..];
    assert!(
        value
            .iter()
            .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)),
        "control byte in field value: {}",
        preview(line)
    );
    let value = String::from_utf8_lossy(value)
        .trim_matches([' ', '\t'])
        .to_string();
    (String::from_utf8_lossy(name).into_owned(), value)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

// ---------------------------------------------------------------------------------------
// Requests and dates
// ---------------------------------------------------------------------------------------

/// A minimal HTTP/1.1 GET.
pub fn get(path: &str) -> String {
    request("GET", path, "")
}

/// An HTTP/1.1 request without a body; `extra` holds complete field lines (`"A: b\r\n"`).
pub fn request(method: &str, path: &str, extra: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n")
}

/// Seconds since the epoch of a `SystemTime`.
pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// An IMF-fixdate (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses an IMF-fixdate strictly; `None` if it is not one.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split(' ').collect();
    if parts.len() != 6 || parts[5] != "GMT" || parts[1].len() != 2 || parts[3].len() != 4 {
        return None;
    }
    let wkday = parts[0].strip_suffix(',')?;
    let d: i64 = parts[1].parse().ok()?;
    let m = MONTHS.iter().position(|&x| x == parts[2])? as i64 + 1;
    let y: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4]
        .split(':')
        .map(|p| if p.len() == 2 { p.parse().ok() } else { None })
        .collect::<Option<_>>()?;
    if hms.len() != 3 || hms[0] > 23 || hms[1] > 59 || hms[2] > 60 || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    if DAYS[days.rem_euclid(7) as usize] != wkday {
        return None;
    }
    Some(days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

// Howard Hinnant's civil-calendar algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Panics unless `Date` is a valid IMF-fixdate within a minute of now and `Server` is weir.
pub fn assert_date_and_server(r: &Response) {
    let date = r.expect_header("date");
    let secs = parse_http_date(date)
        .unwrap_or_else(|| panic!("Date {date:?} is not an IMF-fixdate:\n{}", r.summary()));
    let now = unix_seconds(SystemTime::now());
    assert!(
        (secs - now).abs() <= 60,
        "Date {date:?} is more than a minute from now ({})",
        http_date(now)
    );
    assert_eq!(
        r.expect_header("server"),
        "weir",
        "Server field:\n{}",
        r.summary()
    );
}

impl Weir {
    /// Like `start_with_config_and_files`, with `workers` worker threads.
    pub fn start_with_config_files_and_workers(
        conf: &str,
        files: &[(&str, &str)],
        workers: usize,
    ) -> Weir {
        Weir::start_with(workers, Some(conf), files)
    }
}

/// A loopback port for a server a test starts by itself, claimed like the harness's own
/// (held until the claim drops).
pub fn claim_port() -> PortClaim {
    free_port()
}
