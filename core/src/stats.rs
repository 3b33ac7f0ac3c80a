//! Counters that one thread writes and any thread reads. Each owner (a shard, a publisher,
//! a subscription) has its own block, cache-padded, so the hot path never writes a cache
//! line another thread writes: a count is a plain load and store, not a locked add.

use core::sync::atomic::Ordering;

use crate::sync::AtomicU64;

use crate::dead_letters::DeadReason;
use crate::priority::Priority;

/// A counter with a single writer. `add` is a relaxed load and store: only the owning
/// thread may call it; readers on other threads see a value that is at most slightly stale.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Must only be called by the counter's single writer.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Adds one.
    #[inline]
    pub(crate) fn incr(&self) {
        self.add(1);
    }

    /// Sets the value (for gauges). Single writer only.
    #[inline]
    pub(crate) fn set(&self, n: u64) {
        self.0.store(n, Ordering::Release);
    }

    /// The current value.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// A counter per priority level.
#[derive(Debug, Default)]
pub(crate) struct PerPriority(pub(crate) [Counter; Priority::COUNT]);

impl PerPriority {
    /// The count for one level.
    pub(crate) fn get(&self, p: Priority) -> u64 {
        self.0[p.index()].get()
    }
    /// The sum over all levels.
    pub(crate) fn total(&self) -> u64 {
        self.0.iter().map(Counter::get).sum()
    }
    pub(crate) fn incr(&self, p: Priority) {
        self.0[p.index()].incr();
    }
    pub(crate) fn add(&self, p: Priority, n: u64) {
        self.0[p.index()].add(n);
    }
    pub(crate) fn snapshot(&self) -> [u64; Priority::COUNT] {
        core::array::from_fn(|i| self.0[i].get())
    }
}

/// Counts a shard keeps (written by the shard's thread only).
#[derive(Debug, Default)]
pub(crate) struct ShardCounters {
    /// Events taken off the rings, per priority.
    pub(crate) dispatched: PerPriority,
    /// Handler invocations that returned (or panicked), per event priority.
    pub(crate) delivered: PerPriority,
    /// Events that reached no subscription on this shard, per priority.
    pub(crate) unmatched: PerPriority,
    /// Handlers that panicked.
    pub(crate) panicked: Counter,
    /// Retries scheduled on the timer wheel.
    pub(crate) retries_scheduled: Counter,
    /// Retries fired and redelivered.
    pub(crate) retries_fired: Counter,
    /// Events put in the dead letters.
    pub(crate) dead_lettered: Counter,
    /// Events put in the dead letters, by `DeadReason::index`.
    pub(crate) dead_by_reason: [Counter; DeadReason::COUNT],
    /// Scheduled (publish_at) events fired into dispatch.
    pub(crate) scheduled_fired: Counter,
    /// Dead letters redriven back to their subscription.
    pub(crate) redriven: Counter,
    /// Scheduled events dropped because they were cancelled (or, at close, because
    /// another of their shards already sent the event to the dead letters).
    pub(crate) scheduled_cancelled: Counter,
    /// Entries waiting on the timer wheel now (a gauge).
    pub(crate) timers_pending: Counter,
    /// Whether pinning this shard's worker to a core failed (1) or was not asked (0).
    pub(crate) pin_failed: Counter,
}

/// Counts a publisher keeps (written by the publisher's thread only).
#[derive(Debug, Default)]
// Own cache lines (two, against adjacent-line prefetch): written on every event by one
// thread, read by others; never beside another thread's counters.
#[repr(align(128))]
pub(crate) struct PublisherCounters {
    /// Events accepted (each once, however many shards it fanned out to), per priority.
    pub(crate) published: PerPriority,
    /// Accepted events that no subscription matched at publish time (counted, not queued).
    pub(crate) unroutable: PerPriority,
    /// Publishes refused because a ring was full, per priority.
    pub(crate) rejected_full: PerPriority,
    /// Publishes refused because the bus was closed.
    pub(crate) rejected_closed: Counter,
    /// Publishes refused for an unknown type or agent id.
    pub(crate) rejected_invalid: Counter,
    /// Per shard: ring entries written and refusals because that shard's ring was full.
    pub(crate) shards: Box<[PublisherShardCounters]>,
}

/// What one publisher wrote to one shard.
#[derive(Debug, Default)]
// Own cache lines (two, against adjacent-line prefetch): written on every event by one
// thread, read by others; never beside another thread's counters.
#[repr(align(128))]
pub(crate) struct PublisherShardCounters {
    /// Ring entries written, per priority.
    pub(crate) enqueued: PerPriority,
    /// Publishes refused because this shard's ring was full, per priority.
    pub(crate) rejected_full: PerPriority,
}

/// A point-in-time copy of one publisher's counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublisherStats {
    /// Events accepted (each once, however many shards it fanned out to), per priority.
    pub published: [u64; Priority::COUNT],
    /// Accepted events that no subscription matched at publish time, per priority.
    pub unroutable: [u64; Priority::COUNT],
    /// Publishes refused because a ring was full, per priority.
    pub rejected_full: [u64; Priority::COUNT],
    /// Publishes refused because the bus was closed.
    pub rejected_closed: u64,
    /// Publishes refused for an unknown type or agent id.
    pub rejected_invalid: u64,
}

impl PublisherCounters {
    /// A snapshot.
    pub(crate) fn snapshot(&self) -> PublisherStats {
        PublisherStats {
            published: self.published.snapshot(),
            unroutable: self.unroutable.snapshot(),
            rejected_full: self.rejected_full.snapshot(),
            rejected_closed: self.rejected_closed.get(),
            rejected_invalid: self.rejected_invalid.get(),
        }
    }

    pub(crate) fn new(shards: usize) -> Self {
        PublisherCounters {
            shards: (0..shards)
                .map(|_| PublisherShardCounters::default())
                .collect(),
            ..PublisherCounters::default()
        }
    }
}

/// Counts a subscription keeps (written by its shard's thread only).
#[derive(Debug, Default)]
// Own cache lines (two, against adjacent-line prefetch): written on every event by one
// thread, read by others; never beside another thread's counters.
#[repr(align(128))]
pub(crate) struct SubscriptionCounters {
    /// Events accepted for this subscription (first deliveries and redrives).
    pub(crate) accepted: Counter,
    /// Handler invocations, retries included.
    pub(crate) attempts: Counter,
    /// Events this subscription finished with `Done`.
    pub(crate) done: Counter,
    /// Retries scheduled for this subscription.
    pub(crate) retried: Counter,
    /// Events of this subscription that went to the dead letters.
    pub(crate) dead_lettered: Counter,
    /// Handler panics.
    pub(crate) panicked: Counter,
}

/// A point-in-time copy of one subscription's counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionStats {
    /// Events accepted for this subscription (first deliveries and redrives).
    pub accepted: u64,
    /// Handler invocations, retries included.
    pub attempts: u64,
    /// Events finished with `Done`.
    pub done: u64,
    /// Retries scheduled.
    pub retried: u64,
    /// Events dead-lettered.
    pub dead_lettered: u64,
    /// Handler panics.
    pub panicked: u64,
}

impl SubscriptionCounters {
    /// A snapshot.
    pub(crate) fn snapshot(&self) -> SubscriptionStats {
        SubscriptionStats {
            accepted: self.accepted.get(),
            attempts: self.attempts.get(),
            done: self.done.get(),
            retried: self.retried.get(),
            dead_lettered: self.dead_lettered.get(),
            panicked: self.panicked.get(),
        }
    }
}

/// A point-in-time copy of one shard's counts, publisher-side counts included.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardStats {
    /// Ring entries written for this shard by all publishers, per priority.
    pub published: [u64; Priority::COUNT],
    /// Publishes refused because this shard's ring was full, per priority.
    pub rejected_full: [u64; Priority::COUNT],
    /// Events taken off the rings, per priority.
    pub dispatched: [u64; Priority::COUNT],
    /// Handler invocations, per priority.
    pub delivered: [u64; Priority::COUNT],
    /// Events that reached no subscription on this shard, per priority.
    pub unmatched: [u64; Priority::COUNT],
    /// Events waiting in this shard's rings now, per priority (fill level).
    pub queued: [u64; Priority::COUNT],
    /// Handler panics.
    pub panicked: u64,
    /// Retries scheduled.
    pub retries_scheduled: u64,
    /// Retries fired.
    pub retries_fired: u64,
    /// Events dead-lettered.
    pub dead_lettered: u64,
    /// Events dead-lettered, by `DeadReason::index` (see `DeadReason::name`).
    pub dead_by_reason: [u64; DeadReason::COUNT],
    /// Scheduled events fired.
    pub scheduled_fired: u64,
    /// Dead letters redriven.
    pub redriven: u64,
    /// Scheduled events cancelled before they fired here. At close, a scheduled event
    /// still waiting goes to the dead letters once (`Shutdown`), from the first of its
    /// shards to flush it; the others count it here.
    pub scheduled_cancelled: u64,
    /// Entries waiting on the timer wheel.
    pub timers_pending: u64,
    /// Whether pinning the worker failed.
    pub pin_failed: bool,
}

/// A point-in-time copy of the whole bus's counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusStats {
    /// Per shard.
    pub shards: Vec<ShardStats>,
    /// Events accepted by publishers (each once, however many shards it fanned out to).
    pub published: u64,
    /// Accepted events that matched no subscription at publish time.
    pub unroutable: u64,
    /// Publishes refused as full.
    pub rejected_full: u64,
    /// Publishes refused as closed.
    pub rejected_closed: u64,
    /// Publishes refused for unknown ids.
    pub rejected_invalid: u64,
    /// Dead letters dropped by the `DropOldest` policy, or refused by `RejectNew`.
    pub dead_letters_dropped: u64,
}

impl BusStats {
    /// Handler invocations over all shards.
    pub fn delivered(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.delivered.iter().sum::<u64>())
            .sum()
    }
    /// Publish attempts refused with an error.
    pub fn rejected(&self) -> u64 {
        self.rejected_full + self.rejected_closed + self.rejected_invalid
    }
    /// Events still in rings.
    pub fn queued(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.queued.iter().sum::<u64>())
            .sum()
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// A single-writer counter is read monotonically by another thread and ends exact.
    #[test]
    fn single_writer_counter_is_monotonic_and_exact() {
        loom::model(|| {
            let c = Arc::new(Counter::default());
            let writer = {
                let c = Arc::clone(&c);
                loom::thread::spawn(move || {
                    c.incr();
                    c.add(2);
                })
            };
            let first = c.get();
            let second = c.get();
            assert!(second >= first);
            assert!(first == 0 || first == 1 || first == 3);
            writer.join().unwrap();
            assert_eq!(c.get(), 3);
        });
    }
}
