//! The headline: one line per implementation with what a reader needs first: closed-loop
//! saturation throughput, then latency in open loop at a share of that saturation (the
//! default run's 50 %). Closed-loop latency alone is mostly time spent queued behind a
//! full ring, so it never stands as the headline.
//!
//! The first line is dreamnet-bus; every other line gets the ratio ours/theirs of its
//! throughput and of its p50 latency, measured in the same process, one after the other.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::disruptor_peer::PeerRun;
use crate::report::RunReport;

/// One implementation's headline figures.
#[derive(Debug, Clone)]
pub struct Line {
    /// Which implementation (and what it runs).
    pub label: String,
    /// Closed loop: events accepted per second.
    pub saturation: Option<f64>,
    /// Closed loop: handler calls per second (fan-out included).
    pub deliveries: Option<f64>,
    /// Open loop: the rate asked for, events/s.
    pub rate: Option<f64>,
    /// Open loop: latency from each event's due time to its handler, nanoseconds.
    pub latency: Option<Histogram<u64>>,
}

impl Line {
    /// From a workload run's closed and open phases (either may be absent).
    pub fn of_runs(label: &str, closed: Option<&RunReport>, open: Option<&RunReport>) -> Self {
        Line {
            label: label.to_owned(),
            saturation: closed.map(RunReport::published_per_s),
            deliveries: closed.map(RunReport::delivered_per_s),
            rate: open.map(RunReport::published_per_s),
            latency: open.map(|r| r.overall.clone()),
        }
    }

    /// From a disruptor peer's closed and open phases.
    pub fn of_peer(closed: Option<&PeerRun>, open: Option<&PeerRun>) -> Self {
        let label = closed.or(open).map_or("disruptor", |r| r.label);
        Line {
            label: label.to_owned(),
            saturation: closed.map(|r| r.per_s),
            deliveries: closed.map(|r| r.per_s),
            rate: open.and_then(|r| r.rate),
            latency: open.and_then(|r| r.latency.clone()),
        }
    }

    fn quantile(&self, q: f64) -> Option<u64> {
        self.latency
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(q))
    }
}

/// Latency percentiles in the headline, as (label, quantile).
pub const QUANTILES: [(&str, f64); 3] = [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)];

/// The headline table; `load` is the open-loop share of saturation (for the title).
pub fn text(lines: &[Line], load: Option<f64>) -> String {
    let mut s = String::new();
    let phases = match load {
        Some(l) => format!(
            "closed-loop saturation, then open loop at {:.0} % of each one's saturation",
            l * 100.0
        ),
        None => "the one phase asked for (--mode closed, or --mode open at --rate)".to_owned(),
    };
    let _ = writeln!(s, "== headline: {phases}");
    let _ = writeln!(
        s,
        "  {:<26} {:>11} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9}",
        "", "M events/s", "ours/x", "open ev/s", "p50 us", "p99 us", "p99.9 us", "p50 x/ours"
    );
    let ours = lines.first();
    for line in lines {
        let thr = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.3}", v / 1e6));
        let us = |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{:.2}", v as f64 / 1e3));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            s,
            "  {:<26} {:>11} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9}",
            line.label,
            thr(line.saturation),
            ratio(ours.and_then(|o| o.saturation), line.saturation),
            line.rate.map_or("-".to_owned(), |r| format!("{r:.0}")),
            us(line.quantile(0.5)),
            us(line.quantile(0.99)),
            us(line.quantile(0.999)),
            ratio(
                line.quantile(0.5).map(|v| v as f64),
                ours.and_then(|o| o.quantile(0.5)).map(|v| v as f64)
            ),
        );
    }
    s
}

/// The headline as a JSON array.
pub fn json(lines: &[Line]) -> String {
    let num = |v: Option<f64>| v.map_or("null".to_owned(), |v| format!("{v}"));
    let mut s = String::from("[");
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "{{\"label\":{},\"saturation_per_s\":{},\"deliveries_per_s\":{},\"open_rate\":{}",
            crate::report::json_string(&line.label),
            num(line.saturation),
            num(line.deliveries),
            num(line.rate),
        );
        for (name, q) in QUANTILES {
            let _ = write!(
                s,
                ",\"{}_ns\":{}",
                name.replace('.', "_"),
                num(line.quantile(q).map(|v| v as f64))
            );
        }
        s.push('}');
    }
    s.push(']');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(label: &str, saturation: f64, p50: u64) -> Line {
        let mut h = crate::workload::new_histogram();
        h.record(p50).unwrap();
        Line {
            label: label.to_owned(),
            saturation: Some(saturation),
            deliveries: Some(saturation),
            rate: Some(saturation / 2.0),
            latency: Some(h),
        }
    }

    #[test]
    fn ratios_are_ours_over_theirs_for_throughput_and_theirs_over_ours_for_p50() {
        let t = text(
            &[line("ours", 4e6, 1_000), line("theirs", 2e6, 3_000)],
            Some(0.5),
        );
        let theirs = t.lines().find(|l| l.contains("theirs")).unwrap();
        let cols: Vec<&str> = theirs.split_whitespace().collect();
        // label, M ev/s, ours/x, open ev/s, p50, p99, p99.9, p50 x/ours
        assert_eq!(cols[1], "2.000");
        assert_eq!(cols[2], "2.000");
        assert_eq!(cols[3], "1000000");
        // Histograms keep 3 significant digits: 3,000 ns reads back as 3,001.
        assert!(cols[4].starts_with("3.00"), "{theirs}");
        let p50_ratio: f64 = cols[7].parse().unwrap();
        assert!((p50_ratio - 3.0).abs() < 0.01, "{theirs}");
        assert!(t.contains("50 % of each one's saturation"));
    }

    #[test]
    fn json_has_one_object_per_line_with_nulls_for_missing_phases() {
        let mut l = line("a", 1e6, 500);
        l.latency = None;
        let j = json(&[l]);
        assert!(j.starts_with("[{\"label\":\"a\""), "{j}");
        assert!(j.contains("\"p50_ns\":null"), "{j}");
        assert!(j.contains("\"saturation_per_s\":1000000"), "{j}");
    }
}
