//! Zero allocation after setup for streams and transforms: publish -> route -> a
//! two-stage transform chain (in-place emits, causation stamped) -> a stream consumed by
//! value and in place, with `DropOldest` evicting and `Lag` reporting; and a worker-mode
//! consumer that parks and is woken by its shard. Counted by the global allocator that
//! counts every allocation on every thread.

use std::time::Duration;

use dreamnet_bus::{
    Bus, Draft, EventStream, EventType, Filter, Outcome, Shard, Stage, StreamError, StreamPolicy,
    WaitStrategy,
};

mod alloc_counter;
use alloc_counter::{allocations_during, first_sizes};

fn drain(shards: &mut [Shard]) {
    while shards.iter_mut().map(|s| s.poll(1024)).sum::<usize>() > 0 {}
}

#[test]
fn streams_and_transform_stages_allocate_nothing_after_setup() {
    let (bus, mut shards) = Bus::builder()
        .shards(2)
        .ring_capacity_all(1024)
        .build_polled()
        .expect("bus");
    let [mid, out] = ["mid", "out"].map(|n| bus.register_event_type(n).expect("type"));
    for (name, from, to) in [
        ("stage-1", EventType::AGENT_TASK, mid),
        ("stage-2", mid, out),
    ] {
        let publisher = bus
            .publisher(bus.register_agent(name).expect("agent"))
            .expect("publisher");
        bus.transform(
            Filter::of_type(from),
            Stage::new(publisher, move |d, emit| {
                let x = d.payload::<u64>().map_or(0, |x| x.to_native());
                match emit.emit(Draft::new(to), &(x + 1)) {
                    Ok(_) => Outcome::Done,
                    Err(_) => Outcome::fail(503),
                }
            }),
        )
        .expect("stage");
    }
    let by_value = bus
        .stream(Filter::of_type(out), 256, StreamPolicy::Backpressure)
        .expect("stream");
    let in_place = bus
        .stream(Filter::of_type(out), 256, StreamPolicy::DropOldest)
        .expect("stream");
    let lagging = bus
        .stream(Filter::of_type(out), 8, StreamPolicy::Lag)
        .expect("stream");
    let mut p = bus
        .publisher(bus.register_agent("root").expect("agent"))
        .expect("publisher");
    let draft = Draft::new(EventType::AGENT_TASK);

    let mut streams = [by_value, in_place, lagging];
    let mut round = |base: u64, streams: &mut [EventStream; 3]| -> u64 {
        let [by_value, in_place, lagging] = streams;
        for i in 0..32 {
            p.try_publish_with(draft, &(base + i)).expect("room");
        }
        drain(&mut shards);
        let mut sum = 0;
        while let Ok(e) = by_value.try_next() {
            sum += e.payload::<u64>().map_or(0, |x| x.to_native());
        }
        while let Ok(e) = in_place.try_next_ref() {
            sum += u64::from(e.header().hops());
        }
        let mut lags = 0;
        loop {
            match lagging.try_next_ref() {
                Ok(e) => sum += u64::from(e.header().hops()),
                Err(StreamError::Lagged(n)) => lags += n,
                Err(_) => break,
            }
        }
        assert_eq!(lags, 24, "32 into a ring of 8");
        sum
    };
    for r in 0..50 {
        round(r * 32, &mut streams);
    }
    let stats = |s: &[EventStream; 3]| s.each_ref().map(|s| s.stats());
    let before = stats(&streams);
    let mut sum = 0;
    let allocations = allocations_during(|| {
        for r in 50..1_050 {
            sum += round(r * 32, &mut streams);
        }
    });
    assert_eq!(allocations, 0, "first sizes: {:?}", first_sizes());
    let after = stats(&streams);
    assert_eq!(after[0].consumed - before[0].consumed, 32_000);
    assert_eq!(after[1].consumed - before[1].consumed, 32_000);
    assert_eq!(after[2].lag_reported - before[2].lag_reported, 24_000);
    assert!(sum > 0);
}

#[test]
fn a_parked_consumer_and_its_wakeups_allocate_nothing_after_setup() {
    let bus = Bus::builder()
        .shards(1)
        .wait_strategy(WaitStrategy::Yield)
        .build()
        .expect("bus");
    let mut stream = bus
        .stream(
            Filter::of_type(EventType::AGENT_TASK),
            64,
            StreamPolicy::Lag,
        )
        .expect("stream");
    stream.set_wait_strategy(WaitStrategy::Park(Duration::from_millis(200)));
    let mut p = bus
        .publisher(bus.register_agent("root").expect("agent"))
        .expect("publisher");
    let draft = Draft::new(EventType::AGENT_TASK);
    // The consumer thread is spawned (and makes its thread handle) before the window.
    let go = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ready = std::sync::Arc::clone(&go);
    let consumer = std::thread::spawn(move || {
        let _ = std::thread::current();
        for round in 1..=2 {
            while ready.load(std::sync::atomic::Ordering::Acquire) < round {
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut got = 0u64;
            while got < 200 {
                match stream.next() {
                    Ok(e) => got += u64::from(e.payload::<u64>().is_ok()),
                    Err(StreamError::Lagged(n)) => got += n,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        stream.stats()
    });
    // Warm-up round, then a counted one: 200 events, 1 ms apart, so the consumer parks
    // between them and the shard wakes it.
    let send_round = |p: &mut dreamnet_bus::Publisher| {
        for i in 0..200u64 {
            std::thread::sleep(Duration::from_micros(500));
            p.try_publish_with(draft, &i).expect("room");
        }
    };
    go.store(1, std::sync::atomic::Ordering::Release);
    send_round(&mut p);
    std::thread::sleep(Duration::from_millis(50));
    let allocations = allocations_during(|| {
        go.store(2, std::sync::atomic::Ordering::Release);
        send_round(&mut p);
        std::thread::sleep(Duration::from_millis(50));
    });
    let stats = consumer.join().expect("consumer");
    assert_eq!(allocations, 0, "first sizes: {:?}", first_sizes());
    assert!(
        stats.wakeups > 0,
        "the consumer slept and was woken: {stats:?}"
    );
}
