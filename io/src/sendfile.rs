//! Copying a range of an open file to a socket without passing through user space.
//!
//! On Linux this is `sendfile(2)`: the kernel moves page-cache pages to the socket, and the
//! file offset is passed explicitly so the shared `File` is never seeked (two responses may
//! send from one open file). Elsewhere a `pread` + `write` fallback keeps the crate portable;
//! bytes read but not written are simply read again next time.
//!
//! `sendfile` blocks on the disk when the range is not in the page cache, and the socket
//! being non-blocking does not change that. `resident` tells, in one system call
//! (`cachestat(2)`, Linux 6.5), whether a range is cached, so that the worker can have the
//! file pool read it in first (`filepool`) and keep its own `sendfile` to pages in memory.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Linux moves at most this many bytes per `sendfile` call.
const SENDFILE_MAX: usize = 0x7fff_f000;

/// Sends up to `count` bytes of `file` starting at `offset` to the non-blocking socket
/// `out`. Returns how many bytes were sent (0 only at end of file, or when `count` is 0).
/// `WouldBlock` means the socket is full.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn send_file(out: &impl AsRawFd, file: &File, offset: u64, count: usize) -> io::Result<usize> {
    let mut off = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
    let count = count.min(SENDFILE_MAX);
    // SAFETY: both descriptors are borrowed from live owners (`out` and `file`) for the
    // whole call, so neither can be closed or reused meanwhile; `off` is a local the kernel
    // may update, and `count` bounds nothing in our memory (no user buffer is involved).
    let n = unsafe {
        libc::sendfile(
            out.as_raw_fd(),
            file.as_raw_fd(),
            std::ptr::addr_of_mut!(off),
            count,
        )
    };
    // A negative return is an error in errno; anything else is a byte count ≤ count.
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Whether every page of the `len` bytes of `file` from `offset` is in the page cache:
/// `None` where the kernel cannot tell (before Linux 6.5, or not Linux).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn resident(file: &File, offset: u64, len: u64) -> Option<bool> {
    use std::sync::atomic::{AtomicBool, Ordering};

    /// `cachestat` has the same number on every architecture (it came after the tables
    /// were unified); the libc crate does not name it for every target yet.
    const SYS_CACHESTAT: libc::c_long = 451;
    /// Set once the kernel said it has no `cachestat`, so that it is not asked again.
    static MISSING: AtomicBool = AtomicBool::new(false);

    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }

    if len == 0 {
        return Some(true);
    }
    if MISSING.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: sysconf reads nothing of ours.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .ok()
        .filter(|&p| p > 0)?;
    let range = Range { off: offset, len };
    let mut stat = Stat::default();
    // SAFETY: the descriptor is borrowed from `file`, alive for the call; the kernel reads
    // `range` and writes `stat`, both live locals of the layout cachestat(2) defines.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            std::ptr::addr_of!(range),
            std::ptr::addr_of_mut!(stat),
            0,
        )
    };
    if rc != 0 {
        if io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
            MISSING.store(true, Ordering::Relaxed);
        }
        return None;
    }
    // The kernel counts the pages the range touches, from the one holding `offset`.
    let pages = (offset + len - 1) / page - offset / page + 1;
    Some(stat.nr_cache >= pages)
}

/// Where the kernel cannot tell: unknown.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn resident(_file: &File, _offset: u64, _len: u64) -> Option<bool> {
    None
}

/// Portable fallback: `pread` into a buffer, then one `write`.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn send_file(out: &impl AsRawFd, file: &File, offset: u64, count: usize) -> io::Result<usize> {
    use std::io::Write;
    use std::mem::ManuallyDrop;
    use std::os::fd::FromRawFd;
    use std::os::unix::fs::FileExt;

    let mut buf = [0u8; 64 * 1024];
    let want = count.min(buf.len());
    let got = file.read_at(&mut buf[..want], offset)?;
    if got == 0 {
        return Ok(0);
    }
    // SAFETY: the descriptor is borrowed from `out`, alive for this call; ManuallyDrop
    // keeps this temporary `File` from closing a descriptor it does not own.
    let mut sock = ManuallyDrop::new(unsafe { File::from_raw_fd(out.as_raw_fd()) });
    sock.write(&buf[..got])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn sends_a_range_without_moving_the_file_offset() {
        let path = std::env::temp_dir().join(format!("weir-sendfile-{}", std::process::id()));
        {
            let mut f = File::create(&path).expect("temp dir is writable");
            f.write_all(b"0123456789abcdef").expect("write temp file");
        }
        let file = File::open(&path).expect("just created");
        let (a, mut b) = UnixStream::pair().expect("socketpair");

        let mut sent = 0;
        while sent < 6 {
            sent += send_file(&a, &file, 4 + sent as u64, 6 - sent).expect("sendfile to a pair");
        }
        drop(a);
        let mut got = Vec::new();
        b.read_to_end(&mut got).expect("read the pair");
        assert_eq!(got, b"456789");

        // Past the end: nothing to send.
        let (c, _d) = UnixStream::pair().expect("socketpair");
        assert_eq!(send_file(&c, &file, 16, 10).expect("at EOF"), 0);

        std::fs::remove_file(&path).expect("remove temp file");
    }

    #[test]
    fn tells_a_cached_range_from_an_evicted_one() {
        let path = std::env::temp_dir().join(format!("weir-resident-{}", std::process::id()));
        let body = vec![7u8; 1 << 20];
        std::fs::write(&path, &body).expect("temp dir is writable");
        let file = File::open(&path).expect("just created");
        if resident(&file, 0, body.len() as u64).is_none() {
            // No cachestat (a kernel before 6.5): the worker then sends inline.
            eprintln!("cachestat(2) is not available here; nothing to check");
            std::fs::remove_file(&path).expect("remove temp file");
            return;
        }
        assert_eq!(resident(&file, 0, body.len() as u64), Some(true));
        assert_eq!(resident(&file, 4095, 2), Some(true));
        assert_eq!(resident(&file, 0, 0), Some(true));
        // Written back, then dropped from the cache: not resident (on a file system that
        // keeps files in memory only, such as tmpfs, eviction does nothing).
        file.sync_all().expect("fsync");
        // SAFETY: plain integers and a live descriptor.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0);
        // SAFETY: fstatfs writes the struct it is given.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: a live descriptor and a struct of the right type.
        let in_memory = unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) } != 0
            || fs.f_type == libc::TMPFS_MAGIC;
        if !in_memory {
            assert_eq!(resident(&file, 0, body.len() as u64), Some(false));
        }
        let mut buf = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .expect("read back");
        assert_eq!(resident(&file, 0, body.len() as u64), Some(true));
        std::fs::remove_file(&path).expect("remove temp file");
    }
}
