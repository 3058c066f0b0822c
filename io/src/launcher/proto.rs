//! The messages between weir's control loop and the launcher, and their encoding.
//!
//! Both ends are the same binary, so the encoding needs no versioning and no
//! self-description: it is the smallest thing that frames and cannot be misread. A frame
//! is a 4-byte big-endian body length, then the body: a one-byte tag naming the variant,
//! then its fields in declaration order.
//!
//! ```text
//!   u8, u32, u64, i32      fixed width, big-endian
//!   bytes                  u32 length, then the bytes (a path is its bytes, a string its UTF-8)
//!   Option<T>              u8 0 (None) or 1 (Some), then T
//!   list                   u32 count, then the items
//! ```
//!
//! Decoding never panics and never trusts a length: every read is checked against what is
//! left of the body, lists grow as items actually decode (a count of four billion costs
//! nothing until the bytes are there), a body longer than `FRAME_MAX` is refused before
//! anything is buffered for it, and bytes left over after the last field are an error. A
//! decoding error is a bug or corruption at the other end, never a normal event, so both
//! ends treat it as the end of the conversation.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The largest body either end sends or accepts: far more than any real request (a
/// service's arguments and environment), small enough that garbage cannot make the
/// reader buffer much.
pub const FRAME_MAX: usize = 1 << 20;

/// Size of the length prefix.
const PREFIX: usize = 4;

/// What weir asks the launcher to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Create a unix listening socket at `path` for `service` and keep it: it becomes fd 0
    /// of each process of the service. A stale socket file at `path` is removed first.
    /// The file gets permission bits `mode` and, when `owner` (uid, gid) is given, that
    /// owner — whoever must connect to it (weir's workers after they drop root) needs
    /// write permission on it. Answered by `Report::Listening`.
    Listen {
        service: String,
        path: PathBuf,
        backlog: u32,
        mode: u32,
        owner: Option<(u32, u32)>,
    },
    /// Close the service's listening socket and remove its file. Not answered.
    Unlisten { service: String },
    /// Start a process of `service`: `program` (an absolute path) with `argv[0]` = the
    /// program and `args` after it, exactly the environment `env`, working directory `cwd`
    /// (absolute), as `user` (uid, gid) when given and the launcher is root. `id` names the
    /// process in later requests and reports. Answered by `Spawned` or `SpawnFailed`.
    Spawn {
        id: u64,
        service: String,
        program: PathBuf,
        args: Vec<Vec<u8>>,
        env: Vec<(Vec<u8>, Vec<u8>)>,
        cwd: PathBuf,
        user: Option<(u32, u32)>,
    },
    /// SIGKILL to the process's group. Its `Exited` follows.
    Kill { id: u64 },
    /// SIGTERM to the process's group, then SIGKILL after `run::STOP_GRACE` if it is still
    /// there. Its `Exited` follows.
    Stop { id: u64 },
}

/// What the launcher tells weir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// The answer to `Listen`: `None` when the socket is listening, else the errno.
    Listening { service: String, error: Option<i32> },
    /// The process `id` exists and has executed its program.
    Spawned { id: u64, pid: u32 },
    /// The process `id` could not be started: `errno` from the step that failed (the
    /// launcher's error log line says which step it was).
    SpawnFailed { id: u64, errno: i32 },
    /// The process `id` has exited (reported once, after it was reaped): `code` for a
    /// normal exit, `signal` when a signal ended it.
    Exited {
        id: u64,
        code: Option<i32>,
        signal: Option<i32>,
    },
}

/// Why a frame could not be encoded or decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtoError {
    /// The body ended inside a field.
    Truncated,
    /// A body (or a field) longer than `FRAME_MAX`.
    TooLong(u64),
    /// A tag no message variant has.
    UnknownTag(u8),
    /// An `Option` flag other than 0 or 1.
    BadFlag(u8),
    /// A string that is not UTF-8.
    NotUtf8,
    /// Bytes after the last field.
    Trailing(usize),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::Truncated => write!(f, "a frame ends inside a field"),
            ProtoError::TooLong(n) => write!(f, "a frame of {n} bytes (at most {FRAME_MAX})"),
            ProtoError::UnknownTag(t) => write!(f, "unknown message tag {t}"),
            ProtoError::BadFlag(b) => write!(f, "option flag {b} (0 or 1 expected)"),
            ProtoError::NotUtf8 => write!(f, "a string that is not UTF-8"),
            ProtoError::Trailing(n) => write!(f, "{n} bytes after the last field"),
        }
    }
}

impl std::error::Error for ProtoError {}

impl From<ProtoError> for io::Error {
    fn from(e: ProtoError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// A message with a frame encoding.
pub trait Message: Sized {
    /// Appends the body (tag and fields) to `w`.
    fn put(&self, w: &mut Vec<u8>);
    /// Reads the body (tag and fields) from `r`.
    fn get(r: &mut Body<'_>) -> Result<Self, ProtoError>;

    /// Appends the whole frame (length prefix and body) to `out`. On error `out` is as it
    /// was.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProtoError> {
        let start = out.len();
        out.extend_from_slice(&[0; PREFIX]);
        self.put(out);
        let len = out.len() - start - PREFIX;
        if len > FRAME_MAX {
            out.truncate(start);
            return Err(ProtoError::TooLong(len as u64));
        }
        // FRAME_MAX fits in a u32, so this conversion is exact.
        let prefix = (len as u32).to_be_bytes();
        out[start..start + PREFIX].copy_from_slice(&prefix);
        Ok(())
    }

    /// Decodes one body (without its length prefix); all of it must be used.
    fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Body { rest: body };
        let m = Self::get(&mut r)?;
        match r.rest.len() {
            0 => Ok(m),
            n => Err(ProtoError::Trailing(n)),
        }
    }
}

const LISTEN: u8 = 1;
const UNLISTEN: u8 = 2;
const SPAWN: u8 = 3;
const KILL: u8 = 4;
const STOP: u8 = 5;

const LISTENING: u8 = 1;
const SPAWNED: u8 = 2;
const SPAWN_FAILED: u8 = 3;
const EXITED: u8 = 4;

impl Message for Request {
    fn put(&self, w: &mut Vec<u8>) {
        match self {
            Request::Listen {
                service,
                path,
                backlog,
                mode,
                owner,
            } => {
                w.push(LISTEN);
                put_bytes(w, service.as_bytes());
                put_path(w, path);
                put_u32(w, *backlog);
                put_u32(w, *mode);
                put_pair(w, *owner);
            }
            Request::Unlisten { service } => {
                w.push(UNLISTEN);
                put_bytes(w, service.as_bytes());
            }
            Request::Spawn {
                id,
                service,
                program,
                args,
                env,
                cwd,
                user,
            } => {
                w.push(SPAWN);
                put_u64(w, *id);
                put_bytes(w, service.as_bytes());
                put_path(w, program);
                put_len(w, args.len());
                for a in args {
                    put_bytes(w, a);
                }
                put_len(w, env.len());
                for (k, v) in env {
                    put_bytes(w, k);
                    put_bytes(w, v);
                }
                put_path(w, cwd);
                put_pair(w, *user);
            }
            Request::Kill { id } => {
                w.push(KILL);
                put_u64(w, *id);
            }
            Request::Stop { id } => {
                w.push(STOP);
                put_u64(w, *id);
            }
        }
    }

    fn get(r: &mut Body<'_>) -> Result<Request, ProtoError> {
        Ok(match r.u8()? {
            LISTEN => Request::Listen {
                service: r.string()?,
                path: r.path()?,
                backlog: r.u32()?,
                mode: r.u32()?,
                owner: r.pair()?,
            },
            UNLISTEN => Request::Unlisten {
                service: r.string()?,
            },
            SPAWN => {
                let id = r.u64()?;
                let service = r.string()?;
                let program = r.path()?;
                let mut args = Vec::new();
                for _ in 0..r.u32()? {
                    args.push(r.bytes()?.to_vec());
                }
                let mut env = Vec::new();
                for _ in 0..r.u32()? {
                    let k = r.bytes()?.to_vec();
                    env.push((k, r.bytes()?.to_vec()));
                }
                Request::Spawn {
                    id,
                    service,
                    program,
                    args,
                    env,
                    cwd: r.path()?,
                    user: r.pair()?,
                }
            }
            KILL => Request::Kill { id: r.u64()? },
            STOP => Request::Stop { id: r.u64()? },
            t => return Err(ProtoError::UnknownTag(t)),
        })
    }
}

impl Message for Report {
    fn put(&self, w: &mut Vec<u8>) {
        match self {
            Report::Listening { service, error } => {
                w.push(LISTENING);
                put_bytes(w, service.as_bytes());
                put_opt_i32(w, *error);
            }
            Report::Spawned { id, pid } => {
                w.push(SPAWNED);
                put_u64(w, *id);
                put_u32(w, *pid);
            }
            Report::SpawnFailed { id, errno } => {
                w.push(SPAWN_FAILED);
                put_u64(w, *id);
                put_i32(w, *errno);
            }
            Report::Exited { id, code, signal } => {
                w.push(EXITED);
                put_u64(w, *id);
                put_opt_i32(w, *code);
                put_opt_i32(w, *signal);
            }
        }
    }

    fn get(r: &mut Body<'_>) -> Result<Report, ProtoError> {
        Ok(match r.u8()? {
            LISTENING => Report::Listening {
                service: r.string()?,
                error: r.opt_i32()?,
            },
            SPAWNED => Report::Spawned {
                id: r.u64()?,
                pid: r.u32()?,
            },
            SPAWN_FAILED => Report::SpawnFailed {
                id: r.u64()?,
                errno: r.i32()?,
            },
            EXITED => Report::Exited {
                id: r.u64()?,
                code: r.opt_i32()?,
                signal: r.opt_i32()?,
            },
            t => return Err(ProtoError::UnknownTag(t)),
        })
    }
}

fn put_u32(w: &mut Vec<u8>, v: u32) {
    w.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(w: &mut Vec<u8>, v: u64) {
    w.extend_from_slice(&v.to_be_bytes());
}

fn put_i32(w: &mut Vec<u8>, v: i32) {
    w.extend_from_slice(&v.to_be_bytes());
}

/// A length or count. One above `FRAME_MAX` cannot fit in a frame anyway, so it is
/// written saturated and `encode` refuses the frame for its size.
fn put_len(w: &mut Vec<u8>, n: usize) {
    put_u32(w, u32::try_from(n).unwrap_or(u32::MAX));
}

fn put_bytes(w: &mut Vec<u8>, b: &[u8]) {
    put_len(w, b.len());
    w.extend_from_slice(b);
}

fn put_path(w: &mut Vec<u8>, p: &Path) {
    put_bytes(w, p.as_os_str().as_bytes());
}

fn put_pair(w: &mut Vec<u8>, p: Option<(u32, u32)>) {
    match p {
        None => w.push(0),
        Some((a, b)) => {
            w.push(1);
            put_u32(w, a);
            put_u32(w, b);
        }
    }
}

fn put_opt_i32(w: &mut Vec<u8>, v: Option<i32>) {
    match v {
        None => w.push(0),
        Some(v) => {
            w.push(1);
            put_i32(w, v);
        }
    }
}

/// What is left of a body being decoded.
#[derive(Debug)]
pub struct Body<'a> {
    rest: &'a [u8],
}

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if n > self.rest.len() {
            return Err(ProtoError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtoError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, ProtoError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, ProtoError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, ProtoError> {
        self.array().map(u64::from_be_bytes)
    }

    fn i32(&mut self) -> Result<i32, ProtoError> {
        self.array().map(i32::from_be_bytes)
    }

    fn bytes(&mut self) -> Result<&'a [u8], ProtoError> {
        let n = self.u32()?;
        // A u32 always fits in usize on the platforms weir builds for (Linux, 64 or 32 bit).
        self.take(n as usize)
    }

    fn string(&mut self) -> Result<String, ProtoError> {
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| ProtoError::NotUtf8)
    }

    fn path(&mut self) -> Result<PathBuf, ProtoError> {
        Ok(PathBuf::from(OsStr::from_bytes(self.bytes()?)))
    }

    fn flag(&mut self) -> Result<bool, ProtoError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(ProtoError::BadFlag(b)),
        }
    }

    fn pair(&mut self) -> Result<Option<(u32, u32)>, ProtoError> {
        if !self.flag()? {
            return Ok(None);
        }
        Ok(Some((self.u32()?, self.u32()?)))
    }

    fn opt_i32(&mut self) -> Result<Option<i32>, ProtoError> {
        if !self.flag()? {
            return Ok(None);
        }
        self.i32().map(Some)
    }
}

/// Bytes read from a stream, cut into frames. Partial frames wait for the rest.
#[derive(Debug, Default)]
pub struct Frames {
    buf: Vec<u8>,
    /// Where the first frame not yet returned starts in `buf`.
    start: usize,
}

impl Frames {
    /// An empty buffer.
    #[must_use]
    pub fn new() -> Frames {
        Frames::default()
    }

    /// Appends bytes read from the stream.
    pub fn extend(&mut self, data: &[u8]) {
        // Compact before growing, so the buffer never holds more than one partial frame
        // plus what the last read brought.
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// True when no bytes are buffered (a stream that ends here ended between frames).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    /// The next complete message, `None` if more bytes are needed. An error leaves the
    /// buffer where it was: framing is lost, and the stream must be abandoned.
    pub fn next<M: Message>(&mut self) -> Result<Option<M>, ProtoError> {
        let pending = &self.buf[self.start..];
        let Some(prefix) = pending.first_chunk::<PREFIX>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > FRAME_MAX {
            return Err(ProtoError::TooLong(len as u64));
        }
        let Some(body) = pending.get(PREFIX..PREFIX + len) else {
            return Ok(None);
        };
        let m = M::decode(body)?;
        self.start += PREFIX + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests() -> Vec<Request> {
        vec![
            Request::Listen {
                service: "mud".into(),
                path: "/run/weir/mud.sock".into(),
                backlog: 128,
                mode: 0o600,
                owner: Some((33, 33)),
            },
            Request::Listen {
                service: String::new(),
                path: PathBuf::new(),
                backlog: u32::MAX,
                mode: 0,
                owner: None,
            },
            Request::Unlisten {
                service: "mud".into(),
            },
            Request::Spawn {
                id: u64::MAX,
                service: "mud".into(),
                program: PathBuf::from(OsStr::from_bytes(b"/usr/bin/weir-mud\xff")),
                args: vec![b"--flag".to_vec(), Vec::new(), vec![0, 1, 255]],
                env: vec![
                    (b"PATH".to_vec(), b"/bin".to_vec()),
                    (Vec::new(), Vec::new()),
                ],
                cwd: "/srv".into(),
                user: Some((1000, 100)),
            },
            Request::Spawn {
                id: 0,
                service: "x".into(),
                program: "/bin/true".into(),
                args: Vec::new(),
                env: Vec::new(),
                cwd: "/".into(),
                user: None,
            },
            Request::Kill { id: 7 },
            Request::Stop { id: 1 << 40 },
        ]
    }

    fn reports() -> Vec<Report> {
        vec![
            Report::Listening {
                service: "mud".into(),
                error: None,
            },
            Report::Listening {
                service: "é".into(),
                error: Some(libc::EADDRINUSE),
            },
            Report::Spawned { id: 3, pid: 4242 },
            Report::SpawnFailed {
                id: 4,
                errno: libc::ENOENT,
            },
            Report::Exited {
                id: 5,
                code: Some(3),
                signal: None,
            },
            Report::Exited {
                id: 6,
                code: None,
                signal: Some(-9),
            },
        ]
    }

    fn frame<M: Message>(m: &M) -> Vec<u8> {
        let mut out = Vec::new();
        m.encode(&mut out).expect("small messages encode");
        out
    }

    #[test]
    fn requests_and_reports_round_trip() {
        for req in requests() {
            let bytes = frame(&req);
            assert_eq!(Request::decode(&bytes[PREFIX..]), Ok(req));
        }
        for rep in reports() {
            let bytes = frame(&rep);
            assert_eq!(Report::decode(&bytes[PREFIX..]), Ok(rep));
        }
    }

    #[test]
    fn frames_are_cut_out_of_any_split() {
        let reqs = requests();
        let mut stream = Vec::new();
        for r in &reqs {
            r.encode(&mut stream).expect("encodes");
        }
        for chunk in [1, 2, 3, 5, 7, 64, stream.len()] {
            let mut frames = Frames::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                frames.extend(piece);
                while let Some(r) = frames.next::<Request>().expect("valid stream") {
                    got.push(r);
                }
            }
            assert_eq!(got, reqs, "pieces of {chunk}");
            assert!(frames.is_empty());
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for req in requests() {
            let bytes = frame(&req);
            let body = &bytes[PREFIX..];
            for cut in 0..body.len() {
                assert_eq!(
                    Request::decode(&body[..cut]),
                    Err(ProtoError::Truncated),
                    "{req:?} cut at {cut}"
                );
            }
        }
        for rep in reports() {
            let bytes = frame(&rep);
            let body = &bytes[PREFIX..];
            for cut in 0..body.len() {
                assert_eq!(Report::decode(&body[..cut]), Err(ProtoError::Truncated));
            }
        }
    }

    #[test]
    fn garbled_bodies_are_typed_errors() {
        assert_eq!(Request::decode(&[0]), Err(ProtoError::UnknownTag(0)));
        assert_eq!(
            Request::decode(&[99, 1, 2]),
            Err(ProtoError::UnknownTag(99))
        );
        assert_eq!(Report::decode(&[200]), Err(ProtoError::UnknownTag(200)));
        // Kill with a byte too many.
        let mut kill = frame(&Request::Kill { id: 1 });
        kill.push(0);
        assert_eq!(
            Request::decode(&kill[PREFIX..]),
            Err(ProtoError::Trailing(1))
        );
        // A Listening whose option flag is 2.
        let mut listening = vec![LISTENING];
        put_bytes(&mut listening, b"s");
        listening.push(2);
        assert_eq!(Report::decode(&listening), Err(ProtoError::BadFlag(2)));
        // A service name that is not UTF-8.
        let mut unlisten = vec![UNLISTEN];
        put_bytes(&mut unlisten, b"\xff\xfe");
        assert_eq!(Request::decode(&unlisten), Err(ProtoError::NotUtf8));
        // A list that claims four billion items and has none.
        let mut spawn = vec![SPAWN];
        put_u64(&mut spawn, 1);
        put_bytes(&mut spawn, b"s");
        put_bytes(&mut spawn, b"/p");
        put_u32(&mut spawn, u32::MAX);
        assert_eq!(Request::decode(&spawn), Err(ProtoError::Truncated));
    }

    #[test]
    fn oversized_frames_are_refused_both_ways() {
        let mut frames = Frames::new();
        frames.extend(&(FRAME_MAX as u32 + 1).to_be_bytes());
        assert_eq!(
            frames.next::<Request>(),
            Err(ProtoError::TooLong(FRAME_MAX as u64 + 1))
        );
        frames.extend(&[0xff; 16]);
        assert!(frames.next::<Request>().is_err(), "the error is sticky");

        let huge = Request::Spawn {
            id: 1,
            service: "s".into(),
            program: "/p".into(),
            args: vec![vec![b'a'; FRAME_MAX]],
            env: Vec::new(),
            cwd: "/".into(),
            user: None,
        };
        let mut out = vec![9];
        assert!(matches!(huge.encode(&mut out), Err(ProtoError::TooLong(_))));
        assert_eq!(out, [9], "a refused frame leaves nothing behind");
    }

    #[test]
    fn garbage_streams_never_panic() {
        // A cheap deterministic byte soup (xorshift): whatever it decodes to, it must be a
        // message, "need more", or a typed error.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let mut frames = Frames::new();
            let mut soup = Vec::new();
            let len = (x % 64) as usize;
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                soup.push(x as u8);
            }
            // Keep lengths small so that some frames are complete.
            if soup.len() >= PREFIX {
                soup[0] = 0;
                soup[1] = 0;
                soup[2] = 0;
            }
            frames.extend(&soup);
            while let Ok(Some(_)) = frames.next::<Request>() {}
            let _ = Report::decode(&soup);
        }
    }
}
