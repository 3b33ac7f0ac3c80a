//! The memory budget: the bytes a configuration implies, computed before anything is
//! allocated and checked against a limit, so that no setting can make the process abort
//! out of memory later.
//!
//! Neither `rtrb` nor `crossbeam-queue` can report a failed allocation (they abort), so
//! this arithmetic is the guard: the bus checks it when it is built (the shared
//! structures plus one publisher's rings) and again whenever a publisher is created (its
//! rings, on top of those of every publisher still alive).
//!
//! What is counted, for `S` shards and a slot of `SLOT` bytes:
//!
//! | structure | bytes |
//! |-----------|-------|
//! | rings, per publisher | `S x (sum of the 4 ring capacities) x size_of::<Event<SLOT>>()` |
//! | timer wheels | `S x (timer_capacity x wheel node + list heads + fired buffer)` |
//! | dead-letter ring | `dead_letter_capacity x size_of::<DeadLetter<SLOT>>()` |
//! | redrive queues | `S x dead_letter_capacity x (queue slot of a Redrive)` |
//! | schedule table | a hash map of `timer_capacity` `(u64, u32)` entries |
//! | analytics (if on) | `S x` (a counter per type and per agent + 4 latency histograms) |
//!
//! Small fixed allocations (control channels, counters, names) are not counted: they do
//! not grow with any setting. All arithmetic saturates, so an absurd setting computes as
//! `usize::MAX` bytes and is refused, never wrapped.

use crate::config::Config;
use crate::dead_letters::DeadLetter;
use crate::event::Event;
use crate::retry::{Timed, MAX_FIRED_PER_POLL};
use crate::shard::Redrive;
use crate::timer_wheel::TimerWheel;

/// The default memory budget: 1 GiB. A fixed figure rather than a fraction of RAM, so a
/// configuration that builds on one machine builds on every other; raise it with
/// [`crate::BusBuilder::memory_budget`] when a bus really needs more. With the default
/// settings a bus needs about 6 MiB plus 1.8 MiB per publisher and shard.
pub const DEFAULT_MEMORY_BUDGET: usize = 1 << 30;

/// The largest capacity of one publisher->shard ring (per priority), in slots.
pub const MAX_RING_CAPACITY: usize = 1 << 24;

/// The largest dead-letter ring capacity, in letters.
pub const MAX_DEAD_LETTER_CAPACITY: usize = 1 << 24;

/// The memory a configuration implies, in bytes (see the module documentation for what
/// is counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryFootprint {
    /// Allocated once, when the bus is built: timer wheels, dead letters, redrive queues,
    /// the schedule table.
    pub fixed: usize,
    /// Allocated for each publisher when it is created (its rings to every shard) and
    /// freed after it is dropped.
    pub per_publisher: usize,
}

impl MemoryFootprint {
    /// The footprint of `config` with `SLOT`-byte slots.
    pub fn of<const SLOT: usize>(config: &Config) -> Self {
        let shards = config.shards;
        let slots_per_shard = config
            .ring_capacity
            .iter()
            .fold(0usize, |sum, &c| sum.saturating_add(c));
        let per_publisher = shards
            .saturating_mul(slots_per_shard)
            .saturating_mul(size_of::<Event<SLOT>>());
        let wheel = TimerWheel::<Timed<SLOT>>::bytes_for(config.timer_capacity)
            .saturating_add(MAX_FIRED_PER_POLL * size_of::<Timed<SLOT>>());
        let dead_letters = config
            .dead_letter_capacity
            .saturating_mul(size_of::<DeadLetter<SLOT>>());
        // An `ArrayQueue` slot is the value next to a stamp word.
        let redrives = shards
            .saturating_mul(config.dead_letter_capacity)
            .saturating_mul(size_of::<(usize, Redrive<SLOT>)>());
        let fixed = shards
            .saturating_mul(wheel)
            .saturating_add(dead_letters)
            .saturating_add(redrives)
            .saturating_add(hash_map_bytes(config.timer_capacity, 12))
            .saturating_add(if config.analytics {
                shards.saturating_mul(crate::analytics::ShardAnalytics::bytes())
            } else {
                0
            });
        MemoryFootprint {
            fixed,
            per_publisher,
        }
    }

    /// The bytes with `publishers` publishers alive.
    pub fn with_publishers(&self, publishers: usize) -> usize {
        self.per_publisher
            .saturating_mul(publishers)
            .saturating_add(self.fixed)
    }
}

/// The bytes a `HashMap` preallocated for `capacity` entries of `entry` bytes takes
/// (hashbrown: a power-of-two bucket count at 7/8 load, one control byte per bucket and
/// a group of trailing control bytes).
fn hash_map_bytes(capacity: usize, entry: usize) -> usize {
    let buckets = capacity
        .saturating_mul(8)
        .div_ceil(7)
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX);
    buckets
        .saturating_mul(entry.next_multiple_of(8) + 1)
        .saturating_add(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_scale_with_shards_capacities_and_slot() {
        let config = Config {
            shards: 3,
            ring_capacity: [1, 2, 4, 8],
            ..Config::default()
        };
        let f = MemoryFootprint::of::<256>(&config);
        assert_eq!(f.per_publisher, 3 * 15 * size_of::<Event<256>>());
        let g = MemoryFootprint::of::<512>(&config);
        assert_eq!(g.per_publisher, 3 * 15 * size_of::<Event<512>>());
        assert!(g.fixed > f.fixed, "bigger slots, bigger wheels and letters");
        assert_eq!(
            f.with_publishers(4),
            f.fixed + 4 * f.per_publisher,
            "publishers add their rings to the fixed part"
        );
    }

    #[test]
    fn fixed_part_counts_every_preallocated_structure() {
        let small = MemoryFootprint::of::<256>(&Config::default());
        let more_timers = MemoryFootprint::of::<256>(&Config {
            timer_capacity: 2 * Config::default().timer_capacity,
            ..Config::default()
        });
        let more_letters = MemoryFootprint::of::<256>(&Config {
            dead_letter_capacity: 2 * Config::default().dead_letter_capacity,
            ..Config::default()
        });
        let n = Config::default().timer_capacity;
        assert!(more_timers.fixed - small.fixed >= n * size_of::<Timed<256>>());
        let d = Config::default().dead_letter_capacity;
        assert!(
            more_letters.fixed - small.fixed
                >= d * (size_of::<DeadLetter<256>>() + size_of::<Redrive<256>>())
        );
    }

    #[test]
    fn absurd_settings_saturate_instead_of_wrapping() {
        let config = Config {
            shards: 64,
            ring_capacity: [1 << 62; 4],
            dead_letter_capacity: usize::MAX,
            ..Config::default()
        };
        let f = MemoryFootprint::of::<256>(&config);
        assert_eq!(f.per_publisher, usize::MAX);
        assert_eq!(f.fixed, usize::MAX);
        assert_eq!(f.with_publishers(usize::MAX), usize::MAX);
    }

    /// The fixed structures are allocated with `try_reserve`: a request the allocator
    /// cannot meet is an error, not an abort (here one that overflows the address space).
    #[test]
    fn preallocations_report_failure_instead_of_aborting() {
        use crate::dead_letters::{DeadLetterRing, FullPolicy};
        assert!(TimerWheel::<[u8; 1 << 20]>::try_new(usize::MAX, 0).is_err());
        assert!(DeadLetterRing::<[u8; 1 << 20]>::try_new(1 << 50, FullPolicy::RejectNew).is_err());
        let ok = TimerWheel::<u64>::try_new(8, 0).unwrap();
        assert_eq!(ok.capacity(), 8);
    }

    #[test]
    fn default_configuration_is_a_few_mebibytes() {
        let f = MemoryFootprint::of::<256>(&Config::default());
        assert!(f.fixed < 16 << 20, "fixed {}", f.fixed);
        assert!(
            f.per_publisher < 4 << 20,
            "per publisher {}",
            f.per_publisher
        );
        assert!(f.with_publishers(1) < DEFAULT_MEMORY_BUDGET);
    }
}
