//! Every routing strategy end to end through the public API: direct, broadcast (across
//! shards), filtered, load-balanced groups; and the spec's standalone `Router`.
//! Priority routing (drain order) is in `priority.rs`.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::{delivery_set, drain_all, hits, new_log, poll_bus, record, Log};
use dreamnet_bus::{
    Balance, Bus, Delivery, Envelope, ErrorCode, Event, EventType, Filter, Outcome, Priority,
    Router, Shard, Status, Subscription, DEFAULT_SLOT,
};

fn event(ty: EventType, correlation: u64) -> Event {
    Event::new(ty).with_correlation_id(correlation)
}

#[test]
fn direct_event_reaches_only_subscriptions_for_its_agent_and_its_taps() {
    let (bus, mut shards) = poll_bus(1);
    let sender = bus.register_agent("sender").expect("agent");
    let openai = bus.register_agent("openai-assistant").expect("agent");
    let lucid = bus.register_agent("dreamnet-lucid").expect("agent");
    let nobody = bus.register_agent("nobody").expect("agent");
    let log = new_log();
    // 0: on behalf of openai; 1: on behalf of lucid; 2: a plain broadcast subscriber;
    // 3: a tap on openai's direct traffic; 4: on behalf of openai, status events only.
    bus.subscribe(
        Subscription::new(Filter::any()).for_agent(openai),
        record(&log, 0),
    )
    .expect("subscribe");
    bus.subscribe(
        Subscription::new(Filter::any()).for_agent(lucid),
        record(&log, 1),
    )
    .expect("subscribe");
    bus.subscribe(Filter::any(), record(&log, 2))
        .expect("subscribe");
    bus.subscribe(Filter::any().to_destination(openai), record(&log, 3))
        .expect("subscribe");
    bus.subscribe(
        Subscription::new(Filter::of_type(EventType::AGENT_STATUS)).for_agent(openai),
        record(&log, 4),
    )
    .expect("subscribe");
    let mut p = bus.publisher(sender).expect("publisher");

    let receipt = p
        .try_publish(event(EventType::AGENT_TASK, 1).to(openai))
        .expect("direct publish");
    assert_eq!(receipt.shards, 1);
    drain_all(&mut shards);
    assert_eq!(delivery_set(&log), vec![(0, 1), (3, 1)]);
    for h in hits(&log) {
        assert_eq!(h.destination, Some(openai));
        assert_eq!(h.source, sender, "the publisher stamps its agent as source");
    }
    common::clear(&log);

    // A broadcast reaches every subscription whose filter passes it, direct ones included.
    p.try_publish(event(EventType::AGENT_TASK, 2))
        .expect("broadcast");
    drain_all(&mut shards);
    assert_eq!(delivery_set(&log), vec![(0, 2), (1, 2), (2, 2), (3, 2)]);
    common::clear(&log);

    // A direct event still has to pass the subscription's filter.
    p.try_publish(event(EventType::AGENT_STATUS, 3).to(openai))
        .expect("direct publish");
    drain_all(&mut shards);
    assert_eq!(delivery_set(&log), vec![(0, 3), (3, 3), (4, 3)]);
    common::clear(&log);

    // Direct traffic to an agent nobody subscribed for is unroutable, not broadcast.
    let receipt = p
        .try_publish(event(EventType::AGENT_TASK, 4).to(nobody))
        .expect("publish to nobody");
    assert_eq!(receipt.shards, 0);
    assert_eq!(drain_all(&mut shards), 0);
    assert!(hits(&log).is_empty());
    let stats = bus.stats();
    assert_eq!(stats.published, 4);
    assert_eq!(stats.unroutable, 1);
    assert_eq!(stats.delivered(), 2 + 4 + 3);
}

#[test]
fn broadcast_reaches_every_matching_subscription_on_every_shard() {
    let (bus, mut shards) = poll_bus(3);
    let sender = bus.register_agent("sender").expect("agent");
    let log = new_log();
    for shard in 0..3 {
        bus.subscribe(
            Subscription::new(Filter::of_type(EventType::AGENT_STATUS)).on_shard(shard),
            record(&log, shard),
        )
        .expect("subscribe");
    }
    bus.subscribe(
        Subscription::new(Filter::of_type(EventType::AGENT_TASK)).on_shard(1),
        record(&log, 10),
    )
    .expect("subscribe");
    bus.subscribe(
        Subscription::new(Filter::any()).on_shard(2),
        record(&log, 20),
    )
    .expect("subscribe");
    let mut p = bus.publisher(sender).expect("publisher");

    let receipt = p
        .try_publish(event(EventType::AGENT_STATUS, 1))
        .expect("publish");
    assert_eq!(
        receipt.shards, 3,
        "a status event must reach all three shards"
    );
    // Each shard runs only the handlers placed on it.
    assert_eq!(shards[0].poll(16), 1);
    assert_eq!(delivery_set(&log), vec![(0, 1)]);
    assert_eq!(shards[1].poll(16), 1);
    assert_eq!(delivery_set(&log), vec![(0, 1), (1, 1)]);
    assert_eq!(shards[2].poll(16), 1);
    assert_eq!(delivery_set(&log), vec![(0, 1), (1, 1), (2, 1), (20, 1)]);
    common::clear(&log);

    let receipt = p
        .try_publish(event(EventType::AGENT_TASK, 2))
        .expect("publish");
    assert_eq!(
        receipt.shards, 2,
        "task subscriptions sit on shards 1 and 2"
    );
    assert_eq!(shards[0].poll(16), 0);
    drain_all(&mut shards);
    assert_eq!(delivery_set(&log), vec![(10, 2), (20, 2)]);

    let receipt = p
        .try_publish(event(EventType::SYSTEM_HEALTH, 3))
        .expect("publish");
    assert_eq!(
        receipt.shards, 1,
        "only the catch-all on shard 2 wants health events"
    );

    let stats = bus.stats();
    drain_all(&mut shards);
    assert_eq!(stats.shards[0].published[Priority::Normal.index()], 1);
    assert_eq!(stats.shards[1].published[Priority::Normal.index()], 2);
    assert_eq!(stats.shards[2].published[Priority::Normal.index()], 3);
    assert_eq!(stats.shards[2].queued[Priority::Normal.index()], 1);
}

#[test]
fn filters_select_by_type_source_priority_and_predicate() {
    let (bus, mut shards) = poll_bus(2);
    let alpha = bus.register_agent("alpha").expect("agent");
    let beta = bus.register_agent("beta").expect("agent");
    let log = new_log();
    let subs: Vec<Filter> = vec![
        Filter::of_types(&[EventType::AGENT_TASK, EventType::AGENT_RESPONSE]),
        Filter::any().from_source(beta),
        Filter::any().priorities(&[Priority::Critical, Priority::High]),
        Filter::any().matching(|h| h.correlation_id().is_multiple_of(2)),
        Filter::of_type(EventType::AGENT_TASK)
            .from_source(alpha)
            .priorities(&[Priority::Low])
            .matching(|h| h.correlation_id() > 2),
    ];
    for (i, f) in subs.into_iter().enumerate() {
        bus.subscribe(f, record(&log, i)).expect("subscribe");
    }
    let mut pa = bus.publisher(alpha).expect("publisher");
    let mut pb = bus.publisher(beta).expect("publisher");

    let types = [
        EventType::AGENT_TASK,
        EventType::AGENT_RESPONSE,
        EventType::AGENT_STATUS,
    ];
    let mut expected = Vec::new();
    let mut correlation = 0;
    for ty in types {
        for (from_beta, p) in [(false, &mut pa), (true, &mut pb)] {
            for prio in Priority::ALL {
                correlation += 1;
                p.try_publish(event(ty, correlation).with_priority(prio))
                    .expect("publish");
                // The model: each filter written out by hand.
                let task_or_response =
                    ty == EventType::AGENT_TASK || ty == EventType::AGENT_RESPONSE;
                let model = [
                    task_or_response,
                    from_beta,
                    prio == Priority::Critical || prio == Priority::High,
                    correlation.is_multiple_of(2),
                    ty == EventType::AGENT_TASK
                        && !from_beta
                        && prio == Priority::Low
                        && correlation > 2,
                ];
                for (sub, passes) in model.into_iter().enumerate() {
                    if passes {
                        expected.push((sub, correlation));
                    }
                }
            }
        }
    }
    drain_all(&mut shards);
    expected.sort_unstable();
    assert_eq!(delivery_set(&log), expected);
    assert!(
        expected.iter().any(|&(s, _)| s == 4),
        "the conjunction filter should pass at least one event"
    );
}

/// Which member (label) got each correlation id, from a log of group deliveries.
fn member_of_each(log: &Log, events: u64) -> Vec<usize> {
    let mut member = vec![usize::MAX; events as usize];
    for h in hits(log) {
        let slot = &mut member[(h.correlation - 1) as usize];
        assert_eq!(
            *slot,
            usize::MAX,
            "event {} delivered to two members of one group",
            h.correlation
        );
        *slot = h.sub;
    }
    assert!(
        member.iter().all(|&m| m != usize::MAX),
        "every event must reach one member: {member:?}"
    );
    member
}

#[test]
fn round_robin_group_gives_each_event_to_exactly_one_member_in_turn() {
    let (bus, mut shards) = poll_bus(1);
    let sender = bus.register_agent("sender").expect("agent");
    let group_log = new_log();
    let plain_log = new_log();
    let group = bus
        .group(
            "workers",
            Subscription::new(Filter::of_type(EventType::AGENT_TASK)),
            Balance::RoundRobin,
        )
        .expect("group");
    for m in 0..3 {
        bus.join(group, record(&group_log, m)).expect("join");
    }
    bus.subscribe(
        Filter::of_type(EventType::AGENT_TASK),
        record(&plain_log, 9),
    )
    .expect("subscribe");
    let mut p = bus.publisher(sender).expect("publisher");
    for c in 1..=30 {
        p.try_publish(event(EventType::AGENT_TASK, c))
            .expect("publish");
        // Not for the group: a different type.
        p.try_publish(event(EventType::AGENT_STATUS, 1000 + c))
            .expect("publish");
    }
    drain_all(&mut shards);

    let member = member_of_each(&group_log, 30);
    for m in 0..3 {
        assert_eq!(member.iter().filter(|&&x| x == m).count(), 10, "{member:?}");
    }
    // In turn: the assignment repeats with the period of the member count.
    assert_ne!(member[0], member[1]);
    assert_ne!(member[1], member[2]);
    assert_ne!(member[0], member[2]);
    for (i, m) in member.iter().enumerate() {
        assert_eq!(*m, member[i % 3], "round robin broke at event {}", i + 1);
    }
    // A plain subscription beside the group still sees every event.
    assert_eq!(hits(&plain_log).len(), 30);
}

#[test]
fn least_loaded_group_sends_each_event_once_to_the_member_with_fewest() {
    let (bus, mut shards) = poll_bus(2);
    let sender = bus.register_agent("sender").expect("agent");
    let log = new_log();
    let group = bus
        .group(
            "pool",
            Subscription::new(Filter::any()).on_shard(1),
            Balance::LeastLoaded,
        )
        .expect("group");
    for m in 0..3 {
        bus.join(group, record(&log, m)).expect("join");
    }
    let mut p = bus.publisher(sender).expect("publisher");
    for c in 1..=30 {
        p.try_publish(event(EventType::AGENT_TASK, c))
            .expect("publish");
    }
    drain_all(&mut shards);
    let member = member_of_each(&log, 30);
    for m in 0..3 {
        assert_eq!(member.iter().filter(|&&x| x == m).count(), 10, "{member:?}");
    }

    // A member joining late has had the fewest, so it gets the next ten.
    bus.join(group, record(&log, 3)).expect("join");
    for c in 31..=40 {
        p.try_publish(event(EventType::AGENT_TASK, c))
            .expect("publish");
    }
    drain_all(&mut shards);
    let member = member_of_each(&log, 40);
    assert!(member[30..].iter().all(|&m| m == 3), "{member:?}");
}

#[test]
fn group_for_an_agent_takes_its_direct_traffic_once_per_event() {
    let (bus, mut shards) = poll_bus(1);
    let sender = bus.register_agent("sender").expect("agent");
    let openai = bus.register_agent("openai-assistant").expect("agent");
    let lucid = bus.register_agent("dreamnet-lucid").expect("agent");
    let log = new_log();
    let group = bus
        .group(
            "openai-pool",
            Subscription::new(Filter::of_type(EventType::AGENT_TASK)).for_agent(openai),
            Balance::RoundRobin,
        )
        .expect("group");
    bus.join(group, record(&log, 0)).expect("join");
    bus.join(group, record(&log, 1)).expect("join");
    assert!(matches!(
        bus.group("openai-pool", Subscription::default(), Balance::RoundRobin),
        Err(dreamnet_bus::BusError::GroupExists(name)) if name == "openai-pool"
    ));
    let mut p = bus.publisher(sender).expect("publisher");
    for c in 1..=4 {
        p.try_publish(event(EventType::AGENT_TASK, c).to(openai))
            .expect("publish");
    }
    let receipt = p
        .try_publish(event(EventType::AGENT_TASK, 99).to(lucid))
        .expect("publish");
    assert_eq!(receipt.shards, 0);
    drain_all(&mut shards);
    let member = member_of_each(&log, 4);
    assert_eq!(member.iter().filter(|&&m| m == 0).count(), 2);
    assert_eq!(member.iter().filter(|&&m| m == 1).count(), 2);
}

#[test]
fn group_members_that_leave_get_nothing_more_and_the_rest_share() {
    let (bus, mut shards) = poll_bus(1);
    let sender = bus.register_agent("sender").expect("agent");
    let log = new_log();
    let group = bus
        .group("g", Subscription::new(Filter::any()), Balance::RoundRobin)
        .expect("group");
    let ids: Vec<_> = (0..3)
        .map(|m| bus.join(group, record(&log, m)).expect("join"))
        .collect();
    let mut p = bus.publisher(sender).expect("publisher");
    bus.unsubscribe(ids[1]).expect("leave");
    for c in 1..=10 {
        p.try_publish(event(EventType::AGENT_TASK, c))
            .expect("publish");
    }
    drain_all(&mut shards);
    let member = member_of_each(&log, 10);
    assert!(!member.contains(&1), "{member:?}");
    assert_eq!(member.iter().filter(|&&m| m == 0).count(), 5);
    // Every member gone: the group's events are unroutable, not lost somewhere.
    bus.unsubscribe(ids[0]).expect("leave");
    bus.unsubscribe(ids[2]).expect("leave");
    let receipt = p
        .try_publish(event(EventType::AGENT_TASK, 11))
        .expect("publish");
    assert_eq!(receipt.shards, 0);
    assert_eq!(bus.stats().unroutable, 1);
}

/// Events as a bus stamps them (source, id), to route with a standalone `Router`.
fn stamped_events(bus: &Bus, shards: &mut [Shard], from: &str, to: &str) -> (Event, Event) {
    let source = bus.register_agent(from).expect("agent");
    let dest = bus.register_agent(to).expect("agent");
    // (A handler's panic is caught by the bus, so handlers record and the test asserts.)
    let seen: Arc<Mutex<Vec<(Event, Envelope)>>> = Arc::default();
    let sink = Arc::clone(&seen);
    bus.subscribe(
        Subscription::new(Filter::any()).for_agent(dest),
        move |d: &Delivery<'_, DEFAULT_SLOT>| {
            sink.lock()
                .expect("lock")
                .push((d.event().clone(), d.envelope().clone()));
            Outcome::Done
        },
    )
    .expect("subscribe");
    let mut p = bus.publisher(source).expect("publisher");
    p.try_publish(event(EventType::AGENT_TASK, 1))
        .expect("publish");
    p.try_publish(event(EventType::AGENT_TASK, 2).to(dest))
        .expect("publish");
    assert_eq!(drain_all(shards), 2);
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 2, "both events reach the subscription");
    // What a bus handler sees: processing, first attempt, the routing path.
    for (event, env) in seen.iter() {
        assert_eq!(env.status, Status::Processing);
        assert_eq!(env.attempts, 1);
        assert_eq!(env.path[0], source);
        assert_eq!(env.path.get(1), event.header().destination().as_ref());
        assert_eq!(env.hops as usize, env.path.len());
    }
    (seen[0].0.clone(), seen[1].0.clone())
}

#[test]
fn standalone_router_routes_and_returns_the_spec_envelope() {
    let (bus, mut shards) = poll_bus(1);
    let (broadcast, direct) =
        stamped_events(&bus, &mut shards, "dreamnet-lucid", "openai-assistant");
    let lucid = bus.agent("dreamnet-lucid").expect("registered");
    let openai = bus.agent("openai-assistant").expect("registered");

    let mut router: Router = Router::new();
    assert!(router.is_empty());
    let calls = Arc::new(AtomicU64::new(0));
    let statuses: Arc<Mutex<Vec<Status>>> = Arc::default();
    let (c, st) = (Arc::clone(&calls), Arc::clone(&statuses));
    let task = router.register_handler(EventType::AGENT_TASK, move |d| {
        st.lock().expect("lock").push(d.envelope().status);
        c.fetch_add(1, Ordering::Relaxed);
        Outcome::Done
    });
    assert_eq!(router.len(), 1);

    let env = router.route(&broadcast);
    assert_eq!(env.status, Status::Completed);
    assert_eq!(env.deliveries, 1);
    assert_eq!(env.attempts, 1);
    assert_eq!(env.path.as_slice(), &[lucid]);
    assert_eq!(env.hops, 1);
    assert_eq!(env.last_error, None);

    // `register_handler` is a broadcast handler: direct traffic is for the addressee.
    let env = router.route(&direct);
    assert_eq!(env.status, Status::Pending);
    assert_eq!(env.deliveries, 0);
    assert_eq!(env.path.as_slice(), &[lucid, openai]);
    assert_eq!(
        env.hops, 2,
        "the spec's example: path of two agents, two hops"
    );
    assert_eq!(calls.load(Ordering::Relaxed), 1);

    let direct_calls = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&direct_calls);
    router.subscribe(
        Filter::any(),
        Some(openai),
        Box::new(move |_| {
            c.fetch_add(1, Ordering::Relaxed);
            Outcome::Done
        }),
    );
    let env = router.route(&direct);
    assert_eq!((env.status, env.deliveries), (Status::Completed, 1));
    assert_eq!(direct_calls.load(Ordering::Relaxed), 1);
    // Both handlers see the broadcast.
    assert_eq!(router.route(&broadcast).deliveries, 2);
    assert_eq!(calls.load(Ordering::Relaxed), 2);

    assert_eq!(router.unsubscribe(task), Ok(()));
    assert_eq!(
        router.unsubscribe(task),
        Err(dreamnet_bus::BusError::UnknownSubscription(task))
    );
    assert_eq!(router.route(&broadcast).deliveries, 1);
    assert_eq!(
        calls.load(Ordering::Relaxed),
        2,
        "an unsubscribed handler is not called"
    );
    assert_eq!(
        *statuses.lock().expect("lock"),
        vec![Status::Processing; 2],
        "a handler sees its envelope in processing"
    );
}

#[test]
fn standalone_router_marks_failures_with_the_last_error_and_keeps_routing() {
    common::quiet_deliberate_panics();
    let (bus, mut shards) = poll_bus(1);
    let (broadcast, _) = stamped_events(&bus, &mut shards, "dreamnet-lucid", "openai-assistant");
    let error = Event::new(EventType::AGENT_ERROR);
    let health = Event::new(EventType::SYSTEM_HEALTH);

    let mut router: Router = Router::new();
    router.register_handler(EventType::AGENT_TASK, |_| Outcome::retry(3));
    router.register_handler(EventType::AGENT_ERROR, |_| Outcome::fail(7));
    router.register_handler(EventType::SYSTEM_HEALTH, |_| {
        std::panic::panic_any(common::DELIBERATE_PANIC)
    });
    let ok = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&ok);
    router.subscribe(
        Filter::any(),
        None,
        Box::new(move |_| {
            c.fetch_add(1, Ordering::Relaxed);
            Outcome::Done
        }),
    );

    let env = router.route(&broadcast);
    assert_eq!(env.status, Status::Failed);
    assert_eq!(env.last_error, Some(ErrorCode(3)));
    assert_eq!(env.deliveries, 2);
    let env = router.route(&error);
    assert_eq!(env.status, Status::Failed);
    assert_eq!(env.last_error, Some(ErrorCode(7)));
    let env = router.route(&health);
    assert_eq!(
        env.status,
        Status::Failed,
        "a panicking handler fails the envelope"
    );
    assert_eq!(env.deliveries, 2, "the other handler still ran");
    assert_eq!(ok.load(Ordering::Relaxed), 3);
    // And the router goes on after the panic.
    assert_eq!(router.route(&health).deliveries, 2);
    assert_eq!(ok.load(Ordering::Relaxed), 4);
}

#[test]
fn worker_mode_routes_direct_broadcast_filtered_and_grouped_traffic() {
    const N: u64 = 2_000;
    let bus = Bus::builder()
        .shards(2)
        .pinned(false)
        .build()
        .expect("worker bus");
    let sender = bus.register_agent("sender").expect("agent");
    let openai = bus.register_agent("openai-assistant").expect("agent");
    let counter = |n: &Arc<AtomicU64>| {
        let n = Arc::clone(n);
        move |_: &Delivery<'_, DEFAULT_SLOT>| {
            n.fetch_add(1, Ordering::Relaxed);
            Outcome::Done
        }
    };
    let all = Arc::new(AtomicU64::new(0));
    let status = Arc::new(AtomicU64::new(0));
    let direct = Arc::new(AtomicU64::new(0));
    let members: Vec<Arc<AtomicU64>> = (0..2).map(|_| Arc::default()).collect();
    bus.subscribe(Subscription::new(Filter::any()).on_shard(0), counter(&all))
        .expect("subscribe");
    bus.subscribe(
        Subscription::new(Filter::of_type(EventType::AGENT_STATUS)).on_shard(1),
        counter(&status),
    )
    .expect("subscribe");
    bus.subscribe(
        Subscription::new(Filter::any())
            .for_agent(openai)
            .on_shard(1),
        counter(&direct),
    )
    .expect("subscribe");
    let group = bus
        .group(
            "tasks",
            Subscription::new(Filter::of_type(EventType::AGENT_TASK)).on_shard(0),
            Balance::RoundRobin,
        )
        .expect("group");
    for m in &members {
        bus.join(group, counter(m)).expect("join");
    }
    let mut p = bus.publisher(sender).expect("publisher");
    let (mut tasks, mut statuses, mut directs) = (0, 0, 0);
    for i in 0..N {
        let e = match i % 4 {
            0 | 1 => {
                tasks += 1;
                event(EventType::AGENT_TASK, i)
            }
            2 => {
                statuses += 1;
                event(EventType::AGENT_STATUS, i)
            }
            _ => {
                directs += 1;
                event(EventType::AGENT_RESPONSE, i).to(openai)
            }
        };
        p.publish(e).expect("blocking publish");
    }
    bus.close();
    assert_eq!(all.load(Ordering::Relaxed), tasks + statuses);
    assert_eq!(status.load(Ordering::Relaxed), statuses);
    // On behalf of openai: its direct traffic, and the broadcasts its filter passes.
    assert_eq!(direct.load(Ordering::Relaxed), directs + tasks + statuses);
    assert_eq!(members[0].load(Ordering::Relaxed), tasks / 2);
    assert_eq!(members[1].load(Ordering::Relaxed), tasks / 2);
    let stats = bus.stats();
    assert_eq!(stats.published, N);
    assert_eq!(stats.unroutable, 0);
    assert_eq!(stats.queued(), 0);
    // all + status + on behalf of openai + the group.
    assert_eq!(
        stats.delivered(),
        (tasks + statuses) + statuses + (tasks + statuses + directs) + tasks
    );
}
