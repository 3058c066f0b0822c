//! `weir reload` and `weir stop`: signal the running weir named by a configuration's
//! `pid-file`, as `nginx -s reload` and `nginx -s stop` do.
//!
//! `reload` checks the file first, with the parser the server uses: a file with errors is
//! reported (`FILE:LINE:COL: error: …`) and nothing is signalled, so a typo never reaches
//! the running server (which would refuse it too, but only in its error log). The PID is
//! read from the `pid-file`, checked to be a number naming a live process, then sent
//! SIGHUP (reload) or SIGTERM (stop: finish requests in flight, then exit).

use std::path::Path;

use crate::cli::SignalArgs;
use crate::conffile;

/// What to ask the running weir.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// SIGHUP.
    Reload,
    /// SIGTERM.
    Stop,
}

/// Runs `weir reload` or `weir stop`; returns the exit status (0 signalled, 1 not).
pub fn run(args: &SignalArgs, ask: Ask) -> i32 {
    let config = match conffile::load(&args.config, None) {
        Ok(c) => c,
        Err(report) => {
            eprintln!("{report}");
            eprintln!("weir: not signalled: the configuration has errors");
            return 1;
        }
    };
    let Some(pid_file) = &config.pid_file else {
        eprintln!(
            "weir: {} has no `pid-file` line, so the running weir cannot be found",
            args.config.display()
        );
        return 1;
    };
    match signal(pid_file, ask) {
        Ok(pid) => {
            let what = match ask {
                Ask::Reload => "reload (SIGHUP)",
                Ask::Stop => "stop (SIGTERM)",
            };
            eprintln!("weir: asked process {pid} to {what}");
            0
        }
        Err(e) => {
            eprintln!("weir: {e}");
            1
        }
    }
}

fn signal(pid_file: &Path, ask: Ask) -> Result<i32, String> {
    let text = std::fs::read_to_string(pid_file)
        .map_err(|e| format!("cannot read the pid file {}: {e}", pid_file.display()))?;
    let pid: i32 = text.trim().parse().ok().filter(|p| *p > 1).ok_or_else(|| {
        format!(
            "{}: not a process ID: {:?}",
            pid_file.display(),
            text.trim()
        )
    })?;
    let sig = match ask {
        Ask::Reload => libc::SIGHUP,
        Ask::Stop => libc::SIGTERM,
    };
    // SAFETY: kill takes plain integers and touches no memory.
    if unsafe { libc::kill(pid, sig) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!(
            "cannot signal process {pid} (from {}): {e}",
            pid_file.display()
        ));
    }
    Ok(pid)
}

/// Writes this process's ID to `path` (`weir serve`, at start-up).
pub fn write_pid_file(path: &Path) -> Result<(), String> {
    std::fs::write(path, format!("{}\n", std::process::id()))
        .map_err(|e| format!("cannot write the pid file {}: {e}", path.display()))
}

/// Removes the pid file if it still holds this process's ID (`weir serve`, at exit).
pub fn remove_pid_file(path: &Path) {
    let ours =
        std::fs::read_to_string(path).is_ok_and(|t| t.trim() == std::process::id().to_string());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}
