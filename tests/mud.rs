//! The multi-user dungeon (README.md "The MUD", examples/mud/README.md) through the real
//! binary: `weir mud` as a FastCGI service of a running weir, played over HTTP by raw
//! clients, each long poll on a connection of its own.
//!
//! What these tests hold weir and the MUD to: a service that a reload (SIGHUP) adds starts
//! and takes `/mud/*` from then on; a player's parked `GET /mud/events` is answered within
//! [`WAKE_BOUND`] of a `say` in its room, with the words said, and the speaker's own poll is
//! not; a taken name is `409 Conflict`; and a hundred parked polls are a hundred FastCGI
//! connections held by one MUD process of one thread, all answered by one `say`.
//!
//! A poll is *parked* when it has been sent and no answer came within [`QUIET`]: every
//! client first takes what is waiting for it (arrivals of those who logged in after it)
//! and polls again, until no poll is answered.

use std::fs;
use std::io::ErrorKind;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{Client, Expect, Response, Weir, IO_TIMEOUT};

/// The configuration weir starts with: files only, no MUD.
const WITHOUT_MUD: &str = "pass /* {root}/*\n";

/// The same with the MUD, as README.md "The MUD" gives it.
const WITH_MUD: &str = "service mud spawn=\"weir mud\" connections=1024\n\
                        exec /mud/* service=mud\n\
                        pass /* {root}/*\n";

/// The longest a parked poll may take to be answered after the `say` that concerns it.
const WAKE_BOUND: Duration = Duration::from_millis(100);

/// How long a poll must stay unanswered to count as parked.
const QUIET: Duration = Duration::from_millis(300);

/// Longest wait for the MUD's process to show up under the launcher.
const SETTLE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

/// `application/x-www-form-urlencoded`: letters and digits as they are, space as `+`.
fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A form POST on `c`, with the player's cookie if any; its response.
fn post_form(
    c: &mut Client,
    path: &str,
    cookie: Option<&str>,
    field: &str,
    value: &str,
) -> Response {
    let body = format!("{field}={}", urlencode(value));
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    c.send(format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\n{cookie}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    c.read_response(Expect::Body)
}

/// One player: a connection for commands and one for its long poll.
struct Player {
    name: String,
    cookie: String,
    cmd: Client,
    poll: Poll,
}

impl Player {
    /// `POST /mud/login name=NAME`; panics unless it is a 200 with the `mud` cookie.
    fn login(weir: &Weir, name: &str) -> Player {
        let mut cmd = weir.connect();
        let r = post_form(&mut cmd, "/mud/login", None, "name", name);
        r.assert_status(200);
        let set = r.expect_header("set-cookie");
        let cookie = set.split(';').next().expect("a cookie").trim().to_string();
        assert!(
            cookie.starts_with("mud=") && cookie.len() == "mud=".len() + 32,
            "the login's cookie: {set}"
        );
        let body = String::from_utf8_lossy(&r.body);
        assert!(body.contains(&format!("Welcome, {name}.")), "{body}");
        Player {
            name: name.to_string(),
            poll: Poll::new(weir, &cookie),
            cookie,
            cmd,
        }
    }

    /// `POST /mud/cmd line=LINE`; the 200's body.
    fn command(&mut self, line: &str) -> String {
        let r = post_form(&mut self.cmd, "/mud/cmd", Some(&self.cookie), "line", line);
        r.assert_status(200);
        String::from_utf8_lossy(&r.body).into_owned()
    }
}

/// A long poll on its own connection, and the last event number its player has.
struct Poll {
    client: Client,
    cookie: String,
    after: u64,
    /// Sent and not yet read.
    in_flight: bool,
}

impl Poll {
    fn new(weir: &Weir, cookie: &str) -> Poll {
        Poll {
            client: weir.connect(),
            cookie: cookie.to_string(),
            after: 0,
            in_flight: false,
        }
    }

    /// Sends `GET /mud/events?after=N` (N: the last event this player has).
    fn send(&mut self) {
        assert!(!self.in_flight, "a poll is already in flight");
        self.client.send(format!(
            "GET /mud/events?after={} HTTP/1.1\r\nHost: localhost\r\nCookie: {}\r\n\r\n",
            self.after, self.cookie
        ));
        self.in_flight = true;
    }

    /// True if an answer (or a close) has started to arrive within `wait`.
    fn answered_within(&self, wait: Duration) -> bool {
        if !self.client.unread().is_empty() {
            return true;
        }
        let stream = self.client.stream();
        stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .expect("set_read_timeout");
        let answered = loop {
            match stream.peek(&mut [0u8; 1]) {
                Ok(_) => break true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break false
                }
                Err(e) => panic!("peek on a long poll: {e}"),
            }
        };
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set_read_timeout");
        answered
    }

    /// Reads the answer: a 200 with `SEQ TEXT` lines (none after 25 s); returns the texts
    /// and moves `after` to the last number.
    fn read(&mut self) -> Vec<String> {
        assert!(self.in_flight, "no poll in flight");
        let r = self.client.read_response(Expect::Body);
        self.in_flight = false;
        r.assert_status(200);
        assert_eq!(r.header("cache-control"), Some("no-store"), "{}", r);
        let body = String::from_utf8(r.body.clone()).expect("a UTF-8 body");
        let mut texts = Vec::new();
        for line in body.lines() {
            let (seq, text) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("not a `SEQ TEXT` line: {line:?}"));
            let seq: u64 = seq
                .parse()
                .unwrap_or_else(|_| panic!("not a `SEQ TEXT` line: {line:?}"));
            assert!(seq > self.after, "event {seq} is not after {}", self.after);
            self.after = seq;
            texts.push(text.to_string());
        }
        texts
    }
}

/// Polls until every one of `polls` is parked: sent, and unanswered for [`QUIET`]. What
/// was waiting for a player (others' arrivals) is read and polled past.
fn park_all(polls: &mut [&mut Poll]) {
    for _round in 0..20 {
        for p in polls.iter_mut() {
            if !p.in_flight {
                p.send();
            }
        }
        thread::sleep(QUIET);
        let mut answered = 0;
        for p in polls.iter_mut() {
            if p.answered_within(Duration::from_millis(1)) {
                p.read();
                answered += 1;
            }
        }
        if answered == 0 {
            return;
        }
    }
    panic!("the long polls were still being answered after 20 rounds");
}

/// What a listener's poll was answered with, and when.
struct Heard {
    texts: Vec<String>,
    /// After the speaker's command was answered (zero if the poll's answer came first).
    after_answer: Duration,
    /// After the speaker's command was sent.
    after_sent: Duration,
}

/// `speaker` runs `line` while each of `listeners`' parked polls is read on a thread of its
/// own; returns the speaker's reply and what each poll heard, in order.
fn speak(speaker: &mut Player, line: &str, listeners: &mut [&mut Poll]) -> (String, Vec<Heard>) {
    thread::scope(|s| {
        let readers: Vec<_> = listeners
            .iter_mut()
            .map(|poll| {
                s.spawn(move || {
                    let texts = poll.read();
                    (texts, Instant::now())
                })
            })
            .collect();
        let sent = Instant::now();
        let reply = speaker.command(line);
        let answered = Instant::now();
        let heard = readers
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let (texts, at) = r.join().unwrap_or_else(|_| {
                    panic!("listener {i}'s long poll was not answered (see the panic above)")
                });
                Heard {
                    texts,
                    after_answer: at.saturating_duration_since(answered),
                    after_sent: at.saturating_duration_since(sent),
                }
            })
            .collect();
        (reply, heard)
    })
}

// ---------------------------------------------------------------------------------------
// Reload, processes
// ---------------------------------------------------------------------------------------

/// Rewrites weir.conf (with `{root}` filled in), sends SIGHUP, and waits for `expect` in
/// the error log.
fn reload(weir: &mut Weir, conf: &str, expect: &str) {
    let text = conf.replace("{root}", &weir.docs.root().display().to_string());
    fs::write(weir.docs.base().join("weir.conf"), text).expect("rewrite weir.conf");
    let before = weir.stderr().matches(expect).count();
    weir.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while weir.stderr().matches(expect).count() <= before {
        assert!(
            Instant::now() < deadline,
            "no {expect:?} after SIGHUP; stderr:\n{}",
            weir.stderr()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The children of `pid`, from `/proc/PID/task/*/children` (or, on a kernel without
/// that file, from every process's parent in `/proc/*/stat`).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut had_file = false;
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(list) = fs::read_to_string(task.path().join("children")) {
                had_file = true;
                out.extend(
                    list.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    if !had_file {
        for entry in fs::read_dir("/proc").expect("/proc is mounted").flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let stat = fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(pid) {
                out.push(child);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The MUD's process: weir's child `weir launcher`'s child `weir mud`.
fn mud_pid(weir: &Weir) -> u32 {
    let deadline = Instant::now() + SETTLE;
    loop {
        let launchers: Vec<u32> = children_of(weir.pid())
            .into_iter()
            .filter(|&p| cmdline(p).get(1).map(String::as_str) == Some("launcher"))
            .collect();
        let muds: Vec<u32> = launchers
            .iter()
            .flat_map(|&l| children_of(l))
            .filter(|&p| cmdline(p).get(1).map(String::as_str) == Some("mud"))
            .collect();
        if let [mud] = muds[..] {
            return mud;
        }
        assert!(
            Instant::now() < deadline,
            "no single `weir mud` under weir (PID {}) after {SETTLE:?}: launchers {launchers:?}, \
             MUDs {muds:?}, weir's children {:?}",
            weir.pid(),
            children_of(weir.pid())
                .into_iter()
                .map(|p| (p, cmdline(p)))
                .collect::<Vec<_>>()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// How many threads the process has.
fn threads_of(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/task: {e}"))
        .count()
}

/// How many sockets the process holds open.
fn sockets_of(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .flatten()
        .filter(|fd| {
            fs::read_link(fd.path())
                .map(|t| t.to_string_lossy().starts_with("socket:"))
                .unwrap_or(false)
        })
        .count()
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

#[test]
fn the_mud_attached_by_a_reload_lets_three_players_meet_and_talk() {
    let mut weir = Weir::start_with_config_and_workers(WITHOUT_MUD, 2);

    // Without the MUD, /mud/login is a path like any other under `pass /*`: no file there.
    let mut c = weir.connect();
    let r = post_form(&mut c, "/mud/login", None, "name", "alice");
    assert!(
        matches!(r.status, 404 | 405),
        "before the reload /mud/login is not the MUD's: {}",
        r
    );
    assert!(r.header("set-cookie").is_none(), "{}", r);
    c.get("/mud/").assert_status(404);

    reload(&mut weir, WITH_MUD, "(generation 2)");
    // The kept-alive connection's next request follows the new file; the files stay.
    c.get("/hello.txt").assert_status(200);
    let r = c.get("/mud/");
    r.assert_status(200);
    assert!(
        String::from_utf8_lossy(&r.body).contains("id=\"login\""),
        "the MUD's page after the reload: {}",
        r
    );
    mud_pid(&weir);

    // Everyone starts in the gatehouse (examples/mud/src/world.rs, START): no one moves.
    let mut alice = Player::login(&weir, "alice");
    let mut bob = Player::login(&weir, "bob");
    let mut carol = Player::login(&weir, "carol");
    let look = carol.command("look");
    assert!(
        look.contains("Gatehouse") && look.contains("alice") && look.contains("bob"),
        "carol's look: {look}"
    );
    park_all(&mut [&mut alice.poll, &mut bob.poll, &mut carol.poll]);

    // alice speaks; bob's and carol's parked polls are answered with her words.
    let words = "the river is rising";
    let heard_alice = format!("alice says: {words}");
    let (reply, heard) = speak(
        &mut alice,
        &format!("say {words}"),
        &mut [&mut bob.poll, &mut carol.poll],
    );
    assert!(
        reply.contains(words),
        "alice's own view of her say: {reply}"
    );
    let mut latencies = Vec::new();
    for (who, h) in ["bob", "carol"].into_iter().zip(heard) {
        assert_eq!(
            h.texts,
            [heard_alice.as_str()],
            "what {who}'s poll was answered with"
        );
        eprintln!(
            "{who} heard alice {:?} after her say's answer ({:?} after it was sent)",
            h.after_answer, h.after_sent
        );
        latencies.push((who, h.after_answer));
    }
    // The speaker's own poll stays parked: her view was the command's reply.
    assert!(
        !alice.poll.answered_within(Duration::from_millis(50)),
        "alice's poll was answered by her own say"
    );

    // bob answers; alice's poll (still parked) and carol's (parked again) hear him.
    park_all(&mut [&mut bob.poll, &mut carol.poll]);
    let words = "then we go north";
    let heard_bob = format!("bob says: {words}");
    let (reply, heard) = speak(
        &mut bob,
        &format!("'{words}"),
        &mut [&mut alice.poll, &mut carol.poll],
    );
    assert!(reply.contains(words), "bob's own view of his say: {reply}");
    for (who, h) in ["alice", "carol"].into_iter().zip(heard) {
        assert_eq!(
            h.texts,
            [heard_bob.as_str()],
            "what {who}'s poll was answered with"
        );
        eprintln!(
            "{who} heard bob {:?} after his say's answer ({:?} after it was sent)",
            h.after_answer, h.after_sent
        );
        latencies.push((who, h.after_answer));
    }
    assert!(
        !bob.poll.answered_within(Duration::from_millis(50)),
        "bob's poll was answered by his own say"
    );
    for (who, late) in &latencies {
        assert!(
            *late <= WAKE_BOUND,
            "{who}'s parked poll was answered {late:?} after the say, over {WAKE_BOUND:?}; \
             all: {latencies:?}"
        );
    }

    // A taken name, in any case, is 409 with its reason phrase.
    let mut c = weir.connect();
    for name in ["alice", "BOB"] {
        let r = post_form(&mut c, "/mud/login", None, "name", name);
        r.assert_status(409);
        assert_eq!(r.reason, "Conflict", "{}", r);
        assert!(r.header("set-cookie").is_none(), "{}", r);
    }
    let names = alice.command("who");
    for p in [&alice, &bob, &carol] {
        assert!(names.contains(&p.name), "who: {names}");
    }
    weir.assert_running();
}

#[test]
fn a_hundred_waiting_players_do_not_need_a_hundred_threads() {
    const PLAYERS: usize = 100;
    let mut weir = Weir::start_with_config_and_workers(WITH_MUD, 2);

    // The speaker first, so its arrival is old news to every waiting player.
    let mut speaker = Player::login(&weir, "speaker");
    let mut players: Vec<Player> = (0..PLAYERS)
        .map(|i| Player::login(&weir, &format!("p{i:03}")))
        .collect();
    {
        let mut polls: Vec<&mut Poll> = players.iter_mut().map(|p| &mut p.poll).collect();
        park_all(&mut polls);
    }

    // A hundred parked polls: a hundred FastCGI connections into one MUD process, which
    // has one thread.
    let mud = mud_pid(&weir);
    let (mud_threads, mud_sockets) = (threads_of(mud), sockets_of(mud));
    let weir_threads = threads_of(weir.pid());
    eprintln!(
        "{PLAYERS} parked polls: the MUD (PID {mud}) has {mud_threads} thread(s) and \
         {mud_sockets} sockets; weir (2 workers) has {weir_threads} threads"
    );
    assert_eq!(
        mud_threads, 1,
        "the MUD's threads with {PLAYERS} polls parked"
    );
    assert!(
        mud_sockets > PLAYERS,
        "the MUD holds {mud_sockets} sockets; {PLAYERS} parked polls need {PLAYERS} \
         FastCGI connections and its listener"
    );
    assert!(
        weir_threads < PLAYERS / 4,
        "weir runs {weir_threads} threads for {PLAYERS} parked polls"
    );

    // One say in the gatehouse answers them all.
    let words = "supper is served";
    let expected = format!("speaker says: {words}");
    let (reply, heard) = {
        let mut polls: Vec<&mut Poll> = players.iter_mut().map(|p| &mut p.poll).collect();
        speak(&mut speaker, &format!("say {words}"), &mut polls)
    };
    assert!(reply.contains(words), "{reply}");
    let mut late = Vec::new();
    for (p, h) in players.iter().zip(heard) {
        assert_eq!(
            h.texts,
            [expected.as_str()],
            "what {}'s poll was answered with",
            p.name
        );
        late.push(h.after_answer);
    }
    late.sort_unstable();
    eprintln!(
        "{PLAYERS} polls answered after the say's answer: median {:?}, slowest {:?}",
        late[PLAYERS / 2],
        late[PLAYERS - 1]
    );
    assert!(
        late[PLAYERS - 1] <= Duration::from_secs(1),
        "the slowest of {PLAYERS} polls took {:?}",
        late[PLAYERS - 1]
    );
    assert_eq!(threads_of(mud), 1, "the MUD's threads after the say");
    weir.assert_running();
}
