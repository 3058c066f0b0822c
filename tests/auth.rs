//! End-to-end tests of password checks (`protect … users=`) through the real binary: a
//! bcrypt check runs on the verifier pool, never on the worker's event loop, and a
//! verified password is remembered.
//!
//! The users file holds a real cost-12 bcrypt hash (about 250 ms per check in a release
//! build, several times that in the debug build these tests run), so each check is long
//! enough to see whether it stalls the loop.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{request, Client, Expect, Response, Weir};

/// `alice:secret`, bcrypt at cost 12 (`$2y$12$`, the salt `weirtestsaltweirtestse`).
const USERS: &str = "alice:$2y$12$weirtestsaltweirtestseY/HUjrTj2hOF62SvwQhA3HQJxEhnAQy\n";

/// A generous read timeout for the answers that wait for bcrypt (a loaded CI machine
/// runs ten debug-build cost-12 checks on two verifier threads).
const SLOW: Duration = Duration::from_secs(60);

fn basic(user: &str, password: &str) -> String {
    format!(
        "Authorization: Basic {}\r\n",
        base64(format!("{user}:{password}").as_bytes())
    )
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn slow_client(weir: &Weir) -> Client {
    let stream = TcpStream::connect(weir.addr).expect("connect");
    let c = Client::from_stream(stream);
    c.stream()
        .set_read_timeout(Some(SLOW))
        .expect("set_read_timeout");
    c
}

fn timed(c: &mut Client, path: &str, extra: &str) -> (Response, Duration) {
    let start = Instant::now();
    c.send(request("GET", path, extra));
    let r = c.read_response(Expect::Body);
    (r, start.elapsed())
}

#[test]
fn password_checks_leave_the_event_loop_and_are_remembered() {
    let weir = Weir::start_with_config_and_files(
        "protect /sub/* users={base}/users realm=\"Staff\"\npass /* {root}/*\n",
        &[("users", USERS)],
    );
    // Ten wrong passwords at once, each on its own connection, all from one address:
    // each needs a full cost-12 check, and the worker has one event loop.
    let mut guessers: Vec<Client> = (0..10)
        .map(|i| {
            let mut c = slow_client(&weir);
            c.send(request(
                "GET",
                "/sub/",
                &basic("alice", &format!("wrong{i}")),
            ));
            c
        })
        .collect();
    // Let the worker read them all and start checking.
    std::thread::sleep(Duration::from_millis(50));
    let mut c = slow_client(&weir);
    let (r, stall) = timed(&mut c, "/hello.txt", "");
    r.assert_status(200);
    let static_done = Instant::now();
    eprintln!("a static file while ten bcrypt checks run: {stall:?}");
    let mut last_401 = static_done;
    for g in &mut guessers {
        let r = g.read_response(Expect::Body);
        r.assert_status(401);
        last_401 = Instant::now();
    }
    eprintln!(
        "the ten wrong passwords were answered {:?} after the static file",
        last_401 - static_done
    );
    assert!(
        last_401 > static_done + Duration::from_millis(100),
        "the ten checks were over before the static file was asked for: nothing was measured"
    );
    assert!(
        stall < Duration::from_millis(100),
        "a static file took {stall:?} while password checks ran: the event loop stalled"
    );

    // The right password: one check, then remembered.
    let mut a = slow_client(&weir);
    let (r, first) = timed(&mut a, "/sub/", &basic("alice", "secret"));
    r.assert_status(200);
    assert_eq!(r.body, weir.docs.bytes("sub/index.html"));
    let (r, again) = timed(&mut a, "/sub/", &basic("alice", "secret"));
    r.assert_status(200);
    // A new connection (a browser's second one) finds it remembered too.
    let mut b = slow_client(&weir);
    let (r, other) = timed(&mut b, "/sub/", &basic("alice", "secret"));
    r.assert_status(200);
    eprintln!("right password: first {first:?}, again {again:?}, on another connection {other:?}");
    assert!(
        first >= Duration::from_millis(100),
        "a cost-12 check took only {first:?}: the timings below prove nothing"
    );
    for (what, t) in [("again", again), ("on another connection", other)] {
        assert!(
            t < Duration::from_millis(100) && t < first / 2,
            "the remembered password {what} took {t:?} (the check took {first:?})"
        );
    }
    // Remembering is for the right password only: a wrong one is checked (and refused)
    // every time.
    let (r, _) = timed(&mut b, "/sub/", &basic("alice", "Secret"));
    r.assert_status(401);
}
