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

use std::borrow::Cow;

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
    EntityTag::of(meta).as_str().to_owned()
}

/// An entity tag written on the stack (every request for a document makes one).
struct EntityTag {
    buf: [u8; 56],
    len: usize,
}

impl EntityTag {
    /// `"MTIME-LEN-INODE"` in lower-case hex; a negative mtime in two's complement, as
    /// `{:x}` writes an `i64`.
    fn of(meta: &FileMeta) -> EntityTag {
        let mut t = EntityTag {
            buf: [0; 56],
            len: 0,
        };
        t.push(b'"');
        t.hex(meta.mtime.0.cast_unsigned());
        t.push(b'-');
        t.hex(meta.len);
        t.push(b'-');
        t.hex(meta.inode);
        t.push(b'"');
        t
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn hex(&mut self, v: u64) {
        let digits = (64 - v.leading_zeros()).div_ceil(4).max(1);
        for i in (0..digits).rev() {
            self.push(b"0123456789abcdef"[((v >> (i * 4)) & 0xf) as usize]);
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn as_str(&self) -> &str {
        // Only ASCII is ever written.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

/// The `Content-Type` field value: a static type is not copied.
#[allow(clippy::ptr_arg)] // the `Cow` itself says whether the type is static
fn type_value(mime: &Cow<'static, str>) -> Bytes {
    match mime {
        Cow::Borrowed(s) => Bytes::from_static(s.as_bytes()),
        Cow::Owned(s) => Bytes::copy_from_slice(s.as_bytes()),
    }
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
    pub mime: &'a Cow<'static, str>,
    /// The coding of the variant, if a precompressed one is served.
    pub coding: Option<Coding>,
    /// True if the response depends on `Accept-Encoding`.
    pub vary: bool,
}

/// Decides the response for a file: 200, 206, 304, 412 or 416, with its body layout.
#[must_use]
pub fn answer(a: &FileAnswer<'_>) -> (ResponseHead, Vec<Piece>) {
    let entity_tag = EntityTag::of(a.meta);
    let tag = entity_tag.as_str();
    let v = Validators {
        etag: tag,
        last_modified: a.meta.mtime,
    };
    // Room for every field of the usual 200 without growing.
    let mut headers = Headers(Vec::with_capacity(6));
    let len = a.meta.len;
    let validators = |h: &mut Headers| {
        h.push(
            "Last-Modified",
            Bytes::copy_from_slice(&a.meta.mtime.http_date_bytes()),
        );
        h.push("ETag", Bytes::copy_from_slice(entity_tag.as_bytes()));
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
            headers.push("Content-Type", type_value(a.mime));
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
            headers.push("Content-Type", type_value(a.mime));
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
            mime: &Cow::Borrowed("text/plain"),
            coding: None,
            vary: false,
        })
    }

    /// An empty file is answered with no body piece at all: a piece of no bytes would be
    /// a read of nothing for the shell.
    #[test]
    fn an_empty_file_has_no_body_piece() {
        let empty = FileMeta { len: 0, ..META };
        let (h, body) = answer(&FileAnswer {
            method: &Method::Get,
            headers: &Headers::new(),
            meta: &empty,
            mime: &Cow::Borrowed("text/plain"),
            coding: None,
            vary: false,
        });
        assert_eq!((h.status, h.body), (200, ResponseBody::Length(0)));
        assert_eq!(body, []);
    }

    #[test]
    fn whole_and_conditional() {
        let (h, body) = run(Method::Get, &[]);
        assert_eq!((h.status, h.body), (200, ResponseBody::Length(10)));
        assert_eq!(h.headers.get("etag").unwrap(), "\"f4240-a-7\"");
        assert_eq!(
            etag(&META),
            "\"f4240-a-7\"",
            "the tag others compute is the one sent"
        );
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
