//! Live analytics through the public API: counts per type, per source and per
//! subscription against a model of what was published, latency histograms per priority
//! with a hand-moved clock (exact values), rates between snapshots, and a bus without
//! analytics.

use std::time::Duration;

use dreamnet_bus::analytics::RatesError;
use dreamnet_bus::{Bus, Event, EventType, Filter, ManualClock, Outcome, Priority};
use proptest::prelude::*;

#[test]
fn a_bus_without_analytics_has_none() {
    let (bus, _shards) = Bus::builder().build_polled().unwrap();
    assert!(bus.analytics().is_none());
}

#[test]
fn latency_is_the_wait_from_publish_to_dispatch_per_priority() {
    let clock = ManualClock::new();
    let (bus, mut shards) = Bus::builder()
        .manual_clock(clock.clone())
        .analytics(true)
        .build_polled()
        .unwrap();
    let agent = bus.register_agent("timed").unwrap();
    bus.subscribe(Filter::any(), |_| Outcome::Done).unwrap();
    let mut publisher = bus.publisher(agent).unwrap();
    publisher
        .try_publish(Event::new(EventType::AGENT_TASK).with_priority(Priority::Critical))
        .unwrap();
    clock.advance(Duration::from_micros(300));
    publisher
        .try_publish(Event::new(EventType::AGENT_TASK).with_priority(Priority::Low))
        .unwrap();
    clock.advance(Duration::from_micros(700));
    // Now: the critical event waited 1 ms, the low one 700 us.
    assert_eq!(shards[0].drain(), 2);
    let s = bus.analytics().unwrap();
    let critical = s.latency_of(Priority::Critical);
    let low = s.latency_of(Priority::Low);
    assert_eq!((critical.count(), low.count()), (1, 1));
    // Two significant digits: within 1 %.
    assert!(
        critical.max_ns().abs_diff(1_000_000) <= 10_000,
        "{}",
        critical.max_ns()
    );
    assert!(
        low.quantile_ns(0.5).abs_diff(700_000) <= 7_000,
        "{}",
        low.quantile_ns(0.5)
    );
    assert_eq!(s.latency_of(Priority::Normal).count(), 0);
    assert_eq!(s.at_ns, 1_000_000);
}

#[test]
fn rates_come_from_two_snapshots_or_since_the_start() {
    let clock = ManualClock::new();
    let (bus, mut shards) = Bus::builder()
        .manual_clock(clock.clone())
        .analytics(true)
        .build_polled()
        .unwrap();
    let agent = bus.register_agent("rated").unwrap();
    let sub = bus.subscribe(Filter::any(), |_| Outcome::Done).unwrap();
    let mut publisher = bus.publisher(agent).unwrap();
    clock.advance(Duration::from_secs(1));
    for _ in 0..10 {
        publisher
            .try_publish(Event::new(EventType::AGENT_TASK))
            .unwrap();
    }
    shards[0].drain();
    let first = bus.analytics().unwrap();
    let since_start = first.rates();
    assert_eq!(since_start.over_ns, 1_000_000_000);
    assert!((since_start.total - 10.0).abs() < 1e-9);
    clock.advance(Duration::from_millis(500));
    for _ in 0..20 {
        publisher
            .try_publish(Event::new(EventType::AGENT_STATUS))
            .unwrap();
    }
    shards[0].drain();
    let second = bus.analytics().unwrap();
    let r = second.rates_since(&first).unwrap();
    assert_eq!(r.over_ns, 500_000_000);
    assert!((r.total - 40.0).abs() < 1e-9, "{}", r.total);
    let rate = |ty| r.by_type.iter().find(|(t, _)| *t == ty).unwrap().1;
    assert!((rate(EventType::AGENT_TASK) - 0.0).abs() < 1e-9);
    assert!((rate(EventType::AGENT_STATUS) - 40.0).abs() < 1e-9);
    assert_eq!(r.by_source, vec![(agent, 40.0)]);
    assert_eq!(r.by_subscription, vec![(sub, 40.0)]);
    assert_eq!(
        first.rates_since(&second),
        Err(RatesError::NotEarlier {
            earlier_ns: second.at_ns,
            later_ns: first.at_ns
        })
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Counts per type, per source and per subscription equal a model of what was
    /// published, with events fanned out over up to three shards.
    #[test]
    fn counts_match_a_model(
        shards_n in 1usize..=3,
        events in proptest::collection::vec((0usize..3, 0usize..4, 0usize..4), 0..200),
    ) {
        let (bus, mut shards) = Bus::builder()
            .shards(shards_n)
            .analytics(true)
            .build_polled()
            .unwrap();
        let agents = [
            bus.register_agent("p0").unwrap(),
            bus.register_agent("p1").unwrap(),
            bus.register_agent("p2").unwrap(),
        ];
        let custom = bus.register_event_type("custom").unwrap();
        let types = [EventType::AGENT_TASK, EventType::AGENT_STATUS, EventType::SYSTEM_EVENT, custom];
        // One catch-all subscription per shard, plus one for tasks only on shard 0.
        let mut subs = Vec::new();
        for s in 0..shards_n {
            subs.push(bus.subscribe(dreamnet_bus::Subscription::new(Filter::any()).on_shard(s), |_| Outcome::Done).unwrap());
        }
        let tasks = bus
            .subscribe(dreamnet_bus::Subscription::new(Filter::of_type(EventType::AGENT_TASK)).on_shard(0), |_| Outcome::Done)
            .unwrap();
        let mut publishers: Vec<_> = agents.iter().map(|a| bus.publisher(*a).unwrap()).collect();
        for &(a, t, p) in &events {
            let e = Event::new(types[t]).with_priority(Priority::ALL[p]);
            publishers[a].try_publish(e).unwrap();
            if bus.stats().queued() > 500 {
                for s in shards.iter_mut() { s.drain(); }
            }
        }
        for s in shards.iter_mut() { s.drain(); }
        let snap = bus.analytics().unwrap();
        let k = shards_n as u64; // every event reaches every shard
        for (i, ty) in types.iter().enumerate() {
            let n = events.iter().filter(|e| e.1 == i).count() as u64;
            prop_assert_eq!(snap.count_of_type(*ty), n * k);
        }
        for (i, a) in agents.iter().enumerate() {
            let n = events.iter().filter(|e| e.0 == i).count() as u64;
            prop_assert_eq!(snap.count_of_source(*a), n * k);
        }
        for (i, p) in Priority::ALL.iter().enumerate() {
            let n = events.iter().filter(|e| e.2 == i).count() as u64;
            prop_assert_eq!(snap.latency_of(*p).count(), n * k);
        }
        let n_tasks = events.iter().filter(|e| e.1 == 0).count() as u64;
        for s in &snap.by_subscription {
            let want = if s.id == tasks { n_tasks } else { events.len() as u64 };
            prop_assert!(subs.contains(&s.id) || s.id == tasks);
            prop_assert_eq!(s.stats.attempts, want);
        }
        prop_assert_eq!(snap.by_subscription.len(), shards_n + 1);
        prop_assert!(snap.by_type.iter().all(|t| t.count > 0));
        let custom_name = snap.by_type.iter().find(|t| t.event_type == custom).map(|t| t.name.clone());
        prop_assert!(custom_name.is_none() || custom_name.as_deref() == Some("custom"));
    }
}

/// A handler may take a snapshot (the histogram lock is never held across a handler),
/// and worker-mode shards record like polled ones.
#[test]
fn a_handler_can_take_a_snapshot_on_a_worker_bus() {
    use std::sync::{mpsc, Arc, OnceLock};
    let bus = Arc::new(Bus::builder().analytics(true).build().unwrap());
    let agent = bus.register_agent("worker").unwrap();
    let me: Arc<OnceLock<std::sync::Weak<Bus>>> = Arc::default();
    let (tx, rx) = mpsc::channel();
    let handle = Arc::clone(&me);
    bus.subscribe(Filter::any(), move |_| {
        let seen = handle
            .get()
            .and_then(std::sync::Weak::upgrade)
            .and_then(|b| b.analytics())
            .map(|s| s.total());
        let _ = tx.send(seen);
        Outcome::Done
    })
    .unwrap();
    me.set(Arc::downgrade(&bus)).unwrap();
    let mut publisher = bus.publisher(agent).unwrap();
    for _ in 0..3 {
        publisher
            .try_publish(Event::new(EventType::AGENT_TASK))
            .unwrap();
    }
    let mut totals = Vec::new();
    for _ in 0..3 {
        totals.push(rx.recv_timeout(Duration::from_secs(10)).unwrap());
    }
    // Each handler ran after its event (and maybe later ones of its chunk) was counted.
    assert!(
        totals
            .iter()
            .all(|t| t.is_some_and(|n| (1..=3).contains(&n))),
        "{totals:?}"
    );
    assert!(bus.wait_idle(Duration::from_secs(10)));
    let s = bus.analytics().unwrap();
    assert_eq!(s.count_of_source(agent), 3);
    drop(publisher);
    bus.close();
}
