//! The `weir.conf` parser: arbitrary text → a `Config` or diagnostics, never a panic.
//!
//! Checks: every diagnostic points inside the text (its line exists, its column is at most
//! one past the line's last character) and renders; a file named by the configuration
//! (`users=`) is served by a loader that refuses, which must be a diagnostic, not a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use weir_core::config::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    let mut load = |p: &Path| Err(format!("{} is not readable here", p.display()));
    let lines: Vec<&str> = text.lines().collect();
    match parse("weir.conf", text, Path::new("/etc/weir"), &mut load) {
        Ok(config) => {
            assert!(config.root.is_absolute(), "root {:?}", config.root);
        }
        Err(diags) => {
            assert!(!diags.is_empty(), "Err without a diagnostic");
            for d in &diags {
                assert!(
                    d.line >= 1 && d.line <= lines.len().max(1),
                    "line {} of {}",
                    d.line,
                    lines.len()
                );
                let chars = lines.get(d.line - 1).map_or(0, |l| l.chars().count());
                assert!(
                    d.col >= 1 && d.col <= chars + 1,
                    "col {} on a line of {chars}: {d:?}",
                    d.col
                );
                let _ = d.to_string();
            }
        }
    }
});
