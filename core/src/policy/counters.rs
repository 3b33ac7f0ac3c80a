//! Violation counters per agent and kind, kept across policy reloads.
//!
//! Agents are dense ids up to `MAX_AGENTS` (65,536), so a full table would take 3.5 MiB.
//! Instead rows come in chunks of 256 agents, each allocated the first time an agent in
//! it is *prepared*: for every registered agent when a policy is installed, and for a
//! publisher's agent when the publisher is created (both control plane). A violation
//! can only come from a publisher or a subscribe, so its row exists by then and counting
//! never allocates. (A row found missing all the same is counted as unattributed, not
//! lost.)

use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::names::{AgentId, MAX_AGENTS};
use crate::policy::violation::{Violation, ViolationCounts, ViolationKind};

/// Agents per chunk.
const CHUNK: usize = 256;
/// Rows: one per agent, and one for anonymous subscriptions.
const ROWS: usize = MAX_AGENTS + 1;
const CHUNKS: usize = ROWS.div_ceil(CHUNK);

type Chunk = Box<[AtomicU64]>;

/// The counters.
#[derive(Default)]
pub(crate) struct ViolationTable {
    chunks: OnceLock<Box<[OnceLock<Chunk>]>>,
    unattributed: AtomicU64,
}

/// The counter row of an agent: its id, or the last row for anonymous subscriptions.
fn row(agent: AgentId) -> usize {
    (agent.raw() as usize).min(MAX_AGENTS)
}

impl ViolationTable {
    /// Makes sure `agent`'s row exists (allocates its chunk the first time).
    pub(crate) fn prepare(&self, agent: AgentId) {
        let chunks = self
            .chunks
            .get_or_init(|| (0..CHUNKS).map(|_| OnceLock::new()).collect());
        chunks[row(agent) / CHUNK].get_or_init(|| {
            (0..CHUNK * ViolationKind::COUNT)
                .map(|_| AtomicU64::new(0))
                .collect()
        });
    }

    fn cell(&self, agent: AgentId, kind: ViolationKind) -> Option<&AtomicU64> {
        let r = row(agent);
        let chunk = self.chunks.get()?.get(r / CHUNK)?.get()?;
        chunk.get((r % CHUNK) * ViolationKind::COUNT + kind.index())
    }

    /// Counts one violation.
    pub(crate) fn count(&self, v: &Violation) {
        match self.cell(v.agent, v.kind) {
            Some(c) => c.fetch_add(1, Ordering::Relaxed),
            None => self.unattributed.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// The counts of `agent`.
    pub(crate) fn get(&self, agent: AgentId) -> ViolationCounts {
        let mut out = ViolationCounts::default();
        for (kind, c) in ViolationKind::ALL.iter().zip(out.0.iter_mut()) {
            *c = self
                .cell(agent, *kind)
                .map_or(0, |cell| cell.load(Ordering::Relaxed));
        }
        out
    }

    /// Violations whose row did not exist (none, if every publisher's agent was
    /// prepared).
    pub(crate) fn unattributed(&self) -> u64 {
        self.unattributed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::EventType;

    fn v(agent: u32, kind: ViolationKind) -> Violation {
        Violation {
            agent: AgentId(agent),
            kind,
            event_type: EventType(0),
            destination: None,
            payload_len: 0,
            limit: 0,
        }
    }

    #[test]
    fn prepared_rows_count_per_agent_and_kind() {
        let t = ViolationTable::default();
        for a in [0, 255, 256, 65_535] {
            t.prepare(AgentId(a));
        }
        t.prepare(Violation::ANONYMOUS);
        t.count(&v(255, ViolationKind::RateLimited));
        t.count(&v(255, ViolationKind::RateLimited));
        t.count(&v(256, ViolationKind::QuotaExceeded));
        t.count(&v(65_535, ViolationKind::PublishDenied));
        t.count(&v(u32::MAX, ViolationKind::SubscribeDenied));
        assert_eq!(t.get(AgentId(255)).get(ViolationKind::RateLimited), 2);
        assert_eq!(t.get(AgentId(255)).total(), 2);
        assert_eq!(t.get(AgentId(256)).get(ViolationKind::QuotaExceeded), 1);
        assert_eq!(t.get(AgentId(65_535)).total(), 1);
        assert_eq!(t.get(Violation::ANONYMOUS).total(), 1);
        assert_eq!(t.get(AgentId(0)).total(), 0);
        assert_eq!(t.unattributed(), 0);
    }

    #[test]
    fn an_unprepared_row_is_counted_as_unattributed() {
        let t = ViolationTable::default();
        t.count(&v(3, ViolationKind::PublishDenied));
        t.prepare(AgentId(0));
        t.count(&v(300, ViolationKind::PublishDenied));
        assert_eq!(t.unattributed(), 2);
        assert_eq!(t.get(AgentId(300)).total(), 0);
    }
}
