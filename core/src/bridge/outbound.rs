//! Outbound: local events to NATS.
//!
//! The bridge's bus subscriptions run `export_handler` on a shard: it only checks the
//! wire mark and puts a copy of the slot on a bounded queue (`try_send`, never blocking a
//! shard). When the queue is full the handler returns `Retry`, so the bus holds the event
//! on its timer wheel under its retry policy and, when that runs out, dead-letters it:
//! backpressure, and nothing buffered without bound. The runtime thread's `Outbound`
//! resolves names, builds the headers and publishes: core NATS at most once, JetStream
//! with a bounded number of publishes awaiting their ack, each sent again (same
//! `Nats-Msg-Id`, so the stream keeps one) until the stream acknowledges it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::bus::Bus;
use crate::envelope::ErrorCode;
use crate::event::Event;
use crate::names::MetaKey;
use crate::outcome::Outcome;
use crate::subscription::Delivery;

use super::config::Mode;
use super::counters::{incr, Counters, DropReason};
use super::mark::{Mark, WireMark};
use super::{subjects, wire};

/// The code of a `Retry` returned because the outbound queue was full.
pub const QUEUE_FULL: ErrorCode = ErrorCode(0xB001);
/// The code of a `Fail` returned because the bridge has shut down.
pub const BRIDGE_CLOSED: ErrorCode = ErrorCode(0xB002);

/// One event on its way out.
pub(crate) struct OutItem<const SLOT: usize> {
    pub(crate) event: Event<SLOT>,
    /// Index into the bridge's export routes.
    pub(crate) route: u16,
    /// Bridges it crossed before this one (0 for a local event).
    pub(crate) hops: u8,
}

/// The handler of one export's bus subscription (runs on a shard; never blocks).
pub(crate) fn export_handler<const SLOT: usize>(
    route: u16,
    tx: mpsc::Sender<OutItem<SLOT>>,
    mark: WireMark,
    max_hops: u8,
    counters: Arc<Counters>,
) -> impl FnMut(&Delivery<'_, SLOT>) -> Outcome + Send + 'static {
    move |d| {
        let hops = match Mark::of(d.header(), mark.key) {
            // It came in through this bridge: sending it back out would echo or loop.
            Some(m) if m.bridge == mark.bridge => {
                incr(&counters.out_from_wire);
                return Outcome::Done;
            }
            Some(m) => m.hops,
            None => 0,
        };
        if hops >= max_hops {
            counters.drop_one(DropReason::HopLimit);
            return Outcome::Done;
        }
        let item = OutItem {
            event: d.event().clone(),
            route,
            hops,
        };
        match tx.try_send(item) {
            Ok(()) => {
                incr(&counters.out_queued);
                Outcome::Done
            }
            Err(TrySendError::Full(_)) => {
                incr(&counters.out_queue_full);
                Outcome::Retry {
                    code: QUEUE_FULL,
                    after: None,
                }
            }
            // The runtime is gone: the bus dead-letters the event with this code.
            Err(TrySendError::Closed(_)) => Outcome::fail(BRIDGE_CLOSED.0),
        }
    }
}

/// The runtime side of outbound traffic.
pub(crate) struct Outbound<const SLOT: usize> {
    pub(crate) bus: Arc<Bus<SLOT>>,
    pub(crate) client: async_nats::Client,
    pub(crate) js: Option<jetstream::Context>,
    pub(crate) routes: Vec<Mode>,
    pub(crate) namespace: String,
    pub(crate) bus_id: String,
    pub(crate) counters: Arc<Counters>,
    pub(crate) mark_key: MetaKey,
    /// Metadata keys kept local (`keep_local_meta`); every other entry goes by name.
    pub(crate) meta: Vec<MetaKey>,
    pub(crate) inflight: usize,
    pub(crate) drain_timeout: Duration,
    types: HashMap<u16, Arc<str>>,
    agents: HashMap<u32, Arc<str>>,
    meta_names: HashMap<u16, Arc<str>>,
    /// Subjects by (JetStream, type, destination): built once, then shared (a subject is
    /// reference-counted bytes).
    subjects: HashMap<(bool, u16, Option<u32>), async_nats::Subject>,
    permits: Arc<Semaphore>,
    stopping: Arc<AtomicBool>,
}

impl<const SLOT: usize> Outbound<SLOT> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        bus: Arc<Bus<SLOT>>,
        client: async_nats::Client,
        js: Option<jetstream::Context>,
        routes: Vec<Mode>,
        namespace: String,
        bus_id: String,
        counters: Arc<Counters>,
        mark_key: MetaKey,
        meta: Vec<MetaKey>,
        inflight: usize,
        drain_timeout: Duration,
    ) -> Self {
        Outbound {
            bus,
            client,
            js,
            routes,
            namespace,
            bus_id,
            counters,
            mark_key,
            meta,
            inflight,
            drain_timeout,
            types: HashMap::new(),
            agents: HashMap::new(),
            meta_names: HashMap::new(),
            subjects: HashMap::new(),
            permits: Arc::new(Semaphore::new(inflight)),
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Sends what arrives on `rx` until `stop`, then what is still queued (within the
    /// drain timeout), then waits for JetStream acks.
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<OutItem<SLOT>>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                item = rx.recv() => match item {
                    Some(item) => self.send(item).await,
                    // No export holds a sender (a bridge that only imports): the runtime
                    // must still run the inbound tasks until told to stop.
                    None => {
                        let _ = stop.changed().await;
                        break;
                    }
                },
                _ = stop.changed() => break,
            }
        }
        rx.close();
        let drain_timeout = self.drain_timeout;
        let drained = tokio::time::timeout(drain_timeout, async {
            while let Some(item) = rx.recv().await {
                self.send(item).await;
            }
        })
        .await;
        if drained.is_err() {
            while rx.try_recv().is_ok() {
                self.counters.drop_one(DropReason::Shutdown);
            }
        }
        self.finish().await;
    }

    fn type_name(&mut self, raw: u16, ty: crate::names::EventType) -> Option<Arc<str>> {
        if let Some(n) = self.types.get(&raw) {
            return Some(Arc::clone(n));
        }
        let name: Arc<str> = self.bus.event_type_name(ty)?.into();
        self.types.insert(raw, Arc::clone(&name));
        Some(name)
    }

    fn agent_name(&mut self, agent: crate::names::AgentId) -> Option<Arc<str>> {
        if let Some(n) = self.agents.get(&agent.raw()) {
            return Some(Arc::clone(n));
        }
        let name: Arc<str> = self.bus.agent_name(agent)?.into();
        self.agents.insert(agent.raw(), Arc::clone(&name));
        Some(name)
    }

    fn meta_name(&mut self, key: MetaKey) -> Option<Arc<str>> {
        if let Some(n) = self.meta_names.get(&key.raw()) {
            return Some(Arc::clone(n));
        }
        let name: Arc<str> = self.bus.meta_key_name(key)?.into();
        self.meta_names.insert(key.raw(), Arc::clone(&name));
        Some(name)
    }

    async fn send(&mut self, item: OutItem<SLOT>) {
        let h = *item.event.header();
        let (Some(type_name), Some(source)) = (
            self.type_name(h.event_type().raw(), h.event_type()),
            self.agent_name(h.source()),
        ) else {
            self.counters.drop_one(DropReason::UnknownName);
            return;
        };
        let destination = match h.destination() {
            Some(a) => match self.agent_name(a) {
                Some(n) => Some(n),
                None => {
                    self.counters.drop_one(DropReason::UnknownName);
                    return;
                }
            },
            None => None,
        };
        let mut names: Vec<(Arc<str>, u64)> = Vec::new();
        for (key, value) in h.metadata_entries() {
            if key == self.mark_key {
                continue;
            }
            if self.meta.contains(&key) {
                incr(&self.counters.out_meta_kept_local);
                continue;
            }
            match self.meta_name(key) {
                Some(name) => names.push((name, value)),
                None => incr(&self.counters.out_meta_kept_local),
            }
        }
        let meta: Vec<(&str, u64)> = names.iter().map(|(n, v)| (&**n, *v)).collect();
        let mode = self
            .routes
            .get(usize::from(item.route))
            .copied()
            .unwrap_or_default();
        let jetstream = mode == Mode::JetStream;
        let subject = self
            .subjects
            .entry((
                jetstream,
                h.event_type().raw(),
                h.destination().map(|a| a.raw()),
            ))
            .or_insert_with(|| {
                subjects::subject(
                    &self.namespace,
                    jetstream,
                    &type_name,
                    destination.as_deref(),
                )
                .into()
            })
            .clone();
        let msg_id = jetstream.then(|| format!("{}.{}", self.bus_id, h.id()));
        let now = self.bus.now_ns();
        let headers = wire::encode(&wire::Outgoing {
            path: &self.bus_id,
            hops: item.hops.saturating_add(1),
            id: h.id(),
            type_name: &type_name,
            source: &source,
            destination: destination.as_deref(),
            priority: h.priority(),
            correlation: h.correlation_id(),
            causation: h.causation_id(),
            deadline_in_ns: h.deadline_ns().map(|d| d.saturating_sub(now)),
            meta: &meta,
            msg_id: msg_id.as_deref(),
        });
        let body = wire::body(&item.event);
        match (&self.js, jetstream) {
            (Some(js), true) => self.publish_js(js.clone(), subject, headers, body).await,
            _ => match self
                .client
                .publish_with_headers(subject, headers, body)
                .await
            {
                Ok(()) => incr(&self.counters.out_sent),
                Err(_) => self.counters.drop_one(DropReason::PublishFailed),
            },
        }
    }

    /// Publishes to JetStream and, in a task of its own, awaits the ack, sending again
    /// with backoff until the stream acknowledges (same `Nats-Msg-Id`: stored once).
    async fn publish_js(
        &self,
        js: jetstream::Context,
        subject: async_nats::Subject,
        headers: async_nats::HeaderMap,
        body: bytes::Bytes,
    ) {
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            self.counters.drop_one(DropReason::Shutdown);
            return;
        };
        incr(&self.counters.out_sent);
        let counters = Arc::clone(&self.counters);
        let stopping = Arc::clone(&self.stopping);
        tokio::spawn(async move {
            let _permit = permit;
            let mut attempt: u32 = 0;
            loop {
                let acked = match js
                    .publish_with_headers(subject.clone(), headers.clone(), body.clone())
                    .await
                {
                    Ok(ack) => ack.await.ok(),
                    Err(_) => None,
                };
                if let Some(ack) = acked {
                    incr(&counters.out_acked);
                    if ack.duplicate {
                        incr(&counters.out_duplicates);
                    }
                    return;
                }
                if stopping.load(Ordering::Acquire) {
                    // Counted by `finish`, which gave up waiting for it.
                    return;
                }
                attempt = attempt.saturating_add(1);
                incr(&counters.out_resent);
                tokio::time::sleep(resend_delay(attempt)).await;
            }
        });
    }

    /// Waits (within the drain timeout) for every JetStream publish to be acknowledged;
    /// those still waiting are counted as dropped at shutdown. Then flushes.
    async fn finish(self) {
        let all = u32::try_from(self.inflight).unwrap_or(u32::MAX);
        let waited = tokio::time::timeout(self.drain_timeout, self.permits.acquire_many(all)).await;
        if !matches!(waited, Ok(Ok(_))) {
            self.stopping.store(true, Ordering::Release);
            let left = self.inflight - self.permits.available_permits();
            for _ in 0..left {
                self.counters.drop_one(DropReason::Shutdown);
            }
        }
        let _ = tokio::time::timeout(self.drain_timeout, self.client.flush()).await;
    }
}

/// Resend backoff: 10 ms doubling, capped at 1 s.
fn resend_delay(attempt: u32) -> Duration {
    Duration::from_millis(10u64.saturating_mul(1 << attempt.min(7)).min(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resend_backs_off_to_a_cap() {
        assert_eq!(resend_delay(1), Duration::from_millis(20));
        assert!(resend_delay(3) > resend_delay(2));
        assert_eq!(resend_delay(40), Duration::from_secs(1));
    }
}
