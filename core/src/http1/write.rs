//! Serialising responses: heads, chunk framing, and the connection's own canned answers.
//!
//! # Theory of operation
//!
//! The connection, not the application, owns every field that concerns the connection or
//! the message framing: `Date` and `Server` (RFC 9110 §6.6.1, §10.2.4), `Content-Length` /
//! `Transfer-Encoding` (RFC 9112 §6) and `Connection` / `Keep-Alive` (RFC 9112 §9). The
//! application's copies of those are dropped here, so that a response can never carry two
//! framings. A field the application got wrong (a name that is not a token, or a value
//! holding CR, LF or another control byte) is dropped too: written out, it would let
//! whoever chose its value inject a header or a whole response.
//!
//! The status line always says `HTTP/1.1`: a server sends its own highest version
//! (RFC 9110 §6.2), and HTTP/1.0 clients read it fine; what changes for them is the
//! framing, which the connection decides.
//!
//! Chunk framing (RFC 9112 §7.1) is written around a body chunk rather than into it, so that
//! a file chunk stays a file chunk for `sendfile`: `{len:x}\r\n`, the chunk, `\r\n`. The last
//! chunk is `0\r\n`, the trailer fields, `\r\n`.

use bytes::Bytes;

use crate::http1::head::{reason_phrase, Headers};
use crate::http1::parse::{valid_field_name, valid_field_value};
use crate::time::UnixTime;

/// The interim response `accept_body` sends (RFC 9110 §15.2.1).
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What follows each chunk of a chunked body.
pub const CRLF: &[u8] = b"\r\n";

/// The value of the `Server` field.
pub const SERVER: &str = "weir";

/// Field names the connection writes itself.
const CONNECTION_OWNED: [&str; 6] = [
    "date",
    "server",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

/// True if the application may send this field: valid, and not one the connection owns.
fn application_may_send(name: &[u8], value: &[u8]) -> bool {
    valid_field_name(name)
        && valid_field_value(value)
        && !CONNECTION_OWNED
            .iter()
            .any(|owned| name.eq_ignore_ascii_case(owned.as_bytes()))
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(CRLF);
}

fn push_status_line(out: &mut Vec<u8>, status: u16) {
    // Statuses are three digits (100..=599, `Conn::send_head` checks); any other number is
    // written in full all the same.
    out.extend_from_slice(b"HTTP/1.1 ");
    if (100..1000).contains(&status) {
        let digit = |n: u16| b'0' + (n % 10) as u8;
        out.extend_from_slice(&[digit(status / 100), digit(status / 10), digit(status)]);
    } else {
        out.extend_from_slice(status.to_string().as_bytes());
    }
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(CRLF);
}

fn push_application_fields(out: &mut Vec<u8>, fields: &Headers) {
    for h in &fields.0 {
        if application_may_send(&h.name, &h.value) {
            push_field(out, &h.name, &h.value);
        }
    }
}

/// `n` in decimal, written into `buf` (the response head's `Content-Length`, the access
/// log's numbers): no formatting machinery.
pub(crate) fn decimal(buf: &mut [u8; 20], mut n: u64) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

/// A final response head: status line, the application's fields, `Date`, `Server`, then the
/// connection's `fields` (framing and `Connection`), then the empty line.
#[must_use]
pub fn final_head(status: u16, app: &Headers, date: UnixTime, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    push_final_head(&mut out, status, app, date, fields);
    out
}

/// `final_head`, appended to `out` (whose capacity may leave room for a body after it).
pub fn push_final_head(
    out: &mut Vec<u8>,
    status: u16,
    app: &Headers,
    date: UnixTime,
    fields: &[(&str, &str)],
) {
    push_status_line(out, status);
    push_application_fields(out, app);
    push_field(out, b"Date", &date.http_date_bytes());
    push_field(out, b"Server", SERVER.as_bytes());
    for (name, value) in fields {
        push_field(out, name.as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(CRLF);
}

/// An interim (1xx) response head: status line and the application's fields only; 1xx
/// responses carry no body and no framing (RFC 9110 §15.2).
#[must_use]
pub fn interim_head(status: u16, app: &Headers) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    push_status_line(&mut out, status);
    push_application_fields(&mut out, app);
    out.extend_from_slice(CRLF);
    out
}

/// The line before a chunk of `len` bytes.
#[must_use]
pub fn chunk_prefix(len: u64) -> Vec<u8> {
    format!("{len:x}\r\n").into_bytes()
}

/// The last chunk and the trailer section.
#[must_use]
pub fn last_chunk(trailers: Option<&Headers>) -> Vec<u8> {
    let mut out = b"0\r\n".to_vec();
    if let Some(t) = trailers {
        push_application_fields(&mut out, t);
    }
    out.extend_from_slice(CRLF);
    out
}

/// The body of the connection's own answer to a protocol error (`canned`): the status and
/// its reason phrase, one line (what the access log counts for it).
#[must_use]
pub fn canned_body(status: u16) -> String {
    format!("{status} {}\n", reason_phrase(status))
}

/// The connection's own answer to a protocol error: a complete response naming the status,
/// marked `Connection: close` since nothing after the error will be read. `with_body` is
/// false when the request was a HEAD: its answer has the same head and no body (RFC 9110
/// §9.3.2).
#[must_use]
pub fn canned(status: u16, date: UnixTime, with_body: bool) -> Bytes {
    let body = canned_body(status);
    let length = body.len().to_string();
    let fields = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", length.as_str()),
        ("Connection", "close"),
    ];
    let mut out = final_head(status, &Headers::new(), date, &fields);
    if with_body {
        out.extend_from_slice(body.as_bytes());
    }
    Bytes::from(out)
}

/// The answer to a connection the server will not take (`limit connections=` reached and
/// no idle connection to close for it): a complete 503 with `Retry-After: 1`, marked
/// `Connection: close`, written before any request is read.
#[must_use]
pub fn refusal(date: UnixTime) -> Bytes {
    let body = canned_body(503);
    let length = body.len().to_string();
    let fields = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Retry-After", "1"),
        ("Content-Length", length.as_str()),
        ("Connection", "close"),
    ];
    let mut out = final_head(503, &Headers::new(), date, &fields);
    out.extend_from_slice(body.as_bytes());
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_head_layout_and_filtering() {
        let mut app = Headers::new();
        app.push("Content-Type", "text/html");
        app.push("Content-Length", "99");
        app.push("Date", "yesterday");
        app.push("X-Evil", "a\r\nSet-Cookie: x=1");
        app.push("Bad Name", "v");
        app.push("Connection", "keep-alive");
        let out = final_head(404, &app, UnixTime(784_111_777), &[("Content-Length", "5")]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\
             Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: weir\r\nContent-Length: 5\r\n\r\n"
        );
    }

    #[test]
    fn chunk_framing() {
        assert_eq!(chunk_prefix(255), b"ff\r\n");
        assert_eq!(last_chunk(None), b"0\r\n\r\n");
        let mut t = Headers::new();
        t.push("X-Sum", "abc");
        assert_eq!(last_chunk(Some(&t)), b"0\r\nX-Sum: abc\r\n\r\n");
        assert_eq!(
            interim_head(103, &Headers::new()),
            b"HTTP/1.1 103 Unknown\r\n\r\n"
        );
    }

    #[test]
    fn canned_is_complete() {
        let c = canned(431, UnixTime(0), true);
        let text = String::from_utf8(c.to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.contains("\r\nServer: weir\r\n"));
        assert!(text.ends_with("\r\n\r\n431 Request Header Fields Too Large\n"));
        assert!(text.ends_with(&format!("\r\n\r\n{}", canned_body(431))));
    }
}
