//! The journal: an append-only, segmented, memory-mapped log of event slots, for
//! persistence and replay (feature `journal`).
//!
//! ```text
//!  Shard drains an event --> Journal::append(&event) -> seq        writer.rs
//!                              | copy the slot into the open segment's map,
//!                              | trailer (seq, watermark), CRC-32C, commit word last
//!                              | Durability: Os | Batch{n, t} | Always  durability.rs
//!                              v
//!  DIR/00000000000000000001.seg  sealed: header | records | footer     segment.rs, footer.rs
//!  DIR/00000000000065537.seg     open:   header | records | zeros...   record.rs
//!                              |
//!  JournalReader (any process) --> records(&Selection) -> &Event in place   reader.rs
//!      seek_time: binary search over footers, then record watermarks        selection.rs
//!      Pacer: Instant / Original { speed, max_gap }                         pacing.rs
//!      thread(correlation): a conversation as a causal tree               thread.rs
//!  recovery.rs: open = trust footers, scan the open segment, cut a torn tail; verify; repair
//!  retention.rs: delete whole sealed segments, oldest first, by size and age
//! ```
//!
//! ## Format
//!
//! A segment file is preallocated at its final size with `fallocate` (a sparse mapped file
//! on a full disk raises SIGBUS; a preallocated one fails cleanly at creation with
//! [`JournalError::NoSpace`]) and never shrunk. It holds a 64-byte header (geometry, first
//! sequence number, CRC), `segment_records` fixed-size records, and room for a footer.
//! A record is the event slot as is (so it can be read in place as `&Event`: records are
//! 64-byte aligned), then a 64-byte trailer: sequence number, timestamp watermark,
//! CRC-32C (hardware, `crc32c` crate) of everything before it, and the commit word,
//! written last with release ordering. A torn record has a zero commit word or a CRC that
//! fails. A full segment is sealed with a footer (sequence range, min/max timestamp, the
//! journal watermark, a bitmap of event types, seal time, and the footer's own CRC).
//! The byte layouts are in [`layout`].
//!
//! The next segment is prepared off the append path: a helper thread creates it under a
//! `.tmp` name, preallocates it, maps it and faults every page in writable
//! (`MADV_POPULATE_WRITE`); rollover seals the full segment and renames the prepared one.
//! Without that, every 13th append (a new 4 KiB page) took a write fault and the
//! filesystem's `page_mkwrite`, ~8 us on this machine. A sustained burst longer than a
//! segment still runs at the rate the kernel can populate fresh page-cache pages (~500
//! MB/s here), as any write to the page cache does.
//!
//! ## Per shard or per bus: per shard
//!
//! A journal has one writer (`&mut self` append, a directory lock across processes), so
//! it belongs to one thread: give each shard its own journal directory. Appends then need
//! no lock and no atomic read-modify-write, and the journal is written in the order the
//! shard drains, which is the order its handlers see. A bus-wide journal would need a
//! multi-producer sequence (an atomic per event, shared cache lines between shards) for
//! an order no handler ever observes. Readers merge shards by timestamp if they need to.
//!
//! ## Wired into the bus
//!
//! `Bus::builder().journal(JournalConfig::new(dir))` gives each shard its journal in
//! [`JournalConfig::shard_dir`]`(i)`. The journaler is one more consumer of what a shard
//! drains (the LMAX pattern, `shard_journal.rs`): each chunk taken off a ring is appended
//! *before* any of it is routed, so a handler never sees an event that is not journaled
//! (under `Batch` it may see one not yet *durable*); an empty poll runs `sync_if_due`; a
//! stopping shard syncs once drained. An append error (a full disk) dead-letters the event
//! with [`APPEND_FAILED`] and is counted in `Bus::journal_stats`, never dropped in silence.
//! `Bus::durable_seq(shard)` and `Bus::wait_durable(timeout)` give durability at the bus
//! level; `Bus::replayer(reader)` replays a journal into a bus (`bus/replay.rs`).
//!
//! ## Accepted, journaled, durable
//!
//! See [`Durability`]: *accepted* (in a ring), *journaled* (`append` returned; in the
//! shared map, survives `kill -9`), *durable* (survives what the policy protects
//! against; [`Journal::durable_seq`], [`DurableWatch::wait_durable`]).
//!
//! ## Recovery
//!
//! [`Journal::open`] recovers: sealed segments are trusted through footer + footer CRC
//! (recovery time does not grow with history), the open segment is scanned, a torn tail
//! (a bad record followed only by zeros) is zeroed in place. Other corruption is
//! [`JournalError::Corrupt`] with file, offset and sequence number; [`repair`] turns
//! damaged records into tombstones and reseals segments, and reports each change;
//! [`verify`] checks without changing anything.
//!
//! ## Example
//!
//! ```
//! use dreamnet_bus::journal::{Journal, JournalConfig, JournalReader, Selection};
//! use dreamnet_bus::{Event, EventType};
//!
//! let dir = std::env::temp_dir().join(format!("dnj-doc-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let mut journal: Journal = Journal::open(JournalConfig::new(&dir).segment_records(64))?;
//! for i in 0..100u64 {
//!     journal.append(&Event::new(EventType::AGENT_TASK).with_correlation_id(i % 3))?;
//! }
//! let reader: JournalReader = JournalReader::open(&dir)?;
//! let sel = Selection::all().correlation(2);
//! let seqs: Vec<u64> = reader.records(&sel).map(|r| r.map(|r| r.seq())).collect::<Result<_, _>>()?;
//! assert_eq!(seqs.len(), 33);
//! assert_eq!(seqs[0], 3); // sequence numbers start at 1
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod durability;
mod error;
mod footer;
mod lock;
mod pacing;
mod reader;
mod record;
mod recovery;
mod retention;
mod segment;
mod selection;
mod shard_journal;
mod thread;
mod writer;

#[cfg(test)]
mod tests;

pub use config::{JournalConfig, Retention};
pub use durability::{Durability, DurableWatch};
pub use error::{Damage, JournalError, SharedJournalError};
pub use footer::TypeSet;
pub use pacing::{Pacer, Pacing};
pub use reader::{JournalReader, Record, Records};
pub use recovery::{repair, verify, Fix, Scan, SegmentInfo};
pub use selection::Selection;
pub(crate) use shard_journal::{journal_chunk, journal_idle, JournalShared, ShardJournal};
pub use shard_journal::{JournalStats, APPEND_FAILED};
pub use thread::ThreadEntry;
pub use writer::Journal;

/// The on-disk layout, for tools (a CLI, a fuzzer) that look at segment files directly.
/// All integers are little-endian.
///
/// ```text
///  segment file:
///  0      64                                          64 + capacity * record   + 256
///  | header | record 0 | record 1 | ... | record capacity-1 | footer |
///
///  header (64 B): magic "DNJSEG01" | version u32 | slot u32 | record size u32
///                 | capacity u32 | first seq u64 | created unix ns u64 | 0.. | crc32c u32
///
///  record (slot + 64 B), 64-byte aligned:
///  0 .................. SLOT   SLOT+8      SLOT+16          SLOT+56  SLOT+60   SLOT+64
///  | event slot (as is)  | seq | watermark | reserved (zero) | crc32c | commit |
///  crc32c covers bytes 0..SLOT+56; commit is "JNL1" (committed), "TOMB" (tombstone) or 0
///
///  footer (256 B): magic "DNJFOOT1" | first seq | count | min ts | max ts | watermark
///                  | sealed unix ns | tombstones | 64..192 type bitmap | 0.. | crc32c
/// ```
pub mod layout {
    pub use super::footer::{Summary, FOOTER_SIZE};
    pub use super::record::{record_size, COMMITTED, TOMBSTONE, TRAILER};
    pub use super::segment::{SegmentHeader, HEADER_SIZE as SEGMENT_HEADER_SIZE};
}
