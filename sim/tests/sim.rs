//! Whole-simulator tests: determinism, a clean range of seeds, and an oracle with teeth
//! (each bug planted on the world's side is caught, in the right category).

use std::process::Command;

use weir_sim::{run, Args, Category, FaultLevel, Inject};

fn args(seed: u64, inject: Option<Inject>) -> Args {
    Args {
        seed,
        steps: 1_500,
        faults: None,
        inject,
        strict: false,
    }
}

#[test]
fn one_seed_always_gives_one_trace() {
    for seed in 0..6 {
        let a = run(args(seed, None), false);
        let b = run(args(seed, None), false);
        let (a, b) = (a.result.unwrap(), b.result.unwrap());
        assert_eq!(
            a.trace_hash, b.trace_hash,
            "seed {seed} is not deterministic"
        );
        assert_eq!(a.stats.requests, b.stats.requests);
    }
    let x = run(args(1, None), false).result.unwrap().trace_hash;
    let y = run(args(2, None), false).result.unwrap().trace_hash;
    assert_ne!(x, y, "different seeds gave the same trace");
}

#[test]
fn the_unmodified_world_passes_a_range_of_seeds() {
    let (mut responses, mut logged, mut logs) = (0, 0, 0);
    for seed in 0..40 {
        let o = run(args(seed, None), false);
        match &o.result {
            Ok(s) => {
                responses += s.stats.responses;
                logged += s.stats.access_log_lines;
                logs += u32::from(o.options.access_log.is_some());
            }
            Err(f) => panic!("seed {seed} failed: {f:?}\nreplay: {}", o.replay()),
        }
    }
    // The oracle judged real traffic, not an empty run, and paired real log records.
    assert!(responses > 1_000, "only {responses} responses checked");
    assert!(
        (10..40).contains(&logs) && logged > 500,
        "{logs} runs with an access log, {logged} records"
    );
    for faults in [FaultLevel::None, FaultLevel::Heavy] {
        for seed in 100..110 {
            let mut a = args(seed, None);
            a.faults = Some(faults);
            let o = run(a, false);
            assert!(o.result.is_ok(), "{:?}\nreplay: {}", o.result, o.replay());
        }
    }
}

/// Each planted bug makes some seed of a fixed range fail, with the category it belongs
/// to, and never crashes the simulator.
#[test]
fn the_oracle_catches_every_planted_bug() {
    use Category::{Liveness, Safety};
    let cases: [(Inject, &[Category]); 12] = [
        (Inject::ReorderSends, &[Safety]),
        (Inject::DropFinalChunk, &[Safety]),
        (Inject::StaleFile, &[Safety]),
        (Inject::LoseCloseFile, &[Liveness]),
        // Reordered standard input comes back in an echo script's answer.
        (Inject::SwapStdin, &[Safety]),
        // A process never let go: an input names it after its Release (safety), or it
        // is still there when the world goes quiet (liveness).
        (Inject::LoseRelease, &[Safety, Liveness]),
        // A response without its access-log record, and one with two.
        (Inject::LoseLogRecord, &[Safety]),
        (Inject::DuplicateLogRecord, &[Safety]),
        // A request moved to the new generation in flight: one generation's X-Gen, the
        // other's media type (seeds 1, 21, 25, 30 of 0..40).
        (Inject::ReloadInFlight, &[Safety]),
        // A request's answer lost across a reload: the connection ends with it
        // unanswered (seed 0 of 0..40), or the run ends with it waiting.
        (Inject::LoseRequestOnReload, &[Safety, Liveness]),
        // A service process's death never reported: the service book sees the core wait
        // on a dead stream past DEATH_NOTICE_MS (seed 0 of 0..40).
        (Inject::LoseServiceEof, &[Safety]),
        // A service's output reordered: bad records (502) or a body that is not the
        // program's (seed 0 of 0..40).
        (Inject::SwapServiceOutput, &[Safety]),
    ];
    for (bug, categories) in cases {
        let mut caught = 0;
        for seed in 0..40 {
            let o = run(args(seed, Some(bug)), false);
            if let Err(f) = &o.result {
                assert!(
                    categories.contains(&f.category),
                    "{bug} on seed {seed}: wrong category: {f:?}"
                );
                caught += 1;
            }
        }
        assert!(caught > 0, "{bug} went unnoticed on seeds 0..40");
    }
}

/// Scripts really run: over a range of seeds, processes are spawned and killed, and
/// each kind of gateway answer the oracle judges (200, 502, 504, and a cut or 503
/// somewhere) occurs.
#[test]
fn scripts_run_and_fail_in_every_way() {
    let (mut spawns, mut kills, mut cgi) = (0, 0, 0);
    let mut statuses = std::collections::BTreeMap::new();
    for seed in 0..40 {
        let o = run(args(seed, None), false);
        let s = o.result.unwrap_or_else(|f| panic!("seed {seed}: {f:?}"));
        spawns += s.stats.spawns;
        kills += s.stats.kills;
        cgi += s.stats.cgi_requests;
        for (k, v) in s.stats.statuses {
            *statuses.entry(k).or_insert(0) += v;
        }
    }
    assert!(
        cgi > 200 && spawns > 150,
        "{cgi} script requests, {spawns} spawns"
    );
    assert!(kills > 20, "only {kills} kills");
    for status in [502, 503, 504] {
        assert!(
            statuses.get(&status).is_some_and(|n| *n > 0),
            "no {status}: {statuses:?}"
        );
    }
}

/// The FastCGI service really runs: over a range of seeds, requests reach it on streams
/// that are kept alive and reused, its processes die and it restarts, and each kind of
/// failure answer (502, 503, 504) occurs; the hang on a death is caught with its own
/// message.
#[test]
fn services_answer_die_and_restart() {
    let (mut requests, mut streams, mut reused, mut restarts, mut deaths) = (0, 0, 0, 0, 0);
    let mut statuses = std::collections::BTreeMap::new();
    for seed in 0..120 {
        let o = run(args(seed, None), false);
        let replay = o.replay();
        let s = o
            .result
            .unwrap_or_else(|f| panic!("seed {seed}: {f:?}\nreplay: {replay}"));
        requests += s.stats.svc_requests;
        streams += s.stats.svc_streams;
        reused += s.stats.svc_reused;
        restarts += s.stats.svc_restarts;
        deaths += s.stats.svc_deaths;
        for (k, v) in s.stats.statuses {
            *statuses.entry(k).or_insert(0) += v;
        }
    }
    assert!(
        requests > 100 && streams > 50 && reused > 10,
        "{requests} service requests, {streams} streams, {reused} reused"
    );
    assert!(
        restarts > 20 && deaths > 20,
        "{restarts} restarts, {deaths} deaths"
    );
    for status in [502, 503, 504] {
        assert!(
            statuses.get(&status).is_some_and(|n| *n > 0),
            "no {status}: {statuses:?}"
        );
    }
    let o = run(args(0, Some(Inject::LoseServiceEof)), false);
    let f = o.result.expect_err("seed 0 catches lose-service-eof");
    assert_eq!(f.category, Category::Safety, "{f:?}");
    assert!(f.what.contains("hang on service death"), "{}", f.what);
}

fn sim(argv: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir-sim"))
        .args(argv)
        .output()
        .expect("weir-sim runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The replay command a failed run printed fails again, with the same exit status.
fn assert_replay_fails_with(out: &str, code: i32) {
    let replay = out
        .lines()
        .find_map(|l| l.strip_prefix("replay: weir-sim "))
        .expect("a replay command");
    let argv: Vec<&str> = replay.split(' ').collect();
    let (again, _) = sim(&argv);
    assert_eq!(
        again, code,
        "the replay command does not reproduce the failure"
    );
}

#[test]
fn the_binary_prints_options_first_and_replays_failures() {
    let (code, out) = sim(&["--seed", "3", "--steps", "800"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("weir-sim: seed=3 steps=800 faults="),
        "{out}"
    );
    let trace = |o: &str| {
        o.lines()
            .find_map(|l| l.strip_prefix("trace="))
            .map(|l| l[..16].to_string())
    };
    let (_, again) = sim(&["--seed", "3", "--steps", "800"]);
    assert_eq!(trace(&out), trace(&again));
    assert!(trace(&out).is_some(), "{out}");

    let (code, out) = sim(&[
        "--seeds",
        "0..40",
        "--steps",
        "1500",
        "--inject",
        "lose-closefile",
    ]);
    assert_eq!(code, 4, "{out}");
    assert_replay_fails_with(&out, 4);

    // A safety failure (a lost access-log record) is status 3, through the binary too,
    // and its replay command reproduces it.
    let (code, out) = sim(&[
        "--seeds",
        "0..40",
        "--steps",
        "1500",
        "--inject",
        "lose-log-record",
    ]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("FAILED (Safety)"), "{out}");
    assert_replay_fails_with(&out, 3);

    let (code, _) = sim(&["--seeds", "5..3"]);
    assert_eq!(code, 1);
}

/// Reloads happen, and the generation checker holds on the unmodified core; a reload that
/// moves requests in flight (`reload-in-flight`, the core's `model-faults` seam) is
/// caught on seed 1 as a response that mixes two generations.
#[test]
fn reloads_keep_each_request_on_its_generation() {
    let mut reloads = 0;
    for seed in 0..40 {
        let o = run(args(seed, None), false);
        let replay = o.replay();
        let s = o
            .result
            .unwrap_or_else(|f| panic!("seed {seed}: {f:?}\nreplay: {replay}"));
        reloads += s.stats.reloads;
    }
    assert!(reloads > 100, "only {reloads} reloads");
    let mut a = args(1, Some(Inject::ReloadInFlight));
    a.steps = 3_000;
    let o = run(a, false);
    let f = o.result.expect_err("seed 1 catches reload-in-flight");
    assert_eq!(f.category, Category::Safety, "{f:?}");
    assert!(f.what.contains("text/x-gen"), "{}", f.what);
}
