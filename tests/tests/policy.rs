//! The security policy, through the public API: every kind of violation at publish (by
//! value, in place, scheduled, batch) and at subscribe is a typed error with the event
//! handed back, counted per agent and kind, handed to the audit hook and raised as a
//! `system.security` event from the shield's agent; hot reload applies to the next
//! publish; without a policy nothing is checked.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::drain_all;
use dreamnet_bus::{
    AgentId, AgentPolicy, Bus, BusError, Draft, Event, EventType, Filter, ManualClock, Outcome,
    Policy, PublishError, Rate, SecurityAlert, Shard, Subscription, Violation, ViolationKind,
    SECURITY_EVENT_TYPE, SHIELD_AGENT,
};

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Blob {
    bytes: [u8; 64],
}

struct World {
    bus: Bus,
    shards: Vec<Shard>,
    lucid: AgentId,
    assistant: AgentId,
    mallory: AgentId,
    clock: ManualClock,
    /// Alerts delivered to the `system.security` subscriber: (source, alert).
    alerts: Arc<Mutex<Vec<(AgentId, SecurityAlert)>>>,
    /// Violations seen by the audit hook.
    audited: Arc<Mutex<Vec<Violation>>>,
    /// Tasks delivered.
    tasks: Arc<AtomicU64>,
}

fn world() -> World {
    let clock = ManualClock::new();
    clock.set_ns(1_000_000_000);
    let (bus, shards) = Bus::builder()
        .manual_clock(clock.clone())
        .build_polled()
        .unwrap();
    let lucid = bus.register_agent("dreamnet-lucid").unwrap();
    let assistant = bus.register_agent("openai-assistant").unwrap();
    let mallory = bus.register_agent("mallory").unwrap();
    let security = bus.register_event_type(SECURITY_EVENT_TYPE).unwrap();
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&alerts);
    bus.subscribe(Filter::of_type(security), move |d| {
        let a = d.payload::<SecurityAlert>().expect("alert payload");
        sink.lock().unwrap().push((
            d.header().source(),
            SecurityAlert {
                agent: a.agent.to_native(),
                kind: a.kind,
                event_type: a.event_type.to_native(),
                destination: a.destination.to_native(),
                payload_len: a.payload_len.to_native(),
                limit: a.limit.to_native(),
            },
        ));
        Outcome::Done
    })
    .unwrap();
    let tasks = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&tasks);
    bus.subscribe(Filter::of_type(EventType::AGENT_TASK), move |_| {
        count.fetch_add(1, Ordering::Relaxed);
        Outcome::Done
    })
    .unwrap();
    World {
        bus,
        shards,
        lucid,
        assistant,
        mallory,
        clock,
        alerts,
        audited: Arc::new(Mutex::new(Vec::new())),
        tasks,
    }
}

impl World {
    /// The policy of these tests: lucid may send tasks (at most 32 bytes of payload) to
    /// the assistant, 2 per second in bursts of 2, 5 in all; mallory is not mentioned.
    fn install(&self) {
        let audited = Arc::clone(&self.audited);
        self.bus
            .set_policy(
                Policy::deny_by_default()
                    .agent(
                        self.lucid,
                        AgentPolicy::new()
                            .may_publish([EventType::AGENT_TASK, EventType::AGENT_STATUS])
                            .may_subscribe([EventType::AGENT_RESPONSE])
                            .may_send_to([self.assistant])
                            .max_payload(EventType::AGENT_TASK, 32)
                            .rate_limit(Rate::new(100, 100).unwrap())
                            .type_rate_limit(EventType::AGENT_STATUS, Rate::new(2, 2).unwrap())
                            .quota(8),
                    )
                    .on_violation(move |v| audited.lock().unwrap().push(*v)),
            )
            .unwrap();
    }

    fn task(&self) -> Event {
        Event::new(EventType::AGENT_TASK).with_correlation_id(77)
    }

    fn alerts(&mut self) -> Vec<(AgentId, SecurityAlert)> {
        drain_all(&mut self.shards);
        std::mem::take(&mut *self.alerts.lock().unwrap())
    }

    /// Asserts the one violation of `kind` by `agent` was returned, audited, counted
    /// and raised as an alert from the shield's agent.
    fn assert_raised(&mut self, v: &Violation, agent: AgentId, kind: ViolationKind) {
        assert_eq!((v.agent, v.kind), (agent, kind));
        assert_eq!(self.audited.lock().unwrap().last(), Some(v), "audited");
        let alerts = self.alerts();
        assert_eq!(alerts.len(), 1, "one alert for {kind:?}");
        let (source, alert) = alerts[0];
        assert_eq!(
            source,
            self.bus.agent(SHIELD_AGENT).unwrap(),
            "alert source"
        );
        assert_ne!(source, agent, "the offender does not speak for the shield");
        assert_eq!(alert, SecurityAlert::from(v));
    }
}

fn refused<T>(r: Result<T, PublishError<Event>>) -> (Event, Violation) {
    match r {
        Err(PublishError::Policy { event, violation }) => (event, violation),
        Err(other) => panic!("expected a policy refusal, got {other:?}"),
        Ok(_) => panic!("expected a policy refusal, got Ok"),
    }
}

#[test]
fn every_publish_violation_is_returned_counted_audited_and_raised() {
    let mut w = world();
    w.install();
    let mut lucid = w.bus.publisher(w.lucid).unwrap();
    let mut mallory = w.bus.publisher(w.mallory).unwrap();

    // Allowed: a task to the assistant.
    lucid.try_publish(w.task().to(w.assistant)).unwrap();

    // PublishDenied: a type not listed; and an agent not mentioned (default deny).
    let (back, v) = refused(lucid.try_publish(Event::new(EventType::AGENT_ERROR)));
    assert_eq!(back.header().event_type(), EventType::AGENT_ERROR);
    w.assert_raised(&v, w.lucid, ViolationKind::PublishDenied);
    let (back, v) = refused(mallory.try_publish(w.task()));
    assert_eq!(
        back.header().correlation_id(),
        77,
        "the event is handed back"
    );
    w.assert_raised(&v, w.mallory, ViolationKind::PublishDenied);

    // DestinationDenied.
    let (_, v) = refused(lucid.try_publish(w.task().to(w.mallory)));
    assert_eq!(v.destination, Some(w.mallory));
    w.assert_raised(&v, w.lucid, ViolationKind::DestinationDenied);

    // PayloadTooLarge, by value and in place.
    let big = w.task().with_payload(&Blob { bytes: [1; 64] }).unwrap();
    let (back, v) = refused(lucid.try_publish(big));
    assert_eq!(back.payload_bytes().len(), 64);
    assert_eq!((v.payload_len, v.limit), (64, 32));
    w.assert_raised(&v, w.lucid, ViolationKind::PayloadTooLarge);
    match lucid.try_publish_with(Draft::new(EventType::AGENT_TASK), &Blob { bytes: [2; 64] }) {
        Err(PublishError::Policy {
            event: (),
            violation,
        }) => w.assert_raised(&violation, w.lucid, ViolationKind::PayloadTooLarge),
        other => panic!("expected a policy refusal, got {other:?}"),
    }

    // TypeRateLimited: AGENT_STATUS at 2/s in bursts of 2.
    for _ in 0..2 {
        lucid
            .try_publish(Event::new(EventType::AGENT_STATUS))
            .unwrap();
    }
    let (_, v) = refused(lucid.try_publish(Event::new(EventType::AGENT_STATUS)));
    assert_eq!(v.limit, 2);
    w.assert_raised(&v, w.lucid, ViolationKind::TypeRateLimited);
    w.clock.advance(Duration::from_millis(500));
    lucid
        .try_publish(Event::new(EventType::AGENT_STATUS))
        .expect("a token every 500 ms");

    // QuotaExceeded: 8 in all (1 task + 3 status so far), scheduled and batch included.
    lucid
        .try_publish_after(w.task(), Duration::from_millis(1))
        .unwrap();
    let batch = [w.task(), w.task(), w.task(), w.task()];
    // A batch reports a short count; the refused fourth is counted, audited and raised.
    let sent = lucid.try_publish_batch(&batch).unwrap();
    assert_eq!(sent.count, 3);
    let v = *w.audited.lock().unwrap().last().expect("audited");
    assert_eq!(v.limit, 8);
    w.assert_raised(&v, w.lucid, ViolationKind::QuotaExceeded);
    let (_, v) = refused(lucid.try_publish_at(w.task(), w.bus.now_ns() + 1));
    w.assert_raised(&v, w.lucid, ViolationKind::QuotaExceeded);

    let counts = w.bus.violations(w.lucid);
    assert_eq!(counts.get(ViolationKind::PublishDenied), 1);
    assert_eq!(counts.get(ViolationKind::DestinationDenied), 1);
    assert_eq!(counts.get(ViolationKind::PayloadTooLarge), 2);
    assert_eq!(counts.get(ViolationKind::TypeRateLimited), 1);
    assert_eq!(counts.get(ViolationKind::QuotaExceeded), 2);
    assert_eq!(counts.total(), 7);
    assert_eq!(w.bus.violations(w.mallory).total(), 1);
    assert_eq!(w.bus.violations(w.assistant).total(), 0);
    let stats = w.bus.shield_stats();
    assert_eq!((stats.alerts_published, stats.alerts_dropped), (8, 0));
    // Only allowed broadcast tasks reached the handler: the scheduled one when due and
    // the batch's three (the first task was addressed to the assistant, who has no
    // subscription here: unroutable).
    w.clock.advance(Duration::from_millis(5));
    drain_all(&mut w.shards);
    assert_eq!(w.tasks.load(Ordering::Relaxed), 1 + 3);
    assert_eq!(
        w.bus.stats().unroutable,
        1 + 3,
        "that task and the 3 status events"
    );
}

#[test]
fn agent_rate_limit_refuses_beyond_the_burst() {
    let mut w = world();
    w.bus
        .set_policy(Policy::allow_by_default().agent(
            w.mallory,
            AgentPolicy::new().rate_limit(Rate::new(1_000, 3).unwrap()),
        ))
        .unwrap();
    let mut p = w.bus.publisher(w.mallory).unwrap();
    for _ in 0..3 {
        p.try_publish(w.task()).unwrap();
    }
    let (_, v) = refused(p.try_publish(w.task()));
    assert_eq!(v.limit, 1_000);
    assert_eq!((v.agent, v.kind), (w.mallory, ViolationKind::RateLimited));
    assert_eq!(w.alerts().len(), 1);
    w.clock.advance(Duration::from_millis(1));
    p.try_publish(w.task()).expect("1 ms later, one more token");
}

#[test]
fn subscribe_violations_are_refused_counted_audited_and_raised() {
    let mut w = world();
    w.install();
    let ok = Subscription::new(Filter::of_type(EventType::AGENT_RESPONSE)).for_agent(w.lucid);
    w.bus.subscribe(ok, |_| Outcome::Done).unwrap();
    let denied = Subscription::new(Filter::of_type(EventType::AGENT_TASK)).for_agent(w.lucid);
    match w.bus.subscribe(denied, |_| Outcome::Done) {
        Err(BusError::Policy(v)) => {
            assert_eq!(v.event_type, EventType::AGENT_TASK);
            w.assert_raised(&v, w.lucid, ViolationKind::SubscribeDenied);
        }
        other => panic!("expected a policy refusal, got {other:?}"),
    }
    // Anonymous under default deny; and a group.
    match w
        .bus
        .subscribe(Filter::of_type(EventType::AGENT_RESPONSE), |_| {
            Outcome::Done
        }) {
        Err(BusError::Policy(v)) => {
            w.assert_raised(&v, Violation::ANONYMOUS, ViolationKind::SubscribeDenied)
        }
        other => panic!("expected a policy refusal, got {other:?}"),
    }
    let group = Subscription::new(Filter::of_type(EventType::AGENT_TASK)).for_agent(w.mallory);
    assert!(matches!(
        w.bus
            .group("workers", group, dreamnet_bus::Balance::RoundRobin),
        Err(BusError::Policy(_))
    ));
    assert_eq!(w.alerts().len(), 1);
    assert_eq!(
        w.bus
            .violations(w.lucid)
            .get(ViolationKind::SubscribeDenied),
        1
    );
    assert_eq!(w.bus.anonymous_violations().total(), 1);
    assert_eq!(w.bus.violations(w.mallory).total(), 1);
}

#[test]
fn without_a_policy_or_after_clearing_it_nothing_is_checked() {
    let mut w = world();
    let mut mallory = w.bus.publisher(w.mallory).unwrap();
    mallory.try_publish(w.task()).unwrap();
    w.install();
    refused(mallory.try_publish(w.task()));
    w.bus.clear_policy();
    mallory.try_publish(w.task()).unwrap();
    drain_all(&mut w.shards);
    assert_eq!(w.tasks.load(Ordering::Relaxed), 2);
    assert_eq!(w.bus.violations(w.mallory).total(), 1, "counts survive");
}

#[test]
fn a_policy_naming_unknown_ids_is_refused_and_the_old_one_stays() {
    let w = world();
    w.install();
    let err = w
        .bus
        .set_policy(Policy::allow_by_default().agent(Violation::ANONYMOUS, AgentPolicy::new()));
    assert!(matches!(err, Err(BusError::UnknownAgent(_))), "{err:?}");
    let mut mallory = w.bus.publisher(w.mallory).unwrap();
    refused(mallory.try_publish(w.task()));
}

/// Hot reload: a publisher thread publishes continuously; once `set_policy` has
/// returned (and the publisher has seen that, through an acquire of `switched`),
/// every publish is checked by the new policy. (It publishes a type nobody subscribes
/// to, so no ring fills up: every publish reaches the policy check.)
#[test]
fn a_publish_after_set_policy_returned_is_checked_by_the_new_policy() {
    let w = world();
    let bus = Arc::new(w.bus);
    let switched = Arc::new(AtomicBool::new(false));
    let mallory = w.mallory;
    let producer = {
        let bus = Arc::clone(&bus);
        let switched = Arc::clone(&switched);
        std::thread::spawn(move || {
            let mut p = bus.publisher(mallory).unwrap();
            let (mut before, mut after_ok) = (0u64, 0u64);
            for i in 0..200_000u64 {
                let seen = switched.load(Ordering::Acquire);
                let event = Event::new(EventType::AGENT_CAPABILITY).with_correlation_id(i);
                match p.try_publish(event) {
                    Ok(_) | Err(PublishError::Full(_)) if !seen => before += 1,
                    Ok(_) => after_ok += 1,
                    Err(PublishError::Policy { .. }) if seen => return (before, after_ok, true),
                    Err(PublishError::Policy { .. }) => before += 1,
                    Err(PublishError::Full(_)) => {}
                    Err(e) => panic!("{e:?}"),
                }
            }
            (before, after_ok, false)
        })
    };
    std::thread::sleep(Duration::from_millis(5));
    bus.set_policy(Policy::deny_by_default()).unwrap();
    switched.store(true, Ordering::Release);
    let (_, after_ok, refused_after) = producer.join().unwrap();
    assert_eq!(
        after_ok, 0,
        "a publish after the switch passed the old policy"
    );
    assert!(
        refused_after,
        "the new policy refused the first publish after the switch"
    );
}

/// An agent registered after the policy was installed is still counted per agent (its
/// counter row is made when its publisher is created, not when it first offends).
#[test]
fn an_agent_registered_after_set_policy_is_counted() {
    let w = world();
    w.install();
    let late = w.bus.register_agent("late-comer").unwrap();
    let mut p = w.bus.publisher(late).unwrap();
    refused(p.try_publish(w.task()));
    assert_eq!(w.bus.violations(late).get(ViolationKind::PublishDenied), 1);
    assert_eq!(w.bus.shield_stats().unattributed, 0);
}
