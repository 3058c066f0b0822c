//! `route`: the one function that decides what a request path means.
//!
//! The server calls it for every request and `weir route` calls it to explain a URL, so the
//! explanation is the decision. It walks the rules in order (global rules, then the host
//! section's), records every rule that matched as a `Step`, and returns the `Outcome`.
//! Protections matched on the way are checked last, against the peer's address and the
//! request's credentials: a protected outcome becomes 403 or 401 instead.
//!
//! Checking a password can be slow (a cost-12 bcrypt takes about 250 ms), so the server's
//! own path, `route_quiet`, does not run it: it returns the outcome the request will have
//! if its passwords check out, with the checks still to make in `Route::checks`
//! (`crate::server` hands them to the shell's verifier threads). `route`, for `weir route`
//! and the tests, makes them at once.

use core::net::IpAddr;
use std::borrow::Cow;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use super::auth::{Credentials, PasswordCheck};
use super::template::substitute;
use super::{Action, Protection, Rule};
use crate::config::{Config, HostSection};

/// What `route` needs to know about a request.
#[derive(Clone, Copy, Debug)]
pub struct RouteRequest<'a> {
    /// The normalised path (see `crate::path`).
    pub path: &'a [u8],
    /// The query string, without `?`.
    pub query: Option<&'a [u8]>,
    /// The request's host (any case, maybe with a port).
    pub host: Option<&'a [u8]>,
    /// The client's address.
    pub peer: IpAddr,
    /// The `Authorization` field, if any.
    pub authorization: Option<&'a [u8]>,
}

/// One rule that matched, for explanations and logs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Step {
    /// The rule's line in the configuration file.
    pub line: usize,
    /// The rule as written.
    pub source: String,
    /// What it did.
    pub note: String,
}

/// What to do with the request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Serve a document from the file system.
    File {
        /// The file-system path.
        path: PathBuf,
        /// The request path that led to it (for redirects and listings).
        url_path: Vec<u8>,
        /// A `search` script for GETs with a query string, if one matches.
        search: Option<PathBuf>,
    },
    /// Answer with this status.
    Fail(u16),
    /// Redirect.
    Redirect {
        /// The `Location`.
        location: String,
        /// 301, 302, 303, 307 or 308.
        status: u16,
    },
    /// Run a CGI script.
    Cgi(Gateway),
    /// Hand the request to a FastCGI service.
    Service {
        /// The service's name.
        name: String,
        /// The gateway variables.
        gateway: Gateway,
    },
    /// Answer with the server's counters.
    Status,
    /// No stopping rule matched.
    NotFound,
    /// A `protect` rule refuses the peer's address.
    Forbidden,
    /// A `protect` rule wants credentials that were missing or wrong.
    Unauthorized {
        /// The realm for `WWW-Authenticate`.
        realm: String,
    },
    /// The rules produced a file path outside the directory its `pass` rule allows.
    Escapes,
}

/// Where a gateway request goes and the CGI variables that say so.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Gateway {
    /// The script (`SCRIPT_FILENAME`), absolute; `None` for a service without one.
    pub script: Option<PathBuf>,
    /// `SCRIPT_NAME`.
    pub script_name: Vec<u8>,
    /// `PATH_INFO` (empty when none).
    pub path_info: Vec<u8>,
    /// Extra variables from the rule (`env=K=V`).
    pub env: Vec<(String, String)>,
}

/// The result of routing: the outcome, the response headers added by `header` rules, and
/// every rule that matched.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// What to do.
    pub outcome: Outcome,
    /// Fields to add to the response.
    pub headers: Vec<(String, String)>,
    /// The user authenticated by a `protect` rule, if any (`REMOTE_USER`).
    pub user: Option<String>,
    /// Password checks still to make, in order, before `outcome` stands (each failure is
    /// a 401 with its realm; when all pass, the last one's user is authenticated). Only
    /// `route_quiet` leaves any: `route` makes them itself.
    pub checks: Vec<PasswordCheck>,
    /// The rules that matched, in order.
    pub steps: Vec<Step>,
}

/// The host section whose names include `host` (compared without its port and
/// case-insensitively), else the `*` section, if any.
fn section_for<'c>(config: &'c Config, host: Option<&[u8]>) -> Option<&'c HostSection> {
    let name = host.map(|h| {
        // Strip a port, minding IPv6 literals: `[::1]:80` → `[::1]`.
        match h.iter().rposition(|&b| b == b':') {
            Some(i) if !h[i..].contains(&b']') => &h[..i],
            _ => h,
        }
    });
    let named = name.and_then(|n| {
        config
            .hosts
            .iter()
            .find(|s| s.names.iter().any(|x| x.as_bytes().eq_ignore_ascii_case(n)))
    });
    named.or_else(|| {
        config
            .hosts
            .iter()
            .find(|s| s.names.iter().any(|x| x == "*"))
    })
}

/// The rules that apply to requests in `section`: global rules, then the section's.
fn rules_in<'c>(
    config: &'c Config,
    section: Option<&'c HostSection>,
) -> impl Iterator<Item = &'c Rule> {
    config
        .rules
        .iter()
        .chain(section.into_iter().flat_map(|s| s.rules.iter()))
}

/// The media type without parameters and surrounding space (`text/html; charset=utf-8`
/// is `text/html`).
fn base_type(m: &str) -> &str {
    match m.as_bytes().iter().position(|&b| b == b';') {
        Some(i) => &m[..i],
        None => m,
    }
    .trim_ascii()
}

/// The `presentation` script for documents of type `mime` on `host`, if a rule names one
/// (compared without parameters: `text/html; charset=utf-8` is `text/html`).
#[must_use]
pub fn presentation_for(config: &Config, host: Option<&[u8]>, mime: &str) -> Option<PathBuf> {
    // Most configurations have no presentation rule: the type is cut only if one is met.
    let mut want = None;
    rules_in(config, section_for(config, host)).find_map(|r| match &r.action {
        Action::Presentation { mime: m, script }
            if base_type(m).eq_ignore_ascii_case(want.get_or_insert_with(|| base_type(mime))) =>
        {
            Some(resolve(config, script.as_bytes()))
        }
        _ => None,
    })
}

/// Routes a request (see the module documentation), recording every rule that matched and
/// checking passwords here and now.
#[must_use]
pub fn route(config: &Config, req: &RouteRequest<'_>) -> Route {
    route_with(config, req, true)
}

/// `route` without the explanation and without the slow part: the same walk, but no
/// `Step`s are written and password checks are returned in `Route::checks` rather than
/// made (the server's per-request path: see the module documentation).
#[must_use]
pub fn route_quiet(config: &Config, req: &RouteRequest<'_>) -> Route {
    route_with(config, req, false)
}

/// `explain` also says who checks passwords: `route` explains and checks them at once,
/// the server's `route_quiet` does neither.
fn route_with(config: &Config, req: &RouteRequest<'_>, explain: bool) -> Route {
    // Borrowed until a `map` rule rewrites it: most requests are never copied here.
    let mut path: Cow<'_, [u8]> = Cow::Borrowed(req.path);
    let mut steps = Vec::new();
    let mut headers = Vec::new();
    let mut protections: Vec<&Protection> = Vec::new();
    let mut outcome = Outcome::NotFound;
    let section = section_for(config, req.host);
    // Formats a step only when someone will read it.
    macro_rules! step {
        ($rule:expr, $note:expr $(,)?) => {
            if explain {
                steps.push(Step {
                    line: $rule.line,
                    source: $rule.source.clone(),
                    note: $note,
                });
            }
        };
    }
    for rule in rules_in(config, section) {
        match &rule.action {
            Action::Map { template, result } => {
                if let Some(star) = template.matches(&path) {
                    let new = substitute(result.as_bytes(), star);
                    step!(
                        rule,
                        format!("path becomes {}", String::from_utf8_lossy(&new)),
                    );
                    path = Cow::Owned(new);
                }
            }
            Action::Protect {
                template,
                protection,
            } => {
                if template.matches(&path).is_some() {
                    step!(rule, format!("protected (realm \"{}\")", protection.realm),);
                    protections.push(protection);
                }
            }
            Action::Header {
                template,
                name,
                value,
            } => {
                if template.matches(&path).is_some() {
                    step!(rule, format!("adds {name}: {value}"));
                    headers.push((name.clone(), value.clone()));
                }
            }
            Action::Pass { template, result } => {
                if let Some(star) = template.matches(&path) {
                    outcome = pass(config, &path, star, result.as_deref());
                    step!(
                        rule,
                        match &outcome {
                            Outcome::File { path: p, .. } => format!("serve file {}", p.display()),
                            _ => "refused: the file would lie outside the directory the rule names"
                                .into(),
                        }
                    );
                    break;
                }
            }
            Action::Fail { template, status } => {
                if template.matches(&path).is_some() {
                    step!(rule, format!("answer {status}"));
                    outcome = Outcome::Fail(*status);
                    break;
                }
            }
            Action::Redirect {
                template,
                url,
                status,
            } => {
                if let Some(star) = template.matches(&path) {
                    let mut location =
                        String::from_utf8_lossy(&substitute(url.as_bytes(), star)).into_owned();
                    if let Some(q) = req.query {
                        location.push(if location.contains('?') { '&' } else { '?' });
                        location.push_str(&String::from_utf8_lossy(q));
                    }
                    step!(rule, format!("redirect {status} to {location}"));
                    outcome = Outcome::Redirect {
                        location,
                        status: *status,
                    };
                    break;
                }
            }
            Action::Exec {
                template,
                script,
                env,
            } => {
                if let Some(star) = template.matches(&path) {
                    let mut gw = cgi_gateway(config, &path, template.prefix.len(), star, script);
                    gw.env.clone_from(env);
                    step!(
                        rule,
                        format!(
                            "run CGI script {}",
                            gw.script.as_deref().unwrap_or(Path::new("")).display()
                        ),
                    );
                    outcome = Outcome::Cgi(gw);
                    break;
                }
            }
            Action::ExecService {
                template,
                service,
                script,
                env,
            } => {
                if let Some(star) = template.matches(&path) {
                    let gateway = match script {
                        Some(s) => Gateway {
                            script: Some(resolve(config, &substitute(s.as_bytes(), star))),
                            script_name: path.to_vec(),
                            path_info: Vec::new(),
                            env: Vec::new(),
                        },
                        None => split_at_star(&path, template.prefix.len(), None),
                    };
                    let mut gateway = gateway;
                    gateway.env.clone_from(env);
                    step!(rule, format!("hand to service {service}"));
                    outcome = Outcome::Service {
                        name: service.clone(),
                        gateway,
                    };
                    break;
                }
            }
            Action::Status { template } => {
                if template.matches(&path).is_some() {
                    step!(rule, "answer with the server's counters".into());
                    outcome = Outcome::Status;
                    break;
                }
            }
            Action::Search { .. } | Action::Presentation { .. } => {}
        }
    }
    if let Outcome::File {
        search, url_path, ..
    } = &mut outcome
    {
        *search = rules_in(config, section).find_map(|r| match &r.action {
            Action::Search { template, script } if template.matches(url_path).is_some() => {
                Some(resolve(config, script.as_bytes()))
            }
            _ => None,
        });
    }
    let mut user = None;
    let mut checks = Vec::new();
    if !matches!(outcome, Outcome::NotFound) {
        match check_protections(&protections, req) {
            Ok(pending) if explain => {
                // `route`: the checks are made here, in order; the first to fail answers.
                for check in pending {
                    if !check.run() {
                        outcome = Outcome::Unauthorized { realm: check.realm };
                        user = None;
                        break;
                    }
                    user = Some(check.user);
                }
            }
            Ok(pending) => checks = pending,
            Err(refusal) => outcome = refusal,
        }
    }
    Route {
        outcome,
        headers,
        user,
        checks,
        steps,
    }
}

/// All matched protections must let the request in: the address first, then credentials.
/// Refuses at once what needs no hashing (an address, missing credentials, a users file
/// with nobody in it); returns the password checks still to make, in order.
fn check_protections(
    list: &[&Protection],
    req: &RouteRequest<'_>,
) -> Result<Vec<PasswordCheck>, Outcome> {
    for p in list {
        let denied = p.deny.iter().any(|c| c.contains(req.peer));
        let allowed = p.allow.is_empty() || p.allow.iter().any(|c| c.contains(req.peer));
        if denied || !allowed {
            return Err(Outcome::Forbidden);
        }
    }
    let mut checks = Vec::new();
    for p in list {
        let Some(users) = &p.users else { continue };
        let check = req
            .authorization
            .and_then(Credentials::from_basic)
            .and_then(|c| PasswordCheck::new(users, c, &p.realm));
        match check {
            Some(check) => checks.push(check),
            None => {
                return Err(Outcome::Unauthorized {
                    realm: p.realm.clone(),
                })
            }
        }
    }
    Ok(checks)
}

/// Resolves a configuration path against `root` (absolute paths stay as they are).
fn resolve(config: &Config, p: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let p = Path::new(std::ffi::OsStr::from_bytes(p));
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        // `root.join(p)` in one allocation (the request path's route to its file).
        let root = config.root.as_os_str();
        let mut joined = OsString::with_capacity(root.len() + 1 + p.as_os_str().len());
        joined.push(root);
        let mut joined = PathBuf::from(joined);
        joined.push(p);
        joined
    }
}

/// Lexically removes `.` and `..` (no file-system access: symlinks are the admin's call).
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// True if `p` is absolute and none of its segments is empty, `.` or `..` (a trailing
/// slash is allowed): then [`lexical`] would return it unchanged, less the trailing slash.
fn is_plain(p: &[u8]) -> bool {
    let Some(rest) = p.strip_prefix(b"/") else {
        return false;
    };
    let rest = rest.strip_suffix(b"/").unwrap_or(rest);
    rest.is_empty()
        || rest
            .split(|&b| b == b'/')
            .all(|seg| !matches!(seg, b"" | b"." | b".."))
}

/// Whether `file` lies in (or is) `dir`, decided on the bytes when both are plain paths;
/// `None` when one is not, and the lexical walk must decide.
fn plainly_inside(file: &Path, dir: &Path) -> Option<bool> {
    let (f, d) = (
        file.as_os_str().as_encoded_bytes(),
        dir.as_os_str().as_encoded_bytes(),
    );
    if !is_plain(f) || !is_plain(d) {
        return None;
    }
    let f = f.strip_suffix(b"/").filter(|x| !x.is_empty()).unwrap_or(f);
    let d = d.strip_suffix(b"/").filter(|x| !x.is_empty()).unwrap_or(d);
    Some(d == b"/" || f == d || (f.starts_with(d) && f.get(d.len()) == Some(&b'/')))
}

/// `p` without a trailing slash (as `lexical` would give it), keeping a lone `/`.
fn trim_trailing_slash(p: PathBuf) -> PathBuf {
    let bytes = p.as_os_str().as_encoded_bytes();
    match bytes.strip_suffix(b"/") {
        Some(rest) if !rest.is_empty() => {
            use std::os::unix::ffi::OsStrExt;
            PathBuf::from(std::ffi::OsStr::from_bytes(rest))
        }
        _ => p,
    }
}

fn pass(config: &Config, path: &[u8], star: &[u8], result: Option<&str>) -> Outcome {
    let (file, allowed_dir): (PathBuf, Cow<'_, Path>) = match result {
        None => {
            let rel = path.strip_prefix(b"/").unwrap_or(path);
            (resolve(config, rel), Cow::Borrowed(&config.root))
        }
        Some(r) => {
            let file = resolve(config, &substitute(r.as_bytes(), star));
            let before_star = r.split('*').next().unwrap_or(r);
            let dir = if r.contains('*') {
                // The directory is the text before `*` up to its last `/`.
                match before_star.rfind('/') {
                    Some(i) => Cow::Owned(resolve(config, &before_star.as_bytes()[..=i])),
                    None => Cow::Borrowed(config.root.as_path()),
                }
            } else {
                // Without `*` the result names one file: it is its own confinement.
                Cow::Owned(file.clone())
            };
            (file, dir)
        }
    };
    let file = match plainly_inside(&file, &allowed_dir) {
        // The common case (no dot segment, no empty segment in either path): the
        // lexical form is the path itself, so the walk over components is not needed.
        Some(true) => trim_trailing_slash(file),
        Some(false) => return Outcome::Escapes,
        None => {
            let file = lexical(&file);
            if !file.starts_with(lexical(&allowed_dir)) {
                return Outcome::Escapes;
            }
            file
        }
    };
    // A trailing slash is meaningful (it names a directory) and `Path` drops it.
    let mut file = file.into_os_string();
    if path.ends_with(b"/") && result.is_none_or(|r| r.ends_with('*') || r.ends_with('/')) {
        file.push("/");
    }
    Outcome::File {
        path: PathBuf::from(file),
        url_path: path.to_vec(),
        search: None,
    }
}

/// `exec TEMPLATE SCRIPT` (see DESIGN.md §3.2).
fn cgi_gateway(
    config: &Config,
    path: &[u8],
    star_start: usize,
    star: &[u8],
    script: &str,
) -> Gateway {
    if script.contains('*') {
        let seg_end = star.iter().position(|&b| b == b'/').unwrap_or(star.len());
        let name = &star[..seg_end];
        let file = resolve(config, &substitute(script.as_bytes(), name));
        let mut gw = split_at_star(path, star_start, Some(seg_end));
        gw.script = Some(file);
        gw
    } else {
        let mut gw = split_at_star(path, star_start, None);
        gw.script = Some(resolve(config, script.as_bytes()));
        gw
    }
}

/// Splits `path` into SCRIPT_NAME and PATH_INFO where the star's match begins
/// (`star_start`, the template prefix's length): with `keep`, the first `keep` bytes of
/// the star stay in SCRIPT_NAME. Without it, the slashes that end the prefix begin
/// PATH_INFO, so that SCRIPT_NAME + PATH_INFO is the path (RFC 3875 §3.3): a gateway
/// mounted at the root (`exec /* APP`) has SCRIPT_NAME `""` and PATH_INFO `/x`.
fn split_at_star(path: &[u8], star_start: usize, keep: Option<usize>) -> Gateway {
    let mut split = (star_start + keep.unwrap_or(0)).min(path.len());
    if keep.is_none() {
        while split > 0 && path[split - 1] == b'/' {
            split -= 1;
        }
    }
    let (name, info) = path.split_at(split);
    let mut path_info = info.to_vec();
    if !path_info.is_empty() && !path_info.starts_with(b"/") {
        path_info.insert(0, b'/');
    }
    Gateway {
        script: None,
        script_name: name.to_vec(),
        path_info,
        env: Vec::new(),
    }
}

#[cfg(test)]
mod tests;

impl Route {
    /// A human-readable account of the routing, as `weir route` prints it: each rule that
    /// matched, in order, then the outcome.
    #[must_use]
    pub fn explain(&self) -> String {
        let mut out = String::new();
        if self.steps.is_empty() {
            out.push_str("no rule matched\n");
        }
        for s in &self.steps {
            out.push_str(&format!(
                "  line {:>3}: {}\n             -> {}\n",
                s.line, s.source, s.note
            ));
        }
        let outcome = match &self.outcome {
            Outcome::File { path, search, .. } => {
                let mut s = format!("serve the file {}", path.display());
                if let Some(script) = search {
                    s.push_str(&format!(
                        " (GETs with a query go to the search script {})",
                        script.display()
                    ));
                }
                s
            }
            Outcome::Fail(status) => format!("answer {status}"),
            Outcome::Redirect { location, status } => format!("redirect {status} to {location}"),
            Outcome::Cgi(g) => format!(
                "run the CGI script {} (SCRIPT_NAME={}, PATH_INFO={})",
                g.script.as_deref().unwrap_or(Path::new("")).display(),
                String::from_utf8_lossy(&g.script_name),
                String::from_utf8_lossy(&g.path_info)
            ),
            Outcome::Service { name, gateway } => format!(
                "hand to the FastCGI service {name}{} (SCRIPT_NAME={}, PATH_INFO={})",
                gateway
                    .script
                    .as_ref()
                    .map(|s| format!(" with SCRIPT_FILENAME={}", s.display()))
                    .unwrap_or_default(),
                String::from_utf8_lossy(&gateway.script_name),
                String::from_utf8_lossy(&gateway.path_info)
            ),
            Outcome::Status => "answer with the server's counters".into(),
            Outcome::NotFound => "404: no stopping rule matched".into(),
            Outcome::Forbidden => "403: a protect rule refuses this address".into(),
            Outcome::Unauthorized { realm } => {
                format!("401: a protect rule asks for a password (realm \"{realm}\")")
            }
            Outcome::Escapes => {
                "403: the file would lie outside the directory its pass rule names".into()
            }
        };
        out.push_str(&format!("outcome: {outcome}\n"));
        for (n, v) in &self.headers {
            out.push_str(&format!("header: {n}: {v}\n"));
        }
        if let Some(u) = &self.user {
            out.push_str(&format!("user: {u}\n"));
        }
        out
    }
}

/// What `weir route` prints for a request: the target's normalisation, then the same
/// `route` the server runs, explained, with what the method changes.
#[must_use]
pub fn explain_request(
    config: &Config,
    method: &crate::http1::Method,
    target: &[u8],
    host: Option<&[u8]>,
    peer: IpAddr,
) -> String {
    use crate::http1::Method;
    let shown = String::from_utf8_lossy(target);
    // Without a host given, an absolute-form URL's authority is the host, as for a
    // request (RFC 9112 §3.2.2).
    let host = host
        .or_else(|| crate::http1::parse::absolute_form_authority(target).filter(|a| !a.is_empty()));
    let mut out = format!(
        "{} {shown} (host {}, peer {peer})\n",
        String::from_utf8_lossy(method.as_bytes()),
        host.map_or("none".into(), |h| String::from_utf8_lossy(h).into_owned())
    );
    // The server judges the method before the target (server::request::route_request).
    match method {
        Method::Other(_) => {
            out.push_str("outcome: 501: weir does not implement this method\n");
            return out;
        }
        Method::Trace | Method::Connect => {
            out.push_str("outcome: 405: TRACE and CONNECT are always refused\n");
            return out;
        }
        _ => {}
    }
    let target = match crate::path::normalize(&bytes::Bytes::copy_from_slice(target)) {
        Ok(t) => t,
        Err(e) => {
            out.push_str(&format!("outcome: 400: {}\n", e.reason()));
            return out;
        }
    };
    out.push_str(&format!(
        "path: {}\n",
        String::from_utf8_lossy(&target.path)
    ));
    let routed = route(
        config,
        &RouteRequest {
            path: &target.path,
            query: target.query.as_deref(),
            host,
            peer,
            authorization: None,
        },
    );
    out.push_str(&routed.explain());
    if matches!(routed.outcome, Outcome::File { .. })
        && !matches!(method, Method::Get | Method::Head | Method::Options)
    {
        out.push_str("but: documents answer only GET, HEAD and OPTIONS, so this method gets 405\n");
    }
    out
}
