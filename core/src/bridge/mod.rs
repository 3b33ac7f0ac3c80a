//! A bridge from a bus to NATS (feature `nats`): distribution across processes and
//! machines through a real, proven messaging engine (the spec's Instant Mesh).
//!
//! ```text
//!   local bus                      bridge (its own thread, a small tokio runtime)       NATS
//!  ┌──────────┐  Export: a bus    ┌───────────────────────────────────────────┐
//!  │publishers│─ subscription ───>│ export_handler: mark check, try_send ──┐   │
//!  │  shards  │  (Retry if full)  │ bounded queue ─> Outbound: names ->    │   │─> <ns>.<type>.<dest|all>
//!  │          │                   │   headers, core publish / JetStream    │   │─> <ns>.js.<type>.<dest|all>
//!  │          │<─ publish as ─────│ Sink: from_bytes, headers, loop + hop  <───│<─ Import / JetStreamImport
//!  │          │   remote agent    │   checks, names -> ids, wire mark      │   │
//!  └──────────┘                   └───────────────────────────────────────────┘
//! ```
//!
//! Two processes in a few lines (process B mirrors A with its own bus id, importing what
//! is addressed to it):
//!
//! ```no_run
//! use std::sync::Arc;
//! use dreamnet_bus::bridge::{Bridge, Export, Import};
//! use dreamnet_bus::{Bus, Filter};
//!
//! let bus = Arc::new(Bus::builder().build()?);
//! let task = bus.register_event_type("task")?;
//! let bridge = Bridge::builder("nats://127.0.0.1:4222")
//!     .bus_id("alpha")                                       // unique per process
//!     .export(Export::agent("beta", Filter::of_type(task)))  // -> dreamnet.task.beta
//!     .export(Export::broadcast(Filter::any()))              // -> dreamnet.<type>.all
//!     .import(Import::agent("alpha"))                        // <- dreamnet.*.alpha
//!     .import(Import::broadcast())                           // <- dreamnet.*.all
//!     .start(Arc::clone(&bus))?;
//! // Local subscriptions see remote events as from the remote agent (mapped by name).
//! println!("{:?}", bridge.stats());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - **Names cross the wire, not ids**, in NATS headers ([`wire`] says why).
//! - **Outbound**: each [`Export`] is a bus subscription of the bridge's (public API); a
//!   full outbound queue makes it return `Retry` ([`outbound`]).
//! - **Inbound**: [`Import`]s subscribe (a group import is a NATS queue group); bytes are
//!   checked with [`Event::from_bytes`](crate::Event::from_bytes), names mapped to this
//!   bus's ids, and the event is published as the remote agent's local id (`inbound`),
//!   never as an agent of this bus: a source name this bus registered for itself is
//!   refused unless declared with [`BridgeBuilder::remote_agent`] (`sources` has the rule).
//! - **Metadata** crosses by name: the correlation and causation ids and every metadata
//!   entry travel in headers ([`wire`]); [`BridgeBuilder::keep_local_meta`] keeps a key
//!   home.
//! - **Loops are impossible**: every message carries the path of bus ids and a hop count;
//!   a bus drops a message whose path has it already, and a bridge never sends back out
//!   what it brought in (the [`WireMark`] says so).
//! - **JetStream**: at least once, dedupe, ack by the handler's outcome ([`jetstream`]).
//! - **Counters** for every stage: [`Bridge::stats`]; messages that never became events
//!   are in [`Bridge::rejects`].
//!
//! With the feature off nothing here is compiled; with it on, a bus without a bridge
//! runs exactly the same code (the bridge only adds subscriptions and a publisher).
//!
//! MSRV of this feature: rustc 1.89 (async-nats 0.51).

mod config;
mod counters;
mod inbound;
pub mod jetstream;
mod mark;
pub mod outbound;
mod runtime;
mod sources;
pub mod subjects;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::bus::Bus;
use crate::event::{Header, DEFAULT_SLOT};
use crate::names::MetaKey;
use crate::subscription::{Filter, Subscription, SubscriptionId};

pub use config::{BridgeBuilder, BridgeError, Export, Import, JetStreamImport, Mode};
pub use counters::{BridgeStats, DropReason, RejectReason, WireReject};
pub use mark::{WireMark, MARK_KEY};

use counters::{Counters, Rejects};
use inbound::PendingMap;
use jetstream::ConsumerSpec;
use mark::next_bridge_tag;
use runtime::{run, Plan};

/// The exports' default retry policy: patient enough to ride out a burst larger than the
/// queue or a reconnect of a few seconds (64 attempts, 1 ms doubling to 100 ms: about 6 s)
/// before the bus dead-letters an event the bridge could not queue.
pub const EXPORT_RETRY: crate::backoff::RetryPolicy = crate::backoff::RetryPolicy {
    max_attempts: 64,
    base: Duration::from_millis(1),
    multiplier: 2.0,
    cap: Duration::from_millis(100),
    jitter: crate::backoff::Jitter::Equal,
};

/// A running bridge. Dropping it (or [`Bridge::shutdown`]) unsubscribes its exports, sends
/// what is queued, waits for JetStream acks (bounded by the drain timeout) and stops its
/// thread.
pub struct Bridge<const SLOT: usize = DEFAULT_SLOT> {
    bus: Arc<Bus<SLOT>>,
    bus_id: String,
    namespace: String,
    counters: Arc<Counters>,
    rejects: Arc<Rejects>,
    mark: WireMark,
    subscriptions: Vec<SubscriptionId>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl<const SLOT: usize> core::fmt::Debug for Bridge<SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bridge")
            .field("bus_id", &self.bus_id)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Bridge<DEFAULT_SLOT> {
    /// A builder for a bridge of a bus with the default slot size.
    pub fn builder(urls: &str) -> BridgeBuilder<DEFAULT_SLOT> {
        BridgeBuilder::new(urls)
    }
}

/// `filter` with `extra` required too (its own predicate, if any, still applies).
fn and_also(mut filter: Filter, extra: impl Fn(&Header) -> bool + Send + Sync + 'static) -> Filter {
    let inner = filter.predicate.take();
    filter.matching(move |h| extra(h) && inner.as_ref().is_none_or(|p| p(h)))
}

impl<const SLOT: usize> Bridge<SLOT> {
    /// A builder for a bridge of a bus with slot size `SLOT`.
    pub fn builder_with_slot(urls: &str) -> BridgeBuilder<SLOT> {
        BridgeBuilder::new(urls)
    }

    /// This bus's id on the mesh.
    pub fn bus_id(&self) -> &str {
        &self.bus_id
    }

    /// The namespace (subject prefix).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The mark of events that came in through this bridge.
    pub fn wire_mark(&self) -> WireMark {
        self.mark
    }

    /// `filter`, restricted to events that came in through this bridge (composed with
    /// the filter's own predicate). For the local members of a cross-process group:
    /// they take what the NATS queue group hands this process, not the local originals.
    pub fn wire_only(&self, filter: Filter) -> Filter {
        let mark = self.mark;
        and_also(filter, move |h| mark.is_on(h))
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BridgeStats {
        self.counters.snapshot()
    }

    /// Calls `visit` with each bridge dead letter (a message that never became an event),
    /// oldest first.
    pub fn rejects(&self, mut visit: impl FnMut(&WireReject)) {
        self.rejects.inspect(&mut visit);
    }

    /// Bridge dead letters held now.
    pub fn reject_count(&self) -> usize {
        self.rejects.len()
    }

    /// Bridge dead letters ever recorded.
    pub fn rejects_recorded(&self) -> u64 {
        self.rejects.stored()
    }

    /// Stops the bridge (see the type's documentation) and returns the final counters.
    pub fn shutdown(mut self) -> BridgeStats {
        self.stop_now();
        self.counters.snapshot()
    }

    fn stop_now(&mut self) {
        for id in self.subscriptions.drain(..) {
            // A closed bus has dropped its subscriptions already.
            let _ = self.bus.unsubscribe(id);
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    pub(crate) fn start(
        cfg: BridgeBuilder<SLOT>,
        bus: Arc<Bus<SLOT>>,
    ) -> Result<Self, BridgeError> {
        let bus_id = cfg
            .bus_id
            .clone()
            .unwrap_or_else(|| format!("bus-{:016x}", fastrand::u64(..)));
        let mark = WireMark {
            key: bus.register_meta_key(MARK_KEY)?,
            bridge: next_bridge_tag(),
        };
        // Keys whose entries stay on this bus (`keep_local_meta`).
        let meta: Vec<MetaKey> = cfg
            .meta_keys
            .iter()
            .map(|k| Ok(bus.register_meta_key(k)?))
            .collect::<Result<_, BridgeError>>()?;
        let counters = Arc::new(Counters::default());
        let rejects = Arc::new(Rejects::new(cfg.reject_capacity));
        let (out_tx, out_rx) = mpsc::channel(cfg.queue_capacity);
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let pending: PendingMap = Arc::new(Mutex::new(HashMap::new()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let export_retry = cfg.retry.unwrap_or(EXPORT_RETRY);

        let BridgeBuilder {
            urls,
            namespace,
            max_hops,
            inflight,
            exports,
            imports,
            js_imports,
            replicas,
            max_remote_agents,
            connect_timeout,
            max_reconnect_delay,
            local_full_patience,
            ack_wait,
            drain_timeout,
            mut remote_agents,
            ..
        } = cfg;
        // An export's agent is reached through the wire: declared remote.
        remote_agents.extend(exports.iter().filter_map(|e| e.agent.clone()));
        // From here on, an error drops `bridge`, which unsubscribes what was subscribed.
        let mut bridge = Bridge {
            bus: Arc::clone(&bus),
            bus_id: bus_id.clone(),
            namespace: namespace.clone(),
            counters: Arc::clone(&counters),
            rejects: Arc::clone(&rejects),
            mark,
            subscriptions: Vec::new(),
            stop: Some(stop_tx),
            thread: None,
        };

        // Bus subscriptions first: JetStream handlers must exist before messages arrive.
        let mut routes = Vec::with_capacity(exports.len());
        for (i, export) in exports.into_iter().enumerate() {
            routes.push(export.mode);
            let handler = outbound::export_handler(
                i as u16,
                out_tx.clone(),
                mark,
                max_hops,
                Arc::clone(&counters),
            );
            let mut subscription = Subscription::new(export.filter).with_retry(export_retry);
            if let Some(name) = &export.agent {
                subscription = subscription.for_agent(bus.register_agent(name)?);
            }
            bridge
                .subscriptions
                .push(bus.subscribe(subscription, handler)?);
        }
        drop(out_tx);
        let mut specs = Vec::with_capacity(js_imports.len());
        let mut policies = Vec::with_capacity(js_imports.len());
        for (index, import) in js_imports.into_iter().enumerate() {
            let policy = import.retry.unwrap_or(bus.config().retry);
            policies.push((policy, import.filter.types().to_vec()));
            specs.push(ConsumerSpec {
                index,
                durable: import.durable.clone(),
                subject: subjects::listen(&namespace, true, import.agent.as_deref()),
                policy,
                ack_wait,
            });
            let filter = and_also(import.filter, jetstream::from_consumer(mark, index));
            let mut subscription = Subscription::new(filter).with_retry(policy);
            if let Some(name) = &import.agent {
                subscription = subscription.for_agent(bus.register_agent(name)?);
            }
            let handler = jetstream::consumer_handler(
                import.handler,
                mark,
                policy,
                Arc::clone(&pending),
                ack_tx.clone(),
                Arc::clone(&counters),
            );
            bridge
                .subscriptions
                .push(bus.subscribe(subscription, handler)?);
        }

        let plan = Plan {
            bus,
            urls,
            bus_id,
            namespace,
            mark,
            meta,
            routes,
            imports,
            specs,
            policies,
            replicas,
            max_hops,
            inflight,
            max_remote_agents,
            remote_agents,
            connect_timeout,
            max_reconnect_delay,
            local_full_patience,
            ack_wait,
            drain_timeout,
            counters,
            rejects,
            pending,
            ack_tx,
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("dreamnet-bridge-{}", mark.bridge))
            .spawn(move || run(plan, out_rx, ack_rx, stop_rx, ready_tx))
            .map_err(|e| BridgeError::Runtime(e.to_string()))?;
        bridge.thread = Some(thread);
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(bridge),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(BridgeError::Runtime(
                "the bridge thread ended at start".into(),
            )),
        }
    }
}

impl<const SLOT: usize> Drop for Bridge<SLOT> {
    fn drop(&mut self) {
        self.stop_now();
    }
}
