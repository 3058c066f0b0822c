//! The shape of one run, drawn from its seed ("swarm" testing, as TigerBeetle's VOPR does).
//!
//! A fixed mix of faults finds the bugs that mix is good at and misses the rest; drawing
//! the mix itself from the seed means that over a range of seeds some runs have many tiny
//! network splits and no file changes, others large files, slow readers and resets, others
//! tight limits and short timeouts. Everything here comes from the run's one RNG, before
//! the world starts, so `--seed N` alone reproduces it; the command line can pin the fault
//! level and the step count, and both are echoed in the replay command.
//!
//! The timeouts and the world's delays are drawn together so that what the oracle treats
//! as "the server must not give up here" really is: every network or disk delay is far
//! shorter than the send timeout, so a connection cut for being slow is always a bug,
//! while a header or body timeout (408) can happen and is judged against the clock.

use core::fmt;
use core::str::FromStr;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// How hostile the world is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultLevel {
    /// Splits and delays only: no resets, short writes, stalls or failed opens.
    None,
    /// A few faults of every kind.
    Light,
    /// Many faults of every kind.
    Heavy,
}

impl FromStr for FaultLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(FaultLevel::None),
            "light" => Ok(FaultLevel::Light),
            "heavy" => Ok(FaultLevel::Heavy),
            _ => Err(format!("unknown fault level `{s}` (none, light, heavy)")),
        }
    }
}

impl fmt::Display for FaultLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultLevel::None => "none",
            FaultLevel::Light => "light",
            FaultLevel::Heavy => "heavy",
        })
    }
}

/// A bug planted on purpose in the world's side of the interface, to show that the oracle
/// notices it (the core itself is never changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inject {
    /// Sometimes hold a `Send`'s bytes back and deliver them after the next `Send`'s.
    ReorderSends,
    /// Sometimes lose the last byte of a file chunk while reporting it sent.
    DropFinalChunk,
    /// Serve file chunks from the version the path had before the open descriptor's, as
    /// a shell caching content by path and missing a change would.
    StaleFile,
    /// Sometimes ignore a `CloseFile`, leaking the descriptor.
    LoseCloseFile,
    /// Sometimes hand a script the bytes of a `WriteStdin` after those of the next one,
    /// as a shell juggling two buffers for one pipe might.
    SwapStdin,
    /// Sometimes ignore a `Release`, leaking the process and its pipes.
    LoseRelease,
    /// Sometimes drop an access-log line, as a logger that falls behind and sheds lines
    /// instead of making the workers wait would.
    LoseLogRecord,
    /// Sometimes write an access-log line twice, as a logger retrying a write that had
    /// in fact succeeded would.
    DuplicateLogRecord,
    /// Reload with `Server::reload_in_flight_too` (weir-core's `model-faults` seam), which
    /// moves every request in flight to the new generation too. The one planted bug that
    /// needs the core's help: no shell can move a request's configuration through
    /// `handle`. It turns reloads on in every run.
    ReloadInFlight,
    /// At a reload, lose one request in flight: the answer the core writes for it (and
    /// everything after it on that connection) is reported sent but never reaches the
    /// client, as a shell that swaps its workers on a reload and drops what the old one
    /// was still writing would. It turns reloads on in every run.
    LoseRequestOnReload,
    /// Never report the end of a service stream whose process died, nor fail a write to
    /// it, as a shell that misses the death would: the request waits until the `gateway`
    /// timeout instead of getting its 502 at once. It turns services on in every run.
    LoseServiceEof,
    /// Sometimes hold back a piece a service wrote and hand it to the core after the next
    /// one, as a shell juggling two buffers for one socket might. It turns services on in
    /// every run.
    SwapServiceOutput,
}

impl Inject {
    /// Every injectable bug, for tests and `--help`.
    pub const ALL: [Inject; 12] = [
        Inject::ReorderSends,
        Inject::DropFinalChunk,
        Inject::StaleFile,
        Inject::LoseCloseFile,
        Inject::SwapStdin,
        Inject::LoseRelease,
        Inject::LoseLogRecord,
        Inject::DuplicateLogRecord,
        Inject::ReloadInFlight,
        Inject::LoseRequestOnReload,
        Inject::LoseServiceEof,
        Inject::SwapServiceOutput,
    ];

    /// Is this a bug of the services' streams (which needs a service in the site)?
    #[must_use]
    pub fn needs_service(self) -> bool {
        matches!(self, Inject::LoseServiceEof | Inject::SwapServiceOutput)
    }
}

impl FromStr for Inject {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Inject::ALL
            .into_iter()
            .find(|i| i.to_string() == s)
            .ok_or_else(|| {
                format!(
                    "unknown bug `{s}` (reorder-sends, drop-final-chunk, stale-file, \
                     lose-closefile, swap-stdin, lose-release, lose-log-record, \
                     duplicate-log-record, reload-in-flight, lose-request-on-reload, \
                     lose-service-eof, \
                     swap-service-output)"
                )
            })
    }
}

impl fmt::Display for Inject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Inject::ReorderSends => "reorder-sends",
            Inject::DropFinalChunk => "drop-final-chunk",
            Inject::StaleFile => "stale-file",
            Inject::LoseCloseFile => "lose-closefile",
            Inject::SwapStdin => "swap-stdin",
            Inject::LoseRelease => "lose-release",
            Inject::LoseLogRecord => "lose-log-record",
            Inject::DuplicateLogRecord => "duplicate-log-record",
            Inject::ReloadInFlight => "reload-in-flight",
            Inject::LoseRequestOnReload => "lose-request-on-reload",
            Inject::LoseServiceEof => "lose-service-eof",
            Inject::SwapServiceOutput => "swap-service-output",
        })
    }
}

/// An access-log format (`access-log FILE format=…`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// NCSA Common Log Format.
    Common,
    /// NCSA Combined Log Format (Common plus referer and user agent).
    Combined,
    /// One JSON object per line.
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Common => "common",
            LogFormat::Combined => "combined",
            LogFormat::Json => "json",
        })
    }
}

/// What the caller fixes; everything else is drawn from the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Args {
    /// The seed.
    pub seed: u64,
    /// World events in the safety phase.
    pub steps: u64,
    /// The fault level; `None` = drawn from the seed.
    pub faults: Option<FaultLevel>,
    /// A bug to plant, if any.
    pub inject: Option<Inject>,
    /// Check what today's core is known to get wrong: a cut connection may not lose the
    /// complete responses queued before the request whose script failed; scripts write
    /// header sections over the limit (`bad-long`); a spawn sometimes completes only
    /// after the gateway timeout.
    pub strict: bool,
}

/// Default number of safety-phase steps.
pub const STEPS_DEFAULT: u64 = 3_000;

impl Args {
    /// The one command that replays this run.
    #[must_use]
    pub fn replay_command(&self, faults: FaultLevel) -> String {
        let mut s = format!(
            "weir-sim --seed {} --steps {} --faults {faults}",
            self.seed, self.steps
        );
        if let Some(i) = self.inject {
            s.push_str(&format!(" --inject {i}"));
        }
        if self.strict {
            s.push_str(" --strict");
        }
        s
    }
}

/// Per-mille probability (an integer, so that options print and compare exactly).
pub type Permille = u32;

/// Every knob of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// What the caller fixed.
    pub args: Args,
    /// The fault level in force.
    pub faults: FaultLevel,
    /// Clients open at once during the safety phase.
    pub clients_max: usize,
    /// Requests one client makes at most.
    pub requests_per_client_max: usize,
    /// Chance a client pipelines (writes every request at once) instead of waiting.
    pub pipeline: Permille,
    /// Chance a request is malformed or hostile.
    pub hostile: Permille,
    /// Largest piece a client writes at once.
    pub split_max: usize,
    /// Longest one-way network delay.
    pub net_delay_max_ms: u64,
    /// Longest a client thinks between two requests.
    pub think_max_ms: u64,
    /// Longest an `Open` takes.
    pub open_delay_max_ms: u64,
    /// Chance a `Send` is answered with a short write.
    pub short_write: Permille,
    /// Chance a client resets its connection at some point.
    pub reset: Permille,
    /// Chance a client stalls in the middle of a request for longer than the timeouts.
    pub stall: Permille,
    /// Chance an `Open` fails with "too many open files".
    pub open_exhausted: Permille,
    /// Mean time between two file-system changes.
    pub fs_change_every_ms: u64,
    /// Largest file.
    pub file_size_max: usize,
    /// `limit request-line=`.
    pub request_line_max: usize,
    /// `limit header-bytes=`.
    pub header_bytes_max: usize,
    /// `limit headers=`.
    pub headers_max: usize,
    /// `limit body=`.
    pub body_max: u64,
    /// `limit connections=`.
    pub connections_max: usize,
    /// `timeout header=`.
    pub header_timeout_ms: u64,
    /// `timeout body=`.
    pub body_timeout_ms: u64,
    /// `timeout idle=`.
    pub idle_timeout_ms: u64,
    /// `timeout send=`.
    pub send_timeout_ms: u64,
    /// The site has an `exec /cgi-bin/* cgi-bin/*` rule.
    pub cgi: bool,
    /// Chance a valid request asks for a script under `/cgi-bin/` (with or without the
    /// rule: without it, or shadowed, the script files are plain documents).
    pub cgi_share: Permille,
    /// `limit cgi=`.
    pub cgi_max: usize,
    /// `timeout gateway=`.
    pub gateway_timeout_ms: u64,
    /// Longest a script takes for one step (a read, a write, its exit).
    pub script_delay_max_ms: u64,
    /// Capacity of each simulated pipe (a script's stdin, stdout, stderr).
    pub pipe_capacity: usize,
    /// Largest output a `flood` script writes.
    pub flood_max: usize,
    /// Chance a `Spawn` fails with "too many processes" (`EAGAIN`).
    pub spawn_exhausted: Permille,
    /// `access-log sim.log format=…`, or no access log.
    pub access_log: Option<LogFormat>,
    /// Mean time between two reloads (`Input::Reload`), or no reloads.
    pub reload_every_ms: Option<u64>,
    /// The site declares FastCGI service `app` (`connect=unix:…`) and an
    /// `exec /svc/* service=app` rule.
    pub svc: bool,
    /// Chance a valid request asks for `/svc/…`.
    pub svc_share: Permille,
    /// The service's `connections=`.
    pub svc_connections: usize,
    /// Even generations move the service to its other socket (with reloads).
    pub svc_moves: bool,
    /// Mean time between two restarts of the service (every process killed, connections
    /// refused, `Down` then `Ready` published), or none.
    pub svc_restart_every_ms: Option<u64>,
    /// Longest a restart keeps the service down.
    pub svc_down_max_ms: u64,
    /// How long the service's servers keep an idle connection open (in half the runs;
    /// else for ever).
    pub svc_idle_ms: Option<u64>,
    /// With reloads, even generations double `timeout gateway=` (the requests of each
    /// keep their own generation's).
    pub gateway_moves: bool,
}

impl Options {
    /// Draws the options; the RNG is the run's only one, so this is its first use.
    pub fn draw(args: Args, rng: &mut ChaCha8Rng) -> Options {
        let drawn = match rng.random_range(0..3u32) {
            0 => FaultLevel::None,
            1 => FaultLevel::Light,
            _ => FaultLevel::Heavy,
        };
        let faults = args.faults.unwrap_or(drawn);
        // The fault rates: zero, or a per-seed rate within the level's range.
        let mut rate = |light: Permille, heavy: Permille| match faults {
            FaultLevel::None => 0,
            FaultLevel::Light => rng.random_range(0..=light),
            FaultLevel::Heavy => rng.random_range(light..=heavy),
        };
        let short_write = rate(200, 800);
        let reset = rate(50, 300);
        let stall = rate(20, 100);
        let open_exhausted = rate(10, 80);
        let net_delay_max_ms = rng.random_range(0..=50);
        let open_delay_max_ms = rng.random_range(0..=20);
        let header_timeout_ms = rng.random_range(1_000..=10_000);
        // The head limit leaves room for the longest request line, so that a line just
        // past its own limit is judged as a line (414), not as a head (431).
        let request_line_max = rng.random_range(256..=8_192);
        let header_bytes_max = rng.random_range(request_line_max + 1_024..=40_000);
        Options {
            args,
            faults,
            clients_max: rng.random_range(1..=12),
            requests_per_client_max: rng.random_range(1..=8),
            pipeline: rng.random_range(0..=1000),
            hostile: rng.random_range(0..=200),
            split_max: *[1, 7, 64, 512, 1 << 16]
                .get(rng.random_range(0..5))
                .unwrap_or(&64),
            net_delay_max_ms,
            think_max_ms: rng.random_range(0..=500),
            open_delay_max_ms,
            short_write,
            reset,
            stall,
            open_exhausted,
            fs_change_every_ms: rng.random_range(20..=2_000),
            file_size_max: *[16, 300, 4_096, 70_000]
                .get(rng.random_range(0..4))
                .unwrap_or(&300),
            request_line_max,
            header_bytes_max,
            headers_max: rng.random_range(16..=100),
            body_max: rng.random_range(1_024..=1 << 20),
            connections_max: rng.random_range(2..=16),
            header_timeout_ms,
            body_timeout_ms: rng.random_range(1_000..=10_000),
            idle_timeout_ms: rng.random_range(500..=60_000),
            // Far beyond any delay the world makes: a send timeout is never legitimate.
            send_timeout_ms: 60_000,
            cgi: false,
            cgi_share: 0,
            cgi_max: 1,
            gateway_timeout_ms: 1_000,
            script_delay_max_ms: 0,
            pipe_capacity: 4_096,
            flood_max: 0,
            spawn_exhausted: 0,
            access_log: None,
            reload_every_ms: None,
            svc: false,
            svc_share: 0,
            svc_connections: 1,
            svc_moves: false,
            svc_restart_every_ms: None,
            svc_down_max_ms: 0,
            svc_idle_ms: None,
            gateway_moves: false,
        }
        .draw_gateways(rng)
        .draw_logs(rng)
        .draw_reloads(rng)
        .draw_services(rng)
    }

    /// The FastCGI service, drawn last: in a third of the runs (every run with a bug of the
    /// services' streams), a share of requests goes to `/svc/…`; under faults the
    /// service restarts now and then; with reloads, it may move between two sockets.
    fn draw_services(mut self, rng: &mut ChaCha8Rng) -> Options {
        let on = rng.random_range(0..3u32) == 0;
        self.svc = on || self.args.inject.is_some_and(Inject::needs_service);
        self.svc_share = rng.random_range(50..=300);
        self.svc_connections = rng.random_range(1..=4);
        self.svc_moves = rng.random_bool(0.5);
        let every = *[300, 1_000, 5_000]
            .get(rng.random_range(0..3))
            .unwrap_or(&1_000);
        self.svc_restart_every_ms = (self.faults != FaultLevel::None).then_some(every);
        self.svc_down_max_ms = rng.random_range(10..=1_500);
        let idle = rng.random_range(200..=3_000);
        self.svc_idle_ms = rng.random_bool(0.5).then_some(idle);
        self.gateway_moves = rng.random_bool(0.5);
        self
    }

    /// The longest `timeout gateway=` any generation has.
    #[must_use]
    pub fn gateway_timeout_max_ms(&self) -> u64 {
        if self.gateway_moves && self.reload_every_ms.is_some() {
            2 * self.gateway_timeout_ms
        } else {
            self.gateway_timeout_ms
        }
    }

    /// The gateway knobs, drawn after everything else so that the older knobs of a seed
    /// stay what they were. The script delays stay far below the gateway timeout, so that
    /// a well-behaved script times out only when its client is slow to send the body.
    fn draw_gateways(mut self, rng: &mut ChaCha8Rng) -> Options {
        self.cgi = rng.random_bool(0.6);
        self.cgi_share = rng.random_range(50..=500);
        self.cgi_max = rng.random_range(1..=4);
        self.gateway_timeout_ms = rng.random_range(300..=3_000);
        self.script_delay_max_ms = rng.random_range(0..=self.gateway_timeout_ms / 10);
        self.pipe_capacity = *[1_024, 4_096, 65_536]
            .get(rng.random_range(0..3))
            .unwrap_or(&4_096);
        // Floods far beyond the server's buffers, but not so many pipefuls that a run
        // spends itself on one script.
        self.flood_max = *[20_000, 150_000, 600_000]
            .get(rng.random_range(0..3))
            .unwrap_or(&20_000)
            .min(&(self.pipe_capacity * 40));
        self.spawn_exhausted = match self.faults {
            FaultLevel::None => 0,
            FaultLevel::Light => rng.random_range(0..=20),
            FaultLevel::Heavy => rng.random_range(20..=100),
        };
        self
    }

    /// The access log, drawn last for the same reason: off in a quarter of the runs (the
    /// core must then log nothing), otherwise in one of its formats.
    fn draw_logs(mut self, rng: &mut ChaCha8Rng) -> Options {
        self.access_log = match rng.random_range(0..4u32) {
            0 => None,
            1 => Some(LogFormat::Common),
            2 => Some(LogFormat::Combined),
            _ => Some(LogFormat::Json),
        };
        self
    }

    /// Reloads, drawn last: in a third of the runs (every run with a reload bug), the world hands the core a new generation of the configuration every
    /// `reload_every_ms` on average, from a few per request to one every few seconds.
    fn draw_reloads(mut self, rng: &mut ChaCha8Rng) -> Options {
        let on = rng.random_range(0..3u32) == 0;
        let every = *[30, 200, 1_000, 4_000]
            .get(rng.random_range(0..4))
            .unwrap_or(&1_000);
        let planted = matches!(
            self.args.inject,
            Some(Inject::ReloadInFlight | Inject::LoseRequestOnReload)
        );
        if on || planted {
            self.reload_every_ms = Some(every);
        }
        self
    }

    /// The longest the world ever keeps the server waiting on one operation, when no
    /// stall is planned: the send timeout must stay well above it.
    #[must_use]
    pub fn world_delay_max_ms(&self) -> u64 {
        self.net_delay_max_ms + self.open_delay_max_ms + self.think_max_ms
    }
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed={} steps={} faults={} inject={} clients_max={} requests_per_client_max={} \
             pipeline={}‰ hostile={}‰ split_max={} net_delay_max={}ms think_max={}ms \
             open_delay_max={}ms short_write={}‰ reset={}‰ stall={}‰ open_exhausted={}‰ \
             fs_change_every={}ms file_size_max={} request_line_max={} header_bytes_max={} \
             headers_max={} body_max={} connections_max={} header_timeout={}ms \
             body_timeout={}ms idle_timeout={}ms send_timeout={}ms cgi={} cgi_share={}‰ \
             cgi_max={} gateway_timeout={}ms script_delay_max={}ms pipe_capacity={} \
             flood_max={} spawn_exhausted={}‰ access_log={} reload_every={} svc={} \
             svc_share={}‰ svc_connections={} svc_moves={} svc_restart_every={} \
             svc_down_max={}ms svc_idle={} gateway_moves={}",
            self.args.seed,
            self.args.steps,
            self.faults,
            self.args
                .inject
                .map_or_else(|| "none".to_string(), |i| i.to_string()),
            self.clients_max,
            self.requests_per_client_max,
            self.pipeline,
            self.hostile,
            self.split_max,
            self.net_delay_max_ms,
            self.think_max_ms,
            self.open_delay_max_ms,
            self.short_write,
            self.reset,
            self.stall,
            self.open_exhausted,
            self.fs_change_every_ms,
            self.file_size_max,
            self.request_line_max,
            self.header_bytes_max,
            self.headers_max,
            self.body_max,
            self.connections_max,
            self.header_timeout_ms,
            self.body_timeout_ms,
            self.idle_timeout_ms,
            self.send_timeout_ms,
            self.cgi,
            self.cgi_share,
            self.cgi_max,
            self.gateway_timeout_ms,
            self.script_delay_max_ms,
            self.pipe_capacity,
            self.flood_max,
            self.spawn_exhausted,
            self.access_log
                .map_or_else(|| "off".to_string(), |l| l.to_string()),
            self.reload_every_ms
                .map_or_else(|| "off".to_string(), |ms| format!("{ms}ms")),
            self.svc,
            self.svc_share,
            self.svc_connections,
            self.svc_moves,
            self.svc_restart_every_ms
                .map_or_else(|| "off".to_string(), |ms| format!("{ms}ms")),
            self.svc_down_max_ms,
            self.svc_idle_ms
                .map_or_else(|| "off".to_string(), |ms| format!("{ms}ms")),
            self.gateway_moves,
        )
    }
}
