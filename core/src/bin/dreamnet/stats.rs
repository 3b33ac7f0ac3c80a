//! `journal stats`: counts per type and per source (the top sources first), the rate over
//! fixed time buckets (bus-clock timestamps) and the reaction latency by type (see
//! `dreamnet_bus::analytics::JournalAnalyzer`), over the records a [`Filter`] selects.

use std::io::Write;
use std::path::Path;

use dreamnet_bus::analytics::{JournalAnalysis, JournalAnalyzer};
use dreamnet_bus::journal::JournalReader;

use crate::error::CliError;
use crate::filter::Filter;
use crate::format::type_label;
use crate::json::{array, Obj};
use crate::progress::ScanProgress;

/// Folds the selected records of `dir` into an analysis; returns it with the tombstones
/// stepped over. Shows a progress bar (see `progress.rs`).
pub fn analyze(
    dir: &Path,
    filter: &Filter,
    bucket_ns: u64,
    json: bool,
) -> Result<(JournalAnalysis, u64), CliError> {
    let reader: JournalReader = JournalReader::open(dir)?;
    let mut progress = ScanProgress::over(dir, json);
    let mut analyzer = JournalAnalyzer::new(bucket_ns);
    let mut records = reader.records(&filter.selection());
    for r in &mut records {
        let r = r?;
        progress.at(r.seq());
        if filter.keeps(&r) {
            analyzer.add(r.event());
        }
    }
    progress.finish();
    Ok((analyzer.finish(), records.tombstones()))
}

/// `journal stats DIR [filters] [--bucket-ms N] [--top N]`.
pub fn stats(
    out: &mut dyn Write,
    dir: &Path,
    filter: &Filter,
    bucket_ns: u64,
    top: usize,
    json: bool,
) -> Result<u8, CliError> {
    let (a, tombstones) = analyze(dir, filter, bucket_ns, json)?;
    let sources = &a.by_source[..a.by_source.len().min(top)];
    if json {
        let o = Obj::new()
            .num("records", a.records)
            .num("tombstones", tombstones)
            .opt_num("min_ts", a.first_ts)
            .opt_num("max_ts", a.last_ts)
            .float("rate_per_s", a.rate_per_s.unwrap_or(f64::NAN))
            .raw(
                "by_type",
                &array(a.by_type.iter().map(|(t, n)| {
                    Obj::new()
                        .str("type", &type_label(t.raw()))
                        .num("type_id", t.raw())
                        .num("count", *n)
                        .done()
                })),
            )
            .raw(
                "by_source",
                &array(
                    sources
                        .iter()
                        .map(|(s, n)| Obj::new().num("source", s.raw()).num("count", *n).done()),
                ),
            )
            .raw(
                "reaction_latency_by_type",
                &array(a.latency_by_type.iter().map(|l| {
                    Obj::new()
                        .str("type", &type_label(l.event_type.raw()))
                        .num("type_id", l.event_type.raw())
                        .num("reactions", l.count)
                        .float("mean_ns", l.mean_ns)
                        .num("p50_ns", l.p50_ns)
                        .num("p99_ns", l.p99_ns)
                        .num("max_ns", l.max_ns)
                        .done()
                })),
            )
            .num("causes_unmatched", a.causes_unmatched)
            .num("bucket_ns", a.bucket_ns)
            .raw(
                "buckets",
                &array(a.buckets.iter().map(|b| {
                    Obj::new()
                        .num("start_ts", b.start_ns)
                        .num("count", b.count)
                        .float("rate_per_s", b.rate_per_s)
                        .done()
                })),
            );
        writeln!(out, "{}", o.done())?;
        return Ok(0);
    }
    writeln!(out, "records: {}  tombstones: {}", a.records, tombstones)?;
    if let (Some(first), Some(last)) = (a.first_ts, a.last_ts) {
        write!(out, "time (ns): {first}..={last}")?;
        match a.rate_per_s {
            Some(r) => writeln!(out, "  rate: {r:.1}/s")?,
            None => writeln!(out)?,
        }
    }
    writeln!(out, "by type:")?;
    for (t, n) in &a.by_type {
        writeln!(out, "  {:<20} {n}", type_label(t.raw()))?;
    }
    writeln!(out, "by source:")?;
    for (s, n) in sources {
        writeln!(out, "  {:<20} {n}", s.raw())?;
    }
    if a.by_source.len() > sources.len() {
        writeln!(out, "  ({} more)", a.by_source.len() - sources.len())?;
    }
    writeln!(
        out,
        "reaction latency by type (publish of a cause -> publish of the event it caused):"
    )?;
    if a.latency_by_type.is_empty() {
        writeln!(
            out,
            "  none (no record names a cause among the records read)"
        )?;
    }
    for l in &a.latency_by_type {
        writeln!(
            out,
            "  {:<20} n={:<8} mean={:.0}ns p50={}ns p99={}ns max={}ns",
            type_label(l.event_type.raw()),
            l.count,
            l.mean_ns,
            l.p50_ns,
            l.p99_ns,
            l.max_ns
        )?;
    }
    if a.causes_unmatched > 0 {
        writeln!(out, "  causes not found: {}", a.causes_unmatched)?;
    }
    writeln!(
        out,
        "per {} ms bucket (start ns, count, rate/s):",
        a.bucket_ns as f64 / 1e6
    )?;
    for b in &a.buckets {
        writeln!(
            out,
            "  {:<20} {:<10} {:.1}",
            b.start_ns, b.count, b.rate_per_s
        )?;
    }
    Ok(0)
}
