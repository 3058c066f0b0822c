//! The response checker: each final response against what the reference model allows.
//!
//! # Theory of operation
//!
//! A response passes if it matches one prediction of the model entirely: its status, every
//! header check, and its body. Three answers are judged against the world's record rather
//! than the model, because they depend on timing or on faults the model does not see:
//! `408` is legitimate only if a header or body timeout could really have expired (see
//! `Entry::timeout_legit`), `503` only if an `Open` failed with "too many open files"
//! while the request was being served, and a hostile request only gets the statuses the
//! workload names for it, with `Connection: close`.
//!
//! A CGI request's `503` and `504` are judged against the gateway book (`gateway`): a 503
//! only if the farm was full and its queue too while the request waited, or a `Spawn`
//! failed for want of processes; a 504 only if the script's process was killed after
//! saying nothing for the whole `gateway` timeout, before its header section was read.
//!
//! A service request's `503`, `504` and `502` are judged against the service book
//! (`service`): a 503 (with `Retry-After`) only if the service was down — restarting,
//! refusing connections, `Down` published — at some moment of the request's window; a
//! 504 only if a stream of the request was closed after saying nothing for the whole
//! `gateway` timeout of the request's generation (the one its `X-Gen` shows) while its
//! process lived; a 502 the model does not predict only if a
//! process serving it died, or one of the service's died or it went down within its
//! window (a request whose parameters never arrived cannot be named).
//!
//! With reloads, the response is judged against the site of the generation its request
//! started under, which `reload` works out (and checks) first.
//!
//! Entity tags are checked across responses: the `TagBook` binds each tag to the one
//! version whose bytes were served with it, and any second version under the same tag (a
//! stale validator) or second tag for one version is a failure.

use core::net::Ipv4Addr;

use weir_core::Time;

use super::gateway::GatewayBook;
use super::ledger::Entry;
use super::model::{self, Ask, Body, Field, Prediction, TagBook};
use super::reload::Generations;
use super::service::ServiceBook;
use crate::fs::SimFs;
use crate::workload::{Expect, Memory};
use weir_testkit::response::{self as parse, Response};

/// What the judge reads and writes.
pub struct Judge<'a> {
    /// Every generation's site (see `reload`).
    pub gens: &'a Generations,
    /// The highest generation an answer on this connection has shown so far.
    pub seen_gen: u64,
    /// The file system and its history.
    pub fs: &'a SimFs,
    /// Entity tags seen.
    pub tags: &'a mut TagBook,
    /// Validators clients remember.
    pub memory: &'a mut Memory,
    /// `timeout header=`, `timeout body=`.
    pub timeouts_ms: (u64, u64),
    /// When `Open`s failed with `Exhausted`.
    pub exhausted: &'a [Time],
    /// The time now.
    pub now: Time,
    /// Unix seconds at `Time(0)`.
    pub unix_base: i64,
    /// The client's address.
    pub peer: Ipv4Addr,
    /// The server has seen the client's half-close (it may then close after any answer).
    pub half_closed: bool,
    /// What the world recorded of scripts and their requests.
    pub gateway: &'a GatewayBook,
    /// What the world recorded of the service and its requests.
    pub service: &'a ServiceBook,
    /// The response being judged ended with its connection, which was cut for a reason
    /// the world recorded: a body delimited by the close may be a prefix.
    pub cut: bool,
}

impl Judge<'_> {
    /// Checks one final response to `e`.
    pub fn judge(&mut self, e: &Entry, r: &Response) -> Result<(), String> {
        self.date(e, r)?;
        let gens = self.gens;
        let site = gens.site_for(e, r, &mut self.seen_gen)?;
        if r.status == 408 {
            let (h, b) = self.timeouts_ms;
            return if e.timeout_legit(self.now, h, b) {
                Ok(())
            } else {
                Err(format!(
                    "408 but no timeout can have expired (first byte at {:?}, head at {:?}, \
                     all at {:?}, longest body gap {}ms; header={h}ms body={b}ms)",
                    e.first, e.head, e.all, e.body_gap_max_ms
                ))
            };
        }
        let from = e.head.or(e.first).unwrap_or(e.written_at);
        let open_faults = self.exhausted.iter().any(|t| *t >= from && *t <= self.now);
        if e.req.svc {
            let record = self.service.request(e.req.id);
            let window = (from, self.now);
            match r.status {
                503 if self.service.down_during(window.0, window.1) => {
                    return match r.field("retry-after") {
                        Some(v) if v.parse::<u32>().is_ok_and(|s| s > 0) => Ok(()),
                        other => Err(format!(
                            "the down service's 503 without a Retry-After in seconds ({other:?})"
                        )),
                    };
                }
                503 => {
                    return Err(
                        "503, but the service was never down while the request was served".into(),
                    )
                }
                504 if record
                    .closed_silent_ms
                    .is_some_and(|ms| ms >= site.gateway_timeout_ms) =>
                {
                    return Ok(())
                }
                504 => {
                    return Err(format!(
                        "504, but no stream of this request was closed after {}ms (timeout \
                         gateway= of the generation it started under) without output while \
                         its process lived ({record:?})",
                        site.gateway_timeout_ms
                    ))
                }
                502 if record.died || self.service.death_during(window.0, window.1) => {
                    return Ok(())
                }
                _ => {}
            }
        } else if e.req.cgi {
            let record = self.gateway.request(e.req.id);
            match r.status {
                503 if record.spawn_exhausted => return Ok(()),
                503 if record.farm_full => {
                    return if r.field("retry-after") == Some("1") {
                        Ok(())
                    } else {
                        Err("the farm's 503 without Retry-After: 1".into())
                    };
                }
                503 => {
                    return Err(
                        "503, but the farm and its queue were never both full while the \
                         request waited, and no spawn failed"
                            .into(),
                    )
                }
                504 if record.idle_kill_before_head => return Ok(()),
                504 => {
                    return Err(format!(
                        "504, but no process of this request was killed after {}ms without \
                         output before its header section was read ({record:?})",
                        self.gateway.timeout_ms
                    ))
                }
                _ => {}
            }
        } else if r.status == 503 && open_faults {
            return Ok(());
        }
        match &e.req.expect {
            Expect::Reject {
                statuses,
                says_close,
                ..
            } => {
                if !statuses.is_empty() && !statuses.contains(&r.status) {
                    return Err(format!("expected one of {statuses:?}"));
                }
                if r.status < 400 {
                    return Err("a hostile request was accepted".into());
                }
                if *says_close && !r.closes() {
                    return Err(
                        "a rejected request must close the connection (Connection: close)".into(),
                    );
                }
                Ok(())
            }
            Expect::Model => {
                let ask = Ask {
                    method: &e.req.method,
                    target: &e.req.target,
                    headers: &e.req.headers,
                    peer: self.peer,
                    open_faults,
                    body: &e.req.body,
                };
                // With the cache on, the answer may come from a version validated up to
                // `revalidate` before the request: widen the window by that much.
                let window_start = match site.cache_revalidate_ms {
                    Some(ms) => Time(from.0.saturating_sub(ms)),
                    None => from,
                };
                let mut predictions =
                    model::predict(site, self.fs, self.tags, &ask, window_start, self.now);
                predictions.retain(|p| self.cut || !p.cut_only);
                if self.cut {
                    for p in &mut predictions {
                        if let Body::Exact(b) = &p.body {
                            p.body = Body::Prefix(b.clone());
                        }
                    }
                }
                let mut why = Vec::new();
                let mut versions = Vec::new();
                for p in &predictions {
                    match matches(p, r) {
                        Ok(()) => versions.push(p.version),
                        Err(m) => why.push(format!("not {} ({}): {m}", p.status, p.why)),
                    }
                }
                if versions.is_empty() {
                    return Err(format!(
                        "the model allows none of it:\n      {}",
                        why.join("\n      ")
                    ));
                }
                persistence(e, r, open_faults || self.half_closed)?;
                let etag = r.field("etag");
                // A tag is bound only when every prediction that fits names one version;
                // otherwise (a HEAD, or a body two versions share) it may name any of them.
                if let (Some(tag), [first, rest @ ..]) = (etag, versions.as_slice()) {
                    if let Some(v) = first.filter(|v| rest.iter().all(|x| *x == Some(*v))) {
                        self.tags.bind(tag, v)?;
                    } else {
                        self.tags
                            .maybe
                            .entry(tag.to_string())
                            .or_default()
                            .extend(versions.iter().flatten());
                    }
                }
                self.memory.remember(etag, r.field("last-modified"));
                Ok(())
            }
        }
    }

    /// `Date` is the time the response was made: between the request and now.
    fn date(&self, e: &Entry, r: &Response) -> Result<(), String> {
        let Some(d) = r.field("date") else {
            return Ok(());
        };
        let Some(secs) = weir_testkit::date::parse_imf_fixdate(d) else {
            return Err(format!("Date {d} is not an IMF-fixdate"));
        };
        let lo = self.unix_base + (e.written_at.0 / 1000) as i64;
        let hi = self.unix_base + (self.now.0 / 1000) as i64;
        if secs < lo || secs > hi {
            return Err(format!("Date {d} is outside the exchange ({lo}..={hi})"));
        }
        Ok(())
    }
}

/// RFC 9112 §9.3 and §9.6: a client that asked to close is told so, an HTTP/1.0 client
/// that asked to keep the connection is told so, and a persistent connection is not
/// closed after an ordinary exchange (a request without a body, which leaves nothing
/// ambiguous on the wire; timeouts, 5xx, a client's half-close and shutdown are other
/// matters).
fn persistence(e: &Entry, r: &Response, excused: bool) -> Result<(), String> {
    let req = &e.req;
    if req.close && !req.http10 && !r.closes() {
        return Err("the client sent Connection: close and the answer does not say close".into());
    }
    if req.http10 && !req.close && !r.closes() {
        let keep = r
            .fields_named("connection")
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("keep-alive"));
        if !keep {
            return Err(
                "an HTTP/1.0 keep-alive request kept open without Connection: keep-alive".into(),
            );
        }
    }
    let bodyless = req.bytes.len() == req.head_len;
    // A body delimited by the close (a script's, for HTTP/1.0) must close.
    let delimited_by_close = req.cgi
        && req.http10
        && r.field("content-length").is_none()
        && r.field("transfer-encoding").is_none();
    if !req.close && bodyless && r.closes() && r.status < 500 && !excused && !delimited_by_close {
        return Err("a persistent connection closed after an ordinary exchange".into());
    }
    Ok(())
}

/// Does `r` match prediction `p`? `Err` says the first difference.
fn matches(p: &Prediction, r: &Response) -> Result<(), String> {
    if p.status != r.status {
        return Err(format!("status {}", r.status));
    }
    for f in &p.fields {
        let ok = match f {
            Field::Is(n, v) => r.fields_named(n).any(|x| x == v),
            Field::OneOf(n, vs) => r.field(n).is_some_and(|x| vs.iter().any(|v| v == x)),
            Field::Prefix(n, pre) => r.field(n).is_some_and(|x| x.starts_with(pre.as_str())),
            Field::Tokens(n, ts) => {
                let have: Vec<String> = r
                    .fields_named(n)
                    .flat_map(|v| v.split(','))
                    .map(|t| t.trim().to_ascii_lowercase())
                    .collect();
                ts.iter().all(|t| have.contains(&t.to_ascii_lowercase()))
            }
            Field::Absent(n) => r.field(n).is_none(),
            Field::Present(n) => r.field(n).is_some(),
            Field::Rule(n, v) => r.fields_named(&n.to_ascii_lowercase()).any(|x| x == v),
        };
        if !ok {
            return Err(format!("field check {f:?} fails"));
        }
    }
    match &p.body {
        Body::Any => Ok(()),
        Body::Empty if r.body.is_empty() => Ok(()),
        Body::Empty => Err(format!("body of {} bytes where none is due", r.body.len())),
        Body::Exact(b) if r.body == b[..] => Ok(()),
        Body::Exact(b) => Err(format!(
            "body differs from the expected {} bytes{}",
            b.len(),
            first_difference(b, &r.body)
        )),
        Body::Prefix(b) if b.starts_with(&r.body) => Ok(()),
        Body::Prefix(b) => Err(format!(
            "body is not a prefix of the expected {} bytes{}",
            b.len(),
            first_difference(b, &r.body)
        )),
        Body::Names(present, absent) => {
            let text = String::from_utf8_lossy(&r.body);
            if let Some(n) = present.iter().find(|n| !text.contains(n.as_str())) {
                return Err(format!("listing lacks {n}"));
            }
            if let Some(n) = absent.iter().find(|n| text.contains(n.as_str())) {
                return Err(format!("listing names {n}, which did not exist"));
            }
            Ok(())
        }
        Body::Multipart(parts, len) => {
            parse::multipart(&r.body, r.field("content-type").unwrap_or(""), parts, *len)
        }
    }
}

fn first_difference(want: &[u8], got: &[u8]) -> String {
    match want.iter().zip(got).position(|(a, b)| a != b) {
        Some(i) => format!(" (first difference at byte {i})"),
        None => format!(" (got {} bytes)", got.len()),
    }
}
