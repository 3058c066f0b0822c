//! The launcher (OKWS's okld): a separate process that creates the services' sockets,
//! starts and stops their processes and reports their exits — and decides nothing. weir's
//! control loop decides; this module is its end of the conversation.
//!
//! # Why a process
//!
//! The launcher keeps what weir gives up: it is started before weir drops root (so it can
//! start each service as its own `user=`) and before weir starts any thread (so it is never
//! forked from a multi-threaded process). It is weir's own binary run again as the hidden
//! subcommand `weir launcher`, with one end of a `socketpair` as its standard input,
//! `/dev/null` as its standard output, and weir's standard error as its own (its lines
//! read `weir: launcher: …`).
//!
//! ```text
//!   weir ─ Launcher ══ socketpair ══ weir launcher (run::serve)
//!                 Request ──►            ├─ Listen/Unlisten  ─► sockets
//!                 ◄── Report             ├─ Spawn            ─► spawn (fork, exec)
//!                                        └─ Kill/Stop, exits ─► children (pidfds, reaping)
//! ```
//!
//! The messages and their encoding are in `proto`. Requests are small and rare, so `send`
//! blocks; reports are read without blocking (`try_recv`), driven by readability of `fd`
//! in weir's mio loop. The socket itself stays in blocking mode, and reads use
//! `MSG_DONTWAIT`: one descriptor serves both directions.
//!
//! # The end
//!
//! The launcher lives exactly as long as weir's end of the socket: when it closes — weir
//! calls `shutdown`, exits, or dies in any way, `kill -9` included — the launcher stops
//! every service (SIGTERM, `children::STOP_GRACE`, SIGKILL), removes the socket files and
//! exits. A service dies with the launcher even if the launcher is killed outright
//! (`PR_SET_PDEATHSIG`). Dropping a `Launcher` without `shutdown` closes the socket too,
//! but does not wait for the launcher.

mod children;
pub mod proto;
pub mod run;
mod sockets;
mod spawn;

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use proto::{Report, Request};

use proto::{Frames, Message};

/// A grace for `Launcher::shutdown` that lets the launcher finish its own: its services'
/// `STOP_GRACE`, then up to `children::KILL_REAP` for the SIGKILLed ones, and a margin.
#[allow(dead_code)] // For the control loop, being written.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(3500);

/// weir's end of the launcher: the running process and the socket to it.
#[derive(Debug)]
pub struct Launcher {
    stream: UnixStream,
    child: Child,
    /// Bytes of reports read but not yet returned.
    inbox: Frames,
    /// The launcher closed its end (it exited).
    eof: bool,
}

impl Launcher {
    /// Starts `program` (weir's own binary: `std::env::current_exe()`, or
    /// `/proc/self/exe`) as `program launcher`. Call it before any thread exists and before
    /// dropping privileges.
    pub fn start(program: &Path) -> io::Result<Launcher> {
        let mut command = Command::new(program);
        command.arg("launcher");
        Launcher::start_command(command)
    }

    /// Starts `command` as the launcher, its standard streams set here.
    fn start_command(mut command: Command) -> io::Result<Launcher> {
        // Both ends are close-on-exec; std makes the launcher's its fd 0 (dup2 clears the
        // flag there), so no other child of weir ever holds either.
        let (ours, theirs) = UnixStream::pair()?;
        let child = command
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(Launcher {
            stream: ours,
            child,
            inbox: Frames::new(),
            eof: false,
        })
    }

    /// The launcher's PID.
    #[cfg(test)]
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one request (blocking until the socket has taken it all).
    pub fn send(&mut self, req: &Request) -> io::Result<()> {
        let mut frame = Vec::new();
        req.encode(&mut frame)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SIGPIPE is ignored in weir, so a launcher that is gone is EPIPE here.
        self.stream.write_all(&frame)
    }

    /// The socket to register for readability (edge-triggered is fine: drain `try_recv`
    /// until it returns `Ok(None)` or an error after every event).
    #[must_use]
    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// The next report if one has arrived, without blocking. `UnexpectedEof` once the
    /// launcher has gone (and every report before that has been returned);
    /// `InvalidData` for a report that does not decode (a bug: treat the launcher as
    /// gone).
    pub fn try_recv(&mut self) -> io::Result<Option<Report>> {
        loop {
            if let Some(report) = self.inbox.next::<Report>()? {
                return Ok(Some(report));
            }
            if self.eof {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the launcher has exited",
                ));
            }
            let mut buf = [0u8; 4096];
            // SAFETY: recv writes at most `buf.len()` bytes into the live local buffer;
            // MSG_DONTWAIT makes this one call non-blocking without changing the socket.
            let n = unsafe {
                libc::recv(
                    self.stream.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            match usize::try_from(n) {
                Ok(0) => self.eof = true,
                Ok(n) => self.inbox.extend(&buf[..n]),
                Err(_) => {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return Ok(None),
                        io::ErrorKind::Interrupted => {}
                        _ => return Err(e),
                    }
                }
            }
        }
    }

    /// Closes the socket — the launcher stops every service and exits — and waits for it,
    /// at most `grace` (`SHUTDOWN_GRACE` lets it finish); a launcher still there then is
    /// killed, and its services die with it (SIGKILL, by their parent death signal).
    pub fn shutdown(mut self, grace: Duration) -> io::Result<ExitStatus> {
        drop(self.stream);
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                crate::log::log_error!(
                    "the launcher (process {}) did not exit within {grace:?}; killing it",
                    self.child.id()
                );
                self.child.kill()?;
                return self.child.wait();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests;
