//! A fixed-capacity map from a window key (`u64`) to a slot index in the window table:
//! open addressing with linear probing and backward-shift deletion, preallocated at
//! setup (twice the capacity, a power of two), so lookups, inserts and removals never
//! allocate. A full table refuses an insert; it never evicts or merges keys.

const EMPTY: u32 = u32::MAX;

/// Key -> slot, with at most `capacity` keys.
#[derive(Debug)]
pub(crate) struct KeyTable {
    keys: Vec<u64>,
    slots: Vec<u32>,
    mask: usize,
    /// Free slot indices (a stack).
    free: Vec<u32>,
    len: usize,
}

impl KeyTable {
    /// A table for `capacity` keys (slot indices `0..capacity`).
    pub(crate) fn new(capacity: usize) -> Self {
        let size = (capacity.max(1) * 2).next_power_of_two();
        KeyTable {
            keys: vec![0; size],
            slots: vec![EMPTY; size],
            mask: size - 1,
            free: (0..capacity as u32).rev().collect(),
            len: 0,
        }
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        // Fibonacci hashing: keys are often small consecutive ids.
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & self.mask
    }

    /// The slot of `key`, if present.
    #[inline]
    pub(crate) fn get(&self, key: u64) -> Option<usize> {
        let mut i = self.home(key);
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if self.keys[i] == key {
                return Some(s as usize);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The slot of `key`, inserting it if absent; `None` when the table is full.
    /// `(slot, inserted)`.
    pub(crate) fn get_or_insert(&mut self, key: u64) -> Option<(usize, bool)> {
        let mut i = self.home(key);
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                let slot = self.free.pop()?;
                self.keys[i] = key;
                self.slots[i] = slot;
                self.len += 1;
                return Some((slot as usize, true));
            }
            if self.keys[i] == key {
                return Some((s as usize, false));
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Removes `key` and frees its slot (no-op when absent).
    pub(crate) fn remove(&mut self, key: u64) {
        let mut i = self.home(key);
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return;
            }
            if self.keys[i] == key {
                break;
            }
            i = (i + 1) & self.mask;
        }
        self.free.push(self.slots[i]);
        self.len -= 1;
        // Backward shift: pull later entries of the probe run into the hole when their
        // home is not between the hole and them, so lookups never stop early.
        let mut hole = i;
        let mut j = (i + 1) & self.mask;
        while self.slots[j] != EMPTY {
            let home = self.home(self.keys[j]);
            let dist_j = j.wrapping_sub(home) & self.mask;
            let dist_hole = hole.wrapping_sub(home) & self.mask;
            if dist_hole <= dist_j {
                self.keys[hole] = self.keys[j];
                self.slots[hole] = self.slots[j];
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        self.slots[hole] = EMPTY;
    }

    /// Keys held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Against a HashMap with a size limit: same presence, distinct slots, refusal
        /// exactly when full.
        #[test]
        fn behaves_like_a_bounded_map(cap in 1usize..12,
                                      ops in proptest::collection::vec((any::<bool>(), 0u64..24), 0..200)) {
            let mut t = KeyTable::new(cap);
            let mut model: HashMap<u64, usize> = HashMap::new();
            for (insert, key) in ops {
                if insert {
                    let got = t.get_or_insert(key);
                    match model.get(&key) {
                        Some(&s) => prop_assert_eq!(got, Some((s, false))),
                        None if model.len() == cap => prop_assert_eq!(got, None),
                        None => {
                            let (s, new) = got.unwrap();
                            prop_assert!(new && s < cap && !model.values().any(|&v| v == s));
                            model.insert(key, s);
                        }
                    }
                } else {
                    t.remove(key);
                    model.remove(&key);
                }
                prop_assert_eq!(t.len(), model.len());
                for k in 0..24 {
                    prop_assert_eq!(t.get(k), model.get(&k).copied());
                }
            }
        }
    }
}
