//! A piece of output: bytes in memory, or a range of an open file.
//!
//! Response bodies travel as `Chunk`s so that the shell can send a file with `sendfile`
//! without the core ever holding its contents or its descriptor.

use bytes::Bytes;

use crate::ids::FileId;

/// Bytes to transmit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Chunk {
    /// Bytes held in memory.
    Bytes(Bytes),
    /// `len` bytes of an open file starting at `offset`.
    File {
        /// The open file.
        file: FileId,
        /// Where in the file the range starts.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
}

impl Chunk {
    /// Number of bytes this chunk carries.
    #[must_use]
    pub fn len(&self) -> u64 {
        match self {
            Chunk::Bytes(b) => b.len() as u64,
            Chunk::File { len, .. } => *len,
        }
    }

    /// True if the chunk carries no bytes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the first `n` bytes (`n` must not exceed `len()`).
    pub fn advance(&mut self, n: u64) {
        assert!(n <= self.len(), "advance past the end of a chunk");
        match self {
            Chunk::Bytes(b) => {
                // unwrap-free: n <= b.len() was asserted above, so it fits in usize.
                let _ = b.split_to(n as usize);
            }
            Chunk::File { offset, len, .. } => {
                *offset += n;
                *len -= n;
            }
        }
    }
}
