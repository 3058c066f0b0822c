//! Static documents: from an opened file's metadata and the request to a response head.
//!
//! Everything here is a pure function of the request head and the `FileMeta` the shell
//! reported, so the same decision is made by the server, the simulator and the model.
//!
//! Validators: the entity tag is strong and built like nginx's, `"MTIME-LEN"` in hex, with
//! the inode added so that replacing a file by another of the same size within the same
//! second still changes the tag; `Last-Modified` is the mtime.
//!
//! Conditionals follow RFC 9110 §13.2.2 for GET and HEAD: `If-None-Match` is evaluated with
//! the weak comparison and, when present, `If-Modified-Since` is ignored; a match answers
//! 304 with the validators and no body.

use std::path::Path;

use crate::http1::{Headers, Method, RequestHead, ResponseBody, ResponseHead};
use crate::server::io::FileMeta;
use crate::time::UnixTime;

/// The strong entity tag of a file version, quotes included.
#[must_use]
pub fn etag(meta: &FileMeta) -> String {
    format!("\"{:x}-{:x}-{:x}\"", meta.mtime.0, meta.len, meta.inode)
}

/// The media type for a file name, by suffix; text types are labelled UTF-8.
#[must_use]
pub fn content_type(path: &Path) -> String {
    let mime = mime_guess::from_path(path).first_raw();
    match mime {
        Some(m)
            if m.starts_with("text/")
                || m == "application/javascript"
                || m == "application/json" =>
        {
            format!("{m}; charset=utf-8")
        }
        Some(m) => m.to_string(),
        None => "application/octet-stream".to_string(),
    }
}

/// True if the request's preconditions say the client's copy is current (answer 304).
#[must_use]
pub fn not_modified(req: &RequestHead, meta: &FileMeta, tag: &str) -> bool {
    if !matches!(req.method, Method::Get | Method::Head) {
        return false;
    }
    let inm: Vec<&bytes::Bytes> = req.headers.get_all("if-none-match").collect();
    if !inm.is_empty() {
        return inm.iter().any(|v| etag_list_matches_weakly(v, tag));
    }
    if let Some(ims) = req.headers.get("if-modified-since") {
        if let Some(since) = UnixTime::parse_http_date(ims) {
            return meta.mtime <= since;
        }
    }
    false
}

/// Weak comparison of `tag` against a field value that is `*` or a list of entity tags.
fn etag_list_matches_weakly(value: &[u8], tag: &str) -> bool {
    let value = crate::http1::head::trim_ows(value);
    if value == b"*" {
        return true;
    }
    let opaque = |t: &[u8]| -> Vec<u8> {
        let t = crate::http1::head::trim_ows(t);
        t.strip_prefix(b"W/").unwrap_or(t).to_vec()
    };
    let want = opaque(tag.as_bytes());
    value.split(|&b| b == b',').any(|t| opaque(t) == want)
}

/// The head of a 200 (or 304) response for a file.
#[must_use]
pub fn file_head(req: &RequestHead, meta: &FileMeta, path: &Path) -> ResponseHead {
    let tag = etag(meta);
    let mut headers = Headers::new();
    let status = if not_modified(req, meta, &tag) {
        304
    } else {
        200
    };
    if status == 200 {
        headers.push("Content-Type", content_type(path));
    }
    headers.push("Last-Modified", meta.mtime.http_date());
    headers.push("ETag", tag);
    if status == 200 {
        headers.push("Accept-Ranges", "none");
    }
    ResponseHead {
        status,
        headers,
        body: if status == 304 {
            ResponseBody::Empty
        } else {
            ResponseBody::Length(meta.len)
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{BodyKind, Version};
    use crate::server::io::FileKind;
    use bytes::Bytes;

    fn req(headers: &[(&'static str, &'static str)]) -> RequestHead {
        let mut h = Headers::new();
        for (n, v) in headers {
            h.push(
                Bytes::from_static(n.as_bytes()),
                Bytes::from_static(v.as_bytes()),
            );
        }
        RequestHead {
            method: Method::Get,
            target: Bytes::from_static(b"/x"),
            version: Version::Http11,
            headers: h,
            host: Some(Bytes::from_static(b"h")),
            body: BodyKind::None,
            expects_continue: false,
            keep_alive: true,
        }
    }

    const META: FileMeta = FileMeta {
        kind: FileKind::File,
        len: 10,
        mtime: UnixTime(1_000_000),
        inode: 7,
    };

    #[test]
    fn conditionals() {
        let tag = etag(&META);
        assert_eq!(tag, "\"f4240-a-7\"");
        assert!(!not_modified(&req(&[]), &META, &tag));
        assert!(not_modified(
            &req(&[("If-None-Match", "\"f4240-a-7\"")]),
            &META,
            &tag
        ));
        assert!(not_modified(
            &req(&[("If-None-Match", "\"x\", W/\"f4240-a-7\"")]),
            &META,
            &tag
        ));
        assert!(not_modified(&req(&[("If-None-Match", "*")]), &META, &tag));
        assert!(!not_modified(
            &req(&[("If-None-Match", "\"other\"")]),
            &META,
            &tag
        ));
        let date = UnixTime(1_000_000).http_date();
        let date: &'static str = Box::leak(date.into_boxed_str());
        assert!(not_modified(
            &req(&[("If-Modified-Since", date)]),
            &META,
            &tag
        ));
        assert!(!not_modified(
            &req(&[("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")]),
            &META,
            &tag
        ));
        // If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
        assert!(!not_modified(
            &req(&[("If-None-Match", "\"other\""), ("If-Modified-Since", date)]),
            &META,
            &tag
        ));
    }

    #[test]
    fn types() {
        assert_eq!(
            content_type(Path::new("/a/b.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("/a/b.png")), "image/png");
        assert_eq!(content_type(Path::new("/a/b")), "application/octet-stream");
    }

    #[test]
    fn head_304_has_validators_and_no_body() {
        let h = file_head(
            &req(&[("If-None-Match", "\"f4240-a-7\"")]),
            &META,
            Path::new("/x.txt"),
        );
        assert_eq!(h.status, 304);
        assert_eq!(h.body, ResponseBody::Empty);
        assert!(h.headers.contains("etag") && h.headers.contains("last-modified"));
        let h = file_head(&req(&[]), &META, Path::new("/x.txt"));
        assert_eq!((h.status, h.body), (200, ResponseBody::Length(10)));
    }
}
