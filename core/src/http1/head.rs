//! Request and response heads as owned values.
//!
//! A `RequestHead` leaves the connection machine with its framing already decided (RFC 9112
//! §6.3), so nothing downstream ever looks at `Content-Length` or `Transfer-Encoding` again:
//! the single place that judges framing is `http1::parse`.

use bytes::Bytes;

/// The request method. The common ones are variants so that routing never compares bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
    /// `TRACE` (always refused with 405: it would echo credentials back).
    Trace,
    /// `CONNECT`
    Connect,
    /// `PATCH`
    Patch,
    /// Any other token.
    Other(Bytes),
}

impl Method {
    /// Maps a method token to its variant.
    #[must_use]
    pub fn from_bytes(b: &[u8]) -> Method {
        match b {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"CONNECT" => Method::Connect,
            b"PATCH" => Method::Patch,
            other => Method::Other(Bytes::copy_from_slice(other)),
        }
    }

    /// The method token.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Method::Get => b"GET",
            Method::Head => b"HEAD",
            Method::Post => b"POST",
            Method::Put => b"PUT",
            Method::Delete => b"DELETE",
            Method::Options => b"OPTIONS",
            Method::Trace => b"TRACE",
            Method::Connect => b"CONNECT",
            Method::Patch => b"PATCH",
            Method::Other(b) => b,
        }
    }
}

/// The protocol version of a message. Only 1.0 and 1.1 get this far (others → 505).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
}

impl Version {
    /// The version as it appears on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// One header field: the name as the peer spelled it, and the value without surrounding
/// optional whitespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Field name (compare case-insensitively).
    pub name: Bytes,
    /// Field value.
    pub value: Bytes,
}

/// An ordered list of header fields; lookups are case-insensitive on the name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Headers(pub Vec<Header>);

impl Headers {
    /// An empty list.
    #[must_use]
    pub fn new() -> Headers {
        Headers(Vec::new())
    }

    /// Appends a field.
    pub fn push(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.0.push(Header {
            name: name.into(),
            value: value.into(),
        });
    }

    /// The value of the first field called `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.0
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| &h.value)
    }

    /// Every value of the fields called `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.0
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| &h.value)
    }

    /// True if some field called `name` exists.
    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Removes every field called `name`.
    pub fn remove(&mut self, name: &str) {
        self.0
            .retain(|h| !h.name.eq_ignore_ascii_case(name.as_bytes()));
    }

    /// True if a comma-separated list field `name` holds `token` (case-insensitive), as
    /// `Connection: keep-alive, Upgrade` holds `upgrade`.
    #[must_use]
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name).any(|v| {
            v.split(|&b| b == b',')
                .any(|item| trim_ows(item).eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// Number of fields.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are no fields.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Strips optional whitespace (SP / HTAB) from both ends.
#[must_use]
pub fn trim_ows(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

/// How the request body is delimited, as decided by RFC 9112 §6.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BodyKind {
    /// No body.
    None,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed, validated request head.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The request target exactly as sent (origin-form `/path?query`, absolute-form, `*`, or
    /// authority-form).
    pub target: Bytes,
    /// The protocol version.
    pub version: Version,
    /// All header fields, in order.
    pub headers: Headers,
    /// The host the request is for: an absolute-form target's authority, else `Host`.
    pub host: Option<Bytes>,
    /// How the body is delimited.
    pub body: BodyKind,
    /// The client sent `Expect: 100-continue` (HTTP/1.1 only).
    pub expects_continue: bool,
    /// The client is willing to keep the connection open after this exchange.
    pub keep_alive: bool,
}

/// A response head as the application gives it to the connection.
///
/// The connection adds `Date`, `Server`, the framing headers (`Content-Length` or
/// `Transfer-Encoding: chunked`) and `Connection` itself; the application must not.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResponseHead {
    /// Status code, 100–599.
    pub status: u16,
    /// Header fields other than the ones the connection adds.
    pub headers: Headers,
    /// How long the body will be.
    pub body: ResponseBody,
}

impl ResponseHead {
    /// A head with no fields yet.
    #[must_use]
    pub fn new(status: u16, body: ResponseBody) -> ResponseHead {
        ResponseHead {
            status,
            headers: Headers::new(),
            body,
        }
    }
}

/// What the application knows of the body's length when it sends the head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResponseBody {
    /// No body at all (and no `Content-Length`), e.g. 204, 304.
    Empty,
    /// Exactly this many bytes; sent as `Content-Length` (also on responses to HEAD).
    Length(u64),
    /// Unknown: chunked to HTTP/1.1 clients, delimited by closing for HTTP/1.0 ones.
    Streamed,
}

/// The reason phrase the server writes for a status code: RFC 9110 §15's, RFC 6585's
/// (428, 429) and RFC 7725's (451); "Unknown" for a code none of them defines (a script's
/// own, say), since the phrase carries no meaning (RFC 9112 §4).
#[must_use]
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}
