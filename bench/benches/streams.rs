//! Streams and transforms, one thread, poll mode (the bench thread is the publisher, the
//! shard and the consumer, so the numbers are CPU cost, not cross-core latency, and the
//! shared 2-core machine matters less):
//!
//! - `stream_consume`: the consumer's cost per event. Untimed: 4096 events are published
//!   and routed into the stream's ring (or sent into a bounded crossbeam channel of
//!   `Event`s). Timed: taking them all out.
//!   - `dreamnet-bus/try_next`: copied out (256 bytes); `dreamnet-bus/try_next_ref`: read in
//!     place, released on drop; the handler reads the payload's `seq` either way.
//!   - `crossbeam-channel/try_recv`: the same 256-byte events out of a
//!     `crossbeam_channel::bounded(4096)`, the plain channel a user would put there.
//! - `transform_per_stage`: publish 64 inputs and poll until quiet, through 0 to 3 chained
//!   stages (each reads a `u64` and emits `x + 1` in place, caused by its input) ending in a
//!   counting subscription: the time per input; the difference between rows is the cost of
//!   one stage (a route, a handler call, an in-place publish, a dequeue).

mod common;

use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use dreamnet_bus::{
    Bus, Draft, Event, EventType, Filter, Outcome, Publisher, Shard, Stage, StreamPolicy,
};

type Group<'a> = BenchmarkGroup<'a, WallTime>;

const CHUNK: usize = 4096;

fn drain(shards: &mut [Shard]) {
    while shards.iter_mut().map(|s| s.poll(CHUNK)).sum::<usize>() > 0 {}
}

fn seq_of(e: &Event) -> u64 {
    e.payload::<u64>().map_or(0, |s| s.to_native())
}

/// Fills the stream with `CHUNK` events (untimed), then times `take(CHUNK)`; as many rounds
/// as `iters` needs.
fn stream_consume(g: &mut Group<'_>, in_place: bool) {
    let (bus, mut shards) = Bus::builder()
        .ring_capacity_all(CHUNK)
        .build_polled()
        .expect("bus");
    let mut stream = bus
        .stream(
            Filter::of_type(EventType::AGENT_TASK),
            CHUNK,
            StreamPolicy::Backpressure,
        )
        .expect("stream");
    let mut publisher = bus
        .publisher(bus.register_agent("bench").expect("agent"))
        .expect("publisher");
    let draft = Draft::new(EventType::AGENT_TASK);
    let name = if in_place {
        "dreamnet-bus/try_next_ref"
    } else {
        "dreamnet-bus/try_next"
    };
    let mut sum = 0u64;
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                for i in 0..n as u64 {
                    publisher.try_publish_with(draft, &i).expect("room");
                }
                drain(&mut shards);
                let start = Instant::now();
                for _ in 0..n {
                    if in_place {
                        let e = stream.try_next_ref().expect("filled");
                        sum = sum.wrapping_add(seq_of(&e));
                    } else {
                        let e = stream.try_next().expect("filled");
                        sum = sum.wrapping_add(seq_of(&e));
                    }
                }
                total += start.elapsed();
                left -= n as u64;
            }
            total
        })
    });
    std::hint::black_box(sum);
    let st = stream.stats();
    assert_eq!(st.delivered, st.consumed, "nothing dropped or refused");
}

fn channel_consume(g: &mut Group<'_>) {
    let (tx, rx) = crossbeam_channel::bounded::<Event>(CHUNK);
    let mut sum = 0u64;
    g.bench_function("crossbeam-channel/try_recv", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                for i in 0..n as u64 {
                    let e = Event::new(EventType::AGENT_TASK)
                        .with_payload(&i)
                        .expect("fits");
                    tx.try_send(e).expect("room");
                }
                let start = Instant::now();
                for _ in 0..n {
                    let e = rx.try_recv().expect("filled");
                    sum = sum.wrapping_add(seq_of(&e));
                }
                total += start.elapsed();
                left -= n as u64;
            }
            total
        })
    });
    std::hint::black_box(sum);
}

/// A stage reading a `u64` and emitting `x + 1` as type `to`.
fn plus_one(
    publisher: Publisher,
    to: EventType,
) -> Stage<
    impl FnMut(&dreamnet_bus::Delivery<'_, 256>, &mut dreamnet_bus::Emitter<'_, 256>) -> Outcome
        + Send
        + 'static,
> {
    Stage::new(publisher, move |d, emit| {
        let x = d.payload::<u64>().map_or(0, |x| x.to_native());
        match emit.emit(Draft::new(to), &(x + 1)) {
            Ok(_) => Outcome::Done,
            Err(_) => Outcome::fail(503),
        }
    })
}

fn transform_chain(g: &mut Group<'_>, stages: usize) {
    const INPUTS: u64 = 64;
    let (bus, mut shards) = Bus::builder()
        .ring_capacity_all(CHUNK)
        .build_polled()
        .expect("bus");
    let types: Vec<EventType> = (0..=stages)
        .map(|i| {
            if i == 0 {
                EventType::AGENT_TASK
            } else {
                bus.register_event_type(&format!("stage-{i}"))
                    .expect("type")
            }
        })
        .collect();
    for i in 0..stages {
        let publisher = bus
            .publisher(bus.register_agent(&format!("stage-{i}")).expect("agent"))
            .expect("publisher");
        bus.transform(Filter::of_type(types[i]), plus_one(publisher, types[i + 1]))
            .expect("stage");
    }
    let mut sum = 0u64;
    let sink = bus
        .subscribe(Filter::of_type(types[stages]), move |d| {
            sum = std::hint::black_box(
                sum.wrapping_add(d.payload::<u64>().map_or(0, |x| x.to_native())),
            );
            Outcome::Done
        })
        .expect("sink");
    let mut publisher = bus
        .publisher(bus.register_agent("bench").expect("agent"))
        .expect("publisher");
    let draft = Draft::new(EventType::AGENT_TASK);
    g.bench_function(format!("dreamnet-bus/{stages}-stages"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut left = iters;
            while left > 0 {
                let n = left.min(INPUTS);
                for i in 0..n {
                    publisher.try_publish_with(draft, &i).expect("room");
                }
                drain(&mut shards);
                left -= n;
            }
            start.elapsed()
        })
    });
    let st = bus.subscription_stats(sink).expect("subscribed");
    assert_eq!(
        st.done, st.accepted,
        "every input reached the end of the chain"
    );
}

fn streams(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_consume");
    g.throughput(Throughput::Elements(1));
    stream_consume(&mut g, false);
    stream_consume(&mut g, true);
    channel_consume(&mut g);
    g.finish();
    let mut g = c.benchmark_group("transform_per_stage");
    g.throughput(Throughput::Elements(1));
    for stages in 0..=3 {
        transform_chain(&mut g, stages);
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = streams
}
criterion_main!(benches);
