//! The worker's open files: `Open` and `CloseFile` effects, and the descriptors `sendfile`
//! reads from.
//!
//! The core names each open file by the token of the `Open` that created it (`FileId`), so
//! this table is the only place that maps the name to a descriptor. Files are opened inline
//! on the event-loop thread: on a local disk `open` + `fstat` take microseconds, and a worker
//! pool would buy nothing until slow (network) file systems matter.
//!
//! Files are opened with `O_NONBLOCK | O_NOCTTY` so that a FIFO or a terminal in the served
//! tree cannot block the loop or become our controlling terminal; the core never sends from
//! anything but a regular file (`FileKind::Other` is refused), and for regular files and
//! directories those flags change nothing.
//!
//! Under `chroot DIR`, the core hands over paths as seen inside already (`config::chroot`).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use std::os::unix::ffi::OsStringExt;

use bytes::Bytes;
use weir_core::server::{Completion, DirEntry, FileKind, FileMeta, IoError, LISTING_MAX};
use weir_core::{FileId, Token, UnixTime};

use crate::errno;

/// Open files by the core's name for them.
#[derive(Debug, Default)]
pub struct Files {
    open: HashMap<FileId, File>,
}

impl Files {
    /// An empty table.
    #[must_use]
    pub fn new() -> Files {
        Files::default()
    }

    /// Carries out `Open { token, path }`: opens read-only, `fstat`s, and on success keeps
    /// the file as `FileId(token)`.
    pub fn open(&mut self, token: Token, path: &Path) -> Completion {
        match open_and_stat(path) {
            Ok((file, meta)) => {
                // A reused token would be a core bug; the new file wins and the old one is
                // closed rather than leaked.
                self.open.insert(FileId(token), file);
                Completion::Opened(meta)
            }
            Err(e) => Completion::Failed(errno::classify(&e)),
        }
    }

    /// Carries out `ReadDir { path }`: the directory's entries with their metadata
    /// (symbolic links followed; entries whose metadata cannot be read are left out), at most
    /// `LISTING_MAX` of them. Runs inline like `open`: a directory read is a few syscalls
    /// per hundred entries on a local disk.
    pub fn read_dir(path: &Path) -> Completion {
        let dir = match std::fs::read_dir(path) {
            Ok(d) => d,
            Err(e) => return Completion::Failed(errno::classify(&e)),
        };
        let mut entries = Vec::new();
        for entry in dir.flatten().take(LISTING_MAX) {
            let Ok(meta) = std::fs::metadata(entry.path()) else {
                continue;
            };
            entries.push(DirEntry {
                name: entry.file_name().into_vec(),
                is_dir: meta.is_dir(),
                len: meta.len(),
                mtime: UnixTime(meta.mtime()),
            });
        }
        Completion::Listing(entries)
    }

    /// Carries out `ReadFile`: `len` bytes from `offset` with `pread`, fewer only at end of
    /// file. The core asks only for files it keeps in its cache (`cache max-file=`), so
    /// this is a bounded read of a small file.
    pub fn read(&self, file: FileId, offset: u64, len: u64) -> Completion {
        use std::os::unix::fs::FileExt;
        let Some(f) = self.open.get(&file) else {
            return Completion::Failed(IoError::Other);
        };
        let Ok(len) = usize::try_from(len) else {
            return Completion::Failed(IoError::Exhausted);
        };
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match f.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Completion::Failed(errno::classify(&e)),
            }
        }
        buf.truncate(got);
        Completion::Data(Bytes::from(buf))
    }

    /// Carries out `CloseFile`: drops the descriptor. Unknown ids are ignored (closing
    /// twice is harmless).
    pub fn close(&mut self, file: FileId) {
        self.open.remove(&file);
    }

    /// The open file named `file`, if any.
    #[must_use]
    pub fn get(&self, file: FileId) -> Option<&File> {
        self.open.get(&file)
    }

    /// Number of open files.
    #[must_use]
    pub fn len(&self) -> usize {
        self.open.len()
    }
}

fn open_and_stat(path: &Path) -> io::Result<(File, FileMeta)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    // fstat on the open descriptor, not stat on the path: the metadata describes exactly
    // the file we will send, even if the path is replaced meanwhile.
    let md = file.metadata()?;
    let ft = md.file_type();
    let kind = if ft.is_file() {
        FileKind::File
    } else if ft.is_dir() {
        FileKind::Dir
    } else {
        FileKind::Other
    };
    let meta = FileMeta {
        kind,
        len: md.len(),
        mtime: UnixTime(md.mtime()),
        inode: md.ino(),
    };
    Ok((file, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use weir_core::server::IoError;

    #[test]
    fn open_stat_and_close() {
        let dir = std::env::temp_dir().join(format!("weir-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        let path = dir.join("a.txt");
        File::create(&path)
            .and_then(|mut f| f.write_all(b"hello"))
            .expect("write temp file");

        let mut files = Files::new();
        match files.open(Token(1), &path) {
            Completion::Opened(m) => {
                assert_eq!(m.kind, FileKind::File);
                assert_eq!(m.len, 5);
                assert!(m.mtime.0 > 0);
                assert!(m.inode > 0);
            }
            other => panic!("expected Opened, got {other:?}"),
        }
        assert!(files.get(FileId(Token(1))).is_some());

        match files.open(Token(2), &dir) {
            Completion::Opened(m) => assert_eq!(m.kind, FileKind::Dir),
            other => panic!("expected a directory, got {other:?}"),
        }
        assert_eq!(
            files.open(Token(3), &dir.join("missing")),
            Completion::Failed(IoError::NotFound)
        );
        assert_eq!(
            files.open(Token(4), &path.join("below-a-file")),
            Completion::Failed(IoError::NotFound)
        );
        assert_eq!(files.len(), 2);

        files.close(FileId(Token(1)));
        files.close(FileId(Token(1)));
        files.close(FileId(Token(2)));
        assert_eq!(files.len(), 0);

        std::fs::remove_dir_all(&dir).expect("remove temp dir");
    }
}
