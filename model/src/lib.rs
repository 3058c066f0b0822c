//! weir-model: stateright models of weir's protocols over the real `weir-core` values.
//!
//! # Theory of operation
//!
//! Each model's state *is* the core's value (`http1::Conn`, `server::Server`,
//! `service::Supervisor`) plus a small abstract environment — a client script, a shell
//! that answers effects, a clock — and each action calls the core's real API (STYLE.md
//! §3.7). Nothing of the protocol is re-implemented; the client that reads the output is
//! the test kit's strict reader (`weir_testkit::response`), written independently of the
//! core's writer: a model that parsed the output with the code that produced it would
//! check nothing.
//!
//! * [`conn`]: one connection, a scripted client, an application and a shell.
//! * [`server`]: the whole `Server`, with the environment holding its pending effects and
//!   completing them in every order.
//! * [`supervisor`]: one service's `Supervisor`, with a launcher, processes that crash,
//!   exit, hang and serve, clients, a reload and a stop.
//! * [`reload`]: the whole `Server` reloaded at any point while requests are in flight,
//!   each response judged by the generation it shows.
//!
//! Every property has a deliberately broken environment that the checker catches with a
//! counterexample (the `*Fault` enums), so none holds vacuously — but for three of the
//! supervisor's, which no shell can break (see [`supervisor`]); the `sometimes`
//! properties show the interesting cases are reached. One broken variant needs the core's
//! help, a request moved to a new configuration mid-way (see [`reload`]): it is a seam
//! `weir-core` compiles only under its `model-faults` feature.

pub mod conn;
pub mod reload;
pub mod server;
pub mod supervisor;
