//! A journal's settings: where, how large a segment, how durable, how much to keep.

use std::path::PathBuf;
use std::time::Duration;

use super::durability::Durability;
use super::error::JournalError;

/// How much history to keep. Only sealed segments are ever deleted, whole, oldest first,
/// when a segment is sealed or on [`Journal::enforce_retention`](super::Journal::enforce_retention).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Keep at most this many bytes of segment files (the open segment always stays).
    pub max_bytes: Option<u64>,
    /// Delete sealed segments sealed longer ago than this (wall clock).
    pub max_age: Option<Duration>,
}

/// The settings of a journal.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    pub(crate) dir: PathBuf,
    pub(crate) segment_records: u32,
    pub(crate) durability: Durability,
    pub(crate) retention: Retention,
}

impl JournalConfig {
    /// Records per segment by default: 65,536 (20 MiB segments with 256-byte slots).
    pub const DEFAULT_SEGMENT_RECORDS: u32 = 1 << 16;

    /// A journal in `dir` (created if missing): [`Durability::Os`], default segments, no
    /// retention limit.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JournalConfig {
            dir: dir.into(),
            segment_records: Self::DEFAULT_SEGMENT_RECORDS,
            durability: Durability::Os,
            retention: Retention::default(),
        }
    }
    /// Records per segment (at least 1). The open segment is scanned on recovery, so this
    /// bounds recovery time; more segments cost a few syscalls each.
    pub fn segment_records(mut self, records: u32) -> Self {
        self.segment_records = records;
        self
    }
    /// The durability policy.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
    /// The retention policy.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// The directory of shard `shard`'s journal when a bus journals into this
    /// configuration's directory (`BusBuilder::journal`): `DIR/shard-NN`. Each shard
    /// writes its own journal; open a [`JournalReader`](super::JournalReader) on this.
    pub fn shard_dir(&self, shard: usize) -> PathBuf {
        self.dir.join(format!("shard-{shard:02}"))
    }

    /// This configuration for shard `shard` (same settings, [`JournalConfig::shard_dir`]).
    pub(crate) fn for_shard(&self, shard: usize) -> JournalConfig {
        JournalConfig {
            dir: self.shard_dir(shard),
            ..self.clone()
        }
    }

    pub(crate) fn validate(&self) -> Result<(), JournalError> {
        if self.segment_records == 0 {
            return Err(JournalError::Config("segment_records must be at least 1"));
        }
        if let Durability::Batch {
            every_events: 0, ..
        } = self.durability
        {
            return Err(JournalError::Config(
                "Batch every_events must be at least 1",
            ));
        }
        Ok(())
    }
}
