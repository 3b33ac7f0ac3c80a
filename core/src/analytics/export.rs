//! Live analytics through the `metrics` facade (feature `metrics`), so that whatever
//! recorder the application installed (Prometheus, StatsD, ...) publishes them.
//!
//! The bus does not install a recorder or run a thread: call [`MetricsExporter::export`]
//! from your own timer (every second or so) with a fresh [`crate::Bus::analytics`].

use crate::priority::Priority;

use super::snapshot::{AnalyticsSnapshot, LatencyHistogram};

/// Hands analytics snapshots to the `metrics` facade, and remembers the last one so that
/// rates and latency histograms cover the interval since the previous export.
///
/// What it emits (label in braces):
///
/// | name | kind | value |
/// |------|------|-------|
/// | `dreamnet_events_total{type}` | counter | events of the type taken off the rings |
/// | `dreamnet_source_events_total{source}` | counter | events from the agent |
/// | `dreamnet_subscription_attempts_total{subscription}` | counter | handler calls |
/// | `dreamnet_subscription_done_total{subscription}` | counter | events done |
/// | `dreamnet_subscription_retried_total{subscription}` | counter | retries scheduled |
/// | `dreamnet_subscription_dead_lettered_total{subscription}` | counter | dead letters |
/// | `dreamnet_events_per_second{type}` | gauge | rate since the previous export |
/// | `dreamnet_source_events_per_second{source}` | gauge | rate since the previous export |
/// | `dreamnet_subscription_attempts_per_second{subscription}` | gauge | rate since the previous export |
/// | `dreamnet_latency_ns{priority}` | histogram | publish -> dispatch latencies recorded since the previous export |
/// | `dreamnet_latency_p50_ns`, `_p99_ns`, `_p999_ns`, `_max_ns` `{priority}` | gauge | over the same interval |
///
/// Types and sources are labelled by name, subscriptions by raw id, priorities as
/// `critical`, `high`, `normal`, `low`. The first export's interval starts when the bus
/// was built. Counters are set with `absolute` (the snapshot holds totals).
///
/// ```
/// use dreamnet_bus::analytics::MetricsExporter;
/// use dreamnet_bus::Bus;
/// let bus = Bus::builder().analytics(true).build()?;
/// let mut exporter = MetricsExporter::new();
/// if let Some(snapshot) = bus.analytics() {
///     exporter.export(&snapshot); // to the installed recorder (a no-op without one)
/// }
/// # Ok::<(), dreamnet_bus::BusError>(())
/// ```
#[derive(Debug, Default)]
pub struct MetricsExporter {
    last: Option<AnalyticsSnapshot>,
}

impl MetricsExporter {
    /// An exporter that has exported nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `snapshot` to the `metrics` recorder of this thread (the global one unless a
    /// local one is set). A snapshot not later than the previous one updates the counters
    /// but leaves the rates and the latency interval alone (nothing to divide by).
    pub fn export(&mut self, snapshot: &AnalyticsSnapshot) {
        for t in &snapshot.by_type {
            metrics::counter!("dreamnet_events_total", "type" => t.name.clone()).absolute(t.count);
        }
        for s in &snapshot.by_source {
            metrics::counter!("dreamnet_source_events_total", "source" => s.name.clone())
                .absolute(s.count);
        }
        for s in &snapshot.by_subscription {
            let id = s.id.raw().to_string();
            metrics::counter!("dreamnet_subscription_attempts_total", "subscription" => id.clone())
                .absolute(s.stats.attempts);
            metrics::counter!("dreamnet_subscription_done_total", "subscription" => id.clone())
                .absolute(s.stats.done);
            metrics::counter!("dreamnet_subscription_retried_total", "subscription" => id.clone())
                .absolute(s.stats.retried);
            metrics::counter!("dreamnet_subscription_dead_lettered_total", "subscription" => id)
                .absolute(s.stats.dead_lettered);
        }
        let rates = match &self.last {
            None => Some(snapshot.rates()),
            Some(last) => snapshot.rates_since(last).ok(),
        };
        let Some(rates) = rates else {
            return;
        };
        for (t, (_, rate)) in snapshot.by_type.iter().zip(&rates.by_type) {
            metrics::gauge!("dreamnet_events_per_second", "type" => t.name.clone()).set(*rate);
        }
        for (s, (_, rate)) in snapshot.by_source.iter().zip(&rates.by_source) {
            metrics::gauge!("dreamnet_source_events_per_second", "source" => s.name.clone())
                .set(*rate);
        }
        for (id, rate) in &rates.by_subscription {
            metrics::gauge!(
                "dreamnet_subscription_attempts_per_second",
                "subscription" => id.raw().to_string()
            )
            .set(*rate);
        }
        for p in Priority::ALL {
            let now = snapshot.latency_of(p);
            let interval = match &self.last {
                Some(last) => now.since(last.latency_of(p)),
                None => Some(now.clone()),
            };
            if let Some(h) = interval {
                export_latency(p, &h);
            }
        }
        self.last = Some(snapshot.clone());
    }
}

fn export_latency(priority: Priority, h: &LatencyHistogram) {
    let label = priority.name();
    let histogram = metrics::histogram!("dreamnet_latency_ns", "priority" => label);
    for v in h.histogram().iter_recorded() {
        // A bucket's count fits usize on every target we build for (64-bit); saturate
        // rather than wrap elsewhere.
        let count = usize::try_from(v.count_at_value()).unwrap_or(usize::MAX);
        histogram.record_many(v.value_iterated_to() as f64, count);
    }
    if h.count() == 0 {
        return;
    }
    metrics::gauge!("dreamnet_latency_p50_ns", "priority" => label).set(h.quantile_ns(0.5) as f64);
    metrics::gauge!("dreamnet_latency_p99_ns", "priority" => label).set(h.quantile_ns(0.99) as f64);
    metrics::gauge!("dreamnet_latency_p999_ns", "priority" => label)
        .set(h.quantile_ns(0.999) as f64);
    metrics::gauge!("dreamnet_latency_max_ns", "priority" => label).set(h.max_ns() as f64);
}
