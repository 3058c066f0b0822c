//! Reading a request head: where it ends, what it says, and how its body is framed.
//!
//! # Theory of operation
//!
//! A head is read in two passes, and only the second one allocates:
//!
//! 1. [`HeadScan`] walks the buffered bytes once, byte by byte, remembering where it stopped so
//!    that a head arriving one byte at a time costs linear, not quadratic, time. It finds the
//!    empty line that ends the head and, on the way, refuses what must never reach a parser
//!    that might read it differently from the next hop (the anti-smuggling rules):
//!    * a CR not followed by LF, or an LF not preceded by CR (RFC 9112 §2.2 allows a recipient
//!      to accept a bare LF; weir does not, because it is exactly where parsers disagree);
//!    * a header line that begins with SP or HTAB: obs-fold (RFC 9112 §5.2, a server MUST
//!      reject or unfold it; weir rejects) or whitespace between the start-line and the first
//!      field (RFC 9112 §2.2, reject);
//!    * a request line longer than `request_line_max` (414, RFC 9112 §3), and a head longer
//!      than `header_bytes_max` (431, RFC 6585 §5), both judged as soon as the bytes arrive
//!      rather than when the head completes, so a peer can never make the buffer grow past
//!      its bound.
//!
//!    Empty lines before the request line are skipped (RFC 9112 §2.2) but stay in the buffer
//!    until the head is parsed, so that they count against `header_bytes_max`.
//!
//! 2. [`parse_head`] hands the complete head to httparse once, then turns the borrowed slices
//!    into owned `Bytes` that share the frozen input buffer, and adds the checks httparse
//!    leaves to its caller: the version (505), `Host` (RFC 9112 §3.2), and the framing of the
//!    body, decided in one place by [`body_framing`] in the order of RFC 9112 §6.3.
//!
//! What httparse already refuses in requests (checked by the tests below, since a lenient
//! upgrade of it would reopen a smuggling hole): whitespace between a field name and its
//! colon, an invalid field-name byte, NUL and other CTLs except HTAB in a field value,
//! multiple spaces in the request line, an invalid method token, CTLs in the target.
//! weir checks field values again anyway ([`valid_field_value`]): it is cheap and keeps the
//! rule in this file.
//!
//! Decisions recorded here:
//! * weir understands one transfer coding: bare `chunked`. A `Transfer-Encoding` (without
//!   `Content-Length`: with it, the request is 400 whatever the codings) that names any other
//!   coding — `gzip`, `identity` (no longer a transfer coding since RFC 7230, Appendix A.2),
//!   `xchunked`, `chunked;ext=1`, before `chunked` or after it — is 501 and the connection
//!   closes: RFC 9112 §6.1, "a server that receives a request message with a transfer coding
//!   it does not understand SHOULD respond with 501 (Not Implemented)". RFC 9112 §6.3 rule 4
//!   also covers `gzip` alone or `chunked, gzip` (chunked not final: MUST 400 and close);
//!   the two rules meet only on codings weir does not understand, and the more specific one
//!   wins, since a client can act on "not implemented" (resend without the coding) but not
//!   on "bad request". Either way nothing after the head is read as a request, which is
//!   what stops smuggling. The one list of understood codings that still leaves the length
//!   undetermined, `chunked, chunked`, is 400 (RFC 9112 §7.1: chunked MUST NOT be applied
//!   more than once), and so is a list with no coding at all or an element that is not a
//!   token (a quoted `"chunked"`): those are syntax errors, not unknown codings.
//! * `Content-Length` must appear once and hold one decimal number: a repeated field or a
//!   list, even of equal values, is 400. RFC 9110 §8.6 lets a recipient accept `5, 5`; weir
//!   does not, because some hop might not.
//! * A raw byte of 0x80 or above in the request target is accepted (as httparse does); the
//!   target normaliser decides what it means.

use bytes::Bytes;

use crate::http1::error::ProtocolError;
use crate::http1::head::{trim_ows, BodyKind, Header, Headers, Method, RequestHead, Version};
use crate::limits::Limits;

/// Shorthand for a protocol error.
pub(crate) const fn err(status: u16, reason: &'static str) -> ProtocolError {
    ProtocolError { status, reason }
}

/// Where a scan of the head (or of a chunked body's trailer section) has got to.
///
/// Kept between calls so that each buffered byte is looked at once.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HeadScan {
    /// Next byte to look at.
    pos: usize,
    /// Where the current line starts.
    line_start: usize,
    /// Where the head proper starts, after skipped empty lines.
    start: usize,
    /// Still skipping empty lines before the request line.
    leading: bool,
    /// The current line is the request line.
    in_request_line: bool,
}

/// A complete head found by [`HeadScan::scan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadEnd {
    /// Where the head starts (after skipped empty lines).
    pub start: usize,
    /// Just past the empty line that ends the head.
    pub end: usize,
}

impl HeadScan {
    /// A scanner for a request head (request line, fields, empty line).
    #[must_use]
    pub fn request() -> HeadScan {
        HeadScan {
            pos: 0,
            line_start: 0,
            start: 0,
            leading: true,
            in_request_line: true,
        }
    }

    /// A scanner for a trailer section (fields, empty line), RFC 9112 §7.1.2.
    #[must_use]
    pub fn trailers() -> HeadScan {
        HeadScan {
            pos: 0,
            line_start: 0,
            start: 0,
            leading: false,
            in_request_line: false,
        }
    }

    /// Looks at the bytes not yet seen. `buf` must be the same buffer as on earlier calls,
    /// possibly with more bytes appended.
    ///
    /// Returns the extent of the head once its empty line has arrived, `None` while it is
    /// incomplete, or the error that ends the connection.
    pub fn scan(
        &mut self,
        buf: &[u8],
        line_max: usize,
        bytes_max: usize,
    ) -> Result<Option<HeadEnd>, ProtocolError> {
        while self.pos < buf.len() {
            let b = buf[self.pos];
            // A CR is judged with the byte after it, which may not have arrived yet; the
            // CR itself counts against the bound first, so that a bad byte past the bound
            // never decides the verdict when the bytes arrive together.
            if b == b'\r' && self.pos + 1 > bytes_max {
                return Err(err(431, "request head too large"));
            }
            if self.leading {
                match b {
                    b'\r' => {
                        let Some(&next) = buf.get(self.pos + 1) else {
                            break;
                        };
                        if next != b'\n' {
                            return Err(err(400, "bare CR in the request head"));
                        }
                        self.pos += 2;
                        self.start = self.pos;
                        self.line_start = self.pos;
                        if self.pos > bytes_max {
                            return Err(err(431, "request head too large"));
                        }
                        continue;
                    }
                    b'\n' => return Err(err(400, "bare LF in the request head")),
                    _ => self.leading = false,
                }
            }
            match b {
                b'\r' => {
                    let Some(&next) = buf.get(self.pos + 1) else {
                        break;
                    };
                    if next != b'\n' {
                        return Err(err(400, "bare CR in the head"));
                    }
                    let line_len = self.pos - self.line_start;
                    if self.in_request_line {
                        if line_len > line_max {
                            return Err(err(414, "request line too long"));
                        }
                        self.in_request_line = false;
                    } else if line_len == 0 {
                        let end = self.pos + 2;
                        if end > bytes_max {
                            return Err(err(431, "request head too large"));
                        }
                        self.pos = end;
                        return Ok(Some(HeadEnd {
                            start: self.start,
                            end,
                        }));
                    }
                    self.pos += 2;
                    self.line_start = self.pos;
                    // The LF counts too, at once, not when the next byte arrives.
                    if self.pos > bytes_max {
                        return Err(err(431, "request head too large"));
                    }
                }
                b'\n' => return Err(err(400, "bare LF in the head")),
                b' ' | b'\t' if self.pos == self.line_start && !self.in_request_line => {
                    return Err(err(400, "obs-fold or whitespace before a field line"));
                }
                _ => {
                    // A run of ordinary bytes, up to the next CR or LF, at once. Limits are
                    // judged as if byte by byte, in order, so that the first violation
                    // decides whatever the split of the input (a bad byte after the limit
                    // must not win just because it arrived in the same read): both bounds
                    // grow with the position, so the first one the run reaches is the one
                    // the byte-by-byte walk would have hit first (the line bound is checked
                    // before the head bound at the same byte).
                    let run_end = memchr::memchr2(b'\r', b'\n', &buf[self.pos..])
                        .map_or(buf.len(), |i| self.pos + i);
                    let head_bound = bytes_max.saturating_add(1);
                    let line_bound = if self.in_request_line {
                        (self.line_start + line_max).saturating_add(1)
                    } else {
                        usize::MAX
                    };
                    if run_end >= line_bound.min(head_bound) {
                        return Err(if line_bound <= head_bound {
                            err(414, "request line too long")
                        } else {
                            err(431, "request head too large")
                        });
                    }
                    self.pos = run_end;
                }
            }
        }
        // No check of the request line's length here: every run of its bytes was judged
        // against the line bound above, so a line too long has been refused already.
        if buf.len() > bytes_max {
            return Err(err(431, "request head too large"));
        }
        Ok(None)
    }
}

/// True for a byte of `tchar` (RFC 9110 §5.6.2).
#[must_use]
pub fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// `tchar` as a table: field names are checked byte by byte on every head read and written.
const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

/// True if `v` is a valid field value: VCHAR, obs-text, SP and HTAB only (RFC 9110 §5.5), so
/// no NUL, CR, LF or other control byte.
#[must_use]
pub fn valid_field_value(v: &[u8]) -> bool {
    // Without an early exit the loop is branch-free (values are short; most are valid).
    v.iter().fold(true, |ok, &b| {
        ok & ((b >= b' ' && b != 0x7f) | (b == b'\t'))
    })
}

/// True if `n` is a valid field name (a non-empty token).
#[must_use]
pub fn valid_field_name(n: &[u8]) -> bool {
    !n.is_empty() && n.iter().all(|&b| is_tchar(b))
}

/// Turns httparse's borrowed fields into owned ones sharing `buf`, refusing invalid bytes.
fn own_fields(buf: &Bytes, fields: &[httparse::Header<'_>]) -> Result<Headers, ProtocolError> {
    let mut out = Vec::with_capacity(fields.len());
    for f in fields {
        let name = f.name.as_bytes();
        let value = trim_ows(f.value);
        if !valid_field_name(name) {
            return Err(err(400, "invalid field name"));
        }
        if !valid_field_value(value) {
            return Err(err(400, "invalid byte in a field value"));
        }
        // slice_ref cannot panic: httparse's slices all borrow from `buf` (and an empty one
        // is accepted wherever it points).
        out.push(Header {
            name: buf.slice_ref(name),
            value: buf.slice_ref(value),
        });
    }
    Ok(Headers(out))
}

/// Maps an httparse error to the answer it gets.
fn httparse_error(e: httparse::Error, head: &[u8]) -> ProtocolError {
    match e {
        httparse::Error::TooManyHeaders => err(431, "too many header fields"),
        httparse::Error::Version => version_error(head),
        httparse::Error::HeaderName => err(400, "invalid field name"),
        httparse::Error::HeaderValue => err(400, "invalid byte in a field value"),
        httparse::Error::NewLine => err(400, "invalid line ending"),
        httparse::Error::Token => err(400, "invalid method or request target"),
        httparse::Error::Status => err(400, "invalid request line"),
    }
}

/// The index of the minor digit if the request line ends in `HTTP/1.D` with D ≥ 2.
fn later_minor_version(head: &[u8]) -> Option<usize> {
    let line_end = head.windows(2).position(|w| w == b"\r\n")?;
    let line = &head[..line_end];
    (line.len() >= 9
        && line[line_end - 9] == b' '
        && line[line_end - 8..].starts_with(b"HTTP/1.")
        && (b'2'..=b'9').contains(&line[line_end - 1]))
    .then_some(line_end - 1)
}

/// httparse only knows `HTTP/1.0` and `HTTP/1.1`. A request line that is well formed but
/// names another major version (`HTTP/2.0`, `HTTP/0.9`) gets 505 (RFC 9110 §15.6.6);
/// anything else that failed on the version is garbage and gets 400.
fn version_error(head: &[u8]) -> ProtocolError {
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    let line = &head[..line_end];
    let mut parts = line.split(|&b| b == b' ');
    let well_formed = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => {
            valid_field_name(m)
                && !t.is_empty()
                && v.len() == 8
                && v.starts_with(b"HTTP/")
                && v[5].is_ascii_digit()
                && v[6] == b'.'
                && v[7].is_ascii_digit()
        }
        _ => false,
    };
    if well_formed {
        err(505, "HTTP version not supported")
    } else {
        err(400, "malformed request line")
    }
}

/// Parses a complete head (request line through the empty line) and judges it.
///
/// `head` holds exactly the bytes [`HeadScan`] delimited, from `start` to `end`.
pub fn parse_head(head: &Bytes, limits: &Limits) -> Result<RequestHead, ProtocolError> {
    // RFC 9110 §2.5: a higher minor version of a major version we implement is processed as
    // the highest minor version we know, so `HTTP/1.2` is read as `HTTP/1.1`.
    if let Some(at) = later_minor_version(head) {
        let mut patched = head.to_vec();
        patched[at] = b'1';
        return parse_head(&Bytes::from(patched), limits);
    }
    // Field slots on the stack for the usual limits; a larger `limit headers=` pays for a
    // heap allocation (httparse wants all slots up front).
    let mut stack = [httparse::EMPTY_HEADER; 128];
    let mut heap;
    let slots: &mut [httparse::Header<'_>] = if limits.headers_max <= stack.len() {
        &mut stack[..limits.headers_max]
    } else {
        heap = vec![httparse::EMPTY_HEADER; limits.headers_max];
        &mut heap
    };
    let mut req = httparse::Request::new(slots);
    match req.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        // The scanner found an end httparse does not agree with: never guess.
        Ok(_) => return Err(err(400, "malformed request head")),
        Err(e) => return Err(httparse_error(e, head)),
    }
    // unwrap-free: a Complete parse always fills method, path and version.
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(err(400, "malformed request line"));
    };
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let headers = own_fields(head, req.headers)?;
    let target = head.slice_ref(path.as_bytes());
    let body = body_framing(version, &headers, limits.body_max)?;
    let host = request_host(version, &target, &headers)?;
    let expects_continue =
        version == Version::Http11 && headers.has_token("expect", "100-continue");
    let keep_alive = match version {
        Version::Http11 => !headers.has_token("connection", "close"),
        Version::Http10 => {
            headers.has_token("connection", "keep-alive")
                && !headers.has_token("connection", "close")
        }
    };
    Ok(RequestHead {
        method: Method::from_bytes(method.as_bytes()),
        target,
        version,
        headers,
        host,
        body,
        expects_continue,
        keep_alive,
    })
}

/// Decides how a request body is delimited, or why the request must be refused, following
/// RFC 9112 §6.3 in order (rules 1, 2 and 7 concern responses only):
///
/// * rule 3: `Transfer-Encoding` and `Content-Length` together → 400 (the server MAY reject
///   instead of letting TE win, and must close either way; rejecting is what stops
///   request smuggling). `Transfer-Encoding` in an HTTP/1.0 request → 400 (RFC 9112 §6.1:
///   the framing is faulty).
/// * rule 4, with RFC 9112 §6.1 for codings weir does not understand (see the module
///   docs): exactly one coding, `chunked` → chunked; no coding, or an element whose name
///   is not a token → 400; `chunked` more than once → 400 (RFC 9112 §7.1); any other
///   coding, wherever it stands → 501.
/// * rule 5: `Content-Length` not exactly one field holding one decimal number fitting u64
///   → 400; above `body_max` → 413, judged here before any body byte is read.
/// * rule 6: neither → no body.
///
/// Every error here ends the connection (the connection machine closes after any
/// `ProtocolError`), so a 501 is as safe against smuggling as a 400.
pub fn body_framing(
    version: Version,
    headers: &Headers,
    body_max: u64,
) -> Result<BodyKind, ProtocolError> {
    let has_te = headers.contains("transfer-encoding");
    let cl_count = headers.get_all("content-length").count();
    if has_te && cl_count > 0 {
        return Err(err(400, "both Transfer-Encoding and Content-Length"));
    }
    if has_te {
        if version == Version::Http10 {
            return Err(err(400, "Transfer-Encoding in an HTTP/1.0 request"));
        }
        return transfer_codings(headers);
    }
    match cl_count {
        0 => Ok(BodyKind::None),
        1 => {
            // unwrap-free: get() is Some because count is 1.
            let Some(v) = headers.get("content-length") else {
                return Ok(BodyKind::None);
            };
            let n = parse_decimal(v).ok_or(err(400, "invalid Content-Length"))?;
            if n > body_max {
                return Err(err(413, "request body too large"));
            }
            if n == 0 {
                Ok(BodyKind::None)
            } else {
                Ok(BodyKind::Length(n))
            }
        }
        _ => Err(err(400, "more than one Content-Length")),
    }
}

/// Judges the `Transfer-Encoding` list of a request that has no `Content-Length`.
///
/// `Transfer-Encoding = #transfer-coding`, `transfer-coding = token *( OWS ";" OWS
/// transfer-parameter )` (RFC 9112 §6.1). Empty list elements are skipped (RFC 9110
/// §5.6.1); parameters are not parsed, since a coding with any parameter is one weir does
/// not understand and gets 501 whatever they say.
fn transfer_codings(headers: &Headers) -> Result<BodyKind, ProtocolError> {
    let mut codings = 0usize;
    let mut chunked = 0usize;
    for value in headers.get_all("transfer-encoding") {
        for element in value.split(|&b| b == b',').map(trim_ows) {
            if element.is_empty() {
                continue;
            }
            let name = trim_ows(element.split(|&b| b == b';').next().unwrap_or(element));
            if !valid_field_name(name) {
                return Err(err(400, "invalid transfer coding"));
            }
            codings += 1;
            if element.eq_ignore_ascii_case(b"chunked") {
                chunked += 1;
            }
        }
    }
    if codings == 0 {
        return Err(err(400, "empty Transfer-Encoding"));
    }
    if chunked > 1 {
        return Err(err(400, "chunked applied more than once"));
    }
    if codings > chunked {
        return Err(err(501, "transfer coding not implemented"));
    }
    Ok(BodyKind::Chunked)
}

/// `1*DIGIT` as a u64, or `None` when empty, not all digits, or too large.
fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// The host a request is for (RFC 9112 §3.2, §3.2.2).
///
/// An HTTP/1.1 request must carry exactly one `Host`; any request may carry at most one and
/// it must be a valid `uri-host [ ":" port ]` (or empty, meaning the target has no
/// authority). An absolute-form target's authority wins over `Host` (RFC 9112 §3.2.2),
/// though `Host` is still required in 1.1.
fn request_host(
    version: Version,
    target: &Bytes,
    headers: &Headers,
) -> Result<Option<Bytes>, ProtocolError> {
    let mut hosts = headers.get_all("host");
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(err(400, "more than one Host"));
    }
    if version == Version::Http11 && host.is_none() {
        return Err(err(400, "missing Host"));
    }
    if let Some(h) = host {
        if !h.is_empty() && !valid_authority(h) {
            return Err(err(400, "invalid Host"));
        }
    }
    if let Some(authority) = absolute_form_authority(target) {
        if authority.is_empty() || !valid_authority(authority) {
            return Err(err(400, "invalid authority in the request target"));
        }
        return Ok(Some(target.slice_ref(authority)));
    }
    Ok(host.filter(|h| !h.is_empty()).cloned())
}

/// The authority of an absolute-form target (`scheme "://" authority path…`), if it is one
/// (not checked: `request_host` judges it). `weir route` takes a URL's host from it.
#[must_use]
pub fn absolute_form_authority(target: &[u8]) -> Option<&[u8]> {
    let first = *target.first()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let scheme_len = target
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))?;
    let rest = target[scheme_len..].strip_prefix(b"://")?;
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// `uri-host [ ":" port ]` (RFC 3986 §3.2.2, §3.2.3): an IP-literal in brackets, or a
/// reg-name / IPv4address of unreserved, sub-delims and percent-encoded bytes; no userinfo.
#[must_use]
pub fn valid_authority(a: &[u8]) -> bool {
    let (host, port) = if a.first() == Some(&b'[') {
        let Some(close) = a.iter().position(|&b| b == b']') else {
            return false;
        };
        let inner = &a[1..close];
        if !(valid_ipv6(inner) || valid_ipv_future(inner)) {
            return false;
        }
        match &a[close + 1..] {
            [] => (&a[..0], None),
            [b':', port @ ..] => (&a[..0], Some(port)),
            _ => return false,
        }
    } else {
        match a.iter().rposition(|&b| b == b':') {
            Some(i) => (&a[..i], Some(&a[i + 1..])),
            None => (a, None),
        }
    };
    if let Some(port) = port {
        if !port.iter().all(u8::is_ascii_digit) {
            return false;
        }
    }
    valid_reg_name(host)
}

/// `IPv6address` (RFC 3986 §3.2.2, the text forms of RFC 4291 §2.2: eight groups, one
/// `::`, an embedded IPv4 address last), without a zone identifier.
fn valid_ipv6(h: &[u8]) -> bool {
    core::str::from_utf8(h).is_ok_and(|s| s.parse::<core::net::Ipv6Addr>().is_ok())
}

/// `IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )`, the `v` of either
/// case (RFC 3986 §3.2.2, §6.2.2.1).
fn valid_ipv_future(h: &[u8]) -> bool {
    let Some(rest) = h.strip_prefix(b"v").or_else(|| h.strip_prefix(b"V")) else {
        return false;
    };
    let Some(dot) = rest.iter().position(|&b| b == b'.') else {
        return false;
    };
    let (version, address) = (&rest[..dot], &rest[dot + 1..]);
    !version.is_empty()
        && version.iter().all(u8::is_ascii_hexdigit)
        && !address.is_empty()
        && address
            .iter()
            .all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':')
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`.
fn valid_reg_name(h: &[u8]) -> bool {
    let mut i = 0;
    while i < h.len() {
        let b = h[i];
        if b == b'%' {
            let ok = h.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && h.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return false;
            }
            i += 3;
        } else if is_unreserved(b) || is_sub_delim(b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// Parses a complete trailer section (field lines and the final empty line).
pub fn parse_trailers(section: &Bytes, limits: &Limits) -> Result<Headers, ProtocolError> {
    if section.as_ref() == b"\r\n" {
        return Ok(Headers::new());
    }
    let mut slots = vec![httparse::EMPTY_HEADER; limits.headers_max];
    match httparse::parse_headers(section, &mut slots) {
        Ok(httparse::Status::Complete((n, fields))) if n == section.len() => {
            own_fields(section, fields)
        }
        Ok(_) => Err(err(400, "malformed trailer section")),
        Err(httparse::Error::TooManyHeaders) => Err(err(431, "too many trailer fields")),
        Err(_) => Err(err(400, "malformed trailer field")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8]) -> Result<Option<HeadEnd>, ProtocolError> {
        HeadScan::request().scan(input, 100, 200)
    }

    fn scan_bytewise(input: &[u8]) -> Result<Option<HeadEnd>, ProtocolError> {
        let mut s = HeadScan::request();
        let mut last = Ok(None);
        for i in 1..=input.len() {
            last = s.scan(&input[..i], 100, 200);
            if !matches!(last, Ok(None)) {
                return last;
            }
        }
        last
    }

    /// `start`, filled with `a` up to `len` bytes, then `end`.
    fn filled_then(start: &[u8], len: usize, end: &[u8]) -> Vec<u8> {
        let mut v = start.to_vec();
        v.resize(len, b'a');
        v.extend_from_slice(end);
        v
    }

    #[test]
    fn a_bare_cr_on_the_last_byte_inside_the_bound_is_a_bare_cr() {
        // The CR is byte 200 of a 200-byte bound: inside it, so its bad neighbour decides
        // (400), however the bytes arrive; at the bound it may still be waiting for its LF.
        let head = filled_then(b"GET / HTTP/1.1\r\nX: ", 199, b"\rz");
        assert_eq!(scan_all(&head).unwrap_err().status, 400);
        assert_eq!(scan_bytewise(&head).unwrap_err().status, 400);
        assert_eq!(scan_all(&head[..200]), Ok(None), "a CR on the bound waits");
    }

    #[test]
    fn a_bare_cr_just_past_the_bound_is_judged_by_the_bound_however_cut() {
        // The CR is byte 201 of a 200-byte bound and is followed by a bad byte: the bound
        // decides, whether the bytes arrive together or one at a time (found by fuzzing).
        let head = filled_then(b"GET / HTTP/1.1\r\nX: ", 200, b"\rz");
        assert_eq!(scan_all(&head).unwrap_err().status, 431);
        assert_eq!(scan_bytewise(&head).unwrap_err().status, 431);
        let trailer = filled_then(b"X: ", 200, b"\rz");
        let whole = HeadScan::trailers().scan(&trailer, usize::MAX, 200);
        assert_eq!(whole.unwrap_err().status, 431);
        // A field line whose LF is byte 201, followed by a bare LF: the bound again.
        let trailer = filled_then(b"X: ", 199, b"\r\n\n");
        let whole = HeadScan::trailers().scan(&trailer, usize::MAX, 200);
        assert_eq!(whole.unwrap_err().status, 431);
        let mut s = HeadScan::trailers();
        assert_eq!(
            s.scan(&trailer[..201], usize::MAX, 200).unwrap_err().status,
            431
        );
    }

    #[test]
    fn a_field_line_ending_exactly_at_the_head_bound_waits_for_the_next_byte() {
        // 200 bytes are within a 200-byte bound: the head cannot end there, but the verdict
        // belongs to the byte that crosses the bound, as in the byte-by-byte walk.
        let mut head = filled_then(b"GET / HTTP/1.1\r\nX: ", 198, b"\r\n");
        assert_eq!(scan_all(&head), Ok(None));
        assert_eq!(scan_bytewise(&head), Ok(None));
        head.push(b'\r');
        assert_eq!(scan_all(&head).unwrap_err().status, 431);
        assert_eq!(scan_bytewise(&head).unwrap_err().status, 431);
    }

    #[test]
    fn a_head_of_exactly_the_bound_is_accepted() {
        let head = filled_then(b"GET / HTTP/1.1\r\nX: ", 196, b"\r\n\r\n");
        let want = Ok(Some(HeadEnd { start: 0, end: 200 }));
        assert_eq!(scan_all(&head), want);
        assert_eq!(scan_bytewise(&head), want);
    }

    #[test]
    fn a_bare_lf_among_the_leading_empty_lines_is_logged_as_such() {
        // Leading CRLFs may be skipped (RFC 9112 §2.2), a bare LF may not; the log says
        // the LF came before the request line, not inside a head.
        let want = Err(err(400, "bare LF in the request head"));
        assert_eq!(scan_all(b"\r\n\nGET / HTTP/1.1\r\n\r\n"), want);
        assert_eq!(scan_bytewise(b"\nGET / HTTP/1.1\r\n\r\n"), want);
        let inside = scan_all(b"GET / HTTP/1.1\r\nHost: a\n\r\n");
        assert_eq!(inside, Err(err(400, "bare LF in the head")));
    }

    #[test]
    fn scan_finds_the_end_in_one_go_and_byte_by_byte() {
        let head = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nXYZ";
        let want = Ok(Some(HeadEnd { start: 4, end: 31 }));
        assert_eq!(scan_all(head), want);
        assert_eq!(scan_bytewise(head), want);
    }

    #[test]
    fn scan_rejects_what_parsers_disagree_on() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\tX: a\r\n\r\n", 400),
            (b"\n\nGET / HTTP/1.1\r\n\r\n", 400),
            (b"\r\rGET / HTTP/1.1\r\n\r\n", 400),
        ];
        for (input, status) in cases {
            let got = scan_all(input).map_err(|e| e.status);
            assert_eq!(got, Err(*status), "{:?}", String::from_utf8_lossy(input));
            let got = scan_bytewise(input).map_err(|e| e.status);
            assert_eq!(got, Err(*status), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn scan_judges_limits_before_the_head_completes() {
        let long_line = [b'a'; 101];
        assert_eq!(scan_bytewise(&long_line).map_err(|e| e.status), Err(414));
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        big.extend_from_slice(&[b'x'; 190]);
        assert_eq!(scan_bytewise(&big).map_err(|e| e.status), Err(431));
        let crlfs = b"\r\n".repeat(101);
        assert_eq!(scan_bytewise(&crlfs).map_err(|e| e.status), Err(431));
        // A request line of exactly the limit is fine.
        let mut ok = vec![b'a'; 100];
        ok.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(scan_all(&ok), Ok(Some(_))));
        // Also while its CRLF has yet to arrive: only the 101st byte would be too many.
        assert!(matches!(scan_bytewise(&ok), Ok(Some(_))));
        // The line is measured from its own start, not from the leading empty lines
        // before it: 30 of them and a partial line of 99 bytes, or of 100 and its end.
        let mut late = b"\r\n".repeat(30);
        late.extend_from_slice(&[b'a'; 99]);
        assert_eq!(scan_all(&late), Ok(None));
        assert_eq!(scan_bytewise(&late), Ok(None));
        late.extend_from_slice(b"a\r\n\r\n");
        assert!(matches!(scan_bytewise(&late), Ok(Some(_))));
    }

    #[test]
    fn trailer_scan_accepts_an_empty_section() {
        let mut s = HeadScan::trailers();
        assert_eq!(
            s.scan(b"\r\nrest", 100, 100),
            Ok(Some(HeadEnd { start: 0, end: 2 }))
        );
    }

    fn parse(input: &[u8]) -> Result<RequestHead, u16> {
        let b = Bytes::copy_from_slice(input);
        parse_head(&b, &Limits::default()).map_err(|e| e.status)
    }

    #[test]
    fn parse_head_owns_fields_and_trims_ows() {
        let h = parse(
            b"POST /x?y HTTP/1.1\r\nHost: ex.com:80\r\nX-A:\t v \t\r\nContent-Length: 3\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.method, Method::Post);
        assert_eq!(h.target, "/x?y");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.host.as_deref(), Some(&b"ex.com:80"[..]));
        assert_eq!(h.headers.get("x-a").map(|v| &v[..]), Some(&b"v"[..]));
        assert_eq!(h.body, BodyKind::Length(3));
        assert!(h.keep_alive);
        assert!(!h.expects_continue);
    }

    #[test]
    fn parse_head_table() {
        let cases: &[(&[u8], Result<(), u16>)] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Ok(())),
            (b"GET / HTTP/1.0\r\n\r\n", Ok(())),
            (b"FOO / HTTP/1.1\r\nHost: a\r\n\r\n", Ok(())),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", Err(400)),
            (b"GET / HTTP/1.1\r\n\r\n", Err(400)),
            (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Err(400)),
            (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", Err(400)),
            (b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", Err(400)),
            (b"GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", Err(400)),
            (b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", Ok(())),
            (b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", Err(400)),
            (b"GET / HTTP/1.1\r\nHost: \r\n\r\n", Ok(())),
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", Err(400)),
            (b"GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", Err(400)),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", Err(400)),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", Err(400)),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", Err(400)),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\r\n\r\n", Ok(())),
            (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", Err(505)),
            (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", Ok(())),
            (b"GET / HTTP/1.2\r\n\r\n", Err(400)),
            (b"GET / HTTP/0.9\r\n\r\n", Err(505)),
            (b"GET / HTTP/1.10\r\n\r\n", Err(400)),
            (b"GET / http/1.1\r\n\r\n", Err(400)),
            (b"hello there\r\n\r\n", Err(400)),
            (b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
            (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
            (b"GET http://ex.com/x HTTP/1.1\r\nHost: a\r\n\r\n", Ok(())),
            (
                b"GET http://u@ex.com/x HTTP/1.1\r\nHost: a\r\n\r\n",
                Err(400),
            ),
            (b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
            (b"GET http://ex.com/x HTTP/1.1\r\n\r\n", Err(400)),
        ];
        for (input, want) in cases {
            let got = parse(input).map(|_| ());
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn too_many_fields_is_431() {
        let limits = Limits {
            headers_max: 2,
            ..Limits::default()
        };
        let ok = Bytes::from_static(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n");
        assert!(parse_head(&ok, &limits).is_ok());
        let bad = Bytes::from_static(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\n\r\n");
        assert_eq!(parse_head(&bad, &limits).map_err(|e| e.status), Err(431));
    }

    #[test]
    fn a_field_limit_above_the_stack_slots_is_honoured_both_ways() {
        // More slots than the 128 on the stack: the limit still decides, not the stack.
        let limits = Limits {
            headers_max: 200,
            ..Limits::default()
        };
        let head = |n: usize| {
            let mut h = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
            for i in 1..n {
                h.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
            }
            h.extend_from_slice(b"\r\n");
            Bytes::from(h)
        };
        assert_eq!(parse_head(&head(200), &limits).unwrap().headers.len(), 200);
        let over = parse_head(&head(201), &limits).map_err(|e| e.status);
        assert_eq!(over.map(|_| ()), Err(431));
    }

    #[test]
    fn absolute_form_authority_overrides_host() {
        let h = parse(b"GET http://ex.com:8080/x?q HTTP/1.1\r\nHost: other\r\n\r\n").unwrap();
        assert_eq!(h.host.as_deref(), Some(&b"ex.com:8080"[..]));
        assert_eq!(h.target, "http://ex.com:8080/x?q");
        let h = parse(b"GET /x HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(h.host, None);
    }

    #[test]
    fn keep_alive_and_expect() {
        let h = parse(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        let h = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        let h = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(h.keep_alive);
        let h = parse(
            b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
        )
        .unwrap();
        assert!(h.expects_continue);
        let h =
            parse(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").unwrap();
        assert!(!h.expects_continue);
    }

    fn framing(version: Version, fields: &[(&'static str, &'static str)]) -> Result<BodyKind, u16> {
        let mut h = Headers::new();
        for (n, v) in fields {
            h.push(
                Bytes::from_static(n.as_bytes()),
                Bytes::from_static(v.as_bytes()),
            );
        }
        body_framing(version, &h, 1000).map_err(|e| e.status)
    }

    /// Version, fields, expected framing or status.
    type FramingCase = (
        Version,
        &'static [(&'static str, &'static str)],
        Result<BodyKind, u16>,
    );

    #[test]
    fn body_framing_table() {
        use BodyKind::*;
        use Version::*;
        let cases: &[FramingCase] = &[
            (Http11, &[], Ok(None)),
            (Http11, &[("Content-Length", "10")], Ok(Length(10))),
            (Http11, &[("Content-Length", "0")], Ok(None)),
            (Http11, &[("Content-Length", "007")], Ok(Length(7))),
            (Http11, &[("Content-Length", "1000")], Ok(Length(1000))),
            (Http11, &[("Content-Length", "1001")], Err(413)),
            (
                Http11,
                &[("Content-Length", "99999999999999999999999")],
                Err(400),
            ),
            (Http11, &[("Content-Length", "")], Err(400)),
            (Http11, &[("Content-Length", "-1")], Err(400)),
            (Http11, &[("Content-Length", "+1")], Err(400)),
            (Http11, &[("Content-Length", "1 2")], Err(400)),
            (Http11, &[("Content-Length", "0x10")], Err(400)),
            (Http11, &[("Content-Length", "5, 5")], Err(400)),
            (
                Http11,
                &[("Content-Length", "5"), ("Content-Length", "5")],
                Err(400),
            ),
            (Http11, &[("Transfer-Encoding", "chunked")], Ok(Chunked)),
            (Http11, &[("Transfer-Encoding", "CHUNKED")], Ok(Chunked)),
            (Http11, &[("Transfer-Encoding", " , chunked")], Ok(Chunked)),
            (
                Http11,
                &[("Transfer-Encoding", "chunked"), ("Content-Length", "3")],
                Err(400),
            ),
            (
                Http11,
                &[("Content-Length", "3"), ("Transfer-Encoding", "chunked")],
                Err(400),
            ),
            // RFC 9112 §6.1: a coding weir does not understand is 501, wherever it stands.
            (Http11, &[("Transfer-Encoding", "gzip")], Err(501)),
            (Http11, &[("Transfer-Encoding", "identity")], Err(501)),
            (Http11, &[("Transfer-Encoding", "chunked, gzip")], Err(501)),
            (Http11, &[("Transfer-Encoding", "chunkedx")], Err(501)),
            (Http11, &[("Transfer-Encoding", "chunked;x=1")], Err(501)),
            (Http11, &[("Transfer-Encoding", "gzip ; q=1")], Err(501)),
            (
                Http11,
                &[
                    ("Transfer-Encoding", "chunked"),
                    ("Transfer-Encoding", "gzip"),
                ],
                Err(501),
            ),
            // Syntax errors and faulty framing stay 400.
            (Http11, &[("Transfer-Encoding", "")], Err(400)),
            (Http11, &[("Transfer-Encoding", " , ")], Err(400)),
            (Http11, &[("Transfer-Encoding", "\"chunked\"")], Err(400)),
            (Http11, &[("Transfer-Encoding", "chunked x")], Err(400)),
            (
                Http11,
                &[("Transfer-Encoding", "gzip, chunked, chunked")],
                Err(400),
            ),
            (
                Http11,
                &[("Transfer-Encoding", "identity"), ("Content-Length", "3")],
                Err(400),
            ),
            (
                Http11,
                &[("Transfer-Encoding", "gzip"), ("Content-Length", "3")],
                Err(400),
            ),
            (
                Http11,
                &[("Transfer-Encoding", "chunked, chunked")],
                Err(400),
            ),
            (
                Http11,
                &[
                    ("Transfer-Encoding", "chunked"),
                    ("Transfer-Encoding", "chunked"),
                ],
                Err(400),
            ),
            (Http11, &[("Transfer-Encoding", "gzip, chunked")], Err(501)),
            (
                Http11,
                &[
                    ("Transfer-Encoding", "gzip"),
                    ("Transfer-Encoding", "chunked"),
                ],
                Err(501),
            ),
            (Http10, &[("Transfer-Encoding", "chunked")], Err(400)),
            (Http10, &[("Content-Length", "4")], Ok(Length(4))),
        ];
        for (version, fields, want) in cases {
            assert_eq!(framing(*version, fields), *want, "{version:?} {fields:?}");
        }
    }

    #[test]
    fn valid_authority_table() {
        for ok in [
            &b"example.com"[..],
            b"example.com:",
            b"example.com:8080",
            b"127.0.0.1",
            b"[::1]",
            b"[2001:db8::1]:443",
            b"[::ffff:192.0.2.1]",
            b"[1:2:3:4:5:6:7:8]",
            b"[::]",
            b"xn--bcher-kva.example",
            b"a%20b",
            // IPvFuture: unreserved, sub-delims and colons after a `v` of either case
            // (RFC 3986 §3.2.2, §6.2.2.1).
            b"[v1.fe80::a+en1]",
            b"[V7.x]:80",
        ] {
            assert!(valid_authority(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"exa mple"[..],
            b"a/b",
            b"u@a",
            b"a\x00",
            b"a\t",
            b"a:b:c",
            b"[::1]x",
            b"[]",
            b"a%2",
            // Both bytes after the `%` are judged, whatever precedes it.
            b"a%g0",
            b"a%0g",
            b"[v1.a/b]",
            // An IP literal is judged by its grammar, not by its alphabet alone.
            b"[::1::]",
            b"[1:2:3:4:5:6:7:8:9]",
            b"[12345::1]",
            b"[::ffff:1.2.3]",
            b"[fe80::1%25eth0]",
            b"[:]",
            b"[v.x]",
            b"[vx.y]",
            b"[v1.]",
            b"[v1]",
            b"a\"b",
            // The byte after a percent-escape is judged too.
            b"ab%41^",
        ] {
            assert!(!valid_authority(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn trailers_parse_and_refuse_bad_fields() {
        let l = Limits::default();
        let t = parse_trailers(&Bytes::from_static(b"X-Sum: 1\r\nY: 2\r\n\r\n"), &l).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.get("y").map(|v| &v[..]), Some(&b"2"[..]));
        assert!(parse_trailers(&Bytes::from_static(b"\r\n"), &l)
            .unwrap()
            .is_empty());
        let bad = parse_trailers(&Bytes::from_static(b"X : 1\r\n\r\n"), &l);
        assert_eq!(bad.map_err(|e| e.status), Err(400));
        // The section is the whole of what it is given: bytes after its empty line are
        // not a trailer section.
        let trailing = parse_trailers(&Bytes::from_static(b"X: 1\r\n\r\nY"), &l);
        assert_eq!(trailing.map_err(|e| e.status), Err(400));
    }
}
