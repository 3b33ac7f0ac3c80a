//! The workload on dreamnet-bus: one bus in worker mode, the [`SUBSCRIPTIONS`] as real
//! subscriptions and groups, producers publishing in place (`try_publish_with`, the
//! payload archived straight into the ring slot).
//!
//! Latency: the publisher stamps `timestamp_ns` from the bus clock when it accepts the
//! event; the handler reads the same clock (`Config::clock`, a clone of the bus's), so
//! publish -> handler is one clock minus itself, no cross-clock error and nothing added
//! to the library. Open loop measures from the intended time carried in the payload.

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dreamnet_bus::{
    AgentId, Bus, BusStats, Clock, DeadLetter, DeadReason, Delivery, Draft, Event, Filter,
    FullPolicy, Jitter, Outcome, Priority, PublishError, Publisher, RetryPolicy, Subscription,
    SubscriptionId, SubscriptionStats,
};

use crate::conservation;
use crate::report::{Failures, RunReport};
use crate::workload::{
    self, endpoints, produce, Fate, Injector, Mode, Options, Pace, Probe, Reliability, Returned,
    RunControl, Sent, Sink, Step, Tally, Window, Work, KINDS, SUBSCRIPTIONS,
};

/// The error code of an injected `Fail`.
pub const FAIL_CODE: u16 = 500;
/// The error code of an injected `Retry`.
pub const RETRY_CODE: u16 = 503;

/// The payload of an injected panic, so the quiet hook can tell it from a real one.
#[derive(Debug)]
pub struct InjectedPanic;

/// Injected panics the quiet hook has seen.
static INJECTED_PANICS: AtomicU64 = AtomicU64::new(0);

/// Installs (once) a panic hook that counts injected panics silently and hands any other
/// panic to the previous hook, so a run with `--panic-rate` is not flooded with messages
/// but a real panic still prints.
pub fn install_quiet_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().is::<InjectedPanic>() {
                INJECTED_PANICS.fetch_add(1, Ordering::Relaxed);
            } else {
                previous(info);
            }
        }));
    });
}

/// Dead-letter reasons in report order, with their report names.
const REASONS: [&str; 13] = [
    "failed",
    "retries-exhausted",
    "deadline-exceeded",
    "panicked",
    "retry-capacity",
    "no-subscriber",
    "unsubscribed",
    "shutdown",
    "late",
    "key-overflow",
    "unaggregatable",
    "loop-detected",
    "emit-full",
];

fn reason_index(r: DeadReason) -> usize {
    match r {
        DeadReason::Failed { .. } => 0,
        DeadReason::RetriesExhausted => 1,
        DeadReason::DeadlineExceeded => 2,
        DeadReason::Panicked => 3,
        DeadReason::RetryCapacity => 4,
        DeadReason::NoSubscriber => 5,
        DeadReason::Unsubscribed => 6,
        DeadReason::Shutdown => 7,
        DeadReason::Late => 8,
        DeadReason::KeyOverflow => 9,
        DeadReason::Unaggregatable => 10,
        DeadReason::LoopDetected => 11,
        DeadReason::EmitFull => 12,
    }
}

/// What the `on_dead_letter` hook counts: every letter, by reason and by subscription
/// (ids are dense from 0 on a fresh bus; anything else lands in `other_subscription`).
#[derive(Debug)]
struct DeadCounts {
    by_reason: [AtomicU64; REASONS.len()],
    by_subscription: Vec<AtomicU64>,
    other_subscription: AtomicU64,
}

impl DeadCounts {
    fn new(subscriptions: usize) -> Self {
        DeadCounts {
            by_reason: Default::default(),
            by_subscription: (0..subscriptions).map(|_| AtomicU64::new(0)).collect(),
            other_subscription: AtomicU64::new(0),
        }
    }

    fn record<const SLOT: usize>(&self, d: &DeadLetter<SLOT>) {
        self.by_reason[reason_index(d.reason)].fetch_add(1, Ordering::Relaxed);
        if let Some(id) = d.subscription {
            match self.by_subscription.get(id.raw() as usize) {
                Some(c) => c.fetch_add(1, Ordering::Relaxed),
                None => self.other_subscription.fetch_add(1, Ordering::Relaxed),
            };
        }
    }

    fn reason(&self, i: usize) -> u64 {
        self.by_reason[i].load(Ordering::Relaxed)
    }
}

/// Slot sizes loadgen can run with; the smallest that fits the payload is used.
pub const SLOTS: [usize; 3] = [256, 512, 1024];

/// The smallest slot that holds a [`Work`] with `payload` filler bytes, and the archived
/// size, found by archiving one (so the answer is rkyv's, not an estimate).
pub fn slot_for(payload: usize) -> Option<(usize, usize)> {
    let work = Work {
        seq: u64::MAX,
        intended_ns: u64::MAX,
        blob: vec![0; payload],
    };
    fn fits<const SLOT: usize>(w: &Work) -> Option<usize> {
        let ev = Event::<SLOT>::new(dreamnet_bus::EventType::AGENT_TASK)
            .with_payload(w)
            .ok()?;
        Some(ev.header().payload_len())
    }
    if let Some(n) = fits::<256>(&work) {
        return Some((256, n));
    }
    if let Some(n) = fits::<512>(&work) {
        return Some((512, n));
    }
    fits::<1024>(&work).map(|n| (1024, n))
}

/// Runs the workload on dreamnet-bus with the slot size `slot` (one of [`SLOTS`]).
pub fn run(opts: &Options, slot: usize) -> Result<RunReport, Box<dyn Error>> {
    match slot {
        256 => run_slot::<256>(opts),
        512 => run_slot::<512>(opts),
        1024 => run_slot::<1024>(opts),
        other => Err(format!("unsupported slot size {other}").into()),
    }
}

/// A producer's publishers, one per agent it publishes as.
struct BusSink<const SLOT: usize> {
    publishers: Vec<Publisher<SLOT>>,
    agents: Vec<AgentId>,
}

impl<const SLOT: usize> Sink for BusSink<SLOT> {
    #[inline]
    fn try_send(&mut self, step: &Step, work: &Work) -> Sent {
        let kind = &KINDS[step.kind];
        let mut draft = Draft::new(kind.event_type)
            .with_priority(step.priority)
            .with_correlation_id(work.seq + 1);
        if let Some(d) = kind.destination {
            draft = draft.to(self.agents[d]);
        }
        match self.publishers[step.slot].try_publish_with(draft, work) {
            Ok(_) => Sent::Accepted,
            Err(PublishError::Full(())) => Sent::Full,
            Err(PublishError::Closed(())) => Sent::Closed,
            // Ids come from this bus and the payload was sized by `slot_for`: anything
            // else is a bug worth stopping for.
            Err(e) => panic!("publish refused: {e}"),
        }
    }
}

/// The handler of one endpoint: read the payload (zero copy), record latency (first
/// attempts only: a retry's latency is mostly its backoff), then do what the injector
/// decided for this event (`Done` when nothing is injected).
fn handler<const SLOT: usize>(
    mut probe: Probe,
    clock: Clock,
    open: bool,
    inject: Option<Injector>,
) -> impl FnMut(&Delivery<'_, SLOT>) -> Outcome + Send + 'static {
    move |d| {
        crate::alloc::mark_hot();
        let now = clock.now_ns();
        let h = d.header();
        let attempt = d.envelope().attempts;
        match d.payload::<Work>() {
            Ok(w) => {
                let work = workload::touch(w.seq.to_native(), &w.blob);
                if attempt <= 1 {
                    let start = if open {
                        w.intended_ns.to_native()
                    } else {
                        h.timestamp_ns()
                    };
                    probe.observe(h.priority(), start, h.timestamp_ns(), now, work);
                } else {
                    probe.redelivered(work);
                }
            }
            Err(_) => probe.bad_payload(),
        }
        let fate = inject.map_or(Fate::Done, |i| i.fate(h.id()));
        match fate {
            Fate::Retry(k) if attempt <= k => {
                probe.returned.retry += 1;
                Outcome::retry(RETRY_CODE)
            }
            Fate::Done | Fate::Retry(_) => {
                probe.returned.done += 1;
                Outcome::Done
            }
            Fate::Fail => {
                probe.returned.fail += 1;
                Outcome::fail(FAIL_CODE)
            }
            Fate::Panic => {
                probe.returned.panicked += 1;
                std::panic::panic_any(InjectedPanic)
            }
        }
    }
}

/// One run, in named steps: build the bus, subscribe the workload, start the producers,
/// measure, let the bus go quiet, close, then read every count and check conservation.
fn run_slot<const SLOT: usize>(opts: &Options) -> Result<RunReport, Box<dyn Error>> {
    let eps = endpoints();
    let dead = Arc::new(DeadCounts::new(eps.len()));
    if opts.inject.panic_rate > 0.0 {
        install_quiet_panic_hook();
    }
    let panics_before = INJECTED_PANICS.load(Ordering::Relaxed);
    let (bus, policy) = build_bus::<SLOT>(opts, &dead)?;
    let agents = workload::AGENTS
        .iter()
        .map(|n| bus.register_agent(n))
        .collect::<Result<Vec<_>, _>>()?;
    // The bus's own clock: what publishers stamp `timestamp_ns` with.
    let clock = bus.config().clock.clone();
    let window = Arc::new(Window::default());
    let (tx, rx) = crossbeam_channel::unbounded();
    let ids = subscribe_workload(&bus, opts, &agents, &eps, &clock, &window, &tx)?;
    drop(tx);

    let control = Arc::new(RunControl::new(opts.producers));
    let producers = spawn_producers(&bus, opts, &agents, &clock, &control)?;
    let delivered = || bus.stats().delivered();
    let reading = workload::drive(opts, "dreamnet-bus", &clock, &window, &control, &delivered);
    let mut tally = Tally::default();
    for h in producers {
        tally.merge(&h.join().map_err(|_| "a producer panicked")?);
    }
    let quiet = quiesce(&bus, &opts.reliability);
    let quiet_counts: Vec<Option<SubscriptionStats>> =
        ids.iter().map(|id| bus.subscription_stats(*id)).collect();
    // Drains everything accepted, stops the workers; their handlers (and probes) drop.
    // Whatever still waits on a wheel is dead-lettered (`Shutdown`).
    bus.close();
    let stats = bus.stats();
    let after: Vec<Option<SubscriptionStats>> =
        ids.iter().map(|id| bus.subscription_stats(*id)).collect();
    let probes = workload::collect_probes(&rx, eps.len());

    let mut report = RunReport::new("dreamnet-bus", reading, tally, &eps, probes);
    report.open_loop = matches!(opts.mode, Mode::Open { .. });
    let counts = SubscriptionCounts {
        ids: &ids,
        quiet: &quiet_counts,
        after: &after,
        idle: quiet.idle,
    };
    fill_endpoint_rows(&mut report, opts, &eps, &counts, &dead);
    let failures = failures(
        &bus,
        opts,
        &policy,
        &stats,
        &report,
        &dead,
        &quiet,
        panics_before,
    );
    conservation::check(&mut report, &stats, &failures, opts.inject.panic_rate > 0.0);
    add_notes(
        &mut report,
        &stats,
        &failures,
        &quiet,
        &opts.reliability,
        &dead,
    );
    report.failures = Some(failures);
    Ok(report)
}

/// The bus of a run: worker mode, the retry policy, timer wheel and dead-letter ring
/// sized by the options, and a dead-letter hook that counts every letter into `dead`.
fn build_bus<const SLOT: usize>(
    opts: &Options,
    dead: &Arc<DeadCounts>,
) -> Result<(Bus<SLOT>, RetryPolicy), Box<dyn Error>> {
    let rel = &opts.reliability;
    let policy = RetryPolicy::builder()
        .max_attempts(rel.max_attempts)
        .base(rel.retry_base)
        .multiplier(2.0)
        .cap(rel.retry_cap)
        .jitter(Jitter::Full)
        .build()?;
    let hook_counts = Arc::clone(dead);
    let bus = Bus::<SLOT>::builder_with_slot()
        .shards(opts.shards)
        .pinned(opts.pin)
        .wait_strategy(opts.wait)
        .retry_policy(policy)
        .timer_capacity(rel.timer_capacity)
        .dead_letters(
            rel.dead_letters,
            if rel.drop_oldest {
                FullPolicy::DropOldest
            } else {
                FullPolicy::RejectNew
            },
        )
        .on_dead_letter(move |d| hook_counts.record(d));
    let bus = match &opts.journal {
        Some(j) => bus.journal(j.config()).build()?,
        None => bus.build()?,
    };
    Ok((bus, policy))
}

/// Subscribes every [`SUBSCRIPTIONS`] spec (groups with their members), each handler with
/// its probe reporting to `probes`. Returns the subscription ids in endpoint order.
fn subscribe_workload<const SLOT: usize>(
    bus: &Bus<SLOT>,
    opts: &Options,
    agents: &[AgentId],
    eps: &[workload::Endpoint],
    clock: &Clock,
    window: &Arc<Window>,
    probes: &crossbeam_channel::Sender<workload::ProbeReport>,
) -> Result<Vec<SubscriptionId>, Box<dyn Error>> {
    use workload::{Pred, Routing};
    let open = matches!(opts.mode, Mode::Open { .. });
    let mut ids: Vec<SubscriptionId> = Vec::with_capacity(eps.len());
    for (spec_ix, spec) in SUBSCRIPTIONS.iter().enumerate() {
        let mut filter = Filter::of_types(spec.types);
        let probe = |member: usize| {
            let e = eps
                .iter()
                .position(|e| e.spec == spec_ix && e.member == member)
                .expect("every member is an endpoint");
            let seed = (e as u64 + 1).wrapping_mul(0xd1b5_4a32_d192_ed03);
            handler::<SLOT>(
                Probe::new(e, Arc::clone(window), probes.clone()),
                clock.clone(),
                open,
                opts.inject
                    .applies_to(spec_ix)
                    .then(|| opts.inject.injector(seed)),
            )
        };
        match spec.routing {
            Routing::Direct(a) => {
                ids.push(bus.subscribe(Subscription::new(filter).for_agent(agents[a]), probe(0))?)
            }
            Routing::Broadcast => ids.push(bus.subscribe(filter, probe(0))?),
            Routing::Filtered(pred) => {
                filter = match pred {
                    Pred::Urgent => filter
                        .matching(|h| matches!(h.priority(), Priority::Critical | Priority::High)),
                    Pred::FromAgent(a) => {
                        let who = agents[a];
                        filter.matching(move |h| h.source() == who)
                    }
                };
                ids.push(bus.subscribe(filter, probe(0))?);
            }
            Routing::Group(balance, n) => {
                let g = bus.group(spec.name, Subscription::new(filter), balance)?;
                for m in 0..n {
                    ids.push(bus.join(g, probe(m))?);
                }
            }
            Routing::DirectGroup(a, balance, n) => {
                let s = Subscription::new(filter).for_agent(agents[a]);
                let g = bus.group(spec.name, s, balance)?;
                for m in 0..n {
                    ids.push(bus.join(g, probe(m))?);
                }
            }
        }
    }
    Ok(ids)
}

/// Starts the producer threads, each with a publisher per agent it publishes as; pinned
/// after the shard workers' cores when pinning is on.
fn spawn_producers<const SLOT: usize>(
    bus: &Bus<SLOT>,
    opts: &Options,
    agents: &[AgentId],
    clock: &Clock,
    control: &Arc<RunControl>,
) -> Result<Vec<JoinHandle<Tally>>, Box<dyn Error>> {
    let cores = workload::cores(opts.pin);
    // Producers start after the warm-up's first instant; in open loop they share a start.
    let start_ns = clock.now_ns() + 1_000_000;
    let mut handles = Vec::with_capacity(opts.producers);
    for p in 0..opts.producers {
        let mine = workload::agents_of(p, opts.producers);
        let steps = workload::schedule(p, &mine);
        let mut sink = BusSink {
            publishers: mine
                .iter()
                .map(|&a| bus.publisher(agents[a]))
                .collect::<Result<Vec<_>, _>>()?,
            agents: agents.to_vec(),
        };
        let pace = match opts.mode {
            Mode::Closed => None,
            Mode::Open { rate } => Some(Pace {
                start_ns,
                interval_ns: 1e9 * opts.producers as f64 / rate,
            }),
        };
        // Shard workers take the first cores; producers the next ones.
        let core = (!cores.is_empty()).then(|| cores[(opts.shards + p) % cores.len()]);
        let (clock, control, payload) = (clock.clone(), Arc::clone(control), opts.payload);
        handles.push(
            std::thread::Builder::new()
                .name(format!("loadgen-producer-{p}"))
                .spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    produce(&mut sink, p, &steps, payload, pace, &clock, &control)
                })?,
        );
    }
    Ok(handles)
}

/// How the bus went quiet after the producers stopped.
#[derive(Debug, Clone, Copy)]
struct Quiescence {
    /// Whether it was idle (rings drained, every retry fired) within the idle timeout.
    idle: bool,
    /// How long waiting took.
    wait: Duration,
    /// Retries scheduled and not fired when `wait_idle` first said idle.
    in_flight_after_idle: u64,
}

/// Waits until every ring is drained and every retry has fired (the identity accepted =
/// done + dead-lettered holds only then, not while retries wait on the wheel).
fn quiesce<const SLOT: usize>(bus: &Bus<SLOT>, rel: &Reliability) -> Quiescence {
    let from = Instant::now();
    let mut idle = bus.wait_idle(rel.idle_timeout);
    let in_flight_after_idle = in_flight_retries(&bus.stats());
    if idle {
        // `wait_idle` reads the wheel gauge, which a shard updates at the end of a poll,
        // after the ring counts: confirm after a tick or two that nothing moved.
        std::thread::sleep(bus.config().tick * 2);
        idle = bus.wait_idle(rel.idle_timeout.saturating_sub(from.elapsed()));
    }
    Quiescence {
        idle,
        wait: from.elapsed(),
        in_flight_after_idle,
    }
}

/// The bus's per-subscription counts, at quiescence and after close.
struct SubscriptionCounts<'a> {
    ids: &'a [SubscriptionId],
    quiet: &'a [Option<SubscriptionStats>],
    after: &'a [Option<SubscriptionStats>],
    idle: bool,
}

/// Puts the bus's own counts beside each handler's row: accepted after close, the
/// counts at quiescence (or after close if the bus never went idle) and the dead letters
/// the hook saw for it.
fn fill_endpoint_rows(
    report: &mut RunReport,
    opts: &Options,
    eps: &[workload::Endpoint],
    counts: &SubscriptionCounts<'_>,
    dead: &DeadCounts,
) {
    for (i, row) in report.endpoints.iter_mut().enumerate() {
        let spec = eps[i].spec;
        row.injected = opts.inject.applies_to(spec);
        row.bus_accepted = counts.after[i].as_ref().map(|s| s.accepted);
        row.bus = if counts.idle {
            counts.quiet[i].clone()
        } else {
            counts.after[i].clone()
        };
        row.dead_letters_seen = dead
            .by_subscription
            .get(counts.ids[i].raw() as usize)
            .map(|c| c.load(Ordering::Relaxed));
        if row.injected && opts.inject.retry_rate > 0.0 {
            if let workload::Routing::Group(dreamnet_bus::Balance::LeastLoaded, _) =
                SUBSCRIPTIONS[spec].routing
            {
                // Least-loaded counts retries waiting as load: the split is no longer even.
                row.tolerance = row.expected;
            }
        }
    }
}

/// What was injected, the policy in force, and every failure-path count: what handlers
/// returned, panics, retries, the wheels, dead letters by reason, the ring.
#[allow(clippy::too_many_arguments)]
fn failures<const SLOT: usize>(
    bus: &Bus<SLOT>,
    opts: &Options,
    policy: &RetryPolicy,
    stats: &BusStats,
    report: &RunReport,
    dead: &DeadCounts,
    quiet: &Quiescence,
    panics_before: u64,
) -> Failures {
    let rel = &opts.reliability;
    let ring = bus.dead_letters();
    let mut returned = Returned::default();
    for e in &report.endpoints {
        returned.merge(&e.returned);
    }
    let sum = |f: fn(&dreamnet_bus::ShardStats) -> u64| stats.shards.iter().map(f).sum::<u64>();
    Failures {
        injected: injected_text(&opts.inject),
        policy: format!(
            "max {} attempts, base {} us, x2, cap {} ms, full jitter, tick {} us",
            policy.max_attempts,
            policy.base.as_micros(),
            policy.cap.as_millis(),
            bus.config().tick.as_micros()
        ),
        returned,
        panics_hooked: INJECTED_PANICS.load(Ordering::Relaxed) - panics_before,
        panics_caught: sum(|s| s.panicked),
        retries_scheduled: sum(|s| s.retries_scheduled),
        retries_fired: sum(|s| s.retries_fired),
        timers_pending: sum(|s| s.timers_pending),
        timer_capacity: rel.timer_capacity,
        dead_by_reason: REASONS
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, dead.reason(i)))
            .collect(),
        dead_lettered: sum(|s| s.dead_lettered),
        ring_capacity: ring.capacity(),
        ring_policy: if rel.drop_oldest {
            "drop-oldest"
        } else {
            "reject-new"
        },
        ring_len: ring.len(),
        ring_dropped: ring.dropped(),
        idle: quiet.idle,
        idle_wait: quiet.wait,
    }
}

/// The failure injection, in words.
fn injected_text(inj: &workload::Inject) -> String {
    if !inj.any() {
        return "none injected".to_owned();
    }
    let names: Vec<&str> = SUBSCRIPTIONS
        .iter()
        .enumerate()
        .filter(|(i, _)| inj.applies_to(*i))
        .map(|(_, s)| s.name)
        .collect();
    format!(
        "injected per delivery: fail {:.3}%, retry {:.3}% (then done after 1..={} retries), panic {:.3}%, into {}",
        inj.fail_rate * 100.0,
        inj.retry_rate * 100.0,
        inj.max_retries,
        inj.panic_rate * 100.0,
        if names.len() == SUBSCRIPTIONS.len() {
            format!("all {} subscriptions", names.len())
        } else {
            names.join(", ")
        }
    )
}

/// Remarks a reader needs to read the numbers right: no quiescence, a lagging idle gauge,
/// foreign dead letters, ring and wheel overflow, unwinding allocations, filtered
/// entries on extra shards, pinning failures.
fn add_notes(
    report: &mut RunReport,
    stats: &BusStats,
    failures: &Failures,
    quiet: &Quiescence,
    rel: &Reliability,
    dead: &DeadCounts,
) {
    let notes = &mut report.notes;
    if !quiet.idle {
        notes.push(format!(
            "the bus was not idle within {:.1} s (--idle-timeout): subscription counts are read after close, where letters waiting on a wheel became `shutdown` dead letters",
            rel.idle_timeout.as_secs_f64()
        ));
    }
    if quiet.in_flight_after_idle > 0 {
        notes.push(format!(
            "library: Bus::wait_idle returned true while {} retries were still scheduled and not fired (the wheel gauge lags the ring counters within a poll); loadgen confirms idleness twice",
            quiet.in_flight_after_idle
        ));
    }
    if dead.other_subscription.load(Ordering::Relaxed) > 0 {
        notes.push("some dead letters named a subscription id loadgen did not create".into());
    }
    if failures.ring_dropped > 0 {
        notes.push(format!(
            "the dead-letter ring ({} entries, {}) dropped {} letters; every one was counted by the ring and seen by the hook",
            failures.ring_capacity, failures.ring_policy, failures.ring_dropped
        ));
    }
    if failures.dead("retry-capacity") > 0 {
        notes.push(format!(
            "{} retries found the timer wheel full and were dead-lettered as retry-capacity (raise --timer-capacity)",
            failures.dead("retry-capacity")
        ));
    }
    if failures.returned.panicked > 0 {
        notes.push(
            "injected panics unwind, and unwinding allocates (the exception object): allocations per event count them".into(),
        );
    }
    let unmatched: u64 = stats
        .shards
        .iter()
        .map(|x| x.unmatched.iter().sum::<u64>())
        .sum();
    if unmatched > 0 {
        // With several shards an event goes to every shard that has a route for its type;
        // a shard whose routes' predicates all refuse it counts it as unmatched.
        notes.push(format!(
            "{unmatched} ring entries reached a shard where no route's filter passed them (expected with >1 shard and filtered routes)"
        ));
    }
    if stats.shards.iter().any(|s| s.pin_failed) {
        notes.push("pinning a shard worker failed; it ran unpinned".into());
    }
}

/// Retries scheduled but neither fired nor dead-lettered on close.
fn in_flight_retries(s: &BusStats) -> u64 {
    s.shards
        .iter()
        .map(|x| x.retries_scheduled.saturating_sub(x.retries_fired))
        .sum()
}
