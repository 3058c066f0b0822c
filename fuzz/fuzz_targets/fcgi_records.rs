//! The FastCGI record decoder: arbitrary bytes, fed whole and fed in arbitrary pieces.
//!
//! The first byte picks the decoder's `buffer_max` (small, so that `RecordTooLarge` is
//! reached, or large enough for every record); the next four pick the sizes of the pieces,
//! used in turn. Checks: never a panic; the pieces give the same records and the same
//! verdict as the whole input (the decoder is incremental, so where the bytes are cut must
//! not matter); an error is sticky; re-encoding each record and decoding it again gives the
//! same record; `PARAMS`/`GET_VALUES` content either decodes as name-value pairs that
//! re-encode to a decodable equal list, or is refused without a panic.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use weir_core::fcgi::{
    decode_params, encode, encode_params, Decoder, FcgiError, Record, RECORD_LEN_MAX,
};

/// Feeds `input` in pieces whose sizes cycle through `pieces` (0 is read as "the rest"),
/// taking every whole record after each piece.
fn decode(input: &[u8], pieces: &[usize], buffer_max: usize) -> (Vec<Record>, Option<FcgiError>) {
    let mut dec = Decoder::new(buffer_max);
    let mut records = Vec::new();
    let mut fed = 0;
    let mut piece = pieces.iter().cycle();
    while fed < input.len() {
        let n = match piece.next() {
            Some(&p) if p > 0 => p.min(input.len() - fed),
            _ => input.len() - fed,
        };
        dec.push(&input[fed..fed + n]);
        fed += n;
        loop {
            match dec.next_record() {
                Ok(Some(r)) => records.push(r),
                Ok(None) => break,
                Err(e) => {
                    // Sticky, and the decoder lets its buffer go.
                    dec.push(b"\x01\x02\x00\x01\x00\x00\x00\x00");
                    assert_eq!(dec.next_record(), Err(e));
                    assert_eq!(dec.buffered(), 0);
                    return (records, Some(e));
                }
            }
        }
        assert!(dec.buffered() <= input.len());
    }
    (records, None)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let (head, input) = data.split_at(5);
    let buffer_max = match head[0] {
        0..=127 => usize::from(head[0]) * 8,
        _ => RECORD_LEN_MAX,
    };
    let pieces: Vec<usize> = head[1..].iter().map(|&p| usize::from(p)).collect();

    let (whole, whole_err) = decode(input, &[], buffer_max);
    let (cut, cut_err) = decode(input, &pieces, buffer_max);
    assert_eq!(whole, cut, "the records depend on the cuts");
    assert_eq!(whole_err, cut_err, "the verdict depends on the cuts");

    for record in &whole {
        let mut out = BytesMut::new();
        encode(record, &mut out);
        assert_eq!(out.len() % 8, 0);
        let (again, err) = decode(&out, &[], RECORD_LEN_MAX);
        assert_eq!(err, None, "{record:?} re-encoded is refused");
        assert_eq!(
            again,
            vec![record.clone()],
            "{record:?} does not survive re-encoding"
        );

        if let Record::Params { data, .. }
        | Record::GetValues { data }
        | Record::GetValuesResult { data } = record
        {
            if let Ok(pairs) = decode_params(data) {
                let mut out = BytesMut::new();
                encode_params(pairs.iter().map(|(n, v)| (&n[..], &v[..])), &mut out);
                let again: Bytes = out.freeze();
                assert_eq!(decode_params(&again), Ok(pairs));
            }
        }
    }
});
