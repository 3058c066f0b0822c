//! Documents: from an opened file to a response (DESIGN.md §4, "Static files").
//!
//! Pure functions of the request head and the `FileMeta` the shell reported, so that the
//! server, the simulator and the model make the same decision. The server does the I/O
//! dance (open the file, maybe open a precompressed variant); this module decides the
//! status, the header fields and the layout of the body, as a list of `Piece`s: bytes
//! in memory or ranges of the open file.
//!
//! Validators: the entity tag is strong, `"MTIME-LEN-INODE"` in hex (nginx's shape plus
//! the inode, so that a file replaced by another of the same size in the same second still
//! gets a new tag); `Last-Modified` is the mtime.

pub mod conditional;
pub mod listing;
pub mod negotiate;
pub mod range;

use bytes::Bytes;

use crate::http1::{Headers, Method, ResponseBody, ResponseHead};
use crate::server::io::FileMeta;
use conditional::{Precondition, Validators};
use negotiate::Coding;
use range::RangeRequest;

/// A piece of a document response body.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Piece {
    /// Bytes made here (multipart delimiters).
    Bytes(Bytes),
    /// A range of the open file.
    File {
        /// Offset in the file.
        offset: u64,
        /// Length.
        len: u64,
    },
}

/// The strong entity tag of a file version, quotes included.
#[must_use]
pub fn etag(meta: &FileMeta) -> String {
    format!("\"{:x}-{:x}-{:x}\"", meta.mtime.0, meta.len, meta.inode)
}

/// What the server knows when it answers with a file.
#[derive(Clone, Copy, Debug)]
pub struct FileAnswer<'a> {
    /// The request's method.
    pub method: &'a Method,
    /// The request's header fields.
    pub headers: &'a Headers,
    /// The file (or the precompressed variant) being served.
    pub meta: &'a FileMeta,
    /// The document's media type.
    pub mime: &'a str,
    /// The coding of the variant, if a precompressed one is served.
    pub coding: Option<Coding>,
    /// True if the response depends on `Accept-Encoding`.
    pub vary: bool,
}

/// Decides the response for a file: 200, 206, 304, 412 or 416, with its body layout.
#[must_use]
pub fn answer(a: &FileAnswer<'_>) -> (ResponseHead, Vec<Piece>) {
    let tag = etag(a.meta);
    let v = Validators {
        etag: &tag,
        last_modified: a.meta.mtime,
    };
    let mut headers = Headers::new();
    let len = a.meta.len;
    let validators = |h: &mut Headers| {
        h.push("Last-Modified", a.meta.mtime.http_date());
        h.push("ETag", tag.clone());
        if a.vary {
            h.push("Vary", "Accept-Encoding");
        }
    };
    match conditional::evaluate(a.method, a.headers, v) {
        Precondition::NotModified => {
            validators(&mut headers);
            return (
                ResponseHead {
                    status: 304,
                    headers,
                    body: ResponseBody::Empty,
                },
                Vec::new(),
            );
        }
        Precondition::Failed => {
            return (
                ResponseHead {
                    status: 412,
                    headers,
                    body: ResponseBody::Empty,
                },
                Vec::new(),
            );
        }
        Precondition::Proceed => {}
    }
    validators(&mut headers);
    headers.push("Accept-Ranges", "bytes");
    if let Some(c) = a.coding {
        headers.push("Content-Encoding", c.token());
    }
    let ranges = match a.headers.get("range") {
        Some(r)
            if matches!(a.method, Method::Get) && conditional::if_range_allows(a.headers, v) =>
        {
            range::parse(r, len)
        }
        _ => RangeRequest::Whole,
    };
    match ranges {
        RangeRequest::Whole => {
            headers.push("Content-Type", a.mime.to_string());
            let body = if len > 0 {
                vec![Piece::File { offset: 0, len }]
            } else {
                Vec::new()
            };
            (
                ResponseHead {
                    status: 200,
                    headers,
                    body: ResponseBody::Length(len),
                },
                body,
            )
        }
        RangeRequest::Unsatisfiable => {
            headers.push("Content-Range", format!("bytes */{len}"));
            (
                ResponseHead {
                    status: 416,
                    headers,
                    body: ResponseBody::Empty,
                },
                Vec::new(),
            )
        }
        RangeRequest::Ranges(rs) if rs.len() == 1 => {
            let r = rs[0];
            headers.push("Content-Type", a.mime.to_string());
            headers.push(
                "Content-Range",
                format!("bytes {}-{}/{len}", r.first, r.last),
            );
            (
                ResponseHead {
                    status: 206,
                    headers,
                    body: ResponseBody::Length(r.len()),
                },
                vec![Piece::File {
                    offset: r.first,
                    len: r.len(),
                }],
            )
        }
        RangeRequest::Ranges(rs) => {
            // A boundary that cannot occur in the parts' headers and differs per version.
            let boundary = format!("weir-{}", tag.trim_matches('"'));
            headers.push(
                "Content-Type",
                format!("multipart/byteranges; boundary={boundary}"),
            );
            let (parts, closing, total) = range::multipart(&rs, len, a.mime, &boundary);
            let mut body = Vec::new();
            for p in parts {
                body.push(Piece::Bytes(Bytes::from(p.header)));
                body.push(Piece::File {
                    offset: p.range.first,
                    len: p.range.len(),
                });
            }
            body.push(Piece::Bytes(Bytes::from(closing)));
            (
                ResponseHead {
                    status: 206,
                    headers,
                    body: ResponseBody::Length(total),
                },
                body,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::io::FileKind;
    use crate::time::UnixTime;

    const META: FileMeta = FileMeta {
        kind: FileKind::File,
        len: 10,
        mtime: UnixTime(1_000_000),
        inode: 7,
    };

    fn run(method: Method, fields: &[(&'static str, &'static str)]) -> (ResponseHead, Vec<Piece>) {
        let mut h = Headers::new();
        for (n, v) in fields {
            h.push(*n, *v);
        }
        answer(&FileAnswer {
            method: &method,
            headers: &h,
            meta: &META,
            mime: "text/plain",
            coding: None,
            vary: false,
        })
    }

    #[test]
    fn whole_and_conditional() {
        let (h, body) = run(Method::Get, &[]);
        assert_eq!((h.status, h.body), (200, ResponseBody::Length(10)));
        assert_eq!(h.headers.get("etag").unwrap(), "\"f4240-a-7\"");
        assert_eq!(body, [Piece::File { offset: 0, len: 10 }]);
        let (h, body) = run(Method::Get, &[("If-None-Match", "\"f4240-a-7\"")]);
        assert_eq!((h.status, body.len()), (304, 0));
        assert!(h.headers.contains("etag") && !h.headers.contains("content-type"));
        assert_eq!(run(Method::Get, &[("If-Match", "\"nope\"")]).0.status, 412);
    }

    #[test]
    fn ranges() {
        let (h, body) = run(Method::Get, &[("Range", "bytes=2-4")]);
        assert_eq!((h.status, h.body), (206, ResponseBody::Length(3)));
        assert_eq!(h.headers.get("content-range").unwrap(), "bytes 2-4/10");
        assert_eq!(body, [Piece::File { offset: 2, len: 3 }]);
        let (h, _) = run(Method::Get, &[("Range", "bytes=10-")]);
        assert_eq!(
            (h.status, h.headers.get("content-range").unwrap().as_ref()),
            (416, &b"bytes */10"[..])
        );
        let (h, body) = run(Method::Get, &[("Range", "bytes=0-0,-2")]);
        assert_eq!(h.status, 206);
        let ct = String::from_utf8(h.headers.get("content-type").unwrap().to_vec()).unwrap();
        assert_eq!(ct, "multipart/byteranges; boundary=weir-f4240-a-7");
        let total: u64 = body
            .iter()
            .map(|p| match p {
                Piece::Bytes(b) => b.len() as u64,
                Piece::File { len, .. } => *len,
            })
            .sum();
        assert_eq!(h.body, ResponseBody::Length(total));
        // If-Range with an old tag: the whole document.
        assert_eq!(
            run(
                Method::Get,
                &[("Range", "bytes=2-4"), ("If-Range", "\"old\"")]
            )
            .0
            .status,
            200
        );
        assert_eq!(
            run(
                Method::Get,
                &[("Range", "bytes=2-4"), ("If-Range", "\"f4240-a-7\"")]
            )
            .0
            .status,
            206
        );
        // HEAD ignores Range (RFC 9110 §14.2: GET only).
        assert_eq!(run(Method::Head, &[("Range", "bytes=2-4")]).0.status, 200);
    }
}
