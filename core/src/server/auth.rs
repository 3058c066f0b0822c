//! Password checks, off the event loop.
//!
//! A `protect … users=` rule needs the request's password checked against a stored hash,
//! and a good hash is slow on purpose: a cost-12 bcrypt takes about 250 ms of CPU. Run on a
//! worker's event loop, ten wrong guesses stall every connection of that worker for 2.5 s.
//! So routing (`rules::route_quiet`) only *finds* the checks a request needs, and the
//! server makes them like any other slow operation:
//!
//! ```text
//!  route_quiet ─► checks? ─► none: go on with the outcome (dispatch)
//!                   │
//!                   ▼ for each check, in order
//!   remembered (a recent success with the same fingerprint)? ──► next check
//!   the same check already in flight? ──► wait for its answer (no second hash)
//!   its peer has < VERIFY_PER_PEER in flight, the worker < VERIFY_IN_FLIGHT_MAX?
//!        ├─ yes: Effect::VerifyPassword { token, hash, password }, park on the token
//!        ├─ no, its peer has < VERIFY_QUEUE_PER_PEER waiting: wait in the queue
//!        └─ no: 429 Too Many Requests (Retry-After: 1)
//!   Completed { token, Verified(ok) } ──► ok and the user exists: remember, next check
//!                                    └─► otherwise: 401 with the rule's realm
//!   every check passed ──► the user is authenticated (REMOTE_USER, the access log);
//!                          go on with the outcome
//! ```
//!
//! **Unknown users.** A user the file does not name is checked against a stand-in, the
//! file's first hash (same scheme, same cost), and refused whatever the hash says
//! (`rules::auth::PasswordCheck`): a wrong user name takes as long as a wrong password,
//! so timing does not tell which users exist.
//!
//! **Remembered successes.** A successful check is remembered for [`VERIFIED_TTL`] by its
//! fingerprint: a SHA-256 of the users file, the user, the stored hash and the password
//! (`PasswordCheck::fingerprint`; the password itself is never kept). A browser sends the
//! same credentials with every request, so it pays for one hash, not one per request. A
//! changed password changes the stored hash, so a reload that brings it forgets the old
//! password at once; a removed user is no longer looked up in the cache at all. The table
//! holds at most [`VERIFIED_MAX`] entries; the oldest goes first (FIFO), and since every
//! entry lives equally long that is also the order they expire in. Each worker has its own
//! (a new connection that lands on another worker pays once more). Failures are not
//! remembered (no negative cache): a wrong guess costs a hash every time, but only its
//! own peer's share of the verifiers, below.
//!
//! **Failed attempts cost the attacker.** At most [`VERIFY_PER_PEER`] checks per client
//! address are in flight at once (per worker), and at most [`VERIFY_IN_FLIGHT_MAX`] in
//! all. A request beyond its address's share waits in a queue (at most
//! [`VERIFY_QUEUE_PER_PEER`] per address; beyond, 429), served first come first served
//! among the addresses that have room. Ten guesses from one client thus hold two places in
//! the shell's verifier pool, and anyone else's check is queued behind those two, not
//! behind all ten. Two requests with the same credentials share one check (a browser
//! opening six connections at once pays once). A check stays counted until its answer
//! comes, even when its client has gone: the verifier is still busy with it, so a client
//! that hangs up and asks again cannot pile up work.

use core::net::IpAddr;
use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::{Completion, ConnId, Effect, Server};
use crate::http1::RequestHead;
use crate::ids::Token;
use crate::path::Target;
use crate::rules::auth::{Fingerprint, PasswordCheck};
use crate::rules::Outcome;
use crate::time::{Now, Time};

/// The most `VerifyPassword` effects one server (one worker) has outstanding. The shell
/// sizes its verifier queue by it, so a check the core asks for is never refused.
pub const VERIFY_IN_FLIGHT_MAX: usize = 32;
/// The most checks in flight for one client address.
pub const VERIFY_PER_PEER: usize = 2;
/// The most requests from one client address waiting for a place; beyond, 429.
pub const VERIFY_QUEUE_PER_PEER: usize = 16;
/// The most successful checks remembered.
pub const VERIFIED_MAX: usize = 1024;
/// How long a successful check is remembered (from the check, not from its last use).
pub const VERIFIED_TTL: Duration = Duration::from_secs(5 * 60);

/// The server's password checks: those in flight, the requests waiting for a place, and
/// the successes remembered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct Verifier {
    verified: Verified,
    /// `VerifyPassword`s in flight, by token.
    jobs: BTreeMap<Token, Job>,
    /// The job making each check, by fingerprint (for requests that want the same).
    by_print: BTreeMap<Fingerprint, Token>,
    /// Per client address: checks in flight and requests waiting.
    peers: BTreeMap<IpAddr, Load>,
    /// Requests waiting for a place, oldest first.
    queue: VecDeque<(ConnId, IpAddr)>,
}

/// One `VerifyPassword` in flight.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Job {
    print: Fingerprint,
    /// The address it is counted against.
    peer: IpAddr,
    /// The requests waiting for its answer (those whose connection went are removed).
    waiters: Vec<ConnId>,
}

/// One client address's share.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Load {
    in_flight: usize,
    waiting: usize,
}

/// Successful checks by fingerprint, each with the time it is forgotten, and the same in
/// the order they were made (which, with one TTL for all, is the order they expire).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Verified {
    until: BTreeMap<Fingerprint, Time>,
    order: VecDeque<(Time, Fingerprint)>,
}

impl Verified {
    fn expire(&mut self, now: Time) {
        while let Some(&(until, print)) = self.order.front() {
            if until > now {
                break;
            }
            self.order.pop_front();
            self.until.remove(&print);
        }
    }

    fn fresh(&mut self, print: &Fingerprint, now: Time) -> bool {
        self.expire(now);
        self.until.contains_key(print)
    }

    fn insert(&mut self, print: Fingerprint, now: Time) {
        self.expire(now);
        if self.until.contains_key(&print) {
            return;
        }
        while self.until.len() >= VERIFIED_MAX {
            let Some((_, oldest)) = self.order.pop_front() else {
                break;
            };
            self.until.remove(&oldest);
        }
        let until = now.after(VERIFIED_TTL);
        self.order.push_back((until, print));
        self.until.insert(print, until);
    }
}

/// A request parked on its password checks (the slot's `Current::auth`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct AuthWait {
    req: Arc<RequestHead>,
    target: Target,
    /// What the request becomes once every check has passed.
    outcome: Outcome,
    /// The checks still to make; the first is the one in progress.
    checks: VecDeque<PasswordCheck>,
    /// The user the checks made so far authenticated.
    user: Option<String>,
    peer: IpAddr,
    state: AuthState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum AuthState {
    /// Not parked yet.
    New,
    /// In the queue for a place.
    Queued,
    /// Waiting for this `VerifyPassword`'s answer.
    Checking(Token),
}

impl AuthWait {
    pub(super) fn new(
        req: Arc<RequestHead>,
        target: Target,
        outcome: Outcome,
        checks: Vec<PasswordCheck>,
        peer: IpAddr,
    ) -> AuthWait {
        AuthWait {
            req,
            target,
            outcome,
            checks: checks.into(),
            user: None,
            peer,
            state: AuthState::New,
        }
    }
}

impl Verifier {
    fn load(&self, peer: IpAddr) -> Load {
        self.peers.get(&peer).copied().unwrap_or_default()
    }

    /// Changes `peer`'s load, forgetting the address when nothing is left.
    fn adjust(&mut self, peer: IpAddr, change: impl FnOnce(&mut Load)) {
        let load = self.peers.entry(peer).or_default();
        change(load);
        if *load == Load::default() {
            self.peers.remove(&peer);
        }
    }
}

impl Server {
    /// Makes `w`'s password checks in order (see the module documentation), then goes on
    /// with its outcome; parks the request when a check must wait.
    pub(super) fn authenticate(&mut self, id: ConnId, mut w: AuthWait, now: Now) {
        while let Some(check) = w.checks.front() {
            let print = check.fingerprint();
            if check.known && self.verifier.verified.fresh(&print, now.mono) {
                if let Some(check) = w.checks.pop_front() {
                    w.user = Some(check.user);
                }
                continue;
            }
            if let Some(&token) = self.verifier.by_print.get(&print) {
                if let Some(job) = self.verifier.jobs.get_mut(&token) {
                    job.waiters.push(id);
                }
                w.state = AuthState::Checking(token);
                return self.park_auth(id, w);
            }
            let load = self.verifier.load(w.peer);
            if load.in_flight < VERIFY_PER_PEER && self.verifier.jobs.len() < VERIFY_IN_FLIGHT_MAX {
                let token = self.token();
                self.effects.push_back(Effect::VerifyPassword {
                    token,
                    hash: check.hash.clone(),
                    password: check.password.clone(),
                });
                self.verifier.jobs.insert(
                    token,
                    Job {
                        print,
                        peer: w.peer,
                        waiters: vec![id],
                    },
                );
                self.verifier.by_print.insert(print, token);
                self.verifier.adjust(w.peer, |l| l.in_flight += 1);
                w.state = AuthState::Checking(token);
                return self.park_auth(id, w);
            }
            if load.waiting >= VERIFY_QUEUE_PER_PEER {
                return self.error(id, 429, &[("Retry-After", "1".into())], now);
            }
            self.verifier.adjust(w.peer, |l| l.waiting += 1);
            self.verifier.queue.push_back((id, w.peer));
            w.state = AuthState::Queued;
            return self.park_auth(id, w);
        }
        if let Some(slot) = self.conns.get_mut(&id) {
            slot.cur.get_mut().user = w.user.map(String::into_boxed_str);
        }
        self.dispatch(id, w.req, w.target, w.outcome, now);
    }

    fn park_auth(&mut self, id: ConnId, w: AuthWait) {
        match self.conns.get_mut(&id) {
            Some(slot) => slot.cur.get_mut().auth = Some(Box::new(w)),
            // Cannot happen (a request is routed on its own connection); if it did, the
            // bookkeeping is undone as for a connection that went away.
            None => self.release_auth(id, w),
        }
    }

    /// Takes the request parked on `id` if it is in `state`.
    fn unpark_auth(&mut self, id: ConnId, state: AuthState) -> Option<AuthWait> {
        let cur = self.conns.get_mut(&id)?.cur.existing()?;
        if cur.auth.as_ref().is_some_and(|w| w.state == state) {
            cur.auth.take().map(|w| *w)
        } else {
            None
        }
    }

    /// `Completed` for a `VerifyPassword`: false if `token` names none.
    pub(super) fn verify_completed(&mut self, token: Token, result: &Completion, now: Now) -> bool {
        let Some(job) = self.verifier.jobs.remove(&token) else {
            return false;
        };
        if self.verifier.by_print.get(&job.print) == Some(&token) {
            self.verifier.by_print.remove(&job.print);
        }
        self.verifier.adjust(job.peer, |l| l.in_flight -= 1);
        // `Failed`: the shell could not make the check (its verifiers are overwhelmed),
        // which says nothing of the password. Anything else but `Verified(true)` (only a
        // broken shell answers otherwise) is a failed check.
        let could_not = matches!(result, Completion::Failed(_));
        let verified = matches!(result, Completion::Verified(true));
        for id in job.waiters {
            let Some(mut w) = self.unpark_auth(id, AuthState::Checking(token)) else {
                continue;
            };
            let Some(check) = w.checks.pop_front() else {
                continue;
            };
            if could_not {
                self.error(id, 503, &[("Retry-After", "1".into())], now);
            } else if check.accepts(verified) {
                self.verifier.verified.insert(job.print, now.mono);
                w.user = Some(check.user);
                self.authenticate(id, w, now);
            } else {
                self.unauthorized(id, check.realm, now);
            }
            self.pump(id, now);
        }
        self.admit_queued(now);
        true
    }

    /// Gives the places that are free to the oldest waiting requests whose address has
    /// room.
    fn admit_queued(&mut self, now: Now) {
        while self.verifier.jobs.len() < VERIFY_IN_FLIGHT_MAX {
            let v = &self.verifier;
            let Some(i) = v
                .queue
                .iter()
                .position(|(_, peer)| v.load(*peer).in_flight < VERIFY_PER_PEER)
            else {
                return;
            };
            let Some((id, peer)) = self.verifier.queue.remove(i) else {
                return;
            };
            self.verifier.adjust(peer, |l| l.waiting -= 1);
            if let Some(w) = self.unpark_auth(id, AuthState::Queued) {
                self.authenticate(id, w, now);
                self.pump(id, now);
            }
        }
    }

    /// Forgets a parked request whose connection can no longer carry its answer. A check
    /// in flight goes on (and stays counted) until its answer comes.
    pub(super) fn release_auth(&mut self, id: ConnId, w: AuthWait) {
        match w.state {
            AuthState::New => {}
            AuthState::Queued => {
                if let Some(i) = self.verifier.queue.iter().position(|(c, _)| *c == id) {
                    self.verifier.queue.remove(i);
                    self.verifier.adjust(w.peer, |l| l.waiting -= 1);
                }
            }
            AuthState::Checking(token) => {
                if let Some(job) = self.verifier.jobs.get_mut(&token) {
                    job.waiters.retain(|c| *c != id);
                }
            }
        }
    }

    /// 401 with the realm's challenge.
    pub(super) fn unauthorized(&mut self, id: ConnId, realm: String, now: Now) {
        let challenge = format!("Basic realm=\"{realm}\", charset=\"UTF-8\"");
        self.error(id, 401, &[("WWW-Authenticate", challenge)], now);
    }

    /// Password checks in flight (for the tests).
    #[cfg(test)]
    pub(super) fn verifications_in_flight(&self) -> usize {
        self.verifier.jobs.len()
    }

    /// True if no check is in flight or waiting, and no address is counted (for the
    /// tests).
    #[cfg(test)]
    pub(super) fn verifier_idle(&self) -> bool {
        let v = &self.verifier;
        v.jobs.is_empty() && v.by_print.is_empty() && v.peers.is_empty() && v.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print(i: u32) -> Fingerprint {
        let mut p = [0; 32];
        p[..4].copy_from_slice(&i.to_le_bytes());
        p
    }

    #[test]
    fn remembered_successes_are_bounded_and_expire() {
        let mut v = Verified::default();
        let t0 = Time(1_000);
        for i in 0..=VERIFIED_MAX as u32 {
            v.insert(print(i), t0);
        }
        assert_eq!(v.until.len(), VERIFIED_MAX);
        assert!(!v.fresh(&print(0), t0), "the oldest was not let go");
        assert!(v.fresh(&print(1), t0) && v.fresh(&print(VERIFIED_MAX as u32), t0));
        // A second insert changes nothing (its life is counted from the first).
        let later = Time(2_000);
        v.insert(print(1), later);
        assert_eq!((v.until.len(), v.order.len()), (VERIFIED_MAX, VERIFIED_MAX));
        v.insert(print(5_000), later);
        assert!(v.fresh(&print(5_000), t0.after(VERIFIED_TTL)));
        assert!(
            !v.fresh(&print(1), t0.after(VERIFIED_TTL)),
            "it outlived its TTL"
        );
        assert_eq!((v.until.len(), v.order.len()), (1, 1));
        assert!(!v.fresh(&print(5_000), later.after(VERIFIED_TTL)));
        assert!(v.until.is_empty() && v.order.is_empty());
    }
}
