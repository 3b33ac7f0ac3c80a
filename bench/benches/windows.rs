//! Aggregation throughput (issue 14 §6), in one run: events through a dreamnet-bus
//! tumbling window against what a user would write without it, a hand-written `HashMap`
//! aggregator on a crossbeam channel.
//!
//! Both sides: one producer (the bench thread), one consumer thread, 16 keys, values
//! 0..1000, 10 ms tumbling windows on event time (the bus window with a 20 ms grace), count / sum / min / max / mean and
//! p50 / p90 / p99 per key per window.
//!
//! - `dreamnet`: a worker shard (unpinned, `WaitStrategy::Yield`), `Bus::window` keyed by
//!   a metadata entry with the value in another (read by a `value_with` accessor that
//!   also stores the progress count the timing loop waits for); each closed window is published back into
//!   the bus as an event (a subscriber reads its payload), closing runs on the timer wheel.
//! - `hashmap_channel`: `crossbeam_channel::bounded` of `(key, timestamp, value)` stamped
//!   with the same TSC clock; the consumer keeps a `HashMap<key, Agg>` with an
//!   `hdrhistogram` per key (preallocated, 3 significant digits) and, when an event's
//!   timestamp passes the current window's end, computes every key's result and resets.
//!   It skips what the bus does besides: grace, late events, key capacity, publishing the
//!   results.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{relax, CAPACITY};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dreamnet_bus::window::{KeyBy, WindowResult, WindowSpec};
use dreamnet_bus::{Bus, Event, EventType, Filter, Outcome, WaitStrategy};

const KEYS: u64 = 16;
const WINDOW: Duration = Duration::from_millis(10);
/// The bus window's grace: enough that a loaded machine's delivery delay makes nothing late
/// (the hand-written side has no notion of lateness at all).
const GRACE: Duration = Duration::from_millis(20);

fn dreamnet(c: &mut Criterion) {
    let mut g = c.benchmark_group("window_aggregation");
    g.throughput(Throughput::Elements(1));
    let bus = Bus::builder()
        .pinned(false)
        .wait_strategy(WaitStrategy::Yield)
        .ring_capacity_all(CAPACITY)
        .tick(Duration::from_micros(100))
        .build()
        .expect("bus");
    let tenant = bus.register_meta_key("tenant").expect("meta");
    let ms = bus.register_meta_key("ms").expect("meta");
    // Progress for the timing loop, as the hand-written side reports it: one plain store
    // per event from the consumer thread (polling `window.stats()` would take the window's
    // lock from the bench thread on every spin and slow the shard down).
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
    let mut publisher = bus
        .publisher(bus.register_agent("producer").expect("agent"))
        .expect("publisher");
    let mut next = 0u64;
    g.bench_function("dreamnet", |b| {
        b.iter_custom(|n| {
            let first = next;
            let start = Instant::now();
            for i in first..first + n {
                let e = Event::new(EventType::AGENT_TASK)
                    .with_metadata(tenant, i % KEYS)
                    .and_then(|e| e.with_metadata(ms, i % 1000))
                    .expect("metadata");
                publisher.publish(e).expect("publish");
            }
            while done.load(Ordering::Acquire) < first + n {
                relax();
            }
            next = first + n;
            start.elapsed()
        })
    });
    g.finish();
    let s = window.stats();
    assert!(s.conserved(), "{s:?}");
    eprintln!("dreamnet window: {s:?}");
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

fn hashmap_channel(c: &mut Criterion) {
    let mut g = c.benchmark_group("window_aggregation");
    g.throughput(Throughput::Elements(1));
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
    let mut next = 0u64;
    g.bench_function("hashmap_channel", |b| {
        b.iter_custom(|n| {
            let first = next;
            let start = Instant::now();
            for i in first..first + n {
                let ts = clock.delta_as_nanos(start_raw, clock.raw());
                tx.send((i % KEYS, ts, (i % 1000) as i64)).expect("send");
            }
            while done.load(Ordering::Acquire) < first + n {
                relax();
            }
            next = first + n;
            start.elapsed()
        })
    });
    g.finish();
    drop(tx);
    let emitted = consumer.join().expect("consumer");
    eprintln!("hashmap_channel: {emitted} windows emitted");
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = dreamnet, hashmap_channel
}
criterion_main!(benches);
