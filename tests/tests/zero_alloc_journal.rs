//! Zero allocation on the journal's append path, under `Os` and under `Batch` (whose
//! syncs fall inside the window): 100,000 appends after warm-up, counted by the shared
//! counting allocator. One `#[test]`, so nothing else in this binary allocates inside a
//! measured window. Segments are large enough that no rollover (which creates a file)
//! happens in the window.

use std::time::Duration;

use dreamnet_bus::journal::{Durability, Journal, JournalConfig};
use dreamnet_bus::{Event, EventType, Priority};

mod alloc_counter;
use alloc_counter::{allocations_during, first_sizes};

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
}
