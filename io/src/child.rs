//! The two things both child tables need from the kernel — the launcher's (services) and
//! each worker's (CGI scripts): a pidfd that becomes readable when a child exits, and a
//! look at a child's exit status that leaves it a zombie, so that its PID (and process
//! group ID) stays reserved until its owner reaps it and a `kill` can never reach a
//! stranger that got the number later.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use weir_core::server::ExitStatus;

use crate::log::log_error;

/// A pidfd for our child `pid` (close-on-exec, as pidfd_open always makes it), or `None`
/// if the kernel cannot make one.
pub fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor or -1; it
    // touches no memory of ours. The child is not reaped, so the PID is still ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOSYS) {
            log_error!("pidfd_open for process {pid}: {e}; polling for its exit instead");
        }
        return None;
    }
    // Descriptors are small non-negative ints; the syscall returned one.
    let fd = RawFd::try_from(fd).ok()?;
    // SAFETY: `fd` was just returned by pidfd_open, so it is open and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The exit status of our child `pid` if it has exited, leaving it a zombie (not reaped).
pub fn peek_exit(pid: libc::pid_t) -> io::Result<Option<ExitStatus>> {
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value (a plain C struct), and waitid
        // fills it; si_pid stays 0 when the child has not changed state (WNOHANG).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t; `pid` is our unreaped child, so
        // waitid only looks at it; WNOWAIT leaves it waitable.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                // A positive pid_t converts losslessly to id_t.
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: waitid succeeded, so the fields for SIGCHLD (si_pid, si_status) are the
        // ones the union holds (or zero when nothing changed).
        let (who, code) = unsafe { (info.si_pid(), info.si_status()) };
        if who == 0 {
            return Ok(None);
        }
        return Ok(Some(match info.si_code {
            libc::CLD_EXITED => ExitStatus::Code(code),
            // CLD_KILLED or CLD_DUMPED: WEXITED reports nothing else.
            _ => ExitStatus::Signal(code),
        }));
    }
}
