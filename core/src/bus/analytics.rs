//! `Bus::analytics`: the shards' analytics tables merged into one snapshot.

use crate::analytics::{
    AnalyticsSnapshot, LatencyHistogram, SourceCount, SubscriptionCount, TypeCount,
};
use crate::names::{AgentId, EventType, MAX_AGENTS, MAX_EVENT_TYPES};
use crate::priority::Priority;

use super::Bus;

impl<const SLOT: usize> Bus<SLOT> {
    /// The live analytics: events taken off the rings per type and per source agent,
    /// each live subscription's counts, and the publish -> dispatch latency histograms
    /// per priority, merged over the shards. `None` unless the bus was built with
    /// [`crate::BusBuilder::analytics`]`(true)`.
    ///
    /// Allocates (it is not for the hot path) and briefly takes each shard's histogram
    /// lock; a handler may call it. Rates come from two snapshots
    /// ([`AnalyticsSnapshot::rates_since`]) or since the bus was built
    /// ([`AnalyticsSnapshot::rates`]).
    ///
    /// ```
    /// use dreamnet_bus::{Bus, Event, EventType, Filter, Outcome, Priority};
    /// let (bus, mut shards) = Bus::builder().analytics(true).build_polled()?;
    /// let agent = bus.register_agent("lucid")?;
    /// bus.subscribe(Filter::any(), |_| Outcome::Done)?;
    /// let mut publisher = bus.publisher(agent)?;
    /// publisher.try_publish(Event::new(EventType::AGENT_TASK))?;
    /// shards[0].poll(16);
    /// let snapshot = bus.analytics().expect("built with analytics(true)");
    /// assert_eq!(snapshot.count_of_type(EventType::AGENT_TASK), 1);
    /// assert_eq!(snapshot.count_of_source(agent), 1);
    /// assert_eq!(snapshot.latency_of(Priority::Normal).count(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn analytics(&self) -> Option<AnalyticsSnapshot> {
        if self.analytics.is_empty() {
            return None;
        }
        let mut types = vec![0u64; MAX_EVENT_TYPES];
        let mut sources = vec![0u64; MAX_AGENTS];
        let mut latency = core::array::from_fn(|_| crate::analytics::latency_histogram());
        for shard in &self.analytics {
            shard.add_counts(&mut types, &mut sources);
            shard.add_latency(&mut latency);
        }
        let at_ns = self.now_ns();
        let plane = self.plane();
        let by_type = nonzero(&types)
            .map(|(i, count)| {
                // `i < MAX_EVENT_TYPES` (1024) fits a u16.
                let event_type = EventType(i as u16);
                let name = plane
                    .names
                    .event_type_name(event_type)
                    .map_or_else(|| format!("#{}", event_type.raw()), ToOwned::to_owned);
                TypeCount {
                    event_type,
                    name,
                    count,
                }
            })
            .collect();
        let by_source = nonzero(&sources)
            .map(|(i, count)| {
                // `i < MAX_AGENTS` (65536) fits a u32.
                let agent = AgentId(i as u32);
                let name = plane
                    .names
                    .agent_name(agent)
                    .map_or_else(|| format!("#{}", agent.raw()), ToOwned::to_owned);
                SourceCount { agent, name, count }
            })
            .collect();
        let mut by_subscription: Vec<SubscriptionCount> = plane
            .subscriptions
            .iter()
            .map(|(id, r)| SubscriptionCount {
                id: *id,
                stats: r.counters.snapshot(),
            })
            .collect();
        drop(plane);
        by_subscription.sort_by_key(|s| s.id);
        let latency: [_; Priority::COUNT] = latency;
        Some(AnalyticsSnapshot {
            at_ns,
            by_type,
            by_source,
            by_subscription,
            latency: latency.map(LatencyHistogram),
        })
    }
}

fn nonzero(counts: &[u64]) -> impl Iterator<Item = (usize, u64)> + '_ {
    counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(i, c)| (i, *c))
}
