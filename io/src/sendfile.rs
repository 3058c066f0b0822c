//! Copying a range of an open file to a socket without passing through user space.
//!
//! On Linux this is `sendfile(2)`: the kernel moves page-cache pages to the socket, and the
//! file offset is passed explicitly so the shared `File` is never seeked (two responses may
//! send from one open file). Elsewhere a `pread` + `write` fallback keeps the crate portable;
//! bytes read but not written are simply read again next time.

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
}
