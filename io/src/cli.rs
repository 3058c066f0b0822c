//! The command line, as clap sees it.
//!
//! `weir serve [--listen ADDR]… [--root DIR] [--workers N]` (DESIGN.md §5). This module only
//! describes and parses the arguments; turning them into a `Config` and a running server is
//! `serve`'s job, so the parsing can be tested without binding anything.
//!
//! Configuration files (`-c FILE`) are not accepted yet: the `weir.conf` loader lands with
//! its own change, and until then the option is absent rather than half-working.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The most worker threads `--workers` accepts: far beyond any core count, low enough that a
/// typo (`--workers 80000`) is refused instead of exhausting the process's threads.
pub const WORKERS_MAX: u32 = 1024;

/// weir: a web server with a checked, sans-IO core.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a directory over HTTP until SIGINT or SIGTERM.
    Serve(ServeArgs),
}

/// Arguments of `weir serve`.
#[derive(Debug, Parser)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080 or [::1]:8080 (repeatable; replaces the
    /// default 127.0.0.1:8080).
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,

    /// Directory to serve (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Number of worker threads, each with its own event loop (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(WORKERS_MAX)))]
    pub workers: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let argv = ["weir", "serve"].iter().chain(args);
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Serve(a) => a,
        })
    }

    #[test]
    fn serve_without_options_uses_defaults() {
        let a = serve(&[]).expect("no options is valid");
        assert!(a.listen.is_empty());
        assert_eq!(a.root, None);
        assert_eq!(a.workers, None);
    }

    #[test]
    fn listen_is_repeatable_and_takes_v4_and_v6() {
        let a = serve(&[
            "--listen",
            "127.0.0.1:8080",
            "--listen",
            "[::1]:9090",
            "--root",
            "/srv/www",
            "--workers",
            "3",
        ])
        .expect("valid options");
        let want: Vec<SocketAddr> = vec![
            "127.0.0.1:8080".parse().expect("literal v4 address"),
            "[::1]:9090".parse().expect("literal v6 address"),
        ];
        assert_eq!(a.listen, want);
        assert_eq!(a.root, Some(PathBuf::from("/srv/www")));
        assert_eq!(a.workers, Some(3));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(serve(&["--listen", "localhost"]).is_err());
        assert!(serve(&["--listen", "127.0.0.1"]).is_err());
        assert!(serve(&["--workers", "0"]).is_err());
        assert!(serve(&["--workers", "many"]).is_err());
        assert!(serve(&["--workers", "100000"]).is_err());
        assert!(serve(&["--bogus"]).is_err());
    }

    #[test]
    fn a_subcommand_is_required() {
        assert!(Cli::try_parse_from(["weir"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
