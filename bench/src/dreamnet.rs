//! The workload on dreamnet-bus: one bus in worker mode, the [`SUBSCRIPTIONS`] as real
//! subscriptions and groups, producers publishing in place (`try_publish_with`, the
//! payload archived straight into the ring slot).
//!
//! Latency: the publisher stamps `timestamp_ns` from the bus clock when it accepts the
//! event; the handler reads the same clock (`Config::clock`, a clone of the bus's), so
//! publish -> handler is one clock minus itself, no cross-clock error and nothing added
//! to the library. Open loop measures from the intended time carried in the payload.

use std::error::Error;
use std::sync::Arc;

use dreamnet_bus::{
    AgentId, Bus, BusStats, Clock, Delivery, Draft, Event, Filter, Outcome, Priority, PublishError,
    Publisher, RunMode, Subscription, SubscriptionId,
};

use crate::report::{Check, RunReport};
use crate::workload::{
    self, endpoints, produce, Mode, Options, Pace, Probe, RunControl, Sent, Sink, Step, Tally,
    Window, Work, KINDS, SUBSCRIPTIONS,
};

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
            .priority(step.priority)
            .correlation_id(work.seq + 1);
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

/// The handler of one endpoint: read the payload (zero copy), record latency, done.
fn handler<const SLOT: usize>(
    mut probe: Probe,
    clock: Clock,
    open: bool,
) -> impl FnMut(&Delivery<'_, SLOT>) -> Outcome + Send + 'static {
    move |d| {
        crate::alloc::mark_hot();
        let now = clock.now_ns();
        let h = d.header();
        match d.payload::<Work>() {
            Ok(w) => {
                let start = if open {
                    w.intended_ns.to_native()
                } else {
                    h.timestamp_ns()
                };
                probe.observe(
                    h.priority(),
                    start,
                    h.timestamp_ns(),
                    now,
                    workload::touch(w.seq.to_native(), &w.blob),
                );
            }
            Err(_) => probe.bad_payload(),
        }
        Outcome::Done
    }
}

fn run_slot<const SLOT: usize>(opts: &Options) -> Result<RunReport, Box<dyn Error>> {
    let bus = Bus::<SLOT>::builder_with_slot()
        .shards(opts.shards)
        .mode(RunMode::Workers { pin: opts.pin })
        .wait_strategy(opts.wait)
        .build()?;
    let agents = workload::AGENTS
        .iter()
        .map(|n| bus.register_agent(n))
        .collect::<Result<Vec<_>, _>>()?;
    // The bus's own clock: what publishers stamp `timestamp_ns` with.
    let clock = bus.config().clock.clone();
    let window = Arc::new(Window::default());
    let open = matches!(opts.mode, Mode::Open { .. });

    let (tx, rx) = crossbeam_channel::unbounded();
    let eps = endpoints();
    let mut ids: Vec<SubscriptionId> = Vec::with_capacity(eps.len());
    for (spec_ix, spec) in SUBSCRIPTIONS.iter().enumerate() {
        let mut filter = Filter::of_types(spec.types);
        let probe = |member: usize| {
            let e = eps
                .iter()
                .position(|e| e.spec == spec_ix && e.member == member)
                .expect("every member is an endpoint");
            handler::<SLOT>(
                Probe::new(e, Arc::clone(&window), tx.clone()),
                clock.clone(),
                open,
            )
        };
        use workload::{Pred, Routing};
        match spec.routing {
            Routing::Direct(a) => ids.push(
                bus.subscribe_with(Subscription::new(filter).for_agent(agents[a]), probe(0))?,
            ),
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
    drop(tx);

    let control = Arc::new(RunControl::new(opts.producers));
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
            agents: agents.clone(),
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
        let (clock, control, payload) = (clock.clone(), Arc::clone(&control), opts.payload);
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

    let delivered = || bus.stats().delivered();
    let reading = workload::drive(opts, "dreamnet-bus", &clock, &window, &control, &delivered);
    let mut tally = Tally::default();
    for h in handles {
        tally.merge(&h.join().map_err(|_| "a producer panicked")?);
    }
    // Drains everything accepted, stops the workers; their handlers (and probes) drop.
    bus.close();
    let stats = bus.stats();
    let accepted: Vec<Option<u64>> = ids
        .iter()
        .map(|id| bus.subscription_stats(*id).map(|s| s.accepted))
        .collect();
    let probes = workload::collect_probes(&rx, eps.len());

    let mut report = RunReport::new("dreamnet-bus", reading, tally, &eps, probes);
    report.open_loop = open;
    for (row, acc) in report.endpoints.iter_mut().zip(accepted) {
        row.bus_accepted = acc;
    }
    conservation(&mut report, &stats);
    let unmatched: u64 = stats
        .shards
        .iter()
        .map(|x| x.unmatched.iter().sum::<u64>())
        .sum();
    if unmatched > 0 {
        // With several shards an event goes to every shard that has a route for its type;
        // a shard whose routes' predicates all refuse it counts it as unmatched.
        report.notes.push(format!(
            "{unmatched} ring entries reached a shard where no route's filter passed them (expected with >1 shard and filtered routes)"
        ));
    }
    if stats.shards.iter().any(|s| s.pin_failed) {
        report
            .notes
            .push("pinning a shard worker failed; it ran unpinned".into());
    }
    Ok(report)
}

/// The conservation checks, from the bus's own counters against loadgen's.
fn conservation(report: &mut RunReport, s: &BusStats) {
    let t = &report.tally;
    let accepted = t.total();
    report.checks.push(Check::eq(
        format!(
            "publish attempts {} = accepted {} + refused full {} (each refusal handed the event back; it was retried, not lost)",
            t.attempts, accepted, t.full
        ),
        t.attempts,
        accepted + t.full,
    ));
    report.checks.push(Check::eq(
        format!(
            "bus published {} = loadgen accepted {}",
            s.published, accepted
        ),
        s.published,
        accepted,
    ));
    report.checks.push(Check::eq(
        format!(
            "bus rejected {} (full {}, closed {}, invalid {}) = loadgen refusals {}",
            s.rejected(),
            s.rejected_full,
            s.rejected_closed,
            s.rejected_invalid,
            t.full + t.closed
        ),
        s.rejected(),
        t.full + t.closed,
    ));
    let entries: u64 = s
        .shards
        .iter()
        .map(|x| x.published.iter().sum::<u64>())
        .sum();
    let dispatched: u64 = s
        .shards
        .iter()
        .map(|x| x.dispatched.iter().sum::<u64>())
        .sum();
    report.checks.push(Check::eq(
        format!(
            "published {} = routed to >=1 shard {} + unroutable {}; ring entries {} over {} shard(s) = dispatched {} + still queued {}",
            s.published,
            s.published - s.unroutable,
            s.unroutable,
            entries,
            s.shards.len(),
            dispatched,
            s.queued()
        ),
        entries,
        dispatched + s.queued(),
    ));
    let handler_calls: u64 = report.endpoints.iter().map(|e| e.delivered).sum();
    let expected: u64 = SUBSCRIPTIONS.iter().map(|spec| t.expected(spec)).sum();
    let bus_accepted: u64 = report.endpoints.iter().filter_map(|e| e.bus_accepted).sum();
    report.checks.push(Check::same(
        format!(
            "deliveries: bus delivered {} = subscriptions accepted {} = handler calls {} = model {}",
            s.delivered(),
            bus_accepted,
            handler_calls,
            expected
        ),
        &[s.delivered(), bus_accepted, handler_calls, expected],
    ));
    let retries: u64 = s.shards.iter().map(|x| x.retries_scheduled).sum();
    let dead: u64 = s.shards.iter().map(|x| x.dead_lettered).sum();
    let panicked: u64 = s.shards.iter().map(|x| x.panicked).sum();
    report.checks.push(Check::eq(
        format!(
            "retries {retries}, dead letters {dead}, panics {panicked} (all 0 without injected failures)"
        ),
        retries + dead + panicked,
        0,
    ));
}
