//! The bus: names, subscriptions and shards, and the handles to them. Everything here is
//! control plane (it may lock and allocate); the hot path is in `publisher` and `shard`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};

use crate::config::{BusBuilder, Config, RunMode};
use crate::dead_letters::{DeadLetter, DeadLetterHook, DeadLetters};
use crate::error::BusError;
use crate::event::DEFAULT_SLOT;
use crate::lanes::lane_set;
use crate::mailbox::Mailbox;
use crate::names::{AgentId, EventType, MetaKey, Names};
use crate::outcome::Outcome;
use crate::priority::Priority;
use crate::progress::ShardProgress;
use crate::publisher::{Publisher, MAX_PUBLISHERS};
use crate::retry::Retries;
use crate::router::{NewMember, Router};
use crate::schedule::{Schedule, ScheduleToken};
use crate::shard::{Control, Redrive, RedriveQueue, Shard, SharedCounters};
use crate::shared::Shared;
use crate::stats::{
    BusStats, PublisherCounters, ShardStats, SubscriptionCounters, SubscriptionStats,
};
use crate::stream::{EventStream, StreamPolicy};
use crate::subscription::{Balance, BoxedHandler, Delivery, GroupId, Subscription, SubscriptionId};
use crate::targets::{Footprint, TargetCounts};
use crate::transform::{Emitter, Stage, Transform};
use crate::wait::Waiter;

mod analytics;
#[cfg(feature = "journal")]
mod durable;
mod paced;
#[cfg(feature = "journal")]
mod replay;
mod shield;
mod window;
pub(crate) use paced::Pacer;
pub use paced::{PaceEnd, PacedRedrive, MAX_PER_TICK};
#[cfg(feature = "journal")]
pub use replay::{ReplayError, ReplayReport, ReplayTarget, Replayer};
pub use shield::{ShieldStats, SHIELD_AGENT};
pub(crate) use window::TICK_TYPE;
pub use window::{Window, WINDOW_AGENT, WINDOW_RESULT_TYPE};

/// Control-plane bookkeeping, under one lock.
#[derive(Default)]
pub(crate) struct Plane {
    names: Names,
    subscriptions: HashMap<SubscriptionId, SubRecord>,
    groups: HashMap<String, GroupId>,
    group_records: Vec<GroupRecord>,
    counts: TargetCounts,
    publishers: Vec<Arc<PublisherCounters>>,
    next_subscription: u64,
    next_shard: usize,
    /// Live wildcard type sets, told of each type registered (`filter/wildcard.rs`).
    wildcards: crate::filter::wildcard::Wildcards,
}

struct SubRecord {
    footprint: Footprint,
    counters: Arc<SubscriptionCounters>,
}

struct GroupRecord {
    footprint: Footprint,
    retry: crate::backoff::RetryPolicy,
}

/// An in-process event bus. See the crate documentation for the picture and the contract.
pub struct Bus<const SLOT: usize = DEFAULT_SLOT> {
    shared: Arc<Shared<SLOT>>,
    /// Control-plane bookkeeping (names, subscriptions, groups), under one lock. In an
    /// `Arc` so a paced redrive (`bus/paced.rs`) can route letters from a shard's thread.
    plane: Arc<Mutex<Plane>>,
    /// Each shard's counters (for `stats`).
    shard_counters: Vec<SharedCounters>,
    /// Each shard's progress through its control messages (for `unsubscribe`).
    shard_progress: Vec<Arc<ShardProgress>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    worker_threads: Vec<ThreadId>,
    /// Where refused subscriptions' alerts are published from (see `bus/shield.rs`).
    alert_publisher: shield::AlertPublisher<SLOT>,
    /// Each shard's journal counters and durable watermark (`bus/durable.rs`); empty
    /// without a journal.
    #[cfg(feature = "journal")]
    journals: Vec<Arc<crate::journal::JournalShared>>,
    /// Each shard's analytics tables; empty unless built with `analytics(true)`.
    analytics: Vec<Arc<crate::analytics::ShardAnalytics>>,
}

impl<const SLOT: usize> core::fmt::Debug for Bus<SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bus")
            .field("shards", &self.shared.config.shards)
            .field("mode", &self.shared.config.mode)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Bus<DEFAULT_SLOT> {
    /// A builder for a bus with the default 256-byte slot.
    pub fn builder() -> BusBuilder<DEFAULT_SLOT> {
        BusBuilder::new()
    }
}

impl<const SLOT: usize> Bus<SLOT> {
    fn plane(&self) -> MutexGuard<'_, Plane> {
        lock_plane(&self.plane)
    }

    /// A builder for a bus with `SLOT`-byte slots.
    pub fn builder_with_slot() -> BusBuilder<SLOT> {
        BusBuilder::new()
    }

    /// Builds a bus; returns its shards in poll mode (none in worker mode: the workers
    /// own them).
    pub(crate) fn from_config(
        config: Config,
        hook: Option<DeadLetterHook<SLOT>>,
    ) -> Result<(Self, Vec<Shard<SLOT>>), BusError> {
        let n = config.shards;
        let (mailboxes, inboxes): (Vec<_>, Vec<_>) = (0..n).map(|_| Mailbox::new()).unzip();
        let shard_counters: Vec<SharedCounters> = (0..n).map(|_| Arc::default()).collect();
        let shard_progress: Vec<Arc<ShardProgress>> = (0..n).map(|_| Arc::default()).collect();
        let analytics: Vec<Arc<crate::analytics::ShardAnalytics>> = (0..n)
            .filter(|_| config.analytics)
            .map(|_| Arc::default())
            .collect();
        let names = Names::new();
        let oom = |what| move |_| BusError::OutOfMemory { what };
        let dead_letters = Arc::new(
            DeadLetters::try_new(config.dead_letter_capacity, config.dead_letter_policy, hook)
                .map_err(oom("dead-letter ring"))?,
        );
        let schedule = Arc::new(
            Schedule::try_with_capacity(config.timer_capacity).map_err(oom("schedule table"))?,
        );
        let redrives: Vec<Arc<RedriveQueue<SLOT>>> = (0..n)
            .map(|_| Arc::new(RedriveQueue::new(config.dead_letter_capacity)))
            .collect();
        let shared = Arc::new(Shared::new(
            config,
            names.agent_count(),
            names.event_type_count(),
            mailboxes,
            Arc::clone(&dead_letters),
            Arc::clone(&schedule),
            redrives.clone(),
        ));
        let shards: Vec<Shard<SLOT>> = inboxes
            .into_iter()
            .enumerate()
            .map(|(i, inbox)| {
                let c = &shared.config;
                let retries = Retries::try_new(
                    c,
                    Arc::clone(&dead_letters),
                    Arc::clone(&schedule),
                    i,
                    Arc::clone(&shard_counters[i]),
                    shared.clock.now_ns(),
                )
                .map_err(oom("timer wheel"))?;
                Ok(Shard::new(
                    i,
                    Router::new().with_default_retry(c.retry),
                    inbox,
                    Arc::clone(&shard_counters[i]),
                    Arc::clone(&shard_progress[i]),
                    shared.clock.clone(),
                    c.starvation_guard,
                    retries,
                    Arc::clone(&redrives[i]),
                )
                .with_analytics(analytics.get(i).cloned()))
            })
            .collect::<Result<_, BusError>>()?;
        #[cfg(feature = "journal")]
        let (shards, journals) = durable::open_journals(&shared.config, shards)?;
        let mut bus = Bus {
            shared,
            plane: Arc::new(Mutex::new(Plane {
                names,
                ..Plane::default()
            })),
            shard_counters,
            shard_progress,
            workers: Mutex::new(Vec::new()),
            worker_threads: Vec::new(),
            alert_publisher: Mutex::new(None),
            #[cfg(feature = "journal")]
            journals,
            analytics,
        };
        match bus.shared.config.mode {
            RunMode::Poll => Ok((bus, shards)),
            RunMode::Workers { pin } => {
                bus.spawn_workers(shards, pin)?;
                Ok((bus, Vec::new()))
            }
        }
    }

    fn spawn_workers(&mut self, shards: Vec<Shard<SLOT>>, pin: bool) -> Result<(), BusError> {
        let cores = if pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let wait = self.shared.config.wait;
        let mut handles = Vec::new();
        let shared = Arc::clone(&self.shared);
        for (i, mut shard) in shards.into_iter().enumerate() {
            let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
            let counters = Arc::clone(&self.shard_counters[i]);
            let shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("dreamnet-shard-{i}"))
                .spawn(move || {
                    if pin {
                        let pinned = core.is_some_and(core_affinity::set_for_current);
                        if !pinned {
                            counters.pin_failed.incr();
                        }
                    }
                    let wakeup = &shared.wakeups[i];
                    wakeup.register();
                    shared.mailboxes[i].set_worker();
                    run_worker(&mut shard, wait, wakeup);
                })
                .map_err(|e| BusError::Spawn(e.to_string()))?;
            self.worker_threads.push(handle.thread().id());
            handles.push(handle);
        }
        *self.workers.get_mut().unwrap_or_else(|p| p.into_inner()) = handles;
        Ok(())
    }

    /// The configuration the bus was built with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The bus clock, in nanoseconds (what timestamps and deadlines are measured in).
    pub fn now_ns(&self) -> u64 {
        self.shared.clock.now_ns()
    }

    /// Interns an agent name (idempotent).
    pub fn register_agent(&self, name: &str) -> Result<AgentId, BusError> {
        let mut plane = self.plane();
        let id = plane.names.intern_agent(name)?;
        self.shared.set_agent_count(plane.names.agent_count());
        Ok(id)
    }

    /// Interns a custom event type (idempotent; a built-in name returns the built-in type).
    pub fn register_event_type(&self, name: &str) -> Result<EventType, BusError> {
        let mut plane = self.plane();
        let ty = plane.names.intern_event_type(name)?;
        self.shared.set_type_count(plane.names.event_type_count());
        plane.wildcards.registered(ty, name);
        Ok(ty)
    }

    /// Runs `f` with the names and wildcard sets, under the control-plane lock (filters
    /// resolve their names here, once, when they are made).
    pub(crate) fn with_filter_registry<R>(
        &self,
        f: impl FnOnce(&mut crate::filter::expr::Registry<'_>) -> R,
    ) -> R {
        let mut plane = self.plane();
        let Plane {
            names, wildcards, ..
        } = &mut *plane;
        f(&mut crate::filter::expr::Registry { names, wildcards })
    }

    /// Interns a metadata key (idempotent).
    pub fn register_meta_key(&self, name: &str) -> Result<MetaKey, BusError> {
        Ok(self.plane().names.intern_meta_key(name)?)
    }

    /// The id of an agent registered before.
    pub fn agent(&self, name: &str) -> Option<AgentId> {
        self.plane().names.agent(name)
    }

    /// The event type registered under `name`.
    pub fn event_type(&self, name: &str) -> Option<EventType> {
        self.plane().names.event_type(name)
    }

    /// The name of an event type.
    pub fn event_type_name(&self, ty: EventType) -> Option<String> {
        self.plane().names.event_type_name(ty).map(str::to_owned)
    }

    /// The name of an agent.
    pub fn agent_name(&self, agent: AgentId) -> Option<String> {
        self.plane().names.agent_name(agent).map(str::to_owned)
    }

    /// The name of a metadata key (the NATS bridge carries metadata across by name).
    pub fn meta_key_name(&self, key: MetaKey) -> Option<String> {
        self.plane().names.meta_key_name(key).map(str::to_owned)
    }

    /// A publisher bound to `agent`: every event it publishes carries `agent` as source.
    /// One per producing thread. Allocates its rings (4 per shard) here, not later.
    ///
    /// ```
    /// use dreamnet_bus::{Bus, Draft, Event, EventType, Filter, Outcome, Priority};
    ///
    /// let (bus, mut shards) = Bus::builder().build_polled()?;
    /// let lucid = bus.register_agent("dreamnet-lucid")?;
    /// bus.subscribe(Filter::any(), |d| {
    ///     assert_eq!(d.payload::<u32>().map(|v| v.to_native()), Ok(7));
    ///     Outcome::Done
    /// })?;
    /// let mut publisher = bus.publisher(lucid)?;
    /// // A built event, copied into the ring:
    /// let event = Event::new(EventType::AGENT_TASK).with_payload(&7u32)?;
    /// let receipt = publisher.try_publish(event)?;
    /// assert_eq!(receipt.shards, 1);
    /// // Or written in place, straight into the ring's slot:
    /// let draft = Draft::new(EventType::AGENT_TASK).with_priority(Priority::High);
    /// publisher.try_publish_with(draft, &7u32)?;
    /// // Or a batch: one claim, one commit, one clock read.
    /// let sent = publisher.try_publish_batch_with(draft, &[7u32, 7, 7])?;
    /// assert_eq!(sent.count, 3);
    /// assert_eq!(shards[0].poll(64), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publisher(&self, agent: AgentId) -> Result<Publisher<SLOT>, BusError> {
        if self.is_closed() {
            return Err(BusError::Closed);
        }
        let mut plane = self.plane();
        if agent.raw() >= plane.names.agent_count() {
            return Err(BusError::UnknownAgent(agent.raw()));
        }
        let index = plane.publishers.len();
        if index >= MAX_PUBLISHERS {
            return Err(BusError::TooManyPublishers {
                max: MAX_PUBLISHERS,
            });
        }
        check_publisher_budget::<SLOT>(&self.shared.config, &plane.publishers)?;
        self.shared.shield.prepare(agent);
        let n = self.shared.config.shards;
        let counters = Arc::new(PublisherCounters::new(n));
        plane.publishers.push(Arc::clone(&counters));
        let mut producers = Vec::with_capacity(n);
        for shard in 0..n {
            let (p, c) = lane_set::<SLOT>(self.shared.config.ring_capacity);
            producers.push(p);
            self.shared.mailboxes[shard].post(Control::Lanes {
                publisher: index as u32,
                consumers: Box::new(c),
            });
        }
        drop(plane);
        Ok(Publisher::new(
            agent,
            index as u32,
            producers.into_boxed_slice(),
            Arc::clone(&self.shared),
            counters,
            self.shared.intake.register(),
        ))
    }

    /// Subscribes `handler` to what `subscription` passes: a [`Filter`](crate::Filter) (broadcasts that
    /// pass it), or a [`Subscription`] for direct routing to an agent, a chosen shard or a
    /// retry policy of its own. Takes effect while traffic flows: events published after
    /// this returns reach the handler.
    ///
    /// ```
    /// use dreamnet_bus::{Bus, EventType, Filter, Outcome, Subscription};
    ///
    /// let bus = Bus::builder().build()?;
    /// let helper = bus.register_agent("helper")?;
    /// // Every broadcast of one type:
    /// bus.subscribe(Filter::of_type(EventType::AGENT_TASK), |_| Outcome::Done)?;
    /// // Direct events addressed to `helper` (and broadcasts that pass the filter):
    /// bus.subscribe(Subscription::new(Filter::any()).for_agent(helper), |d| {
    ///     println!("{} for helper", d.header().id());
    ///     Outcome::Done
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe<F>(
        &self,
        subscription: impl Into<Subscription>,
        handler: F,
    ) -> Result<SubscriptionId, BusError>
    where
        F: FnMut(&Delivery<'_, SLOT>) -> Outcome + Send + 'static,
    {
        self.subscribe_placed(subscription.into(), |_| Box::new(handler))
    }

    /// `subscribe`, with the handler made once the shard it runs on is known.
    fn subscribe_placed(
        &self,
        subscription: Subscription,
        make: impl FnOnce(usize) -> BoxedHandler<SLOT>,
    ) -> Result<SubscriptionId, BusError> {
        if self.is_closed() {
            return Err(BusError::Closed);
        }
        self.police_subscription(&subscription)?;
        let mut plane = self.plane();
        let shard = self.place(&mut plane, &subscription)?;
        let footprint = footprint(&subscription, shard);
        let id = SubscriptionId(plane.next_subscription);
        plane.next_subscription += 1;
        let counters = Arc::new(SubscriptionCounters::default());
        let member = NewMember {
            id,
            handler: make(shard),
            retry: subscription.retry.unwrap_or(self.shared.config.retry),
            counters: Arc::clone(&counters),
        };
        let message = Control::Subscribe {
            filter: subscription.filter,
            agent: subscription.agent,
            member,
        };
        self.add_member(&mut plane, id, message, footprint, counters);
        Ok(id)
    }

    /// A streaming subscription: what `subscription` passes is stored in a ring of
    /// `capacity` events that the returned [`EventStream`] pulls from (pull instead of
    /// push); `policy` says what a full ring does (see [`StreamPolicy`]). The ring is
    /// allocated here. `StreamCapacity` outside `1..=MAX_RING_CAPACITY`.
    pub fn stream(
        &self,
        subscription: impl Into<Subscription>,
        capacity: usize,
        policy: StreamPolicy,
    ) -> Result<EventStream<SLOT>, BusError> {
        let max = crate::memory::MAX_RING_CAPACITY;
        if capacity == 0 || capacity > max {
            return Err(BusError::StreamCapacity { capacity, max });
        }
        let (mut producer, consumer) =
            crate::stream::channel(capacity, policy, self.shared.config.wait).map_err(|_| {
                BusError::OutOfMemory {
                    what: "stream ring",
                }
            })?;
        let id = self.subscribe(subscription, move |d| producer.offer(d))?;
        Ok(consumer(id))
    }

    /// Registers a transform stage on what `subscription` passes: it reads each delivery
    /// and emits derived events back into the bus (see [`Stage`] and the `transform`
    /// module docs: causation, the hop limit, and why a stage never blocks its shard).
    pub fn transform<F>(
        &self,
        subscription: impl Into<Subscription>,
        stage: Stage<F, SLOT>,
    ) -> Result<Transform, BusError>
    where
        F: FnMut(&Delivery<'_, SLOT>, &mut Emitter<'_, SLOT>) -> Outcome + Send + 'static,
    {
        let (handle, prepare) = crate::transform::prepare(stage);
        let id = self.subscribe_placed(subscription.into(), |shard| {
            let counters = Arc::clone(&self.shard_counters[shard]);
            prepare(Arc::clone(&self.shared.dead_letters), counters, shard)
        })?;
        Ok(handle(id))
    }

    /// Posts a new member (a subscription, or a group's new member) to its shard, then
    /// sets its target bits and records it. The bits are set after the shard's message
    /// is queued, so a publish that sees them finds the member applied before its event
    /// is dispatched.
    fn add_member(
        &self,
        plane: &mut Plane,
        id: SubscriptionId,
        message: Control<SLOT>,
        footprint: Footprint,
        counters: Arc<SubscriptionCounters>,
    ) {
        self.shared.mailboxes[footprint.shard].post(message);
        let Plane { counts, .. } = plane;
        self.shared.targets.apply(counts, &footprint, 1);
        plane.subscriptions.insert(
            id,
            SubRecord {
                footprint,
                counters,
            },
        );
    }

    /// Creates a load-balanced group: each event that passes the subscription's filter
    /// goes to exactly one member, chosen by `balance`. Members join with [`Bus::join`];
    /// a member leaves with [`Bus::unsubscribe`].
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use dreamnet_bus::{Balance, Bus, Event, EventType, Filter, Outcome};
    ///
    /// let (bus, mut shards) = Bus::builder().build_polled()?;
    /// let workers = bus.group("workers", Filter::of_type(EventType::AGENT_TASK), Balance::RoundRobin)?;
    /// let counts: Vec<Arc<AtomicU32>> = (0..2).map(|_| Arc::default()).collect();
    /// for count in &counts {
    ///     let count = Arc::clone(count);
    ///     bus.join(workers, move |_| {
    ///         count.fetch_add(1, Ordering::Relaxed);
    ///         Outcome::Done
    ///     })?;
    /// }
    /// let mut publisher = bus.publisher(bus.register_agent("boss")?)?;
    /// for _ in 0..4 {
    ///     publisher.try_publish(Event::new(EventType::AGENT_TASK))?;
    /// }
    /// shards[0].poll(64);
    /// // Each event went to exactly one member, in turn.
    /// assert_eq!(counts.iter().map(|c| c.load(Ordering::Relaxed)).collect::<Vec<_>>(), [2, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn group(
        &self,
        name: &str,
        subscription: impl Into<Subscription>,
        balance: Balance,
    ) -> Result<GroupId, BusError> {
        let subscription = subscription.into();
        crate::names::validate_name(name)?;
        if self.is_closed() {
            return Err(BusError::Closed);
        }
        self.police_subscription(&subscription)?;
        let mut plane = self.plane();
        if plane.groups.contains_key(name) {
            return Err(BusError::GroupExists(name.to_owned()));
        }
        let shard = self.place(&mut plane, &subscription)?;
        let group = GroupId(plane.group_records.len() as u32);
        plane.group_records.push(GroupRecord {
            footprint: footprint(&subscription, shard),
            retry: subscription.retry.unwrap_or(self.shared.config.retry),
        });
        plane.groups.insert(name.to_owned(), group);
        self.shared.mailboxes[shard].post(Control::AddGroup {
            group,
            filter: subscription.filter,
            agent: subscription.agent,
            balance,
        });
        Ok(group)
    }

    /// Adds a member to a group; returns its subscription id (unsubscribe it to leave).
    pub fn join<F>(&self, group: GroupId, handler: F) -> Result<SubscriptionId, BusError>
    where
        F: FnMut(&Delivery<'_, SLOT>) -> Outcome + Send + 'static,
    {
        if self.is_closed() {
            return Err(BusError::Closed);
        }
        let mut plane = self.plane();
        let Some(record) = plane.group_records.get(group.0 as usize) else {
            return Err(BusError::UnknownGroup(group.0));
        };
        let footprint = record.footprint.clone();
        let retry = record.retry;
        let id = SubscriptionId(plane.next_subscription);
        plane.next_subscription += 1;
        let counters = Arc::new(SubscriptionCounters::default());
        let member = NewMember {
            id,
            handler: Box::new(handler),
            retry,
            counters: Arc::clone(&counters),
        };
        let message = Control::Join { group, member };
        self.add_member(&mut plane, id, message, footprint, counters);
        Ok(id)
    }

    /// Removes a subscription. Unsubscribing twice is `UnknownSubscription`.
    ///
    /// Guarantee: in worker mode this returns after the owning shard has applied the
    /// removal, so no event is delivered to the handler after it returns (unless it is
    /// called from a handler on that same shard, where it cannot wait: then the removal
    /// applies at the shard's next poll). In poll mode the removal applies at the start of
    /// the owning shard's next `poll`, before that poll dispatches anything.
    pub fn unsubscribe(&self, id: SubscriptionId) -> Result<(), BusError> {
        let mut plane = self.plane();
        let record = plane
            .subscriptions
            .remove(&id)
            .ok_or(BusError::UnknownSubscription(id))?;
        let shard = record.footprint.shard;
        let Plane { counts, .. } = &mut *plane;
        self.shared.targets.apply(counts, &record.footprint, -1);
        let ticket = self.shared.mailboxes[shard].post(Control::Unsubscribe { id });
        drop(plane);
        let on_own_worker = self
            .worker_threads
            .get(shard)
            .is_some_and(|t| *t == std::thread::current().id());
        let progress = &self.shard_progress[shard];
        if matches!(self.shared.config.mode, RunMode::Workers { .. }) && !on_own_worker {
            // A stopped shard applies nothing more: `wait_for` returns at once then.
            let mut waiter = Waiter::new(self.shared.config.wait);
            progress.wait_for(ticket, || waiter.wait());
        }
        Ok(())
    }

    /// A subscription's counts, if it is still subscribed.
    pub fn subscription_stats(&self, id: SubscriptionId) -> Option<SubscriptionStats> {
        self.plane()
            .subscriptions
            .get(&id)
            .map(|r| r.counters.snapshot())
    }

    /// Stops intake, drains what was accepted, and (worker mode) joins the workers.
    ///
    /// After `close` starts, publishes return `Closed` with the event. Every event accepted
    /// before is delivered: worker mode drains before `close` returns; in poll mode the
    /// shards drain on your next polls (`Shard::drain`). Called from a handler (on a
    /// worker), it stops intake and returns without waiting. Idempotent.
    pub fn close(&self) {
        self.shared.intake.close();
        for mailbox in &self.shared.mailboxes {
            mailbox.post(Control::Stop);
        }
        if self.worker_threads.contains(&std::thread::current().id()) {
            // Called from a handler: a worker cannot join itself. The workers drain and
            // stop on their own after `Stop`; dropping the bus later joins them.
            return;
        }
        let handles = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in handles {
            // A worker that panicked outside a handler has nothing left to join.
            let _ = handle.join();
        }
    }

    /// Whether `close` has been called.
    pub fn is_closed(&self) -> bool {
        self.shared.intake.is_closed()
    }

    /// The dead letters: inspect, drain, purge. Redrive with [`Bus::redrive`].
    pub fn dead_letters(&self) -> &DeadLetters<SLOT> {
        &self.shared.dead_letters
    }

    /// Sends up to `max` dead letters that `select` picks back to the subscription each
    /// was for (attempts reset; counted as accepted again, and in `redriven`). Letters
    /// without a subscription (`NoSubscriber`, shutdown of a scheduled event) are routed
    /// like new events. Letters whose subscription is gone stay where they are. Returns
    /// how many were sent; they are delivered at the shards' next polls.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use dreamnet_bus::{Bus, DeadReason, Event, EventType, Filter, Outcome};
    ///
    /// let (bus, mut shards) = Bus::builder().build_polled()?;
    /// let healthy = Arc::new(AtomicBool::new(false));
    /// let h = Arc::clone(&healthy);
    /// bus.subscribe(Filter::any(), move |_| {
    ///     if h.load(Ordering::Relaxed) { Outcome::Done } else { Outcome::fail(500) }
    /// })?;
    /// let mut publisher = bus.publisher(bus.register_agent("a")?)?;
    /// publisher.try_publish(Event::new(EventType::AGENT_TASK))?;
    /// shards[0].poll(64);
    /// assert_eq!(bus.dead_letters().len(), 1);
    /// // The downstream is back: send the failed letters back to their subscription.
    /// healthy.store(true, Ordering::Relaxed);
    /// let sent = bus.redrive(16, |l| matches!(l.reason, DeadReason::Failed { .. }))?;
    /// assert_eq!(sent, 1);
    /// assert_eq!(shards[0].poll(64), 1);
    /// assert!(bus.dead_letters().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn redrive(
        &self,
        max: usize,
        select: impl FnMut(&DeadLetter<SLOT>) -> bool,
    ) -> Result<usize, BusError> {
        self.redrive_inner(max, None, select)
    }

    /// Like [`Bus::redrive`], but to subscription `target` instead of the original one.
    pub fn redrive_to(
        &self,
        max: usize,
        target: SubscriptionId,
        select: impl FnMut(&DeadLetter<SLOT>) -> bool,
    ) -> Result<usize, BusError> {
        self.redrive_inner(max, Some(target), select)
    }

    fn redrive_inner(
        &self,
        max: usize,
        target: Option<SubscriptionId>,
        select: impl FnMut(&DeadLetter<SLOT>) -> bool,
    ) -> Result<usize, BusError> {
        if self.is_closed() {
            return Err(BusError::Closed);
        }
        redrive_letters(&self.shared, &self.plane, max, target, select)
    }

    /// Cancels a scheduled event. True if it had not yet fired on every shard it went to
    /// (deliveries not yet made will not be made); false if it had fired (or was never
    /// scheduled).
    pub fn cancel_scheduled(&self, token: ScheduleToken) -> bool {
        self.shared.schedule.cancel(token.0)
    }

    /// Worker mode: waits until every ring, redrive queue and timer wheel is empty and
    /// every accepted event is dispatched, or until `timeout`. True if idle.
    pub fn wait_idle(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut waiter = Waiter::new(crate::wait::WaitStrategy::default());
        loop {
            let stats = self.stats();
            let idle = stats.queued() == 0
                && stats.shards.iter().all(|s| s.timers_pending == 0)
                && self.shared.redrives.iter().all(|q| q.is_empty());
            if idle {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            waiter.wait();
        }
    }

    /// A snapshot of every counter.
    pub fn stats(&self) -> BusStats {
        let plane = self.plane();
        let n = self.shared.config.shards;
        let mut stats = BusStats::default();
        for (s, c) in self.shard_counters.iter().enumerate() {
            let mut st = ShardStats {
                dispatched: c.dispatched.snapshot(),
                delivered: c.delivered.snapshot(),
                unmatched: c.unmatched.snapshot(),
                panicked: c.panicked.get(),
                retries_scheduled: c.retries_scheduled.get(),
                retries_fired: c.retries_fired.get(),
                dead_lettered: c.dead_lettered.get(),
                dead_by_reason: core::array::from_fn(|i| c.dead_by_reason[i].get()),
                scheduled_fired: c.scheduled_fired.get(),
                redriven: c.redriven.get(),
                scheduled_cancelled: c.scheduled_cancelled.get(),
                timers_pending: c.timers_pending.get(),
                pin_failed: c.pin_failed.get() > 0,
                ..ShardStats::default()
            };
            for p in &plane.publishers {
                if let Some(ps) = p.shards.get(s) {
                    for level in Priority::ALL {
                        st.published[level.index()] += ps.enqueued.get(level);
                        st.rejected_full[level.index()] += ps.rejected_full.get(level);
                    }
                }
            }
            for level in 0..Priority::COUNT {
                st.queued[level] = st.published[level].saturating_sub(st.dispatched[level]);
            }
            debug_assert!(s < n);
            stats.shards.push(st);
        }
        for p in &plane.publishers {
            stats.published += p.published.total();
            stats.unroutable += p.unroutable.total();
            stats.rejected_full += p.rejected_full.total();
            stats.rejected_closed += p.rejected_closed.get();
            stats.rejected_invalid += p.rejected_invalid.get();
        }
        drop(plane);
        stats.dead_letters_dropped = self.shared.dead_letters.dropped();
        stats
    }

    /// Picks a subscription's shard and checks its ids.
    fn place(&self, plane: &mut Plane, s: &Subscription) -> Result<usize, BusError> {
        let shards = self.shared.config.shards;
        for t in s.filter.types() {
            if u32::from(t.raw()) >= plane.names.event_type_count() {
                return Err(BusError::UnknownEventType(t.raw()));
            }
        }
        for a in s.agent.iter().chain(s.filter.destination.iter()) {
            if a.raw() >= plane.names.agent_count() {
                return Err(BusError::UnknownAgent(a.raw()));
            }
        }
        if let Some(src) = s.filter.source {
            if src.raw() >= plane.names.agent_count() {
                return Err(BusError::UnknownAgent(src.raw()));
            }
        }
        match s.shard {
            Some(index) if index >= shards => Err(BusError::NoSuchShard { index, shards }),
            Some(index) => Ok(index),
            None => {
                let index = plane.next_shard % shards;
                plane.next_shard += 1;
                Ok(index)
            }
        }
    }
}

impl<const SLOT: usize> Drop for Bus<SLOT> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Locks the control plane. Control-plane operations finish their updates before anything
/// can panic, so the state behind a poisoned lock is consistent.
fn lock_plane(plane: &Mutex<Plane>) -> MutexGuard<'_, Plane> {
    plane.lock().unwrap_or_else(|p| p.into_inner())
}

/// Moves up to `max` dead letters that `select` picks to the redrive queues of the shards
/// they go to (see [`Bus::redrive`]); `target` redirects them all to one subscription.
/// Used by `redrive` and by paced redrives (`bus/paced.rs`, from a shard's thread).
pub(crate) fn redrive_letters<const SLOT: usize>(
    shared: &Shared<SLOT>,
    plane: &Mutex<Plane>,
    max: usize,
    target: Option<SubscriptionId>,
    mut select: impl FnMut(&DeadLetter<SLOT>) -> bool,
) -> Result<usize, BusError> {
    let plane = lock_plane(plane);
    if let Some(t) = target {
        if !plane.subscriptions.contains_key(&t) {
            return Err(BusError::UnknownSubscription(t));
        }
    }
    // Where each letter goes: its (or the target's) subscription's shard, or, for a
    // letter without one, the first shard its event routes to now.
    let shard_of = |letter: &DeadLetter<SLOT>| -> Option<(usize, Option<SubscriptionId>)> {
        match target.or(letter.subscription) {
            Some(id) => plane
                .subscriptions
                .get(&id)
                .map(|r| (r.footprint.shard, Some(id))),
            None => {
                let h = letter.event.header();
                let mask = shared.targets.for_event(h.event_type(), h.destination());
                (mask != 0).then(|| (mask.trailing_zeros() as usize, None))
            }
        }
    };
    let redrives = &shared.redrives;
    let sent = shared.dead_letters.take_where(
        max,
        |letter| select(letter) && shard_of(letter).is_some_and(|(s, _)| !redrives[s].is_full()),
        |letter| {
            if let Some((s, subscription)) = shard_of(&letter) {
                // Checked not full above, and only this function pushes to this queue,
                // under the plane lock: the push succeeds.
                let _ = redrives[s].push(Redrive {
                    event: letter.event,
                    subscription,
                });
            }
        },
    );
    Ok(sent)
}
/// Refuses a publisher whose rings would take the bus above its memory budget. A
/// publisher alive holds the second reference to its counters (the plane holds the
/// first), so those with more than one reference are the publishers alive.
fn check_publisher_budget<const SLOT: usize>(
    config: &Config,
    publishers: &[Arc<PublisherCounters>],
) -> Result<(), BusError> {
    let alive = publishers
        .iter()
        .filter(|c| Arc::strong_count(c) > 1)
        .count();
    let needed = crate::memory::MemoryFootprint::of::<SLOT>(config).with_publishers(alive + 1);
    if needed > config.memory_budget {
        return Err(BusError::MemoryBudget {
            needed,
            budget: config.memory_budget,
            alive,
        });
    }
    Ok(())
}

/// What a subscription adds to the shard masks.
fn footprint(s: &Subscription, shard: usize) -> Footprint {
    let mut destinations: Vec<AgentId> = s.agent.into_iter().collect();
    if let Some(d) = s.filter.destination {
        if !destinations.contains(&d) {
            destinations.push(d);
        }
    }
    Footprint {
        shard,
        types: s.filter.types().to_vec(),
        destinations,
    }
}

/// A worker's loop: poll, wait when idle, and after `Stop`, drain and leave.
fn run_worker<const SLOT: usize>(
    shard: &mut Shard<SLOT>,
    wait: crate::wait::WaitStrategy,
    wakeup: &crate::wakeup::Wakeup,
) {
    let mut waiter = Waiter::new(wait);
    loop {
        if shard.poll(256) > 0 {
            waiter.reset();
            wakeup.awake();
            continue;
        }
        if shard.stop_requested() {
            // Intake closed before Stop was sent, so what the rings hold now is final.
            shard.drain();
            if shard.is_idle() {
                shard.mark_stopped();
                return;
            }
            continue;
        }
        waiter.wait_or(|max| wakeup.park(max, || shard.is_idle()));
    }
}
