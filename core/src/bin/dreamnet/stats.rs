//! `journal stats`: counts per type and per source, and the rate over fixed time buckets
//! (bus-clock timestamps), over the records a [`Filter`] selects.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use dreamnet_bus::journal::JournalReader;

use crate::error::CliError;
use crate::filter::Filter;
use crate::format::type_label;
use crate::json::{array, Obj};

/// Counts gathered in one pass.
#[derive(Debug, Default)]
struct Counts {
    records: u64,
    tombstones: u64,
    min_ts: Option<u64>,
    max_ts: Option<u64>,
    by_type: BTreeMap<u16, u64>,
    by_source: BTreeMap<u32, u64>,
    /// Bucket index (timestamp / bucket width) -> records.
    buckets: BTreeMap<u64, u64>,
}

fn sorted_desc<K: Copy + Ord>(m: &BTreeMap<K, u64>) -> Vec<(K, u64)> {
    let mut v: Vec<(K, u64)> = m.iter().map(|(k, c)| (*k, *c)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// `journal stats DIR [filters] [--bucket-ms N]`.
pub fn stats(
    out: &mut dyn Write,
    dir: &Path,
    filter: &Filter,
    bucket_ns: u64,
    json: bool,
) -> Result<u8, CliError> {
    let bucket_ns = bucket_ns.max(1);
    let reader: JournalReader = JournalReader::open(dir)?;
    let mut c = Counts::default();
    let mut records = reader.records(&filter.selection());
    for r in &mut records {
        let r = r?;
        if !filter.keeps(&r) {
            continue;
        }
        let h = r.event().header();
        let ts = h.timestamp_ns();
        c.records += 1;
        c.min_ts = Some(c.min_ts.map_or(ts, |m| m.min(ts)));
        c.max_ts = Some(c.max_ts.map_or(ts, |m| m.max(ts)));
        *c.by_type.entry(h.event_type().raw()).or_default() += 1;
        *c.by_source.entry(h.source().raw()).or_default() += 1;
        *c.buckets.entry(ts / bucket_ns).or_default() += 1;
    }
    c.tombstones = records.tombstones();
    let secs = bucket_ns as f64 / 1e9;
    let span_rate = match (c.min_ts, c.max_ts) {
        (Some(a), Some(b)) if b > a => Some(c.records as f64 / ((b - a) as f64 / 1e9)),
        _ => None,
    };
    let types = sorted_desc(&c.by_type);
    let sources = sorted_desc(&c.by_source);
    if json {
        let o = Obj::new()
            .num("records", c.records)
            .num("tombstones", c.tombstones)
            .opt_num("min_ts", c.min_ts)
            .opt_num("max_ts", c.max_ts)
            .float("rate_per_s", span_rate.unwrap_or(f64::NAN))
            .raw(
                "by_type",
                &array(types.iter().map(|(t, n)| {
                    Obj::new()
                        .str("type", &type_label(*t))
                        .num("type_id", *t)
                        .num("count", *n)
                        .done()
                })),
            )
            .raw(
                "by_source",
                &array(
                    sources
                        .iter()
                        .map(|(s, n)| Obj::new().num("source", *s).num("count", *n).done()),
                ),
            )
            .num("bucket_ns", bucket_ns)
            .raw(
                "buckets",
                &array(c.buckets.iter().map(|(b, n)| {
                    Obj::new()
                        .num("start_ts", u128::from(*b) * u128::from(bucket_ns))
                        .num("count", *n)
                        .float("rate_per_s", *n as f64 / secs)
                        .done()
                })),
            );
        writeln!(out, "{}", o.done())?;
        return Ok(0);
    }
    writeln!(out, "records: {}  tombstones: {}", c.records, c.tombstones)?;
    if let (Some(a), Some(b)) = (c.min_ts, c.max_ts) {
        write!(out, "time (ns): {a}..={b}")?;
        match span_rate {
            Some(r) => writeln!(out, "  rate: {r:.1}/s")?,
            None => writeln!(out)?,
        }
    }
    writeln!(out, "by type:")?;
    for (t, n) in &types {
        writeln!(out, "  {:<20} {n}", type_label(*t))?;
    }
    writeln!(out, "by source:")?;
    for (s, n) in &sources {
        writeln!(out, "  {s:<20} {n}")?;
    }
    writeln!(
        out,
        "per {} ms bucket (start ns, count, rate/s):",
        bucket_ns as f64 / 1e6
    )?;
    for (b, n) in &c.buckets {
        writeln!(
            out,
            "  {:<20} {n:<10} {:.1}",
            u128::from(*b) * u128::from(bucket_ns),
            *n as f64 / secs
        )?;
    }
    Ok(0)
}
