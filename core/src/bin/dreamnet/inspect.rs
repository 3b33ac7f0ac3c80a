//! `journal info`, `verify` and `repair`: what is in a journal directory, whether it can
//! be trusted, and making it trustworthy again. All three go through the journal's
//! recovery scan ([`dreamnet_bus::journal::verify`] / [`repair`]).

use std::io::Write;
use std::path::Path;

use dreamnet_bus::journal::{self, Fix, JournalError, Scan, SegmentInfo};
use dreamnet_bus::DEFAULT_SLOT;

use crate::error::CliError;
use crate::json::{array, Obj};

/// The seq and time range of a scan (None when it holds no records).
struct Ranges {
    first_seq: u64,
    last_seq: u64,
    min_ts: u64,
    max_ts: u64,
}

fn ranges(scan: &Scan) -> Option<Ranges> {
    let full: Vec<&SegmentInfo> = scan
        .segments
        .iter()
        .filter(|s| s.summary.count > 0)
        .collect();
    let first = full.first()?;
    Some(Ranges {
        first_seq: first.summary.first_seq,
        last_seq: scan.next_seq() - 1,
        min_ts: full.iter().map(|s| s.summary.min_ts).min()?,
        max_ts: full.iter().map(|s| s.summary.max_ts).max()?,
    })
}

fn segment_json(s: &SegmentInfo) -> String {
    Obj::new()
        .str("path", &s.path.display().to_string())
        .num("first_seq", s.summary.first_seq)
        .num("records", s.summary.count)
        .num("capacity", s.header.capacity)
        .num("tombstones", s.summary.tombstones)
        .num("min_ts", s.summary.min_ts)
        .num("max_ts", s.summary.max_ts)
        .num("bytes", s.header.file_len())
        .bool("sealed", s.sealed)
        .done()
}

fn fix_json(f: &Fix) -> String {
    let o = Obj::new().str("path", &f.path().display().to_string());
    match f {
        Fix::CutTornTail { seq, .. } => o.str("fix", "cut_torn_tail").num("seq", *seq),
        Fix::Tombstoned { seq, damage, .. } => o
            .str("fix", "tombstoned")
            .num("seq", *seq)
            .str("damage", &damage.to_string()),
        Fix::Resealed { .. } => o.str("fix", "resealed"),
    }
    .done()
}

fn fix_text(f: &Fix) -> String {
    match f {
        Fix::CutTornTail { path, seq } => format!("torn tail at seq {seq} in {}", path.display()),
        Fix::Tombstoned { path, seq, damage } => {
            format!("tombstoned seq {seq} in {}: {damage}", path.display())
        }
        Fix::Resealed { path } => format!("resealed {}", path.display()),
    }
}

/// The whole-journal object shared by info, verify and repair.
fn scan_json(scan: &Scan) -> Obj {
    let bytes: u64 = scan.segments.iter().map(|s| s.header.file_len()).sum();
    let tombstones: u64 = scan.segments.iter().map(|s| s.summary.tombstones).sum();
    let r = ranges(scan);
    Obj::new()
        .num("segments", scan.segments.len() as u64)
        .num("records", scan.records())
        .num("tombstones", tombstones)
        .opt_num("first_seq", r.as_ref().map(|r| r.first_seq))
        .opt_num("last_seq", r.as_ref().map(|r| r.last_seq))
        .num("next_seq", scan.next_seq())
        .opt_num("min_ts", r.as_ref().map(|r| r.min_ts))
        .opt_num("max_ts", r.as_ref().map(|r| r.max_ts))
        .num("watermark_ts", scan.watermark())
        .num("bytes", bytes)
        .raw("fixes", &array(scan.fixes.iter().map(fix_json)))
}

fn scan_text(out: &mut dyn Write, scan: &Scan) -> std::io::Result<()> {
    let bytes: u64 = scan.segments.iter().map(|s| s.header.file_len()).sum();
    writeln!(
        out,
        "segments: {}  records: {}  bytes: {bytes}",
        scan.segments.len(),
        scan.records()
    )?;
    match ranges(scan) {
        Some(r) => {
            writeln!(out, "seq: {}..={}", r.first_seq, r.last_seq)?;
            writeln!(out, "time (ns): {}..={}", r.min_ts, r.max_ts)?;
        }
        None => writeln!(out, "seq: empty (next {})", scan.next_seq())?,
    }
    writeln!(out, "watermark (ns): {}", scan.watermark())
}

/// `journal info DIR`: segments, seq and time range, sizes, the timestamp watermark.
/// Sealed segments are read through their footers only (fast on any size).
pub fn info(out: &mut dyn Write, dir: &Path, json: bool) -> Result<u8, CliError> {
    let scan = journal::verify::<DEFAULT_SLOT>(dir, false)?;
    if json {
        let o = scan_json(&scan).raw(
            "segment_list",
            &array(scan.segments.iter().map(segment_json)),
        );
        writeln!(out, "{}", o.done())?;
        return Ok(0);
    }
    scan_text(out, &scan)?;
    for s in &scan.segments {
        writeln!(
            out,
            "  {}  seq {}+{}  {}  {} bytes  tombstones {}",
            s.path.display(),
            s.summary.first_seq,
            s.summary.count,
            if s.sealed { "sealed" } else { "open" },
            s.header.file_len(),
            s.summary.tombstones
        )?;
    }
    for f in &scan.fixes {
        writeln!(out, "note: {} (recovery or repair cuts it)", fix_text(f))?;
    }
    Ok(0)
}

/// `journal verify DIR`: a deep, read-only check of every record of every segment.
/// Exit 0 when sound (a torn tail is reported, not damage: recovery cuts it), 1 with
/// the typed error on damage.
pub fn verify(out: &mut dyn Write, dir: &Path, json: bool) -> Result<u8, CliError> {
    match journal::verify::<DEFAULT_SLOT>(dir, true) {
        Ok(scan) => {
            if json {
                writeln!(out, "{}", scan_json(&scan).bool("ok", true).done())?;
            } else {
                writeln!(out, "ok")?;
                scan_text(out, &scan)?;
                for f in &scan.fixes {
                    writeln!(out, "note: {}", fix_text(f))?;
                }
            }
            Ok(0)
        }
        Err(e) => {
            let JournalError::Corrupt {
                path,
                offset,
                seq,
                damage,
            } = &e
            else {
                return Err(e.into());
            };
            if json {
                let o = Obj::new()
                    .bool("ok", false)
                    .str("error", &e.to_string())
                    .str("path", &path.display().to_string())
                    .num("offset", *offset)
                    .num("seq", *seq)
                    .str("damage", &damage.to_string());
                writeln!(out, "{}", o.done())?;
            } else {
                writeln!(out, "DAMAGED: {e}")?;
                writeln!(
                    out,
                    "run `dreamnet journal repair` to tombstone damaged records"
                )?;
            }
            Ok(1)
        }
    }
}

/// `journal repair DIR`: tombstones damaged records, cuts a torn tail, reseals
/// segments, and lists each change.
pub fn repair(out: &mut dyn Write, dir: &Path, json: bool) -> Result<u8, CliError> {
    let scan = journal::repair::<DEFAULT_SLOT>(dir)?;
    if json {
        writeln!(out, "{}", scan_json(&scan).done())?;
    } else {
        if scan.fixes.is_empty() {
            writeln!(out, "nothing to repair")?;
        }
        for f in &scan.fixes {
            writeln!(out, "{}", fix_text(f))?;
        }
        scan_text(out, &scan)?;
    }
    Ok(0)
}
