//! Hardening: no configuration and no input can take the process down. Capacities have
//! maxima, the memory a configuration implies is checked against a budget before anything
//! is allocated, and schedules beyond the timer wheel's horizon are refused at publish.

mod common;

use std::time::Duration;

use dreamnet_bus::{
    Bus, BusError, ConfigError, Event, EventType, Filter, Outcome, Priority, PublishError,
    DEFAULT_MEMORY_BUDGET, MAX_DEAD_LETTER_CAPACITY, MAX_RING_CAPACITY,
};

/// The reported abort: `ring_capacity_all(1 << 40)` built, then the first publisher
/// aborted the process allocating 2^48 bytes. Now `build` refuses it with a typed error.
#[test]
fn huge_ring_capacity_is_a_typed_error_not_an_abort() {
    let err = Bus::builder()
        .ring_capacity_all(1 << 40)
        .build_polled()
        .expect_err("2^40 slots per ring must be refused");
    assert_eq!(
        err,
        BusError::Config(ConfigError::TooLarge {
            what: "ring capacity",
            value: 1 << 40,
            max: MAX_RING_CAPACITY,
        })
    );
}

#[test]
fn capacities_within_their_maxima_but_over_the_budget_are_refused_at_build() {
    // 4 shards x 4 rings x 2^20 slots x 256 bytes = 4 GiB for one publisher.
    let builder = Bus::builder().shards(4).ring_capacity_all(1 << 20);
    let needed = builder.memory_footprint().with_publishers(1);
    assert!(needed > 4 << 30, "needed {needed}");
    match builder.build_polled() {
        Err(BusError::Config(ConfigError::MemoryBudget { needed: n, budget })) => {
            assert_eq!(n, needed);
            assert_eq!(budget, DEFAULT_MEMORY_BUDGET);
        }
        other => panic!("expected MemoryBudget, got {other:?}"),
    }
}

#[test]
fn dead_letter_and_timer_capacities_have_maxima() {
    let err = Bus::builder()
        .dead_letters(
            MAX_DEAD_LETTER_CAPACITY + 1,
            dreamnet_bus::FullPolicy::DropOldest,
        )
        .build_polled()
        .expect_err("too many dead letters");
    assert!(matches!(
        err,
        BusError::Config(ConfigError::TooLarge {
            what: "dead-letter capacity",
            ..
        })
    ));
    // Within its maximum, a huge timer capacity is still refused by the budget (each
    // shard's wheel holds that many event slots).
    let err = Bus::builder()
        .timer_capacity(1 << 30)
        .build_polled()
        .expect_err("2^30 timer entries per shard");
    assert!(matches!(
        err,
        BusError::Config(ConfigError::MemoryBudget { .. })
    ));
}

#[test]
fn publishers_are_refused_when_their_rings_would_exceed_the_budget() {
    let builder = Bus::builder().shards(2);
    let footprint = builder.memory_footprint();
    // Room for exactly two publishers alive at once.
    let budget = footprint.with_publishers(2);
    let (bus, _shards) = builder.memory_budget(budget).build_polled().expect("fits");
    let agent = bus.register_agent("producer").unwrap();
    let first = bus.publisher(agent).expect("first fits");
    let second = bus.publisher(agent).expect("second fits");
    match bus.publisher(agent) {
        Err(BusError::MemoryBudget {
            needed,
            budget: b,
            alive,
        }) => {
            assert_eq!(alive, 2);
            assert_eq!(b, budget);
            assert_eq!(needed, footprint.with_publishers(3));
        }
        other => panic!("expected MemoryBudget, got {other:?}"),
    }
    // A dropped publisher gives its share back.
    drop(first);
    let third = bus.publisher(agent).expect("room again after a drop");
    drop((second, third));
}

#[test]
fn a_budget_too_small_for_one_publisher_is_refused_at_build() {
    let builder = Bus::builder();
    let one = builder.memory_footprint().with_publishers(1);
    let err = builder
        .memory_budget(one - 1)
        .build_polled()
        .expect_err("one byte short");
    assert_eq!(
        err,
        BusError::Config(ConfigError::MemoryBudget {
            needed: one,
            budget: one - 1
        })
    );
}

/// The wheel holds 2^36 ticks; the bus accepts schedules up to half of that ahead (the
/// other half is headroom for a wheel that lags the clock), and refuses anything later
/// with the event handed back, where it used to accept it and dead-letter it later as
/// `RetryCapacity`.
#[test]
fn schedules_beyond_the_horizon_are_refused_with_the_event() {
    let clock = dreamnet_bus::ManualClock::new();
    clock.set_ns(1_000);
    let tick = Duration::from_micros(1);
    let (bus, mut shards) = Bus::builder()
        .tick(tick)
        .manual_clock(clock.clone())
        .build_polled()
        .unwrap();
    let agent = bus.register_agent("scheduler").unwrap();
    bus.subscribe(Filter::of_type(EventType::AGENT_TASK), |_| Outcome::Done)
        .unwrap();
    let mut publisher = bus.publisher(agent).unwrap();
    let horizon = dreamnet_bus::schedule_horizon(tick);
    assert_eq!(horizon, Duration::from_micros(1 << 35));

    let event = Event::new(EventType::AGENT_TASK)
        .with_priority(Priority::Low)
        .with_correlation_id(42);
    let last_ok = bus.now_ns() + horizon.as_nanos() as u64;
    publisher
        .try_publish_at(event.clone(), last_ok)
        .expect("at the horizon is accepted");
    for at in [last_ok + 1_000, u64::MAX] {
        match publisher.try_publish_at(event.clone(), at) {
            Err(PublishError::BeyondHorizon {
                event: back,
                at_ns,
                latest_ns,
            }) => {
                assert_eq!(back.header().correlation_id(), 42);
                assert_eq!(at_ns, at);
                assert_eq!(latest_ns, last_ok);
            }
            other => panic!("expected BeyondHorizon, got {other:?}"),
        }
    }
    match publisher.try_publish_after(event, horizon + Duration::from_millis(1)) {
        Err(e @ PublishError::BeyondHorizon { .. }) => assert!(e.into_inner().is_some()),
        other => panic!("expected BeyondHorizon, got {other:?}"),
    }
    // The accepted one waits on the wheel; nothing was dead-lettered.
    shards[0].poll(16);
    assert_eq!(bus.dead_letters().len(), 0);
    assert_eq!(bus.stats().shards[0].timers_pending, 1);
}
