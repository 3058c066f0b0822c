//! The service processes the launcher has started, by weir's id: signalling them, noticing
//! their exits, reaping them, and stopping them all at the end.
//!
//! # Noticing exits
//!
//! Each child gets a pidfd, which becomes readable when it exits; the launcher's `poll`
//! watches them. No SIGCHLD handler and no signalfd: a signalfd sees SIGCHLD only where
//! every thread blocks it, which a test process running `serve` on a thread cannot promise,
//! and a handler is process-wide state. A pidfd is the child's alone. Where `pidfd_open`
//! fails (kernels before 5.3) the child is looked at every `EXIT_POLL` instead.
//!
//! Whenever the loop wakes, every child is looked at (`waitid` with `WNOHANG`): there are
//! a few dozen at most, and wake-ups are rare, so there is no need to know which one woke
//! it.
//!
//! # Why signals never reach a stranger
//!
//! A child's exit is seen with `WNOWAIT`, which leaves it a zombie: its PID — which is also
//! its process group's ID — stays reserved. While it is reserved, what is left of its
//! group (whatever it started and did not wait for) is sent SIGKILL: a service process is
//! its whole group, and nothing of it may outlive the `Exited` weir is told about (it
//! would hold the service's socket and compete for its connections). Only then is the
//! zombie reaped, the entry forgotten and `Exited` reported. Requests for an id that is
//! no longer in the table (`Kill` racing an exit) do nothing: no signal is ever sent to a
//! PID after it was reaped. Only known PIDs are waited for, never -1.
//!
//! # Stop, and the end
//!
//! `Stop` sends SIGTERM to the group and sets a deadline `STOP_GRACE` later; a child still
//! there then gets SIGKILL. When the launcher exits, every child is stopped that way at
//! once: SIGTERM to all, reaping while the grace lasts, SIGKILL to the rest, reaping for at
//! most `KILL_REAP` more.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::child::{peek_exit, pidfd_open};
use crate::log::log_error;

/// How long a stopped process has between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(2);
/// How often children without a pidfd are looked at.
pub const EXIT_POLL: Duration = Duration::from_millis(50);
/// How long, after SIGKILL at the end, the launcher waits for its children to be gone.
pub const KILL_REAP: Duration = Duration::from_secs(1);

/// How a process ended (the same as a CGI script's: both come from `child::peek_exit`).
pub use weir_core::server::ExitStatus as Status;

#[derive(Debug)]
struct Child {
    pid: libc::pid_t,
    /// `None` where the kernel could not make one: polled.
    pidfd: Option<OwnedFd>,
    /// Set by `Stop`: when SIGKILL follows.
    kill_at: Option<Instant>,
}

impl Child {
    /// `sig` to the child's group and to the child itself (in case it left the group).
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill with integers touches no memory. The PID is not reaped yet (the
        // entry is removed when it is), so it is still our child's, and so is the group.
        // ESRCH (the group is empty) leaves nothing to do.
        unsafe {
            libc::kill(-self.pid, sig);
            libc::kill(self.pid, sig);
        }
    }
}

/// The live children, by weir's id.
#[derive(Debug, Default)]
pub struct Children {
    by_id: BTreeMap<u64, Child>,
}

impl Children {
    /// No children.
    #[must_use]
    pub fn new() -> Children {
        Children::default()
    }

    /// Whether `id` names a live child.
    #[must_use]
    pub fn contains(&self, id: u64) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Adds a child that has just executed its program.
    pub fn insert(&mut self, id: u64, pid: libc::pid_t) {
        let pidfd = pidfd_open(pid);
        self.by_id.insert(
            id,
            Child {
                pid,
                pidfd,
                kill_at: None,
            },
        );
    }

    /// The descriptors to watch for exits.
    pub fn pidfds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.by_id
            .values()
            .filter_map(|c| c.pidfd.as_ref().map(AsRawFd::as_raw_fd))
    }

    /// `Kill`: SIGKILL to the group. An unknown id (it exited already) is ignored.
    pub fn kill(&mut self, id: u64) {
        if let Some(c) = self.by_id.get(&id) {
            c.signal(libc::SIGKILL);
        }
    }

    /// `Stop`: SIGTERM to the group, SIGKILL at `now + STOP_GRACE`.
    pub fn stop(&mut self, id: u64, now: Instant) {
        if let Some(c) = self.by_id.get_mut(&id) {
            c.signal(libc::SIGTERM);
            c.kill_at.get_or_insert(now + STOP_GRACE);
        }
    }

    /// How long the loop may sleep before `tick` has something to do; `None` = until a
    /// descriptor is ready.
    #[must_use]
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        let deadline = self
            .by_id
            .values()
            .filter_map(|c| c.kill_at)
            .min()
            .map(|t| t.saturating_duration_since(now));
        let polled = self
            .by_id
            .values()
            .any(|c| c.pidfd.is_none())
            .then_some(EXIT_POLL);
        match (deadline, polled) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends SIGKILL where a `Stop`'s grace has run out, and reaps every child that has
    /// exited; their ids and statuses go to `exited`.
    pub fn tick(&mut self, now: Instant, exited: &mut Vec<(u64, Status)>) {
        for c in self.by_id.values_mut() {
            if c.kill_at.is_some_and(|t| t <= now) {
                c.signal(libc::SIGKILL);
                c.kill_at = None;
            }
        }
        self.reap(exited);
    }

    fn reap(&mut self, exited: &mut Vec<(u64, Status)>) {
        self.by_id.retain(|&id, c| {
            let status = match peek_exit(c.pid) {
                Ok(None) => return true,
                Ok(Some(s)) => s,
                Err(e) => {
                    // Only if something else reaped our child: nothing left to wait for.
                    log_error!(
                        "launcher: internal error: waiting for process {}: {e}",
                        c.pid
                    );
                    Status::Code(-1)
                }
            };
            // The zombie still holds the group's ID: the rest of the group goes now.
            // SAFETY: kill with integers; the group ID is reserved by our unreaped child.
            unsafe {
                libc::kill(-c.pid, libc::SIGKILL);
            }
            reap(c.pid);
            exited.push((id, status));
            false
        });
    }

    /// Stops every child (the launcher is exiting): SIGTERM, then SIGKILL to whatever is
    /// left after `grace`. Returns how many could not be reaped.
    pub fn stop_all(&mut self, grace: Duration) -> usize {
        let mut exited = Vec::new();
        for c in self.by_id.values() {
            c.signal(libc::SIGTERM);
        }
        self.wait_all(Instant::now() + grace, &mut exited);
        for c in self.by_id.values() {
            c.signal(libc::SIGKILL);
        }
        self.wait_all(Instant::now() + KILL_REAP, &mut exited);
        for c in self.by_id.values() {
            log_error!("launcher: process {} is still there after SIGKILL", c.pid);
        }
        self.by_id.len()
    }

    /// Reaps children as they exit until none is left or `deadline` passes.
    fn wait_all(&mut self, deadline: Instant, exited: &mut Vec<(u64, Status)>) {
        loop {
            self.reap(exited);
            let now = Instant::now();
            if self.by_id.is_empty() || now >= deadline {
                return;
            }
            let left = deadline - now;
            let mut fds: Vec<libc::pollfd> = self
                .pidfds()
                .map(|fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            let wait = if fds.len() == self.by_id.len() {
                left
            } else {
                left.min(EXIT_POLL)
            };
            let ms = libc::c_int::try_from(wait.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
            // SAFETY: `fds` is a live array of `fds.len()` pollfd structs. A failure
            // (EINTR) just means another look.
            unsafe {
                libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms);
            }
        }
    }
}

/// Reaps a child whose exit was seen (a zombie: this does not wait).
fn reap(pid: libc::pid_t) {
    loop {
        // SAFETY: waitpid on our own child, no status wanted.
        let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        if r >= 0 {
            return;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            if e.raw_os_error() != Some(libc::ECHILD) {
                log_error!("launcher: internal error: reaping process {pid}: {e}");
            }
            return;
        }
    }
}

impl Drop for Children {
    /// A launcher that unwinds still takes its children with it.
    fn drop(&mut self) {
        if !self.by_id.is_empty() {
            self.stop_all(Duration::ZERO);
        }
    }
}
