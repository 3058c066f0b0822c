//! Simulation speed: simulated requests per wall-clock second (issue 4, item 5: measured
//! here, never in a timed test).
//!
//! Each benchmark runs fixed seeds, start to finish (options, site, safety phase, liveness
//! phase, every checker), and reports throughput in *requests*: the number of requests
//! the seeds' clients write, which a first run determines (it is the same on every run,
//! since one seed always gives one trace). The speed depends much on a run's shape (how
//! small the pieces clients write, how large the files), so there are two figures: one
//! seed, and a fixed range of seeds, whose mix is what CI's range runs.
//!
//! Run with `cargo bench -p weir-sim -- --warm-up-time 1 --measurement-time 5`; the
//! README's Simulation section records the figure and the machine.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir_sim::options::STEPS_DEFAULT;
use weir_sim::{run, Args, FaultLevel};

fn args(seed: u64, faults: Option<FaultLevel>) -> Args {
    Args {
        seed,
        steps: STEPS_DEFAULT,
        faults,
        inject: None,
        strict: true,
    }
}

fn simulate(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulate");
    // Seed 42 as the seed draws it (a slow shape: clients write in pieces of at most 7
    // bytes), and the same seed in a quiet world.
    for (name, a) in [
        ("seed42", args(42, None)),
        ("seed42-faults-none", args(42, Some(FaultLevel::None))),
    ] {
        let requests = requests(&[a]);
        group.throughput(Throughput::Elements(requests));
        group.bench_function(name, |b| {
            b.iter(|| black_box(run(black_box(a), false)));
        });
    }
    group.finish();

    // Seeds 0..16 one after another: the mix of shapes CI's range of seeds has.
    let mut group = c.benchmark_group("simulate");
    group.sample_size(20);
    let range: Vec<Args> = (0..16).map(|s| args(s, None)).collect();
    group.throughput(Throughput::Elements(requests(&range)));
    group.bench_function("seeds0-16", |b| {
        b.iter(|| {
            for a in &range {
                black_box(run(black_box(*a), false));
            }
        });
    });
    group.finish();
}

/// The requests the runs make (a run that fails makes its speed meaningless).
fn requests(runs: &[Args]) -> u64 {
    runs.iter()
        .map(|a| match run(*a, false).result {
            Ok(s) => s.stats.requests,
            Err(f) => panic!("seed {} fails, so its speed means nothing: {f:?}", a.seed),
        })
        .sum()
}

criterion_group!(benches, simulate);
criterion_main!(benches);
