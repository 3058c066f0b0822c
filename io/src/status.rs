//! The whole server's status, gathered for `status` rules (`Effect::Status`).
//!
//! Each worker owns its core `Server` and its counters; the control loop owns the
//! services' supervisors. Neither can be read from another thread, so each publishes a
//! copy here: a worker after every loop turn in which its figures changed (a lock held for
//! the time of one small copy, by one writer, so nobody waits), the control loop whenever
//! it has handled its inputs. A `status` request is answered from the copies, the asking
//! worker's own made fresh first: the page is exact for the worker that answers and at
//! most one loop turn behind for the others.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

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
