//! Latency beside the disruptor, in one run (`cargo bench --bench latency`):
//!
//! - [`oneway`]: the producer stamps the raw TSC into the event, the consumer's handler
//!   records `now - stamp`; producer and consumer pinned to different cores; paced on the
//!   TSC at a fraction of the saturation measured first in the same run.
//! - [`floor`]: the same stamps through one cache line between the two cores, no bus: the
//!   floor the machine gives at that moment, in the same run.
//! - [`pingpong`]: A publishes, B's handler answers on a second bus (ring), A waits for the
//!   answer and records the round trip.
//!
//! The shared pieces live here: the run's [`Plan`], the [`Stamp`] every event carries, the
//! consumer-side [`Recorder`], the paced producer loop ([`produce`]) and the [`Summary`]
//! the table is printed from. The main thread only starts threads and joins them: while
//! they measure it sleeps in `join`, and nothing prints.

pub mod floor;
pub mod oneway;
pub mod pingpong;
pub mod tsc;

use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::Duration;

use hdrhistogram::Histogram;

pub use tsc::Tsc;

/// How long each phase runs. `LATENCY_QUICK=1` (CI) shortens every phase to a smoke run;
/// `LATENCY_SECS` sets the measured window; `LATENCY_RATE` fixes the one-way rate
/// (events/s) instead of deriving it from the measured saturation.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Warm-up before each measured window (not recorded).
    pub warmup: Duration,
    /// Each measured window.
    pub measure: Duration,
    /// The closed-loop run that measures saturation.
    pub saturation: Duration,
    /// The one-way rate as a share of the saturation (0.1 by the issue).
    pub load: f64,
    /// A fixed one-way rate, events/s, overriding `load`.
    pub rate: Option<f64>,
}

impl Plan {
    /// The plan from the environment (see the type's docs); unparsable values are errors
    /// that name the variable, not silently replaced defaults.
    pub fn from_env() -> Result<Self, String> {
        let quick = std::env::var_os("LATENCY_QUICK").is_some_and(|v| v != "0");
        let mut plan = if quick {
            Plan {
                warmup: Duration::from_millis(100),
                measure: Duration::from_millis(300),
                saturation: Duration::from_millis(200),
                load: 0.1,
                rate: None,
            }
        } else {
            Plan {
                warmup: Duration::from_millis(300),
                measure: Duration::from_secs(2),
                saturation: Duration::from_millis(700),
                load: 0.1,
                rate: None,
            }
        };
        if let Ok(s) = std::env::var("LATENCY_SECS") {
            let secs: f64 = s
                .parse()
                .map_err(|_| format!("LATENCY_SECS={s:?} is not a number of seconds"))?;
            plan.measure = Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("LATENCY_SECS={s:?} must be > 0"))?;
        }
        if let Ok(s) = std::env::var("LATENCY_RATE") {
            let rate: f64 = s
                .parse()
                .ok()
                .filter(|r: &f64| r.is_finite() && *r > 0.0)
                .ok_or_else(|| format!("LATENCY_RATE={s:?} must be events/s > 0"))?;
            plan.rate = Some(rate);
        }
        Ok(plan)
    }
}

/// What every latency event carries: the TSC at send, and whether it falls in the
/// measured window (warm-up events are delivered but not recorded). The same two words
/// are the dreamnet-bus rkyv payload and the disruptor's slot.
#[derive(Debug, Clone, Copy, Default, rkyv::Archive, rkyv::Serialize)]
pub struct Stamp {
    /// Raw TSC when the producer sent it (ping-pong: the sequence number).
    pub tsc: u64,
    /// Recorded (inside the measured window) or warm-up.
    pub measured: bool,
}

/// Highest latency tracked (1 s; larger values saturate there).
const MAX_NS: u64 = 1_000_000_000;

/// A latency histogram, nanoseconds, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("constant bounds are valid")
}

/// A histogram and how many readings came out non-positive (TSC skew between cores: they
/// are recorded as 0, and the count is reported so skew cannot hide).
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Latencies, nanoseconds.
    pub hist: Histogram<u64>,
    /// Readings where the consumer's counter was not after the producer's stamp.
    pub skewed: u64,
    /// Events the consumer saw, warm-up included (checked against what was sent).
    pub seen: u64,
}

impl Recorded {
    fn empty() -> Self {
        Recorded {
            hist: histogram(),
            skewed: 0,
            seen: 0,
        }
    }
}

/// The consumer side of a one-way run: owned by the handler, it records each measured
/// event's `now - stamp` into a preallocated histogram (no allocation per event) and hands
/// the result back when the handler is dropped (when the bus or disruptor shuts down).
#[derive(Debug)]
pub struct Recorder {
    tsc: Tsc,
    rec: Recorded,
    out: Sender<Recorded>,
}

impl Recorder {
    /// A recorder reporting to `out` on drop.
    pub fn new(tsc: Tsc, out: Sender<Recorded>) -> Self {
        Recorder {
            tsc,
            rec: Recorded::empty(),
            out,
        }
    }

    /// Records one event: the counter now minus its stamp, if it was measured.
    #[inline]
    pub fn record(&mut self, stamp: u64, measured: bool) {
        let now = self.tsc.now();
        self.rec.seen += 1;
        if measured {
            if now <= stamp {
                self.rec.skewed += 1;
            }
            self.rec.hist.saturating_record(self.tsc.nanos(stamp, now));
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let rec = std::mem::replace(
            &mut self.rec,
            Recorded {
                hist: Histogram::new(1).expect("1 significant digit is valid"),
                skewed: 0,
                seen: 0,
            },
        );
        // The bench may have given up waiting; then there is nobody to tell.
        let _ = self.out.send(rec);
    }
}

/// What a producer did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Produced {
    /// Events sent in the measured window.
    pub measured: u64,
    /// Events sent in all (warm-up included).
    pub sent: u64,
    /// Paced sends that started more than one interval after their due time.
    pub late: u64,
    /// Length of the measured window, nanoseconds (on the counter).
    pub window_ns: u64,
}

impl Produced {
    /// Events per second in the measured window.
    pub fn rate(&self) -> f64 {
        self.measured as f64 * 1e9 / self.window_ns.max(1) as f64
    }
}

/// The producer loop: sends for `warmup` then `measure`, back to back (`rate: None`) or
/// paced on the TSC at `rate` events/s: event `i` is due at `start + i / rate`; the
/// producer spins to each due time, and a send that starts more than one interval late
/// (the producer was descheduled) goes at once and is counted, so the schedule and the
/// event count hold whatever happened. An event is measured when it is due (paced) or
/// sent (back to back) inside the window. `send(stamp, measured)` gets the TSC read just
/// before the send and must return only once the event is accepted (spinning on a full
/// ring), so backpressure shows in the latency.
pub fn produce(
    tsc: &Tsc,
    warmup: Duration,
    measure: Duration,
    rate: Option<f64>,
    mut send: impl FnMut(u64, bool),
) -> Produced {
    let start = tsc.now();
    let from = start + tsc.ticks(warmup.as_nanos() as f64);
    let until = from + tsc.ticks(measure.as_nanos() as f64);
    let mut out = Produced {
        window_ns: tsc.nanos(from, until),
        ..Produced::default()
    };
    match rate {
        Some(rate) => {
            let interval = 1e9 / rate * tsc.ticks_per_ns();
            loop {
                let due = start + (out.sent as f64 * interval) as u64;
                if due >= until {
                    break;
                }
                tsc.spin_until(due);
                let now = tsc.now();
                if now > due + interval as u64 {
                    out.late += 1;
                }
                let measured = due >= from;
                send(now, measured);
                out.sent += 1;
                out.measured += u64::from(measured);
            }
        }
        None => loop {
            let now = tsc.now();
            if now >= until {
                break;
            }
            let measured = now >= from;
            send(now, measured);
            out.sent += 1;
            out.measured += u64::from(measured);
        },
    }
    out
}

/// The cores of the machine, or an error saying pinning is impossible here.
pub fn cores() -> Result<Vec<core_affinity::CoreId>, String> {
    match core_affinity::get_core_ids() {
        Some(c) if c.len() >= 2 => Ok(c),
        Some(c) => Err(format!(
            "the latency benches pin producer and consumer to different cores; this machine shows {}",
            c.len()
        )),
        None => Err("core_affinity cannot list this machine's cores".into()),
    }
}

/// The consumer takes the first core (dreamnet-bus pins shard 0 there; the disruptor's
/// consumer is pinned there); the producer takes the second.
pub fn consumer_core() -> Result<usize, String> {
    Ok(cores()?[0].id)
}

/// Runs `setup` then `body` on a new thread; the thread is pinned to the second core
/// between the two. `setup` runs unpinned because the disruptor checks the core it pins
/// its consumer to against the calling thread's affinity mask, which pinning narrows to
/// one core.
pub fn on_producer_core<S, T: Send + 'static>(
    name: &str,
    setup: impl FnOnce() -> S + Send + 'static,
    body: impl FnOnce(S) -> T + Send + 'static,
) -> std::io::Result<JoinHandle<T>> {
    let core = cores().map_err(std::io::Error::other)?[1];
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let state = setup();
            if !core_affinity::set_for_current(core) {
                eprintln!("latency: pinning the producer to core {} failed", core.id);
            }
            body(state)
        })
}

/// Percentiles of one run, nanoseconds.
#[derive(Debug, Clone)]
pub struct Summary {
    /// What ran.
    pub name: String,
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Readings with the consumer's counter not after the stamp.
    pub skewed: u64,
}

impl Summary {
    /// The percentiles of `rec`.
    pub fn of(name: impl Into<String>, rec: &Recorded) -> Self {
        let h = &rec.hist;
        Summary {
            name: name.into(),
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            skewed: rec.skewed,
        }
    }
}

/// The table: one row per summary, then the ratio ours/theirs of every percentile for each
/// `(ours, theirs)` pair of row indices.
pub fn table(title: &str, rows: &[Summary], pairs: &[(usize, usize)]) -> String {
    let mut s = format!(
        "{title}\n  {:<34} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10}\n",
        "", "samples", "p50 ns", "p90 ns", "p99 ns", "p99.9 ns", "max ns"
    );
    for r in rows {
        s += &format!(
            "  {:<34} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10}{}\n",
            r.name,
            r.count,
            r.p50,
            r.p90,
            r.p99,
            r.p999,
            r.max,
            if r.skewed > 0 {
                format!("  ({} skewed readings)", r.skewed)
            } else {
                String::new()
            }
        );
    }
    for &(a, b) in pairs {
        let (x, y) = (&rows[a], &rows[b]);
        let q = |u: u64, v: u64| u as f64 / v.max(1) as f64;
        s += &format!(
            "  {:<34} {:>10} {:>8.2}x {:>8.2}x {:>8.2}x {:>8.2}x {:>9.2}x\n",
            format!("ratio {} / {}", short(&x.name), short(&y.name)),
            "",
            q(x.p50, y.p50),
            q(x.p90, y.p90),
            q(x.p99, y.p99),
            q(x.p999, y.p999),
            q(x.max, y.max),
        );
    }
    s
}

fn short(name: &str) -> &str {
    name.split_whitespace().next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_marks_only_the_window_as_measured_and_paces_at_the_rate() {
        let tsc = Tsc::new();
        let (mut all, mut measured) = (0u64, 0u64);
        let p = produce(
            &tsc,
            Duration::from_millis(20),
            Duration::from_millis(50),
            Some(20_000.0),
            |_, m| {
                all += 1;
                measured += u64::from(m);
            },
        );
        assert_eq!((p.sent, p.measured), (all, measured));
        // 20,000/s for 50 ms is 1,000 in the window and 400 before it; a descheduled
        // producer catches up (sends late), so the counts hold exactly (within one event
        // for the rounding of the interval to ticks).
        assert!((999..=1001).contains(&p.measured), "{p:?}");
        assert!((1399..=1401).contains(&p.sent), "{p:?}");
        let rate = p.rate();
        assert!((19_980.0..=20_020.0).contains(&rate), "{rate}");
    }

    #[test]
    fn recorder_keeps_measured_events_and_reports_on_drop() {
        let tsc = Tsc::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut r = Recorder::new(tsc.clone(), tx);
        let stamp = tsc.now();
        r.record(stamp, false);
        r.record(stamp, true);
        r.record(tsc.now() + tsc.ticks(1e9), true); // from the future: skew
        drop(r);
        let rec = rx.try_recv().expect("reported on drop");
        assert_eq!(rec.seen, 3);
        assert_eq!(rec.hist.len(), 2);
        assert_eq!(rec.skewed, 1);
    }

    #[test]
    fn table_rows_and_ratios() {
        let mut a = Recorded::empty();
        let mut b = Recorded::empty();
        for v in [100u64, 200, 300] {
            a.hist.record(v).unwrap();
            b.hist.record(v / 2).unwrap();
        }
        let rows = [Summary::of("ours x", &a), Summary::of("theirs y", &b)];
        assert_eq!((rows[0].p50, rows[1].p50), (200, 100));
        let t = table("t", &rows, &[(0, 1)]);
        assert!(t.contains("ratio ours / theirs"), "{t}");
        assert!(t.contains("2.00x"), "{t}");
    }
}
