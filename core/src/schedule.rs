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
use std::time::Duration;

use crate::timer_wheel::HORIZON_TICKS;

/// How many ticks ahead of the bus clock a scheduled publish may be due: half the timer
/// wheel's horizon (2^36 ticks). The other half is headroom for a shard whose wheel lags
/// the clock (it is advanced at each poll, up to 64 entries at a time), so an accepted
/// schedule always fits the wheel unless that shard was not polled for 2^35 ticks.
pub const SCHEDULE_HORIZON_TICKS: u64 = HORIZON_TICKS / 2;

/// How far ahead a scheduled publish may be due with timer tick `tick`:
/// `tick x 2^35`, saturating. Later due times are refused at publish with
/// [`crate::PublishError::BeyondHorizon`].
///
/// | tick | horizon |
/// |------|---------|
/// | 1 ns | ~34 s |
/// | 1 µs | ~9.5 h |
/// | 100 µs | ~39.8 days |
/// | 1 ms (default) | ~1.09 years |
/// | 10 ms | ~10.9 years |
pub fn schedule_horizon(tick: Duration) -> Duration {
    Duration::from_nanos(tick_ns(tick).saturating_mul(SCHEDULE_HORIZON_TICKS))
}

/// The latest due time a schedule published at `now_ns` may have.
pub(crate) fn latest_due_ns(now_ns: u64, tick: Duration) -> u64 {
    now_ns.saturating_add(tick_ns(tick).saturating_mul(SCHEDULE_HORIZON_TICKS))
}

fn tick_ns(tick: Duration) -> u64 {
    u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX).max(1)
}

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
    /// A table with room for `capacity` events; a failed allocation is an error.
    pub(crate) fn try_with_capacity(
        capacity: usize,
    ) -> Result<Self, std::collections::TryReserveError> {
        let mut pending = HashMap::new();
        pending.try_reserve(capacity)?;
        Ok(Schedule {
            pending: Mutex::new(pending),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizon_is_half_the_wheel_per_tick() {
        assert_eq!(
            schedule_horizon(Duration::from_millis(1)),
            Duration::from_millis(1 << 35)
        );
        assert_eq!(
            schedule_horizon(Duration::from_nanos(1)),
            Duration::from_nanos(1 << 35)
        );
        assert_eq!(
            schedule_horizon(Duration::MAX),
            Duration::from_nanos(u64::MAX)
        );
        assert_eq!(
            latest_due_ns(u64::MAX - 3, Duration::from_secs(1)),
            u64::MAX
        );
        assert_eq!(latest_due_ns(10, Duration::from_nanos(2)), 10 + (2 << 35));
    }
}
