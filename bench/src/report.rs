//! The end report: throughput, latency percentiles per priority, allocations per event,
//! the conservation checks and per-subscription deliveries against the model, as text for
//! people or as one JSON object for machines.

use std::fmt::Write as _;

use dreamnet_bus::Priority;
use hdrhistogram::Histogram;

use crate::workload::{
    new_histogram, Endpoint, ProbeReport, Returned, Tally, WindowReading, SUBSCRIPTIONS,
};

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
    /// Whether failures were injected into this handler.
    pub injected: bool,
    /// First deliveries (attempt 1), counted by the handler.
    pub delivered: u64,
    /// Handler invocations, retries included, counted by the handler.
    pub calls: u64,
    /// What the handler returned.
    pub returned: Returned,
    /// What the routing model expects (a group member: its even share of the group).
    pub expected: u64,
    /// Allowed difference: 0, or for a group member the rounding of an even split (a
    /// least-loaded group whose members retry balances by what is outstanding, so only
    /// its total is checked: then the whole share).
    pub tolerance: u64,
    /// The bus's own count for this subscription, where the bus keeps one.
    pub bus_accepted: Option<u64>,
    /// The bus's counts for this subscription at quiescence (before close).
    pub bus: Option<dreamnet_bus::SubscriptionStats>,
    /// Dead letters for this subscription seen by the `on_dead_letter` hook over the whole
    /// run (close included: `Shutdown` letters count here).
    pub dead_letters_seen: Option<u64>,
}

impl EndpointRow {
    /// Whether the handler got what the model expects, and the bus agrees: accepted =
    /// first deliveries, attempts = handler calls, done = handler's `Done`s, and accepted =
    /// done + dead-lettered (at quiescence, and after close by the hook's count).
    pub fn ok(&self) -> bool {
        self.delivered.abs_diff(self.expected) <= self.tolerance
            && self.bus_accepted.is_none_or(|a| a == self.delivered)
            && self.bus.as_ref().is_none_or(|b| {
                b.accepted == b.done + b.dead_lettered
                    && b.attempts == self.calls
                    && b.done == self.returned.done
                    && b.panicked == self.returned.panicked
            })
            && match (&self.bus, self.dead_letters_seen) {
                (Some(b), Some(seen)) => b.accepted == b.done + seen,
                _ => true,
            }
    }
}

/// The failure-path figures of a dreamnet-bus run.
#[derive(Debug, Clone, Default)]
pub struct Failures {
    /// What was injected, where (one line).
    pub injected: String,
    /// The retry policy (one line).
    pub policy: String,
    /// What the handlers returned, all together.
    pub returned: Returned,
    /// Panics the quiet panic hook counted (injected ones).
    pub panics_hooked: u64,
    /// Handler panics the shards counted.
    pub panics_caught: u64,
    /// Retries scheduled on the timer wheels.
    pub retries_scheduled: u64,
    /// Retries fired.
    pub retries_fired: u64,
    /// Entries on the wheels after close (must be 0).
    pub timers_pending: u64,
    /// Timer wheel capacity per shard.
    pub timer_capacity: usize,
    /// Dead letters by reason, as the `on_dead_letter` hook saw them: (name, count).
    pub dead_by_reason: Vec<(&'static str, u64)>,
    /// Dead letters the shards counted.
    pub dead_lettered: u64,
    /// Dead-letter ring: capacity, policy name, entries held at the end, dropped by the
    /// full policy.
    pub ring_capacity: usize,
    /// `drop-oldest` or `reject-new`.
    pub ring_policy: &'static str,
    /// Entries held when the run ended.
    pub ring_len: usize,
    /// Entries the full policy dropped or refused.
    pub ring_dropped: u64,
    /// Whether `wait_idle` saw the bus idle before the timeout, and how long it took.
    pub idle: bool,
    /// How long waiting for idle took.
    pub idle_wait: std::time::Duration,
}

impl Failures {
    /// The hook's count for one reason.
    pub fn dead(&self, reason: &str) -> u64 {
        self.dead_by_reason
            .iter()
            .find(|(n, _)| *n == reason)
            .map_or(0, |(_, c)| *c)
    }

    /// Every dead letter the hook saw.
    pub fn dead_total(&self) -> u64 {
        self.dead_by_reason.iter().map(|(_, c)| c).sum()
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
    /// Retries, dead letters and panics (dreamnet-bus runs).
    pub failures: Option<Failures>,
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
            let (delivered, calls, returned) = match probe {
                Some(p) => {
                    for (mine, theirs) in latency.iter_mut().zip(&p.latency) {
                        // Same bounds everywhere, so adding cannot fail.
                        let _ = mine.add(theirs);
                    }
                    let _ = from_stamp.add(&p.from_stamp);
                    bad += p.bad_payload;
                    (p.delivered, p.calls, p.returned)
                }
                None => {
                    missing += 1;
                    (0, 0, Returned::default())
                }
            };
            rows.push(EndpointRow {
                name,
                strategy: spec.strategy(),
                injected: false,
                delivered,
                calls,
                returned,
                expected,
                tolerance,
                bus_accepted: None,
                bus: None,
                dead_letters_seen: None,
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
            failures: None,
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
    if let Some(f) = &r.failures {
        failures_text(&mut s, f);
    }
    if r.endpoints.iter().any(|e| e.bus.is_some()) {
        let _ = writeln!(
            s,
            "subscriptions {:<22} {:<12} {:>3} {:>12} {:>12} | bus at quiescence: {:>11} {:>11} {:>9} {:>9} {:>11}",
            "name", "strategy", "inj", "delivered", "expected", "accepted", "done", "dead", "retried", "attempts"
        );
        let _ = writeln!(
            s,
            "              (delivered: first deliveries counted by the handler; checked: accepted = delivered = done + dead, attempts = handler calls)"
        );
    } else {
        let _ = writeln!(
            s,
            "subscriptions {:<22} {:<12} {:>12} {:>12} {:>12}",
            "name", "strategy", "delivered", "expected", "bus count"
        );
    }
    for e in &r.endpoints {
        let expected = if e.tolerance > 0 {
            format!("~{}", thousands(e.expected))
        } else {
            thousands(e.expected)
        };
        let mark = if e.ok() { "ok" } else { "!!" };
        if let Some(b) = &e.bus {
            let _ = writeln!(
                s,
                "  [{mark}]        {:<22} {:<12} {:>3} {:>12} {:>12} |                    {:>11} {:>11} {:>9} {:>9} {:>11}",
                e.name,
                e.strategy,
                if e.injected { "yes" } else { "-" },
                thousands(e.delivered),
                expected,
                thousands(b.accepted),
                thousands(b.done),
                thousands(b.dead_lettered),
                thousands(b.retried),
                thousands(b.attempts),
            );
        } else {
            let _ = writeln!(
                s,
                "  [{mark}]        {:<22} {:<12} {:>12} {:>12} {:>12}",
                e.name,
                e.strategy,
                thousands(e.delivered),
                expected,
                e.bus_accepted.map_or_else(|| "-".to_owned(), thousands),
            );
        }
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}

/// The failure-path section of the text report.
fn failures_text(s: &mut String, f: &Failures) {
    let r = &f.returned;
    let _ = writeln!(s, "failures      {}", f.injected);
    let _ = writeln!(s, "  policy      {}", f.policy);
    let _ = writeln!(
        s,
        "  handlers    returned done {}, retry {}, fail {}; panicked {} (quiet panic hook saw {}, shards caught {})",
        thousands(r.done),
        thousands(r.retry),
        thousands(r.fail),
        thousands(r.panicked),
        thousands(f.panics_hooked),
        thousands(f.panics_caught),
    );
    let _ = writeln!(
        s,
        "  retries     scheduled {}, fired {}, on the wheels after close {} (wheel capacity {} per shard; refused for capacity: {})",
        thousands(f.retries_scheduled),
        thousands(f.retries_fired),
        thousands(f.timers_pending),
        thousands(f.timer_capacity as u64),
        thousands(f.dead("retry-capacity")),
    );
    let reasons: Vec<String> = f
        .dead_by_reason
        .iter()
        .map(|(n, c)| format!("{n} {}", thousands(*c)))
        .collect();
    let _ = writeln!(
        s,
        "  dead        {} letters (on_dead_letter hook; shards counted {}): {}",
        thousands(f.dead_total()),
        thousands(f.dead_lettered),
        reasons.join(", "),
    );
    let _ = writeln!(
        s,
        "  dead ring   capacity {} ({}), holds {}, dropped by the full policy {}{}",
        thousands(f.ring_capacity as u64),
        f.ring_policy,
        thousands(f.ring_len as u64),
        thousands(f.ring_dropped),
        if f.ring_dropped > 0 {
            " (counted, and the hook saw every letter; raise --dead-letters to keep more)"
        } else {
            ""
        },
    );
    let _ = writeln!(
        s,
        "  quiescence  {} after {:.1} ms of wait_idle (producers stopped; then close)",
        if f.idle {
            "idle"
        } else {
            "NOT idle (timed out; what waited on the wheels was dead-lettered as shutdown on close)"
        },
        f.idle_wait.as_secs_f64() * 1e3,
    );
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
            "{}{{\"name\":{},\"strategy\":{},\"injected\":{},\"delivered\":{},\"calls\":{},\"returned\":{},\"expected\":{},\"tolerance\":{},\"bus_accepted\":{},\"bus\":{},\"dead_letters_seen\":{},\"ok\":{}}}",
            if i > 0 { "," } else { "" },
            js(&e.name),
            js(e.strategy),
            e.injected,
            e.delivered,
            e.calls,
            json_returned(&e.returned),
            e.expected,
            e.tolerance,
            e.bus_accepted.map_or_else(|| "null".to_owned(), |a| a.to_string()),
            e.bus.as_ref().map_or_else(|| "null".to_owned(), |b| format!(
                "{{\"accepted\":{},\"attempts\":{},\"done\":{},\"retried\":{},\"dead_lettered\":{},\"panicked\":{}}}",
                b.accepted, b.attempts, b.done, b.retried, b.dead_lettered, b.panicked
            )),
            e.dead_letters_seen.map_or_else(|| "null".to_owned(), |a| a.to_string()),
            e.ok()
        );
    }
    s.push_str("],\"notes\":[");
    for (i, n) in r.notes.iter().enumerate() {
        let _ = write!(s, "{}{}", if i > 0 { "," } else { "" }, js(n));
    }
    s.push_str("],\"failures\":");
    match &r.failures {
        None => s.push_str("null"),
        Some(f) => {
            let mut reasons = String::from("{");
            for (i, (n, c)) in f.dead_by_reason.iter().enumerate() {
                let _ = write!(reasons, "{}{}:{c}", if i > 0 { "," } else { "" }, js(n));
            }
            reasons.push('}');
            let _ = write!(
                s,
                "{{\"injected\":{},\"policy\":{},\"returned\":{},\"panics_hooked\":{},\"panics_caught\":{},\"retries_scheduled\":{},\"retries_fired\":{},\"timers_pending\":{},\"timer_capacity\":{},\"dead_letters\":{{\"total\":{},\"shards_counted\":{},\"by_reason\":{reasons},\"ring_capacity\":{},\"ring_policy\":{},\"ring_len\":{},\"ring_dropped\":{}}},\"idle\":{},\"idle_wait_s\":{}}}",
                js(&f.injected),
                js(&f.policy),
                json_returned(&f.returned),
                f.panics_hooked,
                f.panics_caught,
                f.retries_scheduled,
                f.retries_fired,
                f.timers_pending,
                f.timer_capacity,
                f.dead_total(),
                f.dead_lettered,
                f.ring_capacity,
                js(f.ring_policy),
                f.ring_len,
                f.ring_dropped,
                f.idle,
                jn(f.idle_wait.as_secs_f64()),
            );
        }
    }
    s.push('}');
    s
}

fn json_returned(r: &Returned) -> String {
    format!(
        "{{\"done\":{},\"retry\":{},\"fail\":{},\"panicked\":{}}}",
        r.done, r.retry, r.fail, r.panicked
    )
}

/// The whole JSON document: `config` (already JSON), the headline (already JSON), the
/// runs, and for each `(ours, theirs)` pair of run indices (the same workload and phase
/// on two buses) the ratios ours/theirs, in `ratios`.
pub fn json(config: &str, headline: &str, runs: &[RunReport], pairs: &[(usize, usize)]) -> String {
    let mut s = format!("{{\"config\":{config},\"headline\":{headline},\"runs\":[");
    for (i, r) in runs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&json_run(r));
    }
    s.push_str("],\"ratios\":[");
    let q = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64;
    for (n, &(a, b)) in pairs.iter().enumerate() {
        let (ours, theirs) = (&runs[a], &runs[b]);
        if n > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "{{\"ours\":{},\"theirs\":{},\"open_loop\":{},\"published_per_s\":{},\"delivered_per_s\":{},\"p50\":{},\"p99\":{},\"p99_9\":{}}}",
            a,
            b,
            ours.open_loop,
            jn(ratio(ours.published_per_s(), theirs.published_per_s())),
            jn(ratio(ours.delivered_per_s(), theirs.delivered_per_s())),
            jn(ratio(q(&ours.overall, 0.5), q(&theirs.overall, 0.5))),
            jn(ratio(q(&ours.overall, 0.99), q(&theirs.overall, 0.99))),
            jn(ratio(q(&ours.overall, 0.999), q(&theirs.overall, 0.999))),
        );
    }
    s.push_str("]}");
    s
}

/// A JSON string literal (for callers building the `config` object).
pub fn json_string(s: &str) -> String {
    js(s)
}
