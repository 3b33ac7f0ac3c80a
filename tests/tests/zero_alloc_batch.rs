//! Zero allocation on the batch and scheduled publish paths: `try_publish_batch` (built
//! events, two routes in one batch, fanned out to two shards), `try_publish_batch_with`
//! (in place), and `try_publish_after` with the timer wheel firing, after warm-up, counted by
//! a global allocator that counts every allocation on every thread.

use std::time::Duration;

use dreamnet_bus::{Bus, Draft, Event, EventType, Filter, ManualClock, Outcome, Priority};

mod alloc_counter;
use alloc_counter::allocations_during;

mod common;
use common::drain_all as drain;

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Job {
    seq: u64,
}

const BATCH: usize = 32;

#[test]
fn batches_and_scheduled_publishes_allocate_nothing_after_warm_up() {
    let clock = ManualClock::new();
    let (bus, mut shards) = Bus::builder()
        .shards(2)
        .manual_clock(clock.clone())
        .ring_capacity_all(256)
        .timer_capacity(1024)
        .build_polled()
        .expect("bus");
    let agent = bus.register_agent("batcher").expect("agent");
    let mut sum = 0u64;
    // One subscription per shard for tasks (fan-out to both), one for status events.
    for _ in 0..2 {
        bus.subscribe(Filter::of_type(EventType::AGENT_TASK), move |d| {
            sum = sum.wrapping_add(d.payload::<Job>().map_or(0, |j| j.seq.to_native()));
            std::hint::black_box(sum);
            Outcome::Done
        })
        .expect("subscribe");
    }
    bus.subscribe(Filter::of_type(EventType::AGENT_STATUS), |_| Outcome::Done)
        .expect("subscribe");
    let mut publisher = bus.publisher(agent).expect("publisher");
    let draft = Draft::new(EventType::AGENT_TASK).with_priority(Priority::High);
    let mut jobs: Vec<Job> = (0..BATCH as u64).map(|seq| Job { seq }).collect();
    // Two routes in one batch: tasks then status events (two runs, two chunks).
    let mut events: Vec<Event> = (0..BATCH)
        .map(|i| {
            let ty = if i < BATCH / 2 {
                EventType::AGENT_TASK
            } else {
                EventType::AGENT_STATUS
            };
            Event::new(ty)
        })
        .collect();

    let mut round = |seq: u64, publisher: &mut dreamnet_bus::Publisher| -> usize {
        for (i, job) in jobs.iter_mut().enumerate() {
            job.seq = seq + i as u64;
        }
        for (i, event) in events.iter_mut().enumerate() {
            event
                .set_payload(&Job {
                    seq: seq + i as u64,
                })
                .expect("fits");
        }
        let a = publisher
            .try_publish_batch_with(draft, &jobs)
            .expect("room");
        let b = publisher.try_publish_batch(&events).expect("room");
        publisher
            .try_publish_after(Event::new(EventType::AGENT_TASK), Duration::from_millis(1))
            .expect("scheduled");
        let handled = drain(&mut shards);
        clock.advance(Duration::from_millis(2));
        a.count + b.count + handled + drain(&mut shards)
    };

    for seq in 0..200 {
        round(seq * BATCH as u64, &mut publisher);
    }
    let before = bus.stats();
    let mut counted = 0;
    let allocations = allocations_during(|| {
        for seq in 200..2_200 {
            counted += round(seq * BATCH as u64, &mut publisher);
        }
    });
    let after = bus.stats();
    assert_eq!(allocations, 0, "allocations after warm-up");
    // Every round published 2 x 32 events and one scheduled event, and all were delivered:
    // 32 in-place tasks to 2 shards, 16 tasks to 2 shards and 16 status events, 1 scheduled
    // task to 2 shards.
    assert_eq!(
        after.published - before.published,
        2_000 * (2 * BATCH as u64 + 1)
    );
    assert_eq!(
        after.delivered() - before.delivered(),
        2_000 * (2 * 32 + 2 * 16 + 16 + 2)
    );
    assert!(counted > 0);
    assert_eq!(after.queued(), 0);
}
