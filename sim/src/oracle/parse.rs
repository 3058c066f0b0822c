//! A strict reader of the bytes a client receives: HTTP/1.1 responses, nothing else.
//!
//! # Theory of operation
//!
//! Clients in the simulation read like a pedantic user agent, so that anything a lenient
//! one would paper over shows up as a failure (RFC 9112):
//!
//! * the status line is exactly `HTTP/1.1 SP 3DIGIT SP reason CRLF`;
//! * every field line is `token ":" OWS value OWS CRLF` with a visible-ASCII value, lines
//!   end in CRLF, never bare LF or CR, and there is no obs-fold;
//! * `Date` (an IMF-fixdate) and `Server` are present in every final response;
//! * framing is unambiguous: never both `Content-Length` and `Transfer-Encoding`, one
//!   decimal `Content-Length`, `Transfer-Encoding` exactly `chunked`, never chunked to an
//!   HTTP/1.0 client; a body that is not framed at all is an error, because the server
//!   knows its lengths — except a script's streamed answer to HTTP/1.0, which only the
//!   close can delimit (`Framing::close_ok`, read whole by `at_close`);
//! * a response to HEAD, a 1xx, 204 and 304 carry no body (§6.3 rule 1), whatever their
//!   fields say (except a 408: the server gave up before it could read the method);
//! * chunked bodies have hexadecimal sizes, CRLF after each chunk, and end with `0`.
//!
//! The reader is incremental: `next` returns `Ok(None)` until a whole response is buffered.

/// One response as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Fields in order, names lower-cased.
    pub fields: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of field `name` (lower-case).
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of field `name`.
    pub fn fields_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// True if the response says the connection closes after it.
    #[must_use]
    pub fn closes(&self) -> bool {
        self.fields_named("connection")
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("close"))
    }

    /// A one-line summary for reports.
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

/// What the reader needs to know about the request a response answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    /// The request was HEAD.
    pub head: bool,
    /// The request was HTTP/1.0.
    pub http10: bool,
    /// The body may be delimited by the connection's close (a CGI script's for HTTP/1.0).
    pub close_ok: bool,
}

/// Longest head the reader accepts: a server that sends more is broken.
const HEAD_MAX: usize = 64 * 1024;

/// Parses one response from the start of `buf`: `Ok(Some((response, bytes used)))`,
/// `Ok(None)` when more bytes are needed, or what is wrong.
pub fn next(buf: &[u8], framing: Framing) -> Result<Option<(Response, usize)>, String> {
    read(buf, framing, false)
}

/// The connection ended with `buf` unread: a response whose body the close delimits, if
/// that is what it is (`Ok(None)` if it is incomplete some other way).
pub fn at_close(buf: &[u8], framing: Framing) -> Result<Option<Response>, String> {
    Ok(read(buf, framing, true)?.map(|(r, _)| r))
}

fn read(buf: &[u8], framing: Framing, closed: bool) -> Result<Option<(Response, usize)>, String> {
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
    let status = status_line(lines[0])?;
    let mut fields = Vec::new();
    for l in &lines[1..] {
        fields.push(field_line(l)?);
    }
    let mut r = Response {
        status,
        fields,
        body: Vec::new(),
    };
    let body_start = head_end + 4;
    let interim = (100..200).contains(&status);
    if !interim {
        let date = r.field("date").ok_or("no Date field")?;
        if httpdate::parse_http_date(date).is_err() || date.len() != 29 {
            return Err(format!("Date is not an IMF-fixdate: {date:?}"));
        }
        r.field("server").ok_or("no Server field")?;
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
    // A 408 answers a request the server never finished reading, so it cannot know the
    // request was a HEAD (and the client cannot know when the server gave up): its body
    // is framed as usual.
    let head = framing.head && status != 408;
    if head || interim || status == 204 || status == 304 {
        if status == 204 && (length.is_some() || !te.is_empty()) {
            return Err("204 with framing fields".into());
        }
        return Ok(Some((r, body_start)));
    }
    let rest = &buf[body_start..];
    if let Some(n) = length {
        let n = usize::try_from(n).map_err(|_| "absurd Content-Length")?;
        if rest.len() < n {
            return Ok(None);
        }
        r.body = rest[..n].to_vec();
        return Ok(Some((r, body_start + n)));
    }
    if te.is_empty() && framing.close_ok && framing.http10 {
        if !closed {
            return Ok(None);
        }
        if !r.closes()
            && r.fields_named("connection")
                .any(|v| v.contains("keep-alive"))
        {
            return Err("a body delimited by the close, with Connection: keep-alive".into());
        }
        r.body = rest.to_vec();
        return Ok(Some((r, buf.len())));
    }
    if te.is_empty() {
        return Err(format!(
            "{status} response with no framing (no length, not chunked)"
        ));
    }
    match dechunk(rest)? {
        None => Ok(None),
        Some((body, used)) => {
            r.body = body;
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

fn status_line(l: &[u8]) -> Result<u16, String> {
    let text = core::str::from_utf8(l).map_err(|_| "status line is not ASCII")?;
    let bad = || format!("bad status line {text:?}");
    let rest = text.strip_prefix("HTTP/1.1 ").ok_or_else(bad)?;
    let (code, reason) = rest.split_at_checked(3).ok_or_else(bad)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) || !reason.starts_with(' ') {
        return Err(bad());
    }
    if reason[1..]
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
    Ok(status)
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
        .any(|&b| !(b == b'\t' || (0x20..0x7f).contains(&b)))
    {
        return Err(format!("invalid byte in field value: {:?}", shown()));
    }
    // unwrap-free: checked ASCII above.
    Ok((
        String::from_utf8_lossy(name).to_ascii_lowercase(),
        String::from_utf8_lossy(value).into_owned(),
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

/// De-chunks a body: `Ok(None)` if incomplete.
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
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
            loop {
                let Some(eol) = find(&buf[at..], b"\r\n") else {
                    return Ok(None);
                };
                let line = &buf[at..at + eol];
                at += eol + 2;
                if line.is_empty() {
                    return Ok(Some((body, at)));
                }
                field_line(line)?;
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

/// Checks a multipart/byteranges body against the expected parts (RFC 9110 §14.6).
pub fn multipart(
    body: &[u8],
    content_type: &str,
    parts: &[(u64, u64, bytes::Bytes)],
    len: u64,
) -> Result<(), String> {
    let boundary = content_type
        .split_once("boundary=")
        .map(|(_, b)| b.trim_matches('"'))
        .ok_or("no boundary")?;
    let delimiter = format!("--{boundary}");
    let mut at = 0;
    for (first, last, data) in parts {
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
    const DATE: &str = "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: weir\r\n";

    #[test]
    fn reads_length_and_chunked_bodies_incrementally() {
        let r = format!("HTTP/1.1 200 OK\r\n{DATE}Content-Length: 3\r\n\r\nabcHTTP");
        assert_eq!(next(&r.as_bytes()[..20], F), Ok(None));
        let (resp, used) = next(r.as_bytes(), F).unwrap().unwrap();
        assert_eq!((resp.status, resp.body.as_slice()), (200, &b"abc"[..]));
        assert_eq!(&r.as_bytes()[used..], b"HTTP");
        let c = format!(
            "HTTP/1.1 200 OK\r\n{DATE}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        );
        let (resp, used) = next(c.as_bytes(), F).unwrap().unwrap();
        assert_eq!((resp.body.as_slice(), used), (&b"abc"[..], c.len()));
    }

    #[test]
    fn refuses_what_a_strict_client_must() {
        let bad = [
            format!("HTTP/1.0 200 OK\r\n{DATE}Content-Length: 0\r\n\r\n"),
            format!(
                "HTTP/1.1 200 OK\r\n{DATE}Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            format!("HTTP/1.1 200 OK\r\n{DATE}Content-Length: 1, 1\r\n\r\nx"),
            format!("HTTP/1.1 200 OK\r\n{DATE}X: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
            format!("HTTP/1.1 200 OK\r\n{DATE}\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_string(),
            format!("HTTP/1.1 200 OK\r\n{DATE}X: a\rb\r\nContent-Length: 0\r\n\r\n"),
        ];
        for b in &bad {
            assert!(next(b.as_bytes(), F).is_err(), "accepted {b:?}");
        }
        assert!(next(b"garbage", F).is_err());
        let h = format!("HTTP/1.1 200 OK\r\n{DATE}Content-Length: 5\r\n\r\n");
        let head = Framing {
            head: true,
            http10: false,
            close_ok: false,
        };
        assert_eq!(next(h.as_bytes(), head).unwrap().unwrap().1, h.len());
    }

    #[test]
    fn multipart_parts_are_checked() {
        let body = b"\r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-0/10\r\n\r\n0\r\n--B\r\nContent-Range: bytes 8-9/10\r\n\r\n89\r\n--B--\r\n";
        let parts = vec![
            (0, 0, bytes::Bytes::from_static(b"0")),
            (8, 9, bytes::Bytes::from_static(b"89")),
        ];
        assert_eq!(
            multipart(body, "multipart/byteranges; boundary=B", &parts, 10),
            Ok(())
        );
        let wrong = vec![(0, 0, bytes::Bytes::from_static(b"1"))];
        assert!(multipart(body, "multipart/byteranges; boundary=B", &wrong, 10).is_err());
    }
}
