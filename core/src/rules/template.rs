//! Templates: a path with at most one `*` (DESIGN.md §3.2).
//!
//! `*` matches any sequence of bytes, `/` and the empty sequence included; without a `*` a
//! template matches only the exact path. Matching is a prefix test and a suffix test, so
//! it costs one comparison of each end and nothing else. In a result, every `*` stands for
//! what the template's `*` matched.

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Template {
    /// Text before the `*` (the whole template when there is none).
    pub prefix: Vec<u8>,
    /// Text after the `*`; `None` when the template has no `*`.
    pub suffix: Option<Vec<u8>>,
}

/// Why a template was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateError {
    /// More than one `*`.
    TwoStars,
    /// Does not start with `/` (and is not `*`).
    NotAPath,
}

impl Template {
    /// Parses a template.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        if !text.starts_with('/') && !text.starts_with('*') {
            return Err(TemplateError::NotAPath);
        }
        let mut parts = text.splitn(3, '*');
        let prefix = parts.next().unwrap_or("").as_bytes().to_vec();
        let suffix = parts.next().map(|s| s.as_bytes().to_vec());
        if parts.next().is_some() {
            return Err(TemplateError::TwoStars);
        }
        Ok(Template { prefix, suffix })
    }

    /// What `*` matched, if `path` matches (the empty slice for a template without `*`).
    #[must_use]
    pub fn matches<'p>(&self, path: &'p [u8]) -> Option<&'p [u8]> {
        match &self.suffix {
            None => (path == self.prefix.as_slice()).then_some(&path[..0]),
            Some(suffix) => {
                let long_enough = path.len() >= self.prefix.len() + suffix.len();
                (long_enough && path.starts_with(&self.prefix) && path.ends_with(suffix))
                    .then(|| &path[self.prefix.len()..path.len() - suffix.len()])
            }
        }
    }

    /// True if the template has a `*`.
    #[must_use]
    pub fn has_star(&self) -> bool {
        self.suffix.is_some()
    }
}

/// Replaces every `*` in `result` with `star`.
#[must_use]
pub fn substitute(result: &[u8], star: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(result.len() + star.len());
    for &b in result {
        if b == b'*' {
            out.extend_from_slice(star);
        } else {
            out.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table() {
        let t = Template::parse("/a/*.php").unwrap();
        assert_eq!(t.matches(b"/a/x/y.php"), Some(&b"x/y"[..]));
        assert_eq!(t.matches(b"/a/.php"), Some(&b""[..]));
        assert_eq!(t.matches(b"/a.php"), None);
        assert_eq!(t.matches(b"/b/x.php"), None);
        let exact = Template::parse("/status").unwrap();
        assert_eq!(exact.matches(b"/status"), Some(&b""[..]));
        assert_eq!(exact.matches(b"/status/"), None);
        assert_eq!(Template::parse("/*/*"), Err(TemplateError::TwoStars));
        assert_eq!(Template::parse("a/*"), Err(TemplateError::NotAPath));
        // Overlapping prefix and suffix must not match a too-short path.
        let t = Template::parse("/ab*ba").unwrap();
        assert_eq!(t.matches(b"/aba"), None);
        assert_eq!(t.matches(b"/abba"), Some(&b""[..]));
        assert_eq!(substitute(b"/new/*", b"x/y"), b"/new/x/y");
    }

    proptest! {
        /// prefix + star + suffix always matches, capturing exactly star.
        #[test]
        fn matching_captures_what_was_inserted(
            pre in "/[a-z/.]{0,8}", suf in "[a-z/.]{0,8}", star in proptest::collection::vec(any::<u8>(), 0..16)
        ) {
            let t = Template::parse(&format!("{pre}*{suf}")).unwrap();
            let mut path = pre.as_bytes().to_vec();
            path.extend(&star);
            path.extend(suf.as_bytes());
            prop_assert_eq!(t.matches(&path), Some(star.as_slice()));
            prop_assert_eq!(substitute(format!("{pre}*{suf}").as_bytes(), &star), path);
        }

        /// A match always means the path has the prefix and the suffix, without overlap.
        #[test]
        fn matches_are_sound(pre in "/[ab]{0,3}", suf in "[ab]{0,3}", path in "/[ab/]{0,8}") {
            let t = Template::parse(&format!("{pre}*{suf}")).unwrap();
            if let Some(star) = t.matches(path.as_bytes()) {
                prop_assert_eq!(format!("{pre}{}{suf}", String::from_utf8_lossy(star)), path);
            }
        }
    }

    #[test]
    fn has_star_tells_a_pattern_from_an_exact_path() {
        assert!(Template::parse("/a/*").unwrap().has_star());
        assert!(Template::parse("*").unwrap().has_star());
        assert!(!Template::parse("/status").unwrap().has_star());
    }
}
