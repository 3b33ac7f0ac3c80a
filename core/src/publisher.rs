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
//!
//! One path: every publish, single or batch, built or written in place, scheduled or not,
//! goes through [`Publisher::publish_run`]: check the ids, find the target shards, claim
//! one chunk of slots on the first target ring, write the events there, copy them to the
//! other targets, commit. A batch pays the intake gate, the clock read and the counter
//! updates once per batch (per run of events with the same route), not per event.

mod police;

use core::mem::MaybeUninit;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{PayloadError, PublishError};
use crate::event::{Event, WritePayload, DEFAULT_SLOT};
use crate::intake::BusyFlag;
use crate::lanes::ProducerSet;
use crate::names::{AgentId, EventType};
use crate::priority::Priority;
use crate::schedule::{latest_due_ns, ScheduleToken};
use crate::shard::Control;
use crate::shared::Shared;
use crate::stats::{PublisherCounters, PublisherStats};
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

/// What a successful batch publish tells the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchReceipt {
    /// The id stamped on the first event published; the others follow it one by one
    /// (`first_id + i` for the `i`-th).
    pub first_id: u64,
    /// How many events were published: a prefix of the batch, possibly all of it.
    pub count: usize,
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
    /// The causation id: the id of the event that caused this one (0: none).
    pub causation_id: u64,
    /// The hop count (see [`Header::hops`](crate::Header::hops)); set by
    /// [`Draft::caused_by`].
    pub hops: u8,
}

impl Draft {
    /// A normal-priority broadcast of `event_type`.
    pub fn new(event_type: EventType) -> Self {
        Draft {
            event_type,
            priority: Priority::Normal,
            destination: None,
            correlation_id: 0,
            causation_id: 0,
            hops: 0,
        }
    }
    /// With priority `p` (as [`Event::with_priority`]).
    pub fn with_priority(mut self, p: Priority) -> Self {
        self.priority = p;
        self
    }
    /// Addressed to `agent` (as [`Event::to`]).
    pub fn to(mut self, agent: AgentId) -> Self {
        self.destination = Some(agent);
        self
    }
    /// With a correlation id (as [`Event::with_correlation_id`]).
    pub fn with_correlation_id(mut self, id: u64) -> Self {
        self.correlation_id = id;
        self
    }

    /// Caused by the event with header `cause` (as [`Event::caused_by`]): causation id =
    /// the cause's id, correlation id = the cause's correlation id (or its id when it had
    /// none), hop count = the cause's plus one.
    pub fn caused_by(mut self, cause: &crate::event::Header) -> Self {
        self.causation_id = cause.id();
        self.correlation_id = match cause.correlation_id() {
            0 => cause.id(),
            c => c,
        };
        self.hops = cause.hops().saturating_add(1);
        self
    }

    /// The route of every event this draft makes.
    fn route(&self) -> Route {
        Route {
            event_type: self.event_type,
            destination: self.destination,
            priority: self.priority,
        }
    }

    /// Writes an event of this draft with `payload` into `slot`.
    fn write<'s, const SLOT: usize, T: WritePayload>(
        &self,
        slot: &'s mut MaybeUninit<Event<SLOT>>,
        payload: &T,
    ) -> Result<&'s mut Event<SLOT>, PayloadError> {
        let event = slot.write(Event::new(self.event_type).with_priority(self.priority));
        event.set_destination(self.destination);
        if self.correlation_id != 0 {
            event.set_correlation_id(self.correlation_id);
        }
        if self.causation_id != 0 || self.hops != 0 {
            event.set_cause(self.causation_id, self.hops);
        }
        event.set_payload(payload)?;
        Ok(event)
    }
}

/// What decides where an event goes: its type, destination and priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Route {
    event_type: EventType,
    destination: Option<AgentId>,
    priority: Priority,
}

impl Route {
    fn of<const SLOT: usize>(event: &Event<SLOT>) -> Self {
        let h = event.header();
        Route {
            event_type: h.event_type(),
            destination: h.destination(),
            priority: h.priority(),
        }
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

/// How a run of events is stamped.
#[derive(Clone, Copy)]
struct Stamp {
    /// The publish time (one clock read per call).
    now_ns: u64,
    /// A scheduled publish's due time.
    at_ns: Option<u64>,
    /// Count a `Full` refusal (a blocking publish counts only the one it returns).
    count_full: bool,
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

    /// A snapshot of this publisher's counts.
    pub fn stats(&self) -> PublisherStats {
        self.counters.snapshot()
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
        self.publish_owned(event, None, true)
    }

    /// Schedules `event` for delivery at `at_ns` on the bus clock (see `Bus::now_ns`);
    /// non-blocking like `try_publish`. The event travels to its shards now and waits on
    /// their timer wheels; when due, it is routed to the subscriptions matching then on
    /// those shards. Its timestamp is the due time. Cancel with `Bus::cancel_scheduled`
    /// until it fires. A time in the past delivers at the shards' next poll.
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
        self.publish_owned(event, Some(at_ns), true)
            .map(|r| (r, ScheduleToken(r.id)))
    }

    /// Schedules `event` for delivery `delay` from now (see [`Publisher::try_publish_at`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use dreamnet_bus::{Bus, Event, EventType, Filter, ManualClock, Outcome};
    ///
    /// let clock = ManualClock::new();
    /// let (bus, mut shards) = Bus::builder().manual_clock(clock.clone()).build_polled()?;
    /// bus.subscribe(Filter::any(), |_| Outcome::Done)?;
    /// let mut publisher = bus.publisher(bus.register_agent("a")?)?;
    /// let (_, token) =
    ///     publisher.try_publish_after(Event::new(EventType::AGENT_TASK), Duration::from_millis(5))?;
    /// shards[0].poll(64); // takes it off the ring: it waits on the shard's timer wheel
    /// assert_eq!(shards[0].pending_timers(), 1);
    /// clock.advance(Duration::from_millis(5));
    /// assert_eq!(shards[0].poll(64), 1, "due: delivered");
    /// assert!(!bus.cancel_scheduled(token), "it fired");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_publish_after(
        &mut self,
        event: Event<SLOT>,
        delay: Duration,
    ) -> Result<(Receipt, ScheduleToken), PublishError<Event<SLOT>>> {
        let delay_ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        let at = self.shared.clock.now_ns().saturating_add(delay_ns);
        self.try_publish_at(event, at)
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
            match self.publish_owned(event, None, false) {
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

    /// Publishes, archiving `payload` straight into the ring's slot (no event on the stack,
    /// no intermediate buffer). Non-blocking: `Full(())` if a ring is full; a payload that
    /// does not fit is `Payload(TooLarge)` and nothing is published.
    pub fn try_publish_with<T: WritePayload>(
        &mut self,
        draft: Draft,
        payload: &T,
    ) -> Result<Receipt, PublishError<()>> {
        let route = draft.route();
        self.gated(|p, stamp| p.publish_run(route, 1, stamp, |_, slot| draft.write(slot, payload)))
            .map(|(first_id, shards)| Receipt {
                id: first_id,
                shards,
            })
            .map_err(|(_, failure)| failure.with(()))
    }

    /// Publishes a batch of built events, in order, without blocking: the longest prefix
    /// that fits, all-or-nothing per event across shards. Like `Write::write`, a short
    /// count is a success (`count < events.len()`: the next event met a full ring, or an
    /// error it will report when published on its own); `Err` only when none was
    /// published. The events are copied into the rings; consecutive events with the same
    /// type, destination and priority are claimed and committed as one chunk.
    pub fn try_publish_batch(
        &mut self,
        events: &[Event<SLOT>],
    ) -> Result<BatchReceipt, PublishError<()>> {
        self.gated(|p, stamp| {
            let mut done = 0;
            let mut first_id = None;
            while done < events.len() {
                let rest = &events[done..];
                let route = Route::of(&rest[0]);
                let run = rest.iter().take_while(|e| Route::of(e) == route).count();
                let (id, n, failure) =
                    match p.publish_run(route, run, stamp, |i, slot| Ok(copy_to(slot, &rest[i]))) {
                        Ok((id, _)) => (id, run, None),
                        Err((n, failure)) => (p.id_of(p.next_seq - n as u64), n, Some(failure)),
                    };
                first_id.get_or_insert(id);
                done += n;
                if let Some(failure) = failure {
                    return match first_id {
                        Some(id) if done > 0 => Ok((id, done as u32)),
                        _ => Err((0, failure)),
                    };
                }
            }
            Ok((first_id.unwrap_or(0), done as u32))
        })
        .map(|(first_id, count)| BatchReceipt {
            first_id,
            count: count as usize,
        })
        .map_err(|(_, failure)| failure.with(()))
    }

    /// Publishes one event per payload of `payloads`, all of `draft`, archiving each
    /// straight into its ring slot. One chunk claimed and committed per target ring, one
    /// gate entry, one clock read and one counter update for the whole batch. Like
    /// [`Publisher::try_publish_batch`], a short count is a success and `Err` means none
    /// was published; a payload that does not fit ends the batch before it.
    pub fn try_publish_batch_with<T: WritePayload>(
        &mut self,
        draft: Draft,
        payloads: &[T],
    ) -> Result<BatchReceipt, PublishError<()>> {
        if payloads.is_empty() {
            return Ok(BatchReceipt {
                first_id: self.id_of(self.next_seq),
                count: 0,
            });
        }
        let route = draft.route();
        self.gated(|p, stamp| {
            let first_id = p.id_of(p.next_seq);
            match p.publish_run(route, payloads.len(), stamp, |i, slot| {
                draft.write(slot, &payloads[i])
            }) {
                Ok(_) => Ok((first_id, payloads.len() as u32)),
                Err((0, failure)) => Err((0, failure)),
                Err((n, _)) => Ok((first_id, n as u32)),
            }
        })
        .map(|(first_id, count)| BatchReceipt {
            first_id,
            count: count as usize,
        })
        .map_err(|(_, failure)| failure.with(()))
    }

    /// `try_publish` and the scheduled publishes: one owned event, handed back on refusal.
    fn publish_owned(
        &mut self,
        event: Event<SLOT>,
        at_ns: Option<u64>,
        count_full: bool,
    ) -> Result<Receipt, PublishError<Event<SLOT>>> {
        let route = Route::of(&event);
        let result = self.gated(|p, mut stamp| {
            stamp.at_ns = at_ns;
            stamp.count_full = count_full;
            p.publish_run(route, 1, stamp, |_, slot| Ok(copy_to(slot, &event)))
        });
        match result {
            Ok((id, shards)) => Ok(Receipt { id, shards }),
            Err((_, failure)) => Err(failure.with(event)),
        }
    }

    /// Runs `body` inside the intake gate, with this call's one clock read.
    #[inline]
    fn gated<R>(
        &mut self,
        body: impl FnOnce(&mut Self, Stamp) -> Result<R, (usize, Failure)>,
    ) -> Result<R, (usize, Failure)> {
        if !self.shared.intake.enter(&self.busy) {
            self.counters.rejected_closed.incr();
            return Err((0, Failure::Closed));
        }
        let stamp = Stamp {
            now_ns: self.shared.clock.now_ns(),
            at_ns: None,
            count_full: true,
        };
        let result = body(self, stamp);
        self.shared.intake.exit(&self.busy);
        result
    }

    /// Publishes `n` events that share `route`, the `i`-th written into its slot by
    /// `write(i, slot)`: one chunk claimed on the first target ring, the events written
    /// there, copied to the other targets, and every ring committed once. Events that do
    /// not fit are left for the caller: `Err((published, why))` says how many went (a
    /// prefix) and why the next did not. Returns the first event's id and the number of
    /// target shards.
    fn publish_run<W>(
        &mut self,
        route: Route,
        n: usize,
        stamp: Stamp,
        mut write: W,
    ) -> Result<(u64, u32), (usize, Failure)>
    where
        W: FnMut(usize, &mut MaybeUninit<Event<SLOT>>) -> Result<&mut Event<SLOT>, PayloadError>,
    {
        let priority = route.priority;
        if let Err(refusal) = self.check(route) {
            self.counters.rejected_invalid.incr();
            return Err((0, refusal));
        }
        let mask = self
            .shared
            .targets
            .for_event(route.event_type, route.destination);
        let first_id = self.id_of(self.next_seq);
        if mask == 0 {
            return self
                .publish_unroutable(n, stamp, write)
                .map(|()| (first_id, 0));
        }
        let take = self.room(mask, priority, n);
        if take == 0 {
            if stamp.count_full {
                self.count_full(mask, priority);
            }
            return Err((0, Failure::Full));
        }
        let first = mask.trailing_zeros() as usize;
        let (head, others) = self.lanes.split_at_mut(first + 1);
        let ring = &mut head[first][priority.index()];
        let Ok(mut chunk) = ring.write_chunk_uninit(take) else {
            // `room` saw `take` free slots, and this thread is the ring's only producer.
            return Err((0, Failure::Full));
        };
        let (a, b) = chunk.as_mut_slices();
        let mut written = 0;
        let mut failure = None;
        let mut refused = None;
        for slot in a.iter_mut().chain(b.iter_mut()) {
            let seq = self.next_seq + written as u64;
            match write(written, slot) {
                Ok(event) => {
                    // The policy check: once the payload is written (its size is known only
                    // now), before the slot is committed; a refused event ends the run here
                    // and is never visible to a shard.
                    let policed = police::police(
                        &self.shared.shield,
                        &mut self.policy,
                        self.agent,
                        event.header(),
                        stamp.now_ns,
                    );
                    if let Err(r) = policed {
                        failure = Some(Failure::Policy(r.violation));
                        refused = Some(r);
                        break;
                    }
                    let id = (u64::from(self.index) << SEQ_BITS) | seq;
                    event.stamp(id, self.agent, stamp.at_ns.unwrap_or(stamp.now_ns));
                    event.set_scheduled(stamp.at_ns.is_some());
                    written += 1;
                }
                Err(e) => {
                    failure = Some(Failure::Payload(e));
                    break;
                }
            }
        }
        if written == 0 {
            if let Some(r) = refused {
                self.raise(&r);
            }
            return Err((0, failure.unwrap_or(Failure::Full)));
        }
        let shards = shard_count(mask);
        if stamp.at_ns.is_some() {
            // Registered before any shard can see the event, so none mistakes it for
            // cancelled.
            self.shared.schedule.add(first_id, shards);
        }
        let (a, b) = chunk.as_mut_slices();
        let source = a.iter().chain(b.iter()).take(written);
        let mut rest = mask & !(1 << first);
        while rest != 0 {
            let s = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            copy_run(
                &mut others[s - first - 1][priority.index()],
                source.clone(),
                written,
            );
            self.counters.shards[s]
                .enqueued
                .add(priority, written as u64);
        }
        // SAFETY: the first `written` slots of the chunk were initialised by `write`
        // above (a prefix: the loop stops at the first slot it could not write).
        unsafe { chunk.commit(written) };
        self.shared.wake_parked(mask);
        self.counters.shards[first]
            .enqueued
            .add(priority, written as u64);
        self.counters.published.add(priority, written as u64);
        self.next_seq += written as u64;
        if let Some(r) = refused {
            self.raise(&r);
        }
        match failure {
            None if written == n => Ok((first_id, shards)),
            // A short count, not a refusal: the caller gets the rest back to publish again
            // (only a refusal returned as an error is counted in `rejected_full`).
            None => Err((written, Failure::Full)),
            Some(failure) => Err((written, failure)),
        }
    }

    /// Events nobody subscribed to: each is built on the stack for the record, counted as
    /// published and unroutable, and dead-lettered if the bus is set to.
    fn publish_unroutable<W>(
        &mut self,
        n: usize,
        stamp: Stamp,
        mut write: W,
    ) -> Result<(), (usize, Failure)>
    where
        W: FnMut(usize, &mut MaybeUninit<Event<SLOT>>) -> Result<&mut Event<SLOT>, PayloadError>,
    {
        for i in 0..n {
            let mut slot = MaybeUninit::uninit();
            let event = write(i, &mut slot).map_err(|e| (i, Failure::Payload(e)))?;
            let policed = police::police(
                &self.shared.shield,
                &mut self.policy,
                self.agent,
                event.header(),
                stamp.now_ns,
            );
            if let Err(r) = policed {
                self.raise(&r);
                return Err((i, Failure::Policy(r.violation)));
            }
            let id = self.id_of(self.next_seq);
            event.stamp(id, self.agent, stamp.at_ns.unwrap_or(stamp.now_ns));
            event.set_scheduled(stamp.at_ns.is_some());
            let priority = event.header().priority();
            self.next_seq += 1;
            self.counters.published.incr(priority);
            self.counters.unroutable.incr(priority);
            self.shared.dead_letter_unroutable(event);
        }
        Ok(())
    }

    /// Checks a route's ids against the bus.
    #[inline]
    fn check(&self, route: Route) -> Result<(), Failure> {
        let ty = route.event_type.raw();
        if u32::from(ty) >= self.shared.type_count() {
            return Err(Failure::UnknownType(ty));
        }
        match route.destination {
            Some(d) if d.raw() >= self.shared.agent_count() => Err(Failure::UnknownAgent(d.raw())),
            _ => Ok(()),
        }
    }

    /// How many of `want` events fit in every ring `mask` names at `priority` (space only
    /// grows while this thread is the only producer). Reads each ring's cached free count
    /// first: the consumer's index, a line the consuming core keeps writing, is loaded
    /// only when the cache says there may not be room.
    #[inline]
    fn room(&self, mask: u64, priority: Priority, want: usize) -> usize {
        let mut bits = mask;
        let mut room = want;
        while bits != 0 {
            let s = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let ring = &self.lanes[s][priority.index()];
            if ring.cached_slots() < room {
                room = room.min(ring.slots());
            }
        }
        room
    }

    /// Counts a `Full` refusal, against the publisher and the first full shard.
    fn count_full(&self, mask: u64, priority: Priority) {
        self.counters.rejected_full.incr(priority);
        let mut bits = mask;
        while bits != 0 {
            let s = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if self.lanes[s][priority.index()].is_full() {
                self.counters.shards[s].rejected_full.incr(priority);
                return;
            }
        }
    }

    #[inline]
    fn id_of(&self, seq: u64) -> u64 {
        (u64::from(self.index) << SEQ_BITS) | seq
    }
}

impl<const SLOT: usize> Drop for Publisher<SLOT> {
    fn drop(&mut self) {
        for mailbox in &self.shared.mailboxes {
            mailbox.post(Control::PublisherGone {
                publisher: self.index,
            });
        }
    }
}

/// How many shards `mask` names. One, usually: that case skips `count_ones`, which is a
/// dozen instructions on the baseline x86-64 target (no `popcnt`).
#[inline]
fn shard_count(mask: u64) -> u32 {
    if mask & (mask - 1) == 0 {
        1
    } else {
        mask.count_ones()
    }
}

/// Copies `event` into `slot` (one 256-byte copy, no temporary) and returns it there.
#[inline]
fn copy_to<'s, const SLOT: usize>(
    slot: &'s mut MaybeUninit<Event<SLOT>>,
    event: &Event<SLOT>,
) -> &'s mut Event<SLOT> {
    // SAFETY: `slot` is valid for writes of one `Event` (a ring slot or a stack slot,
    // aligned for `Event`) and cannot overlap `event`, which the caller borrows elsewhere;
    // `Event` is plain bytes without `Drop`, so a bitwise copy is a valid value.
    unsafe { slot.as_mut_ptr().copy_from_nonoverlapping(event, 1) };
    // SAFETY: initialised just above.
    unsafe { slot.assume_init_mut() }
}

/// Copies the `n` initialised events `source` yields into the next `n` slots of `ring` and
/// commits them. The caller checked that `ring` has `n` free slots.
fn copy_run<'e, const SLOT: usize>(
    ring: &mut rtrb::Producer<Event<SLOT>>,
    source: impl Iterator<Item = &'e MaybeUninit<Event<SLOT>>>,
    n: usize,
) {
    let Ok(mut chunk) = ring.write_chunk_uninit(n) else {
        // Unreachable: `room` counted at least `n` free slots on this ring, and only this
        // thread produces into it, so its free space has not shrunk since.
        return;
    };
    let (a, b) = chunk.as_mut_slices();
    for (dst, src) in a.iter_mut().chain(b.iter_mut()).zip(source) {
        // SAFETY: `src` is one of the first `n` slots of the source chunk, which the
        // caller initialised; `dst` is a slot of another ring's buffer (no overlap), valid
        // for one `Event`; `Event` is plain bytes, so a bitwise copy is a valid value.
        unsafe { dst.as_mut_ptr().copy_from_nonoverlapping(src.as_ptr(), 1) };
    }
    // SAFETY: the chunk has `n` slots, all written by the loop (`source` yields `n`).
    unsafe { chunk.commit_all() };
}

/// Why a publish stopped, before the event (or `()`) is handed back.
#[derive(Clone, Copy, Debug)]
enum Failure {
    Closed,
    Full,
    UnknownType(u16),
    UnknownAgent(u32),
    Payload(PayloadError),
    Policy(crate::policy::Violation),
}

impl Failure {
    fn with<T>(self, event: T) -> PublishError<T> {
        match self {
            Failure::Closed => PublishError::Closed(event),
            Failure::Full => PublishError::Full(event),
            Failure::Policy(violation) => PublishError::Policy { event, violation },
            Failure::UnknownType(id) => PublishError::UnknownEventType { event, id },
            Failure::UnknownAgent(id) => PublishError::UnknownAgent { event, id },
            Failure::Payload(e) => PublishError::Payload(e),
        }
    }
}
