//! A pool of threads that take jobs from one bounded queue: the shape the password
//! verifiers (`verifier`) and the file threads (`filepool`) share.
//!
//! ```text
//!   workers ── Sender<J> (one handle each) ──► bounded queue ──► n threads: job(J)
//! ```
//!
//! Each thread sets itself up once (`setup`, run on the thread, so that what it changes —
//! a priority, a buffer — is the thread's own) and then carries out jobs until every
//! sender has gone and the queue is empty. [`Threads::finish`] first raises `closing`, so
//! that what is still queued is skipped rather than done for workers that have exited,
//! then waits a bounded time: a thread stuck in a call that does not return (a dead
//! network disk) is left to the process's exit rather than hold it up.
//!
//! Starting is all or nothing: if a thread cannot be spawned, the sender is dropped (so
//! the threads already started see the end of the queue) and they are joined before the
//! error is returned.

use std::io;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::log::log_error;
use crate::queue::{self, Receiver, Sender};
use crate::sync::{Arc, AtomicBool, Ordering};

/// How long [`Threads::finish`] waits for the threads to end.
pub const FINISH_WAIT: Duration = Duration::from_secs(2);

/// How a pool's threads are started.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// The threads are named `weir-{name}-{i}`.
    pub name: &'static str,
    /// How many threads (0 only in tests: the queue then fills and nobody takes a job).
    pub threads: usize,
    /// How many jobs the queue holds before it refuses one.
    pub capacity: usize,
    /// The threads' stack size, when the default (2 MiB) is more than they need.
    pub stack: Option<usize>,
}

/// A pool's threads, for `serve` to wind down at exit.
#[derive(Debug)]
pub struct Threads<J> {
    name: &'static str,
    threads: Vec<JoinHandle<()>>,
    closing: Arc<AtomicBool>,
    /// The queue's receiving end, held here too so that the queue outlives its threads
    /// (and exists in a test's pool without any): a job queued then is never taken,
    /// rather than refused as if the pool were gone.
    _jobs: Receiver<J>,
}

/// Starts the threads of `spec`. Each runs `setup()` once, then gives every job to the
/// function `setup` returned.
pub fn start<J, S, W>(spec: Spec, setup: S) -> io::Result<(Sender<J>, Threads<J>)>
where
    J: Send + 'static,
    S: Fn() -> W + Clone + Send + 'static,
    W: FnMut(J),
{
    let (queue, jobs) = queue::bounded(spec.capacity);
    let closing = Arc::new(AtomicBool::new(false));
    let mut pool = Threads {
        name: spec.name,
        threads: Vec::with_capacity(spec.threads),
        closing: Arc::clone(&closing),
        _jobs: jobs.clone(),
    };
    for i in 0..spec.threads {
        let jobs = jobs.clone();
        let closing = Arc::clone(&closing);
        let setup = setup.clone();
        let mut builder = thread::Builder::new().name(format!("weir-{}-{i}", spec.name));
        if let Some(stack) = spec.stack {
            builder = builder.stack_size(stack);
        }
        match builder.spawn(move || run(&jobs, &closing, setup())) {
            Ok(t) => pool.threads.push(t),
            Err(e) => {
                // The threads already started end when `queue` is dropped.
                drop(queue);
                pool.finish();
                return Err(e);
            }
        }
    }
    Ok((queue, pool))
}

fn run<J>(jobs: &Receiver<J>, closing: &AtomicBool, job: impl FnMut(J)) {
    take_jobs(jobs, || closing.load(Ordering::Acquire), job);
}

/// Every thread takes from the one queue; it ends once every worker has dropped its
/// handle and the queue is empty. A job taken while `skip` says so is dropped undone.
fn take_jobs<J>(jobs: &Receiver<J>, skip: impl Fn() -> bool, mut job: impl FnMut(J)) {
    while let Ok(next) = jobs.recv() {
        if skip() {
            continue;
        }
        job(next);
    }
}

impl<J> Threads<J> {
    /// Tells the threads to skip what is still queued and waits up to [`FINISH_WAIT`] for
    /// them to end. Call it once every worker has exited (their handles keep the threads
    /// waiting for work).
    pub fn finish(self) {
        self.closing.store(true, Ordering::Release);
        let deadline = Instant::now() + FINISH_WAIT;
        let mut left = self.threads;
        while !left.is_empty() && Instant::now() < deadline {
            let (done, running): (Vec<_>, Vec<_>) =
                left.into_iter().partition(JoinHandle::is_finished);
            for t in done {
                let _ = t.join();
            }
            left = running;
            if !left.is_empty() {
                thread::sleep(Duration::from_millis(5));
            }
        }
        if !left.is_empty() {
            log_error!(
                "{} {} threads are still busy; exiting without them",
                left.len(),
                self.name
            );
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn every_job_is_done_once_by_a_thread_that_was_set_up() {
        let (done, results) = mpsc::channel();
        let spec = Spec {
            name: "test",
            threads: 3,
            capacity: 16,
            stack: Some(64 * 1024),
        };
        let (queue, threads) = start(spec, move || {
            let done = done.clone();
            let name = thread::current().name().map(str::to_owned);
            move |n: u32| done.send((n, name.clone())).expect("the test listens")
        })
        .expect("threads start");
        for n in 0..10 {
            queue.send(n).expect("the threads take jobs");
        }
        drop(queue);
        let mut seen: Vec<_> = (0..10)
            .map(|_| results.recv().expect("every job answered"))
            .collect();
        seen.sort();
        assert_eq!(
            seen.iter().map(|s| s.0).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
        assert!(seen
            .iter()
            .all(|s| s.1.as_deref().is_some_and(|n| n.starts_with("weir-test-"))));
        threads.finish();
    }

    #[test]
    fn a_finished_pool_skips_what_is_still_queued() {
        let (done, results) = mpsc::channel();
        let (gate, opened) = mpsc::channel::<()>();
        let opened = Arc::new(std::sync::Mutex::new(opened));
        let (took, taken) = mpsc::channel::<()>();
        let spec = Spec {
            name: "test",
            threads: 1,
            capacity: 4,
            stack: None,
        };
        let (queue, threads) = start(spec, move || {
            let done = done.clone();
            let opened = Arc::clone(&opened);
            let took = took.clone();
            move |n: u32| {
                if n == 0 {
                    // The first job holds the only thread until the test opens the gate.
                    let _ = took.send(());
                    let _ = opened.lock().expect("one thread").recv();
                }
                let _ = done.send(n);
            }
        })
        .expect("threads start");
        queue.send(0).expect("queued");
        queue.send(1).expect("queued");
        drop(queue);
        // The thread holds the first job before `closing` is raised (else it would skip
        // both, end, and take the gate with it).
        taken.recv().expect("the first job is taken");
        let closing = Arc::clone(&threads.closing);
        let finishing = thread::spawn(move || threads.finish());
        // Once finish has raised `closing`, the thread is let go of its first job.
        while !closing.load(Ordering::Acquire) {
            thread::yield_now();
        }
        gate.send(()).expect("the job waits");
        finishing.join().expect("finish returns");
        assert_eq!(results.try_iter().collect::<Vec<_>>(), vec![0]);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::Mutex;

    /// A pool's thread takes jobs while `finish` raises `closing` between two sends:
    /// `always` the job queued after the flag is raised is skipped, never carried out for
    /// a worker that has gone, and the thread ends once the sender is gone (loom reports a
    /// thread left waiting as a deadlock). `take` is the thread's loop.
    fn a_job_queued_after_closing(take: fn(&Receiver<u32>, &AtomicBool, &Mutex<Vec<u32>>)) {
        loom::model(move || {
            let (tx, rx) = queue::bounded::<u32>(2);
            let closing = Arc::new(AtomicBool::new(false));
            let done = Arc::new(Mutex::new(Vec::new()));
            let thread = {
                let (closing, done) = (Arc::clone(&closing), Arc::clone(&done));
                loom::thread::spawn(move || take(&rx, &closing, &done))
            };
            tx.send(1).expect("queued");
            closing.store(true, Ordering::Release);
            tx.send(2).expect("queued");
            drop(tx);
            thread.join().expect("the thread ends");
            let done = done.lock().expect("one holder").clone();
            assert!(
                !done.contains(&2),
                "a job queued after closing was done: {done:?}"
            );
        });
    }

    #[test]
    fn loom_a_job_queued_after_closing_is_skipped() {
        a_job_queued_after_closing(|rx, closing, done| {
            run(rx, closing, |n| done.lock().expect("one holder").push(n));
        });
    }

    /// Broken: the same loop without the flag carries the late job out; caught.
    #[test]
    fn loom_a_loop_that_ignores_closing_is_caught() {
        let caught = std::panic::catch_unwind(|| {
            a_job_queued_after_closing(|rx, _, done| {
                take_jobs(rx, || false, |n| done.lock().expect("one holder").push(n));
            });
        });
        assert!(caught.is_err(), "loom must find the late job carried out");
    }
}
