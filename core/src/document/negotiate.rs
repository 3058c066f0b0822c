//! Media types and content negotiation for documents.
//!
//! The type comes from the file's suffix: the configuration's `type` table first, then the
//! built-in table (mime_guess), else `application/octet-stream`. Text types are labelled
//! UTF-8, as lighttpd's default table does.
//!
//! `Accept` is honoured as OSU did: if the client's list excludes the document's type, the
//! answer is 406 (HEAD is exempt, so a client can always see what it would get). A type is
//! excluded when the most specific matching range has `q=0`, or no range matches.
//!
//! `Accept-Encoding` picks a precompressed variant (`FILE.br`, `FILE.gz`) for types worth
//! compressing; br is preferred to gzip when the client accepts both, a coding with `q=0`
//! is refused, and `*` stands for any coding not listed.

use std::collections::BTreeMap;
use std::path::Path;

use crate::http1::head::trim_ows;

/// The media type for a file.
#[must_use]
pub fn content_type(path: &Path, overrides: &BTreeMap<String, String>) -> String {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| format!(".{}", e.to_ascii_lowercase()));
    if let Some(t) = ext.as_ref().and_then(|e| overrides.get(e)) {
        return t.clone();
    }
    match mime_guess::from_path(path).first_raw() {
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

/// True for types whose precompressed variants are worth looking for.
#[must_use]
pub fn compressible(mime: &str) -> bool {
    let base = mime.split(';').next().unwrap_or("").trim();
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
