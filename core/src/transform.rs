//! Transformation during routing: a [`Stage`] is a subscription whose handler reads a
//! delivery and emits zero or more derived events back into the bus, each written in
//! place into a ring slot (no allocation), through a [`Publisher`] the stage owns.
//!
//! - **Causation**: every derived event is `caused_by` its input: causation id = the
//!   input's id, correlation id = the input's (or the input's id when it had none), hop
//!   count = the input's plus one ([`Header::hops`]).
//! - **Cycles**: a stage refuses an input whose hop count has reached its maximum
//!   ([`Stage::max_hops`], default [`DEFAULT_MAX_HOPS`]): the input goes to the dead
//!   letters as [`DeadReason::LoopDetected`], counted per shard and per stage.
//! - **A stage never blocks its shard.** It runs on a shard's thread, and its publisher
//!   may write to that same shard's rings: waiting for room there would wait forever. So
//!   a derived event that meets a full ring (or a closing bus) is not waited for: it is
//!   put in the dead letters (`EmitFull`, or `Shutdown` when the bus is closing) without
//!   a subscription, so [`Bus::redrive`](crate::Bus::redrive) routes it like a new event
//!   later; [`Emitter::emit`] tells the stage (`EmitError::DeadLettered`), and it is
//!   counted. The input is not retried (a retry would emit its other derived events
//!   twice).

use std::sync::Arc;

use crate::dead_letters::{DeadLetter, DeadLetters, DeadReason};
use crate::envelope::Envelope;
use crate::error::{PayloadError, PublishError};
use crate::event::{Event, Header, WritePayload, DEFAULT_SLOT};
use crate::outcome::Outcome;
use crate::publisher::{Draft, Publisher, Receipt};
use crate::shard::SharedCounters;
use crate::stats::Counter;
use crate::subscription::{BoxedHandler, Delivery, SubscriptionId};

/// The hop count past which a stage refuses its input, unless set with
/// [`Stage::max_hops`]: a chain longer than this is taken for a cycle.
pub const DEFAULT_MAX_HOPS: u8 = 16;

/// A transform stage, ready for [`Bus::transform`](crate::Bus::transform): a function of
/// a delivery and an [`Emitter`], and the publisher the emitter publishes through (its
/// agent is the source of every derived event).
///
/// ```
/// use dreamnet_bus::{Bus, Draft, Event, EventType, Filter, Outcome, Stage, StreamPolicy};
///
/// let (bus, mut shards) = Bus::builder().build_polled()?;
/// let doubled = bus.register_event_type("doubled")?;
/// let doubler = bus.publisher(bus.register_agent("doubler")?)?;
/// bus.transform(
///     Filter::of_type(EventType::AGENT_TASK),
///     Stage::new(doubler, move |d, out| {
///         let Ok(v) = d.payload::<u32>() else { return Outcome::fail(400) };
///         match out.emit(Draft::new(doubled), &(v.to_native() * 2)) {
///             Ok(_) => Outcome::Done,
///             Err(_) => Outcome::fail(503), // counted and dead-lettered already
///         }
///     }),
/// )?;
/// let mut results = bus.stream(Filter::of_type(doubled), 16, StreamPolicy::Backpressure)?;
/// let mut publisher = bus.publisher(bus.register_agent("a")?)?;
/// let sent = publisher.try_publish(Event::new(EventType::AGENT_TASK).with_payload(&21u32)?)?;
/// while shards[0].poll(64) > 0 {}
/// let out = results.try_next()?;
/// assert_eq!(out.payload::<u32>()?.to_native(), 42);
/// assert_eq!(out.header().causation_id(), sent.id);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Stage<F, const SLOT: usize = DEFAULT_SLOT> {
    publisher: Publisher<SLOT>,
    f: F,
    max_hops: u8,
}

impl<F, const SLOT: usize> core::fmt::Debug for Stage<F, SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Stage")
            .field("publisher", &self.publisher)
            .field("max_hops", &self.max_hops)
            .finish_non_exhaustive()
    }
}

impl<F, const SLOT: usize> Stage<F, SLOT>
where
    F: FnMut(&Delivery<'_, SLOT>, &mut Emitter<'_, SLOT>) -> Outcome + Send + 'static,
{
    /// A stage that runs `f` on each input, emitting through `publisher`.
    pub fn new(publisher: Publisher<SLOT>, f: F) -> Self {
        Stage {
            publisher,
            f,
            max_hops: DEFAULT_MAX_HOPS,
        }
    }

    /// Refuses (dead-letters as `LoopDetected`) inputs whose hop count is `max` or more,
    /// so the events this stage emits have at most `max` hops.
    pub fn max_hops(mut self, max: u8) -> Self {
        self.max_hops = max;
        self
    }
}

/// Why a derived event was not published.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// A ring was full (`EmitFull`) or the bus closing (`Shutdown`): the derived event
    /// was put in the dead letters instead (without a subscription, so a redrive routes
    /// it like a new event) and counted in [`TransformStats::dead_lettered`].
    #[error("derived event dead-lettered ({reason:?})")]
    DeadLettered {
        /// Why.
        reason: DeadReason,
    },
    /// The publish was refused (an unknown type or agent, a policy violation, a payload
    /// too large): nothing was published or recorded; counted in
    /// [`TransformStats::refused`].
    #[error(transparent)]
    Refused(PublishError<()>),
}

/// What a stage's function emits derived events through: each is `caused_by` the input
/// and published without blocking (see the module docs of what happens on a full ring).
pub struct Emitter<'a, const SLOT: usize = DEFAULT_SLOT> {
    publisher: &'a mut Publisher<SLOT>,
    cause: &'a Header,
    now_ns: u64,
    context: &'a Context<SLOT>,
}

impl<const SLOT: usize> core::fmt::Debug for Emitter<'_, SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Emitter")
            .field("cause", &self.cause.id())
            .finish_non_exhaustive()
    }
}

impl<const SLOT: usize> Emitter<'_, SLOT> {
    /// The input every event emitted here is caused by.
    pub fn cause(&self) -> &Header {
        self.cause
    }

    /// Publishes an event of `draft` (made `caused_by` the input) with `payload`, archived
    /// straight into the ring's slot.
    pub fn emit<T: WritePayload>(
        &mut self,
        draft: Draft,
        payload: &T,
    ) -> Result<Receipt, EmitError> {
        let draft = draft.caused_by(self.cause);
        match self.publisher.try_publish_with(draft, payload) {
            Ok(receipt) => {
                self.context.counters.emitted.incr();
                Ok(receipt)
            }
            Err(PublishError::Full(())) => {
                self.dead_letter(build(draft, payload)?, DeadReason::EmitFull)
            }
            Err(PublishError::Closed(())) => {
                self.dead_letter(build(draft, payload)?, DeadReason::Shutdown)
            }
            Err(e) => {
                self.context.counters.refused.incr();
                Err(EmitError::Refused(e))
            }
        }
    }

    /// Records a derived event that could not be published.
    fn dead_letter(
        &mut self,
        mut event: Event<SLOT>,
        reason: DeadReason,
    ) -> Result<Receipt, EmitError> {
        // Unpublished, so no id; the source says which stage made it.
        event.stamp(0, self.publisher.agent(), self.now_ns);
        self.context.counters.dead_lettered.incr();
        self.context.record(event, reason, None, 0, self.now_ns);
        Err(EmitError::DeadLettered { reason })
    }
}

/// A derived event built on the stack, for the dead letters (no allocation).
fn build<const SLOT: usize, T: WritePayload>(
    draft: Draft,
    payload: &T,
) -> Result<Event<SLOT>, EmitError> {
    let mut event = Event::new(draft.event_type)
        .with_priority(draft.priority)
        .with_correlation_id(draft.correlation_id);
    event.set_destination(draft.destination);
    event.set_cause(draft.causation_id, draft.hops);
    event
        .set_payload(payload)
        .map_err(|e: PayloadError| EmitError::Refused(PublishError::Payload(e)))?;
    Ok(event)
}

/// A snapshot of a stage's counts.
///
/// Every input is either refused as a loop (`loops_detected`) or given to the function;
/// every derived event the function emits is `emitted`, `dead_lettered` or `refused`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransformStats {
    /// Deliveries to the stage.
    pub inputs: u64,
    /// Inputs refused because their hop count reached the maximum (dead-lettered as
    /// `LoopDetected`).
    pub loops_detected: u64,
    /// Derived events published.
    pub emitted: u64,
    /// Derived events put in the dead letters (a full ring, a closing bus).
    pub dead_lettered: u64,
    /// Derived events refused by the publisher (see [`EmitError::Refused`]).
    pub refused: u64,
}

/// A stage's counters (written on its shard's thread only).
#[derive(Debug, Default)]
struct TransformCounters {
    inputs: Counter,
    loops_detected: Counter,
    emitted: Counter,
    dead_lettered: Counter,
    refused: Counter,
}

/// A registered stage: its subscription and its counts. Made by
/// [`Bus::transform`](crate::Bus::transform).
#[derive(Debug, Clone)]
pub struct Transform {
    id: SubscriptionId,
    counters: Arc<TransformCounters>,
}

impl Transform {
    /// The stage's subscription (for `Bus::unsubscribe` and `Bus::subscription_stats`).
    pub fn id(&self) -> SubscriptionId {
        self.id
    }

    /// A snapshot of the stage's counts.
    pub fn stats(&self) -> TransformStats {
        let c = &self.counters;
        TransformStats {
            inputs: c.inputs.get(),
            loops_detected: c.loops_detected.get(),
            emitted: c.emitted.get(),
            dead_lettered: c.dead_lettered.get(),
            refused: c.refused.get(),
        }
    }
}

/// What a stage's handler needs besides the stage: where dead letters go and are counted.
pub(crate) struct Context<const SLOT: usize> {
    counters: Arc<TransformCounters>,
    dead_letters: Arc<DeadLetters<SLOT>>,
    shard_counters: SharedCounters,
    shard: usize,
}

impl<const SLOT: usize> Context<SLOT> {
    /// Records a dead letter and counts it against the shard (as the retry path does).
    fn record(
        &self,
        event: Event<SLOT>,
        reason: DeadReason,
        subscription: Option<SubscriptionId>,
        attempts: u32,
        now_ns: u64,
    ) {
        self.shard_counters.dead_lettered.incr();
        self.shard_counters.dead_by_reason[reason.index()].incr();
        self.dead_letters.record(DeadLetter {
            event,
            envelope: Envelope::default(),
            subscription,
            reason,
            attempts,
            last_error: None,
            first_attempt_ns: now_ns,
            last_attempt_ns: now_ns,
            shard: self.shard,
        });
    }
}

/// Splits a stage into the handle to it (once its subscription id is known) and a maker
/// of its subscription handler for the shard it is placed on.
#[allow(clippy::type_complexity)]
pub(crate) fn prepare<F, const SLOT: usize>(
    stage: Stage<F, SLOT>,
) -> (
    impl FnOnce(SubscriptionId) -> Transform,
    impl FnOnce(Arc<DeadLetters<SLOT>>, SharedCounters, usize) -> BoxedHandler<SLOT>,
)
where
    F: FnMut(&Delivery<'_, SLOT>, &mut Emitter<'_, SLOT>) -> Outcome + Send + 'static,
{
    let counters = Arc::new(TransformCounters::default());
    let handle = {
        let counters = Arc::clone(&counters);
        move |id| Transform { id, counters }
    };
    let make = move |dead_letters, shard_counters, shard| {
        let context = Context {
            counters,
            dead_letters,
            shard_counters,
            shard,
        };
        let Stage {
            mut publisher,
            mut f,
            max_hops,
        } = stage;
        let run = move |d: &Delivery<'_, SLOT>| {
            context.counters.inputs.incr();
            let cause = d.header();
            if cause.hops() >= max_hops {
                context.counters.loops_detected.incr();
                let attempts = u32::from(cause.attempts()) + 1;
                context.record(
                    d.event().clone(),
                    DeadReason::LoopDetected,
                    Some(d.subscription()),
                    attempts,
                    d.now_ns(),
                );
                return Outcome::Done;
            }
            let mut emitter = Emitter {
                publisher: &mut publisher,
                cause,
                now_ns: d.now_ns(),
                context: &context,
            };
            f(d, &mut emitter)
        };
        Box::new(run) as BoxedHandler<SLOT>
    };
    (handle, make)
}
