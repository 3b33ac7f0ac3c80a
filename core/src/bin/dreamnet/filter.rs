//! The record filters of `replay` and `stats`: a journal [`Selection`] for what it can
//! express (so whole segments are skipped by their footers), plus a check in the CLI for
//! raw type and source ids, which the public API only builds from a bus's name tables.

use dreamnet_bus::journal::{Record, Selection};
use dreamnet_bus::EventType;

/// Which records to take; every condition given must hold.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// First sequence number (inclusive).
    pub from_seq: Option<u64>,
    /// Last sequence number (inclusive).
    pub to_seq: Option<u64>,
    /// Accepted raw type ids (empty: any).
    pub types: Vec<u16>,
    /// Raw source agent id.
    pub source: Option<u32>,
    /// Correlation id.
    pub correlation: Option<u64>,
}

impl Filter {
    /// The journal selection: seq range, correlation, and built-in types (footer bitmaps
    /// let a replay skip segments without them). Custom type ids only narrow through
    /// [`Filter::keeps`], which is always applied as well.
    pub fn selection(&self) -> Selection {
        let mut sel =
            Selection::all().seqs(self.from_seq.unwrap_or(1)..=self.to_seq.unwrap_or(u64::MAX));
        if let Some(c) = self.correlation {
            sel = sel.correlation(c);
        }
        let builtin: Vec<EventType> = self
            .types
            .iter()
            .filter_map(|raw| {
                EventType::BUILT_IN
                    .iter()
                    .find(|(t, _)| t.raw() == *raw)
                    .map(|(t, _)| *t)
            })
            .collect();
        // Only when every wanted type is a built-in can the selection stand for them all.
        if !self.types.is_empty() && builtin.len() == self.types.len() {
            for t in builtin {
                sel = sel.of_type(t);
            }
        }
        sel
    }

    /// Whether a record the selection returned passes the checks it cannot express.
    pub fn keeps(&self, r: &Record<'_>) -> bool {
        let h = r.event().header();
        (self.types.is_empty() || self.types.contains(&h.event_type().raw()))
            && self.source.is_none_or(|s| s == h.source().raw())
    }
}
