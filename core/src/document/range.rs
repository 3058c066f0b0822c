//! Byte ranges (RFC 9110 §14): parsing `Range` and laying out 206 bodies.
//!
//! Only the `bytes` unit is understood; any other unit, or a field that does not parse,
//! makes the server ignore `Range` and send the whole document, as §14.2 allows. A range
//! set none of whose ranges overlaps the document answers 416. Ranges are served in the
//! order asked; a request for more than `MAX_RANGES` ranges is answered whole, which
//! bounds the work a single request can ask for (many tiny ranges is a known
//! amplification trick).

/// Most ranges served as multipart; more → the whole document.
pub const MAX_RANGES: usize = 32;

/// An inclusive byte range `first..=last` within a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ByteRange {
    /// First byte.
    pub first: u64,
    /// Last byte (inclusive).
    pub last: u64,
}

impl ByteRange {
    /// Number of bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Never true: a range holds at least one byte.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What the `Range` field asks of a document of length `len`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable `Range`: send everything.
    Whole,
    /// These ranges (at least one), clipped to the document.
    Ranges(Vec<ByteRange>),
    /// Nothing asked for overlaps the document: 416.
    Unsatisfiable,
}

/// Parses a `Range` field value for a document of `len` bytes.
#[must_use]
pub fn parse(value: &[u8], len: u64) -> RangeRequest {
    let Ok(text) = core::str::from_utf8(value) else {
        return RangeRequest::Whole;
    };
    let text = text.trim();
    let Some(set) = text
        .get(..6)
        .filter(|u| u.eq_ignore_ascii_case("bytes="))
        .map(|_| &text[6..])
    else {
        return RangeRequest::Whole;
    };
    let mut out = Vec::new();
    let mut specs = 0;
    for spec in set.split(',') {
        let spec = spec.trim();
        if spec.is_empty() {
            continue;
        }
        specs += 1;
        let Some((a, b)) = spec.split_once('-') else {
            return RangeRequest::Whole;
        };
        let (a, b) = (a.trim(), b.trim());
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        let range = if a.is_empty() {
            // Suffix range: the last N bytes.
            if !digits(b) {
                return RangeRequest::Whole;
            }
            let n: u64 = b.parse().unwrap_or(u64::MAX);
            (n > 0 && len > 0).then(|| ByteRange {
                first: len.saturating_sub(n),
                last: len - 1,
            })
        } else {
            if !digits(a) || !(b.is_empty() || digits(b)) {
                return RangeRequest::Whole;
            }
            let first: u64 = a.parse().unwrap_or(u64::MAX);
            let last: u64 = if b.is_empty() {
                u64::MAX
            } else {
                b.parse().unwrap_or(u64::MAX)
            };
            if last < first {
                return RangeRequest::Whole;
            }
            (first < len).then(|| ByteRange {
                first,
                last: last.min(len - 1),
            })
        };
        out.extend(range);
    }
    if specs == 0 || specs > MAX_RANGES {
        return RangeRequest::Whole;
    }
    if out.is_empty() {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Ranges(out)
    }
}

/// One part of a `multipart/byteranges` body: the part's header text, then the range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Delimiter and part header fields, ending with the blank line.
    pub header: String,
    /// The document bytes that follow.
    pub range: ByteRange,
}

/// Lays out a `multipart/byteranges` body (RFC 9110 §14.6): the parts, the closing
/// delimiter, and the total length.
#[must_use]
pub fn multipart(
    ranges: &[ByteRange],
    len: u64,
    content_type: &str,
    boundary: &str,
) -> (Vec<Part>, String, u64) {
    let mut total = 0;
    let parts: Vec<Part> = ranges
        .iter()
        .map(|r| {
            let header = format!(
                "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {}-{}/{len}\r\n\r\n",
                r.first, r.last
            );
            total += header.len() as u64 + r.len();
            Part { header, range: *r }
        })
        .collect();
    let closing = format!("\r\n--{boundary}--\r\n");
    total += closing.len() as u64;
    (parts, closing, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    fn r(first: u64, last: u64) -> ByteRange {
        ByteRange { first, last }
    }

    #[test]
    fn table() {
        assert_eq!(parse(b"bytes=0-499", 1000), Ranges(vec![r(0, 499)]));
        assert_eq!(parse(b"bytes=500-", 1000), Ranges(vec![r(500, 999)]));
        assert_eq!(parse(b"bytes=-200", 1000), Ranges(vec![r(800, 999)]));
        assert_eq!(parse(b"bytes=-2000", 1000), Ranges(vec![r(0, 999)]));
        assert_eq!(parse(b"bytes=900-2000", 1000), Ranges(vec![r(900, 999)]));
        assert_eq!(
            parse(b"Bytes= 0-0 , 5-9", 1000),
            Ranges(vec![r(0, 0), r(5, 9)])
        );
        assert_eq!(parse(b"bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse(b"bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse(b"bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse(b"bytes=2000-3000, 5-6", 1000), Ranges(vec![r(5, 6)]));
        assert_eq!(parse(b"bytes=5-1", 1000), Whole);
        assert_eq!(parse(b"bytes=a-b", 1000), Whole);
        assert_eq!(parse(b"bytes=a-", 1000), Whole, "a bad start, no end");
        assert_eq!(parse(b"items=0-1", 1000), Whole);
        assert_eq!(parse(b"bytes=", 1000), Whole);
        assert_eq!(parse(b"bytes=99999999999999999999-", 1000), Unsatisfiable);
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        assert_eq!(parse(many.as_bytes(), 1000), Whole);
        let most = format!("bytes={}", vec!["0-0"; MAX_RANGES].join(","));
        assert_eq!(
            parse(most.as_bytes(), 1000),
            Ranges(vec![r(0, 0); MAX_RANGES])
        );
        // An empty document has no last bytes to give.
        assert_eq!(parse(b"bytes=-5", 0), Unsatisfiable);
        // A range holds at least one byte.
        assert!(!r(7, 7).is_empty() && r(7, 7).len() == 1);
    }

    #[test]
    fn multipart_length_is_exact() {
        let (parts, closing, total) = multipart(&[r(0, 1), r(5, 9)], 10, "text/plain", "B");
        assert_eq!(
            parts[0].header,
            "\r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n"
        );
        let sum: u64 = parts
            .iter()
            .map(|p| p.header.len() as u64 + p.range.len())
            .sum::<u64>()
            + closing.len() as u64;
        assert_eq!(total, sum);
        assert_eq!(closing, "\r\n--B--\r\n");
    }
}
