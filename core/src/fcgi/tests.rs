//! Tests of the FastCGI codec: byte vectors written by hand from the specification, the
//! peer errors, and property tests that encode, cut the bytes anywhere and decode.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

// ----- helpers ----------------------------------------------------------------------------

fn enc(record: &Record) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(record, &mut out);
    out.to_vec()
}

/// Decodes `input` fed in pieces whose sizes cycle through `cuts` (each at least 1), taking
/// records after every piece; also returns what is left buffered.
fn decode_cut(input: &[u8], cuts: &[usize]) -> (Vec<Record>, Result<(), FcgiError>, usize) {
    let mut dec = Decoder::new(RECORD_LEN_MAX);
    let mut records = Vec::new();
    let mut fed = 0;
    let mut cut = cuts.iter().cycle();
    while fed < input.len() {
        let n = cut
            .next()
            .map_or(input.len(), |&c| c.max(1))
            .min(input.len() - fed);
        dec.push(&input[fed..fed + n]);
        fed += n;
        loop {
            match dec.next_record() {
                Ok(Some(r)) => records.push(r),
                Ok(None) => break,
                Err(e) => return (records, Err(e), dec.buffered()),
            }
        }
    }
    (records, Ok(()), dec.buffered())
}

fn decode_all(input: &[u8]) -> Vec<Record> {
    let (records, verdict, left) = decode_cut(input, &[]);
    assert_eq!((verdict, left), (Ok(()), 0));
    records
}

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

// ----- byte vectors from the specification ------------------------------------------------

#[test]
fn discrete_records_by_hand() {
    let vectors: [(Record, &[u8]); 6] = [
        (
            Record::BeginRequest {
                id: 1,
                role: Role::Responder,
                keep_conn: true,
            },
            &[1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0],
        ),
        (
            Record::BeginRequest {
                id: 0x0102,
                role: Role::Filter,
                keep_conn: false,
            },
            &[1, 1, 1, 2, 0, 8, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0],
        ),
        (Record::AbortRequest { id: 7 }, &[1, 2, 0, 7, 0, 0, 0, 0]),
        (
            Record::EndRequest {
                id: 1,
                app_status: 0x0102_0304,
                protocol_status: ProtocolStatus::Overloaded,
            },
            &[1, 3, 0, 1, 0, 8, 0, 0, 1, 2, 3, 4, 2, 0, 0, 0],
        ),
        (
            Record::UnknownType { kind: 12 },
            &[1, 11, 0, 0, 0, 8, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            Record::Other {
                kind: 200,
                id: 3,
                data: b(b"x"),
            },
            &[1, 200, 0, 3, 0, 1, 7, 0, b'x', 0, 0, 0, 0, 0, 0, 0],
        ),
    ];
    for (record, bytes) in vectors {
        assert_eq!(enc(&record), bytes, "{record:?}");
        assert_eq!(decode_all(bytes), vec![record]);
    }
}

#[test]
fn stream_records_by_hand() {
    // "hello" on STDOUT: 5 bytes of content, 3 of padding.
    let hello = Record::Stdout {
        id: 1,
        data: b(b"hello"),
    };
    let bytes = [
        1, 6, 0, 1, 0, 5, 3, 0, b'h', b'e', b'l', b'l', b'o', 0, 0, 0,
    ];
    assert_eq!(enc(&hello), bytes);
    assert_eq!(decode_all(&bytes), vec![hello.clone()]);
    // The end of PARAMS: an empty record, no padding.
    let end = Record::Params {
        id: 1,
        data: Bytes::new(),
    };
    assert_eq!(enc(&end), [1, 4, 0, 1, 0, 0, 0, 0]);
    assert!(end.is_end_of_stream() && !hello.is_end_of_stream());
    // A whole stream: the data record, then the end.
    let mut out = BytesMut::new();
    encode_stream(StreamKind::Stdout, 1, b"hello", &mut out);
    let mut want = bytes.to_vec();
    want.extend_from_slice(&[1, 6, 0, 1, 0, 0, 0, 0]);
    assert_eq!(out.to_vec(), want);
    // An empty stream is just its end; a part of nothing is nothing.
    let mut out = BytesMut::new();
    encode_stream(StreamKind::Stdin, 2, b"", &mut out);
    assert_eq!(out.to_vec(), [1, 5, 0, 2, 0, 0, 0, 0]);
    encode_stream_part(StreamKind::Stdin, 2, b"", &mut out);
    assert_eq!(out.len(), 8);
    // Padding from another encoder (any length, any bytes) is skipped.
    let padded = [
        1, 7, 0, 9, 0, 2, 5, 0, b'o', b'k', 9, 9, 9, 9, 9, 1, 2, 0, 9, 0, 0, 0, 0,
    ];
    assert_eq!(
        decode_all(&padded),
        vec![
            Record::Stderr {
                id: 9,
                data: b(b"ok")
            },
            Record::AbortRequest { id: 9 }
        ]
    );
}

#[test]
fn get_values_by_hand() {
    let mut data = BytesMut::new();
    encode_params([(MAX_CONNS, &b""[..]), (MPXS_CONNS, b"")], &mut data);
    let mut want = vec![14, 0];
    want.extend_from_slice(b"FCGI_MAX_CONNS");
    want.extend_from_slice(&[15, 0]);
    want.extend_from_slice(b"FCGI_MPXS_CONNS");
    assert_eq!(data.to_vec(), want);
    let record = Record::GetValues {
        data: data.freeze(),
    };
    let bytes = enc(&record);
    // 33 bytes of content, 7 of padding; request id 0.
    assert_eq!(bytes[..8], [1, 9, 0, 0, 0, 33, 7, 0]);
    assert_eq!(bytes.len(), 48);
    assert_eq!(decode_all(&bytes), vec![record]);
    let result = Record::GetValuesResult {
        data: b(b"\x0e\x01FCGI_MAX_CONNS1"),
    };
    // 2 + 14 + 1 = 17 bytes of content, 7 of padding.
    assert_eq!(enc(&result)[..8], [1, 10, 0, 0, 0, 17, 7, 0]);
}

#[test]
fn params_by_hand() {
    let mut out = BytesMut::new();
    let long = [b'v'; 128];
    encode_params(
        [
            (&b"SCRIPT_NAME"[..], &b"/x"[..]),
            (b"A", &long[..]),
            (b"", b""),
        ],
        &mut out,
    );
    let mut want = vec![11, 2];
    want.extend_from_slice(b"SCRIPT_NAME/x");
    want.extend_from_slice(&[1, 0x80, 0, 0, 128, b'A']);
    want.extend_from_slice(&long);
    want.extend_from_slice(&[0, 0]);
    assert_eq!(out.to_vec(), want);
    let pairs = decode_params(&out.freeze()).unwrap();
    assert_eq!(
        pairs,
        vec![
            (b(b"SCRIPT_NAME"), b(b"/x")),
            (b(b"A"), Bytes::copy_from_slice(&long)),
            (Bytes::new(), Bytes::new()),
        ]
    );
    // The long form for a short length is accepted.
    assert_eq!(
        decode_params(&b(b"\x80\x00\x00\x01\x01ab")).unwrap(),
        vec![(b(b"a"), b(b"b"))]
    );
    assert_eq!(decode_params(&Bytes::new()).unwrap(), vec![]);
}

#[test]
fn cut_params_are_refused() {
    for (data, at) in [
        (&b"\x01"[..], 0),
        (b"\x01\x01a", 0),
        (b"\x01\x01ab\x80\x00\x00", 4),
        (b"\x01\x01ab\x01\x80\x00\x00\x01", 4),
        (b"\x02\x00a", 0),
        (b"\xff\xff\xff\xff\x00", 0),
    ] {
        assert_eq!(
            decode_params(&Bytes::from_static(data)),
            Err(FcgiError::ParamsCut { at }),
            "{data:?}"
        );
    }
}

#[test]
fn roles_and_statuses_round_trip() {
    for n in [0, 1, 2, 3, 4, 0xffff] {
        assert_eq!(Role::from_u16(n).as_u16(), n);
    }
    assert_eq!(Role::from_u16(2), Role::Authorizer);
    for n in [0, 1, 2, 3, 4, 0xff] {
        assert_eq!(ProtocolStatus::from_u8(n).as_u8(), n);
    }
    for n in 0..=255 {
        match RecordType::from_u8(n) {
            Some(t) => assert_eq!(t.as_u8(), n),
            None => assert!(n == 0 || n >= 12),
        }
    }
}

// ----- peer errors ------------------------------------------------------------------------

#[test]
fn wrong_version_is_refused_at_once_and_sticks() {
    let mut dec = Decoder::new(RECORD_LEN_MAX);
    dec.push(&[0]);
    assert_eq!(dec.next_record(), Err(FcgiError::Version(0)));
    dec.push(&[1, 2, 0, 1, 0, 0, 0, 0]);
    assert_eq!(dec.next_record(), Err(FcgiError::Version(0)));
    assert_eq!((dec.buffered(), dec.room()), (0, 0));
    assert_eq!(dec.error(), Some(FcgiError::Version(0)));
    // After good records, the bad one is refused where it starts.
    let mut input = enc(&Record::AbortRequest { id: 1 });
    input.push(2);
    let (records, verdict, _) = decode_cut(&input, &[1]);
    assert_eq!(records, vec![Record::AbortRequest { id: 1 }]);
    assert_eq!(verdict, Err(FcgiError::Version(2)));
}

/// Each peer error says what was wrong in words, with the numbers that show it.
#[test]
fn peer_errors_read_as_sentences() {
    for (e, text) in [
        (FcgiError::Version(2), "FastCGI record of version 2, not 1"),
        (
            FcgiError::BodyLength {
                kind: RecordType::EndRequest,
                len: 9,
            },
            "FastCGI EndRequest record of 9 bytes, not 8",
        ),
        (
            FcgiError::ManagementId {
                kind: RecordType::GetValues,
                id: 3,
            },
            "FastCGI GetValues record with request id 3, not 0",
        ),
        (
            FcgiError::RecordTooLarge {
                len: 70000,
                max: 65536,
            },
            "FastCGI record of 70000 bytes, over the limit of 65536",
        ),
        (
            FcgiError::ParamsCut { at: 12 },
            "FastCGI name-value pair cut short (at byte 12)",
        ),
    ] {
        assert_eq!(e.to_string(), text);
    }
}

#[test]
fn bad_headers_are_refused_before_their_content() {
    for (header, err) in [
        (
            [1, 1, 0, 1, 0, 7, 0, 0],
            FcgiError::BodyLength {
                kind: RecordType::BeginRequest,
                len: 7,
            },
        ),
        (
            [1, 3, 0, 1, 0, 9, 0, 0],
            FcgiError::BodyLength {
                kind: RecordType::EndRequest,
                len: 9,
            },
        ),
        (
            [1, 11, 0, 0, 0, 0, 0, 0],
            FcgiError::BodyLength {
                kind: RecordType::UnknownType,
                len: 0,
            },
        ),
        (
            [1, 9, 0, 1, 0, 0, 0, 0],
            FcgiError::ManagementId {
                kind: RecordType::GetValues,
                id: 1,
            },
        ),
        (
            [1, 10, 1, 0, 0, 0, 0, 0],
            FcgiError::ManagementId {
                kind: RecordType::GetValuesResult,
                id: 256,
            },
        ),
    ] {
        let mut dec = Decoder::new(RECORD_LEN_MAX);
        dec.push(&header[..7]);
        assert_eq!(dec.next_record(), Ok(None));
        dec.push(&header[7..]);
        assert_eq!(dec.next_record(), Err(err), "{header:?}");
        assert_eq!(dec.next_record(), Err(err));
    }
    // An ABORT_REQUEST body is ignored.
    assert_eq!(
        decode_all(&[1, 2, 0, 5, 0, 3, 5, 0, 1, 2, 3, 0, 0, 0, 0, 0]),
        vec![Record::AbortRequest { id: 5 }]
    );
}

#[test]
fn records_over_the_limit_are_refused_and_room_bounds_the_buffer() {
    let mut dec = Decoder::new(64);
    // 8 + 56 = 64: fits exactly.
    let fits = Record::Stdin {
        id: 1,
        data: Bytes::from(vec![b'a'; 56]),
    };
    let bytes = enc(&fits);
    assert_eq!(dec.room(), 64);
    dec.push(&bytes);
    assert_eq!(dec.room(), 0);
    assert_eq!(dec.next_record(), Ok(Some(fits)));
    assert_eq!((dec.buffered(), dec.room()), (0, 64));
    // 8 + 57 + 7 = 72 does not.
    dec.push(
        &enc(&Record::Stdin {
            id: 1,
            data: Bytes::from(vec![b'a'; 57]),
        })[..8],
    );
    assert_eq!(
        dec.next_record(),
        Err(FcgiError::RecordTooLarge { len: 72, max: 64 })
    );
}

/// The longest record the protocol can write — 65535 bytes of content and 255 of padding
/// — fits a decoder sized with `RECORD_LEN_MAX`, with no room to spare.
#[test]
fn the_longest_possible_record_fits_record_len_max_exactly() {
    let mut wire = vec![1, 6, 0, 1, 0xff, 0xff, 0xff, 0];
    wire.extend(vec![b'x'; 65535 + 255]);
    assert_eq!(wire.len(), RECORD_LEN_MAX);
    let mut dec = Decoder::new(RECORD_LEN_MAX);
    dec.push(&wire);
    assert_eq!(dec.room(), 0);
    match dec.next_record() {
        Ok(Some(Record::Stdout { id: 1, data })) => assert_eq!(data.len(), 65535),
        other => panic!("{other:?}"),
    }
}

#[test]
#[should_panic(expected = "at most 65535 bytes")]
fn encoding_too_much_content_panics() {
    let _ = enc(&Record::Stdout {
        id: 1,
        data: Bytes::from(vec![0; 65536]),
    });
}

#[test]
fn the_largest_record_encodes() {
    let data = Bytes::from(vec![7; CONTENT_LEN_MAX]);
    let record = Record::Data { id: 1, data };
    let bytes = enc(&record);
    assert_eq!(bytes[..8], [1, 8, 0, 1, 0xff, 0xff, 1, 0]);
    assert_eq!(bytes.len(), 8 + 65536);
    assert_eq!(decode_all(&bytes), vec![record]);
}

// ----- streams ----------------------------------------------------------------------------

/// Joins a stream's records; checks each has the kind and id, only the last is empty, and
/// every record but the last two needs no padding.
fn join_stream(records: &[Record], kind: StreamKind, id: u16) -> Vec<u8> {
    let mut joined = Vec::new();
    for (i, r) in records.iter().enumerate() {
        assert_eq!((r.kind(), r.id()), (kind.record_type().as_u8(), id));
        assert_eq!(r.is_end_of_stream(), i + 1 == records.len(), "{i}");
        let data = match r {
            Record::Params { data, .. }
            | Record::Stdin { data, .. }
            | Record::Stdout { data, .. }
            | Record::Stderr { data, .. }
            | Record::Data { data, .. } => data,
            other => panic!("not a stream record: {other:?}"),
        };
        assert!(data.len() <= STREAM_PIECE_MAX);
        if i + 2 < records.len() {
            assert_eq!(data.len(), STREAM_PIECE_MAX);
        }
        joined.extend_from_slice(data);
    }
    joined
}

#[test]
fn long_streams_are_cut_and_joined() {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    for kind in [
        StreamKind::Params,
        StreamKind::Stdin,
        StreamKind::Stdout,
        StreamKind::Stderr,
        StreamKind::Data,
    ] {
        let mut out = BytesMut::new();
        encode_stream(kind, 300, &data, &mut out);
        // 200000 = 3 × 65528 + 3416: four data records (no padding on the first three, none
        // on the fourth either since 3416 is a multiple of 8) and the end.
        assert_eq!(out.len(), 200_000 + 5 * HEADER_LEN);
        let (records, verdict, left) = decode_cut(&out, &[4093]);
        assert_eq!((verdict, left, records.len()), (Ok(()), 0, 5));
        assert_eq!(join_stream(&records, kind, 300), data);
    }
    // A part is the same records without the end.
    let mut part = BytesMut::new();
    encode_stream_part(StreamKind::Stdout, 1, &data[..70_001], &mut part);
    let records = decode_all(&part);
    assert_eq!(records.len(), 2);
    assert!(!records[1].is_end_of_stream());
}

#[test]
fn one_byte_at_a_time() {
    let records = vec![
        Record::BeginRequest {
            id: 1,
            role: Role::Responder,
            keep_conn: false,
        },
        Record::Params {
            id: 1,
            data: b(b"\x04\x03HOSTa.b"),
        },
        Record::Params {
            id: 1,
            data: Bytes::new(),
        },
        Record::Stdin {
            id: 1,
            data: Bytes::new(),
        },
        Record::Stdout {
            id: 1,
            data: b(b"Status: 200\r\n\r\nhi"),
        },
        Record::EndRequest {
            id: 1,
            app_status: 0,
            protocol_status: ProtocolStatus::RequestComplete,
        },
    ];
    let mut out = BytesMut::new();
    for r in &records {
        encode(r, &mut out);
    }
    let mut dec = Decoder::new(RECORD_LEN_MAX);
    let mut got = Vec::new();
    for &byte in out.iter() {
        dec.push(&[byte]);
        if let Some(r) = dec.next_record().unwrap() {
            // Each record comes out the moment its last padding byte arrives.
            assert_eq!(dec.buffered(), 0);
            got.push(r);
        }
    }
    assert_eq!(got, records);
}

// ----- properties -------------------------------------------------------------------------

fn arb_data(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

fn arb_record() -> impl Strategy<Value = Record> {
    prop_oneof![
        (any::<u16>(), any::<u16>(), any::<bool>()).prop_map(|(id, role, keep_conn)| {
            Record::BeginRequest {
                id,
                role: Role::from_u16(role),
                keep_conn,
            }
        }),
        any::<u16>().prop_map(|id| Record::AbortRequest { id }),
        (any::<u16>(), any::<u32>(), any::<u8>()).prop_map(|(id, app_status, s)| {
            Record::EndRequest {
                id,
                app_status,
                protocol_status: ProtocolStatus::from_u8(s),
            }
        }),
        (any::<u16>(), arb_data(100)).prop_map(|(id, data)| Record::Params { id, data }),
        (any::<u16>(), arb_data(100)).prop_map(|(id, data)| Record::Stdin { id, data }),
        (any::<u16>(), arb_data(100)).prop_map(|(id, data)| Record::Stdout { id, data }),
        (any::<u16>(), arb_data(100)).prop_map(|(id, data)| Record::Stderr { id, data }),
        (any::<u16>(), arb_data(100)).prop_map(|(id, data)| Record::Data { id, data }),
        arb_data(100).prop_map(|data| Record::GetValues { data }),
        arb_data(100).prop_map(|data| Record::GetValuesResult { data }),
        any::<u8>().prop_map(|kind| Record::UnknownType { kind }),
        (
            prop_oneof![Just(0u8), 12u8..=255],
            any::<u16>(),
            arb_data(100)
        )
            .prop_map(|(kind, id, data)| Record::Other { kind, id, data }),
    ]
}

/// Name or value lengths around the one-byte/four-byte boundary, and some long ones.
fn arb_param() -> impl Strategy<Value = Vec<u8>> {
    let len = prop_oneof![
        0usize..=3,
        Just(127),
        Just(128),
        Just(129),
        126usize..=300,
        Just(70_000),
    ];
    (len, any::<u8>())
        .prop_map(|(len, byte)| (0..len).map(|i| byte.wrapping_add(i as u8)).collect())
}

proptest! {
    #[test]
    fn records_round_trip_under_any_cuts(
        records in proptest::collection::vec(arb_record(), 0..12),
        cuts in proptest::collection::vec(1usize..40, 1..8),
    ) {
        let mut out = BytesMut::new();
        for r in &records {
            encode(r, &mut out);
        }
        prop_assert_eq!(out.len() % 8, 0);
        let (got, verdict, left) = decode_cut(&out, &cuts);
        prop_assert_eq!(verdict, Ok(()));
        prop_assert_eq!(left, 0);
        prop_assert_eq!(got, records);
    }

    #[test]
    fn params_round_trip(pairs in proptest::collection::vec((arb_param(), arb_param()), 0..6)) {
        let mut out = BytesMut::new();
        encode_params(pairs.iter().map(|(n, v)| (&n[..], &v[..])), &mut out);
        let want: Vec<(Bytes, Bytes)> = pairs
            .iter()
            .map(|(n, v)| (Bytes::copy_from_slice(n), Bytes::copy_from_slice(v)))
            .collect();
        let data = out.freeze();
        prop_assert_eq!(decode_params(&data), Ok(want));
        // Every proper prefix that ends inside a pair is refused.
        if !data.is_empty() {
            let short = data.slice(..data.len() - 1);
            let cut = matches!(decode_params(&short), Err(FcgiError::ParamsCut { .. }));
            prop_assert!(cut, "a cut pair was accepted");
        }
    }

    #[test]
    fn params_streams_round_trip(
        pairs in proptest::collection::vec((arb_param(), arb_param()), 0..6),
        id in any::<u16>(),
        cuts in proptest::collection::vec(1usize..5000, 1..4),
    ) {
        let mut params = BytesMut::new();
        encode_params(pairs.iter().map(|(n, v)| (&n[..], &v[..])), &mut params);
        let mut out = BytesMut::new();
        encode_stream(StreamKind::Params, id, &params, &mut out);
        let (records, verdict, left) = decode_cut(&out, &cuts);
        prop_assert_eq!((verdict, left), (Ok(()), 0));
        let joined = Bytes::from(join_stream(&records, StreamKind::Params, id));
        let got = decode_params(&joined).unwrap();
        prop_assert_eq!(got.len(), pairs.len());
        for ((n, v), (gn, gv)) in pairs.iter().zip(&got) {
            prop_assert_eq!(&n[..], &gn[..]);
            prop_assert_eq!(&v[..], &gv[..]);
        }
    }

    #[test]
    fn arbitrary_bytes_decode_the_same_under_any_cuts(
        input in proptest::collection::vec(any::<u8>(), 0..200),
        cuts in proptest::collection::vec(1usize..20, 1..5),
    ) {
        // Mostly version 1, so that the decoder gets past the first byte.
        let input: Vec<u8> = input.iter().map(|&b| if b < 0x80 { b } else { 1 }).collect();
        let (whole, whole_verdict, _) = decode_cut(&input, &[]);
        let (cut, cut_verdict, _) = decode_cut(&input, &cuts);
        prop_assert_eq!(whole, cut);
        prop_assert_eq!(whole_verdict, cut_verdict);
    }
}
