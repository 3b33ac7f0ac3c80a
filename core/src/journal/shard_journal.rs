//! A shard's journal: the journaler as one more consumer of what a shard takes from its
//! rings (the LMAX pattern), on the shard's own thread.
//!
//! Per shard, not per bus: a [`Journal`] has one writer, so each shard writes its own
//! directory (`DIR/shard-NN`, see [`JournalConfig::shard_dir`]) with no lock and no shared
//! sequence counter, in the order its handlers see events.
//!
//! The shard calls two hooks:
//!
//! - [`journal_chunk`], once per chunk it takes off a ring, *before* any event of the
//!   chunk is routed: every event is appended, and the shard dispatches only the prefix
//!   that was journaled. So a handler never sees an event that is not journaled.
//! - [`journal_idle`], at the end of every poll: an empty poll runs
//!   [`Journal::sync_if_due`] (so `Batch` durability keeps its time limit without a
//!   background thread), and a stopping, drained shard syncs once.
//!
//! With no journal configured each hook is one `Option` check per chunk / per poll; with
//! the feature off they do not exist.
//!
//! An append that fails (a full disk when the next segment is preallocated, an I/O error)
//! is never silent: the event and the rest of its chunk go to the dead letters with reason
//! `Failed { code: APPEND_FAILED }` (they reach no handler, since they are not journaled),
//! and the failure is counted with its error in [`JournalStats`] (`Bus::journal_stats`).
//! The next chunk tries again: a disk that has room again resumes journaling.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::LazyNow;
use crate::dead_letters::DeadReason;
use crate::envelope::ErrorCode;
use crate::event::Event;
use crate::retry::{Letter, Retries};
use crate::stats::ShardCounters;

use super::config::JournalConfig;
use super::durability::DurableWatch;
use super::error::{JournalError, SharedJournalError};
use super::writer::Journal;

/// The error code of the dead letter of an event its shard could not journal (reason
/// `DeadReason::Failed { code: APPEND_FAILED }`). Reserved: handlers should not return it.
pub const APPEND_FAILED: ErrorCode = ErrorCode(u16::MAX - 1);

/// A shard's journal and what it shows the bus.
pub(crate) struct ShardJournal<const SLOT: usize> {
    journal: Journal<SLOT>,
    shared: Arc<JournalShared>,
    /// Events taken off the rings and settled here (journaled or dead-lettered).
    taken: u64,
    /// Whether the final sync of a stopping shard ran.
    synced_on_stop: bool,
}

/// A shard journal's counters, written by the shard's thread, read by the bus.
#[derive(Debug)]
pub(crate) struct JournalShared {
    dir: PathBuf,
    /// Events taken off the rings and settled by the journal (journaled or dead-lettered).
    /// Stored after `journaled_seq`, with release: a reader that sees `taken >= n` sees
    /// the sequence number of the n-th event or later in `journaled_seq`.
    taken: AtomicU64,
    journaled_seq: AtomicU64,
    journaled: AtomicU64,
    append_failed: AtomicU64,
    sync_failed: AtomicU64,
    last_error: Mutex<Option<SharedJournalError>>,
    watch: DurableWatch,
}

/// What a shard's journal did, from [`Bus::journal_stats`](crate::Bus::journal_stats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalStats {
    /// The shard's journal directory.
    pub dir: PathBuf,
    /// Events this bus journaled on the shard (since the journal was opened).
    pub journaled: u64,
    /// The sequence number of the last event journaled (the journal's history before this
    /// bus included).
    pub last_seq: u64,
    /// The durable watermark: every record up to it survives what the policy protects
    /// against.
    pub durable_seq: u64,
    /// Events that could not be journaled (each went to the dead letters with
    /// [`APPEND_FAILED`], and no handler saw it).
    pub append_failed: u64,
    /// Syncs that failed (the durable watermark did not move).
    pub sync_failed: u64,
    /// The last append or sync error, if any.
    pub last_error: Option<SharedJournalError>,
}

impl JournalShared {
    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> JournalStats {
        JournalStats {
            dir: self.dir.clone(),
            journaled: self.journaled.load(Ordering::Acquire),
            last_seq: self.journaled_seq.load(Ordering::Acquire),
            durable_seq: self.watch.durable_seq(),
            append_failed: self.append_failed.load(Ordering::Acquire),
            sync_failed: self.sync_failed.load(Ordering::Acquire),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Events taken off the rings and settled by the journal.
    pub(crate) fn taken(&self) -> u64 {
        self.taken.load(Ordering::Acquire)
    }

    /// The last sequence number journaled (read after [`JournalShared::taken`]).
    pub(crate) fn journaled_seq(&self) -> u64 {
        self.journaled_seq.load(Ordering::Acquire)
    }

    /// The durable watermark's handle.
    pub(crate) fn watch(&self) -> &DurableWatch {
        &self.watch
    }

    #[cold]
    fn note_error(&self, counter: &AtomicU64, n: u64, error: JournalError) {
        counter.fetch_add(n, Ordering::AcqRel);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.into());
    }
}

impl<const SLOT: usize> ShardJournal<SLOT> {
    /// Opens (and recovers) shard `shard`'s journal under `config`'s directory.
    pub(crate) fn open(
        config: &JournalConfig,
        shard: usize,
    ) -> Result<(Self, Arc<JournalShared>), JournalError> {
        let config = config.for_shard(shard);
        let dir = config.dir.clone();
        let journal = Journal::open(config)?;
        let shared = Arc::new(JournalShared {
            dir,
            taken: AtomicU64::new(0),
            journaled_seq: AtomicU64::new(journal.last_seq()),
            journaled: AtomicU64::new(0),
            append_failed: AtomicU64::new(0),
            sync_failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
            watch: journal.durable_watch(),
        });
        let me = ShardJournal {
            journal,
            shared: Arc::clone(&shared),
            taken: 0,
            synced_on_stop: false,
        };
        Ok((me, shared))
    }

    /// Appends a chunk's events in order; returns the prefix that was journaled (all of
    /// it unless an append failed, in which case the rest went to the dead letters).
    #[inline]
    fn append_chunk<'a>(
        &mut self,
        first: &'a [Event<SLOT>],
        second: &'a [Event<SLOT>],
        retries: &mut Retries<SLOT>,
        counters: &ShardCounters,
        now: &LazyNow<'_>,
    ) -> (&'a [Event<SLOT>], &'a [Event<SLOT>]) {
        let total = first.len() + second.len();
        let mut done = 0;
        let mut failure = None;
        for event in first.iter().chain(second) {
            if let Err(e) = self.journal.append_deferred(event) {
                failure = Some(e);
                break;
            }
            done += 1;
        }
        // One durable-watermark update per chunk (under `Os`), not per event.
        self.journal.publish_appended();
        let s = &*self.shared;
        s.journaled_seq
            .store(self.journal.last_seq(), Ordering::Release);
        s.journaled.store(
            s.journaled.load(Ordering::Relaxed) + done as u64,
            Ordering::Release,
        );
        self.taken += total as u64;
        if let Some(error) = failure {
            let (left, right) = split(first, second, done);
            self.dead_letter(left.iter().chain(right), retries, counters, now.get());
            s.note_error(&s.append_failed, (total - done) as u64, error);
            s.taken.store(self.taken, Ordering::Release);
            return prefix(first, second, done);
        }
        s.taken.store(self.taken, Ordering::Release);
        (first, second)
    }

    /// The events that were not journaled: dead letters, never delivered.
    #[cold]
    fn dead_letter<'a>(
        &self,
        events: impl Iterator<Item = &'a Event<SLOT>>,
        retries: &mut Retries<SLOT>,
        counters: &ShardCounters,
        now: u64,
    ) {
        for event in events {
            // A scheduled event is registered with the schedule: settle it there first,
            // as a full timer wheel does (shard.rs, `take_scheduled`).
            if event.header().is_scheduled() && !retries.schedule.cancel(event.header().id()) {
                counters.scheduled_cancelled.incr();
                continue;
            }
            let letter = Letter {
                reason: DeadReason::Failed {
                    code: APPEND_FAILED,
                },
                attempts: 0,
                last_error: Some(APPEND_FAILED),
                first_attempt_ns: now,
            };
            retries.dead_letter_undelivered(event, None, letter, now);
        }
    }

    /// The end of a poll: an empty poll syncs if the `Batch` time limit has passed; a
    /// stopping, drained shard syncs once (under every policy).
    #[inline]
    fn idle(&mut self, empty: bool, stopping: bool) {
        if stopping {
            if !self.synced_on_stop {
                self.synced_on_stop = true;
                if let Err(e) = self.journal.sync() {
                    self.shared.note_error(&self.shared.sync_failed, 1, e);
                }
            }
        } else if empty {
            if let Err(e) = self.journal.sync_if_due() {
                self.shared.note_error(&self.shared.sync_failed, 1, e);
            }
        }
    }
}

/// The two slices of a chunk cut at `at`: what is after it.
fn split<'a, T>(first: &'a [T], second: &'a [T], at: usize) -> (&'a [T], &'a [T]) {
    if at <= first.len() {
        (&first[at..], second)
    } else {
        (&[], &second[at - first.len()..])
    }
}

/// The two slices of a chunk cut at `at`: what is before it.
fn prefix<'a, T>(first: &'a [T], second: &'a [T], at: usize) -> (&'a [T], &'a [T]) {
    if at <= first.len() {
        (&first[..at], &[])
    } else {
        (first, &second[..at - first.len()])
    }
}

/// The shard's per-chunk hook (see the module docs): journals the chunk and returns the
/// part to dispatch. Without a journal, the chunk as it is.
#[inline(always)]
pub(crate) fn journal_chunk<'a, const SLOT: usize>(
    journal: &mut Option<ShardJournal<SLOT>>,
    first: &'a [Event<SLOT>],
    second: &'a [Event<SLOT>],
    retries: &mut Retries<SLOT>,
    counters: &ShardCounters,
    now: &LazyNow<'_>,
) -> (&'a [Event<SLOT>], &'a [Event<SLOT>]) {
    match journal {
        None => (first, second),
        Some(j) => j.append_chunk(first, second, retries, counters, now),
    }
}

/// The shard's end-of-poll hook (see the module docs).
#[inline(always)]
pub(crate) fn journal_idle<const SLOT: usize>(
    journal: &mut Option<ShardJournal<SLOT>>,
    empty: bool,
    stopping: bool,
) {
    if let Some(j) = journal {
        j.idle(empty, stopping);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_prefix_cut_a_two_part_chunk() {
        let (a, b) = ([1, 2, 3], [4, 5]);
        for at in 0..=5 {
            let (p, q) = prefix(&a, &b, at);
            let (r, s) = split(&a, &b, at);
            let before: Vec<i32> = p.iter().chain(q).copied().collect();
            let after: Vec<i32> = r.iter().chain(s).copied().collect();
            assert_eq!(before, (1..=at as i32).collect::<Vec<_>>());
            assert_eq!(after, (at as i32 + 1..=5).collect::<Vec<_>>());
        }
    }
}
