//! The supervisor driven by hand (scenarios) and by a small launcher model (proptest) that
//! checks, after every input, that the supervisor's view and the processes it caused agree.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::server::ExitStatus;
use crate::time::Time;

use SupervisorEffect::{Kill, Log, Publish, Spawn};

const I0: InstanceId = InstanceId(0);
const I1: InstanceId = InstanceId(1);
const I2: InstanceId = InstanceId(2);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn drain(s: &mut Supervisor) -> Vec<SupervisorEffect> {
    std::iter::from_fn(|| s.poll_effect()).collect()
}

fn down(secs: u64) -> SupervisorEffect {
    Publish(Availability::Down {
        retry_after: Duration::from_secs(secs),
    })
}

fn log(line: &str) -> SupervisorEffect {
    Log(line.to_owned())
}

fn backoff_until(s: &Supervisor, i: usize) -> Time {
    match s.instances()[i].state {
        InstanceState::Backoff { until } => until,
        other => panic!("instance {i} is {other:?}, not backing off"),
    }
}

/// A supervisor of `processes` instances that has drained its first effects.
fn started(processes: usize, policy: Policy) -> Supervisor {
    let mut s = Supervisor::new("php", processes, policy, Time(0));
    let mut want: Vec<_> = (0..processes)
        .map(|i| Spawn {
            instance: InstanceId(i as u32),
        })
        .collect();
    want.push(Publish(Availability::Ready));
    assert_eq!(drain(&mut s), want);
    s
}

#[test]
fn a_supervisor_tells_its_name_and_policy() {
    let policy = Policy {
        give_up_after: 3,
        ..Policy::default()
    };
    let s = Supervisor::new("php", 2, policy.clone(), Time(0));
    assert_eq!((s.name(), s.policy()), ("php", &policy));
}

#[test]
fn a_healthy_service_killed_a_hundred_times_is_relaunched_at_once_every_time() {
    let mut s = started(2, Policy::default());
    s.handle_spawned(I0, 1000, Time(5));
    s.handle_spawned(I1, 2000, Time(6));
    s.handle_served(Time(10));
    assert!(drain(&mut s).is_empty());
    let mut now = 10;
    let mut pids = [1000, 2000];
    for n in 0..100u32 {
        let (i, id) = if n % 2 == 0 { (0, I0) } else { (1, I1) };
        now += 50;
        let status = if n % 3 == 0 {
            ExitStatus::Code(1)
        } else {
            ExitStatus::Signal(9)
        };
        s.handle_exited(id, pids[i], status, 1000, Time(now));
        let how = match status {
            ExitStatus::Code(_) => "exited with status 1",
            ExitStatus::Signal(_) => "killed by signal 9",
        };
        let line = format!("service php: process {} {how}; relaunching", pids[i]);
        assert_eq!(drain(&mut s), [Log(line), Spawn { instance: id }]);
        assert_eq!(s.availability(), Availability::Ready);
        pids[i] += 1;
        s.handle_spawned(id, pids[i], Time(now + 5));
        s.handle_served(Time(now + 20));
        assert!(drain(&mut s).is_empty());
        assert_eq!(s.failed_starts(), 0);
        assert_eq!(s.state(), ServiceState::Up);
        assert!(s
            .instances()
            .iter()
            .all(|x| x.state != InstanceState::Starting
                && !matches!(x.state, InstanceState::Backoff { .. })));
    }
    assert_eq!(s.restarts(), 100);
    assert_eq!(s.instances()[0].restarts, 50);
    // Every process is proven, so nothing is due.
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn a_storm_of_kill_9_before_serving_never_backs_off_or_gives_up_but_a_crash_does() {
    let mut s = started(1, Policy::default());
    let mut now = 0;
    for pid in 1..=50u32 {
        s.handle_spawned(I0, pid, Time(now));
        now += 10;
        // Killed from outside before it served anything: relaunched at once, every time.
        s.handle_exited(I0, pid, ExitStatus::Signal(9), 500, Time(now));
        let line = format!(
            "service php: process {pid} killed by signal 9 before serving; relaunching (a kill is no failed start)"
        );
        assert_eq!(drain(&mut s), [Log(line), Spawn { instance: I0 }]);
        assert_eq!(s.failed_starts(), 0);
        assert_eq!(s.availability(), Availability::Ready);
    }
    // A crash of its own (SIGSEGV) before serving is a failed start: it backs off.
    s.handle_spawned(I0, 99, Time(now));
    s.handle_exited(I0, 99, ExitStatus::Signal(11), 0, Time(now + 1));
    assert_eq!(s.failed_starts(), 1);
    assert!(matches!(
        s.instances()[0].state,
        InstanceState::Backoff { .. }
    ));
}

#[test]
fn a_process_is_proven_by_age_even_when_the_timer_is_late() {
    let mut s = started(1, Policy::default());
    s.handle_spawned(I0, 7, Time(0));
    assert_eq!(s.poll_timeout(), Some(Time(3000)));
    s.handle_timeout(Time(2999));
    assert!(drain(&mut s).is_empty());
    // No timeout handled at 3000: the exit itself sees the age.
    s.handle_exited(I0, 7, ExitStatus::Code(0), 0, Time(3000));
    assert_eq!(
        drain(&mut s),
        [
            log("service php: process 7 exited with status 0; relaunching"),
            Spawn { instance: I0 }
        ]
    );
    s.handle_spawned(I0, 8, Time(3001));
    s.handle_timeout(Time(6001));
    assert!(matches!(
        s.instances()[0].state,
        InstanceState::Up {
            pid: 8,
            proven: true,
            ..
        }
    ));
    assert_eq!(s.poll_timeout(), None);
}

/// Runs one failing start of instance 0 at `now` (spawned and dead at once) and returns the
/// effects.
fn fail_once(s: &mut Supervisor, pid: u32, jitter: u16, now: u64) -> Vec<SupervisorEffect> {
    s.handle_spawned(I0, pid, Time(now));
    s.handle_exited(I0, pid, ExitStatus::Code(255), jitter, Time(now));
    drain(s)
}

#[test]
fn serving_proves_a_process_and_ends_the_streak_of_failed_starts() {
    let mut s = started(1, Policy::default());
    fail_once(&mut s, 10, 0, 0);
    assert_eq!(s.failed_starts(), 1);
    assert!(!s.instances()[0].is_live(), "backing off: no process");
    s.handle_timeout(Time(100));
    drain(&mut s);
    s.handle_spawned(I0, 11, Time(100));
    assert_eq!(s.instances()[0].state.name(), "up");
    assert!(s.instances()[0].is_live());
    s.handle_served(Time(150));
    assert_eq!(s.failed_starts(), 0, "served: the streak is over");
    // Its next failure is a crash of a proven process, not a failed start.
    s.handle_exited(I0, 11, ExitStatus::Code(255), 0, Time(200));
    drain(&mut s);
    assert_eq!(s.failed_starts(), 0);
}

/// A report about an instance the supervisor never gave out is a bug in the shell: caught
/// by an assertion in debug builds (release builds ignore it).
#[test]
#[should_panic(expected = "service php: no instance")]
fn a_report_for_an_instance_never_given_out_is_asserted_against() {
    let mut s = started(1, Policy::default());
    s.handle_spawned(InstanceId(1), 5, Time(0));
}

#[test]
fn a_command_that_fails_at_once_backs_off_doubling_then_gives_up() {
    let mut s = started(1, Policy::default());
    let mut now = 0;
    let steps = [
        (100, "100ms", 1),
        (200, "200ms", 1),
        (400, "400ms", 1),
        (800, "800ms", 1),
        (1600, "1.6s", 2),
    ];
    for (n, (delay, shown, retry_after)) in steps.into_iter().enumerate() {
        let pid = 10 + n as u32;
        let effects = fail_once(&mut s, pid, 0, now);
        let line = format!(
            "service php: process {pid} exited with status 255 before serving; retrying in {shown}"
        );
        // Ready at first start, and while a process is up; down from each failure.
        let mut want = vec![Log(line), down(retry_after)];
        if n > 0 {
            want.insert(0, Publish(Availability::Ready));
        }
        assert_eq!(effects, want, "failed start {}", n + 1);
        assert_eq!(s.failed_starts(), n as u32 + 1);
        assert_eq!(backoff_until(&s, 0), Time(now + delay));
        assert_eq!(s.state(), ServiceState::Backoff);
        assert_eq!(s.poll_timeout(), Some(Time(now + delay)));
        // Early: nothing.
        s.handle_timeout(Time(now + delay - 1));
        assert!(drain(&mut s).is_empty());
        now += delay;
        s.handle_timeout(Time(now));
        // Starting again after a failed start: still down, retry after a second.
        let mut want = vec![Spawn { instance: I0 }];
        if retry_after != 1 {
            want.push(down(1));
        }
        assert_eq!(drain(&mut s), want);
        assert_eq!(s.availability(), down_availability(1));
    }
    assert_eq!(now, 3100);
    let effects = fail_once(&mut s, 15, 0, now);
    assert_eq!(
        effects,
        [
            Publish(Availability::Ready),
            log("service php: process 15 exited with status 255 before serving"),
            log(
                "service php: 6 failed starts in 3.1s; giving up for 60s (a reload brings it back)"
            ),
            down(60),
        ]
    );
    assert_eq!(s.state(), ServiceState::GivenUp);
    assert_eq!(s.instances()[0].state, InstanceState::GivenUp);
    assert_eq!(s.given_up_until(), Some(Time(63_100)));
    assert_eq!(s.poll_timeout(), Some(Time(63_100)));
    // Nothing spawns while given up, whatever arrives.
    for t in [3200, 10_000, 63_099] {
        s.handle_timeout(Time(t));
        s.handle_served(Time(t));
        s.handle_exited(I0, 15, ExitStatus::Code(255), 0, Time(t));
        s.handle_spawn_failed(I0, 0, Time(t));
        assert!(drain(&mut s).is_empty());
    }
    s.handle_timeout(Time(63_100));
    assert_eq!(
        drain(&mut s),
        [
            log("service php: cool-down over; starting again"),
            Spawn { instance: I0 },
            Publish(Availability::Ready),
        ]
    );
    assert_eq!(s.failed_starts(), 0);
    // A new streak starts from the first back-off again.
    let effects = fail_once(&mut s, 16, 0, 63_200);
    assert_eq!(backoff_until(&s, 0), Time(63_300));
    assert_eq!(effects.len(), 2);
    assert_eq!(s.restarts(), 6);
}

fn down_availability(secs: u64) -> Availability {
    Availability::Down {
        retry_after: Duration::from_secs(secs),
    }
}

/// A supervisor of one instance driven to give up by `give_up_after` immediate failures.
fn given_up(policy: Policy) -> (Supervisor, u64) {
    let k = policy.give_up_after;
    let mut s = started(1, policy);
    let mut now = 0;
    for n in 0..k {
        fail_once(&mut s, 100 + n, 0, now);
        if s.state() == ServiceState::GivenUp {
            break;
        }
        now = backoff_until(&s, 0).0;
        s.handle_timeout(Time(now));
        drain(&mut s);
    }
    assert_eq!(s.state(), ServiceState::GivenUp);
    (s, now)
}

#[test]
fn restart_brings_a_given_up_service_back_at_once() {
    let (mut s, now) = given_up(Policy::default());
    s.restart(Time(now + 1));
    assert_eq!(
        drain(&mut s),
        [
            log("service php: restarted"),
            Spawn { instance: I0 },
            Publish(Availability::Ready)
        ]
    );
    assert_eq!(s.state(), ServiceState::Starting);
    assert_eq!(s.failed_starts(), 0);
    assert_eq!(s.poll_timeout(), None);
    // A restart of a healthy service changes nothing.
    s.handle_spawned(I0, 50, Time(now + 2));
    s.restart(Time(now + 3));
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.instances()[0].pid(), Some(50));
}

#[test]
fn restart_cuts_a_back_off_short() {
    let mut s = started(1, Policy::default());
    fail_once(&mut s, 9, 0, 0);
    s.restart(Time(20));
    assert_eq!(
        drain(&mut s),
        [
            log("service php: restarted"),
            Spawn { instance: I0 },
            Publish(Availability::Ready)
        ]
    );
}

#[test]
fn failed_starts_spread_wider_than_the_window_do_not_give_up() {
    let policy = Policy {
        give_up_window: Duration::from_secs(1),
        ..Policy::default()
    };
    let mut s = started(1, policy);
    let mut now = 0;
    for n in 0..20 {
        fail_once(&mut s, n, 0, now);
        assert_eq!(s.state(), ServiceState::Backoff, "failed start {}", n + 1);
        now = backoff_until(&s, 0).0;
        s.handle_timeout(Time(now));
        drain(&mut s);
    }
    // The back-off reached its cap and stayed there.
    fail_once(&mut s, 99, 0, now);
    assert_eq!(backoff_until(&s, 0), Time(now + 30_000));
    assert_eq!(s.availability(), down_availability(30));
}

#[test]
fn a_failed_spawn_is_a_failed_start() {
    let mut s = started(1, Policy::default());
    s.handle_spawn_failed(I0, 0, Time(5));
    assert_eq!(
        drain(&mut s),
        [
            log("service php: instance 0 could not be started; retrying in 100ms"),
            down(1)
        ]
    );
    assert_eq!(backoff_until(&s, 0), Time(105));
}

#[test]
fn jitter_is_applied_and_bounded() {
    let never = Policy {
        give_up_after: 0,
        ..Policy::default()
    };
    // 1000‰ adds a quarter; 500‰ an eighth; more than 1000 counts as 1000.
    for (jitter, want) in [(0, 100), (1000, 125), (500, 112), (u16::MAX, 125)] {
        let mut s = started(1, never.clone());
        fail_once(&mut s, 1, jitter, 0);
        assert_eq!(backoff_until(&s, 0), Time(want), "jitter {jitter}");
    }
    // Each step of a streak: base ≤ delay ≤ base + 25%, and never less than the last.
    let mut s = started(1, never);
    let mut now = 0;
    let mut last = Duration::ZERO;
    for n in 0..30u32 {
        let jitter = [1000u16, 0, 730, 1000, 0, 250][n as usize % 6];
        fail_once(&mut s, n, jitter, now);
        let until = backoff_until(&s, 0);
        let delay = until.since(Time(now));
        let base = ms(100 * (1u64 << n.min(20))).min(Duration::from_secs(30));
        assert!(delay >= base && delay <= base + base / 4, "{n}: {delay:?}");
        assert!(delay >= last, "{n}: {delay:?} < {last:?}");
        last = delay;
        now = until.0;
        s.handle_timeout(Time(now));
        drain(&mut s);
    }
    // At the cap, a jitter of 0 after one of 1000 holds the longer delay.
    assert_eq!(last, ms(37_500));
}

#[test]
fn stop_kills_everything_and_later_reports_do_not_respawn() {
    let mut s = started(3, Policy::default());
    s.handle_spawned(I0, 10, Time(1));
    s.handle_spawned(I2, 12, Time(1));
    s.handle_exited(I2, 12, ExitStatus::Code(1), 0, Time(2));
    drain(&mut s);
    assert!(matches!(
        s.instances()[2].state,
        InstanceState::Backoff { .. }
    ));
    // 0 up, 1 starting, 2 backing off.
    s.stop(Time(3));
    assert_eq!(
        drain(&mut s),
        [
            Kill {
                instance: I0,
                pid: 10
            },
            Publish(Availability::Stopped)
        ]
    );
    assert!(s
        .instances()
        .iter()
        .all(|x| x.state == InstanceState::Stopped));
    assert_eq!(s.state(), ServiceState::Stopped);
    assert_eq!(s.poll_timeout(), None);
    // The killed process's exit, the spawn in flight, a bogus failure, time, a restart.
    s.handle_exited(I0, 10, ExitStatus::Signal(15), 0, Time(4));
    assert!(drain(&mut s).is_empty());
    s.handle_spawned(I1, 11, Time(5));
    assert_eq!(
        drain(&mut s),
        [Kill {
            instance: I1,
            pid: 11
        }]
    );
    s.handle_exited(I1, 11, ExitStatus::Signal(15), 0, Time(6));
    s.handle_spawn_failed(I2, 0, Time(7));
    s.handle_served(Time(8));
    s.handle_timeout(Time(1_000_000));
    s.restart(Time(1_000_001));
    s.stop(Time(1_000_002));
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.availability(), Availability::Stopped);
}

#[test]
fn a_spawn_reported_after_give_up_is_killed_and_restart_waits_for_a_spawn_in_flight() {
    let policy = Policy {
        give_up_after: 2,
        ..Policy::default()
    };
    // Instance 1's spawn is in flight throughout; instance 0 fails twice.
    let mut s = started(2, policy.clone());
    fail_once(&mut s, 10, 0, 0);
    s.handle_timeout(Time(100));
    assert_eq!(drain(&mut s), [Spawn { instance: I0 }]);
    assert_eq!(fail_once(&mut s, 11, 0, 100).len(), 4);
    assert_eq!(s.state(), ServiceState::GivenUp);
    assert_eq!(s.instances()[1].state, InstanceState::GivenUp);
    // Restart: instance 1 waits for the spawn already asked for.
    s.restart(Time(200));
    assert_eq!(
        drain(&mut s),
        [
            log("service php: restarted"),
            Spawn { instance: I0 },
            Publish(Availability::Ready)
        ]
    );
    s.handle_spawned(I1, 21, Time(201));
    assert_eq!(s.instances()[1].pid(), Some(21));
    assert!(drain(&mut s).is_empty());

    // The same, reported while still given up: the process is killed.
    let mut s = started(2, policy);
    fail_once(&mut s, 10, 0, 0);
    s.handle_timeout(Time(100));
    drain(&mut s);
    fail_once(&mut s, 11, 0, 100);
    s.handle_spawned(I1, 21, Time(150));
    assert_eq!(
        drain(&mut s),
        [Kill {
            instance: I1,
            pid: 21
        }]
    );
    // Its exit changes nothing; the cool-down asks for a fresh process.
    s.handle_exited(I1, 21, ExitStatus::Signal(15), 0, Time(160));
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(Time(60_100));
    assert_eq!(
        drain(&mut s),
        [
            log("service php: cool-down over; starting again"),
            Spawn { instance: I0 },
            Spawn { instance: I1 },
            Publish(Availability::Ready)
        ]
    );
}

#[test]
fn giving_up_kills_an_unproven_process_still_up() {
    let policy = Policy {
        give_up_after: 2,
        ..Policy::default()
    };
    let mut s = started(2, policy);
    s.handle_spawned(I1, 21, Time(0));
    fail_once(&mut s, 10, 0, 0);
    s.handle_timeout(Time(100));
    drain(&mut s);
    let effects = fail_once(&mut s, 11, 0, 100);
    assert_eq!(
        effects[2..],
        [
            Kill {
                instance: I1,
                pid: 21
            },
            down(60)
        ]
    );
    // The killed process's exit is not a failed start.
    s.handle_exited(I1, 21, ExitStatus::Signal(15), 0, Time(101));
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.failed_starts(), 2);
}

#[test]
fn a_flaky_instance_beside_a_proven_one_backs_off_but_never_gives_up_the_service() {
    let mut s = started(2, Policy::default());
    s.handle_spawned(I0, 10, Time(0));
    s.handle_served(Time(1));
    let mut now = 1;
    for n in 0..12 {
        s.handle_spawned(I1, 100 + n, Time(now));
        s.handle_exited(I1, 100 + n, ExitStatus::Code(1), 0, Time(now));
        assert!(
            !drain(&mut s).iter().any(|e| matches!(e, Publish(_))),
            "instance 0 keeps the service ready"
        );
        assert_eq!(s.state(), ServiceState::Up);
        now = backoff_until(&s, 1).0;
        s.handle_timeout(Time(now));
        drain(&mut s);
    }
    assert_eq!(s.failed_starts(), 12);
    assert_eq!(s.instances()[0].pid(), Some(10));
}

/// Found by `weir-model --model supervisor`: the shell reads the launcher's reports before it
/// hands the supervisor a due deadline (io/src/services.rs), so a failed start can arrive
/// when another instance has lived `proven_after` but its proof is not handled yet. It must
/// count as proven all the same: the service is not given up and its process is not killed,
/// and the failed start opens a new streak, as it would had the timer come first.
#[test]
fn a_proof_due_but_not_yet_handled_still_keeps_the_service_from_being_given_up() {
    let policy = Policy {
        give_up_after: 2,
        ..Policy::default()
    };
    let mut s = started(2, policy);
    s.handle_spawned(I0, 10, Time(0));
    s.handle_spawn_failed(I1, 0, Time(0));
    s.handle_timeout(Time(100));
    drain(&mut s);
    // Instance 0's proof is due at 3 s; the second failed start arrives first.
    assert_eq!(s.poll_timeout(), Some(Time(3000)));
    s.handle_spawn_failed(I1, 0, Time(3000));
    let effects = drain(&mut s);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Kill { .. } | Publish(_))),
        "{effects:?}"
    );
    assert_eq!(s.state(), ServiceState::Up);
    assert_eq!(
        s.instances()[0].state,
        InstanceState::Up {
            pid: 10,
            since: Time(0),
            proven: true
        }
    );
    assert_eq!(s.failed_starts(), 1);
    assert_eq!(backoff_until(&s, 1), Time(3100));
    // The same holds for an exit report, and the timer handled late finds nothing to do.
    let mut s = started(
        2,
        Policy {
            give_up_after: 2,
            ..Policy::default()
        },
    );
    s.handle_spawned(I0, 10, Time(0));
    s.handle_spawned(I1, 20, Time(0));
    s.handle_exited(I1, 20, ExitStatus::Code(1), 0, Time(0));
    s.handle_timeout(Time(100));
    s.handle_spawned(I1, 21, Time(100));
    drain(&mut s);
    s.handle_exited(I1, 21, ExitStatus::Code(1), 0, Time(3000));
    assert!(!drain(&mut s).iter().any(|e| matches!(e, Kill { .. })));
    assert_eq!(s.state(), ServiceState::Up);
    assert_eq!(s.failed_starts(), 1);
    s.handle_timeout(Time(3000));
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.instances()[0].pid(), Some(10));
}

#[test]
fn exits_with_a_stale_pid_and_nonsense_reports_are_ignored() {
    let mut s = started(2, Policy::default());
    s.handle_spawned(I0, 10, Time(0));
    drain(&mut s);
    let before = s.clone();
    s.handle_exited(I0, 9, ExitStatus::Code(1), 0, Time(1)); // not its pid
    s.handle_exited(I1, 10, ExitStatus::Code(1), 0, Time(1)); // instance 1 is starting
    s.handle_spawn_failed(I0, 0, Time(1)); // instance 0 is up
    s.handle_spawned(I0, 10, Time(1)); // the same report twice
    assert!(drain(&mut s).is_empty());
    assert_eq!(s, before);
    // A second process for an instance that has one is killed.
    s.handle_spawned(I0, 11, Time(2));
    assert_eq!(
        drain(&mut s),
        [Kill {
            instance: I0,
            pid: 11
        }]
    );
    assert_eq!(s.instances()[0].pid(), Some(10));
}

#[test]
fn availability_is_published_only_when_it_changes() {
    let mut s = started(2, Policy::default());
    let publishes = |e: Vec<SupervisorEffect>| -> Vec<Availability> {
        e.into_iter()
            .filter_map(|e| match e {
                Publish(a) => Some(a),
                _ => None,
            })
            .collect()
    };
    s.handle_spawned(I0, 10, Time(0));
    s.handle_spawned(I1, 11, Time(0));
    assert_eq!(publishes(drain(&mut s)), []);
    // One instance fails unproven while the other is up: still ready.
    s.handle_exited(I0, 10, ExitStatus::Code(1), 0, Time(10));
    assert_eq!(publishes(drain(&mut s)), []);
    // The other fails too: down until the earliest back-off end (110 ms away → 1 s).
    s.handle_exited(I1, 11, ExitStatus::Code(1), 0, Time(20));
    assert_eq!(publishes(drain(&mut s)), [down_availability(1)]);
    assert_eq!(s.availability(), down_availability(1));
    // Time passing alone publishes nothing.
    s.handle_timeout(Time(50));
    assert_eq!(publishes(drain(&mut s)), []);
    // Retrying: Retry-After reads the same.
    s.handle_timeout(Time(110));
    assert_eq!(publishes(drain(&mut s)), []);
    // Up again (unproven): ready.
    s.handle_spawned(I0, 12, Time(120));
    assert_eq!(publishes(drain(&mut s)), [Availability::Ready]);
    // Proven, then killed: relaunched at once and ready throughout.
    s.handle_served(Time(130));
    s.handle_exited(I0, 12, ExitStatus::Signal(9), 0, Time(140));
    assert_eq!(publishes(drain(&mut s)), []);
    s.stop(Time(150));
    assert_eq!(publishes(drain(&mut s)), [Availability::Stopped]);
}

#[test]
fn retry_after_is_whole_seconds_to_the_end_of_the_back_off() {
    let policy = Policy {
        backoff_first: ms(2500),
        give_up_after: 0,
        ..Policy::default()
    };
    let mut s = started(1, policy);
    fail_once(&mut s, 1, 0, 0);
    assert_eq!(s.availability(), down_availability(3));
}

#[test]
fn durations_in_log_lines() {
    let mut s = started(
        1,
        Policy {
            backoff_first: ms(31_400),
            backoff_max: ms(60_000),
            give_up_after: 0,
            ..Policy::default()
        },
    );
    assert_eq!(
        fail_once(&mut s, 1, 0, 0)[0],
        log("service php: process 1 exited with status 255 before serving; retrying in 31.4s")
    );
}

// --- the proptest: a launcher model and arbitrary inputs ---------------------------------

/// One step of the world. Indices pick among what exists (modulo its count); when there is
/// nothing to pick, the step becomes a report the supervisor must ignore or refuse.
#[derive(Clone, Debug)]
enum Step {
    /// Time moves forward this many milliseconds.
    Advance(u32),
    /// A spawn in flight is reported started (or, with none in flight, a bogus process
    /// appears for an instance).
    Spawned(u8),
    /// A spawn in flight fails (or a bogus failure for an instance).
    SpawnFailed(u8, u16),
    /// A running process exits, killed or not (or a bogus exit with an unknown pid).
    Exited(u8, bool, u16),
    Served,
    Timeout,
    Restart,
    Stop,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => prop_oneof![0u32..200, 0u32..5000, 50_000u32..80_000].prop_map(Step::Advance),
        4 => any::<u8>().prop_map(Step::Spawned),
        2 => (any::<u8>(), 0u16..=1000).prop_map(|(i, j)| Step::SpawnFailed(i, j)),
        4 => (any::<u8>(), any::<bool>(), 0u16..=1000).prop_map(|(i, s, j)| Step::Exited(i, s, j)),
        2 => Just(Step::Served),
        4 => Just(Step::Timeout),
        1 => Just(Step::Restart),
        1 => Just(Step::Stop),
    ]
}

/// What the launcher knows: spawns in flight and processes alive.
#[derive(Default)]
struct World {
    now: u64,
    next_pid: u32,
    /// Per instance: a `Spawn` not yet reported.
    in_flight: Vec<bool>,
    /// Live processes: pid → (instance, killed).
    live: BTreeMap<u32, (InstanceId, bool)>,
    published: Option<Availability>,
    stopped: bool,
    /// The latest back-off delay of the current streak.
    last_delay: Option<Duration>,
}

impl World {
    /// Carries out every effect, checking each against what the world knows.
    fn drain(&mut self, s: &mut Supervisor) -> Result<(), TestCaseError> {
        while let Some(e) = s.poll_effect() {
            match e {
                Spawn { instance } => {
                    let i = instance.0 as usize;
                    prop_assert!(!self.stopped, "spawn after stop");
                    prop_assert!(
                        !matches!(s.state(), ServiceState::GivenUp | ServiceState::Stopped),
                        "spawn while {:?}",
                        s.state()
                    );
                    prop_assert!(!self.in_flight[i], "second spawn in flight for {i}");
                    prop_assert!(
                        !self
                            .live
                            .values()
                            .any(|&(x, killed)| x == instance && !killed),
                        "spawn for {i}, which has a process"
                    );
                    self.in_flight[i] = true;
                }
                Kill { instance, pid } => {
                    let Some((x, killed)) = self.live.get_mut(&pid) else {
                        return Err(TestCaseError::fail(format!("kill of unknown pid {pid}")));
                    };
                    prop_assert_eq!(*x, instance);
                    prop_assert!(!*killed, "pid {} killed twice", pid);
                    *killed = true;
                }
                Publish(a) => {
                    prop_assert_ne!(Some(a), self.published, "republished");
                    prop_assert_eq!(a, s.availability());
                    if let Availability::Down { retry_after } = a {
                        prop_assert!(retry_after >= Duration::from_secs(1));
                    }
                    self.published = Some(a);
                }
                Log(line) => prop_assert!(line.starts_with("service php: "), "{}", line),
            }
        }
        Ok(())
    }

    /// The supervisor's view agrees with the world.
    fn check(&self, s: &Supervisor, processes: usize) -> Result<(), TestCaseError> {
        let insts = s.instances();
        prop_assert_eq!(insts.len(), processes);
        prop_assert!(insts.iter().filter(|x| x.is_live()).count() <= processes);
        for (pid, &(instance, killed)) in &self.live {
            if !killed {
                prop_assert_eq!(
                    insts[instance.0 as usize].pid(),
                    Some(*pid),
                    "process {} runs unaccounted for",
                    pid
                );
            }
        }
        for (i, x) in insts.iter().enumerate() {
            if let Some(pid) = x.pid() {
                prop_assert_eq!(self.live.get(&pid), Some(&(InstanceId(i as u32), false)));
            }
            if x.state == InstanceState::Starting {
                prop_assert!(self.in_flight[i], "{} starting with no spawn in flight", i);
            }
            let gone = matches!(s.state(), ServiceState::GivenUp | ServiceState::Stopped);
            prop_assert_eq!(
                gone,
                x.state == InstanceState::GivenUp || x.state == InstanceState::Stopped
            );
        }
        prop_assert_eq!(Some(s.availability()), self.published);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_sequence_of_reports_keeps_the_invariants(
        processes in 1usize..4,
        backoff_first in 1u64..300,
        backoff_max in 1u64..3000,
        give_up_after in 0u32..7,
        proven_after in 1u64..5000,
        cooldown in 1u64..90_000,
        steps in proptest::collection::vec(step(), 0..150),
    ) {
        let policy = Policy {
            backoff_first: ms(backoff_first),
            backoff_max: ms(backoff_max),
            proven_after: ms(proven_after),
            give_up_after,
            cooldown: ms(cooldown),
            ..Policy::default()
        };
        let mut s = Supervisor::new("php", processes, policy.clone(), Time(0));
        let mut w = World { in_flight: vec![false; processes], next_pid: 100, ..World::default() };
        w.drain(&mut s)?;
        w.check(&s, processes)?;
        for step in steps {
            let streak = s.failed_starts();
            let before: Vec<InstanceState> = s.instances().iter().map(|x| x.state).collect();
            let now = Time(w.now);
            match step {
                Step::Advance(d) => w.now += u64::from(d),
                Step::Spawned(k) => {
                    let flying: Vec<usize> = (0..processes).filter(|&i| w.in_flight[i]).collect();
                    let i = if flying.is_empty() {
                        k as usize % processes
                    } else {
                        let i = flying[k as usize % flying.len()];
                        w.in_flight[i] = false;
                        i
                    };
                    let pid = w.next_pid;
                    w.next_pid += 1;
                    w.live.insert(pid, (InstanceId(i as u32), false));
                    s.handle_spawned(InstanceId(i as u32), pid, now);
                }
                Step::SpawnFailed(k, j) => {
                    let flying: Vec<usize> = (0..processes).filter(|&i| w.in_flight[i]).collect();
                    let i = if flying.is_empty() {
                        k as usize % processes
                    } else {
                        let i = flying[k as usize % flying.len()];
                        w.in_flight[i] = false;
                        i
                    };
                    s.handle_spawn_failed(InstanceId(i as u32), j, now);
                }
                Step::Exited(k, signal, j) => {
                    let status = if signal { ExitStatus::Signal(9) } else { ExitStatus::Code(1) };
                    let pids: Vec<u32> = w.live.keys().copied().collect();
                    if pids.is_empty() {
                        let i = k as usize % processes;
                        s.handle_exited(InstanceId(i as u32), 7, status, j, now);
                    } else {
                        let pid = pids[k as usize % pids.len()];
                        let (instance, _) = w.live.remove(&pid).unwrap();
                        s.handle_exited(instance, pid, status, j, now);
                    }
                }
                Step::Served => s.handle_served(now),
                Step::Timeout => {
                    s.handle_timeout(now);
                    // Whatever was due is done.
                    prop_assert!(s.poll_timeout().is_none_or(|t| t > now));
                }
                Step::Restart => s.restart(now),
                Step::Stop => {
                    w.stopped = true;
                    s.stop(now);
                }
            }
            w.drain(&mut s)?;
            w.check(&s, processes)?;

            // The back-off never shrinks within a streak, and stays within its bounds.
            let after = s.failed_starts();
            let entered: Vec<Duration> = s.instances().iter().zip(&before)
                .filter_map(|(x, old)| match x.state {
                    InstanceState::Backoff { until } if x.state != *old => Some(until.since(now)),
                    _ => None,
                })
                .collect();
            prop_assert!(entered.len() <= 1, "several back-offs from one input");
            if after == 0 {
                w.last_delay = None;
            }
            if let Some(&delay) = entered.first() {
                // A process that had lived `proven_after` by now proves itself before the
                // failure is counted (a late timer changes nothing), which ends the old
                // streak: the failure is then the first of a new one.
                let proven_first = after == 1 && streak > 0 && s.instances().iter().any(|x| {
                    matches!(x.state, InstanceState::Up { proven: true, .. })
                });
                prop_assert!(
                    after == streak + 1 || proven_first,
                    "a back-off without a failed start: streak {} → {}", streak, after
                );
                if proven_first {
                    w.last_delay = None;
                }
                let doublings = (after - 1).min(20);
                let base = (policy.backoff_first * (1 << doublings)).min(policy.backoff_max);
                prop_assert!(delay <= base + base / 4, "delay {:?} over {:?} + 25%", delay, base);
                prop_assert!(delay >= base, "delay {:?} under {:?}", delay, base);
                if let Some(last) = w.last_delay {
                    prop_assert!(delay >= last, "back-off shrank: {:?} after {:?}", delay, last);
                }
                w.last_delay = Some(delay);
            } else if after != streak && after != 0 && s.state() != ServiceState::GivenUp {
                prop_assert!(false, "streak {} → {} with no back-off", streak, after);
            }
        }
    }
}

/// The names the status page shows for a service's state.
#[test]
fn service_states_are_named_for_the_status_page() {
    for (state, name) in [
        (ServiceState::Up, "up"),
        (ServiceState::Starting, "starting"),
        (ServiceState::Backoff, "backoff"),
        (ServiceState::GivenUp, "given-up"),
        (ServiceState::Stopped, "stopped"),
    ] {
        assert_eq!(state.name(), name);
    }
}
