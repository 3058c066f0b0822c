//! Password checks through the server: a protected request parks on `VerifyPassword` and
//! resumes on its answer; successes are remembered; each client address has its share.

use base64::Engine;

use super::super::*;
use super::{configured, status, World};

/// alice's hash in the test users file (`configured`): apr1 of `secret`.
const ALICE_HASH: &str = "$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/";

fn world() -> World {
    let mut w = configured("protect /admin/* users=users realm=\"Staff\"\npass /*\n");
    w.file("admin/a.txt", b"secret stuff");
    w.file("open.txt", b"for all");
    w.hold_verifies = true;
    w
}

/// Opens a connection and sends a protected GET with `user:password`.
fn ask(w: &mut World, user: &str, password: &str) -> ConnId {
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let id = w.connect();
    w.send(
        id,
        format!("GET /admin/a.txt HTTP/1.1\r\nHost: h\r\nAuthorization: Basic {creds}\r\n\r\n")
            .as_bytes(),
    );
    id
}

/// Answers held check `i`.
fn answer(w: &mut World, i: usize, ok: bool) {
    let (token, _, _) = w.held.remove(i);
    w.server.handle(
        Input::Completed {
            token,
            result: Completion::Verified(ok),
        },
        w.now,
    );
    w.run();
}

/// Answers the oldest held check with what `verify` says.
fn answer_truly(w: &mut World) {
    let ok = crate::rules::auth::verify(&w.held[0].1, &w.held[0].2 .0);
    answer(w, 0, ok);
}

fn from(w: &mut World, ip: [u8; 4]) {
    w.peer = core::net::SocketAddr::from((ip, 50000));
}

#[test]
fn a_protected_request_parks_on_the_check_and_resumes_on_its_answer() {
    let mut w = world();
    let id = ask(&mut w, "alice", "secret");
    assert_eq!(w.take_output(id), "", "answered before the check");
    assert_eq!(w.held.len(), 1);
    let (_, hash, password) = &w.held[0];
    assert_eq!(
        (hash.as_str(), password.0.as_slice()),
        (ALICE_HASH, &b"secret"[..])
    );
    assert!(
        !format!("{password:?}").contains("115"),
        "a password in Debug output"
    );
    assert_eq!(w.opens, 0, "the document is not touched before the check");
    // Meanwhile the connection's neighbours are served.
    assert_eq!(status(&w.get("/open.txt")), 200);
    answer(&mut w, 0, true);
    let out = w.take_output(id);
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("secret stuff"),
        "{out}"
    );
    assert!(w.open.is_empty());
}

#[test]
fn a_remembered_success_needs_no_check_until_it_expires() {
    let mut w = world();
    let id = ask(&mut w, "alice", "secret");
    answer_truly(&mut w);
    assert_eq!(status(&w.take_output(id)), 200);
    // Another connection, the same credentials: answered at once.
    let id = ask(&mut w, "alice", "secret");
    assert_eq!(status(&w.take_output(id)), 200);
    assert_eq!(w.verifies, 1, "a remembered success was checked again");
    // Other credentials are not.
    let id = ask(&mut w, "alice", "secreT");
    assert_eq!(w.take_output(id), "");
    answer_truly(&mut w);
    assert_eq!(status(&w.take_output(id)), 401);
    // For the five minutes the README promises: still remembered a second before.
    w.advance(std::time::Duration::from_secs(5 * 60 - 1));
    let id = ask(&mut w, "alice", "secret");
    assert_eq!(status(&w.take_output(id)), 200);
    assert_eq!(w.verifies, 2, "checked again within five minutes");
    // Until the entry expires.
    w.advance(VERIFIED_TTL - std::time::Duration::from_secs(5 * 60 - 1));
    let id = ask(&mut w, "alice", "secret");
    assert_eq!(w.take_output(id), "", "an expired success still counted");
    answer_truly(&mut w);
    assert_eq!(status(&w.take_output(id)), 200);
    assert_eq!(w.verifies, 3);
}

#[test]
fn a_wrong_password_is_401_and_checked_every_time() {
    let mut w = world();
    for round in 1..=2 {
        let id = ask(&mut w, "alice", "wrong");
        answer_truly(&mut w);
        let out = w.take_output(id);
        assert_eq!(status(&out), 401, "{out}");
        assert!(
            out.contains("WWW-Authenticate: Basic realm=\"Staff\", charset=\"UTF-8\"\r\n"),
            "{out}"
        );
        assert_eq!(w.verifies, round, "a failure was remembered");
    }
}

#[test]
fn an_unknown_user_costs_a_check_against_a_stand_in_and_is_refused() {
    let mut w = world();
    let id = ask(&mut w, "bob", "secret");
    assert_eq!(w.held.len(), 1, "an unknown user answered without a check");
    assert_eq!(
        w.held[0].1, ALICE_HASH,
        "the stand-in is the file's own hash"
    );
    // Even if the stand-in matches, bob is not let in (nor remembered).
    answer(&mut w, 0, true);
    assert_eq!(status(&w.take_output(id)), 401);
    let id = ask(&mut w, "bob", "secret");
    assert_eq!(w.held.len(), 1);
    answer(&mut w, 0, true);
    assert_eq!(status(&w.take_output(id)), 401);
}

#[test]
fn the_same_credentials_at_once_share_one_check() {
    let mut w = world();
    let a = ask(&mut w, "alice", "secret");
    let b = ask(&mut w, "alice", "secret");
    assert_eq!(w.held.len(), 1);
    answer_truly(&mut w);
    assert_eq!(status(&w.take_output(a)), 200);
    assert_eq!(status(&w.take_output(b)), 200);
    assert_eq!(w.verifies, 1);
}

#[test]
fn one_of_two_sharing_a_check_goes_and_the_other_still_gets_its_answer() {
    let mut w = world();
    let a = ask(&mut w, "alice", "secret");
    let b = ask(&mut w, "alice", "secret");
    assert_eq!(w.held.len(), 1);
    w.reset(a);
    answer_truly(&mut w);
    assert_eq!(status(&w.take_output(b)), 200);
}

#[test]
fn a_queued_check_whose_client_goes_leaves_the_others_queued() {
    let mut w = world();
    let _a = ask(&mut w, "alice", "w1");
    let _b = ask(&mut w, "alice", "w2");
    let gone = ask(&mut w, "alice", "w3");
    let stays = ask(&mut w, "alice", "w4");
    assert_eq!(w.held.len(), VERIFY_PER_PEER);
    w.reset(gone);
    answer_truly(&mut w);
    assert_eq!(w.held.last().map(|h| h.2 .0.clone()), Some(b"w4".to_vec()));
    while !w.held.is_empty() {
        answer_truly(&mut w);
    }
    assert_eq!(status(&w.take_output(stays)), 401);
}

#[test]
fn the_worker_has_at_most_its_bound_of_checks_in_flight() {
    let mut w = world();
    // One guess from each of more addresses than the bound: each within its own share.
    let asked: Vec<ConnId> = (0..VERIFY_IN_FLIGHT_MAX + 3)
        .map(|i| {
            from(&mut w, [10, 1, (i / 200) as u8, (i % 200) as u8 + 1]);
            ask(&mut w, "alice", &format!("guess{i}"))
        })
        .collect();
    assert_eq!(w.held.len(), VERIFY_IN_FLIGHT_MAX);
    // Each answer lets one more in.
    answer_truly(&mut w);
    assert_eq!(w.held.len(), VERIFY_IN_FLIGHT_MAX);
    while !w.held.is_empty() {
        answer_truly(&mut w);
    }
    for id in asked {
        assert_eq!(status(&w.take_output(id)), 401);
    }
}

#[test]
fn one_address_has_two_checks_in_flight_and_a_bounded_queue() {
    let mut w = world();
    from(&mut w, [10, 0, 0, 1]);
    let guesses: Vec<ConnId> = (0..10)
        .map(|i| ask(&mut w, "alice", &format!("wrong{i}")))
        .collect();
    assert_eq!(
        w.held.len(),
        VERIFY_PER_PEER,
        "one address took more than its share"
    );
    // Another address is not queued behind them.
    from(&mut w, [10, 0, 0, 2]);
    let other = ask(&mut w, "alice", "secret");
    assert_eq!(w.held.len(), VERIFY_PER_PEER + 1);
    assert_eq!(w.held[VERIFY_PER_PEER].2 .0, b"secret");
    answer(&mut w, VERIFY_PER_PEER, true);
    assert_eq!(status(&w.take_output(other)), 200);
    // Each answer lets the next guess in, never more than two at once.
    while !w.held.is_empty() {
        assert!(w.held.len() <= VERIFY_PER_PEER);
        answer_truly(&mut w);
    }
    for id in guesses {
        assert_eq!(status(&w.take_output(id)), 401);
    }
    assert_eq!(w.verifies, 11);
    // Two in flight and a full queue: the next is refused at once.
    from(&mut w, [10, 0, 0, 1]);
    let parked: Vec<ConnId> = (0..VERIFY_PER_PEER + VERIFY_QUEUE_PER_PEER)
        .map(|i| ask(&mut w, "alice", &format!("again{i}")))
        .collect();
    assert_eq!(w.held.len(), VERIFY_PER_PEER);
    let refused = ask(&mut w, "alice", "one too many");
    let out = w.take_output(refused);
    assert_eq!(status(&out), 429, "{out}");
    assert!(out.contains("Retry-After: 1\r\n"), "{out}");
    for id in &parked {
        assert_eq!(w.take_output(*id), "");
    }
}

#[test]
fn a_client_that_goes_keeps_its_check_counted_until_it_is_answered() {
    let mut w = world();
    let a = ask(&mut w, "alice", "w1");
    let b = ask(&mut w, "alice", "w2");
    let queued = ask(&mut w, "alice", "w3");
    assert_eq!(w.held.len(), 2);
    // The queued one leaves the queue with its connection.
    w.reset(queued);
    // An in-flight one's connection goes: its check still holds its place.
    w.reset(a);
    assert_eq!(w.server.verifications_in_flight(), 2);
    let c = ask(&mut w, "alice", "w4");
    assert_eq!(
        w.held.len(),
        2,
        "a place was given while the verifier is still busy"
    );
    // Its answer (for nobody) frees the place for the next in line.
    answer(&mut w, 0, false);
    assert_eq!(w.held.len(), 2);
    assert_eq!(w.held[1].2 .0, b"w4");
    answer_truly(&mut w);
    answer_truly(&mut w);
    assert_eq!(status(&w.take_output(b)), 401);
    assert_eq!(status(&w.take_output(c)), 401);
    assert_eq!(w.server.verifications_in_flight(), 0);
    assert!(w.server.verifier_idle());
}

#[test]
fn a_check_outlives_a_shutdown_without_holding_it_up() {
    let mut w = world();
    let id = ask(&mut w, "alice", "secret");
    w.server.handle(Input::Shutdown, w.now);
    w.run();
    // The request in flight is still answered within the grace time…
    answer_truly(&mut w);
    assert_eq!(status(&w.take_output(id)), 200);
    // …and a check whose client went does not keep the server from exiting.
    let mut w = world();
    let id = ask(&mut w, "alice", "secret");
    w.reset(id);
    w.server.handle(Input::Shutdown, w.now);
    w.run();
    assert_eq!(w.exit, Some(0));
    answer_truly(&mut w);
}

#[test]
fn a_check_the_shell_could_not_make_is_503_not_401() {
    let mut w = world();
    let id = ask(&mut w, "alice", "secret");
    let (token, _, _) = w.held.remove(0);
    w.server.handle(
        Input::Completed {
            token,
            result: Completion::Failed(IoError::Exhausted),
        },
        w.now,
    );
    w.run();
    let out = w.take_output(id);
    assert_eq!(status(&out), 503, "{out}");
    assert!(out.contains("Retry-After: 1\r\n"), "{out}");
    // Nothing was learnt about the password: the next request is checked.
    let id = ask(&mut w, "alice", "secret");
    answer_truly(&mut w);
    assert_eq!(status(&w.take_output(id)), 200);
    assert_eq!(w.verifies, 2);
}

/// The user a request logged in as belongs to that request's record only: a head that
/// times out after it on the same connection (pipelined, so the connection never went
/// idle in between) is logged without one.
#[test]
fn a_refused_head_after_a_login_is_logged_without_the_user() {
    let mut w = configured(
        "access-log logs/access.log\nprotect /admin/* users=users realm=\"Staff\"\npass /*\n",
    );
    w.file("admin/a.txt", b"secret stuff");
    let id = w.connect();
    w.send(
        id,
        b"GET /admin/a.txt HTTP/1.1\r\nHost: h\r\nAuthorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n\
          GET /admin/a.txt HTTP/1.1\r\nHo",
    );
    assert_eq!(status(&w.take_output(id)), 200);
    w.advance(std::time::Duration::from_secs(120));
    let out = w.take_output(id);
    assert_eq!(status(&out), 408, "{out}");
    assert_eq!(w.access.len(), 2, "{:?}", w.access);
    assert!(
        w.access[0].starts_with("127.0.0.1 - alice ["),
        "{}",
        w.access[0]
    );
    assert!(
        w.access[1].starts_with("127.0.0.1 - - ["),
        "{}",
        w.access[1]
    );
}

#[test]
fn queued_requests_whose_clients_went_give_their_address_its_queue_back() {
    let mut w = world();
    from(&mut w, [10, 0, 0, 3]);
    let asked: Vec<ConnId> = (0..VERIFY_PER_PEER + VERIFY_QUEUE_PER_PEER)
        .map(|i| ask(&mut w, "alice", &format!("try{i}")))
        .collect();
    assert_eq!(w.held.len(), VERIFY_PER_PEER);
    for id in &asked[VERIFY_PER_PEER..] {
        w.reset(*id);
    }
    // The queue is empty again: the next request waits its turn instead of a 429.
    let next = ask(&mut w, "alice", "secret");
    assert_eq!(w.take_output(next), "", "refused as if the queue were full");
    while !w.held.is_empty() {
        answer_truly(&mut w);
    }
    assert_eq!(status(&w.take_output(next)), 200);
    assert_eq!(w.verifies, VERIFY_PER_PEER + 1);
}
