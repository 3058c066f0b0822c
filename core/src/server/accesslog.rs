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
    /// The status (0 when weir did not see it: an `nph-` script's).
    pub status: u16,
    /// Body bytes.
    pub bytes: u64,
}

fn escape(out: &mut String, b: &[u8], json: bool) {
    for &c in b {
        match c {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(c as char);
            }
            0x20..=0x7e => out.push(c as char),
            _ if json => out.push_str(&format!("\\u{c:04x}")),
            _ => out.push_str(&format!("\\x{c:02X}")),
        }
    }
}

fn escaped(b: &[u8], json: bool) -> String {
    let mut s = String::with_capacity(b.len());
    escape(&mut s, b, json);
    s
}

/// `[10/Oct/2000:13:55:36 +0000]`'s inside, from the IMF-fixdate of `t`.
fn clf_time(t: UnixTime) -> String {
    // "Sun, 06 Nov 1994 08:49:37 GMT" → "06/Nov/1994:08:49:37 +0000"
    let d = t.http_date();
    let p: Vec<&str> = d.split(' ').collect();
    match p.as_slice() {
        [_, day, mon, year, hms, _] => format!("{day}/{mon}/{year}:{hms} +0000"),
        _ => d,
    }
}

/// Formats one line (without its newline).
#[must_use]
pub fn line(format: LogFormat, e: &Entry<'_>) -> String {
    let json = format == LogFormat::Json;
    let request = e.request.map_or_else(String::new, |r| {
        let mut s = String::new();
        escape(&mut s, r.method.as_bytes(), json);
        s.push(' ');
        escape(&mut s, &r.target, json);
        s.push(' ');
        s.push_str(r.version.as_str());
        s
    });
    let field = |name: &str| {
        e.request
            .and_then(|r| r.headers.get(name))
            .map(|v| escaped(v, json))
    };
    let user = e
        .user
        .map_or_else(|| "-".to_string(), |u| escaped(u.as_bytes(), json));
    let time = clf_time(e.time);
    match format {
        LogFormat::Common | LogFormat::Combined => {
            let request = if request.is_empty() { "-".to_string() } else { request };
            let mut out = format!("{} - {user} [{time}] \"{request}\" {} {}", e.peer, e.status, e.bytes);
            if format == LogFormat::Combined {
                out.push_str(&format!(
                    " \"{}\" \"{}\"",
                    field("referer").unwrap_or_else(|| "-".into()),
                    field("user-agent").unwrap_or_else(|| "-".into())
                ));
            }
            out
        }
        LogFormat::Json => format!(
            "{{\"time\":\"{time}\",\"remote\":\"{}\",\"user\":\"{user}\",\"request\":\"{request}\",\"status\":{},\"bytes\":{},\"referer\":\"{}\",\"user_agent\":\"{}\"}}",
            e.peer,
            e.status,
            e.bytes,
            field("referer").unwrap_or_default(),
            field("user-agent").unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{BodyKind, Headers, Method, Version};
    use bytes::Bytes;

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
