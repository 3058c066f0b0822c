//! `supervisor`: the real `service::Supervisor` of one service, between a launcher that
//! starts, reports and kills its processes, the processes themselves, and clients.
//!
//! # Theory of operation
//!
//! The state ([`SupervisorWorld`]) holds the core's `Supervisor` value and what the shell
//! around it would hold: the spawns it asked for and the launcher has not carried out, the
//! processes alive (pids drawn from a counter, each knowing whether it served or hangs), the
//! kills asked for and not carried out, the clock, what the workers were last told
//! (`Publish`), and the clients' requests. After every call the model drains `poll_effect`
//! to `None` (the calling contract): `Spawn` and `Kill` join the launcher's lists,
//! `Publish` is what the workers now know, `Log` is dropped.
//!
//! Actions — the launcher's, the processes', the clients', the operator's and the clock's:
//!
//! * `LauncherSpawns(k)` carries out pending spawn *k*: a process with the next pid starts
//!   and is reported (`handle_spawned`); `SpawnFails(k, jitter)` reports it failed
//!   (`handle_spawn_failed`).
//! * `ProcessServes(pid)`: the process answers a request — a waiting one if there is one —
//!   and the shell sees the service's served counter grow (`handle_served`).
//! * `ProcessCrashes(pid, jitter)` (killed by a signal, before or after having served),
//!   `ProcessExitsCleanly(pid, jitter)` (status 0): the process ends and the launcher
//!   reports it (`handle_exited`). `ProcessHangs(pid)`: it stays up and never serves again.
//! * `LauncherKills(k)` carries out pending kill *k*: the process dies (if it had not
//!   already) and its exit is reported like any other.
//! * `ClockReaches(t)`: `now` jumps to `poll_timeout()`, so time only takes values the
//!   supervisor chose; `FireTimer` then calls `handle_timeout(now)`. They are two actions
//!   because the shell's loop turn reads the launcher's reports *before* it hands over its
//!   due timers (`io/src/services.rs`): a report may arrive with a deadline due and not yet
//!   handled. (This ordering found a bug: a failed start read first gave up a service whose
//!   other process had just become proven by age, and killed it.)
//! * `ClientArrives`: a worker gets a request for the service. If what it was last told is
//!   `Ready`, it connects and the request waits (in the backlog of the socket weir holds)
//!   until a process serves it; if `Down` or `Stopped`, it answers `503` at once.
//!   A `Down` or `Stopped` published later answers every waiting request `503` too
//!   (the model's reading of "the service went down": the workers stop waiting).
//! * `Reload` calls `restart`, `Stop` calls `stop`.
//!
//! Jitter (`0` or `1000` permille) is a parameter of every report that may be a failed
//! start, so both ends of the jitter range are explored. Kill reports carry `0`: the
//! supervisor ignores them.
//!
//! # Bounds, and why `eventually` is sound here
//!
//! The world's moves — spawn failures, crashes before and after serving, clean exits,
//! hangs, serves nobody waited for, client requests, one reload, one stop — each have a
//! budget, and all of them together a step budget ([`Scenario::events_max`]). The shell's
//! and the supervisor's own follow-through — carrying out spawns and kills, the clock
//! reaching a deadline and the timer handled, a live process answering a waiting request —
//! costs no budget but is finite: each answers something pending, and every deadline the
//! supervisor sets lies strictly after the `now` it was set at (back-off and cool-down are
//! positive, proof-by-age is `proven_after` after a spawn). So every path ends in a
//! *quiescent* state, where nothing but a spent budget could move, and the graph is
//! acyclic: every action spends a budget, answers a pending item, handles a due deadline,
//! or moves `now` forward.
//!
//! `single`: one process; one spawn failure, two crashes before serving, one after, one
//! clean exit, one hang, one unrequested serve, one request, a reload, a stop, at most six
//! of them on a path. `pair`: two processes; one spawn failure, two crashes before
//! serving, one after, one unrequested serve, one request, a reload, a stop, at most four.
//! The policy ([`model_policy`]) gives up after two failed starts.
//!
//! Cutting paths by a raw step count instead would end some of them between a crash and its
//! relaunch (the relaunch is a timer away) and report that as a counterexample; bounding the
//! world's moves only lets the supervisor finish what it started. The `eventually`
//! properties are judged at those quiescent ends: their conditions hold only in a state with
//! no action left, which makes them indifferent to the checker's DAG-join shortcut. Every
//! offered action changes the state (so `actions` is empty exactly at the end).
//!
//! # Properties
//!
//! The history the properties read is kept in the state (stateright's conditions see one
//! state): the back-off delay of the streak's latest failed start (`until - now` when an
//! instance starts backing off; a streak ends when `failed_starts()` drops to 0 or 1), the
//! instances owed a relaunch (their process ended on its own while the supervisor had it up;
//! cleared by a `Spawn` for them, a give-up or a stop), and a flag per broken rule. Live
//! processes are counted from the launcher's side: a process with a kill pending may
//! overlap its instance's relaunch (the supervisor's documented choice), every other one,
//! and every spawn in flight, holds its instance's one place.
//!
//! # Broken variants
//!
//! [`SupervisorFault`] breaks the shell's use of the supervisor, never the supervisor, so the
//! tests show each property catches something. (No shell can make the back-off shrink, a
//! stopped supervisor spawn, or a proven process be given up: those three hold of the core
//! alone; the last caught the bug described above, which a test replays.)

use std::collections::BTreeMap;

use core::time::Duration;
use stateright::{Model, Property};
use weir_core::server::ExitStatus;
use weir_core::service::{
    Availability, InstanceId, InstanceState, Policy, ServiceState, Supervisor, SupervisorEffect,
};
use weir_core::Time;

/// What the service runs and what the world may do to it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scenario {
    /// Name for the CLI and tests.
    pub name: &'static str,
    /// `processes=N`.
    pub processes: usize,
    /// Spawns that may fail.
    pub spawn_failures: u8,
    /// Processes that may crash before having served.
    pub crashes_unserved: u8,
    /// Processes that may crash after having served.
    pub crashes_served: u8,
    /// Processes that may exit with status 0.
    pub clean_exits: u8,
    /// Processes that may hang.
    pub hangs: u8,
    /// Served events nobody waited for (the service's other traffic).
    pub serves: u8,
    /// Requests clients send.
    pub requests: u8,
    /// Whether a reload (`restart`) may happen.
    pub reload: bool,
    /// Whether a stop may happen.
    pub stop: bool,
    /// The step budget: the world's moves (all of the above) on one path.
    pub events_max: u8,
}

impl Scenario {
    /// One process, failing often enough to be given up, crashing, serving, reloaded,
    /// stopped.
    #[must_use]
    pub fn single() -> Scenario {
        Scenario {
            name: "single",
            processes: 1,
            spawn_failures: 1,
            crashes_unserved: 2,
            crashes_served: 1,
            clean_exits: 1,
            hangs: 1,
            serves: 1,
            requests: 1,
            reload: true,
            stop: true,
            events_max: 6,
        }
    }

    /// Two processes: one failing instance beside a proven one, a give-up killing an
    /// unproven process still up, late reports crossing a give-up.
    #[must_use]
    pub fn pair() -> Scenario {
        Scenario {
            name: "pair",
            processes: 2,
            spawn_failures: 1,
            crashes_unserved: 2,
            crashes_served: 1,
            clean_exits: 0,
            hangs: 0,
            serves: 1,
            requests: 1,
            reload: true,
            stop: true,
            events_max: 4,
        }
    }

    /// Every scenario `weir-model --model supervisor` checks.
    #[must_use]
    pub fn all() -> Vec<Scenario> {
        vec![Scenario::single(), Scenario::pair()]
    }
}

/// The policy the model runs: short, distinct durations, so transcripts read easily; two
/// failed starts give up; a capped back-off that the jitter can push above the cap, so the
/// floor that keeps it from shrinking is exercised.
#[must_use]
pub fn model_policy() -> Policy {
    Policy {
        backoff_first: Duration::from_millis(100),
        backoff_max: Duration::from_millis(150),
        proven_after: Duration::from_millis(1000),
        give_up_after: 2,
        give_up_window: Duration::from_millis(1000),
        cooldown: Duration::from_millis(3000),
    }
}

/// A deliberately broken shell (the tests show each is caught).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SupervisorFault {
    /// The honest shell.
    None,
    /// The shell answers every back-off by starting the instance's process at once (as a
    /// naive "fork again when a child dies" loop would). Breaks "no process is asked for
    /// while its instance backs off, the service is given up or stopped".
    NoBackoff,
    /// The shell ignores a give-up: it restarts the service the moment it is given up.
    /// Breaks "the service is given up" (never seen).
    NoGiveUp,
    /// The shell loses one exit report (of a process that crashed or exited, not of a
    /// kill). Breaks "a process that ended is relaunched unless the service is given up or
    /// stopped".
    LostExit,
    /// The shell ignores `Kill`. Breaks "at most one process per instance".
    DropKill,
    /// The shell never tells the workers the service went down or stopped. Breaks "every
    /// waiting request is answered".
    DropPublish,
}

/// The model: a scenario and a fault (or none).
#[derive(Clone, Debug)]
pub struct SupervisorModel {
    /// The service and the world's budgets.
    pub scenario: Scenario,
    /// The shell's deliberate bug, if any.
    pub fault: SupervisorFault,
    /// The supervisor's policy.
    pub policy: Policy,
}

/// A process, as the launcher and the world see it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Process {
    /// The instance it was started for.
    pub instance: InstanceId,
    /// It answered a request.
    pub served: bool,
    /// It hangs: it will never serve.
    pub hung: bool,
    /// When it started.
    pub since: Time,
}

/// Budgets of the world's moves left.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Budgets {
    /// Spawns that may still fail.
    pub spawn_failures: u8,
    /// Crashes before serving.
    pub crashes_unserved: u8,
    /// Crashes after serving.
    pub crashes_served: u8,
    /// Clean exits.
    pub clean_exits: u8,
    /// Hangs.
    pub hangs: u8,
    /// Serves nobody waited for.
    pub serves: u8,
    /// Client requests.
    pub requests: u8,
    /// Reloads.
    pub reloads: u8,
    /// Stops.
    pub stops: u8,
    /// All of the above together (the step budget).
    pub events: u8,
    /// Exit reports the `LostExit` shell may still lose.
    pub lost_exits: u8,
}

/// The state: the real `Supervisor` and the world around it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SupervisorWorld {
    /// The core.
    pub sup: Supervisor,
    /// The clock, moved only by timers.
    pub now: Time,
    /// Spawns asked for and not yet carried out, in the order they were asked.
    pub spawns: Vec<InstanceId>,
    /// Live processes, by pid.
    pub procs: BTreeMap<u32, Process>,
    /// The next pid the launcher hands out.
    pub next_pid: u32,
    /// Kills asked for and not yet carried out.
    pub kills: Vec<(InstanceId, u32)>,
    /// What the workers were last told.
    pub published: Availability,
    /// Requests connected and waiting for a process.
    pub waiting: u8,
    /// Requests a process served.
    pub served: u8,
    /// Requests answered `503`.
    pub refused: u8,
    /// The world's budgets left.
    pub left: Budgets,
    /// History: instances whose process ended on its own (the supervisor had it up) and
    /// that were not asked a new one since, nor given up or stopped.
    pub owed: Vec<InstanceId>,
    /// History: the back-off delay of the streak's latest failed start.
    pub last_delay: Option<Duration>,
    /// History: a back-off was shorter than the one before it in the same streak.
    pub shrunk: bool,
    /// History: a process was asked for an instance that was not starting (it was backing
    /// off, given up or stopped).
    pub held_back_spawn: Option<InstanceState>,
    /// History: `stop` was called.
    pub stopped: bool,
    /// History: a process was asked for after `stop`.
    pub spawn_after_stop: bool,
    /// History: a proven process ended and its instance was asked a new one at once.
    pub relaunched_at_once: bool,
    /// History: the service was given up while a process the supervisor had up was proven
    /// (it had served, or lived `proven_after`).
    pub gave_up_proven: Option<u32>,
    /// History: a reload brought a given-up service back.
    pub revived: bool,
    /// History: requests that waited were answered `503` when the service went down.
    pub refused_waiting: bool,
    /// History: a back-off was held at the streak's floor (the jitter's share would have
    /// made it shorter).
    pub held_at_floor: bool,
}

/// What can happen next.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SupervisorAction {
    /// The launcher starts the process of pending spawn `k` (for this instance).
    LauncherSpawns(usize, InstanceId),
    /// Pending spawn `k` fails; the report carries this jitter.
    SpawnFails(usize, InstanceId, u16),
    /// The process serves a request.
    ProcessServes(u32),
    /// The process is killed by a signal; the report carries this jitter.
    ProcessCrashes(u32, u16),
    /// The process exits with status 0; the report carries this jitter.
    ProcessExitsCleanly(u32, u16),
    /// The process hangs.
    ProcessHangs(u32),
    /// The launcher carries out pending kill `k` (of this pid).
    LauncherKills(usize, u32),
    /// Time reaches the supervisor's deadline (the shell wakes; what is due is not handled
    /// yet: reports read in the same loop turn come first).
    ClockReaches(Time),
    /// The shell hands the supervisor its due deadline: `handle_timeout`.
    FireTimer,
    /// A client's request for the service reaches a worker.
    ClientArrives,
    /// The operator reloads: `restart`.
    Reload,
    /// weir stops: `stop`.
    Stop,
}

const JITTERS: [u16; 2] = [0, 1000];

/// The first pid the launcher hands out.
const FIRST_PID: u32 = 100;

impl SupervisorModel {
    /// The honest model of `scenario`.
    #[must_use]
    pub fn new(scenario: Scenario) -> SupervisorModel {
        SupervisorModel::with_fault(scenario, SupervisorFault::None)
    }

    /// The model of `scenario` with a broken shell.
    #[must_use]
    pub fn with_fault(scenario: Scenario, fault: SupervisorFault) -> SupervisorModel {
        SupervisorModel {
            scenario,
            fault,
            policy: model_policy(),
        }
    }

    /// True once nothing can happen any more: every offered action changes the state (see
    /// the module documentation), so this is exactly where a path ends.
    fn is_over(&self, s: &SupervisorWorld) -> bool {
        let mut actions = Vec::new();
        self.actions(s, &mut actions);
        actions.is_empty()
    }

    /// Drains the supervisor's effects, then records what the call did in the history.
    /// `before` is the supervisor as it was before the call.
    fn settle(&self, s: &mut SupervisorWorld, before: &Supervisor) {
        let mut asked = Vec::new();
        while let Some(effect) = s.sup.poll_effect() {
            match effect {
                SupervisorEffect::Spawn { instance } => asked.push(instance),
                SupervisorEffect::Kill { .. } if self.fault == SupervisorFault::DropKill => {}
                SupervisorEffect::Kill { instance, pid } => s.kills.push((instance, pid)),
                SupervisorEffect::Publish(a) => {
                    if self.fault == SupervisorFault::DropPublish && a != Availability::Ready {
                        continue;
                    }
                    s.published = a;
                    if a != Availability::Ready {
                        s.refused_waiting |= s.waiting > 0;
                        s.refused += s.waiting;
                        s.waiting = 0;
                    }
                }
                SupervisorEffect::Log(_) => {}
            }
        }
        let gone = matches!(s.sup.state(), ServiceState::GivenUp | ServiceState::Stopped);
        if gone {
            s.owed.clear();
        }
        if s.sup.state() == ServiceState::GivenUp && before.state() != ServiceState::GivenUp {
            let proven_after = self.policy.proven_after;
            let proven = s.procs.iter().find(|&(&pid, p)| {
                before.instances()[index(p.instance)].pid() == Some(pid)
                    && (p.served || s.now.since(p.since) >= proven_after)
            });
            if let Some((&pid, _)) = proven {
                s.gave_up_proven.get_or_insert(pid);
            }
        }
        // The back-off history: a failed start that backed off measures its delay against
        // the streak's previous one; the end of a streak forgets it. A streak of one is a
        // new streak even if the model never saw the old one end (a report can prove a
        // process by age, ending the streak, and fail to start in the same call).
        if s.sup.failed_starts() <= 1 {
            s.last_delay = None;
        }
        for (i, (old, new)) in before.instances().iter().zip(s.sup.instances()).enumerate() {
            let InstanceState::Backoff { until } = new.state else {
                continue;
            };
            if matches!(old.state, InstanceState::Backoff { .. }) {
                continue;
            }
            let delay = until.since(s.now);
            if let Some(last) = s.last_delay {
                if delay < last {
                    s.shrunk = true;
                }
                // Both ends of the jitter at the cap: without the floor it would shrink.
                if delay == last && delay > self.policy.backoff_max {
                    s.held_at_floor = true;
                }
            }
            s.last_delay = Some(delay);
            if self.fault == SupervisorFault::NoBackoff {
                asked.push(InstanceId(u32::try_from(i).expect("few instances")));
            }
        }
        for instance in asked {
            self.ask_spawn(s, instance);
        }
        if self.fault == SupervisorFault::NoGiveUp
            && s.sup.state() == ServiceState::GivenUp
            && before.state() != ServiceState::GivenUp
        {
            let earlier = s.sup.clone();
            s.sup.restart(s.now);
            self.settle(s, &earlier);
        }
    }

    /// The launcher is asked for a process for `instance`.
    fn ask_spawn(&self, s: &mut SupervisorWorld, instance: InstanceId) {
        let state = s.sup.instances()[index(instance)].state;
        if state != InstanceState::Starting {
            s.held_back_spawn.get_or_insert(state);
        }
        if s.stopped {
            s.spawn_after_stop = true;
        }
        s.owed.retain(|&i| i != instance);
        s.spawns.push(instance);
    }

    /// A process ended (`killed` says whether the launcher killed it): the launcher reports
    /// it, unless the `LostExit` shell loses the report.
    fn ended(
        &self,
        s: &mut SupervisorWorld,
        pid: u32,
        status: ExitStatus,
        jitter: u16,
        killed: bool,
    ) {
        let Some(p) = s.procs.remove(&pid) else {
            return;
        };
        let instance = p.instance;
        let was_up = s.sup.instances()[index(instance)].pid() == Some(pid);
        if was_up && !killed {
            s.owed.push(instance);
            s.owed.sort_unstable();
            s.owed.dedup();
        }
        if self.fault == SupervisorFault::LostExit && !killed && s.left.lost_exits > 0 {
            s.left.lost_exits -= 1;
            return;
        }
        let before = s.sup.clone();
        let proven = matches!(
            before.instances()[index(instance)].state,
            InstanceState::Up { proven: true, .. }
        );
        s.sup.handle_exited(instance, pid, status, jitter, s.now);
        let asked_before = s.spawns.len();
        self.settle(s, &before);
        if was_up && proven && s.spawns[asked_before..].contains(&instance) {
            s.relaunched_at_once = true;
        }
    }

    /// Spends one of the world's moves from `budget`; `false` if either is spent.
    fn spend(left_events: &mut u8, budget: &mut u8) -> bool {
        if *left_events == 0 || *budget == 0 {
            return false;
        }
        *left_events -= 1;
        *budget -= 1;
        true
    }
}

fn index(instance: InstanceId) -> usize {
    // unwrap-free: the model's instance ids are small indices.
    usize::try_from(instance.0).expect("small instance id")
}

impl Model for SupervisorModel {
    type State = SupervisorWorld;
    type Action = SupervisorAction;

    fn init_states(&self) -> Vec<SupervisorWorld> {
        let sc = &self.scenario;
        let sup = Supervisor::new("svc", sc.processes, self.policy.clone(), Time(0));
        let mut s = SupervisorWorld {
            sup: sup.clone(),
            now: Time(0),
            spawns: Vec::new(),
            procs: BTreeMap::new(),
            next_pid: FIRST_PID,
            kills: Vec::new(),
            published: Availability::Ready,
            waiting: 0,
            served: 0,
            refused: 0,
            left: Budgets {
                spawn_failures: sc.spawn_failures,
                crashes_unserved: sc.crashes_unserved,
                crashes_served: sc.crashes_served,
                clean_exits: sc.clean_exits,
                hangs: sc.hangs,
                serves: sc.serves,
                requests: sc.requests,
                reloads: u8::from(sc.reload),
                stops: u8::from(sc.stop),
                events: sc.events_max,
                lost_exits: u8::from(self.fault == SupervisorFault::LostExit),
            },
            owed: Vec::new(),
            last_delay: None,
            shrunk: false,
            held_back_spawn: None,
            stopped: false,
            spawn_after_stop: false,
            relaunched_at_once: false,
            gave_up_proven: None,
            revived: false,
            refused_waiting: false,
            held_at_floor: false,
        };
        // `new` asked for its effects already; `before` is the same supervisor, so the
        // history sees no back-off to measure.
        self.settle(&mut s, &sup);
        vec![s]
    }

    fn actions(&self, s: &SupervisorWorld, actions: &mut Vec<SupervisorAction>) {
        let l = &s.left;
        let world = l.events > 0;
        for (k, &instance) in s.spawns.iter().enumerate() {
            actions.push(SupervisorAction::LauncherSpawns(k, instance));
            if world && l.spawn_failures > 0 {
                for j in JITTERS {
                    actions.push(SupervisorAction::SpawnFails(k, instance, j));
                }
            }
        }
        for (&pid, p) in &s.procs {
            if !p.hung && (s.waiting > 0 || (world && l.serves > 0)) {
                actions.push(SupervisorAction::ProcessServes(pid));
            }
            let crashes = if p.served {
                l.crashes_served
            } else {
                l.crashes_unserved
            };
            if world && crashes > 0 {
                for j in JITTERS {
                    actions.push(SupervisorAction::ProcessCrashes(pid, j));
                }
            }
            if world && l.clean_exits > 0 {
                for j in JITTERS {
                    actions.push(SupervisorAction::ProcessExitsCleanly(pid, j));
                }
            }
            if world && l.hangs > 0 && !p.hung {
                actions.push(SupervisorAction::ProcessHangs(pid));
            }
        }
        for (k, &(_, pid)) in s.kills.iter().enumerate() {
            actions.push(SupervisorAction::LauncherKills(k, pid));
        }
        match s.sup.poll_timeout() {
            Some(t) if t > s.now => actions.push(SupervisorAction::ClockReaches(t)),
            Some(_) => actions.push(SupervisorAction::FireTimer),
            None => {}
        }
        if world && l.requests > 0 {
            actions.push(SupervisorAction::ClientArrives);
        }
        if world && l.reloads > 0 {
            actions.push(SupervisorAction::Reload);
        }
        if world && l.stops > 0 {
            actions.push(SupervisorAction::Stop);
        }
    }

    fn next_state(
        &self,
        last: &SupervisorWorld,
        action: SupervisorAction,
    ) -> Option<SupervisorWorld> {
        let mut s = last.clone();
        let before = last.sup.clone();
        match action {
            SupervisorAction::LauncherSpawns(k, instance) => {
                s.spawns.remove(k);
                let pid = s.next_pid;
                s.next_pid += 1;
                s.procs.insert(
                    pid,
                    Process {
                        instance,
                        served: false,
                        hung: false,
                        since: s.now,
                    },
                );
                s.sup.handle_spawned(instance, pid, s.now);
                self.settle(&mut s, &before);
            }
            SupervisorAction::SpawnFails(k, instance, jitter) => {
                if !Self::spend(&mut s.left.events, &mut s.left.spawn_failures) {
                    return None;
                }
                s.spawns.remove(k);
                s.sup.handle_spawn_failed(instance, jitter, s.now);
                self.settle(&mut s, &before);
            }
            SupervisorAction::ProcessServes(pid) => {
                if s.waiting > 0 {
                    s.waiting -= 1;
                    s.served += 1;
                } else if !Self::spend(&mut s.left.events, &mut s.left.serves) {
                    return None;
                }
                s.procs.get_mut(&pid)?.served = true;
                s.sup.handle_served(s.now);
                self.settle(&mut s, &before);
            }
            SupervisorAction::ProcessCrashes(pid, jitter) => {
                let served = s.procs.get(&pid)?.served;
                let budget = if served {
                    &mut s.left.crashes_served
                } else {
                    &mut s.left.crashes_unserved
                };
                if !Self::spend(&mut s.left.events, budget) {
                    return None;
                }
                self.ended(&mut s, pid, ExitStatus::Signal(11), jitter, false);
            }
            SupervisorAction::ProcessExitsCleanly(pid, jitter) => {
                if !Self::spend(&mut s.left.events, &mut s.left.clean_exits) {
                    return None;
                }
                self.ended(&mut s, pid, ExitStatus::Code(0), jitter, false);
            }
            SupervisorAction::ProcessHangs(pid) => {
                if !Self::spend(&mut s.left.events, &mut s.left.hangs) {
                    return None;
                }
                s.procs.get_mut(&pid)?.hung = true;
            }
            SupervisorAction::LauncherKills(k, pid) => {
                s.kills.remove(k);
                // A process that already ended has nothing left to kill.
                self.ended(&mut s, pid, ExitStatus::Signal(9), 0, true);
            }
            SupervisorAction::ClockReaches(t) => s.now = t,
            SupervisorAction::FireTimer => {
                s.sup.handle_timeout(s.now);
                self.settle(&mut s, &before);
            }
            SupervisorAction::ClientArrives => {
                if !Self::spend(&mut s.left.events, &mut s.left.requests) {
                    return None;
                }
                if s.published == Availability::Ready {
                    s.waiting += 1;
                } else {
                    s.refused += 1;
                }
            }
            SupervisorAction::Reload => {
                if !Self::spend(&mut s.left.events, &mut s.left.reloads) {
                    return None;
                }
                let given_up = before.state() == ServiceState::GivenUp;
                let asked = s.spawns.len();
                s.sup.restart(s.now);
                self.settle(&mut s, &before);
                if given_up && s.sup.state() != ServiceState::GivenUp && s.spawns.len() > asked {
                    s.revived = true;
                }
            }
            SupervisorAction::Stop => {
                if !Self::spend(&mut s.left.events, &mut s.left.stops) {
                    return None;
                }
                s.stopped = true;
                s.sup.stop(s.now);
                self.settle(&mut s, &before);
            }
        }
        debug_assert!(s != *last, "every offered action changes the state");
        Some(s)
    }

    fn format_action(&self, action: &SupervisorAction) -> String {
        match action {
            SupervisorAction::LauncherSpawns(_, i) => format!("the launcher starts instance {i}"),
            SupervisorAction::SpawnFails(_, i, j) => {
                format!("instance {i} cannot be started (jitter {j})")
            }
            SupervisorAction::ProcessServes(pid) => format!("process {pid} serves a request"),
            SupervisorAction::ProcessCrashes(pid, j) => {
                format!("process {pid} crashes (jitter {j})")
            }
            SupervisorAction::ProcessExitsCleanly(pid, j) => {
                format!("process {pid} exits with status 0 (jitter {j})")
            }
            SupervisorAction::ProcessHangs(pid) => format!("process {pid} hangs"),
            SupervisorAction::LauncherKills(_, pid) => format!("the launcher kills process {pid}"),
            SupervisorAction::ClockReaches(t) => format!("the clock reaches {t}"),
            SupervisorAction::FireTimer => "the shell handles the timer".to_owned(),
            SupervisorAction::ClientArrives => "a client's request arrives".to_owned(),
            SupervisorAction::Reload => "reload (restart)".to_owned(),
            SupervisorAction::Stop => "stop".to_owned(),
        }
    }

    fn properties(&self) -> Vec<Property<SupervisorModel>> {
        let mut properties = vec![
            Property::<SupervisorModel>::always(
                "at most one process per instance, processes in all",
                |m, s| {
                    let n = m.scenario.processes;
                    let live = s.sup.instances().iter().filter(|i| i.is_live()).count();
                    // A process being killed may briefly overlap its relaunch (documented);
                    // every other process, and every spawn in flight, holds its instance's
                    // one place.
                    let mut places = vec![0usize; n];
                    for &i in &s.spawns {
                        places[index(i)] += 1;
                    }
                    for (pid, p) in &s.procs {
                        if !s.kills.iter().any(|&(_, k)| k == *pid) {
                            places[index(p.instance)] += 1;
                        }
                    }
                    live <= n && places.iter().all(|&c| c <= 1)
                },
            ),
            Property::<SupervisorModel>::always(
                "no process is asked for while its instance backs off, is given up or stopped",
                |_, s| s.held_back_spawn.is_none(),
            ),
            Property::<SupervisorModel>::always("no process is asked for after stop", |_, s| {
                !s.spawn_after_stop
            }),
            Property::<SupervisorModel>::always(
                "the supervisor's view agrees with the launcher's",
                |_, s| {
                    let insts = s.sup.instances();
                    let up_ok = insts.iter().enumerate().all(|(i, inst)| match inst.state {
                        InstanceState::Up { pid, .. } => {
                            s.procs.get(&pid).is_some_and(|p| index(p.instance) == i)
                        }
                        InstanceState::Starting => s.spawns.iter().any(|&x| index(x) == i),
                        _ => true,
                    });
                    let procs_ok = s.procs.iter().all(|(&pid, p)| {
                        s.kills.iter().any(|&(_, k)| k == pid)
                            || insts[index(p.instance)].pid() == Some(pid)
                    });
                    up_ok && procs_ok
                },
            ),
            Property::<SupervisorModel>::always(
                "a service with a proven process up is never given up",
                |_, s| s.gave_up_proven.is_none(),
            ),
            Property::<SupervisorModel>::always(
                "the back-off never shrinks within a streak",
                |_, s| !s.shrunk,
            ),
            Property::<SupervisorModel>::eventually(
                "a process that ended is relaunched unless the service is given up or stopped",
                |m, s| s.owed.is_empty() && m.is_over(s),
            ),
            Property::<SupervisorModel>::eventually(
                "every waiting request is answered (served, or 503 once the service is down)",
                // A request waiting on a process that hangs is the worker's gateway
                // timeout's to answer: the supervisor cannot tell a hung process from a
                // quiet one.
                |m, s| {
                    let hung_up = s.sup.instances().iter().any(|i| {
                        i.pid()
                            .is_some_and(|pid| s.procs.get(&pid).is_some_and(|p| p.hung))
                    });
                    (s.waiting == 0 || hung_up) && m.is_over(s)
                },
            ),
            Property::<SupervisorModel>::sometimes("the service is given up", |_, s| {
                s.sup.state() == ServiceState::GivenUp
            }),
            Property::<SupervisorModel>::sometimes(
                "a proven process that ended is relaunched at once",
                |_, s| s.relaunched_at_once,
            ),
            Property::<SupervisorModel>::sometimes(
                "a reload brings a given-up service back",
                |_, s| s.revived,
            ),
            Property::<SupervisorModel>::sometimes("a waiting request is served", |_, s| {
                s.served > 0
            }),
            Property::<SupervisorModel>::sometimes(
                "a waiting request is answered 503 when the service goes down",
                |_, s| s.refused_waiting,
            ),
        ];
        // A lone process gives up at its second failed start, before a third back-off could
        // meet the floor.
        if self.scenario.processes > 1 {
            properties.push(Property::<SupervisorModel>::sometimes(
                "a back-off above the cap is held at the streak's floor",
                |_, s| s.held_at_floor,
            ));
        }
        properties
    }
}

#[cfg(test)]
mod tests {
    use stateright::{Checker, HasDiscoveries, Model};

    use super::*;

    /// The counterexample the checker finds for `property` in the broken model: its
    /// transcript and its last state. The check stops soon after the first one.
    fn caught(
        scenario: Scenario,
        fault: SupervisorFault,
        property: &'static str,
    ) -> (Vec<String>, SupervisorWorld) {
        let checker = SupervisorModel::with_fault(scenario, fault)
            .checker()
            .finish_when(HasDiscoveries::AnyOf([property].into()))
            .spawn_bfs()
            .join();
        let path = checker.discovery(property).unwrap_or_else(|| {
            panic!("{fault:?} is not caught by {property:?}");
        });
        let last = path.last_state().clone();
        let transcript = path
            .into_actions()
            .iter()
            .map(|a| checker.model().format_action(a))
            .collect();
        (transcript, last)
    }

    /// Plays a transcript (`format_action` lines) from the initial state.
    fn replay(model: &SupervisorModel, steps: &[&str]) -> SupervisorWorld {
        let mut s = model.init_states().remove(0);
        for step in steps {
            let mut actions = Vec::new();
            model.actions(&s, &mut actions);
            let action = actions
                .into_iter()
                .find(|a| model.format_action(a) == *step)
                .unwrap_or_else(|| panic!("{step:?} is not offered"));
            s = model.next_state(&s, action).expect("it changes the state");
        }
        s
    }

    #[test]
    fn honest_models_hold_and_their_state_counts_are_pinned() {
        for (scenario, unique) in [(Scenario::single(), 132_420), (Scenario::pair(), 779_499)] {
            let name = scenario.name;
            let checker = SupervisorModel::new(scenario).checker().spawn_bfs().join();
            checker.assert_properties();
            assert_eq!(checker.unique_state_count(), unique, "{name}");
            // The revival the `sometimes` property found: given up, then reloaded.
            let path = checker
                .discovery("a reload brings a given-up service back")
                .expect("a revival");
            let last = path.last_state().clone();
            let t: Vec<String> = path
                .into_actions()
                .iter()
                .map(|a| checker.model().format_action(a))
                .collect();
            let reload = t
                .iter()
                .position(|a| a == "reload (restart)")
                .unwrap_or_else(|| panic!("{name}: a reload: {t:?}"));
            let failed = t[..reload]
                .iter()
                .filter(|a| a.contains("crashes") || a.contains("cannot be started"))
                .count();
            assert!(failed >= 2, "{name}: two failed starts before it: {t:?}");
            assert!(last.revived);
        }
    }

    /// The bug the model found: the shell reads the launcher's reports before it hands the
    /// supervisor its due timers, and a failed start read first gave up the service and
    /// killed a process that had lived `proven_after`.
    #[test]
    fn a_report_read_before_a_due_proof_does_not_give_up_a_proven_process() {
        let m = SupervisorModel::new(Scenario::pair());
        let s = replay(
            &m,
            &[
                "the launcher starts instance 0",
                "the launcher starts instance 1",
                "process 101 crashes (jitter 0)",
                "the clock reaches 100ms",
                "the shell handles the timer",
                "the clock reaches 1000ms",
                "instance 1 cannot be started (jitter 0)",
            ],
        );
        assert_eq!(s.sup.state(), ServiceState::Up);
        assert!(s.gave_up_proven.is_none() && s.kills.is_empty());
        assert_eq!(
            s.sup.instances()[0].state,
            InstanceState::Up {
                pid: 100,
                since: Time(0),
                proven: true
            }
        );
        // The proof ended the streak: this failed start opens a new one.
        assert_eq!(s.sup.failed_starts(), 1);
        assert_eq!(s.last_delay, Some(Duration::from_millis(100)));
    }

    #[test]
    fn spawning_at_once_instead_of_backing_off_is_caught() {
        let (t, last) = caught(
            Scenario::single(),
            SupervisorFault::NoBackoff,
            "no process is asked for while its instance backs off, is given up or stopped",
        );
        assert!(
            matches!(last.held_back_spawn, Some(InstanceState::Backoff { .. })),
            "{t:?}"
        );
        assert!(
            t.iter()
                .any(|a| a.contains("crashes") || a.contains("cannot be started")),
            "{t:?}"
        );
    }

    #[test]
    fn ignoring_a_give_up_is_caught() {
        let checker = SupervisorModel::with_fault(Scenario::single(), SupervisorFault::NoGiveUp)
            .checker()
            .spawn_bfs()
            .join();
        assert!(checker.discovery("the service is given up").is_none());
        assert!(checker
            .discovery("a reload brings a given-up service back")
            .is_none());
        // What the shell hid: two failed starts in a row, and a service restarted at once.
        assert!(checker.discovery("a waiting request is served").is_some());
    }

    #[test]
    fn a_lost_exit_report_is_never_relaunched() {
        let (t, last) = caught(
            Scenario::single(),
            SupervisorFault::LostExit,
            "a process that ended is relaunched unless the service is given up or stopped",
        );
        // The supervisor still has the dead process up.
        let pid = last.sup.instances()[0].pid();
        assert!(
            pid.is_some_and(|pid| !last.procs.contains_key(&pid)),
            "{t:?}"
        );
        assert_eq!(last.owed, [InstanceId(0)]);
        // The supervisor's view shows it at once.
        let (t, last) = caught(
            Scenario::single(),
            SupervisorFault::LostExit,
            "the supervisor's view agrees with the launcher's",
        );
        assert!(t
            .iter()
            .any(|a| a.contains("crashes") || a.contains("exits")));
        assert!(last.sup.instances()[0]
            .pid()
            .is_some_and(|pid| !last.procs.contains_key(&pid)));
    }

    #[test]
    fn a_dropped_kill_leaves_two_processes_for_one_instance() {
        let (t, last) = caught(
            Scenario::pair(),
            SupervisorFault::DropKill,
            "at most one process per instance, processes in all",
        );
        assert!(last.kills.is_empty(), "{t:?}");
        assert!(last.procs.len() + last.spawns.len() > 1, "{t:?}");
    }

    #[test]
    fn a_dropped_publication_leaves_a_request_waiting() {
        let (t, last) = caught(
            Scenario::single(),
            SupervisorFault::DropPublish,
            "every waiting request is answered (served, or 503 once the service is down)",
        );
        assert!(last.waiting > 0, "{t:?}");
        assert_eq!(last.published, Availability::Ready, "{t:?}");
        assert_ne!(last.sup.availability(), Availability::Ready, "{t:?}");
    }
}
