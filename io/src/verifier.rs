//! The verifier pool: a few threads, shared by every worker, that carry out
//! `Effect::VerifyPassword`, so that a slow password hash (a cost-12 bcrypt takes about
//! 250 ms) never runs on an event loop.
//!
//! ```text
//!   worker ── Job { token, hash, password, reply } ──► bounded queue ──► verifier thread:
//!     ▲                                                                 rules::auth::verify
//!     └──── reply.tell(Completed { token, Verified(ok) }) ◄─ inbox + waker ─┘
//! ```
//!
//! The check itself is the core's pure `rules::auth::verify`; the pool only calls it. The
//! answer goes back the way the control loop talks to a worker (`worker::Inbox`: its
//! queue, then its waker), so it arrives as an ordinary input on the worker's next turn.
//!
//! Bounds: the core keeps at most `VERIFY_IN_FLIGHT_MAX` checks outstanding per worker (and
//! at most `VERIFY_PER_PEER` per client address, which is what keeps one client from
//! holding every verifier), so a queue of `workers × VERIFY_IN_FLIGHT_MAX` never refuses a
//! job; if it ever did, the job is answered `Failed` (503) rather than block the loop. The
//! threads run at a lower priority (nice [`NICE`]): when the machine is busy, serving comes
//! before hashing passwords.
//!
//! Shutting down: the threads end when every worker has dropped its handle to the queue;
//! `Pool::finish` (`pool::Threads::finish`, shared with the file threads) first tells them
//! to skip what is still queued (checks for workers that have exited), so at most the
//! checks already running are waited for, and those for at most `pool::FINISH_WAIT`.

use std::io;
use std::thread;

use weir_core::server::{Completion, Input, IoError, Password, VERIFY_IN_FLIGHT_MAX};
use weir_core::Token;

use crate::log::log_error;
use crate::pool;
use crate::queue::{self, Sender};
use crate::worker::Inbox;

/// The nice value of the verifier threads (the workers run at the process's own, usually 0).
pub const NICE: i32 = 10;

/// One check, and where its answer goes.
pub struct Job {
    token: Token,
    hash: String,
    password: Password,
    reply: Inbox,
}

/// A worker's handle to the pool.
#[derive(Clone, Debug)]
pub struct Verifiers {
    queue: Sender<Job>,
}

impl Verifiers {
    /// Queues a check whose answer goes to `reply`. If the queue cannot take it (it is
    /// sized so that it always can), the answer is `Failed` at once.
    pub fn submit(&self, token: Token, hash: String, password: Password, reply: &Inbox) {
        let job = Job {
            token,
            hash,
            password,
            reply: reply.clone(),
        };
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(queue::SendError::Full(job) | queue::SendError::Closed(job)) => {
                log_error!("internal error: the password verifiers cannot take a check");
                job.reply.tell(Input::Completed {
                    token,
                    result: Completion::Failed(IoError::Exhausted),
                });
            }
        }
    }
}

/// The verifier threads, for `serve` to wind down at exit.
pub type Pool = pool::Threads<Job>;

/// How many verifier threads: half the cores the process may use (password hashing may
/// take at most that), at least 2 and at most 8.
pub fn default_threads() -> usize {
    let cores = thread::available_parallelism().map_or(1, usize::from);
    (cores / 2).clamp(2, 8)
}

/// Starts `threads` verifier threads fed by a queue sized for `workers` workers.
pub fn start(threads: usize, workers: usize) -> io::Result<(Verifiers, Pool)> {
    let spec = pool::Spec {
        name: "verifier",
        threads: threads.max(1),
        capacity: workers.max(1) * VERIFY_IN_FLIGHT_MAX,
        stack: None,
    };
    let (queue, threads) = pool::start(spec, || {
        lower_priority();
        |job: Job| {
            let ok = weir_core::rules::auth::verify(&job.hash, &job.password.0);
            job.reply.tell(Input::Completed {
                token: job.token,
                result: Completion::Verified(ok),
            });
        }
    })?;
    Ok((Verifiers { queue }, threads))
}

/// Renices the calling thread to [`NICE`] (on Linux the nice value is per thread).
fn lower_priority() {
    // SAFETY: gettid and setpriority take and return plain integers and touch no memory.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE)
    };
    if rc != 0 {
        log_error!(
            "cannot lower a password verifier's priority: {}",
            io::Error::last_os_error()
        );
    }
}
