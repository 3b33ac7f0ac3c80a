//! Zero allocation with advanced filters on the publish -> route -> handler path: an
//! expression subscription (type, priority, metadata, source), a wildcard subscription
//! matching a type registered after it, and a combined filter reading the payload, after
//! warm-up, counted by the global counting allocator.

use dreamnet_bus::{Bus, Event, EventType, Filter, Outcome, Priority, Shard};

mod alloc_counter;
use alloc_counter::allocations_during;

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Job {
    seq: u64,
}

fn drain(shards: &mut [Shard]) -> usize {
    let mut total = 0;
    loop {
        let n: usize = shards.iter_mut().map(|s| s.poll(1024)).sum();
        if n == 0 {
            return total;
        }
        total += n;
    }
}

#[test]
fn filtered_routing_allocates_nothing_after_warm_up() {
    let (bus, mut shards) = Bus::builder()
        .shards(1)
        .ring_capacity_all(256)
        .build_polled()
        .expect("bus");
    let agent = bus.register_agent("producer").expect("agent");
    let tenant = bus.register_meta_key("tenant").expect("key");
    let hits = std::sync::Arc::new([
        std::sync::atomic::AtomicU64::new(0),
        std::sync::atomic::AtomicU64::new(0),
        std::sync::atomic::AtomicU64::new(0),
    ]);
    let counter = |i: usize| {
        let hits = std::sync::Arc::clone(&hits);
        move |_: &dreamnet_bus::Delivery<'_, { dreamnet_bus::DEFAULT_SLOT }>| {
            hits[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Outcome::Done
        }
    };
    let expr = Filter::parse(
        &bus,
        r#"type == "agent.task" && priority >= high && meta.tenant in [7, 8] && source == "producer""#,
    )
    .expect("parses");
    bus.subscribe(expr, counter(0)).expect("subscribe");
    bus.subscribe(
        Filter::wildcard(&bus, "plugin.>").expect("pattern"),
        counter(1),
    )
    .expect("subscribe");
    let payload = Filter::parse(&bus, "meta.tenant == 7")
        .expect("parses")
        .and(Filter::payload::<Job>(|j| j.seq % 2 == 0));
    bus.subscribe(payload, counter(2)).expect("subscribe");
    let later = bus.register_event_type("plugin.audio").expect("type");
    let mut publisher = bus.publisher(agent).expect("publisher");

    let mut round = |seq: u64, publisher: &mut dreamnet_bus::Publisher| {
        for (i, prio) in [Priority::High, Priority::Low].into_iter().enumerate() {
            let e = Event::new(EventType::AGENT_TASK)
                .with_priority(prio)
                .with_metadata(tenant, 7 + i as u64)
                .expect("room")
                .with_payload(&Job { seq })
                .expect("fits");
            publisher.try_publish(e).expect("room");
        }
        publisher.try_publish(Event::new(later)).expect("room");
        drain(&mut shards)
    };
    for seq in 0..500 {
        round(seq, &mut publisher);
    }
    let before: Vec<u64> = hits
        .iter()
        .map(|h| h.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    let allocations = allocations_during(|| {
        for seq in 500..5_500 {
            round(seq, &mut publisher);
        }
    });
    assert_eq!(allocations, 0, "allocations after warm-up");
    let after: Vec<u64> = hits
        .iter()
        .map(|h| h.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    // Expression: the high-priority task of each round; wildcard: the later type each
    // round; payload: tenant 7 (the high one) with an even seq, every other round.
    assert_eq!(after[0] - before[0], 5_000);
    assert_eq!(after[1] - before[1], 5_000);
    assert_eq!(after[2] - before[2], 2_500);
}
