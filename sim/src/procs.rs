//! Simulated CGI processes: the scripts under `cgi-bin/`, run by the world the way the
//! production shell runs real ones, behind the same process effects.
//!
//! # Theory of operation
//!
//! A process is a small program (`Op`s) chosen at spawn from the script's name
//! (`workload::Script`), its `QUERY_STRING` (`n=`) and the seed, plus four simulated pipes
//! of `pipe_capacity` bytes each way. Two clocks drive it, both events on the world's
//! queue:
//!
//! * **the script** takes a *step* after a random delay: it reads a random piece of its
//!   standard input, writes a random piece of its output (blocking while that pipe is
//!   full), closes its input, stalls forever, or exits;
//! * **the kernel** answers the server's effects: a `WriteStdin` is accepted only as far
//!   as the stdin pipe has room (a random part of it: `StdinWritten { n }` with `n` short),
//!   and waits while the pipe is full; a write to a script whose input is closed gets
//!   `StdinClosed` (`EPIPE`); a `ReadOutput` is answered with a random piece of what the
//!   pipe holds, or `OutputEof` once the script has exited and the pipe is drained;
//!   `Exited` comes a random while after the exit, so before or after the EOFs.
//!
//! ```text
//!   server ── WriteStdin ─► [stdin pipe] ─► script ─► [stdout pipe] ─► ReadOutput ─► server
//!                (room?)                    steps       (room?)          (data / EOF)
//! ```
//!
//! `Kill` ends the script at once (`Signal(9)`); `Release` forgets the process: whatever
//! the queue still holds for it is dropped when it comes due, so no input names a
//! released process. Both planted bugs of this layer live here: `swap-stdin` (a piece of
//! standard input reaches the script after the next one) and `lose-release` (a `Release`
//! ignored: the process and its pipes are never let go, and its inputs keep coming).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use weir_core::server::{Channel, ExitStatus, Input, StreamId};

use crate::workload::{flood_body, BadOutput, Script, SCRIPT_TYPE};

/// One step of a script's program.
#[derive(Clone, Debug)]
enum Op {
    /// Read standard input until its end.
    ReadAll,
    /// Read at most this many more bytes of standard input (or until its end).
    ReadSome(usize),
    /// Write the header section and everything read (`echo`), with `Content-Length` if
    /// `true`.
    EchoWhole(bool),
    /// Copy standard input to standard output piece by piece, until its end.
    EchoStream,
    /// Write these bytes to stream 0 (stdout) or 1 (stderr), from this offset on.
    Write(usize, Bytes, usize),
    /// Close standard input.
    CloseStdin,
    /// Do nothing, ever.
    Stall,
    /// Exit.
    Exit(ExitStatus),
}

/// What the world schedules for a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wake {
    /// The script takes its next step.
    Step,
    /// The outstanding `WriteStdin` is answered.
    Stdin,
    /// The outstanding `ReadOutput` on stream 0 or 1 is answered.
    Out(usize),
    /// The exit is reported.
    Exit,
}

/// A simulated process.
#[derive(Debug)]
pub struct Proc {
    /// The script's file name.
    pub name: String,
    /// The request it serves (`X-Sim-Req`), if it said.
    pub request: Option<u64>,
    ops: VecDeque<Op>,
    stdin: VecDeque<u8>,
    /// The server closed its end of the stdin pipe.
    stdin_eof: bool,
    /// The script closed its end (or exited): writes fail with `EPIPE`.
    stdin_gone: bool,
    /// The outstanding `WriteStdin`'s bytes, and how many were accepted (once known).
    write: Option<(Bytes, Option<usize>)>,
    stdin_wake: bool,
    /// Bytes held back by the `swap-stdin` bug.
    swapped: Vec<u8>,
    /// Everything the script read from its standard input.
    pub got: Vec<u8>,
    out: [VecDeque<u8>; 2],
    out_closed: [bool; 2],
    reads: [Option<usize>; 2],
    read_wake: [bool; 2],
    eof_reported: [bool; 2],
    /// How it ended, once it has.
    pub exited: Option<ExitStatus>,
    exit_wake: bool,
    exit_reported: bool,
    step_wake: bool,
    /// Bytes of standard output handed to the server.
    pub stdout_delivered: usize,
    /// Length of the header section it writes (`None`: it never writes a valid one).
    pub head_len: Option<usize>,
    /// The spawn's completion has been delivered.
    pub spawned: bool,
}

impl Proc {
    /// The server has read the whole header section the script wrote.
    #[must_use]
    pub fn head_read(&self) -> bool {
        self.head_len.is_some_and(|h| self.stdout_delivered >= h)
    }

    /// The server has read the end of standard output.
    #[must_use]
    pub fn stdout_done(&self) -> bool {
        self.eof_reported[0]
    }
}

/// Timing and bugs for every process.
#[derive(Clone, Copy, Debug)]
pub struct Knobs {
    /// Capacity of each pipe.
    pub pipe_capacity: usize,
    /// Longest script step.
    pub step_max_ms: u64,
    /// `limit header-bytes=` (for the script whose header section is too long).
    pub header_bytes_max: usize,
    /// The `swap-stdin` bug.
    pub swap_stdin: bool,
    /// The `lose-release` bug.
    pub lose_release: bool,
}

/// Every process the world runs.
#[derive(Debug)]
pub struct Procs {
    table: BTreeMap<StreamId, Proc>,
    knobs: Knobs,
    /// Processes whose `Release` the `lose-release` bug ignored.
    pub leaked: Vec<StreamId>,
}

/// Events to schedule: (delay in ms, process, what).
pub type Wakes = Vec<(u64, StreamId, Wake)>;

impl Procs {
    /// No processes.
    #[must_use]
    pub fn new(knobs: Knobs) -> Procs {
        Procs {
            table: BTreeMap::new(),
            knobs,
            leaked: Vec::new(),
        }
    }

    /// A process by id.
    #[must_use]
    pub fn get(&self, proc: StreamId) -> Option<&Proc> {
        self.table.get(&proc)
    }

    /// Processes the world still runs.
    #[must_use]
    pub fn running(&self) -> Vec<StreamId> {
        self.table.keys().copied().collect()
    }

    /// Starts script `name` (known to exist) for `request`, with `n` from its query.
    pub fn start(
        &mut self,
        proc: StreamId,
        name: &str,
        request: Option<u64>,
        n: usize,
        rng: &mut ChaCha8Rng,
    ) {
        let kind = Script::by_name(name);
        let le: &[u8] = if rng.random_bool(0.5) { b"\r\n" } else { b"\n" };
        let head = |cl: Option<usize>, rng: &mut ChaCha8Rng| {
            let mut h = Vec::new();
            for line in [
                format!("Content-Type: {SCRIPT_TYPE}"),
                format!("X-Sim-Script: {name}"),
            ] {
                h.extend_from_slice(line.as_bytes());
                h.extend_from_slice(le);
            }
            if rng.random_bool(0.3) {
                h.extend_from_slice(b"Status: 200 OK");
                h.extend_from_slice(le);
            }
            if let Some(n) = cl {
                h.extend_from_slice(format!("Content-Length: {n}").as_bytes());
                h.extend_from_slice(le);
            }
            h.extend_from_slice(le);
            h
        };
        let mut ops = VecDeque::new();
        if rng.random_bool(0.2) {
            ops.push_back(Op::Write(1, Bytes::from_static(b"sim: a warning\n"), 0));
        }
        // Scripts that do not need their input read all, some or none of it.
        let maybe_read = |ops: &mut VecDeque<Op>, rng: &mut ChaCha8Rng| match rng.random_range(0..4)
        {
            0 => ops.push_back(Op::ReadAll),
            1 => ops.push_back(Op::ReadSome(rng.random_range(0..2_000))),
            2 => ops.push_back(Op::CloseStdin),
            _ => {}
        };
        let write = |bytes: Vec<u8>| Op::Write(0, Bytes::from(bytes), 0);
        let mut head_len = None;
        let died = |rng: &mut ChaCha8Rng| {
            if rng.random_bool(0.5) {
                ExitStatus::Signal(11)
            } else {
                ExitStatus::Code(rng.random_range(1..4))
            }
        };
        match kind {
            Some(Script::Echo { len }) => {
                ops.push_back(Op::ReadAll);
                ops.push_back(Op::EchoWhole(len));
                ops.push_back(Op::Exit(ExitStatus::Code(0)));
                // The length is known once the input is: EchoWhole sets `head_len`.
            }
            Some(Script::EchoStream) => {
                let h = head(None, rng);
                head_len = Some(h.len());
                ops.push_back(write(h));
                ops.push_back(Op::EchoStream);
                ops.push_back(Op::Exit(ExitStatus::Code(0)));
            }
            Some(Script::Flood { len }) => {
                maybe_read(&mut ops, rng);
                let mut out = head(len.then_some(n), rng);
                head_len = Some(out.len());
                out.extend_from_slice(&flood_body(n));
                ops.push_back(write(out));
                ops.push_back(Op::Exit(ExitStatus::Code(0)));
            }
            Some(Script::Stall) => {
                maybe_read(&mut ops, rng);
                ops.push_back(Op::Stall);
            }
            Some(Script::StallBody { len }) => {
                maybe_read(&mut ops, rng);
                let mut out = head(len.then_some(n + 1_000), rng);
                head_len = Some(out.len());
                out.extend_from_slice(&flood_body(n));
                ops.push_back(write(out));
                ops.push_back(Op::Stall);
            }
            Some(Script::CrashHead) => {
                maybe_read(&mut ops, rng);
                let mut out = format!("Content-Type: {SCRIPT_TYPE}").into_bytes();
                out.extend_from_slice(le);
                out.extend_from_slice(b"X-Sim-Par");
                ops.push_back(write(out));
                ops.push_back(Op::Exit(died(rng)));
            }
            Some(Script::CrashBody { len }) => {
                maybe_read(&mut ops, rng);
                let mut out = head(len.then_some(2 * n + 10), rng);
                head_len = Some(out.len());
                out.extend_from_slice(&flood_body(n));
                ops.push_back(write(out));
                ops.push_back(Op::Exit(died(rng)));
            }
            Some(Script::Bad(b)) => {
                maybe_read(&mut ops, rng);
                let mut out = Vec::new();
                let mut line = |s: &[u8]| {
                    out.extend_from_slice(s);
                    out.extend_from_slice(le);
                };
                match b {
                    BadOutput::NoBlankLine => {
                        line(b"Content-Type: text/plain");
                        line(b"X-A: b");
                        out.extend_from_slice(b"and no empty line follows");
                    }
                    BadOutput::InvalidHeader => {
                        line(b"Content-Type: text/plain");
                        line(b"Bad Name: x");
                        line(b"");
                        out.extend_from_slice(b"body");
                    }
                    BadOutput::BareCr => {
                        line(b"Content-Type: text/plain");
                        line(b"X-Injected: a\rSet-Cookie: evil=1");
                        line(b"");
                        out.extend_from_slice(b"body");
                    }
                    BadOutput::NoContentType => {
                        line(b"X-A: b");
                        line(b"");
                        out.extend_from_slice(b"body");
                    }
                    BadOutput::TooLong => {
                        line(b"Content-Type: text/plain");
                        let pad = vec![b'p'; 100];
                        let mut total = 0;
                        while total <= self.knobs.header_bytes_max + 200 {
                            let mut l = b"X-Pad: ".to_vec();
                            l.extend_from_slice(&pad);
                            total += l.len() + le.len();
                            line(&l);
                        }
                        line(b"");
                        out.extend_from_slice(b"body");
                    }
                }
                ops.push_back(write(out));
                ops.push_back(Op::Exit(ExitStatus::Code(0)));
            }
            None => {
                // Not one of ours (the world spawns only known names): it fails at once.
                ops.push_back(Op::Exit(ExitStatus::Code(127)));
            }
        }
        if rng.random_bool(0.2) {
            let at = rng.random_range(0..=ops.len().saturating_sub(1));
            ops.insert(
                at,
                Op::Write(1, Bytes::from_static(b"sim: more\nno newline"), 0),
            );
        }
        self.table.insert(
            proc,
            Proc {
                name: name.to_string(),
                request,
                ops,
                stdin: VecDeque::new(),
                stdin_eof: false,
                stdin_gone: false,
                write: None,
                stdin_wake: false,
                swapped: Vec::new(),
                got: Vec::new(),
                out: [VecDeque::new(), VecDeque::new()],
                out_closed: [false; 2],
                reads: [None; 2],
                read_wake: [false; 2],
                eof_reported: [false; 2],
                exited: None,
                exit_wake: false,
                exit_reported: false,
                step_wake: false,
                stdout_delivered: 0,
                head_len,
                spawned: false,
            },
        );
    }

    /// The spawn's completion was delivered: the script starts.
    pub fn started(&mut self, proc: StreamId, rng: &mut ChaCha8Rng, wakes: &mut Wakes) {
        if let Some(p) = self.table.get_mut(&proc) {
            p.spawned = true;
        }
        self.kick(proc, rng, wakes);
    }

    fn kick(&mut self, proc: StreamId, rng: &mut ChaCha8Rng, wakes: &mut Wakes) {
        let step_max = self.knobs.step_max_ms;
        let Some(p) = self.table.get_mut(&proc) else {
            return;
        };
        if !p.step_wake && p.exited.is_none() && p.spawned {
            p.step_wake = true;
            wakes.push((rng.random_range(0..=step_max), proc, Wake::Step));
        }
    }

    /// Effect `WriteStdin`.
    pub fn write_stdin(
        &mut self,
        proc: StreamId,
        data: Bytes,
        rng: &mut ChaCha8Rng,
        wakes: &mut Wakes,
    ) {
        if let Some(p) = self.table.get_mut(&proc) {
            p.write = Some((data, None));
        }
        self.pump_stdin(proc, rng, wakes);
    }

    /// Effect `CloseStdin`.
    pub fn close_stdin(&mut self, proc: StreamId, rng: &mut ChaCha8Rng, wakes: &mut Wakes) {
        if let Some(p) = self.table.get_mut(&proc) {
            p.stdin_eof = true;
            let held = std::mem::take(&mut p.swapped);
            if !p.stdin_gone {
                p.stdin.extend(held);
            }
        }
        self.kick(proc, rng, wakes);
    }

    /// Effect `ReadOutput`.
    pub fn read_output(
        &mut self,
        proc: StreamId,
        stream: Channel,
        max: usize,
        rng: &mut ChaCha8Rng,
        wakes: &mut Wakes,
    ) {
        let s = usize::from(stream == Channel::Errors);
        if let Some(p) = self.table.get_mut(&proc) {
            p.reads[s] = Some(max);
        }
        self.pump_out(proc, s, rng, wakes);
    }

    /// Effect `Kill`: SIGKILL to the group.
    pub fn kill(&mut self, proc: StreamId, rng: &mut ChaCha8Rng, wakes: &mut Wakes) {
        self.exit(proc, ExitStatus::Signal(9), rng, wakes);
    }

    /// Effect `Release`: the process is forgotten (or, with `lose-release`, sometimes
    /// not).
    pub fn release(&mut self, proc: StreamId, rng: &mut ChaCha8Rng) {
        if self.knobs.lose_release && rng.random_bool(0.3) {
            self.leaked.push(proc);
            return;
        }
        self.table.remove(&proc);
    }

    /// Accepts what the stdin pipe has room for, or reports the broken pipe.
    fn pump_stdin(&mut self, proc: StreamId, rng: &mut ChaCha8Rng, wakes: &mut Wakes) {
        let cap = self.knobs.pipe_capacity;
        let swap = self.knobs.swap_stdin;
        let Some(p) = self.table.get_mut(&proc) else {
            return;
        };
        let Some((data, accepted)) = &mut p.write else {
            return;
        };
        if p.stdin_wake {
            return;
        }
        if p.stdin_gone {
            p.stdin_wake = true;
            wakes.push((rng.random_range(0..=2), proc, Wake::Stdin));
            return;
        }
        if accepted.is_some() {
            return;
        }
        let room = cap.saturating_sub(p.stdin.len() + p.swapped.len());
        if room == 0 {
            return;
        }
        let n = rng.random_range(1..=room.min(data.len()));
        *accepted = Some(n);
        let piece = &data[..n];
        if swap && p.swapped.is_empty() && n > 0 && rng.random_bool(0.3) {
            p.swapped.extend_from_slice(piece);
        } else {
            p.stdin.extend(piece.iter().copied());
            let held = std::mem::take(&mut p.swapped);
            p.stdin.extend(held);
        }
        p.stdin_wake = true;
        wakes.push((rng.random_range(0..=2), proc, Wake::Stdin));
        self.kick(proc, rng, wakes);
    }

    /// Schedules the answer to an outstanding read, if there is one to give.
    fn pump_out(&mut self, proc: StreamId, s: usize, rng: &mut ChaCha8Rng, wakes: &mut Wakes) {
        let Some(p) = self.table.get_mut(&proc) else {
            return;
        };
        let ready = !p.out[s].is_empty() || (p.out_closed[s] && !p.eof_reported[s]);
        if p.reads[s].is_some() && !p.read_wake[s] && ready {
            p.read_wake[s] = true;
            wakes.push((rng.random_range(0..=2), proc, Wake::Out(s)));
        }
    }

    fn exit(
        &mut self,
        proc: StreamId,
        status: ExitStatus,
        rng: &mut ChaCha8Rng,
        wakes: &mut Wakes,
    ) {
        let step_max = self.knobs.step_max_ms;
        let Some(p) = self.table.get_mut(&proc) else {
            return;
        };
        if p.exited.is_some() {
            return;
        }
        p.exited = Some(status);
        p.ops.clear();
        p.out_closed = [true; 2];
        p.stdin_gone = true;
        p.stdin.clear();
        p.swapped.clear();
        if !p.exit_wake {
            p.exit_wake = true;
            wakes.push((rng.random_range(0..=step_max.max(3)), proc, Wake::Exit));
        }
        // A write that was not accepted yet now fails.
        if matches!(p.write, Some((_, None))) {
            self.pump_stdin(proc, rng, wakes);
        }
        self.pump_out(proc, 0, rng, wakes);
        self.pump_out(proc, 1, rng, wakes);
    }

    /// Something scheduled for `proc` comes due: the input to deliver, if any (none once
    /// the process is released).
    pub fn wake(
        &mut self,
        proc: StreamId,
        wake: Wake,
        rng: &mut ChaCha8Rng,
        wakes: &mut Wakes,
    ) -> Option<Input> {
        let p = self.table.get_mut(&proc)?;
        match wake {
            Wake::Step => {
                p.step_wake = false;
                self.step(proc, rng, wakes);
                None
            }
            Wake::Stdin => {
                p.stdin_wake = false;
                let (_, accepted) = p.write.take()?;
                let input = match accepted {
                    Some(n) => Input::StreamWritten {
                        stream: proc,
                        n: n as u64,
                    },
                    None => Input::StreamWriteClosed { stream: proc },
                };
                Some(input)
            }
            Wake::Out(s) => {
                p.read_wake[s] = false;
                let stream = if s == 0 {
                    Channel::Main
                } else {
                    Channel::Errors
                };
                let max = p.reads[s]?;
                if !p.out[s].is_empty() {
                    p.reads[s] = None;
                    // A read takes all there is, or (a slow kernel) some of it.
                    let avail = max.min(p.out[s].len());
                    let n = if rng.random_bool(0.5) {
                        avail
                    } else {
                        rng.random_range(1..=avail)
                    };
                    let data: Vec<u8> = p.out[s].drain(..n).collect();
                    if s == 0 {
                        p.stdout_delivered += n;
                    }
                    // Room in the pipe: a blocked writer goes on.
                    self.kick(proc, rng, wakes);
                    return Some(Input::StreamReceived {
                        stream: proc,
                        channel: stream,
                        data: Bytes::from(data),
                    });
                }
                if p.out_closed[s] && !p.eof_reported[s] {
                    p.reads[s] = None;
                    p.eof_reported[s] = true;
                    return Some(Input::StreamEof {
                        stream: proc,
                        channel: stream,
                    });
                }
                None
            }
            Wake::Exit => {
                if p.exit_reported {
                    return None;
                }
                p.exit_reported = true;
                p.exited.map(|status| Input::Exited {
                    stream: proc,
                    status,
                })
            }
        }
    }

    /// The script's next step: runs ops until one blocks or takes time.
    fn step(&mut self, proc: StreamId, rng: &mut ChaCha8Rng, wakes: &mut Wakes) {
        let cap = self.knobs.pipe_capacity;
        loop {
            let Some(p) = self.table.get_mut(&proc) else {
                return;
            };
            if p.exited.is_some() {
                return;
            }
            let Some(op) = p.ops.front_mut() else {
                return;
            };
            match op {
                Op::ReadAll | Op::ReadSome(_) => {
                    let left = match op {
                        Op::ReadSome(k) => *k,
                        _ => usize::MAX,
                    };
                    if left == 0 || (p.stdin.is_empty() && p.stdin_eof) {
                        p.ops.pop_front();
                        continue;
                    }
                    if p.stdin.is_empty() {
                        // Blocked until the server writes (or closes).
                        return;
                    }
                    let n = rng.random_range(1..=p.stdin.len().min(left));
                    p.got.extend(p.stdin.drain(..n));
                    if let Op::ReadSome(k) = op {
                        *k -= n;
                    }
                    self.pump_stdin(proc, rng, wakes);
                    self.kick(proc, rng, wakes);
                    return;
                }
                Op::EchoWhole(len) => {
                    let len = *len;
                    let le = "\r\n";
                    let mut out = format!(
                        "Content-Type: {SCRIPT_TYPE}{le}X-Sim-Script: {}{le}",
                        p.name
                    )
                    .into_bytes();
                    if len {
                        out.extend_from_slice(
                            format!("Content-Length: {}{le}", p.got.len()).as_bytes(),
                        );
                    }
                    out.extend_from_slice(le.as_bytes());
                    p.head_len = Some(out.len());
                    out.extend_from_slice(&p.got);
                    p.ops.pop_front();
                    p.ops.push_front(Op::Write(0, Bytes::from(out), 0));
                }
                Op::EchoStream => {
                    if p.stdin.is_empty() && p.stdin_eof {
                        p.ops.pop_front();
                        continue;
                    }
                    let room = cap.saturating_sub(p.out[0].len());
                    if p.stdin.is_empty() || room == 0 {
                        return;
                    }
                    let n = rng.random_range(1..=p.stdin.len().min(room));
                    let piece: Vec<u8> = p.stdin.drain(..n).collect();
                    p.got.extend_from_slice(&piece);
                    p.out[0].extend(piece);
                    self.pump_stdin(proc, rng, wakes);
                    self.pump_out(proc, 0, rng, wakes);
                    self.kick(proc, rng, wakes);
                    return;
                }
                Op::Write(s, bytes, at) => {
                    let s = *s;
                    if *at >= bytes.len() {
                        p.ops.pop_front();
                        continue;
                    }
                    let room = cap.saturating_sub(p.out[s].len());
                    if room == 0 {
                        // Blocked until the server reads.
                        return;
                    }
                    // A write puts all that fits, or (a script writing in pieces) some.
                    let fits = room.min(bytes.len() - *at);
                    let n = if rng.random_bool(0.5) {
                        fits
                    } else {
                        rng.random_range(1..=fits)
                    };
                    p.out[s].extend(bytes[*at..*at + n].iter().copied());
                    *at += n;
                    self.pump_out(proc, s, rng, wakes);
                    self.kick(proc, rng, wakes);
                    return;
                }
                Op::CloseStdin => {
                    p.ops.pop_front();
                    p.stdin_gone = true;
                    p.stdin.clear();
                    p.swapped.clear();
                    self.pump_stdin(proc, rng, wakes);
                }
                Op::Stall => return,
                Op::Exit(status) => {
                    let status = *status;
                    self.exit(proc, status, rng, wakes);
                    return;
                }
            }
        }
    }
}
