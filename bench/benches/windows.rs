//! Aggregation throughput (issue 14 §6), in one run: events through a dreamnet-bus
//! tumbling window against what a user would write without it, a hand-written `HashMap`
//! aggregator on a crossbeam channel.
//!
//! Both sides: one producer (the bench thread), one consumer thread, 16 keys, values
//! 0..1000, 10 ms tumbling windows on event time (the bus window with a 20 ms grace),
//! count / sum / min / max / mean and p50 / p90 / p99 per key per window.
//!
//! - `dreamnet`: a worker shard (unpinned, `WaitStrategy::Yield`), `Bus::window` keyed by
//!   a metadata entry with the value in another (read by a `value_with` accessor that
//!   also stores the progress count the timing loop waits for); each closed window is
//!   published back into the bus as an event (a subscriber reads its payload), closing
//!   runs on the timer wheel.
//! - `hashmap_channel`: `crossbeam_channel::bounded` of `(key, timestamp, value)` stamped
//!   with the same TSC clock; the consumer keeps a `HashMap<key, Agg>` with an
//!   `hdrhistogram` per key (preallocated, 3 significant digits) and, when an event's
//!   timestamp passes the current window's end, computes every key's result and resets.
//!   It skips what the bus does besides: carrying a 256-byte event, grace, late events,
//!   key capacity, publishing the results.
//!
//! `interleaved`: on a shared, noisy machine criterion's rows drift by more than the
//! effect, so this runs both pipelines in alternating rounds of 65,536 events (30 rounds)
//! and prints the median ns/event of each and the median of the per-round ratios.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{relax, CAPACITY};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dreamnet_bus::window::{KeyBy, WindowResult, WindowSpec};
use dreamnet_bus::{Bus, Event, EventType, Filter, MetaKey, Outcome, Publisher, WaitStrategy};

const KEYS: u64 = 16;
const WINDOW: Duration = Duration::from_millis(10);
/// The bus window's grace: enough that a loaded machine's delivery delay makes nothing late
/// (the hand-written side has no notion of lateness at all).
const GRACE: Duration = Duration::from_millis(20);

/// The dreamnet-bus pipeline.
struct BusSide {
    // Field order: the publisher goes before the bus.
    publisher: Publisher,
    window: dreamnet_bus::Window,
    tenant: MetaKey,
    ms: MetaKey,
    done: Arc<AtomicU64>,
    next: u64,
    bus: Bus,
}

impl BusSide {
    fn new() -> Self {
        let bus = Bus::builder()
            .pinned(false)
            .wait_strategy(WaitStrategy::Yield)
            .ring_capacity_all(CAPACITY)
            .tick(Duration::from_micros(100))
            .build()
            .expect("bus");
        let tenant = bus.register_meta_key("tenant").expect("meta");
        let ms = bus.register_meta_key("ms").expect("meta");
        // Progress for the timing loop, as the hand-written side reports it: one plain
        // store per event from the consumer thread (polling `window.stats()` would take
        // the window's lock from the bench thread on every spin and slow the shard down).
        let done = Arc::new(AtomicU64::new(0));
        let seen_by_window = Arc::clone(&done);
        let spec = WindowSpec::tumbling(WINDOW)
            .key_by(KeyBy::Meta(tenant))
            .value_with(move |d| {
                let n = seen_by_window.load(Ordering::Relaxed) + 1;
                seen_by_window.store(n, Ordering::Release);
                d.header().metadata(ms).map(|v| v as i64)
            })
            .grace(GRACE)
            .key_capacity(64);
        let window = bus
            .window(Filter::of_type(EventType::AGENT_TASK), spec)
            .expect("window");
        let mut seen = 0u64;
        bus.subscribe(Filter::of_type(window.output()), move |d| {
            seen += d
                .payload::<WindowResult>()
                .map_or(0, |r| r.count.to_native());
            std::hint::black_box(seen);
            Outcome::Done
        })
        .expect("subscribe");
        let publisher = bus
            .publisher(bus.register_agent("producer").expect("agent"))
            .expect("publisher");
        BusSide {
            publisher,
            window,
            tenant,
            ms,
            done,
            next: 0,
            bus,
        }
    }

    fn run(&mut self, n: u64) -> Duration {
        let first = self.next;
        let start = Instant::now();
        for i in first..first + n {
            let e = Event::new(EventType::AGENT_TASK)
                .with_metadata(self.tenant, i % KEYS)
                .and_then(|e| e.with_metadata(self.ms, i % 1000))
                .expect("metadata");
            self.publisher.publish(e).expect("publish");
        }
        while self.done.load(Ordering::Acquire) < first + n {
            relax();
        }
        self.next = first + n;
        start.elapsed()
    }

    fn finish(self) {
        let s = self.window.stats();
        assert!(s.conserved(), "{s:?}");
        eprintln!("dreamnet window: {s:?}");
        self.bus.close();
    }
}

/// The hand-written aggregator's per-key state.
struct Agg {
    count: u64,
    sum: i128,
    min: i64,
    max: i64,
    hist: hdrhistogram::Histogram<u64>,
}

impl Agg {
    fn new() -> Self {
        Agg {
            count: 0,
            sum: 0,
            min: i64::MAX,
            max: i64::MIN,
            hist: hdrhistogram::Histogram::new_with_bounds(1, 1 << 40, 3).expect("hist"),
        }
    }
}

/// The hand-written pipeline.
struct ChannelSide {
    tx: Option<crossbeam_channel::Sender<(u64, u64, i64)>>,
    done: Arc<AtomicU64>,
    consumer: Option<JoinHandle<u64>>,
    clock: quanta::Clock,
    start_raw: u64,
    next: u64,
}

impl ChannelSide {
    fn new() -> Self {
        let (tx, rx) = crossbeam_channel::bounded::<(u64, u64, i64)>(CAPACITY);
        let done = Arc::new(AtomicU64::new(0));
        let d = Arc::clone(&done);
        let window_ns = WINDOW.as_nanos() as u64;
        let consumer = std::thread::spawn(move || {
            let mut keys: HashMap<u64, Agg> = HashMap::new();
            let mut end = 0u64;
            let mut emitted = 0u64;
            let mut handled = 0u64;
            for (key, ts, value) in rx {
                if ts >= end {
                    for (k, a) in keys.iter_mut().filter(|(_, a)| a.count > 0) {
                        let result = (
                            *k,
                            end.saturating_sub(window_ns),
                            a.count,
                            a.sum,
                            a.min,
                            a.max,
                            a.sum as f64 / a.count as f64,
                            a.hist.value_at_quantile(0.5),
                            a.hist.value_at_quantile(0.9),
                            a.hist.value_at_quantile(0.99),
                        );
                        std::hint::black_box(result);
                        emitted += 1;
                        a.count = 0;
                        a.sum = 0;
                        a.min = i64::MAX;
                        a.max = i64::MIN;
                        a.hist.reset();
                    }
                    end = (ts / window_ns + 1) * window_ns;
                }
                let a = keys.entry(key).or_insert_with(Agg::new);
                a.count += 1;
                a.sum += i128::from(value);
                a.min = a.min.min(value);
                a.max = a.max.max(value);
                let _ = a.hist.record(value.max(0) as u64);
                handled += 1;
                d.store(handled, Ordering::Release);
            }
            emitted
        });
        let clock = quanta::Clock::new();
        let start_raw = clock.raw();
        ChannelSide {
            tx: Some(tx),
            done,
            consumer: Some(consumer),
            clock,
            start_raw,
            next: 0,
        }
    }

    fn run(&mut self, n: u64) -> Duration {
        let tx = self.tx.as_ref().expect("open");
        let first = self.next;
        let start = Instant::now();
        for i in first..first + n {
            let ts = self.clock.delta_as_nanos(self.start_raw, self.clock.raw());
            tx.send((i % KEYS, ts, (i % 1000) as i64)).expect("send");
        }
        while self.done.load(Ordering::Acquire) < first + n {
            relax();
        }
        self.next = first + n;
        start.elapsed()
    }

    fn finish(mut self) {
        drop(self.tx.take());
        let emitted = self
            .consumer
            .take()
            .map_or(0, |c| c.join().expect("consumer"));
        eprintln!("hashmap_channel: {emitted} windows emitted");
    }
}

fn dreamnet(c: &mut Criterion) {
    let mut g = c.benchmark_group("window_aggregation");
    g.throughput(Throughput::Elements(1));
    let mut side = BusSide::new();
    g.bench_function("dreamnet", |b| b.iter_custom(|n| side.run(n)));
    g.finish();
    side.finish();
}

fn hashmap_channel(c: &mut Criterion) {
    let mut g = c.benchmark_group("window_aggregation");
    g.throughput(Throughput::Elements(1));
    let mut side = ChannelSide::new();
    g.bench_function("hashmap_channel", |b| b.iter_custom(|n| side.run(n)));
    g.finish();
    side.finish();
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Alternating rounds of both pipelines: same-round ratios, robust to machine drift.
fn interleaved(_: &mut Criterion) {
    const ROUND: u64 = 65_536;
    const ROUNDS: usize = 30;
    let mut bus = BusSide::new();
    let mut chan = ChannelSide::new();
    // Warm-up: one round each.
    bus.run(ROUND);
    chan.run(ROUND);
    let (mut b, mut c, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let tb = bus.run(ROUND).as_nanos() as f64 / ROUND as f64;
        let tc = chan.run(ROUND).as_nanos() as f64 / ROUND as f64;
        b.push(tb);
        c.push(tc);
        ratio.push(tb / tc);
    }
    println!(
        "window_aggregation interleaved ({ROUNDS} rounds of {ROUND}): dreamnet {:.1} ns/event, \
         hashmap_channel {:.1} ns/event, median same-round ratio {:.2}",
        median(&mut b),
        median(&mut c),
        median(&mut ratio)
    );
    bus.finish();
    chan.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = dreamnet, hashmap_channel, interleaved
}
criterion_main!(benches);
