//! A script's output: the CGI response header section, parsed as it streams in.
//!
//! RFC 3875 §6: the script writes header fields, an empty line, then the body. Lines may
//! end in LF or CRLF. `Status` gives the status (default 200), `Location` makes a redirect,
//! `Content-Type` is required of a document response, and every other field is passed to
//! the client. The parser is strict, because what it accepts becomes a response header
//! section weir vouches for: a bare CR (header injection), an obs-fold line, a field name
//! that is not a token, a control byte in a value, an invalid `Status` or `Content-Length`,
//! or a section longer than the limit each make the script's answer a 502.
//!
//! The decision (RFC 3875 §6.2):
//!
//! ```text
//!   Location: /local/path[?q] and no Status   → local redirect: weir re-runs the rules
//!                                                 (a path no request target could be,
//!                                                 e.g. with a #fragment, is a 502)
//!   Location: scheme:…                          → client redirect (Status or 302)
//!   otherwise                                   → document (Status or 200); needs
//!                                                 Content-Type unless the status has no body
//! ```

use bytes::Bytes;

use crate::http1::head::trim_ows;

/// What the header section said.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CgiHead {
    /// From `Status`.
    pub status: Option<u16>,
    /// From `Location`.
    pub location: Option<Bytes>,
    /// From `Content-Length` (the script promises this many body bytes).
    pub content_length: Option<u64>,
    /// Every field to pass on (`Content-Type` and `Location` included).
    pub fields: Vec<(Bytes, Bytes)>,
}

/// What the client gets.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reply {
    /// A document (or a client redirect): status and fields.
    Document {
        /// The status.
        status: u16,
    },
    /// Re-run the rules for this path (with its query, if any) as a new GET.
    LocalRedirect(Bytes),
}

/// Why the output was refused (→ 502).
pub type BadOutput = &'static str;

/// Outcome of feeding bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The header section is not complete yet.
    NeedMore,
    /// The header section, and the body bytes that followed it in the same read.
    Head(CgiHead, Bytes),
    /// The output is not a valid CGI response.
    Bad(BadOutput),
}

/// Accumulates output until the end of the header section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct HeadParser {
    buf: Vec<u8>,
    /// Where the search for the empty line resumes.
    scanned: usize,
}

impl HeadParser {
    /// A parser with nothing yet.
    #[must_use]
    pub fn new() -> HeadParser {
        HeadParser::default()
    }

    /// Feeds the next bytes of output; `limit` bounds the header section.
    pub fn feed(&mut self, data: &[u8], limit: usize) -> Parsed {
        self.buf.extend_from_slice(data);
        let mut i = self.scanned;
        while i < self.buf.len() {
            if self.buf[i] == b'\n' {
                // An empty line: `\n` right at the start or after the previous line's end.
                let line_start = self.buf[..i]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1);
                let line = &self.buf[line_start..i];
                if line.is_empty() || line == b"\r" {
                    if line_start > limit {
                        return Parsed::Bad("the header section is too long");
                    }
                    let head = parse_fields(&self.buf[..line_start]);
                    let rest = Bytes::copy_from_slice(&self.buf[i + 1..]);
                    return match head {
                        Ok(h) => Parsed::Head(h, rest),
                        Err(e) => Parsed::Bad(e),
                    };
                }
            }
            i += 1;
        }
        self.scanned = self.buf.len();
        if self.buf.len() > limit {
            return Parsed::Bad("the header section is too long");
        }
        Parsed::NeedMore
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_fields(section: &[u8]) -> Result<CgiHead, BadOutput> {
    let mut head = CgiHead {
        status: None,
        location: None,
        content_length: None,
        fields: Vec::new(),
    };
    for line in section.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line.contains(&b'\r') {
            return Err("a bare CR in a header line");
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err("a folded header line");
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or("a header line without a colon")?;
        let (name, value) = (&line[..colon], trim_ows(&line[colon + 1..]));
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err("an invalid header field name");
        }
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err("a control byte in a header value");
        }
        let value = Bytes::copy_from_slice(value);
        if name.eq_ignore_ascii_case(b"status") {
            let code = value
                .get(..3)
                .and_then(|c| core::str::from_utf8(c).ok())
                .and_then(|c| c.parse::<u16>().ok());
            let well_formed = value.len() == 3 || value.get(3) == Some(&b' ');
            match code {
                Some(c) if (200..=599).contains(&c) && well_formed && head.status.is_none() => {
                    head.status = Some(c)
                }
                _ => return Err("an invalid Status field"),
            }
            continue;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = core::str::from_utf8(&value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            match n {
                Some(n) if head.content_length.is_none_or(|old| old == n) => {
                    head.content_length = Some(n)
                }
                _ => return Err("an invalid Content-Length field"),
            }
            continue;
        }
        if name.eq_ignore_ascii_case(b"location") {
            if head.location.is_some() {
                return Err("two Location fields");
            }
            head.location = Some(value.clone());
        }
        // The connection owns framing, and `Date`/`Server`; a script does not set them.
        let owned = [
            &b"connection"[..],
            b"transfer-encoding",
            b"keep-alive",
            b"date",
            b"server",
        ];
        if owned.iter().any(|o| name.eq_ignore_ascii_case(o)) {
            continue;
        }
        head.fields.push((Bytes::copy_from_slice(name), value));
    }
    Ok(head)
}

impl CgiHead {
    /// Decides what the client gets (see the module documentation).
    pub fn reply(&self) -> Result<Reply, BadOutput> {
        if let Some(loc) = &self.location {
            if loc.starts_with(b"/") && self.status.is_none() {
                return Ok(Reply::LocalRedirect(loc.clone()));
            }
            let has_scheme = loc.iter().position(|&b| b == b':').is_some_and(|i| {
                i > 0
                    && loc[0].is_ascii_alphabetic()
                    && loc[..i]
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            });
            if !has_scheme && !loc.starts_with(b"/") {
                return Err("a Location that is neither a path nor an absolute URL");
            }
            return Ok(Reply::Document {
                status: self.status.unwrap_or(302),
            });
        }
        let status = self.status.unwrap_or(200);
        let bodiless = status == 204 || status == 304;
        let typed = self
            .fields
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(b"content-type"));
        if !typed && !bodiless {
            return Err("no Content-Type field");
        }
        Ok(Reply::Document { status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(out: &[u8]) -> Parsed {
        HeadParser::new().feed(out, 1024)
    }

    fn head(out: &[u8]) -> (CgiHead, Bytes) {
        match parse(out) {
            Parsed::Head(h, rest) => (h, rest),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn documents() {
        let (h, rest) = head(b"Content-Type: text/plain\nX-A:  b \n\nbody\n");
        assert_eq!(h.reply(), Ok(Reply::Document { status: 200 }));
        assert_eq!(rest, &b"body\n"[..]);
        assert_eq!(
            h.fields,
            vec![
                (
                    Bytes::from_static(b"Content-Type"),
                    Bytes::from_static(b"text/plain")
                ),
                (Bytes::from_static(b"X-A"), Bytes::from_static(b"b"))
            ]
        );
        let (h, _) = head(
            b"Status: 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 3\r\n\r\nabc",
        );
        assert_eq!(
            (h.reply(), h.content_length),
            (Ok(Reply::Document { status: 404 }), Some(3))
        );
        let (h, _) = head(b"Status: 204\n\n");
        assert_eq!(h.reply(), Ok(Reply::Document { status: 204 }));
        let (h, _) = head(b"Connection: close\nContent-Type: a/b\nTransfer-Encoding: chunked\n\n");
        assert_eq!(h.fields.len(), 1, "framing fields are the connection's");
    }

    #[test]
    fn redirects() {
        let (h, _) = head(b"Location: /other/page?x=1\n\n");
        assert_eq!(
            h.reply(),
            Ok(Reply::LocalRedirect(Bytes::from_static(b"/other/page?x=1")))
        );
        let (h, _) = head(b"Location: https://example.com/\n\n");
        assert_eq!(h.reply(), Ok(Reply::Document { status: 302 }));
        let (h, _) = head(b"Status: 301 Moved\nLocation: /x\n\n");
        assert_eq!(h.reply(), Ok(Reply::Document { status: 301 }));
        let (h, _) = head(b"Location: nowhere\n\n");
        assert!(h.reply().is_err());
        // A scheme (RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )) is not empty and
        // starts with a letter.
        for bad in [
            &b"Location: :x\n\n"[..],
            b"Location: 1a:x\n\n",
            b"Location: +a:x\n\n",
        ] {
            let (h, _) = head(bad);
            assert!(h.reply().is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let (h, _) = head(b"Location: a1+-.:x\n\n");
        assert_eq!(h.reply(), Ok(Reply::Document { status: 302 }));
    }

    #[test]
    fn streaming_and_limits() {
        let mut p = HeadParser::new();
        assert_eq!(p.feed(b"Content-Type: a/b\r", 100), Parsed::NeedMore);
        assert_eq!(p.feed(b"\n\r", 100), Parsed::NeedMore);
        assert!(matches!(p.feed(b"\nrest", 100), Parsed::Head(_, r) if r == "rest"));
        let mut p = HeadParser::new();
        assert_eq!(
            p.feed(&[b'x'; 50], 40),
            Parsed::Bad("the header section is too long")
        );
    }

    #[test]
    fn a_header_section_of_exactly_the_limit_is_taken() {
        // "X: 12345\n" is 9 bytes: the section (without its empty line) is the limit.
        let mut p = HeadParser::new();
        assert_eq!(p.feed(b"X: 12345\n", 9), Parsed::NeedMore);
        assert!(
            matches!(p.feed(b"\nbody", 9), Parsed::Head(h, r) if r == "body" && h.fields.len() == 1)
        );
        // All of it at once, too.
        let mut p = HeadParser::new();
        assert!(matches!(p.feed(b"X: 12345\n\n", 9), Parsed::Head(..)));
        // One byte more is refused, whether the end has arrived or not.
        for more in [&b"X: 123456\n\n"[..], b"X: 123456\n"] {
            assert_eq!(
                HeadParser::new().feed(more, 9),
                Parsed::Bad("the header section is too long")
            );
        }
    }

    #[test]
    fn bad_output_is_refused() {
        for (out, why) in [
            (
                &b"Content-Type: a/b\rX-Injected: 1\n\n"[..],
                "a bare CR in a header line",
            ),
            (b"Content-Type: a/b\n folded\n\n", "a folded header line"),
            (b"no colon here\n\n", "a header line without a colon"),
            (b"Bad Name: x\n\n", "an invalid header field name"),
            (b"X: a\x01b\n\n", "a control byte in a header value"),
            (b"Status: abc\n\n", "an invalid Status field"),
            (b"Status: 99\n\n", "an invalid Status field"),
            (b"Status: 100 Continue\n\n", "an invalid Status field"),
            (b"Content-Length: -1\n\n", "an invalid Content-Length field"),
            // Rust's integer parser would take the sign; the field's grammar is digits only.
            (b"Content-Length: +5\n\n", "an invalid Content-Length field"),
            (b"Content-Length:\n\n", "an invalid Content-Length field"),
            (
                b"Content-Length: 1\nContent-Length: 2\n\n",
                "an invalid Content-Length field",
            ),
        ] {
            assert_eq!(
                parse(out),
                Parsed::Bad(why),
                "{}",
                String::from_utf8_lossy(out)
            );
        }
        let (h, _) = head(b"X-A: b\n\n");
        assert_eq!(h.reply(), Err("no Content-Type field"));
    }
}
