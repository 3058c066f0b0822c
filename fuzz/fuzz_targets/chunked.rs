//! The chunked decoder: arbitrary bytes, fed whole and fed in pieces.
//!
//! The first byte picks the piece size. Checks: both feedings give the same de-chunked data
//! and the same verdict (the decoder is incremental, so where the bytes are cut must not
//! matter); the data never exceeds `body_max`; an error is 400, 413 or 431 (trailers too
//! large); after `Done` the decoder consumes nothing more (what follows belongs to the
//! next request).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weir_core::http1::chunked::{ChunkedDecoder, Step};
use weir_core::Limits;

#[derive(Debug, PartialEq)]
enum Verdict {
    Done(usize),
    NeedMore,
    Error(u16),
}

/// Feeds `input` in pieces of `piece` bytes; returns the data, the verdict, and the bytes
/// left in the buffer.
fn decode(input: &[u8], piece: usize, limits: &Limits) -> (Vec<u8>, Verdict, usize) {
    let mut dec = ChunkedDecoder::new();
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut fed = 0;
    loop {
        let n = piece.min(input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        loop {
            match dec.step(&mut buf, limits) {
                Ok(Step::Data(d)) => {
                    assert!(!d.is_empty(), "empty data step");
                    data.extend_from_slice(&d);
                }
                Ok(Step::Done(trailers)) => {
                    assert!(dec.is_done());
                    assert!(trailers.len() <= limits.headers_max);
                    let left = buf.len();
                    // Done consumes nothing more.
                    assert_eq!(dec.step(&mut buf, limits), Ok(Step::NeedMore));
                    assert_eq!(buf.len(), left);
                    return (data, Verdict::Done(fed - left), left);
                }
                Ok(Step::NeedMore) => break,
                Err(e) => return (data, Verdict::Error(e.status), buf.len()),
            }
        }
        if fed == input.len() {
            return (data, Verdict::NeedMore, buf.len());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&piece, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        header_bytes_max: 256,
        headers_max: 8,
        body_max: 512,
        ..Limits::default()
    };
    let (whole, v1, _) = decode(input, input.len().max(1), &limits);
    let (split, v2, _) = decode(input, usize::from(piece % 17) + 1, &limits);
    if let Verdict::Error(s) = v1 {
        assert!(matches!(s, 400 | 413 | 431), "status {s}");
    }
    assert!(whole.len() as u64 <= limits.body_max);
    // A refusal may come earlier or later in the data depending on the cut, but the
    // verdict itself and the data before a complete body must not depend on it.
    match (&v1, &v2) {
        (Verdict::Done(a), Verdict::Done(b)) => {
            assert_eq!(a, b, "different body ends");
            assert_eq!(whole, split);
        }
        // corpus/chunked/verdict_depends_on_cut once made the status depend on the cut;
        // the head scanner now judges its bound byte by byte: the same status either way.
        (Verdict::Error(a), Verdict::Error(b)) => assert_eq!(a, b, "status depends on the cut"),
        _ => assert_eq!(v1, v2, "verdict depends on the cut"),
    }
});
