//! A whole bus in poll mode with a manual clock, driven by an operation sequence:
//! subscribe (random filter, agent, shard, including invalid ones), unsubscribe (including
//! twice), publish (random type, priority, destination, deadline, several publishers, by
//! value or in place, now or scheduled with `try_publish_after` / `try_publish_at`,
//! including invalid ids and oversized payloads), cancel scheduled events, redrive dead
//! letters (to their own subscription, or with `redrive_to` to another), poll a shard
//! (random budget), drain, drop publishers, advance the clock, close the bus mid-run.
//! Handler outcomes are chosen by the input (see `Act`): `Done`, `Fail`, `Retry` with the
//! policy's delay or with `after`, or a panic. Retry policies (the bus's, and optionally a
//! subscription's own) have no jitter, so every due time is computed exactly; the timer
//! wheel is small (1-4 entries) so it fills.
//!
//! The model is a step-by-step simulation of `Shard::poll` (shard.rs, retry.rs,
//! router.rs): every handler call and every dead letter (seen through the bus's dead-letter
//! hook) lands in one trace, in order, and the model consumes that trace as it simulates:
//! - control messages first (lanes, retirement of dropped publishers' lanes,
//!   subscriptions), then the due timer-wheel entries in due-tick order (a retry goes to
//!   its one subscription, or to the dead letters as `Unsubscribed` if it left; a
//!   scheduled event is dispatched unless cancelled), then redriven dead letters (up to
//!   the poll's budget), then the rings in the shard's drain order (priorities with the
//!   starvation guard, lanes in turn), which the model predicts exactly;
//! - a publish goes to the shards whose registered subscriptions may match it, all or
//!   nothing: `Full` exactly when one of those lanes is full; with no such shard it is
//!   unroutable (counted, and dead-lettered `NoSubscriber` if the bus is set to);
//! - each dispatched event is delivered exactly once to every active matching plain
//!   subscription of that shard and to one member of each matching group, the one its
//!   balance picks (round-robin cursor, or least-loaded: fewest retries waiting, then
//!   fewest accepted, then router order), unless its deadline passed (then each of them
//!   gets a `DeadlineExceeded` letter instead);
//! - after a handler: `Done`; `Fail` -> `Failed { code }`; a panic -> `Panicked` with
//!   `ErrorCode::PANICKED` (and the shard goes on); `Retry` -> `RetriesExhausted`
//!   at `max_attempts`, `DeadlineExceeded` if the retry would be due after the deadline,
//!   `RetryCapacity` if the wheel is full, else a wheel entry due at
//!   `ceil((now + delay) / tick)` ticks, fired at the first poll with
//!   `floor(now / tick) >= due`;
//! - scheduled events wait on the wheel of each shard they went to until due, are never
//!   delivered before their time and never after a successful cancel;
//! - after `close`: publishes are `Closed` (the event handed back), subscribe, join,
//!   publisher and redrive are `Err(Closed)`; a shard that has applied the stop and is
//!   idle at the end of a poll sends every wheel entry, in due order, to the dead letters
//!   as `Shutdown` (a scheduled event once, by the first of its shards);
//! - per subscription, events of one publisher at one priority (not scheduled) arrive in
//!   publish order;
//! - after every op: `bus.stats()` (per shard, dead letters by reason, retries, schedule
//!   and redrive counters, timers pending), every subscription's stats, the dead-letter
//!   ring (contents and counters) and the publishers' free slots agree with the model;
//! - conservation at the end (drain, advance the clock until every wheel is empty,
//!   close): every accepted event was taken exactly once from every lane it entered, and
//!   for every subscription `accepted = done + dead_lettered`.
#![no_main]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbitrary::Arbitrary;
use dreamnet_bus::{
    AgentId, Balance, Bus, BusError, DeadReason, Draft, ErrorCode, Event, EventType, Filter,
    FullPolicy, GroupId, Jitter, ManualClock, Outcome, PayloadError, Priority, PublishError,
    Publisher, RetryPolicy, ScheduleToken, Shard, Subscription, SubscriptionId,
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
/// The timer wheel's horizon (timer_wheel.rs): a deadline this many ticks or more after
/// the wheel's time is refused.
const HORIZON_TICKS: u64 = 1 << 36;

/// What a handler does with a delivery.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Done,
    Fail(u8),
    /// Retry after the policy's delay.
    Retry(u8),
    /// Retry after `after_ns(n)` (capped by the policy).
    RetryAfter(u8, u8),
    /// Panic (the bus catches it: a `Panicked` dead letter, `ErrorCode::PANICKED`).
    Panic,
}

/// The payload of a handler's deliberate panic. It unwinds with `resume_unwind`, which
/// skips the panic hook (libFuzzer's hook aborts the process).
struct HandlerPanic;

/// A retry policy without jitter, and its integer multiplier (so the model computes
/// every delay exactly).
#[derive(Debug, Clone, Copy)]
struct ExactPolicy {
    policy: RetryPolicy,
    multiplier: u64,
}

impl ExactPolicy {
    /// max_attempts `1 + a % 4`, base `b % 5 * 500 us`, multiplier `1 + m % 3`,
    /// cap `max(base, 1 us) * (1 + c % 4)`.
    fn new(a: u8, b: u8, m: u8, c: u8) -> Self {
        let base = u64::from(b % 5) * 500_000;
        let multiplier = u64::from(m % 3) + 1;
        let cap = base.max(1_000) * (u64::from(c % 4) + 1);
        let policy = RetryPolicy::builder()
            .max_attempts(u32::from(a % 4) + 1)
            .base(Duration::from_nanos(base))
            .multiplier(multiplier as f64)
            .cap(Duration::from_nanos(cap))
            .jitter(Jitter::None)
            .build()
            .expect("valid policy");
        ExactPolicy { policy, multiplier }
    }

    /// `min(cap, base * multiplier^(attempt - 1))`.
    fn exp_delay(&self, attempt: u32) -> u64 {
        let cap = self.policy.cap.as_nanos();
        let mut d = self.policy.base.as_nanos();
        for _ in 1..attempt {
            d = (d * u128::from(self.multiplier)).min(cap);
        }
        d.min(cap) as u64
    }

    fn cap_ns(&self) -> u64 {
        self.policy.cap.as_nanos() as u64
    }
}

fn after_ns(n: u8) -> u64 {
    u64::from(n % 16) * 250_000
}

fn outcome(act: Act) -> Outcome {
    match act {
        Act::Done => Outcome::Done,
        Act::Fail(code) => Outcome::fail(u16::from(code)),
        Act::Retry(code) => Outcome::retry(u16::from(code)),
        Act::RetryAfter(code, n) => Outcome::Retry {
            code: ErrorCode(u16::from(code)),
            after: Some(Duration::from_nanos(after_ns(n))),
        },
        Act::Panic => std::panic::resume_unwind(Box::new(HandlerPanic)),
    }
}

/// One dead letter as the model expects it.
#[derive(Debug, Clone)]
struct Letter {
    ev: EvModel,
    sub: Option<SubscriptionId>,
    reason: DeadReason,
    attempts: u32,
    last_error: Option<ErrorCode>,
    first_ns: u64,
    last_ns: u64,
    shard: usize,
}

/// What the bus's dead-letter hook saw (and what `inspect` shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DeadRec {
    id: u64,
    sub: Option<SubscriptionId>,
    reason: DeadReason,
    attempts: u32,
    last_error: Option<ErrorCode>,
    first_ns: u64,
    last_ns: u64,
    shard: usize,
    /// The event header's attempts.
    header_attempts: u16,
}

impl DeadRec {
    fn of(d: &dreamnet_bus::DeadLetter<256>) -> Self {
        DeadRec {
            id: d.event.header().id(),
            sub: d.subscription,
            reason: d.reason,
            attempts: d.attempts,
            last_error: d.last_error,
            first_ns: d.first_attempt_ns,
            last_ns: d.last_attempt_ns,
            shard: d.shard,
            header_attempts: d.event.header().attempts(),
        }
    }
}

/// What the model and the bus must agree on for one dead letter: event id, subscription,
/// reason, attempts, last error, first and last attempt times, shard.
type LetterKey = (
    u64,
    Option<SubscriptionId>,
    DeadReason,
    u32,
    Option<ErrorCode>,
    u64,
    u64,
    usize,
);

impl Letter {
    fn key(&self) -> LetterKey {
        (
            self.ev.id,
            self.sub,
            self.reason,
            self.attempts,
            self.last_error,
            self.first_ns,
            self.last_ns,
            self.shard,
        )
    }
}

impl DeadRec {
    fn key(&self) -> LetterKey {
        (
            self.id,
            self.sub,
            self.reason,
            self.attempts,
            self.last_error,
            self.first_ns,
            self.last_ns,
            self.shard,
        )
    }
}

/// The trace of one operation: handler calls and dead letters, in order.
#[derive(Debug, Clone)]
enum Tr {
    Call(Rec),
    Dead(DeadRec),
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
    /// Its own retry policy (`ExactPolicy::new`) instead of the bus's.
    retry: Option<(u8, u8, u8, u8)>,
}

/// When a by-value publish is scheduled.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum When {
    /// `try_publish_after(n * 250 us)`.
    After(u8),
    /// `try_publish_at(n * 500 us)` (possibly in the past).
    At(u8),
    /// `try_publish_at` beyond the wheel's horizon: refused with `BeyondHorizon` (the
    /// bus accepts at most half the horizon ahead), before the intake gate.
    Far,
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
    /// A deadline `1 + n * 250 us` after now.
    deadline: Option<u8>,
    /// By value only: scheduled.
    when: Option<When>,
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
    /// Advance the clock by `n % 2^23` ns (about 8 ms at most).
    Advance(u32),
    /// Cancel the scheduled event of token `n` (mod tokens handed out).
    Cancel(u8),
    /// `bus.redrive(max, select)`: letters whose reason index is in `reasons` (0: any).
    Redrive {
        max: u8,
        reasons: u8,
    },
    /// `bus.redrive_to(max, subscription n, select)` (the subscription may be gone).
    RedriveTo {
        max: u8,
        reasons: u8,
        target: u8,
    },
    /// `bus.close()` when `n % 8 == 0` (so most runs get far before closing): publishes,
    /// subscribes and redrives are refused from then on; each shard, once idle, sends
    /// what waits on its wheel to the dead letters (`Shutdown`).
    Close(u8),
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
    /// Timer wheel capacity `1 + n % 4`.
    timer_capacity: u8,
    /// The tick: 1 ms, 250 us or 1 us.
    tick: u8,
    /// The bus's retry policy (`ExactPolicy::new`).
    retry: (u8, u8, u8, u8),
    ops: Vec<Op>,
}

/// One handler call as the handler saw it.
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
    deadline: Option<u64>,
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

/// A subscription's counters as the model expects them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    accepted: u64,
    attempts: u64,
    done: u64,
    retried: u64,
    dead_lettered: u64,
    panicked: u64,
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
    /// Its own retry policy (members share their group's).
    retry: Option<ExactPolicy>,
    /// The group it is a member of (index into `Harness::groups`).
    group: Option<usize>,
    /// Subscribed on the bus (affects where publishes go).
    registered: bool,
    /// In its shard's router (set/cleared when the shard applies the control message).
    active: bool,
    /// Retries of it waiting on the wheel (what least-loaded balancing compares first).
    outstanding: u32,
    c: Counts,
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
    /// The publish time, or the due time of a scheduled event.
    timestamp: u64,
    deadline: Option<u64>,
    scheduled: bool,
    payload: Option<u32>,
    /// Position in its publisher's sequence (for the per-publisher order check).
    seq: u64,
}

impl EvModel {
    fn expired(&self, now: u64) -> bool {
        self.deadline.is_some_and(|d| now > d)
    }
}

enum Ctl {
    Add(usize),
    Remove(usize),
    Lanes(usize),
    Gone(usize),
    /// The bus is closing.
    Stop,
}

/// A timer-wheel entry.
#[derive(Debug, Clone)]
enum Kind {
    Retry {
        sub: SubscriptionId,
        attempts: u32,
        first_ns: u64,
        last_error: Option<ErrorCode>,
    },
    Sched,
}

#[derive(Debug, Clone)]
struct Timer {
    due_tick: u64,
    /// Insertion order (ties fire in it).
    seq: u64,
    ev: EvModel,
    kind: Kind,
}

/// A shard's side of the lanes: what `Shard` keeps to pick the next event.
#[derive(Default)]
struct ShardSide {
    /// Publisher indices, per priority, in the order the shard holds their lanes.
    lanes: [Vec<usize>; 4],
    cursors: [usize; 4],
    starved_for: [u32; 4],
    retiring: Vec<usize>,
}

/// Where a delivery's retry history stands.
#[derive(Clone, Copy)]
struct History {
    first_ns: u64,
    /// The last code a handler returned in this chain (what `DeadLetter::last_error`
    /// records, also for a retry whose deadline passed on the wheel).
    last_error: Option<ErrorCode>,
}

/// Per-shard counters of the reliability paths.
#[derive(Default, Clone, Copy)]
struct Rel {
    retries_scheduled: u64,
    retries_fired: u64,
    dead_lettered: u64,
    dead_by_reason: [u64; DeadReason::COUNT],
    scheduled_fired: u64,
    scheduled_cancelled: u64,
    redriven: u64,
    panicked: u64,
}

struct Harness {
    bus: Bus,
    clock: ManualClock,
    shards: Vec<Shard>,
    nshards: usize,
    caps: [usize; 4],
    guard: u32,
    tick: u64,
    timer_capacity: usize,
    /// The bus's retry policy.
    policy: ExactPolicy,
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
    /// Per group, what its route in the shard's router holds: the balance, the members
    /// (indices into `subs`) in the router's order, and the round-robin cursor.
    balance: Vec<(Balance, Vec<usize>, usize)>,
    pending: Vec<Vec<Ctl>>,
    side: Vec<ShardSide>,
    wheels: Vec<Vec<Timer>>,
    timer_seq: u64,
    /// Scheduled events not yet fired everywhere: id -> shards left.
    schedule: HashMap<u64, u32>,
    tokens: Vec<ScheduleToken>,
    /// Redriven letters waiting in each shard's queue.
    redrives: Vec<VecDeque<(EvModel, Option<SubscriptionId>)>>,
    next_shard: usize,
    log: Arc<Mutex<Vec<Tr>>>,
    /// Position in `log` the model has consumed.
    cursor: usize,
    poll_no: Arc<AtomicU64>,
    // Model counters.
    published: u64,
    unroutable: u64,
    rejected_full: u64,
    rejected_invalid: u64,
    rejected_closed: u64,
    /// `close` was called; per shard: the shard has applied it.
    closed: bool,
    stopped: Vec<bool>,
    enqueued: Vec<[u64; 4]>,
    dispatched: Vec<[u64; 4]>,
    delivered: Vec<[u64; 4]>,
    unmatched: Vec<[u64; 4]>,
    rel: Vec<Rel>,
    dead_letter_unroutable: bool,
    dead_letter_drop_oldest: bool,
    dead_letter_capacity: usize,
    /// The dead-letter ring as the model expects it, and its counters.
    letters: VecDeque<Letter>,
    letters_stored: u64,
    letters_dropped: u64,
    ids: std::collections::HashSet<u64>,
    /// Last lane position delivered per (sub, publisher, priority).
    order: HashMap<(u64, usize, usize), u64>,
}

impl Harness {
    fn new(input: &Input) -> Self {
        let nshards = usize::from(input.shards % 3) + 1;
        let caps = input.ring_log2.map(|l| 1usize << (l % 4));
        let guard = u32::from(input.guard % 4) + 1;
        let tick = [1_000_000u64, 250_000, 1_000][usize::from(input.tick % 3)];
        let timer_capacity = usize::from(input.timer_capacity % 4) + 1;
        let (a, b, m, c) = input.retry;
        let policy = ExactPolicy::new(a, b, m, c);
        let dead_letter_capacity = usize::from(input.dead_letter_capacity % 16) + 1;
        let clock = ManualClock::new();
        let log: Arc<Mutex<Vec<Tr>>> = Arc::default();
        let hook_log = Arc::clone(&log);
        let mut b = Bus::builder()
            .shards(nshards)
            .manual_clock(clock.clone())
            .starvation_guard(guard)
            .tick(Duration::from_nanos(tick))
            .timer_capacity(timer_capacity)
            .retry_policy(policy.policy)
            .on_dead_letter(move |d| hook_log.lock().unwrap().push(Tr::Dead(DeadRec::of(d))))
            .dead_letter_unroutable(input.dead_letter_unroutable)
            .dead_letters(
                dead_letter_capacity,
                if input.dead_letter_drop_oldest {
                    FullPolicy::DropOldest
                } else {
                    FullPolicy::RejectNew
                },
            );
        for (p, &cap) in Priority::ALL.iter().zip(&caps) {
            b = b.ring_capacity(*p, cap);
        }
        let (bus, shards) = b.build_polled().expect("valid config");
        let agents: Vec<AgentId> = (0..AGENTS)
            .map(|i| bus.register_agent(&format!("agent-{i}")).unwrap())
            .collect();
        for (i, a) in agents.iter().enumerate() {
            assert_eq!(a.raw(), i as u32);
        }
        assert_eq!(bus.register_event_type("fuzz.custom").unwrap().raw(), 7);
        assert_eq!(shards.len(), nshards);
        Harness {
            bus,
            clock,
            shards,
            nshards,
            caps,
            guard,
            tick,
            timer_capacity,
            policy,
            agents,
            publishers: Vec::new(),
            slot_of: [None; MAX_PUBLISHERS],
            lanes: Vec::new(),
            pub_seq: Vec::new(),
            pub_agent: Vec::new(),
            subs: Vec::new(),
            groups: Vec::new(),
            balance: Vec::new(),
            pending: (0..nshards).map(|_| Vec::new()).collect(),
            side: (0..nshards).map(|_| ShardSide::default()).collect(),
            wheels: vec![Vec::new(); nshards],
            timer_seq: 0,
            schedule: HashMap::new(),
            tokens: Vec::new(),
            redrives: vec![VecDeque::new(); nshards],
            next_shard: 0,
            log,
            cursor: 0,
            poll_no: Arc::default(),
            published: 0,
            unroutable: 0,
            rejected_full: 0,
            rejected_invalid: 0,
            rejected_closed: 0,
            closed: false,
            stopped: vec![false; nshards],
            enqueued: vec![[0; 4]; nshards],
            dispatched: vec![[0; 4]; nshards],
            delivered: vec![[0; 4]; nshards],
            unmatched: vec![[0; 4]; nshards],
            rel: vec![Rel::default(); nshards],
            dead_letter_unroutable: input.dead_letter_unroutable,
            dead_letter_drop_oldest: input.dead_letter_drop_oldest,
            dead_letter_capacity,
            letters: VecDeque::new(),
            letters_stored: 0,
            letters_dropped: 0,
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
        let retry = s.retry.map(|(a, b, m, c)| ExactPolicy::new(a, b, m, c));
        if let Some(p) = retry {
            sub = sub.with_retry(p.policy);
        }
        if let Some(a) = for_agent {
            sub = sub.for_agent(agent(a));
        }
        let shard_req = s.shard.map(|k| usize::from(k) % (self.nshards + 1));
        if let Some(k) = shard_req {
            sub = sub.on_shard(k);
        }
        // The bus's checks, in its order.
        let expected: Result<usize, BusError> = if self.closed {
            Err(BusError::Closed)
        } else if let Some(&t) = types_dedup.iter().find(|&&t| t >= TYPES) {
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
            retry,
            group: None,
            registered: false,
            active: false,
            outstanding: 0,
            c: Counts::default(),
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
            log.lock().unwrap().push(Tr::Call(Rec {
                act,
                poll: poll_no.load(Ordering::Relaxed),
                sub: d.subscription(),
                id: h.id(),
                source: h.source().raw(),
                timestamp: h.timestamp_ns(),
                correlation: h.correlation_id(),
                now_ns: d.now_ns(),
                attempts: d.envelope().attempts,
                deadline: h.deadline_ns(),
                payload: d.payload::<Body>().ok().map(|b| b.seq.to_native()),
            }));
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
        match (self.bus.subscribe(sub, handler), expected) {
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
                self.balance.push((balance, Vec::new(), 0));
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
            outstanding: 0,
            c: Counts::default(),
            ..*template
        };
        let shard = model.shard;
        let handler = self.handler(acts);
        if self.closed {
            assert_eq!(self.bus.join(g, handler), Err(BusError::Closed));
            return;
        }
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
        if self.closed {
            assert!(matches!(self.bus.publisher(a), Err(BusError::Closed)));
            return None;
        }
        let publisher = self.bus.publisher(a).expect("publisher");
        assert_eq!(publisher.agent(), a);
        self.publishers.push(Some(publisher));
        self.pub_agent.push(a.raw());
        self.lanes
            .push((0..self.nshards).map(|_| Default::default()).collect());
        self.pub_seq.push(0);
        let i = self.publishers.len() - 1;
        self.slot_of[p] = Some(i);
        for k in 0..self.nshards {
            self.pending[k].push(Ctl::Lanes(i));
        }
        Some(i)
    }

    /// Drops publisher `p`: its shards retire its lanes once they are empty (the model
    /// follows the shard's lane list exactly), and every event it had queued is still
    /// delivered.
    fn drop_publisher(&mut self, p: u8) {
        let p = usize::from(p) % MAX_PUBLISHERS;
        let Some(i) = self.slot_of[p] else {
            return;
        };
        self.slot_of[p] = None;
        self.publishers[i] = None;
        for k in 0..self.nshards {
            self.pending[k].push(Ctl::Gone(i));
        }
    }

    /// The shards a publish of this kind goes to now.
    fn mask(&self, tyr: u16, destination: Option<u32>) -> Vec<usize> {
        (0..self.nshards)
            .filter(|&sh| {
                self.subs
                    .iter()
                    .any(|m| m.registered && m.shard == sh && m.targets(tyr, destination))
            })
            .collect()
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
        let deadline = if s.in_place {
            None
        } else {
            s.deadline.map(|d| now + 1 + u64::from(d % 32) * 250_000)
        };
        let when = if s.in_place { None } else { s.when };
        let at = when.map(|w| match w {
            When::After(n) => now + u64::from(n % 32) * 250_000,
            When::At(n) => u64::from(n) * 500_000,
            When::Far => now.saturating_add((HORIZON_TICKS + 1).saturating_mul(self.tick)),
        });
        // Model: validity, then targets, then room.
        let invalid = if tyr >= TYPES {
            Some((true, u32::from(tyr)))
        } else {
            destination.filter(|&d| d >= AGENTS).map(|d| (false, d))
        };
        let mask = self.mask(tyr, destination);
        let full = mask
            .iter()
            .any(|&sh| self.lanes[p][sh][priority].len() == self.caps[priority]);
        let prio = Priority::ALL[priority];
        let payload = s.in_place.then_some(seq as u32);
        let mut token = None;
        let result: Result<(u64, u32), String> = if s.in_place {
            let mut draft = Draft::new(ty(tyr))
                .with_priority(prio)
                .with_correlation_id(correlation);
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
                PublishError::Closed(()) => "closed".into(),
                other => format!("{other:?}"),
            })
        } else {
            let mut e = Event::new(ty(tyr))
                .with_priority(prio)
                .with_correlation_id(correlation);
            if let Some(d) = deadline {
                e = e.with_deadline_ns(d);
            }
            e.set_destination(destination.map(agent));
            let publisher = self.publishers[p].as_mut().expect("live");
            let r = match when {
                None => publisher.try_publish(e),
                Some(When::After(n)) => publisher
                    .try_publish_after(e, Duration::from_nanos(u64::from(n % 32) * 250_000))
                    .map(|(r, t)| {
                        token = Some(t);
                        r
                    }),
                Some(_) => publisher
                    .try_publish_at(e, at.expect("scheduled"))
                    .map(|(r, t)| {
                        token = Some(t);
                        r
                    }),
            };
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
                PublishError::Closed(back) => {
                    assert_eq!(back.header().correlation_id(), correlation);
                    "closed".into()
                }
                PublishError::BeyondHorizon { event, at_ns, .. } => {
                    assert_eq!(event.header().correlation_id(), correlation);
                    assert_eq!(Some(at_ns), at);
                    "beyond".into()
                }
                other => format!("{other:?}"),
            })
        };
        let expected: Result<(), String> = match invalid {
            // The horizon is checked first, then the intake gate.
            _ if matches!(when, Some(When::Far)) => Err("beyond".into()),
            _ if self.closed => Err("closed".into()),
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
                    timestamp: at.unwrap_or(now),
                    deadline,
                    scheduled: at.is_some(),
                    payload,
                    seq,
                };
                if let Some(t) = token {
                    assert_eq!(t.event_id(), id);
                    self.tokens.push(t);
                    if !mask.is_empty() {
                        self.schedule.insert(id, mask.len() as u32);
                    }
                }
                if mask.is_empty() {
                    self.unroutable += 1;
                    if self.dead_letter_unroutable {
                        self.expect_letter(Letter {
                            ev: ev.clone(),
                            sub: None,
                            reason: DeadReason::NoSubscriber,
                            attempts: 0,
                            last_error: None,
                            first_ns: now,
                            last_ns: now,
                            shard: 0,
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
                    "closed" => self.rejected_closed += 1,
                    "too large" => {}
                    _ => self.rejected_invalid += 1,
                }
            }
            (g, w) => panic!("publish {s:?}: bus {g:?}, model {w:?} (mask {mask:?})"),
        }
    }

    fn cancel(&mut self, n: u8) {
        if self.tokens.is_empty() {
            return;
        }
        let t = self.tokens[usize::from(n) % self.tokens.len()];
        let got = self.bus.cancel_scheduled(t);
        let want = self.schedule.remove(&t.event_id()).is_some();
        assert_eq!(got, want, "cancel_scheduled({t:?})");
    }

    /// `bus.redrive` (`to: None`) or `bus.redrive_to` (`to: Some(n)`, subscription
    /// `n % subs`): oldest first, up to `max` letters that `select` picks and whose
    /// subscription (the target's, or the letter's own) is still there (or, with neither,
    /// whose event routes somewhere now), while the target shard's redrive queue has room.
    fn redrive(&mut self, max: u8, reasons: u8, to: Option<u8>) {
        let max = usize::from(max % 8);
        let sel = move |r: DeadReason| reasons == 0 || reasons & (1 << r.index()) != 0;
        let target = match to {
            None => None,
            Some(_) if self.subs.is_empty() => return,
            Some(n) => Some(&self.subs[usize::from(n) % self.subs.len()]),
        };
        let got = match target {
            None => self.bus.redrive(max, |d| sel(d.reason)),
            Some(m) => {
                let id = m.id.expect("member");
                self.bus.redrive_to(max, id, |d| sel(d.reason))
            }
        };
        let target = match target {
            _ if self.closed => {
                assert_eq!(got, Err(BusError::Closed));
                return;
            }
            Some(m) if !m.registered => {
                let id = m.id.expect("member");
                assert_eq!(got, Err(BusError::UnknownSubscription(id)));
                return;
            }
            Some(m) => m.id,
            None => None,
        };
        let got = got.expect("open bus, known target");
        let mut left = max;
        let mut taken = 0;
        let mut keep = VecDeque::new();
        for l in std::mem::take(&mut self.letters) {
            let target = match target.or(l.sub) {
                Some(id) => self
                    .subs
                    .iter()
                    .find(|m| m.id == Some(id) && m.registered)
                    .map(|m| (m.shard, Some(id))),
                None => self
                    .mask(l.ev.ty, l.ev.destination)
                    .first()
                    .map(|&s| (s, None)),
            };
            let room = |s: usize| self.redrives[s].len() < self.dead_letter_capacity;
            match target {
                Some((s, sub)) if left > 0 && sel(l.reason) && room(s) => {
                    left -= 1;
                    taken += 1;
                    self.redrives[s].push_back((l.ev, sub));
                }
                _ => keep.push_back(l),
            }
        }
        self.letters = keep;
        assert_eq!(got, taken, "redrive count");
    }

    // ---- The trace ----

    fn begin(&mut self) {
        self.log.lock().unwrap().clear();
        self.cursor = 0;
    }

    fn end(&mut self) {
        let log = self.log.lock().unwrap();
        assert_eq!(
            self.cursor,
            log.len(),
            "the bus did more than the model: {:?}",
            &log[self.cursor.min(log.len())..]
        );
    }

    fn next(&mut self) -> Tr {
        let t = self
            .log
            .lock()
            .unwrap()
            .get(self.cursor)
            .cloned()
            .unwrap_or_else(|| panic!("the model expects more than the bus did"));
        self.cursor += 1;
        t
    }

    /// The next trace entry must be dead letter `l`; the model's ring records it.
    fn expect_letter(&mut self, l: Letter) {
        let t = self.next();
        self.check_letter(t, l);
    }

    fn check_letter(&mut self, t: Tr, l: Letter) {
        match t {
            Tr::Dead(d) => assert_eq!(d.key(), l.key(), "dead letter: bus {d:?}, model {l:?}"),
            Tr::Call(r) => panic!("expected dead letter {l:?}, the bus called {r:?}"),
        }
        self.letter(l);
    }

    fn check_call(&self, t: Tr, e: &EvModel, now: u64, attempts: u32) -> Rec {
        let Tr::Call(r) = t else {
            panic!("expected a call of {e:?} (attempt {attempts}), trace has {t:?}")
        };
        assert_eq!(r.poll, self.poll_no.load(Ordering::Relaxed));
        assert_eq!(r.id, e.id, "event id");
        assert_eq!(r.source, e.source, "source");
        assert_eq!(r.timestamp, e.timestamp, "timestamp");
        assert_eq!(r.correlation, e.correlation, "correlation of {e:?}");
        assert_eq!(r.now_ns, now, "delivery clock");
        assert_eq!(r.attempts, attempts, "attempts of {e:?}");
        assert_eq!(r.deadline, e.deadline, "deadline");
        assert_eq!(r.payload, e.payload, "payload");
        r
    }

    fn sub_ix(&self, id: SubscriptionId) -> usize {
        self.subs
            .iter()
            .position(|m| m.id == Some(id))
            .unwrap_or_else(|| panic!("unknown subscription {id:?}"))
    }

    fn shard_dead(&mut self, k: usize, reason: DeadReason) {
        self.rel[k].dead_lettered += 1;
        self.rel[k].dead_by_reason[reason.index()] += 1;
    }

    // ---- The poll, simulated ----

    fn apply_control(&mut self, k: usize) {
        for ctl in std::mem::take(&mut self.pending[k]) {
            match ctl {
                Ctl::Add(i) => {
                    self.subs[i].active = true;
                    if let Some(gi) = self.subs[i].group {
                        self.balance[gi].1.push(i);
                    }
                }
                Ctl::Remove(i) => {
                    self.subs[i].active = false;
                    if let Some(gi) = self.subs[i].group {
                        // The router's `swap_remove`, and its cursor reset.
                        let (_, members, cursor) = &mut self.balance[gi];
                        let pos = members.iter().position(|&m| m == i).expect("a member");
                        members.swap_remove(pos);
                        if *cursor >= members.len() {
                            *cursor = 0;
                        }
                    }
                }
                Ctl::Lanes(p) => {
                    for q in 0..4 {
                        self.side[k].lanes[q].push(p);
                    }
                }
                Ctl::Gone(p) => self.side[k].retiring.push(p),
                Ctl::Stop => self.stopped[k] = true,
            }
        }
        let Harness { side, lanes, .. } = self;
        let side = &mut side[k];
        if !side.retiring.is_empty() {
            for (q, list) in side.lanes.iter_mut().enumerate() {
                list.retain(|&p| !(side.retiring.contains(&p) && lanes[p][k][q].is_empty()));
            }
            let held = &side.lanes;
            side.retiring.retain(|p| held.iter().any(|l| l.contains(p)));
            side.cursors = [0; 4];
        }
    }

    /// A wheel insert: refused beyond the horizon or when full.
    fn insert(&mut self, k: usize, due_ns: u64, now: u64, ev: &EvModel, kind: Kind) -> bool {
        let due_tick = due_ns.div_ceil(self.tick);
        let wnow = now / self.tick;
        if due_tick > wnow && due_tick - wnow >= HORIZON_TICKS {
            return false;
        }
        if self.wheels[k].len() >= self.timer_capacity {
            return false;
        }
        self.timer_seq += 1;
        self.wheels[k].push(Timer {
            due_tick,
            seq: self.timer_seq,
            ev: ev.clone(),
            kind,
        });
        true
    }

    fn fire(&mut self, id: u64) -> bool {
        match self.schedule.get_mut(&id) {
            Some(left) if *left > 1 => {
                *left -= 1;
                true
            }
            Some(_) => {
                self.schedule.remove(&id);
                true
            }
            None => false,
        }
    }

    /// What happens after a handler answered `act` on attempt `attempts`.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &mut self,
        k: usize,
        ev: &EvModel,
        i: usize,
        act: Act,
        attempts: u32,
        hist: History,
        now: u64,
    ) {
        let sub = self.subs[i].id.expect("member");
        let (reason, code) = match act {
            Act::Done => {
                self.subs[i].c.done += 1;
                return;
            }
            Act::Fail(c) => {
                let code = ErrorCode(u16::from(c));
                (DeadReason::Failed { code }, code)
            }
            Act::Panic => {
                self.subs[i].c.panicked += 1;
                self.rel[k].panicked += 1;
                (DeadReason::Panicked, ErrorCode::PANICKED)
            }
            Act::Retry(c) | Act::RetryAfter(c, _) => {
                let code = ErrorCode(u16::from(c));
                let policy = self.subs[i].retry.unwrap_or(self.policy);
                if attempts >= policy.policy.max_attempts {
                    (DeadReason::RetriesExhausted, code)
                } else {
                    let delay = match act {
                        Act::RetryAfter(_, n) => after_ns(n).min(policy.cap_ns()),
                        _ => policy.exp_delay(attempts),
                    };
                    let due = now.saturating_add(delay);
                    let kind = Kind::Retry {
                        sub,
                        attempts,
                        first_ns: hist.first_ns,
                        last_error: Some(code),
                    };
                    if ev.deadline.is_some_and(|d| due > d) {
                        (DeadReason::DeadlineExceeded, code)
                    } else if self.insert(k, due, now, ev, kind) {
                        self.rel[k].retries_scheduled += 1;
                        self.subs[i].c.retried += 1;
                        self.subs[i].outstanding += 1;
                        return;
                    } else {
                        (DeadReason::RetryCapacity, code)
                    }
                }
            }
        };
        self.expect_letter(Letter {
            ev: ev.clone(),
            sub: Some(sub),
            reason,
            attempts,
            last_error: Some(code),
            first_ns: hist.first_ns,
            last_ns: now,
            shard: k,
        });
        self.subs[i].c.dead_lettered += 1;
        self.shard_dead(k, reason);
    }

    /// One delivery to one subscription (a retry or a redrive): the handler, or a
    /// `DeadlineExceeded` letter if the deadline passed.
    fn deliver_one(
        &mut self,
        k: usize,
        ev: &EvModel,
        i: usize,
        attempts: u32,
        hist: History,
        now: u64,
    ) {
        self.delivered[k][ev.priority] += 1;
        let t = self.next();
        if ev.expired(now) {
            self.check_letter(
                t,
                Letter {
                    ev: ev.clone(),
                    sub: self.subs[i].id,
                    reason: DeadReason::DeadlineExceeded,
                    // The expired attempt is not made: the letter keeps those that were,
                    // and the code the last of them returned.
                    attempts: attempts - 1,
                    last_error: hist.last_error,
                    first_ns: hist.first_ns,
                    last_ns: now,
                    shard: k,
                },
            );
            self.subs[i].c.dead_lettered += 1;
            self.shard_dead(k, DeadReason::DeadlineExceeded);
        } else {
            let r = self.check_call(t, ev, now, attempts);
            assert_eq!(
                Some(r.sub),
                self.subs[i].id,
                "retry or redrive to another subscription"
            );
            self.subs[i].c.attempts += 1;
            self.settle(k, ev, i, r.act, attempts, hist, now);
        }
    }

    /// `dispatch_one`: every active matching plain subscription of shard `k` and, for
    /// each matching group, the one member its balance picks (`Route::pick`), in any
    /// order of routes.
    fn dispatch(&mut self, k: usize, ev: &EvModel, now: u64, ordered: bool) {
        let mut plain: Vec<SubscriptionId> = self
            .subs
            .iter()
            .filter(|m| m.group.is_none() && m.shard == k && m.active && m.routes(ev))
            .filter_map(|m| m.id)
            .collect();
        let mut open: Vec<usize> = (0..self.groups.len())
            .filter(|&gi| {
                let g = &self.groups[gi].1;
                g.shard == k
                    && g.routes(ev)
                    && self.subs.iter().any(|m| m.group == Some(gi) && m.active)
            })
            .collect();
        // Each route picks once per event, from state no other route's delivery changes.
        let picks: Vec<(usize, usize)> = open.iter().map(|&gi| (gi, self.pick(gi))).collect();
        let units = plain.len() + open.len();
        let expired = ev.expired(now);
        for _ in 0..units {
            let t = self.next();
            let sub = match &t {
                Tr::Call(r) => r.sub,
                Tr::Dead(d) => d
                    .sub
                    .unwrap_or_else(|| panic!("dispatch letter {d:?} without subscription")),
            };
            let i = self.sub_ix(sub);
            if let Some(pos) = plain.iter().position(|&s| s == sub) {
                plain.swap_remove(pos);
            } else {
                let m = &self.subs[i];
                let gi = m
                    .group
                    .unwrap_or_else(|| panic!("{ev:?} went to {sub:?}, not expected"));
                assert!(
                    m.active && m.shard == k,
                    "{ev:?} to an inactive member {sub:?}"
                );
                let pos = open
                    .iter()
                    .position(|&g| g == gi)
                    .unwrap_or_else(|| panic!("group {gi}: {ev:?} twice, or not routed"));
                open.swap_remove(pos);
                let want = picks.iter().find(|&&(g, _)| g == gi).expect("picked").1;
                assert_eq!(
                    i, want,
                    "group {gi} ({:?}): {ev:?} went to {sub:?}, the balance picks {:?}",
                    self.balance[gi].0, self.subs[want].id
                );
            }
            self.subs[i].c.accepted += 1;
            if expired {
                self.check_letter(
                    t,
                    Letter {
                        ev: ev.clone(),
                        sub: Some(sub),
                        reason: DeadReason::DeadlineExceeded,
                        attempts: 0,
                        last_error: None,
                        first_ns: now,
                        last_ns: now,
                        shard: k,
                    },
                );
                self.subs[i].c.dead_lettered += 1;
                self.shard_dead(k, DeadReason::DeadlineExceeded);
                continue;
            }
            let r = self.check_call(t, ev, now, 1);
            if ordered {
                // Per subscription, per publisher, per priority: publish order.
                let key = (sub.raw(), ev.publisher, ev.priority);
                if let Some(&last) = self.order.get(&key) {
                    assert!(
                        ev.seq > last,
                        "order: {} after {} for {:?}",
                        ev.seq,
                        last,
                        key
                    );
                }
                self.order.insert(key, ev.seq);
            }
            self.subs[i].c.attempts += 1;
            let hist = History {
                first_ns: now,
                last_error: None,
            };
            self.settle(k, ev, i, r.act, 1, hist, now);
        }
        if units == 0 {
            self.unmatched[k][ev.priority] += 1;
        } else {
            self.delivered[k][ev.priority] += units as u64;
        }
    }

    /// The member of group `gi` that gets the next event: round-robin by the route's
    /// cursor, or least-loaded (fewest retries waiting, then fewest accepted, then the
    /// first in the router's order).
    fn pick(&mut self, gi: usize) -> usize {
        let (balance, members, cursor) = &mut self.balance[gi];
        let active = self.subs.iter().filter(|m| m.group == Some(gi) && m.active);
        assert_eq!(members.len(), active.count(), "group {gi} members");
        match balance {
            Balance::RoundRobin => {
                let ix = *cursor;
                *cursor = (ix + 1) % members.len();
                members[ix]
            }
            Balance::LeastLoaded => *members
                .iter()
                .min_by_key(|&&i| (self.subs[i].outstanding, self.subs[i].c.accepted))
                .expect("a member"),
        }
    }

    /// Due wheel entries, in due-tick order (ties in insertion order).
    fn run_timers(&mut self, k: usize, now: u64) -> usize {
        let wnow = now / self.tick;
        let (mut due, rest): (Vec<Timer>, Vec<Timer>) = std::mem::take(&mut self.wheels[k])
            .into_iter()
            .partition(|t| t.due_tick <= wnow);
        self.wheels[k] = rest;
        due.sort_by_key(|t| (t.due_tick, t.seq));
        let n = due.len();
        for t in due {
            match t.kind {
                Kind::Sched => {
                    if self.fire(t.ev.id) {
                        self.rel[k].scheduled_fired += 1;
                        self.dispatch(k, &t.ev, now, false);
                    } else {
                        self.rel[k].scheduled_cancelled += 1;
                    }
                }
                Kind::Retry {
                    sub,
                    attempts,
                    first_ns,
                    last_error,
                } => {
                    self.rel[k].retries_fired += 1;
                    let hist = History {
                        first_ns,
                        last_error,
                    };
                    match self.subs.iter().position(|m| m.id == Some(sub) && m.active) {
                        Some(i) => {
                            assert_eq!(self.subs[i].shard, k);
                            self.subs[i].outstanding = self.subs[i].outstanding.saturating_sub(1);
                            self.deliver_one(k, &t.ev, i, attempts + 1, hist, now);
                        }
                        None => {
                            self.expect_letter(Letter {
                                ev: t.ev.clone(),
                                sub: Some(sub),
                                reason: DeadReason::Unsubscribed,
                                attempts,
                                last_error,
                                first_ns,
                                last_ns: now,
                                shard: k,
                            });
                            self.shard_dead(k, DeadReason::Unsubscribed);
                        }
                    }
                }
            }
        }
        n
    }

    fn run_redrives(&mut self, k: usize, now: u64, budget: usize) -> usize {
        let mut n = 0;
        while n < budget {
            let Some((ev, sub)) = self.redrives[k].pop_front() else {
                break;
            };
            n += 1;
            self.rel[k].redriven += 1;
            let hist = History {
                first_ns: now,
                last_error: None,
            };
            match sub {
                None => self.dispatch(k, &ev, now, false),
                Some(id) => match self.subs.iter().position(|m| m.id == Some(id) && m.active) {
                    Some(i) => {
                        self.subs[i].c.accepted += 1;
                        self.deliver_one(k, &ev, i, 1, hist, now);
                    }
                    None => {
                        self.expect_letter(Letter {
                            ev: ev.clone(),
                            sub: Some(id),
                            reason: DeadReason::Unsubscribed,
                            attempts: 0,
                            last_error: None,
                            first_ns: now,
                            last_ns: now,
                            shard: k,
                        });
                        self.shard_dead(k, DeadReason::Unsubscribed);
                    }
                },
            }
        }
        n
    }

    /// An event taken off a ring.
    fn take(&mut self, k: usize, ev: EvModel, now: u64) {
        if ev.scheduled {
            if ev.timestamp > now {
                if !self.insert(k, ev.timestamp, now, &ev, Kind::Sched) {
                    if self.schedule.remove(&ev.id).is_some() {
                        self.expect_letter(Letter {
                            ev: ev.clone(),
                            sub: None,
                            reason: DeadReason::RetryCapacity,
                            attempts: 0,
                            last_error: None,
                            first_ns: now,
                            last_ns: now,
                            shard: k,
                        });
                        self.shard_dead(k, DeadReason::RetryCapacity);
                    } else {
                        // Cancelled already: dropped, and counted as cancelled.
                        self.rel[k].scheduled_cancelled += 1;
                    }
                }
                return;
            }
            if !self.fire(ev.id) {
                self.rel[k].scheduled_cancelled += 1;
                return;
            }
            self.rel[k].scheduled_fired += 1;
        }
        self.dispatch(k, &ev, now, !ev.scheduled);
    }

    fn waiting(&self, k: usize) -> u8 {
        let mut bits = 0;
        for q in 0..4 {
            if self.side[k].lanes[q]
                .iter()
                .any(|&p| !self.lanes[p][k][q].is_empty())
            {
                bits |= 1 << q;
            }
        }
        bits
    }

    fn pick_level(&self, k: usize, waiting: u8) -> Option<(usize, bool)> {
        if waiting == 0 {
            return None;
        }
        let side = &self.side[k];
        let starved = (1..4)
            .rev()
            .find(|&p| waiting & (1 << p) != 0 && side.starved_for[p] >= self.guard);
        Some(match starved {
            Some(level) => (level, true),
            None => (waiting.trailing_zeros() as usize, false),
        })
    }

    fn budget_for(&self, k: usize, level: usize, waiting: u8) -> usize {
        let side = &self.side[k];
        let owed = (level + 1..4)
            .filter(|&q| waiting & (1 << q) != 0)
            .map(|q| self.guard.saturating_sub(side.starved_for[q]).max(1))
            .min()
            .unwrap_or(u32::MAX);
        (owed as usize).min(64)
    }

    fn note_served(&mut self, k: usize, level: usize, taken: usize, waiting: u8) {
        let side = &mut self.side[k];
        side.starved_for[level] = 0;
        for q in level + 1..4 {
            if waiting & (1 << q) != 0 {
                side.starved_for[q] = side.starved_for[q].saturating_add(taken as u32);
            } else {
                side.starved_for[q] = 0;
            }
        }
    }

    fn drain_level(&mut self, k: usize, level: usize, budget: usize, now: u64) -> usize {
        let n = self.side[k].lanes[level].len();
        let cursor = self.side[k].cursors[level];
        let mut taken = 0;
        for j in 0..n {
            if taken == budget {
                break;
            }
            let p = self.side[k].lanes[level][(cursor + j) % n];
            let want = self.lanes[p][k][level].len().min(budget - taken);
            for _ in 0..want {
                let ev = self.lanes[p][k][level].pop_front().expect("counted");
                self.take(k, ev, now);
            }
            taken += want;
        }
        if n > 0 {
            self.side[k].cursors[level] = (cursor + 1) % n;
        }
        self.dispatched[k][level] += taken as u64;
        taken
    }

    fn poll(&mut self, k: usize, max: usize) -> usize {
        self.apply_control(k);
        self.poll_no.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.now_ns();
        let n = self.shards[k].poll(max);
        let mut done = self.run_timers(k, now);
        done += self.run_redrives(k, now, max.saturating_sub(done));
        while done < max {
            let waiting = self.waiting(k);
            let Some((level, starved)) = self.pick_level(k, waiting) else {
                break;
            };
            let budget = if starved {
                1
            } else {
                (max - done).min(self.budget_for(k, level, waiting))
            };
            let taken = self.drain_level(k, level, budget, now);
            self.note_served(k, level, taken, waiting);
            done += taken;
        }
        if self.stopped[k] && self.waiting(k) == 0 && self.redrives[k].is_empty() {
            done += self.flush_on_stop(k, now);
        }
        assert_eq!(n, done, "poll({max}) of shard {k}");
        n
    }

    /// A closing shard, idle: everything on its wheel, in due order, goes to the dead
    /// letters as `Shutdown`. A scheduled event is lettered once, by the first of its
    /// shards to flush it; the others (and a cancelled one) count it as cancelled.
    fn flush_on_stop(&mut self, k: usize, now: u64) -> usize {
        let mut left = std::mem::take(&mut self.wheels[k]);
        left.sort_by_key(|t| (t.due_tick, t.seq));
        let n = left.len();
        for t in left {
            let (sub, attempts, first_ns, last_error) = match t.kind {
                Kind::Sched => {
                    if self.schedule.remove(&t.ev.id).is_none() {
                        self.rel[k].scheduled_cancelled += 1;
                        continue;
                    }
                    (None, 0, now, None)
                }
                Kind::Retry {
                    sub,
                    attempts,
                    first_ns,
                    last_error,
                } => (Some(sub), attempts, first_ns, last_error),
            };
            if let Some(id) = sub {
                let i = self.sub_ix(id);
                self.subs[i].c.dead_lettered += 1;
            }
            self.expect_letter(Letter {
                ev: t.ev,
                sub,
                reason: DeadReason::Shutdown,
                attempts,
                last_error,
                first_ns,
                last_ns: now,
                shard: k,
            });
            self.shard_dead(k, DeadReason::Shutdown);
        }
        n
    }

    /// `bus.close()`: in poll mode with every shard taken, it only stops intake and tells
    /// the shards; they drain and flush on their next polls.
    fn close(&mut self) {
        self.bus.close();
        assert!(self.bus.is_closed());
        if !self.closed {
            self.closed = true;
            for k in 0..self.nshards {
                self.pending[k].push(Ctl::Stop);
            }
        }
    }

    /// The dead-letter ring's full policy, written out.
    fn letter(&mut self, l: Letter) {
        let cap = self.dead_letter_capacity;
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
        assert_eq!(st.rejected_closed, self.rejected_closed, "rejected_closed");
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
            let r = &self.rel[k];
            assert_eq!(s.panicked, r.panicked, "shard {k} panicked");
            assert_eq!(s.dead_lettered, r.dead_lettered, "shard {k} dead_lettered");
            assert_eq!(
                s.dead_by_reason, r.dead_by_reason,
                "shard {k} dead_by_reason"
            );
            assert_eq!(
                s.retries_scheduled, r.retries_scheduled,
                "shard {k} retries_scheduled"
            );
            assert_eq!(s.retries_fired, r.retries_fired, "shard {k} retries_fired");
            assert_eq!(
                s.scheduled_fired, r.scheduled_fired,
                "shard {k} scheduled_fired"
            );
            assert_eq!(
                s.scheduled_cancelled, r.scheduled_cancelled,
                "shard {k} scheduled_cancelled"
            );
            assert_eq!(s.redriven, r.redriven, "shard {k} redriven");
            assert_eq!(
                s.timers_pending,
                self.wheels[k].len() as u64,
                "shard {k} timers"
            );
            assert_eq!(self.shards[k].pending_timers(), self.wheels[k].len());
        }
        // The dead letters, under the ring's full policy.
        let dl = self.bus.dead_letters();
        assert_eq!(dl.len(), self.letters.len(), "dead letters held");
        assert_eq!(dl.stored(), self.letters_stored, "dead letters stored");
        assert_eq!(dl.dropped(), self.letters_dropped, "dead letters dropped");
        assert_eq!(st.dead_letters_dropped, self.letters_dropped);
        let mut held = Vec::new();
        dl.inspect(|d| held.push(DeadRec::of(d)));
        assert!(
            held.iter()
                .map(DeadRec::key)
                .eq(self.letters.iter().map(Letter::key)),
            "dead letters: {held:?} vs model {:?}",
            self.letters
        );
        for m in self.subs.iter().filter(|m| m.registered) {
            let s = self
                .bus
                .subscription_stats(m.id.expect("member"))
                .expect("registered subscription has stats");
            let got = Counts {
                accepted: s.accepted,
                attempts: s.attempts,
                done: s.done,
                retried: s.retried,
                dead_lettered: s.dead_lettered,
                panicked: s.panicked,
            };
            assert_eq!(got, m.c, "stats of {:?}", m.id);
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

    fn wheels_empty(&self) -> bool {
        self.wheels.iter().all(Vec::is_empty)
    }
}

fuzz_target!(|input: Input| {
    let mut h = Harness::new(&input);
    for op in input.ops.iter().take(300) {
        h.begin();
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
            Op::Advance(ns) => h
                .clock
                .advance(Duration::from_nanos(u64::from(*ns) & 0x7f_ffff)),
            Op::Cancel(n) => h.cancel(*n),
            Op::Redrive { max, reasons } => h.redrive(*max, *reasons, None),
            Op::RedriveTo {
                max,
                reasons,
                target,
            } => h.redrive(*max, *reasons, Some(*target)),
            Op::Close(n) => {
                if n % 8 == 0 {
                    h.close();
                }
            }
        }
        h.end();
        h.check_stats();
    }
    // Conservation: drain every shard, advancing the clock to each next wheel entry until
    // every wheel is empty, then close.
    h.begin();
    loop {
        for k in 0..h.nshards {
            while h.poll(k, 7) > 0 {}
            assert_eq!(h.poll(k, usize::MAX), 0);
            assert!(h.shards[k].is_idle());
            assert_eq!(h.shards[k].queued(), [0; 4]);
        }
        h.end();
        h.check_stats();
        h.begin();
        let Some(next) = h.wheels.iter().flatten().map(|t| t.due_tick).min() else {
            break;
        };
        let at = next.saturating_mul(h.tick);
        assert!(at > h.clock.now_ns(), "a due entry did not fire");
        h.clock.set_ns(at);
    }
    assert!(h.wheels_empty());
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
        assert_eq!(s.timers_pending, 0);
    }
    for m in h.subs.iter().filter(|m| m.registered) {
        let s = h.bus.subscription_stats(m.id.expect("member")).unwrap();
        assert_eq!(
            s.accepted,
            s.done + s.dead_lettered,
            "conservation of {:?}: {s:?}",
            m.id
        );
    }
    h.close();
    if let Some(p) = h.publishers.iter_mut().flatten().next() {
        let e = Event::new(EventType::AGENT_TASK);
        assert!(matches!(p.try_publish(e), Err(PublishError::Closed(_))));
    }
    assert!(matches!(
        h.bus.subscribe(Filter::any(), |_| Outcome::Done),
        Err(BusError::Closed)
    ));
    assert!(matches!(h.bus.redrive(8, |_| true), Err(BusError::Closed)));
    for k in 0..h.nshards {
        assert_eq!(h.poll(k, usize::MAX), 0, "nothing appears after close");
    }
    h.end();
});
