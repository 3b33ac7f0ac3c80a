//! `journal thread DIR CORRELATION`: one conversation as its causal tree (the journal's
//! `JournalReader::thread`), drawn with two spaces of indent per level in text mode.

use std::io::Write;
use std::path::Path;

use dreamnet_bus::journal::JournalReader;

use crate::error::CliError;
use crate::format;
use crate::json::{array, Obj};

/// Prints the thread `correlation`: each event after its cause, children indented.
pub fn thread(
    out: &mut dyn Write,
    dir: &Path,
    correlation: u64,
    json: bool,
) -> Result<u8, CliError> {
    let reader: JournalReader = JournalReader::open(dir)?;
    let entries = reader.thread(correlation)?;
    if json {
        let events = array(
            entries
                .iter()
                .map(|e| format::json(&e.record).num("depth", e.depth as u64).done()),
        );
        let o = Obj::new()
            .num("correlation", correlation)
            .num("events", entries.len() as u64)
            .raw("tree", &events);
        writeln!(out, "{}", o.done())?;
        return Ok(0);
    }
    if entries.is_empty() {
        writeln!(out, "no events with correlation {correlation}")?;
    }
    for e in &entries {
        writeln!(out, "{}- {}", "  ".repeat(e.depth), format::text(&e.record))?;
    }
    Ok(0)
}
