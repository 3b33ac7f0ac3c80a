//! `loadgen --workload streams`: every operator of the bus at once, under load, with each
//! count checked.
//!
//! Sensor agents publish `sensor.reading` events (an rkyv payload with the reading, and
//! metadata entries `zone` and `value`) as fast as the bus takes them. On the bus:
//!
//! - an **expression filter**, `type == "sensor.reading" && meta.zone == 3`, counts the
//!   readings of zone 3;
//! - a **wildcard** subscription, `sensor.>`, counts readings and derived events alike;
//! - a **transform** stage turns each reading into a `sensor.scaled` event (the value
//!   doubled, written in place, caused by the reading, at high priority so the shard
//!   drains derived events before new readings);
//! - a **tumbling window** of 50 ms per source agent aggregates the scaled values and
//!   publishes one `WindowResult` per agent and window, which a subscription counts;
//! - a **stream** (pull consumer, `Lag` policy) of the readings is drained by its own
//!   thread, which records publish -> consume latency (hdrhistogram);
//! - a **recurring schedule**, every 10 ms, publishes a heartbeat.
//!
//! The report gives the readings' throughput, the stream consumer's latency percentiles,
//! and checks: the filter saw exactly the zone-3 readings published, the wildcard saw
//! every reading and every scaled event, the transform emitted one event per reading or
//! dead-lettered it as `EmitFull` (a stage never blocks its shard), the
//! window's counts are conserved and add up to the scaled events, the stream accounts for
//! every reading (consumed + dropped + lagged), and the heartbeat fired about once per
//! 10 ms.

use std::error::Error;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dreamnet_bus::recurring::MissedTicks;
use dreamnet_bus::window::{KeyBy, WindowResult, WindowSpec};
use dreamnet_bus::{
    Bus, Draft, Event, EventType, Filter, Outcome, Priority, Stage, StreamError, StreamPolicy,
    WaitStrategy,
};
use hdrhistogram::Histogram;

/// What to run.
#[derive(Clone, Debug)]
pub struct StreamsOptions {
    /// Seconds of load.
    pub duration: Duration,
    /// Sensor agents (each has its own publisher; all on one producer thread).
    pub sensors: usize,
    /// The stream's ring capacity.
    pub stream_capacity: usize,
    /// The bus's wait strategy.
    pub wait: WaitStrategy,
}

/// A reading, as published.
#[derive(rkyv::Archive, rkyv::Serialize)]
pub struct Reading {
    /// The sensor's sequence number.
    pub seq: u64,
    /// The measured value.
    pub value: i64,
}

const ZONES: u64 = 8;
const WINDOW: Duration = Duration::from_millis(50);
const HEARTBEAT: Duration = Duration::from_millis(10);

/// Counts shared with the handlers.
#[derive(Default)]
struct Seen {
    zone3: AtomicU64,
    wildcard: AtomicU64,
    window_results: AtomicU64,
    window_count_sum: AtomicU64,
    heartbeats: AtomicU64,
}

/// Runs the workload and prints its report; `Ok(false)` when a check fails.
pub fn run(opts: &StreamsOptions) -> Result<bool, Box<dyn Error>> {
    let bus = Arc::new(
        Bus::builder()
            .shards(1)
            .pinned(false)
            .wait_strategy(opts.wait)
            .ring_capacity_all(4096)
            .build()?,
    );
    let reading = bus.register_event_type("sensor.reading")?;
    let scaled = bus.register_event_type("sensor.scaled")?;
    let result_type = bus.register_event_type("sensor.window")?;
    let zone = bus.register_meta_key("zone")?;
    let value = bus.register_meta_key("value")?;
    let seen = Arc::new(Seen::default());

    // Advanced filters: an expression and a wildcard, parsed once.
    let s = Arc::clone(&seen);
    bus.subscribe(
        Filter::parse(&bus, r#"type == "sensor.reading" && meta.zone == 3"#)?,
        move |_| {
            s.zone3.fetch_add(1, Ordering::Relaxed);
            Outcome::Done
        },
    )?;
    let s = Arc::clone(&seen);
    bus.subscribe(Filter::wildcard(&bus, "sensor.>")?, move |_| {
        s.wildcard.fetch_add(1, Ordering::Relaxed);
        Outcome::Done
    })?;

    // A transform: reading -> scaled, in place, caused by the reading.
    let doubler = bus.publisher(bus.register_agent("doubler")?)?;
    let transform = bus.transform(
        Filter::of_type(reading),
        Stage::new(doubler, move |d, out| {
            let Ok(r) = d.payload::<Reading>() else {
                return Outcome::fail(400);
            };
            let doubled = Reading {
                seq: r.seq.to_native(),
                value: r.value.to_native() * 2,
            };
            match out.emit(Draft::new(scaled).with_priority(Priority::High), &doubled) {
                Ok(_) => Outcome::Done,
                Err(_) => Outcome::fail(503),
            }
        }),
    )?;

    // A tumbling window per source over the scaled values.
    let spec = WindowSpec::tumbling(WINDOW)
        .key_by(KeyBy::Source)
        .value_with(|d| d.payload::<Reading>().ok().map(|r| r.value.to_native()))
        .grace(Duration::from_millis(200))
        .output(result_type);
    let window = bus.window(Filter::of_type(scaled), spec)?;
    let s = Arc::clone(&seen);
    bus.subscribe(Filter::of_type(result_type), move |d| {
        if let Ok(r) = d.payload::<WindowResult>() {
            s.window_results.fetch_add(1, Ordering::Relaxed);
            s.window_count_sum
                .fetch_add(r.count.to_native(), Ordering::Relaxed);
        }
        Outcome::Done
    })?;

    // A recurring heartbeat.
    let s = Arc::clone(&seen);
    bus.subscribe(Filter::of_type(EventType::AGENT_STATUS), move |_| {
        s.heartbeats.fetch_add(1, Ordering::Relaxed);
        Outcome::Done
    })?;
    let clock = bus.publisher(bus.register_agent("clock")?)?;
    let heartbeat = bus.every(
        HEARTBEAT,
        clock,
        Event::new(EventType::AGENT_STATUS),
        MissedTicks::Skip,
    )?;

    // A stream of the readings, drained by its own thread.
    let mut stream = bus.stream(
        Filter::of_type(reading),
        opts.stream_capacity,
        StreamPolicy::Lag,
    )?;
    let stream_id = stream.id();
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let stop = Arc::clone(&stop);
        let bus = Arc::clone(&bus);
        std::thread::spawn(move || {
            let mut latency =
                Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
            let (mut consumed, mut lagged) = (0u64, 0u64);
            loop {
                match stream.next_ref_timeout(Duration::from_millis(5)) {
                    Ok(e) => {
                        let now = bus.now_ns();
                        let _ =
                            latency.record(now.saturating_sub(e.header().timestamp_ns()).max(1));
                        consumed += 1;
                    }
                    Err(StreamError::Lagged(n)) => lagged += n,
                    Err(StreamError::Timeout) if !stop.load(Ordering::Acquire) => {}
                    Err(_) => break,
                }
            }
            (consumed, lagged, latency, stream.stats())
        })
    };

    // The load: readings, round robin over the sensors, as fast as the bus takes them.
    let mut publishers = (0..opts.sensors)
        .map(|i| bus.publisher(bus.register_agent(&format!("sensor-{i}"))?))
        .collect::<Result<Vec<_>, _>>()?;
    let (mut published, mut zone3, mut full) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut seq = 0u64;
    while start.elapsed() < opts.duration {
        for p in &mut publishers {
            let z = seq % ZONES;
            let v = (seq % 1000) as i64;
            let event = Event::new(reading)
                .with_priority(Priority::Normal)
                .with_metadata(zone, z)?
                .with_metadata(value, v as u64)?
                .with_payload(&Reading { seq, value: v })?;
            match p.try_publish(event) {
                Ok(_) => {
                    published += 1;
                    zone3 += u64::from(z == 3);
                    seq += 1;
                }
                Err(_) => {
                    full += 1;
                    std::thread::yield_now();
                }
            }
        }
    }
    let elapsed = start.elapsed();
    // Let the last windows close (size + grace), then stop everything.
    std::thread::sleep(WINDOW + Duration::from_millis(300));
    heartbeat.cancel();
    bus.wait_idle(Duration::from_secs(10));
    let _ = bus.stop_window(&window);
    bus.wait_idle(Duration::from_secs(10));
    bus.unsubscribe(stream_id)?;
    stop.store(true, Ordering::Release);
    let (consumed, lagged, latency, stream_stats) =
        consumer.join().map_err(|_| "stream consumer panicked")?;
    let transform_stats = transform.stats();
    let window_stats = window.stats();
    let beats = heartbeat.stats();
    drop(publishers);
    bus.close();

    let secs = elapsed.as_secs_f64();
    println!(
        "loadgen --workload streams: {} sensors, {:.1} s",
        opts.sensors, secs
    );
    println!(
        "  readings published   {published} ({:.3} M/s; {full} ring-full retries)",
        published as f64 / secs / 1e6
    );
    println!(
        "  stream consumer      consumed {consumed}, dropped {}, lagged {lagged}; publish -> consume p50 {} us, p99 {} us, p99.9 {} us, max {} us",
        stream_stats.dropped,
        latency.value_at_quantile(0.5) / 1000,
        latency.value_at_quantile(0.99) / 1000,
        latency.value_at_quantile(0.999) / 1000,
        latency.max() / 1000,
    );
    let got = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "  transform            inputs {}, emitted {}, dead-lettered {} (EmitFull: its ring to the shard was full; a stage never blocks its shard)",
        transform_stats.inputs, transform_stats.emitted, transform_stats.dead_lettered
    );
    println!(
        "  window (50 ms, per source) inputs {}, counted {}, late {}, results {} (counts summing to {})",
        window_stats.inputs,
        window_stats.counted,
        window_stats.late,
        got(&seen.window_results),
        got(&seen.window_count_sum)
    );
    println!(
        "  filters              zone 3: {} (published {zone3}); sensor.> (readings, scaled, window results): {}",
        got(&seen.zone3),
        got(&seen.wildcard)
    );
    println!(
        "  heartbeat every 10 ms fired {} (skipped {}), handled {}",
        beats.fired,
        beats.skipped,
        got(&seen.heartbeats)
    );

    let scaled_events = transform_stats.emitted;
    if std::env::var_os("STREAMS_DEBUG").is_some() {
        println!("  {stream_stats:?}");
    }
    let checks = [
        (
            "expression filter saw every zone-3 reading",
            got(&seen.zone3) == zone3,
        ),
        (
            "wildcard saw every reading and every scaled event",
            got(&seen.wildcard) == published + scaled_events + got(&seen.window_results),
        ),
        (
            "transform: every reading in, each scaled or dead-lettered (EmitFull)",
            transform_stats.inputs == published
                && scaled_events + transform_stats.dead_lettered == published,
        ),
        (
            "window conserved, and its results count every scaled event",
            window_stats.conserved()
                && window_stats.inputs == scaled_events
                && got(&seen.window_count_sum) + window_stats.late + window_stats.key_overflow
                    == scaled_events,
        ),
        (
            "stream accounts for every reading (consumed + dropped, each drop reported)",
            stream_stats.delivered == published
                && consumed + stream_stats.dropped == published
                && lagged == stream_stats.dropped,
        ),
        (
            "heartbeat fired about once per 10 ms",
            beats.fired * 10 + 50 >= elapsed.as_millis() as u64 / 2
                && got(&seen.heartbeats) == beats.fired,
        ),
    ];
    let mut ok = true;
    for (what, passed) in checks {
        println!("  check: {what}: {}", if passed { "ok" } else { "FAILED" });
        ok &= passed;
    }
    Ok(ok)
}
