//! A shard: the consuming ends of its lanes (per priority), a router, and the loop that
//! drains one into the other. Run it on a worker thread the bus owns (optionally pinned to
//! a core), or in your own loop with [`Shard::poll`].
//!
//! Drain order is by priority, highest first, with a starvation guard: once `guard` events
//! of higher levels have been taken while a lower level had events waiting, the next event
//! comes from the lowest such level. So under a flood of critical events a waiting low
//! event is taken at least once every `guard + 1` events (per waiting level).
//!
//! Within a level, lanes (one per publisher) are taken in turn, a batch at a time. Events
//! are dispatched straight from the ring's memory: a handler's `&Event` points into the
//! ring, and the slot is released after the batch.
//!
//! Control messages (new lanes, subscriptions, unsubscriptions) arrive through the
//! shard's mailbox and are applied at the start of a `poll` when the mailbox says one was
//! posted (one load otherwise), and again in the middle of a drain if a chunk of events
//! may have been published after a message now waiting: so a subscription applies before
//! any event published after `subscribe` returned.
//!
//! Each poll, in order: control messages; due timer-wheel entries (retries, scheduled
//! events and paced redrives' ticks, at most `MAX_FIRED_PER_POLL`) when the wheel is not
//! empty; redriven dead
//! letters when the queue is not empty; then the rings. The wheel is advanced by this
//! shard's clock: no thread of its own. The clock is read only when something needs the
//! time (a deadline, a retry, a scheduled event, a handler asking).

use std::collections::HashMap;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;

use crate::clock::{Clock, LazyNow};
use crate::dead_letters::DeadReason;
use crate::event::{Event, DEFAULT_SLOT};
use crate::lanes::{ConsumerSet, Lane};
use crate::mailbox::Inbox;
use crate::names::AgentId;
use crate::priority::Priority;
use crate::progress::ShardProgress;
use crate::retry::{History, Letter, Retries, Timed};
use crate::router::{NewMember, RouteKey, Router};
use crate::stats::ShardCounters;
use crate::subscription::{Balance, Filter, GroupId, SubscriptionId};

/// A dead letter on its way back to the bus.
pub(crate) struct Redrive<const SLOT: usize> {
    pub(crate) event: Event<SLOT>,
    /// Deliver to this subscription only; `None`: route it like a new event.
    pub(crate) subscription: Option<SubscriptionId>,
}

/// The queue of redriven dead letters a shard takes in (bounded, preallocated).
pub(crate) type RedriveQueue<const SLOT: usize> = ArrayQueue<Redrive<SLOT>>;

/// The largest batch taken from one lane at a time.
const MAX_BATCH: usize = 64;

/// What a bus tells a shard.
pub(crate) enum Control<const SLOT: usize> {
    /// A new publisher's lanes.
    Lanes {
        publisher: u32,
        consumers: Box<ConsumerSet<SLOT>>,
    },
    /// A publisher was dropped: remove its lanes once empty.
    PublisherGone { publisher: u32 },
    /// A plain subscription.
    Subscribe {
        filter: Filter,
        agent: Option<AgentId>,
        member: NewMember<SLOT>,
    },
    /// A load-balanced group's route.
    AddGroup {
        group: GroupId,
        filter: Filter,
        agent: Option<AgentId>,
        balance: Balance,
    },
    /// A member joining a group.
    Join {
        group: GroupId,
        member: NewMember<SLOT>,
    },
    /// A subscription leaving.
    Unsubscribe { id: SubscriptionId },
    /// The bus is closing: drain everything, then stop (worker mode).
    Stop,
    /// A paced redrive to run at this shard's polls (`bus/paced.rs`).
    Pace(Arc<crate::bus::Pacer<SLOT>>),
}

/// A shard's counters: written by its thread only, read by `Bus::stats`, on lines of
/// their own. The retry path gets a handle to these and nothing else of the shard.
pub(crate) type SharedCounters = Arc<CachePadded<ShardCounters>>;

/// One shard. `Send`: move it to the thread that will poll it.
pub struct Shard<const SLOT: usize = DEFAULT_SLOT> {
    index: usize,
    /// Consuming ends by priority; lanes of dropped publishers leave once empty.
    lanes: [Vec<Lane<SLOT>>; Priority::COUNT],
    /// Next lane to take from, per priority (round-robin between publishers).
    cursors: [usize; Priority::COUNT],
    /// Publishers whose lanes are to be removed when empty.
    retiring: Vec<u32>,
    router: Router<SLOT>,
    groups: HashMap<GroupId, RouteKey>,
    inbox: Inbox<SLOT>,
    counters: SharedCounters,
    /// How far this shard got through its control messages (what `unsubscribe` waits on).
    progress: Arc<ShardProgress>,
    clock: Clock,
    /// The starvation guard: see the module doc. At least 1.
    guard: u32,
    /// Events taken from higher levels since each level was last served while waiting.
    starved_for: [u32; Priority::COUNT],
    stop_requested: bool,
    /// Set by `drain_level` when it met a pending control message.
    control_pending: bool,
    retries: Retries<SLOT>,
    redrives: Arc<RedriveQueue<SLOT>>,
    /// Live analytics tables (`BusBuilder::analytics`); `None`: one branch per chunk.
    analytics: Option<Arc<crate::analytics::ShardAnalytics>>,
}

impl<const SLOT: usize> core::fmt::Debug for Shard<SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Shard")
            .field("index", &self.index)
            .field(
                "lanes",
                &self.lanes.iter().map(Vec::len).collect::<Vec<_>>(),
            )
            .field("router", &self.router)
            .finish()
    }
}

impl<const SLOT: usize> Shard<SLOT> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        index: usize,
        router: Router<SLOT>,
        inbox: Inbox<SLOT>,
        counters: SharedCounters,
        progress: Arc<ShardProgress>,
        clock: Clock,
        guard: u32,
        retries: Retries<SLOT>,
        redrives: Arc<RedriveQueue<SLOT>>,
    ) -> Self {
        Shard {
            index,
            lanes: Default::default(),
            cursors: [0; Priority::COUNT],
            retiring: Vec::new(),
            router,
            groups: HashMap::new(),
            inbox,
            counters,
            progress,
            clock,
            guard: guard.max(1),
            starved_for: [0; Priority::COUNT],
            stop_requested: false,
            control_pending: false,
            retries,
            redrives,
            analytics: None,
        }
    }

    /// Records live analytics into `tables` (see `analytics/recorder.rs`).
    pub(crate) fn with_analytics(
        mut self,
        tables: Option<Arc<crate::analytics::ShardAnalytics>>,
    ) -> Self {
        self.analytics = tables;
        self
    }

    /// This shard's index on its bus.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Dispatches up to `max` events (due retries and scheduled events, redriven dead
    /// letters, then the rings, critical first with the starvation guard) and returns how
    /// many were handled. Applies pending control messages first. Never blocks.
    pub fn poll(&mut self, max: usize) -> usize {
        // The fast path of a busy shard is the ring drain below: each stage before it is
        // skipped with one load when it has nothing to do.
        if self.inbox.has_mail() {
            self.apply_control();
        } else if !self.retiring.is_empty() {
            // A dropped publisher's lanes leave once they are empty.
            self.retire_empty_lanes();
        }
        let mut done = 0;
        if !self.retries.wheel.is_empty() {
            done += self.run_timers(self.clock.now_ns());
        }
        if !self.redrives.is_empty() {
            done += self.run_redrives(self.clock.now_ns(), max.saturating_sub(done));
        }
        while done < max {
            let waiting = self.waiting_levels();
            let Some((level, starved)) = self.pick_level(waiting) else {
                break;
            };
            // A starved level is owed one event, not a batch: then the higher levels
            // resume (a batch would invert the priorities for a while).
            let budget = if starved {
                1
            } else {
                (max - done).min(self.budget_for(level, waiting))
            };
            let taken = self.drain_level(level, budget);
            self.note_served(level, taken, waiting);
            done += taken;
            if self.control_pending {
                // A subscription (or unsubscription) made before an event now in the rings
                // was published: apply it before dispatching that event.
                self.apply_control();
            } else if taken < budget && waiting == 1 << level {
                // The only waiting level gave all it held: the rings were empty a moment
                // ago, so leave rather than look again (the next poll will).
                break;
            }
        }
        if self.stop_requested && self.is_idle() {
            done += self.flush_timers_on_stop(self.clock.now_ns());
        }
        done
    }

    /// Polls until the rings and the redrive queue are empty; returns how many events
    /// were handled. Entries waiting on the timer wheel stay there (see
    /// [`Shard::pending_timers`]) unless the bus is closing, when they go to the dead
    /// letters with reason `Shutdown`.
    pub fn drain(&mut self) -> usize {
        let mut total = 0;
        loop {
            let n = self.poll(usize::MAX);
            if n == 0 {
                return total;
            }
            total += n;
        }
    }

    /// Whether the rings and the redrive queue are empty right now (the timer wheel may
    /// still hold retries and scheduled events).
    pub fn is_idle(&self) -> bool {
        self.waiting_levels() == 0 && self.redrives.is_empty()
    }

    /// Entries waiting on this shard's timer wheel: retries, scheduled events and paced
    /// redrives' next ticks.
    pub fn pending_timers(&self) -> usize {
        self.retries.wheel.len()
    }

    /// Events waiting in this shard's rings, per priority (their fill level). The rings of
    /// a publisher created since this shard's last poll are counted from its next poll on
    /// (`Bus::stats` counts them at once).
    pub fn queued(&self) -> [usize; Priority::COUNT] {
        core::array::from_fn(|p| self.lanes[p].iter().map(|l| l.consumer.slots()).sum())
    }

    /// Tells the bus this shard has drained and stopped.
    pub(crate) fn mark_stopped(&self) {
        self.progress.mark_stopped();
    }

    /// Whether the bus asked this shard to stop (worker mode).
    pub(crate) fn stop_requested(&self) -> bool {
        self.stop_requested
    }

    /// Bit `p` set: level `p` has an event waiting.
    ///
    /// Reads each lane's cached count first: the producer's index (a cache line the
    /// producing core keeps writing) is read only for lanes that look empty.
    fn waiting_levels(&self) -> u8 {
        let mut bits = 0;
        for (p, lanes) in self.lanes.iter().enumerate() {
            if lanes
                .iter()
                .any(|l| l.consumer.cached_slots() > 0 || !l.consumer.is_empty())
            {
                bits |= 1 << p;
            }
        }
        bits
    }

    /// The level to serve: the lowest waiting level that has starved for `guard` events,
    /// else the highest waiting level.
    fn pick_level(&self, waiting: u8) -> Option<(usize, bool)> {
        if waiting == 0 {
            return None;
        }
        let starved = (1..Priority::COUNT)
            .rev()
            .find(|&p| waiting & (1 << p) != 0 && self.starved_for[p] >= self.guard);
        Some(match starved {
            Some(level) => (level, true),
            None => (waiting.trailing_zeros() as usize, false),
        })
    }

    /// How many events to take from `level` before looking again: no more than the room
    /// left before a waiting lower level is owed its turn.
    fn budget_for(&self, level: usize, waiting: u8) -> usize {
        let owed = (level + 1..Priority::COUNT)
            .filter(|&q| waiting & (1 << q) != 0)
            .map(|q| self.guard.saturating_sub(self.starved_for[q]).max(1))
            .min()
            .unwrap_or(u32::MAX);
        (owed as usize).min(MAX_BATCH)
    }

    fn note_served(&mut self, level: usize, taken: usize, waiting: u8) {
        self.starved_for[level] = 0;
        for q in level + 1..Priority::COUNT {
            if waiting & (1 << q) != 0 {
                self.starved_for[q] = self.starved_for[q].saturating_add(taken as u32);
            } else {
                self.starved_for[q] = 0;
            }
        }
    }

    /// Takes up to `budget` events of one level, lanes in turn, and dispatches them.
    fn drain_level(&mut self, level: usize, budget: usize) -> usize {
        let Shard {
            lanes,
            cursors,
            router,
            counters,
            retries,
            inbox,
            control_pending,
            clock,
            analytics,
            ..
        } = self;
        let now = LazyNow::new(clock);
        let lanes = &mut lanes[level];
        let priority = Priority::ALL[level];
        let counters = &**counters;
        let n = lanes.len();
        let mut taken = 0;
        for k in 0..n {
            if taken == budget {
                break;
            }
            let lane = &mut lanes[(cursors[level] + k) % n];
            let want = lane.consumer.slots().min(budget - taken);
            let Ok(chunk) = lane.consumer.read_chunk(want) else {
                continue;
            };
            // Any event in this chunk may have been published after a `subscribe` whose
            // control message is now pending (the publish happens-after the send, and we
            // acquired the event). Leave the chunk uncommitted and let `poll` apply it.
            if inbox.has_mail() {
                *control_pending = true;
                break;
            }
            let (first, second) = chunk.as_slices();
            if let Some(a) = analytics {
                a.record_chunk(priority, first, second, &now);
            }
            for event in first.iter().chain(second) {
                if event.header().is_scheduled()
                    && !take_scheduled(retries, counters, event, now.get())
                {
                    continue;
                }
                dispatch_one(router, retries, counters, event, &now);
            }
            chunk.commit_all();
            taken += want;
        }
        if n > 0 {
            cursors[level] = (cursors[level] + 1) % n;
        }
        counters.dispatched.add(priority, taken as u64);
        taken
    }

    /// Fires due timer-wheel entries: retries to their one subscription, scheduled events
    /// to every matching subscription.
    fn run_timers(&mut self, now: u64) -> usize {
        self.retries.collect_due(now);
        if self.retries.fired.is_empty() {
            return 0;
        }
        // Taken out so the entries can be settled through `self.retries`; an empty Vec
        // does not allocate, and the buffer (with its capacity) is put back below.
        let mut fired = core::mem::take(&mut self.retries.fired);
        let n = fired.len();
        let Shard {
            router,
            counters,
            retries,
            ..
        } = self;
        let counters = &**counters;
        for entry in fired.drain(..) {
            match entry {
                Timed::Scheduled { event } => {
                    if retries.schedule.fire(event.header().id()) {
                        counters.scheduled_fired.incr();
                        dispatch_one(router, retries, counters, &event, &LazyNow::known(now));
                    } else {
                        counters.scheduled_cancelled.incr();
                    }
                }
                Timed::Pace { pacer } => {
                    // A paced redrive's tick (`bus/paced.rs`): it moves what its bucket
                    // allows and says when it is due again.
                    if let Some(next) = pacer.tick(now) {
                        if let Err(pacer) = retries.pace(pacer, next, now) {
                            pacer.end(crate::bus::PaceEnd::WheelFull);
                        }
                    }
                }
                Timed::Retry {
                    event,
                    subscription,
                    attempts,
                    first_attempt_ns,
                    last_error,
                    previous_delay,
                } => {
                    counters.retries_fired.incr();
                    let history = History {
                        first_attempt_ns: Some(first_attempt_ns),
                        previous_delay,
                        last_error,
                    };
                    let found = router.deliver_to(
                        subscription,
                        &event,
                        now,
                        false,
                        |verdict, envelope, member| {
                            *member.outstanding = member.outstanding.saturating_sub(1);
                            count_delivery(counters, &event, 1);
                            retries.settle(&event, envelope, verdict, member, now, history);
                        },
                    );
                    if !found {
                        let letter = Letter {
                            reason: DeadReason::Unsubscribed,
                            attempts,
                            last_error,
                            first_attempt_ns,
                        };
                        retries.dead_letter_undelivered(&event, Some(subscription), letter, now);
                    }
                }
            }
        }
        self.retries.fired = fired;
        n
    }

    /// Delivers redriven dead letters (at most `max`).
    fn run_redrives(&mut self, now: u64, max: usize) -> usize {
        let Shard {
            router,
            counters,
            retries,
            redrives,
            ..
        } = self;
        let counters = &**counters;
        let mut n = 0;
        while n < max {
            let Some(Redrive {
                mut event,
                subscription,
            }) = redrives.pop()
            else {
                break;
            };
            n += 1;
            counters.redriven.incr();
            event.set_attempts(0);
            match subscription {
                None => dispatch_one(router, retries, counters, &event, &LazyNow::known(now)),
                Some(id) => {
                    let found =
                        router.deliver_to(id, &event, now, true, |verdict, envelope, member| {
                            count_delivery(counters, &event, 1);
                            retries.settle(
                                &event,
                                envelope,
                                verdict,
                                member,
                                now,
                                History::default(),
                            );
                        });
                    if !found {
                        let letter = Letter {
                            reason: DeadReason::Unsubscribed,
                            attempts: 0,
                            last_error: None,
                            first_attempt_ns: now,
                        };
                        retries.dead_letter_undelivered(&event, Some(id), letter, now);
                    }
                }
            }
        }
        n
    }

    /// On close, with the rings drained: moves what still waits on the wheel to the dead
    /// letters (`Shutdown`), so nothing accepted is lost. (Due entries already fired in
    /// this poll's `run_timers`.)
    fn flush_timers_on_stop(&mut self, now: u64) -> usize {
        if self.retries.wheel.is_empty() {
            return 0;
        }
        let Shard {
            counters,
            retries,
            router,
            ..
        } = self;
        let counters = &**counters;
        let left = retries.take_all();
        let n = left.len();
        for entry in left {
            let (event, subscription, attempts, first, last_error) = match entry {
                Timed::Pace { pacer } => {
                    pacer.end(crate::bus::PaceEnd::Closed);
                    continue;
                }
                Timed::Scheduled { event } => {
                    if !retries.schedule.cancel(event.header().id()) {
                        counters.scheduled_cancelled.incr();
                        continue;
                    }
                    (event, None, 0, now, None)
                }
                Timed::Retry {
                    event,
                    subscription,
                    attempts,
                    first_attempt_ns,
                    last_error,
                    ..
                } => (
                    event,
                    Some(subscription),
                    attempts,
                    first_attempt_ns,
                    last_error,
                ),
            };
            if let Some(c) = subscription.and_then(|id| router.counters(id)) {
                c.dead_lettered.incr();
            }
            let letter = Letter {
                reason: DeadReason::Shutdown,
                attempts,
                last_error,
                first_attempt_ns: first,
            };
            retries.dead_letter_undelivered(&event, subscription, letter, now);
        }
        n
    }

    /// Applies every pending control message.
    fn apply_control(&mut self) {
        self.control_pending = false;
        let mut applied = 0u64;
        while let Some(msg) = self.inbox.take() {
            self.apply(msg);
            applied += 1;
        }
        if !self.retiring.is_empty() {
            self.retire_empty_lanes();
        }
        self.progress.note_applied(applied);
    }

    fn apply(&mut self, msg: Control<SLOT>) {
        match msg {
            Control::Lanes {
                publisher,
                consumers,
            } => {
                for (p, consumer) in (*consumers).into_iter().enumerate() {
                    self.lanes[p].push(Lane {
                        publisher,
                        consumer,
                    });
                }
            }
            Control::PublisherGone { publisher } => self.retiring.push(publisher),
            Control::Subscribe {
                filter,
                agent,
                member,
            } => {
                let key = self.router.add_route(filter, agent, None);
                self.router.join(key, member);
            }
            Control::AddGroup {
                group,
                filter,
                agent,
                balance,
            } => {
                let key = self.router.add_route(filter, agent, Some(balance));
                self.groups.insert(group, key);
            }
            Control::Join { group, member } => {
                if let Some(&key) = self.groups.get(&group) {
                    self.router.join(key, member);
                }
            }
            Control::Unsubscribe { id } => {
                // The bus checked the id exists; a failure here means it never reached us.
                let _ = self.router.unsubscribe(id);
            }
            Control::Stop => {
                // Paced redrives on the wheel end at their next tick (the bus is
                // closed) or when the wheel is flushed at the end of the drain.
                self.stop_requested = true;
            }
            Control::Pace(pacer) => {
                if self.stop_requested {
                    pacer.end(crate::bus::PaceEnd::Closed);
                } else {
                    let now = self.clock.now_ns();
                    if let Err(pacer) = self.retries.pace(pacer, now, now) {
                        pacer.end(crate::bus::PaceEnd::WheelFull);
                    }
                }
            }
        }
    }

    fn retire_empty_lanes(&mut self) {
        // Runs only after a publisher was dropped: control plane, not the hot path.
        let retiring = &self.retiring;
        for lanes in &mut self.lanes {
            lanes.retain(|l| !(retiring.contains(&l.publisher) && l.consumer.is_empty()));
        }
        let lanes = &self.lanes;
        self.retiring
            .retain(|p| lanes.iter().any(|ls| ls.iter().any(|l| l.publisher == *p)));
        self.cursors = [0; Priority::COUNT];
    }
}

/// Routes one event to every matching subscription and settles each outcome.
fn dispatch_one<const SLOT: usize>(
    router: &mut Router<SLOT>,
    retries: &mut Retries<SLOT>,
    counters: &ShardCounters,
    event: &Event<SLOT>,
    now: &LazyNow<'_>,
) {
    let dispatched = router.dispatch(event, now, |verdict, envelope, member| {
        retries.settle(
            event,
            envelope,
            verdict,
            member,
            now.get(),
            History::default(),
        );
    });
    if dispatched.deliveries == 0 {
        counters.unmatched.incr(event.header().priority());
    } else {
        count_delivery(counters, event, dispatched.deliveries);
    }
}

/// Counts handler deliveries of `event`.
fn count_delivery<const SLOT: usize>(counters: &ShardCounters, event: &Event<SLOT>, n: u32) {
    counters
        .delivered
        .add(event.header().priority(), u64::from(n));
}

/// A scheduled event off a ring: waits on the wheel if not yet due (false: do not dispatch
/// now), else checks it was not cancelled (true: dispatch).
fn take_scheduled<const SLOT: usize>(
    retries: &mut Retries<SLOT>,
    counters: &ShardCounters,
    event: &Event<SLOT>,
    now: u64,
) -> bool {
    let due = event.header().timestamp_ns();
    if due > now {
        if let Err(event) = retries.schedule(event.clone(), due, now) {
            // Wheel full: the explicit policy is a dead letter, so nothing vanishes.
            if retries.schedule.cancel(event.header().id()) {
                let letter = Letter {
                    reason: DeadReason::RetryCapacity,
                    attempts: 0,
                    last_error: None,
                    first_attempt_ns: now,
                };
                retries.dead_letter_undelivered(&event, None, letter, now);
            } else {
                // Cancelled (by the user, or by another shard whose wheel was full):
                // dropped here rather than when it would have fired, counted the same.
                counters.scheduled_cancelled.incr();
            }
        }
        return false;
    }
    if retries.schedule.fire(event.header().id()) {
        counters.scheduled_fired.incr();
        true
    } else {
        counters.scheduled_cancelled.incr();
        false
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use crate::{Bus, Event, EventType, Filter, ManualClock, Outcome};

    /// Regression (found while writing the `bus_ops` fuzz model): a dropped publisher's
    /// `PublisherGone` was counted in the shard's `applied` but never in the bus's `sent`,
    /// so `applied` ran ahead and a worker-mode `unsubscribe` could return before its shard
    /// applied the removal (and the handler could still be called after it returned).
    #[test]
    fn unsubscribe_waits_for_the_shard_after_a_publisher_was_dropped() {
        let bus = Bus::builder().pinned(false).build().unwrap();
        let agent = bus.register_agent("a").unwrap();
        drop(bus.publisher(agent).unwrap());
        let mut publisher = bus.publisher(agent).unwrap();
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let id = bus
            .subscribe(Filter::any(), move |_| {
                let _ = entered_tx.send(());
                let _ = release_rx.recv();
                Outcome::Done
            })
            .unwrap();
        publisher
            .try_publish(Event::new(EventType::AGENT_TASK))
            .unwrap();
        // The worker is now inside a handler: it cannot apply the unsubscribe until released.
        entered.recv_timeout(Duration::from_secs(10)).unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| bus.unsubscribe(id));
            std::thread::sleep(Duration::from_millis(200));
            assert!(
                !waiter.is_finished(),
                "unsubscribe returned before the shard applied it"
            );
            release.send(()).unwrap();
            assert_eq!(waiter.join().unwrap(), Ok(()));
        });
    }

    /// Regression (found by the `bus_ops` fuzz target): a scheduled event that was
    /// cancelled and then met a full timer wheel when its shard took it off the ring was
    /// dropped without being counted in `scheduled_cancelled` (when the wheel had room,
    /// the same event was counted when it came due).
    #[test]
    fn a_cancelled_scheduled_event_meeting_a_full_wheel_is_counted_as_cancelled() {
        let clock = ManualClock::new();
        let (bus, mut shards) = Bus::builder()
            .manual_clock(clock.clone())
            .timer_capacity(1)
            .build_polled()
            .unwrap();
        let agent = bus.register_agent("a").unwrap();
        bus.subscribe(Filter::any(), |_| Outcome::Done).unwrap();
        let mut publisher = bus.publisher(agent).unwrap();
        let after = Duration::from_millis(10);
        publisher
            .try_publish_after(Event::new(EventType::AGENT_TASK), after)
            .unwrap();
        shards[0].poll(16);
        assert_eq!(shards[0].pending_timers(), 1);
        let (_, token) = publisher
            .try_publish_after(Event::new(EventType::AGENT_TASK), after)
            .unwrap();
        assert!(bus.cancel_scheduled(token));
        shards[0].poll(16);
        assert_eq!(bus.stats().shards[0].scheduled_cancelled, 1);
        assert_eq!(bus.stats().shards[0].dead_lettered, 0);
    }
}
