//! Every error the bus can return, typed. Nothing the caller passes in can make the bus
//! panic; nothing is dropped without one of these (or a counted policy) saying so.

use thiserror::Error;

use crate::subscription::SubscriptionId;

/// A name (agent, event type, metadata key, group) was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name was empty.
    #[error("name is empty")]
    Empty,
    /// The name was longer than the limit.
    #[error("name is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name held a character outside `[A-Za-z0-9._:/-]`.
    #[error("name {name:?} holds {found:?}; only ASCII letters, digits and . - _ : / are allowed")]
    InvalidChar {
        /// The name as given.
        name: String,
        /// The first character refused.
        found: char,
    },
    /// The table for this kind of name is full.
    #[error("no room for another name: at most {max} can be interned")]
    TableFull {
        /// The table's capacity.
        max: usize,
    },
}

/// A payload could not be written into, or read from, an event slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The archived payload does not fit the slot's payload area. Nothing was truncated.
    #[error("payload needs {needed} bytes but the slot holds {capacity}")]
    TooLarge {
        /// Bytes the archive needs.
        needed: usize,
        /// Bytes the slot's payload area holds.
        capacity: usize,
    },
    /// Serialisation needed more scratch space than the fixed scratch area holds.
    #[error("payload needs more than {scratch} bytes of serialisation scratch space")]
    ScratchExhausted {
        /// The size of the scratch area.
        scratch: usize,
    },
    /// The event carries no payload.
    #[error("event has no payload")]
    Missing,
    /// The payload bytes are not a valid archive of the requested type.
    #[error("payload is not a valid archive of the requested type")]
    Invalid,
}

/// Bytes presented as an event slot (from a journal, a bridge, a fuzzer) were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The byte count is not the slot size.
    #[error("an event slot is {expected} bytes; got {len}")]
    WrongLength {
        /// Bytes given.
        len: usize,
        /// The slot size.
        expected: usize,
    },
    /// The priority byte names no priority.
    #[error("priority byte {0} names no priority")]
    BadPriority(u8),
    /// The payload length exceeds the payload area.
    #[error("payload length {len} exceeds the payload area of {capacity} bytes")]
    BadPayloadLength {
        /// The length in the header.
        len: usize,
        /// The payload area.
        capacity: usize,
    },
    /// More metadata entries than the header holds.
    #[error("metadata count {count} exceeds {max}")]
    BadMetadataCount {
        /// The count in the header.
        count: usize,
        /// The header's capacity.
        max: usize,
    },
    /// Flag bits that no version of the format defines.
    #[error("unknown flag bits {0:#04x}")]
    UnknownFlags(u8),
    /// Reserved bytes were not zero.
    #[error("reserved header bytes are not zero")]
    ReservedNotZero,
    /// Bytes to be read in place (a journal record in a memory map) are not 64-byte aligned.
    #[error("an event slot read in place must be 64-byte aligned")]
    Misaligned,
    /// Bytes to be read in place carry the process-local payload flag, which only
    /// `Event::set_payload` in this process may set (it would skip payload validation).
    #[error("bytes read in place carry the process-local payload flag")]
    LocalFlag,
}

/// A publish was refused. The event (or, for in-place publishes, `()`) is handed back so
/// nothing is lost: the caller decides whether to retry, drop or log it.
#[derive(Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PublishError<T> {
    /// A ring the event must enter is full (backpressure). Drain, then try again.
    #[error("ring full")]
    Full(T),
    /// The bus is closed: intake has stopped.
    #[error("bus closed")]
    Closed(T),
    /// `publish_timeout` waited its whole timeout on a full ring.
    #[error("timed out waiting for ring space")]
    Timeout(T),
    /// The event's type id was not interned on this bus.
    #[error("unknown event type id {id}")]
    UnknownEventType {
        /// The event handed back.
        event: T,
        /// The raw type id.
        id: u16,
    },
    /// The event's destination agent id was not interned on this bus.
    #[error("unknown destination agent id {id}")]
    UnknownAgent {
        /// The event handed back.
        event: T,
        /// The raw agent id.
        id: u32,
    },
    /// A scheduled publish was due later than the timer wheel can hold (see
    /// [`crate::schedule_horizon`]). Nothing was queued.
    #[error("due at {at_ns} ns; a schedule may be due at most at {latest_ns} ns")]
    BeyondHorizon {
        /// The event handed back.
        event: T,
        /// The due time asked for.
        at_ns: u64,
        /// The latest due time allowed at the time of the publish.
        latest_ns: u64,
    },
    /// The bus's security policy refused the publish (see [`crate::Policy`]). The
    /// violation was also counted, handed to the audit hook and raised as a
    /// `system.security` event.
    #[error("refused by policy: {violation}")]
    Policy {
        /// The event handed back.
        event: T,
        /// What rule it broke.
        violation: crate::policy::Violation,
    },
    /// An in-place publish could not write its payload into the slot.
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

impl<T> PublishError<T> {
    /// The event handed back, if this error carries one.
    pub fn into_inner(self) -> Option<T> {
        match self {
            PublishError::Full(e)
            | PublishError::Closed(e)
            | PublishError::Timeout(e)
            | PublishError::UnknownEventType { event: e, .. }
            | PublishError::UnknownAgent { event: e, .. }
            | PublishError::BeyondHorizon { event: e, .. }
            | PublishError::Policy { event: e, .. } => Some(e),
            PublishError::Payload(_) => None,
        }
    }

    /// Whether this is backpressure (`Full` or `Timeout`): the same call may succeed later.
    pub fn is_full(&self) -> bool {
        matches!(self, PublishError::Full(_) | PublishError::Timeout(_))
    }
}

/// A configuration passed to a builder was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count that must be at least one was zero.
    #[error("{what} must be at least 1")]
    Zero {
        /// Which setting.
        what: &'static str,
    },
    /// A capacity that must be a power of two was not.
    #[error("{what} must be a power of two; got {value}")]
    NotPowerOfTwo {
        /// Which setting.
        what: &'static str,
        /// The value given.
        value: usize,
    },
    /// A value was above its limit.
    #[error("{what} is {value}; at most {max} is allowed")]
    TooLarge {
        /// Which setting.
        what: &'static str,
        /// The value given.
        value: usize,
        /// The limit.
        max: usize,
    },
    /// The memory the configuration implies (shared structures plus one publisher's
    /// rings) is above the memory budget. Lower the capacities or raise the budget.
    #[error("the configuration needs {needed} bytes; the memory budget is {budget}")]
    MemoryBudget {
        /// Bytes the configuration implies (saturated at `usize::MAX`).
        needed: usize,
        /// The budget.
        budget: usize,
    },
    /// A retry policy was refused.
    #[error("invalid retry policy: {0}")]
    RetryPolicy(#[from] crate::backoff::InvalidPolicy),
}

/// A control-plane call (subscribe, unsubscribe, register, ...) was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BusError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A shard's journal could not be opened (or recovered) when the bus was built.
    #[cfg(feature = "journal")]
    #[error("journal of shard {shard}: {error}")]
    Journal {
        /// The shard.
        shard: usize,
        /// Why.
        error: crate::journal::SharedJournalError,
    },
    /// A name was refused.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The subscription id is not (or no longer) subscribed: unsubscribing twice lands here.
    #[error("no subscription {0:?}")]
    UnknownSubscription(SubscriptionId),
    /// An agent id not interned on this bus.
    #[error("unknown agent id {0}")]
    UnknownAgent(u32),
    /// An event type id not interned on this bus.
    #[error("unknown event type id {0}")]
    UnknownEventType(u16),
    /// A shard index outside `0..shards`.
    #[error("shard {index} does not exist; the bus has {shards}")]
    NoSuchShard {
        /// The index given.
        index: usize,
        /// How many shards there are.
        shards: usize,
    },
    /// The bus is closed.
    #[error("bus closed")]
    Closed,
    /// A load-balanced group of that name exists already.
    #[error("group {0:?} already exists")]
    GroupExists(String),
    /// No group with that id.
    #[error("no group {0}")]
    UnknownGroup(u32),
    /// Too many publishers were created over the bus's life.
    #[error("at most {max} publishers can be created on one bus")]
    TooManyPublishers {
        /// The limit.
        max: usize,
    },
    /// Another publisher's rings would take the bus above its memory budget (counting
    /// every publisher still alive). Drop a publisher or raise the budget.
    #[error("a publisher needs {needed} bytes with {alive} alive; the memory budget is {budget}")]
    MemoryBudget {
        /// Bytes the bus would take with the new publisher.
        needed: usize,
        /// The budget.
        budget: usize,
        /// Publishers alive before this one.
        alive: usize,
    },
    /// The bus's security policy refused a subscription (see [`crate::Policy`]); counted,
    /// audited and raised as a `system.security` event like a refused publish.
    #[error("refused by policy: {0}")]
    Policy(crate::policy::Violation),
    /// The allocator refused one of the bus's preallocated structures (`try_reserve`),
    /// within the memory budget. Nothing was half-built.
    #[error("out of memory allocating the {what}")]
    OutOfMemory {
        /// Which structure.
        what: &'static str,
    },
    /// A metadata table in the event header is full.
    /// A worker thread could not be spawned.
    #[error("could not spawn shard worker: {0}")]
    Spawn(String),
    /// A stream's capacity outside `1..=max` (see [`crate::Bus::stream`]).
    #[error("a stream holds 1 to {max} events; got {capacity}")]
    StreamCapacity {
        /// The capacity asked for.
        capacity: usize,
        /// The largest allowed ([`crate::MAX_RING_CAPACITY`]).
        max: usize,
    },
}

/// An event's inline metadata is full: the entry is handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("an event holds at most {max} metadata entries; no room for key {key:?}")]
pub struct MetadataFull {
    /// The key that did not fit.
    pub key: crate::names::MetaKey,
    /// Its value.
    pub value: u64,
    /// How many entries an event holds.
    pub max: usize,
}
