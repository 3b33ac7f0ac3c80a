//! Zero allocation after setup for aggregation windows (events in, windows closed on the
//! timer wheel, results published and delivered, late events dead-lettered) and for a
//! recurring schedule firing (`every` and `cron`), counted by the workspace's counting
//! allocator over every thread.

use std::time::{Duration, UNIX_EPOCH};

use dreamnet_bus::recurring::{MissedTicks, Recurrence};
use dreamnet_bus::window::{KeyBy, WindowResult, WindowSpec};
use dreamnet_bus::{Bus, DeadReason, Event, EventType, Filter, FullPolicy, ManualClock, Outcome};

mod alloc_counter;
use alloc_counter::{allocations_during, first_sizes};

/// The allocator counts every thread: the two tests must not overlap.
mod common;
use common::drain_all as drain;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn aggregation_allocates_nothing_after_setup() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let clock = ManualClock::new();
    let (bus, mut shards) = Bus::builder()
        .shards(2)
        .manual_clock(clock.clone())
        .ring_capacity_all(1024)
        .dead_letters(64, FullPolicy::DropOldest)
        .build_polled()
        .expect("bus");
    let tenant = bus.register_meta_key("tenant").unwrap();
    let ms = bus.register_meta_key("ms").unwrap();
    let hopping = WindowSpec::hopping(Duration::from_millis(10), Duration::from_millis(5))
        .key_by(KeyBy::Meta(tenant))
        .value_meta(ms)
        .grace(Duration::from_millis(1))
        .key_capacity(64);
    let hop = bus
        .window(Filter::of_type(EventType::AGENT_TASK), hopping)
        .unwrap();
    let session = WindowSpec::session(Duration::from_millis(3)).key_by(KeyBy::Source);
    let ses = bus
        .window(Filter::of_type(EventType::AGENT_TASK), session)
        .unwrap();
    let mut results = 0u64;
    bus.subscribe(Filter::of_type(hop.output()), move |d| {
        results += d
            .payload::<WindowResult>()
            .map_or(0, |r| r.count.to_native());
        std::hint::black_box(results);
        Outcome::Done
    })
    .unwrap();
    let mut p = bus.publisher(bus.register_agent("a").unwrap()).unwrap();
    let mut round = |i: u64, p: &mut dreamnet_bus::Publisher| {
        for k in 0..32u64 {
            let e = Event::new(EventType::AGENT_TASK)
                .with_metadata(tenant, k % 16)
                .unwrap()
                .with_metadata(ms, (i * 7 + k) % 1000)
                .unwrap();
            p.try_publish(e).unwrap();
        }
        // One event stamped now but delivered after its windows closed: late.
        if i.is_multiple_of(10) {
            let e = Event::new(EventType::AGENT_TASK)
                .with_metadata(tenant, 1)
                .unwrap()
                .with_metadata(ms, 1)
                .unwrap();
            p.try_publish(e).unwrap();
            clock.advance(Duration::from_millis(20));
        }
        drain(&mut shards);
        clock.advance(Duration::from_millis(2));
        drain(&mut shards);
    };
    for i in 0..300 {
        round(i, &mut p);
    }
    let before = hop.stats();
    let allocations = allocations_during(|| {
        for i in 300..2_300 {
            round(i, &mut p);
        }
    });
    assert_eq!(
        allocations,
        0,
        "allocations after setup (first sizes {:?})",
        first_sizes()
    );
    let after = hop.stats();
    assert!(
        after.emitted_windows - before.emitted_windows > 1000,
        "{after:?}"
    );
    assert!(
        after.late > before.late,
        "late events went through the path: {after:?}"
    );
    assert!(after.conserved() && ses.stats().conserved());
    let mut late = 0;
    bus.dead_letters()
        .inspect(|l| late += usize::from(l.reason == DeadReason::Late));
    assert!(late > 0);
}

#[test]
fn recurring_firing_allocates_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let clock = ManualClock::new();
    let (bus, mut shards) = Bus::builder()
        .manual_clock(clock.clone())
        .build_polled()
        .expect("bus");
    let mut seen = 0u64;
    bus.subscribe(Filter::of_type(EventType::AGENT_STATUS), move |_| {
        seen += 1;
        std::hint::black_box(seen);
        Outcome::Done
    })
    .unwrap();
    let a = bus.register_agent("a").unwrap();
    let every = bus
        .every(
            Duration::from_millis(1),
            bus.publisher(a).unwrap(),
            Event::new(EventType::AGENT_STATUS),
            MissedTicks::CatchUp,
        )
        .unwrap();
    let cron = Recurrence::cron("* * * * * *")
        .unwrap()
        .anchored(UNIX_EPOCH + Duration::from_secs(1_767_268_800), 0);
    let cron = bus
        .recurring(
            cron,
            bus.publisher(a).unwrap(),
            Event::new(EventType::AGENT_STATUS),
            MissedTicks::Skip,
        )
        .unwrap();
    let mut step = |n: u64| {
        for _ in 0..n {
            clock.advance(Duration::from_millis(1));
            drain(&mut shards);
        }
        // A stall: catch up (every) and skip (cron).
        clock.advance(Duration::from_millis(2_500));
        drain(&mut shards);
    };
    step(1_000);
    let (e0, c0) = (every.stats(), cron.stats());
    let allocations = allocations_during(|| step(3_000));
    assert_eq!(
        allocations,
        0,
        "allocations while firing (first sizes {:?})",
        first_sizes()
    );
    let (e1, c1) = (every.stats(), cron.stats());
    assert_eq!(e1.fired - e0.fired, 3_000 + 2_500);
    assert!(
        c1.fired - c0.fired >= 3 && c1.skipped > c0.skipped,
        "{c1:?}"
    );
}
