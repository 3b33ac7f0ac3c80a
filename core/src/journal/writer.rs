//! The writer: appends records to the open segment's map, seals full segments, creates
//! the next, applies the durability policy and retention.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use crate::event::{Event, DEFAULT_SLOT};

use super::config::JournalConfig;
use super::durability::{Durability, DurableWatch};
use super::error::JournalError;
use super::footer::{Summary, FOOTER_SIZE};
use super::lock::DirLock;
use super::record;
use super::recovery::{self, Fix, Mode, Scan};
use super::retention;
use super::segment::{self, SegmentHeader};

/// A sealed segment the writer remembers for retention.
#[derive(Debug, Clone)]
pub(crate) struct Sealed {
    pub(crate) path: PathBuf,
    pub(crate) bytes: u64,
    pub(crate) sealed_unix_ns: u64,
}

/// The open segment.
struct Active {
    path: PathBuf,
    header: SegmentHeader,
    map: MmapMut,
    summary: Summary,
    /// Index of the next record to write.
    next: u64,
    /// Index of the first record not yet synced (Batch and Always).
    unsynced: u64,
}

/// An append-only journal of events (see the module docs for the format and the
/// guarantees). One writer per directory (a lock enforces it); any number of
/// [`JournalReader`](super::JournalReader)s, in this process or others.
pub struct Journal<const SLOT: usize = DEFAULT_SLOT> {
    config: JournalConfig,
    _lock: DirLock,
    active: Active,
    next_seq: u64,
    watermark: u64,
    sealed: VecDeque<Sealed>,
    watch: DurableWatch,
    clock: quanta::Clock,
    last_sync: quanta::Instant,
    recovered: Vec<Fix>,
    next: Next,
    closed: bool,
}

/// A segment mapped and prefaulted, not yet published (see [`Journal::prepare_next`]).
struct Ready {
    prepared: segment::Prepared,
    header: SegmentHeader,
    map: MmapMut,
}

/// The next segment: being prepared by a helper thread, ready, or not started.
enum Next {
    None,
    Pending(std::thread::JoinHandle<Result<Ready, JournalError>>),
    Ready(Ready),
}

impl<const SLOT: usize> core::fmt::Debug for Journal<SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.config.dir)
            .field("next_seq", &self.next_seq)
            .field("durable_seq", &self.watch.durable_seq())
            .field("segment", &self.active.path)
            .finish_non_exhaustive()
    }
}

impl<const SLOT: usize> Journal<SLOT> {
    /// Opens (creating if needed) the journal in `config`'s directory and recovers it:
    /// sealed segments are trusted through their footers, the open segment is scanned, a
    /// torn tail is cut (see [`Journal::recovered`]). Corruption anywhere else is
    /// [`JournalError::Corrupt`]; run [`repair`](super::repair) to get past it.
    ///
    /// Allocates (paths, the maps); `append` does not.
    pub fn open(config: JournalConfig) -> Result<Self, JournalError> {
        config.validate()?;
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| JournalError::io("create dir", &dir, e))?;
        let lock = DirLock::acquire(&dir)?;
        let Scan { segments, fixes } = recovery::scan::<SLOT>(&dir, Mode::Recover)?;
        let next_seq = segments.last().map_or(1, |s| s.summary.last_seq() + 1);
        let watermark = segments.last().map_or(0, |s| s.summary.watermark);
        let mut sealed = VecDeque::new();
        let mut open = None;
        for s in segments {
            if s.sealed {
                sealed.push_back(Sealed {
                    path: s.path,
                    bytes: s.header.file_len(),
                    sealed_unix_ns: s.summary.sealed_unix_ns,
                });
            } else {
                open = Some(s);
            }
        }
        let syncs = config.durability != Durability::Os;
        let active = match open {
            Some(s) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&s.path)
                    .map_err(|e| JournalError::io("open", &s.path, e))?;
                let map = recovery::map_rw(&file, &s.path)?;
                if syncs {
                    // What a crashed writer left may not be on disk yet.
                    map.flush()
                        .map_err(|e| JournalError::io("sync", &s.path, e))?;
                }
                Active {
                    path: s.path,
                    header: s.header,
                    map,
                    next: s.summary.count,
                    unsynced: s.summary.count,
                    summary: s.summary,
                }
            }
            None => {
                let ready = Self::prepare_segment(&dir, &config, next_seq)?;
                Self::publish(ready, &config, watermark)?
            }
        };
        let watch = DurableWatch::default();
        watch.advance(next_seq - 1);
        let clock = quanta::Clock::new();
        let last_sync = clock.now();
        let mut journal = Journal {
            config,
            _lock: lock,
            active,
            next_seq,
            watermark,
            sealed,
            watch,
            clock,
            last_sync,
            recovered: fixes,
            next: Next::None,
            closed: false,
        };
        journal.start_next(None);
        Ok(journal)
    }

    /// Builds the segment starting at `first_seq` under its temporary name, maps it, and
    /// faults every page in writable. Runs on a helper thread (see `start_next`).
    fn prepare_segment(
        dir: &Path,
        config: &JournalConfig,
        first_seq: u64,
    ) -> Result<Ready, JournalError> {
        let header = SegmentHeader {
            slot: SLOT,
            capacity: u64::from(config.segment_records),
            first_seq,
            created_unix_ns: segment::unix_now_ns(),
        };
        let prepared = segment::prepare(dir, &header, config.durability != Durability::Os)?;
        let map = match recovery::map_rw(&prepared.file, &prepared.tmp) {
            Ok(map) => map,
            Err(e) => {
                let _ = std::fs::remove_file(&prepared.tmp);
                return Err(e);
            }
        };
        // Fault every page in writable now (MADV_POPULATE_WRITE), off the append path:
        // otherwise every 13th append takes a write fault and the filesystem's page_mkwrite
        // (~8 us each on this machine's ext4). Best effort: kernels before 5.14 do not know
        // the advice, and appends then fault as they go.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::PopulateWrite);
        Ok(Ready {
            prepared,
            header,
            map,
        })
    }

    /// Publishes a prepared segment (rename) and makes it the open one.
    fn publish(
        ready: Ready,
        config: &JournalConfig,
        watermark: u64,
    ) -> Result<Active, JournalError> {
        let Ready {
            prepared,
            header,
            map,
        } = ready;
        let sync = config.durability != Durability::Os;
        if let Err(e) = segment::publish(&prepared.tmp, &prepared.path, sync) {
            let _ = std::fs::remove_file(&prepared.tmp);
            return Err(e);
        }
        Ok(Active {
            path: prepared.path,
            header,
            map,
            summary: Summary::empty(header.first_seq, watermark),
            next: 0,
            unsynced: 0,
        })
    }

    /// Starts preparing the segment after the open one on a helper thread (segments fill
    /// completely, so its first sequence number is known). If the thread cannot be
    /// spawned, the segment is prepared at rollover instead.
    ///
    /// `retire`, the map of the segment just sealed, is unmapped on that thread too, after
    /// the next segment is ready: unmapping 20 MiB of dirty shared pages walks every page
    /// (dirty accounting), which took the append thread ~1-2 ms per rollover.
    fn start_next(&mut self, retire: Option<MmapMut>) {
        let dir = self.config.dir.clone();
        let config = self.config.clone();
        let first = self.active.header.first_seq + self.active.header.capacity;
        let spawned = std::thread::Builder::new()
            .name("journal-prepare".into())
            .spawn(move || {
                let ready = Self::prepare_segment(&dir, &config, first);
                drop(retire);
                ready
            });
        // If the thread could not be spawned, `retire` was dropped with the closure here.
        self.next = spawned.map_or(Next::None, Next::Pending);
    }

    /// Waits until the next segment is prepared (preallocated, mapped, prefaulted), so the
    /// next rollover is a rename. Useful before a latency-sensitive phase or a measurement:
    /// the helper thread allocates (paths, a map) while it works.
    pub fn prepare_next(&mut self) -> Result<(), JournalError> {
        let ready = self.take_next()?;
        self.next = Next::Ready(ready);
        Ok(())
    }

    /// The prepared next segment: the helper's, or one prepared here if there is none, the
    /// helper failed (a full disk is then reported by the retry here), or it is stale.
    fn take_next(&mut self) -> Result<Ready, JournalError> {
        let first = self.active.header.first_seq + self.active.header.capacity;
        match self.take_next_if_any() {
            Some(r) if r.header.first_seq == first => Ok(r),
            Some(r) => {
                let _ = std::fs::remove_file(&r.prepared.tmp);
                Self::prepare_segment(&self.config.dir, &self.config, first)
            }
            None => Self::prepare_segment(&self.config.dir, &self.config, first),
        }
    }

    /// Appends one event and returns its sequence number: the event is then *journaled*
    /// (see [`Durability`]). Under `Always` it is also durable; under `Batch` it may have
    /// triggered a sync.
    ///
    /// No allocation, except when the segment is full and the next one is created (a
    /// file, a map, a path: once every `segment_records` events).
    ///
    /// This is the plug-in point for a shard: call it for each event drained, in drain
    /// order, before (or after, see the module docs) handing it to the router.
    pub fn append(&mut self, event: &Event<SLOT>) -> Result<u64, JournalError> {
        let seq = self.append_deferred(event)?;
        if self.config.durability == Durability::Os {
            self.watch.advance(seq);
        }
        Ok(seq)
    }

    /// Under `Os`, makes everything appended durable in the watermark (see
    /// [`Journal::append_deferred`]). Under the other policies the syncs move it.
    #[inline]
    pub(crate) fn publish_appended(&self) {
        let last = self.next_seq - 1;
        if self.config.durability == Durability::Os && self.watch.durable_seq() != last {
            self.watch.advance(last);
        }
    }

    /// As [`Journal::append`], except that under `Os` the durable watermark is not moved
    /// (a sequentially consistent store and a load per record): the caller calls
    /// [`Journal::publish_appended`] once per batch (a shard, once per chunk).
    #[inline]
    pub(crate) fn append_deferred(&mut self, event: &Event<SLOT>) -> Result<u64, JournalError> {
        if self.closed {
            return Err(JournalError::Closed);
        }
        if self.active.next == self.active.header.capacity {
            self.roll_over()?;
        }
        let a = &mut self.active;
        let seq = self.next_seq;
        let wm = self.watermark.max(event.header().timestamp_ns());
        let size = a.header.record_size();
        let at = a.header.record_offset(a.next);
        record::write::<SLOT>(&mut a.map[at..at + size], event, seq, wm);
        a.summary.add(event, wm);
        a.next += 1;
        self.next_seq += 1;
        self.watermark = wm;
        match self.config.durability {
            Durability::Os => {}
            Durability::Always => {
                self.sync()?;
            }
            Durability::Batch {
                every_events,
                every,
            } => {
                let pending = self.active.next - self.active.unsynced;
                if pending >= every_events
                    || self.clock.now().saturating_duration_since(self.last_sync) >= every
                {
                    self.sync()?;
                }
            }
        }
        Ok(seq)
    }

    /// Syncs what was appended since the last sync (`msync(MS_SYNC)` of that range, an
    /// `fdatasync` of those pages) and moves the durable watermark. Under `Os` it does
    /// the same on request. Returns the durable watermark.
    pub fn sync(&mut self) -> Result<u64, JournalError> {
        let a = &mut self.active;
        if a.next > a.unsynced {
            let from = a.header.record_offset(a.unsynced);
            let to = a.header.record_offset(a.next);
            a.map
                .flush_range(from, to - from)
                .map_err(|e| JournalError::io("sync", &a.path, e))?;
            a.unsynced = a.next;
        }
        self.last_sync = self.clock.now();
        let last = self.next_seq - 1;
        self.watch.advance(last);
        Ok(last)
    }

    /// Under `Batch`, syncs if the time limit has passed since the last sync and anything
    /// waits. An owner that may go idle calls this from its idle path (a shard's empty
    /// poll), so the time limit holds without appends. A no-op under `Os` and `Always`.
    pub fn sync_if_due(&mut self) -> Result<u64, JournalError> {
        if let Durability::Batch { every, .. } = self.config.durability {
            let a = &self.active;
            if a.next > a.unsynced
                && self.clock.now().saturating_duration_since(self.last_sync) >= every
            {
                return self.sync();
            }
        }
        Ok(self.watch.durable_seq())
    }

    /// Seals the full segment (footer, then a sync when the policy syncs), creates the
    /// next, applies retention.
    fn roll_over(&mut self) -> Result<(), JournalError> {
        // Sync the records first so the footer never describes records that are not on
        // disk (the footer makes recovery trust them without reading).
        if self.config.durability != Durability::Os {
            self.sync()?;
        }
        let a = &mut self.active;
        a.summary.sealed_unix_ns = segment::unix_now_ns();
        let at = a.header.footer_offset();
        a.map[at..at + FOOTER_SIZE].copy_from_slice(&a.summary.encode());
        if self.config.durability != Durability::Os {
            a.map
                .flush_range(at, FOOTER_SIZE)
                .map_err(|e| JournalError::io("sync", &a.path, e))?;
        }
        let ready = self.take_next()?;
        let next = Self::publish(ready, &self.config, self.watermark)?;
        let Active {
            path,
            header,
            map,
            summary,
            ..
        } = core::mem::replace(&mut self.active, next);
        self.sealed.push_back(Sealed {
            path,
            bytes: header.file_len(),
            sealed_unix_ns: summary.sealed_unix_ns,
        });
        self.start_next(Some(map));
        self.enforce_retention()?;
        Ok(())
    }

    /// Deletes sealed segments beyond the retention limits (oldest first) and returns how
    /// many. Runs on every seal; call it yourself to apply an age limit on a quiet journal.
    pub fn enforce_retention(&mut self) -> Result<usize, JournalError> {
        let active_bytes = self.active.header.file_len();
        retention::enforce(
            &mut self.sealed,
            active_bytes,
            &self.config.retention,
            segment::unix_now_ns(),
            self.config.durability != Durability::Os,
            &self.config.dir,
        )
    }

    /// The sequence number the next append gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
    /// The last sequence number appended (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }
    /// The highest durable sequence number (see [`Durability`]).
    pub fn durable_seq(&self) -> u64 {
        self.watch.durable_seq()
    }
    /// A handle to read and wait on the durable watermark from other threads.
    pub fn durable_watch(&self) -> DurableWatch {
        self.watch.clone()
    }
    /// What recovery changed when the journal was opened (a cut torn tail, or nothing).
    pub fn recovered(&self) -> &[Fix] {
        &self.recovered
    }
    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Syncs (under every policy) and closes: later appends are `Closed`; waits on the
    /// durable watermark that can no longer succeed end. Dropping the journal does the
    /// same, ignoring errors.
    pub fn close(&mut self) -> Result<u64, JournalError> {
        if self.closed {
            return Ok(self.watch.durable_seq());
        }
        let r = self.sync();
        self.closed = true;
        self.watch.close();
        // The prepared next segment was never published: remove it (recovery would).
        if let Some(ready) = self.take_next_if_any() {
            let _ = std::fs::remove_file(&ready.prepared.tmp);
        }
        r
    }
}

impl<const SLOT: usize> Journal<SLOT> {
    /// The helper's result, if a segment was being prepared and it succeeded.
    fn take_next_if_any(&mut self) -> Option<Ready> {
        match core::mem::replace(&mut self.next, Next::None) {
            Next::Ready(r) => Some(r),
            Next::Pending(h) => h.join().ok().and_then(Result::ok),
            Next::None => None,
        }
    }
}

impl<const SLOT: usize> Drop for Journal<SLOT> {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
