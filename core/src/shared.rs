//! What a bus shares with its publishers: everything the publish path reads, and nothing
//! of the control plane (names, subscription records and their lock live in `Bus`).
//!
//! The publish path reads this without a lock: the intake gate, the shard target masks,
//! the interned id counts (to refuse unknown ids), the clock, and each shard's mailbox (a
//! publisher being dropped tells its shards through it, the same way the bus does).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::dead_letters::{DeadLetter, DeadLetters, DeadReason};
use crate::envelope::Envelope;
use crate::event::Event;
use crate::intake::Intake;
use crate::mailbox::Mailbox;
use crate::schedule::Schedule;
use crate::shard::RedriveQueue;
use crate::targets::ShardTargets;

/// State shared by the bus, its publishers and its shards.
pub(crate) struct Shared<const SLOT: usize> {
    pub(crate) config: Config,
    pub(crate) clock: Clock,
    pub(crate) intake: Intake,
    pub(crate) targets: ShardTargets,
    /// Interned counts, mirrored from the bus's names for lock-free id checks.
    agent_count: AtomicU32,
    type_count: AtomicU32,
    /// Each shard's mailbox: the one way to send it a control message.
    pub(crate) mailboxes: Vec<Arc<Mailbox<SLOT>>>,
    pub(crate) dead_letters: Arc<DeadLetters<SLOT>>,
    pub(crate) schedule: Arc<Schedule>,
    /// Each shard's queue of redriven dead letters.
    pub(crate) redrives: Vec<Arc<RedriveQueue<SLOT>>>,
    /// The security policy, if one is set (see `policy/shield.rs`, `bus/shield.rs`).
    pub(crate) shield: crate::policy::Shield,
    /// Each shard's sleep mark: publishers wake a parked worker (`wakeup.rs`).
    pub(crate) wakeups: Box<[crate::wakeup::Wakeup]>,
}

impl<const SLOT: usize> Shared<SLOT> {
    /// After a publish committed to the shards in `mask`: wakes those whose worker is
    /// parked (one load per shard otherwise; `wakeup.rs`).
    #[inline(always)]
    pub(crate) fn wake_parked(&self, mask: u64) {
        crate::barrier::light();
        let mut bits = mask;
        while bits != 0 {
            let s = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if let Some(w) = self.wakeups.get(s) {
                w.notify();
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: Config,
        agents: u32,
        types: u32,
        mailboxes: Vec<Arc<Mailbox<SLOT>>>,
        dead_letters: Arc<DeadLetters<SLOT>>,
        schedule: Arc<Schedule>,
        redrives: Vec<Arc<RedriveQueue<SLOT>>>,
    ) -> Self {
        Shared {
            clock: config.clock.clone(),
            intake: Intake::default(),
            targets: ShardTargets::default(),
            agent_count: AtomicU32::new(agents),
            type_count: AtomicU32::new(types),
            mailboxes,
            dead_letters,
            schedule,
            redrives,
            shield: crate::policy::Shield::default(),
            wakeups: (0..config.shards)
                .map(|_| crate::wakeup::Wakeup::default())
                .collect(),
            config,
        }
    }

    /// Agents interned so far: ids below this are valid.
    #[inline]
    pub(crate) fn agent_count(&self) -> u32 {
        self.agent_count.load(Ordering::Acquire)
    }

    /// Event types interned so far: ids below this are valid.
    #[inline]
    pub(crate) fn type_count(&self) -> u32 {
        self.type_count.load(Ordering::Acquire)
    }

    /// Publishes a new agent count (after the name is interned).
    pub(crate) fn set_agent_count(&self, n: u32) {
        self.agent_count.store(n, Ordering::Release);
    }

    /// Publishes a new event type count (after the name is interned).
    pub(crate) fn set_type_count(&self, n: u32) {
        self.type_count.store(n, Ordering::Release);
    }

    /// Records an event nobody subscribed to in the dead letters, if the bus is set to.
    pub(crate) fn dead_letter_unroutable(&self, event: &Event<SLOT>) {
        if !self.config.dead_letter_unroutable {
            return;
        }
        let now = self.clock.now_ns();
        self.dead_letters.record(DeadLetter {
            event: event.clone(),
            envelope: Envelope::default(),
            subscription: None,
            reason: DeadReason::NoSubscriber,
            attempts: 0,
            last_error: None,
            first_attempt_ns: now,
            last_attempt_ns: now,
            shard: 0,
        });
    }
}
