//! Backpressure and bad input: a full ring hands the same event back, counts match, and
//! every kind of bad input is a typed error, never a panic.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{drain_all, hits, new_log, poll_bus, record, Task};
use dreamnet_bus::{
    Balance, Bus, BusError, ConfigError, DecodeError, Draft, Event, EventType, Filter, NameError,
    Outcome, PayloadError, Priority, PublishError, Shard, Subscription, MAX_NAME_LEN,
};

const NORMAL: usize = Priority::Normal as usize;

fn small_ring_bus(shards: usize) -> (Bus, Vec<Shard>) {
    Bus::builder()
        .shards(shards)
        .ring_capacity_all(8)
        .build_polled()
        .expect("poll bus")
}

fn task(seq: u64) -> Event {
    Event::new(EventType::AGENT_TASK)
        .with_correlation_id(seq)
        .with_payload(&Task {
            publisher: 7,
            seq,
            tag: *b"backpressure-tag",
        })
        .expect("payload fits")
}

#[test]
fn full_ring_hands_the_same_event_back_and_resumes_after_a_drain() {
    let (bus, mut shards) = small_ring_bus(1);
    let agent = bus.register_agent("sender").expect("agent");
    let log = new_log();
    bus.subscribe(Filter::any(), record(&log, 0))
        .expect("subscribe");
    let mut p = bus.publisher(agent).expect("publisher");

    for seq in 0..8 {
        p.try_publish(task(seq)).expect("room for 8");
    }
    assert_eq!(p.free_slots(0, Priority::Normal), 0);
    let refused = task(8);
    let back = match p.try_publish(refused.clone()) {
        Err(PublishError::Full(back)) => back,
        other => panic!("expected Full, got {other:?}"),
    };
    assert_eq!(back, refused, "the very same event comes back, untouched");
    assert_eq!(back.header().correlation_id(), 8);
    let payload = back.payload::<Task>().expect("payload survives");
    assert_eq!(payload.seq.to_native(), 8);
    assert_eq!(&payload.tag, b"backpressure-tag");
    // Other levels have their own rings.
    p.try_publish(task(100).with_priority(Priority::High))
        .expect("the high ring is empty");

    let stats = bus.stats();
    assert_eq!(stats.published, 9);
    assert_eq!(stats.rejected_full, 1);
    assert_eq!(stats.shards[0].rejected_full[NORMAL], 1);
    assert_eq!(stats.shards[0].queued[NORMAL], 8, "the fill level");
    assert_eq!(stats.shards[0].queued[Priority::High.index()], 1);
    // A shard adopts a new publisher's rings at its next poll; until then its own
    // `queued()` does not count them (see the report), so poll zero events first.
    assert_eq!(shards[0].poll(0), 0);
    assert_eq!(
        shards[0].queued()[NORMAL],
        8,
        "the shard sees the same fill level"
    );
    assert_eq!(stats.delivered(), 0);
    assert_eq!(p.stats().rejected_full[Priority::Normal.index()], 1);

    assert_eq!(shards[0].poll(usize::MAX), 9);
    p.try_publish(back).expect("room again after the drain");
    assert_eq!(shards[0].poll(usize::MAX), 1);
    let stats = bus.stats();
    assert_eq!(stats.published, 10);
    assert_eq!(stats.delivered(), 10);
    assert_eq!(stats.queued(), 0);
    assert_eq!(stats.shards[0].dispatched[NORMAL], 9);
    let seqs: Vec<u64> = hits(&log)
        .iter()
        .filter(|h| h.priority == Priority::Normal)
        .map(|h| h.correlation)
        .collect();
    assert_eq!(
        seqs,
        (0..9).collect::<Vec<u64>>(),
        "nothing lost, nothing reordered"
    );
}

#[test]
fn publish_timeout_gives_the_event_back_as_timeout() {
    let (bus, _shards) = small_ring_bus(1);
    let agent = bus.register_agent("sender").expect("agent");
    bus.subscribe(Filter::any(), |_| Outcome::Done)
        .expect("subscribe");
    let mut p = bus.publisher(agent).expect("publisher");
    for seq in 0..8 {
        p.try_publish(task(seq)).expect("room for 8");
    }
    let e = task(42);
    let err = p
        .publish_timeout(e.clone(), Duration::from_millis(20))
        .expect_err("nobody polls, so the ring stays full");
    assert!(err.is_full());
    match err {
        PublishError::Timeout(back) => assert_eq!(back, e),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(bus.stats().published, 8);
}

#[test]
fn blocking_publish_waits_for_the_poller_and_loses_nothing() {
    const N: u64 = 2_000;
    let (bus, mut shards) = small_ring_bus(1);
    let agent = bus.register_agent("sender").expect("agent");
    let seen = Arc::new(AtomicU64::new(0));
    let in_order = Arc::new(AtomicU64::new(0));
    let (s, o) = (Arc::clone(&seen), Arc::clone(&in_order));
    let mut next = 0;
    bus.subscribe(Filter::any(), move |d| {
        if d.header().correlation_id() == next {
            o.fetch_add(1, Ordering::Relaxed);
        }
        next = d.header().correlation_id() + 1;
        s.fetch_add(1, Ordering::Release);
        Outcome::Done
    })
    .expect("subscribe");
    let mut shard = shards.pop().expect("one shard");
    let seen_by_poller = Arc::clone(&seen);
    let poller = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        while seen_by_poller.load(Ordering::Acquire) < N {
            if shard.poll(3) == 0 {
                std::thread::yield_now();
            }
            assert!(start.elapsed() < Duration::from_secs(60), "poller gave up");
        }
    });
    let mut p = bus.publisher(agent).expect("publisher");
    for seq in 0..N {
        p.publish(Event::new(EventType::AGENT_TASK).with_correlation_id(seq))
            .expect("blocking publish succeeds once the poller drains");
    }
    poller.join().expect("poller");
    assert_eq!(seen.load(Ordering::Acquire), N);
    assert_eq!(in_order.load(Ordering::Relaxed), N);
    assert_eq!(bus.stats().published, N);
}

#[test]
fn try_publish_is_all_or_nothing_across_shards() {
    let (bus, mut shards) = small_ring_bus(2);
    let sender = bus.register_agent("sender").expect("agent");
    let openai = bus.register_agent("openai-assistant").expect("agent");
    let log = new_log();
    bus.subscribe(
        Subscription::new(Filter::any()).on_shard(0),
        record(&log, 0),
    )
    .expect("subscribe");
    bus.subscribe(
        Subscription::new(Filter::any())
            .on_shard(1)
            .for_agent(openai),
        record(&log, 1),
    )
    .expect("subscribe");
    let mut p = bus.publisher(sender).expect("publisher");
    // Fill shard 1's ring only, with direct traffic.
    for seq in 0..8 {
        p.try_publish(task(seq).to(openai)).expect("room");
    }
    assert_eq!(p.free_slots(0, Priority::Normal), 8);
    assert_eq!(p.free_slots(1, Priority::Normal), 0);
    assert_eq!(p.free_slots(9, Priority::Normal), 0, "no such shard");
    // A broadcast needs both shards: refused, and shard 0 got nothing.
    let err = p.try_publish(task(8)).expect_err("shard 1 is full");
    assert!(matches!(err, PublishError::Full(ref e) if e.header().correlation_id() == 8));
    assert_eq!(p.free_slots(0, Priority::Normal), 8, "no partial publish");
    let stats = bus.stats();
    assert_eq!(stats.shards[1].rejected_full[NORMAL], 1);
    assert_eq!(stats.shards[0].rejected_full[NORMAL], 0);
    drain_all(&mut shards);
    assert!(hits(&log).iter().all(|h| h.correlation != 8));
    let back = err.into_inner().expect("the event");
    p.try_publish(back).expect("room after the drain");
    drain_all(&mut shards);
    let got: Vec<(usize, u64)> = common::delivery_set(&log)
        .into_iter()
        .filter(|&(_, c)| c == 8)
        .collect();
    assert_eq!(got, vec![(0, 8), (1, 8)]);
}

#[test]
fn batch_publish_publishes_the_prefix_that_fits_then_refuses() {
    let (bus, mut shards) = small_ring_bus(1);
    let agent = bus.register_agent("sender").expect("agent");
    let log = new_log();
    bus.subscribe(Filter::any(), record(&log, 0))
        .expect("subscribe");
    let mut p = bus.publisher(agent).expect("publisher");
    let events: Vec<Event> = (0..10).map(task).collect();
    let receipt = p.try_publish_batch(&events).expect("a prefix fits");
    assert_eq!(receipt.count, 8, "a short count, like Write::write");
    // Nothing more fits: now the refusal is the answer, and nothing was written.
    assert!(matches!(
        p.try_publish_batch(&events[8..]),
        Err(PublishError::Full(()))
    ));
    assert_eq!(bus.stats().rejected_full, 1);
    assert_eq!(drain_all(&mut shards), 8);
    assert_eq!(
        hits(&log).iter().map(|h| h.correlation).collect::<Vec<_>>(),
        (0..8).collect::<Vec<u64>>()
    );
}

#[test]
fn events_nobody_wants_are_counted_unroutable_not_queued() {
    let (bus, _shards) = small_ring_bus(1);
    let agent = bus.register_agent("sender").expect("agent");
    let mut p = bus.publisher(agent).expect("publisher");
    for seq in 0..20 {
        let r = p.try_publish(task(seq)).expect("accepted");
        assert_eq!(r.shards, 0);
    }
    let stats = bus.stats();
    assert_eq!(
        (stats.published, stats.unroutable, stats.queued()),
        (20, 20, 0)
    );
}

#[test]
fn bad_names_are_typed_errors() {
    let (bus, _shards) = poll_bus(1);
    let long = "a".repeat(MAX_NAME_LEN + 1);
    assert_eq!(
        bus.register_agent(""),
        Err(BusError::Name(NameError::Empty))
    );
    assert_eq!(
        bus.register_agent(&long),
        Err(BusError::Name(NameError::TooLong {
            len: MAX_NAME_LEN + 1,
            max: MAX_NAME_LEN
        }))
    );
    assert!(matches!(
        bus.register_event_type("bad name"),
        Err(BusError::Name(NameError::InvalidChar { found: ' ', .. }))
    ));
    assert!(matches!(
        bus.register_meta_key("ключ"),
        Err(BusError::Name(NameError::InvalidChar { found: 'к', .. }))
    ));
    assert!(matches!(
        bus.group("", Subscription::default(), Balance::RoundRobin),
        Err(BusError::Name(NameError::Empty))
    ));
    // The longest allowed name, and interning is idempotent.
    let max = "b".repeat(MAX_NAME_LEN);
    let id = bus.register_agent(&max).expect("64 bytes is allowed");
    assert_eq!(bus.register_agent(&max), Ok(id));
    assert_eq!(bus.agent_name(id).as_deref(), Some(max.as_str()));
    assert_eq!(
        bus.register_event_type("agent.task"),
        Ok(EventType::AGENT_TASK)
    );
}

#[test]
fn ids_from_another_bus_are_typed_errors_with_the_event() {
    let (other, _other_shards) = poll_bus(1);
    for name in ["x", "y", "z"] {
        other.register_agent(name).expect("agent");
    }
    let foreign_agent = other.agent("z").expect("z");
    let foreign_type = other.register_event_type("custom.thing").expect("type");

    let (bus, _shards) = poll_bus(1);
    let agent = bus.register_agent("only").expect("agent");
    bus.subscribe(Filter::any(), |_| Outcome::Done)
        .expect("subscribe");
    assert_eq!(
        bus.publisher(foreign_agent).map(|_| ()),
        Err(BusError::UnknownAgent(foreign_agent.raw()))
    );
    assert_eq!(
        bus.subscribe(Filter::of_type(foreign_type), |_| Outcome::Done),
        Err(BusError::UnknownEventType(foreign_type.raw()))
    );
    assert_eq!(
        bus.subscribe(
            Subscription::new(Filter::any()).for_agent(foreign_agent),
            |_| Outcome::Done
        ),
        Err(BusError::UnknownAgent(foreign_agent.raw()))
    );
    assert_eq!(
        bus.subscribe(Filter::any().from_source(foreign_agent), |_| Outcome::Done),
        Err(BusError::UnknownAgent(foreign_agent.raw()))
    );

    let mut p = bus.publisher(agent).expect("publisher");
    let e = task(1).to_all();
    let foreign = Event::new(foreign_type).with_correlation_id(5);
    match p.try_publish(foreign.clone()) {
        Err(PublishError::UnknownEventType { event, id }) => {
            assert_eq!(id, foreign_type.raw());
            assert_eq!(event, foreign);
        }
        other => panic!("expected UnknownEventType, got {other:?}"),
    }
    let to_foreign = e.clone().to(foreign_agent);
    match p.try_publish(to_foreign.clone()) {
        Err(PublishError::UnknownAgent { event, id }) => {
            assert_eq!(id, foreign_agent.raw());
            assert_eq!(event, to_foreign);
        }
        other => panic!("expected UnknownAgent, got {other:?}"),
    }
    assert!(matches!(
        p.try_publish_with(Draft::new(foreign_type), &7u32),
        Err(PublishError::UnknownEventType { event: (), id }) if id == foreign_type.raw()
    ));
    assert!(matches!(
        p.try_publish_with(Draft::new(EventType::AGENT_TASK).to(foreign_agent), &7u32),
        Err(PublishError::UnknownAgent { event: (), id }) if id == foreign_agent.raw()
    ));
    // Once the other bus's names exist here too, the same event goes through.
    for name in ["x", "y"] {
        bus.register_agent(name).expect("agent");
    }
    p.try_publish(to_foreign).expect("agent id 2 is known now");
    let stats = bus.stats();
    assert_eq!(stats.rejected_invalid, 4);
    assert_eq!(stats.published, 1);
}

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Big {
    bytes: [u8; 400],
}

#[test]
fn oversized_payload_is_too_large_with_sizes_and_publishes_nothing() {
    let capacity = Event::<256>::PAYLOAD_CAPACITY;
    assert_eq!(capacity, 144);
    assert_eq!(
        Event::<256>::new(EventType::AGENT_TASK)
            .with_payload(&Big { bytes: [1; 400] })
            .map(|_| ()),
        Err(PayloadError::TooLarge {
            needed: 400,
            capacity
        })
    );
    let (bus, mut shards) = poll_bus(1);
    let agent = bus.register_agent("sender").expect("agent");
    bus.subscribe(Filter::any(), |_| Outcome::Done)
        .expect("subscribe");
    let mut p = bus.publisher(agent).expect("publisher");
    assert_eq!(
        p.try_publish_with(Draft::new(EventType::AGENT_TASK), &Big { bytes: [2; 400] }),
        Err(PublishError::Payload(PayloadError::TooLarge {
            needed: 400,
            capacity
        }))
    );
    assert_eq!(bus.stats().published, 0);
    assert_eq!(
        shards[0].poll(16),
        0,
        "nothing half-written reached the ring"
    );
    // A payload that fits goes through the same in-place path.
    let r = p
        .try_publish_with(Draft::new(EventType::AGENT_TASK), &[3u8; 144])
        .expect("exactly the capacity fits");
    assert_eq!(r.shards, 1);
    assert_eq!(shards[0].poll(16), 1);
    // Missing and wrong-typed payloads are errors when read, not garbage.
    assert_eq!(
        Event::<256>::new(EventType::AGENT_TASK)
            .payload::<Task>()
            .map(|_| ()),
        Err(PayloadError::Missing)
    );
    assert_eq!(
        Event::<256>::new(EventType::AGENT_TASK)
            .with_payload(&1u8)
            .expect("fits")
            .payload::<Task>()
            .map(|_| ()),
        Err(PayloadError::Invalid)
    );
}

#[test]
fn a_closed_bus_hands_events_back_and_refuses_control_calls() {
    let (bus, mut shards) = poll_bus(1);
    let agent = bus.register_agent("sender").expect("agent");
    let log = new_log();
    bus.subscribe(Filter::any(), record(&log, 0))
        .expect("subscribe");
    let mut p = bus.publisher(agent).expect("publisher");
    for seq in 0..3 {
        p.try_publish(task(seq)).expect("open");
    }
    bus.close();
    assert!(bus.is_closed());
    bus.close(); // idempotent
    let e = task(9);
    assert_eq!(
        p.try_publish(e.clone()),
        Err(PublishError::Closed(e.clone()))
    );
    assert_eq!(p.publish(e.clone()), Err(PublishError::Closed(e.clone())));
    assert_eq!(
        p.try_publish_with(Draft::new(EventType::AGENT_TASK), &1u32),
        Err(PublishError::Closed(()))
    );
    assert_eq!(bus.publisher(agent).map(|_| ()), Err(BusError::Closed));
    assert_eq!(
        bus.subscribe(Filter::any(), |_| Outcome::Done),
        Err(BusError::Closed)
    );
    assert!(matches!(
        bus.group("late", Subscription::default(), Balance::RoundRobin),
        Err(BusError::Closed)
    ));
    // Everything accepted before the close is still delivered (taken shards: on drain).
    assert_eq!(drain_all(&mut shards), 3);
    assert_eq!(hits(&log).len(), 3);
    let stats = bus.stats();
    assert_eq!((stats.published, stats.rejected_closed), (3, 3));
}

#[test]
fn unsubscribing_twice_is_unknown_subscription() {
    let (bus, _shards) = poll_bus(1);
    let id = bus
        .subscribe(Filter::any(), |_| Outcome::Done)
        .expect("subscribe");
    assert!(bus.subscription_stats(id).is_some());
    assert_eq!(bus.unsubscribe(id), Ok(()));
    assert_eq!(bus.unsubscribe(id), Err(BusError::UnknownSubscription(id)));
    assert_eq!(bus.subscription_stats(id), None);
}

#[test]
fn bad_configurations_are_config_errors() {
    let build = |b: dreamnet_bus::BusBuilder| b.build_polled().map(|_| ());
    assert_eq!(
        build(Bus::builder().ring_capacity_all(0)),
        Err(BusError::Config(ConfigError::Zero {
            what: "ring capacity"
        }))
    );
    assert_eq!(
        build(Bus::builder().ring_capacity(Priority::Low, 6)),
        Err(BusError::Config(ConfigError::NotPowerOfTwo {
            what: "ring capacity",
            value: 6
        }))
    );
    assert_eq!(
        build(Bus::builder().shards(0)),
        Err(BusError::Config(ConfigError::Zero { what: "shards" }))
    );
    assert!(matches!(
        build(Bus::builder().shards(65)),
        Err(BusError::Config(ConfigError::TooLarge { value: 65, .. }))
    ));
    assert!(matches!(
        build(Bus::builder().starvation_guard(0)),
        Err(BusError::Config(ConfigError::Zero { .. }))
    ));
    // Worker mode is checked the same way, before any thread starts.
    assert_eq!(
        Bus::builder().shards(0).pinned(true).build().map(|_| ()),
        Err(BusError::Config(ConfigError::Zero { what: "shards" }))
    );
}

#[test]
fn build_polled_returns_every_shard_and_placement_is_checked() {
    let (bus, shards) = poll_bus(2);
    assert_eq!(
        bus.subscribe(Subscription::new(Filter::any()).on_shard(2), |_| {
            Outcome::Done
        }),
        Err(BusError::NoSuchShard {
            index: 2,
            shards: 2
        })
    );
    assert!(matches!(
        bus.group(
            "far",
            Subscription::new(Filter::any()).on_shard(7),
            Balance::LeastLoaded
        ),
        Err(BusError::NoSuchShard { index: 7, .. })
    ));
    assert_eq!(shards.len(), 2);
    assert_eq!(shards[1].index(), 1);
    let workers = Bus::builder().pinned(false).build().expect("worker bus");
    // A group id from another bus is unknown here.
    let g = bus
        .group("g1", Subscription::default(), Balance::RoundRobin)
        .expect("group");
    bus.group("g2", Subscription::default(), Balance::RoundRobin)
        .expect("group");
    let second = bus
        .group("g3", Subscription::default(), Balance::RoundRobin)
        .expect("group");
    assert!(bus.join(g, |_| Outcome::Done).is_ok());
    assert!(matches!(
        workers.join(second, |_| Outcome::Done),
        Err(BusError::UnknownGroup(2))
    ));
}

#[test]
fn from_bytes_rejects_bad_bytes_with_decode_errors() {
    let good = task(3).with_priority(Priority::High);
    let decoded = Event::<256>::from_bytes(good.as_bytes()).expect("a good slot decodes");
    let (d, g) = (decoded.header(), good.header());
    assert_eq!(d.priority(), Priority::High);
    assert_eq!(d.correlation_id(), g.correlation_id());
    assert_eq!(d.event_type(), g.event_type());
    assert_eq!(decoded.payload_bytes(), good.payload_bytes());
    let t = decoded
        .payload::<Task>()
        .expect("validated payload reads back");
    assert_eq!(t.seq.to_native(), 3);

    assert_eq!(
        Event::<256>::from_bytes(&good.as_bytes()[..100]).map(|_| ()),
        Err(DecodeError::WrongLength {
            len: 100,
            expected: 256
        })
    );
    // Find the priority byte without knowing the layout: the one byte that differs
    // between two events that differ only in priority.
    let low = Event::<256>::new(EventType::AGENT_TASK).with_priority(Priority::Low);
    let critical = Event::<256>::new(EventType::AGENT_TASK).with_priority(Priority::Critical);
    let diff: Vec<usize> = (0..256)
        .filter(|&i| low.as_bytes()[i] != critical.as_bytes()[i])
        .collect();
    assert_eq!(diff.len(), 1);
    let mut bytes = *low.as_bytes();
    bytes[diff[0]] = 9;
    assert_eq!(
        Event::<256>::from_bytes(&bytes).map(|_| ()),
        Err(DecodeError::BadPriority(9))
    );
    // Arbitrary bytes: always an answer, never a panic.
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut refused = 0;
    for _ in 0..2_000 {
        let mut bytes = *good.as_bytes();
        for _ in 0..4 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            bytes[(rng % 96) as usize] = (rng >> 32) as u8;
        }
        match Event::<256>::from_bytes(&bytes) {
            Ok(e) => {
                let _ = e.payload::<Task>();
            }
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 0, "some corrupted headers must be refused");
}
