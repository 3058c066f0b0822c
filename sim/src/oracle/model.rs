//! The reference model: what weir should answer, written from DESIGN.md §3.2 and §4 and
//! the RFCs, not from the core's code.
//!
//! # Theory of operation
//!
//! The model is deliberately small and deliberately separate. It reads the rules as the
//! workload generator wrote them (its own `Rule` type, not the core's parsed one), the
//! simulated file system's history, and the request as the client wrote it, and it lists
//! every response that would be correct. There is more than one when files changed while
//! the request was in flight: each state the path was in during the request's window
//! (from the end of its head's delivery to the first byte of its answer) gives one
//! prediction, and the response must match one of them, whole — status, the header fields
//! that matter, and a body equal to one version (or to the right ranges of it).
//!
//! ```text
//!   target ─► normalise (400) ─► rules: map / header / protect … pass / fail / redirect /
//!             status ─► protections (403, then a login's 401; a password check may
//!             also give 429) ─► method (405, OPTIONS) ─► file state:
//!             missing 404 · denied 403 · dir: no slash 301, else welcome files, else 403 ·
//!             file: Accept (406) ─► .gz variant ─► If-Match (412) ─► If-None-Match /
//!             If-Modified-Since (304) ─► Range (206 / 416) ─► 200
//! ```
//!
//! A request the rules send to a CGI script (`exec`) is predicted from the script's
//! name, which says what it does (`workload::Script`), and from DESIGN.md §4 and RFC 3875
//! §6: a valid header section and body → 200 with exactly the body the script wrote (for
//! `echo`, the request body); bad output (no blank line, an invalid field, a bare CR, no
//! `Content-Type`, a section over the limit) or an exit before the header section ends →
//! 502; a script that does not exist → 404, one that may not be run → 403. What depends on
//! timing rather than on the script — the farm's 503, the `gateway` timeout's 504 or cut
//! connection — is judged against the world's record (`judge`), not predicted here. A
//! prediction marked `cut_only` is a response that can only look complete because the
//! connection that delimits it was cut (HTTP/1.0, no length).
//!
//! What the model does not know it does not check: error page bodies, the status page's
//! counters, the exact `Allow` order.

use core::net::Ipv4Addr;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::fs::{SimFs, State};
use weir_core::Time;

/// A rule template: a path with at most one `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tpl(pub String);

impl Tpl {
    /// What `*` matched, if `path` matches (empty for an exact template).
    #[must_use]
    pub fn matches<'p>(&self, path: &'p str) -> Option<&'p str> {
        match self.0.split_once('*') {
            None => (path == self.0).then_some(""),
            Some((pre, suf)) => (path.len() >= pre.len() + suf.len()
                && path.starts_with(pre)
                && path.ends_with(suf))
            .then(|| &path[pre.len()..path.len() - suf.len()]),
        }
    }
}

/// An IPv4 network for `protect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    /// Network address.
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub bits: u8,
}

impl Net {
    fn contains(self, ip: Ipv4Addr) -> bool {
        let mask = if self.bits == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.bits))
        };
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }
}

/// One rule, as the workload generator wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// `map TEMPLATE RESULT`
    Map(Tpl, String),
    /// `pass TEMPLATE [RESULT]`
    Pass(Tpl, Option<String>),
    /// `fail TEMPLATE [STATUS]`
    Fail(Tpl, Option<u16>),
    /// `redirect TEMPLATE URL [STATUS]`
    Redirect(Tpl, String, Option<u16>),
    /// `header TEMPLATE NAME VALUE`
    Header(Tpl, String, String),
    /// `protect TEMPLATE allow=… deny=…`
    Protect(Tpl, Vec<Net>, Vec<Net>),
    /// `protect TEMPLATE users=users realm=Sim`: Basic credentials checked against the
    /// simulated users file ([`crate::workload::USERS`]: alice, password `secret`).
    Login(Tpl),
    /// `status TEMPLATE`
    Status(Tpl),
    /// `exec TEMPLATE SCRIPT` (SCRIPT with one `*`, for the first segment `*` matched)
    Exec(Tpl, String),
    /// `exec TEMPLATE service=NAME`: the first segment `*` matched names the program the
    /// service runs (`workload::Script`, as for scripts).
    Service(Tpl, String),
}

/// The site's FastCGI service (`service NAME connect=unix:SOCKET connections=N`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSite {
    /// Its name.
    pub name: String,
    /// The socket it is reached at in this generation.
    pub socket: String,
    /// `connections=`.
    pub connections: usize,
    /// Even generations move it to the other socket.
    pub moves: bool,
}

/// The site the model reasons about.
#[derive(Clone, Debug)]
pub struct Site {
    /// The root directory (absolute, no trailing slash).
    pub root: String,
    /// Rules in order.
    pub rules: Vec<Rule>,
    /// Welcome file names in order.
    pub welcome: Vec<String>,
    /// `type` overrides: suffix with its dot → media type.
    pub types: Vec<(String, String)>,
    /// `listing on`.
    pub listing: bool,
    /// The document cache's `revalidate` time in milliseconds, `None` with `cache off`.
    /// A cached answer may show any version current up to this long before the request
    /// (README: "a change shows within `revalidate`").
    pub cache_revalidate_ms: Option<u64>,
    /// The FastCGI service, if the site declares one.
    pub service: Option<ServiceSite>,
    /// `timeout gateway=`, in ms.
    pub gateway_timeout_ms: u64,
    /// Even generations double it (`Options::gateway_moves`).
    pub gateway_moves: bool,
}

/// What the rules decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routed {
    /// Serve `rel` (relative to the root; a trailing `/` names a directory).
    File(String),
    /// Answer this status.
    Fail(u16),
    /// Redirect.
    Redirect(String, u16),
    /// The counters page.
    Status,
    /// No stopping rule matched.
    NotFound,
    /// A protection refused the address, or the file would leave its directory.
    Forbidden,
    /// A `Login` rule wants credentials that were missing or wrong.
    Unauthorized,
    /// Run the script `rel` (relative to the root).
    Cgi(String),
    /// Hand the request to the service, whose program is this name.
    Service(String),
}

/// What the request's `Authorization` field says, for a `Login` rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Creds {
    /// None, or not Basic credentials: refused without a check.
    Missing,
    /// alice's password.
    Good,
    /// Well-formed, but a wrong password or an unknown user: refused after a check.
    Bad,
}

impl Creds {
    /// Reads the request's `Authorization` field (the workload sends only the values in
    /// [`crate::workload::AUTHORIZATIONS`]).
    #[must_use]
    pub fn of(headers: &[(String, String)]) -> Creds {
        let field = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.as_str());
        match field {
            Some(crate::workload::AUTH_GOOD) => Creds::Good,
            Some(v) if crate::workload::AUTH_BAD.contains(&v) => Creds::Bad,
            _ => Creds::Missing,
        }
    }
}

/// Whether routing needed a password check (then the server may also answer 429: the
/// client's address had too many checks waiting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// No `Login` rule applied, or it refused without a check.
    None,
    /// A check was made; `true` if it let the user in.
    Made(bool),
}

/// Normalises a request target (DESIGN.md §3.2): `Some((path, query))`, or `None` where
/// the server must answer 400. Besides DESIGN.md's rules: a fragment (RFC 9112 §3.2), and
/// after the one decoding a backslash, a `.`/`..` segment with `;` parameters, or a
/// leftover escape of `.`, `/`, `\`, `%` or a control byte (double encoding). Overlong
/// UTF-8 is refused with any other byte string that is not UTF-8 (the model keeps text).
#[must_use]
pub fn normalize(target: &str) -> Option<(String, Option<String>)> {
    if target.contains('#') {
        return None;
    }
    let rest = if target.starts_with('/') {
        target
    } else if let Some(after) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        match after.find('/') {
            Some(i) => &after[i..],
            None => "/",
        }
    } else {
        return None;
    };
    let (raw, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (rest, None),
    };
    let mut decoded = Vec::new();
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            if v == b'/' {
                return None;
            }
            decoded.push(v);
            i += 3;
        } else {
            decoded.push(b[i]);
            i += 1;
        }
    }
    if decoded.iter().any(|&c| c < 0x20 || c == 0x7f) {
        return None;
    }
    let text = String::from_utf8(decoded).ok()?;
    let double = |i: usize| {
        let hex = text.get(i + 1..i + 3)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u8::from_str_radix(hex, 16).ok()
    };
    let refused = text.contains('\\')
        || text
            .split('/')
            .any(|seg| seg.starts_with(".;") || seg.starts_with("..;"))
        || text.match_indices('%').any(|(i, _)| {
            double(i).is_some_and(|v| b"./\\%".contains(&v) || v < 0x20 || v == 0x7f)
        });
    if refused {
        return None;
    }
    let segments: Vec<&str> = text.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::new();
    let mut trailing = false;
    for (n, seg) in segments.iter().enumerate() {
        let last = n + 1 == segments.len();
        match *seg {
            "" => trailing = last,
            "." => trailing = last,
            ".." => {
                out.pop()?;
                trailing = last;
            }
            s => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let mut path = String::from("/");
    path.push_str(&out.join("/"));
    if trailing && !out.is_empty() {
        path.push('/');
    }
    Some((path, query))
}

/// Applies the rules to a normalised path (DESIGN.md §3.2).
#[must_use]
pub fn route(
    site: &Site,
    path: &str,
    query: Option<&str>,
    peer: Ipv4Addr,
    creds: Creds,
) -> (Routed, Vec<(String, String)>, Check) {
    let mut path = path.to_string();
    let mut headers = Vec::new();
    let mut refused = false;
    let mut login = false;
    let mut outcome = Routed::NotFound;
    for rule in &site.rules {
        match rule {
            Rule::Map(t, result) => {
                if let Some(star) = t.matches(&path) {
                    path = result.replace('*', star);
                }
            }
            Rule::Header(t, name, value) => {
                if t.matches(&path).is_some() {
                    headers.push((name.clone(), value.clone()));
                }
            }
            Rule::Protect(t, allow, deny) => {
                if t.matches(&path).is_some() {
                    let denied = deny.iter().any(|n| n.contains(peer));
                    let allowed = allow.is_empty() || allow.iter().any(|n| n.contains(peer));
                    refused |= denied || !allowed;
                }
            }
            Rule::Login(t) => login |= t.matches(&path).is_some(),
            Rule::Pass(t, result) => {
                if let Some(star) = t.matches(&path) {
                    outcome = pass(&path, star, result.as_deref());
                    break;
                }
            }
            Rule::Fail(t, status) => {
                if t.matches(&path).is_some() {
                    outcome = Routed::Fail(status.unwrap_or(403));
                    break;
                }
            }
            Rule::Redirect(t, url, status) => {
                if let Some(star) = t.matches(&path) {
                    let mut location = url.replace('*', star);
                    if let Some(q) = query {
                        location.push(if location.contains('?') { '&' } else { '?' });
                        location.push_str(q);
                    }
                    outcome = Routed::Redirect(location, status.unwrap_or(302));
                    break;
                }
            }
            Rule::Status(t) => {
                if t.matches(&path).is_some() {
                    outcome = Routed::Status;
                    break;
                }
            }
            Rule::Exec(t, script) => {
                if let Some(star) = t.matches(&path) {
                    let name = star.split('/').next().unwrap_or("");
                    outcome = Routed::Cgi(script.replace('*', name));
                    break;
                }
            }
            Rule::Service(t, _) => {
                if let Some(star) = t.matches(&path) {
                    let name = star.split('/').next().unwrap_or("");
                    outcome = Routed::Service(name.to_string());
                    break;
                }
            }
        }
    }
    // Addresses first (403), then credentials (401), which override even an escaping
    // path's 403; a 404 stays a 404.
    let mut check = Check::None;
    if outcome != Routed::NotFound {
        if refused {
            outcome = Routed::Forbidden;
        } else if login {
            if creds != Creds::Missing {
                check = Check::Made(creds == Creds::Good);
            }
            if creds != Creds::Good {
                outcome = Routed::Unauthorized;
            }
        }
    }
    (outcome, headers, check)
}

/// `pass`: the file, confined to the directory its result names before the `*`.
fn pass(path: &str, star: &str, result: Option<&str>) -> Routed {
    let (file, dir) = match result {
        None => (path.trim_start_matches('/').to_string(), String::new()),
        Some(r) => {
            let before = r.split('*').next().unwrap_or(r);
            let dir = before.rfind('/').map_or("", |i| &before[..=i]);
            (r.replace('*', star), dir.to_string())
        }
    };
    // Lexically: a `..` that climbs out of the confinement directory is refused.
    let mut depth: Vec<&str> = Vec::new();
    for seg in file.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if depth.pop().is_none() {
                    return Routed::Forbidden;
                }
            }
            s => depth.push(s),
        }
    }
    let clean = depth.join("/");
    if !format!("{clean}/").starts_with(dir.trim_start_matches('/')) && !dir.is_empty() {
        return Routed::Forbidden;
    }
    let slash = path.ends_with('/') && result.is_none_or(|r| r.ends_with('*') || r.ends_with('/'));
    Routed::File(if slash && !clean.is_empty() {
        format!("{clean}/")
    } else {
        clean
    })
}

/// One check on a response header field (names compare case-insensitively).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// Some field `name` has exactly this value.
    Is(&'static str, String),
    /// The field's value is one of these.
    OneOf(&'static str, Vec<String>),
    /// The field's value starts with this.
    Prefix(&'static str, String),
    /// The comma-separated field holds every one of these tokens (any case).
    Tokens(&'static str, Vec<&'static str>),
    /// No field with this name.
    Absent(&'static str),
    /// Some field with this name.
    Present(&'static str),
    /// A field added by a `header` rule (any name).
    Rule(String, String),
}

/// What a body must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Anything well framed.
    Any,
    /// Nothing.
    Empty,
    /// Exactly these bytes.
    Exact(Bytes),
    /// A prefix of these bytes (a body cut short with its connection).
    Prefix(Bytes),
    /// multipart/byteranges with these parts in order: (first, last, bytes), of a document
    /// of `len` bytes.
    Multipart(Vec<(u64, u64, Bytes)>, u64),
    /// Text that contains every string of the first list and none of the second.
    Names(Vec<String>, Vec<String>),
}

/// One correct response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prediction {
    /// The status.
    pub status: u16,
    /// Header checks.
    pub fields: Vec<Field>,
    /// The body.
    pub body: Body,
    /// The file version shown, for the entity-tag book.
    pub version: Option<u64>,
    /// Only a response whose end is the connection's cut can look like this.
    pub cut_only: bool,
    /// How the model got here, for failure reports.
    pub why: String,
}

impl Prediction {
    fn new(status: u16, why: impl Into<String>) -> Prediction {
        Prediction {
            status,
            fields: Vec::new(),
            body: Body::Any,
            version: None,
            cut_only: false,
            why: why.into(),
        }
    }
}

/// Entity tags seen so far, both ways (each version must have one tag, each tag one
/// version), so that a conditional request's tag can be traced back to its version.
#[derive(Debug, Default)]
pub struct TagBook {
    /// Tag → inode.
    pub by_tag: BTreeMap<String, u64>,
    /// Inode → tag.
    pub by_version: BTreeMap<u64, String>,
    /// Tags served with a body that several versions share (two empty files, say), not
    /// bound yet: the versions each may name.
    pub maybe: BTreeMap<String, BTreeSet<u64>>,
}

impl TagBook {
    /// Records that `version` has `tag`; an error if that contradicts what was seen.
    pub fn bind(&mut self, tag: &str, version: u64) -> Result<(), String> {
        if let Some(v) = self.by_tag.get(tag) {
            if *v != version {
                return Err(format!(
                    "entity tag {tag} names two versions (inodes {v} and {version})"
                ));
            }
        }
        if let Some(t) = self.by_version.get(&version) {
            if t != tag {
                return Err(format!(
                    "version inode {version} has two entity tags ({t} and {tag})"
                ));
            }
        }
        self.by_tag.insert(tag.to_string(), version);
        self.by_version.insert(version, tag.to_string());
        Ok(())
    }
}

/// A request as the model sees it.
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    /// The method token as sent.
    pub method: &'a str,
    /// The target as sent.
    pub target: &'a str,
    /// Header fields as sent.
    pub headers: &'a [(String, String)],
    /// The client's address.
    pub peer: Ipv4Addr,
    /// Some `Open` failed for want of descriptors while the request was served: a
    /// precompressed variant may then have been skipped.
    pub open_faults: bool,
    /// The request body, decoded.
    pub body: &'a [u8],
}

impl Ask<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

const KNOWN_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PATCH",
];

/// Every correct response to `ask`, given the file states during `[from, to]`.
#[must_use]
pub fn predict(
    site: &Site,
    fs: &SimFs,
    tags: &TagBook,
    ask: &Ask<'_>,
    from: Time,
    to: Time,
) -> Vec<Prediction> {
    if !KNOWN_METHODS.contains(&ask.method) {
        return vec![Prediction::new(501, "unknown method")];
    }
    if matches!(ask.method, "TRACE" | "CONNECT") {
        return vec![allow(Prediction::new(405, "TRACE is never allowed"))];
    }
    if ask.target == "*" {
        return vec![if ask.method == "OPTIONS" {
            allow(Prediction::new(200, "OPTIONS *"))
        } else {
            Prediction::new(400, "* is only for OPTIONS")
        }];
    }
    let Some((path, query)) = normalize(ask.target) else {
        return vec![Prediction::new(400, "target does not normalise")];
    };
    let (routed, rule_headers, check) = route(
        site,
        &path,
        query.as_deref(),
        ask.peer,
        Creds::of(ask.headers),
    );
    let mut out = match routed {
        Routed::Fail(s) => vec![Prediction::new(s, "fail rule")],
        Routed::Forbidden => vec![Prediction::new(403, "protected or escaping")],
        Routed::Unauthorized => {
            let mut p = Prediction::new(401, "login rule, credentials missing or wrong");
            p.fields.push(Field::Is(
                "www-authenticate",
                "Basic realm=\"Sim\", charset=\"UTF-8\"".into(),
            ));
            vec![p]
        }
        Routed::NotFound => vec![Prediction::new(404, "no stopping rule")],
        Routed::Redirect(location, s) => {
            let mut p = Prediction::new(s, "redirect rule");
            p.fields.push(Field::Is("location", location));
            vec![p]
        }
        Routed::Status => {
            let mut p = Prediction::new(200, "status rule");
            p.fields.push(Field::Is("cache-control", "no-store".into()));
            let mut refused = Prediction::new(405, "status rule, not GET");
            refused.fields.push(Field::Present("allow"));
            if matches!(ask.method, "GET" | "HEAD") {
                vec![p]
            } else {
                vec![p, refused]
            }
        }
        Routed::File(rel) => match ask.method {
            "GET" | "HEAD" => {
                document(site, fs, tags, ask, &path, query.as_deref(), &rel, from, to)
            }
            "OPTIONS" => vec![allow(Prediction::new(200, "OPTIONS on a document"))],
            _ => vec![allow(Prediction::new(405, "documents take GET and HEAD"))],
        },
        Routed::Cgi(rel) => {
            let key = rel.trim_end_matches('/');
            let mut out = Vec::new();
            for state in fs.states_during(key, from, to) {
                match state {
                    State::Missing => out.push(Prediction::new(404, format!("no script {rel}"))),
                    State::Denied | State::Dir(_) => {
                        out.push(Prediction::new(403, format!("{rel} may not be run")));
                    }
                    State::File(_) => {
                        let name = key.rsplit('/').next().unwrap_or("");
                        out.extend(script(name, ask, query.as_deref()));
                    }
                }
            }
            out
        }
        Routed::Service(name) => match &site.service {
            Some(svc) => service(&name, svc, ask, query.as_deref()),
            None => vec![Prediction::new(500, "a service rule without a service")],
        },
    };
    if check != Check::None {
        // Its address had too many password checks in flight and waiting.
        let mut p = Prediction::new(429, "too many password checks from this address");
        p.fields.push(Field::Is("retry-after", "1".into()));
        out.push(p);
    }
    for p in &mut out {
        for (n, v) in &rule_headers {
            p.fields.push(Field::Rule(n.clone(), v.clone()));
        }
    }
    out
}

/// What a script's answer is when it runs undisturbed (RFC 3875 §6, DESIGN.md §4).
fn script(name: &str, ask: &Ask<'_>, query: Option<&str>) -> Vec<Prediction> {
    use crate::workload::{flood_body, query_n, Script, N_DEFAULT, SCRIPT_TYPE};
    let Some(kind) = Script::by_name(name) else {
        return vec![Prediction::new(
            500,
            format!("cgi-bin/{name} is not a script"),
        )];
    };
    let n = query.and_then(query_n).unwrap_or(N_DEFAULT);
    let head = ask.method == "HEAD";
    let document = |why: &str, body: Bytes, len: Option<usize>| {
        let mut p = Prediction::new(200, format!("cgi-bin/{name}: {why}"));
        p.fields.push(Field::Is("content-type", SCRIPT_TYPE.into()));
        p.fields.push(Field::Is("x-sim-script", name.into()));
        if let Some(l) = len.filter(|_| !head) {
            p.fields.push(Field::Is("content-length", l.to_string()));
        }
        p.body = if head { Body::Empty } else { Body::Exact(body) };
        p
    };
    // A document that never ends: only a response delimited by the connection's close,
    // cut, can look complete, and then shows a prefix of what was written.
    let unending = |why: &str, written: Bytes| {
        let mut p = document(why, Bytes::new(), None);
        if !head {
            p.body = Body::Prefix(written);
            p.cut_only = true;
        }
        p
    };
    let echoed = Bytes::copy_from_slice(ask.body);
    match kind {
        Script::Echo { len } => {
            let l = len.then_some(echoed.len());
            vec![document("the request body echoed", echoed, l)]
        }
        Script::EchoStream => vec![document("the request body streamed back", echoed, None)],
        Script::Flood { len } => vec![document("a flood", flood_body(n), len.then_some(n))],
        Script::Stall => Vec::new(),
        Script::StallBody { len } => {
            vec![unending("part of a body, then silence", flood_body(n)).len_if(len, n)]
        }
        Script::CrashHead => vec![Prediction::new(
            502,
            "the script died in its header section",
        )],
        Script::CrashBody { len: false } => vec![document(
            "the script died in its body: its output ended there",
            flood_body(n),
            None,
        )],
        Script::CrashBody { len: true } => {
            vec![
                unending("the script died short of its Content-Length", flood_body(n))
                    .len_if(true, 2 * n + 10),
            ]
        }
        Script::Bad(b) => vec![Prediction::new(502, format!("bad output: {b:?}"))],
    }
}

/// What the service's answer is when its program runs undisturbed: a script's (the same
/// programs, `script`), told apart by `X-Sim-Service` (the server at the socket of the
/// request's generation), except that the end of the stream is no end of the response
/// for FastCGI (END_REQUEST is): a program that dies in its body leaves a response only a
/// cut connection can delimit. A name the service does not know it answers 404.
fn service(name: &str, svc: &ServiceSite, ask: &Ask<'_>, query: Option<&str>) -> Vec<Prediction> {
    use crate::workload::{flood_body, query_n, Script, N_DEFAULT};
    let instance = crate::services::instance_of(&svc.socket);
    let n = query.and_then(query_n).unwrap_or(N_DEFAULT);
    let mut out = match Script::by_name(name) {
        None => {
            let mut p = Prediction::new(404, format!("service: no program {name}"));
            p.fields.push(Field::Is("x-sim-script", name.into()));
            vec![p]
        }
        Some(Script::CrashBody { len }) => {
            let mut p = Prediction::new(200, format!("service {name}: died in its body"));
            p.fields.push(Field::Is(
                "content-type",
                crate::workload::SCRIPT_TYPE.into(),
            ));
            p.fields.push(Field::Is("x-sim-script", name.into()));
            if ask.method == "HEAD" {
                p.body = Body::Empty;
            } else {
                p.body = Body::Prefix(flood_body(n));
                p.cut_only = true;
            }
            vec![p.len_if(len, 2 * n + 10)]
        }
        Some(_) => script(name, ask, query),
    };
    for p in &mut out {
        if p.status != 502 {
            p.fields.push(Field::Is("x-sim-service", instance.clone()));
        }
        p.why = format!("service at {}: {}", svc.socket, p.why);
    }
    out
}

impl Prediction {
    /// Adds a `Content-Length` check (`len`: the script said it) unless the body is
    /// not the script's (HEAD).
    fn len_if(mut self, len: bool, n: usize) -> Prediction {
        if len && self.body != Body::Empty {
            self.fields.push(Field::Is("content-length", n.to_string()));
        }
        self
    }
}

fn allow(mut p: Prediction) -> Prediction {
    p.fields.push(Field::Tokens("allow", vec!["GET", "HEAD"]));
    p
}

/// A file-system outcome: every state of the path during the window.
#[allow(clippy::too_many_arguments)]
fn document(
    site: &Site,
    fs: &SimFs,
    tags: &TagBook,
    ask: &Ask<'_>,
    url_path: &str,
    query: Option<&str>,
    rel: &str,
    from: Time,
    to: Time,
) -> Vec<Prediction> {
    let slash = rel.ends_with('/') || rel.is_empty();
    let key = rel.trim_end_matches('/');
    let mut out = Vec::new();
    for state in fs.states_during(key, from, to) {
        match state {
            State::Missing => out.push(Prediction::new(404, format!("{rel} missing"))),
            State::Denied => out.push(Prediction::new(403, format!("{rel} unreadable"))),
            State::File(_) if slash => {
                out.push(Prediction::new(
                    404,
                    format!("{rel} is a file, not a directory"),
                ));
            }
            State::File(v) => out.extend(file(site, fs, tags, ask, rel, v, from, to)),
            State::Dir(_) if !slash => {
                let mut location = format!("{url_path}/");
                if let Some(q) = query {
                    location.push('?');
                    location.push_str(q);
                }
                let mut p = Prediction::new(301, format!("{rel} is a directory"));
                p.fields.push(Field::Is("location", location));
                out.push(p);
            }
            State::Dir(_) => out.extend(welcome(site, fs, tags, ask, key, 0, from, to)),
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn welcome(
    site: &Site,
    fs: &SimFs,
    tags: &TagBook,
    ask: &Ask<'_>,
    dir: &str,
    i: usize,
    from: Time,
    to: Time,
) -> Vec<Prediction> {
    let Some(name) = site.welcome.get(i) else {
        if site.listing {
            return vec![listing(fs, ask, dir, from, to)];
        }
        return vec![Prediction::new(403, format!("{dir}/ has no welcome file"))];
    };
    let rel = if dir.is_empty() {
        name.clone()
    } else {
        format!("{dir}/{name}")
    };
    let mut out = Vec::new();
    for state in fs.states_during(&rel, from, to) {
        match state {
            State::Missing => out.extend(welcome(site, fs, tags, ask, dir, i + 1, from, to)),
            State::File(v) => out.extend(file(site, fs, tags, ask, &rel, v, from, to)),
            State::Dir(_) | State::Denied => {
                out.push(Prediction::new(403, format!("welcome {rel} not servable")));
            }
        }
    }
    out
}

/// A directory listing (DESIGN.md §4: "else a listing when on"): an HTML page that names
/// every entry present throughout the window and none absent throughout it, each quoted
/// as a link target (`"name"`, `"name/"` for a directory).
fn listing(fs: &SimFs, ask: &Ask<'_>, dir: &str, from: Time, to: Time) -> Prediction {
    let mut p = Prediction::new(200, format!("listing of {dir}/"));
    p.fields
        .push(Field::Is("content-type", "text/html; charset=utf-8".into()));
    if ask.method == "HEAD" {
        p.body = Body::Empty;
        return p;
    }
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for (name, states) in fs.children(dir, from, to) {
        let quoted = |s: &State| match s {
            State::Dir(_) => format!("\"{name}/\""),
            _ => format!("\"{name}\""),
        };
        if states.iter().all(|s| *s == State::Missing) {
            absent.push(format!("\"{name}\""));
        } else if !states.contains(&State::Missing) {
            present.push(quoted(&states[0]));
        }
    }
    p.body = Body::Names(present, absent);
    p
}

/// The media type for a file name (the suffixes the simulation uses).
#[must_use]
pub fn media_types(rel: &str, site: &Site) -> Vec<String> {
    let ext = rel.rsplit_once('.').map(|(_, e)| format!(".{e}"));
    if let Some(t) = site
        .types
        .iter()
        .find(|(s, _)| Some(s) == ext.as_ref())
        .map(|(_, t)| t.clone())
    {
        return vec![t];
    }
    let list: &[&str] = match ext.as_deref() {
        Some(".txt") => &["text/plain; charset=utf-8"],
        Some(".html" | ".htm") => &["text/html; charset=utf-8"],
        Some(".css") => &["text/css; charset=utf-8"],
        Some(".js") => &[
            "text/javascript; charset=utf-8",
            "application/javascript; charset=utf-8",
        ],
        Some(".png") => &["image/png"],
        _ => &["application/octet-stream"],
    };
    list.iter().map(|s| s.to_string()).collect()
}

fn compressible(mime: &str) -> bool {
    let base = mime.split(';').next().unwrap_or("").trim();
    base.starts_with("text/") || base == "application/javascript"
}

/// `(item, q in thousandths)` for a list field like `Accept`.
fn q_items(value: &str) -> Vec<(String, u32)> {
    value
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let name = parts.next()?.trim().to_ascii_lowercase();
            if name.is_empty() {
                return None;
            }
            let mut q = 1000;
            for p in parts {
                if let Some(v) = p.trim().strip_prefix("q=") {
                    q = (v.parse::<f64>().unwrap_or(0.0) * 1000.0).round() as u32;
                }
            }
            Some((name, q))
        })
        .collect()
}

/// OSU's rule: the most specific matching media range decides; none, or q=0 → excluded.
fn accept_allows(accept: &str, mime: &str) -> bool {
    let base = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (ty, _) = base.split_once('/').unwrap_or((&base, ""));
    let mut best: Option<(u8, u32)> = None;
    for (range, q) in q_items(accept) {
        let specificity = if range == base {
            2
        } else if range == format!("{ty}/*") {
            1
        } else if range == "*/*" {
            0
        } else {
            continue;
        };
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, q));
        }
    }
    best.is_some_and(|(_, q)| q > 0)
}

/// Does `Accept-Encoding` let the server pick the gzip variant?
fn gzip_accepted(value: Option<&str>) -> bool {
    let Some(v) = value else { return false };
    let items = q_items(v);
    match items.iter().find(|(n, _)| n == "gzip") {
        Some((_, q)) => *q > 0,
        None => items.iter().any(|(n, q)| n == "*" && *q > 0),
    }
}

/// A regular file `rel` in version `v`: Accept, then the variant, then the document.
#[allow(clippy::too_many_arguments)]
fn file(
    site: &Site,
    fs: &SimFs,
    tags: &TagBook,
    ask: &Ask<'_>,
    rel: &str,
    v: u64,
    from: Time,
    to: Time,
) -> Vec<Prediction> {
    let mut out = Vec::new();
    // More than one only where the suffix table itself is ambiguous (`.js`).
    for mime in media_types(rel, site) {
        if ask.method == "GET"
            && ask
                .header("accept")
                .is_some_and(|a| !accept_allows(a, &mime))
        {
            out.push(Prediction::new(406, format!("Accept excludes {mime}")));
            continue;
        }
        let vary = compressible(&mime);
        let mut served = vec![(v, None)];
        if vary && gzip_accepted(ask.header("accept-encoding")) {
            served = fs
                .states_during(&format!("{rel}.gz"), from, to)
                .into_iter()
                .map(|s| match s {
                    State::File(g) => (g, Some("gzip")),
                    _ => (v, None),
                })
                .collect();
            if ask.open_faults {
                served.push((v, None));
            }
            served.dedup();
        }
        for (x, coding) in served {
            out.extend(answer(fs, tags, ask, x, &mime, coding, vary));
        }
    }
    out
}

pub use weir_testkit::date::http_date;

fn parse_date(text: &str) -> Option<i64> {
    weir_testkit::date::parse_http_date(text.trim())
}

/// What `Range` asks of a document of `len` bytes (RFC 9110 §14).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ranges {
    Whole,
    Unsatisfiable,
    /// Satisfiable ranges (inclusive) and how many were asked for.
    Some(Vec<(u64, u64)>, usize),
}

fn ranges(spec: &str, len: u64) -> Ranges {
    let spec = spec.trim();
    let Some(set) = spec
        .get(..6)
        .filter(|u| u.eq_ignore_ascii_case("bytes="))
        .map(|_| &spec[6..])
    else {
        return Ranges::Whole;
    };
    let parts: Vec<&str> = set.split(',').map(str::trim).collect();
    if parts.len() > 32 {
        return Ranges::Whole;
    }
    let mut out = Vec::new();
    for part in &parts {
        let Some((a, b)) = part.split_once('-') else {
            return Ranges::Whole;
        };
        if a.is_empty() {
            let Ok(n) = b.parse::<u64>() else {
                return Ranges::Whole;
            };
            if n > 0 && len > 0 {
                out.push((len - n.min(len), len - 1));
            }
            continue;
        }
        let Ok(first) = a.parse::<u64>() else {
            return Ranges::Whole;
        };
        let last = if b.is_empty() {
            u64::MAX
        } else {
            match b.parse::<u64>() {
                Ok(l) if l >= first => l,
                _ => return Ranges::Whole,
            }
        };
        if first < len {
            out.push((first, last.min(len - 1)));
        }
    }
    if out.is_empty() {
        Ranges::Unsatisfiable
    } else {
        Ranges::Some(out, parts.len())
    }
}

/// The document answer for version `x` (RFC 9110 §13.2.2 order, then §14).
#[allow(clippy::too_many_arguments)]
fn answer(
    fs: &SimFs,
    tags: &TagBook,
    ask: &Ask<'_>,
    x: u64,
    mime: &str,
    coding: Option<&str>,
    vary: bool,
) -> Vec<Prediction> {
    // unwrap: the file system names only versions it wrote.
    let ver = fs.version(x).unwrap();
    let len = ver.len() as u64;
    let why = format!(
        "{} inode {x}, {len} bytes{}",
        ver.path,
        coding.map_or(String::new(), |c| format!(", {c}"))
    );
    let names_x = |list: &str, weak: bool| {
        list.split(',').map(str::trim).any(|t| {
            let t = if weak { t.trim_start_matches("W/") } else { t };
            t == "*" || tags.by_tag.get(t) == Some(&x)
        })
    };
    let validators = |p: &mut Prediction| {
        p.fields
            .push(Field::Is("last-modified", http_date(ver.mtime.0)));
        p.fields.push(Field::Present("etag"));
        if let Some(tag) = tags.by_version.get(&x) {
            p.fields.push(Field::Is("etag", tag.clone()));
        }
        p.fields.push(if vary {
            Field::Tokens("vary", vec!["Accept-Encoding"])
        } else {
            Field::Absent("vary")
        });
        p.version = Some(x);
    };
    // A tag the book has not bound to one version (two versions served with it were
    // alike in every byte the clients saw, such as two empty files) may name this
    // version or not: then both outcomes of the condition are allowed.
    let unsure = |list: &str| {
        list.split(',').map(str::trim).any(|t| {
            let t = t.trim_start_matches("W/");
            !tags.by_tag.contains_key(t) && tags.maybe.get(t).is_some_and(|v| v.contains(&x))
        })
    };
    let mut also = Vec::new();
    if let Some(im) = ask.header("if-match") {
        if !names_x(im, false) {
            let p = Prediction::new(412, format!("{why}: If-Match fails"));
            if !unsure(im) {
                return vec![p];
            }
            also.push(p);
        }
    }
    let not_modified = match ask.header("if-none-match") {
        Some(inm) => names_x(inm, true),
        None => ask
            .header("if-modified-since")
            .and_then(parse_date)
            .is_some_and(|d| ver.mtime.0 <= d),
    };
    let maybe = ask.header("if-none-match").is_some_and(unsure);
    if not_modified || maybe {
        let mut p = Prediction::new(304, format!("{why}: not modified"));
        validators(&mut p);
        p.body = Body::Empty;
        if not_modified {
            also.push(p);
            return also;
        }
        also.push(p);
    }
    let mut out = (|| -> Vec<Prediction> {
        let mut base = Prediction::new(200, why.clone());
        validators(&mut base);
        base.fields.push(match coding {
            Some(c) => Field::Is("content-encoding", c.to_string()),
            None => Field::Absent("content-encoding"),
        });
        if ask.method == "HEAD" {
            base.fields
                .push(Field::Is("content-type", mime.to_string()));
            base.fields
                .push(Field::Is("content-length", len.to_string()));
            base.body = Body::Empty;
            return vec![base];
        }
        let asked = ask
            .header("range")
            .map_or(Ranges::Whole, |r| ranges(r, len));
        let slice = |f: u64, l: u64| ver.content().slice(f as usize..=l as usize);
        match asked {
            Ranges::Whole => {
                base.fields
                    .push(Field::Is("content-type", mime.to_string()));
                base.body = Body::Exact(ver.content().clone());
                vec![base]
            }
            Ranges::Unsatisfiable => {
                base.status = 416;
                base.why.push_str(": range unsatisfiable");
                base.fields
                    .push(Field::Is("content-range", format!("bytes */{len}")));
                vec![base]
            }
            Ranges::Some(list, asked_for) => {
                let mut out = Vec::new();
                if list.len() == 1 {
                    let (f, l) = list[0];
                    let mut p = base.clone();
                    p.status = 206;
                    p.why.push_str(&format!(": bytes {f}-{l}"));
                    p.fields.push(Field::Is("content-type", mime.to_string()));
                    p.fields
                        .push(Field::Is("content-range", format!("bytes {f}-{l}/{len}")));
                    p.body = Body::Exact(slice(f, l));
                    out.push(p);
                }
                // One satisfiable range out of several may be sent either way (RFC 9110 §14.6).
                if list.len() > 1 || asked_for > 1 {
                    let mut p = base;
                    p.status = 206;
                    p.why.push_str(": multipart");
                    p.fields.push(Field::Prefix(
                        "content-type",
                        "multipart/byteranges; boundary=".into(),
                    ));
                    p.body = Body::Multipart(
                        list.iter().map(|&(f, l)| (f, l, slice(f, l))).collect(),
                        len,
                    );
                    out.push(p);
                }
                out
            }
        }
    })();
    out.append(&mut also);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        let n = |t: &str| normalize(t).map(|(p, q)| (p, q.unwrap_or_default()));
        assert_eq!(
            n("/a//b/./c/../d?x=1"),
            Some(("/a/b/d".into(), "x=1".into()))
        );
        assert_eq!(n("/a/"), Some(("/a/".into(), String::new())));
        assert_eq!(n("/a/.."), Some(("/".into(), String::new())));
        assert_eq!(n("/%61.txt"), Some(("/a.txt".into(), String::new())));
        assert_eq!(n("http://h/x"), Some(("/x".into(), String::new())));
        assert!(n("/../x").is_none());
        assert!(n("/a%2Fb").is_none());
        assert!(n("/a%00").is_none());
        assert!(n("/a%zz").is_none());
        assert!(n("/a.txt#x").is_none());
        assert!(n("/a.txt?q#x").is_none());
        assert!(n("/..%5ca").is_none());
        assert!(n("/a/..;/b").is_none());
        assert!(n("/%252e%252e/a").is_none());
        assert!(n("/%c0%ae%c0%ae/a").is_none());
        assert_eq!(n("/a%2520b"), Some(("/a%20b".into(), String::new())));
    }

    #[test]
    fn a_tag_shared_by_alike_versions_allows_both_outcomes() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let fs = SimFs::new(
            "/sim".into(),
            300,
            &mut rng,
            weir_core::UnixTime(1_700_000_000),
        );
        let crate::fs::State::File(x) = fs.state(std::path::Path::new("/sim/a.txt")) else {
            panic!("a.txt is a file at the start");
        };
        let statuses = |tags: &TagBook, name: &str, tag: &str| {
            let headers = vec![(name.to_string(), tag.to_string())];
            let a = Ask {
                method: "GET",
                target: "/a.txt",
                headers: &headers,
                peer: Ipv4Addr::new(10, 0, 0, 1),
                open_faults: false,
                body: b"",
            };
            let mut s: Vec<u16> = answer(&fs, tags, &a, x, "text/plain", None, false)
                .iter()
                .map(|p| p.status)
                .collect();
            s.sort_unstable();
            s
        };
        let mut tags = TagBook::default();
        // A tag never seen names no version: If-Match fails, If-None-Match does not match.
        assert_eq!(statuses(&tags, "If-Match", "\"t\""), vec![412]);
        assert_eq!(statuses(&tags, "If-None-Match", "\"t\""), vec![200]);
        // Served with a body this version shares with another: either may be meant.
        tags.maybe
            .entry("\"t\"".into())
            .or_default()
            .extend([x, x + 1_000]);
        assert_eq!(statuses(&tags, "If-Match", "\"t\""), vec![200, 412]);
        assert_eq!(statuses(&tags, "If-None-Match", "\"t\""), vec![200, 304]);
        // Bound to this version: the condition is decided.
        tags.bind("\"t\"", x).unwrap();
        assert_eq!(statuses(&tags, "If-Match", "\"t\""), vec![200]);
        assert_eq!(statuses(&tags, "If-None-Match", "\"t\""), vec![304]);
    }

    #[test]
    fn routing() {
        let site = Site {
            cache_revalidate_ms: None,
            service: None,
            gateway_timeout_ms: 1_000,
            gateway_moves: false,
            root: "/sim".into(),
            rules: vec![
                Rule::Map(Tpl("/new/*".into()), "/docs/*".into()),
                Rule::Header(Tpl("/docs/*".into()), "X-A".into(), "1".into()),
                Rule::Redirect(Tpl("/old/*".into()), "/docs/*".into(), Some(301)),
                Rule::Protect(
                    Tpl("/docs/*".into()),
                    vec![],
                    vec![Net {
                        addr: Ipv4Addr::new(192, 168, 0, 0),
                        bits: 16,
                    }],
                ),
                Rule::Pass(Tpl("/static/*".into()), Some("docs/*".into())),
                Rule::Pass(Tpl("/*".into()), None),
            ],
            welcome: vec!["index.html".into()],
            types: vec![],
            listing: false,
        };
        let home = Ipv4Addr::new(10, 0, 0, 1);
        let go = |path, query, peer| {
            let (r, h, _) = route(&site, path, query, peer, Creds::Missing);
            (r, h)
        };
        let (r, h) = go("/new/a.txt", None, home);
        assert_eq!(r, Routed::File("docs/a.txt".into()));
        assert_eq!(h, vec![("X-A".to_string(), "1".to_string())]);
        let (r, _) = go("/new/a.txt", None, Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(r, Routed::Forbidden);
        let (r, _) = go("/old/x", Some("q=1"), home);
        assert_eq!(r, Routed::Redirect("/docs/x?q=1".into(), 301));
        assert_eq!(go("/static/", None, home).0, Routed::File("docs/".into()));
        assert_eq!(go("/", None, home).0, Routed::File(String::new()));
    }

    #[test]
    fn range_sets() {
        assert_eq!(ranges("bytes=2-4", 10), Ranges::Some(vec![(2, 4)], 1));
        assert_eq!(ranges("bytes=-3", 10), Ranges::Some(vec![(7, 9)], 1));
        assert_eq!(ranges("bytes=8-", 10), Ranges::Some(vec![(8, 9)], 1));
        assert_eq!(ranges("bytes=10-", 10), Ranges::Unsatisfiable);
        assert_eq!(ranges("bytes=0-0,20-", 10), Ranges::Some(vec![(0, 0)], 2));
        assert_eq!(ranges("items=0-1", 10), Ranges::Whole);
        assert_eq!(ranges("bytes=5-2", 10), Ranges::Whole);
    }

    #[test]
    fn accept_rules() {
        assert!(accept_allows("*/*", "image/png"));
        assert!(!accept_allows("text/html", "image/png"));
        assert!(!accept_allows(
            "text/*;q=0, */*",
            "text/plain; charset=utf-8"
        ));
        assert!(accept_allows("text/*;q=0, */*", "image/png"));
        assert!(gzip_accepted(Some("br, gzip")));
        assert!(!gzip_accepted(Some("gzip;q=0")));
        assert!(gzip_accepted(Some("*")));
        assert!(!gzip_accepted(Some("identity")));
    }
}
