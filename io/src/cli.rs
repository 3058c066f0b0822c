//! The command line, as clap sees it.
//!
//! `weir serve [-c FILE] [--listen ADDR]… [--root DIR] [--workers N]`, `weir check [-c FILE]`
//! and `weir route [-c FILE] [--host H] [--method M] [--peer ADDR] URL` (DESIGN.md §5).
//! This module only describes and parses the arguments; turning them into a `Config` and a
//! running server is `serve`'s job, so the parsing can be tested without binding anything.

use std::net::{IpAddr, SocketAddr};
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
    /// Serve a directory (or what a configuration file says) until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Check a configuration file and exit 0 if it is valid, 1 if not (like `nginx -t`).
    Check(CheckArgs),
    /// Explain how the rules of a configuration treat a URL.
    Route(RouteArgs),
    /// Check a configuration, then ask the weir named by its `pid-file` to reload it
    /// (SIGHUP).
    Reload(SignalArgs),
    /// Ask the weir named by a configuration's `pid-file` to stop (SIGTERM): it finishes
    /// the requests in flight, then exits.
    Stop(SignalArgs),
    /// The launcher process, which weir starts itself with the control socket as standard
    /// input (not for people: hidden from the help).
    #[command(hide = true)]
    Launcher,
    /// The demo's multi-user dungeon, a FastCGI service (`service mud spawn="weir mud"`):
    /// it expects its listening socket as standard input, as weir's launcher gives it.
    #[command(hide = true)]
    Mud,
}

/// Arguments of `weir check`.
#[derive(Debug, Parser)]
pub struct CheckArgs {
    /// The configuration file.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        default_value = "weir.conf"
    )]
    pub config: PathBuf,
}

/// Arguments of `weir reload` and `weir stop`.
#[derive(Debug, Parser)]
pub struct SignalArgs {
    /// The configuration file (its `pid-file` names the running weir).
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        default_value = "weir.conf"
    )]
    pub config: PathBuf,
}

/// Arguments of `weir route`.
#[derive(Debug, Parser)]
pub struct RouteArgs {
    /// The configuration file.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        default_value = "weir.conf"
    )]
    pub config: PathBuf,

    /// The request's host (default: the URL's, if it has one).
    #[arg(long, value_name = "H")]
    pub host: Option<String>,

    /// The request method.
    #[arg(long, value_name = "M", default_value = "GET")]
    pub method: String,

    /// The client's address, for `protect allow=/deny=` rules.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub peer: IpAddr,

    /// The URL: a path (`/a/b?q`) or an absolute URL (`http://host/a/b`).
    pub url: String,
}

/// Arguments of `weir serve`.
#[derive(Debug, Parser)]
pub struct ServeArgs {
    /// Configuration file (without it: serve the root with the built-in configuration).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on, e.g. 127.0.0.1:8080 or [::1]:8080 (repeatable; replaces the
    /// default 127.0.0.1:8080).
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,

    /// Directory to serve (default: the current directory); with -c, replaces its `root`.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Number of worker threads, each with its own event loop (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(WORKERS_MAX)))]
    pub workers: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn serve(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let argv = ["weir", "serve"].iter().chain(args);
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Serve(a) => a,
            other => panic!("not serve: {other:?}"),
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
    fn check_and_route() {
        let cli = Cli::try_parse_from(["weir", "check", "-c", "site/weir.conf"]).expect("valid");
        assert!(
            matches!(cli.command, Command::Check(CheckArgs { config }) if config == Path::new("site/weir.conf"))
        );
        let cli =
            Cli::try_parse_from(["weir", "route", "--method", "POST", "--peer", "::1", "/a?b"])
                .expect("valid");
        let Command::Route(r) = cli.command else {
            panic!("not route")
        };
        assert_eq!(
            (r.config.as_path(), r.method.as_str(), r.url.as_str()),
            (Path::new("weir.conf"), "POST", "/a?b")
        );
        assert_eq!(r.peer, "::1".parse::<IpAddr>().unwrap());
        assert!(
            Cli::try_parse_from(["weir", "route"]).is_err(),
            "URL is required"
        );
    }

    #[test]
    fn launcher_is_a_hidden_subcommand() {
        use clap::CommandFactory;
        let cli = Cli::try_parse_from(["weir", "launcher"]).expect("valid");
        assert!(matches!(cli.command, Command::Launcher));
        assert!(Cli::try_parse_from(["weir", "launcher", "x"]).is_err());
        let help = Cli::command().render_help().to_string();
        assert!(!help.contains("launcher"), "{help}");
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
