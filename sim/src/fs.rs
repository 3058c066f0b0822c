//! The simulated file system: a tree of files that change, vanish and appear during a run,
//! with real descriptor semantics and a full history for the oracle.
//!
//! # Theory of operation
//!
//! Every write of a file is an atomic replace, as deployments do it (write a temporary
//! file, `rename` it over the old one): it creates a new *version* with a new inode, a new
//! mtime and new content. An `Open` takes a snapshot of the version it found, exactly like
//! a descriptor on a replaced or unlinked file keeps the old inode's bytes, so the
//! server's `Chunk::File` reads always come from the version its `Open` reported.
//!
//! Each version's content is a pure function of its inode (a keyed byte stream), so two
//! versions of one path agree on a byte only by chance (1 in 36): a response body that
//! mixes two versions equals neither, which is what the oracle looks for. Directories do
//! not change; the welcome files and precompressed variants inside them do.
//!
//! The history (path → states with the time each began) is what the reference model reads
//! to know which versions a response may legitimately show: any state the path was in
//! while the request was being served.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rand::seq::IndexedRandom;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use weir_core::document::listing::DirEntry;
use weir_core::server::{Completion, FileKind, FileMeta, IoError};
use weir_core::{FileId, Time, UnixTime};

/// What a path is at some moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// Nothing there.
    Missing,
    /// A regular file; the number is the version's inode.
    File(u64),
    /// A directory (with its inode).
    Dir(u64),
    /// Something the server may not open (mode 000): `EACCES`.
    Denied,
}

/// One version of a regular file.
#[derive(Clone, Debug)]
pub struct Version {
    /// The path it was written at (relative to the root, no leading slash).
    pub path: String,
    /// Its inode.
    inode: u64,
    /// Its length.
    len: usize,
    /// Its bytes, made the first time they are asked for: most versions of a busy file
    /// are replaced before anyone reads them.
    body: std::cell::OnceCell<Bytes>,
    /// Its modification time.
    pub mtime: UnixTime,
}

impl Version {
    /// Its bytes (`content(inode, len)`).
    #[must_use]
    pub fn content(&self) -> &Bytes {
        self.body.get_or_init(|| content(self.inode, self.len))
    }

    /// Its length.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if it is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// An open descriptor: a snapshot of what `Open` found.
#[derive(Clone, Debug)]
pub struct OpenFile {
    /// The inode.
    pub inode: u64,
    /// The path it was opened by (absolute).
    pub path: PathBuf,
    /// Bytes it reads (empty for a directory).
    pub content: Bytes,
}

/// Files that exist at the start (relative to the root). Directories are listed in `DIRS`.
pub const INITIAL_FILES: &[&str] = &[
    "index.html",
    "a.txt",
    "b.html",
    "c.png",
    "d.js",
    "d.js.gz",
    "e.bin",
    "f.sim",
    "empty.txt",
    "docs/index.html",
    "docs/a.txt",
    "docs/a.txt.gz",
    "docs/g.css",
    "sub/x.css",
    "sub/x.css.gz",
    "private/a.txt",
];

/// Paths that come and go during the run, besides the initial files.
pub const APPEARING: &[&str] = &["new.txt", "docs/new.txt", "sub/index.html", "index.htm"];

/// Directories (they never change).
pub const DIRS: &[&str] = &["", "docs", "sub", "private", "cgi-bin"];

/// The file the server may not read.
pub const DENIED: &str = "noperm.txt";

/// The CGI scripts (`cgi-bin/NAME`, see `workload::Script`): regular files that never
/// change; run, each behaves as its name says; served as documents, they are bytes like
/// any other file.
pub const SCRIPT_DIR: &str = "cgi-bin";

/// A script the server may neither read nor run.
pub const DENIED_SCRIPT: &str = "cgi-bin/locked";

/// The simulated file system.
#[derive(Debug)]
pub struct SimFs {
    root: PathBuf,
    now_unix: UnixTime,
    current: BTreeMap<String, State>,
    history: BTreeMap<String, Vec<(Time, State)>>,
    versions: BTreeMap<u64, Version>,
    open: BTreeMap<FileId, OpenFile>,
    closed: BTreeSet<FileId>,
    next_inode: u64,
    file_size_max: usize,
}

impl SimFs {
    /// The initial tree under `root`.
    pub fn new(root: PathBuf, file_size_max: usize, rng: &mut ChaCha8Rng, unix: UnixTime) -> SimFs {
        let mut fs = SimFs {
            root,
            now_unix: unix,
            current: BTreeMap::new(),
            history: BTreeMap::new(),
            versions: BTreeMap::new(),
            open: BTreeMap::new(),
            closed: BTreeSet::new(),
            next_inode: 100,
            file_size_max,
        };
        for d in DIRS {
            let inode = fs.inode();
            fs.set(d, State::Dir(inode), Time(0));
        }
        fs.set(DENIED, State::Denied, Time(0));
        fs.set(DENIED_SCRIPT, State::Denied, Time(0));
        for name in crate::workload::Script::NAMES {
            let age = rng.random_range(0..100_000);
            fs.write(
                &format!("{SCRIPT_DIR}/{name}"),
                rng,
                Time(0),
                UnixTime(unix.0 - age),
            );
        }
        for f in INITIAL_FILES {
            // Files start a little in the past so that If-Modified-Since has room.
            let age = rng.random_range(0..100_000);
            fs.write(f, rng, Time(0), UnixTime(unix.0 - age));
        }
        for f in APPEARING {
            fs.set(f, State::Missing, Time(0));
        }
        fs
    }

    /// The root directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn inode(&mut self) -> u64 {
        self.next_inode += 1;
        self.next_inode
    }

    fn set(&mut self, rel: &str, state: State, at: Time) {
        self.current.insert(rel.to_string(), state);
        self.history
            .entry(rel.to_string())
            .or_default()
            .push((at, state));
    }

    /// Writes a new version of `rel` (an atomic replace).
    fn write(&mut self, rel: &str, rng: &mut ChaCha8Rng, at: Time, mtime: UnixTime) {
        let inode = self.inode();
        // Empty and tiny files happen; most are bigger, so that versions are told apart.
        let len = if rel == "empty.txt" {
            0
        } else if rng.random_range(0..10) == 0 {
            rng.random_range(0..4)
        } else {
            rng.random_range(1..=self.file_size_max)
        };
        self.versions.insert(
            inode,
            Version {
                path: rel.to_string(),
                inode,
                len,
                body: std::cell::OnceCell::new(),
                mtime,
            },
        );
        self.set(rel, State::File(inode), at);
    }

    /// One random change: replace, delete or create a file. Returns a description.
    pub fn mutate(&mut self, rng: &mut ChaCha8Rng, at: Time, unix: UnixTime) -> String {
        self.now_unix = unix;
        let pool: Vec<&str> = INITIAL_FILES.iter().chain(APPEARING).copied().collect();
        // unwrap: the pool is a non-empty constant.
        let rel = *pool.choose(rng).unwrap();
        match self.current.get(rel) {
            Some(State::File(_)) if rng.random_bool(0.3) => {
                self.set(rel, State::Missing, at);
                format!("delete {rel}")
            }
            _ => {
                self.write(rel, rng, at, unix);
                format!("write {rel}")
            }
        }
    }

    fn rel_of(&self, path: &Path) -> Option<String> {
        let rest = path.strip_prefix(&self.root).ok()?;
        let s = rest.to_str()?;
        Some(s.trim_end_matches('/').to_string())
    }

    /// Carries out an `Open`: the completion to report and, on success, the descriptor.
    pub fn open(&mut self, file: FileId, path: &Path) -> Completion {
        // A trailing slash on a regular file is ENOTDIR, which the shell reports as
        // NotFound; `Path` would silently drop it, so look at the raw text.
        let slash = path.as_os_str().as_encoded_bytes().ends_with(b"/");
        let state = self
            .rel_of(path)
            .and_then(|rel| self.current.get(&rel).copied())
            .unwrap_or(State::Missing);
        let (kind, inode, content, mtime) = match state {
            State::Missing => return Completion::Failed(IoError::NotFound),
            State::Denied => return Completion::Failed(IoError::PermissionDenied),
            State::File(_) if slash => return Completion::Failed(IoError::NotFound),
            State::File(inode) => {
                // unwrap: every File state names a version written before it.
                let v = self.versions.get(&inode).unwrap();
                (FileKind::File, inode, v.content().clone(), v.mtime)
            }
            State::Dir(inode) => (FileKind::Dir, inode, Bytes::new(), UnixTime(1_600_000_000)),
        };
        let len = if kind == FileKind::Dir {
            4096
        } else {
            content.len() as u64
        };
        self.open.insert(
            file,
            OpenFile {
                inode,
                path: path.to_path_buf(),
                content,
            },
        );
        Completion::Opened(FileMeta {
            kind,
            len,
            mtime,
            inode,
        })
    }

    /// Carries out a `ReadDir`: the entries of a directory, in name order (a real shell
    /// reports them unordered; sorted keeps the simulation deterministic and is one of
    /// the orders a shell may produce).
    pub fn list(&self, path: &Path) -> Completion {
        let Some(rel) = self.rel_of(path) else {
            return Completion::Failed(IoError::NotFound);
        };
        match self.current.get(&rel) {
            Some(State::Dir(_)) => {}
            Some(State::Missing) | None => return Completion::Failed(IoError::NotFound),
            Some(State::Denied | State::File(_)) => return Completion::Failed(IoError::Other),
        }
        let prefix = if rel.is_empty() {
            String::new()
        } else {
            format!("{rel}/")
        };
        let mut entries = Vec::new();
        for (p, state) in &self.current {
            let Some(name) = p.strip_prefix(&prefix) else {
                continue;
            };
            if name.is_empty() || name.contains('/') {
                continue;
            }
            let (is_dir, len, mtime) = match state {
                State::Missing => continue,
                State::Dir(_) => (true, 4096, UnixTime(1_600_000_000)),
                State::Denied => (false, 0, UnixTime(1_600_000_000)),
                State::File(inode) => {
                    // unwrap: every File state names a version written before it.
                    let v = self.versions.get(inode).unwrap();
                    (false, v.len() as u64, v.mtime)
                }
            };
            entries.push(DirEntry {
                name: name.as_bytes().to_vec(),
                is_dir,
                len,
                mtime,
            });
        }
        Completion::Listing(entries)
    }

    /// The open descriptor `file`, if it is open.
    #[must_use]
    pub fn descriptor(&self, file: FileId) -> Option<&OpenFile> {
        self.open.get(&file)
    }

    /// The content of the version written at the same path just before the descriptor's
    /// own, if any (for the stale-file bug: a shell that caches content by path and
    /// misses a change).
    #[must_use]
    pub fn previous_content(&self, d: &OpenFile) -> Option<Bytes> {
        let rel = self.rel_of(&d.path)?;
        self.versions
            .range(..d.inode)
            .rev()
            .find(|(_, v)| v.path == rel)
            .map(|(_, v)| v.content().clone())
    }

    /// Closes `file`. Errors say what was wrong (never open, or closed twice).
    pub fn close(&mut self, file: FileId) -> Result<(), String> {
        if self.open.remove(&file).is_some() {
            self.closed.insert(file);
            Ok(())
        } else if self.closed.contains(&file) {
            Err(format!("CloseFile {file:?} twice"))
        } else {
            Err(format!("CloseFile {file:?}, which was never opened"))
        }
    }

    /// Descriptors still open.
    #[must_use]
    pub fn open_files(&self) -> Vec<FileId> {
        self.open.keys().copied().collect()
    }

    /// Every state `rel` was in during `[from, to]` (both ends included, so that a change
    /// at the same millisecond as an `Open` counts either way).
    #[must_use]
    pub fn states_during(&self, rel: &str, from: Time, to: Time) -> Vec<State> {
        let Some(h) = self.history.get(rel) else {
            return vec![State::Missing];
        };
        let mut out = Vec::new();
        for (i, (start, state)) in h.iter().enumerate() {
            let end = h.get(i + 1).map(|(t, _)| *t);
            let overlaps = *start <= to && end.is_none_or(|e| e >= from);
            if overlaps && !out.contains(state) {
                out.push(*state);
            }
        }
        if out.is_empty() {
            out.push(State::Missing);
        }
        out
    }

    /// Every name ever seen directly in directory `dir`, with the states it was in during
    /// `[from, to]`.
    #[must_use]
    pub fn children(&self, dir: &str, from: Time, to: Time) -> Vec<(String, Vec<State>)> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.history
            .keys()
            .filter_map(|p| p.strip_prefix(&prefix))
            .filter(|name| !name.is_empty() && !name.contains('/'))
            .map(|name| {
                let full = format!("{prefix}{name}");
                (name.to_string(), self.states_during(&full, from, to))
            })
            .collect()
    }

    /// What `path` (absolute) is now.
    #[must_use]
    pub fn state(&self, path: &Path) -> State {
        self.rel_of(path)
            .and_then(|rel| self.current.get(&rel).copied())
            .unwrap_or(State::Missing)
    }

    /// A version by inode.
    #[must_use]
    pub fn version(&self, inode: u64) -> Option<&Version> {
        self.versions.get(&inode)
    }

    /// Every version ever written at `rel` (to recognise a body).
    pub fn versions_of<'a>(&'a self, rel: &'a str) -> impl Iterator<Item = (u64, &'a Version)> {
        self.versions
            .iter()
            .filter(move |(_, v)| v.path == rel)
            .map(|(i, v)| (*i, v))
    }
}

/// The content of the version with this inode: a keyed stream of `[a-z0-9]` with a newline
/// every 64 bytes, so bodies are readable in failure reports.
#[must_use]
pub fn content(inode: u64, len: usize) -> Bytes {
    // Each 63-letter line is copied from a fixed random pool at an offset keyed by the
    // inode and the line number: generating bodies of up to hundreds of kilobytes byte
    // by byte was a tenth of a run. Two versions share a line only if their offsets for
    // it agree (about one chance in eight thousand), so versions are told apart.
    const LINE: usize = 63;
    let pool = pool();
    let mut out = Vec::with_capacity(len);
    let mut line = 0u64;
    while out.len() < len {
        let key = (inode ^ 0xD1B5_4A32_D192_ED03)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(line.wrapping_mul(0xBF58_476D_1CE4_E5B9));
        let at = (xorshift(key) % (pool.len() - LINE) as u64) as usize;
        let n = (len - out.len()).min(LINE);
        out.extend_from_slice(&pool[at..at + n]);
        if out.len() < len {
            out.push(b'\n');
        }
        line += 1;
    }
    Bytes::from(out)
}

/// xorshift64*: cheap, and plenty to tell versions apart.
fn xorshift(mut x: u64) -> u64 {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// 8 KiB of `[a-z0-9]`, the same in every run.
fn pool() -> &'static [u8] {
    static POOL: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut x = 0x5EED_F00D_u64;
        (0..8_192)
            .map(|_| {
                x = xorshift(x);
                ALPHABET[(x >> 58) as usize % ALPHABET.len()]
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn descriptors_keep_the_version_they_opened() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut fs = SimFs::new(
            PathBuf::from("/sim"),
            300,
            &mut rng,
            UnixTime(1_700_000_000),
        );
        let path = Path::new("/sim/a.txt");
        let Completion::Opened(meta) = fs.open(FileId(weir_core::Token(1)), path) else {
            panic!("a.txt exists");
        };
        let before = fs
            .descriptor(FileId(weir_core::Token(1)))
            .unwrap()
            .content
            .clone();
        fs.write("a.txt", &mut rng, Time(5), UnixTime(1_700_000_001));
        assert_eq!(
            fs.descriptor(FileId(weir_core::Token(1))).unwrap().content,
            before
        );
        let d = fs.descriptor(FileId(weir_core::Token(1))).unwrap().clone();
        assert_eq!(fs.previous_content(&d), None);
        assert_eq!(
            fs.states_during("a.txt", Time(0), Time(10)),
            vec![State::File(meta.inode), fs.current["a.txt"]]
        );
        assert_eq!(fs.states_during("a.txt", Time(6), Time(10)).len(), 1);
        assert!(fs.close(FileId(weir_core::Token(1))).is_ok());
        assert!(fs.close(FileId(weir_core::Token(1))).is_err());
    }

    #[test]
    fn trailing_slash_on_a_file_is_not_found_and_denied_is_denied() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut fs = SimFs::new(
            PathBuf::from("/sim"),
            300,
            &mut rng,
            UnixTime(1_700_000_000),
        );
        let t = |n| FileId(weir_core::Token(n));
        assert_eq!(
            fs.open(t(1), Path::new("/sim/a.txt/")),
            Completion::Failed(IoError::NotFound)
        );
        assert_eq!(
            fs.open(t(2), Path::new("/sim/noperm.txt")),
            Completion::Failed(IoError::PermissionDenied)
        );
        assert!(matches!(
            fs.open(t(3), Path::new("/sim/docs/")),
            Completion::Opened(FileMeta {
                kind: FileKind::Dir,
                ..
            })
        ));
        assert_eq!(
            fs.open(t(4), Path::new("/elsewhere/a.txt")),
            Completion::Failed(IoError::NotFound)
        );
    }

    #[test]
    fn versions_differ() {
        assert_ne!(content(1, 100), content(2, 100));
        assert_eq!(content(7, 100), content(7, 100));
        // Lines of 63 letters and a newline, and the lines of two versions differ.
        let (a, b) = (content(11, 6_400), content(12, 6_400));
        assert_eq!(a.len(), 6_400);
        for (i, byte) in a.iter().enumerate() {
            assert_eq!(*byte == b'\n', i % 64 == 63, "byte {i}");
        }
        let same = a
            .chunks(64)
            .zip(b.chunks(64))
            .filter(|(x, y)| x == y)
            .count();
        assert!(same <= 1, "{same} of 100 lines alike");
        assert_eq!(content(5, 0).len(), 0);
        assert_eq!(content(5, 64).len(), 64);
    }
}
