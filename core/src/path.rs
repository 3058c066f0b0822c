//! Request-target normalisation (DESIGN.md §3.2), before any rule or file sees a path.
//!
//! The steps, in order:
//!
//! 1. Take the path of the target: origin-form `/p?q` as is; absolute-form
//!    `http://host/p?q` loses its scheme and authority (the connection already took the
//!    authority as the host); `*` is only for `OPTIONS` and is kept as such.
//! 2. Split off the query at the first `?`; it is kept verbatim, never decoded here.
//! 3. Percent-decode the path exactly once. An invalid escape, an encoded `/` (`%2F`, which
//!    would let a segment smuggle a separator past the rules), a NUL or any other control
//!    byte → 400.
//! 4. Collapse runs of `/` into one, then remove dot segments (RFC 3986 §5.2.4). A path
//!    that would climb above `/` → 400 rather than being clamped, so a traversal attempt is
//!    visible as an error and never silently maps to another file.
//!
//! The result always starts with `/`, contains no `.` or `..` segment and no empty segment
//! except a final one (a trailing slash is meaningful: it names a directory).

use bytes::Bytes;

/// A normalised request target.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// The decoded, normalised path (starts with `/`), or `*` for `OPTIONS *`.
    pub path: Vec<u8>,
    /// The query string without its `?`, undecoded; `None` when there was no `?`.
    pub query: Option<Bytes>,
}

/// Why a target was refused (every case answers 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetError {
    /// Not origin-form, absolute-form or `*`.
    BadForm,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// `%2F` in the path.
    EncodedSlash,
    /// NUL or another control byte after decoding.
    ControlByte,
    /// `..` would climb above `/`.
    AboveRoot,
}

impl TargetError {
    /// A short description for the error log and the 400 page.
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            TargetError::BadForm => "request target is not a path",
            TargetError::BadEscape => "invalid percent-encoding in the path",
            TargetError::EncodedSlash => "encoded slash in the path",
            TargetError::ControlByte => "control byte in the path",
            TargetError::AboveRoot => "path climbs above the root",
        }
    }
}

/// Normalises a request target as the request line carried it.
pub fn normalize(target: &Bytes) -> Result<Target, TargetError> {
    if target.as_ref() == b"*" {
        return Ok(Target {
            path: b"*".to_vec(),
            query: None,
        });
    }
    let start = path_start(target)?;
    let rest = target.slice(start..);
    let (raw_path, query) = match rest.iter().position(|&b| b == b'?') {
        Some(i) => (rest.slice(..i), Some(rest.slice(i + 1..))),
        None => (rest.clone(), None),
    };
    if is_normal(&raw_path) {
        // Already in normal form (the usual request): decoding and segment removal
        // would give the same bytes back.
        return Ok(Target {
            path: raw_path.to_vec(),
            query,
        });
    }
    let decoded = percent_decode(&raw_path)?;
    let path = remove_dot_segments(&decoded)?;
    Ok(Target { path, query })
}

/// True if `raw` is its own normal form: it starts with `/`, has no `%`, no control byte,
/// no empty segment (except a final one: a trailing slash) and no `.` or `..` segment.
fn is_normal(raw: &[u8]) -> bool {
    let Some(rest) = raw.strip_prefix(b"/") else {
        return false;
    };
    if raw.iter().any(|&b| b == b'%' || b < 0x20 || b == 0x7f) {
        return false;
    }
    let mut segments = rest.split(|&b| b == b'/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if matches!(seg, b"." | b"..") || (seg.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// Index where the path begins in an origin-form or absolute-form target.
fn path_start(target: &[u8]) -> Result<usize, TargetError> {
    if target.first() == Some(&b'/') {
        return Ok(0);
    }
    let lower: Vec<u8> = target.iter().take(8).map(u8::to_ascii_lowercase).collect();
    let after_scheme = if lower.starts_with(b"http://") {
        7
    } else if lower.starts_with(b"https://") {
        8
    } else {
        return Err(TargetError::BadForm);
    };
    match target[after_scheme..]
        .iter()
        .position(|&b| b == b'/' || b == b'?')
    {
        // `http://host?q` has an empty path, which means `/` (RFC 9112 §3.2.2): callers
        // see the `?` at index 0 of the rest and an empty raw path, normalised to `/`.
        Some(i) => Ok(after_scheme + i),
        None => Ok(target.len()),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn percent_decode(raw: &[u8]) -> Result<Vec<u8>, TargetError> {
    let mut out = Vec::with_capacity(raw.len() + 1);
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        let byte = if b == b'%' {
            let (Some(h), Some(l)) = (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(TargetError::BadEscape);
            };
            i += 3;
            let v = h << 4 | l;
            if v == b'/' {
                return Err(TargetError::EncodedSlash);
            }
            v
        } else {
            i += 1;
            b
        };
        if byte < 0x20 || byte == 0x7f {
            return Err(TargetError::ControlByte);
        }
        out.push(byte);
    }
    Ok(out)
}

/// Collapses slash runs and removes `.`/`..` segments; climbing above `/` is an error.
fn remove_dot_segments(path: &[u8]) -> Result<Vec<u8>, TargetError> {
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = path.is_empty() || path.ends_with(b"/");
    let parts: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    for (i, seg) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        match *seg {
            b"" => {}
            b"." => trailing_slash |= last,
            b".." => {
                if segments.pop().is_none() {
                    return Err(TargetError::AboveRoot);
                }
                trailing_slash |= last;
            }
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(path.len() + 1);
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if segments.is_empty() || trailing_slash {
        out.push(b'/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm(s: &str) -> Result<(String, Option<String>), TargetError> {
        normalize(&Bytes::copy_from_slice(s.as_bytes())).map(|t| {
            (
                String::from_utf8(t.path).unwrap(),
                t.query.map(|q| String::from_utf8(q.to_vec()).unwrap()),
            )
        })
    }

    fn path(s: &str) -> String {
        norm(s).unwrap().0
    }

    proptest! {
        /// The shortcut for paths already in normal form gives what the full walk gives.
        #[test]
        fn normal_form_shortcut_agrees(raw in proptest::collection::vec(
            prop_oneof![Just(b'/'), Just(b'.'), Just(b'%'), Just(b'a'), Just(b'2'), Just(b'F'), Just(0x01u8)],
            0..12,
        )) {
            let full = percent_decode(&raw).and_then(|d| remove_dot_segments(&d));
            if is_normal(&raw) {
                prop_assert_eq!(full, Ok(raw.clone()));
            }
        }
    }

    #[test]
    fn table() {
        assert_eq!(path("/"), "/");
        assert_eq!(path("/a/b"), "/a/b");
        assert_eq!(path("/a/b/"), "/a/b/");
        assert_eq!(path("//a///b"), "/a/b");
        assert_eq!(path("/a/./b"), "/a/b");
        assert_eq!(path("/a/b/.."), "/a/");
        assert_eq!(path("/a/b/../c"), "/a/c");
        assert_eq!(path("/a/."), "/a/");
        assert_eq!(path("/%7Euser/x%20y"), "/~user/x y");
    }

    #[test]
    fn errors() {
        assert_eq!(norm("/.."), Err(TargetError::AboveRoot));
        assert_eq!(norm("/a/../.."), Err(TargetError::AboveRoot));
        assert_eq!(norm("/%2e%2e/etc"), Err(TargetError::AboveRoot));
        assert_eq!(norm("/a%2Fb"), Err(TargetError::EncodedSlash));
        assert_eq!(norm("/a%2fb"), Err(TargetError::EncodedSlash));
        assert_eq!(norm("/a%00b"), Err(TargetError::ControlByte));
        assert_eq!(norm("/a%0ab"), Err(TargetError::ControlByte));
        assert_eq!(norm("/a%zz"), Err(TargetError::BadEscape));
        assert_eq!(norm("/a%4"), Err(TargetError::BadEscape));
        assert_eq!(norm("a/b"), Err(TargetError::BadForm));
        assert_eq!(norm("example.com:443"), Err(TargetError::BadForm));
    }

    #[test]
    fn query_is_kept_verbatim() {
        assert_eq!(
            norm("/a/../b?x=%2F&y=..").unwrap(),
            ("/b".into(), Some("x=%2F&y=..".into()))
        );
        assert_eq!(norm("/?").unwrap(), ("/".into(), Some(String::new())));
    }

    #[test]
    fn absolute_form() {
        assert_eq!(
            norm("http://example.com/a/b?q").unwrap(),
            ("/a/b".into(), Some("q".into()))
        );
        assert_eq!(norm("HTTP://example.com").unwrap(), ("/".into(), None));
        assert_eq!(
            norm("http://example.com?q").unwrap(),
            ("/".into(), Some("q".into()))
        );
        assert_eq!(norm("*").unwrap(), ("*".into(), None));
    }

    proptest! {
        #[test]
        fn normalised_paths_have_no_dot_segments(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut target = vec![b'/'];
            target.extend(raw);
            if let Ok(t) = normalize(&Bytes::from(target)) {
                prop_assert!(t.path.starts_with(b"/"));
                for seg in t.path.split(|&b| b == b'/') {
                    prop_assert!(seg != b".." && seg != b".");
                }
                prop_assert!(!t.path.windows(2).any(|w| w == b"//"));
                prop_assert!(!t.path.iter().any(|&b| b < 0x20 || b == 0x7f));
            }
        }

        #[test]
        fn dot_heavy_paths_never_climb(segs in proptest::collection::vec(prop_oneof!["\\.\\.", "\\.", "%2e%2e", "%2E\\.", "a", "b", ""], 0..12)) {
            let target = format!("/{}", segs.join("/"));
            if let Ok(t) = normalize(&Bytes::from(target.clone())) {
                // Depth never goes negative: replaying the original segments from the root
                // with `..` counted must stay >= 0, which normalize enforces by erroring.
                let decoded = target.replace("%2e", ".").replace("%2E", ".");
                let mut depth: i64 = 0;
                for s in decoded.split('/') {
                    match s { "" | "." => {}, ".." => depth -= 1, _ => depth += 1 }
                    prop_assert!(depth >= 0, "accepted a climbing path {target:?} -> {:?}", t.path);
                }
            }
        }
    }
}
