//! What can go wrong with a journal, as typed errors. Corruption names the file, the byte
//! offset and the sequence number, so that `repair` (or a person) can act on it; nothing
//! corrupt is ever skipped in silence.

use std::path::PathBuf;

use thiserror::Error;

use crate::error::DecodeError;

/// Why a record, a header or a footer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The commit word is neither "committed" nor "tombstone" (nor zero).
    BadCommitWord(u32),
    /// The record's CRC-32C does not match its bytes.
    BadCrc {
        /// The CRC stored in the record.
        stored: u32,
        /// The CRC of the bytes as they are.
        computed: u32,
    },
    /// The record holds another sequence number than its position implies.
    WrongSeq {
        /// The sequence number the position implies.
        expected: u64,
        /// The one stored.
        found: u64,
    },
    /// The CRC checks out but the slot is not a valid event header.
    BadEvent(DecodeError),
    /// A committed record follows an uncommitted (all-zero) one: a hole, not a tail.
    Hole,
    /// A record that is neither valid nor zero, with non-zero bytes after it: not a torn
    /// tail (a torn tail is followed only by zeros).
    NotATornTail,
    /// The segment header's magic, version or CRC is wrong, or it disagrees with the
    /// journal's slot size or the file's name or length.
    BadHeader,
    /// A segment that is not the last one has no valid footer.
    Unsealed,
    /// The footer's CRC checks out but its fields contradict the segment.
    BadFooter,
    /// Segments do not follow on from each other (a sequence gap or overlap).
    SeqGap {
        /// The first sequence number the segment should hold.
        expected: u64,
        /// The first one it holds.
        found: u64,
    },
}

impl core::fmt::Display for Damage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Damage::BadCommitWord(w) => write!(f, "bad commit word {w:#010x}"),
            Damage::BadCrc { stored, computed } => {
                write!(f, "CRC {stored:#010x} stored, {computed:#010x} computed")
            }
            Damage::WrongSeq { expected, found } => {
                write!(f, "sequence {found} where {expected} belongs")
            }
            Damage::BadEvent(e) => write!(f, "invalid event slot: {e}"),
            Damage::Hole => f.write_str("a committed record after an empty one"),
            Damage::NotATornTail => f.write_str("a damaged record with data after it"),
            Damage::BadHeader => f.write_str("bad segment header"),
            Damage::Unsealed => f.write_str("a segment before the last one is not sealed"),
            Damage::BadFooter => f.write_str("footer contradicts its segment"),
            Damage::SeqGap { expected, found } => {
                write!(f, "segment starts at {found}, {expected} expected")
            }
        }
    }
}

/// A journal operation failed.
#[derive(Debug, Error)]
pub enum JournalError {
    /// An I/O call failed (open, fallocate, map, sync, rename, remove).
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The disk is full: the next segment could not be preallocated. Nothing was written
    /// into it; the journal is unchanged.
    #[error("no space to preallocate {bytes} bytes for {path}")]
    NoSpace {
        /// The segment file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// Corruption that is not a torn tail. Run `repair` to turn damaged records into
    /// tombstones and rebuild footers; the report lists what it changed.
    #[error("corrupt journal: {path} at byte {offset} (seq {seq}): {damage}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the record, header or footer in the file.
        offset: u64,
        /// The sequence number at that place (the segment's first for a header or footer).
        seq: u64,
        /// What is wrong.
        damage: Damage,
    },
    /// Another writer holds the journal's lock.
    #[error("journal {0} is locked by another writer")]
    Locked(PathBuf),
    /// A configuration value is out of range.
    #[error("invalid journal configuration: {0}")]
    Config(&'static str),
    /// The journal was written with another slot size than this reader or writer uses.
    #[error("journal slot size is {found} bytes; this code reads {expected}")]
    SlotMismatch {
        /// The slot size this code uses.
        expected: usize,
        /// The slot size in the segment header.
        found: usize,
    },
    /// Waiting for durability timed out (or the writer is gone).
    #[error("seq {seq} is not durable after the wait (durable up to {durable})")]
    NotDurable {
        /// The sequence number waited for.
        seq: u64,
        /// The durable watermark when the wait ended.
        durable: u64,
    },
    /// The writer was closed; appending is refused and the event is not journaled.
    #[error("journal closed")]
    Closed,
}

impl JournalError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        JournalError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// A [`JournalError`] that can be cloned and compared, for where errors must be
/// (`BusError`, a bus's journal stats): clones share the one error, and two are equal when
/// they are the same error (not merely alike).
#[derive(Debug, Clone)]
pub struct SharedJournalError(pub std::sync::Arc<JournalError>);

impl SharedJournalError {
    /// The error itself.
    pub fn error(&self) -> &JournalError {
        &self.0
    }
}

impl From<JournalError> for SharedJournalError {
    fn from(e: JournalError) -> Self {
        SharedJournalError(std::sync::Arc::new(e))
    }
}

impl PartialEq for SharedJournalError {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SharedJournalError {}

impl core::fmt::Display for SharedJournalError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for SharedJournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}
