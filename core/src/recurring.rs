//! Recurring schedules (issue 14 §7): `Bus::every(interval, ..)` and `Bus::cron(expr,
//! ..)` publish a template event again and again, on the same timer wheel as everything
//! else.
//!
//! How: the schedule's publisher sends a tick to itself (a direct event to the
//! `system.clockwork` agent, scheduled with `try_publish_at` for the next due time). When
//! the tick fires on a shard, the schedule's handler publishes the template and schedules
//! the next tick. Firing is a clone of the template on the stack, one `try_publish` and
//! one `try_publish_at`: nothing allocates (a test with a counting allocator holds us to
//! it).
//!
//! Missed ticks (the shard stalled, or was not polled, past one or more due times):
//! [`MissedTicks::Skip`] fires once and moves on to the next due time after now
//! (counting the skipped ones); [`MissedTicks::CatchUp`] fires once per missed due time,
//! at most [`MAX_CATCH_UP`] per tick; its next tick is then already due, so the backlog
//! drains over the following ticks.
//!
//! Cron expressions (feature `cron`, the `cron` crate: `sec min hour day-of-month month
//! day-of-week [year]`, UTC) are evaluated in wall time: the bus clock counts ns since
//! the bus started, so a schedule maps it to wall time through an anchor taken when it
//! is created (`SystemTime::now()` paired with `Bus::now_ns()`; [`Recurrence::anchored`]
//! sets another, for tests).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::bus::Bus;
use crate::error::BusError;
use crate::event::Event;
use crate::names::{AgentId, EventType};
use crate::outcome::Outcome;
use crate::publisher::Publisher;
use crate::subscription::{Delivery, Filter, Subscription, SubscriptionId};

/// The agent recurring-schedule ticks are addressed to.
pub const CLOCKWORK_AGENT: &str = "system.clockwork";
/// The most due times a `CatchUp` schedule fires in one tick.
pub const MAX_CATCH_UP: u64 = 64;
/// The most missed cron occurrences a `Skip` schedule counts after one stall (its
/// `skipped` count saturates there per stall; it still moves to the next occurrence).
pub const MAX_SKIP_COUNT: u64 = 4096;

static NEXT_SCHEDULE: AtomicU64 = AtomicU64::new(1);

/// What a schedule does about due times it missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MissedTicks {
    /// Fire once for all of them, then continue at the next due time after now.
    #[default]
    Skip,
    /// Fire once for each (at most [`MAX_CATCH_UP`] per tick).
    CatchUp,
}

/// A bad recurring schedule (or a bus error while setting it up).
#[derive(Debug, thiserror::Error)]
pub enum RecurringError {
    /// The interval was zero.
    #[error("a recurring interval must be positive")]
    ZeroInterval,
    /// The interval does not fit the bus clock's u64 nanoseconds.
    #[error("recurring interval {0:?} is too long")]
    IntervalTooLong(Duration),
    /// The cron expression did not parse.
    #[error("bad cron expression {expr:?}: {reason}")]
    Cron {
        /// The expression given.
        expr: String,
        /// The parser's message.
        reason: String,
    },
    /// The cron expression has no occurrence after now.
    #[error("the cron expression has no future occurrence")]
    NoOccurrence,
    /// The first tick could not be scheduled (the publisher's ring is full, or the bus
    /// closed).
    #[error("the first tick could not be scheduled: {0}")]
    Schedule(String),
    /// Setting up the schedule's agent or subscription failed.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// When a schedule fires.
#[derive(Clone, Debug)]
pub enum Recurrence {
    /// Every `interval` on the bus clock, the first one `interval` after creation.
    Every(Duration),
    /// At the occurrences of a cron expression (feature `cron`).
    #[cfg(feature = "cron")]
    Cron(Box<CronRecurrence>),
}

/// A parsed cron expression and the anchor that maps the bus clock to wall time.
#[cfg(feature = "cron")]
#[derive(Clone, Debug)]
pub struct CronRecurrence {
    schedule: cron::Schedule,
    /// Wall time (ns since the Unix epoch) at `anchor_bus_ns`; `None`: taken at creation.
    anchor: Option<(i128, u64)>,
}

impl Recurrence {
    /// Every `interval`.
    pub fn every(interval: Duration) -> Result<Self, RecurringError> {
        let ns = u64::try_from(interval.as_nanos())
            .map_err(|_| RecurringError::IntervalTooLong(interval))?;
        if ns == 0 {
            return Err(RecurringError::ZeroInterval);
        }
        Ok(Recurrence::Every(interval))
    }

    /// At the occurrences of `expr` (`sec min hour dom month dow [year]`, UTC), e.g.
    /// `"0 */5 * * * *"`: every five minutes on the minute.
    #[cfg(feature = "cron")]
    pub fn cron(expr: &str) -> Result<Self, RecurringError> {
        use std::str::FromStr;
        let schedule = cron::Schedule::from_str(expr).map_err(|e| RecurringError::Cron {
            expr: expr.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Recurrence::Cron(Box::new(CronRecurrence {
            schedule,
            anchor: None,
        })))
    }

    /// Maps bus time `bus_ns` to wall time `wall` (a cron schedule's anchor; no effect on
    /// `Every`).
    pub fn anchored(self, wall: std::time::SystemTime, bus_ns: u64) -> Self {
        match self {
            #[cfg(feature = "cron")]
            Recurrence::Cron(mut c) => {
                c.anchor = Some((unix_ns(wall), bus_ns));
                Recurrence::Cron(c)
            }
            other => {
                let _ = (wall, bus_ns);
                other
            }
        }
    }

    /// The first due time after bus time `now` (None: a cron with no future occurrence).
    fn first_after(&self, now: u64) -> Option<u64> {
        match self {
            Recurrence::Every(d) => Some(now.saturating_add(nanos(*d))),
            #[cfg(feature = "cron")]
            Recurrence::Cron(c) => c.after(now).next(),
        }
    }

    /// What to do at a tick due at `due`, at bus time `now >= due`:
    /// `(fires, skipped, next due)`.
    fn plan(&self, due: u64, now: u64, missed: MissedTicks) -> (u64, u64, Option<u64>) {
        match self {
            Recurrence::Every(d) => {
                let iv = nanos(*d);
                let behind = (now - due) / iv;
                match missed {
                    MissedTicks::Skip => (
                        1,
                        behind,
                        Some(due.saturating_add((behind + 1).saturating_mul(iv))),
                    ),
                    MissedTicks::CatchUp => {
                        let fires = (behind + 1).min(MAX_CATCH_UP);
                        (fires, 0, Some(due.saturating_add(fires.saturating_mul(iv))))
                    }
                }
            }
            #[cfg(feature = "cron")]
            Recurrence::Cron(c) => {
                let mut later = c.after(due);
                let limit = match missed {
                    MissedTicks::Skip => MAX_SKIP_COUNT,
                    MissedTicks::CatchUp => MAX_CATCH_UP - 1,
                };
                let mut behind = 0;
                let next = loop {
                    match later.next() {
                        Some(t) if t <= now && behind < limit => behind += 1,
                        Some(t) if t <= now => {
                            break match missed {
                                // Counting stopped; the next one after now.
                                MissedTicks::Skip => c.after(now).next(),
                                // The rest at the following polls.
                                MissedTicks::CatchUp => Some(t),
                            };
                        }
                        other => break other,
                    }
                };
                match missed {
                    MissedTicks::Skip => (1, behind, next),
                    MissedTicks::CatchUp => (1 + behind, 0, next),
                }
            }
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

#[cfg(feature = "cron")]
fn unix_ns(t: std::time::SystemTime) -> i128 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

#[cfg(feature = "cron")]
impl CronRecurrence {
    /// The occurrences strictly after bus time `bus_ns`, as bus times (an occurrence
    /// before the bus started maps to 0).
    fn after(&self, bus_ns: u64) -> impl Iterator<Item = u64> + '_ {
        let (wall0, bus0) = self.anchor.unwrap_or((0, 0));
        let wall = wall0 + i128::from(bus_ns) - i128::from(bus0);
        let secs = wall.div_euclid(1_000_000_000) as i64;
        let sub = wall.rem_euclid(1_000_000_000) as u32;
        let start = chrono::DateTime::<chrono::Utc>::from_timestamp(secs, sub)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        self.schedule.after(&start).map(move |t| {
            let wall =
                i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos());
            u64::try_from(wall - wall0 + i128::from(bus0)).unwrap_or(0)
        })
    }
}

/// A running schedule's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecurringStats {
    /// Template events published.
    pub fired: u64,
    /// Template events the bus refused (ring full, policy, closed): counted, not retried.
    pub refused: u64,
    /// Due times skipped (`Skip` after a stall).
    pub skipped: u64,
    /// Ticks handled.
    pub ticks: u64,
    /// Times the next tick could not be scheduled at once (the tick is retried through
    /// the bus's retry policy until it can).
    pub tick_refused: u64,
    /// The next due time on the bus clock (0: none, the schedule has ended).
    pub next_due_ns: u64,
}

#[derive(Debug, Default)]
struct Counters {
    cancelled: AtomicBool,
    fired: AtomicU64,
    refused: AtomicU64,
    skipped: AtomicU64,
    ticks: AtomicU64,
    tick_refused: AtomicU64,
    next_due: AtomicU64,
    /// The id of the pending tick (to cancel it on the wheel).
    tick_id: AtomicU64,
}

/// A handle to a recurring schedule: its counts, and how to stop it.
#[derive(Clone, Debug)]
pub struct Recurring {
    id: u64,
    subscription: SubscriptionId,
    counters: Arc<Counters>,
}

impl Recurring {
    /// The schedule's id (the correlation id of its ticks).
    pub fn id(&self) -> u64 {
        self.id
    }
    /// Stops the schedule: no firing starts after this returns (one running on a worker
    /// at this moment completes). [`Bus::cancel_recurring`] also frees its tick and its
    /// subscription.
    pub fn cancel(&self) {
        self.counters.cancelled.store(true, Ordering::Release);
    }
    /// Whether it was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.counters.cancelled.load(Ordering::Acquire)
    }
    /// Its counts now.
    pub fn stats(&self) -> RecurringStats {
        let c = &self.counters;
        RecurringStats {
            fired: c.fired.load(Ordering::Acquire),
            refused: c.refused.load(Ordering::Acquire),
            skipped: c.skipped.load(Ordering::Acquire),
            ticks: c.ticks.load(Ordering::Acquire),
            tick_refused: c.tick_refused.load(Ordering::Acquire),
            next_due_ns: c.next_due.load(Ordering::Acquire),
        }
    }
}

/// What the tick handler owns.
struct Firing<const SLOT: usize> {
    id: u64,
    recurrence: Recurrence,
    missed: MissedTicks,
    publisher: Publisher<SLOT>,
    template: Event<SLOT>,
    tick_type: EventType,
    clockwork: AgentId,
    /// The due time of the tick last fired (a retried tick only re-arms).
    fired_due: Option<u64>,
    counters: Arc<Counters>,
}

impl<const SLOT: usize> Firing<SLOT> {
    fn on_tick(&mut self, d: &Delivery<'_, SLOT>) -> Outcome {
        let c = Arc::clone(&self.counters);
        if c.cancelled.load(Ordering::Acquire) {
            return Outcome::Done;
        }
        let due = d.header().timestamp_ns();
        let now = d.now_ns().max(due);
        let (fires, skipped, next) = self.recurrence.plan(due, now, self.missed);
        if self.fired_due != Some(due) {
            self.fired_due = Some(due);
            c.ticks.fetch_add(1, Ordering::Relaxed);
            c.skipped.fetch_add(skipped, Ordering::Relaxed);
            for _ in 0..fires {
                match self.publisher.try_publish(self.template.clone()) {
                    Ok(_) => c.fired.fetch_add(1, Ordering::Relaxed),
                    Err(_) => c.refused.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
        match next {
            Some(at) => match self.arm(at) {
                Ok(()) => Outcome::Done,
                Err(()) => {
                    c.tick_refused.fetch_add(1, Ordering::Relaxed);
                    // Delivered again after a backoff: then it only schedules the next.
                    Outcome::retry(1)
                }
            },
            None => {
                c.next_due.store(0, Ordering::Release);
                Outcome::Done
            }
        }
    }

    fn arm(&mut self, at: u64) -> Result<(), ()> {
        // Critical: a ring of its own on this publisher, not behind the template events.
        let tick = Event::new(self.tick_type)
            .to(self.clockwork)
            .with_priority(crate::priority::Priority::Critical)
            .with_correlation_id(self.id);
        let (_, token) = self.publisher.try_publish_at(tick, at).map_err(|_| ())?;
        self.counters
            .tick_id
            .store(token.event_id(), Ordering::Release);
        self.counters.next_due.store(at, Ordering::Release);
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The handler's state is consistent between statements that could panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<const SLOT: usize> Bus<SLOT> {
    /// Publishes `template` through `publisher` every `interval` on the bus clock (the
    /// first `interval` from now), on the timer wheel; see [`Bus::recurring`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use dreamnet_bus::recurring::MissedTicks;
    /// use dreamnet_bus::{Bus, Event, EventType, Filter, ManualClock, Outcome};
    ///
    /// let clock = ManualClock::new();
    /// let (bus, mut shards) = Bus::builder().manual_clock(clock.clone()).build_polled()?;
    /// bus.subscribe(Filter::of_type(EventType::AGENT_STATUS), |_| Outcome::Done)?;
    /// let heartbeat = bus.publisher(bus.register_agent("lucid")?)?;
    /// let every = bus.every(Duration::from_secs(1), heartbeat,
    ///                       Event::new(EventType::AGENT_STATUS), MissedTicks::Skip)?;
    /// shards[0].poll(64);
    /// for _ in 0..3 {
    ///     clock.advance(Duration::from_secs(1));
    ///     shards[0].poll(64);
    /// }
    /// assert_eq!(every.stats().fired, 3);
    /// bus.cancel_recurring(&every);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn every(
        &self,
        interval: Duration,
        publisher: Publisher<SLOT>,
        template: Event<SLOT>,
        missed: MissedTicks,
    ) -> Result<Recurring, RecurringError> {
        self.recurring(Recurrence::every(interval)?, publisher, template, missed)
    }

    /// Publishes `template` through `publisher` at each occurrence of cron expression
    /// `expr` (UTC; see [`Recurrence::cron`]); see [`Bus::recurring`].
    #[cfg(feature = "cron")]
    pub fn cron(
        &self,
        expr: &str,
        publisher: Publisher<SLOT>,
        template: Event<SLOT>,
        missed: MissedTicks,
    ) -> Result<Recurring, RecurringError> {
        self.recurring(Recurrence::cron(expr)?, publisher, template, missed)
    }

    /// Publishes `template` through `publisher` (it becomes the schedule's: events carry
    /// its agent as source) whenever `recurrence` comes due, handling missed due times
    /// as `missed` says. The schedule's ticks go to [`CLOCKWORK_AGENT`] on one shard
    /// (shards in turn); in poll mode, poll that shard. Stop it with
    /// [`Bus::cancel_recurring`] (or [`Recurring::cancel`]); it also ends when the bus
    /// closes. Setup allocates (a subscription); firing allocates nothing.
    pub fn recurring(
        &self,
        recurrence: Recurrence,
        publisher: Publisher<SLOT>,
        template: Event<SLOT>,
        missed: MissedTicks,
    ) -> Result<Recurring, RecurringError> {
        #[allow(unused_mut)]
        let mut recurrence = recurrence;
        #[cfg(feature = "cron")]
        if let Recurrence::Cron(c) = &mut recurrence {
            if c.anchor.is_none() {
                c.anchor = Some((unix_ns(std::time::SystemTime::now()), self.now_ns()));
            }
        }
        let first = recurrence
            .first_after(self.now_ns())
            .ok_or(RecurringError::NoOccurrence)?;
        let clockwork = self.register_agent(CLOCKWORK_AGENT)?;
        let tick_type = self.register_event_type(crate::bus::TICK_TYPE)?;
        let id = NEXT_SCHEDULE.fetch_add(1, Ordering::Relaxed);
        let counters = Arc::new(Counters::default());
        let firing = Arc::new(Mutex::new(Firing {
            id,
            recurrence,
            missed,
            publisher,
            template,
            tick_type,
            clockwork,
            fired_due: None,
            counters: Arc::clone(&counters),
        }));
        let f = Arc::clone(&firing);
        let subscription = self.subscribe(
            Subscription::new(
                Filter::of_type(tick_type).matching(move |h| h.correlation_id() == id),
            )
            .for_agent(clockwork),
            move |d| lock(&f).on_tick(d),
        )?;
        if let Err(()) = lock(&firing).arm(first) {
            let _ = self.unsubscribe(subscription);
            return Err(RecurringError::Schedule(
                "the publisher's ring is full, the bus is closed, or the first due time is \
                 beyond the schedule horizon"
                    .into(),
            ));
        }
        Ok(Recurring {
            id,
            subscription,
            counters,
        })
    }

    /// Stops a recurring schedule: cancels it, takes its pending tick off the timer
    /// wheels and unsubscribes it. True if it was running.
    pub fn cancel_recurring(&self, recurring: &Recurring) -> bool {
        let was = !recurring.counters.cancelled.swap(true, Ordering::AcqRel);
        let tick = recurring.counters.tick_id.load(Ordering::Acquire);
        self.cancel_scheduled(crate::schedule::ScheduleToken(tick));
        let _ = self.unsubscribe(recurring.subscription);
        recurring.counters.next_due.store(0, Ordering::Release);
        was
    }
}
