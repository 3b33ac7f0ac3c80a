//! `journal replay` and `journal tail`: printing records, one per line (a text line or a
//! JSON object, i.e. JSON Lines).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use dreamnet_bus::journal::{self, JournalReader, Record, Selection};
use dreamnet_bus::DEFAULT_SLOT;

use crate::error::CliError;
use crate::filter::Filter;
use crate::format;

fn print(out: &mut dyn Write, r: &Record<'_>, json: bool) -> std::io::Result<()> {
    if json {
        writeln!(out, "{}", format::json(r).done())
    } else {
        writeln!(out, "{}", format::text(r))
    }
}

/// `journal replay DIR [filters]`: the selected records in sequence order.
pub fn replay(
    out: &mut dyn Write,
    dir: &Path,
    filter: &Filter,
    json: bool,
) -> Result<u8, CliError> {
    let reader: JournalReader = JournalReader::open(dir)?;
    let mut records = reader.records(&filter.selection());
    for r in &mut records {
        let r = r?;
        if filter.keeps(&r) {
            print(out, &r, json)?;
        }
    }
    if records.tombstones() > 0 {
        eprintln!("note: stepped over {} tombstones", records.tombstones());
    }
    Ok(0)
}

/// What `tail` does.
#[derive(Debug, Clone, Copy)]
pub struct TailOptions {
    /// Start this many records before the end.
    pub last: u64,
    /// Keep polling for new records.
    pub follow: bool,
    /// Stop after printing this many records.
    pub max: Option<u64>,
    /// Poll interval when following.
    pub interval: Duration,
}

/// `journal tail DIR`: the last records, then (with `follow`) new ones as a writer
/// commits them, polling every `interval` and picking up new segments. Ends at `max`
/// records, or on Ctrl-C.
pub fn tail(
    out: &mut dyn Write,
    dir: &Path,
    opts: TailOptions,
    json: bool,
) -> Result<u8, CliError> {
    // Footers make the end cheap to find; only the open segment is scanned.
    let end = journal::verify::<DEFAULT_SLOT>(dir, false)?.next_seq();
    let mut reader: JournalReader = JournalReader::open(dir)?;
    let mut next = end.saturating_sub(opts.last).max(reader.first_seq());
    let mut printed = 0u64;
    loop {
        let mut records = reader.records(&Selection::all().from_seq(next));
        for r in &mut records {
            print(out, &r?, json)?;
            printed += 1;
            if opts.max.is_some_and(|m| printed >= m) {
                return Ok(0);
            }
        }
        next = records.next_seq();
        drop(records);
        if !opts.follow {
            return Ok(0);
        }
        out.flush()?;
        std::thread::sleep(opts.interval);
        reader.refresh()?;
    }
}
