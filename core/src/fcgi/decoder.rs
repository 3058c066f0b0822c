//! Bytes to records, incrementally.
//!
//! ```text
//!   push(bytes) ──► [ buffer ] ──► next_record() ─┬─► Ok(Some(record))  a whole record
//!                                                 ├─► Ok(None)          push more bytes
//!                                                 └─► Err(e)            sticky: every
//!                                                                       later call too
//! ```
//!
//! The header is judged as soon as it is whole (the version as soon as its byte arrives),
//! before the content is waited for, so a bad or oversized record is refused without
//! buffering it. Records are cut from the buffer without copying: a record's `data` shares
//! the buffer's storage.

use bytes::{Buf, Bytes, BytesMut};

use super::{
    FcgiError, ProtocolStatus, Record, RecordType, Role, HEADER_LEN, KEEP_CONN, NULL_REQUEST_ID,
    VERSION,
};

/// An incremental record decoder (see the module documentation). Plain data, so a model can
/// hold and compare it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Decoder {
    buf: BytesMut,
    buffer_max: usize,
    error: Option<FcgiError>,
}

impl Decoder {
    /// A decoder that holds at most `buffer_max` bytes and refuses a record longer than that
    /// ([`FcgiError::RecordTooLarge`]). With [`RECORD_LEN_MAX`](super::RECORD_LEN_MAX) or
    /// more, every record fits; below [`HEADER_LEN`] none does.
    #[must_use]
    pub fn new(buffer_max: usize) -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            buffer_max,
            error: None,
        }
    }

    /// Appends bytes from the peer, cut anywhere. The caller gives at most [`Decoder::room`]
    /// bytes (more is taken, but the buffer then exceeds its limit); after an error, bytes
    /// are dropped.
    pub fn push(&mut self, data: &[u8]) {
        if self.error.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// The next whole record, `None` until more bytes are pushed, or the error that stops
    /// the decoder (every later call returns it again).
    pub fn next_record(&mut self) -> Result<Option<Record>, FcgiError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let next = self.cut_record();
        if let Err(e) = next {
            self.error = Some(e);
            // Nothing after an error can be read: let the buffer go.
            self.buf = BytesMut::new();
        }
        next
    }

    /// The bytes pushed and not yet handed out as records.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// How many more bytes the caller may push: `buffer_max` less what is buffered (0 after
    /// an error). When the buffer is full it holds a whole record, so `next_record` frees
    /// room again.
    #[must_use]
    pub fn room(&self) -> usize {
        if self.error.is_some() {
            return 0;
        }
        self.buffer_max.saturating_sub(self.buf.len())
    }

    /// The error that stopped the decoder, if any.
    #[must_use]
    pub fn error(&self) -> Option<FcgiError> {
        self.error
    }

    fn cut_record(&mut self) -> Result<Option<Record>, FcgiError> {
        match self.buf.first() {
            None => return Ok(None),
            Some(&v) if v != VERSION => return Err(FcgiError::Version(v)),
            Some(_) => {}
        }
        let Some(head) = self.buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let kind = head[1];
        let id = u16::from_be_bytes([head[2], head[3]]);
        let content_len = u16::from_be_bytes([head[4], head[5]]);
        let padding = usize::from(head[6]);
        let len = HEADER_LEN + usize::from(content_len) + padding;
        let known = RecordType::from_u8(kind);
        if let Some(kind) = known {
            let bodied = matches!(
                kind,
                RecordType::BeginRequest | RecordType::EndRequest | RecordType::UnknownType
            );
            if bodied && content_len != 8 {
                return Err(FcgiError::BodyLength {
                    kind,
                    len: content_len,
                });
            }
            if kind.is_management() && id != NULL_REQUEST_ID {
                return Err(FcgiError::ManagementId { kind, id });
            }
        }
        if len > self.buffer_max {
            return Err(FcgiError::RecordTooLarge {
                len,
                max: self.buffer_max,
            });
        }
        if self.buf.len() < len {
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        let data = self.buf.split_to(usize::from(content_len)).freeze();
        self.buf.advance(padding);
        Ok(Some(record(known, kind, id, data)))
    }
}

/// The record of type `known` (number `kind`) with this id and content. The indexing cannot
/// fail: the header checks let the bodied types through only with 8 bytes of content.
fn record(known: Option<RecordType>, kind: u8, id: u16, data: Bytes) -> Record {
    let Some(known) = known else {
        return Record::Other { kind, id, data };
    };
    match known {
        RecordType::BeginRequest => Record::BeginRequest {
            id,
            role: Role::from_u16(u16::from_be_bytes([data[0], data[1]])),
            keep_conn: data[2] & KEEP_CONN != 0,
        },
        RecordType::AbortRequest => Record::AbortRequest { id },
        RecordType::EndRequest => Record::EndRequest {
            id,
            app_status: u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
            protocol_status: ProtocolStatus::from_u8(data[4]),
        },
        RecordType::Params => Record::Params { id, data },
        RecordType::Stdin => Record::Stdin { id, data },
        RecordType::Stdout => Record::Stdout { id, data },
        RecordType::Stderr => Record::Stderr { id, data },
        RecordType::Data => Record::Data { id, data },
        RecordType::GetValues => Record::GetValues { data },
        RecordType::GetValuesResult => Record::GetValuesResult { data },
        RecordType::UnknownType => Record::UnknownType { kind: data[0] },
    }
}
