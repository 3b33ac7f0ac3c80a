//! What a policy refused: the violation handed to the caller, the audit hook and the
//! counters, and the `system.security` alert published on the bus.

use crate::names::{AgentId, EventType};

/// The name of the event type security alerts are published under. `set_policy`
/// registers it; subscribe to it to monitor violations (the payload is a
/// [`SecurityAlert`]).
pub const SECURITY_EVENT_TYPE: &str = "system.security";

/// The kinds of violation, each counted per agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ViolationKind {
    /// The agent may not publish events of this type.
    PublishDenied = 0,
    /// The agent may not subscribe to events of this type.
    SubscribeDenied = 1,
    /// The agent may not send events to this destination.
    DestinationDenied = 2,
    /// The payload is larger than the policy allows for this type.
    PayloadTooLarge = 3,
    /// The agent's rate limit (all types together) is exhausted.
    RateLimited = 4,
    /// The agent's rate limit for this type is exhausted.
    TypeRateLimited = 5,
    /// The agent has published its quota of events under this policy.
    QuotaExceeded = 6,
}

impl ViolationKind {
    /// How many kinds there are.
    pub const COUNT: usize = 7;

    /// Every kind, in index order.
    pub const ALL: [ViolationKind; Self::COUNT] = [
        ViolationKind::PublishDenied,
        ViolationKind::SubscribeDenied,
        ViolationKind::DestinationDenied,
        ViolationKind::PayloadTooLarge,
        ViolationKind::RateLimited,
        ViolationKind::TypeRateLimited,
        ViolationKind::QuotaExceeded,
    ];

    /// This kind's index in `0..COUNT` (its position in [`ViolationKind::ALL`]).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The kind with index `i`, if any.
    pub fn from_index(i: usize) -> Option<Self> {
        Self::ALL.get(i).copied()
    }
}

/// One refused publish or subscribe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The agent that tried (the publisher's agent, or the subscription's agent; for a
    /// subscription bound to no agent, [`Violation::ANONYMOUS`]).
    pub agent: AgentId,
    /// What rule it broke.
    pub kind: ViolationKind,
    /// The event type published or subscribed to.
    pub event_type: EventType,
    /// The destination of the refused event (`None`: a broadcast, or a subscribe).
    pub destination: Option<AgentId>,
    /// The payload length of the refused event in bytes (0 for a subscribe).
    pub payload_len: usize,
    /// The limit that was hit: the largest payload for `PayloadTooLarge`, the quota for
    /// `QuotaExceeded`, events per second for the rate limits, 0 for the denials.
    pub limit: u64,
}

impl Violation {
    /// The agent a subscription bound to no agent is checked (and counted) as.
    pub const ANONYMOUS: AgentId = AgentId(u32::MAX);

    /// The event type a violation names for a subscription to every type (a filter
    /// without types).
    pub const EVERY_TYPE: EventType = EventType(u16::MAX);
}

impl core::fmt::Display for Violation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "agent {} broke {:?} (type {}, limit {})",
            self.agent.raw(),
            self.kind,
            self.event_type.raw(),
            self.limit
        )
    }
}

/// The payload of a `system.security` event: one violation, as plain integers so it
/// archives into a few dozen bytes. Read it with `delivery.payload::<SecurityAlert>()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize)]
pub struct SecurityAlert {
    /// The offending agent's raw id (`u32::MAX`: an anonymous subscription).
    pub agent: u32,
    /// [`ViolationKind::index`] of the kind.
    pub kind: u8,
    /// The event type's raw id.
    pub event_type: u16,
    /// The destination's raw id, `u32::MAX` for none.
    pub destination: u32,
    /// The payload length.
    pub payload_len: u32,
    /// The limit that was hit (see [`Violation::limit`]).
    pub limit: u64,
}

impl From<&Violation> for SecurityAlert {
    fn from(v: &Violation) -> Self {
        SecurityAlert {
            agent: v.agent.raw(),
            kind: v.kind as u8,
            event_type: v.event_type.raw(),
            destination: v.destination.map_or(u32::MAX, AgentId::raw),
            payload_len: u32::try_from(v.payload_len).unwrap_or(u32::MAX),
            limit: v.limit,
        }
    }
}

/// Violations counted for one agent, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ViolationCounts(pub [u64; ViolationKind::COUNT]);

impl ViolationCounts {
    /// The count of one kind.
    pub fn get(&self, kind: ViolationKind) -> u64 {
        self.0[kind.index()]
    }

    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_index_round_trips() {
        for (i, k) in ViolationKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(ViolationKind::from_index(i), Some(*k));
        }
        assert_eq!(ViolationKind::from_index(ViolationKind::COUNT), None);
    }

    #[test]
    fn alert_carries_every_field() {
        let v = Violation {
            agent: AgentId(3),
            kind: ViolationKind::PayloadTooLarge,
            event_type: EventType(9),
            destination: None,
            payload_len: 70,
            limit: 64,
        };
        let a = SecurityAlert::from(&v);
        assert_eq!(
            a,
            SecurityAlert {
                agent: 3,
                kind: 3,
                event_type: 9,
                destination: u32::MAX,
                payload_len: 70,
                limit: 64
            }
        );
    }
}
