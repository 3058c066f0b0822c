//! HTTP through FastCGI: a request's CGI meta-variables and body in, one world call, CGI
//! output out. Pure: the clock and the random bits come in as arguments.
//!
//! # Theory of operation
//!
//! weir hands the MUD every request under `exec /mud/* service=mud`. Without a SCRIPT
//! word its rules split the path where the `*` starts (`core/src/rules/route.rs`,
//! `split_at_star`): `/mud/login` arrives as `SCRIPT_NAME=/mud` and `PATH_INFO=/login`.
//! A rule with a SCRIPT puts the whole path in `SCRIPT_NAME` instead, and another server
//! may send only `REQUEST_URI`. So the path is `SCRIPT_NAME` + `PATH_INFO` (the decoded
//! path weir's rules saw), or `REQUEST_URI` up to its `?` when `SCRIPT_NAME` is missing,
//! and the request is dispatched on the path's last segment; what comes before it is where
//! the MUD is mounted, and the cookie's `Path`. One catch: when the `*` matches nothing
//! (`/mud/`), weir trims the slash and sends `SCRIPT_NAME=/mud` alone, which would read as
//! a place called `mud`; a `REQUEST_URI` path that ends in `/` puts the slash back.
//!
//! | request | answer |
//! |---|---|
//! | `POST …/login`, body `name=NAME` | 200 `Set-Cookie: mud=TOKEN` and the room; 400 bad name; 409 name taken |
//! | `POST …/cmd`, body `line=TEXT`, cookie | 200 the command's result; 401 without a player |
//! | `GET …/events?after=N`, cookie | 200 `SEQ TEXT` lines after N, or [`Answer::Wait`]; 401 without a player |
//! | `GET …/` or `…/index.html` | the page that plays it (the rule sends `/mud/` here too) |
//!
//! Anything else: 404, or 405 with `Allow` for a known place and the wrong method. Bodies
//! are `application/x-www-form-urlencoded` (a missing `Content-Type` is taken as that,
//! another is 415), percent-decoded with `+` as a space, and must be UTF-8 (else 400);
//! a body over the connection's limit is 413.
//!
//! A long poll with nothing to show is not answered: [`handle`] returns [`Answer::Wait`]
//! and the shell parks it. When the world wakes its player the shell calls [`wake`], which
//! answers it if there is something to show now (or the player has left: 401); when it has
//! waited long enough the shell calls [`expire`] (200, no lines).
//!
//! Every answer is CGI output (RFC 3875 §6): `Status`, `Content-Type`, and
//! `Cache-Control: no-store`, since a command's result or a poll's lines are never worth
//! reusing. A 401 carries no `WWW-Authenticate`: the credential is a cookie that the login
//! sets, and no HTTP authentication scheme describes that.

use std::fmt::Write as _;

use weir_core::Time;

use crate::conn::Request;
use crate::world::{LoginError, PlayerId, Token, World};

/// The most event lines in one answer; a client further behind polls again at once.
pub const EVENTS_PER_ANSWER: usize = 100;

/// The page that plays the MUD from a browser, served at the mount point itself because
/// the `exec` rule takes every path under it.
const PAGE: &str = include_str!("../../site/htdocs/mud/index.html");

const FORM: &str = "application/x-www-form-urlencoded";
const TEXT: &str = "text/plain; charset=utf-8";
const NOT_LOGGED_IN: &str = "Not logged in. Log in first: POST login with name=NAME.";

/// What to do with a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Answer {
    /// Answer it with this now.
    Now(Response),
    /// Park it: a long poll with nothing to show yet.
    Wait(Wait),
}

/// A parked long poll: whose, and after which event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Wait {
    /// The player polling.
    pub player: PlayerId,
    /// The last sequence number the client has.
    pub after: u64,
}

/// An HTTP response, written as CGI output by [`Response::to_cgi`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields after `Status`, in order.
    pub fields: Vec<(&'static str, String)>,
    /// The body.
    pub body: String,
}

impl Response {
    fn new(status: u16, content_type: &str, body: impl Into<String>) -> Response {
        Response {
            status,
            fields: vec![
                ("Content-Type", content_type.to_owned()),
                ("Cache-Control", "no-store".to_owned()),
            ],
            body: body.into(),
        }
    }

    /// A text/plain response; the body gets a final newline.
    fn text(status: u16, body: impl Into<String>) -> Response {
        let mut body = body.into();
        if !body.is_empty() && !body.ends_with('\n') {
            body.push('\n');
        }
        Response::new(status, TEXT, body)
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.fields.push((name, value.into()));
        self
    }

    /// The value of the first field called `name` (any case).
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The CGI output: `Status`, the fields, an empty line, the body.
    #[must_use]
    pub fn to_cgi(&self) -> Vec<u8> {
        let mut out = format!("Status: {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.fields {
            // unwrap-free: writing to a String cannot fail.
            write!(out, "{name}: {value}\r\n").expect("a String");
        }
        out.push_str("\r\n");
        out.push_str(&self.body);
        out.into_bytes()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Runs one request against the world. `random` is asked for 16 random bytes only by a
/// login (`None`: no randomness to be had, 503).
pub fn handle(
    world: &mut World,
    req: &Request,
    now: Time,
    random: impl FnOnce() -> Option<[u8; 16]>,
) -> Answer {
    let method = req.param("REQUEST_METHOD").unwrap_or(b"GET");
    let path = path(req);
    let (mount, place) = match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path.as_str()),
    };
    let allow = match place {
        "login" | "cmd" => "POST",
        "events" => "GET",
        "" | "index.html" => "GET, HEAD",
        _ => {
            return Answer::Now(Response::text(
                404,
                "No such place. The MUD answers login, cmd and events.",
            ))
        }
    };
    if !allow.split(", ").any(|m| m.as_bytes() == method) {
        let body = format!("{place} takes {allow} only.");
        return Answer::Now(Response::text(405, body).with("Allow", allow));
    }
    Answer::Now(match place {
        "login" => login(world, req, mount, now, random),
        "cmd" => command(world, req, mount, now),
        "events" => return events(world, req, now),
        _ if method == b"HEAD" => Response::new(200, "text/html; charset=utf-8", ""),
        _ => Response::new(200, "text/html; charset=utf-8", PAGE),
    })
}

/// The answer to a parked poll whose player was woken, or `None` to keep it parked.
pub fn wake(world: &mut World, wait: &Wait, now: Time) -> Option<Response> {
    if !world.is_playing(wait.player) {
        return Some(Response::text(401, NOT_LOGGED_IN));
    }
    world.touch(wait.player, now);
    lines(world, wait)
}

/// The answer to a parked poll that waited long enough: no lines.
pub fn expire(world: &mut World, wait: &Wait, now: Time) -> Response {
    world.touch(wait.player, now);
    Response::text(200, "")
}

fn login(
    world: &mut World,
    req: &Request,
    mount: &str,
    now: Time,
    random: impl FnOnce() -> Option<[u8; 16]>,
) -> Response {
    let name = match form_field(req, "name") {
        Ok(Some(name)) => name,
        Ok(None) => return Response::text(400, "Log in with name=NAME."),
        Err(refusal) => return refusal,
    };
    let Some(bytes) = random() else {
        return Response::text(503, "No randomness to make a token with; try again.");
    };
    let token = Token::from_bytes(bytes);
    match world.login(&name, token, now) {
        Ok((_, room)) => Response::text(200, room).with("Set-Cookie", cookie(&token, mount)),
        Err(LoginError::BadName) => {
            Response::text(400, "A name is 1 to 16 letters (a-z, A-Z) or digits.")
        }
        Err(LoginError::NameTaken) => Response::text(409, format!("{name} is already playing.")),
        Err(LoginError::TokenTaken) => Response::text(503, "Please try again."),
    }
}

fn command(world: &mut World, req: &Request, mount: &str, now: Time) -> Response {
    let Some(player) = player(world, req) else {
        return Response::text(401, NOT_LOGGED_IN);
    };
    let line = match form_field(req, "line") {
        Ok(Some(line)) => line,
        Ok(None) => return Response::text(400, "Send a command as line=TEXT."),
        Err(refusal) => return refusal,
    };
    let reply = world.command(player, &line, now);
    let response = Response::text(200, reply.text);
    if reply.quit {
        let gone = format!(
            "mud=; Path={}; Max-Age=0; HttpOnly; SameSite=Strict",
            cookie_path(mount)
        );
        return response.with("Set-Cookie", gone);
    }
    response
}

fn events(world: &mut World, req: &Request, now: Time) -> Answer {
    let Some(player) = player(world, req) else {
        return Answer::Now(Response::text(401, NOT_LOGGED_IN));
    };
    let query = req.param("QUERY_STRING").unwrap_or(b"");
    let after = match form_value(query, "after") {
        Ok(None) => 0,
        Ok(Some(n)) => match n.parse::<u64>() {
            Ok(n) => n,
            Err(_) => return Answer::Now(Response::text(400, "after=N takes a number.")),
        },
        Err(()) => return Answer::Now(Response::text(400, "The query is not well encoded.")),
    };
    world.touch(player, now);
    let wait = Wait { player, after };
    match lines(world, &wait) {
        Some(response) => Answer::Now(response),
        None => Answer::Wait(wait),
    }
}

/// The 200 with the player's events after `wait.after`, or `None` if there are none.
fn lines(world: &World, wait: &Wait) -> Option<Response> {
    let mut body = String::new();
    for e in world
        .events_after(wait.player, wait.after)
        .take(EVENTS_PER_ANSWER)
    {
        // unwrap-free: writing to a String cannot fail.
        writeln!(body, "{} {}", e.seq, e.text).expect("a String");
    }
    (!body.is_empty()).then(|| Response::text(200, body))
}

fn cookie(token: &Token, mount: &str) -> String {
    format!(
        "mud={token}; Path={}; HttpOnly; SameSite=Strict",
        cookie_path(mount)
    )
}

fn cookie_path(mount: &str) -> &str {
    if mount.is_empty() {
        "/"
    } else {
        mount
    }
}

/// The request's path (see the module documentation), lossily as UTF-8: only its last
/// segment is compared, with ASCII names.
fn path(req: &Request) -> String {
    let uri = req.param("REQUEST_URI").unwrap_or(b"");
    let uri = &uri[..uri.iter().position(|&b| b == b'?').unwrap_or(uri.len())];
    let bytes = match req.param("SCRIPT_NAME") {
        Some(script) => {
            let mut p = script.to_vec();
            p.extend_from_slice(req.param("PATH_INFO").unwrap_or(b""));
            if uri.ends_with(b"/") && !p.ends_with(b"/") {
                p.push(b'/');
            }
            p
        }
        None => uri.to_vec(),
    };
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The player named by a `mud` cookie: the first one whose token plays (a browser may send
/// a stale one too, from another path).
fn player(world: &World, req: &Request) -> Option<PlayerId> {
    let cookies = req.param("HTTP_COOKIE")?;
    cookies
        .split(|&b| b == b';')
        .filter_map(|c| {
            let c = c.trim_ascii();
            let value = c.strip_prefix(b"mud=")?;
            Token::parse(value.trim_ascii())
        })
        .find_map(|t| world.player(&t))
}

/// One field of the form in the body, decoded; `Err` is the refusal to send.
fn form_field(req: &Request, key: &str) -> Result<Option<String>, Response> {
    if req.stdin_overflow {
        return Err(Response::text(413, "That is too long."));
    }
    if let Some(t) = req.param("CONTENT_TYPE") {
        let media = t.split(|&b| b == b';').next().unwrap_or(b"").trim_ascii();
        if !media.eq_ignore_ascii_case(FORM.as_bytes()) {
            return Err(Response::text(415, format!("Send the form as {FORM}.")));
        }
    }
    form_value(&req.stdin, key)
        .map_err(|()| Response::text(400, "The form is not well encoded (or not UTF-8)."))
}

/// The value of the first `key=value` pair called `key` in a URL-encoded form; `Err` if a
/// name or value up to it is badly encoded or not UTF-8.
fn form_value(form: &[u8], key: &str) -> Result<Option<String>, ()> {
    for pair in form.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        if url_decode(name)? == key.as_bytes() {
            return String::from_utf8(url_decode(value)?)
                .map(Some)
                .map_err(|_| ());
        }
    }
    Ok(None)
}

/// `+` is a space and `%XX` a byte (WHATWG URL, application/x-www-form-urlencoded); a `%`
/// without two hex digits is an error.
fn url_decode(s: &[u8]) -> Result<Vec<u8>, ()> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3).ok_or(())?;
                let hi = char::from(hex[0]).to_digit(16).ok_or(())?;
                let lo = char::from(hex[1]).to_digit(16).ok_or(())?;
                // unwrap-free: two hex digits make at most 255.
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

    /// A request as weir sends it for `exec /mud/* service=mud`.
    fn req(method: &str, place: &str, query: &str, cookie: Option<&Token>, body: &str) -> Request {
        let mut params = vec![
            ("REQUEST_METHOD", method.to_owned()),
            ("SCRIPT_NAME", "/mud".to_owned()),
            ("QUERY_STRING", query.to_owned()),
            ("REQUEST_URI", format!("/mud/{place}?{query}")),
        ];
        // As weir's split_at_star: `/mud/` has no PATH_INFO at all.
        if !place.is_empty() {
            params.push(("PATH_INFO", format!("/{place}")));
        }
        if method == "POST" {
            params.push(("CONTENT_TYPE", FORM.to_owned()));
        }
        if let Some(t) = cookie {
            params.push(("HTTP_COOKIE", format!("theme=dark; mud={t}")));
        }
        Request {
            params: params
                .into_iter()
                .map(|(n, v)| (Bytes::from_static(n.as_bytes()), Bytes::from(v)))
                .collect(),
            stdin: Bytes::from(body.to_owned()),
            stdin_overflow: false,
        }
    }

    /// The answer to `r`, which must not park; a login gets a token never given before.
    fn now(world: &mut World, r: &Request) -> Response {
        static NEXT: AtomicU8 = AtomicU8::new(100);
        match handle(world, r, Time(0), || Some([NEXT.fetch_add(1, Relaxed); 16])) {
            Answer::Now(response) => response,
            Answer::Wait(w) => panic!("parked: {w:?}"),
        }
    }

    /// Logs in `name` with a token of `n`s; the token.
    fn login_as(world: &mut World, name: &str, n: u8) -> Token {
        let r = req("POST", "login", "", None, &format!("name={name}"));
        let response = match handle(world, &r, Time(0), || Some([n; 16])) {
            Answer::Now(response) => response,
            Answer::Wait(_) => unreachable!(),
        };
        assert_eq!(response.status, 200, "{}", response.body);
        Token::from_bytes([n; 16])
    }

    fn cmd(world: &mut World, t: &Token, line: &str) -> Response {
        now(
            world,
            &req("POST", "cmd", "", Some(t), &format!("line={line}")),
        )
    }

    #[test]
    fn login_sets_the_cookie_and_shows_the_room() {
        let mut w = World::default();
        let login = req("POST", "login", "", None, "name=Alice");
        let Answer::Now(r) = handle(&mut w, &login, Time(0), || Some([7; 16])) else {
            panic!()
        };
        assert_eq!(r.status, 200);
        assert_eq!(
            r.field("set-cookie"),
            Some("mud=07070707070707070707070707070707; Path=/mud; HttpOnly; SameSite=Strict")
        );
        assert_eq!(r.field("content-type"), Some(TEXT));
        assert_eq!(r.field("cache-control"), Some("no-store"));
        assert!(
            r.body.starts_with("Welcome, Alice.\n\nGatehouse\n"),
            "{}",
            r.body
        );
        let cgi = String::from_utf8(r.to_cgi()).unwrap();
        assert!(cgi.starts_with("Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nSet-Cookie: mud="), "{cgi}");
        assert!(cgi.contains("\r\n\r\nWelcome, Alice."), "{cgi}");
    }

    #[test]
    fn login_refusals() {
        let mut w = World::default();
        login_as(&mut w, "alice", 1);
        let taken = now(&mut w, &req("POST", "login", "", None, "name=ALICE"));
        assert_eq!(
            (taken.status, taken.body.as_str()),
            (409, "ALICE is already playing.\n")
        );
        assert!(taken
            .to_cgi()
            .starts_with(b"Status: 409 Conflict\r\nContent-Type: text/plain; charset=utf-8\r\n"));
        assert_eq!(taken.field("set-cookie"), None);
        for body in [
            "name=",
            "name=al+ice",
            "name=%C3%A5",
            "name=abcdefghijklmnopq",
            "other=x",
        ] {
            let r = now(&mut w, &req("POST", "login", "", None, body));
            assert_eq!(r.status, 400, "{body}: {}", r.body);
        }
        for body in ["name=%zz", "name=%C3"] {
            let r = now(&mut w, &req("POST", "login", "", None, body));
            assert_eq!(r.status, 400, "{body}");
            assert!(r.body.contains("not well encoded"), "{body}: {}", r.body);
        }
        let mut r = req("POST", "login", "", None, "name=bob");
        r.params.retain(|(n, _)| n.as_ref() != b"CONTENT_TYPE");
        r.params.push((
            Bytes::from_static(b"CONTENT_TYPE"),
            Bytes::from_static(b"application/json"),
        ));
        assert_eq!(now(&mut w, &r).status, 415);
        r.params.pop();
        r.params.push((
            Bytes::from_static(b"CONTENT_TYPE"),
            Bytes::from_static(b"Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
        ));
        r.stdin_overflow = true;
        assert_eq!(now(&mut w, &r).status, 413);
        let r = req("POST", "login", "", None, "name=bob");
        let Answer::Now(r) = handle(&mut w, &r, Time(0), || None) else {
            panic!()
        };
        assert_eq!(r.status, 503);
        // The same token twice: the random source failed us.
        let r = req("POST", "login", "", None, "name=bob");
        let Answer::Now(r) = handle(&mut w, &r, Time(0), || Some([1; 16])) else {
            panic!()
        };
        assert_eq!(r.status, 503);
    }

    #[test]
    fn randomness_is_asked_for_by_logins_only() {
        let mut w = World::default();
        let t = login_as(&mut w, "alice", 1);
        for r in [
            req("POST", "cmd", "", Some(&t), "line=look"),
            req("GET", "events", "after=0", Some(&t), ""),
            req("GET", "", "", None, ""),
        ] {
            let _ = handle(&mut w, &r, Time(0), || panic!("asked for randomness"));
        }
    }

    #[test]
    fn commands_need_the_cookie() {
        let mut w = World::default();
        let t = login_as(&mut w, "alice", 1);
        let r = cmd(&mut w, &t, "say+hello%2C+world%21");
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "You say: hello, world!\n")
        );
        assert_eq!(r.field("set-cookie"), None);
        let stranger = Token::from_bytes([9; 16]);
        for cookie in [None, Some(&stranger)] {
            let r = now(&mut w, &req("POST", "cmd", "", cookie, "line=look"));
            assert_eq!(r.status, 401, "{cookie:?}");
            assert_eq!(r.body, format!("{NOT_LOGGED_IN}\n"));
        }
        // A stale cookie before the good one does not hide it.
        let mut r = req("POST", "cmd", "", None, "line=look");
        r.params.push((
            Bytes::from_static(b"HTTP_COOKIE"),
            Bytes::from(format!("mud={stranger};mud=junk; mud={t}")),
        ));
        assert_eq!(now(&mut w, &r).status, 200);
        let r = now(&mut w, &req("POST", "cmd", "", Some(&t), "nothing=here"));
        assert_eq!(r.status, 400);
    }

    #[test]
    fn quit_expires_the_cookie() {
        let mut w = World::default();
        let t = login_as(&mut w, "alice", 1);
        let r = cmd(&mut w, &t, "quit");
        assert_eq!((r.status, r.body.as_str()), (200, "Goodbye, alice.\n"));
        assert_eq!(
            r.field("set-cookie"),
            Some("mud=; Path=/mud; Max-Age=0; HttpOnly; SameSite=Strict")
        );
        assert_eq!(cmd(&mut w, &t, "look").status, 401);
    }

    #[test]
    fn events_answer_at_once_or_park() {
        let mut w = World::default();
        let a = login_as(&mut w, "alice", 1);
        let b = login_as(&mut w, "bob", 2);
        let alice = w.player(&a).unwrap();
        let r = now(&mut w, &req("GET", "events", "after=0", Some(&a), ""));
        assert_eq!(r.body, "2 bob arrives, shaking off the rain.\n");
        assert_eq!(r.field("content-type"), Some(TEXT));
        // Nothing new for alice: park. (A query without `after` means after 0.)
        let parked = handle(
            &mut w,
            &req("GET", "events", "_=1&after=2", Some(&a), ""),
            Time(0),
            || None,
        );
        assert_eq!(
            parked,
            Answer::Wait(Wait {
                player: alice,
                after: 2
            })
        );
        let Answer::Wait(wait) = parked else {
            unreachable!()
        };
        assert_eq!(wake(&mut w, &wait, Time(1)), None, "nothing yet");
        cmd(&mut w, &b, "say hi");
        let r = wake(&mut w, &wait, Time(2)).expect("an answer now");
        assert_eq!((r.status, r.body.as_str()), (200, "3 bob says: hi\n"));
        let r = expire(&mut w, &wait, Time(3));
        assert_eq!((r.status, r.body.as_str()), (200, ""));
        // The player is gone: a parked poll hears so.
        cmd(&mut w, &a, "quit");
        let r = wake(&mut w, &wait, Time(4)).expect("an answer");
        assert_eq!(r.status, 401);
        let r = now(&mut w, &req("GET", "events", "", Some(&a), ""));
        assert_eq!(r.status, 401);
        for q in ["after=x", "after=-1", "after=%"] {
            let r = now(&mut w, &req("GET", "events", q, Some(&b), ""));
            assert_eq!(r.status, 400, "{q}");
        }
    }

    #[test]
    fn an_answer_holds_at_most_a_hundred_lines() {
        let mut w = World::default();
        let a = login_as(&mut w, "alice", 1);
        let b = login_as(&mut w, "bob", 2);
        for i in 0..150 {
            cmd(&mut w, &b, &format!("say {i}"));
        }
        let r = now(&mut w, &req("GET", "events", "after=0", Some(&a), ""));
        assert_eq!(r.body.lines().count(), EVENTS_PER_ANSWER);
        let last: u64 = r
            .body
            .lines()
            .last()
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let r = now(
            &mut w,
            &req("GET", "events", &format!("after={last}"), Some(&a), ""),
        );
        assert_eq!(
            r.body.lines().count(),
            51,
            "bob's arrival and 150 lines in all"
        );
        assert!(r.body.ends_with("bob says: 149\n"));
    }

    #[test]
    fn places_and_methods() {
        let mut w = World::default();
        let r = now(&mut w, &req("GET", "", "", None, ""));
        assert_eq!(r.status, 200);
        assert_eq!(r.field("content-type"), Some("text/html; charset=utf-8"));
        assert!(r.body.contains("id=\"login\""));
        assert_eq!(
            now(&mut w, &req("GET", "index.html", "", None, "")).body,
            r.body
        );
        assert_eq!(now(&mut w, &req("HEAD", "", "", None, "")).body, "");
        assert_eq!(now(&mut w, &req("GET", "nope", "", None, "")).status, 404);
        // `/mud` itself never reaches the service under `exec /mud/*` (weir redirects it to
        // `/mud/`); were it sent, it names no place.
        let mut bare = req("GET", "", "", None, "");
        bare.params.retain(|(n, _)| n.as_ref() != b"REQUEST_URI");
        bare.params.push((
            Bytes::from_static(b"REQUEST_URI"),
            Bytes::from_static(b"/mud"),
        ));
        assert_eq!(now(&mut w, &bare).status, 404);
        for (method, place, allow) in [
            ("GET", "login", "POST"),
            ("GET", "cmd", "POST"),
            ("POST", "events", "GET"),
            ("POST", "", "GET, HEAD"),
        ] {
            let r = now(&mut w, &req(method, place, "", None, ""));
            assert_eq!(
                (r.status, r.field("allow")),
                (405, Some(allow)),
                "{method} {place}"
            );
            assert!(r
                .to_cgi()
                .starts_with(b"Status: 405 Method Not Allowed\r\n"));
        }
    }

    #[test]
    fn the_path_comes_from_script_name_and_path_info_or_the_uri() {
        let mut w = World::default();
        // A rule with a SCRIPT: the whole path in SCRIPT_NAME.
        let mut r = req("POST", "login", "", None, "name=alice");
        r.params.retain(|(n, _)| n.as_ref() != b"PATH_INFO");
        r.params.retain(|(n, _)| n.as_ref() != b"SCRIPT_NAME");
        r.params.push((
            Bytes::from_static(b"SCRIPT_NAME"),
            Bytes::from_static(b"/games/mud/login"),
        ));
        let resp = now(&mut w, &r);
        assert_eq!(resp.status, 200);
        assert!(resp
            .field("set-cookie")
            .unwrap()
            .contains("; Path=/games/mud;"));
        // No SCRIPT_NAME at all: the URI's path, without its query.
        let mut r = req("POST", "login", "", None, "name=bob");
        r.params
            .retain(|(n, _)| !n.starts_with(b"SCRIPT_NAME") && !n.starts_with(b"PATH_INFO"));
        r.params.retain(|(n, _)| n.as_ref() != b"REQUEST_URI");
        r.params.push((
            Bytes::from_static(b"REQUEST_URI"),
            Bytes::from_static(b"/login?x=/y"),
        ));
        let resp = now(&mut w, &r);
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert!(resp.field("set-cookie").unwrap().contains("; Path=/;"));
    }

    #[test]
    fn form_decoding() {
        assert_eq!(
            form_value(b"a=1&line=go+north&line=x", "line"),
            Ok(Some("go north".into()))
        );
        assert_eq!(
            form_value(b"l%69ne=%27hi%20there", "line"),
            Ok(Some("'hi there".into()))
        );
        assert_eq!(form_value(b"&&line&", "line"), Ok(Some(String::new())));
        assert_eq!(form_value(b"", "line"), Ok(None));
        assert_eq!(form_value(b"line=%e2%82%ac", "line"), Ok(Some("€".into())));
        assert_eq!(form_value(b"line=%", "line"), Err(()));
        assert_eq!(form_value(b"line=%4", "line"), Err(()));
        assert_eq!(form_value(b"line=%ff", "line"), Err(()));
        assert_eq!(
            form_value(b"%zz=1&line=a", "line"),
            Err(()),
            "strict up to the key"
        );
        assert_eq!(
            form_value(b"line=a&other=%zz", "line"),
            Ok(Some("a".into()))
        );
    }
}
