//! The intake gate: how `close()` stops publishing without losing an accepted event.
//!
//! The race it closes: a publisher checks "not closed", is preempted, the bus closes and
//! its shards drain empty and stop, then the publisher pushes into a ring nobody will read.
//!
//! The mechanism is Dekker's: each publisher owns a `busy` flag on its own cache line.
//! - publisher: `busy = true`, a SeqCst fence, then read `closed`; if closed, `busy =
//!   false` and refuse; otherwise push, then `busy = false` (Release);
//! - closer: `closed = true`, a SeqCst fence, then wait until every `busy` reads false
//!   (Acquire).
//!
//! Invariant: the two SeqCst fences are ordered one way or the other. If the publisher's
//! fence comes first, the closer's read of `busy` sees `true` (or the later `false` that
//! follows the push, whose Release/Acquire pairing makes the push visible) and waits; if
//! the closer's fence comes first, the publisher's read of `closed` sees `true` and it
//! refuses. So when `close` returns every accepted event is in a ring, and no later
//! publish is accepted.
//!
//! Asymmetric fences: publishing is the hot path and closing happens once, so the closer
//! pays. The publisher's fence is [`barrier::light`] (a compiler fence) and the closer's is
//! [`barrier::heavy`] (Linux `membarrier`: every running thread of the process executes a
//! full barrier), which together act as the two SeqCst fences of the argument above:
//! either the publisher's store of `busy` was made visible by its barrier before the
//! closer reads the flags, or the publisher's barrier comes after the closer's store of
//! `closed` and its load sees it. Where `membarrier` is missing both halves are SeqCst
//! fences. Cost on the hot path: two stores and a load on a line no other thread writes,
//! and no fence instruction.
//!
//! Under loom both sides are SeqCst fences (the fallback), which loom models exactly (it
//! treats SeqCst loads and stores as AcqRel, which would make it report this algorithm as
//! broken); checked in `loom_tests` below, run with `--cfg loom`.

use std::sync::{Arc, Mutex};

use crossbeam_utils::CachePadded;

use crate::barrier;
use crate::sync::{spin, AtomicBool};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// A publisher's busy flag.
pub(crate) type BusyFlag = Arc<CachePadded<AtomicBool>>;

/// The gate shared by a bus and its publishers.
#[derive(Debug, Default)]
pub(crate) struct Intake {
    closed: AtomicBool,
    /// Every publisher's flag (control plane only: registration and close).
    flags: Mutex<Vec<BusyFlag>>,
}

impl Intake {
    /// A flag for a new publisher.
    pub(crate) fn register(&self) -> BusyFlag {
        // Chooses the barrier strategy (and registers the process with `membarrier`) now,
        // on the control plane, rather than in the first publish.
        barrier::light();
        let flag: BusyFlag = Arc::default();
        self.flags
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Arc::clone(&flag));
        flag
    }

    /// Enters a publish; false (and nothing to undo) if the bus is closed.
    #[inline]
    pub(crate) fn enter(&self, busy: &AtomicBool) -> bool {
        busy.store(true, Relaxed);
        barrier::light();
        if self.closed.load(Relaxed) {
            busy.store(false, Release);
            return false;
        }
        true
    }

    /// Leaves a publish entered with `enter`.
    #[inline]
    pub(crate) fn exit(&self, busy: &AtomicBool) {
        busy.store(false, Release);
    }

    /// Whether `close` has begun.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Acquire)
    }

    /// Stops intake and waits until no publish is in flight. Idempotent.
    pub(crate) fn close(&self) {
        self.closed.store(true, Relaxed);
        barrier::heavy();
        let flags = self
            .flags
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        for flag in flags {
            while flag.load(Acquire) {
                spin();
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicU64;
    use std::sync::atomic::Ordering::Relaxed;

    /// Either the publish is refused, or its write is visible once `close` returns.
    #[test]
    fn close_never_loses_an_accepted_publish() {
        loom::model(|| {
            let intake = Arc::new(Intake::default());
            let ring = Arc::new(AtomicU64::new(0));
            let accepted = Arc::new(AtomicU64::new(0));
            let busy = intake.register();
            let publisher = {
                let (intake, ring, accepted) = (
                    Arc::clone(&intake),
                    Arc::clone(&ring),
                    Arc::clone(&accepted),
                );
                loom::thread::spawn(move || {
                    if intake.enter(&busy) {
                        ring.store(42, Relaxed);
                        accepted.store(1, Relaxed);
                        intake.exit(&busy);
                    }
                })
            };
            intake.close();
            let seen = ring.load(Relaxed);
            publisher.join().unwrap();
            if accepted.load(Relaxed) == 1 {
                assert_eq!(seen, 42, "an accepted publish was not visible after close");
            }
        });
    }
}
