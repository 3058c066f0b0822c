//! FastCGI 1.0: the record codec, for both ends of a connection.
//!
//! weir is a FastCGI *client* when it forwards requests to an application (PHP-FPM and the
//! like) and may be a FastCGI *server* for its own services; both speak the same records, so
//! this module encodes and decodes every record type in both directions and judges nothing
//! about the conversation (which request ids are live, whether `STDIN` follows `PARAMS`):
//! that belongs to the client or server machine on top.
//!
//! # Records (FastCGI 1.0 §3.3, §8)
//!
//! ```text
//!   +---------+------+-----------+---------------+---------------+----------+
//!   | version | type | requestId | contentLength | paddingLength | reserved |
//!   |  u8 = 1 |  u8  |   u16 BE  |     u16 BE    |       u8      |    u8    |
//!   +---------+------+-----------+---------------+---------------+----------+
//!   | contentLength bytes of content | paddingLength bytes of padding       |
//!   +--------------------------------+--------------------------------------+
//! ```
//!
//! * Discrete records carry one body: `BEGIN_REQUEST` (role, flags), `ABORT_REQUEST` (none),
//!   `END_REQUEST` (app status, protocol status), `UNKNOWN_TYPE` (the type not understood).
//!   The three with a body must have exactly 8 bytes of content; anything else is the peer's
//!   error, since a short body cannot be read and a long one means a confused peer. An
//!   `ABORT_REQUEST` body is ignored (the specification gives it none; receivers such as
//!   PHP-FPM ignore one).
//! * Stream records (`PARAMS`, `STDIN`, `STDOUT`, `STDERR`, `DATA`) carry a piece of a byte
//!   stream; a record with no content ends the stream (§3.3). [`encode_stream`] cuts a stream
//!   into records and ends it; [`encode_stream_part`] cuts a piece without ending it.
//! * Management records (`GET_VALUES`, `GET_VALUES_RESULT`, `UNKNOWN_TYPE`) use request id 0
//!   (§3.3); their [`Record`] variants have no id, so one arriving with another id is an
//!   error rather than a silently renumbered record.
//! * A type this codec does not know (0, 12…255) decodes as [`Record::Other`], so the server
//!   side can answer it with `UNKNOWN_TYPE` (§4.2) instead of dropping the connection.
//!
//! `PARAMS` and `GET_VALUES[_RESULT]` content is a sequence of name-value pairs, each length
//! in 1 byte when below 128 and otherwise in 4 bytes, big-endian, with the top bit set
//! (§3.4): [`encode_params`] and [`decode_params`]. Pairs may straddle `PARAMS` records, so
//! the caller joins the stream before decoding it.
//!
//! # Padding
//!
//! The encoder pads every record to a multiple of 8 bytes, as the specification recommends
//! and common implementations do; streams are cut at [`STREAM_PIECE_MAX`] (65528, a multiple
//! of 8) so that long streams need no padding at all. The decoder accepts any padding.
//!
//! # Decoding
//!
//! [`Decoder`] takes bytes as they arrive, cut anywhere, and hands out each record as soon as
//! its content and padding are whole. It never holds a record longer than its `buffer_max`;
//! the caller reads at most [`Decoder::room`] bytes at a time, so the buffer is bounded and a
//! full buffer always holds a whole record. Errors are values ([`FcgiError`]) and sticky.

mod decoder;
mod encode;
mod params;

#[cfg(test)]
mod tests;

use core::fmt;

use bytes::Bytes;

pub use decoder::Decoder;
pub use encode::{encode, encode_stream, encode_stream_part};
pub use params::{decode_params, encode_params};

/// The protocol version every record carries (`FCGI_VERSION_1`).
pub const VERSION: u8 = 1;

/// The length of a record header (`FCGI_HEADER_LEN`).
pub const HEADER_LEN: usize = 8;

/// The most content one record can carry (`contentLength` is a u16).
pub const CONTENT_LEN_MAX: usize = 65535;

/// The longest record on the wire: header, the most content and the most padding.
pub const RECORD_LEN_MAX: usize = HEADER_LEN + CONTENT_LEN_MAX + 255;

/// The content per record when a stream is cut: the largest multiple of 8 that fits, so
/// that every record but the last needs no padding.
pub const STREAM_PIECE_MAX: usize = 65528;

/// The request id of management records (`FCGI_NULL_REQUEST_ID`).
pub const NULL_REQUEST_ID: u16 = 0;

/// The `BEGIN_REQUEST` flag asking the application to keep the connection open
/// (`FCGI_KEEP_CONN`).
pub const KEEP_CONN: u8 = 1;

/// The longest name or value in a name-value pair (a 31-bit length).
pub const PARAM_LEN_MAX: usize = 0x7fff_ffff;

/// `GET_VALUES` variable: the most concurrent connections the application accepts.
pub const MAX_CONNS: &[u8] = b"FCGI_MAX_CONNS";

/// `GET_VALUES` variable: the most concurrent requests the application accepts.
pub const MAX_REQS: &[u8] = b"FCGI_MAX_REQS";

/// `GET_VALUES` variable: `1` if the application multiplexes requests on a connection.
pub const MPXS_CONNS: &[u8] = b"FCGI_MPXS_CONNS";

/// The record types of FastCGI 1.0 (§8), by their number on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum RecordType {
    /// `FCGI_BEGIN_REQUEST`: the client starts a request.
    BeginRequest = 1,
    /// `FCGI_ABORT_REQUEST`: the client gives up on a request.
    AbortRequest = 2,
    /// `FCGI_END_REQUEST`: the application has finished a request.
    EndRequest = 3,
    /// `FCGI_PARAMS`: the request's name-value pairs (a stream).
    Params = 4,
    /// `FCGI_STDIN`: the request body (a stream).
    Stdin = 5,
    /// `FCGI_STDOUT`: the response (a stream).
    Stdout = 6,
    /// `FCGI_STDERR`: the application's error output (a stream).
    Stderr = 7,
    /// `FCGI_DATA`: the file a filter works on (a stream).
    Data = 8,
    /// `FCGI_GET_VALUES`: the client asks for the application's variables.
    GetValues = 9,
    /// `FCGI_GET_VALUES_RESULT`: the application's answer.
    GetValuesResult = 10,
    /// `FCGI_UNKNOWN_TYPE`: the application did not understand a management record.
    UnknownType = 11,
}

impl RecordType {
    /// The type with this number, or `None` for one FastCGI 1.0 does not define.
    #[must_use]
    pub fn from_u8(kind: u8) -> Option<RecordType> {
        Some(match kind {
            1 => RecordType::BeginRequest,
            2 => RecordType::AbortRequest,
            3 => RecordType::EndRequest,
            4 => RecordType::Params,
            5 => RecordType::Stdin,
            6 => RecordType::Stdout,
            7 => RecordType::Stderr,
            8 => RecordType::Data,
            9 => RecordType::GetValues,
            10 => RecordType::GetValuesResult,
            11 => RecordType::UnknownType,
            _ => return None,
        })
    }

    /// The type's number on the wire.
    #[must_use]
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Whether this is a management type, always sent with request id 0.
    #[must_use]
    pub fn is_management(self) -> bool {
        matches!(
            self,
            RecordType::GetValues | RecordType::GetValuesResult | RecordType::UnknownType
        )
    }
}

/// The role a `BEGIN_REQUEST` asks the application to play (§6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// `FCGI_RESPONDER` (1): answer the request, like CGI.
    Responder,
    /// `FCGI_AUTHORIZER` (2): allow or refuse the request.
    Authorizer,
    /// `FCGI_FILTER` (3): answer from the request and a file sent as `DATA`.
    Filter,
    /// Any other number: the application answers `END_REQUEST` with `UNKNOWN_ROLE`. Holds
    /// only numbers other than 1, 2 and 3 ([`Role::from_u16`] gives the named roles).
    Other(u16),
}

impl Role {
    /// The role with this number.
    #[must_use]
    pub fn from_u16(role: u16) -> Role {
        match role {
            1 => Role::Responder,
            2 => Role::Authorizer,
            3 => Role::Filter,
            other => Role::Other(other),
        }
    }

    /// The role's number on the wire.
    #[must_use]
    pub fn as_u16(self) -> u16 {
        match self {
            Role::Responder => 1,
            Role::Authorizer => 2,
            Role::Filter => 3,
            Role::Other(n) => n,
        }
    }
}

/// How a request ended, at the protocol level (`END_REQUEST`'s `protocolStatus`, §5.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolStatus {
    /// `FCGI_REQUEST_COMPLETE` (0): the request ran; `app_status` says how.
    RequestComplete,
    /// `FCGI_CANT_MPX_CONN` (1): the application does not take a second request on this
    /// connection.
    CantMpxConn,
    /// `FCGI_OVERLOADED` (2): the application is out of some resource.
    Overloaded,
    /// `FCGI_UNKNOWN_ROLE` (3): the application does not play the role asked for.
    UnknownRole,
    /// Any other number (only numbers above 3; [`ProtocolStatus::from_u8`] gives the named
    /// ones).
    Other(u8),
}

impl ProtocolStatus {
    /// The status with this number.
    #[must_use]
    pub fn from_u8(status: u8) -> ProtocolStatus {
        match status {
            0 => ProtocolStatus::RequestComplete,
            1 => ProtocolStatus::CantMpxConn,
            2 => ProtocolStatus::Overloaded,
            3 => ProtocolStatus::UnknownRole,
            other => ProtocolStatus::Other(other),
        }
    }

    /// The status's number on the wire.
    #[must_use]
    pub fn as_u8(self) -> u8 {
        match self {
            ProtocolStatus::RequestComplete => 0,
            ProtocolStatus::CantMpxConn => 1,
            ProtocolStatus::Overloaded => 2,
            ProtocolStatus::UnknownRole => 3,
            ProtocolStatus::Other(n) => n,
        }
    }
}

/// The stream record types, for [`encode_stream`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamKind {
    /// `FCGI_PARAMS`.
    Params,
    /// `FCGI_STDIN`.
    Stdin,
    /// `FCGI_STDOUT`.
    Stdout,
    /// `FCGI_STDERR`.
    Stderr,
    /// `FCGI_DATA`.
    Data,
}

impl StreamKind {
    /// The record type of this stream.
    #[must_use]
    pub fn record_type(self) -> RecordType {
        match self {
            StreamKind::Params => RecordType::Params,
            StreamKind::Stdin => RecordType::Stdin,
            StreamKind::Stdout => RecordType::Stdout,
            StreamKind::Stderr => RecordType::Stderr,
            StreamKind::Data => RecordType::Data,
        }
    }

    /// A record of this stream carrying `data` (empty: the end of the stream).
    #[must_use]
    pub fn record(self, id: u16, data: Bytes) -> Record {
        match self {
            StreamKind::Params => Record::Params { id, data },
            StreamKind::Stdin => Record::Stdin { id, data },
            StreamKind::Stdout => Record::Stdout { id, data },
            StreamKind::Stderr => Record::Stderr { id, data },
            StreamKind::Data => Record::Data { id, data },
        }
    }
}

/// One FastCGI record, decoded. For the stream variants an empty `data` is the record that
/// ends the stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Record {
    /// `FCGI_BEGIN_REQUEST`.
    BeginRequest {
        /// The request id.
        id: u16,
        /// The role asked for.
        role: Role,
        /// `FCGI_KEEP_CONN`: the application must not close the connection after this
        /// request. (The other flag bits are reserved and ignored.)
        keep_conn: bool,
    },
    /// `FCGI_ABORT_REQUEST`.
    AbortRequest {
        /// The request id.
        id: u16,
    },
    /// `FCGI_END_REQUEST`.
    EndRequest {
        /// The request id.
        id: u16,
        /// The application's exit status (a CGI script's exit code).
        app_status: u32,
        /// How the request ended at the protocol level.
        protocol_status: ProtocolStatus,
    },
    /// `FCGI_PARAMS`: a piece of the name-value pair stream.
    Params {
        /// The request id.
        id: u16,
        /// The piece (empty: the end of the stream).
        data: Bytes,
    },
    /// `FCGI_STDIN`: a piece of the request body.
    Stdin {
        /// The request id.
        id: u16,
        /// The piece (empty: the end of the stream).
        data: Bytes,
    },
    /// `FCGI_STDOUT`: a piece of the response.
    Stdout {
        /// The request id.
        id: u16,
        /// The piece (empty: the end of the stream).
        data: Bytes,
    },
    /// `FCGI_STDERR`: a piece of the error output.
    Stderr {
        /// The request id.
        id: u16,
        /// The piece (empty: the end of the stream).
        data: Bytes,
    },
    /// `FCGI_DATA`: a piece of the filtered file.
    Data {
        /// The request id.
        id: u16,
        /// The piece (empty: the end of the stream).
        data: Bytes,
    },
    /// `FCGI_GET_VALUES` (request id 0): name-value pairs with empty values.
    GetValues {
        /// The pairs, encoded ([`decode_params`]).
        data: Bytes,
    },
    /// `FCGI_GET_VALUES_RESULT` (request id 0): the variables with their values.
    GetValuesResult {
        /// The pairs, encoded ([`decode_params`]).
        data: Bytes,
    },
    /// `FCGI_UNKNOWN_TYPE` (request id 0): the peer did not understand a record type.
    UnknownType {
        /// The type not understood.
        kind: u8,
    },
    /// A record of a type FastCGI 1.0 does not define, kept whole so that it can be answered
    /// with `UNKNOWN_TYPE`. The decoder makes these only for types 0 and 12…255; one built
    /// with a defined type is encoded as given and decodes as that type.
    Other {
        /// The type.
        kind: u8,
        /// The request id.
        id: u16,
        /// The content.
        data: Bytes,
    },
}

impl Record {
    /// The type number on the wire.
    #[must_use]
    pub fn kind(&self) -> u8 {
        let t = match self {
            Record::BeginRequest { .. } => RecordType::BeginRequest,
            Record::AbortRequest { .. } => RecordType::AbortRequest,
            Record::EndRequest { .. } => RecordType::EndRequest,
            Record::Params { .. } => RecordType::Params,
            Record::Stdin { .. } => RecordType::Stdin,
            Record::Stdout { .. } => RecordType::Stdout,
            Record::Stderr { .. } => RecordType::Stderr,
            Record::Data { .. } => RecordType::Data,
            Record::GetValues { .. } => RecordType::GetValues,
            Record::GetValuesResult { .. } => RecordType::GetValuesResult,
            Record::UnknownType { .. } => RecordType::UnknownType,
            Record::Other { kind, .. } => return *kind,
        };
        t.as_u8()
    }

    /// The request id on the wire (0 for management records).
    #[must_use]
    pub fn id(&self) -> u16 {
        match self {
            Record::BeginRequest { id, .. }
            | Record::AbortRequest { id }
            | Record::EndRequest { id, .. }
            | Record::Params { id, .. }
            | Record::Stdin { id, .. }
            | Record::Stdout { id, .. }
            | Record::Stderr { id, .. }
            | Record::Data { id, .. }
            | Record::Other { id, .. } => *id,
            Record::GetValues { .. }
            | Record::GetValuesResult { .. }
            | Record::UnknownType { .. } => NULL_REQUEST_ID,
        }
    }

    /// Whether this is a stream record with no content: the end of its stream.
    #[must_use]
    pub fn is_end_of_stream(&self) -> bool {
        match self {
            Record::Params { data, .. }
            | Record::Stdin { data, .. }
            | Record::Stdout { data, .. }
            | Record::Stderr { data, .. }
            | Record::Data { data, .. } => data.is_empty(),
            _ => false,
        }
    }
}

/// Why bytes from the peer are not FastCGI. Every one is the peer's fault; the connection
/// cannot be read further (a record boundary is lost or the peer is confused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FcgiError {
    /// A record header whose version is not 1.
    Version(u8),
    /// A `BEGIN_REQUEST`, `END_REQUEST` or `UNKNOWN_TYPE` record whose content is not the
    /// 8 bytes of its body.
    BodyLength {
        /// The record type.
        kind: RecordType,
        /// The content length it declared.
        len: u16,
    },
    /// A management record (`GET_VALUES`, `GET_VALUES_RESULT`, `UNKNOWN_TYPE`) whose request
    /// id is not 0.
    ManagementId {
        /// The record type.
        kind: RecordType,
        /// The request id it carried.
        id: u16,
    },
    /// A record longer (header, content and padding) than the decoder's `buffer_max`.
    RecordTooLarge {
        /// The record's length.
        len: usize,
        /// The decoder's limit.
        max: usize,
    },
    /// Name-value pairs that end inside a pair (in a length or in a name or value).
    ParamsCut {
        /// Where the cut pair starts in the data.
        at: usize,
    },
}

impl fmt::Display for FcgiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FcgiError::Version(v) => write!(f, "FastCGI record of version {v}, not 1"),
            FcgiError::BodyLength { kind, len } => {
                write!(f, "FastCGI {kind:?} record of {len} bytes, not 8")
            }
            FcgiError::ManagementId { kind, id } => {
                write!(f, "FastCGI {kind:?} record with request id {id}, not 0")
            }
            FcgiError::RecordTooLarge { len, max } => {
                write!(f, "FastCGI record of {len} bytes, over the limit of {max}")
            }
            FcgiError::ParamsCut { at } => {
                write!(f, "FastCGI name-value pair cut short (at byte {at})")
            }
        }
    }
}

impl std::error::Error for FcgiError {}
