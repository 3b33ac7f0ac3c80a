//! How far a shard has got through its control messages, and whether it has stopped:
//! what a worker-mode `unsubscribe` waits on so that no event reaches a handler after
//! `unsubscribe` returned.
//!
//! Each shard's mailbox (`mailbox.rs`) numbers every control message posted to it, under
//! its own lock, in channel order; the `n`-th message's number is its *ticket*. The
//! shard applies messages in order
//! and then publishes how many it applied with a `Release` add; a waiter that reads a
//! count of at least its ticket with `Acquire` sees every effect of applying the message
//! (the handler removed from the router). A shard that stopped will apply nothing more, so
//! the waiter gives up on it rather than wait forever.
//!
//! Every message is numbered, a dropped publisher's notice included, so the count of
//! applied messages never runs ahead of the tickets (before the mailbox, a notice sent
//! outside the numbering let a waiter return before its own message was applied).

use core::sync::atomic::Ordering;

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicBool, AtomicU64};

/// One shard's progress, shared between the shard and the bus.
#[derive(Debug, Default)]
pub(crate) struct ShardProgress {
    /// Numbered control messages applied so far.
    applied: CachePadded<AtomicU64>,
    /// Set once the shard has drained and stopped.
    stopped: CachePadded<AtomicBool>,
}

impl ShardProgress {
    /// The shard applied `n` more numbered messages (their effects are in place).
    pub(crate) fn note_applied(&self, n: u64) {
        if n > 0 {
            self.applied.fetch_add(n, Ordering::Release);
        }
    }

    /// The shard has stopped: it will apply nothing more.
    pub(crate) fn mark_stopped(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    /// Whether the shard has stopped.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Waits, calling `pause` between looks, until the shard has applied message `ticket`
    /// (true) or has stopped without applying it (false).
    pub(crate) fn wait_for(&self, ticket: u64, mut pause: impl FnMut()) -> bool {
        loop {
            if self.applied.load(Ordering::Acquire) >= ticket {
                return true;
            }
            if self.is_stopped() {
                // Applied just before stopping?
                return self.applied.load(Ordering::Acquire) >= ticket;
            }
            pause();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_ticket_or_the_stop() {
        let p = ShardProgress::default();
        p.note_applied(2);
        assert!(p.wait_for(1, || unreachable!("applied already")));
        assert!(p.wait_for(2, || unreachable!("applied already")));
        let mut pauses = 0;
        assert!(p.wait_for(3, || {
            pauses += 1;
            if pauses == 3 {
                p.note_applied(1);
            }
        }));
        assert_eq!(pauses, 3);
        p.mark_stopped();
        assert!(!p.wait_for(4, || unreachable!("stopped: no waiting")));
        assert!(p.is_stopped());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// When `wait_for` says the ticket was applied, the effect of applying it (here: the
    /// handler marked removed, with a plain `Relaxed` store before `note_applied`) is
    /// visible; when the shard stops first, the waiter returns instead of hanging.
    #[test]
    fn a_waiter_sees_what_the_shard_applied() {
        loom::model(|| {
            let progress = Arc::new(ShardProgress::default());
            let removed = Arc::new(AtomicBool::new(false));
            let shard = {
                let (progress, removed) = (Arc::clone(&progress), Arc::clone(&removed));
                loom::thread::spawn(move || {
                    removed.store(true, Ordering::Relaxed);
                    progress.note_applied(1);
                    progress.mark_stopped();
                })
            };
            assert!(progress.wait_for(1, crate::sync::spin));
            assert!(
                removed.load(Ordering::Relaxed),
                "wait_for returned before the removal was visible"
            );
            shard.join().unwrap();
        });
    }

    /// A shard that stops without applying the ticket releases the waiter (false).
    #[test]
    fn a_stopped_shard_releases_the_waiter() {
        loom::model(|| {
            let progress = Arc::new(ShardProgress::default());
            let shard = {
                let progress = Arc::clone(&progress);
                loom::thread::spawn(move || progress.mark_stopped())
            };
            assert!(!progress.wait_for(1, crate::sync::spin));
            shard.join().unwrap();
        });
    }
}
