//! The rules engine (DESIGN.md §3.2): how a request path becomes an outcome.
//!
//! Rules are applied in file order: first those before any `host` line, then those of the
//! host section that matches the request. `map` rewrites the path and goes on; `protect`
//! and `header` remember something and go on; `pass`, `fail`, `redirect`, `exec` and
//! `status` stop. No stopping rule → 404.

pub mod auth;
pub mod cidr;
pub mod route;
pub mod template;

use std::path::PathBuf;

pub use cidr::Cidr;
pub use route::{
    explain_request, presentation_for, route, route_quiet, Gateway, Outcome, Route, RouteRequest,
    Step,
};
pub use template::{substitute, Template, TemplateError};

/// One rule as written in the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    /// What the rule does.
    pub action: Action,
    /// The line it came from (1-based), for `weir route`'s explanation.
    pub line: usize,
    /// The line's text, trimmed.
    pub source: String,
}

/// What a rule does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `map TEMPLATE RESULT`
    Map {
        /// Which paths.
        template: Template,
        /// The new path.
        result: String,
    },
    /// `pass TEMPLATE [RESULT]`
    Pass {
        /// Which paths.
        template: Template,
        /// The file-system path (relative to `root`), or `None` for the path itself.
        result: Option<String>,
    },
    /// `fail TEMPLATE [STATUS]`
    Fail {
        /// Which paths.
        template: Template,
        /// The answer.
        status: u16,
    },
    /// `redirect TEMPLATE URL [STATUS]`
    Redirect {
        /// Which paths.
        template: Template,
        /// The target (with `*` substituted).
        url: String,
        /// 301, 302, 303, 307 or 308.
        status: u16,
    },
    /// `exec TEMPLATE SCRIPT`: a CGI script.
    Exec {
        /// Which paths.
        template: Template,
        /// The script (relative to `root`), maybe with a `*`.
        script: String,
        /// Extra environment variables for the script (`env=K=V`).
        env: Vec<(String, String)>,
    },
    /// `exec TEMPLATE service=NAME [SCRIPT]`: a FastCGI service.
    ExecService {
        /// Which paths.
        template: Template,
        /// The service.
        service: String,
        /// SCRIPT_FILENAME template, if given.
        script: Option<String>,
        /// Extra parameters for the service (`env=K=V`).
        env: Vec<(String, String)>,
    },
    /// `protect TEMPLATE [users=FILE] [realm=TEXT] [allow=…] [deny=…]`
    Protect {
        /// Which paths.
        template: Template,
        /// The protection.
        protection: Protection,
    },
    /// `header TEMPLATE NAME VALUE`
    Header {
        /// Which paths.
        template: Template,
        /// Field name.
        name: String,
        /// Field value.
        value: String,
    },
    /// `presentation MIME SCRIPT`
    Presentation {
        /// The media type handed to the script.
        mime: String,
        /// The CGI script.
        script: String,
    },
    /// `search TEMPLATE SCRIPT`
    Search {
        /// Which paths.
        template: Template,
        /// The CGI script.
        script: String,
    },
    /// `status TEMPLATE`
    Status {
        /// Which paths.
        template: Template,
    },
}

/// A `protect` rule's requirements.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Protection {
    /// Accepted users and their password hashes, if a password is required.
    pub users: Option<Users>,
    /// The realm shown by the browser.
    pub realm: String,
    /// Addresses let in (empty = any not denied).
    pub allow: Vec<Cidr>,
    /// Addresses refused.
    pub deny: Vec<Cidr>,
}

/// The users of an htpasswd file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Users {
    /// The file they came from.
    pub path: PathBuf,
    /// User name → password hash, in file order.
    pub entries: Vec<(String, String)>,
}

impl Users {
    /// Parses htpasswd text (`user:hash` per line; blank lines and `#` comments skipped).
    /// Errors carry the 1-based line number.
    pub fn parse(path: PathBuf, text: &str) -> Result<Users, (usize, String)> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err((i + 1, "expected `user:hash`".into()));
            };
            if user.is_empty() {
                return Err((i + 1, "empty user name".into()));
            }
            if !is_supported_hash(hash) {
                return Err((
                    i + 1,
                    format!("unsupported password hash for `{user}` (use bcrypt, SHA-256/512-crypt or apr1)"),
                ));
            }
            entries.push((user.to_string(), hash.to_string()));
        }
        Ok(Users { path, entries })
    }
}

fn is_supported_hash(hash: &str) -> bool {
    ["$2y$", "$2a$", "$2b$", "$5$", "$6$", "$apr1$"]
        .iter()
        .any(|p| hash.starts_with(p))
}

impl Rule {
    /// `pass /*`: serve every path from `root` (the built-in configuration's only rule).
    #[must_use]
    pub fn pass_everything() -> Rule {
        Rule {
            action: Action::Pass {
                // unwrap: a constant template with one star.
                template: Template::parse("/*").unwrap(),
                result: None,
            },
            line: 0,
            source: "pass /*".into(),
        }
    }
}
