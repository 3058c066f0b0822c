//! The server's configuration as a value, and the `weir.conf` language that describes it.
//!
//! A `Config` is immutable once built; the server holds it through a `ConfigRef`, which
//! compares and hashes by generation number so that core state stays cheap to clone, compare
//! and hash (the model checker holds many copies) while a reload swaps in a new generation.
//!
//! `parse` turns the text of a configuration file into a `Config` or into every error it
//! found, each pointing at a line and column (`lex` splits lines into words). Reading the
//! file, and any file it names (`users=` password files), is the caller's job: the parser
//! asks for them through a loader function, so `weir check`, `weir route`, the server and
//! the tests all run the same parser.

pub mod chroot;
pub mod lex;
pub mod parse;

use core::hash::{Hash, Hasher};
use core::net::SocketAddr;
use core::time::Duration;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::limits::{Limits, Timeouts};
use crate::rules::Rule;

pub use parse::{parse, parse_with_root, Diagnostic};

/// Everything the server needs to know to answer requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// The listen addresses marked `nocache` (requests arriving there bypass the cache).
    pub nocache: Vec<SocketAddr>,
    /// Event-loop threads; `None` = one per core (the shell decides).
    pub workers: Option<usize>,
    /// Threads that carry out the workers' file operations (`Open`, `ReadFile`,
    /// `ReadDir`, and reading ahead of `sendfile`) off their event loops; 0 = `off`, the
    /// workers do them inline. The core never sees the difference: it asks with an effect
    /// and is answered with an input either way.
    pub file_threads: usize,
    /// User (and group) to run as after binding, when started as root.
    pub user: Option<(String, Option<String>)>,
    /// Directory to chroot into after start-up.
    pub chroot: Option<PathBuf>,
    /// Base for relative paths: absolute, without a trailing slash.
    pub root: PathBuf,
    /// The access log, if any.
    pub access_log: Option<AccessLog>,
    /// Where errors go: `None` = standard error.
    pub error_log: Option<PathBuf>,
    /// Where `weir serve` writes its process ID, for `weir reload` and `weir stop`.
    pub pid_file: Option<PathBuf>,
    /// Welcome files tried, in order, for a request that names a directory.
    pub welcome: Vec<String>,
    /// Directory listings when no welcome file exists.
    pub listing: bool,
    /// Suffix (with its dot, lower-case) → media type, overriding the built-in table.
    pub types: BTreeMap<String, String>,
    /// The document cache; `None` = off.
    pub cache: Option<CacheSettings>,
    /// Size and count limits.
    pub limits: Limits,
    /// Time limits.
    pub timeouts: Timeouts,
    /// FastCGI services, by name.
    pub services: BTreeMap<String, Service>,
    /// The private directory holding the sockets of `spawn=` services (`NAME.sock`); the
    /// shell sets it when it creates the directory.
    pub run_dir: PathBuf,
    /// The generation of each `spawn=` service whose processes a reload replaced (1, the
    /// first, when absent); set by the shell, it names the socket (`spawn_socket`).
    pub spawn_generations: BTreeMap<String, u32>,
    /// Rules before any `host` line, in file order.
    pub rules: Vec<Rule>,
    /// Virtual-host sections, in file order.
    pub hosts: Vec<HostSection>,
}

/// The `access-log` directive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLog {
    /// The file.
    pub path: PathBuf,
    /// Its line format.
    pub format: LogFormat,
}

/// Access-log line formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// NCSA Combined Log Format.
    Combined,
    /// NCSA Common Log Format.
    Common,
    /// One JSON object per line.
    Json,
}

/// The `cache` directive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheSettings {
    /// Total bytes of cached documents.
    pub size: u64,
    /// Largest file kept.
    pub max_file: u64,
    /// How often an entry is checked against the file's metadata.
    pub revalidate: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            size: 64 << 20,
            max_file: 256 << 10,
            revalidate: Duration::from_secs(1),
        }
    }
}

/// A FastCGI service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Service {
    /// Launched and relaunched by weir.
    Spawn {
        /// Program and arguments (the program is looked up on PATH).
        argv: Vec<String>,
        /// Processes to keep running.
        processes: usize,
        /// Most connections open to it at once (default: `processes`).
        connections: usize,
        /// User to run them as.
        user: Option<String>,
        /// Working directory (absolute).
        cwd: PathBuf,
        /// Extra environment variables.
        env: Vec<(String, String)>,
    },
    /// Running elsewhere.
    Connect {
        /// Where to connect.
        addr: ServiceAddr,
        /// Most connections open to it at once.
        connections: usize,
    },
}

/// Where a `connect=` service listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceAddr {
    /// A Unix-domain socket.
    Unix(PathBuf),
    /// A TCP host (name or address) and port.
    Tcp(String, u16),
}

/// A `host` section: rules that apply when the request's host is one of `names`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSection {
    /// Host names, lower-case, without port; `*` matches any host no other section names.
    pub names: Vec<String>,
    /// The section's rules, in file order.
    pub rules: Vec<Rule>,
}

impl Config {
    /// The built-in configuration `weir serve` uses without `-c`: serve `root` on
    /// 127.0.0.1:8080 with welcome file `index.html`, listings on and the default limits.
    #[must_use]
    pub fn builtin(root: PathBuf) -> Config {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            nocache: Vec::new(),
            workers: None,
            file_threads: FILE_THREADS_DEFAULT,
            user: None,
            chroot: None,
            root,
            access_log: None,
            error_log: None,
            pid_file: None,
            welcome: vec!["index.html".to_string()],
            listing: true,
            types: BTreeMap::new(),
            cache: Some(CacheSettings::default()),
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            services: BTreeMap::new(),
            run_dir: PathBuf::from(RUN_DIR_DEFAULT),
            spawn_generations: BTreeMap::new(),
            rules: vec![Rule::pass_everything()],
            hosts: Vec::new(),
        }
    }
}

/// File threads without a `file-threads` line: enough that a few operations waiting on a
/// slow disk do not hold the others behind them in the queue (nginx's default thread pool
/// has 32). They cost a stack each and no CPU while idle.
pub const FILE_THREADS_DEFAULT: usize = 16;

/// The most `file-threads` accepted.
pub const FILE_THREADS_MAX: usize = 1024;

/// Where `spawn=` services' sockets go until the shell says otherwise.
pub const RUN_DIR_DEFAULT: &str = "/run/weir";

impl Config {
    /// Where a service listens: a `connect=` service's address, or a `spawn=` service's
    /// socket in `run_dir`.
    #[must_use]
    pub fn service_addr(&self, name: &str) -> Option<crate::server::UpstreamAddr> {
        use crate::server::UpstreamAddr;
        Some(match self.services.get(name)? {
            Service::Spawn { .. } => UpstreamAddr::Unix(self.spawn_socket(name)),
            Service::Connect {
                addr: ServiceAddr::Unix(p),
                ..
            } => UpstreamAddr::Unix(p.clone()),
            Service::Connect {
                addr: ServiceAddr::Tcp(h, port),
                ..
            } => UpstreamAddr::Tcp(h.clone(), *port),
        })
    }

    /// The socket of `spawn=` service `name`: `run_dir/NAME.sock`, or `NAME.G.sock` for
    /// generation G > 1 of it (a reload that changes a service starts a new generation
    /// beside the old one, see `spawn_generations`).
    #[must_use]
    pub fn spawn_socket(&self, name: &str) -> PathBuf {
        match self.spawn_generations.get(name) {
            Some(&g) if g > 1 => self.run_dir.join(format!("{name}.{g}.sock")),
            _ => self.run_dir.join(format!("{name}.sock")),
        }
    }

    /// The most connections a service may have open at once (its `connections=`).
    #[must_use]
    pub fn service_connections(&self, name: &str) -> usize {
        match self.services.get(name) {
            Some(Service::Spawn { connections, .. } | Service::Connect { connections, .. }) => {
                *connections
            }
            None => 0,
        }
    }
}

/// A shared, immutable configuration with a generation number.
#[derive(Clone, Debug)]
pub struct ConfigRef {
    generation: u64,
    config: Arc<Config>,
}

impl ConfigRef {
    /// Wraps `config` as generation `generation`.
    #[must_use]
    pub fn new(generation: u64, config: Config) -> ConfigRef {
        ConfigRef {
            generation,
            config: Arc::new(config),
        }
    }

    /// The generation number.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl core::ops::Deref for ConfigRef {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

impl PartialEq for ConfigRef {
    fn eq(&self, other: &Self) -> bool {
        self.generation == other.generation
    }
}

impl Eq for ConfigRef {}

impl Hash for ConfigRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.generation.hash(state);
    }
}
