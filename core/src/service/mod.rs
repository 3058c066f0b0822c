//! Services: long-running processes weir starts, watches and relaunches (OKWS's okld).
//!
//! # Theory of operation
//!
//! A service is a command weir runs as `processes=N` instances, all sharing one listening
//! socket that weir created and holds (DESIGN.md §7). Three parties take part:
//!
//! ```text
//!   launcher process ──spawned / spawn failed / exited──► control loop ──► Supervisor
//!        ▲                                                  │   ▲            │
//!        └──────────────── Spawn / Kill ◄───────────────────┘   └─ served ───┤ (counter grew)
//!                                                                            │
//!   worker threads ◄──────────── Publish(Availability) ◄─────────────────────┘
//! ```
//!
//! The policy — when to relaunch, when to back off, when to give up — is the pure machine
//! in `supervisor`, one `Supervisor` per service. The control loop (in the weir binary)
//! feeds it the launcher's reports and the clock, carries out its effects, and hands each
//! `Availability` to the workers, which answer requests for a service that is down with
//! `503` and `Retry-After` at once instead of connecting.
//!
//! # The calling contract
//!
//! As for the server core: after `Supervisor::new` and after every `handle_*`, `restart`,
//! `stop` or `handle_timeout`, drain `poll_effect()` to `None` and carry out every effect in
//! order; then wait for a report or until `poll_timeout()`. Time only moves forward.

pub mod supervisor;

use core::time::Duration;

pub use supervisor::{
    Instance, InstanceId, InstanceState, Policy, ServiceState, Supervisor, SupervisorEffect,
};

/// What workers should do with a request for a service: the state the supervisor publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Availability {
    /// Connect: an instance is up, or starting while there is no reason to doubt it will
    /// come up (the first start, or a relaunch after a proven run). A connection made while
    /// the service starts waits in the kernel backlog of the socket weir holds for it.
    Ready,
    /// Answer `503` with this `Retry-After` without connecting: every instance has failed to
    /// start lately (it is backing off or starting again after a failed start) or the
    /// service is given up. Whole seconds, at least one.
    Down {
        /// How long until the supervisor next tries to start the service, as of the moment
        /// this was published.
        retry_after: Duration,
    },
    /// The service is stopped (removed by a reload, or weir is stopping) and will not come
    /// back: answer `503` without `Retry-After`.
    Stopped,
}

#[cfg(test)]
mod tests;
