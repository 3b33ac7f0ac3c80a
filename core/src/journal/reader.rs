//! Reading a journal in place: records are checked (commit word, CRC-32C, sequence
//! number, event header) and handed out as `&Event` pointing into the map, with no copy.
//! A payload is validated with bytecheck when it is read ([`Event::payload`] never trusts
//! journal bytes: the writer clears the process-local flag).
//!
//! A reader can tail a journal that a writer (in this process or another) is appending
//! to: it stops at the first uncommitted record, and [`JournalReader::refresh`] picks up
//! segments sealed or created since.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::event::{Event, DEFAULT_SLOT};

use super::error::{Damage, JournalError};
use super::footer::Summary;
use super::record::{self, State};
use super::recovery;
use super::segment::{self, SegmentHeader};
use super::selection::Selection;

/// One segment as a reader sees it.
pub(super) struct Segment {
    path: PathBuf,
    header: SegmentHeader,
    pub(super) map: Mmap,
    footer: Option<Summary>,
}

impl Segment {
    fn open<const SLOT: usize>(path: PathBuf, first_seq: u64) -> Result<Self, JournalError> {
        let file = File::open(&path).map_err(|e| JournalError::io("open", &path, e))?;
        let header = segment::read_header(&file, &path, first_seq)?;
        if header.slot != SLOT {
            return Err(JournalError::SlotMismatch {
                expected: SLOT,
                found: header.slot,
            });
        }
        let map = recovery::map_ro(&file, &path)?;
        let mut s = Segment {
            path,
            header,
            map,
            footer: None,
        };
        s.reload_footer();
        Ok(s)
    }

    fn reload_footer(&mut self) {
        if self.footer.is_none() {
            let at = self.header.footer_offset();
            self.footer =
                Summary::decode(&self.map[at..at + super::footer::FOOTER_SIZE]).filter(|f| {
                    f.first_seq == self.header.first_seq && f.count <= self.header.capacity
                });
        }
    }

    /// Records that may be committed: the footer's count when sealed, else capacity.
    fn limit(&self) -> u64 {
        self.footer
            .as_ref()
            .map_or(self.header.capacity, |f| f.count)
    }

    fn record(&self, i: u64) -> &[u8] {
        let at = self.header.record_offset(i);
        &self.map[at..at + self.header.record_size()]
    }

    fn corrupt(&self, i: u64, damage: Damage) -> JournalError {
        JournalError::Corrupt {
            path: self.path.clone(),
            offset: self.header.record_offset(i) as u64,
            seq: self.header.first_seq + i,
            damage,
        }
    }

    /// Checks record `i`: `Ok(None)` if not committed yet.
    fn check<const SLOT: usize>(&self, i: u64) -> Result<State<'_, SLOT>, JournalError> {
        record::check::<SLOT>(self.record(i), self.header.first_seq + i)
            .map_err(|d| self.corrupt(i, d))
    }

    /// How many records are committed (a binary search over commit words for an open
    /// segment: a healthy one is a committed prefix then zeros).
    fn committed<const SLOT: usize>(&self) -> Result<u64, JournalError> {
        if let Some(f) = self.footer {
            return Ok(f.count);
        }
        let (mut lo, mut hi) = (0, self.header.capacity);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if matches!(self.check::<SLOT>(mid)?, State::Empty) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }
}

/// A record read in place.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a, const SLOT: usize = DEFAULT_SLOT> {
    seq: u64,
    event: &'a Event<SLOT>,
}

impl<'a, const SLOT: usize> Record<'a, SLOT> {
    /// Its sequence number in the journal.
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// The event, in the map (CRC and header checked; payload validated when read).
    pub fn event(&self) -> &'a Event<SLOT> {
        self.event
    }
}

/// Reads a journal directory. Opening maps every segment read-only; nothing is copied.
///
/// Tailing a live writer (in this process or another):
///
/// ```no_run
/// # use dreamnet_bus::journal::{JournalReader, Selection};
/// let mut reader: JournalReader = JournalReader::open("/var/lib/app/journal/shard-0")?;
/// let mut next = reader.first_seq();
/// loop {
///     let sel = Selection::all().from_seq(next);
///     let mut records = reader.records(&sel);
///     for record in records.by_ref() {
///         let record = record?; // corruption is an error, never skipped
///         println!("{} {:?}", record.seq(), record.event().header().event_type());
///     }
///     next = records.next_seq();
///     drop(records);
///     reader.refresh()?; // segments sealed or created since
///     std::thread::sleep(std::time::Duration::from_millis(1));
/// }
/// # Ok::<(), dreamnet_bus::journal::JournalError>(())
/// ```
pub struct JournalReader<const SLOT: usize = DEFAULT_SLOT> {
    dir: PathBuf,
    pub(super) segments: Vec<Segment>,
}

impl<const SLOT: usize> core::fmt::Debug for JournalReader<SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("JournalReader")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .finish()
    }
}

impl<const SLOT: usize> JournalReader<SLOT> {
    /// Opens the journal in `dir` for reading (no lock: a writer may be appending).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, JournalError> {
        let mut r = JournalReader {
            dir: dir.as_ref().to_owned(),
            segments: Vec::new(),
        };
        r.refresh()?;
        Ok(r)
    }

    /// Picks up what a live writer did since: footers of segments sealed since, and new
    /// segments. Returns how many segments were added. Segments that retention deleted
    /// stay readable through this reader's maps.
    pub fn refresh(&mut self) -> Result<usize, JournalError> {
        for s in &mut self.segments {
            s.reload_footer();
        }
        let known = self.segments.last().map(|s| s.header.first_seq);
        let mut added = 0;
        for (first, path) in segment::list_readonly(&self.dir)? {
            if known.is_some_and(|k| first <= k) {
                continue;
            }
            match Segment::open::<SLOT>(path, first) {
                Ok(s) => self.segments.push(s),
                // Deleted by retention between the listing and the open: it is history
                // this reader never had, as if it had been deleted a moment earlier.
                Err(JournalError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound
                        && self.segments.is_empty() =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
            added += 1;
        }
        Ok(added)
    }

    /// The first sequence number still in the journal (1, or later after retention).
    pub fn first_seq(&self) -> u64 {
        self.segments.first().map_or(1, |s| s.header.first_seq)
    }

    /// The selected records in sequence order, read in place. The iterator returns
    /// `None` at the first record not yet committed, and calling `next` again later
    /// continues from there as a live writer commits more (to follow it into a new
    /// segment, [`refresh`](Self::refresh) and start again from
    /// [`Records::next_seq`]). After an error it returns `None` for good. Whole
    /// sealed segments that cannot match are skipped by their footers; a time range
    /// starts with [`JournalReader::seek_time`]. Tombstones left by `repair` are stepped
    /// over and counted ([`Records::tombstones`]).
    pub fn records(&self, selection: &Selection) -> Records<'_, SLOT> {
        let mut from = *selection.seqs.start();
        let mut error = None;
        if *selection.time.start() > 0 {
            match self.seek_time(*selection.time.start()) {
                Ok(seq) => from = from.max(seq),
                Err(e) => error = Some(e),
            }
        }
        let (seg, idx) = self.locate(from);
        Records {
            reader: self,
            selection: selection.clone(),
            seg,
            idx,
            error,
            done: false,
            tombstones: 0,
        }
    }

    /// The segment and record index of `seq` (or of the first record after it).
    fn locate(&self, seq: u64) -> (usize, u64) {
        let p = self.segments.partition_point(|s| s.header.first_seq <= seq);
        if p == 0 {
            return (0, 0);
        }
        let s = &self.segments[p - 1];
        (p - 1, seq - s.header.first_seq)
    }

    /// The first sequence number at or after which an event with timestamp `>= ts` can
    /// appear (every earlier record has a smaller timestamp): a binary search over the
    /// segments' footers, then over the records' timestamp watermarks. O(log n) record
    /// reads, each CRC-checked.
    pub fn seek_time(&self, ts: u64) -> Result<u64, JournalError> {
        // Segments whose last watermark is below `ts` hold nothing at or after it.
        let sealed = self
            .segments
            .iter()
            .take_while(|s| s.footer.is_some())
            .count();
        let p = self.segments[..sealed]
            .partition_point(|s| s.footer.as_ref().is_some_and(|f| f.watermark < ts));
        let Some(s) = self.segments.get(p) else {
            return Ok(self
                .segments
                .last()
                .map_or(1, |s| s.header.first_seq + s.limit()));
        };
        let n = s.committed::<SLOT>()?;
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let below = match s.check::<SLOT>(mid)? {
                State::Event(_, wm) => wm < ts,
                // A tombstone has no timestamp: look at its neighbours instead.
                State::Tombstone => true,
                State::Empty => false,
            };
            if below {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(s.header.first_seq + lo)
    }
}

/// The iterator of [`JournalReader::records`].
pub struct Records<'r, const SLOT: usize> {
    reader: &'r JournalReader<SLOT>,
    selection: Selection,
    seg: usize,
    idx: u64,
    error: Option<JournalError>,
    done: bool,
    tombstones: u64,
}

impl<'r, const SLOT: usize> Records<'r, SLOT> {
    /// Tombstones stepped over so far.
    pub fn tombstones(&self) -> u64 {
        self.tombstones
    }
    /// The sequence number the iterator would read next (where a tail resumes).
    pub fn next_seq(&self) -> u64 {
        let segments = &self.reader.segments;
        match segments.get(self.seg) {
            Some(s) => s.header.first_seq + self.idx,
            None => segments
                .last()
                .map_or(1, |s| s.header.first_seq + s.limit()),
        }
    }
}

impl<'r, const SLOT: usize> Iterator for Records<'r, SLOT> {
    type Item = Result<Record<'r, SLOT>, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            self.done = true;
            return Some(Err(e));
        }
        if self.done {
            return None;
        }
        let sel = &self.selection;
        loop {
            let s = self.reader.segments.get(self.seg)?;
            if s.header.first_seq > *sel.seqs.end() {
                self.done = true;
                return None;
            }
            let skip = s.footer.as_ref().is_some_and(|f| !sel.may_match(f));
            if skip || self.idx >= s.limit() {
                if s.footer.is_none() && !skip {
                    // A full open segment: the writer is about to seal it.
                    return None;
                }
                // The next segment must follow on: a missing or overlapping one is
                // corruption, not something to step over.
                if let Some(next) = self.reader.segments.get(self.seg + 1) {
                    let expected = s.header.first_seq + s.limit();
                    if next.header.first_seq != expected {
                        self.done = true;
                        return Some(Err(JournalError::Corrupt {
                            path: next.path.clone(),
                            offset: 0,
                            seq: next.header.first_seq,
                            damage: Damage::SeqGap {
                                expected,
                                found: next.header.first_seq,
                            },
                        }));
                    }
                }
                self.seg += 1;
                self.idx = 0;
                continue;
            }
            let i = self.idx;
            let seq = s.header.first_seq + i;
            if seq > *sel.seqs.end() {
                self.done = true;
                return None;
            }
            match s.check::<SLOT>(i) {
                Ok(State::Empty) if s.footer.is_none() => return None,
                Ok(State::Empty) => {
                    self.done = true;
                    return Some(Err(s.corrupt(i, Damage::Hole)));
                }
                Ok(State::Tombstone) => {
                    self.idx += 1;
                    self.tombstones += 1;
                }
                Ok(State::Event(event, _)) => {
                    self.idx += 1;
                    if sel.matches(seq, event) {
                        return Some(Ok(Record { seq, event }));
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
