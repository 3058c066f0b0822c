//! Records to bytes: one record, or a whole stream cut into records.

use bytes::{BufMut, BytesMut};

use super::{
    Record, StreamKind, CONTENT_LEN_MAX, HEADER_LEN, KEEP_CONN, STREAM_PIECE_MAX, VERSION,
};

/// Appends one record to `out`, padded to a multiple of 8 bytes.
///
/// # Panics
///
/// If `data` is longer than [`CONTENT_LEN_MAX`] (65535 bytes): a record cannot carry it, and
/// truncating it would corrupt the stream. Cut long streams with [`encode_stream`].
pub fn encode(record: &Record, out: &mut BytesMut) {
    let mut body = [0u8; 8];
    let content: &[u8] = match record {
        Record::BeginRequest {
            role, keep_conn, ..
        } => {
            body[..2].copy_from_slice(&role.as_u16().to_be_bytes());
            body[2] = if *keep_conn { KEEP_CONN } else { 0 };
            &body
        }
        Record::AbortRequest { .. } => &[],
        Record::EndRequest {
            app_status,
            protocol_status,
            ..
        } => {
            body[..4].copy_from_slice(&app_status.to_be_bytes());
            body[4] = protocol_status.as_u8();
            &body
        }
        Record::UnknownType { kind } => {
            body[0] = *kind;
            &body
        }
        Record::Params { data, .. }
        | Record::Stdin { data, .. }
        | Record::Stdout { data, .. }
        | Record::Stderr { data, .. }
        | Record::Data { data, .. }
        | Record::GetValues { data }
        | Record::GetValuesResult { data }
        | Record::Other { data, .. } => data,
    };
    put_record(record.kind(), record.id(), content, out);
}

/// Appends a whole stream to `out`: `data` cut into records of at most [`STREAM_PIECE_MAX`]
/// bytes, then the empty record that ends the stream. With empty `data`, only that record.
pub fn encode_stream(kind: StreamKind, id: u16, data: &[u8], out: &mut BytesMut) {
    encode_stream_part(kind, id, data, out);
    put_record(kind.record_type().as_u8(), id, &[], out);
}

/// Appends a piece of a stream to `out`, cut into records of at most [`STREAM_PIECE_MAX`]
/// bytes, without ending the stream; empty `data` appends nothing (an empty record would end
/// the stream).
pub fn encode_stream_part(kind: StreamKind, id: u16, data: &[u8], out: &mut BytesMut) {
    let records = data.len().div_ceil(STREAM_PIECE_MAX);
    out.reserve(data.len() + records * (HEADER_LEN + 7));
    for piece in data.chunks(STREAM_PIECE_MAX) {
        put_record(kind.record_type().as_u8(), id, piece, out);
    }
}

/// Appends a header, `content` and the padding that makes the record a multiple of 8.
fn put_record(kind: u8, id: u16, content: &[u8], out: &mut BytesMut) {
    assert!(
        content.len() <= CONTENT_LEN_MAX,
        "a FastCGI record holds at most {CONTENT_LEN_MAX} bytes, not {}",
        content.len()
    );
    // unwrap-free: the length was just checked against u16::MAX.
    let len = content.len() as u16;
    let padding = (8 - content.len() % 8) % 8;
    out.reserve(HEADER_LEN + content.len() + padding);
    out.put_u8(VERSION);
    out.put_u8(kind);
    out.put_u16(id);
    out.put_u16(len);
    // unwrap-free: padding < 8.
    out.put_u8(padding as u8);
    out.put_u8(0);
    out.put_slice(content);
    out.put_bytes(0, padding);
}
