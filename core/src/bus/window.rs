//! `Bus::window`: an aggregation window wired into the bus (the semantics are in
//! `window/`). Two subscriptions on one shard share one operator: the user's (events to
//! aggregate) and the window's own tick subscription (its timer). Both run on that
//! shard's thread, so the lock between them is never contended; it is there for `stats`
//! and `stop_window` from other threads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::bus::Bus;
use crate::dead_letters::{DeadLetter, DeadLetters, DeadReason};
use crate::event::{Event, DEFAULT_SLOT};
use crate::names::{AgentId, EventType};
use crate::outcome::Outcome;
use crate::priority::Priority;
use crate::publisher::Publisher;
use crate::subscription::{Delivery, Filter, Subscription, SubscriptionId};
use crate::window::{
    KeyBy, Observed, ValueFrom, WindowError, WindowResult, WindowSpec, WindowState, WindowStats,
};

/// The agent windows publish their results and ticks as.
pub const WINDOW_AGENT: &str = "system.window";
/// The event type of window and recurring-schedule ticks (direct, never broadcast).
pub(crate) const TICK_TYPE: &str = "system.tick";
/// The default output type of window results.
pub const WINDOW_RESULT_TYPE: &str = "system.window";

/// Window ids: the correlation id of a window's ticks and results.
static NEXT_WINDOW: AtomicU64 = AtomicU64::new(1);

/// A running window: its counts, and what to stop it with ([`Bus::stop_window`]).
#[derive(Clone)]
pub struct Window<const SLOT: usize = DEFAULT_SLOT> {
    id: u64,
    data: SubscriptionId,
    tick: SubscriptionId,
    output: EventType,
    operator: Arc<Mutex<Operator<SLOT>>>,
}

impl<const SLOT: usize> core::fmt::Debug for Window<SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Window")
            .field("id", &self.id)
            .field("data", &self.data)
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

impl<const SLOT: usize> Window<SLOT> {
    /// The window's id: the correlation id of its results.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// The subscription that feeds it.
    pub fn subscription(&self) -> SubscriptionId {
        self.data
    }
    /// The event type its results are published as.
    pub fn output(&self) -> EventType {
        self.output
    }
    /// Its counts now (see [`WindowStats::conserved`]). Takes the window's lock, which its
    /// handlers hold per event: for occasional reads, not a spin loop.
    pub fn stats(&self) -> WindowStats {
        lock(&self.operator).state.stats()
    }
}

/// The window's state and everything its handlers need.
pub(crate) struct Operator<const SLOT: usize> {
    id: u64,
    state: WindowState,
    publisher: Publisher<SLOT>,
    key_by: KeyBy,
    value: ValueFrom<SLOT>,
    output: EventType,
    agent: AgentId,
    tick_type: EventType,
    /// The due time of the earliest tick known to be on the wheel.
    tick_at: Option<u64>,
    /// The id of the last tick scheduled (`stop_window` cancels it).
    tick_id: u64,
    dead: Arc<DeadLetters<SLOT>>,
    shard: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the state consistent between statements that could
    // panic (a user accessor runs before any state changes).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<const SLOT: usize> Operator<SLOT> {
    /// One event from the data subscription.
    fn ingest(&mut self, d: &Delivery<'_, SLOT>) -> Outcome {
        let h = d.header();
        if h.source() == self.agent && h.correlation_id() == self.id {
            // Its own result (a subscription that also matches the output type).
            return Outcome::Done;
        }
        let key = match self.key_by {
            KeyBy::Source => Some(u64::from(h.source().raw())),
            KeyBy::Type => Some(u64::from(h.event_type().raw())),
            KeyBy::Meta(k) => h.metadata(k),
        };
        let value = match &self.value {
            ValueFrom::One => Some(1),
            ValueFrom::Meta(k) => h.metadata(*k).map(|v| v as i64),
            ValueFrom::Accessor(f) => f(d),
        };
        let now = d.now_ns();
        let (Some(key), Some(value)) = (key, value) else {
            self.state.note_unaggregatable();
            self.dead_letter(d, DeadReason::Unaggregatable, now);
            return Outcome::Done;
        };
        let Operator {
            state,
            publisher,
            output,
            id,
            ..
        } = self;
        let mut emit = |r: &WindowResult, cause: u64| emit(publisher, *output, *id, r, cause);
        match state.observe(key, h.timestamp_ns(), value, h.id(), now, &mut emit) {
            Observed::Counted { .. } => {}
            Observed::Late => self.dead_letter(d, DeadReason::Late, now),
            Observed::KeyOverflow => self.dead_letter(d, DeadReason::KeyOverflow, now),
        }
        // Refused: counted; the next event, or the tick on the wheel, arms again.
        let _ = self.arm();
        Outcome::Done
    }

    /// A tick: close what is due, then ask for the next tick.
    fn tick(&mut self, d: &Delivery<'_, SLOT>) -> Outcome {
        let due = d.header().timestamp_ns();
        let now = d.now_ns().max(due);
        if self.tick_at.is_some_and(|t| t <= now) {
            self.tick_at = None;
        }
        if self.close(now) {
            Outcome::Done
        } else {
            // No next tick could be scheduled (the ring is full): this one comes back
            // through the retry wheel, which needs no ring, and tries again.
            Outcome::retry(1)
        }
    }

    /// Closes what is due at `now`; false if a next tick was needed and not scheduled.
    fn close(&mut self, now: u64) -> bool {
        let Operator {
            state,
            publisher,
            output,
            id,
            ..
        } = self;
        state.stats_mut().ticks += 1;
        let mut emit = |r: &WindowResult, cause: u64| emit(publisher, *output, *id, r, cause);
        state.close_due(now, &mut emit);
        self.arm()
    }

    /// Schedules a tick for the earliest close, unless one is due by then already. False
    /// if one was needed and the bus refused it (counted in `tick_refused`).
    fn arm(&mut self) -> bool {
        let Some(next) = self.state.next_close() else {
            return true;
        };
        if self.tick_at.is_some_and(|t| t <= next) {
            return true;
        }
        // Critical: its own ring on this publisher, never behind the results.
        let tick = Event::new(self.tick_type)
            .to(self.agent)
            .with_priority(Priority::Critical)
            .with_correlation_id(self.id);
        match self.publisher.try_publish_at(tick, next) {
            Ok((_, token)) => {
                self.tick_at = Some(next);
                self.tick_id = token.event_id();
                true
            }
            Err(_) => {
                self.state.stats_mut().tick_refused += 1;
                false
            }
        }
    }

    fn dead_letter(&self, d: &Delivery<'_, SLOT>, reason: DeadReason, now: u64) {
        let mut envelope = d.envelope();
        envelope.status = crate::envelope::Status::Failed;
        self.dead.record(DeadLetter {
            event: d.event().clone(),
            envelope,
            subscription: Some(d.subscription()),
            reason,
            attempts: 1,
            last_error: None,
            first_attempt_ns: now,
            last_attempt_ns: now,
            shard: self.shard,
        });
    }
}

/// Publishes one result: false (the window stays open) when the bus refuses it.
fn emit<const SLOT: usize>(
    publisher: &mut Publisher<SLOT>,
    output: EventType,
    id: u64,
    result: &WindowResult,
    cause: u64,
) -> bool {
    let mut event = Event::new(output)
        .with_correlation_id(id)
        .with_causation_id(cause);
    if event.set_payload(result).is_err() {
        // Checked to fit when the window was set up.
        return false;
    }
    publisher.try_publish(event).is_ok()
}

impl<const SLOT: usize> Bus<SLOT> {
    /// Aggregates what `subscription` passes into windows (see [`WindowSpec`]); each
    /// closing window is published as one event per key, of the spec's output type
    /// (default `system.window`), with a [`WindowResult`] payload, source
    /// [`WINDOW_AGENT`], correlation id [`Window::id`] and causation the last event
    /// counted in. Late events, key overflow and events without key or value are
    /// dead-lettered (`Late`, `KeyOverflow`, `Unaggregatable`) and counted.
    ///
    /// Allocates the key table here (keys x windows per key x ~4 KiB of histogram);
    /// aggregation and closing allocate nothing. Windows open when the bus closes are not
    /// emitted (they show in `stats().open_count`); [`Bus::stop_window`] emits them.
    ///
    /// ```
    /// use std::time::Duration;
    /// use dreamnet_bus::window::{KeyBy, WindowResult, WindowSpec};
    /// use dreamnet_bus::{Bus, Event, EventType, Filter, ManualClock, Outcome};
    ///
    /// let clock = ManualClock::new();
    /// let (bus, mut shards) = Bus::builder().manual_clock(clock.clone()).build_polled()?;
    /// let ms = bus.register_meta_key("ms")?;
    /// let spec = WindowSpec::tumbling(Duration::from_secs(1)).key_by(KeyBy::Source).value_meta(ms);
    /// let window = bus.window(Filter::of_type(EventType::AGENT_TASK), spec)?;
    /// bus.subscribe(Filter::of_type(window.output()), |d| {
    ///     let r = d.payload::<WindowResult>().unwrap();
    ///     assert_eq!((r.count.to_native(), r.max.to_native()), (2, 30));
    ///     Outcome::Done
    /// })?;
    /// let mut p = bus.publisher(bus.register_agent("a")?)?;
    /// for v in [10, 30] {
    ///     p.try_publish(Event::new(EventType::AGENT_TASK).with_metadata(ms, v)?)?;
    /// }
    /// shards[0].poll(64);
    /// clock.advance(Duration::from_secs(1)); // the window [0, 1 s) closes on the wheel
    /// shards[0].poll(64);
    /// shards[0].poll(64);
    /// assert_eq!(window.stats().emitted_windows, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn window(
        &self,
        subscription: impl Into<Subscription>,
        spec: WindowSpec<SLOT>,
    ) -> Result<Window<SLOT>, WindowError> {
        let mut subscription = subscription.into();
        let (shape, per_key) = spec.shape()?;
        // A window must close within the wheel's schedule horizon.
        let horizon = crate::schedule::schedule_horizon(self.shared.config.tick);
        let span = match spec.kind {
            crate::window::WindowKind::Tumbling(size) => size,
            crate::window::WindowKind::Hopping { size, .. } => size,
            crate::window::WindowKind::Session { gap } => gap,
        };
        if span.saturating_add(spec.grace) > horizon {
            return Err(WindowError::SpanTooLong(span.saturating_add(spec.grace)));
        }
        if Event::<SLOT>::new(crate::names::EventType::AGENT_TASK)
            .with_payload(&WindowResult::default())
            .is_err()
        {
            return Err(WindowError::SlotTooSmall { slot: SLOT });
        }
        let agent = self.register_agent(WINDOW_AGENT)?;
        let tick_type = self.register_event_type(TICK_TYPE)?;
        let output = match spec.output {
            Some(t) => t,
            None => self.register_event_type(WINDOW_RESULT_TYPE)?,
        };
        let shard = match subscription.shard {
            Some(s) => s,
            None => {
                let mut plane = self.plane();
                let s = plane.next_shard % self.shared.config.shards;
                plane.next_shard += 1;
                s
            }
        };
        subscription.shard = Some(shard);
        let budget = self.shared.config.memory_budget;
        let needed = WindowState::footprint(spec.key_capacity, per_key);
        if needed > budget {
            return Err(WindowError::MemoryBudget { needed, budget });
        }
        let state = WindowState::try_new(shape, spec.key_capacity, per_key)
            .map_err(|_| WindowError::MemoryBudget { needed, budget: 0 })?;
        let id = NEXT_WINDOW.fetch_add(1, Ordering::Relaxed);
        let operator = Arc::new(Mutex::new(Operator {
            id,
            state,
            publisher: self.publisher(agent)?,
            key_by: spec.key_by,
            value: spec.value,
            output,
            agent,
            tick_type,
            tick_at: None,
            tick_id: 0,
            dead: Arc::clone(&self.shared.dead_letters),
            shard,
        }));
        let ticks = Subscription::new(
            Filter::of_type(tick_type).matching(move |h| h.correlation_id() == id),
        )
        .for_agent(agent)
        .on_shard(shard);
        let op = Arc::clone(&operator);
        let tick = self.subscribe(ticks, move |d| lock(&op).tick(d))?;
        let op = Arc::clone(&operator);
        let data = match self.subscribe(subscription, move |d| lock(&op).ingest(d)) {
            Ok(data) => data,
            Err(e) => {
                let _ = self.unsubscribe(tick);
                return Err(e.into());
            }
        };
        Ok(Window {
            id,
            data,
            tick,
            output,
            operator,
        })
    }

    /// Stops a window: unsubscribes it, cancels its pending tick, then emits every window
    /// still open (as if its grace had passed). Returns how many results were published; results the bus
    /// refuses (full ring, closed bus) stay in `stats().open_count`.
    pub fn stop_window(&self, window: &Window<SLOT>) -> Result<u32, WindowError> {
        self.unsubscribe(window.data)?;
        self.unsubscribe(window.tick)?;
        let mut op = lock(&window.operator);
        self.cancel_scheduled(crate::schedule::ScheduleToken(op.tick_id));
        let Operator {
            state,
            publisher,
            output,
            id,
            ..
        } = &mut *op;
        let mut emit = |r: &WindowResult, cause: u64| emit(publisher, *output, *id, r, cause);
        Ok(state.close_due(u64::MAX, &mut emit))
    }
}
