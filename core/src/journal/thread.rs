//! Event threads: a conversation (every event sharing a correlation id, and the event
//! that started it) in causal order, as a tree built from causation ids.

use std::collections::HashMap;

use super::error::JournalError;
use super::reader::{JournalReader, Record};
use super::selection::Selection;

/// One event of a thread and its depth in the causal tree (0 for a root).
#[derive(Debug, Clone, Copy)]
pub struct ThreadEntry<'a, const SLOT: usize> {
    /// How many causes above it are in the thread.
    pub depth: usize,
    /// The record, read in place.
    pub record: Record<'a, SLOT>,
}

impl<const SLOT: usize> JournalReader<SLOT> {
    /// The conversation `correlation`: the event whose id is `correlation` (it started the
    /// conversation, see `Event::caused_by`) and every event with that correlation id, in
    /// causal order: a depth-first walk of the tree of causation ids, each event after its
    /// cause, siblings in journal order. An event whose cause is not in the journal (it
    /// was deleted by retention, or never journaled) is a root. Nothing is left out: events
    /// caught in a causation cycle (possible only in crafted data) come last, as roots.
    ///
    /// A full scan (footers cannot skip by correlation id); it allocates the result.
    pub fn thread(&self, correlation: u64) -> Result<Vec<ThreadEntry<'_, SLOT>>, JournalError> {
        let mut members: Vec<Record<'_, SLOT>> = Vec::new();
        for r in self.records(&Selection::all()) {
            let r = r?;
            let h = r.event().header();
            if h.correlation_id() == correlation || (correlation != 0 && h.id() == correlation) {
                members.push(r);
            }
        }
        // The first record with an id is its node (ids are unique on one bus).
        let mut by_id: HashMap<u64, usize> = HashMap::new();
        for (i, r) in members.iter().enumerate() {
            by_id.entry(r.event().header().id()).or_insert(i);
        }
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); members.len()];
        let mut roots = Vec::new();
        for (i, r) in members.iter().enumerate() {
            let cause = r.event().header().causation_id();
            match by_id.get(&cause) {
                Some(&p) if cause != 0 && p != i => children[p].push(i),
                _ => roots.push(i),
            }
        }
        let mut out = Vec::with_capacity(members.len());
        let mut seen = vec![false; members.len()];
        let mut walk = |start: usize| {
            let mut stack = vec![(start, 0usize)];
            while let Some((i, depth)) = stack.pop() {
                if std::mem::replace(&mut seen[i], true) {
                    continue;
                }
                out.push(ThreadEntry {
                    depth,
                    record: members[i],
                });
                for &c in children[i].iter().rev() {
                    stack.push((c, depth + 1));
                }
            }
        };
        for &r in &roots {
            walk(r);
        }
        for i in 0..members.len() {
            walk(i);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::TempDir;
    use super::super::{Journal, JournalConfig};
    use super::*;
    use crate::event::Event;
    use crate::names::{AgentId, EventType};

    fn stamped(e: Event, id: u64) -> Event {
        let mut e = e;
        e.stamp(id, AgentId(1), id * 10);
        e
    }

    #[test]
    fn a_conversation_comes_back_as_a_causal_tree() {
        let dir = TempDir::new("thread");
        let mut j: Journal = Journal::open(JournalConfig::new(&dir.0).segment_records(4)).unwrap();
        let root = stamped(Event::new(EventType::AGENT_TASK), 100);
        let a = stamped(
            Event::new(EventType::AGENT_STATUS).caused_by(root.header()),
            101,
        );
        let other = stamped(
            Event::new(EventType::AGENT_TASK).with_correlation_id(5),
            102,
        );
        let b = stamped(
            Event::new(EventType::AGENT_STATUS).caused_by(root.header()),
            103,
        );
        let a1 = stamped(
            Event::new(EventType::AGENT_STATUS).caused_by(a.header()),
            104,
        );
        // Journal order is not causal order: a reply may be drained before its cause.
        let orphan = stamped(
            Event::new(EventType::AGENT_STATUS)
                .with_correlation_id(100)
                .with_causation_id(999),
            105,
        );
        for e in [&root, &b, &other, &a1, &a, &orphan] {
            j.append(e).unwrap();
        }
        drop(j);
        let r: JournalReader = JournalReader::open(&dir.0).unwrap();
        let t = r.thread(100).unwrap();
        let got: Vec<(usize, u64)> = t
            .iter()
            .map(|e| (e.depth, e.record.event().header().id()))
            .collect();
        assert_eq!(got, vec![(0, 100), (1, 103), (1, 101), (2, 104), (0, 105)]);
        assert!(r.thread(7).unwrap().is_empty());
    }

    #[test]
    fn a_causation_cycle_is_not_dropped() {
        let dir = TempDir::new("cycle");
        let mut j: Journal = Journal::open(JournalConfig::new(&dir.0)).unwrap();
        let x = stamped(
            Event::new(EventType::AGENT_TASK)
                .with_correlation_id(9)
                .with_causation_id(2),
            1,
        );
        let y = stamped(
            Event::new(EventType::AGENT_TASK)
                .with_correlation_id(9)
                .with_causation_id(1),
            2,
        );
        j.append(&x).unwrap();
        j.append(&y).unwrap();
        drop(j);
        let r: JournalReader = JournalReader::open(&dir.0).unwrap();
        let got: Vec<(usize, u64)> = r
            .thread(9)
            .unwrap()
            .iter()
            .map(|e| (e.depth, e.record.event().header().id()))
            .collect();
        assert_eq!(got, vec![(0, 1), (1, 2)]);
    }
}
