//! Which shards an event must reach, readable by publishers without a lock.
//!
//! A subscription lives on one shard. A publisher must put each event on every shard that
//! holds a subscription that may match it, and on no other. The bus keeps, per event type
//! and per destination agent, a bitmask of such shards (bit `s` = shard `s`), in atomics
//! the publisher reads with one load. The control plane (subscribe/unsubscribe, under the
//! bus's lock) keeps the counts behind each bit and flips a bit when its count moves
//! between zero and non-zero.
//!
//! Invariant: a bit is set whenever its count is non-zero. A subscribe sets its bits before
//! it returns, so a publish that starts after `subscribe` returned sees them. A bit may
//! stay set a moment after the last matching subscription left: the event then reaches the
//! shard and is counted `unmatched` there, never lost.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use crate::sync::AtomicU64;

use crate::names::{AgentId, EventType, MAX_AGENTS, MAX_EVENT_TYPES};

/// The most shards a bus can have (one bit each in a `u64`).
pub const MAX_SHARDS: usize = 64;

/// Lock-free read side.
#[derive(Debug)]
pub(crate) struct ShardTargets {
    by_type: Box<[AtomicU64]>,
    any_type: AtomicU64,
    by_destination: Box<[AtomicU64]>,
}

/// What one subscription adds to the masks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Footprint {
    pub shard: usize,
    /// Empty: every type.
    pub types: Vec<EventType>,
    /// Agents whose direct traffic it receives (its own agent, a destination tap).
    pub destinations: Vec<AgentId>,
}

/// Control-plane side: the counts behind each bit.
#[derive(Debug, Default)]
pub(crate) struct TargetCounts {
    by_type: HashMap<(u16, usize), u32>,
    any_type: HashMap<usize, u32>,
    by_destination: HashMap<(u32, usize), u32>,
}

impl Default for ShardTargets {
    fn default() -> Self {
        Self::with_sizes(MAX_EVENT_TYPES, MAX_AGENTS)
    }
}

impl ShardTargets {
    /// Masks for `types` event types and `agents` agents (ids past them route nowhere).
    pub(crate) fn with_sizes(types: usize, agents: usize) -> Self {
        ShardTargets {
            by_type: (0..types).map(|_| AtomicU64::new(0)).collect(),
            any_type: AtomicU64::new(0),
            by_destination: (0..agents).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The shards that must receive an event of type `ty` to `destination`.
    #[inline]
    pub(crate) fn for_event(&self, ty: EventType, destination: Option<AgentId>) -> u64 {
        match destination {
            Some(d) => self
                .by_destination
                .get(d.raw() as usize)
                .map_or(0, |m| m.load(Ordering::Acquire)),
            None => {
                self.by_type
                    .get(ty.index())
                    .map_or(0, |m| m.load(Ordering::Acquire))
                    | self.any_type.load(Ordering::Acquire)
            }
        }
    }

    /// Adds (`delta` = 1) or removes (`delta` = -1) a subscription's footprint.
    pub(crate) fn apply(&self, counts: &mut TargetCounts, f: &Footprint, delta: i32) {
        let bit = 1u64 << f.shard;
        let update = |mask: &AtomicU64, count: &mut u32| {
            *count = count.saturating_add_signed(delta);
            if *count == 0 {
                mask.fetch_and(!bit, Ordering::AcqRel);
            } else {
                mask.fetch_or(bit, Ordering::AcqRel);
            }
        };
        if f.types.is_empty() {
            update(&self.any_type, counts.any_type.entry(f.shard).or_default());
        }
        for t in &f.types {
            if let Some(mask) = self.by_type.get(t.index()) {
                update(mask, counts.by_type.entry((t.raw(), f.shard)).or_default());
            }
        }
        for d in &f.destinations {
            if let Some(mask) = self.by_destination.get(d.raw() as usize) {
                update(
                    mask,
                    counts.by_destination.entry((d.raw(), f.shard)).or_default(),
                );
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;

    /// A publish that starts after `subscribe` returned (here: after it raised a flag the
    /// publisher then saw) finds the subscription's shard in the mask; and a concurrent
    /// unsubscribe of another shard never clears it.
    #[test]
    fn a_publish_after_subscribe_sees_its_shard() {
        loom::model(|| {
            let targets = Arc::new(ShardTargets::with_sizes(2, 2));
            let counts = Arc::new(std::sync::Mutex::new(TargetCounts::default()));
            let other = Footprint {
                shard: 1,
                types: vec![EventType::AGENT_TASK],
                destinations: vec![],
            };
            targets.apply(&mut counts.lock().unwrap(), &other, 1);
            let subscribed = Arc::new(AtomicBool::new(false));
            let subscriber = {
                let (targets, counts, subscribed) = (
                    Arc::clone(&targets),
                    Arc::clone(&counts),
                    Arc::clone(&subscribed),
                );
                loom::thread::spawn(move || {
                    let mine = Footprint {
                        shard: 0,
                        types: vec![EventType::AGENT_TASK],
                        destinations: vec![],
                    };
                    targets.apply(&mut counts.lock().unwrap(), &mine, 1);
                    subscribed.store(true, Ordering::Release);
                    targets.apply(&mut counts.lock().unwrap(), &other, -1);
                })
            };
            if subscribed.load(Ordering::Acquire) {
                let mask = targets.for_event(EventType::AGENT_TASK, None);
                assert_eq!(mask & 1, 1, "subscribed shard missing from the mask");
            }
            subscriber.join().unwrap();
            assert_eq!(targets.for_event(EventType::AGENT_TASK, None), 1);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn bits_follow_counts() {
        let t = ShardTargets::default();
        let mut c = TargetCounts::default();
        let a = Footprint {
            shard: 3,
            types: vec![EventType::AGENT_TASK],
            destinations: vec![AgentId(5)],
        };
        t.apply(&mut c, &a, 1);
        t.apply(&mut c, &a, 1);
        assert_eq!(t.for_event(EventType::AGENT_TASK, None), 1 << 3);
        assert_eq!(t.for_event(EventType::AGENT_TASK, Some(AgentId(5))), 1 << 3);
        assert_eq!(t.for_event(EventType::AGENT_STATUS, None), 0);
        t.apply(&mut c, &a, -1);
        assert_eq!(t.for_event(EventType::AGENT_TASK, None), 1 << 3);
        t.apply(&mut c, &a, -1);
        assert_eq!(t.for_event(EventType::AGENT_TASK, None), 0);
        let any = Footprint {
            shard: 0,
            types: vec![],
            destinations: vec![],
        };
        t.apply(&mut c, &any, 1);
        assert_eq!(t.for_event(EventType::SYSTEM_HEALTH, None), 1);
        assert_eq!(t.for_event(EventType::SYSTEM_HEALTH, Some(AgentId(9))), 0);
    }
}
