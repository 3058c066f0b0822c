//! The connection table: each open connection's slot, by `ConnId`.
//!
//! # Theory of operation
//!
//! The server looks a connection up a score of times per request (every input, every
//! event, every answer), so the table is a hash map with a hasher made for `ConnId`s: one
//! multiplication, no SipHash rounds (ids come from the shell and the simulator, not from
//! the network, so there is nothing for an attacker to collide). A B-tree did the same job
//! with a dozen key comparisons per look-up, which the profile showed.
//!
//! Two things a hash map does not give by itself, and the table does:
//!
//! * **Determinism.** The simulator's runs must repeat exactly for a seed, so nothing
//!   depends on the map's internal order: [`ConnTable::ids`] lists ids sorted, and the
//!   hasher has no random state.
//! * **Hashing as a value.** The model checker hashes whole server states: equal tables
//!   (same ids, equal slots) hash equally, whatever order their entries were inserted in,
//!   because the entries are hashed in id order.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::ids::ConnId;

/// Slots by connection id (see the module documentation).
#[derive(Clone, PartialEq, Eq)]
pub(super) struct ConnTable<V>(HashMap<ConnId, V, BuildHasherDefault<IdHasher>>);

impl<V> ConnTable<V> {
    /// An empty table.
    pub(super) fn new() -> ConnTable<V> {
        ConnTable(HashMap::default())
    }

    pub(super) fn get(&self, id: &ConnId) -> Option<&V> {
        self.0.get(id)
    }

    pub(super) fn get_mut(&mut self, id: &ConnId) -> Option<&mut V> {
        self.0.get_mut(id)
    }

    pub(super) fn insert(&mut self, id: ConnId, v: V) -> Option<V> {
        self.0.insert(id, v)
    }

    pub(super) fn remove(&mut self, id: &ConnId) -> Option<V> {
        self.0.remove(id)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every id, in increasing order.
    pub(super) fn ids(&self) -> Vec<ConnId> {
        let mut ids: Vec<ConnId> = self.0.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    fn sorted(&self) -> Vec<(&ConnId, &V)> {
        let mut entries: Vec<(&ConnId, &V)> = self.0.iter().collect();
        entries.sort_unstable_by_key(|(id, _)| **id);
        entries
    }
}

impl<V: Hash> Hash for ConnTable<V> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let entries = self.sorted();
        entries.len().hash(state);
        for (id, v) in entries {
            id.hash(state);
            v.hash(state);
        }
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for ConnTable<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.sorted()).finish()
    }
}

/// A hasher for `ConnId`s: the id times an odd constant (Fibonacci hashing), folded so
/// that the high bits, which pick the bucket's control byte, depend on every bit.
#[derive(Clone, Copy, Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by `ConnId` (it writes one u64); FNV-1a keeps other keys correct.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        let h = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 29);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    fn hash_of<T: Hash>(t: &T) -> u64 {
        let mut h = DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    }

    #[test]
    fn equal_tables_hash_equally_whatever_the_insertion_order() {
        let mut a = ConnTable::new();
        let mut b = ConnTable::new();
        for i in 0..100u64 {
            a.insert(ConnId(i * 7919), i);
        }
        for i in (0..100u64).rev() {
            b.insert(ConnId(i * 7919), i);
        }
        assert_eq!(a, b);
        assert_eq!(hash_of(&a), hash_of(&b));
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        let ids = a.ids();
        assert!(ids.windows(2).all(|w| w[0] < w[1]) && ids.len() == 100);
        b.remove(&ConnId(0));
        assert_ne!(a, b);
        assert!(b.get(&ConnId(0)).is_none() && b.len() == 99 && !b.is_empty());
    }
}
