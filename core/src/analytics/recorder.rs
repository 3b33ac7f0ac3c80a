//! What one shard records for live analytics, and how a snapshot reads it.
//!
//! Counts per event type and per source agent are single-writer counters (the shard's
//! thread writes, a snapshot reads): a plain load and store per event, no lock. The
//! latency histograms (one per priority) sit behind a mutex that the shard takes once per
//! chunk of up to 64 events and never across a handler call, so a handler that asks for
//! a snapshot cannot deadlock, and a snapshot holds the lock only while it adds the
//! histograms up.
//!
//! What "latency" means here: the shard's time when it starts dispatching a chunk (the
//! lazy clock of one drain, read at most once per drain) minus the event's publish
//! timestamp. It is the wait in the ring plus the handlers of earlier events of the same
//! drain that ran before the clock was read; an event published after that read (its
//! timestamp is later than the drain's "now") records 0. A scheduled event that is not
//! due yet records no latency here (it waits on the timer wheel by design).

use std::sync::{Mutex, PoisonError};

use hdrhistogram::Histogram;

use crate::clock::LazyNow;
use crate::event::Event;
use crate::names::{MAX_AGENTS, MAX_EVENT_TYPES};
use crate::priority::Priority;
use crate::stats::Counter;

/// The largest latency the histograms hold apart, in ns (60 s); a longer one is recorded
/// as this value.
pub const LATENCY_MAX_NS: u64 = 60_000_000_000;

/// The precision of the latency histograms: values are told apart to this many
/// significant decimal digits (2: within 1 %).
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 2;

/// A latency histogram with the bus's bounds (1 ns ..= [`LATENCY_MAX_NS`]).
pub(crate) fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low,
    // digits <= 5), checked by a test: this cannot fail at run time.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, LATENCY_SIGNIFICANT_DIGITS)
        .expect("constant, valid histogram bounds")
}

/// One shard's analytics tables, preallocated when the bus is built.
pub(crate) struct ShardAnalytics {
    /// Events taken off the rings, by `EventType::index` (`MAX_EVENT_TYPES` entries).
    by_type: Box<[Counter]>,
    /// Events taken off the rings, by source agent id (`MAX_AGENTS` entries).
    by_source: Box<[Counter]>,
    /// Publish -> dispatch latency, per priority.
    latency: Mutex<[Histogram<u64>; Priority::COUNT]>,
}

impl core::fmt::Debug for ShardAnalytics {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ShardAnalytics").finish_non_exhaustive()
    }
}

impl Default for ShardAnalytics {
    fn default() -> Self {
        ShardAnalytics {
            by_type: (0..MAX_EVENT_TYPES).map(|_| Counter::default()).collect(),
            by_source: (0..MAX_AGENTS).map(|_| Counter::default()).collect(),
            latency: Mutex::new(core::array::from_fn(|_| latency_histogram())),
        }
    }
}

impl ShardAnalytics {
    /// The bytes one shard's tables take (for the memory budget).
    pub(crate) fn bytes() -> usize {
        let counters = (MAX_EVENT_TYPES + MAX_AGENTS) * size_of::<Counter>();
        let histogram = latency_histogram().distinct_values() * size_of::<u64>();
        counters + Priority::COUNT * histogram
    }

    /// Records one chunk of events of `priority` that the shard is about to dispatch.
    /// Called by the shard's thread only (the counters have a single writer).
    #[inline]
    pub(crate) fn record_chunk<const SLOT: usize>(
        &self,
        priority: Priority,
        first: &[Event<SLOT>],
        second: &[Event<SLOT>],
        now: &LazyNow<'_>,
    ) {
        let now = now.get();
        // Never held across a handler; nothing below panics, so a poisoned lock (a
        // snapshot that panicked) still guards consistent histograms.
        let mut latency = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        let histogram = &mut latency[priority.index()];
        for event in first.iter().chain(second) {
            let h = event.header();
            // Ids were checked at publish; `get` keeps a bad one from ever panicking.
            if let Some(c) = self.by_type.get(h.event_type().index()) {
                c.incr();
            }
            if let Some(c) = self.by_source.get(h.source().raw() as usize) {
                c.incr();
            }
            let published = h.timestamp_ns();
            if published <= now {
                histogram.saturating_record((now - published).max(1));
            } else if !h.is_scheduled() {
                // Published after this drain read its clock: no measurable wait.
                histogram.saturating_record(1);
            }
        }
    }

    /// Adds this shard's counts into `by_type` and `by_source` (indexed like the tables).
    pub(crate) fn add_counts(&self, by_type: &mut [u64], by_source: &mut [u64]) {
        for (sum, c) in by_type.iter_mut().zip(self.by_type.iter()) {
            *sum += c.get();
        }
        for (sum, c) in by_source.iter_mut().zip(self.by_source.iter()) {
            *sum += c.get();
        }
    }

    /// Adds this shard's histograms into `into` (same bounds: cannot fail).
    pub(crate) fn add_latency(&self, into: &mut [Histogram<u64>; Priority::COUNT]) {
        let latency = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        for (sum, h) in into.iter_mut().zip(latency.iter()) {
            // Same bounds on both sides; an error would mean a value out of range, which
            // `saturating_record` never stored.
            let _ = sum.add(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::names::{AgentId, EventType};

    fn stamped(ty: EventType, source: u32, ts: u64) -> Event {
        let mut e = Event::new(ty);
        e.stamp(1, AgentId(source), ts);
        e
    }

    #[test]
    fn a_chunk_is_counted_per_type_and_source_and_timed_per_priority() {
        let a = ShardAnalytics::default();
        let events = [
            stamped(EventType::AGENT_TASK, 3, 100),
            stamped(EventType::AGENT_TASK, 4, 400),
            stamped(EventType::SYSTEM_HEALTH, 3, 900),
        ];
        let now = LazyNow::known(1_000);
        a.record_chunk(Priority::High, &events[..2], &events[2..], &now);
        let mut types = vec![0; MAX_EVENT_TYPES];
        let mut sources = vec![0; MAX_AGENTS];
        a.add_counts(&mut types, &mut sources);
        assert_eq!(types[EventType::AGENT_TASK.index()], 2);
        assert_eq!(types[EventType::SYSTEM_HEALTH.index()], 1);
        assert_eq!(sources[3], 2);
        assert_eq!(sources[4], 1);
        let mut h: [Histogram<u64>; Priority::COUNT] =
            core::array::from_fn(|_| latency_histogram());
        a.add_latency(&mut h);
        let high = &h[Priority::High.index()];
        assert_eq!(high.len(), 3);
        assert!(high.equivalent(high.max(), 900), "max {}", high.max());
        assert!(high.equivalent(high.min(), 100), "min {}", high.min());
        assert_eq!(h[Priority::Normal.index()].len(), 0);
    }

    #[test]
    fn an_event_later_than_the_drain_clock_records_no_wait_and_a_future_scheduled_none() {
        let a = ShardAnalytics::default();
        let late = stamped(EventType::AGENT_TASK, 1, 5_000);
        let clock = Clock::Manual(crate::clock::ManualClock::new());
        let now = LazyNow::new(&clock); // reads 0
        a.record_chunk(Priority::Normal, core::slice::from_ref(&late), &[], &now);
        let mut h: [Histogram<u64>; Priority::COUNT] =
            core::array::from_fn(|_| latency_histogram());
        a.add_latency(&mut h);
        assert_eq!(h[Priority::Normal.index()].len(), 1);
        assert_eq!(h[Priority::Normal.index()].max(), 1);
    }

    #[test]
    fn a_huge_latency_saturates_at_the_bound() {
        let a = ShardAnalytics::default();
        let old = stamped(EventType::AGENT_TASK, 1, 0);
        let now = LazyNow::known(u64::MAX);
        a.record_chunk(Priority::Low, core::slice::from_ref(&old), &[], &now);
        let mut h: [Histogram<u64>; Priority::COUNT] =
            core::array::from_fn(|_| latency_histogram());
        a.add_latency(&mut h);
        assert!(h[Priority::Low.index()].equivalent(h[Priority::Low.index()].max(), LATENCY_MAX_NS));
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// What `BusBuilder::analytics` documents: about 0.6 MiB per shard, counted in the
    /// memory budget.
    #[test]
    fn a_shards_tables_take_about_0_6_mib_and_count_in_the_budget() {
        let bytes = ShardAnalytics::bytes();
        println!("analytics tables: {bytes} bytes per shard");
        assert!((500 << 10..800 << 10).contains(&bytes), "{bytes}");
        let off = crate::Bus::builder().shards(2).memory_footprint();
        let on = crate::Bus::builder()
            .shards(2)
            .analytics(true)
            .memory_footprint();
        assert_eq!(on.fixed - off.fixed, 2 * bytes);
    }
}
