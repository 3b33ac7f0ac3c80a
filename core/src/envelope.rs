//! The spec's event envelope: routing and processing state that travels beside an event
//! (never inside its slot). The router builds one per dispatch, handlers see it, and the
//! retry and dead-letter paths carry it.

use arrayvec::ArrayVec;

use crate::names::AgentId;

/// How many agents a routing path records inline.
pub const MAX_PATH: usize = 4;

/// Where an event is in its processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Status {
    /// Accepted, not yet handed to a handler.
    #[default]
    Pending,
    /// A handler is running (this is what a handler sees).
    Processing,
    /// Every subscription that received it returned `Done`.
    Completed,
    /// At least one subscription failed it, or it is waiting to be retried.
    Failed,
}

/// A handler's error code: opaque to the bus, kept on the record for the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// The code the bus records when a handler panicked.
    pub const PANICKED: ErrorCode = ErrorCode(u16::MAX);
}

/// The envelope of the spec: routing path, hops, route time, attempts, deadline, status.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Envelope {
    /// The agents the event passed: its source, then its destination if it has one.
    pub path: ArrayVec<AgentId, MAX_PATH>,
    /// How many agents the route touched, as in the spec's example (`path.len()`: 2 for
    /// a direct event, 1 for a broadcast).
    pub hops: u8,
    /// When the router took the event, nanoseconds on the bus clock.
    pub route_timestamp_ns: u64,
    /// Delivery attempts including this one (1 on first delivery).
    pub attempts: u32,
    /// The event's deadline on the bus clock, if it has one.
    pub deadline_ns: Option<u64>,
    /// Processing status.
    pub status: Status,
    /// The last error code a handler returned for this event, if any.
    pub last_error: Option<ErrorCode>,
    /// How many subscriptions the route reached.
    pub deliveries: u32,
}

impl Envelope {
    /// Whether the deadline has passed at `now_ns`.
    pub fn is_expired(&self, now_ns: u64) -> bool {
        self.deadline_ns.is_some_and(|d| now_ns > d)
    }
}
