//! A whole bus in poll mode with a manual clock, driven by an operation sequence:
//! subscribe (random filter, agent, shard, including invalid ones), unsubscribe (including
//! twice), publish (random type, priority, destination, several publishers, by value or in
//! place, including invalid ids and oversized payloads), poll a shard (random budget),
//! advance the clock. Handler outcomes are chosen by the input (see `Act`).
//!
//! The model follows the routing rules of router.rs's module doc and the poll-mode control
//! rules of bus.rs / shard.rs:
//! - a publish goes to the shards whose registered subscriptions may match it (by type for
//!   a broadcast, by agent or destination tap for a direct event), all or nothing: `Full`
//!   exactly when one of those lanes (publisher, shard, priority) is full; with no such
//!   shard it is unroutable (counted, and dead-lettered if the bus is set to);
//! - subscribe/unsubscribe reach the shard's router at the start of its next `poll`;
//! - a poll takes a prefix of each of its lanes (lane fill levels are read exactly through
//!   each publisher's `free_slots`), and each event taken is delivered exactly once to every
//!   subscription of that shard, active at that poll, whose route matches it, and to no
//!   other; `poll(max)` returning less than `max` leaves the shard's lanes empty;
//! - per subscription, events of one publisher at one priority arrive in publish order;
//! - conservation at the end (drain every shard, close): every accepted event was taken
//!   exactly once from every lane it entered, and `bus.stats()` and every subscription's
//!   stats agree with the model's counts.
#![no_main]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbitrary::Arbitrary;
use dreamnet_bus::{
    AgentId, Balance, Bus, BusError, DeadReason, Draft, ErrorCode, Event, EventType, Filter,
    FullPolicy, GroupId, ManualClock, Outcome, PayloadError, Priority, PublishError, Publisher,
    RunMode, Shard, Subscription, SubscriptionId,
};
use libfuzzer_sys::fuzz_target;

/// Registered agents (ids 0..AGENTS); id AGENTS is never registered.
const AGENTS: u32 = 3;
/// Known event types: the 7 built-ins plus one custom type (id 7); id 8 is unknown.
const TYPES: u16 = 8;
const MAX_PUBLISHERS: usize = 3;
/// Publishers made over a run, dropped ones included.
const MAX_MADE: usize = 8;
const MAX_SUBS: usize = 24;

/// What a handler does with a delivery. `Done` and `Fail` are modelled (a failure is
/// dead-lettered at once, reason `Failed { code }`, with the subscription and attempt 1).
/// To add `Retry`: add it here, map it in `outcome()`, and teach `Harness::poll` that a
/// retry re-delivers to that subscription only, at a later poll once the clock passed the
/// backoff (attempts 2, 3, ...), until `Done`, `Fail`, or exhaustion (dead letter
/// `RetriesExhausted`); the final drain must then advance the clock until the wheels empty.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Done,
    Fail(u8),
}

fn outcome(act: Act) -> Outcome {
    match act {
        Act::Done => Outcome::Done,
        Act::Fail(code) => Outcome::fail(u16::from(code)),
    }
}

/// One dead letter as the model expects it: event id, subscription, reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Letter {
    id: u64,
    sub: Option<SubscriptionId>,
    reason: DeadReason,
    attempts: u32,
}

#[derive(Arbitrary, Debug, Clone)]
struct SubSpec {
    /// Type indices (mod TYPES + 1; TYPES is unknown).
    types: Vec<u8>,
    source: Option<u8>,
    tap: Option<u8>,
    /// Bit p: priority p passes; 0: every priority.
    priorities: u8,
    for_agent: Option<u8>,
    /// `None`: the bus places it; `Some(k)`: shard `k % (shards + 1)` (one past the end
    /// is an error).
    shard: Option<u8>,
    /// Pass only events whose correlation id `% (m + 2) != r`.
    predicate: Option<(u8, u8)>,
    /// The handler's outcomes, in turn.
    acts: Vec<Act>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct PubSpec {
    publisher: u8,
    ty: u8,
    priority: u8,
    destination: Option<u8>,
    correlation: u8,
    /// Publish with `try_publish_with` (archived into the ring in place).
    in_place: bool,
    /// In place: a payload too large for the slot.
    oversized: bool,
}

#[derive(Arbitrary, Debug, Clone)]
enum Op {
    Subscribe(SubSpec),
    /// A load-balanced group (round-robin or least-loaded) with this filter.
    Group(SubSpec, bool),
    /// A member joins group `n` (mod groups made), with these outcomes.
    Join(u8, Vec<Act>),
    Unsubscribe(u8),
    Publish(PubSpec),
    /// Publish the same spec `n` times (fills rings).
    Burst(PubSpec, u8),
    Poll {
        shard: u8,
        max: u8,
    },
    Drain {
        shard: u8,
    },
    /// Drop publisher `n` (the next publish as `n` makes a new one).
    DropPublisher(u8),
    Advance(u32),
}

#[derive(Arbitrary, Debug)]
struct Input {
    shards: u8,
    /// log2 of each priority's ring capacity.
    ring_log2: [u8; 4],
    guard: u8,
    dead_letter_unroutable: bool,
    /// Dead-letter ring: capacity `1 + n % 16`, and its policy.
    dead_letter_capacity: u8,
    dead_letter_drop_oldest: bool,
    ops: Vec<Op>,
}

/// One delivery as a handler saw it.
#[derive(Debug, Clone)]
struct Rec {
    poll: u64,
    sub: SubscriptionId,
    id: u64,
    source: u32,
    timestamp: u64,
    correlation: u64,
    now_ns: u64,
    attempts: u32,
    payload: Option<u32>,
    act: Act,
}

#[derive(rkyv::Archive, rkyv::Serialize, Debug)]
struct Body {
    seq: u32,
    pad: [u8; 8],
}

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Huge {
    bytes: [u8; 300],
}

/// Values whose constructors are the bus's, obtained from a decoded slot.
fn ty(raw: u16) -> EventType {
    let mut b = [0u8; 256];
    b[48..50].copy_from_slice(&raw.to_ne_bytes());
    Event::<256>::from_bytes(&b).unwrap().header().event_type()
}

fn agent(raw: u32) -> AgentId {
    let mut b = [0u8; 256];
    b[44..48].copy_from_slice(&raw.to_ne_bytes());
    Event::<256>::from_bytes(&b)
        .unwrap()
        .header()
        .destination()
        .unwrap()
}

struct SubModel {
    /// `None` in a template (a group's, or before the bus answered).
    id: Option<SubscriptionId>,
    shard: usize,
    types: Vec<u16>,
    source: Option<u32>,
    tap: Option<u32>,
    priorities: u8,
    agent: Option<u32>,
    predicate: Option<(u64, u64)>,
    /// The group it is a member of (index into `Harness::groups`).
    group: Option<usize>,
    /// Subscribed on the bus (affects where publishes go).
    registered: bool,
    /// In its shard's router (set/cleared when the shard applies the control message).
    active: bool,
    delivered: u64,
    /// Deliveries answered `Fail` (dead-lettered).
    failed: u64,
}

impl SubModel {
    /// The router's rule (router.rs module doc): a direct event reaches the routes for or
    /// tapping its destination, a broadcast every route; then the filter must pass.
    fn routes(&self, e: &EvModel) -> bool {
        let direct_ok = match e.destination {
            Some(d) => self.agent == Some(d) || self.tap == Some(d),
            None => true,
        };
        direct_ok
            && (self.types.is_empty() || self.types.contains(&e.ty))
            && self.source.is_none_or(|s| s == e.source)
            && (self.priorities == 0 || self.priorities & (1 << e.priority) != 0)
            && self.predicate.is_none_or(|(m, r)| e.correlation % m != r)
    }

    /// Whether the bus must send events of this kind to this subscription's shard.
    fn targets(&self, ty: u16, destination: Option<u32>) -> bool {
        match destination {
            Some(d) => self.agent == Some(d) || self.tap == Some(d),
            None => self.types.is_empty() || self.types.contains(&ty),
        }
    }
}

#[derive(Debug, Clone)]
struct EvModel {
    id: u64,
    source: u32,
    publisher: usize,
    ty: u16,
    priority: usize,
    destination: Option<u32>,
    correlation: u64,
    timestamp: u64,
    payload: Option<u32>,
    /// Position in its publisher's sequence (for the per-publisher order check).
    seq: u64,
}

enum Ctl {
    Add(usize),
    Remove(usize),
}

struct Harness {
    bus: Bus,
    clock: ManualClock,
    shards: Vec<Shard>,
    nshards: usize,
    caps: [usize; 4],
    agents: Vec<AgentId>,
    /// Every publisher made, by creation order (`None` once dropped).
    publishers: Vec<Option<Publisher>>,
    /// Input publisher number -> index in `publishers` of its live publisher.
    slot_of: [Option<usize>; MAX_PUBLISHERS],
    /// lanes[publisher][shard][priority]
    lanes: Vec<Vec<[VecDeque<EvModel>; 4]>>,
    pub_seq: Vec<u64>,
    /// The agent of each publisher.
    pub_agent: Vec<u32>,
    subs: Vec<SubModel>,
    /// Groups: their id and a template (filter, agent, shard) their members share.
    groups: Vec<(GroupId, SubModel)>,
    pending: Vec<Vec<Ctl>>,
    next_shard: usize,
    log: Arc<Mutex<Vec<Rec>>>,
    poll_no: Arc<AtomicU64>,
    // Model counters.
    published: u64,
    unroutable: u64,
    rejected_full: u64,
    rejected_invalid: u64,
    enqueued: Vec<[u64; 4]>,
    dispatched: Vec<[u64; 4]>,
    delivered: Vec<[u64; 4]>,
    unmatched: Vec<[u64; 4]>,
    dead_letter_unroutable: bool,
    dead_letter_drop_oldest: bool,
    /// The dead-letter ring as the model expects it, and its counters.
    letters: VecDeque<Letter>,
    letters_stored: u64,
    letters_dropped: u64,
    dead_lettered: Vec<u64>,
    ids: std::collections::HashSet<u64>,
    /// Last lane position delivered per (sub, publisher, priority).
    order: HashMap<(u64, usize, usize), u64>,
}

impl Harness {
    fn new(input: &Input) -> Self {
        let nshards = usize::from(input.shards % 3) + 1;
        let caps = input.ring_log2.map(|l| 1usize << (l % 4));
        let clock = ManualClock::new();
        let mut b = Bus::builder()
            .mode(RunMode::Poll)
            .shards(nshards)
            .manual_clock(clock.clone())
            .starvation_guard(u32::from(input.guard % 4) + 1)
            .dead_letter_unroutable(input.dead_letter_unroutable)
            .dead_letters(
                usize::from(input.dead_letter_capacity % 16) + 1,
                if input.dead_letter_drop_oldest {
                    FullPolicy::DropOldest
                } else {
                    FullPolicy::RejectNew
                },
            );
        for (p, &cap) in Priority::ALL.iter().zip(&caps) {
            b = b.ring_capacity(*p, cap);
        }
        let bus = b.build().expect("valid config");
        let agents: Vec<AgentId> = (0..AGENTS)
            .map(|i| bus.register_agent(&format!("agent-{i}")).unwrap())
            .collect();
        for (i, a) in agents.iter().enumerate() {
            assert_eq!(a.raw(), i as u32);
        }
        assert_eq!(bus.register_event_type("fuzz.custom").unwrap().raw(), 7);
        let shards = bus.take_shards().expect("poll mode");
        assert_eq!(shards.len(), nshards);
        assert!(matches!(
            bus.take_shards(),
            Err(BusError::ShardsUnavailable(_))
        ));
        Harness {
            bus,
            clock,
            shards,
            nshards,
            caps,
            agents,
            publishers: Vec::new(),
            slot_of: [None; MAX_PUBLISHERS],
            lanes: Vec::new(),
            pub_seq: Vec::new(),
            pub_agent: Vec::new(),
            subs: Vec::new(),
            groups: Vec::new(),
            pending: (0..nshards).map(|_| Vec::new()).collect(),
            next_shard: 0,
            log: Arc::default(),
            poll_no: Arc::default(),
            published: 0,
            unroutable: 0,
            rejected_full: 0,
            rejected_invalid: 0,
            enqueued: vec![[0; 4]; nshards],
            dispatched: vec![[0; 4]; nshards],
            delivered: vec![[0; 4]; nshards],
            unmatched: vec![[0; 4]; nshards],
            dead_letter_unroutable: input.dead_letter_unroutable,
            dead_letter_drop_oldest: input.dead_letter_drop_oldest,
            letters: VecDeque::new(),
            letters_stored: 0,
            letters_dropped: 0,
            dead_lettered: vec![0; nshards],
            ids: Default::default(),
            order: HashMap::new(),
        }
    }

    /// The subscription a spec describes, its model (shard still unknown), and what the
    /// bus must answer: the shard it lands on, or the error of its first failing check.
    fn build(&self, s: &SubSpec) -> (Subscription, SubModel, Result<usize, BusError>) {
        let types: Vec<u16> = s
            .types
            .iter()
            .take(3)
            .map(|t| u16::from(*t) % (TYPES + 1))
            .collect();
        let mut filter = Filter::any();
        for &t in &types {
            filter = filter.or_type(ty(t));
        }
        let mut types_dedup = Vec::new();
        for t in types {
            if !types_dedup.contains(&t) {
                types_dedup.push(t);
            }
        }
        let source = s.source.map(|a| u32::from(a) % (AGENTS + 1));
        let tap = s.tap.map(|a| u32::from(a) % (AGENTS + 1));
        let for_agent = s.for_agent.map(|a| u32::from(a) % (AGENTS + 1));
        if let Some(a) = source {
            filter = filter.from_source(agent(a));
        }
        if let Some(a) = tap {
            filter = filter.to_destination(agent(a));
        }
        let priorities = s.priorities & 0xf;
        if priorities != 0 {
            let levels: Vec<Priority> = Priority::ALL
                .into_iter()
                .filter(|p| priorities & (1 << p.index()) != 0)
                .collect();
            filter = filter.priorities(&levels);
        }
        let predicate = s
            .predicate
            .map(|(m, r)| (u64::from(m % 3) + 2, u64::from(r % 4)));
        if let Some((m, r)) = predicate {
            filter = filter.matching(move |h| h.correlation_id() % m != r);
        }
        let mut sub = Subscription::new(filter);
        if let Some(a) = for_agent {
            sub = sub.for_agent(agent(a));
        }
        let shard_req = s.shard.map(|k| usize::from(k) % (self.nshards + 1));
        if let Some(k) = shard_req {
            sub = sub.on_shard(k);
        }
        // The bus's checks, in its order.
        let expected: Result<usize, BusError> =
            if let Some(&t) = types_dedup.iter().find(|&&t| t >= TYPES) {
                Err(BusError::UnknownEventType(t))
            } else if let Some(a) = for_agent.into_iter().chain(tap).find(|&a| a >= AGENTS) {
                Err(BusError::UnknownAgent(a))
            } else if let Some(a) = source.filter(|&a| a >= AGENTS) {
                Err(BusError::UnknownAgent(a))
            } else {
                match shard_req {
                    Some(k) if k >= self.nshards => Err(BusError::NoSuchShard {
                        index: k,
                        shards: self.nshards,
                    }),
                    Some(k) => Ok(k),
                    None => Ok(self.next_shard % self.nshards),
                }
            };
        let model = SubModel {
            id: None,
            shard: usize::MAX,
            types: types_dedup,
            source,
            tap,
            priorities,
            agent: for_agent,
            predicate,
            group: None,
            registered: false,
            active: false,
            delivered: 0,
            failed: 0,
        };
        (sub, model, expected)
    }

    /// A handler that logs each delivery and answers with `acts` in turn.
    fn handler(
        &self,
        acts: &[Act],
    ) -> impl FnMut(&dreamnet_bus::Delivery<'_, 256>) -> Outcome + Send + 'static {
        let log = Arc::clone(&self.log);
        let poll_no = Arc::clone(&self.poll_no);
        let acts: Vec<Act> = if acts.is_empty() {
            vec![Act::Done]
        } else {
            acts.iter().take(8).copied().collect()
        };
        let mut turn = 0usize;
        move |d| {
            let h = d.header();
            let act = acts[turn % acts.len()];
            turn += 1;
            log.lock().unwrap().push(Rec {
                act,
                poll: poll_no.load(Ordering::Relaxed),
                sub: d.subscription(),
                id: h.id(),
                source: h.source().raw(),
                timestamp: h.timestamp_ns(),
                correlation: h.correlation_id(),
                now_ns: d.now_ns(),
                attempts: d.envelope().attempts,
                payload: d.payload::<Body>().ok().map(|b| b.seq.to_native()),
            });
            outcome(act)
        }
    }

    fn add_member(&mut self, id: SubscriptionId, mut model: SubModel, shard: usize) {
        if let Some(prev) = self.subs.last() {
            assert!(Some(id) > prev.id, "subscription ids are never reused");
        }
        model.id = Some(id);
        model.shard = shard;
        model.registered = true;
        let idx = self.subs.len();
        self.subs.push(model);
        self.pending[shard].push(Ctl::Add(idx));
    }

    fn subscribe(&mut self, s: &SubSpec) {
        if self.subs.len() >= MAX_SUBS {
            return;
        }
        let (sub, model, expected) = self.build(s);
        let handler = self.handler(&s.acts);
        match (self.bus.subscribe_with(sub, handler), expected) {
            (Ok(id), Ok(shard)) => {
                if s.shard.is_none() {
                    self.next_shard += 1;
                }
                self.add_member(id, model, shard);
            }
            (Err(g), Err(w)) => assert_eq!(g, w),
            (g, w) => panic!("subscribe: bus {g:?}, model {w:?}"),
        }
    }

    fn group(&mut self, s: &SubSpec, least_loaded: bool) {
        if self.groups.len() >= 4 {
            return;
        }
        let (sub, model, expected) = self.build(s);
        let balance = if least_loaded {
            Balance::LeastLoaded
        } else {
            Balance::RoundRobin
        };
        let name = format!("group-{}", self.groups.len());
        match (self.bus.group(&name, sub, balance), expected) {
            (Ok(g), Ok(shard)) => {
                if s.shard.is_none() {
                    self.next_shard += 1;
                }
                let mut model = model;
                model.shard = shard;
                self.groups.push((g, model));
                // Same name again: refused.
                assert_eq!(
                    self.bus
                        .group(&name, Subscription::new(Filter::any()), balance)
                        .unwrap_err(),
                    BusError::GroupExists(name)
                );
            }
            (Err(g), Err(w)) => assert_eq!(g, w),
            (g, w) => panic!("group: bus {g:?}, model {w:?}"),
        }
    }

    fn join(&mut self, n: u8, acts: &[Act]) {
        if self.groups.is_empty() || self.subs.len() >= MAX_SUBS {
            return;
        }
        let gi = usize::from(n) % self.groups.len();
        let (g, template) = &self.groups[gi];
        let g = *g;
        let model = SubModel {
            id: template.id,
            shard: template.shard,
            types: template.types.clone(),
            group: Some(gi),
            delivered: 0,
            failed: 0,
            ..*template
        };
        let shard = model.shard;
        let handler = self.handler(acts);
        let id = self.bus.join(g, handler).expect("join an existing group");
        self.add_member(id, model, shard);
    }

    fn unsubscribe(&mut self, n: u8) {
        if self.subs.is_empty() {
            return;
        }
        let idx = usize::from(n) % self.subs.len();
        let id = self.subs[idx].id.expect("a member has an id");
        let got = self.bus.unsubscribe(id);
        if self.subs[idx].registered {
            assert_eq!(got, Ok(()));
            self.subs[idx].registered = false;
            self.pending[self.subs[idx].shard].push(Ctl::Remove(idx));
            assert!(self.bus.subscription_stats(id).is_none());
        } else {
            assert_eq!(got, Err(BusError::UnknownSubscription(id)));
        }
    }

    /// The live publisher for input number `p`, made on first use (bound to agent
    /// `p % AGENTS`); `None` when the bus would exceed `MAX_MADE` publishers.
    fn publisher(&mut self, p: u8) -> Option<usize> {
        let p = usize::from(p) % MAX_PUBLISHERS;
        if let Some(i) = self.slot_of[p] {
            return Some(i);
        }
        if self.publishers.len() >= MAX_MADE {
            return None;
        }
        let a = self.agents[p % self.agents.len()];
        let publisher = self.bus.publisher(a).expect("publisher");
        assert_eq!(publisher.agent(), a);
        self.publishers.push(Some(publisher));
        self.pub_agent.push(a.raw());
        self.lanes
            .push((0..self.nshards).map(|_| Default::default()).collect());
        self.pub_seq.push(0);
        let i = self.publishers.len() - 1;
        self.slot_of[p] = Some(i);
        Some(i)
    }

    /// Drops publisher `p`: its shards retire its lanes once they are empty, and every
    /// event it had queued is still delivered. Its lanes can no longer be measured through
    /// `free_slots`, so `poll` infers them from the shard's per-priority `dispatched`
    /// count; that is exact while at most one dropped publisher has events queued, so the
    /// drop is skipped otherwise.
    fn drop_publisher(&mut self, p: u8) {
        let p = usize::from(p) % MAX_PUBLISHERS;
        let Some(i) = self.slot_of[p] else {
            return;
        };
        let busy_dropped = (0..self.publishers.len())
            .filter(|&j| j != i && self.publishers[j].is_none())
            .any(|j| self.lanes[j].iter().flatten().any(|l| !l.is_empty()));
        if busy_dropped {
            return;
        }
        self.slot_of[p] = None;
        self.publishers[i] = None;
    }

    fn publish(&mut self, s: PubSpec) {
        let Some(p) = self.publisher(s.publisher) else {
            return;
        };
        let source = self.pub_agent[p];
        let tyr = u16::from(s.ty) % (TYPES + 1);
        let priority = usize::from(s.priority % 4);
        let destination = s.destination.map(|a| u32::from(a) % (AGENTS + 1));
        let correlation = u64::from(s.correlation);
        let now = self.clock.now_ns();
        let seq = self.pub_seq[p] + 1;
        // Model: validity, then targets, then room.
        let invalid = if tyr >= TYPES {
            Some((true, u32::from(tyr)))
        } else {
            destination.filter(|&d| d >= AGENTS).map(|d| (false, d))
        };
        let mask: Vec<usize> = (0..self.nshards)
            .filter(|&sh| {
                self.subs
                    .iter()
                    .any(|m| m.registered && m.shard == sh && m.targets(tyr, destination))
            })
            .collect();
        let full = mask
            .iter()
            .any(|&sh| self.lanes[p][sh][priority].len() == self.caps[priority]);
        let prio = Priority::ALL[priority];
        let payload = s.in_place.then_some(seq as u32);
        let result: Result<(u64, u32), String> = if s.in_place {
            let mut draft = Draft::new(ty(tyr))
                .priority(prio)
                .correlation_id(correlation);
            if let Some(d) = destination {
                draft = draft.to(agent(d));
            }
            let r = if s.oversized {
                self.publishers[p]
                    .as_mut()
                    .expect("live")
                    .try_publish_with(draft, &Huge { bytes: [7; 300] })
            } else {
                self.publishers[p].as_mut().expect("live").try_publish_with(
                    draft,
                    &Body {
                        seq: seq as u32,
                        pad: [1; 8],
                    },
                )
            };
            r.map(|r| (r.id, r.shards)).map_err(|e| match e {
                PublishError::Full(()) => "full".to_string(),
                PublishError::UnknownEventType { id, .. } => format!("type {id}"),
                PublishError::UnknownAgent { id, .. } => format!("agent {id}"),
                PublishError::Payload(PayloadError::TooLarge { .. }) => "too large".into(),
                other => format!("{other:?}"),
            })
        } else {
            let mut e = Event::new(ty(tyr))
                .with_priority(prio)
                .with_correlation_id(correlation);
            e.set_destination(destination.map(agent));
            let r = self.publishers[p].as_mut().expect("live").try_publish(e);
            r.map(|r| (r.id, r.shards)).map_err(|e| match e {
                PublishError::Full(back) => {
                    assert_eq!(back.header().correlation_id(), correlation);
                    assert_eq!(back.header().event_type().raw(), tyr);
                    "full".to_string()
                }
                PublishError::UnknownEventType { id, event } => {
                    assert_eq!(event.header().correlation_id(), correlation);
                    format!("type {id}")
                }
                PublishError::UnknownAgent { id, event } => {
                    assert_eq!(event.header().correlation_id(), correlation);
                    format!("agent {id}")
                }
                other => format!("{other:?}"),
            })
        };
        let expected: Result<(), String> = match invalid {
            Some((true, id)) => Err(format!("type {id}")),
            Some((false, id)) => Err(format!("agent {id}")),
            None if s.in_place && s.oversized && (mask.is_empty() || !full) => {
                Err("too large".into())
            }
            None if !mask.is_empty() && full => Err("full".into()),
            None => Ok(()),
        };
        match (result, expected) {
            (Ok((id, shards)), Ok(())) => {
                assert!(self.ids.insert(id), "event id {id} handed out twice");
                assert_eq!(shards as usize, mask.len(), "receipt shard count");
                self.pub_seq[p] = seq;
                self.published += 1;
                let ev = EvModel {
                    id,
                    source,
                    publisher: p,
                    ty: tyr,
                    priority,
                    destination,
                    correlation,
                    timestamp: now,
                    payload,
                    seq,
                };
                if mask.is_empty() {
                    self.unroutable += 1;
                    if self.dead_letter_unroutable {
                        self.letter(Letter {
                            id,
                            sub: None,
                            reason: DeadReason::NoSubscriber,
                            attempts: 0,
                        });
                    }
                }
                for &sh in &mask {
                    self.lanes[p][sh][priority].push_back(ev.clone());
                    self.enqueued[sh][priority] += 1;
                }
            }
            (Err(g), Err(w)) => {
                assert_eq!(g, w);
                match w.as_str() {
                    "full" => self.rejected_full += 1,
                    "too large" => {}
                    _ => self.rejected_invalid += 1,
                }
            }
            (g, w) => panic!("publish {s:?}: bus {g:?}, model {w:?} (mask {mask:?})"),
        }
        // Ring fill levels as each publisher sees them.
        for (pi, publisher) in self.publishers.iter().enumerate() {
            let Some(publisher) = publisher else {
                continue;
            };
            for sh in 0..self.nshards {
                for q in 0..4 {
                    assert_eq!(
                        publisher.free_slots(sh, Priority::ALL[q]),
                        self.caps[q] - self.lanes[pi][sh][q].len()
                    );
                }
            }
        }
    }

    fn poll(&mut self, k: usize, max: usize) -> usize {
        // The shard applies its control messages first.
        for ctl in std::mem::take(&mut self.pending[k]) {
            match ctl {
                Ctl::Add(i) => self.subs[i].active = true,
                Ctl::Remove(i) => self.subs[i].active = false,
            }
        }
        let poll = self.poll_no.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.clock.now_ns();
        self.log.lock().unwrap().clear();
        let n = self.shards[k].poll(max);
        assert!(n <= max);
        let recs = std::mem::take(&mut *self.log.lock().unwrap());
        // Which events were taken: a prefix of each lane, of the length the lane shrank.
        let mut taken: Vec<EvModel> = Vec::new();
        let dispatched_now = self.bus.stats().shards[k].dispatched;
        for q in 0..4 {
            let mut known = 0u64;
            let mut dropped_lane = None;
            for p in 0..self.publishers.len() {
                let Some(publisher) = &self.publishers[p] else {
                    if !self.lanes[p][k][q].is_empty() {
                        assert!(dropped_lane.is_none(), "model: two dropped lanes busy");
                        dropped_lane = Some(p);
                    }
                    continue;
                };
                let now_len = self.caps[q] - publisher.free_slots(k, Priority::ALL[q]);
                let lane = &mut self.lanes[p][k][q];
                assert!(now_len <= lane.len(), "a lane grew during a poll");
                let gone = lane.len() - now_len;
                known += gone as u64;
                taken.extend(lane.drain(..gone));
            }
            // A dropped publisher's lane: whatever else the shard counts as dispatched.
            let total = dispatched_now[q] - self.dispatched[k][q];
            assert!(total >= known, "dispatched count below what the lanes lost");
            let rest = (total - known) as usize;
            match dropped_lane {
                Some(p) => {
                    let lane = &mut self.lanes[p][k][q];
                    assert!(rest <= lane.len(), "took more than a retired lane held");
                    taken.extend(lane.drain(..rest));
                }
                None => assert_eq!(rest, 0, "dispatched events that no lane lost"),
            }
            if n < max {
                for p in 0..self.publishers.len() {
                    assert!(
                        self.lanes[p][k][q].is_empty(),
                        "poll returned {n} < {max} with events left"
                    );
                }
            }
        }
        assert_eq!(taken.len(), n, "poll's count vs the lanes");
        // Each taken event went exactly to the active matching subscriptions of this shard.
        let by_id: HashMap<u64, &EvModel> = taken.iter().map(|e| (e.id, e)).collect();
        let mut got: HashMap<u64, Vec<SubscriptionId>> = HashMap::new();
        for r in &recs {
            assert_eq!(r.poll, poll);
            let e = by_id
                .get(&r.id)
                .unwrap_or_else(|| panic!("delivered event {} not taken in this poll", r.id));
            assert_eq!(r.source, e.source, "source");
            assert_eq!(r.timestamp, e.timestamp, "timestamp");
            assert_eq!(r.correlation, e.correlation, "correlation");
            assert_eq!(r.now_ns, now, "delivery clock");
            assert_eq!(r.attempts, 1, "first attempt");
            assert_eq!(r.payload, e.payload, "payload");
            got.entry(r.id).or_default().push(r.sub);
            // Per subscription, per publisher, per priority: publish order.
            let key = (r.sub.raw(), e.publisher, e.priority);
            if let Some(&last) = self.order.get(&key) {
                assert!(
                    e.seq > last,
                    "order: {} after {} for {:?}",
                    e.seq,
                    last,
                    key
                );
            }
            self.order.insert(key, e.seq);
        }
        for e in &taken {
            // Plain subscriptions: each matching active one, once.
            let mut want: Vec<SubscriptionId> = self
                .subs
                .iter()
                .filter(|m| m.group.is_none() && m.shard == k && m.active && m.routes(e))
                .filter_map(|m| m.id)
                .collect();
            let mut have = got.remove(&e.id).unwrap_or_default();
            // Groups: exactly one of the active members of each matching group.
            for (gi, (_, g)) in self.groups.iter().enumerate() {
                if g.shard != k || !g.routes(e) {
                    continue;
                }
                let members: Vec<SubscriptionId> = self
                    .subs
                    .iter()
                    .filter(|m| m.group == Some(gi) && m.active)
                    .filter_map(|m| m.id)
                    .collect();
                let chosen: Vec<SubscriptionId> = have
                    .iter()
                    .copied()
                    .filter(|id| members.contains(id))
                    .collect();
                if members.is_empty() {
                    assert!(chosen.is_empty());
                } else {
                    assert_eq!(
                        chosen.len(),
                        1,
                        "group {gi}: {chosen:?} of {members:?} for {e:?}"
                    );
                    want.push(chosen[0]);
                }
            }
            want.sort();
            have.sort();
            assert_eq!(have, want, "deliveries of {e:?}");
            for m in self
                .subs
                .iter_mut()
                .filter(|m| m.id.is_some_and(|id| want.contains(&id)))
            {
                m.delivered += 1;
            }
            self.dispatched[k][e.priority] += 1;
            if want.is_empty() {
                self.unmatched[k][e.priority] += 1;
            } else {
                self.delivered[k][e.priority] += want.len() as u64;
            }
        }
        // What the handlers answered: a failure is dead-lettered, in delivery order.
        for r in &recs {
            if let Act::Fail(code) = r.act {
                self.letter(Letter {
                    id: r.id,
                    sub: Some(r.sub),
                    reason: DeadReason::Failed {
                        code: ErrorCode(u16::from(code)),
                    },
                    attempts: 1,
                });
                self.dead_lettered[k] += 1;
                if let Some(m) = self.subs.iter_mut().find(|m| m.id == Some(r.sub)) {
                    m.failed += 1;
                }
            }
        }
        n
    }

    /// The dead-letter ring's full policy, written out.
    fn letter(&mut self, l: Letter) {
        let cap = self.bus.dead_letters().capacity();
        if self.letters.len() < cap {
            self.letters.push_back(l);
            self.letters_stored += 1;
        } else if self.dead_letter_drop_oldest {
            self.letters.pop_front();
            self.letters.push_back(l);
            self.letters_stored += 1;
            self.letters_dropped += 1;
        } else {
            self.letters_dropped += 1;
        }
    }

    fn check_stats(&self) {
        let st = self.bus.stats();
        assert_eq!(st.published, self.published, "published");
        assert_eq!(st.unroutable, self.unroutable, "unroutable");
        assert_eq!(st.rejected_full, self.rejected_full, "rejected_full");
        assert_eq!(
            st.rejected_invalid, self.rejected_invalid,
            "rejected_invalid"
        );
        assert_eq!(st.shards.len(), self.nshards);
        for (k, s) in st.shards.iter().enumerate() {
            assert_eq!(s.published, self.enqueued[k], "shard {k} enqueued");
            assert_eq!(s.dispatched, self.dispatched[k], "shard {k} dispatched");
            assert_eq!(s.delivered, self.delivered[k], "shard {k} delivered");
            assert_eq!(s.unmatched, self.unmatched[k], "shard {k} unmatched");
            for q in 0..4 {
                let queued: usize = self.lanes.iter().map(|l| l[k][q].len()).sum();
                assert_eq!(s.queued[q], queued as u64, "shard {k} queued");
            }
            assert_eq!(s.panicked, 0);
        }
        // The dead letters: unroutable events (if the bus is set to) and failures, under the
        // ring's full policy.
        let dl = self.bus.dead_letters();
        assert_eq!(dl.len(), self.letters.len(), "dead letters held");
        assert_eq!(dl.stored(), self.letters_stored, "dead letters stored");
        assert_eq!(dl.dropped(), self.letters_dropped, "dead letters dropped");
        assert_eq!(st.dead_letters_dropped, self.letters_dropped);
        let mut held = Vec::new();
        dl.inspect(|d| {
            held.push(Letter {
                id: d.event.header().id(),
                sub: d.subscription,
                reason: d.reason,
                attempts: d.attempts,
            })
        });
        assert!(
            held.iter().eq(self.letters.iter()),
            "dead letters: {held:?} vs model {:?}",
            self.letters
        );
        for (k, s) in st.shards.iter().enumerate() {
            assert_eq!(
                s.dead_lettered, self.dead_lettered[k],
                "shard {k} dead_lettered"
            );
        }
        for m in self.subs.iter().filter(|m| m.registered) {
            let s = self
                .bus
                .subscription_stats(m.id.expect("member"))
                .expect("registered subscription has stats");
            assert_eq!(s.accepted, m.delivered, "accepted of {:?}", m.id);
            assert_eq!(s.attempts, m.delivered);
            assert_eq!(s.done, m.delivered - m.failed);
            assert_eq!(s.dead_lettered, m.failed);
            assert_eq!(s.retried, 0);
        }
    }
}

fuzz_target!(|input: Input| {
    let mut h = Harness::new(&input);
    for op in input.ops.iter().take(300) {
        match op {
            Op::Subscribe(s) => h.subscribe(s),
            Op::Group(s, least_loaded) => h.group(s, *least_loaded),
            Op::Join(n, acts) => h.join(*n, acts),
            Op::Unsubscribe(n) => h.unsubscribe(*n),
            Op::Publish(s) => h.publish(*s),
            Op::Burst(s, n) => {
                for _ in 0..n % 20 {
                    h.publish(*s);
                }
            }
            Op::Poll { shard, max } => {
                let k = usize::from(*shard) % h.nshards;
                h.poll(k, usize::from(*max % 12));
            }
            Op::Drain { shard } => {
                let k = usize::from(*shard) % h.nshards;
                h.poll(k, usize::MAX);
            }
            Op::DropPublisher(p) => h.drop_publisher(*p),
            Op::Advance(ns) => h.clock.advance(Duration::from_nanos(u64::from(*ns))),
        }
        h.check_stats();
    }
    // Conservation: drain every shard, then close.
    for k in 0..h.nshards {
        while h.poll(k, 7) > 0 {}
        assert_eq!(h.poll(k, usize::MAX), 0);
        assert!(h.shards[k].is_idle());
        assert_eq!(h.shards[k].queued(), [0; 4]);
    }
    h.check_stats();
    for lanes in &h.lanes {
        for shard in lanes {
            assert!(
                shard.iter().all(VecDeque::is_empty),
                "an accepted event was never taken"
            );
        }
    }
    let st = h.bus.stats();
    for (k, s) in st.shards.iter().enumerate() {
        assert_eq!(s.published, s.dispatched, "shard {k}: taken != enqueued");
        assert_eq!(s.queued, [0; 4]);
    }
    h.bus.close();
    assert!(h.bus.is_closed());
    if let Some(p) = h.publishers.iter_mut().flatten().next() {
        let e = Event::new(EventType::AGENT_TASK);
        assert!(matches!(p.try_publish(e), Err(PublishError::Closed(_))));
    }
    assert!(matches!(
        h.bus.subscribe(Filter::any(), |_| Outcome::Done),
        Err(BusError::Closed)
    ));
    for k in 0..h.nshards {
        assert_eq!(h.poll(k, usize::MAX), 0, "nothing appears after close");
    }
});
