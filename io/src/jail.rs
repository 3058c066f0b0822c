//! `chroot DIR`: checking the configuration against it (the core's `config::chroot::check`)
//! and entering it.
//!
//! The core hands the shell every path already as seen inside the chroot (documents,
//! directories, CGI programs, their working directories and path variables), so the shell
//! translates nothing of a request's. Only its own files — the logs, reopened by path on
//! SIGUSR1 or a reload — go through `inside`, which strips DIR (a path outside it cannot be
//! reached any more).

use std::borrow::Cow;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use weir_core::config::chroot;
use weir_core::server::IoError;

/// The chroot directory (as configured, normalised), once entered.
static JAIL: OnceLock<PathBuf> = OnceLock::new();

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
    JAIL.set(chroot::normalise(dir))
        .map_err(|_| format!("cannot chroot to {}: already in a chroot", dir.display()))
}

/// `path` as the process sees it: unchanged without a chroot, else with the chroot
/// directory stripped; a path outside it is `NotFound`.
pub fn inside(path: &Path) -> Result<Cow<'_, Path>, IoError> {
    match JAIL.get() {
        None => Ok(Cow::Borrowed(path)),
        Some(jail) => chroot::inside(jail, path)
            .map(Cow::Owned)
            .ok_or(IoError::NotFound),
    }
}
