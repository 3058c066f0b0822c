//! Names for the things the core and the shell share.
//!
//! The shell names what it creates (a connection is named by its slab key, a listener by its
//! index); the core names what it asks for: every effect that expects an answer carries a
//! `Token` from a core counter, and whatever that effect creates is named by the same token
//! for its whole life (`FileId(Token)`), so neither side keeps a second map of ids.

/// A client connection, named by the shell when it accepts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// A listening socket, named by the shell (its index in the listen list).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenerId(pub u32);

/// The core's name for one request to the shell and, for life, for what it creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(pub u64);

/// An open file, named by the token of the `Open` effect that opened it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub Token);

/// A byte stream to an upstream (a FastCGI service), named by the token of the `Connect`
/// effect that opened it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub Token);
