//! The supervisor: when one service's processes are started, relaunched, held back, given up
//! on and stopped. OKWS's okld policy, made better.
//!
//! # Theory of operation
//!
//! One `Supervisor` watches the `processes=N` instances of one service. Each instance is a
//! slot for at most one process; the shell's launcher starts, reports and kills processes,
//! and the supervisor only decides. What it decides rests on one distinction:
//!
//! * A process is **proven** once it has lived `Policy::proven_after` or the service served a
//!   request while it was up (`handle_served`). A proven process that ends for any reason —
//!   an OOM kill, an operator's `kill -9`, a recycle — is relaunched at once: it showed the
//!   service can run, and each such death costs only the requests in flight.
//! * A process killed by SIGKILL before it proved itself (an operator's `kill -9`, the OOM
//!   killer) is relaunched at once and is no failed start: the kill came from outside and
//!   says nothing about the command. (It proves nothing either: the streak stays as it
//!   is.) So a storm of kills on a healthy service never backs it off or gives it up.
//! * A process that dies unproven otherwise, or a spawn that fails, is a **failed start**. Failed starts
//!   form the service's *streak* (all instances count into one streak; proof of any process
//!   ends it). The instance backs off `backoff_first` doubled per failed start of the streak,
//!   capped at `backoff_max`, plus the jitter the shell passes in; within a streak the
//!   delay never shrinks (at the cap the jitter can only hold or raise it, to at most
//!   `backoff_max` + 25%).
//! * `give_up_after` failed starts of one streak within `give_up_window` of each other give
//!   the whole service up: every instance is `GivenUp` (an unproven process still up is
//!   killed), nothing spawns, the error log says so, and workers answer `503` at once. It
//!   comes back by itself after `cooldown`, or at once on `restart` (a reload). A service
//!   with a proven process up is never given up: one flaky instance must not take down
//!   a working one, so it only keeps backing off.
//!
//! So a broken command costs a handful of spawns a minute, and a storm of kills on a
//! healthy service costs nothing but the requests in flight at each kill.
//!
//! ```text
//!       new, cool-down over, restart
//!                  │
//!                  ▼
//!   ┌─────────► Starting ─────────── spawn failed ───────────┐
//!   │               │                                        ▼
//!   │          spawned(pid)                       failed start: streak += 1
//!   │               ▼                                        │
//!   │   Up{pid, since, proven} ───── exited unproven ───────►┤
//!   │               │                                        │
//!   └── exited ─────┘               ┌────────────────────────┴───────────────┐
//!       proven: relaunch at once,   │ give_up_after of them within            │ otherwise
//!       streak := 0                 │ give_up_window, no proven process up    ▼
//!                                   ▼                                  Backoff{until}
//!                GivenUp (every instance; Up ones killed)                    │ until reached,
//!                                   │ cool-down over, restart                ▼ restart
//!                                   ▼                                    Starting
//!                        Starting (every instance)
//!
//!   proven: lived proven_after (seen by handle_timeout, or at the exit) or served while
//!           up (handle_served); becoming proven also ends the streak.
//!   stop:   from any state, every instance Stopped for good (Up ones killed).
//! ```
//!
//! What the workers are told (`Availability`, published only when it changes): `Ready`
//! while an instance is up, or starting with no failed start in the streak (the first
//! start, a relaunch after a proven run, after a cool-down or restart); otherwise `Down`
//! with `Retry-After` until the earliest back-off end (at least a second, also while an
//! instance retries) or the end of the cool-down; `Stopped` once stopped.
//!
//! # Reports that arrive late or make no sense
//!
//! The launcher's reports cross the supervisor's decisions in flight, so each input is
//! checked against the instance's state and, for exits, its pid. None of these panics:
//!
//! 1. *Spawned after stop, give-up or a bogus report:* the instance no longer wants a
//!    process (or has one already), so the new one is killed (`Kill`). A second report of
//!    the pid already up is ignored.
//! 2. *Spawn failed* for an instance that is not `Starting` (stopped or given up while the
//!    spawn was in flight): nothing to do; it is not counted as a failed start.
//! 3. *Exited* with a pid that is not the instance's `Up` pid — a process killed at
//!    give-up or stop, or after the instance was started again — is ignored: it was
//!    already accounted for. Exits are matched by pid for this reason.
//! 4. *Restart or cool-down while a spawn is still in flight* (asked before a give-up, not
//!    yet reported): the instance becomes `Starting` and waits for that report instead of
//!    asking for a second process, so one instance never has two spawns outstanding.
//! 5. *A process serves a request and dies before the shell sees the served counter grow:*
//!    its exit is a failed start (the supervisor cannot know); the late `handle_served`
//!    finds nothing up and changes nothing. One extra back-off step, no more.
//! 6. *A report arrives before a proof deadline was handled* (the shell reads the launcher
//!    before it hands over its timers): an exit or a failed spawn first proves every process
//!    old enough, as `handle_timeout` would have, so `handle_timeout` being late changes
//!    nothing — neither whether the exiting process counts as a failed start, nor whether a
//!    failed start of another instance can give up a service whose proven process is up,
//!    nor which streak it counts into.
//!
//! Killed processes are not waited for: a `Kill` is final for the supervisor, and a
//! relaunch may briefly overlap a dying process on the shared socket, which is harmless.

use core::fmt;
use core::time::Duration;
use std::collections::VecDeque;

use super::Availability;
use crate::server::ExitStatus;
use crate::time::Time;

/// The supervisor's knobs. `Default` gives the values DESIGN.md §7 names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Policy {
    /// Back-off after the first failed start of a streak (100 ms); doubled per failed start.
    pub backoff_first: Duration,
    /// The back-off never grows beyond this (30 s), jitter aside.
    pub backoff_max: Duration,
    /// A process that lives this long (3 s) is proven, whether or not it served.
    pub proven_after: Duration,
    /// Failed starts in a row (6) that give the service up; 0 never gives up.
    pub give_up_after: u32,
    /// ...when the first of them was at most this long (60 s) before the last.
    pub give_up_window: Duration,
    /// How long (60 s) a given-up service waits before it is started again by itself.
    pub cooldown: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            backoff_first: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            proven_after: Duration::from_secs(3),
            give_up_after: 6,
            give_up_window: Duration::from_secs(60),
            cooldown: Duration::from_secs(60),
        }
    }
}

/// One instance of a service: its index, `0..processes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceId(pub u32);

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where one instance stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InstanceState {
    /// A `Spawn` was asked for and not yet reported.
    Starting,
    /// The process `pid` runs, since `since`.
    Up {
        /// The process id the launcher reported.
        pid: u32,
        /// When the spawn was reported.
        since: Time,
        /// It lived `proven_after` or the service served while it was up.
        proven: bool,
    },
    /// Waiting after a failed start; started again at `until`.
    Backoff {
        /// When the instance is started again.
        until: Time,
    },
    /// The service is given up: no process until the cool-down ends or a restart.
    GivenUp,
    /// The service is stopped for good.
    Stopped,
}

/// One instance as a status page shows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Instance {
    /// Where it stands.
    pub state: InstanceState,
    /// Processes asked for it after the first: relaunches, retries after back-off, starts
    /// after a cool-down or restart.
    pub restarts: u64,
    /// A `Spawn` for it is outstanding (asked, not yet reported). True whenever `Starting`,
    /// and possibly while `GivenUp` or `Stopped` (the spawn was in flight then).
    spawning: bool,
}

impl Instance {
    /// The process id while `Up`.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        match self.state {
            InstanceState::Up { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// `Starting` or `Up`: it has, or is about to have, a process.
    #[must_use]
    pub fn is_live(&self) -> bool {
        matches!(
            self.state,
            InstanceState::Starting | InstanceState::Up { .. }
        )
    }
}

/// The service as a whole, for a status page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceState {
    /// Some instance is up.
    Up,
    /// None is up; some is starting.
    Starting,
    /// None is up or starting; the instances are backing off.
    Backoff,
    /// Given up until the cool-down ends or a restart.
    GivenUp,
    /// Stopped for good.
    Stopped,
}

/// What the supervisor asks of the shell.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SupervisorEffect {
    /// Start a process for this instance; report it with `handle_spawned` or
    /// `handle_spawn_failed`, and its end with `handle_exited`.
    Spawn {
        /// The instance the process is for.
        instance: InstanceId,
    },
    /// Kill this process (and its process group). Its exit report is still welcome and is
    /// ignored.
    Kill {
        /// The instance the process was for.
        instance: InstanceId,
        /// The process, as reported by `handle_spawned`.
        pid: u32,
    },
    /// Hand this to the workers: the service's availability changed.
    Publish(Availability),
    /// A line for the error log.
    Log(String),
}

/// Running, given up, or stopped: the service-wide part of the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Mode {
    Running,
    GivenUp { until: Time },
    Stopped,
}

/// The availability as a value that does not move with the clock, so that a change is a
/// change of state, not of the time it was computed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Wanted {
    Ready,
    /// Down until the earliest back-off end or the end of the cool-down; `None` while an
    /// instance is starting again after a failed start.
    Down {
        until: Option<Time>,
    },
    Stopped,
}

/// The supervisor of one service. See the module documentation for the policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Supervisor {
    name: String,
    policy: Policy,
    instances: Vec<Instance>,
    mode: Mode,
    /// Failed starts in the current streak.
    streak: u32,
    /// Times of the streak's last `give_up_after` failed starts, oldest first.
    recent: VecDeque<Time>,
    /// The streak's last back-off delay: the floor for the next.
    delay: Duration,
    /// What was last published (`None` before the first publication).
    published: Option<Wanted>,
    /// The same, as handed to the workers.
    availability: Availability,
    effects: VecDeque<SupervisorEffect>,
}

impl Supervisor {
    /// A supervisor for the service `name` (used in log lines) with `processes` instances,
    /// all starting now: emits a `Spawn` for each and `Publish(Ready)`.
    ///
    /// `processes` must be at least 1 (the configuration checks it); 0 is taken as 1.
    #[must_use]
    pub fn new(name: &str, processes: usize, policy: Policy, now: Time) -> Supervisor {
        debug_assert!(processes >= 1, "a service runs at least one process");
        let n = processes.clamp(1, u32::MAX as usize);
        let mut s = Supervisor {
            name: name.to_owned(),
            policy,
            instances: Vec::with_capacity(n),
            mode: Mode::Running,
            streak: 0,
            recent: VecDeque::new(),
            delay: Duration::ZERO,
            published: None,
            availability: Availability::Ready,
            effects: VecDeque::new(),
        };
        for i in 0..n {
            s.instances.push(Instance {
                state: InstanceState::Starting,
                restarts: 0,
                spawning: true,
            });
            s.effects
                .push_back(SupervisorEffect::Spawn { instance: id(i) });
        }
        s.refresh(now);
        s
    }

    /// The launcher started a process for `instance`. If the instance no longer wants one
    /// (stopped or given up meanwhile) or has one already, the process is killed.
    pub fn handle_spawned(&mut self, instance: InstanceId, pid: u32, now: Time) {
        let Some(i) = self.index(instance) else {
            self.effects
                .push_back(SupervisorEffect::Kill { instance, pid });
            return;
        };
        let inst = &mut self.instances[i];
        inst.spawning = false;
        match inst.state {
            InstanceState::Starting => {
                inst.state = InstanceState::Up {
                    pid,
                    since: now,
                    proven: false,
                };
            }
            InstanceState::Up { pid: up, .. } if up == pid => {}
            _ => self
                .effects
                .push_back(SupervisorEffect::Kill { instance, pid }),
        }
        self.refresh(now);
    }

    /// The launcher could not start a process for `instance` (fork, exec, `setuid`…): a
    /// failed start, with `jitter_permille` (0..=1000, drawn by the shell) for its back-off.
    /// Ignored unless the instance is `Starting`.
    pub fn handle_spawn_failed(&mut self, instance: InstanceId, jitter_permille: u16, now: Time) {
        let Some(i) = self.index(instance) else {
            return;
        };
        self.prove_by_age(now);
        self.instances[i].spawning = false;
        if self.instances[i].state == InstanceState::Starting {
            let what = format!("instance {instance} could not be started");
            self.failed_start(i, &what, jitter_permille, now);
        }
        self.refresh(now);
    }

    /// The process `pid` of `instance` ended with `status`. Proven: relaunched at once.
    /// Unproven: a failed start, backed off with `jitter_permille` (0..=1000). Ignored unless
    /// the instance is `Up` with this pid (see the module documentation, case 3).
    pub fn handle_exited(
        &mut self,
        instance: InstanceId,
        pid: u32,
        status: ExitStatus,
        jitter_permille: u16,
        now: Time,
    ) {
        let Some(i) = self.index(instance) else {
            return;
        };
        self.prove_by_age(now);
        let InstanceState::Up {
            pid: up,
            since,
            proven,
        } = self.instances[i].state
        else {
            return;
        };
        if up != pid {
            return;
        }
        if proven || now.since(since) >= self.policy.proven_after {
            self.log(format_args!("process {pid} {}; relaunching", Ended(status)));
            self.reset_streak();
            self.spawn(i);
        } else if status == ExitStatus::Signal(SIGKILL) {
            // SIGKILL comes from outside — an operator's `kill -9`, the OOM killer — and
            // says nothing about whether the command can run: no failed start, no proof
            // either (the streak neither grows nor ends). Relaunched at once, so a storm of
            // kills on a healthy service never gives it up.
            self.log(format_args!(
                "process {pid} {} before serving; relaunching (a kill is no failed start)",
                Ended(status)
            ));
            self.spawn(i);
        } else {
            let what = format!("process {pid} {} before serving", Ended(status));
            self.failed_start(i, &what, jitter_permille, now);
        }
        self.refresh(now);
    }

    /// The service served requests (the shell saw its served counter grow): every process
    /// up is proven, and if that proves one, the streak of failed starts is over.
    pub fn handle_served(&mut self, now: Time) {
        let mut proved = false;
        for inst in &mut self.instances {
            if let InstanceState::Up { proven, .. } = &mut inst.state {
                proved |= !*proven;
                *proven = true;
            }
        }
        if proved {
            self.reset_streak();
        }
        self.refresh(now);
    }

    /// Start again now, forgetting the streak: a given-up service starts every instance, and
    /// instances backing off start at once (a reload calls this: the operator may have
    /// fixed the cause). Processes up or starting are left alone; a stopped service stays
    /// stopped.
    pub fn restart(&mut self, now: Time) {
        match self.mode {
            Mode::Stopped => return,
            Mode::GivenUp { .. } => {
                self.log(format_args!("restarted"));
                self.mode = Mode::Running;
                self.reset_streak();
                for i in 0..self.instances.len() {
                    self.spawn(i);
                }
            }
            Mode::Running => {
                self.reset_streak();
                let waiting: Vec<usize> = (0..self.instances.len())
                    .filter(|&i| matches!(self.instances[i].state, InstanceState::Backoff { .. }))
                    .collect();
                if !waiting.is_empty() {
                    self.log(format_args!("restarted"));
                }
                for i in waiting {
                    self.spawn(i);
                }
            }
        }
        self.refresh(now);
    }

    /// Stop for good (the service was removed, or weir is stopping): every process up is
    /// killed, every instance is `Stopped`, nothing spawns again, and any process reported
    /// later is killed.
    pub fn stop(&mut self, now: Time) {
        if self.mode == Mode::Stopped {
            return;
        }
        self.mode = Mode::Stopped;
        for (i, inst) in self.instances.iter_mut().enumerate() {
            if let InstanceState::Up { pid, .. } = inst.state {
                self.effects.push_back(SupervisorEffect::Kill {
                    instance: id(i),
                    pid,
                });
            }
            inst.state = InstanceState::Stopped;
        }
        self.refresh(now);
    }

    /// The next effect to carry out, in order; drain to `None` after every call.
    #[must_use]
    pub fn poll_effect(&mut self) -> Option<SupervisorEffect> {
        self.effects.pop_front()
    }

    /// When `handle_timeout` is next due: the earliest back-off end, proof by age, or end of
    /// the cool-down. `None` when stopped or when nothing is pending.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        match self.mode {
            Mode::Stopped => None,
            Mode::GivenUp { until } => Some(until),
            Mode::Running => self
                .instances
                .iter()
                .filter_map(|inst| match inst.state {
                    InstanceState::Backoff { until } => Some(until),
                    InstanceState::Up {
                        since,
                        proven: false,
                        ..
                    } => Some(since.after(self.policy.proven_after)),
                    _ => None,
                })
                .min(),
        }
    }

    /// Applies whatever is due at `now`: processes proven by age, back-offs that ended, the
    /// end of the cool-down. Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Time) {
        match self.mode {
            Mode::Stopped => return,
            Mode::GivenUp { until } => {
                if now >= until {
                    self.log(format_args!("cool-down over; starting again"));
                    self.mode = Mode::Running;
                    self.reset_streak();
                    for i in 0..self.instances.len() {
                        self.spawn(i);
                    }
                }
            }
            Mode::Running => {
                self.prove_by_age(now);
                for i in 0..self.instances.len() {
                    if matches!(self.instances[i].state, InstanceState::Backoff { until } if now >= until)
                    {
                        self.spawn(i);
                    }
                }
            }
        }
        self.refresh(now);
    }

    /// What was last published to the workers (a `Down`'s `retry_after` as of then).
    #[must_use]
    pub fn availability(&self) -> Availability {
        self.availability
    }

    /// Every instance, indexed by `InstanceId`.
    #[must_use]
    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    /// Restarts of all instances together (see `Instance::restarts`).
    #[must_use]
    pub fn restarts(&self) -> u64 {
        self.instances.iter().map(|inst| inst.restarts).sum()
    }

    /// The service as a whole, for a status page.
    #[must_use]
    pub fn state(&self) -> ServiceState {
        match self.mode {
            Mode::Stopped => ServiceState::Stopped,
            Mode::GivenUp { .. } => ServiceState::GivenUp,
            Mode::Running => {
                let any =
                    |f: fn(&InstanceState) -> bool| self.instances.iter().any(|x| f(&x.state));
                if any(|s| matches!(s, InstanceState::Up { .. })) {
                    ServiceState::Up
                } else if any(|s| *s == InstanceState::Starting) {
                    ServiceState::Starting
                } else {
                    ServiceState::Backoff
                }
            }
        }
    }

    /// Failed starts in the current streak (0 once a process is proven, after a cool-down
    /// or a restart). Kept while given up, for the status page.
    #[must_use]
    pub fn failed_starts(&self) -> u32 {
        self.streak
    }

    /// When a given-up service starts again by itself.
    #[must_use]
    pub fn given_up_until(&self) -> Option<Time> {
        match self.mode {
            Mode::GivenUp { until } => Some(until),
            _ => None,
        }
    }

    /// The service's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The policy it runs under.
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The index of `instance`, or `None` for an id the supervisor never gave out (a shell
    /// bug: asserted in debug builds, ignored otherwise).
    fn index(&self, instance: InstanceId) -> Option<usize> {
        let i = usize::try_from(instance.0)
            .ok()
            .filter(|&i| i < self.instances.len());
        debug_assert!(i.is_some(), "service {}: no instance {instance}", self.name);
        i
    }

    /// Makes instance `i` `Starting`, asking for a process unless a spawn is still in
    /// flight for it (module documentation, case 4).
    fn spawn(&mut self, i: usize) {
        let inst = &mut self.instances[i];
        inst.state = InstanceState::Starting;
        if !inst.spawning {
            inst.spawning = true;
            inst.restarts += 1;
            self.effects
                .push_back(SupervisorEffect::Spawn { instance: id(i) });
        }
    }

    /// Every process up that has lived `proven_after` by `now` is proven, and if that proves
    /// one, the streak is over. `handle_timeout` does this when the proof is due; the reports
    /// do it first too, so that a timer handled late changes nothing (module documentation,
    /// case 6).
    fn prove_by_age(&mut self, now: Time) {
        let proven_after = self.policy.proven_after;
        let mut proved = false;
        for inst in &mut self.instances {
            if let InstanceState::Up { since, proven, .. } = &mut inst.state {
                if !*proven && now.since(*since) >= proven_after {
                    *proven = true;
                    proved = true;
                }
            }
        }
        if proved {
            self.reset_streak();
        }
    }

    /// Instance `i` failed to start (`what` says how, for the log): back it off, or give
    /// the whole service up.
    fn failed_start(&mut self, i: usize, what: &str, jitter_permille: u16, now: Time) {
        self.streak = self.streak.saturating_add(1);
        let k = self.policy.give_up_after as usize;
        // The last k failed starts (none kept when k is 0: never give up).
        self.recent.push_back(now);
        while self.recent.len() > k {
            self.recent.pop_front();
        }
        let proven_up = self
            .instances
            .iter()
            .any(|inst| matches!(inst.state, InstanceState::Up { proven: true, .. }));
        let first = self.recent.front().copied().unwrap_or(now);
        let span = now.since(first);
        if k > 0 && self.recent.len() >= k && span <= self.policy.give_up_window && !proven_up {
            let cooldown = self.policy.cooldown;
            self.log(format_args!("{what}"));
            self.log(format_args!(
                "{k} failed starts in {}; giving up for {} (a reload brings it back)",
                Show(span),
                Show(cooldown)
            ));
            self.give_up(i, now);
        } else {
            let delay = self.backoff(jitter_permille);
            self.delay = delay;
            self.instances[i].state = InstanceState::Backoff {
                until: now.after(delay),
            };
            self.log(format_args!("{what}; retrying in {}", Show(delay)));
        }
    }

    /// The back-off for the streak's latest failed start: `backoff_first` doubled per
    /// earlier failed start, capped, plus `jitter_permille`/1000 of a quarter of it, and
    /// never shorter than the streak's previous back-off.
    fn backoff(&self, jitter_permille: u16) -> Duration {
        let first = millis(self.policy.backoff_first);
        let max = millis(self.policy.backoff_max);
        let doublings = self.streak.saturating_sub(1);
        let base = if doublings >= 64 {
            max
        } else {
            first.saturating_mul(1u64 << doublings).min(max)
        };
        let jitter = u128::from(base) * u128::from(jitter_permille.min(1000)) / 4000;
        // unwrap_or: the jitter is at most a quarter of a u64, so it always fits.
        let jitter = u64::try_from(jitter).unwrap_or(u64::MAX);
        Duration::from_millis(base.saturating_add(jitter)).max(self.delay)
    }

    /// Every instance given up; processes up are killed, but for that of instance
    /// `failed`, which has just ended.
    fn give_up(&mut self, failed: usize, now: Time) {
        for (i, inst) in self.instances.iter_mut().enumerate() {
            if let InstanceState::Up { pid, .. } = inst.state {
                if i == failed {
                    inst.state = InstanceState::GivenUp;
                    continue;
                }
                self.effects.push_back(SupervisorEffect::Kill {
                    instance: id(i),
                    pid,
                });
            }
            inst.state = InstanceState::GivenUp;
        }
        self.mode = Mode::GivenUp {
            until: now.after(self.policy.cooldown),
        };
    }

    fn reset_streak(&mut self) {
        self.streak = 0;
        self.recent.clear();
        self.delay = Duration::ZERO;
    }

    fn log(&mut self, what: fmt::Arguments<'_>) {
        let line = format!("service {}: {what}", self.name);
        self.effects.push_back(SupervisorEffect::Log(line));
    }

    /// What the workers should be told now.
    fn wanted(&self) -> Wanted {
        match self.mode {
            Mode::Stopped => Wanted::Stopped,
            Mode::GivenUp { until } => Wanted::Down { until: Some(until) },
            Mode::Running => {
                let ready = self.instances.iter().any(|inst| match inst.state {
                    InstanceState::Up { .. } => true,
                    InstanceState::Starting => self.streak == 0,
                    _ => false,
                });
                if ready {
                    Wanted::Ready
                } else {
                    let until = self
                        .instances
                        .iter()
                        .filter_map(|inst| match inst.state {
                            InstanceState::Backoff { until } => Some(until),
                            _ => None,
                        })
                        .min();
                    Wanted::Down { until }
                }
            }
        }
    }

    /// Publishes the availability if it changed.
    fn refresh(&mut self, now: Time) {
        let wanted = self.wanted();
        if self.published == Some(wanted) {
            return;
        }
        let first = self.published.is_none();
        self.published = Some(wanted);
        let availability = match wanted {
            Wanted::Ready => Availability::Ready,
            Wanted::Stopped => Availability::Stopped,
            Wanted::Down { until } => {
                let ms = until.map_or(0, |t| t.0.saturating_sub(now.0));
                Availability::Down {
                    retry_after: Duration::from_secs(ms.div_ceil(1000).max(1)),
                }
            }
        };
        // A new state may read the same to the workers (down until a back-off ends, then
        // down while the retry starts: both `Retry-After: 1`); they hear only of changes.
        if first || availability != self.availability {
            self.availability = availability;
            self.effects
                .push_back(SupervisorEffect::Publish(availability));
        }
    }
}

/// The id of the instance at index `i` (`new` keeps the count within `u32`).
fn id(i: usize) -> InstanceId {
    // unwrap_or: `new` clamps the number of instances to u32::MAX, so every index fits.
    InstanceId(u32::try_from(i).unwrap_or(u32::MAX))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// An exit status as the log says it.
struct Ended(ExitStatus);

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ExitStatus::Code(c) => write!(f, "exited with status {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// A duration as the log says it: `400ms`, `3.1s`, `60s`.
struct Show(Duration);

impl fmt::Display for Show {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = millis(self.0);
        if ms < 1000 {
            return write!(f, "{ms}ms");
        }
        let tenths = ms.saturating_add(50) / 100;
        if tenths.is_multiple_of(10) {
            write!(f, "{}s", tenths / 10)
        } else {
            write!(f, "{}.{}s", tenths / 10, tenths % 10)
        }
    }
}

/// Linux's SIGKILL: the signal no program sends itself by accident.
const SIGKILL: i32 = 9;

impl ServiceState {
    /// The state's name on the status page: `up`, `starting`, `backoff`, `given-up`,
    /// `stopped`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ServiceState::Up => "up",
            ServiceState::Starting => "starting",
            ServiceState::Backoff => "backoff",
            ServiceState::GivenUp => "given-up",
            ServiceState::Stopped => "stopped",
        }
    }
}

impl InstanceState {
    /// The state's name on the status page (as `ServiceState::name`).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            InstanceState::Starting => "starting",
            InstanceState::Up { .. } => "up",
            InstanceState::Backoff { .. } => "backoff",
            InstanceState::GivenUp => "given-up",
            InstanceState::Stopped => "stopped",
        }
    }
}

#[cfg(test)]
mod show_tests {
    use super::*;

    #[test]
    fn durations_are_shown_in_milliseconds_below_a_second_then_in_tenths() {
        for (ms, shown) in [
            (0, "0ms"),
            (999, "999ms"),
            (1000, "1s"),
            (1049, "1s"),
            (1050, "1.1s"),
            (3100, "3.1s"),
            (60_000, "60s"),
        ] {
            assert_eq!(Show(Duration::from_millis(ms)).to_string(), shown);
        }
    }
}
