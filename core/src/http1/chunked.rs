//! Incremental decoder for the chunked transfer coding of request bodies (RFC 9112 §7.1).
//!
//! # Theory of operation
//!
//! The decoder reads from the connection's input buffer and gives back de-chunked data as
//! `Bytes` split off that buffer (no copy), one step at a time, so the connection can emit
//! body events as soon as bytes arrive and never holds more than the buffer it already
//! bounds. It moves through these states:
//!
//! ```text
//!            size line, size > 0            all data read
//!   ┌──────┐ ───────────────────► ┌──────┐ ──────────────► ┌─────────┐
//!   │ Size │                      │ Data │                 │ DataEnd │
//!   └──────┘ ◄─────────────────────────────────────────── └─────────┘
//!      │ size line, size = 0                 CRLF
//!      ▼
//!   ┌──────────┐  empty line   ┌──────┐
//!   │ Trailers │ ────────────► │ Done │
//!   └──────────┘               └──────┘
//! ```
//!
//! * **Size**: `chunk-size [ chunk-ext ] CRLF`. The size is `1*HEXDIG`, computed with checked
//!   arithmetic so that a size overflowing u64 is an error, not a wrap (the classic smuggling
//!   trick: a proxy that truncates the size sees a different message). Extensions are checked
//!   against the RFC 9112 §7.1.1 grammar and then ignored, as the RFC asks of a recipient that
//!   does not understand them. The line is bounded by [`CHUNK_LINE_MAX`], because extensions
//!   are otherwise unbounded and would let a peer fill the buffer without ever sending data.
//!   The running total of data is compared with `body_max` as soon as a size is read, so an
//!   oversized body gets its 413 before its bytes arrive.
//! * **Data**: the next `size` bytes, handed out in whatever pieces they arrive in.
//! * **DataEnd**: exactly CRLF must follow the data (RFC 9112 §7.1); anything else means the
//!   size lied, and guessing would make this server and the next hop disagree.
//! * **Trailers**: field lines up to an empty line (RFC 9112 §7.1.2), scanned with the same
//!   rules as the head (no bare CR or LF, no obs-fold, bounded by `header_bytes_max`) and
//!   parsed by httparse.
//!
//! Bare CR and bare LF are refused in every line, as in the head.

use bytes::{Buf, Bytes, BytesMut};

use crate::http1::error::ProtocolError;
use crate::http1::head::Headers;
use crate::http1::parse::{err, is_tchar, parse_trailers, HeadScan};
use crate::limits::Limits;

/// Longest chunk-size line, extensions included, CRLF excluded. Real clients send a few
/// bytes; 4 KiB leaves room for any sane extension while keeping the buffer bounded.
pub const CHUNK_LINE_MAX: usize = 4096;

/// Where the decoder is (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum State {
    Size { scanned: usize },
    Data { remaining: u64 },
    DataEnd,
    Trailers(HeadScan),
    Done,
}

/// What one step of decoding produced.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Nothing more can be decoded from the buffered bytes.
    NeedMore,
    /// The next piece of body data.
    Data(Bytes),
    /// The body is complete; the trailer section (possibly empty) follows.
    Done(Headers),
}

/// The incremental chunked decoder.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChunkedDecoder {
    state: State,
    /// Data bytes announced so far, for `body_max`.
    total: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    #[must_use]
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size { scanned: 0 },
            total: 0,
        }
    }

    /// True once the final empty line of the trailer section has been read.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes what it can from the front of `buf`, consuming what it decodes. Call again
    /// until it returns `NeedMore` or `Done`; after `Done` it consumes nothing more.
    pub fn step(&mut self, buf: &mut BytesMut, limits: &Limits) -> Result<Step, ProtocolError> {
        loop {
            match &mut self.state {
                State::Done => return Ok(Step::NeedMore),
                State::Size { scanned } => {
                    let Some(line_end) = find_line_end(buf, scanned, CHUNK_LINE_MAX)? else {
                        return Ok(Step::NeedMore);
                    };
                    let size = parse_size_line(&buf[..line_end])?;
                    buf.advance(line_end + 2);
                    self.total = self
                        .total
                        .checked_add(size)
                        .ok_or(err(413, "request body too large"))?;
                    if self.total > limits.body_max {
                        return Err(err(413, "request body too large"));
                    }
                    self.state = if size == 0 {
                        State::Trailers(HeadScan::trailers())
                    } else {
                        State::Data { remaining: size }
                    };
                }
                State::Data { remaining } => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = (*remaining).min(buf.len() as u64);
                    *remaining -= n;
                    if *remaining == 0 {
                        self.state = State::DataEnd;
                    }
                    // unwrap-free: n <= buf.len(), a usize.
                    return Ok(Step::Data(buf.split_to(n as usize).freeze()));
                }
                State::DataEnd => {
                    match (buf.first(), buf.get(1)) {
                        (Some(b'\r'), Some(b'\n')) => {}
                        (None, _) | (Some(b'\r'), None) => return Ok(Step::NeedMore),
                        _ => return Err(err(400, "missing CRLF after chunk data")),
                    }
                    buf.advance(2);
                    self.state = State::Size { scanned: 0 };
                }
                State::Trailers(scan) => {
                    let Some(end) = scan.scan(buf, usize::MAX, limits.header_bytes_max)? else {
                        return Ok(Step::NeedMore);
                    };
                    let section = buf.split_to(end.end).freeze();
                    let trailers = parse_trailers(&section, limits)?;
                    self.state = State::Done;
                    return Ok(Step::Done(trailers));
                }
            }
        }
    }
}

/// Finds the CRLF ending the line at the front of `buf`, resuming at `*scanned`. Refuses a
/// bare CR or LF and a line longer than `max`.
fn find_line_end(
    buf: &[u8],
    scanned: &mut usize,
    max: usize,
) -> Result<Option<usize>, ProtocolError> {
    while *scanned < buf.len() {
        match buf[*scanned] {
            b'\r' => {
                let Some(&next) = buf.get(*scanned + 1) else {
                    break;
                };
                if next != b'\n' {
                    return Err(err(400, "bare CR in a chunk-size line"));
                }
                return Ok(Some(*scanned));
            }
            b'\n' => return Err(err(400, "bare LF in a chunk-size line")),
            _ => *scanned += 1,
        }
        if *scanned > max {
            return Err(err(400, "chunk-size line too long"));
        }
    }
    if *scanned > max {
        return Err(err(400, "chunk-size line too long"));
    }
    Ok(None)
}

/// `chunk-size [ chunk-ext ]` → the size.
fn parse_size_line(line: &[u8]) -> Result<u64, ProtocolError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(err(400, "invalid chunk size"));
    }
    let size = line[..digits].iter().try_fold(0u64, |acc, &b| {
        // unwrap: b is an ASCII hex digit, checked by take_while above.
        let d = char::from(b).to_digit(16).expect("hex digit");
        acc.checked_mul(16)?.checked_add(u64::from(d))
    });
    let size = size.ok_or(err(400, "chunk size overflows"))?;
    if !valid_extensions(&line[digits..]) {
        return Err(err(400, "invalid chunk extension"));
    }
    Ok(size)
}

/// `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`, with
/// `chunk-ext-val = token / quoted-string` (RFC 9112 §7.1.1).
fn valid_extensions(ext: &[u8]) -> bool {
    let ws = |s: &[u8], mut i: usize| {
        while matches!(s.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        i
    };
    let token = |s: &[u8], mut i: usize| {
        let start = i;
        while s.get(i).is_some_and(|&b| is_tchar(b)) {
            i += 1;
        }
        (i > start).then_some(i)
    };
    let mut i = 0;
    while i < ext.len() {
        i = ws(ext, i);
        if ext.get(i) != Some(&b';') {
            return false;
        }
        i = ws(ext, i + 1);
        let Some(after_name) = token(ext, i) else {
            return false;
        };
        i = after_name;
        let j = ws(ext, i);
        if ext.get(j) == Some(&b'=') {
            let v = ws(ext, j + 1);
            i = if ext.get(v) == Some(&b'"') {
                match quoted_string_end(ext, v) {
                    Some(end) => end,
                    None => return false,
                }
            } else {
                match token(ext, v) {
                    Some(end) => end,
                    None => return false,
                }
            };
        }
    }
    true
}

/// Given `s[start] == '"'`, the index just past the closing quote of a valid quoted-string
/// (RFC 9110 §5.6.4).
fn quoted_string_end(s: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match *s.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => {
                let q = *s.get(i + 1)?;
                if !(q == b'\t' || (b' '..=b'~').contains(&q) || q >= 0x80) {
                    return None;
                }
                i += 2;
            }
            b if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 => i += 1,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `piece` bytes; returns the data, the trailers and what is
    /// left in the buffer, or the error status.
    fn decode(
        input: &[u8],
        piece: usize,
        body_max: u64,
    ) -> Result<(Vec<u8>, Headers, Vec<u8>), u16> {
        let limits = Limits {
            body_max,
            ..Limits::default()
        };
        let mut d = ChunkedDecoder::new();
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut fed = 0;
        for part in input.chunks(piece.max(1)) {
            buf.extend_from_slice(part);
            fed += part.len();
            loop {
                match d.step(&mut buf, &limits).map_err(|e| e.status)? {
                    Step::NeedMore => {
                        assert!(!d.is_done(), "done only with its Done step");
                        break;
                    }
                    Step::Data(b) => data.extend_from_slice(&b),
                    Step::Done(t) => {
                        // Whatever follows the body is left untouched.
                        let mut rest = buf.to_vec();
                        rest.extend_from_slice(&input[fed..]);
                        assert!(d.is_done());
                        return Ok((data, t, rest));
                    }
                }
            }
        }
        Err(0)
    }

    #[test]
    fn decodes_in_any_pieces() {
        let input = b"5;a=b;c=\"q\\\"d\"\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for piece in 1..input.len() {
            let (data, trailers, rest) = decode(input, piece, 1000).unwrap();
            assert_eq!(data, b"helloabcdefghijklmnopqrstuvwxyz");
            assert_eq!(trailers.get("x-t").map(|v| &v[..]), Some(&b"1"[..]));
            assert_eq!(rest, b"NEXT");
        }
    }

    /// A body of exactly `body_max` bytes is taken; one byte more is 413, as soon as the
    /// size that crosses the bound is read.
    #[test]
    fn a_body_of_exactly_body_max_is_taken() {
        let body = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (data, _, _) = decode(body, body.len(), 5).unwrap();
        assert_eq!(data, b"abcde");
        assert_eq!(decode(body, 1, 4), Err(413));
    }

    #[test]
    fn empty_body_and_leading_zeros() {
        let (data, trailers, rest) = decode(b"0\r\n\r\n", 1, 10).unwrap();
        assert!(data.is_empty() && trailers.is_empty() && rest.is_empty());
        let (data, _, _) = decode(b"000000000000000000003\r\nabc\r\n0\r\n\r\n", 2, 10).unwrap();
        assert_eq!(data, b"abc");
    }

    #[test]
    fn error_table() {
        let cases: &[(&[u8], u16)] = &[
            (b"x\r\n", 400),
            (b"\r\n", 400),
            (b";a\r\n", 400),
            (b"-1\r\n", 400),
            (b"0x5\r\n", 400),
            (b"5 \r\nhello\r\n0\r\n\r\n", 400),
            (b"5;\r\n", 400),
            (b"5;a=\r\n", 400),
            (b"5;a=\"x\r\n", 400),
            (b"5;a b\r\n", 400),
            (b"5;a=b\x01\r\n", 400),
            (b"5\rhello", 400),
            (b"5\nhello", 400),
            (b"10000000000000000\r\n", 400),
            (b"FFFFFFFFFFFFFFFF\r\n", 413),
            (b"5\r\nhelloXX", 400),
            (b"5\r\nhello\rX", 400),
            (b"5\r\nhello\n", 400),
            (b"3\r\nabc\r\n9\r\n", 413),
            (b"0\r\nX : 1\r\n\r\n", 400),
            (b"0\r\nX: 1\r\n folded\r\n\r\n", 400),
            (b"0\r\nX: 1\n\r\n", 400),
        ];
        for (input, status) in cases {
            for piece in [1, input.len()] {
                let got = decode(input, piece, 10).map(|_| ());
                assert_eq!(got, Err(*status), "{:?}", String::from_utf8_lossy(input));
            }
        }
    }

    #[test]
    fn long_size_line_is_refused_before_it_ends() {
        let mut input = b"5;a=".to_vec();
        input.extend(vec![b'b'; CHUNK_LINE_MAX]);
        assert_eq!(decode(&input, 7, 10).map(|_| ()), Err(400));
    }

    /// The bound is on the line without its CRLF: `CHUNK_LINE_MAX` bytes pass, one more
    /// does not, however the bytes arrive.
    #[test]
    fn a_size_line_of_exactly_the_bound_passes() {
        let line = |len: usize| {
            let mut input = b"5;a=".to_vec();
            input.extend(vec![b'b'; len - 4]);
            input.extend(b"\r\nhello\r\n0\r\n\r\n");
            input
        };
        for piece in [1, 7, CHUNK_LINE_MAX + 100] {
            let (data, _, _) = decode(&line(CHUNK_LINE_MAX), piece, 10).unwrap();
            assert_eq!(data, b"hello");
            let over = decode(&line(CHUNK_LINE_MAX + 1), piece, 10).map(|_| ());
            assert_eq!(over, Err(400), "piece {piece}");
        }
    }

    #[test]
    fn extension_grammar() {
        for ok in [
            &b""[..],
            b";a",
            b" ;a",
            b";a=b",
            b"; a = b",
            b";a;b=c",
            b";a=\"x y\"",
            // qdtext and quoted-pair admit obs-text (RFC 9110 §5.6.4).
            b";a=\"\x80\xff\"",
            b";a=\"\t\\\x80\"",
        ] {
            assert!(valid_extensions(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b" "[..],
            b";",
            b"a",
            b";a=",
            b";a=\"",
            b";a =b c",
            b";a\x00",
            // Controls other than HTAB are neither qdtext nor quoted-pair.
            b";a=\"\x01\"",
            b";a=\"\x7f\"",
            b";a=\"\\\x01\"",
        ] {
            assert!(!valid_extensions(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
