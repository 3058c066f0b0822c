//! The server's configuration as a value.
//!
//! A `Config` is immutable once built; the server holds it through a `ConfigRef`, which
//! compares and hashes by generation number so that core state stays cheap to clone, compare
//! and hash (the model checker holds many copies) while a reload swaps in a new generation.

use core::hash::{Hash, Hasher};
use core::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::limits::{Limits, Timeouts};

/// Everything the server needs to know to answer requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// Event-loop threads; `None` = one per core (the shell decides).
    pub workers: Option<usize>,
    /// The document root: absolute, without a trailing slash.
    pub root: PathBuf,
    /// Welcome files tried, in order, for a request that names a directory.
    pub welcome: Vec<String>,
    /// Size and count limits.
    pub limits: Limits,
    /// Time limits.
    pub timeouts: Timeouts,
}

impl Config {
    /// The built-in configuration `weir serve` uses without `-c`: serve `root` on
    /// 127.0.0.1:8080 with welcome file `index.html` and the default limits.
    #[must_use]
    pub fn builtin(root: PathBuf) -> Config {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            workers: None,
            root,
            welcome: vec!["index.html".to_string()],
            limits: Limits::default(),
            timeouts: Timeouts::default(),
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
