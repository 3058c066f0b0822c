//! `weir serve`: from arguments to running workers, and from signals to a clean exit.
//!
//! Start-up happens entirely in the main thread, and any failure there is one `weir: …`
//! line and exit status 1: resolve the root, build the configuration, resolve the `user`
//! and check the `chroot` against the configuration (so that a mistake there costs
//! nothing), install the signal handlers (first, so a signal during start-up is not lost),
//! bind every listening socket for every worker, open the access and error logs, enter the
//! chroot, drop to the user, start the password verifiers (`verifier`) and the file pool
//! (`filepool`, unless `file-threads off`), set up each
//! worker's poll. Only then do the worker threads start and the start line is printed (to
//! the error log, and to standard error too when the error log is a file).
//!
//! ```text
//!   main thread                     signal thread                 workers
//!   ───────────                     ─────────────                 ───────
//!   start-up, spawn ───────────────────────────────────────────► run loops
//!   wait for worker exits ◄─┐       SIGINT/SIGTERM #1 ──stop()──► Shutdown → … → Exit{0}
//!                           │       SIGINT/SIGTERM #2 → exit(128+sig) at once
//!                           │       SIGUSR1 → reopen the error log; Reopen ──► access logger
//!                           └───────────────────────────────────── (index, code) on exit
//!   a worker failed → stop() the others
//!   all exited → close signals, exit with the worst code
//! ```
//!
//! SIGUSR1 reopens the logs, for logrotate's `postrotate` (as nginx's USR1): the signal
//! thread reopens the error log itself (`log::reopen_error_log`, a swap under its lock)
//! and sets the access logger's `Reopen` flag, which the logger thread acts on within
//! `logger::FLUSH_IDLE`; then it writes `SIGUSR1: reopening the logs`, already to the
//! new error log. A log that cannot be opened again (after `user` has dropped root, a
//! root-owned directory refuses a new file; under `chroot`, a path outside it) stays on
//! its old file, and the error log says so. The workers are not involved.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;
use weir_core::server::Input;
use weir_core::{Config, ConfigRef};

use crate::cli::ServeArgs;
use crate::clock::Clock;
use crate::log::{announce, log_error};
use crate::logger::Reopen;
use crate::services::{ServiceBoard, Services};
use crate::status::StatusBoard;
use crate::worker::{Message, Pools, Stopper, Worker};
use crate::{filepool, jail, listen, privs, verifier};

/// The control loop's poll tokens.
const WAKE: Token = Token(0);
const LAUNCHER: Token = Token(1);

/// Exit status reported for a worker thread that panicked (BSD `EX_SOFTWARE`).
const EXIT_PANIC: i32 = 70;

/// Runs `weir serve`; returns the process exit status.
pub fn run(args: ServeArgs) -> i32 {
    match serve(args) {
        Ok(code) => code,
        Err(message) => {
            announce!("{message}");
            1
        }
    }
}

fn serve(args: ServeArgs) -> Result<i32, String> {
    let mut config = build_config(&args)?;
    // Named now, made when a `spawn=` service first needs it (at start-up or a reload).
    config.run_dir = crate::services::run_dir_path();
    let workers = config.workers.unwrap_or(1);
    let root = config.root.clone();

    let account = match &config.user {
        Some((user, group)) => Some(privs::resolve(user, group.as_deref())?),
        None => None,
    };
    let as_root = privs::is_root();
    if let Some(dir) = &config.chroot {
        weir_core::config::chroot::check(&config, dir)?;
        if !as_root {
            return Err(format!(
                "chroot {}: only root can chroot; start weir as root or remove the chroot line",
                dir.display()
            ));
        }
    }

    descriptors(&config, workers);
    let signals = Signals::new([SIGINT, SIGTERM, SIGUSR1, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let bound = listen::bind_all(&config.listen, workers).map_err(|e| e.to_string())?;
    let addrs = bound.addrs.clone();
    // The launcher is started here: before any thread (it is a child of this process),
    // and before dropping root (it keeps root to start services as their users).
    let clock = Clock::start();
    let board = Arc::new(ServiceBoard::new(&config));
    let status = Arc::new(StatusBoard::new(workers, clock.now().unix));
    let owner = account.as_ref().filter(|_| as_root);
    if let Some(path) = &config.pid_file {
        crate::signal::write_pid_file(path)?;
    }
    let mut services = Services::start(&config, owner, Arc::clone(&board), clock.mono())?;
    let config = ConfigRef::new(1, config);

    let mut logs = AccessLogs {
        tx: None,
        threads: Vec::new(),
        reopen: Reopen::default(),
        lost: status.access_log_lost(),
    };
    if let Some(log) = &config.access_log {
        let logger =
            crate::logger::start_with(&log.path, logs.reopen.clone(), Arc::clone(&logs.lost))
                .map_err(|e| format!("cannot open the access log {}: {e}", log.path.display()))?;
        logs.tx = Some(logger.tx);
        logs.threads.push(logger.thread);
    }
    let reopen = Some(logs.reopen.clone());
    if let Some(path) = &config.error_log {
        crate::log::open_error_log(path)
            .map_err(|e| format!("cannot open the error log {}: {e}", path.display()))?;
    }
    if let Some(dir) = &config.chroot {
        jail::enter(dir)?;
    }
    match &account {
        Some(account) if as_root => privs::become_user(account)?,
        Some(account) => announce!(
            "user {}: ignored, since weir was not started as root (it runs as user ID {})",
            account.name,
            // SAFETY: getuid cannot fail and touches no memory.
            unsafe { libc::getuid() }
        ),
        None => {}
    }
    // The password verifiers, shared by the workers (`verifier`): only the workers hold
    // the queue from here on, so the threads end when the last worker does.
    let (verifiers, verifier_pool) = verifier::start(verifier::default_threads(), workers)
        .map_err(|e| format!("cannot start the password verifiers: {e}"))?;
    // The file pool likewise (`filepool`), unless `file-threads off`.
    let (file_pool, file_threads) = match config.file_threads {
        0 => (None, None),
        n => {
            let (handle, threads) = filepool::start(n, workers)
                .map_err(|e| format!("cannot start the file threads: {e}"))?;
            (Some(handle), Some(threads))
        }
    };
    let mut built = Vec::with_capacity(workers);
    for (i, sockets) in bound.sockets.into_iter().enumerate() {
        let sockets = sockets.into_iter().zip(addrs.iter().copied()).collect();
        let worker = Worker::new(
            i,
            config.clone(),
            sockets,
            logs.tx.clone(),
            Arc::clone(&board),
            Arc::clone(&status),
            Pools {
                verifiers: verifiers.clone(),
                files: file_pool.clone(),
            },
        )
        .map_err(|e| format!("cannot set up worker {i}: {e}"))?;
        built.push(worker);
    }
    drop(verifiers);
    drop(file_pool);

    let mut poll = Poll::new().map_err(|e| format!("cannot set up the control loop: {e}"))?;
    let waker = Arc::new(
        Waker::new(poll.registry(), WAKE)
            .map_err(|e| format!("cannot set up the control loop: {e}"))?,
    );
    if let Some(fd) = services.launcher_fd() {
        poll.registry()
            .register(&mut SourceFd(&fd), LAUNCHER, Interest::READABLE)
            .map_err(|e| format!("cannot watch the launcher: {e}"))?;
    }
    let (tx, rx) = mpsc::channel();
    let mut stoppers: Vec<Stopper> = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    for (i, (worker, stopper)) in built.into_iter().enumerate() {
        let report = ExitReport {
            tx: tx.clone(),
            waker: Arc::clone(&waker),
            index: i,
            code: None,
        };
        let spawned = thread::Builder::new()
            .name(format!("weir-worker-{i}"))
            .spawn(move || report.run(worker));
        match spawned {
            Ok(handle) => {
                threads.push(handle);
                stoppers.push(stopper);
            }
            Err(e) => {
                stop_all(&stoppers);
                for t in threads {
                    let _ = t.join();
                }
                return Err(format!("cannot start worker thread {i}: {e}"));
            }
        }
    }
    // Only the workers' reports hold senders now: the channel ends when the last one exits.
    drop(tx);

    announce!(
        "serving {} on {} ({workers} workers)",
        root.display(),
        urls(&addrs)
    );

    let signal_handle = signals.handle();
    let signal_stoppers = stoppers.clone();
    let (reload_tx, reload_rx) = mpsc::channel();
    let reload_wake = Wake {
        tx: reload_tx,
        waker: Arc::clone(&waker),
    };
    let watcher = thread::Builder::new()
        .name("weir-signals".into())
        .spawn(move || watch_signals(signals, &signal_stoppers, reopen.as_ref(), &reload_wake));
    let watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            // Without a signal thread nobody could stop us cleanly: stop now.
            log_error!("cannot start the signal thread: {e}");
            stop_all(&stoppers);
            None
        }
    };

    let mut current = config.clone();
    status.publish_services(services.status(&current));
    let mut worst = 0;
    let mut running = threads.len();
    let mut events = Events::with_capacity(16);
    // Reports that came in while start-up waited for the sockets are handled now.
    services.handle(clock.mono());
    publish(&mut services, &stoppers);
    // The control loop: worker exits, launcher reports, supervisors' timers.
    while running > 0 {
        let now = clock.mono();
        let timeout = services.poll_timeout(now).map(|t| t.since(now));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                log_error!("the control loop cannot poll: {e}; stopping");
                stop_all(&stoppers);
                for (_, code) in rx.iter().take(running) {
                    worst = worst.max(code);
                }
                break;
            }
        }
        while let Ok((index, code)) = rx.try_recv() {
            running -= 1;
            if code != 0 {
                log_error!("worker {index} stopped with status {code}; stopping the others");
                stop_all(&stoppers);
            }
            worst = worst.max(code);
        }
        if reload_rx.try_recv().is_ok() {
            while reload_rx.try_recv().is_ok() {}
            reload(
                &args,
                &mut current,
                &mut services,
                &mut logs,
                &stoppers,
                clock.mono(),
            );
        }
        services.handle(clock.mono());
        publish(&mut services, &stoppers);
        status.publish_services(services.status(&current));
    }
    // Every request in flight is over: the services go (the launcher stops them).
    services.shutdown();
    if let Some(path) = &current.pid_file {
        crate::signal::remove_pid_file(path);
    }
    for t in threads {
        // A panic was already reported through the worker's ExitReport.
        let _ = t.join();
    }
    // Checks still queued were for requests that are gone.
    verifier_pool.finish();
    // File operations still queued were for requests that are gone too.
    if let Some(pool) = file_threads {
        pool.finish();
    }
    // The workers have dropped their senders; this one goes too, and the loggers flush.
    drop(logs.tx);
    for logger in logs.threads {
        let _ = logger.join();
    }
    signal_handle.close();
    if let Some(w) = watcher {
        let _ = w.join();
    }
    Ok(worst)
}

/// The configuration file's (or the built-in) configuration with the command line's changes.
/// Descriptors weir needs besides one per connection: per worker its poll, waker and
/// listening sockets, and files and pipes in use; for the process its logs, signals and
/// control loop. A rough margin, for the warning below.
const DESCRIPTORS_SPARE: u64 = 64;

/// Raises the soft limit on open descriptors (`ulimit -n`) to the hard limit, as nginx's
/// `worker_rlimit_nofile` or Go's runtime do: every connection is a descriptor, and the
/// usual soft limit of 1024 is far below `limit connections=` (10,000 per worker by
/// default), while the hard limit is typically much higher. Children (scripts, services)
/// inherit the raised limit. Then warns if even that is short of what the connection
/// limit needs: past it accepting fails (EMFILE) and backs off, and new clients wait.
fn descriptors(config: &Config, workers: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given, which lives for the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    let per_worker = u64::try_from(config.limits.connections_max).unwrap_or(u64::MAX);
    let need = (workers as u64)
        .saturating_mul(per_worker.saturating_add(16))
        .saturating_add(DESCRIPTORS_SPARE);
    if lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < need {
        announce!(
            "limit connections={per_worker} with {workers} workers needs about {need} open \
             descriptors, but only {} may be open (ulimit -n): beyond that new connections \
             wait; raise the hard limit (LimitNOFILE= in a systemd unit) or lower limit \
             connections=",
            lim.rlim_cur
        );
    }
}

fn build_config(args: &ServeArgs) -> Result<Config, String> {
    let root = match (&args.root, &args.config) {
        (Some(asked), _) => Some(canonical_dir(asked)?),
        (None, Some(_)) => None,
        (None, None) => Some(canonical_dir(Path::new("."))?),
    };
    let mut config = match &args.config {
        Some(file) => crate::conffile::load(file, root.as_deref())?,
        // unwrap-free: without -c, root was set just above.
        None => Config::builtin(root.unwrap_or_default()),
    };
    if !args.listen.is_empty() {
        config.listen = dedup(&args.listen);
    }
    let workers = match args.workers {
        // u32 → usize is lossless on the 64-bit targets weir supports.
        Some(n) => n as usize,
        None => config.workers.unwrap_or_else(default_workers),
    };
    config.workers = Some(workers);
    Ok(config)
}

/// `dir` made absolute and checked to be a directory.
fn canonical_dir(dir: &Path) -> Result<PathBuf, String> {
    let root =
        std::fs::canonicalize(dir).map_err(|e| format!("cannot serve {}: {e}", dir.display()))?;
    if !root.is_dir() {
        return Err(format!("cannot serve {}: not a directory", root.display()));
    }
    Ok(root)
}

/// One worker per core the process may use; one if that cannot be known.
fn default_workers() -> usize {
    thread::available_parallelism().map_or(1, usize::from)
}

/// The addresses in order, each once (the same address twice would only fail to bind).
fn dedup(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
    for a in addrs {
        if !out.contains(a) {
            out.push(*a);
        }
    }
    out
}

/// `http://A, http://B` (an IPv6 `SocketAddr` already prints as `[::1]:8080`).
fn urls(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| format!("http://{a}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn stop_all(stoppers: &[Stopper]) {
    for s in stoppers {
        s.stop();
    }
}

/// The access log's writer threads and the handles to reach them: the sender workers
/// clone (none while there is no access log), every logger thread started (joined at
/// exit, when their senders are gone), and the one `Reopen` that SIGUSR1 and reloads use.
struct AccessLogs {
    tx: Option<crate::logger::LogSender>,
    threads: Vec<std::thread::JoinHandle<()>>,
    reopen: Reopen,
    /// Access-log lines lost, whichever logger lost them (the status page shows it).
    lost: Arc<std::sync::atomic::AtomicU64>,
}

/// A message for the control loop, and the waker that makes it look.
struct Wake {
    tx: mpsc::Sender<()>,
    waker: Arc<Waker>,
}

impl Wake {
    fn wake(&self) {
        // The control loop outlives the signal thread's useful life; a failed send means
        // it is already past its loop, where a reload has nothing left to change.
        if self.tx.send(()).is_ok() {
            if let Err(e) = self.waker.wake() {
                log_error!("cannot wake the control loop: {e}");
            }
        }
    }
}

/// SIGHUP: the configuration is read again with the same command line. A file with
/// errors changes nothing (each error is logged as `FILE:LINE:COL: error: …`); a good one
/// becomes the next generation: the services are diffed (`Services::reload`), then every
/// worker takes it for the requests that start from then on. What the running process
/// cannot change without a restart — the listening addresses, `workers`, `file-threads`,
/// `user`, `chroot`, the logs' paths — keeps its start-up value, and the error log says so.
fn reload(
    args: &ServeArgs,
    current: &mut ConfigRef,
    services: &mut Services,
    logs: &mut AccessLogs,
    stoppers: &[Stopper],
    now: weir_core::Time,
) {
    let mut config = match build_config(args) {
        Ok(c) => c,
        Err(report) => {
            for line in report.lines() {
                log_error!("{line}");
            }
            log_error!(
                "SIGHUP: the configuration has errors; still serving generation {}",
                current.generation()
            );
            return;
        }
    };
    let mut kept = Vec::new();
    // Addresses added are bound first, for every worker: one that cannot be bound (a
    // port below 1024 after root was dropped, an address in use) refuses the whole
    // reload, so the running configuration stays whole.
    let added: Vec<SocketAddr> = config
        .listen
        .iter()
        .filter(|a| !current.listen.contains(a))
        .copied()
        .collect();
    let removed: Vec<SocketAddr> = current
        .listen
        .iter()
        .filter(|a| !config.listen.contains(a))
        .copied()
        .collect();
    let bound = match listen::bind_all(&added, stoppers.len()) {
        Ok(b) => b,
        Err(e) => {
            log_error!(
                "SIGHUP: {e}; still serving generation {}",
                current.generation()
            );
            return;
        }
    };
    if config.user != current.user {
        kept.push("user");
        config.user.clone_from(&current.user);
    }
    if config.chroot != current.chroot {
        kept.push("chroot");
        config.chroot.clone_from(&current.chroot);
    }
    if config.file_threads != current.file_threads {
        kept.push("file-threads");
        config.file_threads = current.file_threads;
    }
    // The logs follow the file: a new path is opened before anything changes, and one that
    // cannot be opened keeps the old log (and says so) without refusing the rest.
    if config.error_log != current.error_log {
        if let Err(e) = crate::log::switch_error_log(config.error_log.as_deref()) {
            log_error!(
                "SIGHUP: cannot open the error log {}: {e}; keeping the old one",
                config
                    .error_log
                    .as_deref()
                    .map_or_else(String::new, |p| p.display().to_string())
            );
            config.error_log.clone_from(&current.error_log);
        }
    }
    let old_path = current.access_log.as_ref().map(|l| l.path.clone());
    let new_path = config.access_log.as_ref().map(|l| l.path.clone());
    if old_path != new_path {
        match (&old_path, &new_path) {
            (Some(_), Some(path)) => logs.reopen.move_to(path.clone()),
            (None, Some(path)) => {
                match crate::logger::start_with(path, logs.reopen.clone(), Arc::clone(&logs.lost)) {
                    Ok(logger) => {
                        for s in stoppers {
                            s.send(Message::AccessLog(Some(logger.tx.clone())));
                        }
                        logs.tx = Some(logger.tx);
                        logs.threads.push(logger.thread);
                    }
                    Err(e) => {
                        log_error!(
                            "SIGHUP: cannot open the access log {}: {e}; no access log",
                            path.display()
                        );
                        config.access_log = None;
                    }
                }
            }
            (Some(_), None) => {
                for s in stoppers {
                    s.send(Message::AccessLog(None));
                }
                // The logger ends, flushing, once the workers have let go of it too.
                logs.tx = None;
            }
            (None, None) => {}
        }
    }
    config.workers = current.workers;
    config.run_dir.clone_from(&current.run_dir);
    config
        .spawn_generations
        .clone_from(&current.spawn_generations);
    if !kept.is_empty() {
        log_error!(
            "SIGHUP: {} changed; that takes a restart, the running values stay",
            kept.join(", ")
        );
    }
    services.reload(&mut config, current.timeouts.grace, now);
    for (s, sockets) in stoppers.iter().zip(bound.sockets) {
        for (socket, addr) in sockets.into_iter().zip(bound.addrs.iter().copied()) {
            s.send(Message::Listen(socket, addr));
        }
        for &addr in &removed {
            s.send(Message::Unlisten(addr));
        }
    }
    if !added.is_empty() || !removed.is_empty() {
        log_error!("SIGHUP: now serving on {}", urls(&config.listen));
    }
    let next = ConfigRef::new(current.generation() + 1, config);
    for s in stoppers {
        s.tell(Input::Reload(next.clone()));
    }
    *current = next;
    log_error!(
        "SIGHUP: configuration reloaded (generation {})",
        current.generation()
    );
}

/// The first SIGINT/SIGTERM stops the workers cleanly; a second one exits at once.
/// SIGUSR1 reopens the logs (`access`: the access logger's flag, if there is one).
/// SIGHUP asks the control loop to reload (`reload`).
fn watch_signals(
    mut signals: Signals,
    stoppers: &[Stopper],
    access: Option<&Reopen>,
    reload: &Wake,
) {
    let mut seen = 0;
    for signal in signals.forever() {
        if signal == SIGUSR1 {
            reopen_logs(access);
            continue;
        }
        if signal == SIGHUP {
            reload.wake();
            continue;
        }
        seen += 1;
        let name = if signal == SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        };
        if seen == 1 {
            log_error!("{name}: finishing requests in flight (again to exit at once)");
            stop_all(stoppers);
        } else {
            log_error!("{name} again: exiting at once");
            std::process::exit(128 + signal);
        }
    }
}

/// SIGUSR1: the error log is reopened here and now, the access log by its thread soon
/// after; a log that cannot be reopened keeps its old file.
fn reopen_logs(access: Option<&Reopen>) {
    if let Some(Err((path, e))) = crate::log::reopen_error_log() {
        log_error!(
            "SIGUSR1: cannot reopen the error log {}: {e}; still writing to the old file",
            path.display()
        );
    }
    if let Some(access) = access {
        access.request();
    }
    log_error!("SIGUSR1: reopening the logs");
}

/// Hands what the services' supervisors published to every worker.
fn publish(services: &mut Services, stoppers: &[Stopper]) {
    for input in services.take_published() {
        for s in stoppers {
            s.tell(input.clone());
        }
    }
}

/// Sends a worker's exit code to the main thread when the worker's thread ends, however it
/// ends: a panic unwinds through this value's `Drop` and reports `EXIT_PANIC`.
struct ExitReport {
    tx: mpsc::Sender<(usize, i32)>,
    /// Wakes the control loop to read the report.
    waker: Arc<Waker>,
    index: usize,
    code: Option<i32>,
}

impl ExitReport {
    /// Runs the worker on this thread. Taking `self` by value moves the whole report into
    /// the thread (a closure assigning `report.code` would capture only that field and drop
    /// the report, and send its message, at once in the spawning thread).
    fn run(mut self, worker: Worker) {
        self.code = Some(worker.run());
    }
}

impl Drop for ExitReport {
    fn drop(&mut self) {
        // The receiver lives until every sender is gone; a failed send cannot happen, and
        // there would be nobody to tell anyway.
        let _ = self.tx.send((self.index, self.code.unwrap_or(EXIT_PANIC)));
        if let Err(e) = self.waker.wake() {
            log_error!("cannot wake the control loop: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(root: Option<&str>, listen: &[&str], workers: Option<u32>) -> ServeArgs {
        ServeArgs {
            config: None,
            listen: listen
                .iter()
                .map(|a| a.parse().expect("literal address"))
                .collect(),
            root: root.map(PathBuf::from),
            workers,
        }
    }

    #[test]
    fn config_from_arguments() {
        let tmp = std::env::temp_dir();
        let c = build_config(&args(
            tmp.to_str(),
            &["127.0.0.1:18001", "[::1]:18002", "127.0.0.1:18001"],
            Some(3),
        ))
        .expect("temp dir exists");
        assert!(c.root.is_absolute());
        assert_eq!(
            c.root,
            std::fs::canonicalize(&tmp).expect("temp dir exists")
        );
        assert_eq!(c.listen.len(), 2, "duplicates are dropped");
        assert_eq!(c.workers, Some(3));
    }

    #[test]
    fn defaults_keep_the_builtin_listen_address() {
        let c = build_config(&args(Some("/"), &[], None)).expect("/ exists");
        assert_eq!(c.listen, vec![SocketAddr::from(([127, 0, 0, 1], 8080))]);
        assert!(c.workers.is_some_and(|n| n >= 1));
    }

    #[test]
    fn a_missing_root_is_a_clear_error() {
        let err = build_config(&args(Some("/nonexistent-weir-root"), &[], None))
            .expect_err("no such directory");
        assert!(
            err.starts_with("cannot serve /nonexistent-weir-root: "),
            "{err}"
        );
    }

    #[test]
    fn urls_are_listed() {
        let addrs = vec![
            SocketAddr::from(([127, 0, 0, 1], 80)),
            "[::1]:8080".parse().expect("literal address"),
        ];
        assert_eq!(urls(&addrs), "http://127.0.0.1:80, http://[::1]:8080");
    }
}
