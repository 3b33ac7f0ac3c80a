//! The workload: who publishes what, who subscribes how, and how it is measured. Shared by
//! the dreamnet-bus run and the baseline so both see the same shape.
//!
//! Agents publish the spec's event types at mixed priorities. Subscriptions cover every
//! routing strategy: direct (tasks and responses addressed to an agent), broadcast
//! (status and health to several subscribers), filtered (a predicate on the header) and
//! load-balanced (groups, round-robin and least-loaded). [`SUBSCRIPTIONS`] also carries a
//! model of the routing rules, so the report can say how many deliveries each
//! subscription should have had, not just how many it had.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use dreamnet_bus::{Balance, Clock, EventType, Priority};
use hdrhistogram::Histogram;

/// The agents of the workload, by index. Producer threads publish as these (each thread
/// owns the publishers of the agents assigned to it).
pub const AGENTS: [&str; 6] = [
    "dreamnet-lucid",
    "openai-assistant",
    "spider-web",
    "shield-core",
    "instant-mesh",
    "antigravity",
];

const LUCID: usize = 0;
const OPENAI: usize = 1;
const SPIDER: usize = 2;
const SHIELD: usize = 3;

/// One kind of event in the mix: a type, broadcast or addressed to an agent, and how
/// often it occurs relative to the others.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// A short name for reports.
    pub name: &'static str,
    /// The event type.
    pub event_type: EventType,
    /// Destination agent index, or `None` for a broadcast.
    pub destination: Option<usize>,
    /// Relative frequency.
    pub weight: u32,
}

/// The event mix. Tasks and responses are direct; the rest are broadcasts.
pub const KINDS: [Kind; 9] = [
    Kind {
        name: "task->openai-assistant",
        event_type: EventType::AGENT_TASK,
        destination: Some(OPENAI),
        weight: 20,
    },
    Kind {
        name: "task->spider-web",
        event_type: EventType::AGENT_TASK,
        destination: Some(SPIDER),
        weight: 10,
    },
    Kind {
        name: "task->shield-core",
        event_type: EventType::AGENT_TASK,
        destination: Some(SHIELD),
        weight: 5,
    },
    Kind {
        name: "response->dreamnet-lucid",
        event_type: EventType::AGENT_RESPONSE,
        destination: Some(LUCID),
        weight: 15,
    },
    Kind {
        name: "status",
        event_type: EventType::AGENT_STATUS,
        destination: None,
        weight: 15,
    },
    Kind {
        name: "health",
        event_type: EventType::SYSTEM_HEALTH,
        destination: None,
        weight: 10,
    },
    Kind {
        name: "capability",
        event_type: EventType::AGENT_CAPABILITY,
        destination: None,
        weight: 5,
    },
    Kind {
        name: "error",
        event_type: EventType::AGENT_ERROR,
        destination: None,
        weight: 10,
    },
    Kind {
        name: "system",
        event_type: EventType::SYSTEM_EVENT,
        destination: None,
        weight: 10,
    },
];

/// Priority mix, in `Priority::ALL` order (critical, high, normal, low), per mille:
/// mostly normal, some high and low, few critical.
pub const PRIORITY_MIX: [u32; Priority::COUNT] = [10, 90, 800, 100];

/// A header-level predicate for filtered routing, in a form both buses and the model can
/// evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pred {
    /// Critical or high priority only.
    Urgent,
    /// Published by this agent (index) only.
    FromAgent(usize),
}

impl Pred {
    /// Whether an event with this source and priority passes.
    pub fn passes(self, source: usize, priority: Priority) -> bool {
        match self {
            Pred::Urgent => matches!(priority, Priority::Critical | Priority::High),
            Pred::FromAgent(a) => source == a,
        }
    }
}

/// How a subscription is routed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Subscribed for an agent: gets the direct events addressed to it.
    Direct(usize),
    /// Gets every broadcast of its types.
    Broadcast,
    /// A broadcast subscription with a header predicate.
    Filtered(Pred),
    /// A group of `members`: each matching broadcast goes to exactly one of them.
    Group(Balance, usize),
    /// A group subscribed for an agent: each direct event to it goes to one member.
    DirectGroup(usize, Balance, usize),
}

/// One subscription (or group) of the workload.
#[derive(Debug, Clone, Copy)]
pub struct SubSpec {
    /// Name (also the group name for groups).
    pub name: &'static str,
    /// Types it subscribes to.
    pub types: &'static [EventType],
    /// How it is routed to.
    pub routing: Routing,
}

impl SubSpec {
    /// The routing rules, written out: does an event of `kind` from `source` at
    /// `priority` reach this subscription (or group)? Direct events reach only routes
    /// subscribed for their destination; broadcasts reach every route whose types (and
    /// predicate) pass, whether or not it is subscribed for an agent.
    pub fn expects(&self, kind: &Kind, source: usize, priority: Priority) -> bool {
        if !self.types.contains(&kind.event_type) {
            return false;
        }
        let for_agent = match self.routing {
            Routing::Direct(a) | Routing::DirectGroup(a, _, _) => Some(a),
            _ => None,
        };
        if let Some(d) = kind.destination {
            if for_agent != Some(d) {
                return false;
            }
        }
        match self.routing {
            Routing::Filtered(p) => p.passes(source, priority),
            _ => true,
        }
    }

    /// Handlers behind this spec: 1, or the number of group members.
    pub fn members(&self) -> usize {
        match self.routing {
            Routing::Group(_, n) | Routing::DirectGroup(_, _, n) => n,
            _ => 1,
        }
    }

    /// The strategy, for reports.
    pub fn strategy(&self) -> &'static str {
        match self.routing {
            Routing::Direct(_) => "direct",
            Routing::Broadcast => "broadcast",
            Routing::Filtered(_) => "filtered",
            Routing::Group(Balance::RoundRobin, _) => "balanced-rr",
            Routing::Group(Balance::LeastLoaded, _) => "balanced-ll",
            Routing::DirectGroup(_, Balance::RoundRobin, _) => "direct-rr",
            Routing::DirectGroup(_, Balance::LeastLoaded, _) => "direct-ll",
        }
    }
}

/// The subscriptions: every strategy, several subscribers to status and health.
pub const SUBSCRIPTIONS: [SubSpec; 10] = [
    SubSpec {
        name: "openai-workers",
        types: &[EventType::AGENT_TASK],
        routing: Routing::DirectGroup(OPENAI, Balance::RoundRobin, 3),
    },
    SubSpec {
        name: "spider-web-tasks",
        types: &[EventType::AGENT_TASK],
        routing: Routing::Direct(SPIDER),
    },
    SubSpec {
        name: "shield-core-tasks",
        types: &[EventType::AGENT_TASK],
        routing: Routing::Direct(SHIELD),
    },
    SubSpec {
        name: "lucid-responses",
        types: &[EventType::AGENT_RESPONSE],
        routing: Routing::Direct(LUCID),
    },
    SubSpec {
        name: "dashboard",
        types: &[EventType::AGENT_STATUS, EventType::SYSTEM_HEALTH],
        routing: Routing::Broadcast,
    },
    SubSpec {
        name: "spider-web-threads",
        types: &[EventType::AGENT_STATUS, EventType::AGENT_CAPABILITY],
        routing: Routing::Broadcast,
    },
    SubSpec {
        name: "shield-monitor",
        types: &[EventType::SYSTEM_HEALTH, EventType::AGENT_ERROR],
        routing: Routing::Broadcast,
    },
    SubSpec {
        name: "pager",
        types: &[EventType::AGENT_ERROR, EventType::SYSTEM_HEALTH],
        routing: Routing::Filtered(Pred::Urgent),
    },
    SubSpec {
        name: "audit-shield",
        types: &[EventType::SYSTEM_EVENT, EventType::AGENT_STATUS],
        routing: Routing::Filtered(Pred::FromAgent(SHIELD)),
    },
    SubSpec {
        name: "error-triage",
        types: &[EventType::AGENT_ERROR, EventType::SYSTEM_EVENT],
        routing: Routing::Group(Balance::LeastLoaded, 2),
    },
];

/// One handler of the workload: a subscription, or one member of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// Index into [`SUBSCRIPTIONS`].
    pub spec: usize,
    /// Member index within a group (0 for plain subscriptions).
    pub member: usize,
}

/// Every handler of the workload, in a fixed order (a probe is identified by its index).
pub fn endpoints() -> Vec<Endpoint> {
    SUBSCRIPTIONS
        .iter()
        .enumerate()
        .flat_map(|(spec, s)| (0..s.members()).map(move |member| Endpoint { spec, member }))
        .collect()
}

/// The payload every event carries, archived with rkyv: a sequence number, the intended
/// send time (open loop), and `blob` bytes of filler sized by `--payload`.
#[derive(Debug, Clone, rkyv::Archive, rkyv::Serialize)]
pub struct Work {
    /// Per-producer sequence number.
    pub seq: u64,
    /// Open loop: when the event was meant to be sent, on the bus clock (0 otherwise).
    pub intended_ns: u64,
    /// Filler.
    pub blob: Vec<u8>,
}

/// The handler work, the same for every bus: read the fields and touch both ends of the
/// blob, so the payload is really read.
#[inline]
pub fn touch(seq: u64, blob: &[u8]) -> u64 {
    let first = blob.first().copied().unwrap_or(0);
    let last = blob.last().copied().unwrap_or(0);
    seq ^ blob.len() as u64 ^ (u64::from(first) << 8) ^ (u64::from(last) << 16)
}

/// Open or closed loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Publish as fast as the bus accepts (backpressure paces the producers).
    Closed,
    /// Publish at a fixed total rate (events/s, split evenly between producer threads);
    /// latency is measured from each event's intended send time.
    Open {
        /// Events per second, all producers together.
        rate: f64,
    },
}

/// What a run does, independent of the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// Measured window.
    pub duration: Duration,
    /// Warm-up before the window (not measured).
    pub warmup: Duration,
    /// Shards (worker threads) of the bus.
    pub shards: usize,
    /// Pin shard workers and producers to cores.
    pub pin: bool,
    /// Producer threads.
    pub producers: usize,
    /// Open or closed loop.
    pub mode: Mode,
    /// Filler bytes in each payload.
    pub payload: usize,
    /// How idle workers and blocked publishers wait.
    pub wait: dreamnet_bus::WaitStrategy,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Failure injection (all rates 0: none).
    pub inject: Inject,
    /// Retry policy, timer wheel and dead-letter sizing (dreamnet-bus only).
    pub reliability: Reliability,
    /// Journal what the shards drain (`loadgen --journal`; dreamnet-bus only).
    pub journal: Option<crate::journal_load::JournalRun>,
}

/// Failure injection: what share of deliveries a handler fails, retries or panics on.
///
/// The fate of a delivery is drawn from a xorshift generator seeded by the handler's seed
/// and the event id, so every attempt of one event at one handler sees the same fate (a
/// handler that retries an event `k` times must know `k` again at each attempt, without
/// keeping per-event state, which would allocate).
#[derive(Debug, Clone, Default)]
pub struct Inject {
    /// Share of deliveries the handler fails (`Outcome::Fail`).
    pub fail_rate: f64,
    /// Share of deliveries the handler retries 1..=`max_retries` times (`Outcome::Retry`),
    /// then returns `Done` (unless the policy's attempts run out first).
    pub retry_rate: f64,
    /// Share of deliveries the handler panics on.
    pub panic_rate: f64,
    /// Retries per retried delivery are drawn uniformly from `1..=max_retries`.
    pub max_retries: u32,
    /// Bit `i` set: failures are injected into [`SUBSCRIPTIONS`]`[i]`.
    pub subscriptions: u32,
}

/// What a handler does with one delivery, decided by [`Injector::fate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Handle it.
    Done,
    /// Fail it.
    Fail,
    /// Panic.
    Panic,
    /// Return `Retry` on attempts `1..=k`, then `Done`.
    Retry(u32),
}

impl Inject {
    /// Whether any failure is injected anywhere.
    pub fn any(&self) -> bool {
        self.subscriptions != 0
            && (self.fail_rate > 0.0 || self.retry_rate > 0.0 || self.panic_rate > 0.0)
    }

    /// Whether failures are injected into subscription spec `spec`.
    pub fn applies_to(&self, spec: usize) -> bool {
        self.any() && self.subscriptions & (1 << spec) != 0
    }

    /// The injector of one handler (`seed` tells handlers apart).
    pub fn injector(&self, seed: u64) -> Injector {
        // Thresholds on a 32-bit draw; the rates were checked to sum to at most 1.
        let scale = |r: f64| (r.clamp(0.0, 1.0) * 4_294_967_296.0) as u64;
        let fail = scale(self.fail_rate);
        let panic = fail + scale(self.panic_rate);
        let retry = panic + scale(self.retry_rate);
        Injector {
            seed: splitmix(seed),
            fail,
            panic,
            retry,
            max_retries: u64::from(self.max_retries.max(1)),
        }
    }
}

/// One handler's failure injector (see [`Inject`]).
#[derive(Debug, Clone, Copy)]
pub struct Injector {
    seed: u64,
    fail: u64,
    panic: u64,
    retry: u64,
    max_retries: u64,
}

impl Injector {
    /// The fate of event `id` at this handler (the same at every attempt).
    #[inline]
    pub fn fate(&self, id: u64) -> Fate {
        let r = XorShift(splitmix(id ^ self.seed) | 1).next();
        let u = r >> 32;
        if u < self.fail {
            Fate::Fail
        } else if u < self.panic {
            Fate::Panic
        } else if u < self.retry {
            Fate::Retry(1 + ((r & 0xffff_ffff) % self.max_retries) as u32)
        } else {
            Fate::Done
        }
    }
}

/// The splitmix64 finaliser: spreads neighbouring ids over the whole range.
#[inline]
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The retry policy and the sizes of the timer wheel and the dead-letter ring.
#[derive(Debug, Clone)]
pub struct Reliability {
    /// Attempts per delivery, the first included.
    pub max_attempts: u32,
    /// Base delay of the first retry (full jitter, multiplier 2).
    pub retry_base: Duration,
    /// Cap of every retry delay.
    pub retry_cap: Duration,
    /// Timer wheel capacity per shard.
    pub timer_capacity: usize,
    /// Dead-letter ring capacity.
    pub dead_letters: usize,
    /// Whether a full dead-letter ring drops its oldest entry (else it rejects the new one).
    pub drop_oldest: bool,
    /// How long to wait for the bus to go idle (retries fired) before closing.
    pub idle_timeout: Duration,
}

impl Default for Reliability {
    fn default() -> Self {
        Reliability {
            max_attempts: 3,
            retry_base: Duration::from_millis(1),
            retry_cap: Duration::from_secs(1),
            timer_capacity: 65_536,
            dead_letters: 65_536,
            drop_oldest: true,
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// A cache-line-sized atomic, so counters of different threads never share a line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded(pub AtomicU64);

/// The measured window on the bus clock: latency is recorded for events whose start
/// time (publish stamp, or intended time in open loop) falls inside it.
#[derive(Debug)]
pub struct Window {
    start: AtomicU64,
    end: AtomicU64,
}

impl Default for Window {
    fn default() -> Self {
        // Empty until the warm-up ends.
        Window {
            start: AtomicU64::new(u64::MAX),
            end: AtomicU64::new(u64::MAX),
        }
    }
}

impl Window {
    /// Whether `t` is inside the window.
    #[inline]
    pub fn contains(&self, t: u64) -> bool {
        t >= self.start.load(Ordering::Relaxed) && t < self.end.load(Ordering::Relaxed)
    }
    /// Opens the window at `t`.
    pub fn open(&self, t: u64) {
        self.start.store(t, Ordering::Relaxed);
    }
    /// Closes the window at `t`.
    pub fn close(&self, t: u64) {
        self.end.store(t, Ordering::Relaxed);
    }
}

/// Highest latency a histogram tracks (60 s); larger values saturate there.
pub const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// A latency histogram (nanoseconds, 3 significant digits, up to [`MAX_LATENCY_NS`]).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("constant bounds are valid")
}

/// What a probe hands back when its handler is dropped.
#[derive(Debug)]
pub struct ProbeReport {
    /// Index into [`endpoints`].
    pub endpoint: usize,
    /// Latency per priority (in `Priority::ALL` order), window only.
    pub latency: Vec<Histogram<u64>>,
    /// Latency from the publisher's acceptance stamp, all priorities, window only (in
    /// open loop this leaves out the time an event was late leaving its producer).
    pub from_stamp: Histogram<u64>,
    /// First deliveries (attempt 1), whole run.
    pub delivered: u64,
    /// Handler invocations, retries included, whole run.
    pub calls: u64,
    /// What the handler returned, whole run.
    pub returned: Returned,
    /// Payloads that could not be read (should be 0).
    pub bad_payload: u64,
    /// Fold of the handler work, so it cannot be optimised away.
    pub checksum: u64,
}

/// What a handler returned, counted by the handler itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Returned {
    /// `Done`.
    pub done: u64,
    /// `Retry`.
    pub retry: u64,
    /// `Fail`.
    pub fail: u64,
    /// Panicked (counted just before panicking).
    pub panicked: u64,
}

impl Returned {
    /// Adds another count.
    pub fn merge(&mut self, o: &Returned) {
        self.done += o.done;
        self.retry += o.retry;
        self.fail += o.fail;
        self.panicked += o.panicked;
    }
}

/// The measuring state a handler owns: histograms preallocated at subscribe time (so
/// recording never allocates) and counters. Sent back to the run on drop, which for a
/// bus handler happens when its shard stops, inside `close`.
#[derive(Debug)]
pub struct Probe {
    endpoint: usize,
    latency: Vec<Histogram<u64>>,
    from_stamp: Histogram<u64>,
    delivered: u64,
    calls: u64,
    /// What the handler returned (the handler counts it here).
    pub returned: Returned,
    bad_payload: u64,
    checksum: u64,
    window: Arc<Window>,
    out: Sender<ProbeReport>,
}

impl Probe {
    /// A probe for endpoint `endpoint`, reporting to `out`.
    pub fn new(endpoint: usize, window: Arc<Window>, out: Sender<ProbeReport>) -> Self {
        Probe {
            endpoint,
            latency: (0..Priority::COUNT).map(|_| new_histogram()).collect(),
            from_stamp: new_histogram(),
            delivered: 0,
            calls: 0,
            returned: Returned::default(),
            bad_payload: 0,
            checksum: 0,
            window,
            out,
        }
    }

    /// Records one delivery: due at `start_ns` (the publish stamp in closed loop, the
    /// intended send time in open loop), stamped at `stamp_ns` by the publisher, handled
    /// at `now_ns` (all on the same clock).
    #[inline]
    pub fn observe(
        &mut self,
        priority: Priority,
        start_ns: u64,
        stamp_ns: u64,
        now_ns: u64,
        work: u64,
    ) {
        self.delivered += 1;
        self.calls += 1;
        self.checksum = self.checksum.wrapping_add(work);
        if self.window.contains(start_ns) {
            self.latency[priority.index()].saturating_record(now_ns.saturating_sub(start_ns));
            self.from_stamp
                .saturating_record(now_ns.saturating_sub(stamp_ns));
        }
    }

    /// Records a redelivery (a retry, attempt 2 or later): counted, not timed (its
    /// latency is mostly the backoff).
    #[inline]
    pub fn redelivered(&mut self, work: u64) {
        self.calls += 1;
        self.checksum = self.checksum.wrapping_add(work);
    }

    /// Records a delivery whose payload could not be read.
    pub fn bad_payload(&mut self) {
        self.delivered += 1;
        self.calls += 1;
        self.bad_payload += 1;
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let report = ProbeReport {
            endpoint: self.endpoint,
            latency: std::mem::take(&mut self.latency),
            from_stamp: std::mem::replace(
                &mut self.from_stamp,
                Histogram::new(1).expect("1 significant digit is valid"),
            ),
            delivered: self.delivered,
            calls: self.calls,
            returned: self.returned,
            bad_payload: self.bad_payload,
            checksum: self.checksum,
        };
        // The run may have given up waiting (it reports the missing probe); nothing to do.
        let _ = self.out.send(report);
    }
}

/// One event a producer sends: which of its publishers (agent), which kind, which priority.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Index into the producer's own agent list.
    pub slot: usize,
    /// Agent index (into [`AGENTS`]).
    pub agent: usize,
    /// Index into [`KINDS`].
    pub kind: usize,
    /// Priority.
    pub priority: Priority,
}

/// Length of a producer's schedule (a power of two); it repeats.
pub const SCHEDULE_LEN: usize = 4096;

/// The agents producer `p` of `producers` publishes as: agents are dealt out in turn, so
/// with fewer threads than agents each thread publishes as several.
pub fn agents_of(p: usize, producers: usize) -> Vec<usize> {
    let mut mine: Vec<usize> = (0..AGENTS.len())
        .filter(|a| a % producers == p % producers)
        .collect();
    if mine.is_empty() {
        mine.push(p % AGENTS.len());
    }
    mine
}

/// A producer's schedule: a deterministic pseudo-random sequence over its agents, the
/// kind weights and the priority mix (seeded by the producer index, so runs repeat).
pub fn schedule(p: usize, agents: &[usize]) -> Vec<Step> {
    let mut rng =
        XorShift(0x9e37_79b9_7f4a_7c15 ^ (p as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    let total: u32 = KINDS.iter().map(|k| k.weight).sum();
    (0..SCHEDULE_LEN)
        .map(|_| {
            let slot = (rng.next() % agents.len() as u64) as usize;
            let mut w = (rng.next() % u64::from(total)) as u32;
            let kind = KINDS
                .iter()
                .position(|k| {
                    let hit = w < k.weight;
                    w = w.saturating_sub(k.weight);
                    hit
                })
                .unwrap_or(0);
            let mut q = (rng.next() % 1000) as u32;
            let level = PRIORITY_MIX
                .iter()
                .position(|&m| {
                    let hit = q < m;
                    q = q.saturating_sub(m);
                    hit
                })
                .unwrap_or(2);
            Step {
                slot,
                agent: agents[slot],
                kind,
                priority: Priority::ALL[level],
            }
        })
        .collect()
}

/// xorshift64*: enough randomness for a schedule, no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// What a producer counted: accepted events per (agent, kind, priority), attempts and
/// refusals.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Accepted events, indexed by [`Tally::index`].
    pub accepted: Vec<u64>,
    /// Publish attempts (accepted + full).
    pub attempts: u64,
    /// Attempts refused because a ring (or the channel) was full; the event was retried.
    pub full: u64,
    /// Events the bus refused as closed (should be 0: producers stop before close).
    pub closed: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            accepted: vec![0; AGENTS.len() * KINDS.len() * Priority::COUNT],
            attempts: 0,
            full: 0,
            closed: 0,
        }
    }
}

impl Tally {
    /// Where (agent, kind, priority) is counted.
    #[inline]
    pub fn index(agent: usize, kind: usize, priority: Priority) -> usize {
        (agent * KINDS.len() + kind) * Priority::COUNT + priority.index()
    }

    /// Adds another tally.
    pub fn merge(&mut self, other: &Tally) {
        for (a, b) in self.accepted.iter_mut().zip(&other.accepted) {
            *a += b;
        }
        self.attempts += other.attempts;
        self.full += other.full;
        self.closed += other.closed;
    }

    /// Events accepted in total.
    pub fn total(&self) -> u64 {
        self.accepted.iter().sum()
    }

    /// Deliveries the model expects for subscription spec `spec` (a group's total).
    pub fn expected(&self, spec: &SubSpec) -> u64 {
        let mut n = 0;
        for agent in 0..AGENTS.len() {
            for (k, kind) in KINDS.iter().enumerate() {
                for p in Priority::ALL {
                    if spec.expects(kind, agent, p) {
                        n += self.accepted[Tally::index(agent, k, p)];
                    }
                }
            }
        }
        n
    }
}

/// What a producer's bus-specific side does with one event.
pub enum Sent {
    /// Accepted.
    Accepted,
    /// Refused for lack of room: try again.
    Full,
    /// The bus is closed: stop.
    Closed,
}

/// The bus-specific half of a producer: sends one event. The shared half ([`produce`])
/// owns pacing, retries and counting, so both buses are driven identically.
pub trait Sink {
    /// Tries once to send `work` as `step`. Must not block.
    fn try_send(&mut self, step: &Step, work: &Work) -> Sent;
}

/// Controls shared by the main thread and the producers.
#[derive(Debug)]
pub struct RunControl {
    /// Set when producers must stop.
    pub stop: AtomicBool,
    /// Accepted events so far, one counter per producer (read for progress and windows).
    pub published: Vec<Padded>,
    /// Handler invocations so far (the baseline's consumer writes it; dreamnet-bus has
    /// its own stats).
    pub delivered: Padded,
}

impl RunControl {
    /// Controls for `producers` producers.
    pub fn new(producers: usize) -> Self {
        RunControl {
            stop: AtomicBool::new(false),
            published: (0..producers).map(|_| Padded::default()).collect(),
            delivered: Padded::default(),
        }
    }

    /// Accepted events so far, all producers.
    pub fn published(&self) -> u64 {
        self.published
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .sum()
    }
}

/// Open-loop pacing for one producer: event `i` is due at `start_ns + i * interval_ns`.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// When event 0 is due, bus clock.
    pub start_ns: u64,
    /// Nanoseconds between this producer's events.
    pub interval_ns: f64,
}

/// The producer loop, the same for both buses. Closed loop: send back to back, spinning
/// then yielding on `Full`. Open loop: wait for each event's due time, send, and stamp the
/// due time into the payload; an event that is late (the bus pushed back) is still sent,
/// and its latency counts from when it was due, so stalls are not hidden (coordinated
/// omission).
pub fn produce<S: Sink>(
    sink: &mut S,
    p: usize,
    steps: &[Step],
    payload: usize,
    pace: Option<Pace>,
    clock: &Clock,
    control: &RunControl,
) -> Tally {
    crate::alloc::mark_hot();
    let mut tally = Tally::default();
    let mut work = Work {
        seq: 0,
        intended_ns: 0,
        blob: vec![0xA5; payload],
    };
    let mask = steps.len() - 1;
    let mut i: u64 = 0;
    'run: while !control.stop.load(Ordering::Relaxed) {
        let step = &steps[i as usize & mask];
        if let Some(pace) = pace {
            let due = pace.start_ns + (i as f64 * pace.interval_ns) as u64;
            loop {
                let now = clock.now_ns();
                if now >= due {
                    break;
                }
                if control.stop.load(Ordering::Relaxed) {
                    break 'run;
                }
                // Sleep only when far ahead: a sleep overshoots by tens of microseconds.
                if due - now > 200_000 {
                    std::thread::sleep(Duration::from_nanos(due - now - 100_000));
                } else {
                    std::hint::spin_loop();
                }
            }
            work.intended_ns = due;
        }
        work.seq = i;
        let mut spins = 0u32;
        loop {
            tally.attempts += 1;
            match sink.try_send(step, &work) {
                Sent::Accepted => break,
                Sent::Full => {
                    tally.full += 1;
                    if spins < 64 {
                        std::hint::spin_loop();
                    } else {
                        // On a small machine the consumer may need this core.
                        std::thread::yield_now();
                    }
                    spins += 1;
                }
                Sent::Closed => {
                    tally.closed += 1;
                    break 'run;
                }
            }
        }
        tally.accepted[Tally::index(step.agent, step.kind, step.priority)] += 1;
        i += 1;
        control.published[p].0.store(i, Ordering::Relaxed);
    }
    tally
}

/// Waits until the clock reads `due`: sleeps while more than 200 us ahead (a sleep
/// overshoots by tens of microseconds), then spins.
pub fn wait_until(clock: &Clock, due: u64) {
    loop {
        let now = clock.now_ns();
        if now >= due {
            return;
        }
        if due - now > 200_000 {
            std::thread::sleep(Duration::from_nanos(due - now - 100_000));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// What the main thread saw at the edges of the measured window.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowReading {
    /// Window length.
    pub elapsed: Duration,
    /// Events accepted inside the window.
    pub published: u64,
    /// Handler invocations inside the window.
    pub delivered: u64,
    /// Allocations inside the window.
    pub allocs: crate::alloc::AllocCount,
}

/// The main thread's part of a run: warm up (with a progress bar), open the window, sleep
/// through it, close the window, stop the producers. `delivered` reads the bus's delivery
/// count (called at the window edges only).
///
/// Nothing of ours runs during the measured window: the bar is drawn from this thread
/// only (no steady tick, so indicatif starts no thread of its own), and this thread
/// sleeps for the whole window in one `sleep`, so neither competes with the producers
/// and workers for a core (on a 2-core machine that would be most of the noise).
pub fn drive(
    opts: &Options,
    label: &str,
    clock: &Clock,
    window: &Window,
    control: &RunControl,
    delivered: &dyn Fn() -> u64,
) -> WindowReading {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let total = opts.warmup + opts.duration;
    let bar = if opts.progress {
        ProgressBar::with_draw_target(
            Some(total.as_millis() as u64),
            ProgressDrawTarget::stderr_with_hz(10),
        )
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix:>14} [{bar:32}] {elapsed:>3} / {duration} {msg}")
            .expect("constant template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    let begin = Instant::now();
    let tick = Duration::from_millis(100);
    let mut last = (Instant::now(), control.published());
    let mut show = |phase: &str| {
        let now = Instant::now();
        let published = control.published();
        let rate = (published - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
        last = (now, published);
        bar.set_position(begin.elapsed().as_millis() as u64);
        bar.set_message(format!("{phase} {:>6.2} M ev/s published", rate / 1e6));
    };
    while begin.elapsed() < opts.warmup {
        std::thread::sleep(tick.min(opts.warmup.saturating_sub(begin.elapsed())));
        show("warm-up");
    }
    bar.set_position(opts.warmup.as_millis() as u64);
    bar.set_message("measuring; the main thread sleeps until the window closes");
    let t0 = Instant::now();
    window.open(clock.now_ns());
    let a0 = crate::alloc::AllocCount::now();
    let p0 = control.published();
    let d0 = delivered();
    // One sleep for the whole window (a spurious early wake-up sleeps the rest).
    while t0.elapsed() < opts.duration {
        std::thread::sleep(opts.duration.saturating_sub(t0.elapsed()));
    }
    let a1 = crate::alloc::AllocCount::now();
    let p1 = control.published();
    let d1 = delivered();
    let elapsed = t0.elapsed();
    window.close(clock.now_ns());
    control.stop.store(true, Ordering::Relaxed);
    bar.finish_and_clear();
    WindowReading {
        elapsed,
        published: p1 - p0,
        delivered: d1 - d0,
        allocs: a1.since(a0),
    }
}

/// Collects the probes' reports once every handler is dropped: waits a little for each,
/// so a probe that never reports shows up as missing instead of hanging the run.
pub fn collect_probes(
    rx: &crossbeam_channel::Receiver<ProbeReport>,
    n: usize,
) -> Vec<Option<ProbeReport>> {
    let mut out: Vec<Option<ProbeReport>> = (0..n).map(|_| None).collect();
    for _ in 0..n {
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(r) => {
                let i = r.endpoint;
                out[i] = Some(r);
            }
            Err(_) => break,
        }
    }
    out
}

/// The cores to pin to, if pinning was asked and the machine tells us its cores.
pub fn cores(pin: bool) -> Vec<core_affinity::CoreId> {
    if pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    }
}
