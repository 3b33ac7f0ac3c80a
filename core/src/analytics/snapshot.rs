//! A point-in-time copy of the live analytics, merged over the shards, and the rates
//! between two copies.

use hdrhistogram::Histogram;

use crate::names::{AgentId, EventType};
use crate::priority::Priority;
use crate::stats::SubscriptionStats;
use crate::subscription::SubscriptionId;

/// Events of one type taken off the rings (all shards; an event that fans out to `k`
/// shards counts `k` times, as in [`crate::ShardStats::dispatched`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TypeCount {
    /// The event type.
    pub event_type: EventType,
    /// Its registered name (`agent.task`), or `#id` if the bus has no name for it.
    pub name: String,
    /// Events of this type taken off the rings since the bus was built.
    pub count: u64,
}

/// Events of one source agent taken off the rings (counted like [`TypeCount`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceCount {
    /// The publishing agent.
    pub agent: AgentId,
    /// Its registered name, or `#id` if the bus has no name for it.
    pub name: String,
    /// Events from this agent taken off the rings since the bus was built.
    pub count: u64,
}

/// One live subscription's counts (the same counters as [`crate::Bus::subscription_stats`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionCount {
    /// The subscription.
    pub id: SubscriptionId,
    /// Its counts: accepted, handler attempts, done, retried, dead-lettered, panicked.
    pub stats: SubscriptionStats,
}

/// Publish -> dispatch latency of one priority level, in ns, merged over the shards.
#[derive(Clone, Debug)]
pub struct LatencyHistogram(pub(crate) Histogram<u64>);

impl LatencyHistogram {
    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }
    /// The latency at quantile `q` (0.0 ..= 1.0; clamped), ns; 0 when empty.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        self.0.value_at_quantile(q)
    }
    /// The largest latency recorded (to the histogram's precision), ns; 0 when empty.
    pub fn max_ns(&self) -> u64 {
        self.0.max()
    }
    /// The mean latency, ns; 0.0 when empty.
    pub fn mean_ns(&self) -> f64 {
        self.0.mean()
    }
    /// The hdrhistogram itself (1 ns ..= [`super::LATENCY_MAX_NS`], 2 significant digits),
    /// for percentiles, iteration or serialisation.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.0
    }
    /// The latencies recorded after `earlier` was taken (`self - earlier`); `None` if
    /// `earlier` holds counts this one does not (it is not an earlier copy of the same bus).
    pub fn since(&self, earlier: &LatencyHistogram) -> Option<LatencyHistogram> {
        let mut h = self.0.clone();
        h.subtract(&earlier.0).ok()?;
        Some(LatencyHistogram(h))
    }
}

/// The live analytics of a bus at one moment ([`crate::Bus::analytics`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AnalyticsSnapshot {
    /// When the snapshot was taken, ns on the bus clock (0 = when the bus was built).
    pub at_ns: u64,
    /// Per event type, types with a count only, by type id.
    pub by_type: Vec<TypeCount>,
    /// Per source agent, agents with a count only, by agent id.
    pub by_source: Vec<SourceCount>,
    /// Per live subscription, by id (an unsubscribed one is no longer listed).
    pub by_subscription: Vec<SubscriptionCount>,
    /// Latency from publish to dispatch, per priority (index: [`Priority::index`]).
    pub latency: [LatencyHistogram; Priority::COUNT],
}

/// Events per second over an interval, from two snapshots or since the bus was built.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Rates {
    /// The interval, ns.
    pub over_ns: u64,
    /// Events taken off the rings per second, all types.
    pub total: f64,
    /// Per event type (the types of the later snapshot, by id).
    pub by_type: Vec<(EventType, f64)>,
    /// Per source agent (the agents of the later snapshot, by id).
    pub by_source: Vec<(AgentId, f64)>,
    /// Handler attempts per second per subscription (those live in the later snapshot).
    pub by_subscription: Vec<(SubscriptionId, f64)>,
}

/// Why two snapshots give no rates.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RatesError {
    /// The "earlier" snapshot was not taken before this one.
    #[error("the earlier snapshot (at {earlier_ns} ns) is not before this one (at {later_ns} ns)")]
    NotEarlier {
        /// When the snapshot given as earlier was taken.
        earlier_ns: u64,
        /// When this snapshot was taken.
        later_ns: u64,
    },
}

impl AnalyticsSnapshot {
    /// Events taken off the rings, all types (the sum of `by_type`).
    pub fn total(&self) -> u64 {
        self.by_type.iter().map(|t| t.count).sum()
    }

    /// The count of one type (0 if none was seen).
    pub fn count_of_type(&self, ty: EventType) -> u64 {
        self.by_type
            .iter()
            .find(|t| t.event_type == ty)
            .map_or(0, |t| t.count)
    }

    /// The count of one source agent (0 if none was seen).
    pub fn count_of_source(&self, agent: AgentId) -> u64 {
        self.by_source
            .iter()
            .find(|s| s.agent == agent)
            .map_or(0, |s| s.count)
    }

    /// The latency histogram of one priority level.
    pub fn latency_of(&self, priority: Priority) -> &LatencyHistogram {
        &self.latency[priority.index()]
    }

    /// Rates since the bus was built (an interval of `at_ns`; all zero at time 0).
    pub fn rates(&self) -> Rates {
        rates(self, None, self.at_ns)
    }

    /// Rates over the interval from `earlier` to this snapshot. A type, source or
    /// subscription that `earlier` lacks counts from 0.
    pub fn rates_since(&self, earlier: &AnalyticsSnapshot) -> Result<Rates, RatesError> {
        if earlier.at_ns >= self.at_ns {
            return Err(RatesError::NotEarlier {
                earlier_ns: earlier.at_ns,
                later_ns: self.at_ns,
            });
        }
        Ok(rates(self, Some(earlier), self.at_ns - earlier.at_ns))
    }
}

fn rates(later: &AnalyticsSnapshot, earlier: Option<&AnalyticsSnapshot>, over_ns: u64) -> Rates {
    let per_s = |n: u64| {
        if over_ns == 0 {
            0.0
        } else {
            n as f64 * 1e9 / over_ns as f64
        }
    };
    let by_type: Vec<(EventType, f64)> = later
        .by_type
        .iter()
        .map(|t| {
            let before = earlier.map_or(0, |e| e.count_of_type(t.event_type));
            (t.event_type, per_s(t.count.saturating_sub(before)))
        })
        .collect();
    let by_source = later
        .by_source
        .iter()
        .map(|s| {
            let before = earlier.map_or(0, |e| e.count_of_source(s.agent));
            (s.agent, per_s(s.count.saturating_sub(before)))
        })
        .collect();
    let by_subscription = later
        .by_subscription
        .iter()
        .map(|s| {
            let before = earlier
                .and_then(|e| e.by_subscription.iter().find(|x| x.id == s.id))
                .map_or(0, |x| x.stats.attempts);
            (s.id, per_s(s.stats.attempts.saturating_sub(before)))
        })
        .collect();
    let total = per_s(
        later
            .total()
            .saturating_sub(earlier.map_or(0, AnalyticsSnapshot::total)),
    );
    Rates {
        over_ns,
        total,
        by_type,
        by_source,
        by_subscription,
    }
}
