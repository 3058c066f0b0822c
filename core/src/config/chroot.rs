//! `chroot DIR`: which paths a configuration may name, and how a path looks from inside.
//!
//! The shell enters the chroot (`chdir` + `chroot`) and does nothing else about it; every
//! path the core hands the shell — a document to open, a directory to list, a script and
//! its working directory, the CGI variables that carry file-system paths — is already the
//! path as seen from inside (`Server` translates with `inside`). So the configuration keeps
//! naming paths as seen from outside, as usual, and the shell knows no rule, no CGI
//! variable and no request.
//!
//! At start-up, `root` and every file-system path a rule names (`pass` results, `exec`,
//! `presentation` and `search` scripts, up to their `*`) must lie inside DIR, compared
//! lexically after `.` and `..` are resolved (`check`); anything else is refused before
//! weir binds. At run time a path outside DIR (which the core's confinement of `pass`
//! targets already rules out) does not exist: it is answered as not found.

use std::path::{Component, Path, PathBuf};

use super::Config;
use crate::rules::{Action, Rule};

/// The CGI variables whose values are file-system paths (translated like the paths opened).
pub const PATH_VARIABLES: [&[u8]; 3] = [b"SCRIPT_FILENAME", b"PATH_TRANSLATED", b"DOCUMENT_ROOT"];

/// Checks that `root` and every path the rules serve from are inside `dir`; the error
/// names the first that is not.
pub fn check(config: &Config, dir: &Path) -> Result<(), String> {
    if !dir.is_absolute() {
        return Err(format!("chroot {}: not an absolute path", dir.display()));
    }
    let jail = normalise(dir);
    let within = |p: &Path| normalise(p).starts_with(&jail);
    if !within(&config.root) {
        return Err(format!(
            "chroot {}: root {} is outside it; every served path must be inside the chroot \
             directory",
            dir.display(),
            config.root.display()
        ));
    }
    let rules = config
        .rules
        .iter()
        .chain(config.hosts.iter().flat_map(|h| h.rules.iter()));
    for rule in rules {
        for text in served_paths(rule) {
            // The text before a `*` names the directory (or file) the rule serves from.
            let fixed = text.split('*').next().unwrap_or_default();
            let path = config.root.join(fixed);
            if !within(&path) {
                return Err(format!(
                    "chroot {}: line {} (`{}`) names {}, which is outside it; every served \
                     path must be inside the chroot directory",
                    dir.display(),
                    rule.line,
                    rule.source,
                    normalise(&path).display()
                ));
            }
        }
    }
    Ok(())
}

/// The file-system paths (as written, relative to `root`) a rule opens or runs.
fn served_paths(rule: &Rule) -> Vec<&str> {
    match &rule.action {
        Action::Pass {
            result: Some(result),
            ..
        } => vec![result.as_str()],
        Action::Exec { script, .. }
        | Action::Presentation { script, .. }
        | Action::Search { script, .. } => vec![script.as_str()],
        // `pass` without a result serves under `root` (checked already); a FastCGI
        // service's SCRIPT_FILENAME is the service's business, it may run elsewhere.
        _ => Vec::new(),
    }
}

/// `path` as seen inside the chroot `jail` (both absolute), or `None` if it is outside it.
#[must_use]
pub fn inside(jail: &Path, path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let path = normalise(path);
    let rest = path.strip_prefix(normalise(jail)).ok()?;
    Some(Path::new("/").join(rest))
}

/// `path` with `.` removed and `..` applied lexically (never above `/`).
#[must_use]
pub fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if out.parent().is_some() {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_translated_or_refused() {
        let jail = Path::new("/srv/jail");
        let t = |p: &str| inside(jail, Path::new(p));
        assert_eq!(t("/srv/jail"), Some(PathBuf::from("/")));
        assert_eq!(t("/srv/jail/"), Some(PathBuf::from("/")));
        assert_eq!(
            t("/srv/jail/htdocs/a b.txt"),
            Some(PathBuf::from("/htdocs/a b.txt"))
        );
        assert_eq!(t("/srv/jail/./x/../y"), Some(PathBuf::from("/y")));
        assert_eq!(t("/srv/jail/../other/x"), None);
        assert_eq!(
            t("/srv/jailbreak/x"),
            None,
            "a sibling with the same prefix"
        );
        assert_eq!(t("/etc/passwd"), None);
        assert_eq!(t("relative/x"), None);
    }

    #[test]
    fn normalise_never_climbs_above_the_root() {
        assert_eq!(normalise(Path::new("/a/../../b")), PathBuf::from("/b"));
        assert_eq!(normalise(Path::new("/a/./b/..")), PathBuf::from("/a"));
        assert_eq!(normalise(Path::new("/")), PathBuf::from("/"));
    }

    fn config(text: &str) -> Config {
        let mut none = |_: &Path| Err("no files".to_string());
        super::super::parse_with_root("t.conf", text, Path::new("/srv/jail/site"), None, &mut none)
            .expect("valid configuration")
    }

    #[test]
    fn served_paths_must_be_inside() {
        let jail = Path::new("/srv/jail");
        assert_eq!(check(&config("pass /*\n"), jail), Ok(()));
        assert_eq!(
            check(
                &config("exec /cgi/* cgi-bin/*\npass /x/* /srv/jail/x/*\npass /* htdocs/*\n"),
                jail
            ),
            Ok(())
        );
        let err = check(&config("pass /* ../../etc/*\n"), jail).expect_err("outside");
        assert!(
            err.starts_with("chroot /srv/jail: line 1 (`pass /* ../../etc/*`) names /srv/etc, "),
            "{err}"
        );
        let err = check(&config("host a\nsearch /* /usr/bin/find\n"), jail).expect_err("outside");
        assert!(err.contains("line 2"), "{err}");
        let err = check(&config("root /srv/www\npass /*\n"), jail).expect_err("outside");
        assert!(
            err.starts_with("chroot /srv/jail: root /srv/www is outside it"),
            "{err}"
        );
    }
}
