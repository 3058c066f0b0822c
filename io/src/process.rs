//! The worker's child processes (CGI scripts): `Spawn`, the stdin/stdout/stderr streams,
//! `Kill`, `StreamClose`, and reaping — all without ever blocking the event loop.
//!
//! # Spawning
//!
//! `std::process::Command` does the spawning: on Linux it uses `posix_spawn` (glibc's is
//! `clone(CLONE_VM | CLONE_VFORK)`, no page-table copy) whenever nothing forces a fork, and
//! nothing here does. No shell sits between weir and the program: the program gets exactly
//! `spec.args` after its own path as `argv[0]`, exactly `spec.env` (`env_clear`), the working
//! directory `spec.cwd` (under `chroot DIR`, these paths and the path variables go through
//! `jail`, which strips DIR), a process group of its own (`process_group(0)`, so `Kill` reaches
//! whatever it starts), SIGPIPE back at its default and an empty signal mask (std resets
//! both in the child), and three pipes. Every descriptor std creates is `O_CLOEXEC`, so no
//! other child — spawned by this worker or by another one at the same moment — inherits
//! our ends; the pidfd is close-on-exec too. Our ends are then made `O_NONBLOCK`.
//!
//! A failed spawn (exec errors come back through `posix_spawn`, or std's CLOEXEC error
//! pipe) is classified: `ENOENT`/`ENOTDIR` → `NotFound`; `EACCES`/`EPERM`/`ENOEXEC`/`ELOOP`
//! → `PermissionDenied`; `EMFILE`/`ENFILE`/`EAGAIN`/`ENOMEM` → `Exhausted`; else `Other`.
//!
//! # Streams
//!
//! As for connections (see `conn`): the core arms at most one `StreamWrite` per process and
//! one `StreamRead` per output stream, and each is completed by exactly one input. The pipes
//! are registered edge-triggered, so readiness is remembered (`readable`/`writable`, set by
//! an event, cleared only by `EAGAIN`, presumed true at first); a process with an armed
//! operation whose pipe is ready sits in the ready queue and runs in the next round of the
//! worker: one read per armed output, a write of up to `WRITE_BUDGET` bytes.
//!
//! ```text
//!   StreamRead  ─► armed ─(readable)─► read(2) ─► StreamReceived | StreamEof (pipe closed)
//!   StreamWrite ─► in flight ─(writable)─► write(2)… ─► StreamWritten { n } | StreamWriteClosed
//!   StreamShutdownWrite ─► stdin closed (an outstanding write is abandoned)
//! ```
//!
//! A read error other than `EAGAIN`/`EINTR` is reported as end of file (and logged); any
//! write error (`EPIPE` above all) as `StreamWriteClosed`. A stream that has ended answers a later
//! operation at once with the same `StreamEof`/`StreamWriteClosed`. A closed pipe's descriptor is
//! freed at once, not when the process goes.
//!
//! # Reaping, and why `Kill` can never hit a stranger
//!
//! Each child gets a pidfd (`pidfd_open`), registered for readability: it becomes readable
//! when the child exits. Then `waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT)` reads the
//! status *without reaping*: the zombie keeps its PID — and with it the process-group ID —
//! reserved while the core may still send `Kill`, so `kill(-pid, SIGKILL)` cannot reach an
//! unrelated group that got the number later. `Exited` is reported then (once). The zombie
//! is reaped (`waitpid(pid, WNOHANG)`) at `StreamClose`; a process released while still running
//! is reaped as soon as its pidfd says it exited. Only specific PIDs are ever waited for
//! (never `-1`), so workers do not steal each other's children. If `pidfd_open` fails (a
//! kernel before 5.3, or no descriptors left) the child is checked with the same `waitid`
//! every `EXIT_POLL` instead (`unwatched`).
//!
//! `Kill` sends SIGKILL to the process group and to the child itself (in case it moved to
//! another group); the child's `Exited` follows through the usual path. `Exited` may arrive
//! before the outputs reach end of file: output still in the pipes stays readable, and
//! descendants that escaped the group can keep the pipes open.
//!
//! # Shutdown
//!
//! When the table is dropped (the worker exits, or unwinds), every child still known is
//! sent SIGKILL (group and child) and reaped, waiting at most `DROP_REAP_TIMEOUT` in all.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use mio::event::Event;
use mio::unix::SourceFd;
use mio::{Interest, Registry};
use slab::Slab;
use weir_core::server::{Channel, Completion, ExitStatus, Input, IoError, SpawnSpec, StreamId};
use weir_core::Token;

use crate::child::{peek_exit, pidfd_open};
use crate::log::log_error;
use crate::token::{self, Part};

/// The most bytes one armed `StreamWrite` writes before yielding to other work (a pipe takes
/// 64 KiB by default, so this is rarely reached).
pub const WRITE_BUDGET: usize = 512 * 1024;
/// How often a child without a pidfd is checked for having exited.
pub const EXIT_POLL: Duration = Duration::from_millis(20);
/// How long dropping the table waits, in all, for killed children to be reaped.
const DROP_REAP_TIMEOUT: Duration = Duration::from_secs(2);

/// One output stream of a process, our read end.
#[derive(Debug)]
struct OutPipe {
    /// `None` once the stream has ended (reported `StreamEof`) or the process was released.
    file: Option<File>,
    readable: bool,
    /// An outstanding `StreamRead`, with its byte limit.
    armed: Option<usize>,
}

/// A process's standard input, our write end.
#[derive(Debug)]
struct InPipe {
    /// `None` once closed (by `StreamShutdownWrite`, by the child's end going, or at release).
    file: Option<File>,
    writable: bool,
    /// An outstanding `StreamWrite`: the part of its data not yet written.
    in_flight: Option<Bytes>,
}

/// One child process.
#[derive(Debug)]
struct Process {
    id: StreamId,
    generation: u32,
    pid: libc::pid_t,
    /// Readable once the child has exited; `None` without pidfd support, and once the exit
    /// was seen (then it is closed).
    pidfd: Option<OwnedFd>,
    stdin: InPipe,
    stdout: OutPipe,
    stderr: OutPipe,
    /// The exit was seen (`waitid` with `WNOWAIT`): the child is a zombie until reaped.
    status: Option<ExitStatus>,
    /// The pidfd fired, or this child is polled: look for its exit in the next round.
    exit_ready: bool,
    /// The core released it: no pipes, no inputs; it is only waiting to be reaped.
    released: bool,
    /// In the ready queue.
    queued: bool,
}

impl Process {
    fn has_work(&self) -> bool {
        let stdin = self.stdin.in_flight.is_some() && self.stdin.writable;
        let out = |p: &OutPipe| p.armed.is_some() && p.readable;
        let exit = self.exit_ready && self.status.is_none();
        stdin || out(&self.stdout) || out(&self.stderr) || exit
    }

    fn output(&mut self, stream: Channel) -> &mut OutPipe {
        match stream {
            Channel::Main => &mut self.stdout,
            Channel::Errors => &mut self.stderr,
        }
    }

    /// Runs the armed write while the pipe takes bytes; returns its completion, if any.
    fn run_write(&mut self, registry: &Registry) -> Option<Input> {
        if !self.stdin.writable {
            return None;
        }
        let mut data = self.stdin.in_flight.take()?;
        let Some(file) = self.stdin.file.as_mut() else {
            return Some(Input::StreamWriteClosed { stream: self.id });
        };
        let mut written = 0;
        let failed = loop {
            if data.is_empty() || written >= WRITE_BUDGET {
                break None;
            }
            let end = data.len().min(WRITE_BUDGET - written);
            match file.write(&data[..end]) {
                Ok(0) => break Some(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    written += n;
                    data.advance(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stdin.writable = false;
                    break None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e),
            }
        };
        if let Some(e) = failed {
            // EPIPE is the normal way for a script to say it wants no more input.
            if e.raw_os_error() != Some(libc::EPIPE) {
                log_error!("process {}: writing to its input: {e}", self.pid);
            }
            close_pipe(registry, &mut self.stdin.file);
            return Some(Input::StreamWriteClosed { stream: self.id });
        }
        if written > 0 {
            Some(Input::StreamWritten {
                stream: self.id,
                n: written as u64,
            })
        } else {
            // Nothing went: stay armed until the pipe is writable again.
            self.stdin.in_flight = Some(data);
            None
        }
    }

    /// Runs the armed read on `stream` once, if its pipe is readable.
    fn run_read(
        &mut self,
        registry: &Registry,
        stream: Channel,
        scratch: &mut [u8],
    ) -> Option<Input> {
        let id = self.id;
        let pid = self.pid;
        let pipe = self.output(stream);
        if !pipe.readable {
            return None;
        }
        let max = pipe.armed?;
        let Some(file) = pipe.file.as_mut() else {
            pipe.armed = None;
            return Some(Input::StreamEof {
                stream: id,
                channel: stream,
            });
        };
        let want = max.min(scratch.len());
        loop {
            match file.read(&mut scratch[..want]) {
                Ok(0) => break,
                Ok(n) => {
                    pipe.armed = None;
                    return Some(Input::StreamReceived {
                        stream: id,
                        channel: stream,
                        data: Bytes::copy_from_slice(&scratch[..n]),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    pipe.readable = false;
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log_error!("process {pid}: reading its {stream:?}: {e}");
                    break;
                }
            }
        }
        pipe.armed = None;
        close_pipe(registry, &mut pipe.file);
        Some(Input::StreamEof {
            stream: id,
            channel: stream,
        })
    }

    /// Closes every pipe (release).
    fn close_pipes(&mut self, registry: &Registry) {
        close_pipe(registry, &mut self.stdin.file);
        self.stdin.in_flight = None;
        for stream in [Channel::Main, Channel::Errors] {
            let pipe = self.output(stream);
            pipe.armed = None;
            close_pipe(registry, &mut pipe.file);
        }
    }

    /// Stops watching the pidfd and closes it.
    fn close_pidfd(&mut self, registry: &Registry) {
        if let Some(fd) = self.pidfd.take() {
            // Closing removes it from the epoll set anyway; deregistering keeps mio exact.
            let _ = registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
    }

    /// SIGKILL to the process group and to the child itself.
    fn kill(&self) {
        // SAFETY: plain syscalls on integers. The PID is still ours: the child has not been
        // reaped (a zombie keeps its PID, which is also the group's ID, reserved), so the
        // signal cannot reach a process that reused the number. ESRCH (the group is empty)
        // and EPERM (a member changed its credentials) leave nothing to do.
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
            libc::kill(self.pid, libc::SIGKILL);
        }
    }
}

/// Deregisters and closes a pipe end, if it is open.
fn close_pipe(registry: &Registry, file: &mut Option<File>) {
    if let Some(f) = file.take() {
        let _ = registry.deregister(&mut SourceFd(&f.as_raw_fd()));
    }
}

/// All children of one worker, by the core's name and by slab key.
#[derive(Debug, Default)]
pub struct Processes {
    slab: Slab<Process>,
    /// Processes the core knows (not released) → slab key.
    by_id: HashMap<StreamId, usize>,
    next_generation: u32,
    /// Processes that may have work: (slab key, generation).
    ready: VecDeque<(usize, u32)>,
    /// Children without a pidfd whose exit has not been seen: checked every `EXIT_POLL`.
    unwatched: usize,
    /// Spawn without pidfds (tests of the polling fallback).
    no_pidfd: bool,
}

impl Processes {
    /// An empty table.
    #[must_use]
    pub fn new() -> Processes {
        Processes::default()
    }

    /// Number of children not yet reaped (released or not).
    #[cfg(test)]
    #[must_use]
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// Number of processes the core still knows (spawned and not released).
    #[must_use]
    pub fn live(&self) -> usize {
        self.by_id.len()
    }

    /// True if `stream` names a process the core knows (spawned, not released).
    #[must_use]
    pub fn knows(&self, stream: StreamId) -> bool {
        self.by_id.contains_key(&stream)
    }

    /// True if some process has an operation that can run now.
    #[must_use]
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// How long the loop may sleep at most for the children's sake: `EXIT_POLL` while a
    /// child has no pidfd, else no limit.
    #[must_use]
    pub fn max_sleep(&self) -> Option<Duration> {
        (self.unwatched > 0).then_some(EXIT_POLL)
    }

    /// Carries out `Spawn`; queues its `Completed` in `out`.
    pub fn spawn(
        &mut self,
        registry: &Registry,
        token: Token,
        spec: &SpawnSpec,
        out: &mut VecDeque<Input>,
    ) {
        let result = match self.start(registry, StreamId(token), spec) {
            Ok(()) => Completion::Spawned,
            Err(e) => Completion::Failed(e),
        };
        out.push_back(Input::Completed { token, result });
    }

    fn start(
        &mut self,
        registry: &Registry,
        id: StreamId,
        spec: &SpawnSpec,
    ) -> Result<(), IoError> {
        if self.by_id.contains_key(&id) {
            log_error!(
                "internal error: Spawn reuses the name of process {}",
                id.0 .0
            );
            return Err(IoError::Other);
        }
        let key = self.slab.vacant_key();
        if key > token::KEY_MAX {
            log_error!("too many processes");
            return Err(IoError::Exhausted);
        }
        // Under `chroot DIR`, the core gave the paths as seen inside already.
        let mut command = Command::new(&spec.program);
        command
            .args(spec.args.iter().map(|a| OsStr::from_bytes(a)))
            .env_clear()
            .envs(
                spec.env
                    .iter()
                    .map(|(k, v)| (OsStr::from_bytes(k), OsStr::from_bytes(v))),
            )
            .current_dir(&spec.cwd)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| classify_spawn(&e))?;
        // Linux PIDs fit in pid_t (the kernel's pid_max is at most 2^22).
        let pid = libc::pid_t::try_from(child.id()).unwrap_or(libc::pid_t::MAX);
        // The pipes were requested, so std made all three; dropping `child` afterwards
        // neither waits for nor kills the process: its PID is ours to reap from here on.
        let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        drop(child);
        let (Some(stdin), Some(stdout), Some(stderr)) = pipes else {
            log_error!("internal error: process {pid} started without its pipes");
            return Err(self.abandon(registry, id, pid, None));
        };
        let stdin = File::from(OwnedFd::from(stdin));
        let stdout = File::from(OwnedFd::from(stdout));
        let stderr = File::from(OwnedFd::from(stderr));
        let pidfd = if self.no_pidfd { None } else { pidfd_open(pid) };

        let generation = self.next_generation & token::PROC_GENERATION_MASK;
        self.next_generation = self.next_generation.wrapping_add(1);
        let setup = (|| -> io::Result<()> {
            for (file, part, interest) in [
                (&stdin, Part::Stdin, Interest::WRITABLE),
                (&stdout, Part::Stdout, Interest::READABLE),
                (&stderr, Part::Stderr, Interest::READABLE),
            ] {
                set_nonblocking(file.as_raw_fd())?;
                registry.register(
                    &mut SourceFd(&file.as_raw_fd()),
                    token::proc(key, generation, part),
                    interest,
                )?;
            }
            if let Some(fd) = &pidfd {
                registry.register(
                    &mut SourceFd(&fd.as_raw_fd()),
                    token::proc(key, generation, Part::Exit),
                    Interest::READABLE,
                )?;
            }
            Ok(())
        })();
        if let Err(e) = setup {
            log_error!("cannot watch process {pid}: {e}; killing it");
            for f in [&stdin, &stdout, &stderr] {
                let _ = registry.deregister(&mut SourceFd(&f.as_raw_fd()));
            }
            if let Some(fd) = &pidfd {
                let _ = registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
            }
            drop(pidfd);
            return Err(self.abandon(registry, id, pid, Some(&e)));
        }
        if pidfd.is_none() {
            self.unwatched += 1;
        }
        let inserted = self.slab.insert(Process {
            id,
            generation,
            pid,
            pidfd,
            stdin: InPipe {
                file: Some(stdin),
                writable: true,
                in_flight: None,
            },
            stdout: OutPipe {
                file: Some(stdout),
                readable: true,
                armed: None,
            },
            stderr: OutPipe {
                file: Some(stderr),
                readable: true,
                armed: None,
            },
            status: None,
            exit_ready: false,
            released: false,
            queued: false,
        });
        debug_assert_eq!(inserted, key, "the slab filled the key it announced");
        self.by_id.insert(id, key);
        Ok(())
    }

    /// A child we cannot look after: kill it and keep it, released and polled, only to
    /// reap it. Returns the error to report for the spawn.
    fn abandon(
        &mut self,
        registry: &Registry,
        id: StreamId,
        pid: libc::pid_t,
        cause: Option<&io::Error>,
    ) -> IoError {
        let generation = self.next_generation & token::PROC_GENERATION_MASK;
        self.next_generation = self.next_generation.wrapping_add(1);
        let mut p = Process {
            id,
            generation,
            pid,
            pidfd: None,
            stdin: InPipe {
                file: None,
                writable: false,
                in_flight: None,
            },
            stdout: OutPipe {
                file: None,
                readable: false,
                armed: None,
            },
            stderr: OutPipe {
                file: None,
                readable: false,
                armed: None,
            },
            status: None,
            exit_ready: false,
            released: true,
            queued: false,
        };
        p.kill();
        p.close_pipes(registry);
        self.slab.insert(p);
        self.unwatched += 1;
        cause.map_or(IoError::Other, classify_spawn)
    }

    /// The slab key of a process the core knows; logs the core's mistake if it is unknown.
    fn known(&self, proc: StreamId, what: &str) -> Option<usize> {
        let key = self.by_id.get(&proc).copied();
        if key.is_none() {
            log_error!("internal error: {what} for unknown process {}", proc.0 .0);
        }
        key
    }

    /// Carries out `StreamWrite`: arms the write (an answer is queued at once only if the
    /// input is already closed).
    pub fn write_stdin(&mut self, proc: StreamId, data: Bytes, out: &mut VecDeque<Input>) {
        let Some(key) = self.known(proc, "StreamWrite") else {
            return;
        };
        let p = &mut self.slab[key];
        if p.stdin.file.is_none() {
            out.push_back(Input::StreamWriteClosed { stream: proc });
            return;
        }
        if data.is_empty() {
            log_error!(
                "internal error: empty StreamWrite for process {}",
                proc.0 .0
            );
            out.push_back(Input::StreamWritten { stream: proc, n: 0 });
            return;
        }
        debug_assert!(p.stdin.in_flight.is_none(), "two writes armed on one stdin");
        p.stdin.in_flight = Some(data);
        self.mark_ready(key);
    }

    /// Carries out `StreamShutdownWrite`: the child sees end of file. An outstanding write is
    /// abandoned without an answer.
    pub fn close_stdin(&mut self, registry: &Registry, proc: StreamId) {
        let Some(key) = self.known(proc, "StreamShutdownWrite") else {
            return;
        };
        let p = &mut self.slab[key];
        p.stdin.in_flight = None;
        close_pipe(registry, &mut p.stdin.file);
    }

    /// Carries out `StreamRead`: arms the read (answered at once if the stream has ended).
    pub fn read_output(
        &mut self,
        proc: StreamId,
        stream: Channel,
        max: usize,
        out: &mut VecDeque<Input>,
    ) {
        let Some(key) = self.known(proc, "StreamRead") else {
            return;
        };
        let pipe = self.slab[key].output(stream);
        if pipe.file.is_none() {
            out.push_back(Input::StreamEof {
                stream: proc,
                channel: stream,
            });
            return;
        }
        if max == 0 {
            log_error!(
                "internal error: StreamRead with max 0 for process {}",
                proc.0 .0
            );
            out.push_back(Input::StreamEof {
                stream: proc,
                channel: stream,
            });
            return;
        }
        debug_assert!(pipe.armed.is_none(), "two reads armed on one output");
        pipe.armed = Some(max);
        self.mark_ready(key);
    }

    /// Carries out `Kill`: SIGKILL to the group (`Exited` follows when the child is gone).
    pub fn kill(&mut self, proc: StreamId) {
        if let Some(key) = self.known(proc, "Kill") {
            self.slab[key].kill();
        }
    }

    /// Carries out `StreamClose`: closes the pipes and forgets the name. The child is reaped
    /// now if it has exited, else as soon as it does. The caller must purge pending inputs
    /// that name it.
    pub fn release(&mut self, registry: &Registry, proc: StreamId) {
        let Some(key) = self.known(proc, "Release") else {
            return;
        };
        self.by_id.remove(&proc);
        let p = &mut self.slab[key];
        p.released = true;
        p.close_pipes(registry);
        if p.status.is_some() {
            reap(p.pid);
            self.slab.remove(key);
        }
    }

    /// Notes what an event says about one of a process's descriptors.
    pub fn on_event(&mut self, key: usize, generation: u32, part: Part, event: &Event) {
        let Some(p) = self.slab.get_mut(key) else {
            return;
        };
        if p.generation != generation {
            return;
        }
        // Closed and error states are readiness too: the next syscall reports them.
        let any = event.is_readable()
            || event.is_writable()
            || event.is_read_closed()
            || event.is_write_closed()
            || event.is_error();
        if !any {
            return;
        }
        match part {
            Part::Stdin => p.stdin.writable = true,
            Part::Stdout => p.stdout.readable = true,
            Part::Stderr => p.stderr.readable = true,
            Part::Exit => p.exit_ready = true,
        }
        self.mark_ready(key);
    }

    /// Marks every child without a pidfd for an exit check in the next round.
    pub fn poll_unwatched(&mut self) {
        if self.unwatched == 0 {
            return;
        }
        let keys: Vec<usize> = self
            .slab
            .iter()
            .filter(|(_, p)| p.pidfd.is_none() && p.status.is_none())
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            self.slab[key].exit_ready = true;
            self.mark_ready(key);
        }
    }

    fn mark_ready(&mut self, key: usize) {
        if let Some(p) = self.slab.get_mut(key) {
            if !p.queued && p.has_work() {
                p.queued = true;
                self.ready.push_back((key, p.generation));
            }
        }
    }

    /// Runs one round: every queued process's armed operations and exit check. Completions
    /// go to `out`.
    pub fn run_ready(
        &mut self,
        registry: &Registry,
        scratch: &mut [u8],
        out: &mut VecDeque<Input>,
    ) {
        let round = std::mem::take(&mut self.ready);
        for (key, generation) in round {
            let Some(p) = self.slab.get_mut(key) else {
                continue;
            };
            if p.generation != generation {
                continue;
            }
            p.queued = false;
            if !p.released {
                out.extend(p.run_write(registry));
                out.extend(p.run_read(registry, Channel::Main, scratch));
                out.extend(p.run_read(registry, Channel::Errors, scratch));
            }
            if p.exit_ready && p.status.is_none() {
                self.check_exit(registry, key, out);
            }
        }
    }

    /// Looks (without reaping) whether the child at `key` has exited.
    fn check_exit(&mut self, registry: &Registry, key: usize, out: &mut VecDeque<Input>) {
        let p = &mut self.slab[key];
        p.exit_ready = false;
        let status = match peek_exit(p.pid) {
            Ok(Some(status)) => status,
            Ok(None) => return,
            Err(e) => {
                // Only if something else reaped our child: nothing left to wait for.
                log_error!("internal error: waiting for process {}: {e}", p.pid);
                ExitStatus::Code(-1)
            }
        };
        p.status = Some(status);
        if p.pidfd.is_some() {
            p.close_pidfd(registry);
        } else {
            self.unwatched -= 1;
        }
        if p.released {
            reap(p.pid);
            self.slab.remove(key);
        } else {
            out.push_back(Input::Exited {
                stream: p.id,
                status,
            });
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, p) in &self.slab {
            p.kill();
        }
        let deadline = Instant::now() + DROP_REAP_TIMEOUT;
        for (_, p) in &self.slab {
            loop {
                match try_reap(p.pid) {
                    Ok(true) => break,
                    Ok(false) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Ok(false) => {
                        log_error!("process {} did not die after SIGKILL; not reaped", p.pid);
                        break;
                    }
                    Err(e) => {
                        log_error!("internal error: reaping process {}: {e}", p.pid);
                        break;
                    }
                }
            }
        }
    }
}

/// Classifies an error from spawning.
fn classify_spawn(e: &io::Error) -> IoError {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) => IoError::NotFound,
        Some(libc::EACCES | libc::EPERM | libc::ENOEXEC | libc::ELOOP) => IoError::PermissionDenied,
        Some(libc::EMFILE | libc::ENFILE | libc::EAGAIN | libc::ENOMEM) => IoError::Exhausted,
        Some(_) => IoError::Other,
        // No errno: std refused the spec itself (a NUL byte in an argument or variable).
        None => {
            log_error!("cannot spawn: {e}");
            IoError::Other
        }
    }
}

/// Sets `O_NONBLOCK` on a descriptor we own.
fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl with F_GETFL/F_SETFL reads and writes only the descriptor's status
    // flags; `fd` is open (the caller holds the File that owns it).
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reaps our child `pid` if it has exited; true if it is gone (reaped now or before).
fn try_reap(pid: libc::pid_t) -> io::Result<bool> {
    loop {
        // SAFETY: waitpid on our own child with WNOHANG and no status pointer.
        let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        if r == pid {
            return Ok(true);
        }
        if r == 0 {
            return Ok(false);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::ECHILD) => return Ok(true),
            _ => return Err(e),
        }
    }
}

/// Reaps a child whose exit was already seen (it is a zombie: this cannot wait).
fn reap(pid: libc::pid_t) {
    match try_reap(pid) {
        Ok(true) => {}
        Ok(false) => log_error!("internal error: process {pid} exited but cannot be reaped"),
        Err(e) => log_error!("internal error: reaping process {pid}: {e}"),
    }
}

#[cfg(test)]
mod tests;
