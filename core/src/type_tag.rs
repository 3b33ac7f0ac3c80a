//! Payload type tags: a small number that names the full [`TypeId`] of the type a payload
//! was archived from, so a read can tell, exactly, whether it asks for that same type.
//!
//! The header has eight bytes for this; a `TypeId` is sixteen (and opaque). So the tag is
//! an index into a process-wide, write-once table of `TypeId`s: the writer finds (or
//! claims) the slot holding its type's `TypeId`; the reader compares the `TypeId` in the
//! slot the tag names with its own, in full. A hash decides only where the search starts,
//! never whether two types are the same. (The 63-bit fingerprint this replaces compared
//! hashes: two types whose fingerprints collided would have passed for each other.)
//!
//! Slots are `OnceLock`s, set at most once and never changed, so a tag names the same
//! `TypeId` for the life of the process. Nothing allocates; after a type's first payload,
//! finding its tag is one hash and (usually) one acquire load, and checking it is one
//! acquire load and one 16-byte compare. When the table is full, new types get tag 0,
//! and their payloads are always validated on read (slower, still sound).

use core::any::TypeId;
use core::hash::{Hash, Hasher};
use std::sync::OnceLock;

/// Slots in the table: the distinct payload types whose reads can skip validation.
pub(crate) const SLOTS: usize = 1024;

/// The table. Slot `i` is tag `i + 1`; tag 0 names no type.
static TYPES: [OnceLock<TypeId>; SLOTS] = [const { OnceLock::new() }; SLOTS];

/// The tag of `T`, claiming a slot on its first use; 0 if the table is full.
pub(crate) fn tag_of<T: ?Sized + 'static>() -> u64 {
    let id = TypeId::of::<T>();
    let start = start_slot(id);
    for probe in 0..SLOTS {
        let slot = (start + probe) % SLOTS;
        // Sets the slot to `id` if empty; either way returns what it holds for good.
        if *TYPES[slot].get_or_init(|| id) == id {
            return slot as u64 + 1;
        }
    }
    0
}

/// Whether `tag` names `T`'s `TypeId` (compared in full). False for tag 0 and for any
/// tag outside the table.
pub(crate) fn is<T: ?Sized + 'static>(tag: u64) -> bool {
    let Some(slot) = usize::try_from(tag).ok().and_then(|t| t.checked_sub(1)) else {
        return false;
    };
    TYPES
        .get(slot)
        .and_then(OnceLock::get)
        .is_some_and(|stored| *stored == TypeId::of::<T>())
}

/// Where the search for `id`'s slot starts: a multiply-xor fold of its hash.
fn start_slot(id: TypeId) -> usize {
    struct Fold(u64);
    impl Hasher for Fold {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.write_u64(u64::from(*b));
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    let mut h = Fold(0);
    id.hash(&mut h);
    (h.finish() >> 32) as usize % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    struct A;
    struct B;

    #[test]
    fn a_tag_names_its_own_type_and_no_other() {
        let a = tag_of::<A>();
        let b = tag_of::<B>();
        assert_ne!(a, 0);
        assert_ne!(b, 0);
        assert_ne!(a, b);
        assert_eq!(tag_of::<A>(), a, "stable");
        assert!(is::<A>(a));
        assert!(!is::<B>(a));
        assert!(is::<B>(b));
        assert!(!is::<A>(b));
    }

    #[test]
    fn foreign_tags_name_nothing() {
        assert!(!is::<A>(0));
        assert!(!is::<A>(SLOTS as u64 + 1));
        assert!(!is::<A>(u64::MAX));
    }

    #[test]
    fn concurrent_first_uses_agree_on_one_slot() {
        struct C;
        let tags: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4).map(|_| s.spawn(tag_of::<C>)).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(tags.iter().all(|&t| t == tags[0] && is::<C>(t)));
    }
}
