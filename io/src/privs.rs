//! `user NAME [GROUP]`: resolving the account, and dropping root to it.
//!
//! The names are resolved at start-up, before anything is bound (and before a chroot hides
//! `/etc/passwd`), whoever starts weir: an unknown user or group is a start-up error. The
//! supplementary groups are the user's groups as `initgroups` would set them
//! (`getgrouplist`, which includes the primary group) — computed now, set later.
//!
//! Dropping (`become_user`) happens after the listeners are bound and the logs opened, and
//! after the chroot: `setgroups`, `setgid`, `setuid`, in that order, then a check that the
//! real, effective and saved IDs all changed. glibc applies each call to every thread of
//! the process. Started as another user than root, weir cannot switch users: it says so
//! and goes on as it is (nginx does the same).

use std::ffi::{CStr, CString};
use std::io;

/// The account `user NAME [GROUP]` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The user's name, as configured.
    pub name: String,
    /// Its user ID.
    pub uid: libc::uid_t,
    /// The primary group: GROUP's ID if given, else the user's.
    pub gid: libc::gid_t,
    /// The supplementary groups.
    pub groups: Vec<libc::gid_t>,
}

/// Whether the process runs as root (effective user ID 0).
#[must_use]
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Looks up `user` (and `group`, if given) in the system's account databases.
pub fn resolve(user: &str, group: Option<&str>) -> Result<Account, String> {
    let c_user =
        CString::new(user).map_err(|_| format!("user {user:?}: a NUL byte in the name"))?;
    let (uid, user_gid) = getpwnam(&c_user)
        .map_err(|e| format!("user {user}: cannot look it up: {e}"))?
        .ok_or_else(|| format!("user {user}: no such user"))?;
    let gid = match group {
        None => user_gid,
        Some(g) => {
            let c_group =
                CString::new(g).map_err(|_| format!("group {g:?}: a NUL byte in the name"))?;
            getgrnam(&c_group)
                .map_err(|e| format!("group {g}: cannot look it up: {e}"))?
                .ok_or_else(|| format!("group {g}: no such group"))?
        }
    };
    let groups = grouplist(&c_user, gid);
    Ok(Account {
        name: user.to_string(),
        uid,
        gid,
        groups,
    })
}

/// Drops every privilege to `account`: supplementary groups, group, then user.
pub fn become_user(account: &Account) -> Result<(), String> {
    let fail =
        |what: &str, e: io::Error| format!("cannot become user {}: {what}: {e}", account.name);
    // SAFETY: the pointer and length describe `account.groups`, which setgroups only reads.
    if unsafe { libc::setgroups(account.groups.len(), account.groups.as_ptr()) } != 0 {
        return Err(fail("setgroups", io::Error::last_os_error()));
    }
    // SAFETY: setgid takes a plain ID and touches no memory.
    if unsafe { libc::setgid(account.gid) } != 0 {
        return Err(fail("setgid", io::Error::last_os_error()));
    }
    // SAFETY: setuid takes a plain ID and touches no memory.
    if unsafe { libc::setuid(account.uid) } != 0 {
        return Err(fail("setuid", io::Error::last_os_error()));
    }
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: the three pointers are to live, writable locals.
    let got_uids = unsafe { libc::getresuid(&mut r, &mut e, &mut s) } == 0;
    if !got_uids || [r, e, s] != [account.uid; 3] {
        return Err(format!(
            "cannot become user {}: the user IDs are still {r}/{e}/{s}",
            account.name
        ));
    }
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: as above.
    let got_gids = unsafe { libc::getresgid(&mut r, &mut e, &mut s) } == 0;
    if !got_gids || [r, e, s] != [account.gid; 3] {
        return Err(format!(
            "cannot become user {}: the group IDs are still {r}/{e}/{s}",
            account.name
        ));
    }
    Ok(())
}

/// A buffer size for the `get*_r` functions: what the system suggests, else 16 KiB.
fn initial_buffer(which: libc::c_int) -> usize {
    // SAFETY: sysconf takes a constant and touches no memory.
    let n = unsafe { libc::sysconf(which) };
    usize::try_from(n)
        .ok()
        .filter(|&n| n > 0)
        .unwrap_or(16 * 1024)
}

/// The largest buffer the lookups grow to (an entry larger than this is not sane).
const BUFFER_MAX: usize = 1 << 24;

/// The user's ID and primary group ID, `None` if there is no such user.
fn getpwnam(name: &CStr) -> io::Result<Option<(libc::uid_t, libc::gid_t)>> {
    let mut buf = vec![0u8; initial_buffer(libc::_SC_GETPW_R_SIZE_MAX)];
    loop {
        // SAFETY: an all-zero passwd (null pointers, zero IDs) is a valid value to overwrite.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: `name` is NUL-terminated; `pwd`, `buf` (with its true length) and `result`
        // are live and writable for the call; the strings written point into `buf`, which
        // we do not read.
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        match rc {
            0 if result.is_null() => return Ok(None),
            0 => return Ok(Some((pwd.pw_uid, pwd.pw_gid))),
            libc::ERANGE if buf.len() < BUFFER_MAX => buf.resize(buf.len() * 2, 0),
            // "Not found" as some NSS modules report it.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// The group's ID, `None` if there is no such group.
fn getgrnam(name: &CStr) -> io::Result<Option<libc::gid_t>> {
    let mut buf = vec![0u8; initial_buffer(libc::_SC_GETGR_R_SIZE_MAX)];
    loop {
        // SAFETY: an all-zero group (null pointers, zero ID) is a valid value to overwrite.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as for getpwnam_r above.
        let rc = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        match rc {
            0 if result.is_null() => return Ok(None),
            0 => return Ok(Some(grp.gr_gid)),
            libc::ERANGE if buf.len() < BUFFER_MAX => buf.resize(buf.len() * 2, 0),
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// The user's supplementary groups with `gid` among them (what `initgroups` would set);
/// just `gid` if the list cannot be had.
fn grouplist(name: &CStr, gid: libc::gid_t) -> Vec<libc::gid_t> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    for _ in 0..8 {
        let mut n = libc::c_int::try_from(groups.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `name` is NUL-terminated; `groups` holds `n` writable entries and `n` is
        // a live local; getgrouplist writes at most `n` entries and the count into `n`.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        let n = usize::try_from(n).unwrap_or(0);
        if rc >= 0 {
            groups.truncate(n);
            if !groups.contains(&gid) {
                groups.insert(0, gid);
            }
            return groups;
        }
        // Too small: `n` is the size needed (grow at least twofold in case it is not).
        groups.resize(n.max(groups.len() * 2), 0);
    }
    vec![gid]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_and_strangers_do_not() {
        let root = resolve("root", None).expect("every Unix has root");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        let err = resolve("no-such-user-weir", None).expect_err("unknown");
        assert_eq!(err, "user no-such-user-weir: no such user");
        let err = resolve("root", Some("no-such-group-weir")).expect_err("unknown");
        assert_eq!(err, "group no-such-group-weir: no such group");
        let err = resolve("ro\0ot", None).expect_err("NUL");
        assert!(err.contains("NUL"), "{err}");
    }
}
