//! weir-sim: the weir-core `Server` the production shell drives, driven instead by a
//! seeded, simulated world and checked by an independent oracle (DESIGN.md §6, STYLE.md
//! §3.5).
//!
//! # Theory of operation
//!
//! One seed makes one ChaCha8 random stream, and everything comes from it in a fixed
//! order: first the run's *options* (fault rates, sizes, limits, timeouts: `options`),
//! then the site (a random rules file, parsed by the real `weir_core::config::parse`:
//! `workload`), the file tree (`fs`), and then, step by step, every client, request, split,
//! delay, fault and file change (`world`). Nothing reads a clock, a file or a socket, and
//! every collection is ordered, so one seed always gives one trace; `trace` hashes it.
//!
//! The world answers the core's effects the way the mio shell does, behind the same
//! `Input`/`Effect` interface, and the `oracle` watches from outside: the contract of that
//! interface, strict parsing of every byte clients receive, one response per request in
//! order, a reference model of rules, documents and CGI scripts, one access-log record per
//! response (the log is on in three runs of four), and, after a liveness phase with the
//! faults healed, that everything started has finished and everything held (connections,
//! descriptors, processes) is released. Scripts are simulated processes
//! (`procs`) whose behaviour their names choose: echoing, flooding, stalling, crashing,
//! writing bad output. FastCGI services are simulated servers (`services`) behind a
//! `service app connect=unix:…` declaration, whose programs the same names choose; they
//! keep connections alive, die in the middle of an answer, and restart (refusing
//! connections while down, with the supervisor's `Down` and `Ready` published to the
//! core), and a reload may move the service to another socket.
//!
//! `run` wraps a whole run in `catch_unwind`: a panic in the core or the world is a
//! *crash*; a checker's complaint is a *safety* failure; something that never finishes is
//! a *liveness* failure. Each has its own exit status (2, 3, 4) in the binary.
//!
//! Bugs can be planted on the world's side (`options::Inject`) to show that the oracle
//! notices them; the core is never modified.

pub mod fs;
pub mod options;
pub mod oracle;
pub mod procs;
pub mod services;
pub mod trace;
pub mod workload;
pub mod world;

use std::panic::{self, AssertUnwindSafe};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use options::{Args, FaultLevel, Inject, Options};
pub use world::{Category, Failure, Stats, Summary};

/// A finished run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The options the seed chose.
    pub options: Options,
    /// The summary, or what broke.
    pub result: Result<Summary, Failure>,
}

impl Outcome {
    /// The command that replays this run.
    #[must_use]
    pub fn replay(&self) -> String {
        self.options.args.replay_command(self.options.faults)
    }
}

/// Runs one simulation. With `print_trace`, every input and effect is printed as it
/// happens.
pub fn run(args: Args, print_trace: bool) -> Outcome {
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let options = Options::draw(args, &mut rng);
    let opts = options.clone();
    let caught = panic::catch_unwind(AssertUnwindSafe(move || {
        let mut world = world::World::new(opts, rng, print_trace)?;
        world.run()
    }));
    let result = match caught {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with a non-string payload".into());
            Err(Failure {
                category: Category::Crash,
                step: 0,
                time: weir_core::Time(0),
                what: format!("panic: {what}"),
            })
        }
    };
    Outcome { options, result }
}
