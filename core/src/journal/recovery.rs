//! Recovery, verification and repair: what is in a journal directory, and whether it can
//! be trusted.
//!
//! - **Sealed segments** (every one but the last, normally) are trusted through their
//!   footer and the footer's CRC: recovery reads 64 + 256 bytes of each and none of its
//!   records, so its time does not grow with the history, only with the number of
//!   segments (a few syscalls each) and the size of the one open segment.
//! - **The open segment** (the last, unsealed) is scanned record by record. A record that
//!   fails its checks and is followed only by zeros is a *torn tail* (a crash in the
//!   middle of an append): recovery zeroes it in place (the file is never shrunk) and the
//!   journal continues from there. Anything else that fails — a damaged record with data
//!   after it, a committed record after an empty one, a bad header, an unsealed segment
//!   that is not the last, a sequence gap — is [`JournalError::Corrupt`], never skipped.
//! - **Repair** ([`repair`]) scans every record of every segment, turns each damaged
//!   record into a tombstone (a valid record that readers step over and count), cuts a
//!   torn tail, and rewrites missing or damaged footers. It returns what it changed.
//!   A bad segment header or a sequence gap is beyond repair and stays an error.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut, MmapOptions};

use super::error::{Damage, JournalError};
use super::footer::Summary;
use super::record::{self, State};
use super::segment::{self, SegmentHeader};

/// How much a scan may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Read only: report a torn tail, fail on corruption. `deep` also checks every record
    /// of sealed segments against their footers.
    Verify { deep: bool },
    /// Cut a torn tail; fail on corruption. Sealed segments are trusted via footers.
    Recover,
    /// Cut a torn tail, tombstone damaged records, rebuild footers, scanning everything.
    Repair,
}

/// One segment as recovery found it.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// The file.
    pub path: PathBuf,
    /// Its header.
    pub header: SegmentHeader,
    /// What it holds (from its footer if sealed, else from the scan).
    pub summary: Summary,
    /// Whether it has a valid footer.
    pub sealed: bool,
}

/// One change `repair` (or recovery, for a torn tail) made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// A torn tail record was zeroed.
    CutTornTail {
        /// The segment.
        path: PathBuf,
        /// The record's sequence number.
        seq: u64,
    },
    /// A damaged record was replaced by a tombstone.
    Tombstoned {
        /// The segment.
        path: PathBuf,
        /// The record's sequence number.
        seq: u64,
        /// What was wrong with it.
        damage: Damage,
    },
    /// A footer was written for a segment that had none or a damaged one.
    Resealed {
        /// The segment.
        path: PathBuf,
    },
}

impl Fix {
    /// The segment file the change was made in.
    pub fn path(&self) -> &Path {
        match self {
            Fix::CutTornTail { path, .. }
            | Fix::Tombstoned { path, .. }
            | Fix::Resealed { path } => path,
        }
    }
}

/// The result of a scan.
#[derive(Debug, Default)]
pub struct Scan {
    /// The segments, in sequence order.
    pub segments: Vec<SegmentInfo>,
    /// Torn tails found (cut unless the scan was read-only) and repairs made.
    pub fixes: Vec<Fix>,
}

impl Scan {
    /// The next sequence number to append.
    pub fn next_seq(&self) -> u64 {
        self.segments
            .last()
            .map_or(1, |s| s.summary.first_seq + s.summary.count)
    }
    /// The journal's timestamp watermark after its last record.
    pub fn watermark(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.summary.watermark)
    }
    /// Records in the journal (tombstones included).
    pub fn records(&self) -> u64 {
        self.segments.iter().map(|s| s.summary.count).sum()
    }
}

/// Where a record scan stopped.
enum Stop {
    /// At the first empty record (or the end of the segment), with zeros after it.
    End,
    /// At a damaged record followed only by zeros.
    Torn(u64, Damage),
    /// At a damaged record (or a hole) with data after it.
    Damaged(u64, Damage),
}

/// Scans records `from..` of a mapped segment into `summary`.
fn scan_records<const SLOT: usize>(
    bytes: &[u8],
    h: &SegmentHeader,
    from: u64,
    summary: &mut Summary,
) -> Stop {
    let rec = h.record_size();
    let end = h.footer_offset();
    for i in from..h.capacity {
        let at = h.record_offset(i);
        let r = &bytes[at..at + rec];
        match record::check::<SLOT>(r, h.first_seq + i) {
            Ok(State::Empty) => {
                // A zero commit word: either the end, or a record a crash interrupted
                // before its commit word (some bytes written), or a hole.
                return if !record::all_zero(&bytes[at + rec..end]) {
                    Stop::Damaged(i, Damage::Hole)
                } else if record::all_zero(r) {
                    Stop::End
                } else {
                    Stop::Torn(i, Damage::BadCommitWord(0))
                };
            }
            Ok(State::Event(e, wm)) => summary.add(e, wm),
            Ok(State::Tombstone) => summary.add_tombstone(),
            Err(d) => {
                return if record::all_zero(&bytes[at + rec..end]) {
                    Stop::Torn(i, d)
                } else {
                    Stop::Damaged(i, d)
                };
            }
        }
    }
    Stop::End
}

/// A map of a whole segment: writable for recovery and repair, read-only for verify.
enum SegMap {
    Ro(Mmap),
    Rw(MmapMut),
}

impl SegMap {
    fn bytes(&self) -> &[u8] {
        match self {
            SegMap::Ro(m) => m,
            SegMap::Rw(m) => m,
        }
    }
}

/// Maps a segment file.
pub(crate) fn map_rw(file: &File, path: &Path) -> Result<MmapMut, JournalError> {
    // SAFETY: a shared map of a segment file, which is preallocated at its final size and
    // never truncated (no SIGBUS on access). Only the lock holder (this process) writes
    // it; other processes only read committed records, which are never changed again.
    unsafe { MmapOptions::new().map_mut(file) }.map_err(|e| JournalError::io("map", path, e))
}

/// Maps a segment file read-only.
pub(crate) fn map_ro(file: &File, path: &Path) -> Result<Mmap, JournalError> {
    // SAFETY: as for `map_rw`; this map is never written through. Bytes not yet committed
    // by a live writer may change under it; readers only read them after an acquire load
    // of the record's commit word (see `record::check`).
    unsafe { MmapOptions::new().map(file) }.map_err(|e| JournalError::io("map", path, e))
}

/// Scans one segment in `mode`; `last` says whether it is the journal's last segment and
/// `watermark` is the journal's watermark before it.
fn scan_segment<const SLOT: usize>(
    path: &Path,
    first_seq: u64,
    last: bool,
    watermark: u64,
    mode: Mode,
    fixes: &mut Vec<Fix>,
) -> Result<SegmentInfo, JournalError> {
    let writes = !matches!(mode, Mode::Verify { .. });
    let file = OpenOptions::new()
        .read(true)
        .write(writes)
        .open(path)
        .map_err(|e| JournalError::io("open", path, e))?;
    let header = segment::read_header(&file, path, first_seq)?;
    if header.slot != SLOT {
        return Err(JournalError::SlotMismatch {
            expected: SLOT,
            found: header.slot,
        });
    }
    let footer = segment::read_footer(&file, path, &header)?;
    let corrupt = |offset: usize, seq: u64, damage: Damage| JournalError::Corrupt {
        path: path.to_owned(),
        offset: offset as u64,
        seq,
        damage,
    };
    if let Some(f) = &footer {
        if f.first_seq != header.first_seq || f.count > header.capacity {
            if mode != Mode::Repair {
                return Err(corrupt(
                    header.footer_offset(),
                    first_seq,
                    Damage::BadFooter,
                ));
            }
        } else if matches!(mode, Mode::Recover | Mode::Verify { deep: false }) {
            // Trusted through the footer's CRC: no record is read.
            return Ok(SegmentInfo {
                path: path.to_owned(),
                header,
                summary: *f,
                sealed: true,
            });
        }
    } else if !last && mode != Mode::Repair {
        return Err(corrupt(header.footer_offset(), first_seq, Damage::Unsealed));
    }

    let mut map = if writes {
        SegMap::Rw(map_rw(&file, path)?)
    } else {
        SegMap::Ro(map_ro(&file, path)?)
    };
    let mut summary = Summary::empty(header.first_seq, watermark);
    let mut from = 0;
    loop {
        match scan_records::<SLOT>(map.bytes(), &header, from, &mut summary) {
            Stop::End => break,
            Stop::Torn(i, _) if footer.is_none() || mode == Mode::Repair => {
                let seq = header.first_seq + i;
                if let SegMap::Rw(m) = &mut map {
                    let at = header.record_offset(i);
                    m[at..at + header.record_size()].fill(0);
                }
                fixes.push(Fix::CutTornTail {
                    path: path.to_owned(),
                    seq,
                });
                break;
            }
            Stop::Torn(i, d) | Stop::Damaged(i, d) => {
                let seq = header.first_seq + i;
                let at = header.record_offset(i);
                match &mut map {
                    SegMap::Rw(m) if mode == Mode::Repair => {
                        record::write_tombstone::<SLOT>(&mut m[at..at + header.record_size()], seq);
                        summary.add_tombstone();
                        fixes.push(Fix::Tombstoned {
                            path: path.to_owned(),
                            seq,
                            damage: d,
                        });
                        from = i + 1;
                    }
                    _ => return Err(corrupt(at, seq, d)),
                }
            }
        }
    }
    let mut sealed = footer.is_some();
    match (&footer, mode) {
        (Some(f), Mode::Verify { .. })
            if f.count != summary.count || f.watermark != summary.watermark =>
        {
            return Err(corrupt(
                header.footer_offset(),
                first_seq,
                Damage::BadFooter,
            ));
        }
        (Some(f), _) => summary.sealed_unix_ns = f.sealed_unix_ns,
        _ => {}
    }
    if mode == Mode::Repair {
        let stale = footer.map_or(!last, |f| f != summary);
        if stale {
            if summary.sealed_unix_ns == 0 {
                summary.sealed_unix_ns = segment::unix_now_ns();
            }
            if let SegMap::Rw(m) = &mut map {
                let at = header.footer_offset();
                m[at..at + super::footer::FOOTER_SIZE].copy_from_slice(&summary.encode());
            }
            fixes.push(Fix::Resealed {
                path: path.to_owned(),
            });
            sealed = true;
        }
    }
    if let SegMap::Rw(m) = &map {
        // Make repairs durable before anyone builds on them; an untouched segment is not
        // synced (recovery of a clean journal makes no sync call).
        if fixes.iter().any(|f| f.path() == path) {
            m.flush().map_err(|e| JournalError::io("sync", path, e))?;
        }
    }
    Ok(SegmentInfo {
        path: path.to_owned(),
        header,
        summary,
        sealed,
    })
}

/// Scans a journal directory in `mode` (see the module docs).
pub(crate) fn scan<const SLOT: usize>(dir: &Path, mode: Mode) -> Result<Scan, JournalError> {
    let listed = if matches!(mode, Mode::Verify { .. }) {
        segment::list_readonly(dir)?
    } else {
        segment::list(dir)?
    };
    let mut out = Scan::default();
    let n = listed.len();
    for (i, (first, path)) in listed.into_iter().enumerate() {
        let expected = out.next_seq();
        if i > 0 && first != expected {
            return Err(JournalError::Corrupt {
                path,
                offset: 0,
                seq: first,
                damage: Damage::SeqGap {
                    expected,
                    found: first,
                },
            });
        }
        let info = scan_segment::<SLOT>(
            &path,
            first,
            i + 1 == n,
            out.watermark(),
            mode,
            &mut out.fixes,
        )?;
        out.segments.push(info);
    }
    Ok(out)
}

/// Checks a journal without changing it: headers, footers, the sequence chain, and the
/// open segment record by record; with `deep`, every record of every segment (and that
/// each footer agrees with its records). A torn tail is reported in `fixes` (as it would
/// be cut), not an error.
pub fn verify<const SLOT: usize>(dir: &Path, deep: bool) -> Result<Scan, JournalError> {
    scan::<SLOT>(dir, Mode::Verify { deep })
}

/// Repairs a journal in place (see the module docs) and reports every change. Takes the
/// writer lock: it fails with [`JournalError::Locked`] while a writer is open. Readers
/// must not be reading the journal while it runs.
pub fn repair<const SLOT: usize>(dir: &Path) -> Result<Scan, JournalError> {
    let _lock = super::lock::DirLock::acquire(dir)?;
    scan::<SLOT>(dir, Mode::Repair)
}
