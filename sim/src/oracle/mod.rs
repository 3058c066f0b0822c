//! The oracle: independent checkers that watch the run and say what broke.
//!
//! Each checker has one job and its own type (TigerBeetle's checkers, STYLE.md §3.5):
//!
//! * `contract` — the core keeps the `Input`/`Effect` protocol (streams, lifetimes,
//!   tokens, buffer limits, exit);
//! * `gateway` — the core keeps the process side of the protocol (spawn, standard input
//!   exactly the request body, output streams, kill, release exactly once), the farm
//!   limit, the `gateway` timeout and back-pressure; and it records what scripts did, for
//!   the judge's 503 and 504 and the ledger's cut connections;
//! * `service` — the core keeps the stream side of the protocol with FastCGI services
//!   (connect, read, write, close exactly once, `connections=N`), the `gateway` timeout,
//!   and answers a dead service at once; and it records what services did, for the
//!   judge's 502, 503 and 504 and the ledger's cut connections;
//! * `ledger` — every byte a client receives parses strictly as HTTP/1.1 responses (the
//!   test kit's reader, `weir_testkit::response`, which shares no code with the core),
//!   every complete request gets exactly one response, in order, and nothing comes after
//!   a connection's last response;
//! * `judge` with `model` — each response is one the reference model allows for the rules
//!   and the file versions that existed while it was served, never two versions mixed;
//! * `reload` — with reloads, each response shows the one generation of the configuration
//!   its request can have started under, wholly (its rules and media types), and the
//!   generations a connection's answers show never go down;
//! * `accesslog` — one access-log record per response, saying what its client received,
//!   and none for a request that was never answered;
//! * liveness (in `world`) — after the faults heal, everything started finishes and every
//!   connection, descriptor and timer is released.
//!
//! None of them reads the core's state or code paths: they see only what a shell and its
//! clients would see.

pub mod accesslog;
pub mod contract;
pub mod gateway;
pub mod judge;
pub mod ledger;
pub mod model;
pub mod reload;
pub mod service;
