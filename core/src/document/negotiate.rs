//! Media types and content negotiation for documents.
//!
//! The type comes from the file's suffix: the configuration's `type` table first, then the
//! built-in table (mime_guess), else `application/octet-stream`. Text types are labelled
//! UTF-8, as lighttpd's default table does.
//!
//! `Accept` is honoured as OSU did: if the client's list excludes the document's type, the
//! answer is 406 (HEAD is exempt, so a client can always see what it would get). A type is
//! excluded when the most specific matching range has `q=0`, or no range matches; of two
//! equally specific ranges (the same range twice), the first listed decides.
//!
//! `Accept-Encoding` picks a precompressed variant (`FILE.br`, `FILE.gz`) for types worth
//! compressing; br is preferred to gzip when the client accepts both, a coding with `q=0`
//! is refused, and `*` stands for any coding not listed.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use crate::http1::head::trim_ows;

/// The media type for a file. Borrowed from a static table in the common cases, so that
/// a request for a document allocates nothing for it.
#[must_use]
pub fn content_type(path: &Path, overrides: &BTreeMap<String, String>) -> Cow<'static, str> {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
        return Cow::Borrowed(OCTET_STREAM);
    };
    if !overrides.is_empty() {
        // The table's keys are `.ext` in lower case.
        let mut key = String::with_capacity(ext.len() + 1);
        key.push('.');
        key.extend(ext.chars().map(|c| c.to_ascii_lowercase()));
        if let Some(t) = overrides.get(&key) {
            return Cow::Owned(t.clone());
        }
    }
    if let Some(t) = COMMON
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        .map(|(_, t)| *t)
    {
        return Cow::Borrowed(t);
    }
    match mime_guess::from_ext(ext).first_raw() {
        Some(m) => with_charset(m),
        None => Cow::Borrowed(OCTET_STREAM),
    }
}

/// The most requested suffixes, answered without searching mime_guess's large table; each
/// gives exactly what the full path would (a unit test compares them).
const COMMON: [(&str, &str); 12] = [
    ("html", "text/html; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("svg", "image/svg+xml"),
    ("json", "application/json; charset=utf-8"),
    ("txt", "text/plain; charset=utf-8"),
    ("woff2", "font/woff2"),
    ("ico", "image/x-icon"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
];

const OCTET_STREAM: &str = "application/octet-stream";

/// Types labelled UTF-8 by name: the two that are not `text/…`, and the common text types,
/// ready-made (a test checks these against the general rule for `text/…`).
static LABELLED: [(&str, &str); 9] = [
    ("text/html", "text/html; charset=utf-8"),
    ("text/plain", "text/plain; charset=utf-8"),
    ("text/css", "text/css; charset=utf-8"),
    ("text/javascript", "text/javascript; charset=utf-8"),
    (
        "application/javascript",
        "application/javascript; charset=utf-8",
    ),
    ("application/json", "application/json; charset=utf-8"),
    ("text/xml", "text/xml; charset=utf-8"),
    ("text/csv", "text/csv; charset=utf-8"),
    ("text/markdown", "text/markdown; charset=utf-8"),
];

/// Text types are labelled UTF-8; the common ones from a static table.
fn with_charset(m: &'static str) -> Cow<'static, str> {
    if let Some((_, labelled)) = LABELLED.iter().find(|(t, _)| *t == m) {
        return Cow::Borrowed(labelled);
    }
    if m.starts_with("text/") {
        Cow::Owned(format!("{m}; charset=utf-8"))
    } else {
        Cow::Borrowed(m)
    }
}

/// True for types whose precompressed variants are worth looking for.
#[must_use]
pub fn compressible(mime: &str) -> bool {
    // Every request for a document asks: the parameters are cut off without the general
    // string splitter.
    let base = match mime.as_bytes().iter().position(|&b| b == b';') {
        Some(i) => &mime[..i],
        None => mime,
    }
    .trim_ascii();
    base.starts_with("text/")
        || matches!(
            base,
            "application/javascript"
                | "application/json"
                | "application/xml"
                | "image/svg+xml"
                | "application/wasm"
        )
}

/// Splits a list field into (item, q) pairs; q defaults to 1.0 and is kept in thousandths.
fn items_with_q(value: &[u8]) -> Vec<(&[u8], u16)> {
    value
        .split(|&b| b == b',')
        .filter_map(|item| {
            let mut parts = item.split(|&b| b == b';');
            let name = trim_ows(parts.next()?);
            if name.is_empty() {
                return None;
            }
            let mut q = 1000;
            for p in parts {
                let p = trim_ows(p);
                if let Some(v) = p.strip_prefix(b"q=").or_else(|| p.strip_prefix(b"Q=")) {
                    q = parse_q(v).unwrap_or(0);
                }
            }
            Some((name, q))
        })
        .collect()
}

/// Parses a qvalue (`0`, `0.5`, `1.000`) into thousandths.
fn parse_q(v: &[u8]) -> Option<u16> {
    let s = core::str::from_utf8(v).ok()?;
    let f: f64 = s.parse().ok()?;
    (0.0..=1.0)
        .contains(&f)
        .then(|| (f * 1000.0).round() as u16)
}

/// True if an `Accept` field value admits `mime` (see the module documentation).
#[must_use]
pub fn accept_allows(accept: &[u8], mime: &str) -> bool {
    let base = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (ty, sub) = base.split_once('/').unwrap_or((base.as_str(), ""));
    let mut best: Option<(u8, u16)> = None;
    for (range, q) in items_with_q(accept) {
        let range = String::from_utf8_lossy(range).to_ascii_lowercase();
        let specificity = match range.split_once('/') {
            Some(("*", "*")) => 1,
            Some((t, "*")) if t == ty => 2,
            Some((t, s)) if t == ty && s == sub => 3,
            _ => continue,
        };
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, q));
        }
    }
    best.is_some_and(|(_, q)| q > 0)
}

/// A content coding weir can serve from a precompressed file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Coding {
    /// Brotli, `FILE.br`.
    Br,
    /// gzip, `FILE.gz`.
    Gzip,
}

impl Coding {
    /// The file suffix.
    #[must_use]
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Gzip => ".gz",
        }
    }

    /// The `Content-Encoding` value.
    #[must_use]
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }
}

/// The codings the client accepts, best first (br before gzip on equal q).
#[must_use]
pub fn accepted_codings(accept_encoding: Option<&[u8]>) -> Vec<Coding> {
    let Some(value) = accept_encoding else {
        return Vec::new();
    };
    let items = items_with_q(value);
    let q_of = |name: &[u8]| -> u16 {
        let exact = items.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
        let star = items.iter().find(|(n, _)| *n == b"*");
        exact.or(star).map_or(0, |(_, q)| *q)
    };
    let mut out: Vec<(Coding, u16)> = [
        (Coding::Br, q_of(b"br")),
        (Coding::Gzip, q_of(b"gzip").max(q_of(b"x-gzip"))),
    ]
    .into_iter()
    .filter(|(_, q)| *q > 0)
    .collect();
    out.sort_by_key(|c| core::cmp::Reverse(c.1));
    out.into_iter().map(|(c, _)| c).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_suffixes_agree_with_the_full_table() {
        for (ext, t) in COMMON {
            let full = mime_guess::from_ext(ext)
                .first_raw()
                .map_or(Cow::Borrowed(OCTET_STREAM), with_charset);
            assert_eq!(full, t, ".{ext}");
        }
    }

    #[test]
    fn ready_labels_agree_with_the_general_rule_and_are_used() {
        for (t, labelled) in LABELLED {
            assert_eq!(labelled, format!("{t}; charset=utf-8"));
            let got = with_charset(t);
            assert!(
                matches!(got, Cow::Borrowed(b) if b.as_ptr() == labelled.as_ptr()),
                "{t}: {got}"
            );
        }
        assert_eq!(with_charset("text/x-c"), "text/x-c; charset=utf-8");
        assert_eq!(with_charset("image/png"), "image/png");
    }

    #[test]
    fn types_with_overrides() {
        let mut o = BTreeMap::new();
        o.insert(".md".to_string(), "text/markdown".to_string());
        assert_eq!(content_type(Path::new("a/README.MD"), &o), "text/markdown");
        assert_eq!(
            content_type(Path::new("a.html"), &o),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.png"), &o), "image/png");
        assert_eq!(
            content_type(Path::new("a.JS"), &o),
            mime_guess::from_ext("js")
                .first_raw()
                .map_or(String::new(), |m| format!("{m}; charset=utf-8"))
        );
        assert_eq!(
            content_type(Path::new("a.rtx"), &o),
            "text/richtext; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("a.json"), &BTreeMap::new()),
            "application/json; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("noext"), &o),
            "application/octet-stream"
        );
        assert!(
            compressible("text/css; charset=utf-8")
                && compressible("image/svg+xml")
                && !compressible("image/png")
        );
    }

    #[test]
    fn accept() {
        assert!(accept_allows(b"*/*", "image/png"));
        assert!(accept_allows(b"text/html, image/*;q=0.8", "image/png"));
        assert!(!accept_allows(b"text/html", "image/png"));
        assert!(!accept_allows(b"image/*, image/png;q=0", "image/png"));
        assert!(accept_allows(b"image/*;q=0, image/png", "image/png"));
        assert!(accept_allows(b"TEXT/HTML", "text/html; charset=utf-8"));
        assert!(!accept_allows(b"", "text/html"));
        assert!(!accept_allows(b"*/*;q=0", "text/html"));
        // The same range twice: the first decides.
        assert!(!accept_allows(b"text/html;q=0, text/html", "text/html"));
        assert!(accept_allows(b"text/*, text/*;q=0", "text/html"));
    }

    #[test]
    fn encodings() {
        assert_eq!(accepted_codings(None), []);
        assert_eq!(
            accepted_codings(Some(b"gzip, deflate, br")),
            [Coding::Br, Coding::Gzip]
        );
        assert_eq!(
            accepted_codings(Some(b"gzip;q=1, br;q=0.5")),
            [Coding::Gzip, Coding::Br]
        );
        assert_eq!(accepted_codings(Some(b"br;q=0, *")), [Coding::Gzip]);
        assert_eq!(accepted_codings(Some(b"identity")), []);
        assert_eq!(accepted_codings(Some(b"x-gzip")), [Coding::Gzip]);
    }
}
