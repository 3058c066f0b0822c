//! The process table on its own, driven by a miniature event loop (`Harness`): real
//! children (`/bin/cat`, `/bin/sh` with arguments, `/usr/bin/env`, `/bin/pwd`), real
//! pipes, a real `mio::Poll`. The checks are the shell's promises: bytes in and out are
//! exact, the environment and working directory are exactly the spec's, `Kill` reaches the
//! whole group at once, `EPIPE` is `StreamWriteClosed`, errors classify, and after many children
//! no descriptor and no zombie is left.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::{Events, Poll};
use weir_core::server::{Channel, Completion, ExitStatus, Input, IoError, SpawnSpec, StreamId};
use weir_core::Token;

use super::Processes;
use crate::token::{self, Source};

/// Longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(10);

/// A poll, a process table and the inputs it produced, not yet consumed by the test.
struct Harness {
    poll: Poll,
    events: Events,
    procs: Processes,
    scratch: Vec<u8>,
    inputs: VecDeque<Input>,
    next_token: u64,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            poll: Poll::new().expect("epoll is available"),
            events: Events::with_capacity(64),
            procs: Processes::new(),
            scratch: vec![0; 64 * 1024],
            inputs: VecDeque::new(),
            next_token: 1,
        }
    }

    /// One turn of the loop: wait (briefly) for events, note them, run a round.
    fn turn(&mut self) {
        let timeout = if self.procs.has_ready() {
            Duration::ZERO
        } else {
            self.procs
                .max_sleep()
                .unwrap_or(Duration::from_millis(50))
                .min(Duration::from_millis(50))
        };
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("poll: {e}"),
        }
        for event in &self.events {
            match token::decode(event.token()) {
                Source::Proc {
                    key,
                    generation,
                    part,
                } => self.procs.on_event(key, generation, part, event),
                other => panic!("unexpected event source {other:?}"),
            }
        }
        self.procs.poll_unwatched();
        self.procs
            .run_ready(self.poll.registry(), &mut self.scratch, &mut self.inputs);
    }

    /// Runs the loop until an input satisfies `pick`; removes and returns it.
    fn wait_for(&mut self, what: &str, pick: impl Fn(&Input) -> bool) -> Input {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.inputs.iter().position(&pick) {
                return self.inputs.remove(i).expect("position is in range");
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {WAIT:?}; inputs: {:?}",
                self.inputs
            );
            self.turn();
        }
    }

    fn spawn_result(&mut self, spec: &SpawnSpec) -> (Token, Completion) {
        let token = Token(self.next_token);
        self.next_token += 1;
        let registry = self.poll.registry();
        self.procs.spawn(registry, token, spec, &mut self.inputs);
        match self.wait_for(
            "Completed",
            |i| matches!(i, Input::Completed { token: t, .. } if *t == token),
        ) {
            Input::Completed { result, .. } => (token, result),
            _ => unreachable!("picked a Completed"),
        }
    }

    fn spawn(&mut self, spec: &SpawnSpec) -> StreamId {
        let (token, result) = self.spawn_result(spec);
        assert_eq!(result, Completion::Spawned, "spawning {spec:?}");
        StreamId(token)
    }

    fn pid(&self, proc: StreamId) -> libc::pid_t {
        self.procs.slab[self.procs.by_id[&proc]].pid
    }

    fn wait_exit(&mut self, proc: StreamId) -> ExitStatus {
        match self.wait_for(
            "Exited",
            |i| matches!(i, Input::Exited { stream: p, .. } if *p == proc),
        ) {
            Input::Exited { status, .. } => status,
            _ => unreachable!("picked an Exited"),
        }
    }

    /// Reads one output stream to its end.
    fn read_to_eof(&mut self, proc: StreamId, stream: Channel) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            self.procs
                .read_output(proc, stream, 16 * 1024, &mut self.inputs);
            match self.wait_for("output", |i| {
                matches!(i, Input::StreamReceived { stream: p, channel: s, .. }
                    | Input::StreamEof { stream: p, channel: s } if *p == proc && *s == stream)
            }) {
                Input::StreamReceived { data, .. } => {
                    assert!(!data.is_empty() && data.len() <= 16 * 1024);
                    out.extend_from_slice(&data);
                }
                _ => return out,
            }
        }
    }

    /// Feeds `input` to the process's stdin (then closes it) while reading both outputs,
    /// the way the core does it: one write and one read per stream outstanding at a time.
    /// Returns stdout, stderr and the exit status.
    fn pump(&mut self, proc: StreamId, input: &[u8]) -> (Vec<u8>, Vec<u8>, ExitStatus) {
        let input = Bytes::copy_from_slice(input);
        let mut sent = 0;
        let mut writing = false;
        let mut stdin_done = false;
        let mut outs = [Vec::new(), Vec::new()];
        let mut reading = [false, false];
        let mut eof = [false, false];
        let mut status = None;
        let streams = [Channel::Main, Channel::Errors];
        let deadline = Instant::now() + WAIT;
        while !(eof[0] && eof[1] && status.is_some()) {
            assert!(Instant::now() < deadline, "process {proc:?} did not finish");
            if !stdin_done && !writing {
                if sent < input.len() {
                    let end = input.len().min(sent + 100_000);
                    self.procs
                        .write_stdin(proc, input.slice(sent..end), &mut self.inputs);
                    writing = true;
                } else {
                    self.procs.close_stdin(self.poll.registry(), proc);
                    stdin_done = true;
                }
            }
            for (i, &stream) in streams.iter().enumerate() {
                if !reading[i] && !eof[i] {
                    self.procs
                        .read_output(proc, stream, 64 * 1024, &mut self.inputs);
                    reading[i] = true;
                }
            }
            self.turn();
            let mut others = VecDeque::new();
            while let Some(input) = self.inputs.pop_front() {
                if input_proc(&input) != Some(proc) {
                    others.push_back(input);
                    continue;
                }
                match input {
                    Input::StreamWritten { stream: p, n } if p == proc => {
                        assert!(n >= 1);
                        sent += usize::try_from(n).expect("n fits");
                        writing = false;
                    }
                    Input::StreamWriteClosed { stream: p } if p == proc => {
                        writing = false;
                        stdin_done = true;
                    }
                    Input::StreamReceived {
                        stream: p,
                        channel: stream,
                        data,
                    } if p == proc => {
                        let i = usize::from(stream == Channel::Errors);
                        outs[i].extend_from_slice(&data);
                        reading[i] = false;
                    }
                    Input::StreamEof {
                        stream: p,
                        channel: stream,
                    } if p == proc => {
                        let i = usize::from(stream == Channel::Errors);
                        eof[i] = true;
                        reading[i] = false;
                    }
                    Input::Exited {
                        stream: p,
                        status: s,
                    } if p == proc => {
                        assert!(status.is_none(), "Exited twice");
                        status = Some(s);
                    }
                    other => panic!("unexpected input {other:?}"),
                }
            }
            self.inputs = others;
        }
        let [stdout, stderr] = outs;
        // Every `Some` was checked by the loop condition.
        (stdout, stderr, status.expect("loop ends with a status"))
    }

    fn release(&mut self, proc: StreamId) {
        self.procs.release(self.poll.registry(), proc);
        self.inputs.retain(|i| input_proc(i) != Some(proc));
    }

    /// Runs the loop until every released child is reaped.
    fn settle_reaping(&mut self) {
        let deadline = Instant::now() + WAIT;
        while self.procs.len() > 0 {
            assert!(
                Instant::now() < deadline,
                "{} children not reaped",
                self.procs.len()
            );
            self.turn();
        }
    }
}

fn input_proc(input: &Input) -> Option<StreamId> {
    match input {
        Input::StreamWritten { stream: proc, .. }
        | Input::StreamWriteClosed { stream: proc }
        | Input::StreamReceived { stream: proc, .. }
        | Input::StreamEof { stream: proc, .. }
        | Input::Exited { stream: proc, .. } => Some(*proc),
        _ => None,
    }
}

fn spec(program: &str, args: &[&str], env: &[(&str, &str)], cwd: &Path) -> SpawnSpec {
    SpawnSpec {
        program: PathBuf::from(program),
        args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        env: env
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
        cwd: cwd.to_path_buf(),
    }
}

fn sh(script: &str) -> SpawnSpec {
    spec("/bin/sh", &["-c", script], &[], Path::new("/"))
}

/// True once our child `pid` has been reaped (it is no longer our child at all).
fn is_reaped(pid: libc::pid_t) -> bool {
    // SAFETY: waitpid with WNOHANG on a specific PID and no status pointer; if the child is
    // still ours and not finished it returns 0 and changes nothing.
    let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD)
}

/// The state letter of `/proc/PID/stat`, or `None` if the process is gone.
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) S ...": the state follows the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "weir-process-{tag}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        let dir: PathBuf = dir
            .to_string_lossy()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "/-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
            .into();
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        TempDir(std::fs::canonicalize(&dir).expect("just created"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_mebibyte_goes_through_cat_byte_exact() {
    let mut h = Harness::new();
    let data: Vec<u8> = (0..1_048_576u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let p = h.spawn(&spec("/bin/cat", &[], &[], Path::new("/")));
    let (out, err, status) = h.pump(p, &data);
    assert!(out == data, "stdout differs ({} bytes)", out.len());
    assert!(err.is_empty());
    assert_eq!(status, ExitStatus::Code(0));
    h.release(p);
    assert_eq!(h.procs.len(), 0, "an exited child is reaped at release");
}

#[test]
fn stdout_stderr_and_exit_code() {
    let mut h = Harness::new();
    let p = h.spawn(&sh("echo out; echo err >&2; exit 3"));
    let (out, err, status) = h.pump(p, b"");
    assert_eq!(out, b"out\n");
    assert_eq!(err, b"err\n");
    assert_eq!(status, ExitStatus::Code(3));
    let pid = h.pid(p);
    h.release(p);
    assert!(is_reaped(pid));
}

#[test]
fn arguments_are_passed_without_a_shell() {
    let mut h = Harness::new();
    let p = h.spawn(&spec(
        "/bin/sh",
        &[
            "-c",
            "printf '%s|' \"$0\" \"$@\"",
            "zero",
            "a b",
            "$HOME",
            "*",
            "",
        ],
        &[],
        Path::new("/"),
    ));
    let (out, _, status) = h.pump(p, b"");
    assert_eq!(String::from_utf8_lossy(&out), "zero|a b|$HOME|*||");
    assert_eq!(status, ExitStatus::Code(0));
    h.release(p);
}

#[test]
fn the_environment_is_exactly_the_spec() {
    let mut h = Harness::new();
    let mut s = spec(
        "/usr/bin/env",
        &[],
        &[("A", "1"), ("B", "x y=z"), ("EMPTY", "")],
        Path::new("/"),
    );
    s.env.push((b"BYTES".to_vec(), vec![0xff, b'\t', 0x80]));
    let p = h.spawn(&s);
    let (out, _, status) = h.pump(p, b"");
    // std keeps the variables sorted by name; CGI gives order no meaning.
    let mut got: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
    got.sort_unstable();
    let mut want: Vec<&[u8]> = vec![b"", b"A=1", b"B=x y=z", b"EMPTY=", b"BYTES=\xff\t\x80"];
    want.sort_unstable();
    assert_eq!(got, want, "{}", String::from_utf8_lossy(&out));
    assert_eq!(status, ExitStatus::Code(0));
    h.release(p);
}

#[test]
fn the_working_directory_is_applied() {
    let mut h = Harness::new();
    let dir = TempDir::new("cwd");
    let p = h.spawn(&spec("/bin/pwd", &[], &[], &dir.0));
    let (out, _, status) = h.pump(p, b"");
    assert_eq!(
        String::from_utf8_lossy(&out),
        format!("{}\n", dir.0.display())
    );
    assert_eq!(status, ExitStatus::Code(0));
    h.release(p);
}

#[test]
fn kill_is_prompt_and_reaches_grandchildren() {
    let mut h = Harness::new();
    // The shell starts a grandchild in the same group, reports its PID, and waits.
    let p = h.spawn(&sh("sleep 60 & echo $!; wait"));
    let mut line = Vec::new();
    while !line.ends_with(b"\n") {
        h.procs.read_output(p, Channel::Main, 64, &mut h.inputs);
        match h.wait_for("the grandchild's PID", |i| {
            matches!(i, Input::StreamReceived { .. })
        }) {
            Input::StreamReceived { data, .. } => line.extend_from_slice(&data),
            _ => unreachable!("picked an Output"),
        }
    }
    let grandchild: i32 = String::from_utf8_lossy(&line)
        .trim()
        .parse()
        .expect("the shell printed a PID");
    assert!(matches!(proc_state(grandchild), Some(c) if c != 'Z'));
    let started = Instant::now();
    h.procs.kill(p);
    assert_eq!(h.wait_exit(p), ExitStatus::Signal(libc::SIGKILL));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "Kill took {:?}",
        started.elapsed()
    );
    // The grandchild died too (gone, or a zombie waiting for whoever adopted it).
    let deadline = Instant::now() + Duration::from_secs(5);
    while matches!(proc_state(grandchild), Some(c) if c != 'Z') {
        assert!(
            Instant::now() < deadline,
            "grandchild {grandchild} survived Kill"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Every writer of the output is dead: it ends.
    h.read_to_eof(p, Channel::Main);
    let pid = h.pid(p);
    h.release(p);
    assert!(is_reaped(pid));
}

#[test]
fn a_closed_stdin_gives_stdin_closed() {
    let mut h = Harness::new();
    let p = h.spawn(&spec("/bin/true", &[], &[], Path::new("/")));
    assert_eq!(h.wait_exit(p), ExitStatus::Code(0));
    h.procs
        .write_stdin(p, Bytes::from(vec![b'x'; 200_000]), &mut h.inputs);
    let got = h.wait_for("StdinClosed", |i| {
        matches!(
            i,
            Input::StreamWriteClosed { .. } | Input::StreamWritten { .. }
        )
    });
    assert_eq!(got, Input::StreamWriteClosed { stream: p });
    // Once closed, it stays closed and says so at once.
    h.procs
        .write_stdin(p, Bytes::from_static(b"more"), &mut h.inputs);
    assert_eq!(
        h.inputs.pop_front(),
        Some(Input::StreamWriteClosed { stream: p })
    );
    assert_eq!(h.read_to_eof(p, Channel::Main), b"");
    assert_eq!(h.read_to_eof(p, Channel::Main), b"", "EOF is repeated");
    h.release(p);
    assert_eq!(h.procs.len(), 0);
}

#[test]
fn spawn_errors_are_classified() {
    let mut h = Harness::new();
    let dir = TempDir::new("errors");
    let plain = dir.0.join("plain");
    std::fs::write(&plain, "#!/bin/sh\necho hi\n").expect("write");
    let garbage = dir.0.join("garbage");
    std::fs::write(&garbage, [0x7f, b'E', b'L', b'F', 0, 1, 2, 3]).expect("write");
    let chmod = |p: &Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    chmod(&plain, 0o644);
    chmod(&garbage, 0o755);
    let missing = dir.0.join("missing");
    let cases = [
        (
            spec(missing.to_str().expect("utf-8"), &[], &[], &dir.0),
            IoError::NotFound,
        ),
        (spec("/bin/true", &[], &[], &missing), IoError::NotFound),
        (
            spec(plain.to_str().expect("utf-8"), &[], &[], &dir.0),
            IoError::PermissionDenied,
        ),
        (
            spec(garbage.to_str().expect("utf-8"), &[], &[], &dir.0),
            IoError::PermissionDenied,
        ),
        (
            spec(dir.0.to_str().expect("utf-8"), &[], &[], &dir.0),
            IoError::PermissionDenied,
        ),
        (spec("/bin/echo", &["a\0b"], &[], &dir.0), IoError::Other),
    ];
    for (s, want) in cases {
        let (_, got) = h.spawn_result(&s);
        assert_eq!(got, Completion::Failed(want), "spawning {s:?}");
    }
    assert_eq!(h.procs.len(), 0);
}

#[test]
fn our_ends_are_nonblocking_and_close_on_exec() {
    let mut h = Harness::new();
    let p = h.spawn(&spec("/bin/cat", &[], &[], Path::new("/")));
    let proc = &h.procs.slab[h.procs.by_id[&p]];
    use std::os::fd::AsRawFd;
    let pipes: Vec<i32> = [&proc.stdin.file, &proc.stdout.file, &proc.stderr.file]
        .iter()
        .map(|f| f.as_ref().expect("open").as_raw_fd())
        .collect();
    // Without pidfd support (kernels before 5.3) there is no pidfd to check.
    let pidfd = proc.pidfd.as_ref().map(AsRawFd::as_raw_fd);
    for &fd in pipes.iter().chain(pidfd.as_ref()) {
        // SAFETY: F_GETFD only reads a flag of a descriptor the table holds open.
        let fd_flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(
            fd_flags & libc::FD_CLOEXEC != 0,
            "fd {fd} is inherited by children"
        );
    }
    // The pidfd is only polled, never read, so only the pipes need O_NONBLOCK.
    for fd in pipes {
        // SAFETY: F_GETFL only reads the flags of a descriptor the table holds open.
        let fl_flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        assert!(fl_flags & libc::O_NONBLOCK != 0, "fd {fd} blocks");
    }
    h.procs.kill(p);
    assert_eq!(h.wait_exit(p), ExitStatus::Signal(libc::SIGKILL));
    h.release(p);
}

#[test]
fn released_while_running_is_reaped_when_it_exits() {
    let mut h = Harness::new();
    let p = h.spawn(&spec("/bin/sleep", &["0.2"], &[], Path::new("/")));
    let pid = h.pid(p);
    h.release(p);
    assert_eq!(h.procs.live(), 0);
    assert_eq!(h.procs.len(), 1, "still waiting to be reaped");
    h.settle_reaping();
    assert!(is_reaped(pid));
    assert!(
        h.inputs.is_empty(),
        "no input about a released process: {:?}",
        h.inputs
    );
}

#[test]
fn without_pidfds_exits_are_polled() {
    let mut h = Harness::new();
    h.procs.no_pidfd = true;
    let p = h.spawn(&sh("echo polled; exit 7"));
    assert_eq!(h.procs.max_sleep(), Some(super::EXIT_POLL));
    let (out, _, status) = h.pump(p, b"");
    assert_eq!(out, b"polled\n");
    assert_eq!(status, ExitStatus::Code(7));
    assert_eq!(h.procs.max_sleep(), None);
    let q = h.spawn(&spec("/bin/sleep", &["60"], &[], Path::new("/")));
    h.procs.kill(q);
    assert_eq!(h.wait_exit(q), ExitStatus::Signal(libc::SIGKILL));
    h.release(p);
    h.release(q);
    assert_eq!(h.procs.len(), 0);
}

#[test]
fn dropping_the_table_kills_and_reaps_everything() {
    let mut h = Harness::new();
    let pids: Vec<libc::pid_t> = (0..3)
        .map(|_| {
            let p = h.spawn(&spec("/bin/sleep", &["60"], &[], Path::new("/")));
            h.pid(p)
        })
        .collect();
    let released = h.spawn(&spec("/bin/sleep", &["60"], &[], Path::new("/")));
    let released_pid = h.pid(released);
    h.release(released);
    let started = Instant::now();
    drop(h);
    assert!(started.elapsed() < Duration::from_secs(2));
    for pid in pids.into_iter().chain([released_pid]) {
        assert!(is_reaped(pid), "child {pid} left behind");
    }
}

/// Set in the copy of this test binary that runs the descriptor count alone.
const ALONE: &str = "WEIR_PROCESS_TEST_ALONE";

/// Counting `/proc/self/fd` is only meaningful with no other test opening descriptors at
/// the same time, so the test runs itself again, alone, in a fresh copy of this binary.
#[test]
fn many_processes_leak_no_descriptors_and_leave_no_zombies() {
    if std::env::var_os(ALONE).is_some() {
        return many_processes_alone();
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "process::tests::many_processes_leak_no_descriptors_and_leave_no_zombies",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(ALONE, "1")
        .output()
        .expect("run the test binary again");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the lone run failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the lone run did not run the test:\n{text}"
    );
}

fn count_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc is mounted")
        .count()
}

fn many_processes_alone() {
    let mut h = Harness::new();
    let before = count_fds();
    let mut pids = Vec::new();
    // 200 children in batches of 20 at once, ending in every way a CGI script can: a
    // normal exit with output read to the end, killed while running, released while
    // running (reaped later), refusing its input (EPIPE), and failing to spawn.
    for batch in 0..10 {
        let mut running = Vec::new();
        for i in 0..20 {
            let s = match i % 5 {
                0 | 1 => spec("/bin/cat", &[], &[], Path::new("/")),
                2 => spec("/bin/sleep", &["60"], &[], Path::new("/")),
                3 => sh("exec 0<&-; echo closed >&2"),
                _ => sh("sleep 0.05"),
            };
            let p = h.spawn(&s);
            pids.push(h.pid(p));
            running.push((i % 5, p));
        }
        let (_, failed) = h.spawn_result(&spec("/nonexistent/weir", &[], &[], Path::new("/")));
        assert_eq!(failed, Completion::Failed(IoError::NotFound));
        for (kind, p) in running {
            match kind {
                0 | 1 => {
                    let input = format!("batch {batch} process {p:?}\n");
                    let (out, _, status) = h.pump(p, input.as_bytes());
                    assert_eq!(out, input.as_bytes());
                    assert_eq!(status, ExitStatus::Code(0));
                    h.release(p);
                }
                2 => {
                    h.procs.kill(p);
                    assert_eq!(h.wait_exit(p), ExitStatus::Signal(libc::SIGKILL));
                    h.release(p);
                }
                3 => {
                    let (_, err, status) = h.pump(p, &[b'y'; 300_000]);
                    assert_eq!(err, b"closed\n");
                    assert_eq!(status, ExitStatus::Code(0));
                    h.release(p);
                }
                _ => h.release(p),
            }
        }
        h.settle_reaping();
    }
    assert_eq!(h.procs.len(), 0);
    assert_eq!(count_fds(), before, "descriptors leaked");
    for pid in pids {
        assert!(is_reaped(pid), "child {pid} was not reaped");
        assert!(
            !matches!(proc_state(pid), Some('Z')),
            "child {pid} is a zombie"
        );
    }
}
