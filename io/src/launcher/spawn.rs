//! Starting one service process: `fork`, then in the child only async-signal-safe system
//! calls, then `execve`.
//!
//! Why not `std::process::Command`: it has no hook for `setgroups` or `PR_SET_PDEATHSIG`
//! after the user change, and its `pre_exec` closure runs in a child forked from a process
//! that may have threads (these tests have), where only async-signal-safe calls are
//! allowed — so everything the child needs is made before the fork (`Prepared`: the
//! C strings, the `argv` and `envp` arrays, the signal sets) and the child itself calls
//! nothing that allocates, locks or touches Rust's runtime.
//!
//! In the child, in this order (each failure is reported, see below):
//!
//! ```text
//!   setpgid(0, 0)              its own process group, so Kill and Stop reach all it starts
//!   dup2(listener, 0)          the service's socket (or /dev/null when it has none)
//!   dup2(/dev/null, 1)         fd 2 stays: weir's error log
//!   close-on-exec on fd 3 and up  whatever weir itself inherited stays out of services
//!   chdir(cwd)
//!   setgroups([gid]), setgid(gid), setuid(uid)     only with a user, and only as root
//!   prctl(PR_SET_PDEATHSIG, SIGKILL), getppid()    after the user change, which clears it
//!   every signal back to SIG_DFL, an empty mask
//!   execve(program, argv, envp)
//! ```
//!
//! The parent death signal makes the service die with the launcher even if the launcher
//! is killed outright; the `getppid` check covers a launcher that died before the `prctl`.
//! (The signal is tied to the *thread* that forked: in weir that is the launcher's only
//! thread; in the tests it is the thread running `serve`, which outlives its children.)
//!
//! All signals are blocked around the `fork`, so no signal handler of the parent process
//! can run in the child before its dispositions are reset; the parent's mask is restored
//! right after.
//!
//! Errors come back through a close-on-exec pipe: a successful `execve` closes it, and the
//! parent reads end of file; a failure writes the step and the errno (8 bytes, one
//! `write`, atomic on a pipe) and `_exit(127)`s. The parent blocks on that read — an exec
//! takes well under a millisecond, and the launcher has nothing else to do meanwhile that
//! cannot wait — then reaps the failed child at once, so a failed spawn leaves nothing.
//! Also from the parent, `setpgid(pid, pid)`: whichever of the two runs first makes the
//! group, so a `Kill` that follows `Spawned` cannot find the child outside its group.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The step of the child's preparation that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Step {
    /// Before the fork: a NUL byte, `=` in a variable name, a relative path (`EINVAL`).
    Prepare = 0,
    /// `fork` or `pipe2` in the launcher.
    Fork = 1,
    Setpgid = 2,
    Stdin = 3,
    Stdout = 4,
    Chdir = 5,
    Setgroups = 6,
    Setgid = 7,
    Setuid = 8,
    Pdeathsig = 9,
    /// The launcher died before the child could tie itself to it (`ESRCH`).
    Parent = 10,
    Exec = 11,
}

impl Step {
    fn from_u32(n: u32) -> Step {
        match n {
            0 => Step::Prepare,
            1 => Step::Fork,
            2 => Step::Setpgid,
            3 => Step::Stdin,
            4 => Step::Stdout,
            5 => Step::Chdir,
            6 => Step::Setgroups,
            7 => Step::Setgid,
            8 => Step::Setuid,
            9 => Step::Pdeathsig,
            10 => Step::Parent,
            _ => Step::Exec,
        }
    }
}

/// Why a spawn failed: the step and its errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpawnError {
    pub step: Step,
    pub errno: i32,
}

impl Step {
    /// The call that failed, for the log line.
    fn call(self) -> &'static str {
        match self {
            Step::Prepare => "the request",
            Step::Fork => "fork",
            Step::Setpgid => "setpgid",
            Step::Stdin => "dup2 to fd 0",
            Step::Stdout => "dup2 to fd 1",
            Step::Chdir => "chdir",
            Step::Setgroups => "setgroups",
            Step::Setgid => "setgid",
            Step::Setuid => "setuid",
            Step::Pdeathsig => "prctl(PR_SET_PDEATHSIG)",
            Step::Parent => "getppid",
            Step::Exec => "execve",
        }
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = io::Error::from_raw_os_error(self.errno);
        write!(f, "{}: {e}", self.step.call())
    }
}

fn invalid() -> SpawnError {
    SpawnError {
        step: Step::Prepare,
        errno: libc::EINVAL,
    }
}

/// Everything the child needs, made before the fork.
pub struct Prepared {
    program: CString,
    cwd: CString,
    /// The strings the pointer arrays point into: kept alive with them.
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// (uid, gid) to become; `None` to stay as the launcher is.
    user: Option<(libc::uid_t, libc::gid_t)>,
    /// The highest signal number whose disposition is reset.
    sig_max: libc::c_int,
    /// One above the highest descriptor number to mark close-on-exec where
    /// `close_range` is missing.
    fd_max: libc::c_int,
}

impl Prepared {
    /// Checks and converts a `Spawn`'s fields. `user` is applied as given: the caller
    /// drops it when the launcher is not root.
    pub fn new(
        program: &Path,
        args: &[Vec<u8>],
        env: &[(Vec<u8>, Vec<u8>)],
        cwd: &Path,
        user: Option<(u32, u32)>,
    ) -> Result<Prepared, SpawnError> {
        // Relative paths would be resolved against the launcher's own directory (and the
        // program after the chdir): never what weir meant.
        if !program.is_absolute() || !cwd.is_absolute() {
            return Err(invalid());
        }
        let c = |b: &[u8]| CString::new(b).map_err(|_| invalid());
        let program_c = c(program.as_os_str().as_bytes())?;
        let mut argv = vec![program_c.clone()];
        for a in args {
            argv.push(c(a)?);
        }
        let mut envp = Vec::with_capacity(env.len());
        for (k, v) in env {
            if k.is_empty() || k.contains(&b'=') {
                return Err(invalid());
            }
            let mut kv = Vec::with_capacity(k.len() + 1 + v.len());
            kv.extend_from_slice(k);
            kv.push(b'=');
            kv.extend_from_slice(v);
            envp.push(c(&kv)?);
        }
        let ptrs = |v: &[CString]| {
            v.iter()
                .map(|s| s.as_ptr())
                .chain([std::ptr::null()])
                .collect::<Vec<_>>()
        };
        Ok(Prepared {
            cwd: c(cwd.as_os_str().as_bytes())?,
            argv_ptrs: ptrs(&argv),
            envp_ptrs: ptrs(&envp),
            program: program_c,
            _argv: argv,
            _envp: envp,
            user,
            sig_max: libc::SIGRTMAX(),
            fd_max: fd_max(),
        })
    }
}

/// The descriptor limit, capped: a limit of millions would make the fallback loop of
/// the child take seconds, and descriptors that high are not inherited in practice.
fn fd_max() -> libc::c_int {
    // SAFETY: sysconf takes a constant and touches no memory.
    let n = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
    libc::c_int::try_from(n.clamp(1024, 65536)).unwrap_or(1024)
}

/// Forks and executes `p` with `stdin` as fd 0 and `devnull` as fd 1. Returns the child's
/// PID once it has executed the program.
pub fn spawn(p: &Prepared, stdin: RawFd, devnull: RawFd) -> Result<libc::pid_t, SpawnError> {
    let fork_err = |e: io::Error| SpawnError {
        step: Step::Fork,
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    };
    let (report_r, report_w) = cloexec_pipe().map_err(fork_err)?;
    // SAFETY: getpid cannot fail and touches no memory.
    let parent = unsafe { libc::getpid() };
    let blocked = block_all_signals();
    // SAFETY: fork duplicates the process; the child branch below calls only
    // async-signal-safe functions on memory prepared before the fork (`p`, the
    // descriptors) and ends in execve or _exit, never returning into Rust code.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: we are the child of a fork; `child` keeps to the rules above.
        unsafe { child(p, stdin, devnull, report_w.as_raw_fd(), parent) }
    }
    let fork_error = io::Error::last_os_error();
    restore_signals(&blocked);
    drop(report_w);
    if pid < 0 {
        return Err(fork_err(fork_error));
    }
    // SAFETY: setpgid on our own child with plain integers. It fails with EACCES once the
    // child has executed (it made its group itself by then) or ESRCH: both are fine.
    unsafe {
        libc::setpgid(pid, pid);
    }
    match read_report(&report_r) {
        None => Ok(pid),
        Some(err) => {
            reap_blocking(pid);
            Err(err)
        }
    }
}

/// The child side. Never returns.
///
/// # Safety
///
/// Only to be called in the child right after `fork`, with all signals blocked.
unsafe fn child(
    p: &Prepared,
    stdin: RawFd,
    devnull: RawFd,
    report: RawFd,
    parent: libc::pid_t,
) -> ! {
    // SAFETY (whole body): only async-signal-safe system calls, on integers, on the
    // prepared NUL-terminated strings and null-terminated pointer arrays in `p`, and on
    // stack locals; errno is read through its thread-local location, which is valid in
    // the child's only thread.
    unsafe {
        let fail = |step: Step| -> ! {
            let errno = *libc::__errno_location();
            let mut msg = [0u8; 8];
            msg[..4].copy_from_slice(&(step as u32).to_ne_bytes());
            msg[4..].copy_from_slice(&errno.to_ne_bytes());
            // Nothing can be done if this fails: the parent then sees end of file and
            // reports the child as spawned, and then its exit with code 127.
            libc::write(report, msg.as_ptr().cast(), msg.len());
            libc::_exit(127)
        };
        if libc::setpgid(0, 0) != 0 {
            fail(Step::Setpgid);
        }
        if !onto(stdin, 0) {
            fail(Step::Stdin);
        }
        if !onto(devnull, 1) {
            fail(Step::Stdout);
        }
        // Every descriptor the launcher opens is close-on-exec already; this is for those
        // it inherited without the flag (from whatever started weir).
        let all = libc::c_uint::MAX;
        if libc::syscall(libc::SYS_close_range, 3, all, libc::CLOSE_RANGE_CLOEXEC) != 0 {
            // Kernels before 5.11: one by one, as far as the limit read before the fork.
            for fd in 3..p.fd_max {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        if libc::chdir(p.cwd.as_ptr()) != 0 {
            fail(Step::Chdir);
        }
        if let Some((uid, gid)) = p.user {
            if libc::setgroups(1, &gid) != 0 {
                fail(Step::Setgroups);
            }
            if libc::setgid(gid) != 0 {
                fail(Step::Setgid);
            }
            if libc::setuid(uid) != 0 {
                fail(Step::Setuid);
            }
        }
        let sigkill = libc::SIGKILL as libc::c_ulong;
        if libc::prctl(libc::PR_SET_PDEATHSIG, sigkill, 0, 0, 0) != 0 {
            fail(Step::Pdeathsig);
        }
        if libc::getppid() != parent {
            *libc::__errno_location() = libc::ESRCH;
            fail(Step::Parent);
        }
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..=p.sig_max {
            // SIGKILL and SIGSTOP refuse with EINVAL: there is nothing to reset on those.
            // So do glibc's reserved signals (32, 33): a program that uses them (threads
            // cancelled, credentials set in every thread) installs its own handler.
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(
            p.program.as_ptr(),
            p.argv_ptrs.as_ptr(),
            p.envp_ptrs.as_ptr(),
        );
        fail(Step::Exec)
    }
}

/// Makes `fd` descriptor `target` of the child, without close-on-exec.
///
/// # Safety
///
/// Async-signal-safe; only for the child.
unsafe fn onto(fd: RawFd, target: RawFd) -> bool {
    // SAFETY: dup2 and fcntl on integers.
    unsafe {
        if fd == target {
            // dup2 to itself would leave close-on-exec set.
            let flags = libc::fcntl(fd, libc::F_GETFD);
            flags >= 0 && libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == 0
        } else {
            libc::dup2(fd, target) == target
        }
    }
}

/// A pipe whose both ends are close-on-exec: (read end, write end).
fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads the child's failure report; `None` at end of file (it executed).
fn read_report(r: &OwnedFd) -> Option<SpawnError> {
    let mut msg = [0u8; 8];
    let mut got = 0;
    while got < msg.len() {
        // SAFETY: reads into the unfilled tail of a live local buffer.
        let n = unsafe {
            libc::read(
                r.as_raw_fd(),
                msg[got..].as_mut_ptr().cast(),
                msg.len() - got,
            )
        };
        match n {
            0 => break,
            // read returns at most the length asked for, so this is a small positive.
            n if n > 0 => got += n as usize,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => {
                return Some(SpawnError {
                    step: Step::Fork,
                    errno: io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or(libc::EIO),
                })
            }
        }
    }
    match got {
        0 => None,
        8 => {
            let [a, b, c, d, e, f, g, h] = msg;
            Some(SpawnError {
                step: Step::from_u32(u32::from_ne_bytes([a, b, c, d])),
                errno: i32::from_ne_bytes([e, f, g, h]),
            })
        }
        // A torn report cannot come from a write of 8 bytes to a pipe; if it did, the
        // child failed somewhere.
        _ => Some(SpawnError {
            step: Step::Exec,
            errno: libc::EIO,
        }),
    }
}

/// Reaps a child that is exiting (it reported a failure and `_exit`s right after).
fn reap_blocking(pid: libc::pid_t) {
    loop {
        // SAFETY: waitpid on our own child, no status wanted.
        let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// Blocks every signal in this thread; returns the mask to restore.
fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is a plain C bit set; zeroed is a valid value for sigfillset and
    // pthread_sigmask to overwrite. Both calls only read and write these locals.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

fn restore_signals(old: &libc::sigset_t) {
    // SAFETY: sets this thread's mask from a valid set; the old one is not wanted.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut());
    }
}
