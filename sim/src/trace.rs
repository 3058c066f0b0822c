//! The trace hash: FNV-1a (64-bit) over every input and effect, in order, fed through
//! their derived `Hash` (the world's own events go in as text). Formatting each input and
//! effect with `Debug`, as `--trace` prints them, was most of the cost of a run; hashing
//! the values themselves, eight bytes at a time, is nearly free and as deterministic: the
//! derived `Hash` of these types depends only on their values (and on the build).
//!
//! Two runs of one seed must print the same hash; if they do not, something in the world
//! or the core depends on more than the seed (a hash map's order, an address, a clock).
//! FNV-1a is used because it is tiny, has no dependency and no per-process key.

/// An FNV-1a hasher.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Fnv {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// A fresh hash.
    #[must_use]
    pub fn new() -> Fnv {
        Fnv(Self::OFFSET)
    }

    /// Adds bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    /// Adds bytes eight at a time (FNV-1a over little-endian words, then the rest byte
    /// by byte): for payloads of kilobytes, where byte-wise FNV's chain of multiplies
    /// shows in a profile. Not the same hash as `write` over the same bytes.
    pub fn write_wide(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            self.0 ^= u64::from_le_bytes(word);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
        self.write(words.remainder());
    }

    /// The hash so far.
    #[must_use]
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// For `Hash::hash`: every field's bytes go in through `write_wide`.
impl core::hash::Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        self.write_wide(bytes);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Fnv::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // From the FNV reference test suite.
        assert_eq!(Fnv::new().finish(), 0xcbf2_9ce4_8422_2325);
        let mut h = Fnv::new();
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
        let mut h = Fnv::new();
        h.write(b"foobar");
        assert_eq!(h.finish(), 0x8594_4171_f739_67e8);
        // Under eight bytes, the wide form is plain FNV-1a; past that, words count.
        let mut w = Fnv::new();
        w.write_wide(b"foobar");
        assert_eq!(w.finish(), h.finish());
        let (mut a, mut b) = (Fnv::new(), Fnv::new());
        a.write_wide(b"0123456789abcdef!");
        b.write_wide(b"0123456789abcdeg!");
        assert_ne!(a.finish(), b.finish());
    }
}
