//! What a `mio::Token` stands for, and why a stale one can never reach a new connection or
//! process.
//!
//! Connections and processes live in `slab`s, and a slab reuses the key of a closed entry
//! for the next one. mio may still hand out an event for the old descriptor in the same
//! batch (or, per its docs, sporadically later), so a token that carried only the key could
//! make the new entry act on the old one's readiness. Each entry therefore also gets a
//! *generation* (a per-worker counter), and its token carries both:
//!
//! ```text
//!   63  62  61 60   59 ...... 32   31 ......... 0
//!   0   generation (31) ........   slab key (32)        connection
//!   1   0   part    generation(28) slab key (32)        a process's pipe or pidfd
//!   1   1   0   generation (29)  slab key (32)          a stream to an upstream
//!   1   1   usize::MAX − 1 − listener index             listener (index < 2^32: bit 61 set)
//!   all ones                                           the worker's waker
//! ```
//!
//! A process registers up to four descriptors, told apart by `part` (`Part`). An event
//! whose generation differs from the slab entry's is ignored.

use mio::Token;

// The layout needs 64-bit tokens; weir targets 64-bit Unix only (it also relies on
// `sendfile` and 64-bit file offsets).
const _: () = assert!(usize::BITS == 64, "weir needs a 64-bit target");

const KIND_BIT: usize = 1 << 63;
/// With `KIND_BIT`: set for listeners and the waker, clear for processes.
const LISTENER_BIT: usize = 1 << 62;
const PART_SHIFT: u32 = 60;
const PART_MASK: usize = 0b11;
const KEY_BITS: u32 = 32;
const KEY_MASK: usize = (1 << KEY_BITS) - 1;
/// Generations are counted modulo 2^31 so the kind bit stays clear.
pub const GENERATION_MASK: u32 = (1 << 31) - 1;
/// Slab keys must fit in 32 bits; a worker refuses connections beyond that.
pub const KEY_MAX: usize = KEY_MASK;
/// Process generations are counted modulo 2^28 (the kind and part bits stay clear).
pub const PROC_GENERATION_MASK: u32 = (1 << 28) - 1;
/// Upstream generations are counted modulo 2^29 (bit 61 stays clear: listeners have it).
pub const UPSTREAM_GENERATION_MASK: u32 = (1 << 29) - 1;
/// Set in listener tokens (and the waker's), clear in upstream ones.
const NOT_UPSTREAM_BIT: usize = 1 << 61;

/// The token of the worker's `mio::Waker`.
pub const WAKER: Token = Token(usize::MAX);

/// What an event's token names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The waker: the main thread has something to say.
    Waker,
    /// A listening socket, by its index in the listen list.
    Listener(usize),
    /// A connection: slab key and generation.
    Conn {
        /// The slab key.
        key: usize,
        /// The generation the socket was registered with.
        generation: u32,
    },
    /// A stream to an upstream: slab key and generation.
    Upstream {
        /// The slab key.
        key: usize,
        /// The generation the socket was registered with.
        generation: u32,
    },
    /// One of a process's descriptors: slab key, generation and which descriptor.
    Proc {
        /// The process slab key.
        key: usize,
        /// The generation the descriptor was registered with.
        generation: u32,
        /// Which descriptor.
        part: Part,
    },
}

/// The descriptors of one process that are registered with the poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Our end of its standard input.
    Stdin,
    /// Our end of its standard output.
    Stdout,
    /// Our end of its standard error.
    Stderr,
    /// Its pidfd, readable once it has exited.
    Exit,
}

impl Part {
    const ALL: [Part; 4] = [Part::Stdin, Part::Stdout, Part::Stderr, Part::Exit];

    fn index(self) -> usize {
        match self {
            Part::Stdin => 0,
            Part::Stdout => 1,
            Part::Stderr => 2,
            Part::Exit => 3,
        }
    }
}

/// The token for listener number `index`.
#[must_use]
pub fn listener(index: usize) -> Token {
    debug_assert!(index < (1 << 32), "listener index out of range");
    Token(usize::MAX - 1 - index)
}

/// The token for the connection at `key` with `generation` (`key <= KEY_MAX`).
#[must_use]
pub fn conn(key: usize, generation: u32) -> Token {
    debug_assert!(key <= KEY_MAX, "slab key out of range");
    let generation = (generation & GENERATION_MASK) as usize;
    Token((generation << KEY_BITS) | (key & KEY_MASK))
}

/// The token for descriptor `part` of the process at `key` with `generation`
/// (`key <= KEY_MAX`).
#[must_use]
pub fn proc(key: usize, generation: u32, part: Part) -> Token {
    debug_assert!(key <= KEY_MAX, "slab key out of range");
    let generation = (generation & PROC_GENERATION_MASK) as usize;
    Token(KIND_BIT | (part.index() << PART_SHIFT) | (generation << KEY_BITS) | (key & KEY_MASK))
}

/// The token for the upstream stream at `key` with `generation` (`key <= KEY_MAX`).
#[must_use]
pub fn upstream(key: usize, generation: u32) -> Token {
    debug_assert!(key <= KEY_MAX, "slab key out of range");
    let generation = (generation & UPSTREAM_GENERATION_MASK) as usize;
    Token(KIND_BIT | LISTENER_BIT | (generation << KEY_BITS) | (key & KEY_MASK))
}

/// Decodes a token.
#[must_use]
pub fn decode(token: Token) -> Source {
    let t = token.0;
    if token == WAKER {
        Source::Waker
    } else if t & KIND_BIT != 0 && t & LISTENER_BIT != 0 && t & NOT_UPSTREAM_BIT == 0 {
        Source::Upstream {
            key: t & KEY_MASK,
            // Lossless: the value was masked to 29 bits when encoded.
            generation: ((t >> KEY_BITS) as u32) & UPSTREAM_GENERATION_MASK,
        }
    } else if t & KIND_BIT != 0 && t & LISTENER_BIT != 0 {
        Source::Listener(usize::MAX - 1 - t)
    } else if t & KIND_BIT != 0 {
        Source::Proc {
            key: t & KEY_MASK,
            // Lossless: the value was masked to 28 bits when encoded.
            generation: ((t >> KEY_BITS) as u32) & PROC_GENERATION_MASK,
            part: Part::ALL[(t >> PART_SHIFT) & PART_MASK],
        }
    } else {
        Source::Conn {
            key: t & KEY_MASK,
            // Lossless: the value was masked to 31 bits when encoded.
            generation: ((t >> KEY_BITS) as u32) & GENERATION_MASK,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        assert_eq!(decode(WAKER), Source::Waker);
        for i in [0, 1, 7, 65_535] {
            assert_eq!(decode(listener(i)), Source::Listener(i));
        }
        for (key, generation) in [(0, 0), (5, 1), (KEY_MAX, GENERATION_MASK), (42, 123_456)] {
            assert_eq!(
                decode(conn(key, generation)),
                Source::Conn { key, generation }
            );
        }
    }

    #[test]
    fn process_tokens_round_trip_and_differ_from_the_rest() {
        for (key, generation) in [(0, 0), (5, 1), (KEY_MAX, PROC_GENERATION_MASK), (42, 99)] {
            for part in Part::ALL {
                let t = proc(key, generation, part);
                assert_eq!(
                    decode(t),
                    Source::Proc {
                        key,
                        generation,
                        part
                    }
                );
                assert_ne!(t, WAKER);
                assert_ne!(t, conn(key, generation));
            }
        }
        assert_eq!(
            decode(listener(u32::MAX as usize)),
            Source::Listener(u32::MAX as usize)
        );
        let wrapped = proc(1, u32::MAX, Part::Exit);
        assert_eq!(
            decode(wrapped),
            Source::Proc {
                key: 1,
                generation: PROC_GENERATION_MASK,
                part: Part::Exit
            }
        );
    }

    #[test]
    fn upstream_tokens_round_trip_and_differ_from_listeners() {
        for (key, generation) in [(0, 0), (5, 1), (KEY_MAX, UPSTREAM_GENERATION_MASK), (7, 9)] {
            let t = upstream(key, generation);
            assert_eq!(decode(t), Source::Upstream { key, generation });
            assert_ne!(t, WAKER);
        }
        for i in [0, 1, u32::MAX as usize] {
            assert_eq!(decode(listener(i)), Source::Listener(i));
        }
        assert_eq!(
            decode(upstream(2, u32::MAX)),
            Source::Upstream {
                key: 2,
                generation: UPSTREAM_GENERATION_MASK
            }
        );
    }

    #[test]
    fn generations_wrap_without_touching_the_kind_bit() {
        let t = conn(3, u32::MAX);
        assert_eq!(t.0 & KIND_BIT, 0);
        assert_eq!(
            decode(t),
            Source::Conn {
                key: 3,
                generation: GENERATION_MASK
            }
        );
    }

    #[test]
    fn same_key_different_generation_differs() {
        assert_ne!(conn(9, 1), conn(9, 2));
    }
}
