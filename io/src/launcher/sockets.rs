//! The services' listening sockets, held by the launcher (`Listen`, `Unlisten`).
//!
//! A service's socket is a unix stream socket bound to a path in weir's run directory.
//! The launcher creates it and keeps it open for the service's whole life, across restarts
//! of its processes: each process gets it as fd 0 and accepts on it, and a connection a
//! worker makes while no process is running waits in the backlog instead of failing.
//!
//! Creating one: a stale socket file at the path (left by a weir that died) is removed — a
//! file of any other type is left alone, and `bind` then fails with `EADDRINUSE`; `bind`;
//! the permission bits and owner are set on the file; only then `listen`, so nobody can
//! connect before the permissions are what weir asked for (weir's run directory, mode
//! 0700, keeps everyone else off the file in between). The descriptor is close-on-exec:
//! only the `dup2` in a service's child makes it fd 0.
//!
//! Removing one: the descriptor is closed and the file unlinked — only if the file at the
//! path is still the one we bound (same device and inode), so a path that another weir has
//! since taken over is not pulled from under it.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::log::log_error;

/// One service's listening socket.
#[derive(Debug)]
struct Listener {
    fd: OwnedFd,
    path: PathBuf,
    /// Device and inode of the socket file we bound.
    file: (u64, u64),
}

/// The listening sockets, by service name.
#[derive(Debug, Default)]
pub struct Listeners {
    by_service: BTreeMap<String, Listener>,
}

impl Listeners {
    /// No sockets.
    #[must_use]
    pub fn new() -> Listeners {
        Listeners::default()
    }

    /// Carries out `Listen`; the error is the errno to report.
    pub fn listen(
        &mut self,
        service: &str,
        path: &Path,
        backlog: u32,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), i32> {
        if self.by_service.contains_key(service) {
            return Err(libc::EEXIST);
        }
        let listener = create(path, backlog, mode, owner).map_err(|e| errno_of(&e))?;
        self.by_service.insert(service.to_owned(), listener);
        Ok(())
    }

    /// Carries out `Unlisten`: closes the socket and removes its file. An unknown service
    /// is weir's mistake, logged.
    pub fn unlisten(&mut self, service: &str) {
        match self.by_service.remove(service) {
            Some(l) => remove(l),
            None => log_error!("launcher: Unlisten for {service:?}, which has no socket"),
        }
    }

    /// The listening descriptor of `service`, if it has one.
    #[must_use]
    pub fn fd(&self, service: &str) -> Option<RawFd> {
        self.by_service.get(service).map(|l| l.fd.as_raw_fd())
    }

    /// Closes every socket and removes every file (the launcher is exiting).
    pub fn close_all(&mut self) {
        for (_, l) in std::mem::take(&mut self.by_service) {
            remove(l);
        }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.close_all();
    }
}

/// The errno of an I/O error; errors std or socket2 made up without one (a path too long
/// for `sun_path`) count as `EINVAL`.
fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EINVAL)
}

fn create(path: &Path, backlog: u32, mode: u32, owner: Option<(u32, u32)>) -> io::Result<Listener> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => fs::remove_file(path)?,
        Ok(_) => return Err(io::Error::from_raw_os_error(libc::EADDRINUSE)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // socket2 opens it close-on-exec.
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    let bound = (|| {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o777))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
        }
        let m = fs::symlink_metadata(path)?;
        // The kernel caps the backlog at somaxconn; a value beyond i32 means "the most".
        socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
        Ok((m.dev(), m.ino()))
    })();
    match bound {
        Ok(file) => Ok(Listener {
            fd: socket.into(),
            path: path.to_path_buf(),
            file,
        }),
        Err(e) => {
            // Leave no half-made socket file behind.
            let _ = fs::remove_file(path);
            Err(e)
        }
    }
}

fn remove(l: Listener) {
    drop(l.fd);
    match fs::symlink_metadata(&l.path) {
        Ok(m) if (m.dev(), m.ino()) == l.file => {
            if let Err(e) = fs::remove_file(&l.path) {
                log_error!("launcher: cannot remove {}: {e}", l.path.display());
            }
        }
        // Gone already, or replaced by someone else's file: nothing of ours to remove.
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log_error!("launcher: {}: {e}", l.path.display()),
    }
}
