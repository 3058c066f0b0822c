//! The launcher's loop (`run::serve`) on a thread of this test process, with the test
//! playing weir on the other end of a socketpair; and, at the end, the launcher as a real
//! process (this test binary run again) behind `Launcher`. Real sockets and real children
//! (`/bin/sleep`, `/bin/sh`), checked from the outside through `/proc`: what a service
//! sees as fd 0, 1, its environment, directory, group, credentials and signal state; that
//! every exit is reported once with its status; and that when weir goes, nothing is left —
//! no process, no zombie, no socket file.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::proto::{Frames, Message, Report, Request};
use super::{run, Launcher, SHUTDOWN_GRACE};

/// Longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(10);

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("weir-launcher-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        // The canonical path: what /proc/PID/cwd shows.
        TempDir(dir.canonicalize().expect("the directory exists"))
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The test's side: weir's end of the control socket, and the launcher's thread.
struct Weir {
    stream: Option<UnixStream>,
    inbox: Frames,
    launcher: Option<JoinHandle<i32>>,
}

impl Weir {
    fn start() -> Weir {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        ours.set_read_timeout(Some(WAIT)).expect("set a timeout");
        let launcher = std::thread::spawn(move || run::serve(theirs));
        Weir {
            stream: Some(ours),
            inbox: Frames::new(),
            launcher: Some(launcher),
        }
    }

    fn stream(&mut self) -> &mut UnixStream {
        self.stream.as_mut().expect("the socket is open")
    }

    fn send(&mut self, req: &Request) {
        let mut frame = Vec::new();
        req.encode(&mut frame).expect("encodes");
        self.stream().write_all(&frame).expect("the launcher reads");
    }

    /// The next report, waiting at most `WAIT`.
    fn recv(&mut self) -> Report {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(r) = self.inbox.next::<Report>().expect("reports decode") {
                return r;
            }
            let n = self
                .stream()
                .read(&mut buf)
                .expect("a report within the time limit");
            assert!(n > 0, "the launcher closed the socket");
            self.inbox.extend(&buf[..n]);
        }
    }

    fn listen(&mut self, service: &str, path: &Path, mode: u32) -> Option<i32> {
        self.send(&Request::Listen {
            service: service.into(),
            path: path.into(),
            backlog: 16,
            mode,
            owner: None,
        });
        match self.recv() {
            Report::Listening { service: s, error } if s == service => error,
            other => panic!("not the Listening for {service}: {other:?}"),
        }
    }

    /// Sends a Spawn and returns its answer.
    fn spawn(&mut self, spec: Spawn<'_>) -> Report {
        self.send(&Request::Spawn {
            id: spec.id,
            service: spec.service.into(),
            program: spec.program.into(),
            args: spec.args.iter().map(|a| a.as_bytes().to_vec()).collect(),
            env: spec
                .env
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
            cwd: spec.cwd.into(),
            user: spec.user,
        });
        self.recv()
    }

    /// Spawns and expects success; returns the PID.
    fn spawned(&mut self, spec: Spawn<'_>) -> libc::pid_t {
        let id = spec.id;
        match self.spawn(spec) {
            Report::Spawned { id: i, pid } if i == id => libc::pid_t::try_from(pid).expect("a PID"),
            other => panic!("not Spawned {id}: {other:?}"),
        }
    }

    /// Waits for `Exited` of `id`: (code, signal).
    fn exited(&mut self, id: u64) -> (Option<i32>, Option<i32>) {
        match self.recv() {
            Report::Exited {
                id: i,
                code,
                signal,
            } if i == id => (code, signal),
            other => panic!("not Exited {id}: {other:?}"),
        }
    }

    /// Closes weir's end and returns the launcher's exit status (bounded wait).
    fn close(mut self) -> i32 {
        drop(self.stream.take());
        self.join()
    }

    fn join(&mut self) -> i32 {
        let handle = self.launcher.take().expect("joined once");
        let started = Instant::now();
        while !handle.is_finished() {
            assert!(started.elapsed() < WAIT, "the launcher did not return");
            std::thread::sleep(Duration::from_millis(10));
        }
        handle.join().expect("the launcher did not panic")
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        // A failing test still stops the launcher and its children.
        drop(self.stream.take());
        if let Some(h) = self.launcher.take() {
            let started = Instant::now();
            while !h.is_finished() && started.elapsed() < WAIT {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A Spawn request's fields, with defaults.
struct Spawn<'a> {
    id: u64,
    service: &'a str,
    program: &'a str,
    args: &'a [&'a str],
    env: &'a [(&'a str, &'a str)],
    cwd: &'a str,
    user: Option<(u32, u32)>,
}

fn cmd(id: u64, program: &'static str, args: &'static [&'static str]) -> Spawn<'static> {
    Spawn {
        id,
        service: "svc",
        program,
        args,
        env: &[],
        cwd: "/",
        user: None,
    }
}

fn sh(id: u64, args: &'static [&'static str; 2]) -> Spawn<'static> {
    Spawn {
        args,
        ..cmd(id, "/bin/sh", &[])
    }
}

fn proc_file(pid: libc::pid_t, name: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{name}")).expect("/proc is readable")
}

fn proc_link(pid: libc::pid_t, name: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/{name}")).expect("/proc link is readable")
}

/// The value of `Key:` in /proc/PID/status, tabs made single spaces.
fn status_field(pid: libc::pid_t, key: &str) -> String {
    let status = proc_file(pid, "status");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("{key} in /proc/{pid}/status"));
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// True once `pid` no longer exists — not even as a zombie of ours.
fn is_gone(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(pid, 0) };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// True once `pid` is not running: gone, or a zombie some other parent has not reaped
/// (an orphan's new parent in a container may not reap).
fn is_dead(pid: libc::pid_t) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < WAIT, "waited too long for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The flags and path of the unix socket with inode `ino`, from /proc/net/unix.
fn unix_socket(ino: &str) -> Option<(u32, String)> {
    let table = std::fs::read_to_string("/proc/net/unix").expect("/proc/net/unix");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(6) == Some(&ino)).then(|| {
            let flags = u32::from_str_radix(f[3], 16).expect("hex flags");
            (flags, f.get(7).copied().unwrap_or("").to_owned())
        })
    })
}

/// `__SO_ACCEPTCON` in /proc/net/unix: the socket is listening.
const ACCEPTCON: u32 = 1 << 16;

#[test]
fn a_service_gets_its_socket_its_environment_and_its_directory() {
    let dir = TempDir::new();
    let sock = dir.join("svc.sock");
    let cwd = dir.0.to_str().expect("a UTF-8 temp dir").to_owned();
    let mut w = Weir::start();
    assert_eq!(w.listen("svc", &sock, 0o600), None);
    let mode = std::fs::metadata(&sock)
        .expect("the socket file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let pid = w.spawned(Spawn {
        env: &[("A", "1"), ("WEIR_TEST", "x y=z")],
        cwd: &cwd,
        ..cmd(1, "/bin/sleep", &["30"])
    });
    assert_eq!(proc_file(pid, "environ"), "A=1\0WEIR_TEST=x y=z\0");
    assert_eq!(proc_link(pid, "cwd"), dir.0);
    assert_eq!(proc_file(pid, "cmdline"), "/bin/sleep\x0030\0");
    // fd 0 is the listening socket bound at the path; fd 1 is /dev/null.
    let fd0 = proc_link(pid, "fd/0");
    let fd0 = fd0.to_str().expect("a link text");
    let ino = fd0
        .strip_prefix("socket:[")
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or_else(|| panic!("fd 0 is {fd0}"));
    let (flags, path) = unix_socket(ino).expect("fd 0 is a unix socket");
    assert_eq!(path, sock.to_str().expect("UTF-8"));
    assert_ne!(flags & ACCEPTCON, 0, "fd 0 is listening");
    assert_eq!(proc_link(pid, "fd/1"), Path::new("/dev/null"));
    // Nothing else of the launcher's: fds 0, 1, 2 only. Right after the exec the dynamic
    // loader may still hold a library open for a moment (fd 3), so look until it settles.
    let fds_of = || {
        let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("/proc")
            .map(|e| e.expect("entry").file_name().into_string().expect("digits"))
            .collect();
        fds.sort();
        fds
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut fds = fds_of();
    while fds != ["0", "1", "2"] && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        fds = fds_of();
    }
    assert_eq!(fds, ["0", "1", "2"]);
    // Its own group; no signal blocked or ignored (this test process ignores SIGPIPE).
    let stat = proc_file(pid, "stat");
    let after = stat.rsplit_once(')').expect("stat").1;
    let pgrp: libc::pid_t = after
        .split_whitespace()
        .nth(2)
        .expect("pgrp")
        .parse()
        .expect("num");
    assert_eq!(pgrp, pid);
    assert_eq!(status_field(pid, "SigBlk"), "0000000000000000");
    // Except for the C library's reserved signals (32 and 33 in glibc), which its
    // sigaction refuses to touch: whoever ran this test may have left them ignored.
    let ignored = u64::from_str_radix(&status_field(pid, "SigIgn"), 16).expect("hex");
    assert_eq!(ignored & !(0b11 << 31), 0, "ignored: {ignored:#x}");
    // A client connecting meanwhile waits in the backlog.
    UnixStream::connect(&sock).expect("the socket is listening");

    w.send(&Request::Kill { id: 1 });
    assert_eq!(w.exited(1), (None, Some(libc::SIGKILL)));
    assert!(is_gone(pid), "killed and reaped");
    // A late Kill for it does nothing (and reports nothing).
    w.send(&Request::Kill { id: 1 });

    w.send(&Request::Unlisten {
        service: "svc".into(),
    });
    // Requests are handled in order: once this one is answered, Unlisten was done.
    assert_eq!(w.listen("other", &dir.join("other.sock"), 0o660), None);
    assert!(!sock.exists(), "Unlisten removes the file");
    let mode = std::fs::metadata(dir.join("other.sock"))
        .expect("file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);
    assert_eq!(w.close(), 0);
    assert!(
        !dir.join("other.sock").exists(),
        "the end removes every socket file"
    );
}

#[test]
fn listen_replaces_stale_sockets_and_nothing_else() {
    let dir = TempDir::new();
    let mut w = Weir::start();
    let stale = dir.join("stale.sock");
    drop(UnixListener::bind(&stale).expect("bind"));
    assert!(stale.exists(), "a closed socket leaves its file");
    assert_eq!(w.listen("a", &stale, 0o600), None);
    UnixStream::connect(&stale).expect("the new socket listens");

    let file = dir.join("file");
    std::fs::write(&file, "keep").expect("write");
    assert_eq!(w.listen("b", &file, 0o600), Some(libc::EADDRINUSE));
    assert_eq!(std::fs::read_to_string(&file).expect("kept"), "keep");

    assert_eq!(
        w.listen("a", &dir.join("again.sock"), 0o600),
        Some(libc::EEXIST)
    );
    assert_eq!(
        w.listen("c", &dir.join("no/such/dir.sock"), 0o600),
        Some(libc::ENOENT)
    );
    let long = dir.join(&"x".repeat(200));
    assert_eq!(w.listen("d", &long, 0o600), Some(libc::EINVAL));
    assert_eq!(w.close(), 0);
    assert!(!stale.exists());
}

#[test]
fn spawn_failures_are_reported_with_their_errno() {
    let dir = TempDir::new();
    let mut w = Weir::start();
    let cases: [(Spawn<'_>, i32); 6] = [
        (cmd(1, "/nonexistent/weir", &[]), libc::ENOENT),
        (cmd(2, "bin/sleep", &["1"]), libc::EINVAL),
        (
            Spawn {
                cwd: "/nonexistent/dir",
                ..cmd(3, "/bin/sleep", &["1"])
            },
            libc::ENOENT,
        ),
        (
            Spawn {
                env: &[("A=B", "c")],
                ..cmd(4, "/bin/sleep", &["1"])
            },
            libc::EINVAL,
        ),
        (cmd(5, "/bin/sl\0eep", &[]), libc::EINVAL),
        // A directory is not a program.
        (cmd(6, "/", &[]), libc::EACCES),
    ];
    for (spec, errno) in cases {
        let id = spec.id;
        assert_eq!(
            w.spawn(spec),
            Report::SpawnFailed { id, errno },
            "spawn {id}"
        );
    }
    // A file without execute permission.
    let script = dir.join("script");
    std::fs::write(&script, "#!/bin/sh\n").expect("write");
    let script = script.to_str().expect("UTF-8").to_owned();
    let r = w.spawn(Spawn {
        program: &script,
        ..cmd(7, "", &[])
    });
    // Root may execute nothing without an x bit either.
    assert_eq!(
        r,
        Report::SpawnFailed {
            id: 7,
            errno: libc::EACCES
        }
    );

    // An id still in use is refused; the process keeps running under it.
    let pid = w.spawned(cmd(8, "/bin/sleep", &["30"]));
    assert_eq!(
        w.spawn(cmd(8, "/bin/sleep", &["30"])),
        Report::SpawnFailed {
            id: 8,
            errno: libc::EEXIST
        }
    );
    assert!(!is_dead(pid));
    assert_eq!(w.close(), 0);
    assert!(is_gone(pid));
}

#[test]
fn exits_are_reported_once_with_their_status() {
    let dir = TempDir::new();
    let mut w = Weir::start();
    w.spawned(sh(1, &["-c", "exit 3"]));
    assert_eq!(w.exited(1), (Some(3), None));
    w.spawned(sh(2, &["-c", "kill -TERM $$"]));
    assert_eq!(w.exited(2), (None, Some(libc::SIGTERM)));

    // Stop: SIGTERM, which sleep obeys.
    let pid = w.spawned(cmd(3, "/bin/sleep", &["30"]));
    w.send(&Request::Stop { id: 3 });
    assert_eq!(w.exited(3), (None, Some(libc::SIGTERM)));
    assert!(is_gone(pid));

    // Stop of a process that ignores SIGTERM: SIGKILL after the grace.
    let ready = dir.join("ready");
    let script = format!("trap '' TERM; : > {}; exec /bin/sleep 30", ready.display());
    let pid = w.spawned(Spawn {
        args: &["-c", &script],
        ..cmd(4, "/bin/sh", &[])
    });
    wait_for("the trap to be set", || ready.exists());
    let started = Instant::now();
    w.send(&Request::Stop { id: 4 });
    assert_eq!(w.exited(4), (None, Some(libc::SIGKILL)));
    let took = started.elapsed();
    assert!(
        took >= super::children::STOP_GRACE - Duration::from_millis(50),
        "killed after {took:?}"
    );
    assert!(is_gone(pid));
    assert_eq!(w.close(), 0);
}

#[test]
fn what_a_service_leaves_behind_goes_with_it() {
    let dir = TempDir::new();
    let mut w = Weir::start();
    let file = dir.join("pid");
    let script = format!("/bin/sleep 30 & echo $! > {}; exit 0", file.display());
    w.spawned(Spawn {
        args: &["-c", &script],
        ..cmd(1, "/bin/sh", &[])
    });
    assert_eq!(w.exited(1), (Some(0), None));
    let orphan: libc::pid_t = std::fs::read_to_string(&file)
        .expect("the script wrote the PID")
        .trim()
        .parse()
        .expect("a PID");
    wait_for("the orphan to die", || is_dead(orphan));
    assert_eq!(w.close(), 0);
}

#[test]
fn when_weir_goes_every_service_goes_and_no_zombie_is_left() {
    let dir = TempDir::new();
    let sock = dir.join("svc.sock");
    let mut w = Weir::start();
    assert_eq!(w.listen("svc", &sock, 0o600), None);
    let obedient = w.spawned(cmd(1, "/bin/sleep", &["30"]));
    let ready = dir.join("ready");
    let script = format!("trap '' TERM; : > {}; exec /bin/sleep 30", ready.display());
    let stubborn = w.spawned(Spawn {
        args: &["-c", &script],
        ..cmd(2, "/bin/sh", &[])
    });
    wait_for("the trap to be set", || ready.exists());
    let started = Instant::now();
    assert_eq!(w.close(), 0);
    let took = started.elapsed();
    assert!(
        took < super::children::STOP_GRACE + Duration::from_secs(1),
        "{took:?}"
    );
    for pid in [obedient, stubborn] {
        // This process is their parent: a zombie would still answer kill(pid, 0).
        assert!(is_gone(pid), "process {pid} is left");
    }
    assert!(!sock.exists(), "the socket file is removed");
}

#[test]
fn garbled_requests_end_the_launcher_and_its_services() {
    let garbage: [&[u8]; 3] = [
        // A frame of 3 bytes with an unknown tag.
        &[0, 0, 0, 3, 99, 0, 0],
        // A length beyond the limit.
        &[0xff, 0xff, 0xff, 0xff, 1],
        // A Kill with a byte too many.
        &[0, 0, 0, 10, 4, 0, 0, 0, 0, 0, 0, 0, 1, 0],
    ];
    for bytes in garbage {
        let mut w = Weir::start();
        let pid = w.spawned(cmd(1, "/bin/sleep", &["30"]));
        w.stream().write_all(bytes).expect("write");
        assert_eq!(w.join(), 1, "{bytes:?}");
        assert!(is_gone(pid));
    }
    // A request cut short by the end of the stream is just the end.
    let mut w = Weir::start();
    w.stream().write_all(&[0, 0, 0, 9, 4]).expect("write");
    assert_eq!(w.close(), 0);
}

#[test]
fn user_is_applied_when_root_and_ignored_otherwise() {
    let mut w = Weir::start();
    let nobody = 65534;
    let pid = w.spawned(Spawn {
        user: Some((nobody, nobody)),
        ..cmd(1, "/bin/sleep", &["30"])
    });
    if crate::privs::is_root() {
        assert_eq!(status_field(pid, "Uid"), "65534 65534 65534 65534");
        assert_eq!(status_field(pid, "Gid"), "65534 65534 65534 65534");
        assert_eq!(status_field(pid, "Groups"), "65534");
    } else {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        assert!(status_field(pid, "Uid").starts_with(&format!("{uid} ")));
    }
    w.send(&Request::Kill { id: 1 });
    assert_eq!(w.exited(1), (None, Some(libc::SIGKILL)));
    assert_eq!(w.close(), 0);
}

#[test]
fn a_listener_can_be_given_an_owner() {
    if !crate::privs::is_root() {
        return;
    }
    let dir = TempDir::new();
    let sock = dir.join("owned.sock");
    let mut w = Weir::start();
    w.send(&Request::Listen {
        service: "s".into(),
        path: sock.clone(),
        backlog: 1,
        mode: 0o600,
        owner: Some((65534, 65534)),
    });
    assert!(matches!(w.recv(), Report::Listening { error: None, .. }));
    let meta = std::fs::metadata(&sock).expect("the file");
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    assert_eq!(w.close(), 0);
}

/// Set in the copy of this test binary that plays the launcher process.
const AS_LAUNCHER: &str = "WEIR_LAUNCHER_TEST_PROCESS";

/// `Launcher` with a real launcher process: this test binary run again, which (seeing
/// `AS_LAUNCHER`) runs `run::main` on the socket `Launcher` gave it as standard input —
/// what `weir launcher` does.
#[test]
fn launcher_process_end_to_end() {
    if std::env::var_os(AS_LAUNCHER).is_some() {
        std::process::exit(run::main());
    }
    let dir = TempDir::new();
    let sock = dir.join("svc.sock");
    let start = || {
        let mut command = Command::new(std::env::current_exe().expect("the test binary"));
        command
            .args([
                "--exact",
                "launcher::tests::launcher_process_end_to_end",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(AS_LAUNCHER, "1");
        Launcher::start_command(command).expect("the launcher starts")
    };

    // Shut down in order.
    let mut l = start();
    l.send(&Request::Listen {
        service: "svc".into(),
        path: sock.clone(),
        backlog: 8,
        mode: 0o600,
        owner: None,
    })
    .expect("send");
    assert_eq!(
        recv(&mut l),
        Report::Listening {
            service: "svc".into(),
            error: None
        }
    );
    l.send(&spawn_sleep(1)).expect("send");
    let pid = match recv(&mut l) {
        Report::Spawned { id: 1, pid } => pid,
        other => panic!("{other:?}"),
    };
    let pid = libc::pid_t::try_from(pid).expect("a PID");
    assert_eq!(proc_link(pid, "fd/1"), Path::new("/dev/null"));
    assert!(!proc_link(pid, "fd/0")
        .to_str()
        .expect("text")
        .contains("pipe"));
    l.send(&Request::Kill { id: 1 }).expect("send");
    assert_eq!(
        recv(&mut l),
        Report::Exited {
            id: 1,
            code: None,
            signal: Some(libc::SIGKILL)
        }
    );
    l.send(&spawn_sleep(2)).expect("send");
    let pid = match recv(&mut l) {
        Report::Spawned { id: 2, pid } => libc::pid_t::try_from(pid).expect("a PID"),
        other => panic!("{other:?}"),
    };
    let status = l.shutdown(SHUTDOWN_GRACE).expect("the launcher exits");
    assert!(status.success(), "{status:?}");
    wait_for("the service to die", || is_dead(pid));
    assert!(!sock.exists(), "the launcher removed the socket file");

    // A launcher killed outright takes its services with it (parent death signal).
    let mut l = start();
    l.send(&spawn_sleep(3)).expect("send");
    let pid = match recv(&mut l) {
        Report::Spawned { id: 3, pid } => libc::pid_t::try_from(pid).expect("a PID"),
        other => panic!("{other:?}"),
    };
    let launcher = libc::pid_t::try_from(l.pid()).expect("a PID");
    // SAFETY: SIGKILL to our own child, the launcher.
    unsafe {
        libc::kill(launcher, libc::SIGKILL);
    }
    wait_for("the service to die with the launcher", || is_dead(pid));
    let err = loop {
        match l.try_recv() {
            Ok(Some(r)) => panic!("a report from a dead launcher: {r:?}"),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    let status = l.shutdown(Duration::from_secs(1)).expect("reaped");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
}

fn spawn_sleep(id: u64) -> Request {
    Request::Spawn {
        id,
        service: "svc".into(),
        program: "/bin/sleep".into(),
        args: vec![b"30".to_vec()],
        env: Vec::new(),
        cwd: "/".into(),
        user: None,
    }
}

/// The next report from a real launcher: poll its descriptor, then `try_recv`.
fn recv(l: &mut Launcher) -> Report {
    let started = Instant::now();
    loop {
        if let Some(r) = l.try_recv().expect("the launcher is there") {
            return r;
        }
        assert!(started.elapsed() < WAIT, "no report");
        let mut fd = libc::pollfd {
            fd: l.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        unsafe {
            libc::poll(&mut fd, 1, 100);
        }
    }
}
