//! Access-log lines (`access-log FILE format=combined|common|json`).
//!
//! The core formats each line when a response has been handed to its connection and emits
//! it as `Effect::AccessLog`; the shell's single logger writes the lines in order and never
//! drops one (when it falls behind, the workers wait: back-pressure, not loss). Formats:
//!
//! * `common`: `HOST - USER [TIME] "REQUEST" STATUS BYTES` (NCSA Common Log Format);
//! * `combined`: the same plus `"REFERER" "USER-AGENT"` (NCSA Combined Log Format);
//! * `json`: one object per line with the same fields.
//!
//! Every byte a client chose (request line, user, referer, user agent) is escaped, so a
//! line can neither be split nor faked: `"` and `\` get a backslash, bytes outside
//! printable ASCII become `\xHH` (as nginx does).

use core::net::IpAddr;

use crate::config::LogFormat;
use crate::http1::RequestHead;
use crate::time::UnixTime;

/// What a line says about one response.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// The client.
    pub peer: IpAddr,
    /// The authenticated user, if any.
    pub user: Option<&'a str>,
    /// When the response was made.
    pub time: UnixTime,
    /// The request, if its head could be read.
    pub request: Option<&'a RequestHead>,
    /// The status (0 when weir could not read it: an `nph-` script whose output does not
    /// start with a status line).
    pub status: u16,
    /// Body bytes.
    pub bytes: u64,
}

fn escape(out: &mut Vec<u8>, b: &[u8], json: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
    let plain = |c: u8| (0x20..=0x7e).contains(&c) && c != b'"' && c != b'\\';
    let mut rest = b;
    while !rest.is_empty() {
        // A run of printable bytes is copied at once (the usual field is all of it).
        let run = rest.iter().position(|&c| !plain(c)).unwrap_or(rest.len());
        out.extend_from_slice(&rest[..run]);
        let Some((&c, tail)) = rest[run..].split_first() else {
            break;
        };
        rest = tail;
        match c {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', c]),
            _ if json => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX_LOWER[usize::from(c >> 4)],
                HEX_LOWER[usize::from(c & 15)],
            ]),
            _ => out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(c >> 4)],
                HEX[usize::from(c & 15)],
            ]),
        }
    }
}

/// Appends the client's address (IPv4 without the formatting machinery: one per line).
fn push_peer(out: &mut Vec<u8>, peer: IpAddr) {
    match peer {
        IpAddr::V4(a) => {
            for (i, octet) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_decimal(out, u64::from(octet));
            }
        }
        IpAddr::V6(_) => {
            use std::io::Write as _;
            // unwrap-free: writing to a Vec cannot fail.
            let _ = write!(out, "{peer}");
        }
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(crate::http1::write::decimal(&mut [0; 20], n).as_bytes());
}

/// A request header's value, escaped, or `missing` when the request lacks it.
fn push_field(out: &mut Vec<u8>, e: &Entry<'_>, name: &str, missing: &str, json: bool) {
    match e.request.and_then(|r| r.headers.get(name)) {
        Some(v) => escape(out, v, json),
        None => out.extend_from_slice(missing.as_bytes()),
    }
}

fn push_request(out: &mut Vec<u8>, r: &RequestHead, json: bool) {
    escape(out, r.method.as_bytes(), json);
    out.push(b' ');
    escape(out, &r.target, json);
    out.push(b' ');
    out.extend_from_slice(r.version.as_str().as_bytes());
}

fn push_user(out: &mut Vec<u8>, e: &Entry<'_>, json: bool) {
    match e.user {
        Some(u) => escape(out, u.as_bytes(), json),
        None => out.push(b'-'),
    }
}

/// Formats one line (without its newline). The line is built in one buffer, with no
/// intermediate strings: one runs per response.
#[must_use]
pub fn line(format: LogFormat, e: &Entry<'_>) -> String {
    let time = e.time.clf_bytes();
    // Bytes until the end: every byte written is ASCII (clients' bytes are escaped), so
    // the one check at the end always passes.
    let mut out: Vec<u8> = Vec::with_capacity(192);
    match format {
        LogFormat::Common | LogFormat::Combined => {
            push_peer(&mut out, e.peer);
            out.extend_from_slice(b" - ");
            push_user(&mut out, e, false);
            out.extend_from_slice(b" [");
            out.extend_from_slice(&time);
            out.extend_from_slice(b"] \"");
            match e.request {
                Some(r) => push_request(&mut out, r, false),
                None => out.push(b'-'),
            }
            out.extend_from_slice(b"\" ");
            push_decimal(&mut out, u64::from(e.status));
            out.push(b' ');
            push_decimal(&mut out, e.bytes);
            if format == LogFormat::Combined {
                out.extend_from_slice(b" \"");
                push_field(&mut out, e, "referer", "-", false);
                out.extend_from_slice(b"\" \"");
                push_field(&mut out, e, "user-agent", "-", false);
                out.push(b'"');
            }
        }
        LogFormat::Json => {
            out.extend_from_slice(b"{\"time\":\"");
            out.extend_from_slice(&time);
            out.extend_from_slice(b"\",\"remote\":\"");
            push_peer(&mut out, e.peer);
            out.extend_from_slice(b"\",\"user\":\"");
            push_user(&mut out, e, true);
            out.extend_from_slice(b"\",\"request\":\"");
            if let Some(r) = e.request {
                push_request(&mut out, r, true);
            }
            out.extend_from_slice(b"\",\"status\":");
            push_decimal(&mut out, u64::from(e.status));
            out.extend_from_slice(b",\"bytes\":");
            push_decimal(&mut out, e.bytes);
            out.extend_from_slice(b",\"referer\":\"");
            push_field(&mut out, e, "referer", "", true);
            out.extend_from_slice(b"\",\"user_agent\":\"");
            push_field(&mut out, e, "user-agent", "", true);
            out.extend_from_slice(b"\"}");
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{BodyKind, Headers, Method, Version};
    use bytes::Bytes;

    proptest::proptest! {
        /// The run-at-once escaper and the hand-written address agree with the obvious
        /// byte-by-byte forms.
        #[test]
        fn escaping_and_addresses_match_the_plain_forms(
            b in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            json: bool,
            v4: [u8; 4],
            v6: [u16; 8],
        ) {
            let mut fast = Vec::new();
            escape(&mut fast, &b, json);
            let fast = String::from_utf8(fast).unwrap();
            let mut plain = String::new();
            for &c in &b {
                match c {
                    b'"' | b'\\' => plain.push_str(&format!("\\{}", char::from(c))),
                    0x20..=0x7e => plain.push(char::from(c)),
                    _ if json => plain.push_str(&format!("\\u00{c:02x}")),
                    _ => plain.push_str(&format!("\\x{c:02X}")),
                }
            }
            proptest::prop_assert_eq!(fast, plain);
            for ip in [IpAddr::from(v4), IpAddr::from(v6)] {
                let mut out = Vec::new();
                push_peer(&mut out, ip);
                proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
            }
        }
    }

    #[test]
    fn formats_and_escapes() {
        let mut headers = Headers::new();
        headers.push("User-Agent", "curl/8 \"quoted\"\x01");
        headers.push("Referer", "http://a/");
        let req = RequestHead {
            method: Method::Get,
            target: Bytes::from_static(b"/a\"b\xff"),
            version: Version::Http11,
            headers,
            host: None,
            body: BodyKind::None,
            expects_continue: false,
            keep_alive: true,
        };
        let e = Entry {
            peer: "127.0.0.1".parse().unwrap(),
            user: Some("alice"),
            time: UnixTime(971_186_136),
            request: Some(&req),
            status: 200,
            bytes: 2326,
        };
        assert_eq!(
            line(LogFormat::Common, &e),
            "127.0.0.1 - alice [10/Oct/2000:13:55:36 +0000] \"GET /a\\\"b\\xFF HTTP/1.1\" 200 2326"
        );
        assert_eq!(
            line(LogFormat::Combined, &e),
            "127.0.0.1 - alice [10/Oct/2000:13:55:36 +0000] \"GET /a\\\"b\\xFF HTTP/1.1\" 200 2326 \"http://a/\" \"curl/8 \\\"quoted\\\"\\x01\""
        );
        let j = line(LogFormat::Json, &Entry { user: None, ..e });
        assert_eq!(
            j,
            "{\"time\":\"10/Oct/2000:13:55:36 +0000\",\"remote\":\"127.0.0.1\",\"user\":\"-\",\"request\":\"GET /a\\\"b\\u00ff HTTP/1.1\",\"status\":200,\"bytes\":2326,\"referer\":\"http://a/\",\"user_agent\":\"curl/8 \\\"quoted\\\"\\u0001\"}"
        );
    }
}
