//! The model's client: reads responses off the bytes the shell transmitted.
//!
//! # Theory of operation
//!
//! Both models judge the server by what a client would see, not by the core's internal
//! state: the shell appends every transmitted byte to a wire, and [`next_response`] cuts
//! the next complete response off its front. It is strict on purpose — a status line
//! httparse refuses, a chunk not followed by CRLF or a body of the wrong length is
//! [`Parsed::Garbled`], which every model treats as a broken property — but it knows only
//! what the models need: framing by `Content-Length`, `Transfer-Encoding: chunked`, or the
//! end of the connection (a streamed body to an HTTP/1.0 client, RFC 9112 §6.3 rule 8),
//! and interim 1xx heads, which carry no body.
//!
//! It is deliberately a separate implementation from the core's writer (`http1::write`):
//! a model that parsed the output with the code that produced it would check nothing.

/// A response the client has read completely.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields as sent (name, value).
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The value of the first field called `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True for 1xx heads.
    #[must_use]
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status)
    }
}

/// What the front of the wire holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete response, and how many wire bytes it took.
    Complete(Response, usize),
    /// The bytes so far are a correct prefix of a response.
    Partial,
    /// The bytes cannot be the start of a correct response.
    Garbled(&'static str),
}

/// Reads the next response from the front of `wire`. `finished`: the server has finished
/// writing (the write side is shut down), so a close-delimited body ends here.
#[must_use]
pub fn next_response(wire: &[u8], finished: bool) -> Parsed {
    if wire.is_empty() {
        return Parsed::Partial;
    }
    let mut slots = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut slots);
    let head_len = match resp.parse(wire) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Garbled("response head does not parse"),
    };
    if resp.version != Some(1) {
        return Parsed::Garbled("status line is not HTTP/1.1");
    }
    let Some(status) = resp.code else {
        return Parsed::Garbled("no status code");
    };
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let mut out = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if out.is_interim() || status == 204 || status == 304 {
        return Parsed::Complete(out, head_len);
    }
    let rest = &wire[head_len..];
    if out.header("transfer-encoding") == Some("chunked") {
        if out.header("content-length").is_some() {
            return Parsed::Garbled("both Content-Length and chunked");
        }
        return match dechunk(rest) {
            Ok(Some((body, used))) => {
                out.body = body;
                Parsed::Complete(out, head_len + used)
            }
            Ok(None) => Parsed::Partial,
            Err(why) => Parsed::Garbled(why),
        };
    }
    if let Some(cl) = out.header("content-length") {
        let Ok(n) = cl.parse::<usize>() else {
            return Parsed::Garbled("Content-Length is not a number");
        };
        if rest.len() < n {
            return Parsed::Partial;
        }
        out.body = rest[..n].to_vec();
        return Parsed::Complete(out, head_len + n);
    }
    // Close-delimited: only legal when the response says the connection closes.
    if out.header("connection") != Some("close") {
        return Parsed::Garbled("body delimited by close without Connection: close");
    }
    if !finished {
        return Parsed::Partial;
    }
    out.body = rest.to_vec();
    Parsed::Complete(out, wire.len())
}

/// Decodes a chunked body at the front of `wire`: the body and the bytes used, `None` if
/// incomplete.
fn dechunk(wire: &[u8]) -> Result<Option<(Vec<u8>, usize)>, &'static str> {
    let mut pos = 0;
    let mut body = Vec::new();
    loop {
        let Some(line) = crlf_line(&wire[pos..])? else {
            return Ok(None);
        };
        let text = core::str::from_utf8(&wire[pos..pos + line]).map_err(|_| "chunk size")?;
        let size = usize::from_str_radix(text, 16).map_err(|_| "chunk size is not hex")?;
        pos += line + 2;
        if size == 0 {
            // Trailer section: field lines up to an empty line.
            loop {
                let Some(line) = crlf_line(&wire[pos..])? else {
                    return Ok(None);
                };
                pos += line + 2;
                if line == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if wire.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&wire[pos..pos + size]);
        pos += size;
        if &wire[pos..pos + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF");
        }
        pos += 2;
    }
}

/// Length of the CRLF-terminated line at the front of `b` (CRLF excluded).
fn crlf_line(b: &[u8]) -> Result<Option<usize>, &'static str> {
    match b.iter().position(|&c| c == b'\n') {
        None => Ok(None),
        Some(0) => Err("bare LF"),
        Some(i) if b[i - 1] == b'\r' => Ok(Some(i - 1)),
        Some(_) => Err("bare LF"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_three_framings() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 100 Continue\r\n\r\n";
        let Parsed::Complete(r, n) = next_response(wire, false) else {
            panic!("complete");
        };
        assert_eq!((r.status, r.body.as_slice(), n), (200, &b"ok"[..], 40));
        let Parsed::Complete(r, _) = next_response(&wire[n..], false) else {
            panic!("interim");
        };
        assert!(r.is_interim());
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        assert!(
            matches!(next_response(chunked, false), Parsed::Complete(r, n)
            if r.body == b"ok" && n == chunked.len())
        );
        assert_eq!(
            next_response(&chunked[..chunked.len() - 3], false),
            Parsed::Partial
        );
        let close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc";
        assert_eq!(next_response(close, false), Parsed::Partial);
        assert!(matches!(next_response(close, true), Parsed::Complete(r, _) if r.body == b"abc"));
    }

    #[test]
    fn refuses_what_is_not_a_response() {
        assert!(matches!(
            next_response(b"GET / HTTP/1.1\r\n\r\n", false),
            Parsed::Garbled(_)
        ));
        let bad_chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nokk\r\n";
        assert!(matches!(
            next_response(bad_chunk, false),
            Parsed::Garbled(_)
        ));
        let no_close = b"HTTP/1.1 200 OK\r\n\r\nabc";
        assert!(matches!(next_response(no_close, true), Parsed::Garbled(_)));
    }
}
