//! A shard's mailbox: the one way to send a shard a control message (new lanes, a dropped
//! publisher, subscriptions, `Stop`), and the cheap check that lets the shard's poll skip
//! the channel when nothing was sent.
//!
//! Every message gets a *ticket*: its number in the order the shard will take it. Posting
//! is serialised by a small lock (control plane only, never the publish path), so ticket
//! order is channel order, whoever posts: the bus under its control-plane lock, or a
//! publisher being dropped on any thread. The shard counts what it applied in
//! [`ShardProgress`](crate::progress::ShardProgress), so "applied >= ticket" means "this
//! message's effects are in place" for every message, with no exception to remember.
//!
//! The shard side ([`Inbox`]) reads the posted count with one `Acquire` load of a line that
//! only the control plane writes: in a steady stream of events that line stays shared in
//! the shard's cache, so a poll with no mail costs a load that hits.
//!
//! Ordering that subscriptions rely on: `post` increments `posted` (`Release`) after the
//! message is in the channel and before it returns. A publish that starts after
//! `subscribe` returned commits its ring slot (`Release`) after that; the shard, having
//! acquired the slot, then loads `posted` and sees the increment, so it applies the
//! subscription before dispatching the event (see `Shard::drain_level`).

use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;

use crossbeam_channel::{unbounded, Receiver, Sender};
use crossbeam_utils::CachePadded;

use crate::shard::Control;
use crate::sync::AtomicU64;

/// The sending side, shared by the bus and its publishers.
pub(crate) struct Mailbox<const SLOT: usize> {
    /// Held while a message is sent and numbered, so tickets follow channel order.
    sender: Mutex<Sender<Control<SLOT>>>,
    /// Messages posted so far; the last message's ticket.
    posted: CachePadded<AtomicU64>,
    /// The shard's worker thread (worker mode): unparked after each post, so a parked
    /// worker applies a control message now, not at its next park timeout.
    worker: OnceLock<Thread>,
}

/// The receiving side, owned by the shard.
pub(crate) struct Inbox<const SLOT: usize> {
    mailbox: Arc<Mailbox<SLOT>>,
    receiver: Receiver<Control<SLOT>>,
    /// Messages taken off the channel so far.
    taken: u64,
}

impl<const SLOT: usize> Mailbox<SLOT> {
    /// A mailbox and the shard's inbox for it.
    pub(crate) fn new() -> (Arc<Self>, Inbox<SLOT>) {
        let (sender, receiver) = unbounded();
        let mailbox = Arc::new(Mailbox {
            sender: Mutex::new(sender),
            posted: CachePadded::new(AtomicU64::new(0)),
            worker: OnceLock::new(),
        });
        let inbox = Inbox {
            mailbox: Arc::clone(&mailbox),
            receiver,
            taken: 0,
        };
        (mailbox, inbox)
    }

    /// Sends `msg` and returns its ticket. A shard that has stopped (its inbox dropped)
    /// takes nothing more; its progress says so to whoever waits on the ticket.
    pub(crate) fn post(&self, msg: Control<SLOT>) -> u64 {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        // Sending on an unbounded channel fails only when the receiver is gone.
        let _ = sender.send(msg);
        let ticket = self.posted.load(Acquire) + 1;
        self.posted.store(ticket, Release);
        drop(sender);
        if let Some(worker) = self.worker.get() {
            worker.unpark();
        }
        ticket
    }

    /// Called by the shard's worker thread before its loop: the thread `post` unparks.
    pub(crate) fn set_worker(&self) {
        let _ = self.worker.set(std::thread::current());
    }
}

impl<const SLOT: usize> Inbox<SLOT> {
    /// Whether a message may be waiting (one load; false positives are harmless).
    #[inline]
    pub(crate) fn has_mail(&self) -> bool {
        self.mailbox.posted.load(Acquire) != self.taken
    }

    /// The next message, if one is in the channel.
    pub(crate) fn take(&mut self) -> Option<Control<SLOT>> {
        let msg = self.receiver.try_recv().ok()?;
        self.taken += 1;
        Some(msg)
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::shard::Control;
    use loom::sync::atomic::AtomicU64 as LoomU64;
    use std::sync::atomic::Ordering::{Acquire, Release};

    /// What a subscription relies on: a shard that acquired an event published after
    /// `post` returned sees the mail and can take the message, so it applies the
    /// subscription before dispatching that event. The ring's Release/Acquire pair carries
    /// the `posted` count (stored before `post` returns) to the shard; the message itself
    /// travels through the channel, whose send happened before.
    #[test]
    fn an_event_published_after_a_post_finds_the_mail() {
        loom::model(|| {
            let (mailbox, mut inbox) = Mailbox::<256>::new();
            let ring = std::sync::Arc::new(LoomU64::new(0));
            let subscriber = {
                let ring = std::sync::Arc::clone(&ring);
                loom::thread::spawn(move || {
                    mailbox.post(Control::Stop);
                    // The publish that follows `subscribe`: a ring commit.
                    ring.store(1, Release);
                })
            };
            if ring.load(Acquire) == 1 {
                assert!(inbox.has_mail(), "the event is visible but the mail is not");
                assert!(
                    inbox.take().is_some(),
                    "the mail is seen but not in the channel"
                );
                assert!(!inbox.has_mail());
            }
            subscriber.join().unwrap();
        });
    }
}
