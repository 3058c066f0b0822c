//! `weir check` and `weir route`: the configuration checked and explained without serving.
//!
//! `weir check` parses the file exactly as `weir serve -c` would (same loader, same core
//! parser) and says so; `weir route` runs the core's `route` — the function the server calls
//! for every request — on one URL and prints its explanation.

use std::io::Write;

use weir_core::http1::Method;

use crate::cli::{CheckArgs, RouteArgs};
use crate::conffile;

/// Runs `weir check`; returns the exit status (0 valid, 1 not).
pub fn check(args: &CheckArgs) -> i32 {
    match conffile::load(&args.config, None) {
        Ok(config) => {
            let rules: usize =
                config.rules.len() + config.hosts.iter().map(|h| h.rules.len()).sum::<usize>();
            println!(
                "{}: ok ({} rules, {} host sections, {} services)",
                args.config.display(),
                rules,
                config.hosts.len(),
                config.services.len()
            );
            0
        }
        Err(report) => {
            eprintln!("{report}");
            1
        }
    }
}

/// Runs `weir route`; returns the exit status (0, or 1 if the configuration is invalid).
pub fn route(args: &RouteArgs) -> i32 {
    let config = match conffile::load(&args.config, None) {
        Ok(c) => c,
        Err(report) => {
            eprintln!("{report}");
            return 1;
        }
    };
    let host = args.host.clone();
    let method = Method::from_bytes(args.method.as_bytes());
    let text = weir_core::rules::explain_request(
        &config,
        &method,
        args.url.as_bytes(),
        host.as_deref().map(str::as_bytes),
        args.peer,
    );
    let mut out = std::io::stdout().lock();
    // A closed pipe (`weir route … | head`) is not an error worth a panic.
    let _ = out.write_all(text.as_bytes());
    0
}
