//! Analytics: what went through the bus, how fast, and how long events waited.
//!
//! - **Live** (opt-in with [`crate::BusBuilder::analytics`]): each shard counts the
//!   events it takes off its rings per event type and per source agent, and records the
//!   latency from the publish timestamp to the start of dispatch in an hdrhistogram per
//!   priority (`recorder.rs`). Tables and histograms are preallocated when the bus is
//!   built, indexed by the small interned ids, so recording allocates nothing.
//!   [`crate::Bus::analytics`] merges the shards' tables into an [`AnalyticsSnapshot`]
//!   (`snapshot.rs`); two snapshots give rates over the interval between them.
//! - **Export** (feature `metrics`): [`MetricsExporter`] hands snapshots to the `metrics`
//!   facade, so any exporter (Prometheus, StatsD, ...) can publish them (`export.rs`).
//! - **Offline** (feature `journal`): [`JournalAnalyzer`] folds journal records into
//!   rates over time, the type mix, the top sources and the causal latency by type
//!   (`offline.rs`).

#[cfg(feature = "metrics")]
mod export;
#[cfg(feature = "journal")]
mod offline;
mod recorder;
mod snapshot;

#[cfg(feature = "metrics")]
pub use export::MetricsExporter;
#[cfg(feature = "journal")]
pub use offline::{Bucket, JournalAnalysis, JournalAnalyzer, TypeLatency, DEFAULT_CAUSE_WINDOW};
pub(crate) use recorder::{latency_histogram, ShardAnalytics};
pub use recorder::{LATENCY_MAX_NS, LATENCY_SIGNIFICANT_DIGITS};
pub use snapshot::{
    AnalyticsSnapshot, LatencyHistogram, Rates, RatesError, SourceCount, SubscriptionCount,
    TypeCount,
};
