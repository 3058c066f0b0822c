//! Reading `weir.conf` from disk for the core's parser.
//!
//! The parser is pure: it gets the file's text and a loader for the files the text names
//! (`users=` password files). This module is that loader, and the one place that turns the
//! parser's diagnostics into the text people read (`FILE:LINE:COL: error: …`, the line, a
//! caret), so `weir serve -c`, `weir check` and `weir route` report errors the same way.

use std::path::{Path, PathBuf};

use weir_core::config::{parse_with_root, Config};

/// Reads and parses the configuration at `path`; `root` overrides its `root` directive.
/// On failure, returns the full report (every diagnostic, and a count).
pub fn load(path: &Path, root: Option<&Path>) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: error: cannot read the configuration: {e}",
            path.display()
        )
    })?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = absolute
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let mut loader = |p: &Path| std::fs::read_to_string(p).map_err(|e| e.to_string());
    parse_with_root(&path.display().to_string(), &text, &dir, root, &mut loader).map_err(|diags| {
        let mut report: Vec<String> = diags.iter().map(ToString::to_string).collect();
        let n = diags.len();
        report.push(format!(
            "{n} error{} in {}",
            if n == 1 { "" } else { "s" },
            path.display()
        ));
        report.join("\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-conffile-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let p = dir.join("weir.conf");
        std::fs::write(&p, text).expect("write config");
        p
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let p = temp("ok", "access-log logs/a.log\npass /*\n");
        let c = load(&p, None).expect("valid");
        assert_eq!(c.root, p.parent().unwrap());
        assert_eq!(
            c.access_log.unwrap().path,
            p.parent().unwrap().join("logs/a.log")
        );
        let c = load(&p, Some(Path::new("/srv"))).expect("valid");
        assert_eq!(c.root, Path::new("/srv"));
    }

    #[test]
    fn errors_are_reported_with_positions_and_a_count() {
        let p = temp("bad", "pass /*/*\nbogus\n");
        let report = load(&p, None).unwrap_err();
        let name = p.display().to_string();
        assert!(
            report.starts_with(&format!(
                "{name}:1:6: error: a template has at most one `*`\n  pass /*/*\n       ^~~~"
            )),
            "{report}"
        );
        assert!(
            report.contains(&format!("{name}:2:1: error: unknown directive `bogus`")),
            "{report}"
        );
        assert!(report.ends_with(&format!("2 errors in {name}")), "{report}");
        assert!(load(Path::new("/nonexistent/weir.conf"), None)
            .unwrap_err()
            .contains("cannot read the configuration"));
    }
}
