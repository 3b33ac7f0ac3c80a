//! Counters for every stage of the bridge, and the bridge's own dead letters: messages
//! from the wire that never became events (bad bytes, bad headers, unknown names).
//!
//! Counters are relaxed atomics: each is exact on its own; a snapshot taken while traffic
//! flows is not one instant across counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::dead_letters::{DeadLetterRing, FullPolicy};
use crate::error::DecodeError;

use super::wire::HeaderError;

/// Why a message or event was dropped by the bridge (each reason is counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Inbound: the body is not a valid event slot (`Event::from_bytes` refused it).
    BadBytes,
    /// Inbound: the headers are missing or do not parse.
    BadHeaders,
    /// Inbound: a name could not be registered on this bus (tables full).
    UnknownName,
    /// Inbound: this bus is on the message's path already (its own echo, or a loop).
    Loop,
    /// Inbound or outbound: the hop limit was reached.
    HopLimit,
    /// Inbound: the local bus stayed full past the bridge's patience (core NATS; a
    /// JetStream message is nak'ed instead and comes back).
    LocalFull,
    /// Inbound: the local bus is closed.
    Closed,
    /// Inbound: more distinct remote agents than the bridge maps.
    TooManyAgents,
    /// Inbound: the event has more metadata than fits with the bridge's mark.
    MetadataFull,
    /// Outbound: a core NATS publish failed (at most once: the event is gone).
    PublishFailed,
    /// Outbound: the bridge shut down before JetStream acknowledged the message.
    Shutdown,
    /// Inbound, JetStream: the message's type is not one the import's filter takes, or no
    /// subscription matched it at publish, so no handler could acknowledge it; the message
    /// is terminated. (A message the filter's predicate refuses is not seen here: it is
    /// redelivered after the ack wait until MaxDeliver, then the server drops it.)
    NoHandler,
    /// Inbound: the source names an agent of this bus that is not declared remote; a
    /// remote process may not act as a local agent (see `BridgeBuilder::remote_agent`).
    LocalSource,
}

impl DropReason {
    /// How many reasons there are.
    pub const COUNT: usize = 13;

    /// Every reason, in index order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::BadBytes,
        DropReason::BadHeaders,
        DropReason::UnknownName,
        DropReason::Loop,
        DropReason::HopLimit,
        DropReason::LocalFull,
        DropReason::Closed,
        DropReason::TooManyAgents,
        DropReason::MetadataFull,
        DropReason::PublishFailed,
        DropReason::Shutdown,
        DropReason::NoHandler,
        DropReason::LocalSource,
    ];

    /// The index of this reason in [`BridgeStats::dropped`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A short name for reports.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::BadBytes => "bad-bytes",
            DropReason::BadHeaders => "bad-headers",
            DropReason::UnknownName => "unknown-name",
            DropReason::Loop => "loop",
            DropReason::HopLimit => "hop-limit",
            DropReason::LocalFull => "local-full",
            DropReason::Closed => "closed",
            DropReason::TooManyAgents => "too-many-agents",
            DropReason::MetadataFull => "metadata-full",
            DropReason::PublishFailed => "publish-failed",
            DropReason::Shutdown => "shutdown",
            DropReason::NoHandler => "no-handler",
            DropReason::LocalSource => "local-source",
        }
    }
}

/// The live counters (shared by the bridge's handlers and its runtime thread).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) out_queued: AtomicU64,
    pub(crate) out_queue_full: AtomicU64,
    pub(crate) out_from_wire: AtomicU64,
    pub(crate) out_sent: AtomicU64,
    pub(crate) out_acked: AtomicU64,
    pub(crate) out_duplicates: AtomicU64,
    pub(crate) out_resent: AtomicU64,
    pub(crate) out_meta_kept_local: AtomicU64,
    pub(crate) in_received: AtomicU64,
    pub(crate) in_published: AtomicU64,
    pub(crate) in_redelivered: AtomicU64,
    pub(crate) in_acked: AtomicU64,
    pub(crate) in_nacked: AtomicU64,
    pub(crate) in_termed: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) slow_consumer: AtomicU64,
    pub(crate) dropped: [AtomicU64; DropReason::COUNT],
}

/// Adds one.
pub(crate) fn incr(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn drop_one(&self, reason: DropReason) {
        incr(&self.dropped[reason.index()]);
    }

    pub(crate) fn snapshot(&self) -> BridgeStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BridgeStats {
            out_queued: g(&self.out_queued),
            out_queue_full: g(&self.out_queue_full),
            out_from_wire: g(&self.out_from_wire),
            out_sent: g(&self.out_sent),
            out_acked: g(&self.out_acked),
            out_duplicates: g(&self.out_duplicates),
            out_resent: g(&self.out_resent),
            out_meta_kept_local: g(&self.out_meta_kept_local),
            in_received: g(&self.in_received),
            in_published: g(&self.in_published),
            in_redelivered: g(&self.in_redelivered),
            in_acked: g(&self.in_acked),
            in_nacked: g(&self.in_nacked),
            in_termed: g(&self.in_termed),
            reconnects: g(&self.reconnects),
            disconnects: g(&self.disconnects),
            slow_consumer: g(&self.slow_consumer),
            dropped: core::array::from_fn(|i| g(&self.dropped[i])),
        }
    }
}

/// A snapshot of the bridge's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// Outbound: events the bridge's subscriptions put on the outbound queue.
    pub out_queued: u64,
    /// Outbound: deliveries refused because the queue was full (the handler returned
    /// `Retry`, so the bus tries again under its retry policy).
    pub out_queue_full: u64,
    /// Outbound: events that came in through this bridge and were not sent back out.
    pub out_from_wire: u64,
    /// Outbound: messages handed to NATS (core publishes, and JetStream publishes sent).
    pub out_sent: u64,
    /// Outbound: JetStream messages the stream acknowledged (stored or a duplicate).
    pub out_acked: u64,
    /// Outbound: of those, acknowledgements that said "duplicate" (removed by dedupe).
    pub out_duplicates: u64,
    /// Outbound: JetStream publishes sent again after a failure or a missing ack.
    pub out_resent: u64,
    /// Outbound: metadata entries not carried because their key was named with
    /// `keep_local_meta`, or has no name on this bus (the event went out without them).
    pub out_meta_kept_local: u64,
    /// Inbound: messages received from NATS.
    pub in_received: u64,
    /// Inbound: events published into the local bus.
    pub in_published: u64,
    /// Inbound: JetStream messages delivered more than once.
    pub in_redelivered: u64,
    /// Inbound: JetStream messages acknowledged after the local handler returned `Done`.
    pub in_acked: u64,
    /// Inbound: JetStream messages nak'ed (the handler asked for a retry, or the local
    /// bus was full).
    pub in_nacked: u64,
    /// Inbound: JetStream messages terminated (`Fail`, retries exhausted, bad bytes).
    pub in_termed: u64,
    /// Reconnections to NATS after a disconnection.
    pub reconnects: u64,
    /// Disconnections from NATS.
    pub disconnects: u64,
    /// Slow-consumer notices from the client (the server or client dropped messages for
    /// a subscriber that did not keep up: core NATS is at most once).
    pub slow_consumer: u64,
    /// Drops by reason, indexed by [`DropReason::index`].
    pub dropped: [u64; DropReason::COUNT],
}

impl BridgeStats {
    /// Drops for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    /// Drops for every reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

/// Why a wire message never became an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// The body is not a valid slot.
    Decode(DecodeError),
    /// The headers are missing or bad.
    Headers(HeaderError),
    /// A name could not be interned on this bus.
    Name(String),
    /// The source names a local agent of this bus (the name, handed back).
    LocalSource(String),
}

/// One bridge dead letter: a message from the wire that could not become an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireReject {
    /// The subject it arrived on.
    pub subject: String,
    /// Why it was refused.
    pub reason: RejectReason,
    /// Its body, cut to the slot size (at most one slot is kept per reject).
    pub bytes: Vec<u8>,
}

/// The bridge's dead-letter ring (bounded: the oldest gives way, counted).
#[derive(Debug)]
pub(crate) struct Rejects {
    ring: Mutex<DeadLetterRing<WireReject>>,
}

impl Rejects {
    pub(crate) fn new(capacity: usize) -> Self {
        Rejects {
            ring: Mutex::new(DeadLetterRing::new(capacity, FullPolicy::DropOldest)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DeadLetterRing<WireReject>> {
        // Every operation is one call on the ring: a panic cannot leave it half-updated.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn record(&self, reject: WireReject) {
        let _ = self.lock().push(reject);
    }

    pub(crate) fn inspect(&self, visit: &mut dyn FnMut(&WireReject)) {
        self.lock().iter().for_each(visit);
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn stored(&self) -> u64 {
        self.lock().stored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_index_their_table_in_order_with_distinct_names() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn the_reject_ring_is_bounded_and_counts_what_it_stored() {
        let rejects = Rejects::new(2);
        for i in 0..5u8 {
            rejects.record(WireReject {
                subject: format!("s{i}"),
                reason: RejectReason::Name("x".into()),
                bytes: vec![i],
            });
        }
        assert_eq!(rejects.len(), 2);
        assert_eq!(rejects.stored(), 5);
        let mut seen = Vec::new();
        rejects.inspect(&mut |r| seen.push(r.bytes[0]));
        assert_eq!(seen, [3, 4], "the oldest gave way");
    }
}
