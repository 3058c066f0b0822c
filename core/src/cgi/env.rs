//! CGI meta-variables (RFC 3875 §4.1), plus the de-facto ones scripts expect.
//!
//! The script gets these variables and nothing else from weir's own environment except a
//! fixed `PATH`, so nothing of the server's leaks into scripts. Request header fields
//! become `HTTP_*` variables (RFC 3875 §4.1.18) with three exceptions:
//!
//! * a field whose name contains `_` is dropped, so that `X_Foo: evil` cannot pose as the
//!   `HTTP_X_FOO` a proxy in front set from `X-Foo`;
//! * `Proxy` is dropped: `HTTP_PROXY` would be taken by many HTTP libraries as the proxy
//!   to use for outgoing requests ("httpoxy");
//! * `Authorization` is not passed (as Apache does by default): the credentials were
//!   checked by a `protect` rule, and the script learns the user from `REMOTE_USER`;
//!   `Content-Length` and `Content-Type` have variables of their own.
//!
//! Fields that occur more than once are joined with `, ` (RFC 9110 §5.3).

use core::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::http1::{RequestHead, Version};

/// A fixed search path for scripts (weir's own `PATH` is not passed on).
pub const SCRIPT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Everything the variables are made from.
#[derive(Clone, Copy, Debug)]
pub struct CgiRequest<'a> {
    /// The request head.
    pub head: &'a RequestHead,
    /// The query string (without `?`), empty when none.
    pub query: &'a [u8],
    /// `SCRIPT_NAME`.
    pub script_name: &'a [u8],
    /// `PATH_INFO` (empty when none).
    pub path_info: &'a [u8],
    /// `PATH_TRANSLATED`, when there is one.
    pub path_translated: Option<&'a Path>,
    /// `SCRIPT_FILENAME`.
    pub script_filename: &'a Path,
    /// `DOCUMENT_ROOT`.
    pub document_root: &'a Path,
    /// The client.
    pub peer: SocketAddr,
    /// The local end of the connection.
    pub local: SocketAddr,
    /// `REMOTE_USER`, when a `protect` rule authenticated one.
    pub remote_user: Option<&'a str>,
    /// The body length, when there is a body.
    pub content_length: Option<u64>,
    /// Extra variables from the rule (`env=K=V`).
    pub extra: &'a [(String, String)],
}

fn push(env: &mut Vec<(Vec<u8>, Vec<u8>)>, k: &str, v: impl AsRef<[u8]>) {
    env.push((k.as_bytes().to_vec(), v.as_ref().to_vec()));
}

/// The complete environment for a script.
#[must_use]
pub fn build(r: &CgiRequest<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let h = r.head;
    let mut env = Vec::with_capacity(32 + h.headers.len());
    push(&mut env, "GATEWAY_INTERFACE", "CGI/1.1");
    push(
        &mut env,
        "SERVER_SOFTWARE",
        concat!("weir/", env!("CARGO_PKG_VERSION")),
    );
    push(
        &mut env,
        "SERVER_PROTOCOL",
        match h.version {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        },
    );
    let server_name = host_name(h.host.as_deref().unwrap_or(b""));
    let server_name = if server_name.is_empty() {
        r.local.ip().to_string().into_bytes()
    } else {
        server_name.to_vec()
    };
    push(&mut env, "SERVER_NAME", server_name);
    push(&mut env, "SERVER_ADDR", r.local.ip().to_string());
    push(&mut env, "SERVER_PORT", r.local.port().to_string());
    push(&mut env, "REQUEST_METHOD", h.method.as_bytes());
    push(&mut env, "REQUEST_URI", &h.target);
    push(&mut env, "QUERY_STRING", r.query);
    push(&mut env, "SCRIPT_NAME", r.script_name);
    push(
        &mut env,
        "SCRIPT_FILENAME",
        r.script_filename.as_os_str().as_bytes(),
    );
    push(
        &mut env,
        "DOCUMENT_ROOT",
        r.document_root.as_os_str().as_bytes(),
    );
    if !r.path_info.is_empty() {
        push(&mut env, "PATH_INFO", r.path_info);
    }
    if let Some(t) = r.path_translated {
        push(&mut env, "PATH_TRANSLATED", t.as_os_str().as_bytes());
    }
    push(&mut env, "REMOTE_ADDR", r.peer.ip().to_string());
    push(&mut env, "REMOTE_HOST", r.peer.ip().to_string());
    push(&mut env, "REMOTE_PORT", r.peer.port().to_string());
    if let Some(u) = r.remote_user {
        push(&mut env, "AUTH_TYPE", "Basic");
        push(&mut env, "REMOTE_USER", u);
    }
    if let Some(n) = r.content_length {
        push(&mut env, "CONTENT_LENGTH", n.to_string());
    }
    if let Some(t) = h.headers.get("content-type") {
        push(&mut env, "CONTENT_TYPE", t);
    }
    // php-cgi refuses to run without it (its force-cgi-redirect guard).
    push(&mut env, "REDIRECT_STATUS", "200");
    push(&mut env, "PATH", SCRIPT_PATH);
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for field in &h.headers.0 {
        let name = &field.name;
        if name.contains(&b'_')
            || name.eq_ignore_ascii_case(b"proxy")
            || name.eq_ignore_ascii_case(b"authorization")
            || name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"content-type")
        {
            continue;
        }
        let mut key = b"HTTP_".to_vec();
        key.extend(name.iter().map(|&b| {
            if b == b'-' {
                b'_'
            } else {
                b.to_ascii_uppercase()
            }
        }));
        if seen.contains(&key) {
            continue;
        }
        let values: Vec<&[u8]> = h
            .headers
            .0
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value.as_ref())
            .collect();
        let joined = values.join(&b", "[..]);
        seen.push(key.clone());
        env.push((key, joined));
    }
    for (k, v) in r.extra {
        env.retain(|(name, _)| name != k.as_bytes());
        push(&mut env, k, v);
    }
    env
}

/// The host of `host[:port]` (an IPv6 literal keeps its brackets and colons).
fn host_name(h: &[u8]) -> &[u8] {
    match h.iter().rposition(|&b| b == b':') {
        Some(i) if !h[i..].contains(&b']') => &h[..i],
        _ => h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{BodyKind, Headers, Method};
    use bytes::Bytes;

    fn get(env: &[(Vec<u8>, Vec<u8>)], k: &str) -> Option<String> {
        env.iter()
            .find(|(n, _)| n == k.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    #[test]
    fn server_name_is_the_host_without_its_port() {
        for (host, name) in [
            ("example.org", "example.org"),
            ("example.org:8080", "example.org"),
            ("[::1]", "[::1]"),
            ("[::1]:8080", "[::1]"),
            ("127.0.0.1:80", "127.0.0.1"),
        ] {
            assert_eq!(host_name(host.as_bytes()), name.as_bytes(), "{host}");
        }
    }

    #[test]
    fn meta_variables() {
        let mut headers = Headers::new();
        for (n, v) in [
            ("Host", "example.org:8080"),
            ("X-Forwarded-For", "1.2.3.4"),
            ("X_Forwarded_For", "spoof"),
            ("Proxy", "http://evil:3128"),
            ("Accept", "text/html"),
            ("accept", "*/*"),
            ("Content-Type", "text/plain"),
            ("Authorization", "Basic YWxpY2U6c2VjcmV0"),
        ] {
            headers.push(n, v);
        }
        let head = RequestHead {
            method: Method::Post,
            target: Bytes::from_static(b"/cgi-bin/x.sh/a%20b?q=1"),
            version: Version::Http11,
            headers,
            host: Some(Bytes::from_static(b"example.org:8080")),
            body: BodyKind::Length(5),
            expects_continue: false,
            keep_alive: true,
        };
        let extra = vec![("GIT_PROJECT_ROOT".to_string(), "/srv/git".to_string())];
        let env = build(&CgiRequest {
            head: &head,
            query: b"q=1",
            script_name: b"/cgi-bin/x.sh",
            path_info: b"/a b",
            path_translated: Some(Path::new("/srv/www/a b")),
            script_filename: Path::new("/srv/cgi-bin/x.sh"),
            document_root: Path::new("/srv"),
            peer: "10.0.0.9:5555".parse().unwrap(),
            local: "127.0.0.1:8080".parse().unwrap(),
            remote_user: Some("alice"),
            content_length: Some(5),
            extra: &extra,
        });
        for (k, v) in [
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_NAME", "example.org"),
            ("SERVER_PORT", "8080"),
            ("REQUEST_METHOD", "POST"),
            ("REQUEST_URI", "/cgi-bin/x.sh/a%20b?q=1"),
            ("QUERY_STRING", "q=1"),
            ("SCRIPT_NAME", "/cgi-bin/x.sh"),
            ("PATH_INFO", "/a b"),
            ("PATH_TRANSLATED", "/srv/www/a b"),
            ("SCRIPT_FILENAME", "/srv/cgi-bin/x.sh"),
            ("DOCUMENT_ROOT", "/srv"),
            ("REMOTE_ADDR", "10.0.0.9"),
            ("REMOTE_PORT", "5555"),
            ("REMOTE_USER", "alice"),
            ("AUTH_TYPE", "Basic"),
            ("CONTENT_LENGTH", "5"),
            ("CONTENT_TYPE", "text/plain"),
            ("HTTP_X_FORWARDED_FOR", "1.2.3.4"),
            ("HTTP_ACCEPT", "text/html, */*"),
            ("HTTP_HOST", "example.org:8080"),
            ("GIT_PROJECT_ROOT", "/srv/git"),
            ("PATH", SCRIPT_PATH),
        ] {
            assert_eq!(get(&env, k).as_deref(), Some(v), "{k}");
        }
        for k in [
            "HTTP_PROXY",
            "HTTP_AUTHORIZATION",
            "HTTP_CONTENT_TYPE",
            "HTTP_CONTENT_LENGTH",
        ] {
            assert_eq!(get(&env, k), None, "{k}");
        }
        assert_eq!(env.iter().filter(|(k, _)| k == b"HTTP_ACCEPT").count(), 1);
        assert_eq!(
            env.iter()
                .filter(|(k, _)| k == b"HTTP_X_FORWARDED_FOR")
                .count(),
            1,
            "the _ spelling is dropped"
        );
    }
}
