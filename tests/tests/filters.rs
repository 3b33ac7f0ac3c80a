//! Advanced filters end to end through the public API: expression filters, wildcards that
//! see types registered later, combinators over metadata and payload, on plain
//! subscriptions, taps and load-balanced groups.

mod common;

use common::{delivery_set, drain_all, new_log, poll_bus, record, Task};
use dreamnet_bus::{Balance, Cmp, Event, EventType, Filter, FilterError, Outcome, Priority};

#[test]
fn an_expression_subscription_sees_exactly_what_it_says() {
    let (bus, mut shards) = poll_bus(2);
    let lucid = bus.register_agent("dreamnet-lucid").expect("agent");
    let other = bus.register_agent("other").expect("agent");
    let tenant = bus.register_meta_key("tenant").expect("key");
    let log = new_log();
    let f = Filter::parse(
        &bus,
        r#"type == "agent.task" && priority >= high && meta.tenant == 7 && source != "other""#,
    )
    .expect("parses");
    bus.subscribe(f, record(&log, 0)).expect("subscribe");
    let mut p = bus.publisher(lucid).expect("publisher");
    let mut q = bus.publisher(other).expect("publisher");
    let ev = |c: u64, ty: EventType, prio: Priority, t: Option<u64>| {
        let e = Event::new(ty).with_correlation_id(c).with_priority(prio);
        match t {
            Some(v) => e.with_metadata(tenant, v).expect("room"),
            None => e,
        }
    };
    p.try_publish(ev(1, EventType::AGENT_TASK, Priority::High, Some(7)))
        .expect("publish");
    p.try_publish(ev(2, EventType::AGENT_TASK, Priority::Critical, Some(7)))
        .expect("publish");
    p.try_publish(ev(3, EventType::AGENT_TASK, Priority::Normal, Some(7)))
        .expect("publish");
    p.try_publish(ev(4, EventType::AGENT_TASK, Priority::High, Some(8)))
        .expect("publish");
    p.try_publish(ev(5, EventType::AGENT_TASK, Priority::High, None))
        .expect("publish");
    p.try_publish(ev(6, EventType::AGENT_STATUS, Priority::High, Some(7)))
        .expect("publish");
    q.try_publish(ev(7, EventType::AGENT_TASK, Priority::High, Some(7)))
        .expect("publish");
    drain_all(&mut shards);
    assert_eq!(delivery_set(&log), vec![(0, 1), (0, 2)]);
}

#[test]
fn wildcard_subscriptions_see_types_registered_after_they_subscribed() {
    let (bus, mut shards) = poll_bus(1);
    let me = bus.register_agent("me").expect("agent");
    let log = new_log();
    bus.subscribe(
        Filter::wildcard(&bus, "plugin.*").expect("pattern"),
        record(&log, 0),
    )
    .expect("subscribe");
    bus.subscribe(
        Filter::parse(&bus, r#"type in ["plugin.>", "agent.status"]"#).expect("parses"),
        record(&log, 1),
    )
    .expect("subscribe");
    // Registered after both subscribed.
    let audio = bus.register_event_type("plugin.audio").expect("type");
    let fx = bus.register_event_type("plugin.audio.fx").expect("type");
    let other = bus.register_event_type("plugins.audio").expect("type");
    let mut p = bus.publisher(me).expect("publisher");
    for (c, ty) in [
        (1, audio),
        (2, fx),
        (3, other),
        (4, EventType::AGENT_STATUS),
    ] {
        p.try_publish(Event::new(ty).with_correlation_id(c))
            .expect("publish");
    }
    drain_all(&mut shards);
    assert_eq!(delivery_set(&log), vec![(0, 1), (1, 1), (1, 2), (1, 4)]);
}

#[test]
fn combinators_over_metadata_payload_and_negation() {
    let (bus, mut shards) = poll_bus(1);
    let me = bus.register_agent("me").expect("agent");
    let zone = bus.register_meta_key("zone").expect("key");
    let log = new_log();
    // Tasks with seq > 10 in zone 3, or anything that is not a task nor a status event.
    let big_in_zone_3 = Filter::of_type(EventType::AGENT_TASK)
        .and(Filter::meta(zone, Cmp::Eq, 3))
        .and(Filter::payload::<Task>(|t| t.seq > 10));
    let neither = !Filter::of_types(&[EventType::AGENT_TASK, EventType::AGENT_STATUS]);
    bus.subscribe(big_in_zone_3.or(neither), record(&log, 0))
        .expect("subscribe");
    let mut p = bus.publisher(me).expect("publisher");
    let task = |c: u64, seq: u64, z: u64| {
        Event::new(EventType::AGENT_TASK)
            .with_correlation_id(c)
            .with_metadata(zone, z)
            .expect("room")
            .with_payload(&Task {
                publisher: 0,
                seq,
                tag: [0; 16],
            })
            .expect("fits")
    };
    p.try_publish(task(1, 11, 3)).expect("publish");
    p.try_publish(task(2, 10, 3)).expect("publish");
    p.try_publish(task(3, 11, 4)).expect("publish");
    // A task without payload: the payload test fails, nothing is read.
    p.try_publish(
        Event::new(EventType::AGENT_TASK)
            .with_correlation_id(4)
            .with_metadata(zone, 3)
            .expect("room"),
    )
    .expect("publish");
    p.try_publish(Event::new(EventType::AGENT_STATUS).with_correlation_id(5))
        .expect("publish");
    p.try_publish(Event::new(EventType::SYSTEM_HEALTH).with_correlation_id(6))
        .expect("publish");
    drain_all(&mut shards);
    assert_eq!(delivery_set(&log), vec![(0, 1), (0, 6)]);
}

#[test]
fn destination_expressions_tap_direct_traffic_and_groups_take_expressions() {
    let (bus, mut shards) = poll_bus(1);
    let me = bus.register_agent("me").expect("agent");
    let helper = bus.register_agent("helper").expect("agent");
    let log = new_log();
    // A top-level `destination == "helper"` makes the filter a tap on helper's traffic.
    bus.subscribe(
        Filter::parse(&bus, r#"destination == "helper" && priority == critical"#).expect("parses"),
        record(&log, 0),
    )
    .expect("subscribe");
    let group = bus
        .group(
            "workers",
            Filter::parse(&bus, "priority <= normal").expect("parses"),
            Balance::RoundRobin,
        )
        .expect("group");
    let counts = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    for _ in 0..2 {
        let counts = std::sync::Arc::clone(&counts);
        bus.join(group, move |_| {
            counts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Outcome::Done
        })
        .expect("join");
    }
    let mut p = bus.publisher(me).expect("publisher");
    let ev = |c: u64, prio: Priority| {
        Event::new(EventType::AGENT_TASK)
            .with_correlation_id(c)
            .with_priority(prio)
    };
    p.try_publish(ev(1, Priority::Critical).to(helper))
        .expect("publish");
    p.try_publish(ev(2, Priority::High).to(helper))
        .expect("publish");
    p.try_publish(ev(3, Priority::Critical)).expect("publish");
    p.try_publish(ev(4, Priority::Normal)).expect("publish");
    p.try_publish(ev(5, Priority::Low)).expect("publish");
    drain_all(&mut shards);
    assert_eq!(delivery_set(&log), vec![(0, 1)]);
    assert_eq!(
        counts.load(std::sync::atomic::Ordering::Relaxed),
        2,
        "normal and low, one member each"
    );
}

#[test]
fn bad_expressions_are_typed_errors_with_positions() {
    let (bus, _shards) = poll_bus(1);
    let cases: [(&str, usize); 6] = [
        (r#"type == "agent.task" &&"#, 23),
        (r#"type == "agent.task" & priority"#, 22),
        (r#"priority >= urgent"#, 12),
        (r#"type == "agent.tsak""#, 8),
        (r#"type == "agent.>.x""#, 15),
        (r#"meta.tenant == 7"#, 5),
    ];
    for (text, position) in cases {
        let err = Filter::parse(&bus, text).expect_err(text);
        assert_eq!(err.position(), position, "{text}: {err}");
    }
    assert!(matches!(
        Filter::parse(&bus, "priority"),
        Err(FilterError::Syntax { position: 8, found, .. }) if found == "end of input"
    ));
}
