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
//! `Pool::finish` first tells them to skip what is still queued (checks for workers that
//! have exited), so at most the checks already running are waited for.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use weir_core::server::{Completion, Input, IoError, Password, VERIFY_IN_FLIGHT_MAX};
use weir_core::Token;

use crate::log::log_error;
use crate::queue::{self, Receiver, Sender};
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

/// The threads, for `serve` to wind down at exit.
#[derive(Debug)]
pub struct Pool {
    threads: Vec<JoinHandle<()>>,
    closing: Arc<AtomicBool>,
}

impl Pool {
    /// Waits for the threads to end, skipping the checks still queued. Call it once every
    /// worker has exited (their handles keep the threads waiting for work).
    pub fn finish(self) {
        self.closing.store(true, Ordering::Release);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// How many verifier threads: half the cores the process may use (password hashing may
/// take at most that), at least 2 and at most 8.
pub fn default_threads() -> usize {
    let cores = thread::available_parallelism().map_or(1, usize::from);
    (cores / 2).clamp(2, 8)
}

/// Starts `threads` verifier threads fed by a queue sized for `workers` workers.
pub fn start(threads: usize, workers: usize) -> io::Result<(Verifiers, Pool)> {
    let (queue, jobs) = queue::bounded(workers.max(1) * VERIFY_IN_FLIGHT_MAX);
    let closing = Arc::new(AtomicBool::new(false));
    let mut pool = Pool {
        threads: Vec::with_capacity(threads),
        closing: Arc::clone(&closing),
    };
    for i in 0..threads.max(1) {
        let jobs = jobs.clone();
        let closing = Arc::clone(&closing);
        let spawned = thread::Builder::new()
            .name(format!("weir-verifier-{i}"))
            .spawn(move || run(&jobs, &closing));
        match spawned {
            Ok(t) => pool.threads.push(t),
            Err(e) => {
                // The threads already started end when `queue` is dropped.
                drop(queue);
                pool.finish();
                return Err(e);
            }
        }
    }
    Ok((Verifiers { queue }, pool))
}

fn run(jobs: &Receiver<Job>, closing: &AtomicBool) {
    lower_priority();
    // Every verifier takes from the one queue; it ends once every worker has dropped its
    // handle and the queue is empty.
    while let Ok(job) = jobs.recv() {
        if closing.load(Ordering::Acquire) {
            continue;
        }
        let ok = weir_core::rules::auth::verify(&job.hash, &job.password.0);
        job.reply.tell(Input::Completed {
            token: job.token,
            result: Completion::Verified(ok),
        });
    }
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
