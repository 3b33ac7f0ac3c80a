//! What happens after a handler: retries wait on the shard's timer wheel with backoff,
//! failures and exhausted retries go to the dead letters. Scheduled events
//! (`publish_at` / `publish_after`) wait on the same wheel.
//!
//! Per subscription: a retry redelivers to that one subscription only, never to the others
//! that already returned `Done`. The attempts, status and last error travel in the
//! envelope and the dead letter.
//!
//! Timing: the wheel counts ticks of the bus's tick (1 ms by default). A wait of `d` from
//! `now` is due at tick `ceil((now + d) / tick)`, and the shard advances the wheel to
//! `floor(now / tick)` at every poll, so an entry never fires before its time and fires at
//! the first poll at least one tick... precisely: at the first poll whose clock reading is
//! at or past the due time rounded up to a tick.
//!
//! Nothing here allocates after start: the wheel is preallocated, entries hold the event
//! slot by value, the fired-entries buffer has a fixed capacity, and the dead-letter ring
//! is preallocated.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::dead_letters::{DeadLetter, DeadLetters, DeadReason};
use crate::envelope::{Envelope, ErrorCode, Status};
use crate::event::Event;
use crate::outcome::Outcome;
use crate::router::{MemberRef, Router, Verdict};
use crate::schedule::Schedule;
use crate::shard::SharedCounters;
use crate::subscription::SubscriptionId;
use crate::timer_wheel::{InsertError, TimerWheel};

/// Most wheel entries handled in one poll (bounds the work of one poll call).
pub(crate) const MAX_FIRED_PER_POLL: usize = 64;

/// An entry waiting on the wheel.
pub(crate) enum Timed<const SLOT: usize> {
    /// A retry of one event for one subscription.
    Retry {
        event: Event<SLOT>,
        subscription: SubscriptionId,
        /// Attempts made so far.
        attempts: u32,
        first_attempt_ns: u64,
        last_error: Option<ErrorCode>,
        /// The delay before this retry (for decorrelated jitter).
        previous_delay: Duration,
    },
    /// A scheduled event, to dispatch to every matching subscription when due.
    Scheduled { event: Event<SLOT> },
    /// A paced redrive's next tick (`bus/paced.rs`).
    Pace {
        pacer: std::sync::Arc<crate::bus::Pacer<SLOT>>,
    },
}

impl<const SLOT: usize> Timed<SLOT> {
    /// The event the entry carries (a pacer's tick carries none).
    fn into_event(self) -> Option<Event<SLOT>> {
        match self {
            Timed::Retry { event, .. } | Timed::Scheduled { event } => Some(event),
            Timed::Pace { .. } => None,
        }
    }
}

/// The retry and dead-letter state a shard owns.
pub(crate) struct Retries<const SLOT: usize> {
    pub(crate) wheel: TimerWheel<Timed<SLOT>>,
    /// Wheel entries fired this poll, processed after the wheel is released.
    pub(crate) fired: Vec<Timed<SLOT>>,
    /// How many wheel entries are paced redrives' ticks.
    paces: usize,
    tick_ns: u64,
    rng: fastrand::Rng,
    pub(crate) dead_letters: Arc<DeadLetters<SLOT>>,
    pub(crate) schedule: Arc<Schedule>,
    shard: usize,
    /// The shard's counters (this struct lives on the shard's thread: single writer).
    counters: SharedCounters,
}

impl<const SLOT: usize> Retries<SLOT> {
    /// A shard's retry state; a failed allocation of its timer wheel is an error.
    pub(crate) fn try_new(
        config: &Config,
        dead_letters: Arc<DeadLetters<SLOT>>,
        schedule: Arc<Schedule>,
        shard: usize,
        counters: SharedCounters,
        now_ns: u64,
    ) -> Result<Self, std::collections::TryReserveError> {
        let (capacity, tick, seed) = (config.timer_capacity, config.tick, config.seed);
        let tick_ns = u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX).max(1);
        Ok(Retries {
            wheel: TimerWheel::try_new(capacity, now_ns / tick_ns)?,
            fired: Vec::with_capacity(MAX_FIRED_PER_POLL),
            paces: 0,
            tick_ns,
            rng: fastrand::Rng::with_seed(
                seed ^ (shard as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ),
            dead_letters,
            schedule,
            shard,
            counters,
        })
    }

    /// The tick a wait ending at `due_ns` is due at (rounded up: never early).
    fn due_tick(&self, due_ns: u64) -> u64 {
        due_ns.div_ceil(self.tick_ns)
    }

    /// Moves the wheel to `now_ns` and collects up to `MAX_FIRED_PER_POLL` due entries
    /// into `fired`.
    pub(crate) fn collect_due(&mut self, now_ns: u64) {
        let Retries {
            wheel,
            fired,
            paces,
            ..
        } = self;
        let room = fired.capacity() - fired.len();
        wheel.advance_bounded(now_ns / self.tick_ns, room, |_, _, entry| {
            if matches!(entry, Timed::Pace { .. }) {
                *paces -= 1;
            }
            fired.push(entry);
        });
        self.note_pending();
    }

    /// Brings an empty wheel's time to `now_ns` before an entry goes in. Polls do not
    /// advance an empty wheel (that would read the clock on every poll); advancing one
    /// only moves its time, so doing it here, before an insert, leaves every entry where
    /// an advance at every poll would have put it.
    fn catch_up(&mut self, now_ns: u64) {
        if self.wheel.is_empty() {
            self.wheel.advance(now_ns / self.tick_ns, |_, _, _| {});
        }
    }

    /// Publishes the wheel's fill level. Called at every change, before the shard counts
    /// the event that caused it as dispatched, so `Bus::wait_idle` never sees an event
    /// dispatched and its retry not yet pending.
    pub(crate) fn note_pending(&self) {
        // Paced redrives are not work the bus owes anyone: `wait_idle` does not wait
        // for them (one can tick until it is cancelled).
        let pending = self.wheel.len() - self.paces;
        self.counters.timers_pending.set(pending as u64);
    }

    /// Waits `pacer` on the wheel until its next tick at `due_ns`. `Err` gives it back
    /// when the wheel is full.
    pub(crate) fn pace(
        &mut self,
        pacer: std::sync::Arc<crate::bus::Pacer<SLOT>>,
        due_ns: u64,
        now_ns: u64,
    ) -> Result<(), std::sync::Arc<crate::bus::Pacer<SLOT>>> {
        self.catch_up(now_ns);
        let tick = self.due_tick(due_ns);
        match self.wheel.insert(tick, Timed::Pace { pacer }) {
            Ok(_) => {
                self.paces += 1;
                Ok(())
            }
            // `insert` hands back the entry it was given: a pacer's tick.
            Err(e) => match e.into_inner() {
                Timed::Pace { pacer } => Err(pacer),
                Timed::Scheduled { .. } | Timed::Retry { .. } => Ok(()),
            },
        }
    }

    /// Takes every entry off the wheel, due or not (the end of a close's drain).
    pub(crate) fn take_all(&mut self) -> Vec<Timed<SLOT>> {
        // Closing is not the hot path: a temporary buffer is fine here.
        let mut left = Vec::with_capacity(self.wheel.len());
        self.wheel.advance(u64::MAX, |_, _, entry| left.push(entry));
        self.paces = 0;
        self.note_pending();
        left
    }

    /// Waits `event` on the wheel until `at_ns` as a scheduled event. `Err` gives it back
    /// when the wheel is full.
    pub(crate) fn schedule(
        &mut self,
        event: Event<SLOT>,
        at_ns: u64,
        now_ns: u64,
    ) -> Result<(), Event<SLOT>> {
        self.catch_up(now_ns);
        let tick = self.due_tick(at_ns);
        // `insert` hands back the entry it was given, so the `None` arm never runs.
        let inserted = match self.wheel.insert(tick, Timed::Scheduled { event }) {
            Ok(_) => Ok(()),
            Err(e) => e.into_inner().into_event().map_or(Ok(()), Err),
        };
        self.note_pending();
        inserted
    }

    /// Settles one delivery: nothing for `Done`, a retry on the wheel, or a dead letter.
    /// `history` is the event's retry history when this was itself a retry.
    pub(crate) fn settle(
        &mut self,
        event: &Event<SLOT>,
        envelope: &Envelope,
        verdict: Verdict,
        member: MemberRef<'_>,
        now_ns: u64,
        history: History,
    ) {
        let counters = &self.counters;
        let attempts = envelope.attempts;
        let first_attempt_ns = history.first_attempt_ns.unwrap_or(now_ns);
        let letter = |reason| Letter {
            reason,
            attempts,
            last_error: envelope.last_error,
            first_attempt_ns,
        };
        let dead = match verdict {
            Verdict::Returned(Outcome::Done) => return,
            Verdict::Returned(Outcome::Fail { code }) => letter(DeadReason::Failed { code }),
            Verdict::Panicked => {
                counters.panicked.incr();
                letter(DeadReason::Panicked)
            }
            // The expired attempt was not made: the record keeps the attempts that were,
            // and the error the last of them returned.
            Verdict::Expired => Letter {
                reason: DeadReason::DeadlineExceeded,
                attempts: attempts.saturating_sub(1),
                last_error: history.last_error,
                first_attempt_ns,
            },
            Verdict::Returned(Outcome::Retry { after, .. }) => {
                let policy = member.retry;
                if !policy.allows_another(attempts) {
                    letter(DeadReason::RetriesExhausted)
                } else {
                    let delay = policy.delay_with_override(
                        attempts,
                        history.previous_delay,
                        after,
                        &mut self.rng,
                    );
                    let due_ns =
                        now_ns.saturating_add(u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX));
                    if envelope.deadline_ns.is_some_and(|d| due_ns > d) {
                        letter(DeadReason::DeadlineExceeded)
                    } else {
                        let mut copy = event.clone();
                        copy.set_attempts(u16::try_from(attempts).unwrap_or(u16::MAX));
                        let entry = Timed::Retry {
                            event: copy,
                            subscription: member.id,
                            attempts,
                            first_attempt_ns,
                            last_error: envelope.last_error,
                            previous_delay: delay,
                        };
                        // `catch_up`, field by field (`counters` is borrowed).
                        if self.wheel.is_empty() {
                            self.wheel.advance(now_ns / self.tick_ns, |_, _, _| {});
                        }
                        match self.wheel.insert(self.due_tick(due_ns), entry) {
                            Ok(_) => {
                                self.note_pending();
                                counters.retries_scheduled.incr();
                                member.counters.retried.incr();
                                *member.outstanding += 1;
                                return;
                            }
                            Err(InsertError::Full(_) | InsertError::BeyondHorizon(_)) => {
                                letter(DeadReason::RetryCapacity)
                            }
                        }
                    }
                }
            }
        };
        member.counters.dead_lettered.incr();
        self.dead_letter(event, envelope, Some(member.id), dead, now_ns);
    }

    /// Records a dead letter.
    pub(crate) fn dead_letter(
        &self,
        event: &Event<SLOT>,
        envelope: &Envelope,
        subscription: Option<SubscriptionId>,
        letter: Letter,
        now_ns: u64,
    ) {
        let counters = &self.counters;
        counters.dead_lettered.incr();
        counters.dead_by_reason[letter.reason.index()].incr();
        let mut envelope = envelope.clone();
        envelope.status = Status::Failed;
        self.dead_letters.record(DeadLetter {
            event: event.clone(),
            envelope,
            subscription,
            reason: letter.reason,
            attempts: letter.attempts,
            last_error: letter.last_error,
            first_attempt_ns: letter.first_attempt_ns,
            last_attempt_ns: now_ns,
            shard: self.shard,
        });
    }
}

impl<const SLOT: usize> Retries<SLOT> {
    /// Records a dead letter for an event that reached no handler this time (its
    /// subscription left, the wheel was full, the bus closed): the envelope is the one
    /// that attempt would have had, with the last code returned before.
    pub(crate) fn dead_letter_undelivered(
        &self,
        event: &Event<SLOT>,
        subscription: Option<SubscriptionId>,
        letter: Letter,
        now_ns: u64,
    ) {
        let mut envelope = Router::<SLOT>::envelope_for(event, now_ns);
        envelope.last_error = letter.last_error;
        self.dead_letter(event, &envelope, subscription, letter, now_ns);
    }
}

/// The retry history of a delivery (empty for a first delivery).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct History {
    pub first_attempt_ns: Option<u64>,
    pub previous_delay: Duration,
    /// The code the previous attempt returned.
    pub last_error: Option<ErrorCode>,
}

/// What a dead letter records besides the event and envelope.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Letter {
    pub reason: DeadReason,
    pub attempts: u32,
    pub last_error: Option<ErrorCode>,
    pub first_attempt_ns: u64,
}
