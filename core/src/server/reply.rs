//! A gateway's response, whichever its kind: the header section parsed, then the body
//! streamed to the client (RFC 3875 §6; DESIGN.md §4).
//!
//! # Theory of operation
//!
//! A gateway's output (a script's standard output, a service's STDOUT records) goes
//! through `cgi::output::HeadParser` until its header section ends; then the reply is
//! decided: a document is streamed to the client; a local `Location` re-runs the rules as
//! a new GET (at most `REDIRECTS_MAX` times); bad output is a 502. An `nph-` script's
//! output is the whole response (status line and all) and passes unparsed, the
//! connection closing after it (`Conn::send_raw`).
//!
//! ```text
//!   Output ─► head pending? ── parser: NeedMore · Bad → 502 · Head ─┬─ Document → head, body…
//!                                                                   └─ LocalRedirect → rules
//!            body ─► send_body (more than a promised length → cut)
//!   OutputEnd ─► header incomplete → 502 · else the end (less than promised → cut), logged
//! ```
//!
//! Every response, whole or cut, gets one access-log line with the status sent and the
//! body bytes passed (`log_cut_response` for those cut short, as nginx logs them).

use bytes::Bytes;

use super::gateway::{slot_done, REDIRECTS_MAX};
use super::{ConnId, Effect, Server};
use crate::cgi::output::{HeadParser, Parsed, Reply as CgiReply};
use crate::chunk::Chunk;
use crate::http1::{BodyKind, Headers, Method, ResponseBody, ResponseHead};
use crate::ids::StreamId;
use crate::time::{Now, Time};

/// The response side of a gateway, whichever its kind: the header section being parsed,
/// then what was sent (for the access log), and the `gateway` deadline.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Reply {
    /// The request it answers; `None` once it was detached (its client went away).
    pub(super) conn: Option<ConnId>,
    /// What the error log calls it (`cgi /path/script`, `service php`).
    pub(super) label: String,
    /// The response header parser, until the header section has ended.
    pub(super) head: Option<HeadParser>,
    /// An `nph-` script whose raw response has not started yet.
    pub(super) raw_pending: bool,
    /// An `nph-` script: its output goes out as written, head and all.
    pub(super) raw: bool,
    /// The status sent (for the access log).
    pub(super) status: u16,
    /// Body bytes passed to the client (for the access log).
    pub(super) bytes_out: u64,
    /// When the `gateway` timeout fires (no output for that long).
    pub(super) deadline: Option<Time>,
}

impl Reply {
    /// A reply for request `conn`, parsed (`nph` false) or raw.
    pub(super) fn new(conn: ConnId, label: String, nph: bool) -> Reply {
        Reply {
            conn: Some(conn),
            label,
            head: (!nph).then(HeadParser::new),
            raw_pending: nph,
            raw: nph,
            status: 0,
            bytes_out: 0,
            deadline: None,
        }
    }

    /// True while nothing of the response has gone to the client.
    pub(super) fn head_pending(&self) -> bool {
        self.head.is_some() || self.raw_pending
    }
}

impl Server {
    /// Response bytes from a gateway (a script's standard output, a service's stdout
    /// records): the header section is parsed, then the body streamed to the client.
    pub(super) fn reply_data(&mut self, stream: StreamId, data: Bytes, now: Now) {
        let conn = self.reply(stream).and_then(|r| r.conn);
        let limit = self.gateway_conf(conn).limits.header_bytes_max;
        let Some(reply) = self.reply_mut(stream) else {
            return;
        };
        let Some(id) = reply.conn else { return };
        let Some(parser) = reply.head.as_mut() else {
            if std::mem::take(&mut reply.raw_pending) {
                // nph: the script speaks HTTP itself; its bytes go out as they are. Its
                // status line is read only for the log and the counters.
                reply.status = nph_status(&data);
                let status = reply.status;
                if let Some(slot) = self.conns.get_mut(&id) {
                    let _ = slot.conn.send_raw(now);
                    if let Some(cur) = slot.cur.existing() {
                        cur.extra_headers.clear();
                    }
                }
                self.counters.response(status);
            }
            // The body: straight to the client.
            let Some(reply) = self.reply_mut(stream) else {
                return;
            };
            reply.bytes_out += data.len() as u64;
            let label = reply.label.clone();
            if let Some(slot) = self.conns.get_mut(&id) {
                if slot.conn.send_body(Chunk::Bytes(data), now).is_err() {
                    // More than the gateway's Content-Length promised.
                    self.log(format!("{label}: more output than its Content-Length"));
                    self.abort_gateway(stream, now);
                }
            }
            return;
        };
        match parser.feed(&data, limit) {
            Parsed::NeedMore => {}
            Parsed::Bad(why) => self.bad_output(stream, why, now),
            Parsed::Head(head, rest) => {
                reply.head = None;
                match head.reply() {
                    Err(why) => self.bad_output(stream, why, now),
                    Ok(CgiReply::LocalRedirect(location))
                        if crate::path::normalize(&location).is_err() =>
                    {
                        // RFC 3875 §6.2.2: a local redirect is a path and a query. One that
                        // a request target could not be (a fragment, a bad escape, a climb
                        // above the root) is the script's mistake, not the client's.
                        self.bad_output(stream, "a local redirect that is not a valid path", now);
                    }
                    Ok(CgiReply::LocalRedirect(location)) => {
                        // The gateway's part is over: the rules answer the new path.
                        self.stop_gateway(stream, now);
                        self.local_redirect(id, location, now);
                    }
                    Ok(CgiReply::Document { status }) => {
                        let mut headers = Headers::new();
                        for (n, v) in head.fields {
                            headers.push(n, v);
                        }
                        let body = match head.content_length {
                            Some(n) => ResponseBody::Length(n),
                            None => ResponseBody::Streamed,
                        };
                        if let Some(reply) = self.reply_mut(stream) {
                            reply.status = status;
                        }
                        self.start_response(
                            id,
                            ResponseHead {
                                status,
                                headers,
                                body,
                            },
                            now,
                        );
                        if !rest.is_empty() {
                            self.reply_data(stream, rest, now);
                        }
                    }
                }
            }
        }
    }

    /// The gateway's response has ended (a script's standard output closed, a service's
    /// END_REQUEST): the response is finished, or found short.
    pub(super) fn reply_end(&mut self, stream: StreamId, now: Now) {
        let Some(reply) = self.reply(stream) else {
            return;
        };
        let Some(id) = reply.conn else { return };
        if reply.head.is_some() {
            return self.bad_output(
                stream,
                "the output ended before the end of the header section",
                now,
            );
        }
        if reply.raw_pending {
            return self.bad_output(stream, "no output", now);
        }
        let (status, bytes, raw, label) = (
            reply.status,
            reply.bytes_out,
            reply.raw,
            reply.label.clone(),
        );
        self.log_script_response(id, status, bytes, raw, now);
        let ended = self
            .conns
            .get_mut(&id)
            .map(|slot| slot.conn.send_end(None, now).is_ok());
        if ended == Some(false) {
            self.log(format!("{label}: less output than its Content-Length"));
            if let Some(slot) = self.conns.get_mut(&id) {
                slot.conn.cut(now);
            }
        }
        slot_done(self, id);
    }

    /// The gateway's output is not a valid response: 502, and the gateway is stopped.
    pub(super) fn bad_output(&mut self, stream: StreamId, why: &str, now: Now) {
        self.gateway_failed(stream, &format!("bad output: {why}"), now);
    }

    /// The gateway cannot answer (`what` says why, for the error log) and nothing of its
    /// answer went out: 502, and the gateway is stopped.
    pub(super) fn gateway_failed(&mut self, stream: StreamId, what: &str, now: Now) {
        let Some(reply) = self.reply(stream) else {
            return;
        };
        let (label, conn) = (reply.label.clone(), reply.conn);
        self.log(format!("{label}: {what}"));
        self.stop_gateway(stream, now);
        if let Some(id) = conn {
            self.error(id, 502, &[], now);
            slot_done(self, id);
        }
    }

    /// A gateway's response is being cut off after its head went out (timeout, broken
    /// promise, client gone): it still gets its access-log line, with the status sent and
    /// the body bytes passed so far, as nginx logs a response cut short. Call it while the
    /// connection's slot still exists, before `slot_done`.
    pub(super) fn log_cut_response(&mut self, stream: StreamId, id: ConnId, now: Now) {
        let Some(reply) = self.reply(stream) else {
            return;
        };
        if reply.conn != Some(id) || reply.head_pending() {
            return;
        }
        let (status, bytes, raw) = (reply.status, reply.bytes_out, reply.raw);
        self.log_script_response(id, status, bytes, raw, now);
    }

    /// The access-log line of a gateway's response: `bytes` passed to the connection,
    /// which sends none of them for a HEAD request, a 204 or a 304 (an `nph-` script's,
    /// `raw`, pass unparsed and all go out).
    fn log_script_response(&mut self, id: ConnId, status: u16, bytes: u64, raw: bool, now: Now) {
        let bytes = if !raw && self.bodiless(id, status) {
            0
        } else {
            bytes
        };
        if let Some(line) = self.access_line(id, status, bytes, now) {
            self.effects.push_back(Effect::AccessLog { line });
        }
    }

    /// Cuts a gateway off after its response head went out: the connection closes.
    pub(super) fn abort_gateway(&mut self, stream: StreamId, now: Now) {
        let conn = self.reply(stream).and_then(|r| r.conn);
        if let Some(id) = conn {
            self.log_cut_response(stream, id, now);
        }
        self.stop_gateway(stream, now);
        if let Some(id) = conn {
            if let Some(slot) = self.conns.get_mut(&id) {
                slot.conn.cut(now);
            }
            slot_done(self, id);
        }
    }

    fn local_redirect(&mut self, id: ConnId, location: Bytes, now: Now) {
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        let cur = slot.cur.get_mut();
        cur.gateway = None;
        cur.redirects += 1;
        if cur.redirects > REDIRECTS_MAX {
            self.log(format!(
                "too many local redirects, the last to {}",
                String::from_utf8_lossy(&location)
            ));
            return self.error(id, 500, &[], now);
        }
        let Some(mut req) = cur.request.as_deref().cloned() else {
            return;
        };
        req.method = Method::Get;
        req.target = location;
        req.body = BodyKind::None;
        req.headers.remove("content-length");
        req.headers.remove("content-type");
        req.headers.remove("transfer-encoding");
        self.route_request(id, std::sync::Arc::new(req), now);
    }

    /// Sends a response head that a script's body will follow (`respond` does head, body and
    /// end at once).
    fn start_response(&mut self, id: ConnId, mut head: ResponseHead, now: Now) {
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        if let Some(cur) = slot.cur.existing() {
            for (name, value) in std::mem::take(&mut cur.extra_headers) {
                head.headers.push(name, value);
            }
        }
        let status = head.status;
        if slot.conn.send_head(head, now).is_ok() {
            self.counters.response(status);
        }
    }
}

/// The status an `nph-` script's output starts with (`HTTP/1.1 299 …`), for the log and the
/// counters; 0 when its first bytes are not such a status line.
fn nph_status(first: &[u8]) -> u16 {
    let Some(rest) = first.strip_prefix(b"HTTP/1.") else {
        return 0;
    };
    match rest {
        [_, b' ', a, b, c, ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::nph_status;

    #[test]
    fn an_nph_status_is_read_off_a_status_line_or_is_zero() {
        for (first, status) in [
            (&b"HTTP/1.1 299 Own Words\r\n"[..], 299),
            (b"HTTP/1.0 404 Not Found\r\n", 404),
            (b"HTTP/1.1 2x9 Odd\r\n", 0),
            (b"HTTP/1.1 20", 0),
            (b"HTTP/2 200\r\n", 0),
            (b"Content-Type: text/plain\r\n", 0),
        ] {
            assert_eq!(
                nph_status(first),
                status,
                "{:?}",
                String::from_utf8_lossy(first)
            );
        }
    }
}
