//! Zero allocation on the journal's append path, under `Os` and under `Batch` (whose
//! syncs fall inside the window): 100,000 appends after warm-up, counted by the shared
//! counting allocator; then the same with the bus running (`BusBuilder::journal`, two
//! shards in poll mode: publish, journal, route, handle, and idle polls' `sync_if_due`).
//! One `#[test]`, so nothing else in this binary allocates inside a measured window.
//! Segments are large enough that no rollover (which creates a file) happens in the
//! window.

use std::time::Duration;

use dreamnet_bus::journal::{Durability, Journal, JournalConfig};
use dreamnet_bus::{Bus, Event, EventType, Filter, Outcome, Priority, Shard};

mod alloc_counter;
use alloc_counter::{allocations_during, first_sizes};

mod common;
use common::drain_all as drain;

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Reading {
    sensor: u32,
    seq: u64,
}

fn append_window(durability: Durability, tag: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("zero-alloc-journal-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut journal: Journal = Journal::open(
        JournalConfig::new(&dir)
            .segment_records(150_000)
            .durability(durability),
    )
    .expect("open");
    let events: Vec<Event> = (0..64u64)
        .map(|i| {
            Event::new(EventType::AGENT_STATUS)
                .with_priority(Priority::High)
                .with_correlation_id(i)
                .with_payload(&Reading {
                    sensor: i as u32,
                    seq: i,
                })
                .expect("payload fits")
        })
        .collect();
    for i in 0..10_000 {
        journal.append(&events[i % 64]).expect("append");
    }
    // The helper thread preparing the next segment allocates while it works.
    journal.prepare_next().expect("prepare the next segment");
    let mut last = 0;
    let allocations = allocations_during(|| {
        for i in 0..100_000 {
            last = journal.append(&events[i % 64]).expect("append");
        }
        journal.sync_if_due().expect("sync_if_due");
    });
    assert_eq!(last, 110_000);
    assert_eq!(
        allocations,
        0,
        "allocations during 100,000 appends under {durability:?}; first sizes {:?}",
        first_sizes()
    );
    assert!(
        journal.durable_seq() >= 109_001,
        "{}",
        journal.durable_seq()
    );
    drop(journal);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn append_allocates_nothing_after_warm_up() {
    append_window(Durability::Os, "os");
    append_window(
        Durability::Batch {
            every_events: 1_000,
            every: Duration::from_millis(5),
        },
        "batch",
    );
    bus_window(Durability::Os, "bus-os");
    bus_window(
        Durability::Batch {
            every_events: 1_000,
            every: Duration::from_millis(5),
        },
        "bus-batch",
    );
}

/// The bus with a journal per shard: publish, journal each drained chunk, route, handle.
fn bus_window(durability: Durability, tag: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("zero-alloc-journal-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (bus, mut shards) = Bus::builder()
        .shards(2)
        .ring_capacity_all(1024)
        .journal(
            JournalConfig::new(&dir)
                .segment_records(150_000)
                .durability(durability),
        )
        .build_polled()
        .expect("bus");
    let agent = bus.register_agent("journaled").expect("agent");
    let mut sum = 0u64;
    // Fan-out: every event goes to both shards, so both journals append.
    for shard in 0..2 {
        bus.subscribe(
            dreamnet_bus::Subscription::new(Filter::of_type(EventType::AGENT_STATUS))
                .on_shard(shard),
            move |d| {
                sum = sum.wrapping_add(d.header().correlation_id());
                std::hint::black_box(sum);
                Outcome::Done
            },
        )
        .expect("subscribe");
    }
    let mut publisher = bus.publisher(agent).expect("publisher");
    let event = Event::new(EventType::AGENT_STATUS)
        .with_payload(&Reading { sensor: 1, seq: 2 })
        .expect("payload fits");
    let round = |publisher: &mut dreamnet_bus::Publisher, shards: &mut [Shard]| {
        for _ in 0..500 {
            publisher.try_publish(event.clone()).expect("room");
        }
        assert_eq!(drain(shards), 1_000);
    };
    for _ in 0..20 {
        round(&mut publisher, &mut shards);
    }
    // Each journal's helper thread prepares its next segment from open on (it allocates
    // a path and a map); give it time to finish before the window.
    std::thread::sleep(Duration::from_millis(500));
    let allocations = allocations_during(|| {
        for _ in 0..200 {
            round(&mut publisher, &mut shards);
        }
    });
    assert_eq!(
        allocations,
        0,
        "allocations with the journaled bus running under {durability:?}; first sizes {:?}",
        first_sizes()
    );
    let stats = bus.journal_stats();
    assert_eq!(stats[0].journaled, 110_000);
    assert_eq!(stats[1].journaled, 110_000);
    bus.close();
    drain(&mut shards);
    drop((publisher, shards, bus));
    std::fs::remove_dir_all(&dir).expect("clean up");
}
