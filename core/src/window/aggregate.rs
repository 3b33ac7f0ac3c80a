//! What a window accumulates per key (count, sum, min, max; the histogram lives beside it
//! in the table's flat histogram storage) and what it emits when it closes.

use super::histogram;

/// The payload of the event a window emits for one key when it closes (an rkyv archive:
/// read it with `delivery.payload::<WindowResult>()`).
///
/// The percentiles come from a log-linear histogram: exact for magnitudes below 8,
/// within 1/8 of the true rank value (toward zero) above, and clamped to `[min, max]`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct WindowResult {
    /// The key the window aggregated (a source agent id, an event type id or a metadata
    /// value, as the window's [`KeyBy`](super::KeyBy) says).
    pub key: u64,
    /// Start of the window on the bus clock (ns, inclusive): for a session, its first
    /// event's timestamp.
    pub start_ns: u64,
    /// End of the window (ns, exclusive): for a session, its last event's timestamp plus
    /// the gap.
    pub end_ns: u64,
    /// Events counted into the window.
    pub count: u64,
    /// Sum of their values.
    pub sum: i128,
    /// Smallest value.
    pub min: i64,
    /// Largest value.
    pub max: i64,
    /// `sum / count`.
    pub mean: f64,
    /// Median (see the type's note on precision).
    pub p50: i64,
    /// 90th percentile.
    pub p90: i64,
    /// 99th percentile.
    pub p99: i64,
}

/// One open window of one key: its span and its running aggregates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cell {
    pub(crate) used: bool,
    pub(crate) start: u64,
    /// The last event's timestamp (sessions) or the window end minus one (fixed windows).
    pub(crate) last: u64,
    pub(crate) end: u64,
    pub(crate) close_at: u64,
    pub(crate) count: u64,
    pub(crate) sum: i128,
    pub(crate) min: i64,
    pub(crate) max: i64,
    /// The id of the last event counted in (the emitted event's causation).
    pub(crate) cause: u64,
}

impl Cell {
    /// An empty window over `[start, end)` that closes at `close_at`.
    pub(crate) fn open(start: u64, end: u64, close_at: u64) -> Self {
        Cell {
            used: true,
            start,
            last: start,
            end,
            close_at,
            count: 0,
            sum: 0,
            min: i64::MAX,
            max: i64::MIN,
            cause: 0,
        }
    }

    /// Counts `value` in (the histogram is recorded by the caller).
    #[inline]
    pub(crate) fn add(&mut self, value: i64, cause: u64) {
        self.count += 1;
        self.sum += i128::from(value);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.cause = cause;
    }

    /// Folds `other` (a session merged into this one) in; spans are the caller's.
    pub(crate) fn absorb(&mut self, other: &Cell) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The result for `key`, with percentiles from `hist`.
    pub(crate) fn result(&self, key: u64, hist: &[u32]) -> WindowResult {
        let q = |per_mille| histogram::quantile(hist, self.count, per_mille, self.min, self.max);
        WindowResult {
            key,
            start_ns: self.start,
            end_ns: self.end,
            count: self.count,
            sum: self.sum,
            min: self.min,
            max: self.max,
            mean: if self.count == 0 {
                0.0
            } else {
                self.sum as f64 / self.count as f64
            },
            p50: q(500),
            p90: q(900),
            p99: q(990),
        }
    }
}
