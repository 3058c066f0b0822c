//! The launcher process's loop (`weir launcher`, OKWS's okld): it executes weir's requests
//! and reports what happened; it decides nothing.
//!
//! One thread, one `poll(2)` over the control socket (readable; writable while reports
//! wait to be sent) and the children's pidfds, with a timeout when a `Stop` deadline is
//! due or a child must be polled. Each wake-up:
//!
//! ```text
//!   control socket readable ─► read to EAGAIN ─► each complete frame ─► carry it out
//!   any wake-up             ─► SIGKILL overdue Stops, reap exited children ─► Exited
//!   reports queued          ─► write to EAGAIN (the rest waits for POLLOUT)
//! ```
//!
//! The control socket is non-blocking, and reports wait in a queue: the launcher never
//! blocks on weir (a control loop busy elsewhere must not stop it from reaping), and weir,
//! whose writes block, never waits on a launcher that is itself blocked writing.
//!
//! The conversation ends at end of file on the control socket — weir exited or died, by
//! `kill -9` too, since the kernel closes its end either way — or at any error on it,
//! including a frame that does not decode (weir and the launcher are one binary: garbage
//! means a bug, and nothing after it can be trusted). Then every process is stopped
//! (`Children::stop_all`), every socket closed and its file removed, and `serve` returns:
//! 0 after end of file, 1 after an error.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use super::children::{Children, Status, STOP_GRACE};
use super::proto::{Frames, Message, Report, Request};
use super::sockets::Listeners;
use super::spawn::{self, Prepared, SpawnError, Step};
use crate::log::log_error;
use crate::privs;

/// Runs the launcher on `stream` (its end of the control socket) until weir goes away;
/// returns the exit status.
pub fn serve(stream: UnixStream) -> i32 {
    let devnull = match std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        Ok(f) => OwnedFd::from(f),
        Err(e) => {
            log_error!("launcher: cannot open /dev/null: {e}");
            return 1;
        }
    };
    if let Err(e) = stream.set_nonblocking(true) {
        log_error!("launcher: control socket: {e}");
        return 1;
    }
    let mut state = State {
        control: stream,
        inbox: Frames::new(),
        outbox: Vec::new(),
        listeners: Listeners::new(),
        children: Children::new(),
        devnull,
        as_root: privs::is_root(),
    };
    let code = match state.run() {
        Ok(()) => 0,
        Err(e) => {
            log_error!("launcher: control socket: {e}; stopping every service");
            1
        }
    };
    state.children.stop_all(STOP_GRACE);
    state.listeners.close_all();
    code
}

/// The launcher's state.
struct State {
    control: UnixStream,
    /// Bytes read from weir, cut into requests.
    inbox: Frames,
    /// Encoded reports not yet written.
    outbox: Vec<u8>,
    listeners: Listeners,
    children: Children,
    /// `/dev/null`: standard output of every service, and standard input of one that has
    /// no socket.
    devnull: OwnedFd,
    /// Whether `user` can be applied.
    as_root: bool,
}

impl State {
    /// The loop: returns at end of file (`Ok`) or at the first error on the control socket.
    fn run(&mut self) -> io::Result<()> {
        loop {
            let mut fds = vec![libc::pollfd {
                fd: self.control.as_raw_fd(),
                events: if self.outbox.is_empty() {
                    libc::POLLIN
                } else {
                    libc::POLLIN | libc::POLLOUT
                },
                revents: 0,
            }];
            fds.extend(self.children.pidfds().map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            }));
            let timeout = self.children.timeout(Instant::now()).map_or(-1, |d| {
                // Rounded up, so a deadline is not polled for in a busy loop of 0 ms waits.
                let ms = d.as_nanos().div_ceil(1_000_000);
                libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
            });
            // SAFETY: `fds` is a live array of `fds.len()` pollfd structs.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            // Hang-up and error are read too: the read reports them.
            let readable = libc::POLLIN | libc::POLLHUP | libc::POLLERR;
            if fds[0].revents & readable != 0 && !self.read_requests()? {
                return Ok(());
            }
            let mut exited = Vec::new();
            self.children.tick(Instant::now(), &mut exited);
            for (id, status) in exited {
                let (code, signal) = match status {
                    Status::Code(c) => (Some(c), None),
                    Status::Signal(s) => (None, Some(s)),
                };
                self.report(&Report::Exited { id, code, signal });
            }
            self.flush()?;
        }
    }

    /// Reads what weir sent and carries out every complete request. False at end of file.
    fn read_requests(&mut self) -> io::Result<bool> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.control.read(&mut buf) {
                Ok(0) => {
                    if !self.inbox.is_empty() {
                        log_error!("launcher: weir's last request was cut short");
                    }
                    return Ok(false);
                }
                Ok(n) => {
                    self.inbox.extend(&buf[..n]);
                    while let Some(req) = self.inbox.next::<Request>()? {
                        self.handle(req);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn handle(&mut self, req: Request) {
        match req {
            Request::Listen {
                service,
                path,
                backlog,
                mode,
                owner,
            } => {
                let error = self
                    .listeners
                    .listen(&service, &path, backlog, mode, owner)
                    .err();
                if let Some(e) = error {
                    log_error!(
                        "launcher: service {service}: cannot listen on {}: {}",
                        path.display(),
                        io::Error::from_raw_os_error(e)
                    );
                }
                self.report(&Report::Listening { service, error });
            }
            Request::Unlisten { service } => self.listeners.unlisten(&service),
            Request::Spawn {
                id,
                service,
                program,
                args,
                env,
                cwd,
                user,
            } => {
                let report = match self.spawn(id, &service, &program, &args, &env, &cwd, user) {
                    Ok(pid) => Report::Spawned {
                        id,
                        // A PID is positive.
                        pid: pid.unsigned_abs(),
                    },
                    Err(e) => {
                        log_error!(
                            "launcher: service {service}: cannot start {}: {e}",
                            program.display()
                        );
                        Report::SpawnFailed { id, errno: e.errno }
                    }
                };
                self.report(&report);
            }
            Request::Kill { id } => self.children.kill(id),
            Request::Stop { id } => self.children.stop(id, Instant::now()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn(
        &mut self,
        id: u64,
        service: &str,
        program: &std::path::Path,
        args: &[Vec<u8>],
        env: &[(Vec<u8>, Vec<u8>)],
        cwd: &std::path::Path,
        user: Option<(u32, u32)>,
    ) -> Result<libc::pid_t, SpawnError> {
        if self.children.contains(id) {
            log_error!("launcher: internal error: Spawn reuses the id {id} of a live process");
            return Err(SpawnError {
                step: Step::Prepare,
                errno: libc::EEXIST,
            });
        }
        // As weir does for `user`: without root it cannot switch, says so, and goes on.
        let user = match user {
            Some((uid, gid)) if !self.as_root => {
                log_error!(
                    "launcher: service {service}: not running as root, so not as uid {uid} gid {gid}"
                );
                None
            }
            u => u,
        };
        let prepared = Prepared::new(program, args, env, cwd, user)?;
        let stdin = self
            .listeners
            .fd(service)
            .unwrap_or(self.devnull.as_raw_fd());
        let pid = spawn::spawn(&prepared, stdin, self.devnull.as_raw_fd())?;
        self.children.insert(id, pid);
        Ok(pid)
    }

    /// Queues a report for weir.
    fn report(&mut self, report: &Report) {
        if let Err(e) = report.encode(&mut self.outbox) {
            // Reports are a few dozen bytes: this cannot happen.
            log_error!("launcher: internal error: cannot encode {report:?}: {e}");
        }
    }

    /// Writes queued reports until the socket is full.
    fn flush(&mut self) -> io::Result<()> {
        let mut sent = 0;
        let result = loop {
            if sent == self.outbox.len() {
                break Ok(());
            }
            match self.control.write(&self.outbox[sent..]) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.outbox.drain(..sent);
        result
    }
}

/// `weir launcher`: serves the control socket weir passed as standard input. Terminal
/// signals are ignored — they reach weir's whole process group, the launcher included,
/// and only weir decides when the launcher ends (by closing the socket).
pub fn main() -> i32 {
    for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGPIPE] {
        // SAFETY: setting a disposition to SIG_IGN installs no handler code and runs before
        // any other thread exists. The services' dispositions are reset in their children.
        unsafe {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    let stdin = io::stdin().as_raw_fd();
    let mut kind: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes an int and its length into live locals.
    let is_stream = unsafe {
        libc::getsockopt(
            stdin,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            std::ptr::addr_of_mut!(kind).cast(),
            &mut len,
        )
    } == 0
        && kind == libc::SOCK_STREAM;
    if !is_stream {
        log_error!(
            "launcher: standard input is not a stream socket (weir starts the launcher itself)"
        );
        return 2;
    }
    // SAFETY: fd 0 is open (getsockopt just worked on it) and nothing else in this process
    // uses standard input, so the stream can own it. It is made close-on-exec: the
    // services get their own fd 0.
    let stream = unsafe {
        libc::fcntl(stdin, libc::F_SETFD, libc::FD_CLOEXEC);
        <UnixStream as std::os::fd::FromRawFd>::from_raw_fd(stdin)
    };
    serve(stream)
}
