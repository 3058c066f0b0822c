//! `weir-model`: checks weir's stateright models to completion, or serves the Explorer.
//!
//! ```text
//! weir-model --model conn              # every client script, checked to completion
//! weir-model --model server            # every server scenario (versions, pipelined, cgi)
//! weir-model --model server --script cgi --fault output-after-crash
//! weir-model --model supervisor        # one service's supervisor (single, pair)
//! weir-model --model supervisor --script pair --fault drop-kill
//! weir-model --model reload            # reloads landing mid-request (once, twice)
//! weir-model --model reload --script once --fault in-flight-too
//! weir-model --model all               # all of them (what CI runs, in debug)
//! weir-model --model conn --script keepalive --explore 127.0.0.1:3000
//! ```
//!
//! A check prints, per model, the states explored, the unique states, the depth and the
//! time, then the verdict of every property; it exits 1 if any property fails, so CI can
//! run it as is. `--explore` serves stateright's web Explorer, whose paths read like a
//! transcript (`format_action`).

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use stateright::{Checker, Expectation, Model};
use weir_model::conn::{ConnFault, ConnModel, Script};
use weir_model::reload::{self, ReloadFault, ReloadModel};
use weir_model::server::{Scenario, ServerFault, ServerModel};
use weir_model::supervisor::{self, SupervisorFault, SupervisorModel};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Which {
    Conn,
    Server,
    Supervisor,
    Reload,
    All,
}

/// Model-check weir's connection machine, server core, service supervisor and reloads.
#[derive(Parser, Debug)]
#[command(name = "weir-model", version)]
struct Cli {
    /// Which model to check.
    #[arg(long, value_enum, default_value = "all")]
    model: Which,
    /// Only this client script (conn) or scenario (server, supervisor, reload); default: all
    /// of them.
    #[arg(long)]
    script: Option<String>,
    /// Serve stateright's Explorer on this address instead of checking (one model and one
    /// script or scenario).
    #[arg(long, value_name = "ADDR")]
    explore: Option<String>,
    /// Check a deliberately broken environment instead of the honest one, to see the
    /// counterexample a property finds (conn: reorder-sends, over-report-sent,
    /// recycle-after-reject, write-after-close, ignore-budget, skip-drain; server:
    /// sendfile-by-path, drop-close-file, answer-read-twice, drop-release, output-after-crash;
    /// supervisor: no-backoff, no-give-up, lost-exit, drop-kill, drop-publish; reload:
    /// in-flight-too).
    #[arg(long)]
    fault: Option<String>,
    /// Checker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let conn_models: Vec<ConnModel> = Script::all()
        .into_iter()
        .filter(|s| cli.script.is_none() || cli.script.as_deref() == Some(s.name))
        .map(|s| ConnModel::with_fault(s, conn_fault(cli.fault.as_deref())))
        .collect();
    let server_models: Vec<ServerModel> = Scenario::all()
        .into_iter()
        .filter(|s| cli.script.is_none() || cli.script.as_deref() == Some(s.name))
        .map(|s| ServerModel::with_fault(s, server_fault(cli.fault.as_deref())))
        .collect();
    let supervisor_models: Vec<SupervisorModel> = supervisor::Scenario::all()
        .into_iter()
        .filter(|s| cli.script.is_none() || cli.script.as_deref() == Some(s.name))
        .map(|s| SupervisorModel::with_fault(s, supervisor_fault(cli.fault.as_deref())))
        .collect();
    let reload_models: Vec<ReloadModel> = reload::Scenario::all()
        .into_iter()
        .filter(|s| cli.script.is_none() || cli.script.as_deref() == Some(s.name))
        .map(|s| ReloadModel::with_fault(s, reload_fault(cli.fault.as_deref())))
        .collect();
    let (conn_models, server_models, supervisor_models, reload_models) = match cli.model {
        Which::Conn => (conn_models, Vec::new(), Vec::new(), Vec::new()),
        Which::Server => (Vec::new(), server_models, Vec::new(), Vec::new()),
        Which::Supervisor => (Vec::new(), Vec::new(), supervisor_models, Vec::new()),
        Which::Reload => (Vec::new(), Vec::new(), Vec::new(), reload_models),
        Which::All => (conn_models, server_models, supervisor_models, reload_models),
    };
    if let Some(addr) = cli.explore {
        let explore = |name: &str| eprintln!("explorer for {name} on http://{addr}/");
        if let Some(m) = conn_models.into_iter().next() {
            explore(m.script.name);
            m.checker().threads(cli.threads).serve(addr.as_str());
        } else if let Some(m) = server_models.into_iter().next() {
            explore(m.scenario.name);
            m.checker().threads(cli.threads).serve(addr.as_str());
        } else if let Some(m) = supervisor_models.into_iter().next() {
            explore(m.scenario.name);
            m.checker().threads(cli.threads).serve(addr.as_str());
        } else if let Some(m) = reload_models.into_iter().next() {
            explore(m.scenario.name);
            m.checker().threads(cli.threads).serve(addr.as_str());
        } else {
            eprintln!("no such model or script");
            return ExitCode::from(2);
        }
        return ExitCode::SUCCESS;
    }
    if conn_models.is_empty()
        && server_models.is_empty()
        && supervisor_models.is_empty()
        && reload_models.is_empty()
    {
        eprintln!("no such model or script");
        return ExitCode::from(2);
    }
    let mut ok = true;
    for m in conn_models {
        let name = format!("conn/{}", m.script.name);
        ok &= check(&name, m, cli.threads);
    }
    for m in server_models {
        let name = format!("server/{}", m.scenario.name);
        ok &= check(&name, m, cli.threads);
    }
    for m in supervisor_models {
        let name = format!("supervisor/{}", m.scenario.name);
        ok &= check(&name, m, cli.threads);
    }
    for m in reload_models {
        let name = format!("reload/{}", m.scenario.name);
        ok &= check(&name, m, cli.threads);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn conn_fault(name: Option<&str>) -> ConnFault {
    match name {
        Some("reorder-sends") => ConnFault::ReorderSends,
        Some("over-report-sent") => ConnFault::OverReportSent,
        Some("recycle-after-reject") => ConnFault::RecycleAfterReject,
        Some("write-after-close") => ConnFault::WriteAfterClose,
        Some("ignore-budget") => ConnFault::IgnoreBudget,
        Some("skip-drain") => ConnFault::SkipDrain,
        _ => ConnFault::None,
    }
}

fn server_fault(name: Option<&str>) -> ServerFault {
    match name {
        Some("sendfile-by-path") => ServerFault::SendfileByPath,
        Some("drop-close-file") => ServerFault::DropCloseFile,
        Some("answer-read-twice") => ServerFault::AnswerReadTwice,
        Some("drop-release") => ServerFault::DropRelease,
        Some("output-after-crash") => ServerFault::OutputAfterCrash,
        _ => ServerFault::None,
    }
}

fn supervisor_fault(name: Option<&str>) -> SupervisorFault {
    match name {
        Some("no-backoff") => SupervisorFault::NoBackoff,
        Some("no-give-up") => SupervisorFault::NoGiveUp,
        Some("lost-exit") => SupervisorFault::LostExit,
        Some("drop-kill") => SupervisorFault::DropKill,
        Some("drop-publish") => SupervisorFault::DropPublish,
        _ => SupervisorFault::None,
    }
}

fn reload_fault(name: Option<&str>) -> ReloadFault {
    match name {
        Some("in-flight-too") => ReloadFault::InFlightToo,
        _ => ReloadFault::None,
    }
}

/// Checks one model to completion and prints its figures and verdicts.
fn check<M>(name: &str, model: M, threads: usize) -> bool
where
    M: Model + Send + Sync + 'static,
    M::State: Clone + std::fmt::Debug + std::hash::Hash + PartialEq + Send + Sync,
    M::Action: Clone + std::fmt::Debug + PartialEq,
{
    let properties = model.properties();
    let start = Instant::now();
    let checker = model.checker().threads(threads).spawn_bfs().join();
    let elapsed = start.elapsed();
    println!(
        "{name}: {} states explored, {} unique, max depth {}, {:.2?}",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        elapsed
    );
    let mut ok = true;
    for p in &properties {
        let found = checker.discovery(p.name);
        // A discovery is a counterexample for always/eventually, an example for sometimes.
        let holds = match p.expectation {
            Expectation::Always | Expectation::Eventually => found.is_none(),
            Expectation::Sometimes => found.is_some(),
        };
        println!(
            "  {:<10} {:<60} {}",
            format!("{:?}", p.expectation).to_lowercase(),
            p.name,
            if holds { "ok" } else { "FAILED" }
        );
        if !holds {
            ok = false;
            if let Some(path) = found {
                println!("    counterexample:");
                for (i, action) in path.into_actions().iter().enumerate() {
                    println!(
                        "    {:>3}. {}",
                        i + 1,
                        checker.model().format_action(action)
                    );
                }
            }
        }
    }
    ok
}
