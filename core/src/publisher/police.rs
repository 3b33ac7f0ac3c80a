//! The publisher's side of the security policy: the one check on the publish path, and
//! the `system.security` alert a refused publish raises on the publisher's own rings.
//!
//! The check runs after the rings were found to have room (so a publish that waits on a
//! full ring spends no token or quota per attempt) and before the event is stamped and
//! written. Without a policy it is one load and one predictable branch (the request is
//! built from fields of the header just written, which the compiler sinks past it).
//!
//! The alert goes out on the offending publisher's own rings, stamped with the shield's
//! agent as source (never the offender's): a flood of violations fills the offender's
//! rings, not anyone else's. When those rings are full the alert is counted as dropped;
//! the violation itself has been returned, counted and audited regardless.

use crate::event::{Event, Header};
use crate::names::AgentId;
use crate::policy::{PolicyCache, PublishRequest, Refused, Shield};
use crate::priority::Priority;
use crate::publisher::{copy_to, Publisher};

/// Checks a publish of the event described by `header` by `agent` at `now_ns` (the
/// publisher's own clock reading, used for rate limits).
#[inline(always)]
pub(super) fn police(
    shield: &Shield,
    cache: &mut PolicyCache,
    agent: AgentId,
    header: &Header,
    now_ns: u64,
) -> Result<(), Refused> {
    let request = PublishRequest {
        agent,
        event_type: header.event_type(),
        destination: header.destination(),
        payload_len: header.payload_len(),
    };
    shield.check_publish(cache, &request, || now_ns)
}

impl<const SLOT: usize> Publisher<SLOT> {
    /// Raises an alert from outside a publish (a refused subscribe), inside the intake
    /// gate like a publish, so `close` either waits for it or it is counted as dropped.
    pub(crate) fn raise_gated(&mut self, refused: &Refused) {
        if !self.shared.intake.enter(&self.busy) {
            self.shared.shield.alert_dropped();
            return;
        }
        self.raise(refused);
        self.shared.intake.exit(&self.busy);
    }

    /// Publishes the alert for `refused` on this publisher's rings, as the shield's agent.
    #[cold]
    pub(super) fn raise(&mut self, refused: &Refused) {
        let mut alert: Event<SLOT> = refused.alert();
        let priority = Priority::High;
        let mask = self.shared.targets.for_event(refused.alert_type, None);
        if mask != 0 && self.room(mask, priority, 1) == 0 {
            self.shared.shield.alert_dropped();
            return;
        }
        let id = self.id_of(self.next_seq);
        self.next_seq += 1;
        alert.stamp(id, refused.alert_source, self.shared.clock.now_ns());
        self.counters.published.incr(priority);
        self.shared.shield.alert_published();
        if mask == 0 {
            self.counters.unroutable.incr(priority);
            self.shared.dead_letter_unroutable(&alert);
            return;
        }
        let mut bits = mask;
        while bits != 0 {
            let s = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let ring = &mut self.lanes[s][priority.index()];
            // `room` saw a free slot on every target and this thread is the only producer.
            let Ok(mut chunk) = ring.write_chunk_uninit(1) else {
                self.counters.shards[s].rejected_full.incr(priority);
                continue;
            };
            let (slots, _) = chunk.as_mut_slices();
            if let Some(slot) = slots.first_mut() {
                copy_to(slot, &alert);
                // SAFETY: the chunk's one slot was initialised by `copy_to` just above.
                unsafe { chunk.commit(1) };
                self.counters.shards[s].enqueued.incr(priority);
            }
        }
    }
}
