//! The `weir.conf` parser: text in, a validated `Config` or every error out.
//!
//! Two passes over the lines. The first reads only `root`, because every relative path in
//! the file is relative to it wherever it appears. The second reads everything else in
//! order: settings (which must come before the first `host` line, since they are global),
//! `service` declarations, rules and `host` sections. Checks that need the whole file —
//! a rule naming a service declared further down — run after the second pass. Errors do
//! not stop the parse: each is recorded with its line and column and the parse goes on,
//! so one run of `weir check` shows them all.

use core::fmt;
use core::net::SocketAddr;
use core::time::Duration;
use std::path::{Path, PathBuf};

use super::lex::{self, Word};
use super::{
    AccessLog, CacheSettings, Config, HostSection, LogFormat, Service, ServiceAddr,
    FILE_THREADS_MAX,
};
use crate::rules::{Action, Cidr, Protection, Rule, Template, TemplateError, Users};

/// One configuration error, pointing at a line and column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The configuration file's name as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// Characters to underline.
    pub width: usize,
    /// What is wrong.
    pub message: String,
    /// The line's text.
    pub source: String,
}

impl fmt::Display for Diagnostic {
    /// `FILE:LINE:COL: error: MESSAGE`, then the line and a caret under the culprit.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.line, self.col, self.message
        )?;
        writeln!(f, "  {}", self.source)?;
        let pad: String = self
            .source
            .chars()
            .take(self.col.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "  {pad}^{}", "~".repeat(self.width.saturating_sub(1)))
    }
}

/// Loads a file the configuration names (an htpasswd file), or says why it cannot.
pub type Loader<'a> = dyn FnMut(&Path) -> Result<String, String> + 'a;

/// Parses a configuration file. `file` names it in errors; `dir` is its directory (the
/// default `root`); `load` reads the files it names.
pub fn parse(
    file: &str,
    text: &str,
    dir: &Path,
    load: &mut Loader<'_>,
) -> Result<Config, Vec<Diagnostic>> {
    parse_with_root(file, text, dir, None, load)
}

/// Like `parse`, but `root` (when given, e.g. by `weir serve --root`) replaces the file's
/// own `root` before any relative path is resolved against it.
pub fn parse_with_root(
    file: &str,
    text: &str,
    dir: &Path,
    root: Option<&Path>,
    load: &mut Loader<'_>,
) -> Result<Config, Vec<Diagnostic>> {
    let mut p = Parser {
        file: file.to_string(),
        diags: Vec::new(),
        config: Config::builtin(dir.to_path_buf()),
        listen_seen: false,
        section: None,
        service_uses: Vec::new(),
        line: 0,
        source: String::new(),
    };
    p.config.rules.clear();
    let lines: Vec<(usize, &str, Vec<Word>)> = text
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            p.line = i + 1;
            p.source = line.to_string();
            match lex::words(line) {
                Ok(w) if w.is_empty() => None,
                Ok(w) => Some((i + 1, line, w)),
                Err(e) => {
                    p.error_at(e.col, e.width, e.message);
                    None
                }
            }
        })
        .collect();
    for (n, line, words) in &lines {
        if words[0].text == "root" {
            p.at(*n, line);
            p.root(words, dir);
        }
    }
    if let Some(root) = root {
        p.config.root = root.to_path_buf();
    }
    for (n, line, words) in &lines {
        p.at(*n, line);
        p.directive(words, load);
    }
    if let Some(section) = p.section.take() {
        p.config.hosts.push(section);
    }
    for (name, line, source, col, width) in std::mem::take(&mut p.service_uses) {
        if !p.config.services.contains_key(&name) {
            p.at(line, &source);
            p.error_at(col, width, format!("no service named `{name}` is declared"));
        }
    }
    if p.diags.is_empty() {
        Ok(p.config)
    } else {
        p.diags.sort_by_key(|d| (d.line, d.col));
        Err(p.diags)
    }
}

struct Parser {
    file: String,
    diags: Vec<Diagnostic>,
    config: Config,
    listen_seen: bool,
    /// The host section being read, if any.
    section: Option<HostSection>,
    /// (service, line, source, col, width) for each `service=` use, checked at the end.
    service_uses: Vec<(String, usize, String, usize, usize)>,
    line: usize,
    source: String,
}

const SETTINGS: &[&str] = &[
    "listen",
    "workers",
    "file-threads",
    "user",
    "chroot",
    "root",
    "access-log",
    "error-log",
    "pid-file",
    "welcome",
    "listing",
    "type",
    "cache",
    "timeout",
    "limit",
    "service",
];

impl Parser {
    fn at(&mut self, line: usize, source: &str) {
        self.line = line;
        self.source = source.to_string();
    }

    fn error_at(&mut self, col: usize, width: usize, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line: self.line,
            col,
            width,
            message: message.into(),
            source: self.source.clone(),
        });
    }

    fn error(&mut self, w: &Word, message: impl Into<String>) {
        self.error_at(w.col, w.width, message);
    }

    /// Splits the words after the directive into positionals and options, rejecting
    /// options not in `allowed`.
    fn split<'w>(&mut self, words: &'w [Word], allowed: &[&str]) -> (Vec<&'w Word>, Vec<&'w Word>) {
        let mut pos = Vec::new();
        let mut opts = Vec::new();
        for w in &words[1..] {
            match w.option() {
                Some((k, _)) if allowed.contains(&k) => opts.push(w),
                Some((k, _)) => {
                    let d = &words[0].text;
                    self.error(w, format!("unknown option `{k}` for `{d}`"));
                }
                None => pos.push(w),
            }
        }
        (pos, opts)
    }

    /// Checks the number of positional words; reports at the first extra or at the end.
    fn arity(
        &mut self,
        words: &[Word],
        pos: &[&Word],
        min: usize,
        max: usize,
        usage: &str,
    ) -> bool {
        if pos.len() < min {
            let last = words.last().map_or((1, 1), |w| (w.col + w.width, 1));
            self.error_at(last.0, last.1, format!("missing argument; usage: {usage}"));
            return false;
        }
        if pos.len() > max {
            self.error(pos[max], format!("unexpected argument; usage: {usage}"));
            return false;
        }
        true
    }

    fn path(&self, text: &str) -> PathBuf {
        let p = Path::new(text);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.config.root.join(p)
        }
    }

    fn root(&mut self, words: &[Word], dir: &Path) {
        let (pos, _) = self.split(words, &[]);
        if self.arity(words, &pos, 1, 1, "root DIR") {
            let p = Path::new(&pos[0].text);
            self.config.root = if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            };
        }
    }

    fn directive(&mut self, words: &[Word], load: &mut Loader<'_>) {
        let name = words[0].text.as_str();
        if SETTINGS.contains(&name) && self.section.is_some() {
            self.error(
                &words[0],
                format!("`{name}` is a global setting and must come before the first `host` line"),
            );
            return;
        }
        match name {
            "root" => {}
            "listen" => self.listen(words),
            "workers" => {
                let (pos, _) = self.split(words, &[]);
                if self.arity(words, &pos, 1, 1, "workers N") {
                    match pos[0].text.parse::<usize>() {
                        Ok(n) if (1..=1024).contains(&n) => self.config.workers = Some(n),
                        _ => self.error(pos[0], "workers must be a number from 1 to 1024"),
                    }
                }
            }
            "file-threads" => {
                let (pos, _) = self.split(words, &[]);
                if self.arity(words, &pos, 1, 1, "file-threads N|off") {
                    match pos[0].text.parse::<usize>() {
                        _ if pos[0].text == "off" => self.config.file_threads = 0,
                        Ok(n) if (1..=FILE_THREADS_MAX).contains(&n) => {
                            self.config.file_threads = n;
                        }
                        _ => self.error(
                            pos[0],
                            format!("file-threads must be `off` or a number from 1 to {FILE_THREADS_MAX}"),
                        ),
                    }
                }
            }
            "user" => {
                let (pos, _) = self.split(words, &[]);
                if self.arity(words, &pos, 1, 2, "user NAME [GROUP]") {
                    self.config.user =
                        Some((pos[0].text.clone(), pos.get(1).map(|w| w.text.clone())));
                }
            }
            "chroot" => {
                let (pos, _) = self.split(words, &[]);
                if self.arity(words, &pos, 1, 1, "chroot DIR") {
                    self.config.chroot = Some(self.path(&pos[0].text));
                }
            }
            "access-log" => self.access_log(words),
            "error-log" => {
                let (pos, _) = self.split(words, &[]);
                if self.arity(words, &pos, 1, 1, "error-log FILE|stderr") {
                    self.config.error_log =
                        (pos[0].text != "stderr").then(|| self.path(&pos[0].text));
                }
            }
            "pid-file" => {
                let (pos, _) = self.split(words, &[]);
                if self.arity(words, &pos, 1, 1, "pid-file FILE") {
                    self.config.pid_file = Some(self.path(&pos[0].text));
                }
            }
            "welcome" => {
                let (pos, _) = self.split(words, &[]);
                if self.arity(words, &pos, 1, usize::MAX, "welcome NAME…") {
                    let mut names = Vec::new();
                    for w in pos {
                        if w.text.contains('/') || w.text == "." || w.text == ".." {
                            self.error(w, "a welcome file is a plain file name, without `/`");
                        }
                        names.push(w.text.clone());
                    }
                    self.config.welcome = names;
                }
            }
            "listing" => {
                let (pos, _) = self.split(words, &[]);
                if self.arity(words, &pos, 1, 1, "listing on|off") {
                    match pos[0].text.as_str() {
                        "on" => self.config.listing = true,
                        "off" => self.config.listing = false,
                        _ => self.error(pos[0], "expected `on` or `off`"),
                    }
                }
            }
            "type" => {
                let (pos, _) = self.split(words, &[]);
                if self.arity(words, &pos, 2, 2, "type .SUFFIX MIME") {
                    let suffix = &pos[0].text;
                    if !suffix.starts_with('.') || suffix.len() < 2 || suffix.contains('/') {
                        self.error(pos[0], "a suffix is written with its dot, e.g. `.html`");
                    } else if !is_media_type(&pos[1].text) {
                        self.error(pos[1], "not a media type (expected TYPE/SUBTYPE)");
                    } else {
                        self.config
                            .types
                            .insert(suffix.to_ascii_lowercase(), pos[1].text.clone());
                    }
                }
            }
            "cache" => self.cache(words),
            "timeout" => self.timeout(words),
            "limit" => self.limit(words),
            "service" => self.service(words),
            "host" => {
                let (pos, _) = self.split(words, &[]);
                if self.arity(words, &pos, 1, usize::MAX, "host NAME…") {
                    if let Some(done) = self.section.take() {
                        self.config.hosts.push(done);
                    }
                    let mut names = Vec::new();
                    for w in pos {
                        let n = w.text.to_ascii_lowercase();
                        let taken = self.config.hosts.iter().any(|h| h.names.contains(&n))
                            || names.contains(&n);
                        if taken {
                            self.error(w, format!("host `{n}` already has a section"));
                        }
                        names.push(n);
                    }
                    self.section = Some(HostSection {
                        names,
                        rules: Vec::new(),
                    });
                }
            }
            _ => {
                if let Some(rule) = self.rule(words, load) {
                    match &mut self.section {
                        Some(s) => s.rules.push(rule),
                        None => self.config.rules.push(rule),
                    }
                }
            }
        }
    }

    fn listen(&mut self, words: &[Word]) {
        let (pos, _) = self.split(words, &[]);
        if !self.arity(words, &pos, 1, 2, "listen ADDR:PORT [nocache]") {
            return;
        }
        let Ok(addr) = pos[0].text.parse::<SocketAddr>() else {
            self.error(
                pos[0],
                "expected ADDR:PORT, e.g. 127.0.0.1:8080 or [::1]:8080",
            );
            return;
        };
        if let Some(w) = pos.get(1) {
            if w.text != "nocache" {
                self.error(w, "expected `nocache`");
                return;
            }
            self.config.nocache.push(addr);
        }
        if !self.listen_seen {
            self.listen_seen = true;
            self.config.listen.clear();
        }
        if self.config.listen.contains(&addr) {
            self.error(pos[0], format!("{addr} is already listed"));
        }
        self.config.listen.push(addr);
    }

    fn access_log(&mut self, words: &[Word]) {
        let (pos, opts) = self.split(words, &["format"]);
        if !self.arity(
            words,
            &pos,
            1,
            1,
            "access-log FILE|off [format=combined|common|json]",
        ) {
            return;
        }
        let mut format = LogFormat::Combined;
        for o in opts {
            format = match o.option().map(|(_, v)| v) {
                Some("combined") => LogFormat::Combined,
                Some("common") => LogFormat::Common,
                Some("json") => LogFormat::Json,
                _ => {
                    self.error(o, "format must be `combined`, `common` or `json`");
                    return;
                }
            };
        }
        self.config.access_log = (pos[0].text != "off").then(|| AccessLog {
            path: self.path(&pos[0].text),
            format,
        });
    }

    fn cache(&mut self, words: &[Word]) {
        let (pos, opts) = self.split(words, &["max-file", "revalidate"]);
        if !self.arity(
            words,
            &pos,
            1,
            1,
            "cache SIZE [max-file=SIZE] [revalidate=DUR] | cache off",
        ) {
            return;
        }
        if pos[0].text == "off" {
            if let Some(o) = opts.first() {
                self.error(o, "`cache off` takes no options");
            }
            self.config.cache = None;
            return;
        }
        let mut c = CacheSettings::default();
        match size(&pos[0].text) {
            Ok(n) => c.size = n,
            Err(e) => return self.error(pos[0], e),
        }
        for o in opts {
            let (k, v) = o.option().unwrap_or_default();
            match k {
                "max-file" => match size(v) {
                    Ok(n) => c.max_file = n,
                    Err(e) => self.error(o, e),
                },
                _ => match duration(v) {
                    Ok(d) => c.revalidate = d,
                    Err(e) => self.error(o, e),
                },
            }
        }
        self.config.cache = Some(c);
    }

    fn timeout(&mut self, words: &[Word]) {
        let keys = ["header", "body", "idle", "send", "gateway", "grace"];
        let (pos, opts) = self.split(words, &keys);
        if let Some(w) = pos.first() {
            self.error(
                w,
                "usage: timeout [header=D] [body=D] [idle=D] [send=D] [gateway=D] [grace=D]",
            );
        }
        for o in opts {
            let (k, v) = o.option().unwrap_or_default();
            let d = match duration(v) {
                Ok(d) => d,
                Err(e) => {
                    self.error(o, e);
                    continue;
                }
            };
            let t = &mut self.config.timeouts;
            match k {
                "header" => t.header = d,
                "body" => t.body = d,
                "idle" => t.idle = d,
                "send" => t.send = d,
                "gateway" => t.gateway = d,
                _ => t.grace = d,
            }
        }
    }

    fn limit(&mut self, words: &[Word]) {
        let keys = [
            "request-line",
            "header-bytes",
            "headers",
            "body",
            "connections",
            "cgi",
        ];
        let (pos, opts) = self.split(words, &keys);
        if let Some(w) = pos.first() {
            self.error(w, "usage: limit [request-line=S] [header-bytes=S] [headers=N] [body=S] [connections=N] [cgi=N]");
        }
        for o in opts {
            let (k, v) = o.option().unwrap_or_default();
            let is_count = matches!(k, "headers" | "connections" | "cgi");
            let parsed = if is_count {
                v.parse::<u64>()
                    .map_err(|_| format!("`{v}` is not a count"))
            } else {
                size(v)
            };
            let n = match parsed {
                Ok(0) => {
                    self.error(o, format!("`{k}` must be at least 1"));
                    continue;
                }
                Ok(n) => n,
                Err(e) => {
                    self.error(o, e);
                    continue;
                }
            };
            let as_usize = usize::try_from(n).unwrap_or(usize::MAX);
            let l = &mut self.config.limits;
            match k {
                "request-line" => l.request_line_max = as_usize,
                "header-bytes" => l.header_bytes_max = as_usize,
                "headers" => l.headers_max = as_usize,
                "body" => l.body_max = n,
                "connections" => l.connections_max = as_usize,
                _ => l.cgi_max = as_usize,
            }
        }
    }

    fn service(&mut self, words: &[Word]) {
        let keys = [
            "spawn",
            "processes",
            "user",
            "cwd",
            "env",
            "connect",
            "connections",
        ];
        let (pos, opts) = self.split(words, &keys);
        let usage = "service NAME spawn=\"CMD ARGS\" [processes=N] [connections=N] [user=NAME] [cwd=DIR] [env=K=V]… | service NAME connect=unix:PATH|HOST:PORT [connections=N]";
        if !self.arity(words, &pos, 1, 1, usage) {
            return;
        }
        let name = pos[0].text.clone();
        if self.config.services.contains_key(&name) {
            return self.error(pos[0], format!("service `{name}` is already declared"));
        }
        let get = |k: &str| {
            opts.iter()
                .find(|o| o.option().is_some_and(|(key, _)| key == k))
        };
        let (spawn, connect) = (get("spawn"), get("connect"));
        let service = match (spawn, connect) {
            (Some(s), None) => {
                let argv: Vec<String> = s
                    .option()
                    .unwrap_or_default()
                    .1
                    .split_whitespace()
                    .map(String::from)
                    .collect();
                if argv.is_empty() {
                    return self.error(s, "`spawn` needs a command");
                }
                let mut processes = 1;
                let mut connections = None;
                let mut user = None;
                let mut cwd = self.config.root.clone();
                let mut env = Vec::new();
                for o in &opts {
                    match o.option().unwrap_or_default() {
                        ("processes", v) => match v.parse::<usize>() {
                            Ok(n) if (1..=256).contains(&n) => processes = n,
                            _ => self.error(o, "processes must be a number from 1 to 256"),
                        },
                        ("connections", v) => match v.parse::<usize>() {
                            Ok(n) if n >= 1 => connections = Some(n),
                            _ => self.error(o, "connections must be a number of at least 1"),
                        },
                        ("user", "") => self.error(o, "expected user=NAME"),
                        ("user", v) => user = Some(v.to_string()),
                        ("cwd", v) => cwd = self.path(v),
                        ("env", v) => match v.split_once('=') {
                            Some((k, val)) if !k.is_empty() => {
                                env.push((k.to_string(), val.to_string()))
                            }
                            _ => self.error(o, "expected env=NAME=VALUE"),
                        },
                        _ => {}
                    }
                }
                Service::Spawn {
                    argv,
                    processes,
                    // A process of a classic FastCGI program (php-cgi) serves one
                    // connection at a time: by default, one connection per process.
                    connections: connections.unwrap_or(processes),
                    user,
                    cwd,
                    env,
                }
            }
            (None, Some(c)) => {
                let mut connections = 8;
                for o in &opts {
                    match o.option().unwrap_or_default() {
                        ("connections", v) => match v.parse::<usize>() {
                            Ok(n) if n >= 1 => connections = n,
                            _ => self.error(o, "connections must be a number of at least 1"),
                        },
                        ("connect", _) => {}
                        (k, _) => {
                            self.error(o, format!("`{k}` goes with `spawn=`, not `connect=`"))
                        }
                    }
                }
                let v = c.option().unwrap_or_default().1;
                let addr = if let Some(p) = v.strip_prefix("unix:") {
                    if p.is_empty() {
                        return self.error(c, "expected connect=unix:PATH");
                    }
                    ServiceAddr::Unix(self.path(p))
                } else {
                    match v.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>())) {
                        Some((h, Ok(port))) if !h.is_empty() => ServiceAddr::Tcp(
                            h.trim_start_matches('[').trim_end_matches(']').to_string(),
                            port,
                        ),
                        _ => {
                            return self.error(c, "expected connect=unix:PATH or connect=HOST:PORT")
                        }
                    }
                };
                Service::Connect { addr, connections }
            }
            (Some(_), Some(c)) => {
                return self.error(c, "a service is either `spawn=` or `connect=`, not both")
            }
            (None, None) => {
                return self.error(
                    &words[0],
                    format!("service `{name}` needs `spawn=` or `connect=`"),
                )
            }
        };
        self.config.services.insert(name, service);
    }

    fn template(&mut self, w: &Word) -> Option<Template> {
        match Template::parse(&w.text) {
            Ok(t) => Some(t),
            Err(TemplateError::TwoStars) => {
                self.error(w, "a template has at most one `*`");
                None
            }
            Err(TemplateError::NotAPath) => {
                self.error(w, "a template is a path starting with `/`");
                None
            }
        }
    }

    fn rule(&mut self, words: &[Word], load: &mut Loader<'_>) -> Option<Rule> {
        let name = words[0].text.as_str();
        let action = match name {
            "map" => {
                let (pos, _) = self.split(words, &[]);
                if !self.arity(words, &pos, 2, 2, "map TEMPLATE RESULT") {
                    return None;
                }
                let template = self.template(pos[0])?;
                if !pos[1].text.starts_with('/') {
                    self.error(pos[1], "the result of `map` is a path starting with `/`");
                    return None;
                }
                Action::Map {
                    template,
                    result: pos[1].text.clone(),
                }
            }
            "pass" => {
                let (pos, _) = self.split(words, &[]);
                if !self.arity(words, &pos, 1, 2, "pass TEMPLATE [RESULT]") {
                    return None;
                }
                let template = self.template(pos[0])?;
                Action::Pass {
                    template,
                    result: pos.get(1).map(|w| w.text.clone()),
                }
            }
            "fail" => {
                let (pos, _) = self.split(words, &[]);
                if !self.arity(words, &pos, 1, 2, "fail TEMPLATE [STATUS]") {
                    return None;
                }
                let template = self.template(pos[0])?;
                let status = match pos.get(1) {
                    None => 403,
                    Some(w) => match w.text.parse::<u16>() {
                        Ok(s) if (400..=599).contains(&s) => s,
                        _ => {
                            self.error(w, "the status of `fail` is a number from 400 to 599");
                            return None;
                        }
                    },
                };
                Action::Fail { template, status }
            }
            "redirect" => {
                let (pos, _) = self.split(words, &[]);
                if !self.arity(
                    words,
                    &pos,
                    2,
                    3,
                    "redirect TEMPLATE URL [301|302|303|307|308]",
                ) {
                    return None;
                }
                let template = self.template(pos[0])?;
                if pos[1].text.chars().any(|c| c.is_control() || c == ' ') {
                    self.error(pos[1], "a URL cannot contain blanks or control characters");
                    return None;
                }
                let status = match pos.get(2) {
                    None => 302,
                    Some(w) => match w.text.as_str() {
                        "301" => 301,
                        "302" => 302,
                        "303" => 303,
                        "307" => 307,
                        "308" => 308,
                        _ => {
                            self.error(w, "a redirect status is 301, 302, 303, 307 or 308");
                            return None;
                        }
                    },
                };
                Action::Redirect {
                    template,
                    url: pos[1].text.clone(),
                    status,
                }
            }
            "exec" => {
                let (pos, opts) = self.split(words, &["service", "env"]);
                let mut env = Vec::new();
                let mut service = None;
                for o in &opts {
                    match o.option().unwrap_or_default() {
                        ("env", v) => match v.split_once('=') {
                            Some((k, val)) if !k.is_empty() && !k.contains('\0') => {
                                env.push((k.to_string(), val.to_string()));
                            }
                            _ => self.error(o, "expected env=NAME=VALUE"),
                        },
                        (_, v) => service = Some((v.to_string(), *o)),
                    }
                }
                if let Some((service, o)) = service {
                    if !self.arity(words, &pos, 1, 2, "exec TEMPLATE service=NAME [SCRIPT]") {
                        return None;
                    }
                    let template = self.template(pos[0])?;
                    self.service_uses.push((
                        service.clone(),
                        self.line,
                        self.source.clone(),
                        o.col,
                        o.width,
                    ));
                    Action::ExecService {
                        template,
                        service,
                        script: pos.get(1).map(|w| w.text.clone()),
                        env,
                    }
                } else {
                    if !self.arity(
                        words,
                        &pos,
                        2,
                        2,
                        "exec TEMPLATE SCRIPT [env=K=V]… | exec TEMPLATE service=NAME [SCRIPT]",
                    ) {
                        return None;
                    }
                    let template = self.template(pos[0])?;
                    Action::Exec {
                        template,
                        script: pos[1].text.clone(),
                        env,
                    }
                }
            }
            "protect" => {
                let (pos, opts) = self.split(words, &["users", "realm", "allow", "deny"]);
                let usage =
                    "protect TEMPLATE [users=FILE] [realm=TEXT] [allow=CIDR,…] [deny=CIDR,…]";
                if !self.arity(words, &pos, 1, 1, usage) {
                    return None;
                }
                let template = self.template(pos[0])?;
                let mut protection = Protection {
                    users: None,
                    realm: "weir".into(),
                    allow: Vec::new(),
                    deny: Vec::new(),
                };
                for o in &opts {
                    let (k, v) = o.option().unwrap_or_default();
                    match k {
                        "users" => {
                            let path = self.path(v);
                            match load(&path) {
                                Err(e) => {
                                    self.error(o, format!("cannot read {}: {e}", path.display()))
                                }
                                Ok(text) => match Users::parse(path.clone(), &text) {
                                    Ok(u) => protection.users = Some(u),
                                    Err((line, msg)) => {
                                        self.error(o, format!("{}:{line}: {msg}", path.display()))
                                    }
                                },
                            }
                        }
                        "realm" => {
                            if v.contains('"') || v.chars().any(char::is_control) {
                                self.error(o, "a realm cannot contain `\"` or control characters");
                            }
                            protection.realm = v.to_string();
                        }
                        _ => {
                            for part in v.split(',') {
                                match Cidr::parse(part) {
                                    Ok(c) if k == "allow" => protection.allow.push(c),
                                    Ok(c) => protection.deny.push(c),
                                    Err(e) => self.error(o, e),
                                }
                            }
                        }
                    }
                }
                if !opts
                    .iter()
                    .any(|o| matches!(o.option(), Some(("users" | "allow" | "deny", _))))
                {
                    self.error(
                        &words[0],
                        "`protect` needs at least one of users=, allow=, deny=",
                    );
                    return None;
                }
                Action::Protect {
                    template,
                    protection,
                }
            }
            "header" => {
                let (pos, _) = self.split(words, &[]);
                if !self.arity(words, &pos, 3, 3, "header TEMPLATE NAME VALUE") {
                    return None;
                }
                let template = self.template(pos[0])?;
                if pos[1].text.is_empty() || !pos[1].text.bytes().all(is_tchar) {
                    self.error(pos[1], "not a valid header field name");
                    return None;
                }
                if pos[2].text.chars().any(|c| c.is_control() && c != '\t') {
                    self.error(pos[2], "a header value cannot contain control characters");
                    return None;
                }
                Action::Header {
                    template,
                    name: pos[1].text.clone(),
                    value: pos[2].text.clone(),
                }
            }
            "presentation" => {
                let (pos, _) = self.split(words, &[]);
                if !self.arity(words, &pos, 2, 2, "presentation MIME SCRIPT") {
                    return None;
                }
                if !is_media_type(&pos[0].text) {
                    self.error(pos[0], "not a media type (expected TYPE/SUBTYPE)");
                    return None;
                }
                Action::Presentation {
                    mime: pos[0].text.clone(),
                    script: pos[1].text.clone(),
                }
            }
            "search" => {
                let (pos, _) = self.split(words, &[]);
                if !self.arity(words, &pos, 2, 2, "search TEMPLATE SCRIPT") {
                    return None;
                }
                let template = self.template(pos[0])?;
                Action::Search {
                    template,
                    script: pos[1].text.clone(),
                }
            }
            "status" => {
                let (pos, _) = self.split(words, &[]);
                if !self.arity(words, &pos, 1, 1, "status TEMPLATE") {
                    return None;
                }
                Action::Status {
                    template: self.template(pos[0])?,
                }
            }
            other => {
                self.error(&words[0], format!("unknown directive `{other}`"));
                return None;
            }
        };
        Some(Rule {
            action,
            line: self.line,
            source: self.source.trim().to_string(),
        })
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_media_type(s: &str) -> bool {
    let base = s.split(';').next().unwrap_or("").trim();
    match base.split_once('/') {
        Some((t, sub)) => {
            !t.is_empty() && !sub.is_empty() && t.bytes().chain(sub.bytes()).all(is_tchar)
        }
        None => false,
    }
}

/// Parses a size: `512`, `64K`, `16M`, `1G` (powers of 1024).
pub fn size(text: &str) -> Result<u64, String> {
    let (digits, mult) = match text.char_indices().last() {
        Some((i, 'K' | 'k')) => (&text[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&text[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&text[..i], 1 << 30),
        _ => (text, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("`{text}` is not a size (e.g. 512, 64K, 16M, 1G)"))
}

/// Parses a duration: `250ms`, `10s`, `5m`, `1h`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration (e.g. 250ms, 10s, 5m, 1h)");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let n: u64 = text[..split].parse().map_err(|_| bad())?;
    let ms = match &text[split..] {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    };
    ms.map(Duration::from_millis).ok_or_else(bad)
}

/// Services declared, for tests and `weir check`'s summary.
#[must_use]
pub fn service_names(config: &Config) -> Vec<&str> {
    config.services.keys().map(String::as_str).collect()
}

#[cfg(test)]
mod tests;
