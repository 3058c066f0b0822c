//! The workload: random valid configurations, and requests of every kind weir serves,
//! together with malformed and hostile ones.
//!
//! # Theory of operation
//!
//! A *site* is a rules file drawn from a small vocabulary of rules over a small set of
//! path prefixes, so that rules overlap, shadow and chain (`map` into a `pass`, `header`
//! on what a `redirect` catches, a catch-all `pass` that is sometimes not last). It is
//! written out as `weir.conf` text and parsed by the real `weir_core::config::parse`, and
//! kept as the model's own `Rule` list, so the oracle never reads the core's parse.
//!
//! A *request* is generated at the moment a client writes it, so conditional requests can
//! use entity tags and dates seen in earlier responses (`Memory`). Each carries what the
//! oracle needs to judge its answer: valid ones are judged by the reference model; hostile
//! ones name the statuses DESIGN.md §4 prescribes and whether the connection must close
//! afterwards (every framing error closes: nothing that could smuggle a request).
//!
//! CGI requests ask for `/cgi-bin/NAME[/PATH_INFO][?n=SIZE]`, where NAME says how the
//! script behaves (`Script`) and `n` how much it writes; every one carries an
//! `X-Sim-Req: ID` field, which reaches the script as `HTTP_X_SIM_REQ`, so that the world
//! and the oracle can tie a process to the request it serves. Their bodies (POST, PUT,
//! sometimes chunked, sometimes larger than a pipe) are kept decoded in `Request::body`:
//! what the script's standard input must receive.

use core::net::Ipv4Addr;
use core::time::Duration;
use std::fmt::Write as _;

use rand::seq::IndexedRandom;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::options::Options;
use crate::oracle::model::{Net, Rule, ServiceSite, Site, Tpl};

/// The site's root directory in the simulated file system.
pub const ROOT: &str = "/sim";

/// The users file a `Login` rule names (`users=users`): alice, password `secret` (apr1,
/// cheap enough for a simulation that checks each password for real).
pub const USERS: &str = "alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\n";
/// `Authorization` with alice's password.
pub const AUTH_GOOD: &str = "Basic YWxpY2U6c2VjcmV0";
/// Well-formed credentials that are wrong: alice with `wrong`, bob (unknown) with
/// `secret`, alice with `secreT`.
pub const AUTH_BAD: &[&str] = &[
    "Basic YWxpY2U6d3Jvbmc=",
    "Basic Ym9iOnNlY3JldA==",
    "Basic YWxpY2U6c2VjcmVU",
];
/// Every `Authorization` value a client sends: good, bad, and ones that are no Basic
/// credentials at all.
pub const AUTHORIZATIONS: &[&str] = &[
    AUTH_GOOD,
    AUTH_GOOD,
    AUTH_GOOD,
    "Basic YWxpY2U6d3Jvbmc=",
    "Basic Ym9iOnNlY3JldA==",
    "Basic YWxpY2U6c2VjcmVU",
    "Bearer abc",
    "Basic !!!",
];

/// Paths clients ask for (before any mangling).
pub const PATHS: &[&str] = &[
    "/",
    "/a.txt",
    "/b.html",
    "/c.png",
    "/d.js",
    "/e.bin",
    "/f.sim",
    "/empty.txt",
    "/new.txt",
    "/noperm.txt",
    "/missing",
    "/a.txt/",
    "/index.htm",
    "/docs",
    "/docs/",
    "/docs/a.txt",
    "/docs/g.css",
    "/docs/new.txt",
    "/sub",
    "/sub/",
    "/sub/x.css",
    "/private/a.txt",
    "/old/a.txt",
    "/old/",
    "/new/a.txt",
    "/new/",
    "/static/a.txt",
    "/static/",
    "/admin/a.txt",
    "/alias",
    "/server-status",
];

/// What a script under `cgi-bin/` does, chosen by its name (the world runs it, the model
/// predicts the answer; neither looks at the other).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// Reads its whole standard input, then writes it back; `len`: with `Content-Length`.
    Echo {
        /// Says `Content-Length`.
        len: bool,
    },
    /// Writes its header section at once, then echoes its input piece by piece (no length).
    EchoStream,
    /// Writes `n` bytes of `flood_body(n)`, far more than any buffer.
    Flood {
        /// Says `Content-Length`.
        len: bool,
    },
    /// Writes nothing, ever (until killed).
    Stall,
    /// Writes a header section and `n` body bytes, then nothing, ever.
    StallBody {
        /// Says `Content-Length` (more than it writes).
        len: bool,
    },
    /// Exits in the middle of its header section.
    CrashHead,
    /// Writes a header section and `n` body bytes, then dies.
    CrashBody {
        /// Says `Content-Length` (more than it writes).
        len: bool,
    },
    /// Output the server must refuse (502): what is wrong with it.
    Bad(BadOutput),
}

/// The ways a script's output can be invalid (RFC 3875 §6; DESIGN.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadOutput {
    /// The output ends before the empty line that ends the header section.
    NoBlankLine,
    /// A field name that is not a token.
    InvalidHeader,
    /// A bare CR inside a header line (header injection).
    BareCr,
    /// A document without `Content-Type`.
    NoContentType,
    /// A header section longer than `limit header-bytes=`.
    TooLong,
}

impl Script {
    /// Every script file under `cgi-bin/`.
    pub const NAMES: [&'static str; 16] = [
        "echo",
        "echo-len",
        "echo-stream",
        "flood",
        "flood-len",
        "stall",
        "stall-body",
        "stall-body-len",
        "crash-head",
        "crash-body",
        "crash-body-len",
        "bad-nolf",
        "bad-header",
        "bad-cr",
        "bad-notype",
        "bad-long",
    ];

    /// The behaviour of the script file `name` (its last path segment).
    #[must_use]
    pub fn by_name(name: &str) -> Option<Script> {
        Some(match name {
            "echo" => Script::Echo { len: false },
            "echo-len" => Script::Echo { len: true },
            "echo-stream" => Script::EchoStream,
            "flood" => Script::Flood { len: false },
            "flood-len" => Script::Flood { len: true },
            "stall" => Script::Stall,
            "stall-body" => Script::StallBody { len: false },
            "stall-body-len" => Script::StallBody { len: true },
            "crash-head" => Script::CrashHead,
            "crash-body" => Script::CrashBody { len: false },
            "crash-body-len" => Script::CrashBody { len: true },
            "bad-nolf" => Script::Bad(BadOutput::NoBlankLine),
            "bad-header" => Script::Bad(BadOutput::InvalidHeader),
            "bad-cr" => Script::Bad(BadOutput::BareCr),
            "bad-notype" => Script::Bad(BadOutput::NoContentType),
            "bad-long" => Script::Bad(BadOutput::TooLong),
            _ => return None,
        })
    }
}

/// The `n=` of a query string (`None` if absent or not a number).
#[must_use]
pub fn query_n(query: &str) -> Option<usize> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("n="))
        .and_then(|v| v.parse().ok())
}

/// What `n` means when the query does not say.
pub const N_DEFAULT: usize = 1_000;

/// The body a flooding (or crashing, or stalling) script writes: `n` bytes, a function of
/// `n` alone, so the model can rebuild it.
#[must_use]
pub fn flood_body(n: usize) -> bytes::Bytes {
    crate::fs::content(0xF100D ^ n as u64, n)
}

/// Where requests for the FastCGI service go (`exec /svc/* service=app`).
pub const SVC_PREFIX: &str = "/svc/";
/// The service's name.
pub const SVC_NAME: &str = "app";
/// The service's two sockets: generation 1's, and the one even generations move it to
/// (`Options::svc_moves`). Each has a server of its own in the world (`services`).
pub const SVC_SOCKETS: [&str; 2] = ["/srv/app-a.sock", "/srv/app-b.sock"];

/// The media type of every document a script writes.
pub const SCRIPT_TYPE: &str = "application/x-sim-script";

fn tpl(s: &str) -> Tpl {
    Tpl(s.to_string())
}

/// Draws a site and writes its configuration text.
pub fn site(rng: &mut ChaCha8Rng, o: &Options) -> (Site, String) {
    let mut rules: Vec<Rule> = Vec::new();
    let candidates: Vec<Rule> = vec![
        Rule::Fail(
            tpl("/private/*"),
            *[None, Some(403), Some(404), Some(410), Some(451)]
                .choose(rng)
                .unwrap_or(&None),
        ),
        Rule::Redirect(
            tpl("/old/*"),
            ["/docs/*", "http://elsewhere.test/x/*"]
                .choose(rng)
                .unwrap_or(&"/docs/*")
                .to_string(),
            *[None, Some(301), Some(302), Some(303), Some(307), Some(308)]
                .choose(rng)
                .unwrap_or(&None),
        ),
        Rule::Map(tpl("/new/*"), "/docs/*".into()),
        Rule::Map(tpl("/alias"), "/a.txt".into()),
        Rule::Header(tpl("/docs/*"), "X-Sim-Docs".into(), "yes".into()),
        Rule::Header(tpl("/*"), "X-Sim-All".into(), "1".into()),
        Rule::Header(tpl("/*.txt"), "X-Sim-Text".into(), "plain text".into()),
        Rule::Protect(
            tpl("/admin/*"),
            vec![Net {
                addr: Ipv4Addr::new(10, 0, 0, 0),
                bits: 8,
            }],
            Vec::new(),
        ),
        Rule::Protect(
            tpl("/docs/*"),
            Vec::new(),
            vec![Net {
                addr: Ipv4Addr::new(192, 168, 1, 0),
                bits: 24,
            }],
        ),
        Rule::Status(tpl("/server-status")),
        Rule::Login(tpl("/docs/*")),
        Rule::Pass(tpl("/static/*"), Some("docs/*".into())),
        Rule::Pass(tpl("/admin/*"), Some("docs/*".into())),
        Rule::Pass(tpl("/*.png"), None),
        Rule::Fail(tpl("/*.bin"), Some(404)),
    ];
    for r in candidates {
        if rng.random_bool(0.6) {
            rules.push(r);
        }
    }
    if o.cgi {
        rules.push(Rule::Exec(tpl("/cgi-bin/*"), "cgi-bin/*".into()));
    }
    if o.svc {
        rules.push(Rule::Service(
            tpl(&format!("{SVC_PREFIX}*")),
            SVC_NAME.into(),
        ));
    }
    // A little disorder: rules shadow each other differently from seed to seed.
    for i in (1..rules.len()).rev() {
        if rng.random_bool(0.3) {
            let j = rng.random_range(0..=i);
            rules.swap(i, j);
        }
    }
    let catch_all = Rule::Pass(tpl("/*"), None);
    match rng.random_range(0..10) {
        0 => {}
        1 => {
            let at = rng.random_range(0..=rules.len());
            rules.insert(at, catch_all);
        }
        _ => rules.push(catch_all),
    }
    let welcome: Vec<String> = if rng.random_bool(0.3) {
        vec!["index.htm".into(), "index.html".into()]
    } else {
        vec!["index.html".into()]
    };
    let types = if rng.random_bool(0.5) {
        vec![(".sim".to_string(), "text/x-sim".to_string())]
    } else {
        Vec::new()
    };
    let listing = rng.random_bool(0.5);
    let ms = |v: u64| format!("{v}ms");
    let mut text = String::new();
    let _ = writeln!(text, "# weir-sim seed {}", o.args.seed);
    let _ = writeln!(text, "root {ROOT}");
    let _ = writeln!(text, "welcome {}", welcome.join(" "));
    for (suffix, mime) in &types {
        let _ = writeln!(text, "type {suffix} {mime}");
    }
    let _ = writeln!(text, "listing {}", if listing { "on" } else { "off" });
    // The cache: off, the default (on, revalidate=1s), or small and quick.
    let cache_revalidate_ms = match rng.random_range(0..3u8) {
        0 => {
            let _ = writeln!(text, "cache off");
            None
        }
        1 => Some(1000),
        _ => {
            let _ = writeln!(text, "cache 1M max-file=64K revalidate=250ms");
            Some(250)
        }
    };
    let _ = writeln!(
        text,
        "timeout header={} body={} idle={} send={} gateway={}",
        ms(o.header_timeout_ms),
        ms(o.body_timeout_ms),
        ms(o.idle_timeout_ms),
        ms(o.send_timeout_ms),
        ms(o.gateway_timeout_ms)
    );
    let _ = writeln!(
        text,
        "limit request-line={} header-bytes={} headers={} body={} connections={} cgi={}",
        o.request_line_max,
        o.header_bytes_max,
        o.headers_max,
        o.body_max,
        o.connections_max,
        o.cgi_max
    );
    if let Some(format) = o.access_log {
        let _ = writeln!(text, "access-log logs/access.log format={format}");
    }
    let service = o.svc.then(|| ServiceSite {
        name: SVC_NAME.into(),
        socket: SVC_SOCKETS[0].into(),
        connections: o.svc_connections,
        moves: o.svc_moves,
    });
    if let Some(svc) = &service {
        let _ = writeln!(text, "{}", service_line(svc));
    }
    for r in &rules {
        let _ = writeln!(text, "{}", rule_text(r));
    }
    (
        Site {
            root: ROOT.to_string(),
            rules,
            welcome,
            types,
            listing,
            cache_revalidate_ms,
            service,
            gateway_timeout_ms: o.gateway_timeout_ms,
            gateway_moves: o.gateway_moves,
        },
        text,
    )
}

fn service_line(svc: &ServiceSite) -> String {
    format!(
        "service {} connect=unix:{} connections={}",
        svc.name, svc.socket, svc.connections
    )
}

/// The path that even generations refuse with 410 (see `generation`).
pub const GEN_REFUSED: &str = "/a.txt";

/// The suffixes whose media type says the generation (see `generation`).
pub const GEN_TYPED: [&str; 2] = [".sim", ".txt"];

/// Generation `g` of the drawn site (`site`'s `base` and `text`), for runs with reloads:
/// every response it routes says `X-Gen: g` (a `header /* X-Gen g` rule put first), a
/// `.sim` or `.txt` file is served as `text/x-gen{g}` (the media type is decided when its
/// `Open` completes, steps after the head: a request moved to another generation in
/// flight shows two), and even generations refuse `GEN_REFUSED` with 410 (a `fail` rule second).
/// A service that moves (`ServiceSite::moves`) is at its second socket in even
/// generations, and with `gateway_moves` even generations double `timeout gateway=`. The
/// rest of the site is the drawn one.
#[must_use]
pub fn generation(base: &Site, text: &str, g: u64) -> (Site, String) {
    let mut site = base.clone();
    if let Some(svc) = site.service.as_mut().filter(|s| s.moves) {
        svc.socket = SVC_SOCKETS[usize::from(g.is_multiple_of(2))].into();
    }
    if base.gateway_moves && g.is_multiple_of(2) {
        site.gateway_timeout_ms = 2 * base.gateway_timeout_ms;
    }
    let mut first = vec![Rule::Header(tpl("/*"), "X-Gen".into(), g.to_string())];
    if g.is_multiple_of(2) {
        first.push(Rule::Fail(tpl(GEN_REFUSED), Some(410)));
    }
    site.types
        .retain(|(suffix, _)| !GEN_TYPED.contains(&suffix.as_str()));
    for suffix in GEN_TYPED {
        site.types.push((suffix.into(), format!("text/x-gen{g}")));
    }
    let lines: Vec<&str> = text.lines().collect();
    let (head, rules) = lines.split_at(lines.len() - base.rules.len());
    let mut out = String::new();
    let typed = |l: &str| {
        GEN_TYPED
            .iter()
            .any(|s| l.starts_with(&format!("type {s} ")))
    };
    for line in head.iter().filter(|l| !typed(l)) {
        match &site.service {
            Some(svc) if line.starts_with("service ") => {
                let _ = writeln!(out, "{}", service_line(svc));
            }
            _ if line.starts_with("timeout ") => {
                let from = format!(" gateway={}ms", base.gateway_timeout_ms);
                let to = format!(" gateway={}ms", site.gateway_timeout_ms);
                let _ = writeln!(out, "{}", line.replace(&from, &to));
            }
            _ => {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    let _ = writeln!(out, "# generation {g}");
    for suffix in GEN_TYPED {
        let _ = writeln!(out, "type {suffix} text/x-gen{g}");
    }
    for r in &first {
        let _ = writeln!(out, "{}", rule_text(r));
    }
    for line in rules {
        let _ = writeln!(out, "{line}");
    }
    site.rules.splice(0..0, first);
    (site, out)
}

fn quote(s: &str) -> String {
    if s.contains(' ') {
        format!("\"{s}\"")
    } else {
        s.to_string()
    }
}

fn rule_text(r: &Rule) -> String {
    let opt = |s: &Option<u16>| s.map_or(String::new(), |s| format!(" {s}"));
    let nets = |v: &[Net]| {
        v.iter()
            .map(|n| format!("{}/{}", n.addr, n.bits))
            .collect::<Vec<_>>()
            .join(",")
    };
    match r {
        Rule::Map(t, res) => format!("map {} {res}", t.0),
        Rule::Pass(t, res) => format!(
            "pass {}{}",
            t.0,
            res.as_ref().map_or(String::new(), |r| format!(" {r}"))
        ),
        Rule::Fail(t, s) => format!("fail {}{}", t.0, opt(s)),
        Rule::Redirect(t, url, s) => format!("redirect {} {url}{}", t.0, opt(s)),
        Rule::Header(t, n, v) => format!("header {} {n} {}", t.0, quote(v)),
        Rule::Protect(t, allow, deny) => {
            let mut s = format!("protect {}", t.0);
            if !allow.is_empty() {
                s.push_str(&format!(" allow={}", nets(allow)));
            }
            if !deny.is_empty() {
                s.push_str(&format!(" deny={}", nets(deny)));
            }
            s
        }
        Rule::Login(t) => format!("protect {} users=users realm=Sim", t.0),
        Rule::Status(t) => format!("status {}", t.0),
        Rule::Exec(t, script) => format!("exec {} {script}", t.0),
        Rule::Service(t, name) => format!("exec {} service={name}", t.0),
    }
}

/// What the oracle should expect for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Judged by the reference model.
    Model,
    /// Malformed or hostile: one of `statuses` (any final status if empty), then close.
    Reject {
        /// What is wrong with it.
        what: &'static str,
        /// Acceptable statuses.
        statuses: Vec<u16>,
        /// The answer must say `Connection: close`: false only when the error is in a
        /// body, which the server may find after it has answered the head (the
        /// connection then ends without a word, DESIGN.md §4).
        says_close: bool,
    },
}

/// One request, as bytes and as the oracle understands it.
#[derive(Clone, Debug)]
pub struct Request {
    /// Method token as sent.
    pub method: String,
    /// Target as sent.
    pub target: String,
    /// HTTP/1.0?
    pub http10: bool,
    /// Header fields as sent.
    pub headers: Vec<(String, String)>,
    /// The whole request on the wire.
    pub bytes: Vec<u8>,
    /// Length of the head (through the empty line) within `bytes`.
    pub head_len: usize,
    /// How to judge the answer.
    pub expect: Expect,
    /// The client will not send more on this connection after it (asked to close).
    pub close: bool,
    /// The client stops for a long while after this many bytes.
    pub stall_at: Option<usize>,
    /// The client asked for `100 Continue`.
    pub expects_continue: bool,
    /// The body as the server must decode it (what a script's standard input receives).
    pub body: Vec<u8>,
    /// The world's number for the request (sent as `X-Sim-Req` to scripts).
    pub id: u64,
    /// The request names a script under `/cgi-bin/` and the rules run it, or the rules
    /// hand it to the service (set by the world, which knows the site): a gateway answers.
    pub cgi: bool,
    /// The rules hand it to the FastCGI service (then `cgi` is set too).
    pub svc: bool,
}

impl Request {
    /// A one-line description for reports.
    #[must_use]
    pub fn summary(&self) -> String {
        let fields: Vec<String> = self
            .headers
            .iter()
            .filter(|(n, _)| n != "Host" && n != "User-Agent")
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        let shown: String = self.target.chars().take(80).collect();
        format!(
            "{} {} HTTP/1.{} [{}]{}",
            self.method,
            shown,
            if self.http10 { 0 } else { 1 },
            fields.join("; "),
            match &self.expect {
                Expect::Model => String::new(),
                Expect::Reject { what, .. } => format!(" (hostile: {what})"),
            }
        )
    }
}

/// What clients remember from earlier responses, to make conditional requests.
#[derive(Debug, Default)]
pub struct Memory {
    /// Entity tags seen.
    pub tags: Vec<String>,
    /// `Last-Modified` values seen.
    pub dates: Vec<String>,
}

impl Memory {
    /// Remembers a validator (bounded: the newest few hundred are enough).
    pub fn remember(&mut self, tag: Option<&str>, date: Option<&str>) {
        if let Some(t) = tag {
            if !self.tags.iter().any(|x| x == t) {
                self.tags.push(t.to_string());
            }
        }
        if let Some(d) = date {
            if !self.dates.iter().any(|x| x == d) {
                self.dates.push(d.to_string());
            }
        }
        for v in [&mut self.tags, &mut self.dates] {
            if v.len() > 300 {
                v.drain(..100);
            }
        }
    }
}

fn mangle(rng: &mut ChaCha8Rng, path: &str) -> String {
    match rng.random_range(0..12) {
        // Equivalent spellings that normalise to the same path.
        0 => path.replacen('a', "%61", 1),
        1 => path.replacen('/', "//", 1),
        2 => format!("/./{}", path.trim_start_matches('/')),
        3 => format!("/zz/..{path}"),
        4 => format!("http://sim.test{path}"),
        // Targets the normaliser refuses (400).
        5 => format!("{path}%2Fx"),
        6 => format!("{path}%00"),
        7 => format!("/..{path}"),
        8 => format!("{path}%zz"),
        _ => path.to_string(),
    }
}

fn range_field(rng: &mut ChaCha8Rng, size: usize) -> String {
    let n = |rng: &mut ChaCha8Rng| rng.random_range(0..=(size as u64 * 6 / 5 + 2));
    match rng.random_range(0..7) {
        0 => {
            let a = n(rng);
            let b = a + rng.random_range(0..50);
            format!("bytes={a}-{b}")
        }
        1 => format!("bytes={}-", n(rng)),
        2 => format!("bytes=-{}", rng.random_range(1..100)),
        3 => {
            let a = rng.random_range(0..10);
            let b = a + rng.random_range(0..5);
            let c = b + 2 + n(rng);
            let d = c + rng.random_range(0..40);
            format!("bytes={a}-{b}, {c}-{d}")
        }
        4 => "bytes=99999999-".into(),
        5 => "items=0-1".into(),
        _ => "bytes=5-2".into(),
    }
}

/// A valid request (it may still be refused by the rules or name a bad path).
pub fn valid(rng: &mut ChaCha8Rng, o: &Options, memory: &Memory, id: u64) -> Request {
    // unwrap: constant non-empty lists.
    let path = *PATHS.choose(rng).unwrap();
    let mut target = if rng.random_bool(0.2) {
        mangle(rng, path)
    } else {
        path.to_string()
    };
    if rng.random_bool(0.15) {
        target.push_str(&format!("?q={}", rng.random_range(0..100)));
    }
    let method = match rng.random_range(0..100) {
        0..=54 => "GET",
        55..=69 => "HEAD",
        70..=79 => "POST",
        80..=84 => "OPTIONS",
        85..=87 => "PUT",
        88..=89 => "DELETE",
        90..=91 => "TRACE",
        92..=93 => "BREW",
        94 => "get",
        95 => {
            target = "*".into();
            "OPTIONS"
        }
        _ => "GET",
    };
    let http10 = rng.random_bool(0.1);
    let mut h: Vec<(String, String)> = Vec::new();
    let mut add = |n: &str, v: String| h.push((n.to_string(), v));
    if !http10 || rng.random_bool(0.5) {
        add("Host", "sim.test".into());
    }
    if rng.random_bool(0.5) {
        add("User-Agent", "weir-sim".into());
    }
    if rng.random_bool(0.3) {
        let auth = AUTHORIZATIONS.choose(rng).unwrap_or(&AUTH_GOOD);
        add("Authorization", (*auth).to_string());
    }
    let mut close = false;
    if http10 {
        if rng.random_bool(0.5) {
            add("Connection", "keep-alive".into());
        } else {
            close = true;
        }
    } else if rng.random_bool(0.08) {
        add("Connection", "close".into());
        close = true;
    }
    if rng.random_bool(0.2) {
        let accept = [
            "*/*",
            "text/*",
            "text/html",
            "image/png",
            "text/*;q=0, */*",
            "application/json, */*;q=0.1",
        ];
        add("Accept", accept.choose(rng).unwrap_or(&"*/*").to_string());
    }
    if rng.random_bool(0.3) {
        let enc = ["gzip", "br, gzip", "gzip;q=0", "identity", "*", "br"];
        add(
            "Accept-Encoding",
            enc.choose(rng).unwrap_or(&"gzip").to_string(),
        );
    }
    if rng.random_bool(0.15) {
        let tag = match memory.tags.choose(rng) {
            Some(t) if rng.random_bool(0.8) => {
                if rng.random_bool(0.2) {
                    format!("W/{t}")
                } else {
                    t.clone()
                }
            }
            _ if rng.random_bool(0.3) => "*".into(),
            _ => "\"no-such-tag\"".into(),
        };
        add("If-None-Match", tag);
    }
    if rng.random_bool(0.1) {
        let date = match memory.dates.choose(rng) {
            Some(d) if rng.random_bool(0.8) => d.clone(),
            _ => "not a date".into(),
        };
        add("If-Modified-Since", date);
    }
    if rng.random_bool(0.05) {
        let tag = memory
            .tags
            .choose(rng)
            .cloned()
            .unwrap_or_else(|| "*".into());
        add("If-Match", tag);
    }
    if rng.random_bool(0.15) {
        add("Range", range_field(rng, o.file_size_max));
    }
    if rng.random_bool(0.1) {
        add("X-Junk", format!("{}", rng.random_range(0..1000)));
    }
    let mut data = Vec::new();
    if matches!(method, "POST" | "PUT") || (method == "GET" && rng.random_bool(0.05)) {
        let len = rng.random_range(0..300usize);
        data = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
    }
    let has_body = !data.is_empty() || matches!(method, "POST" | "PUT");
    finish(
        rng,
        method,
        target,
        http10,
        h,
        close,
        has_body.then_some(data),
        id,
    )
}

/// Frames `body` (if any) with `Content-Length` or, for HTTP/1.1 sometimes, chunked, and
/// writes the whole request.
#[allow(clippy::too_many_arguments)]
fn finish(
    rng: &mut ChaCha8Rng,
    method: &str,
    target: String,
    http10: bool,
    mut h: Vec<(String, String)>,
    close: bool,
    body: Option<Vec<u8>>,
    id: u64,
) -> Request {
    let mut wire = Vec::new();
    let mut expects_continue = false;
    let data = body.unwrap_or_default();
    if !data.is_empty() || matches!(method, "POST" | "PUT") {
        if !http10 && rng.random_bool(0.4) {
            h.push(("Transfer-Encoding".into(), "chunked".into()));
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = rng.random_range(1..=rest.len());
                let ext = if rng.random_bool(0.2) { ";e=1" } else { "" };
                wire.extend_from_slice(format!("{n:x}{ext}\r\n").as_bytes());
                wire.extend_from_slice(&rest[..n]);
                wire.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            wire.extend_from_slice(b"0\r\n");
            if rng.random_bool(0.2) {
                wire.extend_from_slice(b"X-Trailer: t\r\n");
            }
            wire.extend_from_slice(b"\r\n");
        } else {
            h.push(("Content-Length".into(), data.len().to_string()));
            wire.extend_from_slice(&data);
        }
        if !http10 && rng.random_bool(0.1) {
            h.push(("Expect".into(), "100-continue".into()));
            expects_continue = true;
        }
    }
    let version = if http10 { "HTTP/1.0" } else { "HTTP/1.1" };
    let mut bytes = format!("{method} {target} {version}\r\n").into_bytes();
    for (n, v) in &h {
        bytes.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    let head_len = bytes.len();
    bytes.extend_from_slice(&wire);
    Request {
        method: method.to_string(),
        target,
        http10,
        headers: h,
        bytes,
        head_len,
        expect: Expect::Model,
        close,
        stall_at: None,
        expects_continue,
        body: data,
        id,
        cgi: false,
        svc: false,
    }
}

/// A request for a script under `/cgi-bin/` (see the module documentation).
pub fn script_request(rng: &mut ChaCha8Rng, o: &Options, id: u64) -> Request {
    gateway_request(rng, o, id, "/cgi-bin/")
}

/// A request for a program of the FastCGI service, under `SVC_PREFIX`: the same names
/// and queries as scripts.
pub fn service_request(rng: &mut ChaCha8Rng, o: &Options, id: u64) -> Request {
    gateway_request(rng, o, id, SVC_PREFIX)
}

fn gateway_request(rng: &mut ChaCha8Rng, o: &Options, id: u64, prefix: &str) -> Request {
    // `bad-long` finds a known core bug (a header section over the limit passes when it
    // arrives in one read): asked for only with `--strict`.
    let names: Vec<&str> = Script::NAMES
        .iter()
        .copied()
        .filter(|n| o.args.strict || *n != "bad-long")
        .chain(["nosuch", "locked", ""])
        .collect();
    // unwrap: a non-empty list.
    let name = *names.choose(rng).unwrap();
    let mut target = format!("{prefix}{name}");
    if rng.random_bool(0.2) {
        target.push_str("/info/x");
    }
    let n = match rng.random_range(0..4) {
        0 => None,
        1 => Some(rng.random_range(0..64)),
        2 => Some(rng.random_range(0..=4_096)),
        // A service's floods stay within 64 KiB: records are made and read byte by byte
        // in a debug build, and the CI run's time is budgeted.
        _ if prefix == SVC_PREFIX => Some(rng.random_range(0..=o.flood_max.min(65_536))),
        _ => Some(rng.random_range(0..=o.flood_max)),
    };
    if let Some(n) = n {
        target.push_str(&format!("?n={n}"));
    }
    if rng.random_bool(0.05) {
        target = format!("http://sim.test{target}");
    }
    let method = match rng.random_range(0..20) {
        0..=7 => "POST",
        8..=14 => "GET",
        15..=16 => "HEAD",
        17 => "PUT",
        18 => "OPTIONS",
        _ => "DELETE",
    };
    let http10 = rng.random_bool(0.1);
    let mut h: Vec<(String, String)> = Vec::new();
    if !http10 || rng.random_bool(0.5) {
        h.push(("Host".into(), "sim.test".into()));
    }
    h.push(("X-Sim-Req".into(), id.to_string()));
    let mut close = false;
    if http10 {
        if rng.random_bool(0.5) {
            h.push(("Connection".into(), "keep-alive".into()));
        } else {
            close = true;
        }
    } else if rng.random_bool(0.08) {
        h.push(("Connection".into(), "close".into()));
        close = true;
    }
    let body = matches!(method, "POST" | "PUT").then(|| {
        // Mostly small; sometimes larger than a pipe and than the server's stdin buffer,
        // when clients write in large pieces (byte-sized pieces would take forever).
        let cap = if o.split_max >= 65_536 && rng.random_bool(0.1) {
            200_000
        } else if o.split_max >= 512 {
            3_000
        } else {
            300
        };
        let len = rng.random_range(0..=cap.min(o.body_max as usize));
        (0..len)
            .map(|i| b"0123456789abcdef"[(i * 7 + i / 16) % 16])
            .collect::<Vec<u8>>()
    });
    finish(rng, method, target, http10, h, close, body, id)
}

/// A malformed or hostile request.
pub fn hostile(rng: &mut ChaCha8Rng, o: &Options, id: u64) -> Request {
    let host = "Host: sim.test\r\n";
    let (what, statuses, text): (&'static str, Vec<u16>, Vec<u8>) = match rng.random_range(0..17)
    {
        0 => ("Content-Length with Transfer-Encoding", vec![400],
            format!("POST /a.txt HTTP/1.1\r\n{host}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").into()),
        1 => ("two Content-Lengths", vec![400],
            format!("POST /a.txt HTTP/1.1\r\n{host}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc").into()),
        2 => ("Content-Length not a number", vec![400],
            format!("POST /a.txt HTTP/1.1\r\n{host}Content-Length: 1x\r\n\r\n").into()),
        3 => ("negative Content-Length", vec![400],
            format!("POST /a.txt HTTP/1.1\r\n{host}Content-Length: -1\r\n\r\n").into()),
        4 => ("obs-fold", vec![400],
            format!("GET /a.txt HTTP/1.1\r\n{host}X-A: b\r\n c\r\n\r\n").into()),
        5 => ("bare CR in a field", vec![400],
            format!("GET /a.txt HTTP/1.1\r\n{host}X-A: b\rc\r\n\r\n").into()),
        6 => ("bare LF line ends", vec![400],
            b"GET /a.txt HTTP/1.1\nHost: sim.test\n\n".to_vec()),
        7 => ("invalid chunk size", Vec::new(),
            format!("POST /a.txt HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n").into()),
        8 => ("request line too long", vec![414], {
            let long = "a".repeat(o.request_line_max + 1);
            format!("GET /{long} HTTP/1.1\r\n{host}\r\n").into()
        }),
        9 => ("head too large", vec![431], {
            let big = "b".repeat(o.header_bytes_max);
            format!("GET /a.txt HTTP/1.1\r\n{host}X-Big: {big}\r\n\r\n").into()
        }),
        10 => ("too many fields", vec![431], {
            let mut s = format!("GET /a.txt HTTP/1.1\r\n{host}");
            for i in 0..=o.headers_max {
                s.push_str(&format!("X-{i}: v\r\n"));
            }
            s.push_str("\r\n");
            s.into()
        }),
        11 => ("body over the limit", vec![413],
            format!("POST /a.txt HTTP/1.1\r\n{host}Content-Length: {}\r\n\r\n", o.body_max + 1).into()),
        12 => ("HTTP/2.0 request line", vec![505],
            format!("GET /a.txt HTTP/2.0\r\n{host}\r\n").into()),
        13 => ("HTTP/1.1 without Host", vec![400], b"GET /a.txt HTTP/1.1\r\n\r\n".to_vec()),
        14 => ("two Host fields", vec![400],
            format!("GET /a.txt HTTP/1.1\r\n{host}Host: other.test\r\n\r\n").into()),
        15 => ("Transfer-Encoding with a coding weir does not implement", vec![501],
            format!("POST /a.txt HTTP/1.1\r\n{host}Transfer-Encoding: gzip\r\n\r\n").into()),
        _ => ("binary garbage", vec![400], b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec()),
    };
    let says_close = !statuses.is_empty();
    let head_len = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(text.len(), |i| i + 4);
    Request {
        method: String::from_utf8_lossy(text.split(|&b| b == b' ').next().unwrap_or(b"?"))
            .into_owned(),
        target: "(hostile)".into(),
        http10: false,
        headers: Vec::new(),
        bytes: text,
        head_len,
        expect: Expect::Reject {
            what,
            statuses,
            says_close,
        },
        close: true,
        stall_at: None,
        expects_continue: false,
        body: Vec::new(),
        id,
        cgi: false,
        svc: false,
    }
}

/// How a client ends when it has nothing more to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Shut its write side as soon as everything is written (answers still due).
    HalfClose,
    /// Close once every answer has arrived.
    CloseWhenDone,
    /// Stay silent until the server's idle timeout closes the connection.
    Linger,
}

/// One client's plan.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The client's address.
    pub peer: Ipv4Addr,
    /// Requests it will make.
    pub requests: usize,
    /// Writes every request without waiting for answers.
    pub pipelined: bool,
    /// What it does at the end.
    pub end: End,
    /// When (after connecting) it resets the connection, if it does.
    pub reset_after: Option<Duration>,
}

/// Draws a client plan.
pub fn plan(rng: &mut ChaCha8Rng, o: &Options) -> Plan {
    let peers = [
        Ipv4Addr::new(10, 0, 0, 7),
        Ipv4Addr::new(10, 1, 2, 3),
        Ipv4Addr::new(192, 168, 1, 20),
        Ipv4Addr::new(127, 0, 0, 1),
    ];
    Plan {
        peer: *peers.choose(rng).unwrap_or(&peers[0]),
        requests: rng.random_range(1..=o.requests_per_client_max),
        pipelined: rng.random_range(0..1000) < o.pipeline,
        end: *[
            End::HalfClose,
            End::CloseWhenDone,
            End::CloseWhenDone,
            End::Linger,
        ]
        .choose(rng)
        .unwrap_or(&End::CloseWhenDone),
        reset_after: (rng.random_range(0..1000) < o.reset)
            .then(|| Duration::from_millis(rng.random_range(0..3_000))),
    }
}

/// The next request a client writes.
pub fn request(rng: &mut ChaCha8Rng, o: &Options, memory: &Memory, id: u64) -> Request {
    let mut r = if rng.random_range(0..1000) < o.hostile {
        hostile(rng, o, id)
    } else if rng.random_range(0..1000) < o.cgi_share {
        script_request(rng, o, id)
    } else if o.svc && rng.random_range(0..1000) < o.svc_share {
        service_request(rng, o, id)
    } else {
        valid(rng, o, memory, id)
    };
    if rng.random_range(0..1000) < o.stall {
        // Strictly inside the request, so the server sees half of it and waits.
        if r.bytes.len() > 1 {
            r.stall_at = Some(rng.random_range(1..r.bytes.len()));
        }
    }
    r
}
