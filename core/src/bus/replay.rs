//! Replay into a bus (feature `journal`): events read from a journal are delivered again,
//! with their original id, source and timestamp and the `replayed` mark
//! ([`Header::is_replayed`](crate::Header::is_replayed)), to every matching subscription
//! or to one chosen subscription, paced `Instant` or `Original`.
//!
//! ## Why a `Replayer`, and not a publisher that keeps ids
//!
//! A publisher speaks for the one agent it was made for: it stamps its own source, id and
//! time on everything, so the source cannot be forged through it. A replay must keep the
//! original source, so it cannot go through a publisher without opening a hole in that.
//! Instead a [`Replayer`] is issued by the bus itself ([`Bus::replayer`], the same
//! authority that issues publishers for any agent), and:
//!
//! - every event it delivers carries the `replayed` mark, which no live publish can carry
//!   (publishers clear it): a handler can always tell history from a live statement;
//! - every event is checked as if its original source published it now: ids must exist
//!   on this bus, and the bus's security policy, if one is set, must allow that source
//!   the type, destination and payload size (a forged or foreign journal gets no more
//!   than the agents it names are allowed). A refusal ends the replay with a typed error
//!   that says where, so it can be resumed after it;
//! - the deadline is cleared (it was on the recording bus's clock).
//!
//! Replayed events travel through the shards' redrive queues (as redriven dead letters
//! do: counted in `ShardStats::redriven`), not the publishers' rings: a target of one
//! subscription needs that path, and a replay is not journaled again by the receiving
//! bus (replaying a journal into its own bus does not rewrite its history).
//!
//! With one journal per shard, an event that went to several shards was journaled by
//! each: replay one shard's journal, or select by id, to deliver it once.

use std::sync::{Arc, Mutex};

use thiserror::Error;

use crate::event::Event;
use crate::journal::{JournalError, JournalReader, Pacer, Pacing, Selection};
use crate::policy::{PolicyCache, PublishRequest, Violation};
use crate::shard::Redrive;
use crate::shared::Shared;
use crate::subscription::SubscriptionId;
use crate::wait::{WaitStrategy, Waiter};

use super::{lock_plane, Bus, Plane};

/// Where a replay delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayTarget {
    /// Every subscription matching each event on the receiving bus now.
    Matching,
    /// This one subscription only (whatever its filter).
    Subscription(SubscriptionId),
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records read that the selection picked.
    pub selected: u64,
    /// Events handed to the shards (each reaches the subscriptions it matches there).
    pub replayed: u64,
    /// Selected events that no subscription on the receiving bus matched (not delivered;
    /// counted here only).
    pub unroutable: u64,
    /// The sequence number of the last record replayed (0 if none).
    pub last_seq: u64,
}

/// Why a replay stopped. Each error says at which record, with the events replayed
/// before it in `done`, so the replay can be resumed with `Selection::from_seq`.
#[derive(Debug, Error)]
pub enum ReplayError<const SLOT: usize> {
    /// Reading the journal failed (corruption is an error, never skipped).
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    /// The receiving bus was closed.
    #[error("bus closed after {} events replayed", .done.replayed)]
    Closed {
        /// What was replayed before.
        done: ReplayReport,
    },
    /// The target subscription does not exist on the receiving bus.
    #[error("no subscription {0:?} on this bus")]
    UnknownSubscription(SubscriptionId),
    /// The record names an event type or agent this bus does not know.
    #[error("record {seq}: unknown {what} id {id} on this bus")]
    UnknownId {
        /// The record's sequence number.
        seq: u64,
        /// "event type", "source" or "destination".
        what: &'static str,
        /// The id.
        id: u32,
        /// The event, handed back.
        event: Box<Event<SLOT>>,
        /// What was replayed before.
        done: ReplayReport,
    },
    /// The bus's security policy refuses the record's source this publish.
    #[error("record {seq}: refused by the policy: {violation:?}")]
    Policy {
        /// The record's sequence number.
        seq: u64,
        /// Why.
        violation: Violation,
        /// The event, handed back.
        event: Box<Event<SLOT>>,
        /// What was replayed before.
        done: ReplayReport,
    },
}

/// Replays a journal into the bus that issued it ([`Bus::replayer`]): see the module docs
/// of `bus/replay.rs` in the repository (and [`Replayer::replay`]).
pub struct Replayer<const SLOT: usize> {
    reader: JournalReader<SLOT>,
    shared: Arc<Shared<SLOT>>,
    plane: Arc<Mutex<Plane>>,
    policy: PolicyCache,
}

impl<const SLOT: usize> core::fmt::Debug for Replayer<SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Replayer")
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}

impl<const SLOT: usize> Bus<SLOT> {
    /// A replayer of `reader`'s journal into this bus: events are delivered again with
    /// their original id, source and timestamp, marked replayed, each checked against
    /// this bus's ids and security policy as if its source published it.
    ///
    /// ```
    /// use dreamnet_bus::journal::{JournalConfig, JournalReader, Pacing, Selection};
    /// use dreamnet_bus::{Bus, Event, EventType, Filter, Outcome, ReplayTarget};
    ///
    /// let dir = std::env::temp_dir().join(format!("dnj-replay-doc-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// // A journaled bus: each shard journals what it drains, before handlers see it.
    /// let (bus, mut shards) = Bus::builder().journal(JournalConfig::new(&dir)).build_polled()?;
    /// bus.subscribe(Filter::any(), |_| Outcome::Done)?;
    /// let mut publisher = bus.publisher(bus.register_agent("a")?)?;
    /// let id = publisher.try_publish(Event::new(EventType::AGENT_TASK))?.id;
    /// shards[0].poll(64);
    /// bus.close();
    /// shards[0].drain();
    /// drop((publisher, shards, bus));
    ///
    /// // Replay it into another bus.
    /// let (other, mut shards) = Bus::builder().build_polled()?;
    /// other.register_agent("a")?;
    /// let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    /// let s = seen.clone();
    /// other.subscribe(Filter::any(), move |d| {
    ///     s.lock().unwrap().push((d.header().id(), d.header().is_replayed()));
    ///     Outcome::Done
    /// })?;
    /// let reader = JournalReader::open(JournalConfig::new(&dir).shard_dir(0))?;
    /// let report = other
    ///     .replayer(reader)
    ///     .replay(&Selection::all(), Pacing::Instant, ReplayTarget::Matching)?;
    /// assert_eq!(report.replayed, 1);
    /// shards[0].poll(64);
    /// assert_eq!(*seen.lock().unwrap(), vec![(id, true)]);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn replayer(&self, reader: JournalReader<SLOT>) -> Replayer<SLOT> {
        Replayer {
            reader,
            policy: self.shared.shield.cache(),
            shared: Arc::clone(&self.shared),
            plane: Arc::clone(&self.plane),
        }
    }
}

impl<const SLOT: usize> Replayer<SLOT> {
    /// The journal being replayed (call `refresh` on it to follow a live writer).
    pub fn reader_mut(&mut self) -> &mut JournalReader<SLOT> {
        &mut self.reader
    }

    /// Replays the records `selection` picks, in journal order, paced by `pacing`, to
    /// `target`. Waits (without limit) for room in the shards' redrive queues, so the
    /// receiving bus's shards must be polled meanwhile (worker mode does that; in poll
    /// mode, poll between replays of bounded selections or from another thread).
    pub fn replay(
        &mut self,
        selection: &Selection,
        pacing: Pacing,
        target: ReplayTarget,
    ) -> Result<ReplayReport, ReplayError<SLOT>> {
        if let ReplayTarget::Subscription(id) = target {
            if !lock_plane(&self.plane).subscriptions.contains_key(&id) {
                return Err(ReplayError::UnknownSubscription(id));
            }
        }
        let mut done = ReplayReport::default();
        let mut pacer = (pacing != Pacing::Instant).then(|| Pacer::new(pacing));
        let Replayer {
            reader,
            shared,
            plane,
            policy,
        } = self;
        for record in reader.records(selection) {
            let record = record?;
            let seq = record.seq();
            done.selected += 1;
            let mut event = record.event().clone().with_deadline_ns(0);
            event.set_replayed();
            check(shared, policy, &event).map_err(|refusal| match refusal {
                Refusal::Unknown(what, id) => ReplayError::UnknownId {
                    seq,
                    what,
                    id,
                    event: Box::new(event.clone()),
                    done,
                },
                Refusal::Policy(violation) => ReplayError::Policy {
                    seq,
                    violation,
                    event: Box::new(event.clone()),
                    done,
                },
            })?;
            if let Some(p) = pacer.as_mut() {
                p.wait(&event);
            }
            match push(shared, plane, event, target) {
                Pushed::Sent => done.replayed += 1,
                Pushed::NoRoute => done.unroutable += 1,
                Pushed::Closed => return Err(ReplayError::Closed { done }),
                Pushed::Gone(id) => return Err(ReplayError::UnknownSubscription(id)),
            }
            done.last_seq = seq;
        }
        Ok(done)
    }
}

enum Refusal {
    Unknown(&'static str, u32),
    Policy(Violation),
}

/// The checks a publish by the event's source would pass: ids, then the policy.
fn check<const SLOT: usize>(
    shared: &Shared<SLOT>,
    policy: &mut PolicyCache,
    event: &Event<SLOT>,
) -> Result<(), Refusal> {
    let h = event.header();
    if u32::from(h.event_type().raw()) >= shared.type_count() {
        return Err(Refusal::Unknown(
            "event type",
            u32::from(h.event_type().raw()),
        ));
    }
    let agents = shared.agent_count();
    if h.source().raw() >= agents {
        return Err(Refusal::Unknown("source", h.source().raw()));
    }
    if let Some(d) = h.destination().filter(|d| d.raw() >= agents) {
        return Err(Refusal::Unknown("destination", d.raw()));
    }
    if shared.shield.is_on() {
        let request = PublishRequest {
            agent: h.source(),
            event_type: h.event_type(),
            destination: h.destination(),
            payload_len: h.payload_len(),
        };
        let now = shared.clock.now_ns();
        shared
            .shield
            .check_publish(policy, &request, || now)
            .map_err(|r| Refusal::Policy(r.violation))?;
    }
    Ok(())
}

enum Pushed {
    Sent,
    NoRoute,
    Closed,
    Gone(SubscriptionId),
}

/// Hands `event` to the redrive queue of every shard it goes to, all at once: under the
/// plane lock (the lock every pusher of these queues holds, so room seen stays room),
/// once every queue has room; otherwise waits for the shards to make some.
fn push<const SLOT: usize>(
    shared: &Shared<SLOT>,
    plane: &Mutex<Plane>,
    event: Event<SLOT>,
    target: ReplayTarget,
) -> Pushed {
    let mut waiter = Waiter::new(WaitStrategy::Yield);
    loop {
        if shared.intake.is_closed() {
            return Pushed::Closed;
        }
        {
            let plane = lock_plane(plane);
            let (mask, subscription) = match target {
                ReplayTarget::Matching => {
                    let h = event.header();
                    (
                        shared.targets.for_event(h.event_type(), h.destination()),
                        None,
                    )
                }
                ReplayTarget::Subscription(id) => match plane.subscriptions.get(&id) {
                    Some(r) => (1u64 << r.footprint.shard, Some(id)),
                    None => return Pushed::Gone(id),
                },
            };
            if mask == 0 {
                return Pushed::NoRoute;
            }
            let queues = &shared.redrives;
            if shards(mask).all(|s| !queues[s].is_full()) {
                for s in shards(mask) {
                    // Room was checked under the lock every pusher holds; shards only pop.
                    let _ = queues[s].push(Redrive {
                        event: event.clone(),
                        subscription,
                    });
                }
                return Pushed::Sent;
            }
        }
        waiter.wait();
    }
}

/// The shard indices set in `mask`.
fn shards(mask: u64) -> impl Iterator<Item = usize> {
    (0..64).filter(move |s| mask & (1 << s) != 0)
}
