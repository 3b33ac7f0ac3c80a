//! Zero allocation with live analytics on: publish -> route -> handler on two shards,
//! every priority, several types and sources, with the shards counting per type and per
//! source and recording latency histograms, after warm-up, counted by the workspace's
//! counting global allocator.

use dreamnet_bus::{Bus, Event, EventType, Filter, Outcome, Priority, Shard};

mod alloc_counter;
use alloc_counter::allocations_during;

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
fn analytics_recording_allocates_nothing_after_warm_up() {
    let (bus, mut shards) = Bus::builder()
        .shards(2)
        .analytics(true)
        .ring_capacity_all(256)
        .build_polled()
        .expect("bus");
    let agents = [
        bus.register_agent("a").expect("agent"),
        bus.register_agent("b").expect("agent"),
    ];
    // One subscription per shard: every event fans out to both.
    for _ in 0..2 {
        bus.subscribe(Filter::any(), |_| Outcome::Done)
            .expect("subscribe");
    }
    let mut publishers: Vec<_> = agents
        .iter()
        .map(|a| bus.publisher(*a).expect("publisher"))
        .collect();
    let types = [
        EventType::AGENT_TASK,
        EventType::AGENT_STATUS,
        EventType::SYSTEM_HEALTH,
    ];
    let mut round = |publishers: &mut [dreamnet_bus::Publisher]| {
        for i in 0..64usize {
            let event = Event::new(types[i % types.len()]).with_priority(Priority::ALL[i % 4]);
            publishers[i % 2].try_publish(event).expect("room");
        }
        drain(&mut shards)
    };
    for _ in 0..100 {
        round(&mut publishers);
    }
    let before = bus.analytics().expect("analytics on");
    let mut handled = 0;
    let allocations = allocations_during(|| {
        for _ in 0..2_000 {
            handled += round(&mut publishers);
        }
    });
    assert_eq!(allocations, 0, "allocations after warm-up");
    assert_eq!(handled, 2_000 * 64 * 2);
    let after = bus.analytics().expect("analytics on");
    // 2,000 rounds x 64 events, each taken off by both shards.
    assert_eq!(after.total() - before.total(), 2_000 * 64 * 2);
    assert_eq!(
        after.count_of_source(agents[0]) - before.count_of_source(agents[0]),
        2_000 * 32 * 2
    );
    for p in Priority::ALL {
        let n = after.latency_of(p).count() - before.latency_of(p).count();
        assert_eq!(n, 2_000 * 16 * 2, "{p:?}");
    }
}
