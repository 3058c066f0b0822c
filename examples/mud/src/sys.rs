//! The few system calls std does not offer: taking fd 0 as the listening socket, raising
//! the descriptor limit, and drawing random bytes. The only `unsafe` code in the crate.

#![allow(unsafe_code)]

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

/// The listening Unix socket on fd 0, taken over for the life of the process (the
/// FastCGI convention: the web server starts the application with it there).
pub fn listener_on_fd0() -> io::Result<UnixListener> {
    let listening = sockopt(libc::SO_ACCEPTCONN)?;
    let domain = sockopt(libc::SO_DOMAIN)?;
    if listening == 0 || domain != libc::AF_UNIX {
        return Err(io::Error::other("fd 0 is not a listening Unix socket"));
    }
    // SAFETY: fd 0 is open (getsockopt just answered for it), and by the FastCGI
    // convention nothing else in this process uses it: the listener owns it from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(0) };
    Ok(UnixListener::from(fd))
}

/// A `SOL_SOCKET` option of fd 0 (fails with ENOTSOCK when fd 0 is no socket).
fn sockopt(name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    // unwrap-free: the size of a c_int fits a socklen_t.
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            0,
            libc::SOL_SOCKET,
            name,
            std::ptr::addr_of_mut!(value).cast(),
            std::ptr::addr_of_mut!(len),
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// Raises the soft limit on open descriptors to the hard limit (each parked long poll holds
/// one) and returns the soft limit now in force, or `None` if it cannot be read.
pub fn raise_nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is valid for writes.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, std::ptr::addr_of_mut!(lim)) } == -1 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: raised is a valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, std::ptr::addr_of!(raised)) } == 0 {
            lim = raised;
        }
    }
    Some(lim.rlim_cur)
}

/// The soft limit on open descriptors, if it can be read.
pub fn nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is valid for writes.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, std::ptr::addr_of_mut!(lim)) } == -1 {
        return None;
    }
    Some(lim.rlim_cur)
}

/// 16 bytes from the kernel's random source (getrandom, else /dev/urandom), or `None` if
/// neither answers.
pub fn random16() -> Option<[u8; 16]> {
    let mut buf = [0u8; 16];
    loop {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n == 16 {
            return Some(buf);
        }
        // Up to 256 bytes come whole once the pool is ready: a short count or EINTR means
        // a signal came first.
        if n >= 0 || io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        break;
    }
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .ok()
        .map(|()| buf)
}
