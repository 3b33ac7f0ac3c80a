//! Scheduled delivery (`publish_at` / `publish_after`): which scheduled events are still
//! pending, so `cancel` can stop them until they fire.
//!
//! A scheduled event travels to its shards like any other, marked scheduled and stamped
//! with its due time; each shard waits it on its timer wheel. When it comes due, the shard
//! asks this table whether it is still pending: a cancelled event is dropped (counted).
//! The table is a map from event id to the number of shards that have not fired it yet,
//! preallocated so that up to its capacity nothing allocates; it is locked only on the
//! scheduled path (publish_at, firing, cancel), never for ordinary events.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// A handle to cancel a scheduled event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ScheduleToken(pub(crate) u64);

impl ScheduleToken {
    /// The scheduled event's id.
    pub fn event_id(self) -> u64 {
        self.0
    }
}

/// Pending scheduled events.
#[derive(Debug)]
pub(crate) struct Schedule {
    pending: Mutex<HashMap<u64, u32>>,
}

impl Schedule {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Schedule {
            pending: Mutex::new(HashMap::with_capacity(capacity)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, u32>> {
        // Every critical section is one map operation: a poisoned map is consistent.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an event that `shards` shards will fire.
    pub(crate) fn add(&self, id: u64, shards: u32) {
        if shards > 0 {
            self.lock().insert(id, shards);
        }
    }

    /// A shard's event came due: true if it is still pending (deliver it).
    pub(crate) fn fire(&self, id: u64) -> bool {
        let mut pending = self.lock();
        match pending.get_mut(&id) {
            Some(left) if *left > 1 => {
                *left -= 1;
                true
            }
            Some(_) => {
                pending.remove(&id);
                true
            }
            None => false,
        }
    }

    /// Cancels an event: true if some shard had not fired it yet.
    pub(crate) fn cancel(&self, id: u64) -> bool {
        self.lock().remove(&id).is_some()
    }
}
