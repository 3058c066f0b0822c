//! weir: the production shell around `weir-core`.
//!
//! The core decides everything; this binary only carries out its effects with real
//! sockets, files and clocks, and reports the results back as inputs (DESIGN.md §1). No
//! module here knows HTTP: if something needs to look at a header, it belongs in the core.
//!
//! Modules, each with one job:
//!
//! * `cli` — the command line (clap).
//! * `serve` — `weir serve`: configuration, binding, worker threads, signals, the control
//!   loop (reload, services), exit status.
//! * `route` — `weir check` and `weir route`; `conffile` — reading `weir.conf`.
//! * `listen` — the `SO_REUSEPORT` listening sockets, one per worker per address.
//! * `worker` — one thread's mio loop driving one core `Server`.
//! * `conn` — a connection's readiness and its armed read and send.
//! * `logger` — the access-log thread.
//! * `files` — open files by `FileId` and the file operations; `sendfile` — file ranges to
//!   sockets; `filepool` — the threads that run file operations off the event loops;
//!   `fault` — a slow disk on demand for the tests (debug builds only).
//! * `child` — pidfds and exit statuses, for both child tables (launcher and CGI).
//! * `process` — CGI children by `StreamId`: spawning, their pipes, `Kill`, reaping.
//! * `token` — mio tokens with generations; `clock` — `Now`; `errno` — OS errors to
//!   `IoError`; `log` — the error log (`weir: …` lines on standard error or in a file).
//! * `launcher` — `weir launcher` (OKWS's okld), the process that creates the services'
//!   sockets and starts, stops and reaps their processes, and weir's end of its socket.
//! * `services` — `spawn=` services in the control loop: their supervisors, the
//!   launcher's reports, what workers are told; `upstream` — streams to FastCGI services.
//! * `verifier` — the password verifiers: a small pool of threads, shared by the workers,
//!   that runs `protect … users=` checks off the event loops.
//! * `queue` — the queues between threads (log lines, file operations, password checks,
//!   worker inboxes): a Mutex and two Condvars, checked by loom; `sync` — std or loom.
//! * `signal` — `weir reload` and `weir stop`, and the `pid-file` they read.
//! * `privs` — `user`: resolving the account and dropping root; `jail` — `chroot`:
//!   checking, entering, and translating the core's paths to paths inside it.
//!
//! Exit status: 0 after a clean shutdown, 1 when start-up fails, 2 for a usage error
//! (clap's convention), 128 + signal when a second SIGINT/SIGTERM cuts the shutdown short.

mod child;
mod cli;
mod clock;
mod conffile;
mod conn;
mod errno;
mod fault;
mod filepool;
mod files;
mod jail;
mod launcher;
mod listen;
mod log;
mod logger;
mod pool;
mod privs;
mod process;
mod queue;
mod route;
mod sendfile;
mod serve;
mod services;
mod signal;
mod status;
mod sync;
mod token;
mod upstream;
mod verifier;
mod worker;

use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: a served request makes a score of short-lived
/// allocations, some above glibc's per-thread cache size (a head with a 1 KiB body), and
/// malloc and free were a tenth of a kept-alive request's CPU (bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    ignore_sigpipe();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Check(args) => route::check(&args),
        Command::Route(args) => route::route(&args),
        Command::Reload(args) => signal::run(&args, signal::Ask::Reload),
        Command::Stop(args) => signal::run(&args, signal::Ask::Stop),
        Command::Launcher => launcher::run::main(),
        Command::Mud => weir_mud::main_with_listener_on_fd0(),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// A peer that goes away must cost one connection (`EPIPE` from the write), not the process.
/// Rust's runtime already ignores SIGPIPE before `main`; this does not rely on that, since
/// `sendfile` has no `MSG_NOSIGNAL` flag to fall back on.
fn ignore_sigpipe() {
    // SAFETY: setting a disposition to SIG_IGN installs no handler code, touches no memory
    // of ours, and runs before any other thread exists, so nothing can race with it. The
    // previous disposition it returns is of no interest.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}
