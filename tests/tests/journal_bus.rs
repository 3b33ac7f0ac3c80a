//! The journal wired into the bus (`BusBuilder::journal`), through the public API only:
//! every event a shard drains is journaled before a handler sees it, durability at the
//! bus level, an append failure dead-letters (never a silent drop), and replay into a
//! bus (original ids, the replayed mark, filters, one-subscription target, the policy).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dreamnet_bus::journal::{
    Durability, JournalConfig, JournalReader, Pacing, Selection, APPEND_FAILED,
};
use dreamnet_bus::{
    AgentPolicy, Bus, DeadReason, Event, EventType, Filter, Outcome, Policy, ReplayError,
    ReplayTarget, Shard,
};

mod common;
use common::drain_all as drain;

fn dir(tag: &str) -> PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("journal-bus-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// All ids in a journal directory, in journal order.
fn journaled_ids(dir: &std::path::Path) -> Vec<u64> {
    let reader: JournalReader = JournalReader::open(dir).expect("reader");
    reader
        .records(&Selection::all())
        .map(|r| r.expect("record").event().header().id())
        .collect()
}

#[test]
fn a_handler_only_ever_sees_events_already_in_its_shards_journal() {
    let root = dir("before");
    let config = JournalConfig::new(&root).segment_records(64);
    let (bus, mut shards) = Bus::builder()
        .shards(2)
        .journal(config.clone())
        .build_polled()
        .expect("bus");
    assert!(bus.is_journaled());
    let agent = bus.register_agent("a").expect("agent");
    let seen = Arc::new(Mutex::new(Vec::new()));
    for shard in 0..2 {
        // A reader opened now tails the live writer through its own map.
        let reader: Mutex<JournalReader> =
            Mutex::new(JournalReader::open(config.shard_dir(shard)).expect("reader"));
        let seen = Arc::clone(&seen);
        bus.subscribe(
            dreamnet_bus::Subscription::new(Filter::any()).on_shard(shard),
            move |d| {
                let mut r = reader.lock().unwrap();
                r.refresh().expect("refresh");
                let id = d.header().id();
                let found = r
                    .records(&Selection::all())
                    .any(|rec| rec.expect("record").event().header().id() == id);
                seen.lock().unwrap().push((shard, id, found));
                Outcome::Done
            },
        )
        .expect("subscribe");
    }
    let mut publisher = bus.publisher(agent).expect("publisher");
    let mut ids = Vec::new();
    for i in 0..150u64 {
        let e = Event::new(EventType::AGENT_TASK).with_correlation_id(i);
        ids.push(publisher.try_publish(e).expect("publish").id);
        if i % 40 == 0 {
            drain(&mut shards);
        }
    }
    drain(&mut shards);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 300, "both shards deliver every event");
    assert!(
        seen.iter().all(|&(_, _, found)| found),
        "a handler saw an event not yet journaled"
    );
    for shard in 0..2 {
        assert_eq!(
            journaled_ids(&config.shard_dir(shard)),
            ids,
            "shard {shard}"
        );
    }
    let stats = bus.journal_stats();
    assert_eq!(stats.len(), 2);
    for s in &stats {
        assert_eq!((s.journaled, s.last_seq, s.append_failed), (150, 150, 0));
        assert_eq!(s.durable_seq, 150, "Os: journaled is durable");
    }
    assert_eq!(bus.durable_seq(0), Some(150));
    assert_eq!(bus.durable_seq(2), None);
    drop((publisher, shards, bus));
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn wait_durable_under_batch_returns_once_an_idle_shard_synced() {
    let root = dir("batch");
    let bus = Bus::builder()
        .shards(2)
        .journal(JournalConfig::new(&root).durability(Durability::Batch {
            every_events: 1_000_000,
            every: Duration::from_millis(20),
        }))
        .build()
        .expect("bus");
    let agent = bus.register_agent("a").expect("agent");
    bus.subscribe(Filter::any(), |_| Outcome::Done)
        .expect("sub");
    let mut publisher = bus.publisher(agent).expect("publisher");
    for _ in 0..1_000 {
        publisher
            .publish(Event::new(EventType::AGENT_TASK))
            .expect("publish");
    }
    // Far fewer than `every_events`: only the time limit, checked on idle polls, syncs.
    bus.wait_durable(Duration::from_secs(10))
        .expect("durable in time");
    let durable: u64 = (0..2).map(|s| bus.durable_seq(s).unwrap()).sum();
    assert_eq!(
        durable, 1_000,
        "the subscription's shard journals all 1,000"
    );
    bus.close();
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn wait_durable_times_out_while_nobody_drains() {
    let root = dir("timeout");
    let (bus, mut shards) = Bus::builder()
        .journal(JournalConfig::new(&root))
        .build_polled()
        .expect("bus");
    bus.subscribe(Filter::any(), |_| Outcome::Done)
        .expect("sub");
    let mut publisher = bus.publisher(bus.register_agent("a").unwrap()).unwrap();
    publisher
        .try_publish(Event::new(EventType::AGENT_TASK))
        .unwrap();
    assert!(bus.wait_durable(Duration::from_millis(20)).is_err());
    drain(&mut shards);
    bus.wait_durable(Duration::from_millis(20))
        .expect("drained");
    drop((publisher, shards, bus));
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn an_append_failure_dead_letters_the_event_and_is_counted_never_delivered() {
    let root = dir("fail");
    let config = JournalConfig::new(&root).segment_records(8);
    let (bus, mut shards) = Bus::builder()
        .journal(config.clone())
        .dead_letters(1024, dreamnet_bus::FullPolicy::RejectNew)
        .build_polled()
        .expect("bus");
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let d2 = Arc::clone(&delivered);
    bus.subscribe(Filter::any(), move |d| {
        d2.lock().unwrap().push(d.header().id());
        Outcome::Done
    })
    .expect("sub");
    let mut publisher = bus.publisher(bus.register_agent("a").unwrap()).unwrap();
    for _ in 0..4 {
        publisher
            .try_publish(Event::new(EventType::AGENT_TASK))
            .unwrap();
    }
    drain(&mut shards);
    // The journal's directory disappears: the next segments cannot be created (a real
    // I/O error, as a full disk gives at segment creation).
    std::fs::remove_dir_all(&root).expect("remove");
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(
            publisher
                .try_publish(Event::new(EventType::AGENT_TASK))
                .unwrap()
                .id,
        );
    }
    drain(&mut shards);
    let stats = &bus.journal_stats()[0];
    assert!(stats.append_failed > 0, "{stats:?}");
    assert!(stats.last_error.is_some());
    let delivered = delivered.lock().unwrap().clone();
    let mut letters: Vec<u64> = Vec::new();
    bus.dead_letters().inspect(|l| {
        assert_eq!(
            l.reason,
            DeadReason::Failed {
                code: APPEND_FAILED
            }
        );
        letters.push(l.event.header().id());
    });
    assert_eq!(letters.len() as u64, stats.append_failed);
    assert_eq!(delivered.len() as u64, 4 + 40 - stats.append_failed);
    assert_eq!(
        stats.journaled,
        delivered.len() as u64,
        "delivered == journaled"
    );
    // Every event is accounted for once: delivered (journaled) or dead-lettered.
    let mut all: BTreeSet<u64> = delivered[4..].iter().copied().collect();
    all.extend(letters.iter().copied());
    assert_eq!(all, ids.into_iter().collect::<BTreeSet<_>>());
    drop((publisher, shards, bus));
}

/// Records a journal: 3 event types x 4 correlations, 60 events.
fn record(root: &std::path::Path) -> (Vec<Event>, EventType) {
    let (bus, mut shards) = Bus::builder()
        .journal(JournalConfig::new(root).segment_records(16))
        .build_polled()
        .expect("bus");
    let agent = bus.register_agent("recorder").unwrap();
    bus.register_agent("listener").unwrap();
    let custom = bus.register_event_type("custom").unwrap();
    bus.subscribe(Filter::any(), |_| Outcome::Done).unwrap();
    let mut publisher = bus.publisher(agent).unwrap();
    let types = [EventType::AGENT_TASK, EventType::AGENT_STATUS, custom];
    for i in 0..60u64 {
        let e = Event::new(types[i as usize % 3])
            .with_correlation_id(i % 4 + 1)
            .with_payload(&i)
            .unwrap();
        publisher.try_publish(e).unwrap();
    }
    drain(&mut shards);
    bus.close();
    drain(&mut shards);
    drop((publisher, shards, bus));
    let reader: JournalReader = JournalReader::open(JournalConfig::new(root).shard_dir(0)).unwrap();
    let events = reader
        .records(&Selection::all())
        .map(|r| r.unwrap().event().clone())
        .collect();
    (events, custom)
}

type Seen = Arc<Mutex<Vec<(u64, u64, bool, u32)>>>;

/// A second bus with the same names, and a subscription recording (id, correlation,
/// replayed, source).
fn second_bus(filter: Filter) -> (Bus, Vec<Shard>, Seen, dreamnet_bus::SubscriptionId) {
    let (bus, shards) = Bus::builder().shards(2).build_polled().expect("bus");
    bus.register_agent("recorder").unwrap();
    bus.register_agent("listener").unwrap();
    bus.register_event_type("custom").unwrap();
    let seen: Seen = Arc::default();
    let s = Arc::clone(&seen);
    let id = bus
        .subscribe(filter, move |d| {
            let h = d.header();
            s.lock().unwrap().push((
                h.id(),
                h.correlation_id(),
                h.is_replayed(),
                h.source().raw(),
            ));
            Outcome::Done
        })
        .unwrap();
    (bus, shards, seen, id)
}

#[test]
fn replay_into_a_second_bus_keeps_ids_and_marks_events_replayed() {
    let root = dir("replay");
    let (recorded, custom) = record(&root);
    assert_eq!(recorded.len(), 60);
    let open = || JournalReader::open(JournalConfig::new(&root).shard_dir(0)).unwrap();

    // Everything, to every matching subscription.
    let (bus, mut shards, seen, _) = second_bus(Filter::any());
    let report = bus
        .replayer(open())
        .replay(&Selection::all(), Pacing::Instant, ReplayTarget::Matching)
        .expect("replay");
    assert_eq!(
        (report.selected, report.replayed, report.unroutable),
        (60, 60, 0)
    );
    drain(&mut shards);
    let got = seen.lock().unwrap().clone();
    let want: Vec<(u64, u64, bool, u32)> = recorded
        .iter()
        .map(|e| {
            let h = e.header();
            (h.id(), h.correlation_id(), true, h.source().raw())
        })
        .collect();
    assert_eq!(
        got, want,
        "same ids, same order, marked replayed, same source"
    );

    // Filtered by type and correlation, against a model of the recorded events.
    seen.lock().unwrap().clear();
    let sel = Selection::all().of_type(custom).correlation(3);
    let report = bus
        .replayer(open())
        .replay(&sel, Pacing::Instant, ReplayTarget::Matching)
        .unwrap();
    drain(&mut shards);
    let model: Vec<u64> = recorded
        .iter()
        .filter(|e| e.header().event_type() == custom && e.header().correlation_id() == 3)
        .map(|e| e.header().id())
        .collect();
    assert!(!model.is_empty());
    assert_eq!(report.replayed, model.len() as u64);
    let got: Vec<u64> = seen.lock().unwrap().iter().map(|s| s.0).collect();
    assert_eq!(got, model);
    bus.close();
    drain(&mut shards);
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn replay_to_one_subscription_reaches_it_alone_and_paces_original_gaps() {
    let root = dir("one-sub");
    let (recorded, _) = record(&root);
    // The target listens for a type that never occurs; another subscription would match.
    let (bus, mut shards, seen, target) = second_bus(Filter::of_type(EventType::AGENT_ERROR));
    let others = Arc::new(Mutex::new(0u32));
    let o = Arc::clone(&others);
    bus.subscribe(Filter::any(), move |_| {
        *o.lock().unwrap() += 1;
        Outcome::Done
    })
    .unwrap();
    let reader = JournalReader::open(JournalConfig::new(&root).shard_dir(0)).unwrap();
    let t0 = std::time::Instant::now();
    let report = bus
        .replayer(reader)
        .replay(
            &Selection::all().seqs(1..=10),
            Pacing::Original {
                speed: 1.0,
                max_gap: Duration::from_millis(5),
            },
            ReplayTarget::Subscription(target),
        )
        .unwrap();
    assert_eq!(report.replayed, 10);
    assert!(t0.elapsed() < Duration::from_secs(5));
    drain(&mut shards);
    let got: Vec<u64> = seen.lock().unwrap().iter().map(|s| s.0).collect();
    let want: Vec<u64> = recorded[..10].iter().map(|e| e.header().id()).collect();
    assert_eq!(got, want);
    assert_eq!(*others.lock().unwrap(), 0, "only the chosen subscription");
    bus.close();
    drain(&mut shards);
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn replay_is_checked_like_a_publish_by_the_original_source() {
    let root = dir("policy");
    let (recorded, custom) = record(&root);
    let open = || JournalReader::open(JournalConfig::new(&root).shard_dir(0)).unwrap();

    // A bus that does not know the journal's custom type: a typed error at that record.
    let (bus, mut shards) = Bus::builder().build_polled().unwrap();
    bus.register_agent("recorder").unwrap();
    bus.register_agent("listener").unwrap();
    bus.subscribe(Filter::any(), |_| Outcome::Done).unwrap();
    match bus
        .replayer(open())
        .replay(&Selection::all(), Pacing::Instant, ReplayTarget::Matching)
    {
        Err(ReplayError::UnknownId {
            seq, what, done, ..
        }) => {
            assert_eq!((seq, what, done.replayed), (3, "event type", 2));
        }
        other => panic!("expected UnknownId, got {other:?}"),
    }
    drain(&mut shards);
    drop((shards, bus));

    // A policy that lets the recorder publish tasks only: the replay stops at the first
    // status event, which the recorder may not publish here.
    let (bus, mut shards, seen, _) = second_bus(Filter::any());
    let recorder = bus.agent("recorder").unwrap();
    bus.set_policy(Policy::allow_by_default().agent(
        recorder,
        AgentPolicy::new().may_publish([EventType::AGENT_TASK]),
    ))
    .unwrap();
    let err = bus
        .replayer(open())
        .replay(&Selection::all(), Pacing::Instant, ReplayTarget::Matching)
        .unwrap_err();
    match err {
        ReplayError::Policy {
            seq, event, done, ..
        } => {
            assert_eq!(seq, 2);
            assert_eq!(event.header().id(), recorded[1].header().id());
            assert_eq!(done.replayed, 1);
        }
        other => panic!("expected a policy refusal, got {other:?}"),
    }
    drain(&mut shards);
    assert_eq!(seen.lock().unwrap().len(), 1);
    let _ = custom;
    bus.close();
    drain(&mut shards);
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn a_live_publish_cannot_forge_the_replayed_mark() {
    let root = dir("forge");
    let (recorded, _) = record(&root);
    let (bus, mut shards, seen, _) = second_bus(Filter::any());
    let mut publisher = bus.publisher(bus.agent("listener").unwrap()).unwrap();
    // Bytes of a replayed event (from_bytes accepts the flag: a journal may hold one).
    let mut forged = recorded[0].clone();
    let replayed_bytes = {
        let mut b = *forged.as_bytes();
        b[53] |= 1 << 3; // the header's flags byte
        b
    };
    forged = Event::from_bytes(&replayed_bytes).expect("valid bytes");
    assert!(forged.header().is_replayed());
    publisher.try_publish(forged).unwrap();
    drain(&mut shards);
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(!got[0].2, "a live publish is never marked replayed");
    assert_eq!(
        got[0].3,
        bus.agent("listener").unwrap().raw(),
        "source stamped"
    );
    bus.close();
    drain(&mut shards);
    std::fs::remove_dir_all(&root).ok();
}
