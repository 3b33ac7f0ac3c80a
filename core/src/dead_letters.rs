//! The dead-letter ring: a bounded, preallocated record of events that could not be
//! delivered, with why, how often it was tried and when. It can be inspected, drained,
//! redriven and purged. When full, its policy decides (and counts) what gives way.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::envelope::{Envelope, ErrorCode};
use crate::event::{Event, DEFAULT_SLOT};
use crate::subscription::SubscriptionId;

/// What a full dead-letter ring does with a new entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FullPolicy {
    /// Drop the oldest entry to make room (counted in `dropped`).
    #[default]
    DropOldest,
    /// Keep what is there and refuse the new entry (counted in `dropped`).
    RejectNew,
}

/// Why an event was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeadReason {
    /// A handler returned `Fail` with this code.
    Failed {
        /// The handler's code.
        code: ErrorCode,
    },
    /// The subscription's retry policy ran out of attempts.
    RetriesExhausted,
    /// The event's deadline passed before it could be delivered.
    DeadlineExceeded,
    /// A handler panicked.
    Panicked,
    /// The timer wheel was full, so the retry could not be scheduled.
    RetryCapacity,
    /// No subscription matched (only when the bus dead-letters unroutable events).
    NoSubscriber,
    /// The subscription was removed while the event waited for a retry.
    Unsubscribed,
    /// The bus closed while the event waited on the timer wheel (a retry or a scheduled
    /// delivery); kept here so nothing accepted is lost.
    Shutdown,
    /// An aggregation window's event arrived after its windows' grace period.
    Late,
    /// An aggregation window's key table was full for the event's new key.
    KeyOverflow,
    /// An aggregation window could not read the event's key or value.
    Unaggregatable,
    /// A transform stage refused an input whose hop count had reached the stage's maximum:
    /// the events are going round a cycle of stages (see `Bus::transform`).
    LoopDetected,
    /// A derived event a transform stage emitted met a full ring (a stage runs on a shard
    /// and never blocks it). Kept here without a subscription, so a redrive routes it
    /// like a new event.
    EmitFull,
}

impl DeadReason {
    /// How many reasons there are (the length of per-reason tables).
    pub const COUNT: usize = 13;

    /// The index of this reason in per-reason tables, in declaration order.
    pub const fn index(self) -> usize {
        match self {
            DeadReason::Failed { .. } => 0,
            DeadReason::RetriesExhausted => 1,
            DeadReason::DeadlineExceeded => 2,
            DeadReason::Panicked => 3,
            DeadReason::RetryCapacity => 4,
            DeadReason::NoSubscriber => 5,
            DeadReason::Unsubscribed => 6,
            DeadReason::Shutdown => 7,
            DeadReason::Late => 8,
            DeadReason::KeyOverflow => 9,
            DeadReason::Unaggregatable => 10,
            DeadReason::LoopDetected => 11,
            DeadReason::EmitFull => 12,
        }
    }

    /// A short name for reports.
    pub const fn name(self) -> &'static str {
        match self {
            DeadReason::Failed { .. } => "failed",
            DeadReason::RetriesExhausted => "retries-exhausted",
            DeadReason::DeadlineExceeded => "deadline-exceeded",
            DeadReason::Panicked => "panicked",
            DeadReason::RetryCapacity => "retry-capacity",
            DeadReason::NoSubscriber => "no-subscriber",
            DeadReason::Unsubscribed => "unsubscribed",
            DeadReason::Shutdown => "shutdown",
            DeadReason::Late => "late",
            DeadReason::KeyOverflow => "key-overflow",
            DeadReason::Unaggregatable => "unaggregatable",
            DeadReason::LoopDetected => "loop-detected",
            DeadReason::EmitFull => "emit-full",
        }
    }
}

/// One dead letter: the event, its envelope and its history (like RabbitMQ's `x-death`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter<const SLOT: usize = DEFAULT_SLOT> {
    /// The event as published (attempts in its header as of the last try).
    pub event: Event<SLOT>,
    /// The envelope of the last attempt.
    pub envelope: Envelope,
    /// The subscription it was for (`None` for `NoSubscriber`, or a scheduled event).
    pub subscription: Option<SubscriptionId>,
    /// Why.
    pub reason: DeadReason,
    /// Delivery attempts made.
    pub attempts: u32,
    /// The last error code a handler returned, if any.
    pub last_error: Option<ErrorCode>,
    /// Bus clock at the first attempt (ns).
    pub first_attempt_ns: u64,
    /// Bus clock at the last attempt (ns).
    pub last_attempt_ns: u64,
    /// The shard it was dead-lettered on.
    pub shard: usize,
}

/// What happened to an entry pushed into the ring.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed<T> {
    /// Stored; nothing gave way.
    Stored,
    /// Stored; the oldest entry was dropped to make room and is handed back.
    DroppedOldest(T),
    /// Refused (`RejectNew` on a full ring); handed back.
    Rejected(T),
}

/// A bounded FIFO of `T` with a full policy. All storage is allocated in `new`; `push`,
/// `pop` and `drain_into` never allocate.
#[derive(Debug)]
pub struct DeadLetterRing<T> {
    /// Invariant: `entries.len() <= capacity`, so the deque never reallocates.
    entries: VecDeque<T>,
    capacity: usize,
    policy: FullPolicy,
    /// Entries ever stored.
    stored: u64,
    /// Entries dropped (oldest) or rejected (new) by the full policy.
    dropped: u64,
}

impl<T> DeadLetterRing<T> {
    /// A ring for `capacity` entries (at least 1).
    pub fn new(capacity: usize, policy: FullPolicy) -> Self {
        let capacity = capacity.max(1);
        Self::with_entries(VecDeque::with_capacity(capacity), capacity, policy)
    }

    /// Like [`DeadLetterRing::new`], but a failed allocation is an error, not an abort.
    pub fn try_new(
        capacity: usize,
        policy: FullPolicy,
    ) -> Result<Self, std::collections::TryReserveError> {
        let capacity = capacity.max(1);
        let mut entries = VecDeque::new();
        entries.try_reserve_exact(capacity)?;
        Ok(Self::with_entries(entries, capacity, policy))
    }

    fn with_entries(entries: VecDeque<T>, capacity: usize, policy: FullPolicy) -> Self {
        DeadLetterRing {
            entries,
            capacity,
            policy,
            stored: 0,
            dropped: 0,
        }
    }

    /// Adds an entry under the full policy.
    pub fn push(&mut self, entry: T) -> Pushed<T> {
        if self.entries.len() < self.capacity {
            self.entries.push_back(entry);
            self.stored += 1;
            return Pushed::Stored;
        }
        self.dropped += 1;
        match self.policy {
            FullPolicy::RejectNew => Pushed::Rejected(entry),
            FullPolicy::DropOldest => match self.entries.pop_front() {
                Some(oldest) => {
                    self.entries.push_back(entry);
                    self.stored += 1;
                    Pushed::DroppedOldest(oldest)
                }
                None => Pushed::Rejected(entry),
            },
        }
    }

    /// Removes and returns the oldest entry.
    pub fn pop(&mut self) -> Option<T> {
        self.entries.pop_front()
    }

    /// Moves up to `max` oldest entries to `out` (the caller's buffer); returns how many.
    /// Allocation-free if `out` has the room (an `ArrayVec`, or a `Vec` with capacity).
    pub fn drain_into(&mut self, max: usize, out: &mut impl Extend<T>) -> usize {
        let n = max.min(self.entries.len());
        out.extend(self.entries.drain(..n));
        n
    }

    /// Removes the entries `select` returns true for, oldest first, handing each to
    /// `take`; keeps the others in order. Returns how many were taken.
    pub fn take_where(
        &mut self,
        mut select: impl FnMut(&T) -> bool,
        mut take: impl FnMut(T),
    ) -> usize {
        let mut taken = 0;
        for _ in 0..self.entries.len() {
            let Some(entry) = self.entries.pop_front() else {
                break;
            };
            if select(&entry) {
                take(entry);
                taken += 1;
            } else {
                self.entries.push_back(entry);
            }
        }
        taken
    }

    /// Entries, oldest first, without removing them.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.iter()
    }

    /// Removes every entry; returns how many there were.
    pub fn purge(&mut self) -> usize {
        let n = self.entries.len();
        self.entries.clear();
        n
    }

    /// Entries held now (the fill level).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the ring holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The fixed capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The full policy.
    pub fn policy(&self) -> FullPolicy {
        self.policy
    }

    /// Entries ever stored.
    pub fn stored(&self) -> u64 {
        self.stored
    }

    /// Entries the full policy dropped or rejected.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// A hook called with each dead letter as it is recorded (for metrics and alerts).
pub type DeadLetterHook<const SLOT: usize> = Arc<dyn Fn(&DeadLetter<SLOT>) + Send + Sync>;

/// The bus's dead letters: a [`DeadLetterRing`] behind a lock, plus an optional hook.
///
/// The lock is taken only on failure paths (dead-lettering) and by the owner inspecting
/// the ring, never on the delivery hot path.
pub struct DeadLetters<const SLOT: usize = DEFAULT_SLOT> {
    ring: Mutex<DeadLetterRing<DeadLetter<SLOT>>>,
    hook: Option<DeadLetterHook<SLOT>>,
    /// Mirrors the ring's fill level, readable without the lock.
    len: AtomicUsize,
}

impl<const SLOT: usize> core::fmt::Debug for DeadLetters<SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<const SLOT: usize> DeadLetters<SLOT> {
    /// The bus's dead letters; a failed allocation of the ring is an error.
    pub(crate) fn try_new(
        capacity: usize,
        policy: FullPolicy,
        hook: Option<DeadLetterHook<SLOT>>,
    ) -> Result<Self, std::collections::TryReserveError> {
        Ok(DeadLetters {
            ring: Mutex::new(DeadLetterRing::try_new(capacity, policy)?),
            hook,
            len: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, DeadLetterRing<DeadLetter<SLOT>>> {
        // A panic while holding the lock cannot leave the ring inconsistent (every
        // operation is a single VecDeque call), so a poisoned lock is still usable.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a dead letter under the full policy. Returns false if the policy dropped
    /// something (the oldest entry, or this one).
    pub(crate) fn record(&self, letter: DeadLetter<SLOT>) -> bool {
        if let Some(hook) = &self.hook {
            hook(&letter);
        }
        let mut ring = self.lock();
        let kept = matches!(ring.push(letter), Pushed::Stored);
        self.len.store(ring.len(), Ordering::Release);
        kept
    }

    /// Entries held now (cheap: no lock).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ring's capacity.
    pub fn capacity(&self) -> usize {
        self.lock().capacity()
    }

    /// Entries dropped or refused by the full policy so far.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped()
    }

    /// Entries ever recorded.
    pub fn stored(&self) -> u64 {
        self.lock().stored()
    }

    /// Calls `visit` with each entry, oldest first, without removing any.
    pub fn inspect(&self, mut visit: impl FnMut(&DeadLetter<SLOT>)) {
        self.lock().iter().for_each(&mut visit);
    }

    /// Moves up to `max` oldest entries into `out`; returns how many.
    pub fn drain_into(&self, max: usize, out: &mut impl Extend<DeadLetter<SLOT>>) -> usize {
        let mut ring = self.lock();
        let n = ring.drain_into(max, out);
        self.len.store(ring.len(), Ordering::Release);
        n
    }

    /// Removes every entry; returns how many there were.
    pub fn purge(&self) -> usize {
        let mut ring = self.lock();
        let n = ring.purge();
        self.len.store(0, Ordering::Release);
        n
    }

    /// Removes the entries `select` picks (up to `max`), handing each to `take`.
    pub(crate) fn take_where(
        &self,
        max: usize,
        mut select: impl FnMut(&DeadLetter<SLOT>) -> bool,
        take: impl FnMut(DeadLetter<SLOT>),
    ) -> usize {
        let mut ring = self.lock();
        let mut left = max;
        let n = ring.take_where(
            |d| {
                if left > 0 && select(d) {
                    left -= 1;
                    true
                } else {
                    false
                }
            },
            take,
        );
        self.len.store(ring.len(), Ordering::Release);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push(u32),
        Pop,
        Drain(usize),
        TakeOdd,
        Purge,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<u32>().prop_map(Op::Push),
            1 => Just(Op::Pop),
            1 => (0usize..5).prop_map(Op::Drain),
            1 => Just(Op::TakeOdd),
            1 => Just(Op::Purge),
        ]
    }

    proptest! {
        /// Both full policies behave like a `VecDeque` model with the policy written out,
        /// and the counters match the model's.
        #[test]
        fn matches_vecdeque_model(cap in 1usize..6, drop_oldest in any::<bool>(), ops in proptest::collection::vec(op(), 0..80)) {
            let policy = if drop_oldest { FullPolicy::DropOldest } else { FullPolicy::RejectNew };
            let mut ring = DeadLetterRing::new(cap, policy);
            let mut model: VecDeque<u32> = VecDeque::new();
            let (mut stored, mut dropped) = (0u64, 0u64);
            for op in ops {
                match op {
                    Op::Push(v) => {
                        let got = ring.push(v);
                        if model.len() < cap {
                            model.push_back(v); stored += 1;
                            prop_assert_eq!(got, Pushed::Stored);
                        } else if drop_oldest {
                            let old = model.pop_front().unwrap();
                            model.push_back(v); stored += 1; dropped += 1;
                            prop_assert_eq!(got, Pushed::DroppedOldest(old));
                        } else {
                            dropped += 1;
                            prop_assert_eq!(got, Pushed::Rejected(v));
                        }
                    }
                    Op::Pop => prop_assert_eq!(ring.pop(), model.pop_front()),
                    Op::Drain(n) => {
                        let mut out = Vec::new();
                        let k = ring.drain_into(n, &mut out);
                        let expected: Vec<u32> = model.drain(..n.min(model.len())).collect();
                        prop_assert_eq!(k, expected.len());
                        prop_assert_eq!(out, expected);
                    }
                    Op::TakeOdd => {
                        let mut out = Vec::new();
                        ring.take_where(|v| v % 2 == 1, |v| out.push(v));
                        let expected: Vec<u32> = model.iter().copied().filter(|v| v % 2 == 1).collect();
                        model.retain(|v| v % 2 == 0);
                        prop_assert_eq!(out, expected);
                    }
                    Op::Purge => { prop_assert_eq!(ring.purge(), model.len()); model.clear(); }
                }
                prop_assert!(ring.iter().eq(model.iter()));
                prop_assert_eq!(ring.len(), model.len());
                prop_assert_eq!((ring.stored(), ring.dropped()), (stored, dropped));
            }
        }
    }
}
