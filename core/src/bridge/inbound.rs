//! Inbound: NATS messages to local events.
//!
//! Core subscriptions and JetStream consumers forward what they receive to one sink task
//! over a bounded channel (so a slow local bus slows the readers, and NATS's own
//! slow-consumer limits apply, never an unbounded buffer of ours). The sink checks the
//! bytes ([`Event::from_bytes`]) and the headers, refuses loops and events past the hop
//! limit, maps every name to this bus's id (registering it), marks the event as from the
//! wire and publishes it as its remote source, through one local publisher per remote
//! agent. Whatever cannot become an event is counted and kept in the bridge's dead
//! letters (a JetStream message is also terminated); nothing here panics on input.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::message::{AckKind, Acker};
use tokio::sync::mpsc;

use crate::backoff::RetryPolicy;
use crate::bus::Bus;
use crate::error::PublishError;
use crate::event::Event;
use crate::names::{AgentId, EventType, MetaKey};
use crate::publisher::Publisher;

use super::counters::{incr, Counters, DropReason, RejectReason, Rejects, WireReject};
use super::mark::{Mark, WireMark, MAX_TICKET};
use super::sources::{SourceMap, SourceRefused};
use super::wire::{self, Incoming};

/// Bits of a ticket below the consumer index (the index is in the bits above).
pub(crate) const TICKET_SEQ_BITS: u32 = 40;

/// One message from NATS, with its JetStream context if it came from a consumer.
pub(crate) struct Arrival {
    pub(crate) msg: async_nats::Message,
    pub(crate) js: Option<JsArrival>,
    /// Whether a message straight from this bus is legitimate here: a queue group or a
    /// durable consumer may hand a process its own work (a broadcast or direct
    /// subscription never may: that would be an echo).
    pub(crate) own_ok: bool,
}

/// A JetStream message's acknowledgement handle and delivery count.
pub(crate) struct JsArrival {
    pub(crate) acker: Acker,
    pub(crate) delivered: u32,
    /// Which JetStream import (index) it came from.
    pub(crate) consumer: usize,
}

/// A JetStream message published into the bus and waiting for its handler's outcome.
pub(crate) struct Pending {
    pub(crate) acker: Acker,
    pub(crate) delivered: u32,
    /// When it was published into the bus (stale entries are purged: see `remember`).
    pub(crate) since: Instant,
}

/// Purge stale pending entries every this many inserts.
const PURGE_EVERY: u64 = 1024;

/// Tickets in flight, shared with the consumers' handlers.
pub(crate) type PendingMap = Arc<Mutex<HashMap<u64, Pending>>>;

/// An acknowledgement to send.
pub(crate) struct AckCmd {
    pub(crate) acker: Acker,
    pub(crate) kind: AckKind,
}

/// The sink: owns the name caches and the per-remote-agent publishers.
pub(crate) struct Sink<const SLOT: usize> {
    pub(crate) bus: Arc<Bus<SLOT>>,
    pub(crate) bus_id: String,
    pub(crate) mark: WireMark,
    pub(crate) max_hops: u8,
    pub(crate) max_remote_agents: usize,
    sources: SourceMap,
    pub(crate) patience: Duration,
    pub(crate) ack_wait: Duration,
    pub(crate) counters: Arc<Counters>,
    pub(crate) rejects: Arc<Rejects>,
    pub(crate) pending: PendingMap,
    pub(crate) acks: mpsc::UnboundedSender<AckCmd>,
    /// Per JetStream import: its retry policy (for a nak's delay when the bus is full) and
    /// the event types its filter takes (empty: all).
    pub(crate) policies: Vec<(RetryPolicy, Vec<EventType>)>,
    types: HashMap<String, EventType>,
    agents: HashMap<String, AgentId>,
    keys: HashMap<String, MetaKey>,
    publishers: HashMap<AgentId, Publisher<SLOT>>,
    next_ticket: u64,
}

/// Why an arrival did not become a local event.
enum Refused {
    /// Counted and recorded in the bridge's dead letters.
    Reject(DropReason, RejectReason),
    /// Counted only (loops, hop limit, local full, closed ...).
    Drop(DropReason),
}

impl<const SLOT: usize> Sink<SLOT> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        bus: Arc<Bus<SLOT>>,
        bus_id: String,
        mark: WireMark,
        max_hops: u8,
        max_remote_agents: usize,
        sources: SourceMap,
        patience: Duration,
        ack_wait: Duration,
        counters: Arc<Counters>,
        rejects: Arc<Rejects>,
        pending: PendingMap,
        acks: mpsc::UnboundedSender<AckCmd>,
        policies: Vec<(RetryPolicy, Vec<EventType>)>,
    ) -> Self {
        Sink {
            bus,
            bus_id,
            mark,
            max_hops,
            max_remote_agents,
            sources,
            patience,
            ack_wait,
            counters,
            rejects,
            pending,
            acks,
            policies,
            types: HashMap::new(),
            agents: HashMap::new(),
            keys: HashMap::new(),
            publishers: HashMap::new(),
            next_ticket: 0,
        }
    }

    /// Handles arrivals until every sender is gone.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Arrival>) {
        while let Some(arrival) = rx.recv().await {
            self.handle(arrival).await;
        }
    }

    async fn handle(&mut self, arrival: Arrival) {
        incr(&self.counters.in_received);
        let Arrival { msg, js, own_ok } = arrival;
        if js.as_ref().is_some_and(|j| j.delivered > 1) {
            incr(&self.counters.in_redelivered);
        }
        let refused = match self
            .admit(&msg, js.as_ref().map(|j| j.consumer), own_ok)
            .await
        {
            Ok((event, source)) => return self.deliver(event, source, js).await,
            Err(refused) => refused,
        };
        let reason = match refused {
            Refused::Reject(reason, why) => {
                let keep = msg.payload.len().min(SLOT);
                self.rejects.record(WireReject {
                    subject: msg.subject.to_string(),
                    reason: why,
                    bytes: msg.payload[..keep].to_vec(),
                });
                reason
            }
            Refused::Drop(reason) => reason,
        };
        self.counters.drop_one(reason);
        if let Some(j) = js {
            // A message that can never become an event is not redelivered.
            incr(&self.counters.in_termed);
            let _ = self.acks.send(AckCmd {
                acker: j.acker,
                kind: AckKind::Term,
            });
        }
    }

    /// Checks an arrival and builds the local event (ids mapped, marked), or says why not.
    async fn admit(
        &mut self,
        msg: &async_nats::Message,
        js_consumer: Option<usize>,
        own_ok: bool,
    ) -> Result<(Event<SLOT>, AgentId), Refused> {
        let mut event = Event::<SLOT>::from_bytes(&msg.payload)
            .map_err(|e| Refused::Reject(DropReason::BadBytes, RejectReason::Decode(e)))?;
        let inc: Incoming = wire::decode(msg.headers.as_ref())
            .map_err(|e| Refused::Reject(DropReason::BadHeaders, RejectReason::Headers(e)))?;
        // Our own id on the path is an echo or a loop, except work straight from this bus
        // that a queue group or a shared durable consumer handed back to it.
        let ours = inc.path_ids().any(|id| id == self.bus_id);
        let own_work = own_ok && inc.is_direct();
        if ours && !own_work {
            return Err(Refused::Drop(DropReason::Loop));
        }
        if inc.hops > self.max_hops {
            return Err(Refused::Drop(DropReason::HopLimit));
        }
        let ty = self.event_type(inc.type_name)?;
        // Never a local agent's id for another process's message (see `sources`).
        let source = self
            .sources
            .map(&*self.bus, inc.source, ours && own_work)
            .map_err(|e| match e {
                SourceRefused::Local(name) => {
                    Refused::Reject(DropReason::LocalSource, RejectReason::LocalSource(name))
                }
                SourceRefused::Name(why) => {
                    Refused::Reject(DropReason::UnknownName, RejectReason::Name(why))
                }
            })?;
        let destination = match inc.destination {
            Some(d) => Some(self.agent(d)?),
            None => None,
        };
        event.set_event_type(ty);
        event.set_destination(destination);
        event.set_priority(inc.priority);
        event.set_correlation_id(inc.correlation);
        event = event.with_causation_id(inc.causation);
        let deadline = inc
            .deadline_in_ns
            .map_or(0, |left| self.bus.now_ns().saturating_add(left).max(1));
        event = event.with_deadline_ns(deadline);
        event.clear_metadata();
        for &(name, value) in &inc.meta {
            let key = self.meta_key(name)?;
            event
                .set_metadata(key, value)
                .map_err(|_| Refused::Drop(DropReason::MetadataFull))?;
        }
        let ticket = match js_consumer {
            Some(c) => self.ticket(c),
            None => 0,
        };
        let mark = Mark {
            hops: inc.hops,
            bridge: self.mark.bridge,
            ticket,
        };
        event
            .set_metadata(self.mark.key, mark.pack())
            .map_err(|_| Refused::Drop(DropReason::MetadataFull))?;
        Ok((event, source))
    }

    /// A fresh ticket for consumer `c`: its index (plus one) above the sequence bits.
    fn ticket(&mut self, c: usize) -> u64 {
        self.next_ticket = (self.next_ticket + 1) & ((1 << TICKET_SEQ_BITS) - 1);
        if self.next_ticket == 0 {
            self.next_ticket = 1;
        }
        (((c as u64) + 1) << TICKET_SEQ_BITS | self.next_ticket) & MAX_TICKET
    }

    fn event_type(&mut self, name: &str) -> Result<EventType, Refused> {
        if let Some(t) = self.types.get(name) {
            return Ok(*t);
        }
        let t = self.bus.register_event_type(name).map_err(|e| {
            Refused::Reject(DropReason::UnknownName, RejectReason::Name(e.to_string()))
        })?;
        self.types.insert(name.to_owned(), t);
        Ok(t)
    }

    fn agent(&mut self, name: &str) -> Result<AgentId, Refused> {
        if let Some(a) = self.agents.get(name) {
            return Ok(*a);
        }
        let a = self.bus.register_agent(name).map_err(|e| {
            Refused::Reject(DropReason::UnknownName, RejectReason::Name(e.to_string()))
        })?;
        self.agents.insert(name.to_owned(), a);
        Ok(a)
    }

    fn meta_key(&mut self, name: &str) -> Result<MetaKey, Refused> {
        if let Some(k) = self.keys.get(name) {
            return Ok(*k);
        }
        let k = self.bus.register_meta_key(name).map_err(|e| {
            Refused::Reject(DropReason::UnknownName, RejectReason::Name(e.to_string()))
        })?;
        self.keys.insert(name.to_owned(), k);
        Ok(k)
    }

    /// Publishes the event as `source`; a JetStream message's acker waits in the pending
    /// map for its handler (or is nak'ed here if the bus would not take the event).
    async fn deliver(&mut self, event: Event<SLOT>, source: AgentId, js: Option<JsArrival>) {
        let ticket = self.mark.ticket_of(event.header()).filter(|t| *t != 0);
        if let (Some(t), Some(j)) = (ticket, js) {
            self.remember(t, j);
        }
        if let Some(t) = ticket {
            // A type the import's filter does not take would reach no handler.
            let consumer = ((t >> TICKET_SEQ_BITS) as usize).saturating_sub(1);
            let ty = event.header().event_type();
            if let Some((_, types)) = self.policies.get(consumer) {
                if !types.is_empty() && !types.contains(&ty) {
                    return self.no_handler(t);
                }
            }
        }
        let outcome = self.publish(event, source).await;
        let Some(t) = ticket else {
            // Core NATS: at most once; a refusal is a counted drop.
            match outcome {
                Ok(_) => incr(&self.counters.in_published),
                Err(reason) => self.counters.drop_one(reason),
            }
            return;
        };
        match outcome {
            Ok(shards) if shards > 0 => incr(&self.counters.in_published),
            // No subscription took it, so no handler will ever acknowledge it: the import's
            // filter does not match what its consumer pulls. Terminated, counted.
            Ok(_) => self.no_handler(t),
            // The bus did not take it: JetStream keeps it and delivers it again later.
            Err(_) => {
                let Some(p) = self.lock_pending().remove(&t) else {
                    return;
                };
                let consumer = ((t >> TICKET_SEQ_BITS) as usize).saturating_sub(1);
                let delay = self
                    .policies
                    .get(consumer)
                    .map(|(p, _)| p.cap)
                    .unwrap_or(self.patience);
                incr(&self.counters.in_nacked);
                let _ = self.acks.send(AckCmd {
                    acker: p.acker,
                    kind: AckKind::Nak(Some(delay)),
                });
            }
        }
    }

    /// Terminates a JetStream message no handler can take (counted).
    fn no_handler(&mut self, ticket: u64) {
        self.counters.drop_one(DropReason::NoHandler);
        if let Some(p) = self.lock_pending().remove(&ticket) {
            incr(&self.counters.in_termed);
            let _ = self.acks.send(AckCmd {
                acker: p.acker,
                kind: AckKind::Term,
            });
        }
    }

    /// Keeps a JetStream message's acker until its handler decides. An entry whose event
    /// never reached the handler (its deadline passed, the bus closed, the handler
    /// panicked) is redelivered by the server after the ack wait under a new ticket, so
    /// entries older than twice the ack wait are dropped: the map stays bounded by what
    /// the consumers have in flight.
    fn remember(&mut self, ticket: u64, j: JsArrival) {
        let now = Instant::now();
        let stale = self.ack_wait.saturating_mul(2);
        let purge = self.next_ticket % PURGE_EVERY == 0;
        let mut pending = self.lock_pending();
        if purge {
            pending.retain(|_, p| now.duration_since(p.since) < stale);
        }
        pending.insert(
            ticket,
            Pending {
                acker: j.acker,
                delivered: j.delivered,
                since: now,
            },
        );
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        // Map operations are single calls: a panic cannot leave it half-updated.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes, waiting up to the patience for room on a full bus; returns how many
    /// shards took the event (0: no subscription matched).
    async fn publish(
        &mut self,
        mut event: Event<SLOT>,
        source: AgentId,
    ) -> Result<u32, DropReason> {
        if !self.publishers.contains_key(&source) {
            if self.publishers.len() >= self.max_remote_agents {
                return Err(DropReason::TooManyAgents);
            }
            let publisher = self.bus.publisher(source).map_err(|e| match e {
                crate::error::BusError::Closed => DropReason::Closed,
                _ => DropReason::TooManyAgents,
            })?;
            self.publishers.insert(source, publisher);
        }
        let mut deadline = None;
        let mut wait = Duration::from_micros(100);
        loop {
            let Some(publisher) = self.publishers.get_mut(&source) else {
                return Err(DropReason::Closed);
            };
            match publisher.try_publish(event) {
                // A parked worker is woken by the publish itself (`wakeup.rs`).
                Ok(receipt) => return Ok(receipt.shards),
                Err(PublishError::Full(e)) | Err(PublishError::Timeout(e)) => {
                    let deadline = *deadline.get_or_insert_with(|| Instant::now() + self.patience);
                    if Instant::now() >= deadline {
                        return Err(DropReason::LocalFull);
                    }
                    event = e;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(20));
                }
                Err(PublishError::Closed(_)) => return Err(DropReason::Closed),
                // Ids were registered just before: only a bus reset could get here.
                Err(_) => return Err(DropReason::UnknownName),
            }
        }
    }
}

impl WireMark {
    /// The JetStream ticket an event carries from this bridge, if any.
    pub(crate) fn ticket_of(&self, header: &crate::event::Header) -> Option<u64> {
        Mark::of(header, self.key)
            .filter(|m| m.bridge == self.bridge)
            .map(|m| m.ticket)
    }
}
