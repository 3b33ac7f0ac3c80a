//! The footer of a sealed segment: what is in it, so that recovery trusts the segment
//! without reading it and a filtered replay skips it without reading it.
//!
//! ```text
//!  0 magic "DNJFOOT1" | 8 first_seq | 16 count | 24 min_ts | 32 max_ts | 40 watermark
//!  48 sealed_unix_ns | 56 tombstones | 64..192 type bitmap (1024 bits) | 192..252 zero
//!  252 crc32c of 0..252
//! ```

use crate::event::Event;
use crate::names::{EventType, MAX_EVENT_TYPES};

/// Bytes of a footer.
pub const FOOTER_SIZE: usize = 256;
const MAGIC: [u8; 8] = *b"DNJFOOT1";
const BITMAP_AT: usize = 64;
const BITMAP_BYTES: usize = MAX_EVENT_TYPES / 8;
const CRC_AT: usize = FOOTER_SIZE - 4;
const _: () = assert!(BITMAP_AT + BITMAP_BYTES <= CRC_AT);

/// A set of event types as a 1024-bit map. A type id beyond the map (possible only in
/// bytes from outside) is folded onto the last bit: a false positive makes a filtered
/// replay read a segment it could have skipped, never skip one it needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeSet([u64; MAX_EVENT_TYPES / 64]);

impl Default for TypeSet {
    fn default() -> Self {
        TypeSet([0; MAX_EVENT_TYPES / 64])
    }
}

impl TypeSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }
    fn bit(t: EventType) -> usize {
        usize::from(t.0).min(MAX_EVENT_TYPES - 1)
    }
    /// Adds a type.
    pub fn insert(&mut self, t: EventType) {
        let b = Self::bit(t);
        self.0[b / 64] |= 1 << (b % 64);
    }
    /// Whether the type is (or may be, for folded ids) in the set.
    pub fn contains(&self, t: EventType) -> bool {
        let b = Self::bit(t);
        self.0[b / 64] & (1 << (b % 64)) != 0
    }
    /// Whether the two sets share a type.
    pub fn intersects(&self, other: &TypeSet) -> bool {
        self.0.iter().zip(other.0.iter()).any(|(a, b)| a & b != 0)
    }
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
}

/// What a segment holds, kept up to date by the writer and written as its footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// The first sequence number of the segment.
    pub first_seq: u64,
    /// Records in the segment (tombstones included).
    pub count: u64,
    /// Smallest event timestamp (`u64::MAX` with no events).
    pub min_ts: u64,
    /// Largest event timestamp (0 with no events).
    pub max_ts: u64,
    /// The journal's timestamp watermark after the segment's last record.
    pub watermark: u64,
    /// Wall-clock time of sealing, nanoseconds since the Unix epoch (0 until sealed).
    pub sealed_unix_ns: u64,
    /// Records that `repair` turned into tombstones.
    pub tombstones: u64,
    /// The event types in the segment.
    pub types: TypeSet,
}

impl Summary {
    /// An empty segment's summary.
    pub fn empty(first_seq: u64, watermark: u64) -> Self {
        Summary {
            first_seq,
            count: 0,
            min_ts: u64::MAX,
            max_ts: 0,
            watermark,
            sealed_unix_ns: 0,
            tombstones: 0,
            types: TypeSet::new(),
        }
    }

    /// Accounts for one more event record (no allocation, a few compares).
    pub fn add<const SLOT: usize>(&mut self, event: &Event<SLOT>, watermark: u64) {
        let h = event.header();
        self.count += 1;
        self.min_ts = self.min_ts.min(h.timestamp_ns());
        self.max_ts = self.max_ts.max(h.timestamp_ns());
        self.watermark = watermark;
        self.types.insert(h.event_type());
    }

    /// Accounts for one more tombstone.
    pub fn add_tombstone(&mut self) {
        self.count += 1;
        self.tombstones += 1;
    }

    /// The last sequence number, or `first_seq - 1` when empty.
    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.count - 1
    }

    /// The footer bytes.
    pub fn encode(&self) -> [u8; FOOTER_SIZE] {
        let mut b = [0u8; FOOTER_SIZE];
        b[..8].copy_from_slice(&MAGIC);
        for (i, v) in [
            self.first_seq,
            self.count,
            self.min_ts,
            self.max_ts,
            self.watermark,
            self.sealed_unix_ns,
            self.tombstones,
        ]
        .into_iter()
        .enumerate()
        {
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        for (i, w) in self.types.0.iter().enumerate() {
            b[BITMAP_AT + 8 * i..BITMAP_AT + 8 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b[..CRC_AT]);
        b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads a footer; `None` when the magic or the CRC is wrong (not sealed, or damaged).
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != FOOTER_SIZE || b[..8] != MAGIC {
            return None;
        }
        let crc = u32::from_le_bytes(b[CRC_AT..].try_into().ok()?);
        if crc != crc32c::crc32c(&b[..CRC_AT]) {
            return None;
        }
        let u =
            |i: usize| u64::from_le_bytes(b[8 + 8 * i..16 + 8 * i].try_into().unwrap_or([0; 8]));
        let mut types = TypeSet::new();
        for (i, w) in types.0.iter_mut().enumerate() {
            *w = u64::from_le_bytes(
                b[BITMAP_AT + 8 * i..BITMAP_AT + 8 + 8 * i]
                    .try_into()
                    .unwrap_or([0; 8]),
            );
        }
        Some(Summary {
            first_seq: u(0),
            count: u(1),
            min_ts: u(2),
            max_ts: u(3),
            watermark: u(4),
            sealed_unix_ns: u(5),
            tombstones: u(6),
            types,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_round_trips_and_a_flipped_bit_unseals_it() {
        let mut s = Summary::empty(10, 5);
        let e: Event = Event::new(EventType::AGENT_TASK);
        s.add(&e, 9);
        s.add_tombstone();
        s.sealed_unix_ns = 77;
        let b = s.encode();
        assert_eq!(Summary::decode(&b), Some(s));
        assert!(Summary::decode(&b)
            .unwrap()
            .types
            .contains(EventType::AGENT_TASK));
        assert_eq!(s.last_seq(), 11);
        for i in [0, 9, 70, 200, 253] {
            let mut c = b;
            c[i] ^= 4;
            assert_eq!(Summary::decode(&c), None, "byte {i}");
        }
        assert_eq!(Summary::decode(&[0u8; FOOTER_SIZE]), None);
    }

    #[test]
    fn type_sets_fold_large_ids_and_intersect() {
        let mut a = TypeSet::new();
        a.insert(EventType(3));
        a.insert(EventType(5000));
        assert!(a.contains(EventType(1023)));
        let mut b = TypeSet::new();
        b.insert(EventType(4));
        assert!(!a.intersects(&b));
        b.insert(EventType(3));
        assert!(a.intersects(&b));
    }
}
