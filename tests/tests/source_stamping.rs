//! Only its own publisher speaks for an agent: for any sequence of public calls (publish by
//! value, in place, scheduled, batch, forged bytes claiming another source, failures,
//! redrive and redrive_to), every delivery carries as source the agent of the publisher
//! that published it, and every `system.security` alert comes from the shield's agent.
//!
//! Each event's correlation id names the publisher that sent it (`index << 32 | seq`), so
//! the test knows whose agent must be the source, whatever path the event took.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dreamnet_bus::{
    AgentId, AgentPolicy, Bus, Draft, Event, EventType, Filter, FullPolicy, ManualClock, Outcome,
    Policy, Publisher, Shard, Subscription, SECURITY_EVENT_TYPE, SHIELD_AGENT,
};
use proptest::prelude::*;

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Body {
    n: u32,
}

/// Byte offset of the header's source field (id, timestamp, correlation, deadline and
/// payload tag come first, 8 bytes each).
const SOURCE_OFFSET: usize = 40;

#[derive(Debug, Clone)]
enum Op {
    Publish {
        p: usize,
        ty: usize,
    },
    InPlace {
        p: usize,
        ty: usize,
    },
    Scheduled {
        p: usize,
        delay_ms: u64,
    },
    Batch {
        p: usize,
        n: usize,
    },
    /// Bytes of an event whose source field names `victim`, decoded and published by `p`.
    Forged {
        p: usize,
        victim: usize,
    },
    Redrive {
        max: usize,
    },
    RedriveTo {
        max: usize,
    },
    Advance {
        ms: u64,
    },
    Drain,
    /// Installs a policy refusing AGENT_ERROR to everyone (alerts come into play).
    Police,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4usize, 0..3usize).prop_map(|(p, ty)| Op::Publish { p, ty }),
        (0..4usize, 0..3usize).prop_map(|(p, ty)| Op::InPlace { p, ty }),
        (0..4usize, 0..5u64).prop_map(|(p, delay_ms)| Op::Scheduled { p, delay_ms }),
        (0..4usize, 1..4usize).prop_map(|(p, n)| Op::Batch { p, n }),
        (0..4usize, 0..3usize).prop_map(|(p, victim)| Op::Forged { p, victim }),
        (0..4usize).prop_map(|max| Op::Redrive { max }),
        (0..4usize).prop_map(|max| Op::RedriveTo { max }),
        (0..5u64).prop_map(|ms| Op::Advance { ms }),
        Just(Op::Drain),
        Just(Op::Police),
    ]
}

/// Types the ops publish: the second fails in its handler (dead letters to redrive),
/// the third is the one the policy refuses.
const TYPES: [EventType; 3] = [
    EventType::AGENT_TASK,
    EventType::AGENT_STATUS,
    EventType::AGENT_ERROR,
];

struct World {
    bus: Bus,
    shards: Vec<Shard>,
    clock: ManualClock,
    /// Publisher index -> its agent. Publishers 0 and 3 share agent 0.
    owners: Vec<AgentId>,
    publishers: Vec<Publisher>,
    seq: Vec<u64>,
    /// Every delivery: (source, correlation id).
    seen: Arc<Mutex<Vec<(AgentId, u64)>>>,
    alerts: Arc<Mutex<Vec<AgentId>>>,
    spare: dreamnet_bus::SubscriptionId,
}

fn world() -> World {
    let clock = ManualClock::new();
    clock.set_ns(1_000_000);
    let (bus, shards) = Bus::builder()
        .manual_clock(clock.clone())
        .ring_capacity_all(256)
        .dead_letters(64, FullPolicy::DropOldest)
        .dead_letter_unroutable(true)
        .build_polled()
        .unwrap();
    let agents: Vec<AgentId> = (0..3)
        .map(|i| bus.register_agent(&format!("agent-{i}")).unwrap())
        .collect();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    bus.subscribe(Filter::of_types(&TYPES[..2]), move |d| {
        let h = d.header();
        log.lock().unwrap().push((h.source(), h.correlation_id()));
        if h.event_type() == TYPES[1] {
            Outcome::fail(1)
        } else {
            Outcome::Done
        }
    })
    .unwrap();
    let log = Arc::clone(&seen);
    let spare = bus
        .subscribe(
            Subscription::new(Filter::of_type(EventType::SYSTEM_EVENT)),
            move |d| {
                let h = d.header();
                log.lock().unwrap().push((h.source(), h.correlation_id()));
                Outcome::Done
            },
        )
        .unwrap();
    let security = bus.register_event_type(SECURITY_EVENT_TYPE).unwrap();
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&alerts);
    bus.subscribe(Filter::of_type(security), move |d| {
        sink.lock().unwrap().push(d.header().source());
        Outcome::Done
    })
    .unwrap();
    let owners = vec![agents[0], agents[1], agents[2], agents[0]];
    let publishers = owners.iter().map(|a| bus.publisher(*a).unwrap()).collect();
    World {
        bus,
        shards,
        clock,
        owners,
        publishers,
        seq: vec![0; 4],
        seen,
        alerts,
        spare,
    }
}

impl World {
    fn correlation(&mut self, p: usize) -> u64 {
        self.seq[p] += 1;
        ((p as u64) << 32) | self.seq[p]
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Publish { p, ty } => {
                let c = self.correlation(p);
                let _ =
                    self.publishers[p].try_publish(Event::new(TYPES[ty]).with_correlation_id(c));
            }
            Op::InPlace { p, ty } => {
                let c = self.correlation(p);
                let draft = Draft::new(TYPES[ty]).with_correlation_id(c);
                let _ = self.publishers[p].try_publish_with(draft, &Body { n: 1 });
            }
            Op::Scheduled { p, delay_ms } => {
                let c = self.correlation(p);
                let _ = self.publishers[p].try_publish_after(
                    Event::new(TYPES[0]).with_correlation_id(c),
                    Duration::from_millis(delay_ms),
                );
            }
            Op::Batch { p, n } => {
                let events: Vec<Event> = (0..n)
                    .map(|_| {
                        let c = self.correlation(p);
                        Event::new(TYPES[1]).with_correlation_id(c)
                    })
                    .collect();
                let _ = self.publishers[p].try_publish_batch(&events);
            }
            Op::Forged { p, victim } => {
                let c = self.correlation(p);
                let mut bytes = *Event::<256>::new(TYPES[0])
                    .with_correlation_id(c)
                    .as_bytes();
                bytes[SOURCE_OFFSET..SOURCE_OFFSET + 4]
                    .copy_from_slice(&self.owners[victim].raw().to_ne_bytes());
                let forged = Event::<256>::from_bytes(&bytes).expect("valid header");
                assert_eq!(forged.header().source(), self.owners[victim]);
                let _ = self.publishers[p].try_publish(forged);
            }
            Op::Redrive { max } => {
                let _ = self.bus.redrive(max, |_| true);
            }
            Op::RedriveTo { max } => {
                let _ = self.bus.redrive_to(max, self.spare, |_| true);
            }
            Op::Advance { ms } => self.clock.advance(Duration::from_millis(ms)),
            Op::Drain => {
                for s in &mut self.shards {
                    s.drain();
                }
            }
            Op::Police => {
                let mut policy = Policy::allow_by_default();
                for a in &self.owners {
                    policy = policy.agent(*a, AgentPolicy::new().may_publish(TYPES[..2].to_vec()));
                }
                self.bus.set_policy(policy).unwrap();
            }
        }
        self.check();
    }

    fn check(&self) {
        for &(source, correlation) in self.seen.lock().unwrap().iter() {
            let publisher = (correlation >> 32) as usize;
            assert_eq!(
                source, self.owners[publisher],
                "event {correlation:#x} from publisher {publisher} delivered with another source"
            );
        }
        let shield = self.bus.agent(SHIELD_AGENT);
        for &source in self.alerts.lock().unwrap().iter() {
            assert_eq!(Some(source), shield, "an alert not from the shield");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_delivery_carries_its_publishers_agent(ops in proptest::collection::vec(op(), 1..120)) {
        let mut w = world();
        for op in ops {
            w.step(op);
        }
        w.step(Op::Advance { ms: 10 });
        w.step(Op::Drain);
        w.step(Op::Redrive { max: 64 });
        w.step(Op::Drain);
        // Not vacuous: a last event from publisher 3 (agent 0's second publisher) is
        // delivered, and `check` has compared its source like every other.
        w.step(Op::Publish { p: 3, ty: 0 });
        w.step(Op::Drain);
        let last = (3u64 << 32) | w.seq[3];
        prop_assert!(w.seen.lock().unwrap().iter().any(|&(_, c)| c == last));
    }
}
