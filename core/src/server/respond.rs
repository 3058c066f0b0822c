//! Writing answers on a connection: complete responses, error pages, redirects.
//!
//! Every response the server makes goes through `respond`, which adds the fields `header`
//! rules asked for, counts the status, and keeps files open until their bytes have left.

use bytes::Bytes;

use super::{ConnId, FileId, Server};
use crate::chunk::Chunk;
use crate::document::listing::html_escape;
use crate::document::Piece;
use crate::http1::{reason_phrase, ResponseBody, ResponseHead};
use crate::time::Now;

impl Server {
    /// Sends a complete response: head, body pieces (file ranges of `file`), end. The file,
    /// if any, is closed once the bytes queued so far on the connection have left.
    pub(super) fn respond(
        &mut self,
        id: ConnId,
        mut head: ResponseHead,
        body: Vec<Piece>,
        file: Option<FileId>,
        now: Now,
    ) {
        let status = head.status;
        let bytes = match head.body {
            ResponseBody::Length(n) if !self.bodiless(id, status) => n,
            _ => 0,
        };
        let line = self.access_line(id, status, bytes, now);
        let Some(slot) = self.conns.get_mut(&id) else {
            if let Some(f) = file {
                self.effects.push_back(super::Effect::CloseFile { file: f });
            }
            return;
        };
        for (name, value) in std::mem::take(&mut slot.cur.get_mut().extra_headers) {
            head.headers.push(name, value);
        }
        // The Conn refuses out-of-turn calls (it was rejected meanwhile): then nobody is
        // waiting for this answer and it is dropped on purpose.
        // A body of one piece in memory may go in the head's buffer.
        let inline = match body.as_slice() {
            [Piece::Bytes(b)] => Some(b),
            _ => None,
        };
        if let Ok(inlined) = slot.conn.send_head_with_body(head, inline, now) {
            self.counters.response(status);
            if let Some(line) = line {
                self.effects.push_back(super::Effect::AccessLog { line });
            }
            let body = if inlined { Vec::new() } else { body };
            for piece in body {
                let chunk = match piece {
                    Piece::Bytes(b) => Chunk::Bytes(b),
                    Piece::File { offset, len } => match file {
                        Some(file) => Chunk::File { file, offset, len },
                        None => continue,
                    },
                };
                let _ = slot.conn.send_body(chunk, now);
            }
            let _ = slot.conn.send_end(None, now);
        }
        if let Some(f) = file {
            let queued = slot.conn.transmit_queued();
            let cur = slot.cur.get_mut();
            cur.files.push_back((f, cur.transmitted + queued));
        }
    }

    /// True if a response with `status` to the request on `id` has no body on the wire (the
    /// request is a HEAD, or the status 204 or 304): its access-log byte count is 0.
    pub(super) fn bodiless(&self, id: ConnId, status: u16) -> bool {
        let head_method = self
            .conns
            .get(&id)
            .and_then(|s| s.cur.get().request.as_ref())
            .is_some_and(|r| r.method == crate::http1::Method::Head);
        head_method || status == 204 || status == 304
    }

    /// The access-log line for the response on `id`, if there is an access log.
    pub(super) fn access_line(
        &self,
        id: ConnId,
        status: u16,
        bytes: u64,
        now: Now,
    ) -> Option<String> {
        // The line's format is that of the request's configuration, like everything else
        // about it (a reload that changes `format=` applies to the requests started after);
        // whether the line is written at all is the shell's (is there a log now?).
        let format = self.conf(id).access_log.as_ref()?.format;
        let slot = self.conns.get(&id)?;
        Some(super::accesslog::line(
            format,
            &super::accesslog::Entry {
                peer: slot.peer().ip(),
                user: slot.cur.get().user.as_deref(),
                time: now.unix,
                request: slot.cur.get().request.as_deref(),
                status,
                bytes,
            },
        ))
    }

    /// Sends a body held in memory.
    pub(super) fn respond_bytes(
        &mut self,
        id: ConnId,
        status: u16,
        content_type: &'static str,
        extra: &[(&str, String)],
        body: Bytes,
        now: Now,
    ) {
        let mut head = ResponseHead::new(status, ResponseBody::Length(body.len() as u64));
        head.headers
            .push("Content-Type", Bytes::from_static(content_type.as_bytes()));
        for (name, value) in extra {
            head.headers
                .push(Bytes::copy_from_slice(name.as_bytes()), value.clone());
        }
        self.respond(id, head, vec![Piece::Bytes(body)], None, now);
    }

    /// Sends a short HTML page for `status`, with extra header fields.
    pub(super) fn error(&mut self, id: ConnId, status: u16, extra: &[(&str, String)], now: Now) {
        let body = error_page(status);
        self.respond_bytes(id, status, "text/html; charset=utf-8", extra, body, now);
    }

    /// Sends a redirect to `location`.
    pub(super) fn redirect(&mut self, id: ConnId, status: u16, location: String, now: Now) {
        let reason = reason_phrase(status);
        let shown = html_escape(&location);
        let body = format!(
            "<!DOCTYPE html>\n<html><head><title>{status} {reason}</title></head>\
             <body><h1>{status} {reason}</h1><p><a href=\"{shown}\">{shown}</a></p></body></html>\n"
        );
        self.respond_bytes(
            id,
            status,
            "text/html; charset=utf-8",
            &[("Location", location)],
            Bytes::from(body),
            now,
        );
    }
}

/// An error page's text for a status and its reason phrase, at compile time.
macro_rules! page {
    ($status:literal, $reason:literal) => {
        (
            $status,
            concat!(
                "<!DOCTYPE html>\n<html><head><title>",
                $status,
                " ",
                $reason,
                "</title></head><body><h1>",
                $status,
                " ",
                $reason,
                "</h1></body></html>\n"
            ),
        )
    };
}

/// The common error pages, ready-made (a 404 costs no formatting); a test checks each
/// against the general form.
static READY_PAGES: [(u16, &str); 8] = [
    page!(400, "Bad Request"),
    page!(403, "Forbidden"),
    page!(404, "Not Found"),
    page!(405, "Method Not Allowed"),
    page!(500, "Internal Server Error"),
    page!(502, "Bad Gateway"),
    page!(503, "Service Unavailable"),
    page!(504, "Gateway Timeout"),
];

/// The page an error status is answered with.
fn error_page(status: u16) -> Bytes {
    match READY_PAGES.iter().find(|(s, _)| *s == status) {
        Some((_, page)) => Bytes::from_static(page.as_bytes()),
        None => Bytes::from(general_error_page(status)),
    }
}

fn general_error_page(status: u16) -> String {
    let reason = reason_phrase(status);
    format!(
        "<!DOCTYPE html>\n<html><head><title>{status} {reason}</title></head>\
         <body><h1>{status} {reason}</h1></body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_error_pages_match_the_general_form() {
        for status in 100..600 {
            assert_eq!(
                error_page(status),
                general_error_page(status).as_bytes(),
                "{status}"
            );
        }
        // And they are what the common statuses get, not formatted again.
        for (status, page) in READY_PAGES {
            assert_eq!(error_page(status).as_ptr(), page.as_ptr(), "{status}");
        }
    }
}
