//! The worker's open files: carrying out `Open`, `ReadFile`, `ReadDir` and `CloseFile`, and
//! the descriptors `sendfile` reads from.
//!
//! The core names each open file by the token of the `Open` that created it (`FileId`), so
//! this table is the only place that maps the name to a descriptor. The operations
//! themselves (`open_file`, `read_at`, `read_dir`) are free functions, so that they run
//! wherever the worker sends them: on the file pool (`filepool`, the default), or inline on
//! the event loop under `file-threads off`. Entries are shared (`Shared`): a read or a
//! read-ahead running on the pool holds its file, so a `CloseFile` meanwhile cannot close
//! the descriptor under it (or let the number be reused for another file); the descriptor
//! closes when the last holder lets go.
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
use std::sync::Arc;

use std::os::unix::ffi::OsStringExt;

use bytes::Bytes;
use weir_core::server::{Completion, DirEntry, FileKind, FileMeta, IoError, LISTING_MAX};
use weir_core::{FileId, Token, UnixTime};

use crate::{errno, fault};

/// An open file, as the table and the pool's jobs share it.
#[derive(Debug)]
pub struct OpenFile {
    /// The descriptor (read-only, `O_NONBLOCK | O_NOCTTY`).
    pub file: File,
    /// Reading it is slowed down on purpose (`fault`, debug builds only; always false
    /// otherwise).
    pub slow: bool,
}

/// A table entry, held also by the pool's jobs that use it.
pub type Shared = Arc<OpenFile>;

/// Open files by the core's name for them.
#[derive(Debug, Default)]
pub struct Files {
    open: HashMap<FileId, Shared>,
}

impl Files {
    /// An empty table.
    #[must_use]
    pub fn new() -> Files {
        Files::default()
    }

    /// Carries out `Open { token, path }` inline: see [`open_file`]; on success the file
    /// is kept as `FileId(token)`.
    pub fn open(&mut self, token: Token, path: &Path) -> Completion {
        let (file, result) = open_file(path);
        if let Some(file) = file {
            self.insert(token, file);
        }
        result
    }

    /// Keeps `file`, opened for `Open { token, .. }`, as `FileId(token)`.
    pub fn insert(&mut self, token: Token, file: OpenFile) {
        // A reused token would be a core bug; the new file wins and the old one is
        // closed rather than leaked.
        self.open.insert(FileId(token), Arc::new(file));
    }

    /// Carries out `CloseFile`: forgets the file, whose descriptor closes once no job on
    /// the pool holds it any more. Unknown ids are ignored (closing twice is harmless).
    pub fn close(&mut self, file: FileId) {
        self.open.remove(&file);
    }

    /// The open file named `file`, if any.
    #[must_use]
    pub fn get(&self, file: FileId) -> Option<&Shared> {
        self.open.get(&file)
    }

    /// Number of open files.
    #[must_use]
    pub fn len(&self) -> usize {
        self.open.len()
    }
}

/// `Open { path }`: opens read-only and `fstat`s; the open file comes back with
/// `Completion::Opened` and only with it.
#[must_use]
pub fn open_file(path: &Path) -> (Option<OpenFile>, Completion) {
    fault::before_open(path);
    match open_and_stat(path) {
        Ok((file, meta)) => {
            let slow = fault::slow_reads(path);
            (Some(OpenFile { file, slow }), Completion::Opened(meta))
        }
        Err(e) => (None, Completion::Failed(errno::classify(&e))),
    }
}

/// `ReadDir { path }`: the directory's entries with their metadata (symbolic links
/// followed; entries whose metadata cannot be read are left out), at most `LISTING_MAX`
/// of them.
#[must_use]
pub fn read_dir(path: &Path) -> Completion {
    fault::before_open(path);
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

/// `ReadFile`: `len` bytes of `file` from `offset` with `pread`, fewer only at end of
/// file. The core asks only for files it keeps in its cache (`cache max-file=`), so this
/// is a bounded read of a small file.
#[must_use]
pub fn read_at(file: &OpenFile, offset: u64, len: u64) -> Completion {
    use std::os::unix::fs::FileExt;
    let Ok(len) = usize::try_from(len) else {
        return Completion::Failed(IoError::Exhausted);
    };
    fault::before_read(file.slow);
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Completion::Failed(errno::classify(&e)),
        }
    }
    buf.truncate(got);
    Completion::Data(Bytes::from(buf))
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
