//! `weir-sim`: run one seed or a range of seeds, print the options first, then either a
//! summary or the failure with the one command that replays it.
//!
//! Exit status: 0 all passed, 1 usage error, 2 crash (a panic), 3 safety failure,
//! 4 liveness failure. Wall-clock time is read here, and only here, to report speed: the
//! simulated world never sees it.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use clap::Parser;
use weir_sim::options::STEPS_DEFAULT;
use weir_sim::{Args, FaultLevel, Inject, Outcome};

/// Deterministic simulation of the weir server core.
#[derive(Parser, Debug)]
#[command(name = "weir-sim", version)]
struct Cli {
    /// Run this seed (default: a random one, printed).
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run every seed in the half-open range A..B (stops at the first failure).
    #[arg(long, value_parser = parse_range)]
    seeds: Option<(u64, u64)>,
    /// Safety-phase steps (world events) per seed.
    #[arg(long, default_value_t = STEPS_DEFAULT)]
    steps: u64,
    /// Fault level: none, light or heavy (default: drawn from the seed).
    #[arg(long)]
    faults: Option<FaultLevel>,
    /// Plant a bug in the world to test the oracle: reorder-sends, drop-final-chunk,
    /// stale-file, lose-closefile, swap-stdin, lose-release, lose-log-record,
    /// duplicate-log-record, reload-in-flight, lose-service-eof, swap-service-output.
    #[arg(long)]
    inject: Option<Inject>,
    /// Also check what today's core is known to get wrong (see the README): a script's
    /// failure may cut its own response and those after it, never the complete
    /// responses queued before it; a script's header section over `limit header-bytes=`
    /// is refused even when it arrives in one read; a script whose spawn completes after
    /// the gateway timeout still times out.
    #[arg(long)]
    strict: bool,
    /// Print every input and effect (single seed).
    #[arg(long)]
    trace: bool,
    /// Threads for --seeds (default: the number of CPUs).
    #[arg(long)]
    jobs: Option<usize>,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("`{s}` is not a range A..B"))?;
    let a: u64 = a.parse().map_err(|_| format!("`{a}` is not a number"))?;
    let b: u64 = b.parse().map_err(|_| format!("`{b}` is not a number"))?;
    if b <= a {
        return Err(format!("the range {a}..{b} is empty"));
    }
    Ok((a, b))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // Help and version are not errors; everything else is a usage error (1), so
            // that 2 stays the crash status.
            return ExitCode::from(u8::from(e.use_stderr()));
        }
    };
    let start = Instant::now();
    match cli.seeds {
        Some((a, b)) => seeds(&cli, a, b, start),
        None => {
            let seed = cli.seed.unwrap_or_else(random_seed);
            let args = Args {
                seed,
                steps: cli.steps,
                faults: cli.faults,
                inject: cli.inject,
                strict: cli.strict,
            };
            let outcome = single(args, cli.trace);
            report(&outcome, start, true)
        }
    }
}

/// A seed from the process's hash keys (no clock needed, different on every run).
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    h.finish() >> 1
}

fn single(args: Args, trace: bool) -> Outcome {
    // The options are printed before the run so that a crash still shows them.
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(args.seed);
    let options = weir_sim::Options::draw(args, &mut rng);
    println!("weir-sim: {options}");
    weir_sim::run(args, trace)
}

fn report(o: &Outcome, start: Instant, verbose: bool) -> ExitCode {
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    match &o.result {
        Ok(s) => {
            if verbose {
                println!(
                    "ok seed={} steps={} time={}ms connections={} requests={} responses={} \
                     fs_changes={} resets={} short_writes={} open_failures={} cgi_requests={} \
                     spawns={} kills={} shed={} refused={} reloads={} svc_requests={} \
                     svc_streams={} svc_reused={} svc_restarts={} svc_deaths={} statuses={:?}",
                    o.options.args.seed,
                    s.stats.steps,
                    s.stats.time.0,
                    s.stats.connections,
                    s.stats.requests,
                    s.stats.responses,
                    s.stats.fs_changes,
                    s.stats.resets,
                    s.stats.short_writes,
                    s.stats.open_failures,
                    s.stats.cgi_requests,
                    s.stats.spawns,
                    s.stats.kills,
                    s.stats.shed,
                    s.stats.refused,
                    s.stats.reloads,
                    s.stats.svc_requests,
                    s.stats.svc_streams,
                    s.stats.svc_reused,
                    s.stats.svc_restarts,
                    s.stats.svc_deaths,
                    s.stats.statuses
                );
                println!(
                    "trace={:016x} speed={:.0} simulated requests per wall-clock second",
                    s.trace_hash,
                    s.stats.requests as f64 / secs
                );
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            if !verbose {
                println!("weir-sim: {}", o.options);
            }
            println!(
                "FAILED ({:?}) seed={} step={} time={}ms\n{}\nreplay: {}",
                f.category,
                o.options.args.seed,
                f.step,
                f.time.0,
                f.what,
                o.replay()
            );
            ExitCode::from(f.category.exit_code())
        }
    }
}

fn seeds(cli: &Cli, a: u64, b: u64, start: Instant) -> ExitCode {
    let jobs = cli
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let next = AtomicU64::new(a);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(u64, Outcome)>();
    let mut code = ExitCode::SUCCESS;
    let mut requests = 0u64;
    let mut passed = 0u64;
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= b || stop.load(Ordering::Relaxed) {
                    break;
                }
                let args = Args {
                    seed,
                    steps: cli.steps,
                    faults: cli.faults,
                    inject: cli.inject,
                    strict: cli.strict,
                };
                let o = weir_sim::run(args, false);
                if o.result.is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
                if tx.send((seed, o)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        // Report in seed order, whatever order the threads finish in.
        let mut done: BTreeMap<u64, Outcome> = BTreeMap::new();
        let mut want = a;
        for (seed, o) in rx {
            done.insert(seed, o);
            while let Some(o) = done.remove(&want) {
                want += 1;
                if code != ExitCode::SUCCESS {
                    continue;
                }
                match &o.result {
                    Ok(s) => {
                        passed += 1;
                        requests += s.stats.requests;
                        println!(
                            "ok seed={} faults={} requests={} responses={} trace={:016x}",
                            o.options.args.seed,
                            o.options.faults,
                            s.stats.requests,
                            s.stats.responses,
                            s.trace_hash
                        );
                    }
                    Err(_) => code = report(&o, start, false),
                }
            }
        }
    });
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    println!(
        "{passed} seeds passed in {secs:.1}s, {:.0} simulated requests per wall-clock second",
        requests as f64 / secs
    );
    code
}
