//! A bus's journals (feature `journal`, [`BusBuilder::journal`](crate::BusBuilder::journal)):
//! opening one per shard, and the bus-level view of durability.
//!
//! Three moments in an event's life on a journaled bus:
//!
//! - **accepted**: `try_publish` returned `Ok`: the event is in a ring, in memory only.
//! - **journaled**: its shard took it off the ring and appended it to the shard's journal,
//!   which happens before any handler is called with it. A handler never sees an event
//!   that is not journaled; the journaled record survives `kill -9` of the process.
//! - **durable**: the record survives what the journal's [`Durability`] protects against
//!   (`Os`: a process crash, at once; `Batch`/`Always`: an OS crash or power loss, once an
//!   `fdatasync` covering it returned).
//!
//! [`Bus::wait_durable`] waits until everything accepted before the call is durable.
//!
//! [`Durability`]: crate::journal::Durability

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::BusError;
use crate::journal::{JournalError, JournalShared, JournalStats, ShardJournal};
use crate::priority::Priority;
use crate::shard::Shard;
use crate::wait::{WaitStrategy, Waiter};

use super::{lock_plane, Bus};

/// Opens each shard's journal when the configuration asks for one (the bus is being
/// built: nothing runs yet).
pub(super) fn open_journals<const SLOT: usize>(
    config: &Config,
    mut shards: Vec<Shard<SLOT>>,
) -> Result<(Vec<Shard<SLOT>>, Vec<Arc<JournalShared>>), BusError> {
    let Some(journal) = &config.journal else {
        return Ok((shards, Vec::new()));
    };
    let mut shared = Vec::with_capacity(shards.len());
    for (i, shard) in shards.iter_mut().enumerate() {
        let (j, s) = ShardJournal::open(journal, i).map_err(|e| BusError::Journal {
            shard: i,
            error: e.into(),
        })?;
        shard.journal = Some(j);
        shared.push(s);
    }
    Ok((shards, shared))
}

impl<const SLOT: usize> Bus<SLOT> {
    /// Whether the bus journals what its shards drain ([`BusBuilder::journal`](crate::BusBuilder::journal)).
    pub fn is_journaled(&self) -> bool {
        !self.journals.is_empty()
    }

    /// The durable watermark of shard `shard`'s journal: every record of it up to this
    /// sequence number survives what the durability policy protects against. `None`
    /// without a journal or for a shard that does not exist.
    pub fn durable_seq(&self, shard: usize) -> Option<u64> {
        self.journals.get(shard).map(|j| j.watch().durable_seq())
    }

    /// Each shard's journal counters (empty without a journal): events journaled, last
    /// and durable sequence numbers, failed appends (dead-lettered) and syncs, the last
    /// error.
    pub fn journal_stats(&self) -> Vec<JournalStats> {
        self.journals.iter().map(|j| j.stats()).collect()
    }

    /// Waits until every event accepted before this call is durable in its shards'
    /// journals (or was refused by a journal, and dead-lettered), or `timeout` passes:
    /// then [`JournalError::NotDurable`] with the first shard's sequence number that was
    /// not. Returns at once without a journal.
    ///
    /// Events must be drained meanwhile: by the workers, or in poll mode by another
    /// thread's polls. Under `Batch` an idle shard syncs within the policy's time limit.
    pub fn wait_durable(&self, timeout: Duration) -> Result<(), JournalError> {
        if self.journals.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        let targets = self.accepted_per_shard();
        for (journal, target) in self.journals.iter().zip(targets) {
            // First the shard takes everything accepted so far off its rings...
            let mut waiter = Waiter::new(WaitStrategy::default());
            while journal.taken() < target {
                if Instant::now() >= deadline {
                    return Err(JournalError::NotDurable {
                        seq: journal.journaled_seq() + 1,
                        durable: journal.watch().durable_seq(),
                    });
                }
                waiter.wait();
            }
            // ...then what it journaled up to now becomes durable.
            let seq = journal.journaled_seq();
            let left = deadline.saturating_duration_since(Instant::now());
            journal.watch().wait_durable(seq, left)?;
        }
        Ok(())
    }

    /// Events accepted into each shard's rings so far, every publisher and priority.
    fn accepted_per_shard(&self) -> Vec<u64> {
        let plane = lock_plane(&self.plane);
        let mut out = vec![0u64; self.shared.config.shards];
        for p in &plane.publishers {
            for (s, n) in out.iter_mut().enumerate() {
                if let Some(ps) = p.shards.get(s) {
                    *n += Priority::ALL
                        .iter()
                        .map(|&l| ps.enqueued.get(l))
                        .sum::<u64>();
                }
            }
        }
        out
    }
}
