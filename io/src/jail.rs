//! `chroot DIR`: checking the configuration against it, entering it, and translating the
//! core's paths into paths inside it.
//!
//! The core knows nothing of the chroot: it resolves every configured path as usual
//! (absolute, derived from `root`), and the shell, once it has entered DIR, strips DIR from
//! every path it opens, lists or spawns — documents, directories, CGI programs and their
//! working directories (lighttpd's `server.chroot` works the same way). The CGI variables
//! that carry file-system paths (`SCRIPT_FILENAME`, `PATH_TRANSLATED`, `DOCUMENT_ROOT`) are
//! translated too, so that a script sees the paths it can open.
//!
//! At start-up, `root` and every file-system path a rule names (`pass` results, `exec`,
//! `presentation` and `search` scripts, up to their `*`) must lie inside DIR, compared
//! lexically after `.` and `..` are resolved; anything else is refused before weir binds.
//! At run time a path outside DIR (which the core's confinement of `pass` targets already
//! rules out) is reported as not found: inside the chroot it does not exist.

use std::borrow::Cow;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use weir_core::config::Config;
use weir_core::rules::{Action, Rule};
use weir_core::server::IoError;

/// The chroot directory (as configured, normalised), once entered.
static JAIL: OnceLock<PathBuf> = OnceLock::new();

/// CGI variables whose values are file-system paths, translated like the paths opened.
const PATH_VARIABLES: [&[u8]; 3] = [b"SCRIPT_FILENAME", b"PATH_TRANSLATED", b"DOCUMENT_ROOT"];

/// Checks that `root` and every path the rules serve from are inside `dir`.
pub fn check(config: &Config, dir: &Path) -> Result<(), String> {
    if !dir.is_absolute() {
        return Err(format!("chroot {}: not an absolute path", dir.display()));
    }
    let jail = normalise(dir);
    let inside = |p: &Path| normalise(p).starts_with(&jail);
    if !inside(&config.root) {
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
            if !inside(&path) {
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

/// `chdir(dir)`, then `chroot(dir)`; from then on `inside` translates paths. Needs root.
pub fn enter(dir: &Path) -> Result<(), String> {
    let fail =
        |what: &str, e: io::Error| format!("cannot chroot to {}: {what}: {e}", dir.display());
    let c = CString::new(dir.as_os_str().as_bytes()).map_err(|_| {
        format!(
            "cannot chroot to {}: the path holds a NUL byte",
            dir.display()
        )
    })?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives both calls; chdir and
    // chroot only read it.
    if unsafe { libc::chdir(c.as_ptr()) } != 0 {
        return Err(fail("chdir", io::Error::last_os_error()));
    }
    // SAFETY: as above.
    if unsafe { libc::chroot(c.as_ptr()) } != 0 {
        return Err(fail("chroot", io::Error::last_os_error()));
    }
    JAIL.set(normalise(dir))
        .map_err(|_| format!("cannot chroot to {}: already in a chroot", dir.display()))
}

/// `path` as the process sees it: unchanged without a chroot, else with the chroot
/// directory stripped; a path outside it is `NotFound`.
pub fn inside(path: &Path) -> Result<Cow<'_, Path>, IoError> {
    match JAIL.get() {
        None => Ok(Cow::Borrowed(path)),
        Some(jail) => translate(jail, path)
            .map(Cow::Owned)
            .ok_or(IoError::NotFound),
    }
}

/// A CGI variable's value as the script should see it: a path variable under the chroot
/// directory is translated; everything else is passed unchanged.
pub fn env_value<'a>(name: &[u8], value: &'a [u8]) -> Cow<'a, OsStr> {
    let value = OsStr::from_bytes(value);
    match JAIL.get() {
        Some(jail) if PATH_VARIABLES.contains(&name) => translate(jail, Path::new(value))
            .map_or(Cow::Borrowed(value), |p| Cow::Owned(p.into_os_string())),
        _ => Cow::Borrowed(value),
    }
}

/// `path` relative to the new root `jail` (both absolute), or `None` if it is outside it.
fn translate(jail: &Path, path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let path = normalise(path);
    let rest = path.strip_prefix(jail).ok()?;
    Some(Path::new("/").join(rest))
}

/// `path` with `.` removed and `..` applied lexically (never above `/`).
fn normalise(path: &Path) -> PathBuf {
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
        let t = |p: &str| translate(jail, Path::new(p));
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
        weir_core::config::parse_with_root(
            "t.conf",
            text,
            Path::new("/srv/jail/site"),
            None,
            &mut none,
        )
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
