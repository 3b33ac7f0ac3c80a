//! The security policy through the public API, against a model written out plainly.
//!
//! A poll-mode bus with a manual clock, three agents (plus the shield's own), four event
//! types, a subscriber on `system.security` and an audit hook. Operations: install a
//! policy built from the input (default allow or deny; per agent: publish and subscribe
//! type sets, destinations, a largest payload per type and for all, an agent rate limit,
//! one per-type rate limit, a quota), clear it, publish (by value or in place, broadcast
//! or directed, payload of 0, 8 or 64 bytes), subscribe (bound to an agent or anonymous,
//! to some types or all), advance the clock, drain.
//!
//! After every operation: the publish or subscribe result is exactly the model's (Ok, or
//! the same violation: agent, kind, type, destination, payload length, limit), the event
//! handed back is the one published, the violation counters per agent and kind equal the
//! model's, the audit hook saw exactly the model's violations in order, and after a
//! drain the `system.security` events carry exactly those violations in order, from the
//! shield's agent, never from the offender.
//!
//! The model: a refused publish spends nothing; checks in the order type, destination,
//! payload size, quota, agent rate, type rate; a rate limit is a textbook token bucket
//! (credit in nanoseconds, refilled one per nanosecond up to `burst x interval`, an event
//! costs `interval = 1e9 / rate`); a new policy starts its buckets full and its quotas at
//! zero; counts carry across policies.
#![no_main]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbitrary::Arbitrary;
use dreamnet_bus::{
    AgentId, AgentPolicy, Bus, BusError, Draft, Event, EventType, Filter, ManualClock, Outcome,
    Policy, PublishError, Publisher, Rate, SecurityAlert, Shard, Subscription,
    Violation, ViolationKind, SECURITY_EVENT_TYPE, SHIELD_AGENT,
};
use libfuzzer_sys::fuzz_target;

const AGENTS: usize = 3;
const TYPES: [EventType; 4] = [
    EventType::AGENT_TASK,
    EventType::AGENT_RESPONSE,
    EventType::AGENT_STATUS,
    EventType::AGENT_ERROR,
];

#[derive(Arbitrary, Debug, Clone)]
struct RulesSpec {
    publish: Option<u8>,
    subscribe: Option<u8>,
    destinations: Option<u8>,
    /// (type index, bytes)
    max_payload: Option<(u8, u8)>,
    max_payload_all: Option<u8>,
    /// (events/s, burst)
    rate: Option<(u8, u8)>,
    /// (type index, events/s, burst)
    type_rate: Option<(u8, u8, u8)>,
    quota: Option<u8>,
}

#[derive(Arbitrary, Debug, Clone)]
struct PolicySpec {
    deny: bool,
    agents: [Option<RulesSpec>; AGENTS],
    anonymous: Option<RulesSpec>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Payload {
    None,
    Small,
    Large,
}

#[derive(Arbitrary, Debug, Clone)]
enum Op {
    SetPolicy(PolicySpec),
    Clear,
    Publish {
        agent: u8,
        ty: u8,
        destination: Option<u8>,
        payload: Payload,
        in_place: bool,
    },
    Subscribe {
        agent: Option<u8>,
        types: u8,
    },
    /// Advance the clock by `n` x 10 ms.
    Advance(u8),
    Drain,
}

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Small([u8; 8]);
#[derive(rkyv::Archive, rkyv::Serialize)]
struct Large([u8; 64]);

fn set(mask: u8) -> Vec<usize> {
    (0..8).filter(|i| mask & (1 << i) != 0).collect()
}

fn rate(per_second: u8, burst: u8) -> Rate {
    Rate::new(u64::from(per_second.max(1)), u64::from(burst % 8 + 1)).expect("valid rate")
}

// ---------------------------------------------------------------- the model

struct Bucket {
    credit: u64,
    capacity: u64,
    interval: u64,
    last: u64,
    per_second: u64,
}

impl Bucket {
    fn new(r: Rate, now: u64) -> Self {
        let interval = 1_000_000_000 / r.per_second();
        Bucket {
            credit: r.burst() * interval,
            capacity: r.burst() * interval,
            interval,
            last: now,
            per_second: r.per_second(),
        }
    }
    fn refill(&mut self, now: u64) {
        self.credit = (self.credit + (now - self.last)).min(self.capacity);
        self.last = now;
    }
    fn has(&mut self, now: u64) -> bool {
        self.refill(now);
        self.credit >= self.interval
    }
    fn take(&mut self) {
        self.credit -= self.interval;
    }
}

struct ModelRules {
    publish: Option<Vec<usize>>,
    subscribe: Option<Vec<usize>>,
    destinations: Option<Vec<usize>>,
    max_payload: Option<(usize, usize)>,
    max_payload_all: Option<usize>,
    rate: Option<Bucket>,
    type_rate: Option<(usize, Bucket)>,
    quota: Option<(u64, u64)>,
}

struct ModelPolicy {
    deny: bool,
    agents: Vec<Option<ModelRules>>,
    anonymous: Option<ModelRules>,
}

fn model_rules(s: &RulesSpec, now: u64) -> ModelRules {
    ModelRules {
        publish: s.publish.map(|m| set(m & 0xf)),
        subscribe: s.subscribe.map(|m| set(m & 0xf)),
        destinations: s.destinations.map(|m| set(m & 0x7)),
        max_payload: s.max_payload.map(|(t, b)| (usize::from(t % 4), usize::from(b))),
        max_payload_all: s.max_payload_all.map(usize::from),
        rate: s.rate.map(|(r, b)| Bucket::new(rate(r, b), now)),
        type_rate: s
            .type_rate
            .map(|(t, r, b)| (usize::from(t % 4), Bucket::new(rate(r, b), now))),
        quota: s.quota.map(|q| (u64::from(q), 0)),
    }
}

fn bus_rules(s: &RulesSpec, agents: &[AgentId]) -> AgentPolicy {
    let mut p = AgentPolicy::new();
    if let Some(m) = s.publish {
        p = p.may_publish(set(m & 0xf).into_iter().map(|i| TYPES[i]));
    }
    if let Some(m) = s.subscribe {
        p = p.may_subscribe(set(m & 0xf).into_iter().map(|i| TYPES[i]));
    }
    if let Some(m) = s.destinations {
        p = p.may_send_to(set(m & 0x7).into_iter().map(|i| agents[i]));
    }
    if let Some((t, b)) = s.max_payload {
        p = p.max_payload(TYPES[usize::from(t % 4)], usize::from(b));
    }
    if let Some(b) = s.max_payload_all {
        p = p.max_payload_all(usize::from(b));
    }
    if let Some((r, b)) = s.rate {
        p = p.rate_limit(rate(r, b));
    }
    if let Some((t, r, b)) = s.type_rate {
        p = p.type_rate_limit(TYPES[usize::from(t % 4)], rate(r, b));
    }
    if let Some(q) = s.quota {
        p = p.quota(u64::from(q));
    }
    p
}

impl ModelPolicy {
    /// The model's verdict on a publish: `Err((kind, limit))`.
    fn publish(
        &mut self,
        agent: usize,
        ty: usize,
        dest: Option<usize>,
        len: usize,
        now: u64,
    ) -> Result<(), (ViolationKind, u64)> {
        let deny = self.deny;
        let Some(r) = self.agents[agent].as_mut() else {
            return if deny {
                Err((ViolationKind::PublishDenied, 0))
            } else {
                Ok(())
            };
        };
        let allowed = |set: &Option<Vec<usize>>, x: usize| match set {
            Some(s) => s.contains(&x),
            None => !deny,
        };
        if !allowed(&r.publish, ty) {
            return Err((ViolationKind::PublishDenied, 0));
        }
        if let Some(d) = dest {
            if !allowed(&r.destinations, d) {
                return Err((ViolationKind::DestinationDenied, 0));
            }
        }
        let max = match r.max_payload {
            Some((t, b)) if t == ty => Some(b),
            _ => r.max_payload_all,
        };
        if let Some(max) = max {
            if len > max {
                return Err((ViolationKind::PayloadTooLarge, max as u64));
            }
        }
        if let Some((q, used)) = r.quota {
            if used >= q {
                return Err((ViolationKind::QuotaExceeded, q));
            }
        }
        if let Some(b) = r.rate.as_mut() {
            if !b.has(now) {
                return Err((ViolationKind::RateLimited, b.per_second));
            }
        }
        if let Some((t, b)) = r.type_rate.as_mut() {
            if *t == ty && !b.has(now) {
                return Err((ViolationKind::TypeRateLimited, b.per_second));
            }
        }
        // Passed: spend.
        if let Some((_, used)) = r.quota.as_mut() {
            *used += 1;
        }
        if let Some(b) = r.rate.as_mut() {
            b.take();
        }
        if let Some((t, b)) = r.type_rate.as_mut() {
            if *t == ty {
                b.take();
            }
        }
        Ok(())
    }

    /// The model's verdict on a subscribe: `Err(type)` (`u16::MAX`: every type).
    fn subscribe(&self, agent: Option<usize>, types: &[usize]) -> Result<(), u16> {
        let rules = match agent {
            Some(a) => self.agents[a].as_ref(),
            None => self.anonymous.as_ref(),
        };
        let first = || types.first().map_or(u16::MAX, |&t| TYPES[t].raw());
        let Some(r) = rules else {
            return if self.deny { Err(first()) } else { Ok(()) };
        };
        match &r.subscribe {
            None if !self.deny => Ok(()),
            None => Err(first()),
            // Every type needs every one of the bus's types listed: never here.
            Some(_) if types.is_empty() => Err(u16::MAX),
            Some(s) => match types.iter().find(|t| !s.contains(t)) {
                Some(&t) => Err(TYPES[t].raw()),
                None => Ok(()),
            },
        }
    }
}

// ---------------------------------------------------------------- the run

struct Run {
    bus: Bus,
    shards: Vec<Shard>,
    clock: ManualClock,
    agents: Vec<AgentId>,
    shield: AgentId,
    publishers: Vec<Publisher>,
    alerts: Arc<Mutex<Vec<(AgentId, SecurityAlert)>>>,
    audited: Arc<Mutex<Vec<Violation>>>,
    model: Option<ModelPolicy>,
    expected: Vec<Violation>,
    alerts_expected: Vec<Violation>,
    counts: Vec<[u64; ViolationKind::COUNT]>,
    anonymous_counts: [u64; ViolationKind::COUNT],
}

impl Run {
    fn new() -> Self {
        let clock = ManualClock::new();
        clock.set_ns(1_000_000_000);
        // Small rings and tables: building the bus is most of an execution's time.
        let (bus, shards) = Bus::builder()
            .manual_clock(clock.clone())
            .ring_capacity_all(128)
            .timer_capacity(16)
            .dead_letters(16, dreamnet_bus::FullPolicy::DropOldest)
            .build_polled()
            .expect("bus");
        let agents: Vec<AgentId> = (0..AGENTS)
            .map(|i| bus.register_agent(&format!("agent-{i}")).expect("agent"))
            .collect();
        let security = bus.register_event_type(SECURITY_EVENT_TYPE).expect("type");
        let shield = bus.register_agent(SHIELD_AGENT).expect("agent");
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
        .expect("subscribe");
        let publishers = agents
            .iter()
            .map(|a| bus.publisher(*a).expect("publisher"))
            .collect();
        Run {
            bus,
            shards,
            clock,
            shield,
            publishers,
            alerts,
            audited: Arc::new(Mutex::new(Vec::new())),
            model: None,
            expected: Vec::new(),
            alerts_expected: Vec::new(),
            counts: vec![[0; ViolationKind::COUNT]; AGENTS],
            anonymous_counts: [0; ViolationKind::COUNT],
            agents,
        }
    }

    fn expect(&mut self, v: Violation, agent: Option<usize>) {
        match agent {
            Some(a) => self.counts[a][v.kind.index()] += 1,
            None => self.anonymous_counts[v.kind.index()] += 1,
        }
        self.expected.push(v);
        self.alerts_expected.push(v);
    }

    fn step(&mut self, op: Op) {
        let now = self.clock.now_ns();
        match op {
            Op::SetPolicy(spec) => {
                let audited = Arc::clone(&self.audited);
                let mut policy = if spec.deny {
                    Policy::deny_by_default()
                } else {
                    Policy::allow_by_default()
                }
                .on_violation(move |v| audited.lock().unwrap().push(*v));
                for (i, r) in spec.agents.iter().enumerate() {
                    if let Some(r) = r {
                        policy = policy.agent(self.agents[i], bus_rules(r, &self.agents));
                    }
                }
                if let Some(r) = &spec.anonymous {
                    policy = policy.anonymous(bus_rules(r, &self.agents));
                }
                self.bus.set_policy(policy).expect("a valid policy installs");
                self.model = Some(ModelPolicy {
                    deny: spec.deny,
                    agents: spec
                        .agents
                        .iter()
                        .map(|r| r.as_ref().map(|r| model_rules(r, now)))
                        .collect(),
                    anonymous: spec.anonymous.as_ref().map(|r| model_rules(r, now)),
                });
            }
            Op::Clear => {
                self.bus.clear_policy();
                self.model = None;
            }
            Op::Publish {
                agent,
                ty,
                destination,
                payload,
                in_place,
            } => self.publish(agent, ty, destination, payload, in_place, now),
            Op::Subscribe { agent, types } => {
                let agent = agent.map(|a| usize::from(a) % AGENTS);
                let types = set(types & 0xf);
                let filter = if types.is_empty() {
                    Filter::any()
                } else {
                    Filter::of_types(&types.iter().map(|&t| TYPES[t]).collect::<Vec<_>>())
                };
                let mut s = Subscription::new(filter);
                if let Some(a) = agent {
                    s = s.for_agent(self.agents[a]);
                }
                let got = self.bus.subscribe(s, |_| Outcome::Done);
                let want = self
                    .model
                    .as_ref()
                    .map_or(Ok(()), |m| m.subscribe(agent, &types));
                match (got, want) {
                    (Ok(id), Ok(())) => self.bus.unsubscribe(id).expect("unsubscribe"),
                    (Err(BusError::Policy(v)), Err(ty)) => {
                        let w = Violation {
                            agent: agent.map_or(Violation::ANONYMOUS, |a| self.agents[a]),
                            kind: ViolationKind::SubscribeDenied,
                            event_type: ty_of(ty),
                            destination: None,
                            payload_len: 0,
                            limit: 0,
                        };
                        assert_eq!(v, w);
                        self.expect(v, agent);
                    }
                    (g, w) => panic!("subscribe {agent:?} {types:?}: bus {g:?}, model {w:?}"),
                }
            }
            Op::Advance(n) => self
                .clock
                .advance(Duration::from_millis(10 * u64::from(n))),
            Op::Drain => self.drain(),
        }
        // Keep the rings (128 slots) from filling: this target is about the policy, not
        // backpressure, and an alert that finds its ring full is dropped (counted).
        if self.alerts_expected.len() >= 64 {
            self.drain();
        }
        self.check_counts();
    }

    fn publish(
        &mut self,
        agent: u8,
        ty: u8,
        destination: Option<u8>,
        payload: Payload,
        in_place: bool,
        now: u64,
    ) {
        let a = usize::from(agent) % AGENTS;
        let t = usize::from(ty) % 4;
        let d = destination.map(|d| usize::from(d) % AGENTS);
        let len = match payload {
            Payload::None => 0,
            Payload::Small => 8,
            Payload::Large => 64,
        };
        let want = self
            .model
            .as_mut()
            .map_or(Ok(()), |m| m.publish(a, t, d, len, now));
        let dest = d.map(|d| self.agents[d]);
        let publisher = &mut self.publishers[a];
        let got: Result<(), Violation> = if in_place && len > 0 {
            let mut draft = Draft::new(TYPES[t]);
            if let Some(dd) = dest {
                draft = draft.to(dd);
            }
            let r = match payload {
                Payload::Small => publisher.try_publish_with(draft, &Small([1; 8])),
                _ => publisher.try_publish_with(draft, &Large([2; 64])),
            };
            match r {
                Ok(_) => Ok(()),
                Err(PublishError::Policy { event: (), violation }) => Err(violation),
                Err(e) => panic!("in-place publish: {e:?}"),
            }
        } else {
            let mut e = Event::new(TYPES[t]).with_correlation_id(now ^ 0x5a);
            e.set_destination(dest);
            let e = match payload {
                Payload::None => e,
                Payload::Small => e.with_payload(&Small([1; 8])).expect("fits"),
                Payload::Large => e.with_payload(&Large([2; 64])).expect("fits"),
            };
            match publisher.try_publish(e) {
                Ok(_) => Ok(()),
                Err(PublishError::Policy { event, violation }) => {
                    assert_eq!(event.header().correlation_id(), now ^ 0x5a);
                    assert_eq!(event.payload_bytes().len(), len);
                    Err(violation)
                }
                Err(e) => panic!("publish: {e:?}"),
            }
        };
        match (got, want) {
            (Ok(()), Ok(())) => {}
            (Err(v), Err((kind, limit))) => {
                let w = Violation {
                    agent: self.agents[a],
                    kind,
                    event_type: TYPES[t],
                    destination: dest,
                    payload_len: len,
                    limit,
                };
                assert_eq!(v, w);
                self.expect(v, Some(a));
            }
            (g, w) => panic!("publish a{a} t{t} d{d:?} len {len}: bus {g:?}, model {w:?}"),
        }
    }

    fn drain(&mut self) {
        for s in &mut self.shards {
            s.drain();
        }
        // Alerts travel on the offenders' publishers (and the bus's own for subscribe
        // refusals): FIFO per publisher, so compare as multisets.
        let key = |a: &SecurityAlert| {
            (a.agent, a.kind, a.event_type, a.destination, a.payload_len, a.limit)
        };
        let got = std::mem::take(&mut *self.alerts.lock().unwrap());
        for (source, _) in &got {
            assert_eq!(*source, self.shield, "alerts come from the shield's agent");
        }
        let mut got: Vec<_> = got.iter().map(|(_, a)| key(a)).collect();
        let mut want: Vec<_> = std::mem::take(&mut self.alerts_expected)
            .iter()
            .map(|v| key(&SecurityAlert::from(v)))
            .collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "alerts delivered");
    }

    fn check_counts(&self) {
        for (i, a) in self.agents.iter().enumerate() {
            assert_eq!(self.bus.violations(*a).0, self.counts[i], "counts of agent {i}");
        }
        assert_eq!(self.bus.anonymous_violations().0, self.anonymous_counts);
        assert_eq!(*self.audited.lock().unwrap(), self.expected, "audit hook");
        let stats = self.bus.shield_stats();
        assert_eq!(stats.alerts_dropped, 0);
        assert_eq!(stats.hook_panics, 0);
        assert_eq!(stats.unattributed, 0);
    }
}

fn ty_of(raw: u16) -> EventType {
    TYPES
        .iter()
        .copied()
        .find(|t| t.raw() == raw)
        .unwrap_or(Violation::EVERY_TYPE)
}

fuzz_target!(|ops: Vec<Op>| {
    let mut run = Run::new();
    for op in ops.into_iter().take(256) {
        run.step(op);
    }
    run.drain();
    run.check_counts();
});
