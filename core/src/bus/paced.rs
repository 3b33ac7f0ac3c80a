//! Rate-limited redrive: dead letters sent back at a fixed pace instead of all at once
//! (what SQS calls redrive velocity), so a redrive can never flood the bus.
//!
//! `Bus::redrive_paced` hands a pacer to shard 0. The shard puts it on its timer wheel,
//! beside retries and scheduled events; when its tick comes up it moves as many letters
//! as its token bucket allows (at most [`MAX_PER_TICK`]) through the same path as
//! `Bus::redrive` (letters go to their subscriptions' shards' redrive queues), then goes
//! back on the wheel one interval later. (Its ticks do not count as pending work for
//! `Bus::wait_idle`.) It stops when it has sent `max` letters,
//! when no letter in the dead letters matches any more, when it is cancelled through its
//! [`PacedRedrive`] handle, or when the bus closes. A letter that finds its shard's
//! redrive queue full stays in the dead letters and is tried again at the next tick; so
//! does one whose subscription has left (as with `Bus::redrive`, it stays where it is):
//! a pacer whose remaining matches are all such letters ticks on until cancelled.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::bus::{redrive_letters, Bus, Plane};
use crate::dead_letters::DeadLetter;
use crate::error::BusError;
use crate::policy::{Rate, TokenBucket};
use crate::shard::Control;
use crate::shared::Shared;
use crate::subscription::SubscriptionId;

/// The most letters one tick moves (the rest wait for the next tick).
pub const MAX_PER_TICK: u64 = 64;

/// Why a paced redrive stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaceEnd {
    /// It sent the `max` letters it was asked for.
    Done,
    /// No letter in the dead letters matched any more.
    Drained,
    /// [`PacedRedrive::cancel`] was called.
    Cancelled,
    /// The bus closed (or was dropped).
    Closed,
    /// Shard 0's timer wheel had no room for its next tick (the wheel holds retries and
    /// scheduled events too: see `BusBuilder::timer_capacity`); redrive again later.
    WheelFull,
}

const RUNNING: u8 = 0;

impl PaceEnd {
    fn code(self) -> u8 {
        match self {
            PaceEnd::Done => 1,
            PaceEnd::Drained => 2,
            PaceEnd::Cancelled => 3,
            PaceEnd::Closed => 4,
            PaceEnd::WheelFull => 5,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(PaceEnd::Done),
            2 => Some(PaceEnd::Drained),
            3 => Some(PaceEnd::Cancelled),
            4 => Some(PaceEnd::Closed),
            5 => Some(PaceEnd::WheelFull),
            _ => None,
        }
    }
}

/// What a pacer and its handle share.
#[derive(Debug, Default)]
struct PaceState {
    cancel: AtomicBool,
    sent: AtomicU64,
    ticks: AtomicU64,
    end: AtomicU8,
}

/// A handle to a paced redrive: its progress, and a way to stop it.
#[derive(Clone, Debug)]
pub struct PacedRedrive {
    state: Arc<PaceState>,
}

impl PacedRedrive {
    /// Stops the redrive at its next tick (letters already sent stay sent; the others stay
    /// in the dead letters).
    pub fn cancel(&self) {
        self.state.cancel.store(true, Ordering::Release);
    }

    /// Letters sent back so far.
    pub fn sent(&self) -> u64 {
        self.state.sent.load(Ordering::Acquire)
    }

    /// Ticks run so far (each moves at most [`MAX_PER_TICK`] letters).
    pub fn ticks(&self) -> u64 {
        self.state.ticks.load(Ordering::Acquire)
    }

    /// Why it stopped, or `None` while it runs.
    pub fn ended(&self) -> Option<PaceEnd> {
        PaceEnd::from_code(self.state.end.load(Ordering::Acquire))
    }
}

/// Letter selection, called on the shard's thread.
type Select<const SLOT: usize> = Box<dyn FnMut(&DeadLetter<SLOT>) -> bool + Send>;

/// The pacer a shard runs.
pub(crate) struct Pacer<const SLOT: usize> {
    shared: Weak<Shared<SLOT>>,
    /// The bus's control plane, to route letters to their subscriptions' shards.
    plane: Weak<Mutex<Plane>>,
    bucket: TokenBucket,
    interval_ns: u64,
    target: Option<SubscriptionId>,
    left: AtomicU64,
    select: Mutex<Select<SLOT>>,
    state: Arc<PaceState>,
}

impl<const SLOT: usize> Pacer<SLOT> {
    /// Runs one tick at `now_ns`; the next due time, or `None` when it has ended.
    pub(crate) fn tick(&self, now_ns: u64) -> Option<u64> {
        let (Some(shared), Some(plane)) = (self.shared.upgrade(), self.plane.upgrade()) else {
            return self.end(PaceEnd::Closed);
        };
        if self.state.cancel.load(Ordering::Acquire) {
            return self.end(PaceEnd::Cancelled);
        }
        if shared.intake.is_closed() {
            return self.end(PaceEnd::Closed);
        }
        self.state.ticks.fetch_add(1, Ordering::AcqRel);
        let left = self.left.load(Ordering::Acquire);
        let tokens = self.bucket.take_up_to(now_ns, left.min(MAX_PER_TICK));
        let next = now_ns.saturating_add(self.interval_ns);
        if tokens == 0 {
            return Some(next);
        }
        let mut select = self.select.lock().unwrap_or_else(PoisonError::into_inner);
        let sent =
            match redrive_letters(&shared, &plane, tokens as usize, self.target, &mut *select) {
                Ok(n) => n as u64,
                // The target subscription left: nothing more can go to it.
                Err(_) => return self.end(PaceEnd::Drained),
            };
        self.bucket.give_back(tokens - sent);
        self.left.fetch_sub(sent, Ordering::AcqRel);
        self.state.sent.fetch_add(sent, Ordering::AcqRel);
        if sent == left {
            return self.end(PaceEnd::Done);
        }
        if sent < tokens {
            // Short: either nothing matches any more, or the queues are full for now.
            let mut any = false;
            shared.dead_letters.inspect(|l| any = any || select(l));
            if !any {
                return self.end(PaceEnd::Drained);
            }
        }
        Some(next)
    }

    /// Ends the pacer (called by the shard when the bus closes, too).
    pub(crate) fn end(&self, why: PaceEnd) -> Option<u64> {
        let _ = self.state.end.compare_exchange(
            RUNNING,
            why.code(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        None
    }
}

impl<const SLOT: usize> Bus<SLOT> {
    /// Like [`Bus::redrive`], but paced: at most `rate` letters per second (in bursts of
    /// at most `rate.burst()`), up to `max` letters, on shard 0's clock (see the module
    /// documentation of `paced.rs` for when it stops). Returns at once with a handle to
    /// follow or cancel it. `target`: send every letter to that subscription instead of
    /// its own (like [`Bus::redrive_to`]).
    ///
    /// The pacer runs at shard 0's polls: in poll mode, poll shard 0 for it to progress.
    pub fn redrive_paced(
        &self,
        max: u64,
        rate: Rate,
        target: Option<SubscriptionId>,
        select: impl FnMut(&DeadLetter<SLOT>) -> bool + Send + 'static,
    ) -> Result<PacedRedrive, BusError> {
        if self.is_closed() {
            return Err(BusError::Closed);
        }
        let plane = self.plane();
        if let Some(t) = target {
            if !plane.subscriptions.contains_key(&t) {
                return Err(BusError::UnknownSubscription(t));
            }
        }
        let state = Arc::new(PaceState::default());
        let pacer = Arc::new(Pacer {
            shared: Arc::downgrade(&self.shared),
            plane: Arc::downgrade(&self.plane),
            bucket: TokenBucket::new(rate),
            interval_ns: rate.interval_ns(),
            target,
            left: AtomicU64::new(max),
            select: Mutex::new(Box::new(select)),
            state: Arc::clone(&state),
        });
        drop(plane);
        if max == 0 {
            pacer.end(PaceEnd::Done);
        } else {
            self.shared.mailboxes[0].post(Control::Pace(pacer));
        }
        Ok(PacedRedrive { state })
    }
}
