//! Request-target normalisation (DESIGN.md §3.2), before any rule or file sees a path.
//!
//! The steps, in order:
//!
//! 1. A `#` anywhere in the target → 400. The request-target grammar has no fragment
//!    (RFC 9112 §3.2: `origin-form = absolute-path [ "?" query ]`, and RFC 3986's `query`
//!    excludes `#`); a client strips the fragment before it sends, so one that arrives was
//!    put there by hand, and what a server would make of it (part of the name, or dropped)
//!    is exactly where two readers could disagree.
//! 2. Take the path of the target: origin-form `/p?q` as is; absolute-form
//!    `http://host/p?q` loses its scheme and authority (the connection already took the
//!    authority as the host); `*` is only for `OPTIONS` and is kept as such.
//! 3. Split off the query at the first `?`; it is kept verbatim, never decoded here.
//! 4. Percent-decode the path exactly once. An invalid escape, an encoded `/` (`%2F`, which
//!    would let a segment smuggle a separator past the rules), a NUL or any other control
//!    byte → 400.
//! 5. Refuse what decoded paths use to attack a reader other than this one (below) → 400.
//! 6. Collapse runs of `/` into one, then remove dot segments (RFC 3986 §5.2.4). A path
//!    that would climb above `/` → 400 rather than being clamped, so a traversal attempt is
//!    visible as an error and never silently maps to another file.
//!
//! The result always starts with `/`, contains no `.` or `..` segment and no empty segment
//! except a final one (a trailing slash is meaningful: it names a directory).
//!
//! # Attacks answered as such (step 5)
//!
//! weir itself reads the decoded path one way, and step 6 already keeps every such path
//! inside the root. The spellings below are refused anyway, with 400 rather than the 404
//! they would otherwise get, because each one only makes sense as an attempt on some other
//! reader of the same path — a CGI script or FastCGI service that decodes `PATH_INFO`
//! again, a Windows or Java back end, a log analyser — and because a request that is an
//! attack should be seen as one in the access log. The rules, on the path after its one
//! percent-decoding (so `%5C` and a raw `\` are judged alike):
//!
//! * **Backslash**: a `\` anywhere → 400. Windows and many servlet containers read it as
//!   `/`, so `/..\secret` climbs there; RFC 3986 does not allow it in a path unencoded,
//!   and a Unix file name with a backslash is too rare to weigh against that.
//! * **Path parameters on a dot segment**: a segment that is `.` or `..` followed by `;`
//!   (`/a/..;/b`, `/.;x/`) → 400. Tomcat and other servlet containers strip `;params`
//!   from each segment before removing dot segments, so `..;` climbs there while a proxy
//!   in front saw an ordinary name. Other segments with `;` (`/a;b`) are ordinary names.
//! * **Overlong UTF-8**: a lead byte followed by a continuation byte that together can
//!   only begin an overlong encoding — `C0`/`C1` then `80..BF`, `E0` then `80..9F`, `F0`
//!   then `80..8F`, and the pre-RFC 3629 five- and six-byte forms `F8` then `80..87`,
//!   `FC` then `80..83` → 400. These are how `.` (`C0 AE`, `E0 80 AE`) and `/` (`C0 AF`)
//!   were smuggled past a check into a lenient UTF-8 decoder (the IIS Unicode traversal).
//!   Every such sequence is refused, not just the ones for `.` and `/`: none is valid
//!   UTF-8 (RFC 3629 §3, "MUST protect against decoding invalid sequences"), and in
//!   Latin-1 each would be a letter followed by a C1 control byte or `NBSP`…`¿`, not a
//!   name anyone writes. Other bytes of 0x80 and above, valid UTF-8 (`/caf%C3%A9.html`)
//!   or not (a Latin-1 `/caf%E9.html`), are kept: file names are bytes.
//! * **Double encoding**: a `%` followed by two hex digits that is still in the path after
//!   the one decoding (the target said `%25XX`) is the escape a second decoder would act
//!   on. If its value is `.`, `/`, `\`, `%` or a control byte → 400 (`/%252e%252e/`,
//!   `/%252f`, `/%2525…`), and so is a path that a second decoding would turn into one of
//!   the refusals above (`/..%253b/`, `/%25c0%25ae%25c0%25ae/`). Any other leftover escape
//!   is kept as the literal characters it is: a file literally named `a%20b.txt` (as a
//!   download tool saves `a%20b.txt`) is asked for as `/a%2520b.txt` and served. A `%`
//!   not followed by two hex digits after decoding (`/100%25.txt` → `100%.txt`) is an
//!   ordinary character.
//!
//! What is *not* refused: `/a%20b` (a space), `%2e` decoded once (`/a/%2e%2e/b` is
//! `/b`, RFC 3986 §6.2.2.2 makes `%2E` and `.` the same), `%23` (a `#` in a file name,
//! `/C%23.html`), and raw or encoded bytes of 0x80 and above outside the overlong forms.

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
    /// A `#` in the target: request targets carry no fragment (RFC 9112 §3.2).
    Fragment,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// `%2F` in the path.
    EncodedSlash,
    /// NUL or another control byte after decoding.
    ControlByte,
    /// A `\` in the path, raw or encoded.
    Backslash,
    /// A `.` or `..` segment with path parameters (`..;x`).
    DotSegmentParameter,
    /// An overlong UTF-8 sequence (`C0 AE` for `.`).
    OverlongUtf8,
    /// A double-encoded `.`, `/`, `\`, `%` or control byte, or a path that a second
    /// decoding would turn into another refusal.
    DoubleEncoded,
    /// `..` would climb above `/`.
    AboveRoot,
}

impl TargetError {
    /// A short description for the error log and the 400 page.
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            TargetError::BadForm => "request target is not a path",
            TargetError::Fragment => "fragment (#) in the request target",
            TargetError::BadEscape => "invalid percent-encoding in the path",
            TargetError::EncodedSlash => "encoded slash in the path",
            TargetError::ControlByte => "control byte in the path",
            TargetError::Backslash => "backslash in the path",
            TargetError::DotSegmentParameter => "path parameter on a dot segment (..;)",
            TargetError::OverlongUtf8 => "overlong UTF-8 encoding in the path",
            TargetError::DoubleEncoded => "double percent-encoding in the path",
            TargetError::AboveRoot => "path climbs above the root",
        }
    }
}

/// Normalises a request target as the request line carried it.
pub fn normalize(target: &Bytes) -> Result<Target, TargetError> {
    if memchr::memchr(b'#', target).is_some() {
        return Err(TargetError::Fragment);
    }
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
        // Already in normal form (the usual request): decoding, the attack checks and
        // segment removal would give the same bytes back.
        return Ok(Target {
            path: raw_path.to_vec(),
            query,
        });
    }
    let path = normalize_path(&raw_path)?;
    Ok(Target { path, query })
}

/// Steps 4 to 6 for a raw path (without its query).
fn normalize_path(raw: &[u8]) -> Result<Vec<u8>, TargetError> {
    let decoded = percent_decode(raw)?;
    refuse_attacks(&decoded)?;
    refuse_double_encoding(&decoded)?;
    remove_dot_segments(&decoded)
}

/// True if `raw` is its own normal form: it starts with `/`, has no `%`, no control byte,
/// no `\`, no byte of 0x80 and above (left to the full walk, which judges overlong
/// sequences), no empty segment (except a final one: a trailing slash) and no `.` or `..`
/// segment, with or without parameters.
fn is_normal(raw: &[u8]) -> bool {
    let Some(rest) = raw.strip_prefix(b"/") else {
        return false;
    };
    if raw
        .iter()
        .any(|&b| b == b'%' || b == b'\\' || !(0x20..0x7f).contains(&b))
    {
        return false;
    }
    let mut segments = rest.split(|&b| b == b'/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if matches!(seg, b"." | b"..") || is_dot_parameter(seg) || (seg.is_empty() && !last) {
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

/// The value of the escape `%HH` at `raw[i]`, if there is one.
fn escape_at(raw: &[u8], i: usize) -> Option<u8> {
    if raw.get(i) != Some(&b'%') {
        return None;
    }
    let h = raw.get(i + 1).copied().and_then(hex)?;
    let l = raw.get(i + 2).copied().and_then(hex)?;
    Some(h << 4 | l)
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

fn percent_decode(raw: &[u8]) -> Result<Vec<u8>, TargetError> {
    let mut out = Vec::with_capacity(raw.len() + 1);
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        let byte = if b == b'%' {
            let Some(v) = escape_at(raw, i) else {
                return Err(TargetError::BadEscape);
            };
            i += 3;
            if v == b'/' {
                return Err(TargetError::EncodedSlash);
            }
            v
        } else {
            i += 1;
            b
        };
        if is_control(byte) {
            return Err(TargetError::ControlByte);
        }
        out.push(byte);
    }
    Ok(out)
}

/// True for a segment that is `.` or `..` followed by path parameters (`..;x`).
fn is_dot_parameter(seg: &[u8]) -> bool {
    seg.starts_with(b".;") || seg.starts_with(b"..;")
}

/// True if `lead` followed by `next` can only begin an overlong UTF-8 sequence (RFC 3629
/// §3; the five- and six-byte forms of RFC 2279 included).
fn is_overlong(lead: u8, next: u8) -> bool {
    match lead {
        0xc0 | 0xc1 => (0x80..=0xbf).contains(&next),
        0xe0 => (0x80..=0x9f).contains(&next),
        0xf0 => (0x80..=0x8f).contains(&next),
        0xf8 => (0x80..=0x87).contains(&next),
        0xfc => (0x80..=0x83).contains(&next),
        _ => false,
    }
}

/// The byte rules of step 5 on a decoded path: backslash, dot segments with parameters,
/// overlong UTF-8 (see the module docs).
fn refuse_attacks(decoded: &[u8]) -> Result<(), TargetError> {
    if decoded.contains(&b'\\') {
        return Err(TargetError::Backslash);
    }
    if decoded.windows(2).any(|w| is_overlong(w[0], w[1])) {
        return Err(TargetError::OverlongUtf8);
    }
    if decoded.split(|&b| b == b'/').any(is_dot_parameter) {
        return Err(TargetError::DotSegmentParameter);
    }
    Ok(())
}

/// The double-encoding rule of step 5: an escape left after the one decoding must not
/// stand for `.`, `/`, `\`, `%` or a control byte, and decoding the path a second time must
/// not produce anything [`refuse_attacks`] refuses.
fn refuse_double_encoding(decoded: &[u8]) -> Result<(), TargetError> {
    if !decoded.contains(&b'%') {
        return Ok(());
    }
    let mut again = Vec::with_capacity(decoded.len());
    let mut escaped = false;
    let mut i = 0;
    while i < decoded.len() {
        match escape_at(decoded, i) {
            Some(v) => {
                if matches!(v, b'.' | b'/' | b'\\' | b'%') || is_control(v) {
                    return Err(TargetError::DoubleEncoded);
                }
                again.push(v);
                escaped = true;
                i += 3;
            }
            None => {
                again.push(decoded[i]);
                i += 1;
            }
        }
    }
    if escaped {
        refuse_attacks(&again).map_err(|_| TargetError::DoubleEncoded)?;
    }
    Ok(())
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
            prop_oneof![
                Just(b'/'), Just(b'.'), Just(b'%'), Just(b'a'), Just(b'2'), Just(b'F'), Just(0x01u8),
                Just(b'\\'), Just(b';'), Just(0xc0u8), Just(0xaeu8), Just(0x7fu8),
            ],
            0..12,
        )) {
            let full = normalize_path(&raw);
            if is_normal(&raw) {
                prop_assert_eq!(full, Ok(raw.clone()));
            }
        }
    }

    #[test]
    fn the_usual_paths_take_the_normal_form_shortcut() {
        // The shortcut is what spares the usual request a decode and a segment walk.
        for raw in [&b"/"[..], b"/a/b", b"/a/b/", b"/index.html", b"/a;v=1"] {
            assert!(is_normal(raw), "{:?}", String::from_utf8_lossy(raw));
        }
        for raw in [&b"a"[..], b"/%61", b"/a//b", b"/./a", b"/a\\b", b"/\x7f"] {
            assert!(!is_normal(raw), "{:?}", String::from_utf8_lossy(raw));
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

    /// The attacks of the module docs' step 5, each answered 400 (not 404) for its reason.
    #[test]
    fn attacks_are_refused() {
        use TargetError::*;
        let cases: &[(&str, TargetError)] = &[
            // RFC 9112 §3.2: no fragment in a request target, wherever it stands.
            ("/a#b", Fragment),
            ("/#", Fragment),
            ("/a?x=1#frag", Fragment),
            ("http://example.com/a#b", Fragment),
            ("*#", Fragment),
            // Double encoding: `%25` then the encoded form of `.`, `/`, `\`, `%`, a CTL.
            ("/%252e%252e/secret.txt", DoubleEncoded),
            ("/%252E%252E/x", DoubleEncoded),
            ("/a/%252e/b", DoubleEncoded),
            ("/a%252fb", DoubleEncoded),
            ("/a%252Fb", DoubleEncoded),
            ("/..%255csecret", DoubleEncoded),
            ("/a%2500", DoubleEncoded),
            ("/a%250a", DoubleEncoded),
            ("/%25252e%25252e/", DoubleEncoded),
            // ... and what a second decoding would make an attack.
            ("/a/..%253b/b", DoubleEncoded),
            ("/%25c0%25ae%25c0%25ae/", DoubleEncoded),
            // Overlong UTF-8, raw or encoded, for `.`, `/` and anything else.
            ("/%c0%ae%c0%ae/secret.txt", OverlongUtf8),
            ("/%C0%AE%C0%AE/x", OverlongUtf8),
            ("/a%c0%afb", OverlongUtf8),
            ("/%c1%9c", OverlongUtf8),
            ("/%e0%80%ae%e0%80%ae/", OverlongUtf8),
            ("/%f0%80%80%ae", OverlongUtf8),
            ("/%f8%80%80%80%ae", OverlongUtf8),
            ("/%fc%80%80%80%80%ae", OverlongUtf8),
            ("/\u{c0}\u{ae}", OverlongUtf8),
            // Backslash, encoded or raw.
            ("/..%5csecret.txt", Backslash),
            ("/..%5Csecret.txt", Backslash),
            ("/..\\secret.txt", Backslash),
            ("/a\\b", Backslash),
            // Path parameters on dot segments.
            ("/a/..;/b", DotSegmentParameter),
            ("/a/..;jsessionid=1/b", DotSegmentParameter),
            ("/..;/x", DotSegmentParameter),
            ("/a/.;/b", DotSegmentParameter),
            ("/a/%2e%2e;/b", DotSegmentParameter),
            ("/a/..%3b/b", DotSegmentParameter),
        ];
        for (target, want) in cases {
            // `\u{c0}` stands for the raw byte 0xC0 (not its UTF-8 encoding).
            let bytes: Vec<u8> = target
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap())
                .collect();
            assert_eq!(
                normalize(&Bytes::from(bytes)),
                Err(*want),
                "{target:?} should be refused"
            );
        }
    }

    /// What the attack rules must leave alone.
    #[test]
    fn legitimate_paths_are_kept() {
        assert_eq!(path("/a%20b"), "/a b");
        assert_eq!(path("/caf%C3%A9.html"), "/café.html");
        assert_eq!(path("/caf\u{e9}.html"), "/café.html");
        assert_eq!(path("/\u{800}"), "/\u{800}");
        assert_eq!(path("/\u{10000}"), "/\u{10000}");
        // A file literally named `a%20b.txt`, and one named `100%.txt`.
        assert_eq!(path("/a%2520b.txt"), "/a%20b.txt");
        assert_eq!(path("/caf%25C3%25A9"), "/caf%C3%A9");
        assert_eq!(path("/100%25.txt"), "/100%.txt");
        assert_eq!(path("/100%25"), "/100%");
        assert_eq!(path("/C%23.html"), "/C#.html");
        assert_eq!(path("/a;b/c;d=1"), "/a;b/c;d=1");
        assert_eq!(path("/a/...;/b"), "/a/...;/b");
        assert_eq!(path("/a/%2e%2e/b"), "/b");
        assert_eq!(path("/a/b..;c"), "/a/b..;c");
        assert_eq!(
            norm("/a?x=%252e%252e&y=..;/%5c").unwrap(),
            ("/a".into(), Some("x=%252e%252e&y=..;/%5c".into()))
        );
        let latin1 = normalize(&Bytes::from_static(b"/caf%E9.html")).unwrap();
        assert_eq!(latin1.path, b"/caf\xe9.html");
        let raw_latin1 = normalize(&Bytes::from_static(b"/\xc0b/\xe0x")).unwrap();
        assert_eq!(raw_latin1.path, b"/\xc0b/\xe0x");
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
                prop_assert!(!t.path.contains(&b'\\'));
                prop_assert!(!t.path.windows(2).any(|w| is_overlong(w[0], w[1])));
                prop_assert!(!t.path.split(|&b| b == b'/').any(is_dot_parameter));
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
