//! The language the server core and its driver speak: `Input`s in, `Effect`s out.
//!
//! Everything the shell does is an `Effect` the core asked for, and every result goes back
//! as an `Input`. Streams are completion-based with at most one operation outstanding per
//! direction: the core emits `Read { conn, max }` and waits for `Received`, `PeerClosed` or
//! `ConnFailed` before it emits the next `Read` for that connection; it emits `Send { conn,
//! chunk }` and waits for `Sent` before the next `Send`. That is the back-pressure contract:
//! the shell never holds more than one chunk per stream, and a slow peer slows the core
//! down instead of growing a buffer.
//!
//! An effect that expects an answer carries a `Token`; its answer is `Completed { token, .. }`
//! and what it creates is named by that token for life (`FileId(token)`).

use core::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;

use crate::chunk::Chunk;
use crate::config::ConfigRef;
pub use crate::document::listing::DirEntry;
use crate::ids::{ConnId, FileId, ListenerId, StreamId, Token};
pub use crate::rules::auth::Password;
use crate::server::status::ServerStatus;
pub use crate::service::Availability;
use crate::time::UnixTime;

/// Something that happened, reported by the driver.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    /// The shell accepted a connection on a listener and named it `conn`.
    Accepted {
        /// The listener it arrived on.
        listener: ListenerId,
        /// The shell's name for the new connection.
        conn: ConnId,
        /// The client's address.
        peer: SocketAddr,
        /// Our address.
        local: SocketAddr,
    },
    /// Bytes read for an outstanding `Read` (never empty, never more than its `max`).
    Received {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        data: Bytes,
    },
    /// An outstanding `Read` found the end of the stream.
    PeerClosed {
        /// The connection.
        conn: ConnId,
    },
    /// An outstanding `Send` wrote the first `n` bytes of its chunk (`n ≥ 1`; the core sends
    /// the rest again if `n` is short).
    Sent {
        /// The connection.
        conn: ConnId,
        /// How many bytes of the chunk were written.
        n: u64,
    },
    /// The connection broke (reset, or any error from a read or a send). The shell has not
    /// closed it yet; the core answers with `Close`.
    ConnFailed {
        /// The connection.
        conn: ConnId,
        /// What went wrong.
        error: IoError,
    },
    /// An effect with a token finished.
    Completed {
        /// The effect's token.
        token: Token,
        /// Its outcome.
        result: Completion,
    },
    /// The process ended (reported once, after it was reaped).
    Exited {
        /// The process.
        stream: StreamId,
        /// How it ended.
        status: ExitStatus,
    },
    /// Bytes read for an outstanding `StreamRead` (never empty, never more than its `max`).
    StreamReceived {
        /// The stream.
        stream: StreamId,
        /// Which of its channels.
        channel: Channel,
        /// The bytes.
        data: Bytes,
    },
    /// An outstanding `StreamRead` found the end of that channel.
    StreamEof {
        /// The stream.
        stream: StreamId,
        /// Which of its channels.
        channel: Channel,
    },
    /// An outstanding `StreamWrite` wrote the first `n` bytes of its data (`n ≥ 1`; the
    /// core writes the rest again if `n` is short).
    StreamWritten {
        /// The stream.
        stream: StreamId,
        /// How many bytes were written.
        n: u64,
    },
    /// A process's standard input can take no more (it closed its end: `EPIPE`): any
    /// outstanding `StreamWrite` is over and the pipe is closed, while its output is still
    /// read.
    StreamWriteClosed {
        /// The process.
        stream: StreamId,
    },
    /// A socket broke (reset, or any error from a read or a write). The shell has not
    /// closed it yet; the core answers with `StreamClose`.
    StreamFailed {
        /// The stream.
        stream: StreamId,
        /// What went wrong.
        error: IoError,
    },
    /// Whether a service can take requests now, as its supervisor published it (the
    /// control loop tells every worker when it changes).
    ServiceState {
        /// The service's name.
        service: String,
        /// Ready, or down for about how long.
        availability: Availability,
    },
    /// A new configuration (SIGHUP): requests that start from now on use it; a request
    /// in flight keeps the one it started under, to its end.
    Reload(ConfigRef),
    /// Stop: accept nothing new, finish what is in flight within the grace time, then exit.
    Shutdown,
}

/// Where a `Connect` goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UpstreamAddr {
    /// A Unix-domain stream socket.
    Unix(PathBuf),
    /// A TCP host (a name or an address literal) and port.
    Tcp(String, u16),
}

/// One of a stream's read channels. A socket has one; a process two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    /// A socket's bytes; a process's standard output (a CGI response).
    Main,
    /// A process's standard error: lines for the error log.
    Errors,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

/// What to run for a `Spawn`: no shell, nothing inherited.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpawnSpec {
    /// The program (absolute path).
    pub program: PathBuf,
    /// Arguments after the program name (`argv[1..]`).
    pub args: Vec<Vec<u8>>,
    /// The whole environment: the process gets these variables and no others.
    pub env: Vec<(Vec<u8>, Vec<u8>)>,
    /// Working directory.
    pub cwd: PathBuf,
}

/// The outcome of an effect that carried a token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Completion {
    /// `Open` succeeded: the file (or directory) is open as `FileId(token)`.
    Opened(FileMeta),
    /// `ReadFile` succeeded: the bytes read (fewer than asked only at end of file).
    Data(Bytes),
    /// `Spawn` succeeded: the process runs as the stream `StreamId(token)`, in a process
    /// group of its own, with pipes on its standard input (`StreamWrite`), output
    /// (`Channel::Main`) and error (`Channel::Errors`).
    Spawned,
    /// `ReadDir` succeeded: the directory's entries (at most `LISTING_MAX`, unordered).
    Listing(Vec<DirEntry>),
    /// `Connect` succeeded: the stream is open as `StreamId(token)` until `StreamClose`.
    Connected,
    /// `Status`: the whole server's status as last published.
    Status(Box<ServerStatus>),
    /// `VerifyPassword`: whether the password matches the hash
    /// (`crate::rules::auth::verify`). (A `VerifyPassword` the shell could not carry out
    /// is answered `Failed`, and its request 503.)
    Verified(bool),
    /// The operation failed.
    Failed(IoError),
}

/// The most entries a `ReadDir` reports; a larger directory is listed in part (the shell
/// stops reading), which bounds the memory a listing can take.
pub const LISTING_MAX: usize = 10_000;

/// What the shell learned from `fstat` on an opened file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileMeta {
    /// Regular file, directory or something else.
    pub kind: FileKind,
    /// Size in bytes.
    pub len: u64,
    /// Last modification, whole seconds.
    pub mtime: UnixTime,
    /// Inode number (with `len` and `mtime`, it tells versions of a file apart).
    pub inode: u64,
}

/// The type of an opened file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// Anything else (device, socket, FIFO): never served.
    Other,
}

/// The errors the core tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoError {
    /// `ENOENT`, or `ENOTDIR` on a path component.
    NotFound,
    /// `EACCES`, `EPERM`.
    PermissionDenied,
    /// The peer reset the connection, or the pipe broke.
    Reset,
    /// The OS is out of descriptors or memory.
    Exhausted,
    /// Nothing listens at the address (`ECONNREFUSED`), or its backlog is full (`EAGAIN`
    /// on a Unix socket).
    Refused,
    /// Anything else.
    Other,
}

/// Something the core asks the driver to do.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Read at most `max` bytes from `conn`, when it has some (answer: `Received`,
    /// `PeerClosed` or `ConnFailed`).
    Read {
        /// The connection.
        conn: ConnId,
        /// The most bytes to deliver.
        max: usize,
    },
    /// Write `chunk` to `conn` (answer: `Sent` or `ConnFailed`).
    Send {
        /// The connection.
        conn: ConnId,
        /// What to write (for `Chunk::File`, from the open file, e.g. with `sendfile`).
        chunk: Chunk,
    },
    /// Shut down the write side of `conn` (no answer).
    ShutdownWrite {
        /// The connection.
        conn: ConnId,
    },
    /// Close `conn` and forget it; any outstanding read or send on it is abandoned, and no
    /// input about it may follow.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Answer `conn` — a connection the shell just reported `Accepted`, which the core will
    /// not take (`limit connections=` reached, and no idle connection to close for it) —
    /// and close it, without another word about it (no answer). The shell discards what
    /// the client already sent (closing on unread bytes would make the kernel reset the
    /// connection under the answer), writes as much of `answer` as the socket takes at once
    /// (all of it on a fresh socket: it is a few hundred bytes), shuts down its sending
    /// side and closes it. The core has forgotten the connection already.
    Refuse {
        /// The connection.
        conn: ConnId,
        /// The whole answer: a 503 that says `Connection: close`.
        answer: Bytes,
    },
    /// Stop accepting connections (shutting down).
    PauseAccept,
    /// Accept connections again.
    ResumeAccept,
    /// Open `path` read-only and `fstat` it (answer: `Completed { token, Opened | Failed }`);
    /// on success the open file is `FileId(token)` until `CloseFile`.
    Open {
        /// Names the request and the file.
        token: Token,
        /// Absolute path.
        path: PathBuf,
    },
    /// Read `len` bytes of an open file from `offset` (answer: `Completed { token, Data |
    /// Failed }`; fewer bytes only at end of file). The document cache fills itself this way.
    ReadFile {
        /// Names the request.
        token: Token,
        /// The open file.
        file: FileId,
        /// Where to start.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
    /// List the directory `path`: each entry's name, and (following symbolic links) whether
    /// it is a directory, its size and its mtime; entries whose metadata cannot be read are
    /// left out (answer: `Completed { token, Listing | Failed }`).
    ReadDir {
        /// Names the request.
        token: Token,
        /// Absolute path of the directory.
        path: PathBuf,
    },
    /// Close an open file (no answer).
    CloseFile {
        /// The file.
        file: FileId,
    },
    /// Start a process (answer: `Completed { token, Spawned | Failed }`). `Failed(NotFound)`
    /// when the program does not exist, `PermissionDenied` when it may not be run.
    Spawn {
        /// Names the request and, for life, the process (`StreamId(token)`).
        token: Token,
        /// What to run.
        spec: SpawnSpec,
    },
    /// Send SIGKILL to the process's whole group (no answer; `Exited` follows).
    Kill {
        /// The process.
        stream: StreamId,
    },
    /// Open a stream to `addr` (answer: `Completed { token, Connected | Failed }`); on
    /// success the stream is `StreamId(token)` until `StreamClose`.
    Connect {
        /// Names the stream for life.
        token: Token,
        /// Where to connect.
        addr: UpstreamAddr,
    },
    /// Read at most `max` bytes from one channel of the stream (answer: `StreamReceived`,
    /// `StreamEof`, or for a socket `StreamFailed`). At most one is outstanding per
    /// channel. A process's pipe that fails to read is reported as its end.
    StreamRead {
        /// The stream.
        stream: StreamId,
        /// Which channel (`Main` for a socket).
        channel: Channel,
        /// The most bytes to deliver.
        max: usize,
    },
    /// Write `data` to the stream — a socket, or a process's standard input (answer:
    /// `StreamWritten`; `StreamFailed` for a socket, `StreamWriteClosed` for a process).
    /// At most one is outstanding per stream.
    StreamWrite {
        /// The stream.
        stream: StreamId,
        /// The bytes.
        data: Bytes,
    },
    /// Close the stream's writing side (no answer): a process's standard input is closed,
    /// so the script sees end of file. An outstanding write is abandoned.
    StreamShutdownWrite {
        /// The stream.
        stream: StreamId,
    },
    /// Close the stream and forget it; outstanding operations are abandoned and no input
    /// about it may follow. For a process: its pipes are closed; if it has not exited yet,
    /// the shell still reaps it when it does (the core sends `Kill` first when it wants
    /// it gone).
    StreamClose {
        /// The stream.
        stream: StreamId,
    },
    /// Gather the whole server's status (every worker's counters, every service's state)
    /// for a `status` rule (answer: `Completed { token, Status }`).
    Status {
        /// Names the request.
        token: Token,
    },
    /// Check a password against a stored hash: `crate::rules::auth::verify(&hash,
    /// &password.0)`, which is pure but slow (a cost-12 bcrypt takes about 250 ms), so the
    /// shell runs it off its event loop (answer: `Completed { token, Verified }`). The core
    /// keeps at most `server::VERIFY_IN_FLIGHT_MAX` of them outstanding.
    VerifyPassword {
        /// Names the check.
        token: Token,
        /// The stored hash (htpasswd format).
        hash: String,
        /// The password the client sent.
        password: Password,
    },
    /// A service answered a request whole (END_REQUEST): its supervisor takes that as
    /// proof that the service's processes can run (`crate::service`). No answer.
    ServiceAnswered {
        /// The service's name.
        service: String,
    },
    /// Append a line to the access log (no answer; the shell waits rather than drop a line
    /// while its logger is behind, and counts the lines the file itself refuses, on a full
    /// disk, as `ServerStatus::access_log_lost`).
    AccessLog {
        /// The line, without its newline.
        line: String,
    },
    /// Write a line to the error log.
    ErrorLog {
        /// The line, without its newline.
        line: String,
    },
    /// Exit the process with `code`; every connection and file has been closed.
    Exit {
        /// Process exit status.
        code: i32,
    },
}
