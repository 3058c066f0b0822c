//! `spawn=` services in the control loop: the launcher carries out, each service's
//! supervisor (`weir_core::service`) decides, and the workers hear what it publishes.
//!
//! # Theory of operation
//!
//! ```text
//!   start-up (before threads, before dropping root)
//!     run directory (0700, owned by weir's user) ─► launcher started ─► Listen per service
//!     program looked up on PATH; not found → the service is Stopped (503), weir starts
//!
//!   control loop                     launcher                 workers
//!   ────────────                     ────────                 ───────
//!   Supervisor::new ─ Spawn ───────► fork/exec (fd 0 = socket)
//!   handle_spawned  ◄─ Spawned{pid}
//!   handle_exited   ◄─ Exited{code|signal}
//!   handle_served   ◄────────────────────────────────────────── ServiceBoard counts
//!   Publish(avail) ──────────────────────────────────────────► Input::ServiceState
//!   Kill{pid} ──────────────────────► SIGKILL to the group
//!   (weir stops) ─── socket closed ─► every service stopped; launcher exits
//! ```
//!
//! Launcher ids name one process for life: a counter, mapped here to (service, instance)
//! until its `Exited`. The proof a process can run is a request its service answered
//! whole: workers count `ServiceAnswered` on the shared `ServiceBoard`, and the loop
//! compares counts at every wake-up (and every `SERVED_CHECK` while services run), before
//! it handles an exit, so a process that served and then died is relaunched at once.
//! Jitter for back-off comes from a small generator seeded from the clock: randomness is
//! an input to the core, never drawn inside it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir_core::config::Service;
use weir_core::server::{ExitStatus, Input};
use weir_core::service::{Availability, InstanceId, Policy, Supervisor, SupervisorEffect};
use weir_core::{Config, Time};

use crate::launcher::{Launcher, Report, Request};
use crate::log::log_error;
use crate::privs;

/// How often the loop looks at the served counts while services run.
pub const SERVED_CHECK: Duration = Duration::from_millis(250);
/// The listen backlog of a service's socket: requests wait there while it (re)starts.
const BACKLOG: u32 = 1024;

/// Requests each service answered whole, counted by the workers, read by the loop.
#[derive(Debug, Default)]
pub struct ServiceBoard {
    served: BTreeMap<String, AtomicU64>,
}

impl ServiceBoard {
    /// A board for the services of `config`.
    #[must_use]
    pub fn new(config: &Config) -> ServiceBoard {
        ServiceBoard {
            served: config
                .services
                .keys()
                .map(|k| (k.clone(), AtomicU64::new(0)))
                .collect(),
        }
    }

    /// A worker saw `service` answer a request whole.
    pub fn answered(&self, service: &str) {
        if let Some(c) = self.served.get(service) {
            // Relaxed: a count, read later; nothing else is published through it.
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests `service` answered so far.
    #[must_use]
    pub fn served(&self, service: &str) -> u64 {
        self.served
            .get(service)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// What is needed to start one process of a service.
#[derive(Debug)]
struct Recipe {
    program: PathBuf,
    args: Vec<Vec<u8>>,
    env: Vec<(Vec<u8>, Vec<u8>)>,
    cwd: PathBuf,
    user: Option<(u32, u32)>,
}

/// One `spawn=` service.
#[derive(Debug)]
struct Supervised {
    recipe: Recipe,
    supervisor: Supervisor,
    /// The served count last handed to the supervisor.
    served_seen: u64,
}

/// The control loop's side of every `spawn=` service.
#[derive(Debug)]
pub struct Services {
    launcher: Option<Launcher>,
    supervised: BTreeMap<String, Supervised>,
    /// Launcher id → (service, instance, pid once reported), for processes not yet
    /// reported exited.
    ids: BTreeMap<u64, (String, InstanceId, Option<u32>)>,
    next_id: u64,
    board: Arc<ServiceBoard>,
    /// Availability changes for the workers, taken by `take_published`.
    published: Vec<Input>,
    run_dir: Option<PathBuf>,
    rng: u64,
}

/// Looks `name` up as a shell would: a name with a `/` is taken as it is (relative to
/// `root`), any other is searched on `PATH`.
fn find_program(name: &str, root: &Path, path: Option<OsString>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = root.join(name);
        return runnable(&p).then_some(p);
    }
    let path = path.unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_absolute() && runnable(p))
}

impl Services {
    /// Sets up every `spawn=` service of `config`: the run directory (which `config` must
    /// already name), the launcher, the sockets and the first processes. Call it before
    /// any thread starts and before dropping root; `owner` is the account workers run as
    /// (they connect to the sockets). A service whose program cannot be found, or whose
    /// socket cannot be made, is logged and left stopped: its requests get 503.
    pub fn start(
        config: &Config,
        owner: Option<&privs::Account>,
        board: Arc<ServiceBoard>,
        now: Time,
    ) -> Result<Services, String> {
        let mut services = Services {
            launcher: None,
            supervised: BTreeMap::new(),
            ids: BTreeMap::new(),
            next_id: 1,
            board,
            published: Vec::new(),
            run_dir: None,
            rng: seed(),
        };
        let spawned: Vec<(&String, &Service)> = config
            .services
            .iter()
            .filter(|(_, s)| matches!(s, Service::Spawn { .. }))
            .collect();
        if spawned.is_empty() {
            return Ok(services);
        }
        make_run_dir(&config.run_dir, owner)?;
        services.run_dir = Some(config.run_dir.clone());
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find weir's own program to start the launcher: {e}"))?;
        let mut launcher =
            Launcher::start(&exe).map_err(|e| format!("cannot start the launcher: {e}"))?;
        let path_var = std::env::var_os("PATH");
        for (name, service) in spawned {
            let Service::Spawn {
                argv,
                processes,
                user,
                cwd,
                env,
                ..
            } = service
            else {
                continue;
            };
            let Some(program) = find_program(&argv[0], &config.root, path_var.clone()) else {
                log_error!(
                    "service {name}: `{}` is not a program found on PATH; its requests get 503",
                    argv[0]
                );
                services.stopped(name);
                continue;
            };
            let user = match user {
                Some(u) => match privs::resolve(u, None) {
                    Ok(a) => Some((a.uid, a.gid)),
                    Err(e) => {
                        log_error!("service {name}: {e}; its requests get 503");
                        services.stopped(name);
                        continue;
                    }
                },
                None => None,
            };
            let socket = config.run_dir.join(format!("{name}.sock"));
            let listen = Request::Listen {
                service: name.clone(),
                path: socket,
                backlog: BACKLOG,
                mode: 0o600,
                owner: owner.map(|a| (a.uid, a.gid)),
            };
            launcher
                .send(&listen)
                .map_err(|e| format!("cannot talk to the launcher: {e}"))?;
            if let Some(err) = wait_listening(&mut launcher, name)? {
                log_error!(
                    "service {name}: cannot make its socket: {}; its requests get 503",
                    std::io::Error::from_raw_os_error(err)
                );
                services.stopped(name);
                continue;
            }
            let mut vars: Vec<(Vec<u8>, Vec<u8>)> = vec![(
                b"PATH".to_vec(),
                path_var.clone().map_or_else(
                    || b"/usr/local/bin:/usr/bin:/bin".to_vec(),
                    OsStringExt::into_vec,
                ),
            )];
            for (k, v) in env {
                vars.retain(|(n, _)| n != k.as_bytes());
                vars.push((k.as_bytes().to_vec(), v.as_bytes().to_vec()));
            }
            let recipe = Recipe {
                program,
                args: argv[1..].iter().map(|a| a.as_bytes().to_vec()).collect(),
                env: vars,
                cwd: cwd.clone(),
                user,
            };
            let supervisor = Supervisor::new(name, *processes, Policy::default(), now);
            services.supervised.insert(
                name.clone(),
                Supervised {
                    recipe,
                    supervisor,
                    served_seen: 0,
                },
            );
        }
        services.launcher = Some(launcher);
        let names: Vec<String> = services.supervised.keys().cloned().collect();
        for name in names {
            services.drain(&name);
        }
        Ok(services)
    }

    /// A service that will not run: the workers answer 503 without trying it.
    fn stopped(&mut self, name: &str) {
        self.published.push(Input::ServiceState {
            service: name.to_string(),
            availability: Availability::Stopped,
        });
    }

    /// The launcher's socket, to watch for readability (none without services).
    #[must_use]
    pub fn launcher_fd(&self) -> Option<std::os::unix::io::RawFd> {
        self.launcher.as_ref().map(Launcher::fd)
    }

    /// The earliest time `handle` has work to do.
    #[must_use]
    pub fn poll_timeout(&self, now: Time) -> Option<Time> {
        if self.supervised.is_empty() {
            return None;
        }
        let check = now.after(SERVED_CHECK);
        self.supervised
            .values()
            .filter_map(|s| s.supervisor.poll_timeout())
            .chain(std::iter::once(check))
            .min()
    }

    /// Everything that may have happened: launcher reports, served counts, timers.
    pub fn handle(&mut self, now: Time) {
        self.check_served(now);
        while let Some(launcher) = self.launcher.as_mut() {
            match launcher.try_recv() {
                Ok(Some(report)) => self.report(report, now),
                Ok(None) => break,
                Err(e) => {
                    log_error!("the launcher has gone ({e}); services cannot be restarted");
                    self.launcher = None;
                    let names: Vec<String> = self.supervised.keys().cloned().collect();
                    for name in names {
                        if let Some(s) = self.supervised.get_mut(&name) {
                            s.supervisor.stop(now);
                        }
                        self.drain(&name);
                    }
                    break;
                }
            }
        }
        let names: Vec<String> = self.supervised.keys().cloned().collect();
        for name in names {
            if let Some(s) = self.supervised.get_mut(&name) {
                if s.supervisor.poll_timeout().is_some_and(|t| t <= now) {
                    s.supervisor.handle_timeout(now);
                }
            }
            self.drain(&name);
        }
    }

    /// Availability changes to hand to every worker.
    pub fn take_published(&mut self) -> Vec<Input> {
        std::mem::take(&mut self.published)
    }

    /// Stops every service (the launcher stops the processes and exits) and removes the
    /// run directory.
    pub fn shutdown(mut self) {
        if let Some(launcher) = self.launcher.take() {
            if let Err(e) = launcher.shutdown(crate::launcher::SHUTDOWN_GRACE) {
                log_error!("stopping the launcher: {e}");
            }
        }
        if let Some(dir) = &self.run_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }

    fn check_served(&mut self, now: Time) {
        for (name, s) in &mut self.supervised {
            let served = self.board.served(name);
            if served != s.served_seen {
                s.served_seen = served;
                s.supervisor.handle_served(now);
            }
        }
    }

    fn jitter(&mut self) -> u16 {
        // xorshift64: jitter needs spread, not strength.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        // Lossless: the value is below 1001.
        (self.rng % 1001) as u16
    }

    fn report(&mut self, report: Report, now: Time) {
        match report {
            Report::Spawned { id, pid } => {
                if let Some((name, instance, known)) = self.ids.get_mut(&id) {
                    *known = Some(pid);
                    let (name, instance) = (name.clone(), *instance);
                    if let Some(s) = self.supervised.get_mut(&name) {
                        s.supervisor.handle_spawned(instance, pid, now);
                    }
                    self.drain(&name);
                }
            }
            Report::SpawnFailed { id, errno } => {
                if let Some((name, instance, _)) = self.ids.remove(&id) {
                    log_error!(
                        "service {name}: cannot start {}: {}",
                        self.supervised.get(&name).map_or_else(String::new, |s| s
                            .recipe
                            .program
                            .display()
                            .to_string()),
                        std::io::Error::from_raw_os_error(errno)
                    );
                    let jitter = self.jitter();
                    if let Some(s) = self.supervised.get_mut(&name) {
                        s.supervisor.handle_spawn_failed(instance, jitter, now);
                    }
                    self.drain(&name);
                }
            }
            Report::Exited { id, code, signal } => {
                if let Some((name, instance, pid)) = self.ids.remove(&id) {
                    let status = match (code, signal) {
                        (_, Some(sig)) => ExitStatus::Signal(sig),
                        (Some(c), None) => ExitStatus::Code(c),
                        (None, None) => ExitStatus::Code(0),
                    };
                    let jitter = self.jitter();
                    if let (Some(s), Some(pid)) = (self.supervised.get_mut(&name), pid) {
                        s.supervisor
                            .handle_exited(instance, pid, status, jitter, now);
                    }
                    self.drain(&name);
                }
            }
            Report::Listening { .. } => {}
        }
    }

    /// Carries out what a service's supervisor asked for.
    fn drain(&mut self, name: &str) {
        loop {
            let Some(s) = self.supervised.get_mut(name) else {
                return;
            };
            let Some(effect) = s.supervisor.poll_effect() else {
                return;
            };
            match effect {
                SupervisorEffect::Spawn { instance } => {
                    let id = self.next_id;
                    self.next_id += 1;
                    let r = &s.recipe;
                    let req = Request::Spawn {
                        id,
                        service: name.to_string(),
                        program: r.program.clone(),
                        args: r.args.clone(),
                        env: r.env.clone(),
                        cwd: r.cwd.clone(),
                        user: r.user,
                    };
                    self.ids.insert(id, (name.to_string(), instance, None));
                    self.send(&req);
                }
                SupervisorEffect::Kill { instance, pid } => {
                    let ids: Vec<u64> = self
                        .ids
                        .iter()
                        .filter(|(_, (n, i, p))| n == name && *i == instance && *p == Some(pid))
                        .map(|(id, _)| *id)
                        .collect();
                    for id in ids {
                        self.send(&Request::Kill { id });
                    }
                }
                SupervisorEffect::Publish(availability) => {
                    self.published.push(Input::ServiceState {
                        service: name.to_string(),
                        availability,
                    });
                }
                SupervisorEffect::Log(line) => log_error!("{line}"),
            }
        }
    }

    fn send(&mut self, req: &Request) {
        if let Some(launcher) = self.launcher.as_mut() {
            if let Err(e) = launcher.send(req) {
                log_error!("cannot talk to the launcher: {e}");
            }
        }
    }
}

/// Waits (briefly: the launcher answers at once) for the answer to a `Listen`.
fn wait_listening(launcher: &mut Launcher, name: &str) -> Result<Option<i32>, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match launcher.try_recv() {
            Ok(Some(Report::Listening { service, error })) if service == name => return Ok(error),
            Ok(Some(other)) => log_error!("launcher: unexpected report at start-up: {other:?}"),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(None) => return Err(format!("service {name}: the launcher did not answer")),
            Err(e) => return Err(format!("the launcher failed: {e}")),
        }
    }
}

/// Makes the private run directory: mode 0700, owned by the account workers run as (they
/// connect to the sockets in it), and new (an existing one is refused rather than trusted).
fn make_run_dir(dir: &Path, owner: Option<&privs::Account>) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot make the run directory {}: {e}", dir.display()))?;
    if let Some(a) = owner {
        std::os::unix::fs::chown(dir, Some(a.uid), Some(a.gid))
            .map_err(|e| format!("cannot give the run directory to {}: {e}", a.name))?;
    }
    Ok(())
}

/// A private run directory's path: under `$XDG_RUNTIME_DIR` or the temporary directory,
/// named after this process.
#[must_use]
pub fn run_dir_path() -> PathBuf {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(std::env::temp_dir);
    base.join(format!("weir.{}", std::process::id()))
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Lossless enough: any 64 bits of it will do, never zero (xorshift's fixed point).
    (t as u64 ^ u64::from(std::process::id()).rotate_left(32)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_path_or_by_path() {
        let root = Path::new("/");
        assert_eq!(
            find_program("sh", root, Some(OsString::from("/nonexistent:/bin"))),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(
            find_program("sh", root, Some(OsString::from("/nonexistent"))),
            None
        );
        assert_eq!(
            find_program("bin/sh", root, None),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(find_program("no-such-program-weir", root, None), None);
    }

    #[test]
    fn the_board_counts_per_service() {
        let mut config = Config::builtin(PathBuf::from("/"));
        config.services.insert(
            "php".into(),
            Service::Connect {
                addr: weir_core::config::ServiceAddr::Tcp("h".into(), 1),
                connections: 1,
            },
        );
        let board = ServiceBoard::new(&config);
        board.answered("php");
        board.answered("php");
        board.answered("unknown");
        assert_eq!(board.served("php"), 2);
        assert_eq!(board.served("unknown"), 0);
    }
}
