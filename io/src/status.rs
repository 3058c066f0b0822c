//! The whole server's status, gathered for `status` rules (`Effect::Status`).
//!
//! Each worker owns its core `Server` and its counters; the control loop owns the
//! services' supervisors. Neither can be read from another thread, so each publishes a
//! copy here: a worker after every round of its loop in which its figures changed (a lock
//! held for the time of one small copy, by one writer, so nobody waits), the control loop
//! whenever it has handled its inputs. A worker sends what a round answered only in the
//! next round, after that publication, so any response a client has received is already
//! counted here; a `status` request is answered from the copies, the asking worker's own
//! made fresh first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};

use crate::sync::Mutex;

use weir_core::server::{ServerStatus, ServiceStatus, WorkerStatus};
use weir_core::UnixTime;

/// Copies of every worker's figures and of the services' states.
#[derive(Debug)]
pub struct StatusBoard {
    started: UnixTime,
    workers: Vec<Mutex<WorkerStatus>>,
    services: Mutex<Vec<ServiceStatus>>,
    /// Access-log lines lost, counted by the access logger (whichever one runs).
    access_log_lost: Arc<AtomicU64>,
}

impl StatusBoard {
    /// A board for `workers` workers, the server having started at `started`.
    #[must_use]
    pub fn new(workers: usize, started: UnixTime) -> StatusBoard {
        StatusBoard {
            started,
            workers: (0..workers)
                .map(|_| Mutex::new(WorkerStatus::default()))
                .collect(),
            services: Mutex::new(Vec::new()),
            access_log_lost: Arc::default(),
        }
    }

    /// The count of access-log lines lost, for the access logger to add to.
    #[must_use]
    pub fn access_log_lost(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.access_log_lost)
    }

    /// Worker `index` publishes its figures.
    pub fn publish_worker(&self, index: usize, status: WorkerStatus) {
        if let Some(slot) = self.workers.get(index) {
            // A panic while holding this lock cannot leave a half-written copy (the
            // assignment is the whole critical section): the data is fine to use.
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = status;
        }
    }

    /// The control loop publishes the services' states.
    pub fn publish_services(&self, services: Vec<ServiceStatus>) {
        *self.services.lock().unwrap_or_else(PoisonError::into_inner) = services;
    }

    /// Everything, as last published.
    #[must_use]
    pub fn snapshot(&self) -> ServerStatus {
        ServerStatus {
            started: self.started,
            access_log_lost: self.access_log_lost.load(Ordering::Relaxed),
            workers: self
                .workers
                .iter()
                .map(|w| w.lock().unwrap_or_else(PoisonError::into_inner).clone())
                .collect(),
            services: self
                .services
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_holds_what_each_published() {
        let board = StatusBoard::new(2, UnixTime(100));
        let mut a = WorkerStatus::default();
        a.counters.requests = 3;
        a.open = 1;
        board.publish_worker(0, a.clone());
        board.publish_worker(7, a.clone());
        board.publish_services(vec![ServiceStatus {
            name: "php".into(),
            state: "up".into(),
            processes: vec![("up".into(), Some(42))],
            restarts: 0,
        }]);
        let s = board.snapshot();
        assert_eq!(s.started, UnixTime(100));
        assert_eq!(s.workers, vec![a, WorkerStatus::default()]);
        assert_eq!(s.services.len(), 1);
    }
}

/// loom: `RUSTFLAGS="--cfg loom" cargo test --release -p weir loom_`.
#[cfg(all(test, loom))]
mod loom_tests {
    use std::sync::Arc;

    use super::*;

    /// A copy where two fields are written under two locks: the broken variant.
    struct TornBoard {
        requests: Mutex<u64>,
        open: Mutex<u64>,
    }

    /// The property: a snapshot taken while a worker publishes shows the old copy or the
    /// new one whole, never a mix of two publications (here: requests and open connections
    /// written together always read as equal).
    #[test]
    fn loom_a_snapshot_never_mixes_two_publications() {
        loom::model(|| {
            let board = Arc::new(StatusBoard::new(1, UnixTime(0)));
            let publisher = Arc::clone(&board);
            let t = loom::thread::spawn(move || {
                let mut w = WorkerStatus::default();
                w.counters.requests = 1;
                w.open = 1;
                publisher.publish_worker(0, w);
            });
            let s = board.snapshot();
            assert_eq!(s.workers[0].counters.requests, s.workers[0].open as u64);
            t.join().expect("publisher");
        });
    }

    /// The broken variant: two locks let a reader see half a publication, and loom finds
    /// the interleaving.
    #[test]
    fn loom_a_board_with_two_locks_is_caught_tearing() {
        let caught = std::panic::catch_unwind(|| {
            loom::model(|| {
                let board = Arc::new(TornBoard {
                    requests: Mutex::new(0),
                    open: Mutex::new(0),
                });
                let publisher = Arc::clone(&board);
                let t = loom::thread::spawn(move || {
                    *publisher.requests.lock().expect("lock") = 1;
                    *publisher.open.lock().expect("lock") = 1;
                });
                let requests = *board.requests.lock().expect("lock");
                let open = *board.open.lock().expect("lock");
                assert_eq!(requests, open, "a torn snapshot");
                t.join().expect("publisher");
            });
        });
        assert!(caught.is_err(), "loom must find the torn read");
    }
}
