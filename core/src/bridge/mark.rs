//! The wire mark: one metadata entry (key `dreamnet.bridge`) that an event arriving from
//! NATS carries on the local bus. It says the event came from the wire (so the bridge that
//! brought it in never sends it back out), how many bridges it crossed (the hop count that
//! ends any loop), and, for a JetStream delivery, the ticket that its handler's outcome
//! acknowledges.
//!
//! ```text
//!  bit 63 ................... 16 15 ...... 8 7 ....... 0
//!     | ticket (48 bits, 0: none) | bridge tag |  hops    |
//! ```

use std::sync::atomic::{AtomicU8, Ordering};

use crate::event::Header;
use crate::names::MetaKey;

/// The metadata key name the mark is stored under.
pub const MARK_KEY: &str = "dreamnet.bridge";

/// The largest ticket a mark holds; tickets wrap around below it.
pub(crate) const MAX_TICKET: u64 = (1 << 48) - 1;

/// A decoded mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mark {
    /// Bridges crossed so far (1 after the first).
    pub(crate) hops: u8,
    /// Which bridge of this process brought the event in.
    pub(crate) bridge: u8,
    /// The JetStream acknowledgement ticket, 0 for core NATS.
    pub(crate) ticket: u64,
}

impl Mark {
    /// The metadata value.
    pub(crate) fn pack(self) -> u64 {
        ((self.ticket & MAX_TICKET) << 16) | (u64::from(self.bridge) << 8) | u64::from(self.hops)
    }

    /// Reads a metadata value back.
    pub(crate) fn unpack(value: u64) -> Mark {
        Mark {
            hops: value as u8,
            bridge: (value >> 8) as u8,
            ticket: value >> 16,
        }
    }

    /// The mark an event carries under `key`, if any.
    pub(crate) fn of(header: &Header, key: MetaKey) -> Option<Mark> {
        header.metadata(key).map(Mark::unpack)
    }
}

/// A tag per bridge in this process (wrapping after 256 bridges, which only matters if
/// more than 256 bridges share one bus).
pub(crate) fn next_bridge_tag() -> u8 {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Tells whether an event came in through one particular bridge: give it to a filter
/// (`Filter::matching`) so that a local member of a cross-process group takes only what
/// the NATS queue group hands this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireMark {
    pub(crate) key: MetaKey,
    pub(crate) bridge: u8,
}

impl WireMark {
    /// Whether the event came in through this bridge.
    pub fn is_on(&self, header: &Header) -> bool {
        Mark::of(header, self.key).is_some_and(|m| m.bridge == self.bridge)
    }

    /// The hop count, if the event came from any bridge of this bus.
    pub fn hops(&self, header: &Header) -> Option<u8> {
        Mark::of(header, self.key).map(|m| m.hops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pack_unpack_round_trips(hops: u8, bridge: u8, ticket in 0..=MAX_TICKET) {
            let m = Mark { hops, bridge, ticket };
            prop_assert_eq!(Mark::unpack(m.pack()), m);
        }
    }
}
