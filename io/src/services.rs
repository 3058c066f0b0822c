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
use std::sync::Arc;
use std::time::Duration;

use weir_core::config::Service;
use weir_core::server::{ExitStatus, Input, ServiceStatus};
use weir_core::service::{
    Availability, InstanceId, Policy, ServiceState, Supervisor, SupervisorEffect,
};
use weir_core::{Config, Time};

use crate::launcher::{Launcher, Report, Request};
use crate::log::log_error;
use crate::privs;
use crate::sync::{AtomicU64, Ordering};

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
#[derive(Clone, Debug, PartialEq, Eq)]
struct Recipe {
    program: PathBuf,
    args: Vec<Vec<u8>>,
    env: Vec<(Vec<u8>, Vec<u8>)>,
    cwd: PathBuf,
    user: Option<(u32, u32)>,
    processes: usize,
}

/// One generation of one `spawn=` service: its processes and their supervisor.
#[derive(Debug)]
struct Supervised {
    /// The service's name in the configuration.
    name: String,
    recipe: Recipe,
    supervisor: Supervisor,
    /// The served count last handed to the supervisor.
    served_seen: u64,
    /// Set when a reload removed or replaced this generation: it is stopped then.
    retire_at: Option<Time>,
}

/// The control loop's side of every `spawn=` service.
#[derive(Debug)]
pub struct Services {
    launcher: Option<Launcher>,
    /// Every generation still running, by its launcher key (`NAME`, or `NAME.G` for
    /// generation G > 1).
    all: BTreeMap<String, Supervised>,
    /// Service name → the key of its current generation.
    current: BTreeMap<String, String>,
    /// Service name → its current generation number.
    generations: BTreeMap<String, u32>,
    /// Launcher id → (key, instance, pid once reported), for processes not yet reported
    /// exited.
    ids: BTreeMap<u64, (String, InstanceId, Option<u32>)>,
    next_id: u64,
    board: Arc<ServiceBoard>,
    /// Availability changes for the workers, taken by `take_published`.
    published: Vec<Input>,
    run_dir: Option<PathBuf>,
    /// Who may connect to the sockets (weir's account after dropping root).
    owner: Option<(u32, u32)>,
    /// Reports that arrived while waiting for a `Listening` one, handled next.
    early: Vec<Report>,
    rng: u64,
}

/// Looks `name` up as a shell would: a name with a `/` is taken as it is (relative to
/// `root`), any other is searched on `PATH`; `weir` itself is weir's own program (for the
/// services built into it, such as `weir mud`).
fn find_program(name: &str, root: &Path, path: Option<OsString>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if name == "weir" {
        return std::env::current_exe().ok();
    }
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = root.join(name);
        return runnable(&p).then_some(p);
    }
    let path = path.unwrap_or_else(|| OsString::from(DEFAULT_PATH));
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_absolute() && runnable(p))
}

/// The `PATH` services get when weir has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What starting `service` takes, or why it cannot start.
fn recipe(name: &str, service: &Service, root: &Path) -> Result<Recipe, String> {
    let Service::Spawn {
        argv,
        processes,
        user,
        cwd,
        env,
        ..
    } = service
    else {
        return Err(format!("service {name} is not a spawn= service"));
    };
    let path_var = std::env::var_os("PATH");
    let program = find_program(&argv[0], root, path_var.clone()).ok_or_else(|| {
        format!(
            "service {name}: `{}` is not a program found on PATH; its requests get 503",
            argv[0]
        )
    })?;
    let user = match user {
        Some(u) => {
            let a = privs::resolve(u, None)
                .map_err(|e| format!("service {name}: {e}; its requests get 503"))?;
            Some((a.uid, a.gid))
        }
        None => None,
    };
    let mut vars: Vec<(Vec<u8>, Vec<u8>)> = vec![(
        b"PATH".to_vec(),
        path_var.map_or_else(|| DEFAULT_PATH.as_bytes().to_vec(), OsStringExt::into_vec),
    )];
    for (k, v) in env {
        vars.retain(|(n, _)| n != k.as_bytes());
        vars.push((k.as_bytes().to_vec(), v.as_bytes().to_vec()));
    }
    Ok(Recipe {
        program,
        args: argv[1..].iter().map(|a| a.as_bytes().to_vec()).collect(),
        env: vars,
        cwd: cwd.clone(),
        user,
        processes: *processes,
    })
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
            all: BTreeMap::new(),
            current: BTreeMap::new(),
            generations: BTreeMap::new(),
            ids: BTreeMap::new(),
            next_id: 1,
            board,
            published: Vec::new(),
            run_dir: None,
            owner: owner.map(|a| (a.uid, a.gid)),
            early: Vec::new(),
            rng: seed(),
        };
        if !config
            .services
            .values()
            .any(|s| matches!(s, Service::Spawn { .. }))
        {
            return Ok(services);
        }
        make_run_dir(&config.run_dir, owner)?;
        services.run_dir = Some(config.run_dir.clone());
        services.start_launcher()?;
        for (name, service) in &config.services {
            if matches!(service, Service::Spawn { .. }) {
                services.generations.insert(name.clone(), 1);
                services.add(name, service, config, now);
            }
        }
        Ok(services)
    }

    fn start_launcher(&mut self) -> Result<(), String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find weir's own program to start the launcher: {e}"))?;
        let launcher =
            Launcher::start(&exe).map_err(|e| format!("cannot start the launcher: {e}"))?;
        self.launcher = Some(launcher);
        Ok(())
    }

    /// Starts the current generation of service `name` (its socket is
    /// `config.spawn_socket(name)`); on failure it is logged and the service published
    /// as stopped.
    fn add(&mut self, name: &str, service: &Service, config: &Config, now: Time) {
        let generation = self.generations.get(name).copied().unwrap_or(1);
        let key = if generation > 1 {
            format!("{name}.{generation}")
        } else {
            name.to_string()
        };
        let recipe = match recipe(name, service, &config.root) {
            Ok(r) => r,
            Err(e) => {
                log_error!("{e}");
                return self.stopped(name);
            }
        };
        let listen = Request::Listen {
            service: key.clone(),
            path: config.spawn_socket(name),
            backlog: BACKLOG,
            mode: 0o600,
            owner: self.owner,
        };
        let Some(launcher) = self.launcher.as_mut() else {
            log_error!("service {name}: no launcher to start it; its requests get 503");
            return self.stopped(name);
        };
        let answer = launcher
            .send(&listen)
            .map_err(|e| format!("cannot talk to the launcher: {e}"))
            .and_then(|()| wait_listening(launcher, &key, &mut self.early));
        match answer {
            Ok(None) => {}
            Ok(Some(err)) => {
                log_error!(
                    "service {name}: cannot make its socket: {}; its requests get 503",
                    std::io::Error::from_raw_os_error(err)
                );
                return self.stopped(name);
            }
            Err(e) => {
                log_error!("service {name}: {e}; its requests get 503");
                return self.stopped(name);
            }
        }
        let supervisor = Supervisor::new(name, recipe.processes, Policy::default(), now);
        self.all.insert(
            key.clone(),
            Supervised {
                name: name.to_string(),
                recipe,
                supervisor,
                served_seen: self.board.served(name),
                retire_at: None,
            },
        );
        self.current.insert(name.to_string(), key.clone());
        self.drain(&key);
    }

    /// A reload: `config` is the new configuration, not yet handed to the workers. Added
    /// services start; removed ones retire (they finish what is in flight within `grace`,
    /// then stop); changed ones (command, processes, user, directory, environment) start
    /// a new generation on a new socket, which `config.spawn_generations` names, while
    /// the old one retires; unchanged ones are left alone, and one that was given up
    /// starts again.
    pub fn reload(&mut self, config: &mut Config, grace: Duration, now: Time) {
        let retire = now.after(grace);
        let wanted: BTreeMap<String, Service> = config
            .services
            .iter()
            .filter(|(_, s)| matches!(s, Service::Spawn { .. }))
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        if !wanted.is_empty() && self.launcher.is_none() {
            let made = match &self.run_dir {
                Some(_) => Ok(()),
                None => make_run_dir(&config.run_dir, None),
            };
            if let Err(e) = made.and_then(|()| self.start_launcher()) {
                log_error!("{e}; the new services cannot start");
            }
            self.run_dir = Some(config.run_dir.clone());
        }
        // Removed services retire.
        let gone: Vec<String> = self
            .current
            .keys()
            .filter(|n| !wanted.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(key) = self.current.remove(&name) {
                if let Some(s) = self.all.get_mut(&key) {
                    s.retire_at = Some(retire);
                }
            }
            self.generations.remove(&name);
        }
        for (name, service) in &wanted {
            let key = self.current.get(name).cloned();
            let same = key
                .as_ref()
                .and_then(|k| self.all.get(k))
                .is_some_and(|s| recipe(name, service, &config.root).is_ok_and(|r| r == s.recipe));
            match key {
                Some(key) if same => {
                    if let Some(s) = self.all.get_mut(&key) {
                        if s.supervisor.state() == ServiceState::GivenUp {
                            s.supervisor.restart(now);
                        }
                    }
                    self.drain(&key);
                }
                Some(key) => {
                    // A new generation beside the old, which retires.
                    if let Some(s) = self.all.get_mut(&key) {
                        s.retire_at = Some(retire);
                    }
                    let next = self.generations.get(name).copied().unwrap_or(1) + 1;
                    self.generations.insert(name.clone(), next);
                    config.spawn_generations = self.generations.clone();
                    self.add(name, service, config, now);
                }
                None => {
                    let next = self.generations.get(name).copied().unwrap_or(0) + 1;
                    self.generations.insert(name.clone(), next);
                    config.spawn_generations = self.generations.clone();
                    self.add(name, service, config, now);
                }
            }
        }
        config.spawn_generations = self.generations.clone();
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
        if self.all.is_empty() {
            return None;
        }
        let check = now.after(SERVED_CHECK);
        self.all
            .values()
            .flat_map(|s| [s.supervisor.poll_timeout(), s.retire_at])
            .flatten()
            .chain(std::iter::once(check))
            .min()
    }

    /// Everything that may have happened: launcher reports, served counts, timers.
    pub fn handle(&mut self, now: Time) {
        self.check_served(now);
        for report in std::mem::take(&mut self.early) {
            self.report(report, now);
        }
        while let Some(launcher) = self.launcher.as_mut() {
            match launcher.try_recv() {
                Ok(Some(report)) => self.report(report, now),
                Ok(None) => break,
                Err(e) => {
                    log_error!("the launcher has gone ({e}); services cannot be restarted");
                    self.launcher = None;
                    let keys: Vec<String> = self.all.keys().cloned().collect();
                    for key in keys {
                        if let Some(s) = self.all.get_mut(&key) {
                            s.supervisor.stop(now);
                        }
                        self.drain(&key);
                    }
                    break;
                }
            }
        }
        let keys: Vec<String> = self.all.keys().cloned().collect();
        for key in keys {
            let Some(s) = self.all.get_mut(&key) else {
                continue;
            };
            if s.retire_at.is_some_and(|t| t <= now) {
                s.supervisor.stop(now);
                self.drain(&key);
                self.all.remove(&key);
                self.send(&Request::Unlisten { service: key });
                continue;
            }
            if s.supervisor.poll_timeout().is_some_and(|t| t <= now) {
                s.supervisor.handle_timeout(now);
            }
            self.drain(&key);
        }
    }

    /// Every service of `config` as the status page shows it: a `spawn=` one with its
    /// supervisor's state and processes, a `connect=` one as `remote`.
    #[must_use]
    pub fn status(&self, config: &Config) -> Vec<ServiceStatus> {
        config
            .services
            .iter()
            .map(|(name, service)| {
                let current = self.current.get(name).and_then(|k| self.all.get(k));
                match (service, current) {
                    (Service::Connect { .. }, _) => ServiceStatus {
                        name: name.clone(),
                        state: "remote".into(),
                        processes: Vec::new(),
                        restarts: 0,
                    },
                    (Service::Spawn { .. }, Some(s)) => ServiceStatus {
                        name: name.clone(),
                        state: s.supervisor.state().name().into(),
                        processes: s
                            .supervisor
                            .instances()
                            .iter()
                            .map(|i| (i.state.name().to_string(), i.pid()))
                            .collect(),
                        restarts: s.supervisor.restarts(),
                    },
                    (Service::Spawn { .. }, None) => ServiceStatus {
                        name: name.clone(),
                        state: "stopped".into(),
                        processes: Vec::new(),
                        restarts: 0,
                    },
                }
            })
            .collect()
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
        for s in self.all.values_mut() {
            let served = self.board.served(&s.name);
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
                if let Some((key, instance, known)) = self.ids.get_mut(&id) {
                    *known = Some(pid);
                    let (key, instance) = (key.clone(), *instance);
                    if let Some(s) = self.all.get_mut(&key) {
                        s.supervisor.handle_spawned(instance, pid, now);
                    }
                    self.drain(&key);
                }
            }
            Report::SpawnFailed { id, errno } => {
                if let Some((key, instance, _)) = self.ids.remove(&id) {
                    let jitter = self.jitter();
                    if let Some(s) = self.all.get_mut(&key) {
                        log_error!(
                            "service {}: cannot start {}: {}",
                            s.name,
                            s.recipe.program.display(),
                            std::io::Error::from_raw_os_error(errno)
                        );
                        s.supervisor.handle_spawn_failed(instance, jitter, now);
                    }
                    self.drain(&key);
                }
            }
            Report::Exited { id, code, signal } => {
                if let Some((key, instance, pid)) = self.ids.remove(&id) {
                    let status = match (code, signal) {
                        (_, Some(sig)) => ExitStatus::Signal(sig),
                        (Some(c), None) => ExitStatus::Code(c),
                        (None, None) => ExitStatus::Code(0),
                    };
                    let jitter = self.jitter();
                    if let (Some(s), Some(pid)) = (self.all.get_mut(&key), pid) {
                        s.supervisor
                            .handle_exited(instance, pid, status, jitter, now);
                    }
                    self.drain(&key);
                }
            }
            Report::Listening { .. } => {}
        }
    }

    /// Carries out what a generation's supervisor asked for.
    fn drain(&mut self, key: &str) {
        loop {
            let Some(s) = self.all.get_mut(key) else {
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
                        service: key.to_string(),
                        program: r.program.clone(),
                        args: r.args.clone(),
                        env: r.env.clone(),
                        cwd: r.cwd.clone(),
                        user: r.user,
                    };
                    self.ids.insert(id, (key.to_string(), instance, None));
                    self.send(&req);
                }
                SupervisorEffect::Kill { instance, pid } => {
                    let ids: Vec<u64> = self
                        .ids
                        .iter()
                        .filter(|(_, (k, i, p))| k == key && *i == instance && *p == Some(pid))
                        .map(|(id, _)| *id)
                        .collect();
                    for id in ids {
                        self.send(&Request::Kill { id });
                    }
                }
                SupervisorEffect::Publish(availability) => {
                    // Only the current generation speaks for the service.
                    let name = s.name.clone();
                    if self.current.get(&name).map(String::as_str) == Some(key) {
                        self.published.push(Input::ServiceState {
                            service: name,
                            availability,
                        });
                    }
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

/// Waits (briefly: the launcher answers at once) for the answer to a `Listen`; other
/// reports that arrive meanwhile (another service's processes starting or exiting) are
/// kept in `early`, to be handled next.
fn wait_listening(
    launcher: &mut Launcher,
    name: &str,
    early: &mut Vec<Report>,
) -> Result<Option<i32>, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match launcher.try_recv() {
            Ok(Some(Report::Listening { service, error })) if service == name => return Ok(error),
            Ok(Some(other)) => early.push(other),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(None) => return Err(format!("service {name}: the launcher did not answer")),
            Err(e) => return Err(format!("the launcher failed: {e}")),
        }
    }
}

/// Makes the private run directory: mode 0700, owned by the account workers run as (they
/// connect to the sockets in it). One that exists already is taken only if it is a real
/// directory (not a link) that this user owns and nobody else may enter: it was left by
/// an earlier weir with the same PID that was killed (that weir is gone: PIDs are unique
/// among live processes), and the launcher replaces the stale sockets in it. Anything else
/// is refused rather than trusted.
fn make_run_dir(dir: &Path, owner: Option<&privs::Account>) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let made = std::fs::DirBuilder::new().mode(0o700).create(dir);
    if let Err(e) = made {
        let ours = e.kind() == std::io::ErrorKind::AlreadyExists
            && std::fs::symlink_metadata(dir).is_ok_and(|m| {
                // SAFETY: geteuid cannot fail and touches no memory.
                let me = unsafe { libc::geteuid() };
                m.file_type().is_dir() && m.uid() == me && m.mode() & 0o077 == 0
            });
        if !ours {
            return Err(format!(
                "cannot make the run directory {}: {e}",
                dir.display()
            ));
        }
    }
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

/// loom: `RUSTFLAGS="--cfg loom" cargo test --release -p weir loom_`.
#[cfg(all(test, loom))]
mod loom_tests {
    use std::sync::Arc;

    use super::*;

    fn board() -> ServiceBoard {
        ServiceBoard {
            served: [("php".to_string(), AtomicU64::new(0))]
                .into_iter()
                .collect(),
        }
    }

    /// The property: two workers counting answers of one service at once lose no count;
    /// the control loop reads both once they are done.
    #[test]
    fn loom_two_workers_counting_at_once_lose_no_count() {
        loom::model(|| {
            let board = Arc::new(board());
            let other = Arc::clone(&board);
            let t = loom::thread::spawn(move || other.answered("php"));
            board.answered("php");
            t.join().expect("worker");
            assert_eq!(board.served("php"), 2);
        });
    }

    /// The broken variant: a count read and then written back (not one atomic step)
    /// loses an answer when two workers count at once, and loom finds it.
    #[test]
    fn loom_a_read_then_write_count_is_caught_losing_one() {
        let caught = std::panic::catch_unwind(|| {
            loom::model(|| {
                let board = Arc::new(board());
                let count = |b: &ServiceBoard| {
                    let c = &b.served["php"];
                    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                };
                let other = Arc::clone(&board);
                let t = loom::thread::spawn(move || count(&other));
                count(&board);
                t.join().expect("worker");
                assert_eq!(board.served("php"), 2, "a lost count");
            });
        });
        assert!(caught.is_err(), "loom must find the lost update");
    }
}
