//! A publisher: one producing thread's handle, bound to one agent. It stamps the id, the
//! source and the timestamp on every event (the source cannot be spoofed through it), and
//! writes into its own SPSC rings, one per shard and priority.
//!
//! Ordering: events from one publisher at one priority reach each subscription in publish
//! order (FIFO per publisher per priority per subscription). Nothing is promised between
//! priorities or between publishers, and a retried event is, by design, out of order.
//!
//! Backpressure: `try_publish` never blocks; if any ring the event must enter is full it
//! returns `Err(Full(event))` and enters none (all-or-nothing across shards). `publish`
//! waits with the bus's wait strategy; `publish_timeout` gives up after a while.

mod police;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bus::Shared;
use crate::error::PublishError;
use crate::event::{Event, WritePayload, DEFAULT_SLOT};
use crate::intake::BusyFlag;
use crate::lanes::ProducerSet;
use crate::names::{AgentId, EventType};
use crate::priority::Priority;
use crate::schedule::{latest_due_ns, ScheduleToken};
use crate::shard::Control;
use crate::stats::PublisherCounters;
use crate::wait::Waiter;

/// Bits of an event id taken by the per-publisher sequence; the publisher index sits above.
const SEQ_BITS: u32 = 40;
/// The most publishers one bus can create over its life.
pub const MAX_PUBLISHERS: usize = 1 << (64 - SEQ_BITS);

/// What a successful publish tells the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The id stamped on the event (unique across the bus).
    pub id: u64,
    /// How many shards the event was queued on. 0: no subscription matched at publish
    /// time; the event was counted as unroutable (and dead-lettered if the bus is set to).
    pub shards: u32,
}

/// Where an in-place publish goes: everything routing needs before the slot is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Draft {
    /// The event type.
    pub event_type: EventType,
    /// The priority.
    pub priority: Priority,
    /// The destination, or `None` for a broadcast.
    pub destination: Option<AgentId>,
    /// The correlation id (0: none).
    pub correlation_id: u64,
}

impl Draft {
    /// A normal-priority broadcast of `event_type`.
    pub fn new(event_type: EventType) -> Self {
        Draft {
            event_type,
            priority: Priority::Normal,
            destination: None,
            correlation_id: 0,
        }
    }
    /// With priority `p`.
    pub fn priority(mut self, p: Priority) -> Self {
        self.priority = p;
        self
    }
    /// Addressed to `agent`.
    pub fn to(mut self, agent: AgentId) -> Self {
        self.destination = Some(agent);
        self
    }
    /// With a correlation id.
    pub fn correlation_id(mut self, id: u64) -> Self {
        self.correlation_id = id;
        self
    }
}

/// A producing thread's handle. `Send`, not `Sync`: one per thread.
pub struct Publisher<const SLOT: usize = DEFAULT_SLOT> {
    agent: AgentId,
    index: u32,
    /// Next sequence number; ids are `index << SEQ_BITS | seq`.
    next_seq: u64,
    /// Producing ends, by shard then priority.
    lanes: Box<[ProducerSet<SLOT>]>,
    shared: Arc<Shared<SLOT>>,
    counters: Arc<PublisherCounters>,
    busy: BusyFlag,
    /// This publisher's view of the security policy (`publisher/police.rs`).
    policy: crate::policy::PolicyCache,
}

impl<const SLOT: usize> core::fmt::Debug for Publisher<SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Publisher")
            .field("agent", &self.agent)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Why an event cannot be routed: checked before anything is written.
enum Refusal {
    UnknownType(u16),
    UnknownAgent(u32),
}

impl<const SLOT: usize> Publisher<SLOT> {
    pub(crate) fn new(
        agent: AgentId,
        index: u32,
        lanes: Box<[ProducerSet<SLOT>]>,
        shared: Arc<Shared<SLOT>>,
        counters: Arc<PublisherCounters>,
        busy: BusyFlag,
    ) -> Self {
        Publisher {
            agent,
            index,
            next_seq: 1,
            lanes,
            policy: shared.shield.cache(),
            shared,
            counters,
            busy,
        }
    }

    /// The agent this publisher publishes as.
    pub fn agent(&self) -> AgentId {
        self.agent
    }

    /// This publisher's counters.
    pub fn counters(&self) -> &PublisherCounters {
        &self.counters
    }

    /// Free slots in the ring to `shard` at `priority` (what a `try_publish` can still
    /// add there without `Full`); 0 for a shard that does not exist.
    pub fn free_slots(&self, shard: usize, priority: Priority) -> usize {
        self.lanes
            .get(shard)
            .map_or(0, |set| set[priority.index()].slots())
    }

    /// Publishes without blocking. On `Full` (or any error) the event is handed back and
    /// no ring was written.
    pub fn try_publish(
        &mut self,
        event: Event<SLOT>,
    ) -> Result<Receipt, PublishError<Event<SLOT>>> {
        self.publish_gated(event, None, true)
    }

    /// Schedules `event` for delivery at `at_ns` on the bus clock (see `Bus::now_ns`);
    /// non-blocking like `try_publish`. The event travels to its shards now and waits on
    /// their timer wheels; when due, it is routed to the subscriptions matching then on
    /// those shards. Its timestamp is the due time. Cancel with `Bus::cancel_scheduled`
    /// until it fires. A time in the past delivers at the shards' next poll. A time more
    /// than [`crate::schedule_horizon`] ahead is refused with `BeyondHorizon`.
    pub fn try_publish_at(
        &mut self,
        event: Event<SLOT>,
        at_ns: u64,
    ) -> Result<(Receipt, ScheduleToken), PublishError<Event<SLOT>>> {
        let latest_ns = latest_due_ns(self.shared.clock.now_ns(), self.shared.config.tick);
        if at_ns > latest_ns {
            self.counters.rejected_invalid.incr();
            return Err(PublishError::BeyondHorizon {
                event,
                at_ns,
                latest_ns,
            });
        }
        self.publish_gated(event, Some(at_ns), true)
            .map(|r| (r, ScheduleToken(r.id)))
    }

    /// Schedules `event` for delivery `delay` from now (see [`Publisher::try_publish_at`]).
    pub fn try_publish_after(
        &mut self,
        event: Event<SLOT>,
        delay: Duration,
    ) -> Result<(Receipt, ScheduleToken), PublishError<Event<SLOT>>> {
        let delay_ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        let at = self.shared.clock.now_ns().saturating_add(delay_ns);
        self.try_publish_at(event, at)
    }

    /// One publish inside the intake gate. `count_full`: count a `Full` refusal (a
    /// blocking publish counts only the refusal it finally returns).
    fn publish_gated(
        &mut self,
        mut event: Event<SLOT>,
        at_ns: Option<u64>,
        count_full: bool,
    ) -> Result<Receipt, PublishError<Event<SLOT>>> {
        if !self.shared.intake.enter(&self.busy) {
            self.counters.rejected_closed.incr();
            return Err(PublishError::Closed(event));
        }
        let result = self.publish_entered(&mut event, at_ns, count_full);
        self.shared.intake.exit(&self.busy);
        result.map_err(|e| e.with(event))
    }

    /// Publishes, waiting (with the bus's wait strategy) while a ring is full.
    ///
    /// In poll mode, something must poll the shards meanwhile, or this waits forever; use
    /// [`Publisher::publish_timeout`] there.
    pub fn publish(&mut self, event: Event<SLOT>) -> Result<Receipt, PublishError<Event<SLOT>>> {
        self.publish_until(event, None)
    }

    /// Publishes, waiting at most `timeout` for ring space; then `Err(Timeout(event))`.
    pub fn publish_timeout(
        &mut self,
        event: Event<SLOT>,
        timeout: Duration,
    ) -> Result<Receipt, PublishError<Event<SLOT>>> {
        self.publish_until(event, Some(Instant::now() + timeout))
    }

    fn publish_until(
        &mut self,
        mut event: Event<SLOT>,
        deadline: Option<Instant>,
    ) -> Result<Receipt, PublishError<Event<SLOT>>> {
        let mut waiter = Waiter::new(self.shared.config.wait);
        loop {
            match self.publish_gated(event, None, false) {
                Err(PublishError::Full(back)) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        let priority = back.header().priority();
                        self.counters.rejected_full.incr(priority);
                        return Err(PublishError::Timeout(back));
                    }
                    event = back;
                    waiter.wait();
                }
                other => return other,
            }
        }
    }

    /// Publishes a slice of events in order, without blocking; stops at the first refused.
    /// Returns how many were published (a prefix of `events`) and the error for the first
    /// refused one, if any. The events are copied into the rings.
    pub fn try_publish_batch(
        &mut self,
        events: &[Event<SLOT>],
    ) -> (usize, Option<PublishError<Event<SLOT>>>) {
        for (i, event) in events.iter().enumerate() {
            if let Err(e) = self.try_publish(event.clone()) {
                return (i, Some(e));
            }
        }
        (events.len(), None)
    }

    /// Publishes, archiving `payload` straight into the ring's slot (no event on the stack,
    /// no intermediate buffer). Non-blocking: `Full(())` if a ring is full; a payload that
    /// does not fit is `Payload(TooLarge)` and nothing is published.
    pub fn try_publish_with<T: WritePayload>(
        &mut self,
        draft: Draft,
        payload: &T,
    ) -> Result<Receipt, PublishError<()>> {
        if !self.shared.intake.enter(&self.busy) {
            self.counters.rejected_closed.incr();
            return Err(PublishError::Closed(()));
        }
        let result = self.publish_in_place(draft, payload);
        self.shared.intake.exit(&self.busy);
        result
    }

    /// Checks the ids of an event against the bus.
    fn check(&self, ty: u16, destination: u32) -> Result<(), Refusal> {
        if u32::from(ty) >= self.shared.type_count() {
            return Err(Refusal::UnknownType(ty));
        }
        if destination != u32::MAX && destination >= self.shared.agent_count() {
            return Err(Refusal::UnknownAgent(destination));
        }
        Ok(())
    }

    /// The shards `mask` names, if every ring there has room at `priority`; else counts
    /// the refusal against the first full shard.
    fn room(&self, mask: u64, priority: Priority, count_full: bool) -> bool {
        let mut bits = mask;
        while bits != 0 {
            let s = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if self.lanes[s][priority.index()].is_full() {
                if count_full {
                    self.counters.rejected_full.incr(priority);
                    self.counters.shards[s].rejected_full.incr(priority);
                }
                return false;
            }
        }
        true
    }

    fn next_id(&mut self) -> u64 {
        let id = (u64::from(self.index) << SEQ_BITS) | self.next_seq;
        self.next_seq += 1;
        id
    }

    /// The body of `try_publish`, inside the intake gate.
    fn publish_entered(
        &mut self,
        event: &mut Event<SLOT>,
        at_ns: Option<u64>,
        count_full: bool,
    ) -> Result<Receipt, Failure> {
        let (ty, destination) = event.raw_ids();
        if let Err(refusal) = self.check(ty, destination) {
            self.counters.rejected_invalid.incr();
            return Err(Failure::Refused(refusal));
        }
        let h = event.header();
        let priority = h.priority();
        let mask = self
            .shared
            .targets
            .for_event(h.event_type(), h.destination());
        if mask != 0 && !self.room(mask, priority, count_full) {
            return Err(Failure::Full);
        }
        let now = self.shared.clock.now_ns();
        let policed = police::police(&self.shared.shield, &mut self.policy, self.agent, h, now);
        if let Err(refused) = policed {
            self.raise(&refused);
            return Err(Failure::Policy(refused.violation));
        }
        let id = self.next_id();
        event.stamp(id, self.agent, at_ns.unwrap_or(now));
        event.set_scheduled(at_ns.is_some());
        self.counters.published.incr(priority);
        if mask == 0 {
            self.unroutable(event, priority);
            return Ok(Receipt { id, shards: 0 });
        }
        if at_ns.is_some() {
            // Registered before any shard can see the event, so none mistakes it for
            // cancelled.
            self.shared.schedule.add(id, mask.count_ones());
        }
        let mut bits = mask;
        while bits != 0 {
            let s = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            // `room` saw a free slot and this thread is the ring's only producer, so this
            // cannot fail; were it ever to, the refusal is counted, not ignored.
            if copy_into(&mut self.lanes[s][priority.index()], event) {
                self.counters.shards[s].enqueued.incr(priority);
            } else {
                self.counters.shards[s].rejected_full.incr(priority);
            }
        }
        Ok(Receipt {
            id,
            shards: mask.count_ones(),
        })
    }

    fn publish_in_place<T: WritePayload>(
        &mut self,
        draft: Draft,
        payload: &T,
    ) -> Result<Receipt, PublishError<()>> {
        let destination = draft.destination.map_or(u32::MAX, AgentId::raw);
        if let Err(refusal) = self.check(draft.event_type.raw(), destination) {
            self.counters.rejected_invalid.incr();
            return Err(Failure::Refused(refusal).with(()));
        }
        let priority = draft.priority;
        let mask = self
            .shared
            .targets
            .for_event(draft.event_type, draft.destination);
        if mask == 0 {
            // Nothing will read it, so build it on the stack for the record.
            let mut event = Event::new(draft.event_type)
                .with_priority(priority)
                .with_correlation_id(draft.correlation_id);
            event.set_destination(draft.destination);
            event.set_payload(payload)?;
            let now = self.shared.clock.now_ns();
            let policed = police::police(
                &self.shared.shield,
                &mut self.policy,
                self.agent,
                event.header(),
                now,
            );
            if let Err(refused) = policed {
                self.raise(&refused);
                return Err(Failure::Policy(refused.violation).with(()));
            }
            let id = self.next_id();
            event.stamp(id, self.agent, now);
            self.counters.published.incr(priority);
            self.unroutable(&event, priority);
            return Ok(Receipt { id, shards: 0 });
        }
        if !self.room(mask, priority, true) {
            return Err(PublishError::Full(()));
        }
        let first = mask.trailing_zeros() as usize;
        let id = (u64::from(self.index) << SEQ_BITS) | self.next_seq;
        let now = self.shared.clock.now_ns();
        let agent = self.agent;
        let mut chunk = self.lanes[first][priority.index()]
            .write_chunk_uninit(1)
            .map_err(|_| PublishError::Full(()))?;
        let (slots, _) = chunk.as_mut_slices();
        let Some(slot) = slots.first_mut() else {
            return Err(PublishError::Full(()));
        };
        let event = slot.write(Event::new(draft.event_type).with_priority(priority));
        event.set_destination(draft.destination);
        if draft.correlation_id != 0 {
            event.set_correlation_id(draft.correlation_id);
        }
        event.set_payload(payload)?;
        // Checked once the payload is written (its size is known only now), before the
        // slot is committed: a refused event is never visible to the shard.
        let policed = police::police(
            &self.shared.shield,
            &mut self.policy,
            agent,
            event.header(),
            now,
        );
        if let Err(refused) = policed {
            // The chunk is never committed: the slot stays free, the shard sees nothing.
            self.raise(&refused);
            return Err(Failure::Policy(refused.violation).with(()));
        }
        event.stamp(id, agent, now);
        let copy = (mask.count_ones() > 1).then(|| event.clone());
        // SAFETY: the one slot of this chunk was initialised by `slot.write` above.
        unsafe { chunk.commit_all() };
        self.next_seq += 1;
        self.counters.published.incr(priority);
        self.counters.shards[first].enqueued.incr(priority);
        if let Some(event) = copy {
            let mut bits = mask & !(1 << first);
            while bits != 0 {
                let s = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if copy_into(&mut self.lanes[s][priority.index()], &event) {
                    self.counters.shards[s].enqueued.incr(priority);
                } else {
                    self.counters.shards[s].rejected_full.incr(priority);
                }
            }
        }
        Ok(Receipt {
            id,
            shards: mask.count_ones(),
        })
    }

    /// Counts (and, if the bus is set to, dead-letters) an event nobody subscribed to.
    fn unroutable(&self, event: &Event<SLOT>, priority: Priority) {
        self.counters.unroutable.incr(priority);
        self.shared.dead_letter_unroutable(event);
    }
}

impl<const SLOT: usize> Drop for Publisher<SLOT> {
    fn drop(&mut self) {
        for control in &self.shared.control {
            // A shard that is gone has no lanes left to retire.
            let _ = control.send(Control::PublisherGone {
                publisher: self.index,
            });
        }
    }
}

/// Copies `event` straight into the next slot of `ring` (one 256-byte copy, no temporary);
/// false if the ring is full.
#[inline]
fn copy_into<const SLOT: usize>(
    ring: &mut rtrb::Producer<Event<SLOT>>,
    event: &Event<SLOT>,
) -> bool {
    let Ok(mut chunk) = ring.write_chunk_uninit(1) else {
        return false;
    };
    let (slots, _) = chunk.as_mut_slices();
    let Some(slot) = slots.first_mut() else {
        return false;
    };
    // SAFETY: `slot` is valid for writes of one `Event` (a slot of the ring's buffer,
    // aligned for `Event`) and cannot overlap `event`, which the caller borrows elsewhere;
    // `Event` is plain bytes without `Drop`, so a bitwise copy is a valid value.
    unsafe { slot.as_mut_ptr().copy_from_nonoverlapping(event, 1) };
    // SAFETY: the chunk's one slot was initialised just above.
    unsafe { chunk.commit_all() };
    true
}

/// A refusal inside the gate, before the event is handed back.
enum Failure {
    Full,
    Refused(Refusal),
    Policy(crate::policy::Violation),
}

impl Failure {
    fn with<T>(self, event: T) -> PublishError<T> {
        match self {
            Failure::Full => PublishError::Full(event),
            Failure::Policy(violation) => PublishError::Policy { event, violation },
            Failure::Refused(Refusal::UnknownType(id)) => {
                PublishError::UnknownEventType { event, id }
            }
            Failure::Refused(Refusal::UnknownAgent(id)) => PublishError::UnknownAgent { event, id },
        }
    }
}
