//! The baseline: a "channel bus" built the way a Rust user would build one without
//! dreamnet-bus. Producers send `Box<BaselineEvent>` into one bounded `crossbeam-channel`;
//! one consumer thread receives them and dispatches through a `HashMap` from event type to
//! routes, each route a list of boxed `FnMut` handlers (several for a load-balanced group).
//!
//! It follows the same routing rules as dreamnet-bus (direct, broadcast, filtered,
//! round-robin and least-loaded groups), so both get the same deliveries. What it does
//! not have, by construction: priorities (one FIFO channel), zero-copy payloads (each
//! event is a box plus a cloned `Vec` payload), sharding (one consumer thread).
//!
//! [`ChannelBus`] and [`Dispatcher`] are public so the criterion benches can reuse them.

use std::collections::HashMap;
use std::error::Error;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use dreamnet_bus::{Balance, Clock, EventType, Priority};

use crate::report::{Check, RunReport};
use crate::workload::{
    self, endpoints, produce, Mode, Options, Pace, Pred, Probe, Routing, RunControl, Sent, Sink,
    Step, Tally, Window, Work, KINDS, SUBSCRIPTIONS,
};

/// An event as a user would define it: owned fields, an owned payload.
#[derive(Debug, Clone)]
pub struct BaselineEvent {
    /// Unique id.
    pub id: u64,
    /// Event type.
    pub event_type: EventType,
    /// Source agent index.
    pub source: u32,
    /// Destination agent index (`None`: broadcast).
    pub destination: Option<u32>,
    /// Priority (carried, not acted on: one FIFO).
    pub priority: Priority,
    /// When it was sent, nanoseconds on the shared clock.
    pub timestamp_ns: u64,
    /// Correlation id.
    pub correlation_id: u64,
    /// The payload.
    pub payload: Work,
}

/// A handler.
pub type Handler = Box<dyn FnMut(&BaselineEvent) + Send>;
/// A predicate on an event.
pub type Predicate = Box<dyn Fn(&BaselineEvent) -> bool + Send>;

/// A route: who it is for (direct), what passes (filter), and its handlers (one, or a
/// group's members, of which each event gets one).
pub struct Route {
    agent: Option<u32>,
    filter: Option<Predicate>,
    balance: Option<Balance>,
    members: Vec<Handler>,
    delivered: Vec<u64>,
    cursor: usize,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("agent", &self.agent)
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}

/// The consumer's dispatch table: event type -> routes.
#[derive(Debug, Default)]
pub struct Dispatcher {
    routes: Vec<Route>,
    by_type: HashMap<EventType, Vec<usize>>,
    /// Events dispatched.
    pub dispatched: u64,
    /// Handler invocations.
    pub delivered: u64,
}

impl Dispatcher {
    /// Adds a route for `types`: `agent` for direct events (broadcasts reach it too),
    /// `filter` to narrow, `balance` for a group (members added with [`Dispatcher::join`]).
    /// Returns the route's index.
    pub fn route(
        &mut self,
        types: &[EventType],
        agent: Option<u32>,
        filter: Option<Predicate>,
        balance: Option<Balance>,
    ) -> usize {
        let ix = self.routes.len();
        self.routes.push(Route {
            agent,
            filter,
            balance,
            members: Vec::new(),
            delivered: Vec::new(),
            cursor: 0,
        });
        for t in types {
            self.by_type.entry(*t).or_default().push(ix);
        }
        ix
    }

    /// Adds a handler to route `route`.
    pub fn join(&mut self, route: usize, handler: Handler) {
        let r = &mut self.routes[route];
        r.members.push(handler);
        r.delivered.push(0);
    }

    /// Delivers one event to every route it matches (one member per group).
    pub fn dispatch(&mut self, ev: &BaselineEvent) {
        self.dispatched += 1;
        let Some(list) = self.by_type.get(&ev.event_type) else {
            return;
        };
        for &ix in list {
            let r = &mut self.routes[ix];
            if ev.destination.is_some() && ev.destination != r.agent {
                continue;
            }
            if r.filter.as_ref().is_some_and(|f| !f(ev)) {
                continue;
            }
            let n = r.members.len();
            if n == 0 {
                continue;
            }
            let m = match r.balance {
                Some(Balance::LeastLoaded) => {
                    // No retries here, so "least loaded" is the fewest delivered.
                    (0..n).min_by_key(|&i| r.delivered[i]).unwrap_or(0)
                }
                _ => {
                    let m = r.cursor % n;
                    r.cursor = (m + 1) % n;
                    m
                }
            };
            r.delivered[m] += 1;
            (r.members[m])(ev);
            self.delivered += 1;
        }
    }
}

/// The channel and its consumer thread.
#[derive(Debug)]
pub struct ChannelBus {
    tx: Sender<Box<BaselineEvent>>,
    consumer: JoinHandle<Dispatcher>,
}

impl ChannelBus {
    /// Starts a consumer on `dispatcher` behind a bounded channel of `capacity`;
    /// `on_event` runs after each dispatch with the dispatcher (for progress counters).
    pub fn start(
        capacity: usize,
        mut dispatcher: Dispatcher,
        core: Option<core_affinity::CoreId>,
        on_event: impl Fn(&Dispatcher) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, rx): (Sender<Box<BaselineEvent>>, Receiver<Box<BaselineEvent>>) =
            crossbeam_channel::bounded(capacity);
        let consumer = std::thread::Builder::new()
            .name("baseline-consumer".into())
            .spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(c);
                }
                crate::alloc::mark_hot();
                // Ends when every sender is gone: that is the drain on close.
                while let Ok(ev) = rx.recv() {
                    dispatcher.dispatch(&ev);
                    on_event(&dispatcher);
                }
                dispatcher
            })?;
        Ok(ChannelBus { tx, consumer })
    }

    /// A sender for a producer.
    pub fn sender(&self) -> Sender<Box<BaselineEvent>> {
        self.tx.clone()
    }

    /// Drops this handle's sender and waits for the consumer to drain (it stops once
    /// every sender is dropped); returns the dispatcher.
    pub fn close(self) -> std::thread::Result<Dispatcher> {
        drop(self.tx);
        self.consumer.join()
    }
}

/// A producer's side of the baseline: builds the box (as a user would: a fresh one per
/// event, payload cloned) and `try_send`s it; a refused box is kept and re-stamped.
struct ChannelSink {
    tx: Sender<Box<BaselineEvent>>,
    clock: Clock,
    pending: Option<Box<BaselineEvent>>,
    next_id: u64,
}

impl Sink for ChannelSink {
    #[inline]
    fn try_send(&mut self, step: &Step, work: &Work) -> Sent {
        let kind = &KINDS[step.kind];
        let mut ev = match self.pending.take() {
            Some(ev) => ev,
            None => {
                self.next_id += 1;
                Box::new(BaselineEvent {
                    id: self.next_id,
                    event_type: kind.event_type,
                    source: step.agent as u32,
                    destination: kind.destination.map(|d| d as u32),
                    priority: step.priority,
                    timestamp_ns: 0,
                    correlation_id: work.seq + 1,
                    payload: work.clone(),
                })
            }
        };
        // Stamped at each attempt, like dreamnet-bus stamps at acceptance.
        ev.timestamp_ns = self.clock.now_ns();
        match self.tx.try_send(ev) {
            Ok(()) => Sent::Accepted,
            Err(TrySendError::Full(ev)) => {
                self.pending = Some(ev);
                Sent::Full
            }
            Err(TrySendError::Disconnected(_)) => Sent::Closed,
        }
    }
}

/// Runs the workload on the channel bus. `capacity` is the channel bound (loadgen passes
/// the total ring capacity dreamnet-bus gives the same producers).
pub fn run(opts: &Options, capacity: usize) -> Result<RunReport, Box<dyn Error>> {
    let clock = Clock::default();
    let window = Arc::new(Window::default());
    let open = matches!(opts.mode, Mode::Open { .. });
    let (ptx, prx) = crossbeam_channel::unbounded();
    let eps = endpoints();
    let mut d = Dispatcher::default();
    for (spec_ix, spec) in SUBSCRIPTIONS.iter().enumerate() {
        let filter: Option<Predicate> = match spec.routing {
            Routing::Filtered(Pred::Urgent) => Some(Box::new(|e: &BaselineEvent| {
                matches!(e.priority, Priority::Critical | Priority::High)
            })),
            Routing::Filtered(Pred::FromAgent(a)) => {
                Some(Box::new(move |e: &BaselineEvent| e.source == a as u32))
            }
            _ => None,
        };
        let (agent, balance) = match spec.routing {
            Routing::Direct(a) => (Some(a as u32), None),
            Routing::DirectGroup(a, b, _) => (Some(a as u32), Some(b)),
            Routing::Group(b, _) => (None, Some(b)),
            _ => (None, None),
        };
        let route = d.route(spec.types, agent, filter, balance);
        for member in 0..spec.members() {
            let e = eps
                .iter()
                .position(|e| e.spec == spec_ix && e.member == member)
                .expect("every member is an endpoint");
            let mut probe = Probe::new(e, Arc::clone(&window), ptx.clone());
            let clock = clock.clone();
            d.join(
                route,
                Box::new(move |ev: &BaselineEvent| {
                    let now = clock.now_ns();
                    let start = if open {
                        ev.payload.intended_ns
                    } else {
                        ev.timestamp_ns
                    };
                    let w = workload::touch(ev.payload.seq, &ev.payload.blob);
                    probe.observe(ev.priority, start, ev.timestamp_ns, now, w);
                    probe.returned.done += 1;
                }),
            );
        }
    }
    drop(ptx);

    let control = Arc::new(RunControl::new(opts.producers));
    let cores = workload::cores(opts.pin);
    let consumer_core = cores.first().copied();
    let progress = Arc::clone(&control);
    let bus = ChannelBus::start(capacity, d, consumer_core, move |d| {
        progress.delivered.0.store(d.delivered, Ordering::Relaxed);
    })?;

    let start_ns = clock.now_ns() + 1_000_000;
    let mut handles = Vec::with_capacity(opts.producers);
    for p in 0..opts.producers {
        let mine = workload::agents_of(p, opts.producers);
        let steps = workload::schedule(p, &mine);
        let mut sink = ChannelSink {
            tx: bus.sender(),
            clock: clock.clone(),
            pending: None,
            next_id: (p as u64) << 40,
        };
        let pace = match opts.mode {
            Mode::Closed => None,
            Mode::Open { rate } => Some(Pace {
                start_ns,
                interval_ns: 1e9 * opts.producers as f64 / rate,
            }),
        };
        // Same placement as dreamnet-bus: the consumer on the first core, producers after.
        let core = (!cores.is_empty()).then(|| cores[(1 + p) % cores.len()]);
        let (clock, control, payload) = (clock.clone(), Arc::clone(&control), opts.payload);
        handles.push(
            std::thread::Builder::new()
                .name(format!("baseline-producer-{p}"))
                .spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    let tally = produce(&mut sink, p, &steps, payload, pace, &clock, &control);
                    drop(sink);
                    tally
                })?,
        );
    }
    let delivered = || control.delivered.0.load(Ordering::Relaxed);
    let reading = workload::drive(opts, "channel bus", &clock, &window, &control, &delivered);
    let mut tally = Tally::default();
    for h in handles {
        tally.merge(&h.join().map_err(|_| "a producer panicked")?);
    }
    let d = bus.close().map_err(|_| "the baseline consumer panicked")?;
    // The handlers (and their probes) live in the dispatcher: drop it to collect them.
    let (dispatched, delivered_total) = (d.dispatched, d.delivered);
    drop(d);
    let probes = workload::collect_probes(&prx, eps.len());

    let mut report = RunReport::new("channel bus", reading, tally, &eps, probes);
    report.open_loop = open;
    let t = &report.tally;
    let accepted = t.total();
    let handler_calls: u64 = report.endpoints.iter().map(|e| e.delivered).sum();
    let expected: u64 = SUBSCRIPTIONS.iter().map(|spec| t.expected(spec)).sum();
    let checks = vec![
        Check::eq(
            format!(
                "send attempts {} = accepted {} + refused full {} (refused boxes were retried)",
                t.attempts, accepted, t.full
            ),
            t.attempts,
            accepted + t.full,
        ),
        Check::eq(
            format!("consumer received {dispatched} = accepted {accepted}"),
            dispatched,
            accepted,
        ),
        Check::same(
            format!(
                "deliveries: dispatcher {delivered_total} = handler calls {handler_calls} = model {expected}"
            ),
            &[delivered_total, handler_calls, expected],
        ),
    ];
    report.checks.extend(checks);
    report.notes.push(format!(
        "baseline: one bounded channel (capacity {capacity}), one consumer thread, no priorities (FIFO), a Box and a payload Vec per event"
    ));
    if opts.shards > 1 {
        report
            .notes
            .push("baseline: --shards does not apply (one consumer thread)".into());
    }
    Ok(report)
}
