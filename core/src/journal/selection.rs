//! Which records a replay wants: sequence range, time range, types, source, destination,
//! correlation id. A selection also says which whole segments it can skip by their
//! footer (sequence range, min/max timestamp, type bitmap).

use core::ops::RangeInclusive;

use crate::event::Event;
use crate::names::{AgentId, EventType};

use super::footer::{Summary, TypeSet};

/// A filter over journal records. [`Selection::all`] takes everything; each method
/// narrows it (all conditions must hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub(crate) seqs: RangeInclusive<u64>,
    pub(crate) time: RangeInclusive<u64>,
    pub(crate) types: Option<TypeSet>,
    pub(crate) source: Option<AgentId>,
    pub(crate) destination: Option<Option<AgentId>>,
    pub(crate) correlation: Option<u64>,
}

impl Default for Selection {
    fn default() -> Self {
        Self::all()
    }
}

impl Selection {
    /// Every record.
    pub fn all() -> Self {
        Selection {
            seqs: 1..=u64::MAX,
            time: 0..=u64::MAX,
            types: None,
            source: None,
            destination: None,
            correlation: None,
        }
    }
    /// Only sequence numbers in `range` (inclusive).
    pub fn seqs(mut self, range: RangeInclusive<u64>) -> Self {
        self.seqs = range;
        self
    }
    /// Only sequence numbers from `seq` on (a tail or a resume point).
    pub fn from_seq(mut self, seq: u64) -> Self {
        self.seqs = seq..=*self.seqs.end();
        self
    }
    /// Only events whose header timestamp (bus clock, ns) is in `range`. The start is
    /// found by a binary search, not a scan.
    pub fn time(mut self, range: RangeInclusive<u64>) -> Self {
        self.time = range;
        self
    }
    /// Adds `t` to the accepted types (the first call restricts to that one type).
    pub fn of_type(mut self, t: EventType) -> Self {
        self.types.get_or_insert_with(TypeSet::new).insert(t);
        self
    }
    /// Only events from `source`.
    pub fn source(mut self, source: AgentId) -> Self {
        self.source = Some(source);
        self
    }
    /// Only events addressed to `destination` (`None`: only broadcasts).
    pub fn destination(mut self, destination: Option<AgentId>) -> Self {
        self.destination = Some(destination);
        self
    }
    /// Only events with this correlation id.
    pub fn correlation(mut self, id: u64) -> Self {
        self.correlation = Some(id);
        self
    }

    /// Whether the record `seq` holding `event` is selected.
    pub fn matches<const SLOT: usize>(&self, seq: u64, event: &Event<SLOT>) -> bool {
        let h = event.header();
        self.seqs.contains(&seq)
            && self.time.contains(&h.timestamp_ns())
            && self
                .types
                .as_ref()
                .is_none_or(|t| t.contains(h.event_type()))
            && self.source.is_none_or(|s| s == h.source())
            && self.destination.is_none_or(|d| d == h.destination())
            && self.correlation.is_none_or(|c| c == h.correlation_id())
    }

    /// Whether a sealed segment with this footer may hold a selected record (false means
    /// it can be skipped unread).
    pub(crate) fn may_match(&self, s: &Summary) -> bool {
        if s.count == s.tombstones {
            return false;
        }
        let last = s.last_seq();
        s.first_seq <= *self.seqs.end()
            && last >= *self.seqs.start()
            && s.min_ts <= *self.time.end()
            && s.max_ts >= *self.time.start()
            && self.types.as_ref().is_none_or(|t| t.intersects(&s.types))
    }
}
