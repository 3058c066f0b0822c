//! A strict reader of the bytes a client receives: HTTP/1.1 responses, nothing else.
//!
//! # Theory of operation
//!
//! The reader is a pedantic user agent, so that anything a lenient one would paper over
//! shows up as a failure (RFC 9112):
//!
//! * the status line is exactly `HTTP/1.1 SP 3DIGIT SP reason CRLF`, the reason visible
//!   ASCII, space or tab;
//! * every field line is `token ":" OWS value OWS CRLF`, the value visible ASCII, space,
//!   tab or obs-text (RFC 9110 §5.5: bytes 0x80–0xFF, which a recipient keeps as opaque
//!   data; they are read as Latin-1, so that the value's `String` maps back to the exact
//!   bytes), lines end in CRLF, never bare LF or CR, and there is no obs-fold;
//! * every final response has exactly one `Date`, an IMF-fixdate ([`crate::date`]), and
//!   exactly one `Server`;
//! * framing is unambiguous: never both `Content-Length` and `Transfer-Encoding`, one
//!   decimal `Content-Length`, `Transfer-Encoding` exactly `chunked`, never chunked to an
//!   HTTP/1.0 client, neither in a 1xx or a 204; a body that is not framed at all is an
//!   error, because weir knows its lengths — except a script's streamed answer to
//!   HTTP/1.0, which only the close can delimit ([`Framing::close_ok`], read whole once
//!   the caller says the connection ended);
//! * a response to HEAD, a 1xx, 204 and 304 carry no body (§6.3 rule 1), whatever their
//!   fields say (except a 408: the server gave up before it could read the method);
//! * chunked bodies have hexadecimal sizes, CRLF after each chunk, and end with `0` and a
//!   trailer section of valid field lines.
//!
//! It is incremental and holds no state: [`next`] looks at the bytes received so far and
//! returns `Ok(None)` until a whole response is there, then the response and how many
//! bytes it took, so the caller drains them and calls again for a pipelined one. Interim
//! (1xx) responses come back like final ones ([`Response::is_interim`]); the caller reads
//! again for the final answer. What it needs to know of the request — HEAD, HTTP/1.0,
//! whether the close may end the body — the caller says in a [`Framing`]. When the
//! connection has ended, [`at_close`] (or [`read`] with `closed`) also returns a body the
//! close delimits. Bytes that can never become a valid response are refused as soon as
//! they are seen, with a message saying which rule they break.

use std::fmt;

use crate::date;

/// How a response's body was delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Delimiter {
    /// No body could follow (HEAD, 1xx, 204, 304).
    None,
    /// `Content-Length`.
    Length,
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The end of the connection.
    Close,
}

/// One response as received.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The reason phrase (possibly empty).
    pub reason: String,
    /// Fields in order, names lower-cased, values without the whitespace around them (any
    /// obs-text byte as the Latin-1 character of the same number).
    pub fields: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// The trailer section of a chunked body, like `fields`.
    pub trailers: Vec<(String, String)>,
    /// How the body was delimited.
    pub delimiter: Delimiter,
}

impl Response {
    /// The first value of field `name` (any case).
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of field `name` (any case), in order.
    pub fn fields_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How many times field `name` (any case) appears.
    #[must_use]
    pub fn count(&self, name: &str) -> usize {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// True if some value of field `name` lists `token` (comma-separated, any case).
    #[must_use]
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.fields_named(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// True if the response says the connection closes after it.
    #[must_use]
    pub fn closes(&self) -> bool {
        self.has_token("connection", "close")
    }

    /// True for a 1xx: an interim response, with the final one still to come.
    #[must_use]
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status)
    }

    /// The value of a field that must appear at most once.
    ///
    /// # Panics
    /// If the field appears more than once (a test assertion).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        let n = self.count(name);
        assert!(n <= 1, "field {name} appears {n} times in\n{self}");
        self.field(name)
    }

    /// The value of a field that must appear exactly once.
    ///
    /// # Panics
    /// If it does not (a test assertion).
    #[must_use]
    pub fn expect_header(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("no {name} field in\n{self}"))
    }

    /// Returns `self` if the status is `want`.
    ///
    /// # Panics
    /// If it is not (a test assertion).
    pub fn assert_status(&self, want: u16) -> &Self {
        assert_eq!(self.status, want, "expected status {want}, got:\n{self}");
        self
    }

    /// A one-line summary for reports: status, the fields but `Date` and `Server`, and the
    /// start of the body. (`Display` shows everything.)
    #[must_use]
    pub fn summary(&self) -> String {
        let fields: Vec<String> = self
            .fields
            .iter()
            .filter(|(n, _)| n != "date" && n != "server")
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        format!(
            "{} [{}] body {} bytes {:?}",
            self.status,
            fields.join("; "),
            self.body.len(),
            String::from_utf8_lossy(&self.body[..self.body.len().min(80)])
        )
    }
}

/// The status line, every field and trailer, and the start of the body: for assertion
/// messages.
impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "HTTP/1.1 {} {}", self.status, self.reason)?;
        for (n, v) in &self.fields {
            writeln!(f, "{n}: {v}")?;
        }
        write!(f, "[body ({:?}): {}]", self.delimiter, preview(&self.body))?;
        for (n, v) in &self.trailers {
            write!(f, "\n{n}: {v}")?;
        }
        Ok(())
    }
}

/// A short printable rendering of bytes for messages: CR and LF escaped, other bytes
/// outside printable ASCII in hex, at most 300 bytes shown.
#[must_use]
pub fn preview(bytes: &[u8]) -> String {
    const MAX: usize = 300;
    let mut s = String::new();
    for &b in &bytes[..bytes.len().min(MAX)] {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > MAX {
        s.push_str(&format!("… ({} bytes)", bytes.len()));
    }
    s
}

/// What the reader needs to know about the request a response answers. The default is a
/// GET over HTTP/1.1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Framing {
    /// The request was HEAD.
    pub head: bool,
    /// The request was HTTP/1.0.
    pub http10: bool,
    /// The body may be delimited by the connection's close if the request was HTTP/1.0
    /// (a script's streamed answer).
    pub close_ok: bool,
}

/// Longest head the reader accepts: a server that sends more is broken.
pub const HEAD_MAX: usize = 64 * 1024;

/// Parses one response from the start of `buf`: `Ok(Some((response, bytes used)))`,
/// `Ok(None)` when more bytes are needed, or what is wrong.
///
/// # Errors
/// The rule the bytes break.
pub fn next(buf: &[u8], framing: Framing) -> Result<Option<(Response, usize)>, String> {
    read(buf, framing, false)
}

/// The connection ended with `buf` unread: the response at its start, including one whose
/// body the close delimits (`Ok(None)` if it is incomplete some other way).
///
/// # Errors
/// The rule the bytes break.
pub fn at_close(buf: &[u8], framing: Framing) -> Result<Option<Response>, String> {
    Ok(read(buf, framing, true)?.map(|(r, _)| r))
}

/// [`next`] before the connection ended, [`at_close`] after it (`closed`), keeping the
/// count of bytes used either way (a caller reading several responses off a closed
/// connection needs it).
///
/// # Errors
/// The rule the bytes break.
pub fn read(
    buf: &[u8],
    framing: Framing,
    closed: bool,
) -> Result<Option<(Response, usize)>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > HEAD_MAX {
            return Err(format!("response head longer than {HEAD_MAX} bytes"));
        }
        // Refuse what can never become valid as soon as it is seen.
        check_prefix(buf)?;
        return Ok(None);
    };
    let head = &buf[..head_end + 2];
    let mut lines = Vec::new();
    let mut start = 0;
    while start < head.len() {
        let Some(rel) = find(&head[start..], b"\r\n") else {
            return Err("a head line does not end in CRLF".into());
        };
        lines.push(&head[start..start + rel]);
        start += rel + 2;
    }
    for l in &lines {
        if l.iter().any(|&b| b == b'\r' || b == b'\n') {
            return Err(format!("bare CR or LF in {:?}", String::from_utf8_lossy(l)));
        }
    }
    let (status, reason) = status_line(lines[0])?;
    let mut fields = Vec::new();
    for l in &lines[1..] {
        fields.push(field_line(l)?);
    }
    let mut r = Response {
        status,
        reason,
        fields,
        body: Vec::new(),
        trailers: Vec::new(),
        delimiter: Delimiter::None,
    };
    let body_start = head_end + 4;
    let interim = r.is_interim();
    if !interim {
        let dates: Vec<&str> = r.fields_named("date").collect();
        let [date] = dates.as_slice() else {
            return Err(format!("{} Date fields, not one", dates.len()));
        };
        if date::parse_imf_fixdate(date).is_none() {
            return Err(format!("Date is not an IMF-fixdate: {date:?}"));
        }
        if r.count("server") != 1 {
            return Err(format!("{} Server fields, not one", r.count("server")));
        }
    }
    let lengths: Vec<&str> = r.fields_named("content-length").collect();
    let te: Vec<&str> = r.fields_named("transfer-encoding").collect();
    if !lengths.is_empty() && !te.is_empty() {
        return Err("both Content-Length and Transfer-Encoding".into());
    }
    if lengths.len() > 1 {
        return Err("Content-Length repeated".into());
    }
    if te.len() > 1 || te.first().is_some_and(|t| *t != "chunked") {
        return Err(format!("Transfer-Encoding {te:?} is not exactly `chunked`"));
    }
    if framing.http10 && !te.is_empty() {
        return Err("chunked response to an HTTP/1.0 request".into());
    }
    let length = match lengths.first() {
        Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) && l.len() < 19 => {
            // unwrap: at most 18 digits always fit.
            Some(l.parse::<u64>().unwrap())
        }
        Some(l) => return Err(format!("Content-Length {l:?} is not a number")),
        None => None,
    };
    // RFC 9110 §8.6 and RFC 9112 §6.1: neither framing field in a 1xx or a 204.
    if (interim || status == 204) && (length.is_some() || !te.is_empty()) {
        return Err(format!("{status} with framing fields"));
    }
    // A 408 answers a request the server never finished reading, so it cannot know the
    // request was a HEAD (and the client cannot know when the server gave up): its body
    // is framed as usual.
    let head = framing.head && status != 408;
    if head || interim || status == 204 || status == 304 {
        return Ok(Some((r, body_start)));
    }
    let rest = &buf[body_start..];
    if let Some(n) = length {
        let n = usize::try_from(n).map_err(|_| "absurd Content-Length")?;
        if rest.len() < n {
            return Ok(None);
        }
        r.body = rest[..n].to_vec();
        r.delimiter = Delimiter::Length;
        return Ok(Some((r, body_start + n)));
    }
    if te.is_empty() && framing.close_ok && framing.http10 {
        if !closed {
            return Ok(None);
        }
        if !r.closes() && r.has_token("connection", "keep-alive") {
            return Err("a body delimited by the close, with Connection: keep-alive".into());
        }
        r.body = rest.to_vec();
        r.delimiter = Delimiter::Close;
        return Ok(Some((r, buf.len())));
    }
    if te.is_empty() {
        return Err(format!(
            "{status} response with no framing (no length, not chunked)"
        ));
    }
    match dechunk(rest)? {
        None => Ok(None),
        Some((body, trailers, used)) => {
            r.body = body;
            r.trailers = trailers;
            r.delimiter = Delimiter::Chunked;
            Ok(Some((r, body_start + used)))
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Rejects a partial head that is already wrong (so a broken server fails fast).
fn check_prefix(buf: &[u8]) -> Result<(), String> {
    let want = b"HTTP/1.1 ";
    let n = buf.len().min(want.len());
    if buf[..n] != want[..n] {
        return Err(format!(
            "bytes that do not start a response: {:?}",
            String::from_utf8_lossy(&buf[..buf.len().min(40)])
        ));
    }
    Ok(())
}

fn status_line(l: &[u8]) -> Result<(u16, String), String> {
    let text = core::str::from_utf8(l).map_err(|_| "status line is not ASCII")?;
    let bad = || format!("bad status line {text:?}");
    let rest = text.strip_prefix("HTTP/1.1 ").ok_or_else(bad)?;
    let (code, reason) = rest.split_at_checked(3).ok_or_else(bad)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) || !reason.starts_with(' ') {
        return Err(bad());
    }
    let reason = &reason[1..];
    if reason
        .bytes()
        .any(|b| !(b == b'\t' || (0x20..0x7f).contains(&b)))
    {
        return Err(bad());
    }
    // unwrap: three ASCII digits.
    let status: u16 = code.parse().unwrap();
    if !(100..600).contains(&status) {
        return Err(bad());
    }
    Ok((status, reason.to_owned()))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn field_line(l: &[u8]) -> Result<(String, String), String> {
    let shown = || String::from_utf8_lossy(l).into_owned();
    if l.first().is_some_and(|&b| b == b' ' || b == b'\t') {
        return Err(format!("obs-fold or leading whitespace: {:?}", shown()));
    }
    let colon = l
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| format!("field line without a colon: {:?}", shown()))?;
    let (name, value) = (&l[..colon], &l[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(format!("invalid field name: {:?}", shown()));
    }
    let value = trim(value);
    if value
        .iter()
        .any(|&b| !(b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80))
    {
        return Err(format!("invalid byte in field value: {:?}", shown()));
    }
    // Lossless: the name is ASCII, and each byte of the value becomes the character of
    // the same number (Latin-1).
    Ok((
        String::from_utf8_lossy(name).to_ascii_lowercase(),
        value.iter().map(|&b| char::from(b)).collect(),
    ))
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// A de-chunked body and its trailer fields.
type Dechunked = (Vec<u8>, Vec<(String, String)>, usize);

/// De-chunks a body: the body, its trailers and the bytes used, or `Ok(None)` if
/// incomplete.
fn dechunk(buf: &[u8]) -> Result<Option<Dechunked>, String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = find(&buf[at..], b"\r\n") else {
            if buf.len() - at > 64 {
                return Err("chunk size line too long".into());
            }
            return Ok(None);
        };
        let line = &buf[at..at + eol];
        if line.contains(&b'\r') || line.contains(&b'\n') {
            return Err(format!(
                "bare CR or LF in the chunk size line {:?}",
                String::from_utf8_lossy(line)
            ));
        }
        let size_text = line.split(|&b| b == b';').next().unwrap_or(line);
        if size_text.is_empty()
            || !size_text.iter().all(u8::is_ascii_hexdigit)
            || size_text.len() > 15
        {
            return Err(format!(
                "bad chunk size line {:?}",
                String::from_utf8_lossy(line)
            ));
        }
        // unwrap: at most 15 hex digits.
        let size = usize::from_str_radix(core::str::from_utf8(size_text).unwrap(), 16).unwrap();
        at += eol + 2;
        if size == 0 {
            // Trailer section: field lines until an empty line.
            let mut trailers = Vec::new();
            loop {
                let Some(eol) = find(&buf[at..], b"\r\n") else {
                    if buf.len() - at > HEAD_MAX {
                        return Err(format!("trailer section longer than {HEAD_MAX} bytes"));
                    }
                    return Ok(None);
                };
                let line = &buf[at..at + eol];
                at += eol + 2;
                if line.is_empty() {
                    return Ok(Some((body, trailers, at)));
                }
                if line.contains(&b'\r') || line.contains(&b'\n') {
                    return Err(format!(
                        "bare CR or LF in the trailer {:?}",
                        String::from_utf8_lossy(line)
                    ));
                }
                trailers.push(field_line(line)?);
            }
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        at += size + 2;
    }
}

/// Checks a multipart/byteranges body against the expected parts (RFC 9110 §14.6): for
/// each part, in order, its first and last byte and its data; `len` is the whole
/// representation's length.
///
/// # Errors
/// What differs.
pub fn multipart<B: AsRef<[u8]>>(
    body: &[u8],
    content_type: &str,
    parts: &[(u64, u64, B)],
    len: u64,
) -> Result<(), String> {
    let boundary = content_type
        .split_once("boundary=")
        .map(|(_, b)| b.trim_matches('"'))
        .ok_or("no boundary")?;
    let delimiter = format!("--{boundary}");
    let mut at = 0;
    for (first, last, data) in parts {
        let data = data.as_ref();
        let d = find(&body[at..], delimiter.as_bytes()).ok_or("missing part delimiter")?;
        if body[at..at + d].iter().any(|&b| b != b'\r' && b != b'\n') {
            return Err("bytes before a part delimiter".into());
        }
        at += d + delimiter.len();
        let head_end = find(&body[at..], b"\r\n\r\n").ok_or("part head not terminated")?;
        let head = String::from_utf8_lossy(&body[at..at + head_end]).to_ascii_lowercase();
        let want = format!("content-range: bytes {first}-{last}/{len}");
        if !head.lines().any(|l| l.trim() == want) {
            return Err(format!("part head {head:?} lacks {want:?}"));
        }
        at += head_end + 4;
        let n = data.len();
        if body.len() < at + n || body[at..at + n] != data[..] {
            return Err(format!("part {first}-{last} data differs"));
        }
        at += n;
    }
    let end = format!("{delimiter}--");
    let d = find(&body[at..], end.as_bytes()).ok_or("missing closing delimiter")?;
    if body[at..at + d].iter().any(|&b| b != b'\r' && b != b'\n') {
        return Err("bytes before the closing delimiter".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Framing = Framing {
        head: false,
        http10: false,
        close_ok: false,
    };
    const HTTP10_CLOSE: Framing = Framing {
        head: false,
        http10: true,
        close_ok: true,
    };
    const DATE: &str = "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: weir\r\n";

    #[test]
    fn reads_length_and_chunked_bodies_incrementally() {
        let r = format!("HTTP/1.1 200 OK\r\n{DATE}Content-Length: 3\r\n\r\nabcHTTP");
        assert_eq!(next(&r.as_bytes()[..20], F), Ok(None));
        let (resp, used) = next(r.as_bytes(), F).unwrap().unwrap();
        assert_eq!((resp.status, resp.body.as_slice()), (200, &b"abc"[..]));
        assert_eq!(
            (resp.reason.as_str(), resp.delimiter),
            ("OK", Delimiter::Length)
        );
        assert_eq!(&r.as_bytes()[used..], b"HTTP");
        let c = format!(
            "HTTP/1.1 200 OK\r\n{DATE}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n"
        );
        for cut in 0..c.len() {
            assert_eq!(next(&c.as_bytes()[..cut], F), Ok(None), "cut at {cut}");
        }
        let (resp, used) = next(c.as_bytes(), F).unwrap().unwrap();
        assert_eq!((resp.body.as_slice(), used), (&b"abc"[..], c.len()));
        assert_eq!(resp.trailers, [("x-sum".to_owned(), "1".to_owned())]);
        assert_eq!(resp.delimiter, Delimiter::Chunked);
    }

    #[test]
    fn fields_are_found_in_any_case() {
        let r = format!(
            "HTTP/1.1 404 Not  Found\r\n{DATE}Content-Length: 0\r\nConnection: Keep-Alive, CLOSE\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
        );
        let (resp, _) = next(r.as_bytes(), F).unwrap().unwrap();
        assert_eq!(resp.reason, "Not  Found");
        assert_eq!(resp.field("CONTENT-length"), Some("0"));
        assert_eq!(resp.fields_named("X-a").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(resp.count("x-A"), 2);
        assert!(resp.closes() && resp.has_token("connection", "keep-alive"));
        assert_eq!(resp.expect_header("Server"), "weir");
        // obs-text is opaque data, kept byte for byte as Latin-1.
        let latin = [&r.as_bytes()[..r.len() - 2], b"X-B: caf\xe9\r\n\r\n"].concat();
        let (resp, _) = next(&latin, F).unwrap().unwrap();
        assert_eq!(resp.field("x-b"), Some("caf\u{e9}"));
        assert!(resp
            .summary()
            .starts_with("404 [content-length: 0; connection"));
        assert!(resp
            .to_string()
            .starts_with("HTTP/1.1 404 Not  Found\ndate: Sun"));
    }

    #[test]
    fn interim_responses_come_before_the_final_one() {
        let r = format!("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n{DATE}\r\n");
        let (interim, used) = next(r.as_bytes(), F).unwrap().unwrap();
        assert!(interim.is_interim() && interim.fields.is_empty());
        let (last, rest) = next(&r.as_bytes()[used..], F).unwrap().unwrap();
        assert_eq!((last.status, used + rest), (204, r.len()));
        assert!(!last.is_interim());
        // A 1xx must not carry framing fields, and a final response needs Date and Server.
        assert!(next(b"HTTP/1.1 103 Early\r\nContent-Length: 0\r\n\r\n", F).is_err());
        assert!(next(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", F).is_err());
    }

    #[test]
    fn only_the_close_ends_a_streamed_answer_to_http10() {
        let r = format!("HTTP/1.1 200 OK\r\n{DATE}Connection: close\r\n\r\nsome bytes");
        assert_eq!(next(r.as_bytes(), HTTP10_CLOSE), Ok(None));
        let (resp, used) = read(r.as_bytes(), HTTP10_CLOSE, true).unwrap().unwrap();
        assert_eq!((resp.body.as_slice(), used), (&b"some bytes"[..], r.len()));
        assert_eq!(resp.delimiter, Delimiter::Close);
        assert_eq!(at_close(r.as_bytes(), HTTP10_CLOSE), Ok(Some(resp)));
        // Not for HTTP/1.1, not unless the caller allows it, not with keep-alive.
        assert!(at_close(r.as_bytes(), F).is_err());
        let strict10 = Framing {
            close_ok: false,
            ..HTTP10_CLOSE
        };
        assert!(at_close(r.as_bytes(), strict10).is_err());
        let kept = r.replace("close", "keep-alive");
        assert!(at_close(kept.as_bytes(), HTTP10_CLOSE).is_err());
        // An incomplete length-delimited body stays incomplete at the close.
        let short = format!("HTTP/1.1 200 OK\r\n{DATE}Content-Length: 9\r\n\r\nabc");
        assert_eq!(at_close(short.as_bytes(), F), Ok(None));
    }

    #[test]
    fn refuses_what_a_strict_client_must() {
        let bad = [
            format!("HTTP/1.0 200 OK\r\n{DATE}Content-Length: 0\r\n\r\n"),
            format!("HTTP/1.1 200\r\n{DATE}Content-Length: 0\r\n\r\n"),
            format!("HTTP/1.1 600 Big\r\n{DATE}Content-Length: 0\r\n\r\n"),
            format!(
                "HTTP/1.1 200 OK\r\n{DATE}Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            format!("HTTP/1.1 200 OK\r\n{DATE}Content-Length: 1, 1\r\n\r\nx"),
            format!("HTTP/1.1 200 OK\r\n{DATE}Content-Length: 1\r\nContent-Length: 1\r\n\r\nx"),
            format!("HTTP/1.1 200 OK\r\n{DATE}Transfer-Encoding: gzip, chunked\r\n\r\n"),
            format!("HTTP/1.1 200 OK\r\n{DATE}X: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
            format!("HTTP/1.1 200 OK\r\n{DATE}\r\n"),
            format!("HTTP/1.1 204 No Content\r\n{DATE}Content-Length: 0\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_string(),
            format!("HTTP/1.1 200 OK\r\n{DATE}{DATE}Content-Length: 0\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nDate: Sunday, 06-Nov-94 08:49:37 GMT\r\nServer: weir\r\n\
             Content-Length: 0\r\n\r\n"
                .to_string(),
            format!("HTTP/1.1 200 OK\r\n{DATE}X: a\rb\r\nContent-Length: 0\r\n\r\n"),
            format!("HTTP/1.1 200 OK\r\n{DATE}X y: a\r\nContent-Length: 0\r\n\r\n"),
            format!("HTTP/1.1 200 OK\r\n{DATE}X: \x01\r\nContent-Length: 0\r\n\r\n"),
            format!("HTTP/1.1 200 OK\r\n{DATE}Transfer-Encoding: chunked\r\n\r\nz\r\n"),
            format!("HTTP/1.1 200 OK\r\n{DATE}Transfer-Encoding: chunked\r\n\r\n1\r\nab\r\n"),
            format!(
                "HTTP/1.1 200 OK\r\n{DATE}Transfer-Encoding: chunked\r\n\r\n0\r\nX y: 1\r\n\r\n"
            ),
        ];
        for b in &bad {
            assert!(next(b.as_bytes(), F).is_err(), "accepted {b:?}");
        }
        assert!(next(b"garbage", F).is_err());
        assert!(next(b"HTTP/1.1 200 OK\nDate: x\r\n\r\n", F).is_err());
        let chunked = format!("HTTP/1.1 200 OK\r\n{DATE}Transfer-Encoding: chunked\r\n\r\n");
        assert!(next(chunked.as_bytes(), HTTP10_CLOSE).is_err());
    }

    #[test]
    fn bodiless_responses_whatever_their_fields_say() {
        let head = Framing { head: true, ..F };
        let h = format!("HTTP/1.1 200 OK\r\n{DATE}Content-Length: 5\r\n\r\n");
        let (r, used) = next(h.as_bytes(), head).unwrap().unwrap();
        assert_eq!((used, r.delimiter), (h.len(), Delimiter::None));
        let nm = format!("HTTP/1.1 304 Not Modified\r\n{DATE}Content-Length: 5\r\n\r\n");
        assert_eq!(next(nm.as_bytes(), F).unwrap().unwrap().1, nm.len());
        // A 408 to a HEAD cut short has its body: the server never learnt the method.
        let t = format!("HTTP/1.1 408 Request Timeout\r\n{DATE}Content-Length: 2\r\n\r\nto");
        assert_eq!(next(t.as_bytes(), head).unwrap().unwrap().0.body, b"to");
    }

    #[test]
    fn multipart_parts_are_checked() {
        let body = b"\r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-0/10\r\n\r\n0\r\n--B\r\nContent-Range: bytes 8-9/10\r\n\r\n89\r\n--B--\r\n";
        let parts = [(0, 0, &b"0"[..]), (8, 9, &b"89"[..])];
        assert_eq!(
            multipart(body, "multipart/byteranges; boundary=B", &parts, 10),
            Ok(())
        );
        let wrong = [(0, 0, b"1".to_vec())];
        assert!(multipart(body, "multipart/byteranges; boundary=B", &wrong, 10).is_err());
    }

    #[test]
    fn preview_escapes_and_shortens() {
        assert_eq!(preview(b"a\r\n\x00"), "a\\r\\n\\x00");
        assert!(preview(&[b'x'; 400]).ends_with("… (400 bytes)"));
    }
}
