//! Zero allocation on the failure paths: retry scheduling, timer-wheel expiry,
//! dead-lettering (with the ring wrapping under `DropOldest`) and redrive, after warm-up,
//! counted by a global allocator that counts every allocation on every thread.

use std::time::Duration;

use dreamnet_bus::{
    Bus, Draft, Event, EventType, Filter, FullPolicy, Jitter, ManualClock, Outcome, RetryPolicy,
};

mod alloc_counter;
use alloc_counter::allocations_during;

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Job {
    seq: u64,
    weight: u32,
}

#[test]
fn retries_wheel_expiry_dead_letters_and_redrive_allocate_nothing_after_warm_up() {
    let clock = ManualClock::new();
    let (bus, mut shards) = Bus::builder()
        .manual_clock(clock.clone())
        .retry_policy(
            RetryPolicy::builder()
                .max_attempts(3)
                .base(Duration::from_millis(1))
                .cap(Duration::from_millis(8))
                .jitter(Jitter::Full)
                .build()
                .expect("policy"),
        )
        .dead_letters(64, FullPolicy::DropOldest)
        .timer_capacity(1024)
        .build_polled()
        .expect("bus");
    let agent = bus.register_agent("zero-alloc").expect("agent");
    // Retries once, then succeeds; reads the payload every time.
    bus.subscribe(Filter::of_type(EventType::AGENT_TASK), |d| {
        let job = d.payload::<Job>().expect("payload");
        if d.envelope().attempts == 1 && job.seq.to_native() % 2 == 0 {
            Outcome::retry(1)
        } else {
            Outcome::Done
        }
    })
    .expect("sub");
    // Fails every fifth event: dead letters, the ring wrapping (DropOldest).
    bus.subscribe(Filter::of_type(EventType::AGENT_TASK), |d| {
        let job = d.payload::<Job>().expect("payload");
        if job.seq.to_native() % 5 == 0 {
            Outcome::fail(2)
        } else {
            Outcome::Done
        }
    })
    .expect("sub");
    // Always retries: exhausts its attempts.
    bus.subscribe(Filter::of_type(EventType::AGENT_STATUS), |_| {
        Outcome::retry(3)
    })
    .expect("sub");
    let mut publisher = bus.publisher(agent).expect("publisher");

    let mut cycle = |seq: u64, publisher: &mut dreamnet_bus::Publisher| {
        if seq.is_multiple_of(2) {
            let event = Event::new(EventType::AGENT_TASK)
                .with_payload(&Job { seq, weight: 3 })
                .expect("fits");
            publisher.try_publish(event).expect("room");
        } else {
            publisher
                .try_publish_with(Draft::new(EventType::AGENT_TASK), &Job { seq, weight: 1 })
                .expect("room");
        }
        if seq.is_multiple_of(7) {
            publisher
                .try_publish(Event::new(EventType::AGENT_STATUS))
                .expect("room");
        }
        clock.advance(Duration::from_millis(1));
        shards[0].poll(usize::MAX);
        if seq.is_multiple_of(100) {
            bus.redrive(8, |_| true).expect("redrive");
        }
    };

    for seq in 0..20_000 {
        cycle(seq, &mut publisher);
    }
    let before = bus.stats();
    let allocations = allocations_during(|| {
        for seq in 20_000..120_000 {
            cycle(seq, &mut publisher);
        }
    });
    let after = bus.stats();
    let s = |st: &dreamnet_bus::BusStats, f: fn(&dreamnet_bus::ShardStats) -> u64| -> u64 {
        st.shards.iter().map(f).sum()
    };
    // The window exercised every path it claims to.
    assert!(s(&after, |x| x.retries_scheduled) - s(&before, |x| x.retries_scheduled) > 10_000);
    assert!(s(&after, |x| x.retries_fired) - s(&before, |x| x.retries_fired) > 10_000);
    assert!(s(&after, |x| x.dead_lettered) - s(&before, |x| x.dead_lettered) > 10_000);
    assert!(s(&after, |x| x.redriven) - s(&before, |x| x.redriven) > 1_000);
    assert!(after.dead_letters_dropped > before.dead_letters_dropped);
    assert_eq!(allocations, 0, "allocations during 100,000 cycles");
}
