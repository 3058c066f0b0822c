//! Conditional requests (RFC 9110 §13): which precondition wins and what it answers.
//!
//! The evaluation order is RFC 9110 §13.2.2:
//!
//! 1. `If-Match` present: false → 412.
//! 2. else `If-Unmodified-Since` present (and a valid date): modified since → 412.
//! 3. `If-None-Match` present: matches → 304 for GET/HEAD, 412 otherwise.
//! 4. else `If-Modified-Since` (GET/HEAD only, valid date): not modified → 304.
//! 5. `Range` is then honoured only if `If-Range` (when present) matches.
//!
//! `If-Match` uses the strong comparison, `If-None-Match` the weak one (§13.1.1, §13.1.2);
//! weir's tags are always strong. An invalid date makes its field be ignored, as §13.1.3
//! and §13.1.4 require.

use crate::http1::head::trim_ows;
use crate::http1::{Headers, Method};
use crate::time::UnixTime;

/// A document's validators.
#[derive(Clone, Copy, Debug)]
pub struct Validators<'a> {
    /// The strong entity tag, quotes included.
    pub etag: &'a str,
    /// The modification time.
    pub last_modified: UnixTime,
}

/// What the preconditions decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Go on with the request.
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// True if the list field `value` (`*` or entity tags) contains `tag`; `weak` selects the
/// weak comparison (ignore `W/`), otherwise weak tags never match.
fn list_matches(value: &[u8], tag: &str, weak: bool) -> bool {
    let value = trim_ows(value);
    if value == b"*" {
        return true;
    }
    value.split(|&b| b == b',').any(|t| {
        let t = trim_ows(t);
        match t.strip_prefix(b"W/") {
            Some(opaque) => weak && opaque == tag.as_bytes(),
            None => t == tag.as_bytes(),
        }
    })
}

/// Evaluates steps 1–4 for a request with `headers` on a document with validators `v`.
#[must_use]
pub fn evaluate(method: &Method, headers: &Headers, v: Validators<'_>) -> Precondition {
    let safe = matches!(method, Method::Get | Method::Head);
    let if_match: Vec<_> = headers.get_all("if-match").collect();
    if !if_match.is_empty() {
        if !if_match.iter().any(|x| list_matches(x, v.etag, false)) {
            return Precondition::Failed;
        }
    } else if let Some(date) = headers
        .get("if-unmodified-since")
        .and_then(|d| UnixTime::parse_http_date(d))
    {
        if v.last_modified > date {
            return Precondition::Failed;
        }
    }
    let if_none_match: Vec<_> = headers.get_all("if-none-match").collect();
    if !if_none_match.is_empty() {
        if if_none_match.iter().any(|x| list_matches(x, v.etag, true)) {
            return if safe {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if safe {
        if let Some(date) = headers
            .get("if-modified-since")
            .and_then(|d| UnixTime::parse_http_date(d))
        {
            if v.last_modified <= date {
                return Precondition::NotModified;
            }
        }
    }
    Precondition::Proceed
}

/// Step 5: true if a `Range` may be honoured (`If-Range` absent or matching). An entity
/// tag must match strongly; a date must equal `Last-Modified` exactly (§13.1.5).
#[must_use]
pub fn if_range_allows(headers: &Headers, v: Validators<'_>) -> bool {
    let Some(value) = headers.get("if-range") else {
        return true;
    };
    let value = trim_ows(value);
    if value.starts_with(b"\"") {
        return value == v.etag.as_bytes();
    }
    if value.starts_with(b"W/") {
        return false;
    }
    UnixTime::parse_http_date(value) == Some(v.last_modified)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: Validators<'static> = Validators {
        etag: "\"abc\"",
        last_modified: UnixTime(1_000_000),
    };

    fn h(fields: &[(&'static str, String)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in fields {
            h.push(*n, v.clone());
        }
        h
    }

    fn date(t: i64) -> String {
        UnixTime(t).http_date()
    }

    #[test]
    fn table() {
        use Precondition::*;
        let get = Method::Get;
        let put = Method::Put;
        type Case<'m> = (&'m Method, Vec<(&'static str, String)>, Precondition);
        let cases: Vec<Case<'_>> = vec![
            (&get, vec![], Proceed),
            (&get, vec![("If-Match", "\"abc\"".into())], Proceed),
            (&get, vec![("If-Match", "*".into())], Proceed),
            (&get, vec![("If-Match", "W/\"abc\"".into())], Failed),
            (&get, vec![("If-Match", "\"x\", \"y\"".into())], Failed),
            (&get, vec![("If-Unmodified-Since", date(999_999))], Failed),
            (
                &get,
                vec![("If-Unmodified-Since", date(1_000_000))],
                Proceed,
            ),
            (
                &get,
                vec![("If-Unmodified-Since", "garbage".into())],
                Proceed,
            ),
            // If-Match present: If-Unmodified-Since is not evaluated.
            (
                &get,
                vec![
                    ("If-Match", "\"abc\"".into()),
                    ("If-Unmodified-Since", date(1)),
                ],
                Proceed,
            ),
            (&get, vec![("If-None-Match", "\"abc\"".into())], NotModified),
            (
                &get,
                vec![("If-None-Match", "W/\"abc\"".into())],
                NotModified,
            ),
            (&get, vec![("If-None-Match", "\"x\"".into())], Proceed),
            (&put, vec![("If-None-Match", "*".into())], Failed),
            (
                &get,
                vec![("If-Modified-Since", date(1_000_000))],
                NotModified,
            ),
            (&get, vec![("If-Modified-Since", date(999_999))], Proceed),
            (&put, vec![("If-Modified-Since", date(1_000_000))], Proceed),
            // If-None-Match present: If-Modified-Since is not evaluated.
            (
                &get,
                vec![
                    ("If-None-Match", "\"x\"".into()),
                    ("If-Modified-Since", date(2_000_000)),
                ],
                Proceed,
            ),
            // A failed If-Match wins over a matching If-None-Match.
            (
                &get,
                vec![
                    ("If-Match", "\"x\"".into()),
                    ("If-None-Match", "\"abc\"".into()),
                ],
                Failed,
            ),
        ];
        for (method, fields, want) in cases {
            assert_eq!(
                evaluate(method, &h(&fields), V),
                want,
                "{method:?} {fields:?}"
            );
        }
    }

    #[test]
    fn if_range() {
        assert!(if_range_allows(&h(&[]), V));
        assert!(if_range_allows(&h(&[("If-Range", "\"abc\"".into())]), V));
        assert!(!if_range_allows(&h(&[("If-Range", "\"old\"".into())]), V));
        assert!(!if_range_allows(&h(&[("If-Range", "W/\"abc\"".into())]), V));
        assert!(if_range_allows(&h(&[("If-Range", date(1_000_000))]), V));
        assert!(!if_range_allows(&h(&[("If-Range", date(1_000_001))]), V));
    }
}
