//! Streaming subscriptions: pull instead of push. [`Bus::stream`](crate::Bus::stream)
//! subscribes a handler that copies each event into a bounded ring owned by the stream
//! (`ring.rs`); the [`EventStream`] handle takes them out on the consumer's thread, by
//! value ([`EventStream::next`]) or in place ([`EventStream::next_ref`]), blocking,
//! non-blocking, with a timeout, as an [`Iterator`] or (feature `async`) as a
//! `futures_core::Stream`.
//!
//! When the ring is full, the stream's [`StreamPolicy`] decides, and every outcome is
//! counted in [`StreamStats`]: nothing is lost without being counted.

mod ring;
#[cfg(all(test, not(loom)))]
mod tests;
mod wake;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::envelope::ErrorCode;
use crate::event::{Event, DEFAULT_SLOT};
use crate::outcome::Outcome;
use crate::stats::Counter;
use crate::subscription::{Delivery, SubscriptionId};
use crate::wait::WaitStrategy;

use ring::{Pushed, StreamRing};
use wake::Wake;

/// The error code a `Backpressure` stream's handler retries with when its ring is full
/// (in the envelope's `last_error` and the dead letter's).
pub const STREAM_FULL: ErrorCode = ErrorCode(0x5354);

/// What a stream does with an event when its ring is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StreamPolicy {
    /// The delivery returns [`Outcome::Retry`] (code [`STREAM_FULL`]): the event waits on
    /// the timer wheel and is offered again after the subscription's backoff; when the
    /// retries run out it goes to the dead letters (`RetriesExhausted`). Counted in
    /// [`StreamStats::backpressured`] per refused delivery. Nothing is dropped, but a
    /// retried event is out of order.
    #[default]
    Backpressure,
    /// The oldest waiting event gives way to the new one. Counted in
    /// [`StreamStats::dropped`]; the consumer is not interrupted.
    DropOldest,
    /// As `DropOldest`, and the consumer's next call returns
    /// [`StreamError::Lagged`]`(n)` with how many it missed, before the next event (as
    /// tokio's `broadcast`).
    Lag,
}

/// Why no event was handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// Nothing is waiting (`try_next`).
    #[error("no event waiting")]
    Empty,
    /// Nothing arrived in time (`next_timeout`).
    #[error("no event arrived in time")]
    Timeout,
    /// (`Lag` policy) this many events were dropped since the last call; the next call
    /// returns the oldest event still waiting.
    #[error("the stream lagged: {0} events dropped")]
    Lagged(u64),
    /// The subscription is gone (unsubscribed, or its shard stopped) and every event it
    /// stored was handed out.
    #[error("the stream is closed")]
    Closed,
}

/// An [`Iterator`] or `Stream` item that is not an event: this many events were dropped
/// (the `Lag` policy; see [`StreamError::Lagged`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the stream lagged: {0} events dropped")]
pub struct Lagged(pub u64);

/// A point-in-time copy of a stream's counts.
///
/// For `DropOldest` and `Lag`, every event delivered to the stream is consumed, dropped
/// or still queued: `delivered == consumed + dropped + queued` (after `discarded` ones,
/// which came after the handle was dropped). For `Backpressure`, each refusal is a retry
/// of the same event (`backpressured`), and an event is finally consumed, queued or in the
/// dead letters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamStats {
    /// Deliveries to the stream's handler (retries included).
    pub delivered: u64,
    /// Events stored in the ring.
    pub stored: u64,
    /// Events handed to the consumer.
    pub consumed: u64,
    /// Events lost to `DropOldest` or `Lag`: the oldest evicted to make room, or (rarely)
    /// a new event refused because the ring was full and its oldest entry was being read
    /// in place ([`EventStream::next_ref`]).
    pub dropped: u64,
    /// (`Lag`) dropped events the consumer has been told of with `Lagged(n)` so far.
    pub lag_reported: u64,
    /// (`Backpressure`) deliveries refused with `Retry` because the ring was full.
    pub backpressured: u64,
    /// Deliveries after the handle was dropped: acknowledged and counted, not stored
    /// (unsubscribe with [`EventStream::id`] to stop them).
    pub discarded: u64,
    /// Times the shard woke the consumer (it found the consumer asleep after storing an
    /// event): a consumer that keeps up without sleeping costs the shard no wake-up.
    pub wakeups: u64,
    /// Events waiting in the ring now.
    pub queued: u64,
}

/// What the producer (the handler) and the consumer (the handle) share.
struct Shared<const SLOT: usize> {
    ring: StreamRing<Event<SLOT>>,
    policy: StreamPolicy,
    wake: Wake,
    /// Set when the handle is dropped.
    consumer_gone: crate::sync::AtomicBool,
    /// New events refused under `Lag` while the oldest was held: the consumer adds them
    /// to its next `Lagged` (evictions it sees itself, from the head position).
    refused_unreported: crate::sync::AtomicU64,
    // Written by the producer (the shard's thread) only.
    delivered: Counter,
    stored: Counter,
    dropped: Counter,
    backpressured: Counter,
    discarded: Counter,
    wakeups: Counter,
    // Written by the consumer only.
    consumed: Counter,
    lag_reported: Counter,
}

/// The producing side, owned by the stream's handler on its shard. Dropping it (the
/// subscription removed, the shard stopped) closes the stream.
pub(crate) struct StreamProducer<const SLOT: usize> {
    shared: Arc<Shared<SLOT>>,
}

impl<const SLOT: usize> StreamProducer<SLOT> {
    /// The handler: stores the delivered event in the ring, as the policy says.
    pub(crate) fn offer(&mut self, delivery: &Delivery<'_, SLOT>) -> Outcome {
        let s = &*self.shared;
        s.delivered.incr();
        if s.consumer_gone.load(core::sync::atomic::Ordering::Acquire) {
            s.discarded.incr();
            return Outcome::Done;
        }
        let evict = s.policy != StreamPolicy::Backpressure;
        match s.ring.push(delivery.event(), evict) {
            Pushed::Stored => s.stored.incr(),
            Pushed::Evicted(n) => {
                s.stored.incr();
                s.dropped.add(n);
            }
            Pushed::Full => {
                s.backpressured.incr();
                return Outcome::Retry {
                    code: STREAM_FULL,
                    after: None,
                };
            }
            Pushed::RefusedNew => {
                s.dropped.incr();
                if s.policy == StreamPolicy::Lag {
                    s.refused_unreported
                        .fetch_add(1, core::sync::atomic::Ordering::Release);
                }
                // The consumer holds an entry: it is awake.
                return Outcome::Done;
            }
        }
        if s.ring.take_sleeper() {
            s.wakeups.incr();
            s.wake.wake();
        }
        Outcome::Done
    }
}

impl<const SLOT: usize> Drop for StreamProducer<SLOT> {
    fn drop(&mut self) {
        // Woken whether or not it is marked asleep: rare, and a wake it does not need is
        // harmless (a spurious unpark or poll).
        let _ = self.shared.ring.close();
        self.shared.wake.wake();
    }
}

/// A streaming subscription's consumer handle: events are pulled from it instead of
/// pushed to a handler. Made by [`Bus::stream`](crate::Bus::stream).
///
/// One consumer: the handle is `Send`, not `Sync`, and the in-place reads
/// ([`EventStream::next_ref`]) borrow it mutably. Blocking calls wait with the bus's
/// [`WaitStrategy`]; with `Park`, the consumer sleeps and the shard wakes it (no syscall
/// for the shard while the consumer is awake). In poll mode, something must poll the
/// shards while a blocking call waits.
///
/// ```
/// use dreamnet_bus::{Bus, Event, EventType, Filter, StreamPolicy};
///
/// let (bus, mut shards) = Bus::builder().build_polled()?;
/// let mut stream = bus.stream(Filter::of_type(EventType::AGENT_TASK), 64, StreamPolicy::Lag)?;
/// let mut publisher = bus.publisher(bus.register_agent("a")?)?;
/// publisher.try_publish(Event::new(EventType::AGENT_TASK).with_payload(&7u32)?)?;
/// shards[0].poll(64);
/// let event = stream.next_ref()?; // in place, released when dropped
/// assert_eq!(event.payload::<u32>()?.to_native(), 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct EventStream<const SLOT: usize = DEFAULT_SLOT> {
    shared: Arc<Shared<SLOT>>,
    id: SubscriptionId,
    wait: WaitStrategy,
    /// The position after the last entry consumed: a head beyond it means evictions.
    expected: u64,
}

impl<const SLOT: usize> core::fmt::Debug for EventStream<SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EventStream")
            .field("id", &self.id)
            .field("policy", &self.shared.policy)
            .field("capacity", &self.shared.ring.capacity())
            .finish_non_exhaustive()
    }
}

/// The producing and consuming ends of a new stream (the producer goes into the
/// subscription's handler). Allocates the ring: setup, never the hot path.
pub(crate) fn channel<const SLOT: usize>(
    capacity: usize,
    policy: StreamPolicy,
    wait: WaitStrategy,
) -> Result<
    (
        StreamProducer<SLOT>,
        impl FnOnce(SubscriptionId) -> EventStream<SLOT>,
    ),
    std::collections::TryReserveError,
> {
    let filler = Event::new(crate::names::EventType(0));
    let shared = Arc::new(Shared {
        ring: StreamRing::try_new(capacity, &filler)?,
        policy,
        wake: Wake::default(),
        consumer_gone: crate::sync::AtomicBool::new(false),
        refused_unreported: crate::sync::AtomicU64::new(0),
        delivered: Counter::default(),
        stored: Counter::default(),
        dropped: Counter::default(),
        backpressured: Counter::default(),
        discarded: Counter::default(),
        wakeups: Counter::default(),
        consumed: Counter::default(),
        lag_reported: Counter::default(),
    });
    let producer = StreamProducer {
        shared: Arc::clone(&shared),
    };
    let consumer = move |id| EventStream {
        shared,
        id,
        wait,
        expected: 0,
    };
    Ok((producer, consumer))
}

/// An event read in place in the stream's ring, zero copy. The slot is released (and the
/// event counted as consumed) when this is dropped; until then the stream is borrowed.
pub struct EventRef<'s, const SLOT: usize = DEFAULT_SLOT> {
    stream: &'s mut EventStream<SLOT>,
    position: u64,
    event: &'s Event<SLOT>,
}

impl<const SLOT: usize> core::ops::Deref for EventRef<'_, SLOT> {
    type Target = Event<SLOT>;
    fn deref(&self) -> &Event<SLOT> {
        self.event
    }
}

impl<const SLOT: usize> core::fmt::Debug for EventRef<'_, SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.event.fmt(f)
    }
}

impl<const SLOT: usize> Drop for EventRef<'_, SLOT> {
    fn drop(&mut self) {
        self.stream.shared.ring.release(self.position);
        self.stream.expected = self.position + 1;
        self.stream.shared.consumed.incr();
    }
}

impl<const SLOT: usize> EventStream<SLOT> {
    /// The subscription behind the stream (for `Bus::unsubscribe`, which ends the stream
    /// once its events are handed out, and `Bus::subscription_stats`).
    pub fn id(&self) -> SubscriptionId {
        self.id
    }

    /// The full-ring policy.
    pub fn policy(&self) -> StreamPolicy {
        self.shared.policy
    }

    /// Waits with `wait` instead of the bus's wait strategy (for a consumer that should
    /// sleep while the shards spin, or the other way round).
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.wait = wait;
    }

    /// How many events the ring holds at most.
    pub fn capacity(&self) -> usize {
        self.shared.ring.capacity()
    }

    /// A snapshot of the stream's counts.
    pub fn stats(&self) -> StreamStats {
        let s = &*self.shared;
        StreamStats {
            delivered: s.delivered.get(),
            stored: s.stored.get(),
            consumed: s.consumed.get(),
            dropped: s.dropped.get(),
            lag_reported: s.lag_reported.get(),
            backpressured: s.backpressured.get(),
            discarded: s.discarded.get(),
            wakeups: s.wakeups.get(),
            queued: s.ring.len(),
        }
    }

    /// (`Lag`) events dropped since the last call that the consumer has not been told
    /// of; resets the count.
    fn take_lag(&mut self, head: u64) -> u64 {
        let s = &*self.shared;
        if s.policy != StreamPolicy::Lag {
            return 0;
        }
        let evicted = head.saturating_sub(self.expected);
        let refused = s
            .refused_unreported
            .swap(0, core::sync::atomic::Ordering::Acquire);
        let n = evicted + refused;
        if n > 0 {
            self.expected = head;
            s.lag_reported.add(n);
        }
        n
    }

    /// The next event in place, without waiting: `Empty` if none waits, `Closed` at the
    /// end, `Lagged(n)` (the `Lag` policy) when events were dropped since the last call.
    pub fn try_next_ref(&mut self) -> Result<EventRef<'_, SLOT>, StreamError> {
        let ring = &self.shared.ring;
        // Closed is read before looking: a close seen here came after the last push.
        let closed = ring.is_closed();
        let Some((position, event)) = ring.hold() else {
            let head = ring.head();
            let lag = self.take_lag(head);
            return Err(if lag > 0 {
                StreamError::Lagged(lag)
            } else if closed {
                StreamError::Closed
            } else {
                StreamError::Empty
            });
        };
        let event: *const Event<SLOT> = event;
        let lag = self.take_lag(position);
        if lag > 0 {
            self.shared.ring.unhold(position);
            return Err(StreamError::Lagged(lag));
        }
        // SAFETY: the entry stays valid while held (`StreamRing::hold`): the `EventRef`
        // releases it on drop and borrows `self` (which keeps the ring alive through its
        // `Arc`) mutably for its whole life, so no other hold or release can happen first.
        let event = unsafe { &*event };
        Ok(EventRef {
            stream: self,
            position,
            event,
        })
    }

    /// The next event, copied out, without waiting (see [`EventStream::try_next_ref`]).
    pub fn try_next(&mut self) -> Result<Event<SLOT>, StreamError> {
        self.try_next_ref().map(|e| e.clone())
    }

    /// The next event in place, waiting for one (with the bus's wait strategy).
    pub fn next_ref(&mut self) -> Result<EventRef<'_, SLOT>, StreamError> {
        self.wait_ready(None)?;
        self.try_next_ref()
    }

    /// The next event, copied out, waiting for one. `Err` only for `Lagged` and `Closed`.
    ///
    /// (Not [`Iterator::next`]: iterating yields `Result<Event, Lagged>` and ends when the
    /// stream closes.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Event<SLOT>, StreamError> {
        self.wait_ready(None)?;
        self.try_next()
    }

    /// The next event, copied out, waiting at most `timeout`: then `Timeout`.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Event<SLOT>, StreamError> {
        self.wait_ready(Some(Instant::now() + timeout))?;
        self.try_next()
    }

    /// The next event in place, waiting at most `timeout`: then `Timeout`.
    pub fn next_ref_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<EventRef<'_, SLOT>, StreamError> {
        self.wait_ready(Some(Instant::now() + timeout))?;
        self.try_next_ref()
    }

    /// Whether a `try_next` would not be `Empty`.
    fn ready(&self) -> bool {
        let s = &*self.shared;
        s.ring.len() > 0
            || s.ring.is_closed()
            || (s.policy == StreamPolicy::Lag
                && s.refused_unreported
                    .load(core::sync::atomic::Ordering::Relaxed)
                    > 0)
    }

    /// Waits until `ready`, escalating as the bus's wait strategy says; `Park` sleeps
    /// with the ring's sleep mark so the shard wakes it.
    fn wait_ready(&mut self, deadline: Option<Instant>) -> Result<(), StreamError> {
        const SPINS: u32 = 64;
        const YIELDS: u32 = 128;
        let mut step = 0u32;
        while !self.ready() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(StreamError::Timeout);
            }
            step = step.saturating_add(1);
            match self.wait {
                WaitStrategy::Spin => core::hint::spin_loop(),
                _ if step <= SPINS => core::hint::spin_loop(),
                WaitStrategy::Yield => std::thread::yield_now(),
                WaitStrategy::Park(_) if step <= YIELDS => std::thread::yield_now(),
                WaitStrategy::Park(max) => {
                    let nap = deadline.map_or(max, |d| {
                        max.min(d.saturating_duration_since(Instant::now()))
                    });
                    self.shared.wake.set_thread();
                    if self.shared.ring.prepare_sleep() {
                        std::thread::park_timeout(nap);
                        self.shared.ring.wake_up();
                    }
                }
            }
        }
        Ok(())
    }
}

impl<const SLOT: usize> Drop for EventStream<SLOT> {
    fn drop(&mut self) {
        self.shared
            .consumer_gone
            .store(true, core::sync::atomic::Ordering::Release);
    }
}

impl<const SLOT: usize> Iterator for EventStream<SLOT> {
    type Item = Result<Event<SLOT>, Lagged>;

    /// Waits for the next event; `Some(Err(Lagged(n)))` when events were dropped (the
    /// `Lag` policy); `None` once the stream is closed and empty.
    fn next(&mut self) -> Option<Self::Item> {
        match EventStream::next(self) {
            Ok(event) => Some(Ok(event)),
            Err(StreamError::Lagged(n)) => Some(Err(Lagged(n))),
            Err(_) => None,
        }
    }
}

#[cfg(feature = "async")]
impl<const SLOT: usize> futures_core::Stream for EventStream<SLOT> {
    type Item = Result<Event<SLOT>, Lagged>;

    /// Ready with the next event (or `Lagged`), `None` once closed and empty; otherwise
    /// registers the task's waker and marks the consumer asleep, so the shard wakes the
    /// task on its next store (and only then: no wake per event while the task is busy).
    fn poll_next(
        self: core::pin::Pin<&mut Self>,
        cx: &mut core::task::Context<'_>,
    ) -> core::task::Poll<Option<Self::Item>> {
        use core::task::Poll;
        let this = self.get_mut();
        loop {
            match this.try_next() {
                Ok(event) => return Poll::Ready(Some(Ok(event))),
                Err(StreamError::Lagged(n)) => return Poll::Ready(Some(Err(Lagged(n)))),
                Err(StreamError::Closed) => return Poll::Ready(None),
                Err(StreamError::Empty | StreamError::Timeout) => {}
            }
            this.shared.wake.set_task(cx.waker());
            if this.shared.ring.prepare_sleep() {
                return Poll::Pending;
            }
        }
    }
}

// `Unpin` by construction (no self-references): `poll_next` may use `get_mut`.
const _: fn() = || {
    fn unpin<T: Unpin>() {}
    unpin::<EventStream>();
};
