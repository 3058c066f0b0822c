//! The end-to-end harness: a temporary document root, the real `weir` binary on a loopback
//! port, and a raw HTTP/1.1 client whose responses the test kit's strict reader
//! (`weir_testkit::response`) parses.
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

use weir_testkit::date::{http_date, parse_imf_fixdate};
use weir_testkit::response::{self, Framing};
// Each test binary uses a part of these (e2e_attack none of `Delimiter`).
#[allow(unused_imports)]
pub use weir_testkit::response::{preview, Delimiter, Response};

/// Longest any single socket read or write may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the server may take to accept connections after it was started.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the server may take to exit after SIGTERM/SIGINT (with nothing in flight).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

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

/// How [`Weir::start_from`] starts `weir serve`.
pub struct Start<'a> {
    /// `--workers`.
    pub workers: usize,
    /// The configuration file's text (`{root}` and `{base}` replaced), or `--root`.
    pub conf: Option<&'a str>,
    /// Files written in `{base}` first: (file name, contents).
    pub files: &'a [(&'a str, &'a str)],
    /// Without `conf`: start in the document root and pass no `--root`.
    pub in_root_dir: bool,
    /// Extra environment for the server process.
    pub env: &'a [(&'a str, &'a str)],
    /// The server's descriptor limit (soft and hard, as `ulimit -n` sets it).
    pub nofile: Option<u64>,
}

impl Default for Start<'_> {
    fn default() -> Self {
        Start {
            workers: 1,
            conf: None,
            files: &[],
            in_root_dir: false,
            env: &[],
            nofile: None,
        }
    }
}

/// Sets the child's `RLIMIT_NOFILE` to `limit` between fork and exec.
fn limit_descriptors(cmd: &mut Command, limit: u64) {
    use std::os::unix::process::CommandExt;
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits; the
    // closure reads a copy of a plain struct.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

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

    fn start_with_options(
        workers: usize,
        conf: Option<&str>,
        files: &[(&str, &str)],
        in_root_dir: bool,
    ) -> Weir {
        Weir::start_from(Start {
            workers,
            conf,
            files,
            in_root_dir,
            ..Start::default()
        })
    }

    /// `weir serve` as `how` says: the constructors above cover the common cases.
    pub fn start_from(how: Start<'_>) -> Weir {
        let Start {
            workers,
            conf,
            files,
            in_root_dir,
            env,
            nofile,
        } = how;
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
            cmd.envs(env.iter().copied());
            if let Some(limit) = nofile {
                limit_descriptors(&mut cmd, limit);
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

/// What the response reader must know of the request a response answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// An HTTP/1.1 request other than HEAD.
    Body,
    /// A HEAD: the response has no body, whatever its fields say.
    NoBody,
    /// An HTTP/1.0 request other than HEAD: never a chunked answer, and the close may
    /// delimit the body.
    Http10,
}

impl Expect {
    /// What to expect of the answer to the raw request at the start of `request`.
    pub fn of(request: &[u8]) -> Expect {
        let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
        if line.starts_with(b"HEAD ") {
            Expect::NoBody
        } else if line.trim_ascii_end().ends_with(b" HTTP/1.0") {
            Expect::Http10
        } else {
            Expect::Body
        }
    }

    fn framing(self) -> Framing {
        Framing {
            head: self == Expect::NoBody,
            http10: self == Expect::Http10,
            close_ok: self == Expect::Http10,
        }
    }
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
        self.read_more(context, false)
    }

    /// `fill`; with `reset_is_eof`, a reset counts as the end of the connection.
    fn read_more(&mut self, context: &str, reset_is_eof: bool) -> usize {
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
                Err(e) if reset_is_eof && is_reset(&e) => return 0,
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

    /// Reads one response, parsed by the test kit's strict reader (any rule it breaks
    /// fails the test). `Expect` says what the reader must know of the request. Interim
    /// (1xx) responses are returned like any other; the caller reads again for the final
    /// one.
    pub fn read_response(&mut self, expect: Expect) -> Response {
        let framing = expect.framing();
        loop {
            match response::next(self.unread(), framing) {
                Ok(Some((r, used))) => {
                    self.start += used;
                    return r;
                }
                Ok(None) => {}
                Err(e) => self.broken(&e),
            }
            if self.fill_or_eof("reading a response") == 0 {
                match response::at_close(self.unread(), framing) {
                    Ok(Some(r)) => {
                        self.start = self.buf.len();
                        return r;
                    }
                    Ok(None) => panic!(
                        "connection closed while reading a response; received: {}",
                        preview(self.unread())
                    ),
                    Err(e) => self.broken(&e),
                }
            }
        }
    }

    fn broken(&self, why: &str) -> ! {
        panic!(
            "not a valid response: {why}; received: {}",
            preview(self.unread())
        )
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

    /// Like `fill`, with a reset taken as the end of the connection (for a body the close
    /// delimits, the server may reset rather than close once everything was sent).
    fn fill_or_eof(&mut self, context: &str) -> usize {
        self.read_more(context, true)
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

    /// Reads a response head only (status line and fields), checked like a HEAD's
    /// answer; the body stays unread.
    pub fn read_head_only(&mut self) -> Response {
        let head = Framing {
            head: true,
            ..Framing::default()
        };
        loop {
            let unread = self.unread();
            if let Some(end) = unread.windows(4).position(|w| w == b"\r\n\r\n") {
                match response::next(&unread[..end + 4], head) {
                    Ok(Some((r, used))) => {
                        self.start += used;
                        return r;
                    }
                    // Only a 408 has a body even for a HEAD, and it is not what a caller
                    // reading a head alone expects.
                    Ok(None) => self.broken("a head alone is not a whole response"),
                    Err(e) => self.broken(&e),
                }
            }
            if let Err(e) = response::next(unread, head) {
                self.broken(&e);
            }
            if self.fill("reading a response head") == 0 {
                panic!(
                    "connection closed while reading a response head; received: {}",
                    preview(self.unread())
                );
            }
        }
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
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

/// Panics unless `Date` is a valid IMF-fixdate within a minute of now and `Server` is weir.
pub fn assert_date_and_server(r: &Response) {
    let date = r.expect_header("date");
    let secs = parse_imf_fixdate(date)
        .unwrap_or_else(|| panic!("Date {date:?} is not an IMF-fixdate:\n{r}"));
    let now = unix_seconds(SystemTime::now());
    assert!(
        (secs - now).abs() <= 60,
        "Date {date:?} is more than a minute from now ({})",
        http_date(now)
    );
    assert_eq!(r.expect_header("server"), "weir", "Server field:\n{r}");
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
