//! The document cache (OSU's, DESIGN.md §4): what opening a path gave, kept for a while.
//!
//! # Theory of operation
//!
//! The cache remembers the outcome of opening a file-system path: a small regular file with
//! its metadata and its bytes, a directory, a larger file's metadata only, or "no such
//! file". While an entry is *fresh* — validated less than `revalidate` ago — the server
//! answers from it without any file effect at all: no open, no fstat, no read. Once stale,
//! the next request opens the path again and compares what it finds with the entry: the
//! same version (kind, length, mtime, inode) makes the entry fresh again and its bytes are
//! reused; a different one replaces it. So:
//!
//! * a response never mixes two versions of a file: a cached body is one read, taken
//!   together with the metadata its validators come from;
//! * a changed file is served with its old validators only together with its old bytes,
//!   and for at most `revalidate` after the change;
//! * requests arriving on a `nocache` listener bypass the cache entirely.
//!
//! Memory is bounded by `cache SIZE`: every entry is charged its body plus a fixed
//! overhead, and the least recently used entries are evicted first. Only files up to
//! `max-file` keep their bytes; larger ones are still sent with `sendfile` from a fresh
//! open, so for them only "not found" and directories are remembered.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use bytes::Bytes;

use crate::config::CacheSettings;
use crate::server::io::{FileKind, FileMeta};
use crate::time::Time;

/// What an entry remembers of a path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Cached {
    /// A regular file small enough to keep, with its bytes.
    File {
        /// Its metadata when it was read.
        meta: FileMeta,
        /// Its contents, `meta.len` bytes.
        body: Bytes,
    },
    /// A directory.
    Dir(FileMeta),
    /// Nothing there.
    Missing,
}

/// Bytes an entry is charged besides its body (path, bookkeeping).
pub const ENTRY_OVERHEAD: u64 = 256;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Entry {
    what: Cached,
    validated: Time,
    stamp: u64,
    cost: u64,
}

/// The cache (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cache {
    settings: CacheSettings,
    /// Keyed by the path's bytes: `Path` comparison ignores a trailing slash, and `a/` is
    /// not `a` (opening `file/` fails).
    entries: BTreeMap<OsString, Entry>,
    /// Last use → path: the eviction order. (Stamps are unique, so the stamp alone is the
    /// key, and a hit moves the path's bytes to a new stamp without copying them.)
    lru: BTreeMap<u64, OsString>,
    next_stamp: u64,
    used: u64,
    /// Lookups answered from a fresh entry.
    pub hits: u64,
    /// Lookups that had to open the path.
    pub misses: u64,
}

impl Cache {
    /// An empty cache.
    #[must_use]
    pub fn new(settings: CacheSettings) -> Cache {
        Cache {
            settings,
            entries: BTreeMap::new(),
            lru: BTreeMap::new(),
            next_stamp: 0,
            used: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// Bytes charged to entries now.
    #[must_use]
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True if a regular file of `len` bytes would keep its bytes here.
    #[must_use]
    pub fn keeps(&self, len: u64) -> bool {
        len <= self.settings.max_file && len + ENTRY_OVERHEAD <= self.settings.size
    }

    fn touch(&mut self, path: &Path) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        if let Some(e) = self.entries.get_mut(path.as_os_str()) {
            let name = self
                .lru
                .remove(&e.stamp)
                .unwrap_or_else(|| path.as_os_str().to_owned());
            e.stamp = stamp;
            self.lru.insert(stamp, name);
        }
    }

    /// The entry for `path` if it is fresh at `now`.
    pub fn fresh(&mut self, path: &Path, now: Time) -> Option<Cached> {
        let revalidate = self.settings.revalidate;
        let hit = self
            .entries
            .get(path.as_os_str())
            .filter(|e| now < e.validated.after(revalidate))
            .map(|e| e.what.clone());
        if hit.is_some() {
            self.hits += 1;
            self.touch(path);
        } else {
            self.misses += 1;
        }
        hit
    }

    /// The bytes of the entry for `path`, stale or not, if it holds exactly the version
    /// `meta` describes (so a reopened file need not be read again).
    #[must_use]
    pub fn same_version(&self, path: &Path, meta: &FileMeta) -> Option<Bytes> {
        match self.entries.get(path.as_os_str()).map(|e| &e.what) {
            Some(Cached::File { meta: m, body }) if m == meta => Some(body.clone()),
            _ => None,
        }
    }

    /// Records what opening `path` gave at `now`, evicting old entries to make room.
    pub fn insert(&mut self, path: &Path, what: Cached, now: Time) {
        self.remove(path);
        let cost = ENTRY_OVERHEAD
            + match &what {
                Cached::File { body, .. } => body.len() as u64,
                _ => 0,
            };
        if cost > self.settings.size {
            return;
        }
        while self.used + cost > self.settings.size {
            let Some(oldest) = self.lru.first_key_value().map(|(_, v)| v.clone()) else {
                break;
            };
            self.remove(Path::new(&oldest));
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.used += cost;
        self.lru.insert(stamp, path.as_os_str().to_owned());
        self.entries.insert(
            path.as_os_str().to_owned(),
            Entry {
                what,
                validated: now,
                stamp,
                cost,
            },
        );
    }

    /// Records what a fresh open of `path` found, if worth keeping: the metadata of a
    /// directory or a large file, or nothing there.
    pub fn note_open(&mut self, path: &Path, meta: Option<&FileMeta>, now: Time) {
        match meta {
            None => self.insert(path, Cached::Missing, now),
            Some(m) if m.kind == FileKind::Dir => self.insert(path, Cached::Dir(*m), now),
            // Files are inserted with their bytes by the caller; others are not kept.
            Some(_) => self.remove(path),
        }
    }

    /// Forgets `path`.
    pub fn remove(&mut self, path: &Path) {
        if let Some(e) = self.entries.remove(path.as_os_str()) {
            self.lru.remove(&e.stamp);
            self.used -= e.cost;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::UnixTime;
    use core::time::Duration;

    fn settings(size: u64) -> CacheSettings {
        CacheSettings {
            size,
            max_file: 100,
            revalidate: Duration::from_secs(1),
        }
    }

    fn meta(len: u64, mtime: i64) -> FileMeta {
        FileMeta {
            kind: FileKind::File,
            len,
            mtime: UnixTime(mtime),
            inode: 1,
        }
    }

    fn file(len: usize, mtime: i64) -> Cached {
        Cached::File {
            meta: meta(len as u64, mtime),
            body: Bytes::from(vec![b'x'; len]),
        }
    }

    #[test]
    fn entries_are_fresh_for_the_revalidate_time() {
        let mut c = Cache::new(settings(10_000));
        let p = Path::new("/a");
        assert_eq!(c.fresh(p, Time(0)), None);
        c.insert(p, file(10, 5), Time(1000));
        assert_eq!(c.fresh(p, Time(1999)), Some(file(10, 5)));
        assert_eq!(c.fresh(p, Time(2000)), None, "stale after revalidate");
        assert_eq!(c.same_version(p, &meta(10, 5)).map(|b| b.len()), Some(10));
        assert_eq!(c.same_version(p, &meta(10, 6)), None, "another version");
        assert_eq!((c.hits, c.misses), (1, 2));
    }

    #[test]
    fn memory_stays_within_size_evicting_least_recently_used() {
        let mut c = Cache::new(settings(3 * (ENTRY_OVERHEAD + 100)));
        assert!(c.is_empty());
        for (i, p) in ["/a", "/b", "/c"].iter().enumerate() {
            c.insert(Path::new(p), file(100, i as i64), Time(0));
        }
        assert_eq!(c.len(), 3);
        assert!(!c.is_empty());
        // Each entry is charged its body and the fixed overhead, exactly.
        assert_eq!(c.used(), 3 * (ENTRY_OVERHEAD + 100));
        assert!(c.fresh(Path::new("/a"), Time(1)).is_some(), "touch /a");
        c.insert(Path::new("/d"), file(100, 9), Time(2));
        assert_eq!(c.len(), 3);
        assert!(
            c.fresh(Path::new("/b"), Time(3)).is_none(),
            "/b was the least recently used"
        );
        assert!(c.fresh(Path::new("/a"), Time(3)).is_some());
        assert_eq!(c.used(), 3 * (ENTRY_OVERHEAD + 100), "one out, one in");
        c.remove(Path::new("/a"));
        c.remove(Path::new("/c"));
        c.remove(Path::new("/d"));
        assert_eq!((c.used(), c.len()), (0, 0));
        assert!(c.is_empty());
        // An entry larger than the whole cache is not kept, and evicts nothing for it.
        c.insert(Path::new("/e"), file(100, 1), Time(4));
        let too_big = 3 * (ENTRY_OVERHEAD + 100);
        c.insert(Path::new("/huge"), file(too_big as usize, 1), Time(5));
        assert!(c.fresh(Path::new("/huge"), Time(6)).is_none());
        assert!(c.fresh(Path::new("/e"), Time(6)).is_some(), "/e stays");
        assert_eq!(c.used(), ENTRY_OVERHEAD + 100);
        // One that fills the cache exactly is kept, in place of everything else.
        let whole = 3 * (ENTRY_OVERHEAD + 100) - ENTRY_OVERHEAD;
        c.insert(Path::new("/full"), file(whole as usize, 1), Time(7));
        assert!(c.fresh(Path::new("/full"), Time(8)).is_some());
        assert_eq!((c.len(), c.used()), (1, 3 * (ENTRY_OVERHEAD + 100)));
    }

    #[test]
    fn each_use_is_a_later_use() {
        // Two entries used in turn: the one used first is the least recently used, so
        // each use must take its own, later stamp.
        let mut c = Cache::new(settings(2 * (ENTRY_OVERHEAD + 100)));
        c.insert(Path::new("/a"), file(100, 1), Time(0));
        c.insert(Path::new("/b"), file(100, 1), Time(0));
        assert!(c.fresh(Path::new("/a"), Time(1)).is_some());
        assert!(c.fresh(Path::new("/b"), Time(1)).is_some());
        c.insert(Path::new("/c"), file(100, 1), Time(2));
        assert!(
            c.fresh(Path::new("/a"), Time(3)).is_none(),
            "/a was used first"
        );
        assert!(c.fresh(Path::new("/b"), Time(3)).is_some());
        assert!(c.fresh(Path::new("/c"), Time(3)).is_some());
    }

    #[test]
    fn directories_and_missing_paths_are_remembered() {
        let mut c = Cache::new(settings(10_000));
        c.note_open(Path::new("/gone"), None, Time(0));
        let d = FileMeta {
            kind: FileKind::Dir,
            ..meta(0, 1)
        };
        c.note_open(Path::new("/dir"), Some(&d), Time(0));
        assert_eq!(c.fresh(Path::new("/gone"), Time(1)), Some(Cached::Missing));
        assert_eq!(c.fresh(Path::new("/dir"), Time(1)), Some(Cached::Dir(d)));
        c.note_open(Path::new("/gone"), Some(&meta(5, 1)), Time(2));
        assert_eq!(
            c.fresh(Path::new("/gone"), Time(3)),
            None,
            "a file appeared: forgotten"
        );
        assert!(!c.keeps(101) && c.keeps(100));
    }

    #[test]
    fn a_trailing_slash_is_another_path() {
        let mut c = Cache::new(settings(10_000));
        c.insert(Path::new("/a.txt"), file(1, 1), Time(0));
        assert_eq!(
            c.fresh(Path::new("/a.txt/"), Time(1)),
            None,
            "opening a.txt/ fails"
        );
        assert!(c.fresh(Path::new("/a.txt"), Time(1)).is_some());
    }
}
