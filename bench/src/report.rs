//! The end report: throughput, latency percentiles per priority, allocations per event,
//! the conservation checks and per-subscription deliveries against the model, as text for
//! people or as one JSON object for machines.

use std::fmt::Write as _;

use dreamnet_bus::Priority;
use hdrhistogram::Histogram;

use crate::workload::{new_histogram, Endpoint, ProbeReport, Tally, WindowReading, SUBSCRIPTIONS};

/// One conservation check: a sentence with the numbers, and whether they agree.
#[derive(Debug, Clone)]
pub struct Check {
    /// The statement, with its numbers.
    pub what: String,
    /// Whether it holds.
    pub ok: bool,
}

impl Check {
    /// `a == b`.
    pub fn eq(what: String, a: u64, b: u64) -> Self {
        Check { what, ok: a == b }
    }
    /// All `values` equal.
    pub fn same(what: String, values: &[u64]) -> Self {
        Check {
            what,
            ok: values.windows(2).all(|w| w[0] == w[1]),
        }
    }
}

/// Deliveries of one handler against what the model expects.
#[derive(Debug, Clone)]
pub struct EndpointRow {
    /// Subscription name (`group#member` for group members).
    pub name: String,
    /// Routing strategy.
    pub strategy: &'static str,
    /// Handler invocations (counted by the handler).
    pub delivered: u64,
    /// What the routing model expects (a group member: its even share of the group).
    pub expected: u64,
    /// Allowed difference: 0, or for a group member the rounding of an even split.
    pub tolerance: u64,
    /// The bus's own count for this subscription, where the bus keeps one.
    pub bus_accepted: Option<u64>,
}

impl EndpointRow {
    /// Whether the handler got what the model expects, and the bus agrees.
    pub fn ok(&self) -> bool {
        self.delivered.abs_diff(self.expected) <= self.tolerance
            && self.bus_accepted.is_none_or(|a| a == self.delivered)
    }
}

/// Everything one run measured.
#[derive(Debug)]
pub struct RunReport {
    /// Which bus.
    pub label: &'static str,
    /// The measured window.
    pub reading: WindowReading,
    /// Latency per priority (`Priority::ALL` order), merged over handlers.
    pub latency: Vec<Histogram<u64>>,
    /// Latency over all priorities.
    pub overall: Histogram<u64>,
    /// Latency from the publisher's acceptance stamp, all priorities (differs from
    /// `overall` in open loop only).
    pub from_stamp: Histogram<u64>,
    /// Whether latency counts from intended send times (open loop).
    pub open_loop: bool,
    /// What the producers did over the whole run.
    pub tally: Tally,
    /// Per handler.
    pub endpoints: Vec<EndpointRow>,
    /// Conservation checks.
    pub checks: Vec<Check>,
    /// Remarks (pinning failures, baseline limitations, ...).
    pub notes: Vec<String>,
}

impl RunReport {
    /// Builds the report from the probes (one per endpoint, `None` if it never
    /// reported) and the producers' tally.
    pub fn new(
        label: &'static str,
        reading: WindowReading,
        tally: Tally,
        endpoints: &[Endpoint],
        probes: Vec<Option<ProbeReport>>,
    ) -> Self {
        let mut latency: Vec<Histogram<u64>> =
            (0..Priority::COUNT).map(|_| new_histogram()).collect();
        let mut from_stamp = new_histogram();
        let mut rows = Vec::with_capacity(endpoints.len());
        let mut missing = 0;
        let mut bad = 0;
        for (e, probe) in endpoints.iter().zip(&probes) {
            let spec = &SUBSCRIPTIONS[e.spec];
            let total = tally.expected(spec);
            let n = spec.members() as u64;
            let (expected, tolerance) = if n > 1 {
                (total / n, u64::from(!total.is_multiple_of(n)))
            } else {
                (total, 0)
            };
            let name = if n > 1 {
                format!("{}#{}", spec.name, e.member)
            } else {
                spec.name.to_owned()
            };
            let delivered = match probe {
                Some(p) => {
                    for (mine, theirs) in latency.iter_mut().zip(&p.latency) {
                        // Same bounds everywhere, so adding cannot fail.
                        let _ = mine.add(theirs);
                    }
                    let _ = from_stamp.add(&p.from_stamp);
                    bad += p.bad_payload;
                    p.delivered
                }
                None => {
                    missing += 1;
                    0
                }
            };
            rows.push(EndpointRow {
                name,
                strategy: spec.strategy(),
                delivered,
                expected,
                tolerance,
                bus_accepted: None,
            });
        }
        let mut overall = new_histogram();
        for h in &latency {
            let _ = overall.add(h);
        }
        let mut checks = Vec::new();
        if missing > 0 {
            checks.push(Check {
                what: format!("{missing} handler(s) never reported their measurements"),
                ok: false,
            });
        }
        if bad > 0 {
            checks.push(Check {
                what: format!("{bad} payload(s) could not be read"),
                ok: false,
            });
        }
        RunReport {
            label,
            reading,
            latency,
            overall,
            from_stamp,
            open_loop: false,
            tally,
            endpoints: rows,
            checks,
            notes: Vec::new(),
        }
    }

    /// Events accepted per second in the window.
    pub fn published_per_s(&self) -> f64 {
        self.reading.published as f64 / self.reading.elapsed.as_secs_f64().max(1e-9)
    }

    /// Handler invocations per second in the window.
    pub fn delivered_per_s(&self) -> f64 {
        self.reading.delivered as f64 / self.reading.elapsed.as_secs_f64().max(1e-9)
    }

    /// Allocations on the producer and handler threads per event accepted in the window.
    pub fn allocs_per_event(&self) -> f64 {
        self.reading.allocs.hot as f64 / self.reading.published.max(1) as f64
    }

    /// Whether every check and every subscription's count holds.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok) && self.endpoints.iter().all(EndpointRow::ok)
    }
}

/// Percentiles reported, as (label, quantile).
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
];

fn us(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1000.0)
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The text report of one run.
pub fn text(r: &RunReport) -> String {
    let mut s = String::new();
    let w = &r.reading;
    let _ = writeln!(
        s,
        "== {} ({:.2} s measured)",
        r.label,
        w.elapsed.as_secs_f64()
    );
    let fan = w.delivered as f64 / w.published.max(1) as f64;
    let _ = writeln!(
        s,
        "throughput    {:>8.3} M events/s published   {:>8.3} M deliveries/s to handlers   (fan-out {fan:.2})",
        r.published_per_s() / 1e6,
        r.delivered_per_s() / 1e6,
    );
    let _ = writeln!(
        s,
        "latency (us)  {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>12}",
        "", "p50", "p90", "p99", "p99.9", "p99.99", "max", "samples"
    );
    let mut rows: Vec<(&str, &Histogram<u64>)> = Priority::ALL
        .iter()
        .map(|p| p.name())
        .zip(r.latency.iter())
        .collect();
    rows.push(("all", &r.overall));
    if r.open_loop {
        rows.push(("stamp", &r.from_stamp));
    }
    for (name, h) in rows {
        let _ = write!(s, "              {name:>8}");
        if h.is_empty() {
            let _ = writeln!(s, "  (no samples)");
            continue;
        }
        for (_, q) in PERCENTILES {
            let _ = write!(s, " {:>8}", us(h.value_at_quantile(q)));
        }
        let _ = writeln!(s, " {:>8} {:>12}", us(h.max()), thousands(h.len()));
    }
    if r.open_loop {
        let _ = writeln!(
            s,
            "              (from the intended send time; 'stamp': from the publisher's acceptance stamp, leaving out producer lateness)"
        );
    }
    let _ = writeln!(
        s,
        "allocations   {:.6} per event: {} on producer and handler threads over {} events in the window (process-wide {}, which adds the main thread: progress bar, stats snapshots)",
        r.allocs_per_event(),
        thousands(w.allocs.hot),
        thousands(w.published),
        thousands(w.allocs.all),
    );
    let _ = writeln!(
        s,
        "conservation  {} (whole run, after close drained everything)",
        if r.checks.iter().all(|c| c.ok) {
            "OK"
        } else {
            "MISMATCH"
        }
    );
    for c in &r.checks {
        let _ = writeln!(s, "  [{}] {}", if c.ok { "ok" } else { "!!" }, c.what);
    }
    let _ = writeln!(
        s,
        "subscriptions {:<22} {:<12} {:>12} {:>12} {:>12}",
        "name", "strategy", "delivered", "expected", "bus count"
    );
    for e in &r.endpoints {
        let expected = if e.tolerance > 0 {
            format!("~{}", thousands(e.expected))
        } else {
            thousands(e.expected)
        };
        let _ = writeln!(
            s,
            "  [{}]        {:<22} {:<12} {:>12} {:>12} {:>12}",
            if e.ok() { "ok" } else { "!!" },
            e.name,
            e.strategy,
            thousands(e.delivered),
            expected,
            e.bus_accepted.map_or_else(|| "-".to_owned(), thousands),
        );
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}

/// The comparison lines: ours / theirs for throughput, and for latency (lower is better,
/// so the line also says how many times lower).
pub fn compare_text(ours: &RunReport, theirs: &RunReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "== {} / {} (same workload, same process, run one after the other)",
        ours.label, theirs.label
    );
    let _ = writeln!(
        s,
        "throughput    published {:.2}x   delivered {:.2}x   (higher is better)",
        ratio(ours.published_per_s(), theirs.published_per_s()),
        ratio(ours.delivered_per_s(), theirs.delivered_per_s()),
    );
    for (label, q) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
        let a = ours.overall.value_at_quantile(q) as f64;
        let b = theirs.overall.value_at_quantile(q) as f64;
        let _ = writeln!(
            s,
            "latency {label:<6}{:.3}x  ({} us vs {} us: {:.1}x lower)",
            ratio(a, b),
            us(a as u64),
            us(b as u64),
            ratio(b, a),
        );
    }
    let _ = writeln!(
        s,
        "allocations   {:.3} vs {:.3} per event",
        ours.allocs_per_event(),
        theirs.allocs_per_event()
    );
    s
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// A JSON string literal.
fn js(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number (non-finite values become `null`).
fn jn(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "null".to_owned()
    }
}

fn json_hist(h: &Histogram<u64>) -> String {
    let mut s = String::from("{");
    for (label, q) in PERCENTILES {
        let _ = write!(s, "{}:{},", js(label), h.value_at_quantile(q));
    }
    let _ = write!(s, "\"max\":{},\"count\":{}}}", h.max(), h.len());
    s
}

/// One run as a JSON object (latencies in nanoseconds).
pub fn json_run(r: &RunReport) -> String {
    let mut s = String::from("{");
    let _ = write!(
        s,
        "\"bus\":{},\"window_s\":{},\"published\":{},\"delivered\":{},\"published_per_s\":{},\"delivered_per_s\":{},",
        js(r.label),
        jn(r.reading.elapsed.as_secs_f64()),
        r.reading.published,
        r.reading.delivered,
        jn(r.published_per_s()),
        jn(r.delivered_per_s()),
    );
    s.push_str("\"latency_ns\":{");
    for (p, h) in Priority::ALL.iter().zip(&r.latency) {
        let _ = write!(s, "{}:{},", js(p.name()), json_hist(h));
    }
    let _ = write!(
        s,
        "\"all\":{},\"from_stamp\":{}}},\"open_loop\":{},",
        json_hist(&r.overall),
        json_hist(&r.from_stamp),
        r.open_loop
    );
    let _ = write!(
        s,
        "\"allocations\":{{\"hot\":{},\"process\":{},\"per_event\":{}}},",
        r.reading.allocs.hot,
        r.reading.allocs.all,
        jn(r.allocs_per_event())
    );
    let _ = write!(
        s,
        "\"producers\":{{\"accepted\":{},\"attempts\":{},\"full\":{},\"closed\":{}}},",
        r.tally.total(),
        r.tally.attempts,
        r.tally.full,
        r.tally.closed
    );
    let _ = write!(s, "\"ok\":{},\"checks\":[", r.ok());
    for (i, c) in r.checks.iter().enumerate() {
        let _ = write!(
            s,
            "{}{{\"what\":{},\"ok\":{}}}",
            if i > 0 { "," } else { "" },
            js(&c.what),
            c.ok
        );
    }
    s.push_str("],\"subscriptions\":[");
    for (i, e) in r.endpoints.iter().enumerate() {
        let _ = write!(
            s,
            "{}{{\"name\":{},\"strategy\":{},\"delivered\":{},\"expected\":{},\"tolerance\":{},\"bus_accepted\":{},\"ok\":{}}}",
            if i > 0 { "," } else { "" },
            js(&e.name),
            js(e.strategy),
            e.delivered,
            e.expected,
            e.tolerance,
            e.bus_accepted.map_or_else(|| "null".to_owned(), |a| a.to_string()),
            e.ok()
        );
    }
    s.push_str("],\"notes\":[");
    for (i, n) in r.notes.iter().enumerate() {
        let _ = write!(s, "{}{}", if i > 0 { "," } else { "" }, js(n));
    }
    s.push_str("]}");
    s
}

/// The whole JSON document: `config` (already JSON), the runs, and the ratios when two
/// runs are compared.
pub fn json(config: &str, runs: &[RunReport]) -> String {
    let mut s = format!("{{\"config\":{config},\"runs\":[");
    for (i, r) in runs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&json_run(r));
    }
    s.push(']');
    if let [ours, theirs] = runs {
        let q = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64;
        let _ = write!(
            s,
            ",\"ratios\":{{\"published_per_s\":{},\"delivered_per_s\":{},\"p50\":{},\"p99\":{},\"p99_9\":{}}}",
            jn(ratio(ours.published_per_s(), theirs.published_per_s())),
            jn(ratio(ours.delivered_per_s(), theirs.delivered_per_s())),
            jn(ratio(q(&ours.overall, 0.5), q(&theirs.overall, 0.5))),
            jn(ratio(q(&ours.overall, 0.99), q(&theirs.overall, 0.99))),
            jn(ratio(q(&ours.overall, 0.999), q(&theirs.overall, 0.999))),
        );
    }
    s.push('}');
    s
}

/// A JSON string literal (for callers building the `config` object).
pub fn json_string(s: &str) -> String {
    js(s)
}
