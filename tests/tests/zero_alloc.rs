//! Zero allocation on the hot path: publish -> route -> handler, with rkyv payloads written
//! (`Event::with_payload` and the in-place `try_publish_with`) and read in the handler,
//! 100,000 cycles after warm-up, in poll mode and in pinned worker mode, and in poll mode
//! under a security policy that runs every check on each publish and refuses one publish
//! per cycle (counted, audited, raised as a `system.security` event that a handler reads).
//! A global allocator counts every allocation on every thread while counting is on.
//!
//! One `#[test]` runs both phases, so nothing else in this binary (another test, or the
//! harness reporting one) allocates inside a measured window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dreamnet_bus::{
    AgentPolicy, Bus, Delivery, Draft, Event, EventType, Filter, Outcome, Policy, Priority,
    PublishError, Publisher, Rate, SecurityAlert, Subscription, DEFAULT_SLOT, SECURITY_EVENT_TYPE,
};

mod alloc_counter;
use alloc_counter::{allocations_during, first_sizes};

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Reading {
    sensor: u32,
    seq: u64,
    values: [u16; 8],
}

fn reading(seq: u64) -> Reading {
    Reading {
        sensor: (seq % 7) as u32,
        seq,
        values: [seq as u16; 8],
    }
}

#[derive(Default)]
struct Seen {
    events: AtomicU64,
    bad_payloads: AtomicU64,
}

/// Reads the payload zero copy and checks it against the correlation id.
fn reader(seen: &Arc<Seen>) -> impl FnMut(&Delivery<'_, DEFAULT_SLOT>) -> Outcome + Send {
    let seen = Arc::clone(seen);
    move |d| {
        let ok = d.payload::<Reading>().is_ok_and(|r| {
            r.seq.to_native() == d.header().correlation_id()
                && r.values[3].to_native() == d.header().correlation_id() as u16
                && r.sensor.to_native() == (d.header().correlation_id() % 7) as u32
        });
        if !ok {
            seen.bad_payloads.fetch_add(1, Ordering::Relaxed);
        }
        seen.events.fetch_add(1, Ordering::Release);
        Outcome::Done
    }
}

/// One publish: even sequence numbers through `Event::with_payload`, odd ones in place.
/// Returns false if the ring was full (nothing published).
fn publish_once(p: &mut Publisher, seq: u64) -> bool {
    let (ty, prio) = if seq.is_multiple_of(3) {
        (EventType::AGENT_STATUS, Priority::High)
    } else {
        (EventType::AGENT_TASK, Priority::Normal)
    };
    if seq.is_multiple_of(2) {
        let event = Event::new(ty)
            .with_priority(prio)
            .with_correlation_id(seq)
            .with_payload(&reading(seq))
            .expect("payload fits");
        match p.try_publish(event) {
            Ok(_) => true,
            Err(PublishError::Full(_)) => false,
            Err(e) => panic!("publish {seq}: {e:?}"),
        }
    } else {
        let draft = Draft::new(ty).with_priority(prio).with_correlation_id(seq);
        match p.try_publish_with(draft, &reading(seq)) {
            Ok(_) => true,
            Err(PublishError::Full(())) => false,
            Err(e) => panic!("publish {seq}: {e:?}"),
        }
    }
}

fn subscribe_readers(bus: &Bus, shards: usize) -> Arc<Seen> {
    let seen = Arc::new(Seen::default());
    for shard in 0..shards {
        bus.subscribe(
            Subscription::new(Filter::of_type(EventType::AGENT_TASK)).on_shard(shard),
            reader(&seen),
        )
        .expect("subscribe");
        bus.subscribe(
            Subscription::new(
                Filter::of_type(EventType::AGENT_STATUS).priorities(&[Priority::High]),
            )
            .on_shard(shard),
            reader(&seen),
        )
        .expect("subscribe");
    }
    seen
}

const WARM_UP: u64 = 2_000;
const CYCLES: u64 = 100_000;

fn poll_mode_cycles_allocate_nothing() {
    let (bus, mut shards) = Bus::builder().build_polled().expect("bus");
    let agent = bus.register_agent("zero-alloc-poll").expect("agent");
    let seen = subscribe_readers(&bus, 1);
    let mut p = bus.publisher(agent).expect("publisher");
    let mut seq = 0;
    let mut cycle = |p: &mut Publisher, seq: &mut u64| {
        assert!(
            publish_once(p, *seq),
            "poll mode: the ring cannot be full here"
        );
        *seq += 1;
        assert_eq!(shards[0].poll(16), 1);
    };
    for _ in 0..WARM_UP {
        cycle(&mut p, &mut seq);
    }
    let allocations = allocations_during(|| {
        for _ in 0..CYCLES {
            cycle(&mut p, &mut seq);
        }
    });
    assert_eq!(
        allocations,
        0,
        "poll mode: {allocations} allocations in {CYCLES} publish -> route -> handler \
         cycles (first sizes: {:?})",
        first_sizes()
    );
    assert_eq!(seen.events.load(Ordering::Acquire), WARM_UP + CYCLES);
    assert_eq!(seen.bad_payloads.load(Ordering::Relaxed), 0);
}

/// Publishes `n` events from `seq` on, retrying on a full ring, then waits until the
/// handlers have seen `target` events. Allocates nothing itself.
fn run_worker_window(p: &mut Publisher, seq: &mut u64, n: u64, seen: &Seen, target: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for _ in 0..n {
        while !publish_once(p, *seq) {
            assert!(Instant::now() < deadline, "workers stopped draining");
            std::thread::yield_now();
        }
        *seq += 1;
    }
    while seen.events.load(Ordering::Acquire) < target {
        assert!(
            Instant::now() < deadline,
            "workers never delivered everything"
        );
        std::thread::yield_now();
    }
}

fn pinned_worker_mode_cycles_allocate_nothing() {
    let shards = 2;
    let bus = Bus::builder()
        .shards(shards)
        .pinned(true)
        .build()
        .expect("bus");
    let agent = bus.register_agent("zero-alloc-workers").expect("agent");
    let seen = subscribe_readers(&bus, shards);
    let mut p = bus.publisher(agent).expect("publisher");
    // Every event reaches one subscription on each shard.
    let per_event = shards as u64;
    let mut seq = 0;
    run_worker_window(&mut p, &mut seq, WARM_UP, &seen, WARM_UP * per_event);
    let allocations = allocations_during(|| {
        run_worker_window(
            &mut p,
            &mut seq,
            CYCLES,
            &seen,
            (WARM_UP + CYCLES) * per_event,
        );
    });
    assert_eq!(
        allocations,
        0,
        "pinned worker mode: {allocations} allocations on all threads in {CYCLES} \
         publish -> route -> handler cycles (first sizes: {:?}; pin failed: {:?})",
        first_sizes(),
        bus.stats()
            .shards
            .iter()
            .map(|s| s.pin_failed)
            .collect::<Vec<_>>()
    );
    assert_eq!(seen.bad_payloads.load(Ordering::Relaxed), 0);
    bus.close();
    assert_eq!(
        seen.events.load(Ordering::Acquire),
        (WARM_UP + CYCLES) * per_event
    );
}

fn policy_checks_and_violations_allocate_nothing() {
    let (bus, mut shards) = Bus::builder().build_polled().expect("bus");
    let agent = bus.register_agent("zero-alloc-policy").expect("agent");
    let seen = subscribe_readers(&bus, 1);
    let security = bus.register_event_type(SECURITY_EVENT_TYPE).expect("type");
    let alerts = Arc::new(AtomicU64::new(0));
    let (a, audited) = (Arc::clone(&alerts), Arc::new(AtomicU64::new(0)));
    bus.subscribe(Filter::of_type(security), move |d| {
        if d.payload::<SecurityAlert>().is_ok_and(|s| s.kind == 0) {
            a.fetch_add(1, Ordering::Relaxed);
        }
        Outcome::Done
    })
    .expect("subscribe");
    let fast = Rate::new(1_000_000_000, 1 << 40).expect("rate");
    let hook_count = Arc::clone(&audited);
    bus.set_policy(
        Policy::deny_by_default()
            .agent(
                agent,
                AgentPolicy::new()
                    .may_publish([EventType::AGENT_TASK, EventType::AGENT_STATUS])
                    .max_payload_all(160)
                    .rate_limit(fast)
                    .type_rate_limit(EventType::AGENT_TASK, fast)
                    .quota(u64::MAX),
            )
            .on_violation(move |_| {
                hook_count.fetch_add(1, Ordering::Relaxed);
            }),
    )
    .expect("policy");
    let mut p = bus.publisher(agent).expect("publisher");
    let mut seq = 0;
    let mut cycle = |p: &mut Publisher, seq: &mut u64| {
        assert!(publish_once(p, *seq), "allowed and room");
        *seq += 1;
        let refused = p.try_publish(Event::new(EventType::AGENT_ERROR));
        assert!(matches!(refused, Err(PublishError::Policy { .. })));
        assert_eq!(shards[0].poll(16), 2, "the event and the alert");
    };
    for _ in 0..WARM_UP {
        cycle(&mut p, &mut seq);
    }
    let allocations = allocations_during(|| {
        for _ in 0..CYCLES {
            cycle(&mut p, &mut seq);
        }
    });
    assert_eq!(
        allocations,
        0,
        "policy on: {allocations} allocations in {CYCLES} cycles (first sizes: {:?})",
        first_sizes()
    );
    assert_eq!(seen.events.load(Ordering::Acquire), WARM_UP + CYCLES);
    assert_eq!(alerts.load(Ordering::Relaxed), WARM_UP + CYCLES);
    assert_eq!(audited.load(Ordering::Relaxed), WARM_UP + CYCLES);
    assert_eq!(bus.violations(agent).total(), WARM_UP + CYCLES);
}

#[test]
fn publish_route_handler_allocates_nothing_after_warm_up_in_poll_and_pinned_worker_mode() {
    poll_mode_cycles_allocate_nothing();
    pinned_worker_mode_cycles_allocate_nothing();
    policy_checks_and_violations_allocate_nothing();
}
