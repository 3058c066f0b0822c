//! The access-log checker: one record per response, saying what the client received.
//!
//! # Theory of operation
//!
//! The README promises "one line per response, written when the response is handed to its
//! connection; the byte count is the body's length (0 for HEAD, 204, 304)", and DESIGN.md
//! that no line is ever lost. The checker reads every `AccessLog` line with its own strict
//! parser of the three formats (it never calls the core's formatter) and pairs records
//! with what clients saw:
//!
//! * every final response a client received whole *claims* one record with the same
//!   client address, request line (as the client wrote it, or `-` when the server could
//!   not read a head), status and byte count, and, in the formats that have one, user
//!   agent. The record must have been written after the server received the request's
//!   first byte and, for everything but a script's answer, no later than the moment the
//!   client had the whole response (a script's line is written when its output ends,
//!   which may come after its `Content-Length` bytes have left);
//! * a record that no received response claims is allowed only for a request that may
//!   have been answered without its client seeing the whole answer: the client reset the
//!   connection, or the world saw a reason for the server to cut it there
//!   (`Ledger::cut_from`; a response judged as cut is such a request too), or not all of
//!   the request arrived (an answer may start before the body ends, and the connection
//!   then be aborted for the stall). Each such request excuses at most one record, with
//!   its address and request line;
//! * anything else is a failure: a response without a record, a second record for one
//!   response, a record for a request never answered, any record while the log is off.
//!
//! Each record's time must be the virtual clock's when it was written, its user `-` or,
//! for a request that sent alice's password and was not refused (not 401, not 429),
//! `alice` (a site's `Login` rule let her in), its referer `-` (no client sends one), and
//! the line one line of printable ASCII (the core escapes what clients chose).
//!
//! A line names no connection, so pairing is by content: a claim takes the oldest record
//! that fits it; records that are equal in every field are interchangeable, so taking the
//! oldest loses nothing. A claim that cannot be met at once waits, when its record may
//! still come (a script's), or fails on the spot; what is left is settled when the world
//! has gone quiet (`settle`).
//!
//! A script's answer is handed to its connection piece by piece, and its line is written
//! when it ends: when the script's output ends, or when the script is killed or its
//! answer cut short. Its record may therefore come after the client has the whole answer
//! (one with `Content-Length`, or a HEAD's), but it must come.
//!
//! A request the protocol layer refused has its record say `-` for the request (the head
//! may not have been read) and count the body of the connection's own answer, which is
//! sent even to a HEAD; that record, too, is written when the answer is handed over, even
//! while a script's standard input is full. A protocol error found in a body after its
//! request was answered has no record of its own: no answer is written (the connection
//! aborts or closes). No deviation of the core is tolerated: every record is exact.

use core::net::Ipv4Addr;

use weir_core::{Now, Time};

use super::ledger::Entry;
use super::model::Creds;
use crate::options::LogFormat;
use crate::workload::Expect;
use weir_testkit::response::Response;

/// One access-log record, as this checker reads it (escapes undone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The client's address.
    pub peer: Ipv4Addr,
    /// The user (`-` when none).
    pub user: Vec<u8>,
    /// The time, as written between the brackets (`10/Oct/2000:13:55:36 +0000`).
    pub time: String,
    /// The request line, or `None` for `-` (or an empty JSON string).
    pub request: Option<Vec<u8>>,
    /// The status.
    pub status: u16,
    /// Body bytes.
    pub bytes: u64,
    /// The referer (combined, json), `None` for `-` or empty.
    pub referer: Option<Vec<u8>>,
    /// The user agent (combined, json), `None` for `-` or empty.
    pub agent: Option<Vec<u8>>,
}

/// What a record must say to stand for one response (or one request answered out of the
/// client's sight).
#[derive(Clone, Debug)]
pub struct Want {
    peer: Ipv4Addr,
    /// The request line as the client wrote it.
    line: Vec<u8>,
    /// `-` may stand for the request (the server may not have read the head).
    dash: bool,
    /// The status and the byte count; `None` for a request whose answer the client never
    /// saw whole.
    answer: Option<(u16, u64)>,
    /// The body bytes the client received: what a `-` record counts (the connection's own
    /// answer, which has its body even for a HEAD, whose head it may not have read).
    received: u64,
    /// The user agent the client sent.
    agent: Option<Vec<u8>>,
    /// The record may name alice: the request sent her password (and, for a response,
    /// was not refused).
    alice: bool,
    /// The record was written no earlier than this.
    from: Time,
    /// ... and no later than this, if bounded.
    until: Option<Time>,
    /// For reports.
    what: String,
}

impl Want {
    /// What the final response `r` to `e`, received whole at `now` by a client at `peer`,
    /// claims.
    #[must_use]
    pub fn response(peer: Ipv4Addr, e: &Entry, r: &Response, now: Time) -> Want {
        let mut w = Want::request(peer, e);
        let head = e.req.method == "HEAD" && e.head.is_some();
        let empty = head || r.status == 204 || r.status == 304;
        let bytes = if empty { 0 } else { r.body.len() as u64 };
        w.answer = Some((r.status, bytes));
        w.received = r.body.len() as u64;
        w.alice &= !matches!(r.status, 401 | 429);
        // A 408 is the protocol layer's: it may come before or after the head was read.
        w.dash |= r.status == 408;
        // Only an answer a script wrote (its scripts all say `X-Sim-Script`) is logged
        // when its output ends; every other is logged when it is handed over.
        let script = e.req.cgi && r.field("x-sim-script").is_some();
        w.until = (!script).then_some(now);
        w.what = format!(
            "{} {peer} {:?} -> {} with {} body bytes",
            e.req.id,
            String::from_utf8_lossy(&w.line),
            r.status,
            r.body.len()
        );
        w
    }

    /// What a request whose answer may have left without the client seeing it whole can
    /// excuse.
    #[must_use]
    pub fn request(peer: Ipv4Addr, e: &Entry) -> Want {
        let reject = matches!(e.req.expect, Expect::Reject { .. });
        let line = if reject {
            let end = e
                .req
                .bytes
                .iter()
                .position(|&b| b == b'\r' || b == b'\n')
                .unwrap_or(e.req.bytes.len());
            e.req.bytes[..end].to_vec()
        } else {
            format!(
                "{} {} HTTP/1.{}",
                e.req.method,
                e.req.target,
                u8::from(!e.req.http10)
            )
            .into_bytes()
        };
        let agent = e
            .req
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
            .map(|(_, v)| v.as_bytes().to_vec());
        Want {
            peer,
            what: format!(
                "{} {peer} {:?} (answer not seen whole)",
                e.req.id,
                String::from_utf8_lossy(&line)
            ),
            line,
            dash: reject || e.head.is_none(),
            answer: None,
            received: 0,
            agent,
            alice: Creds::of(&e.req.headers) == Creds::Good,
            from: e.first.unwrap_or(e.written_at),
            until: None,
        }
    }

    fn fits(&self, l: &Logged, format: LogFormat) -> bool {
        let r = &l.rec;
        if r.peer != self.peer || l.at < self.from || self.until.is_some_and(|u| l.at > u) {
            return false;
        }
        if r.user != b"-" && !(self.alice && r.user == b"alice") {
            return false;
        }
        let agents = format == LogFormat::Common;
        match &r.request {
            None => {
                // The head was not read: nothing of it can be logged.
                self.dash
                    && (agents || r.agent.is_none())
                    && self
                        .answer
                        .is_none_or(|(status, _)| (status, self.received) == (r.status, r.bytes))
            }
            Some(line) => {
                *line == self.line
                    && (agents || r.agent == self.agent)
                    && self.answer.is_none_or(|a| a == (r.status, r.bytes))
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Logged {
    rec: Record,
    at: Time,
    line: String,
}

/// The access-log book. See the module documentation.
#[derive(Debug)]
pub struct LogBook {
    format: Option<LogFormat>,
    /// Records no claim has taken yet, oldest first.
    pending: Vec<Logged>,
    /// Claims whose record may still come (scripts' answers).
    waiting: Vec<Want>,
    /// Requests that may each account for one record.
    excuses: Vec<Want>,
}

impl LogBook {
    /// A book for a run whose access log is `format` (`None`: off).
    #[must_use]
    pub fn new(format: Option<LogFormat>) -> LogBook {
        LogBook {
            format,
            pending: Vec::new(),
            waiting: Vec::new(),
            excuses: Vec::new(),
        }
    }

    /// The core wrote `line` at `now`.
    pub fn record(&mut self, line: &str, now: Now) -> Result<(), String> {
        let Some(format) = self.format else {
            return Err(format!(
                "an access-log line with the access log off: {line}"
            ));
        };
        let rec = parse(line, format).map_err(|m| format!("access-log line {line:?}: {m}"))?;
        let time = clf_time(now.unix.0);
        if rec.time != time {
            return Err(format!(
                "access-log line {line:?} says [{}], but it was written at [{time}]",
                rec.time
            ));
        }
        if (rec.user != b"-" && rec.user != b"alice") || rec.referer.is_some() {
            return Err(format!(
                "access-log line {line:?} names a user or a referer no client sent"
            ));
        }
        let logged = Logged {
            rec,
            at: now.mono,
            line: line.to_string(),
        };
        if let Some(i) = self.waiting.iter().position(|w| w.fits(&logged, format)) {
            self.waiting.remove(i);
        } else {
            self.pending.push(logged);
        }
        Ok(())
    }

    /// A client received a whole final response: it takes its record.
    pub fn claim(&mut self, want: Want) -> Result<(), String> {
        let Some(format) = self.format else {
            return Ok(());
        };
        if let Some(i) = self.pending.iter().position(|l| want.fits(l, format)) {
            self.pending.remove(i);
            return Ok(());
        }
        if want.until.is_some() {
            return Err(format!(
                "no access-log record for the response {}; records not yet paired: {}",
                want.what,
                self.describe()
            ));
        }
        self.waiting.push(want);
        Ok(())
    }

    /// A request that may account for one record (its answer may have left unseen).
    pub fn excuse(&mut self, want: Want) {
        if self.format.is_some() {
            self.excuses.push(want);
        }
    }

    /// The world is quiet: every claim has its record, and every other record is excused.
    pub fn settle(&mut self) -> Result<(), String> {
        let Some(format) = self.format else {
            return Ok(());
        };
        if let Some(w) = self.waiting.first() {
            return Err(format!(
                "no access-log record for the response {}; records not paired: {}",
                w.what,
                self.describe()
            ));
        }
        for l in std::mem::take(&mut self.pending) {
            match self.excuses.iter().position(|w| w.fits(&l, format)) {
                Some(i) => {
                    self.excuses.remove(i);
                }
                None => {
                    return Err(format!(
                        "the access-log record {:?} (written at {}) stands for no response \
                         a client received and no request whose answer it may have missed",
                        l.line, l.at
                    ))
                }
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        for l in self.pending.iter().rev().take(8) {
            s.push_str(&format!("\n      at {}: {}", l.at, l.line));
        }
        if s.is_empty() {
            s.push_str("none");
        }
        for w in self.waiting.iter().rev().take(8) {
            s.push_str(&format!("\n      waiting for a record: {}", w.what));
        }
        s
    }
}

/// `[10/Oct/2000:13:55:36 +0000]`'s inside for Unix time `secs`.
#[must_use]
pub fn clf_time(secs: i64) -> String {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let d = super::model::http_date(secs);
    let p: Vec<&str> = d.split(' ').collect();
    match p.as_slice() {
        [_, day, mon, year, hms, _] => format!("{day}/{mon}/{year}:{hms} +0000"),
        _ => d,
    }
}

/// Reads one line in `format`, strictly.
pub fn parse(line: &str, format: LogFormat) -> Result<Record, String> {
    if let Some(b) = line.bytes().find(|b| !(0x20..=0x7e).contains(b)) {
        return Err(format!("byte {b:#04x} is not printable ASCII"));
    }
    match format {
        LogFormat::Common | LogFormat::Combined => clf(line, format == LogFormat::Combined),
        LogFormat::Json => json(line),
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn eat(&mut self, lit: &str) -> Result<(), String> {
        if self.s[self.at..].starts_with(lit.as_bytes()) {
            self.at += lit.len();
            Ok(())
        } else {
            Err(format!("expected {lit:?} at byte {}", self.at))
        }
    }

    /// Up to (not including) `stop`, which is consumed.
    fn until(&mut self, stop: &str) -> Result<&str, String> {
        let rest = &self.s[self.at..];
        let n = rest
            .windows(stop.len())
            .position(|w| w == stop.as_bytes())
            .ok_or_else(|| format!("no {stop:?} after byte {}", self.at))?;
        // The line is ASCII (checked first), so any slice is a str.
        let out = core::str::from_utf8(&rest[..n]).unwrap_or_default();
        self.at += n + stop.len();
        Ok(out)
    }

    fn number(&mut self) -> Result<u64, String> {
        let rest = &self.s[self.at..];
        let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || (n > 1 && rest[0] == b'0') || n > 19 {
            return Err(format!("no decimal number at byte {}", self.at));
        }
        let v = core::str::from_utf8(&rest[..n])
            .unwrap_or_default()
            .parse()
            .map_err(|_| format!("a number out of range at byte {}", self.at))?;
        self.at += n;
        Ok(v)
    }

    /// A `"…"` string; `json` selects `\u00HH` over `\xHH`.
    fn quoted(&mut self, json: bool) -> Result<Vec<u8>, String> {
        self.eat("\"")?;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.at) else {
                return Err("an unterminated string".into());
            };
            self.at += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.s.get(self.at) else {
                        return Err("an escape at the end".into());
                    };
                    self.at += 1;
                    match e {
                        b'"' | b'\\' => out.push(e),
                        b'x' if !json => out.push(self.hex()?),
                        b'u' if json => {
                            self.eat("00")?;
                            out.push(self.hex()?);
                        }
                        _ => return Err(format!("an unknown escape \\{}", e as char)),
                    }
                }
                _ => out.push(c),
            }
        }
    }

    /// Two hex digits naming a byte that had to be escaped (not printable ASCII).
    fn hex(&mut self) -> Result<u8, String> {
        let n = 2;
        let digits = self.s.get(self.at..self.at + n).ok_or("a short escape")?;
        let v = u8::from_str_radix(core::str::from_utf8(digits).unwrap_or("?"), 16)
            .map_err(|_| "a bad hex escape".to_string())?;
        if (0x20..=0x7e).contains(&v) {
            return Err(format!("a printable byte {v:#04x} escaped"));
        }
        self.at += n;
        Ok(v)
    }

    fn done(&self) -> Result<(), String> {
        if self.at == self.s.len() {
            Ok(())
        } else {
            Err(format!("trailing bytes from {}", self.at))
        }
    }
}

fn dash(v: Vec<u8>) -> Option<Vec<u8>> {
    (v != b"-").then_some(v)
}

fn status(v: u64) -> Result<u16, String> {
    u16::try_from(v)
        .ok()
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| format!("status {v}"))
}

/// `HOST - USER [TIME] "REQUEST" STATUS BYTES` [`"REFERER" "USER-AGENT"`].
fn clf(line: &str, combined: bool) -> Result<Record, String> {
    let mut c = Cursor {
        s: line.as_bytes(),
        at: 0,
    };
    let peer = c
        .until(" - ")?
        .parse::<Ipv4Addr>()
        .map_err(|e| format!("host: {e}"))?;
    let user = c.until(" [")?.as_bytes().to_vec();
    let time = c.until("] ")?.to_string();
    let request = c.quoted(false)?;
    c.eat(" ")?;
    let status = status(c.number()?)?;
    c.eat(" ")?;
    let bytes = c.number()?;
    let (mut referer, mut agent) = (None, None);
    if combined {
        c.eat(" ")?;
        referer = dash(c.quoted(false)?);
        c.eat(" ")?;
        agent = dash(c.quoted(false)?);
    }
    c.done()?;
    Ok(Record {
        peer,
        user,
        time,
        request: dash(request),
        status,
        bytes,
        referer,
        agent,
    })
}

/// `{"time":…,"remote":…,"user":…,"request":…,"status":N,"bytes":N,"referer":…,
/// "user_agent":…}`, every key once.
fn json(line: &str) -> Result<Record, String> {
    const KEYS: [&str; 8] = [
        "time",
        "remote",
        "user",
        "request",
        "status",
        "bytes",
        "referer",
        "user_agent",
    ];
    let mut c = Cursor {
        s: line.as_bytes(),
        at: 0,
    };
    let mut strings: [Option<Vec<u8>>; 8] = Default::default();
    let mut numbers: [Option<u64>; 8] = [None; 8];
    c.eat("{")?;
    loop {
        let key = c.quoted(true)?;
        let i = KEYS
            .iter()
            .position(|k| k.as_bytes() == key)
            .ok_or_else(|| format!("an unknown key {:?}", String::from_utf8_lossy(&key)))?;
        if strings[i].is_some() || numbers[i].is_some() {
            return Err(format!("the key {} twice", KEYS[i]));
        }
        c.eat(":")?;
        if matches!(KEYS[i], "status" | "bytes") {
            numbers[i] = Some(c.number()?);
        } else {
            strings[i] = Some(c.quoted(true)?);
        }
        if c.eat(",").is_err() {
            c.eat("}")?;
            break;
        }
    }
    c.done()?;
    let mut take = |i: usize| strings[i].take().ok_or_else(|| format!("no {}", KEYS[i]));
    let time = String::from_utf8(take(0)?).map_err(|_| "time")?;
    let remote = take(1)?;
    let user = take(2)?;
    let request = take(3)?;
    let referer = take(6)?;
    let agent = take(7)?;
    let peer = String::from_utf8_lossy(&remote)
        .parse::<Ipv4Addr>()
        .map_err(|e| format!("remote: {e}"))?;
    let empty = |v: Vec<u8>| (!v.is_empty()).then_some(v);
    Ok(Record {
        peer,
        user,
        time,
        request: empty(request),
        status: status(numbers[4].ok_or("no status")?)?,
        bytes: numbers[5].ok_or("no bytes")?,
        referer: empty(referer),
        agent: empty(agent),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_format_and_undoes_escapes() {
        let r = parse(
            "10.0.0.7 - - [14/Nov/2023:22:13:20 +0000] \"GET /a\\\"b\\xFF HTTP/1.1\" 200 12",
            LogFormat::Common,
        )
        .unwrap();
        assert_eq!(r.peer, Ipv4Addr::new(10, 0, 0, 7));
        assert_eq!(r.user, b"-");
        assert_eq!(r.time, "14/Nov/2023:22:13:20 +0000");
        assert_eq!(r.request.as_deref(), Some(&b"GET /a\"b\xff HTTP/1.1"[..]));
        assert_eq!((r.status, r.bytes), (200, 12));

        let r = parse(
            "127.0.0.1 - - [14/Nov/2023:22:13:20 +0000] \"-\" 400 0 \"-\" \"weir-sim\"",
            LogFormat::Combined,
        )
        .unwrap();
        assert_eq!(r.request, None);
        assert_eq!(r.referer, None);
        assert_eq!(r.agent.as_deref(), Some(&b"weir-sim"[..]));

        let r = parse(
            "{\"time\":\"14/Nov/2023:22:13:20 +0000\",\"remote\":\"10.1.2.3\",\"user\":\"-\",\
             \"request\":\"HEAD /\\u0001 HTTP/1.0\",\"status\":304,\"bytes\":0,\"referer\":\"\",\
             \"user_agent\":\"\"}",
            LogFormat::Json,
        )
        .unwrap();
        assert_eq!(r.request.as_deref(), Some(&b"HEAD /\x01 HTTP/1.0"[..]));
        assert_eq!((r.status, r.bytes, r.agent), (304, 0, None));
    }

    #[test]
    fn refuses_what_a_strict_reader_must() {
        let ok = "10.0.0.7 - - [14/Nov/2023:22:13:20 +0000] \"GET / HTTP/1.1\" 200 12";
        assert!(parse(ok, LogFormat::Common).is_ok());
        for bad in [
            // A raw quote would let a client forge fields.
            "10.0.0.7 - - [14/Nov/2023:22:13:20 +0000] \"GET /\"x HTTP/1.1\" 200 12",
            // A printable byte escaped, an unknown escape, a control byte.
            "10.0.0.7 - - [14/Nov/2023:22:13:20 +0000] \"GET /\\x41 HTTP/1.1\" 200 12",
            "10.0.0.7 - - [14/Nov/2023:22:13:20 +0000] \"GET /\\n HTTP/1.1\" 200 12",
            "10.0.0.7 - - [14/Nov/2023:22:13:20 +0000] \"GET /\x01 HTTP/1.1\" 200 12",
            // Numbers: leading zero, missing, status out of range; trailing bytes.
            "10.0.0.7 - - [14/Nov/2023:22:13:20 +0000] \"GET / HTTP/1.1\" 200 012",
            "10.0.0.7 - - [14/Nov/2023:22:13:20 +0000] \"GET / HTTP/1.1\" 200",
            "10.0.0.7 - - [14/Nov/2023:22:13:20 +0000] \"GET / HTTP/1.1\" 999 1",
            "10.0.0.7 - - [14/Nov/2023:22:13:20 +0000] \"GET / HTTP/1.1\" 200 1 x",
            "not-an-address - - [14/Nov/2023:22:13:20 +0000] \"GET / HTTP/1.1\" 200 1",
        ] {
            assert!(parse(bad, LogFormat::Common).is_err(), "{bad}");
        }
        // Combined needs both quoted fields; JSON every key exactly once.
        assert!(parse(ok, LogFormat::Combined).is_err());
        assert!(parse("{\"time\":\"x\"}", LogFormat::Json).is_err());
        assert!(parse(
            "{\"time\":\"t\",\"time\":\"t\",\"remote\":\"10.0.0.7\",\"user\":\"-\",\"request\":\"\",\
             \"status\":200,\"bytes\":0,\"referer\":\"\",\"user_agent\":\"\"}",
            LogFormat::Json
        )
        .is_err());
    }

    #[test]
    fn clf_time_matches_the_common_log_format() {
        assert_eq!(clf_time(971_186_136), "10/Oct/2000:13:55:36 +0000");
    }
}
